/* SPDX-License-Identifier: MIT */
/*
 * bslab: the block cache's buffer memory, in huge-page slabs.
 *
 * Why. A fresh mount's cache fills new memory, and each 4 KiB page of it
 * costs a page fault on first touch, which on some VMs (this project's
 * 2-core test machine, a PVM guest) is most of the cost: touching fresh
 * 4 KiB pages ran at 400 MB/s there, transparent huge pages at 9-12 GB/s
 * once the host had backed them (2026-12-06, a C loop over 256 MiB). A
 * cold read of a 544 MB state through a fresh mount spent 33% of the
 * daemon's samples in the kernel's copy out of such pages; with stream
 * buffers in huge pages, the daemon's CPU for that read was 64-83
 * jiffies against 75-160 (four fresh mounts each, alternating).
 *
 * What. Buffers asked for in bulk (a stream's blocks decoded ahead) of
 * up to half a slab (SLAB = 2 MiB, one x86-64 huge page) are carved from
 * 2 MiB-aligned slabs of one size each, marked MADV_HUGEPAGE; larger
 * buffers are mapped on their own, 2 MiB-aligned and marked the same
 * when they span a huge page. A single buffer (a random reader's miss)
 * gets its own pages: a new slab costs its whole huge page at once
 * (zeroed, and on this VM backed anew: up to 4 ms), which a stream's
 * readahead pays off the reader's path, but a random read would pay in
 * its latency (p99 of 4 KiB reads at depth 100 went from 1.0-1.4 to
 * 4.2-4.4 ms when every buffer came from slabs). A buffer that is put
 * back is returned to the kernel at once (MADV_DONTNEED; munmap when it
 * was its slab's last), so resident memory stays what the caller holds
 * plus the slabs' unused tails (bslab.c); the caller's own reuse
 * of buffers (bcache recycles them) is what keeps the huge pages. Where
 * THP is off, the slabs are ordinary pages and nothing else changes.
 *
 * Not here: size classes and budgets (bcache), small buffers (malloc).
 * Thread-safe: one internal lock, a leaf; the mapping calls run outside
 * it.
 */
#ifndef SNAPFS_CACHE_BSLAB_H
#define SNAPFS_CACHE_BSLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bslab;

struct bslab_stats {
	uint64_t slabs;		/* slabs mapped now */
	uint64_t slab_bytes;	/* their bytes */
	uint64_t large;		/* buffers over half a slab, now */
	uint64_t slots_used;	/* buffers handed out of slabs, now */
};

/* Returns a new allocator, or NULL without memory. Free with bslab_free. */
struct bslab *bslab_new(void);

/*
 * Unmaps every slab, including buffers never put back (the caller's
 * pointers into them become invalid), and frees a. NULL is a no-op.
 */
void bslab_free(struct bslab *a);

/*
 * Returns a zero-filled, page-aligned buffer of cap bytes (cap a multiple
 * of the page size, > 0), from a slab if bulk, or NULL without memory.
 * The caller owns it until bslab_put with the same cap.
 */
uint8_t *bslab_get(struct bslab *a, size_t cap, bool bulk);

/* Gives back a buffer from bslab_get of the same cap. NULL is a no-op. */
void bslab_put(struct bslab *a, uint8_t *p, size_t cap);

void bslab_get_stats(struct bslab *a, struct bslab_stats *st);

#endif
