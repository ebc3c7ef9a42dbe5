/*
 * zswap.c - zswap's per-page hot path in C: the native backend of zswap_core.Zswap.
 *
 * The Python class keeps what is off the per-page path (parameters, pools and
 * their plugins, hooks, the writeback policy); this file holds what every page
 * goes through, and reads top to bottom as mm/zswap.c does:
 *
 *   1. entries    - per-type trees of 16-byte entries in 512-entry chunks, and the
 *                   memcgs (groups) they are charged to
 *   2. lru        - per (tree, pool, memcg) queues of (offset, stamp) records,
 *                   second chance
 *   3. pools      - the slots the Python pools register: codec and allocator calls
 *   4. store/load - store, load, invalidate; same-filled pages, the pool limit
 *   5. writeback  - the pieces the Python writeback policy calls
 *   6. init       - the Python type, its accounting and the module
 *
 * The packed entry has the Python backend's layout, so both backends compute the
 * same entries, counters and LRU order (the differential tests compare them):
 *   bit 0 present, bit 1 same-filled, bits 2-9 pool id, bits 10-26 length,
 *   bits 27-63 the allocator's handle.
 *
 * Locks. Every function here runs with the GIL held, and takes a C lock only for
 * a short section that calls no Python and never waits for the GIL. Where an
 * operation must wait for an entry that writeback has pinned, it drops its lock,
 * waits in Python for the writeback to end (wait_pin), and looks again. The
 * memcg lock is a leaf under the tree locks: taken inside one, never around one.
 *
 * MIT licence, part of zswap-core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

#define MAX_SWAPFILES 32
#define MAX_OFFSET 0xFFFFFFFFull
#define NR_POOLS 256

#define E_PRESENT 1ull
#define E_SAME 2ull
#define E_POOL_SHIFT 2
#define E_LEN_SHIFT 10
#define E_HANDLE_SHIFT 27
#define E_LEN_MASK ((1ull << 17) - 1)
#define MAX_HANDLE ((1ull << 37) - 1)
#define E_POOL(p) ((int)(((p) >> E_POOL_SHIFT) & 0xFF))
#define E_LEN(p) ((size_t)(((p) >> E_LEN_SHIFT) & E_LEN_MASK))
#define E_HANDLE(p) ((p) >> E_HANDLE_SHIFT)

#define CRC_VALID (1ull << 32)

#define CHUNK_SHIFT 9
#define CHUNK (1u << CHUNK_SHIFT)
#define CHUNK_MASK (CHUNK - 1)
/* A directory holds 512 chunks (256 Ki offsets, a GiB of swap at 4 KiB pages); a
 * group holds 128 directories; the tree holds the 128 groups that 32-bit offsets
 * need. Each level is made on first use and freed with its last child, so a page at
 * a lonely offset costs a chunk, a directory and a group: about 11 KiB. */
#define DIR_SHIFT 9
#define DIR_SIZE (1u << DIR_SHIFT)
#define NR_DIRS (1u << (32 - CHUNK_SHIFT - DIR_SHIFT))
#define GROUP_SHIFT 7
#define GROUP_SIZE (1u << GROUP_SHIFT)
#define NR_GROUPS (NR_DIRS >> GROUP_SHIFT)

enum zswap_stat {
	ST_POOL_LIMIT_HIT,
	ST_REJECT_RECLAIM_FAIL,
	ST_REJECT_ALLOC_FAIL,
	ST_REJECT_KMEMCACHE_FAIL,
	ST_REJECT_COMPRESS_FAIL,
	ST_REJECT_COMPRESS_POOR,
	ST_DECOMPRESS_FAIL,
	ST_WRITTEN_BACK_PAGES,
	ST_DUPLICATE_ENTRY,
	ST_PAGES_COMPACTED,
	ST_SHRINKER_WRITTEN_BACK_PAGES,
	NR_STATS,
};

static const char *const stat_names[NR_STATS] = {
	"pool_limit_hit",       "reject_reclaim_fail", "reject_alloc_fail",
	"reject_kmemcache_fail", "reject_compress_fail", "reject_compress_poor",
	"decompress_fail",      "written_back_pages",  "duplicate_entry",
	"pages_compacted",      "shrinker_written_back_pages",
};

enum mem_kind { MEM_TREES, MEM_CHUNKS, MEM_DIRS, MEM_CRCS, MEM_LRU, MEM_MEMCG, NR_MEM };

static const char *const mem_names[NR_MEM] = {"trees", "entries", "directories", "checksums",
					       "lru", "memcg"};

/* Set by zswap_core._hooks whenever observers come or go; read on every page. */
static int hooks_active;

/* ===========================================================================
 * 1. entries
 * ========================================================================= */

/* 12 bytes: the stamp is the low 32 bits of the core's clock (see stamp_before).
 * A same-filled page keeps its 64-bit fill word across both: the high half in
 * packed's bits 32-63 (unused by a same-filled entry), the low half as its stamp. */
struct __attribute__((packed)) zswap_entry {
	uint64_t packed;
	uint32_t stamp; /* LRU stamp; for a same-filled page, the fill word's low half */
};

struct zswap_chunk {
	uint32_t nr;     /* present entries; the chunk goes with the last */
	uint64_t *crcs;  /* CHUNK checksums (| CRC_VALID), or NULL */
	uint16_t *memcg; /* CHUNK memcg ids (0: none), or NULL until one lands here */
	struct zswap_entry e[CHUNK];
};

struct zswap_dir {
	uint32_t nr; /* chunks present; the directory goes with the last */
	struct zswap_chunk *chunk[DIR_SIZE];
};

struct zswap_group {
	uint32_t nr; /* directories present; the group goes with the last */
	struct zswap_dir *dir[GROUP_SIZE];
};

struct lru_rec {
	uint32_t offset;
	uint32_t stamp; /* the entry's stamp when queued */
};

struct zswap_lru {
	struct lru_rec *recs;
	size_t head, len, cap;
};

/* A slot of a tree's map of memcg LRUs: key pid | gid << 8 (never 0: gid != 0). */
struct memcg_lru_slot {
	uint32_t key;
	struct zswap_lru *lru; /* NULL once freed; the key stays until the map goes */
};

/* memcgs: what a memory cgroup's pages cost here (memory.zswap.current and the
 * zswap lines of memory.stat), and its two knobs (memory.zswap.max, 5.19, and
 * memory.zswap.writeback, 6.8). The Python side registers the groups; gid 0 is the
 * root, never charged and without an entry. The counters are hierarchical: every
 * change walks the group and its ancestors, so a limit check reads one number a
 * level. */
#define NR_MEMCGS 65536

enum memcg_stat {
	MEMCG_ZSWAP_B, /* compressed bytes (0 for a same-filled page) */
	MEMCG_ZSWAPPED,
	MEMCG_ZSWPIN,
	MEMCG_ZSWPOUT,
	MEMCG_ZSWPWB,
	NR_MEMCG_STATS,
};

struct zswap_memcg {
	uint64_t stat[NR_MEMCG_STATS]; /* the group and its descendants */
	uint64_t own_lru;              /* its own entries on the LRUs (not same-filled) */
	int64_t max;                   /* memory.zswap.max in bytes; -1: no limit */
	uint16_t parent;               /* 0: the root */
	uint8_t online;                /* registered by memcg_add */
	uint8_t writeback;             /* its own memory.zswap.writeback */
};

struct zswap_memcgs {
	/* Protects the table (which grows by realloc) and every counter in it. A
	 * leaf: taken inside a tree lock, never the other way round; no Python and
	 * no other lock while it is held. */
	pthread_mutex_t lock;
	struct zswap_memcg *tab; /* indexed by gid; grows, never shrinks */
	uint32_t cap;
};

struct zswap_tree {
	/* Protects everything below and the entries' contents: an entry lives only
	 * here, so whoever takes one out under this lock owns it. */
	pthread_mutex_t lock;
	int type;
	int dead;          /* set by invalidate_area: late stores are refused */
	long refs;         /* the trees table's reference + operations in flight (GIL) */
	uint64_t nr_stored;
	uint64_t nr_same;
	uint64_t nr_protected; /* the shrinker's protected size (zswap_core.Shrinker) */
	size_t nr_crc;     /* chunks with a checksum array */
	size_t mem[NR_MEM];
	struct zswap_lru *lru[NR_POOLS];     /* the root's LRU of each pool */
	struct memcg_lru_slot *memcg_lru;    /* (pool, memcg) LRUs: open addressing */
	uint32_t memcg_lru_cap, memcg_lru_used;
	struct zswap_memcgs *memcgs;         /* the core's table (its own lock) */
	uint32_t nr_pins;        /* offsets pinned by writeback or a pinned load */
	uint32_t cap_pins;
	uint32_t *pins;
	struct zswap_group *group[NR_GROUPS];
};

static struct zswap_tree *tree_new(int type, struct zswap_memcgs *memcgs)
{
	struct zswap_tree *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->type = type;
	t->memcgs = memcgs;
	t->refs = 1;
	t->mem[MEM_TREES] = sizeof(*t);
	return t;
}

/* Charge an arriving entry of memcg `gid` (not 0) to it and its ancestors. */
static void memcg_charge(struct zswap_memcgs *m, uint16_t gid, uint64_t packed)
{
	uint64_t len = (packed & E_SAME) ? 0 : E_LEN(packed);

	pthread_mutex_lock(&m->lock);
	if (!(packed & E_SAME))
		m->tab[gid].own_lru++;
	for (uint32_t g = gid; g; g = m->tab[g].parent) {
		m->tab[g].stat[MEMCG_ZSWAP_B] += len;
		m->tab[g].stat[MEMCG_ZSWAPPED]++;
		m->tab[g].stat[MEMCG_ZSWPOUT]++;
	}
	pthread_mutex_unlock(&m->lock);
}

/* An entry of memcg `gid` (not 0) leaves its tree, by whatever path. */
static void memcg_uncharge(struct zswap_memcgs *m, uint16_t gid, uint64_t packed)
{
	uint64_t len = (packed & E_SAME) ? 0 : E_LEN(packed);

	pthread_mutex_lock(&m->lock);
	if (!(packed & E_SAME))
		m->tab[gid].own_lru--;
	for (uint32_t g = gid; g; g = m->tab[g].parent) {
		m->tab[g].stat[MEMCG_ZSWAP_B] -= len;
		m->tab[g].stat[MEMCG_ZSWAPPED]--;
	}
	pthread_mutex_unlock(&m->lock);
}

/* Count an event (zswpin, zswpwb) of memcg `gid` (not 0) and its ancestors. */
static void memcg_event(struct zswap_memcgs *m, uint16_t gid, enum memcg_stat which)
{
	pthread_mutex_lock(&m->lock);
	for (uint32_t g = gid; g; g = m->tab[g].parent)
		m->tab[g].stat[which]++;
	pthread_mutex_unlock(&m->lock);
}

/* The chunk that holds entry `e`, the one at `offset` (the kernel's container_of). */
static inline struct zswap_chunk *entry_chunk(struct zswap_entry *e, uint32_t offset)
{
	return (struct zswap_chunk *)((char *)(e - (offset & CHUNK_MASK)) -
				      offsetof(struct zswap_chunk, e));
}

/* The memcg of entry `e` at `offset`, 0 for none; lock held. */
static inline uint16_t entry_memcg(struct zswap_entry *e, uint32_t offset)
{
	struct zswap_chunk *ch = entry_chunk(e, offset);

	return ch->memcg != NULL ? ch->memcg[offset & CHUNK_MASK] : 0;
}

/* Count event `which` for the memcg of entry `e`, if it has one; lock held. */
static inline void entry_memcg_event(struct zswap_tree *t, struct zswap_entry *e,
				     uint32_t offset, enum memcg_stat which)
{
	uint16_t gid = entry_memcg(e, offset);

	if (gid)
		memcg_event(t->memcgs, gid, which);
}

static void lru_release(struct zswap_tree *t, struct zswap_lru *l)
{
	t->mem[MEM_LRU] -= sizeof(*l) + l->cap * sizeof(struct lru_rec);
	free(l->recs);
	free(l);
}

/* Double the map of memcg LRUs (or make it); -1 when out of memory. Lock held. */
static int memcg_lru_grow(struct zswap_tree *t)
{
	uint32_t cap = t->memcg_lru_cap ? 2 * t->memcg_lru_cap : 16, mask = cap - 1;
	struct memcg_lru_slot *slots = calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return -1;
	for (uint32_t k = 0; k < t->memcg_lru_cap; k++) {
		struct memcg_lru_slot *s = &t->memcg_lru[k];
		uint32_t h;

		if (!s->key)
			continue;
		for (h = (s->key * 2654435761u) & mask; slots[h].key; h = (h + 1) & mask)
			;
		slots[h] = *s;
	}
	free(t->memcg_lru);
	t->mem[MEM_MEMCG] += (cap - t->memcg_lru_cap) * sizeof(*slots);
	t->memcg_lru = slots;
	t->memcg_lru_cap = cap;
	return 0;
}

/* Where the LRU of pool `pid` and memcg `gid` (not 0) is kept, or NULL: made when
 * `make` (and then NULL only when out of memory). Lock held. */
static struct zswap_lru **memcg_lru_slot(struct zswap_tree *t, int pid, uint16_t gid, int make)
{
	uint32_t key = (uint32_t)pid | (uint32_t)gid << 8, mask, h;

	if (t->memcg_lru_cap) {
		mask = t->memcg_lru_cap - 1;
		for (h = (key * 2654435761u) & mask; t->memcg_lru[h].key; h = (h + 1) & mask)
			if (t->memcg_lru[h].key == key)
				return &t->memcg_lru[h].lru;
	}
	if (!make)
		return NULL;
	if (2 * (t->memcg_lru_used + 1) > t->memcg_lru_cap && memcg_lru_grow(t) < 0)
		return NULL;
	mask = t->memcg_lru_cap - 1;
	for (h = (key * 2654435761u) & mask; t->memcg_lru[h].key; h = (h + 1) & mask)
		;
	t->memcg_lru[h].key = key;
	t->memcg_lru[h].lru = NULL;
	t->memcg_lru_used++;
	return &t->memcg_lru[h].lru;
}

/* Where the LRU of (pid, gid) is kept: the root's in the tree's array (the path
 * of every page without a group), a memcg's in the map. Lock held. */
static inline struct zswap_lru **lru_slot(struct zswap_tree *t, int pid, uint16_t gid, int make)
{
	if (gid == 0)
		return &t->lru[pid];
	return memcg_lru_slot(t, pid, gid, make);
}

static void lru_free(struct zswap_tree *t, int pid, uint16_t gid)
{
	struct zswap_lru **lp = lru_slot(t, pid, gid, 0);

	if (lp == NULL || *lp == NULL)
		return;
	lru_release(t, *lp);
	*lp = NULL;
}

/* Every LRU of the tree, and the map of memcg LRUs; lock held. */
static void lru_free_all(struct zswap_tree *t)
{
	for (int p = 0; p < NR_POOLS; p++)
		lru_free(t, p, 0);
	if (t->memcg_lru == NULL)
		return;
	for (uint32_t k = 0; k < t->memcg_lru_cap; k++)
		if (t->memcg_lru[k].lru != NULL)
			lru_release(t, t->memcg_lru[k].lru);
	free(t->memcg_lru);
	t->mem[MEM_MEMCG] -= t->memcg_lru_cap * sizeof(struct memcg_lru_slot);
	t->memcg_lru = NULL;
	t->memcg_lru_cap = t->memcg_lru_used = 0;
}

static void chunk_free(struct zswap_tree *t, struct zswap_chunk *c)
{
	if (c->crcs != NULL) {
		free(c->crcs);
		t->nr_crc--;
		t->mem[MEM_CRCS] -= CHUNK * sizeof(uint64_t);
	}
	if (c->memcg != NULL) {
		free(c->memcg);
		t->mem[MEM_MEMCG] -= CHUNK * sizeof(uint16_t);
	}
	free(c);
	t->mem[MEM_CHUNKS] -= sizeof(*c);
}

/* Uncharge every entry of a chunk that has a memcg; lock held. */
static void chunk_uncharge(struct zswap_tree *t, struct zswap_chunk *c)
{
	if (c->memcg == NULL)
		return;
	for (unsigned j = 0; j < CHUNK; j++)
		if (c->e[j].packed && c->memcg[j])
			memcg_uncharge(t->memcgs, c->memcg[j], c->e[j].packed);
}

/* Free directory `d` (empty of chunks) and its group with its last directory. */
static void tree_free_dir(struct zswap_tree *t, uint32_t d)
{
	struct zswap_group *g = t->group[d >> GROUP_SHIFT];

	free(g->dir[d & (GROUP_SIZE - 1)]);
	g->dir[d & (GROUP_SIZE - 1)] = NULL;
	t->mem[MEM_DIRS] -= sizeof(struct zswap_dir);
	if (--g->nr == 0) {
		free(g);
		t->group[d >> GROUP_SHIFT] = NULL;
		t->mem[MEM_DIRS] -= sizeof(*g);
	}
}

static struct zswap_dir *tree_dir(struct zswap_tree *t, uint32_t d)
{
	struct zswap_group *g = t->group[d >> GROUP_SHIFT];

	return g == NULL ? NULL : g->dir[d & (GROUP_SIZE - 1)];
}

/* The first present directory at or after *d (its index left in *d), or NULL:
 * walks the tree's directories, a missing group skipped whole. */
static struct zswap_dir *tree_next_dir(struct zswap_tree *t, uint32_t *d)
{
	for (; *d < NR_DIRS; (*d)++) {
		struct zswap_dir *dir;

		if (t->group[*d >> GROUP_SHIFT] == NULL) {
			*d |= GROUP_SIZE - 1;
			continue;
		}
		dir = tree_dir(t, *d);
		if (dir != NULL)
			return dir;
	}
	return NULL;
}

/* Drop every entry, chunk and record; lock held (or the tree unreachable). */
static void tree_empty(struct zswap_tree *t)
{
	struct zswap_dir *dir;

	for (uint32_t d = 0; (dir = tree_next_dir(t, &d)) != NULL; d++) {
		for (unsigned k = 0; k < DIR_SIZE; k++) {
			if (dir->chunk[k] != NULL) {
				chunk_uncharge(t, dir->chunk[k]);
				chunk_free(t, dir->chunk[k]);
			}
		}
		tree_free_dir(t, d);
	}
	free(t->pins);
	t->pins = NULL;
	t->nr_pins = t->cap_pins = 0;
	lru_free_all(t);
	t->nr_stored = t->nr_same = 0;
}

static void tree_put(struct zswap_tree *t)
{
	if (--t->refs == 0) {
		tree_empty(t);
		pthread_mutex_destroy(&t->lock);
		free(t);
	}
}

static struct zswap_chunk *tree_chunk(struct zswap_tree *t, uint32_t ci)
{
	struct zswap_dir *dir = tree_dir(t, ci >> DIR_SHIFT);

	return dir == NULL ? NULL : dir->chunk[ci & (DIR_SIZE - 1)];
}

static struct zswap_entry *tree_entry(struct zswap_tree *t, uint32_t offset)
{
	struct zswap_chunk *c = tree_chunk(t, offset >> CHUNK_SHIFT);

	return c == NULL ? NULL : &c->e[offset & CHUNK_MASK];
}

/* The chunk of `ci`, made on first use (with its directory and group); NULL when
 * out of memory, and then nothing new is left behind. Lock held. */
static struct zswap_chunk *tree_chunk_get(struct zswap_tree *t, uint32_t ci)
{
	uint32_t d = ci >> DIR_SHIFT;
	struct zswap_group **gp = &t->group[d >> GROUP_SHIFT];
	struct zswap_dir **dirp;
	struct zswap_chunk **cp;

	if (*gp == NULL) {
		*gp = calloc(1, sizeof(struct zswap_group));
		if (*gp == NULL)
			return NULL;
		t->mem[MEM_DIRS] += sizeof(struct zswap_group);
	}
	dirp = &(*gp)->dir[d & (GROUP_SIZE - 1)];
	if (*dirp == NULL) {
		*dirp = calloc(1, sizeof(struct zswap_dir));
		if (*dirp == NULL)
			goto fail_group;
		t->mem[MEM_DIRS] += sizeof(struct zswap_dir);
		(*gp)->nr++;
	}
	cp = &(*dirp)->chunk[ci & (DIR_SIZE - 1)];
	if (*cp == NULL) {
		*cp = calloc(1, sizeof(struct zswap_chunk));
		if (*cp == NULL) {
			if ((*dirp)->nr == 0)
				tree_free_dir(t, d); /* frees the group too if it held only this */
			return NULL;
		}
		t->mem[MEM_CHUNKS] += sizeof(struct zswap_chunk);
		(*dirp)->nr++;
	}
	return *cp;
fail_group:
	if ((*gp)->nr == 0) {
		free(*gp);
		*gp = NULL;
		t->mem[MEM_DIRS] -= sizeof(struct zswap_group);
	}
	return NULL;
}

/* Take the present entry at `offset` out; lock held. The chunk goes with its last
 * entry, the directory and the group with their last, the LRU records with the
 * tree's last entry (they are only hints, and an empty tree has nothing to write
 * back). Its memcg, if any, is charged no more. */
static void tree_clear(struct zswap_tree *t, uint32_t offset)
{
	uint32_t ci = offset >> CHUNK_SHIFT;
	struct zswap_dir *dir = tree_dir(t, ci >> DIR_SHIFT);
	struct zswap_chunk *c = dir->chunk[ci & (DIR_SIZE - 1)];
	struct zswap_entry *e = &c->e[offset & CHUNK_MASK];

	if (c->memcg != NULL && c->memcg[offset & CHUNK_MASK]) {
		memcg_uncharge(t->memcgs, c->memcg[offset & CHUNK_MASK], e->packed);
		c->memcg[offset & CHUNK_MASK] = 0;
	}
	if (e->packed & E_SAME)
		t->nr_same--;
	e->packed = 0;
	e->stamp = 0;
	if (--c->nr == 0) {
		chunk_free(t, c);
		dir->chunk[ci & (DIR_SIZE - 1)] = NULL;
		if (--dir->nr == 0)
			tree_free_dir(t, ci >> DIR_SHIFT);
	}
	if (--t->nr_stored == 0)
		lru_free_all(t);
}

/* Record a checksum; lock held. -1 when the array cannot be made. */
static int tree_set_crc(struct zswap_tree *t, struct zswap_chunk *c, uint32_t i, uint64_t crc)
{
	if (c->crcs == NULL) {
		c->crcs = calloc(CHUNK, sizeof(uint64_t));
		if (c->crcs == NULL)
			return -1;
		t->nr_crc++;
		t->mem[MEM_CRCS] += CHUNK * sizeof(uint64_t);
	}
	c->crcs[i] = crc;
	return 0;
}

/* Give the chunk its array of memcg ids; lock held. -1 when it cannot be made. */
static int chunk_memcg_alloc(struct zswap_tree *t, struct zswap_chunk *c)
{
	c->memcg = calloc(CHUNK, sizeof(uint16_t));
	if (c->memcg == NULL)
		return -1;
	t->mem[MEM_MEMCG] += CHUNK * sizeof(uint16_t);
	return 0;
}

/* 0 when `data` matches the checksum stored for `offset` (or none is); lock held. */
static int tree_verify(struct zswap_tree *t, uint32_t offset, const char *data, size_t len)
{
	struct zswap_chunk *c = tree_chunk(t, offset >> CHUNK_SHIFT);
	uint64_t crc;

	if (c == NULL || c->crcs == NULL)
		return 0;
	crc = c->crcs[offset & CHUNK_MASK];
	if (crc == 0)
		return 0;
	return ((uint64_t)zswap_crc32((const unsigned char *)data, len) | CRC_VALID) != crc;
}

/* Pins: an entry being written back (its handler is Python, so no lock is held
 * across it) or read by a load that lost 8 races. A writer that meets one waits.
 * Few exist at a time (one per writeback in progress), so a small array. */
static int tree_pinned(struct zswap_tree *t, uint32_t offset)
{
	for (uint32_t k = 0; k < t->nr_pins; k++)
		if (t->pins[k] == offset)
			return 1;
	return 0;
}

static int tree_pin(struct zswap_tree *t, uint32_t offset)
{
	if (t->nr_pins == t->cap_pins) {
		uint32_t cap = t->cap_pins ? 2 * t->cap_pins : 4;
		uint32_t *pins = realloc(t->pins, cap * sizeof(*pins));

		if (pins == NULL)
			return -1;
		t->pins = pins;
		t->cap_pins = cap;
	}
	t->pins[t->nr_pins++] = offset;
	return 0;
}

static void tree_unpin(struct zswap_tree *t, uint32_t offset)
{
	for (uint32_t k = 0; k < t->nr_pins; k++) {
		if (t->pins[k] == offset) {
			t->pins[k] = t->pins[--t->nr_pins];
			return;
		}
	}
}

/* ===========================================================================
 * 2. lru
 *
 * One queue per pool and memcg (an entry's memcg limit writes back its own
 * entries). As the Python backend's _Lru: a store appends (offset, stamp); a load only
 * gives the entry a new stamp, and writeback moves a record whose entry was
 * loaded since it was queued to the young end instead of taking it (the kernel's
 * second chance). Records of entries that are gone are dropped when met. The
 * shrinker's second chance is the stamp's bit 0, set by a store (see next_stamp):
 * lru_rotate clears it and requeues the entry.
 * ========================================================================= */

/* Is stamp a older than stamp b? Stamps are the clock's low 32 bits (the clock
 * steps by 2), so this holds while the two were given out less than 2**30 stamps
 * apart: beyond that, only the writeback order of such an old entry is affected,
 * never a page. */
static inline int stamp_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/* The stamp of the entry at `offset` if it belongs to the LRU of pool `pid` and
 * memcg `gid`, else -1: an offset another memcg's store reused is not the entry
 * that was queued. */
static int64_t pooled_stamp(struct zswap_tree *t, uint32_t offset, int pid, uint16_t gid)
{
	struct zswap_entry *e = tree_entry(t, offset);

	if (e == NULL || !e->packed || (e->packed & E_SAME) || E_POOL(e->packed) != pid ||
	    entry_memcg(e, offset) != gid)
		return -1;
	return (int64_t)e->stamp;
}

static int lru_append(struct zswap_tree *t, struct zswap_lru *l, uint32_t offset, uint64_t stamp)
{
	if (l->len == l->cap) {
		size_t cap;
		struct lru_rec *recs;

		if (l->head > 0 && l->head >= l->len / 2) {
			/* consumed records: slide the live ones down instead of growing */
			memmove(l->recs, l->recs + l->head, (l->len - l->head) * sizeof(*recs));
			l->len -= l->head;
			l->head = 0;
		} else {
			cap = l->cap ? l->cap + l->cap / 4 : 64; /* a quarter: slack is metadata */
			recs = realloc(l->recs, cap * sizeof(*recs));
			if (recs == NULL)
				return -1;
			t->mem[MEM_LRU] += (cap - l->cap) * sizeof(*recs);
			l->recs = recs;
			l->cap = cap;
		}
	}
	l->recs[l->len].offset = offset;
	l->recs[l->len].stamp = (uint32_t)stamp;
	l->len++;
	return 0;
}

/* Drop records of entries that are gone, and repeats; lock held. */
static void lru_trim(struct zswap_tree *t, struct zswap_lru *l, int pid, uint16_t gid)
{
	size_t n = l->len - l->head, out = 0, mask = 1;
	uint32_t *seen;

	while (mask < 2 * n + 2)
		mask <<= 1;
	seen = malloc(mask * sizeof(uint32_t) + mask / 8 + 1);
	if (seen == NULL)
		return; /* trimming is an economy, not a duty */
	unsigned char *used = (unsigned char *)(seen + mask);
	memset(used, 0, mask / 8 + 1);
	mask -= 1;
	for (size_t k = l->head; k < l->len; k++) {
		uint32_t off = l->recs[k].offset;
		int64_t cur = pooled_stamp(t, off, pid, gid);
		size_t h;

		if (cur < 0)
			continue;
		for (h = (off * 2654435761u) & mask; used[h / 8] & (1 << (h % 8)); h = (h + 1) & mask)
			if (seen[h] == off)
				break;
		if (used[h / 8] & (1 << (h % 8)))
			continue; /* a repeat */
		used[h / 8] |= 1 << (h % 8);
		seen[h] = off;
		l->recs[out].offset = off;
		l->recs[out].stamp = (uint32_t)cur;
		out++;
	}
	free(seen);
	l->head = 0;
	l->len = out;
}

/* Record that (offset, stamp) of pool `pid` and memcg `gid` is now the youngest;
 * lock held. */
static void lru_push(struct zswap_tree *t, int pid, uint16_t gid, uint32_t offset,
		     uint64_t stamp)
{
	struct zswap_lru **lp = lru_slot(t, pid, gid, 1), *l;

	if (lp == NULL)
		return; /* the entry stays, without a writeback record */
	l = *lp;
	if (l == NULL) {
		l = calloc(1, sizeof(*l));
		if (l == NULL)
			return;
		*lp = l;
		t->mem[MEM_LRU] += sizeof(*l);
	}
	lru_append(t, l, offset, stamp);
	if (l->len - l->head > 4 * t->nr_stored + 4096)
		lru_trim(t, l, pid, gid);
}

/* Queue the entry at `offset`, if it is still an entry of pool `pid`, at the young
 * end of its (pool, memcg) LRU with the stamp it has now; lock held. A record taken
 * off a pool's LRU goes back to that pool's only: an offset reused by another pool's
 * store has its own record already. */
static void lru_requeue(struct zswap_tree *t, uint32_t offset, int pid)
{
	struct zswap_entry *e = tree_entry(t, offset);

	if (e == NULL || !e->packed || (e->packed & E_SAME) || E_POOL(e->packed) != pid)
		return;
	lru_push(t, pid, entry_memcg(e, offset), offset, e->stamp);
}

/* The oldest entry of pool `pid` and memcg `gid` not loaded since it was queued:
 * its stamp and offset; entries loaded since get their second chance. 0 when
 * none; lock held. */
static int lru_peek(struct zswap_tree *t, int pid, uint16_t gid, uint32_t *stamp,
		    uint32_t *offset)
{
	struct zswap_lru **lp = lru_slot(t, pid, gid, 0), *l;

	if (lp == NULL || *lp == NULL)
		return 0;
	l = *lp;
	while (l->head < l->len) {
		struct lru_rec r = l->recs[l->head];
		int64_t cur = pooled_stamp(t, r.offset, pid, gid);

		if (cur >= 0) {
			if ((uint32_t)cur == r.stamp) {
				*stamp = (uint32_t)cur;
				*offset = r.offset;
				return 1;
			}
			if (lru_append(t, l, r.offset, (uint64_t)cur) < 0)
				return 0;
		}
		l->head++;
	}
	lru_free(t, pid, gid); /* all consumed: start afresh rather than keep dead records */
	return 0;
}

/* ===========================================================================
 * 3. pools
 *
 * The Python pools register here: the codec's two callables and the allocator,
 * either as its C ops table or as its Python methods. A slot's references count
 * its entries, plus one while it is the current pool, as _Pool.refs does.
 * ========================================================================= */

struct zswap_pool_slot {
	PyObject *pool;        /* the Python _Pool; NULL: a free slot */
	PyObject *compress;    /* compressor.compress */
	PyObject *decompress;  /* compressor.decompress */
	PyObject *alloc_write; /* the zpool's methods (also used without ops) */
	PyObject *read;
	PyObject *free;
	PyObject *ops_capsule; /* keeps the C pool alive while we use ops */
	const struct zswap_zpool_ops *ops;
	void *ops_pool;
	int nogil;                 /* ops may run without the GIL (ZSWAP_ZPOOL_NOGIL) */
	struct zswap_codec *codec; /* the compressor's C ops, or NULL; changes under
				    * pools_lock, and a caller holds its own reference */
	long refs;
};

typedef struct {
	PyObject_HEAD
	PyObject *owner_ref;      /* weakref to the Zswap; its _native_* methods are the
				   * slow paths (see owner_call) */
	PageCounterObject *pages; /* its page allocator's counters (the pool limit) */
	PyObject *zpool_error;    /* zswap_core.ZpoolError */
	PyObject *zero_page;
	size_t page_size;

	/* Parameters, as the Python backend caches them: written by a parameter
	 * write (under the parameter lock, GIL held), read by every page. */
	int enabled, same_enabled, non_same_enabled, exclusive, checksums;
	size_t max_pages, accept_pages;
	int full;

	/* Protects every slot's refs and `current`. */
	pthread_mutex_t pools_lock;
	int current; /* pool id of the current pool, 0: none */
	int nr_nogil_pools; /* GIL: slots with a C codec and a NOGIL allocator */
	struct zswap_pool_slot pools[NR_POOLS];

	/* The table changes only under the GIL (init, invalidate_area). */
	struct zswap_tree *trees[MAX_SWAPFILES];

	/* Protects the counters. */
	pthread_mutex_t stats_lock;
	uint64_t stats[NR_STATS];
	uint64_t clock; /* LRU stamps; atomic */

	/* The memcg table and its counters, under its own (leaf) lock. */
	struct zswap_memcgs memcgs;
} CoreObject;

static PyObject *str_store, *str_load, *str_invalidate;
static PyObject *str_wake, *str_pool_empty, *str_hook, *str_bad_handle, *str_free_failed;
static PyObject *str_unreadable, *str_bad_page, *str_as_page, *str_errno, *str_wait_pin;
static PyObject *str_group_id, *str_memcg_reclaim;

/* Python 3.11 has no PyErr_GetRaisedException: these take the pending exception
 * as one object (to pass on), or keep it aside and put it back (to re-raise). */
static PyObject *exc_take(void)
{
	PyObject *type, *value, *tb;

	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb != NULL && value != NULL)
		PyException_SetTraceback(value, tb);
	Py_XDECREF(type);
	Py_XDECREF(tb);
	return value;
}

struct saved_exc {
	PyObject *type, *value, *tb;
};

static void exc_save(struct saved_exc *s)
{
	PyErr_Fetch(&s->type, &s->value, &s->tb);
}

static void exc_restore(struct saved_exc *s)
{
	PyErr_Restore(s->type, s->value, s->tb);
}

/* Call the Zswap's method `name` with `n` arguments. The core holds its Zswap by
 * a weak reference: the Zswap's finalizer keeps its pools (which know the core)
 * alive, so a strong one would keep a dropped Zswap from ever being collected. */
static PyObject *owner_call(CoreObject *c, PyObject *name, int n, PyObject *a1, PyObject *a2,
			    PyObject *a3, PyObject *a4)
{
	PyObject *owner = PyWeakref_GetObject(c->owner_ref);
	PyObject *args[5] = {owner, a1, a2, a3, a4}, *r;

	if (owner == NULL)
		return NULL;
	if (owner == Py_None) {
		PyErr_SetString(PyExc_ReferenceError, "the Zswap of this core is gone");
		return NULL;
	}
	Py_INCREF(owner);
	r = PyObject_VectorcallMethod(name, args, (size_t)(n + 1), NULL);
	Py_DECREF(owner);
	return r;
}

static void stat_inc(CoreObject *c, enum zswap_stat s, uint64_t n)
{
	pthread_mutex_lock(&c->stats_lock);
	c->stats[s] += n;
	pthread_mutex_unlock(&c->stats_lock);
}

/* Stamps are even; a store's has bit 0 set: the entry's `referenced` bit, which
 * the shrinker clears once (lru_rotate) before it may write the entry back. */
static uint32_t next_stamp(CoreObject *c)
{
	return (uint32_t)__atomic_add_fetch(&c->clock, 2, __ATOMIC_RELAXED);
}

#define STAMP_REFERENCED 1u

/* A reference for a new entry of the current pool: its id, or 0 when none; and a
 * reference to its C codec in *zc (NULL when it has none: the Python methods). */
static int pool_tryget_current(CoreObject *c, struct zswap_codec **zc)
{
	int pid;

	*zc = NULL;
	pthread_mutex_lock(&c->pools_lock);
	pid = c->current;
	if (pid && c->pools[pid].refs > 0) {
		c->pools[pid].refs++;
		*zc = c->pools[pid].codec;
		if (*zc != NULL)
			codec_hold(*zc);
	} else {
		pid = 0;
	}
	pthread_mutex_unlock(&c->pools_lock);
	return pid;
}

/* A reference to pool `pid`'s C codec, or NULL. Any thread. */
static struct zswap_codec *pool_codec(CoreObject *c, int pid)
{
	struct zswap_codec *zc;

	pthread_mutex_lock(&c->pools_lock);
	zc = c->pools[pid].codec;
	if (zc != NULL)
		codec_hold(zc);
	pthread_mutex_unlock(&c->pools_lock);
	return zc;
}

/* Drop one reference; the Python side destroys a pool whose last one went.
 * Returns -1 with an exception set only if that callback raised BaseException. */
static int pool_put(CoreObject *c, int pid)
{
	long refs;
	PyObject *r, *id;

	pthread_mutex_lock(&c->pools_lock);
	refs = --c->pools[pid].refs;
	pthread_mutex_unlock(&c->pools_lock);
	if (refs != 0)
		return 0;
	id = PyLong_FromLong(pid);
	if (id == NULL)
		return -1;
	r = owner_call(c, str_pool_empty, 1, id, NULL, NULL, NULL);
	Py_DECREF(id);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

/* Give a removed entry's memory back to its allocator, and its pool reference.
 * The entry is already out of its tree, so a failing free is logged (by the
 * Python side), never raised. -1 only for a pending BaseException. */
static int entry_free(CoreObject *c, uint64_t packed)
{
	int pid = E_POOL(packed);
	struct zswap_pool_slot *s = &c->pools[pid];
	uint64_t handle = E_HANDLE(packed);
	PyObject *err = NULL, *r;
	int rc = 0;

	if (s->pool == NULL)
		return 0; /* would be a refcount bug; the Python backend logs it too */
	if (s->ops != NULL) {
		int e = s->ops->free(s->ops_pool, handle);

		if (e < 0)
			err = PyLong_FromLong(-e);
	} else {
		PyObject *h = PyLong_FromUnsignedLongLong(handle);

		r = h ? PyObject_CallOneArg(s->free, h) : NULL;
		Py_XDECREF(h);
		if (r != NULL) {
			Py_DECREF(r);
		} else if (PyErr_ExceptionMatches(PyExc_Exception)) {
			err = exc_take();
		} else {
			rc = -1; /* KeyboardInterrupt: the reference still goes below */
		}
	}
	if (err != NULL) {
		PyObject *id = PyLong_FromLong(pid);

		r = id ? owner_call(c, str_free_failed, 2, id, err, NULL, NULL) : NULL;
		Py_XDECREF(id);
		Py_DECREF(err);
		if (r == NULL)
			PyErr_WriteUnraisable((PyObject *)c);
		Py_XDECREF(r);
	}
	if (rc < 0) {
		struct saved_exc exc;

		exc_save(&exc);
		if (pool_put(c, pid) < 0)
			PyErr_WriteUnraisable((PyObject *)c);
		exc_restore(&exc);
		return -1;
	}
	return pool_put(c, pid);
}

/* ===========================================================================
 * 4. store / load / invalidate
 * ========================================================================= */

static int call_hook(CoreObject *c, PyObject *kind, long type, uint64_t offset, int result)
{
	PyObject *t = PyLong_FromLong(type);
	PyObject *o = PyLong_FromUnsignedLongLong(offset);
	PyObject *r = NULL;

	if (t && o)
		r = owner_call(c, str_hook, 4, kind, t, o, result ? Py_True : Py_False);
	Py_XDECREF(t);
	Py_XDECREF(o);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

/* Parse (type, offset[, page]) and keyword `exclusive` (loads) or `group` (store),
 * as the Python methods. */
struct op_args {
	PyObject *type, *offset, *page, *exclusive, *group;
};

static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
		      PyObject *kwnames, int npos, struct op_args *a)
{
	static const char *const names[] = {"type", "offset", "page", "exclusive", "group"};
	PyObject **slots[5] = {&a->type, &a->offset, &a->page, &a->exclusive, &a->group};
	int allow_excl = npos == 2 && strcmp(fname, "invalidate_page") != 0;
	int allow_group = npos == 3; /* store */

	a->type = a->offset = a->page = a->exclusive = a->group = NULL;
	if (nargs > npos) {
		PyErr_Format(PyExc_TypeError, "%s() takes %d positional arguments but %zd were given",
			     fname, npos, nargs);
		return -1;
	}
	for (Py_ssize_t k = 0; k < nargs; k++)
		*slots[k] = args[k];
	if (kwnames != NULL) {
		for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
			PyObject *name = PyTuple_GET_ITEM(kwnames, k);
			int found = 0;

			for (int j = 0; j < 5; j++) {
				if ((j < npos || (j == 3 && allow_excl) || (j == 4 && allow_group)) &&
				    PyUnicode_CompareWithASCIIString(name, names[j]) == 0) {
					if (*slots[j] != NULL) {
						PyErr_Format(PyExc_TypeError,
							     "%s() got multiple values for argument '%s'",
							     fname, names[j]);
						return -1;
					}
					*slots[j] = args[nargs + k];
					found = 1;
				}
			}
			if (!found) {
				PyErr_Format(PyExc_TypeError,
					     "%s() got an unexpected keyword argument '%U'", fname, name);
				return -1;
			}
		}
	}
	for (int j = 0; j < npos; j++) {
		if (*slots[j] == NULL) {
			PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
				     names[j]);
			return -1;
		}
	}
	return 0;
}

/* The tree of `type_obj`, with a reference; NULL and the Python backend's errors. */
static struct zswap_tree *get_tree(CoreObject *c, PyObject *type_obj, long *type)
{
	struct zswap_tree *t;
	long v = -1;

	if (PyLong_CheckExact(type_obj)) {
		int overflow;

		v = PyLong_AsLongAndOverflow(type_obj, &overflow);
		if (overflow)
			v = -1;
	}
	if (v < 0 || v >= MAX_SWAPFILES) {
		PyErr_Format(PyExc_ValueError, "swap type must be an int in 0..%d, got %R",
			     MAX_SWAPFILES - 1, type_obj);
		return NULL;
	}
	t = c->trees[v];
	if (t == NULL) {
		PyErr_Format(PyExc_ValueError, "swap type %ld is not initialised (call init(%ld))", v,
			     v);
		return NULL;
	}
	t->refs++;
	*type = v;
	return t;
}

static int get_offset(PyObject *obj, uint32_t *offset)
{
	unsigned long long v;
	int overflow;
	long long s;

	if (PyBool_Check(obj) || !PyLong_Check(obj)) {
		PyErr_Format(PyExc_TypeError, "offset must be an int, got %s", Py_TYPE(obj)->tp_name);
		return -1;
	}
	s = PyLong_AsLongLongAndOverflow(obj, &overflow);
	if (overflow || s < 0 || (unsigned long long)s > MAX_OFFSET) {
		if (s == -1 && PyErr_Occurred())
			return -1;
		PyErr_Format(PyExc_ValueError, "offset %S is out of range 0..%llu", obj, MAX_OFFSET);
		return -1;
	}
	v = (unsigned long long)s;
	*offset = (uint32_t)v;
	return 0;
}

/* Wait for a pin to go: the Python side waits on the lock its writeback holds
 * while the entry is pinned, so the wait is one a debugger or the conformance
 * kit's interleaver can see. No C lock is held. */
static int wait_pin(CoreObject *c)
{
	PyObject *r = owner_call(c, str_wait_pin, 0, NULL, NULL, NULL, NULL);

	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

/* Lock `t` with no pinned entry at `offset` (one being written back, or read by
 * a pinned load): 0 with the lock held, or -1 with an exception and no lock. */
static int tree_lock_unpinned(CoreObject *c, struct zswap_tree *t, uint32_t offset)
{
	for (;;) {
		struct zswap_entry *e;

		pthread_mutex_lock(&t->lock);
		e = tree_entry(t, offset);
		if (e == NULL || !t->nr_pins || !tree_pinned(t, offset))
			return 0;
		pthread_mutex_unlock(&t->lock);
		if (wait_pin(c) < 0)
			return -1;
	}
}

/* Remove the entry at `offset`, if any; returns it (0: none). Frees its memory. */
static int tree_erase(CoreObject *c, struct zswap_tree *t, uint32_t offset, uint64_t *removed)
{
	struct zswap_entry *e;
	uint64_t old = 0;

	*removed = 0;
	if (tree_lock_unpinned(c, t, offset) < 0)
		return -1;
	e = tree_entry(t, offset);
	if (e != NULL && e->packed) {
		old = e->packed;
		tree_clear(t, offset);
	}
	pthread_mutex_unlock(&t->lock);
	*removed = old;
	if (old && !(old & E_SAME))
		return entry_free(c, old);
	return 0;
}

/* A refused store: drop any older copy, so that a load cannot return it. */
static PyObject *store_refuse(CoreObject *c, struct zswap_tree *t, uint32_t offset)
{
	uint64_t removed;
	int rc = tree_erase(c, t, offset, &removed);

	if (rc == 0 && hooks_active)
		rc = call_hook(c, str_store, t->type, offset, 0);
	tree_put(t);
	if (rc < 0)
		return NULL;
	Py_RETURN_FALSE;
}

static inline uint64_t load_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int k = 7; k >= 0; k--)
		v = (v << 8) | p[k];
	return v;
}

/* The fill word if every 8-byte word of the page is the same, else -1. */
static int same_filled(const unsigned char *page, size_t len, uint64_t *fill)
{
	uint64_t first, w;

	memcpy(&first, page, 8);
	for (size_t k = 8; k < len; k += 8) {
		memcpy(&w, page + k, 8);
		if (w != first)
			return 0;
	}
	*fill = load_le64(page);
	return 1;
}

/* Compress `page` with pool `pid`'s codec: new bytes, or NULL. An Exception in the
 * codec (or a bad result) is counted and cleared (*bad = 1); anything else, such
 * as KeyboardInterrupt, is left set (*bad = 0). */
static PyObject *store_compress(CoreObject *c, int pid, PyObject *page, int *bad)
{
	PyObject *argv[2] = {NULL, page};
	/* Our own reference: a codec swapped in meanwhile (pool_set_codec) must not
	 * free this one while it runs. */
	PyObject *fn = Py_NewRef(c->pools[pid].compress);
	PyObject *res = PyObject_Vectorcall(fn, argv + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
	Py_ssize_t dlen;

	Py_DECREF(fn);
	*bad = 0;
	if (res == NULL) {
		if (!PyErr_ExceptionMatches(PyExc_Exception))
			return NULL;
		PyErr_Clear();
		*bad = 1;
		return NULL;
	}
	/* Only bytes, which cannot change after the call (see the Python backend). */
	dlen = PyBytes_CheckExact(res) ? PyBytes_GET_SIZE(res) : -1;
	if (dlen <= 0 || (size_t)dlen > 2 * c->page_size) {
		Py_DECREF(res);
		*bad = 1;
		return NULL;
	}
	return res;
}

/* Allocate and copy `dlen` compressed bytes through the allocator's C ops: 0 and
 * the handle, or a stat to count. Calls no Python: without the GIL when the table
 * allows it (slot->nogil). */
static int store_alloc_ops(struct zswap_pool_slot *s, const void *buf, size_t dlen,
			   uint64_t *handle)
{
	int rc;

	if (dlen > E_LEN_MASK)
		return ST_REJECT_COMPRESS_POOR; /* only with 64 KiB pages */
	rc = s->ops->alloc_write(s->ops_pool, buf, dlen, handle);
	if (rc == 0 && (*handle == 0 || *handle > MAX_HANDLE)) {
		s->ops->free(s->ops_pool, *handle);
		return ST_REJECT_ALLOC_FAIL;
	}
	if (rc == -ENOSPC)
		return ST_REJECT_COMPRESS_POOR;
	return rc == 0 ? 0 : ST_REJECT_ALLOC_FAIL;
}

/* Allocate and copy the compressed page: 0 and the handle, or a stat to count
 * (-1 with an exception set for a BaseException). GIL held. */
static int store_alloc(CoreObject *c, int pid, PyObject *data, uint64_t *handle)
{
	struct zswap_pool_slot *s = &c->pools[pid];
	size_t dlen = (size_t)PyBytes_GET_SIZE(data);
	PyObject *h;

	if (s->ops != NULL)
		return store_alloc_ops(s, PyBytes_AS_STRING(data), dlen, handle);
	if (dlen > E_LEN_MASK)
		return ST_REJECT_COMPRESS_POOR;
	h = PyObject_CallOneArg(s->alloc_write, data);
	if (h == NULL) {
		int poor = 0;

		if (!PyErr_ExceptionMatches(PyExc_Exception))
			return -1;
		if (PyErr_ExceptionMatches(c->zpool_error)) {
			PyObject *exc = exc_take();
			PyObject *en = PyObject_GetAttr(exc, str_errno);

			poor = en != NULL && PyLong_Check(en) && PyLong_AsLong(en) == ENOSPC;
			Py_XDECREF(en);
			Py_DECREF(exc);
		}
		PyErr_Clear();
		return poor ? ST_REJECT_COMPRESS_POOR : ST_REJECT_ALLOC_FAIL;
	}
	if (PyLong_CheckExact(h)) {
		int overflow;
		long long v = PyLong_AsLongLongAndOverflow(h, &overflow);

		if (!overflow && v > 0 && (unsigned long long)v <= MAX_HANDLE) {
			Py_DECREF(h);
			*handle = (uint64_t)v;
			return 0;
		}
	}
	/* An allocator broke the handle contract: the Python side frees what it can
	 * and says so; the page is refused. */
	{
		PyObject *id = PyLong_FromLong(pid);
		PyObject *r = id ? owner_call(c, str_bad_handle, 2, id, h, NULL, NULL) : NULL;

		Py_XDECREF(id);
		Py_DECREF(h);
		if (r == NULL)
			PyErr_WriteUnraisable((PyObject *)c);
		Py_XDECREF(r);
	}
	return ST_REJECT_ALLOC_FAIL;
}

/* The pool limit with hysteresis (6.5+): at or over the limit is full; full
 * clears only at or below the accept threshold. */
static int pool_full(CoreObject *c)
{
	size_t cur = __atomic_load_n(&c->pages->nr_pages, __ATOMIC_RELAXED);

	if (cur >= c->max_pages) {
		stat_inc(c, ST_POOL_LIMIT_HIT, 1);
		c->full = 1;
	} else if (c->full && cur <= c->accept_pages) {
		c->full = 0;
	}
	return c->full;
}

/* The entry at slot `i` of chunk `ch` goes from `old` (0: none) to `packed` of
 * memcg `gid`: move the charge; lock held, and the chunk has its memcg array. */
static void chunk_memcg_move(struct zswap_tree *t, struct zswap_chunk *ch, uint32_t i,
			     uint64_t old, uint64_t packed, uint16_t gid)
{
	if (old && ch->memcg[i])
		memcg_uncharge(t->memcgs, ch->memcg[i], old);
	ch->memcg[i] = gid;
	if (gid)
		memcg_charge(t->memcgs, gid, packed);
}

/* Is memcg `gid` registered? Its lock held. */
static inline int memcg_online_locked(struct zswap_memcgs *m, long gid)
{
	return gid > 0 && gid < (long)m->cap && m->tab[gid].online;
}

/* May a page of memcg `gid` enter zswap? Not when the group or an ancestor has
 * memory.zswap.max 0, or is at or over its limit (the kernel's
 * obj_cgroup_may_zswap). */
static int memcg_may_zswap(struct zswap_memcgs *m, uint16_t gid)
{
	int ok = 1;

	pthread_mutex_lock(&m->lock);
	for (uint32_t g = gid; g && ok; g = m->tab[g].parent) {
		int64_t max = m->tab[g].max;

		if (max == 0 || (max > 0 && m->tab[g].stat[MEMCG_ZSWAP_B] >= (uint64_t)max))
			ok = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ok;
}

/* May entries of memcg `gid` be written back? Not when the group or an ancestor
 * has memory.zswap.writeback 0. The root: yes. */
static int memcg_writeback_enabled(struct zswap_memcgs *m, uint16_t gid)
{
	int ok = 1;

	pthread_mutex_lock(&m->lock);
	for (uint32_t g = gid; g && ok; g = m->tab[g].parent)
		ok = m->tab[g].writeback;
	pthread_mutex_unlock(&m->lock);
	return ok;
}

/* The memcg a store's `group` is charged to: the owner's _native_group_id(group),
 * which must be a registered one (or 0). 0, or -1 with an exception. */
static int store_memcg(CoreObject *c, PyObject *group, uint16_t *gid)
{
	PyObject *r = owner_call(c, str_group_id, 1, group, NULL, NULL, NULL);
	long v;
	int online;

	if (r == NULL)
		return -1;
	v = PyLong_AsLong(r);
	Py_DECREF(r);
	if (v == -1 && PyErr_Occurred())
		return -1;
	pthread_mutex_lock(&c->memcgs.lock);
	online = memcg_online_locked(&c->memcgs, v);
	pthread_mutex_unlock(&c->memcgs.lock);
	if (v != 0 && !online) {
		PyErr_Format(PyExc_ValueError, "memcg %ld is not registered", v);
		return -1;
	}
	*gid = (uint16_t)v;
	return 0;
}

/* Room for a page of memcg `gid`? At its limit (or an ancestor's), write back the
 * group's own oldest entries first when its writeback is enabled: the owner's
 * _native_memcg_reclaim(gid), with no C lock held. 1: store; 0: refuse; -1: an
 * exception. */
static int store_memcg_room(CoreObject *c, uint16_t gid)
{
	PyObject *id, *r;

	if (memcg_may_zswap(&c->memcgs, gid))
		return 1;
	if (!memcg_writeback_enabled(&c->memcgs, gid))
		return 0;
	id = PyLong_FromLong(gid);
	r = id ? owner_call(c, str_memcg_reclaim, 1, id, NULL, NULL, NULL) : NULL;
	Py_XDECREF(id);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return memcg_may_zswap(&c->memcgs, gid);
}

/* Put `packed` of memcg `gid` (0: none) at `offset`; the tree lock is held and the
 * offset is not pinned. 0 and the entry it replaced in *old (0: none); 1 when the
 * tree is dead (invalidate_area won the race: refuse, as if it came first); 2 when
 * there is no memory for the entry. */
static int tree_insert_locked(struct zswap_tree *t, uint32_t offset, uint64_t packed,
			      uint16_t gid, uint32_t stamp, uint64_t crc, uint64_t *old)
{
	uint32_t i = offset & CHUNK_MASK;
	struct zswap_chunk *ch;
	struct zswap_entry *e;

	*old = 0;
	if (t->dead)
		return 1;
	/* Everything that may fail first: the entry there, if any, stays as it was. */
	ch = tree_chunk_get(t, offset >> CHUNK_SHIFT);
	if (ch == NULL || (gid && ch->memcg == NULL && chunk_memcg_alloc(t, ch) < 0) ||
	    ((crc || t->nr_crc) && tree_set_crc(t, ch, i, crc) < 0))
		return 2;
	e = &ch->e[i];
	*old = e->packed;
	if (ch->memcg != NULL)
		chunk_memcg_move(t, ch, i, *old, packed, gid);
	e->packed = packed;
	e->stamp = stamp;
	if (packed & E_SAME)
		t->nr_same++;
	else
		lru_push(t, E_POOL(packed), gid, offset, stamp);
	if (*old) {
		if (*old & E_SAME)
			t->nr_same--;
	} else {
		ch->nr++;
		t->nr_stored++;
	}
	if (!(packed & E_SAME)) {
		/* The shrinker's protection grows with each LRU insertion and halves when
		 * it exceeds a quarter of the LRU, as the Python backend's store. */
		uint64_t prot = t->nr_protected + 1;

		if (prot > (t->nr_stored - t->nr_same) >> 2)
			prot >>= 1;
		t->nr_protected = prot;
	}
	return 0;
}

/* The insert as the GIL-free path tries it: -1 when the offset is pinned (the
 * caller waits with the GIL and tries again), else tree_insert_locked's answer. */
static int tree_insert_nowait(struct zswap_tree *t, uint32_t offset, uint64_t packed,
			      uint16_t gid, uint32_t stamp, uint64_t crc, uint64_t *old)
{
	int rc = -1;

	pthread_mutex_lock(&t->lock);
	if (!t->nr_pins || !tree_pinned(t, offset))
		rc = tree_insert_locked(t, offset, packed, gid, stamp, crc, old);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* Per-thread scratch memory: a compressed page on its way into the allocator or
 * out of it. Plain malloc (tracemalloc's hook would take the GIL), kept for the
 * thread's next page and freed when the thread ends. */
static pthread_key_t scratch_key;

struct scratch {
	size_t cap;
	unsigned char buf[];
};

static void scratch_free(void *p)
{
	free(p);
}

static unsigned char *scratch_get(size_t len)
{
	struct scratch *sc = pthread_getspecific(scratch_key), *grown;

	if (sc != NULL && sc->cap >= len)
		return sc->buf;
	grown = realloc(sc, sizeof(*grown) + len);
	if (grown == NULL)
		return NULL;
	grown->cap = len;
	pthread_setspecific(scratch_key, grown);
	return grown->buf;
}

/* What the native store path did for one page (see store_native). */
struct store_work {
	const unsigned char *page; /* the page, kept alive by the caller */
	uint32_t offset;
	uint16_t memcg;   /* its memcg, 0: none */
	int checksums;
	uint64_t packed;  /* the new entry, once allocated */
	uint64_t crc;
	int stat;         /* a reject to count, or 0 */
	int inserted;     /* -1: not tried (or pinned); else tree_insert_locked's answer */
	uint64_t old;     /* the entry it replaced */
};

/* Compress with the pool's C codec, allocate, and insert: without the GIL for
 * all of it when the allocator allows, else with the GIL for the allocation (and
 * then the insert is left to the caller). -1 with an exception only for a
 * BaseException from a Python allocator. */
static int store_native(CoreObject *c, struct zswap_tree *t, int pid, struct zswap_codec *zc,
			struct store_work *w)
{
	struct zswap_pool_slot *s = &c->pools[pid];
	size_t page_size = c->page_size, dlen = 2 * page_size;
	unsigned char *buf = scratch_get(dlen);
	uint64_t handle = 0;
	uint32_t stamp = 0;
	int rc = -ENOMEM;
	/* Read while our reference holds the slot: once the entry is in the tree, the
	 * reference is the entry's, and writeback may free it and its pool (clearing
	 * the slot) before we have the GIL back. */
	const int nogil = s->nogil;

	w->stat = 0;
	w->inserted = -1;
	if (buf == NULL) {
		w->stat = ST_REJECT_KMEMCACHE_FAIL;
		return 0;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = codec_compress(zc, w->page, page_size, buf, &dlen);
	if (rc != 0) {
		w->stat = ST_REJECT_COMPRESS_FAIL;
	} else if (nogil) {
		w->stat = store_alloc_ops(s, buf, dlen, &handle);
		if (w->stat == 0) {
			stamp = next_stamp(c) | STAMP_REFERENCED;
			w->packed = E_PRESENT | ((uint64_t)pid << E_POOL_SHIFT) |
				    ((uint64_t)dlen << E_LEN_SHIFT) | (handle << E_HANDLE_SHIFT);
			if (w->checksums)
				w->crc = zswap_crc32(w->page, page_size) | CRC_VALID;
			w->inserted = tree_insert_nowait(t, w->offset, w->packed, w->memcg, stamp,
							 w->crc, &w->old);
		}
	}
	Py_END_ALLOW_THREADS
	if (rc != 0 || nogil)
		return 0; /* done: the slot may be gone by now */

	/* An allocator that needs the GIL: its C ops with it, or its Python methods. */
	if (s->ops != NULL) {
		w->stat = store_alloc_ops(s, buf, dlen, &handle);
	} else {
		PyObject *data = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)dlen);

		if (data == NULL)
			return -1;
		w->stat = store_alloc(c, pid, data, &handle);
		Py_DECREF(data);
		if (w->stat < 0)
			return -1;
	}
	if (w->stat == 0) {
		w->packed = E_PRESENT | ((uint64_t)pid << E_POOL_SHIFT) |
			    ((uint64_t)dlen << E_LEN_SHIFT) | (handle << E_HANDLE_SHIFT);
		if (w->checksums)
			w->crc = zswap_crc32(w->page, page_size) | CRC_VALID;
	}
	return 0;
}

/* After the insert: drop what it refused or replaced, call the hooks, answer. */
static PyObject *store_finish(CoreObject *c, struct zswap_tree *t, long type, uint32_t offset,
			      uint64_t packed, int rc, uint64_t old)
{
	if (rc) {
		if (!(packed & E_SAME) && entry_free(c, packed) < 0)
			goto fail;
		if (rc == 2) {
			stat_inc(c, ST_REJECT_KMEMCACHE_FAIL, 1);
			return store_refuse(c, t, offset);
		}
		if (hooks_active && call_hook(c, str_store, type, offset, 0) < 0)
			goto fail;
		tree_put(t);
		Py_RETURN_FALSE;
	}
	if (old) {
		stat_inc(c, ST_DUPLICATE_ENTRY, 1);
		if (!(old & E_SAME) && entry_free(c, old) < 0)
			goto fail;
	}
	if (hooks_active && call_hook(c, str_store, type, offset, 1) < 0)
		goto fail;
	tree_put(t);
	Py_RETURN_TRUE;
fail:
	tree_put(t);
	return NULL;
}

static PyObject *core_store(CoreObject *c, PyObject *const *args, Py_ssize_t nargs,
			    PyObject *kwnames)
{
	struct op_args a;
	struct zswap_tree *t;
	struct zswap_codec *zc;
	struct store_work w = {0};
	PyObject *page, *data = NULL;
	uint64_t packed, fill, old, crc = 0, handle = 0;
	uint32_t offset, stamp;
	uint16_t gid = 0;
	long type;
	int pid = 0, bad, rc;

	if (parse_args("store", args, nargs, kwnames, 3, &a) < 0)
		return NULL;
	t = get_tree(c, a.type, &type);
	if (t == NULL)
		return NULL;
	if (get_offset(a.offset, &offset) < 0)
		goto fail_tree;
	page = a.page;
	if (PyBytes_CheckExact(page)) {
		Py_INCREF(page);
	} else {
		page = owner_call(c, str_as_page, 1, page, NULL, NULL, NULL);
		if (page == NULL)
			goto fail_tree;
	}
	if ((size_t)PyBytes_GET_SIZE(page) != c->page_size) {
		PyErr_Format(PyExc_ValueError, "page must be %zu bytes, got %zd", c->page_size,
			     PyBytes_GET_SIZE(page));
		goto fail_page;
	}
	if (!c->enabled)
		goto refuse;
	if (a.group != NULL && a.group != Py_None) {
		if (store_memcg(c, a.group, &gid) < 0)
			goto fail_page;
		rc = gid ? store_memcg_room(c, gid) : 1;
		if (rc < 0)
			goto fail_page;
		if (rc == 0)
			goto refuse;
	}
	if (pool_full(c)) {
		PyObject *r = owner_call(c, str_wake, 0, NULL, NULL, NULL, NULL);

		if (r == NULL)
			goto fail_page;
		Py_DECREF(r);
		goto refuse;
	}

	/* same-filled pages: one word, no pool memory */
	if (c->same_enabled &&
	    same_filled((const unsigned char *)PyBytes_AS_STRING(page), c->page_size, &fill)) {
		packed = E_PRESENT | E_SAME | (fill & 0xFFFFFFFF00000000ull);
		stamp = (uint32_t)fill;
	} else {
		if (!c->non_same_enabled)
			goto refuse;
		pid = pool_tryget_current(c, &zc);
		if (!pid)
			goto refuse;
		if (zc != NULL) {
			/* The C codec: compress (and, when the allocator allows, allocate
			 * and insert) without the GIL. */
			w.page = (const unsigned char *)PyBytes_AS_STRING(page);
			w.offset = offset;
			w.memcg = gid;
			w.checksums = c->checksums;
			rc = store_native(c, t, pid, zc, &w);
			codec_put(zc);
			if (rc < 0)
				goto fail_pool;
			if (w.stat) {
				stat_inc(c, (enum zswap_stat)w.stat, 1);
				goto refuse_pool;
			}
			Py_CLEAR(page);
			if (w.inserted >= 0)
				return store_finish(c, t, type, offset, w.packed, w.inserted,
						    w.old);
			/* Pinned, or an allocator that needed the GIL: insert below. */
			packed = w.packed;
			crc = w.crc;
			stamp = next_stamp(c) | STAMP_REFERENCED;
			goto insert;
		}
		data = store_compress(c, pid, page, &bad);
		if (data == NULL) {
			if (!bad)
				goto fail_pool;
			stat_inc(c, ST_REJECT_COMPRESS_FAIL, 1);
			goto refuse_pool;
		}
		rc = store_alloc(c, pid, data, &handle);
		if (rc != 0) {
			Py_CLEAR(data);
			if (rc < 0)
				goto fail_pool;
			stat_inc(c, (enum zswap_stat)rc, 1);
			goto refuse_pool;
		}
		packed = E_PRESENT | ((uint64_t)pid << E_POOL_SHIFT) |
			 ((uint64_t)PyBytes_GET_SIZE(data) << E_LEN_SHIFT) |
			 (handle << E_HANDLE_SHIFT);
		Py_CLEAR(data);
		stamp = next_stamp(c) | STAMP_REFERENCED;
	}
	if (c->checksums)
		crc = zswap_crc32((const unsigned char *)PyBytes_AS_STRING(page), c->page_size) |
		      CRC_VALID;
	Py_CLEAR(page);

insert:
	/* insert, replacing a duplicate: one critical section of the tree */
	if (tree_lock_unpinned(c, t, offset) < 0) {
		if (!(packed & E_SAME) && entry_free(c, packed) < 0)
			PyErr_WriteUnraisable((PyObject *)c);
		goto fail_tree;
	}
	rc = tree_insert_locked(t, offset, packed, gid, stamp, crc, &old);
	pthread_mutex_unlock(&t->lock);
	return store_finish(c, t, type, offset, packed, rc, old);

refuse_pool:
	if (pool_put(c, pid) < 0)
		goto fail_page;
refuse:
	Py_DECREF(page);
	return store_refuse(c, t, offset);
fail_pool:
	{
		struct saved_exc exc;

		exc_save(&exc);
		if (pool_put(c, pid) < 0)
			PyErr_WriteUnraisable((PyObject *)c);
		exc_restore(&exc);
	}
fail_page:
	Py_XDECREF(page);
fail_tree:
	tree_put(t);
	return NULL;
}

static void fill_page(unsigned char *p, size_t len, uint64_t fill)
{
	unsigned char word[8];

	for (int k = 0; k < 8; k++)
		word[k] = (unsigned char)(fill >> (8 * k));
	for (size_t k = 0; k < len; k += 8)
		memcpy(p + k, word, 8);
}

/* The page of a same-filled entry. */
static PyObject *same_page(CoreObject *c, uint64_t fill)
{
	PyObject *out;

	if (fill == 0) {
		Py_INCREF(c->zero_page);
		return c->zero_page;
	}
	out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)c->page_size);
	if (out == NULL)
		return NULL;
	fill_page((unsigned char *)PyBytes_AS_STRING(out), c->page_size, fill);
	return out;
}

/* Read and decompress an entry; new bytes of exactly a page, or NULL with *error
 * set to the (Exception) reason, or NULL and no *error for a BaseException. The
 * compressed bytes are copied out first: under the tree lock from a C allocator
 * (`src` given), otherwise through the allocator's read(), which copies under its
 * own lock. */
static PyObject *entry_decompress_with(CoreObject *c, uint64_t packed, PyObject *src,
				       PyObject *read_fn, PyObject *decompress_fn,
				       PyObject **error);

static PyObject *entry_decompress(CoreObject *c, uint64_t packed, PyObject *src,
				  PyObject **error)
{
	struct zswap_pool_slot *s = &c->pools[E_POOL(packed)];
	PyObject *out, *read_fn, *decompress_fn;

	/* The entry's pool reference keeps the slot only while the entry lives, and
	 * once Python runs (the allocator's read, the codec) another thread may drop
	 * it and the pool with it: the two callables are held by us from here on, so
	 * a pool destroyed meanwhile costs a retry, never a call through a freed slot.
	 * (Taken before any Python runs: the slot cannot change under the GIL.) */
	if (s->pool == NULL || s->decompress == NULL) {
		*error = PyUnicode_FromString("the entry's pool is gone");
		return NULL;
	}
	read_fn = Py_NewRef(s->read);
	decompress_fn = Py_NewRef(s->decompress);
	out = entry_decompress_with(c, packed, src, read_fn, decompress_fn, error);
	Py_DECREF(read_fn);
	Py_DECREF(decompress_fn);
	return out;
}

static PyObject *entry_decompress_with(CoreObject *c, uint64_t packed, PyObject *src,
				       PyObject *read_fn, PyObject *decompress_fn,
				       PyObject **error)
{
	PyObject *argv[3], *out;

	*error = NULL;
	if (src == NULL) {
		PyObject *h = PyLong_FromUnsignedLongLong(E_HANDLE(packed));
		PyObject *n = PyLong_FromSize_t(E_LEN(packed));

		if (h && n) {
			PyObject *rargs[3] = {NULL, h, n};

			src = PyObject_Vectorcall(read_fn, rargs + 1,
						  2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
		}
		Py_XDECREF(h);
		Py_XDECREF(n);
		if (src == NULL)
			goto failed;
	} else {
		Py_INCREF(src);
	}
	argv[0] = NULL;
	argv[1] = src;
	argv[2] = PyLong_FromSize_t(c->page_size);
	if (argv[2] == NULL) {
		Py_DECREF(src);
		goto failed;
	}
	out = PyObject_Vectorcall(decompress_fn, argv + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
				  NULL);
	Py_DECREF(argv[2]);
	Py_DECREF(src);
	if (out == NULL)
		goto failed;
	/* Exactly a page, as bytes: immutable, so what the caller gets cannot change. */
	if (PyBytes_CheckExact(out) && (size_t)PyBytes_GET_SIZE(out) == c->page_size)
		return out;
	*error = owner_call(c, str_bad_page, 1, out, NULL, NULL, NULL);
	Py_DECREF(out);
	return NULL;
failed:
	if (PyErr_ExceptionMatches(PyExc_Exception))
		*error = exc_take();
	return NULL;
}

/* Count decompress_fail and raise the Python backend's DecompressError. */
static void load_failed(CoreObject *c, long type, uint32_t offset, PyObject *error)
{
	PyObject *t = PyLong_FromLong(type), *o = PyLong_FromUnsignedLong(offset), *exc = NULL;

	stat_inc(c, ST_DECOMPRESS_FAIL, 1);
	if (t && o)
		exc = owner_call(c, str_unreadable, 3, t, o, error, NULL);
	Py_XDECREF(t);
	Py_XDECREF(o);
	if (exc != NULL) {
		PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
		Py_DECREF(exc);
	}
}

/* The compressed bytes of an entry from a C allocator, copied under the tree lock
 * (so that they are the entry's own). Called with the lock held and returns with
 * it held; the bytes object is made with the lock dropped, since no Python (nor
 * its allocator) runs under a C lock. NULL and *failed = 0 for a Python allocator
 * (its read() copies under its own lock, later); 1: no memory (exception set);
 * 2: the allocator refused the handle; 3: the entry changed meanwhile. In cases 2
 * and 3 the bytes object is returned all the same, for the caller to drop once the
 * lock is released. */
static PyObject *entry_read_locked(CoreObject *c, struct zswap_tree *t, uint32_t offset,
				   uint64_t packed, uint32_t stamp, int *failed)
{
	struct zswap_pool_slot *s = &c->pools[E_POOL(packed)];
	struct zswap_entry *e;
	PyObject *src;

	*failed = 0;
	if (s->ops == NULL)
		return NULL;
	pthread_mutex_unlock(&t->lock);
	src = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)E_LEN(packed));
	pthread_mutex_lock(&t->lock);
	if (src == NULL) {
		*failed = 1;
		return NULL;
	}
	e = tree_entry(t, offset);
	if (e == NULL || e->packed != packed || e->stamp != stamp)
		*failed = 3;
	else if (s->ops->read(s->ops_pool, E_HANDLE(packed), PyBytes_AS_STRING(src), E_LEN(packed)))
		*failed = 2;
	return src;
}

/* The GIL-free load (see load_native). */
enum { LOAD_FALLBACK = -1, LOAD_ABSENT = 0, LOAD_DONE = 1 };

struct load_work {
	uint32_t offset;
	int excl;
	unsigned char *out;       /* a page: the caller's new bytes object */
	int zero;                 /* done, and the page is all zeros */
	uint64_t to_free;         /* the entry an exclusive load took out */
	struct zswap_codec *zc;   /* a reference, for the caller to put with the GIL */
};

/* Lock, read the compressed bytes, unlock, decompress, and check that the entry
 * is still the one read: without the GIL and without Python. Anything unusual (a
 * pin an exclusive load must wait for, a Python codec or allocator, any failure,
 * an entry changed meanwhile) answers LOAD_FALLBACK having changed nothing, and
 * the GIL path, which has the waits and the error reports, does the load. */
static int load_native(CoreObject *c, struct zswap_tree *t, struct load_work *w)
{
	size_t page_size = c->page_size, len;
	struct zswap_pool_slot *s;
	struct zswap_entry *e;
	unsigned char *buf;
	uint64_t packed;
	uint32_t stamp;
	int pinned;

	pthread_mutex_lock(&t->lock);
	e = tree_entry(t, w->offset);
	packed = e ? e->packed : 0;
	if (!packed) {
		pthread_mutex_unlock(&t->lock);
		return LOAD_ABSENT;
	}
	pinned = t->nr_pins && tree_pinned(t, w->offset);
	if (w->excl && pinned)
		goto fallback;
	stamp = e->stamp;
	if (packed & E_SAME) {
		uint64_t fill = (packed & 0xFFFFFFFF00000000ull) | stamp;

		entry_memcg_event(t, e, w->offset, MEMCG_ZSWPIN);
		if (w->excl)
			tree_clear(t, w->offset);
		pthread_mutex_unlock(&t->lock);
		w->zero = fill == 0;
		if (!w->zero)
			fill_page(w->out, page_size, fill);
		return LOAD_DONE;
	}
	/* The entry's pool reference keeps its slot while we hold the tree lock. */
	s = &c->pools[E_POOL(packed)];
	len = E_LEN(packed);
	if (!s->nogil || (buf = scratch_get(len)) == NULL ||
	    s->ops->read(s->ops_pool, E_HANDLE(packed), buf, len) != 0 ||
	    (w->zc = pool_codec(c, E_POOL(packed))) == NULL)
		goto fallback;
	pthread_mutex_unlock(&t->lock);

	if (codec_decompress(w->zc, buf, len, w->out, page_size) != 0)
		return LOAD_FALLBACK;

	pthread_mutex_lock(&t->lock);
	e = tree_entry(t, w->offset);
	if (e == NULL || e->packed != packed || e->stamp != stamp ||
	    tree_verify(t, w->offset, (const char *)w->out, page_size))
		goto fallback;
	pinned = t->nr_pins && tree_pinned(t, w->offset);
	if (w->excl && pinned)
		goto fallback;
	entry_memcg_event(t, e, w->offset, MEMCG_ZSWPIN);
	if (w->excl) {
		tree_clear(t, w->offset);
		w->to_free = packed;
	} else if (!pinned) {
		e->stamp = next_stamp(c); /* young again (see lru) */
	}
	pthread_mutex_unlock(&t->lock);
	return LOAD_DONE;
fallback:
	pthread_mutex_unlock(&t->lock);
	return LOAD_FALLBACK;
}

/* load and load_dirty: the page, and whether the entry was dropped. */
static PyObject *core_do_load(CoreObject *c, const char *fname, PyObject *const *args,
			      Py_ssize_t nargs, PyObject *kwnames, int *dirty)
{
	struct op_args a;
	struct zswap_tree *t;
	struct zswap_entry *e;
	PyObject *out = NULL, *src, *error = NULL;
	uint64_t packed, to_free = 0;
	uint32_t offset, stamp;
	long type;
	int excl, attempt, failed, pinned = 0;

	if (parse_args(fname, args, nargs, kwnames, 2, &a) < 0)
		return NULL;
	if (a.exclusive == NULL || a.exclusive == Py_None) {
		excl = c->exclusive;
	} else {
		excl = PyObject_IsTrue(a.exclusive);
		if (excl < 0)
			return NULL;
	}
	t = get_tree(c, a.type, &type);
	if (t == NULL)
		return NULL;
	if (get_offset(a.offset, &offset) < 0)
		goto fail;

	if (c->nr_nogil_pools > 0) {
		struct load_work w = {.offset = offset, .excl = excl};
		int r;

		out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)c->page_size);
		if (out == NULL)
			goto fail;
		w.out = (unsigned char *)PyBytes_AS_STRING(out);
		Py_BEGIN_ALLOW_THREADS
		r = load_native(c, t, &w);
		Py_END_ALLOW_THREADS
		codec_put(w.zc);
		if (r == LOAD_DONE) {
			if (w.zero)
				Py_SETREF(out, Py_NewRef(c->zero_page));
			to_free = w.to_free;
			goto loaded;
		}
		Py_DECREF(out);
		if (r == LOAD_ABSENT) {
			out = Py_NewRef(Py_None);
			goto loaded;
		}
	}

	for (attempt = 0;; attempt++) {
		/* After 8 lost races, pin the entry: writers then wait for this load. */
		pinned = attempt >= 8;
		if (excl || pinned) {
			if (tree_lock_unpinned(c, t, offset) < 0)
				goto fail;
		} else {
			pthread_mutex_lock(&t->lock);
		}
		e = tree_entry(t, offset);
		packed = e ? e->packed : 0;
		if (!packed) {
			pthread_mutex_unlock(&t->lock);
			out = Py_None;
			Py_INCREF(out);
			break;
		}
		stamp = e->stamp;
		if (packed & E_SAME) {
			entry_memcg_event(t, e, offset, MEMCG_ZSWPIN);
			if (excl)
				tree_clear(t, offset);
			pthread_mutex_unlock(&t->lock);
			out = same_page(c, (packed & 0xFFFFFFFF00000000ull) | stamp);
			break;
		}
		src = entry_read_locked(c, t, offset, packed, stamp, &failed);
		if (failed == 3) {
			pthread_mutex_unlock(&t->lock);
			Py_DECREF(src);
			continue; /* changed while the bytes object was made: try again */
		}
		if (pinned && tree_pin(t, offset) < 0)
			pinned = 0; /* no memory for a pin: one more unpinned attempt */
		pthread_mutex_unlock(&t->lock);

		if (failed == 1) {
			out = NULL;
		} else if (failed == 2) {
			Py_CLEAR(src);
			error = PyObject_CallFunction(c->zpool_error, "is", EINVAL,
						      "zpool read of the entry's handle failed");
			if (error == NULL)
				error = exc_take();
			out = NULL;
		} else {
			/* Decompress outside the tree lock; the entry is checked again below,
			 * and its unique stamp means a free + reuse of the same handle cannot
			 * go unnoticed. */
			out = entry_decompress(c, packed, src, &error);
			Py_XDECREF(src);
		}

		/* An exclusive load must not drop an entry writeback has pinned meanwhile;
		 * our own pin keeps the others away. */
		if (excl && !pinned) {
			if (tree_lock_unpinned(c, t, offset) < 0) {
				Py_XDECREF(out);
				Py_XDECREF(error);
				goto fail;
			}
		} else {
			pthread_mutex_lock(&t->lock);
		}
		e = tree_entry(t, offset);
		if (pinned)
			tree_unpin(t, offset);
		if (e == NULL || e->packed != packed || e->stamp != stamp) {
			pthread_mutex_unlock(&t->lock);
			if (out == NULL && error == NULL)
				goto fail; /* BaseException */
			Py_CLEAR(out);
			Py_CLEAR(error);
			continue; /* changed under us: try again */
		}
		if (out != NULL && tree_verify(t, offset, PyBytes_AS_STRING(out), c->page_size)) {
			Py_CLEAR(out);
			error = PyUnicode_FromString(
				"checksum mismatch: the stored data was corrupted");
		}
		if (out != NULL) {
			entry_memcg_event(t, e, offset, MEMCG_ZSWPIN);
			if (excl) {
				tree_clear(t, offset);
				to_free = packed;
			} else if (!t->nr_pins || !tree_pinned(t, offset)) {
				e->stamp = next_stamp(c); /* young again (see lru) */
			}
		}
		pthread_mutex_unlock(&t->lock);
		if (out == NULL) {
			if (error == NULL)
				goto fail; /* BaseException */
			load_failed(c, type, offset, error);
			Py_DECREF(error);
			goto fail;
		}
		break;
	}
	if (out == NULL)
		goto fail;
loaded:
	if (to_free && entry_free(c, to_free) < 0)
		goto fail_out;
	if (hooks_active && call_hook(c, str_load, type, offset, out != Py_None) < 0)
		goto fail_out;
	*dirty = excl && out != Py_None;
	tree_put(t);
	return out;
fail_out:
	Py_DECREF(out);
fail:
	tree_put(t);
	return NULL;
}

static PyObject *core_load(CoreObject *c, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	int dirty;

	return core_do_load(c, "load", args, nargs, kwnames, &dirty);
}

static PyObject *core_load_dirty(CoreObject *c, PyObject *const *args, Py_ssize_t nargs,
				 PyObject *kwnames)
{
	int dirty;
	PyObject *out = core_do_load(c, "load_dirty", args, nargs, kwnames, &dirty), *r;

	if (out == NULL)
		return NULL;
	r = PyTuple_Pack(2, out, dirty ? Py_True : Py_False);
	Py_DECREF(out);
	return r;
}

static PyObject *core_invalidate_page(CoreObject *c, PyObject *const *args, Py_ssize_t nargs,
				      PyObject *kwnames)
{
	struct op_args a;
	struct zswap_tree *t;
	uint32_t offset;
	uint64_t removed;
	long type;
	int rc;

	if (parse_args("invalidate_page", args, nargs, kwnames, 2, &a) < 0)
		return NULL;
	t = get_tree(c, a.type, &type);
	if (t == NULL)
		return NULL;
	if (get_offset(a.offset, &offset) < 0) {
		tree_put(t);
		return NULL;
	}
	rc = tree_erase(c, t, offset, &removed);
	if (rc == 0 && removed && hooks_active)
		rc = call_hook(c, str_invalidate, type, offset, 1);
	tree_put(t);
	if (rc < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* swapoff: drop every page of the type and forget it. */
static PyObject *core_invalidate_area(CoreObject *c, PyObject *type_obj)
{
	struct zswap_tree *t;
	struct zswap_dir *dir;
	uint64_t *removed = NULL;
	size_t n = 0, cap = 0;
	long type;
	int rc = 0;

	t = get_tree(c, type_obj, &type);
	if (t == NULL)
		return NULL;
	/* Dead at once, so late stores are refused; but still in the table until the
	 * pins are gone, so that writeback can find the tree to unpin its entry. */
	for (;;) {
		pthread_mutex_lock(&t->lock);
		t->dead = 1;
		if (!t->nr_pins)
			break;
		pthread_mutex_unlock(&t->lock);
		if (wait_pin(c) < 0) {
			tree_put(t);
			return NULL;
		}
	}
	if (c->trees[type] == t) {
		c->trees[type] = NULL;
		t->refs--; /* the table's reference; ours keeps it */
	}
	cap = t->nr_stored - t->nr_same;
	removed = cap ? malloc(cap * sizeof(uint64_t)) : NULL;
	if (cap && removed == NULL) {
		pthread_mutex_unlock(&t->lock);
		tree_put(t);
		return PyErr_NoMemory();
	}
	for (uint32_t d = 0; (dir = tree_next_dir(t, &d)) != NULL; d++) {
		for (unsigned k = 0; k < DIR_SIZE; k++) {
			struct zswap_chunk *ch = dir->chunk[k];

			if (ch == NULL)
				continue;
			for (unsigned j = 0; j < CHUNK; j++)
				if (ch->e[j].packed && !(ch->e[j].packed & E_SAME) && n < cap)
					removed[n++] = ch->e[j].packed;
		}
	}
	tree_empty(t);
	pthread_mutex_unlock(&t->lock);
	for (size_t k = 0; k < n; k++) {
		if (entry_free(c, removed[k]) < 0 && rc == 0)
			rc = -1;
		else if (rc < 0)
			PyErr_WriteUnraisable((PyObject *)c);
	}
	free(removed);
	tree_put(t);
	if (rc < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* ===========================================================================
 * 5. writeback
 *
 * The policy is Python (_Zswap._shrink); these pieces do the tree work. An entry
 * being written back is pinned instead of held under the tree lock (the handler
 * is Python): stores, invalidations and exclusive loads of it wait; plain loads
 * still read it.
 * ========================================================================= */

/* lru_pop(pid, gid=0) -> (type, offset, packed, stamp) of the oldest entry of
 * pool `pid` and memcg `gid` across the trees, taken off its queue; or None. */
static PyObject *core_lru_pop(CoreObject *c, PyObject *args)
{
	long pid, lgid = 0;
	struct zswap_tree *best = NULL;
	uint64_t packed = 0;
	uint32_t best_stamp = 0, stamp, best_off = 0, off;
	uint16_t gid;

	if (!PyArg_ParseTuple(args, "l|l:lru_pop", &pid, &lgid))
		return NULL;
	if (pid <= 0 || pid >= NR_POOLS) {
		PyErr_SetString(PyExc_ValueError, "pool id out of range");
		return NULL;
	}
	if (lgid < 0 || lgid >= NR_MEMCGS) {
		PyErr_SetString(PyExc_ValueError, "memcg id out of range");
		return NULL;
	}
	gid = (uint16_t)lgid;
	for (int k = 0; k < MAX_SWAPFILES; k++) {
		struct zswap_tree *t = c->trees[k];
		int found;

		if (t == NULL || (gid == 0 && t->lru[pid] == NULL))
			continue;
		pthread_mutex_lock(&t->lock);
		found = lru_peek(t, (int)pid, gid, &stamp, &off);
		pthread_mutex_unlock(&t->lock);
		if (found && (best == NULL || stamp_before(stamp, best_stamp))) {
			best = t;
			best_stamp = stamp;
			best_off = off;
		}
	}
	if (best == NULL)
		Py_RETURN_NONE;
	pthread_mutex_lock(&best->lock);
	{
		struct zswap_lru **lp = lru_slot(best, (int)pid, gid, 0);
		struct zswap_lru *l = lp != NULL ? *lp : NULL;
		struct zswap_entry *e;

		if (l != NULL && l->head < l->len && l->recs[l->head].offset == best_off &&
		    l->recs[l->head].stamp == best_stamp)
			l->head++;
		e = tree_entry(best, best_off);
		packed = e ? e->packed : 0;
	}
	pthread_mutex_unlock(&best->lock);
	return Py_BuildValue("(iIKK)", best->type, best_off, (unsigned long long)packed,
			     (unsigned long long)best_stamp);
}

static struct zswap_tree *live_tree(CoreObject *c, long type)
{
	return type >= 0 && type < MAX_SWAPFILES ? c->trees[type] : NULL;
}

/* lru_rotate(type, offset, packed, stamp): the shrinker's second chance. The entry
 * lru_pop gave is still that one: clear its referenced bit and queue it at the
 * young end; changed since (loaded, replaced): queue it with its stamp now, on
 * the LRU of its pool and memcg now. A
 * pinned entry is left to the writeback that pinned it (wb_end requeues it). */
static PyObject *core_lru_rotate(CoreObject *c, PyObject *args)
{
	long type;
	unsigned int offset;
	unsigned long long packed, stamp;
	struct zswap_tree *t;
	struct zswap_entry *e;

	if (!PyArg_ParseTuple(args, "lIKK", &type, &offset, &packed, &stamp))
		return NULL;
	t = live_tree(c, type);
	if (t == NULL || !packed || (packed & E_SAME))
		Py_RETURN_NONE;
	pthread_mutex_lock(&t->lock);
	e = tree_entry(t, offset);
	if (e != NULL && !t->dead && !tree_pinned(t, offset)) {
		if (e->packed == packed && e->stamp == (uint32_t)stamp) {
			e->stamp &= ~STAMP_REFERENCED;
			lru_push(t, E_POOL(packed), entry_memcg(e, offset), offset, e->stamp);
		} else {
			lru_requeue(t, offset, E_POOL(packed));
		}
	}
	pthread_mutex_unlock(&t->lock);
	Py_RETURN_NONE;
}

/* disk_swapin(type): a page of this type came from the swap device, not zswap:
 * one more protected entry for the shrinker. */
static PyObject *core_disk_swapin(CoreObject *c, PyObject *arg)
{
	long type = PyLong_AsLong(arg);
	struct zswap_tree *t;

	if (type == -1 && PyErr_Occurred())
		return NULL;
	t = live_tree(c, type);
	if (t == NULL) {
		PyErr_Format(PyExc_ValueError, "swap type %ld is not initialised", type);
		return NULL;
	}
	pthread_mutex_lock(&t->lock);
	t->nr_protected++;
	pthread_mutex_unlock(&t->lock);
	Py_RETURN_NONE;
}

/* lru_state() -> (entries on the LRUs, protected size), over every tree. */
static PyObject *core_lru_state(CoreObject *c, UNUSED PyObject *unused)
{
	uint64_t lru = 0, prot = 0;

	for (int k = 0; k < MAX_SWAPFILES; k++) {
		struct zswap_tree *t = c->trees[k];

		if (t == NULL)
			continue;
		pthread_mutex_lock(&t->lock);
		lru += t->nr_stored - t->nr_same;
		prot += t->nr_protected;
		pthread_mutex_unlock(&t->lock);
	}
	return Py_BuildValue("(KK)", (unsigned long long)lru, (unsigned long long)prot);
}

/* wb_take(type, offset, packed, stamp) -> bool: pin the entry if it is still the
 * one picked; otherwise put it back on the LRU (when still there) and say no. */
static PyObject *core_wb_take(CoreObject *c, PyObject *args)
{
	long type;
	unsigned int offset;
	unsigned long long packed, stamp;
	struct zswap_tree *t;
	struct zswap_entry *e;
	int ok = 0;

	if (!PyArg_ParseTuple(args, "lIKK", &type, &offset, &packed, &stamp))
		return NULL;
	t = live_tree(c, type);
	if (t == NULL || t->dead || !packed || (packed & E_SAME))
		Py_RETURN_FALSE;
	pthread_mutex_lock(&t->lock);
	e = tree_entry(t, offset);
	if (e != NULL && e->packed == packed && e->stamp == stamp && !tree_pinned(t, offset)) {
		ok = tree_pin(t, offset) == 0;
	} else if (e != NULL && !tree_pinned(t, offset)) {
		/* Gone, replaced or loaded since it was picked: its record was taken off
		 * the LRU, so one that is still here goes back, at the young end. */
		lru_requeue(t, offset, E_POOL(packed));
	}
	pthread_mutex_unlock(&t->lock);
	return PyBool_FromLong(ok);
}

/* wb_verify(type, offset, page) -> bool: the page matches its checksum (or has none). */
static PyObject *core_wb_verify(CoreObject *c, PyObject *args)
{
	long type;
	unsigned int offset;
	Py_buffer page;
	struct zswap_tree *t;
	int bad = 0;

	if (!PyArg_ParseTuple(args, "lIy*", &type, &offset, &page))
		return NULL;
	t = live_tree(c, type);
	if (t != NULL) {
		pthread_mutex_lock(&t->lock);
		bad = tree_verify(t, offset, page.buf, (size_t)page.len);
		pthread_mutex_unlock(&t->lock);
	}
	PyBuffer_Release(&page);
	return PyBool_FromLong(!bad);
}

/* wb_end(type, offset, packed, ok): unpin; written: drop the entry and free it;
 * failed: make it young, so that others are tried first. */
static PyObject *core_wb_end(CoreObject *c, PyObject *args)
{
	long type;
	unsigned int offset;
	unsigned long long packed;
	int ok, freed = 0;
	struct zswap_tree *t;
	struct zswap_entry *e;

	if (!PyArg_ParseTuple(args, "lIKp", &type, &offset, &packed, &ok))
		return NULL;
	t = live_tree(c, type);
	if (t == NULL)
		Py_RETURN_NONE;
	pthread_mutex_lock(&t->lock);
	e = tree_entry(t, offset);
	tree_unpin(t, offset);
	if (e != NULL && e->packed == packed) {
		if (ok) {
			entry_memcg_event(t, e, offset, MEMCG_ZSWPWB);
			tree_clear(t, offset);
			freed = 1;
		} else {
			e->stamp = next_stamp(c);
			lru_push(t, E_POOL(packed), entry_memcg(e, offset), offset, e->stamp);
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (freed && entry_free(c, packed) < 0)
		return NULL;
	return PyBool_FromLong(freed);
}

/* ===========================================================================
 * 6. init: the Python type
 * ========================================================================= */

static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"owner", "page_size", "pages", "zpool_error", NULL};
	PyObject *owner, *zpool_error;
	PageCounterObject *pages;
	Py_ssize_t page_size;
	CoreObject *c;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OnO!O", kwlist, &owner, &page_size,
					 &PageCounter_Type, &pages, &zpool_error))
		return NULL;
	if (page_size < 512 || (page_size & (page_size - 1))) {
		PyErr_SetString(PyExc_ValueError, "page_size must be a power of two >= 512");
		return NULL;
	}
	c = (CoreObject *)type->tp_alloc(type, 0);
	if (c == NULL)
		return NULL;
	pthread_mutex_init(&c->pools_lock, NULL);
	pthread_mutex_init(&c->stats_lock, NULL);
	pthread_mutex_init(&c->memcgs.lock, NULL);
	c->page_size = (size_t)page_size;
	c->zero_page = PyBytes_FromStringAndSize(NULL, page_size);
	if (c->zero_page == NULL) {
		Py_DECREF(c);
		return NULL;
	}
	memset(PyBytes_AS_STRING(c->zero_page), 0, (size_t)page_size);
	c->owner_ref = PyWeakref_NewRef(owner, NULL);
	if (c->owner_ref == NULL) {
		Py_DECREF(c);
		return NULL;
	}
	Py_INCREF(pages);
	c->pages = pages;
	Py_INCREF(zpool_error);
	c->zpool_error = zpool_error;
	return (PyObject *)c;
}

static void slot_clear(struct zswap_pool_slot *s)
{
	Py_CLEAR(s->pool);
	Py_CLEAR(s->compress);
	Py_CLEAR(s->decompress);
	Py_CLEAR(s->alloc_write);
	Py_CLEAR(s->read);
	Py_CLEAR(s->free);
	Py_CLEAR(s->ops_capsule);
	s->ops = NULL;
	s->ops_pool = NULL;
	s->nogil = 0;
	codec_put(s->codec);
	s->codec = NULL;
}

static int core_traverse(CoreObject *c, visitproc visit, void *arg)
{
	Py_VISIT(c->owner_ref);
	Py_VISIT(c->pages);
	for (int p = 0; p < NR_POOLS; p++) {
		struct zswap_pool_slot *s = &c->pools[p];

		Py_VISIT(s->pool);
		Py_VISIT(s->compress);
		Py_VISIT(s->decompress);
		Py_VISIT(s->alloc_write);
		Py_VISIT(s->read);
		Py_VISIT(s->free);
		Py_VISIT(s->ops_capsule);
	}
	return 0;
}

static int core_clear(CoreObject *c)
{
	Py_CLEAR(c->owner_ref);
	for (int p = 0; p < NR_POOLS; p++)
		slot_clear(&c->pools[p]);
	return 0;
}

static void core_dealloc(CoreObject *c)
{
	PyObject_GC_UnTrack(c);
	core_clear(c);
	for (int k = 0; k < MAX_SWAPFILES; k++) {
		if (c->trees[k] != NULL) {
			tree_put(c->trees[k]);
			c->trees[k] = NULL;
		}
	}
	Py_CLEAR(c->pages);
	Py_CLEAR(c->zpool_error);
	Py_CLEAR(c->zero_page);
	free(c->memcgs.tab); /* after the trees, which uncharge into it */
	pthread_mutex_destroy(&c->pools_lock);
	pthread_mutex_destroy(&c->stats_lock);
	pthread_mutex_destroy(&c->memcgs.lock);
	Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *core_init_type(CoreObject *c, PyObject *arg)
{
	long type = PyLong_AsLong(arg);

	if (type == -1 && PyErr_Occurred())
		return NULL;
	if (type < 0 || type >= MAX_SWAPFILES) {
		PyErr_Format(PyExc_ValueError, "swap type must be in 0..%d, got %ld",
			     MAX_SWAPFILES - 1, type);
		return NULL;
	}
	if (c->trees[type] == NULL) {
		c->trees[type] = tree_new((int)type, &c->memcgs);
		if (c->trees[type] == NULL)
			return PyErr_NoMemory();
	}
	Py_RETURN_NONE;
}

static PyObject *core_types(CoreObject *c, UNUSED PyObject *unused)
{
	PyObject *out = PyList_New(0);

	for (int k = 0; out != NULL && k < MAX_SWAPFILES; k++) {
		if (c->trees[k] != NULL) {
			PyObject *v = PyLong_FromLong(k);

			if (v == NULL || PyList_Append(out, v) < 0)
				Py_CLEAR(out);
			Py_XDECREF(v);
		}
	}
	return out;
}

static PyObject *core_set_params(CoreObject *c, PyObject *args)
{
	int enabled, same, non_same, excl, checksums;
	Py_ssize_t max_pages, accept_pages;

	if (!PyArg_ParseTuple(args, "pppppnn", &enabled, &same, &non_same, &excl, &checksums,
			      &max_pages, &accept_pages))
		return NULL;
	c->enabled = enabled;
	c->same_enabled = same;
	c->non_same_enabled = non_same;
	c->exclusive = excl;
	c->checksums = checksums;
	c->max_pages = max_pages < 0 ? 0 : (size_t)max_pages;
	c->accept_pages = accept_pages < 0 ? 0 : (size_t)accept_pages;
	Py_RETURN_NONE;
}

static PyObject *core_reset_full(CoreObject *c, UNUSED PyObject *unused)
{
	c->full = 0;
	Py_RETURN_NONE;
}

static int get_pid(PyObject *arg, int allow_zero)
{
	long pid = PyLong_AsLong(arg);

	if (pid == -1 && PyErr_Occurred())
		return -1;
	if (pid < (allow_zero ? 0 : 1) || pid >= NR_POOLS) {
		PyErr_Format(PyExc_ValueError, "pool id %ld out of range", pid);
		return -1;
	}
	return (int)pid;
}

/* pool_add(pid, pool, compressor, zpool): a new pool with one reference. */
static PyObject *core_pool_add(CoreObject *c, PyObject *args)
{
	PyObject *pid_obj, *pool, *comp, *zpool, *cap;
	struct zswap_pool_slot s = {0};
	int pid;

	if (!PyArg_ParseTuple(args, "OOOO", &pid_obj, &pool, &comp, &zpool))
		return NULL;
	pid = get_pid(pid_obj, 0);
	if (pid < 0)
		return NULL;
	if (c->pools[pid].pool != NULL) {
		PyErr_Format(PyExc_RuntimeError, "pool id %d is in use", pid);
		return NULL;
	}
	s.compress = PyObject_GetAttrString(comp, "compress");
	s.decompress = s.compress ? PyObject_GetAttrString(comp, "decompress") : NULL;
	s.alloc_write = s.decompress ? PyObject_GetAttrString(zpool, "alloc_write") : NULL;
	s.read = s.alloc_write ? PyObject_GetAttrString(zpool, "read") : NULL;
	s.free = s.read ? PyObject_GetAttrString(zpool, "free") : NULL;
	if (s.free == NULL) {
		slot_clear(&s);
		return NULL;
	}
	/* The allocator's C ops, when it exports a table we can use. */
	cap = PyObject_GetAttrString(zpool, "zpool_ops");
	if (cap == NULL) {
		PyErr_Clear();
	} else if (PyCapsule_IsValid(cap, ZSWAP_ZPOOL_OPS_CAPSULE)) {
		const struct zswap_zpool_ops *ops = PyCapsule_GetPointer(cap, ZSWAP_ZPOOL_OPS_CAPSULE);

		if (ops->version >= 1 &&
		    ops->size >= offsetof(struct zswap_zpool_ops, free) + sizeof(ops->free)) {
			s.ops = ops;
			s.ops_pool = PyCapsule_GetContext(cap);
			s.ops_capsule = cap;
			s.nogil = ops->version >= 2 &&
				  ops->size >= offsetof(struct zswap_zpool_ops, flags) +
						       sizeof(ops->flags) &&
				  (ops->flags & ZSWAP_ZPOOL_NOGIL);
			cap = NULL;
		}
	}
	Py_XDECREF(cap);
	/* The compressor's C ops, when it exports a table we can use. */
	s.codec = codec_bind(comp);
	if (s.codec == NULL && PyErr_Occurred()) {
		slot_clear(&s);
		return NULL;
	}
	Py_INCREF(pool);
	s.pool = pool;
	s.refs = 1;
	pthread_mutex_lock(&c->pools_lock);
	c->pools[pid] = s;
	pthread_mutex_unlock(&c->pools_lock);
	c->nr_nogil_pools += s.nogil && s.codec != NULL;
	Py_RETURN_NONE;
}

/* pool_set_codec(pid, compressor): the pool's codec was replaced (tests do). */
static PyObject *core_pool_set_codec(CoreObject *c, PyObject *args)
{
	PyObject *pid_obj, *comp, *compress, *decompress;
	struct zswap_codec *zc, *old;
	int pid;

	if (!PyArg_ParseTuple(args, "OO", &pid_obj, &comp))
		return NULL;
	pid = get_pid(pid_obj, 0);
	if (pid < 0)
		return NULL;
	if (c->pools[pid].pool == NULL) {
		PyErr_Format(PyExc_ValueError, "pool id %d is not in use", pid);
		return NULL;
	}
	compress = PyObject_GetAttrString(comp, "compress");
	decompress = compress ? PyObject_GetAttrString(comp, "decompress") : NULL;
	if (decompress == NULL) {
		Py_XDECREF(compress);
		return NULL;
	}
	zc = codec_bind(comp);
	if (zc == NULL && PyErr_Occurred()) {
		Py_DECREF(compress);
		Py_DECREF(decompress);
		return NULL;
	}
	Py_XSETREF(c->pools[pid].compress, compress);
	Py_XSETREF(c->pools[pid].decompress, decompress);
	/* Threads without the GIL read the codec under pools_lock and hold their own
	 * reference, so the old one goes when its last call ends. */
	pthread_mutex_lock(&c->pools_lock);
	old = c->pools[pid].codec;
	c->pools[pid].codec = zc;
	pthread_mutex_unlock(&c->pools_lock);
	c->nr_nogil_pools += c->pools[pid].nogil * ((zc != NULL) - (old != NULL));
	codec_put(old);
	Py_RETURN_NONE;
}

/* entry(type, offset) -> the packed entry there, 0 if none (tests, debugging). */
static PyObject *core_entry(CoreObject *c, PyObject *args)
{
	long type;
	unsigned int offset;
	struct zswap_tree *t;
	struct zswap_entry *e;
	uint64_t packed = 0;

	if (!PyArg_ParseTuple(args, "lI", &type, &offset))
		return NULL;
	t = live_tree(c, type);
	if (t != NULL) {
		pthread_mutex_lock(&t->lock);
		e = tree_entry(t, offset);
		packed = e ? e->packed : 0;
		pthread_mutex_unlock(&t->lock);
	}
	return PyLong_FromUnsignedLongLong(packed);
}

static PyObject *core_pool_remove(CoreObject *c, PyObject *arg)
{
	struct zswap_pool_slot s;
	int pid = get_pid(arg, 0);

	if (pid < 0)
		return NULL;
	pthread_mutex_lock(&c->pools_lock);
	s = c->pools[pid];
	memset(&c->pools[pid], 0, sizeof(s));
	c->nr_nogil_pools -= s.nogil && s.codec != NULL;
	if (c->current == pid)
		c->current = 0;
	pthread_mutex_unlock(&c->pools_lock);
	slot_clear(&s);
	Py_RETURN_NONE;
}

static PyObject *core_pool_tryget(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 0), ok;

	if (pid < 0)
		return NULL;
	pthread_mutex_lock(&c->pools_lock);
	ok = c->pools[pid].pool != NULL && c->pools[pid].refs > 0;
	if (ok)
		c->pools[pid].refs++;
	pthread_mutex_unlock(&c->pools_lock);
	return PyBool_FromLong(ok);
}

/* pool_put(pid) -> bool: drop a reference; True when it was the last (the caller
 * destroys the pool). */
static PyObject *core_pool_put(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 0);
	long refs;

	if (pid < 0)
		return NULL;
	pthread_mutex_lock(&c->pools_lock);
	refs = --c->pools[pid].refs;
	pthread_mutex_unlock(&c->pools_lock);
	return PyBool_FromLong(refs == 0);
}

static PyObject *core_pool_refs(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 0);
	long refs;

	if (pid < 0)
		return NULL;
	pthread_mutex_lock(&c->pools_lock);
	refs = c->pools[pid].refs;
	pthread_mutex_unlock(&c->pools_lock);
	return PyLong_FromLong(refs);
}

static PyObject *core_pool_backend(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 0);

	if (pid < 0)
		return NULL;
	return PyUnicode_FromString(c->pools[pid].ops != NULL ? "native" : "python");
}

/* pool_nogil(pid) -> bool: its pages are stored and loaded without the GIL (a C
 * codec and an allocator whose ops allow it). */
static PyObject *core_pool_nogil(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 0);

	if (pid < 0)
		return NULL;
	return PyBool_FromLong(c->pools[pid].nogil && c->pools[pid].codec != NULL);
}

/* pool_codec_backend(pid) -> "native" (its C codec ops) or "python" (its methods). */
static PyObject *core_pool_codec_backend(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 0);

	if (pid < 0)
		return NULL;
	return PyUnicode_FromString(c->pools[pid].codec != NULL ? "native" : "python");
}

static PyObject *core_set_current(CoreObject *c, PyObject *arg)
{
	int pid = get_pid(arg, 1);

	if (pid < 0)
		return NULL;
	pthread_mutex_lock(&c->pools_lock);
	c->current = pid;
	pthread_mutex_unlock(&c->pools_lock);
	Py_RETURN_NONE;
}

static PyObject *core_stat_add(CoreObject *c, PyObject *args)
{
	const char *name;
	unsigned long long n;

	if (!PyArg_ParseTuple(args, "sK", &name, &n))
		return NULL;
	for (int s = 0; s < NR_STATS; s++) {
		if (strcmp(stat_names[s], name) == 0) {
			stat_inc(c, (enum zswap_stat)s, n);
			Py_RETURN_NONE;
		}
	}
	PyErr_Format(PyExc_KeyError, "no counter %s", name);
	return NULL;
}

/* counters() -> dict: the debugfs counters kept here, and the trees' totals. */
static PyObject *core_counters(CoreObject *c, UNUSED PyObject *unused)
{
	uint64_t v[NR_STATS], stored = 0, same = 0;
	PyObject *d = PyDict_New(), *x;

	if (d == NULL)
		return NULL;
	pthread_mutex_lock(&c->stats_lock);
	memcpy(v, c->stats, sizeof(v));
	pthread_mutex_unlock(&c->stats_lock);
	for (int k = 0; k < MAX_SWAPFILES; k++) {
		struct zswap_tree *t = c->trees[k];

		if (t == NULL)
			continue;
		pthread_mutex_lock(&t->lock);
		stored += t->nr_stored;
		same += t->nr_same;
		pthread_mutex_unlock(&t->lock);
	}
	for (int s = 0; s <= NR_STATS + 1; s++) {
		const char *name = s < NR_STATS ? stat_names[s]
				   : s == NR_STATS ? "stored_pages" : "same_filled_pages";
		uint64_t val = s < NR_STATS ? v[s] : s == NR_STATS ? stored : same;

		x = PyLong_FromUnsignedLongLong(val);
		if (x == NULL || PyDict_SetItemString(d, name, x) < 0) {
			Py_XDECREF(x);
			Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(x);
	}
	return d;
}

/* native_memory() -> dict: bytes of C memory the trees hold, by kind. */
static PyObject *core_native_memory(CoreObject *c, UNUSED PyObject *unused)
{
	size_t total[NR_MEM] = {0};
	PyObject *d = PyDict_New(), *x;

	if (d == NULL)
		return NULL;
	for (int k = 0; k < MAX_SWAPFILES; k++) {
		struct zswap_tree *t = c->trees[k];

		if (t == NULL)
			continue;
		pthread_mutex_lock(&t->lock);
		for (int m = 0; m < NR_MEM; m++)
			total[m] += t->mem[m];
		pthread_mutex_unlock(&t->lock);
	}
	pthread_mutex_lock(&c->memcgs.lock);
	total[MEM_MEMCG] += c->memcgs.cap * sizeof(struct zswap_memcg);
	pthread_mutex_unlock(&c->memcgs.lock);
	for (int m = 0; m < NR_MEM; m++) {
		x = PyLong_FromSize_t(total[m]);
		if (x == NULL || PyDict_SetItemString(d, mem_names[m], x) < 0) {
			Py_XDECREF(x);
			Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(x);
	}
	return d;
}

/* A memcg id argument: a registered one (ValueError otherwise), or 0 when
 * `allow_root`. -1 with an exception. */
static long get_memcg(CoreObject *c, PyObject *arg, int allow_root)
{
	long gid = PyLong_AsLong(arg);
	int online;

	if (gid == -1 && PyErr_Occurred())
		return -1;
	if (gid == 0 && allow_root)
		return 0;
	pthread_mutex_lock(&c->memcgs.lock);
	online = memcg_online_locked(&c->memcgs, gid);
	pthread_mutex_unlock(&c->memcgs.lock);
	if (!online) {
		PyErr_Format(PyExc_ValueError, "memcg %ld is not registered", gid);
		return -1;
	}
	return gid;
}

/* memcg_add(gid, parent): register memcg `gid` (1..65535) under `parent` (0, the
 * root, or a registered one): no limit, writeback enabled. */
static PyObject *core_memcg_add(CoreObject *c, PyObject *args)
{
	struct zswap_memcgs *m = &c->memcgs;
	long gid, parent;
	const char *err = NULL;

	if (!PyArg_ParseTuple(args, "ll:memcg_add", &gid, &parent))
		return NULL;
	if (gid <= 0 || gid >= NR_MEMCGS) {
		PyErr_Format(PyExc_ValueError, "memcg id %ld out of range 1..%d", gid,
			     NR_MEMCGS - 1);
		return NULL;
	}
	pthread_mutex_lock(&m->lock);
	if (memcg_online_locked(m, gid)) {
		err = "is already registered";
	} else if (parent != 0 && !memcg_online_locked(m, parent)) {
		err = "has an unknown parent";
	} else if ((uint32_t)gid >= m->cap) {
		uint32_t cap = m->cap ? 2 * m->cap : 64;
		struct zswap_memcg *tab;

		while (cap <= (uint32_t)gid)
			cap *= 2;
		if (cap > NR_MEMCGS)
			cap = NR_MEMCGS;
		tab = realloc(m->tab, cap * sizeof(*tab));
		if (tab == NULL) {
			err = "";
		} else {
			memset(tab + m->cap, 0, (cap - m->cap) * sizeof(*tab));
			m->tab = tab;
			m->cap = cap;
		}
	}
	if (err == NULL) {
		struct zswap_memcg *g = &m->tab[gid];

		memset(g, 0, sizeof(*g));
		g->max = -1;
		g->parent = (uint16_t)parent;
		g->writeback = 1;
		g->online = 1;
	}
	pthread_mutex_unlock(&m->lock);
	if (err != NULL && *err == '\0')
		return PyErr_NoMemory();
	if (err != NULL) {
		PyErr_Format(PyExc_ValueError, "memcg %ld %s (parent %ld)", gid, err, parent);
		return NULL;
	}
	Py_RETURN_NONE;
}

/* memcg_set(gid, max_bytes, writeback): memory.zswap.max (-1: "max") and the
 * group's own memory.zswap.writeback. */
static PyObject *core_memcg_set(CoreObject *c, PyObject *args)
{
	PyObject *gid_obj;
	long long max;
	int writeback;
	long gid;

	if (!PyArg_ParseTuple(args, "OLp:memcg_set", &gid_obj, &max, &writeback))
		return NULL;
	gid = get_memcg(c, gid_obj, 0);
	if (gid < 0)
		return NULL;
	if (max < -1) {
		PyErr_Format(PyExc_ValueError, "max_bytes must be -1 (no limit) or >= 0, got %lld",
			     max);
		return NULL;
	}
	pthread_mutex_lock(&c->memcgs.lock);
	c->memcgs.tab[gid].max = max;
	c->memcgs.tab[gid].writeback = (uint8_t)writeback;
	pthread_mutex_unlock(&c->memcgs.lock);
	Py_RETURN_NONE;
}

/* memcg_stat(gid) -> (zswap_bytes, zswapped, zswpin, zswpout, zswpwb, own_lru): the
 * first five with its descendants, own_lru its own entries on the LRUs. */
static PyObject *core_memcg_stat(CoreObject *c, PyObject *arg)
{
	long gid = get_memcg(c, arg, 0);
	struct zswap_memcg g;

	if (gid < 0)
		return NULL;
	pthread_mutex_lock(&c->memcgs.lock);
	g = c->memcgs.tab[gid];
	pthread_mutex_unlock(&c->memcgs.lock);
	return Py_BuildValue("(KKKKKK)", (unsigned long long)g.stat[MEMCG_ZSWAP_B],
			     (unsigned long long)g.stat[MEMCG_ZSWAPPED],
			     (unsigned long long)g.stat[MEMCG_ZSWPIN],
			     (unsigned long long)g.stat[MEMCG_ZSWPOUT],
			     (unsigned long long)g.stat[MEMCG_ZSWPWB], (unsigned long long)g.own_lru);
}

static PyObject *core_memcg_may_zswap(CoreObject *c, PyObject *arg)
{
	long gid = get_memcg(c, arg, 1);

	if (gid < 0)
		return NULL;
	return PyBool_FromLong(memcg_may_zswap(&c->memcgs, (uint16_t)gid));
}

static PyObject *core_memcg_writeback_enabled(CoreObject *c, PyObject *arg)
{
	long gid = get_memcg(c, arg, 1);

	if (gid < 0)
		return NULL;
	return PyBool_FromLong(memcg_writeback_enabled(&c->memcgs, (uint16_t)gid));
}

static PyMethodDef core_methods[] = {
	{"store", (PyCFunction)(void (*)(void))core_store, METH_FASTCALL | METH_KEYWORDS,
	 "store(type, offset, page, *, group=None) -> bool"},
	{"load", (PyCFunction)(void (*)(void))core_load, METH_FASTCALL | METH_KEYWORDS,
	 "load(type, offset, *, exclusive=None) -> bytes | None"},
	{"load_dirty", (PyCFunction)(void (*)(void))core_load_dirty,
	 METH_FASTCALL | METH_KEYWORDS, "load_dirty(type, offset, *, exclusive=None)"},
	{"invalidate_page", (PyCFunction)(void (*)(void))core_invalidate_page,
	 METH_FASTCALL | METH_KEYWORDS, "invalidate_page(type, offset)"},
	{"invalidate_area", (PyCFunction)core_invalidate_area, METH_O, "invalidate_area(type)"},
	{"init_type", (PyCFunction)core_init_type, METH_O, "init_type(type)"},
	{"types", (PyCFunction)core_types, METH_NOARGS, "types() -> the initialised types"},
	{"set_params", (PyCFunction)core_set_params, METH_VARARGS, NULL},
	{"reset_full", (PyCFunction)core_reset_full, METH_NOARGS, NULL},
	{"pool_add", (PyCFunction)core_pool_add, METH_VARARGS, NULL},
	{"pool_remove", (PyCFunction)core_pool_remove, METH_O, NULL},
	{"pool_set_codec", (PyCFunction)core_pool_set_codec, METH_VARARGS, NULL},
	{"entry", (PyCFunction)core_entry, METH_VARARGS, NULL},
	{"pool_tryget", (PyCFunction)core_pool_tryget, METH_O, NULL},
	{"pool_put", (PyCFunction)core_pool_put, METH_O, NULL},
	{"pool_refs", (PyCFunction)core_pool_refs, METH_O, NULL},
	{"pool_backend", (PyCFunction)core_pool_backend, METH_O, NULL},
	{"pool_codec_backend", (PyCFunction)core_pool_codec_backend, METH_O, NULL},
	{"pool_nogil", (PyCFunction)core_pool_nogil, METH_O, NULL},
	{"set_current", (PyCFunction)core_set_current, METH_O, NULL},
	{"stat_add", (PyCFunction)core_stat_add, METH_VARARGS, NULL},
	{"counters", (PyCFunction)core_counters, METH_NOARGS, NULL},
	{"native_memory", (PyCFunction)core_native_memory, METH_NOARGS, NULL},
	{"lru_pop", (PyCFunction)core_lru_pop, METH_VARARGS, NULL},
	{"wb_take", (PyCFunction)core_wb_take, METH_VARARGS, NULL},
	{"lru_rotate", (PyCFunction)core_lru_rotate, METH_VARARGS, NULL},
	{"disk_swapin", (PyCFunction)core_disk_swapin, METH_O, NULL},
	{"lru_state", (PyCFunction)core_lru_state, METH_NOARGS, NULL},
	{"wb_verify", (PyCFunction)core_wb_verify, METH_VARARGS, NULL},
	{"wb_end", (PyCFunction)core_wb_end, METH_VARARGS, NULL},
	{"memcg_add", (PyCFunction)core_memcg_add, METH_VARARGS, NULL},
	{"memcg_set", (PyCFunction)core_memcg_set, METH_VARARGS, NULL},
	{"memcg_stat", (PyCFunction)core_memcg_stat, METH_O, NULL},
	{"memcg_may_zswap", (PyCFunction)core_memcg_may_zswap, METH_O, NULL},
	{"memcg_writeback_enabled", (PyCFunction)core_memcg_writeback_enabled, METH_O, NULL},
	{NULL, NULL, 0, NULL},
};

PyTypeObject Core_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "zswap_core._core.Core",
	.tp_doc = "zswap's entry trees, LRU, counters and per-page paths, in C.",
	.tp_basicsize = sizeof(CoreObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_new = core_new,
	.tp_dealloc = (destructor)core_dealloc,
	.tp_traverse = (traverseproc)core_traverse,
	.tp_clear = (inquiry)core_clear,
	.tp_methods = core_methods,
};

/* ===========================================================================
 * the module
 * ========================================================================= */

static PyObject *mod_set_hooks_active(UNUSED PyObject *mod, PyObject *arg)
{
	int v = PyObject_IsTrue(arg);

	if (v < 0)
		return NULL;
	hooks_active = v;
	Py_RETURN_NONE;
}

static PyObject *mod_crc32(UNUSED PyObject *mod, PyObject *arg)
{
	Py_buffer b;
	uint32_t crc;

	if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
		return NULL;
	crc = zswap_crc32(b.buf, (size_t)b.len);
	PyBuffer_Release(&b);
	return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef module_methods[] = {
	{"set_hooks_active", mod_set_hooks_active, METH_O,
	 "Tell the native paths whether observers are registered."},
	{"crc32", mod_crc32, METH_O, "crc32(data) -> int, as zlib.crc32 (for tests)"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zswap_core._core",
	.m_doc = "The native backend of zswap_core: see zswap_core/_native/zswap.c.",
	.m_size = -1,
	.m_methods = module_methods,
};

static int intern(PyObject **slot, const char *s)
{
	*slot = PyUnicode_InternFromString(s);
	return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__core(void)
{
	PyObject *m, *names;

	zswap_crc32_init();
	if (pthread_key_create(&scratch_key, scratch_free) != 0)
		return PyErr_NoMemory();
	if (intern(&str_store, "store") || intern(&str_load, "load") ||
	    intern(&str_invalidate, "invalidate") || intern(&str_wake, "_native_wake") ||
	    intern(&str_pool_empty, "_native_pool_empty") || intern(&str_hook, "_native_hook") ||
	    intern(&str_bad_handle, "_native_bad_handle") ||
	    intern(&str_free_failed, "_native_free_failed") ||
	    intern(&str_unreadable, "_native_unreadable") ||
	    intern(&str_bad_page, "_bad_page") || intern(&str_as_page, "_native_as_page") ||
	    intern(&str_errno, "errno") || intern(&str_wait_pin, "_native_wait_pin") ||
	    intern(&str_group_id, "_native_group_id") ||
	    intern(&str_memcg_reclaim, "_native_memcg_reclaim"))
		return NULL;
	if (PyType_Ready(&PageCounter_Type) < 0 || PyType_Ready(&Core_Type) < 0 ||
	    PyType_Ready(&CodecOps_Type) < 0 || PyType_Ready(&Gate_Type) < 0)
		return NULL;
	m = PyModule_Create(&core_module);
	if (m == NULL)
		return NULL;
	names = PyTuple_New(NR_STATS);
	if (names == NULL)
		goto fail;
	for (int s = 0; s < NR_STATS; s++) {
		PyObject *n = PyUnicode_FromString(stat_names[s]);

		if (n == NULL) {
			Py_DECREF(names);
			goto fail;
		}
		PyTuple_SET_ITEM(names, s, n);
	}
	if (PyModule_AddObject(m, "STAT_NAMES", names) < 0) {
		Py_DECREF(names);
		goto fail;
	}
	if (PyModule_AddObjectRef(m, "PageCounter", (PyObject *)&PageCounter_Type) < 0 ||
	    PyModule_AddObjectRef(m, "Core", (PyObject *)&Core_Type) < 0 ||
	    PyModule_AddObjectRef(m, "CodecOps", (PyObject *)&CodecOps_Type) < 0 ||
	    PyModule_AddObjectRef(m, "Gate", (PyObject *)&Gate_Type) < 0 ||
	    PyModule_AddIntConstant(m, "CODEC_OPS_VERSION", ZSWAP_CODEC_OPS_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "ZPOOL_OPS_VERSION", ZSWAP_ZPOOL_OPS_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "PAGE_ACCT_VERSION", ZSWAP_PAGE_ACCT_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "ENTRY_BYTES", sizeof(struct zswap_entry)) < 0 ||
	    PyModule_AddIntConstant(m, "LRU_RECORD_BYTES", sizeof(struct lru_rec)) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
