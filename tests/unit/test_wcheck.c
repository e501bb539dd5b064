/* SPDX-License-Identifier: MIT */
/*
 * test_wcheck: a layer written into a store is indexed from the encoder's
 * own ops (fs/wcheck.c, chain_ibuild_*) exactly as decoding its patch
 * indexes it: on several generated pairs the index and aux files are
 * byte for byte those a fresh mount rebuilds by decoding, and the layer
 * reads back. And the check catches a wrong patch: ops that do not
 * rebuild the bytes written (an ADD byte, a COPY address, a RUN byte
 * changed on their way to the check), and a patch file damaged after it
 * was written, at its start, middle and end. A writer lends its memory
 * out of the cache budget while it lives. Data from fixed seeds.
 */
#include "fs/wcheck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "fs/chain.h"
#include "fs/store.h"
#include "fs/writer.h"
#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char dir[64];
static uint64_t rs;

/* A page of kind k: 0 zeros, 1 text-like, 2 pointers, 3 random. */
static void page(uint8_t *p, int k)
{
	static const char *w[] = { "the ", "kernel ", "page ", "of ", "vm " };

	for (size_t i = 0; i < 4096;) {
		if (k == 0) {
			memset(p, 0, 4096);
			return;
		}
		if (k == 1) {
			const char *s = w[t_xorshift(&rs) % 5];
			for (; *s && i < 4096; s++)
				p[i++] = (uint8_t)*s;
			continue;
		}
		uint64_t x = k == 2 ? 0xffff888000000000ull + (t_xorshift(&rs) % 4096) * 8 :
			     t_xorshift(&rs);
		size_t n = 4096 - i < 8 ? 4096 - i : 8;
		memcpy(p + i, &x, n);
		i += n;
	}
}

/* A source of `pages` pages and a target: pages rewritten, words patched,
 * pages moved far, a page inserted and one dropped (shifting the rest),
 * a zeroed stretch. */
static void make_pair(uint64_t seed, size_t pages, uint8_t **src,
		      size_t *sn, uint8_t **tgt, size_t *tn)
{
	uint8_t *s = malloc(pages * 4096), *t = malloc((pages + 1) * 4096);
	size_t o = 0;

	rs = seed;
	for (size_t i = 0; i < pages; i++)
		page(s + i * 4096, (int)(t_xorshift(&rs) % 4));
	for (size_t i = 0; i < pages; i++) {
		uint64_t r = t_xorshift(&rs) % 100;
		if (i == pages / 3)
			continue;			/* dropped */
		if (i == pages / 2) {
			page(t + o, 3);			/* inserted */
			o += 4096;
		}
		memcpy(t + o, s + i * 4096, 4096);
		if (r < 3) {
			page(t + o, (int)(t_xorshift(&rs) % 4));
		} else if (r < 8) {
			for (size_t k = 0; k < 4096; k += 64) {
				uint64_t x = t_xorshift(&rs);
				memcpy(t + o + k, &x, 8);
			}
		} else if (r < 10) {
			memcpy(t + o, s + ((i + pages / 2) % pages) * 4096, 4096);
		} else if (i > pages - 40) {
			memset(t + o, 0, 4096);
		}
		o += 4096;
	}
	*src = s;
	*sn = pages * 4096;
	*tgt = t;
	*tn = o;
}

static int open_chain(const char *sub, struct store **s, struct chain **c)
{
	char p[128], err[1024] = "";
	struct chain_opts o = { .prefetch_threads = 2 };
	int rc;

	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	mkdir(p, 0755);
	rc = store_open(s, p, err, sizeof(err));
	if (!rc)
		rc = chain_open(c, *s, &o, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "    open %s: %s\n", p, err);
		return rc;
	}
	chain_start(*c);
	return 0;
}

static int write_state(struct chain *c, struct store *s, const char *name,
		       const uint8_t *b, size_t n)
{
	struct writer *w;
	char err[1024] = "";
	int rc = writer_new(&w, c, s, name, err, sizeof(err));

	for (size_t off = 0; !rc && off < n; off += 1 << 20)
		rc = writer_write(w, off, b + off, n - off < (1u << 20) ?
				  n - off : (1u << 20));
	if (!rc)
		rc = writer_finish(w, err, sizeof(err));
	if (!rc)
		rc = writer_publish(w, err, sizeof(err));
	if (rc)
		fprintf(stderr, "    write %s: %s\n", name, err);
	if (w)
		writer_free(w);
	return rc;
}

static int layer_is(struct chain *c, uint32_t id, const uint8_t *b, size_t n)
{
	struct chain_layer *L;
	uint8_t *buf = malloc(n + 1);
	int ok = chain_get(c, id, &L) == 0;

	if (ok) {
		ok = chain_read(c, L, 0, buf, n + 1, NULL) == (ssize_t)n &&
		     !memcmp(buf, b, n);
		chain_put(c, L);
	}
	free(buf);
	return ok;
}

/* Reads every file of .snapfs/SUB whose name starts with "ID." into one
 * buffer (name, size, bytes; in name order), so two states compare. */
static size_t slurp(const char *sub, const char *store, uint32_t id,
		    uint8_t **out)
{
	char p[256], pre[16];
	struct dirent **ents;
	size_t len = 0;
	uint8_t *b = NULL;

	snprintf(p, sizeof(p), "%s/%s/.snapfs/%s", dir, store, sub);
	snprintf(pre, sizeof(pre), "%u.", id);
	int n = scandir(p, &ents, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (!strncmp(ents[i]->d_name, pre, strlen(pre))) {
			char f[600];
			struct stat st;
			snprintf(f, sizeof(f), "%s/%s", p, ents[i]->d_name);
			int fd = open(f, O_RDONLY);
			if (fd >= 0 && fstat(fd, &st) == 0) {
				size_t nl = strlen(ents[i]->d_name) + 1;
				b = realloc(b, len + nl + 8 + (size_t)st.st_size);
				memcpy(b + len, ents[i]->d_name, nl);
				memcpy(b + len + nl, &st.st_size, 8);
				T_EQ(fdio_pread(fd, b + len + nl + 8,
						(size_t)st.st_size, 0),
				     st.st_size);
				len += nl + 8 + (size_t)st.st_size;
			}
			if (fd >= 0)
				close(fd);
		}
		free(ents[i]);
	}
	if (n > 0)
		free(ents);
	*out = b;
	return len;
}

/* The index from ops is the index decoding builds, on several pairs, and
 * the .sect copy kept from the encoder's sections is the one decoding
 * makes. */
static void test_index_from_ops(void)
{
	size_t sects = 0;

	static const struct { uint64_t seed; size_t pages; } pairs[] = {
		{ 1, 6000 }, { 2, 2500 }, { 3, 200 },
	};

	for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]); k++) {
		uint8_t *src, *tgt, *idx1, *aux1, *idx2, *aux2, *sec1, *sec2;
		size_t sn, tn;
		struct store *s;
		struct chain *c;
		char sub[16];

		snprintf(sub, sizeof(sub), "ix%zu", k);
		make_pair(pairs[k].seed, pairs[k].pages, &src, &sn, &tgt, &tn);
		T_EQ(open_chain(sub, &s, &c), 0);
		T_EQ(write_state(c, s, "base", src, sn), 0);
		T_EQ(write_state(c, s, "next", tgt, tn), 0);
		T_CHECK(layer_is(c, 2, tgt, tn));
		chain_free(c);
		store_free(s);
		size_t il1 = slurp("index", sub, 2, &idx1);
		size_t al1 = slurp("aux", sub, 2, &aux1);
		size_t sl1 = slurp("plain", sub, 2, &sec1);
		T_CHECK(il1 > 0);
		sects += sl1;
		fprintf(stderr, "  pair %zu: %zu pages, index %zu bytes, aux "
			"%zu bytes, .sect %zu bytes\n", k, pairs[k].pages, il1,
			al1, sl1);

		/* Derived data gone: the next open decodes the patch. */
		T_EQ(t_sh("rm -f %s/%s/.snapfs/index/2.* %s/%s/.snapfs/aux/2.* "
			  "%s/%s/.snapfs/plain/2.* %s/%s/.snapfs/sums/2.*.sect.sum",
			  dir, sub, dir, sub, dir, sub, dir, sub), 0);
		T_EQ(open_chain(sub, &s, &c), 0);
		T_CHECK(layer_is(c, 2, tgt, tn));
		chain_free(c);
		store_free(s);
		size_t il2 = slurp("index", sub, 2, &idx2);
		size_t al2 = slurp("aux", sub, 2, &aux2);
		size_t sl2 = slurp("plain", sub, 2, &sec2);
		T_EQ(sl2, sl1);
		T_CHECK(sl1 == sl2 && (!sl1 || !memcmp(sec1, sec2, sl1)));
		T_EQ(il2, il1);
		T_EQ(al2, al1);
		T_CHECK(il1 == il2 && !memcmp(idx1, idx2, il1));
		T_CHECK(al1 == al2 && (!al1 || !memcmp(aux1, aux2, al1)));
		free(idx1);
		free(idx2);
		free(aux1);
		free(aux2);
		free(sec1);
		free(sec2);
		free(src);
		free(tgt);
	}
	T_CHECK(sects > 0);	/* some pair had lzma data sections */
}

/* When the sections cannot be kept while encoding (here a directory in
 * the way of the builder's temporary), the commit decodes them as
 * before: the copy is there, right, and nothing is left in tmp. */
static void test_sect_fallback(void)
{
	uint8_t *src, *tgt, *sec1, *sec2;
	size_t sn, tn;
	struct store *s;
	struct chain *c;

	make_pair(4, 1500, &src, &sn, &tgt, &tn);
	T_EQ(open_chain("sf", &s, &c), 0);
	T_EQ(write_state(c, s, "base", src, sn), 0);
	T_EQ(t_sh("mkdir %s/sf/.snapfs/tmp/sect.build.2.%ld", dir,
		  (long)getpid()), 0);
	T_EQ(write_state(c, s, "next", tgt, tn), 0);
	/* Still in the way: the builder kept nothing, the commit decoded. */
	T_EQ(t_sh("test -d %s/sf/.snapfs/tmp/sect.build.2.%ld", dir,
		  (long)getpid()), 0);
	T_EQ(t_sh("test -z \"$(find %s/sf/.snapfs/tmp -type f -name "
		  "'*build*')\"", dir), 0);
	T_CHECK(layer_is(c, 2, tgt, tn));
	chain_free(c);
	store_free(s);
	size_t sl1 = slurp("plain", "sf", 2, &sec1);
	T_CHECK(sl1 > 0);
	/* The same copy as one made by decoding at a later open. */
	T_EQ(t_sh("rm -f %s/sf/.snapfs/plain/2.* %s/sf/.snapfs/sums/2.*.sect.sum",
		  dir, dir), 0);
	T_EQ(open_chain("sf", &s, &c), 0);
	T_CHECK(layer_is(c, 2, tgt, tn));
	chain_free(c);
	store_free(s);
	size_t sl2 = slurp("plain", "sf", 2, &sec2);
	T_CHECK(sl1 == sl2 && !memcmp(sec1, sec2, sl1));
	free(sec1);
	free(sec2);
	free(src);
	free(tgt);
}

/* --- the check itself, driven directly --- */

struct rig {
	struct chain *c;
	struct store *s;
	struct chain_layer *P;
	uint8_t *src, *tgt;
	size_t sn, tn;
	int fd;			/* the patch */
	struct wcheck *k;
	XXH3_state_t *digest;
	int spoil;		/* what changes: 0 nothing; in on_window 1 an
				 * ADD byte, 2 a COPY address, 3 a RUN byte;
				 * 4 a section byte written (rig_write) */
	int spoiled;
};

/* spoil 4: a byte inside a section changed on its way out, in the file
 * and in what wcheck hears was written alike (a serialiser bug): only
 * decoding the file can find it. */
static int rig_write(void *ctx, const void *buf, size_t len)
{
	struct rig *r = ctx;
	uint8_t *copy = NULL;

	if (r->spoil == 4 && !r->spoiled && len > 1000) {
		copy = malloc(len);
		memcpy(copy, buf, len);
		copy[len / 2] ^= 0x04;
		buf = copy;
		r->spoiled = 1;
	}
	int rc = fdio_write(r->fd, buf, len);
	if (!rc)
		wcheck_wrote(r->k, buf, len);
	free(copy);
	return rc;
}

static ssize_t rig_src(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct rig *r = ctx;
	return chain_read(r->c, r->P, off, buf, len, NULL);
}

/* Passes the window on, the first op of the kind asked for changed. */
static int rig_window(void *ctx, const struct vcdiff_enc_win *w)
{
	struct rig *r = ctx;
	struct vcdiff_enc_win v = *w;
	struct vcdiff_op *ops = malloc((w->nops + 1) * sizeof(*ops));
	uint8_t *data = malloc(w->data_len + 1);

	memcpy(ops, w->ops, w->nops * sizeof(*ops));
	memcpy(data, w->data, w->data_len);
	for (size_t i = 0; i < w->nops && r->spoil && !r->spoiled; i++) {
		struct vcdiff_op *op = &ops[i];
		if (r->spoil == 1 && op->kind == VCDIFF_OP_ADD) {
			data[op->addr - w->add_base] ^= 1;
			r->spoiled = 1;
		} else if (r->spoil == 2 && op->kind == VCDIFF_OP_COPY_SRC &&
			   op->addr > 0) {
			op->addr -= 1;
			r->spoiled = 1;
		} else if (r->spoil == 3 && op->kind == VCDIFF_OP_RUN) {
			op->byte ^= 0x80;
			r->spoiled = 1;
		}
	}
	v.ops = ops;
	v.data = data;
	int rc = wcheck_window(r->k, &v);
	free(ops);
	free(data);
	return rc;
}

/* Encodes the rig's target into a fresh patch, checking as the writer
 * does; returns the patch's fd (finished, not yet checked at close). */
static int rig_encode(struct rig *r, int spoil)
{
	char p[128];
	struct vcdiff_enc_opts o = {
		.secondary = VCDIFF_SEC_LZMA_WINDOWED, .workers = 2,
		.win_size = 1u << 20, .on_window = rig_window, .win_ctx = r,
	};
	struct vcdiff_enc *e = NULL;
	int rc;

	r->spoil = spoil;
	r->spoiled = 0;
	snprintf(p, sizeof(p), "%s/rig.patch", dir);
	r->fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	T_CHECK(r->fd >= 0);
	T_EQ(wcheck_new(&r->k, r->c, 99, r->P, r->fd, r->digest), 0);
	rc = vcdiff_enc_new(&e, &o, r->sn, rig_src, r, rig_write, r);
	for (size_t off = 0; !rc && off < r->tn; off += 300000)
		rc = vcdiff_enc_write(e, r->tgt + off, r->tn - off < 300000 ?
				      r->tn - off : 300000);
	if (!rc)
		rc = vcdiff_enc_finish(e);
	vcdiff_enc_free(e);
	T_EQ(rc, 0);
	return rc;
}

/* Waits for the idle thread to decode every window of the rig's patch
 * (up to 60 s, or until it has stopped short); 1 if it did. */
static int rig_early_all(struct rig *r)
{
	struct vcdiff_patch *p = NULL;
	struct blob *b = NULL;
	size_t n = 0;

	if (blob_from_dup(&b, r->fd, "rig") == 0 &&
	    vcdiff_patch_open(&p, b, NULL) == 0)
		n = vcdiff_patch_nwin(p);
	vcdiff_patch_free(p);
	blob_put(b);
	/* Until it has them all, or has not moved for 2 s. */
	size_t last = 0;
	for (int i = 0, still = 0; n && i < 6000 && still < 200; i++) {
		size_t e = wcheck_early(r->k, NULL);
		if (e == n)
			break;
		still = e == last ? still + 1 : 0;
		last = e;
		usleep(10000);
	}
	return n > 1 && wcheck_early(r->k, NULL) == n;
}

static void rig_done(struct rig *r)
{
	wcheck_free(r->k);
	r->k = NULL;
	close(r->fd);
}

static void test_check(void)
{
	struct rig r = { 0 };
	const char *why = "";

	make_pair(7, 1500, &r.src, &r.sn, &r.tgt, &r.tn);
	r.digest = XXH3_createState();
	T_EQ(open_chain("rig", &r.s, &r.c), 0);
	T_EQ(write_state(r.c, r.s, "base", r.src, r.sn), 0);
	T_EQ(chain_get(r.c, 1, &r.P), 0);

	/* Untouched: passes, and the digest is that of the bytes; once with
	 * every window decoded by the idle thread, once by the close. */
	rig_encode(&r, 0);
	T_CHECK(rig_early_all(&r));
	T_EQ(wcheck_finish(r.k, r.fd, r.tn, &why), 0);
	rig_done(&r);
	XXH3_128bits_reset(r.digest);
	rig_encode(&r, 0);
	T_EQ(wcheck_finish(r.k, r.fd, r.tn, &why), 0);
	XXH128_hash_t want = XXH3_128bits(r.tgt, r.tn);
	T_CHECK(XXH128_isEqual(XXH3_128bits_digest(r.digest), want));
	T_EQ(wcheck_finish(r.k, r.fd, r.tn + 1, &why), -EBADMSG);
	rig_done(&r);

	/* Ops that do not rebuild the bytes written; a patch that does not
	 * decode to the ops checked. */
	static const char *const expect[5] = { NULL, "ADD bytes", "COPY from",
					       "RUN", "" };
	for (int spoil = 1; spoil <= 4; spoil++) {
		rig_encode(&r, spoil);
		T_CHECK(r.spoiled);
		why = "";
		int rc = wcheck_finish(r.k, r.fd, r.tn, &why);
		fprintf(stderr, "  spoiled %d: %d %s\n", spoil, rc, why);
		T_EQ(rc, -EBADMSG);
		T_CHECK(strstr(why, expect[spoil]) != NULL);
		rig_done(&r);
	}
	/* The idle thread finds the section byte itself: it stops at that
	 * window, and the close says what it found. */
	rig_encode(&r, 4);
	T_CHECK(r.spoiled);
	T_CHECK(!rig_early_all(&r));	/* it stopped short */
	why = "";
	T_EQ(wcheck_finish(r.k, r.fd, r.tn, &why), -EBADMSG);
	fprintf(stderr, "  spoiled 4, early: %zu windows passed, %s\n",
		wcheck_early(r.k, NULL), why);
	T_CHECK(why[0] != 0);
	rig_done(&r);

	/* The file damaged after it was written: start, middle, end. */
	for (int where = 0; where < 3; where++) {
		struct stat st;
		rig_encode(&r, 0);
		/* After the idle thread has passed every window. */
		T_CHECK(rig_early_all(&r));
		T_EQ(fstat(r.fd, &st), 0);
		off_t off = where == 0 ? 0 : where == 1 ? st.st_size / 2 :
			    st.st_size - 1;
		uint8_t b;
		T_EQ(pread(r.fd, &b, 1, off), 1);
		b ^= 0x10;
		T_EQ(pwrite(r.fd, &b, 1, off), 1);
		why = "";
		T_EQ(wcheck_finish(r.k, r.fd, r.tn, &why), -EBADMSG);
		fprintf(stderr, "  damaged at %lld: %s\n", (long long)off, why);
		rig_done(&r);
	}
	chain_put(r.c, r.P);
	chain_free(r.c);
	store_free(r.s);
	XXH3_freeState(r.digest);
	free(r.src);
	free(r.tgt);
}

static uint64_t cache_budget(struct chain *c)
{
	char buf[2048];
	unsigned long long v = 0;
	const char *p;

	chain_stats(c, buf, sizeof(buf));
	p = strstr(buf, "cache_budget ");
	if (p)
		sscanf(p, "cache_budget %llu", &v);
	return v;
}

/* A writer lends its encoder's memory out of the cache budget for its
 * life; lending never takes the cache below CHAIN_CACHE_MIN. */
static void test_cache_lent(void)
{
	uint8_t *src, *tgt;
	size_t sn, tn;
	struct store *s;
	struct chain *c;
	struct writer *w;
	char err[1024];

	make_pair(5, 256, &src, &sn, &tgt, &tn);
	T_EQ(open_chain("lend", &s, &c), 0);
	uint64_t full = cache_budget(c);
	T_CHECK(full > 0);
	T_EQ(write_state(c, s, "base", src, sn), 0);
	T_EQ(cache_budget(c), full);
	T_EQ(writer_new(&w, c, s, "next", err, sizeof(err)), 0);
	uint64_t during = cache_budget(c);
	fprintf(stderr, "  cache budget %llu, while writing %llu\n",
		(unsigned long long)full, (unsigned long long)during);
	T_CHECK(during < full && during >= CHAIN_CACHE_MIN);
	writer_free(w);
	T_EQ(cache_budget(c), full);
	chain_cache_lend(c, (size_t)1 << 40);
	T_EQ(cache_budget(c), CHAIN_CACHE_MIN);
	chain_cache_return(c, (size_t)1 << 40);
	T_EQ(cache_budget(c), full);
	chain_free(c);
	store_free(s);
	free(src);
	free(tgt);
}

/* The next write's source index is left in the chain (fs/wsidx.c): held
 * out of the cache budget, taken by a write on top of that snapshot (its
 * timing says so, and the patch is right), dropped by a take for another
 * snapshot, freed with the chain. */
static void test_hint(void)
{
	uint8_t *src, *tgt;
	size_t sn, tn;
	struct store *s;
	struct chain *c;
	struct writer *w;
	char err[1024] = "";

	make_pair(6, 8500, &src, &sn, &tgt, &tn);	/* > 32 MiB */
	T_EQ(open_chain("hint", &s, &c), 0);
	uint64_t full = cache_budget(c);
	T_EQ(write_state(c, s, "base", src, sn), 0);
	uint64_t held = cache_budget(c);
	fprintf(stderr, "  cache budget %llu, holding the hint %llu\n",
		(unsigned long long)full, (unsigned long long)held);
	T_CHECK(held < full);
	T_EQ(writer_new(&w, c, s, "next", err, sizeof(err)), 0);
	for (size_t off = 0; off < tn; off += 1 << 20)
		T_EQ(writer_write(w, off, tgt + off, tn - off < (1u << 20) ?
				  tn - off : (1u << 20)), 0);
	T_EQ(writer_finish(w, err, sizeof(err)), 0);
	T_EQ(writer_publish(w, err, sizeof(err)), 0);
	fprintf(stderr, "  %s\n", writer_timing(w));
	T_CHECK(strstr(writer_timing(w), "index taken") != NULL);
	writer_free(w);
	T_CHECK(layer_is(c, 2, tgt, tn));
	T_CHECK(cache_budget(c) < full);	/* next's, for a write on it */
	T_CHECK(chain_hint_take(c, "sidx 99 1 none") == NULL);
	T_EQ(cache_budget(c), full);		/* dropped */
	T_CHECK(chain_hint_take(c, "sidx 99 1 none") == NULL);
	T_EQ(write_state(c, s, "third", src, sn), 0);	/* a hint again */
	chain_free(c);		/* frees it (ASan: no leak) */
	store_free(s);
	free(src);
	free(tgt);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_wcheck.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	T_RUN(test_index_from_ops);
	T_RUN(test_sect_fallback);
	T_RUN(test_check);
	T_RUN(test_cache_lent);
	T_RUN(test_hint);
	t_sh("rm -rf %s", dir);
	return t_done();
}
