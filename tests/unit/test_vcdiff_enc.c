/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_enc: the streaming VCDIFF encoder against stock xdelta3.
 *
 * Every case builds a source and a target from a fixed seed, encodes, then
 * (1) walks the window headers (limits, minimal layout, nothing after the
 * last window), (2) rebuilds the target from the op sink alone (source
 * bytes, patch bytes, run bytes) and compares, and (3) runs stock
 * `xdelta3 -d -s src patch out` and compares its output byte for byte.
 * Files live in a private mkdtemp directory, removed at the end.
 */
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include "codec/vcdiff_dec.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char tmpdir[64];
static int have_xdelta3;

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

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
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

/* --- checks --- */

/* Minimal base-128 varint (RFC 3284 §2); returns its length. */
static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 1;

	for (uint64_t x = v; x >= 0x80; x >>= 7)
		n++;
	for (size_t i = n; i-- > 0; v >>= 7)
		p[i] = (uint8_t)((v & 0x7f) | (i + 1 < n ? 0x80 : 0));
	return n;
}

static int get_var(const uint8_t *p, size_t n, size_t *pos, uint64_t *v)
{
	uint64_t x = 0;
	size_t start = *pos;

	for (;;) {
		if (*pos >= n || *pos - start >= 10)
			return -1;
		uint8_t c = p[(*pos)++];
		x = x << 7 | (c & 0x7f);
		if (!(c & 0x80))
			break;
	}
	if (*pos - start > 1 && p[start] == 0x80)
		return -1;	/* not minimal */
	*v = x;
	return 0;
}

/* Walks the patch's windows; checks the layout rules of vcdiff-notes §4.
 * Returns the number of windows, or -1 (with a failed check). */
static long check_windows(const struct buf *pt, size_t src_n, size_t tgt_n,
			  uint32_t win)
{
	const uint8_t *p = pt->p;
	size_t n = pt->len, pos = 5;
	uint64_t total = 0;
	long nw = 0;

	if (win == 0)
		win = 8u << 20;
	T_CHECK(n >= 5 && memcmp(p, "\xD6\xC3\xC4\x00\x00", 5) == 0);
	if (n < 5)
		return -1;
	while (pos < n) {
		uint8_t ind = p[pos++];
		uint64_t cpylen = 0, cpyoff = 0, enclen, tgtlen, dl, il, al;
		T_CHECK((ind & ~5) == 0 && (ind & 4));
		if (ind & 1) {
			T_CHECK(get_var(p, n, &pos, &cpylen) == 0);
			T_CHECK(get_var(p, n, &pos, &cpyoff) == 0);
			T_CHECK(cpyoff + cpylen <= src_n);
		}
		T_CHECK(get_var(p, n, &pos, &enclen) == 0);
		size_t body = pos;
		T_CHECK(get_var(p, n, &pos, &tgtlen) == 0);
		T_CHECK(tgtlen <= win);
		T_CHECK(cpylen + tgtlen <= UINT32_MAX);
		T_CHECK(pos < n && p[pos] == 0);
		pos++;
		T_CHECK(get_var(p, n, &pos, &dl) == 0);
		T_CHECK(get_var(p, n, &pos, &il) == 0);
		T_CHECK(get_var(p, n, &pos, &al) == 0);
		T_EQ(pos + 4 + dl + il + al - body, enclen);
		pos = body + enclen;
		T_CHECK(pos <= n);
		if (pos > n || t_cur_fail)
			return -1;
		total += tgtlen;
		nw++;
	}
	T_EQ(pos, n);
	T_EQ(total, tgt_n);
	T_CHECK(nw >= 1);
	return nw;
}

/* The op sink must tile the target exactly and rebuild it. */
static void check_ops(const struct result *r, const uint8_t *src,
		      size_t src_n, const uint8_t *tgt, size_t tgt_n)
{
	uint64_t at = 0;
	int bad = 0;

	for (size_t i = 0; i < r->ops.n && !bad; i++) {
		const struct vcdiff_op *op = &r->ops.v[i];
		if (op->tgt_off != at || op->len == 0 ||
		    op->tgt_off + op->len > tgt_n) {
			bad = 1;
			break;
		}
		const uint8_t *want = tgt + at;
		switch (op->kind) {
		case VCDIFF_OP_ADD:
			bad = op->addr + op->len > r->patch.len ||
			      memcmp(r->patch.p + op->addr, want, op->len);
			break;
		case VCDIFF_OP_COPY_SRC:
			bad = op->addr + op->len > src_n ||
			      memcmp(src + op->addr, want, op->len);
			break;
		case VCDIFF_OP_COPY_TGT:	/* may overlap: compare bytewise */
			bad = op->addr >= at;
			for (uint32_t k = 0; k < op->len && !bad; k++)
				bad = tgt[op->addr + k] != want[k];
			break;
		case VCDIFF_OP_RUN:
			for (uint32_t k = 0; k < op->len && !bad; k++)
				bad = want[k] != op->byte;
			break;
		default:
			bad = 1;
		}
		at += op->len;
	}
	T_CHECK(!bad);
	T_EQ(at, tgt_n);
}

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

/* Encode + all three checks. Returns the patch size (or -1). */
static long roundtrip(const char *what, const uint8_t *src, size_t src_n,
		      const uint8_t *tgt, size_t tgt_n, uint32_t win,
		      size_t budget, size_t piece)
{
	struct result r;
	long size = -1;

	encode(&r, src, src_n, tgt, tgt_n, win, budget, piece);
	T_EQ(r.rc, 0);
	if (r.rc == 0) {
		long nw = check_windows(&r.patch, src_n, tgt_n, win);
		check_ops(&r, src, src_n, tgt, tgt_n);
		check_xdelta3(&r, src, src_n, tgt, tgt_n);
		size = (long)r.patch.len;
		fprintf(stderr, "  %-28s src %9zu tgt %9zu -> patch %9ld, "
			"%ld windows, %zu ops\n", what, src_n, tgt_n, size, nw,
			r.ops.n);
	}
	result_free(&r);
	return size;
}

/* --- cases --- */

static void test_point_edits(void)
{
	size_t n = 6u << 20;
	uint8_t *src = malloc(n), *tgt = malloc(n);

	rng_seed(1);
	fill_random(src, n);
	memcpy(tgt, src, n);
	for (int i = 0; i < 2000; i++)
		tgt[rng() % n] ^= (uint8_t)(1 + rng() % 255);
	long sz = roundtrip("point edits", src, n, tgt, n, 0, 0, 0);
	T_CHECK(sz > 0 && sz < 40000);	/* ~2000 edits, a few bytes each */
	free(src);
	free(tgt);
}

/* Source with inserts and deletes every ~40 KiB: everything after shifts. */
static void make_shifted(struct buf *tgt, const uint8_t *src, size_t n)
{
	size_t at = 0;

	while (at < n) {
		size_t keep = 1000 + rng() % 80000;
		if (keep > n - at)
			keep = n - at;
		buf_add(tgt, src + at, keep);
		at += keep;
		switch (rng() % 3) {
		case 0:
			buf_random(tgt, 1 + rng() % 3000);	/* insert */
			break;
		case 1:
			at += 1 + rng() % 3000;			/* delete */
			if (at > n)
				at = n;
			break;
		default:
			buf_random(tgt, 1 + rng() % 16);	/* replace */
			at += 1 + rng() % 16;
			if (at > n)
				at = n;
		}
	}
}

static void test_shifts(void)
{
	size_t n = 16u << 20;
	uint8_t *src = malloc(n);
	struct buf tgt = { 0 };

	rng_seed(2);
	fill_random(src, n);
	make_shifted(&tgt, src, n);
	long sz = roundtrip("inserts/deletes", src, n, tgt.p, tgt.len, 0, 0, 0);
	long ref = xdelta3_size(src, n, tgt.p, tgt.len);
	fprintf(stderr, "  shifted data: ours %ld bytes, xdelta3 -e -9 -B %zu: "
		"%ld bytes\n", sz, n, ref);
	printf("shifted %zu MiB: ours %ld, xdelta3 -9 %ld\n", n >> 20, sz, ref);
	T_CHECK(sz > 0 && (size_t)sz < tgt.len / 20);
	free(src);
	free(tgt.p);
}

/* 1 MiB chunks shuffled, 4 KiB pages moved by megabytes. */
static void test_moved_blocks(void)
{
	size_t n = 24u << 20, ch = 1u << 20, nch = n / ch;
	uint8_t *src = malloc(n), *tgt = malloc(n);
	size_t perm[64];

	rng_seed(3);
	fill_random(src, n);
	for (size_t i = 0; i < nch; i++)
		perm[i] = i;
	for (size_t i = nch - 1; i > 0; i--) {
		size_t j = rng() % (i + 1), x = perm[i];
		perm[i] = perm[j];
		perm[j] = x;
	}
	for (size_t i = 0; i < nch; i++)
		memcpy(tgt + i * ch, src + perm[i] * ch, ch);
	for (int i = 0; i < 200; i++) {	/* pages from anywhere */
		size_t from = (rng() % (n / 4096)) * 4096 + rng() % 64;
		size_t to = (rng() % (n / 4096 - 1)) * 4096;
		memcpy(tgt + to, src + from, 4096);
	}
	long sz = roundtrip("moved blocks", src, n, tgt, n, 0, 0, 0);
	T_CHECK(sz > 0 && sz < 200000);
	free(src);
	free(tgt);
}

static void test_zero_runs(void)
{
	size_t n = 8u << 20;
	uint8_t *src = malloc(n), *tgt = malloc(n);

	rng_seed(4);
	fill_random(src, n);
	for (int i = 0; i < 300; i++)
		memset(src + (rng() % (n / 4096)) * 4096, 0, 4096);
	memcpy(tgt, src, n);
	for (int i = 0; i < 300; i++)	/* new zero pages */
		memset(tgt + (rng() % (n / 4096)) * 4096, 0, 4096);
	for (int i = 0; i < 40; i++)	/* constant runs of other bytes */
		memset(tgt + rng() % (n - 70000), (int)(rng() & 0xff),
		       17 + rng() % 65536);
	memset(tgt + n - 100000, 0, 100000);	/* a long tail of zeros */
	struct result r;
	encode(&r, src, n, tgt, n, 0, 0, 0);
	T_EQ(r.rc, 0);
	size_t runs = 0, run_bytes = 0;
	for (size_t i = 0; i < r.ops.n; i++)
		if (r.ops.v[i].kind == VCDIFF_OP_RUN) {
			runs++;
			run_bytes += r.ops.v[i].len;
		}
	T_CHECK(runs >= 40);
	T_CHECK(run_bytes >= 100000);
	result_free(&r);
	long sz = roundtrip("zero runs", src, n, tgt, n, 0, 0, 0);
	T_CHECK(sz > 0 && sz < 50000);
	free(src);
	free(tgt);
}

static void test_random_target(void)
{
	size_t n = 4u << 20, m = 5u << 20;
	uint8_t *src = malloc(n), *tgt = malloc(m);

	rng_seed(5);
	fill_random(src, n);
	fill_random(tgt, m);
	long sz = roundtrip("random target", src, n, tgt, m, 0, 0, 0);
	/* All literal: the target plus a little framing. */
	T_CHECK(sz >= (long)m && sz < (long)m + 1000);
	free(src);
	free(tgt);
}

static void test_empty(void)
{
	uint8_t src[100], tgt[1];

	rng_seed(6);
	fill_random(src, sizeof(src));
	long sz = roundtrip("empty target", src, sizeof(src), tgt, 0, 0, 0, 0);
	T_CHECK(sz > 5 && sz < 20);
	sz = roundtrip("empty both", NULL, 0, tgt, 0, 0, 0, 0);
	T_CHECK(sz > 5 && sz < 20);
}

static void test_empty_source(void)
{
	size_t m = 3u << 20;
	uint8_t *tgt = malloc(m);

	rng_seed(7);
	fill_random(tgt, m);
	memset(tgt + 1000, 0, 50000);
	long sz = roundtrip("empty source", NULL, 0, tgt, m, 0, 0, 0);
	T_CHECK(sz > 0 && sz < (long)m);
	/* A source shorter than one key. */
	uint8_t tiny[20];
	memcpy(tiny, tgt, sizeof(tiny));
	sz = roundtrip("tiny source", tiny, sizeof(tiny), tgt, m, 0, 0, 0);
	T_CHECK(sz > 0);
	free(tgt);
}

static int same_ops(const struct opv *a, const struct opv *b)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct vcdiff_op *x = &a->v[i], *y = &b->v[i];
		if (x->tgt_off != y->tgt_off || x->addr != y->addr ||
		    x->len != y->len || x->kind != y->kind || x->byte != y->byte)
			return 0;
	}
	return 1;
}

/* Repeats inside the target: COPY_TGT, overlapping ones included. */
static void test_target_copies(void)
{
	struct buf tgt = { 0 };
	uint8_t pat[5000];

	rng_seed(14);
	buf_random(&tgt, 300000);
	for (size_t i = 0; i < sizeof(pat); i++)	/* period 3: overlaps */
		pat[i] = "xyz"[i % 3];
	buf_add(&tgt, pat, sizeof(pat));
	buf_add(&tgt, tgt.p + 1000, 100000);		/* a far repeat */
	for (int i = 0; i < 300; i++) {			/* short repeats */
		size_t from = rng() % 300000;
		buf_add(&tgt, tgt.p + from, 5 + rng() % 40);
		buf_random(&tgt, 1 + rng() % 20);
	}
	struct result r;
	encode(&r, NULL, 0, tgt.p, tgt.len, 0, 0, 0);
	T_EQ(r.rc, 0);
	size_t tc = 0, overlap = 0;
	for (size_t i = 0; i < r.ops.n; i++)
		if (r.ops.v[i].kind == VCDIFF_OP_COPY_TGT) {
			tc++;
			overlap += r.ops.v[i].addr + r.ops.v[i].len >
				   r.ops.v[i].tgt_off;
		}
	T_CHECK(tc >= 100);
	T_CHECK(overlap >= 1);
	result_free(&r);
	long sz = roundtrip("target copies", NULL, 0, tgt.p, tgt.len, 0, 0, 0);
	T_CHECK(sz > 0 && sz < 300000 + 10000);
	/* The same with a source and small windows. */
	sz = roundtrip("target copies, win 64K", tgt.p, 200000, tgt.p, tgt.len,
		       65536, 0, 0);
	T_CHECK(sz > 0);
	free(tgt.p);
}

/* 1-byte pieces and 16 MiB pieces give the same bytes and ops. */
static void test_pieces(void)
{
	size_t n = 4u << 20;
	uint8_t *src = malloc(n);
	struct buf tgt = { 0 };
	struct result a, b, c;

	rng_seed(8);
	fill_random(src, n);
	make_shifted(&tgt, src, n);
	encode(&a, src, n, tgt.p, tgt.len, 1u << 20, 0, 1);
	encode(&b, src, n, tgt.p, tgt.len, 1u << 20, 0, 16u << 20);
	encode(&c, src, n, tgt.p, tgt.len, 1u << 20, 0, 77777);
	T_EQ(a.rc, 0);
	T_EQ(b.rc, 0);
	T_EQ(c.rc, 0);
	T_EQ(a.patch.len, b.patch.len);
	T_EQ(c.patch.len, b.patch.len);
	T_CHECK(a.patch.len == b.patch.len &&
		memcmp(a.patch.p, b.patch.p, a.patch.len) == 0);
	T_CHECK(c.patch.len == b.patch.len &&
		memcmp(c.patch.p, b.patch.p, c.patch.len) == 0);
	T_EQ(a.ops.n, b.ops.n);
	T_CHECK(a.ops.n == b.ops.n && same_ops(&a.ops, &b.ops));
	check_ops(&a, src, n, tgt.p, tgt.len);
	check_xdelta3(&a, src, n, tgt.p, tgt.len);
	result_free(&a);
	result_free(&b);
	result_free(&c);
	/* The biggest piece the brief allows, in one write. */
	long sz = roundtrip("16 MiB pieces, 16 MiB win", src, n, tgt.p, tgt.len,
			    16u << 20, 0, 16u << 20);
	T_CHECK(sz > 0);
	free(src);
	free(tgt.p);
}

/* Target sizes around window multiples; matches across window ends. */
static void test_window_bounds(void)
{
	uint32_t win = 65536;
	size_t sizes[] = { 1, 7, 8, 65535, 65536, 65537, 3 * 65536,
			   3 * 65536 + 1, 1000000 };
	size_t n = 1u << 20;
	uint8_t *src = malloc(n), *tgt = malloc(n + 8);

	rng_seed(9);
	fill_random(src, n);
	memcpy(tgt, src + 12345, n - 12345);
	fill_random(tgt + n - 12345, 12345 + 8);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "win 64K, tgt %zu", sizes[i]);
		long sz = roundtrip(what, src, n, tgt, sizes[i], win, 0, 0);
		T_CHECK(sz > 0);
	}
	/* Odd window size, the largest window, a tiny window. */
	T_CHECK(roundtrip("win 100001", src, n, tgt, n, 100001, 0, 0) > 0);
	T_CHECK(roundtrip("win 16 MiB", src, n, tgt, n, 16u << 20, 0, 0) > 0);
	T_CHECK(roundtrip("win 1000", src, n, tgt, 200000, 1000, 0, 0) > 0);
	free(src);
	free(tgt);
}

/* A tiny index budget forces large blocks; a huge one must stay sane. */
static void test_budgets(void)
{
	size_t n = 8u << 20;
	uint8_t *src = malloc(n);
	struct buf tgt = { 0 };

	rng_seed(10);
	fill_random(src, n);
	make_shifted(&tgt, src, n);
	long a = roundtrip("budget 4 KiB", src, n, tgt.p, tgt.len, 0, 4096, 0);
	long b = roundtrip("budget 1 MiB", src, n, tgt.p, tgt.len, 0, 1u << 20, 0);
	long c = roundtrip("budget default", src, n, tgt.p, tgt.len, 0, 0, 0);
	T_CHECK(a > 0 && b > 0 && c > 0);
	T_CHECK(c <= b + 1000);
	free(src);
	free(tgt.p);
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

static void test_qemu_like(void)
{
	size_t pages = 4096;
	struct buf src = { 0 }, tgt = { 0 };
	int *kind = malloc(pages * sizeof(int));
	uint64_t *seed = malloc(pages * sizeof(uint64_t));

	rng_seed(11);
	for (size_t i = 0; i < pages; i++) {
		kind[i] = (int)(rng() % 4);
		seed[i] = rng();
		qemu_page(&src, i * 4096, kind[i], seed[i]);
	}
	for (size_t i = 0; i < pages; i++) {
		uint64_t r = rng() % 100;
		if (r < 3)
			seed[i] = rng();		/* changed content */
		else if (r < 4)
			kind[i] = kind[i] ? 0 : 1 + (int)(rng() % 3);
		qemu_page(&tgt, i * 4096, kind[i], seed[i]);
	}
	long sz = roundtrip("qemu-like", src.p, src.len, tgt.p, tgt.len, 0, 0, 0);
	long ref = xdelta3_size(src.p, src.len, tgt.p, tgt.len);
	printf("qemu-like %zu KiB: ours %ld, xdelta3 -9 %ld\n", tgt.len >> 10,
	       sz, ref);
	T_CHECK(sz > 0 && (size_t)sz < tgt.len / 5);
	free(kind);
	free(seed);
	free(src.p);
	free(tgt.p);
}

/* Callback errors pass through and stick. */
static void test_errors(void)
{
	uint8_t src[4096], tgt[8192];
	struct msrc s = { .p = src, .n = sizeof(src), .fail = 1 };
	struct mout o = { { 0 }, 0 };
	struct vcdiff_enc *e = NULL;

	rng_seed(12);
	fill_random(src, sizeof(src));
	fill_random(tgt, sizeof(tgt));
	T_EQ(vcdiff_enc_new(&e, NULL, sizeof(src), msrc_read, &s, mout_write,
			    &o), -EIO);
	T_CHECK(e == NULL);
	/* A source shorter than declared. */
	s.fail = 0;
	T_EQ(vcdiff_enc_new(&e, NULL, sizeof(src) + 100, msrc_read, &s,
			    mout_write, &o), -EIO);
	/* Output failing on the first window. */
	o.fail_after = 10;
	T_EQ(vcdiff_enc_new(&e, NULL, sizeof(src), msrc_read, &s, mout_write,
			    &o), 0);
	T_EQ(vcdiff_enc_write(e, tgt, sizeof(tgt)), 0);	/* buffered */
	T_EQ(vcdiff_enc_finish(e), -ENOSPC);
	T_EQ(vcdiff_enc_finish(e), -ENOSPC);
	vcdiff_enc_free(e);
	free(o.b.p);
	vcdiff_enc_free(NULL);
	/* Bad arguments. */
	struct vcdiff_enc_opts big = { .win_size = (16u << 20) + 1 };
	T_EQ(vcdiff_enc_new(&e, &big, 0, NULL, NULL, mout_write, &o), -EINVAL);
}

/*
 * A sparse 4.5 GiB source whose target copies from both ends: each window's
 * segment must stay below 4 GiB, so windows are cut early.
 */
static ssize_t fd_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	ssize_t r = pread(*(int *)ctx, buf, len, (off_t)off);
	return r < 0 ? -errno : r;
}

static void test_span_cut(void)
{
	uint64_t far = (9ull << 29);	/* 4.5 GiB */
	size_t piece = 1u << 20;
	uint8_t *a = malloc(piece), *b = malloc(piece);
	uint8_t *tgt = malloc(4 * piece);
	char path[128];

	rng_seed(13);
	fill_random(a, piece);
	fill_random(b, piece);
	snprintf(path, sizeof(path), "%s/src", tmpdir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	T_EQ(pwrite(fd, a, piece, 0), (ssize_t)piece);
	T_EQ(pwrite(fd, b, piece, (off_t)far), (ssize_t)piece);
	uint64_t src_n = far + piece;
	for (int i = 0; i < 4; i++)	/* a b a b, in 256 KiB halves */
		memcpy(tgt + i * piece, (i & 1) ? b : a, piece);

	struct mout o = { { 0 }, 0 };
	struct opv ops = { 0 };
	struct vcdiff_enc_opts opts = { .on_op = ops_sink, .op_ctx = &ops };
	struct vcdiff_enc *e;
	int rc = vcdiff_enc_new(&e, &opts, src_n, fd_read, &fd, mout_write, &o);
	T_EQ(rc, 0);
	if (rc == 0) {
		T_EQ(vcdiff_enc_write(e, tgt, 4 * piece), 0);
		T_EQ(vcdiff_enc_finish(e), 0);
		vcdiff_enc_free(e);
		long nw = check_windows(&o.b, src_n, 4 * piece, 0);
		T_CHECK(nw >= 4);	/* one per side at least */
		fprintf(stderr, "  span cut: %ld windows, patch %zu\n", nw,
			o.b.len);
		write_file("patch", o.b.p, o.b.len);
		if (have_xdelta3) {
			size_t n = 0;
			T_EQ(t_sh("cd %s && rm -f out && xdelta3 -d -f -s src patch "
				"out", tmpdir), 0);
			uint8_t *out = read_file("out", &n);
			T_CHECK(out && n == 4 * piece &&
				memcmp(out, tgt, n) == 0);
			free(out);
		}
	}
	close(fd);
	unlink(path);
	free(o.b.p);
	free(ops.v);
	free(a);
	free(b);
	free(tgt);
}

/* --- lzma secondary compression, one xz block per section --- */

/* A QEMU-like pair of `pages` pages (see test_qemu_like). */
static void qemu_pair(struct buf *src, struct buf *tgt, size_t pages,
		      uint64_t seed0)
{
	int *kind = malloc(pages * sizeof(int));
	uint64_t *seed = malloc(pages * sizeof(uint64_t));

	rng_seed(seed0);
	for (size_t i = 0; i < pages; i++) {
		kind[i] = (int)(rng() % 4);
		seed[i] = rng();
		qemu_page(src, i * 4096, kind[i], seed[i]);
	}
	for (size_t i = 0; i < pages; i++) {
		uint64_t r = rng() % 100;
		if (r < 5)
			seed[i] = rng();
		else if (r < 6)
			kind[i] = kind[i] ? 0 : 1 + (int)(rng() % 3);
		qemu_page(tgt, i * 4096, kind[i], seed[i]);
		if (r >= 6 && r < 9 && kind[i]) {
			/* One word in every 64 bytes rewritten in place (an
			 * array of counters, say): COPY/ADD pairs at a fixed
			 * stride, whose addresses compress. */
			uint64_t x = rng();
			for (size_t k = 0; k < 4096; k += 64, x++)
				memcpy(tgt->p + tgt->len - 4096 + k, &x, 8);
		}
	}
	free(kind);
	free(seed);
}

/*
 * Decodes every window of the patch in fd, last first, each odd one with a
 * decoder of its own (so no state can carry over), and compares with tgt.
 * Returns the number of windows, or -1 after a failed check.
 */
static long dec_windows_backwards(int fd, const uint8_t *src, size_t src_n,
				  const uint8_t *tgt, size_t tgt_n)
{
	struct msrc ms = { .p = src, .n = src_n };
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	uint8_t *out = malloc(VCDIFF_WIN_MAX);
	const char *why = "";
	long nw = -1;
	int fail0 = t_cur_fail;

	T_EQ(t_patch_open(&p, fd, &why), 0);
	T_EQ(vcdiff_dec_new(&d), 0);
	if (!p || !d || !out)
		goto out;
	T_EQ(vcdiff_patch_target_size(p), tgt_n);
	size_t n = vcdiff_patch_nwin(p);
	for (size_t i = n; i-- > 0;) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		struct vcdiff_dec *own = NULL;
		struct vcdiff_dec *use = d;
		if (i & 1) {
			T_EQ(vcdiff_dec_new(&own), 0);
			use = own;
		}
		ssize_t r = use ? vcdiff_dec_window(use, p, i, msrc_read, &ms,
						    NULL, NULL, out,
						    VCDIFF_WIN_MAX) : -ENOMEM;
		if (r != (ssize_t)w->tgt_len)
			fprintf(stderr, "  window %zu: %zd (%s)\n", i, r,
				use ? vcdiff_dec_reason(use) : "");
		T_EQ(r, w->tgt_len);
		if (r == (ssize_t)w->tgt_len)
			T_CHECK(memcmp(out, tgt + w->tgt_off, w->tgt_len) == 0);
		vcdiff_dec_free(own);
	}
	nw = t_cur_fail != fail0 ? -1 : (long)n;
out:
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	free(out);
	return nw;
}

/* Every ADD op, read through vcdiff_dec_section where the data section
 * is compressed, gives the target's bytes; ops equal the encoder's. */
static void check_dec_ops(int fd, const struct result *r, const uint8_t *tgt)
{
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL, *sd = NULL;
	uint8_t *data = malloc(4 * VCDIFF_WIN_MAX);
	size_t k = 0, compressed = 0;
	int bad = 0;

	T_EQ(t_patch_open(&p, fd, NULL), 0);
	T_EQ(vcdiff_dec_new(&d), 0);
	T_EQ(vcdiff_dec_new(&sd), 0);
	if (!p || !d || !sd || !data)
		goto out;
	for (size_t i = 0; i < vcdiff_patch_nwin(p) && !bad; i++) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		const struct vcdiff_op *ops;
		size_t nops;
		int z = (w->del_ind & VCDIFF_DEL_DATA) != 0;

		int rc = vcdiff_dec_ops(d, p, i, &ops, &nops);
		T_EQ(rc, 0);
		ssize_t dl = vcdiff_dec_section(sd, p, i, VCDIFF_SECT_DATA,
						data, 4 * VCDIFF_WIN_MAX);
		T_EQ(dl, w->data_plain_len);
		if (rc || dl < 0) {
			bad = 1;
			break;
		}
		compressed += z;
		for (size_t j = 0; j < nops && !bad; j++, k++) {
			const struct vcdiff_op *op = &ops[j];
			const struct vcdiff_op *e = &r->ops.v[k];
			bad = k >= r->ops.n || op->tgt_off != e->tgt_off ||
			      op->addr != e->addr || op->len != e->len ||
			      op->kind != e->kind ||
			      (op->kind == VCDIFF_OP_RUN &&
			       op->byte != e->byte);
			if (bad)
				fprintf(stderr, "  op %zu: %d %llu %llu %u vs "
					"%d %llu %llu %u\n", k, op->kind,
					(unsigned long long)op->tgt_off,
					(unsigned long long)op->addr, op->len,
					e->kind,
					(unsigned long long)e->tgt_off,
					(unsigned long long)e->addr, e->len);
			if (op->kind != VCDIFF_OP_ADD || bad)
				continue;
			const uint8_t *lit = z ? data + op->addr :
				r->patch.p + op->addr;
			uint64_t lim = z ? (uint64_t)dl : r->patch.len;
			bad = op->addr + op->len > lim ||
			      memcmp(lit, tgt + op->tgt_off, op->len) != 0;
		}
	}
	T_CHECK(!bad);
	T_EQ(k, r->ops.n);
	T_CHECK(compressed > 0);
out:
	vcdiff_dec_free(d);
	vcdiff_dec_free(sd);
	vcdiff_patch_free(p);
	free(data);
}

static void test_lzma_roundtrip(void)
{
	struct buf src = { 0 }, tgt = { 0 };
	struct result plain, z;

	qemu_pair(&src, &tgt, 4096, 21);
	encode(&plain, src.p, src.len, tgt.p, tgt.len, 1u << 20, 0, 0);
	encode_sec(&z, src.p, src.len, tgt.p, tgt.len, 1u << 20, 0, 100000,
		   VCDIFF_SEC_LZMA_WINDOWED);
	T_EQ(plain.rc, 0);
	T_EQ(z.rc, 0);
	if (plain.rc || z.rc)
		goto out;
	long ref = have_xdelta3 ? xdelta3_size(src.p, src.len, tgt.p,
					       tgt.len) : -1;
	printf("lzma windowed, %zu KiB, 1 MiB windows: plain %zu, lzma %zu, "
	       "xdelta3 -9 %ld\n", tgt.len >> 10, plain.patch.len,
	       z.patch.len, ref);
	T_CHECK(z.patch.len < plain.patch.len * 95 / 100);
	/* Header: VCD_SECONDARY, id 2 (lzma). */
	T_CHECK(z.patch.len > 6 && z.patch.p[4] == 0x01 &&
		z.patch.p[5] == 0x02);
	/* With lzma, repeats among literals are left to lzma: no COPY_TGT,
	 * and the patch is no larger than xdelta3 -e -9 -B's. */
	size_t tcopies = 0;
	for (size_t i = 0; i < z.ops.n; i++)
		tcopies += z.ops.v[i].kind == VCDIFF_OP_COPY_TGT;
	T_EQ(tcopies, 0);
	if (ref > 0)
		T_CHECK(z.patch.len <= (size_t)ref);

	int fd = t_mem_fd(z.patch.p, z.patch.len);
	T_CHECK(fd >= 0);
	struct vcdiff_patch *p = NULL;
	T_EQ(t_patch_open(&p, fd, NULL), 0);
	if (p) {
		size_t all3 = 0, data = 0, n = vcdiff_patch_nwin(p);
		T_EQ(vcdiff_patch_secondary(p), VCDIFF_SEC_LZMA);
		T_EQ(vcdiff_patch_windowed(p), 1);
		for (size_t i = 0; i < n; i++) {
			uint8_t di = vcdiff_patch_win(p, i)->del_ind;
			all3 += di == 7;
			data += (di & VCDIFF_DEL_DATA) != 0;
		}
		fprintf(stderr, "  %zu windows, %zu with data compressed, %zu "
			"with all three\n", n, data, all3);
		T_CHECK(n >= 10 && data >= n - 1 && all3 >= 1);

		/* Argument checks of vcdiff_dec_section. */
		struct vcdiff_dec *d = NULL;
		uint8_t small[8];
		T_EQ(vcdiff_dec_new(&d), 0);
		const struct vcdiff_win *w1 = vcdiff_patch_win(p, 1);
		T_EQ(vcdiff_dec_section(d, p, 1, VCDIFF_SECT_INST, small,
					sizeof(small)), -ERANGE);
		T_EQ(vcdiff_dec_section(d, p, 1, 3, small, sizeof(small)),
		     -EINVAL);
		T_EQ(vcdiff_dec_section(d, p, n, 0, small, sizeof(small)),
		     -EINVAL);
		T_CHECK(w1->inst_plain_len > w1->inst_len);
		vcdiff_dec_free(d);
		vcdiff_patch_free(p);
	}
	T_CHECK(dec_windows_backwards(fd, src.p, src.len, tgt.p, tgt.len)
		>= 10);
	check_dec_ops(fd, &z, tgt.p);
	check_xdelta3(&z, src.p, src.len, tgt.p, tgt.len);

	/* The one-time conversion still works on such a patch. */
	int pfd = memfd_create("plain", 0);
	const char *why = "";
	T_EQ(t_recode_plain(fd, pfd, NULL, NULL, &why), 0);
	struct vcdiff_patch *pp = NULL;
	T_EQ(t_patch_open(&pp, pfd, NULL), 0);
	if (pp)
		T_CHECK(vcdiff_patch_secondary(pp) == VCDIFF_SEC_NONE &&
			vcdiff_patch_windowed(pp) == 1);
	vcdiff_patch_free(pp);
	T_CHECK(dec_windows_backwards(pfd, src.p, src.len, tgt.p, tgt.len)
		>= 10);
	close(pfd);
	close(fd);
out:
	result_free(&plain);
	result_free(&z);
	free(src.p);
	free(tgt.p);
}

/* The first window has nothing worth compressing, so the xz stream
 * header of each kind comes with a later window. */
static void test_lzma_late_header(void)
{
	struct buf src = { 0 }, tgt = { 0 };
	struct result z;

	rng_seed(22);
	buf_random(&src, 65536);
	buf_add(&tgt, src.p, src.len);
	for (int i = 0; i < 40; i++)
		qemu_page(&tgt, (uint64_t)i << 12, 1 + (i % 2), rng());
	encode_sec(&z, src.p, src.len, tgt.p, tgt.len, 65536, 0, 0,
		   VCDIFF_SEC_LZMA_WINDOWED);
	T_EQ(z.rc, 0);
	int fd = t_mem_fd(z.patch.p, z.patch.len);
	struct vcdiff_patch *p = NULL;
	T_EQ(t_patch_open(&p, fd, NULL), 0);
	if (p) {
		T_EQ(vcdiff_patch_secondary(p), VCDIFF_SEC_LZMA);
		T_EQ(vcdiff_patch_windowed(p), 1);
		T_CHECK(vcdiff_patch_nwin(p) >= 3);
		T_EQ(vcdiff_patch_win(p, 0)->del_ind, 0);
		T_CHECK(vcdiff_patch_win(p, 1)->del_ind & VCDIFF_DEL_DATA);
	}
	vcdiff_patch_free(p);
	T_CHECK(dec_windows_backwards(fd, src.p, src.len, tgt.p, tgt.len)
		>= 3);
	check_xdelta3(&z, src.p, src.len, tgt.p, tgt.len);
	close(fd);
	result_free(&z);
	free(src.p);
	free(tgt.p);
}

/* Stock xdelta3's own lzma (one stream across windows) is told apart:
 * its windows after the first cannot be decoded alone. */
static void test_lzma_stock_continuous(void)
{
	struct buf src = { 0 }, tgt = { 0 };
	size_t n = 0;

	if (!have_xdelta3)
		return;
	qemu_pair(&src, &tgt, 1024, 23);
	write_file("src", src.p, src.len);
	write_file("tgt", tgt.p, tgt.len);
	T_EQ(t_sh("cd %s && xdelta3 -e -f -W 1048576 -s src tgt stock",
		  tmpdir), 0);
	uint8_t *stock = read_file("stock", &n);
	int fd = stock ? t_mem_fd(stock, n) : -1;
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	T_EQ(t_patch_open(&p, fd, NULL), 0);
	T_EQ(vcdiff_dec_new(&d), 0);
	if (p && d) {
		const struct vcdiff_op *ops;
		size_t nops;
		uint8_t *buf = malloc(4 * VCDIFF_WIN_MAX);
		T_CHECK(vcdiff_patch_nwin(p) >= 3);
		T_EQ(vcdiff_patch_secondary(p), VCDIFF_SEC_LZMA);
		T_EQ(vcdiff_patch_windowed(p), 0);
		T_CHECK(vcdiff_patch_win(p, 1)->del_ind & VCDIFF_DEL_DATA);
		T_EQ(vcdiff_dec_ops(d, p, 1, &ops, &nops), -ENOTSUP);
		T_EQ(vcdiff_dec_section(d, p, 1, VCDIFF_SECT_DATA, buf,
					4 * VCDIFF_WIN_MAX), -ENOTSUP);
		free(buf);
	}
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	if (fd >= 0)
		close(fd);
	free(stock);
	free(src.p);
	free(tgt.p);
}

/* The patch with window w re-serialised with section k shortened by cut
 * bytes (lengths and enclen consistent), everything else unchanged. */
static void cut_section(struct buf *out, const struct buf *pt,
			const struct vcdiff_win *w, size_t next_off, int k,
			uint32_t cut)
{
	const uint32_t orig[3] = { w->data_len, w->inst_len, w->addr_len };
	uint32_t len[3] = { w->data_len, w->inst_len, w->addr_len };
	const uint8_t *sect = pt->p + w->data_off;
	uint8_t h[64], tmp[10];
	size_t n = 0;

	out->len = 0;
	buf_add(out, pt->p, (size_t)w->hdr_off);
	h[n++] = w->win_ind;
	if (w->win_ind & 3) {
		n += varint_put(h + n, w->cpy_len);
		n += varint_put(h + n, w->cpy_off);
	}
	len[k] -= cut;
	uint64_t enclen = 1 + 4 + (uint64_t)len[0] + len[1] + len[2] +
			  varint_put(tmp, w->tgt_len);
	for (int j = 0; j < 3; j++)
		enclen += varint_put(tmp, len[j]);
	n += varint_put(h + n, enclen);
	n += varint_put(h + n, w->tgt_len);
	h[n++] = w->del_ind;
	for (int j = 0; j < 3; j++)
		n += varint_put(h + n, len[j]);
	for (int j = 0; j < 4; j++)
		h[n++] = (uint8_t)(w->adler32 >> (24 - 8 * j));
	buf_add(out, h, n);
	for (int j = 0, at = 0; j < 3; at += (int)orig[j], j++)
		buf_add(out, sect + at, len[j]);
	buf_add(out, pt->p + next_off, pt->len - next_off);
}

/*
 * Damaged compressed sections: a byte changed anywhere in them, or cut
 * short (with consistent lengths, so only the lzma decoder can notice).
 * The window then decodes exactly or fails with -EBADMSG (-ENOTSUP only
 * if the damage hit a block header, so the patch no longer counts as
 * windowed); never a crash, never wrong bytes.
 */
static void test_lzma_damage(void)
{
	struct buf src = { 0 }, tgt = { 0 }, bad = { 0 };
	struct result z;
	uint8_t *out = malloc(VCDIFF_WIN_MAX);
	size_t flips_bad = 0, cuts = 0;

	qemu_pair(&src, &tgt, 600, 24);
	encode_sec(&z, src.p, src.len, tgt.p, tgt.len, 262144, 0, 0,
		   VCDIFF_SEC_LZMA_WINDOWED);
	T_EQ(z.rc, 0);
	int fd = t_mem_fd(z.patch.p, z.patch.len);
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	struct msrc ms = { .p = src.p, .n = src.len };
	T_EQ(t_patch_open(&p, fd, NULL), 0);
	T_EQ(vcdiff_dec_new(&d), 0);
	if (!p || !d || !out)
		goto out;
	size_t nw = vcdiff_patch_nwin(p);
	T_CHECK(nw >= 4);
	rng_seed(25);
	for (int it = 0; it < 400; it++) {
		size_t i = rng() % nw;
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		if (!(w->del_ind & VCDIFF_DEL_DATA))
			continue;
		/* data, inst and addr are contiguous: hit any of them */
		uint64_t span = (uint64_t)w->data_len + w->inst_len +
				w->addr_len;
		uint64_t at = w->data_off + rng() % span;
		bad.len = 0;
		buf_add(&bad, z.patch.p, z.patch.len);
		bad.p[at] ^= (uint8_t)(1 + rng() % 255);
		int bfd = t_mem_fd(bad.p, bad.len);
		struct vcdiff_patch *bp = NULL;
		T_EQ(t_patch_open(&bp, bfd, NULL), 0);
		if (bp) {
			int windowed = vcdiff_patch_windowed(bp);
			ssize_t r = vcdiff_dec_window(d, bp, i, msrc_read, &ms,
						      NULL, NULL, out,
						      VCDIFF_WIN_MAX);
			if (r >= 0) {
				T_EQ(r, w->tgt_len);
				T_CHECK(memcmp(out, tgt.p + w->tgt_off,
					       w->tgt_len) == 0);
			} else if (windowed) {
				T_EQ(r, -EBADMSG);
			} else {
				T_EQ(r, -ENOTSUP);
			}
			flips_bad += r < 0;
		}
		vcdiff_patch_free(bp);
		close(bfd);
	}
	/* Cuts: every short cut and some long ones, each kind, in the first
	 * window (it carries the stream headers) and a later one. */
	size_t wins[2] = { 0, nw / 2 };
	for (int wi = 0; wi < 2; wi++) {
		size_t i = wins[wi];
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		const struct vcdiff_win *nx = vcdiff_patch_win(p, i + 1);
		size_t next_off = nx ? (size_t)nx->hdr_off : z.patch.len;
		for (int k = 0; k < 3; k++) {
			uint32_t len = k == 0 ? w->data_len : k == 1 ?
				       w->inst_len : w->addr_len;
			if (!(w->del_ind & (1 << k)) || len < 60)
				continue;
			for (uint32_t c = 1; c < len - 40;
			     c = c < 24 ? c + 1 : c * 2) {
				cut_section(&bad, &z.patch, w, next_off, k, c);
				int bfd = t_mem_fd(bad.p, bad.len);
				struct vcdiff_patch *bp = NULL;
				T_EQ(t_patch_open(&bp, bfd, NULL), 0);
				if (bp) {
					T_EQ(vcdiff_patch_windowed(bp), 1);
					ssize_t r = vcdiff_dec_window(
						d, bp, i, msrc_read, &ms, NULL,
						NULL, out, VCDIFF_WIN_MAX);
					/* As in xdelta3, the block's end (end
					 * marker, 0-3 bytes of padding) may be
					 * missing once the output is full. */
					const uint8_t *want = tgt.p +
							      w->tgt_off;
					if (c <= 4 && r >= 0)
						T_CHECK(r == w->tgt_len &&
							!memcmp(out, want,
								w->tgt_len));
					else
						T_EQ(r, -EBADMSG);
					r = vcdiff_dec_section(d, bp, i, k,
						out, VCDIFF_WIN_MAX);
					if (c > 4)
						T_EQ(r, -EBADMSG);
					cuts++;
				}
				vcdiff_patch_free(bp);
				close(bfd);
			}
		}
	}
	fprintf(stderr, "  damage: %zu changed bytes failed cleanly, %zu "
		"cuts\n", flips_bad, cuts);
	T_CHECK(flips_bad >= 50);
	T_CHECK(cuts >= 40);
out:
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
	result_free(&z);
	free(bad.p);
	free(out);
	free(src.p);
	free(tgt.p);
}

static void test_lzma_opts(void)
{
	struct mout o = { { 0 }, 0 };
	struct vcdiff_enc *e = NULL;
	struct vcdiff_enc_opts a = { .secondary = 7 };
	struct vcdiff_enc_opts b = { .secondary = VCDIFF_SEC_LZMA_WINDOWED,
				     .lzma_preset = 10 };
	struct vcdiff_enc_opts c = { .secondary = VCDIFF_SEC_LZMA_WINDOWED,
				     .lzma_preset = 1 | VCDIFF_LZMA_EXTREME };

	T_EQ(vcdiff_enc_new(&e, &a, 0, NULL, NULL, mout_write, &o), -EINVAL);
	T_EQ(vcdiff_enc_new(&e, &b, 0, NULL, NULL, mout_write, &o), -EINVAL);
	T_EQ(vcdiff_enc_new(&e, &c, 0, NULL, NULL, mout_write, &o), 0);
	if (e) {
		/* An empty target: one window, nothing compressed. */
		T_EQ(vcdiff_enc_finish(e), 0);
		vcdiff_enc_free(e);
		T_CHECK(o.b.len > 6 && o.b.p[4] == 1 && o.b.p[5] == 2);
		if (have_xdelta3 && o.b.len > 6) {
			write_file("patch", o.b.p, o.b.len);
			T_EQ(t_sh("cd %s && rm -f out && xdelta3 -d -f patch "
				  "out && test -f out && ! test -s out",
				  tmpdir), 0);
		}
	}
	free(o.b.p);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_vcdiff_enc.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	have_xdelta3 = system("xdelta3 -V >/dev/null 2>&1") == 0;
	if (!have_xdelta3)
		fprintf(stderr, "xdelta3 not found: skipping stock decodes\n");

	T_RUN(test_point_edits);
	T_RUN(test_shifts);
	T_RUN(test_moved_blocks);
	T_RUN(test_zero_runs);
	T_RUN(test_random_target);
	T_RUN(test_empty);
	T_RUN(test_empty_source);
	T_RUN(test_target_copies);
	T_RUN(test_pieces);
	T_RUN(test_window_bounds);
	T_RUN(test_budgets);
	T_RUN(test_qemu_like);
	T_RUN(test_errors);
	T_RUN(test_span_cut);
	T_RUN(test_lzma_opts);
	T_RUN(test_lzma_roundtrip);
	T_RUN(test_lzma_late_header);
	T_RUN(test_lzma_stock_continuous);
	T_RUN(test_lzma_damage);

	t_sh("rm -rf %s", tmpdir);
	return t_done();
}
