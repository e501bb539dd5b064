/* SPDX-License-Identifier: MIT */
/*
 * chain_int: what the files of the chain share and nothing else sees: the
 * chain, its layers and their stored files (struct chain, struct chain_layer,
 * struct sfile), the readahead queue, and the calls one part makes into
 * another. The chain is split by concern, one prefix per file:
 *
 *   fs/chain.c      chain_*, layer_*  public API, layer life cycle, messages
 *   fs/sfile.c      sfile_*           reading stored files (checksums, raw
 *                                     and zstd reads, resolve)
 *   fs/sfile_sums.c sfile_sums_*      their block checksums under
 *                                     .snapfs/sums
 *   fs/derive.c     derive_*          opening layers: derived files and
 *                                     conversions (seekable zstd, plain
 *                                     VCDIFF, raw base)
 *   fs/ibuild.c     ibuild_*          building a layer's index from its
 *                                     parent's and its patch
 *   fs/readahead.c  ra_*              readahead threads and streams
 *   fs/rvec.c       (chain_readv)     reads as pieces for zero-copy
 *                                     replies
 *   fs/vcopy.c      vcopy_*           decoded copies of windowed
 *                                     patches' lzma sections
 *   fs/fcopy.c      fcopy_*           full copies of whole snapshots
 *                                     (-o materialize)
 *   fs/dlru.c       dlru_*            those copies within a byte bound
 *
 *   fs/chmeta.c     (chain_set_*...)  descriptions, current, rename,
 *                                     digests, deep checks, holes
 *   fs/rebase.c     (chain_remove,    removing a snapshot: rebasing its
 *                    chain_compact)   children, remapping descendants;
 *                                     storing one again in snapfs's form
 *
 * The offset mapping and file ids (2*id data, 2*id+1 aux) are explained
 * once, at the top of fs/chain.c. Not here: anything the FUSE side or
 * the tests may use (that is fs/chain.h). Only the files listed above
 * may include this header (STYLE.md 2.1 rule 6; make layering checks).
 */
#ifndef SNAPFS_FS_CHAIN_INT_H
#define SNAPFS_FS_CHAIN_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "fs/chain.h"
#include "fs/store.h"

struct bcache;
struct bcache_blk;
struct blob;
struct vcdiff_patch;
struct xindex;
struct zframe;
struct zframe_dctx;
struct sres;

/* Raw stored files are checked in blocks of this size (fs/sfile.c). */
#define SUM_BLOCK ((uint64_t)4 << 10)
/* Damage messages logged per layer before it goes quiet. */
#define LOG_PER_LAYER 5

/* SF_WINDOWED: a windowed lzma patch read natively (see fs/sfile.c). */
enum { SF_NONE, SF_RAW, SF_ZSTD, SF_WINDOWED };

struct sfile {
	struct blob *b;		/* a reference; NULL when empty */
	/* An aux file being built: its temporary under .snapfs/tmp,
	 * written and read here (no checksums yet) until ibuild wraps it in
	 * b; else -1. Owned. */
	int wfd;
	int kind;
	struct zframe *z;
	uint64_t size;
	uint64_t *sum;		/* per SUM_BLOCK; NULL: read uncached, unchecked */
	size_t nsum;
	/* One bit per SUM_BLOCK: checked against sum by this mount, so its
	 * page-cached bytes may go to a reader unread (splice). Set once,
	 * never cleared; atomic. NULL with sum. */
	atomic_uint_fast64_t *ok;
	uint64_t key;		/* block cache key: unique per opened file */
	/* SF_WINDOWED: offsets from size on are the decompressed data
	 * sections of the nv windows vwin[] (ascending), window vwin[k]'s
	 * at size + vbase[k]; vsize bytes in all. */
	uint64_t vsize;
	size_t nv;
	uint32_t *vwin;
	uint64_t *vbase;
	/* SF_WINDOWED: those vsize bytes decoded once into a raw derived
	 * file (.snapfs/plain/<id>.<stamp>.sect, checked like any raw
	 * file), read instead of decoding sections; NULL: none (a read
	 * decodes its window's section). Owned; set before readers. */
	struct sfile *vcopy;
	int derived;		/* under .snapfs/: rebuilt, not restored */
	/* Damage is the caller's to handle (a full copy, read through the
	 * index instead): read_damaged neither logs nor counts it. */
	int fallback;
	struct chain_layer *owner;	/* for messages */
	char label[360];	/* for messages */
};

/*
 * One version of a snapshot. Versions are refcounted: the chain's table
 * holds one reference while the version is current, a reader one while it
 * reads, a child one on its parent (its index points into every
 * ancestor's files). So a removed or rebased snapshot's files stay open
 * until its last reader is gone. Everything but name, desc and digest is
 * immutable once the version is published; those three are protected by
 * c->lock.
 */
struct chain_layer {
	atomic_uint ref;
	uint32_t id;			/* the snapshot's (fs/tree.h) */
	struct chain_layer *parent;	/* a reference; NULL for a base */
	unsigned depth;			/* 0 for a base or a full layer */
	int full;			/* a full state file with a parent */
	int form;			/* CHAIN_FORM_*: how its file is read */
	/* Itself and its ancestors, sorted by id: how a file id of its
	 * index finds its stored file (layer_fid_file). */
	struct chain_layer **anc;
	size_t nanc;
	char name[256];			/* protected by c->lock */
	char desc[1024];		/* protected by c->lock */
	char digest[48];		/* protected by c->lock; "" unknown */
	char path[256];			/* its layer file when opened */
	struct blob *blob;		/* the layer file: a reference */
	struct stat st;			/* blob_stat() at open time */
	int64_t created;
	uint64_t size;
	uint64_t stored;
	uint64_t fstamp;		/* its file: per-file derived data */
	uint64_t stamp;			/* its file and ancestry: its index */
	uint64_t aux_stamp;		/* names its aux file */
	struct xindex *x;
	struct vcdiff_patch *patch;	/* plain patch; NULL for the base */
	struct sfile data;		/* file id 2*id */
	struct sfile aux;		/* file id 2*id + 1 */
	/* Set by chain_prepare only: ibuild_index hands it each checked
	 * window's bytes in target order. */
	void (*on_bytes)(void *ctx, const void *buf, size_t len);
	void *on_bytes_ctx;
	/* Set by chain_prepare only: the index was built while the patch
	 * was encoded; adopted instead of building one (ibuild_adopt). */
	struct chain_ibuild *built;
	char damage[384];		/* "" if readable */
	atomic_uint nlogged;
	/* A full copy of this version's bytes under .snapfs/full
	 * (fs/fcopy.c): set once, then read instead of the index until
	 * a read finds it damaged (fcopy_bad). Owned; freed with L. */
	_Atomic(struct sfile *) fcopy;
	atomic_int fcopy_bad;
	atomic_int fcopy_queued;		/* a copy is wanted or being made */
};

/* Readahead: decode the frames of [off, off+len) of L (a reference). */
struct pf_job {
	struct chain_layer *L;
	uint64_t off, len;
	bool once;	/* read once (bcache_get_ahead), see ra_submit */
};

#define PF_QUEUE 64
/* Snapshots waiting for a full copy (more are not queued). */
#define FC_QUEUE 8

struct chain {
	struct store *s;
	struct chain_opts o;
	/* When it opened (CLOCK_REALTIME_COARSE, as file times are): a
	 * derived copy used since has an mtime at or after it (fs/dlru.c). */
	struct timespec opened;
	struct bcache *cache;
	/* Lock order: lock, then pool_lock or pf_lock; none is held while
	 * reading stored files. pool_lock, then the cache's (lending). */
	pthread_rwlock_t lock;		/* protects cur, ncur, names, descs */
	/* The tree's current snapshot, copied at each change: readers
	 * (chain_current) never touch the tree, which a change frees. */
	atomic_uint current;
	struct chain_layer **cur;	/* current versions, parents first */
	size_t ncur, capcur;
	atomic_uint_fast64_t next_key;	/* for sfile.key */
	pthread_mutex_t pool_lock;	/* protects pool*, vpool*, rpool*, lent */
	size_t lent;			/* cache budget lent (chain_cache_lend) */
	/* chain_hint_put, protected by pool_lock; its bytes are in lent. */
	void *hint;
	void (*hint_free)(void *);
	size_t hint_bytes;
	char hint_tag[CHAIN_HINT_TAG];
	struct zframe_dctx **pool;
	size_t npool, pool_cap;
	struct vcdiff_dec **vpool;	/* for windowed patches' sections */
	size_t nvpool, vpool_cap;
	struct sres **rpool;		/* sfile_resolve's (fs/sresolve.c) */
	size_t nrpool, rpool_cap;
	atomic_uint_fast64_t reads, read_bytes, read_errors;
	atomic_uint_fast64_t pf_jobs, pf_dropped, pf_frames;
	/* chain_readv's pieces by kind, in bytes (fs/rvec.c): spliced file
	 * ranges, pinned cache blocks, zero runs, copied into scratch. */
	atomic_uint_fast64_t rv_fd, rv_pin, rv_zero, rv_copy;
	atomic_uint_fast64_t pf_checked;	/* blocks checked ahead */
	/* Windowed patches' sections decoded for reads (no .sect copy). */
	atomic_uint_fast64_t win_decoded;
	atomic_int vc_said;	/* a layer without one was logged */
	/* Set once a reader may take file ranges (chain_readv allow_fd):
	 * only then is checking raw blocks ahead worth a core. */
	atomic_int fd_replies;
	/* Lock order: pf_lock, then (inside workers' reads) the cache's. */
	pthread_mutex_t pf_lock;	/* protects pf_q*, pf_stop */
	pthread_cond_t pf_cond;
	struct pf_job pf_q[PF_QUEUE];
	size_t pf_head, pf_count;
	int pf_stop;
	pthread_t *pf_threads;
	size_t pf_nthreads;
	/* Full copies (fs/fcopy.c): versions waiting for one, made by
	 * one thread started at the first request. fc_lock guards the
	 * queue, fc_stop and fc_running; taken after no other lock. */
	pthread_mutex_t fc_lock;
	pthread_cond_t fc_cond;
	struct chain_layer *fc_q[FC_QUEUE];
	size_t fc_n;
	atomic_int fc_stop;
	int fc_running;
	pthread_t fc_thread;
	atomic_uint_fast64_t fc_made, fc_read, fc_dropped;
};

/* The stored file a file id of L's index names (see the top of
 * fs/chain.c), or NULL if the id is not L's or an ancestor's. */
static inline struct sfile *layer_fid_file(const struct chain_layer *L,
					   unsigned fid)
{
	uint32_t id = fid >> 1;
	size_t lo = 0, hi = L->nanc;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (L->anc[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == L->nanc || L->anc[lo]->id != id)
		return NULL;
	return (fid & 1) ? &L->anc[lo]->aux : &L->anc[lo]->data;
}

/* --- fs/chain.c: messages, stamps, names --- */

/* Formats a message and hands it to opts.log (if any). */
void chain_logf(struct chain *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Records why L is unreadable; the first reason sticks. */
void layer_damage(struct chain_layer *L, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Reports first-mount progress to opts.progress (if any). */
void chain_progress(struct chain *c, const char *layer, const char *what,
		    uint64_t done, uint64_t total);
/* Stamps: of L's file alone (id, inode, size, mtime), and of that chained
 * onto its parent's stamp (0 for a base). Names derived files. */
uint64_t layer_file_stamp(const struct chain_layer *L);
uint64_t layer_chain_stamp(const struct chain_layer *L);
/* "<id>.<stamp>.<ext>" in a .snapfs subdirectory. */
void layer_derived_name(char *buf, size_t cap, const struct chain_layer *L,
			uint64_t stamp, const char *ext);
/* Writes a derived file atomically in .snapfs/<sub> (store_replace),
 * reporting ENOSPC and the like in the log, naming the directory. */
int chain_save_derived(struct chain *c, const char *sub, const char *name,
		       int (*fill)(int fd, void *arg), void *arg);
void layer_ref(struct chain_layer *L);
void layer_put(struct chain *c, struct chain_layer *L);
/* A new, unpublished version of snapshot id on layer file b (takes the
 * caller's reference, put on failure too), child of P (a reference is
 * taken; NULL for a base), shown under path's name. 0 or -ENOMEM. */
int layer_new(struct chain_layer **out, uint32_t id, struct chain_layer *P,
	      struct blob *b, const char *path);
/* Opens L's stored files and index (loaded, or built and saved). Damage
 * is recorded in L, not returned; -errno with a message for what stops a
 * mount. */
int layer_index(struct chain *c, struct chain_layer *L, char *err,
		size_t errlen);
/* The current version of id, or NULL (c->lock held). */
struct chain_layer *chain_find_cur(const struct chain *c, uint32_t id);
/* fs/chmeta.c: after the store's tree changed (a commit, a reload):
 * copies what readers take from it without a lock. */
void chain_note_tree(struct chain *c);
/* fs/chain.c: opens the version of tree node id from the store on top of
 * P (its parent's version; NULL for a base), indexed, unpublished. */
int layer_open_on(struct chain *c, uint32_t id, struct chain_layer *P,
		  struct chain_layer **out, char *err, size_t errlen);
/* Deletes derived files no current version names. */
void chain_gc(struct chain *c);

/* --- fs/sfile.c: reading stored files --- */

/* Makes f a raw stored file of L read through b (takes the caller's
 * reference; NULL for an aux file being built, see wfd), with a fresh
 * cache key. Puts the blob f had, if any. Stored layer files and derived
 * copies alike: one read path. Returns 0. */
int sfile_raw(struct chain *c, struct chain_layer *L, struct sfile *f,
	      struct blob *b, uint64_t size, const char *label);
/* Reads [off, off+len) of raw file f, checked against its sums. Returns
 * len or -EIO (logged, naming f) or -errno. */
ssize_t sfile_pread(struct chain *c, struct sfile *f, uint64_t off,
		    uint8_t *dst, size_t len);
/* Saves the checksums sum of the SUM_BLOCK blocks of a size-byte file as
 * .snapfs/sums/NAME (sum stays the caller's). 0 or -errno (logged). */
int sfile_sums_save(struct chain *c, const char *name, const uint64_t *sum,
		    uint64_t size);
/* Loads f's block checksums saved as .snapfs/sums/NAME; never builds
 * them. 0 or -errno (-ESTALE: missing or not f's). */
int sfile_sums_load(struct chain *c, struct sfile *f, const char *name);
/* Releases f (its blob, wfd and cached blocks) and leaves it empty. */
void sfile_close(struct chain *c, struct sfile *f);
/* Loads f's block checksums saved under .snapfs/sums (named after L,
 * stamp and ext), or reads the whole file to take and save them. 0 or
 * -errno. */
int sfile_sums_get(struct chain *c, struct chain_layer *L, struct sfile *f,
		   uint64_t stamp, const char *ext);
/* A zstd decoding context from the chain's pool (NULL: out of memory);
 * give it back with sfile_dctx_put. */
struct zframe_dctx *sfile_dctx_get(struct chain *c);
void sfile_dctx_put(struct chain *c, struct zframe_dctx *dc);
/* Frees the pooled decoding contexts (chain_close, no reader left). */
void sfile_pools_free(struct chain *c);
/*
 * Makes raw stored file f (the patch file p is open on, checksums taken)
 * an SF_WINDOWED one: ADD bytes of p's windows with a compressed data
 * section get offsets past f->size (sfile_add_src). 0 or -ENOMEM.
 */
int sfile_windowed(struct sfile *f, const struct vcdiff_patch *p);
/* The offset in f of byte addr of an ADD op of window w (addr as
 * vcdiff_dec_ops gives it): addr itself unless f is SF_WINDOWED and w's
 * data section is compressed. */
uint64_t sfile_add_src(const struct sfile *f, size_t w, uint64_t addr);
/* Decodes section k of windowed f (its window vwin[k]'s data section,
 * stored bytes checked first) into dst, which holds the section's
 * data_plain_len bytes. 0, or -EIO (logged, naming file and window) or
 * -ENOMEM. */
int sfile_win_decode(struct chain *c, struct sfile *f, size_t k,
		     uint8_t *dst);
/* Decodes into the cache the windowed sections [src, src_end) of f
 * needs (readahead; no-op for other kinds, errors left to the reader);
 * once as for ra_submit. */
void sfile_prefetch_windowed(struct chain *c, struct sfile *f, uint64_t src,
			     uint64_t src_end, bool once);
/* Logs damage of f at off (why: what is wrong) as the other reads do,
 * and returns -EIO. */
int sfile_damaged(struct chain *c, const struct sfile *f, uint64_t off,
		  const char *why);

/* --- fs/sresolve.c: a layer's range into bytes --- */

/* Reads [off, off+len) of the layer described by x (len within size),
 * whose file ids are L's (x is L's index, or one being built for L).
 * 0, or -EIO for damaged stored bytes (logged), or -errno. */
int sfile_resolve(struct chain *c, const struct chain_layer *L,
		  const struct xindex *x, uint64_t off, uint8_t *dst,
		  size_t len);
/*
 * The same over many ranges, read together: begin, add each range (its
 * bytes are in dst only once end returned 0), end. end takes the first
 * error an add returned (rc) and gives the context back. begin's NULL
 * (out of memory) is accepted by both: every piece is then read at once.
 * A context is the caller's thread's between begin and end.
 */
struct sres *sfile_resolve_begin(struct chain *c);
int sfile_resolve_add(struct chain *c, struct sres *s,
		      const struct chain_layer *L, const struct xindex *x,
		      uint64_t off, uint8_t *dst, size_t len);
int sfile_resolve_end(struct chain *c, struct sres *s, int rc);
/* Frees the pooled resolve contexts (chain_close, no reader left). */
void sfile_rpool_free(struct chain *c);

/* Marks the blocks of raw file f overlapping [off, off+len) checked
 * (every one was hashed whole and matched). */
void sfile_mark_checked(struct sfile *f, uint64_t off, uint64_t len);
/* 1 if every block of f overlapping [off, off+len) is marked checked. */
int sfile_checked(const struct sfile *f, uint64_t off, uint64_t len);
/* Pins in the cache the decompressed zstd frame of f holding off
 * (decoding it on a miss); *raw_off gets the frame's first offset. 0, or
 * -EIO (logged) or -ENOMEM. bcache_put the block when done. */
int sfile_zstd_pin(struct chain *c, struct sfile *f, uint64_t off,
		   struct bcache_blk *b, uint64_t *raw_off);
/* The same for the decompressed data section of windowed f holding
 * virtual offset voff (< f->vsize); *sect_off gets its first offset. */
int sfile_win_pin(struct chain *c, struct sfile *f, uint64_t voff,
		  struct bcache_blk *b, uint64_t *sect_off);

/* --- fs/derive.c: opening a layer's stored files --- */

/* Open a base / a patch on top of L->parent: data file, stamps, size and
 * index. Return 0 (L may be damaged: see L->damage) or -errno with a
 * message in err when the store cannot be mounted at all. */
int derive_open_base(struct chain *c, struct chain_layer *L, char *err,
		     size_t errlen);
int derive_open_patch(struct chain *c, struct chain_layer *L, char *err,
		      size_t errlen);
/* L's file stamp (layer_file_stamp), tagged if its patch is read
 * natively as windowed (SF_WINDOWED): its extents' offsets mean something
 * else than those of the converted copy an older snapfs made. */
uint64_t derive_fstamp(const struct chain_layer *L, int native);
/* Makes L->aux read b (taken), a seekable zstd aux file named label:
 * SF_ZSTD, its frames' checksums checking it. 0 or -errno (logged). */
int derive_aux_zstd(struct chain *c, struct chain_layer *L, struct blob *b,
		    const char *label);
/* Opens L's aux file named by L->aux_stamp (an index loaded or remapped
 * points into it). 0 or -errno. */
int derive_aux_reopen(struct chain *c, struct chain_layer *L);
/*
 * Opens derived file .snapfs/SUB/NAME as a blob named after it, making it
 * with make() from in (arg passed on) into a temporary file first if it
 * does not exist: a derived copy is read as the stored file it stands
 * for, through the same path. *out is the caller's. 0 or -errno (make's,
 * with *why set by it).
 */
int derive_made(struct chain *c, const char *sub, const char *name,
		int (*make)(struct blob *in, int out_fd, void *arg,
			    const char **why),
		struct blob *in, void *arg, const char **why,
		struct blob **out);
/* Saves x as the index of L (named after L->stamp) under .snapfs/index/
 * (logged on failure). 0 or -errno. */
int derive_save_xindex(struct chain *c, const struct chain_layer *L,
		       const struct xindex *x);

/* --- fs/vcopy.c: decoded sections of windowed patches --- */

/* Gives windowed patch L (opened, indexed or not) its decoded copy of
 * the data sections (f->vcopy): the one the writer's encoder kept, one
 * made earlier, or one made now, within -o max_decoded. Without one
 * (no room, a failure: logged) reads decode sections. */
void vcopy_attach(struct chain *c, struct chain_layer *L);

/* --- fs/ibuild.c: index building --- */

/*
 * Stores the raw aux file at raw_fd (all of it; borrowed) as seekable
 * zstd .snapfs/aux/<id>.<aux_stamp>.auxz and opens L->aux on it. Done
 * where derived data is bounded (-o max_decoded): on the 1 GiB QEMU
 * guest's states aux files were 0.82x the patches' bytes raw and are
 * 0.24x so, at the cost of random reads at depth (p99 of 4 KiB reads at
 * depth 100 of 256 MiB states 1.9-2.0 ms against 1.2 ms, each miss
 * decoding a frame; sequential reads as fast). 0 or -errno; then nothing
 * of it is left and the raw file stays.
 */
int ibuild_aux_store(struct chain *c, struct chain_layer *L, int raw_fd);

/* Builds L's index from its parent's and its plain patch, checking each
 * window's adler32; the aux file is made under .snapfs/tmp and moved into
 * .snapfs/aux when done. 0, or -errno with the damage recorded in L. */
int ibuild_index(struct chain *c, struct chain_layer *L);
/* Makes the index ib built from the encoder's ops L's (L opened on the
 * finished patch: sizes and windows must match), its aux file L's, moved
 * into .snapfs/aux. ib keeps nothing of it. 0, or -errno with the damage
 * recorded in L. */
int ibuild_adopt(struct chain *c, struct chain_layer *L,
		 struct chain_ibuild *ib);
/* The decoded copy of the compressed data sections (vcopy_attach) from
 * the sections the encoder compressed, vsize bytes, which the writer's
 * check proved the patch decodes to (fs/wcheck.h): moved into
 * .snapfs/plain/name, and *out (the caller's) reads it under label.
 * -ENOENT if ib has none of that size (nothing kept, a write failed),
 * or -errno; then the caller decodes. */
int ibuild_sect_adopt(struct chain *c, struct chain_ibuild *ib,
		      uint64_t vsize, const char *name, const char *label,
		      struct blob **out);

/* --- fs/readahead.c: readahead --- */

/* Queues decoding of [off, off+len) of L (no-op without threads; dropped
 * when the queue is full). Queued jobs hold a reference on L. once: the
 * blocks will be read once, soon after (a stream; cache/bcache.c's
 * "Read once, ahead"); 0 where another read of them follows later. */
void ra_submit(struct chain *c, struct chain_layer *L, uint64_t off,
	       uint64_t len, bool once);
/* Stops and joins the readahead threads (chain_start restarts them). */
void ra_stop(struct chain *c);
/* Notes a read of st; submits readahead if the reader looks sequential
 * (not for a version read from its full copy: the OS reads that ahead).
 * With opts.fcopy_max, returns 1 when this read was the last of L's
 * pages st had not read yet (a restore, a cp: st read all of L), once;
 * else 0. */
int ra_note(struct chain *c, struct chain_stream *st,
	    struct chain_layer *L, uint64_t off, size_t len);

/* --- fs/dlru.c: optional copies within a byte bound --- */

struct dlru_kind {
	const char *sub;	/* .snapfs/SUB */
	const char *suffix;	/* only names ending so; NULL: every file
				 * (anything else there is deleted too) */
	uint64_t max;		/* the bound, in bytes on disk */
	const char *option;	/* for the log: "-o materialize" */
};
/* Deletes .snapfs/SUB/NAME and its checksums .snapfs/sums/NAME.sum. */
void dlru_drop(struct chain *c, const char *sub, const char *name);
/*
 * Makes room for need more bytes of kind k, deleting the copies used
 * least recently (mtime) first; one whose mtime is at or after *spare is
 * kept (spare NULL: none is), so that a mount does not evict what it
 * attached itself. 0, or -ENOSPC (nothing deleted) when need cannot fit.
 */
int dlru_room(struct chain *c, const struct dlru_kind *k, uint64_t need,
	      const struct timespec *spare);

/* --- fs/fcopy.c: full copies (-o materialize) --- */

/* L's full copy, or NULL (none, or found damaged). */
static inline struct sfile *fcopy_of(struct chain_layer *L)
{
	struct sfile *F = atomic_load(&L->fcopy);
	return F && !atomic_load(&L->fcopy_bad) ? F : NULL;
}
/* Opens L's full copy if one was made earlier (at layer open; needs
 * opts.fcopy_max). A copy without its checksums, or of another size, is
 * stale and deleted. */
void fcopy_attach(struct chain *c, struct chain_layer *L);
/* A reader went through all of L in order: make a full copy in the
 * background if there is none (or mark the one there as used). */
void fcopy_want(struct chain *c, struct chain_layer *L);
/* Reads [off, off+len) of L from its full copy F; a damaged copy is
 * dropped (logged) and the bytes come through the index instead. 0 or
 * -errno, as sfile_resolve. */
int fcopy_read(struct chain *c, struct chain_layer *L, struct sfile *F,
	       uint64_t off, uint8_t *dst, size_t len);
/* Frees L's full copy (layer_put). */
void fcopy_free(struct chain *c, struct chain_layer *L);
/* Stops the copying thread and drops the queue (chain_free). */
void fcopy_stop(struct chain *c);

#endif
