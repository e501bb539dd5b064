/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_dec: random-access VCDIFF reader (see vcdiff_dec.h for the API).
 *
 * Open walks the patch once through a small buffered reader, parsing the
 * file header and every window header and skipping the sections with
 * enclen, so a multi-GB patch with 100k windows costs one pass of small
 * reads. The patch is read through a blob (codec/blob.h), local or remote. Each window header is checked the way xdelta3 3.0.11 checks it
 * (docs/vcdiff-notes.md 2.6), and the messages are xdelta3's where it has
 * one. Decoding a window reads its three sections, which are contiguous
 * in the file, into scratch owned by the vcdiff_dec, and turns the
 * instructions into absolute ops without any per-op allocation.
 *
 * Key invariants: all offsets are 64-bit; window-relative positions and
 * addresses are 32-bit because the header check guarantees cpylen + tgtlen
 * fits in 32 bits; an op never reaches outside the window's sections,
 * segment or already-built output. Zero windows are accepted by open (an
 * empty target of size 0), although stock xdelta3 refuses such a file with
 * "nothing to output": rejecting it would buy nothing and a reader of an
 * empty layer is well defined.
 *
 * Secondary compression. Stock xdelta3 runs one xz stream per section
 * kind through the whole patch, so its windows cannot be decoded alone
 * (notes 2.4); vcdiff_recode_plain() streams such a patch once instead.
 * An xz stream is a header followed by blocks, and a block starts with a
 * dictionary reset: if every compressed section of a kind starts a block
 * (what vcdiff_enc writes with VCDIFF_SEC_LZMA_WINDOWED), a section
 * decodes alone once that kind's 12-byte stream header, which only the
 * first such section carries, is known. Open checks this cheaply on every
 * compressed section (size prefix, stream header where due, block header
 * CRC32) and records the decompressed lengths; a section that passes but
 * is not one block merely fails to decode (-EBADMSG): it cannot decode to
 * other bytes than stock would give, since a block refers to nothing
 * before it. Decoding follows xdelta3's rule (run until the output is
 * full, then all input must be consumed). DJW/FGK are not implemented.
 * Never prints or exits.
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
#include "codec/fdio.h"

#include "codec/vcdiff_int.h"

/*
 * A plain section larger than this is refused although xdelta3 would try:
 * no encoder writes more section bytes than about the window length
 * (16 MiB), and the bound keeps a hostile header from making us allocate
 * gigabytes. Applies to stored plain sections and to decompressed ones.
 */
#define SECT_MAX (4u * VCDIFF_WIN_MAX)

/*
 * Memory limit for one liblzma decoder. xdelta3 passes UINT64_MAX, but its
 * encoder uses preset 0 (256 KiB dictionary) and even preset 9 decodes in
 * about 65 MiB, so this only keeps a hostile xz block header from asking
 * for a multi-GB dictionary.
 */
#define LZMA_MEMLIMIT (256ull << 20)

/* Buffered reader: BR_BIG after sequential reading, BR_SMALL after a jump
 * over large sections, where we only need the next window header. */
#define BR_BIG (64u << 10)
#define BR_SMALL (4u << 10)

struct vcdiff_patch {
	struct blob *b;			/* a reference */
	int secondary;			/* VCDIFF_SEC_* of the header */
	int windowed;			/* every window decodes alone */
	size_t first_z[3];		/* window of the first compressed
					 * section per kind, SIZE_MAX if none */
	uint8_t sh[3][LZMA_STREAM_HEADER_SIZE];	/* its xz stream header */
	uint64_t file_size;
	uint64_t tgt_size;
	uint64_t src_span;
	uint8_t *apphdr;		/* NULL if none */
	size_t apphdr_len;
	struct vcdiff_win *wins;
	size_t nwin, wins_cap;
};

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

/* --- I/O helpers --- */

struct breader {
	struct blob *b;		/* borrowed */
	uint64_t size;		/* blob_size */
	uint64_t pos;		/* next byte to consume */
	uint64_t buf_off;	/* file offset of buf[0] */
	size_t buf_len;
	uint8_t *buf;		/* BR_BIG bytes */
};

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
static int br_read(struct breader *r, void *dst, size_t n)
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

struct file_hdr {
	uint8_t hdr_ind;
	int secondary;
	uint8_t *apphdr;	/* malloc'd, caller frees */
	size_t apphdr_len;
};

/*
 * Parses the file header at the reader's position 0. Returns 0,
 * -EMEDIUMTYPE (not VCDIFF), -EBADMSG (*why), -ENOMEM, -errno.
 */
static int parse_file_hdr(struct breader *r, struct file_hdr *h,
			  const char **why)
{
	static const uint8_t magic[4] = { VCDIFF_MAGIC0, VCDIFF_MAGIC1,
					  VCDIFF_MAGIC2, VCDIFF_VERSION };
	const char *trunc = "truncated file header";
	uint8_t m[4];
	uint64_t len;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = br_read(r, m, 4);
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
		rc = br_read(r, h->apphdr, len);
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
static int parse_win_hdr(struct breader *r, uint64_t tgt_off, int secondary,
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

static int br_init(struct breader *r, struct blob *b)
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
	if ((rc = br_init(&r, b)))
		goto fail;
	p->file_size = r.size;
	if ((rc = parse_file_hdr(&r, &h, why)))
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

		rc = parse_win_hdr(&r, tgt_off, p->secondary, &w, why);
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

/* Grows *buf to at least need elements of size sz (contents not kept). */
static int grow(void **buf, size_t *cap, size_t need, size_t sz)
{
	size_t n;
	void *b;

	if (need <= *cap)
		return 0;
	n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	b = malloc(n * sz);
	if (!b)
		return -ENOMEM;
	free(*buf);
	*buf = b;
	*cap = n;
	return 0;
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

/* --- recode --- */

/* Buffered output for recode. */
struct bwriter {
	int fd;
	size_t len;
	uint8_t buf[64u << 10];
};

static int bw_flush(struct bwriter *b)
{
	int rc = fdio_write(b->fd, b->buf, b->len);

	b->len = 0;
	return rc;
}

static int bw_put(struct bwriter *b, const void *p, size_t n)
{
	int rc;

	if (n > sizeof(b->buf) - b->len) {
		if ((rc = bw_flush(b)))
			return rc;
		if (n > sizeof(b->buf))
			return fdio_write(b->fd, p, n);
	}
	memcpy(b->buf + b->len, p, n);
	b->len += n;
	return 0;
}

static int bw_varint(struct bwriter *b, uint64_t v)
{
	uint8_t tmp[10];

	return bw_put(b, tmp, vcdiff_varint_put(tmp, v));
}

/*
 * One section kind (data, inst or addr) across the whole patch: xdelta3
 * runs one xz stream per kind through all windows and never ends it
 * (notes 2.4), so the decoder lives as long as the recode.
 */
struct sec_kind {
	lzma_stream strm;
	bool live;
	uint8_t *in;		/* stored bytes of the current section */
	size_t in_cap;
	uint8_t *out;		/* plain bytes of the current section */
	size_t out_cap;
	const uint8_t *plain;	/* in or out */
	uint32_t plain_len;
};

/*
 * Decompresses one framed lzma section (varint uncompressed length, then
 * LZMA2 chunks of the running xz stream) exactly as xdelta3 does: run
 * until the output is full, then require every input byte consumed.
 */
static int lzma_section(struct sec_kind *k, uint32_t in_len, const char **why)
{
	const uint8_t *p = k->in, *end = k->in + in_len;
	uint32_t ulen;
	int rc;

	if (vcdiff_varint_get32(&p, end, &ulen)) {
		*why = "secondary decoder end of input";
		return -EBADMSG;
	}
	if (ulen == 0) {
		*why = "secondary decoder invalid output size";
		return -EBADMSG;
	}
	if (ulen > SECT_MAX) {
		*why = "secondary section too large";
		return -EBADMSG;
	}
	if ((rc = grow((void **)&k->out, &k->out_cap, ulen, 1)))
		return rc;
	if (!k->live) {
		lzma_stream init = LZMA_STREAM_INIT;
		k->strm = init;
		if (lzma_stream_decoder(&k->strm, LZMA_MEMLIMIT,
					LZMA_TELL_NO_CHECK) != LZMA_OK)
			return -ENOMEM;
		k->live = true;
	}
	k->strm.next_in = p;
	k->strm.avail_in = (size_t)(end - p);
	k->strm.next_out = k->out;
	k->strm.avail_out = ulen;
	while (k->strm.avail_out > 0) {
		size_t in0 = k->strm.avail_in, out0 = k->strm.avail_out;
		lzma_ret ret = lzma_code(&k->strm, LZMA_RUN);

		if (ret == LZMA_MEM_ERROR)
			return -ENOMEM;
		if (ret != LZMA_OK && ret != LZMA_NO_CHECK) {
			*why = ret == LZMA_MEMLIMIT_ERROR ?
				"lzma dictionary too large" :
				"lzma decoding error";
			return -EBADMSG;
		}
		if (k->strm.avail_in == in0 && k->strm.avail_out == out0) {
			*why = "secondary decoder short output";
			return -EBADMSG;
		}
	}
	if (k->strm.avail_in != 0) {
		*why = "secondary decoder finished with unused input";
		return -EBADMSG;
	}
	k->plain = k->out;
	k->plain_len = ulen;
	return 0;
}

int vcdiff_recode_plain(struct blob *src, int out_fd,
			void (*progress)(void *ctx, uint64_t done,
					 uint64_t total),
			void *ctx, const char **why)
{
	static const uint8_t magic[4] = { VCDIFF_MAGIC0, VCDIFF_MAGIC1,
					  VCDIFF_MAGIC2, VCDIFF_VERSION };
	static const uint8_t del_bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
					    VCDIFF_DEL_ADDR };
	const char *dummy;
	struct breader r = { .buf = NULL };
	struct file_hdr h = { .apphdr = NULL };
	struct bwriter *bw = NULL;
	struct sec_kind kinds[3];
	uint64_t tgt_off = 0, reported = 0;
	int rc;

	if (!why)
		why = &dummy;
	*why = "";
	memset(kinds, 0, sizeof(kinds));
	if ((rc = br_init(&r, src)))
		goto out;
	bw = malloc(sizeof(*bw));
	if (!bw) {
		rc = -ENOMEM;
		goto out;
	}
	bw->fd = out_fd;
	bw->len = 0;
	if (progress)
		progress(ctx, 0, r.size);
	if ((rc = parse_file_hdr(&r, &h, why)))
		goto out;
	if (h.secondary == VCDIFF_SEC_DJW || h.secondary == VCDIFF_SEC_FGK) {
		*why = "djw/fgk secondary compression not supported "
		       "(use xdelta3 recode -S none)";
		rc = -ENOTSUP;
		goto out;
	}
	if ((rc = bw_put(bw, magic, 4)))
		goto out;
	{
		uint8_t ind = h.hdr_ind & VCDIFF_HDR_APPHEADER;
		if ((rc = bw_put(bw, &ind, 1)))
			goto out;
	}
	if (h.hdr_ind & VCDIFF_HDR_APPHEADER) {
		if ((rc = bw_varint(bw, h.apphdr_len)) ||
		    (rc = bw_put(bw, h.apphdr, h.apphdr_len)))
			goto out;
	}

	for (;;) {
		struct vcdiff_win w;
		uint32_t stored[3];
		uint64_t enclen;

		rc = parse_win_hdr(&r, tgt_off, h.secondary, &w, why);
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (rc)
			goto out;
		stored[0] = w.data_len;
		stored[1] = w.inst_len;
		stored[2] = w.addr_len;
		for (int k = 0; k < 3; k++) {
			struct sec_kind *sk = &kinds[k];

			if (stored[k] > SECT_MAX) {
				*why = "section too large";
				rc = -EBADMSG;
				goto out;
			}
			if ((rc = grow((void **)&sk->in, &sk->in_cap,
				       stored[k] ? stored[k] : 1, 1)))
				goto out;
			rc = br_read(&r, sk->in, stored[k]);
			if (rc > 0) {
				*why = "truncated window sections";
				rc = -EBADMSG;
			}
			if (rc)
				goto out;
			if (w.del_ind & del_bit[k]) {
				if ((rc = lzma_section(sk, stored[k], why)))
					goto out;
			} else {
				sk->plain = sk->in;
				sk->plain_len = stored[k];
			}
		}
		/* Each plain section is at most SECT_MAX, so enclen fits
		 * the 32 bits xdelta3 reads it into. */
		enclen = 1 + vcdiff_varint_size(w.tgt_len) +
			(uint64_t)kinds[0].plain_len + kinds[1].plain_len +
			kinds[2].plain_len +
			((w.win_ind & VCDIFF_WIN_ADLER32) ? 4 : 0);
		for (int k = 0; k < 3; k++)
			enclen += vcdiff_varint_size(kinds[k].plain_len);
		{
			uint8_t b = w.win_ind, zero = 0;
			if ((rc = bw_put(bw, &b, 1)))
				goto out;
			if (w.win_ind & (VCDIFF_WIN_SOURCE |
					 VCDIFF_WIN_TARGET)) {
				if ((rc = bw_varint(bw, w.cpy_len)) ||
				    (rc = bw_varint(bw, w.cpy_off)))
					goto out;
			}
			if ((rc = bw_varint(bw, enclen)) ||
			    (rc = bw_varint(bw, w.tgt_len)) ||
			    (rc = bw_put(bw, &zero, 1)))
				goto out;
		}
		for (int k = 0; k < 3; k++)
			if ((rc = bw_varint(bw, kinds[k].plain_len)))
				goto out;
		if (w.win_ind & VCDIFF_WIN_ADLER32) {
			uint8_t a[4] = { (uint8_t)(w.adler32 >> 24),
					 (uint8_t)(w.adler32 >> 16),
					 (uint8_t)(w.adler32 >> 8),
					 (uint8_t)w.adler32 };
			if ((rc = bw_put(bw, a, 4)))
				goto out;
		}
		for (int k = 0; k < 3; k++)
			if ((rc = bw_put(bw, kinds[k].plain,
					 kinds[k].plain_len)))
				goto out;
		tgt_off += w.tgt_len;
		if (progress && r.pos - reported >= (8u << 20)) {
			reported = r.pos;
			progress(ctx, r.pos, r.size);
		}
	}
	if ((rc = bw_flush(bw)))
		goto out;
	if (progress)
		progress(ctx, r.size, r.size);
out:
	for (int k = 0; k < 3; k++) {
		if (kinds[k].live)
			lzma_end(&kinds[k].strm);
		free(kinds[k].in);
		free(kinds[k].out);
	}
	free(bw);
	free(h.apphdr);
	free(r.buf);
	return rc;
}
