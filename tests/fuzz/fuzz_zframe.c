/* SPDX-License-Identifier: MIT */
/*
 * fuzz_zframe: libFuzzer target for the zframe reader. The input is the
 * file (a memory blob, as a remote store's would be): open it, then read every frame (at most MAX_READS,
 * so a table of many tiny frames cannot stall a run) and look a few
 * offsets up. Any error is fine; a crash, a leak or a read that claims
 * more bytes than the frame holds is not.
 */
#include "codec/zframe.h"

#include <stdlib.h>
#include <string.h>

#include "codec/blob.h"
#include "tests/unit/tutil.h"

#define MAX_READS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zframe *z = NULL;
	struct zframe_dctx *dc = NULL;
	uint8_t *buf = NULL;
	const char *why = NULL;
	struct blob *b = t_blob_mem(data, size);

	if (!b)
		return 0;
	if (zframe_open(&z, b, &why) != 0) {
		if (!why || !*why)
			abort();	/* every failure says why */
		goto out;
	}
	if (zframe_dctx_new(&dc) != 0)
		goto out;
	/* ZFRAME_MAX_FRAME bounds this: the reader refuses larger frames. */
	if (zframe_max_frame(z) > ZFRAME_MAX_FRAME)
		abort();
	buf = malloc(zframe_max_frame(z) + 1);
	if (!buf)
		goto out;
	for (size_t i = 0; i < zframe_count(z) && i < MAX_READS; i++) {
		const struct zframe_entry *e = zframe_frame(z, i);
		ssize_t n = zframe_read_frame(z, dc, i, buf, e->raw_len);

		if (n >= 0 && (size_t)n != e->raw_len)
			abort();
		if (zframe_find(z, e->raw_off) != i)
			abort();
	}
	if (zframe_find(z, zframe_size(z)) != zframe_count(z))
		abort();
out:
	free(buf);
	zframe_dctx_free(dc);
	zframe_free(z);
	blob_put(b);
	return 0;
}
