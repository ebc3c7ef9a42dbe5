/*
 * zsmalloc.c - the zsmalloc allocator of zswap-zsmalloc, in C.
 *
 * The same allocator as zswap_zsmalloc/_pool.py (the reference), step for step:
 * the same size classes, the same zspage picked by malloc, the same free-object
 * order, the same handle values, the same compaction. Differential tests drive
 * both with one sequence of operations and compare every result.
 *
 * Its structure follows the kernel's mm/zsmalloc.c (read for its design only,
 * nothing is copied): size classes, zspages in fullness groups, indirect handles,
 * objects that may straddle the pages of a zspage, compaction, and a lock per
 * size class. Unlike the kernel, the pages of one zspage are contiguous: they are
 * a run of pages in a large anonymous mapping (an arena), so a straddling object
 * is one memcpy.
 *
 * Memory: every byte here comes from malloc() or mmap(), never from PyMem_*
 * (tracemalloc's hooks want the GIL). Pages are counted by zswap-core's page
 * allocator through its `struct zswap_page_acct` (see zswap_ops.h).
 *
 * Locking. The ops table is version 2 with ZSWAP_ZPOOL_NOGIL: alloc_write, read
 * and free run without the GIL, from any number of threads at once. The locks:
 *
 *   pool->shards      "the tables lock": a reader-writer lock split in
 *                     ZS_NR_SHARDS rwlocks (a thread reads through a shard of its
 *                     own, a writer takes them all, in index order). Read side:
 *                     held by every operation from start to end, except across
 *                     charge(). Write side: only to move (grow) or drop the handle
 *                     table or the zspage descriptor table, for destroy and for
 *                     the consistency check. Protects those two tables' storage
 *                     and capacities (handles, handle_cap, zspages, zspage_cap)
 *                     and `dead`.
 *   class->lock       one mutex per size class: the class's fullness lists, mask
 *                     and counters (nr_zspages, obj_used); the descriptors of its
 *                     zspages (all fields but `class`); the contents of their
 *                     pages (object words, free lists, data); and the handle-table
 *                     entries of its objects (made live, moved, freed, mapped).
 *   pool->handle_lock the free-slot stack and the handle counters: free_slot,
 *                     nr_free_slots, nr_slots_used, reserved, gen_base, and the
 *                     entries of free slots.
 *   pool->page_lock   the arenas (table, bitmaps, free counts), the free
 *                     descriptor list (free_zspage), nr_zspage_ids, nr_zspages,
 *                     and the stores to nr_pages.
 *   pool->maps_lock   the mapping records of map()/unmap() (maps, nr_maps,
 *                     maps_cap).
 *
 * Lock order: tables (read or write side) -> one class->lock -> one of
 * handle_lock, page_lock, maps_lock. No two class locks are ever held together;
 * handle_lock, page_lock and maps_lock are leaves (nothing is taken under them);
 * the write side is taken with no lock held. No lock is held across charge(),
 * which may run a Python fault hook, and that hook may call into this pool. What
 * can wait for after the locks are dropped does (struct zs_defer): uncharge(),
 * munmap() of an emptied arena, dropping an emptied table. No Python code runs,
 * no Python object is created and the GIL is never waited for while any of these
 * locks is held; the ops never touch Python at all.
 *
 * Lock-free reads: a handle-table entry and a descriptor's `class` are read with
 * atomic loads (their writers store atomically, under the locks above).
 * zs_resolve() uses them to find which class lock to take, then checks them again
 * under it. nr_pages and pages_compacted are atomic counters.
 *
 * MIT licence, part of zswap-zsmalloc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "zswap_ops.h"

/* ===========================================================================
 * Constants
 *
 * The values of _classes.py: objects are multiples of ZS_ALIGN bytes, every
 * non-huge object has ZS_HANDLE_SIZE bytes in front of its data, classes start
 * at ZS_MIN_ALLOC_SIZE. A handle is `generation << 28 | slot`, below 2**37.
 * ========================================================================= */

#define ZS_ALIGN 8
#define ZS_HANDLE_SIZE 8
#define ZS_MIN_ALLOC_SIZE 32
#define ZS_MIN_CHAIN_SIZE 4
#define ZS_MAX_CHAIN_SIZE 16
#define ZS_MAX_PAGE_SIZE (1u << 20) /* objects per zspage must fit HE_OBJ_BITS */

#define NR_FULLNESS_GROUPS 12
#define ZS_EMPTY 0
#define ZS_FULL (NR_FULLNESS_GROUPS - 1)

#define ZS_SLOT_BITS 28
#define ZS_SLOT_MASK ((UINT64_C(1) << ZS_SLOT_BITS) - 1)
#define ZS_HANDLE_LIMIT (UINT64_C(1) << 37)
#define ZS_GEN_MAX 511 /* generations 1..511 keep handles below 2**37 */

#define ZS_NONE UINT32_MAX  /* no zspage / object / slot */
#define ZS_NO_CLASS 0xffffu /* a descriptor's `class` when it is no live zspage */

#define ZS_ARENA_MIN_BYTES ((size_t)4 << 20)
#define ZS_ARENA_ALIGN ((size_t)2 << 20) /* a transparent huge page */
#define ZS_MAX_ARENAS 65535

#define ZS_CACHELINE 64
#define ZS_NR_SHARDS 16 /* read-side shards of the tables lock */

/* Atomic accesses of what is read without a lock (see "Locking" above). */
#define zs_load(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define zs_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define zs_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define zs_sub(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)

static PyObject *ZpoolError; /* zswap_core.ZpoolError */

/* ===========================================================================
 * Size classes
 *
 * Slots run from 32 bytes in steps of page_size / 256 up to the page size. A
 * slot's zspage is the chain of 1..chain_size pages with the least tail waste
 * (the shortest on ties; a power of two takes one page). Walking the slots from
 * the largest down, a slot with the same (pages, objects) as the class above it
 * merges into that class. A one-page, one-object class is huge: its object has no
 * handle in front, the zspage descriptor names its owner instead.
 * ========================================================================= */

struct zs_group {
	uint32_t head, tail; /* zspage ids: the list's first and last element */
	uint32_t nr;
};

struct size_class {
	/* set at creation, then read-only */
	uint32_t index;       /* slot number (debugfs "class") */
	uint32_t first_index; /* lowest slot merged into it */
	uint32_t size;        /* bytes per object, handle included */
	uint32_t pages_per_zspage;
	uint32_t objs_per_zspage;
	uint32_t hdr;  /* ZS_HANDLE_SIZE, or 0 when huge */
	uint32_t dlen; /* bytes of data a mapping shows: size - hdr */
	bool huge;
	/* Protects the fields below, the class's zspages (their descriptors but
	 * `class`, the contents of their pages) and the handle-table entries of
	 * their objects. */
	pthread_mutex_t lock;
	uint32_t mask; /* bit g set: group g is not empty */
	uint32_t nr_zspages;
	uint64_t obj_used;
	struct zs_group groups[NR_FULLNESS_GROUPS];
} __attribute__((aligned(ZS_CACHELINE))); /* no false sharing between classes */

/* Pages per zspage for objects of `size`: least tail waste, shortest on ties. */
static uint32_t get_pages_per_zspage(size_t size, size_t page_size, uint32_t max_pages)
{
	uint32_t best = 1;
	size_t waste, best_waste;

	if ((size & (size - 1)) == 0)
		return 1;
	best_waste = page_size % size;
	for (uint32_t pages = 2; pages <= max_pages; pages++) {
		waste = (pages * page_size) % size;
		if (waste < best_waste) {
			best_waste = waste;
			best = pages;
		}
	}
	return best;
}

/* The fullness group (0..11) of a zspage with `inuse` of `objs` objects used. */
static inline uint32_t get_fullness_group(uint32_t inuse, uint32_t objs)
{
	if (inuse == 0)
		return ZS_EMPTY;
	if (inuse >= objs)
		return ZS_FULL;
	return (uint32_t)((uint64_t)inuse * 100 / objs) / 10 + 1;
}

/* ===========================================================================
 * Zspages, arenas and fullness groups
 *
 * A zspage is a run of pages_per_zspage contiguous pages inside an arena, and a
 * 32-byte descriptor in pool->zspages (indexed by a zspage id, so the table can
 * grow). Free objects are linked through their first word (the handle word), as
 * the kernel links them: `next << 1`; an allocated object's first word is
 * `slot << 1 | 1`, its handle slot (the back-pointer compaction needs).
 *
 * Each class keeps one list per fullness group. They behave as the reference's
 * Python lists: append at the tail, remove by moving the tail element into the
 * removed one's place, malloc takes the tail of the fullest non-full group. Here
 * they are doubly linked through the descriptors, so a move never allocates.
 *
 * Arenas are anonymous mappings (4 MiB or more, 2 MiB aligned, MADV_HUGEPAGE)
 * with a bitmap of used pages; an arena left with no used page is unmapped.
 * ========================================================================= */

struct zspage {
	char *base;    /* first byte of its pages */
	uint32_t prev; /* neighbours in its fullness list; `next` also links unused ids */
	uint32_t next;
	uint32_t inuse;   /* objects allocated */
	uint32_t freeobj; /* first free object (huge: the owner's slot once allocated) */
	uint16_t arena;   /* index in pool->arenas */
	uint16_t class;   /* index in pool->classes, or ZS_NO_CLASS; atomic (zs_resolve) */
	uint8_t fg;       /* fullness group; 0: in no list */
	uint8_t skip;     /* compaction: holds only mapped objects, do not take again */
	uint8_t isolated; /* compaction's destination, out of the lists meanwhile */
};

struct zs_arena {
	char *base;
	uint32_t nr_pages;
	uint32_t nr_free;
	uint32_t hint;              /* no free page below this one */
	struct zs_arena *dead_next; /* emptied, waiting for munmap (struct zs_defer) */
	uint64_t bitmap[];
};

/* ===========================================================================
 * Handles and mappings
 *
 * The handle table holds one 64-bit word per slot:
 *   bits 0..8   the generation last given out from the slot (1..511)
 *   bit  9      live: the slot names an object
 *   bit  10     mapped: at least one mapping of the object is outstanding
 *   bits 11..31 the object's index in its zspage
 *   bits 32..63 the zspage id; for a free slot, the next free slot (a stack)
 * A handle is accepted only when its slot is live with the handle's generation.
 * When the last handle is freed the table is dropped; new slots then start one
 * generation above the highest seen, so no old handle becomes valid again. A
 * malloc into an empty pool grows the table before charge(); refused, it drops
 * the table again (handle_unreserve), so a pool with no object holds no table.
 * Slots not handed out yet read as 0 (not live): the table's tail is zeroed.
 *
 * map() hands out a private copy (a bytearray) and records it; unmap() copies it
 * back (RW, WO) and forgets it. No Python object ever points into an arena. A
 * freed object's records are orphaned (slot ZS_NONE), not released: the ops may
 * run without the GIL. A Python method releases orphans (zs_reap_orphans).
 * ========================================================================= */

#define HE_GEN_MASK UINT64_C(0x1ff)
#define HE_LIVE (UINT64_C(1) << 9)
#define HE_MAPPED (UINT64_C(1) << 10)
#define HE_OBJ_SHIFT 11
#define HE_OBJ_MASK ((UINT64_C(1) << 21) - 1)
#define HE_ID_SHIFT 32

#define ZS_MAP_RO 1 /* MapMode values */
#define ZS_MAP_WO 2

struct zs_mapping {
	uint32_t slot; /* ZS_NONE: orphaned (its object was freed) */
	int mode;
	unsigned long thread;
	PyObject *buf; /* the bytearray the mapping shows (a strong reference) */
};

/* ===========================================================================
 * The pool
 * ========================================================================= */

struct zs_shard {
	pthread_rwlock_t lock;
} __attribute__((aligned(ZS_CACHELINE)));

struct zs_pool {
	/* set at creation, then read-only */
	size_t page_size;
	uint32_t chain_size;
	uint32_t delta;
	uint32_t nr_slots;
	uint32_t nr_classes;
	uint32_t huge_class_size;
	size_t arena_bytes;
	struct size_class *classes; /* their locks are initialized when nr_classes > 0 */
	uint16_t *slot_class;       /* slot -> index in classes */
	struct zswap_page_acct *acct;

	/* The tables lock (see "Locking"); NULL until initialized. */
	struct zs_shard *shards;
	bool dead; /* destroyed; set under the write side */

	/* read by Python without a lock */
	uint64_t nr_pages;        /* atomic; stored under page_lock */
	uint64_t pages_compacted; /* atomic */

	/* the handle table: storage and capacity change under the write side */
	uint64_t *handles;
	uint32_t handle_cap;

	/* Protects the free-slot stack and the counters below, and the entries of
	 * free slots. */
	pthread_mutex_t handle_lock;
	uint32_t nr_slots_used; /* slots handed out so far */
	uint32_t free_slot;     /* top of the free-slot stack */
	uint32_t nr_free_slots;
	uint32_t reserved; /* slots promised to mallocs in progress */
	uint32_t gen_base; /* generation of a slot used for the first time */

	/* the zspage descriptor table: storage and capacity change under the write side */
	struct zspage *zspages;
	uint32_t zspage_cap;

	/* Protects the arenas, the free descriptor list and the counters below. */
	pthread_mutex_t page_lock;
	uint32_t nr_zspage_ids; /* descriptors handed out so far */
	uint32_t free_zspage;   /* unused descriptors, linked by `next` */
	uint32_t nr_zspages;    /* live zspages (descriptors in use) */
	struct zs_arena **arenas;
	uint32_t nr_arena_ids;
	uint32_t nr_arenas;

	/* Protects the mapping records. */
	pthread_mutex_t maps_lock;
	struct zs_mapping *maps; /* outstanding mappings, oldest first */
	uint32_t nr_maps;
	uint32_t maps_cap;
	uint32_t nr_orphans; /* atomic; records of freed objects (slot ZS_NONE) */

	/* atomic: arenas ever mapped and unmapped; equal once every page is back (tests:
	 * an arena a malloc mapped in vain must be unmapped, whatever else maps memory) */
	uint64_t arenas_mapped, arenas_unmapped;
};

/* -- the tables lock ---------------------------------------------------------- */

/* This thread's read-side shard: threads are dealt out over the shards in turn. */
static unsigned zs_my_shard(void)
{
	static unsigned next_shard;
	static __thread unsigned shard; /* 1 + the shard, 0 before the first use */

	if (!shard)
		shard = 1 + __atomic_fetch_add(&next_shard, 1, __ATOMIC_RELAXED) % ZS_NR_SHARDS;
	return shard - 1;
}

/* Take the read side; the value to pass to zs_read_end(). */
static inline unsigned zs_read_begin(struct zs_pool *pool)
{
	unsigned s = zs_my_shard();

	pthread_rwlock_rdlock(&pool->shards[s].lock);
	return s;
}

static inline void zs_read_end(struct zs_pool *pool, unsigned s)
{
	pthread_rwlock_unlock(&pool->shards[s].lock);
}

/* The write side: every shard, in index order, with no other lock held. */
static void zs_write_begin(struct zs_pool *pool)
{
	for (unsigned s = 0; s < ZS_NR_SHARDS; s++)
		pthread_rwlock_wrlock(&pool->shards[s].lock);
}

static void zs_write_end(struct zs_pool *pool)
{
	for (unsigned s = ZS_NR_SHARDS; s-- > 0;)
		pthread_rwlock_unlock(&pool->shards[s].lock);
}

static int zs_shards_init(struct zs_pool *pool)
{
	pthread_rwlockattr_t attr;
	void *mem;
	unsigned s;

	if (posix_memalign(&mem, ZS_CACHELINE, ZS_NR_SHARDS * sizeof(struct zs_shard)))
		return -ENOMEM;
	if (pthread_rwlockattr_init(&attr)) {
		free(mem);
		return -ENOMEM;
	}
	/* a waiting writer (a table to grow) is not starved by a stream of readers */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pool->shards = mem;
	for (s = 0; s < ZS_NR_SHARDS; s++) {
		if (pthread_rwlock_init(&pool->shards[s].lock, &attr))
			break;
	}
	pthread_rwlockattr_destroy(&attr);
	if (s < ZS_NR_SHARDS) {
		while (s-- > 0)
			pthread_rwlock_destroy(&pool->shards[s].lock);
		free(mem);
		pool->shards = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void zs_shards_destroy(struct zs_pool *pool)
{
	if (!pool->shards)
		return;
	for (unsigned s = 0; s < ZS_NR_SHARDS; s++)
		pthread_rwlock_destroy(&pool->shards[s].lock);
	free(pool->shards);
	pool->shards = NULL;
}

/* What an operation leaves for after its locks are dropped (zs_defer_run). */
struct zs_defer {
	size_t uncharge;          /* pages to give back to the page allocator */
	struct zs_arena *arenas;  /* emptied arenas to unmap, linked by dead_next */
	bool drop_handles;        /* the handle table may be empty: drop it */
	bool drop_zspages;        /* the descriptor table may be empty: drop it */
};

/* The next capacity of a table: an eighth more, so that at most 1/8 is slack
 * (realloc of a large block is an mremap, not a copy). */
static inline uint32_t zs_grow(uint32_t cap, uint32_t first)
{
	uint32_t more = cap / 8;

	if (!cap)
		return first;
	return cap > UINT32_MAX - more ? UINT32_MAX : cap + (more ? more : 1);
}

/* -- size class table ----------------------------------------------------- */

static inline uint32_t zs_slot_for(const struct zs_pool *pool, size_t size)
{
	size_t slot;

	if (size <= ZS_MIN_ALLOC_SIZE)
		return 0;
	slot = (size - ZS_MIN_ALLOC_SIZE + pool->delta - 1) / pool->delta;
	return slot < pool->nr_slots ? (uint32_t)slot : pool->nr_slots - 1;
}

static inline struct size_class *zs_class_for(struct zs_pool *pool, size_t user_size)
{
	return &pool->classes[pool->slot_class[zs_slot_for(pool, user_size + ZS_HANDLE_SIZE)]];
}

static void zs_init_class(struct size_class *class, uint32_t slot, uint32_t size,
			  uint32_t pages, uint32_t objs)
{
	memset(class, 0, sizeof(*class));
	class->index = slot;
	class->first_index = slot;
	class->size = size;
	class->pages_per_zspage = pages;
	class->objs_per_zspage = objs;
	class->huge = pages == 1 && objs == 1;
	class->hdr = class->huge ? 0 : ZS_HANDLE_SIZE;
	class->dlen = size - class->hdr;
	for (int g = 0; g < NR_FULLNESS_GROUPS; g++)
		class->groups[g].head = class->groups[g].tail = ZS_NONE;
}

/* Build pool->classes (cache-line aligned, their locks initialized) and
 * pool->slot_class; 0 or -ENOMEM. */
static int zs_build_classes(struct zs_pool *pool)
{
	size_t page_size = pool->page_size;
	uint32_t nr = 0, slot, i;
	struct size_class *tmp;
	void *mem;

	pool->delta = (uint32_t)(page_size >> 8);
	pool->nr_slots = (uint32_t)((page_size - ZS_MIN_ALLOC_SIZE + pool->delta - 1) / pool->delta) + 1;
	pool->slot_class = malloc(pool->nr_slots * sizeof(*pool->slot_class));
	if (posix_memalign(&mem, ZS_CACHELINE, pool->nr_slots * sizeof(*tmp)))
		mem = NULL;
	tmp = mem;
	if (!tmp || !pool->slot_class) {
		free(tmp);
		return -ENOMEM;
	}
	/* from the largest slot down; tmp[] is filled largest first, reversed below */
	for (slot = pool->nr_slots; slot-- > 0;) {
		size_t sz = ZS_MIN_ALLOC_SIZE + (size_t)slot * pool->delta;
		uint32_t size = (uint32_t)(sz < page_size ? sz : page_size);
		uint32_t pages = get_pages_per_zspage(size, page_size, pool->chain_size);
		uint32_t objs = (uint32_t)(pages * page_size / size);
		struct size_class *last = nr ? &tmp[nr - 1] : NULL;

		if (pages != 1 && objs != 1 && !pool->huge_class_size)
			pool->huge_class_size = size - (ZS_HANDLE_SIZE - 1);
		if (last && last->pages_per_zspage == pages && last->objs_per_zspage == objs) {
			last->first_index = slot;
			pool->slot_class[slot] = (uint16_t)(nr - 1);
			continue;
		}
		zs_init_class(&tmp[nr], slot, size, pages, objs);
		pool->slot_class[slot] = (uint16_t)nr++;
	}
	for (slot = 0; slot < pool->nr_slots; slot++)
		pool->slot_class[slot] = (uint16_t)(nr - 1 - pool->slot_class[slot]);
	if (posix_memalign(&mem, ZS_CACHELINE, nr * sizeof(*tmp))) {
		free(tmp);
		return -ENOMEM;
	}
	pool->classes = mem;
	for (i = 0; i < nr; i++) {
		pool->classes[i] = tmp[nr - 1 - i];
		if (pthread_mutex_init(&pool->classes[i].lock, NULL)) {
			while (i-- > 0)
				pthread_mutex_destroy(&pool->classes[i].lock);
			free(tmp);
			return -ENOMEM;
		}
	}
	free(tmp);
	pool->nr_classes = nr;
	return 0;
}

/* Pages compaction could free in `class` (the kernel's zs_can_compact; class lock). */
static inline uint64_t zs_can_compact(const struct size_class *class)
{
	uint64_t wasted = (uint64_t)class->nr_zspages * class->objs_per_zspage - class->obj_used;

	return wasted / class->objs_per_zspage * class->pages_per_zspage;
}

/* -- arenas (page_lock) ------------------------------------------------------- */

static inline bool arena_test(const struct zs_arena *a, uint32_t p)
{
	return a->bitmap[p / 64] >> (p % 64) & 1;
}

static void arena_set_run(struct zs_arena *a, uint32_t start, uint32_t nr, bool used)
{
	for (uint32_t p = start; p < start + nr; p++) {
		if (used)
			a->bitmap[p / 64] |= UINT64_C(1) << (p % 64);
		else
			a->bitmap[p / 64] &= ~(UINT64_C(1) << (p % 64));
	}
}

/* First run of `nr` free pages in `a`, or ZS_NONE. */
static uint32_t arena_find_run(const struct zs_arena *a, uint32_t nr)
{
	uint32_t run = 0, start = a->hint;

	for (uint32_t p = a->hint; p < a->nr_pages; p++) {
		if (p % 64 == 0 && run == 0 && a->bitmap[p / 64] == UINT64_MAX) {
			p += 63;
			start = p + 1;
			continue;
		}
		if (arena_test(a, p)) {
			run = 0;
			start = p + 1;
		} else if (++run == nr) {
			return start;
		}
	}
	return ZS_NONE;
}

static size_t arena_struct_bytes(uint32_t nr_pages)
{
	return sizeof(struct zs_arena) + (nr_pages + 63) / 64 * sizeof(uint64_t);
}

/* A new arena, mapped but not installed: called with no lock held (mmap). */
static struct zs_arena *zs_arena_create(struct zs_pool *pool)
{
	size_t len = pool->arena_bytes + ZS_ARENA_ALIGN, head, tail;
	uint32_t nr_pages = (uint32_t)(pool->arena_bytes / pool->page_size);
	uintptr_t start;
	char *raw;
	struct zs_arena *a;

	a = calloc(1, arena_struct_bytes(nr_pages));
	if (!a)
		return NULL;
	raw = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		free(a);
		return NULL;
	}
	/* keep the 2 MiB aligned part, so that huge pages can back it */
	start = ((uintptr_t)raw + ZS_ARENA_ALIGN - 1) & ~(uintptr_t)(ZS_ARENA_ALIGN - 1);
	head = start - (uintptr_t)raw;
	tail = len - head - pool->arena_bytes;
	if (head)
		munmap(raw, head);
	if (tail)
		munmap((char *)start + pool->arena_bytes, tail);
#ifdef MADV_HUGEPAGE
	madvise((void *)start, pool->arena_bytes, MADV_HUGEPAGE);
#endif
	a->base = (char *)start;
	a->nr_pages = nr_pages;
	a->nr_free = nr_pages;
	zs_add(&pool->arenas_mapped, 1);
	return a;
}

/* Unmap an arena that is no longer installed (no lock held). */
static void zs_arena_destroy(struct zs_pool *pool, struct zs_arena *a)
{
	munmap(a->base, pool->arena_bytes);
	zs_add(&pool->arenas_unmapped, 1);
	free(a);
}

/* Install `a` in the first free slot of pool->arenas (page_lock); its id or ZS_NONE. */
static uint32_t zs_arena_install(struct zs_pool *pool, struct zs_arena *a)
{
	uint32_t id;

	for (id = 0; id < pool->nr_arena_ids && pool->arenas[id]; id++)
		;
	if (id == ZS_MAX_ARENAS)
		return ZS_NONE;
	if (id == pool->nr_arena_ids) {
		struct zs_arena **grown = realloc(pool->arenas, (id + 1) * sizeof(*grown));
		if (!grown)
			return ZS_NONE;
		pool->arenas = grown;
		pool->arenas[id] = NULL;
		pool->nr_arena_ids = id + 1;
	}
	pool->arenas[id] = a;
	pool->nr_arenas++;
	return id;
}

/* Uninstall an emptied arena (page_lock); it is unmapped once the locks are dropped. */
static void zs_arena_detach(struct zs_pool *pool, uint32_t id, struct zs_defer *d)
{
	struct zs_arena *a = pool->arenas[id];

	pool->arenas[id] = NULL;
	pool->nr_arenas--;
	if (!pool->nr_arenas) {
		free(pool->arenas);
		pool->arenas = NULL;
		pool->nr_arena_ids = 0;
	}
	a->dead_next = d->arenas;
	d->arenas = a;
}

/* A run of `nr` free pages in the first arena that has one (page_lock): its first
 * page's index, and the arena in *id; ZS_NONE when no arena has one. */
static uint32_t zs_find_pages(struct zs_pool *pool, uint32_t nr, uint32_t *id)
{
	for (uint32_t i = 0; i < pool->nr_arena_ids; i++) {
		struct zs_arena *a = pool->arenas[i];
		uint32_t start;

		if (a && a->nr_free >= nr && (start = arena_find_run(a, nr)) != ZS_NONE) {
			*id = i;
			return start;
		}
	}
	return ZS_NONE;
}

/* Take pages start..start+nr-1 of arena `id` (page_lock); their address. */
static char *zs_take_pages(struct zs_pool *pool, uint32_t id, uint32_t start, uint32_t nr)
{
	struct zs_arena *a = pool->arenas[id];

	arena_set_run(a, start, nr, true);
	a->nr_free -= nr;
	if (start == a->hint)
		a->hint = start + nr;
	zs_add(&pool->nr_pages, nr);
	return a->base + (size_t)start * pool->page_size;
}

/* Give pages back (page_lock); an arena left empty is detached. */
static void zs_free_pages(struct zs_pool *pool, uint16_t id, char *base, uint32_t nr,
			  struct zs_defer *d)
{
	struct zs_arena *a = pool->arenas[id];
	uint32_t start = (uint32_t)((size_t)(base - a->base) / pool->page_size);

	arena_set_run(a, start, nr, false);
	a->nr_free += nr;
	if (start < a->hint)
		a->hint = start;
	zs_sub(&pool->nr_pages, nr);
	if (a->nr_free == a->nr_pages)
		zs_arena_detach(pool, id, d);
}

/* -- fullness groups (class lock) --------------------------------------------- */

static void group_append(struct zs_pool *pool, struct size_class *class, uint32_t g, uint32_t id)
{
	struct zs_group *grp = &class->groups[g];
	struct zspage *zs = &pool->zspages[id];

	zs->prev = grp->tail;
	zs->next = ZS_NONE;
	if (grp->tail != ZS_NONE)
		pool->zspages[grp->tail].next = id;
	else
		grp->head = id;
	grp->tail = id;
	grp->nr++;
	class->mask |= 1u << g;
}

/* Unlink the tail of group g and return it. */
static uint32_t group_pop_tail(struct zs_pool *pool, struct size_class *class, uint32_t g)
{
	struct zs_group *grp = &class->groups[g];
	uint32_t id = grp->tail;

	grp->tail = pool->zspages[id].prev;
	if (grp->tail != ZS_NONE)
		pool->zspages[grp->tail].next = ZS_NONE;
	else
		grp->head = ZS_NONE;
	grp->nr--;
	return id;
}

/* Remove `id` from its group: the tail element takes its place (as a Python
 * list's `lst[pos] = lst.pop()`), so every list keeps the reference's order. */
static void group_remove(struct zs_pool *pool, struct size_class *class, uint32_t id)
{
	struct zspage *zs = &pool->zspages[id];
	uint32_t g = zs->fg;
	struct zs_group *grp = &class->groups[g];
	uint32_t last = group_pop_tail(pool, class, g);

	if (last != id) {
		struct zspage *l = &pool->zspages[last];

		l->prev = zs->prev;
		l->next = zs->next;
		if (l->prev != ZS_NONE)
			pool->zspages[l->prev].next = last;
		else
			grp->head = last;
		if (l->next != ZS_NONE)
			pool->zspages[l->next].prev = last;
		else
			grp->tail = last;
	} else if (!grp->nr) {
		class->mask &= ~(1u << g);
	}
}

/* Move zspage `id` to fullness group g (ZS_EMPTY: into no list). */
static void zs_set_group(struct zs_pool *pool, struct size_class *class, uint32_t id, uint32_t g)
{
	if (pool->zspages[id].fg)
		group_remove(pool, class, id);
	if (g)
		group_append(pool, class, g, id);
	pool->zspages[id].fg = (uint8_t)g;
}

/* The zspage malloc uses: the tail of the fullest group that is not full. */
static uint32_t zs_find_zspage(const struct size_class *class)
{
	uint32_t m = class->mask & ((1u << ZS_FULL) - 2);

	if (!m)
		return ZS_NONE;
	return class->groups[31 - __builtin_clz(m)].tail;
}

/* -- zspages ------------------------------------------------------------------ */

/* The word in front of an object: its handle slot (live) or the next free object.
 * Classes are 2 bytes apart at 512-byte pages, so the word may be unaligned:
 * it is read and written with memcpy, never through a uint64_t pointer. */
static inline uint64_t obj_word_get(const struct size_class *class, const struct zspage *zs,
				    uint32_t obj)
{
	uint64_t w;

	memcpy(&w, zs->base + (size_t)obj * class->size, sizeof(w));
	return w;
}

static inline void obj_word_set(const struct size_class *class, const struct zspage *zs,
				uint32_t obj, uint64_t w)
{
	memcpy(zs->base + (size_t)obj * class->size, &w, sizeof(w));
}

static inline char *obj_data(const struct size_class *class, const struct zspage *zs, uint32_t obj)
{
	return zs->base + (size_t)obj * class->size + class->hdr;
}

static inline uint32_t zs_class_of(struct zs_pool *pool, uint32_t id)
{
	return zs_load(&pool->zspages[id].class);
}

/* A descriptor id for a new zspage (page_lock), counted in nr_zspages; ZS_NONE
 * when the table is full and must grow first (zs_grow_zspages). */
static uint32_t zs_get_descriptor(struct zs_pool *pool)
{
	uint32_t id = pool->free_zspage;

	if (id != ZS_NONE) {
		pool->free_zspage = pool->zspages[id].next;
	} else {
		if (pool->nr_zspage_ids == pool->zspage_cap)
			return ZS_NONE;
		id = pool->nr_zspage_ids++;
	}
	pool->nr_zspages++;
	return id;
}

/* Give a descriptor back (page_lock). */
static void zs_put_descriptor(struct zs_pool *pool, uint32_t id, struct zs_defer *d)
{
	pool->zspages[id].base = NULL;
	pool->zspages[id].next = pool->free_zspage;
	pool->free_zspage = id;
	if (!--pool->nr_zspages)
		d->drop_zspages = true; /* keep "empty tables are freed" */
}

/* Grow the descriptor table (write side) if no descriptor is free; 0 or -ENOMEM. */
static int zs_grow_zspages(struct zs_pool *pool)
{
	uint32_t cap = pool->zspage_cap;
	struct zspage *grown;

	if (pool->free_zspage != ZS_NONE || pool->nr_zspage_ids < cap)
		return 0;
	cap = zs_grow(cap, 16);
	grown = realloc(pool->zspages, cap * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	for (uint32_t id = pool->zspage_cap; id < cap; id++)
		grown[id].class = ZS_NO_CLASS;
	pool->zspages = grown;
	pool->zspage_cap = cap;
	return 0;
}

/* Free an empty zspage that is in no list (class lock). */
static void free_zspage(struct zs_pool *pool, struct size_class *class, uint32_t id,
			struct zs_defer *d)
{
	struct zspage *zs = &pool->zspages[id];

	class->nr_zspages--;
	zs_store(&zs->class, (uint16_t)ZS_NO_CLASS);
	pthread_mutex_lock(&pool->page_lock);
	zs_free_pages(pool, zs->arena, zs->base, class->pages_per_zspage, d);
	zs_put_descriptor(pool, id, d);
	pthread_mutex_unlock(&pool->page_lock);
	d->uncharge += class->pages_per_zspage;
}

/* Take a free object of zspage `id` for handle slot `slot`; its index. */
static uint32_t obj_malloc(struct zs_pool *pool, struct size_class *class, uint32_t id, uint32_t slot)
{
	struct zspage *zs = &pool->zspages[id];
	uint32_t obj = zs->freeobj, g;

	if (class->huge) {
		zs->freeobj = slot; /* the owner: a huge object has no handle word */
	} else {
		zs->freeobj = (uint32_t)(obj_word_get(class, zs, obj) >> 1);
		obj_word_set(class, zs, obj, (uint64_t)slot << 1 | 1);
	}
	zs->inuse++;
	class->obj_used++;
	g = get_fullness_group(zs->inuse, class->objs_per_zspage);
	if (g != zs->fg)
		zs_set_group(pool, class, id, g);
	return obj;
}

/* Put object `obj` of zspage `id` back on its free list; an emptied zspage goes,
 * unless compaction has it (isolated: compaction puts it back or frees it). */
static void obj_free(struct zs_pool *pool, struct size_class *class, uint32_t id, uint32_t obj,
		     struct zs_defer *d)
{
	struct zspage *zs = &pool->zspages[id];
	uint32_t g;

	if (class->huge) {
		zs->freeobj = 0;
	} else {
		obj_word_set(class, zs, obj, (uint64_t)zs->freeobj << 1);
		zs->freeobj = obj;
	}
	zs->inuse--;
	class->obj_used--;
	g = get_fullness_group(zs->inuse, class->objs_per_zspage);
	if (g != zs->fg && !zs->isolated) {
		zs_set_group(pool, class, id, g);
		if (g == ZS_EMPTY)
			free_zspage(pool, class, id, d);
	}
}

/* -- handle table ---------------------------------------------------------- */

static inline uint32_t he_gen(uint64_t e)
{
	return (uint32_t)(e & HE_GEN_MASK);
}

static inline uint32_t he_obj(uint64_t e)
{
	return (uint32_t)(e >> HE_OBJ_SHIFT & HE_OBJ_MASK);
}

static inline uint32_t he_zspage(uint64_t e)
{
	return (uint32_t)(e >> HE_ID_SHIFT);
}

static inline uint64_t he_live(uint32_t gen, uint32_t id, uint32_t obj)
{
	return gen | HE_LIVE | (uint64_t)obj << HE_OBJ_SHIFT | (uint64_t)id << HE_ID_SHIFT;
}

static inline uint64_t he_get(struct zs_pool *pool, uint32_t slot)
{
	return zs_load(&pool->handles[slot]);
}

static inline void he_set(struct zs_pool *pool, uint32_t slot, uint64_t e)
{
	zs_store(&pool->handles[slot], e);
}

static inline uint32_t zs_nr_handles(const struct zs_pool *pool)
{
	return pool->nr_slots_used - pool->nr_free_slots;
}

/* Slots a malloc can still be promised without growing the table (handle_lock):
 * 0 when the next promise needs a bigger table, -ENOMEM when it would need a
 * slot beyond ZS_SLOT_MASK. */
static int handle_room(const struct zs_pool *pool)
{
	uint32_t want = pool->reserved + 1, fresh;

	if (want <= pool->nr_free_slots)
		return 1;
	fresh = want - pool->nr_free_slots; /* new slots the promises would take */
	if ((uint64_t)pool->nr_slots_used + fresh - 1 > ZS_SLOT_MASK)
		return -ENOMEM;
	return (uint64_t)pool->nr_slots_used + fresh <= pool->handle_cap;
}

/* Grow the handle table (write side) so that one more promise fits; 0 or -ENOMEM. */
static int handle_grow(struct zs_pool *pool)
{
	uint32_t cap = pool->handle_cap;
	uint64_t *grown;

	if (handle_room(pool))
		return 0; /* room already, or -ENOMEM: handle_reserve says which */
	cap = zs_grow(cap, 64);
	grown = realloc(pool->handles, cap * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	/* slots not handed out read as free (not live) to zs_resolve() */
	memset(grown + pool->handle_cap, 0, (size_t)(cap - pool->handle_cap) * sizeof(*grown));
	pool->handles = grown;
	pool->handle_cap = cap;
	return 0;
}

/* Promise a slot to a malloc (read side held; it may be dropped and taken again,
 * *shard says where): 0, -ENOMEM (table full or no memory) or -EINVAL
 * (destroyed). handle_alloc() then cannot fail; handle_unreserve() withdraws. */
static int handle_reserve(struct zs_pool *pool, unsigned *shard)
{
	int room, err;

	for (;;) {
		pthread_mutex_lock(&pool->handle_lock);
		room = handle_room(pool);
		if (room > 0)
			pool->reserved++;
		pthread_mutex_unlock(&pool->handle_lock);
		if (room)
			return room > 0 ? 0 : room;
		zs_read_end(pool, *shard);
		zs_write_begin(pool);
		err = pool->dead ? -EINVAL : handle_grow(pool);
		zs_write_end(pool);
		*shard = zs_read_begin(pool);
		if (!err && pool->dead)
			err = -EINVAL;
		if (err)
			return err;
	}
}

/* Withdraw a promise (read side held). When that leaves a table with no handle
 * and no promise, *d says it may be dropped: a malloc that then fails (a refused
 * charge) must not keep the table its promise grew. */
static void handle_unreserve(struct zs_pool *pool, struct zs_defer *d)
{
	pthread_mutex_lock(&pool->handle_lock);
	pool->reserved--;
	if (pool->handle_cap && !zs_nr_handles(pool) && !pool->reserved)
		d->drop_handles = true;
	pthread_mutex_unlock(&pool->handle_lock);
}

/* A promised slot and its next generation, from the free-slot stack or a new slot
 * (class lock held: its entry is then made live under it). */
static uint32_t handle_alloc(struct zs_pool *pool, uint32_t *gen)
{
	uint32_t slot;

	pthread_mutex_lock(&pool->handle_lock);
	pool->reserved--;
	slot = pool->free_slot;
	if (pool->nr_free_slots) {
		uint64_t e = he_get(pool, slot);

		pool->free_slot = he_zspage(e);
		pool->nr_free_slots--;
		*gen = he_gen(e) + 1;
		if (*gen > ZS_GEN_MAX)
			*gen = 1;
	} else {
		*gen = pool->gen_base;
		slot = pool->nr_slots_used++;
	}
	pthread_mutex_unlock(&pool->handle_lock);
	return slot;
}

/* Push `slot` on the free-slot stack (class lock held); with no handle left the
 * table is dropped (zs_defer_run). */
static void handle_free(struct zs_pool *pool, uint32_t slot, struct zs_defer *d)
{
	pthread_mutex_lock(&pool->handle_lock);
	he_set(pool, slot, he_gen(he_get(pool, slot)) | (uint64_t)pool->free_slot << HE_ID_SHIFT);
	pool->free_slot = slot;
	pool->nr_free_slots++;
	if (!zs_nr_handles(pool) && !pool->reserved)
		d->drop_handles = true;
	pthread_mutex_unlock(&pool->handle_lock);
}

/* Drop the tables that are empty (write side). New slots then start one generation
 * above the highest seen, so that no old handle becomes valid again. */
static void zs_drop_empty_tables(struct zs_pool *pool, const struct zs_defer *d)
{
	if (d->drop_handles && pool->handles && !zs_nr_handles(pool) && !pool->reserved) {
		uint32_t top = 0;

		for (uint32_t s = 0; s < pool->nr_slots_used; s++)
			if (he_gen(pool->handles[s]) > top)
				top = he_gen(pool->handles[s]);
		/* a table that never handed out a slot (grown for a malloc that was
		 * refused) leaves gen_base as it was, as the reference does */
		if (pool->nr_slots_used)
			pool->gen_base = top + 1 > ZS_GEN_MAX ? 1 : top + 1;
		free(pool->handles);
		pool->handles = NULL;
		pool->handle_cap = pool->nr_slots_used = pool->nr_free_slots = 0;
		pool->free_slot = ZS_NONE;
	}
	if (d->drop_zspages && pool->zspages && !pool->nr_zspages) {
		free(pool->zspages);
		pool->zspages = NULL;
		pool->nr_zspage_ids = pool->zspage_cap = 0;
		pool->free_zspage = ZS_NONE;
	}
}

/* What an operation left for after its locks: call with no lock held. */
static void zs_defer_run(struct zs_pool *pool, struct zs_defer *d)
{
	if (d->uncharge)
		pool->acct->uncharge(pool->acct, d->uncharge);
	while (d->arenas) {
		struct zs_arena *a = d->arenas;

		d->arenas = a->dead_next;
		zs_arena_destroy(pool, a);
	}
	if (d->drop_handles || d->drop_zspages) {
		zs_write_begin(pool);
		if (!pool->dead)
			zs_drop_empty_tables(pool, d);
		zs_write_end(pool);
	}
	memset(d, 0, sizeof(*d));
}

/* A live object, found by zs_resolve(). */
struct zs_obj {
	uint32_t slot;
	uint32_t id; /* its zspage */
	uint64_t entry;
	struct size_class *class; /* locked */
	struct zspage *zs;
};

static inline char *zs_obj_data(const struct zs_obj *o)
{
	return obj_data(o->class, o->zs, he_obj(o->entry));
}

/* Find the object of a live handle and lock its class (read side held). 0, or
 * -EINVAL: not live (freed, stale generation, forged, out of range, destroyed).
 *
 * The entry and the zspage's class are read without a lock, then again under the
 * class lock. That second look is the truth: a zspage is given to a class, and
 * taken from it, only under that class's lock, so while it is held "zspage `id` is
 * in this class" cannot change; and an entry that names a zspage of this class is
 * written only under this lock too. A first look that raced with a free, a move
 * by compaction or a reuse of the descriptor just makes the loop go round again
 * with what the entry says now. */
static int zs_resolve(struct zs_pool *pool, uint64_t handle, struct zs_obj *o)
{
	uint32_t slot = (uint32_t)(handle & ZS_SLOT_MASK), gen = (uint32_t)(handle >> ZS_SLOT_BITS);
	uint32_t id, ci;
	uint64_t e;

	if (pool->dead || handle >= ZS_HANDLE_LIMIT || slot >= pool->handle_cap)
		return -EINVAL;
	e = he_get(pool, slot);
	for (;;) {
		if (!(e & HE_LIVE) || he_gen(e) != gen)
			return -EINVAL;
		id = he_zspage(e);
		if (id >= pool->zspage_cap)
			return -EINVAL; /* not reached: a live entry names a live zspage */
		ci = zs_class_of(pool, id);
		if (ci >= pool->nr_classes) { /* being freed or reused: look again */
			e = he_get(pool, slot);
			continue;
		}
		pthread_mutex_lock(&pool->classes[ci].lock);
		e = he_get(pool, slot);
		id = he_zspage(e);
		if ((e & HE_LIVE) && he_gen(e) == gen && id < pool->zspage_cap &&
		    zs_class_of(pool, id) == ci)
			break;
		pthread_mutex_unlock(&pool->classes[ci].lock);
	}
	o->slot = slot;
	o->id = id;
	o->entry = e;
	o->class = &pool->classes[ci];
	o->zs = &pool->zspages[id];
	return 0;
}

static inline void zs_obj_unlock(struct zs_obj *o)
{
	pthread_mutex_unlock(&o->class->lock);
}

/* -- mappings ------------------------------------------------------------------ */

static void maps_forget(struct zs_pool *pool)
{
	if (!pool->nr_maps) {
		free(pool->maps);
		pool->maps = NULL;
		pool->maps_cap = 0;
	}
}

/* Orphan the mappings of `slot` (class lock held; the entry's HE_MAPPED goes with
 * the entry). Their buffers are released by zs_reap_orphans(), with the GIL. */
static void zs_orphan_mappings(struct zs_pool *pool, uint32_t slot)
{
	uint32_t nr = 0;

	pthread_mutex_lock(&pool->maps_lock);
	for (uint32_t i = 0; i < pool->nr_maps; i++) {
		if (pool->maps[i].slot == slot) {
			pool->maps[i].slot = ZS_NONE;
			nr++;
		}
	}
	zs_add(&pool->nr_orphans, nr);
	pthread_mutex_unlock(&pool->maps_lock);
}

/* Release the buffers of orphaned mappings. GIL held, no lock held. */
static void zs_reap_orphans(struct zs_pool *pool)
{
	while (zs_load(&pool->nr_orphans)) {
		PyObject *buf = NULL;
		unsigned shard = zs_read_begin(pool);

		pthread_mutex_lock(&pool->maps_lock);
		for (uint32_t i = 0; i < pool->nr_maps; i++) {
			if (pool->maps[i].slot != ZS_NONE)
				continue;
			buf = pool->maps[i].buf;
			memmove(&pool->maps[i], &pool->maps[i + 1],
				(pool->nr_maps - i - 1) * sizeof(*pool->maps));
			pool->nr_maps--;
			zs_sub(&pool->nr_orphans, 1);
			break;
		}
		maps_forget(pool);
		pthread_mutex_unlock(&pool->maps_lock);
		zs_read_end(pool, shard);
		if (!buf)
			return;
		Py_DECREF(buf);
	}
}

/* -- malloc and free --------------------------------------------------------- */

/* A new zspage for `class`, its pages charged already, in no list yet (read side
 * held; *shard as handle_reserve, whose promise the caller holds). ZS_NONE and
 * *err (-ENOMEM, -EINVAL) on failure, the promise withdrawn. */
static uint32_t zs_new_zspage(struct zs_pool *pool, struct size_class *class, unsigned *shard,
			      struct zs_defer *d, int *err)
{
	uint32_t nr = class->pages_per_zspage, id, aid = 0, start;
	struct zs_arena *fresh = NULL;
	struct zspage *zs;
	char *base;

	for (;;) { /* a descriptor */
		pthread_mutex_lock(&pool->page_lock);
		id = zs_get_descriptor(pool);
		if (id != ZS_NONE)
			break;
		pthread_mutex_unlock(&pool->page_lock);
		/* the table must move: no promise is held while the read side is not */
		handle_unreserve(pool, d);
		zs_read_end(pool, *shard);
		zs_write_begin(pool);
		*err = pool->dead ? -EINVAL : zs_grow_zspages(pool);
		zs_write_end(pool);
		*shard = zs_read_begin(pool);
		if (!*err)
			*err = pool->dead ? -EINVAL : handle_reserve(pool, shard);
		if (*err) {
			d->drop_zspages = true; /* the table it grew may hold no zspage */
			return ZS_NONE;
		}
	}
	for (;;) { /* its pages: page_lock held */
		start = zs_find_pages(pool, nr, &aid);
		if (start != ZS_NONE)
			break;
		if (fresh) {
			aid = zs_arena_install(pool, fresh);
			if (aid == ZS_NONE)
				break;
			fresh = NULL;
			start = 0;
			break;
		}
		pthread_mutex_unlock(&pool->page_lock);
		fresh = zs_arena_create(pool); /* mmap with no lock held (but the read side) */
		pthread_mutex_lock(&pool->page_lock);
		if (!fresh)
			break;
	}
	if (start == ZS_NONE) {
		zs_put_descriptor(pool, id, d);
		pthread_mutex_unlock(&pool->page_lock);
		handle_unreserve(pool, d);
		if (fresh) {
			fresh->dead_next = d->arenas;
			d->arenas = fresh;
		}
		*err = -ENOMEM;
		return ZS_NONE;
	}
	base = zs_take_pages(pool, aid, start, nr);
	pthread_mutex_unlock(&pool->page_lock);
	if (fresh) { /* another thread mapped one meanwhile: ours is not needed */
		fresh->dead_next = d->arenas;
		d->arenas = fresh;
	}
	/* the zspage is this thread's alone until zs_insert_zspage() */
	memset(base, 0, (size_t)nr * pool->page_size); /* fresh pages read as zeros */
	zs = &pool->zspages[id];
	zs->base = base;
	zs->arena = (uint16_t)aid;
	zs->prev = zs->next = ZS_NONE;
	zs->inuse = 0;
	zs->fg = ZS_EMPTY;
	zs->skip = 0;
	zs->isolated = 0;
	zs->freeobj = 0; /* object 0 first, then 1, 2, ... */
	if (!class->huge) {
		for (uint32_t obj = 0; obj < class->objs_per_zspage; obj++) {
			uint64_t next = obj + 1 < class->objs_per_zspage ? obj + 1 : ZS_NONE;
			obj_word_set(class, zs, obj, next << 1);
		}
	}
	return id;
}

/* Give a new zspage to its class (class lock held). */
static void zs_insert_zspage(struct zs_pool *pool, struct size_class *class, uint32_t id)
{
	class->nr_zspages++;
	zs_store(&pool->zspages[id].class, (uint16_t)(class - pool->classes));
}

/* Allocate an object of `size` bytes; copy `len` bytes of `src` into it (src may
 * be NULL). 0 and *handle, or -EINVAL, -ENOSPC, -ENOMEM. The order is the
 * reference's: a slot is promised (the table grown) first, then a zspage found,
 * else pages charged (with no lock held: charge() may run a Python fault hook)
 * and a zspage made, then the slot taken. */
static int zs_malloc(struct zs_pool *pool, size_t size, const void *src, size_t len, uint64_t *handle)
{
	struct zs_defer d = {0};
	struct size_class *class;
	uint32_t id, slot, gen, obj;
	unsigned shard;
	int err;

	if (size == 0)
		return -EINVAL;
	if (size > pool->page_size)
		return -ENOSPC;
	class = zs_class_for(pool, size);
	shard = zs_read_begin(pool);
	err = pool->dead ? -EINVAL : handle_reserve(pool, &shard);
	if (err) {
		zs_read_end(pool, shard);
		return err;
	}
	pthread_mutex_lock(&class->lock);
	id = zs_find_zspage(class);
	if (id == ZS_NONE) {
		pthread_mutex_unlock(&class->lock);
		handle_unreserve(pool, &d);
		zs_read_end(pool, shard);
		if (pool->acct->charge(pool->acct, class->pages_per_zspage)) {
			/* refused: the handle table this malloc grew (an empty pool's) goes */
			zs_defer_run(pool, &d);
			return -ENOMEM;
		}
		/* this malloc takes a slot next, or fails and says so again below */
		d.drop_handles = false;
		shard = zs_read_begin(pool);
		err = pool->dead ? -EINVAL : handle_reserve(pool, &shard);
		if (!err)
			id = zs_new_zspage(pool, class, &shard, &d, &err);
		if (err) {
			zs_read_end(pool, shard);
			d.uncharge += class->pages_per_zspage;
			zs_defer_run(pool, &d);
			return err;
		}
		pthread_mutex_lock(&class->lock);
		zs_insert_zspage(pool, class, id);
	}
	slot = handle_alloc(pool, &gen);
	obj = obj_malloc(pool, class, id, slot);
	he_set(pool, slot, he_live(gen, id, obj));
	if (src)
		memcpy(obj_data(class, &pool->zspages[id], obj), src, len);
	pthread_mutex_unlock(&class->lock);
	zs_read_end(pool, shard);
	if (d.arenas) { /* an arena mapped in vain (another thread's was installed first) */
		d.drop_handles = false; /* it holds a handle now */
		zs_defer_run(pool, &d);
	}
	*handle = (uint64_t)gen << ZS_SLOT_BITS | slot;
	return 0;
}

/* Free a live handle; its mappings are orphaned. Never calls Python. */
static int zs_free(struct zs_pool *pool, uint64_t handle)
{
	struct zs_defer d = {0};
	struct zs_obj o;
	unsigned shard = zs_read_begin(pool);
	int err = zs_resolve(pool, handle, &o);

	if (!err) {
		if (o.entry & HE_MAPPED)
			zs_orphan_mappings(pool, o.slot);
		obj_free(pool, o.class, o.id, he_obj(o.entry), &d);
		handle_free(pool, o.slot, &d);
		zs_obj_unlock(&o);
	}
	zs_read_end(pool, shard);
	zs_defer_run(pool, &d);
	return err;
}

/* ===========================================================================
 * Read and write
 *
 * A copy in or out of the object's data under its class lock. Lengths are checked
 * against the object: a write longer than the object is -EINVAL, as is (through the
 * ops table) a read beyond it; the Python read() clamps as the reference does.
 * ========================================================================= */

static int zs_read(struct zs_pool *pool, uint64_t handle, void *dst, size_t len, bool clamp, size_t *got)
{
	struct zs_obj o;
	unsigned shard = zs_read_begin(pool);
	int err = zs_resolve(pool, handle, &o);

	if (!err) {
		if (len > o.class->dlen) {
			if (clamp)
				len = o.class->dlen;
			else
				err = -EINVAL;
		}
		if (!err)
			memcpy(dst, zs_obj_data(&o), len);
		zs_obj_unlock(&o);
	}
	zs_read_end(pool, shard);
	if (got)
		*got = err ? 0 : len;
	return err;
}

static int zs_write(struct zs_pool *pool, uint64_t handle, const void *src, size_t len)
{
	struct zs_obj o;
	unsigned shard = zs_read_begin(pool);
	int err = zs_resolve(pool, handle, &o);

	if (!err) {
		if (len > o.class->dlen)
			err = -E2BIG; /* reported as EINVAL, with its own message */
		else
			memcpy(zs_obj_data(&o), src, len);
		zs_obj_unlock(&o);
	}
	zs_read_end(pool, shard);
	return err;
}

/* ===========================================================================
 * Compaction
 *
 * Per class, as the reference: the destination is taken from the fullest
 * non-full group down, the source from the emptiest up; the source's objects move
 * in index order to the destination's free objects until either is done. A
 * mapped object stays; a source left holding only mapped objects is not taken
 * again. An emptied source is freed at once.
 *
 * The class lock (and the read side) is dropped after each source zspage, so the
 * class's operations go on meanwhile; the destination stays out of the lists,
 * marked `isolated` (malloc cannot pick it, a free that empties it leaves it for
 * compaction to free). Alone, it does exactly what the reference does.
 * ========================================================================= */

/* Take (out of its list) the last element not marked `skip` of the first
 * non-empty group in from..to (either direction); ZS_NONE if none. */
static uint32_t zs_take(struct zs_pool *pool, struct size_class *class, int from, int to, bool skip)
{
	int step = from <= to ? 1 : -1;

	for (int g = from;; g += step) {
		for (uint32_t id = class->groups[g].tail; id != ZS_NONE; id = pool->zspages[id].prev) {
			if (skip && pool->zspages[id].skip)
				continue;
			zs_set_group(pool, class, id, ZS_EMPTY);
			return id;
		}
		if (g == to)
			return ZS_NONE;
	}
}

/* Move what can move from `src` to `dst`. */
static void zs_migrate(struct zs_pool *pool, struct size_class *class, uint32_t src_id, uint32_t dst_id)
{
	struct zspage *src = &pool->zspages[src_id], *dst = &pool->zspages[dst_id];

	for (uint32_t obj = 0; obj < class->objs_per_zspage; obj++) {
		uint64_t word = obj_word_get(class, src, obj), e;
		uint32_t slot = (uint32_t)(word >> 1), new;

		if (!(word & 1))
			continue;
		e = he_get(pool, slot);
		if (e & HE_MAPPED)
			continue;
		new = dst->freeobj;
		dst->freeobj = (uint32_t)(obj_word_get(class, dst, new) >> 1);
		memcpy(obj_data(class, dst, new), obj_data(class, src, obj), class->dlen);
		obj_word_set(class, dst, new, word);
		dst->inuse++;
		obj_word_set(class, src, obj, (uint64_t)src->freeobj << 1);
		src->freeobj = obj;
		src->inuse--;
		he_set(pool, slot, he_live(he_gen(e), dst_id, new));
		if (dst->inuse == class->objs_per_zspage)
			break;
	}
}

/* Put compaction's destination back in its list, or free it if frees emptied it
 * meanwhile (class lock held). */
static void zs_put_back(struct zs_pool *pool, struct size_class *class, uint32_t id,
			struct zs_defer *d)
{
	uint32_t g = get_fullness_group(pool->zspages[id].inuse, class->objs_per_zspage);

	pool->zspages[id].isolated = 0;
	if (g == ZS_EMPTY)
		free_zspage(pool, class, id, d);
	else
		zs_set_group(pool, class, id, g);
}

/* Compact one class; pages freed. Called with no lock held. */
static uint64_t zs_compact_class(struct zs_pool *pool, struct size_class *class)
{
	uint32_t dst = ZS_NONE, src, objs = class->objs_per_zspage;
	struct zs_defer d = {0};
	uint64_t freed = 0;
	bool skipped = false;
	unsigned shard = zs_read_begin(pool);

	pthread_mutex_lock(&class->lock);
	while (!pool->dead && zs_can_compact(class)) {
		if (dst == ZS_NONE) {
			dst = zs_take(pool, class, ZS_FULL - 1, 1, false);
			if (dst == ZS_NONE)
				break;
			pool->zspages[dst].isolated = 1;
		}
		src = zs_take(pool, class, 1, ZS_FULL - 1, true);
		if (src == ZS_NONE)
			break;
		zs_migrate(pool, class, src, dst);
		if (pool->zspages[src].inuse == 0) {
			free_zspage(pool, class, src, &d);
			freed += class->pages_per_zspage;
		} else {
			zs_set_group(pool, class, src, get_fullness_group(pool->zspages[src].inuse, objs));
			if (pool->zspages[dst].inuse < objs) {
				pool->zspages[src].skip = 1; /* what is left in it is mapped */
				skipped = true;
			}
		}
		if (pool->zspages[dst].inuse == objs) {
			zs_put_back(pool, class, dst, &d);
			dst = ZS_NONE;
		}
		/* let the class's operations (and a table that must grow) in */
		pthread_mutex_unlock(&class->lock);
		zs_read_end(pool, shard);
		zs_defer_run(pool, &d);
		shard = zs_read_begin(pool);
		pthread_mutex_lock(&class->lock);
	}
	if (!pool->dead) { /* destroy() took everything, dst included */
		if (dst != ZS_NONE)
			zs_put_back(pool, class, dst, &d);
		if (skipped)
			for (int g = 1; g <= ZS_FULL; g++)
				for (uint32_t id = class->groups[g].head; id != ZS_NONE;
				     id = pool->zspages[id].next)
					pool->zspages[id].skip = 0;
	}
	pthread_mutex_unlock(&class->lock);
	zs_read_end(pool, shard);
	zs_defer_run(pool, &d);
	return freed;
}

/* Compact every class, the largest first, one at a time as the kernel. Any thread,
 * no lock held, with or without the GIL. */
static uint64_t zs_compact(struct zs_pool *pool)
{
	uint64_t freed = 0;

	for (uint32_t i = pool->nr_classes; i-- > 0;)
		if (!pool->classes[i].huge)
			freed += zs_compact_class(pool, &pool->classes[i]);
	zs_add(&pool->pages_compacted, freed);
	return freed;
}

/* -- destroy ------------------------------------------------------------------ */

/* Give every page back and free every table but the classes (write side held);
 * the pages to uncharge. The mapping records are orphaned. */
static size_t zs_destroy(struct zs_pool *pool)
{
	size_t pages = (size_t)zs_load(&pool->nr_pages);

	if (pool->dead)
		return 0;
	pool->dead = true;
	for (uint32_t i = 0; i < pool->nr_maps; i++) {
		if (pool->maps[i].slot != ZS_NONE) {
			pool->maps[i].slot = ZS_NONE;
			zs_add(&pool->nr_orphans, 1);
		}
	}
	for (uint32_t id = 0; id < pool->nr_arena_ids; id++)
		if (pool->arenas[id])
			zs_arena_destroy(pool, pool->arenas[id]);
	free(pool->arenas);
	pool->arenas = NULL;
	pool->nr_arena_ids = pool->nr_arenas = 0;
	zs_store(&pool->nr_pages, 0);
	free(pool->zspages);
	pool->zspages = NULL;
	pool->nr_zspage_ids = pool->zspage_cap = pool->nr_zspages = 0;
	pool->free_zspage = ZS_NONE;
	free(pool->handles);
	pool->handles = NULL;
	pool->nr_slots_used = pool->handle_cap = pool->nr_free_slots = 0;
	pool->free_slot = ZS_NONE;
	for (uint32_t i = 0; i < pool->nr_classes; i++) {
		struct size_class *class = &pool->classes[i];

		class->mask = 0;
		class->nr_zspages = 0;
		class->obj_used = 0;
		for (int g = 0; g < NR_FULLNESS_GROUPS; g++)
			class->groups[g] = (struct zs_group){ZS_NONE, ZS_NONE, 0};
	}
	return pages;
}

/* ===========================================================================
 * Statistics
 *
 * A snapshot of the counters, each class's taken under its lock, into plain C
 * memory; the Python dicts are built after the locks are dropped.
 * ========================================================================= */

struct zs_class_stat {
	uint32_t index, size, pages_per_zspage, objs;
	uint32_t nr_zspages;
	uint32_t groups[NR_FULLNESS_GROUPS];
	uint64_t obj_used, freeable;
};

struct zs_pool_stat {
	uint64_t pages_compacted, nr_pages;
	uint32_t nr_handles;
};

static void zs_stat_snapshot(struct zs_pool *pool, struct zs_class_stat *rows, struct zs_pool_stat *ps)
{
	unsigned shard = zs_read_begin(pool);

	for (uint32_t i = 0; i < pool->nr_classes; i++) {
		struct size_class *class = &pool->classes[i];

		rows[i].index = class->index;
		rows[i].size = class->size;
		rows[i].pages_per_zspage = class->pages_per_zspage;
		rows[i].objs = class->objs_per_zspage;
		pthread_mutex_lock(&class->lock);
		rows[i].nr_zspages = class->nr_zspages;
		for (int g = 0; g < NR_FULLNESS_GROUPS; g++)
			rows[i].groups[g] = class->groups[g].nr;
		rows[i].obj_used = class->obj_used;
		rows[i].freeable = zs_can_compact(class);
		pthread_mutex_unlock(&class->lock);
	}
	pthread_mutex_lock(&pool->handle_lock);
	ps->nr_handles = zs_nr_handles(pool);
	pthread_mutex_unlock(&pool->handle_lock);
	ps->pages_compacted = zs_load(&pool->pages_compacted);
	ps->nr_pages = zs_load(&pool->nr_pages);
	zs_read_end(pool, shard);
}

struct zs_mem_stat {
	size_t handle_table, zspage_descriptors, class_tables, arena_descriptors;
	size_t mapping_records, arena_bytes_mapped, arenas;
};

static void zs_mem_snapshot(struct zs_pool *pool, struct zs_mem_stat *m)
{
	unsigned shard = zs_read_begin(pool);

	m->handle_table = (size_t)pool->handle_cap * sizeof(*pool->handles);
	m->zspage_descriptors = (size_t)pool->zspage_cap * sizeof(*pool->zspages);
	m->class_tables = (size_t)pool->nr_classes * sizeof(*pool->classes) +
			  (size_t)pool->nr_slots * sizeof(*pool->slot_class) +
			  ZS_NR_SHARDS * sizeof(struct zs_shard);
	pthread_mutex_lock(&pool->page_lock);
	m->arena_descriptors = (size_t)pool->nr_arena_ids * sizeof(*pool->arenas) +
			       (size_t)pool->nr_arenas * arena_struct_bytes((uint32_t)(pool->arena_bytes / pool->page_size));
	m->arena_bytes_mapped = (size_t)pool->nr_arenas * pool->arena_bytes;
	m->arenas = pool->nr_arenas;
	pthread_mutex_unlock(&pool->page_lock);
	pthread_mutex_lock(&pool->maps_lock);
	m->mapping_records = (size_t)pool->maps_cap * sizeof(*pool->maps);
	pthread_mutex_unlock(&pool->maps_lock);
	zs_read_end(pool, shard);
}

/* ===========================================================================
 * Consistency check (tests): every structure against every other, under the
 * write side, so it may run while other threads use the pool.
 * ========================================================================= */

struct zs_check_result {
	uint64_t objects, zspages, pages, handles;
};

#define ZS_CHECK(cond, ...)                                                   \
	do {                                                                  \
		if (!(cond)) {                                                \
			snprintf(msg, msglen, __VA_ARGS__);                   \
			return -1;                                            \
		}                                                             \
	} while (0)

/* The objects of live zspage `id` of class `ci` against the handle table. */
static int zs_check_zspage(struct zs_pool *pool, uint32_t ci, uint32_t id, char *msg, size_t msglen)
{
	struct size_class *class = &pool->classes[ci];
	struct zspage *zs = &pool->zspages[id];
	uint32_t used = 0, nfree = 0, obj;

	ZS_CHECK(zs->base && zs->inuse <= class->objs_per_zspage, "zspage %u: inuse %u", id, zs->inuse);
	if (class->huge) {
		if (zs->inuse) {
			uint32_t slot = zs->freeobj;
			uint64_t e;

			ZS_CHECK(slot < pool->nr_slots_used, "huge zspage %u: owner %u", id, slot);
			e = pool->handles[slot];
			ZS_CHECK((e & HE_LIVE) && he_zspage(e) == id && he_obj(e) == 0,
				 "huge zspage %u: its handle names another object", id);
		}
		return 0;
	}
	for (obj = 0; obj < class->objs_per_zspage; obj++) {
		uint64_t w = obj_word_get(class, zs, obj), e;
		uint32_t slot = (uint32_t)(w >> 1);

		if (!(w & 1))
			continue;
		used++;
		ZS_CHECK(slot < pool->nr_slots_used, "zspage %u obj %u: slot %u", id, obj, slot);
		e = pool->handles[slot];
		ZS_CHECK((e & HE_LIVE) && he_zspage(e) == id && he_obj(e) == obj,
			 "zspage %u obj %u: handle slot %u names another object", id, obj, slot);
	}
	ZS_CHECK(used == zs->inuse, "zspage %u: %u objects used, inuse %u", id, used, zs->inuse);
	for (obj = zs->freeobj; obj != ZS_NONE; nfree++) {
		uint64_t w;

		ZS_CHECK(obj < class->objs_per_zspage && nfree < class->objs_per_zspage,
			 "zspage %u: free list broken", id);
		w = obj_word_get(class, zs, obj);
		ZS_CHECK(!(w & 1), "zspage %u: used object %u on the free list", id, obj);
		obj = (uint32_t)(w >> 1);
	}
	ZS_CHECK(nfree + used == class->objs_per_zspage, "zspage %u: %u free + %u used", id, nfree, used);
	return 0;
}

static int zs_check(struct zs_pool *pool, struct zs_check_result *r, char *msg, size_t msglen)
{
	uint64_t arena_pages = 0, live = 0;
	uint32_t *per_class, nfree_ids = 0, id, n;
	int err = 0;

	memset(r, 0, sizeof(*r));
	if (pool->dead)
		return 0;
	per_class = calloc(pool->nr_classes ? pool->nr_classes : 1, sizeof(*per_class));
	if (!per_class) {
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	/* descriptors: live ones by class, their objects; the free list */
	for (id = 0; id < pool->nr_zspage_ids && !err; id++) {
		uint32_t ci = pool->zspages[id].class;

		if (ci == ZS_NO_CLASS)
			continue;
		if (ci >= pool->nr_classes) {
			snprintf(msg, msglen, "zspage %u: class %u", id, ci);
			err = -1;
			break;
		}
		per_class[ci]++;
		r->zspages++;
		r->objects += pool->zspages[id].inuse;
		r->pages += pool->classes[ci].pages_per_zspage;
		err = zs_check_zspage(pool, ci, id, msg, msglen);
	}
	for (id = pool->free_zspage; !err && id != ZS_NONE; id = pool->zspages[id].next, nfree_ids++) {
		if (id >= pool->nr_zspage_ids || nfree_ids >= pool->nr_zspage_ids ||
		    pool->zspages[id].class != ZS_NO_CLASS) {
			snprintf(msg, msglen, "free descriptor list broken at %u", id);
			err = -1;
		}
	}
	if (!err && (r->zspages != pool->nr_zspages || r->zspages + nfree_ids != pool->nr_zspage_ids)) {
		snprintf(msg, msglen, "%llu live zspages + %u free descriptors, counted %u of %u",
			 (unsigned long long)r->zspages, nfree_ids, pool->nr_zspages, pool->nr_zspage_ids);
		err = -1;
	}
	/* classes: lists, groups, counters */
	for (uint32_t ci = 0; ci < pool->nr_classes && !err; ci++) {
		struct size_class *class = &pool->classes[ci];
		uint64_t used = 0;
		uint32_t listed = 0, isolated = 0;

		for (int g = 1; g <= ZS_FULL && !err; g++) {
			struct zs_group *grp = &class->groups[g];
			uint32_t prev = ZS_NONE;

			n = 0;
			for (id = grp->head; id != ZS_NONE; prev = id, id = pool->zspages[id].next, n++) {
				struct zspage *zs = &pool->zspages[id];

				if (n > pool->nr_zspage_ids || id >= pool->nr_zspage_ids || zs->class != ci ||
				    zs->prev != prev || zs->fg != g || zs->isolated ||
				    get_fullness_group(zs->inuse, class->objs_per_zspage) != (uint32_t)g) {
					snprintf(msg, msglen, "class %u group %d: zspage %u misplaced", ci, g, id);
					err = -1;
					break;
				}
				used += zs->inuse;
			}
			if (!err && (n != grp->nr || grp->tail != prev || !!(class->mask & 1u << g) != !!n)) {
				snprintf(msg, msglen, "class %u group %d: %u listed, nr %u", ci, g, n, grp->nr);
				err = -1;
			}
			listed += n;
		}
		for (id = 0; id < pool->nr_zspage_ids && !err; id++) {
			if (pool->zspages[id].class == ci && pool->zspages[id].isolated) {
				isolated++; /* compaction's destination, between two steps */
				used += pool->zspages[id].inuse;
			}
		}
		if (!err && (listed + isolated != class->nr_zspages || per_class[ci] != class->nr_zspages ||
			     used != class->obj_used)) {
			snprintf(msg, msglen, "class %u: %u listed + %u isolated of %u zspages (%u found), %llu of %llu objects",
				 ci, listed, isolated, class->nr_zspages, per_class[ci],
				 (unsigned long long)used, (unsigned long long)class->obj_used);
			err = -1;
		}
	}
	/* handles */
	if (!err) {
		uint32_t nfree = 0;

		for (uint32_t s = 0; s < pool->nr_slots_used; s++)
			live += !!(pool->handles[s] & HE_LIVE);
		for (uint32_t s = pool->free_slot; s != ZS_NONE && nfree <= pool->nr_slots_used; nfree++) {
			if (s >= pool->nr_slots_used || pool->handles[s] & HE_LIVE)
				break;
			s = he_zspage(pool->handles[s]);
		}
		if (live != zs_nr_handles(pool) || live != r->objects || nfree != pool->nr_free_slots ||
		    pool->reserved || (pool->handles ? pool->handle_cap < pool->nr_slots_used : pool->nr_slots_used)) {
			snprintf(msg, msglen, "handles: %llu live, %u counted, %llu objects, %u of %u free slots linked, %u reserved",
				 (unsigned long long)live, zs_nr_handles(pool), (unsigned long long)r->objects,
				 nfree, pool->nr_free_slots, pool->reserved);
			err = -1;
		}
		r->handles = live;
	}
	/* pages */
	if (!err) {
		uint32_t arenas = 0;

		for (id = 0; id < pool->nr_arena_ids; id++) {
			struct zs_arena *a = pool->arenas[id];
			uint32_t used = 0;

			if (!a)
				continue;
			arenas++;
			for (uint32_t p = 0; p < a->nr_pages; p++)
				used += arena_test(a, p);
			if (used != a->nr_pages - a->nr_free || !used) {
				snprintf(msg, msglen, "arena %u: %u pages used, %u free of %u", id, used, a->nr_free, a->nr_pages);
				err = -1;
				break;
			}
			arena_pages += used;
		}
		if (!err && (arena_pages != r->pages || zs_load(&pool->nr_pages) != r->pages ||
			     arenas != pool->nr_arenas)) {
			snprintf(msg, msglen, "pages: %llu in zspages, %llu in arenas, nr_pages %llu",
				 (unsigned long long)r->pages, (unsigned long long)arena_pages,
				 (unsigned long long)zs_load(&pool->nr_pages));
			err = -1;
		}
	}
	free(per_class);
	return err;
}
#undef ZS_CHECK

/* ===========================================================================
 * Python type: zswap_zsmalloc._zsmalloc.Pool
 *
 * The Zpool methods, called with the GIL held. Arguments are parsed and Python
 * objects made before a lock is taken or after it is dropped; errors are raised
 * as zswap_core.ZpoolError. compact() runs without the GIL.
 * ========================================================================= */

typedef struct {
	PyObject_HEAD
	struct zs_pool pool;
	PyObject *pages;   /* the PageAllocator (keeps `acct` alive) */
	PyObject *capsule; /* its page_acct capsule */
	bool locks_ready;  /* handle_lock, page_lock, maps_lock */
} PoolObject;

static PyTypeObject Pool_Type;

static PyObject *zs_error(int err, const char *fmt, ...)
{
	PyObject *msg, *exc;
	va_list va;

	va_start(va, fmt);
	msg = PyUnicode_FromFormatV(fmt, va);
	va_end(va);
	if (!msg)
		return NULL;
	exc = PyObject_CallFunction(ZpoolError, "iO", err, msg);
	Py_DECREF(msg);
	if (exc) {
		PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
		Py_DECREF(exc);
	}
	return NULL;
}

static PyObject *zs_bad_handle(PyObject *handle)
{
	return zs_error(EINVAL, "zsmalloc: invalid handle %R", handle);
}

/* A handle argument as a number; false when it can be no handle (the error
 * state is clear either way). */
static bool zs_parse_handle(PyObject *arg, uint64_t *handle)
{
	int overflow;
	long long v;

	if (!PyLong_Check(arg))
		return false;
	v = PyLong_AsLongLongAndOverflow(arg, &overflow);
	if (v == -1 && PyErr_Occurred()) {
		PyErr_Clear();
		return false;
	}
	if (overflow || v < 0)
		return false;
	*handle = (uint64_t)v;
	return true;
}

static PyObject *zs_errno_result(int err, PyObject *handle)
{
	if (err == -EINVAL)
		return zs_bad_handle(handle);
	return zs_error(-err, "zsmalloc: error %d", -err);
}

static PyObject *Pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"pages", "chain_size", "page_acct", NULL};
	PyObject *pages, *capsule = NULL;
	int chain = 8;
	PoolObject *self;
	struct zswap_page_acct *acct;
	struct zs_pool *pool;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|iO:Pool", kwlist, &pages, &chain, &capsule))
		return NULL;
	if (chain < ZS_MIN_CHAIN_SIZE || chain > ZS_MAX_CHAIN_SIZE)
		return PyErr_Format(PyExc_ValueError, "chain size must be %d..%d, got %d",
				    ZS_MIN_CHAIN_SIZE, ZS_MAX_CHAIN_SIZE, chain);
	if (capsule && capsule != Py_None)
		Py_INCREF(capsule);
	else if (!(capsule = PyObject_GetAttrString(pages, "page_acct")))
		return NULL;
	acct = PyCapsule_GetPointer(capsule, ZSWAP_PAGE_ACCT_CAPSULE);
	if (!acct) {
		Py_DECREF(capsule);
		return NULL;
	}
	if (acct->version < 1 || acct->size < offsetof(struct zswap_page_acct, uncharge) + sizeof(acct->uncharge)) {
		Py_DECREF(capsule);
		return PyErr_Format(PyExc_ValueError, "page_acct table version %u, size %u: too old",
				    acct->version, acct->size);
	}
	if (acct->page_size < 512 || acct->page_size > ZS_MAX_PAGE_SIZE ||
	    (acct->page_size & (acct->page_size - 1))) {
		Py_DECREF(capsule);
		return PyErr_Format(PyExc_ValueError, "page size %zu not supported (512..%u, a power of two)",
				    acct->page_size, ZS_MAX_PAGE_SIZE);
	}
	self = (PoolObject *)type->tp_alloc(type, 0);
	if (!self) {
		Py_DECREF(capsule);
		return NULL;
	}
	pool = &self->pool;
	Py_INCREF(pages);
	self->pages = pages;
	self->capsule = capsule;
	pool->acct = acct;
	pool->page_size = acct->page_size;
	pool->chain_size = (uint32_t)chain;
	pool->gen_base = 1;
	pool->free_slot = pool->free_zspage = ZS_NONE;
	pool->arena_bytes = (size_t)4 * chain * pool->page_size;
	if (pool->arena_bytes < ZS_ARENA_MIN_BYTES)
		pool->arena_bytes = ZS_ARENA_MIN_BYTES;
	pool->arena_bytes = (pool->arena_bytes + ZS_ARENA_ALIGN - 1) & ~(ZS_ARENA_ALIGN - 1);
	if (pthread_mutex_init(&pool->handle_lock, NULL) || pthread_mutex_init(&pool->page_lock, NULL) ||
	    pthread_mutex_init(&pool->maps_lock, NULL)) {
		Py_DECREF(self); /* glibc's mutexes cannot fail to initialize */
		return PyErr_NoMemory();
	}
	self->locks_ready = true;
	if (zs_shards_init(pool) || zs_build_classes(pool)) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	return (PyObject *)self;
}

static void Pool_dealloc(PoolObject *self)
{
	struct zs_pool *pool = &self->pool;
	size_t pages;

	if (pool->shards) {
		zs_write_begin(pool);
		pages = zs_destroy(pool);
		zs_write_end(pool);
		if (pages)
			pool->acct->uncharge(pool->acct, pages);
		zs_reap_orphans(pool);
		zs_shards_destroy(pool);
	}
	if (self->locks_ready) {
		pthread_mutex_destroy(&pool->handle_lock);
		pthread_mutex_destroy(&pool->page_lock);
		pthread_mutex_destroy(&pool->maps_lock);
	}
	for (uint32_t i = 0; i < pool->nr_classes; i++)
		pthread_mutex_destroy(&pool->classes[i].lock);
	free(pool->classes);
	free(pool->slot_class);
	Py_XDECREF(self->capsule);
	Py_XDECREF(self->pages);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* malloc(size) -> handle */
static PyObject *Pool_malloc(PoolObject *self, PyObject *arg)
{
	uint64_t handle;
	long long size;
	int overflow, err;

	if (!PyLong_CheckExact(arg))
		return zs_error(EINVAL, "zsmalloc: bad allocation size %R", arg);
	size = PyLong_AsLongLongAndOverflow(arg, &overflow);
	if (overflow > 0 || (!overflow && size > (long long)self->pool.page_size))
		return zs_error(ENOSPC, "zsmalloc: %R bytes exceed a page", arg);
	if (overflow < 0 || size <= 0)
		return zs_error(EINVAL, "zsmalloc: bad allocation size %R", arg);
	err = zs_malloc(&self->pool, (size_t)size, NULL, 0, &handle);
	if (err == -EINVAL)
		return zs_error(EINVAL, "zsmalloc: pool destroyed");
	if (err == -ENOMEM)
		return zs_error(ENOMEM, "page allocation failed");
	if (err)
		return zs_errno_result(err, arg);
	return PyLong_FromUnsignedLongLong(handle);
}

/* alloc_write(data) -> handle: malloc(len(data)) and the copy, under one lock */
static PyObject *Pool_alloc_write(PoolObject *self, PyObject *arg)
{
	Py_buffer view;
	uint64_t handle;
	int err;

	if (PyObject_GetBuffer(arg, &view, PyBUF_C_CONTIGUOUS) < 0)
		return NULL;
	if (view.len == 0)
		err = -EINVAL;
	else if ((size_t)view.len > self->pool.page_size)
		err = -ENOSPC;
	else
		err = zs_malloc(&self->pool, (size_t)view.len, view.buf, (size_t)view.len, &handle);
	PyBuffer_Release(&view);
	switch (err) {
	case 0:
		return PyLong_FromUnsignedLongLong(handle);
	case -ENOSPC:
		return zs_error(ENOSPC, "zsmalloc: %zd bytes exceed a page", view.len);
	case -ENOMEM:
		return zs_error(ENOMEM, "page allocation failed");
	default:
		return zs_error(-err, view.len ? "zsmalloc: pool destroyed" : "zsmalloc: bad allocation size 0");
	}
}

static PyObject *Pool_free(PoolObject *self, PyObject *arg)
{
	uint64_t handle;
	int err;

	if (!zs_parse_handle(arg, &handle))
		return zs_bad_handle(arg);
	err = zs_free(&self->pool, handle);
	zs_reap_orphans(&self->pool); /* the mappings died with the object */
	if (err)
		return zs_bad_handle(arg);
	Py_RETURN_NONE;
}

/* read(handle, size) -> bytes: the object's first min(size, its length) bytes */
static PyObject *Pool_read(PoolObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	PyObject *out;
	uint64_t handle;
	long long want;
	size_t got;
	int overflow, err;

	if (nargs != 2)
		return PyErr_Format(PyExc_TypeError, "read() takes 2 arguments (%zd given)", nargs);
	if (!zs_parse_handle(args[0], &handle))
		return zs_bad_handle(args[0]);
	want = PyLong_AsLongLongAndOverflow(args[1], &overflow);
	if (want == -1 && PyErr_Occurred())
		return NULL;
	if (overflow > 0 || want > (long long)self->pool.page_size)
		want = (long long)self->pool.page_size;
	if (overflow < 0 || want < 0)
		want = 0;
	out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)want);
	if (!out)
		return NULL;
	err = zs_read(&self->pool, handle, PyBytes_AS_STRING(out), (size_t)want, true, &got);
	if (err) {
		Py_DECREF(out);
		return zs_bad_handle(args[0]);
	}
	if (got != (size_t)want && _PyBytes_Resize(&out, (Py_ssize_t)got) < 0)
		return NULL;
	return out;
}

/* write(handle, data): copy data into the object */
static PyObject *Pool_write(PoolObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_buffer view;
	uint64_t handle;
	int err;

	if (nargs != 2)
		return PyErr_Format(PyExc_TypeError, "write() takes 2 arguments (%zd given)", nargs);
	if (PyObject_GetBuffer(args[1], &view, PyBUF_C_CONTIGUOUS) < 0)
		return NULL;
	if (!zs_parse_handle(args[0], &handle)) {
		PyBuffer_Release(&view);
		return zs_bad_handle(args[0]);
	}
	err = zs_write(&self->pool, handle, view.buf, (size_t)view.len);
	PyBuffer_Release(&view);
	if (err == -E2BIG)
		return zs_error(EINVAL, "zsmalloc: %zd bytes do not fit the object", view.len);
	if (err)
		return zs_bad_handle(args[0]);
	Py_RETURN_NONE;
}

/* Size of a live object's data, or -EINVAL. */
static long zs_data_len(struct zs_pool *pool, uint64_t handle)
{
	struct zs_obj o;
	unsigned shard = zs_read_begin(pool);
	long len = zs_resolve(pool, handle, &o);

	if (!len) {
		len = o.class->dlen;
		zs_obj_unlock(&o);
	}
	zs_read_end(pool, shard);
	return len;
}

/* map(handle, mode=RW) -> memoryview of a private copy of the object */
static PyObject *Pool_map(PoolObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"handle", "mode", NULL};
	struct zs_pool *pool = &self->pool;
	PyObject *harg, *buf;
	unsigned long thread = PyThread_get_thread_ident();
	uint64_t handle;
	struct zs_obj o;
	unsigned shard;
	int mode = 0;
	long len;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|i:map", kwlist, &harg, &mode))
		return NULL;
	zs_reap_orphans(pool);
	if (!zs_parse_handle(harg, &handle) || (len = zs_data_len(pool, handle)) < 0)
		return zs_bad_handle(harg);
	buf = PyByteArray_FromStringAndSize(NULL, len);
	if (!buf)
		return NULL;
	shard = zs_read_begin(pool);
	if (zs_resolve(pool, handle, &o)) { /* freed meanwhile */
		zs_read_end(pool, shard);
		Py_DECREF(buf);
		return zs_bad_handle(harg);
	}
	pthread_mutex_lock(&pool->maps_lock);
	if (pool->nr_maps == pool->maps_cap) {
		uint32_t cap = pool->maps_cap ? pool->maps_cap * 2 : 8;
		struct zs_mapping *grown = realloc(pool->maps, cap * sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&pool->maps_lock);
			zs_obj_unlock(&o);
			zs_read_end(pool, shard);
			Py_DECREF(buf);
			return PyErr_NoMemory();
		}
		pool->maps = grown;
		pool->maps_cap = cap;
	}
	/* copied in for every mode: a WO mapping that writes part of the object keeps
	 * the rest */
	memcpy(PyByteArray_AS_STRING(buf), zs_obj_data(&o), (size_t)len);
	pool->maps[pool->nr_maps++] = (struct zs_mapping){o.slot, mode, thread, buf};
	__atomic_fetch_or(&pool->handles[o.slot], HE_MAPPED, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&pool->maps_lock);
	zs_obj_unlock(&o);
	zs_read_end(pool, shard);
	return PyMemoryView_FromObject(buf); /* the record keeps its own reference */
}

/* unmap(handle): forget the newest mapping of this thread (else the newest) */
static PyObject *Pool_unmap(PoolObject *self, PyObject *arg)
{
	struct zs_pool *pool = &self->pool;
	unsigned long thread = PyThread_get_thread_ident();
	struct zs_mapping m;
	uint64_t handle;
	uint32_t at = ZS_NONE, i;
	struct zs_obj o;
	unsigned shard;

	zs_reap_orphans(pool);
	if (!zs_parse_handle(arg, &handle))
		return zs_bad_handle(arg);
	shard = zs_read_begin(pool);
	if (zs_resolve(pool, handle, &o)) {
		zs_read_end(pool, shard);
		return zs_bad_handle(arg);
	}
	pthread_mutex_lock(&pool->maps_lock);
	for (i = pool->nr_maps; i-- > 0;) {
		if (pool->maps[i].slot != o.slot)
			continue;
		if (at == ZS_NONE)
			at = i;
		if (pool->maps[i].thread == thread) {
			at = i;
			break;
		}
	}
	if (at == ZS_NONE) {
		pthread_mutex_unlock(&pool->maps_lock);
		zs_obj_unlock(&o);
		zs_read_end(pool, shard);
		return zs_error(EINVAL, "zsmalloc: handle %R is not mapped", arg);
	}
	m = pool->maps[at];
	memmove(&pool->maps[at], &pool->maps[at + 1], (pool->nr_maps - at - 1) * sizeof(m));
	pool->nr_maps--;
	if (m.mode != ZS_MAP_RO) {
		size_t n = (size_t)PyByteArray_GET_SIZE(m.buf);

		memcpy(zs_obj_data(&o), PyByteArray_AS_STRING(m.buf), n < o.class->dlen ? n : o.class->dlen);
	}
	for (i = 0; i < pool->nr_maps && pool->maps[i].slot != o.slot; i++)
		;
	if (i == pool->nr_maps)
		__atomic_fetch_and(&pool->handles[o.slot], ~HE_MAPPED, __ATOMIC_RELEASE);
	maps_forget(pool);
	pthread_mutex_unlock(&pool->maps_lock);
	zs_obj_unlock(&o);
	zs_read_end(pool, shard);
	Py_DECREF(m.buf);
	Py_RETURN_NONE;
}

static PyObject *Pool_destroy(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	struct zs_pool *pool = &self->pool;
	size_t pages;

	zs_write_begin(pool); /* waits for the operations in progress */
	pages = zs_destroy(pool);
	zs_write_end(pool);
	if (pages)
		pool->acct->uncharge(pool->acct, pages);
	zs_reap_orphans(pool);
	Py_RETURN_NONE;
}

static PyObject *Pool_compact(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	uint64_t freed;

	Py_BEGIN_ALLOW_THREADS
	freed = zs_compact(&self->pool);
	Py_END_ALLOW_THREADS
	return PyLong_FromUnsignedLongLong(freed);
}

static PyObject *Pool_total_size(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	return PyLong_FromUnsignedLongLong(zs_load(&self->pool.nr_pages) * self->pool.page_size);
}

static const char *const fullness_names[NR_FULLNESS_GROUPS] = {
	"0%", "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "99%", "100%",
};

static int dict_set_u64(PyObject *d, const char *key, uint64_t v)
{
	PyObject *o = PyLong_FromUnsignedLongLong(v);
	int r;

	if (!o)
		return -1;
	r = PyDict_SetItemString(d, key, o);
	Py_DECREF(o);
	return r;
}

/* One row of the classes table; adds it to `total`. */
static PyObject *zs_stat_row(const struct zs_class_stat *r, uint64_t total[NR_FULLNESS_GROUPS + 4])
{
	PyObject *row = PyDict_New();
	uint64_t allocated = (uint64_t)r->nr_zspages * r->objs;
	uint64_t pages_used = (uint64_t)r->nr_zspages * r->pages_per_zspage;

	if (!row)
		return NULL;
	if (dict_set_u64(row, "class", r->index) || dict_set_u64(row, "size", r->size))
		goto fail;
	for (int g = 1; g < NR_FULLNESS_GROUPS; g++) {
		if (dict_set_u64(row, fullness_names[g], r->groups[g]))
			goto fail;
		total[g] += r->groups[g];
	}
	if (dict_set_u64(row, "obj_allocated", allocated) || dict_set_u64(row, "obj_used", r->obj_used) ||
	    dict_set_u64(row, "pages_used", pages_used) ||
	    dict_set_u64(row, "pages_per_zspage", r->pages_per_zspage) ||
	    dict_set_u64(row, "freeable", r->freeable))
		goto fail;
	total[NR_FULLNESS_GROUPS] += allocated;
	total[NR_FULLNESS_GROUPS + 1] += r->obj_used;
	total[NR_FULLNESS_GROUPS + 2] += pages_used;
	total[NR_FULLNESS_GROUPS + 3] += r->freeable;
	return row;
fail:
	Py_DECREF(row);
	return NULL;
}

/* stats() -> the reference's dict: per-class rows, totals, pool counters */
static PyObject *Pool_stats(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	struct zs_pool *pool = &self->pool;
	static const char *const total_keys[] = {"obj_allocated", "obj_used", "pages_used", "freeable"};
	uint64_t total[NR_FULLNESS_GROUPS + 4] = {0};
	struct zs_class_stat *rows = malloc(pool->nr_classes * sizeof(*rows));
	struct zs_pool_stat ps;
	PyObject *out = NULL, *list = NULL, *tot = NULL, *row;

	if (!rows)
		return PyErr_NoMemory();
	zs_stat_snapshot(pool, rows, &ps);
	if (!(list = PyList_New(0)) || !(tot = PyDict_New()) || !(out = PyDict_New()))
		goto fail;
	for (uint32_t i = 0; i < pool->nr_classes; i++) {
		if (!(row = zs_stat_row(&rows[i], total)))
			goto fail;
		if (PyList_Append(list, row) < 0) {
			Py_DECREF(row);
			goto fail;
		}
		Py_DECREF(row);
	}
	for (int g = 1; g < NR_FULLNESS_GROUPS; g++)
		if (dict_set_u64(tot, fullness_names[g], total[g]))
			goto fail;
	for (int k = 0; k < 4; k++)
		if (dict_set_u64(tot, total_keys[k], total[NR_FULLNESS_GROUPS + k]))
			goto fail;
	if (PyDict_SetItemString(out, "classes", list) || PyDict_SetItemString(out, "total", tot) ||
	    dict_set_u64(out, "pages_compacted", ps.pages_compacted) ||
	    dict_set_u64(out, "nr_pages", ps.nr_pages) ||
	    dict_set_u64(out, "huge_class_size", pool->huge_class_size) ||
	    dict_set_u64(out, "chain_size", pool->chain_size) ||
	    dict_set_u64(out, "nr_handles", ps.nr_handles))
		goto fail;
	Py_DECREF(list);
	Py_DECREF(tot);
	free(rows);
	return out;
fail:
	Py_XDECREF(list);
	Py_XDECREF(tot);
	Py_XDECREF(out);
	free(rows);
	return NULL;
}

/* native_memory() -> bytes of C memory held, by kind */
static PyObject *Pool_native_memory(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	struct zs_mem_stat m;

	zs_mem_snapshot(&self->pool, &m);
	return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
			     "pool", (Py_ssize_t)sizeof(PoolObject),
			     "handle_table", (Py_ssize_t)m.handle_table,
			     "zspage_descriptors", (Py_ssize_t)m.zspage_descriptors,
			     "class_tables", (Py_ssize_t)m.class_tables,
			     "arena_descriptors", (Py_ssize_t)m.arena_descriptors,
			     "mapping_records", (Py_ssize_t)m.mapping_records,
			     "arena_bytes_mapped", (Py_ssize_t)m.arena_bytes_mapped,
			     "arenas", (Py_ssize_t)m.arenas);
}

/* _arena_counts() -> (arenas ever mapped, arenas ever unmapped): for tests */
static PyObject *Pool_arena_counts(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	return Py_BuildValue("(KK)", (unsigned long long)zs_load(&self->pool.arenas_mapped),
			     (unsigned long long)zs_load(&self->pool.arenas_unmapped));
}

/* classes() -> the class table: (index, size, pages, objs, huge, first_index) */
static PyObject *Pool_classes(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	struct zs_pool *pool = &self->pool;
	PyObject *out = PyList_New(pool->nr_classes);

	if (!out)
		return NULL;
	for (uint32_t i = 0; i < pool->nr_classes; i++) {
		struct size_class *c = &pool->classes[i];
		PyObject *t = Py_BuildValue("(IIIIOI)", c->index, c->size, c->pages_per_zspage,
					    c->objs_per_zspage, c->huge ? Py_True : Py_False,
					    c->first_index);
		if (!t) {
			Py_DECREF(out);
			return NULL;
		}
		PyList_SET_ITEM(out, i, t);
	}
	return out;
}

/* _where(handle) -> (zspage id, object index): for white-box tests */
static PyObject *Pool_where(PoolObject *self, PyObject *arg)
{
	struct zs_pool *pool = &self->pool;
	uint64_t handle, e = 0;
	struct zs_obj o;
	unsigned shard;
	int err = -EINVAL;

	if (zs_parse_handle(arg, &handle)) {
		shard = zs_read_begin(pool);
		err = zs_resolve(pool, handle, &o);
		if (!err) {
			e = o.entry;
			zs_obj_unlock(&o);
		}
		zs_read_end(pool, shard);
	}
	if (err)
		return zs_bad_handle(arg);
	return Py_BuildValue("(II)", he_zspage(e), he_obj(e));
}

/* _check() -> {objects, zspages, pages, handles}: every structure checked against
 * the others (RuntimeError if they disagree); for tests, safe while other threads
 * use the pool (it waits for the operations in progress, without the GIL). */
static PyObject *Pool_check(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	struct zs_check_result r;
	char msg[256] = "";
	int err;

	Py_BEGIN_ALLOW_THREADS
	zs_write_begin(&self->pool);
	err = zs_check(&self->pool, &r, msg, sizeof(msg));
	zs_write_end(&self->pool);
	Py_END_ALLOW_THREADS
	if (err)
		return PyErr_Format(PyExc_RuntimeError, "zsmalloc: inconsistent: %s", msg);
	return Py_BuildValue("{s:K,s:K,s:K,s:K}", "objects", (unsigned long long)r.objects,
			     "zspages", (unsigned long long)r.zspages, "pages", (unsigned long long)r.pages,
			     "handles", (unsigned long long)r.handles);
}

static PyObject *Pool_get_nr_pages(PoolObject *self, void *Py_UNUSED(closure))
{
	return PyLong_FromUnsignedLongLong(zs_load(&self->pool.nr_pages));
}

static PyObject *Pool_get_pages_compacted(PoolObject *self, void *Py_UNUSED(closure))
{
	return PyLong_FromUnsignedLongLong(zs_load(&self->pool.pages_compacted));
}

static PyObject *Pool_get_page_size(PoolObject *self, void *Py_UNUSED(closure))
{
	return PyLong_FromSize_t(self->pool.page_size);
}

static PyObject *Pool_get_chain_size(PoolObject *self, void *Py_UNUSED(closure))
{
	return PyLong_FromUnsignedLong(self->pool.chain_size);
}

static PyObject *Pool_get_huge_class_size(PoolObject *self, void *Py_UNUSED(closure))
{
	return PyLong_FromUnsignedLong(self->pool.huge_class_size);
}

/* ===========================================================================
 * Ops table: struct zswap_zpool_ops, exported in a "zswap.zpool_ops" capsule
 *
 * `pool` is the PoolObject, kept alive by the capsule. Version 2, flags
 * ZSWAP_ZPOOL_NOGIL: these functions touch no Python object and never wait for
 * the GIL (charge() may, with none of our locks held); any thread may call them
 * at any time, with or without the GIL.
 * ========================================================================= */

static int zs_ops_alloc_write(void *pool, const void *src, size_t len, uint64_t *handle)
{
	PoolObject *self = pool;

	if (len == 0)
		return -EINVAL;
	if (len > self->pool.page_size)
		return -ENOSPC;
	return zs_malloc(&self->pool, len, src, len, handle);
}

static int zs_ops_read(void *pool, uint64_t handle, void *dst, size_t len)
{
	return zs_read(&((PoolObject *)pool)->pool, handle, dst, len, false, NULL);
}

static int zs_ops_free(void *pool, uint64_t handle)
{
	return zs_free(&((PoolObject *)pool)->pool, handle);
}

static const struct zswap_zpool_ops zs_zpool_ops = {
	.version = ZSWAP_ZPOOL_OPS_VERSION,
	.size = sizeof(struct zswap_zpool_ops),
	.alloc_write = zs_ops_alloc_write,
	.read = zs_ops_read,
	.free = zs_ops_free,
	.flags = ZSWAP_ZPOOL_NOGIL,
};

static void zs_ops_capsule_destructor(PyObject *capsule)
{
	PyObject *pool = PyCapsule_GetContext(capsule);

	Py_XDECREF(pool);
}

/* zpool_ops: a new capsule per access (a cached one would be a reference cycle) */
static PyObject *Pool_get_zpool_ops(PoolObject *self, void *Py_UNUSED(closure))
{
	PyObject *capsule = PyCapsule_New((void *)&zs_zpool_ops, ZSWAP_ZPOOL_OPS_CAPSULE,
					  zs_ops_capsule_destructor);

	if (!capsule)
		return NULL;
	Py_INCREF(self);
	if (PyCapsule_SetContext(capsule, self) < 0) {
		Py_DECREF(self);
		Py_DECREF(capsule);
		return NULL;
	}
	return capsule;
}

static PyMethodDef Pool_methods[] = {
	{"malloc", (PyCFunction)Pool_malloc, METH_O, "malloc(size) -> handle"},
	{"alloc_write", (PyCFunction)Pool_alloc_write, METH_O, "alloc_write(data) -> handle"},
	{"free", (PyCFunction)Pool_free, METH_O, "free(handle)"},
	{"read", (PyCFunction)(void (*)(void))Pool_read, METH_FASTCALL, "read(handle, size) -> bytes"},
	{"write", (PyCFunction)(void (*)(void))Pool_write, METH_FASTCALL, "write(handle, data)"},
	{"map", (PyCFunction)(void (*)(void))Pool_map, METH_VARARGS | METH_KEYWORDS,
	 "map(handle, mode=0) -> memoryview of a private copy"},
	{"unmap", (PyCFunction)Pool_unmap, METH_O, "unmap(handle)"},
	{"destroy", (PyCFunction)Pool_destroy, METH_NOARGS, "give every page back"},
	{"compact", (PyCFunction)Pool_compact, METH_NOARGS, "compact() -> pages freed"},
	{"total_size", (PyCFunction)Pool_total_size, METH_NOARGS, "bytes of pages held"},
	{"stats", (PyCFunction)Pool_stats, METH_NOARGS, "per-class statistics"},
	{"native_memory", (PyCFunction)Pool_native_memory, METH_NOARGS, "C memory held, by kind"},
	{"classes", (PyCFunction)Pool_classes, METH_NOARGS, "the size class table"},
	{"_where", (PyCFunction)Pool_where, METH_O, "(zspage id, object index) of a handle"},
	{"_check", (PyCFunction)Pool_check, METH_NOARGS, "check every structure (tests)"},
	{"_arena_counts", (PyCFunction)Pool_arena_counts, METH_NOARGS,
	 "(arenas ever mapped, ever unmapped) (tests)"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Pool_getset[] = {
	{"nr_pages", (getter)Pool_get_nr_pages, NULL, "pages held", NULL},
	{"pages_compacted", (getter)Pool_get_pages_compacted, NULL, "pages freed by compact()", NULL},
	{"page_size", (getter)Pool_get_page_size, NULL, "page size", NULL},
	{"chain_size", (getter)Pool_get_chain_size, NULL, "most pages per zspage", NULL},
	{"huge_class_size", (getter)Pool_get_huge_class_size, NULL, "zs_huge_class_size()", NULL},
	{"zpool_ops", (getter)Pool_get_zpool_ops, NULL, "a zswap.zpool_ops capsule", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Pool_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "zswap_zsmalloc._zsmalloc.Pool",
	.tp_basicsize = sizeof(PoolObject),
	.tp_dealloc = (destructor)Pool_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Pool(pages, chain_size=8, page_acct=None): a zsmalloc pool in C",
	.tp_methods = Pool_methods,
	.tp_getset = Pool_getset,
	.tp_new = Pool_new,
};

/* ===========================================================================
 * Test helpers: calls through a zpool_ops capsule, as zswap-core makes them
 * ========================================================================= */

static const struct zswap_zpool_ops *zs_capsule_ops(PyObject *capsule, void **pool)
{
	const struct zswap_zpool_ops *ops = PyCapsule_GetPointer(capsule, ZSWAP_ZPOOL_OPS_CAPSULE);

	if (!ops)
		return NULL;
	*pool = PyCapsule_GetContext(capsule);
	if (!*pool && PyErr_Occurred())
		return NULL;
	return ops;
}

static PyObject *zs_ops_error(int err)
{
	return zs_error(-err, "zpool ops: %s", strerror(-err));
}

static PyObject *mod_ops_alloc_write(PyObject *Py_UNUSED(m), PyObject *args)
{
	const struct zswap_zpool_ops *ops;
	PyObject *capsule;
	Py_buffer view;
	uint64_t handle;
	void *pool;
	int err;

	if (!PyArg_ParseTuple(args, "Oy*:_ops_alloc_write", &capsule, &view))
		return NULL;
	if (!(ops = zs_capsule_ops(capsule, &pool))) {
		PyBuffer_Release(&view);
		return NULL;
	}
	err = ops->alloc_write(pool, view.buf, (size_t)view.len, &handle);
	PyBuffer_Release(&view);
	if (err)
		return zs_ops_error(err);
	return PyLong_FromUnsignedLongLong(handle);
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
	if (!(ops = zs_capsule_ops(capsule, &pool)))
		return NULL;
	if (!(out = PyBytes_FromStringAndSize(NULL, n)))
		return NULL;
	err = ops->read(pool, handle, PyBytes_AS_STRING(out), (size_t)n);
	if (err) {
		Py_DECREF(out);
		return zs_ops_error(err);
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
	if (!(ops = zs_capsule_ops(capsule, &pool)))
		return NULL;
	err = ops->free(pool, handle);
	if (err)
		return zs_ops_error(err);
	Py_RETURN_NONE;
}

/* ===========================================================================
 * Stress test: threads calling the ops table without the GIL
 *
 * _stress(ops, nthreads, nops, seed, compact=True, keep=False) starts `nthreads`
 * pthreads that call the ops table of a zpool_ops capsule of this module without
 * the GIL, as zswap-core's store and load paths do, and, with `compact`, one more
 * that compacts the pool (the C function, as Pool.compact() runs it) and checks
 * every structure (zs_check, under the write side) until they are done.
 *
 * Each worker owns its objects. It starts with STRESS_HUGE_FIRST page-sized
 * objects (the huge class: a new zspage each, so a charge() each: fault injection
 * is sure to be reached), then runs `nops` steps picked by its own generator:
 * alloc_write (40%: sizes from every class, from a band of classes of its own, and
 * from the smallest classes, which all threads share), read (35%: the whole
 * object or a prefix, compared byte for byte), free (20%: compared first), and
 * forged handles (5%: generation 0 or past 2**37, which must be -EINVAL). The data
 * of an object comes from (seed, tag), its tag unique in the run; a read that
 * differs is a mismatch. Without `keep` a worker frees what it holds at the end.
 *
 * The counts are exact whatever the interleaving: -ENOMEM is the page
 * allocator's refusal (failures), any other error is counted in `errors`.
 * ========================================================================= */

#define STRESS_LIVE 96      /* objects a worker holds at most */
#define STRESS_HUGE_FIRST 4 /* page-sized objects first: a charge() each */
#define STRESS_MAX_THREADS 64

struct stress_obj {
	uint64_t handle, tag;
	uint32_t len;
};

struct stress_run {
	const struct zswap_zpool_ops *ops;
	PoolObject *pool;
	uint64_t nops, seed;
	size_t page_size;
	bool keep;
	uint32_t running; /* atomic: workers not finished */
};

struct stress_worker {
	struct stress_run *run;
	uint32_t index;
	pthread_t tid;
	bool started;
	uint64_t rng, next_tag;
	unsigned char *want, *got;
	struct stress_obj *objs;
	uint32_t nr;
	/* results */
	uint64_t ops, allocs, reads, frees, mismatches, errors, enomem;
	/* the compactor's */
	uint64_t rounds, pages_freed, inconsistent;
	char msg[256];
};

static inline uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* The contents of the object tagged `tag` in the run seeded `seed`. */
static void stress_pattern(unsigned char *p, size_t len, uint64_t seed, uint64_t tag)
{
	uint64_t x = seed ^ tag * UINT64_C(0xd1342543de82ef95);

	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = splitmix64(&x);

		memcpy(p + i, &w, len - i < 8 ? len - i : 8);
	}
}

static size_t stress_size(struct stress_worker *w)
{
	size_t ps = w->run->page_size, band = ps / 8;
	uint64_t r = splitmix64(&w->rng);

	switch (r % 4) {
	case 0: /* any class, huge ones included: shared with every thread */
		return 1 + (size_t)(r >> 8) % ps;
	case 1: /* the smallest classes: shared and busy */
		return 1 + (size_t)(r >> 8) % 128;
	default: /* a band of its own (workers i and i + 7 share one) */
		return 1 + (w->index % 7) * band + (size_t)(r >> 8) % band;
	}
}

static void stress_alloc(struct stress_worker *w, size_t len)
{
	struct stress_run *run = w->run;
	uint64_t tag = (uint64_t)w->index << 40 | ++w->next_tag, handle;
	int err;

	stress_pattern(w->want, len, run->seed, tag);
	err = run->ops->alloc_write(run->pool, w->want, len, &handle);
	w->ops++;
	if (err == -ENOMEM) {
		w->enomem++;
		return;
	}
	if (err || !handle || handle >= ZS_HANDLE_LIMIT) {
		w->errors++;
		return;
	}
	w->allocs++;
	w->objs[w->nr++] = (struct stress_obj){handle, tag, (uint32_t)len};
}

/* Read object k back (its first `len` bytes) and compare. */
static void stress_verify(struct stress_worker *w, uint32_t k, size_t len)
{
	struct stress_run *run = w->run;
	struct stress_obj *o = &w->objs[k];
	int err = run->ops->read(run->pool, o->handle, w->got, len);

	w->ops++;
	w->reads++;
	if (err) {
		w->errors++;
		return;
	}
	stress_pattern(w->want, len, run->seed, o->tag);
	if (memcmp(w->want, w->got, len))
		w->mismatches++;
}

static void stress_free(struct stress_worker *w, uint32_t k)
{
	struct stress_run *run = w->run;

	stress_verify(w, k, w->objs[k].len);
	w->ops++;
	if (run->ops->free(run->pool, w->objs[k].handle))
		w->errors++;
	else
		w->frees++;
	w->objs[k] = w->objs[--w->nr];
}

/* Handles that can name no object: generation 0 (never given out), past 2**37. */
static void stress_forged(struct stress_worker *w, uint32_t k)
{
	struct stress_run *run = w->run;
	uint64_t bad[2] = {w->objs[k].handle & ZS_SLOT_MASK, w->objs[k].handle | ZS_HANDLE_LIMIT};

	for (int i = 0; i < 2; i++) {
		w->ops += 2;
		if (run->ops->read(run->pool, bad[i], w->got, 1) != -EINVAL ||
		    run->ops->free(run->pool, bad[i]) != -EINVAL)
			w->errors++;
	}
}

static void *stress_worker_main(void *arg)
{
	struct stress_worker *w = arg;
	struct stress_run *run = w->run;

	for (int i = 0; i < STRESS_HUGE_FIRST; i++)
		stress_alloc(w, run->page_size);
	for (uint64_t op = 0; op < run->nops; op++) {
		uint64_t r = splitmix64(&w->rng);
		uint32_t pick = (uint32_t)(r % 100), k = w->nr ? (uint32_t)((r >> 8) % w->nr) : 0;

		if (!w->nr || (pick < 40 && w->nr < STRESS_LIVE)) {
			stress_alloc(w, stress_size(w));
		} else if (pick < 75) {
			size_t len = w->objs[k].len;

			if (r >> 40 & 1) /* a prefix */
				len = 1 + (size_t)(r >> 41) % len;
			stress_verify(w, k, len);
		} else if (pick < 95) {
			stress_free(w, k);
		} else {
			stress_forged(w, k);
		}
	}
	if (!run->keep)
		while (w->nr)
			stress_free(w, w->nr - 1);
	__atomic_fetch_sub(&run->running, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Compact and check, again and again, until the workers are done (once at least). */
static void *stress_compactor_main(void *arg)
{
	struct stress_worker *w = arg;
	struct zs_pool *pool = &w->run->pool->pool;
	struct zs_check_result r;

	do {
		w->pages_freed += zs_compact(pool);
		zs_write_begin(pool);
		if (zs_check(pool, &r, w->msg, sizeof(w->msg)))
			w->inconsistent++;
		zs_write_end(pool);
		w->rounds++;
	} while (__atomic_load_n(&w->run->running, __ATOMIC_ACQUIRE));
	return NULL;
}

static PyObject *stress_result(struct stress_worker *ws, uint32_t n, struct stress_worker *comp,
			       bool keep)
{
	uint64_t sum[7] = {0};
	PyObject *out = PyDict_New(), *live = NULL;

	if (!out)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v[7] = {ws[i].ops, ws[i].allocs, ws[i].reads, ws[i].frees,
				 ws[i].mismatches, ws[i].errors, ws[i].enomem};

		for (int k = 0; k < 7; k++)
			sum[k] += v[k];
	}
	if (dict_set_u64(out, "threads", n) || dict_set_u64(out, "ops", sum[0]) ||
	    dict_set_u64(out, "allocs", sum[1]) || dict_set_u64(out, "reads", sum[2]) ||
	    dict_set_u64(out, "frees", sum[3]) || dict_set_u64(out, "mismatches", sum[4]) ||
	    dict_set_u64(out, "errors", sum[5]) || dict_set_u64(out, "enomem", sum[6]) ||
	    dict_set_u64(out, "compactions", comp ? comp->rounds : 0) ||
	    dict_set_u64(out, "pages_compacted", comp ? comp->pages_freed : 0) ||
	    dict_set_u64(out, "inconsistent", comp ? comp->inconsistent : 0))
		goto fail;
	if (comp && comp->inconsistent) {
		PyObject *msg = PyUnicode_FromString(comp->msg);

		if (!msg || PyDict_SetItemString(out, "inconsistency", msg) < 0) {
			Py_XDECREF(msg);
			goto fail;
		}
		Py_DECREF(msg);
	}
	if (keep) {
		if (!(live = PyList_New(0)))
			goto fail;
		for (uint32_t i = 0; i < n; i++) {
			for (uint32_t k = 0; k < ws[i].nr; k++) {
				struct stress_obj *o = &ws[i].objs[k];
				PyObject *t = Py_BuildValue("(KIK)", (unsigned long long)o->handle, o->len,
							    (unsigned long long)o->tag);

				if (!t || PyList_Append(live, t) < 0) {
					Py_XDECREF(t);
					goto fail;
				}
				Py_DECREF(t);
			}
		}
		if (PyDict_SetItemString(out, "live", live) < 0)
			goto fail;
		Py_DECREF(live);
	}
	return out;
fail:
	Py_XDECREF(live);
	Py_DECREF(out);
	return NULL;
}

static PyObject *mod_stress(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"ops", "nthreads", "nops", "seed", "compact", "keep", NULL};
	struct stress_worker *ws = NULL, *comp = NULL;
	struct stress_run run = {0};
	unsigned long long nops, seed;
	unsigned int nthreads;
	int compact = 1, keep = 0, failed = 0;
	PyObject *capsule, *out = NULL;
	void *ctx;
	uint32_t i;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "OIKK|pp:_stress", kwlist, &capsule, &nthreads,
					 &nops, &seed, &compact, &keep))
		return NULL;
	if (nthreads < 1 || nthreads > STRESS_MAX_THREADS)
		return PyErr_Format(PyExc_ValueError, "nthreads must be 1..%d", STRESS_MAX_THREADS);
	if (!(run.ops = zs_capsule_ops(capsule, &ctx)))
		return NULL;
	if (run.ops != &zs_zpool_ops || !ctx)
		return PyErr_Format(PyExc_TypeError, "_stress needs the zpool_ops of a zsmalloc Pool");
	run.pool = ctx; /* alive: the capsule holds it, and we hold the capsule */
	run.nops = nops;
	run.seed = seed;
	run.keep = keep;
	run.page_size = run.pool->pool.page_size;
	run.running = nthreads;
	ws = calloc(nthreads + 1, sizeof(*ws));
	if (!ws)
		return PyErr_NoMemory();
	for (i = 0; i < nthreads; i++) {
		ws[i].run = &run;
		ws[i].index = i;
		ws[i].rng = seed ^ (i + 1) * UINT64_C(0x2545f4914f6cdd1d);
		ws[i].want = malloc(run.page_size);
		ws[i].got = malloc(run.page_size);
		ws[i].objs = malloc((STRESS_LIVE + STRESS_HUGE_FIRST) * sizeof(*ws[i].objs));
		if (!ws[i].want || !ws[i].got || !ws[i].objs) {
			PyErr_NoMemory();
			goto out;
		}
	}
	if (compact) {
		comp = &ws[nthreads];
		comp->run = &run;
	}
	Py_BEGIN_ALLOW_THREADS /* a Python fault hook can run in charge() meanwhile */
	for (i = 0; i < nthreads; i++) {
		ws[i].started = !pthread_create(&ws[i].tid, NULL, stress_worker_main, &ws[i]);
		if (!ws[i].started) {
			failed = 1;
			__atomic_fetch_sub(&run.running, 1, __ATOMIC_RELEASE);
		}
	}
	if (comp) {
		comp->started = !pthread_create(&comp->tid, NULL, stress_compactor_main, comp);
		failed |= !comp->started;
	}
	for (i = 0; i <= nthreads; i++)
		if (ws[i].started)
			pthread_join(ws[i].tid, NULL);
	Py_END_ALLOW_THREADS
	if (failed)
		PyErr_SetString(PyExc_RuntimeError, "_stress: could not start a thread");
	else
		out = stress_result(ws, nthreads, comp, keep);
out:
	for (i = 0; i < nthreads; i++) {
		free(ws[i].want);
		free(ws[i].got);
		free(ws[i].objs);
	}
	free(ws);
	return out;
}

/* _stress_pattern(seed, tag, length) -> the bytes _stress wrote in that object */
static PyObject *mod_stress_pattern(PyObject *Py_UNUSED(m), PyObject *args)
{
	unsigned long long seed, tag;
	Py_ssize_t len;
	PyObject *out;

	if (!PyArg_ParseTuple(args, "KKn:_stress_pattern", &seed, &tag, &len))
		return NULL;
	if (len < 0)
		return PyErr_Format(PyExc_ValueError, "negative length");
	if (!(out = PyBytes_FromStringAndSize(NULL, len)))
		return NULL;
	stress_pattern((unsigned char *)PyBytes_AS_STRING(out), (size_t)len, seed, tag);
	return out;
}

/* ===========================================================================
 * Module init
 * ========================================================================= */

static PyMethodDef module_methods[] = {
	{"_ops_alloc_write", mod_ops_alloc_write, METH_VARARGS, "ops->alloc_write through a capsule"},
	{"_ops_read", mod_ops_read, METH_VARARGS, "ops->read through a capsule"},
	{"_ops_free", mod_ops_free, METH_VARARGS, "ops->free through a capsule"},
	{"_stress", (PyCFunction)(void (*)(void))mod_stress, METH_VARARGS | METH_KEYWORDS,
	 "_stress(ops, nthreads, nops, seed, compact=True, keep=False) -> counts: pthreads "
	 "calling the ops table without the GIL"},
	{"_stress_pattern", mod_stress_pattern, METH_VARARGS,
	 "_stress_pattern(seed, tag, length) -> the data of a _stress object"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef zsmalloc_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_zsmalloc._zsmalloc",
	.m_doc = "zsmalloc in C: a zswap zpool with a C ops table (usable without the GIL)",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__zsmalloc(void)
{
	PyObject *m, *core;

	core = PyImport_ImportModule("zswap_core");
	if (!core)
		return NULL;
	ZpoolError = PyObject_GetAttrString(core, "ZpoolError");
	Py_DECREF(core);
	if (!ZpoolError)
		return NULL;
	if (PyType_Ready(&Pool_Type) < 0)
		return NULL;
	m = PyModule_Create(&zsmalloc_module);
	if (!m)
		return NULL;
	Py_INCREF(&Pool_Type);
	if (PyModule_AddObject(m, "Pool", (PyObject *)&Pool_Type) < 0 ||
	    PyModule_AddIntConstant(m, "ZPOOL_OPS_VERSION", ZSWAP_ZPOOL_OPS_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "ZPOOL_OPS_FLAGS", ZSWAP_ZPOOL_NOGIL) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_PAGE_SIZE", ZS_MAX_PAGE_SIZE) < 0) {
		Py_DECREF(&Pool_Type);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
