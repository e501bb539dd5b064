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

	return (size_t)tab_bytes(nb) + sizeof(struct vcdiff_sidx);
}

int vcdiff_sidx_new(struct vcdiff_sidx **out, uint64_t guess, size_t budget)
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
	x->tab = enc_table_alloc(x->nb * BUCKET_WAYS);
	if (!x->tab) {
		free(x);
		return -ENOMEM;
	}
	*out = x;
	return 0;
}

void vcdiff_sidx_free(struct vcdiff_sidx *x)
{
	if (!x)
		return;
	enc_table_free(x->tab, x->nb * BUCKET_WAYS);
	free(x);
}

static void flush(struct vcdiff_sidx *x)
{
	for (int i = 0; i < x->nbatch; i++)
		enc_table_insert(x->tab, x->nb - 1, x->bh[i], x->bb[i]);
	x->nbatch = 0;
}

/* B doubles: the keys of even blocks stay (renumbered), the others go.
 * The next key is at the next multiple of the new B. */
static void decimate(struct vcdiff_sidx *x)
{
	flush(x);
	for (uint64_t b = 0; b < x->nb; b++) {
		uint64_t *bk = x->tab + b * BUCKET_WAYS;
		int k = 0;
		for (int i = 0; i < BUCKET_WAYS; i++) {
			uint64_t blk = (bk[i] & 0xffffffffu) - 1;
			if (bk[i] && blk % 2 == 0)
				bk[k++] = (bk[i] >> 32) << 32 | (blk / 2 + 1);
		}
		for (; k < BUCKET_WAYS; k++)
			bk[k] = 0;
	}
	x->bshift++;
	uint64_t bsz = (uint64_t)1 << x->bshift;
	x->next_key = (x->next_key + bsz - 1) & ~(bsz - 1);
}

/* Whether size bytes need a larger B than the table has (vcdiff_match.c:
 * at most INDEX_LOAD blocks per entry). */
static int overfull(const struct vcdiff_sidx *x, uint64_t size)
{
	return (size >> x->bshift) > INDEX_LOAD * x->nb * BUCKET_WAYS;
}

static void add_key(struct vcdiff_sidx *x, const uint8_t *t, uint64_t blk)
{
	if (key_is_constant(t))
		return;
	uint64_t m = fmix64(key_hash(t));
	/* Inserts are cache misses: hash a batch, prefetch, insert
	 * (as build_index does). */
	__builtin_prefetch(x->tab + (m & (x->nb - 1)) * BUCKET_WAYS, 1);
	x->bh[x->nbatch] = m;
	x->bb[x->nbatch] = blk;
	if (++x->nbatch == 64)
		flush(x);
}

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
		add_key(x, t, k >> x->bshift);
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

/* Halves the table: bucket i + nb/2 folds into bucket i (what a fresh
 * index of a small source has: vcdiff_match.c shrinks it). */
static int halve(struct vcdiff_sidx *x)
{
	uint64_t half = x->nb / 2;

	for (uint64_t b = 0; b < half; b++) {
		const uint64_t *hi = x->tab + (b + half) * BUCKET_WAYS;
		for (int i = 0; i < BUCKET_WAYS && hi[i]; i++) {
			uint64_t m = (hi[i] >> 32) << 32 | b;
			enc_table_insert(x->tab, half - 1, m,
					 (hi[i] & 0xffffffffu) - 1);
		}
	}
	enc_table_shrink(x->tab, x->nb * BUCKET_WAYS, half * BUCKET_WAYS);
	x->nb = half;
	return 0;
}

int vcdiff_sidx_end(struct vcdiff_sidx *x)
{
	unsigned bs;
	uint64_t nb;

	if (x->ended)
		return 0;
	flush(x);
	nb = shape(x->size, x->budget, &bs);
	if (nb == 0 || nb > x->nb)
		return -ESTALE;
	while (overfull(x, x->size))
		decimate(x);
	while (x->nb > nb)
		halve(x);
	if (x->bshift != bs)
		return -ESTALE;	/* B already coarser than a fresh index's */
	x->ended = 1;
	return 0;
}

int vcdiff_sidx_fits(const struct vcdiff_sidx *x, uint64_t size,
		     size_t budget)
{
	unsigned bs;
	uint64_t nb = shape(size, budget, &bs);

	return x->ended && x->size == size && x->budget == budget &&
	       x->nb == nb && x->bshift == bs && nb != 0;
}
