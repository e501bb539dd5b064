/* SPDX-License-Identifier: MIT */
/*
 * sfile_sums: the block checksums of raw stored files (one XXH3 per
 * SUM_BLOCK, see fs/sfile.c for why 4 KiB), kept under .snapfs/sums:
 * loading them, taking them by reading a file once, saving them. Split
 * from fs/sfile.c, which reads the files these checksums guard.
 *
 * The file: a header (magic, version, block size, file size, count, XXH3
 * of the checksums) then the checksums; anything that does not match
 * the file it is for is stale and taken again. Derived data only: never
 * through a symlink, never waiting on a FIFO planted there.
 *
 * Thread-safe as far as the chain needs: a stored file's checksums are
 * set once, before readers see it.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "fs/safefile.h"

#define SUM_MAGIC "SNAPSUM1"
#define SUM_VERSION 2u

/* --- block checksums of stored files --- */

struct sum_hdr {
	char magic[8];
	uint32_t version, block;
	uint64_t size, n, digest;
};

/*
 * Gives f its n block checksums (taken) and an all-clear map of which
 * blocks this mount has checked. The map lets a reply point the kernel at
 * the file's own pages (splice) for blocks already checked, instead of
 * reading and hashing them again (see fs/rvec.c). 0 or -ENOMEM.
 */
static int sums_set(struct sfile *f, uint64_t *sum, size_t n)
{
	atomic_uint_fast64_t *ok = calloc(n / 64 + 1, sizeof(*ok));

	if (!ok)
		return -ENOMEM;
	f->sum = sum;
	f->nsum = n;
	f->ok = ok;
	return 0;
}

static int sums_load(struct sfile *f, int dfd, const char *name)
{
	struct sum_hdr h;
	/* Never through a symlink, never waiting on a FIFO planted there:
	 * any such thing is stale, and rebuilt over. */
	int rc = -ESTALE, fd = safefile_open(dfd, name, O_RDONLY, 0, NULL,
					     NULL);
	size_t n = (size_t)((f->size + SUM_BLOCK - 1) / SUM_BLOCK);
	uint64_t *sum = NULL;

	if (fd < 0)
		return fd;
	/* The sums file is derived data, always local: an fd. */
	if (fdio_pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, SUM_MAGIC, 8) || h.version != SUM_VERSION ||
	    h.block != SUM_BLOCK || h.size != f->size || h.n != n)
		goto out;
	sum = malloc(n ? n * 8 : 8);
	if (!sum) {
		rc = -ENOMEM;
		goto out;
	}
	if (fdio_pread(fd, sum, n * 8, sizeof(h)) != (ssize_t)(n * 8) ||
	    XXH3_64bits(sum, n * 8) != h.digest)
		goto out;
	rc = sums_set(f, sum, n);
	if (!rc)
		sum = NULL;
out:
	free(sum);
	close(fd);
	return rc;
}

struct sums_out {
	const struct sum_hdr *h;
	const uint64_t *sum;
};

static int fill_sums(int fd, void *arg)
{
	struct sums_out *o = arg;
	int rc = fdio_write(fd, o->h, sizeof(*o->h));
	return rc ? rc : fdio_write(fd, o->sum, o->h->n * 8);
}

int sfile_sums_save(struct chain *c, const char *name, const uint64_t *sum,
		    uint64_t size)
{
	struct sum_hdr h;
	size_t n = (size_t)((size + SUM_BLOCK - 1) / SUM_BLOCK);

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SUM_MAGIC, 8);
	h.version = SUM_VERSION;
	h.block = SUM_BLOCK;
	h.size = size;
	h.n = n;
	h.digest = XXH3_64bits(sum, n * 8);
	struct sums_out o = { &h, sum };
	return chain_save_derived(c, "sums", name, fill_sums, &o);
}

/* Reads the whole file once, hashing each block; saves the result. */
static int sums_build(struct chain *c, struct sfile *f, const char *name,
		      const char *layer)
{
	size_t n = (size_t)((f->size + SUM_BLOCK - 1) / SUM_BLOCK);
	uint64_t *sum = malloc(n ? n * 8 : 8);
	uint8_t *buf = malloc(16 * SUM_BLOCK);
	int rc = 0;

	if (!sum || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i += 16) {
		uint64_t off = i * SUM_BLOCK;
		size_t want = (size_t)(f->size - off < 16 * SUM_BLOCK ?
				       f->size - off : 16 * SUM_BLOCK);
		int r = blob_pread_full(f->b, buf, want, off);
		if (r) {
			rc = r;
			goto out;
		}
		for (size_t k = 0; k < 16 && i + k < n; k++) {
			size_t bl = want - k * SUM_BLOCK < SUM_BLOCK ?
				    want - k * SUM_BLOCK : SUM_BLOCK;
			sum[i + k] = XXH3_64bits(buf + k * SUM_BLOCK, bl);
		}
		if ((i & 1023) == 0)
			chain_progress(c, layer, "checksumming", off, f->size);
	}
	chain_progress(c, layer, "checksumming", f->size, f->size);
	/* Derived data only: a read-only store just re-sums next time. */
	sfile_sums_save(c, name, sum, f->size);
	rc = sums_set(f, sum, n);
	if (!rc)
		sum = NULL;
out:
	free(sum);
	free(buf);
	return rc;
}

int sfile_sums_load(struct chain *c, struct sfile *f, const char *name)
{
	int rc = sums_load(f, store_subdir(c->s, "sums"), name);
	return rc == -ENOENT ? -ESTALE : rc;
}

int sfile_sums_get(struct chain *c, struct chain_layer *L, struct sfile *f,
		   uint64_t stamp, const char *ext)
{
	char name[300];
	int dfd = store_subdir(c->s, "sums");

	layer_derived_name(name, sizeof(name), L, stamp, ext);
	store_derived_want(c->s, "sums", name);
	if (sums_load(f, dfd, name) == 0)
		return 0;
	return sums_build(c, f, name, L->name);
}
