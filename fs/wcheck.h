/* SPDX-License-Identifier: MIT */
/*
 * wcheck: the writer's check of a patch it encodes, and the new layer's
 * index built from the encoder's own ops, so that a snapshot written into
 * the mount is never decoded again to be checked or indexed.
 *
 * Two halves, and what they prove together: the patch file decodes to
 * the bytes written.
 *   While encoding (wcheck_window, the encoder's on_window, on its output
 *   thread): every op of the window is checked against the bytes written,
 *   the target bytes the encoder holds: ADD and RUN bytes from the data
 *   section as it goes into the patch, COPY_SRC bytes read from the parent
 *   through the chain (the frames the matcher has just read, so from the
 *   cache), COPY_TGT bytes within the window; the ops must tile the
 *   window, and its adler32 must be that of the bytes. The window's ops,
 *   data section and place in the patch are recorded (XXH3-128 of the ops
 *   and of the data), its bytes go into the layer's digest, and its ops
 *   into the index (chain_ibuild_window).
 *   As soon as a window is in the file, a thread at idle priority
 *   decodes it from there with the same decoder readers use
 *   (vcdiff_dec_ops: lzma sections decompressed, instructions and
 *   addresses parsed): its header (place, target offset and length,
 *   adler32), ops and data section must be what was recorded.
 *   At close (wcheck_finish, after the fsync): the file is read back; its
 *   size and XXH3-64 must be those of the bytes the encoder gave
 *   write_out; it is opened, window count and headers must be as
 *   recorded, and the windows the idle thread has not reached are
 *   decoded as above, on two threads.
 * So a wrong op (an encoder bug), a section the serialiser or lzma got
 * wrong, a patch damaged on disk or behind our back after it was written,
 * or a parent that read back differently, all fail the check, and with
 * them close(). Not caught: a parent whose stored bytes are wrong yet read
 * the same way twice (its own checksums are the chain's business), and
 * hash collisions (128 bits).
 *
 * What it saves, measured on the bench's 1 GiB pair: the close's decode
 * through the chain (the parent's zstd frames again, every lzma data
 * section twice: 1.3-1.9 s) becomes a decode of the patch alone, and
 * most of that is done in the stream's idle time (README.md, Write).
 *
 * Threads: wcheck_window and wcheck_wrote on the encoder's output thread
 * (one at a time); the rest on the writer's, after vcdiff_enc_finish.
 * The early decode is the wcheck's own thread, stopped by wcheck_finish
 * and wcheck_free.
 */
#ifndef SNAPFS_FS_WCHECK_H
#define SNAPFS_FS_WCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "fs/chain.h"

struct wcheck;
struct vcdiff_enc_win;

/*
 * A check of a patch of snapshot id against parent P (a reference the
 * caller holds for the life of the wcheck) in chain c, written to fd
 * (the wcheck reads it through a dup of its own from here on). digest
 * (borrowed) is reset and then fed the bytes written, window by window.
 * 0 or -errno.
 */
int wcheck_new(struct wcheck **out, struct chain *c, uint32_t id,
	       struct chain_layer *P, int fd, XXH3_state_t *digest);
void wcheck_free(struct wcheck *k);

/* vcdiff_enc_opts.on_window (ctx: the wcheck). Returns 0 (what fails is
 * recorded for wcheck_finish) or -ENOMEM. */
int wcheck_window(void *ctx, const struct vcdiff_enc_win *w);
/* Every byte the encoder writes to the patch, in order. */
void wcheck_wrote(struct wcheck *k, const void *buf, size_t len);

/*
 * The check at close of the finished patch at fd (borrowed), size bytes
 * of target written. 0, -EBADMSG (with *why) if anything differs, or
 * -errno (reading it, -ENOMEM).
 */
int wcheck_finish(struct wcheck *k, int fd, uint64_t size, const char **why);

/* Windows the idle thread has decoded so far, of *of (if not NULL)
 * written so far (for the writer's log and the tests); any thread. */
size_t wcheck_early(struct wcheck *k, size_t *of);

/* The index built from the ops, for chain_prepare() (owned by k). */
struct chain_ibuild *wcheck_index(struct wcheck *k);

#endif
