/* SPDX-License-Identifier: MIT */
/* blob: stored files read at offsets, local or remote (see blob.h). */
#include "codec/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/fdio.h"

struct blob {
	atomic_uint refs;
	const struct blob_ops *ops;
	void *impl;
	int fd;			/* local blobs: owned; else -1 */
	struct stat st;
	char name[];
};

int blob_new(struct blob **out, const struct blob_ops *ops, void *impl,
	     const struct stat *st, const char *name)
{
	size_t n = strlen(name) + 1;
	struct blob *b = malloc(sizeof(*b) + n);

	if (!b) {
		if (ops->free)
			ops->free(impl);
		return -ENOMEM;
	}
	atomic_init(&b->refs, 1);
	b->ops = ops;
	b->impl = impl;
	b->fd = -1;
	b->st = *st;
	memcpy(b->name, name, n);
	*out = b;
	return 0;
}

static ssize_t fd_pread(void *impl, void *buf, size_t len, uint64_t off)
{
	return fdio_pread((int)(intptr_t)impl, buf, len, off);
}

static void fd_advise(void *impl, uint64_t off, uint64_t len)
{
	(void)posix_fadvise((int)(intptr_t)impl, (off_t)off, (off_t)len,
			    POSIX_FADV_WILLNEED);
}

static void fd_free(void *impl)
{
	close((int)(intptr_t)impl);
}

static const struct blob_ops fd_ops = {
	.pread = fd_pread, .advise = fd_advise, .free = fd_free,
};

int blob_from_fd(struct blob **out, int fd, const char *name)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = blob_new(out, &fd_ops, (void *)(intptr_t)fd, &st, name);
	if (!rc)
		(*out)->fd = fd;
	return rc;
}

int blob_from_dup(struct blob **out, int fd, const char *name)
{
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (d < 0)
		return -errno;
	return blob_from_fd(out, d, name);
}

int blob_from_dup_prefix(struct blob **out, int fd, uint64_t size,
			 const char *name)
{
	struct stat st;
	int d, rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < size)
		return -EINVAL;
	st.st_size = (off_t)size;
	if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	rc = blob_new(out, &fd_ops, (void *)(intptr_t)d, &st, name);
	if (!rc)
		(*out)->fd = d;
	return rc;
}

int blob_from_dup_as(struct blob **out, int fd, const struct stat *ident,
		     const char *name)
{
	struct stat st;
	int d, rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size != ident->st_size)
		return -EINVAL;
	if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	rc = blob_new(out, &fd_ops, (void *)(intptr_t)d, ident, name);
	if (!rc)
		(*out)->fd = d;
	return rc;
}

ssize_t blob_pread(struct blob *b, void *buf, size_t len, uint64_t off)
{
	uint64_t size = (uint64_t)b->st.st_size;

	if (off + len < off)
		return -EOVERFLOW;
	if (off >= size || !len)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	return b->ops->pread(b->impl, buf, len, off);
}

int blob_pread_full(struct blob *b, void *buf, size_t len, uint64_t off)
{
	ssize_t n = blob_pread(b, buf, len, off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

void blob_advise(struct blob *b, uint64_t off, uint64_t len)
{
	if (b->ops->advise)
		b->ops->advise(b->impl, off, len);
}

uint64_t blob_size(const struct blob *b)
{
	return (uint64_t)b->st.st_size;
}

const struct stat *blob_stat(const struct blob *b)
{
	return &b->st;
}

const char *blob_name(const struct blob *b)
{
	return b->name;
}

int blob_fd(const struct blob *b)
{
	return b->fd;
}

/* --- batched reads --- */

/* Entries of a batch's ring: one submission covers this many reads. */
#define BATCH_DEPTH 64u

struct blob_batch {
	struct io_uring ring;
	int has_ring;
};

int blob_batch_new(struct blob_batch **out)
{
	struct blob_batch *bb = calloc(1, sizeof(*bb));

	if (!bb)
		return -ENOMEM;
	/* Any failure (ENOSYS, EPERM under seccomp, ENOMEM for locked
	 * memory) leaves the pread path, which reads the same bytes. */
	bb->has_ring = io_uring_queue_init(BATCH_DEPTH, &bb->ring, 0) == 0;
	*out = bb;
	return 0;
}

void blob_batch_free(struct blob_batch *bb)
{
	if (!bb)
		return;
	if (bb->has_ring)
		io_uring_queue_exit(&bb->ring);
	free(bb);
}

int blob_batch_uring(const struct blob_batch *bb)
{
	return bb->has_ring;
}

/* The part of r within the blob: 0 bytes past its end, as blob_pread. */
static size_t req_len(const struct blob_req *r)
{
	uint64_t size = (uint64_t)r->b->st.st_size;

	if (r->off >= size)
		return 0;
	return r->len > size - r->off ? (size_t)(size - r->off) : r->len;
}

/* Submits the local reads of r[0..n) (n <= BATCH_DEPTH) and reaps them.
 * A read the ring did not do, or did not finish (an error, a count short
 * of the end), is left with res -EAGAIN or -EINPROGRESS for the caller's
 * pread, which then gives the error or the short count itself. */
static void ring_round(struct blob_batch *bb, struct blob_req *r, size_t n)
{
	unsigned queued = 0;

	for (size_t i = 0; i < n; i++) {
		struct io_uring_sqe *sqe;
		size_t len = req_len(&r[i]);

		if (r[i].b->fd < 0 || !len || r[i].off + r[i].len < r[i].off ||
		    !(sqe = io_uring_get_sqe(&bb->ring))) {
			r[i].res = -EAGAIN;	/* the pread path decides */
			continue;
		}
		io_uring_prep_read(sqe, r[i].b->fd, r[i].buf, (unsigned)len,
				   r[i].off);
		io_uring_sqe_set_data(sqe, &r[i]);
		r[i].res = -EINPROGRESS;
		queued++;
	}
	if (!queued)
		return;
	int rc;
	do
		rc = io_uring_submit_and_wait(&bb->ring, queued);
	while (rc == -EINTR);
	/* Whatever was not submitted (rc < 0: nothing) stays in progress
	 * and is read by pread below; what was submitted is reaped, waiting
	 * for each, so no request outlives its buffer. */
	unsigned submitted = rc < 0 ? 0 : (unsigned)rc;
	for (unsigned got = 0; got < submitted; got++) {
		struct io_uring_cqe *cqe;
		int w;
		do
			w = io_uring_wait_cqe(&bb->ring, &cqe);
		while (w == -EINTR);
		if (w < 0)
			break;
		struct blob_req *q = io_uring_cqe_get_data(cqe);
		size_t len = req_len(q);
		/* A short read before the end (never for page-cached
		 * files, allowed by the API) is redone by pread. */
		q->res = cqe->res == (int)len ? (ssize_t)len : -EAGAIN;
		io_uring_cqe_seen(&bb->ring, cqe);
	}
	if (submitted < queued) {
		/* The kernel took part of the batch: the rest never left
		 * the submission queue, and is dropped from it. */
		io_uring_queue_exit(&bb->ring);
		bb->has_ring = io_uring_queue_init(BATCH_DEPTH, &bb->ring,
						   0) == 0;
	}
}

void blob_batch_read(struct blob_batch *bb, struct blob_req *r, size_t n)
{
	for (size_t i = 0; i < n; i += BATCH_DEPTH) {
		size_t k = n - i < BATCH_DEPTH ? n - i : BATCH_DEPTH;

		if (bb->has_ring)
			ring_round(bb, r + i, k);
		for (size_t j = i; j < i + k; j++)
			if (!bb->has_ring || r[j].res == -EAGAIN ||
			    r[j].res == -EINPROGRESS)
				r[j].res = blob_pread(r[j].b, r[j].buf,
						      r[j].len, r[j].off);
	}
}

struct blob *blob_ref(struct blob *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void blob_put(struct blob *b)
{
	if (!b || atomic_fetch_sub_explicit(&b->refs, 1,
					    memory_order_acq_rel) != 1)
		return;
	if (b->ops->free)
		b->ops->free(b->impl);
	free(b);
}
