/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_enc: the streaming VCDIFF encoder against stock xdelta3,
 * plain patches (no secondary compression).
 *
 * Every case builds a source and a target from a fixed seed, encodes, then
 * (1) walks the window headers (limits, minimal layout, nothing after the
 * last window), (2) rebuilds the target from the op sink alone (source
 * bytes, patch bytes, run bytes) and compares, and (3) runs stock
 * `xdelta3 -d -s src patch out` and compares its output byte for byte.
 * Also: pieces of any size give the same patch, window sizes, index
 * budgets, callback errors, and windows cut early to keep their source
 * segment below 4 GiB.
 * Files live in a private mkdtemp directory, removed at the end.
 *
 * Not here: lzma secondary compression (test_vcdiff_enc_lzma). Shared
 * helpers are in vcdiff_enc_tutil.h.
 */
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include "codec/vcdiff_dec.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/vcdiff_enc_tutil.h"

/* --- checks --- */

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

int main(void)
{
	if (enc_setup("test_vcdiff_enc") != 0)
		return 1;

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

	t_sh("rm -rf %s", tmpdir);
	return t_done();
}
