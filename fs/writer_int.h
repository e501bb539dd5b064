/* SPDX-License-Identifier: MIT */
/*
 * writer_int: what the writer's two files share: the writer itself and
 * the steps one calls in the other. fs/writer.c takes the bytes in
 * (streaming to the encoder, the spool fall-back); fs/wcommit.c ends a
 * file and makes it a snapshot (finish: encode end, verify, index;
 * publish). Nothing else includes it.
 */
#ifndef SNAPFS_FS_WRITER_INT_H
#define SNAPFS_FS_WRITER_INT_H

#include <stdint.h>
#include <sys/types.h>
#include <xxhash.h>

#include "fs/chain.h"
#include "fs/store.h"
#include "codec/vcdiff_enc.h"

struct vcdiff_enc;
struct vcdiff_patch;
struct vcdiff_sidx;
struct wcheck;
struct zframe;
struct zframe_writer;

#define CHUNK ((size_t)1 << 20)
#define TAIL ((size_t)64 << 10)	/* held back: see the file-top comment */

enum { MODE_STREAM, MODE_SPOOL };

struct writer {
	struct chain *c;
	struct store *s;
	char name[256];
	char file[300];		/* name.patch or name.zst */
	char tmp[320];		/* in .snapfs/tmp: the encoded layer */
	char spool[340];	/* in .snapfs/tmp, SPOOL mode only */
	int base;		/* writing the first layer */
	int mode;
	int failed;		/* -errno of the first failure, sticky */
	int finished;		/* tmp holds the whole file, fsynced and
				 * verified; the sink is closed */
	int dirty;		/* written or truncated since the last finish */
	int tmpfd, spoolfd;
	int resfd;		/* in .snapfs/tmp: space kept for the tree and
				 * layers file rewrites of writer_publish() */
	char res[340];
	char note[600];		/* writer_note() */
	uint32_t id;		/* reserved in the tree for the new snapshot */
	struct chain_layer *parent;	/* the version the patch is against */
	int owned;		/* writer_set_owner was called */
	uid_t uid;
	gid_t gid;
	mode_t fmode;		/* of the stored file */
	uint64_t parent_size;
	/* Of the full state, taken by the verify that decodes it back. */
	XXH3_state_t *digest;
	uint64_t written;	/* bytes of the stream so far (STREAM): fed
				 * to the sink, then tail_len held back */
	uint8_t *tail;		/* 2 * TAIL bytes (STREAM) */
	size_t tail_len;
	uint64_t size;		/* highest offset written */
	uint8_t *head;		/* first WRITER_HEAD bytes (STREAM) */
	int head_dirty;
	struct vcdiff_enc *enc;
	struct zframe_writer *zw;
	/* The encoder reads its source mostly in order (indexing, then
	 * along matches): a stream lets readahead decode it on all cores. */
	struct chain_stream *src_st;
	/* Checks the patch of the sink being written and indexes it from
	 * the encoder's ops (fs/wcheck.h); NULL for a base, and once a
	 * head fix-up spliced the patch (then the finish decodes it). */
	struct wcheck *chk;
	size_t lent;		/* cache budget lent while writing */
	/* fs/wsidx.c: the parent's source index kept from its own write
	 * (borrowed by the encoder; NULL: the encoder reads the parent to
	 * index it), and this file's, hashed as its bytes go to the sink. */
	struct vcdiff_sidx *sidx_src;
	struct vcdiff_sidx *sidx_new;
	/* Seconds spent per stage, for the log line of writer_timing(). */
	struct {
		double start;	/* writer_new called (monotonic clock) */
		double index;	/* writer_new: the parent read and indexed */
		int kept;	/* its index was kept from its write */
		double finish;	/* the last writer_finish, all of it */
		double verify;	/* of which the verify */
		size_t early, wins;	/* windows decoded before the close,
					 * of all (fs/wcheck.h) */
		struct vcdiff_enc_stats enc;	/* the last sink's stages */
	} tm;
	char timing[512];
};

/* Monotonic clock in seconds. */
double wr_now(void);

/* Reads the parent (the encoder's and decoder's source callback). */
ssize_t wr_src_read(void *ctx, uint64_t off, void *buf, size_t len);
/* fd of .snapfs/tmp. */
int wr_tmpdir(const struct writer *w);
/* A fresh temporary output and sink (encoder or zstd writer). */
int wr_sink_open(struct writer *w);
int wr_sink_write(struct writer *w, const void *buf, size_t len);
/* Ends the sink; its output is complete in tmpfd. 0 or -errno. */
int wr_sink_finish(struct writer *w);
/* STREAM -> SPOOL: everything written so far goes into the spool. */
int wr_to_spool(struct writer *w);
/* Open the encoded output in fd (a temporary under .snapfs/tmp, the
 * caller's) with the codec, which reads it as it reads stored files:
 * through a blob on a dup of fd. 0 or -errno (*why set as the codec's). */
int wr_patch_open(struct writer *w, int fd, struct vcdiff_patch **p,
		  const char **why);
int wr_zframe_open(struct writer *w, int fd, struct zframe **z,
		   const char **why);
/* fs/wsidx.c (see there): the memory the new index holds (to lend);
 * the parent's index taken from the chain if its write left it there; a
 * new builder for a fresh sink; bytes as they go to the sink; at
 * publish, the new index left for the next write under the snapshot's
 * digest (a string, chain_format_digest). Best effort: a failure only
 * means indexing the parent at the next write. */
size_t wr_sidx_mem(const struct writer *w);
void wr_sidx_take(struct writer *w);
void wr_sidx_start(struct writer *w);
void wr_sidx_feed(struct writer *w, const void *buf, size_t len);
void wr_sidx_keep(struct writer *w, const char *digest);
/* Gives back the room kept for the publish (wcommit.c). */
void wr_unreserve(struct writer *w);

#endif
