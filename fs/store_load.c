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
 * line it followed: after that snapshot, whatever its file is called.
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

/* increments.txt as read: the layer paths (newest first) and the other
 * lines, each with how many layer lines are above it: which snapshot it
 * follows is known only once the tree is (keep_extras). */
struct raw_line {
	char *text;		/* without its newline */
	size_t above;
};

struct layers {
	char **paths;
	size_t n;
	struct raw_line *raw;
	size_t nraw;
};

static void free_layers(struct layers *L)
{
	for (size_t i = 0; i < L->n; i++)
		free(L->paths[i]);
	free(L->paths);
	for (size_t i = 0; i < L->nraw; i++)
		free(L->raw[i].text);
	free(L->raw);
	memset(L, 0, sizeof(*L));
}

static int add_raw(struct layers *L, const char *text)
{
	struct raw_line *r = realloc(L->raw, (L->nraw + 1) * sizeof(*r));

	if (!r)
		return -ENOMEM;
	L->raw = r;
	r = &L->raw[L->nraw];
	if (!(r->text = strdup(text)))
		return -ENOMEM;
	r->above = L->n;
	L->nraw++;
	return 0;
}

/*
 * Makes L's other lines s->extra, each after the snapshot of t whose line
 * it followed: by id, since the file t names for it may differ from the
 * line's text (resolve_line's .zstd -> .patch), or change later. Replaces
 * what s->extra held (an interrupted change reads the file twice). Takes
 * the texts out of L. Returns 0 or -ENOMEM (s->extra unchanged).
 */
static int keep_extras(struct store *s, const struct tree *t,
		       struct layers *L)
{
	struct extra *x = NULL;

	if (L->nraw && !(x = calloc(L->nraw, sizeof(*x))))
		return -ENOMEM;
	for (size_t i = 0; i < L->nraw; i++) {
		size_t a = L->raw[i].above;
		const struct tree_node *nd = a && a <= L->n ?
			tree_by_file(t, L->paths[a - 1]) : NULL;
		x[i].after = !a ? 0 : nd ? nd->id : EXTRA_NOWHERE;
		x[i].text = L->raw[i].text;
		L->raw[i].text = NULL;
	}
	store_free_extra(s->extra, s->nextra);
	s->extra = x;
	s->nextra = L->nraw;
	return 0;
}

/*
 * The rule of the scripts' layout for one file name: if name is a
 * .zst/.zstd file that is gone and the .patch beside it is a regular
 * file, returns that patch's name (malloc'd, the caller frees); else
 * NULL, with *nomem set if it was an allocation that failed.
 */
static char *patch_of_deleted(struct store *s, const char *name, int *nomem)
{
	const char *dot = strrchr(name, '.');
	struct stat st;

	*nomem = 0;
	if (!dot || strchr(dot, '/') ||
	    (strcmp(dot, ".zstd") && strcmp(dot, ".zst")))
		return NULL;
	if (store_stat_file(s, name, &st) == 0 || errno != ENOENT)
		return NULL;
	size_t stem = (size_t)(dot - name);
	char *alt = malloc(stem + sizeof(".patch"));
	if (!alt) {
		*nomem = 1;
		return NULL;
	}
	memcpy(alt, name, stem);
	memcpy(alt + stem, ".patch", sizeof(".patch"));
	if (store_stat_file(s, alt, &st) == 0 && S_ISREG(st.st_mode))
		return alt;
	free(alt);
	return NULL;
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
	for (size_t i = 0; i + 1 < k; i++) {
		int nomem;
		char *alt = patch_of_deleted(s, p[i], &nomem);
		if (alt) {
			free(p[i]);
			p[i] = alt;
		}
	}
}

/*
 * The same rule on the tree: a snapshot whose full file snapshots.txt
 * names was deleted since (the scripts delete a full file once the patch
 * that recreates it is made) is the .patch beside it, a patch against
 * its parent, the state before it in the scripts' line. In memory only:
 * snapshots.txt says so at the next change, and until then every open
 * resolves it again. Without this the tree and the resolved
 * increments.txt disagreed and the store did not open.
 */
static int resolve_tree(struct store *s)
{
	for (size_t i = 0; i < tree_count(s->tree); i++) {
		const struct tree_node *n = tree_at(s->tree, i);
		int nomem, rc = 0;
		if (!n->parent)
			continue;	/* the base is never replaced */
		char *alt = patch_of_deleted(s, n->file, &nomem);
		if (nomem)
			return -ENOMEM;
		if (alt && !tree_by_file(s->tree, alt))
			rc = tree_set_file(s->tree, n->id, alt);
		free(alt);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Parses increments.txt into L: its layer paths (newest first) and its
 * comment and blank lines. L stays empty and no error when the file does
 * not exist.
 */
static int read_line(struct store *s, struct layers *L, char *err,
		     size_t errlen)
{
	char *text = NULL;
	size_t len = 0, cap = 0;
	const char *why = "";
	int rc = slurp(s, STORE_LAYERS_FILE, &text, &len, &why);

	memset(L, 0, sizeof(*L));
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
			rc = add_raw(L, line);
			if (rc)
				goto out;
			continue;
		}
		if (L->n == cap) {
			cap = cap ? 2 * cap : 16;
			char **np = realloc(L->paths, cap * sizeof(*np));
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			L->paths = np;
		}
		if (!(L->paths[L->n] = strdup(q))) {
			rc = -ENOMEM;
			goto out;
		}
		L->n++;
	}
	if (L->n == 0) {
		rc = -ENODATA;
		msg_say(err, errlen, "%s/%s: names no layer. A store needs its base "
			"state file on the last line (newest first, base last); "
			"remove the file to start an empty store",
			s->dir, STORE_LAYERS_FILE);
	}
out:
	free(text);
	if (rc) {
		free_layers(L);
		return rc;
	}
	resolve_line(s, L->paths, L->n);
	return 0;
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
	struct layers L;
	char *text = NULL;
	size_t len = 0;
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
			/* An interrupted change: finish it first, with the
			 * comments of the layers file it rewrites. */
			rc = read_line(s, &L, NULL, 0);
			if (!rc)
				rc = keep_extras(s, s->tree, &L);
			free_layers(&L);
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
	if (s->tree && (rc = resolve_tree(s))) {
		msg_say(err, errlen, "%s/%s: %s", s->dir, TREE_FILE,
			strerror(-rc));
		return rc;
	}
	rc = read_line(s, &L, err, errlen);
	if (rc)
		return rc;
	if (!s->tree) {
		rc = tree_new(&s->tree);
		if (!rc)
			rc = add_line(s, s->tree, 0, L.paths, L.n, 1);
		if (rc == -EEXIST)
			msg_say(err, errlen, "%s/%s: a file is named twice",
				s->dir, STORE_LAYERS_FILE);
		if (!rc)
			rc = keep_extras(s, s->tree, &L);
		goto out;
	}
	/* Both files: increments.txt must be current's line, maybe with
	 * lines a plain script added on top. */
	uint32_t ids[STORE_MAX_LAYERS + 1];
	size_t k = tree_line(s->tree, tree_current(s->tree), ids,
			     STORE_MAX_LAYERS + 1);
	if (L.n == 0 && tree_count(s->tree) && !(s->ro && s->remote)) {
		/* increments.txt was removed: write it again. */
		rc = keep_extras(s, s->tree, &L);
		if (!rc)
			rc = store_replace(s->dirfd, STORE_LAYERS_FILE,
					   store_fill_layers, s);
		if (!rc && s->remote)
			rc = remote_put_meta(s->remote, STORE_LAYERS_FILE, err,
					     errlen);
		goto out;
	}
	int match = L.n >= k && k <= STORE_MAX_LAYERS;
	for (size_t i = 0; match && i < k; i++)
		match = !strcmp(L.paths[L.n - k + i],
				tree_get(s->tree, ids[i])->file);
	if (!match && s->remote && !s->ro) {
		/* In a bucket the tree is the commit point and the layers
		 * file follows it (fs/rwrite.c): a writer that died between
		 * the two left an old one. The tree wins. */
		rc = keep_extras(s, s->tree, &L);
		if (!rc)
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
	if (L.n == k) {
		rc = keep_extras(s, s->tree, &L);
	} else {
		struct tree *next = NULL;
		rc = tree_clone(s->tree, &next);
		if (!rc)
			rc = add_line(s, next, tree_current(s->tree), L.paths,
				      L.n - k, 0);
		if (rc == -EEXIST)
			msg_say(err, errlen, "%s/%s: a line added on top names "
				"a file the tree has already", s->dir,
				STORE_LAYERS_FILE);
		/* Comments among the adopted lines follow snapshots only
		 * next has. */
		if (!rc)
			rc = keep_extras(s, next, &L);
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
	free_layers(&L);
	if (!rc && !adopt)
		rc = store_check_tree(s, s->tree, err, errlen);
	return rc;
}
