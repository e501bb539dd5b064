/* SPDX-License-Identifier: MIT */
/*
 * fuse_write: the FUSE front end's write path (fs/fuse_int.h): a new
 * snapshot created, written, truncated, flushed, fsynced and released,
 * one at a time per mount (m->w), and libvirt's reopen of its save image.
 * The work is the writer's (fs/writer.h); here is only who may write
 * when, and which request learns of an error. Not here: reads and the
 * other handlers (fs/fuse_ops.c).
 */
#include "fs/fuse_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/writer.h"

static struct snapfs_mount *M(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Attributes of the snapshot being written: growing, not cached. */
void fuse_write_pending_stat(struct snapfs_mount *m, struct stat *st)
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

/* How long a create waits for the RELEASE of a file that was written and
 * closed (see closed_unreleased). */
#define RELEASE_WAIT_S 5

/*
 * Whether the file being written looks closed with its RELEASE still to
 * come: data written, all of it finished by a FLUSH, no error. close()
 * returns once FLUSH is answered and the kernel sends RELEASE after, so
 * `cat a > M/x; cat b > M/y` could create y before x's release, and got
 * EBUSY (seen writing 100 snapshots back to back, tests/bench/depth.sh).
 * A writer still open that merely flushed (fsync, a dup closed) also
 * looks so: the wait for it is bounded. Caller holds m->lock.
 */
static int closed_unreleased(struct snapfs_mount *m)
{
	return writer_size(m->w) > 0 && !writer_dirty(m->w) &&
	       writer_status(m->w) == 0 && !writer_awaits_fixup(m->w);
}

static int passed(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec != t->tv_sec ? now.tv_sec > t->tv_sec :
	       now.tv_nsec >= t->tv_nsec;
}

void fuse_write_settle_locked(struct snapfs_mount *m,
			      const struct timespec *until)
{
	for (;;) {
		if (m->w && m->w_committing)
			pthread_cond_wait(&m->changed, &m->lock);
		else if (until && m->w && closed_unreleased(m) &&
			 !passed(until))
			pthread_cond_timedwait(&m->changed, &m->lock, until);
		else
			return;
	}
}

void fuse_write_deadline(struct timespec *until)
{
	clock_gettime(CLOCK_REALTIME, until);
	until->tv_sec += RELEASE_WAIT_S;
}

/*
 * Another open for writing of the file being written, before it is
 * published: libvirt closes its save image and reopens it to write the
 * final header (qemuSaveImageCreate), and with an async RELEASE the
 * reopen may even come first. Writes go to the same writer. Called with
 * m->lock held; unlocks.
 */
void fuse_write_reopen(struct snapfs_mount *m, fuse_req_t req,
			  struct fuse_file_info *fi)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h) {
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->writer = 1;
	m->w_opens++;
	pthread_mutex_unlock(&m->lock);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;	/* as at create (op_create) */
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* interrupted: no release will come */
		pthread_mutex_lock(&m->lock);
		m->w_opens--;
		pthread_mutex_unlock(&m->lock);
		free(h);
	}
}

/*
 * A writer with no open handle left that was not published waits for
 * libvirt to reopen it (writer_awaits_fixup()). If a new snapshot is
 * created instead, libvirt gave up on that save (it then unlinks the
 * file, which we cannot do): drop it. Caller holds m->lock.
 */
static void drop_held(struct snapfs_mount *m)
{
	if (!m->w || m->w_opens > 0 || m->w_committing)
		return;
	char msg[400];
	snprintf(msg, sizeof(msg), "%s: dropped: a libvirt save image that "
		 "was never completed (its header still says LibvirtQemudPart)",
		 writer_name(m->w));
	fuse_log_msg(m, msg);
	writer_free(m->w);
	m->w = NULL;
}

/*
 * A new snapshot, a child of current. One at a time. A create that
 * arrives while the previous snapshot commits waits for it (saves done
 * back to back), as does one that arrives between the previous file's
 * close() and its RELEASE (for up to RELEASE_WAIT_S); one that arrives
 * while it is still open gets EBUSY.
 */
void fuse_write_create(fuse_req_t req, fuse_ino_t parent, const char *name,
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
	/* The writer reads current and reserves an id: serialised with the
	 * other changes. A commit in progress needs the change lock too, so
	 * it is waited for without holding it. */
	struct timespec until;
	fuse_write_deadline(&until);
	for (;;) {
		pthread_mutex_lock(&m->change);
		pthread_mutex_lock(&m->lock);
		/* Past the deadline, a writer still open is refused below. */
		if (!m->w || (!m->w_committing &&
			      (!closed_unreleased(m) || passed(&until))))
			break;
		pthread_mutex_unlock(&m->change);
		fuse_write_settle_locked(m, &until);
		pthread_mutex_unlock(&m->lock);
	}
	drop_held(m);
	if (m->w) {
		/* Named, so whoever is refused can find the holder. */
		log_say(m->log, LOG_WARNING, "%s: refused (EBUSY): snapshot %s "
			"is still being written by uid %u (pid %d); snapshots "
			"are added one at a time", name, writer_name(m->w),
			(unsigned)m->w_uid, (int)m->w_pid);
	}
	rc = m->w ? -EBUSY : !strcmp(name, CURRENT_NAME) ||
	     fuse_link_find(m, name, 0) ? -EEXIST :
	     writer_new(&m->w, m->chain, m->store, name, err, sizeof(err));
	if (rc) {
		/* A taken name is routine; a file in the way that ls does
		 * not show, or a refused name, is worth a line. */
		int routine = rc == -EBUSY || (rc == -EEXIST &&
			      (chain_lookup(m->chain, name) ||
			       !strcmp(name, CURRENT_NAME)));
		pthread_mutex_unlock(&m->lock);
		pthread_mutex_unlock(&m->change);
		free(h);
		if (!routine)
			fuse_log_msg(m, err);
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
	m->w_ino = INO_OF(writer_id(m->w));
	m->w_opens = 1;
	memset(&e, 0, sizeof(e));
	fuse_write_pending_stat(m, &e.attr);
	e.ino = e.attr.st_ino;
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->change);
	fi->fh = (uint64_t)(uintptr_t)h;
	/* Writes straight from the writer's buffer into our request, not
	 * through the page cache first: measured with cat of a 1 GiB state,
	 * cat's own CPU time went from 2.9 s to 0.25 s (the kernel no longer
	 * allocates, fills and drops a page cache copy of what we store
	 * anyway). Nothing reads the file through this handle (op_read gives
	 * EBADF) and a writer does not mmap it. */
	fi->direct_io = 1;
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

void fuse_write_op(fuse_req_t req, fuse_ino_t ino, const char *buf,
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
	/* Past -o max_store: the writer is spent, so nothing partial is
	 * ever published (its close fails with ENOSPC too). */
	if (m->w && store_room(m->store, size))
		writer_fail(m->w, -ENOSPC);
	rc = m->w ? writer_write(m->w, (uint64_t)off, buf, size) : -EBADF;
	pthread_mutex_unlock(&m->lock);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

/* The writer's part of SETATTR: truncation of the file being written
 * (dd seek=, cp's ftruncate). 1 if ino is that file (answered), else 0
 * and the caller answers. */
int fuse_write_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set)
{
	struct snapfs_mount *m = M(req);
	struct stat st;
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (!m->w || ino != m->w_ino || m->w_committing) {
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	if (to_set & FUSE_SET_ATTR_SIZE)
		rc = writer_truncate(m->w, (uint64_t)attr->st_size);
	fuse_write_pending_stat(m, &st);
	pthread_mutex_unlock(&m->lock);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
	return 1;
}

/*
 * Errors of a commit reach the writer here, at close() (FLUSH) and
 * fsync(): writer_finish() ends the encoding, fsyncs, verifies and keeps
 * the result; RELEASE, which nobody waits for, only publishes (see
 * writer.h for why not at FLUSH). A FLUSH comes for every close() of
 * every fd, dups included, so only one with data written since the last
 * finish finishes: the shell's `cat > f` closes a dup of the fd before
 * cat has written anything. Runs under m->lock, as writes do.
 */
static int finish_locked(struct snapfs_mount *m, int only_if_dirty)
{
	char err[1024];
	int rc;

	if (!m->w)
		return -EBADF;
	if (only_if_dirty && !writer_dirty(m->w))
		return writer_status(m->w) == -EALREADY ? 0 :
		       writer_status(m->w);
	int was = writer_status(m->w);
	rc = writer_finish(m->w, err, sizeof(err));
	/* -o max_store: the finished patch is all in .snapfs/tmp now. */
	if (!rc && store_room(m->store, 0)) {
		writer_fail(m->w, -ENOSPC);
		rc = -ENOSPC;
		snprintf(err, sizeof(err), "%s: the store would pass max_store "
			 "(%llu bytes with it); not added",
			 writer_name(m->w),
			 (unsigned long long)store_used(m->store));
	}
	if (rc && !was)
		fuse_log_msg(m, err);	/* once, when it happens */
	return rc == -EBADMSG ? -EIO : rc;
}

void fuse_write_flush(fuse_req_t req, fuse_ino_t ino,
		     struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	int rc = 0;

	(void)ino;
	if (H(fi) && H(fi)->writer) {
		pthread_mutex_lock(&m->lock);
		rc = finish_locked(m, 1);
		pthread_mutex_unlock(&m->lock);
	}
	fuse_reply_err(req, -rc);
}

void fuse_write_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	int rc = 0;

	/* A snapshot is durable when it appears (the commit protocol), and
	 * not before: fsync of the file being written ends it now, so its
	 * errors reach the caller (dd conv=fsync, libvirt's iohelper). */
	(void)ino;
	(void)datasync;
	if (H(fi) && H(fi)->writer) {
		pthread_mutex_lock(&m->lock);
		rc = finish_locked(m, 0);
		pthread_mutex_unlock(&m->lock);
	}
	fuse_reply_err(req, -rc);
}

/* RELEASE of a write handle (fi->fh: freed here): the last one
 * publishes the snapshot. */
void fuse_write_release(fuse_req_t req, struct fuse_file_info *fi)
{
	struct snapfs_mount *m = M(req);
	char err[1024];
	int rc;

	free(H(fi));
	/* The kernel does not wait for this reply: publish, then answer. */
	pthread_mutex_lock(&m->lock);
	if (!m->w) {
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, 0);
		return;
	}
	if (fi->flush)
		finish_locked(m, 1);
	if (--m->w_opens > 0) {
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, 0);
		return;
	}
	/* Normally finished at the last FLUSH already; not if nothing was
	 * written (an empty file) or nothing was flushed. */
	rc = finish_locked(m, 0);
	if (!rc && writer_awaits_fixup(m->w)) {
		/* libvirt closes its save image and reopens it to write the
		 * final header: keep it, unpublished, for op_open. */
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, 0);
		return;
	}
	m->w_committing = 1;
	struct writer *w = m->w;
	pthread_mutex_unlock(&m->lock);
	if (!rc && writer_size(w) == 0) {
		/* Created and closed with nothing written (`cat /missing >
		 * M/x`, a failed save): no snapshot, rather than an empty one
		 * the next patch would have to be encoded against. */
		log_say(m->log, LOG_WARNING, "%s: closed with no data written; "
			"not added as a snapshot", writer_name(w));
	} else if (!rc) {
		pthread_mutex_lock(&m->change);
		rc = writer_publish(w, err, sizeof(err));
		pthread_mutex_unlock(&m->change);
		if (rc)
			fuse_log_msg(m, err);
		else if (writer_note(w))
			fuse_log_msg(m, writer_note(w));
		if (!rc)
			log_say(m->log, LOG_INFO, "%s", writer_timing(w));
	}
	pthread_mutex_lock(&m->lock);
	writer_free(w);
	m->w = NULL;
	m->w_committing = 0;
	pthread_cond_broadcast(&m->changed);
	pthread_mutex_unlock(&m->lock);
	fuse_reply_err(req, 0);
}

