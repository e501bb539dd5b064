/* SPDX-License-Identifier: MIT */
/*
 * writer: a new layer from a file written into the mount (see writer.h).
 *
 * Two modes. STREAM: bytes arrive at the end of what was written and go
 * to the sink (VCDIFF encoder against the newest layer, or the seekable
 * zstd writer for a base); a copy of the first WRITER_HEAD bytes is kept
 * so the usual late fix-up of a save header lands in memory, and costs
 * at the finish only a re-encode of the windows that hold it
 * (refix_head()). SPOOL: on the first write that leaves a gap or rewrites
 * bytes already encoded beyond the head (or appends after a finish), the
 * sink is finished, what it holds is decoded back into a spool file, and
 * from then on writes go to the spool at any offset; the spool is encoded
 * at each finish. The fall-back costs one decode and one more encode,
 * paid only by writers that really jump around.
 *
 * The last TAIL to 2*TAIL bytes of a STREAM are held back from the sink, so
 * that what writers do at the very end stays cheap: libvirt's iohelper
 * (--bypass-cache) writes its last O_DIRECT block padded to the alignment
 * and then cuts the file back with ftruncate; a writer may also rewrite
 * its last block. Both land in memory instead of in the spool.
 */
#include "fs/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/fdio.h"

#include <xxhash.h>

#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/names.h"
#include "fs/safefile.h"

#define CHUNK ((size_t)1 << 20)
#define TAIL ((size_t)64 << 10)	/* held back: see the file-top comment */

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
	int finished;		/* tmp holds the whole file, fsynced and
				 * verified; the sink is closed */
	int dirty;		/* written or truncated since the last finish */
	int tmpfd, spoolfd;
	int resfd;		/* in .snapfs/tmp: space kept for the tree and
				 * layers file rewrites of writer_publish() */
	char res[340];
	char note[600];		/* writer_note() */
	uint32_t id;		/* reserved in the tree for the new snapshot */
	struct chain_layer *parent;	/* the version the patch is against */
	int owned;		/* writer_set_owner was called */
	uid_t uid;
	gid_t gid;
	mode_t fmode;		/* of the stored file */
	uint64_t parent_size;
	/* Of the full state, taken by the verify that decodes it back. */
	XXH3_state_t *digest;
	uint64_t written;	/* bytes of the stream so far (STREAM): fed
				 * to the sink, then tail_len held back */
	uint8_t *tail;		/* 2 * TAIL bytes (STREAM) */
	size_t tail_len;
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
	return chain_read(w->c, w->parent, off, buf, len, w->src_st);
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

static int sink_closed(const struct writer *w)
{
	return !w->enc && !w->zw;
}

/* Ends the sink's output; a no-op once it is closed (tmp then holds the
 * finished output already). */
static int sink_finish(struct writer *w)
{
	if (sink_closed(w))
		return 0;
	if (w->tail_len) {
		int rc = sink_write(w, w->tail, w->tail_len);
		w->tail_len = 0;
		if (rc)
			return rc;
	}
	int rc = w->base ? zframe_writer_finish(w->zw) :
			   vcdiff_enc_finish(w->enc);
	zframe_writer_free(w->zw);
	vcdiff_enc_free(w->enc);
	w->zw = NULL;
	w->enc = NULL;
	return rc;
}

/* Appends to the stream: the sink gets all but the last TAIL..2*TAIL
 * bytes, which wait in w->tail (copied once per TAIL bytes at most). */
static int stream_append(struct writer *w, const uint8_t *buf, size_t len)
{
	int rc;

	if (len >= 2 * TAIL) {
		rc = w->tail_len ? sink_write(w, w->tail, w->tail_len) : 0;
		if (!rc)
			rc = sink_write(w, buf, len - TAIL);
		if (rc)
			return rc;
		memcpy(w->tail, buf + len - TAIL, TAIL);
		w->tail_len = TAIL;
		return 0;
	}
	while (len) {
		if (w->tail_len == 2 * TAIL) {
			rc = sink_write(w, w->tail, TAIL);
			if (rc)
				return rc;
			memmove(w->tail, w->tail + TAIL, TAIL);
			w->tail_len = TAIL;
		}
		size_t n = 2 * TAIL - w->tail_len < len ? 2 * TAIL - w->tail_len :
							  len;
		memcpy(w->tail + w->tail_len, buf, n);
		w->tail_len += n;
		buf += n;
		len -= n;
	}
	return 0;
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
	if (chain_lookup(c, name)) {
		msg_say(err, errlen, "%s: a snapshot of that name exists", name);
		return -EEXIST;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->c = c;
	w->s = s;
	w->tmpfd = w->spoolfd = w->resfd = -1;
	/* Ids are never reused and one writer runs at a time: the next one
	 * is this snapshot's, and its inode from the start. */
	w->id = tree_next_id(store_tree(s));
	uint32_t parent = chain_current(c);
	w->base = parent == 0;
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->file, sizeof(w->file), "%s.%s", name,
		 w->base ? "zst" : "patch");
	snprintf(w->tmp, sizeof(w->tmp), "%s.%ld", w->file, (long)getpid());
	if (fstatat(store_dirfd(s), w->file, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		msg_say(err, errlen, "%s/%s exists but is not a snapshot: move "
			"it away or pick another name", store_dir(s), w->file);
		free(w);
		return -EEXIST;
	}
	if (!w->base) {
		struct chain_info inf;
		rc = chain_info(c, parent, &inf);
		if (!rc && inf.damaged) {
			msg_say(err, errlen, "%s: cannot add a snapshot on top of "
				"%s, which is damaged (%s)", name, inf.name,
				inf.damage);
			free(w);
			return -EIO;
		}
		if (!rc)
			rc = chain_get(c, parent, &w->parent);
		if (rc) {
			free(w);
			return rc;
		}
		w->parent_size = inf.size;
	}
	w->digest = XXH3_createState();
	if (!w->digest) {
		writer_free(w);
		return -ENOMEM;
	}
	w->head = malloc(WRITER_HEAD);
	w->tail = malloc(2 * TAIL);
	rc = w->head && w->tail ? chain_stream_new(&w->src_st) : -ENOMEM;
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
		if (off == w->written && !sink_closed(w)) {
			if (off < WRITER_HEAD) {
				size_t n = WRITER_HEAD - off < len ?
					   WRITER_HEAD - (size_t)off : len;
				memcpy(w->head + off, buf, n);
			}
			rc = stream_append(w, buf, len);
			if (!rc)
				w->written += len;
			goto out;
		}
		if (off >= w->written - w->tail_len && off + len <= w->written) {
			/* A rewrite of bytes still held back. */
			memcpy(w->tail + (off - (w->written - w->tail_len)), buf,
			       len);
			if (off < WRITER_HEAD)
				memcpy(w->head + off, buf, off + len <= WRITER_HEAD ?
				       len : WRITER_HEAD - (size_t)off);
			goto out;
		}
		if (off + len <= w->written && off + len <= WRITER_HEAD) {
			/* A header fixed up after the fact (even after a
			 * finish: libvirt reopens the file for it): absorbed. */
			memcpy(w->head + off, buf, len);
			w->head_dirty = 1;
			goto out;
		}
		/* Includes appends after a finish: the sink is closed, so
		 * what it wrote is decoded into the spool (rare: a dup of the
		 * fd closed while another still writes). */
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
	w->dirty = 1;
	w->finished = 0;
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
	if (w->mode == MODE_STREAM && size > w->size && w->written == w->size &&
	    !sink_closed(w)) {
		while (!rc && w->size < size) {
			uint64_t n = size - w->size < sizeof(zeros) ?
				     size - w->size : sizeof(zeros);
			rc = writer_write(w, w->size, zeros, (size_t)n);
		}
		return rc;
	}
	if (w->mode == MODE_STREAM && size < w->size &&
	    w->size - size <= w->tail_len && !sink_closed(w)) {
		/* Cut back within what is held back (libvirt's iohelper
		 * after its padded last O_DIRECT block). */
		w->tail_len -= (size_t)(w->size - size);
		w->written = w->size = size;
		w->dirty = 1;
		w->finished = 0;
		return 0;
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
	w->dirty = 1;
	w->finished = 0;
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

static int fd_write(void *ctx, const void *buf, size_t len)
{
	return fdio_write(*(int *)ctx, buf, len);
}

/*
 * A header fixed up once the patch is finished (libvirt reopens its save
 * image to write the final magic) or at its end: re-encodes only the
 * first windows, those that hold the first WRITER_HEAD bytes, with the
 * head as it is now, and appends the later windows as they are (a window
 * only names absolute source offsets and its own bytes, so it does not
 * care what comes before it). Costs one more indexing of the parent and
 * a copy of the patch, instead of decoding and encoding the whole file.
 * The result is checked like any other by the verify that follows.
 */
static int refix_head(struct writer *w)
{
	const char *why = "";
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	struct vcdiff_enc *e = NULL;
	struct vcdiff_enc_opts o = { 0 };
	uint8_t *buf = NULL;
	char name[340];
	size_t k = 0, hl = w->written < WRITER_HEAD ? (size_t)w->written :
						     WRITER_HEAD;
	uint64_t len = 0, rest, end;
	struct stat st;
	int fd = -1, rc;

	rc = vcdiff_patch_open(&p, w->tmpfd, &why);
	if (!rc)
		rc = vcdiff_dec_new(&d);
	/* windows 0..k-1 hold the head */
	while (!rc && k < vcdiff_patch_nwin(p) && len < hl)
		len += vcdiff_patch_win(p, k++)->tgt_len;
	if (!rc && (len < hl || !(buf = malloc(len ? len : 1))))
		rc = len < hl ? -EBADMSG : -ENOMEM;
	for (size_t i = 0; !rc && i < k; i++) {
		const struct vcdiff_win *wi = vcdiff_patch_win(p, i);
		if (wi->tgt_off + wi->tgt_len > len) {
			rc = -EBADMSG;	/* not windows in a row */
			break;
		}
		ssize_t r = vcdiff_dec_window(d, p, i, src_read, w, NULL, NULL,
					      buf + wi->tgt_off, wi->tgt_len);
		if (r < 0)
			rc = (int)r;
	}
	if (rc)
		goto out;
	memcpy(buf, w->head, hl);
	if (fstat(w->tmpfd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	end = (uint64_t)st.st_size;
	rest = k < vcdiff_patch_nwin(p) ? vcdiff_patch_win(p, k)->hdr_off : end;
	snprintf(name, sizeof(name), "%s.head", w->tmp);
	fd = openat(tmpdir(w), name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = vcdiff_enc_new(&e, &o, w->parent_size, src_read, w, fd_write, &fd);
	if (!rc)
		rc = vcdiff_enc_write(e, buf, (size_t)len);
	if (!rc)
		rc = vcdiff_enc_finish(e);
	for (uint64_t off = rest; !rc && off < end;) {
		size_t n = end - off < len ? (size_t)(end - off) : (size_t)len;
		ssize_t r = pread(w->tmpfd, buf, n, (off_t)off);
		if (r <= 0)
			rc = r < 0 ? -errno : -EIO;
		else
			rc = fdio_write(fd, buf, (size_t)r);
		off += r > 0 ? (uint64_t)r : 0;
	}
	if (!rc && renameat(tmpdir(w), name, tmpdir(w), w->tmp) < 0)
		rc = -errno;
	if (!rc) {
		close(w->tmpfd);
		w->tmpfd = fd;
		fd = -1;
		w->head_dirty = 0;
	}
out:
	if (fd >= 0) {
		close(fd);
		unlinkat(tmpdir(w), name, 0);
	}
	vcdiff_enc_free(e);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	free(buf);
	return rc;
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

/* Puts the finished layer into the tree (one store_commit: the file moves
 * in from .snapfs/tmp, current follows it) and opens it in the chain. */
static int publish(struct writer *w, char *err, size_t errlen)
{
	XXH128_canonical_t cn;
	char digest[48], from[400];
	struct tree *next;
	int rc = tree_clone(store_tree(w->s), &next);

	XXH128_canonicalFromHash(&cn, XXH3_128bits_digest(w->digest));
	chain_format_digest(cn.digest, digest, sizeof(digest));
	snprintf(from, sizeof(from), "%s/tmp/%s", STORE_META_DIR, w->tmp);
	if (!rc)
		rc = tree_add_id(next, w->id, w->parent ?
				 chain_layer_id(w->parent) : 0, w->file,
				 (int64_t)time(NULL));
	if (!rc)
		rc = tree_set_digest(next, w->id, digest);
	if (!rc)
		rc = tree_set_current(next, w->id);
	if (!rc)
		rc = tree_add_pending(next, from, w->file);
	if (rc) {
		tree_free(next);
		msg_say(err, errlen, "%s: cannot add to the tree: %s", w->name,
			strerror(-rc));
		return rc;
	}
	rc = store_commit(w->s, next, err, errlen);
	if (rc)
		return rc;
	/* The file is in the store now: nothing to remove on free. */
	w->tmp[0] = 0;
	return chain_add(w->c, w->id, err, errlen);
}

/* Reads back the finished patch in tmp and decodes every window against
 * the parent: each window's adler32 was taken by the encoder from the
 * bytes written, so a patch that does not rebuild them fails here. */
static int verify_patch(struct writer *w, const char **why)
{
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	uint8_t *buf = NULL;
	uint64_t next = 0;
	int rc;

	XXH3_128bits_reset(w->digest);
	rc = vcdiff_patch_open(&p, w->tmpfd, why);
	if (!rc)
		rc = vcdiff_dec_new(&d);
	if (!rc && !(buf = malloc(VCDIFF_WIN_MAX)))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < vcdiff_patch_nwin(p); i++) {
		const struct vcdiff_win *wi = vcdiff_patch_win(p, i);
		if (wi->tgt_off != next || !(wi->win_ind & VCDIFF_WIN_ADLER32)) {
			*why = "a window is out of place or has no checksum";
			rc = -EBADMSG;
			break;
		}
		ssize_t r = vcdiff_dec_window(d, p, i, src_read, w, NULL, NULL,
					      buf, VCDIFF_WIN_MAX);
		if (r < 0) {
			*why = vcdiff_dec_reason(d);
			rc = (int)r;
		} else if ((uint64_t)r != wi->tgt_len) {
			*why = "a window decodes short";
			rc = -EBADMSG;
		} else {
			/* The digest of what was checked, nothing else. */
			XXH3_128bits_update(w->digest, buf, (size_t)r);
		}
		next += wi->tgt_len;
	}
	if (!rc && next != w->size) {
		*why = "the patch does not build as many bytes as were written";
		rc = -EBADMSG;
	}
	free(buf);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	return rc;
}

/* The same for a base: every frame decompresses (zstd checks its frame
 * checksums), and the frames add up to the bytes written. */
static int verify_base(struct writer *w, const char **why)
{
	struct zframe *z = NULL;
	struct zframe_dctx *dc = NULL;
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint64_t next = 0;
	int rc;

	XXH3_128bits_reset(w->digest);
	rc = zframe_open(&z, w->tmpfd, why);
	if (!rc)
		rc = zframe_dctx_new(&dc);
	for (size_t i = 0; !rc && i < zframe_count(z); i++) {
		const struct zframe_entry *fe = zframe_frame(z, i);
		if (fe->raw_off != next) {
			*why = "a frame is out of place";
			rc = -EBADMSG;
			break;
		}
		if (fe->raw_len > cap) {
			uint8_t *nb = realloc(buf, fe->raw_len);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = fe->raw_len;
		}
		ssize_t r = zframe_read_frame(z, dc, i, buf, fe->raw_len);
		if (r < 0) {
			*why = "a frame does not decompress";
			rc = (int)r;
		} else if ((uint64_t)r != fe->raw_len) {
			*why = "a frame decompresses short";
			rc = -EBADMSG;
		} else {
			XXH3_128bits_update(w->digest, buf, (size_t)r);
		}
		next += fe->raw_len;
	}
	if (!rc && next != w->size) {
		*why = "the frames do not hold as many bytes as were written";
		rc = -EBADMSG;
	}
	free(buf);
	zframe_dctx_free(dc);
	zframe_free(z);
	return rc;
}

static void unreserve(struct writer *w)
{
	if (w->resfd < 0)
		return;
	close(w->resfd);
	unlinkat(tmpdir(w), w->res, 0);
	w->resfd = -1;
}

/*
 * Takes the space writer_publish() needs for the new layers file (the old
 * one, one more line, a block of slack) in a file of its own, on the same
 * file system, freed just before the layers file is rewritten: so a disk
 * that fills at the very end fails the finish, where the writer hears of
 * it, and not the publish, where nobody would.
 */
static int reserve(struct writer *w)
{
	static const uint8_t zeros[4096];
	struct stat st;
	uint64_t need = strlen(w->file) + 1 + sizeof(zeros);
	int rc;

	unreserve(w);
	if (fstatat(store_dirfd(w->s), STORE_LAYERS_FILE, &st, 0) == 0)
		need += (uint64_t)st.st_size;
	snprintf(w->res, sizeof(w->res), "%s.reserve", w->tmp);
	w->resfd = openat(tmpdir(w), w->res, O_RDWR | O_CREAT | O_TRUNC |
			  O_CLOEXEC, 0600);
	if (w->resfd < 0)
		return -errno;
	rc = posix_fallocate(w->resfd, 0, (off_t)need);
	if (rc == EOPNOTSUPP || rc == EINVAL) {
		/* No fallocate here: written zeros take the space too. */
		rc = 0;
		for (uint64_t o = 0; !rc && o < need; o += sizeof(zeros))
			rc = -fdio_pwrite(w->resfd, zeros, sizeof(zeros), o);
	}
	if (!rc && fsync(w->resfd) < 0)
		rc = errno;
	if (rc)
		unreserve(w);
	return -rc;
}

/* Up to n bytes of the file as written, from offset 0. */
static size_t head_read(struct writer *w, uint8_t *buf, size_t n)
{
	if (n > w->size)
		n = (size_t)w->size;
	if (w->mode == MODE_STREAM) {
		if (n > w->written)
			n = (size_t)w->written;
		memcpy(buf, w->head, n);
		return n;
	}
	ssize_t r = pread(w->spoolfd, buf, n, 0);
	return r < 0 ? 0 : (size_t)r;
}

/* libvirt's save image header (src/qemu/qemu_saveimage.h): 16 bytes of
 * magic, then host-endian uint32 version, data_len, was_running,
 * compressed. */
#define LIBVIRT_MAGIC_DONE "LibvirtQemudSave"
#define LIBVIRT_MAGIC_PART "LibvirtQemudPart"
#define LIBVIRT_HDR 32

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Fills w->note when the file will not delta well and we can tell why. */
static void take_note(struct writer *w, uint64_t stored)
{
	static const char *const fmt[] = { "raw", "gzip", "bzip2", "xz",
					   "lzop", "zstd" };
	uint8_t h[LIBVIRT_HDR];
	size_t n = head_read(w, h, sizeof(h));

	w->note[0] = 0;
	if (n == sizeof(h) && (!memcmp(h, LIBVIRT_MAGIC_DONE, 16) ||
			       !memcmp(h, LIBVIRT_MAGIC_PART, 16))) {
		uint32_t ver = le32(h + 16), comp = le32(h + 28);
		if (ver > 0xffff)	/* written on a big-endian host */
			comp = __builtin_bswap32(comp);
		if (comp != 0) {
			snprintf(w->note, sizeof(w->note), "%s: a libvirt save "
			    "image compressed with %s (save_image_format in "
			    "qemu.conf): compressed states share almost no "
			    "bytes, so deltas save nothing; set "
			    "save_image_format = \"raw\"", w->name,
			    comp < sizeof(fmt) / sizeof(fmt[0]) ? fmt[comp] :
			    "an unknown format");
			return;
		}
	}
	if (!w->base && w->size >= ((uint64_t)4 << 20) &&
	    stored >= w->size / 10 * 9)
		snprintf(w->note, sizeof(w->note), "%s: the patch is %d%% of "
		    "the file: it shares almost nothing with the snapshot "
		    "before it (compressed or encrypted data?)", w->name,
		    (int)(stored * 100 / w->size));
}

int writer_finish(struct writer *w, char *err, size_t errlen)
{
	const char *why = "";
	struct stat st;
	int rc = w->failed;

	if (rc) {
		msg_say(err, errlen, "%s: an earlier step failed (%s); the "
		    "snapshot is not added", w->name, strerror(-rc));
		return rc;
	}
	if (w->finished)
		return 0;
	if (w->mode == MODE_STREAM && w->head_dirty && !w->base) {
		rc = sink_finish(w);
		if (!rc)
			rc = refix_head(w);
	} else if (w->mode == MODE_STREAM && w->head_dirty) {
		rc = to_spool(w);	/* a base: its frames are not spliced */
	}
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
		    "snapshot is not added", w->name, store_dir(w->s),
		    STORE_META_DIR, strerror(-rc));
		goto fail;
	}
	rc = w->base ? verify_base(w, &why) : verify_patch(w, &why);
	if (rc) {
		msg_say(err, errlen, "%s: the encoded file does not read back "
		    "as what was written (%s: %s); the snapshot is not added",
		    w->name, why, strerror(-rc));
		if (rc == -EBADMSG)
			rc = -EIO;
		goto fail;
	}
	rc = reserve(w);
	if (rc) {
		msg_say(err, errlen, "%s: no room left under %s for the layers "
		    "file: %s; the snapshot is not added", w->name,
		    store_dir(w->s), strerror(-rc));
		goto fail;
	}
	take_note(w, fstat(w->tmpfd, &st) == 0 ? (uint64_t)st.st_size : 0);
	w->finished = 1;
	w->dirty = 0;
	return 0;
fail:
	w->failed = rc;
	return rc;
}

int writer_dirty(const struct writer *w)
{
	return w->dirty;
}

int writer_status(const struct writer *w)
{
	return w->failed;
}

void writer_fail(struct writer *w, int err)
{
	if (!w->failed)
		w->failed = err;
}

const char *writer_note(const struct writer *w)
{
	return w->note[0] ? w->note : NULL;
}

int writer_awaits_fixup(struct writer *w)
{
	uint8_t h[16];

	return head_read(w, h, sizeof(h)) == sizeof(h) &&
	       !memcmp(h, LIBVIRT_MAGIC_PART, sizeof(h));
}

int writer_publish(struct writer *w, char *err, size_t errlen)
{
	int rc = w->failed;

	if (rc) {
		msg_say(err, errlen, "%s: an earlier step failed (%s); the "
		    "snapshot is not added", w->name, strerror(-rc));
		return rc;
	}
	if (!w->finished) {
		msg_say(err, errlen, "%s: internal: published before it was "
		    "finished", w->name);
		return -EINVAL;
	}
	unreserve(w);	/* the room store_commit() needs */
	rc = publish(w, err, errlen);
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
		if (w->tmp[0])
			unlinkat(tmpdir(w), w->tmp, 0);
	}
	if (w->spoolfd >= 0) {
		close(w->spoolfd);
		unlinkat(tmpdir(w), w->spool, 0);
	}
	unreserve(w);
	free(w->head);
	free(w->tail);
	chain_stream_free(w->src_st);
	chain_put(w->c, w->parent);
	XXH3_freeState(w->digest);
	free(w);
}

uint32_t writer_id(const struct writer *w)
{
	return w->id;
}

uint32_t writer_parent_id(const struct writer *w)
{
	return w->parent ? chain_layer_id(w->parent) : 0;
}
