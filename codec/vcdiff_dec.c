/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_dec: decoding one window of an open patch (see vcdiff_dec.h for
 * the API and vcdiff_dec_int.h for the design). Reads the window's three
 * sections, which are contiguous in the file, into scratch owned by the
 * vcdiff_dec, decompresses lzma sections alone, and turns the instructions
 * into absolute ops without any per-op allocation; vcdiff_dec_window()
 * applies them.
 *
 * Not here: parsing headers and the window table (vcdiff_patch.c),
 * recoding stock patches (vcdiff_recode.c). Never prints or exits.
 */
#include "codec/vcdiff_dec.h"

#include <assert.h>
#include <errno.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/blob.h"

#include "codec/vcdiff_dec_int.h"

struct vcdiff_dec {
	struct vcdiff_code table[256];
	struct vcdiff_acache cache;
	uint8_t *sec;			/* a window's data+inst+addr */
	size_t sec_cap;
	struct vcdiff_op *ops;
	size_t ops_cap;
	uint8_t *plain;			/* decompressed sections of a window */
	size_t plain_cap;
	lzma_stream lz;			/* re-initialised per section */
	bool lz_live;
	const uint8_t *add_data;	/* ADD bytes of the last window */
	uint64_t add_base;		/* op->addr of add_data[0] */
	size_t add_len;			/* bytes at add_data */
	const char *reason;
};

/* --- decoding --- */

int vcdiff_dec_new(struct vcdiff_dec **out)
{
	struct vcdiff_dec *d = calloc(1, sizeof(*d));
	int n;

	*out = NULL;
	if (!d)
		return -ENOMEM;
	n = vcdiff_code_table_build(d->table);
	assert(n == 256);
	(void)n;
	d->reason = "";
	*out = d;
	return 0;
}

void vcdiff_dec_free(struct vcdiff_dec *d)
{
	if (!d)
		return;
	free(d->sec);
	free(d->ops);
	free(d->plain);
	if (d->lz_live)
		lzma_end(&d->lz);
	free(d);
}

const char *vcdiff_dec_reason(const struct vcdiff_dec *d)
{
	return d->reason;
}

/* Everything the instruction loop touches, kept together so the helper
 * below inlines into a tight loop. */
struct dec_state {
	const struct vcdiff_win *w;
	struct vcdiff_acache *cache;
	const uint8_t *data, *ip, *iend, *ap, *aend;
	uint64_t add_base;	/* op->addr of data[0] */
	uint32_t data_len, data_pos;
	uint32_t here;		/* cpy_len + bytes produced so far */
	uint32_t max;		/* cpy_len + tgt_len */
	struct vcdiff_op *op;	/* next op to fill */
	const char *why;
};

/* Decodes one half-instruction. Returns 0 or -EBADMSG with s->why. */
static inline int decode_half(struct dec_state *s, uint8_t type,
			      uint32_t size)
{
	const struct vcdiff_win *w = s->w;
	struct vcdiff_op *op = s->op;

	if (size == 0) {
		int rc = vcdiff_varint_get32(&s->ip, s->iend, &size);
		if (rc) {
			s->why = rc == VCDIFF_VARINT_TRUNC ?
				"end-of-input in read_integer" :
				"overflow in decode_integer";
			return -EBADMSG;
		}
	}
	op->tgt_off = w->tgt_off + (s->here - w->cpy_len);
	op->len = size;
	if (type == VCDIFF_INST_ADD) {
		if (size > s->data_len - s->data_pos)
			goto data_underflow;
		op->kind = VCDIFF_OP_ADD;
		op->addr = s->add_base + s->data_pos;
		s->data_pos += size;
	} else if (type == VCDIFF_INST_RUN) {
		/* A RUN takes its byte even when its size is zero, like
		 * xdelta3. */
		if (s->data_pos >= s->data_len)
			goto data_underflow;
		op->kind = VCDIFF_OP_RUN;
		op->addr = 0;
		op->byte = s->data[s->data_pos++];
	} else {
		unsigned mode = type - VCDIFF_INST_COPY;
		uint32_t addr;

		if (mode < VCDIFF_MODE_SAME0) {
			int rc = vcdiff_varint_get32(&s->ap, s->aend, &addr);
			if (rc) {
				s->why = rc == VCDIFF_VARINT_TRUNC ?
					"end-of-input in read_integer" :
					"overflow in decode_integer";
				return -EBADMSG;
			}
			/* 32-bit wrap-around as in xdelta3; anything that
			 * wraps is caught by the checks below. */
			if (mode == VCDIFF_MODE_HERE)
				addr = s->here - addr;
			else if (mode >= VCDIFF_MODE_NEAR0)
				addr += s->cache->near[mode -
						       VCDIFF_MODE_NEAR0];
		} else {
			/* SAME: one raw byte, not a varint. */
			if (s->ap >= s->aend) {
				s->why = "address underflow";
				return -EBADMSG;
			}
			addr = s->cache->same[(mode - VCDIFF_MODE_SAME0) * 256
					      + *s->ap++];
		}
		vcdiff_acache_update(s->cache, addr);
		if (addr >= s->here) {
			s->why = "address too large";
			return -EBADMSG;
		}
		if (addr < w->cpy_len) {
			if (size > w->cpy_len - addr) {
				s->why = "size too large";
				return -EBADMSG;
			}
			op->kind = (w->win_ind & VCDIFF_WIN_SOURCE) ?
				VCDIFF_OP_COPY_SRC : VCDIFF_OP_COPY_TGT;
			op->addr = w->cpy_off + addr;
		} else {
			op->kind = VCDIFF_OP_COPY_TGT;
			op->addr = w->tgt_off + (addr - w->cpy_len);
		}
	}
	if (size > s->max - s->here) {
		s->why = "size too large";
		return -EBADMSG;
	}
	s->here += size;
	/* Zero-size instructions are legal but produce no op. */
	if (size)
		s->op++;
	return 0;
data_underflow:
	s->why = "data underflow";
	return -EBADMSG;
}

/*
 * Decompresses one stored section of window i, kind k (z, z_len bytes,
 * size prefix included) into out, which holds plain_len bytes, the length
 * open read from the prefix. The section must be [its kind's xz stream
 * header, if it is the first compressed one of the kind] + one xz block,
 * decoded with xdelta3's rule: run until the output is full, then every
 * input byte must have been consumed. As in xdelta3, the block need not
 * end inside the section: stock xdelta3 never ends its blocks, so a stock
 * patch with one compressed window is read here too. Returns 0 or -errno
 * with d->reason set.
 */
static int unz_sect(struct vcdiff_dec *d, const struct vcdiff_patch *p,
		    size_t i, int k, const uint8_t *z, uint32_t z_len,
		    uint8_t *out, uint32_t plain_len)
{
	const uint8_t *q = z, *end = z + z_len;
	lzma_filter filters[LZMA_FILTERS_MAX + 1];
	lzma_stream_flags f;
	lzma_block blk;
	uint32_t ulen;
	lzma_ret lr;
	int rc = -EBADMSG;

	if (vcdiff_varint_get32(&q, end, &ulen)) {
		d->reason = "secondary decoder end of input";
		return -EBADMSG;
	}
	if (ulen == 0) {
		d->reason = "secondary decoder invalid output size";
		return -EBADMSG;
	}
	if (ulen != plain_len) {
		d->reason = "compressed section changed since open";
		return -EBADMSG;
	}
	if (i == p->first_z[k]) {
		if (end - q < LZMA_STREAM_HEADER_SIZE ||
		    lzma_stream_header_decode(&f, q) != LZMA_OK) {
			d->reason = "lzma decoding error (stream header)";
			return -EBADMSG;
		}
		q += LZMA_STREAM_HEADER_SIZE;
	} else if (lzma_stream_header_decode(&f, p->sh[k]) != LZMA_OK) {
		d->reason = "lzma decoding error (stream header)";
		return -EBADMSG;
	}
	if (q >= end || *q == 0 ||
	    lzma_block_header_size_decode(*q) > (size_t)(end - q)) {
		d->reason = "lzma section does not start an xz block";
		return -EBADMSG;
	}
	memset(&blk, 0, sizeof(blk));
	memset(filters, 0, sizeof(filters));
	blk.version = 1;
	blk.check = f.check;
	blk.filters = filters;
	blk.header_size = lzma_block_header_size_decode(*q);
	lr = lzma_block_header_decode(&blk, NULL, q);
	if (lr != LZMA_OK) {
		d->reason = lr == LZMA_MEM_ERROR ? "" :
			    "lzma decoding error (block header)";
		return lr == LZMA_MEM_ERROR ? -ENOMEM : -EBADMSG;
	}
	q += blk.header_size;
	/* The block header names the dictionary: refuse a hostile one
	 * before liblzma allocates it. */
	if (lzma_raw_decoder_memusage(filters) > LZMA_MEMLIMIT) {
		d->reason = "lzma dictionary too large";
		goto out;
	}
	lr = lzma_block_decoder(&d->lz, &blk);
	if (lr != LZMA_OK) {
		d->reason = "lzma decoding error (block header)";
		rc = lr == LZMA_MEM_ERROR ? -ENOMEM : -EBADMSG;
		goto out;
	}
	d->lz_live = true;
	d->lz.next_in = q;
	d->lz.avail_in = (size_t)(end - q);
	d->lz.next_out = out;
	d->lz.avail_out = ulen;
	while (d->lz.avail_out > 0) {
		size_t in0 = d->lz.avail_in, out0 = d->lz.avail_out;

		lr = lzma_code(&d->lz, LZMA_RUN);
		if (lr == LZMA_STREAM_END)
			break;		/* block ended: output must be full */
		if (lr == LZMA_MEM_ERROR) {
			rc = -ENOMEM;
			goto out;
		}
		if (lr != LZMA_OK) {
			d->reason = "lzma decoding error";
			goto out;
		}
		if (d->lz.avail_in == in0 && d->lz.avail_out == out0) {
			d->reason = "secondary decoder short output";
			goto out;
		}
	}
	if (d->lz.avail_out != 0) {
		d->reason = "secondary decoder short output";
		goto out;
	}
	if (d->lz.avail_in != 0) {
		d->reason = "secondary decoder finished with unused input";
		goto out;
	}
	rc = 0;
out:
	for (int j = 0; j < LZMA_FILTERS_MAX && filters[j].id !=
	     LZMA_VLI_UNKNOWN; j++)
		free(filters[j].options);
	return rc;
}

/* Whether a compressed section of p can be decoded alone, and is of a
 * size the decoder accepts. 0, -ENOTSUP (a stock continuous stream:
 * recode first) or -EBADMSG, with the reason in d. */
static int sect_decodable(struct vcdiff_dec *d, const struct vcdiff_patch *p,
			  size_t stored, size_t plain)
{
	if (!p->windowed) {
		d->reason = "window sections are secondary-compressed "
			    "(recode the patch first)";
		return -ENOTSUP;
	}
	if (stored > SECT_MAX || plain > SECT_MAX) {
		d->reason = "section too large";
		return -EBADMSG;
	}
	return 0;
}

static const uint8_t sect_bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
				     VCDIFF_DEL_ADDR };

ssize_t vcdiff_dec_section(struct vcdiff_dec *d, const struct vcdiff_patch *p,
			   size_t i, int kind, uint8_t *dst, size_t dst_cap)
{
	const struct vcdiff_win *w;
	uint32_t stored, plain;
	uint64_t off;
	ssize_t n;
	int rc;

	d->reason = "";
	if (i >= p->nwin || kind < VCDIFF_SECT_DATA ||
	    kind > VCDIFF_SECT_ADDR) {
		d->reason = "window index or section kind out of range";
		return -EINVAL;
	}
	w = &p->wins[i];
	off = w->data_off;
	if (kind == VCDIFF_SECT_DATA) {
		stored = w->data_len;
		plain = w->data_plain_len;
	} else if (kind == VCDIFF_SECT_INST) {
		off += w->data_len;
		stored = w->inst_len;
		plain = w->inst_plain_len;
	} else {
		off += (uint64_t)w->data_len + w->inst_len;
		stored = w->addr_len;
		plain = w->addr_plain_len;
	}
	if (plain > dst_cap) {
		d->reason = "destination buffer too small";
		return -ERANGE;
	}
	if (!(w->del_ind & sect_bit[kind])) {
		n = blob_pread(p->b, dst, stored, off);
		if (n < 0) {
			d->reason = "read error on patch file";
			return n;
		}
		if ((size_t)n != stored) {
			d->reason = "patch file shrank: window sections "
				    "missing";
			return -EBADMSG;
		}
		return (ssize_t)stored;
	}
	if ((rc = sect_decodable(d, p, stored, plain)))
		return rc;
	if ((rc = grow((void **)&d->sec, &d->sec_cap, stored ? stored : 1, 1)))
		return rc;
	n = blob_pread(p->b, d->sec, stored, off);
	if (n < 0) {
		d->reason = "read error on patch file";
		return n;
	}
	if ((size_t)n != stored) {
		d->reason = "patch file shrank: window sections missing";
		return -EBADMSG;
	}
	if ((rc = unz_sect(d, p, i, kind, d->sec, stored, dst, plain)))
		return rc;
	return (ssize_t)plain;
}

ssize_t vcdiff_dec_section_mem(struct vcdiff_dec *d,
			       const struct vcdiff_patch *p, size_t i,
			       int kind, const uint8_t *stored,
			       size_t stored_len, uint8_t *dst, size_t dst_cap)
{
	const struct vcdiff_win *w;
	uint32_t len, plain;
	int rc;

	d->reason = "";
	if (i >= p->nwin || kind < VCDIFF_SECT_DATA ||
	    kind > VCDIFF_SECT_ADDR) {
		d->reason = "window index or section kind out of range";
		return -EINVAL;
	}
	w = &p->wins[i];
	len = kind == VCDIFF_SECT_DATA ? w->data_len :
	      kind == VCDIFF_SECT_INST ? w->inst_len : w->addr_len;
	plain = kind == VCDIFF_SECT_DATA ? w->data_plain_len :
		kind == VCDIFF_SECT_INST ? w->inst_plain_len :
		w->addr_plain_len;
	if (stored_len != len) {
		d->reason = "stored section length differs from the header";
		return -EINVAL;
	}
	if (plain > dst_cap) {
		d->reason = "destination buffer too small";
		return -ERANGE;
	}
	if (!(w->del_ind & sect_bit[kind])) {
		memcpy(dst, stored, len);
		return (ssize_t)len;
	}
	if ((rc = sect_decodable(d, p, len, plain)))
		return rc;
	if ((rc = unz_sect(d, p, i, kind, stored, len, dst, plain)))
		return rc;
	return (ssize_t)plain;
}

/*
 * Reads window i's sections into d->sec (decompressing the compressed
 * ones into d->plain) and decodes its instructions into d->ops. Returns 0
 * with *nops set, or -errno with d->reason set.
 */
static int decode_window(struct vcdiff_dec *d, const struct vcdiff_patch *p,
			 size_t i, size_t *nops)
{
	const struct vcdiff_win *w;
	struct dec_state s;
	uint64_t sect, bound;
	ssize_t n;
	int rc;

	d->reason = "";
	*nops = 0;
	if (i >= p->nwin) {
		d->reason = "window index out of range";
		return -EINVAL;
	}
	w = &p->wins[i];
	if (w->del_ind && !p->windowed) {
		d->reason = "window sections are secondary-compressed "
			    "(recode the patch first)";
		return -ENOTSUP;
	}
	const uint32_t stored[3] = { w->data_len, w->inst_len, w->addr_len };
	const uint32_t plain[3] = { w->data_plain_len, w->inst_plain_len,
				    w->addr_plain_len };
	const uint8_t *sp[3];
	uint32_t sl[3];
	uint64_t ptotal = 0;
	for (int k = 0; k < 3; k++) {
		if (stored[k] > SECT_MAX || plain[k] > SECT_MAX) {
			d->reason = "section too large";
			return -EBADMSG;
		}
		if (w->del_ind & sect_bit[k])
			ptotal += plain[k];
	}
	sect = (uint64_t)w->data_len + w->inst_len + w->addr_len;
	if ((rc = grow((void **)&d->sec, &d->sec_cap, sect ? sect : 1, 1)) ||
	    (rc = grow((void **)&d->plain, &d->plain_cap,
		       ptotal ? ptotal : 1, 1)))
		return rc;
	n = blob_pread(p->b, d->sec, sect, w->data_off);
	if (n < 0) {
		d->reason = "read error on patch file";
		return (int)n;
	}
	if ((uint64_t)n != sect) {
		d->reason = "patch file shrank: window sections missing";
		return -EBADMSG;
	}
	{
		uint64_t zo = 0, po = 0;
		for (int k = 0; k < 3; zo += stored[k], k++) {
			if (!(w->del_ind & sect_bit[k])) {
				sp[k] = d->sec + zo;
				sl[k] = stored[k];
				continue;
			}
			if ((rc = unz_sect(d, p, i, k, d->sec + zo, stored[k],
					   d->plain + po, plain[k])))
				return rc;
			sp[k] = d->plain + po;
			sl[k] = plain[k];
			po += plain[k];
		}
	}
	/* An op produces at least one byte and one opcode byte yields at
	 * most two ops, so this bound lets the loop skip capacity checks. */
	bound = (uint64_t)sl[1] * 2;
	if (bound > w->tgt_len)
		bound = w->tgt_len;
	/* +2: decode_half writes into the slot after the last op before it
	 * knows the size is zero. */
	if ((rc = grow((void **)&d->ops, &d->ops_cap, bound + 2,
		       sizeof(*d->ops))))
		return rc;

	vcdiff_acache_reset(&d->cache);
	s.w = w;
	s.cache = &d->cache;
	s.data = sp[0];
	s.add_base = (w->del_ind & VCDIFF_DEL_DATA) ? 0 : w->data_off;
	d->add_data = sp[0];
	d->add_base = s.add_base;
	d->add_len = sl[0];
	s.data_len = sl[0];
	s.data_pos = 0;
	s.ip = sp[1];
	s.iend = s.ip + sl[1];
	s.ap = sp[2];
	s.aend = s.ap + sl[2];
	s.here = w->cpy_len;
	s.max = w->cpy_len + w->tgt_len;
	s.op = d->ops;
	s.why = NULL;
	while (s.ip < s.iend) {
		const struct vcdiff_code *c = &d->table[*s.ip++];

		if (c->type1 != VCDIFF_INST_NOOP &&
		    (rc = decode_half(&s, c->type1, c->size1)))
			goto bad;
		if (c->type2 != VCDIFF_INST_NOOP &&
		    (rc = decode_half(&s, c->type2, c->size2)))
			goto bad;
	}
	if (s.here != s.max) {
		s.why = "wrong window length";
		goto bad;
	}
	if (s.data_pos != s.data_len) {
		s.why = "extra data section";
		goto bad;
	}
	if (s.ap != s.aend) {
		s.why = "extra address section";
		goto bad;
	}
	*nops = (size_t)(s.op - d->ops);
	return 0;
bad:
	d->reason = s.why;
	return -EBADMSG;
}

int vcdiff_dec_ops(struct vcdiff_dec *d, const struct vcdiff_patch *p,
		   size_t i, const struct vcdiff_op **ops, size_t *nops)
{
	int rc = decode_window(d, p, i, nops);

	*ops = rc ? NULL : d->ops;
	return rc;
}

const uint8_t *vcdiff_dec_data(const struct vcdiff_dec *d, size_t *len,
			       uint64_t *add_base)
{
	*len = d->add_len;
	*add_base = d->add_base;
	return d->add_data;
}

/* Reads exactly len bytes through fn. Returns 0, 1 if the file is short,
 * or -errno. */
static int read_exact(vcdiff_read_fn fn, void *ctx, uint64_t off,
		      uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = fn(ctx, off, buf, len);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return 1;
		if ((size_t)n > len)
			return -EINVAL;
		off += (size_t)n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Copies len bytes from dst[from] to dst[to], from < to, front to back as
 * VCDIFF requires when the ranges overlap: the result repeats the period
 * to - from. Instead of going byte by byte, copy from the start of the
 * pattern in chunks that double: after each chunk, dst[from, to) is a
 * whole number of periods longer, so a non-overlapping memcpy from `from`
 * keeps the phase right.
 */
static void copy_forward(uint8_t *dst, size_t from, size_t to, size_t len)
{
	while (len > 0) {
		size_t n = to - from;
		if (n > len)
			n = len;
		memcpy(dst + to, dst + from, n);
		to += n;
		len -= n;
	}
}

ssize_t vcdiff_dec_window(struct vcdiff_dec *d, const struct vcdiff_patch *p,
			  size_t i, vcdiff_read_fn read_src, void *src_ctx,
			  vcdiff_read_fn read_tgt, void *tgt_ctx,
			  uint8_t *dst, size_t dst_cap)
{
	const struct vcdiff_win *w;
	size_t nops;
	int rc;

	if (i < p->nwin && dst_cap < p->wins[i].tgt_len) {
		d->reason = "destination buffer too small";
		return -ERANGE;
	}
	if ((rc = decode_window(d, p, i, &nops)))
		return rc;
	w = &p->wins[i];
	for (size_t k = 0; k < nops; k++) {
		const struct vcdiff_op *op = &d->ops[k];
		size_t pos = (size_t)(op->tgt_off - w->tgt_off);

		switch (op->kind) {
		case VCDIFF_OP_ADD:
			memcpy(dst + pos,
			       d->add_data + (op->addr - d->add_base),
			       op->len);
			break;
		case VCDIFF_OP_RUN:
			memset(dst + pos, op->byte, op->len);
			break;
		case VCDIFF_OP_COPY_SRC:
			if (!read_src) {
				d->reason = "no source reader for a "
					    "VCD_SOURCE window";
				return -EINVAL;
			}
			rc = read_exact(read_src, src_ctx, op->addr,
					dst + pos, op->len);
			if (rc > 0) {
				d->reason = "source file too short";
				return -EBADMSG;
			}
			if (rc < 0) {
				d->reason = "source read failed";
				return rc;
			}
			break;
		case VCDIFF_OP_COPY_TGT:
			if (op->addr >= w->tgt_off) {
				copy_forward(dst,
					     (size_t)(op->addr - w->tgt_off),
					     pos, op->len);
				break;
			}
			if (!read_tgt) {
				d->reason = "no target reader for a "
					    "VCD_TARGET window";
				return -EINVAL;
			}
			rc = read_exact(read_tgt, tgt_ctx, op->addr,
					dst + pos, op->len);
			if (rc > 0) {
				d->reason = "target file too short";
				return -EBADMSG;
			}
			if (rc < 0) {
				d->reason = "target read failed";
				return rc;
			}
			break;
		}
	}
	if ((w->win_ind & VCDIFF_WIN_ADLER32) &&
	    vcdiff_adler32(1, dst, w->tgt_len) != w->adler32) {
		d->reason = "target window checksum mismatch";
		return -EBADMSG;
	}
	return (ssize_t)w->tgt_len;
}
