/* SPDX-License-Identifier: MIT */
/*
 * dcache: a bounded on-disk cache of byte ranges of remote objects, kept
 * across mounts. Each object, named by a key string the caller makes
 * unique per content (its name and ETag), is a sparse data file plus a
 * map with one entry per fixed-size chunk: the chunk's XXH3 hash, or 0
 * for absent. A read checks the hash, so a chunk torn by a crash or
 * damaged on disk is reported missing and fetched again, never served.
 *
 * The budget bounds the bytes of present chunks. Filling past it evicts
 * whole objects, least recently used first (a cache shared by remounts
 * keeps what the last restores read); if the object being filled alone
 * exceeds it, its own oldest chunks are punched out.
 *
 * Not here: fetching (the caller fetches what is missing and fills it),
 * what the bytes mean. Thread-safe: one lock per cache for the maps and
 * the accounting; data is read and written outside it.
 */
#ifndef SNAPFS_CACHE_DCACHE_H
#define SNAPFS_CACHE_DCACHE_H

#include <stddef.h>
#include <stdint.h>

struct dcache;
struct dcache_obj;

struct dcache_stats {
	uint64_t budget, used;		/* bytes of present chunks */
	uint64_t hits, misses, fills, evicted, fill_errors;
	int full;	/* the file system filled up: budget lowered to fit */
};

/*
 * Opens (creating it if needed) the cache in directory dir, bounded by
 * budget bytes, in chunks of chunk bytes (a power of two, >= 4 KiB). An
 * object cached with another chunk size is dropped. Returns 0 or -errno
 * with a message in err.
 */
int dcache_open(struct dcache **out, const char *dir, uint64_t budget,
		uint32_t chunk, char *err, size_t errlen);
/* Frees the cache; every object must have been put. */
void dcache_free(struct dcache *dc);
uint32_t dcache_chunk(const struct dcache *dc);

/*
 * Opens the cache entry of an object of size bytes named by key (copied),
 * creating it empty. Returns 0 or -errno. A reference: put it with
 * dcache_obj_put.
 */
int dcache_obj_open(struct dcache *dc, const char *key, uint64_t size,
		    struct dcache_obj **out);
void dcache_obj_put(struct dcache_obj *o);

/*
 * Reads chunk idx into buf (dcache_chunk bytes, fewer for the last
 * chunk). Returns the chunk's length, 0 if it is not (validly) cached,
 * or -errno.
 */
long dcache_read(struct dcache_obj *o, uint64_t idx, void *buf);

/*
 * Reads len bytes at off (clamped to the object) if every chunk they
 * touch is cached. A chunk is checked against its hash the first time it
 * is used after the object was opened (or filled); later reads are plain
 * preads from the page cache. Returns the bytes read, 0 if some chunk is
 * missing (or failed its check: it is then forgotten), or -errno.
 */
long dcache_pread(struct dcache_obj *o, void *buf, size_t len, uint64_t off);

/* Nonzero if chunk idx is recorded present (not checked). */
int dcache_has(struct dcache_obj *o, uint64_t idx);

/*
 * Stores chunk idx (len bytes: the chunk's full length). Returns 0 or
 * -errno (-ENOSPC and the like: the caller serves its bytes uncached).
 * A file system that fills up before the budget lowers the budget to
 * what fits, so the fills after it evict rather than fail.
 */
int dcache_fill(struct dcache_obj *o, uint64_t idx, const void *buf,
		size_t len);

void dcache_get_stats(struct dcache *dc, struct dcache_stats *st);

#endif
