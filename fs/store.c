/* SPDX-License-Identifier: MIT */
/*
 * store: the store directory, its lock, its capacity bound, the remote
 * hooks and the accessors (see store.h). Not here: reading the layers
 * file and the tree (fs/store_load.c), changes on disk (fs/store_commit.c);
 * what the three share is in fs/store_int.h.
 *
 * The lock is an flock() on .snapfs/lock held for the life of the store
 * handle; the file also records the holder's pid for the error message a
 * second mount prints. flock dies with the process, so a killed snapfs
 * never leaves the store locked.
 */
#include "fs/store_int.h"
#include "fs/msg.h"
#include "fs/remote.h"
#include "fs/safefile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/fdio.h"

static const char *const subdirs[] = {
	"index", "plain", "base", "sums", "aux", "full", "tmp",
};
_Static_assert(sizeof(subdirs) / sizeof(subdirs[0]) == NSUB,
	       "NSUB in fs/store_int.h");

/* fstatat of a store file, without following symlinks; for a remote
 * store, from the bucket's listing. 0 or -1 with errno. */
int store_stat_file(const struct store *s, const char *path,
		    struct stat *st)
{
	if (s->remote) {
		int rc = remote_stat(s->remote, path, st);
		if (rc) {
			errno = -rc;
			return -1;
		}
		return 0;
	}
	return fstatat(s->dirfd, path, st, AT_SYMLINK_NOFOLLOW);
}

int store_name_of(const char *path, char *name, size_t cap)
{
	const char *base = strrchr(path, '/');
	const char *dot;
	size_t len;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
	if (len == 0 || len >= cap)
		return -ENAMETOOLONG;
	memcpy(name, base, len);
	name[len] = 0;
	return 0;
}

/* Bytes of the regular files beneath dfd (depth: how deep it is
 * already; .snapfs has two levels). Not following symlinks, never
 * blocking. Unreadable entries count as 0. */
uint64_t store_walk_bytes(int dfd, int depth)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	uint64_t sum = 0;
	struct stat st;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	rewinddir(d);	/* a dup shares the offset of the last walk */
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			sum += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode) && depth < 3) {
			int sub = openat(dfd, de->d_name, O_RDONLY |
					 O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				sum += store_walk_bytes(sub, depth + 1);
				close(sub);
			}
		}
	}
	closedir(d);
	return sum;
}

void store_set_max(struct store *s, uint64_t max)
{
	s->max = max;
	if (max)
		s->used = store_walk_bytes(s->dirfd, 0);
}

uint64_t store_max(const struct store *s)
{
	return s->max;
}

uint64_t store_used(const struct store *s)
{
	/* What is being written now sits in .snapfs/tmp: walked each time
	 * (a few files). */
	return s->used + store_walk_bytes(s->subfd[TMP_SUB], 3);
}

int store_room(const struct store *s, uint64_t extra)
{
	if (!s->max)
		return 0;
	return store_used(s) + extra > s->max ? -ENOSPC : 0;
}

static uint64_t file_bytes(const struct store *s, const char *file)
{
	struct stat st;

	if (store_stat_file(s, file, &st) < 0)
		return 0;
	return (uint64_t)st.st_size;
}

int store_remove_room(const struct store *s, uint32_t id)
{
	const struct tree_node *n = tree_get(s->tree, id);
	size_t k = n ? tree_children(s->tree, id, NULL, 0) : 0;
	uint32_t kids[64];
	uint64_t need = 0;

	if (!s->max || !k)
		return 0;	/* a leaf: removing it only frees room */
	/* Each child's new patch is taken to be at most its old one plus
	 * the removed one's (the two it replaces); a base's new base is its
	 * full state, at most the base file plus the patch. Both exist until
	 * the commit. Over 64 children: counted as 64, then some slack. */
	need = file_bytes(s, n->file);
	tree_children(s->tree, id, kids, 64);
	for (size_t i = 0; i < k && i < 64; i++)
		need += file_bytes(s, tree_get(s->tree, kids[i])->file) +
			file_bytes(s, n->file);
	return store_room(s, need);
}

int store_rewrite_room(const struct store *s, uint32_t id)
{
	const struct tree_node *n = tree_get(s->tree, id);

	return n ? store_room(s, file_bytes(s, n->file)) : 0;
}

void store_bytes(const struct store *s, uint64_t *own, uint64_t *meta)
{
	*meta = store_walk_bytes(s->metafd, 1);
	*own = store_walk_bytes(s->dirfd, 0) - *meta;
}

static int take_lock(struct store *s, char *err, size_t errlen)
{
	const char *why = "";
	char buf[PATH_MAX + 128];
	int n;

	s->lockfd = safefile_open(s->metafd, "lock", O_RDWR | O_CREAT, 0644,
				  NULL, &why);
	if (s->lockfd < 0) {
		int rc = s->lockfd;
		s->lockfd = -1;
		msg_say(err, errlen, "%s/%s/lock: %s; remove it (it holds only "
			"the pid of the mount)", s->dir, STORE_META_DIR, why);
		return rc;
	}
	/* A snapfs that was just unmounted or killed may still be exiting
	 * (it lets go of the lock first thing after the unmount, but the
	 * kernel returns from fusermount3 -u before that): wait a little for
	 * it before naming it. */
	int got = -1, e = 0;
	for (int i = 0; i < 50; i++) {
		got = flock(s->lockfd, LOCK_EX | LOCK_NB);
		if (got == 0 || errno != EWOULDBLOCK)
			break;
		usleep(100 * 1000);
	}
	if (got < 0) {
		e = errno;
		/* The holder's pid and host, for the message. */
		n = (int)pread(s->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		char *on = strstr(buf, "\nmount ");	/* store_note_mount */
		if (on) {
			on += 7;
			on[strcspn(on, "\n")] = 0;
		}
		buf[strcspn(buf, "\n")] = 0;
		/* The store's words, shown to whoever mounts: escaped, so
		 * that no control byte reaches their terminal or log. */
		char who[64], where[PATH_MAX];
		msg_escape(*buf ? buf : "?", who, sizeof(who));
		msg_escape(on ? on : "", where, sizeof(where));
		if (e == EWOULDBLOCK)
			msg_say(err, errlen, "%s: store is in use by another "
				"snapfs (pid %s%s%s, still holding %s/lock "
				"after 5 s); unmount that first", s->dir,
				who, on ? ", mounted on " : "", where,
				STORE_META_DIR);
		else
			msg_say(err, errlen, "%s/%s/lock: %s", s->dir,
				STORE_META_DIR, strerror(e));
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	/* The pid is only a hint for the message above: errors ignored. */
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(s->lockfd, 0) == 0)
		(void)!pwrite(s->lockfd, buf, (size_t)n, 0);
	return 0;
}

void store_free_extra(struct extra *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(x[i].text);
	free(x);
}

static int open_store(struct store **out, const char *dir, int ro,
		      struct remote *remote, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	const char *why = "";
	int rc;

	if (!s)
		return -ENOMEM;
	s->dirfd = s->metafd = s->lockfd = -1;
	s->ro = ro;
	s->remote = remote;
	for (size_t i = 0; i < NSUB; i++)
		s->subfd[i] = -1;
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = -ENOMEM;
		goto fail;
	}
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		rc = -errno;
		msg_say(err, errlen, "%s: cannot open the store directory: %s",
			dir, strerror(-rc));
		goto fail;
	}
	s->metafd = safefile_subdir(s->dirfd, STORE_META_DIR, 0755, &why);
	if (s->metafd < 0) {
		rc = s->metafd;
		msg_say(err, errlen, "%s/%s: %s%s", dir, STORE_META_DIR, why,
			rc == -EROFS || rc == -EACCES ? " (is the store "
			"writable?)" : rc == -ELOOP || rc == -ENOTDIR ?
			" (remove it: it holds only derived data)" : "");
		goto fail;
	}
	/* A remote store's mirror is locked whether or not this mount may
	 * write the bucket: two mounts sharing one mirror would each
	 * rewrite its files. */
	rc = ro && !remote ? 0 : take_lock(s, err, errlen);
	if (rc)
		goto fail;
	for (size_t i = 0; i < NSUB; i++) {
		s->subfd[i] = safefile_subdir(s->metafd, subdirs[i], 0755,
					      &why);
		if (s->subfd[i] < 0) {
			rc = s->subfd[i];
			msg_say(err, errlen, "%s/%s/%s: %s", dir, STORE_META_DIR,
				subdirs[i], why);
			goto fail;
		}
	}
	/* A writer killed mid-snapshot leaves only temporaries: drop them.
	 * Not before the tree is read: a committed change may still have to
	 * move its files out of tmp/. */
	rc = store_load(s, err, errlen);
	if (rc)
		goto fail;
	if (!ro || remote)	/* a mount's temporaries are its own */
		store_sweep(s, "tmp", NULL, NULL);
	*out = s;
	return 0;
fail:
	store_free(s);
	return rc;
}

int store_open(struct store **out, const char *dir, char *err, size_t errlen)
{
	return msg_nofile_rc(open_store(out, dir, 0, NULL, err, errlen),
			     err, errlen, dir);
}

int store_open_remote(struct store **out, struct remote *r, char *err,
		      size_t errlen)
{
	const char *dir = remote_mirror(r);

	/* Only the lease holder changes the bucket (fs/rlease.c); the other
	 * mounts load like store_open_ro(): an interrupted change is the
	 * holder's to finish, lines added on top are shown, not recorded. */
	return msg_nofile_rc(open_store(out, dir, !remote_writer(r), r, err,
					errlen), err, errlen, dir);
}

int store_reload(struct store *s, char *err, size_t errlen)
{
	struct tree *old = s->tree;
	struct extra *ox = s->extra;
	size_t onx = s->nextra;
	int rc;

	s->tree = NULL;
	s->extra = NULL;
	s->nextra = 0;
	rc = store_load(s, err, errlen);
	if (rc) {
		tree_free(s->tree);
		store_free_extra(s->extra, s->nextra);
		s->tree = old;
		s->extra = ox;
		s->nextra = onx;
		return rc;
	}
	tree_free(old);
	store_free_extra(ox, onx);
	return 0;
}

int store_is_remote(const struct store *s)
{
	return s->remote != NULL;
}

void store_derived_want(struct store *s, const char *sub, const char *name)
{
	if (s->remote)
		(void)remote_fetch_derived(s->remote, sub, name);
}

int store_derived_blob(struct store *s, const char *sub, const char *name,
		       const char *label, struct blob **out)
{
	int fd = safefile_open(store_subdir(s, sub), name, O_RDONLY, 0, NULL,
			       NULL);

	if (fd >= 0)
		return blob_from_fd(out, fd, label);
	if (!s->remote)
		return fd;
	return remote_open_derived(s->remote, sub, name, label, out);
}

void store_derived_saved(struct store *s, const char *sub, const char *name)
{
	if (s->remote)
		(void)remote_put_derived(s->remote, sub, name);
}

int store_put_new(struct store *s, const char *file, int fd, char *err,
		  size_t errlen)
{
	if (!s->remote)
		return 0;
	/* A writer that lost the lease says so at the close, not only in
	 * the log at the commit that follows. */
	if (!remote_writer(s->remote))
		return remote_lease_check(s->remote, err, errlen);
	return remote_upload(s->remote, file, fd, err, errlen);
}

int store_new_blob(struct store *s, const char *file, int fd,
		   const char *label, struct blob **out)
{
	/* A local file is renamed into the store: its fstat stays. */
	if (!s->remote)
		return blob_from_dup(out, fd, label);
	return remote_local_blob(s->remote, file, fd, label, out);
}

int store_open_ro(struct store **out, const char *dir, char *err,
		  size_t errlen)
{
	return msg_nofile_rc(open_store(out, dir, 1, NULL, err, errlen),
			     err, errlen, dir);
}

int store_readonly(const struct store *s)
{
	return s->ro;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	tree_free(s->tree);
	store_free_extra(s->extra, s->nextra);
	for (size_t i = 0; i < NSUB; i++)
		if (s->subfd[i] >= 0)
			close(s->subfd[i]);
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->metafd >= 0)
		close(s->metafd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	free(s);
}

const char *store_dir(const struct store *s)
{
	return s->dir;
}

int store_dirfd(const struct store *s)
{
	return s->dirfd;
}

int store_subdir(const struct store *s, const char *sub)
{
	for (size_t i = 0; i < NSUB; i++)
		if (!strcmp(subdirs[i], sub))
			return s->subfd[i];
	return -1;
}

void store_unlock(struct store *s)
{
	if (s->lockfd >= 0)
		close(s->lockfd);
	s->lockfd = -1;
}

int store_note_mount(struct store *s, const char *mountpoint,
		     const char *token)
{
	char buf[PATH_MAX + 128];
	int n;

	if (s->lockfd < 0)
		return -EBADF;
	if (strchr(mountpoint, '\n') || strchr(token, '\n'))
		return -EINVAL;
	n = snprintf(buf, sizeof(buf), "%ld\nmount %s\ntoken %s\n",
		     (long)getpid(), mountpoint, token);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	if (ftruncate(s->lockfd, 0) < 0 ||
	    pwrite(s->lockfd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

int store_mount_of(const char *dir, char *mnt, size_t mcap, char *token,
		   size_t tcap)
{
	char buf[PATH_MAX + 128], path[PATH_MAX];
	const char *why = "";
	ssize_t n;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;

	if (dfd < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/lock", STORE_META_DIR);
	fd = safefile_open(dfd, path, O_RDONLY, 0, NULL, &why);
	close(dfd);
	if (fd < 0)
		return fd;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n < 0)
		return -EIO;
	return store_parse_lock(buf, (size_t)n, mnt, mcap, token, tcap);
}

int store_parse_lock(const char *buf, size_t n, char *mnt, size_t mcap,
		     char *token, size_t tcap)
{
	char tmp[PATH_MAX + 128];

	/* The store's bytes: bounded, made a string, NULs cut it short. */
	if (n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	memcpy(tmp, buf, n);
	tmp[n] = 0;
	char *m = strstr(tmp, "\nmount "), *t = strstr(tmp, "\ntoken ");
	if (!m || !t || !mcap || !tcap)
		return -ENOENT;
	m += 7;
	t += 7;
	size_t ml = strcspn(m, "\n"), tl = strcspn(t, "\n");
	if (!ml || !tl || ml >= mcap || tl >= tcap)
		return -ENOENT;
	memcpy(mnt, m, ml);
	mnt[ml] = 0;
	memcpy(token, t, tl);
	token[tl] = 0;
	return 0;
}

const struct tree *store_tree(const struct store *s)
{
	return s->tree;
}

int store_open_layer(struct store *s, uint32_t id, struct blob **out,
		     char *err, size_t errlen)
{
	const struct tree_node *n = tree_get(s->tree, id);
	const char *src = tree_explicit(s->tree) ? TREE_FILE :
			  STORE_LAYERS_FILE, *why = "";
	int fd;

	if (!n)
		return -ENOENT;
	if (s->remote) {
		int rc = remote_open_blob(s->remote, n->file, out, err,
					  errlen);
		if (rc == -ENOENT)
			msg_say(err, errlen, "layer '%s': no such object in "
				"the bucket; upload it or remove its line from "
				"%s", n->file, src);
		return rc;
	}
	/* Beneath the store, no symlink, never blocking on a FIFO. */
	fd = safefile_open(s->dirfd, n->file, O_RDONLY, 0, NULL, &why);
	if (fd >= 0) {
		/* Takes fd. Its fstat is the layer's identity, as when
		 * layers held the fd: derived data keeps its names. */
		int rc = blob_from_fd(out, fd, n->file);
		if (rc)
			msg_say(err, errlen, "%s/%s: cannot open layer '%s': "
				"%s", s->dir, n->file, n->file, strerror(-rc));
		return rc;
	}
	if (fd == -EMFILE || fd == -ENFILE) {
		char what[PATH_MAX + 256];

		snprintf(what, sizeof(what), "%s/%s", s->dir, n->file);
		msg_nofile(err, errlen, what);
	} else if (fd == -ENOENT || fd == -EACCES || fd == -EIO) {
		msg_say(err, errlen, "%s/%s: cannot open layer '%s': %s; restore "
			"the file or remove its line from %s", s->dir, n->file,
			n->file, *why ? why : strerror(-fd), src);
	} else {
		msg_say(err, errlen, "%s/%s: layer %s; move a regular file "
			"there or remove its line from %s", s->dir, n->file,
			*why ? why : strerror(-fd), src);
	}
	return fd;
}
