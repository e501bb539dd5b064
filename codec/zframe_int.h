/* SPDX-License-Identifier: MIT */
/*
 * zframe_int: what zframe's two files share and nothing else sees (only
 * they may include it; `make layering` checks): the seek table's format
 * and two helpers.
 *
 *   codec/zframe.c        reading: open, the seek table, the frame walk,
 *                         zframe_read_frame() and its dctx
 *   codec/zframe_write.c  writing: zframe_writer, zframe_transcode()
 *
 * The design, for both (this was the comment of zframe.c):
 *
 * zframe: random access into zstd files by frame (see zframe.h).
 *
 * An open zframe is an index: one entry per frame that holds data, with
 * 64-bit raw and file offsets, taken either from the seek table at the end
 * of the file (zstd's contrib seekable format) or, when there is none, from
 * walking frame and block headers (never the data) from the start. The
 * file is untrusted: the table is checked against the file size at open,
 * and each frame is checked against its entry when it is read (magic,
 * content size, exact length, content checksum, seek-table checksum), so a
 * damaged file gives -EBADMSG, never wrong bytes. The one hole is a file
 * without a seek table: there a frame's own Frame_Content_Size is all that
 * places the frames after it, and a small lie in it (checked only against
 * what the blocks allow) fails that frame but shifts the later ones. A
 * caller that cannot accept this transcodes such files too.
 *
 * The writer cuts its input into frames and hands them to worker threads
 * through a ring of slots; the caller's thread copies input in and writes
 * finished frames out in order, so memory stays at a few frames per thread
 * whatever the stream's size, and write(2) errors reach the caller.
 *
 * Not here: caching of decompressed frames, dictionaries, frames other
 * than zstd and skippable ones. Never prints, logs or exits.
 */
#ifndef SNAPFS_CODEC_ZFRAME_INT_H
#define SNAPFS_CODEC_ZFRAME_INT_H

#include <stdint.h>

#include <zstd.h>

/* The seek table (zstd contrib seekable format): zframe_write.c writes
 * it, zframe.c reads and checks it. */
#define SKIP_HDR	8		/* skippable magic + Frame_Size */
#define SEEK_SKIP_MAGIC	0x184D2A5Eu	/* the seek table's skippable frame */
#define SEEK_MAGIC	0x8F92EAB1u
#define SEEK_FOOTER	9		/* Number_Of_Frames, descriptor, magic */
#define SEEK_CKSUM_FLAG	0x80
#define SEEK_RESERVED	0x7C		/* must be 0; bits 0-1 are "unused" */
#define SEEK_ENTRY_MAX	12

/* Used by open and by transcode, which sniffs its input. */
static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline int is_skippable(uint32_t magic)
{
	return (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

#endif /* SNAPFS_CODEC_ZFRAME_INT_H */
