/* SPDX-License-Identifier: MIT */
/*
 * fuse_xattr: a snapshot's metadata as extended attributes (getfattr -d):
 * user.snapfs.{parent,depth,stored,created,kind,digest,damage},
 * user.description (settable), and user.snapfs.stats on the root.
 *
 * Not here: the metadata itself (fs/chain.c keeps it, fs/tree.c stores
 * it). Handlers of fs/fuse_ops.c's table; thread-safe as those are.
 */
#ifndef SNAPFS_FS_FUSE_XATTR_H
#define SNAPFS_FS_FUSE_XATTR_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <fuse_lowlevel.h>

void fuse_xattr_get(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void fuse_xattr_list(fuse_req_t req, fuse_ino_t ino, size_t size);
void fuse_xattr_set(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags);
void fuse_xattr_remove(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
