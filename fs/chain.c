/* SPDX-License-Identifier: MIT */
/*
 * chain: snapshot chain of a store (see chain.h).
 *
 * The offset mapping, once, for the whole tree. A read of layer N at
 * offset X finds the extent of N's composed index holding X; the extent
 * names a stored file by id and an offset in it (or is a fill byte). File
 * ids are 2*j for layer j's data file (the base file; a patch's plain
 * VCDIFF file, whose ADD bytes the extents point into) and 2*j+1 for its
 * aux file (bytes materialised from target copies whose period was too
 * short to keep as extents). Those ids are also the block cache's first
 * key; the second is the 64 KiB block (raw files) or the zstd frame.
 *
 * Layer N's index is built from N-1's: patch N's ops, in target order,
 * become extents; a COPY from the source is a slice of N-1's index, so
 * COPYs are followed down the chain once, at build time, never at read
 * time. Each finished window is read back through the new index and its
 * adler32 checked, which proves the whole composition before any reader
 * sees it.
 *
 * Derived files are named after a stamp of what they derive from (layer
 * file identity, chained through the parents), so a replaced layer file
 * simply misses its derived data, which is rebuilt.
 */
#include "fs/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/fdio.h"

#include "cache/bcache.h"
#include "codec/vcdiff_dec.h"
#include "codec/zframe.h"
#include "fs/xindex.h"
#include "fs/msg.h"

/*
 * Raw stored files (aux files, plain patches, a raw base) are read with
 * pread straight from the OS page cache, which already caches them; the
 * block cache holds only what is expensive to get again (decompressed
 * zstd frames). Each 4 KiB block of a raw file is checked against the
 * XXH3 taken at index time, so a read costs about the bytes it needs:
 * 64 KiB blocks through the cache were re-read up to 15 times over at
 * depth 100, where a layer's bytes come from many layers' aux files.
 */
#define SUM_BLOCK ((uint64_t)4 << 10)
#define SUM_MAGIC "SNAPSUM1"
#define SUM_VERSION 2u
/* A target copy may add at most this many extents before its bytes are
 * materialised into the aux file instead. */
#define SELF_COPY_MAX_EXT(len) (16 + (len) / 512)
#define LOG_PER_LAYER 5
/* Extents shorter than this, two or more in a row, are materialised. */
#define COMPACT_SHORT 256

enum { SF_NONE, SF_RAW, SF_ZSTD };

struct sfile {
	int fd;
	int own_fd;		/* fd is ours to close */
	int kind;
	struct zframe *z;
	uint64_t size;
	uint64_t *sum;		/* per SUM_BLOCK; NULL: read uncached, unchecked */
	size_t nsum;
	char label[360];	/* for messages */
};

struct layer {
	unsigned j;			/* position: 0 is the base */
	char *name;
	const struct store_layer *sl;
	uint64_t size;
	uint64_t stored;
	struct timespec mtime;
	uint64_t stamp;
	struct xindex *x;
	struct vcdiff_patch *patch;	/* plain patch; NULL for the base */
	struct sfile data;		/* file id 2j */
	struct sfile aux;		/* file id 2j+1 */
	char damage[384];		/* "" if readable */
	atomic_uint nlogged;
};

/* Readahead: decode the frames of [off, off+len) of layer i. */
struct pf_job {
	size_t layer;
	uint64_t off, len;
};

#define PF_QUEUE 64
/* How far ahead of a sequential reader frames are decoded. */
#define PF_WINDOW ((uint64_t)8 << 20)
/* Reads this close to the last one count as sequential: FUSE runs the
 * kernel's readahead requests (up to 1 MiB) on several threads, slightly
 * out of order. */
#define PF_SLACK ((uint64_t)2 << 20)
/* In-order reads in a row before readahead starts: a random reader lands
 * near its previous read now and then, and an 8 MiB readahead for it
 * would only compete with its next reads (it showed as p99 latency). */
#define PF_MIN_RUN 2

struct chain_stream {
	pthread_mutex_t lock;		/* protects next, pf_end */
	uint64_t next;			/* end of the last read */
	uint64_t pf_end;		/* readahead submitted up to here */
	unsigned run;			/* in-order reads in a row */
	size_t layer;
};

struct chain {
	struct store *s;
	struct chain_opts o;
	struct bcache *cache;
	struct layer **layers;		/* STORE_MAX_LAYERS slots */
	atomic_size_t n;		/* published layers */
	pthread_mutex_t pool_lock;	/* protects pool, npool */
	struct zframe_dctx **pool;
	size_t npool, pool_cap;
	atomic_uint_fast64_t reads, read_bytes, read_errors;
	atomic_uint_fast64_t pf_jobs, pf_dropped, pf_frames;
	/* Lock order: pf_lock, then (inside workers' reads) the cache's. */
	pthread_mutex_t pf_lock;	/* protects pf_q*, pf_stop */
	pthread_cond_t pf_cond;
	struct pf_job pf_q[PF_QUEUE];
	size_t pf_head, pf_count;
	int pf_stop;
	pthread_t *pf_threads;
	size_t pf_nthreads;
};

/* --- messages --- */

static void logf_(struct chain *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logf_(struct chain *c, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!c->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->o.log(c->o.ctx, level, msg);
}

static void damage(struct layer *L, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void damage(struct layer *L, const char *fmt, ...)
{
	va_list ap;

	if (L->damage[0])
		return;
	va_start(ap, fmt);
	vsnprintf(L->damage, sizeof(L->damage), fmt, ap);
	va_end(ap);
}

static void progress(struct chain *c, const char *layer, const char *what,
		     uint64_t done, uint64_t total)
{
	if (c->o.progress)
		c->o.progress(c->o.ctx, layer, what, done, total);
}

/* --- small I/O helpers --- */

static uint64_t file_stamp(uint64_t parent, const struct store_layer *sl)
{
	uint64_t v[5] = {
		parent, (uint64_t)sl->st.st_ino, (uint64_t)sl->st.st_size,
		(uint64_t)sl->st.st_mtim.tv_sec,
		(uint64_t)sl->st.st_mtim.tv_nsec,
	};
	return XXH3_64bits_withSeed(v, sizeof(v), XXH3_64bits(sl->path,
							     strlen(sl->path)));
}

/* "<name>.<stamp>.<ext>" in a .snapfs subdirectory. */
static void derived_name(char *buf, size_t cap, const struct layer *L,
			 const char *ext)
{
	snprintf(buf, cap, "%s.%016" PRIx64 ".%s", L->name, L->stamp, ext);
}

/* --- block checksums of stored files --- */

struct sum_hdr {
	char magic[8];
	uint32_t version, block;
	uint64_t size, n, digest;
};

static int sums_load(struct sfile *f, int dfd, const char *name)
{
	struct sum_hdr h;
	int rc = -ESTALE, fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	size_t n = (size_t)((f->size + SUM_BLOCK - 1) / SUM_BLOCK);
	uint64_t *sum = NULL;

	if (fd < 0)
		return -errno;
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
	f->sum = sum;
	f->nsum = n;
	sum = NULL;
	rc = 0;
out:
	free(sum);
	close(fd);
	return rc;
}

/* Reads the whole file once, hashing each block; saves the result. */
static int sums_build(struct chain *c, struct sfile *f, int dfd,
		      const char *name, const char *layer)
{
	size_t n = (size_t)((f->size + SUM_BLOCK - 1) / SUM_BLOCK);
	uint64_t *sum = malloc(n ? n * 8 : 8);
	uint8_t *buf = malloc(16 * SUM_BLOCK);
	char tmp[600];
	struct sum_hdr h;
	int fd = -1, rc = 0;

	if (!sum || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i += 16) {
		uint64_t off = i * SUM_BLOCK;
		size_t want = (size_t)(f->size - off < 16 * SUM_BLOCK ?
				       f->size - off : 16 * SUM_BLOCK);
		ssize_t r = fdio_pread(f->fd, buf, want, off);
		if (r != (ssize_t)want) {
			rc = r < 0 ? (int)r : -EIO;
			goto out;
		}
		for (size_t k = 0; k < 16 && i + k < n; k++) {
			size_t bl = want - k * SUM_BLOCK < SUM_BLOCK ?
				    want - k * SUM_BLOCK : SUM_BLOCK;
			sum[i + k] = XXH3_64bits(buf + k * SUM_BLOCK, bl);
		}
		if ((i & 1023) == 0)
			progress(c, layer, "checksumming", off, f->size);
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SUM_MAGIC, 8);
	h.version = SUM_VERSION;
	h.block = SUM_BLOCK;
	h.size = f->size;
	h.n = n;
	h.digest = XXH3_64bits(sum, n * 8);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || fdio_write(fd, &h, sizeof(h)) ||
	    fdio_write(fd, sum, n * 8) || renameat(dfd, tmp, dfd, name) < 0) {
		/* Derived data only: a read-only store just re-sums next time. */
		logf_(c, CHAIN_LOG_WARN, "%s: cannot save checksums under "
		      "%s/: %s", layer, STORE_META_DIR, strerror(errno));
		unlinkat(dfd, tmp, 0);
	}
	f->sum = sum;
	f->nsum = n;
	sum = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(sum);
	free(buf);
	return rc;
}

static int sums_get(struct chain *c, struct layer *L, struct sfile *f,
		    const char *ext)
{
	char name[300];
	int dfd = store_subdir(c->s, "sums");

	derived_name(name, sizeof(name), L, ext);
	if (sums_load(f, dfd, name) == 0)
		return 0;
	return sums_build(c, f, dfd, name, L->name);
}

/* --- reading stored files through the cache --- */

static struct layer *fid_layer(struct chain *c, unsigned fid)
{
	return c->layers[fid / 2];
}

static struct sfile *fid_file(struct chain *c, unsigned fid)
{
	struct layer *L = fid_layer(c, fid);
	return (fid & 1) ? &L->aux : &L->data;
}

/* Names the window holding a patch file offset, for damage messages. */
static long window_of(const struct layer *L, unsigned fid, uint64_t off)
{
	if (!L->patch || (fid & 1))
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

static int read_damaged(struct chain *c, unsigned fid, uint64_t off,
			const char *why)
{
	struct layer *L = fid_layer(c, fid);
	struct sfile *f = fid_file(c, fid);
	long w = window_of(L, fid, off);

	atomic_fetch_add(&c->read_errors, 1);
	if (atomic_fetch_add(&L->nlogged, 1) < LOG_PER_LAYER) {
		if (w >= 0)
			logf_(c, CHAIN_LOG_ERR, "%s: %s at offset %" PRIu64
			      " (window %ld): reads of %s and the layers "
			      "built on it fail with EIO; restore the file",
			      f->label, why, off, w, L->name);
		else
			logf_(c, CHAIN_LOG_ERR, "%s: %s at offset %" PRIu64
			      ": reads that need it fail with EIO; restore "
			      "the file", f->label, why, off);
	}
	return -EIO;
}

static struct zframe_dctx *dctx_get(struct chain *c)
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

static void dctx_put(struct chain *c, struct zframe_dctx *dc)
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

/* Reads [off, off+len) of a raw file, block by block through the cache. */
/*
 * The last few checked partial blocks of one resolve() call. Deep layers
 * interleave ~2 KB pieces of many aux files, and consecutive pieces of
 * one file often share a 4 KiB block: without this every piece re-read
 * and re-hashed its block. Lives on the caller's stack: no sharing.
 */
#define MEMO_SLOTS 8
struct rawmemo {
	struct {
		const struct sfile *f;	/* NULL: empty slot */
		uint64_t blk;
		size_t len;
		uint8_t data[SUM_BLOCK];
	} slot[MEMO_SLOTS];
	unsigned next;
};

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

/* Reads one partial block, checked, and copies the part wanted; the block
 * goes through the memo when there is one. */
static int raw_partial(struct chain *c, unsigned fid, struct sfile *f,
		       uint64_t off, uint8_t *dst, size_t len,
		       struct rawmemo *m)
{
	uint8_t scratch[SUM_BLOCK], *blk = scratch;
	uint64_t start = off - off % SUM_BLOCK, bi = start / SUM_BLOCK;
	size_t want = (size_t)(f->size - start < SUM_BLOCK ? f->size - start :
			       SUM_BLOCK);

	if (m) {
		for (unsigned k = 0; k < MEMO_SLOTS; k++) {
			if (m->slot[k].f == f && m->slot[k].blk == bi) {
				memcpy(dst, m->slot[k].data + (off - start), len);
				return 0;
			}
		}
		unsigned k = m->next++ % MEMO_SLOTS;
		m->slot[k].f = NULL;	/* filled below if it checks out */
		blk = m->slot[k].data;
	}
	ssize_t r = fdio_pread(f->fd, blk, want, start);
	if (r != (ssize_t)want)
		return read_damaged(c, fid, start, r < 0 ? "read error" :
				    "file is shorter than when it was indexed");
	if (raw_check(f, bi, blk, want) >= 0)
		return read_damaged(c, fid, start, "stored bytes changed since "
				    "they were indexed (checksum mismatch)");
	if (m) {
		unsigned k = (m->next - 1) % MEMO_SLOTS;
		m->slot[k].f = f;
		m->slot[k].blk = bi;
		m->slot[k].len = want;
	}
	memcpy(dst, blk + (off - start), len);
	return 0;
}

/* Reads [off, off+len) of a raw file: whole blocks straight into dst,
 * the partial ones at either end through a scratch block. */
static ssize_t raw_read(struct chain *c, unsigned fid, struct sfile *f,
			uint64_t off, uint8_t *dst, size_t len,
			struct rawmemo *m)
{
	uint64_t end = off + len;
	uint64_t a = (off + SUM_BLOCK - 1) / SUM_BLOCK * SUM_BLOCK;
	uint64_t b = end / SUM_BLOCK * SUM_BLOCK;
	int rc;

	if (!f->sum) {
		/* Being built (aux): no checksums yet. */
		ssize_t r = fdio_pread(f->fd, dst, len, off);
		return r == (ssize_t)len ? r : read_damaged(c, fid, off,
				"short read");
	}
	if (end == f->size)
		b = end;	/* the file's last block may be short */
	if (a >= b) {		/* within one block (or two partial ones) */
		uint64_t mid = (off / SUM_BLOCK + 1) * SUM_BLOCK;
		size_t n1 = mid < end ? (size_t)(mid - off) : len;
		rc = raw_partial(c, fid, f, off, dst, n1, m);
		if (!rc && n1 < len)
			rc = raw_partial(c, fid, f, mid, dst + n1, len - n1, m);
		return rc ? rc : (ssize_t)len;
	}
	if (a > off && (rc = raw_partial(c, fid, f, off, dst, (size_t)(a - off), m)))
		return rc;
	ssize_t r = fdio_pread(f->fd, dst + (a - off), (size_t)(b - a), a);
	if (r != (ssize_t)(b - a))
		return read_damaged(c, fid, a, r < 0 ? "read error" :
				    "file is shorter than when it was indexed");
	long bad = raw_check(f, a / SUM_BLOCK, dst + (a - off), (size_t)(b - a));
	if (bad >= 0)
		return read_damaged(c, fid, a + (uint64_t)bad * SUM_BLOCK,
				    "stored bytes changed since they were "
				    "indexed (checksum mismatch)");
	if (b < end && (rc = raw_partial(c, fid, f, b, dst + (b - off),
					 (size_t)(end - b), m)))
		return rc;
	return (ssize_t)len;
}

static ssize_t zstd_read(struct chain *c, unsigned fid, struct sfile *f,
			 uint64_t off, uint8_t *dst, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t i = zframe_find(f->z, off);
		const struct zframe_entry *fe;
		struct bcache_blk b;
		int rc;

		if (i >= zframe_count(f->z))
			return read_damaged(c, fid, off, "read past the end");
		fe = zframe_frame(f->z, i);
		rc = bcache_get(c->cache, fid, i, fe->raw_len, &b);
		if (rc < 0)
			return rc;
		if (rc == BCACHE_MISS) {
			struct zframe_dctx *dc = dctx_get(c);
			ssize_t r = dc ? zframe_read_frame(f->z, dc, i, b.data,
							   fe->raw_len) : -ENOMEM;
			if (r != (ssize_t)fe->raw_len) {
				char why[200];
				snprintf(why, sizeof(why), "zstd frame %zu: %s",
					 i, dc ? zframe_dctx_reason(dc) :
					 "out of memory");
				if (dc)
					dctx_put(c, dc);
				bcache_abandon(c->cache, &b);
				return read_damaged(c, fid, fe->comp_off, why);
			}
			dctx_put(c, dc);
			bcache_publish(c->cache, &b, fe->raw_len);
		}
		uint64_t foff = off - fe->raw_off;
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

static ssize_t sfile_read(struct chain *c, unsigned fid, uint64_t off,
			  uint8_t *dst, size_t len, struct rawmemo *m)
{
	struct sfile *f = fid_file(c, fid);

	if (f->kind == SF_NONE || off > f->size || len > f->size - off)
		return read_damaged(c, fid, off, "extent beyond the end of "
				    "the file");
	if (f->kind == SF_ZSTD)
		return zstd_read(c, fid, f, off, dst, len);
	return raw_read(c, fid, f, off, dst, len, m);
}

/* Reads [off, off+len) of the layer described by x (len within size). */
static int resolve(struct chain *c, const struct xindex *x, uint64_t off,
		   uint8_t *dst, size_t len)
{
	size_t n, i = xindex_find(x, off);
	const struct xext *e = xindex_ext(x, &n);
	struct rawmemo memo;

	for (unsigned k = 0; k < MEMO_SLOTS; k++)
		memo.slot[k].f = NULL;
	memo.next = 0;

	while (len) {
		uint64_t end = e[i + 1].off;
		size_t k = end - off < len ? (size_t)(end - off) : len;

		if (xext_is_fill(&e[i])) {
			memset(dst, xext_byte(&e[i]), k);
		} else {
			ssize_t r = sfile_read(c, xext_fid(&e[i]),
					       xext_src(&e[i]) + (off - e[i].off),
					       dst, k, &memo);
			if (r < 0)
				return (int)r;
		}
		dst += k;
		off += k;
		len -= k;
		i++;
	}
	return 0;
}

/* --- opening layers --- */

static int sfile_raw(struct sfile *f, int fd, uint64_t size, const char *label)
{
	f->fd = fd;
	f->kind = SF_RAW;
	f->size = size;
	snprintf(f->label, sizeof(f->label), "%s", label);
	return 0;
}

static void sfile_close(struct sfile *f)
{
	zframe_free(f->z);
	free(f->sum);
	if (f->own_fd && f->fd >= 0)
		close(f->fd);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

struct prog_ctx {
	struct chain *c;
	const char *layer, *what;
};

static void prog_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct prog_ctx *p = ctx;
	progress(p->c, p->layer, p->what, done, total);
}

/*
 * Opens derived file `name` in subdirectory `sub`, making it with make()
 * into a temporary file first if it does not exist. Returns an fd or -errno.
 */
static int derived_open(struct chain *c, const char *sub, const char *name,
			int (*make)(int in_fd, int out_fd, void *arg,
				    const char **why),
			int in_fd, void *arg, const char **why)
{
	int dfd = store_subdir(c->s, sub), tfd = store_subdir(c->s, "tmp");
	char tmp[400];
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	snprintf(tmp, sizeof(tmp), "%s.%s", sub, name);
	fd = openat(tfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = make(in_fd, fd, arg, why);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (!rc && renameat(tfd, tmp, dfd, name) < 0)
		rc = -errno;
	if (rc) {
		close(fd);
		unlinkat(tfd, tmp, 0);
		return rc;
	}
	return fd;
}

static int make_seekable(int in_fd, int out_fd, void *arg, const char **why)
{
	struct zframe_writer_opts o = { 0 };
	return zframe_transcode(in_fd, out_fd, &o, prog_cb, arg, why);
}

static int make_raw(int in_fd, int out_fd, void *arg, const char **why)
{
	struct zframe_writer_opts o = { .raw = 1 };
	return zframe_transcode(in_fd, out_fd, &o, prog_cb, arg, why);
}

static int make_plain(int in_fd, int out_fd, void *arg, const char **why)
{
	return vcdiff_recode_plain(in_fd, out_fd, prog_cb, arg, why);
}

/* djw/fgk: liblzma cannot help; stock xdelta3 converts them. */
static int make_plain_xdelta3(int in_fd, int out_fd, void *arg,
			      const char **why)
{
	int status;
	pid_t pid;

	(void)arg;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* stdin/stdout are the only fds the converter needs. */
		if (lseek(in_fd, 0, SEEK_SET) < 0 || dup2(in_fd, 0) < 0 ||
		    dup2(out_fd, 1) < 0)
			_exit(126);
		execlp("xdelta3", "xdelta3", "recode", "-q", "-f", "-S", "none",
		       "-c", (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		*why = "djw/fgk secondary compression needs stock xdelta3 for a "
		       "one-time conversion: apt-get install xdelta3";
	else
		*why = "stock xdelta3 could not convert it (djw/fgk "
		       "secondary compression): the patch is damaged";
	return -ENOTSUP;
}

static int open_base(struct chain *c, struct layer *L, char *err,
		     size_t errlen)
{
	const struct store_layer *sl = L->sl;
	uint8_t magic[4] = { 0 };
	const char *why = "";
	int rc;

	L->stamp = file_stamp(0, sl);
	if (fdio_pread(sl->fd, magic, 4, 0) < 0) {
		msg_say(err, errlen, "%s/%s: %s", store_dir(c->s), sl->path,
		    strerror(errno));
		return -EIO;
	}
	if (!memcmp(magic, "\xd6\xc3\xc4", 3)) {
		msg_say(err, errlen, "%s/%s: the base (last line of %s) is a "
		    "VCDIFF patch, not a state file: fix the order of %s "
		    "(newest first, base last)", store_dir(c->s), sl->path,
		    STORE_LAYERS_FILE, STORE_LAYERS_FILE);
		return -EINVAL;
	}
	uint32_t m = (uint32_t)magic[0] | (uint32_t)magic[1] << 8 |
		     (uint32_t)magic[2] << 16 | (uint32_t)magic[3] << 24;
	if (m != 0xFD2FB528u && (m & 0xFFFFFFF0u) != 0x184D2A50u) {
		sfile_raw(&L->data, sl->fd, (uint64_t)sl->st.st_size, sl->path);
		rc = sums_get(c, L, &L->data, "data.sum");
		if (rc) {
			damage(L, "%s: cannot read: %s", sl->path, strerror(-rc));
			return 0;
		}
		L->size = L->data.size;
		return xindex_new_file(&L->x, 0, L->size);
	}
	if (c->o.raw_base) {
		/* A full decompressed copy: disk for speed (-o raw_base). */
		char name[300];
		struct stat st;
		struct prog_ctx pc = { c, L->name, "decompressing the base "
				       "(raw_base; first mount only)" };
		derived_name(name, sizeof(name), L, "raw");
		int fd = derived_open(c, "base", name, make_raw, sl->fd, &pc,
				      &why);
		if (fd < 0 || fstat(fd, &st) < 0) {
			damage(L, "%s: cannot decompress: %s", sl->path,
			       fd == -EBADMSG ? why : strerror(fd < 0 ? -fd : errno));
			if (fd >= 0)
				close(fd);
			return 0;
		}
		sfile_raw(&L->data, fd, (uint64_t)st.st_size, sl->path);
		L->data.own_fd = 1;
		snprintf(L->data.label, sizeof(L->data.label), "%.100s "
			 "(decompressed copy %s/base/%.200s)", sl->path,
			 STORE_META_DIR, name);
		rc = sums_get(c, L, &L->data, "raw.sum");
		if (rc) {
			damage(L, "%s: cannot read: %s", L->data.label,
			       strerror(-rc));
			return 0;
		}
		L->size = L->data.size;
		return xindex_new_file(&L->x, 0, L->size);
	}
	L->data.fd = sl->fd;
	L->data.kind = SF_ZSTD;
	snprintf(L->data.label, sizeof(L->data.label), "%s", sl->path);
	rc = zframe_open(&L->data.z, sl->fd, &why);
	if (rc == -E2BIG) {
		char name[300];
		struct prog_ctx pc = { c, L->name, "converting base to "
				       "seekable zstd (first mount only)" };
		derived_name(name, sizeof(name), L, "zst");
		int fd = derived_open(c, "base", name, make_seekable, sl->fd,
				      &pc, &why);
		if (fd < 0) {
			damage(L, "%s: cannot convert to seekable zstd: %s",
			       sl->path, fd == -EBADMSG ? why : strerror(-fd));
			return 0;
		}
		L->data.fd = fd;
		L->data.own_fd = 1;
		snprintf(L->data.label, sizeof(L->data.label), "%s/base/%s",
			 STORE_META_DIR, name);
		rc = zframe_open(&L->data.z, fd, &why);
	}
	if (rc) {
		damage(L, "%s: damaged zstd base: %s", L->data.label, why);
		return 0;
	}
	L->data.size = zframe_size(L->data.z);
	L->size = L->data.size;
	return xindex_new_file(&L->x, 0, L->size);
}

/* Appends len bytes to the aux file, returning their offset there. */
static int aux_append(struct chain *c, struct layer *L, const uint8_t *buf,
		      size_t len, uint64_t *off)
{
	if (L->aux.fd < 0) {
		char name[300];
		derived_name(name, sizeof(name), L, "aux");
		int fd = openat(store_subdir(c->s, "aux"), name,
				O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		sfile_raw(&L->aux, fd, 0, name);
		L->aux.own_fd = 1;
		snprintf(L->aux.label, sizeof(L->aux.label), "%s/aux/%s",
			 STORE_META_DIR, name);
	}
	*off = L->aux.size;
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(L->aux.fd, buf + done, len - done,
				   (off_t)(L->aux.size + done));
		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	L->aux.size += len;
	return 0;
}

/* A target copy too fragmented to keep as extents: write its bytes out. */
static int materialise(struct chain *c, struct layer *L, struct xbuild *b,
		       const struct vcdiff_op *op, uint8_t *scratch)
{
	const struct xindex *v = xbuild_view(b);
	uint64_t here = xbuild_size(b), period = here - op->addr;
	uint64_t off = 0;
	int rc;

	if (period >= op->len) {
		rc = resolve(c, v, op->addr, scratch, op->len);
	} else {
		rc = resolve(c, v, op->addr, scratch, (size_t)period);
		for (uint64_t k = period; !rc && k < op->len; k++)
			scratch[k] = scratch[k - period];
	}
	if (!rc)
		rc = aux_append(c, L, scratch, op->len, &off);
	if (!rc)
		rc = xbuild_file(b, op->len, 2 * L->j + 1, off);
	return rc;
}

/*
 * Collapses runs of short extents of the window that starts at tgt_off
 * (whose bytes are in win) into single aux-file extents. Patches of VM
 * state interleave tiny COPYs and ADDs inside every changed page; kept as
 * extents they would make the index a fifth of the layer's size and every
 * read a walk through them. Their bytes cost about what the patch costs.
 */
static int compact_window(struct chain *c, struct layer *L, struct xbuild *b,
			  uint64_t tgt_off, const uint8_t *win)
{
	struct xext *tmp;
	const struct xindex *v = xbuild_view(b);
	size_t n, k0 = xindex_find(v, tgt_off);
	const struct xext *e = xindex_ext(v, &n);
	size_t nt = 0;
	int rc = 0;

	if (n == 0)
		return 0;
	/* An extent carried over from the previous window stays as it is. */
	if (e[k0].off < tgt_off)
		k0++;
	if (k0 >= n)
		return 0;
	tmp = malloc((n - k0 + 1) * sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	for (size_t i = k0; i <= n; i++)
		tmp[nt++] = e[i];	/* with the sentinel */
	xbuild_truncate(b, k0);
	for (size_t i = 0; i + 1 < nt && !rc;) {
		size_t j = i;
		while (j + 1 < nt && tmp[j + 1].off - tmp[j].off < COMPACT_SHORT)
			j++;
		if (j - i >= 2) {
			uint64_t off, len = tmp[j].off - tmp[i].off;
			rc = aux_append(c, L, win + (tmp[i].off - tgt_off),
					(size_t)len, &off);
			if (!rc)
				rc = xbuild_file(b, len, 2 * L->j + 1, off);
			i = j;
		} else {
			rc = xbuild_ref(b, tmp[i + 1].off - tmp[i].off,
					tmp[i].ref);
			i++;
		}
	}
	free(tmp);
	return rc;
}

static void pf_submit(struct chain *c, size_t layer, uint64_t off,
		      uint64_t len);

/* Builds layer L's index from its parent's and its plain patch. */
static int build_index(struct chain *c, struct layer *L, struct layer *P)
{
	size_t nwin = vcdiff_patch_nwin(L->patch);
	struct vcdiff_dec *d = NULL;
	struct xbuild *b = NULL;
	uint8_t *win = NULL, *scratch = NULL;
	unsigned fid = 2 * L->j;
	int rc;

	rc = vcdiff_dec_new(&d);
	if (!rc)
		rc = xbuild_new(&b);
	win = malloc(VCDIFF_WIN_MAX);
	scratch = malloc(VCDIFF_WIN_MAX);
	if (rc || !win || !scratch) {
		rc = rc ? rc : -ENOMEM;
		goto out;
	}
	for (size_t w = 0; w < nwin; w++) {
		const struct vcdiff_win *wi = vcdiff_patch_win(L->patch, w);
		const struct vcdiff_op *ops;
		size_t nops;

		/* The next window's source segment, decoded on other cores
		 * while this one is checked (its parent's index is final). */
		if (w + 1 < nwin) {
			const struct vcdiff_win *nx = vcdiff_patch_win(L->patch,
								       w + 1);
			if (nx->win_ind & VCDIFF_WIN_SOURCE)
				pf_submit(c, L->j - 1, nx->cpy_off,
					  nx->cpy_len < ((uint64_t)32 << 20) ?
					  nx->cpy_len : (uint64_t)32 << 20);
		}
		rc = vcdiff_dec_ops(d, L->patch, w, &ops, &nops);
		if (rc) {
			damage(L, "%s: window %zu: %s", L->data.label, w,
			       rc == -EBADMSG ? vcdiff_dec_reason(d) :
			       strerror(-rc));
			goto out;
		}
		for (size_t k = 0; k < nops && !rc; k++) {
			const struct vcdiff_op *op = &ops[k];
			switch (op->kind) {
			case VCDIFF_OP_ADD:
				rc = xbuild_file(b, op->len, fid, op->addr);
				break;
			case VCDIFF_OP_RUN:
				rc = xbuild_fill(b, op->len, op->byte);
				break;
			case VCDIFF_OP_COPY_SRC:
				rc = xbuild_slice(b, P->x, op->addr, op->len);
				if (rc == -EBADMSG) {
					damage(L, "%s: window %zu copies from "
					       "beyond the end of %s (%" PRIu64
					       " bytes): is %s in the right "
					       "order?", L->data.label, w,
					       P->name, P->size,
					       STORE_LAYERS_FILE);
					goto out;
				}
				break;
			case VCDIFF_OP_COPY_TGT:
				rc = xbuild_copy_self(b, op->addr, op->len,
					SELF_COPY_MAX_EXT(op->len));
				if (rc == -E2BIG)
					rc = materialise(c, L, b, op, scratch);
				break;
			default:
				rc = -EBADMSG;
			}
		}
		if (rc)
			goto out;
		if (xbuild_size(b) != wi->tgt_off + wi->tgt_len) {
			damage(L, "%s: window %zu: decoded %" PRIu64 " bytes "
			       "instead of %" PRIu64, L->data.label, w,
			       xbuild_size(b) - wi->tgt_off,
			       (uint64_t)wi->tgt_len);
			rc = -EBADMSG;
			goto out;
		}
		rc = resolve(c, xbuild_view(b), wi->tgt_off, win, wi->tgt_len);
		if (rc) {
			damage(L, "%s: window %zu: cannot read what it builds "
			       "on (%s)", L->data.label, w, strerror(-rc));
			goto out;
		}
		if ((wi->win_ind & VCDIFF_WIN_ADLER32) &&
		    vcdiff_adler32(1, win, wi->tgt_len) != wi->adler32) {
			damage(L, "%s: window %zu: checksum mismatch: the patch "
			       "does not apply to %s (damaged, or %s is in the "
			       "wrong order)", L->data.label, w, P->name,
			       STORE_LAYERS_FILE);
			rc = -EBADMSG;
			goto out;
		}
		rc = compact_window(c, L, b, wi->tgt_off, win);
		if (rc)
			goto out;
		if ((w & 15) == 0)
			progress(c, L->name, "indexing", wi->tgt_off, L->size);
	}
	rc = xbuild_finish(b, &L->x);
	b = NULL;
out:
	if (rc && !L->damage[0])
		damage(L, "%s: cannot index: %s", L->data.label, strerror(-rc));
	xbuild_free(b);
	vcdiff_dec_free(d);
	free(win);
	free(scratch);
	return rc;
}

/* The aux file of an index loaded from disk. */
static int aux_reopen(struct chain *c, struct layer *L)
{
	char name[300];
	struct stat st;
	int fd;

	derived_name(name, sizeof(name), L, "aux");
	fd = openat(store_subdir(c->s, "aux"), name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	sfile_raw(&L->aux, fd, (uint64_t)st.st_size, name);
	L->aux.own_fd = 1;
	snprintf(L->aux.label, sizeof(L->aux.label), "%s/aux/%s",
		 STORE_META_DIR, name);
	return sums_get(c, L, &L->aux, "aux.sum");
}

/*
 * xdelta3's application header is "tgt/tgtcomp[/src/srccomp]"; a non-empty
 * comp field means xdelta3 ran that file through an external compressor
 * (gzip, xz, ...) and the patch is against the decompressed bytes.
 */
static int external_compression(const struct vcdiff_patch *p)
{
	size_t len, field = 0;
	const uint8_t *h = vcdiff_patch_appheader(p, &len);

	for (size_t i = 0; h && i < len; i++) {
		if (h[i] == '/')
			field++;
		else if (field == 1 || field == 3)
			return 1;
	}
	return 0;
}

static int open_patch(struct chain *c, struct layer *L, struct layer *P,
		      char *err, size_t errlen)
{
	const struct store_layer *sl = L->sl;
	const char *why = "";
	char name[300];
	int rc;

	L->stamp = file_stamp(P->stamp, sl);
	rc = vcdiff_patch_open(&L->patch, sl->fd, &why);
	if (rc == -EMEDIUMTYPE) {
		msg_say(err, errlen, "%s/%s: not a VCDIFF patch (no VCDIFF magic); "
		    "every layer but the last line of %s must be a patch made "
		    "by xdelta3 -e: restore it or remove its line",
		    store_dir(c->s), sl->path, STORE_LAYERS_FILE);
		return -EINVAL;
	}
	if (rc) {
		damage(L, "%s: damaged patch: %s", sl->path,
		       rc == -EBADMSG ? why : strerror(-rc));
		return 0;
	}
	L->size = vcdiff_patch_target_size(L->patch);
	sfile_raw(&L->data, sl->fd, (uint64_t)sl->st.st_size, sl->path);
	if (external_compression(L->patch)) {
		damage(L, "%s: made by xdelta3 from externally compressed "
		       "files (its application header names a compressor): "
		       "its COPYs refer to decompressed bytes snapfs does not "
		       "have; re-encode it from the uncompressed states",
		       sl->path);
		return 0;
	}
	if (P->damage[0]) {
		damage(L, "built on %s, which is damaged", P->name);
		return 0;
	}
	int sec = vcdiff_patch_secondary(L->patch);
	if (sec != VCDIFF_SEC_NONE) {
		struct prog_ctx pc = { c, L->name, "converting patch to plain "
				       "VCDIFF (first mount only)" };
		derived_name(name, sizeof(name), L, "vcdiff");
		int fd = derived_open(c, "plain", name, sec == VCDIFF_SEC_LZMA ?
				      make_plain : make_plain_xdelta3, sl->fd,
				      &pc, &why);
		if (fd < 0) {
			damage(L, "%s: cannot convert to plain VCDIFF: %s",
			       sl->path, fd == -EBADMSG || fd == -ENOTSUP ?
			       why : strerror(-fd));
			return 0;
		}
		vcdiff_patch_free(L->patch);
		L->patch = NULL;
		struct stat st;
		if (fstat(fd, &st) < 0) {
			close(fd);
			damage(L, "%s: %s", name, strerror(errno));
			return 0;
		}
		sfile_raw(&L->data, fd, (uint64_t)st.st_size, name);
		L->data.own_fd = 1;
		/* Name the user's file first: that is what to restore. */
		snprintf(L->data.label, sizeof(L->data.label), "%.100s "
			 "(converted copy %s/plain/%.200s)", sl->path,
			 STORE_META_DIR, name);
		rc = vcdiff_patch_open(&L->patch, fd, &why);
		if (rc) {
			damage(L, "%s: converted patch unreadable: %s",
			       L->data.label, why);
			return 0;
		}
	}
	rc = sums_get(c, L, &L->data, "data.sum");
	if (rc) {
		damage(L, "%s: cannot read: %s", L->data.label, strerror(-rc));
		return 0;
	}
	derived_name(name, sizeof(name), L, "idx");
	int ifd = store_subdir(c->s, "index");
	rc = xindex_load(&L->x, ifd, name, L->stamp, 2 * L->j + 1);
	if (rc == 0) {
		if (xindex_size(L->x) != L->size) {
			xindex_free(L->x);
			L->x = NULL;
		} else {
			rc = aux_reopen(c, L);
			if (rc)
				damage(L, "%s: aux file: %s", L->name,
				       strerror(-rc));
			return 0;
		}
	}
	if (build_index(c, L, P))
		return 0;	/* damage recorded */
	if (L->aux.fd >= 0 && L->aux.size) {
		if (fsync(L->aux.fd) < 0 ||
		    sums_get(c, L, &L->aux, "aux.sum") < 0) {
			damage(L, "%s: cannot finish aux file", L->name);
			return 0;
		}
	}
	rc = xindex_save(L->x, ifd, name, L->stamp);
	if (rc)
		logf_(c, CHAIN_LOG_WARN, "%s: cannot save index under %s/index: "
		      "%s (it will be rebuilt at the next mount)", L->name,
		      STORE_META_DIR, strerror(-rc));
	return 0;
}

static void layer_free(struct layer *L)
{
	if (!L)
		return;
	xindex_free(L->x);
	vcdiff_patch_free(L->patch);
	sfile_close(&L->data);
	sfile_close(&L->aux);
	free(L);
}

/* Opens layer j of the store; P is its parent (NULL for the base). */
static int layer_open(struct chain *c, size_t j, char *err, size_t errlen)
{
	struct layer *L = calloc(1, sizeof(*L));
	int rc;

	if (!L)
		return -ENOMEM;
	L->j = (unsigned)j;
	L->sl = store_layer(c->s, j);
	L->name = L->sl->name;
	L->stored = (uint64_t)L->sl->st.st_blocks * 512;
	L->mtime = L->sl->st.st_mtim;
	L->data.fd = L->aux.fd = -1;
	c->layers[j] = L;	/* readable by its own build, unpublished */
	if (j == 0)
		rc = open_base(c, L, err, errlen);
	else
		rc = open_patch(c, L, c->layers[j - 1], err, errlen);
	if (rc) {
		c->layers[j] = NULL;
		layer_free(L);
		return rc;
	}
	if (L->damage[0])
		logf_(c, CHAIN_LOG_ERR, "%s: %s; reads of it fail with EIO",
		      L->name, L->damage);
	/* The store may move its layer array (store_append): keep only
	 * what stays put (the name and fds). */
	L->sl = NULL;
	atomic_store(&c->n, j + 1);
	return 0;
}

int chain_append(struct chain *c, char *err, size_t errlen)
{
	size_t j = chain_count(c);

	if (j + 1 != store_count(c->s)) {
		msg_say(err, errlen, "internal: store has %zu layers, chain %zu",
		    store_count(c->s), j);
		return -EINVAL;
	}
	return layer_open(c, j, err, errlen);
}

/* Decodes into the cache the zstd frames [src, src_end) of f needs. Raw
 * files are read from the OS page cache and need no readahead of ours. */
static void prefetch_file(struct chain *c, unsigned fid, struct sfile *f,
			  uint64_t src, uint64_t src_end)
{
	if (f->kind != SF_ZSTD)
		return;
	while (src < src_end) {
		struct bcache_blk blk;
		size_t k = zframe_find(f->z, src);

		if (k >= zframe_count(f->z))
			return;
		const struct zframe_entry *fe = zframe_frame(f->z, k);
		int rc = bcache_get(c->cache, fid, k, fe->raw_len, &blk);
		if (rc < 0)
			return;
		if (rc == BCACHE_MISS) {
			struct zframe_dctx *dc = dctx_get(c);
			ssize_t r = dc ? zframe_read_frame(f->z, dc, k, blk.data,
							   fe->raw_len) : -ENOMEM;
			if (dc)
				dctx_put(c, dc);
			if (r != (ssize_t)fe->raw_len) {
				/* The reader will hit it and report. */
				bcache_abandon(c->cache, &blk);
				return;
			}
			bcache_publish(c->cache, &blk, fe->raw_len);
			atomic_fetch_add(&c->pf_frames, 1);
		}
		bcache_put(c->cache, &blk);
		src = fe->raw_off + fe->raw_len;
	}
}

/* Decodes into the cache what [off, off+len) of layer i reads. */
static void prefetch(struct chain *c, const struct pf_job *j)
{
	struct layer *L = c->layers[j->layer];
	size_t n, i;
	const struct xext *e;
	uint64_t off = j->off, end;

	if (L->damage[0] || off >= L->size)
		return;
	end = j->len > L->size - off ? L->size : off + j->len;
	e = xindex_ext(L->x, &n);
	for (i = xindex_find(L->x, off); i < n && e[i].off < end; i++) {
		if (xext_is_fill(&e[i]))
			continue;
		unsigned fid = xext_fid(&e[i]);
		uint64_t a = e[i].off > off ? e[i].off : off;
		uint64_t b = e[i + 1].off < end ? e[i + 1].off : end;
		uint64_t src = xext_src(&e[i]) + (a - e[i].off);
		prefetch_file(c, fid, fid_file(c, fid), src, src + (b - a));
	}
}

static void *pf_worker(void *arg)
{
	struct chain *c = arg;
	struct pf_job j;

	pthread_mutex_lock(&c->pf_lock);
	for (;;) {
		while (!c->pf_count && !c->pf_stop)
			pthread_cond_wait(&c->pf_cond, &c->pf_lock);
		if (c->pf_stop)
			break;
		j = c->pf_q[c->pf_head];
		c->pf_head = (c->pf_head + 1) % PF_QUEUE;
		c->pf_count--;
		pthread_mutex_unlock(&c->pf_lock);
		prefetch(c, &j);
		pthread_mutex_lock(&c->pf_lock);
	}
	pthread_mutex_unlock(&c->pf_lock);
	return NULL;
}

/* Queues readahead in chunks, so several workers share one window. */
static void pf_submit(struct chain *c, size_t layer, uint64_t off,
		      uint64_t len)
{
	const uint64_t chunk = (uint64_t)1 << 20;

	if (!c->pf_nthreads)
		return;
	pthread_mutex_lock(&c->pf_lock);
	for (uint64_t o = off; o < off + len; o += chunk) {
		if (c->pf_count == PF_QUEUE) {
			atomic_fetch_add(&c->pf_dropped, 1);
			break;
		}
		struct pf_job *j = &c->pf_q[(c->pf_head + c->pf_count) % PF_QUEUE];
		j->layer = layer;
		j->off = o;
		j->len = chunk;
		c->pf_count++;
		atomic_fetch_add(&c->pf_jobs, 1);
	}
	pthread_cond_broadcast(&c->pf_cond);
	pthread_mutex_unlock(&c->pf_lock);
}

static void pf_stop(struct chain *c)
{
	pthread_mutex_lock(&c->pf_lock);
	c->pf_stop = 1;
	pthread_cond_broadcast(&c->pf_cond);
	pthread_mutex_unlock(&c->pf_lock);
	for (size_t i = 0; i < c->pf_nthreads; i++)
		pthread_join(c->pf_threads[i], NULL);
	free(c->pf_threads);
	c->pf_threads = NULL;
	c->pf_nthreads = 0;
}

int chain_start(struct chain *c)
{
	long n = c->o.prefetch_threads;

	if (n < 0 || c->pf_nthreads)
		return 0;
	pthread_mutex_lock(&c->pf_lock);
	c->pf_stop = 0;		/* after an earlier pf_stop */
	c->pf_count = 0;
	pthread_mutex_unlock(&c->pf_lock);
	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	c->pf_threads = calloc((size_t)n, sizeof(*c->pf_threads));
	if (!c->pf_threads)
		return -ENOMEM;
	for (long i = 0; i < n; i++) {
		if (pthread_create(&c->pf_threads[i], NULL, pf_worker, c))
			break;
		c->pf_nthreads++;
	}
	return 0;
}

int chain_stream_new(struct chain_stream **out)
{
	struct chain_stream *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	st->layer = SIZE_MAX;
	*out = st;
	return 0;
}

void chain_stream_free(struct chain_stream *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* Notes a read; submits readahead if the reader looks sequential. */
static void stream_note(struct chain *c, struct chain_stream *st, size_t i,
			uint64_t off, size_t len)
{
	uint64_t from = 0, want = 0;

	pthread_mutex_lock(&st->lock);
	int seq = st->layer == i && off + PF_SLACK >= st->next &&
		  off <= st->next + PF_SLACK;
	st->run = seq ? st->run + 1 : 0;
	if (!seq || st->pf_end < off)
		st->pf_end = off + len;
	if (off + len > st->next || !seq)
		st->next = off + len;
	st->layer = i;
	if (st->run >= PF_MIN_RUN && st->pf_end < off + len + PF_WINDOW) {
		from = st->pf_end > off + len ? st->pf_end : off + len;
		want = off + len + PF_WINDOW - from;
		st->pf_end = from + want;
	}
	pthread_mutex_unlock(&st->lock);
	if (want)
		pf_submit(c, i, from, want);
}

int chain_open(struct chain **out, struct store *s,
	       const struct chain_opts *o, char *err, size_t errlen)
{
	struct chain *c = calloc(1, sizeof(*c));
	struct bcache_opts bo = { 0 };
	int rc;

	if (!c)
		return -ENOMEM;
	c->s = s;
	if (o)
		c->o = *o;
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_mutex_init(&c->pf_lock, NULL);
	pthread_cond_init(&c->pf_cond, NULL);
	c->layers = calloc(STORE_MAX_LAYERS, sizeof(*c->layers));
	bo.budget = c->o.cache_size;
	rc = c->layers ? bcache_new(&c->cache, &bo) : -ENOMEM;
	if (rc) {
		msg_say(err, errlen, "out of memory");
		goto fail;
	}
	/* Readahead helps indexing too; the threads end before we return,
	 * since the caller may fork (fuse_daemonize) and call chain_start. */
	chain_start(c);
	for (size_t j = 0; j < store_count(s); j++) {
		rc = layer_open(c, j, err, errlen);
		if (rc)
			goto fail;
	}
	pf_stop(c);
	*out = c;
	return 0;
fail:
	chain_free(c);
	return rc;
}

void chain_free(struct chain *c)
{
	if (!c)
		return;
	pf_stop(c);
	for (size_t j = 0; j < STORE_MAX_LAYERS && c->layers; j++) {
		if (!c->layers[j])
			break;
		layer_free(c->layers[j]);
	}
	free(c->layers);
	bcache_free(c->cache);
	for (size_t i = 0; i < c->npool; i++)
		zframe_dctx_free(c->pool[i]);
	free(c->pool);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->pf_lock);
	pthread_cond_destroy(&c->pf_cond);
	free(c);
}

size_t chain_count(const struct chain *c)
{
	return atomic_load(&((struct chain *)c)->n);
}

int chain_info(const struct chain *c, size_t i, struct chain_info *inf)
{
	const struct layer *L;

	if (i >= chain_count(c))
		return -ENOENT;
	L = c->layers[i];
	inf->name = L->name;
	inf->size = L->size;
	inf->stored = L->stored;
	inf->mtime = L->mtime;
	inf->damage = L->damage[0] ? L->damage : NULL;
	return 0;
}

ssize_t chain_lookup(const struct chain *c, const char *name)
{
	size_t n = chain_count(c);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(c->layers[i]->name, name))
			return (ssize_t)i;
	return -ENOENT;
}

int chain_check(struct chain *c, size_t i)
{
	struct layer *L;

	if (i >= chain_count(c))
		return -ENOENT;
	L = c->layers[i];
	if (!L->damage[0])
		return 0;
	atomic_fetch_add(&c->read_errors, 1);
	if (atomic_fetch_add(&L->nlogged, 1) < LOG_PER_LAYER)
		logf_(c, CHAIN_LOG_ERR, "%s: read refused: %s", L->name,
		      L->damage);
	return -EIO;
}

ssize_t chain_read(struct chain *c, size_t i, uint64_t off, void *buf,
		   size_t len)
{
	return chain_read_stream(c, i, off, buf, len, NULL);
}

ssize_t chain_read_stream(struct chain *c, size_t i, uint64_t off, void *buf,
			  size_t len, struct chain_stream *st)
{
	struct layer *L;
	int rc;

	rc = chain_check(c, i);
	if (rc)
		return rc;
	L = c->layers[i];
	atomic_fetch_add(&c->reads, 1);
	if (off >= L->size)
		return 0;
	if (len > L->size - off)
		len = (size_t)(L->size - off);
	if (st)
		stream_note(c, st, i, off, len);
	rc = resolve(c, L->x, off, buf, len);
	if (rc)
		return rc;
	atomic_fetch_add(&c->read_bytes, len);
	return (ssize_t)len;
}

int chain_stats(struct chain *c, char *buf, size_t cap)
{
	struct bcache_stats st;
	size_t n = chain_count(c), ext = 0;

	bcache_stats(c->cache, &st);
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		if (c->layers[i]->x)
			xindex_ext(c->layers[i]->x, &k);
		ext += k;
	}
	snprintf(buf, cap,
		 "layers %zu\nextents %zu\nreads %" PRIu64 "\nread_bytes %"
		 PRIu64 "\nread_errors %" PRIu64 "\ncache_hits %" PRIu64
		 "\ncache_misses %" PRIu64 "\ncache_evictions %" PRIu64
		 "\ncache_waits %" PRIu64 "\ncache_bytes %" PRIu64
		 "\ncache_budget %" PRIu64 "\ncache_blocks %" PRIu64
		 "\nreadahead_jobs %" PRIu64 "\nreadahead_dropped %" PRIu64
		 "\nreadahead_frames %" PRIu64 "\n",
		 n, ext, (uint64_t)atomic_load(&c->reads),
		 (uint64_t)atomic_load(&c->read_bytes),
		 (uint64_t)atomic_load(&c->read_errors), st.hits, st.misses,
		 st.evictions, st.waits, st.bytes_used, st.budget, st.blocks,
		 (uint64_t)atomic_load(&c->pf_jobs),
		 (uint64_t)atomic_load(&c->pf_dropped),
		 (uint64_t)atomic_load(&c->pf_frames));
	return 0;
}
