/* SPDX-License-Identifier: MIT */
/*
 * test_dcache: the on-disk range cache: chunks read back as filled and
 * survive a reopen, damaged or torn chunks read as missing (never as
 * bytes), the budget evicts least recently used objects first and then
 * the filled object's own oldest chunks, another chunk size drops what
 * was there.
 */
#include "cache/dcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/t.h"

#define CH 4096

static char dir[64];

static void fillpat(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

static void rmdir_all(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	T_EQ(system(cmd), 0);
}

static void test_roundtrip_and_reopen(void)
{
	struct dcache *dc;
	struct dcache_obj *o;
	unsigned char a[CH], b[CH];
	char err[256];

	T_EQ(dcache_open(&dc, dir, 1 << 20, CH, err, sizeof(err)), 0);
	/* 2.5 chunks: the last one is short */
	T_EQ(dcache_obj_open(dc, "obj-a etag1", 2 * CH + 100, &o), 0);
	T_EQ(dcache_read(o, 0, b), 0);
	fillpat(a, CH, 1);
	T_EQ(dcache_fill(o, 0, a, CH), 0);
	T_EQ(dcache_fill(o, 2, a, 100), 0);
	T_EQ(dcache_fill(o, 1, a, 100), -EINVAL);	/* wrong length */
	T_EQ(dcache_read(o, 0, b), CH);
	T_CHECK(memcmp(a, b, CH) == 0);
	T_EQ(dcache_read(o, 2, b), 100);
	T_EQ(dcache_read(o, 1, b), 0);
	T_EQ(dcache_has(o, 0), 1);
	T_EQ(dcache_has(o, 1), 0);
	dcache_obj_put(o);
	dcache_free(dc);

	T_EQ(dcache_open(&dc, dir, 1 << 20, CH, err, sizeof(err)), 0);
	struct dcache_stats st;
	dcache_get_stats(dc, &st);
	T_EQ(st.used, 2 * CH);
	T_EQ(dcache_obj_open(dc, "obj-a etag1", 2 * CH + 100, &o), 0);
	memset(b, 0, CH);
	T_EQ(dcache_read(o, 0, b), CH);
	T_CHECK(memcmp(a, b, CH) == 0);
	/* another key (a new ETag) is another object */
	struct dcache_obj *o2;
	T_EQ(dcache_obj_open(dc, "obj-a etag2", 2 * CH + 100, &o2), 0);
	T_EQ(dcache_read(o2, 0, b), 0);
	dcache_obj_put(o2);
	dcache_obj_put(o);
	dcache_free(dc);
}

/* Flips one byte of every .data file in dir. */
static void damage_data(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "for f in %s/*.data; do printf 'Z' | "
		 "dd of=$f bs=1 seek=10 conv=notrunc 2>/dev/null; done", dir);
	T_EQ(system(cmd), 0);
}

static void test_damage_is_a_miss(void)
{
	struct dcache *dc;
	struct dcache_obj *o;
	unsigned char a[CH], b[CH];
	char err[256];

	T_EQ(dcache_open(&dc, dir, 1 << 20, CH, err, sizeof(err)), 0);
	T_EQ(dcache_obj_open(dc, "obj-d", CH, &o), 0);
	fillpat(a, CH, 3);
	T_EQ(dcache_fill(o, 0, a, CH), 0);
	damage_data();
	T_EQ(dcache_read(o, 0, b), 0);		/* not served */
	T_EQ(dcache_has(o, 0), 0);
	T_EQ(dcache_fill(o, 0, a, CH), 0);	/* fetched again */
	T_EQ(dcache_read(o, 0, b), CH);
	T_CHECK(memcmp(a, b, CH) == 0);
	dcache_obj_put(o);
	dcache_free(dc);
}

static void test_budget(void)
{
	struct dcache *dc;
	struct dcache_obj *x, *y, *z;
	unsigned char a[CH], b[CH];
	char err[256];
	struct dcache_stats st;

	rmdir_all();
	/* room for 4 chunks */
	T_EQ(dcache_open(&dc, dir, 4 * CH, CH, err, sizeof(err)), 0);
	fillpat(a, CH, 5);
	T_EQ(dcache_obj_open(dc, "x", 2 * CH, &x), 0);
	T_EQ(dcache_fill(x, 0, a, CH), 0);
	T_EQ(dcache_fill(x, 1, a, CH), 0);
	dcache_obj_put(x);
	usleep(2000);
	T_EQ(dcache_obj_open(dc, "y", 2 * CH, &y), 0);
	T_EQ(dcache_fill(y, 0, a, CH), 0);
	T_EQ(dcache_fill(y, 1, a, CH), 0);
	dcache_obj_put(y);
	/* z needs 2 chunks: x (least recently used) goes, y stays */
	T_EQ(dcache_obj_open(dc, "z", 6 * CH, &z), 0);
	T_EQ(dcache_fill(z, 0, a, CH), 0);
	T_EQ(dcache_fill(z, 1, a, CH), 0);
	dcache_get_stats(dc, &st);
	T_CHECK(st.used <= 4 * CH);
	T_EQ(dcache_obj_open(dc, "x", 2 * CH, &x), 0);
	T_EQ(dcache_read(x, 0, b), 0);
	dcache_obj_put(x);
	T_EQ(dcache_obj_open(dc, "y", 2 * CH, &y), 0);
	T_EQ(dcache_read(y, 1, b), CH);
	dcache_obj_put(y);
	/* z alone past the budget: y goes, then z's own lowest chunks */
	for (uint64_t i = 2; i < 6; i++)
		T_EQ(dcache_fill(z, i, a, CH), 0);
	dcache_get_stats(dc, &st);
	T_CHECK(st.used <= 4 * CH);
	T_EQ(dcache_has(z, 5), 1);
	T_EQ(dcache_has(z, 0), 0);
	T_EQ(dcache_read(z, 5, b), CH);
	T_CHECK(memcmp(a, b, CH) == 0);
	dcache_obj_put(z);
	dcache_free(dc);

	/* a budget below one chunk caches nothing, and says so */
	T_EQ(dcache_open(&dc, dir, CH / 2, CH, err, sizeof(err)), 0);
	T_EQ(dcache_obj_open(dc, "w", CH, &x), 0);
	T_EQ(dcache_fill(x, 0, a, CH), -ENOSPC);
	dcache_obj_put(x);
	dcache_free(dc);
}

static void test_other_chunk_size(void)
{
	struct dcache *dc;
	struct dcache_obj *o;
	unsigned char a[2 * CH], b[2 * CH];
	char err[256];
	struct dcache_stats st;

	rmdir_all();
	T_EQ(dcache_open(&dc, dir, 1 << 20, CH, err, sizeof(err)), 0);
	T_EQ(dcache_obj_open(dc, "k", CH, &o), 0);
	fillpat(a, CH, 9);
	T_EQ(dcache_fill(o, 0, a, CH), 0);
	dcache_obj_put(o);
	dcache_free(dc);
	T_EQ(dcache_open(&dc, dir, 1 << 20, 2 * CH, err, sizeof(err)), 0);
	dcache_get_stats(dc, &st);
	T_EQ(st.used, 0);
	T_EQ(dcache_obj_open(dc, "k", CH, &o), 0);
	T_EQ(dcache_read(o, 0, b), 0);
	dcache_obj_put(o);
	dcache_free(dc);
	T_EQ(dcache_open(&dc, dir, 1 << 20, 3000, err, sizeof(err)), -EINVAL);
	T_CHECK(strstr(err, "power of two") != NULL);
}

static void test_pread(void)
{
	struct dcache *dc;
	struct dcache_obj *o;
	unsigned char a[3 * CH], b[3 * CH];
	char err[256];

	rmdir_all();
	T_EQ(dcache_open(&dc, dir, 1 << 20, CH, err, sizeof(err)), 0);
	T_EQ(dcache_obj_open(dc, "p", 3 * CH - 10, &o), 0);
	fillpat(a, sizeof(a), 11);
	T_EQ(dcache_fill(o, 0, a, CH), 0);
	T_EQ(dcache_fill(o, 2, a + 2 * CH, CH - 10), 0);
	/* a range over chunk 1 (absent) is a miss; within 0 a hit */
	T_EQ(dcache_pread(o, b, 2 * CH, 100), 0);
	T_EQ(dcache_pread(o, b, 1000, 100), 1000);
	T_CHECK(memcmp(a + 100, b, 1000) == 0);
	T_EQ(dcache_fill(o, 1, a + CH, CH), 0);
	T_EQ(dcache_pread(o, b, 3 * CH, 0), 3 * CH - 10);	/* clamped */
	T_CHECK(memcmp(a, b, 3 * CH - 10) == 0);
	dcache_obj_put(o);
	/* reopened, damaged on disk: the first use checks and refuses */
	damage_data();
	T_EQ(dcache_obj_open(dc, "p", 3 * CH - 10, &o), 0);
	T_EQ(dcache_pread(o, b, 50, 0), 0);
	T_EQ(dcache_pread(o, b, 50, CH), 50);
	T_CHECK(memcmp(a + CH, b, 50) == 0);
	dcache_obj_put(o);
	dcache_free(dc);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_dcache.%d", (int)getpid());
	T_RUN(test_roundtrip_and_reopen);
	T_RUN(test_damage_is_a_miss);
	T_RUN(test_budget);
	T_RUN(test_other_chunk_size);
	T_RUN(test_pread);
	rmdir_all();
	return t_done();
}
