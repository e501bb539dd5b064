/* SPDX-License-Identifier: MIT */
/*
 * test_bcache_mt: the block cache under threads and under memory
 * pressure: fill-once under concurrency (also when the first filler
 * abandons), a waiter woken by a drop, a multithreaded stress run that
 * checks every hit's bytes, and RSS staying near the budget while many
 * blocks cycle through.
 *
 * Block contents are a function of the key, so any thread can check any
 * block it is handed. Random choices use fixed seeds. Threads never call
 * T_CHECK (t.h is not thread-safe); they count errors, main checks them.
 *
 * Not here: the protocol on one thread, eviction, stats and the once
 * list (test_bcache). Shared helpers are in bcache_tutil.h.
 */
#include "cache/bcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/bcache_tutil.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- concurrency --- */

#define NTHR 8

struct fill_once {
	struct bcache *c;
	pthread_barrier_t bar;
	atomic_int fills, abandons, bad, misses_seen;
	bool abandon_first;
};

static void *fill_once_thr(void *arg)
{
	struct fill_once *f = arg;
	struct bcache_blk b;
	const size_t len = 256 * KIB;

	pthread_barrier_wait(&f->bar);
	for (;;) {
		int rc = bcache_get(f->c, 42, 42, len, &b);

		if (rc == BCACHE_MISS) {
			int n = atomic_fetch_add(&f->misses_seen, 1);

			usleep(30000);	/* a slow decode: let the others pile up */
			if (f->abandon_first && n == 0) {
				atomic_fetch_add(&f->abandons, 1);
				bcache_abandon(f->c, &b);
				continue;	/* then come back as a reader */
			}
			atomic_fetch_add(&f->fills, 1);
			fill(b.data, len, 42, 42);
			bcache_publish(f->c, &b, len);
		} else if (rc != BCACHE_HIT) {
			atomic_fetch_add(&f->bad, 1);
			break;
		}
		if (b.len != len || !check(b.data, len, 42, 42))
			atomic_fetch_add(&f->bad, 1);
		bcache_put(f->c, &b);
		break;
	}
	return NULL;
}

static void run_fill_once(bool abandon_first)
{
	struct fill_once f = { .c = mk(4 * MIB), .abandon_first = abandon_first };
	pthread_t t[NTHR];
	struct bcache_stats st;

	pthread_barrier_init(&f.bar, NULL, NTHR);
	for (int i = 0; i < NTHR; i++)
		pthread_create(&t[i], NULL, fill_once_thr, &f);
	for (int i = 0; i < NTHR; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&f.bar);
	st = stats(f.c);
	T_EQ(f.fills, 1);
	T_EQ(f.bad, 0);
	T_EQ(f.abandons, abandon_first ? 1 : 0);
	T_EQ(st.misses, abandon_first ? 2 : 1);
	T_EQ(st.hits, NTHR - 1);	/* all but the one that filled */
	T_CHECK(st.waits >= 1);
	T_EQ(st.blocks, 1);
	bcache_free(f.c);
}

static void test_concurrent_fill_once(void)
{
	run_fill_once(false);
}

static void test_concurrent_abandon_handover(void)
{
	run_fill_once(true);
}

/* A waiter on a block that gets dropped wakes and fills it itself. */
struct drop_wait {
	struct bcache *c;
	int rc;
	bool ok;
};

static void *drop_wait_thr(void *arg)
{
	struct drop_wait *d = arg;
	struct bcache_blk b;

	d->rc = get_filled(d->c, 3, 3, 100, &b);
	if (d->rc >= 0) {
		d->ok = check(b.data, 100, 3, 3);
		bcache_put(d->c, &b);
	}
	return NULL;
}

static void test_drop_wakes_waiter(void)
{
	struct drop_wait d = { .c = mk(1 * MIB) };
	struct bcache_blk b;
	pthread_t t;

	T_EQ(bcache_get(d.c, 3, 3, 100, &b), BCACHE_MISS);
	pthread_create(&t, NULL, drop_wait_thr, &d);
	for (int i = 0; i < 2000 && stats(d.c).waits == 0; i++)
		usleep(1000);
	T_EQ(stats(d.c).waits, 1);
	bcache_drop(d.c, 3);
	pthread_join(t, NULL);		/* it became the filler */
	T_EQ(d.rc, BCACHE_MISS);
	T_CHECK(d.ok);
	fill(b.data, 100, 3, 3);
	bcache_publish(d.c, &b, 100);
	bcache_put(d.c, &b);
	T_EQ(stats(d.c).bytes_used, 100);
	T_EQ(touch(d.c, 3, 3, 100), BCACHE_HIT);
	bcache_free(d.c);
}

/*
 * Stress: NTHR threads, a hot set that fits and a cold set that does not;
 * lengths vary by key across malloc and mmap sizes and several classes.
 * Some misses are abandoned, some ops drop a whole k1.
 */
#define ST_HOT 12
#define ST_COLD 400
#define ST_BUDGET (3 * MIB)
/* TSan runs ~10x slower and shares 2 cores: fewer ops there. */
#ifdef __SANITIZE_THREAD__
#define ST_OPS 2500
#define RSS_BLOCKS 600
#else
#define ST_OPS 8000
#define RSS_BLOCKS 3000
#endif

struct stress {
	struct bcache *c;
	unsigned seed;
	long gets, hits, fills, abandons, bad;
};

static size_t st_len(uint64_t k1, uint64_t k2)
{
	static const size_t lens[] = { 4000, 16 * KIB, 64 * KIB, 64 * KIB,
				       80 * KIB, 100000, 128 * KIB };
	return lens[mix(k1 ^ (k2 << 8)) % (sizeof lens / sizeof lens[0])];
}

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *stress_thr(void *arg)
{
	struct stress *s = arg;
	uint64_t r = mix(s->seed) | 1;
	/* A block kept pinned across the next op, as a read spanning two. */
	struct bcache_blk held = { 0 };
	uint64_t hk1 = 0, hk2 = 0;

	for (int i = 0; i < ST_OPS; i++) {
		uint64_t x = xs(&r);
		uint64_t k1 = x % 3, k2;
		struct bcache_blk b;

		if (x % 1000 == 0) {
			bcache_drop(s->c, k1);
			continue;
		}
		k2 = (x >> 8) % 10 < 8 ? (x >> 16) % ST_HOT
				       : ST_HOT + (x >> 16) % ST_COLD;
		size_t len = st_len(k1, k2);
		int rc = bcache_get(s->c, k1, k2, len, &b);

		s->gets++;
		if (rc == BCACHE_MISS) {
			if ((x >> 40) % 20 == 0) {
				memset(b.data, 0x5a, len / 2);
				bcache_abandon(s->c, &b);
				s->abandons++;
				continue;
			}
			fill(b.data, len, k1, k2);
			bcache_publish(s->c, &b, len);
			s->fills++;
		} else if (rc == BCACHE_HIT) {
			s->hits++;
			if (b.len != len || !check(b.data, len, k1, k2))
				s->bad++;
		} else {
			s->bad++;
			continue;
		}
		if (held.priv_) {	/* still intact, even if dropped since */
			if (!check(held.data, st_len(hk1, hk2), hk1, hk2))
				s->bad++;
			bcache_put(s->c, &held);
			held.priv_ = NULL;
		} else if ((x >> 48) % 4 == 0) {
			held = b;
			hk1 = k1;
			hk2 = k2;
			continue;
		}
		bcache_put(s->c, &b);
	}
	if (held.priv_)
		bcache_put(s->c, &held);
	return NULL;
}

static void test_stress(void)
{
	struct bcache *c = mk(ST_BUDGET);
	struct stress s[NTHR];
	pthread_t t[NTHR];
	long gets = 0, hits = 0, fills = 0, abandons = 0, bad = 0;
	struct bcache_stats st;
	double t0 = now_s();

	for (int i = 0; i < NTHR; i++) {
		s[i] = (struct stress){ .c = c, .seed = 1234u + (unsigned)i };
		pthread_create(&t[i], NULL, stress_thr, &s[i]);
	}
	for (int i = 0; i < NTHR; i++) {
		pthread_join(t[i], NULL);
		gets += s[i].gets;
		hits += s[i].hits;
		fills += s[i].fills;
		abandons += s[i].abandons;
		bad += s[i].bad;
	}
	st = stats(c);
	fprintf(stderr, "  stress: %ld gets, %ld hits, %ld fills, %ld abandons, "
		"%llu evictions, %llu waits, %.2fs\n", gets, hits, fills,
		abandons, (unsigned long long)st.evictions,
		(unsigned long long)st.waits, now_s() - t0);
	T_EQ(bad, 0);
	T_EQ(st.hits, hits);
	T_EQ(st.misses, fills + abandons);
	T_EQ(st.hits + st.misses, gets);
	T_CHECK(hits > gets / 4);	/* the hot set mostly hits */
	T_CHECK(st.evictions > 0);
	T_CHECK(st.bytes_used <= ST_BUDGET);	/* nothing pinned any more */
	/* Every cached block is still intact. */
	for (uint64_t k1 = 0; k1 < 3; k1++)
		for (uint64_t k2 = 0; k2 < ST_HOT + ST_COLD; k2++) {
			struct bcache_blk b;
			int rc = bcache_get(c, k1, k2, st_len(k1, k2), &b);

			if (rc == BCACHE_HIT) {
				T_CHECK(check(b.data, st_len(k1, k2), k1, k2));
				bcache_put(c, &b);
			} else if (rc == BCACHE_MISS) {
				bcache_abandon(c, &b);
			}
		}
	bcache_free(c);
}

/* --- memory --- */

static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return res * (size_t)sysconf(_SC_PAGESIZE);
}

/*
 * Cycles ~1.5 GiB of blocks of mixed sizes (the glibc-trap mix: a few
 * 8 MiB blocks raise malloc's mmap threshold, then many 256 KiB ones)
 * through a 16 MiB budget; RSS growth must stay within budget + 8 MiB.
 */
static void test_rss_bounded(void)
{
	const size_t budget = 16 * MIB, slack = 8 * MIB;
	static const size_t lens[] = { 256 * KIB, 256 * KIB, 256 * KIB,
				       1 * MIB, 300000, 96 * KIB, 8 * MIB };
	struct bcache *c = mk(budget);
	size_t rss0 = rss_bytes(), peak = 0;
	uint64_t r = 99;

	for (uint64_t i = 0; i < RSS_BLOCKS; i++) {
		size_t len = lens[xs(&r) % (sizeof lens / sizeof lens[0])];
		struct bcache_blk b;

		if (i % 7 != 6 && len == 8 * MIB)
			len = 256 * KIB;	/* 8 MiB blocks stay rare */
		if (bcache_get(c, 1, i, len, &b) == BCACHE_MISS) {
			memset(b.data, (int)i, len);	/* touch every page */
			bcache_publish(c, &b, len);
		}
		bcache_put(c, &b);
		if (i % 64 == 0) {
			size_t rss = rss_bytes();
			if (rss > peak)
				peak = rss;
		}
		if (i == RSS_BLOCKS / 2)
			bcache_drop(c, 1);
	}
	size_t rss1 = rss_bytes();
	if (rss1 > peak)
		peak = rss1;
	fprintf(stderr, "  rss: start %zu MiB, peak %zu MiB, end %zu MiB, "
		"bytes_used %llu MiB\n", rss0 >> 20, peak >> 20, rss1 >> 20,
		(unsigned long long)stats(c).bytes_used >> 20);
	T_CHECK(rss0 > 0);
	T_CHECK(stats(c).bytes_used <= budget);
	bcache_free(c);
#ifdef __SANITIZE_THREAD__
	/* TSan's shadow of every mapping ever made counts in RSS. */
	(void)slack;
	fprintf(stderr, "  rss: bound not checked under TSan\n");
#else
	T_CHECK(peak <= rss0 + budget + slack);
	/* Freed blocks went back to the kernel, not into malloc's heap. */
	T_CHECK(rss_bytes() <= rss0 + slack);
#endif
}

int main(void)
{
	T_RUN(test_concurrent_fill_once);
	T_RUN(test_concurrent_abandon_handover);
	T_RUN(test_drop_wakes_waiter);
	T_RUN(test_stress);
	T_RUN(test_rss_bounded);
	return t_done();
}
