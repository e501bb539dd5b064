/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_dec: random-access reader of VCDIFF (RFC 3284) patches in the
 * dialect of stock xdelta3 3.0.11 (application header, per-window adler32,
 * paired opcodes, lzma/djw/fgk secondary compression).
 *
 * Opening a patch parses the file header and every window header once
 * (sizes, segments, section positions, checksums) without touching the
 * sections, so the target size and the offset->window map are known at
 * once. The instructions of one window are decoded on demand into absolute
 * ops (codec/vcdiff.h). Secondary-compressed patches as stock xdelta3
 * writes them cannot be decoded a window at a time (its lzma streams run
 * across windows), so vcdiff_recode_plain() converts them once into an
 * equivalent plain patch. Patches whose every compressed section starts a
 * new xz block (vcdiff_enc's VCDIFF_SEC_LZMA_WINDOWED, still stock lzma)
 * are recognised at open (vcdiff_patch_windowed) and decode window by
 * window as they are.
 *
 * Reading a windowed lzma patch (no conversion needed):
 *   - vcdiff_dec_ops() and vcdiff_dec_window() work on every window.
 *   - An ADD op of a window whose data section is stored plain
 *     (!(win->del_ind & VCDIFF_DEL_DATA)) has addr = patch-file offset,
 *     as in any plain patch. If the data section is compressed, addr is
 *     the offset in that window's decompressed data section, which
 *     vcdiff_dec_section(d, p, w, VCDIFF_SECT_DATA, buf, cap) writes to
 *     buf (win->data_plain_len bytes): the unit to cache, one per
 *     window, for the ADD bytes of window w.
 *
 * The patch is read through a blob (codec/blob.h): a local file or an
 * object of a remote store alike.
 *
 * Not here: chains, caches, files other than the one patch. Never prints.
 * A vcdiff_patch is read-only after open and may be shared by threads; a
 * vcdiff_dec holds scratch space and is used by one thread at a time.
 */
#ifndef SNAPFS_CODEC_VCDIFF_DEC_H
#define SNAPFS_CODEC_VCDIFF_DEC_H

#include "codec/vcdiff.h"

struct blob;
struct vcdiff_patch;
struct vcdiff_dec;

/* One window as described by its header. Offsets are patch-file offsets. */
struct vcdiff_win {
	uint64_t tgt_off;	/* where this window's output starts */
	uint32_t tgt_len;	/* output length, <= VCDIFF_WIN_MAX */
	uint8_t win_ind;	/* VCDIFF_WIN_* bits */
	uint8_t del_ind;	/* sections stored secondary-compressed */
	uint32_t cpy_len;	/* source segment length (SOURCE/TARGET) */
	uint64_t cpy_off;	/* source segment position */
	uint32_t adler32;	/* valid if win_ind & VCDIFF_WIN_ADLER32 */
	uint64_t hdr_off;	/* file offset of the Win_Indicator byte */
	uint64_t data_off;	/* file offset of the data section */
	uint32_t data_len, inst_len, addr_len;	/* as stored */
	/* Decompressed lengths (= stored ones for plain sections), read at
	 * open from each compressed section's size prefix; 0 for a
	 * compressed section whose prefix is unreadable. */
	uint32_t data_plain_len, inst_plain_len, addr_plain_len;
};

/* Section kinds for vcdiff_dec_section(). */
enum vcdiff_sect {
	VCDIFF_SECT_DATA = 0,
	VCDIFF_SECT_INST = 1,
	VCDIFF_SECT_ADDR = 2,
};

/* --- life cycle --- */

/*
 * Parses the header and all window headers of the patch b. On success the
 * patch takes a reference on b (blob_ref), dropped by vcdiff_patch_free(),
 * so the caller may put its own at once; on failure it holds none. Reads
 * of its windows later go to b. Returns 0,
 * -EMEDIUMTYPE if the file is not VCDIFF at all (bad magic or version),
 * -EBADMSG if it is VCDIFF but malformed or truncated, -EIO, -ENOMEM.
 * On failure *why (if not NULL) points to a static reason string.
 * A file with no window at all opens as an empty target (size 0, nwin 0),
 * although stock xdelta3 refuses it ("nothing to output"). A file cut
 * exactly at a window boundary cannot be told from a shorter patch.
 */
int vcdiff_patch_open(struct vcdiff_patch **out, struct blob *b,
		      const char **why);
void vcdiff_patch_free(struct vcdiff_patch *p);

/* --- queries (thread-safe) --- */

uint64_t vcdiff_patch_target_size(const struct vcdiff_patch *p);
size_t vcdiff_patch_nwin(const struct vcdiff_patch *p);
const struct vcdiff_win *vcdiff_patch_win(const struct vcdiff_patch *p,
					  size_t i);
/* Index of the window whose output holds tgt_off; nwin if past the end. */
size_t vcdiff_patch_find(const struct vcdiff_patch *p, uint64_t tgt_off);
/* VCDIFF_SEC_* id of the header, VCDIFF_SEC_NONE if none. */
int vcdiff_patch_secondary(const struct vcdiff_patch *p);
/*
 * 1 if every window decodes on its own with vcdiff_dec_*: no window has a
 * compressed section, or the patch is lzma and every compressed section
 * starts a new xz block (the first of each kind right after the xz stream
 * header), as vcdiff_enc's VCDIFF_SEC_LZMA_WINDOWED writes, and as stock
 * xdelta3 writes when only one window has compressed sections. 0 if the
 * patch needs vcdiff_recode_plain() first (stock lzma across windows,
 * djw, fgk). Decided at open from each compressed section's first bytes.
 */
int vcdiff_patch_windowed(const struct vcdiff_patch *p);
/* Highest cpy_off + cpy_len over VCD_SOURCE windows (0 if none). */
uint64_t vcdiff_patch_source_span(const struct vcdiff_patch *p);
/* The xdelta3 application header (not NUL-terminated), or NULL. */
const uint8_t *vcdiff_patch_appheader(const struct vcdiff_patch *p,
				      size_t *len);

/* --- decoding --- */

int vcdiff_dec_new(struct vcdiff_dec **out);
void vcdiff_dec_free(struct vcdiff_dec *d);

/*
 * Decodes the instructions of window i of a plain (secondary-free) or
 * windowed patch (vcdiff_patch_windowed), decompressing its sections into
 * scratch
 * owned by d. On success *ops points to *nops ops owned by d, valid until
 * the next call on d; they are in target order and cover the window
 * exactly. Every op is bounds-checked against the window (ADD inside the
 * data section, COPY_SRC inside the declared segment, COPY_TGT below the
 * current position). ADD addresses: see the top of this file.
 * Returns 0, -EBADMSG (reason in vcdiff_dec_reason; also for corrupt or
 * truncated compressed sections), -ENOTSUP if the window's sections are
 * secondary-compressed and the patch is not windowed,
 * -EIO, -ENOMEM.
 */
int vcdiff_dec_ops(struct vcdiff_dec *d, const struct vcdiff_patch *p,
		   size_t i, const struct vcdiff_op **ops, size_t *nops);

/*
 * The data section (decompressed if stored compressed: the bytes of ADD
 * and RUN) of the window the last successful vcdiff_dec_ops() or
 * vcdiff_dec_window() call on d decoded: *len bytes, and *add_base, the
 * addr of an ADD op reading its first byte. Owned by d, valid until the
 * next call on d. For a caller that checks what it decoded.
 */
const uint8_t *vcdiff_dec_data(const struct vcdiff_dec *d, size_t *len,
			       uint64_t *add_base);

/*
 * Rebuilds window i into dst (dst_cap >= tgt_len). Source bytes come from
 * read_src; for VCD_TARGET windows earlier target bytes come from read_tgt
 * (may be NULL otherwise). Verifies the window's adler32 if it has one.
 * Returns tgt_len, -EBADMSG (malformed, checksum mismatch, or source too
 * short), -ERANGE if dst_cap is too small, or a callback's -errno.
 */
ssize_t vcdiff_dec_window(struct vcdiff_dec *d, const struct vcdiff_patch *p,
			  size_t i, vcdiff_read_fn read_src, void *src_ctx,
			  vcdiff_read_fn read_tgt, void *tgt_ctx,
			  uint8_t *dst, size_t dst_cap);

/*
 * Writes section `kind` (enum vcdiff_sect) of window i to dst, decompressed
 * if it is stored compressed; dst (borrowed, dst_cap bytes) must hold the
 * win->*_plain_len bytes. Reads only that section of the patch; a
 * compressed one is decoded alone (one xz block, with the xz stream header
 * of its kind put in front), so windows can be read in any order. Returns
 * the section's length, -ERANGE if dst_cap is too small, -EBADMSG if the
 * section is corrupt or truncated (reason in vcdiff_dec_reason), -ENOTSUP
 * if it is compressed and the patch is not windowed,
 * -EINVAL for a bad i or kind, -EIO, -ENOMEM (scratch for the stored
 * bytes). Same threading rule as the other vcdiff_dec_* calls.
 */
ssize_t vcdiff_dec_section(struct vcdiff_dec *d, const struct vcdiff_patch *p,
			   size_t i, int kind, uint8_t *dst, size_t dst_cap);

/*
 * As vcdiff_dec_section, from the section's stored bytes the caller has
 * already read (stored, stored_len = the header's *_len; borrowed), so a
 * caller that checksums what it reads decodes exactly the bytes it checked
 * (the xz blocks carry no check of their own). Reads nothing from the
 * patch file. Same returns, plus -EINVAL if stored_len is not the
 * section's stored length.
 */
ssize_t vcdiff_dec_section_mem(struct vcdiff_dec *d,
			       const struct vcdiff_patch *p, size_t i,
			       int kind, const uint8_t *stored,
			       size_t stored_len, uint8_t *dst, size_t dst_cap);

/* Static string saying why the last call on d failed ("" if none). */
const char *vcdiff_dec_reason(const struct vcdiff_dec *d);

/*
 * Writes to out_fd (borrowed, a local output) a secondary-free patch
 * equivalent to the one in src (borrowed for the call):
 * same windows, instructions, application header and adler32, so stock
 * `xdelta3 -d` decodes both to the same bytes. Decompresses lzma sections
 * natively; djw and fgk give -ENOTSUP (the caller may fall back to
 * `xdelta3 recode -S none`). progress, if not NULL, is called now and then
 * with bytes of src consumed and its total size. Returns 0 or -errno
 * (-EBADMSG with *why set for malformed input, -EMEDIUMTYPE if src is
 * not VCDIFF). On failure out_fd may hold a partial patch.
 */
int vcdiff_recode_plain(struct blob *src, int out_fd,
			void (*progress)(void *ctx, uint64_t done,
					 uint64_t total),
			void *ctx, const char **why);

#endif
