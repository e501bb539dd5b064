/* SPDX-License-Identifier: MIT */
/* fdio: whole-buffer reads and writes (see fdio.h). */
#include "codec/fdio.h"

#include <errno.h>
#include <unistd.h>

ssize_t fdio_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	if (off > (uint64_t)INT64_MAX - len)
		return -EOVERFLOW;
	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got,
				  (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int fdio_write(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t r = write(fd, p, len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int fdio_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}
