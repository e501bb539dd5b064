/* SPDX-License-Identifier: MIT */
/*
 * fuse_ops: the FUSE low-level operations of snapfs: translation between
 * FUSE requests and the chain, nothing else. Inode 1 is the root; snapshot
 * id k (fs/tree.h) is inode k + 1, stable over the snapshot's life
 * (rename, rebase); the `current` symlink and the temporary links that
 * `ln -sfn` makes have inodes above every id.
 *
 * Ownership and modes shown are the store's: the root is the store
 * directory's owner and mode, a snapshot its layer file's, without write
 * bits (snapshots never change). A new snapshot belongs to the user who
 * created it, with the mode its create asked for (umask applied) less
 * write bits. With default_permissions (implied by allow_other, see
 * fs/main.c) the kernel enforces exactly these. Everything that would
 * change a name (rm, mv, mkdir, ln, mknod) is refused with EPERM or EROFS.
 *
 * Not here: argument parsing, daemon life cycle (fs/main.c), anything a
 * unit test would need (fs/chain.c).
 */
#ifndef SNAPFS_FS_FUSE_OPS_H
#define SNAPFS_FS_FUSE_OPS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

#include "fs/chain.h"
#include "fs/log.h"
#include "fs/store.h"
#include "fs/writer.h"

struct fuse_lowlevel_ops;
struct handle;

#define INO_OF(id) ((uint64_t)(id) + 1)
#define ID_OF(ino) ((uint32_t)((ino) - 1))
#define CURRENT_INO ((uint64_t)TREE_MAX_ID + 2)
#define CURRENT_NAME "current"
#define SNAPFS_MAX_LINKS 16

/* A temporary symlink: ln -sfn creates one, then renames it over current.
 * Never stored. */
struct snapfs_link {
	int used;
	char name[256];
	char target[256];
};

/* The mount's context: the session's userdata. Everything mutable that
 * the mount has lives here or below it. */
struct snapfs_mount {
	struct store *store;
	struct remote *remote;	/* a store in a bucket, or NULL */
	struct chain *chain;
	struct log *log;	/* every message after the mount is up */
	double timeout;		/* entry/attr cache timeout, seconds */
	/*
	 * Changes to the store (a commit, rm, mv, descriptions, current)
	 * one at a time. Lock order: change, then lock, then whatever the
	 * writer and chain take inside; never wait for a commit holding
	 * change (the commit takes it).
	 */
	pthread_mutex_t change;
	/* The snapshot being written, if any, and the temporary links. */
	pthread_mutex_t lock;
	pthread_cond_t changed;	/* signalled when w goes away */
	struct writer *w;	/* protected by lock */
	unsigned w_opens;	/* protected by lock: open write handles */
	int w_committing;	/* protected by lock */
	uint64_t w_ino;		/* protected by lock: its inode */
	struct snapfs_link links[SNAPFS_MAX_LINKS];	/* protected by lock */
	struct handle *readers;	/* protected by lock: open snapshots */
	uid_t w_uid;		/* protected by lock: who created it */
	gid_t w_gid;		/* protected by lock */
	mode_t w_mode;		/* protected by lock: as shown, no write bits */
	pid_t w_pid;		/* protected by lock: for the EBUSY message */
	/* -o direct_read: snapshot reads go straight to the reader instead
	 * of through the kernel's page cache (op_open in fs/fuse_ops.c). */
	int direct_read;
	/* Replies may splice checked file ranges (set once at init, see
	 * op_init in fs/fuse_ops.c). */
	int splice;
	/* Random, set before the session starts: the root answers it as
	 * STORE_TOKEN_XATTR, so snapctl knows this mount serves the store
	 * whose lock file names it (fs/store.h store_note_mount). */
	char token[40];
	/* Read buffers (BLKSIZE each) for reuse; lock order: leaf. */
	pthread_mutex_t buf_lock;
	void *bufs[16];		/* protected by buf_lock */
	unsigned nbufs;		/* protected by buf_lock */
};

/* Waits until a snapshot being committed is in the tree (or failed):
 * what was written and closed is then visible to metadata queries. */
void fuse_ops_settle(struct snapfs_mount *m);

/* Frees the read buffers kept in m and the readers still open (at
 * unmount, before the chain is freed). */
void fuse_ops_cleanup(struct snapfs_mount *m);

const struct fuse_lowlevel_ops *fuse_ops_table(void);

#endif
