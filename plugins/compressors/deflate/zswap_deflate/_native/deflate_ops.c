/*
 * deflate_ops.c - the codec ops (zswap_ops.h) of zswap-deflate: raw deflate in C.
 *
 * zswap-core's native path compresses and decompresses pages through this table
 * without the GIL, into its own buffers. The stream is raw deflate with the
 * kernel's settings, as the plugin's Python methods (the stdlib's zlib) write and
 * read it: a 2 KiB window (-11 window bits), memLevel 9, the default strategy, at
 * the instance's level (1..9).
 *
 *   1. the codec  - one per Compressor instance: the level, kept current
 *   2. contexts   - a deflate and an inflate stream per thread (reset per call),
 *                   a scratch output
 *   3. compress   - the whole page with Z_FINISH, at the level of the call
 *   4. decompress - one whole stream, to exactly dlen bytes
 *   5. module     - new(name, level), set_level(capsule, level), level(capsule)
 *
 * No function of the table calls Python; each thread passes a context of its own.
 *
 * MIT licence, part of zswap-deflate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "zswap_ops.h"

/* The kernel's deflate settings (crypto/deflate.c), and the plugin's levels. */
#define DEFLATE_WINDOW_BITS (-11)
#define DEFLATE_MEM_LEVEL 9
#define DEFLATE_MIN_LEVEL 1
#define DEFLATE_MAX_LEVEL 9

/* ---------------------------------------------------------------------------
 * 1. the codec
 * ------------------------------------------------------------------------- */

struct deflate_codec {
	int level; /* atomic: the compression level, kept current by the plugin */
};

static int codec_level(void *codec)
{
	return __atomic_load_n(&((struct deflate_codec *)codec)->level, __ATOMIC_RELAXED);
}

/* zlib's bound for any stream settings (no stream given: the larger of its two
 * conservative bounds plus a wrapper raw deflate does not even write). */
static size_t deflate_bound(void *codec, size_t slen)
{
	(void)codec;
	if (slen > UINT_MAX)
		return 0;
	return deflateBound(NULL, (uLong)slen);
}

/* ---------------------------------------------------------------------------
 * 2. contexts
 * ------------------------------------------------------------------------- */

struct deflate_ctx {
	z_stream def;
	z_stream inf;
	int level;          /* the level `def` is set to */
	int def_ready;      /* deflateInit2 succeeded: deflateEnd is owed */
	int inf_ready;      /* inflateInit2 succeeded: inflateEnd is owed */
	unsigned char *out; /* scratch output for a dst shorter than the bound */
	size_t out_len;
};

static int def_init(struct deflate_ctx *x, int level)
{
	memset(&x->def, 0, sizeof(x->def));
	x->def_ready = deflateInit2(&x->def, level, Z_DEFLATED, DEFLATE_WINDOW_BITS,
				    DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY) == Z_OK;
	x->level = level;
	return x->def_ready ? 0 : -1;
}

static void deflate_ctx_free(void *codec, void *ctx)
{
	struct deflate_ctx *x = ctx;

	(void)codec;
	if (x == NULL)
		return;
	if (x->def_ready)
		deflateEnd(&x->def);
	if (x->inf_ready)
		inflateEnd(&x->inf);
	free(x->out);
	free(x);
}

static void *deflate_ctx_create(void *codec)
{
	struct deflate_ctx *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->inf_ready = inflateInit2(&x->inf, DEFLATE_WINDOW_BITS) == Z_OK;
	if (!x->inf_ready || def_init(x, codec_level(codec)) < 0) {
		deflate_ctx_free(codec, x);
		return NULL;
	}
	return x;
}

/* ---------------------------------------------------------------------------
 * 3. compress
 * ------------------------------------------------------------------------- */

/* Reset the deflate stream and bring it to `level`. Its buffer pointers are
 * cleared first: deflateParams() may flush into next_out (left over from the
 * previous call) on some zlib versions. Should it refuse, the stream is made anew. */
static int def_prepare(struct deflate_ctx *x, int level)
{
	if (deflateReset(&x->def) != Z_OK)
		return -1;
	if (x->level == level)
		return 0;
	x->def.next_in = Z_NULL;
	x->def.avail_in = 0;
	x->def.next_out = Z_NULL;
	x->def.avail_out = 0;
	if (deflateParams(&x->def, level, Z_DEFAULT_STRATEGY) == Z_OK) {
		x->level = level;
		return 0;
	}
	deflateEnd(&x->def);
	return def_init(x, level);
}

/* Where to compress to: dst when it holds the bound, else the context's scratch
 * buffer (so that a short dst fails only when the output really does not fit).
 * NULL when out of memory. */
static unsigned char *output(struct deflate_ctx *x, void *dst, size_t dlen, size_t need)
{
	unsigned char *out;

	if (dlen >= need)
		return dst;
	if (x->out_len >= need)
		return x->out;
	out = realloc(x->out, need);
	if (out == NULL)
		return NULL;
	x->out = out;
	x->out_len = need;
	return out;
}

/* With the bound's room, deflate(Z_FINISH) ends the stream in one call. */
static int deflate_compress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			    size_t *dlen)
{
	struct deflate_ctx *x = ctx;
	size_t need = deflate_bound(codec, slen);
	unsigned char *out;

	if (slen == 0 || need == 0 || need > UINT_MAX)
		return -EINVAL;
	if (!x->def_ready || def_prepare(x, codec_level(codec)) < 0)
		return -EINVAL;
	out = output(x, dst, *dlen, need);
	if (out == NULL)
		return -ENOMEM;
	x->def.next_in = (Bytef *)src;
	x->def.avail_in = (uInt)slen;
	x->def.next_out = out;
	x->def.avail_out = (uInt)need;
	if (deflate(&x->def, Z_FINISH) != Z_STREAM_END)
		return -EINVAL;
	if (x->def.total_out > *dlen)
		return -ENOSPC;
	if (out != dst)
		memcpy(dst, out, x->def.total_out);
	*dlen = x->def.total_out;
	return 0;
}

/* ---------------------------------------------------------------------------
 * 4. decompress
 * ------------------------------------------------------------------------- */

/* The stream must end (Z_STREAM_END) exactly where the input ends, with exactly
 * dlen bytes out; inflate never writes past dst + dlen (it stops with
 * Z_BUF_ERROR when a stream would decode to more). */
static int deflate_decompress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			      size_t dlen)
{
	struct deflate_ctx *x = ctx;
	int rc;

	(void)codec;
	if (slen == 0 || dlen == 0 || slen > UINT_MAX || dlen > UINT_MAX)
		return -EINVAL;
	if (inflateReset(&x->inf) != Z_OK)
		return -EINVAL;
	x->inf.next_in = (Bytef *)src;
	x->inf.avail_in = (uInt)slen;
	x->inf.next_out = dst;
	x->inf.avail_out = (uInt)dlen;
	rc = inflate(&x->inf, Z_FINISH);
	if (rc != Z_STREAM_END || x->inf.avail_in != 0 || x->inf.avail_out != 0)
		return -EINVAL;
	return 0;
}

static const struct zswap_codec_ops deflate_ops = {
	.version = ZSWAP_CODEC_OPS_VERSION,
	.size = sizeof(struct zswap_codec_ops),
	.bound = deflate_bound,
	.ctx_create = deflate_ctx_create,
	.ctx_free = deflate_ctx_free,
	.compress = deflate_compress,
	.decompress = deflate_decompress,
};

/* ---------------------------------------------------------------------------
 * 5. module
 * ------------------------------------------------------------------------- */

/* The capsule's codec, if `cap` is one of this module's; NULL with an exception. */
static struct deflate_codec *codec_of(PyObject *cap)
{
	if (PyCapsule_IsValid(cap, ZSWAP_CODEC_OPS_CAPSULE) &&
	    PyCapsule_GetPointer(cap, ZSWAP_CODEC_OPS_CAPSULE) == &deflate_ops &&
	    PyCapsule_GetContext(cap) != NULL)
		return PyCapsule_GetContext(cap);
	PyErr_SetString(PyExc_TypeError, "expected a codec ops capsule of zswap_deflate._ops");
	return NULL;
}

static int check_level(int level)
{
	if (level >= DEFLATE_MIN_LEVEL && level <= DEFLATE_MAX_LEVEL)
		return 0;
	PyErr_Format(PyExc_ValueError, "deflate: level %d is not in %d..%d", level,
		     DEFLATE_MIN_LEVEL, DEFLATE_MAX_LEVEL);
	return -1;
}

static void capsule_free(PyObject *cap)
{
	free(PyCapsule_GetContext(cap));
}

static PyObject *mod_new(PyObject *mod, PyObject *args)
{
	struct deflate_codec *codec;
	const char *name;
	PyObject *cap;
	int level;

	(void)mod;
	if (!PyArg_ParseTuple(args, "si:new", &name, &level))
		return NULL;
	if (strcmp(name, "deflate") != 0) {
		PyErr_Format(PyExc_ValueError, "no codec ops named '%s'", name);
		return NULL;
	}
	if (check_level(level) < 0)
		return NULL;
	codec = calloc(1, sizeof(*codec));
	if (codec == NULL)
		return PyErr_NoMemory();
	codec->level = level;
	cap = PyCapsule_New((void *)&deflate_ops, ZSWAP_CODEC_OPS_CAPSULE, capsule_free);
	if (cap == NULL) {
		free(codec);
		return NULL;
	}
	if (PyCapsule_SetContext(cap, codec) < 0) {
		free(codec);
		PyCapsule_SetDestructor(cap, NULL);
		Py_DECREF(cap);
		return NULL;
	}
	return cap;
}

static PyObject *mod_set_level(PyObject *mod, PyObject *args)
{
	struct deflate_codec *codec;
	PyObject *cap;
	int level;

	(void)mod;
	if (!PyArg_ParseTuple(args, "Oi:set_level", &cap, &level))
		return NULL;
	codec = codec_of(cap);
	if (codec == NULL || check_level(level) < 0)
		return NULL;
	__atomic_store_n(&codec->level, level, __ATOMIC_RELAXED);
	Py_RETURN_NONE;
}

static PyObject *mod_level(PyObject *mod, PyObject *cap)
{
	struct deflate_codec *codec = codec_of(cap);

	(void)mod;
	return codec == NULL ? NULL : PyLong_FromLong(codec_level(codec));
}

static PyMethodDef mod_methods[] = {
	{"new", mod_new, METH_VARARGS,
	 "new(name, level) -> a \"" ZSWAP_CODEC_OPS_CAPSULE "\" capsule with a codec of its own"},
	{"set_level", mod_set_level, METH_VARARGS,
	 "set_level(capsule, level): the level the capsule's codec compresses at from now on"},
	{"level", mod_level, METH_O, "level(capsule) -> the codec's current level"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef deflate_ops_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_deflate._ops",
	.m_doc = "The C codec ops of deflate (zswap_ops.h), linked with the system zlib.",
	.m_size = 0,
	.m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__ops(void)
{
	PyObject *m = PyModule_Create(&deflate_ops_module);

	if (m == NULL)
		return NULL;
	if (PyModule_AddIntConstant(m, "CODEC_OPS_VERSION", ZSWAP_CODEC_OPS_VERSION) < 0 ||
	    PyModule_AddStringConstant(m, "LIBRARY_VERSION", zlibVersion()) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
