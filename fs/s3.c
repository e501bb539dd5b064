/* SPDX-License-Identifier: MIT */
/*
 * s3: S3 requests over libcurl (see s3.h). The signing is libcurl's
 * (CURLOPT_AWS_SIGV4); we only set x-amz-content-sha256, to
 * UNSIGNED-PAYLOAD: the bytes are checked above us (stored checksums,
 * VCDIFF window checksums), and hashing every upload twice buys nothing.
 * Not here: uploads (fs/s3put.c), credentials (fs/s3conf.c), XML beyond
 * the few fields read here.
 */
#include "fs/s3_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs/msg.h"

/* --- the handle --- */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a,
		       void *u)
{
	struct s3 *s = u;

	(void)h;
	(void)a;
	pthread_mutex_lock(&s->share_lock[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
	struct s3 *s = u;

	(void)h;
	pthread_mutex_unlock(&s->share_lock[d]);
}

int s3_new(struct s3 **out, const struct s3_conf *conf, char *err,
	   size_t errlen)
{
	struct s3 *s;

	if (conf->part_size && conf->part_size < S3_PART_MIN) {
		msg_say(err, errlen, "s3://%s: part size %u bytes is below "
			"S3's minimum part (5 MiB, all but the last); give 0 "
			"(32 MiB) or at least 5 MiB", conf->bucket,
			conf->part_size);
		return -EINVAL;
	}
	/* Before any thread of ours exists (the mount calls this first). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		msg_say(err, errlen, "cannot initialise libcurl");
		return -ENOMEM;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->c = *conf;
	if (!s->c.timeout_ms)
		s->c.timeout_ms = 30000;
	if (!s->c.part_size)
		s->c.part_size = S3_PART_DEFAULT;
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", s->c.region);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->share_lock[i], NULL);
	pthread_mutex_init(&s->pool_lock, NULL);
	s->share = curl_share_init();
	if (!s->share) {
		s3_free(s);
		return -ENOMEM;
	}
	curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
	/* Keep-alive across threads and requests: one connection cache. */
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(s->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);
	*out = s;
	return 0;
}

void s3_free(struct s3 *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->npool; i++)
		curl_easy_cleanup(s->pool[i]);
	free(s->pool);
	if (s->share)
		curl_share_cleanup(s->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s->share_lock[i]);
	pthread_mutex_destroy(&s->pool_lock);
	memset(s->c.secret, 0, sizeof(s->c.secret));
	free(s);
}

const struct s3_conf *s3_conf(const struct s3 *s)
{
	return &s->c;
}

void s3_get_stats(struct s3 *s, struct s3_stats *st)
{
	st->requests = atomic_load(&s->requests);
	st->retries = atomic_load(&s->retries);
	st->failures = atomic_load(&s->failures);
	st->bytes_in = atomic_load(&s->bytes_in);
	st->bytes_out = atomic_load(&s->bytes_out);
}

CURL *s3i_easy_get(struct s3 *s)
{
	CURL *e = NULL;

	pthread_mutex_lock(&s->pool_lock);
	if (s->npool)
		e = s->pool[--s->npool];
	pthread_mutex_unlock(&s->pool_lock);
	if (e)
		curl_easy_reset(e);
	else
		e = curl_easy_init();
	return e;
}

void s3i_easy_put(struct s3 *s, CURL *e)
{
	pthread_mutex_lock(&s->pool_lock);
	if (s->npool == s->cappool) {
		size_t cap = s->cappool ? 2 * s->cappool : 16;
		CURL **p = realloc(s->pool, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->pool_lock);
			curl_easy_cleanup(e);
			return;
		}
		s->pool = p;
		s->cappool = cap;
	}
	s->pool[s->npool++] = e;
	pthread_mutex_unlock(&s->pool_lock);
}

/* --- one request --- */


/* Percent-encodes s (keeping '/' unless keep_slash is 0) onto out. */
int s3i_enc(char *out, size_t cap, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(out);

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' ||
		    c == '~' || (c == '/' && keep_slash)) {
			if (o + 1 >= cap)
				return -ENAMETOOLONG;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= cap)
				return -ENAMETOOLONG;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = 0;
	return 0;
}

/* The URL of key (relative to the prefix; NULL: the bucket itself),
 * plus query (already in canonical order and encoded) if not NULL. */
int s3i_url(struct s3 *s, char *url, size_t cap, const char *key,
		    const char *query)
{
	const struct s3_conf *c = &s->c;
	char full[3072] = "";
	int rc;

	if (!key) {
		full[0] = 0;
	} else if (c->prefix[0]) {
		snprintf(full, sizeof(full), "%s/%s", c->prefix, key);
	} else {
		snprintf(full, sizeof(full), "%s", key);
	}
	if (c->path_style) {
		snprintf(url, cap, "%s/%s/", c->endpoint, c->bucket);
	} else {
		const char *h = strstr(c->endpoint, "://");
		snprintf(url, cap, "%.*s%s.%s/", (int)(h - c->endpoint + 3),
			 c->endpoint, c->bucket, h + 3);
	}
	if ((rc = s3i_enc(url, cap, full, 1)))
		return rc;
	if (query && strlen(url) + strlen(query) + 2 < cap) {
		strcat(url, "?");
		strcat(url, query);
	}
	return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *u)
{
	struct req *q = u;
	size_t n = sz * nm;

	if (q->status == 0)
		curl_easy_getinfo(q->e, CURLINFO_RESPONSE_CODE, &q->status);
	if (q->status >= 300) {
		/* An error's body is an XML message: kept apart, cut. */
		size_t room = sizeof(q->ebuf) - 1 - q->elen;
		memcpy(q->ebuf + q->elen, p, n < room ? n : room);
		q->elen += n < room ? n : room;
		q->ebuf[q->elen] = 0;
		return n;
	}
	if (q->fixed) {
		if (q->len + n > q->cap) {
			q->overflow = 1;
			return 0;
		}
	} else if (q->len + n > q->max) {
		q->overflow = 1;
		return 0;
	} else if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		while (cap < q->len + n)
			cap *= 2;
		char *b = realloc(q->buf, cap);
		if (!b)
			return 0;
		q->buf = b;
		q->cap = cap;
	}
	memcpy(q->buf + q->len, p, n);
	q->len += n;
	return n;
}

/* A header's date, 0 if it has none we can read. Both Last-Modified and
 * Date go through here: a lease compares the two, so they must be read
 * alike. curl_getdate only for the obsolete forms servers may not send. */
static int64_t http_date(const char *v)
{
	int64_t t;

	if (s3_parse_date(v, strlen(v), &t)) {
		time_t c = curl_getdate(v, NULL);
		t = c > 0 ? (int64_t)c : 0;
	}
	return t;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *u)
{
	struct req *q = u;
	size_t all = sz * nm, n = all;
	char line[512];

	if (n >= sizeof(line))
		return all;
	memcpy(line, p, n);
	line[n] = 0;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		line[--n] = 0;
	if (strncasecmp(line, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue): start over. */
		q->status = 0;
		q->obj.etag[0] = 0;
	} else if (strncasecmp(line, "etag:", 5) == 0) {
		const char *v = line + 5;
		while (*v == ' ')
			v++;
		snprintf(q->obj.etag, sizeof(q->obj.etag), "%.*s",
			 (int)sizeof(q->obj.etag) - 1, v);
	} else if (strncasecmp(line, "content-length:", 15) == 0) {
		q->obj.size = strtoull(line + 15, NULL, 10);
	} else if (strncasecmp(line, "content-range:", 14) == 0) {
		const char *sl = strrchr(line, '/');
		if (sl && sl[1] != '*')
			q->obj.size = strtoull(sl + 1, NULL, 10);
	} else if (strncasecmp(line, "last-modified:", 14) == 0) {
		q->obj.mtime = http_date(line + 14);
	} else if (strncasecmp(line, "date:", 5) == 0) {
		q->obj.date = http_date(line + 5);
	}
	return all;
}

/* Sets e up for method on q->url; extra is one more header or NULL. */
int s3i_setup(struct req *q, const char *method, const char *extra)
{
	struct s3 *s = q->s;
	CURL *e = q->e;
	struct curl_slist *h = NULL, *t;

	h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (h && s->c.token[0]) {
		char tok[2100];
		snprintf(tok, sizeof(tok), "x-amz-security-token: %s",
			 s->c.token);
		t = curl_slist_append(h, tok);
		h = t ? t : NULL;
	}
	if (h && extra) {
		t = curl_slist_append(h, extra);
		h = t ? t : NULL;
	}
	if (!h)
		return -ENOMEM;
	q->hdrs = h;
	curl_easy_setopt(e, CURLOPT_URL, q->url);
	curl_easy_setopt(e, CURLOPT_SHARE, s->share);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s->sigv4);
	/* Apart, not CURLOPT_USERPWD: an access key may hold a colon
	 * (Swift's tempauth keys are ACCOUNT:USER). */
	curl_easy_setopt(e, CURLOPT_USERNAME, s->c.key_id);
	curl_easy_setopt(e, CURLOPT_PASSWORD, s->c.secret);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(s->c.timeout_ms < 10000 ? s->c.timeout_ms :
				10000));
	/* A stall, not a slow large transfer, is what times out. */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
			 (long)((s->c.timeout_ms + 999) / 1000));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
	curl_easy_setopt(e, CURLOPT_PRIVATE, q);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
		/* POST too: a body from on_upload, sized, as for a PUT. */
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		if (method[1] == 'O')
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, s3i_on_upload);
		curl_easy_setopt(e, CURLOPT_READDATA, q);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, s3i_on_seek);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, q);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)q->uplen);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	return 0;
}

void s3i_req_reset(struct req *q)
{
	curl_slist_free_all(q->hdrs);
	q->hdrs = NULL;
	if (!q->fixed) {
		free(q->buf);
		q->buf = NULL;
		q->cap = 0;
	}
	q->len = 0;
	q->overflow = 0;
	q->uppos = 0;
	q->rderr = 0;
	q->status = 0;
	q->code[0] = 0;
	q->elen = 0;
	q->ebuf[0] = 0;
	memset(&q->obj, 0, sizeof(q->obj));
}

/*
 * Classifies a finished request: 0 (success) or -errno in *rc, and
 * whether it is worth another try. The message goes to err.
 */
int s3i_judge(struct req *q, CURLcode cc, const char *method, int *rc,
		 char *err, size_t errlen)
{
	struct s3 *s = q->s;
	const char *k = q->key;

	if (cc == CURLE_OK)
		curl_easy_getinfo(q->e, CURLINFO_RESPONSE_CODE, &q->status);
	if (cc == CURLE_ABORTED_BY_CALLBACK && q->rderr) {
		*rc = q->rderr == -ENODATA ? -EIO : q->rderr;
		msg_say(err, errlen, "s3://%s/%s%s%s: %s: the local file %s "
			"at byte %" PRIu64 " of %" PRIu64 " (%s)",
			s->c.bucket, s->c.prefix, s->c.prefix[0] ? "/" : "", k,
			method, q->rderr == -ENODATA ? "ends" : "cannot be read",
			q->upoff + q->uppos, q->upoff + q->uplen,
			q->rderr == -ENODATA ? "did it shrink?" :
			strerror(-q->rderr));
		return S3I_DONE;
	}
	if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && q->overflow)) {
		*rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
		msg_say(err, errlen, "s3://%s/%s%s%s: %s %s", s->c.bucket,
			s->c.prefix, s->c.prefix[0] ? "/" : "", k, method,
			curl_easy_strerror(cc));
		return cc == CURLE_OUT_OF_MEMORY ? S3I_DONE : S3I_RETRY;
	}
	if (q->status >= 300)
		s3_parse_tag(q->ebuf, q->elen, "Code", q->code,
			     sizeof(q->code));
	if (q->status >= 200 && q->status < 300) {
		*rc = q->check ? q->check(q, err, errlen) : 0;
		return *rc ? S3I_RETRY : S3I_DONE;
	}
	switch (q->status) {
	case 404:
		*rc = -ENOENT;
		break;
	case 403:
	case 401:
		*rc = -EACCES;
		break;
	case 412:
		*rc = q->cond == S3I_IF_NONE_MATCH ? -EEXIST : -ESTALE;
		break;
	case 501:
		*rc = q->cond ? -EOPNOTSUPP : -EIO;
		break;
	default:
		*rc = -EIO;
	}
	msg_say(err, errlen, "s3://%s/%s%s%s: %s: HTTP %ld%s%s%s%s", s->c.bucket,
		s->c.prefix, s->c.prefix[0] ? "/" : "", k, method, q->status,
		q->code[0] ? " (" : "", q->code, q->code[0] ? ")" : "",
		*rc == -EEXIST ? ": the object exists (If-None-Match: *)" :
		*rc == -EOPNOTSUPP ? ": the server does not implement "
		"conditional PUTs" : "");
	if (q->status == 403 &&
	    (strcmp(q->code, "SignatureDoesNotMatch") == 0 ||
	     strcmp(q->code, "InvalidAccessKeyId") == 0))
		msg_say(err + strlen(err), errlen - strlen(err),
			": the server refused the credentials; check "
			"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the "
			"region (%s)", s->c.region);
	/* 501 is an answer, not a hiccup; AWS's 409 to a conditional PUT
	 * racing another is worth another try. */
	if (q->status == 409 && q->cond &&
	    strcmp(q->code, "ConditionalRequestConflict") == 0)
		return S3I_RETRY;
	return (q->status >= 500 && q->status != 501) || q->status == 429 ||
	       q->status == 408 ? S3I_RETRY : S3I_DONE;
}

unsigned s3i_backoff_ms(unsigned attempt)
{
	return 100u << (attempt < 5 ? attempt : 5);
}

void s3i_backoff(unsigned attempt)
{
	unsigned ms = s3i_backoff_ms(attempt);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

void s3i_log(struct s3 *s, int level, const char *m)
{
	if (s->c.log)
		s->c.log(s->c.log_ctx, level, m);
}

/* Runs q (its url, body sink and upload already set) with retries. */
int s3i_run(struct req *q, const char *method, const char *extra,
		   char *err, size_t errlen)
{
	struct s3 *s = q->s;
	char msg[1024] = "";
	int rc = -EIO;

	for (unsigned a = 0;; a++) {
		s3i_req_reset(q);
		if (!(q->e = s3i_easy_get(s)))
			return -ENOMEM;
		if ((rc = s3i_setup(q, method, extra))) {
			s3i_easy_put(s, q->e);
			return rc;
		}
		atomic_fetch_add(&s->requests, 1);
		CURLcode cc = curl_easy_perform(q->e);
		int v = s3i_judge(q, cc, method, &rc, msg, sizeof(msg));
		curl_off_t in = 0;
		curl_easy_getinfo(q->e, CURLINFO_SIZE_DOWNLOAD_T, &in);
		atomic_fetch_add(&s->bytes_in, (uint64_t)in);
		atomic_fetch_add(&s->bytes_out, q->uppos);
		s3i_easy_put(s, q->e);
		q->e = NULL;
		if (v == S3I_DONE || a >= s->c.retries)
			break;
		atomic_fetch_add(&s->retries, 1);
		if (a == 0)
			s3i_log(s, LOG_WARNING, msg);
		s3i_backoff(a);
	}
	if (rc) {
		/* A 404 is an answer (derived data not shared yet, say). */
		if (rc != -ENOENT)
			atomic_fetch_add(&s->failures, 1);
		if (rc == -EIO || rc == -ETIMEDOUT)
			s3i_log(s, LOG_ERR, msg);
		msg_say(err, errlen, "%s", msg);
	}
	return rc;
}

static void req_free(struct req *q)
{
	s3i_req_reset(q);
}

int s3_head(struct s3 *s, const char *key, struct s3_obj *o, char *err,
	    size_t errlen)
{
	struct req q = { .s = s, .key = key, .max = 1 << 16 };
	int rc = s3i_url(s, q.url, sizeof(q.url), key, NULL);

	if (!rc)
		rc = s3i_run(&q, "HEAD", NULL, err, errlen);
	if (!rc && o)
		*o = q.obj;
	req_free(&q);
	return rc;
}

int s3_get(struct s3 *s, const char *key, size_t max, void **buf,
	   size_t *len, struct s3_obj *o, char *err, size_t errlen)
{
	struct req q = { .s = s, .key = key, .max = max };
	int rc = s3i_url(s, q.url, sizeof(q.url), key, NULL);

	if (!rc)
		rc = s3i_run(&q, "GET", NULL, err, errlen);
	if (!rc && q.overflow) {
		msg_say(err, errlen, "s3://%s/%s: larger than %zu bytes",
			s->c.bucket, key, max);
		rc = -EFBIG;
	}
	if (!rc) {
		q.obj.size = q.len;
		if (o)
			*o = q.obj;
		*len = q.len;
		*buf = q.buf ? q.buf : malloc(1);
		q.buf = NULL;
		if (!*buf)
			rc = -ENOMEM;
	}
	req_free(&q);
	return rc;
}

/* --- several ranges at once --- */

struct rq {
	struct req q;
	struct s3_range *r;
	char range[128];
	unsigned tries;
	int active;
};

static int start_range(CURLM *m, struct rq *x, const char *etag)
{
	struct s3 *s = x->q.s;
	struct curl_slist *t;
	int rc;

	s3i_req_reset(&x->q);
	x->q.buf = x->r->buf;
	x->q.cap = x->r->len;
	if (!(x->q.e = s3i_easy_get(s)))
		return -ENOMEM;
	if ((rc = s3i_setup(&x->q, "GET", x->range))) {
		s3i_easy_put(s, x->q.e);
		x->q.e = NULL;
		return rc;
	}
	if (etag) {
		char im[160];
		snprintf(im, sizeof(im), "If-Match: %s", etag);
		t = curl_slist_append(x->q.hdrs, im);
		if (!t) {
			s3i_easy_put(s, x->q.e);
			x->q.e = NULL;
			return -ENOMEM;
		}
		x->q.hdrs = t;
	}
	atomic_fetch_add(&s->requests, 1);
	if (curl_multi_add_handle(m, x->q.e) != CURLM_OK) {
		s3i_easy_put(s, x->q.e);
		x->q.e = NULL;
		return -ENOMEM;
	}
	x->active = 1;
	return 0;
}

int s3_get_ranges(struct s3 *s, const char *key, const char *etag,
		  struct s3_range *r, size_t n, char *err, size_t errlen)
{
	struct rq *x = calloc(n ? n : 1, sizeof(*x));
	CURLM *m = curl_multi_init();
	char msg[1024] = "";
	int rc = 0, running = 0;

	if (!x || !m) {
		free(x);
		if (m)
			curl_multi_cleanup(m);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		x[i].q.s = s;
		x[i].q.key = key;
		x[i].q.fixed = 1;
		x[i].q.max = 1 << 16;
		x[i].r = &r[i];
		r[i].rc = -EINPROGRESS;
		snprintf(x[i].range, sizeof(x[i].range),
			 "Range: bytes=%" PRIu64 "-%" PRIu64, r[i].off,
			 r[i].off + (r[i].len ? r[i].len - 1 : 0));
		if ((rc = s3i_url(s, x[i].q.url, sizeof(x[i].q.url), key,
				   NULL)) ||
		    (rc = start_range(m, &x[i], etag)))
			goto out;
	}
	do {
		CURLMcode mc = curl_multi_perform(m, &running);
		if (mc == CURLM_OK && running)
			mc = curl_multi_poll(m, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK) {
			rc = -EIO;
			goto out;
		}
		CURLMsg *cm;
		int left;
		while ((cm = curl_multi_info_read(m, &left))) {
			if (cm->msg != CURLMSG_DONE)
				continue;
			struct req *q = NULL;
			curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE,
					  (char **)&q);
			struct rq *y = (struct rq *)q;
			CURLcode cc = cm->data.result;
			int e, v = s3i_judge(q, cc, "GET", &e, msg, sizeof(msg));
			curl_off_t in = 0;
			curl_easy_getinfo(q->e, CURLINFO_SIZE_DOWNLOAD_T, &in);
			atomic_fetch_add(&s->bytes_in, (uint64_t)in);
			curl_multi_remove_handle(m, q->e);
			s3i_easy_put(s, q->e);
			q->e = NULL;
			y->active = 0;
			if (!e && (q->status != 206 || q->len != y->r->len)) {
				/* 200 (Range ignored) or a short body. */
				e = -EIO;
				v = S3I_RETRY;
				snprintf(msg, sizeof(msg), "s3://%s/%s: GET %s: "
					 "got %zu bytes, status %ld",
					 s->c.bucket, key, y->range + 7,
					 q->len, q->status);
			}
			if (e && v == S3I_RETRY && y->tries < s->c.retries) {
				if (y->tries == 0)
					s3i_log(s, LOG_WARNING, msg);
				atomic_fetch_add(&s->retries, 1);
				s3i_backoff(y->tries++);
				if ((e = start_range(m, y, etag)) == 0) {
					running = 1;
					continue;
				}
			}
			y->r->rc = e;
			if (e && !rc) {
				rc = e;
				msg_say(err, errlen, "%s", msg);
			}
		}
	} while (running);
out:
	for (size_t i = 0; i < n; i++) {
		if (x[i].active) {
			curl_multi_remove_handle(m, x[i].q.e);
			s3i_easy_put(s, x[i].q.e);
		}
		x[i].q.buf = NULL;	/* the caller's */
		x[i].q.fixed = 1;
		s3i_req_reset(&x[i].q);
		if (r[i].rc == -EINPROGRESS)
			r[i].rc = rc ? rc : -EIO;
	}
	curl_multi_cleanup(m);
	free(x);
	if (rc) {
		atomic_fetch_add(&s->failures, 1);
		if (rc == -EIO || rc == -ETIMEDOUT)
			s3i_log(s, LOG_ERR, msg);
	}
	return rc;
}

/* --- listing (its parser: fs/s3parse.c) --- */

int s3_list(struct s3 *s, const char *prefix,
	    int (*cb)(void *arg, const char *key, const struct s3_obj *o),
	    void *arg, char *err, size_t errlen)
{
	char token[1024] = "", full[2048], query[4096];
	size_t skip = s->c.prefix[0] ? strlen(s->c.prefix) + 1 : 0;
	int rc = 0;

	snprintf(full, sizeof(full), "%s%s%s", s->c.prefix,
		 s->c.prefix[0] ? "/" : "", prefix);
	do {
		struct req q = { .s = s, .key = prefix, .max = 64 << 20 };

		/* Parameters in canonical (sorted) order, values encoded:
		 * the signature covers the query as sent. */
		query[0] = 0;
		if (token[0]) {
			strcat(query, "continuation-token=");
			if ((rc = s3i_enc(query, sizeof(query), token, 0)))
				return rc;
			strcat(query, "&");
		}
		strcat(query, "list-type=2&prefix=");
		if ((rc = s3i_enc(query, sizeof(query), full, 0)))
			return rc;
		if ((rc = s3i_url(s, q.url, sizeof(q.url), NULL, query)) ||
		    (rc = s3i_run(&q, "GET", NULL, err, errlen))) {
			req_free(&q);
			return rc;
		}
		rc = s3_parse_list(q.buf ? q.buf : "", q.len, skip, cb, arg,
				   token, sizeof(token));
		if (rc == -EPROTO)
			msg_say(err, errlen, "s3://%s/%s: the listing is cut "
				"but gives no usable NextContinuationToken; "
				"is %s an S3 server?", s->c.bucket, full,
				s->c.endpoint);
		if (rc) {
			req_free(&q);
			return rc;
		}
		req_free(&q);
	} while (token[0]);
	return 0;
}
