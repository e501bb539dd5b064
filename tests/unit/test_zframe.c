/* SPDX-License-Identifier: MIT */
/*
 * test_zframe: the seekable zstd reader, writer and transcoder, checked
 * against the stock `zstd` tool in both directions, and against damaged
 * files (every truncation, bit flips in frames and seek table, lying
 * tables): an error or the right bytes, never wrong bytes.
 *
 * Data is VM-like (zero pages, text, patterns, noise) from a fixed seed.
 * Files live in a fresh directory under $TMPDIR, removed at the end.
 * ZFRAME_BENCH=<MiB> also prints writer throughput at level 3 with 1 and
 * 2 threads (to stderr; not a test).
 */
#include "codec/zframe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

#define FS_DEF ZFRAME_DEFAULT_FRAME
#define LE32(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | \
		 (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24)

static char tmpdir[256];
static uint64_t rng;

/* VM-memory-like bytes: compressible on the whole, with incompressible
 * pages so that some zstd blocks are stored raw. */
static uint8_t *gen_data(size_t len, uint64_t seed)
{
	static const char *words[] = { "kernel ", "page ", "qemu ", "0000 ",
		"snapshot ", "vcpu ", "mmio ", "virtio ", "\n", "ffff " };
	uint8_t *d = malloc(len ? len : 1);

	rng = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t off = 0; off < len; off += 4096) {
		size_t n = len - off < 4096 ? len - off : 4096;
		unsigned kind = (unsigned)(t_rng(&rng) % 10);

		if (kind < 4) {
			memset(d + off, 0, n);
		} else if (kind < 7) {
			size_t i = 0;
			while (i < n) {
				const char *w = words[t_rng(&rng) % 10];
				for (; *w && i < n; w++)
					d[off + i++] = (uint8_t)*w;
			}
		} else if (kind < 9) {
			uint64_t v = t_rng(&rng);
			for (size_t i = 0; i < n; i++)
				d[off + i] = (uint8_t)(v >> (8 * (i % 8))) ^
					     (t_rng(&rng) % 64 == 0);
		} else {
			for (size_t i = 0; i < n; i++)
				d[off + i] = (uint8_t)t_rng(&rng);
		}
	}
	return d;
}

static const char *tpath(char *buf, const char *name)
{
	snprintf(buf, 512, "%s/%s", tmpdir, name);
	return buf;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *b;

	*len = 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	b = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		free(b);
		close(fd);
		return NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* Feeds data to a writer in uneven pieces, so pieces straddle frames. */
static int write_seekable(int fd, const uint8_t *data, size_t len,
			  uint32_t frame_size, int threads)
{
	struct zframe_writer_opts o = { .frame_size = frame_size,
					.nthreads = threads };
	struct zframe_writer *w;
	static const size_t piece[] = { 1, 7777, 65536, 300001, 3 };
	size_t off = 0;
	int rc = zframe_writer_new(&w, fd, &o);

	for (unsigned i = 0; !rc && off < len; i++) {
		size_t n = piece[i % 5];
		if (n > len - off)
			n = len - off;
		rc = zframe_writer_write(w, data + off, n);
		off += n;
	}
	if (!rc)
		rc = zframe_writer_finish(w);
	zframe_writer_free(w);
	return rc;
}

/* Seekable output of data as a malloc'd buffer. */
static uint8_t *seekable_buf(const uint8_t *data, size_t len,
			     uint32_t frame_size, int threads, size_t *out_len)
{
	int fd = memfd_create("zf", MFD_CLOEXEC);
	struct stat st;
	uint8_t *b = NULL;

	*out_len = 0;
	if (fd < 0)
		return NULL;
	if (write_seekable(fd, data, len, frame_size, threads) == 0 &&
	    fstat(fd, &st) == 0) {
		b = malloc((size_t)st.st_size);
		if (pread(fd, b, (size_t)st.st_size, 0) == st.st_size)
			*out_len = (size_t)st.st_size;
	}
	close(fd);
	return b;
}

/*
 * Reads every frame of an open file. Returns 0 if all reads succeeded,
 * 1 if some failed; counts in *wrong the reads that succeeded with bytes
 * other than data's at that offset (the one outcome never allowed).
 */
static int read_all(struct zframe *z, const uint8_t *data, size_t len,
		    int *wrong)
{
	struct zframe_dctx *dc;
	uint8_t *buf = malloc(zframe_max_frame(z) + 1);
	int failed = 0;

	if (zframe_dctx_new(&dc))
		return 1;
	for (size_t i = 0; i < zframe_count(z); i++) {
		const struct zframe_entry *e = zframe_frame(z, i);
		ssize_t n = zframe_read_frame(z, dc, i, buf, e->raw_len);

		if (n < 0) {
			failed = 1;
			if (n != -EBADMSG && n != -EIO) {
				fprintf(stderr, "  read: unexpected rc %zd\n", n);
				(*wrong)++;
			}
			continue;
		}
		if ((size_t)n != e->raw_len || e->raw_off + e->raw_len > len ||
		    memcmp(buf, data + e->raw_off, e->raw_len) != 0) {
			fprintf(stderr, "  read: WRONG BYTES in frame %zu\n", i);
			(*wrong)++;
		}
	}
	zframe_dctx_free(dc);
	free(buf);
	return failed;
}

/* -1: open failed; 1: a frame failed; 0: read back fully. */
static int scan(const uint8_t *file, size_t flen, const uint8_t *data,
		size_t dlen, int *wrong)
{
	int fd = t_mem_fd(file, flen);
	struct zframe *z;
	int rc;

	rc = t_zframe_open(&z, fd, NULL);
	if (rc) {
		if (rc != -EBADMSG && rc != -EMEDIUMTYPE && rc != -E2BIG) {
			fprintf(stderr, "  open: unexpected rc %d\n", rc);
			(*wrong)++;
		}
		close(fd);
		return -1;
	}
	rc = read_all(z, data, dlen, wrong);
	if (zframe_size(z) > dlen)
		(*wrong)++;
	zframe_free(z);
	close(fd);
	return rc;
}

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

static void test_not_zstd(void)
{
	uint8_t junk[5000];
	struct zframe *z = (struct zframe *)1;
	const char *why = NULL;
	int fd;

	rng = 42;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)t_rng(&rng);
	fd = t_mem_fd(junk, sizeof(junk));
	T_EQ(t_zframe_open(&z, fd, &why), -EMEDIUMTYPE);
	T_CHECK(z == NULL);
	T_CHECK(why && *why);
	T_EQ(t_zframe_transcode(fd, -1, NULL, NULL, NULL, NULL), -EMEDIUMTYPE);
	close(fd);
	for (size_t n = 0; n < 4; n++) {
		fd = t_mem_fd("\x28\xb5\x2f\xfd", n);
		T_EQ(t_zframe_open(&z, fd, NULL), -EMEDIUMTYPE);
		close(fd);
	}
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

/* Cut at every byte: an error, or (at a frame boundary before the seek
 * table: a shorter but valid zstd file) a correct prefix. */
static void test_truncation(void)
{
	size_t len = 40000, flen;
	uint8_t *data = gen_data(len, 8);
	uint8_t *f = seekable_buf(data, len, 4096, 2, &flen);
	size_t n = (len + 4095) / 4096, table_at = flen - 17 - n * 12;
	int wrong = 0, opened_off_boundary = 0, boundaries = 0;
	uint64_t bound = 0;
	size_t next = 0;

	/* comp offsets of frame boundaries, from the seek table */
	for (size_t cut = 0; cut < flen; cut++) {
		int r = scan(f, cut, data, len, &wrong);
		int at_boundary = 0;

		while (next < n && bound < cut) {
			bound += LE32(f + table_at + 8 + next * 12);
			next++;
		}
		at_boundary = cut == bound && cut <= table_at && cut > 0;
		if (at_boundary)
			boundaries++;
		if (r == 0 && !at_boundary)
			opened_off_boundary++;
		if (cut == table_at)
			T_EQ(r, 0);	/* all frames, no table */
	}
	T_EQ(wrong, 0);
	T_EQ(opened_off_boundary, 0);
	T_EQ(boundaries, n);
	free(f);
	free(data);
}

/* Bit flips: in frames some bit of every byte; in the seek table every
 * bit. Never wrong bytes; table damage must be noticed unless it only
 * touches the two "unused" descriptor bits or the seekable magic (then
 * the frame walk, which needs no table, still gives the right bytes). */
static void test_bitflips(void)
{
	size_t len = 60000, flen;
	uint8_t *data = gen_data(len, 9);
	uint8_t *f = seekable_buf(data, len, 8192, 2, &flen);
	size_t n = (len + 8191) / 8192, table_at = flen - 17 - n * 12;
	int wrong = 0, frame_undetected = 0, table_undetected = 0;

	rng = 99;
	for (size_t at = 0; at < flen; at++) {
		int bits = at >= table_at ? 8 : 1;
		for (int b = 0; b < bits; b++) {
			int bit = bits == 8 ? b : (int)(t_rng(&rng) % 8), r;
			int unused_desc = at == flen - 5 && bit < 2;
			int seek_magic = at >= flen - 4;

			f[at] ^= (uint8_t)(1u << bit);
			r = scan(f, flen, data, len, &wrong);
			f[at] ^= (uint8_t)(1u << bit);
			if (r == 0 && at < table_at) {
				frame_undetected++;
			}
			if (r == 0 && at >= table_at && !unused_desc &&
			    !seek_magic) {
				fprintf(stderr, "  table flip at %zu/%zu bit %d "
					"unnoticed\n", at, flen, bit);
				table_undetected++;
			}
		}
	}
	T_EQ(wrong, 0);
	T_EQ(table_undetected, 0);
	/* a flip in a frame can only go unseen where it changes nothing
	 * decoded (e.g. an unused header bit); there are few of those */
	T_CHECK(frame_undetected * 100 < (int)table_at);
	if (frame_undetected)
		fprintf(stderr, "  (%d harmless frame flips)\n",
			frame_undetected);
	free(f);
	free(data);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Seek tables that lie about counts and sizes. */
static void test_lying_tables(void)
{
	size_t len = 50000, flen;
	uint8_t *data = gen_data(len, 10);
	uint8_t *f = seekable_buf(data, len, 10000, 1, &flen);
	uint8_t *g = malloc(flen + 64);
	const uint32_t counts[] = { 5, 4, 0, 7, (uint32_t)(flen / 12),
				    0x10000000u, 0xFFFFFFFFu };
	int wrong = 0;

	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		memcpy(g, f, flen);
		put32(g + flen - 9, counts[k]);
		T_EQ(scan(g, flen, data, len, &wrong), k == 0 ? 0 : -1);
	}
	/* consistent Frame_Size but one frame too many */
	memcpy(g, f, flen);
	{
		size_t t = flen - 17 - 5 * 12;
		put32(g + t + 4, 6 * 12 + 9);
		put32(g + flen - 9, 6);
		T_EQ(scan(g, flen, data, len, &wrong), -1);
	}
	/* a skippable frame in front, known to the table as 0 raw bytes */
	{
		size_t t = flen - 17 - 5 * 12;
		uint8_t *h = malloc(flen + 32);
		size_t o = 0;

		put32(h, 0x184D2A5Au);
		put32(h + 4, 4);
		memcpy(h + 8, "junk", 4);
		o = 12;
		memcpy(h + o, f, t);		/* frames */
		o += t;
		put32(h + o, 0x184D2A5Eu);
		put32(h + o + 4, 6 * 12 + 9);
		put32(h + o + 8, 12);		/* the skippable frame */
		put32(h + o + 12, 0);
		put32(h + o + 16, 0);
		memcpy(h + o + 20, f + t + 8, 5 * 12 + 9);
		o += 20 + 5 * 12 + 9;
		put32(h + o - 9, 6);
		T_EQ(scan(h, o, data, len, &wrong), 0);
		/* entries out of order: sizes still add up, frames do not */
		{
			uint8_t tmp[12], *e0 = h + o - 17 - 6 * 12 + 8;
			memcpy(tmp, e0, 12);
			memcpy(e0, e0 + 12, 12);
			memcpy(e0 + 12, tmp, 12);
			T_CHECK(scan(h, o, data, len, &wrong) != 0);
		}
		free(h);
	}
	T_EQ(wrong, 0);
	free(g);
	free(f);
	free(data);
}

/* A frame larger than ZFRAME_MAX_FRAME under a valid seek table: -E2BIG. */
static void test_big_frame_in_table(void)
{
	size_t len = (8u << 20) + 1, zlen;
	uint8_t *data = gen_data(len, 11), *z, *f;
	char raw[512], zst[512];
	struct zframe *zf;
	int fd;

	T_EQ(t_write_file(tpath(raw, "b.raw"), data, len), 0);
	T_EQ(t_sh("zstd -q -1 -f '%s' -o '%s'", raw, tpath(zst, "b.zst")), 0);
	z = slurp(zst, &zlen);
	f = malloc(zlen + 29);
	memcpy(f, z, zlen);
	put32(f + zlen, 0x184D2A5Eu);
	put32(f + zlen + 4, 12 + 9);
	put32(f + zlen + 8, (uint32_t)zlen);
	put32(f + zlen + 12, (uint32_t)len);
	put32(f + zlen + 16, (uint32_t)XXH64(data, len, 0));
	put32(f + zlen + 20, 1);
	f[zlen + 24] = 0x80;
	put32(f + zlen + 25, 0x8F92EAB1u);
	fd = t_mem_fd(f, zlen + 29);
	T_EQ(t_zframe_open(&zf, fd, NULL), -E2BIG);
	close(fd);
	free(f);
	free(z);
	free(data);
}

/* write(2) errors reach the caller; so does a corrupt transcode input. */
static void test_errors(void)
{
	size_t len = 3u << 20, zlen;
	uint8_t *data = gen_data(len, 12), *z;
	struct zframe_writer *w;
	struct zframe_writer_opts o = { .frame_size = 65536, .nthreads = 2 };
	struct zframe_writer_opts bad = { .frame_size = ZFRAME_MAX_FRAME + 1 };
	char raw[512], zst[512];
	const char *why = NULL;
	int fd = open("/dev/full", O_WRONLY), rc = 0, in, out;

	T_CHECK(fd >= 0);
	T_EQ(zframe_writer_new(&w, fd, &o), 0);
	if (w) {
		for (size_t off = 0; off < len && !rc; off += 100000)
			rc = zframe_writer_write(w, data + off,
						 len - off < 100000 ?
						 len - off : 100000);
		if (!rc)
			rc = zframe_writer_finish(w);
		T_EQ(rc, -ENOSPC);
		T_EQ(zframe_writer_write(w, data, 1), -ENOSPC);
		zframe_writer_free(w);
	}
	close(fd);
	T_EQ(zframe_writer_new(&w, 1, &bad), -EINVAL);
	/* an abandoned writer frees cleanly mid-stream */
	fd = memfd_create("zf", MFD_CLOEXEC);
	T_EQ(zframe_writer_new(&w, fd, &o), 0);
	if (w) {
		T_EQ(zframe_writer_write(w, data, len), 0);
		zframe_writer_free(w);
	}
	close(fd);

	/* truncated and corrupted inputs to transcode */
	T_EQ(t_write_file(tpath(raw, "e.raw"), data, len), 0);
	T_EQ(t_sh("zstd -q -f '%s' -o '%s'", raw, tpath(zst, "e.zst")), 0);
	z = slurp(zst, &zlen);
	out = memfd_create("zf", MFD_CLOEXEC);
	in = t_mem_fd(z, zlen / 2);
	T_EQ(t_zframe_transcode(in, out, &o, NULL, NULL, &why), -EBADMSG);
	T_CHECK(why && *why);
	close(in);
	z[zlen / 2] ^= 0x10;
	in = t_mem_fd(z, zlen);
	T_EQ(t_zframe_transcode(in, out, &o, NULL, NULL, &why), -EBADMSG);
	close(in);
	close(out);
	free(z);
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
	const char *tmp = getenv("TMPDIR");
	const char *b = getenv("ZFRAME_BENCH");

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_zframe.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (b)
		bench((size_t)atoi(b));
	T_RUN(test_writer_sizes);
	T_RUN(test_threads_identical);
	T_RUN(test_transcode_zstd_tool);
	T_RUN(test_concat_frames);
	T_RUN(test_walk_own_output);
	T_RUN(test_not_zstd);
	T_RUN(test_find);
	T_RUN(test_read_args);
	T_RUN(test_truncation);
	T_RUN(test_bitflips);
	T_RUN(test_lying_tables);
	T_RUN(test_big_frame_in_table);
	T_RUN(test_errors);
	t_sh("rm -rf '%s'", tmpdir);
	return t_done();
}
