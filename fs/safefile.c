/* SPDX-License-Identifier: MIT */
/*
 * safefile: opens that stay beneath a directory (see safefile.h).
 *
 * openat2() does the whole job in the kernel, atomically; the fall-back
 * (kernels before 5.6, or a seccomp filter that refuses the call) walks
 * the path one component at a time with O_NOFOLLOW, which refuses the
 * same symlinks at the cost of one open per directory. Either way the
 * last component is opened O_NONBLOCK and its type checked with fstat on
 * the open fd, so what is checked is what is used.
 */
#include "fs/safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char **why, const char *what)
{
	if (why)
		*why = what;
}

/* The component-by-component walk of kernels without openat2. */
static int walk_open(int dirfd, const char *path, int flags, mode_t mode)
{
	char buf[PATH_MAX];
	char *p = buf, *slash;
	int cur = dirfd, fd;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	if (buf[0] == '/')
		return -EXDEV;
	while ((slash = strchr(p, '/'))) {
		*slash = 0;
		if (*p && strcmp(p, ".")) {
			if (!strcmp(p, "..")) {
				fd = -EXDEV;
			} else {
				fd = openat(cur, p, O_RDONLY | O_DIRECTORY |
					    O_NOFOLLOW | O_CLOEXEC);
				if (fd < 0)
					fd = -errno;
			}
			if (cur != dirfd)
				close(cur);
			if (fd < 0)
				return fd;
			cur = fd;
		}
		p = slash + 1;
	}
	if (!strcmp(p, "..")) {
		fd = -EXDEV;
	} else {
		fd = openat(cur, *p ? p : ".", flags, mode);
		if (fd < 0)
			fd = -errno;
	}
	if (cur != dirfd)
		close(cur);
	return fd;
}

int safefile_open(int dirfd, const char *path, int flags, mode_t mode,
		  struct stat *st, const char **why)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_NONBLOCK |
				    O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS,
	};
	struct stat sb;
	int fd, e;

	if (!st)
		st = &sb;
	fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fd = walk_open(dirfd, path, (int)how.flags, how.mode);
	else if (fd < 0)
		fd = -errno;
	if (fd < 0) {
		e = -fd;
		if (e == ELOOP)
			say(why, "is a symbolic link or lies under one (snapfs "
			    "follows no symlink in a store)");
		else if (e == EXDEV)
			say(why, "lies outside the store");
		else if (e == ENXIO)
			say(why, "is a FIFO or a device, not a regular file");
		else
			say(why, strerror(e));
		return e == ENXIO ? -EINVAL : -e;
	}
	if (fstat(fd, st) < 0) {
		e = errno;
		close(fd);
		say(why, strerror(e));
		return -e;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		if (S_ISDIR(st->st_mode)) {
			say(why, "is a directory, not a regular file");
			return -EISDIR;
		}
		say(why, S_ISFIFO(st->st_mode) ? "is a FIFO, not a regular file" :
		    S_ISSOCK(st->st_mode) ? "is a socket, not a regular file" :
		    "is a device, not a regular file");
		return -EINVAL;
	}
	/* Regular files ignore O_NONBLOCK; cleared all the same, so the fd
	 * means what a plain open would. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int safefile_subdir(int dirfd, const char *name, mode_t mode,
		    const char **why)
{
	int fd, e;

	if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST) {
		e = errno;
		say(why, strerror(e));
		return -e;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
	if (fd >= 0)
		return fd;
	e = errno;
	/* O_DIRECTORY | O_NOFOLLOW on a symlink gives ENOTDIR, not ELOOP:
	 * look at the entry itself to say which it is. */
	struct stat st;
	if (e == ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		e = ELOOP;
	if (e == ELOOP)
		say(why, "is a symbolic link, where snapfs keeps a real "
		    "directory: remove it");
	else if (e == ENOTDIR)
		say(why, "is not a directory: remove it");
	else
		say(why, strerror(e));
	return -e;
}

int safefile_create(int dirfd, const char *name, mode_t mode,
		    const char **why)
{
	int fd, e;

	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT) {
		e = errno;
		say(why, e == EISDIR || e == EPERM ?
		    "is in the way and is not a file: remove it" :
		    strerror(e));
		return -e;
	}
	fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, mode);
	if (fd >= 0)
		return fd;
	e = errno;
	say(why, strerror(e));
	return -e;
}
