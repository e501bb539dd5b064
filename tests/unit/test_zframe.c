/* SPDX-License-Identifier: MIT */
/*
 * test_zframe: the seekable zstd reader, writer and transcoder on sound
 * input, checked against the stock `zstd` tool in both directions: sizes
 * around the frame size (seek table parsed here independently), output
 * the same byte for byte with any number of threads, the tool's single
 * big frame transcoded (with progress) and read, concatenated outputs
 * with a skippable frame, our output without its seek table, frame
 * lookup and read arguments.
 *
 * Data is VM-like (zero pages, text, patterns, noise) from a fixed seed.
 * Files live in a fresh directory under $TMPDIR, removed at the end.
 * ZFRAME_BENCH=<MiB> also prints writer throughput at level 3 with 1 and
 * 2 threads (to stderr; not a test).
 *
 * Not here: damaged and foreign files and errors (test_zframe_bad).
 * Shared helpers are in zframe_tutil.h.
 */
#include "codec/zframe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/zframe_tutil.h"

#define FS_DEF ZFRAME_DEFAULT_FRAME

/* Opens path, checks size, every frame and nrange random ranges. */
static void check_file(const char *path, const uint8_t *data, size_t len,
		       int nrange)
{
	int fd = open(path, O_RDONLY);
	struct zframe *z = NULL;
	struct zframe_dctx *dc = NULL;
	const char *why = "";
	uint8_t *buf = NULL, *out = NULL;
	int rc, wrong = 0;

	T_CHECK(fd >= 0);
	rc = t_zframe_open(&z, fd, &why);
	T_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "  open %s: %s\n", path, why);
		goto out;
	}
	T_EQ(zframe_size(z), len);
	T_EQ(read_all(z, data, len, &wrong), 0);
	T_EQ(wrong, 0);
	T_EQ(zframe_dctx_new(&dc), 0);
	buf = malloc(zframe_max_frame(z) + 1);
	out = malloc(len + 1);
	for (int r = 0; r < nrange && len > 0; r++) {
		uint64_t off = t_rng(&rng) % len, n = 1 + t_rng(&rng) % (len - off), pos = off;
		if (r % 4 == 0 && n > 3 * FS_DEF)
			n = 1 + t_rng(&rng) % (3 * FS_DEF);	/* mostly short reads */
		if (n > len - off)
			n = len - off;
		while (pos < off + n) {
			size_t i = zframe_find(z, pos);
			const struct zframe_entry *e = zframe_frame(z, i);
			uint64_t skip, take;

			if (i >= zframe_count(z) ||
			    zframe_read_frame(z, dc, i, buf, e->raw_len) !=
			    (ssize_t)e->raw_len) {
				wrong++;
				break;
			}
			skip = pos - e->raw_off;
			take = e->raw_len - skip;
			if (take > off + n - pos)
				take = off + n - pos;
			memcpy(out + (pos - off), buf + skip, take);
			pos += take;
		}
		if (memcmp(out, data + off, n) != 0)
			wrong++;
	}
	T_EQ(wrong, 0);
out:
	free(buf);
	free(out);
	zframe_dctx_free(dc);
	zframe_free(z);
	if (fd >= 0)
		close(fd);
}

/* Checks a file has a seek table of n entries with XXH64 checksums that
 * match the data (parsed here independently of the reader). */
static void check_seek_table(const uint8_t *f, size_t flen,
			     const uint8_t *data, size_t dlen, size_t nframes)
{
	uint32_t n;
	const uint8_t *t;
	uint64_t raw = 0, comp = 0;

	T_CHECK(flen >= 17);
	if (flen < 17)
		return;
	n = LE32(f + flen - 9);
	T_EQ(n, nframes);
	T_EQ(f[flen - 5], 0x80);
	T_EQ(LE32(f + flen - 4), 0x8F92EAB1u);
	T_CHECK(flen >= 17 + (size_t)n * 12);
	if (flen < 17 + (size_t)n * 12)
		return;
	t = f + flen - 17 - (size_t)n * 12;
	T_EQ(LE32(t), 0x184D2A5Eu);
	T_EQ(LE32(t + 4), n * 12 + 9);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = t + 8 + (size_t)i * 12;
		uint32_t c = LE32(e), r = LE32(e + 4);
		T_CHECK(raw + r <= dlen);
		if (raw + r > dlen)
			return;
		T_EQ(LE32(f + comp), 0xFD2FB528u);
		T_EQ(LE32(e + 8), (uint32_t)XXH64(data + raw, r, 0));
		raw += r;
		comp += c;
	}
	T_EQ(raw, dlen);
	T_EQ(comp, (uint64_t)(t - f));
}

/* ------------------------------------------------------------------ */

/* Writer output: `zstd -d` gives the input back; zframe_open reads it. */
static void test_writer_sizes(void)
{
	const size_t sizes[] = { 0, 1, FS_DEF - 1, FS_DEF, FS_DEF + 1,
				 20u << 20 };
	uint8_t *data = gen_data(20u << 20, 1);
	char p1[512], p2[512];

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t len = sizes[k], flen, back_len;
		int fd = open(tpath(p1, "w.zst"),
			      O_WRONLY | O_CREAT | O_TRUNC, 0600);
		uint8_t *f, *back;

		T_EQ(write_seekable(fd, data, len, 0, 2), 0);
		close(fd);
		T_EQ(t_sh("zstd -q -d -f '%s' -o '%s'", p1, tpath(p2, "w.raw")), 0);
		back = slurp(p2, &back_len);
		T_EQ(back_len, len);
		T_CHECK(back && memcmp(back, data, len) == 0);
		free(back);
		f = slurp(p1, &flen);
		check_seek_table(f, flen, data, len, (len + FS_DEF - 1) / FS_DEF);
		free(f);
		check_file(p1, data, len, 50);
	}
	free(data);
}

/* The number of threads changes nothing in the output, byte for byte. */
static void test_threads_identical(void)
{
	size_t len = (6u << 20) + 12345, l1, l3, l0;
	uint8_t *data = gen_data(len, 2);
	uint8_t *f1 = seekable_buf(data, len, 64u << 10, 1, &l1);
	uint8_t *f3 = seekable_buf(data, len, 64u << 10, 3, &l3);
	uint8_t *f0 = seekable_buf(data, len, 64u << 10, 0, &l0);
	int wrong = 0;

	T_CHECK(l1 > 0);
	T_EQ(l1, l3);
	T_EQ(l1, l0);
	T_CHECK(f1 && f3 && memcmp(f1, f3, l1) == 0);
	T_CHECK(f1 && f0 && memcmp(f1, f0, l1) == 0);
	T_EQ(scan(f3, l3, data, len, &wrong), 0);
	T_EQ(wrong, 0);
	free(f0);
	free(f1);
	free(f3);
	free(data);
}

static uint64_t last_done, last_total;
static int progress_calls, progress_backwards;

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	if (done < last_done || done > total)
		progress_backwards++;
	last_done = done;
	last_total = total;
	progress_calls++;
}

/* The single frame the zstd tool writes is too big: transcode, then read. */
static void test_transcode_zstd_tool(void)
{
	size_t len = (12u << 20) + 777;
	uint8_t *data = gen_data(len, 3);
	char raw[512], zst[512], seek[512], back[512], pipe[512];
	struct zframe *z;
	const char *why = NULL;
	struct zframe_writer_opts o = { .nthreads = 2 };
	size_t blen;
	uint8_t *b;
	int in, out;

	T_EQ(t_write_file(tpath(raw, "big.raw"), data, len), 0);
	T_EQ(t_sh("zstd -q -3 -f '%s' -o '%s'", raw, tpath(zst, "big.zst")), 0);
	in = open(zst, O_RDONLY);
	T_EQ(t_zframe_open(&z, in, &why), -E2BIG);
	T_CHECK(why && *why);
	out = open(tpath(seek, "big.seek.zst"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	T_EQ(t_zframe_transcode(in, out, &o, progress, NULL, &why), 0);
	T_CHECK(progress_calls > 0);
	T_EQ(progress_backwards, 0);
	T_EQ(last_done, last_total);
	close(in);
	close(out);
	check_file(seek, data, len, 300);
	/* and `zstd -d` still reads the transcoded file */
	T_EQ(t_sh("zstd -q -d -f '%s' -o '%s'", seek, tpath(back, "big.back")), 0);
	b = slurp(back, &blen);
	T_EQ(blen, len);
	T_CHECK(b && memcmp(b, data, len) == 0);
	free(b);

	/* from a pipe zstd cannot know the size: -E2BIG even when small */
	T_EQ(t_sh("head -c 100000 '%s' | zstd -q -c > '%s'", raw,
		tpath(pipe, "pipe.zst")), 0);
	in = open(pipe, O_RDONLY);
	T_EQ(t_zframe_open(&z, in, NULL), -E2BIG);
	out = open(seek, O_RDWR | O_CREAT | O_TRUNC, 0600);
	T_EQ(t_zframe_transcode(in, out, NULL, NULL, NULL, NULL), 0);
	close(in);
	close(out);
	check_file(seek, data, 100000, 20);
	free(data);
}

/* Several zstd outputs concatenated (plus a skippable frame) open directly. */
static void test_concat_frames(void)
{
	const size_t part[] = { 3u << 20, 1, 500000, 8u << 20, 123457 };
	size_t len = 0, off = 0;
	uint8_t *data;
	char raw[512], zst[512], cat[512];
	static const uint8_t skip[16] = { 0x50, 0x2a, 0x4d, 0x18, 8, 0, 0, 0,
					  'h', 'e', 'l', 'l', 'o', '!', '!', '!' };
	struct zframe *z;
	int fd;

	for (size_t i = 0; i < 5; i++)
		len += part[i];
	data = gen_data(len, 4);
	tpath(cat, "cat.zst");
	T_EQ(t_write_file(cat, "", 0), 0);
	for (size_t i = 0; i < 5; i++) {
		T_EQ(t_write_file(tpath(raw, "part.raw"), data + off, part[i]), 0);
		T_EQ(t_sh("zstd -q -%d -f '%s' -o '%s' && cat '%s' >> '%s'",
			1 + (int)i, raw, tpath(zst, "part.zst"), zst, cat), 0);
		if (i == 2) {
			fd = open(cat, O_WRONLY | O_APPEND);
			T_EQ(write(fd, skip, sizeof(skip)), (ssize_t)sizeof(skip));
			close(fd);
		}
		off += part[i];
	}
	check_file(cat, data, len, 100);
	fd = open(cat, O_RDONLY);
	T_EQ(t_zframe_open(&z, fd, NULL), 0);
	if (z) {
		T_EQ(zframe_count(z), 5);
		T_EQ(zframe_max_frame(z), 8u << 20);
		zframe_free(z);
	}
	close(fd);
	free(data);
}

/* Our output with the seek table cut off is a plain multi-frame file. */
static void test_walk_own_output(void)
{
	size_t len = (2u << 20) + 5, flen;
	uint8_t *data = gen_data(len, 5);
	uint8_t *f = seekable_buf(data, len, 100000, 2, &flen);
	size_t n = (len + 99999) / 100000, tbl = 17 + n * 12;
	struct zframe *a, *b;
	int fa = t_mem_fd(f, flen), fb = t_mem_fd(f, flen - tbl), wrong = 0;

	T_EQ(t_zframe_open(&a, fa, NULL), 0);
	T_EQ(t_zframe_open(&b, fb, NULL), 0);
	if (a && b) {
		T_EQ(zframe_count(a), n);
		T_EQ(zframe_count(b), n);
		for (size_t i = 0; i < n; i++)
			T_CHECK(memcmp(zframe_frame(a, i), zframe_frame(b, i),
				       sizeof(struct zframe_entry)) == 0);
		T_EQ(read_all(b, data, len, &wrong), 0);
		T_EQ(wrong, 0);
	}
	zframe_free(a);
	zframe_free(b);
	close(fa);
	close(fb);
	/* Without a table, a content size its blocks cannot hold is refused
	 * (frame 0: single segment, 4-byte size field at 5: 100000 -> 4294304) */
	T_EQ(f[4] & 0xE0, 0xA0);
	f[7] ^= 0x40;
	fb = t_mem_fd(f, flen - tbl);
	T_EQ(t_zframe_open(&b, fb, NULL), -EBADMSG);
	close(fb);
	free(f);
	free(data);
}

static void test_find(void)
{
	size_t len = 1000000, flen;
	uint8_t *data = gen_data(len, 6);
	uint8_t *f = seekable_buf(data, len, 65536, 1, &flen);
	struct zframe *z;
	int fd = t_mem_fd(f, flen);

	T_EQ(t_zframe_open(&z, fd, NULL), 0);
	if (z) {
		size_t n = zframe_count(z);
		T_EQ(n, (len + 65535) / 65536);
		T_EQ(zframe_max_frame(z), 65536);
		for (size_t i = 0; i < n; i++) {
			const struct zframe_entry *e = zframe_frame(z, i);
			T_EQ(e->raw_off, (uint64_t)i * 65536);
			T_EQ(zframe_find(z, e->raw_off), i);
			T_EQ(zframe_find(z, e->raw_off + e->raw_len - 1), i);
			if (i > 0)
				T_EQ(zframe_find(z, e->raw_off - 1), i - 1);
		}
		T_EQ(zframe_find(z, len), n);
		T_EQ(zframe_find(z, UINT64_MAX), n);
		T_CHECK(zframe_frame(z, n) == NULL);
		zframe_free(z);
	}
	close(fd);
	free(f);
	free(data);

	/* empty stream: no frames, everything is past the end */
	f = seekable_buf(NULL, 0, 0, 1, &flen);
	T_EQ(flen, 17);
	fd = t_mem_fd(f, flen);
	T_EQ(t_zframe_open(&z, fd, NULL), 0);
	if (z) {
		T_EQ(zframe_count(z), 0);
		T_EQ(zframe_size(z), 0);
		T_EQ(zframe_find(z, 0), 0);
		zframe_free(z);
	}
	close(fd);
	free(f);
}

static void test_read_args(void)
{
	size_t len = 300000, flen;
	uint8_t *data = gen_data(len, 7);
	uint8_t *f = seekable_buf(data, len, 100000, 1, &flen);
	uint8_t *buf = malloc(100000);
	struct zframe *z;
	struct zframe_dctx *dc;
	int fd = t_mem_fd(f, flen);

	T_EQ(t_zframe_open(&z, fd, NULL), 0);
	T_EQ(zframe_dctx_new(&dc), 0);
	if (z && dc) {
		T_EQ(zframe_read_frame(z, dc, 0, buf, 99999), -ERANGE);
		T_EQ(zframe_read_frame(z, dc, 3, buf, 100000), -EINVAL);
		T_CHECK(*zframe_dctx_reason(dc) != '\0');
		T_EQ(zframe_read_frame(z, dc, 2, buf, 100000), 100000);
		T_CHECK(memcmp(buf, data + 200000, 100000) == 0);
		T_CHECK(*zframe_dctx_reason(dc) == '\0');
	}
	zframe_dctx_free(dc);
	zframe_free(z);
	close(fd);
	free(buf);
	free(f);
	free(data);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Not a test: throughput of the writer to /dev/null. */
static void bench(size_t mib)
{
	size_t len = mib << 20;
	uint8_t *data = gen_data(len, 13);
	int fd = open("/dev/null", O_WRONLY);

	for (int th = 1; th <= 2; th++) {
		double t0 = now(), t;
		int rc = write_seekable(fd, data, len, 0, th);
		t = now() - t0;
		fprintf(stderr, "bench: level 3, %d thread(s), %zu MiB: "
			"%.0f MB/s (rc %d)\n", th, mib, len / t / 1e6, rc);
	}
	close(fd);
	free(data);
}

int main(void)
{
	const char *b = getenv("ZFRAME_BENCH");

	if (tmpdir_make("test_zframe") != 0)
		return 1;
	if (b)
		bench((size_t)atoi(b));
	T_RUN(test_writer_sizes);
	T_RUN(test_threads_identical);
	T_RUN(test_transcode_zstd_tool);
	T_RUN(test_concat_frames);
	T_RUN(test_walk_own_output);
	T_RUN(test_find);
	T_RUN(test_read_args);
	t_sh("rm -rf '%s'", tmpdir);
	return t_done();
}
