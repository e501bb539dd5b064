/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of fs/tree: the text form round-trips (escapes included),
 * removal re-parents children and moves current, malformed files are
 * refused with the line named, and a random series of edits keeps the
 * tree consistent with a naive model (parent array) after each
 * format/parse round trip.
 */
#include "fs/tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static struct tree *reparse(const struct tree *t)
{
	char *txt, err[200];
	size_t len;
	struct tree *u = NULL;

	if (tree_format(t, &txt, &len))
		return NULL;
	if (tree_parse(&u, txt, len, err, sizeof(err)))
		fprintf(stderr, "  reparse: %s\n%s", err, txt);
	free(txt);
	return u;
}

static void test_roundtrip(void)
{
	struct tree *t, *u;
	uint32_t a, b, c;

	T_EQ(tree_new(&t), 0);
	T_EQ(tree_add(t, 0, "snapshot_0.zst", 1764748800, &a), 0);
	T_EQ(tree_add(t, a, "snapshot_1.patch", 1764748900, &b), 0);
	T_EQ(tree_add(t, a, "with space.patch", 0, &c), 0);
	T_EQ(tree_set_desc(t, b, "tab\there\nnewline \\ back\x01slash"), 0);
	T_EQ(tree_set_digest(t, b, "xxh128:00ff"), 0);
	T_EQ(tree_set_current(t, c), 0);
	T_EQ(tree_add_pending(t, ".snapfs/tmp/x", "snapshot_1.patch"), 0);
	T_EQ(tree_add_pending(t, NULL, "old.patch"), 0);
	u = reparse(t);
	T_CHECK(u != NULL);
	if (!u) {
		tree_free(t);
		return;
	}
	T_EQ(tree_count(u), 3);
	T_EQ(tree_current(u), c);
	T_CHECK(tree_explicit(u));
	const struct tree_node *n = tree_get(u, b);
	T_CHECK(n && n->parent == a && !strcmp(n->file, "snapshot_1.patch"));
	T_CHECK(n && !strcmp(n->desc, "tab\there\nnewline \\ back\x01slash"));
	T_CHECK(n && !strcmp(n->digest, "xxh128:00ff"));
	T_CHECK(n && n->created == 1764748900);
	n = tree_by_file(u, "with space.patch");
	T_CHECK(n && n->id == c && n->created == 0);
	T_EQ(tree_npending(u), 2);
	T_CHECK(!strcmp(tree_pending_at(u, 0)->from, ".snapfs/tmp/x"));
	T_CHECK(tree_pending_at(u, 1)->from == NULL);
	T_CHECK(!strcmp(tree_pending_at(u, 1)->to, "old.patch"));
	/* Ids are never reused, even after the newest is removed. */
	T_EQ(tree_remove(u, c), 0);
	uint32_t d;
	T_EQ(tree_add(u, a, "d.patch", 0, &d), 0);
	T_CHECK(d > c);
	tree_free(u);
	tree_free(t);
}

static void test_remove(void)
{
	struct tree *t;
	uint32_t base, m, c1, c2, g, ids[8];

	tree_new(&t);
	tree_add(t, 0, "b.zst", 0, &base);
	tree_add(t, base, "m.patch", 0, &m);
	tree_add(t, m, "c1.patch", 0, &c1);
	tree_add(t, m, "c2.patch", 0, &c2);
	tree_add(t, c1, "g.patch", 0, &g);
	tree_set_current(t, m);
	T_EQ(tree_line(t, g, ids, 8), 4);
	T_CHECK(ids[0] == g && ids[1] == c1 && ids[2] == m && ids[3] == base);
	T_EQ(tree_children(t, m, ids, 8), 2);
	T_EQ(tree_remove(t, m), 0);
	T_EQ(tree_current(t), base);
	T_EQ(tree_get(t, c1)->parent, base);
	T_EQ(tree_get(t, c2)->parent, base);
	T_EQ(tree_line(t, g, ids, 8), 3);
	T_EQ(tree_children(t, base, ids, 8), 2);
	/* Removing the base leaves its children as bases until re-parented;
	 * current goes to the first child. */
	tree_set_current(t, base);
	T_EQ(tree_remove(t, base), 0);
	T_EQ(tree_current(t), c1);
	T_EQ(tree_get(t, c2)->parent, 0);
	T_EQ(tree_set_parent(t, c2, c1), 0);
	T_EQ(tree_set_parent(t, c1, g), -ELOOP);	/* g is below c1 */
	T_EQ(tree_remove(t, 12345), -ENOENT);
	T_EQ(tree_set_file(t, c2, "c1.patch"), -EEXIST);
	/* c2's parent (c1) now comes after it in the array: the text form
	 * must still list parents first. */
	struct tree *u = reparse(t);
	T_CHECK(u && tree_get(u, c2)->parent == c1);
	tree_free(u);
	tree_free(t);
}

static void test_bad(void)
{
	static const char *const bad[] = {
		"",
		"snap\tid=1\tparent=0\tfile=a\n",
		"snapfs-tree\t2\n",
		"snapfs-tree\t1\nsnap\tid=2\tparent=1\tfile=b\n",
		"snapfs-tree\t1\nsnap\tid=1\tparent=0\tfile=a\nsnap\tid=1\tparent=0\tfile=b\n",
		"snapfs-tree\t1\nsnap\tid=1\tparent=0\tfile=a\nsnap\tid=2\tparent=0\tfile=a\n",
		"snapfs-tree\t1\nsnap\tid=1\tparent=0\n",
		"snapfs-tree\t1\nsnap\tid=x\tparent=0\tfile=a\n",
		"snapfs-tree\t1\nsnap\tid=1\tparent=0\tfile=a\tcolour=red\n",
		"snapfs-tree\t1\nsnap\tid=1\tparent=0\tfile=a\tdesc=\\q\n",
		"snapfs-tree\t1\nsnap\tid=1\tparent=0\tfile=a\tcreated=yesterday\n",
		"snapfs-tree\t1\ncurrent\t5\nsnap\tid=1\tparent=0\tfile=a\n",
		"snapfs-tree\t1\nfrobnicate\n",
		"snapfs-tree\t1\nmove\tto=x\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tree *t = NULL;
		char err[200] = "";
		int rc = tree_parse(&t, bad[i], strlen(bad[i]), err,
				    sizeof(err));
		if (rc != -EINVAL)
			fprintf(stderr, "  case %zu: rc %d\n", i, rc);
		T_EQ(rc, -EINVAL);
		T_CHECK(!strncmp(err, "line ", 5));
		tree_free(rc ? NULL : t);
	}
	struct tree *t = NULL;
	const char *ok = "# comment\n\nsnapfs-tree\t1\nnext\t9\ncurrent\t1\n"
			 "snap\tid=1\tparent=0\tcreated=-\tfile=a\n";
	T_EQ(tree_parse(&t, ok, strlen(ok), NULL, 0), 0);
	uint32_t id = 0;
	T_EQ(tree_add(t, 1, "b", 0, &id), 0);
	T_EQ(id, 9);	/* next is kept even above the largest id */
	tree_free(t);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
/* Random adds, removes and re-parents against a parent array. */
static void test_model(void)
{
	enum { MAXID = 400 };
	uint32_t parent[MAXID + 1];
	int alive[MAXID + 1];
	struct tree *t;
	int bad = 0;

	memset(alive, 0, sizeof(alive));
	tree_new(&t);
	for (int step = 0; step < 300 && !bad; step++) {
		uint32_t live[MAXID + 1], nl = 0;
		for (uint32_t i = 1; i <= MAXID; i++)
			if (alive[i])
				live[nl++] = i;
		unsigned op = (unsigned)(t_xorshift(&rng) % 4);
		if (op < 2 || nl < 2) {
			char f[32];
			uint32_t p = nl ? live[t_xorshift(&rng) % nl] : 0, id;
			snprintf(f, sizeof(f), "f%d.patch", step);
			if (tree_add(t, p, f, step, &id) || id > MAXID) {
				bad = 1;
				break;
			}
			alive[id] = 1;
			parent[id] = p;
		} else if (op == 2) {
			uint32_t v = live[t_xorshift(&rng) % nl];
			T_EQ(tree_remove(t, v), 0);
			for (uint32_t i = 1; i <= MAXID; i++)
				if (alive[i] && parent[i] == v)
					parent[i] = parent[v];
			alive[v] = 0;
		} else {
			uint32_t v = live[t_xorshift(&rng) % nl], p = live[t_xorshift(&rng) % nl];
			int loop = 0;
			for (uint32_t a = p; a; a = parent[a])
				loop |= a == v;
			int rc = tree_set_parent(t, v, p);
			T_EQ(rc, loop ? -ELOOP : 0);
			if (!loop)
				parent[v] = p;
		}
		struct tree *u = reparse(t);
		if (!u) {
			bad = 1;
			break;
		}
		tree_free(t);
		t = u;
		for (uint32_t i = 1; i <= MAXID; i++) {
			const struct tree_node *n = tree_get(t, i);
			if ((n != NULL) != (alive[i] != 0) ||
			    (n && n->parent != parent[i]))
				bad = 1;
		}
	}
	T_CHECK(!bad);
	tree_free(t);
}

int main(void)
{
	T_RUN(test_roundtrip);
	T_RUN(test_remove);
	T_RUN(test_bad);
	T_RUN(test_model);
	return t_done();
}
