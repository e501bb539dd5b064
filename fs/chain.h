/* SPDX-License-Identifier: MIT */
/*
 * chain: the snapshots of a store, readable at any offset, and changed as
 * a tree (add, remove with rebase, rename).
 *
 * Opening a chain makes every snapshot of the store's tree readable: the
 * base is used raw or as seekable zstd (a single-frame .zst is transcoded
 * once under .snapfs/), secondary-compressed patches are converted once to
 * plain VCDIFF, and each layer gets a composed extent index (fs/xindex)
 * built from its parent's and its patch, verified against the patch's
 * per-window adler32 while it is built, and persisted. A read is then one
 * index lookup plus copies from the stored files, at any depth.
 *
 * Layers are refcounted versions of snapshots. A snapshot is named by its
 * id (fs/tree.h): stable over its life. chain_get() hands out a version;
 * a reader keeps it, with every file it reads from, until chain_put(),
 * even if the snapshot is removed or rebased meanwhile (it then reads the
 * old, exact bytes). Changes publish new versions atomically.
 *
 * Damage is contained: a layer whose patch is malformed, fails its
 * checksums, or copies from beyond its parent is marked damaged (reads give
 * -EIO and a log line naming the file and window), as is every layer built
 * on it; the others stay readable. Stored bytes carry block checksums taken
 * at index time, so later damage is caught on read.
 *
 * Not here: FUSE, option parsing, printing (messages go to opts.log).
 * Thread-safe: any number of threads may list and read; changes
 * (chain_add, chain_remove, chain_rename, chain_set_*) are serialised by
 * the caller and never block readers for longer than a pointer swap.
 */
#ifndef SNAPFS_FS_CHAIN_H
#define SNAPFS_FS_CHAIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "fs/store.h"

struct chain_ibuild;
struct vcdiff_enc_win;
struct chain;
struct chain_layer;

enum { CHAIN_LOG_ERR = 0, CHAIN_LOG_WARN = 1, CHAIN_LOG_INFO = 2 };
/* FULL: a full state file with a parent, read like a base (the plain
 * scripts' layout keeps some in the middle of a chain). */
enum { CHAIN_KIND_BASE = 0, CHAIN_KIND_PATCH = 1, CHAIN_KIND_FULL = 2 };
/*
 * How a snapshot's own file is stored, as far as reading it goes. The
 * first two are snapfs's own forms, read as they are; the others are
 * what stock tools make, read through a copy under .snapfs/ or, for
 * uncompressed files, stored larger than they need be (chain_compact).
 */
enum {
	CHAIN_FORM_NATIVE = 0,	/* seekable zstd; a patch with windowed lzma */
	CHAIN_FORM_ZSTD1,	/* single-frame zstd: a seekable copy kept */
	CHAIN_FORM_RAW,		/* an uncompressed full state */
	CHAIN_FORM_STREAM,	/* a patch whose sections share one stream
				   (stock -S lzma, djw, fgk): a plain copy */
	CHAIN_FORM_PLAIN,	/* a patch without secondary compression */
};

struct chain_opts {
	size_t cache_size;	/* block cache budget in bytes; 0 = default */
	/* Where messages go (NULL: dropped). Called from any thread. */
	void (*log)(void *ctx, int level, const char *msg);
	/* Progress of first-mount work (NULL: none). */
	void (*progress)(void *ctx, const char *layer, const char *what,
			 uint64_t done, uint64_t total);
	void *ctx;
	int prefetch_threads;	/* frame decoders for readahead; 0 = CPUs, -1 = none */
	int raw_base;		/* keep a decompressed copy of a zstd base under
				 * .snapfs/base/ and read that (see README) */
	/* -o materialize: a snapshot read whole, in order, is copied in
	 * full under .snapfs/full/ and later read from there; the copies
	 * take at most this many bytes (least recently used go first).
	 * 0: none made or read. */
	uint64_t fcopy_max;
	/* -o max_decoded: with decoded_bounded, the decoded copies of
	 * windowed patches' sections (.snapfs/plain/ *.sect, fs/vcopy.c)
	 * take at most decoded_max bytes (0: none made); else no bound. */
	int decoded_bounded;
	uint64_t decoded_max;
	/* Attach the decoded copies there are, make none (snapctl: a
	 * one-shot command does not spend minutes writing derived data a
	 * mount makes when it wants it, or bounds away). */
	int decoded_keep_only;
};

/* A copy: stays valid whatever happens to the snapshot afterwards. */
struct chain_info {
	uint32_t id;
	uint32_t parent;	/* 0 for a base */
	char name[256];		/* shown name */
	uint64_t size;		/* full size of the snapshot */
	uint64_t stored;	/* bytes of its own file in the store */
	struct timespec mtime;	/* of its file in the store */
	uid_t uid;		/* its file's owner and mode */
	gid_t gid;
	mode_t mode;
	int64_t created;	/* seconds (UTC) */
	unsigned depth;		/* 0 for a base */
	int kind;		/* CHAIN_KIND_* */
	int form;		/* CHAIN_FORM_* */
	int damaged;		/* reads give EIO; damage says why */
	char damage[384];
};

/*
 * Opens the chain of store s (borrowed: must outlive the chain). Builds
 * missing indexes, with progress. Returns 0, or -errno with a message in
 * err when the store cannot be mounted at all (a layer that is not VCDIFF,
 * a base that is a patch, I/O errors); damaged layers do not fail it.
 */
int chain_open(struct chain **out, struct store *s,
	       const struct chain_opts *o, char *err, size_t errlen);
/* Stops the background work that writes into the store's .snapfs (full
 * copies being made, fs/fcopy.c) and makes no more: before the store's
 * lock goes (store_unlock). Reads go on. */
void chain_stop_writes(struct chain *c);
/* Frees the chain; every chain_get() must have been put. */
void chain_free(struct chain *c);
/* Starts the readahead threads. Call after any fork (fuse_daemonize):
 * threads do not survive one. Without it reads work, without readahead.
 * Returns 0 or -errno. */
int chain_start(struct chain *c);

/* --- listing --- */

/* Number of snapshots. */
size_t chain_count(const struct chain *c);
/* The ids of the snapshots into ids (cap entries). Returns how many
 * there are. */
size_t chain_ids(struct chain *c, uint32_t *ids, size_t cap);
/* Returns 0 or -ENOENT. */
int chain_info(struct chain *c, uint32_t id, struct chain_info *inf);
/* Fills inf for the version L (current or not). Returns 1 if L is the
 * current version of its snapshot, 0 if it was removed or replaced. */
int chain_layer_info(struct chain *c, const struct chain_layer *L,
		     struct chain_info *inf);
/* The id of the snapshot shown as name, or 0. */
uint32_t chain_lookup(struct chain *c, const char *name);
/* Its description (a copy into buf). 0 or -ENOENT. */
int chain_desc(struct chain *c, uint32_t id, char *buf, size_t cap);
/* The snapshot the next one written is diffed against (0: none yet). */
uint32_t chain_current(struct chain *c);

/* --- reading --- */

/* A reference to the current version of snapshot id: 0 or -ENOENT. */
int chain_get(struct chain *c, uint32_t id, struct chain_layer **out);
/* Drops a reference (NULL is fine). The last one of a removed version
 * closes its files. */
void chain_put(struct chain *c, struct chain_layer *L);
uint32_t chain_layer_id(const struct chain_layer *L);
uint64_t chain_layer_size(const struct chain_layer *L);

/* 0 if L is readable; -EIO (logged, naming the damage) if not. For
 * open(): a damaged snapshot whose size is not even known would otherwise
 * read as an empty file. */
int chain_check(struct chain *c, struct chain_layer *L);

/*
 * Per-open read state: lets the chain see a sequential reader and decode
 * the compressed frames ahead of it on other cores. One per open file;
 * safe to use from several threads at once (FUSE may run reads of one
 * open file in parallel).
 */
struct chain_stream;
int chain_stream_new(struct chain_stream **out);
/* Before the stream's first read: what its readahead decodes will be
 * read again a little later by someone else (the writer's check reads
 * its parent's bytes behind the matcher), so it is cached as an
 * ordinary block, not recycled as read once (cache/bcache.c). */
void chain_stream_reread(struct chain_stream *st);
void chain_stream_free(struct chain_stream *st);

/*
 * Reads up to len bytes of L at off into buf, with readahead for the
 * stream st (may be NULL). Returns the bytes read (short only at the end
 * of the snapshot), or -EIO for a damaged layer or damaged stored bytes
 * (logged).
 */
ssize_t chain_read(struct chain *c, struct chain_layer *L, uint64_t off,
		   void *buf, size_t len, struct chain_stream *st);

/*
 * Reads described rather than copied, for a reply that hands the kernel
 * pointers (FUSE: writev of memory pieces, splice of file pieces) instead
 * of one buffer filled by memcpy. A read of L at off becomes up to
 * CHAIN_SEGS_MAX pieces in order, each either memory (a decoded frame
 * pinned in the block cache, a shared run of zeros, or the caller's
 * scratch buffer) or a range of a local stored file whose blocks this
 * mount has already checked against their checksums (only when fds are
 * allowed: remote blobs never give one). The pieces stay valid until
 * chain_rvec_release. Thread safety: a chain_rvec belongs to one reader
 * at a time; any number may be in use at once.
 */
#define CHAIN_SEGS_MAX 64
struct chain_seg {
	const void *mem;	/* the bytes, or NULL: read len at off of fd */
	int fd;			/* owned by the chain; valid until release */
	uint64_t off;
	size_t len;
};
struct chain_rvec;
/* scratch: len bytes (the largest read) the chain may fill; the caller's,
 * and must outlive the rvec's use. 0 or -ENOMEM. */
int chain_rvec_new(struct chain_rvec **out, void *scratch, size_t cap);
void chain_rvec_free(struct chain_rvec *v);
/*
 * Reads up to len (<= the scratch capacity) bytes of L at off into v as
 * pieces; with allow_fd, checked local file ranges may be given as fds.
 * Returns the bytes described (short only at the end of the snapshot) or
 * -EIO / -errno as chain_read; *segs and *nsegs get the pieces. Call
 * chain_rvec_release after the reply, also after an error.
 */
ssize_t chain_readv(struct chain *c, struct chain_layer *L, uint64_t off,
		    size_t len, struct chain_stream *st, int allow_fd,
		    struct chain_rvec *v, const struct chain_seg **segs,
		    size_t *nsegs);
/* Unpins what the last chain_readv of v pinned. */
void chain_rvec_release(struct chain *c, struct chain_rvec *v);

/* The XXH128 of L's full state as "xxh128:<hex>" into buf (40 bytes):
 * from the tree if known, else computed (reads the whole snapshot) and
 * recorded. Returns 0 or -errno. Serialised with changes by the caller. */
int chain_digest(struct chain *c, uint32_t id, char *buf, size_t cap);

/* "xxh128:<32 hex digits>" of XXH128 canonical bytes, as xxhsum -H2
 * prints them. */
void chain_format_digest(const unsigned char canon[16], char *buf,
			 size_t cap);

/*
 * Re-reads every stored file of id's current version whole: raw files
 * block by block against the checksums taken at index time, and the
 * layer file itself. Returns 0, or -EIO with a message naming the file
 * and the offset in err, or -errno. For `snapctl check --deep`; slow (it
 * reads everything) and independent of the cache.
 */
int chain_verify_stored(struct chain *c, uint32_t id, char *err,
			size_t errlen);

/*
 * Holes: runs of zero bytes of at least CHAIN_HOLE_MIN known from L's
 * index (fill extents of byte 0: VCDIFF RUNs of zero, zero pages made
 * that way), for lseek(SEEK_HOLE / SEEK_DATA). With hole set, *out gets
 * the first offset >= off in such a run, or the size (the implicit hole
 * at the end); otherwise the first offset >= off not in one. Zeros stored
 * as bytes (a raw or zstd base) are data here. Returns 0, -ENXIO when off
 * is at or past the end (or, seeking data, only a hole follows), -EIO for
 * a damaged layer.
 */
#define CHAIN_HOLE_MIN ((uint64_t)4096)
int chain_seek_data(struct chain *c, struct chain_layer *L, uint64_t off,
		    int hole, uint64_t *out);

/*
 * Lends bytes of the block cache's budget to a caller that needs the
 * memory for a while (the writer's encoder): the cache shrinks to its
 * budget minus what is lent (never below CHAIN_CACHE_MIN), evicting at
 * once, until chain_cache_return() gives the bytes back. So the process
 * stays near its budget while a snapshot is written. Thread-safe.
 */
#define CHAIN_CACHE_MIN ((size_t)32 << 20)
void chain_cache_lend(struct chain *c, size_t bytes);
void chain_cache_return(struct chain *c, size_t bytes);

/*
 * One object a writer leaves for the next writer of this mount (the
 * source index of the snapshot it wrote: fs/wsidx.c), under a tag naming
 * what it is for (a string, at most CHAIN_HINT_TAG - 1 bytes). While it
 * is held, its bytes are lent out of the cache budget as by
 * chain_cache_lend. chain_hint_put takes obj: free_fn(obj) frees it when
 * another replaces it, when a take names another tag, or at chain_free.
 * chain_hint_take hands it over (the caller's, its bytes given back to
 * the cache) if it was put under tag; else it drops it (a writer does
 * not build on that snapshot now, so later ones are unlikely to) and
 * returns NULL. Thread-safe.
 */
#define CHAIN_HINT_TAG 128
void chain_hint_put(struct chain *c, const char *tag, void *obj,
		    size_t bytes, void (*free_fn)(void *));
void *chain_hint_take(struct chain *c, const char *tag);

/* Writes human-readable counters (cache hits, misses, ...) into buf. */
int chain_stats(struct chain *c, char *buf, size_t cap);

/* --- changes (serialised by the caller) --- */

/*
 * Opens snapshot id, which store_commit() has just added to the tree,
 * indexing it like any other (adler32 checked), and publishes it. Returns
 * 0 (the layer may still be damaged: see chain_info) or -errno with a
 * message.
 */
int chain_add(struct chain *c, uint32_t id, char *err, size_t errlen);
/*
 * Makes the table of current versions follow the store's tree after it
 * changed elsewhere (store_reload: a remote store's writer on another
 * host committed): versions whose file and parent are unchanged stay
 * (their descriptions, digests and times follow the tree), the others
 * are opened again, those no longer in the tree leave; open files keep
 * what they hold. Serialised with the other changes. Returns 0, or
 * -errno with a message and the table unchanged.
 */
int chain_sync(struct chain *c, char *err, size_t errlen);
/*
 * Indexes a patch before it is committed, so that committing it costs no
 * decode: the layer that patch fd (borrowed; a file that keeps its inode
 * and mtime into the store, as a rename does) makes as snapshot id on top
 * of P (a reference the caller holds) is opened and indexed now, and its
 * derived data (checksums, index, aux file) saved where chain_add() finds
 * it. Without built, the index is built by decoding the patch, each
 * window checked against its adler32 as at any first open, and every
 * checked window's bytes go to on_bytes(ctx, buf, len) in target order
 * (for a digest). With built, the index built from the encoder's ops
 * (chain_ibuild_*) is adopted instead: nothing is decoded, the caller
 * has checked the patch, and on_bytes is not called. Returns 0; -EBADMSG
 * with the reason in err if the patch does not rebuild its target
 * (damaged or wrong) or does not fit built; -errno.
 */
int chain_prepare(struct chain *c, uint32_t id, struct chain_layer *P,
		  struct blob *b, struct chain_ibuild *built,
		  void (*on_bytes)(void *ctx, const void *buf, size_t len),
		  void *ctx, char *err, size_t errlen);

/*
 * Builds the index of a new layer from the encoder's own ops while its
 * patch is written (vcdiff_enc_opts.on_window), for chain_prepare():
 * snapshot id on top of P (a reference is taken). Aux data goes to a
 * temporary file under .snapfs/tmp until adopted. Windows must come in
 * order; one thread at a time (any one). chain_ibuild_window returns 0,
 * -EBADMSG if the ops do not tile the window or copy from beyond P, or
 * -errno (ENOSPC writing aux data); the first error is sticky.
 * chain_ibuild_free accepts NULL and removes what was not adopted.
 */
int chain_ibuild_new(struct chain_ibuild **out, struct chain *c, uint32_t id,
		     struct chain_layer *P);
int chain_ibuild_window(struct chain_ibuild *ib,
			const struct vcdiff_enc_win *w);
void chain_ibuild_free(struct chain_ibuild *ib);

/*
 * Removes snapshot id from the store and the tree. Its children are
 * re-encoded against its parent (for a base: one child becomes the new
 * base, the others are re-encoded against it), their descendants'
 * indexes remapped, all of it committed in one store_commit(), then
 * published. Readers keep exact bytes throughout. Returns 0, or -errno
 * with a message (ENOSPC and the like: the store is as before).
 * *rebased (may be NULL) gets the number of snapshots whose versions
 * changed, and their ids go to rebased_ids (cap entries) so the caller
 * can tell the kernel their sizes on disk changed.
 */
int chain_remove(struct chain *c, uint32_t id, uint32_t *rebased_ids,
		 size_t cap, size_t *rebased, char *err, size_t errlen);

/*
 * Stores snapshot id again in snapfs's own form (chain_remove's machinery,
 * nothing removed): a patch re-encoded against its parent with windowed
 * lzma, a base or full layer as seekable zstd. Stock forms need copies
 * under .snapfs/ to be read (CHAIN_FORM_ZSTD1, _STREAM) or take more room
 * (_RAW); those copies become garbage (chain_gc). The descendants'
 * indexes are remapped. -EALREADY, nothing changed: a NATIVE layer (not
 * encoded again), or a PLAIN one whose new file would not be smaller. Readers
 * see exact bytes throughout. 0 or -errno with a message; res (never
 * NULL) gets the form before and the file's bytes before and after.
 */
struct chain_compact_res {
	int form;		/* CHAIN_FORM_* before */
	uint64_t before, after;	/* bytes of its file */
};
int chain_compact(struct chain *c, uint32_t id, struct chain_compact_res *res,
		  char *err, size_t errlen);

/* Renames snapshot id (its file too: NAME.ext). -EEXIST, -EINVAL for a
 * name that cannot be a snapshot's, or -errno with a message. */
int chain_rename(struct chain *c, uint32_t id, const char *name, char *err,
		 size_t errlen);

/* Sets the description of id / the current snapshot. 0 or -errno. */
int chain_set_desc(struct chain *c, uint32_t id, const char *desc,
		   char *err, size_t errlen);
int chain_set_current(struct chain *c, uint32_t id, char *err,
		      size_t errlen);

#endif
