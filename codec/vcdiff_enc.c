/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_enc: streaming VCDIFF encoder (see vcdiff_enc.h for the contract).
 *
 * Index. At creation the whole source is read once, sequentially, and one
 * key per fixed-size block (block size B, a power of two >= 32, the
 * smallest with at most INDEX_LOAD = 2 blocks per entry of a table that
 * fits index_budget) is put in a bucketed hash table: 4
 * entries of 8 bytes (32-bit check | 32-bit block number + 1) per 32-byte
 * bucket, so a lookup costs one cache line and the check bits reject almost
 * every false candidate before any source byte is read. The key of block j
 * is a polynomial hash of the K = 32 bytes at j*B. Constant keys are not
 * indexed (runs are found directly), and a key already present in its
 * bucket is not added twice (first copy wins), so zero pages or other
 * repeated blocks cannot flood the table; a full bucket replaces one of its
 * ways, so an overfull table keeps a sample spread over the whole source.
 * Measured at 860 MB (64 MiB table): load <= 2 with B = 64 gave a 1% smaller
 * patch than load <= 1 with B = 128, load <= 4 (B = 32) and keep-first were
 * worse. Inserts are hashed in batches and their buckets prefetched (they
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
 * Windows. The target is buffered one window at a time, matched, then
 * written as header + data + inst + addr sections with the default code
 * table (pair opcodes when they apply) and the cheapest of the SELF/HERE/
 * NEAR/SAME address modes. The source segment is [min, max) of the
 * window's source copies; if a copy would make cpylen + tgtlen reach 4 GiB
 * the window is cut just before that copy. A window with no source copy
 * has no VCD_SOURCE bit; VCD_TARGET is never written. Ops go to the sink
 * after their window is written, when the patch offset of each ADD is known.
 * Default window: 8 MiB. Measured on the QEMU-like bench pair (256 MiB):
 * 4 MiB windows gave a patch 0.4% larger than 8 MiB, 16 MiB 0.2% smaller;
 * 8 MiB is xdelta3's default and halves the buffer and the unit a reader of
 * a COPY_TGT may have to decode.
 *
 * Memory, bounded whatever the sizes: the index (<= index_budget, default
 * 64 MiB; B grows instead for big sources), one window of target plus its
 * sections and instruction list (about 2 x window), the 1 MiB target table
 * and the 4 MiB source cache: ~80 MiB peak RSS for an 860 MB encode.
 *
 * Secondary compression (opts.secondary = VCDIFF_SEC_LZMA_WINDOWED):
 * each section of each window becomes one whole xz block in xdelta3's
 * lzma framing (vcdiff-notes.md 2.3, 2.4): stock xdelta3 -d reads it as
 * its own continuous lzma stream, yet every block starts with a
 * dictionary reset, so vcdiff_dec decodes any window alone. Sections
 * under 10 bytes or saving 2 bytes or less stay plain (xdelta3's rule;
 * stock decodes each section by its own delta-indicator bit). Options
 * per kind: preset 1 by default (below), dictionary capped at the
 * window, pb = lp = 0, lc = 1 for addresses (0.35-0.6% smaller than the
 * bare preset).
 * Matching changes with it: lzma finds repeats among the literals itself
 * for less than a COPY costs, and short copies cut the literal stream, so
 * target matching (step 4) is off and continuation copies need
 * CONT_MIN_LZMA bytes. Measured with bench_patch, preset 6 (256 MiB snapgen;
 * real QEMU pair of 233 MB): target matching on 2.548 / 1.930 MB, off
 * 2.289 / 1.695, and continuation >= 24 bytes 2.225 / 1.687 (16: 2.229 /
 * 1.687; 48: 2.224 / 1.764); xdelta3 -e -9 -B: 2.503 / 1.882 MB. A
 * side effect: such patches have no COPY_TGT, so any byte of a window
 * resolves without decoding the window from its start. Tried and left
 * out: a short-key index over the whole source (8-byte content-defined
 * anchors, xdelta3 -9's short far copies): -0.4% for 32 MiB more and
 * twice the encode time. Presets (bench_patch, same pairs, 256 MiB
 * snapgen / QEMU 233 MB / snapgen 1 GiB): 1: 2.346 / 1.786 / 9.553 MB,
 * 3: 2.315 / 1.755 / 9.419, 6: 2.225 / 1.687 / 8.977; on 1 GiB preset 1
 * adds 1.0 s to the 2.3 s plain encode, preset 6 10.7 s (bt4 on nearly
 * incompressible literals). Preset 1 is the default: under xdelta3 -e -9
 * -B's size either way, and it keeps ingest fast; 6 is there for
 * archives.
 * Plain (default): measured with tests/bench/bench_enc (860 MB QEMU-like
 * pair) before the lzma option existed, target matching had taken most
 * of what lzma on the data section would save (31% -> 6%).
 *
 * One encoder per thread; no locks, no threads of its own. Never prints.
 */
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>

#include "codec/vcdiff_int.h"

/* --- tuning --- */

#define KEY_LEN 32			/* bytes hashed per key (K) */
#define MIN_BLOCK_SHIFT 5		/* B >= 32 = K */
#define BUCKET_WAYS 4
#define INDEX_LOAD 2			/* blocks per table entry, at most */
#define DEFAULT_BUDGET ((size_t)64 << 20)
#define DEFAULT_WIN (8u << 20)
#define SC_SHIFT 12			/* source cache chunk: 4 KiB */
#define SC_CHUNK ((size_t)1 << SC_SHIFT)
#define SC_SLOTS 1024			/* 4 MiB */
#define SC_AHEAD 32			/* chunks per read when sequential */
#define RUN_MIN 16			/* shorter runs stay in ADD/COPY */
#define CONT_MIN 8			/* continuation match worth a COPY */
#define CONT_MIN_LZMA 24		/* the same when literals get lzma */
#define TT_BITS 16			/* target match table: 2^16 keys */
#define TT_WAYS 4			/* positions kept per key */
#define ACC_START 256			/* literal bytes before skipping */
#define ACC_STEP 3			/* then look at every 3rd position */
#define VISIT(q, lit) ((q) - (lit) < ACC_START || (q) % ACC_STEP == 0)
#define PF 16				/* hash lookahead for prefetch (2^n) */
#define FAR_NEAR ((int64_t)1 << 20)	/* candidates farther need the next
					 * block confirmed (step 3) */
#define INDEX_READ ((size_t)4 << 20)	/* sequential read size at indexing */

/* Largest cpylen + tgtlen xdelta3 accepts (usize_t is 32 bits). */
#define SPAN_LIMIT ((uint64_t)UINT32_MAX)

#define POLY_M 0x9E3779B97F4A7C15ull

struct schunk {
	uint64_t tag;		/* chunk number + 1; 0 = empty */
	size_t len;		/* valid bytes (short at source EOF) */
	uint8_t *data;
};

struct bytes {
	uint8_t *p;
	size_t len, cap;
};

struct vcdiff_enc {
	struct vcdiff_enc_opts o;
	uint64_t src_size;
	vcdiff_read_fn read_src;
	void *src_ctx;
	vcdiff_write_fn write_out;
	void *out_ctx;
	int err;		/* sticky: first error seen */
	int finished;

	/* index */
	uint64_t *tab;		/* nbuckets * BUCKET_WAYS entries */
	uint64_t bmask;		/* nbuckets - 1 */
	unsigned bshift;	/* log2(B) */
	uint64_t poly_out;	/* POLY_M^(KEY_LEN-1), to roll a byte out */

	/* source cache */
	uint8_t *sc_mem;
	struct schunk sc[SC_SLOTS];
	uint64_t seq_next;	/* chunk after the last one read */
	size_t ra_len;		/* chunks of the last read */

	/* target window */
	uint8_t *buf;
	size_t buf_len;
	uint32_t win_cap;
	uint64_t buf_abs;	/* target offset of buf[0] */
	uint64_t win_abs;	/* target offset where the open window starts */
	int64_t delta;		/* source offset - target offset of last match */

	uint32_t *ttab;		/* target matching: buffer position + 1 */
	size_t cont_min;	/* CONT_MIN or CONT_MIN_LZMA */
	int tmatch;		/* step 4 (COPY_TGT) on: not with lzma */

	/* instructions of the open window */
	struct vcdiff_op *ins;
	size_t nins, ins_cap;
	uint64_t seg_lo, seg_hi;	/* source span of its copies */
	int have_copy;

	/* sections of the window being written */
	struct bytes data, inst, addr;
	uint64_t patch_size;
	uint64_t windows;

	/* secondary compression (opts.secondary == LZMA_WINDOWED) */
	lzma_stream lz;			/* block encoder, reused per section */
	int lz_live;
	lzma_options_lzma lzopt[3];	/* per section kind */
	struct bytes zsec[3];		/* compressed data, inst, addr */
	int sh_done[3];			/* stream header written for kind */
};


/* --- small helpers --- */

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t fmix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/* Polynomial hash sum t[i] * M^(K-1-i) over KEY_LEN bytes, 4 lanes. */
static inline uint64_t key_hash(const uint8_t *t)
{
	const uint64_t m2 = POLY_M * POLY_M, m3 = m2 * POLY_M, m4 = m2 * m2;
	uint64_t a = 0, b = 0, c = 0, d = 0;

	for (int i = 0; i < KEY_LEN; i += 4) {
		a = a * m4 + t[i];
		b = b * m4 + t[i + 1];
		c = c * m4 + t[i + 2];
		d = d * m4 + t[i + 3];
	}
	return a * m3 + b * m2 + c * POLY_M + d;
}

static int key_is_constant(const uint8_t *t)
{
	uint64_t w = load64(t);

	if (w != 0x0101010101010101ull * t[0])
		return 0;
	for (int i = 8; i < KEY_LEN; i += 8)
		if (load64(t + i) != w)
			return 0;
	return 1;
}

/* Varints and the address caches are vcdiff_int.h's, shared with the
 * decoder, so both sides agree on them by construction. */
static inline int vlen(uint64_t v)
{
	return (int)vcdiff_varint_size(v);
}

static inline int put_varint(uint8_t *out, uint64_t v)
{
	return (int)vcdiff_varint_put(out, v);
}

static int bytes_reserve(struct bytes *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Callers reserve first; these never fail. */
static inline void put_byte(struct bytes *b, uint8_t v)
{
	b->p[b->len++] = v;
}

static inline void put_var(struct bytes *b, uint64_t v)
{
	b->len += put_varint(b->p + b->len, v);
}

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

/* m: the mixed key hash (fmix64). */
static void table_insert(struct vcdiff_enc *e, uint64_t m, uint64_t blk)
{
	uint64_t *bk = e->tab + (m & e->bmask) * BUCKET_WAYS;
	uint32_t check = (uint32_t)(m >> 32);

	for (int i = 0; i < BUCKET_WAYS; i++) {
		if (bk[i] == 0) {
			bk[i] = (uint64_t)check << 32 | (blk + 1);
			return;
		}
		if ((uint32_t)(bk[i] >> 32) == check)
			return;		/* same key already indexed */
	}
	/* Full: spread replacements over the ways. */
	bk[blk % BUCKET_WAYS] = (uint64_t)check << 32 | (blk + 1);
}

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
				table_insert(e, hs[i], blk[i]);
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

/* --- window output --- */

/* Picks the cheapest mode for addr (U-space, here = cpylen + bytes of T so
 * far); returns the mode, the value to write in *v and its size in *sz
 * (SAME modes write one raw byte). */
static int pick_mode(const struct vcdiff_acache *ac, uint64_t addr, uint64_t here,
		     uint64_t *v, int *sz)
{
	int best = 0, bsz = vlen(addr);
	uint64_t bv = addr;

	if (ac->same[addr % (VCDIFF_S_SAME * 256)] == addr) {
		*v = addr % 256;
		*sz = 1;
		return VCDIFF_MODE_SAME0 +
		       (int)((addr % (VCDIFF_S_SAME * 256)) / 256);
	}
	int l = vlen(here - addr);
	if (l < bsz) {
		best = 1;
		bsz = l;
		bv = here - addr;
	}
	for (int i = 0; i < VCDIFF_S_NEAR && bsz > 1; i++) {
		if (addr < ac->near[i])
			continue;
		l = vlen(addr - ac->near[i]);
		if (l < bsz) {
			best = VCDIFF_MODE_NEAR0 + i;
			bsz = l;
			bv = addr - ac->near[i];
		}
	}
	*v = bv;
	*sz = bsz;
	return best;
}

static void put_addr(struct bytes *b, int mode, uint64_t v)
{
	if (mode >= VCDIFF_MODE_SAME0)
		put_byte(b, (uint8_t)v);
	else
		put_var(b, v);
}

static int write_all(struct vcdiff_enc *e, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int rc = e->write_out(e->out_ctx, p, n);
	if (rc < 0)
		return rc;
	e->patch_size += n;
	return 0;
}

/* A copy's address in U = S || T of the open window. */
static inline uint64_t u_addr(const struct vcdiff_enc *e,
			      const struct vcdiff_op *op, uint64_t lo,
			      uint64_t cpylen)
{
	if (op->kind == VCDIFF_OP_COPY_SRC)
		return op->addr - lo;
	return cpylen + (op->addr - e->win_abs);
}

/* --- secondary compression --- */

/* xdelta3's rule (SECONDARY_MIN_INPUT, SECONDARY_MIN_SAVINGS): shorter
 * sections are never compressed, and a compressed one must save more. */
#define SEC_MIN_INPUT 10
#define SEC_MIN_SAVINGS 2

/*
 * Compresses one section into z in xdelta3's lzma framing: varint(len),
 * then, if no section of this kind has carried it yet, the 12-byte xz
 * stream header, then one whole xz block (12-byte header, LZMA2 chunks,
 * end marker, padding; check none). A block always starts with a
 * dictionary reset, so the section decodes without any earlier one; the
 * stream it belongs to is never ended (no index, no footer), because
 * stock xdelta3 treats the end of its stream as an error. Returns 0 or
 * -errno; the caller decides whether z is worth keeping.
 */
static int lzma_sect(struct vcdiff_enc *e, int kind, const struct bytes *in,
		     struct bytes *z)
{
	lzma_filter filters[2] = {
		{ .id = LZMA_FILTER_LZMA2, .options = &e->lzopt[kind] },
		{ .id = LZMA_VLI_UNKNOWN, .options = NULL },
	};
	lzma_block blk;
	int rc;

	z->len = 0;
	if ((rc = bytes_reserve(z, 10 + LZMA_STREAM_HEADER_SIZE +
				LZMA_BLOCK_HEADER_SIZE_MAX + in->len / 8 +
				4096)) < 0)
		return rc;
	put_var(z, in->len);
	if (!e->sh_done[kind]) {
		lzma_stream_flags f = { .version = 0,
					.check = LZMA_CHECK_NONE };
		if (lzma_stream_header_encode(&f, z->p + z->len) != LZMA_OK)
			return -EINVAL;
		z->len += LZMA_STREAM_HEADER_SIZE;
	}
	memset(&blk, 0, sizeof(blk));
	blk.version = 0;
	blk.check = LZMA_CHECK_NONE;
	blk.filters = filters;
	blk.compressed_size = LZMA_VLI_UNKNOWN;
	blk.uncompressed_size = LZMA_VLI_UNKNOWN;
	if (lzma_block_header_size(&blk) != LZMA_OK ||
	    lzma_block_header_encode(&blk, z->p + z->len) != LZMA_OK)
		return -EINVAL;
	z->len += blk.header_size;
	/* Re-initialising the same lzma_stream reuses its match finder when
	 * the options are unchanged, which they are for a whole patch. */
	lzma_ret lr = lzma_block_encoder(&e->lz, &blk);
	if (lr != LZMA_OK)
		return lr == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL;
	e->lz_live = 1;
	e->lz.next_in = in->p;
	e->lz.avail_in = in->len;
	for (;;) {
		if (z->cap - z->len < 4096 &&
		    (rc = bytes_reserve(z, z->cap / 2 + 4096)) < 0)
			return rc;
		e->lz.next_out = z->p + z->len;
		e->lz.avail_out = z->cap - z->len;
		lr = lzma_code(&e->lz, LZMA_FINISH);
		z->len = z->cap - e->lz.avail_out;
		if (lr == LZMA_STREAM_END)
			return 0;
		if (lr != LZMA_OK)
			return lr == LZMA_MEM_ERROR ? -ENOMEM : -EIO;
	}
}

/*
 * Compresses the window's sections where it pays. Returns the delta
 * indicator and points sect[k] at what goes into the file, or -errno.
 */
static int compress_window(struct vcdiff_enc *e, const struct bytes *sect[3])
{
	static const int bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
				    VCDIFF_DEL_ADDR };
	int del_ind = 0, rc;

	if (e->o.secondary != VCDIFF_SEC_LZMA_WINDOWED)
		return 0;
	for (int k = 0; k < 3; k++) {
		if (sect[k]->len < SEC_MIN_INPUT)
			continue;
		if ((rc = lzma_sect(e, k, sect[k], &e->zsec[k])) < 0)
			return rc;
		if (e->zsec[k].len + SEC_MIN_SAVINGS >= sect[k]->len)
			continue;
		e->sh_done[k] = 1;
		sect[k] = &e->zsec[k];
		del_ind |= bit[k];
	}
	return del_ind;
}

/*
 * Writes the open window: target bytes [e->win_abs, end) whose first byte
 * is tw[0], with the instructions in e->ins. Resets the window state.
 */
static int flush_window(struct vcdiff_enc *e, const uint8_t *tw, uint64_t end)
{
	uint64_t tgtlen = end - e->win_abs;
	uint64_t lo = e->have_copy ? e->seg_lo : 0;
	uint64_t cpylen = e->have_copy ? e->seg_hi - e->seg_lo : 0;
	struct vcdiff_acache *ac = NULL;
	int rc;

	e->data.len = e->inst.len = e->addr.len = 0;
	/* Upper bounds: data <= tgtlen + runs; inst <= 1 + 2 varints per
	 * instruction; addr <= 10 per copy. */
	if ((rc = bytes_reserve(&e->data, tgtlen + e->nins)) < 0 ||
	    (rc = bytes_reserve(&e->inst, e->nins * 12 + 16)) < 0 ||
	    (rc = bytes_reserve(&e->addr, e->nins * 10 + 16)) < 0)
		return rc;
	ac = calloc(1, sizeof(*ac));
	if (!ac)
		return -ENOMEM;

	for (size_t i = 0; i < e->nins; i++) {
		const struct vcdiff_op *op = &e->ins[i];
		const struct vcdiff_op *nx = i + 1 < e->nins ? &e->ins[i + 1] : NULL;

		if (op->kind == VCDIFF_OP_RUN) {
			put_byte(&e->inst, 0);
			put_var(&e->inst, op->len);
			put_byte(&e->data, op->byte);
			continue;
		}
		if (op->kind == VCDIFF_OP_ADD) {
			memcpy(e->data.p + e->data.len, tw + (op->tgt_off - e->win_abs),
			       op->len);
			e->data.len += op->len;
			if (op->len <= 4 && nx && nx->kind != VCDIFF_OP_ADD &&
			    nx->kind != VCDIFF_OP_RUN && nx->len <= 6) {
				uint64_t a = u_addr(e, nx, lo, cpylen), v;
				uint64_t here = cpylen + (nx->tgt_off - e->win_abs);
				int sz, m = pick_mode(ac, a, here, &v, &sz);
				int opc = -1;
				if (m <= 5 && nx->len >= 4)
					opc = 163 + 12 * m + 3 * (op->len - 1) +
					      (nx->len - 4);
				else if (m >= 6 && nx->len == 4)
					opc = 235 + 4 * (m - 6) + (op->len - 1);
				if (opc >= 0) {
					put_byte(&e->inst, (uint8_t)opc);
					put_addr(&e->addr, m, v);
					vcdiff_acache_update(ac, (uint32_t)a);
					i++;
					continue;
				}
			}
			if (op->len <= 17) {
				put_byte(&e->inst, (uint8_t)(op->len + 1));
			} else {
				put_byte(&e->inst, 1);
				put_var(&e->inst, op->len);
			}
			continue;
		}
		/* COPY from the source segment or from earlier in T */
		uint64_t a = u_addr(e, op, lo, cpylen), v;
		uint64_t here = cpylen + (op->tgt_off - e->win_abs);
		int sz, m = pick_mode(ac, a, here, &v, &sz);
		put_addr(&e->addr, m, v);
		vcdiff_acache_update(ac, (uint32_t)a);
		if (op->len == 4 && nx && nx->kind == VCDIFF_OP_ADD &&
		    nx->len == 1) {
			put_byte(&e->inst, (uint8_t)(247 + m));
			put_byte(&e->data, tw[nx->tgt_off - e->win_abs]);
			i++;
			continue;
		}
		if (op->len >= 4 && op->len <= 18) {
			put_byte(&e->inst, (uint8_t)(19 + 16 * m + (op->len - 3)));
		} else {
			put_byte(&e->inst, (uint8_t)(19 + 16 * m));
			put_var(&e->inst, op->len);
		}
	}
	free(ac);

	const struct bytes *sect[3] = { &e->data, &e->inst, &e->addr };
	int del_ind = compress_window(e, sect);
	if (del_ind < 0)
		return del_ind;

	/* Header: [file header] win_ind [cpylen cpyoff] enclen tgtlen delind
	 * datalen instlen addrlen adler32. */
	uint8_t hdr[80];
	size_t h = 0;
	if (e->windows == 0) {
		hdr[h++] = 0xD6;
		hdr[h++] = 0xC3;
		hdr[h++] = 0xC4;
		hdr[h++] = 0x00;
		/* no code table, no app header; the secondary id even if no
		 * section ends up compressed, which decoders accept */
		if (e->o.secondary == VCDIFF_SEC_LZMA_WINDOWED) {
			hdr[h++] = VCDIFF_HDR_SECONDARY;
			hdr[h++] = VCDIFF_SEC_LZMA;
		} else {
			hdr[h++] = 0x00;
		}
	}
	hdr[h++] = (uint8_t)(VCDIFF_WIN_ADLER32 |
			     (e->have_copy ? VCDIFF_WIN_SOURCE : 0));
	if (e->have_copy) {
		h += put_varint(hdr + h, cpylen);
		h += put_varint(hdr + h, lo);
	}
	uint64_t enclen = (uint64_t)vlen(tgtlen) + 1 + vlen(sect[0]->len) +
		vlen(sect[1]->len) + vlen(sect[2]->len) + 4 + sect[0]->len +
		sect[1]->len + sect[2]->len;
	h += put_varint(hdr + h, enclen);
	h += put_varint(hdr + h, tgtlen);
	hdr[h++] = (uint8_t)del_ind;
	h += put_varint(hdr + h, sect[0]->len);
	h += put_varint(hdr + h, sect[1]->len);
	h += put_varint(hdr + h, sect[2]->len);
	uint32_t ad = vcdiff_adler32(1, tw, (size_t)tgtlen);
	hdr[h++] = (uint8_t)(ad >> 24);
	hdr[h++] = (uint8_t)(ad >> 16);
	hdr[h++] = (uint8_t)(ad >> 8);
	hdr[h++] = (uint8_t)ad;

	/* ADD addresses: patch file offsets, or offsets in the decompressed
	 * data section when it is stored compressed (vcdiff.h). */
	uint64_t data_off = (del_ind & VCDIFF_DEL_DATA) ? 0 :
			    e->patch_size + h;
	if ((rc = write_all(e, hdr, h)) < 0 ||
	    (rc = write_all(e, sect[0]->p, sect[0]->len)) < 0 ||
	    (rc = write_all(e, sect[1]->p, sect[1]->len)) < 0 ||
	    (rc = write_all(e, sect[2]->p, sect[2]->len)) < 0)
		return rc;
	e->windows++;

	if (e->o.on_op) {
		uint64_t d = data_off;
		for (size_t i = 0; i < e->nins; i++) {
			struct vcdiff_op op = e->ins[i];
			if (op.kind == VCDIFF_OP_ADD) {
				op.addr = d;
				d += op.len;
			} else if (op.kind == VCDIFF_OP_RUN) {
				op.addr = 0;
				d++;
			}
			if ((rc = e->o.on_op(e->o.op_ctx, &op)) < 0)
				return rc;
		}
	}
	e->nins = 0;
	e->have_copy = 0;
	e->win_abs = end;
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
			rc = flush_window(e, ms->t + (e->win_abs - e->buf_abs), end);
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

/* Matches buffer bytes [0, n) (e->buf, target offset e->buf_abs) and writes
 * every window that completes; the last one ends at the buffer's end. */
static int encode_buf(struct vcdiff_enc *e)
{
	struct mstate ms = { .t = e->buf, .n = e->buf_len, .lit = 0 };
	const uint8_t *t = e->buf;
	size_t n = e->buf_len, p = 0;
	uint64_t ring[PF];
	size_t hend = 0;	/* ring holds hashes of [hend - PF, hend) */
	uint64_t h = 0;		/* rolling hash of t[hend - 1, +K) */
	int rc = 0;

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
	return flush_window(e, t + (e->win_abs - e->buf_abs), e->buf_abs + n);
}

/* --- API --- */

int vcdiff_enc_new(struct vcdiff_enc **out, const struct vcdiff_enc_opts *o,
		   uint64_t src_size, vcdiff_read_fn read_src, void *src_ctx,
		   vcdiff_write_fn write_out, void *out_ctx)
{
	struct vcdiff_enc *e;
	int rc = -ENOMEM;

	*out = NULL;
	if (!write_out || (src_size && !read_src))
		return -EINVAL;
	if (o && o->win_size > VCDIFF_WIN_MAX)
		return -EINVAL;
	if (o && o->secondary != VCDIFF_SEC_NONE &&
	    o->secondary != VCDIFF_SEC_LZMA_WINDOWED)
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
	e->cont_min = CONT_MIN;
	e->tmatch = 1;
	if (e->o.secondary == VCDIFF_SEC_LZMA_WINDOWED) {
		uint32_t preset = e->o.lzma_preset ? e->o.lzma_preset :
				  VCDIFF_LZMA_PRESET_DEFAULT;
		if ((preset & ~VCDIFF_LZMA_EXTREME) > 9 ||
		    lzma_lzma_preset(&e->lzopt[0], preset)) {
			rc = -EINVAL;
			goto fail;
		}
		/* A section never exceeds about a window and each one is
		 * compressed alone: a larger dictionary would cost encoder
		 * and decoder memory and find nothing more. */
		uint32_t dict = LZMA_DICT_SIZE_MIN;
		while (dict < e->win_cap && dict < e->lzopt[0].dict_size)
			dict *= 2;
		e->lzopt[0].dict_size = dict;
		/* No section has a 2- or 4-byte structure that positions
		 * would predict (pb = lp = 0), and addresses hardly depend
		 * on the byte before (lc = 1). Measured on real QEMU and
		 * snapgen pairs, per kind: 0.35% and 0.6% smaller patches. */
		e->lzopt[0].lp = e->lzopt[0].pb = 0;
		e->lzopt[1] = e->lzopt[2] = e->lzopt[0];
		e->lzopt[2].lc = 1;
		/* lzma finds repeats among the literals itself, for less
		 * than a COPY's opcode and address, and a literal stream
		 * cut by short copies compresses worse: no target matching,
		 * longer continuation copies (measured below). */
		e->cont_min = CONT_MIN_LZMA;
		e->tmatch = 0;
	}
	e->buf = malloc(e->win_cap);
	e->ttab = malloc((sizeof(uint32_t) * TT_WAYS) << TT_BITS);
	if (!e->buf || !e->ttab)
		goto fail;

	e->poly_out = 1;
	for (int i = 0; i < KEY_LEN - 1; i++)
		e->poly_out *= POLY_M;

	if (src_size >= KEY_LEN) {
		size_t budget = e->o.index_budget ? e->o.index_budget :
				DEFAULT_BUDGET;
		uint64_t nb = 1;	/* buckets: a power of two */
		/* Entries hold a 32-bit block number + 1 and there are up to
		 * INDEX_LOAD blocks per entry: at most 2^30 entries. */
		while (nb * 2 * BUCKET_WAYS * sizeof(uint64_t) <= budget &&
		       nb * 2 * BUCKET_WAYS <= ((uint64_t)1 << 30))
			nb *= 2;
		/* Smallest B with at most INDEX_LOAD blocks per entry. */
		e->bshift = MIN_BLOCK_SHIFT;
		while ((src_size >> e->bshift) > INDEX_LOAD * nb * BUCKET_WAYS)
			e->bshift++;
		/* Shrink the table for small sources: load >= 1/4. */
		uint64_t nblk = (src_size >> e->bshift) + 1;
		while (nb > 1 && nb / 2 * BUCKET_WAYS >= 2 * nblk)
			nb /= 2;
		e->bmask = nb - 1;
		e->tab = calloc(nb * BUCKET_WAYS, sizeof(uint64_t));
		if (!e->tab)
			goto fail;
	}
	/* Source cache; also the read buffer while indexing. */
	size_t scm = SC_CHUNK * SC_SLOTS;
	size_t bsz = (size_t)1 << e->bshift;
	if (scm < INDEX_READ)
		scm = INDEX_READ;
	if (scm < bsz)
		scm = bsz;
	e->sc_mem = malloc(scm);
	if (!e->sc_mem)
		goto fail;
	for (int i = 0; i < SC_SLOTS; i++)
		e->sc[i].data = e->sc_mem + (size_t)i * SC_CHUNK;
	if (e->tab && (rc = build_index(e)) < 0)
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

	if (e->err)
		return e->err;
	if (e->finished)
		return -EINVAL;
	while (len > 0) {
		size_t n = e->win_cap - e->buf_len;
		if (n > len)
			n = len;
		memcpy(e->buf + e->buf_len, p, n);
		e->buf_len += n;
		p += n;
		len -= n;
		if (e->buf_len == e->win_cap) {
			int rc = encode_buf(e);
			if (rc < 0)
				return e->err = rc;
			e->buf_abs += e->buf_len;
			e->buf_len = 0;
		}
	}
	return 0;
}

int vcdiff_enc_finish(struct vcdiff_enc *e)
{
	if (e->err)
		return e->err;
	if (e->finished)
		return 0;
	if (e->buf_len > 0 || e->windows == 0) {
		int rc = encode_buf(e);
		if (rc < 0)
			return e->err = rc;
		e->buf_abs += e->buf_len;
		e->buf_len = 0;
	}
	e->finished = 1;
	return 0;
}

uint64_t vcdiff_enc_patch_size(const struct vcdiff_enc *e)
{
	return e->patch_size;
}

uint64_t vcdiff_enc_target_size(const struct vcdiff_enc *e)
{
	return e->buf_abs + e->buf_len;
}

void vcdiff_enc_free(struct vcdiff_enc *e)
{
	if (!e)
		return;
	free(e->tab);
	free(e->sc_mem);
	free(e->buf);
	free(e->ttab);
	free(e->ins);
	free(e->data.p);
	free(e->inst.p);
	free(e->addr.p);
	for (int k = 0; k < 3; k++)
		free(e->zsec[k].p);
	if (e->lz_live)
		lzma_end(&e->lz);
	free(e);
}
