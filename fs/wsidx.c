/* SPDX-License-Identifier: MIT */
/*
 * wsidx: the writer's source index (codec/vcdiff_sidx.h). While a file is
 * written into the mount, the keys of its bytes are hashed as they go to
 * the sink, into the table the next write's encoder needs for this file
 * as its parent; published, the table is kept in .snapfs/tmp/SIDX_FILE
 * under a tag naming the snapshot (id, size, digest of its full state).
 * The next writer loads it instead of reading the parent through the
 * chain only to index it.
 *
 * Decision, from the profile (README.md, Benchmarks; perf record -g of
 * the daemon during a 1 GiB write): the index pass at create was a third
 * of a write's time (QEMU 224 MB states: 0.45-0.64 s of 1.4-2.1 s; 1 GiB:
 * 1-2 s), with the whole FUSE thread blocked in it and the parent decoded
 * a second time later by the matching. Hashing the same keys on the
 * FUSE thread while the bytes stream in costs a fraction of that, on a
 * thread that otherwise waits for the encoder's workers.
 *
 * One file, for the snapshot written last: the next write is usually on
 * top of it. It is a hint: in tmp/ (cleared at each mount, so never
 * stale across a remount), written without fsync, checked at load
 * (codec: shape, size, tag, checksum), and the encoder verifies every
 * candidate against the parent's bytes anyway: a wrong table can cost
 * patch size, never a wrong patch. A head spliced after a late fix-up
 * leaves the keys of the old head in it: the same (a hint). Not kept for
 * small files (under SIDX_MIN: indexing them costs little, and the table
 * would be as large as the file), nor in a store with a capacity bound
 * (tmp/ counts against it).
 *
 * Memory: the builder's table (64 MiB for the default index budget) is
 * lent out of the block cache's budget with the encoder's (writer.c).
 */
#include "fs/writer.h"
#include "fs/writer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codec/vcdiff_sidx.h"
#include "fs/safefile.h"
#include "fs/tree.h"

#define SIDX_FILE "source.sidx"
#define SIDX_MIN ((uint64_t)32 << 20)

static void tag_of(uint8_t tag[VCDIFF_SIDX_TAG], uint32_t id, uint64_t size,
		   const char *digest)
{
	memset(tag, 0, VCDIFF_SIDX_TAG);
	snprintf((char *)tag, VCDIFF_SIDX_TAG, "%u %llu %s", id,
		 (unsigned long long)size, digest);
}

static int wanted(const struct writer *w)
{
	return store_max(w->s) == 0;
}

size_t wr_sidx_mem(const struct writer *w)
{
	if (!wanted(w) || (!w->base && w->parent_size < SIDX_MIN))
		return 0;
	return vcdiff_sidx_mem(w->base ? 0 : w->parent_size, 0);
}

void wr_sidx_load(struct writer *w)
{
	const struct tree_node *n;
	uint8_t tag[VCDIFF_SIDX_TAG];
	uint32_t pid;
	int fd;

	if (w->base || !wanted(w) || w->parent_size < SIDX_MIN)
		return;
	pid = chain_layer_id(w->parent);
	n = tree_get(store_tree(w->s), pid);
	if (!n || !n->digest[0])
		return;
	fd = openat(wr_tmpdir(w), SIDX_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	tag_of(tag, pid, w->parent_size, n->digest);
	if (vcdiff_sidx_load(&w->sidx_src, fd, w->parent_size, 0, tag))
		w->sidx_src = NULL;	/* another snapshot's, or damaged */
	close(fd);
}

void wr_sidx_start(struct writer *w)
{
	vcdiff_sidx_free(w->sidx_new);
	w->sidx_new = NULL;
	if (wr_sidx_mem(w) && vcdiff_sidx_new(&w->sidx_new, w->base ? 0 :
					      w->parent_size, 0))
		w->sidx_new = NULL;	/* only a hint: go without */
}

void wr_sidx_feed(struct writer *w, const void *buf, size_t len)
{
	if (w->sidx_new)
		vcdiff_sidx_feed(w->sidx_new, buf, len);
}

void wr_sidx_save(struct writer *w, const char *digest)
{
	uint8_t tag[VCDIFF_SIDX_TAG];
	char tmp[360];
	int fd, rc;

	if (!w->sidx_new || w->size < SIDX_MIN ||
	    vcdiff_sidx_end(w->sidx_new)) {
		vcdiff_sidx_free(w->sidx_new);
		w->sidx_new = NULL;
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.%ld.sidx", w->file, (long)getpid());
	fd = safefile_create(wr_tmpdir(w), tmp, 0600, NULL);
	rc = fd < 0 ? fd : 0;
	tag_of(tag, w->id, w->size, digest);
	if (!rc)
		rc = vcdiff_sidx_save(w->sidx_new, fd, tag);
	if (fd >= 0)
		close(fd);
	/* The one kept replaces the last one, whole or not at all. */
	if (!rc && renameat(wr_tmpdir(w), tmp, wr_tmpdir(w), SIDX_FILE) < 0)
		rc = -errno;
	if (rc && fd >= 0)
		unlinkat(wr_tmpdir(w), tmp, 0);
	vcdiff_sidx_free(w->sidx_new);
	w->sidx_new = NULL;
}
