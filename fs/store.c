/* SPDX-License-Identifier: MIT */
/*
 * store: the store directory, its layers file and its lock (see store.h).
 *
 * The lock is an flock() on .snapfs/lock held for the life of the store
 * handle; the file also records the holder's pid for the error message a
 * second mount prints. flock dies with the process, so a killed snapfs
 * never leaves the store locked.
 */
#include "fs/store.h"
#include "fs/msg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const char *const subdirs[] = {
	"index", "plain", "base", "sums", "aux", "tmp",
};
#define NSUB (sizeof(subdirs) / sizeof(subdirs[0]))

struct store {
	char *dir;
	int dirfd;
	int metafd;
	int lockfd;
	int subfd[NSUB];
	struct store_layer *layers;	/* oldest first */
	size_t n, cap;
};

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

static int add_layer(struct store *s, const char *path, char *err,
		     size_t errlen)
{
	char name[256];
	struct store_layer *l;

	if (!valid_path(path)) {
		msg_say(err, errlen, "%s/%s: names '%s'; paths must be relative to "
		    "the store and stay inside it: fix that line",
		    s->dir, STORE_LAYERS_FILE, path);
		return -EINVAL;
	}
	if (s->n == STORE_MAX_LAYERS) {
		msg_say(err, errlen, "%s/%s: more than %d layers: merge old ones "
		    "(contrib/snapfs-merge)", s->dir, STORE_LAYERS_FILE,
		    STORE_MAX_LAYERS);
		return -E2BIG;
	}
	if (store_name_of(path, name, sizeof(name)) < 0) {
		msg_say(err, errlen, "%s/%s: '%s' gives no usable name: rename the "
		    "file", s->dir, STORE_LAYERS_FILE, path);
		return -EINVAL;
	}
	for (size_t i = 0; i < s->n; i++) {
		if (!strcmp(s->layers[i].name, name)) {
			msg_say(err, errlen, "%s/%s: '%s' and '%s' would both show "
			    "as '%s': rename one", s->dir, STORE_LAYERS_FILE,
			    s->layers[i].path, path, name);
			return -EEXIST;
		}
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		l = realloc(s->layers, cap * sizeof(*l));
		if (!l)
			return -ENOMEM;
		s->layers = l;
		s->cap = cap;
	}
	l = &s->layers[s->n];
	memset(l, 0, sizeof(*l));
	l->fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0 || fstat(l->fd, &l->st) < 0) {
		int e = errno;
		msg_say(err, errlen, "%s/%s: cannot open layer '%s': %s; restore "
		    "the file or remove its line from %s", s->dir, path, path,
		    strerror(e), STORE_LAYERS_FILE);
		if (l->fd >= 0)
			close(l->fd);
		return -e;
	}
	if (!S_ISREG(l->st.st_mode)) {
		msg_say(err, errlen, "%s/%s: layer is not a regular file; fix %s",
		    s->dir, path, STORE_LAYERS_FILE);
		close(l->fd);
		return -EINVAL;
	}
	l->path = strdup(path);
	l->name = strdup(name);
	if (!l->path || !l->name) {
		free(l->path);
		free(l->name);
		close(l->fd);
		return -ENOMEM;
	}
	s->n++;
	return 0;
}

/* Parses the layers file; lines are newest first, the array oldest first. */
static int read_layers(struct store *s, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL, **paths = NULL;
	size_t cap = 0, n = 0, pcap = 0;
	ssize_t len;
	int rc = 0, fd = openat(s->dirfd, STORE_LAYERS_FILE, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;	/* a new, empty store */
		rc = -errno;
		msg_say(err, errlen, "%s/%s: %s", s->dir, STORE_LAYERS_FILE,
		    strerror(-rc));
		return rc;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		char *p = line, *e = line + len;
		while (e > p && (e[-1] == '\n' || e[-1] == '\r' ||
				 e[-1] == ' ' || e[-1] == '\t'))
			*--e = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		if (n == pcap) {
			pcap = pcap ? 2 * pcap : 16;
			char **np = realloc(paths, pcap * sizeof(*np));
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			paths = np;
		}
		if (!(paths[n] = strdup(p))) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (ferror(f)) {
		rc = -EIO;
		msg_say(err, errlen, "%s/%s: read error", s->dir, STORE_LAYERS_FILE);
		goto out;
	}
	if (n == 0) {
		rc = -ENODATA;
		msg_say(err, errlen, "%s/%s: names no layer. A store needs its base "
		    "state file on the last line (newest first, base last); "
		    "remove the file to start an empty store",
		    s->dir, STORE_LAYERS_FILE);
		goto out;
	}
	for (size_t i = n; i-- > 0;) {
		rc = add_layer(s, paths[i], err, errlen);
		if (rc)
			goto out;
	}
out:
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	free(line);
	fclose(f);
	return rc;
}

/* Removes every entry of a directory (leftover temporaries). */
static void clear_dir(int dfd)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] ||
		    (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		unlinkat(dfd, de->d_name, 0);
	}
	closedir(d);
}

static int take_lock(struct store *s, char *err, size_t errlen)
{
	char buf[32];
	int n;

	s->lockfd = openat(s->metafd, "lock", O_RDWR | O_CREAT | O_CLOEXEC,
			   0644);
	if (s->lockfd < 0) {
		int e = errno;
		msg_say(err, errlen, "%s/%s/lock: %s", s->dir, STORE_META_DIR,
		    strerror(e));
		return -e;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		n = (int)pread(s->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		buf[strcspn(buf, "\n")] = 0;
		if (e == EWOULDBLOCK)
			msg_say(err, errlen, "%s: store is in use by another snapfs "
			    "(pid %s); unmount that first", s->dir,
			    *buf ? buf : "?");
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

int store_open(struct store **out, const char *dir, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->dirfd = s->metafd = s->lockfd = -1;
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
	if (mkdirat(s->dirfd, STORE_META_DIR, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		msg_say(err, errlen, "%s/%s: cannot create: %s (is the store "
		    "writable?)", dir, STORE_META_DIR, strerror(-rc));
		goto fail;
	}
	s->metafd = openat(s->dirfd, STORE_META_DIR,
			   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->metafd < 0) {
		rc = -errno;
		msg_say(err, errlen, "%s/%s: %s", dir, STORE_META_DIR,
		    strerror(-rc));
		goto fail;
	}
	rc = take_lock(s, err, errlen);
	if (rc)
		goto fail;
	for (size_t i = 0; i < NSUB; i++) {
		if (mkdirat(s->metafd, subdirs[i], 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			msg_say(err, errlen, "%s/%s/%s: cannot create: %s", dir,
			    STORE_META_DIR, subdirs[i], strerror(-rc));
			goto fail;
		}
		s->subfd[i] = openat(s->metafd, subdirs[i],
				     O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->subfd[i] < 0) {
			rc = -errno;
			goto fail;
		}
	}
	/* A writer killed mid-snapshot leaves only temporaries: drop them. */
	clear_dir(s->subfd[NSUB - 1]);
	rc = read_layers(s, err, errlen);
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	store_free(s);
	return rc;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		close(s->layers[i].fd);
		free(s->layers[i].path);
		free(s->layers[i].name);
	}
	free(s->layers);
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

size_t store_count(const struct store *s)
{
	return s->n;
}

const struct store_layer *store_layer(const struct store *s, size_t i)
{
	return i < s->n ? &s->layers[i] : NULL;
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

int store_append(struct store *s, const char *path, char *err,
		 size_t errlen)
{
	char tmp[] = STORE_LAYERS_FILE ".tmp";
	FILE *f;
	int rc, fd;

	rc = add_layer(s, path, err, errlen);
	if (rc)
		return rc;
	fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);
	if (fd < 0) {
		rc = -errno;
		goto undo;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		rc = -ENOMEM;
		goto undo;
	}
	for (size_t i = s->n; i-- > 0;)
		fprintf(f, "%s\n", s->layers[i].path);
	if (fflush(f) != 0 || fsync(fd) < 0)
		rc = -errno;
	if (fclose(f) != 0 && !rc)
		rc = -errno;
	if (!rc && renameat(s->dirfd, tmp, s->dirfd, STORE_LAYERS_FILE) < 0)
		rc = -errno;
	if (!rc && fsync(s->dirfd) < 0)
		rc = -errno;
	if (rc) {
		unlinkat(s->dirfd, tmp, 0);
		goto undo;
	}
	return 0;
undo:
	msg_say(err, errlen, "%s/%s: cannot rewrite: %s", s->dir,
	    STORE_LAYERS_FILE, strerror(-rc));
	s->n--;
	close(s->layers[s->n].fd);
	free(s->layers[s->n].path);
	free(s->layers[s->n].name);
	return rc;
}
