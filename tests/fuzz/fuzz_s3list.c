/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a ListObjectsV2 response body as s3_parse_list reads
 * it. It comes from the network (a server, or whatever answers in its
 * place). Every key handed on must be a terminated string inside the
 * buffer's bounds, without the prefix bytes, and the continuation token
 * must be terminated within its buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_key(void *arg, const char *key, const struct s3_obj *o)
{
	size_t *n = arg;

	if (strlen(key) >= 2048 || strnlen(o->etag, sizeof(o->etag)) ==
	    sizeof(o->etag))
		abort();
	(*n)++;
	return *n > 100000;	/* a stop from the callback is honoured */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char token[64];
	size_t n = 0;
	size_t skip = size ? data[0] % 8 : 0;

	memset(token, 'x', sizeof(token));
	s3_parse_list((const char *)data, size, skip, on_key, &n, token,
		      sizeof(token));
	if (!memchr(token, 0, sizeof(token)))
		abort();
	return 0;
}
