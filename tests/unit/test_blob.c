/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of codec/blob: clamping and full reads, references, local
 * blobs over fds, and the codec decoding through blobs whose reads fail
 * (as a remote store's may): zframe and vcdiff_dec must then return an
 * error, never wrong bytes, and decode exactly over a good blob. The
 * blobs here are memory-backed, count their reads and fail with a chosen
 * error at a chosen offset; they have no fd, like a remote store's.
 */
#include "codec/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "codec/zblob.h"
#include "codec/zframe.h"
#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

#define NO_FAIL UINT64_MAX

/* A memory blob's insides: the bytes it holds (have of them; the blob's
 * size may claim more, a short object) and its counters. */
struct fake {
	const uint8_t *data;
	size_t have;
	uint64_t fail_off;	/* a read covering it fails with fail_err */
	int fail_err;
	unsigned reads;
	size_t last_len;	/* len of the last read the ops saw */
	unsigned *frees;	/* counts ops->free calls (outlives the fake) */
};

static ssize_t fake_pread(void *impl, void *buf, size_t len, uint64_t off)
{
	struct fake *f = impl;

	f->reads++;
	f->last_len = len;
	if (f->fail_off != NO_FAIL && off <= f->fail_off &&
	    f->fail_off - off < len)
		return f->fail_err;
	if (off >= f->have)
		return 0;
	if (len > f->have - off)
		len = (size_t)(f->have - off);
	memcpy(buf, f->data + off, len);
	return (ssize_t)len;
}

static void fake_free(void *impl)
{
	struct fake *f = impl;

	(*f->frees)++;
	free(f);
}

static const struct blob_ops fake_ops = {
	.pread = fake_pread, .free = fake_free,
};

/* A blob of size bytes over data (have bytes of it really there). *fp
 * (if not NULL) gets the fake, valid until the blob's last put. */
static struct blob *fake_blob(const uint8_t *data, size_t have, uint64_t size,
			      uint64_t fail_off, unsigned *frees,
			      struct fake **fp)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct blob *b = NULL;
	struct stat st;

	if (!f)
		return NULL;
	f->data = data;
	f->have = have;
	f->fail_off = fail_off;
	f->fail_err = -EIO;
	f->frees = frees;
	memset(&st, 0, sizeof(st));
	st.st_size = (off_t)size;
	st.st_ino = 42;
	if (blob_new(&b, &fake_ops, f, &st, "fake/object") != 0)
		return NULL;
	if (fp)
		*fp = f;
	return b;
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
	uint8_t *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; p && i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		/* Compressible: runs of a few distinct bytes. */
		p[i] = (uint8_t)((i / 64) % 7 == 0 ? x : (x & 3));
	}
	return p;
}

/* --- the blob itself --- */

static void test_pread_clamp(void)
{
	uint8_t data[100], buf[200];
	unsigned frees = 0;
	struct fake *f = NULL;
	struct blob *b;

	for (int i = 0; i < 100; i++)
		data[i] = (uint8_t)i;
	b = fake_blob(data, sizeof(data), sizeof(data), NO_FAIL, &frees, &f);
	T_CHECK(b != NULL);
	if (!b)
		return;
	T_EQ(blob_size(b), 100);
	T_EQ(blob_stat(b)->st_size, 100);
	T_EQ(blob_stat(b)->st_ino, 42);
	T_CHECK(!strcmp(blob_name(b), "fake/object"));
	T_EQ(blob_fd(b), -1);
	/* Inside, then across the end: clamped before the ops see it. */
	T_EQ(blob_pread(b, buf, 30, 10), 30);
	T_CHECK(!memcmp(buf, data + 10, 30));
	T_EQ(blob_pread(b, buf, 50, 80), 20);
	T_EQ(f->last_len, 20);
	T_CHECK(!memcmp(buf, data + 80, 20));
	T_EQ(blob_pread(b, buf, 200, 0), 100);
	T_EQ(f->last_len, 100);
	/* At or past the end, or empty: 0, and no read at all. */
	unsigned n = f->reads;
	T_EQ(blob_pread(b, buf, 10, 100), 0);
	T_EQ(blob_pread(b, buf, 10, 1000), 0);
	T_EQ(blob_pread(b, buf, 0, 5), 0);
	T_EQ(f->reads, n);
	/* An offset whose end does not fit. */
	T_EQ(blob_pread(b, buf, 10, UINT64_MAX - 5), -EOVERFLOW);
	T_EQ(f->reads, n);
	blob_advise(b, 0, 100);		/* no advise op: a no-op */
	blob_put(b);
	T_EQ(frees, 1);
}

static void test_pread_full(void)
{
	uint8_t data[100], buf[100];
	unsigned frees = 0;
	struct fake *f = NULL;
	struct blob *b;

	memset(data, 7, sizeof(data));
	b = fake_blob(data, sizeof(data), sizeof(data), NO_FAIL, &frees, &f);
	T_CHECK(b != NULL);
	if (!b)
		return;
	T_EQ(blob_pread_full(b, buf, 100, 0), 0);
	T_EQ(blob_pread_full(b, buf, 0, 100), 0);
	/* Past the end: the blob ends first. */
	T_EQ(blob_pread_full(b, buf, 20, 90), -EIO);
	T_EQ(blob_pread_full(b, buf, 1, 100), -EIO);
	/* A failing read passes its error through, whatever it is. */
	f->fail_off = 50;
	f->fail_err = -ETIMEDOUT;
	T_EQ(blob_pread_full(b, buf, 10, 45), -ETIMEDOUT);
	T_EQ(blob_pread(b, buf, 10, 45), -ETIMEDOUT);
	T_EQ(blob_pread_full(b, buf, 10, 60), 0);
	blob_put(b);

	/* A short object: it claims 100 bytes and holds 60. */
	b = fake_blob(data, 60, sizeof(data), NO_FAIL, &frees, NULL);
	T_CHECK(b != NULL);
	if (!b)
		return;
	T_EQ(blob_pread_full(b, buf, 100, 0), -EIO);
	T_EQ(blob_pread_full(b, buf, 10, 70), -EIO);
	T_EQ(blob_pread_full(b, buf, 10, 50), 0);
	T_EQ(blob_pread(b, buf, 100, 0), 60);
	blob_put(b);
	T_EQ(frees, 2);
}

static void test_refcount(void)
{
	uint8_t data[8] = { 0 };
	unsigned frees = 0;
	struct blob *b = fake_blob(data, 8, 8, NO_FAIL, &frees, NULL);

	T_CHECK(b != NULL);
	if (!b)
		return;
	T_CHECK(blob_ref(b) == b);
	blob_ref(b);
	blob_put(b);
	blob_put(b);
	T_EQ(frees, 0);			/* one reference left */
	T_EQ(blob_size(b), 8);
	blob_put(b);
	T_EQ(frees, 1);			/* freed once, at the last put */
	blob_put(NULL);			/* a no-op */
	T_EQ(frees, 1);
}

static void test_from_fd(void)
{
	uint8_t data[5000], buf[5000];
	struct blob *b = NULL;
	struct stat st;
	int fd, keep;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	fd = t_mem_fd(data, sizeof(data));
	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	T_EQ(fstat(fd, &st), 0);
	/* blob_from_dup: the caller's fd stays the caller's. */
	T_EQ(blob_from_dup(&b, fd, "dup"), 0);
	T_CHECK(blob_fd(b) >= 0 && blob_fd(b) != fd);
	T_EQ(blob_size(b), sizeof(data));
	T_EQ(blob_stat(b)->st_ino, st.st_ino);
	T_EQ(blob_stat(b)->st_mtim.tv_nsec, st.st_mtim.tv_nsec);
	T_EQ(blob_pread(b, buf, sizeof(buf), 1000), 4000);
	T_CHECK(!memcmp(buf, data + 1000, 4000));
	blob_advise(b, 0, 4096);
	blob_put(b);
	T_CHECK(fcntl(fd, F_GETFD) >= 0);
	/* blob_from_fd takes the fd: the last put closes it. */
	keep = dup(fd);
	T_EQ(blob_from_fd(&b, fd, "taken"), 0);
	T_EQ(blob_fd(b), fd);
	T_EQ(blob_pread_full(b, buf, 10, 4990), 0);
	blob_put(b);
	T_CHECK(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
	close(keep);
	T_EQ(blob_from_fd(&b, -1, "bad"), -EBADF);
	T_EQ(blob_from_dup(&b, -1, "bad"), -EBADF);
}

/* Batched reads give what blob_pread gives, read by read: local blobs
 * (through io_uring where the kernel has it), a blob with no fd, reads
 * past the end, a failing read, a file truncated under its blob, and more
 * reads than one ring round holds. */
static void test_batch(void)
{
	enum { N = 200, BIG = 300000 };
	uint8_t *data = pattern(BIG, 3), *out = malloc((size_t)N * 9000);
	uint8_t *want = malloc(9000);
	struct blob *loc = NULL, *cut = NULL, *fake;
	struct blob_batch *bb = NULL;
	struct blob_req r[N];
	unsigned frees = 0;
	int fd = t_mem_fd(data, BIG), fd2 = t_mem_fd(data, BIG);

	T_CHECK(data && out && want && fd >= 0 && fd2 >= 0);
	if (!data || !out || !want || fd < 0 || fd2 < 0)
		return;
	T_EQ(blob_from_fd(&loc, fd, "local"), 0);
	T_EQ(blob_from_dup(&cut, fd2, "cut"), 0);
	/* The file shrinks under its blob, which still claims BIG bytes. */
	T_EQ(ftruncate(fd2, 100000), 0);
	fake = fake_blob(data, BIG, BIG, 250000, &frees, NULL);
	T_CHECK(fake != NULL);
	T_EQ(blob_batch_new(&bb), 0);
	if (!loc || !cut || !fake || !bb)
		return;
	for (int i = 0; i < N; i++) {
		struct blob *b = i % 5 == 3 ? fake : i % 5 == 4 ? cut : loc;
		uint64_t off = (uint64_t)(i * 7919) % (BIG + 4096);
		r[i] = (struct blob_req){ .b = b, .buf = out + (size_t)i * 9000,
					  .len = 1 + (size_t)(i * 37) % 8999,
					  .off = off, .res = 12345 };
	}
	blob_batch_read(bb, r, N);
	int bad = 0;
	for (int i = 0; i < N; i++) {
		ssize_t w = blob_pread(r[i].b, want, r[i].len, r[i].off);
		if (w != r[i].res || (w > 0 && memcmp(want, r[i].buf,
						      (size_t)w)))
			bad++;
	}
	T_EQ(bad, 0);
	/* Each kind of answer was asked for: bytes, a short count at the
	 * end, nothing past it, the fake's error, the cut file's short. */
	int full = 0, shrt = 0, none = 0, err = 0;
	for (int i = 0; i < N; i++) {
		full += r[i].res == (ssize_t)r[i].len;
		shrt += r[i].res > 0 && r[i].res < (ssize_t)r[i].len;
		none += r[i].res == 0;
		err += r[i].res == -EIO;
	}
	T_CHECK(full > 100 && shrt > 0 && none > 0 && err > 0);
	blob_batch_read(bb, r, 0);
	blob_batch_free(bb);
	blob_put(loc);
	blob_put(cut);
	blob_put(fake);
	T_EQ(frees, 1);
	close(fd2);
	free(data);
	free(out);
	free(want);
}

/* --- the codec over failing blobs --- */

/* The bytes written to fd so far (a memfd), in memory; *len set. */
static uint8_t *slurp_fd(int fd, size_t *len)
{
	struct stat st;
	uint8_t *p;

	if (fstat(fd, &st) < 0)
		return NULL;
	p = malloc((size_t)st.st_size + 1);
	if (p && pread(fd, p, (size_t)st.st_size, 0) != st.st_size) {
		free(p);
		return NULL;
	}
	*len = (size_t)st.st_size;
	return p;
}

/*
 * Opens the zstd file (flen bytes, have of them there) through a blob
 * failing at fail_off, from the start or (late) only once open is done,
 * and reads every frame. Returns 0 if everything read back exactly, 1 if
 * something failed with an error; counts wrong bytes in *wrong. *z_out
 * (if not NULL) gets the frame table's comp extent holding fail_off: 1 if
 * a data frame holds it.
 */
static int zframe_over(const uint8_t *file, size_t flen, size_t have,
		       uint64_t fail_off, int late, const uint8_t *data,
		       size_t dlen, int *in_frame, int *wrong)
{
	unsigned frees = 0;
	struct fake *f = NULL;
	struct blob *b = fake_blob(file, have, flen, late ? NO_FAIL : fail_off,
				   &frees, &f);
	struct zframe *z = NULL;
	struct zframe_dctx *dc = NULL;
	uint8_t *buf = NULL;
	int failed = 0;

	if (!b || zframe_dctx_new(&dc))
		return (*wrong)++, 1;
	if (zframe_open(&z, b, NULL)) {
		failed = 1;
		goto out;
	}
	blob_put(b);		/* the zframe holds its own reference */
	b = NULL;
	f->fail_off = fail_off;
	if (frees != 0 || zframe_size(z) != dlen)
		(*wrong)++;
	buf = malloc(zframe_max_frame(z) + 1);
	if (in_frame)
		*in_frame = 0;
	for (size_t i = 0; buf && i < zframe_count(z); i++) {
		const struct zframe_entry *e = zframe_frame(z, i);
		ssize_t r = zframe_read_frame(z, dc, i, buf, e->raw_len);

		if (in_frame && fail_off >= e->comp_off &&
		    fail_off - e->comp_off < e->comp_len)
			*in_frame = 1;
		if (r < 0)
			failed = 1;
		else if ((size_t)r != e->raw_len ||
			 memcmp(buf, data + e->raw_off, e->raw_len))
			(*wrong)++;
	}
out:
	zframe_free(z);
	blob_put(b);
	if (frees != 1)
		(*wrong)++;	/* the last reference freed it, once */
	zframe_dctx_free(dc);
	free(buf);
	return failed;
}

static void test_zframe_over_blob(void)
{
	const size_t dlen = 300000;
	uint8_t *data = pattern(dlen, 1), *file = NULL, *out = NULL;
	struct zframe_writer_opts o = { .frame_size = 16384, .nthreads = 1 };
	struct zframe_writer *w = NULL;
	int fd = memfd_create("zf", MFD_CLOEXEC), wrong = 0, nlate = 0;
	size_t flen = 0, olen = 0;

	T_CHECK(data && fd >= 0);
	T_EQ(zframe_writer_new(&w, fd, &o), 0);
	T_EQ(zframe_writer_write(w, data, dlen), 0);
	T_EQ(zframe_writer_finish(w), 0);
	zframe_writer_free(w);
	file = slurp_fd(fd, &flen);
	close(fd);
	T_CHECK(file && flen > 100);
	if (!file)
		goto out;
	/* A good blob: every frame, exactly. */
	T_EQ(zframe_over(file, flen, flen, NO_FAIL, 0, data, dlen, NULL,
			 &wrong), 0);
	T_EQ(wrong, 0);
	/* Open, then every frame, reads every byte: a read failing
	 * anywhere fails, with no wrong bytes before it. */
	for (uint64_t bad = 0; bad < flen; bad += 1 + flen / 500)
		T_EQ(zframe_over(file, flen, flen, bad, 0, data, dlen, NULL,
				 &wrong), 1);
	T_EQ(wrong, 0);
	/* Failing after open (open reads ahead, so most failures would
	 * hit it first): exactly the frames holding the bad byte fail. */
	for (uint64_t bad = 0; bad < flen; bad += 1 + flen / 500) {
		int in_frame = -1;
		int r = zframe_over(file, flen, flen, bad, 1, data, dlen,
				    &in_frame, &wrong);
		T_EQ(r, in_frame);
		nlate += r;
	}
	T_EQ(wrong, 0);
	T_CHECK(nlate > 100);
	/* A short object (it claims flen bytes): fails, no wrong bytes. */
	for (size_t have = 0; have < flen; have += 1 + have / 8)
		T_EQ(zframe_over(file, flen, have, NO_FAIL, 0, data, dlen,
				 NULL, &wrong), 1);
	T_EQ(wrong, 0);

	/* zframe_transcode reads the whole input: a failing read anywhere
	 * fails it, a good blob transcodes to the same bytes. */
	for (uint64_t bad = 0; bad < flen; bad += 1 + flen / 13) {
		unsigned frees = 0;
		struct zframe_writer_opts ro = { .raw = 1 };
		struct blob *b = fake_blob(file, flen, flen, bad, &frees, NULL);
		int ofd = memfd_create("zt", MFD_CLOEXEC);

		T_CHECK(zframe_transcode(b, ofd, &ro, NULL, NULL, NULL) < 0);
		blob_put(b);
		close(ofd);
	}
	{
		unsigned frees = 0;
		struct zframe_writer_opts ro = { .raw = 1 };
		struct blob *b = fake_blob(file, flen, flen, NO_FAIL, &frees,
					   NULL);
		int ofd = memfd_create("zt", MFD_CLOEXEC);

		T_EQ(zframe_transcode(b, ofd, &ro, NULL, NULL, NULL), 0);
		out = slurp_fd(ofd, &olen);
		T_CHECK(out && olen == dlen && !memcmp(out, data, dlen));
		blob_put(b);
		close(ofd);
	}
out:
	free(out);
	free(file);
	free(data);
}

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static int mem_write(void *ctx, const void *buf, size_t len)
{
	struct membuf *m = ctx;

	if (m->len + len > m->cap) {
		size_t cap = (m->len + len) * 2;
		uint8_t *p = realloc(m->p, cap);
		if (!p)
			return -ENOMEM;
		m->p = p;
		m->cap = cap;
	}
	memcpy(m->p + m->len, buf, len);
	m->len += len;
	return 0;
}

static const uint8_t *src_data;
static size_t src_len;

static ssize_t src_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	(void)ctx;
	if (off >= src_len)
		return 0;
	if (len > src_len - off)
		len = (size_t)(src_len - off);
	memcpy(buf, src_data + off, len);
	return (ssize_t)len;
}

/*
 * Opens the patch through a blob failing at fail_off, from the start or
 * (late) only once open is done, and rebuilds every window (and reads
 * every section alone). 0 if all of it came out exactly, 1 if something
 * failed with an error; wrong bytes counted. *in_win (if not NULL): 1 if
 * a window's sections hold fail_off.
 */
static int patch_over(const struct membuf *pf, uint64_t fail_off, int late,
		      const uint8_t *tgt, size_t tlen, uint8_t *scratch,
		      int *in_win, int *wrong)
{
	unsigned frees = 0;
	struct fake *f = NULL;
	struct blob *b = fake_blob(pf->p, pf->len, pf->len,
				   late ? NO_FAIL : fail_off, &frees, &f);
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	int failed = 0;

	if (!b || vcdiff_dec_new(&d))
		return (*wrong)++, 1;
	if (vcdiff_patch_open(&p, b, NULL)) {
		failed = 1;
		goto out;
	}
	blob_put(b);		/* the patch holds its own reference */
	b = NULL;
	f->fail_off = fail_off;
	if (frees != 0 || vcdiff_patch_target_size(p) != tlen)
		(*wrong)++;
	if (in_win)
		*in_win = 0;
	for (size_t i = 0; i < vcdiff_patch_nwin(p); i++) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		uint64_t sect = (uint64_t)w->data_len + w->inst_len +
				w->addr_len;
		ssize_t r;

		if (in_win && fail_off >= w->data_off &&
		    fail_off - w->data_off < sect)
			*in_win = 1;
		for (int k = VCDIFF_SECT_DATA; k <= VCDIFF_SECT_ADDR; k++)
			if (vcdiff_dec_section(d, p, i, k, scratch,
					       VCDIFF_WIN_MAX) < 0)
				failed = 1;
		r = vcdiff_dec_window(d, p, i, src_read, NULL, NULL, NULL,
				      scratch, VCDIFF_WIN_MAX);
		if (r < 0)
			failed = 1;
		else if ((size_t)r != w->tgt_len ||
			 memcmp(scratch, tgt + w->tgt_off, w->tgt_len))
			(*wrong)++;
	}
out:
	vcdiff_patch_free(p);
	blob_put(b);
	if (frees != 1)
		(*wrong)++;
	vcdiff_dec_free(d);
	return failed;
}

static void test_vcdiff_over_blob(void)
{
	const size_t len = 300000;
	uint8_t *src = pattern(len, 2), *tgt = malloc(len);
	uint8_t *noise = pattern(len, 3);
	uint8_t *scratch = malloc(VCDIFF_WIN_MAX);
	int wrong = 0;

	T_CHECK(src && tgt && noise && scratch);
	if (!src || !tgt || !noise || !scratch)
		goto out;
	/* The target: the source moved about, with new bytes (ADDs) in
	 * every window, so the patch has sections worth failing in. */
	memcpy(tgt, src + 4096, len - 4096);
	memcpy(tgt + len - 4096, src, 4096);
	for (size_t i = 0; i + 3000 < len; i += 10000)
		memcpy(tgt + i, noise + i, 3000);
	src_data = src;
	src_len = len;
	for (int sec = 0; sec < 2; sec++) {
		struct vcdiff_enc_opts o = {
			.win_size = 65536,
			.secondary = sec ? VCDIFF_SEC_LZMA_WINDOWED :
				     VCDIFF_SEC_NONE,
		};
		struct membuf pf = { NULL, 0, 0 };
		struct vcdiff_enc *e = NULL;
		int nlate = 0;

		T_EQ(vcdiff_enc_new(&e, &o, len, src_read, NULL, mem_write,
				    &pf), 0);
		T_EQ(vcdiff_enc_write(e, tgt, len), 0);
		T_EQ(vcdiff_enc_finish(e), 0);
		vcdiff_enc_free(e);
		T_CHECK(pf.len > 10000);
		if (pf.len <= 10000) {
			free(pf.p);
			continue;
		}
		T_EQ(patch_over(&pf, NO_FAIL, 0, tgt, len, scratch, NULL,
				&wrong), 0);
		T_EQ(wrong, 0);
		/* Open and the windows read every byte: always a failure. */
		for (uint64_t bad = 0; bad < pf.len; bad += 1 + pf.len / 300)
			T_EQ(patch_over(&pf, bad, 0, tgt, len, scratch, NULL,
					&wrong), 1);
		T_EQ(wrong, 0);
		/* After open: exactly the windows holding it fail. */
		for (uint64_t bad = 0; bad < pf.len; bad += 1 + pf.len / 300) {
			int in_win = -1;
			int r = patch_over(&pf, bad, 1, tgt, len, scratch,
					   &in_win, &wrong);
			T_EQ(r, in_win);
			nlate += r;
		}
		T_EQ(wrong, 0);
		T_CHECK(nlate > 100);
		/* recode reads it all: fails on any bad byte. */
		for (uint64_t bad = 0; bad < pf.len; bad += 1 + pf.len / 11) {
			unsigned frees = 0;
			struct blob *b = fake_blob(pf.p, pf.len, pf.len, bad,
						   &frees, NULL);
			int ofd = memfd_create("rc", MFD_CLOEXEC);

			T_CHECK(vcdiff_recode_plain(b, ofd, NULL, NULL,
						    NULL) < 0);
			blob_put(b);
			close(ofd);
		}
		free(pf.p);
	}
out:
	free(scratch);
	free(noise);
	free(src);
	free(tgt);
}

/*
 * zblob: a seekable zstd file's content as a blob, as a bucket's
 * compressed aux files are read. Every read, at odd offsets and lengths
 * across frame edges, must give the original bytes; a damaged frame
 * must fail the read (zstd's frame checksum), never give other bytes.
 */
static void test_zblob(void)
{
	size_t dlen = (3u << 20) + 12345;
	uint8_t *data = malloc(dlen), *buf = malloc(1 << 20), *file = NULL;
	struct zframe_writer_opts zo = { .frame_size = 64 << 10,
					 .nthreads = 1 };
	struct zframe_writer *zw = NULL;
	struct blob *src = NULL, *zb = NULL;
	const char *why = "";
	int fd = t_mem_fd(NULL, 0);
	uint64_t rng = 7;

	T_CHECK(data && buf && fd >= 0);
	if (!data || !buf || fd < 0)
		goto out;
	/* Repeats, like an aux file, with noise in places. */
	for (size_t i = 0; i < dlen; i++)
		data[i] = (uint8_t)(i % 4096 < 3000 ? i / 4096 : t_rng(&rng));
	T_CHECK(zframe_writer_new(&zw, fd, &zo) == 0);
	T_CHECK(zframe_writer_write(zw, data, dlen) == 0);
	T_CHECK(zframe_writer_finish(zw) == 0);
	zframe_writer_free(zw);
	off_t flen = lseek(fd, 0, SEEK_END);
	T_CHECK(flen > 0 && (size_t)flen < dlen / 2);
	file = malloc((size_t)flen);
	T_CHECK(file && pread(fd, file, (size_t)flen, 0) == flen);
	if (!file)
		goto out;
	src = t_blob_mem(file, (size_t)flen);
	T_CHECK(src && zblob_open(&zb, src, "aux.zst", &why) == 0);
	if (!zb)
		goto out;
	T_EQ(blob_size(zb), dlen);
	for (int k = 0; k < 200; k++) {
		uint64_t off = t_rng(&rng) % dlen;
		size_t len = (size_t)(t_rng(&rng) % (1 << 20)) + 1;
		if (len > dlen - off)
			len = (size_t)(dlen - off);
		T_EQ(blob_pread(zb, buf, len, off), len);
		T_CHECK(!memcmp(buf, data + off, len));
	}
	T_EQ(blob_pread(zb, buf, 100, dlen), 0);
	blob_put(zb);
	zb = NULL;
	blob_put(src);
	/* A byte of a frame's compressed data flipped: that frame's reads
	 * fail, the others still read right. */
	file[flen / 2] ^= 0x5a;
	src = t_blob_mem(file, (size_t)flen);
	T_CHECK(src && zblob_open(&zb, src, "aux.zst", &why) == 0);
	if (!zb)
		goto out;
	int failed = 0, right = 0;
	for (uint64_t off = 0; off < dlen; off += 64 << 10) {
		size_t len = dlen - off < (64u << 10) ? (size_t)(dlen - off) :
			     64u << 10;
		ssize_t n = blob_pread(zb, buf, len, off);
		if (n < 0)
			failed++;
		else if (n == (ssize_t)len && !memcmp(buf, data + off, len))
			right++;
	}
	T_CHECK(failed >= 1);
	T_EQ(failed + right, (dlen + (64 << 10) - 1) / (64 << 10));
out:
	blob_put(zb);
	blob_put(src);
	if (fd >= 0)
		close(fd);
	free(file);
	free(buf);
	free(data);
}

int main(void)
{
	T_RUN(test_pread_clamp);
	T_RUN(test_pread_full);
	T_RUN(test_refcount);
	T_RUN(test_from_fd);
	T_RUN(test_batch);
	T_RUN(test_zframe_over_blob);
	T_RUN(test_vcdiff_over_blob);
	T_RUN(test_zblob);
	return t_done();
}
