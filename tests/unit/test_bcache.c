/* SPDX-License-Identifier: MIT */
/*
 * test_bcache: the block cache protocol (get/publish/abandon/put/drop) on
 * one thread, CLOCK eviction against the byte budget, budget changes,
 * pinning, stats, allocation failure, and the once list: a stream read
 * once behind its readahead is recycled within a share of the budget,
 * while blocks read again or decoded ahead and not read yet stay.
 *
 * Block contents are a function of the key, so a block's bytes can be
 * checked wherever it is got.
 *
 * Not here: threads and memory use (test_bcache_mt). Shared helpers are
 * in bcache_tutil.h.
 */
#include "cache/bcache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/t.h"
#include "tests/unit/bcache_tutil.h"

/* cache/bcache.c's ONCE_SCAN: how far the once list is searched. */
#define ONCE_SCAN_T 16

/* --- single-threaded protocol --- */

static void test_new_defaults(void)
{
	struct bcache *c = NULL;
	struct bcache_opts o = { 0 };

	T_EQ(bcache_new(&c, &o), 0);
	T_EQ(stats(c).budget, BCACHE_DEFAULT_BUDGET);
	T_EQ(stats(c).blocks, 0);
	bcache_free(c);
	bcache_free(NULL);
}

static void test_miss_publish_hit(void)
{
	struct bcache *c = mk(4 * MIB);
	struct bcache_blk b, b2;

	T_EQ(bcache_get(c, 1, 2, 1000, &b), BCACHE_MISS);
	T_CHECK(b.data != NULL);
	fill(b.data, 700, 1, 2);
	bcache_publish(c, &b, 700);	/* len may be below cap */
	T_EQ(b.len, 700);
	bcache_put(c, &b);

	T_EQ(bcache_get(c, 1, 2, 99999, &b), BCACHE_HIT);	/* cap ignored */
	T_EQ(b.len, 700);
	T_CHECK(check(b.data, 700, 1, 2));
	/* A second pin of the same block while the first is held. */
	T_EQ(bcache_get(c, 1, 2, 1000, &b2), BCACHE_HIT);
	T_CHECK(b2.data == b.data);
	bcache_put(c, &b2);
	bcache_put(c, &b);

	/* Keys differing in k1 only or k2 only are different blocks. */
	T_EQ(touch(c, 2, 1, 100), BCACHE_MISS);
	T_EQ(touch(c, 1, 3, 100), BCACHE_MISS);
	T_EQ(touch(c, 2, 1, 100), BCACHE_HIT);
	T_EQ(get_filled(c, 2, 1, 100, &b), BCACHE_HIT);
	T_CHECK(check(b.data, 100, 2, 1));
	bcache_put(c, &b);

	/* Zero-length blocks are allowed (an empty last frame). */
	T_EQ(touch(c, 9, 9, 0), BCACHE_MISS);
	T_EQ(bcache_get(c, 9, 9, 0, &b), BCACHE_HIT);
	T_EQ(b.len, 0);
	bcache_put(c, &b);
	bcache_free(c);
}

static void test_abandon_refill(void)
{
	struct bcache *c = mk(4 * MIB);
	struct bcache_blk b;

	T_EQ(bcache_get(c, 5, 5, 256 * KIB, &b), BCACHE_MISS);
	memset(b.data, 0xee, 256 * KIB);	/* a half-done, wrong fill */
	bcache_abandon(c, &b);
	T_EQ(stats(c).blocks, 0);
	T_EQ(stats(c).bytes_used, 0);

	T_EQ(bcache_get(c, 5, 5, 256 * KIB, &b), BCACHE_MISS);
	fill(b.data, 256 * KIB, 5, 5);
	bcache_publish(c, &b, 256 * KIB);
	bcache_put(c, &b);
	T_EQ(bcache_get(c, 5, 5, 256 * KIB, &b), BCACHE_HIT);
	T_CHECK(check(b.data, 256 * KIB, 5, 5));
	bcache_put(c, &b);
	T_EQ(stats(c).misses, 2);
	T_EQ(stats(c).hits, 1);
	T_EQ(stats(c).bytes_used, 256 * KIB);
	bcache_free(c);
}

static void test_budget_evictions(void)
{
	struct bcache *c = mk(1 * MIB);	/* room for 16 blocks of 64 KiB */
	struct bcache_stats st;

	for (uint64_t i = 0; i < 100; i++) {
		T_EQ(touch(c, 1, i, 64 * KIB), BCACHE_MISS);
		T_CHECK(stats(c).bytes_used <= 1 * MIB);
	}
	st = stats(c);
	T_EQ(st.blocks, 16);
	T_EQ(st.bytes_used, 1 * MIB);
	T_EQ(st.evictions, 100 - 16);
	T_EQ(st.misses, 100);
	/* The newest 16 are the ones left (no hits: FIFO order). */
	for (uint64_t i = 84; i < 100; i++)
		T_EQ(touch(c, 1, i, 64 * KIB), BCACHE_HIT);
	T_EQ(stats(c).evictions, 84);

	/* Mixed sizes: a big block evicts several small ones. */
	T_EQ(touch(c, 2, 0, 512 * KIB), BCACHE_MISS);
	st = stats(c);
	T_CHECK(st.bytes_used <= 1 * MIB);
	T_EQ(st.blocks, 8 + 1);
	bcache_free(c);
}

/* A lowered budget frees unpinned blocks at once (pinned ones stay),
 * and a raised one lets the cache grow again. */
static void test_set_budget(void)
{
	struct bcache *c = mk(1 * MIB);
	struct bcache_blk pinned;

	for (uint64_t i = 0; i < 16; i++)
		T_EQ(touch(c, 1, i, 64 * KIB), BCACHE_MISS);
	T_EQ(bcache_get(c, 1, 15, 64 * KIB, &pinned), BCACHE_HIT);
	bcache_set_budget(c, 256 * KIB);
	T_EQ(stats(c).budget, 256 * KIB);
	T_CHECK(stats(c).bytes_used <= 256 * KIB);
	T_EQ(stats(c).blocks, 4);
	T_EQ(touch(c, 1, 15, 64 * KIB), BCACHE_HIT);	/* was pinned */
	bcache_put(c, &pinned);
	bcache_set_budget(c, 1 * MIB);
	for (uint64_t i = 100; i < 116; i++)
		T_EQ(touch(c, 1, i, 64 * KIB), BCACHE_MISS);
	T_EQ(stats(c).bytes_used, 1 * MIB);
	bcache_free(c);
}

static void test_clock_second_chance(void)
{
	struct bcache *c = mk(4 * 64 * KIB);

	for (uint64_t i = 0; i < 4; i++)
		touch(c, 0, i, 64 * KIB);
	T_EQ(touch(c, 0, 0, 64 * KIB), BCACHE_HIT);	/* A referenced */
	T_EQ(touch(c, 0, 4, 64 * KIB), BCACHE_MISS);	/* evicts B, not A */
	T_EQ(stats(c).evictions, 1);
	T_EQ(touch(c, 0, 0, 64 * KIB), BCACHE_HIT);
	T_EQ(touch(c, 0, 2, 64 * KIB), BCACHE_HIT);
	T_EQ(touch(c, 0, 3, 64 * KIB), BCACHE_HIT);
	T_EQ(touch(c, 0, 4, 64 * KIB), BCACHE_HIT);
	T_EQ(touch(c, 0, 1, 64 * KIB), BCACHE_MISS);	/* B was the victim */
	bcache_free(c);
}

static void test_pinned_survive(void)
{
	struct bcache *c = mk(1 * MIB);
	struct bcache_blk pin[4];

	for (uint64_t i = 0; i < 4; i++)
		T_EQ(get_filled(c, 7, i, 128 * KIB, &pin[i]), BCACHE_MISS);
	for (uint64_t i = 0; i < 200; i++)
		touch(c, 8, i, 64 * KIB);
	for (uint64_t i = 0; i < 4; i++)
		T_CHECK(check(pin[i].data, 128 * KIB, 7, i));
	T_CHECK(stats(c).bytes_used <= 1 * MIB);
	for (uint64_t i = 0; i < 4; i++)
		bcache_put(c, &pin[i]);
	/* Still cached after the pressure (they were never evictable). */
	for (uint64_t i = 0; i < 4; i++)
		T_EQ(touch(c, 7, i, 128 * KIB), BCACHE_HIT);
	bcache_free(c);
}

/* Everything pinned: the cache overshoots instead of blocking. */
static void test_overshoot_all_pinned(void)
{
	struct bcache *c = mk(256 * KIB);
	struct bcache_blk pin[8];

	for (uint64_t i = 0; i < 8; i++)
		T_EQ(get_filled(c, 1, i, 64 * KIB, &pin[i]), BCACHE_MISS);
	T_EQ(stats(c).bytes_used, 512 * KIB);
	T_EQ(stats(c).evictions, 0);
	for (uint64_t i = 0; i < 8; i++)
		bcache_put(c, &pin[i]);
	/* The last puts evict back under the budget. */
	T_CHECK(stats(c).bytes_used <= 256 * KIB);
	T_EQ(stats(c).evictions, 4);
	bcache_free(c);
}

static void test_drop(void)
{
	struct bcache *c = mk(4 * MIB);
	struct bcache_blk held;

	for (uint64_t i = 0; i < 5; i++) {
		touch(c, 1, i, 64 * KIB);
		touch(c, 2, i, 64 * KIB);
	}
	T_EQ(get_filled(c, 1, 0, 64 * KIB, &held), BCACHE_HIT);
	bcache_drop(c, 1);
	T_EQ(stats(c).blocks, 5);
	/* The held block stays valid and counted until its put. */
	T_CHECK(check(held.data, 64 * KIB, 1, 0));
	T_EQ(stats(c).bytes_used, 6 * 64 * KIB);
	/* But nobody finds it any more: k1 = 1 was dropped. */
	for (uint64_t i = 0; i < 5; i++)
		T_EQ(touch(c, 2, i, 64 * KIB), BCACHE_HIT);
	T_EQ(touch(c, 1, 0, 64 * KIB), BCACHE_MISS);
	T_EQ(stats(c).bytes_used, 7 * 64 * KIB);
	bcache_put(c, &held);
	T_EQ(stats(c).bytes_used, 6 * 64 * KIB);
	T_EQ(touch(c, 1, 0, 64 * KIB), BCACHE_HIT);
	bcache_drop(c, 3);		/* nothing there */
	bcache_drop(c, 2);
	bcache_drop(c, 1);
	T_EQ(stats(c).blocks, 0);
	T_EQ(stats(c).bytes_used, 0);
	/* A block being filled when dropped: published, then freed at put. */
	struct bcache_blk f;
	T_EQ(bcache_get(c, 4, 0, 100, &f), BCACHE_MISS);
	bcache_drop(c, 4);
	fill(f.data, 100, 4, 0);
	bcache_publish(c, &f, 100);
	bcache_put(c, &f);
	T_EQ(stats(c).bytes_used, 0);
	T_EQ(touch(c, 4, 0, 100), BCACHE_MISS);
	/* ... or abandoned. */
	T_EQ(bcache_get(c, 4, 1, 100, &f), BCACHE_MISS);
	bcache_drop(c, 4);
	bcache_abandon(c, &f);
	T_EQ(stats(c).bytes_used, 0);
	bcache_free(c);
}

static void test_stats(void)
{
	struct bcache *c = mk(2 * 64 * KIB);
	struct bcache_stats st;

	touch(c, 0, 0, 64 * KIB);	/* miss */
	touch(c, 0, 0, 64 * KIB);	/* hit */
	touch(c, 0, 1, 64 * KIB);	/* miss */
	touch(c, 0, 2, 64 * KIB);	/* miss, evicts 1 (0 was hit) */
	touch(c, 0, 0, 64 * KIB);	/* hit */
	st = stats(c);
	T_EQ(st.hits, 2);
	T_EQ(st.misses, 3);
	T_EQ(st.evictions, 1);
	T_EQ(st.waits, 0);
	T_EQ(st.blocks, 2);
	T_EQ(st.bytes_used, 128 * KIB);
	T_EQ(st.budget, 128 * KIB);
	/* Capacity, not length, is charged; sizes round to their class. */
	touch(c, 1, 0, 70000);		/* class 72 KiB: both others go */
	T_EQ(stats(c).bytes_used, 72 * KIB);
	T_EQ(stats(c).evictions, 3);
	bcache_free(c);
}

static void test_enomem(void)
{
	struct bcache *c = mk(1 * MIB);
	struct bcache_blk b;

	touch(c, 0, 0, 64 * KIB);
	T_EQ(bcache_get(c, 1, 1, SIZE_MAX, &b), -ENOMEM);
	T_EQ(bcache_get(c, 1, 1, (size_t)1 << 60, &b), -ENOMEM);
	T_EQ(stats(c).blocks, 0);	/* the 64 KiB block was evicted */
	T_EQ(stats(c).bytes_used, 0);
	T_EQ(touch(c, 1, 1, 64 * KIB), BCACHE_MISS);	/* and usable again */
	T_EQ(touch(c, 1, 1, 64 * KIB), BCACHE_HIT);
	bcache_free(c);
}

/* Fills (k1, k2) as a readahead does, and puts it. */
static void ahead(struct bcache *c, uint64_t k1, uint64_t k2, size_t len)
{
	struct bcache_blk b;
	int rc = bcache_get_ahead(c, k1, k2, len, &b);

	T_CHECK(rc >= 0);
	if (rc == BCACHE_MISS) {
		fill(b.data, len, k1, k2);
		bcache_publish(c, &b, len);
	}
	if (rc >= 0)
		bcache_put(c, &b);
}

/*
 * A stream read once behind its readahead stays near the once list's
 * share of the budget instead of filling it; a block read again later
 * leaves the list and survives the stream; blocks decoded ahead but not
 * read yet are never taken; random readers' blocks fill the budget as
 * before.
 */
static void test_read_once_ahead(void)
{
	const size_t blk = 64 << 10, budget = 64 * blk;	/* share: 8 */
	struct bcache *c = mk(budget);

	/* A stream: readahead 4 blocks ahead, each block got 3 times by
	 * its reader (one request, several extents). */
	for (uint64_t i = 0; i < 200; i++) {
		ahead(c, 1, i + 4, blk);
		for (int r = 0; r < 3; r++)
			T_EQ(touch(c, 1, i, blk), i < 4 && r == 0 ?
			     BCACHE_MISS : BCACHE_HIT);
	}
	struct bcache_stats st = stats(c);
	T_CHECK(st.recycled > 150);
	T_EQ(st.evictions, 0);
	/* The share (8 blocks), the ahead ones, the search's slack and the
	 * stream's first blocks (got without a readahead). */
	T_CHECK(st.bytes_used <= (8 + 4 + ONCE_SCAN_T + 4) * blk);
	T_EQ(touch(c, 1, 100, blk), BCACHE_MISS);
	/* Its last block, read again after more than the share was
	 * filled (by a random reader here), is an ordinary block now. */
	for (uint64_t i = 0; i < 10; i++)
		T_EQ(touch(c, 5, i, blk), BCACHE_MISS);
	T_EQ(touch(c, 1, 199, blk), BCACHE_HIT);
	/* Decoded ahead, never read: kept while newer read ones go. */
	ahead(c, 2, 0, blk);
	for (uint64_t i = 0; i < 100; i++) {
		ahead(c, 3, i, blk);
		touch(c, 3, i, blk);
	}
	T_EQ(touch(c, 2, 0, blk), BCACHE_HIT);
	T_EQ(touch(c, 1, 199, blk), BCACHE_HIT);
	T_EQ(touch(c, 3, 10, blk), BCACHE_MISS);
	bcache_free(c);
	/* Random readers: no readahead, so the budget fills as before. */
	c = mk(budget);
	for (uint64_t i = 0; i < 64; i++)
		T_EQ(touch(c, 4, i, blk), BCACHE_MISS);
	for (uint64_t i = 0; i < 64; i++)
		T_EQ(touch(c, 4, i, blk), BCACHE_HIT);
	T_EQ(stats(c).recycled, 0);
	T_EQ(stats(c).bytes_used, budget);
	bcache_free(c);
}

int main(void)
{
	T_RUN(test_new_defaults);
	T_RUN(test_miss_publish_hit);
	T_RUN(test_abandon_refill);
	T_RUN(test_budget_evictions);
	T_RUN(test_set_budget);
	T_RUN(test_clock_second_chance);
	T_RUN(test_pinned_survive);
	T_RUN(test_overshoot_all_pinned);
	T_RUN(test_drop);
	T_RUN(test_stats);
	T_RUN(test_enomem);
	T_RUN(test_read_once_ahead);
	return t_done();
}
