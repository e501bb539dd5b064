/* SPDX-License-Identifier: MIT */
/*
 * sresolve: sfile_resolve(), a range of a layer turned into bytes from the
 * extents of a composed index, with the small pieces of raw files read in
 * batches.
 *
 * Why batches (issue 10, depth 100 of 256 MiB states): a deep layer's
 * bytes come in ~2 KB pieces of a hundred aux files (157,395 pieces for
 * one 266 MB layer, 126,797 of them under 2 KiB). Read one at a time
 * through a checked 4 KiB block each, that was 77,655 preads for one cold
 * read, and `perf` put a third of the daemon's time in them: a pread of a
 * page-cached 4 KiB costs 2-3 us on this project's 2-core PVM host. Here
 * the pieces of one call are gathered (up to RP_MAX of them, or ARENA
 * bytes of blocks), sorted by file and offset, merged into spans of whole
 * 4 KiB blocks (pieces of one file in one request are mostly close), the
 * spans read in one batch (codec/blob.h: io_uring, 0.9 us a read, or
 * pread where the kernel refuses it), checked, and copied out. A block
 * already checked by this mount is not hashed again: the policy of the
 * splice path (fs/rvec.c), which trusts a checked block in the page cache.
 *
 * Tried and dropped: mapping the files (mmap) instead of reading them. On
 * this host a page fault costs about what a pread does, and the depth-100
 * read was no faster (417-523 against 546-602 MB/s, alternating by hand),
 * with MAP_POPULATE level (536-555 against 540-543).
 *
 * Not here: the reads themselves (fs/sfile.c: zstd frames, windowed
 * sections and big raw pieces go there directly), what the extents are.
 * Thread-safe: each call takes its own context from the chain's pool.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec/blob.h"
#include "fs/xindex.h"

/* Pieces gathered before a round is read. */
#define RP_MAX 1024u
/* Bytes of blocks a round may read (its pieces' blocks, before merging). */
#define ARENA ((size_t)1 << 20)
/* A raw piece this long is read on its own, straight into the caller's
 * buffer (sfile_pread): batching saves nothing there. */
#define BIG ((size_t)64 << 10)
/* A merged span stops growing here, so one read stays short. */
#define SPAN_MAX ((uint64_t)256 << 10)

struct rpiece {
	struct sfile *f;
	uint64_t src;
	uint8_t *dst;
	size_t len;
	size_t span;		/* its span, once merged */
};

struct rspan {
	struct sfile *f;
	uint64_t off;
	size_t len;
	size_t at;		/* where in the arena */
	size_t first;		/* its first piece (pieces are sorted) */
};

/* One call's working memory, kept in the chain's pool between calls. */
struct sres {
	struct blob_batch *bb;
	uint8_t *arena;		/* ARENA bytes */
	size_t np, need;	/* pieces; arena bytes they may take */
	struct rpiece p[RP_MAX];
	struct rspan s[RP_MAX];
	struct blob_req r[RP_MAX];
};

static struct sres *sres_new(void)
{
	struct sres *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	s->arena = malloc(ARENA);
	if (!s->arena || blob_batch_new(&s->bb) < 0) {
		free(s->arena);
		free(s);
		return NULL;
	}
	s->np = s->need = 0;
	return s;
}

static void sres_free(struct sres *s)
{
	blob_batch_free(s->bb);
	free(s->arena);
	free(s);
}

/* A context from the pool, or a new one; NULL: out of memory (the call
 * then reads piece by piece). */
static struct sres *sres_get(struct chain *c)
{
	struct sres *s = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->nrpool)
		s = c->rpool[--c->nrpool];
	pthread_mutex_unlock(&c->pool_lock);
	return s ? s : sres_new();
}

static void sres_put(struct chain *c, struct sres *s)
{
	s->np = s->need = 0;
	pthread_mutex_lock(&c->pool_lock);
	if (c->nrpool == c->rpool_cap) {
		size_t cap = c->rpool_cap ? 2 * c->rpool_cap : 8;
		struct sres **p = realloc(c->rpool, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&c->pool_lock);
			sres_free(s);
			return;
		}
		c->rpool = p;
		c->rpool_cap = cap;
	}
	c->rpool[c->nrpool++] = s;
	pthread_mutex_unlock(&c->pool_lock);
}

void sfile_rpool_free(struct chain *c)
{
	for (size_t i = 0; i < c->nrpool; i++)
		sres_free(c->rpool[i]);
	free(c->rpool);
	c->rpool = NULL;
	c->nrpool = c->rpool_cap = 0;
}

static int piece_cmp(const void *a, const void *b)
{
	const struct rpiece *x = a, *y = b;

	if (x->f != y->f)
		return (uintptr_t)x->f < (uintptr_t)y->f ? -1 : 1;
	return x->src < y->src ? -1 : x->src > y->src;
}

/* The first byte any piece of span k wanted in the block at blk: damage
 * is reported there, which names the window the reader needed. */
static uint64_t wanted_in(const struct sres *s, size_t k, uint64_t blk)
{
	for (size_t i = s->s[k].first; i < s->np && s->p[i].span == k; i++)
		if (s->p[i].src + s->p[i].len > blk)
			return s->p[i].src > blk ? s->p[i].src : blk;
	return blk;
}

/* Checks span k's blocks that this mount has not checked yet. 0 or -EIO
 * (logged). */
static int span_check(struct chain *c, struct sres *s, size_t k)
{
	const struct rspan *sp = &s->s[k];
	struct sfile *f = sp->f;

	for (uint64_t o = 0; o < sp->len; o += SUM_BLOCK) {
		uint64_t at = sp->off + o, bi = at / SUM_BLOCK;
		size_t n = sp->len - o < SUM_BLOCK ? (size_t)(sp->len - o) :
			   (size_t)SUM_BLOCK;

		if (sfile_checked(f, at, n))
			continue;
		if (bi >= f->nsum ||
		    XXH3_64bits(s->arena + sp->at + o, n) != f->sum[bi])
			return sfile_damaged(c, f, wanted_in(s, k, at),
					     "stored bytes changed since they "
					     "were indexed (checksum mismatch)");
		sfile_mark_checked(f, at, n);
	}
	return 0;
}

/* Reads the gathered pieces: sorted, merged into spans of whole blocks,
 * read in one batch, checked, copied out. Leaves the context empty. 0 or
 * -EIO (logged) or -errno. */
static int flush(struct chain *c, struct sres *s)
{
	size_t ns = 0, at = 0;
	int rc = 0;

	if (!s->np)
		return 0;
	qsort(s->p, s->np, sizeof(s->p[0]), piece_cmp);
	for (size_t i = 0; i < s->np; i++) {
		struct rpiece *p = &s->p[i];
		uint64_t a = p->src - p->src % SUM_BLOCK;
		uint64_t e = (p->src + p->len + SUM_BLOCK - 1) / SUM_BLOCK *
			     SUM_BLOCK;
		struct rspan *sp = ns ? &s->s[ns - 1] : NULL;

		if (e > p->f->size)
			e = p->f->size;	/* its last block may be short */
		if (sp && sp->f == p->f && a <= sp->off + sp->len &&
		    e - sp->off <= SPAN_MAX) {
			if (e > sp->off + sp->len) {
				at += (size_t)(e - (sp->off + sp->len));
				sp->len = (size_t)(e - sp->off);
			}
		} else {
			sp = &s->s[ns++];
			*sp = (struct rspan){ .f = p->f, .off = a,
					      .len = (size_t)(e - a), .at = at,
					      .first = i };
			at += sp->len;
		}
		p->span = ns - 1;
	}
	for (size_t k = 0; k < ns; k++)
		s->r[k] = (struct blob_req){ .b = s->s[k].f->b,
					     .buf = s->arena + s->s[k].at,
					     .len = s->s[k].len,
					     .off = s->s[k].off };
	blob_batch_read(s->bb, s->r, ns);
	for (size_t k = 0; k < ns && !rc; k++) {
		if (s->r[k].res != (ssize_t)s->s[k].len)
			rc = sfile_damaged(c, s->s[k].f, s->p[s->s[k].first].src,
					   s->r[k].res < 0 ? "read error" :
					   "file is shorter than when it was "
					   "indexed");
		else
			rc = span_check(c, s, k);
	}
	for (size_t i = 0; i < s->np && !rc; i++) {
		const struct rpiece *p = &s->p[i];
		const struct rspan *sp = &s->s[p->span];
		memcpy(p->dst, s->arena + sp->at + (p->src - sp->off), p->len);
	}
	s->np = s->need = 0;
	return rc;
}

/* Reads [off, off+len) of f into dst: now, or gathered into s for the
 * next flush (s may be NULL: now). 0 or -EIO (logged) or -errno. */
static int gather(struct chain *c, struct sres *s, struct sfile *f,
		  uint64_t off, uint8_t *dst, size_t len)
{
	uint64_t end = f->kind == SF_WINDOWED ? f->size + f->vsize : f->size;

	if (f->kind == SF_WINDOWED && off < end && len <= end - off &&
	    off + len > f->size && f->vcopy) {
		/* The patch's own bytes, then its sections' decoded copy:
		 * both raw files. */
		size_t n = off < f->size ? (size_t)(f->size - off) : 0;
		int rc = n ? gather(c, s, f, off, dst, n) : 0;
		return rc ? rc : gather(c, s, f->vcopy, off + n - f->size,
					dst + n, len - n);
	}
	/* Files without checksums are being built and read where they
	 * are written; zstd frames and sections go through the cache. */
	size_t blocks = (size_t)((off % SUM_BLOCK + len + SUM_BLOCK - 1) /
				 SUM_BLOCK);
	if (!s || !f->sum || len >= BIG || off > end || len > end - off ||
	    (f->kind != SF_RAW && !(f->kind == SF_WINDOWED &&
				    off + len <= f->size))) {
		ssize_t r = sfile_pread(c, f, off, dst, len);
		return r < 0 ? (int)r : 0;
	}
	if (s->np == RP_MAX || s->need + blocks * SUM_BLOCK > ARENA) {
		int rc = flush(c, s);
		if (rc)
			return rc;
	}
	s->p[s->np++] = (struct rpiece){ .f = f, .src = off, .dst = dst,
					 .len = len };
	s->need += blocks * SUM_BLOCK;
	return 0;
}

struct sres *sfile_resolve_begin(struct chain *c)
{
	return sres_get(c);
}

int sfile_resolve_add(struct chain *c, struct sres *s,
		      const struct chain_layer *L, const struct xindex *x,
		      uint64_t off, uint8_t *dst, size_t len)
{
	size_t n, i = xindex_find(x, off);
	const struct xext *e = xindex_ext(x, &n);
	unsigned last_fid = UINT_MAX;
	struct sfile *f = NULL;
	int rc = 0;

	while (len && !rc) {
		uint64_t end = e[i + 1].off;
		size_t k = end - off < len ? (size_t)(end - off) : len;

		if (xext_is_fill(&e[i])) {
			memset(dst, xext_byte(&e[i]), k);
		} else {
			/* Consecutive extents mostly name the same file. */
			if (xext_fid(&e[i]) != last_fid) {
				last_fid = xext_fid(&e[i]);
				f = layer_fid_file(L, last_fid);
			}
			if (!f) {
				/* xindex_load checks ids: only a bug gets
				 * here, and it must not read elsewhere. */
				chain_logf(c, CHAIN_LOG_ERR, "%s: index names "
					   "file id %u outside its ancestry",
					   L->name, last_fid);
				return -EIO;
			}
			rc = gather(c, s, f, xext_src(&e[i]) + (off - e[i].off),
				    dst, k);
		}
		dst += k;
		off += k;
		len -= k;
		i++;
	}
	return rc;
}

int sfile_resolve_end(struct chain *c, struct sres *s, int rc)
{
	if (!s)
		return rc;
	if (!rc)
		rc = flush(c, s);
	sres_put(c, s);
	return rc;
}

int sfile_resolve(struct chain *c, const struct chain_layer *L,
		  const struct xindex *x, uint64_t off, uint8_t *dst,
		  size_t len)
{
	struct sres *s = sfile_resolve_begin(c);

	return sfile_resolve_end(c, s, sfile_resolve_add(c, s, L, x, off,
							 dst, len));
}
