/* SPDX-License-Identifier: MIT */
/*
 * passfs: a stand-in for snapfs in the QEMU end-to-end test, so that the
 * SNAPFS_MOUNT_CMD path of tests/e2e/50-qemu.sh can run before snapfs
 * exists:
 *
 *     SNAPFS_MOUNT_CMD="$BUILD/passfs -f" sh tests/e2e/50-qemu.sh
 *
 * It mounts a flat directory STORE at MOUNTDIR and stores every file as is
 * (no deltas), but it publishes a new file the way snapfs's commit protocol
 * does: while being written the file lives under a temporary name, and only
 * the RELEASE of the writer's last descriptor renames it into place. The
 * kernel sends RELEASE asynchronously after close(), so a file written with
 * `cat > MOUNTDIR/f` may show up a moment after cat has exited; the QEMU
 * helpers have to cope with that, and this is where it gets tested.
 * Existing files are read-only (EROFS on open for writing), like snapshots.
 *
 * Usage: passfs STORE MOUNTDIR [FUSE options, e.g. -f]
 * Build: gcc -O2 -o passfs passfs.c $(pkg-config --cflags --libs fuse3)
 * Single-threaded on purpose (-s is forced): it is a test tool.
 */
#define FUSE_USE_VERSION 31
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *store;

static int real(char *buf, const char *path, int tmp)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s%s", store, tmp ? ".partial." : "",
			 path + 1);
	return n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int pf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	char p[PATH_MAX];
	int rc;
	if (fi)
		return fstat((int)fi->fh, st) ? -errno : 0;
	if (strcmp(path, "/") == 0)
		return stat(store, st) ? -errno : 0;
	if (strchr(path + 1, '/') || path[1] == '.')
		return -ENOENT;
	if ((rc = real(p, path, 0)))
		return rc;
	if (stat(p, st) == 0)
		return 0;
	if ((rc = real(p, path, 1)))
		return rc;
	return stat(p, st) ? -errno : 0;
}

static int pf_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	(void)off; (void)fi; (void)flags;
	if (strcmp(path, "/"))
		return -ENOTDIR;
	DIR *d = opendir(store);
	if (!d)
		return -errno;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			fill(buf, e->d_name, NULL, 0, 0);
	closedir(d);
	return 0;
}

static int pf_open(const char *path, struct fuse_file_info *fi)
{
	char p[PATH_MAX];
	int rc;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	if ((rc = real(p, path, 0)))
		return rc;
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pf_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	char p[PATH_MAX], t[PATH_MAX];
	int rc;
	if (strchr(path + 1, '/') || path[1] == '.')
		return -EPERM;
	if ((rc = real(p, path, 0)) || (rc = real(t, path, 1)))
		return rc;
	if (access(p, F_OK) == 0)
		return -EROFS;
	int fd = open(t, O_RDWR | O_CREAT | O_EXCL, mode & 0666);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pf_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	(void)path;
	ssize_t n = pread((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int pf_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)path;
	ssize_t n = pwrite((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

/* The commit: fsync, then rename the partial file into place. */
static int pf_release(const char *path, struct fuse_file_info *fi)
{
	char p[PATH_MAX], t[PATH_MAX];
	int fd = (int)fi->fh, rc = 0;
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		if (fsync(fd) || real(p, path, 0) || real(t, path, 1) ||
		    rename(t, p))
			rc = -errno;
	}
	close(fd);
	return rc;
}

static int pf_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)path;
	if (!fi)
		return -EROFS;
	return ftruncate((int)fi->fh, size) ? -errno : 0;
}

static int pf_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return statvfs(store, sv) ? -errno : 0;
}

static const struct fuse_operations ops = {
	.getattr = pf_getattr,
	.readdir = pf_readdir,
	.open = pf_open,
	.create = pf_create,
	.read = pf_read,
	.write = pf_write,
	.release = pf_release,
	.truncate = pf_truncate,
	.statfs = pf_statfs,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)data; (void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !store) {
		store = realpath(arg, NULL);
		if (!store) {
			fprintf(stderr, "passfs: store %s: %s\n", arg, strerror(errno));
			exit(1);
		}
		return 0;	/* consumed */
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	if (fuse_opt_parse(&args, NULL, NULL, opt_proc) || !store) {
		fprintf(stderr, "usage: passfs STORE MOUNTDIR [-f] [-o opts]\n");
		return 2;
	}
	fuse_opt_add_arg(&args, "-s");
	int rc = fuse_main(args.argc, args.argv, &ops, NULL);
	fuse_opt_free_args(&args);
	free(store);
	return rc;
}
