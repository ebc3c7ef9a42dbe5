/*
 * page_alloc.c - the page allocator's counters, where C allocators can reach them.
 *
 * zswap_core.PageAllocator stands for the kernel's buddy allocator: every zpool
 * takes its pages from it, so the pool's size is exact and fault injection reaches
 * every allocator alike. Its state lives here, in C, so that:
 *   - the native store path reads nr_pages for the pool limit without a Python call;
 *   - a C allocator charges and uncharges pages through `struct zswap_page_acct`
 *     (zswap_ops.h), exported as the `page_acct` capsule.
 * The Python PageAllocator keeps the public methods and delegates to this type.
 *
 * MIT licence, part of zswap-core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>

#include "native.h"

/* ---------------------------------------------------------------------------
 * 1. charge / uncharge (the ops table)
 * ------------------------------------------------------------------------- */

static int page_fault_hook(PageCounterObject *pc);

static PageCounterObject *acct_owner(struct zswap_page_acct *acct)
{
	return (PageCounterObject *)((char *)acct - offsetof(PageCounterObject, acct));
}

/* One page's fault injection: fail_next first, then the Python hook (as the old
 * PageAllocator.fail callable). No lock held: the hook is Python. A caller without
 * the GIL (a C allocator on the GIL-free store path) gets it here, only when a hook
 * is set; PyGILState_Ensure is a no-op for a caller that holds it. */
static int page_fault_injected(PageCounterObject *pc)
{
	PyGILState_STATE gil;
	int hit = 0;

	pthread_mutex_lock(&pc->lock);
	if (pc->fail_next > 0) {
		pc->fail_next--;
		hit = 1;
	}
	pthread_mutex_unlock(&pc->lock);
	if (hit)
		return 1;
	if (__atomic_load_n(&pc->fail_hook, __ATOMIC_ACQUIRE) == NULL)
		return 0;
	gil = PyGILState_Ensure();
	hit = page_fault_hook(pc);
	PyGILState_Release(gil);
	return hit;
}

/* Call the Python fault hook, if one is (still) set: 1 to refuse the page. GIL. */
static int page_fault_hook(PageCounterObject *pc)
{
	PyObject *hook, *res;
	int hit;

	hook = pc->fail_hook;
	if (hook == NULL)
		return 0;
	Py_INCREF(hook); /* the hook may replace itself */
	res = PyObject_CallNoArgs(hook);
	hit = res == NULL ? -1 : PyObject_IsTrue(res);
	Py_XDECREF(res);
	if (hit < 0) {
		/* A fault hook that raises refuses the page and says why, as a warning
		 * (the Python counter gives the same one). */
		PyObject *type, *value, *tb;

		PyErr_Fetch(&type, &value, &tb);
		PyErr_NormalizeException(&type, &value, &tb);
		if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
				     "page allocator: fail hook %R raised %R; the page is refused",
				     hook, value ? value : Py_None) < 0)
			PyErr_WriteUnraisable(hook); /* warnings turned into errors */
		Py_XDECREF(type);
		Py_XDECREF(value);
		Py_XDECREF(tb);
		hit = 1;
	}
	Py_DECREF(hook);
	return hit;
}

/* Charge one page; 0 or -ENOMEM. The counters change under pc->lock. */
static int page_charge_one(PageCounterObject *pc)
{
	int refused = page_fault_injected(pc);

	pthread_mutex_lock(&pc->lock);
	if (!refused && pc->limit >= 0 && pc->nr_pages >= (size_t)pc->limit)
		refused = 1;
	if (refused) {
		pc->failures++;
	} else {
		/* atomic: the native store path reads it without this lock (pool_full) */
		__atomic_store_n(&pc->nr_pages, pc->nr_pages + 1, __ATOMIC_RELAXED);
		if (pc->nr_pages > pc->peak)
			pc->peak = pc->nr_pages;
	}
	pthread_mutex_unlock(&pc->lock);
	return refused ? -ENOMEM : 0;
}

static void page_uncharge(struct zswap_page_acct *acct, size_t nr)
{
	PageCounterObject *pc = acct_owner(acct);

	pthread_mutex_lock(&pc->lock);
	__atomic_store_n(&pc->nr_pages, nr > pc->nr_pages ? 0 : pc->nr_pages - nr,
			 __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pc->lock);
}

/* All or none: the pages of a zspage are taken together, and given back together
 * if one of them is refused (PageAllocator.alloc_page once per page, as before). */
static int page_charge(struct zswap_page_acct *acct, size_t nr)
{
	PageCounterObject *pc = acct_owner(acct);
	size_t got;

	for (got = 0; got < nr; got++) {
		if (page_charge_one(pc)) {
			page_uncharge(acct, got);
			return -ENOMEM;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * 2. the Python type
 * ------------------------------------------------------------------------- */

static PyObject *pc_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"page_size", "limit", NULL};
	Py_ssize_t page_size, limit = -1;
	PyObject *limit_obj = Py_None;
	PageCounterObject *pc;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "n|O", kwlist, &page_size, &limit_obj))
		return NULL;
	if (limit_obj != Py_None) {
		limit = PyLong_AsSsize_t(limit_obj);
		if (limit == -1 && PyErr_Occurred())
			return NULL;
		if (limit < 0) {
			PyErr_SetString(PyExc_ValueError, "limit must be >= 0 or None");
			return NULL;
		}
	}
	pc = (PageCounterObject *)type->tp_alloc(type, 0);
	if (pc == NULL)
		return NULL;
	pthread_mutex_init(&pc->lock, NULL);
	pc->acct.version = ZSWAP_PAGE_ACCT_VERSION;
	pc->acct.size = sizeof(struct zswap_page_acct);
	pc->acct.page_size = (size_t)page_size;
	pc->acct.charge = page_charge;
	pc->acct.uncharge = page_uncharge;
	pc->limit = limit;
	return (PyObject *)pc;
}

static int pc_traverse(PageCounterObject *pc, visitproc visit, void *arg)
{
	Py_VISIT(pc->fail_hook);
	return 0;
}

static int pc_clear(PageCounterObject *pc)
{
	Py_CLEAR(pc->fail_hook);
	return 0;
}

static void pc_dealloc(PageCounterObject *pc)
{
	PyObject_GC_UnTrack(pc);
	pc_clear(pc);
	pthread_mutex_destroy(&pc->lock);
	Py_TYPE(pc)->tp_free((PyObject *)pc);
}

static PyObject *pc_charge(PageCounterObject *pc, PyObject *arg)
{
	Py_ssize_t n = PyLong_AsSsize_t(arg);

	if (n == -1 && PyErr_Occurred())
		return NULL;
	if (n < 0) {
		PyErr_SetString(PyExc_ValueError, "cannot charge a negative number of pages");
		return NULL;
	}
	return PyBool_FromLong(page_charge(&pc->acct, (size_t)n) == 0);
}

static PyObject *pc_uncharge(PageCounterObject *pc, PyObject *arg)
{
	Py_ssize_t n = PyLong_AsSsize_t(arg);
	int over;

	if (n == -1 && PyErr_Occurred())
		return NULL;
	pthread_mutex_lock(&pc->lock);
	over = n < 0 || (size_t)n > pc->nr_pages;
	if (!over)
		__atomic_store_n(&pc->nr_pages, pc->nr_pages - (size_t)n, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pc->lock);
	if (over) {
		PyErr_SetString(PyExc_RuntimeError, "page allocator: more pages freed than allocated");
		return NULL;
	}
	Py_RETURN_NONE;
}

static void capsule_release_owner(PyObject *capsule)
{
	PyObject *owner = PyCapsule_GetContext(capsule);

	Py_XDECREF(owner);
}

/* A new capsule each time, holding a reference to the counter it points into. */
static PyObject *pc_get_acct(PageCounterObject *pc, UNUSED void *closure)
{
	PyObject *cap = PyCapsule_New(&pc->acct, ZSWAP_PAGE_ACCT_CAPSULE, capsule_release_owner);

	if (cap == NULL)
		return NULL;
	Py_INCREF(pc);
	if (PyCapsule_SetContext(cap, pc) < 0) {
		Py_DECREF(pc);
		Py_DECREF(cap);
		return NULL;
	}
	return cap;
}

static PyObject *pc_get_size(PageCounterObject *pc, UNUSED void *closure)
{
	size_t v;

	pthread_mutex_lock(&pc->lock);
	v = *(size_t *)((char *)pc + (Py_ssize_t)closure);
	pthread_mutex_unlock(&pc->lock);
	return PyLong_FromSize_t(v);
}

static PyObject *pc_get_limit(PageCounterObject *pc, UNUSED void *closure)
{
	if (pc->limit < 0)
		Py_RETURN_NONE;
	return PyLong_FromSsize_t(pc->limit);
}

static int pc_set_limit(PageCounterObject *pc, PyObject *value, UNUSED void *closure)
{
	Py_ssize_t v = -1;

	if (value == NULL) {
		PyErr_SetString(PyExc_AttributeError, "limit cannot be deleted");
		return -1;
	}
	if (value != Py_None) {
		v = PyLong_AsSsize_t(value);
		if (v == -1 && PyErr_Occurred())
			return -1;
		if (v < 0) {
			PyErr_SetString(PyExc_ValueError, "limit must be >= 0 or None");
			return -1;
		}
	}
	pthread_mutex_lock(&pc->lock); /* read by page_charge_one under it */
	pc->limit = v;
	pthread_mutex_unlock(&pc->lock);
	return 0;
}

static PyObject *pc_get_fail(PageCounterObject *pc, UNUSED void *closure)
{
	PyObject *hook = pc->fail_hook ? pc->fail_hook : Py_None;

	Py_INCREF(hook);
	return hook;
}

static int pc_set_fail(PageCounterObject *pc, PyObject *value, UNUSED void *closure)
{
	if (value != NULL && value != Py_None && !PyCallable_Check(value)) {
		PyErr_SetString(PyExc_TypeError, "fail must be a callable returning bool, or None");
		return -1;
	}
	PyObject *old = pc->fail_hook;

	value = value == Py_None ? NULL : value;
	Py_XINCREF(value);
	/* Read without the GIL by page_fault_injected, to know whether to take it. */
	__atomic_store_n(&pc->fail_hook, value, __ATOMIC_RELEASE);
	Py_XDECREF(old);
	return 0;
}

static PyObject *pc_get_fail_next(PageCounterObject *pc, UNUSED void *closure)
{
	size_t v;

	pthread_mutex_lock(&pc->lock);
	v = pc->fail_next;
	pthread_mutex_unlock(&pc->lock);
	return PyLong_FromSize_t(v);
}

static int pc_set_fail_next(PageCounterObject *pc, PyObject *value, UNUSED void *closure)
{
	Py_ssize_t v;

	if (value == NULL) {
		PyErr_SetString(PyExc_AttributeError, "fail_next cannot be deleted");
		return -1;
	}
	v = PyLong_AsSsize_t(value);
	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < 0) {
		PyErr_SetString(PyExc_ValueError, "fail_next must be >= 0");
		return -1;
	}
	pthread_mutex_lock(&pc->lock);
	pc->fail_next = (size_t)v;
	pthread_mutex_unlock(&pc->lock);
	return 0;
}

static PyMethodDef pc_methods[] = {
	{"charge", (PyCFunction)pc_charge, METH_O,
	 "charge(n) -> bool: account n pages, all or none (False: refused)"},
	{"uncharge", (PyCFunction)pc_uncharge, METH_O, "uncharge(n): give n pages back"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef pc_getset[] = {
	{"nr_pages", (getter)pc_get_size, NULL, "pages handed out",
	 (void *)offsetof(PageCounterObject, nr_pages)},
	{"peak", (getter)pc_get_size, NULL, "most pages ever handed out at once",
	 (void *)offsetof(PageCounterObject, peak)},
	{"failures", (getter)pc_get_size, NULL, "allocations refused",
	 (void *)offsetof(PageCounterObject, failures)},
	{"limit", (getter)pc_get_limit, (setter)pc_set_limit, "cap on pages, or None", NULL},
	{"fail", (getter)pc_get_fail, (setter)pc_set_fail, "fault hook: callable -> bool", NULL},
	{"fail_next", (getter)pc_get_fail_next, (setter)pc_set_fail_next,
	 "refuse this many next pages", NULL},
	{"page_acct", (getter)pc_get_acct, NULL,
	 "PyCapsule 'zswap.page_acct': struct zswap_page_acct for C allocators", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject PageCounter_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "zswap_core._core.PageCounter",
	.tp_doc = "The page allocator's counters and fault injection, in C.",
	.tp_basicsize = sizeof(PageCounterObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_new = pc_new,
	.tp_dealloc = (destructor)pc_dealloc,
	.tp_traverse = (traverseproc)pc_traverse,
	.tp_clear = (inquiry)pc_clear,
	.tp_methods = pc_methods,
	.tp_getset = pc_getset,
};
