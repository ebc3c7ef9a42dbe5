/*
 * codec.c - a compressor's C ops, as the native core holds and calls them.
 *
 * A compressor plugin may export `codec_ops` (zswap_ops.h): a table of C functions
 * that compress into and decompress from caller buffers, without the GIL. The core
 * binds it once per pool (codec_bind) and then compresses a page with no Python
 * object made: the kernel's crypto_acomp, with one context per thread at a time
 * standing in for the kernel's per-CPU acomp contexts.
 *
 *   1. contexts - a small cache of idle per-thread contexts
 *   2. binding  - codec_bind / codec_hold / codec_put
 *   3. calls    - codec_compress / codec_decompress, bounds-checked
 *   4. testing  - codec_call(): the ops from Python, for the kit and benchmarks
 *
 * MIT licence, part of zswap-core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

#define IDLE_CTXS 8

struct zswap_codec {
	long refs; /* atomic: the pool slot's + calls in flight */
	const struct zswap_codec_ops *ops;
	void *codec;       /* the capsule's context */
	PyObject *capsule; /* keeps `codec` alive; dropped with the GIL held */

	/* Protects nr_idle and idle[]: contexts no thread is using. */
	pthread_mutex_t lock;
	int nr_idle;
	void *idle[IDLE_CTXS];
};

/* ---------------------------------------------------------------------------
 * 1. contexts
 * ------------------------------------------------------------------------- */

/* An idle context, or a new one; NULL when out of memory. Any thread, no GIL. */
static void *ctx_get(struct zswap_codec *zc)
{
	void *ctx = NULL;

	pthread_mutex_lock(&zc->lock);
	if (zc->nr_idle > 0)
		ctx = zc->idle[--zc->nr_idle];
	pthread_mutex_unlock(&zc->lock);
	if (ctx == NULL)
		ctx = zc->ops->ctx_create(zc->codec);
	return ctx;
}

static void ctx_give(struct zswap_codec *zc, void *ctx)
{
	pthread_mutex_lock(&zc->lock);
	if (zc->nr_idle < IDLE_CTXS) {
		zc->idle[zc->nr_idle++] = ctx;
		ctx = NULL;
	}
	pthread_mutex_unlock(&zc->lock);
	if (ctx != NULL)
		zc->ops->ctx_free(zc->codec, ctx);
}

/* ---------------------------------------------------------------------------
 * 2. binding
 * ------------------------------------------------------------------------- */

/* The table in `capsule`, if it is one this core can call; NULL otherwise. */
static const struct zswap_codec_ops *usable_ops(PyObject *capsule)
{
	const struct zswap_codec_ops *ops;

	if (!PyCapsule_IsValid(capsule, ZSWAP_CODEC_OPS_CAPSULE))
		return NULL;
	ops = PyCapsule_GetPointer(capsule, ZSWAP_CODEC_OPS_CAPSULE);
	if (ops == NULL || ops->version < 1 ||
	    ops->size < offsetof(struct zswap_codec_ops, decompress) + sizeof(ops->decompress) ||
	    !ops->bound || !ops->ctx_create || !ops->ctx_free || !ops->compress ||
	    !ops->decompress)
		return NULL;
	return ops;
}

/* Bind a compressor's `codec_ops`: a new codec with one reference, or NULL with no
 * exception when it has none this core can use (its Python methods are used), or
 * NULL with an exception (out of memory, a raising attribute). GIL held. */
struct zswap_codec *codec_bind(PyObject *compressor)
{
	PyObject *cap = PyObject_GetAttrString(compressor, "codec_ops");
	const struct zswap_codec_ops *ops;
	struct zswap_codec *zc;

	if (cap == NULL) {
		if (!PyErr_ExceptionMatches(PyExc_Exception))
			return NULL;
		PyErr_Clear(); /* no table (AttributeError), or a plugin that withholds it */
		return NULL;
	}
	ops = usable_ops(cap);
	if (ops == NULL) {
		Py_DECREF(cap);
		return NULL;
	}
	zc = calloc(1, sizeof(*zc));
	if (zc == NULL) {
		Py_DECREF(cap);
		PyErr_NoMemory();
		return NULL;
	}
	pthread_mutex_init(&zc->lock, NULL);
	zc->refs = 1;
	zc->ops = ops;
	zc->codec = PyCapsule_GetContext(cap);
	zc->capsule = cap;
	return zc;
}

void codec_hold(struct zswap_codec *zc)
{
	__atomic_add_fetch(&zc->refs, 1, __ATOMIC_RELAXED);
}

/* Drop a reference; the last one frees the contexts and the capsule. GIL held. */
void codec_put(struct zswap_codec *zc)
{
	if (zc == NULL || __atomic_sub_fetch(&zc->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (int k = 0; k < zc->nr_idle; k++)
		zc->ops->ctx_free(zc->codec, zc->idle[k]);
	pthread_mutex_destroy(&zc->lock);
	Py_DECREF(zc->capsule);
	free(zc);
}

size_t codec_bound(struct zswap_codec *zc, size_t slen)
{
	return zc->ops->bound(zc->codec, slen);
}

/* ---------------------------------------------------------------------------
 * 3. calls (no GIL needed; no Python)
 * ------------------------------------------------------------------------- */

/* Compress into `dst` of `*dlen` bytes: 0 and the length, -ENOSPC, -EINVAL or
 * -ENOMEM. An output the codec claims beyond the buffer is refused (-EINVAL). */
int codec_compress(struct zswap_codec *zc, const void *src, size_t slen, void *dst, size_t *dlen)
{
	size_t cap = *dlen;
	void *ctx = ctx_get(zc);
	int rc;

	if (ctx == NULL)
		return -ENOMEM;
	rc = zc->ops->compress(zc->codec, ctx, src, slen, dst, dlen);
	ctx_give(zc, ctx);
	if (rc == 0 && (*dlen == 0 || *dlen > cap))
		rc = -EINVAL;
	return rc < 0 ? rc : (rc == 0 ? 0 : -EINVAL);
}

/* Decompress into exactly `dlen` bytes at `dst`: 0, or -EINVAL / -ENOMEM. */
int codec_decompress(struct zswap_codec *zc, const void *src, size_t slen, void *dst,
		     size_t dlen)
{
	void *ctx = ctx_get(zc);
	int rc;

	if (ctx == NULL)
		return -ENOMEM;
	rc = zc->ops->decompress(zc->codec, ctx, src, slen, dst, dlen);
	ctx_give(zc, ctx);
	return rc == 0 ? 0 : (rc == -ENOMEM ? -ENOMEM : -EINVAL);
}

/* ---------------------------------------------------------------------------
 * 4. testing: _core.CodecOps(capsule).compress(data) / .decompress(data, n)
 *
 * The ops called from Python as the core calls them (one binding, its contexts
 * reused, the GIL released around each call): the conformance kit checks a
 * plugin's table against its Python methods with it, and the benchmarks use it as
 * the floor built on the same library as the ops.
 * ------------------------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	struct zswap_codec *zc;
} CodecOpsObject;

static PyObject *raise_errno(const char *what, int rc)
{
	if (rc == -ENOMEM)
		return PyErr_NoMemory();
	PyErr_Format(PyExc_ValueError, "%s failed (%s)", what,
		     rc == -ENOSPC ? "output does not fit" : "invalid data");
	return NULL;
}

static PyObject *codecops_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"capsule", NULL};
	PyObject *cap;
	CodecOpsObject *self;
	const struct zswap_codec_ops *ops;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O", kwlist, &cap))
		return NULL;
	ops = usable_ops(cap);
	if (ops == NULL) {
		PyErr_SetString(PyExc_TypeError,
				"expected a usable \"" ZSWAP_CODEC_OPS_CAPSULE "\" capsule");
		return NULL;
	}
	self = (CodecOpsObject *)type->tp_alloc(type, 0);
	if (self == NULL)
		return NULL;
	self->zc = calloc(1, sizeof(*self->zc));
	if (self->zc == NULL) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	pthread_mutex_init(&self->zc->lock, NULL);
	self->zc->refs = 1;
	self->zc->ops = ops;
	self->zc->codec = PyCapsule_GetContext(cap);
	self->zc->capsule = Py_NewRef(cap);
	return (PyObject *)self;
}

static void codecops_dealloc(CodecOpsObject *self)
{
	codec_put(self->zc);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *codecops_compress(CodecOpsObject *self, PyObject *data)
{
	Py_buffer b;
	PyObject *out;
	size_t cap_len, dlen;
	int rc;

	if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0)
		return NULL;
	cap_len = dlen = codec_bound(self->zc, (size_t)b.len);
	out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap_len);
	if (out != NULL) {
		Py_BEGIN_ALLOW_THREADS
		rc = codec_compress(self->zc, b.buf, (size_t)b.len, PyBytes_AS_STRING(out), &dlen);
		Py_END_ALLOW_THREADS
		if (rc < 0) {
			Py_CLEAR(out);
			raise_errno("compress", rc);
		} else if (dlen != cap_len) {
			_PyBytes_Resize(&out, (Py_ssize_t)dlen);
		}
	}
	PyBuffer_Release(&b);
	return out;
}

static PyObject *codecops_decompress(CodecOpsObject *self, PyObject *const *args,
				     Py_ssize_t nargs)
{
	Py_buffer b;
	PyObject *out;
	Py_ssize_t dlen;
	int rc;

	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "decompress(data, dlen)");
		return NULL;
	}
	dlen = PyLong_AsSsize_t(args[1]);
	if (dlen == -1 && PyErr_Occurred())
		return NULL;
	if (dlen <= 0) {
		PyErr_Format(PyExc_ValueError, "bad decompressed length %zd", dlen);
		return NULL;
	}
	if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) < 0)
		return NULL;
	out = PyBytes_FromStringAndSize(NULL, dlen);
	if (out != NULL) {
		Py_BEGIN_ALLOW_THREADS
		rc = codec_decompress(self->zc, b.buf, (size_t)b.len, PyBytes_AS_STRING(out),
				      (size_t)dlen);
		Py_END_ALLOW_THREADS
		if (rc < 0) {
			Py_CLEAR(out);
			raise_errno("decompress", rc);
		}
	}
	PyBuffer_Release(&b);
	return out;
}

static PyObject *codecops_bound(CodecOpsObject *self, PyObject *arg)
{
	Py_ssize_t n = PyLong_AsSsize_t(arg);

	if (n < 0)
		return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "negative length");
	return PyLong_FromSize_t(codec_bound(self->zc, (size_t)n));
}

static PyMethodDef codecops_methods[] = {
	{"compress", (PyCFunction)codecops_compress, METH_O,
	 "compress(data) -> bytes, through the C ops (GIL released)"},
	{"decompress", (PyCFunction)(void (*)(void))codecops_decompress, METH_FASTCALL,
	 "decompress(data, dlen) -> exactly dlen bytes, or ValueError"},
	{"bound", (PyCFunction)codecops_bound, METH_O, "bound(n) -> worst-case output size"},
	{NULL, NULL, 0, NULL},
};

PyTypeObject CodecOps_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "zswap_core._core.CodecOps",
	.tp_basicsize = sizeof(CodecOpsObject),
	.tp_dealloc = (destructor)codecops_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "CodecOps(capsule): a compressor's C ops, called from Python (kit, benchmarks)",
	.tp_methods = codecops_methods,
	.tp_new = codecops_new,
};
