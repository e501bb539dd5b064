/* SPDX-License-Identifier: MIT */
/*
 * store_int: what the store's three files share: struct store itself and
 * the steps one calls in another. fs/store.c opens the store (the lock,
 * the subdirectories), bounds its capacity, and gives the accessors and
 * the remote hooks; fs/store_load.c reads the layers file and
 * snapshots.txt into the tree (the plain scripts' layout, adoption of
 * lines a script added); fs/store_commit.c makes every change on disk
 * (one commit step, roll-forward, the layers file rewrite, sweeps).
 * Nothing else includes it: the public API is fs/store.h.
 */
#ifndef SNAPFS_FS_STORE_INT_H
#define SNAPFS_FS_STORE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs/store.h"
#include "fs/tree.h"

struct remote;

/* The subdirectories of .snapfs (subdirs[] in fs/store.c), tmp last. */
#define NSUB 7
#define TMP_SUB (NSUB - 1)

/* A comment or blank line of increments.txt, kept after the layer line
 * it followed. By the snapshot's id, not the line's text: the file a
 * line names changes (the plain layout's s.zstd read as s.patch, a
 * rename, a rebase) while the snapshot stays. */
struct extra {
	uint32_t after;		/* 0: the top of the file; EXTRA_NOWHERE */
	char *text;		/* without its newline */
};
/* after for a line that followed a layer line the tree does not have
 * (a change being finished): such lines go to the end. */
#define EXTRA_NOWHERE UINT32_MAX

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

/* fs/store.c: fstatat of a store file, without following symlinks; for a
 * remote store, from the bucket's listing. 0 or -1 with errno. */
int store_stat_file(const struct store *s, const char *path,
		    struct stat *st);

/* fs/store.c: bytes of the regular files beneath dfd (depth: how deep it
 * is already; .snapfs has two levels). */
uint64_t store_walk_bytes(int dfd, int depth);

/* fs/store.c: frees the n kept lines at x. */
void store_free_extra(struct extra *x, size_t n);

/* fs/store_load.c: reads snapshots.txt and increments.txt into s->tree,
 * and increments.txt's other lines into s->extra. */
int store_load(struct store *s, char *err, size_t errlen);

/* fs/store_commit.c: checks what every snapshot's file name must be. */
int store_check_tree(struct store *s, const struct tree *t, char *err,
		     size_t errlen);

/* fs/store_commit.c: writes increments.txt (store_replace's fill; arg is
 * the store). */
int store_fill_layers(int fd, void *arg);

/* fs/store_commit.c: does what s->tree's pending records ask. */
int store_roll_forward(struct store *s);

#endif
