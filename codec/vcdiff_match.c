/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_match: the encoder's match stage (vcdiff_enc_int.h): the source
 * index, and target bytes -> windows of ops.
 *
 * Index. At creation the whole source is read once, sequentially, and one
 * key per fixed-size block (block size B, a power of two >= 32, the
 * smallest with at most INDEX_LOAD = 1 block per entry of a table that
 * fits index_budget) is put in a bucketed hash table: 4
 * entries of 8 bytes (32-bit check | 32-bit block number + 1) per 32-byte
 * bucket, so a lookup costs one cache line and the check bits reject almost
 * every false candidate before any source byte is read. The key of block j
 * is a polynomial hash of the K = 32 bytes at j*B. Constant keys are not
 * indexed (runs are found directly), and a key already present in its
 * bucket is not added twice (first copy wins), so zero pages or other
 * repeated blocks cannot flood the table; a full bucket replaces one of its
 * ways, so an overfull table keeps a sample spread over the whole source.
 * Load <= 1: with the far-candidate check and lzma (below), a denser key
 * spacing that the table then cannot hold stopped paying. bench_patch,
 * load <= 2 -> <= 1, 2026-12-04: real QEMU states of the 1 GiB guest
 * (535 MB, B 32 -> 64), three pairs, patches -0.06%, -0.0004%, -0.01%,
 * encode 2.43 / 2.35 / 2.92 s -> 1.73 / 1.66 / 2.24 s; snapgen 1 GiB
 * (B 64 -> 128) -0.04%; snapgen 256 MiB +0.5%; bench_enc's generated 860
 * MB pair +0.9% (12.61 -> 12.72 MB), its index pass 0.50 -> 0.28 s. Half
 * the keys is also half of what a write into the mount hashes for the next
 * write's index (codec/vcdiff_sidx.h). Earlier, without those two,
 * load <= 2 had given 1% smaller patches than <= 1 at 860 MB; load <= 4 and
 * keep-first were worse. Inserts are hashed in batches and their buckets prefetched (they
 * are cache misses).
 *
 * Matching, per target window. At position p, in this order:
 *   1. a run of >= RUN_MIN equal bytes becomes RUN;
 *   2. "continuation": the source at p + delta, where delta is the offset
 *      of the last match (sources and targets are mostly aligned, with
 *      shifts); a match of >= CONT_MIN bytes is taken;
 *   3. the source index: the rolling hash of t[p, p+K) (computed PF
 *      positions ahead so that the bucket can be prefetched); candidates
 *      with equal check are verified against the source. A candidate
 *      more than FAR_NEAR (1 MiB) away from where the last match would
 *      put p is first confirmed from the table alone: the key of
 *      t[p+B, p+B+K) must be indexed as the next source block. Reading a
 *      far source byte is what costs most when the source is a
 *      compressed snapshot (a 256 KiB zstd frame decoded for a 4 KiB
 *      check; a 1 GiB write made 59 K such decodes), and a far match
 *      shorter than 2 blocks mostly moves the encoder off the alignment
 *      it later has to find again. Measured (lzma, bench_patch; FAR_NEAR
 *      unlimited / 16 MiB / 4 MiB / 1 MiB / 256 KiB / 0): 4 real QEMU
 *      pairs 6.888 / 6.893 / 6.883 / 6.872 / 6.865 / 6.849 MB; snapgen
 *      1 GiB 9.553 / 9.344 / 9.267 / 9.237 / 9.221 / 9.291 MB, with
 *      source frames decoded (256 MiB cache model) 24.8 K -> 4.1 K, one
 *      sequential pass;
 *   4. earlier bytes of the same window (COPY_TGT): 4-byte keys, the last
 *      TT_WAYS positions per key, kept only if clearly cheaper than the
 *      literals (new pages are often like other new pages).
 * A match is extended forwards with 8-byte compares and backwards into the
 * pending literals; the bytes left over become ADD. A source match of at
 * least B + K - 1 bytes is found whatever the distance it moved, unless
 * every block in it lost its entry to a full bucket (rare with a match of
 * several blocks: each has its own bucket).
 * After ACC_START literal bytes in a row, 3 and 4 run only at every
 * ACC_STEP-th position (coprime to B, so long matches are still met; the
 * skipped bytes come back by backward extension): incompressible pages then
 * cost a third of the lookups.
 *
 * Source reads go through a direct-mapped cache of SC_SLOTS chunks of
 * SC_CHUNK bytes (4 MiB). A miss where the previous read ended is a match
 * running along the source: it reads 2, 4, ... up to SC_AHEAD chunks at
 * once; any other miss (verifying a far candidate) reads one 4 KiB chunk.
 *
 * With lzma secondary compression (vcdiff_ewin.c) matching changes: lzma
 * finds repeats among the literals itself for less than a COPY costs, and
 * short copies cut the literal stream, so target matching (step 4) is off
 * and continuation copies need
 * CONT_MIN_LZMA bytes. Measured with bench_patch, preset 6 (256 MiB snapgen;
 * real QEMU pair of 233 MB): target matching on 2.548 / 1.930 MB, off
 * 2.289 / 1.695, and continuation >= 24 bytes 2.225 / 1.687 (16: 2.229 /
 * 1.687; 48: 2.224 / 1.764); xdelta3 -e -9 -B: 2.503 / 1.882 MB. A
 * side effect: such patches have no COPY_TGT, so any byte of a window
 * resolves without decoding the window from its start. Tried and left
 * out: a short-key index over the whole source (8-byte content-defined
 * anchors, xdelta3 -9's short far copies): -0.4% for 32 MiB more and
 * twice the encode time.
 *
 * Runs on one thread at a time (the caller's or the match worker's,
 * vcdiff_enc.c), the only one to touch the match stage's fields and to
 * call read_src after the index is built.
 */
#include "codec/vcdiff_enc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* --- source cache --- */

/* Returns the cached chunk holding source offset off, reading it if needed;
 * NULL (and e->err set) on a read error or a short source. A miss right
 * where the previous read ended reads SC_AHEAD chunks in one call (a
 * match running along the source); any other miss reads one small chunk,
 * so verifying a far candidate costs little. */
static struct schunk *src_chunk(struct vcdiff_enc *e, uint64_t off)
{
	uint64_t no = off >> SC_SHIFT;
	size_t slot = (size_t)(no % SC_SLOTS);
	struct schunk *c = &e->sc[slot];

	if (c->tag == no + 1)
		return c;
	size_t k = 1;
	if (no == e->seq_next) {
		/* Ramp up: a short match should not pay for a long read. */
		k = e->ra_len < SC_AHEAD / 2 ? e->ra_len * 2 : SC_AHEAD;
		if (k == 0)
			k = 1;
		if (slot + k > SC_SLOTS)
			k = SC_SLOTS - slot;	/* stay contiguous */
	}
	e->ra_len = k;
	e->seq_next = no + k;
	uint64_t start = no << SC_SHIFT;
	size_t want = e->src_size - start < k * SC_CHUNK ?
		(size_t)(e->src_size - start) : k * SC_CHUNK;
	size_t got = 0;
	for (size_t i = 0; i < k; i++)
		e->sc[slot + i].tag = 0;
	while (got < want) {
		ssize_t r = e->read_src(e->src_ctx, start + got, c->data + got,
					want - got);
		if (r < 0) {
			e->err = (int)r;
			return NULL;
		}
		if (r == 0) {
			e->err = -EIO;	/* source shorter than declared */
			return NULL;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < k && i * SC_CHUNK < want; i++) {
		struct schunk *d = &e->sc[slot + i];
		d->tag = no + i + 1;
		d->len = want - i * SC_CHUNK < SC_CHUNK ?
			 want - i * SC_CHUNK : SC_CHUNK;
	}
	return c;
}

/* Number of equal bytes of t[0, max) and source [s, s + max), max bounded by
 * the caller to the source size. */
static size_t ext_fwd(struct vcdiff_enc *e, const uint8_t *t, uint64_t s,
		      size_t max)
{
	size_t n = 0;

	while (n < max) {
		struct schunk *c = src_chunk(e, s + n);
		if (!c)
			return 0;
		size_t off = (size_t)((s + n) & (SC_CHUNK - 1));
		size_t avail = c->len - off;
		if (avail > max - n)
			avail = max - n;
		const uint8_t *a = t + n, *b = c->data + off;
		size_t i = 0;
		while (i + 8 <= avail) {
			uint64_t x = load64(a + i) ^ load64(b + i);
			if (x)
				return n + i + (size_t)(__builtin_ctzll(x) >> 3);
			i += 8;
		}
		while (i < avail) {
			if (a[i] != b[i])
				return n + i;
			i++;
		}
		n += avail;
	}
	return n;
}

/* Number of equal bytes going backwards: t[-1] vs source[s-1], and so on,
 * at most max (bounded by the caller to s). */
static size_t ext_back(struct vcdiff_enc *e, const uint8_t *t, uint64_t s,
		       size_t max)
{
	size_t n = 0;

	while (n < max) {
		uint64_t last = s - n - 1;	/* source byte compared first */
		struct schunk *c = src_chunk(e, last);
		if (!c)
			return 0;
		size_t off = (size_t)(last & (SC_CHUNK - 1)) + 1;
		size_t avail = off < max - n ? off : max - n;
		const uint8_t *a = t - n, *b = c->data + off;
		size_t i = 0;
		while (i + 8 <= avail) {
			uint64_t x = load64(a - i - 8) ^ load64(b - i - 8);
			if (x)
				return n + i + (size_t)(__builtin_clzll(x) >> 3);
			i += 8;
		}
		while (i < avail) {
			if (a[-(ptrdiff_t)i - 1] != b[-(ptrdiff_t)i - 1])
				return n + i;
			i++;
		}
		n += avail;
	}
	return n;
}

/* --- index --- */

static int build_index(struct vcdiff_enc *e)
{
	size_t bsz = (size_t)1 << e->bshift;
	uint64_t done = 0;
	/* Read in large pieces that are a multiple of B, so no key (K <= B)
	 * crosses a piece. The source cache memory serves as the buffer. */
	uint8_t *buf = e->sc_mem;
	size_t piece = INDEX_READ;

	if (piece < bsz)
		piece = bsz;	/* sc_mem is at least this large (see new) */
	while (done < e->src_size) {
		size_t want = e->src_size - done < piece ?
			(size_t)(e->src_size - done) : piece;
		size_t got = 0;
		while (got < want) {
			ssize_t r = e->read_src(e->src_ctx, done + got,
						buf + got, want - got);
			if (r < 0)
				return (int)r;
			if (r == 0)
				return -EIO;
			got += (size_t)r;
		}
		/* Hash a batch of keys and prefetch their buckets before
		 * inserting: the inserts are cache misses, overlap them. */
		for (size_t off = 0; off + KEY_LEN <= want;) {
			uint64_t hs[64], blk[64];
			int nk = 0;
			for (; nk < 64 && off + KEY_LEN <= want; off += bsz) {
				const uint8_t *k = buf + off;
				if (key_is_constant(k))
					continue;
				hs[nk] = fmix64(key_hash(k));
				blk[nk] = (done + off) >> e->bshift;
				__builtin_prefetch(e->tab + (hs[nk] & e->bmask) *
						   BUCKET_WAYS, 1);
				nk++;
			}
			for (int i = 0; i < nk; i++)
				enc_table_insert(e->tab, e->bmask, hs[i], blk[i]);
		}
		done += want;
		if (e->o.progress)
			e->o.progress(e->o.progress_ctx, done, e->src_size);
	}
	return 0;
}

/* --- instructions of the open window --- */

static int push_ins(struct vcdiff_enc *e, uint8_t kind, uint64_t tgt,
		    uint64_t addr, uint32_t len, uint8_t byte)
{
	if (e->nins == e->ins_cap) {
		size_t cap = e->ins_cap ? e->ins_cap * 2 : 1024;
		struct vcdiff_op *p = realloc(e->ins, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		e->ins = p;
		e->ins_cap = cap;
	}
	struct vcdiff_op *op = &e->ins[e->nins++];
	op->tgt_off = tgt;
	op->addr = addr;
	op->len = len;
	op->kind = kind;
	op->byte = byte;
	return 0;
}

/* --- matching --- */

struct mstate {
	const uint8_t *t;	/* the buffer */
	size_t n;		/* bytes in it */
	size_t lit;		/* first pending literal */
};

static int emit_lit(struct vcdiff_enc *e, struct mstate *ms, size_t upto)
{
	if (upto <= ms->lit)
		return 0;
	int rc = push_ins(e, VCDIFF_OP_ADD, e->buf_abs + ms->lit, 0,
			  (uint32_t)(upto - ms->lit), 0);
	ms->lit = upto;
	return rc;
}

/* Records a source copy of len bytes at buffer position p from source s,
 * cutting the window first if the segment would reach 4 GiB. */
static int emit_copy(struct vcdiff_enc *e, struct mstate *ms, size_t p,
		     uint64_t s, size_t len)
{
	int rc = emit_lit(e, ms, p);

	if (rc < 0)
		return rc;
	if (e->have_copy) {
		uint64_t lo = s < e->seg_lo ? s : e->seg_lo;
		uint64_t hi = s + len > e->seg_hi ? s + len : e->seg_hi;
		if (hi - lo > SPAN_LIMIT - e->win_cap) {
			uint64_t end = e->buf_abs + p;
			rc = enc_window_close(e, ms->t + (e->win_abs - e->buf_abs), end);
			if (rc < 0)
				return rc;
		}
	}
	if (!e->have_copy) {
		e->have_copy = 1;
		e->seg_lo = s;
		e->seg_hi = s + len;
	} else {
		if (s < e->seg_lo)
			e->seg_lo = s;
		if (s + len > e->seg_hi)
			e->seg_hi = s + len;
	}
	rc = push_ins(e, VCDIFF_OP_COPY_SRC, e->buf_abs + p, s, (uint32_t)len, 0);
	ms->lit = p + len;
	return rc;
}

/* Index of the first way of the target table slot for the 4 bytes at t. */
static inline size_t tt_slot(const uint8_t *t)
{
	uint32_t k;

	memcpy(&k, t, 4);
	return (size_t)((k * 2654435761u) >> (32 - TT_BITS)) * TT_WAYS;
}

/* Records a copy of len bytes at buffer position p from the earlier buffer
 * position c (same window; may overlap p). */
static int emit_tcopy(struct vcdiff_enc *e, struct mstate *ms, size_t p,
		      size_t c, size_t len)
{
	int rc = emit_lit(e, ms, p);

	if (rc < 0)
		return rc;
	rc = push_ins(e, VCDIFF_OP_COPY_TGT, e->buf_abs + p, e->buf_abs + c,
		      (uint32_t)len, 0);
	ms->lit = p + len;
	return rc;
}

/*
 * Target matching, for bytes the source does not have (new pages, text):
 * a small table of the last literal position per 4-byte key, verified,
 * extended both ways, kept only if the COPY is cheaper than the literals.
 * Returns the end of the match, or 0.
 */
static size_t try_tmatch(struct vcdiff_enc *e, struct mstate *ms, size_t p,
			 size_t wstart, int *rc)
{
	const uint8_t *t = ms->t;
	uint32_t *slot = e->ttab + tt_slot(t + p);
	size_t best_c = 0, f = 0, max = ms->n - p;
	long best = 0;
	/* The most recent TT_WAYS positions with this key; keep the longest
	 * (ties: the nearest, whose address is cheaper). */
	for (int w = 0; w < TT_WAYS; w++) {
		uint32_t cand = slot[w];
		if (cand == 0 || cand - 1 < wstart)
			break;
		size_t c = cand - 1, l = 0;
		while (l + 8 <= max) {
			uint64_t x = load64(t + c + l) ^ load64(t + p + l);
			if (x) {
				l += (size_t)(__builtin_ctzll(x) >> 3);
				goto fwd_done;
			}
			l += 8;
		}
		while (l < max && t[c + l] == t[p + l])
			l++;
fwd_done:
		if (l >= 4 && (long)l - vlen(p - c) > best) {
			best = (long)l - vlen(p - c);
			f = l;
			best_c = c;
		}
	}
	memmove(slot + 1, slot, (TT_WAYS - 1) * sizeof(*slot));
	slot[0] = (uint32_t)p + 1;
	if (f < 4)
		return 0;
	size_t c = best_c;
	size_t b = 0;
	while (p - b > ms->lit && c - b > wstart && t[p - b - 1] == t[c - b - 1])
		b++;
	size_t len = f + b;
	/* COPY: opcode, address (HERE: the distance), maybe the size; the
	 * literals it replaces would also have needed an ADD opcode. */
	int cost = 1 + vlen(p - c) + (len > 18 ? vlen(len) : 0);
	if ((size_t)cost + 3 >= len)
		return 0;
	*rc = emit_tcopy(e, ms, p - b, c - b, len);
	return p + f;
}

/*
 * Tries a match of target position p against source s (already known to
 * agree on at least `have` bytes is not assumed). Extends both ways; if the
 * result reaches min_len, emits it and returns its end; else returns 0.
 */
static size_t try_match(struct vcdiff_enc *e, struct mstate *ms, size_t p,
			uint64_t s, size_t min_len, int *rc)
{
	size_t maxf = ms->n - p;

	if (s >= e->src_size)
		return 0;
	if (maxf > e->src_size - s)
		maxf = (size_t)(e->src_size - s);
	size_t f = ext_fwd(e, ms->t + p, s, maxf);
	if (e->err) {
		*rc = e->err;
		return 0;
	}
	if (f == 0)
		return 0;
	size_t maxb = p - ms->lit;
	if (maxb > s)
		maxb = (size_t)s;
	size_t b = maxb ? ext_back(e, ms->t + p, s, maxb) : 0;
	if (e->err) {
		*rc = e->err;
		return 0;
	}
	if (f + b < min_len)
		return 0;
	*rc = emit_copy(e, ms, p - b, s - b, f + b);
	e->delta = (int64_t)(s - (e->buf_abs + p));
	return p + f;
}

/* Whether source offset src is more than FAR_NEAR bytes away from where
 * the last match would put buffer position p. */
static inline int far_from(const struct vcdiff_enc *e, size_t p, uint64_t src)
{
	int64_t d = (int64_t)src - ((int64_t)(e->buf_abs + p) + e->delta);

	return d > (int64_t)FAR_NEAR || d < -(int64_t)FAR_NEAR;
}

/*
 * Whether a far candidate, source block blk for the key at t (avail
 * bytes of target from t on), is confirmed by the next block: the key of
 * the B bytes after t must be in the table as block blk + 1. Costs a
 * hash and one bucket, never a source read. See step 3 at the top.
 */
static int far_confirmed(const struct vcdiff_enc *e, const uint8_t *t,
			 size_t avail, uint64_t blk)
{
	size_t bsz = (size_t)1 << e->bshift;

	if (avail < bsz + KEY_LEN || key_is_constant(t + bsz))
		return 0;
	uint64_t m = fmix64(key_hash(t + bsz));
	const uint64_t *bk = e->tab + (m & e->bmask) * BUCKET_WAYS;
	uint64_t want = (uint64_t)(uint32_t)(m >> 32) << 32 | (blk + 2);

	for (int i = 0; i < BUCKET_WAYS; i++)
		if (bk[i] == want)
			return 1;
	return 0;
}

static size_t run_len(const uint8_t *t, size_t p, size_t n)
{
	uint64_t w = 0x0101010101010101ull * t[p];
	size_t q = p;

	while (q + 8 <= n && load64(t + q) == w)
		q += 8;
	while (q < n && t[q] == t[p])
		q++;
	return q - p;
}

int enc_match_buf(struct vcdiff_enc *e)
{
	struct mstate ms = { .t = e->buf, .n = e->buf_len, .lit = 0 };
	const uint8_t *t = e->buf;
	size_t n = e->buf_len, p = 0;
	uint64_t ring[PF];
	size_t hend = 0;	/* ring holds hashes of [hend - PF, hend) */
	uint64_t h = 0;		/* rolling hash of t[hend - 1, +K) */
	int rc = 0;

	if (e->tmatch)
		memset(e->ttab, 0, (sizeof(uint32_t) * TT_WAYS) << TT_BITS);
	while (p + 8 <= n) {
		/* 1. runs */
		uint64_t w = load64(t + p);
		if (w == 0x0101010101010101ull * t[p]) {
			size_t r = run_len(t, p, n);
			if (r >= RUN_MIN) {
				if ((rc = emit_lit(e, &ms, p)) < 0 ||
				    (rc = push_ins(e, VCDIFF_OP_RUN,
						   e->buf_abs + p, 0,
						   (uint32_t)r, t[p])) < 0)
					return rc;
				p += r;
				ms.lit = p;
				continue;
			}
		}
		/* 2. continuation of the last match */
		int64_t s = (int64_t)(e->buf_abs + p) + e->delta;
		if (s >= 0 && (uint64_t)s + 8 <= e->src_size) {
			size_t q = try_match(e, &ms, p, (uint64_t)s,
					     e->cont_min, &rc);
			if (rc < 0)
				return rc;
			if (q) {
				p = q;
				continue;
			}
		}
		/* Deep in a literal stretch (new random pages) look only at
		 * every ACC_STEP-th position: a step coprime to B still meets
		 * every alignment of a long match, and backward extension
		 * recovers the bytes skipped. */
		if (!VISIT(p, ms.lit)) {
			p++;
			continue;
		}
		/* 3. the index */
		if (p + KEY_LEN <= n && e->tab) {
			if (p >= hend || p + PF < hend) {
				h = key_hash(t + p);
				ring[p % PF] = fmix64(h);
				__builtin_prefetch(e->tab + (ring[p % PF] & e->bmask) *
						   BUCKET_WAYS);
				hend = p + 1;
			}
			while (hend < p + PF && hend + KEY_LEN <= n) {
				h = (h - t[hend - 1] * e->poly_out) * POLY_M +
				    t[hend - 1 + KEY_LEN];
				uint64_t m = fmix64(h);
				ring[hend % PF] = m;
				if (VISIT(hend, ms.lit)) {
					__builtin_prefetch(e->tab + (m & e->bmask) *
							   BUCKET_WAYS);
					if (e->tmatch)
						__builtin_prefetch(e->ttab +
							tt_slot(t + hend));
				}
				hend++;
			}
			uint64_t m = ring[p % PF];
			const uint64_t *bk = e->tab + (m & e->bmask) * BUCKET_WAYS;
			uint32_t check = (uint32_t)(m >> 32);
			size_t q = 0;
			for (int i = 0; i < BUCKET_WAYS && bk[i]; i++) {
				if ((uint32_t)(bk[i] >> 32) != check)
					continue;
				uint64_t blk = (bk[i] & 0xffffffffu) - 1;
				uint64_t src = blk << e->bshift;
				if (far_from(e, p, src) &&
				    !far_confirmed(e, t + p, n - p, blk))
					continue;
				q = try_match(e, &ms, p, src, KEY_LEN, &rc);
				if (rc < 0)
					return rc;
				if (q)
					break;
			}
			if (q) {
				p = q;
				continue;
			}
		}
		/* 4. earlier bytes of this window */
		if (e->tmatch) {
			size_t ws = (size_t)(e->win_abs - e->buf_abs);
			size_t q = try_tmatch(e, &ms, p, ws, &rc);
			if (rc < 0)
				return rc;
			if (q) {
				p = q;
				continue;
			}
		}
		p++;
	}
	if ((rc = emit_lit(e, &ms, n)) < 0)
		return rc;
	return enc_window_close(e, t + (e->win_abs - e->buf_abs),
				e->buf_abs + n);
}


/* --- set-up --- */

uint64_t enc_match_size(uint64_t src_size, size_t budget, unsigned *bshift)
{
	uint64_t nb = 1;	/* buckets: a power of two */

	*bshift = MIN_BLOCK_SHIFT;
	if (src_size < KEY_LEN)
		return 0;
	if (!budget)
		budget = DEFAULT_BUDGET;
	/* Entries hold a 32-bit block number + 1 and there are up to
	 * INDEX_LOAD blocks per entry: at most 2^30 entries. */
	while (nb * 2 * BUCKET_WAYS * sizeof(uint64_t) <= budget &&
	       nb * 2 * BUCKET_WAYS <= ((uint64_t)1 << 30))
		nb *= 2;
	/* Smallest B with at most INDEX_LOAD blocks per entry. */
	while ((src_size >> *bshift) > INDEX_LOAD * nb * BUCKET_WAYS)
		(*bshift)++;
	/* Shrink the table for small sources: load >= 1/4. */
	uint64_t nblk = (src_size >> *bshift) + 1;
	while (nb > 1 && nb / 2 * BUCKET_WAYS >= 2 * nblk)
		nb /= 2;
	return nb;
}

size_t enc_match_sc_bytes(unsigned bshift)
{
	/* The source cache, also the read buffer while indexing. */
	size_t scm = SC_CHUNK * SC_SLOTS;

	if (scm < INDEX_READ)
		scm = INDEX_READ;
	if (scm < (size_t)1 << bshift)
		scm = (size_t)1 << bshift;
	return scm;
}

/* Huge pages are 2 MiB here; a table is mapped on a multiple of that, so
 * that the kernel can back all of it with them. */
#define TAB_ALIGN ((size_t)2 << 20)

static size_t tab_map_len(uint64_t n)
{
	size_t len = (size_t)n * sizeof(uint64_t);

	return len < TAB_ALIGN ? (len + 4095) & ~(size_t)4095 :
				 (len + TAB_ALIGN - 1) & ~(TAB_ALIGN - 1);
}

uint64_t *enc_table_alloc(uint64_t n)
{
	size_t len = tab_map_len(n ? n : 1), map = len;
	uint8_t *p;

	if (len >= TAB_ALIGN)
		map += TAB_ALIGN;	/* room to align the start */
	p = mmap(NULL, map, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (len >= TAB_ALIGN) {
		size_t head = (size_t)(-(uintptr_t)p & (TAB_ALIGN - 1));
		if (head)
			munmap(p, head);
		if (map - head > len)
			munmap(p + head + len, map - head - len);
		p += head;
		/* Only a hint: without it, 4 KiB pages as before. */
		madvise(p, len, MADV_HUGEPAGE);
	}
	return (uint64_t *)p;
}

void enc_table_shrink(uint64_t *tab, uint64_t old, uint64_t n)
{
	size_t a = tab_map_len(n), b = tab_map_len(old);

	if (b > a)
		munmap((uint8_t *)tab + a, b - a);
}

void enc_table_free(uint64_t *tab, uint64_t n)
{
	if (tab)
		munmap(tab, tab_map_len(n ? n : 1));
}

int enc_match_init(struct vcdiff_enc *e)
{
	e->cont_min = CONT_MIN;
	e->tmatch = 1;
	if (e->o.secondary == VCDIFF_SEC_LZMA_WINDOWED) {
		/* lzma finds repeats among the literals itself, for less
		 * than a COPY's opcode and address, and a literal stream
		 * cut by short copies compresses worse: no target matching,
		 * longer continuation copies (measured at the top). */
		e->cont_min = CONT_MIN_LZMA;
		e->tmatch = 0;
	}
	if (e->tmatch) {
		e->ttab = malloc((sizeof(uint32_t) * TT_WAYS) << TT_BITS);
		if (!e->ttab)
			return -ENOMEM;
	}
	e->poly_out = 1;
	for (int i = 0; i < KEY_LEN - 1; i++)
		e->poly_out *= POLY_M;

	uint64_t nb = enc_match_size(e->src_size, e->o.index_budget,
				     &e->bshift);
	const struct vcdiff_sidx *x = e->o.sidx;
	if (x && (!x->ended || x->building || !x->tab ||
		  x->size != e->src_size || x->nb != nb ||
		  x->bshift != e->bshift || x->budget != e->o.index_budget))
		return -EINVAL;
	if (x && nb) {
		/* Built while the source went by: no pass over it here. */
		e->bmask = nb - 1;
		e->tab = x->tab;
		e->tab_borrowed = 1;
	} else if (nb) {
		e->bmask = nb - 1;
		e->tab = enc_table_alloc(nb * BUCKET_WAYS);
		if (!e->tab)
			return -ENOMEM;
	}
	e->sc_mem = malloc(enc_match_sc_bytes(e->bshift));
	if (!e->sc_mem)
		return -ENOMEM;
	for (int i = 0; i < SC_SLOTS; i++)
		e->sc[i].data = e->sc_mem + (size_t)i * SC_CHUNK;
	return e->tab && !e->tab_borrowed ? build_index(e) : 0;
}

void enc_match_free(struct vcdiff_enc *e)
{
	if (!e->tab_borrowed)
		enc_table_free(e->tab, (e->bmask + 1) * BUCKET_WAYS);
	free(e->sc_mem);
	free(e->ttab);
	free(e->ins);
}
