/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the layers file (increments.txt) as store_open parses
 * it: comments, blank lines, CR/LF, paths that leave the store, duplicate
 * shown names, missing files, symlinks and a FIFO. A few real layer files
 * exist so that valid lines get as far as opening them. When the store
 * opens, two layers are added on top (through store_commit, as the writer
 * does) and the rewritten file must keep every comment and blank line in
 * place (below a leading comment block, one new layer line each time) and
 * reopen to the same snapshots. Must never crash, hang or leak.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* libFuzzer leaves through exit(): the scratch store goes with it. */
static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return;
}

static void setup(void)
{
	static const char *files[] = { "a.zst", "b.patch", "c.patch", "d",
				       "new1.patch", "new2.patch" };
	char p[128];

	/* tmpfs where there is one: store_append fsyncs twice per run. */
	snprintf(dir, sizeof(dir), "/dev/shm/fuzz_layers.XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz_layers.XXXXXX");
		if (!mkdtemp(dir))
			abort();
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		int fd = open(p, O_WRONLY | O_CREAT, 0644);
		if (fd >= 0)
			close(fd);
	}
	atexit(cleanup);
	/* Lines naming these must be refused, never followed or waited on. */
	snprintf(p, sizeof(p), "%s/ln", dir);
	if (symlink("a.zst", p) < 0)
		abort();
	snprintf(p, sizeof(p), "%s/up", dir);
	if (symlink("..", p) < 0)
		abort();
	snprintf(p, sizeof(p), "%s/fifo", dir);
	if (mkfifo(p, 0644) < 0)
		abort();
}

/*
 * The shape of a layers file: one entry per line, "L" for a layer line,
 * the text (trailing blanks dropped, cut at a NUL as the store keeps it)
 * for a comment or blank line. Returns the count, entries in out.
 */
static size_t shape(const char *path, char ***out)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL, **v = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;

	if (!f)
		abort();
	while ((len = getline(&line, &cap, f)) >= 0) {
		char *p = line, *e = line + len;
		while (e > p && (e[-1] == '\n' || e[-1] == '\r' ||
				 e[-1] == ' ' || e[-1] == '\t'))
			*--e = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		v = realloc(v, (n + 1) * sizeof(*v));
		if (!v)
			abort();
		v[n] = strdup(!*p || *p == '#' ? line : "L");
		if (!v[n])
			abort();
		/* A NUL cut the line short: blanks before it are trailing
		 * now, and the store's reader trims them on the way back. */
		e = v[n] + strlen(v[n]);
		while (e > v[n] && (e[-1] == ' ' || e[-1] == '\t' ||
				    e[-1] == '\r'))
			*--e = 0;
		n++;
	}
	free(line);
	fclose(f);
	*out = v;
	return n;
}

static void free_shape(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* After one append: before's shape with "L" inserted above its first
 * layer line. */
static void check_one_more(char **before, size_t nb, char **after,
			   size_t na)
{
	size_t i = 0, j = 0;

	if (na != nb + 1)
		abort();
	while (i < nb && strcmp(before[i], "L"))
		if (strcmp(before[i++], after[j++]))
			abort();
	if (strcmp(after[j++], "L"))
		abort();
	while (i < nb)
		if (strcmp(before[i++], after[j++]))
			abort();
}

/* A new snapshot on top of current, the way the writer publishes one. */
static int append(struct store *s, const char *file)
{
	struct tree *next;
	uint32_t id;
	char err[1024];
	int rc = tree_clone(store_tree(s), &next);

	if (rc)
		return rc;
	rc = tree_add(next, tree_current(next), file, 0, &id);
	if (!rc)
		rc = tree_set_current(next, id);
	if (rc) {
		tree_free(next);
		return rc;
	}
	return store_commit(s, next, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char p[128], err[1024];
	struct store *s, *s2;
	char **sh0, **sh1, **sh2;
	size_t n0, n1, n2, count;

	if (!dir[0])
		setup();
	/* The tree file of the last run would disagree with this input. */
	snprintf(p, sizeof(p), "%s/%s", dir, TREE_FILE);
	unlink(p);
	snprintf(p, sizeof(p), "%s/increments.txt", dir);
	FILE *f = fopen(p, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (store_open(&s, dir, err, sizeof(err)) != 0)
		return 0;
	count = tree_count(store_tree(s));
	for (size_t i = 0; i < count; i++) {
		char name[256];
		if (store_name_of(tree_at(store_tree(s), i)->file, name,
				  sizeof(name)) || !name[0])
			abort();
	}
	n0 = shape(p, &sh0);
	if (append(s, "new1.patch") == 0) {
		n1 = shape(p, &sh1);
		check_one_more(sh0, n0, sh1, n1);
		if (append(s, "new2.patch") == 0) {
			n2 = shape(p, &sh2);
			check_one_more(sh1, n1, sh2, n2);
			free_shape(sh2, n2);
		}
		free_shape(sh1, n1);
		count = tree_count(store_tree(s));
		store_free(s);
		s = NULL;
		/* The rewritten files open to the same snapshots. */
		if (store_open(&s2, dir, err, sizeof(err)) != 0 ||
		    tree_count(store_tree(s2)) != count)
			abort();
		store_free(s2);
	}
	free_shape(sh0, n0);
	store_free(s);
	return 0;
}
