/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_sidx: the encoder's source index (the block hash table of
 * vcdiff_match.c), built from bytes as they pass by instead of by reading
 * the source, and kept (by the caller) for the next encode.
 *
 * Why: a write into the mount encodes against the snapshot written just
 * before it. Indexing that parent at the start of the write reads it
 * once more through the chain (a zstd decode or a walk through the
 * patches) only to hash it, on the writer's critical path: 0.45-0.64 s
 * of 1.4-2.1 s per 224 MB QEMU state, 1-2 s per GiB (README.md,
 * Benchmarks). The same keys can be hashed while that parent was itself
 * being written, when its bytes pass by anyway: the next encode then
 * uses the table and reads the parent only along its matches.
 *
 * The feed only hashes, into a list with one key per block; the table,
 * whose every insert is a cache miss, is built from the list once the
 * size is known (vcdiff_sidx_end), on a thread of its own, so that the
 * writer's CPU goes to the write while it streams. Fed the same bytes, a
 * builder yields the very table vcdiff_enc would build (same keys, same
 * order of inserts, the shape a fresh index of that size has), so the
 * patch is the same byte for byte; a builder whose size guess was too
 * small doubles B on the way, keeping the keys at even blocks, which is
 * what hashing at that B gives. The index only proposes candidates:
 * every match is verified against the source bytes, so a stale or
 * damaged index can cost patch size, never correctness.
 *
 * Not here: where the index is kept and which source it belongs to (the
 * caller's business). Threads: one thread at a time per index; the build
 * thread that vcdiff_sidx_end starts is the index's own, joined by
 * vcdiff_sidx_ready or vcdiff_sidx_free.
 */
#ifndef SNAPFS_CODEC_VCDIFF_SIDX_H
#define SNAPFS_CODEC_VCDIFF_SIDX_H

#include <stddef.h>
#include <stdint.h>

struct vcdiff_sidx;

/*
 * Memory: fresh anonymous memory is dear where the kernel zeroes it at
 * first touch and a hypervisor maps it (here: 114-140 ms per 64 MiB,
 * against 1 ms to rewrite memory already mapped; a profile of a 533 MB
 * write had 10.5% of the daemon's samples zeroing the list and the
 * table). So the memory goes from one index to the next: a build keeps
 * its key list as a spare, the next builder takes it (from), and the
 * next end hands the index it replaces (old) to the build, whose table
 * memory becomes the new table. A chain of writes then maps no new
 * memory for its indexes; the price is the spare, held between writes
 * (vcdiff_sidx_held counts it).
 */

/*
 * A builder for the index of a source of about guess bytes (0: unknown,
 * sized for the largest table), for an encoder with index_budget budget
 * (0: the default). from (may be NULL; not being built: its
 * vcdiff_sidx_ready returned) lends its spare key list if it is large
 * enough, and keeps its table. 0 or -ENOMEM.
 */
int vcdiff_sidx_new(struct vcdiff_sidx **out, uint64_t guess, size_t budget,
		    struct vcdiff_sidx *from);
/* The source's next len bytes, in order. */
void vcdiff_sidx_feed(struct vcdiff_sidx *x, const void *buf, size_t len);
/*
 * Ends the builder: from now on it is the index of the bytes fed. 0, or
 * -ESTALE when its shape cannot become the one the encoder picks for that
 * size (the guess was far too small): then it is of no use. On 0 the
 * table is being built on a thread of its own (the feed only hashed);
 * vcdiff_sidx_ready waits for it, and the key list is kept as x's spare.
 * old (may be NULL; no encoder may use it any more) is freed here, in
 * any case; on 0 its table's memory, if large enough, becomes x's table.
 */
int vcdiff_sidx_end(struct vcdiff_sidx *x, struct vcdiff_sidx *old);
/*
 * Waits for the table's build that vcdiff_sidx_end started. 0: x may be
 * given to an encoder (vcdiff_enc_opts.sidx); -ENOMEM or -ESTALE (not
 * ended): it is of no use.
 */
int vcdiff_sidx_ready(struct vcdiff_sidx *x);
/* Bytes of memory a builder (or a loaded index) for guess bytes holds. */
size_t vcdiff_sidx_mem(uint64_t guess, size_t budget);
/* Bytes x holds: its key list while fed; once ended (also while its
 * table is being built), its table and its spare. */
size_t vcdiff_sidx_held(const struct vcdiff_sidx *x);

/* 1 if x is an ended index of a source of size bytes, of the shape an
 * encoder with index_budget budget picks (vcdiff_enc_opts.sidx), else 0. */
int vcdiff_sidx_fits(const struct vcdiff_sidx *x, uint64_t size,
		     size_t budget);

void vcdiff_sidx_free(struct vcdiff_sidx *x);

#endif
