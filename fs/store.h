/* SPDX-License-Identifier: MIT */
/*
 * store: a snapfs store directory on disk, and the only code that changes
 * it.
 *
 * A store is a directory with increments.txt (one path per line, newest
 * first, base last: the line the plain scripts decode), the files it
 * names, optionally snapshots.txt (the tree: branches and metadata, see
 * fs/tree.h), and .snapfs/ for derived data (indexes, converted patches
 * and bases, checksums, temporaries, the lock). Opening a store reads the
 * tree (or makes one from the line), finishes a change a crash
 * interrupted, takes the lock that keeps a second snapfs off the store,
 * and clears leftover temporaries. Nothing outside the store is opened,
 * created or deleted: no symlink is followed, FIFOs, devices and sockets
 * are refused without blocking, and .snapfs/ and its subdirectories must
 * be real directories (fs/safefile). Comments and blank lines of
 * increments.txt survive rewrites, each after the line it followed.
 *
 * Every change on disk goes through store_commit(): the new tree, with
 * the file moves and deletions it needs, is written to snapshots.txt
 * atomically (temporary file, fsync, rename, directory fsync) -- that is
 * the commit point -- then the moves and deletions are done and
 * increments.txt is rewritten, and the tree is written once more without
 * them. A crash before the commit point leaves the old store; after it,
 * the next open rolls the change forward. store_replace() is that same
 * atomic step for one file, used for derived data too. A store in a
 * bucket runs the same protocol there (fs/rwrite.c): what the change
 * brings in is put under keys no tree names yet, then snapshots.txt is
 * the commit point, then the pending records are done in the bucket.
 *
 * Not here: what layer files contain (the chain's business). Errors
 * become one message naming the file and what to do, in the caller's
 * buffer. Not thread-safe: the caller serialises changes; store_tree()
 * views stay valid until the next commit.
 */
#ifndef SNAPFS_FS_STORE_H
#define SNAPFS_FS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs/tree.h"

struct blob;

#define STORE_LAYERS_FILE "increments.txt"
#define STORE_META_DIR ".snapfs"
#define STORE_MAX_LAYERS 8000

struct store;

/*
 * Opens the store at dir. A store without a layers file is new and empty
 * (the first file written becomes its base); a layers file that exists but
 * names nothing is refused, as is an absolute or ".." path, two files
 * with the same shown name, or an increments.txt that disagrees with
 * snapshots.txt other than by layers added on top by the plain scripts
 * (those are adopted). Returns 0 or -errno with a message in err.
 */
int store_open(struct store **out, const char *dir, char *err, size_t errlen);
void store_free(struct store *s);

/*
 * Opens the store for reading only, beside a mount that may hold it
 * (snapctl's ls, cat, check, ...): takes no lock, leaves .snapfs/tmp/
 * alone, finishes no interrupted change (-EBUSY with a message: the
 * holder does that), shows lines a plain script added on top without
 * recording them, and store_commit() refuses with -EROFS. Derived data
 * (indexes) may still be written: those writes are atomic renames of
 * identical content, so a mount writing the same file loses nothing.
 * What is read is the store as it was at open; a change the mount makes
 * meanwhile may make a later read fail (-EIO/-ENOENT), never wrong.
 */
int store_open_ro(struct store **out, const char *dir, char *err,
		  size_t errlen);
struct remote;
/*
 * Opens the store in a bucket that r stands for (fs/remote.h): its local
 * mirror is the store directory (the lock, derived data, temporaries),
 * layer files are blobs from the bucket. A mount holding the bucket's
 * lease (remote_writer) commits to the bucket: see store_commit(); the
 * others load as store_open_ro() does and store_commit() refuses with
 * -EROFS. r is borrowed and must outlive the store.
 */
int store_open_remote(struct store **out, struct remote *r, char *err,
		      size_t errlen);
int store_is_remote(const struct store *s);
/*
 * Reads the tree and layers file again (a remote mount that does not
 * write, after fs/remote fetched newer ones into the mirror). On failure
 * the tree stays as it was. store_tree() views taken before are invalid
 * afterwards. Returns 0 or -errno with a message (-EBUSY: a change is
 * half-done in the bucket, -EINVAL: the two files disagree; both pass
 * when the writer's commit ends).
 */
int store_reload(struct store *s, char *err, size_t errlen);
/*
 * Derived data .snapfs/SUB/NAME: store_derived_want() before opening it
 * (a remote store fetches the bucket's copy if the mirror lacks one),
 * store_derived_saved() after writing it (a remote store uploads it, so
 * other hosts do not rebuild it). No-ops for a local store; failures
 * only mean building it here (logged by fs/remote).
 */
void store_derived_want(struct store *s, const char *sub, const char *name);
/*
 * Opens derived file .snapfs/SUB/NAME as a blob named label: the local
 * file (beneath the store, no symlink), else for a remote store the
 * bucket's copy, read lazily through the disk cache like a layer file
 * (a converted base is as large as the base: it is not downloaded
 * whole). Returns 0 or -ENOENT (or -errno) if there is none.
 */
int store_derived_blob(struct store *s, const char *sub, const char *name,
		       const char *label, struct blob **out);
void store_derived_saved(struct store *s, const char *sub, const char *name);

/*
 * A new layer's file, written at fd under .snapfs/tmp, before the commit
 * that will name it file: store_put_new() puts it where that commit finds
 * it -- a bucket store uploads it as file now, so that a failure reaches
 * the process writing it; a local store has nothing to do --, and
 * store_new_blob() opens it (a dup of fd) as a blob with the identity it
 * will have once committed, so derived data built from it keeps its
 * name. 0 or -errno (store_put_new: with a message in err).
 */
int store_put_new(struct store *s, const char *file, int fd, char *err,
		  size_t errlen);
int store_new_blob(struct store *s, const char *file, int fd,
		   const char *label, struct blob **out);

/* Nonzero if s came from store_open_ro(). */
int store_readonly(const struct store *s);

/* Lets go of the lock early (a daemon that was unmounted, before its
 * slower teardown). The store must not be changed afterwards. */
void store_unlock(struct store *s);

/*
 * The lock file also says where the store is mounted, so that snapctl
 * can make its changes through the mount (fs/snapctl_mnt.c): the mount
 * writes "PID\nmount PATH\ntoken TOKEN\n" there, and answers TOKEN as
 * the root's STORE_TOKEN_XATTR. A token the mount does not answer (a
 * stale file, a path another mount now covers) routes nothing.
 */
#define STORE_TOKEN_XATTR "user.snapfs.mount_token"
/* Notes mountpoint (absolute, no newline) and token in the held lock file;
 * 0 or -errno (-EINVAL for a path with a newline). */
int store_note_mount(struct store *s, const char *mountpoint,
		     const char *token);
/* Reads what store_note_mount wrote into dir's lock file (never follows
 * a symlink, takes no lock). 0, or -ENOENT (nothing noted) or -errno. */
int store_mount_of(const char *dir, char *mnt, size_t mcap, char *token,
		   size_t tcap);
/* The parse of store_mount_of, on n bytes of a lock file (fuzzed:
 * tests/fuzz/fuzz_lock.c). Pure. */
int store_parse_lock(const char *buf, size_t n, char *mnt, size_t mcap,
		     char *token, size_t tcap);

const char *store_dir(const struct store *s);
int store_dirfd(const struct store *s);
/* fd of .snapfs/<sub> (created on open): "index", "plain", "base", "sums",
 * "aux", "full", "tmp". Returns -1 for an unknown name. */
int store_subdir(const struct store *s, const char *sub);

/* The tree as committed (borrowed: valid until the next store_commit). */
const struct tree *store_tree(const struct store *s);

/*
 * Opens snapshot id's layer file read-only as a blob (codec/blob.h), the
 * one way its bytes are read; blob_name() is the file's path in the store
 * and blob_stat() its identity. *out is the caller's reference (blob_put).
 * Returns 0 or -errno with a message naming the file and what to do.
 */
int store_open_layer(struct store *s, uint32_t id, struct blob **out,
		     char *err, size_t errlen);

/*
 * Commits next (a changed tree_clone() of store_tree()) as described at
 * the top. next's pending moves take files from .snapfs/tmp/ (as
 * ".snapfs/tmp/NAME") or the store into the store; its pending deletes
 * name store files to remove once the change is committed. Takes
 * ownership of next in every case. Returns 0 once committed (a failure in
 * the roll-forward after the commit point is retried at the next open and
 * only put in err), or -errno with a message if nothing changed.
 */
int store_commit(struct store *s, struct tree *next, char *err,
		 size_t errlen);

/*
 * Writes a file atomically in dirfd: fill() writes into a new temporary
 * file, then fsync, rename over name, fsync of the directory. Returns 0
 * or -errno (fill's, or the system's); on failure name is unchanged.
 */
int store_replace(int dirfd, const char *name,
		  int (*fill)(int fd, void *arg), void *arg);

/* Deletes the entries of .snapfs/<sub> for which keep(name, arg) is 0
 * (all of them when keep is NULL), hidden names excepted: temporaries,
 * derived data no layer names. Unlinks only; never follows a link. */
void store_sweep(struct store *s, const char *sub,
		 int (*keep)(const char *name, void *arg), void *arg);
/*
 * Capacity bound (-o max_store, snapctl --max-store): max bytes for the
 * store's files (layer files, .snapfs and everything in it); 0 = none.
 * Setting it walks the store once; each store_commit() walks it again,
 * and store_used() adds what .snapfs/tmp holds now (a write in
 * progress). store_room() says whether extra more bytes fit: 0 or
 * -ENOSPC. The store itself does not refuse anything: the writer's and
 * rebase's callers ask before the bytes are written, so a refusal loses
 * nothing.
 */
void store_set_max(struct store *s, uint64_t max);
uint64_t store_max(const struct store *s);
uint64_t store_used(const struct store *s);
int store_room(const struct store *s, uint64_t extra);
/* Whether removing id (a rebase of its children) fits under the bound,
 * by a pessimistic estimate of the patches it writes: 0 or -ENOSPC. */
int store_remove_room(const struct store *s, uint32_t id);
/* Whether storing id again (chain_compact: its new file beside the old
 * one until the commit, at most as large) fits: 0 or -ENOSPC. */
int store_rewrite_room(const struct store *s, uint32_t id);
/* Bytes of the regular files under .snapfs/ (derived data, logs,
 * temporaries) and of the rest of the store, walked now. */
void store_bytes(const struct store *s, uint64_t *own, uint64_t *meta);

/* The shown name for a path: its file name without the last extension. */
int store_name_of(const char *path, char *name, size_t cap);

#endif
