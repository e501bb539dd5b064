/* SPDX-License-Identifier: MIT */
/*
 * rprefetch: the working set of a snapshot in a bucket store -- what its
 * first restore fetched, recorded and uploaded -- and the thread that
 * fetches it ahead of later restores (see remote.h). Not here: fetching
 * itself (fs/remote.c), the cache (cache/dcache).
 *
 * Decision: a record is byte ranges of store keys, not chunk numbers, so
 * it stays valid for mounts with another -o s3_chunk. Consecutive ranges
 * of one key are merged as they are noted: a restore's record is a few
 * lines per layer file.
 */
#include "fs/remote_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fs/store.h"

/* The record of one snapshot. */
struct ws_rec {
	uint32_t id;
	int off;		/* not recorded: the bucket has one */
	char *text;		/* "OFF LEN KEY\n" lines */
	size_t len, cap;
	char last_key[512];	/* the last line, kept open for merging */
	uint64_t last_off, last_len;
	struct ws_rec *next;
};

#define WS_MAX ((size_t)4 << 20)	/* a record's bound (bytes of text) */

static struct ws_rec *rec_get(struct remote *r, uint32_t id)
{
	struct ws_rec *w;

	for (w = r->recs; w; w = w->next)
		if (w->id == id)
			return w;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->id = id;
	w->next = r->recs;
	r->recs = w;
	return w;
}

/* Moves the open line into the text (ws_lock held). */
static void rec_flush(struct ws_rec *w)
{
	char line[640];
	int n;

	if (!w->last_len)
		return;
	n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 " %s\n",
		     w->last_off, w->last_len, w->last_key);
	w->last_len = 0;
	if (n < 0 || (size_t)n >= sizeof(line) || w->len + (size_t)n > WS_MAX)
		return;
	if (w->len + (size_t)n > w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 4096;
		while (cap < w->len + (size_t)n)
			cap *= 2;
		char *t = realloc(w->text, cap);
		if (!t)
			return;
		w->text = t;
		w->cap = cap;
	}
	memcpy(w->text + w->len, line, (size_t)n);
	w->len += (size_t)n;
}

static void ws_key(char *buf, size_t cap, uint32_t id)
{
	snprintf(buf, cap, "%s/ws/%" PRIu32 ".ws", STORE_META_DIR, id);
}

/*
 * Attribution: a fetch belongs to every snapshot open for reading when
 * it happens. Restores of two snapshots at once then both record the
 * ranges of both (their common layers are what both need anyway; the
 * other's own patch ranges are a little more to prefetch), where the
 * last open alone took every fetch and left the first snapshot's record
 * short of what its restore read after the second began.
 */
void remote_reading(struct remote *r, uint32_t id)
{
	struct ws_rec *w;
	int known, slot = -1, first = 1;
	char key[64];
	struct s3_obj o;

	pthread_mutex_lock(&r->ws_lock);
	for (int i = 0; i < WS_READING_MAX; i++) {
		if (r->rd_opens[i] && r->rd_id[i] == id) {
			slot = i;
			first = 0;
			break;
		}
		if (!r->rd_opens[i] && slot < 0)
			slot = i;
	}
	if (slot >= 0) {	/* beyond WS_READING_MAX at once: not recorded */
		r->rd_id[slot] = id;
		r->rd_opens[slot]++;
	}
	w = first ? rec_get(r, id) : NULL;
	known = !w || w->len || w->last_len || w->off;
	pthread_mutex_unlock(&r->ws_lock);
	if (known)
		return;
	/* First open of id in this mount: is there a record already? */
	ws_key(key, sizeof(key), id);
	int rc = s3_head(r->s3, key, &o, NULL, 0);
	pthread_mutex_lock(&r->ws_lock);
	if (rc != -ENOENT)
		w->off = 1;	/* recorded before (or unknown: leave it) */
	pthread_mutex_unlock(&r->ws_lock);
}

void remote_read_done(struct remote *r, uint32_t id)
{
	pthread_mutex_lock(&r->ws_lock);
	for (int i = 0; i < WS_READING_MAX; i++)
		if (r->rd_opens[i] && r->rd_id[i] == id) {
			r->rd_opens[i]--;
			break;
		}
	pthread_mutex_unlock(&r->ws_lock);
}

/* Appends a fetched range to w's open line, or starts a new one. */
static void rec_note(struct ws_rec *w, const char *key, uint64_t off,
		     uint64_t len)
{
	if (w->off)
		return;
	if (w->last_len && !strcmp(w->last_key, key) &&
	    w->last_off + w->last_len == off) {
		w->last_len += len;
	} else {
		rec_flush(w);
		snprintf(w->last_key, sizeof(w->last_key), "%s", key);
		w->last_off = off;
		w->last_len = len;
	}
}

void ws_note(struct remote *r, const char *key, uint64_t off, uint64_t len)
{
	pthread_mutex_lock(&r->ws_lock);
	for (int i = 0; i < WS_READING_MAX; i++) {
		struct ws_rec *w = r->rd_opens[i] ? rec_get(r, r->rd_id[i]) :
			NULL;
		if (w)
			rec_note(w, key, off, len);
	}
	pthread_mutex_unlock(&r->ws_lock);
}

int remote_ws_save(struct remote *r)
{
	int rc = 0;
	char key[64], m[1024];

	for (struct ws_rec *w = r->recs; w; w = w->next) {
		pthread_mutex_lock(&r->ws_lock);
		rec_flush(w);
		int skip = w->off || !w->len;
		pthread_mutex_unlock(&r->ws_lock);
		if (skip)
			continue;
		ws_key(key, sizeof(key), w->id);
		int e = s3_put(r->s3, key, w->text, w->len, m, sizeof(m));
		if (e) {
			remote_say(r, LOG_WARNING, "working set of snapshot %"
				   PRIu32 " not saved: %s", w->id, m);
			rc = rc ? rc : e;
		} else {
			remote_say(r, LOG_INFO, "working set of snapshot %"
				   PRIu32 " saved (%s, %zu bytes)", w->id,
				   key, w->len);
			w->off = 1;
		}
	}
	return rc;
}

void ws_free(struct remote *r)
{
	while (r->recs) {
		struct ws_rec *w = r->recs;
		r->recs = w->next;
		free(w->text);
		free(w);
	}
}

/* --- prefetch --- */

struct pf_arg {
	struct remote *r;
	char *text;
	size_t len;
	int rest;
};

/* Waits while readers wait for fetches: they come first. */
static void yield_to_readers(struct remote *r)
{
	struct timespec ts = { 0, 10 * 1000000L };

	while (atomic_load(&r->waiting) && !atomic_load(&r->stop))
		nanosleep(&ts, NULL);
}

struct pf_blob {
	char key[512];
	struct blob *b;
};

static struct blob *pf_open(struct remote *r, struct pf_blob *tab, size_t *n,
			    size_t cap, const char *key)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(tab[i].key, key))
			return tab[i].b;
	if (*n == cap)
		return NULL;
	if (remote_open_blob(r, key, &tab[*n].b, NULL, 0))
		return NULL;
	snprintf(tab[*n].key, sizeof(tab[*n].key), "%s", key);
	return tab[(*n)++].b;
}

static void *pf_main(void *p)
{
	struct pf_arg *a = p;
	struct remote *r = a->r;
	struct pf_blob tab[64];
	size_t n = 0, step = (size_t)r->o.chunk * r->o.parallel;
	uint64_t before = atomic_load(&r->fetched);
	char *save = NULL;

	for (char *line = strtok_r(a->text, "\n", &save); line &&
	     !atomic_load(&r->stop); line = strtok_r(NULL, "\n", &save)) {
		uint64_t off, len;
		int k = 0;
		if (sscanf(line, "%" SCNu64 " %" SCNu64 " %n", &off, &len,
			   &k) != 2 || !k)
			continue;
		struct blob *b = pf_open(r, tab, &n, 64, line + k);
		for (uint64_t at = off; b && at < off + len &&
		     !atomic_load(&r->stop); at += step) {
			yield_to_readers(r);
			uint64_t l = off + len - at < step ? off + len - at :
				     step;
			uint64_t f = atomic_load(&r->fetched);
			blob_advise(b, at, l);
			atomic_fetch_add(&r->prefetched,
					 atomic_load(&r->fetched) - f);
		}
	}
	/* Then the rest of the same objects, behind any reader. */
	for (size_t i = 0; a->rest && i < n && !atomic_load(&r->stop); i++) {
		uint64_t size = blob_size(tab[i].b);
		for (uint64_t at = 0; at < size && !atomic_load(&r->stop);
		     at += step) {
			yield_to_readers(r);
			uint64_t f = atomic_load(&r->fetched);
			blob_advise(tab[i].b, at, step);
			atomic_fetch_add(&r->prefetched,
					 atomic_load(&r->fetched) - f);
		}
	}
	remote_say(r, LOG_INFO, "prefetch %s: %" PRIu64 " bytes fetched",
		   atomic_load(&r->stop) ? "stopped" : "done",
		   atomic_load(&r->fetched) - before);
	for (size_t i = 0; i < n; i++)
		blob_put(tab[i].b);
	free(a->text);
	free(a);
	return NULL;
}

int remote_prefetch_start(struct remote *r, uint32_t id, int rest)
{
	struct pf_arg *a = calloc(1, sizeof(*a));
	char key[64];
	void *buf;
	size_t len;
	int rc;

	if (!a)
		return -ENOMEM;
	ws_key(key, sizeof(key), id);
	rc = s3_get(r->s3, key, WS_MAX, &buf, &len, NULL, NULL, 0);
	if (rc) {
		free(a);
		return rc;	/* -ENOENT: no record yet */
	}
	a->r = r;
	a->text = realloc(buf, len + 1);
	if (!a->text) {
		free(buf);
		free(a);
		return -ENOMEM;
	}
	a->text[len] = 0;
	a->len = len;
	a->rest = rest;
	rc = -pthread_create(&r->pf_thread, NULL, pf_main, a);
	if (rc) {
		free(a->text);
		free(a);
		return rc;
	}
	r->prefetching = 1;
	return 0;
}

void remote_prefetch_stop(struct remote *r)
{
	if (!r->prefetching)
		return;
	atomic_store(&r->stop, 1);
	pthread_join(r->pf_thread, NULL);
	r->prefetching = 0;
}
