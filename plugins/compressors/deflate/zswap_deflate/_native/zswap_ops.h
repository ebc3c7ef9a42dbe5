/*
 * zswap_ops.h - the C ops tables between zswap-core and its native plugins.
 *
 * The userspace analogue of the kernel's `struct zpool_driver`: an allocator
 * plugin written in C exports a table of function pointers in a PyCapsule, and
 * zswap-core's native hot path calls it directly, without a Python call per page.
 * The page allocator of zswap-core exports its own table the same way, so a C
 * allocator takes (and counts) its pages where the core can see them.
 *
 * ABI rules, as CPython's datetime C API:
 *   - `version` comes first and `size` second; a table only ever grows at its end;
 *   - a consumer checks `version >= what it needs` and `size >= the offset of the
 *     last field it calls`, and otherwise uses the Python methods instead;
 *   - a plugin vendors this header unchanged (tests compare the copies).
 *
 * Threading.
 *   - zpool ops version 1: every function is called with the GIL held.
 *   - zpool ops version 2 with ZSWAP_ZPOOL_NOGIL in `flags`: every function may be
 *     called without the GIL, from several threads at once; the core then releases
 *     the GIL around allocation, copy and free.
 *   - codec ops: always called without the GIL, from several threads at once, each
 *     thread with a context of its own (ctx_create).
 *   - A function that takes a C lock of its own must not call Python, nor wait for
 *     the GIL, while it holds that lock. The page allocator's charge() may call a
 *     Python fault hook (it takes the GIL for it when the caller has none), so an
 *     allocator calls it with none of its locks held.
 *
 * MIT licence, part of zswap-core.
 */
#ifndef ZSWAP_OPS_H
#define ZSWAP_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------
 * zpool ops: exported by an allocator instance as its `zpool_ops` attribute
 * ------------------------------------------------------------------------- */

#define ZSWAP_ZPOOL_OPS_VERSION 2
/* flags (version 2): every function may run without the GIL, concurrently. */
#define ZSWAP_ZPOOL_NOGIL 0x1u
/* The capsule's name. Its pointer is the (static) ops table; its context is the
 * pool instance, passed back as `pool` to every call. The capsule keeps the pool's
 * Python object alive, and a destroyed pool answers every call with -EINVAL. */
#define ZSWAP_ZPOOL_OPS_CAPSULE "zswap.zpool_ops"

struct zswap_zpool_ops {
	uint32_t version; /* ZSWAP_ZPOOL_OPS_VERSION the exporter was built with */
	uint32_t size;    /* sizeof(struct zswap_zpool_ops) in the exporter */

	/* Allocate `len` bytes and copy `src` into them (the store path's one call).
	 * Returns 0 and a handle in 1 .. 2**37-1, or -EINVAL (len 0), -ENOSPC (larger
	 * than the allocator can hold), -ENOMEM (the page allocator refused). */
	int (*alloc_write)(void *pool, const void *src, size_t len, uint64_t *handle);

	/* Copy the first `len` bytes of the object to `dst`. -EINVAL for a handle that
	 * is not live (freed, stale generation, forged), or `len` beyond the object. */
	int (*read)(void *pool, uint64_t handle, void *dst, size_t len);

	/* Free the object. -EINVAL for a handle that is not live; nothing changes. */
	int (*free)(void *pool, uint64_t handle);

	/* Version 2. ZSWAP_ZPOOL_NOGIL, or 0. */
	uint32_t flags;
};

/* ---------------------------------------------------------------------------
 * page allocator ops: exported by zswap_core.PageAllocator as `page_acct`
 * ------------------------------------------------------------------------- */

#define ZSWAP_PAGE_ACCT_VERSION 1
/* The capsule's pointer is a `struct zswap_page_acct` that lives as long as the
 * PageAllocator object; hold a reference to that object while you use it. */
#define ZSWAP_PAGE_ACCT_CAPSULE "zswap.page_acct"

struct zswap_page_acct {
	uint32_t version; /* ZSWAP_PAGE_ACCT_VERSION */
	uint32_t size;    /* sizeof(struct zswap_page_acct) in zswap-core */
	size_t page_size;

	/* Account `nr` new pages, all or none: fault injection (fail_next,
	 * fail_randomly, a Python `fail` hook) and the limit are consulted once per
	 * page, as PageAllocator.alloc_page() does. 0, or -ENOMEM when refused.
	 * May call Python: hold no lock of your own. */
	int (*charge)(struct zswap_page_acct *acct, size_t nr);

	/* Give `nr` pages back. Never fails; never calls Python. */
	void (*uncharge)(struct zswap_page_acct *acct, size_t nr);
};

/* ---------------------------------------------------------------------------
 * codec ops: exported by a compressor instance as its `codec_ops` attribute
 *
 * The analogue of the kernel's crypto_acomp: zswap-core compresses and decompresses
 * pages through it without the GIL, into its own buffers, with no Python object per
 * page. The compressor's Python methods stay, and must produce and accept the same
 * streams (the conformance kit checks both ways).
 * ------------------------------------------------------------------------- */

#define ZSWAP_CODEC_OPS_VERSION 1
/* The capsule's name. Its pointer is the (static) ops table; its context is the
 * codec instance (`codec` below: the parameters, such as the level, that the
 * plugin keeps current), valid as long as the capsule lives. */
#define ZSWAP_CODEC_OPS_CAPSULE "zswap.codec_ops"

struct zswap_codec_ops {
	uint32_t version; /* ZSWAP_CODEC_OPS_VERSION the exporter was built with */
	uint32_t size;    /* sizeof(struct zswap_codec_ops) in the exporter */

	/* The largest output compress() can produce from `slen` bytes. */
	size_t (*bound)(void *codec, size_t slen);

	/* A context (work memory, a zstd or zlib stream) for one thread at a time, or
	 * NULL when out of memory. The core keeps a few per codec and reuses them. */
	void *(*ctx_create)(void *codec);
	void (*ctx_free)(void *codec, void *ctx);

	/* Compress `slen` bytes at `src` into `dst`, which holds `*dlen` bytes: 0 and
	 * the output's length in *dlen; -ENOSPC when it does not fit; -EINVAL on any
	 * other failure. Reads the codec's current parameters (its level) each call. */
	int (*compress)(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			size_t *dlen);

	/* Decompress `slen` bytes into exactly `dlen` bytes at `dst`: 0 only when the
	 * stream is valid, ends where `src` ends, and decodes to exactly `dlen` bytes;
	 * -EINVAL otherwise (corrupt, short, overlong, trailing bytes). Never writes
	 * outside dst[0 .. dlen-1], whatever the input. */
	int (*decompress)(void *codec, void *ctx, const void *src, size_t slen, void *dst,
			  size_t dlen);
};

#endif /* ZSWAP_OPS_H */
