/* SPDX-License-Identifier: MIT */
/*
 * zframe: zstd files with random access by frame, in the seekable format
 * of zstd's contrib/seekable_format (independent frames followed by a
 * skippable frame holding the seek table), which `zstd -d` still reads.
 *
 * Reading: a file with a seek table is used as it is; a file of several
 * frames without one is indexed by walking the frame headers; a file whose
 * frames are too large for random access (the single frame `zstd` writes)
 * must first be transcoded with zframe_transcode(). Writing: zframe_writer
 * cuts a stream into frames and compresses them on several threads.
 *
 * The file is read through a blob (codec/blob.h), local or remote, never
 * an fd of its own.
 *
 * Not here: caching of decompressed frames (the caller's), files other than
 * the one it was given. Never prints. A zframe is read-only after open and
 * may be shared by threads; a zframe_dctx belongs to one thread at a time;
 * a zframe_writer to one thread.
 */
#ifndef SNAPFS_CODEC_ZFRAME_H
#define SNAPFS_CODEC_ZFRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct blob;

/* Frames larger than this are not randomly accessible: transcode. */
#define ZFRAME_MAX_FRAME (8u << 20)
/* Frame size zframe_writer uses unless told otherwise. */
#define ZFRAME_DEFAULT_FRAME (256u << 10)

struct zframe;
struct zframe_dctx;
struct zframe_writer;

struct zframe_entry {
	uint64_t raw_off;	/* offset of the frame's first decompressed byte */
	uint64_t comp_off;	/* file offset of the frame */
	uint32_t raw_len;	/* decompressed bytes */
	uint32_t comp_len;	/* bytes in the file */
};

/* --- reading --- */

/*
 * Indexes the zstd file b. On success the zframe takes a reference on b
 * (blob_ref), dropped by zframe_free, so the caller may put its own at
 * once; on failure it holds none. Returns 0; -EMEDIUMTYPE if it is not
 * zstd; -E2BIG if it is zstd but a frame is larger than ZFRAME_MAX_FRAME
 * or of unknown size (transcode it); -EBADMSG if malformed (bad seek
 * table, truncated frame); -EIO or the blob's -errno; -ENOMEM. On
 * failure *why (if not NULL) gets a static reason.
 */
int zframe_open(struct zframe **out, struct blob *b, const char **why);
void zframe_free(struct zframe *z);

uint64_t zframe_size(const struct zframe *z);	/* decompressed bytes */
size_t zframe_count(const struct zframe *z);
const struct zframe_entry *zframe_frame(const struct zframe *z, size_t i);
/* Index of the frame holding raw_off; zframe_count() if past the end. */
size_t zframe_find(const struct zframe *z, uint64_t raw_off);
uint32_t zframe_max_frame(const struct zframe *z);	/* largest raw_len */

int zframe_dctx_new(struct zframe_dctx **out);
void zframe_dctx_free(struct zframe_dctx *dc);

/*
 * Decompresses frame i into dst (dst_cap >= raw_len), verifying the frame's
 * content checksum when it has one. Returns raw_len, -EBADMSG (corrupt
 * frame, with vcdiff-style reason in zframe_dctx_reason), -ERANGE, -EIO.
 */
ssize_t zframe_read_frame(const struct zframe *z, struct zframe_dctx *dc,
			  size_t i, void *dst, size_t dst_cap);
const char *zframe_dctx_reason(const struct zframe_dctx *dc);

/* --- writing --- */

struct zframe_writer_opts {
	uint32_t frame_size;	/* raw bytes per frame; 0 = ZFRAME_DEFAULT_FRAME */
	int level;		/* zstd level; 0 = 3 */
	int nthreads;		/* compression threads; 0 = online CPUs */
	int raw;		/* zframe_transcode only: write the decompressed
				 * bytes as they are, not as zstd */
};

/*
 * Starts a seekable zstd stream written to out_fd (borrowed) at its current
 * offset. Frames carry content checksums. Returns 0 or -errno.
 */
int zframe_writer_new(struct zframe_writer **out, int out_fd,
		      const struct zframe_writer_opts *o);
/* Appends len bytes. Returns 0, or -errno from compression or write(2)
 * (-ENOSPC passes through). */
int zframe_writer_write(struct zframe_writer *w, const void *buf, size_t len);
/* Flushes the last frame and writes the seek table. Returns 0 or -errno. */
int zframe_writer_finish(struct zframe_writer *w);
/* Frees; an unfinished stream is abandoned (the file is the caller's). */
void zframe_writer_free(struct zframe_writer *w);

/*
 * Compresses the bytes of src_fd from offset 0 to its end into out_fd at
 * its offset, as a seekable stream with options o. Both fds are borrowed.
 * Returns 0 or -errno.
 */
int zframe_compress_fd(int src_fd, int out_fd,
		       const struct zframe_writer_opts *o);

/*
 * Decompresses the zstd file src (borrowed for the call; any framing) and
 * writes it to out_fd (borrowed, a local output) as a seekable stream with
 * the given options (or plain, if o->raw). progress as in
 * vcdiff_recode_plain. Returns 0 or -errno (-EBADMSG, *why set, if corrupt).
 */
int zframe_transcode(struct blob *src, int out_fd,
		     const struct zframe_writer_opts *o,
		     void (*progress)(void *ctx, uint64_t done, uint64_t total),
		     void *ctx, const char **why);

#endif
