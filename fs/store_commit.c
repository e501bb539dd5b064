/* SPDX-License-Identifier: MIT */
/*
 * store_commit: every change made to the store on disk: one atomic step
 * (store_replace), the commit protocol (snapshots.txt first, then the
 * pending moves and the increments.txt rewrite, rolled forward again
 * after a crash), the checks a committed tree must pass, sweeps of
 * derived data. Not here: opening and locking (fs/store.c), reading the
 * files (fs/store_load.c).
 *
 * increments.txt is rewritten from the tree's current line; its comment
 * and blank lines are kept, each after the layer line it followed (the
 * same snapshot, by id: its file may have been renamed meanwhile).
 */
#include "fs/store_int.h"
#include "fs/msg.h"
#include "fs/remote.h"
#include "fs/safefile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/fdio.h"

static int valid_path(const char *p)
{
	if (!*p || p[0] == '/')
		return 0;
	for (const char *s = p; s; s = strchr(s, '/')) {
		if (*s == '/')
			s++;
		if (!strncmp(s, "..", 2) && (s[2] == '/' || !s[2]))
			return 0;
	}
	return 1;
}

/* --- one atomic step --- */

int store_replace(int dirfd, const char *name,
		  int (*fill)(int fd, void *arg), void *arg)
{
	char tmp[512];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* A stale temporary (or a symlink planted there) goes first: the
	 * new one is created exclusively, never through a link. */
	fd = safefile_create(dirfd, tmp, 0644, NULL);
	if (fd < 0)
		return fd;
	rc = fill(fd, arg);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name) < 0)
		rc = -errno;
	if (!rc && fsync(dirfd) < 0)
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	return rc;
}

struct buf_arg {
	const char *p;
	size_t len;
};

static int fill_buf(int fd, void *arg)
{
	struct buf_arg *b = arg;
	return fdio_write(fd, b->p, b->len);
}

/* Checks what every snapshot's file name must be: inside the store, a
 * usable shown name, no two alike. */
int store_check_tree(struct store *s, const struct tree *t, char *err,
		     size_t errlen)
{
	size_t n = tree_count(t);
	char (*names)[256] = calloc(n ? n : 1, sizeof(*names));

	if (!names)
		return -ENOMEM;
	if (n > STORE_MAX_LAYERS) {
		msg_say(err, errlen, "%s: more than %d snapshots: remove old "
			"ones", s->dir, STORE_MAX_LAYERS);
		free(names);
		return -E2BIG;
	}
	for (size_t i = 0; i < n; i++) {
		const char *file = tree_at(t, i)->file;
		if (!valid_path(file)) {
			msg_say(err, errlen, "%s: '%s' is named as a layer; paths "
				"must be relative to the store and stay inside "
				"it: fix %s", s->dir, file,
				tree_explicit(t) ? TREE_FILE : STORE_LAYERS_FILE);
			free(names);
			return -EINVAL;
		}
		if (store_name_of(file, names[i], sizeof(names[i])) < 0) {
			msg_say(err, errlen, "%s: '%s' gives no usable name: "
				"rename the file", s->dir, file);
			free(names);
			return -EINVAL;
		}
		for (size_t k = 0; k < i; k++) {
			if (!strcmp(names[k], names[i])) {
				msg_say(err, errlen, "%s: '%s' and '%s' would "
					"both show as '%s': rename one", s->dir,
					tree_at(t, k)->file, file, names[i]);
				free(names);
				return -EEXIST;
			}
		}
	}
	free(names);
	return 0;
}

/* --- the commit protocol --- */

int store_fill_layers(int fd, void *arg)
{
	struct store *s = arg;
	uint32_t ids[STORE_MAX_LAYERS + 1];
	size_t n = tree_line(s->tree, tree_current(s->tree), ids,
			     STORE_MAX_LAYERS + 1);
	FILE *f = fdopen(dup(fd), "w");
	char *done;
	int rc = 0;

	if (!f)
		return -errno;
	done = calloc(s->nextra ? s->nextra : 1, 1);
	if (!done) {
		fclose(f);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->nextra; i++)
		if (!s->extra[i].after)
			fprintf(f, "%s\n", s->extra[i].text), done[i] = 1;
	for (size_t i = 0; i < n && i <= STORE_MAX_LAYERS; i++) {
		fprintf(f, "%s\n", tree_get(s->tree, ids[i])->file);
		for (size_t k = 0; k < s->nextra; k++) {
			if (!done[k] && s->extra[k].after == ids[i]) {
				fprintf(f, "%s\n", s->extra[k].text);
				done[k] = 1;
			}
		}
	}
	/* Comments whose layer line is gone stay, at the end. */
	for (size_t k = 0; k < s->nextra; k++)
		if (!done[k])
			fprintf(f, "%s\n", s->extra[k].text);
	free(done);
	if (fflush(f) != 0 || ferror(f))
		rc = -EIO;
	if (fclose(f) != 0 && !rc)
		rc = -errno;
	return rc;
}

static int write_tree(struct store *s, const struct tree *t)
{
	struct buf_arg b;
	char *txt;
	int rc = tree_format(t, &txt, &b.len);

	if (rc)
		return rc;
	b.p = txt;
	rc = store_replace(s->dirfd, TREE_FILE, fill_buf, &b);
	free(txt);
	return rc;
}

/* A pending move's source: ".snapfs/tmp/NAME" or a store path. */
static int src_at(struct store *s, const char *from, const char **name)
{
	static const char pre[] = STORE_META_DIR "/tmp/";

	if (!strncmp(from, pre, sizeof(pre) - 1)) {
		*name = from + sizeof(pre) - 1;
		return s->subfd[TMP_SUB];
	}
	*name = from;
	return s->dirfd;
}

/* Does what s->tree's pending records ask: idempotent, so a second run
 * after a crash in the middle finds the done parts done. A store in a
 * bucket does them there (fs/rwrite.c) and keeps no layer file in its
 * mirror: a file staged in .snapfs/tmp is only removed. */
int store_roll_forward(struct store *s)
{
	int rc = s->remote ? remote_roll_forward(s->remote, s->tree) : 0;

	for (size_t i = 0; i < tree_npending(s->tree); i++) {
		const struct tree_pending *p = tree_pending_at(s->tree, i);
		if (!valid_path(p->to))
			return -EINVAL;
		if (p->from) {
			const char *name;
			int dfd = src_at(s, p->from, &name);
			if (s->remote) {
				if (dfd != s->dirfd)
					unlinkat(dfd, name, 0);
				continue;
			}
			if (renameat(dfd, name, s->dirfd, p->to) < 0 &&
			    errno != ENOENT && !rc)
				rc = -errno;
		} else if (s->remote) {
			continue;
		} else if (unlinkat(s->dirfd, p->to, 0) < 0 && errno != ENOENT &&
			   !rc) {
			rc = -errno;
		}
	}
	if (!rc && fsync(s->dirfd) < 0)
		rc = -errno;
	if (!rc && tree_count(s->tree))
		rc = store_replace(s->dirfd, STORE_LAYERS_FILE,
				   store_fill_layers, s);
	else if (!rc && unlinkat(s->dirfd, STORE_LAYERS_FILE, 0) < 0 &&
		 errno != ENOENT)
		rc = -errno;
	if (!rc && s->remote)
		rc = remote_put_meta(s->remote, STORE_LAYERS_FILE, NULL, 0);
	if (!rc && tree_npending(s->tree)) {
		tree_clear_pending(s->tree);
		rc = write_tree(s, s->tree);
		if (!rc && s->remote)
			rc = remote_put_meta(s->remote, TREE_FILE, NULL, 0);
	}
	return rc;
}

int store_commit(struct store *s, struct tree *next, char *err,
		 size_t errlen)
{
	int rc = s->ro ? -EROFS : store_check_tree(s, next, err, errlen);

	if (rc == -EROFS && s->remote)
		msg_say(err, errlen, "%s: this mount only reads the store in "
			"the bucket: mount it with -o writer to change it (one "
			"writer per store)", s->dir);
	else if (rc == -EROFS)
		msg_say(err, errlen, "%s: opened read-only (it is mounted?): "
			"change it through the mount", s->dir);
	/* In a bucket: what the change brings in goes under keys no tree
	 * names yet, before the commit point (fs/rwrite.c). */
	if (!rc && s->remote)
		rc = remote_stage(s->remote, next, s->subfd[TMP_SUB], err,
				  errlen);
	if (rc) {
		tree_free(next);
		return rc;
	}
	tree_set_explicit(next);
	rc = write_tree(s, next);
	if (rc) {
		msg_say(err, errlen, "%s/%s: cannot write: %s; nothing was "
			"changed", s->dir, TREE_FILE, strerror(-rc));
		tree_free(next);
		return rc;
	}
	/* The bucket's commit point: its tree file. */
	if (s->remote && (rc = remote_put_meta(s->remote, TREE_FILE, err,
					       errlen))) {
		(void)write_tree(s, s->tree);	/* the mirror as before */
		tree_free(next);
		return rc;
	}
	/* Committed. */
	tree_free(s->tree);
	s->tree = next;
	rc = store_roll_forward(s);
	if (s->max)
		s->used = store_walk_bytes(s->dirfd, 0);
	if (rc)
		msg_say(err, errlen, "%s: the change is committed, but finishing "
			"it on disk failed (%s); the next mount finishes it",
			s->dir, strerror(-rc));
	return 0;
}

void store_sweep(struct store *s, const char *sub,
		 int (*keep)(const char *name, void *arg), void *arg)
{
	int dfd = store_subdir(s, sub), fd = dfd >= 0 ? dup(dfd) : -1;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	/* A dup shares the read position with the store's fd, which an
	 * earlier sweep left at the end. */
	rewinddir(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || (keep && keep(de->d_name, arg)))
			continue;
		unlinkat(dfd, de->d_name, 0);
	}
	closedir(d);
}
