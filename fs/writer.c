/* SPDX-License-Identifier: MIT */
/*
 * writer: a new layer from a file written into the mount (see writer.h).
 *
 * Two modes. STREAM: bytes arrive at the end of what was written and go
 * to the sink (VCDIFF encoder against the newest layer, or the seekable
 * zstd writer for a base); a copy of the first WRITER_HEAD bytes is kept
 * so the usual late fix-up of a save header lands in memory. SPOOL: on the
 * first write that leaves a gap or rewrites bytes already encoded beyond
 * the head, the sink is finished, what it holds is decoded back into a
 * spool file, and from then on writes go to the spool at any offset; the
 * spool is encoded at commit. The fall-back costs one decode and one more
 * encode, paid only by writers that really jump around.
 */
#include "fs/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/fdio.h"

#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/names.h"
#include "fs/safefile.h"

#define CHUNK ((size_t)1 << 20)

enum { MODE_STREAM, MODE_SPOOL };

struct writer {
	struct chain *c;
	struct store *s;
	char name[256];
	char file[300];		/* name.patch or name.zst */
	char tmp[320];		/* in .snapfs/tmp: the encoded layer */
	char spool[340];	/* in .snapfs/tmp, SPOOL mode only */
	int base;		/* writing the first layer */
	int mode;
	int failed;		/* -errno of the first failure, sticky */
	int tmpfd, spoolfd;
	int owned;		/* writer_set_owner was called */
	uid_t uid;
	gid_t gid;
	mode_t fmode;		/* of the stored file */
	size_t parent;		/* layer the patch is against */
	uint64_t parent_size;
	uint64_t written;	/* bytes fed to the sink (STREAM) */
	uint64_t size;		/* highest offset written */
	uint8_t *head;		/* first WRITER_HEAD bytes (STREAM) */
	int head_dirty;
	struct vcdiff_enc *enc;
	struct zframe_writer *zw;
	/* The encoder reads its source mostly in order (indexing, then
	 * along matches): a stream lets readahead decode it on all cores. */
	struct chain_stream *src_st;
};

static int tmpdir(const struct writer *w)
{
	return store_subdir(w->s, "tmp");
}

static ssize_t src_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct writer *w = ctx;
	return chain_read_stream(w->c, w->parent, off, buf, len, w->src_st);
}

static int out_write(void *ctx, const void *buf, size_t len)
{
	struct writer *w = ctx;
	return fdio_write(w->tmpfd, buf, len);
}

/* A fresh temporary output and sink. */
static int sink_open(struct writer *w)
{
	int rc;

	if (w->tmpfd >= 0) {
		close(w->tmpfd);
		unlinkat(tmpdir(w), w->tmp, 0);
	}
	w->tmpfd = safefile_create(tmpdir(w), w->tmp, 0600, NULL);
	if (w->tmpfd < 0)
		return w->tmpfd;
	if (w->base) {
		struct zframe_writer_opts o = { 0 };
		rc = zframe_writer_new(&w->zw, w->tmpfd, &o);
	} else {
		struct vcdiff_enc_opts o = { 0 };
		rc = vcdiff_enc_new(&w->enc, &o, w->parent_size, src_read, w,
				    out_write, w);
	}
	return rc;
}

static int sink_write(struct writer *w, const void *buf, size_t len)
{
	return w->base ? zframe_writer_write(w->zw, buf, len) :
			 vcdiff_enc_write(w->enc, buf, len);
}

static int sink_finish(struct writer *w)
{
	int rc = w->base ? zframe_writer_finish(w->zw) :
			   vcdiff_enc_finish(w->enc);
	zframe_writer_free(w->zw);
	vcdiff_enc_free(w->enc);
	w->zw = NULL;
	w->enc = NULL;
	return rc;
}

/* Decodes the finished temporary output back into the spool file. */
static int unsink(struct writer *w)
{
	const char *why = "";
	uint8_t *buf = NULL;
	int rc;

	if (w->base) {
		struct zframe *z = NULL;
		struct zframe_dctx *dc = NULL;
		rc = zframe_open(&z, w->tmpfd, &why);
		if (!rc)
			rc = zframe_dctx_new(&dc);
		for (size_t i = 0; !rc && i < zframe_count(z); i++) {
			const struct zframe_entry *fe = zframe_frame(z, i);
			uint8_t *nb = realloc(buf, fe->raw_len ? fe->raw_len : 1);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			ssize_t r = zframe_read_frame(z, dc, i, buf, fe->raw_len);
			rc = r < 0 ? (int)r : fdio_pwrite(w->spoolfd, buf,
						fe->raw_len, fe->raw_off);
		}
		zframe_dctx_free(dc);
		zframe_free(z);
	} else {
		struct vcdiff_patch *p = NULL;
		struct vcdiff_dec *d = NULL;
		rc = vcdiff_patch_open(&p, w->tmpfd, &why);
		if (!rc)
			rc = vcdiff_dec_new(&d);
		buf = malloc(VCDIFF_WIN_MAX);
		if (!rc && !buf)
			rc = -ENOMEM;
		for (size_t i = 0; !rc && i < vcdiff_patch_nwin(p); i++) {
			const struct vcdiff_win *wi = vcdiff_patch_win(p, i);
			ssize_t r = vcdiff_dec_window(d, p, i, src_read, w, NULL,
						      NULL, buf, VCDIFF_WIN_MAX);
			rc = r < 0 ? (int)r : fdio_pwrite(w->spoolfd, buf,
						wi->tgt_len, wi->tgt_off);
		}
		vcdiff_dec_free(d);
		vcdiff_patch_free(p);
	}
	free(buf);
	return rc;
}

/* STREAM -> SPOOL: everything written so far goes into the spool file. */
static int to_spool(struct writer *w)
{
	int rc;

	snprintf(w->spool, sizeof(w->spool), "%s.spool", w->tmp);
	w->spoolfd = safefile_create(tmpdir(w), w->spool, 0600, NULL);
	if (w->spoolfd < 0)
		return w->spoolfd;
	rc = sink_finish(w);
	if (!rc)
		rc = unsink(w);
	if (!rc && w->head_dirty)
		rc = fdio_pwrite(w->spoolfd, w->head,
				 w->written < WRITER_HEAD ? (size_t)w->written :
				 WRITER_HEAD, 0);
	w->mode = MODE_SPOOL;
	free(w->head);
	w->head = NULL;
	return rc;
}

int writer_new(struct writer **out, struct chain *c, struct store *s,
	       const char *name, char *err, size_t errlen)
{
	struct writer *w;
	struct stat st;
	char why[256];
	int rc;

	rc = names_check(name, why, sizeof(why));
	if (rc) {
		msg_say(err, errlen, "'%s': %s", name, why);
		return rc;
	}
	if (chain_lookup(c, name) >= 0) {
		msg_say(err, errlen, "%s: a snapshot of that name exists", name);
		return -EEXIST;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->c = c;
	w->s = s;
	w->tmpfd = w->spoolfd = -1;
	w->base = chain_count(c) == 0;
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->file, sizeof(w->file), "%s.%s", name,
		 w->base ? "zst" : "patch");
	snprintf(w->tmp, sizeof(w->tmp), "%s.%ld", w->file, (long)getpid());
	if (fstatat(store_dirfd(s), w->file, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		msg_say(err, errlen, "%s/%s exists but is not in %s: move it away "
		    "or pick another name", store_dir(s), w->file,
		    STORE_LAYERS_FILE);
		free(w);
		return -EEXIST;
	}
	if (!w->base) {
		struct chain_info inf;
		w->parent = chain_count(c) - 1;
		chain_info(c, w->parent, &inf);
		if (inf.damage) {
			msg_say(err, errlen, "%s: cannot add a snapshot on top of "
			    "%s, which is damaged (%s)", name, inf.name,
			    inf.damage);
			free(w);
			return -EIO;
		}
		w->parent_size = inf.size;
	}
	w->head = malloc(WRITER_HEAD);
	rc = w->head ? chain_stream_new(&w->src_st) : -ENOMEM;
	if (!rc)
		rc = sink_open(w);
	if (rc) {
		msg_say(err, errlen, "%s: cannot start writing under %s/%s/tmp: %s",
		    name, store_dir(s), STORE_META_DIR, strerror(-rc));
		writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int writer_write(struct writer *w, uint64_t off, const void *buf,
		 size_t len)
{
	int rc = 0;

	if (w->failed)
		return w->failed;
	if (len == 0)
		return 0;
	if (w->mode == MODE_STREAM) {
		if (off == w->written) {
			if (off < WRITER_HEAD) {
				size_t n = WRITER_HEAD - off < len ?
					   WRITER_HEAD - (size_t)off : len;
				memcpy(w->head + off, buf, n);
			}
			rc = sink_write(w, buf, len);
			if (!rc)
				w->written += len;
			goto out;
		}
		if (off + len <= w->written && off + len <= WRITER_HEAD) {
			/* A header fixed up after the fact: absorbed. */
			memcpy(w->head + off, buf, len);
			w->head_dirty = 1;
			goto out;
		}
		rc = to_spool(w);
		if (rc)
			goto out;
	}
	rc = fdio_pwrite(w->spoolfd, buf, len, off);
out:
	if (rc) {
		w->failed = rc;
		return rc;
	}
	if (off + len > w->size)
		w->size = off + len;
	return 0;
}

int writer_truncate(struct writer *w, uint64_t size)
{
	static const uint8_t zeros[64 << 10];
	int rc = 0;

	if (w->failed)
		return w->failed;
	if (size == w->size)
		return 0;
	if (w->mode == MODE_STREAM && size > w->size && w->written == w->size) {
		while (!rc && w->size < size) {
			uint64_t n = size - w->size < sizeof(zeros) ?
				     size - w->size : sizeof(zeros);
			rc = writer_write(w, w->size, zeros, (size_t)n);
		}
		return rc;
	}
	if (w->mode == MODE_STREAM)
		rc = to_spool(w);
	if (!rc && ftruncate(w->spoolfd, (off_t)size) < 0)
		rc = -errno;
	if (rc) {
		w->failed = rc;
		return rc;
	}
	w->size = size;
	return 0;
}

void writer_set_owner(struct writer *w, uid_t uid, gid_t gid, mode_t mode)
{
	w->owned = 1;
	w->uid = uid;
	w->gid = gid;
	w->fmode = mode;
}

uint64_t writer_size(const struct writer *w)
{
	return w->size;
}

const char *writer_name(const struct writer *w)
{
	return w->name;
}

/* Encodes the spool file from scratch into a fresh temporary output. */
static int encode_spool(struct writer *w)
{
	uint8_t *buf = malloc(CHUNK);
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = sink_open(w);
	for (uint64_t off = 0; !rc && off < w->size; off += CHUNK) {
		size_t n = w->size - off < CHUNK ? (size_t)(w->size - off) : CHUNK;
		ssize_t r = pread(w->spoolfd, buf, n, (off_t)off);
		if (r < 0)
			rc = -errno;
		else if ((size_t)r < n)	/* a hole at the end: zeros */
			memset(buf + r, 0, n - (size_t)r);
		if (!rc)
			rc = sink_write(w, buf, n);
	}
	free(buf);
	if (!rc)
		rc = sink_finish(w);
	return rc;
}

int writer_commit(struct writer *w, char *err, size_t errlen)
{
	int rc = w->failed;

	if (rc) {
		msg_say(err, errlen, "%s: an earlier write failed (%s); the "
		    "snapshot was not added", w->name, strerror(-rc));
		return rc;
	}
	if (w->mode == MODE_STREAM && w->head_dirty)
		rc = to_spool(w);
	if (!rc)
		rc = w->mode == MODE_SPOOL ? encode_spool(w) : sink_finish(w);
	/* Owner and mode before the rename: the file never shows in the
	 * store with more access than its writer gave it. chown needs root;
	 * a mount run by the writer itself has nothing to change. */
	if (!rc && w->owned && fchmod(w->tmpfd, w->fmode) < 0)
		rc = -errno;
	if (!rc && w->owned && fchown(w->tmpfd, w->uid, w->gid) < 0 &&
	    errno != EPERM)
		rc = -errno;
	if (!rc && fsync(w->tmpfd) < 0)
		rc = -errno;
	if (rc) {
		msg_say(err, errlen, "%s: cannot encode under %s/%s/tmp: %s; the "
		    "snapshot was not added", w->name, store_dir(w->s),
		    STORE_META_DIR, strerror(-rc));
		goto fail;
	}
	if (renameat(tmpdir(w), w->tmp, store_dirfd(w->s), w->file) < 0) {
		rc = -errno;
		msg_say(err, errlen, "%s/%s: cannot move into the store: %s",
		    store_dir(w->s), w->file, strerror(-rc));
		goto fail;
	}
	rc = store_append(w->s, w->file, err, errlen);
	if (rc) {
		unlinkat(store_dirfd(w->s), w->file, 0);
		goto fail;
	}
	rc = chain_append(w->c, err, errlen);
	if (rc)
		goto fail;
	w->failed = -EALREADY;
	return 0;
fail:
	w->failed = rc;
	return rc;
}

void writer_free(struct writer *w)
{
	if (!w)
		return;
	zframe_writer_free(w->zw);
	vcdiff_enc_free(w->enc);
	if (w->tmpfd >= 0) {
		close(w->tmpfd);
		unlinkat(tmpdir(w), w->tmp, 0);	/* gone already if committed */
	}
	if (w->spoolfd >= 0) {
		close(w->spoolfd);
		unlinkat(tmpdir(w), w->spool, 0);
	}
	free(w->head);
	chain_stream_free(w->src_st);
	free(w);
}
