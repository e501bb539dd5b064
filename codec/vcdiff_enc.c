/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_enc: streaming VCDIFF encoder (see vcdiff_enc.h for the contract):
 * the API, and the pipeline that runs its stages (vcdiff_enc_int.h).
 *
 * Stages. Target bytes are copied into a slot of one window's size; a
 * full slot is matched (vcdiff_match.c: ops, cut into windows); each
 * matched window is written (vcdiff_ewin.c: sections, secondary
 * compression, write_out, on_op, on_window). opts.workers decides where:
 *   0  all on the caller's thread, inside vcdiff_enc_write: one slot.
 *   1  writing on a worker, while the caller copies and matches the next
 *      slot: two slots.
 *   2  matching on a second worker too: the caller only copies; three
 *      slots (one filling, one matching, one being written).
 * Each stage runs on one thread and takes its input in order (FIFO
 * queues), so the patch is the same byte for byte whatever workers is.
 * Measured on the 1 GiB bench pair through the mount: see fs/writer.c.
 *
 * Hand-over. A slot is written by the caller, then read by the match
 * stage, then by the output stage (its windows point into it); it is
 * handed from one to the next under e->mu and is free again once matched
 * and every window of it is written. A matched window (struct enc_win)
 * carries its instruction array; written, it goes to a free list, and
 * its array comes back as the next open window's, so nothing is
 * allocated per window once warm. The stages' own fields are never
 * shared. One mutex and one condition variable serve every queue: the
 * events are per window (8 MiB), so contention does not matter.
 *
 * Errors. The first error of any stage is kept (e->err); the stages
 * then skip their work but still drain their queues, so waiting never
 * hangs, and the caller's next vcdiff_enc_write or finish returns it.
 * vcdiff_enc_free abandons what is queued (the error becomes
 * -ECANCELED) and joins the workers.
 *
 * Memory, bounded whatever the sizes: the index (<= index_budget,
 * default 64 MiB; B grows instead for big sources), a window of target
 * per slot, the sections and instruction lists (about 2 x window), the
 * lzma encoder, the 1 MiB target table (plain patches only) and the
 * 4 MiB source cache: ~80 MiB peak RSS for an 860 MB encode without
 * workers (vcdiff_enc_mem_estimate()).
 *
 * Never prints.
 */
#include "codec/vcdiff_enc.h"
#include "codec/vcdiff_enc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double enc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_err(struct vcdiff_enc *e, int rc)
{
	int none = 0;

	if (rc < 0)
		atomic_compare_exchange_strong(&e->err, &none, rc);
}

/* Called with e->mu held: a slot matched and all written is free. */
static void slot_settle(struct vcdiff_enc *e, struct enc_slot *s)
{
	if (s->matched && s->pending == 0 && s->busy) {
		s->busy = 0;
		pthread_cond_broadcast(&e->cv);
	}
}

/* --- the stages --- */

int enc_window_close(struct vcdiff_enc *e, const uint8_t *tw, uint64_t end)
{
	struct enc_win *j;
	int rc;

	pthread_mutex_lock(&e->mu);
	j = e->free_wins;
	if (j)
		e->free_wins = j->next;
	pthread_mutex_unlock(&e->mu);
	if (!j && !(j = calloc(1, sizeof(*j))))
		return -ENOMEM;
	/* The open window's instructions go with it; the array of a window
	 * written earlier becomes the open one. */
	struct vcdiff_op *ins = j->ins;
	size_t cap = j->ins_cap;
	j->ins = e->ins;
	j->ins_cap = e->ins_cap;
	j->nins = e->nins;
	e->ins = ins;
	e->ins_cap = cap;
	e->nins = 0;
	j->slot = e->cur;
	j->tw = tw;
	j->tgt_off = e->win_abs;
	j->tgt_len = end - e->win_abs;
	j->have_copy = e->have_copy;
	j->seg_lo = e->seg_lo;
	j->seg_hi = e->seg_hi;
	e->have_copy = 0;
	e->win_abs = end;
	if (e->nthr == 0) {
		double t0 = enc_now();
		rc = enc_ewin_write(e, j);
		e->st.out += enc_now() - t0;
		j->nins = 0;
		pthread_mutex_lock(&e->mu);
		j->next = e->free_wins;
		e->free_wins = j;
		pthread_mutex_unlock(&e->mu);
		return rc;
	}
	pthread_mutex_lock(&e->mu);
	j->next = NULL;
	if (e->oq_tail)
		e->oq_tail->next = j;
	else
		e->oq_head = j;
	e->oq_tail = j;
	j->slot->pending++;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	/* A failed output stage stops the matching early. */
	return atomic_load(&e->err);
}

/* Matches slot s on this thread; its windows are written or queued. */
static void match_slot(struct vcdiff_enc *e, struct enc_slot *s)
{
	int rc = atomic_load(&e->err);

	if (!rc) {
		e->cur = s;
		e->buf = s->buf;
		e->buf_len = s->len;
		e->buf_abs = s->abs;
		e->win_abs = s->abs;
		double t0 = enc_now();
		rc = enc_match_buf(e);
		e->st.match += enc_now() - t0;
		set_err(e, rc);
	}
	pthread_mutex_lock(&e->mu);
	s->matched = 1;
	slot_settle(e, s);
	pthread_mutex_unlock(&e->mu);
}

static void *output_worker(void *arg)
{
	struct vcdiff_enc *e = arg;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct enc_win *j = e->oq_head;
		if (!j) {
			if (e->stop)
				break;
			pthread_cond_wait(&e->cv, &e->mu);
			continue;
		}
		e->oq_head = j->next;
		if (!e->oq_head)
			e->oq_tail = NULL;
		pthread_mutex_unlock(&e->mu);
		double t0 = enc_now();
		if (!atomic_load(&e->err))
			set_err(e, enc_ewin_write(e, j));
		e->st.out += enc_now() - t0;
		j->nins = 0;
		pthread_mutex_lock(&e->mu);
		j->slot->pending--;
		slot_settle(e, j->slot);
		j->next = e->free_wins;
		e->free_wins = j;
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

static void *match_worker(void *arg)
{
	struct vcdiff_enc *e = arg;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct enc_slot *s = e->mq_head;
		if (!s) {
			if (e->stop)
				break;
			pthread_cond_wait(&e->cv, &e->mu);
			continue;
		}
		e->mq_head = s->next;
		if (!e->mq_head)
			e->mq_tail = NULL;
		pthread_mutex_unlock(&e->mu);
		match_slot(e, s);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* --- the caller's side --- */

/* A free slot to fill, waiting for one if the stages hold them all. */
static struct enc_slot *slot_get(struct vcdiff_enc *e)
{
	double t0 = enc_now();

	pthread_mutex_lock(&e->mu);
	for (;;) {
		for (int i = 0; i < e->nslots; i++) {
			struct enc_slot *s = &e->slots[i];
			if (!s->busy) {
				s->busy = 1;
				s->matched = 0;
				s->pending = 0;
				s->len = 0;
				pthread_mutex_unlock(&e->mu);
				e->st.wait += enc_now() - t0;
				return s;
			}
		}
		pthread_cond_wait(&e->cv, &e->mu);
	}
}

/* Hands the slot being filled to the match stage. */
static void slot_submit(struct vcdiff_enc *e)
{
	struct enc_slot *s = e->fill;

	e->fill = NULL;
	s->abs = e->taken;
	e->taken += s->len;
	e->submitted = 1;
	if (e->nthr < 2) {
		match_slot(e, s);
		return;
	}
	pthread_mutex_lock(&e->mu);
	s->next = NULL;
	if (e->mq_tail)
		e->mq_tail->next = s;
	else
		e->mq_head = s;
	e->mq_tail = s;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

/* Waits until every slot is free: all submitted work is done. */
static void drain(struct vcdiff_enc *e)
{
	double t0 = enc_now();

	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < e->nslots; i++)
		while (e->slots[i].busy)
			pthread_cond_wait(&e->cv, &e->mu);
	pthread_mutex_unlock(&e->mu);
	e->st.wait += enc_now() - t0;
}

/* --- API --- */

static int start_workers(struct vcdiff_enc *e, int n)
{
	void *(*fn[2])(void *) = { output_worker, match_worker };
	static const char *const name[2] = { "vcdiff-out", "vcdiff-match" };

	for (int i = 0; i < n && i < 2; i++) {
		int rc = pthread_create(&e->thr[i], NULL, fn[i], e);
		if (rc)
			return -rc;
		pthread_setname_np(e->thr[i], name[i]);	/* for top, perf */
		e->nthr++;
	}
	return 0;
}

int vcdiff_enc_new(struct vcdiff_enc **out, const struct vcdiff_enc_opts *o,
		   uint64_t src_size, vcdiff_read_fn read_src, void *src_ctx,
		   vcdiff_write_fn write_out, void *out_ctx)
{
	struct vcdiff_enc *e;
	int rc;

	*out = NULL;
	if (!write_out || (src_size && !read_src))
		return -EINVAL;
	if (o && o->win_size > VCDIFF_WIN_MAX)
		return -EINVAL;
	if (o && o->secondary != VCDIFF_SEC_NONE &&
	    o->secondary != VCDIFF_SEC_LZMA_WINDOWED)
		return -EINVAL;
	if (o && (o->workers < 0 || o->workers > 2))
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	if (o)
		e->o = *o;
	e->src_size = src_size;
	e->read_src = read_src;
	e->src_ctx = src_ctx;
	e->write_out = write_out;
	e->out_ctx = out_ctx;
	e->win_cap = e->o.win_size ? e->o.win_size : DEFAULT_WIN;
	atomic_init(&e->err, 0);
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->nslots = 1 + e->o.workers;
	rc = -ENOMEM;
	/* Huge pages: a write into the mount makes a new encoder, and each
	 * 4 KiB page of fresh memory costs a fault (40% of a write's faults
	 * were its slots filling, 6 K a write, perf record -e page-faults). */
	for (int i = 0; i < e->nslots; i++)
		if (!(e->slots[i].buf = (uint8_t *)enc_table_alloc(
			      (e->win_cap + 7) / 8)))
			goto fail;
	double t0 = enc_now();
	if ((rc = enc_ewin_init(e)) < 0 || (rc = enc_match_init(e)) < 0)
		goto fail;
	e->st.index = enc_now() - t0;
	/* Workers only once the index is built: it is the match stage's,
	 * built on this thread. */
	if ((rc = start_workers(e, e->o.workers)) < 0)
		goto fail;
	*out = e;
	return 0;
fail:
	vcdiff_enc_free(e);
	return rc;
}

int vcdiff_enc_write(struct vcdiff_enc *e, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int rc = atomic_load(&e->err);

	if (rc)
		return rc;
	if (e->finished)
		return -EINVAL;
	while (len > 0) {
		if (!e->fill)
			e->fill = slot_get(e);
		struct enc_slot *s = e->fill;
		size_t n = e->win_cap - s->len;
		if (n > len)
			n = len;
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		p += n;
		len -= n;
		if (s->len == e->win_cap) {
			slot_submit(e);
			if ((rc = atomic_load(&e->err)))
				return rc;
		}
	}
	return 0;
}

int vcdiff_enc_finish(struct vcdiff_enc *e)
{
	int rc = atomic_load(&e->err);

	if (rc)
		return rc;
	if (e->finished)
		return 0;
	/* What is buffered; an empty target still gets one window. */
	if ((e->fill && e->fill->len > 0) || !e->submitted) {
		if (!e->fill)
			e->fill = slot_get(e);
		slot_submit(e);
	} else if (e->fill) {
		pthread_mutex_lock(&e->mu);
		e->fill->busy = 0;
		pthread_mutex_unlock(&e->mu);
		e->fill = NULL;
	}
	drain(e);
	rc = atomic_load(&e->err);
	if (!rc)
		e->finished = 1;
	return rc;
}

void vcdiff_enc_stats(const struct vcdiff_enc *e, struct vcdiff_enc_stats *st)
{
	*st = e->st;
}

uint64_t vcdiff_enc_patch_size(const struct vcdiff_enc *e)
{
	return e->patch_size;
}

uint64_t vcdiff_enc_target_size(const struct vcdiff_enc *e)
{
	return e->taken + (e->fill ? e->fill->len : 0);
}

void vcdiff_enc_free(struct vcdiff_enc *e)
{
	if (!e)
		return;
	if (e->nthr) {
		set_err(e, -ECANCELED);	/* the stages skip, then drain */
		pthread_mutex_lock(&e->mu);
		e->stop = 1;
		pthread_cond_broadcast(&e->cv);
		pthread_mutex_unlock(&e->mu);
		for (int i = 0; i < e->nthr; i++)
			pthread_join(e->thr[i], NULL);
	}
	enc_match_free(e);
	enc_ewin_free(e);
	for (int i = 0; i < ENC_SLOTS_MAX; i++)
		enc_table_free((uint64_t *)e->slots[i].buf,
			       (e->win_cap + 7) / 8);
	/* Windows still queued (abandoned) or free, with their arrays. */
	struct enc_win *lists[2] = { e->oq_head, e->free_wins };
	for (int k = 0; k < 2; k++) {
		while (lists[k]) {
			struct enc_win *j = lists[k];
			lists[k] = j->next;
			free(j->ins);
			free(j);
		}
	}
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

size_t vcdiff_enc_mem_estimate(const struct vcdiff_enc_opts *o,
			       uint64_t src_size)
{
	struct vcdiff_enc_opts d = { 0 };
	unsigned bshift;

	if (!o)
		o = &d;
	uint64_t win = o->win_size ? o->win_size : DEFAULT_WIN;
	uint64_t nb = enc_match_size(src_size, o->index_budget, &bshift);
	uint64_t m = nb * BUCKET_WAYS * sizeof(uint64_t) +
		     enc_match_sc_bytes(bshift);
	/* A window per slot; data, inst and addr sections and their
	 * compressed forms (about a window each at worst); instruction
	 * lists of the windows in flight (~a tenth of a window each). */
	m += (uint64_t)(1 + o->workers) * win + 2 * win +
	     (uint64_t)(2 + o->workers) * win / 10;
	if (o->secondary == VCDIFF_SEC_LZMA_WINDOWED) {
		/* liblzma's own figure for one encoder of the options. */
		lzma_options_lzma lz[3];
		if (!enc_lzma_options(o, (uint32_t)win, lz)) {
			lzma_filter f[2] = {
				{ .id = LZMA_FILTER_LZMA2, .options = &lz[0] },
				{ .id = LZMA_VLI_UNKNOWN, .options = NULL },
			};
			uint64_t u = lzma_raw_encoder_memusage(f);
			if (u != UINT64_MAX)
				m += u;
		}
	} else {
		m += ((uint64_t)sizeof(uint32_t) * TT_WAYS) << TT_BITS;
	}
	return (size_t)m;
}
