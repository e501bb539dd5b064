/* SPDX-License-Identifier: MIT */
/*
 * zblob: a seekable zstd file's content as a blob (see zblob.h). A read
 * decompresses the frames it touches into one frame buffer, keeping the
 * last frame for the next read; a frame's content checksum is checked by
 * zframe_read_frame on every decode.
 */
#include "codec/zblob.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codec/blob.h"
#include "codec/zframe.h"

struct zb {
	pthread_mutex_t lock;
	struct zframe *z;
	struct zframe_dctx *dc;		/* under lock */
	unsigned char *frame;		/* under lock: frame `cur` decoded */
	size_t cap;
	size_t cur;			/* zframe_count(): none */
};

static ssize_t zb_pread(void *impl, void *buf, size_t len, uint64_t off)
{
	struct zb *b = impl;
	size_t done = 0;
	ssize_t rc = 0;

	pthread_mutex_lock(&b->lock);
	while (done < len) {
		size_t i = zframe_find(b->z, off + done);
		if (i == zframe_count(b->z))
			break;
		const struct zframe_entry *e = zframe_frame(b->z, i);
		if (i != b->cur) {
			b->cur = zframe_count(b->z);
			rc = zframe_read_frame(b->z, b->dc, i, b->frame, b->cap);
			if (rc < 0)
				break;
			if ((uint64_t)rc != e->raw_len) {
				rc = -EIO;
				break;
			}
			b->cur = i;
		}
		uint64_t in = off + done - e->raw_off;
		size_t n = e->raw_len - (size_t)in;
		if (n > len - done)
			n = len - done;
		memcpy((char *)buf + done, b->frame + in, n);
		done += n;
		rc = 0;
	}
	pthread_mutex_unlock(&b->lock);
	return rc < 0 ? rc : (ssize_t)done;
}

static void zb_free(void *impl)
{
	struct zb *b = impl;

	zframe_free(b->z);
	zframe_dctx_free(b->dc);
	free(b->frame);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static const struct blob_ops zb_ops = { .pread = zb_pread, .free = zb_free };

int zblob_open(struct blob **out, struct blob *src, const char *name,
	       const char **why)
{
	struct zb *b = calloc(1, sizeof(*b));
	struct stat st;
	int rc;

	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	rc = zframe_open(&b->z, src, why);	/* takes its own reference */
	if (!rc)
		rc = zframe_dctx_new(&b->dc);
	if (!rc) {
		b->cap = zframe_max_frame(b->z) ? zframe_max_frame(b->z) : 1;
		b->cur = zframe_count(b->z);
		if (!(b->frame = malloc(b->cap)))
			rc = -ENOMEM;
	}
	if (rc) {
		zb_free(b);
		return rc;
	}
	st = *blob_stat(src);
	st.st_size = (off_t)zframe_size(b->z);
	st.st_blocks = (blkcnt_t)((zframe_size(b->z) + 511) / 512);
	return blob_new(out, &zb_ops, b, &st, name);
}
