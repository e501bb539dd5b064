/* SPDX-License-Identifier: MIT */
/*
 * wcommit: ending a file written into the mount and making it a snapshot
 * (see writer.h: writer_finish at FLUSH/fsync, writer_publish at
 * RELEASE). The finish ends the encoding (re-encoding the head windows a
 * late header fix-up changed, or the spool), fsyncs the patch, checks it
 * rebuilds the bytes written, so a wrong patch fails close(), and opens it
 * as the layer it will become with its index, then reserves the room the
 * publish needs; the publish is one store_commit() and chain_add().
 * The check: for a patch streamed as it was encoded, fs/wcheck.c (checked
 * window by window while encoding, read back and decoded at close) and
 * the index built from the encoder's ops; for one whose head was spliced
 * after a late fix-up, a decode through the chain that indexes it and
 * checks every window's adler32 (chain_prepare). Not here: taking the
 * bytes in (fs/writer.c).
 */
#include "fs/writer.h"
#include "fs/writer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/safefile.h"
#include "fs/wcheck.h"

static int fd_write(void *ctx, const void *buf, size_t len)
{
	return fdio_write(*(int *)ctx, buf, len);
}

/*
 * With windowed lzma, only the first compressed section of each kind
 * (data, inst, addr) carries the xz stream header, in the new head as in
 * the old patch. The windows kept after the head splice on only if, for
 * each kind that they compress, the new head compresses one iff the old
 * head (windows 0..k-1 of p) did. 0, or -EAGAIN (the caller re-encodes
 * the whole file instead), or -errno reading the head patch at hfd.
 */
static int splice_ok(struct writer *w, const struct vcdiff_patch *p,
		     size_t k, int hfd)
{
	static const uint8_t bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
					VCDIFF_DEL_ADDR };
	struct vcdiff_patch *hp = NULL;
	const char *why;
	int rc = wr_patch_open(w, hfd, &hp, &why);

	for (int b = 0; !rc && b < 3; b++) {
		int had = 0, has = 0, later = 0;
		for (size_t i = 0; i < vcdiff_patch_nwin(p); i++) {
			int z = !!(vcdiff_patch_win(p, i)->del_ind & bit[b]);
			if (i < k)
				had |= z;
			else
				later |= z;
		}
		for (size_t i = 0; i < vcdiff_patch_nwin(hp); i++)
			has |= !!(vcdiff_patch_win(hp, i)->del_ind & bit[b]);
		if (later && had != has)
			rc = -EAGAIN;
	}
	vcdiff_patch_free(hp);
	return rc;
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

	rc = wr_patch_open(w, w->tmpfd, &p, &why);
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
		ssize_t r = vcdiff_dec_window(d, p, i, wr_src_read, w, NULL, NULL,
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
	fd = openat(wr_tmpdir(w), name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	o.secondary = VCDIFF_SEC_LZMA_WINDOWED;
	o.sidx = w->sidx_src;	/* the same parent: no second indexing */
	rc = vcdiff_enc_new(&e, &o, w->parent_size, wr_src_read, w, fd_write, &fd);
	if (!rc)
		rc = vcdiff_enc_write(e, buf, (size_t)len);
	if (!rc)
		rc = vcdiff_enc_finish(e);
	if (!rc)
		rc = splice_ok(w, p, k, fd);
	for (uint64_t off = rest; !rc && off < end;) {
		size_t n = end - off < len ? (size_t)(end - off) : (size_t)len;
		/* The old patch, a temporary of ours: local. */
		ssize_t r = pread(w->tmpfd, buf, n, (off_t)off);
		if (r <= 0)
			rc = r < 0 ? -errno : -EIO;
		else
			rc = fdio_write(fd, buf, (size_t)r);
		off += r > 0 ? (uint64_t)r : 0;
	}
	if (!rc && renameat(wr_tmpdir(w), name, wr_tmpdir(w), w->tmp) < 0)
		rc = -errno;
	if (!rc) {
		close(w->tmpfd);
		w->tmpfd = fd;
		fd = -1;
		w->head_dirty = 0;
		/* Spliced: not the patch wcheck saw written; the finish
		 * decodes it instead. */
		wcheck_free(w->chk);
		w->chk = NULL;
	}
out:
	if (fd >= 0) {
		close(fd);
		unlinkat(wr_tmpdir(w), name, 0);
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
	rc = wr_sink_open(w);
	for (uint64_t off = 0; !rc && off < w->size; off += CHUNK) {
		size_t n = w->size - off < CHUNK ? (size_t)(w->size - off) : CHUNK;
		ssize_t r = pread(w->spoolfd, buf, n, (off_t)off);
		if (r < 0)
			rc = -errno;
		else if ((size_t)r < n)	/* a hole at the end: zeros */
			memset(buf + r, 0, n - (size_t)r);
		if (!rc)
			rc = wr_sink_write(w, buf, n);
	}
	free(buf);
	if (!rc)
		rc = wr_sink_finish(w);
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
	rc = chain_add(w->c, w->id, err, errlen);
	/* Visible first; the next write's index after (fs/wsidx.c). */
	if (!rc)
		wr_sidx_keep(w, digest);
	return rc;
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
	rc = wr_patch_open(w, w->tmpfd, &p, why);
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
		ssize_t r = vcdiff_dec_window(d, p, i, wr_src_read, w, NULL, NULL,
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

/* The new layer as a blob, with the identity it will have in the store
 * (store_new_blob): its derived data is found again after the commit. */
static int new_blob(struct writer *w, const char *label, struct blob **out)
{
	return store_new_blob(w->s, w->file, w->tmpfd, label, out);
}

struct prep_ctx {
	struct writer *w;
	uint64_t bytes;
};

static void prep_bytes(void *ctx, const void *buf, size_t len)
{
	struct prep_ctx *p = ctx;

	XXH3_128bits_update(p->w->digest, buf, len);
	p->bytes += len;
}

/*
 * The one decode after the encode: the chain indexes the patch now
 * (chain_prepare), checking every window's adler32 through the new index
 * as it would at commit, and saves the index where the commit's
 * chain_add() loads it. That check fails a patch that does not rebuild
 * the bytes written, as verify_patch() does, and the digest is taken from
 * the bytes it checked. If no window went through the check (an index
 * was found already), verify_patch() decodes instead.
 */
static int prepare_patch(struct writer *w, const char **why, char *buf,
			 size_t cap)
{
	struct prep_ctx p = { w, 0 };
	struct blob *b;
	char label[400];
	int rc;

	XXH3_128bits_reset(w->digest);
	snprintf(label, sizeof(label), "%s/tmp/%s", STORE_META_DIR, w->tmp);
	buf[0] = 0;
	rc = new_blob(w, label, &b);
	if (!rc)
		rc = chain_prepare(w->c, w->id, w->parent, b, NULL, prep_bytes,
				   &p, buf, cap);
	*why = buf[0] ? buf : "indexing the new layer";
	if (!rc && p.bytes != w->size)
		return verify_patch(w, why);
	return rc;
}

/*
 * For a patch checked while it was encoded: the check at close (read
 * back, every window decoded and compared with what was written, see
 * fs/wcheck.h), then the chain opens it as the layer it will be with the
 * index built from the encoder's ops, saving its derived data where the
 * commit's chain_add() loads it. No decode through the chain; the digest
 * was taken from the bytes written, which the check proves the patch
 * rebuilds.
 */
static int prepare_checked(struct writer *w, const char **why, char *buf,
			   size_t cap)
{
	struct blob *b;
	char label[400];
	int rc = wcheck_finish(w->chk, w->tmpfd, w->size, why);

	w->tm.early = wcheck_early(w->chk, &w->tm.wins);
	if (rc)
		return rc;
	snprintf(label, sizeof(label), "%s/tmp/%s", STORE_META_DIR, w->tmp);
	buf[0] = 0;
	rc = new_blob(w, label, &b);
	if (!rc)
		rc = chain_prepare(w->c, w->id, w->parent, b,
				   wcheck_index(w->chk), NULL, NULL, buf, cap);
	*why = buf[0] ? buf : "indexing the new layer";
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
	rc = wr_zframe_open(w, w->tmpfd, &z, why);
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

void wr_unreserve(struct writer *w)
{
	if (w->resfd < 0)
		return;
	close(w->resfd);
	unlinkat(wr_tmpdir(w), w->res, 0);
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

	wr_unreserve(w);
	if (fstatat(store_dirfd(w->s), STORE_LAYERS_FILE, &st, 0) == 0)
		need += (uint64_t)st.st_size;
	snprintf(w->res, sizeof(w->res), "%s.reserve", w->tmp);
	w->resfd = openat(wr_tmpdir(w), w->res, O_RDWR | O_CREAT | O_TRUNC |
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
		wr_unreserve(w);
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
	char whybuf[512];
	struct stat st;
	int rc = w->failed;

	if (rc) {
		msg_say(err, errlen, "%s: an earlier step failed (%s); the "
		    "snapshot is not added", w->name, strerror(-rc));
		return rc;
	}
	if (w->finished)
		return 0;
	double t0 = wr_now();
	if (w->mode == MODE_STREAM && w->head_dirty && !w->base) {
		rc = wr_sink_finish(w);
		if (!rc)
			rc = refix_head(w);
		if (rc == -EAGAIN)	/* cannot splice: see splice_ok() */
			rc = wr_to_spool(w);
	} else if (w->mode == MODE_STREAM && w->head_dirty) {
		rc = wr_to_spool(w);	/* a base: its frames are not spliced */
	}
	if (!rc)
		rc = w->mode == MODE_SPOOL ? encode_spool(w) : wr_sink_finish(w);
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
	/* A store in a bucket: the upload is here, where a failure reaches
	 * the writer, and before the check, which indexes the layer under
	 * the identity the upload gives it. */
	rc = store_put_new(w->s, w->file, w->tmpfd, whybuf, sizeof(whybuf));
	if (rc) {
		msg_say(err, errlen, "%s: %s", w->name, whybuf);
		goto fail;
	}
	double tv = wr_now();
	if (w->base)
		rc = verify_base(w, &why);
	else if (w->chk)
		rc = prepare_checked(w, &why, whybuf, sizeof(whybuf));
	else
		rc = prepare_patch(w, &why, whybuf, sizeof(whybuf));
	w->tm.verify = wr_now() - tv;
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
	w->tm.finish = wr_now() - t0;
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

const char *writer_timing(struct writer *w)
{
	const struct vcdiff_enc_stats *e = &w->tm.enc;
	double all = wr_now() - w->tm.start;
	int n = snprintf(w->timing, sizeof(w->timing), "%s: %llu bytes in "
			 "%.2f s: parent %s %.2f s, streamed "
			 "%.2f s, last close %.2f s (verify %.2f s, %zu of %zu "
			 "windows decoded before it)", w->name,
			 (unsigned long long)w->size, all, w->tm.kept ?
			 "index taken (kept from its write)" :
			 "read and indexed", w->tm.index,
			 all - w->tm.index - w->tm.finish, w->tm.finish,
			 w->tm.verify, w->tm.early, w->tm.wins);

	if (!w->base && n > 0 && (size_t)n < sizeof(w->timing))
		snprintf(w->timing + n, sizeof(w->timing) - (size_t)n,
			 "; encoder stages: matching %.2f s, windows "
			 "written %.2f s (lzma %.2f s, check and index "
			 "%.2f s), writes waited %.2f s", e->match, e->out,
			 e->lzma, e->sink, e->wait);
	return w->timing;
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
	wr_unreserve(w);	/* the room store_commit() needs */
	rc = publish(w, err, errlen);
	if (rc)
		goto fail;
	w->failed = -EALREADY;
	return 0;
fail:
	w->failed = rc;
	return rc;
}

