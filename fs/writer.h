/* SPDX-License-Identifier: MIT */
/*
 * writer: turns a file written into the mount into a new layer.
 *
 * The first file of an empty store becomes its base (seekable zstd, frames
 * compressed on every core); every later file becomes a VCDIFF patch
 * against the current snapshot (the newest, the one just written, or
 * where `current` was set), encoded while the data streams in. Writes in
 * order go straight to the encoder; rewrites of the first WRITER_HEAD
 * bytes (a save header fixed up at the end, as libvirt does) and of the
 * last 64 KiB, and a cut-back there, are absorbed; anything else out of
 * order falls back to spooling the whole file under
 * .snapfs/tmp/ and encoding it when the file is finished.
 *
 * A commit is two steps, so that whatever can fail reaches the process
 * that wrote (the FUSE front end calls the first at FLUSH, i.e. close(),
 * and at fsync, and the second at RELEASE, which nobody waits for):
 *   writer_finish()   ends the encoding, fsyncs the temporary file, reads
 *                     it back and checks it rebuilds the bytes written
 *                     (a patch: fs/wcheck.h, then chain_prepare() keeps
 *                     the index built from the encoder's ops), and
 *                     reserves the room the layers file rewrite needs.
 *                     This is where ENOSPC, EIO and a failed verify show.
 *   writer_publish()  one store_commit(): the tree file with the new
 *                     snapshot (the commit point), the patch moved into
 *                     the store, the layers file rewritten; then the
 *                     layer shown (its index loaded from the finish).
 * Decision: publish at RELEASE, not at FLUSH. A close() is not the end of
 * a file (the shell closes a dup before `cat` writes; `(cat a; cat b) > f`
 * closes one after each cat; libvirt closes and reopens to fix its header
 * up), and a published snapshot is immutable. A finish is undone by the
 * next write (SPOOL fall-back), so finishing early is safe, only slower.
 * A crash at any point leaves the chain as it was; temporaries are
 * cleared at the next mount.
 *
 * Not here: FUSE. One writer per store at a time (it reserves the next
 * id); a writer's calls must not run concurrently (the FUSE front end
 * holds a lock).
 */
#ifndef SNAPFS_FS_WRITER_H
#define SNAPFS_FS_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fs/chain.h"
#include "fs/store.h"

#define WRITER_HEAD ((size_t)1 << 20)

struct writer;

/*
 * Starts writing layer `name` (the name shown; the file becomes
 * name.patch, or name.zst for a base). Returns 0, -EEXIST if a layer or a
 * store file already has that name, -EINVAL (or -ENAMETOOLONG) for a name
 * the layers file cannot carry (fs/names.h), or -errno with a message in
 * err.
 */
int writer_new(struct writer **out, struct chain *c, struct store *s,
	       const char *name, char *err, size_t errlen);

/*
 * The stored file gets owner uid:gid and mode (applied at commit, before
 * it enters the store; the chown is skipped where the process may not
 * give files away). Without this call: the process's own, 0600.
 */
void writer_set_owner(struct writer *w, uid_t uid, gid_t gid, mode_t mode);

/* Writes len bytes at off. Returns 0 or -errno (-ENOSPC passes through;
 * after an error every later call fails and publish refuses). Allowed
 * after writer_finish(): the file is then no longer finished (see
 * writer_dirty()). An append after a finish costs a decode of what was
 * encoded into the spool; a rewrite inside the first WRITER_HEAD bytes
 * costs, at the next finish, a re-encode of the windows that hold them
 * (of the whole file for a base). */
int writer_write(struct writer *w, uint64_t off, const void *buf,
		 size_t len);

/* Sets the size: growing appends zeros; shrinking by no more than the
 * last 64 KiB written is absorbed, more falls back to the spool. Returns
 * 0 or -errno. */
int writer_truncate(struct writer *w, uint64_t size);

/* The file's size so far (highest offset written). */
uint64_t writer_size(const struct writer *w);
const char *writer_name(const struct writer *w);
/* The id the snapshot gets in the tree (its inode comes from it), and
 * its parent's (0 for a base). */
uint32_t writer_id(const struct writer *w);
uint32_t writer_parent_id(const struct writer *w);


/*
 * Ends the file as written so far: encoder flushed, temporary output
 * fsynced and verified (a patch: read back and every window decoded and
 * compared with what the encoder checked it against, fs/wcheck.h, or
 * after a spliced head decoded against the parent with every window's
 * adler32 checked; sizes matched; a base's frames decompressed), room for
 * the layers file reserved. Nothing is visible to readers yet. Returns 0,
 * or -errno with a message in err: -ENOSPC, -EIO (also for a failed
 * verify), -ENOMEM, ... A failure is sticky: the writer is spent, and
 * every later call returns the same error. Returns 0 at once when already
 * finished with no write or truncate since.
 */
int writer_finish(struct writer *w, char *err, size_t errlen);

/* Nonzero if written or truncated since the last writer_finish() (or
 * since writer_new() if there was none). A close() with nothing new
 * since the last one must not finish the file: see fuse_ops.c. */
int writer_dirty(const struct writer *w);

/* 0, or the sticky -errno of the first failure (-EALREADY once
 * published). */
int writer_status(const struct writer *w);

/* Makes the writer fail with err (a -errno) from now on, as if one of
 * its own calls had: a caller-side limit (the store's capacity bound)
 * that must not let a partial file be published. The first error
 * stays. */
void writer_fail(struct writer *w, int err);

/*
 * Nonzero if the file starts with libvirt's "save in progress" magic
 * (LibvirtQemudPart): libvirt closes such a file, reopens it and writes the
 * final magic over it. Publishing it before would freeze a save image
 * that libvirt itself refuses to restore.
 */
int writer_awaits_fixup(struct writer *w);

/* After a successful finish: a warning worth logging that this file will
 * not delta well and why (a libvirt save image compressed by
 * save_image_format, a patch about as large as the file), or NULL. The
 * string lives as long as w. */
const char *writer_note(const struct writer *w);

/* A line for the log: how long the stages took (parent read and
 * indexed, or its index taken when its own write left it: fs/wsidx.c;
 * the stream, the last close and its verify). The string lives
 * until the next call or writer_free. */
const char *writer_timing(struct writer *w);

/*
 * Makes a finished layer part of the tree, as a child of the snapshot
 * that was current at writer_new(), and current itself: one
 * store_commit() moves its file in and records it with its digest, then
 * chain_add() opens it. Requires a successful writer_finish() with no
 * write since (-EINVAL otherwise). Returns 0 (the layer is in the chain)
 * or -errno with a message; on failure the store and chain are as before
 * (except when chain_add() fails after the commit: the snapshot then
 * shows at the next mount) and the writer is spent. Serialised with the
 * other changes of the store by the caller.
 */
int writer_publish(struct writer *w, char *err, size_t errlen);

/* Frees; an uncommitted layer is abandoned and its temporaries removed. */
void writer_free(struct writer *w);

#endif
