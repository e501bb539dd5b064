/* SPDX-License-Identifier: MIT */
/*
 * tutil.h: small helpers the unit tests share (running stock tools,
 * files, in-memory fds and blobs for the codec). Header-only, static inline,
 * test code only. Not the runner: that is t.h.
 */
#ifndef SNAPFS_TUTIL_H
#define SNAPFS_TUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/vcdiff_dec.h"
#include "codec/zframe.h"

/* Runs a shell command built printf-style; returns system()'s status. */
static inline int t_sh(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static inline int t_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Writes buf to path (created or truncated). Returns 0 or -errno. */
static inline int t_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	const uint8_t *p = buf;

	if (fd < 0)
		return -errno;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0) {
			close(fd);
			return -EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	return close(fd) < 0 ? -errno : 0;
}

/* xorshift64 (13, 7, 17): reproducible noise for test data; the
 * sequences the tests were written against (state must not be 0). */
static inline uint64_t t_xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* xorshift64*: the same, with better low bits (state must not be 0). */
static inline uint64_t t_rng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* An anonymous file holding buf (for the codec's fd APIs), or -1. */
static inline int t_mem_fd(const void *buf, size_t len)
{
	int fd = memfd_create("snapfs-test", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (len && write(fd, buf, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A blob over a dup of fd (the caller keeps fd), or NULL. */
static inline struct blob *t_blob(int fd)
{
	struct blob *b = NULL;

	return blob_from_dup(&b, fd, "test") ? NULL : b;
}

/* A blob over a copy of buf in memory (no fd at all, as a remote store's
 * blobs), or NULL. */
struct t_mem {
	size_t len;
	uint8_t data[];
};

static inline ssize_t t_mem_pread(void *impl, void *buf, size_t len,
				  uint64_t off)
{
	struct t_mem *m = impl;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = (size_t)(m->len - off);
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

static inline void t_mem_free(void *impl)
{
	free(impl);
}

static inline struct blob *t_blob_mem(const void *buf, size_t len)
{
	static const struct blob_ops ops = {
		.pread = t_mem_pread, .free = t_mem_free,
	};
	struct t_mem *m = malloc(sizeof(*m) + (len ? len : 1));
	struct stat st;
	struct blob *b = NULL;

	if (!m)
		return NULL;
	m->len = len;
	if (len)
		memcpy(m->data, buf, len);
	memset(&st, 0, sizeof(st));
	st.st_size = (off_t)len;
	return blob_new(&b, &ops, m, &st, "memory") ? NULL : b;
}

/* The codec's openers over a blob on a dup of fd (they keep their own
 * reference on it), for tests written around fds. -EBADF for a bad fd. */
static inline int t_zframe_open(struct zframe **z, int fd, const char **why)
{
	struct blob *b = t_blob(fd);
	int rc = b ? zframe_open(z, b, why) : -EBADF;

	blob_put(b);
	return rc;
}

static inline int t_patch_open(struct vcdiff_patch **p, int fd,
			       const char **why)
{
	struct blob *b = t_blob(fd);
	int rc = b ? vcdiff_patch_open(p, b, why) : -EBADF;

	blob_put(b);
	return rc;
}

static inline int t_zframe_transcode(int in_fd, int out_fd,
				     const struct zframe_writer_opts *o,
				     void (*progress)(void *ctx, uint64_t done,
						      uint64_t total),
				     void *ctx, const char **why)
{
	struct blob *b = t_blob(in_fd);
	int rc = b ? zframe_transcode(b, out_fd, o, progress, ctx, why) :
		 -EBADF;

	blob_put(b);
	return rc;
}

static inline int t_recode_plain(int in_fd, int out_fd,
				 void (*progress)(void *ctx, uint64_t done,
						  uint64_t total),
				 void *ctx, const char **why)
{
	struct blob *b = t_blob(in_fd);
	int rc = b ? vcdiff_recode_plain(b, out_fd, progress, ctx, why) :
		 -EBADF;

	blob_put(b);
	return rc;
}

#endif
