/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_dec_xd3: the VCDIFF decoder against stock xdelta3 3.0.11.
 *
 * Source/target pairs are generated from fixed seeds, encoded with the
 * real `xdelta3 -e` in several modes (lzma default, -S none, djw, -9, -B,
 * -n, small -W), and every window is decoded op-wise and byte-wise and
 * compared with the real target. lzma patches are also recoded to plain
 * ones, which stock xdelta3 must decode and which must equal its own
 * `-S none` output; djw ones are refused and checked through stock
 * `xdelta3 recode`. Temporary files live in one mkdtemp dir that is
 * removed at the end.
 *
 * Not here: hand-made patches for what xdelta3 never writes
 * (test_vcdiff_dec) and damaged ones (test_vcdiff_dec_bad). Shared
 * helpers are in vcdiff_dec_tutil.h.
 */
#include "codec/vcdiff_dec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/vcdiff_dec_tutil.h"

/* stock lzma patches that decoded window by window as they are */
static int n_windowed;

/* --- checking a plain patch against the real source and target --- */

/*
 * Opens the plain patch at path and checks, window by window: the ops
 * cover the window exactly and each op's meaning matches the real
 * bytes; the rebuilt window equals the target; find() agrees.
 */
static void verify_plain(const char *path, const uint8_t *src, size_t src_len,
			 const uint8_t *tgt, size_t tgt_len, size_t *nwin_out)
{
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	struct mem sm = { src, src_len };
	uint8_t *patch = NULL, *win = NULL;
	size_t patch_len;
	const char *why = NULL;
	int fd = open(path, O_RDONLY);
	int rc;

	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	patch = read_file(path, &patch_len);
	rc = t_patch_open(&p, fd, &why);
	T_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "  open %s: %s\n", path, why);
		goto out;
	}
	T_EQ(vcdiff_dec_new(&d), 0);
	T_EQ(vcdiff_patch_target_size(p), tgt_len);
	T_CHECK(vcdiff_patch_nwin(p) >= 1);
	T_CHECK(vcdiff_patch_source_span(p) <= src_len);
	if (nwin_out)
		*nwin_out = vcdiff_patch_nwin(p);
	win = malloc(VCDIFF_WIN_MAX);
	uint64_t expect_off = 0;
	for (size_t i = 0; i < vcdiff_patch_nwin(p); i++) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		const struct vcdiff_op *ops;
		size_t nops;
		int bad = 0;

		T_EQ(w->tgt_off, expect_off);
		rc = vcdiff_dec_ops(d, p, i, &ops, &nops);
		T_EQ(rc, 0);
		if (rc) {
			fprintf(stderr, "  window %zu: %s\n", i,
				vcdiff_dec_reason(d));
			break;
		}
		/* ADD bytes: the patch file, or the decompressed data
		 * section of a windowed lzma patch (vcdiff_dec.h). */
		const uint8_t *lit = patch;
		uint64_t lit_lo = w->data_off;
		uint64_t lit_hi = w->data_off + w->data_len;
		uint8_t *zdata = NULL;
		if (w->del_ind & VCDIFF_DEL_DATA) {
			struct vcdiff_dec *sd = NULL;
			zdata = malloc(w->data_plain_len + 1);
			T_EQ(vcdiff_dec_new(&sd), 0);
			T_EQ(vcdiff_dec_section(sd, p, i, VCDIFF_SECT_DATA,
						zdata, w->data_plain_len),
			     w->data_plain_len);
			vcdiff_dec_free(sd);
			lit = zdata;
			lit_lo = 0;
			lit_hi = w->data_plain_len;
		}
		uint64_t at = w->tgt_off;
		for (size_t k = 0; k < nops && !bad; k++) {
			const struct vcdiff_op *op = &ops[k];
			const uint8_t *want = tgt + op->tgt_off;

			if (op->tgt_off != at || op->len == 0 ||
			    op->tgt_off + op->len > w->tgt_off + w->tgt_len) {
				bad = 1;
				break;
			}
			switch (op->kind) {
			case VCDIFF_OP_ADD:
				bad = op->addr < lit_lo ||
				      op->addr + op->len > lit_hi ||
				      memcmp(lit + op->addr, want, op->len);
				break;
			case VCDIFF_OP_RUN:
				for (uint32_t j = 0; j < op->len; j++)
					bad |= want[j] != op->byte;
				break;
			case VCDIFF_OP_COPY_SRC:
				bad = op->addr < w->cpy_off ||
				      op->addr + op->len > w->cpy_off +
							   w->cpy_len ||
				      op->addr + op->len > src_len ||
				      memcmp(src + op->addr, want, op->len);
				break;
			case VCDIFF_OP_COPY_TGT:
				/* Front-to-back copy: out[t+j] == out[a+j]
				 * for every j, overlapping or not. */
				bad = op->addr >= op->tgt_off;
				for (uint32_t j = 0; j < op->len && !bad; j++)
					bad = tgt[op->addr + j] != want[j];
				break;
			default:
				bad = 1;
			}
			at += op->len;
		}
		free(zdata);
		T_CHECK(!bad);
		T_EQ(at, w->tgt_off + w->tgt_len);
		ssize_t n = vcdiff_dec_window(d, p, i, mem_read, &sm, NULL,
					      NULL, win, VCDIFF_WIN_MAX);
		T_EQ(n, w->tgt_len);
		if (n != (ssize_t)w->tgt_len)
			fprintf(stderr, "  window %zu: %s\n", i,
				vcdiff_dec_reason(d));
		else
			T_CHECK(memcmp(win, tgt + w->tgt_off, n) == 0);
		expect_off += w->tgt_len;
		if (bad)
			break;
	}
	for (int k = 0; k < 200 && tgt_len > 0; k++) {
		uint64_t off = rng_below(tgt_len);
		size_t i = vcdiff_patch_find(p, off);
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		T_CHECK(w && w->tgt_off <= off &&
			off < w->tgt_off + w->tgt_len);
	}
	T_EQ(vcdiff_patch_find(p, tgt_len), vcdiff_patch_nwin(p));
out:
	free(win);
	free(patch);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
}

static int files_equal(const char *a, const char *b)
{
	size_t la, lb;
	uint8_t *pa = read_file(a, &la), *pb = read_file(b, &lb);
	int eq = pa && pb && la == lb && memcmp(pa, pb, la) == 0;

	free(pa);
	free(pb);
	return eq;
}

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	int *calls = ctx;

	(*calls)++;
	if (done > total)
		(*calls) += 1000000;
}

/* Recodes in -> out with our code. Returns the rc. */
static int recode_file(const char *in, const char *out, const char **why)
{
	int ifd = open(in, O_RDONLY);
	int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int calls = 0;
	int rc = -EIO;

	if (ifd >= 0 && ofd >= 0)
		rc = t_recode_plain(ifd, ofd, progress_cb, &calls, why);
	if (ifd >= 0)
		close(ifd);
	if (ofd >= 0)
		close(ofd);
	T_CHECK(rc != 0 || (calls >= 2 && calls < 1000000));
	return rc;
}

/* Windows whose sections are compressed must be refused by dec_ops. */
static void check_compressed_refused(const char *path)
{
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || t_patch_open(&p, fd, NULL) != 0) {
		T_CHECK(0);
		goto out;
	}
	vcdiff_dec_new(&d);
	for (size_t i = 0; i < vcdiff_patch_nwin(p); i++) {
		const struct vcdiff_op *ops;
		size_t nops;
		if (vcdiff_patch_win(p, i)->del_ind)
			T_EQ(vcdiff_dec_ops(d, p, i, &ops, &nops), -ENOTSUP);
	}
out:
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	if (fd >= 0)
		close(fd);
}

static int all_windows_have_source(const char *path)
{
	struct vcdiff_patch *p = NULL;
	int fd = open(path, O_RDONLY), all = 0;

	if (fd >= 0 && t_patch_open(&p, fd, NULL) == 0) {
		all = 1;
		for (size_t i = 0; i < vcdiff_patch_nwin(p); i++)
			if (!(vcdiff_patch_win(p, i)->win_ind &
			      VCDIFF_WIN_SOURCE))
				all = 0;
	}
	vcdiff_patch_free(p);
	if (fd >= 0)
		close(fd);
	return all;
}

/*
 * Encodes tgt against src with stock xdelta3 in the given mode and checks
 * our decoder on the result (recoding secondary-compressed patches first).
 */
static void check_pair(const char *name, const uint8_t *src, size_t src_len,
		       const uint8_t *tgt, size_t tgt_len, const char *mode)
{
	char cmd[1024];
	const char *why = NULL;
	struct vcdiff_patch *p = NULL;
	int secondary = -1, windowed = 0;
	int rc, fd;

	T_EQ(t_write_file(tpath("src"), src, src_len), 0);
	T_EQ(t_write_file(tpath("tgt"), tgt, tgt_len), 0);
	snprintf(cmd, sizeof(cmd), "xdelta3 -e -f %s -s %s %s %s", mode,
		 tpath("src"), tpath("tgt"), tpath("patch"));
	rc = run(cmd);
	T_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "  %s [%s]: xdelta3 failed\n", name, mode);
		return;
	}
	fd = open(tpath("patch"), O_RDONLY);
	rc = t_patch_open(&p, fd, &why);
	T_EQ(rc, 0);
	if (rc == 0) {
		secondary = vcdiff_patch_secondary(p);
		windowed = vcdiff_patch_windowed(p);
		T_EQ(vcdiff_patch_target_size(p), tgt_len);
	}
	vcdiff_patch_free(p);
	close(fd);

	if (secondary == VCDIFF_SEC_LZMA && windowed) {
		/* Stock lzma is windowed when only one window has
		 * compressed sections: each kind's stream holds one block
		 * (xdelta3 never ends it, so this is the only way). */
		verify_plain(tpath("patch"), src, src_len, tgt, tgt_len,
			     NULL);
		n_windowed++;
	}
	if (secondary == VCDIFF_SEC_LZMA) {
		if (!windowed)
			check_compressed_refused(tpath("patch"));
		rc = recode_file(tpath("patch"), tpath("plain"), &why);
		T_EQ(rc, 0);
		if (rc) {
			fprintf(stderr, "  %s [%s]: recode: %s\n", name, mode,
				why);
			return;
		}
		/* Stock xdelta3 must accept our output... */
		snprintf(cmd, sizeof(cmd),
			 "xdelta3 -d -f -s %s %s %s", tpath("src"),
			 tpath("plain"), tpath("out"));
		T_EQ(run(cmd), 0);
		T_CHECK(files_equal(tpath("out"), tpath("tgt")));
		/* ...and it should be what `xdelta3 -e -S none` writes.
		 * (Not `xdelta3 recode -S none`: 3.0.11 writes VCD_SOURCE
		 * with uninitialised cpylen/cpyoff into windows that have
		 * no source segment, and its output then fails to decode.) */
		snprintf(cmd, sizeof(cmd),
			 "xdelta3 -e -f %s -S none -s %s %s %s",
			 mode, tpath("src"), tpath("tgt"), tpath("xplain"));
		T_EQ(run(cmd), 0);
		T_CHECK(files_equal(tpath("plain"), tpath("xplain")));
		verify_plain(tpath("plain"), src, src_len, tgt, tgt_len, NULL);
	} else if (secondary == VCDIFF_SEC_DJW ||
		   secondary == VCDIFF_SEC_FGK) {
		T_EQ(recode_file(tpath("patch"), tpath("plain"), &why),
		     -ENOTSUP);
		/* Stock recode is only trustworthy when every window has a
		 * source segment (see above). */
		if (all_windows_have_source(tpath("patch"))) {
			snprintf(cmd, sizeof(cmd),
				 "xdelta3 recode -f -S none %s %s",
				 tpath("patch"), tpath("xplain"));
			T_EQ(run(cmd), 0);
			verify_plain(tpath("xplain"), src, src_len, tgt,
				     tgt_len, NULL);
		}
	} else if (secondary == VCDIFF_SEC_NONE) {
		verify_plain(tpath("patch"), src, src_len, tgt, tgt_len,
			     NULL);
		/* Recoding a plain patch changes nothing. */
		T_EQ(recode_file(tpath("patch"), tpath("plain"), &why), 0);
		T_CHECK(files_equal(tpath("plain"), tpath("patch")));
	}
}

/* Repeated blocks, period-2/3 patterns and runs. */
static size_t gen_repeats(const uint8_t *src, size_t n, uint8_t *tgt,
			  size_t cap)
{
	size_t t = 0;

	while (t < cap) {
		size_t what = rng_below(5), len = 1 + rng_below(20000);
		if (len > cap - t)
			len = cap - t;
		switch (what) {
		case 0: {	/* a 777-byte block of the source, repeated */
			size_t off = n > 777 ? rng_below(n - 777) : 0;
			for (size_t j = 0; j < len; j++)
				tgt[t + j] = n ? src[off + j % (n < 777 ? n :
								  777)] : 0;
			break;
		}
		case 1:	/* period 2 */
		case 2: {	/* period 3 */
			uint8_t pat[3] = { (uint8_t)rng(), (uint8_t)rng(),
					   (uint8_t)rng() };
			for (size_t j = 0; j < len; j++)
				tgt[t + j] = pat[j % (what + 1)];
			break;
		}
		case 3:
			memset(tgt + t, rng_below(2) ? 0 : 0xff, len);
			break;
		default:
			gen_random(tgt + t, len < 500 ? len : 500);
			len = len < 500 ? len : 500;
		}
		t += len;
	}
	return t;
}

static size_t gen_runs(const uint8_t *src, size_t n, uint8_t *tgt, size_t cap)
{
	size_t t = 0;

	while (t < cap) {
		size_t len = 1 + rng_below(40000);
		if (len > cap - t)
			len = cap - t;
		if (rng_below(2))
			memset(tgt + t, rng_below(3) ? 0 : 0xff, len);
		else
			memcpy(tgt + t, src + rng_below(n - len), len);
		t += len;
	}
	return t;
}

/* --- tests against stock xdelta3 --- */

static const char *modes[] = {
	"-S none", "", "-S djw", "-9 -S none", "-B 1073741824 -S none",
	"-n -S none", "-W 16384 -S none", "-W 16384",
};

static void check_all_modes(const char *name, const uint8_t *src,
			    size_t src_len, const uint8_t *tgt,
			    size_t tgt_len)
{
	for (size_t m = 0; m < sizeof(modes) / sizeof(*modes); m++)
		check_pair(name, src, src_len, tgt, tgt_len, modes[m]);
}

static void test_xdelta3_random_edits(void)
{
	size_t n = 1 << 20;
	uint8_t *src = malloc(n), *tgt = malloc(n);

	rng_seed(1);
	gen_random(src, n);
	memcpy(tgt, src, n);
	for (int k = 0; k < 200; k++)
		tgt[rng_below(n)] ^= (uint8_t)(1 + rng_below(255));
	check_all_modes("random_edits", src, n, tgt, n);
	free(src);
	free(tgt);
}

static void test_xdelta3_shifted(void)
{
	size_t n = 2 << 20, cap = 2 << 20;
	uint8_t *src = malloc(n), *tgt = malloc(cap);

	rng_seed(2);
	gen_random(src, n);
	size_t tn = mutate(src, n, tgt, cap);
	check_all_modes("shifted", src, n, tgt, tn);
	free(src);
	free(tgt);
}

static void test_xdelta3_text(void)
{
	size_t n = 1500000, cap = 1600000;
	uint8_t *src = malloc(n), *tgt = malloc(cap);

	rng_seed(3);
	gen_text(src, n);
	size_t tn = mutate(src, n, tgt, cap);
	check_all_modes("text", src, n, tgt, tn);
	free(src);
	free(tgt);
}

static void test_xdelta3_repeats(void)
{
	size_t n = 512 << 10, cap = 1 << 20;
	uint8_t *src = malloc(n), *tgt = malloc(cap);

	rng_seed(4);
	gen_text(src, n);
	size_t tn = gen_repeats(src, n, tgt, cap);
	check_all_modes("repeats", src, n, tgt, tn);
	free(src);
	free(tgt);
}

static void test_xdelta3_runs(void)
{
	size_t n = 1 << 20, cap = 1 << 20;
	uint8_t *src = malloc(n), *tgt = malloc(cap);

	rng_seed(5);
	gen_random(src, n);
	size_t tn = gen_runs(src, n, tgt, cap);
	check_all_modes("runs", src, n, tgt, tn);
	free(src);
	free(tgt);
}

static void test_xdelta3_empty(void)
{
	size_t n = 300 << 10;
	uint8_t *a = malloc(n), *b = malloc(n);

	rng_seed(6);
	gen_text(a, n);
	size_t bn = gen_repeats(a, n, b, n);
	check_all_modes("empty_src", a, 0, b, bn);
	check_all_modes("empty_tgt", a, 64 << 10, b, 0);
	check_pair("empty_both", a, 0, b, 0, "");
	free(a);
	free(b);
}

/* Many windows: 8 MiB of shuffled 256 KiB chunks with edits, -W 16384. */
static void test_xdelta3_multiwindow(void)
{
	size_t n = 8 << 20, chunk = 256 << 10, nch = n / chunk;
	uint8_t *src = malloc(n), *tgt = malloc(n);
	size_t *perm = malloc(nch * sizeof(*perm));
	size_t nwin = 0;
	char cmd[512];

	rng_seed(7);
	gen_random(src, n / 2);
	gen_text(src + n / 2, n / 2);
	for (size_t i = 0; i < nch; i++)
		perm[i] = i;
	for (size_t i = nch - 1; i > 0; i--) {
		size_t j = rng_below(i + 1), x = perm[i];
		perm[i] = perm[j];
		perm[j] = x;
	}
	for (size_t i = 0; i < nch; i++)
		memcpy(tgt + i * chunk, src + perm[i] * chunk, chunk);
	for (int k = 0; k < 2000; k++)
		tgt[rng_below(n)] = (uint8_t)rng();
	memset(tgt + 3 * chunk + 100, 0, 70000);

	check_pair("multiwindow", src, n, tgt, n, "-S none -W 16384");
	check_pair("multiwindow", src, n, tgt, n, "-W 16384");
	check_pair("multiwindow", src, n, tgt, n, "-S none -B 16777216");
	/* Timing of the op decode that a first mount does. */
	snprintf(cmd, sizeof(cmd), "xdelta3 -e -f -S none -W 16384 -s %s %s %s",
		 tpath("src"), tpath("tgt"), tpath("mw"));
	T_EQ(run(cmd), 0);
	verify_plain(tpath("mw"), src, n, tgt, n, &nwin);
	T_CHECK(nwin >= 500);
	{
		struct vcdiff_patch *p = NULL;
		struct vcdiff_dec *d = NULL;
		int fd = open(tpath("mw"), O_RDONLY);
		struct timespec t0, t1;
		size_t total_ops = 0;

		T_EQ(t_patch_open(&p, fd, NULL), 0);
		vcdiff_dec_new(&d);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (size_t i = 0; p && i < vcdiff_patch_nwin(p); i++) {
			const struct vcdiff_op *ops;
			size_t nops;
			T_EQ(vcdiff_dec_ops(d, p, i, &ops, &nops), 0);
			total_ops += nops;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		fprintf(stderr, "  ops of %zu windows (%zu ops) in %.1f ms\n",
			nwin, total_ops,
			(t1.tv_sec - t0.tv_sec) * 1e3 +
			(t1.tv_nsec - t0.tv_nsec) / 1e6);
		vcdiff_dec_free(d);
		vcdiff_patch_free(p);
		close(fd);
	}
	free(src);
	free(tgt);
	free(perm);
}

/* Single-window stock lzma patches must have been seen as windowed. */
static void test_stock_windowed_seen(void)
{
	if (system("xdelta3 -V >/dev/null 2>&1") != 0)
		return;
	T_CHECK(n_windowed > 0);
}

int main(void)
{
	if (tmpdir_make("test_vcdiff_dec_xd3") != 0)
		return 1;
	T_RUN(test_xdelta3_random_edits);
	T_RUN(test_xdelta3_shifted);
	T_RUN(test_xdelta3_text);
	T_RUN(test_xdelta3_repeats);
	T_RUN(test_xdelta3_runs);
	T_RUN(test_xdelta3_empty);
	T_RUN(test_xdelta3_multiwindow);
	cleanup_tmpdir();
	T_RUN(test_stock_windowed_seen);
	return t_done();
}
