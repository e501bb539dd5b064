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
 *
 * Ingest speed and memory (issue 11; figures in README.md, Benchmarks):
 * a write() only copies into the encoder, which matches and writes
 * windows on two workers of its own (vcdiff_enc_opts.workers), so FUSE,
 * matching and lzma use both cores. Each window is checked against the
 * bytes written and indexed from the encoder's ops as it is written
 * (fs/wcheck.h), so the close decodes only the patch, not the parent
 * again. The parent's index is the one its own write kept, when it
 * can be (fs/wsidx.c): no pass over the parent before the first byte is
 * taken. The encoder's memory is lent out of the block cache's budget
 * while the writer lives (writer_mem()). The FUSE front end writes with
 * direct_io (no page cache copy of what we store anyway).
 *
 * Not here: ending a file and publishing it (fs/wcommit.c; what the two
 * share is fs/writer_int.h).
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

#include "codec/blob.h"
#include "codec/fdio.h"

#include <xxhash.h>

#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "codec/vcdiff_sidx.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/names.h"
#include "fs/safefile.h"
#include "fs/wcheck.h"

double wr_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int wr_tmpdir(const struct writer *w)
{
	return store_subdir(w->s, "tmp");
}

ssize_t wr_src_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct writer *w = ctx;
	return chain_read(w->c, w->parent, off, buf, len, w->src_st);
}

/* The blob's name: the temporary's path in the store, for messages. */
static int tmp_blob(struct writer *w, int fd, struct blob **b)
{
	char name[400];

	snprintf(name, sizeof(name), "%s/tmp/%s", STORE_META_DIR, w->tmp);
	return blob_from_dup(b, fd, name);
}

int wr_patch_open(struct writer *w, int fd, struct vcdiff_patch **p,
		  const char **why)
{
	struct blob *b = NULL;
	int rc = tmp_blob(w, fd, &b);

	if (rc)
		*why = "cannot open the encoded file";
	else
		rc = vcdiff_patch_open(p, b, why);
	blob_put(b);
	return rc;
}

int wr_zframe_open(struct writer *w, int fd, struct zframe **z,
		   const char **why)
{
	struct blob *b = NULL;
	int rc = tmp_blob(w, fd, &b);

	if (rc)
		*why = "cannot open the encoded file";
	else
		rc = zframe_open(z, b, why);
	blob_put(b);
	return rc;
}

static int out_write(void *ctx, const void *buf, size_t len)
{
	struct writer *w = ctx;
	int rc = fdio_write(w->tmpfd, buf, len);

	if (!rc && w->chk)
		wcheck_wrote(w->chk, buf, len);
	return rc;
}

/*
 * The encoder's options. Windowed lzma: xdelta3 -9 -B sizes, stock
 * xdelta3 still decodes it, and the chain reads it without a converted
 * copy (fs/sfile.c). Every window is checked and indexed as it is
 * written (fs/wcheck.h). Two workers: write() only copies, matching and
 * writing windows (lzma, the check) run on the other core; see the
 * figures in README.md, Benchmarks.
 */
static void enc_opts(struct vcdiff_enc_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->secondary = VCDIFF_SEC_LZMA_WINDOWED;
	o->workers = 2;
}

/*
 * What a writer holds beyond the cache while it encodes: the encoder's
 * estimate (index, window buffers, sections, lzma), the check's scratch
 * and the head and tail buffers, less the WRITER_SPARE the process may
 * use over its cache budget. The rest is lent out of the cache budget
 * for the writer's life, so peak RSS stays at about the budget plus
 * WRITER_SPARE plus the daemon's own: measured 1 GiB writes peaked at
 * 378 MiB before (256 MiB budget), see README.md, Benchmarks.
 */
#define WRITER_SPARE ((size_t)32 << 20)

static size_t writer_mem(const struct writer *w)
{
	struct vcdiff_enc_opts o;
	size_t m;

	enc_opts(&o);
	m = (w->base ? 0 : vcdiff_enc_mem_estimate(&o, w->parent_size)) +
	    ((size_t)1 << 20) + WRITER_HEAD + 2 * TAIL + wr_sidx_mem(w);
	return m > WRITER_SPARE ? m - WRITER_SPARE : 0;
}

/* A fresh temporary output and sink. */
int wr_sink_open(struct writer *w)
{
	int rc;

	if (w->tmpfd >= 0) {
		close(w->tmpfd);
		unlinkat(wr_tmpdir(w), w->tmp, 0);
	}
	w->tmpfd = safefile_create(wr_tmpdir(w), w->tmp, 0600, NULL);
	if (w->tmpfd < 0)
		return w->tmpfd;
	wr_sidx_start(w);	/* the sink starts from byte 0 again */
	if (w->base) {
		struct zframe_writer_opts o = { 0 };
		rc = zframe_writer_new(&w->zw, w->tmpfd, &o);
	} else {
		struct vcdiff_enc_opts o;
		enc_opts(&o);
		o.on_window = wcheck_window;
		wcheck_free(w->chk);
		w->chk = NULL;
		rc = wcheck_new(&w->chk, w->c, w->id, w->parent, w->tmpfd,
				 w->digest);
		o.win_ctx = w->chk;
		o.sidx = w->sidx_src;
		if (!rc)
			rc = vcdiff_enc_new(&w->enc, &o, w->parent_size,
					    wr_src_read, w, out_write, w);
	}
	return rc;
}

int wr_sink_write(struct writer *w, const void *buf, size_t len)
{
	int rc = w->base ? zframe_writer_write(w->zw, buf, len) :
			   vcdiff_enc_write(w->enc, buf, len);

	/* On this thread, while the encoder's workers match and compress:
	 * it waited for them most of the time (fs/wsidx.c). */
	if (!rc)
		wr_sidx_feed(w, buf, len);
	return rc;
}

static int sink_closed(const struct writer *w)
{
	return !w->enc && !w->zw;
}

/* Ends the sink's output; a no-op once it is closed (tmp then holds the
 * finished output already). */
int wr_sink_finish(struct writer *w)
{
	if (sink_closed(w))
		return 0;
	if (w->tail_len) {
		int rc = wr_sink_write(w, w->tail, w->tail_len);
		w->tail_len = 0;
		if (rc)
			return rc;
	}
	int rc = w->base ? zframe_writer_finish(w->zw) :
			   vcdiff_enc_finish(w->enc);
	if (w->enc)
		vcdiff_enc_stats(w->enc, &w->tm.enc);
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
		rc = w->tail_len ? wr_sink_write(w, w->tail, w->tail_len) : 0;
		if (!rc)
			rc = wr_sink_write(w, buf, len - TAIL);
		if (rc)
			return rc;
		memcpy(w->tail, buf + len - TAIL, TAIL);
		w->tail_len = TAIL;
		return 0;
	}
	while (len) {
		if (w->tail_len == 2 * TAIL) {
			rc = wr_sink_write(w, w->tail, TAIL);
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
		rc = wr_zframe_open(w, w->tmpfd, &z, &why);
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
		rc = wr_patch_open(w, w->tmpfd, &p, &why);
		if (!rc)
			rc = vcdiff_dec_new(&d);
		buf = malloc(VCDIFF_WIN_MAX);
		if (!rc && !buf)
			rc = -ENOMEM;
		for (size_t i = 0; !rc && i < vcdiff_patch_nwin(p); i++) {
			const struct vcdiff_win *wi = vcdiff_patch_win(p, i);
			ssize_t r = vcdiff_dec_window(d, p, i, wr_src_read, w, NULL,
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
int wr_to_spool(struct writer *w)
{
	int rc;

	snprintf(w->spool, sizeof(w->spool), "%s.spool", w->tmp);
	w->spoolfd = safefile_create(wr_tmpdir(w), w->spool, 0600, NULL);
	if (w->spoolfd < 0)
		return w->spoolfd;
	rc = wr_sink_finish(w);
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
	w->tm.start = wr_now();
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
	if (!rc) {
		chain_stream_reread(w->src_st);
		w->lent = writer_mem(w);
		chain_cache_lend(c, w->lent);
	}
	if (!rc)
		wr_sidx_take(w);
	w->tm.kept = w->sidx_src != NULL;
	if (!rc)
		rc = wr_sink_open(w);	/* the encoder indexes the parent,
					 * unless its index was kept */
	w->tm.index = wr_now() - w->tm.start;
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
		rc = wr_to_spool(w);
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
		rc = wr_to_spool(w);
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

void writer_free(struct writer *w)
{
	if (!w)
		return;
	zframe_writer_free(w->zw);
	vcdiff_enc_free(w->enc);
	if (w->tmpfd >= 0) {
		close(w->tmpfd);
		if (w->tmp[0])
			unlinkat(wr_tmpdir(w), w->tmp, 0);
	}
	if (w->spoolfd >= 0) {
		close(w->spoolfd);
		unlinkat(wr_tmpdir(w), w->spool, 0);
	}
	wr_unreserve(w);
	wcheck_free(w->chk);
	/* After the encoder, which borrowed sidx_src. */
	vcdiff_sidx_free(w->sidx_src);
	vcdiff_sidx_free(w->sidx_new);
	if (w->lent)
		chain_cache_return(w->c, w->lent);
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
