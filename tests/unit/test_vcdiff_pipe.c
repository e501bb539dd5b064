/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_pipe: the encoder's stages on worker threads
 * (vcdiff_enc_opts.workers) and its on_window sink. With 0, 1 or 2
 * workers the patch and the ops are the same byte for byte; every
 * window the sink sees matches the patch as vcdiff_dec reads it (offsets,
 * lengths, target bytes, data section, ops); errors of a later stage
 * reach the caller and nothing hangs, also when freed mid-way.
 */
#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static uint64_t rs = 1;

/* A source of pages (text-like, pointer-like, random, zero) and a target
 * with some pages rewritten, some words patched, some pages moved far. */
static void make_pair(uint8_t **src, uint8_t **tgt, size_t pages)
{
	size_t n = pages * 4096;
	uint8_t *s = malloc(n), *t = malloc(n);

	for (size_t i = 0; i < n; i += 8) {
		uint64_t x = t_xorshift(&rs);
		switch ((i / 4096) % 4) {
		case 0:	x = 0x2065687420666f20ull + (x % 7); break;
		case 1:	x = 0xffff888000000000ull + (x % 65536) * 8; break;
		case 2:	break;
		default: x = 0; break;
		}
		memcpy(s + i, &x, 8);
	}
	memcpy(t, s, n);
	for (size_t p = 0; p < pages; p++) {
		uint64_t r = t_xorshift(&rs) % 100;
		uint8_t *pg = t + p * 4096;
		if (r < 4) {
			for (size_t k = 0; k < 4096; k += 8) {
				uint64_t x = t_xorshift(&rs);
				memcpy(pg + k, &x, 8);
			}
		} else if (r < 12) {
			for (size_t k = 0; k < 4096; k += 64) {
				uint64_t x = t_xorshift(&rs);
				memcpy(pg + k, &x, 8);
			}
		} else if (r < 14 && pages > 64) {
			size_t q = (p + pages / 2) % pages;
			memcpy(pg, s + q * 4096, 4096);
		}
	}
	*src = s;
	*tgt = t;
}

/* Field by field: a decoder leaves byte unset except for RUN. */
static int ops_eq(const struct vcdiff_op *a, const struct vcdiff_op *b,
		  size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].tgt_off != b[i].tgt_off || a[i].addr != b[i].addr ||
		    a[i].len != b[i].len || a[i].kind != b[i].kind ||
		    (a[i].kind == VCDIFF_OP_RUN && a[i].byte != b[i].byte))
			return 0;
	return 1;
}

struct msrc {
	const uint8_t *p;
	size_t n;
};

static ssize_t msrc_read(void *ctx, uint64_t off, void *dst, size_t len)
{
	struct msrc *s = ctx;

	if (off >= s->n)
		return 0;
	if (len > s->n - off)
		len = s->n - off;
	memcpy(dst, s->p + off, len);
	return (ssize_t)len;
}

struct out {
	uint8_t *p;
	size_t len, cap;
	size_t fail_after;	/* -ENOSPC once past this many bytes; 0 never */
};

static int out_write(void *ctx, const void *p, size_t n)
{
	struct out *o = ctx;

	if (o->fail_after && o->len + n > o->fail_after)
		return -ENOSPC;
	if (o->len + n > o->cap) {
		o->cap = (o->len + n) * 2;
		o->p = realloc(o->p, o->cap);
		if (!o->p)
			abort();
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
	return 0;
}

/* What the sinks saw. */
struct seen {
	struct vcdiff_op *ops;		/* from on_op */
	size_t nops, cap;
	size_t wops;			/* ops covered by on_window so far */
	size_t nwin;
	uint64_t next_tgt;		/* windows in order, tiling the target */
	const uint8_t *tgt;
	struct {
		uint64_t patch_off, tgt_off;
		uint32_t patch_len, tgt_len, adler;
		uint8_t del_ind;
		uint64_t add_base;
		uint32_t data_len;
	} w[512];
	int bad;			/* a check inside a callback failed */
};

static int on_op(void *ctx, const struct vcdiff_op *op)
{
	struct seen *s = ctx;

	if (s->nops == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 4096;
		s->ops = realloc(s->ops, s->cap * sizeof(*s->ops));
		if (!s->ops)
			abort();
	}
	s->ops[s->nops++] = *op;
	return 0;
}

static int on_window(void *ctx, const struct vcdiff_enc_win *w)
{
	struct seen *s = ctx;

	if (w->tgt_off != s->next_tgt || s->nwin >= 512)
		s->bad++;
	if (memcmp(w->tgt, s->tgt + w->tgt_off, w->tgt_len))
		s->bad++;
	/* Its ops are the last nops on_op got, and rebuild its bytes from
	 * the data section and the source (checked by the caller). */
	if (w->nops != s->nops - s->wops ||
	    !ops_eq(w->ops, s->ops + s->wops, w->nops))
		s->bad++;
	uint64_t pos = w->tgt_off;
	for (size_t i = 0; i < w->nops; i++) {
		const struct vcdiff_op *op = &w->ops[i];
		if (op->tgt_off != pos)
			s->bad++;
		if (op->kind == VCDIFF_OP_ADD &&
		    (op->addr < w->add_base ||
		     op->addr - w->add_base + op->len > w->data_len ||
		     memcmp(w->data + (op->addr - w->add_base),
			    w->tgt + (pos - w->tgt_off), op->len)))
			s->bad++;
		pos += op->len;
	}
	if (pos != w->tgt_off + w->tgt_len)
		s->bad++;
	if (vcdiff_adler32(1, w->tgt, w->tgt_len) != w->adler32)
		s->bad++;
	s->wops = s->nops;
	if (s->nwin < 512) {
		s->w[s->nwin].patch_off = w->patch_off;
		s->w[s->nwin].patch_len = w->patch_len;
		s->w[s->nwin].tgt_off = w->tgt_off;
		s->w[s->nwin].tgt_len = w->tgt_len;
		s->w[s->nwin].adler = w->adler32;
		s->w[s->nwin].del_ind = w->del_ind;
		s->w[s->nwin].add_base = w->add_base;
		s->w[s->nwin].data_len = w->data_len;
	}
	s->nwin++;
	s->next_tgt = w->tgt_off + w->tgt_len;
	return 0;
}

struct run {
	struct out o;
	struct seen s;
	int rc;
};

static void encode(struct run *r, const uint8_t *src, size_t sn,
		   const uint8_t *tgt, size_t tn, int workers, int sec,
		   uint32_t win, size_t piece, size_t fail_after)
{
	struct msrc ms = { src, sn };
	struct vcdiff_enc_opts o = {
		.win_size = win, .secondary = sec, .workers = workers,
		.on_op = on_op, .op_ctx = &r->s,
		.on_window = on_window, .win_ctx = &r->s,
	};
	struct vcdiff_enc *e = NULL;

	memset(r, 0, sizeof(*r));
	r->s.tgt = tgt;
	r->o.fail_after = fail_after;
	r->rc = vcdiff_enc_new(&e, &o, sn, msrc_read, &ms, out_write, &r->o);
	for (size_t off = 0; !r->rc && off < tn; off += piece) {
		size_t n = tn - off < piece ? tn - off : piece;
		r->rc = vcdiff_enc_write(e, tgt + off, n);
	}
	if (!r->rc)
		r->rc = vcdiff_enc_finish(e);
	if (!r->rc) {
		T_EQ(vcdiff_enc_patch_size(e), r->o.len);
		T_EQ(vcdiff_enc_target_size(e), tn);
	}
	vcdiff_enc_free(e);
}

static void run_free(struct run *r)
{
	free(r->o.p);
	free(r->s.ops);
}

/* The windows on_window reported are the patch's windows as vcdiff_dec
 * reads them, and each decodes to the target. */
static void check_against_decoder(const struct run *r, const uint8_t *src,
				  size_t sn, const uint8_t *tgt, size_t tn)
{
	struct msrc ms = { src, sn };
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	uint8_t *buf = malloc(VCDIFF_WIN_MAX);
	int fd = t_mem_fd(r->o.p, r->o.len);

	T_CHECK(fd >= 0 && buf);
	T_EQ(t_patch_open(&p, fd, NULL), 0);
	T_EQ(vcdiff_dec_new(&d), 0);
	if (!p || !d || !buf)
		goto out;
	T_EQ(vcdiff_patch_target_size(p), tn);
	T_EQ(vcdiff_patch_nwin(p), r->s.nwin);
	size_t k = 0;
	for (size_t i = 0; i < vcdiff_patch_nwin(p) && i < 512; i++) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		const struct vcdiff_op *ops;
		size_t n;
		T_EQ(w->hdr_off, r->s.w[i].patch_off);
		T_EQ(w->tgt_off, r->s.w[i].tgt_off);
		T_EQ(w->tgt_len, r->s.w[i].tgt_len);
		T_EQ(w->adler32, r->s.w[i].adler);
		T_EQ(w->del_ind, r->s.w[i].del_ind);
		T_EQ(w->data_plain_len, r->s.w[i].data_len);
		uint64_t end = i + 1 < vcdiff_patch_nwin(p) ?
			       vcdiff_patch_win(p, i + 1)->hdr_off : r->o.len;
		T_EQ(end - w->hdr_off, r->s.w[i].patch_len);
		T_EQ(vcdiff_dec_ops(d, p, i, &ops, &n), 0);
		T_CHECK(k + n <= r->s.nops && ops_eq(ops, r->s.ops + k, n));
		k += n;
		ssize_t got = vcdiff_dec_window(d, p, i, msrc_read, &ms, NULL,
						NULL, buf, VCDIFF_WIN_MAX);
		T_EQ(got, w->tgt_len);
		if (got == (ssize_t)w->tgt_len)
			T_CHECK(!memcmp(buf, tgt + w->tgt_off, w->tgt_len));
	}
	T_EQ(k, r->s.nops);
out:
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	free(buf);
	if (fd >= 0)
		close(fd);
}

/* workers 0, 1, 2: the same patch, the same ops, good windows. */
static void test_same_patch(void)
{
	uint8_t *src, *tgt;
	size_t pages = 2048, n = pages * 4096;
	static const int secs[2] = { VCDIFF_SEC_NONE, VCDIFF_SEC_LZMA_WINDOWED };

	rs = 7;
	make_pair(&src, &tgt, pages);
	for (int si = 0; si < 2; si++) {
		struct run r[3];
		for (int w = 0; w < 3; w++) {
			/* 512 KiB windows, odd pieces: 16+ windows, slots
			 * filled across write calls. */
			encode(&r[w], src, n, tgt, n, w, secs[si], 512u << 10,
			       100000, 0);
			T_EQ(r[w].rc, 0);
			T_EQ(r[w].s.bad, 0);
			T_CHECK(r[w].s.nwin >= 16);
		}
		for (int w = 1; w < 3; w++) {
			T_EQ(r[w].o.len, r[0].o.len);
			T_CHECK(r[w].o.len == r[0].o.len &&
				!memcmp(r[w].o.p, r[0].o.p, r[0].o.len));
			T_EQ(r[w].s.nops, r[0].s.nops);
			T_CHECK(r[w].s.nops == r[0].s.nops &&
				ops_eq(r[w].s.ops, r[0].s.ops, r[0].s.nops));
		}
		check_against_decoder(&r[2], src, n, tgt, n);
		for (int w = 0; w < 3; w++)
			run_free(&r[w]);
	}
	free(src);
	free(tgt);
}

/* Empty and tiny targets, a target of exactly one window, with workers. */
static void test_edges(void)
{
	uint8_t *src, *tgt;

	rs = 9;
	make_pair(&src, &tgt, 64);
	static const size_t lens[] = { 0, 1, 65536, 65537, 64 * 4096 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int w = 0; w < 3; w++) {
			struct run r;
			encode(&r, src, 64 * 4096, tgt, lens[i], w,
			       VCDIFF_SEC_LZMA_WINDOWED, 65536, 4096, 0);
			T_EQ(r.rc, 0);
			T_EQ(r.s.bad, 0);
			T_CHECK(r.s.nwin >= 1);
			check_against_decoder(&r, src, 64 * 4096, tgt, lens[i]);
			run_free(&r);
		}
	}
	free(src);
	free(tgt);
}

/* A sink that fails mid-way: the error reaches write or finish with
 * every number of workers, and nothing hangs. */
static void test_errors(void)
{
	uint8_t *src, *tgt;
	size_t pages = 1024, n = pages * 4096;

	rs = 11;
	make_pair(&src, &tgt, pages);
	for (int w = 0; w < 3; w++) {
		struct run r;
		encode(&r, src, n, tgt, n, w, VCDIFF_SEC_NONE, 65536, 8192,
		       20000);
		T_EQ(r.rc, -ENOSPC);
		run_free(&r);
	}
	free(src);
	free(tgt);
}

/* Freed without finish, with windows in flight: joins, no leak. */
static void test_abandon(void)
{
	uint8_t *src, *tgt;
	size_t pages = 1024, n = pages * 4096;
	struct msrc ms;

	rs = 13;
	make_pair(&src, &tgt, pages);
	ms.p = src;
	ms.n = n;
	for (int w = 0; w < 3; w++) {
		struct out o = { 0 };
		struct vcdiff_enc_opts opts = { .win_size = 65536, .workers = w,
						.secondary =
						VCDIFF_SEC_LZMA_WINDOWED };
		struct vcdiff_enc *e = NULL;
		T_EQ(vcdiff_enc_new(&e, &opts, n, msrc_read, &ms, out_write,
				    &o), 0);
		T_EQ(vcdiff_enc_write(e, tgt, n / 2 + 123), 0);
		vcdiff_enc_free(e);
		free(o.p);
	}
	struct vcdiff_enc_opts bad = { .workers = 3 };
	struct vcdiff_enc *e = NULL;
	struct out o = { 0 };
	T_EQ(vcdiff_enc_new(&e, &bad, n, msrc_read, &ms, out_write, &o),
	     -EINVAL);
	/* The estimate grows with workers and covers the index. */
	struct vcdiff_enc_opts e0 = { .secondary = VCDIFF_SEC_LZMA_WINDOWED };
	struct vcdiff_enc_opts e2 = e0;
	e2.workers = 2;
	size_t m0 = vcdiff_enc_mem_estimate(&e0, (uint64_t)1 << 30);
	size_t m2 = vcdiff_enc_mem_estimate(&e2, (uint64_t)1 << 30);
	T_CHECK(m0 > ((size_t)64 << 20) && m2 > m0);
	free(src);
	free(tgt);
}

int main(void)
{
	T_RUN(test_same_patch);
	T_RUN(test_edges);
	T_RUN(test_errors);
	T_RUN(test_abandon);
	return t_done();
}
