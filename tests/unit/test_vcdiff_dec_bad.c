/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_dec_bad: the VCDIFF decoder on damaged and hostile
 * patches. Each malformed header and instruction check of a hand-made
 * patch (and a wrong adler32) gives its error and its reason; a window
 * claiming output it has no instructions for is refused at open. Every
 * truncation and a sample of bit flips of a stock xdelta3 patch give an
 * error or exactly the right bytes, never a crash; truncated and flipped
 * lzma patches given to the recoder fail cleanly, never crash. Temporary
 * files live in one mkdtemp dir that is removed at the end.
 *
 * Not here: well-formed hand-made patches (test_vcdiff_dec) and decoding
 * what stock xdelta3 writes (test_vcdiff_dec_xd3). Shared helpers are in
 * vcdiff_dec_tutil.h.
 */
#include "codec/vcdiff_dec.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/vcdiff_dec_tutil.h"

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

int main(void)
{
	if (tmpdir_make("test_vcdiff_dec_bad") != 0)
		return 1;
	T_RUN(test_bad_headers);
	T_RUN(test_bad_instructions);
	T_RUN(test_truncations_and_flips);
	T_RUN(test_recode_truncations);
	T_RUN(test_claim_without_instructions);
	cleanup_tmpdir();
	return t_done();
}
