/* SPDX-License-Identifier: MIT */
/*
 * rvec: reads described as pieces (chain_readv, see fs/chain.h), so that
 * the FUSE reply can hand the kernel pointers instead of a buffer we
 * filled by memcpy.
 *
 * Why (issue 10, measured on a stock store of real QEMU states): a cold
 * read of a snapshot used to cost, per byte, a decode or pread into the
 * block cache or a buffer, a memcpy into the reply buffer, the kernel's
 * copy from that buffer into the FUSE request's pages, and the reader's
 * copy out of the page cache. Here:
 *   - a decompressed zstd frame or lzma data section goes out as a pointer
 *     into its pinned cache block (writev, no memcpy of ours);
 *   - a run of zeros (a fill extent) points at one shared zero page run;
 *   - bytes of a local raw stored file (a raw base, aux files, plain patch
 *     literals) whose 4 KiB blocks this mount has already checked against
 *     their checksums go out as (fd, offset) and are spliced from the page
 *     cache: neither read nor hashed again. Blocks not checked yet are
 *     read and checked into the scratch buffer as before (and marked), so
 *     no byte ever reaches a reader unchecked; the readahead workers check
 *     a sequential reader's blocks ahead of it (fs/readahead.c), so on a
 *     stream the reader itself mostly splices. A remote blob has no fd and
 *     always takes the copy path. As dcache_pread does, a block is checked
 *     once per mount and then trusted in the page cache.
 *   - everything else (small pieces, other fill bytes, what is left past
 *     CHAIN_SEGS_MAX pieces) is resolved into the scratch buffer in runs,
 *     all the runs of one call in one batch of reads (fs/sresolve.c).
 * Pieces under SEG_MIN bytes are copied: each piece costs an iovec or a
 * pipe slot, and at depth a layer's bytes come in ~2 KB pieces.
 *
 * Not here: the reply itself (fs/fuse_ops.c), checksums and decoding
 * (fs/sfile.c). Thread-safe for distinct rvecs.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cache/bcache.h"
#include "codec/blob.h"
#include "fs/xindex.h"

/* Pieces smaller than this are copied into scratch (see above). */
#define SEG_MIN ((uint64_t)2048)
/* A run of zeros shared by every read; never written. */
#define ZEROS ((size_t)1 << 20)
static uint8_t zeros[ZEROS];

struct chain_rvec {
	uint8_t *scratch;
	size_t cap, used;
	struct chain_seg seg[CHAIN_SEGS_MAX];
	size_t n;
	struct bcache_blk pin[CHAIN_SEGS_MAX];
	size_t npin;
	/* Layer bytes [pend, pend_end) wait to be resolved into scratch. */
	uint64_t pend, pend_end;
	/* The layer's full copy (fs/fcopy.c) the read comes from, or NULL:
	 * through the index. */
	struct sfile *fc;
	/* The pending runs of one chain_readv, resolved together: their
	 * small pieces are read in one batch (fs/sresolve.c). */
	struct sres *rs;
};

void sfile_mark_checked(struct sfile *f, uint64_t off, uint64_t len)
{
	if (!f->ok || !len)
		return;
	for (uint64_t b = off / SUM_BLOCK; b <= (off + len - 1) / SUM_BLOCK &&
	     b < f->nsum; b++)
		atomic_fetch_or(&f->ok[b / 64], (uint_fast64_t)1 << (b % 64));
}

int sfile_checked(const struct sfile *f, uint64_t off, uint64_t len)
{
	if (!f->ok || !len)
		return 0;
	for (uint64_t b = off / SUM_BLOCK; b <= (off + len - 1) / SUM_BLOCK;
	     b++) {
		if (b >= f->nsum || !(atomic_load(&f->ok[b / 64]) &
				      ((uint_fast64_t)1 << (b % 64))))
			return 0;
	}
	return 1;
}

int chain_rvec_new(struct chain_rvec **out, void *scratch, size_t cap)
{
	struct chain_rvec *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v->scratch = scratch;
	v->cap = cap;
	*out = v;
	return 0;
}

void chain_rvec_free(struct chain_rvec *v)
{
	free(v);
}

void chain_rvec_release(struct chain *c, struct chain_rvec *v)
{
	for (size_t i = 0; i < v->npin; i++)
		bcache_put(c->cache, &v->pin[i]);
	v->npin = v->n = v->used = 0;
}

/* Appends a piece, merged with the previous one when contiguous. */
static void seg_add(struct chain_rvec *v, const void *mem, int fd,
		    uint64_t off, size_t len)
{
	struct chain_seg *p = v->n ? &v->seg[v->n - 1] : NULL;

	if (p && mem && p->mem && (const uint8_t *)p->mem + p->len == mem) {
		p->len += len;
		return;
	}
	if (p && !mem && !p->mem && p->fd == fd && p->off + p->len == off) {
		p->len += len;
		return;
	}
	v->seg[v->n++] = (struct chain_seg){ mem, fd, off, len };
}

/* Resolves the pending run into scratch as one piece. */
static int flush(struct chain *c, struct chain_layer *L,
		 struct chain_rvec *v)
{
	size_t k = (size_t)(v->pend_end - v->pend);
	int rc;

	if (!k)
		return 0;
	rc = v->fc ? fcopy_read(c, L, v->fc, v->pend, v->scratch + v->used, k) :
	     sfile_resolve_add(c, v->rs, L, L->x, v->pend,
			       v->scratch + v->used, k);
	if (rc)
		return rc;
	seg_add(v, v->scratch + v->used, -1, 0, k);
	atomic_fetch_add(&c->rv_copy, k);
	v->used += k;
	v->pend = v->pend_end;
	return 0;
}

/* Room for one more piece and a flush after it. */
static int room(const struct chain_rvec *v)
{
	return v->n + 2 < CHAIN_SEGS_MAX && v->npin + 1 < CHAIN_SEGS_MAX;
}

/*
 * Layer bytes [o, o+k) stored in f at src, as pinned cache blocks or a
 * checked file range where that is possible; else left pending. Returns
 * 0 or -errno.
 */
static int piece(struct chain *c, struct chain_layer *L,
		 struct chain_rvec *v, struct sfile *f, uint64_t src,
		 uint64_t o, uint64_t k, int allow_fd)
{
	int fd = f->b ? blob_fd(f->b) : -1;
	int rc;

	if (k < SEG_MIN)
		goto pending;
	if (f->kind == SF_RAW && allow_fd && fd >= 0 && f->wfd < 0 &&
	    sfile_checked(f, src, k)) {
		if ((rc = flush(c, L, v)))
			return rc;
		seg_add(v, NULL, fd, src, (size_t)k);
		atomic_fetch_add(&c->rv_fd, k);
		v->pend = v->pend_end = o + k;
		return 0;
	}
	/* Windowed sections pinned from the cache; not when they were
	 * decoded into a raw copy (f->vcopy), read by the copy path. */
	if (f->kind != SF_ZSTD &&
	    !(f->kind == SF_WINDOWED && src >= f->size && !f->vcopy))
		goto pending;
	if ((rc = flush(c, L, v)))
		return rc;
	while (k && room(v)) {
		struct bcache_blk *b = &v->pin[v->npin];
		uint64_t base;
		rc = f->kind == SF_ZSTD ? sfile_zstd_pin(c, f, src, b, &base) :
		     sfile_win_pin(c, f, src - f->size, b, &base);
		if (rc)
			return rc;
		v->npin++;
		uint64_t in = (f->kind == SF_ZSTD ? src : src - f->size) - base;
		uint64_t n = b->len - in < k ? b->len - in : k;
		seg_add(v, b->data + in, -1, 0, (size_t)n);
		atomic_fetch_add(&c->rv_pin, n);
		src += n;
		o += n;
		k -= n;
	}
	v->pend = v->pend_end = o;
pending:
	v->pend_end = o + k;
	return 0;
}

ssize_t chain_readv(struct chain *c, struct chain_layer *L, uint64_t off,
		    size_t len, struct chain_stream *st, int allow_fd,
		    struct chain_rvec *v, const struct chain_seg **segs,
		    size_t *nsegs)
{
	int rc = chain_check(c, L);

	v->n = v->npin = v->used = 0;
	*segs = v->seg;
	*nsegs = 0;
	if (rc)
		return rc;
	atomic_fetch_add(&c->reads, 1);
	if (off >= L->size)
		return 0;
	if (len > L->size - off)
		len = (size_t)(L->size - off);
	if (len > v->cap)
		len = v->cap;
	if (allow_fd && !atomic_load(&c->fd_replies))
		atomic_store(&c->fd_replies, 1);
	/* A reader that read all of L (a restore, a cp) asks for a full copy;
	 * other reads of the chain (digests, rebases) do not. */
	if (st && ra_note(c, st, L, off, len))
		fcopy_want(c, L);

	v->fc = fcopy_of(L);
	if (v->fc) {
		v->pend = v->pend_end = off;
		if ((rc = piece(c, L, v, v->fc, off, off, len, allow_fd)))
			goto fail;
		v->pend_end = off + len;
		if ((rc = flush(c, L, v)))
			goto fail;
		atomic_fetch_add(&c->read_bytes, len);
		*nsegs = v->n;
		return (ssize_t)len;
	}

	size_t n, i = xindex_find(L->x, off);
	const struct xext *e = xindex_ext(L->x, &n);
	uint64_t o = off, end = off + len;
	unsigned last_fid = UINT_MAX;
	struct sfile *f = NULL;

	v->rs = sfile_resolve_begin(c);
	v->pend = v->pend_end = off;
	while (o < end && room(v)) {
		uint64_t k = e[i + 1].off - o < end - o ? e[i + 1].off - o :
			     end - o;
		if (xext_is_fill(&e[i])) {
			if (xext_byte(&e[i]) == 0 && k >= SEG_MIN && k <= ZEROS) {
				if ((rc = flush(c, L, v)))
					goto fail;
				seg_add(v, zeros, -1, 0, (size_t)k);
				atomic_fetch_add(&c->rv_zero, k);
				v->pend = v->pend_end = o + k;
			} else {
				v->pend_end = o + k;
			}
		} else {
			if (xext_fid(&e[i]) != last_fid) {
				last_fid = xext_fid(&e[i]);
				f = layer_fid_file(L, last_fid);
			}
			/* No file (an index bug): sfile_resolve says so. */
			rc = f ? piece(c, L, v, f, xext_src(&e[i]) +
				       (o - e[i].off), o, k, allow_fd) : 0;
			if (!f)
				v->pend_end = o + k;
			if (rc)
				goto fail;
		}
		o += k;
		i++;
	}
	/* Out of pieces: the rest is copied. */
	v->pend_end = end;
	rc = flush(c, L, v);
	rc = sfile_resolve_end(c, v->rs, rc);
	v->rs = NULL;
	if (rc)
		goto fail;
	atomic_fetch_add(&c->read_bytes, len);
	*nsegs = v->n;
	return (ssize_t)len;
fail:
	if (v->rs)
		sfile_resolve_end(c, v->rs, rc);
	v->rs = NULL;
	chain_rvec_release(c, v);
	return rc;
}
