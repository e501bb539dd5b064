/* SPDX-License-Identifier: MIT */
/*
 * remote: a store in an S3 bucket seen through a local mirror (see
 * remote.h): the listing, the mirror of the tree and layers files, open
 * and free, and derived data. Layer files read as blobs over the disk
 * cache: fs/rblob.c.
 */
#include "fs/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache/dcache.h"
#include "codec/zblob.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/remote_int.h"
#include "fs/store.h"

void remote_say(struct remote *r, int level, const char *fmt, ...)
{
	char m[1024];
	va_list ap;

	if (!r->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	r->o.log(r->o.log_ctx, level, m);
}

/* mkdir -p for the cache directory (ours: 0700). */
static int mkdirs(const char *path)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void default_cache_dir(char *out, size_t cap)
{
	const char *v = getenv("SNAPFS_CACHE_DIR");

	if (v && *v)
		snprintf(out, cap, "%s", v);
	else if (geteuid() == 0)
		snprintf(out, cap, "/var/cache/snapfs");
	else if ((v = getenv("XDG_CACHE_HOME")) && *v)
		snprintf(out, cap, "%s/snapfs", v);
	else
		snprintf(out, cap, "%s/.cache/snapfs",
			 getenv("HOME") ? getenv("HOME") : "/tmp");
}

/* Writes buf as mirror/name atomically. */
static int mirror_write(struct remote *r, const char *name, const void *buf,
			size_t len)
{
	char tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", r->mirror, name);
	snprintf(dst, sizeof(dst), "%s/%s", r->mirror, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len)
		rc = errno ? -errno : -ENOSPC;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, dst) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/*
 * Fetches the store's small files into the mirror, noting their ETags
 * (what remote_changed() compares). The tree first: a writer replaces it
 * first (fs/rwrite.c), so a tree older than the layers file is the one
 * mix this can read, and the store's load treats it as lines added on
 * top, or refuses it and the caller tries again.
 */
int remote_sync_meta(struct remote *r, char *err, size_t errlen)
{
	static const char *files[] = { TREE_FILE, STORE_LAYERS_FILE };
	char m[1024];

	for (size_t i = 0; i < 2; i++) {
		struct s3_obj o = { 0 };
		void *buf;
		size_t len;
		int rc = s3_get(r->s3, files[i], 64 << 20, &buf, &len, &o,
				m, sizeof(m));
		if (rc == -ENOENT) {
			char p[PATH_MAX + 64];
			snprintf(p, sizeof(p), "%s/%s", r->mirror, files[i]);
			if (unlink(p) < 0 && errno != ENOENT)
				return -errno;
			r->meta_etag[i][0] = 0;
			if (i == 1 && !remote_writer(r)) {
				msg_say(err, errlen, "%s: no %s there (%s): "
					"not a snapfs store (upload one with "
					"aws s3 sync STORE %s, or check the "
					"bucket and prefix; -o writer makes a "
					"new one)", r->url, STORE_LAYERS_FILE,
					strstr(m, "HTTP") ? strstr(m, "HTTP") :
					m, r->url);
				return -ENOENT;
			}
			continue;
		}
		if (rc) {
			msg_say(err, errlen, "%s", m);
			return rc;
		}
		rc = mirror_write(r, files[i], buf, len);
		free(buf);
		if (rc) {
			msg_say(err, errlen, "%s/%s: %s (the cache directory; "
				"-o cache_dir= moves it)", r->mirror, files[i],
				strerror(-rc));
			return rc;
		}
		snprintf(r->meta_etag[i], sizeof(r->meta_etag[i]), "%s",
			 o.etag);
	}
	return 0;
}

static int list_cb(void *arg, const char *key, const struct s3_obj *o)
{
	struct entry **keys = arg, *e;
	size_t n = strlen(key) + 1;

	/* Derived data is fetched by name when wanted, not listed. */
	if (strncmp(key, STORE_META_DIR "/", sizeof(STORE_META_DIR)) == 0)
		return 0;
	e = malloc(sizeof(*e) + n);
	if (!e)
		return -ENOMEM;
	e->o = *o;
	memcpy(e->key, key, n);
	HASH_ADD_KEYPTR(hh, *keys, e->key, n - 1, e);
	if (!e->hh.tbl) {
		free(e);
		return -ENOMEM;
	}
	return 0;
}

static void keys_free(struct entry **keys)
{
	struct entry *e, *t;

	HASH_ITER(hh, *keys, e, t) {
		HASH_DEL(*keys, e);
		free(e);
	}
}

int remote_relist(struct remote *r, char *err, size_t errlen)
{
	struct entry *keys = NULL;
	char m[1024];
	int rc = s3_list(r->s3, "", list_cb, &keys, m, sizeof(m));

	if (rc) {
		keys_free(&keys);
		msg_say(err, errlen, "%s", rc == -ENOMEM ? "out of memory" : m);
		return rc;
	}
	pthread_mutex_lock(&r->keys_lock);
	struct entry *old = r->keys;
	r->keys = keys;
	pthread_mutex_unlock(&r->keys_lock);
	keys_free(&old);
	return 0;
}

/* The listing as this mount knows it: taken at open, changed by this
 * mount's own commits (fs/rwrite.c) and by refreshes. */
int remote_lookup(struct remote *r, const char *file, struct s3_obj *o)
{
	struct entry *e;
	int rc = -ENOENT;

	pthread_mutex_lock(&r->keys_lock);
	HASH_FIND_STR(r->keys, file, e);
	if (e) {
		*o = e->o;
		rc = 0;
	}
	pthread_mutex_unlock(&r->keys_lock);
	return rc;
}

void remote_keys_set(struct remote *r, const char *key, const struct s3_obj *o)
{
	struct entry *e;

	pthread_mutex_lock(&r->keys_lock);
	HASH_FIND_STR(r->keys, key, e);
	if (e)
		e->o = *o;
	pthread_mutex_unlock(&r->keys_lock);
	if (!e) {
		/* A key missing from the listing only costs a HEAD later. */
		pthread_mutex_lock(&r->keys_lock);
		(void)list_cb(&r->keys, key, o);
		pthread_mutex_unlock(&r->keys_lock);
	}
}

void remote_keys_del(struct remote *r, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&r->keys_lock);
	HASH_FIND_STR(r->keys, key, e);
	if (e) {
		HASH_DEL(r->keys, e);
		free(e);
	}
	pthread_mutex_unlock(&r->keys_lock);
}

int remote_stat(struct remote *r, const char *file, struct stat *st)
{
	struct s3_obj o;

	if (remote_lookup(r, file, &o))
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_size = (off_t)o.size;
	st->st_mtim.tv_sec = (time_t)o.mtime;
	return 0;
}

void remote_cache_key(const struct remote *r, const char *file,
		      const struct s3_obj *o, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s\n%s\n%s\n%" PRIu64, r->url, file, o->etag,
		 o->size);
}

void remote_ident(const struct s3_obj *o, struct stat *st)
{
	/* The ETag and size, the same on every host. */
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0600;
	st->st_uid = geteuid();
	st->st_gid = getegid();
	st->st_nlink = 1;
	st->st_size = (off_t)o->size;
	st->st_ino = (ino_t)XXH3_64bits(o->etag, strlen(o->etag));
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((o->size + 511) / 512);
}

int remote_open(struct remote **out, const char *url,
		const struct remote_opts *o, char *err, size_t errlen)
{
	struct remote *r = calloc(1, sizeof(*r));
	struct s3_conf conf;
	char m[1024], dir[PATH_MAX + 32];
	int rc;

	if (!r)
		return -ENOMEM;
	r->o = *o;
	pthread_mutex_init(&r->ws_lock, NULL);
	pthread_mutex_init(&r->keys_lock, NULL);
	pthread_mutex_init(&r->up_lock, NULL);
	if (!r->o.chunk)
		r->o.chunk = 16 << 20;
	if (!r->o.parallel)
		r->o.parallel = 8;
	if (!r->o.ahead)
		r->o.ahead = r->o.parallel;
	if (!r->o.disk_cache)
		r->o.disk_cache = (uint64_t)8 << 30;
	snprintf(r->url, sizeof(r->url), "%s", url);
	if ((rc = s3_conf_load(&conf, url, o->endpoint, err, errlen)))
		goto fail;
	if (o->timeout_ms)
		conf.timeout_ms = o->timeout_ms;
	r->stall_ms = conf.timeout_ms ? conf.timeout_ms : 30000;
	if (o->retries)
		conf.retries = o->retries;
	if (o->part_size)
		conf.part_size = o->part_size;
	conf.log = o->log;
	conf.log_ctx = o->log_ctx;
	if ((rc = s3_new(&r->s3, &conf, err, errlen)))
		goto fail;
	if (o->cache_dir && strlen(o->cache_dir) >= sizeof(r->cache_dir)) {
		msg_say(err, errlen, "-o cache_dir=%s: path too long",
			o->cache_dir);
		rc = -ENAMETOOLONG;
		goto fail;
	}
	if (o->cache_dir)
		snprintf(r->cache_dir, sizeof(r->cache_dir), "%s",
			 o->cache_dir);
	else
		default_cache_dir(r->cache_dir, sizeof(r->cache_dir));
	/* One mirror per store: endpoint, bucket and prefix name it. */
	char id[1800];
	snprintf(id, sizeof(id), "%s\n%s\n%s", conf.endpoint, conf.bucket,
		 conf.prefix);
	XXH128_hash_t h = XXH3_128bits(id, strlen(id));
	snprintf(r->mirror, sizeof(r->mirror), "%s/stores/%016" PRIx64
		 "%016" PRIx64, r->cache_dir, (uint64_t)h.high64,
		 (uint64_t)h.low64);
	snprintf(dir, sizeof(dir), "%s/objects", r->cache_dir);
	if ((rc = mkdirs(r->mirror)) || (rc = mkdirs(dir))) {
		msg_say(err, errlen, "%s: cannot create the cache directory: "
			"%s (give a writable one with -o cache_dir=)",
			r->cache_dir, strerror(-rc));
		goto fail;
	}
	if ((rc = dcache_open(&r->dc, dir, r->o.disk_cache, r->o.chunk, m,
			      sizeof(m)))) {
		msg_say(err, errlen, "%s", m);
		goto fail;
	}
	/* The lease before the store's files: a writer reads them as the
	 * lease leaves them. */
	if (r->o.writer && (rc = remote_lease_take(r, err, errlen)))
		goto fail;
	if ((rc = remote_sync_meta(r, err, errlen)))
		goto fail;
	/* One listing instead of a HEAD per layer; the store's checks of
	 * which files exist read it too. */
	if ((rc = remote_relist(r, err, errlen)))
		goto fail;
	*out = r;
	return 0;
fail:
	remote_free(r);
	return rc;
}

void remote_free(struct remote *r)
{
	if (!r)
		return;
	remote_prefetch_stop(r);
	remote_lease_drop(r);
	ws_free(r);
	pthread_mutex_destroy(&r->ws_lock);
	keys_free(&r->keys);
	uploads_free(r);
	pthread_mutex_destroy(&r->keys_lock);
	pthread_mutex_destroy(&r->up_lock);
	dcache_free(r->dc);
	s3_free(r->s3);
	free(r);
}

const char *remote_mirror(const struct remote *r)
{
	return r->mirror;
}

/* --- derived data --- */

int remote_fetch_derived(struct remote *r, const char *sub, const char *name)
{
	char key[PATH_MAX], tmp[PATH_MAX + 64], dst[PATH_MAX + 64];
	void *buf;
	size_t len;
	int fd, rc;

	snprintf(dst, sizeof(dst), "%s/%s/%s/%s", r->mirror, STORE_META_DIR,
		 sub, name);
	if (access(dst, F_OK) == 0)
		return 0;
	snprintf(key, sizeof(key), "%s/%s/%s", STORE_META_DIR, sub, name);
	rc = s3_get(r->s3, key, (size_t)1 << 34, &buf, &len, NULL, NULL, 0);
	if (rc)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s/%s/tmp/fetch.%s.%s", r->mirror,
		 STORE_META_DIR, sub, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0644);
	rc = fd < 0 ? -errno : 0;
	if (!rc && write(fd, buf, len) != (ssize_t)len)
		rc = errno ? -errno : -ENOSPC;
	if (fd >= 0 && close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, dst) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	free(buf);
	return rc;
}

/*
 * Derived data read in place of stored bytes (aux files, plain copies of
 * patches) goes up compressed, as NAME.zst in the seekable format, and is
 * read through a zblob: every host that reads a snapshot fetches these,
 * and an aux file (target copies materialised) is mostly repeats. Indexes
 * and checksums are fetched whole and small: they go up as they are, and
 * so do aux files made compressed already (.auxz, fs/ibuild.c).
 */
static int compressed_sub(const char *sub, const char *name)
{
	size_t n = strlen(name);

	if (n > 5 && !strcmp(name + n - 5, ".auxz"))
		return 0;
	return !strcmp(sub, "aux") || !strcmp(sub, "plain");
}

/* Compresses the file at fd into a temporary under the mirror and
 * uploads that as key. */
static int put_zst(struct remote *r, int fd, const char *key,
		   const char *name, char *m, size_t mlen)
{
	struct zframe_writer_opts zo = { .nthreads = 1 };
	char tmp[PATH_MAX + 64];
	struct s3_obj o;
	int tfd, rc;

	snprintf(tmp, sizeof(tmp), "%s/%s/tmp/zup.%s", r->mirror,
		 STORE_META_DIR, name);
	tfd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		   0600);
	rc = tfd < 0 ? -errno : zframe_compress_fd(fd, tfd, &zo);
	if (rc)
		snprintf(m, mlen, "%.900s: cannot compress for upload: %s", tmp,
			 strerror(-rc));
	struct stat st;
	if (!rc && fstat(tfd, &st) < 0)
		rc = -errno;
	if (!rc)
		rc = s3_put_fd(r->s3, key, tfd, (uint64_t)st.st_size, &o, m,
			       mlen);
	if (tfd >= 0) {
		close(tfd);
		unlink(tmp);
	}
	return rc;
}

int remote_put_derived(struct remote *r, const char *sub, const char *name)
{
	char key[PATH_MAX], path[PATH_MAX + 64], m[1024] = "";
	struct stat st;
	int fd, rc;

	if (atomic_load(&r->no_upload))
		return 0;
	snprintf(path, sizeof(path), "%s/%s/%s/%s", r->mirror,
		 STORE_META_DIR, sub, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	snprintf(key, sizeof(key), "%s/%s/%s%s", STORE_META_DIR, sub, name,
		 compressed_sub(sub, name) ? ".zst" : "");
	if (compressed_sub(sub, name))
		rc = put_zst(r, fd, key, name, m, sizeof(m));
	else if (fstat(fd, &st) < 0)
		rc = -errno;
	else
		rc = s3_put_fd(r->s3, key, fd, (uint64_t)st.st_size, NULL, m,
			       sizeof(m));
	close(fd);
	if (rc == -EACCES && !atomic_exchange(&r->no_upload, 1))
		remote_say(r, LOG_WARNING, "%s: derived data is not shared with "
		    "other hosts (they build their own): %s", r->url, m);
	else if (rc && rc != -EACCES)
		remote_say(r, LOG_WARNING, "%s: %s", r->url, m);
	return rc;
}

int remote_open_derived(struct remote *r, const char *sub, const char *name,
			const char *label, struct blob **out)
{
	char key[PATH_MAX];
	struct blob *z;
	int rc;

	if (compressed_sub(sub, name)) {
		snprintf(key, sizeof(key), "%s/%s/%s.zst", STORE_META_DIR, sub,
			 name);
		rc = remote_open_blob(r, key, &z, NULL, 0);
		if (!rc) {
			const char *why = "";
			rc = zblob_open(out, z, label, &why);
			blob_put(z);
			if (rc)
				remote_say(r, LOG_WARNING, "%s/%s: %s; building "
					   "it here", r->url, key, why);
			return rc;
		}
		if (rc != -ENOENT)
			return rc;
	}
	/* As it is: a bucket an older snapfs wrote to, or an index. */
	snprintf(key, sizeof(key), "%s/%s/%s", STORE_META_DIR, sub, name);
	return remote_open_blob(r, key, out, NULL, 0);
}

void remote_get_stats(struct remote *r, struct remote_stats *st)
{
	struct dcache_stats d;

	memset(st, 0, sizeof(*st));
	s3_get_stats(r->s3, &st->s3);
	dcache_get_stats(r->dc, &d);
	st->cache_budget = d.budget;
	st->cache_used = d.used;
	st->cache_hits = d.hits;
	st->cache_misses = d.misses;
	st->fetched = atomic_load(&r->fetched);
	st->prefetched = atomic_load(&r->prefetched);
	st->uploaded = atomic_load(&r->uploaded);
	st->refreshes = atomic_load(&r->refreshes);
}
