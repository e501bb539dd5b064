/* SPDX-License-Identifier: MIT */
/*
 * fdio: read and write whole buffers on file descriptors, retrying short
 * transfers and EINTR. Shared by codec/ and fs/ (codec is the bottom
 * layer). Not here: buffering, files of our own. Thread-safe (pread and
 * pwrite take their offset; fdio_write uses the fd's).
 */
#ifndef SNAPFS_CODEC_FDIO_H
#define SNAPFS_CODEC_FDIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads len bytes at off, fewer only at end of file. Returns the bytes
 * read or -errno (-EOVERFLOW if off + len does not fit a file offset). */
ssize_t fdio_pread(int fd, void *buf, size_t len, uint64_t off);
/* Writes all len bytes at the fd's offset. Returns 0 or -errno (-ENOSPC
 * passes through). */
int fdio_write(int fd, const void *buf, size_t len);
/* Writes all len bytes at off. Returns 0 or -errno. */
int fdio_pwrite(int fd, const void *buf, size_t len, uint64_t off);

#endif
