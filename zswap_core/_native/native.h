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
	/* Protects nr_pages, peak, failures, limit and fail_next: C allocators charge
	 * pages from threads without the GIL. nr_pages is also stored atomically, for
	 * the store path's lock-free read of the pool size. */
	pthread_mutex_t lock;
	size_t nr_pages;
	size_t peak;
	size_t failures;
	Py_ssize_t limit;    /* -1: no cap */
	size_t fail_next;    /* refuse this many next pages */
	PyObject *fail_hook; /* Python callable or NULL; set with the GIL, its pointer
			      * read atomically (see page_fault_injected) */
} PageCounterObject;

extern PyTypeObject PageCounter_Type;

/* crc32.c: the IEEE CRC-32 that zlib.crc32 computes */
void zswap_crc32_init(void);
uint32_t zswap_crc32(const unsigned char *buf, size_t len);

/* codec.c: a compressor's C ops, bound to a pool (see zswap_ops.h) */
struct zswap_codec;
struct zswap_codec *codec_bind(PyObject *compressor); /* GIL */
void codec_hold(struct zswap_codec *zc);              /* any thread */
void codec_put(struct zswap_codec *zc);               /* GIL */
size_t codec_bound(struct zswap_codec *zc, size_t slen);
int codec_compress(struct zswap_codec *zc, const void *src, size_t slen, void *dst,
		   size_t *dlen);
int codec_decompress(struct zswap_codec *zc, const void *src, size_t slen, void *dst,
		     size_t dlen);
extern PyTypeObject CodecOps_Type;

/* gate.c: a codec that blocks when a test says so */
extern PyTypeObject Gate_Type;

/* zswap.c */
extern PyTypeObject Core_Type;
int zswap_core_module_init(PyObject *module);

#endif /* ZSWAP_NATIVE_H */
