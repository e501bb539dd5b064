/* SPDX-License-Identifier: MIT */
/*
 * fuse_ops: the FUSE low-level operations of snapfs: translation between
 * FUSE requests and the chain, nothing else. Inode 1 is the root; layer i
 * of the chain is inode i + 2, stable for the life of the mount since
 * layers are only ever added on top.
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

/* The mount's context: the session's userdata. Everything mutable that
 * the mount has lives here or below it. */
struct snapfs_mount {
	struct store *store;
	struct chain *chain;
	struct log *log;	/* every message after the mount is up */
	double timeout;		/* entry/attr cache timeout, seconds */
	/*
	 * The snapshot being written, if any. Lock order: lock, then
	 * whatever the writer and chain take inside.
	 */
	pthread_mutex_t lock;
	pthread_cond_t changed;	/* signalled when w goes away */
	struct writer *w;	/* protected by lock */
	unsigned w_opens;	/* protected by lock: open write handles */
	int w_committing;	/* protected by lock */
	uint64_t w_ino;		/* protected by lock: its inode */
	uid_t w_uid;		/* protected by lock: who created it */
	gid_t w_gid;		/* protected by lock */
	mode_t w_mode;		/* protected by lock: as shown, no write bits */
	pid_t w_pid;		/* protected by lock: for the EBUSY message */
	/* Read buffers (BLKSIZE each) for reuse; lock order: leaf. */
	pthread_mutex_t buf_lock;
	void *bufs[16];		/* protected by buf_lock */
	unsigned nbufs;		/* protected by buf_lock */
};

/* Frees the read buffers kept in m (at unmount). */
void fuse_ops_cleanup(struct snapfs_mount *m);

const struct fuse_lowlevel_ops *fuse_ops_table(void);

#endif
