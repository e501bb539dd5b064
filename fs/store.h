/* SPDX-License-Identifier: MIT */
/*
 * store: a snapfs store directory on disk.
 *
 * A store is a directory with increments.txt (one path per line, newest
 * first, base last), the files it names, and .snapfs/ for derived data
 * (indexes, converted patches and bases, checksums, temporaries, the lock).
 * Opening a store parses the layers file, opens every layer file, derives
 * the names shown in the mount (file name without its extension), takes
 * the lock that keeps a second snapfs off the store, and clears leftover
 * temporaries of a crashed writer. Nothing outside the store is opened,
 * created or deleted: no symlink is followed, FIFOs, devices and sockets
 * are refused without blocking, and .snapfs/ and its subdirectories must
 * be real directories (fs/safefile). Comments and blank lines of the
 * layers file survive rewrites in place.
 *
 * Not here: what the layer files contain (the chain's business). Errors
 * become one message naming the file and what to do, in the caller's
 * buffer. A store is immutable after open except store_append(), which
 * the caller serialises; store_count() and store_layer() are safe from
 * other threads meanwhile (a layer, once returned, never moves).
 */
#ifndef SNAPFS_FS_STORE_H
#define SNAPFS_FS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define STORE_LAYERS_FILE "increments.txt"
#define STORE_META_DIR ".snapfs"
#define STORE_MAX_LAYERS 8000	/* two file ids per layer fit an xext */

struct store;

struct store_layer {
	char *path;		/* as written in the layers file */
	char *name;		/* shown in the mount */
	int fd;			/* open read-only */
	struct stat st;		/* at open time: owner and mode shown */
};

/*
 * Opens the store at dir. A store without a layers file is new and empty
 * (the first file written becomes its base); a layers file that exists but
 * names nothing is refused, as is one naming a missing or unreadable file,
 * an absolute or ".." path, a symlink or a path through one, anything but
 * a regular file, or two files with the same shown name. Too many open
 * files is reported as that, with the limit to raise.
 * Returns 0 or -errno with a message in err (errlen bytes).
 */
int store_open(struct store **out, const char *dir, char *err, size_t errlen);
void store_free(struct store *s);

/* Layers oldest first: 0 is the base. */
size_t store_count(const struct store *s);
const struct store_layer *store_layer(const struct store *s, size_t i);
const char *store_dir(const struct store *s);
int store_dirfd(const struct store *s);
/* fd of .snapfs/<sub> (created on open): "index", "plain", "base", "sums",
 * "aux", "tmp". Returns -1 for an unknown name. */
int store_subdir(const struct store *s, const char *sub);

/*
 * Adds a layer whose file (already renamed into the store) is path, and
 * rewrites the layers file atomically: temporary file (created afresh,
 * never through a symlink), fsync, rename, fsync of the directory. The
 * new line goes below any leading comment block; other comments and blank
 * lines keep their place. On failure the layers file is unchanged.
 */
int store_append(struct store *s, const char *path, char *err,
		 size_t errlen);

/* The shown name for a path: its file name without the last extension. */
int store_name_of(const char *path, char *name, size_t cap);

#endif
