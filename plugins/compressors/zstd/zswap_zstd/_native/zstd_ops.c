/*
 * zstd_ops.c - the codec ops (zswap_ops.h) of zswap-zstd: zstd in C.
 *
 * zswap-core's native path compresses and decompresses pages through this table
 * without the GIL, into its own buffers. The stream is one zstd frame without
 * content size, checksum or dictionary id, as the plugin's Python methods
 * (python-zstandard) write, and any single frame that decodes to exactly the
 * page's length is read back.
 *
 *   1. the codec  - one per Compressor instance: the level, kept current
 *   2. contexts   - a ZSTD_CCtx and a ZSTD_DCtx per thread, a scratch output
 *   3. compress   - ZSTD_compress2 at the level of the call
 *   4. decompress - one whole frame, to exactly dlen bytes
 *   5. module     - new(name, level), set_level(capsule, level), level(capsule)
 *
 * No function of the table calls Python; each thread passes a context of its own.
 *
 * MIT licence, part of zswap-zstd.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "zswap_ops.h"

/* zstd's levels as the plugin declares them (ZSTD_minCLevel() goes below 1). */
#define ZSTD_OPS_MIN_LEVEL 1

/* ---------------------------------------------------------------------------
 * 1. the codec
 * ------------------------------------------------------------------------- */

struct zstd_codec {
	int level; /* atomic: the compression level, kept current by the plugin */
};

static int codec_level(void *codec)
{
	return __atomic_load_n(&((struct zstd_codec *)codec)->level, __ATOMIC_RELAXED);
}

static size_t zstd_bound(void *codec, size_t slen)
{
	size_t n = ZSTD_compressBound(slen);

	(void)codec;
	return ZSTD_isError(n) ? 0 : n;
}

/* ---------------------------------------------------------------------------
 * 2. contexts
 * ------------------------------------------------------------------------- */

struct zstd_ctx {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;          /* the level cctx is set to */
	unsigned char *out; /* scratch output for a dst shorter than the bound */
	size_t out_len;
};

/* The frame format of the Python path: no optional header fields. */
static int cctx_setup(ZSTD_CCtx *cctx, int level)
{
	static const ZSTD_cParameter off[] = {
		ZSTD_c_contentSizeFlag,
		ZSTD_c_checksumFlag,
		ZSTD_c_dictIDFlag,
	};

	for (size_t k = 0; k < sizeof(off) / sizeof(off[0]); k++)
		if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, off[k], 0)))
			return -1;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)))
		return -1;
	return 0;
}

static void zstd_ctx_free(void *codec, void *ctx)
{
	struct zstd_ctx *x = ctx;

	(void)codec;
	if (x == NULL)
		return;
	ZSTD_freeCCtx(x->cctx);
	ZSTD_freeDCtx(x->dctx);
	free(x->out);
	free(x);
}

static void *zstd_ctx_create(void *codec)
{
	struct zstd_ctx *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->level = codec_level(codec);
	x->cctx = ZSTD_createCCtx();
	x->dctx = ZSTD_createDCtx();
	if (x->cctx == NULL || x->dctx == NULL || cctx_setup(x->cctx, x->level) < 0) {
		zstd_ctx_free(codec, x);
		return NULL;
	}
	return x;
}

/* ---------------------------------------------------------------------------
 * 3. compress
 * ------------------------------------------------------------------------- */

/* Bring the context to `level`; a context left mid-frame by a failed call is reset
 * first (ZSTD_compress2 resets it too, but a parameter is set before that). */
static int cctx_level(struct zstd_ctx *x, int level)
{
	if (x->level == level)
		return 0;
	ZSTD_CCtx_reset(x->cctx, ZSTD_reset_session_only);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(x->cctx, ZSTD_c_compressionLevel, level)))
		return -1;
	x->level = level;
	return 0;
}

/* Where to compress to: dst when it holds the bound, else the context's scratch
 * buffer (so that a short dst fails only when the output really does not fit,
 * and the frame does not depend on the room given). NULL when out of memory. */
static unsigned char *output(struct zstd_ctx *x, void *dst, size_t dlen, size_t need)
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

static int zstd_compress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			 size_t *dlen)
{
	struct zstd_ctx *x = ctx;
	size_t need = zstd_bound(codec, slen);
	unsigned char *out;
	size_t n;

	if (slen == 0 || need == 0 || cctx_level(x, codec_level(codec)) < 0)
		return -EINVAL;
	out = output(x, dst, *dlen, need);
	if (out == NULL)
		return -ENOMEM;
	n = ZSTD_compress2(x->cctx, out, need, src, slen);
	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? -ENOMEM : -EINVAL;
	if (n > *dlen)
		return -ENOSPC;
	if (out != dst)
		memcpy(dst, out, n);
	*dlen = n;
	return 0;
}

/* ---------------------------------------------------------------------------
 * 4. decompress
 * ------------------------------------------------------------------------- */

/* One frame that spans the whole input (no second frame, no trailing bytes, no
 * skippable frame alone) and decodes to exactly dlen bytes; zstd never writes past
 * dst + dlen and refuses a frame that would. */
static int zstd_decompress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			   size_t dlen)
{
	struct zstd_ctx *x = ctx;
	size_t n;

	(void)codec;
	if (slen == 0 || dlen == 0)
		return -EINVAL;
	n = ZSTD_findFrameCompressedSize(src, slen);
	if (ZSTD_isError(n) || n != slen)
		return -EINVAL;
	n = ZSTD_decompressDCtx(x->dctx, dst, dlen, src, slen);
	if (ZSTD_isError(n) || n != dlen)
		return -EINVAL;
	return 0;
}

static const struct zswap_codec_ops zstd_ops = {
	.version = ZSWAP_CODEC_OPS_VERSION,
	.size = sizeof(struct zswap_codec_ops),
	.bound = zstd_bound,
	.ctx_create = zstd_ctx_create,
	.ctx_free = zstd_ctx_free,
	.compress = zstd_compress,
	.decompress = zstd_decompress,
};

/* ---------------------------------------------------------------------------
 * 5. module
 * ------------------------------------------------------------------------- */

/* The capsule's codec, if `cap` is one of this module's; NULL with an exception. */
static struct zstd_codec *codec_of(PyObject *cap)
{
	if (PyCapsule_IsValid(cap, ZSWAP_CODEC_OPS_CAPSULE) &&
	    PyCapsule_GetPointer(cap, ZSWAP_CODEC_OPS_CAPSULE) == &zstd_ops &&
	    PyCapsule_GetContext(cap) != NULL)
		return PyCapsule_GetContext(cap);
	PyErr_SetString(PyExc_TypeError, "expected a codec ops capsule of zswap_zstd._ops");
	return NULL;
}

static int check_level(int level)
{
	if (level >= ZSTD_OPS_MIN_LEVEL && level <= ZSTD_maxCLevel())
		return 0;
	PyErr_Format(PyExc_ValueError, "zstd: level %d is not in %d..%d", level,
		     ZSTD_OPS_MIN_LEVEL, ZSTD_maxCLevel());
	return -1;
}

static void capsule_free(PyObject *cap)
{
	free(PyCapsule_GetContext(cap));
}

static PyObject *mod_new(PyObject *mod, PyObject *args)
{
	struct zstd_codec *codec;
	const char *name;
	PyObject *cap;
	int level;

	(void)mod;
	if (!PyArg_ParseTuple(args, "si:new", &name, &level))
		return NULL;
	if (strcmp(name, "zstd") != 0) {
		PyErr_Format(PyExc_ValueError, "no codec ops named '%s'", name);
		return NULL;
	}
	if (check_level(level) < 0)
		return NULL;
	codec = calloc(1, sizeof(*codec));
	if (codec == NULL)
		return PyErr_NoMemory();
	codec->level = level;
	cap = PyCapsule_New((void *)&zstd_ops, ZSWAP_CODEC_OPS_CAPSULE, capsule_free);
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
	struct zstd_codec *codec;
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
	struct zstd_codec *codec = codec_of(cap);

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

static struct PyModuleDef zstd_ops_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_zstd._ops",
	.m_doc = "The C codec ops of zstd (zswap_ops.h), linked with the system libzstd.",
	.m_size = 0,
	.m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__ops(void)
{
	PyObject *m = PyModule_Create(&zstd_ops_module);

	if (m == NULL)
		return NULL;
	if (PyModule_AddIntConstant(m, "CODEC_OPS_VERSION", ZSWAP_CODEC_OPS_VERSION) < 0 ||
	    PyModule_AddStringConstant(m, "LIBRARY_VERSION", ZSTD_versionString()) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
