/*
 * lzo_ops.c - the codec ops (zswap_ops.h) of zswap-lzo: LZO1X in C.
 *
 * zswap-core's native path compresses and decompresses pages through this table
 * without the GIL, into its own buffers. The stream is plain LZO1X without a
 * length header, as the plugin's Python methods (python-lzo, header=False) write
 * and read it: level 1 is LZO1X-1 (the kernel's), any level above LZO1X-999, as
 * python-lzo compresses them (byte for byte the same output, on the same liblzo2).
 * `lzo-rle` is an alias of `lzo` in this project and uses the same table.
 *
 *   1. the codec  - one per Compressor instance: the level, kept current
 *   2. contexts   - work memory per thread (LZO1X-999's only when used)
 *   3. compress   - into dst, or through a scratch buffer when dst is short
 *   4. decompress - lzo1x_decompress_safe, to exactly dlen bytes
 *   5. module     - new(name, level), set_level(capsule, level), level(capsule)
 *
 * No function of the table calls Python; each thread passes a context of its own.
 *
 * MIT licence, part of zswap-lzo.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lzo/lzo1x.h>

#include "zswap_ops.h"

#define LZO_OPS_MIN_LEVEL 1
#define LZO_OPS_MAX_LEVEL 9
/* The shortest LZO1X stream: the end-of-stream marker. */
#define LZO_MIN_STREAM 3

/* ---------------------------------------------------------------------------
 * 1. the codec
 * ------------------------------------------------------------------------- */

struct lzo_codec {
	int level; /* atomic: 1 = LZO1X-1, 2..9 = LZO1X-999 */
};

static int codec_level(void *codec)
{
	return __atomic_load_n(&((struct lzo_codec *)codec)->level, __ATOMIC_RELAXED);
}

/* lzo1x_worst_compress(), for both encoders; 0 for an input lzo_uint cannot hold. */
static size_t lzo_bound(void *codec, size_t slen)
{
	(void)codec;
	if (slen > (size_t)LZO_UINT_MAX - slen / 16 - 64 - 3)
		return 0;
	return slen + slen / 16 + 64 + 3;
}

/* ---------------------------------------------------------------------------
 * 2. contexts
 * ------------------------------------------------------------------------- */

struct lzo_ctx {
	void *wrk1;           /* LZO1X_1_MEM_COMPRESS bytes */
	void *wrk999;         /* LZO1X_999_MEM_COMPRESS bytes, made on first use */
	unsigned char *out;   /* scratch output for a dst shorter than the bound */
	size_t out_len;
};

static void lzo_ctx_free(void *codec, void *ctx)
{
	struct lzo_ctx *x = ctx;

	(void)codec;
	if (x == NULL)
		return;
	free(x->wrk1);
	free(x->wrk999);
	free(x->out);
	free(x);
}

static void *lzo_ctx_create(void *codec)
{
	struct lzo_ctx *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->wrk1 = malloc(LZO1X_1_MEM_COMPRESS);
	if (x->wrk1 == NULL) {
		lzo_ctx_free(codec, x);
		return NULL;
	}
	return x;
}

static void *wrk999(struct lzo_ctx *x)
{
	if (x->wrk999 == NULL)
		x->wrk999 = malloc(LZO1X_999_MEM_COMPRESS);
	return x->wrk999;
}

/* A scratch output of at least `len` bytes; NULL when out of memory. */
static unsigned char *scratch(struct lzo_ctx *x, size_t len)
{
	unsigned char *out;

	if (x->out_len >= len)
		return x->out;
	out = realloc(x->out, len);
	if (out == NULL)
		return NULL;
	x->out = out;
	x->out_len = len;
	return out;
}

/* ---------------------------------------------------------------------------
 * 3. compress
 * ------------------------------------------------------------------------- */

/* The LZO1X encoders take no output limit: they may write up to the bound. So a
 * dst shorter than that gets the output through the context's scratch buffer. */
static int lzo_compress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			size_t *dlen)
{
	struct lzo_ctx *x = ctx;
	int level = codec_level(codec); /* read once: one call, one level */
	size_t need = lzo_bound(codec, slen);
	unsigned char *out = dst;
	lzo_uint out_len = 0;
	void *wrk = x->wrk1;
	int rc;

	if (slen == 0 || need == 0)
		return -EINVAL;
	if (*dlen < need) {
		out = scratch(x, need);
		if (out == NULL)
			return -ENOMEM;
	}
	if (level > 1) {
		wrk = wrk999(x);
		if (wrk == NULL)
			return -ENOMEM;
		rc = lzo1x_999_compress(src, slen, out, &out_len, wrk);
	} else {
		rc = lzo1x_1_compress(src, slen, out, &out_len, wrk);
	}
	if (rc != LZO_E_OK || out_len > need)
		return -EINVAL;
	if (out_len > *dlen)
		return -ENOSPC;
	if (out != dst)
		memcpy(dst, out, out_len);
	*dlen = out_len;
	return 0;
}

/* ---------------------------------------------------------------------------
 * 4. decompress
 * ------------------------------------------------------------------------- */

/* The safe decoder refuses input overruns (a short stream), output overruns (one
 * that decodes to more than dlen bytes, never written past dst + dlen) and input
 * left after the end marker (LZO_E_INPUT_NOT_CONSUMED). */
static int lzo_decompress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			  size_t dlen)
{
	lzo_uint out_len = dlen;
	int rc;

	(void)codec;
	(void)ctx;
	if (slen < LZO_MIN_STREAM || dlen == 0 || slen > LZO_UINT_MAX || dlen > LZO_UINT_MAX)
		return -EINVAL;
	rc = lzo1x_decompress_safe(src, slen, dst, &out_len, NULL);
	if (rc != LZO_E_OK || out_len != dlen)
		return -EINVAL;
	return 0;
}

static const struct zswap_codec_ops lzo_ops = {
	.version = ZSWAP_CODEC_OPS_VERSION,
	.size = sizeof(struct zswap_codec_ops),
	.bound = lzo_bound,
	.ctx_create = lzo_ctx_create,
	.ctx_free = lzo_ctx_free,
	.compress = lzo_compress,
	.decompress = lzo_decompress,
};

/* ---------------------------------------------------------------------------
 * 5. module
 * ------------------------------------------------------------------------- */

/* The capsule's codec, if `cap` is one of this module's; NULL with an exception. */
static struct lzo_codec *codec_of(PyObject *cap)
{
	if (PyCapsule_IsValid(cap, ZSWAP_CODEC_OPS_CAPSULE) &&
	    PyCapsule_GetPointer(cap, ZSWAP_CODEC_OPS_CAPSULE) == &lzo_ops &&
	    PyCapsule_GetContext(cap) != NULL)
		return PyCapsule_GetContext(cap);
	PyErr_SetString(PyExc_TypeError, "expected a codec ops capsule of zswap_lzo._ops");
	return NULL;
}

static int check_level(int level)
{
	if (level >= LZO_OPS_MIN_LEVEL && level <= LZO_OPS_MAX_LEVEL)
		return 0;
	PyErr_Format(PyExc_ValueError, "lzo: level %d is not in %d..%d", level,
		     LZO_OPS_MIN_LEVEL, LZO_OPS_MAX_LEVEL);
	return -1;
}

static void capsule_free(PyObject *cap)
{
	free(PyCapsule_GetContext(cap));
}

/* "lzo" and "lzo-rle" (its alias here) name the same table. */
static PyObject *mod_new(PyObject *mod, PyObject *args)
{
	struct lzo_codec *codec;
	const char *name;
	PyObject *cap;
	int level;

	(void)mod;
	if (!PyArg_ParseTuple(args, "si:new", &name, &level))
		return NULL;
	if (strcmp(name, "lzo") != 0 && strcmp(name, "lzo-rle") != 0) {
		PyErr_Format(PyExc_ValueError, "no codec ops named '%s'", name);
		return NULL;
	}
	if (check_level(level) < 0)
		return NULL;
	codec = calloc(1, sizeof(*codec));
	if (codec == NULL)
		return PyErr_NoMemory();
	codec->level = level;
	cap = PyCapsule_New((void *)&lzo_ops, ZSWAP_CODEC_OPS_CAPSULE, capsule_free);
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
	struct lzo_codec *codec;
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
	struct lzo_codec *codec = codec_of(cap);

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

static struct PyModuleDef lzo_ops_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_lzo._ops",
	.m_doc = "The C codec ops of lzo and lzo-rle (zswap_ops.h), linked with the system liblzo2.",
	.m_size = 0,
	.m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__ops(void)
{
	PyObject *m;

	if (lzo_init() != LZO_E_OK) {
		PyErr_SetString(PyExc_ImportError, "zswap_lzo._ops: lzo_init() failed");
		return NULL;
	}
	m = PyModule_Create(&lzo_ops_module);
	if (m == NULL)
		return NULL;
	if (PyModule_AddIntConstant(m, "CODEC_OPS_VERSION", ZSWAP_CODEC_OPS_VERSION) < 0 ||
	    PyModule_AddStringConstant(m, "LIBRARY_VERSION", lzo_version_string()) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
