/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: index files under .snapfs/index/ as xindex_load maps
 * them. They are derived data a user (or a crash, or bit rot) can damage;
 * a damaged one must be refused (-ESTALE, rebuilt), never used. A loaded
 * index must tile its size exactly, so every lookup is checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "fs/xindex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int dfd = -1;

static int fid_ok(unsigned fid, void *arg)
{
	(void)arg;
	return fid <= 7;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xindex *x;
	uint64_t stamp = 0;

	if (dfd < 0) {
		char dir[64];
		snprintf(dir, sizeof(dir), "/tmp/fuzz_index.XXXXXX");
		if (!mkdtemp(dir))
			abort();
		dfd = open(dir, O_RDONLY | O_DIRECTORY);
	}
	if (size >= 24)
		memcpy(&stamp, data + 16, 8);	/* let the fuzzer match it */
	/* Fix the digest up so the fuzzer gets past it to the structure
	 * checks, which are what stands between a crafted file and reads. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (size >= 64) {
		uint64_t dg = XXH3_64bits(buf + 64, size - 64);
		memcpy(buf + 40, &dg, 8);
	}
	int fd = openat(dfd, "f.idx", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t w = fd >= 0 ? write(fd, buf, size) : -1;
	free(buf);
	if (fd >= 0)
		close(fd);
	if (w != (ssize_t)size)
		return 0;
	if (xindex_load(&x, dfd, "f.idx", stamp, fid_ok, NULL) == 0) {
		size_t n;
		const struct xext *e = xindex_ext(x, &n);
		for (size_t i = 0; i < n; i++)
			if (e[i + 1].off < e[i].off)
				abort();	/* must have been refused */
		if (n && xindex_size(x))
			(void)xindex_find(x, xindex_size(x) - 1);
		xindex_free(x);
	}
	return 0;
}
