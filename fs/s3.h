/* SPDX-License-Identifier: MIT */
/*
 * s3: the small part of the S3 API snapfs needs, over libcurl: HEAD,
 * whole small GETs, ranged GETs with several in flight on one multi
 * handle, PUT (conditional too), a file as one PUT or a multipart
 * upload, server-side copy, DELETE and ListObjectsV2. Files: s3.c (the
 * handle, requests, reads, listing), s3put.c (writes), s3parse.c (the
 * parsers of answers), s3conf.c (settings). Requests are signed by libcurl
 * (CURLOPT_AWS_SIGV4); connections are kept alive and shared by all
 * threads through a curl share handle. Transient failures (connection
 * refused or reset, timeouts, 5xx but 501, 429) are retried with exponential
 * backoff; after the last try the error is returned as -EIO (or
 * -ETIMEDOUT) and the message names the object.
 *
 * Not here: what the objects mean (fs/remote), caching (cache/dcache),
 * our own HTTP or signing code (there is none).
 *
 * Keys passed in are relative to the store: "increments.txt" is
 * PREFIX/increments.txt in BUCKET.
 *
 * Thread safety: all calls may be made from any number of threads at once.
 */
#ifndef SNAPFS_FS_S3_H
#define SNAPFS_FS_S3_H

#include <stddef.h>
#include <stdint.h>

struct s3;

struct s3_conf {
	char endpoint[512];	/* http(s)://host[:port], no trailing '/' */
	char region[64];
	char key_id[256];
	char secret[256];
	char token[2048];	/* AWS_SESSION_TOKEN, or "" */
	char bucket[256];
	char prefix[1024];	/* "" or "a/b" (no leading/trailing '/') */
	int path_style;		/* endpoint/bucket/key, else bucket.host/key */
	unsigned timeout_ms;	/* whole-request stall limit; 0: 30 s */
	unsigned retries;	/* tries after the first; default 4 */
	/* s3_put_fd: files larger are multipart uploads of parts this
	 * size. 0: S3_PART_DEFAULT; below S3_PART_MIN, s3_new refuses. */
	unsigned part_size;
	/* Messages for the daemon log (retries, final failures). */
	void (*log)(void *ctx, int level, const char *msg);
	void *log_ctx;
};

/*
 * Fills c from url ("s3://BUCKET[/PREFIX]") and the usual sources, in
 * this order: endpoint (the -o endpoint= value, may be NULL), then
 * AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS's own
 * https://s3.REGION.amazonaws.com (virtual-hosted style); keys from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else from
 * the profile (AWS_PROFILE or "default") of AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials; region from AWS_REGION, AWS_DEFAULT_REGION, the
 * profile in ~/.aws/config, else us-east-1. Returns 0, or -EINVAL with a
 * message saying what is missing and how to give it.
 */
int s3_conf_load(struct s3_conf *c, const char *url, const char *endpoint,
		 char *err, size_t errlen);

/* Nonzero if path names a remote store ("s3://..."). */
int s3_is_url(const char *path);

#define S3_PART_DEFAULT (32u << 20)
#define S3_PART_MIN (5u << 20)	/* S3's, for every part but the last */

/* Copies conf. Returns 0 or -errno (-EINVAL: a part_size below
 * S3_PART_MIN) with a message. */
int s3_new(struct s3 **out, const struct s3_conf *conf, char *err,
	   size_t errlen);
void s3_free(struct s3 *s);
const struct s3_conf *s3_conf(const struct s3 *s);

struct s3_obj {
	uint64_t size;
	char etag[128];		/* as the server sent it, quotes included */
	int64_t mtime;		/* Last-Modified, seconds since the epoch */
	/*
	 * The answer's Date header (0 if absent): the server's clock when
	 * it answered, seconds since the epoch. A lease compares an
	 * object's Last-Modified with this, never with the client's clock
	 * (and allows a second: Swift rounds Last-Modified up, the Date
	 * down, so a fresh object's can be one second after the Date).
	 * Filled by s3_head, s3_get, s3_put_cond, s3_put_fd and s3_copy;
	 * 0 from listings.
	 */
	int64_t date;
};

/*
 * Errors of every call: -ENOENT (404), -EACCES (403; err says whether the
 * signature or the key was refused), -ESTALE (412: the object changed
 * since its ETag was taken), -EIO/-ETIMEDOUT (retries spent), -ENOMEM.
 * err may be NULL; when given it gets one message naming the object.
 */
int s3_head(struct s3 *s, const char *key, struct s3_obj *o, char *err,
	    size_t errlen);

/*
 * GETs the whole object into a malloc'd buffer (*buf, *len; the caller
 * frees it), refusing objects over max bytes (-EFBIG). o, if not NULL,
 * gets its size, ETag, Last-Modified and the answer's Date.
 */
int s3_get(struct s3 *s, const char *key, size_t max, void **buf,
	   size_t *len, struct s3_obj *o, char *err, size_t errlen);

struct s3_range {
	uint64_t off;
	size_t len;
	void *buf;		/* borrowed: len bytes */
	int rc;			/* out: 0 or -errno */
};

/*
 * Fetches n ranges of key at once (one multi handle, each a ranged GET
 * with If-Match: etag when etag is not NULL). Each range must lie inside
 * the object; a response of another length is an error. Returns 0 if all
 * succeeded, else the first range's error (each r[i].rc says which).
 */
int s3_get_ranges(struct s3 *s, const char *key, const char *etag,
		  struct s3_range *r, size_t n, char *err, size_t errlen);

/* PUTs len bytes from buf as key (one request; objects up to 5 GiB). */
int s3_put(struct s3 *s, const char *key, const void *buf, size_t len,
	   char *err, size_t errlen);

/* DELETEs key; a missing key is not an error (0). */
int s3_delete(struct s3 *s, const char *key, char *err, size_t errlen);

/*
 * Conditions on a PUT (s3_put_cond). A server that answers 412 to one
 * gives -ESTALE (if_match) or -EEXIST (if_none_match); one that answers
 * 501 NotImplemented (Swift's s3api) gives -EOPNOTSUPP. A server that
 * ignores these headers gives 0: callers must not rely on them alone
 * (see s3_cond_support). After a retry (the first try's answer lost),
 * -EEXIST or -ESTALE may be our own first try's success: compare ETags.
 */
struct s3_cond {
	const char *if_match;	/* ETag (quotes included) or NULL */
	int if_none_match;	/* nonzero: only if no object exists
				 * ("If-None-Match: *") */
};

/*
 * PUTs len bytes from buf as key under cond (may be NULL; both
 * conditions at once: -EINVAL); out (may be NULL) gets the new object's
 * ETag (from the answer), size (len), Last-Modified if the answer has
 * one (AWS's has not: 0) and the answer's Date.
 */
int s3_put_cond(struct s3 *s, const char *key, const void *buf, size_t len,
		const struct s3_cond *cond, struct s3_obj *out, char *err,
		size_t errlen);

/*
 * What the server does with s3_cond, found out by trying on key (a
 * scratch key of the caller's: written, written again under each
 * condition, then deleted). Returns the mask of the conditions it
 * enforces (refused with 412 where they fail), 0 if it ignores both or
 * does not implement them, or -errno if the probe itself failed; err
 * then says which, else what was found.
 */
#define S3_COND_IF_NONE_MATCH 1
#define S3_COND_IF_MATCH 2
int s3_cond_support(struct s3 *s, const char *key, char *err,
		    size_t errlen);

/*
 * Uploads size bytes of the local file fd (read with pread from offset
 * 0; fd stays the caller's) as key: one streaming PUT up to
 * conf.part_size, else a multipart upload (CreateMultipartUpload,
 * UploadPart of part_size bytes with up to 4 parts in flight on one
 * multi handle, each retried like any request, CompleteMultipartUpload;
 * on failure AbortMultipartUpload, so that no parts are left -- the
 * message says so, or that the abort failed too and which UploadId
 * remains). Nothing is ever read into memory whole. A file that cannot
 * be read, or ends before size, stops the upload: its -errno, or -EIO.
 * More than 10000 parts: -EFBIG. out (may be NULL) gets the final ETag
 * ("MD5-N" for a multipart object on AWS and Swift), size, the answer's
 * Date, and Last-Modified if the answer has one (else 0).
 */
int s3_put_fd(struct s3 *s, const char *key, int fd, uint64_t size,
	      struct s3_obj *out, char *err, size_t errlen);

/*
 * Server-side copy of from to to (x-amz-copy-source, within the bucket
 * and prefix; keys relative as everywhere): no byte goes through us.
 * Objects up to 5 GiB (S3's limit for one CopyObject). A 200 whose body
 * is an <Error> is a failure, retried. out (may be NULL) gets the new
 * ETag and the answer's Date (Last-Modified if the answer has it as a
 * header; size 0: the answer does not say it). Errors name both keys; a
 * missing from is -ENOENT.
 */
int s3_copy(struct s3 *s, const char *from, const char *to,
	    struct s3_obj *out, char *err, size_t errlen);

/*
 * Lists the keys under prefix (relative, like every key here), calling
 * cb(arg, key, obj) for each in order (obj: size, ETag, Last-Modified);
 * a nonzero return from cb stops the listing and is returned.
 */
int s3_list(struct s3 *s, const char *prefix,
	    int (*cb)(void *arg, const char *key, const struct s3_obj *o),
	    void *arg, char *err, size_t errlen);

/*
 * Parses one ListObjectsV2 response body (len bytes, need not be
 * terminated): cb for each <Contents> (key with the first skip bytes --
 * the store's prefix -- cut off; entries whose key does not parse whole
 * are left out), and token gets NextContinuationToken if the listing is
 * truncated, else "". Untrusted input: fuzzed by
 * tests/fuzz/fuzz_s3list.c. Returns 0, cb's nonzero return, or -EPROTO
 * for a truncated listing without a token that fits in tokcap.
 */
int s3_parse_list(const char *body, size_t len, size_t skip,
		  int (*cb)(void *arg, const char *key, const struct s3_obj *o),
		  void *arg, char *token, size_t tokcap);

/*
 * The text of the first element named tag ("<tag>", "<tag attr...>"; an
 * empty "<tag/>" is "") in the XML answer body (len bytes, need not be
 * terminated), with the entities XML defines unescaped (&quot; &amp;
 * &lt; &gt; &apos; &#N; &#xH;), into out (cap bytes, terminated).
 * Returns 0, -ENOENT (no such element, or it is not closed), -EILSEQ (an
 * entity we cannot read), -EOVERFLOW (longer than cap - 1), -EINVAL (no
 * tag, cap 0); out is "" on every error. Untrusted input: fuzzed by
 * tests/fuzz/fuzz_s3xml.c.
 */
int s3_parse_tag(const char *body, size_t len, const char *tag, char *out,
		 size_t cap);

/*
 * An HTTP date in IMF-fixdate form ("Thu, 03 Dec 2026 15:01:58 GMT",
 * RFC 9110; the form servers must send; spaces, tabs and CR/LF around it
 * are skipped) as seconds since the epoch in *t. Returns 0, or -EINVAL
 * for anything else (the obsolete RFC 850 and asctime forms included),
 * dates that do not exist (31 Apr, 29 Feb 2027) and years before 1970.
 * len bytes of s, need not be terminated.
 */
int s3_parse_date(const char *s, size_t len, int64_t *t);

/* Counters since s3_new (for the stats xattr and the bench). */
struct s3_stats {
	uint64_t requests, retries, failures, bytes_in, bytes_out;
};
void s3_get_stats(struct s3 *s, struct s3_stats *st);

#endif
