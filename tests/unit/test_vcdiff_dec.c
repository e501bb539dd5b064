/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_dec: the VCDIFF decoder against stock xdelta3 3.0.11.
 *
 * Source/target pairs are generated from fixed seeds, encoded with the
 * real `xdelta3 -e` in several modes (lzma default, -S none, djw, -9, -B,
 * -n, small -W), and every window is decoded op-wise and byte-wise and
 * compared with the real target. Hand-made patches cover what xdelta3
 * never writes (VCD_TARGET, offsets above 4 GiB, each malformed header and
 * instruction check). Truncations and bit flips must give an error or the
 * right bytes, never a crash. Temporary files live in one mkdtemp dir that
 * is removed at the end.
 */
#include "codec/vcdiff_dec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char tmpdir[64];
/* stock lzma patches that decoded window by window as they are */
static int n_windowed;

/* --- helpers --- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static uint64_t rng(void)
{
	return t_rng(&rng_state);
}

static size_t rng_below(size_t n)
{
	return n ? (size_t)(rng() % n) : 0;
}

static char *tpath(const char *name)
{
	static char buf[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static uint8_t *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;

	*len = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf && pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	if (buf)
		*len = (size_t)st.st_size;
	return buf;
}

static int run(const char *cmd)
{
	int st = system(cmd);

	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

struct mem {
	const uint8_t *p;
	size_t n;
};

static ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct mem *m = ctx;

	if (off >= m->n)
		return 0;
	if (len > m->n - off)
		len = m->n - (size_t)off;
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

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

/* --- data generators (fixed seeds) --- */

static void gen_random(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rng();
}

static void gen_text(uint8_t *b, size_t n)
{
	static const char *words[] = {
		"the", "snapshot", "of", "a", "virtual", "machine", "page",
		"zero", "memory", "kernel", "delta", "window", "copy", "add",
		"run", "source", "target", "qemu", "migrate", "state", "and",
		"is", "in", "for", "with", "0x7fff", "struct", "return",
	};
	size_t i = 0;

	while (i < n) {
		size_t nw = sizeof(words) / sizeof(*words);
		const char *w = words[rng_below(nw)];
		for (; *w && i < n; w++)
			b[i++] = (uint8_t)*w;
		if (i < n)
			b[i++] = rng_below(12) ? ' ' : '\n';
	}
}

/* Target = source with inserts, deletes, moved blocks, point edits. */
static size_t mutate(const uint8_t *src, size_t n, uint8_t *tgt, size_t cap)
{
	size_t s = 0, t = 0;

	while (t < cap && n > 0) {
		size_t what = rng_below(10), len;
		if (what < 5) {	/* copy on */
			len = 1 + rng_below(8192);
			if (s + len > n)
				len = n - s;
			if (len > cap - t)
				len = cap - t;
			memcpy(tgt + t, src + s, len);
			t += len;
			s += len;
		} else if (what < 7) {	/* insert */
			len = 1 + rng_below(300);
			if (len > cap - t)
				len = cap - t;
			gen_random(tgt + t, len);
			t += len;
		} else if (what < 8) {	/* delete */
			s += rng_below(2000);
		} else if (what < 9) {	/* jump: moved block */
			s = rng_below(n);
		} else if (t < cap) {	/* point edit */
			tgt[t++] = (uint8_t)rng();
			s++;
		}
		if (s >= n) {
			if (t > cap / 2)
				break;
			s = rng_below(n);
		}
	}
	return t;
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

/* --- hand-made patches --- */

struct vb {
	uint8_t b[65536];
	size_t n;
};

static void vb_put(struct vb *v, const void *p, size_t n)
{
	if (n == 0)
		return;
	memcpy(v->b + v->n, p, n);
	v->n += n;
}

static void vb_byte(struct vb *v, uint8_t c)
{
	v->b[v->n++] = c;
}

static void vb_varint(struct vb *v, uint64_t x)
{
	uint8_t tmp[10];
	int n = 0;

	do {
		tmp[n++] = x & 0x7f;
		x >>= 7;
	} while (x);
	while (n-- > 0)
		vb_byte(v, (uint8_t)(tmp[n] | (n ? 0x80 : 0)));
}

static size_t put_varint(uint64_t x, uint8_t *p)
{
	uint8_t tmp[10];
	size_t n = 0, k = 0;

	do {
		tmp[n++] = x & 0x7f;
		x >>= 7;
	} while (x);
	while (n-- > 0)
		p[k++] = (uint8_t)(tmp[n] | (n ? 0x80 : 0));
	return k;
}

static size_t varint_len(uint64_t x)
{
	size_t n = 1;
	while (x >= 0x80) {
		x >>= 7;
		n++;
	}
	return n;
}

static void vb_header(struct vb *v)
{
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x00", 5);
}

struct hw {			/* a hand-made window */
	uint8_t win_ind;
	uint32_t cpy_len;
	uint64_t cpy_off;
	uint32_t tgt_len;
	const void *data, *inst, *addr;
	uint32_t data_len, inst_len, addr_len;
	uint32_t adler;
	int enclen_delta;	/* to corrupt enclen */
};

static void vb_window(struct vb *v, const struct hw *w)
{
	uint64_t enclen = 1 + varint_len(w->tgt_len) +
		varint_len(w->data_len) + varint_len(w->inst_len) +
		varint_len(w->addr_len) + w->data_len + w->inst_len +
		w->addr_len + ((w->win_ind & VCDIFF_WIN_ADLER32) ? 4 : 0);

	vb_byte(v, w->win_ind);
	if (w->win_ind & 3) {
		vb_varint(v, w->cpy_len);
		vb_varint(v, w->cpy_off);
	}
	vb_varint(v, enclen + w->enclen_delta);
	vb_varint(v, w->tgt_len);
	vb_byte(v, 0);
	vb_varint(v, w->data_len);
	vb_varint(v, w->inst_len);
	vb_varint(v, w->addr_len);
	if (w->win_ind & VCDIFF_WIN_ADLER32) {
		uint8_t a[4] = { (uint8_t)(w->adler >> 24),
				 (uint8_t)(w->adler >> 16),
				 (uint8_t)(w->adler >> 8), (uint8_t)w->adler };
		vb_put(v, a, 4);
	}
	vb_put(v, w->data, w->data_len);
	vb_put(v, w->inst, w->inst_len);
	vb_put(v, w->addr, w->addr_len);
}

/* Opcodes of the default table. */
#define OP_RUN 0
#define OP_ADD 1		/* explicit size */
#define OP_COPY(m) (19 + 16 * (m))	/* explicit size */

/* A synthetic source of any size: byte f(off). */
static uint8_t synth(uint64_t off)
{
	uint64_t x = off * 0x9E3779B97F4A7C15ull;
	return (uint8_t)(x >> 56);
}

static ssize_t synth_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	uint64_t size = *(const uint64_t *)ctx;
	uint8_t *b = buf;

	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	for (size_t i = 0; i < len; i++)
		b[i] = synth(off + i);
	return (ssize_t)len;
}

/* Opens a hand-made patch from memory. */
static int open_vb(const struct vb *v, struct vcdiff_patch **p, int *fd,
		   const char **why)
{
	*fd = t_mem_fd(v->b, v->n);
	return t_patch_open(p, *fd, why);
}

/* VCD_TARGET: window 1 copies window 0's output. */
static void test_vcd_target(void)
{
	static const uint8_t data0[] = "hello world!";	/* 12 bytes */
	uint8_t inst0[] = { OP_ADD, 12 };
	/* Window 1: segment = target [0,12); COPY 12 @0 (SELF), then COPY
	 * 12 from its own first bytes (HERE, addr 12 = here 24 - 12). */
	uint8_t inst1[] = { OP_COPY(0), 12, OP_COPY(1), 12 };
	uint8_t addr1[] = { 0, 12 };
	uint8_t full[36];
	struct vb v;
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	struct mem tm = { full, sizeof(full) };
	uint8_t out[64];
	const struct vcdiff_op *ops;
	size_t nops;
	int fd;

	memcpy(full, data0, 12);
	memcpy(full + 12, data0, 12);
	memcpy(full + 24, data0, 12);
	vb_header(&v);
	vb_window(&v, &(struct hw){ .win_ind = VCDIFF_WIN_ADLER32,
		.tgt_len = 12, .data = data0, .data_len = 12, .inst = inst0,
		.inst_len = 2, .adler = vcdiff_adler32(1, full, 12) });
	vb_window(&v, &(struct hw){
		.win_ind = VCDIFF_WIN_TARGET | VCDIFF_WIN_ADLER32,
		.cpy_len = 12, .cpy_off = 0, .tgt_len = 24, .inst = inst1,
		.inst_len = 4, .addr = addr1, .addr_len = 2,
		.adler = vcdiff_adler32(1, full + 12, 24) });
	T_EQ(open_vb(&v, &p, &fd, NULL), 0);
	vcdiff_dec_new(&d);
	T_EQ(vcdiff_patch_target_size(p), 36);
	T_EQ(vcdiff_patch_source_span(p), 0);
	T_EQ(vcdiff_dec_ops(d, p, 1, &ops, &nops), 0);
	T_EQ(nops, 2);
	T_EQ(ops[0].kind, VCDIFF_OP_COPY_TGT);
	T_EQ(ops[0].addr, 0);
	T_EQ(ops[0].tgt_off, 12);
	T_EQ(ops[1].kind, VCDIFF_OP_COPY_TGT);
	T_EQ(ops[1].addr, 12);
	T_EQ(ops[1].tgt_off, 24);
	T_EQ(vcdiff_dec_window(d, p, 0, NULL, NULL, NULL, NULL, out, 64), 12);
	T_EQ(vcdiff_dec_window(d, p, 1, NULL, NULL, mem_read, &tm, out, 64),
	     24);
	T_CHECK(memcmp(out, full + 12, 24) == 0);
	/* Without a target reader it cannot work. */
	T_EQ(vcdiff_dec_window(d, p, 1, NULL, NULL, NULL, NULL, out, 64),
	     -EINVAL);
	/* A short target file: "target file too short". */
	tm.n = 5;
	T_EQ(vcdiff_dec_window(d, p, 1, NULL, NULL, mem_read, &tm, out, 64),
	     -EBADMSG);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);

	/* A VCD_TARGET segment reaching into its own window is refused. */
	vb_header(&v);
	vb_window(&v, &(struct hw){ .tgt_len = 12, .data = data0,
		.data_len = 12, .inst = inst0, .inst_len = 2 });
	vb_window(&v, &(struct hw){ .win_ind = VCDIFF_WIN_TARGET,
		.cpy_len = 13, .cpy_off = 0, .tgt_len = 24, .inst = inst1,
		.inst_len = 4, .addr = addr1, .addr_len = 2 });
	const char *why = NULL;
	T_EQ(open_vb(&v, &p, &fd, &why), -EBADMSG);
	T_CHECK(why && strstr(why, "VCD_TARGET"));
	close(fd);
}

/* Overlapping target copies with small and large periods. */
static void test_overlap(void)
{
	static const uint32_t periods[] = { 1, 2, 3, 7, 1000, 65536 };
	uint8_t *want = malloc(VCDIFF_WIN_MAX), *out = malloc(VCDIFF_WIN_MAX);
	struct vcdiff_dec *d = NULL;

	vcdiff_dec_new(&d);
	rng_seed(8);
	for (size_t k = 0; k < sizeof(periods) / sizeof(*periods); k++) {
		uint32_t per = periods[k], len = (3u << 20) + 5;
		uint8_t *data = malloc(per);
		uint8_t inst[16], addr[8];
		size_t ni = 0, na = 0;
		struct vcdiff_patch *p = NULL;
		int fd;

		gen_random(data, per);
		for (uint32_t j = 0; j < per + len; j++)
			want[j] = data[j % per];
		/* ADD per, then COPY len from target 0 (HERE mode). */
		inst[ni++] = OP_ADD;
		ni += (size_t)put_varint(per, inst + ni);
		inst[ni++] = OP_COPY(1);
		ni += (size_t)put_varint(len, inst + ni);
		na += (size_t)put_varint(per, addr + na);
		/* The data does not fit struct vb for big periods: build
		 * the file by hand in a heap buffer. */
		size_t cap = 64 + per + ni + na;
		uint8_t *f = malloc(cap);
		size_t n = 0;
		uint32_t tl = per + len;
		uint64_t enclen = 1 + varint_len(tl) + varint_len(per) +
				  varint_len(ni) + varint_len(na) + per + ni +
				  na + 4;
		uint32_t a = vcdiff_adler32(1, want, tl);
		memcpy(f, "\xd6\xc3\xc4\x00\x00\x04", 6);
		n = 6;
		n += (size_t)put_varint(enclen, f + n);
		n += (size_t)put_varint(tl, f + n);
		f[n++] = 0;
		n += (size_t)put_varint(per, f + n);
		n += (size_t)put_varint(ni, f + n);
		n += (size_t)put_varint(na, f + n);
		f[n++] = (uint8_t)(a >> 24);
		f[n++] = (uint8_t)(a >> 16);
		f[n++] = (uint8_t)(a >> 8);
		f[n++] = (uint8_t)a;
		memcpy(f + n, data, per);
		n += per;
		memcpy(f + n, inst, ni);
		n += ni;
		memcpy(f + n, addr, na);
		n += na;
		fd = t_mem_fd(f, n);
		const char *why = "";
		T_EQ(t_patch_open(&p, fd, &why), 0);
		if (p) {
			const struct vcdiff_op *ops;
			size_t nops;
			T_EQ(vcdiff_dec_ops(d, p, 0, &ops, &nops), 0);
			T_EQ(nops, 2);
			T_EQ(ops[1].kind, VCDIFF_OP_COPY_TGT);
			T_EQ(ops[1].addr, 0);
			T_EQ(ops[1].tgt_off, per);
			memset(out, 0xAA, tl);
			T_EQ(vcdiff_dec_window(d, p, 0, NULL, NULL, NULL, NULL,
					       out, VCDIFF_WIN_MAX), tl);
			T_CHECK(memcmp(out, want, tl) == 0);
			/* dst too small */
			T_EQ(vcdiff_dec_window(d, p, 0, NULL, NULL, NULL, NULL,
					       out, tl - 1), -ERANGE);
		}
		vcdiff_patch_free(p);
		close(fd);
		free(f);
		free(data);
	}
	vcdiff_dec_free(d);
	free(want);
	free(out);
}

/* Segments and targets above 4 GiB. */
static void test_above_4g(void)
{
	static const uint8_t data[10] = "0123456789";
	uint8_t inst[] = { OP_COPY(0), 50, OP_ADD, 10 };
	uint8_t addr[] = { 10 };
	uint64_t cpy_off = (5ull << 30) + 7, src_size = cpy_off + 200;
	uint8_t want[60], out[64];
	struct vb *v = malloc(sizeof(*v));
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	const struct vcdiff_op *ops;
	size_t nops;
	int fd;

	vcdiff_dec_new(&d);
	for (int j = 0; j < 50; j++)
		want[j] = synth(cpy_off + 10 + j);
	memcpy(want + 50, data, 10);
	vb_header(v);
	vb_window(v, &(struct hw){
		.win_ind = VCDIFF_WIN_SOURCE | VCDIFF_WIN_ADLER32,
		.cpy_len = 100, .cpy_off = cpy_off, .tgt_len = 60,
		.data = data, .data_len = 10, .inst = inst, .inst_len = 4,
		.addr = addr, .addr_len = 1,
		.adler = vcdiff_adler32(1, want, 60) });
	T_EQ(open_vb(v, &p, &fd, NULL), 0);
	T_EQ(vcdiff_patch_source_span(p), cpy_off + 100);
	T_EQ(vcdiff_dec_ops(d, p, 0, &ops, &nops), 0);
	T_EQ(nops, 2);
	T_EQ(ops[0].kind, VCDIFF_OP_COPY_SRC);
	T_EQ(ops[0].addr, cpy_off + 10);
	T_EQ(ops[1].kind, VCDIFF_OP_ADD);
	T_EQ(vcdiff_dec_window(d, p, 0, synth_read, &src_size, NULL, NULL,
			       out, sizeof(out)), 60);
	T_CHECK(memcmp(out, want, 60) == 0);
	/* The segment may pass EOF; only bytes actually copied count. */
	src_size = cpy_off + 60;
	T_EQ(vcdiff_dec_window(d, p, 0, synth_read, &src_size, NULL, NULL,
			       out, sizeof(out)), 60);
	src_size = cpy_off + 30;
	T_EQ(vcdiff_dec_window(d, p, 0, synth_read, &src_size, NULL, NULL,
			       out, sizeof(out)), -EBADMSG);
	T_CHECK(strstr(vcdiff_dec_reason(d), "source file too short"));
	T_EQ(vcdiff_dec_window(d, p, 0, NULL, NULL, NULL, NULL, out,
			       sizeof(out)), -EINVAL);
	vcdiff_patch_free(p);
	close(fd);

	/* 300 windows of 16 MiB: a 4.7 GiB target; the last window copies
	 * from itself at an absolute offset above 4 GiB. */
	/* RUN of 16 MiB */
	uint8_t run_inst[] = { OP_RUN, 0x88, 0x80, 0x80, 0x00 };
	uint8_t last_inst[] = { OP_ADD, 1, OP_COPY(1), 0x87, 0xff, 0xff, 0x7f };
	uint8_t last_addr[] = { 1 };
	uint8_t *big = malloc(VCDIFF_WIN_MAX);
	vb_header(v);
	for (int k = 0; k < 299; k++) {
		uint8_t b = (uint8_t)k;
		vb_window(v, &(struct hw){ .tgt_len = VCDIFF_WIN_MAX,
			.data = &b, .data_len = 1, .inst = run_inst,
			.inst_len = 5 });
	}
	vb_window(v, &(struct hw){ .tgt_len = VCDIFF_WIN_MAX, .data = "x",
		.data_len = 1, .inst = last_inst, .inst_len = 7,
		.addr = last_addr, .addr_len = 1 });
	const char *why = "";
	T_EQ(open_vb(v, &p, &fd, &why), 0);
	if (p) {
		uint64_t last_off = 299ull * VCDIFF_WIN_MAX;
		T_EQ(vcdiff_patch_nwin(p), 300);
		T_EQ(vcdiff_patch_target_size(p), 300ull * VCDIFF_WIN_MAX);
		T_EQ(vcdiff_patch_find(p, last_off + 5), 299);
		T_EQ(vcdiff_patch_find(p, (4ull << 30) + 1), 256);
		T_EQ(vcdiff_dec_ops(d, p, 299, &ops, &nops), 0);
		T_EQ(nops, 2);
		T_EQ(ops[1].kind, VCDIFF_OP_COPY_TGT);
		T_EQ(ops[1].addr, last_off);
		T_EQ(ops[1].tgt_off, last_off + 1);
		T_EQ(ops[1].len, VCDIFF_WIN_MAX - 1);
		T_EQ(vcdiff_dec_window(d, p, 299, NULL, NULL, NULL, NULL, big,
				       VCDIFF_WIN_MAX), VCDIFF_WIN_MAX);
		T_CHECK(big[0] == 'x' && big[VCDIFF_WIN_MAX - 1] == 'x' &&
			memcmp(big, big + 1, VCDIFF_WIN_MAX - 1) == 0);
		T_EQ(vcdiff_dec_window(d, p, 7, NULL, NULL, NULL, NULL, big,
				       VCDIFF_WIN_MAX), VCDIFF_WIN_MAX);
		T_CHECK(big[0] == 7 && big[VCDIFF_WIN_MAX - 1] == 7);
	}
	vcdiff_patch_free(p);
	close(fd);
	free(big);
	free(v);
	vcdiff_dec_free(d);
}

/* Every address mode, the caches and both kinds of paired opcode. */
static void test_modes_and_pairs(void)
{
	uint64_t src_size = 1000;
	/* Source segment [100, 200) of the synthetic source. */
	uint8_t inst[] = {
		OP_COPY(0), 4,		/* SELF 10 -> near[0]=10 */
		OP_COPY(2) + 1,		/* NEAR0 + 20 = 30 (size 4) */
		OP_COPY(6), 5,		/* SAME byte 10 -> 10 */
		OP_ADD, 0,		/* zero-size ADD: no op */
		163 + 12 * 1 + 3 * 1 + 2,	/* ADD 2 + COPY 6 HERE */
		247 + 4,		/* COPY 4 NEAR2 + ADD 1 */
		OP_RUN, 3,
		OP_COPY(7), 4,		/* SAME mode 7: same[256 + b] */
	};
	/* Addresses: SELF 10; NEAR0 +20; SAME b=10; HERE: here - 7;
	 * NEAR2 (slot 2 holds 10) + 50 = 60; SAME7 b: addr 291 % 768 =
	 * 291 = 256 + 35, written by no COPY yet... use the HERE copy. */
	uint8_t addr[8];
	size_t na = 0;
	addr[na++] = 10;
	addr[na++] = 20;
	addr[na++] = 10;
	addr[na++] = 7;
	addr[na++] = 50;
	uint8_t data[] = { 'a', 'b', 'c', 'r' };
	struct vb *v = malloc(sizeof(*v));
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	const struct vcdiff_op *ops;
	size_t nops;
	int fd;

	/* Work out the target by hand. here starts at cpy_len = 100. */
	uint8_t t[64];
	size_t n = 0;
	for (int j = 0; j < 4; j++)	/* SELF 10 */
		t[n++] = synth(100 + 10 + j);
	for (int j = 0; j < 4; j++)	/* NEAR 30 */
		t[n++] = synth(100 + 30 + j);
	for (int j = 0; j < 5; j++)	/* SAME 10 */
		t[n++] = synth(100 + 10 + j);
	t[n++] = 'a';			/* ADD 2 */
	t[n++] = 'b';
	/* HERE: here = 100 + 15 = 115, addr = 108 -> target byte 8,
	 * 6 bytes, no overlap (ends at 14 < 15). */
	for (int j = 0; j < 6; j++, n++)
		t[n] = t[8 + j];
	/* NEAR2 holds the 3rd copy address (10) -> 60, source. */
	for (int j = 0; j < 4; j++)
		t[n++] = synth(100 + 60 + j);
	t[n++] = 'c';			/* ADD 1 of the pair */
	for (int j = 0; j < 3; j++)
		t[n++] = 'r';
	/* SAME mode 7 (block 1): addr 291 = 115 + 176? We need a cached
	 * address in same[256..511]: the HERE copy stored 108 (block 0),
	 * none in block 1, so same[256 + b] is 0 for any b: addr 0. */
	for (int j = 0; j < 4; j++)
		t[n++] = synth(100 + j);
	addr[na++] = 35;

	vb_header(v);
	vb_window(v, &(struct hw){
		.win_ind = VCDIFF_WIN_SOURCE | VCDIFF_WIN_ADLER32,
		.cpy_len = 100, .cpy_off = 100, .tgt_len = (uint32_t)n,
		.data = data, .data_len = 4, .inst = inst,
		.inst_len = sizeof(inst), .addr = addr,
		.addr_len = (uint32_t)na, .adler = vcdiff_adler32(1, t, n) });
	T_EQ(open_vb(v, &p, &fd, NULL), 0);
	vcdiff_dec_new(&d);
	T_EQ(vcdiff_dec_ops(d, p, 0, &ops, &nops), 0);
	T_EQ(nops, 9);
	if (nops == 9) {
		T_EQ(ops[0].addr, 110);
		T_EQ(ops[1].addr, 130);
		T_EQ(ops[2].addr, 110);
		T_EQ(ops[3].kind, VCDIFF_OP_ADD);
		T_EQ(ops[3].len, 2);
		T_EQ(ops[4].kind, VCDIFF_OP_COPY_TGT);
		T_EQ(ops[4].addr, 8);
		T_EQ(ops[5].addr, 160);
		T_EQ(ops[6].kind, VCDIFF_OP_ADD);
		T_EQ(ops[7].kind, VCDIFF_OP_RUN);
		T_EQ(ops[7].byte, 'r');
		T_EQ(ops[8].kind, VCDIFF_OP_COPY_SRC);
		T_EQ(ops[8].addr, 100);
	} else {
		fprintf(stderr, "  reason: %s\n", vcdiff_dec_reason(d));
	}
	uint8_t out[64];
	T_EQ(vcdiff_dec_window(d, p, 0, synth_read, &src_size, NULL, NULL, out,
			       sizeof(out)), n);
	T_CHECK(memcmp(out, t, n) == 0);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
	free(v);
}

struct bad_case {
	const char *name;
	int open_rc;		/* expected from open */
	int ops_rc;		/* expected from dec_ops if open is 0 */
	const char *why;	/* substring of the reason */
};

/* Opens v and checks the expected failure. */
static void expect_bad(const struct vb *v, const struct bad_case *c)
{
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	const char *why = NULL;
	int fd, rc, ok = 1;

	rc = open_vb(v, &p, &fd, &why);
	if (rc != c->open_rc)
		ok = 0;
	if (rc == 0 && c->open_rc == 0) {
		const struct vcdiff_op *ops;
		size_t nops;
		vcdiff_dec_new(&d);
		rc = vcdiff_dec_ops(d, p, 0, &ops, &nops);
		why = vcdiff_dec_reason(d);
		if (rc != c->ops_rc)
			ok = 0;
	}
	if (c->why && (!why || !strstr(why, c->why)))
		ok = 0;
	if (!ok)
		fprintf(stderr, "  case %s: rc %d, why \"%s\"\n", c->name, rc,
			why ? why : "(null)");
	T_CHECK(ok);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
}

static void test_bad_headers(void)
{
	struct vb *v = malloc(sizeof(*v));
	uint8_t inst_add1[] = { OP_ADD, 1 };
	struct vcdiff_patch *p = NULL;
	size_t len;
	int fd;

#define BAD(name, orc, wsub) \
	expect_bad(v, &(struct bad_case){ name, orc, 0, wsub })
	v->n = 0;
	vb_put(v, "XYZ\x00\x00", 5);
	BAD("bad magic", -EMEDIUMTYPE, "not a VCDIFF");
	v->n = 0;
	BAD("empty file", -EMEDIUMTYPE, NULL);
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x01\x00", 5);
	BAD("version 1", -EMEDIUMTYPE, "version");
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00", 4);
	BAD("no indicator", -EBADMSG, "truncated");
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x08", 5);
	BAD("header bits", -EBADMSG, "unrecognized header");
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x02\x05", 6);
	BAD("code table", -EBADMSG, "code table");
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x01\x07", 6);
	BAD("secondary id", -EBADMSG, "secondary compressor ID");
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x04\x05" "a/b/", 10);
	BAD("short app header", -EBADMSG, "truncated");

	/* Zero windows, with an application header: a valid empty target. */
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x04\x04" "a/b/", 10);
	T_EQ(open_vb(v, &p, &fd, NULL), 0);
	if (p) {
		T_EQ(vcdiff_patch_nwin(p), 0);
		T_EQ(vcdiff_patch_target_size(p), 0);
		T_EQ(vcdiff_patch_find(p, 0), 0);
		T_CHECK(memcmp(vcdiff_patch_appheader(p, &len), "a/b/", 4) ==
			0);
		T_EQ(len, 4);
	}
	vcdiff_patch_free(p);
	p = NULL;
	close(fd);

	vb_header(v);
	vb_window(v, &(struct hw){ .tgt_len = VCDIFF_WIN_MAX + 1,
		.data = "a", .data_len = 1, .inst = inst_add1, .inst_len = 2 });
	BAD("hard window size", -EBADMSG, "hard window size");

	vb_header(v);
	vb_window(v, &(struct hw){ .win_ind = 3, .cpy_len = 1,
		.tgt_len = 1, .data = "a", .data_len = 1, .inst = inst_add1,
		.inst_len = 2 });
	BAD("source and target", -EBADMSG, "VCD_SOURCE and VCD_TARGET");

	vb_header(v);
	vb_window(v, &(struct hw){ .win_ind = 8, .tgt_len = 1, .data = "a",
		.data_len = 1, .inst = inst_add1, .inst_len = 2 });
	BAD("window bits", -EBADMSG, "unrecognized window");

	vb_header(v);
	vb_window(v, &(struct hw){ .win_ind = 1, .cpy_len = 0xffffffffu,
		.tgt_len = 1, .data = "a", .data_len = 1, .inst = inst_add1,
		.inst_len = 2 });
	BAD("cpylen+tgtlen", -EBADMSG, "usize_t");

	vb_header(v);
	vb_window(v, &(struct hw){ .win_ind = 1, .cpy_len = 10,
		.cpy_off = UINT64_MAX - 5, .tgt_len = 1, .data = "a",
		.data_len = 1, .inst = inst_add1, .inst_len = 2 });
	BAD("cpyoff+cpylen", -EBADMSG, "overflows a file offset");

	vb_header(v);
	vb_window(v, &(struct hw){ .tgt_len = 1, .data = "a", .data_len = 1,
		.inst = inst_add1, .inst_len = 2, .enclen_delta = 1 });
	BAD("enclen+1", -EBADMSG, "incorrect encoding length");

	/* Padded tgtlen: enclen counts the padding, still refused. */
	vb_header(v);
	vb_put(v, "\x00\x09\x80\x01\x00\x01\x02\x00" "a" "\x01\x01", 11);
	BAD("padded tgtlen", -EBADMSG, "incorrect encoding length");
	/* Same window, minimal: accepted. */
	vb_header(v);
	vb_put(v, "\x00\x08\x01\x00\x01\x02\x00" "a" "\x01\x01", 10);
	BAD("minimal window", 0, NULL);
	/* Trailing byte after it. */
	vb_byte(v, 0);
	BAD("trailing byte", -EBADMSG, "truncated");
	/* Sections cut short. */
	vb_header(v);
	vb_put(v, "\x00\x08\x01\x00\x01\x02\x00" "a" "\x01", 9);
	BAD("short sections", -EBADMSG, "truncated");
	/* cpylen needing 33 bits. */
	vb_header(v);
	vb_put(v, "\x01\x90\x80\x80\x80\x00\x00", 7);
	BAD("cpylen 2^32", -EBADMSG, "overflow");
	/* Delta indicator without secondary, and unknown bits. */
	vb_header(v);
	vb_put(v, "\x00\x08\x01\x01\x01\x02\x00" "a" "\x01\x01", 10);
	BAD("delind w/o secondary", -EBADMSG, "invalid delta indicator");
	vb_header(v);
	vb_put(v, "\x00\x08\x01\x08\x01\x02\x00" "a" "\x01\x01", 10);
	BAD("delind bits", -EBADMSG, "unrecognized delta");
	/* With a secondary id, a compressed window opens but cannot be
	 * decoded directly. */
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x01\x02", 6);
	vb_put(v, "\x00\x08\x01\x01\x01\x02\x00" "a" "\x01\x01", 10);
	expect_bad(v, &(struct bad_case){ "compressed window", 0, -ENOTSUP,
					  "secondary" });
#undef BAD
	free(v);
}

/* One window without source (or with a 10-byte source segment). */
static void bad_window(const char *name, uint8_t win_ind, uint32_t tgt_len,
		       const void *data, uint32_t data_len, const void *inst,
		       uint32_t inst_len, const void *addr, uint32_t addr_len,
		       const char *why)
{
	struct vb *v = malloc(sizeof(*v));

	vb_header(v);
	vb_window(v, &(struct hw){ .win_ind = win_ind,
		.cpy_len = (win_ind & 1) ? 10 : 0, .cpy_off = 0,
		.tgt_len = tgt_len, .data = data, .data_len = data_len,
		.inst = inst, .inst_len = inst_len, .addr = addr,
		.addr_len = addr_len });
	expect_bad(v, &(struct bad_case){ name, 0, -EBADMSG, why });
	free(v);
}

static void test_bad_instructions(void)
{
	bad_window("address too large", 0, 5, "a", 1,
		   (uint8_t[]){ OP_ADD, 1, OP_COPY(0), 4 }, 4,
		   (uint8_t[]){ 1 }, 1, "address too large");
	bad_window("HERE underflow", 0, 5, "a", 1,
		   (uint8_t[]){ OP_ADD, 1, OP_COPY(1), 4 }, 4,
		   (uint8_t[]){ 2 }, 1, "address too large");
	bad_window("S copy crossing", 1, 8, NULL, 0,
		   (uint8_t[]){ OP_COPY(0), 8 }, 2, (uint8_t[]){ 5 }, 1,
		   "size too large");
	bad_window("output overflow", 0, 5, "abcdef", 6,
		   (uint8_t[]){ OP_ADD, 6 }, 2, NULL, 0, "size too large");
	bad_window("data underflow", 0, 5, "abc", 3,
		   (uint8_t[]){ OP_ADD, 5 }, 2, NULL, 0, "data underflow");
	bad_window("run underflow", 0, 5, NULL, 0,
		   (uint8_t[]){ OP_RUN, 5 }, 2, NULL, 0, "data underflow");
	bad_window("extra data", 0, 2, "abc", 3, (uint8_t[]){ OP_ADD, 2 }, 2,
		   NULL, 0, "extra data section");
	bad_window("extra addr", 0, 2, "ab", 2, (uint8_t[]){ OP_ADD, 2 }, 2,
		   (uint8_t[]){ 0 }, 1, "extra address section");
	bad_window("wrong length", 0, 5, "abc", 3, (uint8_t[]){ OP_ADD, 3 },
		   2, NULL, 0, "wrong window length");
	bad_window("same underflow", 1, 4, NULL, 0,
		   (uint8_t[]){ OP_COPY(6), 4 }, 2, NULL, 0,
		   "address underflow");
	bad_window("inst varint cut", 0, 5, "a", 1,
		   (uint8_t[]){ OP_ADD, 0x81 }, 2, NULL, 0, "end-of-input");
	bad_window("addr varint cut", 1, 4, NULL, 0,
		   (uint8_t[]){ OP_COPY(0), 4 }, 2, (uint8_t[]){ 0x81 }, 1,
		   "end-of-input");
	bad_window("size overflow", 0, 5, "a", 1,
		   (uint8_t[]){ OP_ADD, 0x90, 0x80, 0x80, 0x80, 0x00 }, 6,
		   NULL, 0, "overflow");

	/* A bad adler32 is caught by dec_window, not dec_ops. */
	struct vb *v = malloc(sizeof(*v));
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	uint8_t out[8];
	int fd;

	vb_header(v);
	vb_window(v, &(struct hw){ .win_ind = VCDIFF_WIN_ADLER32,
		.tgt_len = 3, .data = "abc", .data_len = 3,
		.inst = (uint8_t[]){ OP_ADD, 3 }, .inst_len = 2,
		.adler = vcdiff_adler32(1, "abd", 3) });
	T_EQ(open_vb(v, &p, &fd, NULL), 0);
	vcdiff_dec_new(&d);
	T_EQ(vcdiff_dec_window(d, p, 0, NULL, NULL, NULL, NULL, out, 8),
	     -EBADMSG);
	T_CHECK(strstr(vcdiff_dec_reason(d), "checksum mismatch"));
	T_EQ(vcdiff_dec_window(d, p, 1, NULL, NULL, NULL, NULL, out, 8),
	     -EINVAL);
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
	free(v);
}

/* The hand-written no-adler patch of vcdiff-notes.md 6. */
static void test_notes_example(void)
{
	static const char hex[] =
		"d6c3c4000001a00000268c2c00110b0468656c6c6f2c2076636469666621"
		"5a78790f1383740087682e032332648b6a02";
	uint8_t b[64];
	size_t n = 0;
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	const struct vcdiff_op *ops;
	size_t nops;
	int fd;

	for (const char *h = hex; h[0] && h[1]; h += 2) {
		unsigned x;
		sscanf(h, "%2x", &x);
		b[n++] = (uint8_t)x;
	}
	fd = t_mem_fd(b, n);
	T_EQ(t_patch_open(&p, fd, NULL), 0);
	vcdiff_dec_new(&d);
	if (p) {
		T_EQ(vcdiff_patch_nwin(p), 1);
		T_EQ(vcdiff_dec_ops(d, p, 0, &ops, &nops), 0);
		uint64_t sum = 0;
		int kinds = 0;
		for (size_t k = 0; k < nops; k++) {
			sum += ops[k].len;
			kinds |= 1 << ops[k].kind;
		}
		T_EQ(sum, vcdiff_patch_target_size(p));
		/* ADD, RUN, source COPY and target COPY all present. */
		T_EQ(kinds, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4));
	}
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
}

/*
 * Every truncation of a valid patch: open or decode fails, except at a
 * window boundary, where the shorter patch is valid and must decode to a
 * prefix of the target. Then a sample of bit flips: an error, or exactly
 * the right bytes (adler32 is present).
 */
static void test_truncations_and_flips(void)
{
	size_t n = 256 << 10;
	uint8_t *src = malloc(n), *tgt = malloc(n), *out = malloc(1 << 20);
	uint8_t *patch;
	size_t tn, plen, bad = 0, boundary_ok = 0;
	struct vcdiff_dec *d = NULL;
	struct mem sm;
	char cmd[512];

	rng_seed(9);
	gen_text(src, n);
	tn = mutate(src, n, tgt, n);
	sm = (struct mem){ src, n };
	T_EQ(t_write_file(tpath("tsrc"), src, n), 0);
	T_EQ(t_write_file(tpath("ttgt"), tgt, tn), 0);
	snprintf(cmd, sizeof(cmd), "xdelta3 -e -f -S none -W 16384 -s %s %s %s",
		 tpath("tsrc"), tpath("ttgt"), tpath("tpatch"));
	T_EQ(run(cmd), 0);
	patch = read_file(tpath("tpatch"), &plen);
	T_CHECK(patch != NULL);
	if (!patch)
		goto out;
	vcdiff_dec_new(&d);

	/* Window boundaries of the full patch. */
	struct vcdiff_patch *full = NULL;
	int ffd = t_mem_fd(patch, plen);
	T_EQ(t_patch_open(&full, ffd, NULL), 0);
	size_t nwin = full ? vcdiff_patch_nwin(full) : 0;
	T_CHECK(nwin > 3);

	int fd = t_mem_fd(patch, plen);
	for (size_t len = plen; len-- > 0;) {
		struct vcdiff_patch *p = NULL;
		int rc;

		if (ftruncate(fd, (off_t)len) < 0)
			break;
		rc = t_patch_open(&p, fd, NULL);
		if (rc) {
			if (rc != -EBADMSG && rc != -EMEDIUMTYPE)
				bad++;
			continue;
		}
		/* Valid only at a window boundary. */
		size_t k = vcdiff_patch_nwin(p);
		if (k >= nwin || vcdiff_patch_win(full, k)->hdr_off != len) {
			bad++;
		} else {
			for (size_t i = 0; i < k; i++) {
				const struct vcdiff_win *w =
					vcdiff_patch_win(p, i);
				ssize_t r = vcdiff_dec_window(d, p, i, mem_read,
					&sm, NULL, NULL, out, 1 << 20);
				if (r != w->tgt_len ||
				    memcmp(out, tgt + w->tgt_off, r))
					bad++;
			}
			boundary_ok++;
		}
		vcdiff_patch_free(p);
	}
	T_EQ(bad, 0);
	T_EQ(boundary_ok, nwin);	/* nwin-1 boundaries + header only */
	close(fd);

	/* Bit flips. */
	size_t caught = 0, clean = 0;
	for (int k = 0; k < 3000; k++) {
		size_t at = rng_below(plen);
		uint8_t bit = (uint8_t)(1u << rng_below(8));
		struct vcdiff_patch *p = NULL;

		patch[at] ^= bit;
		fd = t_mem_fd(patch, plen);
		if (t_patch_open(&p, fd, NULL) != 0) {
			caught++;
		} else {
			for (size_t i = 0; i < vcdiff_patch_nwin(p); i++) {
				ssize_t r = vcdiff_dec_window(d, p, i, mem_read,
					&sm, NULL, NULL, out, 1 << 20);
				if (r < 0) {
					caught++;
					continue;
				}
				/* A flipped tgtlen earlier moves this
				 * window's tgt_off, but the flipped window
				 * itself fails: compare with the original
				 * window of the same index. */
				const struct vcdiff_win *ow =
					vcdiff_patch_win(full, i);
				if (!ow || ow->tgt_len != (size_t)r ||
				    memcmp(out, tgt + ow->tgt_off, r) != 0) {
					bad++;
					fprintf(stderr, "  silent: flip %zu "
						"bit %u window %zu\n", at,
						bit, i);
				} else {
					clean++;
				}
			}
		}
		vcdiff_patch_free(p);
		close(fd);
		patch[at] ^= bit;
	}
	T_EQ(bad, 0);
	T_CHECK(caught > 1000);

	vcdiff_patch_free(full);
	close(ffd);
out:
	vcdiff_dec_free(d);
	free(patch);
	free(src);
	free(tgt);
	free(out);
}

/* Truncated lzma patches: recode fails cleanly, except at boundaries. */
static void test_recode_truncations(void)
{
	size_t n = 64 << 10, tn, plen;
	uint8_t *src = malloc(n), *tgt = malloc(n), *patch;
	char cmd[512];
	size_t fails = 0, oks = 0, weird = 0;

	rng_seed(10);
	gen_text(src, n);
	tn = mutate(src, n, tgt, n);
	T_EQ(t_write_file(tpath("rsrc"), src, n), 0);
	T_EQ(t_write_file(tpath("rtgt"), tgt, tn), 0);
	snprintf(cmd, sizeof(cmd), "xdelta3 -e -f -W 16384 -s %s %s %s",
		 tpath("rsrc"), tpath("rtgt"), tpath("rpatch"));
	T_EQ(run(cmd), 0);
	patch = read_file(tpath("rpatch"), &plen);
	T_CHECK(patch != NULL);
	int in = t_mem_fd(patch, plen);
	for (size_t len = plen; patch && len-- > 0;) {
		int out = memfd_create("recode-out", 0);
		const char *why = NULL;
		int rc;

		if (ftruncate(in, (off_t)len) < 0)
			break;
		rc = t_recode_plain(in, out, NULL, NULL, &why);
		if (rc == 0)
			oks++;
		else if (rc == -EBADMSG || rc == -EMEDIUMTYPE)
			fails++;
		else
			weird++;
		close(out);
	}
	close(in);
	T_EQ(weird, 0);
	T_CHECK(fails > 0 && oks < 16);
	/* Flipped bytes: any error or success, never a crash. */
	for (int k = 0; patch && k < 300; k++) {
		size_t at = rng_below(plen);
		uint8_t bit = (uint8_t)(1u << rng_below(8));
		patch[at] ^= bit;
		in = t_mem_fd(patch, plen);
		int out = memfd_create("recode-out", 0);
		int rc = t_recode_plain(in, out, NULL, NULL, NULL);
		T_CHECK(rc == 0 || rc == -EBADMSG || rc == -EMEDIUMTYPE ||
			rc == -ENOTSUP);
		close(out);
		close(in);
		patch[at] ^= bit;
	}
	free(patch);
	free(src);
	free(tgt);
}

/*
 * Open cost with 100k windows, and the buffered reader's two paths:
 * small windows read on from the buffer, large sections are jumped over.
 */
static void test_many_windows(void)
{
	size_t nw = 100000, cap = nw * 8 + (3u << 20), n = 0;
	uint8_t *f = malloc(cap), *out = malloc(1 << 20);
	struct vcdiff_patch *p = NULL;
	struct vcdiff_dec *d = NULL;
	struct timespec t0, t1;
	const char *why = "";
	int fd;

	memcpy(f, "\xd6\xc3\xc4\x00\x00", 5);
	n = 5;
	/* Window k: RUN of 100 bytes of value k & 0xff. enclen 8. */
	for (size_t k = 0; k < nw; k++) {
		static const uint8_t w[] = { 0x00, 0x08, 100, 0x00, 1, 2, 0 };
		memcpy(f + n, w, sizeof(w));
		n += sizeof(w);
		f[n++] = (uint8_t)k;
		f[n++] = OP_RUN;
		f[n++] = 100;
	}
	/* Three windows with 700 KB ADDs each (tgt 700000 = 0xAAE60). */
	rng_seed(11);
	for (int k = 0; k < 3; k++) {
		uint32_t len = 700000;
		n += put_varint(0, f + n);
		/* enclen = 1 + 3 (tgtlen) + 3 + 1 + 1 + len + 4 (inst) */
		n += put_varint(1 + 3 + 3 + 1 + 1 + len + 4, f + n);
		n += put_varint(len, f + n);
		f[n++] = 0;
		n += put_varint(len, f + n);
		n += put_varint(4, f + n);
		n += put_varint(0, f + n);
		gen_random(f + n, len);
		n += len;
		f[n++] = OP_ADD;
		n += put_varint(len, f + n);
	}
	fd = t_mem_fd(f, n);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	T_EQ(t_patch_open(&p, fd, &why), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "  open of %zu windows: %.1f ms\n", nw + 3,
		(t1.tv_sec - t0.tv_sec) * 1e3 +
		(t1.tv_nsec - t0.tv_nsec) / 1e6);
	vcdiff_dec_new(&d);
	if (p) {
		T_EQ(vcdiff_patch_nwin(p), nw + 3);
		T_EQ(vcdiff_patch_target_size(p), nw * 100 + 3 * 700000);
		for (int k = 0; k < 1000; k++) {
			uint64_t off = rng_below(nw * 100);
			size_t i = vcdiff_patch_find(p, off);
			T_EQ(i, off / 100);
		}
		T_EQ(vcdiff_dec_window(d, p, 4242, NULL, NULL, NULL, NULL, out,
				       1 << 20), 100);
		T_CHECK(out[0] == (uint8_t)4242 && out[99] == (uint8_t)4242);
		for (size_t i = nw; i < nw + 3; i++) {
			const struct vcdiff_win *w = vcdiff_patch_win(p, i);
			T_EQ(vcdiff_dec_window(d, p, i, NULL, NULL, NULL, NULL,
					       out, 1 << 20), 700000);
			T_CHECK(memcmp(out, f + w->data_off, 700000) == 0);
		}
	}
	vcdiff_dec_free(d);
	vcdiff_patch_free(p);
	close(fd);
	free(f);
	free(out);
}

/* vcdiff_adler32_run against adler32 of a real buffer of the bytes. */
static void test_adler32_run(void)
{
	static const uint64_t ns[] = { 0, 1, 2, 255, 5552, 5553, 65520, 65521,
				       65522, 131041, 131042, 131043, 1000003,
				       3u << 20 };
	static const uint8_t bytes[] = { 0, 1, 0x7f, 0xff };
	uint8_t *buf = malloc(3u << 20);
	uint8_t pre[37];

	T_CHECK(buf != NULL);
	if (!buf)
		return;
	for (size_t k = 0; k < sizeof(pre); k++)
		pre[k] = (uint8_t)(k * 37 + 11);
	for (size_t b = 0; b < sizeof(bytes); b++) {
		memset(buf, bytes[b], 3u << 20);
		for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
			/* From the initial value and from a mid-stream one. */
			uint32_t a0 = vcdiff_adler32(1, pre, sizeof(pre));
			T_EQ(vcdiff_adler32_run(1, bytes[b], ns[i]),
			     vcdiff_adler32(1, buf, (size_t)ns[i]));
			T_EQ(vcdiff_adler32_run(a0, bytes[b], ns[i]),
			     vcdiff_adler32(a0, buf, (size_t)ns[i]));
		}
	}
	/* Beyond any buffer: a run split in two gives the same sum. */
	uint64_t big = (uint64_t)1 << 40, part = 123456789;
	T_EQ(vcdiff_adler32_run(1, 0xab, big),
	     vcdiff_adler32_run(vcdiff_adler32_run(1, 0xab, part), 0xab,
				big - part));
	T_EQ(vcdiff_adler32_run(1, 0xab, UINT64_MAX),
	     vcdiff_adler32_run(vcdiff_adler32_run(1, 0xab, UINT64_MAX / 3),
				0xab, UINT64_MAX - UINT64_MAX / 3));
	free(buf);
}

/* A window claiming 16 MiB of output with no instructions is refused at
 * open, before anything tries to build it. */
static void test_claim_without_instructions(void)
{
	static const uint8_t data[] = { 0 };
	struct vcdiff_patch *p = NULL;
	struct vb v = { 0 };
	const char *why = NULL;
	int fd;

	vb_header(&v);
	vb_window(&v, &(struct hw){ .tgt_len = VCDIFF_WIN_MAX, .data = data,
		.data_len = 1 });
	T_EQ(open_vb(&v, &p, &fd, &why), -EBADMSG);
	T_CHECK(why && strstr(why, "no instructions"));
	vcdiff_patch_free(p);
	close(fd);
}

/* Removes every file of tmpdir, then tmpdir. */
static void cleanup_tmpdir(void)
{
	DIR *dir = opendir(tmpdir);
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		unlink(tpath(e->d_name));
	}
	closedir(dir);
	rmdir(tmpdir);
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
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_vcdiff_dec.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	T_RUN(test_notes_example);
	T_RUN(test_modes_and_pairs);
	T_RUN(test_vcd_target);
	T_RUN(test_overlap);
	T_RUN(test_above_4g);
	T_RUN(test_many_windows);
	T_RUN(test_bad_headers);
	T_RUN(test_bad_instructions);
	T_RUN(test_truncations_and_flips);
	T_RUN(test_recode_truncations);
	T_RUN(test_xdelta3_random_edits);
	T_RUN(test_xdelta3_shifted);
	T_RUN(test_xdelta3_text);
	T_RUN(test_xdelta3_repeats);
	T_RUN(test_xdelta3_runs);
	T_RUN(test_xdelta3_empty);
	T_RUN(test_xdelta3_multiwindow);
	T_RUN(test_adler32_run);
	T_RUN(test_claim_without_instructions);
	cleanup_tmpdir();
	T_RUN(test_stock_windowed_seen);
	return t_done();
}
