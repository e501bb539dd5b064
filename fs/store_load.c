/* SPDX-License-Identifier: MIT */
/*
 * store_load: reading the store's layers file (increments.txt) and tree
 * (snapshots.txt) into the store's tree at open: the plain scripts'
 * layout, lines a script added on top. Not here: the lock and the
 * subdirectories (fs/store.c), writing anything back (fs/store_commit.c,
 * which this calls to finish an interrupted change or adopt lines).
 *
 * increments.txt is the plain scripts' view and snapshots.txt ours. When
 * both exist the tree is the authority: increments.txt must be the line
 * from its current snapshot down, possibly with new lines on top that a
 * script appended (adopted as children of current). Comment and blank
 * lines of increments.txt are kept across rewrites, each after the layer
 * line it followed.
 */
#include "fs/store_int.h"
#include "fs/msg.h"
#include "fs/remote.h"
#include "fs/safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/fdio.h"

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
		if (store_stat_file(s, p[i], &st) == 0 || errno != ENOENT)
			continue;
		size_t stem = (size_t)(dot - p[i]);
		char *alt = malloc(stem + sizeof(".patch"));
		if (!alt)
			continue;
		memcpy(alt, p[i], stem);
		memcpy(alt + stem, ".patch", sizeof(".patch"));
		if (store_stat_file(s, alt, &st) == 0 && S_ISREG(st.st_mode)) {
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

static int64_t file_mtime(struct store *s, const char *path)
{
	struct stat st;

	if (store_stat_file(s, path, &st) < 0)
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

/* --- open --- */

/* Reads snapshots.txt and increments.txt into s->tree (see top). */
int store_load(struct store *s, char *err, size_t errlen)
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
				rc = store_roll_forward(s);
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
	if (n == 0 && tree_count(s->tree) && !(s->ro && s->remote)) {
		/* increments.txt was removed: write it again. */
		rc = store_replace(s->dirfd, STORE_LAYERS_FILE,
				   store_fill_layers, s);
		if (!rc && s->remote)
			rc = remote_put_meta(s->remote, STORE_LAYERS_FILE, err,
					     errlen);
		goto out;
	}
	int match = n >= k && k <= STORE_MAX_LAYERS;
	for (size_t i = 0; match && i < k; i++)
		match = !strcmp(paths[n - k + i],
				tree_get(s->tree, ids[i])->file);
	if (!match && s->remote && !s->ro) {
		/* In a bucket the tree is the commit point and the layers
		 * file follows it (fs/rwrite.c): a writer that died between
		 * the two left an old one. The tree wins. */
		rc = store_replace(s->dirfd, STORE_LAYERS_FILE,
				   store_fill_layers, s);
		if (!rc)
			rc = remote_put_meta(s->remote, STORE_LAYERS_FILE, err,
					     errlen);
		goto out;
	}
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
			rc = store_check_tree(s, s->tree, err, errlen);
			goto out;
		}
		rc = store_commit(s, next, err, errlen);
	}
out:
	free_paths(paths, n);
	if (!rc && !adopt)
		rc = store_check_tree(s, s->tree, err, errlen);
	return rc;
}
