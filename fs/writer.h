/* SPDX-License-Identifier: MIT */
/*
 * writer: turns a file written into the mount into a new layer.
 *
 * The first file of an empty store becomes its base (seekable zstd, frames
 * compressed on every core); every later file becomes a VCDIFF patch
 * against the newest layer, encoded while the data streams in. Writes in
 * order go straight to the encoder; rewrites of the first WRITER_HEAD
 * bytes (a save header fixed up at the end, as libvirt does) are absorbed;
 * anything else out of order falls back to spooling the whole file under
 * .snapfs/tmp/ and encoding it at commit. Nothing is visible to readers
 * until writer_commit(), which is atomic: patch to a temporary file,
 * fsync, rename into the store, layers file rewritten the same way,
 * directory fsynced, then the layer indexed and published. A crash at any
 * point leaves the chain as it was; temporaries are cleared at the next
 * mount.
 *
 * Not here: FUSE, names policy beyond what the store needs. One writer per
 * store at a time (the chain grows in a line); a writer's calls must not
 * run concurrently (the FUSE front end holds a lock).
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
 * after an error every later call fails and commit refuses). */
int writer_write(struct writer *w, uint64_t off, const void *buf,
		 size_t len);

/* Sets the size: growing appends zeros, shrinking falls back to the
 * spool. Returns 0 or -errno. */
int writer_truncate(struct writer *w, uint64_t size);

/* The file's size so far (highest offset written). */
uint64_t writer_size(const struct writer *w);
const char *writer_name(const struct writer *w);

/*
 * Finishes the layer and commits it (see the file-top comment). Returns 0
 * (the layer is in the chain), or -errno with a message; on failure the
 * chain and store are as before and the writer is spent.
 */
int writer_commit(struct writer *w, char *err, size_t errlen);

/* Frees; an uncommitted layer is abandoned and its temporaries removed. */
void writer_free(struct writer *w);

#endif
