/* SPDX-License-Identifier: MIT */
/*
 * zframe_write: writing seekable zstd files (see zframe.h for the API and
 * zframe_int.h for the design): zframe_writer cuts a stream into frames
 * compressed on worker threads and appends the seek table;
 * zframe_transcode() turns any zstd file into one.
 *
 * Not here: the index and reading frames (zframe.c). Never prints, logs
 * or exits.
 */
#include "codec/zframe.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
/* For ZSTD_WINDOWLOG_MAX (transcode): in the static section of zstd.h. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "codec/blob.h"
#include "codec/fdio.h"

#include "codec/zframe_int.h"

/* ------------------------------------------------------------------ */
/* small helpers */

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* ------------------------------------------------------------------ */
/* writing */

enum { SLOT_FREE, SLOT_QUEUED, SLOT_DONE };

struct slot {
	uint8_t *raw;
	uint8_t *comp;
	size_t raw_len;
	size_t comp_len;
	int err;
	int state;			/* protected by w->lock */
};

/*
 * Frames are numbered in input order; frame s lives in slot s % nslots.
 * The caller fills slots and writes them out in number order; workers
 * take queued slots in number order. A slot is refilled only after its
 * previous frame was written, which bounds memory to nslots frames.
 */
struct zframe_writer {
	int fd;				/* borrowed */
	uint32_t frame_size;
	int level;
	int nthreads, nstarted;
	size_t nslots;
	struct slot *slots;
	ZSTD_CCtx **cctx;		/* one per worker */
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t work_cv;		/* workers wait for queued frames */
	pthread_cond_t done_cv;		/* the caller waits for a frame */
	uint64_t submitted;		/* protected by lock */
	uint64_t taken;			/* protected by lock */
	int stop;			/* protected by lock */
	/* The caller's thread only: */
	uint64_t written;
	size_t fill;			/* bytes in slot submitted % nslots */
	uint8_t *table;			/* seek table entries, LE, 12 each */
	size_t table_len, table_cap;
	int err;			/* sticky: the stream is broken */
	int finished;
};

struct worker_arg {
	struct zframe_writer *w;
	ZSTD_CCtx *cctx;
};

static int zstd_errno(size_t r)
{
	return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ?
		-ENOMEM : -EIO;
}

static void *worker(void *arg)
{
	struct zframe_writer *w = arg;
	ZSTD_CCtx *cctx;
	size_t me;

	pthread_mutex_lock(&w->lock);
	me = (size_t)w->nstarted++;
	cctx = w->cctx[me];
	for (;;) {
		struct slot *s;
		size_t r;

		while (!w->stop && w->taken == w->submitted)
			pthread_cond_wait(&w->work_cv, &w->lock);
		if (w->stop)
			break;
		s = &w->slots[w->taken % w->nslots];
		w->taken++;
		pthread_mutex_unlock(&w->lock);

		r = ZSTD_compress2(cctx, s->comp,
				   ZSTD_compressBound(w->frame_size),
				   s->raw, s->raw_len);
		pthread_mutex_lock(&w->lock);
		if (ZSTD_isError(r)) {
			s->err = zstd_errno(r);
		} else {
			s->err = 0;
			s->comp_len = r;
		}
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&w->done_cv);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void stop_workers(struct zframe_writer *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->nthreads; i++)
		if (w->threads[i])
			pthread_join(w->threads[i], NULL);
}

void zframe_writer_free(struct zframe_writer *w)
{
	if (!w)
		return;
	if (w->threads) {
		stop_workers(w);
		free(w->threads);
	}
	if (w->cctx) {
		for (int i = 0; i < w->nthreads; i++)
			ZSTD_freeCCtx(w->cctx[i]);
		free(w->cctx);
	}
	if (w->slots) {
		for (size_t i = 0; i < w->nslots; i++) {
			free(w->slots[i].raw);
			free(w->slots[i].comp);
		}
		free(w->slots);
	}
	free(w->table);
	pthread_cond_destroy(&w->done_cv);
	pthread_cond_destroy(&w->work_cv);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

int zframe_writer_new(struct zframe_writer **out, int out_fd,
		      const struct zframe_writer_opts *o)
{
	struct zframe_writer_opts d = { 0 };
	struct zframe_writer *w;
	int rc;

	*out = NULL;
	if (!o)
		o = &d;
	if (o->frame_size > ZFRAME_MAX_FRAME || o->nthreads < 0 ||
	    o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel())
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work_cv, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	w->fd = out_fd;
	w->frame_size = o->frame_size ? o->frame_size : ZFRAME_DEFAULT_FRAME;
	w->level = o->level ? o->level : 3;
	w->nthreads = o->nthreads;
	if (w->nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		w->nthreads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
	}
	/* Two frames per worker keep every worker busy while the caller
	 * fills one slot and writes another. */
	w->nslots = (size_t)w->nthreads * 2 + 1;
	w->slots = calloc(w->nslots, sizeof(*w->slots));
	w->cctx = calloc((size_t)w->nthreads, sizeof(*w->cctx));
	w->threads = calloc((size_t)w->nthreads, sizeof(*w->threads));
	if (!w->slots || !w->cctx || !w->threads) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->nslots; i++) {
		w->slots[i].raw = malloc(w->frame_size);
		w->slots[i].comp = malloc(ZSTD_compressBound(w->frame_size));
		if (!w->slots[i].raw || !w->slots[i].comp) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (int i = 0; i < w->nthreads; i++) {
		size_t r1, r2;

		w->cctx[i] = ZSTD_createCCtx();
		if (!w->cctx[i]) {
			rc = -ENOMEM;
			goto fail;
		}
		r1 = ZSTD_CCtx_setParameter(w->cctx[i], ZSTD_c_compressionLevel,
					    w->level);
		r2 = ZSTD_CCtx_setParameter(w->cctx[i], ZSTD_c_checksumFlag, 1);
		if (ZSTD_isError(r1) || ZSTD_isError(r2)) {
			rc = -EINVAL;
			goto fail;
		}
	}
	for (int i = 0; i < w->nthreads; i++) {
		rc = pthread_create(&w->threads[i], NULL, worker, w);
		if (rc) {
			w->threads[i] = 0;
			rc = -rc;
			goto fail;
		}
	}
	*out = w;
	return 0;
fail:
	zframe_writer_free(w);
	return rc;
}

/* Waits for the oldest unwritten frame, writes it and its table entry. */
static int write_oldest(struct zframe_writer *w)
{
	struct slot *s = &w->slots[w->written % w->nslots];
	uint8_t *e;
	int rc;

	pthread_mutex_lock(&w->lock);
	while (s->state != SLOT_DONE)
		pthread_cond_wait(&w->done_cv, &w->lock);
	s->state = SLOT_FREE;
	pthread_mutex_unlock(&w->lock);
	if (s->err)
		return s->err;
	/* Number_Of_Frames is a u32 and the table's Frame_Size too. */
	if (w->written >= (UINT32_MAX - SEEK_FOOTER) / SEEK_ENTRY_MAX)
		return -EFBIG;
	rc = fdio_write(w->fd, s->comp, s->comp_len);
	if (rc)
		return rc;
	if (w->table_len + SEEK_ENTRY_MAX > w->table_cap) {
		size_t cap = w->table_cap ? w->table_cap * 2 :
			     64 * SEEK_ENTRY_MAX;
		uint8_t *t = realloc(w->table, cap);
		if (!t)
			return -ENOMEM;
		w->table = t;
		w->table_cap = cap;
	}
	e = w->table + w->table_len;
	put_le32(e, (uint32_t)s->comp_len);
	put_le32(e + 4, (uint32_t)s->raw_len);
	/* The frame's content checksum is by definition the low 32 bits of
	 * XXH64 (seed 0) of its data: the seek table's checksum, for free. */
	memcpy(e + 8, s->comp + s->comp_len - 4, 4);
	w->table_len += SEEK_ENTRY_MAX;
	w->written++;
	return 0;
}

/* Hands the filled slot to the workers. */
static void submit(struct zframe_writer *w)
{
	struct slot *s = &w->slots[w->submitted % w->nslots];

	pthread_mutex_lock(&w->lock);
	s->raw_len = w->fill;
	s->state = SLOT_QUEUED;
	w->submitted++;
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->lock);
	w->fill = 0;
}

int zframe_writer_write(struct zframe_writer *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int rc;

	if (w->err)
		return w->err;
	if (w->finished)
		return -EINVAL;
	while (len > 0) {
		size_t n;

		/* Starting a frame: its slot's previous frame must be out. */
		while (w->fill == 0 && w->written + w->nslots <= w->submitted) {
			rc = write_oldest(w);
			if (rc)
				goto fail;
		}
		n = w->frame_size - w->fill;
		if (n > len)
			n = len;
		memcpy(w->slots[w->submitted % w->nslots].raw + w->fill, p, n);
		w->fill += n;
		p += n;
		len -= n;
		if (w->fill == w->frame_size)
			submit(w);
	}
	return 0;
fail:
	w->err = rc;
	return rc;
}

int zframe_writer_finish(struct zframe_writer *w)
{
	uint8_t hdr[SKIP_HDR], foot[SEEK_FOOTER];
	uint32_t n;
	int rc;

	if (w->err)
		return w->err;
	if (w->finished)
		return -EINVAL;
	if (w->fill > 0)
		submit(w);
	while (w->written < w->submitted) {
		rc = write_oldest(w);
		if (rc)
			goto fail;
	}
	n = (uint32_t)(w->table_len / SEEK_ENTRY_MAX);
	put_le32(hdr, SEEK_SKIP_MAGIC);
	put_le32(hdr + 4, (uint32_t)(w->table_len + SEEK_FOOTER));
	put_le32(foot, n);
	foot[4] = SEEK_CKSUM_FLAG;
	put_le32(foot + 5, SEEK_MAGIC);
	rc = fdio_write(w->fd, hdr, sizeof(hdr));
	if (!rc && w->table_len)
		rc = fdio_write(w->fd, w->table, w->table_len);
	if (!rc)
		rc = fdio_write(w->fd, foot, sizeof(foot));
	if (rc)
		goto fail;
	w->finished = 1;
	return 0;
fail:
	w->err = rc;
	return rc;
}

/* ------------------------------------------------------------------ */
/* transcoding */

int zframe_transcode(struct blob *src, int out_fd,
		     const struct zframe_writer_opts *o,
		     void (*progress)(void *ctx, uint64_t done, uint64_t total),
		     void *ctx, const char **why)
{
	const char *reason = "";
	struct zframe_writer *w = NULL;
	ZSTD_DCtx *dctx = NULL;
	size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
	uint8_t *in = NULL, *outb = NULL;
	uint64_t total = blob_size(src), off = 0;
	size_t last = 0;
	int rc;

	dctx = ZSTD_createDCtx();
	in = malloc(in_cap);
	outb = malloc(out_cap);
	if (!dctx || !in || !outb) {
		rc = -ENOMEM;
		goto out;
	}
	/* Bases written with `zstd --long=31` need windows up to 2 GiB;
	 * the default limit (128 MiB) would refuse them. */
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZSTD_WINDOWLOG_MAX);
	if (!o || !o->raw) {
		rc = zframe_writer_new(&w, out_fd, o);
		if (rc)
			goto out;
	}
	while (off < total) {
		size_t want = total - off < in_cap ? (size_t)(total - off) : in_cap;
		ssize_t got = blob_pread(src, in, want, off);
		ZSTD_inBuffer ib = { in, 0, 0 };
		ZSTD_outBuffer ob;

		if (got < 0) {
			reason = "read error";
			rc = (int)got;
			goto out;
		}
		if (got == 0)
			break;		/* shrank: reported as truncated */
		if (off == 0 && (got < 4 ||
		    (get_le32(in) != ZSTD_MAGICNUMBER &&
		     !is_skippable(get_le32(in))))) {
			reason = "not a zstd file";
			rc = -EMEDIUMTYPE;
			goto out;
		}
		ib.size = (size_t)got;
		/* Keep going while input remains or zstd filled the whole
		 * output buffer (it may hold more). */
		do {
			ob = (ZSTD_outBuffer){ outb, out_cap, 0 };
			last = ZSTD_decompressStream(dctx, &ob, &ib);
			if (ZSTD_isError(last)) {
				if (ZSTD_getErrorCode(last) ==
				    ZSTD_error_memory_allocation) {
					rc = -ENOMEM;
				} else {
					reason = ZSTD_getErrorCode(last) ==
						ZSTD_error_checksum_wrong ?
						"zstd content checksum mismatch" :
						"corrupt zstd stream";
					rc = -EBADMSG;
				}
				goto out;
			}
			if (ob.pos > 0) {
				rc = w ? zframe_writer_write(w, outb, ob.pos) :
					 fdio_write(out_fd, outb, ob.pos);
				if (rc) {
					reason = "write error";
					goto out;
				}
			}
		} while (ib.pos < ib.size || ob.pos == ob.size);
		off += (uint64_t)got;
		if (progress)
			progress(ctx, off, total);
	}
	if (off == 0) {
		reason = "not a zstd file";
		rc = -EMEDIUMTYPE;
		goto out;
	}
	if (last != 0) {
		reason = "truncated zstd stream";
		rc = -EBADMSG;
		goto out;
	}
	rc = w ? zframe_writer_finish(w) : 0;
	if (rc)
		reason = "write error";
out:
	zframe_writer_free(w);
	ZSTD_freeDCtx(dctx);
	free(in);
	free(outb);
	if (rc && why)
		*why = reason;
	return rc;
}

int zframe_compress_fd(int src_fd, int out_fd,
		       const struct zframe_writer_opts *o)
{
	struct zframe_writer *w = NULL;
	uint8_t *buf = malloc((size_t)1 << 20);
	int rc = buf ? zframe_writer_new(&w, out_fd, o) : -ENOMEM;

	for (uint64_t off = 0; !rc;) {
		ssize_t n = fdio_pread(src_fd, buf, (size_t)1 << 20, off);
		if (n <= 0) {
			rc = (int)n;
			break;
		}
		rc = zframe_writer_write(w, buf, (size_t)n);
		off += (uint64_t)n;
	}
	if (!rc)
		rc = zframe_writer_finish(w);
	zframe_writer_free(w);
	free(buf);
	return rc;
}
