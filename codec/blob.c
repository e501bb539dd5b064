/* SPDX-License-Identifier: MIT */
/* blob: stored files read at offsets, local or remote (see blob.h). */
#include "codec/blob.h"

#include <errno.h>
#include <fcntl.h>
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
