/* SPDX-License-Identifier: MIT */
/*
 * rwrite: the bucket's side of a change made by the mount that holds the
 * lease (see remote.h), and the polling of the mounts that only read.
 *
 * A commit in the bucket follows the local protocol (fs/store.h), with
 * snapshots.txt as the commit point:
 *   1. stage: the files the change brings in are put under keys no tree
 *      names yet -- their final key when the bucket has none, else
 *      .snapfs/tmp/NAME -- and renamed files copied to their new key;
 *   2. snapshots.txt, with the pending moves and deletes still to do;
 *   3. roll forward: copies from .snapfs/tmp/ over the keys they
 *      replace, deletes, then increments.txt and snapshots.txt without
 *      pending records.
 * A reader that meets pending records (or a layers file that disagrees
 * with the tree, between the two PUTs of step 3) waits and reads again;
 * it never opens a key the tree does not name yet, and a key replaced
 * under an open file answers 412 to its If-Match reads (EIO, never the
 * new bytes). A writer killed between 2 and 3 leaves the records; its
 * next mount (or the next writer's) finishes them.
 *
 * Not here: the lease (fs/rlease.c), the order of a commit's steps
 * (fs/store_commit.c), HTTP (fs/s3). Thread safety: uploads and the
 * listing are locked; the staging and roll-forward run in the mount's
 * serialised changes.
 */
#include "fs/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cache/dcache.h"
#include "codec/fdio.h"
#include "fs/msg.h"
#include "fs/remote_int.h"
#include "fs/store.h"
#include "fs/tree.h"

/* A file remote_upload() put in the bucket. */
struct upload {
	struct upload *next;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct s3_obj o;
	char key[];
};

static const char tmp_pre[] = STORE_META_DIR "/tmp/";

static int is_tmp(const char *path)
{
	return !strncmp(path, tmp_pre, sizeof(tmp_pre) - 1);
}

static int same_file(const struct upload *u, const struct stat *st)
{
	return u->dev == st->st_dev && u->ino == st->st_ino &&
	       u->size == st->st_size &&
	       u->mtime.tv_sec == st->st_mtim.tv_sec &&
	       u->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* The object remote_upload() made of fd's file as key: 0 or -ENOENT. */
static int uploaded(struct remote *r, const char *key, int fd,
		    struct s3_obj *o)
{
	struct stat st;
	int rc = -ENOENT;

	if (fstat(fd, &st) < 0)
		return -errno;
	pthread_mutex_lock(&r->up_lock);
	for (struct upload *u = r->ups; u; u = u->next) {
		if (!strcmp(u->key, key) && same_file(u, &st)) {
			*o = u->o;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&r->up_lock);
	return rc;
}

static void record(struct remote *r, const char *key, const struct stat *st,
		   const struct s3_obj *o)
{
	struct upload *u = malloc(sizeof(*u) + strlen(key) + 1);

	if (!u)
		return;	/* only costs an upload again at the commit */
	u->dev = st->st_dev;
	u->ino = st->st_ino;
	u->size = st->st_size;
	u->mtime = st->st_mtim;
	u->o = *o;
	strcpy(u->key, key);
	pthread_mutex_lock(&r->up_lock);
	/* One record per key: a file written again replaces the last. */
	for (struct upload **p = &r->ups; *p; p = &(*p)->next) {
		if (!strcmp((*p)->key, key)) {
			struct upload *old = *p;
			*p = old->next;
			free(old);
			break;
		}
	}
	u->next = r->ups;
	r->ups = u;
	pthread_mutex_unlock(&r->up_lock);
}

void uploads_free(struct remote *r)
{
	pthread_mutex_lock(&r->up_lock);
	while (r->ups) {
		struct upload *u = r->ups;
		r->ups = u->next;
		free(u);
	}
	pthread_mutex_unlock(&r->up_lock);
}

/* Puts fd's bytes into the disk cache as object key o: this host wrote
 * them and will read them (the next snapshot's source). Best effort. */
static void seed(struct remote *r, const char *key, const struct s3_obj *o,
		 int fd)
{
	struct dcache_obj *obj;
	uint64_t c = r->o.chunk;
	char ck[1600];
	void *buf;

	remote_cache_key(r, key, o, ck, sizeof(ck));
	if (dcache_obj_open(r->dc, ck, o->size, &obj))
		return;
	if ((buf = malloc(c))) {
		for (uint64_t i = 0; i * c < o->size; i++) {
			size_t len = (size_t)(o->size - i * c < c ?
					      o->size - i * c : c);
			if (fdio_pread(fd, buf, len, i * c) != (ssize_t)len ||
			    dcache_fill(obj, i, buf, len))
				break;
		}
		free(buf);
	}
	dcache_obj_put(obj);
}

int remote_upload(struct remote *r, const char *key, int fd, char *err,
		  size_t errlen)
{
	struct s3_obj o;
	struct stat st;
	char m[1024];
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	rc = s3_put_fd(r->s3, key, fd, (uint64_t)st.st_size, &o, m,
		       sizeof(m));
	if (rc) {
		msg_say(err, errlen, "%s (nothing was committed; the snapshot "
			"can be written again once the bucket answers)", m);
		return rc;
	}
	o.size = (uint64_t)st.st_size;
	if (!o.mtime)
		o.mtime = o.date ? o.date : (int64_t)time(NULL);
	atomic_fetch_add(&r->uploaded, o.size);
	record(r, key, &st, &o);
	if (!is_tmp(key)) {
		remote_keys_set(r, key, &o);
		seed(r, key, &o, fd);
	}
	return 0;
}

int remote_local_blob(struct remote *r, const char *key, int fd,
		      const char *label, struct blob **out)
{
	struct s3_obj o;
	struct stat id;
	int rc = uploaded(r, key, fd, &o);

	if (rc)
		return rc;
	remote_ident(&o, &id);
	return blob_from_dup_as(out, fd, &id, label);
}

/* --- a commit's steps --- */

/* The listing learns a key a copy made (size and Last-Modified are not
 * in a copy's answer); without it, the layer's open HEADs it. */
static void copied(struct remote *r, const char *key)
{
	struct s3_obj o;

	if (s3_head(r->s3, key, &o, NULL, 0) == 0)
		remote_keys_set(r, key, &o);
	else
		remote_keys_del(r, key);
}

int remote_stage(struct remote *r, const struct tree *next, int tmpfd,
		 char *err, size_t errlen)
{
	int rc = remote_writer(r) ? 0 : remote_lease_check(r, err, errlen);

	for (size_t i = 0; !rc && i < tree_npending(next); i++) {
		const struct tree_pending *p = tree_pending_at(next, i);
		struct s3_obj o;
		char m[1024];

		if (!p->from)
			continue;
		int exists = remote_lookup(r, p->to, &o) == 0;
		if (!is_tmp(p->from)) {
			/* A rename: the new key first, the old one goes
			 * after the commit point. */
			if (exists) {
				msg_say(err, errlen, "%s: %s exists in the "
					"bucket and is not a snapshot: remove it "
					"or pick another name", r->url, p->to);
				return -EEXIST;
			}
			rc = s3_copy(r->s3, p->from, p->to, &o, m, sizeof(m));
			if (rc) {
				msg_say(err, errlen, "%s", m);
				return rc;
			}
			copied(r, p->to);
			continue;
		}
		int fd = openat(tmpfd, p->from + sizeof(tmp_pre) - 1,
				O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			msg_say(err, errlen, "%s/%s: %s", remote_mirror(r),
				p->from, strerror(-rc));
			return rc;
		}
		/* This very file uploaded as its key already (the writer's
		 * close): done; the listing knows the key from that upload. */
		if (uploaded(r, p->to, fd, &o) == 0) {
			close(fd);
			continue;
		}
		rc = remote_upload(r, exists ? p->from : p->to, fd, err,
				   errlen);
		close(fd);
	}
	/* Last, after the uploads however long they took: the commit point
	 * follows at once. */
	return rc ? rc : remote_lease_check(r, err, errlen);
}

int remote_put_meta(struct remote *r, const char *name, char *err,
		    size_t errlen)
{
	char path[PATH_MAX + 64], m[1024];
	struct s3_obj o = { 0 };
	struct stat st;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", r->mirror, name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* The store was emptied: so is the bucket's copy. */
		rc = s3_delete(r->s3, name, m, sizeof(m));
		if (rc == -ENOENT)
			rc = 0;
	} else if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(m, sizeof(m), "%.900s: %s", path, strerror(-rc));
	} else {
		rc = s3_put_fd(r->s3, name, fd, (uint64_t)st.st_size, &o, m,
			       sizeof(m));
	}
	if (fd >= 0)
		close(fd);
	if (rc) {
		msg_say(err, errlen, "%s", m);
		return rc;
	}
	int i = !strcmp(name, STORE_LAYERS_FILE);
	snprintf(r->meta_etag[i], sizeof(r->meta_etag[i]), "%s", o.etag);
	return 0;
}

int remote_roll_forward(struct remote *r, const struct tree *t)
{
	int rc = 0;

	for (size_t i = 0; i < tree_npending(t); i++) {
		const struct tree_pending *p = tree_pending_at(t, i);
		struct s3_obj o;
		char m[1024];
		int e = 0;

		if (p->from && is_tmp(p->from)) {
			/* Staged over a key the tree names: copy it there.
			 * No staged object: it went straight to its key, or
			 * this was done before a crash. */
			e = s3_head(r->s3, p->from, &o, m, sizeof(m));
			if (!e)
				e = s3_copy(r->s3, p->from, p->to, &o, m,
					    sizeof(m));
			if (!e) {
				copied(r, p->to);
				e = s3_delete(r->s3, p->from, m, sizeof(m));
			}
		} else if (p->from) {
			/* A rename, copied at the staging (or not yet, if a
			 * crash came first). */
			if (remote_lookup(r, p->to, &o) &&
			    s3_head(r->s3, p->to, &o, NULL, 0) == -ENOENT) {
				e = s3_copy(r->s3, p->from, p->to, &o, m,
					    sizeof(m));
				if (!e)
					copied(r, p->to);
			}
			if (!e)
				e = s3_delete(r->s3, p->from, m, sizeof(m));
			if (!e || e == -ENOENT)
				remote_keys_del(r, p->from);
		} else {
			e = s3_delete(r->s3, p->to, m, sizeof(m));
			if (!e || e == -ENOENT)
				remote_keys_del(r, p->to);
		}
		if (e && e != -ENOENT) {
			remote_say(r, LOG_ERR, "%s: %s; the store's next writer "
				   "finishes this change", r->url, m);
			if (!rc)
				rc = e;
		}
	}
	return rc;
}

/* --- the mounts that only read --- */

int remote_changed(struct remote *r)
{
	static const char *files[] = { TREE_FILE, STORE_LAYERS_FILE };

	for (size_t i = 0; i < 2; i++) {
		struct s3_obj o;
		int rc = s3_head(r->s3, files[i], &o, NULL, 0);
		if (rc == -ENOENT)
			o.etag[0] = 0;
		else if (rc)
			return rc;
		if (strcmp(o.etag, r->meta_etag[i]))
			return 1;
	}
	return 0;
}

int remote_refresh(struct remote *r, char *err, size_t errlen)
{
	int rc = remote_sync_meta(r, err, errlen);

	if (!rc)
		rc = remote_relist(r, err, errlen);
	if (!rc)
		atomic_fetch_add(&r->refreshes, 1);
	return rc;
}
