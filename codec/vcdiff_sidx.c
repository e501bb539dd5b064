/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_sidx: a source index built from bytes passing by (see
 * vcdiff_sidx.h). The table's layout and keys are vcdiff_match.c's (the
 * helpers are in vcdiff_enc_int.h), so that the encoder uses it as its
 * own.
 */
#include "codec/vcdiff_sidx.h"
#include "codec/vcdiff_enc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t tab_bytes(uint64_t nb)
{
	return nb * BUCKET_WAYS * sizeof(uint64_t);
}

/* The shape the encoder picks for size bytes (enc_match_size). */
static uint64_t shape(uint64_t size, size_t budget, unsigned *bshift)
{
	return enc_match_size(size, budget, bshift);
}

/* The largest table for budget: what an unknown size gets. */
static uint64_t max_nb(size_t budget)
{
	unsigned bs;

	return shape(UINT64_MAX >> 8, budget, &bs);
}

size_t vcdiff_sidx_mem(uint64_t guess, size_t budget)
{
	unsigned bs;
	uint64_t nb = guess ? shape(guess, budget, &bs) : max_nb(budget);

	/* The key list and the table are the same size: this is either
	 * (an ended index also holds its spare: vcdiff_sidx_held). */
	return (size_t)tab_bytes(nb) + sizeof(struct vcdiff_sidx);
}

int vcdiff_sidx_new(struct vcdiff_sidx **out, uint64_t guess, size_t budget,
		    struct vcdiff_sidx *from)
{
	struct vcdiff_sidx *x = calloc(1, sizeof(*x));

	*out = NULL;
	if (!x)
		return -ENOMEM;
	x->budget = budget;
	if (guess) {
		x->nb = shape(guess, budget, &x->bshift);
	} else {
		/* Unknown: the finest B under the largest table; B doubles
		 * as the bytes come (decimate()). */
		x->nb = max_nb(budget);
		x->bshift = MIN_BLOCK_SHIFT;
	}
	if (x->nb == 0)
		x->nb = 1;
	/* As many blocks as the table may hold (INDEX_LOAD per entry). */
	x->cap = INDEX_LOAD * x->nb * BUCKET_WAYS + 1;
	if (from && from->spare && from->spare_n >= x->cap) {
		/* Not zeroed: every slot build reads was fed first (keys
		 * of blocks 0 .. nblk - 1, decimate keeping them so). */
		x->keys = from->spare;
		x->keys_n = from->spare_n;
		from->spare = NULL;
		from->spare_n = 0;
	} else {
		x->keys = enc_table_alloc(x->cap);
		x->keys_n = x->cap;
	}
	if (!x->keys) {
		free(x);
		return -ENOMEM;
	}
	*out = x;
	return 0;
}

size_t vcdiff_sidx_held(const struct vcdiff_sidx *x)
{
	/* Once ended, the build thread moves the memory: the sum was
	 * taken before it started. */
	return x->ended ? x->held : sizeof(*x) + (size_t)x->keys_n *
	       sizeof(uint64_t);
}

void vcdiff_sidx_free(struct vcdiff_sidx *x)
{
	if (!x)
		return;
	vcdiff_sidx_ready(x);
	enc_table_free(x->keys, x->keys_n);
	enc_table_free(x->tab, x->tab_n);
	enc_table_free(x->reuse, x->reuse_n);
	enc_table_free(x->spare, x->spare_n);
	free(x);
}

/* B doubles: the keys of even blocks stay (renumbered), the others go,
 * which is what hashing at the new B would have given: nothing is lost.
 * The next key is at the next multiple of the new B. */
static void decimate(struct vcdiff_sidx *x)
{
	uint64_t n = x->cap;

	for (uint64_t j = 0; 2 * j < n; j++)
		x->keys[j] = x->keys[2 * j];
	memset(x->keys + (n + 1) / 2, 0, (n - (n + 1) / 2) * sizeof(uint64_t));
	x->bshift++;
	uint64_t bsz = (uint64_t)1 << x->bshift;
	x->next_key = (x->next_key + bsz - 1) & ~(bsz - 1);
}

/* Whether size bytes need a larger B than the list has room for. */
static int overfull(const struct vcdiff_sidx *x, uint64_t size)
{
	return (size >> x->bshift) > INDEX_LOAD * x->nb * BUCKET_WAYS;
}

static inline uint64_t key_of(const uint8_t *t)
{
	if (key_is_constant(t))
		return 0;
	uint64_t m = fmix64(key_hash(t));
	return m ? m : 1;	/* 0 means "no key" */
}

/*
 * The feed only hashes: each key goes to its block's slot of a list, a
 * sequential write. The table, whose every insert is a cache miss (about
 * 0.4-0.7 s for the 8.4 M keys of a 535 MB state here, a sixth of a
 * write's CPU on a machine whose two cores the write keeps busy), is
 * built from the list after the last byte, on a thread of its own
 * (vcdiff_sidx_end), while the writer has finished and before the next
 * write needs it.
 */
void vcdiff_sidx_feed(struct vcdiff_sidx *x, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	uint64_t lo = x->size, hi = x->size + len;
	uint64_t carry_lo = lo - x->carry_len;
	uint8_t tmp[KEY_LEN];

	if (x->ended)
		return;
	while (x->next_key + KEY_LEN <= hi) {
		uint64_t k = x->next_key;
		const uint8_t *t;
		if (overfull(x, k + KEY_LEN)) {
			decimate(x);
			continue;
		}
		if (k >= lo) {
			t = b + (k - lo);
		} else {
			/* Straddles the previous feed: from the carry. */
			size_t c = (size_t)(lo - k);
			memcpy(tmp, x->carry + (k - carry_lo), c);
			memcpy(tmp + c, b, KEY_LEN - c);
			t = tmp;
		}
		x->keys[k >> x->bshift] = key_of(t);
		x->next_key = k + ((uint64_t)1 << x->bshift);
	}
	/* Keep the last KEY_LEN - 1 bytes: a key may start there. */
	size_t keep = KEY_LEN - 1;
	if (len >= keep) {
		memcpy(x->carry, b + len - keep, keep);
		x->carry_len = keep;
	} else {
		size_t old = x->carry_len + len > keep ? keep - len :
							 x->carry_len;
		memmove(x->carry, x->carry + x->carry_len - old, old);
		memcpy(x->carry + old, b, len);
		x->carry_len = old + len;
	}
	x->size = hi;
}

/* The table from the list: keys inserted in block order, as
 * build_index (vcdiff_match.c) inserts them, so the same table; hashed
 * already, so a batch is only prefetched, then inserted. */
static int build(struct vcdiff_sidx *x)
{
	uint64_t n = x->nb * BUCKET_WAYS, tab_n = n;
	uint64_t *tab, bmask = x->nb - 1, nblk = 0;
	enum { BATCH = 32 };

	if (x->reuse && x->reuse_n >= n) {
		/* The old table's memory, mapped already: rewriting it
		 * costs a hundredth of fresh pages (vcdiff_sidx.h). */
		tab = x->reuse;
		tab_n = x->reuse_n;
		memset(tab, 0, n * sizeof(*tab));
	} else {
		enc_table_free(x->reuse, x->reuse_n);
		tab = enc_table_alloc(n);
	}
	x->reuse = NULL;
	x->reuse_n = 0;
	if (!tab)
		return -ENOMEM;
	if (x->size >= KEY_LEN)
		nblk = ((x->size - KEY_LEN) >> x->bshift) + 1;
	for (uint64_t j = 0; j < nblk; j += BATCH) {
		uint64_t e = j + BATCH < nblk ? j + BATCH : nblk;
		for (uint64_t i = j; i < e; i++)
			__builtin_prefetch(tab + (x->keys[i] & bmask) *
					   BUCKET_WAYS, 1);
		for (uint64_t i = j; i < e; i++)
			if (x->keys[i])
				enc_table_insert(tab, bmask, x->keys[i], i);
	}
	/* Kept for the next builder (vcdiff_sidx_new's from). */
	x->spare = x->keys;
	x->spare_n = x->keys_n;
	x->keys = NULL;
	x->keys_n = 0;
	x->tab = tab;
	x->tab_n = tab_n;
	return 0;
}

static void *build_main(void *arg)
{
	struct vcdiff_sidx *x = arg;

	x->build_rc = build(x);
	return NULL;
}

/* old's table memory for x's build (the rest of old freed). */
static void take_old(struct vcdiff_sidx *x, struct vcdiff_sidx *old)
{
	if (!old)
		return;
	vcdiff_sidx_ready(old);
	if (old->tab && !x->reuse) {
		x->reuse = old->tab;
		x->reuse_n = old->tab_n;
		old->tab = NULL;
		old->tab_n = 0;
	}
	vcdiff_sidx_free(old);
}

int vcdiff_sidx_end(struct vcdiff_sidx *x, struct vcdiff_sidx *old)
{
	unsigned bs;
	uint64_t nb;

	if (x->ended) {
		vcdiff_sidx_free(old);
		return 0;
	}
	nb = shape(x->size, x->budget, &bs);
	if (nb == 0) {
		vcdiff_sidx_free(old);
		return -ESTALE;
	}
	while (overfull(x, x->size))
		decimate(x);
	if (x->bshift != bs) {
		vcdiff_sidx_free(old);
		return -ESTALE;	/* B already coarser than a fresh index's */
	}
	take_old(x, old);
	uint64_t tn = nb * BUCKET_WAYS;
	x->held = sizeof(*x) + (size_t)(x->keys_n + (x->reuse_n >= tn ?
					x->reuse_n : tn)) * sizeof(uint64_t);
	/* The list is as long as the guess's table allows; the table gets
	 * the shape a fresh index of this size has. */
	x->nb = nb;
	x->ended = 1;
	x->building = 1;
	if (pthread_create(&x->thr, NULL, build_main, x)) {
		x->building = 0;
		x->build_rc = build(x);
	}
	return 0;
}

int vcdiff_sidx_ready(struct vcdiff_sidx *x)
{
	if (x->building) {
		pthread_join(x->thr, NULL);
		x->building = 0;
	}
	if (!x->ended)
		return -ESTALE;
	return x->build_rc;
}

int vcdiff_sidx_fits(const struct vcdiff_sidx *x, uint64_t size,
		     size_t budget)
{
	unsigned bs;
	uint64_t nb = shape(size, budget, &bs);

	return x->ended && x->size == size && x->budget == budget &&
	       x->nb == nb && x->bshift == bs && nb != 0;
}
