/* SPDX-License-Identifier: MIT */
/*
 * s3put: the writes of fs/s3 (see s3.h): PUT of a buffer, with or
 * without a precondition, and DELETE. Requests, retries and signing are
 * fs/s3.c's, through fs/s3_int.h.
 *
 * Not here: reads and listing (fs/s3.c); what is written and when
 * (fs/remote and its writer).
 */
#include "fs/s3_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs/msg.h"

/* --- the body of a PUT or POST, for libcurl --- */

size_t s3i_on_upload(char *p, size_t sz, size_t nm, void *u)
{
	struct req *q = u;
	size_t n = sz * nm;

	if (n > q->uplen - q->uppos)
		n = q->uplen - q->uppos;
	if (q->upfile && n) {
		ssize_t r = pread(q->upfd, p, n, (off_t)(q->upoff + q->uppos));
		if (r <= 0) {
			/* Unreadable, or shorter than announced: what would
			 * be sent is not the file, so the upload stops. */
			q->rderr = r < 0 ? -errno : -ENODATA;
			return CURL_READFUNC_ABORT;
		}
		n = (size_t)r;
	} else {
		memcpy(p, q->up + q->uppos, n);
	}
	q->uppos += n;
	return n;
}

/* libcurl rewinds a body to send it again (a kept-alive connection the
 * server had closed meanwhile, an authentication round). */
int s3i_on_seek(void *u, curl_off_t off, int origin)
{
	struct req *q = u;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > q->uplen)
		return CURL_SEEKFUNC_CANTSEEK;
	q->uppos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/* --- PUT, DELETE --- */

/* "s3://BUCKET/PREFIX/key" for messages, in buf. */
static const char *name(struct s3 *s, const char *key, char *buf, size_t cap)
{
	snprintf(buf, cap, "s3://%s/%s%s%s", s->c.bucket, s->c.prefix,
		 s->c.prefix[0] ? "/" : "", key);
	return buf;
}

int s3_put_cond(struct s3 *s, const char *key, const void *buf, size_t len,
		const struct s3_cond *cond, struct s3_obj *out, char *err,
		size_t errlen)
{
	struct req q = { .s = s, .key = key, .max = 1 << 16, .up = buf,
			 .uplen = len };
	char hdr[200], nm[1400];
	const char *extra = NULL;
	int rc;

	if (cond && cond->if_match && cond->if_none_match) {
		/* If-Match passes only if the object exists, If-None-Match
		 * only if it does not: the pair could never succeed. */
		msg_say(err, errlen, "%s: PUT with both If-Match and "
			"If-None-Match: give one",
			name(s, key, nm, sizeof(nm)));
		return -EINVAL;
	}
	if (cond && cond->if_match) {
		if (strpbrk(cond->if_match, "\r\n") ||
		    strlen(cond->if_match) > sizeof(hdr) - 16) {
			msg_say(err, errlen, "%s: PUT If-Match: not an ETag "
				"(%zu bytes, or a line break)",
				name(s, key, nm, sizeof(nm)),
				strlen(cond->if_match));
			return -EINVAL;
		}
		snprintf(hdr, sizeof(hdr), "If-Match: %s", cond->if_match);
		extra = hdr;
		q.cond = S3I_IF_MATCH;
	} else if (cond && cond->if_none_match) {
		extra = "If-None-Match: *";
		q.cond = S3I_IF_NONE_MATCH;
	}
	rc = s3i_url(s, q.url, sizeof(q.url), key, NULL);
	if (!rc)
		rc = s3i_run(&q, "PUT", extra, err, errlen);
	if (!rc && out) {
		*out = q.obj;
		out->size = len;	/* q.obj.size: the answer's length */
	}
	s3i_req_reset(&q);
	return rc;
}

int s3_put(struct s3 *s, const char *key, const void *buf, size_t len,
	   char *err, size_t errlen)
{
	return s3_put_cond(s, key, buf, len, NULL, NULL, err, errlen);
}

int s3_cond_support(struct s3 *s, const char *key, char *err,
		    size_t errlen)
{
	static const char body[] = "snapfs: probe of conditional PUTs\n";
	struct s3_cond none = { .if_none_match = 1 };
	struct s3_cond match = { .if_match = "\"00000000000000000000000000000000\"" };
	struct s3_obj o;
	char nm[1400];
	int rc, mask = 0;

	rc = s3_put_cond(s, key, body, sizeof(body) - 1, NULL, &o, err,
			 errlen);
	if (rc)
		return rc;
	/* On the existing key: an enforced If-None-Match refuses, an
	 * If-Match with an ETag it does not have refuses too. */
	rc = s3_put_cond(s, key, body, sizeof(body) - 1, &none, NULL, err,
			 errlen);
	if (rc == -EEXIST)
		mask |= S3_COND_IF_NONE_MATCH;
	else if (rc && rc != -EOPNOTSUPP)
		return rc;
	if (strcmp(o.etag, match.if_match) == 0)
		match.if_match = "\"11111111111111111111111111111111\"";
	rc = s3_put_cond(s, key, body, sizeof(body) - 1, &match, NULL, err,
			 errlen);
	if (rc == -ESTALE)
		mask |= S3_COND_IF_MATCH;
	else if (rc && rc != -EOPNOTSUPP)
		return rc;
	if ((rc = s3_delete(s, key, err, errlen)))
		return rc;
	msg_say(err, errlen, "%s: a PUT with If-None-Match: * is %s, with "
		"If-Match: %s", name(s, key, nm, sizeof(nm)),
		mask & S3_COND_IF_NONE_MATCH ? "enforced" : "NOT enforced",
		mask & S3_COND_IF_MATCH ? "enforced" : "NOT enforced");
	return mask;
}

int s3_delete(struct s3 *s, const char *key, char *err, size_t errlen)
{
	struct req q = { .s = s, .key = key, .max = 1 << 16 };
	int rc = s3i_url(s, q.url, sizeof(q.url), key, NULL);

	if (!rc)
		rc = s3i_run(&q, "DELETE", NULL, err, errlen);
	s3i_req_reset(&q);
	return rc == -ENOENT ? 0 : rc;
}
