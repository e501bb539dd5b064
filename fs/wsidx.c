/* SPDX-License-Identifier: MIT */
/*
 * wsidx: the writer's source index (codec/vcdiff_sidx.h). While a file is
 * written into the mount, the keys of its bytes are hashed as they go to
 * the sink, into the table the next write's encoder needs for this file
 * as its parent; published, the table is left to the next writer in
 * memory (chain_hint_put) under a tag naming the snapshot (id, size,
 * digest of its full state). The next writer takes it instead of reading
 * the parent through the chain only to index it.
 *
 * Decision, from the profile (README.md, Benchmarks; perf record -g of
 * the daemon during a 1 GiB write): the index pass at create was a third
 * of a write's time (QEMU 224 MB states: 0.45-0.64 s of 1.4-2.1 s; 1 GiB:
 * 1-2 s), with the whole FUSE thread blocked in it and the parent decoded
 * a second time later by the matching. Hashing the same keys on the
 * FUSE thread while the bytes stream in costs a fraction of that, on a
 * thread that otherwise waits for the encoder's workers.
 *
 * Kept in memory, not in a file: it was saved to .snapfs/tmp, which every
 * store_open sweeps, so only the same process ever loaded it, and the
 * save wrote 64 MiB of page cache in the commit (0.08-0.22 s on this
 * machine, `dd bs=64M count=1`), which a create right after waits for.
 * Held between writes, its 64 MiB are lent out of the block cache's
 * budget (the writer lends them anyway while it writes), so the process
 * stays within its budget. One hint, for the snapshot written last: a
 * write on top of another snapshot drops it. It is a hint: the encoder
 * verifies every candidate against the parent's bytes, so a wrong table
 * can cost patch size, never a wrong patch. A head spliced after a late
 * fix-up leaves the keys of the old head in it: the same (a hint). Not
 * kept for small files (under SIDX_MIN: indexing them costs little).
 *
 * Memory: the builder's key list, then its table (64 MiB each for the
 * default index budget), is lent out of the block cache's budget with the
 * encoder's (writer.c). The table is built at the commit, on a thread of
 * the index's own (codec/vcdiff_sidx.h), in the memory of the parent's
 * table, which is no longer needed; the key list stays as the spare that
 * the next write's builder takes. So a chain of writes maps no fresh
 * memory for its indexes (fresh memory was 10.5% of a write's samples
 * here), at the price of holding the list between writes: the hint
 * lends table and list (128 MiB) out of the cache budget, what the write
 * itself held. The next write waits for the build if it comes before
 * the build ends (wr_sidx_take).
 */
#include "fs/writer.h"
#include "fs/writer_int.h"

#include <stdio.h>
#include <string.h>

#include "codec/vcdiff_sidx.h"
#include "fs/tree.h"

#define SIDX_MIN ((uint64_t)32 << 20)

static void tag_of(char tag[CHAIN_HINT_TAG], uint32_t id, uint64_t size,
		   const char *digest)
{
	snprintf(tag, CHAIN_HINT_TAG, "sidx %u %llu %s", id,
		 (unsigned long long)size, digest);
}

size_t wr_sidx_mem(const struct writer *w)
{
	if (!w->base && w->parent_size < SIDX_MIN)
		return 0;
	return vcdiff_sidx_mem(w->base ? 0 : w->parent_size, 0);
}

static void sidx_free(void *x)
{
	vcdiff_sidx_free(x);
}

void wr_sidx_take(struct writer *w)
{
	const struct tree_node *n;
	char tag[CHAIN_HINT_TAG] = "";
	struct vcdiff_sidx *x;
	uint32_t pid;

	if (!w->base && w->parent_size >= SIDX_MIN) {
		pid = chain_layer_id(w->parent);
		n = tree_get(store_tree(w->s), pid);
		if (n && n->digest[0])
			tag_of(tag, pid, w->parent_size, n->digest);
	}
	/* Taken (or dropped, if it is another's) whatever this write is. */
	x = chain_hint_take(w->c, tag);
	/* Its table was built after the parent's close (vcdiff_sidx_end);
	 * by now, unless this write came right after. */
	if (x && (vcdiff_sidx_ready(x) ||
		  !vcdiff_sidx_fits(x, w->parent_size, 0))) {
		vcdiff_sidx_free(x);
		x = NULL;
	}
	w->sidx_src = x;
}

void wr_sidx_start(struct writer *w)
{
	vcdiff_sidx_free(w->sidx_new);
	w->sidx_new = NULL;
	/* The parent's index lends its spare key list: no fresh memory
	 * (codec/vcdiff_sidx.h). */
	if (wr_sidx_mem(w) && vcdiff_sidx_new(&w->sidx_new, w->base ? 0 :
					      w->parent_size, 0, w->sidx_src))
		w->sidx_new = NULL;	/* only a hint: go without */
}

void wr_sidx_feed(struct writer *w, const void *buf, size_t len)
{
	if (w->sidx_new)
		vcdiff_sidx_feed(w->sidx_new, buf, len);
}

void wr_sidx_keep(struct writer *w, const char *digest)
{
	char tag[CHAIN_HINT_TAG];

	/* The parent's table goes (vcdiff_sidx_end frees it, in any case):
	 * its memory becomes the new table, being built now next to the
	 * key list, so that the two are what the write itself held. A
	 * later encode of this writer (an append after this commit)
	 * indexes the parent itself. */
	struct vcdiff_sidx *old = w->sidx_src, *x = w->sidx_new;

	w->sidx_src = w->sidx_new = NULL;
	if (!x || w->size < SIDX_MIN) {
		vcdiff_sidx_free(old);
		vcdiff_sidx_free(x);
		return;
	}
	if (vcdiff_sidx_end(x, old)) {	/* old freed in any case */
		vcdiff_sidx_free(x);
		return;
	}
	/* Lent while held: the table and the spare key list the next
	 * write's builder takes. */
	tag_of(tag, w->id, w->size, digest);
	chain_hint_put(w->c, tag, x, vcdiff_sidx_held(x), sidx_free);
}
