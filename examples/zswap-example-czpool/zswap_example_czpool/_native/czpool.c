/*
 * czpool.c - a small zpool allocator in C that exports zswap-core's ops table.
 *
 * The allocator itself is as simple as one can be: every object gets a block of
 * one page from malloc(), and that page is charged to zswap-core's page
 * allocator, so `nr_pages` is exactly the memory the objects occupy. Packing
 * objects densely is zsmalloc's job; this file shows the plumbing:
 *
 *   1. a handle table whose handles carry a generation, so that a stale or
 *      forged handle is answered with -EINVAL, never with a wild read;
 *   2. pages charged through `struct zswap_page_acct` (PageAllocator.page_acct),
 *      with none of our locks held, because charge() may run a Python fault hook;
 *   3. a pthread mutex that is held only around C work: no Python call, no
 *      charge(), no wait for the GIL while it is held;
 *   4. `struct zswap_zpool_ops` in a "zswap.zpool_ops" capsule whose context is
 *      the pool: zswap-core's native store/load path calls these functions
 *      directly, without a Python call per page.
 *
 * All C memory comes from malloc(). MIT licence.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zswap_ops.h" /* vendored unchanged from zswap-core */

/* A handle is 37 bits, as zswap packs it: [generation:13][slot index + 1:24]. */
#define IDX_BITS 24
#define GEN_BITS 13
#define IDX_MASK ((UINT64_C(1) << IDX_BITS) - 1)
#define GEN_MASK ((UINT32_C(1) << GEN_BITS) - 1)
#define MAX_SLOTS ((uint32_t)IDX_MASK - 1) /* so that MAX_HANDLE is never live */
#define NO_SLOT UINT32_MAX

struct slot {
	unsigned char *data; /* the object's page-sized block; NULL: slot is free */
	uint32_t len;        /* the object's size in bytes */
	uint32_t gen;        /* bumped at every free: older handles go stale */
	uint32_t next_free;  /* the free list, while data is NULL */
};

struct czpool {
	struct zswap_page_acct *acct; /* where pages are charged (set once) */
	size_t page_size;             /* acct->page_size */

	/* `lock` protects every field below it. It is held only around C work: never
	 * across a Python call or charge(), so it cannot deadlock with the GIL. */
	pthread_mutex_t lock;
	struct slot *slots;
	uint32_t nr_slots;  /* slots in use or on the free list */
	uint32_t cap_slots; /* slots allocated */
	uint32_t free_head; /* first free slot, or NO_SLOT */
	size_t nr_pages;    /* pages charged: one per live object */
	bool destroyed;
};

static uint64_t make_handle(uint32_t idx, uint32_t gen)
{
	return ((uint64_t)gen << IDX_BITS) | (idx + 1);
}

/* The live slot that `handle` names, or NULL. Call with the lock held. */
static struct slot *lookup(struct czpool *pool, uint64_t handle)
{
	uint64_t idx1 = handle & IDX_MASK;
	struct slot *s;

	if (handle >> (IDX_BITS + GEN_BITS) || idx1 == 0 || idx1 > pool->nr_slots)
		return NULL;
	s = &pool->slots[idx1 - 1];
	if (s->data == NULL || s->gen != (uint32_t)(handle >> IDX_BITS))
		return NULL;
	return s;
}

/* A free slot's index, growing the table if needed; NO_SLOT when out of memory.
 * Call with the lock held (realloc is C, not Python). */
static uint32_t take_slot(struct czpool *pool)
{
	uint32_t idx = pool->free_head;

	if (idx != NO_SLOT) {
		pool->free_head = pool->slots[idx].next_free;
		return idx;
	}
	if (pool->nr_slots == pool->cap_slots) {
		uint32_t cap = pool->cap_slots ? pool->cap_slots * 2 : 64;
		struct slot *grown;

		if (pool->cap_slots >= MAX_SLOTS)
			return NO_SLOT;
		if (cap > MAX_SLOTS)
			cap = MAX_SLOTS;
		grown = realloc(pool->slots, cap * sizeof(*grown));
		if (grown == NULL)
			return NO_SLOT;
		pool->slots = grown;
		pool->cap_slots = cap;
	}
	pool->slots[pool->nr_slots].gen = 0;
	return pool->nr_slots++;
}

/* Store `len` bytes of `src` (zero-filled if NULL) in a new object. */
static int czpool_alloc_write(struct czpool *pool, const void *src, size_t len, uint64_t *handle)
{
	unsigned char *data;
	uint32_t idx = NO_SLOT;
	bool destroyed;

	if (len == 0)
		return -EINVAL;
	if (len > pool->page_size)
		return -ENOSPC;
	pthread_mutex_lock(&pool->lock);
	destroyed = pool->destroyed;
	pthread_mutex_unlock(&pool->lock);
	if (destroyed)
		return -EINVAL;

	/* Charge first, with no lock of ours held: charge() may call Python. */
	if (pool->acct->charge(pool->acct, 1))
		return -ENOMEM;
	data = calloc(1, pool->page_size);
	if (data != NULL) {
		if (src != NULL)
			memcpy(data, src, len);
		pthread_mutex_lock(&pool->lock);
		destroyed = pool->destroyed; /* by a fault hook, inside charge() */
		if (!destroyed)
			idx = take_slot(pool);
		if (idx != NO_SLOT) {
			pool->slots[idx].data = data;
			pool->slots[idx].len = (uint32_t)len;
			pool->nr_pages++;
			*handle = make_handle(idx, pool->slots[idx].gen);
		}
		pthread_mutex_unlock(&pool->lock);
	}
	if (idx == NO_SLOT) {
		free(data);
		pool->acct->uncharge(pool->acct, 1);
		return destroyed ? -EINVAL : -ENOMEM;
	}
	return 0;
}

/* Copy the object's first `len` bytes to `dst`. */
static int czpool_read(struct czpool *pool, uint64_t handle, void *dst, size_t len)
{
	struct slot *s;
	int err = -EINVAL;

	pthread_mutex_lock(&pool->lock);
	s = lookup(pool, handle);
	if (s != NULL && len <= s->len) {
		memcpy(dst, s->data, len);
		err = 0;
	}
	pthread_mutex_unlock(&pool->lock);
	return err;
}

/* Copy `len` bytes of `src` to the object's start. */
static int czpool_write(struct czpool *pool, uint64_t handle, const void *src, size_t len)
{
	struct slot *s;
	int err = -EINVAL;

	pthread_mutex_lock(&pool->lock);
	s = lookup(pool, handle);
	if (s != NULL && len <= s->len) {
		memcpy(s->data, src, len);
		err = 0;
	}
	pthread_mutex_unlock(&pool->lock);
	return err;
}

static int czpool_free(struct czpool *pool, uint64_t handle)
{
	unsigned char *data = NULL;
	struct slot *s;

	pthread_mutex_lock(&pool->lock);
	s = lookup(pool, handle);
	if (s != NULL) {
		data = s->data;
		s->data = NULL;
		s->gen = (s->gen + 1) & GEN_MASK;
		s->next_free = pool->free_head;
		pool->free_head = (uint32_t)(s - pool->slots);
		pool->nr_pages--;
	}
	pthread_mutex_unlock(&pool->lock);

	if (data == NULL)
		return -EINVAL;
	free(data);
	pool->acct->uncharge(pool->acct, 1);
	return 0;
}

/* Free every object; the pool refuses every call afterwards. */
static void czpool_destroy(struct czpool *pool)
{
	size_t pages;
	uint32_t i;

	pthread_mutex_lock(&pool->lock);
	for (i = 0; i < pool->nr_slots; i++)
		free(pool->slots[i].data);
	free(pool->slots);
	pool->slots = NULL;
	pool->nr_slots = pool->cap_slots = 0;
	pool->free_head = NO_SLOT;
	pages = pool->nr_pages;
	pool->nr_pages = 0;
	pool->destroyed = true;
	pthread_mutex_unlock(&pool->lock);

	pool->acct->uncharge(pool->acct, pages);
}

/* ===========================================================================
 * The ops table. `pool` is the capsule's context: a PoolObject (below) that the
 * capsule keeps alive. Called with the GIL held (version 1 of the header).
 * ========================================================================= */

typedef struct {
	PyObject_HEAD
	struct czpool pool;
	PyObject *pages;   /* the PageAllocator: keeps pool.acct alive */
	PyObject *capsule; /* its "zswap.page_acct" capsule */
} PoolObject;

static int ops_alloc_write(void *pool, const void *src, size_t len, uint64_t *handle)
{
	return czpool_alloc_write(&((PoolObject *)pool)->pool, src, len, handle);
}

static int ops_read(void *pool, uint64_t handle, void *dst, size_t len)
{
	return czpool_read(&((PoolObject *)pool)->pool, handle, dst, len);
}

static int ops_free(void *pool, uint64_t handle)
{
	return czpool_free(&((PoolObject *)pool)->pool, handle);
}

static const struct zswap_zpool_ops czpool_ops = {
	.version = ZSWAP_ZPOOL_OPS_VERSION,
	.size = sizeof(struct zswap_zpool_ops),
	.alloc_write = ops_alloc_write,
	.read = ops_read,
	.free = ops_free,
};

static void ops_capsule_destructor(PyObject *capsule)
{
	Py_XDECREF(PyCapsule_GetContext(capsule)); /* the reference taken below */
}

/* Pool.zpool_ops: a new capsule per access that holds a reference to the pool. */
static PyObject *Pool_get_zpool_ops(PoolObject *self, void *Py_UNUSED(closure))
{
	PyObject *capsule = PyCapsule_New((void *)&czpool_ops, ZSWAP_ZPOOL_OPS_CAPSULE,
					  ops_capsule_destructor);

	if (capsule == NULL)
		return NULL;
	Py_INCREF(self);
	if (PyCapsule_SetContext(capsule, self) < 0) {
		Py_DECREF(self);
		Py_DECREF(capsule);
		return NULL;
	}
	return capsule;
}

/* ===========================================================================
 * The Python type: czpool._czpool.Pool(pages). Errors are zswap_core.ZpoolError.
 * ========================================================================= */

static PyTypeObject Pool_Type;
static PyObject *ZpoolError; /* zswap_core.ZpoolError */

static PyObject *raise_errno(int err)
{
	const char *why = err == -ENOSPC ? "object larger than a page"
			  : err == -ENOMEM ? "page allocation failed"
					   : "invalid handle or size";
	PyObject *exc = PyObject_CallFunction(ZpoolError, "is", -err, why);

	if (exc != NULL) {
		PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
		Py_DECREF(exc);
	}
	return NULL;
}

/* A handle argument; 0 (never a handle) for anything that is no handle. */
static uint64_t as_handle(PyObject *arg)
{
	unsigned long long v;

	if (!PyLong_Check(arg))
		return 0;
	v = PyLong_AsUnsignedLongLong(arg);
	if (v == (unsigned long long)-1 && PyErr_Occurred()) {
		PyErr_Clear();
		return 0;
	}
	return v;
}

static PyObject *Pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"pages", NULL};
	struct zswap_page_acct *acct;
	PyObject *pages, *capsule;
	PoolObject *self;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Pool", kwlist, &pages))
		return NULL;
	capsule = PyObject_GetAttrString(pages, "page_acct");
	if (capsule == NULL)
		return NULL;
	acct = PyCapsule_GetPointer(capsule, ZSWAP_PAGE_ACCT_CAPSULE);
	if (acct == NULL) {
		Py_DECREF(capsule);
		return NULL;
	}
	/* The ABI rule: a new enough version, and every field we call present. */
	if (acct->version < 1 ||
	    acct->size < offsetof(struct zswap_page_acct, uncharge) + sizeof(acct->uncharge) ||
	    acct->page_size == 0 || acct->page_size > UINT32_MAX) {
		Py_DECREF(capsule);
		return PyErr_Format(PyExc_ValueError, "page_acct version %u, size %u: not usable",
				    acct->version, acct->size);
	}
	self = (PoolObject *)type->tp_alloc(type, 0);
	if (self == NULL) {
		Py_DECREF(capsule);
		return NULL;
	}
	if (pthread_mutex_init(&self->pool.lock, NULL)) {
		Py_DECREF(capsule);
		Py_TYPE(self)->tp_free((PyObject *)self);
		return PyErr_NoMemory();
	}
	self->pool.acct = acct;
	self->pool.page_size = acct->page_size;
	self->pool.free_head = NO_SLOT;
	Py_INCREF(pages);
	self->pages = pages;
	self->capsule = capsule;
	return (PyObject *)self;
}

static void Pool_dealloc(PoolObject *self)
{
	czpool_destroy(&self->pool);
	pthread_mutex_destroy(&self->pool.lock);
	Py_DECREF(self->capsule);
	Py_DECREF(self->pages);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *handle_or_error(int err, uint64_t handle)
{
	return err ? raise_errno(err) : PyLong_FromUnsignedLongLong(handle);
}

static PyObject *Pool_malloc(PoolObject *self, PyObject *arg)
{
	long long size;
	uint64_t handle = 0;
	int overflow, err;

	if (!PyLong_CheckExact(arg)) /* not bool, float or str */
		return raise_errno(-EINVAL);
	size = PyLong_AsLongLongAndOverflow(arg, &overflow);
	if (overflow > 0)
		return raise_errno(-ENOSPC);
	if (overflow < 0 || size <= 0)
		return raise_errno(-EINVAL);
	err = czpool_alloc_write(&self->pool, NULL, (size_t)size, &handle);
	return handle_or_error(err, handle);
}

static PyObject *Pool_alloc_write(PoolObject *self, PyObject *arg)
{
	Py_buffer view;
	uint64_t handle = 0;
	int err;

	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	err = czpool_alloc_write(&self->pool, view.buf, (size_t)view.len, &handle);
	PyBuffer_Release(&view);
	return handle_or_error(err, handle);
}

static PyObject *Pool_read(PoolObject *self, PyObject *args)
{
	PyObject *handle, *out;
	Py_ssize_t size;
	int err;

	if (!PyArg_ParseTuple(args, "On:read", &handle, &size))
		return NULL;
	if (size < 0 || (size_t)size > self->pool.page_size)
		return raise_errno(-EINVAL);
	out = PyBytes_FromStringAndSize(NULL, size);
	if (out == NULL)
		return NULL;
	err = czpool_read(&self->pool, as_handle(handle), PyBytes_AS_STRING(out), (size_t)size);
	if (err) {
		Py_DECREF(out);
		return raise_errno(err);
	}
	return out;
}

static PyObject *Pool_write(PoolObject *self, PyObject *args)
{
	PyObject *handle;
	Py_buffer view;
	int err;

	if (!PyArg_ParseTuple(args, "Oy*:write", &handle, &view))
		return NULL;
	err = czpool_write(&self->pool, as_handle(handle), view.buf, (size_t)view.len);
	PyBuffer_Release(&view);
	if (err)
		return raise_errno(err);
	Py_RETURN_NONE;
}

static PyObject *Pool_free(PoolObject *self, PyObject *arg)
{
	int err = czpool_free(&self->pool, as_handle(arg));

	if (err)
		return raise_errno(err);
	Py_RETURN_NONE;
}

/* size(handle) -> the object's size; EINVAL if the handle is not live */
static PyObject *Pool_size(PoolObject *self, PyObject *arg)
{
	struct slot *s;
	long len = -1;

	pthread_mutex_lock(&self->pool.lock);
	s = lookup(&self->pool, as_handle(arg));
	if (s != NULL)
		len = (long)s->len;
	pthread_mutex_unlock(&self->pool.lock);
	if (len < 0)
		return raise_errno(-EINVAL);
	return PyLong_FromLong(len);
}

static PyObject *Pool_destroy(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	czpool_destroy(&self->pool);
	Py_RETURN_NONE;
}

static PyObject *Pool_get_nr_pages(PoolObject *self, void *Py_UNUSED(closure))
{
	size_t pages;

	pthread_mutex_lock(&self->pool.lock);
	pages = self->pool.nr_pages;
	pthread_mutex_unlock(&self->pool.lock);
	return PyLong_FromSize_t(pages);
}

static PyObject *Pool_get_page_size(PoolObject *self, void *Py_UNUSED(closure))
{
	return PyLong_FromSize_t(self->pool.page_size);
}

static PyMethodDef Pool_methods[] = {
	{"malloc", (PyCFunction)Pool_malloc, METH_O, "malloc(size) -> handle (zero-filled)"},
	{"alloc_write", (PyCFunction)Pool_alloc_write, METH_O, "alloc_write(data) -> handle"},
	{"read", (PyCFunction)Pool_read, METH_VARARGS, "read(handle, size) -> bytes"},
	{"write", (PyCFunction)Pool_write, METH_VARARGS, "write(handle, data)"},
	{"free", (PyCFunction)Pool_free, METH_O, "free(handle)"},
	{"size", (PyCFunction)Pool_size, METH_O, "size(handle) -> the object's size"},
	{"destroy", (PyCFunction)Pool_destroy, METH_NOARGS, "free everything; refuse all after"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Pool_getset[] = {
	{"nr_pages", (getter)Pool_get_nr_pages, NULL, "pages charged", NULL},
	{"page_size", (getter)Pool_get_page_size, NULL, "the page allocator's page size", NULL},
	{"zpool_ops", (getter)Pool_get_zpool_ops, NULL, "a zswap.zpool_ops capsule", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Pool_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "zswap_example_czpool._czpool.Pool",
	.tp_basicsize = sizeof(PoolObject),
	.tp_dealloc = (destructor)Pool_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Pool(pages): czpool's C pool, pages charged to pages.page_acct",
	.tp_methods = Pool_methods,
	.tp_getset = Pool_getset,
	.tp_new = Pool_new,
};

/* ===========================================================================
 * Test helpers: calls through a zpool_ops capsule, as zswap-core makes them.
 * ========================================================================= */

static const struct zswap_zpool_ops *capsule_ops(PyObject *capsule, void **pool)
{
	const struct zswap_zpool_ops *ops = PyCapsule_GetPointer(capsule, ZSWAP_ZPOOL_OPS_CAPSULE);

	if (ops == NULL)
		return NULL;
	if ((*pool = PyCapsule_GetContext(capsule)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError, "the capsule has no pool");
		return NULL;
	}
	return ops;
}

static PyObject *mod_ops_alloc_write(PyObject *Py_UNUSED(m), PyObject *args)
{
	const struct zswap_zpool_ops *ops;
	PyObject *capsule;
	Py_buffer view;
	uint64_t handle = 0;
	void *pool;
	int err;

	if (!PyArg_ParseTuple(args, "Oy*:_ops_alloc_write", &capsule, &view))
		return NULL;
	if ((ops = capsule_ops(capsule, &pool)) == NULL) {
		PyBuffer_Release(&view);
		return NULL;
	}
	err = ops->alloc_write(pool, view.buf, (size_t)view.len, &handle);
	PyBuffer_Release(&view);
	return handle_or_error(err, handle);
}

static PyObject *mod_ops_read(PyObject *Py_UNUSED(m), PyObject *args)
{
	const struct zswap_zpool_ops *ops;
	unsigned long long handle;
	PyObject *capsule, *out;
	Py_ssize_t n;
	void *pool;
	int err;

	if (!PyArg_ParseTuple(args, "OKn:_ops_read", &capsule, &handle, &n))
		return NULL;
	if (n < 0)
		return PyErr_Format(PyExc_ValueError, "negative length");
	if ((ops = capsule_ops(capsule, &pool)) == NULL)
		return NULL;
	if ((out = PyBytes_FromStringAndSize(NULL, n)) == NULL)
		return NULL;
	err = ops->read(pool, handle, PyBytes_AS_STRING(out), (size_t)n);
	if (err) {
		Py_DECREF(out);
		return raise_errno(err);
	}
	return out;
}

static PyObject *mod_ops_free(PyObject *Py_UNUSED(m), PyObject *args)
{
	const struct zswap_zpool_ops *ops;
	unsigned long long handle;
	PyObject *capsule;
	void *pool;
	int err;

	if (!PyArg_ParseTuple(args, "OK:_ops_free", &capsule, &handle))
		return NULL;
	if ((ops = capsule_ops(capsule, &pool)) == NULL)
		return NULL;
	if ((err = ops->free(pool, handle)) != 0)
		return raise_errno(err);
	Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
	{"_ops_alloc_write", mod_ops_alloc_write, METH_VARARGS, "ops->alloc_write via a capsule"},
	{"_ops_read", mod_ops_read, METH_VARARGS, "ops->read via a capsule"},
	{"_ops_free", mod_ops_free, METH_VARARGS, "ops->free via a capsule"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef czpool_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_example_czpool._czpool",
	.m_doc = "czpool: a small zpool in C exporting zswap-core's ops table",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__czpool(void)
{
	PyObject *core, *m;

	if ((core = PyImport_ImportModule("zswap_core")) == NULL)
		return NULL;
	ZpoolError = PyObject_GetAttrString(core, "ZpoolError");
	Py_DECREF(core);
	if (ZpoolError == NULL || PyType_Ready(&Pool_Type) < 0)
		return NULL;
	if ((m = PyModule_Create(&czpool_module)) == NULL)
		return NULL;
	Py_INCREF(&Pool_Type);
	if (PyModule_AddObject(m, "Pool", (PyObject *)&Pool_Type) < 0) {
		Py_DECREF(&Pool_Type);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
