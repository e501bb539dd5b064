/* SPDX-License-Identifier: MIT */
/*
 * s3put: the writes of fs/s3 (see s3.h): PUT of a buffer, with or
 * without a precondition; a file as one streaming PUT or a multipart
 * upload (parts read with pread as libcurl sends them, a few in flight
 * on one multi handle, each retried on its own without holding up the
 * others); server-side copy; DELETE. Requests, retries and signing are fs/s3.c's, through
 * fs/s3_int.h.
 *
 * Not here: reads and listing (fs/s3.c); what is written and when
 * (fs/remote and its writer).
 */
#include "fs/s3_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs/msg.h"

/* --- the body of a PUT or POST, for libcurl --- */

size_t s3i_on_upload(char *p, size_t sz, size_t nm, void *u)
{
	struct req *q = u;
	size_t n = sz * nm;

	if (n > q->uplen - q->uppos)
		n = q->uplen - q->uppos;
	if (!n)
		return 0;	/* the end; an empty body may have no buffer */
	if (q->upfile) {
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

/* --- a file: one PUT, or a multipart upload --- */

/* For answers that S3 may send as a 200 whose body is an <Error> (it
 * does when a long CompleteMultipartUpload or CopyObject fails late). */
static int body_error(struct req *q, char *msg, size_t cap)
{
	char code[64], text[256], nm[1400];

	if (s3_parse_tag(q->buf ? q->buf : "", q->len, "Code", code,
			 sizeof(code)))
		return 0;
	s3_parse_tag(q->buf, q->len, "Message", text, sizeof(text));
	msg_say(msg, cap, "%s: HTTP %ld with an error in the body (%s: %s)",
		name(q->s, q->key, nm, sizeof(nm)), q->status, code, text);
	return -EIO;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { IN_FLIGHT = 4, MAX_PARTS = 10000 };

/* A multipart upload under way. */
struct mp {
	struct s3 *s;
	const char *key;
	int fd;
	uint64_t size;
	unsigned n;		/* parts */
	char (*etag)[128];	/* each part's, from its answer */
	char id[1024];		/* UploadId */
	char idq[3100];		/* "uploadId=" and it, encoded */
};

/* One of IN_FLIGHT connections: the part it sends, its tries. */
struct slot {
	struct req q;
	unsigned part;		/* 0-based */
	unsigned tries;
	int64_t due;		/* a retry waits until then (now_ms) */
	enum { FREE, ACTIVE, WAITING } st;
};

static int start_part(struct mp *u, CURLM *m, struct slot *sl)
{
	struct s3 *s = u->s;
	uint64_t off = (uint64_t)sl->part * s->c.part_size;
	char query[3200];
	int rc;

	snprintf(query, sizeof(query), "partNumber=%u&%s", sl->part + 1,
		 u->idq);
	s3i_req_reset(&sl->q);
	sl->q.upoff = off;
	sl->q.uplen = (size_t)(u->size - off < s->c.part_size ?
			       u->size - off : s->c.part_size);
	if ((rc = s3i_url(s, sl->q.url, sizeof(sl->q.url), u->key, query)))
		return rc;
	if (!(sl->q.e = s3i_easy_get(s)))
		return -ENOMEM;
	if ((rc = s3i_setup(&sl->q, "PUT", NULL)) ||
	    curl_multi_add_handle(m, sl->q.e) != CURLM_OK) {
		s3i_req_reset(&sl->q);
		s3i_easy_put(s, sl->q.e);
		sl->q.e = NULL;
		return rc ? rc : -ENOMEM;
	}
	atomic_fetch_add(&s->requests, 1);
	sl->st = ACTIVE;
	return 0;
}

/* A part's try is over: its ETag kept, or a retry planned, or the
 * error (-errno, message in msg) returned. */
static int end_part(struct mp *u, CURLM *m, struct slot *sl, CURLcode cc,
		    char *msg, size_t cap)
{
	struct s3 *s = u->s;
	struct req *q = &sl->q;
	curl_off_t in = 0;
	int rc, v = s3i_judge(q, cc, "PUT", &rc, msg, cap);

	curl_easy_getinfo(q->e, CURLINFO_SIZE_DOWNLOAD_T, &in);
	atomic_fetch_add(&s->bytes_in, (uint64_t)in);
	atomic_fetch_add(&s->bytes_out, q->uppos);
	curl_multi_remove_handle(m, q->e);
	s3i_easy_put(s, q->e);
	q->e = NULL;
	sl->st = FREE;
	if (!rc && !q->obj.etag[0]) {
		/* Without it the part cannot be named at completion. */
		char nm[1400];
		msg_say(msg, cap, "%s: part %u: no ETag in the answer",
			name(s, u->key, nm, sizeof(nm)), sl->part + 1);
		rc = -EIO;
		v = S3I_RETRY;
	}
	if (!rc) {
		memcpy(u->etag[sl->part], q->obj.etag, sizeof(u->etag[0]));
		return 0;
	}
	size_t ml = strlen(msg);
	msg_say(msg + ml, cap - ml, " (part %u of %u, try %u)", sl->part + 1,
		u->n, sl->tries + 1);
	if (v != S3I_RETRY || sl->tries >= s->c.retries)
		return rc;
	if (sl->tries == 0)
		s3i_log(s, LOG_WARNING, msg);
	atomic_fetch_add(&s->retries, 1);
	/* The other parts go on meanwhile: no sleep here. */
	sl->due = now_ms() + s3i_backoff_ms(sl->tries++);
	sl->st = WAITING;
	return 0;
}

/* Sends every part, IN_FLIGHT at a time, each retried on its own. */
static int send_parts(struct mp *u, char *err, size_t errlen)
{
	struct slot *sl = calloc(IN_FLIGHT, sizeof(*sl));
	CURLM *m = curl_multi_init();
	char msg[1024] = "";
	unsigned next = 0;
	int rc = 0, running = 0;

	if (!sl || !m) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < IN_FLIGHT; i++)
		sl[i].q = (struct req){ .s = u->s, .key = u->key,
					.max = 1 << 16, .upfile = 1,
					.upfd = u->fd };
	for (;;) {
		int64_t now = now_ms(), wait = 1000;
		int busy = 0;
		for (int i = 0; i < IN_FLIGHT && !rc; i++) {
			if (sl[i].st == FREE && next < u->n) {
				sl[i].part = next++;
				sl[i].tries = 0;
				rc = start_part(u, m, &sl[i]);
			} else if (sl[i].st == WAITING && sl[i].due <= now) {
				rc = start_part(u, m, &sl[i]);
			}
			if (sl[i].st == WAITING && sl[i].due - now < wait)
				wait = sl[i].due - now;
			busy |= sl[i].st != FREE;
		}
		if (rc || !busy)
			break;
		CURLMcode mc = curl_multi_perform(m, &running);
		if (mc == CURLM_OK)
			mc = curl_multi_poll(m, NULL, 0, (int)(wait > 0 ? wait :
							       0), NULL);
		if (mc == CURLM_OK)
			mc = curl_multi_perform(m, &running);
		if (mc != CURLM_OK) {
			msg_say(msg, sizeof(msg), "s3://%s: %s", u->s->c.bucket,
				curl_multi_strerror(mc));
			rc = -EIO;
			break;
		}
		CURLMsg *cm;
		int left;
		while (!rc && (cm = curl_multi_info_read(m, &left))) {
			struct slot *y = NULL;
			if (cm->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE,
					  (char **)&y);
			rc = end_part(u, m, y, cm->data.result, msg,
				      sizeof(msg));
		}
	}
out:
	for (int i = 0; sl && i < IN_FLIGHT; i++) {
		if (sl[i].st == ACTIVE) {
			atomic_fetch_add(&u->s->bytes_out, sl[i].q.uppos);
			curl_multi_remove_handle(m, sl[i].q.e);
			s3i_easy_put(u->s, sl[i].q.e);
		}
		s3i_req_reset(&sl[i].q);
	}
	if (m)
		curl_multi_cleanup(m);
	free(sl);
	if (rc) {
		atomic_fetch_add(&u->s->failures, 1);
		if (rc == -EIO || rc == -ETIMEDOUT)
			s3i_log(u->s, LOG_ERR, msg);
		msg_say(err, errlen, "%s", msg[0] ? msg : strerror(-rc));
	}
	return rc;
}

/* CompleteMultipartUpload: the parts' numbers and ETags, in order. */
static int complete(struct mp *u, struct s3_obj *out, char *err,
		    size_t errlen)
{
	struct req q = { .s = u->s, .key = u->key, .max = 1 << 20,
			 .check = body_error };
	size_t cap = 128, o;
	char *x;
	int rc;

	for (unsigned i = 0; i < u->n; i++)
		cap += 64 + 5 * strlen(u->etag[i]);
	if (!(x = malloc(cap)))
		return -ENOMEM;
	o = (size_t)snprintf(x, cap, "<CompleteMultipartUpload>");
	for (unsigned i = 0; i < u->n; i++) {
		o += (size_t)snprintf(x + o, cap - o, "<Part><PartNumber>%u"
				      "</PartNumber><ETag>", i + 1);
		/* The ETag came from a header: escaped, it cannot end
		 * the element early. */
		for (const char *e = u->etag[i]; *e; e++)
			o += (size_t)snprintf(x + o, cap - o, "%s",
					      *e == '&' ? "&amp;" :
					      *e == '<' ? "&lt;" :
					      *e == '>' ? "&gt;" :
					      (char[2]){ *e, 0 });
		o += (size_t)snprintf(x + o, cap - o, "</ETag></Part>");
	}
	o += (size_t)snprintf(x + o, cap - o, "</CompleteMultipartUpload>");
	q.up = x;
	q.uplen = o;
	rc = s3i_url(u->s, q.url, sizeof(q.url), u->key, u->idq);
	if (!rc)
		rc = s3i_run(&q, "POST", NULL, err, errlen);
	if (!rc) {
		*out = q.obj;
		out->size = u->size;
		if (s3_parse_tag(q.buf ? q.buf : "", q.len, "ETag", out->etag,
				 sizeof(out->etag))) {
			/* Done, but the answer does not say its ETag. */
			struct s3_obj h;
			if (!(rc = s3_head(u->s, u->key, &h, err, errlen)))
				memcpy(out->etag, h.etag, sizeof(h.etag));
		}
	}
	s3i_req_reset(&q);
	free(x);
	return rc;
}

static int put_multi(struct s3 *s, const char *key, int fd, uint64_t size,
		     struct s3_obj *out, char *err, size_t errlen)
{
	struct mp u = { .s = s, .key = key, .fd = fd, .size = size };
	struct req q = { .s = s, .key = key, .max = 1 << 20,
			 .check = body_error };
	char nm[1400];
	size_t el;
	int rc;

	u.n = (unsigned)((size + s->c.part_size - 1) / s->c.part_size);
	if ((size + s->c.part_size - 1) / s->c.part_size > MAX_PARTS) {
		msg_say(err, errlen, "%s: %" PRIu64 " bytes are more than "
			"%u parts of %u bytes (S3's limit); give a larger "
			"part size", name(s, key, nm, sizeof(nm)), size,
			MAX_PARTS, s->c.part_size);
		return -EFBIG;
	}
	/* CreateMultipartUpload: "uploads=", as signed (s3lib.sh). */
	rc = s3i_url(s, q.url, sizeof(q.url), key, "uploads=");
	if (!rc)
		rc = s3i_run(&q, "POST", NULL, err, errlen);
	if (!rc && (s3_parse_tag(q.buf ? q.buf : "", q.len, "UploadId", u.id,
				 sizeof(u.id)) || !u.id[0])) {
		msg_say(err, errlen, "%s: POST ?uploads: no UploadId in the "
			"answer; is %s an S3 server?",
			name(s, key, nm, sizeof(nm)), s->c.endpoint);
		rc = -EIO;
	}
	s3i_req_reset(&q);
	if (rc)
		return rc;
	strcpy(u.idq, "uploadId=");
	rc = s3i_enc(u.idq, sizeof(u.idq), u.id, 0);
	if (!rc && !(u.etag = calloc(u.n, sizeof(*u.etag))))
		rc = -ENOMEM;
	if (!rc)
		rc = send_parts(&u, err, errlen);
	if (!rc)
		rc = complete(&u, out, err, errlen);
	free(u.etag);
	if (!rc)
		return 0;
	/* AbortMultipartUpload: else the parts stay, stored and billed,
	 * where no listing of objects shows them. (A completion retried
	 * after its answer was lost may get 404 NoSuchUpload although it
	 * made the object: an error is then returned for an object that
	 * exists, with the bytes sent.) */
	q = (struct req){ .s = s, .key = key, .max = 1 << 20 };
	el = err ? strlen(err) : 0;
	char m2[1024] = "";
	int ab = s3i_url(s, q.url, sizeof(q.url), key, u.idq);
	if (!ab)
		ab = s3i_run(&q, "DELETE", NULL, m2, sizeof(m2));
	s3i_req_reset(&q);
	if (ab && ab != -ENOENT)
		msg_say(err + el, errlen - el, "; and the upload could not "
			"be aborted (%s): its parts stay in the bucket until "
			"an AbortMultipartUpload of UploadId %s (or a "
			"lifecycle rule) removes them", m2, u.id);
	else
		msg_say(err + el, errlen - el, "; the upload was aborted, "
			"nothing was stored");
	return rc;
}

int s3_put_fd(struct s3 *s, const char *key, int fd, uint64_t size,
	      struct s3_obj *out, char *err, size_t errlen)
{
	struct s3_obj o;
	int rc;

	if (!out)
		out = &o;
	if (size > s->c.part_size)
		return put_multi(s, key, fd, size, out, err, errlen);
	struct req q = { .s = s, .key = key, .max = 1 << 16, .upfile = 1,
			 .upfd = fd, .uplen = (size_t)size };
	rc = s3i_url(s, q.url, sizeof(q.url), key, NULL);
	if (!rc)
		rc = s3i_run(&q, "PUT", NULL, err, errlen);
	if (!rc) {
		*out = q.obj;
		out->size = size;
	}
	s3i_req_reset(&q);
	return rc;
}

/* --- server-side copy --- */

int s3_copy(struct s3 *s, const char *from, const char *to,
	    struct s3_obj *out, char *err, size_t errlen)
{
	char label[2200], src[3300] = "x-amz-copy-source: /", full[2400];
	struct req q = { .s = s, .key = label, .max = 1 << 20,
			 .check = body_error };
	struct s3_obj o;
	int rc;

	/* Messages name both ends: a 404 is about the source. */
	snprintf(label, sizeof(label), "%s (copy of %s)", to, from);
	snprintf(full, sizeof(full), "%s/%s%s%s", s->c.bucket, s->c.prefix,
		 s->c.prefix[0] ? "/" : "", from);
	if (!out)
		out = &o;
	if ((rc = s3i_enc(src, sizeof(src), full, 1)) ||
	    (rc = s3i_url(s, q.url, sizeof(q.url), to, NULL)))
		return rc;
	rc = s3i_run(&q, "PUT", src, err, errlen);
	if (!rc) {
		*out = q.obj;
		out->size = 0;	/* q.obj.size: the answer's length */
		if (s3_parse_tag(q.buf ? q.buf : "", q.len, "ETag", out->etag,
				 sizeof(out->etag))) {
			/* Copied, but the answer does not say its ETag. */
			struct s3_obj h;
			if (!(rc = s3_head(s, to, &h, err, errlen)))
				memcpy(out->etag, h.etag, sizeof(h.etag));
		}
	}
	s3i_req_reset(&q);
	return rc;
}
