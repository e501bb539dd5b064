/* SPDX-License-Identifier: MIT */
/*
 * remote: a store kept under s3://BUCKET/PREFIX, as the local code sees
 * it. The keys under PREFIX are the local store layout, so `aws s3 sync
 * STORE s3://b/p` makes a remote store and a sync back down a local one.
 *
 * The store code (fs/store) works on a local mirror directory standing
 * for the remote store: it holds the layers file and the tree file,
 * fetched whole at open, and .snapfs/ (derived data: indexes, checksums,
 * aux files). Layer files are never copied whole: each is a blob
 * (codec/blob.h) whose reads fetch the chunks they touch -- several
 * ranged GETs in flight, plus read-ahead chunks for a reader going
 * forwards -- into the disk cache (cache/dcache), which survives
 * remounts. Derived data is fetched from PREFIX/.snapfs/ before it would
 * be built, and uploaded there after it was built, so a second host
 * does not rebuild it.
 *
 * A blob's identity is its ETag and size (st_ino is a hash of the ETag,
 * st_mtime 0), the same on every host; ranged GETs carry If-Match, so an
 * object replaced under a mount gives EIO, never bytes of the new one.
 *
 * Writing: one mount per store, the holder of the lease object
 * PREFIX/.snapfs/lease (fs/rlease.c, -o writer), changes the bucket;
 * its commits go through fs/store's store_commit(), which calls the
 * steps below (fs/rwrite.c). The other mounts poll the tree and layers
 * files' ETags and load them again when they change.
 *
 * Not here: HTTP (fs/s3), cache policy (cache/dcache), what layer files
 * contain. Thread-safe: blobs may be read from any number of threads;
 * the other calls are made by the mount's setup and its serialised
 * changes.
 */
#ifndef SNAPFS_FS_REMOTE_H
#define SNAPFS_FS_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "codec/blob.h"
#include "fs/s3.h"

struct remote;

struct remote_opts {
	const char *endpoint;	/* -o endpoint=, or NULL */
	const char *cache_dir;	/* NULL: default (see remote_open) */
	uint64_t disk_cache;	/* bytes; 0: 8 GiB */
	uint32_t chunk;		/* fetch and cache unit; 0: 16 MiB */
	unsigned parallel;	/* ranged GETs in flight; 0: 8 */
	unsigned ahead;		/* read-ahead chunks; 0: parallel */
	unsigned timeout_ms, retries;	/* 0: s3's defaults */
	unsigned part_size;	/* multipart upload part; 0: s3's default */
	int writer;		/* take the lease: this mount may write */
	unsigned lease_ttl;	/* seconds; 0: 30 */
	void (*log)(void *ctx, int level, const char *msg);
	void *log_ctx;
};

/*
 * Connects to the store at url (s3://BUCKET[/PREFIX]): checks the
 * credentials with one request, opens the disk cache (cache_dir, default
 * $SNAPFS_CACHE_DIR, else /var/cache/snapfs for root, else
 * $XDG_CACHE_HOME/snapfs or ~/.cache/snapfs) and makes the mirror
 * directory, then fetches the layers and tree files into it. Returns 0
 * or -errno with one message in err naming the store and what to do.
 */
int remote_open(struct remote **out, const char *url,
		const struct remote_opts *o, char *err, size_t errlen);
void remote_free(struct remote *r);

/* The local directory standing for the store (see above). */
const char *remote_mirror(const struct remote *r);

/*
 * Fills st for the store file named file (relative to the store) from the
 * listing taken at open: a regular file, its size, st_mtime its
 * Last-Modified. Returns 0 or -ENOENT.
 */
int remote_stat(struct remote *r, const char *file, struct stat *st);

/*
 * Opens the layer file named file (relative to the store) as a blob: a
 * HEAD for its size and ETag, then reads through the disk cache. Returns
 * 0 or -errno with a message (-ENOENT: no such object).
 */
int remote_open_blob(struct remote *r, const char *file, struct blob **out,
		     char *err, size_t errlen);

/*
 * Derived data .snapfs/SUB/NAME: remote_fetch_derived downloads it into
 * the mirror if the bucket has it and the mirror does not (0, or -ENOENT
 * if the bucket has none); remote_put_derived uploads the mirror's copy
 * (0 or -errno; a store one may only read gives -EACCES once, and later
 * calls do nothing).
 */
int remote_fetch_derived(struct remote *r, const char *sub, const char *name);
int remote_put_derived(struct remote *r, const char *sub, const char *name);
/*
 * Opens the bucket's copy of derived file .snapfs/SUB/NAME as a blob
 * named label, read lazily through the disk cache. Aux files and plain
 * copies are kept there compressed (NAME.zst, seekable zstd: mostly
 * repeats, and every reading host fetches them) and read through
 * codec/zblob; an uncompressed one (an older snapfs) is read as it is.
 * 0, -ENOENT (none), or -errno.
 */
int remote_open_derived(struct remote *r, const char *sub, const char *name,
			const char *label, struct blob **out);

/*
 * Working sets (fs/rprefetch.c). A restore reads most of a snapshot's
 * layers, in an order of its own; the ranges its first restore fetched
 * are its working set, recorded in the bucket as
 * PREFIX/.snapfs/ws/ID.ws ("OFFSET LENGTH KEY" lines, in fetch order),
 * so later mounts on any host can fetch them first, in parallel.
 *
 * remote_reading(): snapshot id is being opened for reading, until the
 * matching remote_read_done(); fetches meanwhile are recorded as its,
 * and as those of every other snapshot open then (concurrent restores
 * of different snapshots each record what both fetched, which only
 * costs prefetching a little more). A snapshot that already has a
 * record in the bucket is not recorded again. remote_ws_save() uploads
 * the records (at
 * unmount). remote_prefetch_start() starts a thread that fetches id's
 * working set, then (rest) the remaining chunks of the same objects,
 * pausing while readers wait for a fetch; remote_free() stops it.
 */
void remote_reading(struct remote *r, uint32_t id);
void remote_read_done(struct remote *r, uint32_t id);
int remote_ws_save(struct remote *r);
int remote_prefetch_start(struct remote *r, uint32_t id, int rest);
void remote_prefetch_stop(struct remote *r);

/* --- writing (fs/rlease.c, fs/rwrite.c) --- */

/* Nonzero if this mount holds the store's lease (and has not lost it). */
int remote_writer(const struct remote *r);
/*
 * Proves the lease is still this mount's, renewing it now (a commit
 * calls this just before its commit point). Returns 0, or -EROFS with a
 * message if it was lost (expired while this mount could not reach the
 * bucket, and taken by another).
 */
int remote_lease_check(struct remote *r, char *err, size_t errlen);

/*
 * Uploads the local file fd (its whole size; fd stays the caller's) as
 * object key, multipart when large, and seeds the disk cache with it so
 * this host does not fetch it back. Records the upload against fd's
 * file (device, inode, size, mtime): remote_stage() does not upload the
 * same file again, remote_local_blob() gives it the object's identity.
 * Returns 0 or -errno with a message naming the object.
 */
int remote_upload(struct remote *r, const char *key, int fd, char *err,
		  size_t errlen);
/*
 * A blob reading the local file fd (a dup; fd stays the caller's) with
 * the identity (blob_stat) of the object remote_upload() made of it as
 * key, so derived data built from it is named as the bucket's object
 * will be. Returns 0, -ENOENT (no such upload of this file), -errno.
 */
int remote_local_blob(struct remote *r, const char *key, int fd,
		      const char *label, struct blob **out);

struct tree;
/*
 * Before a commit's commit point (store_commit): puts in the bucket the
 * files next's pending moves bring in, then proves the lease (the
 * commit point follows at once). A file
 * from .snapfs/tmp/NAME (tmpfd) goes to its final key if the bucket has
 * none (uploaded there unless remote_upload() did), else to
 * .snapfs/tmp/NAME, copied over after the commit point: a reader never
 * sees a key the tree names change before the tree does. A store file
 * moved (a rename) is copied to its new key (which must be new: -EEXIST).
 * 0 or -errno with a message; on failure the bucket's tree is unchanged.
 */
int remote_stage(struct remote *r, const struct tree *next, int tmpfd,
		 char *err, size_t errlen);
/* Uploads the mirror's copy of name (the tree or layers file). The tree
 * file is the commit point. 0 or -errno with a message. */
int remote_put_meta(struct remote *r, const char *name, char *err,
		    size_t errlen);
/*
 * After the commit point: does in the bucket what t's pending records
 * say (copies from .snapfs/tmp/, then deletes of replaced, moved and
 * removed objects). Idempotent: a writer's next mount finishes a change
 * its crash interrupted. 0 or -errno (logged, naming the object).
 */
int remote_roll_forward(struct remote *r, const struct tree *t);

/*
 * For the mounts that do not write: remote_changed() HEADs the tree and
 * layers files, 1 if either's ETag is not the mirror's (0 if not, or
 * -errno); remote_refresh() fetches both and the listing again. 0 or
 * -errno with a message.
 */
int remote_changed(struct remote *r);
int remote_refresh(struct remote *r, char *err, size_t errlen);

struct remote_stats {
	struct s3_stats s3;
	uint64_t cache_budget, cache_used, cache_hits, cache_misses;
	uint64_t fetched;	/* bytes of layer files fetched */
	uint64_t prefetched;	/* of which by the prefetch thread */
	uint64_t uploaded;	/* bytes of layer files uploaded */
	uint64_t refreshes;	/* new trees seen by polling */
};
void remote_get_stats(struct remote *r, struct remote_stats *st);

#endif
