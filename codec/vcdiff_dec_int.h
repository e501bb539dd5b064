/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_dec_int: what the decoder's three files share and nothing else
 * sees (only they may include it; `make layering` checks). The decoder is
 * split by what it does:
 *
 *   codec/vcdiff_patch.c   vcdiff_patch_*   open: the buffered reader,
 *                                           file and window headers, the
 *                                           window table, the probe of
 *                                           compressed sections
 *   codec/vcdiff_dec.c     vcdiff_dec_*     one window: sections, lzma,
 *                                           instructions, address cache,
 *                                           applying the ops
 *   codec/vcdiff_recode.c  vcdiff_recode_*  stock xdelta3 patches, streamed
 *                                           once into windowed ones
 *
 * The design, for all three (this was the comment of vcdiff_dec.c):
 *
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
 */
#ifndef SNAPFS_CODEC_VCDIFF_DEC_INT_H
#define SNAPFS_CODEC_VCDIFF_DEC_INT_H

#include <errno.h>
#include <lzma.h>
#include <stdint.h>
#include <stdlib.h>

#include "codec/blob.h"
#include "codec/vcdiff_dec.h"
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

/* An open patch: built by vcdiff_patch.c, read by the decoder. */
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

/* The buffered reader of open and recode; BR_BIG is vcdiff_patch.c's. */
struct breader {
	struct blob *b;		/* borrowed */
	uint64_t size;		/* blob_size */
	uint64_t pos;		/* next byte to consume */
	uint64_t buf_off;	/* file offset of buf[0] */
	size_t buf_len;
	uint8_t *buf;		/* BR_BIG bytes */
};

/* The file header, as open and recode parse it. */
struct file_hdr {
	uint8_t hdr_ind;
	int secondary;
	uint8_t *apphdr;	/* malloc'd, caller frees */
	size_t apphdr_len;
};

/* The reader and the headers, in vcdiff_patch.c; recode walks a patch
 * with them too. */
int dec_br_init(struct breader *r, struct blob *b);
int dec_br_read(struct breader *r, void *dst, size_t n);
int dec_parse_file_hdr(struct breader *r, struct file_hdr *h,
		       const char **why);
int dec_parse_win_hdr(struct breader *r, uint64_t tgt_off, int secondary,
		      struct vcdiff_win *w, const char **why);

/* Grows *buf to at least need elements of size sz (contents not kept). */
static inline int grow(void **buf, size_t *cap, size_t need, size_t sz)
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

#endif /* SNAPFS_CODEC_VCDIFF_DEC_INT_H */
