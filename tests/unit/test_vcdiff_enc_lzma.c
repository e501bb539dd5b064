/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_enc_lzma: the encoder's lzma secondary compression, one xz
 * block per section (VCDIFF_SEC_LZMA_WINDOWED). Its options are checked;
 * on QEMU-like pairs from fixed seeds the patch is smaller than a plain
 * one and no larger than `xdelta3 -e -9 -B`'s, every window decodes on
 * its own, last first (and stock xdelta3 decodes the whole), the decoded
 * ops are the encoder's, and the one-time recode to plain works. The xz
 * stream headers may come with a later window; stock xdelta3's own lzma
 * (one stream across windows) is told apart; damaged or cut compressed
 * sections decode exactly or fail cleanly, never with wrong bytes.
 * Files live in a private mkdtemp directory, removed at the end.
 *
 * Not here: plain patches (test_vcdiff_enc). Shared helpers are in
 * vcdiff_enc_tutil.h.
 */
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include "codec/vcdiff_dec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/vcdiff_enc_tutil.h"

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
	if (enc_setup("test_vcdiff_enc_lzma") != 0)
		return 1;

	T_RUN(test_lzma_opts);
	T_RUN(test_lzma_roundtrip);
	T_RUN(test_lzma_late_header);
	T_RUN(test_lzma_stock_continuous);
	T_RUN(test_lzma_damage);

	t_sh("rm -rf %s", tmpdir);
	return t_done();
}
