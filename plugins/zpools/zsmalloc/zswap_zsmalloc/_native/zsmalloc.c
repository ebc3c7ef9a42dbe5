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
 * objects that may straddle the pages of a zspage, and compaction. Unlike the
 * kernel, the pages of one zspage are contiguous: they are a run of pages in a
 * large anonymous mapping (an arena), so a straddling object is one memcpy.
 *
 * Memory: every byte here comes from malloc() or mmap(), never from PyMem_*
 * (tracemalloc's hooks want the GIL). Pages are counted by zswap-core's page
 * allocator through its `struct zswap_page_acct` (see zswap_ops.h).
 *
 * Locking: one mutex per pool (pool->lock). No Python code runs, no Python object
 * is created, and the GIL is never waited for while it is held.
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

#define ZS_NONE UINT32_MAX /* no zspage / object / slot */

#define ZS_ARENA_MIN_BYTES ((size_t)4 << 20)
#define ZS_ARENA_ALIGN ((size_t)2 << 20) /* a transparent huge page */
#define ZS_MAX_ARENAS 65535

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
	uint32_t index;       /* slot number (debugfs "class") */
	uint32_t first_index; /* lowest slot merged into it */
	uint32_t size;        /* bytes per object, handle included */
	uint32_t pages_per_zspage;
	uint32_t objs_per_zspage;
	uint32_t hdr;  /* ZS_HANDLE_SIZE, or 0 when huge */
	uint32_t dlen; /* bytes of data a mapping shows: size - hdr */
	bool huge;
	/* run-time state, under pool->lock */
	uint32_t mask; /* bit g set: group g is not empty */
	uint32_t nr_zspages;
	uint64_t obj_used;
	struct zs_group groups[NR_FULLNESS_GROUPS];
};

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
	uint16_t class;   /* index in pool->classes */
	uint8_t fg;       /* fullness group; 0: in no list */
	uint8_t skip;     /* compaction: holds only mapped objects, do not take again */
};

struct zs_arena {
	char *base;
	uint32_t nr_pages;
	uint32_t nr_free;
	uint32_t hint; /* no free page below this one */
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
 * generation above the highest seen, so no old handle becomes valid again.
 *
 * map() hands out a private copy (a bytearray) and records it; unmap() copies it
 * back (RW, WO) and forgets it. No Python object ever points into an arena.
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
	uint32_t slot;
	int mode;
	unsigned long thread;
	PyObject *buf; /* the bytearray the mapping shows (a strong reference) */
};

/* ===========================================================================
 * The pool
 * ========================================================================= */

struct zs_pool {
	/* Protects every field below, the arenas' contents and bitmaps, and the
	 * zspage and handle tables. Held only around C code: never across a call
	 * into Python (charge() included) nor while creating a Python object. */
	pthread_mutex_t lock;

	/* set at creation, then read-only */
	size_t page_size;
	uint32_t chain_size;
	uint32_t delta;
	uint32_t nr_slots;
	uint32_t nr_classes;
	uint32_t huge_class_size;
	size_t arena_bytes;
	struct size_class *classes;
	uint16_t *slot_class; /* slot -> index in classes */
	struct zswap_page_acct *acct;

	bool dead;
	uint64_t nr_pages;
	uint64_t pages_compacted;

	uint64_t *handles; /* the handle table */
	uint32_t nr_slots_used; /* slots handed out so far (table length) */
	uint32_t handle_cap;
	uint32_t free_slot;   /* top of the free-slot stack */
	uint32_t nr_free_slots;
	uint32_t gen_base; /* generation of a slot used for the first time */

	struct zspage *zspages; /* the zspage descriptor table */
	uint32_t nr_zspage_ids;
	uint32_t zspage_cap;
	uint32_t free_zspage; /* unused descriptors, linked by `next` */
	uint32_t nr_zspages;  /* live zspages */

	struct zs_arena **arenas;
	uint32_t nr_arena_ids;
	uint32_t nr_arenas;

	struct zs_mapping *maps; /* outstanding mappings, oldest first */
	uint32_t nr_maps;
	uint32_t maps_cap;
};

static inline void zs_lock(struct zs_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
}

static inline void zs_unlock(struct zs_pool *pool)
{
	pthread_mutex_unlock(&pool->lock);
}

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

/* Build pool->classes and pool->slot_class; 0 or -ENOMEM. */
static int zs_build_classes(struct zs_pool *pool)
{
	size_t page_size = pool->page_size;
	uint32_t nr = 0, slot, i;
	struct size_class *shrunk;

	pool->delta = (uint32_t)(page_size >> 8);
	pool->nr_slots = (uint32_t)((page_size - ZS_MIN_ALLOC_SIZE + pool->delta - 1) / pool->delta) + 1;
	pool->classes = malloc(pool->nr_slots * sizeof(*pool->classes));
	pool->slot_class = malloc(pool->nr_slots * sizeof(*pool->slot_class));
	if (!pool->classes || !pool->slot_class)
		return -ENOMEM;
	/* from the largest slot down; classes[] is filled largest first, reversed below */
	for (slot = pool->nr_slots; slot-- > 0;) {
		size_t sz = ZS_MIN_ALLOC_SIZE + (size_t)slot * pool->delta;
		uint32_t size = (uint32_t)(sz < page_size ? sz : page_size);
		uint32_t pages = get_pages_per_zspage(size, page_size, pool->chain_size);
		uint32_t objs = (uint32_t)(pages * page_size / size);
		struct size_class *last = nr ? &pool->classes[nr - 1] : NULL;

		if (pages != 1 && objs != 1 && !pool->huge_class_size)
			pool->huge_class_size = size - (ZS_HANDLE_SIZE - 1);
		if (last && last->pages_per_zspage == pages && last->objs_per_zspage == objs) {
			last->first_index = slot;
			pool->slot_class[slot] = (uint16_t)(nr - 1);
			continue;
		}
		zs_init_class(&pool->classes[nr], slot, size, pages, objs);
		pool->slot_class[slot] = (uint16_t)nr++;
	}
	for (i = 0; i < nr / 2; i++) {
		struct size_class tmp = pool->classes[i];
		pool->classes[i] = pool->classes[nr - 1 - i];
		pool->classes[nr - 1 - i] = tmp;
	}
	for (slot = 0; slot < pool->nr_slots; slot++)
		pool->slot_class[slot] = (uint16_t)(nr - 1 - pool->slot_class[slot]);
	pool->nr_classes = nr;
	shrunk = realloc(pool->classes, nr * sizeof(*pool->classes));
	if (shrunk)
		pool->classes = shrunk;
	return 0;
}

/* Pages compaction could free in `class` (the kernel's zs_can_compact). */
static inline uint64_t zs_can_compact(const struct size_class *class)
{
	uint64_t wasted = (uint64_t)class->nr_zspages * class->objs_per_zspage - class->obj_used;

	return wasted / class->objs_per_zspage * class->pages_per_zspage;
}

/* -- arenas ----------------------------------------------------------------- */

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

/* Map a new arena into a free slot of pool->arenas; its id or ZS_NONE. */
static uint32_t zs_arena_map(struct zs_pool *pool)
{
	size_t len = pool->arena_bytes + ZS_ARENA_ALIGN, head, tail;
	uint32_t nr_pages = (uint32_t)(pool->arena_bytes / pool->page_size);
	uint32_t id;
	uintptr_t start;
	char *raw;
	struct zs_arena *a;

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
	a = calloc(1, arena_struct_bytes(nr_pages));
	if (!a)
		return ZS_NONE;
	raw = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		free(a);
		return ZS_NONE;
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
	pool->arenas[id] = a;
	pool->nr_arenas++;
	return id;
}

static void zs_arena_unmap(struct zs_pool *pool, uint32_t id)
{
	struct zs_arena *a = pool->arenas[id];

	munmap(a->base, pool->arena_bytes);
	free(a);
	pool->arenas[id] = NULL;
	pool->nr_arenas--;
	if (!pool->nr_arenas) {
		free(pool->arenas);
		pool->arenas = NULL;
		pool->nr_arena_ids = 0;
	}
}

/* Take a run of `nr` contiguous pages from the first arena that has one. */
static char *zs_alloc_pages(struct zs_pool *pool, uint32_t nr, uint16_t *arena)
{
	uint32_t id, start = ZS_NONE;
	struct zs_arena *a = NULL;

	for (id = 0; id < pool->nr_arena_ids; id++) {
		a = pool->arenas[id];
		if (a && a->nr_free >= nr && (start = arena_find_run(a, nr)) != ZS_NONE)
			break;
	}
	if (start == ZS_NONE) {
		id = zs_arena_map(pool);
		if (id == ZS_NONE)
			return NULL;
		a = pool->arenas[id];
		start = 0;
	}
	arena_set_run(a, start, nr, true);
	a->nr_free -= nr;
	if (start == a->hint)
		a->hint = start + nr;
	*arena = (uint16_t)id;
	return a->base + (size_t)start * pool->page_size;
}

static void zs_free_pages(struct zs_pool *pool, uint16_t id, char *base, uint32_t nr)
{
	struct zs_arena *a = pool->arenas[id];
	uint32_t start = (uint32_t)((size_t)(base - a->base) / pool->page_size);

	arena_set_run(a, start, nr, false);
	a->nr_free += nr;
	if (start < a->hint)
		a->hint = start;
	if (a->nr_free == a->nr_pages)
		zs_arena_unmap(pool, id);
}

/* -- fullness groups ---------------------------------------------------------- */

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

/* A zspage descriptor id, the table grown if needed; ZS_NONE on ENOMEM. */
static uint32_t zs_get_descriptor(struct zs_pool *pool)
{
	uint32_t id = pool->free_zspage;

	if (id != ZS_NONE) {
		pool->free_zspage = pool->zspages[id].next;
		return id;
	}
	if (pool->nr_zspage_ids == pool->zspage_cap) {
		uint32_t cap = zs_grow(pool->zspage_cap, 16);
		struct zspage *grown = realloc(pool->zspages, cap * sizeof(*grown));
		if (!grown)
			return ZS_NONE;
		pool->zspages = grown;
		pool->zspage_cap = cap;
	}
	return pool->nr_zspage_ids++;
}

/* A new, empty zspage of `class` (its pages already charged); ZS_NONE on ENOMEM. */
static uint32_t alloc_zspage(struct zs_pool *pool, struct size_class *class)
{
	uint32_t id = zs_get_descriptor(pool), nr = class->pages_per_zspage;
	struct zspage *zs;
	uint16_t arena;
	char *base;

	if (id == ZS_NONE)
		return ZS_NONE;
	base = zs_alloc_pages(pool, nr, &arena);
	if (!base) {
		pool->zspages[id].next = pool->free_zspage;
		pool->free_zspage = id;
		if (!pool->nr_zspages) { /* keep "empty tables are freed" */
			free(pool->zspages);
			pool->zspages = NULL;
			pool->nr_zspage_ids = pool->zspage_cap = 0;
			pool->free_zspage = ZS_NONE;
		}
		return ZS_NONE;
	}
	memset(base, 0, (size_t)nr * pool->page_size); /* fresh pages read as zeros */
	zs = &pool->zspages[id];
	zs->base = base;
	zs->arena = arena;
	zs->class = (uint16_t)(class - pool->classes);
	zs->prev = zs->next = ZS_NONE;
	zs->inuse = 0;
	zs->fg = ZS_EMPTY;
	zs->skip = 0;
	zs->freeobj = 0; /* object 0 first, then 1, 2, ... */
	if (!class->huge) {
		for (uint32_t obj = 0; obj < class->objs_per_zspage; obj++) {
			uint64_t next = obj + 1 < class->objs_per_zspage ? obj + 1 : ZS_NONE;
			obj_word_set(class, zs, obj, next << 1);
		}
	}
	pool->nr_zspages++;
	pool->nr_pages += nr;
	class->nr_zspages++;
	return id;
}

/* Give an empty zspage's pages back (it is in no list). */
static void free_zspage(struct zs_pool *pool, struct size_class *class, uint32_t id)
{
	struct zspage *zs = &pool->zspages[id];

	zs_free_pages(pool, zs->arena, zs->base, class->pages_per_zspage);
	pool->acct->uncharge(pool->acct, class->pages_per_zspage);
	pool->nr_pages -= class->pages_per_zspage;
	class->nr_zspages--;
	zs->base = NULL;
	zs->next = pool->free_zspage;
	pool->free_zspage = id;
	if (!--pool->nr_zspages) {
		free(pool->zspages);
		pool->zspages = NULL;
		pool->nr_zspage_ids = pool->zspage_cap = 0;
		pool->free_zspage = ZS_NONE;
	}
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

/* Put object `obj` of zspage `id` back on its free list; an emptied zspage goes. */
static void obj_free(struct zs_pool *pool, struct size_class *class, uint32_t id, uint32_t obj)
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
	if (g != zs->fg) {
		zs_set_group(pool, class, id, g);
		if (g == ZS_EMPTY)
			free_zspage(pool, class, id);
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

static inline uint32_t zs_nr_handles(const struct zs_pool *pool)
{
	return pool->nr_slots_used - pool->nr_free_slots;
}

/* 0 when the next handle_alloc() cannot fail; else -ENOMEM (table full or no memory). */
static int handle_reserve(struct zs_pool *pool)
{
	if (pool->nr_free_slots)
		return 0;
	if (pool->nr_slots_used > ZS_SLOT_MASK)
		return -ENOMEM;
	if (pool->nr_slots_used == pool->handle_cap) {
		uint32_t cap = zs_grow(pool->handle_cap, 64);
		uint64_t *grown = realloc(pool->handles, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		pool->handles = grown;
		pool->handle_cap = cap;
	}
	return 0;
}

/* A slot and its next generation, from the free-slot stack or a new slot. */
static uint32_t handle_alloc(struct zs_pool *pool, uint32_t *gen)
{
	uint32_t slot = pool->free_slot;

	if (pool->nr_free_slots) {
		uint64_t e = pool->handles[slot];
		pool->free_slot = he_zspage(e);
		pool->nr_free_slots--;
		*gen = he_gen(e) + 1;
		if (*gen > ZS_GEN_MAX)
			*gen = 1;
		return slot;
	}
	*gen = pool->gen_base;
	return pool->nr_slots_used++;
}

/* Push `slot` on the free-slot stack; drop the table when no handle is left. */
static void handle_free(struct zs_pool *pool, uint32_t slot)
{
	uint32_t top = 0;

	pool->handles[slot] = he_gen(pool->handles[slot]) | (uint64_t)pool->free_slot << HE_ID_SHIFT;
	pool->free_slot = slot;
	pool->nr_free_slots++;
	if (zs_nr_handles(pool))
		return;
	for (uint32_t s = 0; s < pool->nr_slots_used; s++)
		if (he_gen(pool->handles[s]) > top)
			top = he_gen(pool->handles[s]);
	pool->gen_base = top + 1 > ZS_GEN_MAX ? 1 : top + 1;
	free(pool->handles);
	pool->handles = NULL;
	pool->handle_cap = pool->nr_slots_used = pool->nr_free_slots = 0;
	pool->free_slot = ZS_NONE;
}

/* The slot of a live handle, or -EINVAL (stale, forged, out of range, destroyed). */
static int handle_lookup(const struct zs_pool *pool, uint64_t handle, uint32_t *slot)
{
	uint64_t s = handle & ZS_SLOT_MASK, e;

	if (pool->dead || handle >= ZS_HANDLE_LIMIT || s >= pool->nr_slots_used)
		return -EINVAL;
	e = pool->handles[s];
	if (!(e & HE_LIVE) || he_gen(e) != handle >> ZS_SLOT_BITS)
		return -EINVAL;
	*slot = (uint32_t)s;
	return 0;
}

/* The object (class, zspage, data) of a live slot. */
static char *handle_data(struct zs_pool *pool, uint32_t slot, struct size_class **classp)
{
	uint64_t e = pool->handles[slot];
	struct zspage *zs = &pool->zspages[he_zspage(e)];
	struct size_class *class = &pool->classes[zs->class];

	*classp = class;
	return obj_data(class, zs, he_obj(e));
}

/* -- mappings ------------------------------------------------------------------ */

/* Mapping buffers to release once pool->lock is dropped. */
struct zs_release {
	PyObject **objs;
	uint32_t nr;
};

static void zs_release_bufs(struct zs_release *rel)
{
	for (uint32_t i = 0; i < rel->nr; i++)
		Py_DECREF(rel->objs[i]);
	free(rel->objs);
	rel->objs = NULL;
	rel->nr = 0;
}

static void maps_forget(struct zs_pool *pool)
{
	if (!pool->nr_maps) {
		free(pool->maps);
		pool->maps = NULL;
		pool->maps_cap = 0;
	}
}

/* Forget every mapping of `slot` (or all when slot is ZS_NONE), keeping the order of
 * the others; their buffers go to `rel`. If `rel` cannot grow, a buffer is released
 * here: a bytearray's deallocation runs no Python code. */
static void zs_drop_mappings(struct zs_pool *pool, uint32_t slot, struct zs_release *rel)
{
	uint32_t keep = 0, nr = 0;

	for (uint32_t i = 0; i < pool->nr_maps; i++)
		if (slot == ZS_NONE || pool->maps[i].slot == slot)
			nr++;
	rel->objs = nr ? malloc(nr * sizeof(*rel->objs)) : NULL;
	for (uint32_t i = 0; i < pool->nr_maps; i++) {
		struct zs_mapping *m = &pool->maps[i];

		if (slot != ZS_NONE && m->slot != slot) {
			pool->maps[keep++] = *m;
			continue;
		}
		if (slot != ZS_NONE || m->slot < pool->nr_slots_used)
			pool->handles[m->slot] &= ~HE_MAPPED;
		if (rel->objs)
			rel->objs[rel->nr++] = m->buf;
		else
			Py_DECREF(m->buf);
	}
	pool->nr_maps = keep;
	maps_forget(pool);
}

/* -- malloc and free --------------------------------------------------------- */

/* Allocate an object of `size` bytes; copy `len` bytes of `src` into it (src may
 * be NULL). 0 and *handle, or -EINVAL, -ENOSPC, -ENOMEM. The lock is dropped
 * around charge(), which may run a Python fault hook. */
static int zs_malloc(struct zs_pool *pool, size_t size, const void *src, size_t len, uint64_t *handle)
{
	struct size_class *class;
	uint32_t id, slot, gen, obj;
	int err;

	if (size == 0)
		return -EINVAL;
	if (size > pool->page_size)
		return -ENOSPC;
	class = zs_class_for(pool, size);
	zs_lock(pool);
	if (pool->dead) {
		zs_unlock(pool);
		return -EINVAL;
	}
	err = handle_reserve(pool);
	if (err) {
		zs_unlock(pool);
		return err;
	}
	id = zs_find_zspage(class);
	if (id == ZS_NONE) {
		zs_unlock(pool);
		if (pool->acct->charge(pool->acct, class->pages_per_zspage))
			return -ENOMEM;
		zs_lock(pool);
		err = pool->dead ? -EINVAL : handle_reserve(pool);
		if (!err) {
			id = alloc_zspage(pool, class);
			if (id == ZS_NONE)
				err = -ENOMEM;
		}
		if (err) {
			zs_unlock(pool);
			pool->acct->uncharge(pool->acct, class->pages_per_zspage);
			return err;
		}
	}
	slot = handle_alloc(pool, &gen);
	obj = obj_malloc(pool, class, id, slot);
	pool->handles[slot] = he_live(gen, id, obj);
	if (src)
		memcpy(obj_data(class, &pool->zspages[id], obj), src, len);
	zs_unlock(pool);
	*handle = (uint64_t)gen << ZS_SLOT_BITS | slot;
	return 0;
}

/* Free a live handle; its mappings die with it (their buffers go to `rel`). */
static int zs_free(struct zs_pool *pool, uint64_t handle, struct zs_release *rel)
{
	uint32_t slot, id;
	uint64_t e;
	int err;

	zs_lock(pool);
	err = handle_lookup(pool, handle, &slot);
	if (!err) {
		e = pool->handles[slot];
		if (e & HE_MAPPED)
			zs_drop_mappings(pool, slot, rel);
		id = he_zspage(e);
		obj_free(pool, &pool->classes[pool->zspages[id].class], id, he_obj(e));
		handle_free(pool, slot);
	}
	zs_unlock(pool);
	return err;
}

/* ===========================================================================
 * Read and write
 *
 * A copy in or out of the object's data under the pool lock. Lengths are checked
 * against the object: a write longer than the object is -EINVAL, as is (through the
 * ops table) a read beyond it; the Python read() clamps as the reference does.
 * ========================================================================= */

static int zs_read(struct zs_pool *pool, uint64_t handle, void *dst, size_t len, bool clamp, size_t *got)
{
	struct size_class *class;
	uint32_t slot;
	char *data;
	int err;

	zs_lock(pool);
	err = handle_lookup(pool, handle, &slot);
	if (!err) {
		data = handle_data(pool, slot, &class);
		if (len > class->dlen) {
			if (clamp)
				len = class->dlen;
			else
				err = -EINVAL;
		}
		if (!err)
			memcpy(dst, data, len);
	}
	zs_unlock(pool);
	if (got)
		*got = err ? 0 : len;
	return err;
}

static int zs_write(struct zs_pool *pool, uint64_t handle, const void *src, size_t len)
{
	struct size_class *class;
	uint32_t slot;
	char *data;
	int err;

	zs_lock(pool);
	err = handle_lookup(pool, handle, &slot);
	if (!err) {
		data = handle_data(pool, slot, &class);
		if (len > class->dlen)
			err = -E2BIG; /* reported as EINVAL, with its own message */
		else
			memcpy(data, src, len);
	}
	zs_unlock(pool);
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
		uint64_t word = obj_word_get(class, src, obj);
		uint32_t slot = (uint32_t)(word >> 1), new;

		if (!(word & 1) || pool->handles[slot] & HE_MAPPED)
			continue;
		new = dst->freeobj;
		dst->freeobj = (uint32_t)(obj_word_get(class, dst, new) >> 1);
		memcpy(obj_data(class, dst, new), obj_data(class, src, obj), class->dlen);
		obj_word_set(class, dst, new, word);
		dst->inuse++;
		obj_word_set(class, src, obj, (uint64_t)src->freeobj << 1);
		src->freeobj = obj;
		src->inuse--;
		pool->handles[slot] = he_live(he_gen(pool->handles[slot]), dst_id, new);
		if (dst->inuse == class->objs_per_zspage)
			break;
	}
}

/* Compact one class (lock held); pages freed. */
static uint64_t zs_compact_class(struct zs_pool *pool, struct size_class *class)
{
	uint32_t dst = ZS_NONE, src, objs = class->objs_per_zspage;
	uint64_t freed = 0;
	bool skipped = false;

	while (zs_can_compact(class)) {
		if (dst == ZS_NONE) {
			dst = zs_take(pool, class, ZS_FULL - 1, 1, false);
			if (dst == ZS_NONE)
				break;
		}
		src = zs_take(pool, class, 1, ZS_FULL - 1, true);
		if (src == ZS_NONE)
			break;
		zs_migrate(pool, class, src, dst);
		if (pool->zspages[src].inuse == 0) {
			free_zspage(pool, class, src);
			freed += class->pages_per_zspage;
		} else {
			zs_set_group(pool, class, src, get_fullness_group(pool->zspages[src].inuse, objs));
			if (pool->zspages[dst].inuse < objs) {
				pool->zspages[src].skip = 1; /* what is left in it is mapped */
				skipped = true;
			}
		}
		if (pool->zspages[dst].inuse == objs) {
			zs_set_group(pool, class, dst, ZS_FULL);
			dst = ZS_NONE;
		}
	}
	if (dst != ZS_NONE)
		zs_set_group(pool, class, dst, get_fullness_group(pool->zspages[dst].inuse, objs));
	if (skipped)
		for (int g = 1; g < ZS_FULL; g++)
			for (uint32_t id = class->groups[g].head; id != ZS_NONE; id = pool->zspages[id].next)
				pool->zspages[id].skip = 0;
	return freed;
}

static uint64_t zs_compact(struct zs_pool *pool)
{
	uint64_t freed = 0;

	for (uint32_t i = pool->nr_classes; i-- > 0;) {
		zs_lock(pool); /* one class at a time, as the kernel */
		if (pool->dead) {
			zs_unlock(pool);
			break;
		}
		if (!pool->classes[i].huge)
			freed += zs_compact_class(pool, &pool->classes[i]);
		zs_unlock(pool);
	}
	zs_lock(pool);
	pool->pages_compacted += freed;
	zs_unlock(pool);
	return freed;
}

/* -- destroy ------------------------------------------------------------------ */

/* Give every page back and free every table but the classes (lock held). */
static void zs_destroy(struct zs_pool *pool, struct zs_release *rel)
{
	if (pool->dead)
		return;
	pool->dead = true;
	zs_drop_mappings(pool, ZS_NONE, rel);
	for (uint32_t id = 0; id < pool->nr_arena_ids; id++) {
		if (pool->arenas[id]) {
			munmap(pool->arenas[id]->base, pool->arena_bytes);
			free(pool->arenas[id]);
		}
	}
	free(pool->arenas);
	pool->arenas = NULL;
	pool->nr_arena_ids = pool->nr_arenas = 0;
	if (pool->nr_pages)
		pool->acct->uncharge(pool->acct, (size_t)pool->nr_pages);
	pool->nr_pages = 0;
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
}

/* ===========================================================================
 * Statistics
 *
 * A snapshot of the counters taken under the lock into plain C memory; the
 * Python dicts are built after the lock is dropped.
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
	zs_lock(pool);
	for (uint32_t i = 0; i < pool->nr_classes; i++) {
		struct size_class *class = &pool->classes[i];

		rows[i].index = class->index;
		rows[i].size = class->size;
		rows[i].pages_per_zspage = class->pages_per_zspage;
		rows[i].objs = class->objs_per_zspage;
		rows[i].nr_zspages = class->nr_zspages;
		for (int g = 0; g < NR_FULLNESS_GROUPS; g++)
			rows[i].groups[g] = class->groups[g].nr;
		rows[i].obj_used = class->obj_used;
		rows[i].freeable = zs_can_compact(class);
	}
	ps->pages_compacted = pool->pages_compacted;
	ps->nr_pages = pool->nr_pages;
	ps->nr_handles = zs_nr_handles(pool);
	zs_unlock(pool);
}

struct zs_mem_stat {
	size_t handle_table, zspage_descriptors, class_tables, arena_descriptors;
	size_t mapping_records, arena_bytes_mapped, arenas;
};

static void zs_mem_snapshot(struct zs_pool *pool, struct zs_mem_stat *m)
{
	zs_lock(pool);
	m->handle_table = (size_t)pool->handle_cap * sizeof(*pool->handles);
	m->zspage_descriptors = (size_t)pool->zspage_cap * sizeof(*pool->zspages);
	m->class_tables = (size_t)pool->nr_classes * sizeof(*pool->classes) +
			  (size_t)pool->nr_slots * sizeof(*pool->slot_class);
	m->arena_descriptors = (size_t)pool->nr_arena_ids * sizeof(*pool->arenas) +
			       (size_t)pool->nr_arenas * arena_struct_bytes((uint32_t)(pool->arena_bytes / pool->page_size));
	m->mapping_records = (size_t)pool->maps_cap * sizeof(*pool->maps);
	m->arena_bytes_mapped = (size_t)pool->nr_arenas * pool->arena_bytes;
	m->arenas = pool->nr_arenas;
	zs_unlock(pool);
}

/* ===========================================================================
 * Python type: zswap_zsmalloc._zsmalloc.Pool
 *
 * The Zpool methods. Arguments are parsed and Python objects made before the lock
 * is taken or after it is dropped; errors are raised as zswap_core.ZpoolError.
 * ========================================================================= */

typedef struct {
	PyObject_HEAD
	struct zs_pool pool;
	PyObject *pages;    /* the PageAllocator (keeps `acct` alive) */
	PyObject *capsule;  /* its page_acct capsule */
	bool lock_ready;
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
	if (pthread_mutex_init(&pool->lock, NULL)) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	self->lock_ready = true;
	if (zs_build_classes(pool)) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	return (PyObject *)self;
}

static void Pool_dealloc(PoolObject *self)
{
	struct zs_release rel = {0};

	if (self->lock_ready) {
		zs_lock(&self->pool);
		zs_destroy(&self->pool, &rel);
		zs_unlock(&self->pool);
		zs_release_bufs(&rel);
		pthread_mutex_destroy(&self->pool.lock);
	}
	free(self->pool.classes);
	free(self->pool.slot_class);
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
	struct zs_release rel = {0};
	uint64_t handle;
	int err;

	if (!zs_parse_handle(arg, &handle))
		return zs_bad_handle(arg);
	err = zs_free(&self->pool, handle, &rel);
	zs_release_bufs(&rel);
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
	struct size_class *class;
	uint32_t slot;
	long len;

	zs_lock(pool);
	len = handle_lookup(pool, handle, &slot);
	if (!len) {
		handle_data(pool, slot, &class);
		len = class->dlen;
	}
	zs_unlock(pool);
	return len;
}

/* map(handle, mode=RW) -> memoryview of a private copy of the object */
static PyObject *Pool_map(PoolObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"handle", "mode", NULL};
	struct zs_pool *pool = &self->pool;
	struct size_class *class;
	PyObject *harg, *buf, *view;
	unsigned long thread = PyThread_get_thread_ident();
	uint64_t handle;
	uint32_t slot;
	int mode = 0;
	long len;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|i:map", kwlist, &harg, &mode))
		return NULL;
	if (!zs_parse_handle(harg, &handle) || (len = zs_data_len(pool, handle)) < 0)
		return zs_bad_handle(harg);
	buf = PyByteArray_FromStringAndSize(NULL, len);
	if (!buf)
		return NULL;
	zs_lock(pool);
	if (handle_lookup(pool, handle, &slot)) { /* freed meanwhile */
		zs_unlock(pool);
		Py_DECREF(buf);
		return zs_bad_handle(harg);
	}
	if (pool->nr_maps == pool->maps_cap) {
		uint32_t cap = pool->maps_cap ? pool->maps_cap * 2 : 8;
		struct zs_mapping *grown = realloc(pool->maps, cap * sizeof(*grown));
		if (!grown) {
			zs_unlock(pool);
			Py_DECREF(buf);
			return PyErr_NoMemory();
		}
		pool->maps = grown;
		pool->maps_cap = cap;
	}
	/* copied in for every mode: a WO mapping that writes part of the object keeps
	 * the rest */
	memcpy(PyByteArray_AS_STRING(buf), handle_data(pool, slot, &class), (size_t)len);
	pool->maps[pool->nr_maps++] = (struct zs_mapping){slot, mode, thread, buf};
	pool->handles[slot] |= HE_MAPPED;
	zs_unlock(pool);
	view = PyMemoryView_FromObject(buf); /* the record keeps its own reference */
	return view;
}

/* unmap(handle): forget the newest mapping of this thread (else the newest) */
static PyObject *Pool_unmap(PoolObject *self, PyObject *arg)
{
	struct zs_pool *pool = &self->pool;
	struct size_class *class;
	unsigned long thread = PyThread_get_thread_ident();
	struct zs_mapping m;
	uint64_t handle;
	uint32_t slot, at = ZS_NONE, i;
	char *data;

	if (!zs_parse_handle(arg, &handle))
		return zs_bad_handle(arg);
	zs_lock(pool);
	if (handle_lookup(pool, handle, &slot)) {
		zs_unlock(pool);
		return zs_bad_handle(arg);
	}
	for (i = pool->nr_maps; i-- > 0;) {
		if (pool->maps[i].slot != slot)
			continue;
		if (at == ZS_NONE)
			at = i;
		if (pool->maps[i].thread == thread) {
			at = i;
			break;
		}
	}
	if (at == ZS_NONE) {
		zs_unlock(pool);
		return zs_error(EINVAL, "zsmalloc: handle %R is not mapped", arg);
	}
	m = pool->maps[at];
	memmove(&pool->maps[at], &pool->maps[at + 1], (pool->nr_maps - at - 1) * sizeof(m));
	pool->nr_maps--;
	if (m.mode != ZS_MAP_RO) {
		size_t n = (size_t)PyByteArray_GET_SIZE(m.buf);

		data = handle_data(pool, slot, &class);
		memcpy(data, PyByteArray_AS_STRING(m.buf), n < class->dlen ? n : class->dlen);
	}
	for (i = 0; i < pool->nr_maps && pool->maps[i].slot != slot; i++)
		;
	if (i == pool->nr_maps)
		pool->handles[slot] &= ~HE_MAPPED;
	maps_forget(pool);
	zs_unlock(pool);
	Py_DECREF(m.buf);
	Py_RETURN_NONE;
}

static PyObject *Pool_destroy(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	struct zs_release rel = {0};

	zs_lock(&self->pool);
	zs_destroy(&self->pool, &rel);
	zs_unlock(&self->pool);
	zs_release_bufs(&rel);
	Py_RETURN_NONE;
}

static PyObject *Pool_compact(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	return PyLong_FromUnsignedLongLong(zs_compact(&self->pool));
}

static PyObject *Pool_total_size(PoolObject *self, PyObject *Py_UNUSED(ignored))
{
	uint64_t nr;

	zs_lock(&self->pool);
	nr = self->pool.nr_pages;
	zs_unlock(&self->pool);
	return PyLong_FromUnsignedLongLong(nr * self->pool.page_size);
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

/* One row of the classes table (`total` when index < 0 is not needed: rows only). */
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
	uint32_t slot;
	int err = -EINVAL;

	if (zs_parse_handle(arg, &handle)) {
		zs_lock(pool);
		err = handle_lookup(pool, handle, &slot);
		if (!err)
			e = pool->handles[slot];
		zs_unlock(pool);
	}
	if (err)
		return zs_bad_handle(arg);
	return Py_BuildValue("(II)", he_zspage(e), he_obj(e));
}

/* A uint64_t counter of the pool, read under its lock; `closure` is its offset. */
static PyObject *Pool_get_counter(PoolObject *self, void *closure)
{
	uint64_t nr;

	zs_lock(&self->pool);
	nr = *(uint64_t *)(void *)((char *)&self->pool + (size_t)closure);
	zs_unlock(&self->pool);
	return PyLong_FromUnsignedLongLong(nr);
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
 * `pool` is the PoolObject, kept alive by the capsule. Called with the GIL held
 * (version 1 of the header).
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
	struct zs_release rel = {0};
	int err = zs_free(&((PoolObject *)pool)->pool, handle, &rel);

	zs_release_bufs(&rel);
	return err;
}

static const struct zswap_zpool_ops zs_zpool_ops = {
	.version = ZSWAP_ZPOOL_OPS_VERSION,
	.size = sizeof(struct zswap_zpool_ops),
	.alloc_write = zs_ops_alloc_write,
	.read = zs_ops_read,
	.free = zs_ops_free,
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
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef Pool_getset[] = {
	{"nr_pages", (getter)Pool_get_counter, NULL, "pages held",
	 (void *)offsetof(struct zs_pool, nr_pages)},
	{"pages_compacted", (getter)Pool_get_counter, NULL, "pages freed by compact()",
	 (void *)offsetof(struct zs_pool, pages_compacted)},
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
 * Module init
 * ========================================================================= */

static PyMethodDef module_methods[] = {
	{"_ops_alloc_write", mod_ops_alloc_write, METH_VARARGS, "ops->alloc_write through a capsule"},
	{"_ops_read", mod_ops_read, METH_VARARGS, "ops->read through a capsule"},
	{"_ops_free", mod_ops_free, METH_VARARGS, "ops->free through a capsule"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef zsmalloc_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_zsmalloc._zsmalloc",
	.m_doc = "zsmalloc in C: a zswap zpool with a C ops table",
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
	    PyModule_AddIntConstant(m, "MAX_PAGE_SIZE", ZS_MAX_PAGE_SIZE) < 0) {
		Py_DECREF(&Pool_Type);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
