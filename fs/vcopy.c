/* SPDX-License-Identifier: MIT */
/*
 * vcopy: the decoded copy of a windowed patch's lzma data sections
 * (.snapfs/plain/<id>.<stamp>.sect), read as a raw file instead of
 * decoding a section for each read that misses the cache.
 *
 * Why: measured (tests/bench/depth.sh, 1 GiB generated states written
 * through the mount, so every patch windowed), reading the newest of 101
 * layers without copies decoded every layer's sections, most of whose
 * bytes later layers replace: 50 MB/s cold, random 4 KiB p99 62 ms (11 ms
 * at depth 1). A copy costs what the literals take decompressed, 1.9x
 * the patches' bytes on the 1 GiB QEMU guest's states (57.9 MB for 30.5
 * MB), which is most of .snapfs/ for a store written through the mount.
 *
 * So the copies are optional, and -o max_decoded=SIZE bounds them
 * (issue 10): a copy is attached (marked used: its mtime) when its layer
 * opens, or made then if it fits, the copies this mount has not attached
 * deleted least recently used first to make room (fs/dlru.c); without
 * room the layer's reads decode its sections, correct and slower. A copy
 * deleted (by the bound, by hand) is made again by a later mount that has
 * room. Layers open parents first, so under a tight bound the older
 * layers keep theirs: every descendant reads through them. snapctl
 * (opts.decoded_keep_only) attaches the copies there are and makes none.
 *
 * Not here: reading through the copy (fs/sfile.c), the writer's own copy
 * (ibuild_sect_adopt). Runs on the thread opening the layer, which the
 * chain serialises; decoding uses every core (up to VCOPY_THREADS).
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"

struct vcopy_ctx {
	struct chain *c;
	struct chain_layer *L;
	int out_fd;
	atomic_size_t next;	/* the next section to decode */
	atomic_int rc;		/* the first error */
};

/* Decodes sections into their places in the copy until none is left or
 * one fails. progress: the one thread that reports (chain_progress). */
static void vcopy_work(struct vcopy_ctx *x, int progress)
{
	struct sfile *f = &x->L->data;
	uint8_t *buf = malloc(VCDIFF_WIN_MAX);
	size_t k;
	int rc = buf ? 0 : -ENOMEM;

	while (!rc && !atomic_load(&x->rc) &&
	       (k = atomic_fetch_add(&x->next, 1)) < f->nv) {
		uint64_t end = k + 1 < f->nv ? f->vbase[k + 1] : f->vsize;
		size_t n = (size_t)(end - f->vbase[k]);
		if (n > VCDIFF_WIN_MAX)
			rc = -EBADMSG;
		else if (!(rc = sfile_win_decode(x->c, f, k, buf)))
			rc = fdio_pwrite(x->out_fd, buf, n, f->vbase[k]);
		if (progress && (k & 63) == 0)
			chain_progress(x->c, x->L->name, "decoding lzma "
				       "sections", k, f->nv);
	}
	if (rc) {
		int none = 0;
		atomic_compare_exchange_strong(&x->rc, &none, rc);
	}
	free(buf);
}

static void *vcopy_worker(void *arg)
{
	vcopy_work(arg, 0);
	return NULL;
}

/* How many threads decode a layer's sections: every core, up to 4. */
#define VCOPY_THREADS 4

/* The decoded data sections of windowed patch L->data, in virtual order
 * (fs/sfile.c): what [size, size + vsize) of it reads as. Sections are
 * decoded on every core (up to VCOPY_THREADS): the first mount of a
 * chain written before these copies existed decodes all of them (55.9 s
 * for a chain of 100 GiB-layers on one core). */
static int make_vcopy(struct blob *in, int out_fd, void *arg,
		      const char **why)
{
	struct vcopy_ctx *x = arg;
	struct sfile *f = &x->L->data;
	pthread_t t[VCOPY_THREADS - 1];
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int nt = 0, rc;

	(void)in;
	x->out_fd = out_fd;
	atomic_init(&x->next, 0);
	atomic_init(&x->rc, 0);
	while (nt + 1 < cores && nt + 1 < VCOPY_THREADS &&
	       (size_t)nt + 1 < f->nv &&
	       pthread_create(&t[nt], NULL, vcopy_worker, x) == 0)
		nt++;
	vcopy_work(x, 1);
	for (int i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	rc = atomic_load(&x->rc);
	if (!rc && ftruncate(out_fd, (off_t)f->vsize) < 0)
		rc = -errno;	/* empty sections at the end: still vsize */
	if (!rc)
		chain_progress(x->c, x->L->name, "decoding lzma sections",
			       f->nv, f->nv);
	if (rc == -EIO || rc == -EBADMSG)
		*why = "a section does not decode (see the log)";
	return rc;
}

/* Under the bound, whether L's copy name may be kept (there: on disk
 * already) or made (need bytes): 0, or -ENOSPC (logged). An existing
 * copy that does not fit is deleted. */
static int vcopy_room(struct chain *c, struct chain_layer *L,
		      const char *name, int there, uint64_t need)
{
	struct dlru_kind k = { "plain", ".sect", c->o.decoded_max,
			       "-o max_decoded" };
	int dfd = store_subdir(c->s, "plain");
	int rc;

	if (there) {
		/* There: marked used, so counted as this mount's. */
		utimensat(dfd, name, NULL, AT_SYMLINK_NOFOLLOW);
		rc = dlru_room(c, &k, 0, &c->opened);
		if (rc)
			dlru_drop(c, "plain", name);
	} else {
		rc = dlru_room(c, &k, (need + 4095) & ~(uint64_t)4095,
			       &c->opened);
	}
	/* Once per mount: under a small bound most layers have none. */
	if (rc && !atomic_exchange(&c->vc_said, 1))
		chain_logf(c, CHAIN_LOG_INFO, "%s: no decoded copy of its "
			   "lzma sections (%" PRIu64 " bytes): no room under "
			   "-o max_decoded=%" PRIu64 ", so its reads decode "
			   "them; said once per mount (stats: sections_decoded)",
			   L->name, need, c->o.decoded_max);
	return rc;
}

void vcopy_attach(struct chain *c, struct chain_layer *L)
{
	struct sfile *f = &L->data, *v;
	struct vcopy_ctx x = { .c = c, .L = L };
	const char *why = NULL;
	char name[300];
	struct blob *b;
	int rc;

	if (!f->vsize || f->vcopy)
		return;
	layer_derived_name(name, sizeof(name), L, L->fstamp, "sect");
	/* Whether the copy is there matters only to a bound or to snapctl:
	 * a default mount opens or makes it below without asking. */
	int bounded = c->o.decoded_bounded && !store_is_remote(c->s);
	if (bounded || c->o.decoded_keep_only) {
		struct stat st;
		int there = fstatat(store_subdir(c->s, "plain"), name, &st,
				    AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode);
		if (c->o.decoded_keep_only && !L->built && !there)
			return;
		if (bounded && vcopy_room(c, L, name, there, f->vsize))
			return;
	}
	/* Written into the mount: the sections the encoder compressed,
	 * proved to decode to them, instead of decoding them again (that
	 * had cost a QEMU write 0.1-0.2 s at commit). */
	rc = -ENOENT;
	if (L->built) {
		char label[400];
		snprintf(label, sizeof(label), "%s/plain/%s", STORE_META_DIR,
			 name);
		rc = ibuild_sect_adopt(c, L->built, f->vsize, name, label, &b);
	}
	if (rc)
		rc = derive_made(c, "plain", name, make_vcopy, L->blob, &x,
				 &why, &b);
	if (rc) {
		chain_logf(c, CHAIN_LOG_WARN, "%s: no decoded copy of its lzma "
			   "sections (%s/plain/%s): %s; its reads decode them",
			   L->name, STORE_META_DIR, name,
			   why ? why : strerror(-rc));
		return;
	}
	if (blob_size(b) != f->vsize || !(v = calloc(1, sizeof(*v)))) {
		blob_put(b);
		return;
	}
	v->wfd = -1;
	sfile_raw(c, L, v, b, f->vsize, name);
	v->derived = 1;
	snprintf(v->label, sizeof(v->label), "%.100s (decoded sections "
		 "%s/plain/%.200s)", L->path, STORE_META_DIR, name);
	if (sfile_sums_get(c, L, v, L->fstamp, "sect.sum") < 0) {
		sfile_close(c, v);
		free(v);
		return;
	}
	f->vcopy = v;
}
