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
 * Every name put into a path is either a snapshot the read-only chain
 * knows or one names_check accepts: no '/', no "..", so no path built
 * here leaves the mount. Not here: the direct changes (fs/snapctl_cmd.c,
 * fs/snapctl_io.c), the option parsing (fs/snapctl.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs/chain.h"
#include "fs/names.h"
#include "fs/snapctl_int.h"
#include "fs/store.h"

int mnt_find(struct ctl *x)
{
	char mnt[PATH_MAX], token[64], got[64];
	ssize_t n;

	x->mnt[0] = 0;
	if (!x->store_dir ||
	    store_mount_of(x->store_dir, mnt, sizeof(mnt), token,
			   sizeof(token)))
		return 0;
	n = getxattr(mnt, STORE_TOKEN_XATTR, got, sizeof(got) - 1);
	if (n <= 0 || (size_t)n != strlen(token) ||
	    memcmp(got, token, (size_t)n))
		return 0;
	snprintf(x->mnt, sizeof(x->mnt), "%s", mnt);
	return 1;
}

/* MNT/NAME into path; -ENAMETOOLONG past PATH_MAX. */
static int mnt_path(const struct ctl *x, const char *name, char *path,
		    size_t cap)
{
	int n = snprintf(path, cap, "%s/%s", x->mnt, name);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
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
	char path[PATH_MAX];
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	if (mnt_path(x, name, path, sizeof(path)) || unlink(path) < 0)
		return said(x, "remove", name, errno);
	return EX_OK;
}

int mnt_mv(struct ctl *x, const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];
	uint32_t id;
	int rc = lookup(x, from, &id);

	if (!rc)
		rc = new_name(to);
	if (rc)
		return rc;
	if (mnt_path(x, from, a, sizeof(a)) || mnt_path(x, to, b, sizeof(b)))
		return said(x, "rename", from, ENAMETOOLONG);
	/* RENAME_NOREPLACE is the mount's rule anyway; say it the same way
	 * the direct path does. */
	if (access(b, F_OK) == 0) {
		die_msg("%s: the new name is taken", b);
		return EX_USAGE;
	}
	if (rename(a, b) < 0)
		return said(x, "rename", from, errno);
	return EX_OK;
}

int mnt_describe(struct ctl *x, const char *name, const char *text)
{
	char path[PATH_MAX];
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	if (mnt_path(x, name, path, sizeof(path)) ||
	    setxattr(path, "user.description", text, strlen(text), 0) < 0)
		return said(x, "describe", name, errno);
	return EX_OK;
}

/* ln -sfn PARENT MNT/current: a temporary link renamed over current. */
static int mnt_set_current(struct ctl *x, const char *parent)
{
	char tmp[PATH_MAX], cur[PATH_MAX], t[64];

	snprintf(t, sizeof(t), ".snapctl-current-%ld", (long)getpid());
	if (mnt_path(x, t, tmp, sizeof(tmp)) ||
	    mnt_path(x, "current", cur, sizeof(cur)))
		return said(x, "make current", parent, ENAMETOOLONG);
	if (symlink(parent, tmp) < 0)
		return said(x, "make current", parent, errno);
	if (rename(tmp, cur) < 0) {
		int e = errno;
		unlink(tmp);
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
	char dst[PATH_MAX];
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
	if (!rc && mnt_path(x, name, dst, sizeof(dst)))
		rc = said(x, "add", name, ENAMETOOLONG);
	if (rc) {
		src_close(&r);
		return rc;
	}
	fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
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
			die_msg("%s: %s: cannot drop the partial copy; remove "
				"it with rm", dst, strerror(errno));
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
