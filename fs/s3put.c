/* SPDX-License-Identifier: MIT */
/*
 * s3put: the uploads of fs/s3 (see s3.h): PUT of a buffer. Requests,
 * retries and signing are fs/s3.c's (through fs/s3_int.h).
 *
 * Not here: reads, listing, deletes (fs/s3.c); what is uploaded and when
 * (fs/remote).
 */
#include "fs/s3_int.h"

#include <errno.h>
#include <string.h>

int s3_put(struct s3 *s, const char *key, const void *buf, size_t len,
	   char *err, size_t errlen)
{
	struct req q = { .s = s, .key = key, .max = 1 << 16, .up = buf,
			 .uplen = len };
	int rc = s3i_url(s, q.url, sizeof(q.url), key, NULL);

	if (!rc)
		rc = s3i_run(&q, "PUT", NULL, err, errlen);
	s3i_req_reset(&q);
	return rc;
}
