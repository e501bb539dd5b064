/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_ewin: the encoder's output stage (vcdiff_enc_int.h): a matched
 * window becomes header + sections in the patch, then goes to the sinks.
 *
 * Windows. The target is buffered one window at a time, matched, then
 * written as header + data + inst + addr sections with the default code
 * table (pair opcodes when they apply) and the cheapest of the SELF/HERE/
 * NEAR/SAME address modes. The source segment is [min, max) of the
 * window's source copies; if a copy would make cpylen + tgtlen reach 4 GiB
 * the window is cut just before that copy. A window with no source copy
 * has no VCD_SOURCE bit; VCD_TARGET is never written. Ops go to the sink
 * after their window is written, when the patch offset of each ADD is known.
 * Default window: 8 MiB. Measured on the QEMU-like bench pair (256 MiB):
 * 4 MiB windows gave a patch 0.4% larger than 8 MiB, 16 MiB 0.2% smaller;
 * 8 MiB is xdelta3's default and halves the buffer and the unit a reader of
 * a COPY_TGT may have to decode.
 *
 * Secondary compression (opts.secondary = VCDIFF_SEC_LZMA_WINDOWED):
 * each section of each window becomes one whole xz block in xdelta3's
 * lzma framing (vcdiff-notes.md 2.3, 2.4): stock xdelta3 -d reads it as
 * its own continuous lzma stream, yet every block starts with a
 * dictionary reset, so vcdiff_dec decodes any window alone. Sections
 * under 10 bytes or saving 2 bytes or less stay plain (xdelta3's rule;
 * stock decodes each section by its own delta-indicator bit). Options
 * per kind: by default preset 0 with hc4 and nice_len 32 (below),
 * dictionary capped at the window, pb = lp = 0, lc = 1 for addresses
 * (0.35-0.6% smaller than the bare preset). How matching changes with
 * lzma: vcdiff_match.c.
 * Presets (bench_patch, same pairs, 256 MiB
 * snapgen / QEMU 233 MB / snapgen 1 GiB): 1: 2.346 / 1.786 / 9.553 MB,
 * 3: 2.315 / 1.755 / 9.419, 6: 2.225 / 1.687 / 8.977; on 1 GiB preset 1
 * adds 1.0 s to the 2.3 s plain encode, preset 6 10.7 s (bt4 on nearly
 * incompressible literals). Preset 6 is there for archives.
 * The default. lzma was the slowest stage of a write into the mount
 * (2.5-3 s per GiB on this machine's cores, the whole encode on the
 * output worker waiting for it), so it was timed on the sections a 1 GiB
 * snapgen write and a 233 MB QEMU write actually compress (20.5 MB and
 * 3.5 MB of data sections, one block each, best of 3): preset 1 9.067 /
 * 1.751 MB in 2.3-2.6 s / 0.3-0.9 s; preset 0 (hc3, 256 KiB) 9.153 /
 * 1.769 MB; preset 0 with hc4 and nice_len 32 9.097 / 1.760 MB in 1.4 s
 * / 0.24 s; with nice_len 16 and a 1 MiB dictionary 9.115 / 1.761 MB in
 * 1.8 s; nice_len 32 on preset 1 gave the very same bytes (matches that
 * long are the matcher's COPYs already). Whole patches, preset 1 ->
 * default: 4 real QEMU pairs 6.872 -> 6.908 MB, snapgen 1 GiB 9.237 ->
 * 9.269 MB, still 0.957x and 0.937x of xdelta3 -e -9 -B; decoders need
 * 256 KiB of dictionary instead of 1 MiB (32 KiB since, see
 * enc_lzma_options).
 * Plain (default): measured with tests/bench/bench_enc (860 MB QEMU-like
 * pair) before the lzma option existed, target matching had taken most
 * of what lzma on the data section would save (31% -> 6%).
 *
 * Runs on one thread at a time (the caller's or the output worker's,
 * vcdiff_enc.c), the only one to touch the output stage's fields and to
 * call write_out, on_op and on_window, in window order.
 */
#include "codec/vcdiff_enc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --- section bytes --- */

static int bytes_reserve(struct bytes *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Callers reserve first; these never fail. */
static inline void put_byte(struct bytes *b, uint8_t v)
{
	b->p[b->len++] = v;
}

static inline void put_var(struct bytes *b, uint64_t v)
{
	b->len += put_varint(b->p + b->len, v);
}

/* Picks the cheapest mode for addr (U-space, here = cpylen + bytes of T so
 * far); returns the mode, the value to write in *v and its size in *sz
 * (SAME modes write one raw byte). */
static int pick_mode(const struct vcdiff_acache *ac, uint64_t addr, uint64_t here,
		     uint64_t *v, int *sz)
{
	int best = 0, bsz = vlen(addr);
	uint64_t bv = addr;

	if (ac->same[addr % (VCDIFF_S_SAME * 256)] == addr) {
		*v = addr % 256;
		*sz = 1;
		return VCDIFF_MODE_SAME0 +
		       (int)((addr % (VCDIFF_S_SAME * 256)) / 256);
	}
	int l = vlen(here - addr);
	if (l < bsz) {
		best = 1;
		bsz = l;
		bv = here - addr;
	}
	for (int i = 0; i < VCDIFF_S_NEAR && bsz > 1; i++) {
		if (addr < ac->near[i])
			continue;
		l = vlen(addr - ac->near[i]);
		if (l < bsz) {
			best = VCDIFF_MODE_NEAR0 + i;
			bsz = l;
			bv = addr - ac->near[i];
		}
	}
	*v = bv;
	*sz = bsz;
	return best;
}

static void put_addr(struct bytes *b, int mode, uint64_t v)
{
	if (mode >= VCDIFF_MODE_SAME0)
		put_byte(b, (uint8_t)v);
	else
		put_var(b, v);
}

static int write_all(struct vcdiff_enc *e, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int rc = e->write_out(e->out_ctx, p, n);
	if (rc < 0)
		return rc;
	e->patch_size += n;
	return 0;
}

/* A copy's address in U = S || T of window j. */
static inline uint64_t u_addr(const struct enc_win *j,
			      const struct vcdiff_op *op, uint64_t lo,
			      uint64_t cpylen)
{
	if (op->kind == VCDIFF_OP_COPY_SRC)
		return op->addr - lo;
	return cpylen + (op->addr - j->tgt_off);
}

/* --- secondary compression --- */

/* xdelta3's rule (SECONDARY_MIN_INPUT, SECONDARY_MIN_SAVINGS): shorter
 * sections are never compressed, and a compressed one must save more. */
#define SEC_MIN_INPUT 10
#define SEC_MIN_SAVINGS 2

/*
 * Compresses one section into z in xdelta3's lzma framing: varint(len),
 * then, if no section of this kind has carried it yet, the 12-byte xz
 * stream header, then one whole xz block (12-byte header, LZMA2 chunks,
 * end marker, padding; check none). A block always starts with a
 * dictionary reset, so the section decodes without any earlier one; the
 * stream it belongs to is never ended (no index, no footer), because
 * stock xdelta3 treats the end of its stream as an error. Returns 0 or
 * -errno; the caller decides whether z is worth keeping.
 */
static int lzma_sect(struct vcdiff_enc *e, int kind, const struct bytes *in,
		     struct bytes *z)
{
	lzma_filter filters[2] = {
		{ .id = LZMA_FILTER_LZMA2, .options = &e->lzopt[kind] },
		{ .id = LZMA_VLI_UNKNOWN, .options = NULL },
	};
	lzma_block blk;
	int rc;

	z->len = 0;
	if ((rc = bytes_reserve(z, 10 + LZMA_STREAM_HEADER_SIZE +
				LZMA_BLOCK_HEADER_SIZE_MAX + in->len / 8 +
				4096)) < 0)
		return rc;
	put_var(z, in->len);
	if (!e->sh_done[kind]) {
		lzma_stream_flags f = { .version = 0,
					.check = LZMA_CHECK_NONE };
		if (lzma_stream_header_encode(&f, z->p + z->len) != LZMA_OK)
			return -EINVAL;
		z->len += LZMA_STREAM_HEADER_SIZE;
	}
	memset(&blk, 0, sizeof(blk));
	blk.version = 0;
	blk.check = LZMA_CHECK_NONE;
	blk.filters = filters;
	blk.compressed_size = LZMA_VLI_UNKNOWN;
	blk.uncompressed_size = LZMA_VLI_UNKNOWN;
	if (lzma_block_header_size(&blk) != LZMA_OK ||
	    lzma_block_header_encode(&blk, z->p + z->len) != LZMA_OK)
		return -EINVAL;
	z->len += blk.header_size;
	/* Re-initialising the same lzma_stream reuses its match finder when
	 * the options are unchanged, which they are for a whole patch. */
	lzma_ret lr = lzma_block_encoder(&e->lz, &blk);
	if (lr != LZMA_OK)
		return lr == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL;
	e->lz_live = 1;
	e->lz.next_in = in->p;
	e->lz.avail_in = in->len;
	for (;;) {
		if (z->cap - z->len < 4096 &&
		    (rc = bytes_reserve(z, z->cap / 2 + 4096)) < 0)
			return rc;
		e->lz.next_out = z->p + z->len;
		e->lz.avail_out = z->cap - z->len;
		lr = lzma_code(&e->lz, LZMA_FINISH);
		z->len = z->cap - e->lz.avail_out;
		if (lr == LZMA_STREAM_END)
			return 0;
		if (lr != LZMA_OK)
			return lr == LZMA_MEM_ERROR ? -ENOMEM : -EIO;
	}
}

/*
 * Compresses the window's sections where it pays. Returns the delta
 * indicator and points sect[k] at what goes into the file, or -errno.
 */
static int compress_window(struct vcdiff_enc *e, const struct bytes *sect[3])
{
	static const int bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
				    VCDIFF_DEL_ADDR };
	int del_ind = 0, rc;

	if (e->o.secondary != VCDIFF_SEC_LZMA_WINDOWED)
		return 0;
	for (int k = 0; k < 3; k++) {
		if (sect[k]->len < SEC_MIN_INPUT)
			continue;
		if ((rc = lzma_sect(e, k, sect[k], &e->zsec[k])) < 0)
			return rc;
		if (e->zsec[k].len + SEC_MIN_SAVINGS >= sect[k]->len)
			continue;
		e->sh_done[k] = 1;
		sect[k] = &e->zsec[k];
		del_ind |= bit[k];
	}
	return del_ind;
}

/* --- one window --- */

int enc_ewin_write(struct vcdiff_enc *e, struct enc_win *j)
{
	const uint8_t *tw = j->tw;
	uint64_t tgtlen = j->tgt_len;
	uint64_t lo = j->have_copy ? j->seg_lo : 0;
	uint64_t cpylen = j->have_copy ? j->seg_hi - j->seg_lo : 0;
	struct vcdiff_acache *ac = NULL;
	int rc;

	e->data.len = e->inst.len = e->addr.len = 0;
	/* Upper bounds: data <= tgtlen + runs; inst <= 1 + 2 varints per
	 * instruction; addr <= 10 per copy. */
	if ((rc = bytes_reserve(&e->data, tgtlen + j->nins)) < 0 ||
	    (rc = bytes_reserve(&e->inst, j->nins * 12 + 16)) < 0 ||
	    (rc = bytes_reserve(&e->addr, j->nins * 10 + 16)) < 0)
		return rc;
	ac = calloc(1, sizeof(*ac));
	if (!ac)
		return -ENOMEM;

	for (size_t i = 0; i < j->nins; i++) {
		const struct vcdiff_op *op = &j->ins[i];
		const struct vcdiff_op *nx = i + 1 < j->nins ? &j->ins[i + 1] : NULL;

		if (op->kind == VCDIFF_OP_RUN) {
			put_byte(&e->inst, 0);
			put_var(&e->inst, op->len);
			put_byte(&e->data, op->byte);
			continue;
		}
		if (op->kind == VCDIFF_OP_ADD) {
			memcpy(e->data.p + e->data.len, tw + (op->tgt_off - j->tgt_off),
			       op->len);
			e->data.len += op->len;
			if (op->len <= 4 && nx && nx->kind != VCDIFF_OP_ADD &&
			    nx->kind != VCDIFF_OP_RUN && nx->len <= 6) {
				uint64_t a = u_addr(j, nx, lo, cpylen), v;
				uint64_t here = cpylen + (nx->tgt_off - j->tgt_off);
				int sz, m = pick_mode(ac, a, here, &v, &sz);
				int opc = -1;
				if (m <= 5 && nx->len >= 4)
					opc = 163 + 12 * m + 3 * (op->len - 1) +
					      (nx->len - 4);
				else if (m >= 6 && nx->len == 4)
					opc = 235 + 4 * (m - 6) + (op->len - 1);
				if (opc >= 0) {
					put_byte(&e->inst, (uint8_t)opc);
					put_addr(&e->addr, m, v);
					vcdiff_acache_update(ac, (uint32_t)a);
					i++;
					continue;
				}
			}
			if (op->len <= 17) {
				put_byte(&e->inst, (uint8_t)(op->len + 1));
			} else {
				put_byte(&e->inst, 1);
				put_var(&e->inst, op->len);
			}
			continue;
		}
		/* COPY from the source segment or from earlier in T */
		uint64_t a = u_addr(j, op, lo, cpylen), v;
		uint64_t here = cpylen + (op->tgt_off - j->tgt_off);
		int sz, m = pick_mode(ac, a, here, &v, &sz);
		put_addr(&e->addr, m, v);
		vcdiff_acache_update(ac, (uint32_t)a);
		if (op->len == 4 && nx && nx->kind == VCDIFF_OP_ADD &&
		    nx->len == 1) {
			put_byte(&e->inst, (uint8_t)(247 + m));
			put_byte(&e->data, tw[nx->tgt_off - j->tgt_off]);
			i++;
			continue;
		}
		if (op->len >= 4 && op->len <= 18) {
			put_byte(&e->inst, (uint8_t)(19 + 16 * m + (op->len - 3)));
		} else {
			put_byte(&e->inst, (uint8_t)(19 + 16 * m));
			put_var(&e->inst, op->len);
		}
	}
	free(ac);

	const struct bytes *sect[3] = { &e->data, &e->inst, &e->addr };
	double t0 = enc_now();
	int del_ind = compress_window(e, sect);
	e->st.lzma += enc_now() - t0;
	if (del_ind < 0)
		return del_ind;

	/* Header: [file header] win_ind [cpylen cpyoff] enclen tgtlen delind
	 * datalen instlen addrlen adler32. */
	uint8_t hdr[80];
	size_t h = 0, hfile = 0;
	uint64_t at = e->patch_size;
	if (e->windows == 0) {
		hdr[h++] = 0xD6;
		hdr[h++] = 0xC3;
		hdr[h++] = 0xC4;
		hdr[h++] = 0x00;
		/* no code table, no app header; the secondary id even if no
		 * section ends up compressed, which decoders accept */
		if (e->o.secondary == VCDIFF_SEC_LZMA_WINDOWED) {
			hdr[h++] = VCDIFF_HDR_SECONDARY;
			hdr[h++] = VCDIFF_SEC_LZMA;
		} else {
			hdr[h++] = 0x00;
		}
		hfile = h;
	}
	hdr[h++] = (uint8_t)(VCDIFF_WIN_ADLER32 |
			     (j->have_copy ? VCDIFF_WIN_SOURCE : 0));
	if (j->have_copy) {
		h += put_varint(hdr + h, cpylen);
		h += put_varint(hdr + h, lo);
	}
	uint64_t enclen = (uint64_t)vlen(tgtlen) + 1 + vlen(sect[0]->len) +
		vlen(sect[1]->len) + vlen(sect[2]->len) + 4 + sect[0]->len +
		sect[1]->len + sect[2]->len;
	h += put_varint(hdr + h, enclen);
	h += put_varint(hdr + h, tgtlen);
	hdr[h++] = (uint8_t)del_ind;
	h += put_varint(hdr + h, sect[0]->len);
	h += put_varint(hdr + h, sect[1]->len);
	h += put_varint(hdr + h, sect[2]->len);
	uint32_t ad = vcdiff_adler32(1, tw, (size_t)tgtlen);
	hdr[h++] = (uint8_t)(ad >> 24);
	hdr[h++] = (uint8_t)(ad >> 16);
	hdr[h++] = (uint8_t)(ad >> 8);
	hdr[h++] = (uint8_t)ad;

	/* ADD addresses: patch file offsets, or offsets in the decompressed
	 * data section when it is stored compressed (vcdiff.h). */
	uint64_t data_off = (del_ind & VCDIFF_DEL_DATA) ? 0 :
			    e->patch_size + h;
	if ((rc = write_all(e, hdr, h)) < 0 ||
	    (rc = write_all(e, sect[0]->p, sect[0]->len)) < 0 ||
	    (rc = write_all(e, sect[1]->p, sect[1]->len)) < 0 ||
	    (rc = write_all(e, sect[2]->p, sect[2]->len)) < 0)
		return rc;
	e->windows++;

	/* The ops as the sinks see them: absolute ADD addresses (above), no
	 * RUN address. The matcher is done with them. */
	t0 = enc_now();
	uint64_t d = data_off;
	for (size_t i = 0; i < j->nins; i++) {
		struct vcdiff_op *op = &j->ins[i];
		if (op->kind == VCDIFF_OP_ADD) {
			op->addr = d;
			d += op->len;
		} else if (op->kind == VCDIFF_OP_RUN) {
			op->addr = 0;
			d++;
		}
		if (e->o.on_op && (rc = e->o.on_op(e->o.op_ctx, op)) < 0)
			return rc;
	}
	if (e->o.on_window) {
		struct vcdiff_enc_win ew = {
			.tgt_off = j->tgt_off,
			.tgt_len = (uint32_t)tgtlen,
			.tgt = tw,
			.ops = j->ins,
			.nops = j->nins,
			.data = e->data.p,
			.data_len = (uint32_t)e->data.len,
			.add_base = data_off,
			.patch_off = at + hfile,
			.patch_len = (uint32_t)(e->patch_size - at - hfile),
			.del_ind = (uint8_t)del_ind,
			.adler32 = ad,
		};
		if ((rc = e->o.on_window(e->o.win_ctx, &ew)) < 0)
			return rc;
	}
	e->st.sink += enc_now() - t0;
	return 0;
}


/* --- set-up --- */

int enc_lzma_options(const struct vcdiff_enc_opts *o, uint32_t win_cap,
		     lzma_options_lzma lz[3])
{
	uint32_t preset = o->lzma_preset;

	if ((preset & ~VCDIFF_LZMA_EXTREME) > 9 ||
	    lzma_lzma_preset(&lz[0], preset))
		return -EINVAL;
	if (preset == 0) {
		/* The default: preset 0 with hc4 and nice_len 32 (see the
		 * top: 40% less time than preset 1 for 0.3-0.6% more), and a
		 * 32 KiB dictionary: the repeats lzma finds among literals
		 * are near ones (the far ones are the matcher's COPYs).
		 * bench_patch, 256 -> 32 KiB (2026-12-04): real QEMU pairs of
		 * the 1 GiB guest -0.07% / -0.05%, snapgen 1 GiB -0.12%, lzma
		 * time 0.81 -> 0.68 s, 1.17 -> 1.01 s, 1.35 -> 1.21 s; 16
		 * and 8 KiB were larger by 0.1-0.5% for 1-3% less time. */
		lz[0].mf = LZMA_MF_HC4;
		lz[0].nice_len = 32;
		lz[0].dict_size = (uint32_t)32 << 10;
	}
	/* A section never exceeds about a window and each one is
	 * compressed alone: a larger dictionary would cost encoder
	 * and decoder memory and find nothing more. */
	uint32_t dict = LZMA_DICT_SIZE_MIN;
	while (dict < win_cap && dict < lz[0].dict_size)
		dict *= 2;
	lz[0].dict_size = dict;
	/* No section has a 2- or 4-byte structure that positions
	 * would predict (pb = lp = 0), and addresses hardly depend
	 * on the byte before (lc = 1). Measured on real QEMU and
	 * snapgen pairs, per kind: 0.35% and 0.6% smaller patches. */
	lz[0].lp = lz[0].pb = 0;
	lz[1] = lz[2] = lz[0];
	lz[2].lc = 1;
	return 0;
}

int enc_ewin_init(struct vcdiff_enc *e)
{
	if (e->o.secondary != VCDIFF_SEC_LZMA_WINDOWED)
		return 0;
	return enc_lzma_options(&e->o, e->win_cap, e->lzopt);
}

void enc_ewin_free(struct vcdiff_enc *e)
{
	free(e->data.p);
	free(e->inst.p);
	free(e->addr.p);
	for (int k = 0; k < 3; k++)
		free(e->zsec[k].p);
	if (e->lz_live)
		lzma_end(&e->lz);
}
