/* SPDX-License-Identifier: MIT */
/*
 * test_zframe_bad: the seekable zstd reader on damaged and foreign files:
 * not zstd at all, every truncation, bit flips in frames and seek table,
 * seek tables that lie about counts and sizes, a frame too big under a
 * valid table. An error or the right bytes, never wrong bytes. And
 * errors reach the caller: write(2) failing under the writer, truncated
 * or corrupted input to the transcoder.
 *
 * Data is VM-like from a fixed seed. Files live in a fresh directory
 * under $TMPDIR, removed at the end.
 *
 * Not here: sound input, the writer's output and the stock `zstd` tool's
 * files (test_zframe). Shared helpers are in zframe_tutil.h.
 */
#include "codec/zframe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/zframe_tutil.h"

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

int main(void)
{
	if (tmpdir_make("test_zframe_bad") != 0)
		return 1;
	T_RUN(test_not_zstd);
	T_RUN(test_truncation);
	T_RUN(test_bitflips);
	T_RUN(test_lying_tables);
	T_RUN(test_big_frame_in_table);
	T_RUN(test_errors);
	t_sh("rm -rf '%s'", tmpdir);
	return t_done();
}
