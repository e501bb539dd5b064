/* SPDX-License-Identifier: MIT */
/*
 * fuse_xattr: snapshot metadata as extended attributes (see fuse_xattr.h).
 *
 * Values are plain text without a trailing newline, so `getfattr
 * --only-values` prints them as they are. The digest is computed on the
 * first request when the snapshot was not written through this snapfs
 * (it reads the whole snapshot once), then kept in the tree file.
 */
#include "fs/fuse_xattr.h"
#include "fs/remote.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fs/fuse_ops.h"
#include "fs/log.h"
#include "fs/tree.h"

#define P "user.snapfs."
#define STATS_XATTR P "stats"
#define DAMAGE_XATTR P "damage"
#define DESC_XATTR "user.description"

static void reply(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

/* The value of attribute name of snapshot id into buf. 0, -ENODATA. */
static int value(struct snapfs_mount *m, uint32_t id, const char *name,
		 char *buf, size_t cap)
{
	struct chain_info inf, pinf;

	if (chain_info(m->chain, id, &inf))
		return -ENOENT;
	buf[0] = 0;
	if (!strcmp(name, P "parent")) {
		if (!inf.parent || chain_info(m->chain, inf.parent, &pinf))
			return -ENODATA;
		snprintf(buf, cap, "%s", pinf.name);
	} else if (!strcmp(name, P "depth")) {
		snprintf(buf, cap, "%u", inf.depth);
	} else if (!strcmp(name, P "stored")) {
		snprintf(buf, cap, "%" PRIu64, inf.stored);
	} else if (!strcmp(name, P "created")) {
		if (!inf.created)
			return -ENODATA;
		tree_format_time(inf.created, buf, cap);
	} else if (!strcmp(name, P "kind")) {
		snprintf(buf, cap, "%s", inf.kind == CHAIN_KIND_BASE ? "base" :
			 inf.kind == CHAIN_KIND_FULL ? "full" : "patch");
	} else if (!strcmp(name, P "digest")) {
		/* Serialised with changes: it may record the digest. */
		pthread_mutex_lock(&m->change);
		int rc = chain_digest(m->chain, id, buf, cap);
		pthread_mutex_unlock(&m->change);
		return rc;
	} else if (!strcmp(name, DAMAGE_XATTR)) {
		if (!inf.damaged)
			return -ENODATA;
		snprintf(buf, cap, "%s (log: %s)", inf.damage,
			 log_where(m->log));
	} else if (!strcmp(name, DESC_XATTR)) {
		chain_desc(m->chain, id, buf, cap);
		if (!buf[0])
			return -ENODATA;
	} else {
		return -ENODATA;
	}
	return 0;
}

void fuse_xattr_get(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	char buf[2048];
	int rc;

	if (ino == FUSE_ROOT_ID) {
		if (!strcmp(name, STORE_TOKEN_XATTR) && m->token[0]) {
			reply(req, m->token, strlen(m->token), size);
			return;
		}
		if (strcmp(name, STATS_XATTR)) {
			fuse_reply_err(req, ENODATA);
			return;
		}
		chain_stats(m->chain, buf, sizeof(buf));
		size_t n = strlen(buf);
		if (m->remote) {
			struct remote_stats rs;
			remote_get_stats(m->remote, &rs);
			snprintf(buf + n, sizeof(buf) - n, "remote_requests %"
				 PRIu64 "\nremote_retries %" PRIu64
				 "\nremote_failures %" PRIu64 "\nremote_bytes_in %"
				 PRIu64 "\nremote_bytes_out %" PRIu64
				 "\nremote_fetched %" PRIu64
				 "\nremote_prefetched %" PRIu64
				 "\nremote_uploaded %" PRIu64
				 "\nremote_refreshes %" PRIu64 "\ndisk_cache_used %"
				 PRIu64 "\ndisk_cache_budget %" PRIu64
				 "\ndisk_cache_hits %" PRIu64
				 "\ndisk_cache_misses %" PRIu64 "\n",
				 rs.s3.requests, rs.s3.retries, rs.s3.failures,
				 rs.s3.bytes_in, rs.s3.bytes_out, rs.fetched,
				 rs.prefetched, rs.uploaded, rs.refreshes,
				 rs.cache_used, rs.cache_budget, rs.cache_hits,
				 rs.cache_misses);
			n = strlen(buf);
		}
		snprintf(buf + n, sizeof(buf) - n, "log %s\n",
			 log_where(m->log));
		reply(req, buf, strlen(buf), size);
		return;
	}
	fuse_ops_settle(m);
	rc = ino < CURRENT_INO ? value(m, ID_OF(ino), name, buf, sizeof(buf)) :
	     -ENODATA;
	if (rc == -ENOENT)
		rc = -ENODATA;	/* the file being written, say */
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply(req, buf, strlen(buf), size);
}

void fuse_xattr_list(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char *const names[] = {
		P "parent", P "depth", P "stored", P "created", P "kind",
		P "digest", DAMAGE_XATTR, DESC_XATTR,
	};
	struct snapfs_mount *m = fuse_req_userdata(req);
	struct chain_info inf;
	char buf[512], val[64];
	size_t len = 0;

	if (ino == FUSE_ROOT_ID) {
		reply(req, STATS_XATTR, sizeof(STATS_XATTR), size);
		return;
	}
	fuse_ops_settle(m);
	if (ino >= CURRENT_INO || chain_info(m->chain, ID_OF(ino), &inf)) {
		reply(req, "", 0, size);
		return;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		/* Listed only if present; the digest is listed always (it is
		 * computed when asked for). */
		if ((!strcmp(names[i], P "parent") && !inf.parent) ||
		    (!strcmp(names[i], DAMAGE_XATTR) && !inf.damaged) ||
		    (!strcmp(names[i], DESC_XATTR) &&
		     (chain_desc(m->chain, inf.id, val, sizeof(val)) ||
		      !val[0])))
			continue;
		memcpy(buf + len, names[i], strlen(names[i]) + 1);
		len += strlen(names[i]) + 1;
	}
	reply(req, buf, len, size);
}

void fuse_xattr_set(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value_, size_t size, int flags)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	char desc[1024], err[1024] = "";
	int rc;

	(void)flags;
	if (ino == FUSE_ROOT_ID || ino >= CURRENT_INO) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (strcmp(name, DESC_XATTR)) {
		/* user.snapfs.* are facts about the snapshot. */
		fuse_reply_err(req, strncmp(name, P, strlen(P)) ? ENOTSUP :
			       EPERM);
		return;
	}
	if (size >= sizeof(desc) || memchr(value_, 0, size)) {
		fuse_reply_err(req, size >= sizeof(desc) ? E2BIG : EINVAL);
		return;
	}
	memcpy(desc, value_, size);
	desc[size] = 0;
	pthread_mutex_lock(&m->change);
	rc = chain_set_desc(m->chain, ID_OF(ino), desc, err, sizeof(err));
	pthread_mutex_unlock(&m->change);
	if (rc && err[0])
		fuse_log(FUSE_LOG_ERR, "snapfs: %s\n", err);
	fuse_reply_err(req, -rc);
}

void fuse_xattr_remove(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (strcmp(name, DESC_XATTR)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	fuse_xattr_set(req, ino, name, "", 0, 0);
}
