/* SPDX-License-Identifier: MIT */
/*
 * test_bslab: the block cache's buffer slabs. Buffers are page-aligned,
 * zero-filled, writable and disjoint; one size shares a slab until it is
 * full; a buffer given back is zero when handed out again; a slab whose
 * last buffer comes back is unmapped (the counts, and mincore on the
 * pages: the memory really went back); large buffers are mapped on their
 * own, and so are single (not bulk) buffers, which never make a slab; a
 * buffer given back twice or never handed out changes nothing; and
 * threads getting and putting at once keep every buffer's bytes their own.
 *
 * Not here: size classes and budgets (test_bcache).
 */
#include "cache/bslab.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/t.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

static bool all_byte(const uint8_t *p, size_t n, uint8_t b)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != b)
			return false;
	return true;
}

/* Resident pages of [p, p + n), by mincore. */
static size_t resident(const uint8_t *p, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), np = (n + pg - 1) / pg, r = 0;
	unsigned char *v = malloc(np);

	if (!v || mincore((void *)p, n, v) != 0) {
		free(v);
		return (size_t)-1;
	}
	for (size_t i = 0; i < np; i++)
		r += v[i] & 1;
	free(v);
	return r;
}

static void test_one_size_shares_a_slab(void)
{
	struct bslab *a = bslab_new();
	struct bslab_stats st;
	uint8_t *b[9];

	T_CHECK(a != NULL);
	for (int i = 0; i < 9; i++) {
		b[i] = bslab_get(a, 256 * KIB, true);
		T_CHECK(b[i] != NULL);
		T_EQ((uintptr_t)b[i] % 4096, 0);
		T_CHECK(all_byte(b[i], 256 * KIB, 0));
		memset(b[i], 0x10 + i, 256 * KIB);
	}
	bslab_get_stats(a, &st);
	/* 8 fit in one 2 MiB slab, the ninth needs another. */
	T_EQ(st.slabs, 2);
	T_EQ(st.slots_used, 9);
	T_EQ(st.large, 0);
	for (int i = 0; i < 8; i++)
		T_EQ((uintptr_t)b[i] / (2 * MIB), (uintptr_t)b[0] / (2 * MIB));
	for (int i = 0; i < 9; i++)
		T_CHECK(all_byte(b[i], 256 * KIB, (uint8_t)(0x10 + i)));

	/* One back and out again: the same slot, zeroed, no new slab. */
	bslab_put(a, b[3], 256 * KIB);
	uint8_t *again = bslab_get(a, 256 * KIB, true);
	T_CHECK(again == b[3]);
	T_CHECK(again && all_byte(again, 256 * KIB, 0));
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 2);

	/* The ninth's slab goes when it comes back, memory and all. */
	uint8_t *ninth = b[8];
	bslab_put(a, ninth, 256 * KIB);
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 1);
	T_EQ(st.slots_used, 8);
	for (int i = 0; i < 8; i++)
		bslab_put(a, b[i], 256 * KIB);
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 0);
	T_EQ(st.slots_used, 0);
	T_EQ(st.slab_bytes, 0);
	bslab_free(a);
}

static void test_given_back_memory_leaves(void)
{
	struct bslab *a = bslab_new();
	uint8_t *x = bslab_get(a, 512 * KIB, true);
	uint8_t *y = bslab_get(a, 512 * KIB, true);

	T_CHECK(x && y);
	memset(x, 1, 512 * KIB);
	memset(y, 2, 512 * KIB);
	T_CHECK(resident(x, 512 * KIB) == 512 * KIB / (size_t)sysconf(_SC_PAGESIZE));
	/* y's slab stays (x holds it), yet y's pages are no longer resident:
	 * a cache that shrinks gives its memory back. */
	bslab_put(a, y, 512 * KIB);
	T_EQ(resident(y, 512 * KIB), 0);
	T_CHECK(all_byte(x, 512 * KIB, 1));
	bslab_put(a, x, 512 * KIB);
	bslab_free(a);
}

static void test_sizes_apart(void)
{
	struct bslab *a = bslab_new();
	struct bslab_stats st;
	size_t sizes[] = { 64 * KIB, 72 * KIB, 288 * KIB, 1 * MIB };
	uint8_t *p[4][3];

	for (int s = 0; s < 4; s++)
		for (int k = 0; k < 3; k++) {
			p[s][k] = bslab_get(a, sizes[s], true);
			T_CHECK(p[s][k] != NULL);
			if (p[s][k])
				memset(p[s][k], s * 3 + k + 1, sizes[s]);
		}
	bslab_get_stats(a, &st);
	/* A slab per size, two for 1 MiB (two per slab). */
	T_EQ(st.slabs, 5);
	T_EQ(st.slots_used, 12);
	for (int s = 0; s < 4; s++)
		for (int k = 0; k < 3; k++) {
			T_CHECK(all_byte(p[s][k], sizes[s], (uint8_t)(s * 3 + k + 1)));
			bslab_put(a, p[s][k], sizes[s]);
		}
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 0);
	bslab_free(a);
}

static void test_large(void)
{
	struct bslab *a = bslab_new();
	struct bslab_stats st;
	uint8_t *m = bslab_get(a, 1536 * KIB, false);
	uint8_t *l = bslab_get(a, 5 * MIB, true);

	T_CHECK(m && l);
	bslab_get_stats(a, &st);
	T_EQ(st.large, 2);
	T_EQ(st.slabs, 0);
	/* Spanning huge pages: aligned to them. */
	T_EQ((uintptr_t)l % (2 * MIB), 0);
	T_CHECK(all_byte(l, 5 * MIB, 0));
	memset(m, 7, 1536 * KIB);
	memset(l, 9, 5 * MIB);
	T_CHECK(all_byte(m, 1536 * KIB, 7));
	T_CHECK(all_byte(l, 5 * MIB, 9));
	bslab_put(a, m, 1536 * KIB);
	bslab_put(a, l, 5 * MIB);
	bslab_get_stats(a, &st);
	T_EQ(st.large, 0);
	bslab_free(a);
}

static void test_bad_puts(void)
{
	struct bslab *a = bslab_new();
	struct bslab_stats st;
	uint8_t *x = bslab_get(a, 128 * KIB, true);
	uint8_t *y = bslab_get(a, 128 * KIB, true);

	T_CHECK(x && y);
	memset(y, 5, 128 * KIB);
	bslab_put(a, x, 128 * KIB);
	bslab_put(a, x, 128 * KIB);		/* twice */
	bslab_put(a, y + 4096, 128 * KIB);	/* not a slot's start */
	bslab_put(a, y, 256 * KIB);		/* the wrong size */
	bslab_put(a, NULL, 128 * KIB);
	bslab_get_stats(a, &st);
	T_EQ(st.slots_used, 1);
	T_EQ(st.slabs, 1);
	/* y was not touched by any of it. */
	T_CHECK(all_byte(y + 8192, 128 * KIB - 8192, 5));
	T_CHECK(bslab_get(a, 0, true) == NULL);
	T_CHECK(bslab_get(a, 4 * KIB, true) == NULL);	/* under a 64th of a slab */
	bslab_put(a, y, 128 * KIB);
	bslab_free(a);
}

/* A random reader's buffer: its own pages, never a slab's (a new slab
 * would cost its whole huge page at once), unmapped when given back. */
static void test_single(void)
{
	struct bslab *a = bslab_new();
	struct bslab_stats st;
	uint8_t *bulk = bslab_get(a, 256 * KIB, true);
	uint8_t *one = bslab_get(a, 256 * KIB, false);

	T_CHECK(bulk && one);
	T_CHECK(one && all_byte(one, 256 * KIB, 0));
	if (one)
		memset(one, 3, 256 * KIB);
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 1);
	T_EQ(st.slots_used, 1);	/* the bulk one only */
	uintptr_t slab = (uintptr_t)bulk & ~(uintptr_t)(2 * MIB - 1);
	T_CHECK((uintptr_t)one < slab || (uintptr_t)one >= slab + 2 * MIB);
	bslab_put(a, one, 256 * KIB);
	T_EQ(resident(one, 256 * KIB), (size_t)-1);	/* unmapped */
	bslab_put(a, bulk, 256 * KIB);
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 0);
	bslab_free(a);
}

/* Buffers left out when the allocator goes are unmapped with it (this
 * test is for the sanitizers: nothing may leak). */
static void test_free_with_buffers_out(void)
{
	struct bslab *a = bslab_new();

	T_CHECK(bslab_get(a, 64 * KIB, true) != NULL);
	T_CHECK(bslab_get(a, 3 * MIB, true) != NULL);
	bslab_free(a);
	bslab_free(NULL);
}

struct mt_arg {
	struct bslab *a;
	unsigned seed;
	int bad;
};

static void *mt_run(void *arg)
{
	static const size_t sizes[] = { 64 * KIB, 256 * KIB, 320 * KIB,
					1 * MIB, 1280 * KIB };
	struct mt_arg *m = arg;
	uint8_t *held[8] = { 0 };
	size_t cap[8] = { 0 };
	uint8_t tag = (uint8_t)(m->seed * 37 + 1);

	for (int it = 0; it < 3000; it++) {
		int i = rand_r(&m->seed) % 8;
		if (held[i]) {
			if (!all_byte(held[i], cap[i], tag ^ (uint8_t)i))
				m->bad++;
			bslab_put(m->a, held[i], cap[i]);
			held[i] = NULL;
			continue;
		}
		cap[i] = sizes[rand_r(&m->seed) % 5];
		held[i] = bslab_get(m->a, cap[i], (it & 1) != 0);
		if (!held[i] || !all_byte(held[i], cap[i], 0)) {
			m->bad++;
			continue;
		}
		memset(held[i], tag ^ (uint8_t)i, cap[i]);
	}
	for (int i = 0; i < 8; i++)
		if (held[i]) {
			if (!all_byte(held[i], cap[i], tag ^ (uint8_t)i))
				m->bad++;
			bslab_put(m->a, held[i], cap[i]);
		}
	return NULL;
}

static void test_threads(void)
{
	struct bslab *a = bslab_new();
	struct bslab_stats st;
	pthread_t t[4];
	struct mt_arg arg[4];

	for (int i = 0; i < 4; i++) {
		arg[i] = (struct mt_arg){ .a = a, .seed = (unsigned)i + 1 };
		T_EQ(pthread_create(&t[i], NULL, mt_run, &arg[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		T_EQ(arg[i].bad, 0);
	}
	bslab_get_stats(a, &st);
	T_EQ(st.slabs, 0);
	T_EQ(st.large, 0);
	T_EQ(st.slots_used, 0);
	bslab_free(a);
}

int main(void)
{
	T_RUN(test_one_size_shares_a_slab);
	T_RUN(test_given_back_memory_leaves);
	T_RUN(test_sizes_apart);
	T_RUN(test_large);
	T_RUN(test_single);
	T_RUN(test_bad_puts);
	T_RUN(test_free_with_buffers_out);
	T_RUN(test_threads);
	return t_done();
}
