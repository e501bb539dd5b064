/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_enc_tutil.h: what the VCDIFF encoder's two tests share
 * (test_vcdiff_enc, test_vcdiff_enc_lzma): the seeded generator and
 * growing buffers, the encoder's plumbing over memory (source reader,
 * output, op sink, encode()), QEMU-like pages, the private temporary
 * directory and stock xdelta3's decode and size of a pair. Header-only,
 * test code only. Plain static functions, as in the file they came
 * from: both tests use every one.
 */
#ifndef SNAPFS_VCDIFF_ENC_TUTIL_H
#define SNAPFS_VCDIFF_ENC_TUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/vcdiff_enc.h"
#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char tmpdir[64];
static int have_xdelta3;

/* Makes the private temporary directory /tmp/NAME.XXXXXX and looks for
 * stock xdelta3. Returns 0, or -1 after saying why. */
static int enc_setup(const char *name)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return -1;
	}
	have_xdelta3 = system("xdelta3 -V >/dev/null 2>&1") == 0;
	if (!have_xdelta3)
		fprintf(stderr, "xdelta3 not found: skipping stock decodes\n");
	return 0;
}

/* --- data --- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s;
}

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t v = rng();
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)rng();
}

struct buf {
	uint8_t *p;
	size_t len, cap;
};

/* Appends n bytes of p, which may point into b itself (test_target_copies
 * repeats parts of the target): such a p is kept as an offset across the
 * realloc. */
static void buf_add(struct buf *b, const void *p, size_t n)
{
	uintptr_t at = (uintptr_t)p, lo = (uintptr_t)b->p;
	int inside = b->p && at >= lo && at < lo + b->len;
	size_t off = inside ? (size_t)(at - lo) : 0;

	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *np = realloc(b->p, cap);
		if (!np)
			abort();
		b->p = np;
		b->cap = cap;
	}
	if (n)
		memmove(b->p + b->len, inside ? b->p + off : p, n);
	b->len += n;
}

static void buf_random(struct buf *b, size_t n)
{
	buf_add(b, NULL, 0);
	if (b->len + n > b->cap) {
		b->p = realloc(b->p, b->len + n);
		if (!b->p)
			abort();
		b->cap = b->len + n;
	}
	fill_random(b->p + b->len, n);
	b->len += n;
}

/* --- encoder plumbing --- */

struct msrc {
	const uint8_t *p;
	size_t n;
	int fail;	/* return -EIO on every read */
	uint64_t reads;
};

static ssize_t msrc_read(void *ctx, uint64_t off, void *dst, size_t len)
{
	struct msrc *s = ctx;

	s->reads++;
	if (s->fail)
		return -EIO;
	if (off >= s->n)
		return 0;
	if (len > s->n - off)
		len = s->n - off;
	memcpy(dst, s->p + off, len);
	return (ssize_t)len;
}

struct mout {
	struct buf b;
	size_t fail_after;	/* fail once this many bytes exist; 0 = never */
};

static int mout_write(void *ctx, const void *p, size_t n)
{
	struct mout *o = ctx;

	if (o->fail_after && o->b.len + n > o->fail_after)
		return -ENOSPC;
	buf_add(&o->b, p, n);
	return 0;
}

struct opv {
	struct vcdiff_op *v;
	size_t n, cap;
};

static int ops_sink(void *ctx, const struct vcdiff_op *op)
{
	struct opv *o = ctx;

	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 1024;
		o->v = realloc(o->v, o->cap * sizeof(*o->v));
		if (!o->v)
			abort();
	}
	o->v[o->n++] = *op;
	return 0;
}

struct result {
	struct buf patch;
	struct opv ops;
	int rc;
	double secs;
};

static void result_free(struct result *r)
{
	free(r->patch.p);
	free(r->ops.v);
	memset(r, 0, sizeof(*r));
}

/* Encodes tgt against src, feeding pieces of `piece` bytes (0 = all),
 * with secondary compression sec (VCDIFF_SEC_NONE or _LZMA_WINDOWED). */
static void encode_sec(struct result *r, const uint8_t *src, size_t src_n,
		       const uint8_t *tgt, size_t tgt_n, uint32_t win,
		       size_t budget, size_t piece, int sec)
{
	struct msrc s = { .p = src, .n = src_n };
	struct mout o = { { 0 }, 0 };
	struct vcdiff_enc_opts opts = {
		.win_size = win, .index_budget = budget,
		.on_op = ops_sink, .op_ctx = &r->ops, .secondary = sec,
	};
	struct vcdiff_enc *e;

	memset(r, 0, sizeof(*r));
	r->rc = vcdiff_enc_new(&e, &opts, src_n, msrc_read, &s, mout_write, &o);
	if (r->rc < 0)
		return;
	if (piece == 0)
		piece = tgt_n ? tgt_n : 1;
	for (size_t off = 0; off < tgt_n && r->rc == 0; off += piece) {
		size_t n = tgt_n - off < piece ? tgt_n - off : piece;
		r->rc = vcdiff_enc_write(e, tgt + off, n);
	}
	if (r->rc == 0)
		r->rc = vcdiff_enc_finish(e);
	if (r->rc == 0 && vcdiff_enc_target_size(e) != tgt_n)
		r->rc = -EPROTO;
	if (r->rc == 0 && vcdiff_enc_patch_size(e) != o.b.len)
		r->rc = -EPROTO;
	vcdiff_enc_free(e);
	r->patch = o.b;
}

static void encode(struct result *r, const uint8_t *src, size_t src_n,
		   const uint8_t *tgt, size_t tgt_n, uint32_t win,
		   size_t budget, size_t piece)
{
	encode_sec(r, src, src_n, tgt, tgt_n, win, budget, piece,
		   VCDIFF_SEC_NONE);
}

/* --- stock xdelta3 --- */

static void write_file(const char *name, const void *p, size_t n)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
		abort();
}

static uint8_t *read_file(const char *name, size_t *n)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	uint8_t *p = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (p && got < (size_t)st.st_size) {
		ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*n = got;
	return p;
}

/* Stock xdelta3 must rebuild the target exactly from src + patch. */
static void check_xdelta3(const struct result *r, const uint8_t *src,
			  size_t src_n, const uint8_t *tgt, size_t tgt_n)
{
	size_t n = 0;

	if (!have_xdelta3)
		return;
	write_file("src", src, src_n);
	write_file("patch", r->patch.p, r->patch.len);
	int rc = t_sh("cd %s && rm -f out && xdelta3 -d -f -s src patch out "
		    "2>xd.err || cat xd.err >&2", tmpdir);
	T_EQ(rc, 0);
	uint8_t *out = read_file("out", &n);
	T_CHECK(out != NULL);
	T_EQ(n, tgt_n);
	if (out && n == tgt_n)
		T_CHECK(memcmp(out, tgt, n) == 0);
	free(out);
}

/* Patch size of stock `xdelta3 -e -9 -B <src size>` on the same pair. */
static long xdelta3_size(const uint8_t *src, size_t src_n, const uint8_t *tgt,
			 size_t tgt_n)
{
	size_t n = 0;
	size_t b = src_n < (512u << 10) ? (512u << 10) : src_n;

	write_file("src", src, src_n);
	write_file("tgt", tgt, tgt_n);
	if (t_sh("cd %s && xdelta3 -e -9 -f -B %zu -s src tgt ref 2>/dev/null",
	       tmpdir, b) != 0)
		return -1;
	uint8_t *p = read_file("ref", &n);
	free(p);
	return p ? (long)n : -1;
}

/* QEMU-like pages: 8-byte big-endian headers, zero pages as 9 bytes. */
static void qemu_page(struct buf *b, uint64_t addr, int kind, uint64_t seed)
{
	uint8_t hdr[8], page[4096];
	uint64_t v = addr | (kind == 0 ? 0x02 : 0x08);

	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(v >> (56 - 8 * i));
	buf_add(b, hdr, 8);
	if (kind == 0) {
		buf_add(b, "", 1);
		return;
	}
	uint64_t save = rng_state;
	rng_seed(seed);
	if (kind == 1) {		/* text-like */
		static const char *w[] = { "the ", "kernel ", "page ", "of ",
					   "memory ", "snapshot ", "\n", "vm " };
		size_t at = 0;
		while (at < 4096) {
			const char *s = w[rng() % 8];
			for (; *s && at < 4096; s++)
				page[at++] = (uint8_t)*s;
		}
	} else if (kind == 2) {		/* pointer-like */
		uint64_t base = 0xffff888000000000ull + (rng() % 4096) * 4096;
		for (int i = 0; i < 512; i++) {
			uint64_t x = rng() % 4 ? base + (rng() % 65536) * 8 : 0;
			memcpy(page + 8 * i, &x, 8);
		}
	} else {
		fill_random(page, 4096);
	}
	rng_state = save;
	buf_add(b, page, 4096);
}

#endif
