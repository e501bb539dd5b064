/* SPDX-License-Identifier: MIT */
/*
 * blob: one stored file of a store (a base, a patch, a full layer), read
 * at offsets. It is the one interface through which codec/ and fs/ read
 * stored files, whatever holds them: a local file (blob_from_fd) or an
 * object in an object store (fs/remote supplies the ops; codec/ knows
 * nothing of HTTP). A blob is immutable while open: the same offset
 * always reads the same bytes, or fails.
 *
 * Not here: writing, derived data under .snapfs/ (always local: plain
 * fds, except that a derived copy read in place of a stored file -- a
 * converted base or patch, an aux file -- is wrapped with blob_from_fd so
 * there is one read path), caching policy (an implementation may cache;
 * callers cache decoded bytes in cache/bcache).
 *
 * Identity: blob_stat() gives a struct stat whose st_ino, st_size and
 * st_mtim identify the content -- the file's own inode and mtime locally,
 * a hash of the ETag remotely -- so derived data named after them is
 * found again by any host that sees the same object.
 *
 * Thread safety: blob_pread, blob_advise, blob_stat and the accessors may
 * be called from any number of threads at once; blob_ref/blob_put are
 * atomic. An implementation's ops must allow concurrent calls.
 */
#ifndef SNAPFS_CODEC_BLOB_H
#define SNAPFS_CODEC_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct blob;

struct blob_ops {
	/* Reads up to len bytes at off, fewer only at the end. Returns the
	 * bytes read or -errno (-EIO once retries are spent). */
	ssize_t (*pread)(void *impl, void *buf, size_t len, uint64_t off);
	/* Optional: [off, off + len) will be read soon (fetch it ahead). */
	void (*advise)(void *impl, uint64_t off, uint64_t len);
	/* Frees impl when the last reference goes. */
	void (*free)(void *impl);
};

/*
 * A blob over impl. st is copied (its st_size is the blob's size); name
 * is copied and used in messages. Takes impl: on failure ops->free(impl)
 * has been called. Returns 0 or -ENOMEM.
 */
int blob_new(struct blob **out, const struct blob_ops *ops, void *impl,
	     const struct stat *st, const char *name);

/*
 * A blob over a local file. Takes fd (closed by the last blob_put, or
 * here on failure). Returns 0 or -errno (fstat's).
 */
int blob_from_fd(struct blob **out, int fd, const char *name);
/* As blob_from_fd over a dup of fd: fd stays the caller's, open or
 * closed as it likes. For local files read through the codec's blob
 * path (a temporary being checked, a derived copy). 0 or -errno. */
int blob_from_dup(struct blob **out, int fd, const char *name);
/* As blob_from_dup, over the file's first size bytes only (-EINVAL if it
 * is shorter): a file still being appended to, whose prefix is final (a
 * patch checked window by window while it is encoded). */
int blob_from_dup_prefix(struct blob **out, int fd, uint64_t size,
			 const char *name);
/* As blob_from_dup, but blob_stat() gives ident (whose st_size must be
 * the file's: -EINVAL otherwise): a local copy of a file kept elsewhere
 * (an upload to a bucket), named as that file. 0 or -errno. */
int blob_from_dup_as(struct blob **out, int fd, const struct stat *ident,
		     const char *name);

/* Reads len bytes at off, fewer only at the end of the blob. Returns the
 * bytes read or -errno (-EOVERFLOW if off + len overflows). */
ssize_t blob_pread(struct blob *b, void *buf, size_t len, uint64_t off);
/* Reads exactly len bytes at off: 0, -EIO if the blob ends first, or
 * -errno. */
int blob_pread_full(struct blob *b, void *buf, size_t len, uint64_t off);
void blob_advise(struct blob *b, uint64_t off, uint64_t len);

uint64_t blob_size(const struct blob *b);
const struct stat *blob_stat(const struct blob *b);
const char *blob_name(const struct blob *b);
/* The local fd (for splice, posix_fadvise), or -1 for a blob that has
 * none. Owned by the blob. */
int blob_fd(const struct blob *b);

/*
 * Batched reads: many small reads of page-cached local files in one system
 * call (io_uring), because a deep layer's bytes come in ~2 KB pieces of
 * many files and, measured on this project's 2-core PVM host, a 4 KiB
 * pread cost 2.1-3.1 us while io_uring took 0.9 us a read in batches of
 * 32. Where the kernel refuses io_uring (disabled, seccomp, an old
 * kernel), a batch falls back to pread, read by read, with the same
 * results; remote blobs always take their own pread.
 *
 * A batch is one thread's at a time (keep them in a pool); blobs in it
 * may be shared.
 */
struct blob_batch;

struct blob_req {
	struct blob *b;
	void *buf;
	size_t len;
	uint64_t off;
	ssize_t res;		/* out: what blob_pread would return */
};

/* A new batch; *out owns an io_uring if the kernel gives one. 0 or
 * -ENOMEM (a kernel without io_uring is not an error). */
int blob_batch_new(struct blob_batch **out);
void blob_batch_free(struct blob_batch *bb);
/* 1 if bb reads through io_uring, 0 if through pread. */
int blob_batch_uring(const struct blob_batch *bb);
/* Does the n reads of r (in any order, all of them), setting each
 * r[i].res. The buffers are the caller's and must not overlap. */
void blob_batch_read(struct blob_batch *bb, struct blob_req *r, size_t n);

/* References: blob_ref returns b; blob_put(NULL) does nothing. */
struct blob *blob_ref(struct blob *b);
void blob_put(struct blob *b);

#endif
