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
 * The same index is also built from the encoder's own ops while a new
 * layer is written into the mount (chain_ibuild_*, at the end), so that
 * nothing is decoded again to index it; the writer checks those ops
 * against the patch and the bytes written (fs/wcheck.c), and the layer,
 * once opened on the finished patch, adopts the index (ibuild_adopt).
 * Those functions run on the encoder's output thread, one at a time; the
 * parent's index they slice is final.
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
#include <sys/stat.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "codec/zframe.h"
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

/* Frames of a compressed aux file. Measured on the 1 GiB QEMU store
 * (cold sequential read of the newest of 6 states, five alternating
 * rounds against raw aux files): 64 KiB frames read 8-10% slower (more
 * frames, more readers waiting on a frame being decoded), 256 KiB frames
 * as fast (770 against 779 MB/s, medians), the size the base uses. */
#define AUX_FRAME (256u << 10)

/*
 * Publishes the finished file at fd (taken), .snapfs/tmp/tmp, as
 * .snapfs/aux/name: synced, renamed, recorded as derived data, and
 * opened as a blob (*out) labelled with its store path (label, cap
 * bytes). 0, or -errno with the temporary gone.
 */
static int aux_publish(struct chain *c, int fd, const char *tmp,
		       const char *name, char *label, size_t cap,
		       struct blob **out)
{
	int tfd = store_subdir(c->s, "tmp");

	if (fsync(fd) < 0 ||
	    renameat(tfd, tmp, store_subdir(c->s, "aux"), name) < 0) {
		int rc = -errno;
		close(fd);
		unlinkat(tfd, tmp, 0);
		return rc;
	}
	store_derived_saved(c->s, "aux", name);
	snprintf(label, cap, "%s/aux/%.300s", STORE_META_DIR, name);
	return blob_from_fd(out, fd, label);	/* takes fd */
}

int ibuild_aux_store(struct chain *c, struct chain_layer *L, int raw_fd)
{
	struct zframe_writer_opts o = { .frame_size = AUX_FRAME };
	int tfd = store_subdir(c->s, "tmp"), fd, rc;
	char name[300], tmp[320], label[sizeof(L->aux.label)];
	struct blob *b;

	layer_derived_name(name, sizeof(name), L, L->aux_stamp, "auxz");
	snprintf(tmp, sizeof(tmp), "aux.%s", name);
	fd = safefile_create(tfd, tmp, 0644, NULL);
	if (fd < 0)
		return fd;
	rc = zframe_compress_fd(raw_fd, fd, &o);
	if (rc) {
		close(fd);
		unlinkat(tfd, tmp, 0);
		return rc;
	}
	rc = aux_publish(c, fd, tmp, name, label, sizeof(label), &b);
	if (!rc)
		rc = derive_aux_zstd(c, L, b, label);
	if (rc)		/* the raw one goes in its place */
		unlinkat(store_subdir(c->s, "aux"), name, 0);
	return rc;
}

/*
 * Puts a finished aux file in place: fd (taken), .snapfs/tmp/tmp, size
 * bytes, compressed where a mount bounds derived data (ibuild_aux_store)
 * or else moved as it is; L->aux reads it from then on, raw ones with
 * their checksums. For an index built by decoding and one built from the
 * encoder's ops alike. 0 or -errno; the temporary is gone either way.
 */
static int aux_place(struct chain *c, struct chain_layer *L, int fd,
		     const char *tmp, uint64_t size)
{
	char name[300], label[sizeof(L->aux.label)];
	struct blob *b;
	int rc;

	if (c->o.decoded_bounded && ibuild_aux_store(c, L, fd) == 0) {
		close(fd);
		unlinkat(store_subdir(c->s, "tmp"), tmp, 0);
		return 0;
	}
	layer_derived_name(name, sizeof(name), L, L->aux_stamp, "aux");
	rc = aux_publish(c, fd, tmp, name, label, sizeof(label), &b);
	if (rc)
		return rc;
	sfile_raw(c, L, &L->aux, b, size, name);
	L->aux.derived = 1;
	snprintf(L->aux.label, sizeof(L->aux.label), "%s", label);
	return sfile_sums_get(c, L, &L->aux, L->aux_stamp, "aux.sum");
}

/* Puts the aux file built by decoding in place (aux_place), or drops an
 * unfinished one. */
static int aux_finish(struct chain *c, struct chain_layer *L, int ok)
{
	char name[300], tmp[320];
	int fd = L->aux.wfd;

	if (fd < 0)
		return 0;
	L->aux.wfd = -1;	/* aux_place's, or closed here */
	layer_derived_name(name, sizeof(name), L, L->aux_stamp, "aux");
	snprintf(tmp, sizeof(tmp), "aux.%s", name);
	if (!ok) {
		close(fd);
		unlinkat(store_subdir(c->s, "tmp"), tmp, 0);
		return 0;
	}
	return aux_place(c, L, fd, tmp, L->aux.size);
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

/* Appends len bytes to an aux file, giving their offset there. */
typedef int (*aux_put_fn)(void *ctx, const uint8_t *buf, size_t len,
			  uint64_t *off);

struct layer_aux {
	struct chain *c;
	struct chain_layer *L;
};

static int layer_aux_put(void *ctx, const uint8_t *buf, size_t len,
			 uint64_t *off)
{
	struct layer_aux *a = ctx;
	return aux_append(a->c, a->L, buf, len, off);
}

/*
 * Collapses runs of short extents of the window that starts at tgt_off
 * (whose bytes are in win) into single extents of the aux file (file id
 * aux_fid, appended to through put). Patches of VM
 * state interleave tiny COPYs and ADDs inside every changed page; kept as
 * extents they would make the index a fifth of the layer's size and every
 * read a walk through them. Their bytes cost about what the patch costs.
 */
static int compact_window(struct xbuild *b, uint64_t tgt_off,
			  const uint8_t *win, unsigned aux_fid,
			  aux_put_fn put, void *put_ctx)
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
			rc = put(put_ctx, win + (tmp[i].off - tgt_off),
				 (size_t)len, &off);
			if (!rc)
				rc = xbuild_file(b, len, aux_fid, off);
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
					  nx->cpy_len : (uint64_t)32 << 20, true);
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
		struct layer_aux la = { c, L };
		rc = compact_window(b, wi->tgt_off, win, 2 * L->id + 1,
				    layer_aux_put, &la);
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

/* --- an index built from the encoder's own ops (chain_ibuild_*) --- */

/*
 * ADD bytes of a window whose data section is stored compressed are read,
 * in the layer's windowed patch file, at the file's size plus the
 * section's place among the compressed ones plus addr (fs/sfile.c,
 * sfile_add_src). The file's size is not known while it is written, so
 * such extents are placed from VIRT_BASE on and moved when the layer is
 * opened on the finished patch (ibuild_adopt). Plain ADD offsets are
 * offsets in the patch, far below.
 */
#define VIRT_BASE ((uint64_t)1 << 41)

struct chain_ibuild {
	struct chain *c;
	struct chain_layer *P;	/* a reference */
	uint32_t id;
	struct xbuild *b;
	uint64_t vsize;		/* data bytes of compressed sections so far */
	size_t nwin;
	int aux_fd;		/* -1 until something is compacted */
	uint64_t aux_size;
	char aux_tmp[80];	/* its name in .snapfs/tmp */
	/* The compressed data sections as the encoder had them before lzma,
	 * in the order a .sect copy holds them (vcopy_attach): -1 until
	 * the first, -2 once a write failed (then none is handed over). */
	int sect_fd;
	char sect_tmp[80];
	int failed;		/* sticky -errno */
};

int chain_ibuild_new(struct chain_ibuild **out, struct chain *c, uint32_t id,
		     struct chain_layer *P)
{
	struct chain_ibuild *ib = calloc(1, sizeof(*ib));
	int rc;

	if (!ib)
		return -ENOMEM;
	rc = xbuild_new(&ib->b);
	if (rc) {
		free(ib);
		return rc;
	}
	ib->c = c;
	ib->P = P;
	layer_ref(P);
	ib->id = id;
	ib->aux_fd = -1;
	/* -o max_decoded=0 keeps no decoded sections: none are written. */
	ib->sect_fd = c->o.decoded_bounded && !c->o.decoded_max ? -2 : -1;
	snprintf(ib->aux_tmp, sizeof(ib->aux_tmp), "aux.build.%u.%ld", id,
		 (long)getpid());
	snprintf(ib->sect_tmp, sizeof(ib->sect_tmp), "sect.build.%u.%ld", id,
		 (long)getpid());
	*out = ib;
	return 0;
}

void chain_ibuild_free(struct chain_ibuild *ib)
{
	if (!ib)
		return;
	if (ib->aux_fd >= 0) {
		close(ib->aux_fd);
		unlinkat(store_subdir(ib->c->s, "tmp"), ib->aux_tmp, 0);
	}
	if (ib->sect_fd >= 0)
		close(ib->sect_fd);
	if (ib->sect_fd != -1)
		unlinkat(store_subdir(ib->c->s, "tmp"), ib->sect_tmp, 0);
	xbuild_free(ib->b);
	layer_put(ib->c, ib->P);
	free(ib);
}

static int build_aux_put(void *ctx, const uint8_t *buf, size_t len,
			 uint64_t *off)
{
	struct chain_ibuild *ib = ctx;

	if (ib->aux_fd < 0) {
		ib->aux_fd = safefile_create(store_subdir(ib->c->s, "tmp"),
					     ib->aux_tmp, 0644, NULL);
		if (ib->aux_fd < 0)
			return ib->aux_fd;
	}
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(ib->aux_fd, buf + done, len - done,
				   (off_t)(ib->aux_size + done));
		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	*off = ib->aux_size;
	ib->aux_size += len;
	return 0;
}

/* A compressed data section, kept for the layer's .sect copy at offset
 * ib->vsize. Only derived data: a failure costs the copy (vcopy_attach
 * then decodes the sections), never the index. */
static void sect_put(struct chain_ibuild *ib, const struct vcdiff_enc_win *w)
{
	if (ib->sect_fd == -2 || w->data_len == 0)
		return;
	if (ib->sect_fd < 0) {
		int fd = safefile_create(store_subdir(ib->c->s, "tmp"),
					 ib->sect_tmp, 0644, NULL);
		ib->sect_fd = fd < 0 ? -2 : fd;
		if (fd < 0)
			return;
	}
	if (fdio_pwrite(ib->sect_fd, w->data, w->data_len,
			ib->vsize) < 0) {
		close(ib->sect_fd);
		ib->sect_fd = -2;	/* unlinked at free */
	}
}

int chain_ibuild_window(struct chain_ibuild *ib, const struct vcdiff_enc_win *w)
{
	unsigned fid = 2 * ib->id;
	int comp = (w->del_ind & VCDIFF_DEL_DATA) != 0, fills = 1, rc = 0;

	if (ib->failed)
		return ib->failed;
	if (w->tgt_off != xbuild_size(ib->b)) {
		rc = -EBADMSG;
		goto out;
	}
	for (size_t k = 0; k < w->nops && !rc; k++) {
		const struct vcdiff_op *op = &w->ops[k];
		fills &= op->kind == VCDIFF_OP_RUN;
		switch (op->kind) {
		case VCDIFF_OP_ADD:
			rc = xbuild_file(ib->b, op->len, fid, comp ?
					 VIRT_BASE + ib->vsize + op->addr :
					 op->addr);
			break;
		case VCDIFF_OP_RUN:
			rc = xbuild_fill(ib->b, op->len, op->byte);
			break;
		case VCDIFF_OP_COPY_SRC:
			rc = xbuild_slice(ib->b, ib->P->x, op->addr, op->len);
			break;
		case VCDIFF_OP_COPY_TGT:
			rc = xbuild_copy_self(ib->b, op->addr, op->len,
					      SELF_COPY_MAX_EXT(op->len));
			if (rc == -E2BIG) {
				/* Too fragmented: its bytes are the
				 * window's, at hand. */
				uint64_t off;
				rc = build_aux_put(ib, w->tgt + (op->tgt_off -
						   w->tgt_off), op->len, &off);
				if (!rc)
					rc = xbuild_file(ib->b, op->len, fid + 1,
							 off);
			}
			break;
		default:
			rc = -EBADMSG;
		}
	}
	if (!rc && xbuild_size(ib->b) != w->tgt_off + w->tgt_len)
		rc = -EBADMSG;
	if (!rc && comp) {
		sect_put(ib, w);
		ib->vsize += w->data_len;
	}
	/* A window of RUNs only has fills, nothing to compact (ibuild_index
	 * does the same). */
	if (!rc && !fills)
		rc = compact_window(ib->b, w->tgt_off, w->tgt, fid + 1,
				    build_aux_put, ib);
	ib->nwin++;
out:
	if (rc)
		ib->failed = rc;
	return rc;
}

int ibuild_sect_adopt(struct chain *c, struct chain_ibuild *ib,
		      uint64_t vsize, const char *name, const char *label,
		      struct blob **out)
{
	int tfd = store_subdir(c->s, "tmp"), rc;
	struct stat sb;

	if (ib->sect_fd < 0 || ib->failed || ib->vsize != vsize)
		return -ENOENT;
	if (fstat(ib->sect_fd, &sb) < 0 || (uint64_t)sb.st_size != vsize)
		return -ENOENT;
	/* As derived_open() makes one: whole on disk before its name. */
	if (fsync(ib->sect_fd) < 0 ||
	    renameat(tfd, ib->sect_tmp, store_subdir(c->s, "plain"), name) < 0)
		return -errno;
	store_derived_saved(c->s, "plain", name);
	rc = blob_from_fd(out, ib->sect_fd, label);
	ib->sect_fd = -1;	/* the blob's now (closed if it failed) */
	return rc;
}

int ibuild_adopt(struct chain *c, struct chain_layer *L,
		 struct chain_ibuild *ib)
{
	int rc = ib->failed;

	if (!rc && (ib->P != L->parent || ib->id != L->id ||
		    ib->nwin != vcdiff_patch_nwin(L->patch) ||
		    xbuild_size(ib->b) != L->size ||
		    ib->vsize != (L->data.kind == SF_WINDOWED ?
				  L->data.vsize : 0)))
		rc = -EBADMSG;
	if (rc) {
		layer_damage(L, "%s: the index built while encoding does not "
			     "fit the patch (%s)", L->data.label,
			     strerror(-rc));
		return rc;
	}
	if (ib->vsize)
		rc = xbuild_move_file(ib->b, 2 * L->id, VIRT_BASE, L->data.size);
	L->aux_stamp = L->stamp;
	if (!rc && ib->aux_fd >= 0) {
		rc = aux_place(c, L, ib->aux_fd, ib->aux_tmp, ib->aux_size);
		ib->aux_fd = -1;	/* aux_place's */
	}
	if (!rc) {
		rc = xbuild_finish(ib->b, &L->x);
		ib->b = NULL;
	}
	if (!rc)
		xindex_set_tag(L->x, L->aux_stamp);
	else if (!L->damage[0])
		layer_damage(L, "%s: cannot keep its index: %s", L->name,
			     strerror(-rc));
	return rc;
}
