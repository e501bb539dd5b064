/* SPDX-License-Identifier: MIT */
/*
 * fuse_int: what the FUSE front end's files share (fs/fuse_ops.c, the
 * file handlers; fs/fuse_write.c, the write path; fs/fuse_read.c, reads;
 * fs/fuse_tree.c, the directory and the snapshot tree's operations):
 * inode numbering, open handles and small helpers. Nothing outside
 * those files includes it.
 */
#ifndef SNAPFS_FS_FUSE_INT_H
#define SNAPFS_FS_FUSE_INT_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include "fs/fuse_ops.h"

#include <stdint.h>

#define ROOT_INO FUSE_ROOT_ID
#define LINK_INO(k) (CURRENT_INO + 1 + (fuse_ino_t)(k))

/* The temporary link called name (or with inode ino when name is NULL);
 * caller holds m->lock. NULL if none. */
struct snapfs_link *fuse_link_find(struct snapfs_mount *m, const char *name,
				   fuse_ino_t ino);
/* Attributes of a symlink to target. */
void fuse_link_stat(struct snapfs_mount *m, fuse_ino_t ino,
		    const char *target, struct stat *st);
/* Name of the current snapshot into buf ("" when there is none). */
void fuse_current_name(struct snapfs_mount *m, char *buf, size_t cap);
/* Into the mount's log, at error level. */
void fuse_log_msg(struct snapfs_mount *m, const char *msg);
/* Replies to a lookup-like request with st, cached for t seconds. */
void fuse_entry_reply(fuse_req_t req, const struct stat *st, double t);

/* fi->fh: a reader's version and readahead stream, or the mark of a
 * write handle. */
struct handle {
	int writer;
	struct chain_layer *L;
	struct chain_stream *st;
	uint32_t id;		/* the snapshot, for remote_read_done */
	int remote_reading;	/* remote_reading was said for it */
	struct handle *prev, *next;	/* m->readers, protected by m->lock */
};

static inline struct handle *H(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* Largest read and write request (1 MiB); a read buffer's size. */
#define BLKSIZE (1u << 20)

/* fs/fuse_read.c: reads. 1 if a reply of BLKSIZE may splice here (see
 * there); the read handler. */
int fuse_read_splice_fits(void);
void fuse_read_op(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		  struct fuse_file_info *fi);
/* fi->fh of a read handle: its version of the snapshot and stream. */
struct chain_layer *fuse_handle_layer(struct fuse_file_info *fi);
struct chain_stream *fuse_handle_stream(struct fuse_file_info *fi);

/* fs/fuse_tree.c: the directory and the tree (rm, mv, ln -sfn current). */
void fuse_tree_readlink(fuse_req_t req, fuse_ino_t ino);
void fuse_tree_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi);
void fuse_tree_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi);
void fuse_tree_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi);
void fuse_tree_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fuse_tree_symlink(fuse_req_t req, const char *target,
		       fuse_ino_t parent, const char *name);
void fuse_tree_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags);
void fuse_tree_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode);
void fuse_tree_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname);
void fuse_tree_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev);

/* fs/fuse_write.c: the write path. The handlers are FUSE's own
 * (create, write, flush, fsync); fuse_write_setattr answers (1) only
 * for the file being written; fuse_write_release frees a write handle
 * and publishes at the last. Called with m->lock held:
 * fuse_write_pending_stat (that file's attributes), fuse_write_reopen
 * (another open of it for writing; unlocks), fuse_write_settle_locked
 * (below). */
void fuse_write_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi);
void fuse_write_op(fuse_req_t req, fuse_ino_t ino, const char *buf,
		   size_t size, off_t off, struct fuse_file_info *fi);
int fuse_write_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set);
void fuse_write_flush(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi);
void fuse_write_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi);
void fuse_write_release(fuse_req_t req, struct fuse_file_info *fi);
void fuse_write_pending_stat(struct snapfs_mount *m, struct stat *st);
void fuse_write_reopen(struct snapfs_mount *m, fuse_req_t req,
		       struct fuse_file_info *fi);
/* Waits (m->lock held) while a writer commits, and while one looks
 * closed with its RELEASE still to come (close() returns before the
 * kernel sends it), the latter until *until: what a listing or a new
 * file must see first. fuse_write_deadline sets until; NULL: only a
 * commit is waited for. */
void fuse_write_settle_locked(struct snapfs_mount *m,
			      const struct timespec *until);
void fuse_write_deadline(struct timespec *until);

/* Lets go of the readers still open after the session ended (their
 * RELEASE will never come). fs/fuse_ops.c; called by fuse_ops_cleanup. */
void fuse_readers_drop_all(struct snapfs_mount *m);

#endif
