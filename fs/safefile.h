/* SPDX-License-Identifier: MIT */
/*
 * safefile: opening and creating files beneath a directory without ever
 * leaving it.
 *
 * A store may be writable by users the mount serves (allow_other), so no
 * name in it is trusted: a symlink in any component is refused, never
 * followed (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or O_NOFOLLOW
 * per component where openat2 is missing); FIFOs, devices and sockets are
 * refused after a non-blocking open, so a hostile store cannot hang the
 * mount; directories are checked to be real directories; temporaries are
 * created O_EXCL | O_NOFOLLOW after removing whatever had the name, so a
 * planted symlink is replaced, never written through.
 *
 * Every call returns an fd or -errno and, on failure, points *why (when
 * not NULL) at a static phrase for the caller's message ("is a symbolic
 * link", "is a FIFO", ...). Not here: messages with file names, which
 * the caller knows. Stateless; safe from any thread.
 */
#ifndef SNAPFS_FS_SAFEFILE_H
#define SNAPFS_FS_SAFEFILE_H

#include <sys/stat.h>
#include <sys/types.h>

/*
 * Opens path (relative, '/'-separated, no "..") beneath dirfd with flags
 * (O_RDONLY, O_RDWR, O_WRONLY, optionally O_APPEND | O_CREAT with mode)
 * and checks it is a regular file; st (if not NULL) receives its fstat.
 * Returns the fd (O_CLOEXEC, blocking) or -ELOOP (a symlink on the way),
 * -EXDEV (the path leaves dirfd), -EINVAL (a FIFO, device or socket:
 * never opened for I/O, never waited on), -EISDIR, or the open's -errno.
 */
int safefile_open(int dirfd, const char *path, int flags, mode_t mode,
		  struct stat *st, const char **why);

/*
 * Creates directory name in dirfd if missing (mode) and opens it. A
 * symlink or a non-directory in its place gives -ELOOP or -ENOTDIR.
 * Returns the fd (O_RDONLY | O_DIRECTORY | O_CLOEXEC) or -errno.
 */
int safefile_subdir(int dirfd, const char *name, mode_t mode,
		    const char **why);

/*
 * Creates a fresh regular file name in dirfd, open O_RDWR: whatever had
 * the name (file or symlink) is unlinked first, and the create is
 * O_EXCL | O_NOFOLLOW, so nothing outside dirfd is touched. Returns the
 * fd or -errno.
 */
int safefile_create(int dirfd, const char *name, mode_t mode,
		    const char **why);

#endif
