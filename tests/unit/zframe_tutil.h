/* SPDX-License-Identifier: MIT */
/*
 * zframe_tutil.h: what the seekable zstd tests share (test_zframe,
 * test_zframe_bad): VM-like data from a fixed seed, the fresh directory
 * under $TMPDIR, the writer fed in uneven pieces, and reading a file
 * back frame by frame against the data (scan: an error is fine, wrong
 * bytes are counted). Header-only, static inline, test code only; no
 * checks of its own.
 */
#ifndef SNAPFS_ZFRAME_TUTIL_H
#define SNAPFS_ZFRAME_TUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/zframe.h"
#include "tests/unit/tutil.h"

#define LE32(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | \
		 (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24)

static char tmpdir[256];
static uint64_t rng;

/* VM-memory-like bytes: compressible on the whole, with incompressible
 * pages so that some zstd blocks are stored raw. */
static inline uint8_t *gen_data(size_t len, uint64_t seed)
{
	static const char *words[] = { "kernel ", "page ", "qemu ", "0000 ",
		"snapshot ", "vcpu ", "mmio ", "virtio ", "\n", "ffff " };
	uint8_t *d = malloc(len ? len : 1);

	rng = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t off = 0; off < len; off += 4096) {
		size_t n = len - off < 4096 ? len - off : 4096;
		unsigned kind = (unsigned)(t_rng(&rng) % 10);

		if (kind < 4) {
			memset(d + off, 0, n);
		} else if (kind < 7) {
			size_t i = 0;
			while (i < n) {
				const char *w = words[t_rng(&rng) % 10];
				for (; *w && i < n; w++)
					d[off + i++] = (uint8_t)*w;
			}
		} else if (kind < 9) {
			uint64_t v = t_rng(&rng);
			for (size_t i = 0; i < n; i++)
				d[off + i] = (uint8_t)(v >> (8 * (i % 8))) ^
					     (t_rng(&rng) % 64 == 0);
		} else {
			for (size_t i = 0; i < n; i++)
				d[off + i] = (uint8_t)t_rng(&rng);
		}
	}
	return d;
}

/* Makes a fresh directory NAME.XXXXXX under $TMPDIR (else /tmp) for
 * tpath(). Returns 0, or -1 after saying why. */
static inline int tmpdir_make(const char *name)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/%s.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp", name);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

static inline const char *tpath(char *buf, const char *name)
{
	snprintf(buf, 512, "%s/%s", tmpdir, name);
	return buf;
}

static inline uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *b;

	*len = 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	b = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		free(b);
		close(fd);
		return NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* Feeds data to a writer in uneven pieces, so pieces straddle frames. */
static inline int write_seekable(int fd, const uint8_t *data, size_t len,
				 uint32_t frame_size, int threads)
{
	struct zframe_writer_opts o = { .frame_size = frame_size,
					.nthreads = threads };
	struct zframe_writer *w;
	static const size_t piece[] = { 1, 7777, 65536, 300001, 3 };
	size_t off = 0;
	int rc = zframe_writer_new(&w, fd, &o);

	for (unsigned i = 0; !rc && off < len; i++) {
		size_t n = piece[i % 5];
		if (n > len - off)
			n = len - off;
		rc = zframe_writer_write(w, data + off, n);
		off += n;
	}
	if (!rc)
		rc = zframe_writer_finish(w);
	zframe_writer_free(w);
	return rc;
}

/* Seekable output of data as a malloc'd buffer. */
static inline uint8_t *seekable_buf(const uint8_t *data, size_t len,
				    uint32_t frame_size, int threads,
				    size_t *out_len)
{
	int fd = memfd_create("zf", MFD_CLOEXEC);
	struct stat st;
	uint8_t *b = NULL;

	*out_len = 0;
	if (fd < 0)
		return NULL;
	if (write_seekable(fd, data, len, frame_size, threads) == 0 &&
	    fstat(fd, &st) == 0) {
		b = malloc((size_t)st.st_size);
		if (pread(fd, b, (size_t)st.st_size, 0) == st.st_size)
			*out_len = (size_t)st.st_size;
	}
	close(fd);
	return b;
}

/*
 * Reads every frame of an open file. Returns 0 if all reads succeeded,
 * 1 if some failed; counts in *wrong the reads that succeeded with bytes
 * other than data's at that offset (the one outcome never allowed).
 */
static inline int read_all(struct zframe *z, const uint8_t *data, size_t len,
			   int *wrong)
{
	struct zframe_dctx *dc;
	uint8_t *buf = malloc(zframe_max_frame(z) + 1);
	int failed = 0;

	if (zframe_dctx_new(&dc))
		return 1;
	for (size_t i = 0; i < zframe_count(z); i++) {
		const struct zframe_entry *e = zframe_frame(z, i);
		ssize_t n = zframe_read_frame(z, dc, i, buf, e->raw_len);

		if (n < 0) {
			failed = 1;
			if (n != -EBADMSG && n != -EIO) {
				fprintf(stderr, "  read: unexpected rc %zd\n", n);
				(*wrong)++;
			}
			continue;
		}
		if ((size_t)n != e->raw_len || e->raw_off + e->raw_len > len ||
		    memcmp(buf, data + e->raw_off, e->raw_len) != 0) {
			fprintf(stderr, "  read: WRONG BYTES in frame %zu\n", i);
			(*wrong)++;
		}
	}
	zframe_dctx_free(dc);
	free(buf);
	return failed;
}

/* -1: open failed; 1: a frame failed; 0: read back fully. */
static inline int scan(const uint8_t *file, size_t flen, const uint8_t *data,
		       size_t dlen, int *wrong)
{
	int fd = t_mem_fd(file, flen);
	struct zframe *z;
	int rc;

	rc = t_zframe_open(&z, fd, NULL);
	if (rc) {
		if (rc != -EBADMSG && rc != -EMEDIUMTYPE && rc != -E2BIG) {
			fprintf(stderr, "  open: unexpected rc %d\n", rc);
			(*wrong)++;
		}
		close(fd);
		return -1;
	}
	rc = read_all(z, data, dlen, wrong);
	if (zframe_size(z) > dlen)
		(*wrong)++;
	zframe_free(z);
	close(fd);
	return rc;
}

#endif
