/* SPDX-License-Identifier: MIT */
/*
 * fuse_ops: FUSE low-level handlers (see fuse_ops.h). Snapshots never
 * change once visible, so attributes and entries are cached long and page
 * cache contents kept across opens (keep_cache). Errors from the chain are
 * negative errnos and go to the kernel as they are.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include "fs/fuse_ops.h"
#include "fs/fuse_int.h"
#include "fs/fuse_xattr.h"
#include "fs/remote.h"

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

/* Attributes change under rebase (blocks) and rename: cached briefly.
 * Contents never change: keep_cache holds the page cache across opens. */
#define ATTR_TIMEOUT 1.0

static struct snapfs_mount *M(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

struct chain_layer *fuse_handle_layer(struct fuse_file_info *fi)
{
	return H(fi) && !H(fi)->writer ? H(fi)->L : NULL;
}

struct chain_stream *fuse_handle_stream(struct fuse_file_info *fi)
{
	return H(fi) ? H(fi)->st : NULL;
}

void fuse_log_msg(struct snapfs_mount *m, const char *msg)
{
	log_say(m->log, LOG_ERR, "%s", msg);
}

void fuse_ops_settle(struct snapfs_mount *m)
{
	struct timespec until;

	fuse_write_deadline(&until);
	pthread_mutex_lock(&m->lock);
	fuse_write_settle_locked(m, &until);
	pthread_mutex_unlock(&m->lock);
}

static void info_stat(const struct chain_info *i, struct stat *st, int nlink)
{
	const struct chain_info inf = *i;

	memset(st, 0, sizeof(*st));
	st->st_ino = INO_OF(inf.id);
	/* The store file's owner and mode, without write bits. */
	st->st_mode = S_IFREG | (inf.mode & 0555);
	st->st_nlink = (nlink_t)nlink;
	st->st_uid = inf.uid;
	st->st_gid = inf.gid;
	st->st_size = (off_t)inf.size;
	st->st_blocks = (blkcnt_t)((inf.stored + 511) / 512);
	/* A page, as a plain file says: cat (QEMU's exec:cat) then reads and
	 * feeds its pipe 128 KiB at a time, as from a plain file, where 1 MiB
	 * made restores slower, even from page cache: QEMU restores of the
	 * 540 MB state from a mount that had read it, medians of 14
	 * alternating, 0.45 s with 1 MiB, 0.39 s with this, 0.51 s from the
	 * plain file. The kernel still asks us for 1 MiB (max_readahead). */
	st->st_blksize = 4096;
	/* ls -l shows when the snapshot was taken. */
	st->st_mtim.tv_sec = (time_t)inf.created;
	st->st_ctim = inf.mtime;
	st->st_atim = st->st_mtim;
}

static int layer_stat(struct snapfs_mount *m, uint32_t id, struct stat *st)
{
	struct chain_info inf;

	if (chain_info(m->chain, id, &inf))
		return -ENOENT;
	info_stat(&inf, st, 1);
	return 0;
}

/* A temporary link (ln -sfn makes one, then renames it over current). */
struct snapfs_link *fuse_link_find(struct snapfs_mount *m, const char *name,
				     fuse_ino_t ino)
{
	for (unsigned k = 0; k < SNAPFS_MAX_LINKS; k++) {
		struct snapfs_link *l = &m->links[k];
		if (l->used && (name ? !strcmp(l->name, name) :
				LINK_INO(k) == ino))
			return l;
	}
	return NULL;
}

void fuse_link_stat(struct snapfs_mount *m, fuse_ino_t ino,
		      const char *target, struct stat *st)
{
	struct stat ds;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFLNK | 0777;
	st->st_nlink = 1;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_size = (off_t)strlen(target);
	/* Links change with the store: they carry its directory's times. */
	if (fstat(store_dirfd(m->store), &ds) == 0) {
		st->st_uid = ds.st_uid;
		st->st_gid = ds.st_gid;
		st->st_mtim = ds.st_mtim;
		st->st_ctim = ds.st_ctim;
		st->st_atim = ds.st_atim;
	}
}

/* Name of the current snapshot into buf ("" when there is none). */
void fuse_current_name(struct snapfs_mount *m, char *buf, size_t cap)
{
	struct chain_info inf;

	if (chain_info(m->chain, chain_current(m->chain), &inf) == 0)
		snprintf(buf, cap, "%s", inf.name);
	else
		buf[0] = 0;
}

/* Attributes of any inode but the root. 0, or -ENOENT. */
static int any_stat(struct snapfs_mount *m, fuse_ino_t ino, struct stat *st,
		    double *timeout)
{
	char name[256];
	int rc = 0;

	*timeout = ATTR_TIMEOUT;
	if (ino == CURRENT_INO) {
		fuse_current_name(m, name, sizeof(name));
		fuse_link_stat(m, ino, name, st);
		*timeout = 0;
		return 0;
	}
	if (ino > CURRENT_INO) {
		pthread_mutex_lock(&m->lock);
		struct snapfs_link *l = fuse_link_find(m, NULL, ino);
		if (l)
			fuse_link_stat(m, ino, l->target, st);
		pthread_mutex_unlock(&m->lock);
		*timeout = 0;
		return l ? 0 : -ENOENT;
	}
	if (layer_stat(m, ID_OF(ino), st) == 0)
		return 0;
	pthread_mutex_lock(&m->lock);
	rc = -ENOENT;
	if (m->w && ino == m->w_ino) {
		fuse_write_pending_stat(m, st);
		*timeout = 0;
		rc = 0;
	}
	/* Removed, but open: fstat still works, with no link left (the
	 * kernel's getattr does not say which open file asks). */
	for (struct handle *h = m->readers; rc && h; h = h->next) {
		if (chain_layer_id(h->L) == ID_OF(ino)) {
			struct chain_info inf;
			chain_layer_info(m->chain, h->L, &inf);
			info_stat(&inf, st, 0);
			*timeout = 0;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
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
	struct snapfs_mount *m = userdata;

	/* 1 MiB requests: fewer round trips for cat, cp and qemu's reader. */
	conn->max_write = BLKSIZE;
	conn->max_readahead = BLKSIZE;
	conn->want |= FUSE_CAP_ASYNC_READ;
	/* Replies to reads only (fuse_reply_data); writes still arrive in
	 * buffers (no SPLICE_READ) and no page is moved (no SPLICE_MOVE). */
	if ((conn->capable & FUSE_CAP_SPLICE_WRITE) && fuse_read_splice_fits()) {
		conn->want |= FUSE_CAP_SPLICE_WRITE;
		m->splice = 1;
	} else {
		conn->want &= ~(unsigned)FUSE_CAP_SPLICE_WRITE;
		m->splice = 0;
	}
	/* Otherwise every write asks for security.capability first. */
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

void fuse_entry_reply(fuse_req_t req, const struct stat *st, double t)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = st->st_ino;
	e.attr = *st;
	e.attr_timeout = t;
	e.entry_timeout = t;
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct snapfs_mount *m = M(req);
	struct fuse_entry_param e;
	struct stat st;
	double t;
	uint32_t id;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!strcmp(name, CURRENT_NAME) && chain_current(m->chain)) {
		any_stat(m, CURRENT_INO, &st, &t);
		fuse_entry_reply(req, &st, 0);
		return;
	}
	id = chain_lookup(m->chain, name);
	if (id && layer_stat(m, id, &st) == 0) {
		fuse_entry_reply(req, &st, ATTR_TIMEOUT);
		return;
	}
	pthread_mutex_lock(&m->lock);
	struct snapfs_link *l = fuse_link_find(m, name, 0);
	if (l) {
		fuse_link_stat(m, LINK_INO(l - m->links), l->target, &st);
		pthread_mutex_unlock(&m->lock);
		fuse_entry_reply(req, &st, 0);
		return;
	}
	if (m->w && !strcmp(writer_name(m->w), name)) {
		fuse_write_pending_stat(m, &st);
		pthread_mutex_unlock(&m->lock);
		fuse_entry_reply(req, &st, 0);
		return;
	}
	pthread_mutex_unlock(&m->lock);
	/* Negative entries are not cached: writes and renames add names. */
	memset(&e, 0, sizeof(e));
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	struct stat st;
	double t;

	if (ino == ROOT_INO) {
		root_stat(m, &st);
		fuse_reply_attr(req, &st, 1.0);
		return;
	}
	(void)fi;
	if (any_stat(m, ino, &st, &t)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, t);
}

static void reader_drop(struct snapfs_mount *m, struct handle *h)
{
	pthread_mutex_lock(&m->lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		m->readers = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&m->lock);
	if (h->remote_reading)
		remote_read_done(m->remote, h->id);
	chain_stream_free(h->st);
	chain_put(m->chain, h->L);
	free(h);
}

void fuse_readers_drop_all(struct snapfs_mount *m)
{
	/* After the session ended: a RELEASE the kernel had queued when
	 * the mount went away (a reader closing as fusermount -u ran)
	 * never reaches us, so its version would stay referenced. */
	while (m->readers)
		reader_drop(m, m->readers);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	struct chain_layer *L = NULL;

	if (ino == ROOT_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (ino >= CURRENT_INO) {
		fuse_reply_err(req, ELOOP);
		return;
	}
	if (chain_get(m->chain, ID_OF(ino), &L)) {
		/* The snapshot being written: readable once committed. */
		pthread_mutex_lock(&m->lock);
		if (m->w && ino == m->w_ino && !m->w_committing &&
		    (fi->flags & O_ACCMODE) != O_RDONLY) {
			fuse_write_reopen(m, req, fi);	/* unlocks */
			return;
		}
		int busy = m->w && ino == m->w_ino && m->w_opens > 0;
		if (!busy)
			fuse_write_settle_locked(m, NULL);
		pthread_mutex_unlock(&m->lock);
		if (busy) {
			fuse_reply_err(req, EBUSY);
			return;
		}
		if (chain_get(m->chain, ID_OF(ino), &L)) {
			fuse_reply_err(req, ENOENT);
			return;
		}
	}
	/* Its fetches make its working set, from the checks on. */
	if (m->remote)
		remote_reading(m->remote, ID_OF(ino));
	int rc = chain_check(m->chain, L);
	/* Snapshots are immutable; a new one is made by creating a file. */
	if (!rc && ((fi->flags & O_ACCMODE) != O_RDONLY ||
		    (fi->flags & O_TRUNC)))
		rc = -EROFS;
	struct handle *h = rc ? NULL : calloc(1, sizeof(*h));
	if (!rc)
		rc = h ? chain_stream_new(&h->st) : -ENOMEM;
	if (rc) {
		free(h);
		if (m->remote)
			remote_read_done(m->remote, ID_OF(ino));
		chain_put(m->chain, L);
		fuse_reply_err(req, -rc);
		return;
	}
	h->L = L;	/* kept until release, even if the snapshot goes */
	h->id = ID_OF(ino);
	h->remote_reading = m->remote != NULL;
	pthread_mutex_lock(&m->lock);
	h->next = m->readers;
	if (h->next)
		h->next->prev = h;
	m->readers = h;
	pthread_mutex_unlock(&m->lock);
	fi->fh = (uint64_t)(uintptr_t)h;
	/*
	 * Through the kernel's page cache unless -o direct_read. Straight
	 * to the reader (direct_io), a cold read skips a copy into pages
	 * the kernel allocates for this file: the 540 MB QEMU state read
	 * cold at 1892-1976 MB/s with 0.38-0.44 s of the machine's CPU,
	 * against 943-1958 MB/s and 0.58-0.97 s (readbench seq, fresh
	 * mounts, 2026-12-05). But QEMU restores got slower (restore.sh,
	 * medians of 5: fresh mount 2.05x the plain file against 1.34x,
	 * the same mount again 2.02x against 1.01x): cat waits for each
	 * 128 KiB read in turn, where the kernel's readahead runs 1 MiB
	 * ahead of it through the page cache, and a second read decodes
	 * again. A MAP_SHARED mmap fails with ENODEV too (libfuse 3.14
	 * cannot offer FUSE_DIRECT_IO_ALLOW_MMAP; MAP_PRIVATE works). So
	 * the page cache is the default; the option is for large-block
	 * readers that should leave the cores to others. keep_cache keeps
	 * the pages across opens: snapshots never change.
	 */
	fi->direct_io = m->direct_read;
	fi->keep_cache = 1;
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* interrupted: no release will come */
		reader_drop(m, h);
	}
}

/* Mode and time changes are accepted and ignored: snapshots are 0444. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	struct stat st;
	double t;

	(void)fi;
	if (fuse_write_setattr(req, ino, attr, to_set))
		return;
	if (ino == ROOT_INO || any_stat(m, ino, &st, &t)) {
		fuse_reply_err(req, ino == ROOT_INO ? EPERM : ENOENT);
		return;
	}
	fuse_reply_err(req, to_set & FUSE_SET_ATTR_SIZE ? EROFS : EPERM);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	if (H(fi)->writer) {
		fuse_write_release(req, fi);
		return;
	}
	reader_drop(M(req), H(fi));
	fuse_reply_err(req, 0);
}

/* SEEK_DATA / SEEK_HOLE (the kernel does the others): holes are what
 * the index knows to be runs of zeros (chain_seek_data), so cp
 * --sparse, tar -S and the like skip them without reading. A file
 * being written is not a snapshot yet: EINVAL. */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	uint64_t to = 0;
	int rc;

	(void)ino;
	if (off < 0 || (whence != SEEK_DATA && whence != SEEK_HOLE) ||
	    !H(fi) || !H(fi)->L) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = chain_seek_data(m->chain, H(fi)->L, (uint64_t)off,
			     whence == SEEK_HOLE, &to);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_lseek(req, (off_t)to);
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
	if (store_max(m->store) && sv.f_frsize) {
		/* -o max_store: df shows the bound as the size. */
		uint64_t max = store_max(m->store), used = store_used(m->store);
		uint64_t avail = used < max ? (max - used) / sv.f_frsize : 0;
		sv.f_blocks = max / sv.f_frsize;
		if (avail < sv.f_bavail)
			sv.f_bavail = avail;
		if (avail < sv.f_bfree)
			sv.f_bfree = avail;
	}
	sv.f_files = chain_count(m->chain) + 1;
	sv.f_ffree = sv.f_favail = STORE_MAX_LAYERS - sv.f_files;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readlink = fuse_tree_readlink,
	.opendir = fuse_tree_opendir,
	.readdir = fuse_tree_readdir,
	.releasedir = fuse_tree_releasedir,
	.unlink = fuse_tree_unlink,
	.symlink = fuse_tree_symlink,
	.rename = fuse_tree_rename,
	.mkdir = fuse_tree_mkdir,
	.link = fuse_tree_link,
	.mknod = fuse_tree_mknod,
	.open = op_open,
	.read = fuse_read_op,
	.lseek = op_lseek,
	.release = op_release,
	.flush = fuse_write_flush,
	.create = fuse_write_create,
	.write = fuse_write_op,
	.setattr = op_setattr,
	.fsync = fuse_write_fsync,
	.statfs = op_statfs,
	.getxattr = fuse_xattr_get,
	.listxattr = fuse_xattr_list,
	.setxattr = fuse_xattr_set,
	.removexattr = fuse_xattr_remove,
};

const struct fuse_lowlevel_ops *fuse_ops_table(void)
{
	return &ops;
}
