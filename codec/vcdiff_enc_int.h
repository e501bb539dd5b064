/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_enc_int: what the encoder's three files share and nothing else
 * sees (STYLE.md 2.1 rule 6). The encoder is split by stage:
 *
 *   codec/vcdiff_enc.c    vcdiff_enc_*   the API, and the pipeline that
 *                                        runs the stages on the caller's
 *                                        thread or on workers
 *   codec/vcdiff_match.c  enc_match_*    the source index and matching:
 *                                        target bytes -> windows of ops
 *   codec/vcdiff_ewin.c   enc_ewin_*     writing a matched window: code
 *                                        table, address modes, secondary
 *                                        compression, the sinks
 *
 * Each group of fields of struct vcdiff_enc belongs to one stage, which
 * alone touches it; what passes between stages (slots of target bytes,
 * matched windows) goes through queues under e->mu. See vcdiff_enc.c.
 */
#ifndef SNAPFS_CODEC_VCDIFF_ENC_INT_H
#define SNAPFS_CODEC_VCDIFF_ENC_INT_H

#include <lzma.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "codec/vcdiff_enc.h"
#include "codec/vcdiff_int.h"

/* --- tuning (the reasons are at the top of each stage's file) --- */

#define KEY_LEN 32			/* bytes hashed per key (K) */
#define MIN_BLOCK_SHIFT 5		/* B >= 32 = K */
#define BUCKET_WAYS 4
#define INDEX_LOAD 1			/* blocks per table entry, at most */
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

/* Slots of target bytes: one per stage that can hold one (vcdiff_enc.c). */
#define ENC_SLOTS_MAX 3

struct schunk {
	uint64_t tag;		/* chunk number + 1; 0 = empty */
	size_t len;		/* valid bytes (short at source EOF) */
	uint8_t *data;
};

struct bytes {
	uint8_t *p;
	size_t len, cap;
};

/* Up to a window of target bytes: filled by the caller, matched, then
 * its windows written; free again when the last of them is written. */
struct enc_slot {
	uint8_t *buf;		/* win_cap bytes */
	size_t len;		/* bytes in buf */
	uint64_t abs;		/* target offset of buf[0] */
	struct enc_slot *next;	/* in the match queue */
	/* protected by e->mu: */
	int busy;		/* handed over by the caller, not yet free */
	int matched;		/* all its windows are queued (or it failed) */
	unsigned pending;	/* its windows queued and not yet written */
};

/* A matched window waiting to be written. Recycled with its ins array. */
struct enc_win {
	struct enc_win *next;	/* in the output queue or the free list */
	struct enc_slot *slot;	/* holds its target bytes */
	const uint8_t *tw;	/* its first target byte */
	uint64_t tgt_off, tgt_len;
	struct vcdiff_op *ins;	/* its instructions, in target order */
	size_t nins, ins_cap;
	int have_copy;
	uint64_t seg_lo, seg_hi;	/* source span of its copies */
};

struct vcdiff_enc {
	struct vcdiff_enc_opts o;
	uint64_t src_size;
	vcdiff_read_fn read_src;
	void *src_ctx;
	vcdiff_write_fn write_out;
	void *out_ctx;
	uint32_t win_cap;
	atomic_int err;		/* sticky: the first error of any stage */

	/* --- the caller's (vcdiff_enc_write / finish) --- */
	struct enc_slot *fill;	/* the slot being filled, or NULL */
	uint64_t taken;		/* target bytes before fill's */
	int submitted;		/* a slot was handed over */
	int finished;

	/* --- the pipeline; lock order: mu is a leaf --- */
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* any change below */
	struct enc_slot slots[ENC_SLOTS_MAX];
	int nslots;
	/* protected by mu: */
	struct enc_slot *mq_head, *mq_tail;	/* slots to match (2 workers) */
	struct enc_win *oq_head, *oq_tail;	/* windows to write */
	struct enc_win *free_wins;
	int stop;
	pthread_t thr[2];
	int nthr;

	/* --- the match stage (vcdiff_match.c) --- */
	/* index */
	uint64_t *tab;		/* nbuckets * BUCKET_WAYS entries */
	int tab_borrowed;	/* opts.sidx's: not freed here */
	uint64_t bmask;		/* nbuckets - 1 */
	unsigned bshift;	/* log2(B) */
	uint64_t poly_out;	/* POLY_M^(KEY_LEN-1), to roll a byte out */
	/* source cache */
	uint8_t *sc_mem;
	struct schunk sc[SC_SLOTS];
	uint64_t seq_next;	/* chunk after the last one read */
	size_t ra_len;		/* chunks of the last read */
	/* the slot being matched */
	struct enc_slot *cur;
	uint8_t *buf;		/* cur->buf */
	size_t buf_len;
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

	/* --- the output stage (vcdiff_ewin.c) --- */
	struct bytes data, inst, addr;	/* sections of the window written */
	uint64_t patch_size;
	uint64_t windows;
	lzma_stream lz;			/* block encoder, reused per section */
	int lz_live;
	lzma_options_lzma lzopt[3];	/* per section kind */
	struct bytes zsec[3];		/* compressed data, inst, addr */
	int sh_done[3];			/* stream header written for kind */

	/* Times, each stage's own (vcdiff_enc_stats). */
	struct vcdiff_enc_stats st;
};

/* Monotonic clock in seconds. */
double enc_now(void);

/* Varints are vcdiff_int.h's, shared with the decoder. */
static inline int vlen(uint64_t v)
{
	return (int)vcdiff_varint_size(v);
}

static inline int put_varint(uint8_t *out, uint64_t v)
{
	return (int)vcdiff_varint_put(out, v);
}

/* --- the source index's keys, shared by matching (vcdiff_match.c) and
 * an index built elsewhere (vcdiff_sidx.c): the same bytes must give the
 * same table, whoever builds it. --- */

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

static inline int key_is_constant(const uint8_t *t)
{
	uint64_t w = load64(t);

	if (w != 0x0101010101010101ull * t[0])
		return 0;
	for (int i = 8; i < KEY_LEN; i += 8)
		if (load64(t + i) != w)
			return 0;
	return 1;
}

/* Inserts block blk under m, the mixed key hash (fmix64), into a table
 * of bmask + 1 buckets: first copy wins, a full bucket replaces one way
 * (see vcdiff_match.c). */
static inline void enc_table_insert(uint64_t *tab, uint64_t bmask,
				    uint64_t m, uint64_t blk)
{
	uint64_t *bk = tab + (m & bmask) * BUCKET_WAYS;
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

/*
 * The source table's memory (vcdiff_match.c), zeroed: n entries, backed
 * by transparent huge pages where the kernel offers them on request
 * (Debian's default "madvise"). Every insert and lookup lands on a random
 * entry of a table of tens of MiB, so with 4 KiB pages each is a TLB miss
 * too. The encoder's target slots (vcdiff_enc.c) use it as well: fresh
 * memory for each write, where huge pages save the page faults.
 * enc_table_shrink keeps the first n entries of a table of old entries.
 * NULL on failure; free with enc_table_free(tab, n).
 */
uint64_t *enc_table_alloc(uint64_t n);
void enc_table_shrink(uint64_t *tab, uint64_t old, uint64_t n);
void enc_table_free(uint64_t *tab, uint64_t n);

/* A source index (vcdiff_sidx.h): the table and its shape. */
struct vcdiff_sidx {
	uint64_t *tab;		/* nb * BUCKET_WAYS entries, once built */
	uint64_t nb;		/* buckets, a power of two */
	unsigned bshift;	/* log2(B) */
	uint64_t size;		/* source bytes fed (builder) or indexed */
	size_t budget;		/* index_budget it was sized for */
	int ended;		/* vcdiff_sidx_end() succeeded */
	/* builder: the next key's offset, and the last bytes fed (a key
	 * may straddle two feeds) */
	uint64_t next_key;
	uint8_t carry[KEY_LEN];
	size_t carry_len;
	/* keys[j]: the mixed hash (fmix64) of block j's key, 0 for none
	 * (a constant key); room for cap blocks, in a mapping of keys_n
	 * entries (more if it was another index's spare) */
	uint64_t *keys;
	uint64_t cap, keys_n;
	uint64_t tab_n;		/* entries of tab's mapping */
	/* Memory passed from index to index instead of fresh pages
	 * (vcdiff_sidx.h): the key list kept after the build (contents
	 * undefined), and the old table that end handed to the build. */
	uint64_t *spare, *reuse;
	uint64_t spare_n, reuse_n;
	size_t held;		/* vcdiff_sidx_held once ended */
	/* the table's build, on a thread of its own after end */
	pthread_t thr;
	int building;		/* thr runs or has not been joined */
	int build_rc;		/* its result */
};

/* --- vcdiff_enc.c --- */

/* The match stage ends the open window at target offset end (its bytes
 * start at tw): hands it, with e->ins and the segment, to the output
 * stage (written now, or queued for the worker), and opens the next.
 * 0 or -errno. */
int enc_window_close(struct vcdiff_enc *e, const uint8_t *tw, uint64_t end);

/* --- vcdiff_match.c --- */

/* Buckets of the source index for src_size bytes and an index_budget
 * (0: the default), with log2(B) in *bshift; 0 buckets: no index. */
uint64_t enc_match_size(uint64_t src_size, size_t budget, unsigned *bshift);
/* Bytes of the source cache for that B. */
size_t enc_match_sc_bytes(unsigned bshift);
/* Sizes and builds the source index (reads the whole source), and the
 * source cache. 0 or -errno (a read_src error passes through). */
int enc_match_init(struct vcdiff_enc *e);
/* Matches e->buf[0, e->buf_len) (target offset e->buf_abs) and closes
 * every window that completes; the last one ends at the buffer's end. */
int enc_match_buf(struct vcdiff_enc *e);
void enc_match_free(struct vcdiff_enc *e);

/* --- vcdiff_ewin.c --- */

/* The lzma options per section kind for o and windows of win_cap
 * bytes. 0 or -EINVAL. */
int enc_lzma_options(const struct vcdiff_enc_opts *o, uint32_t win_cap,
		     lzma_options_lzma lz[3]);
/* Secondary compression options from e->o. 0 or -EINVAL. */
int enc_ewin_init(struct vcdiff_enc *e);
/* Writes window j: header and sections to write_out, then on_op and
 * on_window. Leaves j's ins array to be reused. 0 or -errno. */
int enc_ewin_write(struct vcdiff_enc *e, struct enc_win *j);
void enc_ewin_free(struct vcdiff_enc *e);

#endif
