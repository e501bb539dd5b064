/* SPDX-License-Identifier: MIT */
/*
 * bcache_tutil.h: what the block cache tests share (test_bcache,
 * test_bcache_mt): block contents as a function of the key (fill, check),
 * the get-fill-publish and touch shorthands, a cache of a given budget
 * and its stats. Header-only, static inline, test code only; no checks
 * of its own, so threads may call every function here.
 */
#ifndef SNAPFS_BCACHE_TUTIL_H
#define SNAPFS_BCACHE_TUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/bcache.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

/* --- helpers --- */

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline uint64_t key_seed(uint64_t k1, uint64_t k2)
{
	return mix(k1 * 0x9e3779b97f4a7c15ULL + k2 + 1);
}

static inline void fill(uint8_t *p, size_t len, uint64_t k1, uint64_t k2)
{
	uint64_t s = key_seed(k1, k2);
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w = s ^ (i * 0x9e3779b97f4a7c15ULL);
		memcpy(p + i, &w, 8);
	}
	for (; i < len; i++)
		p[i] = (uint8_t)(s >> (8 * (i & 7)));
}

static inline bool check(const uint8_t *p, size_t len, uint64_t k1, uint64_t k2)
{
	uint64_t s = key_seed(k1, k2);
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w != (s ^ (i * 0x9e3779b97f4a7c15ULL)))
			return false;
	}
	for (; i < len; i++)
		if (p[i] != (uint8_t)(s >> (8 * (i & 7))))
			return false;
	return true;
}

/* Gets (k1, k2); on a miss fills len bytes and publishes. Returns the rc. */
static inline int get_filled(struct bcache *c, uint64_t k1, uint64_t k2,
			     size_t len, struct bcache_blk *b)
{
	int rc = bcache_get(c, k1, k2, len, b);

	if (rc == BCACHE_MISS) {
		fill(b->data, len, k1, k2);
		bcache_publish(c, b, len);
	}
	return rc;
}

/* Gets, fills if needed and puts; returns the rc of the get. */
static inline int touch(struct bcache *c, uint64_t k1, uint64_t k2, size_t len)
{
	struct bcache_blk b;
	int rc = get_filled(c, k1, k2, len, &b);

	if (rc >= 0)
		bcache_put(c, &b);
	return rc;
}

static inline struct bcache *mk(size_t budget)
{
	struct bcache *c = NULL;
	struct bcache_opts o = { .budget = budget };

	if (bcache_new(&c, &o) != 0)
		abort();
	return c;
}

static inline struct bcache_stats stats(struct bcache *c)
{
	struct bcache_stats st;

	bcache_stats(c, &st);
	return st;
}

#endif
