/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: snapshots.txt as tree_parse reads it. It is a plain
 * text file a user may edit or damage. A parsed tree must be a tree
 * (every parent listed, no loop), and writing it out and reading it back
 * must give the same tree.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tree *t = NULL, *u = NULL;
	char err[256], *txt;
	size_t len;

	if (tree_parse(&t, (const char *)data, size, err, sizeof(err)))
		return 0;
	for (size_t i = 0; i < tree_count(t); i++) {
		uint32_t ids[64];
		const struct tree_node *n = tree_at(t, i);
		if (n->parent && !tree_get(t, n->parent))
			abort();
		if (tree_line(t, n->id, ids, 64) == 0)
			abort();	/* a loop */
	}
	if (tree_format(t, &txt, &len))
		abort();
	if (tree_parse(&u, txt, len, err, sizeof(err)))
		abort();
	if (tree_count(u) != tree_count(t) ||
	    tree_current(u) != tree_current(t) ||
	    tree_npending(u) != tree_npending(t))
		abort();
	for (size_t i = 0; i < tree_count(t); i++) {
		const struct tree_node *a = tree_at(t, i);
		const struct tree_node *b = tree_get(u, a->id);
		if (!b || b->parent != a->parent || strcmp(b->file, a->file) ||
		    strcmp(b->desc, a->desc) || strcmp(b->digest, a->digest) ||
		    b->created != a->created)
			abort();
	}
	free(txt);
	tree_free(u);
	tree_free(t);
	return 0;
}
