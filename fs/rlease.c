/* SPDX-License-Identifier: MIT */
/*
 * rlease: one writer per store in a bucket, by a lease object,
 * PREFIX/.snapfs/lease:
 *
 *     snapfs-lease 1
 *     holder HOST PID
 *     token 32-HEX-DIGITS
 *     ttl SECONDS
 *
 * A lease is live while the server's clock (the Date of the answer that
 * read it) is before its Last-Modified plus ttl: both times are the
 * server's, so the hosts' clocks and their skew do not matter. The
 * holder renews it every ttl/3 seconds (PUT If-Match its ETag, after a
 * read that finds its own token), and once more just before each commit
 * point (remote_lease_check). A mount that took it (-o writer) and
 * then cannot renew it for ttl seconds of its own monotonic clock
 * counts it lost and refuses commits from then on; so does one that
 * finds another's token.
 *
 * Taking it: read it; a live lease with another token refuses the mount
 * (naming the holder); else PUT with If-None-Match: * (none there) or
 * If-Match: its ETag (expired), then read it back and find our token.
 *
 * Where it stops (also in the README):
 * - A server that ignores conditional PUTs (If-None-Match/If-Match; S3
 *   has them since 2024, Swift's s3api 2.30 ignores If-Match on PUT):
 *   two hosts taking an expired or absent lease in the same instant may
 *   both read their own token back if their PUTs and reads interleave;
 *   the read-back only closes the common case. One writer per store is
 *   then the operator's promise, the lease a guard against mistakes.
 * - A holder stopped longer than ttl (SIGSTOP, a paused VM, a partition)
 *   may have lost it without knowing, until its next renewal or commit
 *   check; the check right before the commit point narrows that to the
 *   PUTs of one commit.
 * - Servers without a Date header: the local clock stands in.
 *
 * Not here: what the writer writes (fs/rwrite.c). Thread-safe: the lease
 * is renewed by its own thread and checked by commits, under one lock.
 */
#include "fs/remote.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs/msg.h"
#include "fs/remote_int.h"
#include "fs/store.h"

#define LEASE_KEY STORE_META_DIR "/lease"

struct lease {
	pthread_mutex_t lock;	/* held across a renewal's requests */
	pthread_cond_t cv;
	pthread_t thread;
	int started, stop, lost;
	int nocond;		/* the server refuses conditional PUTs */
	unsigned ttl;
	char etag[128];		/* of our lease object */
	char text[512];		/* its content */
	char token[40];
	struct timespec renewed;	/* monotonic: start of the last renewal */
};

struct holder {
	char host[256];
	long pid;
	char token[40];
	unsigned ttl;
};

static double mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double ts(const struct timespec *t)
{
	return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

/* Untrusted bytes from the bucket: unknown lines are skipped, a lease
 * with no token is nobody's. */
static void parse(const char *buf, size_t len, struct holder *h)
{
	char line[600];
	size_t i = 0;

	memset(h, 0, sizeof(*h));
	h->ttl = 30;
	while (i < len) {
		size_t n = 0;
		while (i < len && buf[i] != '\n') {
			if (n + 1 < sizeof(line))
				line[n++] = buf[i];
			i++;
		}
		i++;
		line[n] = 0;
		unsigned v;
		if (sscanf(line, "holder %255s %ld", h->host, &h->pid) >= 1)
			continue;
		if (sscanf(line, "token %39s", h->token) == 1)
			continue;
		if (sscanf(line, "ttl %u", &v) == 1 && v > 0 && v < 86400)
			h->ttl = v;
	}
}

/* Reads the lease: 0 (h, o filled), -ENOENT, -errno with m. */
static int read_lease(struct remote *r, struct holder *h, struct s3_obj *o,
		      char *m, size_t mlen)
{
	void *buf;
	size_t len;
	int rc = s3_get(r->s3, LEASE_KEY, 4096, &buf, &len, o, m, mlen);

	if (rc)
		return rc;
	parse(buf, len, h);
	free(buf);
	return 0;
}

/* Seconds the lease o has left by the server's clock (<= 0: expired). */
static double left(const struct s3_obj *o, const struct holder *h)
{
	int64_t now = o->date ? o->date : (int64_t)time(NULL);

	return (double)(o->mtime + (int64_t)h->ttl - now);
}

/* PUTs our lease under c; a server that does not implement conditional
 * PUTs (501: Swift's s3api) gets a plain one from then on, and the
 * read-back is then all there is (see the top). */
static int lease_put(struct remote *r, struct lease *l,
		     const struct s3_cond *c, struct s3_obj *o, char *m,
		     size_t mlen)
{
	int rc = -EOPNOTSUPP;

	if (!l->nocond)
		rc = s3_put_cond(r->s3, LEASE_KEY, l->text, strlen(l->text), c,
				 o, m, mlen);
	if (rc == -EOPNOTSUPP) {
		if (!l->nocond)
			remote_say(r, LOG_INFO, "%s: the server does not do "
				   "conditional PUTs: the lease relies on "
				   "reading back its token", r->url);
		l->nocond = 1;
		rc = s3_put_cond(r->s3, LEASE_KEY, l->text, strlen(l->text),
				 NULL, o, m, mlen);
	}
	return rc;
}

/* One renewal: our token still there, then a conditional PUT. l->lock
 * held. 0, -ESTALE (another holds it), or -errno. */
static int renew(struct remote *r, struct lease *l, char *m, size_t mlen)
{
	double t0 = mono();
	struct holder h;
	struct s3_obj o;
	struct s3_cond c = { .if_match = l->etag };
	int rc = read_lease(r, &h, &o, m, mlen);

	if (rc == -ENOENT || (!rc && strcmp(h.token, l->token))) {
		snprintf(m, mlen, "%.600s: the lease %s was %s", r->url, LEASE_KEY,
			 rc ? "deleted" : "taken by another writer");
		return -ESTALE;
	}
	if (!rc)
		rc = lease_put(r, l, &c, &o, m, mlen);
	if (!rc) {
		snprintf(l->etag, sizeof(l->etag), "%s", o.etag);
		l->renewed.tv_sec = (time_t)t0;
		l->renewed.tv_nsec = (long)((t0 - (double)(time_t)t0) * 1e9);
	}
	return rc;
}

/* After a failed renewal: lost if another has it, or if ours may have
 * expired (no renewal for ttl seconds). l->lock held. */
static void judge(struct remote *r, struct lease *l, int rc, const char *m)
{
	if (rc != -ESTALE && mono() - ts(&l->renewed) < l->ttl) {
		remote_say(r, LOG_WARNING, "%s: cannot renew the lease (%s); "
			   "trying again", r->url, m);
		return;
	}
	if (!l->lost)
		remote_say(r, LOG_ERR, "%s: %s; this mount no longer writes "
			   "the store (unmount it and mount again with -o "
			   "writer once the other writer is gone)", r->url,
			   rc == -ESTALE ? m : "lease expired: the bucket did "
			   "not answer for a whole lease term");
	l->lost = 1;
}

static void *renewer(void *arg)
{
	struct remote *r = arg;
	struct lease *l = r->lease;
	char m[1024];

	pthread_mutex_lock(&l->lock);
	while (!l->stop && !l->lost) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += l->ttl / 3 ? l->ttl / 3 : 1;
		while (!l->stop &&
		       pthread_cond_timedwait(&l->cv, &l->lock, &t) == 0)
			;
		if (l->stop)
			break;
		int rc = renew(r, l, m, sizeof(m));
		if (rc)
			judge(r, l, rc, m);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

static int refuse(struct remote *r, const struct holder *h,
		  const struct s3_obj *o, char *err, size_t errlen)
{
	msg_say(err, errlen, "%s: another writer holds the store's lease "
		"(%s, pid %ld; it expires %.0f s after its holder stops "
		"renewing it): unmount that writer, or mount without -o "
		"writer to read only", r->url, h->host[0] ? h->host : "?",
		h->pid, left(o, h) > 0 ? left(o, h) : 0);
	return -EBUSY;
}

static struct lease *lease_new(struct remote *r)
{
	struct lease *l = calloc(1, sizeof(*l));
	unsigned char rnd[16];
	char host[256] = "?";
	pthread_condattr_t ca;

	if (!l)
		return NULL;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		/* Unique enough for telling holders apart. */
		uint64_t v[2] = { (uint64_t)getpid(), (uint64_t)time(NULL) };
		memcpy(rnd, v, sizeof(rnd));
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(l->token + 2 * i, 3, "%02x", rnd[i]);
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	for (char *p = host; *p; p++)
		if (*p == ' ' || *p == '\n')
			*p = '_';
	l->ttl = r->o.lease_ttl ? r->o.lease_ttl : 30;
	snprintf(l->text, sizeof(l->text), "snapfs-lease 1\nholder %s %ld\n"
		 "token %s\nttl %u\n", host, (long)getpid(), l->token, l->ttl);
	pthread_mutex_init(&l->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	return l;
}

static void lease_free(struct lease *l)
{
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cv);
	free(l);
}

int remote_lease_take(struct remote *r, char *err, size_t errlen)
{
	struct lease *l = lease_new(r);
	char m[1024];
	int rc = -EBUSY;

	if (!l)
		return -ENOMEM;
	for (int attempt = 0; attempt < 3; attempt++) {
		struct holder h;
		struct s3_obj o;
		struct s3_cond c = { 0 };
		double t0 = mono();

		rc = read_lease(r, &h, &o, m, sizeof(m));
		if (rc && rc != -ENOENT)
			break;
		if (!rc && h.token[0] && left(&o, &h) > 0) {
			rc = refuse(r, &h, &o, err, errlen);
			lease_free(l);
			return rc;
		}
		if (rc == -ENOENT)
			c.if_none_match = 1;
		else
			c.if_match = o.etag;
		rc = lease_put(r, l, &c, &o, m, sizeof(m));
		if (rc == -EEXIST || rc == -ESTALE)
			continue;	/* raced: read again, refused then */
		if (rc)
			break;
		/* A server that ignored the condition shows the last PUT. */
		rc = read_lease(r, &h, &o, m, sizeof(m));
		if (!rc && strcmp(h.token, l->token)) {
			rc = refuse(r, &h, &o, err, errlen);
			lease_free(l);
			return rc;
		}
		if (rc)
			break;
		snprintf(l->etag, sizeof(l->etag), "%s", o.etag);
		l->renewed.tv_sec = (time_t)t0;
		r->lease = l;
		if (pthread_create(&l->thread, NULL, renewer, r) == 0)
			l->started = 1;
		else
			remote_say(r, LOG_WARNING, "%s: no thread to renew the "
				   "lease: each commit renews it", r->url);
		remote_say(r, LOG_INFO, "%s: this mount is the store's writer "
			   "(lease %s, ttl %u s)", r->url, LEASE_KEY, l->ttl);
		return 0;
	}
	if (rc == -EACCES)
		msg_say(err, errlen, "%s (-o writer needs keys that may write "
			"the bucket)", m);
	else if (rc)
		msg_say(err, errlen, "%s: cannot take the lease: %s", r->url,
			rc == -EEXIST || rc == -ESTALE ? "another writer took "
			"it meanwhile" : m);
	lease_free(l);
	return rc ? rc : -EBUSY;
}

int remote_writer(const struct remote *r)
{
	return r->lease && !r->lease->lost;
}

int remote_lease_check(struct remote *r, char *err, size_t errlen)
{
	struct lease *l = r->lease;
	char m[1024];
	int rc;

	if (!l) {
		msg_say(err, errlen, "%s: this mount does not write the store "
			"(mount it with -o writer: one writer per store)",
			r->url);
		return -EROFS;
	}
	pthread_mutex_lock(&l->lock);
	rc = l->lost ? -ESTALE : renew(r, l, m, sizeof(m));
	if (rc && !l->lost)
		judge(r, l, rc, m);
	if (rc && l->lost) {
		msg_say(err, errlen, "%s: this mount lost the store's lease "
			"(see the log); nothing was committed: unmount it and "
			"mount again with -o writer", r->url);
		rc = -EROFS;
	} else if (rc) {
		msg_say(err, errlen, "%s: cannot renew the lease: %s; nothing "
			"was committed", r->url, m);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void remote_lease_drop(struct remote *r)
{
	struct lease *l = r->lease;
	struct holder h;
	struct s3_obj o;
	char m[1024];

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->lock);
	if (l->started)
		pthread_join(l->thread, NULL);
	/* Let the next writer in at once, if the lease is still ours. */
	if (read_lease(r, &h, &o, m, sizeof(m)) == 0 &&
	    !strcmp(h.token, l->token))
		(void)s3_delete(r->s3, LEASE_KEY, NULL, 0);
	r->lease = NULL;
	lease_free(l);
}
