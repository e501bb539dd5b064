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
 * The work can run on worker threads (opts.workers): while the caller's
 * thread copies the target in, windows are matched and written on up to
 * two workers, in order; callbacks are then called from those workers,
 * one at a time.
 *
 * Not here: files, chains. One encoder is used by one thread at a time
 * (the workers are its own).
 */
#ifndef SNAPFS_CODEC_VCDIFF_ENC_H
#define SNAPFS_CODEC_VCDIFF_ENC_H

#include "codec/vcdiff.h"

struct vcdiff_enc;
struct vcdiff_sidx;

/*
 * One window as written, for opts.on_window. Every pointer is valid for
 * the call only.
 */
struct vcdiff_enc_win {
	uint64_t tgt_off;		/* its target bytes: tgt_len from here */
	uint32_t tgt_len;
	const uint8_t *tgt;		/* those bytes */
	const struct vcdiff_op *ops;	/* its ops, as on_op gets them */
	size_t nops;
	const uint8_t *data;		/* its data section (ADD and RUN bytes),
					 * as it is before compression */
	uint32_t data_len;
	uint64_t add_base;		/* the addr of an ADD op reading data[0]:
					 * 0 if the section is stored compressed,
					 * else its patch offset (vcdiff.h) */
	uint64_t patch_off;		/* its Win_Indicator byte in the patch */
	uint32_t patch_len;		/* its bytes in the patch from there */
	uint8_t del_ind;		/* sections stored compressed (VCDIFF_DEL_*) */
	uint32_t adler32;		/* of the target bytes, as in its header */
};

struct vcdiff_enc_opts {
	uint32_t win_size;	/* target bytes per window; 0 = default */
	size_t index_budget;	/* bytes for the source hash index; 0 = default */
	/* Optional sink for every op, in target order (may be NULL). */
	int (*on_op)(void *ctx, const struct vcdiff_op *op);
	void *op_ctx;
	/* Optional sink for every window once it is written, after on_op
	 * got its ops (may be NULL). */
	int (*on_window)(void *ctx, const struct vcdiff_enc_win *w);
	void *win_ctx;
	/*
	 * Worker threads: 0 (default) runs everything in the caller's
	 * vcdiff_enc_write/finish. 1: windows are written (sections,
	 * secondary compression, write_out, on_op, on_window) on a worker
	 * while the caller matches the next window. 2: matching (and
	 * read_src, after the index is built) on a second worker too, so
	 * vcdiff_enc_write only copies into up to three windows of buffer.
	 * With workers the callbacks must not use what the caller's thread
	 * uses meanwhile, and an error surfaces at a later vcdiff_enc_write
	 * or at vcdiff_enc_finish.
	 */
	int workers;
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
	 * | VCDIFF_LZMA_EXTREME; 0 = the default: preset 0 with a 32 KiB
	 * dictionary, the hc4 match finder and nice_len 32, chosen for
	 * ingest speed (measured in vcdiff_ewin.c). The dictionary is
	 * capped at the window size either way. */
	uint32_t lzma_preset;
	/*
	 * Optional: the source index, built while the source itself went
	 * by (codec/vcdiff_sidx.h), ended or loaded for exactly src_size
	 * bytes and index_budget. Borrowed until vcdiff_enc_free. The
	 * encoder then does not read the source to index it; the patch is
	 * the same as without it when the index is what it would build.
	 */
	const struct vcdiff_sidx *sidx;
};

#define VCDIFF_LZMA_EXTREME 0x80000000u	/* = LZMA_PRESET_EXTREME */

/*
 * Creates an encoder whose source has src_size bytes readable through
 * read_src(src_ctx, ...), and whose patch bytes go to write_out(out_ctx,
 * ...) in order. Reads and indexes the whole source before returning.
 * Callbacks and contexts must stay valid until vcdiff_enc_free. Returns 0
 * or -errno (a callback's error passes through; -EINVAL for a bad option,
 * also an opts.sidx of another size or shape).
 */
int vcdiff_enc_new(struct vcdiff_enc **out, const struct vcdiff_enc_opts *o,
		   uint64_t src_size, vcdiff_read_fn read_src, void *src_ctx,
		   vcdiff_write_fn write_out, void *out_ctx);
/* Appends len target bytes. Returns 0 or -errno (with workers, possibly
 * the error of an earlier window). May wait for a free buffer. */
int vcdiff_enc_write(struct vcdiff_enc *e, const void *buf, size_t len);
/* Encodes what is buffered and ends the patch (an empty target still gets
 * one window); when it returns, every callback has returned for good.
 * Returns 0 or -errno. */
int vcdiff_enc_finish(struct vcdiff_enc *e);
/* Bytes of patch written (exact once finished; with workers it lags
 * before) / target bytes consumed so far. */
uint64_t vcdiff_enc_patch_size(const struct vcdiff_enc *e);
uint64_t vcdiff_enc_target_size(const struct vcdiff_enc *e);
/* Stops the workers (abandoning what is queued) and frees. Accepts NULL. */
void vcdiff_enc_free(struct vcdiff_enc *e);

/* Where the time went (seconds of wall clock per stage, summed over
 * windows; with workers the stages overlap). Exact once finished. */
struct vcdiff_enc_stats {
	double index;	/* reading and indexing the source (in _new) */
	double match;	/* matching */
	double out;	/* writing windows, all of it, including: */
	double lzma;	/*   secondary compression */
	double sink;	/*   on_op and on_window */
	double wait;	/* the caller waiting for a buffer or the end */
};
void vcdiff_enc_stats(const struct vcdiff_enc *e, struct vcdiff_enc_stats *st);

/* About how many bytes of memory an encoder with options o (NULL:
 * defaults) over a source of src_size bytes holds at its peak: index,
 * buffers, sections, lzma state. For a caller that budgets memory. */
size_t vcdiff_enc_mem_estimate(const struct vcdiff_enc_opts *o,
			       uint64_t src_size);

#endif
