/* SPDX-License-Identifier: MIT */
/*
 * zblob: the decompressed content of a seekable zstd file (codec/zframe)
 * as a blob, read frame by frame on demand. For derived data kept
 * compressed where bytes cost more than a core's time -- an aux file in a
 * bucket, fetched by every host that reads it -- but read through the
 * one blob path like any stored file.
 *
 * Not here: writing the file (zframe_writer), caching decoded blocks
 * (callers cache in cache/bcache; this keeps only the last frame it
 * decoded, so small reads in order decode each frame once). Thread-safe:
 * reads are serialised on the blob's own lock.
 */
#ifndef SNAPFS_CODEC_ZBLOB_H
#define SNAPFS_CODEC_ZBLOB_H

#include <sys/stat.h>

struct blob;

/*
 * A blob over src's decompressed bytes, named name (copied), its
 * identity st_ino/st_mtim from src's (the compressed file identifies the
 * content) and st_size the decompressed size. Takes a reference on src
 * (the caller keeps its own). Returns 0, or -errno from zframe_open
 * (-EMEDIUMTYPE: not zstd, -E2BIG: frames too large, -EBADMSG) with
 * *why (may be NULL) set.
 */
int zblob_open(struct blob **out, struct blob *src, const char *name,
	       const char **why);

#endif
