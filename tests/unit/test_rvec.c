/* SPDX-License-Identifier: MIT */
/*
 * test_rvec: reads as pieces (chain_readv, fs/rvec.c). The pieces of any
 * range, put together (memory copied, file ranges pread from their fd),
 * are the snapshot's bytes, for a zstd base (pinned frames), a raw base
 * (file ranges once checked) and patches on top; a file range is only
 * ever given for blocks a read has checked; a block changed behind our
 * back after its check is never handed out unchecked again by a copy
 * read, and a damaged block not yet checked gives -EIO. With full copies
 * (-o materialize, fs/fcopy.c): a snapshot read whole by one stream, its
 * pages in reverse order, gets one, and a chain opened later reads it
 * from there, byte-exact.
 */
#include "fs/chain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/store.h"
#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

#define SZ ((size_t)3 << 20)
#define NST 3

static char dir[64];
static uint8_t *st[NST];
static uint64_t rng = 7;

static void make_states(void)
{
	for (int k = 0; k < NST; k++) {
		st[k] = malloc(SZ);
		if (k)
			memcpy(st[k], st[k - 1], SZ);
		for (size_t i = 0; i < SZ; i += 4096) {
			/* Zero pages (fills), data, and a few changed pages. */
			if (!k)
				memset(st[k] + i, (i / 4096) % 4 ? 0 : 1, 4096);
			if (!k || t_xorshift(&rng) % 16 == 0)
				for (size_t b = 0; b < 4096 && (i / 4096) % 4; b++)
					st[k][i + b] = (uint8_t)t_xorshift(&rng);
		}
	}
}

/* A store of NST states: base raw or zstd, then xdelta3 patches. */
static void make_store(const char *sub, int raw)
{
	char s[128], p[160];

	snprintf(s, sizeof(s), "%s/%s", dir, sub);
	mkdir(s, 0755);
	for (int k = 0; k < NST; k++) {
		snprintf(p, sizeof(p), "%s/st%d", dir, k);
		T_EQ(t_write_file(p, st[k], SZ), 0);
	}
	if (raw)
		T_EQ(t_sh("cp %s/st0 %s/s0", dir, s), 0);
	else
		T_EQ(t_sh("zstd -q -f %s/st0 -o %s/s0.zst", dir, s), 0);
	for (int k = 1; k < NST; k++)
		T_EQ(t_sh("xdelta3 -e -f -S none -s %s/st%d %s/st%d %s/s%d.patch",
			  dir, k - 1, dir, k, s, k), 0);
	T_EQ(t_sh("cd %s && printf 's2.patch\\ns1.patch\\n%s\\n' > "
		  "increments.txt", s, raw ? "s0" : "s0.zst"), 0);
}

static uint64_t fcopy_max;	/* opts.fcopy_max of open_chain */

static int open_chain(const char *sub, struct store **s, struct chain **c)
{
	char p[128], err[1024] = "";
	struct chain_opts o = { .prefetch_threads = 2,
				.fcopy_max = fcopy_max };

	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	if (store_open(s, p, err, sizeof(err)))
		return -1;
	if (chain_open(c, *s, &o, err, sizeof(err))) {
		fprintf(stderr, "    chain_open: %s\n", err);
		store_free(*s);
		return -1;
	}
	chain_start(*c);
	return 0;
}

/* Reads [off, off+len) of id as pieces and puts them together in out.
 * Returns the bytes read or -errno; *nfd gets the file pieces' bytes. */
static ssize_t readv_st(struct chain *c, uint32_t id, uint64_t off,
			size_t len, uint8_t *out, size_t *nfd,
			struct chain_stream *cs)
{
	static uint8_t scratch[1 << 20];
	struct chain_layer *L;
	struct chain_rvec *v;
	const struct chain_seg *sg;
	size_t n, at = 0;
	ssize_t r;

	if (chain_get(c, id, &L))
		return -ENOENT;
	T_EQ(chain_rvec_new(&v, scratch, sizeof(scratch)), 0);
	r = chain_readv(c, L, off, len, cs, 1, v, &sg, &n);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		if (sg[i].mem) {
			memcpy(out + at, sg[i].mem, sg[i].len);
		} else {
			T_EQ(pread(sg[i].fd, out + at, sg[i].len,
				   (off_t)sg[i].off), (ssize_t)sg[i].len);
			*nfd += sg[i].len;
		}
		at += sg[i].len;
	}
	if (r >= 0)
		T_EQ(at, (size_t)r);
	chain_rvec_release(c, v);
	chain_rvec_free(v);
	chain_put(c, L);
	return r;
}

static ssize_t readv_all(struct chain *c, uint32_t id, uint64_t off,
			 size_t len, uint8_t *out, size_t *nfd)
{
	return readv_st(c, id, off, len, out, nfd, NULL);
}

/* A counter of chain_stats. */
static uint64_t stat_of(struct chain *c, const char *name)
{
	char buf[4096], *p;
	size_t n = strlen(name);

	chain_stats(c, buf, sizeof(buf));
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	return UINT64_MAX;
}

static void check_store(const char *sub, int raw)
{
	static uint8_t buf[1 << 20];
	struct store *s;
	struct chain *c;
	size_t nfd = 0, nfd_base = 0;

	make_store(sub, raw);
	T_EQ(open_chain(sub, &s, &c), 0);
	/* Twice: the second pass may take checked file ranges. */
	for (int pass = 0; pass < 2; pass++) {
		for (int k = 0; k < NST; k++) {
			for (uint64_t off = 0; off < SZ; off += sizeof(buf)) {
				ssize_t r = readv_all(c, (uint32_t)k + 1, off,
						      sizeof(buf), buf, k ? &nfd :
						      &nfd_base);
				T_EQ(r, (ssize_t)sizeof(buf));
				T_CHECK(memcmp(buf, st[k] + off, sizeof(buf)) == 0);
			}
		}
	}
	/* Random ranges, some across the end. */
	for (int i = 0; i < 300; i++) {
		int k = (int)(t_xorshift(&rng) % NST);
		uint64_t off = t_xorshift(&rng) % SZ;
		size_t len = 1 + t_xorshift(&rng) % sizeof(buf);
		size_t want = off + len > SZ ? SZ - off : len;
		ssize_t r = readv_all(c, (uint32_t)k + 1, off, len, buf, &nfd);
		if (r != (ssize_t)want || memcmp(buf, st[k] + off, want)) {
			T_CHECK(0);
			break;
		}
	}
	/* Checked blocks of a raw base, and of the patches' aux files,
	 * go out as file ranges; a zstd base's frames as pinned memory. */
	T_CHECK(nfd > 0);
	if (raw)
		T_CHECK(nfd_base > 0);
	else
		T_EQ(nfd_base, 0);
	chain_free(c);
	store_free(s);
}

/* A raw base damaged before any read: the read that needs the block
 * fails with EIO, never hands out its range. */
static void test_damage_unchecked(void)
{
	static uint8_t buf[1 << 20];
	struct store *s;
	struct chain *c;
	size_t nfd = 0;

	make_store("d", 1);
	T_EQ(open_chain("d", &s, &c), 0);	/* checksums taken here */
	chain_free(c);
	store_free(s);
	/* A byte of a data page of the base (page 1: page 0 is ones). */
	/* Same size and mtime: the saved checksums still stand for it. */
	T_EQ(t_sh("touch -r %s/d/s0 %s/ref", dir, dir), 0);
	T_EQ(t_sh("printf 'Z' | dd of=%s/d/s0 bs=1 seek=%d conv=notrunc "
		  "status=none", dir, 4096 + 100), 0);
	T_EQ(t_sh("touch -r %s/ref %s/d/s0", dir, dir), 0);
	T_EQ(open_chain("d", &s, &c), 0);
	/* Snapshot 1 is the base: its page 1 comes from s0 itself. */
	T_EQ(readv_all(c, 1, 0, 65536, buf, &nfd), -EIO);
	T_EQ(readv_all(c, 1, 0, 65536, buf, &nfd), -EIO);
	T_EQ(nfd, 0);
	/* Elsewhere the base still reads. */
	T_EQ(readv_all(c, 1, 65536, 65536, buf, &nfd), 65536);
	T_CHECK(memcmp(buf, st[0] + 65536, 65536) == 0);
	chain_free(c);
	store_free(s);
}

static void test_zstd_base(void)
{
	check_store("z", 0);
}

static void test_raw_base(void)
{
	check_store("r", 1);
}

static void test_full_copy(void)
{
	static uint8_t buf[SZ];
	enum { STEP = 64 << 10 };
	struct chain_stream *cs;
	struct store *s;
	struct chain *c;
	size_t nfd = 0;

	make_store("f", 0);
	fcopy_max = 64 << 20;
	T_EQ(open_chain("f", &s, &c), 0);
	T_EQ(chain_stream_new(&cs), 0);
	/* Snapshot 3 (the newest), backwards: every page, in no order a
	 * readahead would call sequential. */
	for (size_t off = SZ; off > 0; off -= STEP) {
		T_EQ(readv_st(c, 3, off - STEP, STEP, buf + off - STEP, &nfd,
			      cs), (ssize_t)STEP);
		if (off - STEP == STEP)
			T_EQ(stat_of(c, "full_copies_made"), 0);
	}
	T_CHECK(memcmp(buf, st[2], SZ) == 0);
	for (int i = 0; i < 100 && stat_of(c, "full_copies_made") == 0; i++)
		usleep(50000);
	T_EQ(stat_of(c, "full_copies_made"), 1);
	/* Snapshot 2, half read: none. */
	for (size_t off = 0; off < SZ / 2; off += STEP)
		T_EQ(readv_st(c, 2, off, STEP, buf, &nfd, cs), (ssize_t)STEP);
	usleep(500000);
	T_EQ(stat_of(c, "full_copies_made"), 1);
	chain_stream_free(cs);
	chain_free(c);
	store_free(s);
	T_EQ(t_sh("test $(ls %s/f/.snapfs/full | wc -l) = 1", dir), 0);
	T_EQ(open_chain("f", &s, &c), 0);
	memset(buf, 0, SZ);
	for (size_t off = 0; off < SZ; off += STEP)
		T_EQ(readv_all(c, 3, off, STEP, buf + off, &nfd),
		     (ssize_t)STEP);
	T_CHECK(memcmp(buf, st[2], SZ) == 0);
	T_EQ(stat_of(c, "full_copy_read_bytes"), SZ);
	chain_free(c);
	store_free(s);
	/* Without the option the copy is not read. */
	fcopy_max = 0;
	T_EQ(open_chain("f", &s, &c), 0);
	T_EQ(readv_all(c, 3, 0, STEP, buf, &nfd), (ssize_t)STEP);
	T_CHECK(memcmp(buf, st[2], STEP) == 0);
	T_EQ(stat_of(c, "full_copy_read_bytes"), 0);
	chain_free(c);
	store_free(s);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_rvec.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	make_states();
	T_RUN(test_zstd_base);
	T_RUN(test_raw_base);
	T_RUN(test_damage_unchecked);
	T_RUN(test_full_copy);
	t_sh("rm -rf %s", dir);
	for (int k = 0; k < NST; k++)
		free(st[k]);
	return t_done();
}
