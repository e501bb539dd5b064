/* SPDX-License-Identifier: MIT */
/*
 * chain_int: what the files of the chain share and nothing else sees: the
 * chain, its layers and their stored files (struct chain, struct layer,
 * struct sfile), the readahead queue, and the calls one part makes into
 * another. The chain is split by concern, one prefix per file:
 *
 *   fs/chain.c      chain_*, layer_*  public API, layer life cycle, messages
 *   fs/sfile.c      sfile_*           reading stored files (checksums, raw
 *                                     and zstd reads, resolve)
 *   fs/derive.c     derive_*          opening layers: derived files and
 *                                     conversions (seekable zstd, plain
 *                                     VCDIFF, raw base)
 *   fs/ibuild.c     ibuild_*          building a layer's index from its
 *                                     parent's and its patch
 *   fs/readahead.c  ra_*              readahead threads and streams
 *
 * The offset mapping and file ids (2j data, 2j+1 aux) are explained once,
 * at the top of fs/chain.c. Not here: anything the FUSE side or the tests
 * may use (that is fs/chain.h). Only fs/chain.c, fs/sfile.c, fs/derive.c,
 * fs/ibuild.c and fs/readahead.c may include this header (STYLE.md 2.1
 * rule 6).
 */
#ifndef SNAPFS_FS_CHAIN_INT_H
#define SNAPFS_FS_CHAIN_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "fs/chain.h"
#include "fs/store.h"

struct bcache;
struct vcdiff_patch;
struct xindex;
struct zframe;
struct zframe_dctx;

/* Raw stored files are checked in blocks of this size (fs/sfile.c). */
#define SUM_BLOCK ((uint64_t)4 << 10)
/* Damage messages logged per layer before it goes quiet. */
#define LOG_PER_LAYER 5

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

/* File id fid's layer and stored file (see the top of fs/chain.c). */
static inline struct layer *chain_fid_layer(struct chain *c, unsigned fid)
{
	return c->layers[fid / 2];
}

static inline struct sfile *chain_fid_file(struct chain *c, unsigned fid)
{
	struct layer *L = chain_fid_layer(c, fid);
	return (fid & 1) ? &L->aux : &L->data;
}

/* --- fs/chain.c: messages, stamps, names --- */

/* Formats a message and hands it to opts.log (if any). */
void chain_logf(struct chain *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Records why L is unreadable; the first reason sticks. */
void layer_damage(struct layer *L, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Reports first-mount progress to opts.progress (if any). */
void chain_progress(struct chain *c, const char *layer, const char *what,
		    uint64_t done, uint64_t total);
/* Identity of layer file sl chained onto its parent's stamp (0 for the
 * base): names the layer's derived files. */
uint64_t chain_file_stamp(uint64_t parent, const struct store_layer *sl);
/* "<name>.<stamp>.<ext>" in a .snapfs subdirectory. */
void layer_derived_name(char *buf, size_t cap, const struct layer *L,
			const char *ext);

/* --- fs/sfile.c: reading stored files --- */

/* Makes f a raw stored file on fd (not owned unless f->own_fd is set). */
int sfile_raw(struct sfile *f, int fd, uint64_t size, const char *label);
/* Releases f and leaves it empty (fd -1). */
void sfile_close(struct sfile *f);
/* Loads f's block checksums saved under .snapfs/sums (named after L and
 * ext), or reads the whole file to take and save them. 0 or -errno. */
int sfile_sums_get(struct chain *c, struct layer *L, struct sfile *f,
		   const char *ext);
/* A zstd decoding context from the chain's pool (NULL: out of memory);
 * give it back with sfile_dctx_put. */
struct zframe_dctx *sfile_dctx_get(struct chain *c);
void sfile_dctx_put(struct chain *c, struct zframe_dctx *dc);
/* Reads [off, off+len) of the layer described by x (len within size).
 * 0, or -EIO for damaged stored bytes (logged), or -errno. */
int sfile_resolve(struct chain *c, const struct xindex *x, uint64_t off,
		  uint8_t *dst, size_t len);

/* --- fs/derive.c: opening a layer's stored files --- */

/* Open the base (layer 0) / the patch L on top of P: data file, stamp,
 * size and index. Return 0 (L may be damaged: see L->damage) or -errno
 * with a message in err when the store cannot be mounted at all. */
int derive_open_base(struct chain *c, struct layer *L, char *err,
		     size_t errlen);
int derive_open_patch(struct chain *c, struct layer *L, struct layer *P,
		      char *err, size_t errlen);

/* --- fs/ibuild.c: index building --- */

/* Builds L's index from its parent P's and its plain patch, checking each
 * window's adler32. 0, or -errno with the damage recorded in L. */
int ibuild_index(struct chain *c, struct layer *L, struct layer *P);

/* --- fs/readahead.c: readahead --- */

/* Queues decoding of [off, off+len) of layer `layer` (no-op without
 * threads; dropped when the queue is full). */
void ra_submit(struct chain *c, size_t layer, uint64_t off, uint64_t len);
/* Stops and joins the readahead threads (chain_start restarts them). */
void ra_stop(struct chain *c);
/* Notes a read of st; submits readahead if the reader looks sequential. */
void ra_note(struct chain *c, struct chain_stream *st, size_t i,
	     uint64_t off, size_t len);

#endif
