/* SPDX-License-Identifier: MIT */
/*
 * bench_bcache: cost of the block cache's hit and miss paths, printed next
 * to a plain malloc + memcpy + free of the same block size measured in the
 * same run. The machine is shared, so read the ratios, not the times; each
 * row is the best of several rounds of ~0.2 s.
 *
 *   build/bench/bench_bcache [block_KiB]     (default 256)
 */
#include "cache/bcache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 5
#define ROUND_S 0.2

static size_t blk = 256 << 10;
static uint8_t *src;
static volatile uint64_t sink;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct bcache *mk(size_t budget)
{
	struct bcache *c;
	struct bcache_opts o = { .budget = budget };

	if (bcache_new(&c, &o))
		abort();
	return c;
}

/* One timed case: runs fn(arg, n) with growing n; returns ns per op. */
typedef void (*body_fn)(void *arg, long n);

static double measure(body_fn fn, void *arg)
{
	double best = 1e30;

	for (int r = 0; r < ROUNDS; r++) {
		long n = 16;
		double t;

		for (;;) {
			double t0 = now_s();
			fn(arg, n);
			t = now_s() - t0;
			if (t >= ROUND_S)
				break;
			n *= t < ROUND_S / 16 ? 8 : 2;
		}
		if (t / n < best)
			best = t / n;
	}
	return best * 1e9;
}

/* --- baselines --- */

static void b_malloc_memcpy(void *arg, long n)
{
	(void)arg;
	for (long i = 0; i < n; i++) {
		uint8_t *p = malloc(blk);
		if (!p)
			abort();
		memcpy(p, src, blk);
		sink += p[i % blk];
		free(p);
	}
}

static void b_memcpy(void *arg, long n)
{
	uint8_t *p = arg;

	for (long i = 0; i < n; i++) {
		memcpy(p, src, blk);
		sink += p[i % blk];
	}
}

/* --- hits --- */

#define HOT 64

static void warm(struct bcache *c)
{
	for (uint64_t k = 0; k < HOT; k++) {
		struct bcache_blk b;
		if (bcache_get(c, 1, k, blk, &b) == BCACHE_MISS) {
			memcpy(b.data, src, blk);
			bcache_publish(c, &b, blk);
		}
		bcache_put(c, &b);
	}
}

static void b_hit(void *arg, long n)
{
	struct bcache *c = arg;

	for (long i = 0; i < n; i++) {
		struct bcache_blk b;
		if (bcache_get(c, 1, (uint64_t)i % HOT, blk, &b) != BCACHE_HIT)
			abort();
		sink += b.data[0];
		bcache_put(c, &b);
	}
}

struct par {
	struct bcache *c;
	long n;
	pthread_barrier_t *bar;
};

static void *hit_thr(void *arg)
{
	struct par *p = arg;

	pthread_barrier_wait(p->bar);
	b_hit(p->c, p->n);
	return NULL;
}

/* Two threads hitting the same hot keys: wall time per op per thread. */
static void b_hit2(void *arg, long n)
{
	pthread_barrier_t bar;
	pthread_t t;
	struct par p = { arg, n, &bar };

	pthread_barrier_init(&bar, NULL, 2);
	pthread_create(&t, NULL, hit_thr, &p);
	hit_thr(&p);
	pthread_join(t, NULL);
	pthread_barrier_destroy(&bar);
}

/* --- misses --- */

struct miss {
	struct bcache *c;
	uint64_t next;
	int fill;		/* memcpy the block in, as a decoder would */
	int alt;		/* alternate two size classes: no buffer reuse */
};

static void b_miss(void *arg, long n)
{
	struct miss *m = arg;

	for (long i = 0; i < n; i++) {
		struct bcache_blk b;
		uint64_t k = m->next++;
		size_t len = m->alt && (k & 1) ? blk - blk / 4 : blk;

		if (bcache_get(m->c, 2, k, len, &b) != BCACHE_MISS)
			abort();
		if (m->fill)
			memcpy(b.data, src, len);
		bcache_publish(m->c, &b, len);
		bcache_put(m->c, &b);
	}
}

static double run_miss(int fill, int alt)
{
	/* alt: one block's budget, so each victim is of the other class. */
	struct miss m = { mk(alt ? blk : HOT * blk), 0, fill, alt };
	double ns = measure(b_miss, &m);

	bcache_free(m.c);
	return ns;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		blk = (size_t)atol(argv[1]) << 10;
	if (!blk)
		blk = 256 << 10;
	src = malloc(blk);
	uint8_t *dst = malloc(blk);
	if (!src || !dst)
		return 1;
	for (size_t i = 0; i < blk; i++)
		src[i] = (uint8_t)(i * 131 + 7);

	double base = measure(b_malloc_memcpy, NULL);
	double cpy = measure(b_memcpy, dst);

	struct bcache *c = mk(2 * HOT * blk);
	warm(c);
	double hit1 = measure(b_hit, c);
	double hit2 = measure(b_hit2, c);
	struct bcache_stats st;
	bcache_stats(c, &st);
	bcache_free(c);

	double miss0 = run_miss(0, 0);
	double miss1 = run_miss(1, 0);
	double miss2 = run_miss(1, 1);

	printf("bcache bench, block %zu KiB, best of %d rounds\n", blk >> 10,
	       ROUNDS);
	printf("%-46s %10s %8s\n", "operation", "ns/op", "x base");
	printf("%-46s %10.0f %8.3f\n", "malloc+memcpy+free (baseline)", base, 1.0);
	printf("%-46s %10.0f %8.3f\n", "memcpy only", cpy, cpy / base);
	printf("%-46s %10.1f %8.4f\n", "hit get+put, 1 thread", hit1,
	       hit1 / base);
	printf("%-46s %10.1f %8.4f\n", "hit get+put, 2 threads (per op per thread)",
	       hit2, hit2 / base);
	printf("%-46s %10.0f %8.3f\n", "miss+publish+put, no fill", miss0,
	       miss0 / base);
	printf("%-46s %10.0f %8.3f\n", "miss+memcpy fill+publish+put (reuse)",
	       miss1, miss1 / base);
	printf("%-46s %10.0f %8.3f\n", "same, 2 classes alternating (mmap+faults)",
	       miss2, miss2 / base);
	printf("(hit rows: %llu hits, %llu waits)\n",
	       (unsigned long long)st.hits, (unsigned long long)st.waits);
	free(src);
	free(dst);
	return 0;
}
