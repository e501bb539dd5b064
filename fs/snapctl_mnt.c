/* SPDX-License-Identifier: MIT */
/*
 * snapctl_mnt: snapctl's changes to a store that is mounted, made as the
 * file operations on the mount that a user would type (rm, mv, setfattr,
 * ln -sfn, cp), so that the mount, the one process that may change the
 * store while it is up, makes them with its own checks and the caller's
 * own credentials.
 *
 * Finding the mount: the store's lock file names the mountpoint and a
 * token (fs/store.h store_note_mount); the route is taken only if the
 * root there answers that token, so a stale lock file or a path another
 * filesystem now covers routes nothing (snapctl then refuses, exit 3).
 *
 * The lock file is the store's, and a store may be writable by someone
 * snapctl (often root) must not act for: its words could name any path,
 * a directory with a forged user.snapfs.mount_token, or one behind a
 * symlink swapped in later. So the mountpoint is opened once, without
 * following any symlink (openat2 RESOLVE_NO_SYMLINKS), must be a FUSE
 * filesystem's (fstatfs) answering the token on that very descriptor,
 * and every change is made relative to it (unlinkat, renameat, ...)
 * with a name that is a snapshot the read-only chain knows or one
 * names_check accepts: no '/', no "..". The worst a forged lock file
 * can then do is route the change into a FUSE mount its writer owns.
 * Not here: the direct changes (fs/snapctl_cmd.c, fs/snapctl_io.c),
 * the option parsing (fs/snapctl.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs/chain.h"
#include "fs/names.h"
#include "fs/snapctl_int.h"
#include "fs/store.h"

#define FUSE_SUPER_MAGIC 0x65735546

int mnt_find(struct ctl *x)
{
	char mnt[PATH_MAX], token[64], got[64];
	struct open_how how = {
		.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	struct statfs sf;
	ssize_t n;
	int fd;

	x->mnt[0] = 0;
	x->mntfd = -1;
	if (!x->store_dir ||
	    store_mount_of(x->store_dir, mnt, sizeof(mnt), token,
			   sizeof(token)) || mnt[0] != '/')
		return 0;
	for (const char *p = mnt; *p; p++)	/* printed in messages */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			return 0;
	fd = (int)syscall(SYS_openat2, AT_FDCWD, mnt, &how, sizeof(how));
	if (fd < 0)
		return 0;
	n = fgetxattr(fd, STORE_TOKEN_XATTR, got, sizeof(got) - 1);
	if (fstatfs(fd, &sf) < 0 || sf.f_type != FUSE_SUPER_MAGIC || n <= 0 ||
	    (size_t)n != strlen(token) || memcmp(got, token, (size_t)n)) {
		close(fd);
		return 0;
	}
	snprintf(x->mnt, sizeof(x->mnt), "%s", mnt);
	x->mntfd = fd;
	return 1;
}

void mnt_close(struct ctl *x)
{
	if (x->mnt[0] && x->mntfd >= 0)
		close(x->mntfd);
	x->mnt[0] = 0;
	x->mntfd = -1;
}

/* A new name: the same rules the mount applies, said here first. */
static int new_name(const char *name)
{
	char why[256] = "";

	if (names_check(name, why, sizeof(why)) == 0)
		return EX_OK;
	die_msg("'%s': %s; choose another name", name, why);
	return EX_USAGE;
}

/* The usual errno of a refused change, in words, and the exit code. */
static int said(const struct ctl *x, const char *what, const char *name,
		int e)
{
	switch (e) {
	case EBUSY:
		die_msg("%s/%s: it is being written into the mount, or is what "
			"that file is diffed against; %s it once the write "
			"has finished", x->mnt, name, what);
		return EX_BUSY;
	case ENOSPC:
		die_msg("%s/%s: the mount refused to %s it: the store is full "
			"or would pass the mount's max_store; free space or "
			"remove snapshots first", x->mnt, name, what);
		return EX_OTHER;
	case EACCES:
	case EPERM:
		die_msg("%s/%s: %s: %s (the mount checks the caller's "
			"permissions)", x->mnt, name, what, strerror(e));
		return EX_OTHER;
	case ENOENT:
	case EEXIST:
	case EINVAL:
	case ENAMETOOLONG:
		die_msg("%s/%s: %s: %s", x->mnt, name, what, strerror(e));
		return EX_USAGE;
	default:
		die_msg("%s/%s: %s: %s; the mount's log says more", x->mnt,
			name, what, strerror(e));
		return EX_OTHER;
	}
}

int mnt_rm(struct ctl *x, const char *name)
{
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	if (unlinkat(x->mntfd, name, 0) < 0)
		return said(x, "remove", name, errno);
	return EX_OK;
}

int mnt_mv(struct ctl *x, const char *from, const char *to)
{
	struct stat st;
	uint32_t id;
	int rc = lookup(x, from, &id);

	if (!rc)
		rc = new_name(to);
	if (rc)
		return rc;
	/* Never replacing a snapshot is the mount's rule anyway; said the
	 * way the direct path says it. */
	if (fstatat(x->mntfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		die_msg("%s/%s: the new name is taken", x->mnt, to);
		return EX_USAGE;
	}
	if (renameat(x->mntfd, from, x->mntfd, to) < 0)
		return said(x, "rename", from, errno);
	return EX_OK;
}

int mnt_describe(struct ctl *x, const char *name, const char *text)
{
	char path[64 + NAMES_MAX];
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	/* Through the checked descriptor: /proc/self/fd/N is that very
	 * directory, whatever its path has become. */
	if (snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", x->mntfd,
		     name) >= (int)sizeof(path))
		return said(x, "describe", name, ENAMETOOLONG);
	if (lsetxattr(path, "user.description", text, strlen(text), 0) < 0)
		return said(x, "describe", name, errno);
	return EX_OK;
}

/* ln -sfn PARENT MNT/current: a temporary link renamed over current. */
static int mnt_set_current(struct ctl *x, const char *parent)
{
	char t[64];

	snprintf(t, sizeof(t), ".snapctl-current-%ld", (long)getpid());
	if (symlinkat(parent, x->mntfd, t) < 0)
		return said(x, "make current", parent, errno);
	if (renameat(x->mntfd, t, x->mntfd, "current") < 0) {
		int e = errno;
		unlinkat(x->mntfd, t, 0);
		return said(x, "make current", parent, e);
	}
	return EX_OK;
}

/* Copies path's decoded bytes into fd; EX_*, with the message said. */
static int mnt_copy(struct ctl *x, struct src *r, const char *path,
		    const char *name, int fd)
{
	uint8_t *buf = malloc(IO_CHUNK);
	uint64_t off = 0;
	int rc = EX_OK;

	if (!buf)
		return EX_OTHER;
	for (;;) {
		ssize_t n = src_read(r, buf, IO_CHUNK);
		if (n < 0) {
			die_msg("%s: %s; %s was not added", path, n == -EINVAL ?
				"not a valid zstd file" : strerror((int)-n),
				name);
			rc = EX_OTHER;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(fd, buf + done, (size_t)(n - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = said(x, "write", name, errno);
				goto out;
			}
			done += w;
		}
		off += (uint64_t)n;
	}
	if (!rc && off == 0) {
		die_msg("%s: empty file: not added", path);
		rc = EX_USAGE;
	}
out:
	free(buf);
	return rc;
}

int mnt_add(struct ctl *x, const char *name, const char *path,
	    const char *parent)
{
	struct src r;
	uint32_t id;
	int rc = new_name(name), fd;

	if (!rc && parent)
		rc = lookup(x, parent, &id);
	if (!rc && chain_lookup(x->c, name)) {
		die_msg("%s/%s: a snapshot of that name exists; choose another "
			"name", x->mnt, name);
		rc = EX_USAGE;
	}
	if (rc)
		return rc;
	rc = src_open(&r, path);
	if (rc) {
		die_msg("%s: %s", path, strerror(-rc));
		src_close(&r);
		return EX_OTHER;
	}
	/* The mount diffs a new file against current when it is created:
	 * another writer moving current in between would change the
	 * parent, the same race as `ln -sfn P current; cp F NAME`. */
	rc = parent ? mnt_set_current(x, parent) : EX_OK;
	if (rc) {
		src_close(&r);
		return rc;
	}
	fd = openat(x->mntfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0644);
	if (fd < 0) {
		src_close(&r);
		return said(x, "add", name, errno);
	}
	rc = mnt_copy(x, &r, path, name, fd);
	src_close(&r);
	if (rc) {
		/* Closed with nothing in it, the mount adds no snapshot
		 * (fs/fuse_write.c): never a half-copied one. */
		if (ftruncate(fd, 0) < 0)
			die_msg("%s/%s: %s: cannot drop the partial copy; "
				"remove it with rm", x->mnt, name,
				strerror(errno));
		close(fd);
		return rc;
	}
	/* A commit error (disk full, failed verify) is returned here, by
	 * fsync and by close (FUSE FLUSH), never only logged. */
	if (fsync(fd) < 0) {
		int e = errno;
		close(fd);
		return said(x, "save", name, e);
	}
	if (close(fd) < 0)
		return said(x, "save", name, errno);
	return EX_OK;
}
