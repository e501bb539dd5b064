/* SPDX-License-Identifier: MIT */
/*
 * bcache: a bounded cache of decoded blocks (decompressed zstd frames,
 * verified blocks of stored files), keyed by two 64-bit numbers the caller
 * chooses (e.g. file id, block number).
 *
 * Protocol (sqlite pcache / squashfuse): bcache_get() returns a pinned
 * block; every successful get has exactly one bcache_put(). On a miss the
 * caller gets a pinned, empty block of the capacity it asked for, fills it
 * and calls bcache_publish() (or bcache_abandon() on error); other threads
 * asking for the same key meanwhile wait, so a block is decoded once.
 * Pinned blocks are never evicted; unpinned ones are recycled in CLOCK
 * order when the byte budget is exceeded. If everything is pinned, the
 * budget is overshot until blocks are put, rather than blocking.
 *
 * Knows nothing of VCDIFF, zstd or FUSE. Thread-safe; the cache's lock is
 * never held while a caller fills a block.
 */
#ifndef SNAPFS_CACHE_BCACHE_H
#define SNAPFS_CACHE_BCACHE_H

#include <stddef.h>
#include <stdint.h>

struct bcache;

struct bcache_opts {
	size_t budget;		/* bytes of block data; 0 = BCACHE_DEFAULT_BUDGET */
};
#define BCACHE_DEFAULT_BUDGET ((size_t)256 << 20)

/* A pinned block handed to the caller. */
struct bcache_blk {
	uint8_t *data;		/* capacity bytes, read-only once published */
	size_t len;		/* valid bytes (set by bcache_publish) */
	void *priv_;		/* the cache's; do not touch */
};

struct bcache_stats {
	uint64_t hits, misses, evictions;
	uint64_t waits;		/* gets that slept on another's fill */
	uint64_t bytes_used;	/* capacity of live blocks, may pass budget */
	uint64_t budget;
	uint64_t blocks;	/* blocks in the index */
	uint64_t recycled;	/* misses that took a read-once block's buffer */
};

enum { BCACHE_HIT = 1, BCACHE_MISS = 0 };

/* --- life cycle --- */
int bcache_new(struct bcache **out, const struct bcache_opts *o);
/* All blocks must have been put. Accepts NULL. */
void bcache_free(struct bcache *c);

/* --- operations --- */

/*
 * Pins the block (k1, k2). Returns BCACHE_HIT with b->data/b->len valid;
 * or BCACHE_MISS with b->data pointing to cap bytes the caller must fill,
 * then bcache_publish() or bcache_abandon(); or -ENOMEM. If another thread
 * is filling the same key, waits for it (and on its abandon, the caller
 * becomes the filler: BCACHE_MISS). cap is ignored on a hit. A filler
 * may get other blocks while filling only in an acyclic order (e.g. only
 * lower layers' keys), or two fillers can wait for each other forever.
 */
int bcache_get(struct bcache *c, uint64_t k1, uint64_t k2, size_t cap,
	       struct bcache_blk *b);
/*
 * bcache_get for a readahead: the block is wanted by a reader soon, not
 * by this caller. A miss is filled as with bcache_get, but the block
 * counts as read once only when a reader gets it, and a block read once
 * after its readahead is the first whose buffer a later miss takes over
 * (see cache/bcache.c, "Read once, ahead"). A hit changes nothing.
 */
int bcache_get_ahead(struct bcache *c, uint64_t k1, uint64_t k2, size_t cap,
		     struct bcache_blk *b);
/* Marks a missed block filled with len (<= cap) bytes. Still pinned. */
void bcache_publish(struct bcache *c, struct bcache_blk *b, size_t len);
/* Gives up a missed block (fill failed); it is dropped and unpinned. */
void bcache_abandon(struct bcache *c, struct bcache_blk *b);
/* Unpins a block obtained by bcache_get (after publish on a miss). */
void bcache_put(struct bcache *c, struct bcache_blk *b);
/*
 * Drops every block whose k1 matches (a file went away): later gets of k1
 * miss. Unpinned blocks are freed now; pinned ones (and ones being filled)
 * stay valid for their holders and are freed at their last put/abandon.
 */
void bcache_drop(struct bcache *c, uint64_t k1);

void bcache_stats(struct bcache *c, struct bcache_stats *st);
/* Sets the budget from now on (nonzero); unpinned blocks over it are
 * freed at once, for a caller that needs the memory for something else
 * for a while. Thread-safe. */
void bcache_set_budget(struct bcache *c, size_t budget);

#endif
