/* SPDX-License-Identifier: MIT */
/*
 * fusecat: the trivial libfuse filesystem the read benchmarks compare
 * snapfs against (issue 10's "ceiling" rows). It shows one file, `data`,
 * whose reads are preads of FILE (normally in the OS page cache), with the
 * same connection settings snapfs uses (1 MiB requests and readahead,
 * async reads, keep_cache, the multithreaded loop), so that the only
 * difference left is what snapfs does per byte.
 *
 *   fusecat [-s] FILE MOUNTPOINT     (stays in the foreground; unmount
 *                                     with fusermount3 -u)
 *   -s   splice variant: replies with fuse_reply_data over an fd-backed
 *        buffer (page cache -> pipe -> /dev/fuse) instead of a pread into
 *        a buffer and fuse_reply_buf (copy variant)
 *
 * A test tool under tests/, not part of snapfs; no error handling beyond
 * what a benchmark needs.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK (1u << 20)
#define DATA_INO 2

static int src_fd = -1;
static struct stat src_st;
static int use_splice;

static void fc_init(void *ud, struct fuse_conn_info *conn)
{
	(void)ud;
	conn->max_write = BLK;
	conn->max_readahead = BLK;
	conn->want |= FUSE_CAP_ASYNC_READ;
	if (use_splice && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	else
		conn->want &= ~(unsigned)FUSE_CAP_SPLICE_WRITE;
}

static void stat_of(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = src_st.st_size;
		st->st_mtim = src_st.st_mtim;
	}
}

static void fc_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	if (parent != FUSE_ROOT_ID || strcmp(name, "data")) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.ino = DATA_INO;
	e.attr_timeout = e.entry_timeout = 1.0;
	stat_of(DATA_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void fc_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	stat_of(ino, &st);
	fuse_reply_attr(req, &st, 1.0);
}

static void fc_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != DATA_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void fc_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	if (off >= src_st.st_size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > (size_t)(src_st.st_size - off))
		size = (size_t)(src_st.st_size - off);
	if (use_splice) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = src_fd;
		bv.buf[0].pos = off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
		return;
	}
	char *buf = malloc(size);
	ssize_t r = buf ? pread(src_fd, buf, size, off) : -1;
	if (r < 0)
		fuse_reply_err(req, buf ? errno : ENOMEM);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	free(buf);
}

static void fc_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	char buf[256];
	struct stat st;
	size_t n = 0;

	(void)ino;
	(void)fi;
	if (off == 0) {
		stat_of(DATA_INO, &st);
		n = fuse_add_direntry(req, buf, size < sizeof(buf) ? size :
				      sizeof(buf), "data", &st, 1);
	}
	fuse_reply_buf(req, buf, n);
}

static const struct fuse_lowlevel_ops ops = {
	.init = fc_init,
	.lookup = fc_lookup,
	.getattr = fc_getattr,
	.open = fc_open,
	.read = fc_read,
	.readdir = fc_readdir,
};

int main(int argc, char **argv)
{
	int a = 1;

	if (a < argc && !strcmp(argv[a], "-s")) {
		use_splice = 1;
		a++;
	}
	if (argc - a != 2) {
		fprintf(stderr, "usage: fusecat [-s] FILE MOUNTPOINT\n");
		return 2;
	}
	src_fd = open(argv[a], O_RDONLY);
	if (src_fd < 0 || fstat(src_fd, &src_st) < 0) {
		perror(argv[a]);
		return 1;
	}
	static char o[] = "-o", ro[] = "ro,fsname=fusecat";
	char *fargv[] = { argv[0], o, ro, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops),
						   NULL);
	if (!se || fuse_set_signal_handlers(se) ||
	    fuse_session_mount(se, argv[a + 1])) {
		fprintf(stderr, "fusecat: cannot mount %s\n", argv[a + 1]);
		return 1;
	}
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	return rc ? 1 : 0;
}
