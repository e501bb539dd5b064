/* SPDX-License-Identifier: MIT */
/*
 * store: the store directory, its layers file and its lock (see store.h).
 *
 * The lock is an flock() on .snapfs/lock held for the life of the store
 * handle; the file also records the holder's pid for the error message a
 * second mount prints. flock dies with the process, so a killed snapfs
 * never leaves the store locked.
 *
 * Nothing in the store is trusted to be what its name says: every file is
 * opened through fs/safefile (no symlink followed, no FIFO waited on) and
 * every .snapfs/ directory is checked to be a real one. Lines of the
 * layers file that name no layer (comments, blank lines) are kept with
 * their place among the layer lines and written back by store_append.
 *
 * Layers are allocated one by one and the pointer array never moves, so
 * store_layer() may be called from any thread while store_append() adds
 * one: s->n is published with release order after the layer is complete.
 */
#include "fs/store.h"
#include "fs/msg.h"
#include "fs/safefile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const subdirs[] = {
	"index", "plain", "base", "sums", "aux", "tmp",
};
#define NSUB (sizeof(subdirs) / sizeof(subdirs[0]))

/* A line of the layers file that names no layer, kept for rewrites. */
struct raw_line {
	char *text;		/* without its newline */
	size_t after;		/* layer lines above it (newest first) */
};

struct store {
	char *dir;
	int dirfd;
	int metafd;
	int lockfd;
	int subfd[NSUB];
	/* Oldest first. Never reallocated: readers on other threads. */
	struct store_layer *layers[STORE_MAX_LAYERS];
	size_t n;		/* written with release order */
	struct raw_line *raw;	/* in file order */
	size_t nraw;
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

/* The message for a layer that cannot be opened: the real cause, and
 * what fixes it. */
static void layer_open_error(const struct store *s, const char *path, int rc,
			     const char *why, char *err, size_t errlen)
{
	struct rlimit rl;

	if (rc == -EMFILE || rc == -ENFILE) {
		if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = 0;
		msg_say(err, errlen, "%s/%s: too many open files at layer %zu "
		    "(limit %llu): snapfs keeps every layer open; raise the "
		    "limit (ulimit -n, or LimitNOFILE= in the systemd unit) or "
		    "merge old layers (contrib/snapfs-merge)", s->dir, path,
		    s->n + 1, (unsigned long long)rl.rlim_cur);
	} else if (rc == -ENOENT || rc == -EACCES || rc == -EIO) {
		msg_say(err, errlen, "%s/%s: cannot open layer '%s': %s; restore "
		    "the file or remove its line from %s", s->dir, path, path,
		    why, STORE_LAYERS_FILE);
	} else {
		msg_say(err, errlen, "%s/%s: layer %s; move a regular file there "
		    "or remove its line from %s", s->dir, path, why,
		    STORE_LAYERS_FILE);
	}
}

static int add_layer(struct store *s, const char *path, char *err,
		     size_t errlen)
{
	char name[256];
	struct store_layer *l;
	const char *why = "";

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
		if (!strcmp(s->layers[i]->name, name)) {
			msg_say(err, errlen, "%s/%s: '%s' and '%s' would both show "
			    "as '%s': rename one", s->dir, STORE_LAYERS_FILE,
			    s->layers[i]->path, path, name);
			return -EEXIST;
		}
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = safefile_open(s->dirfd, path, O_RDONLY, 0, &l->st, &why);
	if (l->fd < 0) {
		int rc = l->fd;
		free(l);
		layer_open_error(s, path, rc, why, err, errlen);
		return rc;
	}
	l->path = strdup(path);
	l->name = strdup(name);
	if (!l->path || !l->name) {
		free(l->path);
		free(l->name);
		close(l->fd);
		free(l);
		return -ENOMEM;
	}
	s->layers[s->n] = l;
	__atomic_store_n(&s->n, s->n + 1, __ATOMIC_RELEASE);
	return 0;
}

/* Keeps a line that names no layer, with n layer lines above it. */
static int keep_raw(struct store *s, const char *line, size_t n)
{
	struct raw_line *r = realloc(s->raw, (s->nraw + 1) * sizeof(*r));

	if (!r)
		return -ENOMEM;
	s->raw = r;
	r[s->nraw].text = strdup(line);
	if (!r[s->nraw].text)
		return -ENOMEM;
	/* Cut at a NUL, blanks before it are trailing now: trimmed, so the
	 * line reads back as written. */
	char *e = r[s->nraw].text + strlen(r[s->nraw].text);
	while (e > r[s->nraw].text && (e[-1] == ' ' || e[-1] == '\t' ||
				       e[-1] == '\r'))
		*--e = 0;
	r[s->nraw].after = n;
	s->nraw++;
	return 0;
}

/* Parses the layers file; lines are newest first, the array oldest first. */
static int read_layers(struct store *s, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL, **paths = NULL;
	size_t cap = 0, n = 0, pcap = 0;
	ssize_t len;
	const char *why = "";
	int rc = 0, fd = safefile_open(s->dirfd, STORE_LAYERS_FILE, O_RDONLY, 0,
				       NULL, &why);

	if (fd < 0) {
		if (fd == -ENOENT)
			return 0;	/* a new, empty store */
		msg_say(err, errlen, "%s/%s: %s", s->dir, STORE_LAYERS_FILE, why);
		return fd;
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
		if (!*p || *p == '#') {
			/* Kept as read, less trailing blanks and the line
			 * end (trimmed above), for rewrites. */
			if ((rc = keep_raw(s, line, n)))
				goto out;
			continue;
		}
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
	const char *why = "";
	char buf[32];
	int n;

	s->lockfd = safefile_open(s->metafd, "lock", O_RDWR | O_CREAT, 0644,
				  NULL, &why);
	if (s->lockfd < 0) {
		int rc = s->lockfd;
		msg_say(err, errlen, "%s/%s/lock: %s", s->dir, STORE_META_DIR,
		    why);
		return rc;
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
	const char *why = "";
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
	s->metafd = safefile_subdir(s->dirfd, STORE_META_DIR, 0755, &why);
	if (s->metafd < 0) {
		rc = s->metafd;
		msg_say(err, errlen, "%s/%s: %s%s", dir, STORE_META_DIR, why,
		    rc == -EROFS || rc == -EACCES ? " (is the store writable?)" :
		    "");
		goto fail;
	}
	rc = take_lock(s, err, errlen);
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
	 * tmp was just checked to be a real directory, and unlinkat never
	 * follows a symlink, so only its own entries go. */
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
		close(s->layers[i]->fd);
		free(s->layers[i]->path);
		free(s->layers[i]->name);
		free(s->layers[i]);
	}
	for (size_t i = 0; i < s->nraw; i++)
		free(s->raw[i].text);
	free(s->raw);
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
	return __atomic_load_n(&s->n, __ATOMIC_ACQUIRE);
}

const struct store_layer *store_layer(const struct store *s, size_t i)
{
	return i < store_count(s) ? s->layers[i] : NULL;
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

/*
 * Writes the layers file to f: newest layer first, and every kept raw
 * line where it was relative to the layer lines. The newest layer, just
 * added, goes below the leading block of comments (a header stays a
 * header) and above the old newest layer.
 */
static void write_layers(const struct store *s, FILE *f)
{
	size_t r = 0, old = s->n - 1;

	for (; r < s->nraw && s->raw[r].after == 0; r++)
		fprintf(f, "%s\n", s->raw[r].text);
	fprintf(f, "%s\n", s->layers[s->n - 1]->path);
	for (size_t k = 0; k < old; k++) {
		fprintf(f, "%s\n", s->layers[old - 1 - k]->path);
		for (; r < s->nraw && s->raw[r].after == k + 1; r++)
			fprintf(f, "%s\n", s->raw[r].text);
	}
	for (; r < s->nraw; r++)	/* none: after never exceeds old */
		fprintf(f, "%s\n", s->raw[r].text);
}

int store_append(struct store *s, const char *path, char *err,
		 size_t errlen)
{
	char tmp[] = STORE_LAYERS_FILE ".tmp";
	const char *why = "";
	FILE *f;
	int rc, fd;

	rc = add_layer(s, path, err, errlen);
	if (rc)
		return rc;
	/* A symlink planted as the temporary is removed, not written
	 * through; the rename then replaces the layers file itself. */
	fd = safefile_create(s->dirfd, tmp, 0644, &why);
	if (fd < 0) {
		rc = fd;
		goto undo;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		rc = -ENOMEM;
		goto undo;
	}
	write_layers(s, f);
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
	/* Lines below the leading block now have one more layer above. */
	for (size_t r = 0; r < s->nraw; r++)
		if (s->raw[r].after)
			s->raw[r].after++;
	return 0;
undo:
	msg_say(err, errlen, "%s/%s: cannot rewrite: %s", s->dir,
	    STORE_LAYERS_FILE, strerror(-rc));
	{
		struct store_layer *l = s->layers[s->n - 1];
		__atomic_store_n(&s->n, s->n - 1, __ATOMIC_RELEASE);
		s->layers[s->n] = NULL;
		close(l->fd);
		free(l->path);
		free(l->name);
		free(l);
	}
	return rc;
}
