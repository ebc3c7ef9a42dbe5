/*
 * lz4_ops.c - the codec ops (zswap_ops.h) of zswap-lz4: lz4 and lz4hc in C.
 *
 * zswap-core's native path compresses and decompresses pages through these
 * tables without the GIL, into its own buffers. The streams are the LZ4 block
 * format without a size prefix, as the plugin's Python methods (python-lz4,
 * store_size=False) write and read them.
 *
 *   1. the codec  - one per Compressor instance: the lz4hc level, kept current
 *   2. contexts   - the encoder's state per thread, and a scratch output
 *   3. compress   - a fresh stream at acceleration 1 (lz4), as python-lz4 does it,
 *                   and LZ4_compress_HC_extStateHC at the instance's level (lz4hc)
 *   4. decompress - LZ4_decompress_safe, to exactly dlen bytes (both tables)
 *   5. module     - new(name, level), set_level(capsule, level), level(capsule)
 *
 * No function of the tables calls Python; each thread passes a context of its
 * own (the compression state), so they run concurrently without locks.
 *
 * MIT licence, part of zswap-lz4.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lz4hc.h>

#include "zswap_ops.h"

/* ---------------------------------------------------------------------------
 * 1. the codec
 * ------------------------------------------------------------------------- */

struct lz4_codec {
	int level; /* atomic: lz4hc's level (1..12); 0 for lz4 */
};

static int codec_level(void *codec)
{
	return __atomic_load_n(&((struct lz4_codec *)codec)->level, __ATOMIC_RELAXED);
}

/* LZ4_COMPRESSBOUND in size_t; 0 for an input LZ4 cannot take. */
static size_t lz4_bound(void *codec, size_t slen)
{
	(void)codec;
	if (slen > LZ4_MAX_INPUT_SIZE)
		return 0;
	return slen + slen / 255 + 16;
}

/* ---------------------------------------------------------------------------
 * 2. contexts (both tables)
 * ------------------------------------------------------------------------- */

struct lz4_ctx {
	void *state;        /* an LZ4_stream_t (lz4) or LZ4_streamHC_t (lz4hc) */
	unsigned char *out; /* scratch output for a dst shorter than the bound */
	size_t out_len;
};

static void lz4_ctx_free(void *codec, void *ctx)
{
	struct lz4_ctx *x = ctx;

	(void)codec;
	if (x == NULL)
		return;
	free(x->state);
	free(x->out);
	free(x);
}

static void *ctx_new(size_t state_size)
{
	struct lz4_ctx *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->state = malloc(state_size);
	if (x->state == NULL) {
		free(x);
		return NULL;
	}
	return x;
}

static void *lz4_ctx_create(void *codec)
{
	(void)codec;
	return ctx_new((size_t)LZ4_sizeofState());
}

static void *lz4hc_ctx_create(void *codec)
{
	(void)codec;
	return ctx_new((size_t)LZ4_sizeofStateHC());
}

/* Where to compress to: dst when it holds the bound, else the context's scratch
 * buffer (so that a short dst fails only when the output really does not fit,
 * and the output does not depend on the room given). NULL when out of memory. */
static unsigned char *output(struct lz4_ctx *x, void *dst, size_t dlen, size_t need)
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

/* The encoder's result `n` (0: failed) written at `out`, handed to the caller. */
static int deliver(int n, const unsigned char *out, void *dst, size_t *dlen)
{
	if (n <= 0)
		return -EINVAL; /* with the bound's room, only bad input fails */
	if ((size_t)n > *dlen)
		return -ENOSPC;
	if (out != dst)
		memcpy(dst, out, (size_t)n);
	*dlen = (size_t)n;
	return 0;
}

/* ---------------------------------------------------------------------------
 * 3. compress: lz4 and lz4hc
 *
 * The output is byte for byte the Python path's (python-lz4 on the same liblz4
 * release), so that both backends store the same sizes: lz4 compresses as a new
 * stream's first block, as python-lz4 does, rather than with
 * LZ4_compress_fast_extState, whose hash table for inputs under 64 KiB differs.
 * ------------------------------------------------------------------------- */

static int lz4_compress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			size_t *dlen)
{
	struct lz4_ctx *x = ctx;
	size_t need = lz4_bound(codec, slen);
	unsigned char *out;
	int n;

	if (slen == 0 || need == 0)
		return -EINVAL;
	out = output(x, dst, *dlen, need);
	if (out == NULL)
		return -ENOMEM;
	LZ4_initStream(x->state, (size_t)LZ4_sizeofState()); /* no history: one page alone */
	n = LZ4_compress_fast_continue(x->state, src, (char *)out, (int)slen, (int)need, 1);
	return deliver(n, out, dst, dlen);
}

static int lz4hc_compress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			  size_t *dlen)
{
	struct lz4_ctx *x = ctx;
	int level = codec_level(codec); /* read once: one call, one level */
	size_t need = lz4_bound(codec, slen);
	unsigned char *out;
	int n;

	if (slen == 0 || need == 0)
		return -EINVAL;
	out = output(x, dst, *dlen, need);
	if (out == NULL)
		return -ENOMEM;
	n = LZ4_compress_HC_extStateHC(x->state, src, (char *)out, (int)slen, (int)need, level);
	return deliver(n, out, dst, dlen);
}

/* ---------------------------------------------------------------------------
 * 4. decompress (both tables)
 * ------------------------------------------------------------------------- */

/* The safe decoder never writes past dst + dlen and refuses input that does not
 * end where its last literals end; a block that decodes to fewer bytes is refused
 * here (the block format itself does not know the length). */
static int lz4_decompress(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			  size_t dlen)
{
	(void)codec;
	(void)ctx;
	if (slen == 0 || slen > INT_MAX || dlen == 0 || dlen > INT_MAX)
		return -EINVAL;
	if (LZ4_decompress_safe(src, dst, (int)slen, (int)dlen) != (int)dlen)
		return -EINVAL;
	return 0;
}

static const struct zswap_codec_ops lz4_ops = {
	.version = ZSWAP_CODEC_OPS_VERSION,
	.size = sizeof(struct zswap_codec_ops),
	.bound = lz4_bound,
	.ctx_create = lz4_ctx_create,
	.ctx_free = lz4_ctx_free,
	.compress = lz4_compress,
	.decompress = lz4_decompress,
};

static const struct zswap_codec_ops lz4hc_ops = {
	.version = ZSWAP_CODEC_OPS_VERSION,
	.size = sizeof(struct zswap_codec_ops),
	.bound = lz4_bound,
	.ctx_create = lz4hc_ctx_create,
	.ctx_free = lz4_ctx_free,
	.compress = lz4hc_compress,
	.decompress = lz4_decompress,
};

/* ---------------------------------------------------------------------------
 * 5. module
 * ------------------------------------------------------------------------- */

struct codec_kind {
	const char *name;
	const struct zswap_codec_ops *ops;
	int min_level, max_level;
};

static const struct codec_kind kinds[] = {
	{"lz4", &lz4_ops, 0, 0},
	{"lz4hc", &lz4hc_ops, 1, LZ4HC_CLEVEL_MAX}, /* as the plugin declares: 1..12 */
	{NULL, NULL, 0, 0},
};

static const struct codec_kind *kind_by_name(const char *name)
{
	for (const struct codec_kind *k = kinds; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	PyErr_Format(PyExc_ValueError, "no codec ops named '%s'", name);
	return NULL;
}

/* The kind of one of this module's capsules; NULL with an exception otherwise. */
static const struct codec_kind *kind_of(PyObject *cap)
{
	const void *ops;

	if (PyCapsule_IsValid(cap, ZSWAP_CODEC_OPS_CAPSULE)) {
		ops = PyCapsule_GetPointer(cap, ZSWAP_CODEC_OPS_CAPSULE);
		for (const struct codec_kind *k = kinds; k->name; k++)
			if (k->ops == ops && PyCapsule_GetContext(cap) != NULL)
				return k;
	}
	PyErr_SetString(PyExc_TypeError, "expected a codec ops capsule of zswap_lz4._ops");
	return NULL;
}

static int check_level(const struct codec_kind *k, int level)
{
	if (level >= k->min_level && level <= k->max_level)
		return 0;
	PyErr_Format(PyExc_ValueError, "%s: level %d is not in %d..%d", k->name, level,
		     k->min_level, k->max_level);
	return -1;
}

static void capsule_free(PyObject *cap)
{
	free(PyCapsule_GetContext(cap));
}

static PyObject *mod_new(PyObject *mod, PyObject *args)
{
	const struct codec_kind *k;
	struct lz4_codec *codec;
	const char *name;
	PyObject *cap;
	int level;

	(void)mod;
	if (!PyArg_ParseTuple(args, "si:new", &name, &level))
		return NULL;
	k = kind_by_name(name);
	if (k == NULL || check_level(k, level) < 0)
		return NULL;
	codec = calloc(1, sizeof(*codec));
	if (codec == NULL)
		return PyErr_NoMemory();
	codec->level = level;
	cap = PyCapsule_New((void *)k->ops, ZSWAP_CODEC_OPS_CAPSULE, capsule_free);
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
	const struct codec_kind *k;
	struct lz4_codec *codec;
	PyObject *cap;
	int level;

	(void)mod;
	if (!PyArg_ParseTuple(args, "Oi:set_level", &cap, &level))
		return NULL;
	k = kind_of(cap);
	if (k == NULL || check_level(k, level) < 0)
		return NULL;
	codec = PyCapsule_GetContext(cap);
	__atomic_store_n(&codec->level, level, __ATOMIC_RELAXED);
	Py_RETURN_NONE;
}

static PyObject *mod_level(PyObject *mod, PyObject *cap)
{
	(void)mod;
	if (kind_of(cap) == NULL)
		return NULL;
	return PyLong_FromLong(codec_level(PyCapsule_GetContext(cap)));
}

static PyMethodDef mod_methods[] = {
	{"new", mod_new, METH_VARARGS,
	 "new(name, level) -> a \"" ZSWAP_CODEC_OPS_CAPSULE "\" capsule with a codec of its own"},
	{"set_level", mod_set_level, METH_VARARGS,
	 "set_level(capsule, level): the level the capsule's codec compresses at from now on"},
	{"level", mod_level, METH_O, "level(capsule) -> the codec's current level"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef lz4_ops_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_lz4._ops",
	.m_doc = "The C codec ops of lz4 and lz4hc (zswap_ops.h), linked with the system liblz4.",
	.m_size = 0,
	.m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__ops(void)
{
	PyObject *m = PyModule_Create(&lz4_ops_module);

	if (m == NULL)
		return NULL;
	if (PyModule_AddIntConstant(m, "CODEC_OPS_VERSION", ZSWAP_CODEC_OPS_VERSION) < 0 ||
	    PyModule_AddStringConstant(m, "LIBRARY_VERSION", LZ4_versionString()) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
