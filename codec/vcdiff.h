/* SPDX-License-Identifier: MIT */
/*
 * vcdiff: what the VCDIFF decoder and encoder share: the normalised
 * instruction ("op") that both speak, the source-reader callback, the
 * window limits, and the adler32 that xdelta3 stores per window.
 *
 * An op is an RFC 3284 instruction with every address made absolute, so a
 * consumer (the chain's extent index) never needs the window's address
 * caches, segment or section layout. Not here: parsing and encoding, which
 * live in vcdiff_dec and vcdiff_enc. Pure data and pure functions: safe
 * from any thread.
 */
#ifndef SNAPFS_CODEC_VCDIFF_H
#define SNAPFS_CODEC_VCDIFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* xdelta3 3.0.11 refuses target windows above 16 MiB. */
#define VCDIFF_WIN_MAX (16u << 20)

/* Delta indicator bits: which sections of a window are stored
 * secondary-compressed (RFC 3284 VCD_DATACOMP, VCD_INSTCOMP, VCD_ADDRCOMP). */
#define VCDIFF_DEL_DATA 0x01
#define VCDIFF_DEL_INST 0x02
#define VCDIFF_DEL_ADDR 0x04

/* Window indicator bits (RFC 3284 plus xdelta3's VCD_ADLER32). */
#define VCDIFF_WIN_SOURCE 0x01
#define VCDIFF_WIN_TARGET 0x02
#define VCDIFF_WIN_ADLER32 0x04

/* Secondary compressor ids as xdelta3 writes them. */
#define VCDIFF_SEC_NONE 0
#define VCDIFF_SEC_DJW 1
#define VCDIFF_SEC_LZMA 2
#define VCDIFF_SEC_FGK 16
/*
 * Not an id on disk (vcdiff_enc_opts.secondary): lzma (header id
 * VCDIFF_SEC_LZMA) in which every compressed section is one xz block, so
 * each window decodes on its own (vcdiff_patch_windowed). Stock xdelta3
 * reads it as ordinary lzma. Above 255: never confused with a header byte.
 */
#define VCDIFF_SEC_LZMA_WINDOWED 0x102

enum vcdiff_op_kind {
	VCDIFF_OP_ADD = 1,	/* literal bytes: addr = offset in the patch
				 * file, or, if the window's data section is
				 * stored compressed (vcdiff_win.del_ind &
				 * VCDIFF_DEL_DATA), offset in that section
				 * decompressed (vcdiff_dec_section) */
	VCDIFF_OP_RUN = 2,	/* byte repeated len times; addr unused */
	VCDIFF_OP_COPY_SRC = 3,	/* addr = absolute offset in the source file */
	VCDIFF_OP_COPY_TGT = 4,	/* addr = absolute offset in this target, below
				 * tgt_off; if addr + len > tgt_off the copy
				 * overlaps itself and repeats the period
				 * tgt_off - addr, front to back */
};

struct vcdiff_op {
	uint64_t tgt_off;	/* absolute offset in the target it produces */
	uint64_t addr;		/* meaning depends on kind, see above */
	uint32_t len;		/* bytes produced, > 0 */
	uint8_t kind;		/* enum vcdiff_op_kind */
	uint8_t byte;		/* the RUN byte */
};

/*
 * Reads up to len bytes at off of some file (a source or target) into buf.
 * Returns the bytes read (short only at end of file) or -errno.
 */
typedef ssize_t (*vcdiff_read_fn)(void *ctx, uint64_t off, void *buf,
				  size_t len);

/* Writes len bytes (all of them) or returns -errno. Used by the encoder. */
typedef int (*vcdiff_write_fn)(void *ctx, const void *buf, size_t len);

/* adler32 as zlib computes it; start with adler = 1. */
uint32_t vcdiff_adler32(uint32_t adler, const void *buf, size_t len);

/*
 * adler32 continued over n copies of byte, in O(1): equal to
 * vcdiff_adler32(adler, buf, n) for a buffer of n such bytes. Lets a
 * window made only of RUN instructions be verified without building it,
 * so a patch claiming a huge target costs its own size, not the target's.
 */
uint32_t vcdiff_adler32_run(uint32_t adler, uint8_t byte, uint64_t n);

#endif
