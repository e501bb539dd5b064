/* SPDX-License-Identifier: MIT */
/*
 * s3_int.h: what fs/s3.c (the handle, one request with its retries,
 * reads, listing) and fs/s3put.c (uploads: conditional PUT, streaming
 * and multipart PUT of a file, server-side copy) share. Private to those
 * two files (make layering checks); everyone else goes through s3.h.
 *
 * Not here: the pure parsers of the server's answers (fs/s3parse.c,
 * declared in s3.h so that tests and fuzzers reach them).
 */
#ifndef SNAPFS_FS_S3_INT_H
#define SNAPFS_FS_S3_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "fs/s3.h"

struct s3 {
	struct s3_conf c;
	char sigv4[128];
	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL **pool;
	size_t npool, cappool;
	atomic_uint_fast64_t requests, retries, failures, bytes_in, bytes_out;
};

/* What the precondition of a PUT was (struct req's cond). */
enum { S3I_NOCOND, S3I_IF_MATCH, S3I_IF_NONE_MATCH };

/* One request. Zeroed, then s, key, url, max and the body source set. */
struct req {
	struct s3 *s;
	CURL *e;
	struct curl_slist *hdrs;
	char url[4096];
	const char *key;
	/* body sink: a fixed buffer (ranges) or a growing one */
	char *buf;
	size_t len, cap, max;
	int fixed, overflow;
	/* body source for PUT/POST: uplen bytes of up (borrowed), or, if
	 * upfile, of the file upfd from upoff on (pread; the caller's fd) */
	const char *up;
	int upfile, upfd;
	uint64_t upoff;
	size_t uplen, uppos;
	int rderr;		/* -errno of a failed or short read of upfd */
	int cond;		/* S3I_*COND*: what a 412 or a 501 means */
	/* For answers that can be a 200 with an <Error> body (S3 sends one
	 * when a long request fails late): called on a 2xx, returns 0 or
	 * -EIO with a message, and the try is then retried. */
	int (*check)(struct req *q, char *msg, size_t cap);
	/* response */
	long status;
	struct s3_obj obj;
	char code[64];		/* <Code> of an error body */
	char ebuf[2048];	/* an error body, cut */
	size_t elen;
};

/* A pooled easy handle (NULL: out of memory), and giving it back. */
CURL *s3i_easy_get(struct s3 *s);
void s3i_easy_put(struct s3 *s, CURL *e);

/* Percent-encodes str onto the end of out (keeping '/' if keep_slash):
 * the URI encoding SigV4 signs. 0 or -ENAMETOOLONG. */
int s3i_enc(char *out, size_t cap, const char *str, int keep_slash);

/* The URL of key (relative to the prefix; NULL: the bucket itself), plus
 * query (already in canonical order and encoded) if not NULL. */
int s3i_url(struct s3 *s, char *url, size_t cap, const char *key,
	    const char *query);

/* libcurl's read and seek callbacks of a body (q: their user data). */
size_t s3i_on_upload(char *p, size_t sz, size_t nm, void *q);
int s3i_on_seek(void *q, curl_off_t off, int origin);

/* Sets q->e up for method on q->url; extra is one more header or NULL. */
int s3i_setup(struct req *q, const char *method, const char *extra);

/* Back to the state before a try: frees headers and a growing body. */
void s3i_req_reset(struct req *q);

enum { S3I_DONE, S3I_RETRY };

/* Classifies a finished try: 0 or -errno in *rc, S3I_DONE or S3I_RETRY,
 * the message (naming the object) in err. */
int s3i_judge(struct req *q, CURLcode cc, const char *method, int *rc,
	      char *err, size_t errlen);

/* The pause before try attempt + 1 (milliseconds), and sleeping it. */
unsigned s3i_backoff_ms(unsigned attempt);
void s3i_backoff(unsigned attempt);

void s3i_log(struct s3 *s, int level, const char *msg);

/* Runs q (url, body sink and source set) with retries; 0 or -errno. */
int s3i_run(struct req *q, const char *method, const char *extra,
	    char *err, size_t errlen);

#endif
