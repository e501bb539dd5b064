/* SPDX-License-Identifier: MIT */
/*
 * ibuild: building a layer's composed extent index from its parent's index
 * and its plain or windowed patch, as explained at the top of fs/chain.c:
 * ADDs become extents into the patch (for a compressed window, into its
 * decompressed data section: sfile_add_src), COPYs from the source become slices of the
 * parent's index, and target COPYs too fragmented to keep (and runs of
 * short extents) are materialised into the layer's aux file. Each window
 * is read back through the new index and its adler32 checked before the
 * next one.
 *
 * Not here: loading or saving indexes, opening files (fs/derive.c), the
 * index data structure (fs/xindex.c). Runs on the thread that opens the
 * layer, which no reader sees yet; it only queues readahead of the parent
 * (fs/readahead.c), whose index is final.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/vcdiff_dec.h"
#include "fs/safefile.h"
#include "fs/xindex.h"

/* A target copy may add at most this many extents before its bytes are
 * materialised into the aux file instead. */
#define SELF_COPY_MAX_EXT(len) (16 + (len) / 512)
/* Extents shorter than this, two or more in a row, are materialised. */
#define COMPACT_SHORT 256

/*
 * Appends len bytes to the aux file, returning their offset there. The
 * file grows under .snapfs/tmp and moves to .snapfs/aux when the index is
 * done (aux_finish), so a reader of an older version never sees an aux
 * file of the same name rewritten under it. Until then it has no blob
 * (blobs do not grow): it is written and read at L->aux.wfd.
 */
static int aux_append(struct chain *c, struct chain_layer *L,
		      const uint8_t *buf, size_t len, uint64_t *off)
{
	if (L->aux.wfd < 0) {
		char name[300], tmp[320];
		layer_derived_name(name, sizeof(name), L, L->aux_stamp, "aux");
		snprintf(tmp, sizeof(tmp), "aux.%s", name);
		int fd = safefile_create(store_subdir(c->s, "tmp"), tmp, 0644,
					 NULL);
		if (fd < 0)
			return fd;
		sfile_raw(c, L, &L->aux, NULL, 0, name);
		L->aux.wfd = fd;
		L->aux.derived = 1;
		snprintf(L->aux.label, sizeof(L->aux.label), "%s/aux/%s",
			 STORE_META_DIR, name);
	}
	*off = L->aux.size;
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(L->aux.wfd, buf + done, len - done,
				   (off_t)(L->aux.size + done));
		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	L->aux.size += len;
	return 0;
}

/* Moves a finished aux file into place, reads it through a blob from now
 * on and takes its checksums; drops an unfinished one. */
static int aux_finish(struct chain *c, struct chain_layer *L, int ok)
{
	char name[300], tmp[320];
	int tfd = store_subdir(c->s, "tmp"), rc = 0;

	if (L->aux.wfd < 0)
		return 0;
	layer_derived_name(name, sizeof(name), L, L->aux_stamp, "aux");
	snprintf(tmp, sizeof(tmp), "aux.%s", name);
	if (!ok) {
		unlinkat(tfd, tmp, 0);
		return 0;
	}
	if (fsync(L->aux.wfd) < 0 ||
	    renameat(tfd, tmp, store_subdir(c->s, "aux"), name) < 0) {
		rc = -errno;
		unlinkat(tfd, tmp, 0);
		return rc;
	}
	store_derived_saved(c->s, "aux", name);
	rc = blob_from_fd(&L->aux.b, L->aux.wfd, L->aux.label);
	L->aux.wfd = -1;	/* the blob's now (closed if it failed) */
	if (rc)
		return rc;
	return sfile_sums_get(c, L, &L->aux, L->aux_stamp, "aux.sum");
}

/* A target copy too fragmented to keep as extents: write its bytes out. */
static int materialise(struct chain *c, struct chain_layer *L, struct xbuild *b,
		       const struct vcdiff_op *op, uint8_t *scratch)
{
	const struct xindex *v = xbuild_view(b);
	uint64_t here = xbuild_size(b), period = here - op->addr;
	uint64_t off = 0;
	int rc;

	if (period >= op->len) {
		rc = sfile_resolve(c, L, v, op->addr, scratch, op->len);
	} else {
		rc = sfile_resolve(c, L, v, op->addr, scratch, (size_t)period);
		for (uint64_t k = period; !rc && k < op->len; k++)
			scratch[k] = scratch[k - period];
	}
	if (!rc)
		rc = aux_append(c, L, scratch, op->len, &off);
	if (!rc)
		rc = xbuild_file(b, op->len, 2 * L->id + 1, off);
	return rc;
}

/*
 * Collapses runs of short extents of the window that starts at tgt_off
 * (whose bytes are in win) into single aux-file extents. Patches of VM
 * state interleave tiny COPYs and ADDs inside every changed page; kept as
 * extents they would make the index a fifth of the layer's size and every
 * read a walk through them. Their bytes cost about what the patch costs.
 */
static int compact_window(struct chain *c, struct chain_layer *L, struct xbuild *b,
			  uint64_t tgt_off, const uint8_t *win)
{
	struct xext *tmp;
	const struct xindex *v = xbuild_view(b);
	size_t n, k0 = xindex_find(v, tgt_off);
	const struct xext *e = xindex_ext(v, &n);
	size_t nt = 0;
	int rc = 0;

	if (n == 0)
		return 0;
	/* An extent carried over from the previous window stays as it is. */
	if (e[k0].off < tgt_off)
		k0++;
	if (k0 >= n)
		return 0;
	tmp = malloc((n - k0 + 1) * sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	for (size_t i = k0; i <= n; i++)
		tmp[nt++] = e[i];	/* with the sentinel */
	xbuild_truncate(b, k0);
	for (size_t i = 0; i + 1 < nt && !rc;) {
		size_t j = i;
		while (j + 1 < nt && tmp[j + 1].off - tmp[j].off < COMPACT_SHORT)
			j++;
		if (j - i >= 2) {
			uint64_t off, len = tmp[j].off - tmp[i].off;
			rc = aux_append(c, L, win + (tmp[i].off - tgt_off),
					(size_t)len, &off);
			if (!rc)
				rc = xbuild_file(b, len, 2 * L->id + 1, off);
			i = j;
		} else {
			rc = xbuild_ref(b, tmp[i + 1].off - tmp[i].off,
					tmp[i].ref);
			i++;
		}
	}
	free(tmp);
	return rc;
}

/* Hands a fill-only window's bytes to L->on_bytes (win: scratch of
 * VCDIFF_WIN_MAX bytes; the window's ops cover at most that). */
static void fills_out(struct chain_layer *L, const struct vcdiff_op *ops,
		      size_t nops, uint8_t *win)
{
	size_t at = 0;

	for (size_t k = 0; k < nops; k++) {
		memset(win + at, ops[k].byte, ops[k].len);
		at += ops[k].len;
	}
	L->on_bytes(L->on_bytes_ctx, win, at);
}

/* Builds layer L's index from its parent's and its plain patch. */
int ibuild_index(struct chain *c, struct chain_layer *L)
{
	struct chain_layer *P = L->parent;
	size_t nwin = vcdiff_patch_nwin(L->patch);
	struct vcdiff_dec *d = NULL;
	struct xbuild *b = NULL;
	uint8_t *win = NULL, *scratch = NULL;
	unsigned fid = 2 * L->id;
	int rc;

	L->aux_stamp = L->stamp;
	rc = vcdiff_dec_new(&d);
	if (!rc)
		rc = xbuild_new(&b);
	win = malloc(VCDIFF_WIN_MAX);
	scratch = malloc(VCDIFF_WIN_MAX);
	if (rc || !win || !scratch) {
		rc = rc ? rc : -ENOMEM;
		goto out;
	}
	for (size_t w = 0; w < nwin; w++) {
		const struct vcdiff_win *wi = vcdiff_patch_win(L->patch, w);
		const struct vcdiff_op *ops;
		size_t nops;

		/* The next window's source segment, decoded on other cores
		 * while this one is checked (its parent's index is final). */
		if (w + 1 < nwin) {
			const struct vcdiff_win *nx = vcdiff_patch_win(L->patch,
								       w + 1);
			if (nx->win_ind & VCDIFF_WIN_SOURCE)
				ra_submit(c, P, nx->cpy_off,
					  nx->cpy_len < ((uint64_t)32 << 20) ?
					  nx->cpy_len : (uint64_t)32 << 20);
		}
		rc = vcdiff_dec_ops(d, L->patch, w, &ops, &nops);
		if (rc) {
			layer_damage(L, "%s: window %zu: %s", L->data.label, w,
				     rc == -EBADMSG ? vcdiff_dec_reason(d) :
				     strerror(-rc));
			goto out;
		}
		for (size_t k = 0; k < nops && !rc; k++) {
			const struct vcdiff_op *op = &ops[k];
			switch (op->kind) {
			case VCDIFF_OP_ADD:
				rc = xbuild_file(b, op->len, fid,
						 sfile_add_src(&L->data, w,
							       op->addr));
				break;
			case VCDIFF_OP_RUN:
				rc = xbuild_fill(b, op->len, op->byte);
				break;
			case VCDIFF_OP_COPY_SRC:
				rc = xbuild_slice(b, P->x, op->addr, op->len);
				if (rc == -EBADMSG) {
					layer_damage(L, "%s: window %zu "
						     "copies from beyond the "
						     "end of %s (%" PRIu64
						     " bytes): is %s in the "
						     "right order?",
						     L->data.label, w,
						     P->name, P->size,
						     STORE_LAYERS_FILE);
					goto out;
				}
				break;
			case VCDIFF_OP_COPY_TGT:
				rc = xbuild_copy_self(b, op->addr, op->len,
					SELF_COPY_MAX_EXT(op->len));
				if (rc == -E2BIG)
					rc = materialise(c, L, b, op, scratch);
				break;
			default:
				rc = -EBADMSG;
			}
		}
		if (rc)
			goto out;
		if (xbuild_size(b) != wi->tgt_off + wi->tgt_len) {
			layer_damage(L, "%s: window %zu: decoded %" PRIu64
				     " bytes instead of %" PRIu64,
				     L->data.label, w,
				     xbuild_size(b) - wi->tgt_off,
				     (uint64_t)wi->tgt_len);
			rc = -EBADMSG;
			goto out;
		}
		/*
		 * A window made only of RUNs (a patch of zero pages, or one
		 * crafted to claim a huge target) is checked in O(ops): the
		 * adler32 of a repeated byte has a closed form. Its extents
		 * are fills, with nothing to compact.
		 */
		int fills = 1;
		uint32_t ad = 1;
		for (size_t k = 0; k < nops && fills; k++) {
			fills = ops[k].kind == VCDIFF_OP_RUN;
			ad = vcdiff_adler32_run(ad, ops[k].byte, ops[k].len);
		}
		if (fills) {
			if ((wi->win_ind & VCDIFF_WIN_ADLER32) &&
			    ad != wi->adler32) {
				layer_damage(L, "%s: window %zu: checksum "
					     "mismatch: the patch is damaged",
					     L->data.label, w);
				rc = -EBADMSG;
				goto out;
			}
			if (L->on_bytes)
				fills_out(L, ops, nops, win);
			if ((w & 15) == 0)
				chain_progress(c, L->name, "indexing",
					       wi->tgt_off, L->size);
			continue;
		}
		rc = sfile_resolve(c, L, xbuild_view(b), wi->tgt_off, win,
				   wi->tgt_len);
		if (rc) {
			layer_damage(L, "%s: window %zu: cannot read what "
				     "it builds on (%s)", L->data.label, w,
				     strerror(-rc));
			goto out;
		}
		if ((wi->win_ind & VCDIFF_WIN_ADLER32) &&
		    vcdiff_adler32(1, win, wi->tgt_len) != wi->adler32) {
			layer_damage(L, "%s: window %zu: checksum mismatch: "
				     "the patch does not apply to %s (damaged, "
				     "or %s is in the wrong order)",
				     L->data.label, w, P->name,
				     STORE_LAYERS_FILE);
			rc = -EBADMSG;
			goto out;
		}
		if (L->on_bytes)
			L->on_bytes(L->on_bytes_ctx, win, wi->tgt_len);
		rc = compact_window(c, L, b, wi->tgt_off, win);
		if (rc)
			goto out;
		if ((w & 15) == 0)
			chain_progress(c, L->name, "indexing", wi->tgt_off,
				       L->size);
	}
	chain_progress(c, L->name, "indexing", L->size, L->size);
	rc = xbuild_finish(b, &L->x);
	b = NULL;
	if (!rc) {
		xindex_set_tag(L->x, L->aux_stamp);
		rc = aux_finish(c, L, 1);
	}
out:
	if (rc)
		aux_finish(c, L, 0);
	if (rc == -ENOSPC || rc == -EDQUOT)
		layer_damage(L, "%s: no space left under %s/%s for its derived "
			     "data (index, aux file): free space there and "
			     "mount again", L->name, store_dir(c->s),
			     STORE_META_DIR);
	else if (rc && !L->damage[0])
		layer_damage(L, "%s: cannot index: %s", L->data.label,
			     strerror(-rc));
	xbuild_free(b);
	vcdiff_dec_free(d);
	free(win);
	free(scratch);
	return rc;
}
