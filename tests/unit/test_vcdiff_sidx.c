/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_sidx: a source index built from bytes passing by
 * (codec/vcdiff_sidx.h). With the right size guess it must be the table
 * the encoder builds itself (the same patch, byte for byte, and no pass
 * over the source); with a wrong guess still a correct patch (stock
 * xdelta3 -d rebuilds the target) of about the same size; an index fits
 * only the size and budget it was built for.
 */
#include "codec/vcdiff_sidx.h"
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char tmpdir[64];

struct src {
	const uint8_t *p;
	size_t n;
	uint64_t reads;		/* bytes read through the callback */
};

static ssize_t src_read(void *ctx, uint64_t off, void *dst, size_t len)
{
	struct src *s = ctx;

	if (off >= s->n)
		return 0;
	if (len > s->n - off)
		len = s->n - off;
	memcpy(dst, s->p + off, len);
	s->reads += len;
	return (ssize_t)len;
}

struct out {
	uint8_t *p;
	size_t n, cap;
};

static int out_write(void *ctx, const void *p, size_t n)
{
	struct out *o = ctx;

	if (o->n + n > o->cap) {
		o->cap = (o->n + n) * 2;
		o->p = realloc(o->p, o->cap);
		if (!o->p)
			abort();
	}
	memcpy(o->p + o->n, p, n);
	o->n += n;
	return 0;
}

/* Pages of noise, text-like pages and zeros; tgt: the same with some
 * pages changed and a shift by 100 bytes in the middle. */
static void make_pair(uint8_t **src, uint8_t **tgt, size_t n, uint64_t seed)
{
	uint64_t s = seed;

	*src = malloc(n);
	*tgt = malloc(n);
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = t_rng(&s);
		if ((i / 4096) % 5 == 0)
			v = 0;
		else if ((i / 4096) % 5 == 1)
			v &= 0x1f1f1f1f1f1f1f1full;
		memcpy(*src + i, &v, n - i < 8 ? n - i : 8);
	}
	memcpy(*tgt, *src, n / 2);
	memcpy(*tgt + n / 2, *src + n / 2 + 100, n - n / 2 - 100);
	memset(*tgt + n - 100, 7, 100);
	for (size_t i = 4096 * 3; i + 64 < n; i += 4096 * 17)
		for (size_t k = 0; k < 64; k += 8) {
			uint64_t v = t_rng(&s);
			memcpy(*tgt + i + k, &v, 8);
		}
}

/* Feeds p in pieces of odd sizes (keys straddle feeds). */
static void feed(struct vcdiff_sidx *x, const uint8_t *p, size_t n)
{
	static const size_t piece[] = { 1, 31, 4096, 7, 65536 + 13, 32, 333 };
	size_t off = 0;

	for (int i = 0; off < n; i++) {
		size_t k = piece[i % 7] < n - off ? piece[i % 7] : n - off;
		vcdiff_sidx_feed(x, p + off, k);
		off += k;
	}
}

static int encode(struct out *o, const uint8_t *src, size_t n,
		  const uint8_t *tgt, size_t budget,
		  const struct vcdiff_sidx *x, uint64_t *reads)
{
	struct src s = { src, n, 0 };
	struct vcdiff_enc_opts opts = {
		.index_budget = budget, .sidx = x,
		.secondary = VCDIFF_SEC_LZMA_WINDOWED, .win_size = 1 << 20,
	};
	struct vcdiff_enc *e;
	int rc;

	memset(o, 0, sizeof(*o));
	rc = vcdiff_enc_new(&e, &opts, n, src_read, &s, out_write, o);
	if (rc)
		return rc;
	if (reads)
		*reads = s.reads;	/* at creation: the indexing pass */
	rc = vcdiff_enc_write(e, tgt, n);
	if (!rc)
		rc = vcdiff_enc_finish(e);
	vcdiff_enc_free(e);
	return rc;
}

/* Stock xdelta3 -d rebuilds tgt from src and the patch. */
static int stock_ok(const uint8_t *src, const uint8_t *tgt, size_t n,
		    const struct out *o)
{
	char a[128], b[128], c[128];

	snprintf(a, sizeof(a), "%s/src", tmpdir);
	snprintf(b, sizeof(b), "%s/tgt", tmpdir);
	snprintf(c, sizeof(c), "%s/patch", tmpdir);
	if (t_write_file(a, src, n) || t_write_file(b, tgt, n) ||
	    t_write_file(c, o->p, o->n))
		return 0;
	return t_sh("xdelta3 -d -f -s %s %s %s/out && cmp -s %s/out %s",
		    a, c, tmpdir, tmpdir, b) == 0;
}

/* The right guess: the encoder's own table; no indexing pass. */
static void test_same_patch(void)
{
	size_t n = (size_t)3 << 20;
	uint8_t *src, *tgt;
	struct vcdiff_sidx *x;
	struct out a, b;
	uint64_t ra = 0, rb = 0;

	make_pair(&src, &tgt, n, 11);
	T_EQ(vcdiff_sidx_new(&x, n, 0, NULL), 0);
	feed(x, src, n);
	T_EQ(vcdiff_sidx_end(x, NULL), 0);
	T_EQ(vcdiff_sidx_ready(x), 0);
	T_EQ(encode(&a, src, n, tgt, 0, NULL, &ra), 0);
	T_EQ(encode(&b, src, n, tgt, 0, x, &rb), 0);
	T_EQ(ra, n);
	T_EQ(rb, 0);
	T_EQ(a.n, b.n);
	T_CHECK(a.n == b.n && !memcmp(a.p, b.p, a.n));
	T_CHECK(stock_ok(src, tgt, n, &b));
	vcdiff_sidx_free(x);
	free(a.p);
	free(b.p);
	free(src);
	free(tgt);
}

/* Unknown size (B doubles on the way: a small budget makes it happen
 * at a few MiB) and a guess too large (a table of fewer buckets at the
 * end): the very patch a fresh index gives, since the keys are kept per
 * block until the end and the table is built for the size then. A guess
 * that leaves too coarse a B: of no use (-ESTALE), and the encoder
 * refuses it. */
static void test_wrong_guess(void)
{
	static const struct {
		uint64_t guess;
		size_t budget;
		int rc;
	} c[] = {
		{ 0, (size_t)64 << 10, 0 },
		{ (uint64_t)64 << 20, 0, 0 },
		{ 1, (size_t)64 << 10, -ESTALE },
		{ (uint64_t)1 << 30, (size_t)64 << 10, -ESTALE },
	};
	size_t n = (size_t)4 << 20;
	uint8_t *src, *tgt;
	struct out a, b;

	make_pair(&src, &tgt, n, 12);
	for (int i = 0; i < 4; i++) {
		struct vcdiff_sidx *x;
		T_EQ(encode(&a, src, n, tgt, c[i].budget, NULL, NULL), 0);
		T_EQ(vcdiff_sidx_new(&x, c[i].guess, c[i].budget, NULL), 0);
		feed(x, src, n);
		T_EQ(vcdiff_sidx_end(x, NULL), c[i].rc);
		T_EQ(vcdiff_sidx_ready(x), c[i].rc);
		if (c[i].rc) {
			T_EQ(encode(&b, src, n, tgt, c[i].budget, x, NULL),
			     -EINVAL);
		} else {
			T_EQ(encode(&b, src, n, tgt, c[i].budget, x, NULL), 0);
			T_CHECK(stock_ok(src, tgt, n, &b));
			T_CHECK(a.n == b.n && !memcmp(a.p, b.p, a.n));
		}
		vcdiff_sidx_free(x);
		free(a.p);
		free(b.p);
	}
	free(src);
	free(tgt);
}

/* An index fits only the source size and budget it was built for, and
 * only once ended; an encoder refuses it until its table is built, and
 * then makes the patch it makes alone. */
static void test_fits(void)
{
	size_t n = (size_t)1 << 20;
	uint8_t *src, *tgt;
	struct vcdiff_sidx *x;
	struct out a, b;

	make_pair(&src, &tgt, n, 13);
	T_EQ(vcdiff_sidx_new(&x, n, 0, NULL), 0);
	feed(x, src, n);
	T_EQ(vcdiff_sidx_fits(x, n, 0), 0);	/* not ended */
	T_EQ(vcdiff_sidx_end(x, NULL), 0);
	T_EQ(vcdiff_sidx_fits(x, n, 0), 1);
	T_EQ(vcdiff_sidx_fits(x, n - 1, 0), 0);
	T_EQ(vcdiff_sidx_fits(x, n, (size_t)1 << 20), 0);
	T_EQ(encode(&a, src, n, tgt, 0, NULL, NULL), 0);
	T_EQ(encode(&b, src, n, tgt, 0, x, NULL), -EINVAL);	/* not ready */
	free(b.p);
	T_EQ(vcdiff_sidx_ready(x), 0);
	T_EQ(encode(&b, src, n, tgt, 0, x, NULL), 0);
	T_CHECK(a.n == b.n && !memcmp(a.p, b.p, a.n));
	vcdiff_sidx_free(x);
	free(a.p);
	free(b.p);
	free(src);
	free(tgt);
}

/* Memory passed on along a chain of writes (each index's spare key list
 * to the next builder, its table to the next build): each index still
 * gives the patch a fresh one gives, though it starts on the last one's
 * keys and entries; also with an unknown size, where B doubles over
 * them. vcdiff_sidx_held counts the table and the spare. */
static void test_passed_on(void)
{
	static const size_t budget[] = { 0, (size_t)64 << 10 };
	size_t n = (size_t)4 << 20;

	for (int b = 0; b < 2; b++) {
		struct vcdiff_sidx *prev = NULL;
		for (uint64_t k = 0; k < 3; k++) {
			uint8_t *src, *tgt;
			struct vcdiff_sidx *x;
			struct out a, o;
			uint64_t guess = budget[b] ? 0 : n, rb = 0;

			make_pair(&src, &tgt, n, 20 + k);
			T_EQ(vcdiff_sidx_new(&x, guess, budget[b], prev), 0);
			feed(x, src, n);
			T_EQ(vcdiff_sidx_end(x, prev), 0);	/* frees prev */
			T_EQ(vcdiff_sidx_ready(x), 0);
			/* a table for n bytes and a list at least as long
			 * (less the struct counted twice) */
			T_CHECK(vcdiff_sidx_held(x) + 1024 >=
				2 * vcdiff_sidx_mem(n, budget[b]));
			T_EQ(encode(&a, src, n, tgt, budget[b], NULL, NULL), 0);
			T_EQ(encode(&o, src, n, tgt, budget[b], x, &rb), 0);
			T_EQ(rb, 0);
			T_CHECK(a.n == o.n && !memcmp(a.p, o.p, a.n));
			prev = x;
			free(a.p);
			free(o.p);
			free(src);
			free(tgt);
		}
		vcdiff_sidx_free(prev);
	}
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_vcdiff_sidx.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	T_RUN(test_same_patch);
	T_RUN(test_wrong_guess);
	T_RUN(test_fits);
	T_RUN(test_passed_on);
	t_sh("rm -rf %s", tmpdir);
	return t_done();
}
