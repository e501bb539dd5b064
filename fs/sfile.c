/* SPDX-License-Identifier: MIT */
/*
 * sfile: reading the chain's stored files (a base, a plain patch, an aux
 * file) for the extents of a composed index; sfile_resolve()
 * (fs/sresolve.c) turns a range of a layer into bytes with these reads.
 *
 * Every file is read through its blob (codec/blob.h): the layer files of
 * the store, local or remote, and the derived copies under .snapfs/ alike.
 * Raw files are read straight and checked per block against checksums
 * taken at index time (kept under .snapfs/sums: fs/sfile_sums.c); zstd files are decoded a
 * frame at a time into the block cache, with decoding contexts from a pool.
 * A read that finds damaged bytes logs which file, offset and window, and
 * fails with -EIO.
 *
 * Windowed lzma patches (vcdiff_patch_windowed) are read as they are,
 * with no converted copy. Decision: the patch stays one stored file
 * (SF_WINDOWED, file id 2*id as any patch) whose offsets run past its
 * size: [0, size) is the patch file itself, read raw (ADDs of windows
 * whose data section is stored plain point there, as in a plain patch),
 * and [size, size + vsize) is a virtual concatenation of the decompressed
 * data sections of the windows that have a compressed one, in window
 * order. So extents stay (file id, offset), xindex and its 20-bit ids are
 * unchanged, and an index that points into a converted copy can never be
 * mistaken for one that points here (fs/derive.c tags the stamp). A
 * section is the cache unit: keyed (file key, window), decoded whole on a
 * miss from stored bytes that were first read raw and checked against the
 * patch file's per-4 KiB sums, because the xz blocks carry no check of
 * their own (LZMA_CHECK_NONE, as stock xdelta3 expects): bytes are never
 * served unverified. A bad section fails with -EIO naming the file and
 * window. Once a layer is indexed, its sections are also decoded into a
 * raw derived file (f->vcopy, fs/vcopy.c): the virtual
 * range is then read from there like any raw file, and a section is
 * decoded only when that copy is missing.
 *
 * Not here: what the extents are (fs/ibuild.c builds them), opening or
 * converting files (fs/derive.c), readahead (fs/readahead.c), batching
 * small pieces (fs/sresolve.c). Thread-safe: any number of threads may
 * read; the decoder pools have their own lock.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache/bcache.h"
#include "codec/blob.h"
#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"
#include "codec/zframe.h"
#include "fs/safefile.h"
#include "fs/xindex.h"

/*
 * Raw stored files (aux files, plain patches, a raw base) are read
 * straight from their blob (locally the OS page cache, which already
 * caches them; a remote blob caches on local disk); the
 * block cache holds only what is expensive to get again (decompressed
 * zstd frames). Each 4 KiB block of a raw file is checked against the
 * XXH3 taken at index time, so a read costs about the bytes it needs:
 * 64 KiB blocks through the cache were re-read up to 15 times over at
 * depth 100, where a layer's bytes come from many layers' aux files.
 */
/* --- life cycle --- */

int sfile_raw(struct chain *c, struct chain_layer *L, struct sfile *f,
	      struct blob *b, uint64_t size, const char *label)
{
	blob_put(f->b);
	f->b = b;
	f->kind = SF_RAW;
	f->size = size;
	f->owner = L;
	f->key = atomic_fetch_add(&c->next_key, 1);
	snprintf(f->label, sizeof(f->label), "%s", label);
	return 0;
}

int sfile_windowed(struct sfile *f, const struct vcdiff_patch *p)
{
	size_t nwin = vcdiff_patch_nwin(p), nv = 0;
	uint32_t *vwin = malloc((nwin ? nwin : 1) * sizeof(*vwin));
	uint64_t *vbase = malloc((nwin ? nwin : 1) * sizeof(*vbase));
	uint64_t at = 0;

	if (!vwin || !vbase) {
		free(vwin);
		free(vbase);
		return -ENOMEM;
	}
	for (size_t w = 0; w < nwin; w++) {
		const struct vcdiff_win *wi = vcdiff_patch_win(p, w);
		if (!(wi->del_ind & VCDIFF_DEL_DATA))
			continue;
		vwin[nv] = (uint32_t)w;
		vbase[nv++] = at;
		at += wi->data_plain_len;
	}
	free(f->vwin);
	free(f->vbase);
	f->vwin = vwin;
	f->vbase = vbase;
	f->nv = nv;
	f->vsize = at;
	f->kind = SF_WINDOWED;
	return 0;
}

/* Index k into f->vwin of window w, or f->nv if w's data is plain. */
static size_t vwin_find(const struct sfile *f, size_t w)
{
	size_t lo = 0, hi = f->nv;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->vwin[mid] < w)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->nv && f->vwin[lo] == w ? lo : f->nv;
}

uint64_t sfile_add_src(const struct sfile *f, size_t w, uint64_t addr)
{
	size_t k;

	if (f->kind != SF_WINDOWED || (k = vwin_find(f, w)) == f->nv)
		return addr;
	return f->size + f->vbase[k] + addr;
}

void sfile_close(struct chain *c, struct sfile *f)
{
	if (f->kind == SF_ZSTD || f->kind == SF_WINDOWED)
		bcache_drop(c->cache, f->key);
	zframe_free(f->z);
	free(f->sum);
	free(f->ok);
	free(f->vwin);
	free(f->vbase);
	if (f->vcopy) {
		sfile_close(c, f->vcopy);
		free(f->vcopy);
	}
	blob_put(f->b);
	if (f->wfd >= 0)
		close(f->wfd);
	memset(f, 0, sizeof(*f));
	f->wfd = -1;
}

/* --- reading stored files through the cache --- */

/* Names the window holding a patch file offset, for damage messages. */
static long window_of(const struct chain_layer *L, const struct sfile *f,
		      uint64_t off)
{
	if (!L->patch || f != &L->data)
		return -1;
	size_t n = vcdiff_patch_nwin(L->patch);
	for (size_t i = 0; i < n; i++) {
		const struct vcdiff_win *w = vcdiff_patch_win(L->patch, i);
		uint64_t end = w->data_off + w->data_len + w->inst_len +
			       w->addr_len;
		if (off < end)
			return (long)i;
	}
	return -1;
}

static int read_damaged(struct chain *c, const struct sfile *f, uint64_t off,
			const char *why)
{
	struct chain_layer *L = f->owner;
	long w = window_of(L, f, off);
	/* Derived data is rebuilt, never restored: say so. */
	const char *fix = f->derived ? "it is derived data: unmount, delete "
			  "it and mount again to rebuild it" : "restore the file";

	if (f->fallback)
		return -EIO;
	atomic_fetch_add(&c->read_errors, 1);
	if (atomic_fetch_add(&L->nlogged, 1) < LOG_PER_LAYER) {
		if (w >= 0)
			chain_logf(c, CHAIN_LOG_ERR, "%s: %s at offset %"
				   PRIu64 " (window %ld): reads of %s and the "
				   "layers built on it fail with EIO; %s",
				   f->label, why, off, w, L->name, fix);
		else
			chain_logf(c, CHAIN_LOG_ERR, "%s: %s at offset %"
				   PRIu64 ": reads that need it fail with EIO; "
				   "%s", f->label, why, off, fix);
	}
	return -EIO;
}

struct zframe_dctx *sfile_dctx_get(struct chain *c)
{
	struct zframe_dctx *dc = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->npool)
		dc = c->pool[--c->npool];
	pthread_mutex_unlock(&c->pool_lock);
	if (!dc && zframe_dctx_new(&dc) < 0)
		return NULL;
	return dc;
}

void sfile_dctx_put(struct chain *c, struct zframe_dctx *dc)
{
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool == c->pool_cap) {
		size_t cap = c->pool_cap ? 2 * c->pool_cap : 8;
		struct zframe_dctx **p = realloc(c->pool, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&c->pool_lock);
			zframe_dctx_free(dc);
			return;
		}
		c->pool = p;
		c->pool_cap = cap;
	}
	c->pool[c->npool++] = dc;
	pthread_mutex_unlock(&c->pool_lock);
}

static struct vcdiff_dec *vdec_get(struct chain *c)
{
	struct vcdiff_dec *d = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->nvpool)
		d = c->vpool[--c->nvpool];
	pthread_mutex_unlock(&c->pool_lock);
	if (!d && vcdiff_dec_new(&d) < 0)
		return NULL;
	return d;
}

static void vdec_put(struct chain *c, struct vcdiff_dec *d)
{
	pthread_mutex_lock(&c->pool_lock);
	if (c->nvpool == c->vpool_cap) {
		size_t cap = c->vpool_cap ? 2 * c->vpool_cap : 8;
		struct vcdiff_dec **p = realloc(c->vpool, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&c->pool_lock);
			vcdiff_dec_free(d);
			return;
		}
		c->vpool = p;
		c->vpool_cap = cap;
	}
	c->vpool[c->nvpool++] = d;
	pthread_mutex_unlock(&c->pool_lock);
}

void sfile_pools_free(struct chain *c)
{
	for (size_t i = 0; i < c->npool; i++)
		zframe_dctx_free(c->pool[i]);
	free(c->pool);
	for (size_t i = 0; i < c->nvpool; i++)
		vcdiff_dec_free(c->vpool[i]);
	free(c->vpool);
	c->pool = NULL;
	c->vpool = NULL;
	c->npool = c->nvpool = 0;
	sfile_rpool_free(c);
}

/* Checks the blocks first_blk.. that buf (len bytes, block-aligned start)
 * holds. Returns the index of the first bad block, or -1. */
static long raw_check(const struct sfile *f, uint64_t first_blk,
		      const uint8_t *buf, size_t len)
{
	for (size_t k = 0; k * SUM_BLOCK < len; k++) {
		size_t n = len - k * SUM_BLOCK < SUM_BLOCK ?
			   len - k * SUM_BLOCK : SUM_BLOCK;
		if (first_blk + k >= f->nsum ||
		    XXH3_64bits(buf + k * SUM_BLOCK, n) != f->sum[first_blk + k])
			return (long)k;
	}
	return -1;
}

/* Reads one partial block, checked, and copies the part wanted. (Many
 * small pieces go through fs/sresolve.c's batches instead.) */
static int raw_partial(struct chain *c, struct sfile *f,
		       uint64_t off, uint8_t *dst, size_t len)
{
	uint8_t blk[SUM_BLOCK];
	uint64_t start = off - off % SUM_BLOCK, bi = start / SUM_BLOCK;
	size_t want = (size_t)(f->size - start < SUM_BLOCK ? f->size - start :
			       SUM_BLOCK);
	ssize_t r = blob_pread(f->b, blk, want, start);
	/* Damage is reported at off, the first byte wanted, not at the
	 * block's start: that names the window the reader needed (a block
	 * may begin in the window before). */
	if (r != (ssize_t)want)
		return read_damaged(c, f, off, r < 0 ? "read error" :
				    "file is shorter than when it was indexed");
	if (raw_check(f, bi, blk, want) >= 0)
		return read_damaged(c, f, off, "stored bytes changed since "
				    "they were indexed (checksum mismatch)");
	sfile_mark_checked(f, start, want);
	memcpy(dst, blk + (off - start), len);
	return 0;
}

/* Reads [off, off+len) of a raw file: whole blocks straight into dst,
 * the partial ones at either end through a scratch block. */
static ssize_t raw_read(struct chain *c, struct sfile *f,
			uint64_t off, uint8_t *dst, size_t len)
{
	uint64_t end = off + len;
	uint64_t a = (off + SUM_BLOCK - 1) / SUM_BLOCK * SUM_BLOCK;
	uint64_t b = end / SUM_BLOCK * SUM_BLOCK;
	int rc;

	if (!f->sum) {
		/* Being built (aux): no checksums yet, and no blob: the
		 * growing temporary is read where it is written. */
		ssize_t r = f->wfd >= 0 ? fdio_pread(f->wfd, dst, len, off) :
			    blob_pread(f->b, dst, len, off);
		return r == (ssize_t)len ? r : read_damaged(c, f, off,
				"short read");
	}
	if (end == f->size)
		b = end;	/* the file's last block may be short */
	if (a >= b) {		/* within one block (or two partial ones) */
		uint64_t mid = (off / SUM_BLOCK + 1) * SUM_BLOCK;
		size_t n1 = mid < end ? (size_t)(mid - off) : len;
		rc = raw_partial(c, f, off, dst, n1);
		if (!rc && n1 < len)
			rc = raw_partial(c, f, mid, dst + n1, len - n1);
		return rc ? rc : (ssize_t)len;
	}
	if (a > off && (rc = raw_partial(c, f, off, dst, (size_t)(a - off))))
		return rc;
	ssize_t r = blob_pread(f->b, dst + (a - off), (size_t)(b - a), a);
	if (r != (ssize_t)(b - a))
		return read_damaged(c, f, a, r < 0 ? "read error" :
				    "file is shorter than when it was indexed");
	long bad = raw_check(f, a / SUM_BLOCK, dst + (a - off), (size_t)(b - a));
	if (bad >= 0)
		return read_damaged(c, f, a + (uint64_t)bad * SUM_BLOCK,
				    "stored bytes changed since they were "
				    "indexed (checksum mismatch)");
	sfile_mark_checked(f, a, b - a);
	if (b < end && (rc = raw_partial(c, f, b, dst + (b - off),
					 (size_t)(end - b))))
		return rc;
	return (ssize_t)len;
}

int sfile_zstd_pin(struct chain *c, struct sfile *f, uint64_t off,
		   struct bcache_blk *b, uint64_t *raw_off)
{
	size_t i = zframe_find(f->z, off);
	const struct zframe_entry *fe;
	int rc;

	if (i >= zframe_count(f->z))
		return read_damaged(c, f, off, "read past the end");
	fe = zframe_frame(f->z, i);
	*raw_off = fe->raw_off;
	rc = bcache_get(c->cache, f->key, i, fe->raw_len, b);
	if (rc < 0)
		return rc;
	if (rc == BCACHE_MISS) {
		struct zframe_dctx *dc = sfile_dctx_get(c);
		ssize_t r = dc ? zframe_read_frame(f->z, dc, i, b->data,
						   fe->raw_len) : -ENOMEM;
		if (r != (ssize_t)fe->raw_len) {
			char why[200];
			snprintf(why, sizeof(why), "zstd frame %zu: %s",
				 i, dc ? zframe_dctx_reason(dc) :
				 "out of memory");
			if (dc)
				sfile_dctx_put(c, dc);
			bcache_abandon(c->cache, b);
			return read_damaged(c, f, fe->comp_off, why);
		}
		sfile_dctx_put(c, dc);
		bcache_publish(c->cache, b, fe->raw_len);
	}
	return 0;
}

static ssize_t zstd_read(struct chain *c, struct sfile *f,
			 uint64_t off, uint8_t *dst, size_t len)
{
	size_t done = 0;

	while (done < len) {
		struct bcache_blk b;
		uint64_t raw_off;
		int rc = sfile_zstd_pin(c, f, off, &b, &raw_off);

		if (rc)
			return rc;
		uint64_t foff = off - raw_off;
		size_t n = b.len - (size_t)foff;
		if (n > len - done)
			n = len - done;
		memcpy(dst + done, b.data + foff, n);
		bcache_put(c->cache, &b);
		done += n;
		off += n;
	}
	return (ssize_t)done;
}

/*
 * Pins the decompressed data section vwin[k] of windowed file f in the
 * cache (b), decoding it on a miss from stored bytes checked first. 0 or
 * -EIO (logged, naming file and window) or -ENOMEM.
 */
/* The size prefix is the patch's word: never allocate on it beyond what
 * a window can hold (a data section is at most its target). */
static int win_sane(struct chain *c, struct sfile *f, size_t w,
		    const struct vcdiff_win *wi)
{
	char why[200];

	if (wi->data_plain_len <= VCDIFF_WIN_MAX &&
	    wi->data_plain_len <= wi->tgt_len)
		return 0;
	snprintf(why, sizeof(why), "window %zu: data section claims %" PRIu32
		 " bytes, more than its window", w, wi->data_plain_len);
	return read_damaged(c, f, wi->data_off, why);
}

int sfile_win_decode(struct chain *c, struct sfile *f, size_t k,
		     uint8_t *dst)
{
	const struct vcdiff_patch *p = f->owner->patch;
	size_t w = f->vwin[k];
	const struct vcdiff_win *wi = vcdiff_patch_win(p, w);
	struct vcdiff_dec *d = NULL;
	uint8_t *z = NULL;
	char why[200];
	int rc = win_sane(c, f, w, wi);

	if (rc)
		return rc;
	z = malloc(wi->data_len ? wi->data_len : 1);
	d = vdec_get(c);
	if (!z || !d) {
		rc = -ENOMEM;
		goto fail;
	}
	/* Checked against the sums before lzma sees a byte: a flipped bit
	 * in an unchecked xz block would decode to wrong bytes. */
	ssize_t r = raw_read(c, f, wi->data_off, z, wi->data_len);
	if (r < 0) {
		rc = (int)r;
		goto fail;
	}
	r = vcdiff_dec_section_mem(d, p, w, VCDIFF_SECT_DATA, z,
				   wi->data_len, dst, wi->data_plain_len);
	if (r != (ssize_t)wi->data_plain_len) {
		snprintf(why, sizeof(why), "window %zu: data section does not "
			 "decompress: %s", w, r == -ENOMEM ? "out of memory" :
			 vcdiff_dec_reason(d));
		rc = r == -ENOMEM ? -ENOMEM : read_damaged(c, f, wi->data_off,
							   why);
	}
fail:
	if (d)
		vdec_put(c, d);
	free(z);
	return rc;
}

/* ahead: for a readahead (bcache_get_ahead), not for a reader. */
static int win_get(struct chain *c, struct sfile *f, size_t k,
		   struct bcache_blk *b, bool ahead)
{
	size_t w = f->vwin[k];
	const struct vcdiff_win *wi = vcdiff_patch_win(f->owner->patch, w);
	int rc = win_sane(c, f, w, wi);

	if (rc)
		return rc;
	rc = (ahead ? bcache_get_ahead : bcache_get)(c->cache, f->key, w,
						    wi->data_plain_len, b);
	if (rc < 0 || rc == BCACHE_HIT)
		return rc < 0 ? rc : 0;
	if ((rc = sfile_win_decode(c, f, k, b->data))) {
		bcache_abandon(c->cache, b);
		return rc;
	}
	atomic_fetch_add(&c->win_decoded, 1);
	bcache_publish(c->cache, b, wi->data_plain_len);
	return 0;
}

/* Index k of the section holding virtual offset voff (< f->vsize). */
static size_t vsect_find(const struct sfile *f, uint64_t voff)
{
	size_t lo = 0, hi = f->nv;

	/* Last k with vbase[k] <= voff; empty sections share a base with
	 * the next one, and the last of equals is the one that holds it. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->vbase[mid] <= voff)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

int sfile_win_pin(struct chain *c, struct sfile *f, uint64_t voff,
		  struct bcache_blk *b, uint64_t *sect_off)
{
	size_t k = vsect_find(f, voff);

	*sect_off = f->vbase[k];
	return win_get(c, f, k, b, false);
}

/* Reads [voff, voff+len) of f's decompressed sections (within vsize). */
static ssize_t win_read(struct chain *c, struct sfile *f, uint64_t voff,
			uint8_t *dst, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t k = vsect_find(f, voff);
		struct bcache_blk b;
		int rc = win_get(c, f, k, &b, false);

		if (rc)
			return rc;
		uint64_t soff = voff - f->vbase[k];
		size_t n = b.len - (size_t)soff;
		if (n > len - done)
			n = len - done;
		memcpy(dst + done, b.data + soff, n);
		bcache_put(c->cache, &b);
		done += n;
		voff += n;
	}
	return (ssize_t)done;
}

void sfile_prefetch_windowed(struct chain *c, struct sfile *f, uint64_t src,
			     uint64_t src_end, bool once)
{
	if (!f || f->kind != SF_WINDOWED || src_end <= f->size || f->vcopy)
		return;
	if (src < f->size)
		src = f->size;
	if (src_end > f->size + f->vsize)
		src_end = f->size + f->vsize;
	for (uint64_t v = src - f->size; v < src_end - f->size;) {
		size_t k = vsect_find(f, v);
		struct bcache_blk b;
		if (win_get(c, f, k, &b, once))
			return;		/* the reader will hit it and report */
		bcache_put(c->cache, &b);
		v = k + 1 < f->nv ? f->vbase[k + 1] : f->vsize;
	}
}

ssize_t sfile_pread(struct chain *c, struct sfile *f, uint64_t off,
		    uint8_t *dst, size_t len)
{
	uint64_t end = f->kind == SF_WINDOWED ? f->size + f->vsize : f->size;

	if (f->kind == SF_NONE || off > end || len > end - off)
		return read_damaged(c, f, off, "extent beyond the end of "
				    "the file");
	if (f->kind == SF_ZSTD)
		return zstd_read(c, f, off, dst, len);
	if (f->kind == SF_WINDOWED && off + len > f->size) {
		size_t n = off < f->size ? (size_t)(f->size - off) : 0;
		ssize_t r = n ? raw_read(c, f, off, dst, n) : 0;
		if (r < 0)
			return r;
		r = f->vcopy ? raw_read(c, f->vcopy, off + n - f->size,
					dst + n, len - n) :
		    win_read(c, f, off + n - f->size, dst + n, len - n);
		return r < 0 ? r : (ssize_t)len;
	}
	return raw_read(c, f, off, dst, len);
}

int sfile_damaged(struct chain *c, const struct sfile *f, uint64_t off,
		  const char *why)
{
	return read_damaged(c, f, off, why);
}
