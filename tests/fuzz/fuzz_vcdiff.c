/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vcdiff: libFuzzer target for codec/vcdiff_dec.
 *
 * The input is a patch file (a memory blob, as a remote store's would
 * be; the recoded copy is a memfd, as a local derived file). It is opened, every window is decoded to ops, and windows are
 * rebuilt against a synthetic source and target of bounded size, so copies
 * that reach past them exercise the "too short" paths. Windows are visited
 * last first, so windowed lzma patches (every compressed section its own
 * xz block) are decoded out of order, and every section of every window is
 * also read alone through vcdiff_dec_section. Patches with lzma sections
 * are also recoded and the result decoded the same way. Total
 * output per input is capped so that 16 MiB RUN windows do not stall the
 * fuzzer. Must stay leak-free: everything is released before returning.
 */
#include "codec/vcdiff_dec.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec/blob.h"
#include "tests/unit/tutil.h"

#define SYNTH_SIZE (1u << 20)		/* source and earlier target */
#define OUT_BUDGET (48u << 20)		/* rebuilt bytes per input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ssize_t synth_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	uint8_t *b = buf;

	(void)ctx;
	if (off >= SYNTH_SIZE)
		return 0;
	if (len > SYNTH_SIZE - off)
		len = (size_t)(SYNTH_SIZE - off);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)((off + i) * 131 >> 3);
	return (ssize_t)len;
}

static void decode_all(struct blob *b, struct vcdiff_dec *d, uint8_t *dst)
{
	struct vcdiff_patch *p = NULL;
	uint64_t budget = OUT_BUDGET;
	const char *why = NULL;

	if (vcdiff_patch_open(&p, b, &why) != 0)
		return;
	(void)vcdiff_patch_target_size(p);
	(void)vcdiff_patch_source_span(p);
	if (vcdiff_patch_nwin(p) > 0)
		(void)vcdiff_patch_find(p, vcdiff_patch_target_size(p) / 2);
	(void)vcdiff_patch_secondary(p);
	(void)vcdiff_patch_windowed(p);
	for (size_t i = vcdiff_patch_nwin(p); i-- > 0;) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		const struct vcdiff_op *ops;
		size_t nops;

		for (int k = VCDIFF_SECT_DATA; k <= VCDIFF_SECT_ADDR; k++) {
			ssize_t n = vcdiff_dec_section(d, p, i, k, dst,
						       VCDIFF_WIN_MAX);
			/* a successful read fills exactly the length open
			 * announced */
			if (n >= 0 && (size_t)n != (k == 0 ? w->data_plain_len :
						    k == 1 ? w->inst_plain_len :
						    w->addr_plain_len))
				abort();
		}
		if (vcdiff_dec_ops(d, p, i, &ops, &nops) != 0)
			continue;
		if (w->tgt_len > budget)
			continue;
		budget -= w->tgt_len;
		(void)vcdiff_dec_window(d, p, i, synth_read, NULL, synth_read,
					NULL, dst, VCDIFF_WIN_MAX);
	}
	vcdiff_patch_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *dst;
	struct vcdiff_dec *d = NULL;
	struct blob *b = NULL, *ob = NULL;
	int out = -1;

	if (!dst && !(dst = malloc(VCDIFF_WIN_MAX)))
		return 0;
	b = t_blob_mem(data, size);
	if (!b)
		return 0;
	if (vcdiff_dec_new(&d) != 0)
		goto out;
	decode_all(b, d, dst);

	/* Secondary-compressed input: recode, then decode the result. */
	if (size > 5 && (data[4] & 0x01)) {
		out = memfd_create("fuzz-vcdiff-plain", 0);
		if (out >= 0 &&
		    vcdiff_recode_plain(b, out, NULL, NULL, NULL) == 0 &&
		    (ob = t_blob(out)))
			decode_all(ob, d, dst);
	}
out:
	vcdiff_dec_free(d);
	blob_put(ob);
	if (out >= 0)
		close(out);
	blob_put(b);
	return 0;
}
