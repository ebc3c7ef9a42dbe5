/*
 * native.h - what the files of zswap-core's C extension (`zswap_core._core`)
 * share. Not a public header: plugins include zswap_ops.h only.
 */
#ifndef ZSWAP_NATIVE_H
#define ZSWAP_NATIVE_H

#include <Python.h>
#include <pthread.h>
#include <stdint.h>

#include "zswap_ops.h"

/* For the arguments a CPython slot signature imposes but we do not use. */
#define UNUSED __attribute__((unused))

/* page_alloc.c */
typedef struct {
	PyObject_HEAD
	struct zswap_page_acct acct; /* the exported table; see acct_owner() */
	/* Protects nr_pages, peak and failures: the counters C allocators change. */
	pthread_mutex_t lock;
	size_t nr_pages;
	size_t peak;
	size_t failures;
	Py_ssize_t limit;    /* -1: no cap */
	size_t fail_next;    /* GIL: refuse this many next pages */
	PyObject *fail_hook; /* GIL: Python callable or NULL */
} PageCounterObject;

extern PyTypeObject PageCounter_Type;

/* crc32.c: the IEEE CRC-32 that zlib.crc32 computes */
void zswap_crc32_init(void);
uint32_t zswap_crc32(const unsigned char *buf, size_t len);

/* zswap.c */
extern PyTypeObject Core_Type;
int zswap_core_module_init(PyObject *module);

#endif /* ZSWAP_NATIVE_H */
