/* SPDX-License-Identifier: MIT */
/*
 * chain: the snapshot chain of a store, readable at any layer and offset.
 *
 * Opening a chain makes every layer readable: the base is used raw or as
 * seekable zstd (a single-frame .zst is transcoded once under .snapfs/),
 * secondary-compressed patches are converted once to plain VCDIFF, and each
 * layer gets a composed extent index (fs/xindex) built from its parent's
 * and its patch, verified against the patch's per-window adler32 while it
 * is built, and persisted. A read is then one index lookup plus copies
 * from the stored files through the block cache, at any depth.
 *
 * Damage is contained: a layer whose patch is malformed, fails its
 * checksums, or copies from beyond its parent is marked damaged (reads give
 * -EIO and a log line naming the file and window), as is every layer built
 * on it; the others stay readable. Stored bytes carry block checksums taken
 * at index time, so later damage is caught on read.
 *
 * Not here: FUSE, option parsing, printing (messages go to opts.log).
 * Implemented in fs/chain.c with fs/sfile.c, fs/derive.c, fs/ibuild.c and
 * fs/readahead.c, which share the private fs/chain_int.h.
 * Thread-safe: any number of threads may read; chain_append (the write
 * path) is serialised by its caller and publishes the new layer last.
 */
#ifndef SNAPFS_FS_CHAIN_H
#define SNAPFS_FS_CHAIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "fs/store.h"

struct chain;

enum { CHAIN_LOG_ERR = 0, CHAIN_LOG_WARN = 1, CHAIN_LOG_INFO = 2 };

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
};

struct chain_info {
	const char *name;	/* shown name; valid while the chain lives */
	uint64_t size;		/* full size of the snapshot */
	uint64_t stored;	/* bytes its own file takes in the store */
	struct timespec mtime;	/* of its file in the store */
	const char *damage;	/* NULL if readable, else why not */
};

/*
 * Opens the chain of store s (borrowed: must outlive the chain). Builds
 * missing indexes, with progress. Returns 0, or -errno with a message in
 * err when the store cannot be mounted at all (a layer that is not VCDIFF,
 * a base that is a patch, I/O errors); damaged layers do not fail it.
 */
int chain_open(struct chain **out, struct store *s,
	       const struct chain_opts *o, char *err, size_t errlen);
void chain_free(struct chain *c);
/* Starts the readahead threads. Call after any fork (fuse_daemonize):
 * threads do not survive one. Without it reads work, without readahead.
 * Returns 0 or -errno. */
int chain_start(struct chain *c);

/*
 * Opens the layer store_append() just added on top (indexing it like any
 * other, adler32 checked) and publishes it to readers last. The caller
 * serialises appends. Returns 0 (the layer may still be damaged: see
 * chain_info) or -errno with a message.
 */
int chain_append(struct chain *c, char *err, size_t errlen);

size_t chain_count(const struct chain *c);
/* Returns 0 or -ENOENT if i is out of range. */
int chain_info(const struct chain *c, size_t i, struct chain_info *inf);
/* Index of the layer shown as name, or -ENOENT. */
ssize_t chain_lookup(const struct chain *c, const char *name);

/* 0 if layer i is readable; -EIO (logged, naming the damage) if not,
 * -ENOENT for a bad i. For open(): a damaged snapshot whose size is not
 * even known would otherwise read as an empty file. */
int chain_check(struct chain *c, size_t i);

/*
 * Reads up to len bytes of layer i at off into buf. Returns the bytes read
 * (short only at the end of the snapshot), -EIO for a damaged layer or
 * damaged stored bytes (logged), -ENOENT for a bad i.
 */
ssize_t chain_read(struct chain *c, size_t i, uint64_t off, void *buf,
		   size_t len);

/*
 * Per-open read state: lets the chain see a sequential reader and decode
 * the compressed frames ahead of it on other cores. One per open file;
 * safe to use from several threads at once (FUSE may run reads of one
 * open file in parallel).
 */
struct chain_stream;
int chain_stream_new(struct chain_stream **out);
void chain_stream_free(struct chain_stream *st);

/* chain_read, with readahead for the stream st (may be NULL). */
ssize_t chain_read_stream(struct chain *c, size_t i, uint64_t off, void *buf,
			  size_t len, struct chain_stream *st);

/* Writes human-readable counters (cache hits, misses, ...) into buf. */
int chain_stats(struct chain *c, char *buf, size_t cap);

#endif
