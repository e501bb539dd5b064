/* SPDX-License-Identifier: MIT */
/*
 * bslab: huge-page slabs for the block cache's buffers (see bslab.h for
 * why and which). Each slab holds SLAB / size slots of one size, at most
 * 64 (sizes below SLAB / 64 are not asked for: bcache mallocs under 64
 * KiB), with a bit per slot. Slabs with a free slot hang on their size's
 * list; every slab is found from a buffer's address by its aligned base,
 * in a uthash table. Not for anything but bcache's sizes: a slab's tail
 * that no slot fits is not used, yet resident where THP is on and not
 * counted in the cache's budget: nothing for the 256 KiB zstd frames that
 * make up nearly every stream, 31% of the slab at worst (704 KiB slots).
 */
#include "cache/bslab.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <uthash.h>

#define SLAB ((size_t)2 << 20)
#define MAX_SLOTS 64

struct slab {
	uint8_t *base;		/* immutable: SLAB-aligned */
	size_t size;		/* immutable: bytes per slot */
	unsigned nslots;	/* immutable */
	unsigned nused;		/* protected by a->lock */
	uint64_t used;		/* protected by a->lock: a bit per slot */
	bool listed;		/* protected by a->lock: on its size's list */
	struct slab *next, *prev;	/* protected by a->lock: size list */
	UT_hash_handle hh;	/* protected by a->lock: by base */
};

/* The slabs of one size that have a free slot. */
struct size_list {
	size_t size;
	struct slab *head;
	UT_hash_handle hh;
};

struct bslab {
	pthread_mutex_t lock;	/* a leaf: nothing is called with it held
				 * but malloc/free of small structs */
	struct slab *slabs;	/* protected by lock: uthash by base */
	struct size_list *sizes;	/* protected by lock: uthash by size */
	uint64_t nslabs, large, slots_used;	/* protected by lock */
};

/*
 * Maps len bytes at a SLAB-aligned address, asking for huge pages and
 * faulting them in at once (one fault per huge page where THP is on,
 * instead of one per 4 KiB page at first touch). Returns NULL on failure.
 */
static uint8_t *map_aligned(size_t len)
{
	size_t span = len + SLAB;
	uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uint8_t *q = (uint8_t *)(((uintptr_t)p + SLAB - 1) & ~(uintptr_t)(SLAB - 1));
	if (q > p)
		munmap(p, (size_t)(q - p));
	if (p + span > q + len)
		munmap(q + len, (size_t)(p + span - (q + len)));
	/* Both are hints: without THP (or on an old kernel) the memory is
	 * ordinary and faulted on first touch. */
	(void)madvise(q, len, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
	(void)madvise(q, len, MADV_POPULATE_WRITE);
#endif
	return q;
}

struct bslab *bslab_new(void)
{
	struct bslab *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	if (pthread_mutex_init(&a->lock, NULL) != 0) {
		free(a);
		return NULL;
	}
	return a;
}

void bslab_free(struct bslab *a)
{
	struct slab *s, *ts;
	struct size_list *l, *tl;

	if (!a)
		return;
	HASH_ITER(hh, a->slabs, s, ts) {
		HASH_DEL(a->slabs, s);
		munmap(s->base, SLAB);
		free(s);
	}
	HASH_ITER(hh, a->sizes, l, tl) {
		HASH_DEL(a->sizes, l);
		free(l);
	}
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* With a->lock held. */
static void list_add(struct size_list *l, struct slab *s)
{
	s->prev = NULL;
	s->next = l->head;
	if (l->head)
		l->head->prev = s;
	l->head = s;
	s->listed = true;
}

/* With a->lock held. */
static void list_del(struct size_list *l, struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->listed = false;
}

/* With a->lock held: takes the lowest free slot of s. */
static uint8_t *slot_take(struct bslab *a, struct size_list *l, struct slab *s)
{
	int i = __builtin_ctzll(~s->used);

	s->used |= (uint64_t)1 << i;
	s->nused++;
	a->slots_used++;
	if (s->nused == s->nslots)
		list_del(l, s);
	return s->base + (size_t)i * s->size;
}

/* A buffer of its own: pages faulted in one go (about 2/3 of the cost
 * of taking the faults one at a time). */
static uint8_t *map_own(size_t cap)
{
	void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static uint8_t *get_large(struct bslab *a, size_t cap)
{
	/* Under a huge page, none fits. */
	uint8_t *p = cap >= SLAB ? map_aligned(cap) : map_own(cap);

	if (p) {
		pthread_mutex_lock(&a->lock);
		a->large++;
		pthread_mutex_unlock(&a->lock);
	}
	return p;
}

uint8_t *bslab_get(struct bslab *a, size_t cap, bool bulk)
{
	struct size_list *l;
	struct slab *s;
	uint8_t *p;

	if (cap == 0)
		return NULL;
	if (cap > SLAB / 2)
		return get_large(a, cap);
	if (SLAB / cap > MAX_SLOTS)
		return NULL;
	if (!bulk)
		return map_own(cap);	/* bslab_put tells it from a slot */

	pthread_mutex_lock(&a->lock);
	HASH_FIND(hh, a->sizes, &cap, sizeof(cap), l);
	if (l && l->head) {
		p = slot_take(a, l, l->head);
		pthread_mutex_unlock(&a->lock);
		return p;
	}
	pthread_mutex_unlock(&a->lock);

	/* A new slab, mapped without the lock (another thread may map one
	 * for the same size meanwhile; both get used). */
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base = map_aligned(SLAB);
	if (!s->base) {
		free(s);
		return NULL;
	}
	s->size = cap;
	s->nslots = (unsigned)(SLAB / cap);

	pthread_mutex_lock(&a->lock);
	HASH_FIND(hh, a->sizes, &cap, sizeof(cap), l);
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&a->lock);
			munmap(s->base, SLAB);
			free(s);
			return NULL;
		}
		l->size = cap;
		HASH_ADD(hh, a->sizes, size, sizeof(l->size), l);
	}
	HASH_ADD(hh, a->slabs, base, sizeof(s->base), s);
	a->nslabs++;
	list_add(l, s);
	p = slot_take(a, l, s);
	pthread_mutex_unlock(&a->lock);
	return p;
}

/*
 * With a->lock held: the slab and slot of a buffer handed out as (p, cap),
 * or NULL if p is not one (never handed out, the wrong size, or given back
 * already).
 */
static struct slab *slab_of(struct bslab *a, uint8_t *p)
{
	uint8_t *base = (uint8_t *)((uintptr_t)p & ~(uintptr_t)(SLAB - 1));
	struct slab *s;

	HASH_FIND(hh, a->slabs, &base, sizeof(base), s);
	return s;
}

static struct slab *slot_find(struct bslab *a, uint8_t *p, size_t cap,
			      unsigned *slot)
{
	struct slab *s = slab_of(a, p);
	uint8_t *base = s ? s->base : NULL;

	if (!s || s->size != cap)
		return NULL;
	size_t i = (size_t)(p - base) / cap;
	if (i >= s->nslots || p != base + i * cap ||
	    !(s->used & ((uint64_t)1 << i)))
		return NULL;
	*slot = (unsigned)i;
	return s;
}

void bslab_put(struct bslab *a, uint8_t *p, size_t cap)
{
	struct size_list *l;
	struct slab *s;
	unsigned i;
	bool unmap = false;

	if (!p)
		return;
	if (cap > SLAB / 2) {
		munmap(p, cap);
		pthread_mutex_lock(&a->lock);
		a->large--;
		pthread_mutex_unlock(&a->lock);
		return;
	}
	/* Outside every slab: a buffer of its own. Inside one but not a
	 * slot handed out: a caller bug; leak rather than zero someone
	 * else's bytes. */
	pthread_mutex_lock(&a->lock);
	bool in_slab = slab_of(a, p) != NULL;
	s = slot_find(a, p, cap, &i);
	pthread_mutex_unlock(&a->lock);
	if (!in_slab)
		munmap(p, cap);
	if (!s)
		return;
	/* Returned to the kernel while the slot is still marked used: once
	 * it is free, another thread may take it and write into it. */
	(void)madvise(p, cap, MADV_DONTNEED);

	pthread_mutex_lock(&a->lock);
	if (!(s = slot_find(a, p, cap, &i))) {	/* put twice, at once */
		pthread_mutex_unlock(&a->lock);
		return;
	}
	HASH_FIND(hh, a->sizes, &cap, sizeof(cap), l);
	s->used &= ~((uint64_t)1 << i);
	s->nused--;
	a->slots_used--;
	if (s->nused == 0) {
		if (s->listed)
			list_del(l, s);
		HASH_DEL(a->slabs, s);
		a->nslabs--;
		unmap = true;
	} else if (!s->listed) {
		list_add(l, s);
	}
	pthread_mutex_unlock(&a->lock);
	if (unmap) {
		munmap(s->base, SLAB);
		free(s);
	}
}

void bslab_get_stats(struct bslab *a, struct bslab_stats *st)
{
	pthread_mutex_lock(&a->lock);
	st->slabs = a->nslabs;
	st->slab_bytes = a->nslabs * SLAB;
	st->large = a->large;
	st->slots_used = a->slots_used;
	pthread_mutex_unlock(&a->lock);
}
