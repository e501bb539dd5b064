/* SPDX-License-Identifier: MIT */
/*
 * rblob: a layer file of a remote store read as a blob over the disk
 * cache (remote_open_blob, remote.h). Not the listing or derived data
 * (remote.c), not the working-set prefetch (rprefetch.c).
 *
 * Reads: a blob read looks in the disk cache first; the chunks it lacks
 * are fetched together, in parallel ranged GETs of one chunk each, with
 * up to `ahead` more chunks past the read when the reader goes forwards
 * (a restore streams a snapshot from start to end). Decision: fetch
 * unit = cache unit = 16 MiB and 8 in flight by default, the published
 * guidance for S3 (8-16 MiB ranges, 10-20 in parallel) and what
 * tests/bench/remote.sh measured best against Swift on loopback: cold
 * cat of a base 457 MB/s at 16M x 8 against 234 at 4M x 8 and 272 at
 * 4M x 16 (16 in flight added nothing).
 * One fetch at a time per blob: a second reader of the same chunks waits
 * for the first instead of fetching them again. A chunk the cache cannot
 * keep (the cache directory is full) is served from memory, uncached.
 * Thread safety: any thread; per blob, fetches are serialized by its
 * fetch mutex.
 */
#include "fs/remote.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "cache/dcache.h"
#include "fs/msg.h"
#include "fs/remote_int.h"

/*
 * Fetches chunks [first, last] of b that the cache lacks, plus up to
 * `ahead` missing chunks after last, and copies [off, off + len) into
 * buf from what was fetched or cached. b->fetch held.
 */
static ssize_t fetch_chunks(struct rblob *b, void *buf, size_t len,
			    uint64_t off, int forward, int note)
{
	struct remote *r = b->r;
	uint64_t c = r->o.chunk, first = off / c, last = (off + len - 1) / c;
	uint64_t nch = (b->size + c - 1) / c, end = last + 1;
	size_t n = 0, cap;
	struct s3_range *rg;
	char m[1024];
	ssize_t rc;

	if (forward)
		end = last + 1 + r->o.ahead < nch ? last + 1 + r->o.ahead : nch;
	cap = (size_t)(end - first);
	rg = calloc(cap, sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	for (uint64_t i = first; i < end; i++) {
		if (dcache_has(b->obj, i) && i > last)
			continue;
		if (i <= last) {
			/* Checked use of what is there; else fetch it. */
			uint64_t a = i * c > off ? i * c : off;
			uint64_t e = (i + 1) * c < off + len ? (i + 1) * c :
				     off + len;
			long got = dcache_pread(b->obj, (char *)buf + (a - off),
						(size_t)(e - a), a);
			if (got == (long)(e - a))
				continue;
		}
		rg[n].off = i * c;
		rg[n].len = (size_t)(b->size - i * c < c ? b->size - i * c : c);
		rg[n].buf = malloc(rg[n].len);
		if (!rg[n].buf) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	rc = (ssize_t)len;
	for (size_t i = 0; i < n && rc >= 0; i += r->o.parallel) {
		size_t k = n - i < r->o.parallel ? n - i : r->o.parallel;
		int e = s3_get_ranges(r->s3, b->key, b->etag, rg + i, k, m,
				      sizeof(m));
		if (e) {
			/* Read-ahead may fail quietly; the read itself not. */
			int needed = 0;
			for (size_t j = i; j < i + k; j++)
				needed |= rg[j].rc && rg[j].off / c <= last;
			if (needed) {
				remote_say(r, LOG_ERR, "%s%s", m, e == -ESTALE ?
				    ": the object changed under the mount; "
				    "remount to see the new one" : "");
				rc = e == -ENOENT || e == -ESTALE ? -EIO : e;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t idx = rg[i].off / c;
		if (rg[i].rc)
			continue;
		atomic_fetch_add(&r->fetched, rg[i].len);
		if (note)
			ws_note(r, b->key, rg[i].off, rg[i].len);
		int e = dcache_fill(b->obj, idx, rg[i].buf, rg[i].len);
		if (e && !atomic_exchange(&r->fill_warned, 1))
			remote_say(r, LOG_WARNING, "%s: cannot cache %s: %s; serving "
			    "it uncached%s", r->cache_dir, b->key,
			    strerror(-e), e == -ENOSPC ? " (the cache is "
			    "now bounded by what fits; -o disk_cache= sets "
			    "the bound)" : "");
		if (idx > last || rc < 0)
			continue;
		uint64_t a = rg[i].off > off ? rg[i].off : off;
		uint64_t z = rg[i].off + rg[i].len < off + len ?
			     rg[i].off + rg[i].len : off + len;
		memcpy((char *)buf + (a - off), (char *)rg[i].buf +
		       (a - rg[i].off), (size_t)(z - a));
	}
out:
	for (size_t i = 0; i < n; i++)
		free(rg[i].buf);
	free(rg);
	return rc;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A stalled store (no byte for s3_timeout, on every try) costs each fetch
 * (s3_retries + 1) x s3_timeout: 150 s by default. Reads come one after
 * another (the kernel's readahead, then its retry of the page; our
 * decode-ahead), so a reader of a snapshot waited for several such
 * sequences before its EIO. Decision: after a read's fetch timed out, the
 * reads that need the network fail at once, with ETIMEDOUT, for one more
 * s3_timeout, then try again; what is cached is still served. A refused
 * connection or an error answer does not do this: those fail fast anyway.
 */
static int stalled(struct remote *r)
{
	int64_t until = atomic_load(&r->stall_until);

	return until && mono_ms() < until;
}

static void note_fetch(struct remote *r, const char *key, ssize_t rc)
{
	if (rc == -ETIMEDOUT) {
		if (!atomic_exchange(&r->stall_until, mono_ms() + r->stall_ms))
			remote_say(r, LOG_ERR, "%s: the object store stalled "
			    "(a read of %s timed out on every try); reads "
			    "that need it fail at once for %" PRId64 " s, "
			    "then try again (-o s3_timeout= and s3_retries= "
			    "set how long a try waits and how many there "
			    "are)", r->url, key, (r->stall_ms + 999) / 1000);
	} else if (rc >= 0 && atomic_load(&r->stall_until)) {
		atomic_store(&r->stall_until, 0);
	}
}

/*
 * fetch_chunks behind the stall mark: every fetch of a blob, the
 * reader's and the working-set prefetch's, both marks the store stalled
 * and obeys the mark, so a reader queued behind a fetch that stalled
 * fails at once instead of trying again. b->fetch held.
 */
static ssize_t fetch(struct rblob *b, void *buf, size_t len, uint64_t off,
		     int forward, int note)
{
	ssize_t rc;

	if (stalled(b->r)) {
		long got = dcache_pread(b->obj, buf, len, off);
		return got == (long)len ? (ssize_t)len : -ETIMEDOUT;
	}
	rc = fetch_chunks(b, buf, len, off, forward, note);
	note_fetch(b->r, b->key, rc);
	return rc;
}

static ssize_t rb_pread(void *impl, void *buf, size_t len, uint64_t off)
{
	struct rblob *b = impl;
	long got = dcache_pread(b->obj, buf, len, off);
	ssize_t rc;

	if (got < 0)
		return got;
	if (got > 0) {
		b->next = off + len;
		return got;
	}
	atomic_fetch_add(&b->r->waiting, 1);	/* prefetch pauses */
	pthread_mutex_lock(&b->fetch);
	/* fetch() serves each chunk another reader fetched meanwhile from
	 * the cache, and fetches only the rest. Read-ahead is for a reader
	 * going forwards, not for a probe (a magic number, a footer) that
	 * happens to start at 0. */
	rc = fetch(b, buf, len, off, b->next && off == b->next, 1);
	b->next = off + len;
	pthread_mutex_unlock(&b->fetch);
	atomic_fetch_sub(&b->r->waiting, 1);
	return rc;
}

static void rb_advise(void *impl, uint64_t off, uint64_t len)
{
	struct rblob *b = impl;
	uint64_t c = b->r->o.chunk;
	char *tmp;

	if (!len || off >= b->size)
		return;
	if (len > b->size - off)
		len = b->size - off;
	/* All there (a warm cache): nothing to allocate. A chunk-sized
	 * buffer per call, mapped and unmapped, costs the readers running
	 * beside the prefetch (TLB shootdowns) more than it seems. */
	uint64_t a0 = off - off % c;
	while (a0 < off + len && dcache_has(b->obj, a0 / c))
		a0 += c;
	if (a0 >= off + len || stalled(b->r))
		return;
	if (!(tmp = malloc(c)))
		return;
	/* The first missing chunk and the next missing ones with it, in
	 * parallel (fetch's read-ahead), until the range is in or the
	 * store stalls. */
	for (uint64_t a = a0; a < off + len; a += c) {
		if (dcache_has(b->obj, a / c))
			continue;
		size_t l = (size_t)(b->size - a < c ? b->size - a : c);
		ssize_t rc = 0;
		pthread_mutex_lock(&b->fetch);
		if (!dcache_has(b->obj, a / c))
			rc = fetch(b, tmp, l, a, 1, 0);
		pthread_mutex_unlock(&b->fetch);
		if (rc == -ETIMEDOUT)
			break;
	}
	free(tmp);
}

static void rb_free(void *impl)
{
	struct rblob *b = impl;

	dcache_obj_put(b->obj);
	pthread_mutex_destroy(&b->fetch);
	free(b);
}

static const struct blob_ops rb_ops = {
	.pread = rb_pread, .advise = rb_advise, .free = rb_free,
};

int remote_open_blob(struct remote *r, const char *file, struct blob **out,
		     char *err, size_t errlen)
{
	struct s3_obj so;
	struct rblob *b;
	struct stat st;
	char key[1600];
	int rc;

	if (remote_lookup(r, file, &so) &&
	    (rc = s3_head(r->s3, file, &so, err, errlen)))
		return rc;
	b = calloc(1, sizeof(*b) + strlen(file) + 1);
	if (!b)
		return -ENOMEM;
	strcpy(b->key, file);
	b->r = r;
	b->size = so.size;
	snprintf(b->etag, sizeof(b->etag), "%s", so.etag);
	pthread_mutex_init(&b->fetch, NULL);
	remote_cache_key(r, file, &so, key, sizeof(key));
	rc = dcache_obj_open(r->dc, key, so.size, &b->obj);
	if (rc) {
		msg_say(err, errlen, "%s: cannot open the cache entry of %s: "
			"%s", r->cache_dir, file, strerror(-rc));
		pthread_mutex_destroy(&b->fetch);
		free(b);
		return rc;
	}
	remote_ident(&so, &st);
	return blob_new(out, &rb_ops, b, &st, file);
}
