/* SPDX-License-Identifier: MIT */
/*
 * fuse_ops: FUSE low-level handlers (see fuse_ops.h). Snapshots never
 * change once visible, so attributes and entries are cached long and page
 * cache contents kept across opens (keep_cache). Errors from the chain are
 * negative errnos and go to the kernel as they are.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include "fs/fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define ROOT_INO FUSE_ROOT_ID
#define INO_OF(i) ((fuse_ino_t)(i) + 2)
#define LAYER_OF(ino) ((size_t)(ino) - 2)
#define BLKSIZE (1u << 20)
#define STATS_XATTR "user.snapfs.stats"
#define DAMAGE_XATTR "user.snapfs.damage"

static struct snapfs_mount *M(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* fi->fh: a reader's readahead stream, or the mark of the write handle. */
struct handle {
	int writer;
	struct chain_stream *st;
};

static struct handle *H(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* Attributes of the snapshot being written: growing, not cached. */
static void pending_stat(struct snapfs_mount *m, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = m->w_ino;
	st->st_mode = S_IFREG | m->w_mode;
	st->st_nlink = 1;
	st->st_uid = m->w_uid;
	st->st_gid = m->w_gid;
	st->st_size = (off_t)writer_size(m->w);
	st->st_blksize = BLKSIZE;
	clock_gettime(CLOCK_REALTIME, &st->st_mtim);
	st->st_ctim = st->st_atim = st->st_mtim;
}

/* Waits while a finished writer commits (caller holds m->lock). */
static void wait_commit(struct snapfs_mount *m)
{
	while (m->w && m->w_committing)
		pthread_cond_wait(&m->changed, &m->lock);
}

static int layer_stat(struct snapfs_mount *m, size_t i, struct stat *st)
{
	const struct store_layer *sl;
	struct chain_info inf;

	if (chain_info(m->chain, i, &inf))
		return -ENOENT;
	/* The chain publishes a layer after the store has it. */
	sl = store_layer(m->store, i);
	memset(st, 0, sizeof(*st));
	st->st_ino = INO_OF(i);
	st->st_mode = S_IFREG | (sl ? sl->st.st_mode & 0555 : 0444);
	st->st_nlink = 1;
	st->st_uid = sl ? sl->st.st_uid : getuid();
	st->st_gid = sl ? sl->st.st_gid : getgid();
	st->st_size = (off_t)inf.size;
	st->st_blocks = (blkcnt_t)((inf.stored + 511) / 512);
	st->st_blksize = BLKSIZE;
	st->st_mtim = inf.mtime;
	st->st_ctim = inf.mtime;
	st->st_atim = inf.mtime;
	return 0;
}

static void root_stat(struct snapfs_mount *m, struct stat *st)
{
	struct stat ds;

	memset(st, 0, sizeof(*st));
	st->st_ino = ROOT_INO;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_blksize = BLKSIZE;
	/* Who may create snapshots is who may write the store directory. */
	if (fstat(store_dirfd(m->store), &ds) == 0) {
		st->st_mode = S_IFDIR | (ds.st_mode & 07777);
		st->st_uid = ds.st_uid;
		st->st_gid = ds.st_gid;
		st->st_mtim = ds.st_mtim;
		st->st_ctim = ds.st_ctim;
		st->st_atim = ds.st_atim;
	}
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* 1 MiB requests: fewer round trips for cat, cp and qemu's reader. */
	conn->max_write = BLKSIZE;
	conn->max_readahead = BLKSIZE;
	conn->want |= FUSE_CAP_ASYNC_READ;
	/* Otherwise every write asks for security.capability first. */
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct snapfs_mount *m = M(req);
	struct fuse_entry_param e;
	ssize_t i;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	i = chain_lookup(m->chain, name);
	if (i < 0) {
		pthread_mutex_lock(&m->lock);
		if (m->w && !strcmp(writer_name(m->w), name)) {
			memset(&e, 0, sizeof(e));
			pending_stat(m, &e.attr);
			e.ino = e.attr.st_ino;
			pthread_mutex_unlock(&m->lock);
			fuse_reply_entry(req, &e);
			return;
		}
		pthread_mutex_unlock(&m->lock);
		/* Negative entries may be cached only briefly: writes add
		 * names. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = 0;
		fuse_reply_entry(req, &e);
		return;
	}
	memset(&e, 0, sizeof(e));
	layer_stat(m, (size_t)i, &e.attr);
	e.ino = e.attr.st_ino;
	e.attr_timeout = m->timeout;
	e.entry_timeout = m->timeout;
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	struct stat st;

	(void)fi;
	if (ino == ROOT_INO) {
		root_stat(m, &st);
		fuse_reply_attr(req, &st, 1.0);
		return;
	}
	if (layer_stat(m, LAYER_OF(ino), &st)) {
		pthread_mutex_lock(&m->lock);
		if (m->w && ino == m->w_ino) {
			pending_stat(m, &st);
			pthread_mutex_unlock(&m->lock);
			fuse_reply_attr(req, &st, 0);
			return;
		}
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, m->timeout);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fuse_reply_open(req, fi);
}

/* Directory offsets: 1 = after ".", 2 = after "..", 2 + i + 1 = after
 * layer i. */
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	char *buf = malloc(size ? size : 1);
	size_t used = 0, n = chain_count(m->chain);
	struct stat st;
	char pending[256] = "";
	uint64_t pending_ino = 0;

	(void)fi;
	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&m->lock);
	if (m->w && m->w_ino == INO_OF(n)) {
		snprintf(pending, sizeof(pending), "%s", writer_name(m->w));
		pending_ino = m->w_ino;
	}
	pthread_mutex_unlock(&m->lock);
	for (size_t k = (size_t)off; k < n + 2 + (pending[0] != 0); k++) {
		const char *name;
		struct chain_info inf;

		memset(&st, 0, sizeof(st));
		if (k < 2) {
			name = k == 0 ? "." : "..";
			st.st_ino = ROOT_INO;
			st.st_mode = S_IFDIR;
		} else if (k == n + 2) {
			name = pending;
			st.st_ino = pending_ino;
			st.st_mode = S_IFREG;
		} else {
			chain_info(m->chain, k - 2, &inf);
			name = inf.name;
			st.st_ino = INO_OF(k - 2);
			st.st_mode = S_IFREG;
		}
		size_t need = fuse_add_direntry(req, buf + used, size - used,
						name, &st, (off_t)(k + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);

	if (ino == ROOT_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (LAYER_OF(ino) >= chain_count(m->chain)) {
		/* The snapshot being written: readable once committed. */
		pthread_mutex_lock(&m->lock);
		int busy = m->w && ino == m->w_ino && m->w_opens > 0;
		if (!busy)
			wait_commit(m);
		pthread_mutex_unlock(&m->lock);
		if (busy) {
			fuse_reply_err(req, EBUSY);
			return;
		}
	}
	int rc = chain_check(m->chain, LAYER_OF(ino));
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* Snapshots are immutable; a new one is made by creating a file. */
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	struct handle *h = calloc(1, sizeof(*h));
	rc = h ? chain_stream_new(&h->st) : -ENOMEM;
	if (rc) {
		free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->keep_cache = 1;
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* interrupted: no release will come */
		chain_stream_free(h->st);
		free(h);
	}
}

static void log_msg(struct snapfs_mount *m, const char *msg)
{
	log_say(m->log, LOG_ERR, "%s", msg);
}

/*
 * A new snapshot. One at a time: the chain grows in a line. A create that
 * arrives while the previous snapshot commits waits for it (saves done
 * back to back); one that arrives while it is still open gets EBUSY.
 */
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct handle *h;
	char err[1024];
	int rc;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->writer = 1;
	pthread_mutex_lock(&m->lock);
	wait_commit(m);
	if (m->w) {
		/* Named, so whoever is refused can find the holder. */
		log_say(m->log, LOG_WARNING, "%s: refused (EBUSY): snapshot %s "
			"is still being written by uid %u (pid %d); snapshots "
			"are added one at a time", name, writer_name(m->w),
			(unsigned)m->w_uid, (int)m->w_pid);
		pthread_mutex_unlock(&m->lock);
		free(h);
		fuse_reply_err(req, EBUSY);
		return;
	}
	rc = writer_new(&m->w, m->chain, m->store, name, err, sizeof(err));
	if (rc) {
		/* A taken name is routine; a file in the way that ls does
		 * not show, or a refused name, is worth a line. */
		int routine = rc == -EEXIST && chain_lookup(m->chain, name) >= 0;
		pthread_mutex_unlock(&m->lock);
		free(h);
		if (!routine)
			log_msg(m, err);
		fuse_reply_err(req, -rc);
		return;
	}
	/* The kernel applied the creator's umask to mode already. The
	 * stored file keeps an owner write bit so its owner can manage the
	 * store; the mount shows none. */
	m->w_uid = ctx->uid;
	m->w_gid = ctx->gid;
	m->w_pid = ctx->pid;
	m->w_mode = mode & 0555;
	writer_set_owner(m->w, ctx->uid, ctx->gid, (mode & 0555) | 0200);
	m->w_ino = INO_OF(chain_count(m->chain));
	m->w_opens = 1;
	memset(&e, 0, sizeof(e));
	pending_stat(m, &e.attr);
	e.ino = e.attr.st_ino;
	pthread_mutex_unlock(&m->lock);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 0;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		pthread_mutex_lock(&m->lock);
		writer_free(m->w);
		m->w = NULL;
		m->w_opens = 0;
		pthread_cond_broadcast(&m->changed);
		pthread_mutex_unlock(&m->lock);
		free(h);
	}
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	int rc;

	(void)ino;
	if (!H(fi) || !H(fi)->writer || off < 0) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&m->lock);
	rc = m->w ? writer_write(m->w, (uint64_t)off, buf, size) : -EBADF;
	pthread_mutex_unlock(&m->lock);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

/* Truncation of the file being written (dd seek=, cp's ftruncate); mode
 * and time changes are accepted and ignored: snapshots are 0444. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	struct stat st;
	int rc = 0;

	(void)fi;
	pthread_mutex_lock(&m->lock);
	if (m->w && ino == m->w_ino && !m->w_committing) {
		if (to_set & FUSE_SET_ATTR_SIZE)
			rc = writer_truncate(m->w, (uint64_t)attr->st_size);
		pending_stat(m, &st);
		pthread_mutex_unlock(&m->lock);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_attr(req, &st, 0);
		return;
	}
	pthread_mutex_unlock(&m->lock);
	if (ino == ROOT_INO || layer_stat(m, LAYER_OF(ino), &st)) {
		fuse_reply_err(req, ino == ROOT_INO ? EPERM : ENOENT);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fuse_reply_err(req, EPERM);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	/* The commit protocol makes a snapshot durable when it appears;
	 * before that there is nothing a reader could lose. */
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	struct handle *h = H(fi);
	char err[1024];

	(void)ino;
	if (!h->writer) {
		chain_stream_free(h->st);
		free(h);
		fuse_reply_err(req, 0);
		return;
	}
	free(h);
	/* The kernel does not wait for this reply: commit, then answer. */
	pthread_mutex_lock(&m->lock);
	if (--m->w_opens > 0 || !m->w) {
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, 0);
		return;
	}
	m->w_committing = 1;
	struct writer *w = m->w;
	pthread_mutex_unlock(&m->lock);
	/* Created and closed with nothing written (`cat /missing > M/x`,
	 * a failed save): no snapshot, rather than an empty one that the
	 * next patch would have to encode against. */
	int rc = 0;
	if (writer_size(w) == 0)
		log_say(m->log, LOG_WARNING, "%s: closed with no data written; "
			"not added as a snapshot", writer_name(w));
	else
		rc = writer_commit(w, err, sizeof(err));
	if (rc)
		log_msg(m, err);
	pthread_mutex_lock(&m->lock);
	writer_free(w);
	m->w = NULL;
	m->w_committing = 0;
	pthread_cond_broadcast(&m->changed);
	pthread_mutex_unlock(&m->lock);
	fuse_reply_err(req, 0);
}

/* A read buffer of BLKSIZE bytes (the largest request) from the pool. */
static void *buf_get(struct snapfs_mount *m)
{
	void *b = NULL;

	pthread_mutex_lock(&m->buf_lock);
	if (m->nbufs)
		b = m->bufs[--m->nbufs];
	pthread_mutex_unlock(&m->buf_lock);
	return b ? b : malloc(BLKSIZE);
}

static void buf_put(struct snapfs_mount *m, void *b)
{
	pthread_mutex_lock(&m->buf_lock);
	if (m->nbufs < sizeof(m->bufs) / sizeof(m->bufs[0])) {
		m->bufs[m->nbufs++] = b;
		b = NULL;
	}
	pthread_mutex_unlock(&m->buf_lock);
	free(b);
}

void fuse_ops_cleanup(struct snapfs_mount *m)
{
	while (m->nbufs)
		free(m->bufs[--m->nbufs]);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	void *buf;
	ssize_t r;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size > BLKSIZE)
		size = BLKSIZE;	/* the kernel never asks for more (max_pages) */
	buf = buf_get(m);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r = chain_read_stream(m->chain, LAYER_OF(ino), (uint64_t)off, buf, size,
			      H(fi) ? H(fi)->st : NULL);
	if (r < 0)
		fuse_reply_err(req, r == -EBADMSG ? EIO : (int)-r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	buf_put(m, buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct snapfs_mount *m = M(req);
	struct statvfs sv;

	(void)ino;
	if (fstatvfs(store_dirfd(m->store), &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_files = chain_count(m->chain) + 1;
	sv.f_ffree = sv.f_favail = STORE_MAX_LAYERS - sv.f_files;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static void reply_xattr(fuse_req_t req, const char *val, size_t len,
			size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct snapfs_mount *m = M(req);
	char buf[2048];

	if (ino == ROOT_INO && !strcmp(name, STATS_XATTR)) {
		chain_stats(m->chain, buf, sizeof(buf));
		size_t n = strlen(buf);
		snprintf(buf + n, sizeof(buf) - n, "log %s\n", log_where(m->log));
		reply_xattr(req, buf, strlen(buf), size);
		return;
	}
	if (ino != ROOT_INO && !strcmp(name, DAMAGE_XATTR)) {
		struct chain_info inf;
		if (!chain_info(m->chain, LAYER_OF(ino), &inf) && inf.damage) {
			snprintf(buf, sizeof(buf), "%s (log: %s)", inf.damage,
				 log_where(m->log));
			reply_xattr(req, buf, strlen(buf), size);
			return;
		}
	}
	fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct snapfs_mount *m = M(req);
	struct chain_info inf;

	if (ino == ROOT_INO) {
		reply_xattr(req, STATS_XATTR, sizeof(STATS_XATTR), size);
		return;
	}
	if (!chain_info(m->chain, LAYER_OF(ino), &inf) && inf.damage) {
		reply_xattr(req, DAMAGE_XATTR, sizeof(DAMAGE_XATTR), size);
		return;
	}
	reply_xattr(req, "", 0, size);
}

/*
 * Snapshots are immutable and the directory is flat: nothing removes,
 * renames or links names, and only create adds them. EPERM ("operation
 * not permitted") rather than ENOSYS, which tools report as a bug.
 */
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, EPERM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	(void)parent;
	(void)name;
	(void)mode;
	fuse_reply_err(req, EPERM);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.create = op_create,
	.write = op_write,
	.setattr = op_setattr,
	.fsync = op_fsync,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.rename = op_rename,
	.mkdir = op_mkdir,
	.mknod = op_mknod,
	.symlink = op_symlink,
	.link = op_link,
};

const struct fuse_lowlevel_ops *fuse_ops_table(void)
{
	return &ops;
}
