/* SPDX-License-Identifier: MIT */
/*
 * tree: the snapshot tree of a store, as a value: who is whose parent,
 * which file holds each snapshot, metadata, and the changes still to be
 * rolled forward on disk.
 *
 * Each snapshot has an id that never changes over its life (rename,
 * rebase) and is never reused; inode numbers, file ids in indexes and
 * derived file names come from it. The tree is kept on disk as
 * snapshots.txt beside increments.txt (format in the README and in
 * tree.c); a store without that file is a plain line, whose ids are the
 * positions 1..n from the base up.
 *
 * Not here: any I/O. The store (fs/store*.c) reads and writes the file
 * and is the only one to change the store on disk; edits are made on a
 * tree_clone() and committed or dropped as a whole. A tree is not
 * thread-safe: its owner serialises access.
 */
#ifndef SNAPFS_FS_TREE_H
#define SNAPFS_FS_TREE_H

#include <stddef.h>
#include <stdint.h>

#define TREE_FILE "snapshots.txt"
#define TREE_MAX_ID 0x7ffffu	/* ids fit an index extent's file id */

struct tree;

/* A read-only view of one snapshot: valid until the tree is changed
 * (any tree_add*, tree_remove, tree_set_*). */
struct tree_node {
	uint32_t id;
	uint32_t parent;	/* 0: a base (full state, no parent) */
	const char *file;	/* path of its layer file, relative to the store */
	int64_t created;	/* seconds since the epoch (UTC); 0: unknown */
	const char *digest;	/* of the full state, "" until computed */
	const char *desc;	/* free text, "" if none */
};

/* A change on disk still to be finished after a crash (roll forward). */
struct tree_pending {
	const char *from;	/* a move's source, NULL for a delete */
	const char *to;		/* a move's destination, or the file to delete */
};

/* --- life cycle --- */

int tree_new(struct tree **out);
void tree_free(struct tree *t);
int tree_clone(const struct tree *t, struct tree **out);

/*
 * Parses snapshots.txt (buf, len bytes). Returns 0, -ENOMEM, or -EINVAL
 * with the line and what is wrong in err: unknown version, bad field,
 * a parent that does not come before its child, a duplicate id or file,
 * a current that names no snapshot.
 */
int tree_parse(struct tree **out, const char *buf, size_t len, char *err,
	       size_t errlen);
/* The file's text in *out (malloc'd: the caller frees), parents before
 * children. Returns 0 or -ENOMEM. */
int tree_format(const struct tree *t, char **out, size_t *len);

/* --- queries --- */

size_t tree_count(const struct tree *t);
/* Snapshot i in file order (parents before children), NULL past the end. */
const struct tree_node *tree_at(const struct tree *t, size_t i);
const struct tree_node *tree_get(const struct tree *t, uint32_t id);
const struct tree_node *tree_by_file(const struct tree *t, const char *file);
/* The snapshot the next one written is diffed against (0: empty tree). */
uint32_t tree_current(const struct tree *t);
/* The id tree_add() hands out next. */
uint32_t tree_next_id(const struct tree *t);
/* Whether the tree came from (or was written to) snapshots.txt, as opposed
 * to a plain line read from increments.txt. */
int tree_explicit(const struct tree *t);
void tree_set_explicit(struct tree *t);
/* Ancestors of id, itself first, the base last, into ids (cap entries).
 * Returns how many there are (may exceed cap), or 0 for an unknown id. */
size_t tree_line(const struct tree *t, uint32_t id, uint32_t *ids,
		 size_t cap);
/* Children of id (0: the bases) into ids. Returns how many there are. */
size_t tree_children(const struct tree *t, uint32_t id, uint32_t *ids,
		     size_t cap);
size_t tree_npending(const struct tree *t);
const struct tree_pending *tree_pending_at(const struct tree *t, size_t i);

/* t (seconds, UTC) as snapshots.txt writes it: "2026-12-03T07:40:00Z",
 * or "-" for 0 (unknown). */
void tree_format_time(int64_t t, char *buf, size_t cap);

/* --- changes (on a clone, committed by the store) --- */

/* Adds a snapshot under parent (0: a base). Returns 0 with its new id in
 * *id, -ENOENT for an unknown parent, -EEXIST if file is taken, -ENOSPC
 * when ids ran out. */
int tree_add(struct tree *t, uint32_t parent, const char *file,
	     int64_t created, uint32_t *id);
/* Adds with a given id (a plain line's positions). */
int tree_add_id(struct tree *t, uint32_t id, uint32_t parent,
		const char *file, int64_t created);
/* Removes id; its children move to its parent. If it was current, its
 * parent becomes current (for a base: its first child, else nothing). */
int tree_remove(struct tree *t, uint32_t id);
int tree_set_parent(struct tree *t, uint32_t id, uint32_t parent);
int tree_set_file(struct tree *t, uint32_t id, const char *file);
int tree_set_desc(struct tree *t, uint32_t id, const char *desc);
int tree_set_digest(struct tree *t, uint32_t id, const char *digest);
int tree_set_current(struct tree *t, uint32_t id);
/* Records a move (from != NULL) or a delete to finish on disk. */
int tree_add_pending(struct tree *t, const char *from, const char *to);
void tree_clear_pending(struct tree *t);

#endif
