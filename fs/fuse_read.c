/* SPDX-License-Identifier: MIT */
/*
 * fuse_read: the read path of the FUSE front end: the pool of read
 * buffers, reads as pieces (chain_readv) and the reply that hands the
 * kernel pointers instead of a copied buffer, and whether replies may
 * splice on this system. Split from fs/fuse_ops.c (its other handlers).
 *
 * Not here: what the pieces are and how they are checked (fs/rvec.c), the
 * open and release of read handles (fs/fuse_ops.c). Thread-safe: the
 * buffer pool has its lock (m->buf_lock); a read owns its buffer and
 * rvec until it has replied.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include "fs/fuse_ops.h"
#include "fs/fuse_int.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static struct snapfs_mount *M(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/*
 * Whether a reply can splice: libfuse 3.14 splices a reply through a pipe
 * of its own that must hold a page per piece plus the whole reply (1 MiB
 * + CHAIN_SEGS_MAX pages), more than the default pipe-max-size of 1 MiB,
 * and when it cannot grow its pipe it falls back for good to a copy into
 * a fresh buffer, worse than our own copy. So splice only where such a
 * pipe can be made (root, CAP_SYS_RESOURCE, or a raised
 * /proc/sys/fs/pipe-max-size); elsewhere replies stay copy or writev.
 */
int fuse_read_splice_fits(void)
{
	int p[2], ok;

	if (pipe2(p, O_CLOEXEC) < 0)
		return 0;
	ok = fcntl(p[0], F_SETPIPE_SZ, (int)(2 * BLKSIZE)) >= (int)(2 * BLKSIZE);
	close(p[0]);
	close(p[1]);
	return ok;
}

/* A read buffer of BLKSIZE bytes (the largest request) from the pool. */
static void *buf_get(struct snapfs_mount *m)
{
	void *b = NULL;

	pthread_mutex_lock(&m->buf_lock);
	if (m->nbufs)
		b = m->bufs[--m->nbufs];
	pthread_mutex_unlock(&m->buf_lock);
	return b ? b : malloc(BLKSIZE);
}

static void buf_put(struct snapfs_mount *m, void *b)
{
	pthread_mutex_lock(&m->buf_lock);
	if (m->nbufs < sizeof(m->bufs) / sizeof(m->bufs[0])) {
		m->bufs[m->nbufs++] = b;
		b = NULL;
	}
	pthread_mutex_unlock(&m->buf_lock);
	free(b);
}

void fuse_ops_cleanup(struct snapfs_mount *m)
{
	fuse_readers_drop_all(m);
	while (m->nbufs)
		free(m->bufs[--m->nbufs]);
}

/*
 * Sends the pieces of a read (chain_readv): memory pieces (cache blocks,
 * zeros, the scratch buffer) by writev, with no copy of ours; checked
 * file ranges, when there are any, by splice through fuse_reply_data
 * (memory pieces are then written into its pipe: the copy writev would
 * have made). See fs/rvec.c for why and what it saves.
 */
static void reply_segs(fuse_req_t req, const struct chain_seg *s, size_t n)
{
	struct iovec iov[CHAIN_SEGS_MAX];
	int fds = 0;

	for (size_t i = 0; i < n; i++)
		fds |= !s[i].mem;
	if (!fds) {
		for (size_t i = 0; i < n; i++) {
			iov[i].iov_base = (void *)(uintptr_t)s[i].mem;
			iov[i].iov_len = s[i].len;
		}
		if (n)
			fuse_reply_iov(req, iov, (int)n);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	struct fuse_bufvec *bv = malloc(sizeof(*bv) + n * sizeof(bv->buf[0]));
	if (!bv) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memset(bv, 0, sizeof(*bv) + n * sizeof(bv->buf[0]));
	bv->count = n;
	for (size_t i = 0; i < n; i++) {
		struct fuse_buf *b = &bv->buf[i];
		b->size = s[i].len;
		if (s[i].mem) {
			b->mem = (void *)(uintptr_t)s[i].mem;
		} else {
			b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			b->fd = s[i].fd;
			b->pos = (off_t)s[i].off;
		}
	}
	fuse_reply_data(req, bv, 0);
	free(bv);
}

void fuse_read_op(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	const struct chain_seg *segs;
	struct chain_rvec *v = NULL;
	size_t nsegs;
	void *buf;
	ssize_t r;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size > BLKSIZE)
		size = BLKSIZE;	/* the kernel never asks for more (max_pages) */
	buf = buf_get(m);
	if (!buf || chain_rvec_new(&v, buf, BLKSIZE)) {
		if (buf)
			buf_put(m, buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	(void)ino;
	struct chain_layer *L = fuse_handle_layer(fi);
	r = L ? chain_readv(m->chain, L, (uint64_t)off, size,
			    fuse_handle_stream(fi), m->splice, v, &segs,
			    &nsegs) : -EBADF;
	if (r < 0)
		fuse_reply_err(req, r == -EBADMSG ? EIO : (int)-r);
	else
		reply_segs(req, segs, nsegs);
	/* After the reply: the kernel has copied or spliced every piece. */
	chain_rvec_release(m->chain, v);
	chain_rvec_free(v);
	buf_put(m, buf);
}
