/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a store's lock file as snapctl reads it to find the
 * mount (store_parse_lock, fs/store.h). The file is the store's, so any
 * bytes: on success both fields are non-empty strings within their
 * buffers, without a newline. Must never crash, hang or leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char mnt[64], token[16];

	if (store_parse_lock((const char *)data, size, mnt, sizeof(mnt), token,
			     sizeof(token)) == 0) {
		size_t ml = strnlen(mnt, sizeof(mnt));
		size_t tl = strnlen(token, sizeof(token));
		if (!ml || ml == sizeof(mnt) || !tl || tl == sizeof(token) ||
		    memchr(mnt, '\n', ml) || memchr(token, '\n', tl))
			abort();
	}
	return 0;
}
