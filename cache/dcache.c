/* SPDX-License-Identifier: MIT */
/*
 * dcache: remote objects' chunks on local disk (see dcache.h).
 *
 * On disk, per object: NAME.data (sparse, the object's bytes at their own
 * offsets) and NAME.map (a 64-byte header, then one little-endian u64 per
 * chunk: XXH3 of the chunk, 0 if absent; a real hash of 0 is stored as
 * 1). NAME is the XXH3-128 of the key in hex. A fill writes the data
 * first and the map entry after it, with no fsync: after a crash an entry
 * may name bytes that never reached the disk, and the hash check on read
 * turns that into a miss. The map's mtime is the object's last use, so
 * eviction order survives remounts.
 */
#include "cache/dcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#define MAGIC "SNAPDC1"
#define HDR 64

struct ent {
	char name[33];
	uint64_t bytes;		/* present chunks' bytes */
	int64_t last;		/* last use, ns (eviction order) */
	struct dcache_obj *open;
	UT_hash_handle hh;
};

struct dcache_obj {
	struct dcache *dc;
	struct ent *e;
	unsigned refs;		/* under dc->lock */
	int dfd, mfd;
	uint64_t size, n;
	uint64_t *map;		/* under dc->lock */
	unsigned char *busy;	/* under dc->lock: chunks being filled */
	unsigned char *ok;	/* under dc->lock: checked since opened */
	uint32_t *gen;		/* under dc->lock: bumped when punched */
};

struct dcache {
	pthread_mutex_t lock;
	int dirfd;
	uint32_t chunk;
	struct ent *ents;
	struct dcache_stats st;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void unlink_ent(struct dcache *dc, const char *name)
{
	char f[64];

	snprintf(f, sizeof(f), "%s.data", name);
	unlinkat(dc->dirfd, f, 0);
	snprintf(f, sizeof(f), "%s.map", name);
	unlinkat(dc->dirfd, f, 0);
}

/* Reads a map file's header and counts its bytes; -1 if unusable. */
static int scan_map(struct dcache *dc, const char *file, uint64_t *bytes,
		    int64_t *last)
{
	int fd = openat(dc->dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	unsigned char h[HDR];
	struct stat st;
	uint64_t size, n, have = 0;
	uint32_t chunk;
	int rc = -1;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    pread(fd, h, HDR, 0) == HDR && memcmp(h, MAGIC, 8) == 0) {
		memcpy(&chunk, h + 8, 4);
		memcpy(&size, h + 16, 8);
		n = (size + dc->chunk - 1) / dc->chunk;
		if (chunk == dc->chunk &&
		    (uint64_t)st.st_size == HDR + 8 * n) {
			uint64_t buf[512];
			for (uint64_t i = 0; i < n; i += 512) {
				size_t k = n - i < 512 ? (size_t)(n - i) : 512;
				if (pread(fd, buf, 8 * k, HDR + 8 * i) !=
				    (ssize_t)(8 * k))
					goto out;
				for (size_t j = 0; j < k; j++)
					have += buf[j] != 0;
			}
			*bytes = have * dc->chunk;
			*last = (int64_t)st.st_mtim.tv_sec * 1000000000 +
				st.st_mtim.tv_nsec;
			rc = 0;
		}
	}
out:
	close(fd);
	return rc;
}

int dcache_open(struct dcache **out, const char *dir, uint64_t budget,
		uint32_t chunk, char *err, size_t errlen)
{
	struct dcache *dc;
	DIR *d;
	struct dirent *de;

	if (chunk < 4096 || (chunk & (chunk - 1))) {
		snprintf(err, errlen, "cache chunk %u: give a power of two of "
			 "at least 4096", chunk);
		return -EINVAL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		int rc = -errno;
		snprintf(err, errlen, "%s: cannot create the cache "
			 "directory: %s", dir, strerror(errno));
		return rc;
	}
	dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -ENOMEM;
	pthread_mutex_init(&dc->lock, NULL);
	dc->chunk = chunk;
	dc->st.budget = budget;
	dc->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dc->dirfd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "%s: cannot open the cache directory: "
			 "%s (it must be a real directory)", dir,
			 strerror(errno));
		dcache_free(dc);
		return rc;
	}
	d = fdopendir(dup(dc->dirfd));
	if (!d) {
		dcache_free(dc);
		return -ENOMEM;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l != 36 || strcmp(de->d_name + 32, ".map") != 0)
			continue;
		char name[33];
		memcpy(name, de->d_name, 32);
		name[32] = 0;
		uint64_t bytes = 0;
		int64_t last = 0;
		if (scan_map(dc, de->d_name, &bytes, &last) < 0) {
			unlink_ent(dc, name);	/* another chunk size, torn */
			continue;
		}
		struct ent *e = calloc(1, sizeof(*e));
		if (!e)
			break;
		memcpy(e->name, name, sizeof(name));
		e->bytes = bytes;
		e->last = last;
		HASH_ADD_STR(dc->ents, name, e);
		if (!e->hh.tbl) {
			free(e);
			break;
		}
		dc->st.used += bytes;
	}
	closedir(d);
	*out = dc;
	return 0;
}

void dcache_free(struct dcache *dc)
{
	struct ent *e, *t;

	if (!dc)
		return;
	HASH_ITER(hh, dc->ents, e, t) {
		HASH_DEL(dc->ents, e);
		free(e);
	}
	if (dc->dirfd >= 0)
		close(dc->dirfd);
	pthread_mutex_destroy(&dc->lock);
	free(dc);
}

uint32_t dcache_chunk(const struct dcache *dc)
{
	return dc->chunk;
}

static uint64_t chunk_len(const struct dcache_obj *o, uint64_t idx)
{
	uint64_t c = o->dc->chunk, off = idx * c;

	return o->size - off < c ? o->size - off : c;
}

/* Opens or creates the two files of o (dc->lock held). */
static int obj_files(struct dcache *dc, struct dcache_obj *o, int fresh)
{
	char f[64];
	unsigned char h[HDR] = MAGIC;
	int flags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW;

	snprintf(f, sizeof(f), "%s.data", o->e->name);
	o->dfd = openat(dc->dirfd, f, flags | (fresh ? O_TRUNC : 0), 0600);
	snprintf(f, sizeof(f), "%s.map", o->e->name);
	o->mfd = openat(dc->dirfd, f, flags | (fresh ? O_TRUNC : 0), 0600);
	if (o->dfd < 0 || o->mfd < 0)
		return -errno;
	if (fresh) {
		memcpy(h + 8, &dc->chunk, 4);
		memcpy(h + 16, &o->size, 8);
		if (pwrite(o->mfd, h, HDR, 0) != HDR ||
		    ftruncate(o->mfd, (off_t)(HDR + 8 * o->n)) < 0 ||
		    ftruncate(o->dfd, (off_t)o->size) < 0)
			return errno ? -errno : -EIO;
		return 0;
	}
	if (pread(o->mfd, h, HDR, 0) != HDR || memcmp(h, MAGIC, 8) ||
	    memcmp(h + 16, &o->size, 8) ||
	    pread(o->mfd, o->map, 8 * o->n, HDR) != (ssize_t)(8 * o->n))
		return -EILSEQ;
	return 0;
}

static void obj_close(struct dcache_obj *o)
{
	if (o->dfd >= 0)
		close(o->dfd);
	if (o->mfd >= 0)
		close(o->mfd);
	free(o->map);
	free(o->busy);
	free(o->ok);
	free(o->gen);
	free(o);
}

int dcache_obj_open(struct dcache *dc, const char *key, uint64_t size,
		    struct dcache_obj **out)
{
	XXH128_hash_t h = XXH3_128bits(key, strlen(key));
	char name[33];
	struct ent *e;
	struct dcache_obj *o;
	int rc;

	snprintf(name, sizeof(name), "%016" PRIx64 "%016" PRIx64,
		 (uint64_t)h.high64, (uint64_t)h.low64);
	pthread_mutex_lock(&dc->lock);
	HASH_FIND_STR(dc->ents, name, e);
	if (e && e->open) {
		o = e->open;
		if (o->size != size) {
			pthread_mutex_unlock(&dc->lock);
			return -ESTALE;
		}
		o->refs++;
		e->last = now_ns();
		pthread_mutex_unlock(&dc->lock);
		*out = o;
		return 0;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		pthread_mutex_unlock(&dc->lock);
		return -ENOMEM;
	}
	o->dc = dc;
	o->refs = 1;
	o->dfd = o->mfd = -1;
	o->size = size;
	o->n = (size + dc->chunk - 1) / dc->chunk;
	o->map = calloc(o->n ? o->n : 1, 8);
	o->busy = calloc(o->n ? o->n : 1, 1);
	o->ok = calloc(o->n ? o->n : 1, 1);
	o->gen = calloc(o->n ? o->n : 1, sizeof(*o->gen));
	int fresh = !e;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (e) {
			memcpy(e->name, name, sizeof(name));
			HASH_ADD_STR(dc->ents, name, e);
			if (!e->hh.tbl) {
				free(e);
				e = NULL;
			}
		}
	}
	if (!o->map || !o->busy || !o->ok || !o->gen || !e) {
		pthread_mutex_unlock(&dc->lock);
		free(o->map);
		free(o->busy);
		free(o->ok);
		free(o->gen);
		free(o);
		return -ENOMEM;
	}
	o->e = e;
	rc = obj_files(dc, o, fresh);
	if (rc == -EILSEQ) {
		/* Unreadable map: start the object over. */
		dc->st.used -= e->bytes;
		e->bytes = 0;
		close(o->dfd);
		close(o->mfd);
		memset(o->map, 0, 8 * o->n);
		rc = obj_files(dc, o, 1);
	}
	if (rc) {
		HASH_DEL(dc->ents, e);
		dc->st.used -= e->bytes;
		unlink_ent(dc, e->name);
		free(e);
		pthread_mutex_unlock(&dc->lock);
		obj_close(o);
		return rc;
	}
	e->open = o;
	e->last = now_ns();
	pthread_mutex_unlock(&dc->lock);
	*out = o;
	return 0;
}

void dcache_obj_put(struct dcache_obj *o)
{
	struct dcache *dc;

	if (!o)
		return;
	dc = o->dc;
	pthread_mutex_lock(&dc->lock);
	if (--o->refs) {
		pthread_mutex_unlock(&dc->lock);
		return;
	}
	o->e->open = NULL;
	o->e->last = now_ns();
	pthread_mutex_unlock(&dc->lock);
	futimens(o->mfd, NULL);		/* last use, for the next mount */
	obj_close(o);
}

int dcache_has(struct dcache_obj *o, uint64_t idx)
{
	int r;

	if (idx >= o->n)
		return 0;
	pthread_mutex_lock(&o->dc->lock);
	r = o->map[idx] != 0;
	pthread_mutex_unlock(&o->dc->lock);
	return r;
}

static uint64_t chunk_hash(const void *buf, size_t len)
{
	uint64_t h = XXH3_64bits(buf, len);

	return h ? h : 1;
}

/* A chunk whose bytes did not match their hash (torn by a crash, or
 * damaged): forgotten, so it is fetched again. */
static void forget_bad(struct dcache *dc, struct dcache_obj *o, uint64_t idx,
		       uint64_t want)
{
	pthread_mutex_lock(&dc->lock);
	if (o->map[idx] == want) {
		o->map[idx] = 0;
		o->ok[idx] = 0;
		o->gen[idx]++;
		o->e->bytes -= dc->chunk;
		dc->st.used -= dc->chunk;
		uint64_t z = 0;
		(void)!pwrite(o->mfd, &z, 8, HDR + 8 * (off_t)idx);
	}
	dc->st.misses++;
	pthread_mutex_unlock(&dc->lock);
}

static long checked(struct dcache *dc, struct dcache_obj *o, uint64_t idx,
		    uint64_t want, uint64_t got, uint64_t len)
{
	if (got != want) {
		forget_bad(dc, o, idx, want);
		return 0;
	}
	pthread_mutex_lock(&dc->lock);
	if (o->map[idx] == want)
		o->ok[idx] = 1;
	dc->st.hits++;
	pthread_mutex_unlock(&dc->lock);
	return (long)len;
}

long dcache_read(struct dcache_obj *o, uint64_t idx, void *buf)
{
	struct dcache *dc = o->dc;
	uint64_t want, len;
	ssize_t n;

	if (idx >= o->n)
		return -EINVAL;
	len = chunk_len(o, idx);
	pthread_mutex_lock(&dc->lock);
	want = o->map[idx];
	if (!want)
		dc->st.misses++;
	pthread_mutex_unlock(&dc->lock);
	if (!want)
		return 0;
	n = pread(o->dfd, buf, len, (off_t)(idx * dc->chunk));
	return checked(dc, o, idx, want,
		       n == (ssize_t)len ? chunk_hash(buf, len) : 0, len);
}

/*
 * dcache_read's check without its copy: the chunk hashed in pieces
 * through one small buffer (a chunk is 16 MiB by default; a buffer that
 * large, fresh from the allocator, costs its page faults at every first
 * use). Returns the chunk's length, 0 if it failed (forgotten), -errno.
 */
static long check_chunk(struct dcache_obj *o, uint64_t idx, void *piece,
			size_t cap)
{
	struct dcache *dc = o->dc;
	uint64_t len = chunk_len(o, idx), want, h;
	XXH3_state_t *st = XXH3_createState();

	if (!st)
		return -ENOMEM;
	pthread_mutex_lock(&dc->lock);
	want = o->map[idx];
	pthread_mutex_unlock(&dc->lock);
	XXH3_64bits_reset(st);
	int whole = 1;
	for (uint64_t at = 0; want && at < len;) {
		size_t n = len - at < cap ? (size_t)(len - at) : cap;
		ssize_t r = pread(o->dfd, piece, n,
				  (off_t)(idx * dc->chunk + at));
		if (r != (ssize_t)n) {
			whole = 0;	/* short: as good as damaged */
			break;
		}
		XXH3_64bits_update(st, piece, n);
		at += n;
	}
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	if (!want) {
		pthread_mutex_lock(&dc->lock);
		dc->st.misses++;
		pthread_mutex_unlock(&dc->lock);
		return 0;
	}
	return checked(dc, o, idx, want, whole ? (h ? h : 1) : 0, len);
}

/* Forgets chunk i of o and frees its disk blocks (dc->lock held). */
static void punch(struct dcache *dc, struct dcache_obj *o, uint64_t i)
{
	uint64_t z = 0;

	o->map[i] = 0;
	o->ok[i] = 0;
	o->gen[i]++;	/* a reader that read it meanwhile reads again */
	(void)!pwrite(o->mfd, &z, 8, HDR + 8 * (off_t)i);
	(void)fallocate(o->dfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			(off_t)(i * dc->chunk), (off_t)dc->chunk);
	o->e->bytes -= dc->chunk;
	dc->st.used -= dc->chunk;
	dc->st.evicted += dc->chunk;
}

/*
 * Makes room for len more bytes (dc->lock held); chunk idx of o is being
 * filled. Closed objects go first, least recently used first; then,
 * since a mount keeps every layer open, chunks of open objects: the
 * largest object's lowest chunk (restores read upwards, so it is the
 * one read longest ago), never one being filled.
 */
static void evict(struct dcache *dc, struct dcache_obj *o, uint64_t idx,
		  uint64_t len)
{
	while (dc->st.used + len > dc->st.budget) {
		struct ent *e, *t, *lru = NULL, *big = NULL;

		HASH_ITER(hh, dc->ents, e, t) {
			if (!e->bytes)
				continue;
			if (!e->open && (!lru || e->last < lru->last))
				lru = e;
			if (e->open && (!big || e->bytes > big->bytes))
				big = e;
		}
		if (lru) {
			unlink_ent(dc, lru->name);
			dc->st.used -= lru->bytes;
			dc->st.evicted += lru->bytes;
			HASH_DEL(dc->ents, lru);
			free(lru);
			continue;
		}
		if (!big)
			return;
		struct dcache_obj *v = big->open;
		uint64_t i;
		for (i = 0; i < v->n && (!v->map[i] || v->busy[i] ||
					 (v == o && i == idx)); i++)
			;
		if (i == v->n)
			return;
		punch(dc, v, i);
	}
}

int dcache_fill(struct dcache_obj *o, uint64_t idx, const void *buf,
		size_t len)
{
	struct dcache *dc = o->dc;
	uint64_t h;
	int rc = 0;

	if (idx >= o->n || len != chunk_len(o, idx))
		return -EINVAL;
	if (dc->chunk > dc->st.budget)
		return -ENOSPC;	/* caches nothing: the caller serves it */
	pthread_mutex_lock(&dc->lock);
	if (o->map[idx] || o->busy[idx]) {
		pthread_mutex_unlock(&dc->lock);
		return 0;
	}
	o->busy[idx] = 1;
	evict(dc, o, idx, dc->chunk);
	/* Counted now so that concurrent fills respect the budget. */
	dc->st.used += dc->chunk;
	o->e->bytes += dc->chunk;
	pthread_mutex_unlock(&dc->lock);

	h = chunk_hash(buf, len);
	ssize_t n = pwrite(o->dfd, buf, len, (off_t)(idx * dc->chunk));
	if (n != (ssize_t)len)
		rc = n < 0 ? -errno : -ENOSPC;
	else if (pwrite(o->mfd, &h, 8, HDR + 8 * (off_t)idx) != 8)
		rc = -errno ? -errno : -EIO;

	pthread_mutex_lock(&dc->lock);
	if (rc == -ENOSPC || rc == -EDQUOT) {
		/*
		 * The file system is full before the budget: make what is
		 * there now the budget, so later fills evict instead of
		 * failing (the caller serves this chunk uncached).
		 */
		uint64_t now = dc->st.used - dc->chunk;
		dc->st.budget = now > dc->chunk ? now - dc->chunk : 0;
		dc->st.full = 1;
	}
	if (rc) {
		dc->st.used -= dc->chunk;
		o->e->bytes -= dc->chunk;
		dc->st.fill_errors++;
		(void)fallocate(o->dfd, FALLOC_FL_PUNCH_HOLE |
				FALLOC_FL_KEEP_SIZE, (off_t)(idx * dc->chunk),
				(off_t)dc->chunk);
	} else {
		o->map[idx] = h;
		o->ok[idx] = 1;	/* the bytes just written were hashed */
		dc->st.fills++;
	}
	o->busy[idx] = 0;
	pthread_mutex_unlock(&dc->lock);
	return rc;
}

#define CHECK_PIECE ((size_t)256 << 10)

long dcache_pread(struct dcache_obj *o, void *buf, size_t len, uint64_t off)
{
	struct dcache *dc = o->dc;
	uint64_t c = dc->chunk, first, last;
	unsigned char *tmp = NULL;
	uint32_t gens[64];

	if (off >= o->size || !len)
		return 0;
	if (len > o->size - off)
		len = (size_t)(o->size - off);
	first = off / c;
	last = (off + len - 1) / c;
	if (last - first >= 64)
		return 0;	/* callers read at most a few chunks */
	for (uint64_t i = first; i <= last; i++) {
		pthread_mutex_lock(&dc->lock);
		int present = o->map[i] != 0, ok = o->ok[i];
		pthread_mutex_unlock(&dc->lock);
		if (!present)
			goto miss;
		if (!ok) {
			/* First use since opened: check the chunk once. */
			if (!tmp && !(tmp = malloc(CHECK_PIECE)))
				return -ENOMEM;
			long n = check_chunk(o, i, tmp, CHECK_PIECE);
			if (n <= 0) {
				free(tmp);
				return n;
			}
		}
		pthread_mutex_lock(&dc->lock);
		gens[i - first] = o->gen[i];
		present = o->ok[i];
		pthread_mutex_unlock(&dc->lock);
		if (!present)
			goto miss;
	}
	free(tmp);
	tmp = NULL;
	ssize_t n = pread(o->dfd, buf, len, (off_t)off);
	if (n != (ssize_t)len)
		return n < 0 ? -errno : -EIO;
	/* Punched while we read (the hole reads as zeros): not served. */
	pthread_mutex_lock(&dc->lock);
	for (uint64_t i = first; i <= last; i++) {
		if (o->gen[i] != gens[i - first] || !o->ok[i]) {
			pthread_mutex_unlock(&dc->lock);
			goto miss;
		}
	}
	dc->st.hits++;
	pthread_mutex_unlock(&dc->lock);
	return (long)len;
miss:
	free(tmp);
	pthread_mutex_lock(&dc->lock);
	dc->st.misses++;
	pthread_mutex_unlock(&dc->lock);
	return 0;
}

void dcache_get_stats(struct dcache *dc, struct dcache_stats *st)
{
	pthread_mutex_lock(&dc->lock);
	*st = dc->st;
	pthread_mutex_unlock(&dc->lock);
}
