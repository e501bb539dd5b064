/* SPDX-License-Identifier: MIT */
/*
 * store: the store directory, its layers and tree files, its lock, and
 * every change made to it on disk (see store.h).
 *
 * The lock is an flock() on .snapfs/lock held for the life of the store
 * handle; the file also records the holder's pid for the error message a
 * second mount prints. flock dies with the process, so a killed snapfs
 * never leaves the store locked.
 *
 * increments.txt is the plain scripts' view and snapshots.txt ours. When
 * both exist the tree is the authority: increments.txt must be the line
 * from its current snapshot down, possibly with new lines on top that a
 * script appended (adopted as children of current). Comment and blank
 * lines of increments.txt are kept across rewrites, each after the layer
 * line it followed.
 */
#include "fs/store.h"
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
	"index", "plain", "base", "sums", "aux", "tmp",
};
#define NSUB (sizeof(subdirs) / sizeof(subdirs[0]))
#define TMP_SUB (NSUB - 1)

/* A comment or blank line of increments.txt, kept after the layer line
 * it followed (after: NULL for the top of the file). */
struct extra {
	char *after;
	char *text;
};

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
	struct tree *tree;
	struct extra *extra;
	size_t nextra;
	int ro;			/* store_open_ro(): no lock, no change */
	/* A store in a bucket: dir is its local mirror (fs/remote.h); layer
	 * files are the bucket's, changes are refused. Borrowed. */
	struct remote *remote;
	uint64_t max;		/* capacity bound in bytes; 0: none */
	uint64_t used;		/* bytes at the last walk (open, commit) */
};

/* fstatat of a store file, without following symlinks; for a remote
 * store, from the bucket's listing. 0 or -1 with errno. */
static int stat_file(const struct store *s, const char *path, struct stat *st)
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

/* --- reading --- */

/* Reads a whole small file of the store. Returns 0, -ENOENT, or -errno. */
static int slurp(struct store *s, const char *name, char **out, size_t *len,
		 const char **why)
{
	struct stat st;
	char *p = NULL;
	int rc = 0, fd = safefile_open(s->dirfd, name, O_RDONLY, 0, &st, why);

	if (fd < 0)
		return fd;
	if (st.st_size > (64 << 20))
		rc = -EFBIG;
	else if (!(p = malloc((size_t)st.st_size + 1)))
		rc = -ENOMEM;
	else {
		/* The store's own text files (layers file, tree), not
		 * layer files: those are read through blobs. */
		ssize_t r = fdio_pread(fd, p, (size_t)st.st_size, 0);
		if (r < 0)
			rc = (int)r;
		else {
			p[r] = 0;
			*len = (size_t)r;
		}
	}
	close(fd);
	if (rc) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static int add_extra(struct store *s, const char *after, const char *text)
{
	struct extra *e = realloc(s->extra, (s->nextra + 1) * sizeof(*e));

	if (!e)
		return -ENOMEM;
	s->extra = e;
	e = &s->extra[s->nextra];
	e->after = after ? strdup(after) : NULL;
	e->text = strdup(text);
	if ((after && !e->after) || !e->text) {
		free(e->after);
		free(e->text);
		return -ENOMEM;
	}
	s->nextra++;
	return 0;
}

/*
 * The plain scripts' own layout: increments.txt names the full state
 * files (`ls -t snapshot_*.zstd > increments.txt`), and the later ones are
 * usually deleted once snapshot_K.patch, which recreates them, is made.
 * Where a line's .zst/.zstd file is missing and the .patch beside it is
 * there, the patch is that layer. Where the full file is still there it
 * stays the layer (a full layer in the middle of the chain: see
 * fs/chain.h). The base (last line) is never replaced. Allocation
 * failures leave the line as it was (it then fails to open, with a
 * message naming it).
 */
static void resolve_line(struct store *s, char **p, size_t k)
{
	struct stat st;

	for (size_t i = 0; i + 1 < k; i++) {
		char *dot = strrchr(p[i], '.');
		if (!dot || strchr(dot, '/') || (strcmp(dot, ".zstd") &&
						  strcmp(dot, ".zst")))
			continue;
		if (stat_file(s, p[i], &st) == 0 || errno != ENOENT)
			continue;
		size_t stem = (size_t)(dot - p[i]);
		char *alt = malloc(stem + sizeof(".patch"));
		if (!alt)
			continue;
		memcpy(alt, p[i], stem);
		memcpy(alt + stem, ".patch", sizeof(".patch"));
		if (stat_file(s, alt, &st) == 0 && S_ISREG(st.st_mode)) {
			free(p[i]);
			p[i] = alt;
		} else {
			free(alt);
		}
	}
}

/*
 * Parses increments.txt into paths (newest first) and keeps its comment
 * and blank lines. *n = 0 and no error when the file does not exist.
 */
static int read_line(struct store *s, char ***paths, size_t *n, char *err,
		     size_t errlen)
{
	char *text = NULL, **p = NULL;
	size_t len = 0, cap = 0, k = 0;
	const char *last = NULL, *why = "";
	int rc = slurp(s, STORE_LAYERS_FILE, &text, &len, &why);

	*n = 0;
	*paths = NULL;
	if (rc == -ENOENT)
		return 0;
	if (rc) {
		msg_say(err, errlen, "%s/%s: %s", s->dir, STORE_LAYERS_FILE,
			rc == -EFBIG ? "larger than 64 MiB: not a layers file" :
			*why ? why : strerror(-rc));
		return rc;
	}
	if (memchr(text, 0, len)) {
		msg_say(err, errlen, "%s/%s: contains NUL bytes: not a layers "
			"file; restore it", s->dir, STORE_LAYERS_FILE);
		free(text);
		return -EINVAL;
	}
	/* strsep keeps empty lines (strtok would drop them). */
	for (char *line, *rest = text; (line = strsep(&rest, "\n"));) {
		char *q = line, *e = line + strlen(line);
		if (!rest && !*line)
			break;	/* after the final newline */
		while (e > q && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			*--e = 0;
		while (*q == ' ' || *q == '\t')
			q++;
		if (!*q || *q == '#') {
			rc = add_extra(s, last, line);
			if (rc)
				goto out;
			continue;
		}
		if (k == cap) {
			cap = cap ? 2 * cap : 16;
			char **np = realloc(p, cap * sizeof(*np));
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			p = np;
		}
		if (!(p[k] = strdup(q))) {
			rc = -ENOMEM;
			goto out;
		}
		last = p[k++];
	}
	if (k == 0) {
		rc = -ENODATA;
		msg_say(err, errlen, "%s/%s: names no layer. A store needs its base "
			"state file on the last line (newest first, base last); "
			"remove the file to start an empty store",
			s->dir, STORE_LAYERS_FILE);
	}
out:
	free(text);
	if (rc) {
		for (size_t i = 0; i < k; i++)
			free(p[i]);
		free(p);
		return rc;
	}
	resolve_line(s, p, k);
	*paths = p;
	*n = k;
	return 0;
}

static void free_paths(char **p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
}

/* Checks what every snapshot's file name must be: inside the store, a
 * usable shown name, no two alike. */
static int check_tree(struct store *s, const struct tree *t, char *err,
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

static int64_t file_mtime(struct store *s, const char *path)
{
	struct stat st;

	if (stat_file(s, path, &st) < 0)
		return 0;
	return (int64_t)st.st_mtim.tv_sec;
}

/* Adds paths[0..k) (newest first) on top of parent, oldest first. */
static int add_line(struct store *s, struct tree *t, uint32_t parent,
		    char **paths, size_t k, int with_ids)
{
	for (size_t i = k; i-- > 0;) {
		uint32_t id = (uint32_t)(k - i);
		int rc = with_ids ? tree_add_id(t, id, parent, paths[i],
						file_mtime(s, paths[i])) :
			 tree_add(t, parent, paths[i], file_mtime(s, paths[i]),
				  &id);
		if (rc == -EEXIST)
			return -EEXIST;
		if (rc)
			return rc;
		parent = id;
	}
	return tree_set_current(t, parent);
}

/* --- the commit protocol --- */

static int fill_layers(int fd, void *arg)
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
		const char *file = tree_get(s->tree, ids[i])->file;
		fprintf(f, "%s\n", file);
		for (size_t k = 0; k < s->nextra; k++) {
			if (!done[k] && !strcmp(s->extra[k].after, file)) {
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
 * after a crash in the middle finds the done parts done. */
static int roll_forward(struct store *s)
{
	int rc = 0;

	for (size_t i = 0; i < tree_npending(s->tree); i++) {
		const struct tree_pending *p = tree_pending_at(s->tree, i);
		if (!valid_path(p->to))
			return -EINVAL;
		if (p->from) {
			const char *name;
			int dfd = src_at(s, p->from, &name);
			if (renameat(dfd, name, s->dirfd, p->to) < 0 &&
			    errno != ENOENT && !rc)
				rc = -errno;
		} else if (unlinkat(s->dirfd, p->to, 0) < 0 && errno != ENOENT &&
			   !rc) {
			rc = -errno;
		}
	}
	if (!rc && fsync(s->dirfd) < 0)
		rc = -errno;
	if (!rc && tree_count(s->tree))
		rc = store_replace(s->dirfd, STORE_LAYERS_FILE, fill_layers, s);
	else if (!rc && unlinkat(s->dirfd, STORE_LAYERS_FILE, 0) < 0 &&
		 errno != ENOENT)
		rc = -errno;
	if (!rc && tree_npending(s->tree)) {
		tree_clear_pending(s->tree);
		rc = write_tree(s, s->tree);
	}
	return rc;
}

/* Bytes of the regular files beneath dfd (depth: how deep it is
 * already; .snapfs has two levels). Not following symlinks, never
 * blocking. Unreadable entries count as 0. */
static uint64_t walk_bytes(int dfd, int depth)
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
				sum += walk_bytes(sub, depth + 1);
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
		s->used = walk_bytes(s->dirfd, 0);
}

uint64_t store_max(const struct store *s)
{
	return s->max;
}

uint64_t store_used(const struct store *s)
{
	/* What is being written now sits in .snapfs/tmp: walked each time
	 * (a few files). */
	return s->used + walk_bytes(s->subfd[TMP_SUB], 3);
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

	if (stat_file(s, file, &st) < 0)
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

int store_commit(struct store *s, struct tree *next, char *err,
		 size_t errlen)
{
	int rc = s->ro || s->remote ? -EROFS : check_tree(s, next, err,
							      errlen);

	if (rc == -EROFS && s->remote)
		msg_say(err, errlen, "a store in a bucket is read-only in this "
			"version: change a local copy and upload it (aws s3 "
			"sync)");
	else if (rc == -EROFS)
		msg_say(err, errlen, "%s: opened read-only (it is mounted?): "
			"change it through the mount", s->dir);
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
	/* Committed. */
	tree_free(s->tree);
	s->tree = next;
	rc = roll_forward(s);
	if (s->max)
		s->used = walk_bytes(s->dirfd, 0);
	if (rc)
		msg_say(err, errlen, "%s: the change is committed, but finishing "
			"it on disk failed (%s); the next mount finishes it",
			s->dir, strerror(-rc));
	return 0;
}

/* --- open --- */

/* Reads snapshots.txt and increments.txt into s->tree (see top). */
static int load(struct store *s, char *err, size_t errlen)
{
	char **paths = NULL, *text = NULL;
	size_t n = 0, len = 0;
	const char *swhy = "";
	int rc, adopt = 0;

	rc = slurp(s, TREE_FILE, &text, &len, &swhy);
	if (rc && rc != -ENOENT) {
		msg_say(err, errlen, "%s/%s: %s", s->dir, TREE_FILE,
			rc == -EFBIG ? "larger than 64 MiB" :
			*swhy ? swhy : strerror(-rc));
		return rc;
	}
	if (!rc) {
		char why[300];
		rc = tree_parse(&s->tree, text, len, why, sizeof(why));
		free(text);
		if (rc) {
			msg_say(err, errlen, "%s/%s: %s; restore it, or delete it "
				"to mount increments.txt as a plain line "
				"(branches and descriptions are lost)", s->dir,
				TREE_FILE, why);
			return rc;
		}
		if (tree_npending(s->tree) && s->ro) {
			/* Finishing it is a change: the holder's business. */
			msg_say(err, errlen, "%s: an interrupted change is not "
				"finished yet; mount the store (or run a changing "
				"snapctl command) to finish it", s->dir);
			return -EBUSY;
		}
		if (tree_npending(s->tree)) {
			/* An interrupted change: finish it first. */
			rc = read_line(s, &paths, &n, NULL, 0);
			free_paths(paths, n);
			paths = NULL;
			if (!rc)
				rc = roll_forward(s);
			if (rc) {
				msg_say(err, errlen, "%s: cannot finish an "
					"interrupted change: %s", s->dir,
					strerror(-rc));
				return rc;
			}
		}
	}
	rc = read_line(s, &paths, &n, err, errlen);
	if (rc)
		return rc;
	if (!s->tree) {
		rc = tree_new(&s->tree);
		if (!rc)
			rc = add_line(s, s->tree, 0, paths, n, 1);
		if (rc == -EEXIST)
			msg_say(err, errlen, "%s/%s: a file is named twice",
				s->dir, STORE_LAYERS_FILE);
		goto out;
	}
	/* Both files: increments.txt must be current's line, maybe with
	 * lines a plain script added on top. */
	uint32_t ids[STORE_MAX_LAYERS + 1];
	size_t k = tree_line(s->tree, tree_current(s->tree), ids,
			     STORE_MAX_LAYERS + 1);
	if (n == 0 && tree_count(s->tree)) {
		/* increments.txt was removed: write it again. */
		rc = store_replace(s->dirfd, STORE_LAYERS_FILE, fill_layers, s);
		goto out;
	}
	int match = n >= k && k <= STORE_MAX_LAYERS;
	for (size_t i = 0; match && i < k; i++)
		match = !strcmp(paths[n - k + i],
				tree_get(s->tree, ids[i])->file);
	if (!match) {
		msg_say(err, errlen, "%s: %s and %s disagree: the line in %s is "
			"not the one from the current snapshot down. If you "
			"edited %s, delete %s (branches and descriptions are "
			"lost) or restore %s", s->dir, STORE_LAYERS_FILE,
			TREE_FILE, STORE_LAYERS_FILE, STORE_LAYERS_FILE,
			TREE_FILE, STORE_LAYERS_FILE);
		rc = -EINVAL;
		goto out;
	}
	if (n > k) {
		struct tree *next;
		rc = tree_clone(s->tree, &next);
		if (!rc)
			rc = add_line(s, next, tree_current(s->tree), paths,
				      n - k, 0);
		if (rc == -EEXIST)
			msg_say(err, errlen, "%s/%s: a line added on top names "
				"a file the tree has already", s->dir,
				STORE_LAYERS_FILE);
		if (rc) {
			tree_free(next);
			goto out;
		}
		adopt = 1;
		if (s->ro) {
			/* Shown, not recorded: the next writable open
			 * adopts them for good. */
			tree_free(s->tree);
			s->tree = next;
			rc = check_tree(s, s->tree, err, errlen);
			goto out;
		}
		rc = store_commit(s, next, err, errlen);
	}
out:
	free_paths(paths, n);
	if (!rc && !adopt)
		rc = check_tree(s, s->tree, err, errlen);
	return rc;
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

static int take_lock(struct store *s, char *err, size_t errlen)
{
	const char *why = "";
	char buf[32];
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
		buf[strcspn(buf, "\n")] = 0;
		if (e == EWOULDBLOCK)
			msg_say(err, errlen, "%s: store is in use by another "
				"snapfs (pid %s, still holding %s/lock after 5 "
				"s); unmount that first", s->dir, *buf ? buf :
				"?", STORE_META_DIR);
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
	rc = ro ? 0 : take_lock(s, err, errlen);
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
	rc = load(s, err, errlen);
	if (rc)
		goto fail;
	if (!ro)	/* a mount's temporaries are its own */
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

	return msg_nofile_rc(open_store(out, dir, 0, r, err, errlen), err,
			     errlen, dir);
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
	char key[600];
	int fd = safefile_open(store_subdir(s, sub), name, O_RDONLY, 0, NULL,
			       NULL);

	if (fd >= 0)
		return blob_from_fd(out, fd, label);
	if (!s->remote)
		return fd;
	snprintf(key, sizeof(key), "%s/%s/%s", STORE_META_DIR, sub, name);
	return remote_open_blob(s->remote, key, out, NULL, 0);
}

void store_derived_saved(struct store *s, const char *sub, const char *name)
{
	if (s->remote)
		(void)remote_put_derived(s->remote, sub, name);
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
	for (size_t i = 0; i < s->nextra; i++) {
		free(s->extra[i].after);
		free(s->extra[i].text);
	}
	free(s->extra);
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
