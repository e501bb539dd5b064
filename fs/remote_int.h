/* SPDX-License-Identifier: MIT */
/*
 * remote_int.h: what fs/remote.c (the bucket store, its blobs) and
 * fs/rprefetch.c (the working-set record and its prefetch) share. Private
 * to those two files (make layering checks).
 */
#ifndef SNAPFS_FS_REMOTE_INT_H
#define SNAPFS_FS_REMOTE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "fs/remote.h"

struct dcache;
struct dcache_obj;
#define WS_READING_MAX 16	/* snapshots recorded at once */
struct ws_rec;

/* One key of the listing taken at open. */
struct entry {
	struct s3_obj o;
	UT_hash_handle hh;
	char key[];
};

struct upload;
struct lease;

struct remote {
	struct s3 *s3;
	pthread_mutex_t keys_lock;	/* leaf */
	struct entry *keys;	/* under keys_lock: the store's keys */
	/* ETags of the tree and layers files the mirror holds (remote.c's
	 * remote_sync_meta; read by remote_changed, same thread). */
	char meta_etag[2][128];
	/* Writing (fs/rwrite.c, fs/rlease.c). */
	struct lease *lease;		/* held lease, or NULL */
	pthread_mutex_t up_lock;	/* leaf */
	struct upload *ups;		/* under up_lock: remote_upload's */
	atomic_uint_fast64_t uploaded, refreshes;
	struct dcache *dc;
	struct remote_opts o;
	char cache_dir[2048];
	char mirror[2048 + 64];
	char url[1400];
	atomic_int no_upload;
	atomic_int fill_warned;	/* one warning per mount */
	/* Working sets (fs/rprefetch.c). */
	atomic_uint waiting;		/* readers waiting on a fetch */
	/* Snapshots open for reading, and how many opens each: a fetch
	 * goes into the record of each (fs/rprefetch.c). Under ws_lock. */
	uint32_t rd_id[WS_READING_MAX];
	unsigned rd_opens[WS_READING_MAX];
	atomic_uint_fast64_t prefetched;
	atomic_int stop;		/* the prefetch thread must end */
	int prefetching;		/* a prefetch thread was started */
	pthread_t pf_thread;
	pthread_mutex_t ws_lock;
	struct ws_rec *recs;		/* under ws_lock */
	atomic_uint_fast64_t fetched;
	/* After a fetch timed out through all its retries (a stalled store),
	 * fetches fail at once until this CLOCK_MONOTONIC millisecond
	 * (fetch() in rblob.c); 0: not stalled. */
	_Atomic int64_t stall_until;
	int64_t stall_ms;	/* how long: the request timeout */
};

struct rblob {
	struct remote *r;
	struct dcache_obj *obj;
	pthread_mutex_t fetch;
	uint64_t size, next;	/* next: where a forward reader goes on */
	char etag[128];
	char key[];
};

void remote_say(struct remote *r, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* fs/remote.c: the listing (0 or -ENOENT; o gets a copy), and changes to
 * it that this mount made in the bucket. */
int remote_lookup(struct remote *r, const char *file, struct s3_obj *o);
void remote_keys_set(struct remote *r, const char *key,
		     const struct s3_obj *o);
void remote_keys_del(struct remote *r, const char *key);
/* fs/remote.c: the key a disk cache entry of object file has; the
 * identity (blob_stat) of a layer that is object o. */
void remote_cache_key(const struct remote *r, const char *file,
		      const struct s3_obj *o, char *buf, size_t cap);
void remote_ident(const struct s3_obj *o, struct stat *st);
/* fs/remote.c: fetches the tree and layers files into the mirror; takes
 * the listing again. 0 or -errno with a message. */
int remote_sync_meta(struct remote *r, char *err, size_t errlen);
int remote_relist(struct remote *r, char *err, size_t errlen);
/* fs/rlease.c: takes the lease for remote_open (-o writer); lets it go
 * (remote_free). */
int remote_lease_take(struct remote *r, char *err, size_t errlen);
void remote_lease_drop(struct remote *r);
/* fs/rwrite.c: forgets remote_upload's records (remote_free). */
void uploads_free(struct remote *r);

/* fs/rprefetch.c: notes a range fetched for a reader (the record of the
 * snapshot being read), frees the records. */
void ws_note(struct remote *r, const char *key, uint64_t off, uint64_t len);
void ws_free(struct remote *r);

#endif
