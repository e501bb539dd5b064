/* SPDX-License-Identifier: MIT */
/*
 * test_vcdiff_dec: the VCDIFF decoder on well-formed patches made by
 * hand, for what stock xdelta3 never writes: every address mode, the
 * caches and both kinds of paired opcode, VCD_TARGET, overlapping target
 * copies, segments and targets above 4 GiB, 100k windows, the patch of
 * vcdiff-notes.md 6 written out by hand, and vcdiff_adler32_run. Ops and
 * rebuilt windows are compared with targets worked out here. Patches
 * live in memory: no files, no xdelta3.
 *
 * Not here: damaged and hostile patches (test_vcdiff_dec_bad) and the
 * patches stock xdelta3 writes (test_vcdiff_dec_xd3). Shared helpers are
 * in vcdiff_dec_tutil.h.
 */
#include "codec/vcdiff_dec.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"
#include "tests/unit/vcdiff_dec_tutil.h"

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

int main(void)
{
	T_RUN(test_notes_example);
	T_RUN(test_modes_and_pairs);
	T_RUN(test_vcd_target);
	T_RUN(test_overlap);
	T_RUN(test_above_4g);
	T_RUN(test_many_windows);
	T_RUN(test_adler32_run);
	return t_done();
}
