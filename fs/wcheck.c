/* SPDX-License-Identifier: MIT */
/*
 * wcheck: checking a patch as the writer encodes it, and indexing it from
 * the encoder's ops (see wcheck.h for what the two halves prove). Ops are
 * compared through a hash of their fields (struct opn), never of the
 * struct vcdiff_op itself: a decoder leaves fields that do not apply
 * unset.
 */
#include "fs/wcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"

#define SCRATCH ((size_t)1 << 20)

/* One window as the encoder wrote it. */
struct wrec {
	uint64_t tgt_off, patch_off;
	uint32_t tgt_len, patch_len, adler, data_len;
	uint8_t del_ind;
	XXH128_hash_t h_ops, h_data;
};

struct wcheck {
	struct chain *c;
	struct chain_layer *P;
	int fd;			/* a dup of the caller's patch file */
	XXH3_state_t *digest;	/* the caller's: the bytes written */
	XXH3_state_t *file;	/* the bytes of the patch written */
	XXH3_state_t *ops;	/* scratch for ops_hash */
	uint64_t file_len;
	struct chain_ibuild *ib;
	uint64_t next_tgt;
	uint8_t *scratch;	/* SCRATCH bytes */
	int bad;		/* the first problem, -errno; sticky */
	const char *why;

	/* The windows written, and the early decode of them (see
	 * early_worker): mu guards rec, nrec, cap and the early_ fields;
	 * the output thread appends, the early worker reads. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct wrec *rec;
	size_t nrec, cap;
	pthread_t early;
	int early_on;
	atomic_int early_stop;
	size_t early_done;	/* windows [0, early_done) decoded and equal */
	int early_bad;		/* as bad, for the early decode */
	const char *early_why;
};

/* The fields of an op that mean something, in a fixed layout. */
struct opn {
	uint64_t tgt_off, addr;
	uint32_t len;
	uint8_t kind, byte, pad[2];
};

static XXH128_hash_t ops_hash(XXH3_state_t *st, const struct vcdiff_op *ops,
			      size_t n)
{
	struct opn b[256];
	size_t k = 0;

	XXH3_128bits_reset(st);
	for (size_t i = 0; i < n; i++) {
		const struct vcdiff_op *op = &ops[i];
		int run = op->kind == VCDIFF_OP_RUN;
		b[k] = (struct opn){ .tgt_off = op->tgt_off,
				     .addr = run ? 0 : op->addr, .len = op->len,
				     .kind = op->kind, .byte = run ? op->byte : 0 };
		if (++k == sizeof(b) / sizeof(b[0])) {
			XXH3_128bits_update(st, b, sizeof(b));
			k = 0;
		}
	}
	XXH3_128bits_update(st, b, k * sizeof(b[0]));
	return XXH3_128bits_digest(st);
}

static void *early_worker(void *arg);

int wcheck_new(struct wcheck **out, struct chain *c, uint32_t id,
	       struct chain_layer *P, int fd, XXH3_state_t *digest)
{
	struct wcheck *k = calloc(1, sizeof(*k));
	int rc = -ENOMEM;

	if (!k)
		return -ENOMEM;
	k->c = c;
	k->P = P;
	k->digest = digest;
	k->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_init(&k->mu, NULL);
	pthread_cond_init(&k->cv, NULL);
	k->file = XXH3_createState();
	k->ops = XXH3_createState();
	k->scratch = malloc(SCRATCH);
	if (k->fd < 0)
		rc = -errno;
	else if (k->file && k->ops && k->scratch)
		rc = chain_ibuild_new(&k->ib, c, id, P);
	if (rc) {
		wcheck_free(k);
		return rc;
	}
	XXH3_64bits_reset(k->file);
	XXH3_128bits_reset(k->digest);
	/* Without the thread, the close decodes every window itself. */
	k->early_on = pthread_create(&k->early, NULL, early_worker, k) == 0;
	*out = k;
	return 0;
}

/* Stops the early decode and waits for it: at close, or to free. */
static void early_stop(struct wcheck *k)
{
	if (!k->early_on)
		return;
	pthread_mutex_lock(&k->mu);
	atomic_store(&k->early_stop, 1);
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	/* It may sit in the middle of a window at idle priority while the
	 * close's own decode keeps both cores busy: let it finish that one
	 * as a normal thread (best effort; a thread may always go back to
	 * the policy it was started with where RLIMIT_NICE allows). */
	struct sched_param sp = { .sched_priority = 0 };
	(void)pthread_setschedparam(k->early, SCHED_OTHER, &sp);
	pthread_join(k->early, NULL);
	k->early_on = 0;
}

void wcheck_free(struct wcheck *k)
{
	if (!k)
		return;
	early_stop(k);
	chain_ibuild_free(k->ib);
	XXH3_freeState(k->file);
	XXH3_freeState(k->ops);
	free(k->rec);
	free(k->scratch);
	if (k->fd >= 0)
		close(k->fd);
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

void wcheck_wrote(struct wcheck *k, const void *buf, size_t len)
{
	XXH3_64bits_update(k->file, buf, len);
	k->file_len += len;
}

/* Whether len bytes at t all are b. */
static int all_byte(const uint8_t *t, size_t len, uint8_t b)
{
	uint8_t blk[256];

	memset(blk, b, sizeof(blk));
	for (size_t i = 0; i < len; i += sizeof(blk)) {
		size_t n = len - i < sizeof(blk) ? len - i : sizeof(blk);
		if (memcmp(t + i, blk, n))
			return 0;
	}
	return 1;
}

/* Whether the parent's bytes [off, off+len) are t's; -errno if they
 * cannot be read. */
static int parent_is(struct wcheck *k, uint64_t off, const uint8_t *t,
		     size_t len)
{
	while (len) {
		size_t n = len < SCRATCH ? len : SCRATCH;
		ssize_t r = chain_read(k->c, k->P, off, k->scratch, n, NULL);
		if (r < 0)
			return (int)r;
		if ((size_t)r != n || memcmp(k->scratch, t, n))
			return 0;
		off += n;
		t += n;
		len -= n;
	}
	return 1;
}

/* Every op of w rebuilds the bytes written (see wcheck.h). NULL, or what
 * is wrong (*rc: -EBADMSG or -errno). */
static const char *check_ops(struct wcheck *k, const struct vcdiff_enc_win *w,
			     int *rc)
{
	const uint8_t *t = w->tgt;
	uint64_t pos = w->tgt_off, end = w->tgt_off + w->tgt_len;

	*rc = -EBADMSG;
	if (w->tgt_off != k->next_tgt)
		return "a window is out of place";
	for (size_t i = 0; i < w->nops; i++) {
		const struct vcdiff_op *op = &w->ops[i];
		size_t at = (size_t)(pos - w->tgt_off);
		if (op->tgt_off != pos || op->len == 0 || op->len > end - pos)
			return "the instructions do not tile the window";
		switch (op->kind) {
		case VCDIFF_OP_ADD: {
			uint64_t a = op->addr - w->add_base;
			if (op->addr < w->add_base || a > w->data_len ||
			    op->len > w->data_len - a)
				return "an ADD reads beyond its data section";
			if (memcmp(w->data + a, t + at, op->len))
				return "ADD bytes differ from the bytes written";
			break;
		}
		case VCDIFF_OP_RUN:
			if (!all_byte(t + at, op->len, op->byte))
				return "a RUN differs from the bytes written";
			break;
		case VCDIFF_OP_COPY_SRC: {
			int same = parent_is(k, op->addr, t + at, op->len);
			if (same < 0) {
				*rc = same;
				return "cannot read the parent";
			}
			if (!same)
				return "a COPY from the parent differs from "
				       "the bytes written";
			break;
		}
		case VCDIFF_OP_COPY_TGT:
			/* Byte by byte, a copy that overlaps itself repeats:
			 * equal to the bytes written iff t[pos+j] ==
			 * t[addr+j] for every j. */
			if (op->addr < w->tgt_off || op->addr >= pos ||
			    memcmp(t + at, t + (op->addr - w->tgt_off),
				   op->len))
				return "a COPY within the window differs from "
				       "the bytes written";
			break;
		default:
			return "an unknown instruction";
		}
		pos += op->len;
	}
	if (pos != end)
		return "the instructions do not cover the window";
	if (vcdiff_adler32(1, t, w->tgt_len) != w->adler32)
		return "a window's adler32 is not that of the bytes written";
	*rc = 0;
	return NULL;
}

int wcheck_window(void *ctx, const struct vcdiff_enc_win *w)
{
	struct wcheck *k = ctx;
	const char *why;
	int rc;

	if (k->bad)
		return 0;
	why = check_ops(k, w, &rc);
	if (!why && (rc = chain_ibuild_window(k->ib, w)))
		why = rc == -EBADMSG ? "its instructions do not index" :
		      "indexing the new layer";
	if (why) {
		k->bad = rc;
		k->why = why;
		return 0;
	}
	struct wrec r = {
		.tgt_off = w->tgt_off, .patch_off = w->patch_off,
		.tgt_len = w->tgt_len, .patch_len = w->patch_len,
		.adler = w->adler32, .data_len = w->data_len,
		.del_ind = w->del_ind,
		.h_ops = ops_hash(k->ops, w->ops, w->nops),
		.h_data = XXH3_128bits(w->data, w->data_len),
	};
	pthread_mutex_lock(&k->mu);
	if (k->nrec == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 256;
		struct wrec *nr = realloc(k->rec, cap * sizeof(*nr));
		if (!nr) {
			pthread_mutex_unlock(&k->mu);
			return -ENOMEM;
		}
		k->rec = nr;
		k->cap = cap;
	}
	k->rec[k->nrec++] = r;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	XXH3_128bits_update(k->digest, w->tgt, w->tgt_len);
	k->next_tgt = w->tgt_off + w->tgt_len;
	return 0;
}

/* --- at close --- */

/* The file as read back is what the encoder wrote. */
static int file_is_written(struct wcheck *k, int fd, const char **why)
{
	XXH3_state_t *st = XXH3_createState();
	struct stat sb;
	int rc = st ? 0 : -ENOMEM;

	if (!rc && fstat(fd, &sb) < 0)
		rc = -errno;
	if (!rc && (uint64_t)sb.st_size != k->file_len) {
		*why = "the patch file's size is not what was written";
		rc = -EBADMSG;
	}
	if (!rc)
		XXH3_64bits_reset(st);
	for (uint64_t off = 0; !rc && off < k->file_len;) {
		size_t n = k->file_len - off < SCRATCH ?
			   (size_t)(k->file_len - off) : SCRATCH;
		ssize_t r = fdio_pread(fd, k->scratch, n, off);
		if (r < 0) {
			rc = (int)r;
			*why = "reading the patch back";
		} else if ((size_t)r != n) {
			rc = -EBADMSG;
			*why = "the patch file shrank";
		} else {
			XXH3_64bits_update(st, k->scratch, n);
			off += n;
		}
	}
	if (!rc && XXH3_64bits_digest(st) != XXH3_64bits_digest(k->file)) {
		*why = "the patch file is not what was written";
		rc = -EBADMSG;
	}
	XXH3_freeState(st);
	return rc;
}

struct dec_job {
	struct wcheck *k;
	const struct vcdiff_patch *p;
	atomic_size_t next;
	atomic_int rc;
	const char *why;	/* set by the one that sets rc */
};

static int header_is(const struct wrec *r, const struct vcdiff_win *wi)
{
	return wi->hdr_off == r->patch_off && wi->tgt_off == r->tgt_off &&
	       wi->tgt_len == r->tgt_len && wi->del_ind == r->del_ind &&
	       (wi->win_ind & VCDIFF_WIN_ADLER32) && wi->adler32 == r->adler;
}

/* Window i of the file, decoded, is what was recorded. */
static const char *decoded_is(const struct wrec *r,
			      const struct vcdiff_patch *p, size_t i,
			      struct vcdiff_dec *d, XXH3_state_t *st, int *rc)
{
	const struct vcdiff_win *wi = vcdiff_patch_win(p, i);
	const struct vcdiff_op *ops;
	const uint8_t *data;
	uint64_t base;
	size_t n, dlen;

	*rc = -EBADMSG;
	if (!header_is(r, wi))
		return "a window header is not as written";
	if ((*rc = vcdiff_dec_ops(d, p, i, &ops, &n)))
		return vcdiff_dec_reason(d);
	*rc = -EBADMSG;
	XXH128_hash_t h = ops_hash(st, ops, n);
	if (!XXH128_isEqual(h, r->h_ops))
		return "a window's instructions are not as written";
	data = vcdiff_dec_data(d, &dlen, &base);
	if (dlen != r->data_len ||
	    !XXH128_isEqual(XXH3_128bits(data, dlen), r->h_data))
		return "a window's data section is not as written";
	*rc = 0;
	return NULL;
}

static void *dec_worker(void *arg)
{
	struct dec_job *j = arg;
	struct vcdiff_dec *d = NULL;
	XXH3_state_t *st = XXH3_createState();
	size_t n = vcdiff_patch_nwin(j->p), i;
	int rc = st ? vcdiff_dec_new(&d) : -ENOMEM;
	const char *why = "decoding the patch";

	while (!rc && !atomic_load(&j->rc) &&
	       (i = atomic_fetch_add(&j->next, 1)) < n)
		why = decoded_is(&j->k->rec[i], j->p, i, d, st, &rc);
	if (rc) {
		int none = 0;
		if (atomic_compare_exchange_strong(&j->rc, &none, rc))
			j->why = why;
	}
	vcdiff_dec_free(d);
	XXH3_freeState(st);
	return NULL;
}

/*
 * The early decode: the windows already in the file are decoded, as the
 * close would, while the rest is still being encoded. The stream leaves
 * one core idle about a fifth of the time (the workers wait on each
 * other), so the thread runs at SCHED_IDLE: it takes that time and never
 * the workers'. What it has not done when the close comes, the close
 * does. The file grows while this reads it, so each round opens the
 * prefix that ends with the last window recorded: a patch cut at a window
 * boundary is a valid patch (vcdiff_dec.h), and that prefix no longer
 * changes. The close then proves the whole file is the bytes written
 * (file_is_written), so a window decoded here was decoded from the bytes
 * the patch keeps.
 */
static void *early_worker(void *arg)
{
	struct wcheck *k = arg;
	struct sched_param sp = { .sched_priority = 0 };
	struct vcdiff_dec *d = NULL;
	XXH3_state_t *st = XXH3_createState();
	struct wrec *batch = NULL;
	size_t bcap = 0;
	int rc = st ? vcdiff_dec_new(&d) : -ENOMEM;
	const char *why = "decoding the patch";

	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	pthread_mutex_lock(&k->mu);
	while (!rc) {
		while (!atomic_load(&k->early_stop) &&
		       k->early_done == k->nrec)
			pthread_cond_wait(&k->cv, &k->mu);
		if (atomic_load(&k->early_stop))
			break;
		size_t from = k->early_done, to = k->nrec;
		if (to - from > bcap) {
			struct wrec *nb = realloc(batch, (to - from) *
						  sizeof(*nb));
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			batch = nb;
			bcap = to - from;
		}
		memcpy(batch, k->rec + from, (to - from) * sizeof(*batch));
		pthread_mutex_unlock(&k->mu);

		struct vcdiff_patch *p = NULL;
		struct blob *b = NULL;
		uint64_t end = batch[to - from - 1].patch_off +
			       batch[to - from - 1].patch_len;
		rc = blob_from_dup_prefix(&b, k->fd, end, "the new patch");
		if (!rc)
			rc = vcdiff_patch_open(&p, b, &why);
		blob_put(b);
		if (!rc && vcdiff_patch_nwin(p) != to) {
			why = "the patch has other windows than were written";
			rc = -EBADMSG;
		}
		size_t done = from;
		while (!rc && done < to && !atomic_load_explicit(
			       &k->early_stop, memory_order_relaxed)) {
			why = decoded_is(&batch[done - from], p, done, d, st,
					 &rc);
			done += !rc;
		}
		vcdiff_patch_free(p);
		pthread_mutex_lock(&k->mu);
		k->early_done = done;
	}
	/* A patch that differs is a finding; anything else (memory, a
	 * read) the close meets again if it is real, and says so. */
	if (rc == -EBADMSG) {
		k->early_bad = rc;
		k->early_why = why;
	}
	pthread_mutex_unlock(&k->mu);
	free(batch);
	vcdiff_dec_free(d);
	XXH3_freeState(st);
	return NULL;
}

int wcheck_finish(struct wcheck *k, int fd, uint64_t size, const char **why)
{
	struct vcdiff_patch *p = NULL;
	int rc;

	early_stop(k);
	if (k->bad || k->early_bad) {
		*why = k->bad ? k->why : k->early_why;
		return k->bad ? k->bad : k->early_bad;
	}
	if (k->next_tgt != size) {
		*why = "the patch does not build as many bytes as were written";
		return -EBADMSG;
	}
	rc = file_is_written(k, fd, why);
	if (!rc) {
		struct blob *b = NULL;
		rc = blob_from_dup(&b, fd, "the new patch");
		if (rc)
			*why = "cannot open the encoded file";
		else
			rc = vcdiff_patch_open(&p, b, why);
		blob_put(b);	/* the patch holds its own reference */
	}
	if (!rc && (vcdiff_patch_nwin(p) != k->nrec ||
		    vcdiff_patch_target_size(p) != size || k->nrec == 0 ||
		    k->rec[k->nrec - 1].patch_off +
		    k->rec[k->nrec - 1].patch_len != k->file_len)) {
		*why = "the patch has other windows than were written";
		rc = -EBADMSG;
	}
	/* The windows decoded early: their headers are still the file's. */
	for (size_t i = 0; !rc && i < k->early_done; i++) {
		if (!header_is(&k->rec[i], vcdiff_patch_win(p, i))) {
			*why = "a window header is not as written";
			rc = -EBADMSG;
		}
	}
	if (!rc) {
		/* Every other window decoded, on two threads: mostly lzma. */
		struct dec_job j = { .k = k, .p = p };
		pthread_t t;
		atomic_init(&j.next, k->early_done);
		atomic_init(&j.rc, 0);
		int two = pthread_create(&t, NULL, dec_worker, &j) == 0;
		dec_worker(&j);
		if (two)
			pthread_join(t, NULL);
		rc = atomic_load(&j.rc);
		if (rc)
			*why = j.why;
	}
	vcdiff_patch_free(p);
	return rc;
}

size_t wcheck_early(struct wcheck *k, size_t *of)
{
	pthread_mutex_lock(&k->mu);
	size_t n = k->early_done;
	if (of)
		*of = k->nrec;
	pthread_mutex_unlock(&k->mu);
	return n;
}

struct chain_ibuild *wcheck_index(struct wcheck *k)
{
	return k->ib;
}
