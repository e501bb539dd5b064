/* SPDX-License-Identifier: MIT */
/*
 * tutil.h: small helpers the unit tests share (running stock tools,
 * files and in-memory fds for the codec). Header-only, static inline,
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
#include <unistd.h>

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

#endif
