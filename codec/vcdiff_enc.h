/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_enc: streaming VCDIFF encoder for snapshot streams.
 *
 * The target arrives in order, in pieces of any size; the source (the
 * previous snapshot) is read through a callback and is never materialised.
 * At creation the encoder indexes the whole source (block hashes in a table
 * of bounded size), then rolls a hash over the incoming bytes, verifies
 * candidate matches against the source and extends them both ways, so data
 * that moved by megabytes is still found; zero runs become RUN.
 *
 * Output is what stock `xdelta3 -d -s SRC PATCH OUT` accepts: windows of
 * at most VCDIFF_WIN_MAX with VCD_SOURCE (or no segment at all when a
 * window copies nothing from the source; never VCD_TARGET), minimal
 * varints, adler32 per window; optionally lzma secondary compression that
 * keeps windows independent (opts.secondary). Every op emitted is also
 * reported to an optional sink with absolute addresses (ADD addr = offset
 * of the literal bytes in the patch file written, or in the window's
 * decompressed data section if that is stored compressed, as vcdiff.h
 * says; COPY_TGT, for bytes repeated within one window, addr = earlier
 * target offset in that same window), so the caller can index the new
 * layer without decoding the patch again.
 *
 * Not here: files, chains, threads of its own. One encoder per thread.
 */
#ifndef SNAPFS_CODEC_VCDIFF_ENC_H
#define SNAPFS_CODEC_VCDIFF_ENC_H

#include "codec/vcdiff.h"

struct vcdiff_enc;

struct vcdiff_enc_opts {
	uint32_t win_size;	/* target bytes per window; 0 = default */
	size_t index_budget;	/* bytes for the source hash index; 0 = default */
	/* Optional sink for every op, in target order (may be NULL). */
	int (*on_op)(void *ctx, const struct vcdiff_op *op);
	void *op_ctx;
	/* Optional progress of source indexing (bytes done, total). */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *progress_ctx;
	/*
	 * Secondary compression of each window's sections:
	 * VCDIFF_SEC_NONE (0): none, plain sections (readable by every
	 *   VCDIFF decoder).
	 * VCDIFF_SEC_LZMA_WINDOWED: lzma in xdelta3's framing (header id
	 *   VCDIFF_SEC_LZMA), each compressed section one whole xz block,
	 *   so stock `xdelta3 -d` reads the patch as its own lzma and
	 *   vcdiff_dec still decodes any window alone. A section stays plain
	 *   (its del_ind bit clear) when compressing it does not save more
	 *   than 2 bytes or it is under 10 bytes (xdelta3's rule).
	 */
	int secondary;
	/* liblzma preset 1..9 for VCDIFF_SEC_LZMA_WINDOWED, optionally
	 * | VCDIFF_LZMA_EXTREME; 0 = default (VCDIFF_LZMA_PRESET_DEFAULT).
	 * The dictionary is capped at the window size either way. */
	uint32_t lzma_preset;
};

#define VCDIFF_LZMA_EXTREME 0x80000000u	/* = LZMA_PRESET_EXTREME */
/* Preset 1 (1 MiB dictionary, fast match finder): measured on a 1 GiB
 * generated pair, 9.55 MB in 3.3 s of encode against 8.98 MB in 13.1 s
 * for preset 6 and 9.89 MB for xdelta3 -e -9 -B; decoders then need
 * 1 MiB of dictionary each. See vcdiff_enc.c. */
#define VCDIFF_LZMA_PRESET_DEFAULT 1

/*
 * Creates an encoder whose source has src_size bytes readable through
 * read_src(src_ctx, ...), and whose patch bytes go to write_out(out_ctx,
 * ...) in order. Reads and indexes the whole source before returning.
 * Callbacks and contexts must stay valid until vcdiff_enc_free. Returns 0
 * or -errno (a callback's error passes through; -EINVAL for a bad option).
 */
int vcdiff_enc_new(struct vcdiff_enc **out, const struct vcdiff_enc_opts *o,
		   uint64_t src_size, vcdiff_read_fn read_src, void *src_ctx,
		   vcdiff_write_fn write_out, void *out_ctx);
/* Appends len target bytes. Returns 0 or -errno. */
int vcdiff_enc_write(struct vcdiff_enc *e, const void *buf, size_t len);
/* Encodes what is buffered and ends the patch (an empty target still gets
 * one window). Returns 0 or -errno. */
int vcdiff_enc_finish(struct vcdiff_enc *e);
/* Bytes of patch written so far / target bytes consumed so far. */
uint64_t vcdiff_enc_patch_size(const struct vcdiff_enc *e);
uint64_t vcdiff_enc_target_size(const struct vcdiff_enc *e);
void vcdiff_enc_free(struct vcdiff_enc *e);

#endif
