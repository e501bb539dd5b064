/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_patch: opening a VCDIFF patch (see vcdiff_dec.h for the API and
 * vcdiff_dec_int.h for the design). One pass over the file through a small
 * buffered reader parses the file header and every window header, checks
 * each the way xdelta3 does and probes the compressed sections, leaving a
 * window table for random access.
 *
 * Not here: decoding a window (vcdiff_dec.c), recoding stock patches
 * (vcdiff_recode.c). Never prints or exits.
 */
#include "codec/vcdiff_dec.h"

#include <errno.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/blob.h"

#include "codec/vcdiff_dec_int.h"

/* Buffered reader: BR_BIG after sequential reading, BR_SMALL after a jump
 * over large sections, where we only need the next window header. */
#define BR_BIG (64u << 10)
#define BR_SMALL (4u << 10)

/* --- I/O helpers --- */

/* Makes pos readable from the buffer. Returns 0, 1 at end of file, or
 * -errno. */
static int br_refill(struct breader *r)
{
	size_t want;
	ssize_t n;

	if (r->pos >= r->size)
		return 1;
	/* Reading on from the buffer's end means the sections are small:
	 * read big. A jump means large sections: read just a header. */
	want = r->pos <= r->buf_off + r->buf_len + BR_BIG ? BR_BIG : BR_SMALL;
	if (want > r->size - r->pos)
		want = (size_t)(r->size - r->pos);
	n = blob_pread(r->b, r->buf, want, r->pos);
	if (n < 0)
		return (int)n;
	r->buf_off = r->pos;
	r->buf_len = (size_t)n;
	return n == 0 ? 1 : 0;
}

/* Returns 0, 1 at end of file, or -errno. */
static inline int br_byte(struct breader *r, uint8_t *b)
{
	if (r->pos < r->buf_off || r->pos - r->buf_off >= r->buf_len) {
		int rc = br_refill(r);
		if (rc)
			return rc;
	}
	*b = r->buf[r->pos - r->buf_off];
	r->pos++;
	return 0;
}

/* Copies n bytes at pos into dst. Returns 0, 1 if the file ends first, or
 * -errno. Large reads bypass the buffer. */
int dec_br_read(struct breader *r, void *dst, size_t n)
{
	uint8_t *d = dst;

	if (n > r->size - r->pos)
		return 1;
	if (r->pos >= r->buf_off && r->pos - r->buf_off < r->buf_len) {
		size_t have = r->buf_len - (size_t)(r->pos - r->buf_off);
		size_t k = have < n ? have : n;
		memcpy(d, r->buf + (r->pos - r->buf_off), k);
		d += k;
		n -= k;
		r->pos += k;
	}
	if (n > 0) {
		ssize_t got = blob_pread(r->b, d, n, r->pos);
		if (got < 0)
			return (int)got;
		if ((size_t)got != n)
			return 1;
		r->pos += n;
	}
	return 0;
}

/*
 * Reads a varint of at most max. Returns 0, -EBADMSG with *why set (end of
 * file or overflow), or -errno.
 */
static int br_varint(struct breader *r, uint64_t max, uint64_t *v,
		     const char **why, const char *eof_why)
{
	uint64_t x = 0;
	uint8_t b;
	int rc;

	do {
		rc = br_byte(r, &b);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			*why = eof_why;
			return -EBADMSG;
		}
		if (x > (max >> 7) || ((x << 7) | (b & 0x7f)) > max) {
			*why = "overflow in decode_integer";
			return -EBADMSG;
		}
		x = (x << 7) | (b & 0x7f);
	} while (b & 0x80);
	*v = x;
	return 0;
}

/* --- headers --- */


/*
 * Parses the file header at the reader's position 0. Returns 0,
 * -EMEDIUMTYPE (not VCDIFF), -EBADMSG (*why), -ENOMEM, -errno.
 */
int dec_parse_file_hdr(struct breader *r, struct file_hdr *h,
		       const char **why)
{
	static const uint8_t magic[4] = { VCDIFF_MAGIC0, VCDIFF_MAGIC1,
					  VCDIFF_MAGIC2, VCDIFF_VERSION };
	const char *trunc = "truncated file header";
	uint8_t m[4];
	uint64_t len;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = dec_br_read(r, m, 4);
	if (rc < 0)
		return rc;
	if (rc > 0 || memcmp(m, magic, 4) != 0) {
		*why = rc == 0 && memcmp(m, magic, 3) == 0 ?
			"VCDIFF input version > 0 is not supported" :
			"not a VCDIFF input";
		return -EMEDIUMTYPE;
	}
	rc = br_byte(r, &h->hdr_ind);
	if (rc)
		goto eof;
	if (h->hdr_ind & ~(VCDIFF_HDR_SECONDARY | VCDIFF_HDR_CODETABLE |
			   VCDIFF_HDR_APPHEADER)) {
		*why = "unrecognized header indicator bits set";
		return -EBADMSG;
	}
	if (h->hdr_ind & VCDIFF_HDR_SECONDARY) {
		uint8_t id;
		rc = br_byte(r, &id);
		if (rc)
			goto eof;
		if (id != VCDIFF_SEC_DJW && id != VCDIFF_SEC_LZMA &&
		    id != VCDIFF_SEC_FGK) {
			*why = "unknown secondary compressor ID";
			return -EBADMSG;
		}
		h->secondary = id;
	}
	if (h->hdr_ind & VCDIFF_HDR_CODETABLE) {
		/* Never written by xdelta3 (3.0.11 refuses it too). */
		*why = "application-defined code table (VCD_CODETABLE) "
		       "not supported";
		return -EBADMSG;
	}
	if (h->hdr_ind & VCDIFF_HDR_APPHEADER) {
		rc = br_varint(r, UINT32_MAX, &len, why, trunc);
		if (rc)
			return rc;
		if (len > r->size - r->pos) {
			*why = trunc;
			return -EBADMSG;
		}
		h->apphdr = malloc(len ? len : 1);
		if (!h->apphdr)
			return -ENOMEM;
		h->apphdr_len = len;
		rc = dec_br_read(r, h->apphdr, len);
		if (rc)
			goto eof;
	}
	return 0;
eof:
	if (rc > 0) {
		*why = trunc;
		rc = -EBADMSG;
	}
	return rc;
}

/*
 * Parses one window header starting at the reader's position, leaving the
 * reader at the data section, and checks it as xdelta3 does. tgt_off is
 * where the window starts in the target. Returns 0, 1 at a clean end of
 * file (no window starts here), -EBADMSG with *why, or -errno. Does not
 * check that the sections are present.
 */
int dec_parse_win_hdr(struct breader *r, uint64_t tgt_off, int secondary,
		      struct vcdiff_win *w, const char **why)
{
	const char *trunc = "truncated window header";
	uint64_t enclen, v, check;
	uint8_t b;
	int rc;

	memset(w, 0, sizeof(*w));
	w->hdr_off = r->pos;
	w->tgt_off = tgt_off;
	rc = br_byte(r, &w->win_ind);
	if (rc)
		return rc;
	if (w->win_ind & ~(VCDIFF_WIN_SOURCE | VCDIFF_WIN_TARGET |
			   VCDIFF_WIN_ADLER32)) {
		*why = "unrecognized window indicator bits set";
		return -EBADMSG;
	}
	if ((w->win_ind & VCDIFF_WIN_SOURCE) &&
	    (w->win_ind & VCDIFF_WIN_TARGET)) {
		/* RFC 3284 4.3 forbids it; xdelta3 would silently ignore
		 * both bits. */
		*why = "both VCD_SOURCE and VCD_TARGET set";
		return -EBADMSG;
	}
	if (w->win_ind & (VCDIFF_WIN_SOURCE | VCDIFF_WIN_TARGET)) {
		if ((rc = br_varint(r, UINT32_MAX, &v, why, trunc)))
			return rc;
		w->cpy_len = (uint32_t)v;
		if ((rc = br_varint(r, UINT64_MAX, &w->cpy_off, why, trunc)))
			return rc;
		if (w->cpy_off > UINT64_MAX - w->cpy_len) {
			*why = "decoder copy window overflows a file offset";
			return -EBADMSG;
		}
		if ((w->win_ind & VCDIFF_WIN_TARGET) &&
		    w->cpy_off + w->cpy_len > tgt_off) {
			*why = "VCD_TARGET window out of bounds";
			return -EBADMSG;
		}
	}
	if ((rc = br_varint(r, UINT32_MAX, &enclen, why, trunc)))
		return rc;
	if ((rc = br_varint(r, UINT32_MAX, &v, why, trunc)))
		return rc;
	w->tgt_len = (uint32_t)v;
	if ((uint64_t)w->cpy_len + w->tgt_len > UINT32_MAX) {
		*why = "decoder target window overflows a usize_t";
		return -EBADMSG;
	}
	if (w->tgt_len > VCDIFF_WIN_MAX) {
		*why = "hard window size exceeded";
		return -EBADMSG;
	}
	if (tgt_off > UINT64_MAX - w->tgt_len) {
		*why = "decoder file offset overflow";
		return -EBADMSG;
	}
	rc = br_byte(r, &w->del_ind);
	if (rc)
		goto eof;
	if (w->del_ind & ~(VCDIFF_DEL_DATA | VCDIFF_DEL_INST |
			   VCDIFF_DEL_ADDR)) {
		*why = "unrecognized delta indicator bits set";
		return -EBADMSG;
	}
	if (w->del_ind && secondary == VCDIFF_SEC_NONE) {
		*why = "invalid delta indicator bits set";
		return -EBADMSG;
	}
	if ((rc = br_varint(r, UINT32_MAX, &v, why, trunc)))
		return rc;
	w->data_len = (uint32_t)v;
	if ((rc = br_varint(r, UINT32_MAX, &v, why, trunc)))
		return rc;
	w->inst_len = (uint32_t)v;
	if ((rc = br_varint(r, UINT32_MAX, &v, why, trunc)))
		return rc;
	w->addr_len = (uint32_t)v;
	if (w->win_ind & VCDIFF_WIN_ADLER32) {
		for (int k = 0; k < 4; k++) {
			rc = br_byte(r, &b);
			if (rc)
				goto eof;
			w->adler32 = (w->adler32 << 8) | b;
		}
	}
	/* xdelta3 recomputes enclen with minimal varints, so a padded
	 * tgtlen or section length is an error even if enclen counts it. */
	check = 1 + vcdiff_varint_size(w->tgt_len) +
		vcdiff_varint_size(w->data_len) +
		vcdiff_varint_size(w->inst_len) +
		vcdiff_varint_size(w->addr_len) +
		(uint64_t)w->data_len + w->inst_len + w->addr_len +
		((w->win_ind & VCDIFF_WIN_ADLER32) ? 4 : 0);
	if (enclen != check) {
		*why = "incorrect encoding length (redundant)";
		return -EBADMSG;
	}
	/* Every instruction takes at least one opcode byte: output with no
	 * instructions is a claim nothing backs. Refused here, at open, so a
	 * hostile patch costs its own bytes, never its claimed target. */
	if (w->tgt_len && !w->inst_len) {
		*why = "window claims output but has no instructions";
		return -EBADMSG;
	}
	w->data_off = r->pos;
	return 0;
eof:
	if (rc > 0) {
		*why = trunc;
		rc = -EBADMSG;
	}
	return rc;
}

int dec_br_init(struct breader *r, struct blob *b)
{
	memset(r, 0, sizeof(*r));
	r->b = b;
	r->size = blob_size(b);
	r->buf = malloc(BR_BIG);
	return r->buf ? 0 : -ENOMEM;
}

/* --- compressed sections at open --- */

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

/*
 * Looks at the start of each compressed section of window w (index i):
 * records its decompressed length from the size prefix and clears
 * p->windowed unless it starts a new xz block, after the xz stream header
 * if it is the first compressed section of its kind. Malformed prefixes
 * are left for the decoder to report (plain length 0, not windowed).
 * Returns 0 or -errno for a read error.
 */
static int probe_sections(struct vcdiff_patch *p, struct vcdiff_win *w,
			  size_t i)
{
	static const uint8_t bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
					VCDIFF_DEL_ADDR };
	const uint32_t stored[3] = { w->data_len, w->inst_len, w->addr_len };
	uint32_t *plain[3] = { &w->data_plain_len, &w->inst_plain_len,
			       &w->addr_plain_len };
	/* size prefix + stream header + the largest block header */
	uint8_t buf[5 + LZMA_STREAM_HEADER_SIZE + LZMA_BLOCK_HEADER_SIZE_MAX];
	uint64_t off = w->data_off;

	for (int k = 0; k < 3; off += stored[k], k++) {
		const uint8_t *q = buf, *end;
		uint32_t ulen;
		size_t want;
		ssize_t n;

		*plain[k] = stored[k];
		if (!(w->del_ind & bit[k]))
			continue;
		*plain[k] = 0;
		/* Most block headers are 12 bytes: read a little first. */
		want = stored[k] < 64 ? stored[k] : 64;
		n = blob_pread(p->b, buf, want, off);
		if (n < 0)
			return (int)n;
		end = buf + n;
		if (vcdiff_varint_get32(&q, end, &ulen) != VCDIFF_VARINT_OK) {
			p->windowed = 0;
			continue;
		}
		*plain[k] = ulen;
		if (p->secondary != VCDIFF_SEC_LZMA)
			continue;
		if (p->first_z[k] == SIZE_MAX) {
			lzma_stream_flags f;
			p->first_z[k] = i;
			if (end - q < LZMA_STREAM_HEADER_SIZE ||
			    lzma_stream_header_decode(&f, q) != LZMA_OK) {
				p->windowed = 0;
				continue;
			}
			memcpy(p->sh[k], q, LZMA_STREAM_HEADER_SIZE);
			q += LZMA_STREAM_HEADER_SIZE;
		}
		/* A block header: size byte (0 would be the index), CRC32
		 * of the rest at its end. */
		size_t at = (size_t)(q - buf);
		if (q >= end || *q == 0) {
			p->windowed = 0;
			continue;
		}
		size_t hsize = lzma_block_header_size_decode(*q);
		if (at + hsize > stored[k]) {
			p->windowed = 0;
			continue;
		}
		if (at + hsize > (size_t)n) {
			n = blob_pread(p->b, buf, at + hsize, off);
			if (n < 0)
				return (int)n;
			if ((size_t)n < at + hsize) {
				p->windowed = 0;
				continue;
			}
		}
		if (lzma_crc32(buf + at, hsize - 4, 0) !=
		    le32(buf + at + hsize - 4))
			p->windowed = 0;
	}
	return 0;
}

/* --- life cycle --- */

int vcdiff_patch_open(struct vcdiff_patch **out, struct blob *b,
		      const char **why)
{
	const char *dummy;
	struct vcdiff_patch *p = NULL;
	struct breader r = { .buf = NULL };
	struct file_hdr h = { .apphdr = NULL };
	uint64_t tgt_off = 0;
	int rc;

	if (!why)
		why = &dummy;
	*why = "";
	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		goto fail;
	}
	p->b = blob_ref(b);
	if ((rc = dec_br_init(&r, b)))
		goto fail;
	p->file_size = r.size;
	if ((rc = dec_parse_file_hdr(&r, &h, why)))
		goto fail;
	p->secondary = h.secondary;
	/* Cleared by probe_sections at the first section that is not
	 * decodable alone; a plain patch stays windowed. */
	p->windowed = h.secondary != VCDIFF_SEC_DJW &&
		      h.secondary != VCDIFF_SEC_FGK;
	for (int k = 0; k < 3; k++)
		p->first_z[k] = SIZE_MAX;
	p->apphdr = h.apphdr;
	p->apphdr_len = h.apphdr_len;
	h.apphdr = NULL;

	for (;;) {
		struct vcdiff_win w;
		uint64_t sect;

		rc = dec_parse_win_hdr(&r, tgt_off, p->secondary, &w, why);
		if (rc == 1)
			break;
		if (rc)
			goto fail;
		sect = (uint64_t)w.data_len + w.inst_len + w.addr_len;
		if (sect > r.size - r.pos) {
			*why = "truncated window sections";
			rc = -EBADMSG;
			goto fail;
		}
		r.pos += sect;
		if (w.del_ind && (rc = probe_sections(p, &w, p->nwin)))
			goto fail;
		if (!w.del_ind) {
			w.data_plain_len = w.data_len;
			w.inst_plain_len = w.inst_len;
			w.addr_plain_len = w.addr_len;
		}
		if (p->nwin == p->wins_cap) {
			size_t cap = p->wins_cap ? 2 * p->wins_cap : 64;
			void *n = realloc(p->wins, cap * sizeof(*p->wins));
			if (!n) {
				rc = -ENOMEM;
				goto fail;
			}
			p->wins = n;
			p->wins_cap = cap;
		}
		p->wins[p->nwin++] = w;
		tgt_off += w.tgt_len;
		if ((w.win_ind & VCDIFF_WIN_SOURCE) &&
		    w.cpy_off + w.cpy_len > p->src_span)
			p->src_span = w.cpy_off + w.cpy_len;
	}
	p->tgt_size = tgt_off;
	free(r.buf);
	*out = p;
	return 0;
fail:
	free(h.apphdr);
	free(r.buf);
	vcdiff_patch_free(p);
	return rc;
}

void vcdiff_patch_free(struct vcdiff_patch *p)
{
	if (!p)
		return;
	blob_put(p->b);
	free(p->apphdr);
	free(p->wins);
	free(p);
}

/* --- queries --- */

uint64_t vcdiff_patch_target_size(const struct vcdiff_patch *p)
{
	return p->tgt_size;
}

size_t vcdiff_patch_nwin(const struct vcdiff_patch *p)
{
	return p->nwin;
}

const struct vcdiff_win *vcdiff_patch_win(const struct vcdiff_patch *p,
					  size_t i)
{
	return i < p->nwin ? &p->wins[i] : NULL;
}

size_t vcdiff_patch_find(const struct vcdiff_patch *p, uint64_t tgt_off)
{
	size_t lo = 0, hi = p->nwin;

	if (tgt_off >= p->tgt_size)
		return p->nwin;
	/* The last window starting at or before tgt_off holds it: an empty
	 * window sharing its start with a later one sorts before it. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->wins[mid].tgt_off <= tgt_off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int vcdiff_patch_secondary(const struct vcdiff_patch *p)
{
	return p->secondary;
}

int vcdiff_patch_windowed(const struct vcdiff_patch *p)
{
	return p->windowed;
}

uint64_t vcdiff_patch_source_span(const struct vcdiff_patch *p)
{
	return p->src_span;
}

const uint8_t *vcdiff_patch_appheader(const struct vcdiff_patch *p,
				      size_t *len)
{
	if (len)
		*len = p->apphdr_len;
	return p->apphdr;
}
