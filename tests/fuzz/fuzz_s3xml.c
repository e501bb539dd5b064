/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the small XML answers the uploads read
 * (CreateMultipartUpload, CompleteMultipartUpload, CopyObject, <Error>)
 * through s3_parse_tag, and the same bytes as an HTTP Date header through
 * s3_parse_date. Both come from the network. The first byte picks the
 * element and the output buffer's size, the rest is the body. Checked:
 * no read outside the input (ASan), the answer is one of the documented
 * codes, the output is terminated inside its buffer and "" on errors,
 * and a date that parses prints back as the same text (the weekday
 * aside: it is not checked against the date).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_date(const char *s, size_t len)
{
	char back[64];
	struct tm tm;
	int64_t t = 0;
	time_t tt;

	if (s3_parse_date(s, len, &t))
		return;
	if (len != 29 || !memcmp(s + 23, "60", 2))
		return;	/* whitespace around it; a leap second */
	tt = (time_t)t;
	if (!gmtime_r(&tt, &tm) ||
	    !strftime(back, sizeof(back), "%a, %d %b %Y %H:%M:%S GMT", &tm) ||
	    memcmp(back + 5, s + 5, 24))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *tags[] = { "UploadId", "ETag", "Code", "Message",
				      "Key", "a" };
	char out[300];
	size_t cap;
	int rc;

	check_date((const char *)data, size);
	if (size < 1)
		return 0;
	cap = data[0] >> 3 ? (size_t)(data[0] >> 3) * 9 : 1;	/* 1..279 */
	memset(out, 'x', sizeof(out));
	rc = s3_parse_tag((const char *)data + 1, size - 1,
			  tags[data[0] % 6], out, cap);
	if (rc != 0 && rc != -ENOENT && rc != -EILSEQ && rc != -EOVERFLOW)
		abort();
	if (!memchr(out, 0, cap) || out[cap] != 'x')
		abort();
	if (rc && out[0])
		abort();
	return 0;
}
