/* SPDX-License-Identifier: MIT */
/*
 * bcache: bounded cache of decoded blocks keyed by (k1, k2).
 *
 * Invariant: every block is in exactly one of three states. FILLING: in the
 * index, pinned by the one thread that got BCACHE_MISS, which fills it
 * without the lock; other getters of the key sleep on c->filled. READY:
 * published, read-only, evictable when its pin count is 0. DOOMED: removed
 * from the index by bcache_drop() while pinned; its holders' pointers stay
 * valid and the last put (or abandon) frees it.
 *
 * Eviction is CLOCK (second chance) over the ring of indexed blocks: a hit
 * sets the block's reference bit, the hand clears it once, and the next
 * time round an unreferenced, unpinned block is evicted. New blocks go in
 * just behind the hand with the bit clear, so a long sequential read cannot
 * push out blocks that are being hit. The budget counts block capacity
 * bytes (of the size class, below), FILLING and DOOMED blocks included.
 * If every block is pinned, a miss still gets its block and bytes_used
 * overshoots the budget by at most the pinned blocks (at most one or two
 * per reader thread); rather that than a deadlock. The next miss or put
 * evicts back under the budget.
 *
 * Memory: block buffers of 64 KiB and more come from cache/bslab.c:
 * huge-page slabs, and every buffer given back there returns to the
 * kernel at once (glibc's malloc would keep them: it raises its mmap
 * threshold to the size of the largest freed mmap()ed chunk, up to 32
 * MiB, after which 256 KiB blocks come from the heap and freed ones stay
 * in RSS for good, so hours of reading would let RSS drift far above the
 * budget). Huge pages for blocks decoded ahead of a stream, because a
 * fresh mount's cache fills new memory and 4 KiB pages cost a fault each;
 * a random reader's miss gets pages of its own, so that it never waits
 * for a whole new huge page (bslab.h has the figures). To keep the
 * common case free of syscalls and page faults, a miss over budget takes
 * over the buffer of the block it evicts when both are in the same size class (8 classes per power of
 * two, page-rounded: at most 12.5% slack; a 256 KiB zstd frame is exactly
 * one class), so a steady stream of same-sized misses never maps or
 * unmaps anything. Buffers below 64 KiB come from malloc (below glibc's
 * threshold, reused from its free lists). Buffers are given back after
 * the lock is dropped.
 *
 * Read once, ahead. A block decoded ahead of a sequential reader
 * (bcache_get_ahead) and then read once is what a cold stream leaves
 * behind: nobody is likely to want it again soon (a second read of the
 * same file is served by the kernel's page cache), yet without a rule it
 * would stay until the budget is full, and on a fresh mount that means
 * the first budget's worth of a stream goes into new memory that the
 * kernel must zero and map: measured on a 540 MB state restore, a
 * 16 MiB cache read it 1.4x as fast as the default 256 MiB one (1859-
 * 2137 against 1013-1795 MB/s, fresh mounts, 2026-12-05). So such
 * blocks are kept in fill order on a list of their own, and once that
 * list holds ONCE_SHARE of the budget, a miss takes over the buffer of
 * its oldest block that has been read (unpinned, same size class)
 * instead of growing the cache. "Read once" counts the reads near the
 * block's fill as one, as 2Q does with correlated references: a
 * stream's 1 MiB request pins a frame once per extent it resolves to,
 * dozens of gets. A block read again after another ONCE_SHARE of the
 * budget has been filled (a second reader, later) leaves the list and
 * is an ordinary block from then on. Blocks read without a readahead
 * (random readers) never enter it, so their caching is as before.
 * Blocks decoded ahead but not read yet are never taken (a stream's
 * readahead window is far below the share).
 *
 * Concurrency: one mutex, c->lock, guards the index, the ring, the
 * counters and each block's state/pins; one condition variable, c->filled,
 * is broadcast when a FILLING block is published, abandoned or dropped
 * (waits are rare: only concurrent misses of one key), and woken getters
 * look the key up again. The lock is never held while a caller fills a
 * block, nor around getting or giving back a buffer (bslab's own lock,
 * a leaf, is only taken without c->lock), so there is no lock order to
 * get wrong; callers may hold their own locks across our calls.
 *
 * Not here: knowing what a block means (codec, fs), readahead, lock
 * striping. bench_bcache measured a hit (get+put) at 30-100 ns alone and
 * 100-270 ns per op with two threads hitting the same keys, against
 * 6-7 us to malloc+memcpy a 256 KiB block: under 5% of copying even half
 * a block out to a reader, so one lock stays until a profile says
 * otherwise. An adaptive mutex measured no better.
 */
#include "cache/bcache.h"
#include "cache/bslab.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* uthash must report a failed table allocation, not exit the daemon. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

/* The once list may hold this share of the budget before its read
 * blocks are recycled (see the file top): 1/8 is 32 MiB of the default
 * budget, four times the 8 MiB a stream's readahead runs ahead. */
#define ONCE_SHARE 8
/* How far from its oldest block the once list is searched for one to
 * take over (pinned, unread or of another size class are skipped). */
#define ONCE_SCAN 16

/* Buffers at least this large come from bslab (see the file top). */
#define MMAP_MIN ((size_t)64 << 10)
/* Larger requests fail with -ENOMEM before any size arithmetic. */
#define CAP_MAX (SIZE_MAX >> 2)

enum { FILLING, READY };

struct key {
	uint64_t k1, k2;
};

struct ent {
	struct key key;		/* immutable */
	size_t cap;		/* size class charged to the budget; immutable */
	/*
	 * Written once by the filler before publish, without the lock (the
	 * block is FILLING and pinned, so nobody else reads it); read by
	 * others only after seeing READY under c->lock.
	 */
	uint8_t *data;
	size_t len;		/* protected by c->lock */
	unsigned pins;		/* protected by c->lock */
	unsigned char state;	/* protected by c->lock: FILLING or READY */
	bool ref;		/* protected by c->lock: CLOCK reference bit */
	bool hashed;		/* protected by c->lock: in index and ring */
	/* Protected by c->lock: filled by bcache_get_ahead and not read
	 * again since its first reads (see the file top), so on the once
	 * list; read: a reader has got it. */
	bool once, read;
	uint64_t born;		/* protected by c->lock: c->clock at its miss */
	struct ent *next, *prev;	/* protected by c->lock: CLOCK ring */
	struct ent *onext, *oprev;	/* protected by c->lock: once list */
	UT_hash_handle hh;	/* protected by c->lock */
	struct ent *free_next;	/* owned by the thread that unlinked it */
};

struct bcache {
	/*
	 * Lock order: c->lock is the only lock and is a leaf; nothing is
	 * called with it held except malloc/free of small structs.
	 */
	pthread_mutex_t lock;
	pthread_cond_t filled;	/* with c->lock: a FILLING block changed */
	size_t budget;		/* protected by lock (bcache_set_budget) */
	size_t page;		/* immutable */
	struct bslab *slab;	/* immutable; buffers of MMAP_MIN and up */
	struct ent *index;	/* protected by c->lock (uthash head) */
	struct ent *hand;	/* protected by c->lock: CLOCK hand */
	/* Protected by c->lock: the once list (see file top), oldest
	 * first, and the capacity bytes on it. */
	struct ent *ohead, *otail;
	size_t once_bytes;
	uint64_t clock;		/* protected by c->lock: bytes of misses, ever */
	size_t bytes_used;	/* protected by c->lock */
	unsigned nwait;		/* protected by c->lock: sleepers on filled */
	uint64_t hits, misses, evictions, waits;	/* protected by c->lock */
	uint64_t recycled;	/* protected by c->lock */
};

/* --- buffers --- */

/* 8 classes per power of two above MMAP_MIN, page-rounded. */
static size_t class_size(const struct bcache *c, size_t cap)
{
	if (cap < MMAP_MIN)
		return cap ? cap : 1;
	int lg = 63 - __builtin_clzll((unsigned long long)cap);
	size_t step = (size_t)1 << (lg - 3);
	if (step < c->page)
		step = c->page;
	return (cap + step - 1) & ~(step - 1);
}

/* ahead: a stream's block, whose buffer may come from a slab. */
static uint8_t *buf_alloc(struct bcache *c, size_t cap, bool ahead)
{
	return cap < MMAP_MIN ? malloc(cap) : bslab_get(c->slab, cap, ahead);
}

static void buf_free(struct bcache *c, uint8_t *p, size_t cap)
{
	if (cap < MMAP_MIN)
		free(p);
	else
		bslab_put(c->slab, p, cap);
}

/* Frees a list of unlinked, unpinned blocks; call without c->lock. */
static void free_list(struct bcache *c, struct ent *fl)
{
	while (fl) {
		struct ent *n = fl->free_next;
		buf_free(c, fl->data, fl->cap);
		free(fl);
		fl = n;
	}
}

/* --- index and CLOCK ring (all with c->lock held) --- */

/* Inserts e just behind the hand: the last block the hand will reach. */
static void ring_insert(struct bcache *c, struct ent *e)
{
	if (!c->hand) {
		e->next = e->prev = e;
		c->hand = e;
		return;
	}
	e->next = c->hand;
	e->prev = c->hand->prev;
	c->hand->prev->next = e;
	c->hand->prev = e;
}

static void once_remove(struct bcache *c, struct ent *e)
{
	if (!e->once)
		return;
	*(e->oprev ? &e->oprev->onext : &c->ohead) = e->onext;
	*(e->onext ? &e->onext->oprev : &c->otail) = e->oprev;
	e->onext = e->oprev = NULL;
	e->once = false;
	c->once_bytes -= e->cap;
}

static void once_append(struct bcache *c, struct ent *e)
{
	e->once = true;
	e->onext = NULL;
	e->oprev = c->otail;
	*(c->otail ? &c->otail->onext : &c->ohead) = e;
	c->otail = e;
	c->once_bytes += e->cap;
}

static void ring_remove(struct bcache *c, struct ent *e)
{
	if (e->next == e) {
		c->hand = NULL;
	} else {
		e->prev->next = e->next;
		e->next->prev = e->prev;
		if (c->hand == e)
			c->hand = e->next;
	}
	e->next = e->prev = NULL;
}

/* Takes e out of the index and the ring; its memory is still counted. */
static void unlink_ent(struct bcache *c, struct ent *e)
{
	assert(e->hashed);
	HASH_DEL(c->index, e);
	ring_remove(c, e);
	once_remove(c, e);
	e->hashed = false;
}

/*
 * If the once list holds its share of the budget (or the budget is
 * full), unlinks one of its oldest read blocks of class need and returns
 * its buffer (its bytes leave bytes_used); NULL if there is none near
 * the head.
 */
static uint8_t *take_once(struct bcache *c, size_t need)
{
	if (c->once_bytes < c->budget / ONCE_SHARE &&
	    c->bytes_used + need <= c->budget)
		return NULL;
	struct ent *e = c->ohead;
	for (int i = 0; e && i < ONCE_SCAN; i++, e = e->onext) {
		if (e->pins || !e->read || e->cap != need)
			continue;
		uint8_t *data = e->data;
		unlink_ent(c, e);
		c->bytes_used -= e->cap;
		c->recycled++;
		free(e);
		return data;
	}
	return NULL;
}

/*
 * Runs the CLOCK hand to the next unpinned block whose reference bit is
 * clear, unlinks it and returns it; NULL if every block is pinned. Two
 * turns suffice: the first clears every bit.
 */
static struct ent *evict_one(struct bcache *c)
{
	size_t n = 2 * (size_t)HASH_COUNT(c->index);

	for (size_t i = 0; i < n && c->hand; i++) {
		struct ent *e = c->hand;

		c->hand = e->next;
		if (e->pins)
			continue;
		if (e->ref) {
			e->ref = false;
			continue;
		}
		unlink_ent(c, e);
		c->evictions++;
		return e;
	}
	return NULL;
}

/*
 * Evicts until need more bytes fit in the budget, or nothing more can go.
 * If a victim has exactly the class need, stops and returns its buffer
 * (its bytes leave bytes_used; the caller charges need again). Other
 * victims are chained on *fl for free_list() after the unlock.
 */
static uint8_t *make_room(struct bcache *c, size_t need, struct ent **fl)
{
	while (c->bytes_used + need > c->budget) {
		struct ent *v = evict_one(c);

		if (!v)
			break;	/* all pinned: overshoot, see file top */
		c->bytes_used -= v->cap;
		if (v->cap == need) {
			uint8_t *data = v->data;

			free(v);
			return data;
		}
		v->free_next = *fl;
		*fl = v;
	}
	return NULL;
}

/*
 * Invariant checker for assert() (sqlite style), with c->lock held: the
 * ring holds exactly the indexed blocks, FILLING blocks are pinned once,
 * and the indexed blocks' bytes are within bytes_used (the rest belongs
 * to dropped blocks still pinned). O(blocks).
 */
#ifndef NDEBUG
static bool sanity_locked(const struct bcache *c)
{
	size_t n = 0, bytes = 0;
	const struct ent *e = c->hand;

	if (e) {
		do {
			if (!e->hashed || e->next->prev != e)
				return false;
			if (e->state == FILLING && e->pins != 1)
				return false;
			bytes += e->cap;
			n++;
			e = e->next;
		} while (e != c->hand && n <= HASH_COUNT(c->index));
	}
	size_t ob = 0;
	for (const struct ent *o = c->ohead; o; o = o->onext) {
		if (!o->once || !o->hashed ||
		    (o->onext ? o->onext->oprev : c->otail) != o)
			return false;
		ob += o->cap;
	}
	return n == HASH_COUNT(c->index) && bytes <= c->bytes_used &&
	       ob == c->once_bytes;
}
#endif

/* --- life cycle --- */

int bcache_new(struct bcache **out, const struct bcache_opts *o)
{
	struct bcache *c = calloc(1, sizeof *c);
	int rc;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	rc = -pthread_mutex_init(&c->lock, NULL);
	if (rc)
		goto fail_free;
	rc = -pthread_cond_init(&c->filled, NULL);
	if (rc)
		goto fail_mutex;
	c->slab = bslab_new();
	if (!c->slab) {
		rc = -ENOMEM;
		pthread_cond_destroy(&c->filled);
		goto fail_mutex;
	}
	c->budget = o && o->budget ? o->budget : BCACHE_DEFAULT_BUDGET;
	long pg = sysconf(_SC_PAGESIZE);
	c->page = pg > 0 ? (size_t)pg : 4096;
	*out = c;
	return 0;

fail_mutex:
	pthread_mutex_destroy(&c->lock);
fail_free:
	free(c);
	return rc;
}

void bcache_free(struct bcache *c)
{
	struct ent *e, *tmp;

	if (!c)
		return;
	HASH_ITER(hh, c->index, e, tmp) {
		assert(e->pins == 0);
		HASH_DEL(c->index, e);
		c->bytes_used -= e->cap;
		buf_free(c, e->data, e->cap);
		free(e);
	}
	/* Anything left is a dropped block that was never put. */
	assert(c->bytes_used == 0);
	bslab_free(c->slab);
	pthread_cond_destroy(&c->filled);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* --- operations --- */

static int get(struct bcache *c, uint64_t k1, uint64_t k2, size_t cap,
	       struct bcache_blk *b, bool ahead)
{
	struct key k = { k1, k2 };
	struct ent *e, *fl = NULL;
	bool waited = false;
	uint8_t *data;

	if (cap > CAP_MAX)
		return -ENOMEM;
	size_t cls = class_size(c, cap);

	pthread_mutex_lock(&c->lock);
	for (;;) {
		HASH_FIND(hh, c->index, &k, sizeof k, e);
		if (!e)
			break;
		if (e->state == READY) {
			e->pins++;
			c->hits++;
			if (!ahead && !e->once) {
				e->ref = true;
			} else if (!ahead) {
				/* Not referenced yet while read once: the
				 * CLOCK takes it first, too. */
				e->read = true;
				if (c->clock - e->born >
				    c->budget / ONCE_SHARE) {
					e->ref = true;
					once_remove(c, e);
				}
			}
			b->data = e->data;
			b->len = e->len;
			b->priv_ = e;
			pthread_mutex_unlock(&c->lock);
			return BCACHE_HIT;
		}
		/* Being filled: sleep, then look again (it may be gone). */
		if (!waited)
			c->waits++;
		waited = true;
		c->nwait++;
		pthread_cond_wait(&c->filled, &c->lock);
		c->nwait--;
	}

	/* Miss: index a FILLING block so that other getters wait for us. */
	c->misses++;
	e = calloc(1, sizeof *e);
	if (!e)
		goto fail_unlock;
	e->key = k;
	e->cap = cls;
	e->pins = 1;
	e->state = FILLING;
	e->born = c->clock;
	c->clock += cls;
	HASH_ADD(hh, c->index, key, sizeof e->key, e);
	if (!e->hh.tbl) {	/* uthash could not grow its table */
		free(e);
		goto fail_unlock;
	}
	e->hashed = true;
	data = take_once(c, cls);
	if (!data)
		data = make_room(c, cls, &fl);
	c->bytes_used += cls;
	ring_insert(c, e);
	if (ahead)
		once_append(c, e);
	e->data = data;
	pthread_mutex_unlock(&c->lock);

	free_list(c, fl);
	if (!data) {
		data = buf_alloc(c, cls, ahead);
		if (!data) {
			pthread_mutex_lock(&c->lock);
			if (e->hashed)
				unlink_ent(c, e);
			c->bytes_used -= cls;
			if (c->nwait)
				pthread_cond_broadcast(&c->filled);
			pthread_mutex_unlock(&c->lock);
			free(e);
			return -ENOMEM;
		}
		e->data = data;
	}
	b->data = data;
	b->len = 0;
	b->priv_ = e;
	return BCACHE_MISS;

fail_unlock:
	pthread_mutex_unlock(&c->lock);
	return -ENOMEM;
}

int bcache_get(struct bcache *c, uint64_t k1, uint64_t k2, size_t cap,
	       struct bcache_blk *b)
{
	return get(c, k1, k2, cap, b, false);
}

int bcache_get_ahead(struct bcache *c, uint64_t k1, uint64_t k2, size_t cap,
		     struct bcache_blk *b)
{
	return get(c, k1, k2, cap, b, true);
}

void bcache_publish(struct bcache *c, struct bcache_blk *b, size_t len)
{
	struct ent *e = b->priv_;

	assert(len <= e->cap);
	pthread_mutex_lock(&c->lock);
	assert(e->state == FILLING && e->pins == 1);
	e->len = len;
	e->state = READY;
	if (c->nwait)
		pthread_cond_broadcast(&c->filled);
	pthread_mutex_unlock(&c->lock);
	b->len = len;
}

void bcache_abandon(struct bcache *c, struct bcache_blk *b)
{
	struct ent *e = b->priv_;

	pthread_mutex_lock(&c->lock);
	assert(e->state == FILLING && e->pins == 1);
	e->pins = 0;
	if (e->hashed)
		unlink_ent(c, e);
	c->bytes_used -= e->cap;
	if (c->nwait)
		pthread_cond_broadcast(&c->filled);
	pthread_mutex_unlock(&c->lock);
	e->free_next = NULL;
	free_list(c, e);
	b->data = NULL;
	b->len = 0;
	b->priv_ = NULL;
}

void bcache_put(struct bcache *c, struct bcache_blk *b)
{
	struct ent *e = b->priv_, *fl = NULL;

	pthread_mutex_lock(&c->lock);
	assert(e->state == READY && e->pins > 0);
	if (--e->pins == 0 && !e->hashed) {	/* dropped while pinned */
		c->bytes_used -= e->cap;
		e->free_next = NULL;
		fl = e;
	}
	/* Undo an overshoot from a time when everything was pinned. */
	if (c->bytes_used > c->budget)
		make_room(c, 0, &fl);
	pthread_mutex_unlock(&c->lock);
	free_list(c, fl);
	b->data = NULL;
	b->priv_ = NULL;
}

void bcache_drop(struct bcache *c, uint64_t k1)
{
	struct ent *e, *tmp, *fl = NULL;
	bool wake = false;

	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->index, e, tmp) {
		if (e->key.k1 != k1)
			continue;
		unlink_ent(c, e);
		if (!e->pins) {
			c->bytes_used -= e->cap;
			e->free_next = fl;
			fl = e;
		} else if (e->state == FILLING) {
			wake = true;	/* its waiters must look again */
		}
	}
	if (wake && c->nwait)
		pthread_cond_broadcast(&c->filled);
	assert(sanity_locked(c));
	pthread_mutex_unlock(&c->lock);
	free_list(c, fl);
}

void bcache_set_budget(struct bcache *c, size_t budget)
{
	struct ent *fl = NULL;

	pthread_mutex_lock(&c->lock);
	c->budget = budget;
	make_room(c, 0, &fl);
	pthread_mutex_unlock(&c->lock);
	free_list(c, fl);
}

void bcache_stats(struct bcache *c, struct bcache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	st->hits = c->hits;
	st->misses = c->misses;
	st->evictions = c->evictions;
	st->waits = c->waits;
	st->recycled = c->recycled;
	st->bytes_used = c->bytes_used;
	st->budget = c->budget;
	st->blocks = HASH_COUNT(c->index);
	assert(sanity_locked(c));
	pthread_mutex_unlock(&c->lock);
}
