/*
 * gate.c - a codec that stops where a test tells it to: `zswap_core._core.Gate`.
 *
 * The GIL-free store and load paths run in C, where the Python interleaver of the
 * conformance kit cannot reach. To force an interleaving there (a swapoff while a
 * store compresses, a store while a load decompresses), a test arms the gate: the
 * next compress or decompress blocks, without the GIL, until the test releases it,
 * and meanwhile the test runs whatever it wants to race against.
 *
 * The codec itself copies: its output is its input, so a stored page costs a page.
 *
 * MIT licence, part of zswap-core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "native.h"

enum { GATE_COMPRESS, GATE_DECOMPRESS, NR_GATES };

typedef struct {
	PyObject_HEAD
	/* Protects everything below. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int armed[NR_GATES]; /* block the next call of this kind */
	int blocked;         /* a call is waiting at the gate */
	int released;        /* the test let it go */
	long calls[NR_GATES];
} GateObject;

/* ---------------------------------------------------------------------------
 * the codec ops (no GIL)
 * ------------------------------------------------------------------------- */

static void gate_pass(GateObject *g, int kind)
{
	pthread_mutex_lock(&g->lock);
	g->calls[kind]++;
	if (g->armed[kind]) {
		g->armed[kind] = 0;
		g->blocked = 1;
		pthread_cond_broadcast(&g->cond);
		while (!g->released)
			pthread_cond_wait(&g->cond, &g->lock);
		g->released = 0;
		g->blocked = 0;
		pthread_cond_broadcast(&g->cond);
	}
	pthread_mutex_unlock(&g->lock);
}

static size_t gate_bound(UNUSED void *codec, size_t slen)
{
	return slen;
}

static void *gate_ctx_create(void *codec)
{
	return codec; /* no state of its own: any non-NULL pointer */
}

static void gate_ctx_free(UNUSED void *codec, UNUSED void *ctx)
{
}

static int gate_compress(void *codec, UNUSED void *ctx, const void *src, size_t slen, void *dst,
			 size_t *dlen)
{
	gate_pass(codec, GATE_COMPRESS);
	if (*dlen < slen)
		return -ENOSPC;
	memcpy(dst, src, slen);
	*dlen = slen;
	return 0;
}

static int gate_decompress(void *codec, UNUSED void *ctx, const void *src, size_t slen,
			   void *dst, size_t dlen)
{
	gate_pass(codec, GATE_DECOMPRESS);
	if (slen != dlen)
		return -EINVAL;
	memcpy(dst, src, dlen);
	return 0;
}

static const struct zswap_codec_ops gate_ops = {
	.version = ZSWAP_CODEC_OPS_VERSION,
	.size = sizeof(struct zswap_codec_ops),
	.bound = gate_bound,
	.ctx_create = gate_ctx_create,
	.ctx_free = gate_ctx_free,
	.compress = gate_compress,
	.decompress = gate_decompress,
};

/* ---------------------------------------------------------------------------
 * the Python type
 * ------------------------------------------------------------------------- */

static PyObject *gate_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	GateObject *g;

	if (!PyArg_ParseTuple(args, ":Gate") || (kw != NULL && PyDict_GET_SIZE(kw))) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_TypeError, "Gate() takes no arguments");
		return NULL;
	}
	g = (GateObject *)type->tp_alloc(type, 0);
	if (g == NULL)
		return NULL;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	return (PyObject *)g;
}

static void gate_dealloc(GateObject *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	Py_TYPE(g)->tp_free((PyObject *)g);
}

static int gate_kind(PyObject *arg)
{
	if (PyUnicode_Check(arg) && PyUnicode_CompareWithASCIIString(arg, "compress") == 0)
		return GATE_COMPRESS;
	if (PyUnicode_Check(arg) && PyUnicode_CompareWithASCIIString(arg, "decompress") == 0)
		return GATE_DECOMPRESS;
	PyErr_SetString(PyExc_ValueError, "expected 'compress' or 'decompress'");
	return -1;
}

static PyObject *gate_arm(GateObject *g, PyObject *arg)
{
	int kind = gate_kind(arg);

	if (kind < 0)
		return NULL;
	pthread_mutex_lock(&g->lock);
	g->armed[kind] = 1;
	pthread_mutex_unlock(&g->lock);
	Py_RETURN_NONE;
}

/* wait_blocked(timeout) -> bool: True once a call waits at the gate. The GIL is
 * released meanwhile: the caller at the gate runs without it. */
static PyObject *gate_wait_blocked(GateObject *g, PyObject *arg)
{
	double timeout = PyFloat_AsDouble(arg);
	struct timespec until;
	int blocked, rc = 0;

	if (timeout == -1.0 && PyErr_Occurred())
		return NULL;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)timeout;
	until.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&g->lock);
	while (!g->blocked && rc == 0)
		rc = pthread_cond_timedwait(&g->cond, &g->lock, &until);
	blocked = g->blocked;
	pthread_mutex_unlock(&g->lock);
	Py_END_ALLOW_THREADS
	return PyBool_FromLong(blocked);
}

static PyObject *gate_release(GateObject *g, UNUSED PyObject *unused)
{
	pthread_mutex_lock(&g->lock);
	g->released = 1;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	Py_RETURN_NONE;
}

static PyObject *gate_get_calls(GateObject *g, UNUSED void *closure)
{
	long c, d;

	pthread_mutex_lock(&g->lock);
	c = g->calls[GATE_COMPRESS];
	d = g->calls[GATE_DECOMPRESS];
	pthread_mutex_unlock(&g->lock);
	return Py_BuildValue("(ll)", c, d);
}

static void capsule_release_gate(PyObject *capsule)
{
	Py_XDECREF((PyObject *)PyCapsule_GetContext(capsule));
}

/* A new capsule each time, holding a reference to the gate (its codec). */
static PyObject *gate_get_ops(GateObject *g, UNUSED void *closure)
{
	PyObject *cap = PyCapsule_New((void *)&gate_ops, ZSWAP_CODEC_OPS_CAPSULE,
				      capsule_release_gate);

	if (cap == NULL)
		return NULL;
	Py_INCREF(g);
	if (PyCapsule_SetContext(cap, g) < 0) {
		Py_DECREF(g);
		Py_DECREF(cap);
		return NULL;
	}
	return cap;
}

static PyMethodDef gate_methods[] = {
	{"arm", (PyCFunction)gate_arm, METH_O,
	 "arm('compress'|'decompress'): the next such call blocks until release()"},
	{"wait_blocked", (PyCFunction)gate_wait_blocked, METH_O,
	 "wait_blocked(timeout) -> bool: a call is waiting at the gate"},
	{"release", (PyCFunction)gate_release, METH_NOARGS, "let the waiting call go"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef gate_getset[] = {
	{"calls", (getter)gate_get_calls, NULL, "(compress calls, decompress calls)", NULL},
	{"codec_ops", (getter)gate_get_ops, NULL, "PyCapsule 'zswap.codec_ops' (a copying codec)",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject Gate_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "zswap_core._core.Gate",
	.tp_doc = "Gate(): a copying codec whose next call blocks when armed (tests)",
	.tp_basicsize = sizeof(GateObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_new = gate_new,
	.tp_dealloc = (destructor)gate_dealloc,
	.tp_methods = gate_methods,
	.tp_getset = gate_getset,
};
