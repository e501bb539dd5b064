/* SPDX-License-Identifier: MIT */
/*
 * snapfs: mounts a snapshot store.
 *
 *   snapfs [options] STORE MOUNTPOINT
 *
 * The sequence is libfuse's: parse the command line, then our own options,
 * open the store and its chain (first-mount work happens here, in front,
 * with progress, so errors reach the terminal and the exit status), then
 * session, signal handlers, mount, daemonize, the multithreaded loop, and
 * unwinding through labels. Not here: any FUSE handler (fs/fuse_ops.c) or
 * store logic (fs/chain.c).
 *
 * Messages before the mount is up go to stderr with the exit status; after
 * that to the mount's log (fs/log): stderr in the foreground, else
 * -o log=FILE, syslog, or STORE/.snapfs/log.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "fs/chain.h"
#include "fs/fuse_ops.h"
#include "fs/log.h"
#include "fs/msg.h"
#include "fs/remote.h"
#include "fs/rpoll.h"
#include "fs/safefile.h"
#include "fs/store.h"

#define SNAPFS_VERSION "0.1"

struct opts {
	char *store;
	char *cache_size;
	char *log;
	char *max_store;	/* -o max_store=SIZE: capacity bound */
	char *materialize;	/* -o materialize=SIZE: full copies */
	char *max_decoded;	/* -o max_decoded=SIZE: .sect copies */
	/* A store in a bucket (s3://BUCKET/PREFIX): see fs/remote.h. */
	char *endpoint, *cache_dir, *disk_cache, *s3_chunk, *s3_part, *prefetch;
	unsigned s3_parallel, s3_timeout, s3_retries;
	unsigned lease_ttl, poll;
	int poll_set;
	int writer;
	int prefetch_ws_only;
	int quiet;
	int raw_base;
	int direct_read;
	int allow_other;		/* seen, and passed on to libfuse */
	int default_permissions;	/* seen, and passed on to libfuse */
	int no_default_permissions;
};

struct log_ctx {
	struct log *log;
	int quiet;
	int tty;
	int last_pct;
	char last_layer[256];
};

enum { KEY_ALLOW_OTHER = 1, KEY_DEFAULT_PERMISSIONS };

static const struct fuse_opt opt_spec[] = {
	{ "cache_size=%s", offsetof(struct opts, cache_size), 0 },
	{ "log=%s", offsetof(struct opts, log), 0 },
	{ "max_store=%s", offsetof(struct opts, max_store), 0 },
	{ "materialize=%s", offsetof(struct opts, materialize), 0 },
	{ "max_decoded=%s", offsetof(struct opts, max_decoded), 0 },
	{ "endpoint=%s", offsetof(struct opts, endpoint), 0 },
	{ "cache_dir=%s", offsetof(struct opts, cache_dir), 0 },
	{ "disk_cache=%s", offsetof(struct opts, disk_cache), 0 },
	{ "s3_chunk=%s", offsetof(struct opts, s3_chunk), 0 },
	{ "s3_parallel=%u", offsetof(struct opts, s3_parallel), 0 },
	{ "s3_part=%s", offsetof(struct opts, s3_part), 0 },
	{ "s3_timeout=%u", offsetof(struct opts, s3_timeout), 0 },
	{ "s3_retries=%u", offsetof(struct opts, s3_retries), 0 },
	{ "prefetch=%s", offsetof(struct opts, prefetch), 0 },
	{ "prefetch_ws_only", offsetof(struct opts, prefetch_ws_only), 1 },
	{ "writer", offsetof(struct opts, writer), 1 },
	{ "lease_ttl=%u", offsetof(struct opts, lease_ttl), 0 },
	{ "poll=%u", offsetof(struct opts, poll), 0 },
	{ "poll=", offsetof(struct opts, poll_set), 1 },
	{ "quiet", offsetof(struct opts, quiet), 1 },
	{ "raw_base", offsetof(struct opts, raw_base), 1 },
	{ "direct_read", offsetof(struct opts, direct_read), 1 },
	{ "no_default_permissions",
	  offsetof(struct opts, no_default_permissions), 1 },
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_KEY("default_permissions", KEY_DEFAULT_PERMISSIONS),
	FUSE_OPT_END
};

static void usage(const char *prog)
{
	printf("usage: %s [options] STORE MOUNTPOINT\n\n"
	       "Shows every snapshot of the store (increments.txt: newest "
	       "first, base last)\nas a full-size read-only file, rebuilt "
	       "lazily.\n\n"
	       "snapfs options:\n"
	       "    -o cache_size=SIZE     block cache budget (default 256M; "
	       "K, M, G suffixes)\n"
	       "    -o max_store=SIZE      bound on the store's bytes: a write or "
	       "rm that\n"
	       "                           would pass it fails with ENOSPC; "
	       "df shows it\n"
	       "    -o quiet               no progress messages\n"
	       "    -o raw_base            keep a decompressed copy of a zstd "
	       "base under\n"
	       "                           .snapfs/ (one full state of disk) "
	       "for page-cache-\n"
	       "                           speed reads\n"
	       "    -o direct_read         read snapshots straight to the "
	       "reader, not through\n"
	       "                           the page cache: less CPU for a "
	       "cold read; a second\n"
	       "                           read decodes again, no MAP_SHARED "
	       "mmap\n"
	       "    -o materialize=SIZE    keep a full copy of each snapshot "
	       "read whole (a\n"
	       "                           restore, a cp) under .snapfs/full/, "
	       "read by later\n"
	       "                           mounts at page-cache speed; at most "
	       "SIZE bytes,\n"
	       "                           least recently used deleted first "
	       "(default: none)\n"
	       "    -o max_decoded=SIZE    small derived data: at most SIZE "
	       "bytes of decoded\n"
	       "                           lzma sections under .snapfs/plain/ "
	       "(fast deep\n"
	       "                           reads; without a copy a read "
	       "decodes), aux files\n"
	       "                           compressed; 0: no copies; default: "
	       "no bound\n"
	       "    -o log=FILE            log there once mounted (default when "
	       "daemonized:\n"
	       "                           syslog, or STORE/.snapfs/log without "
	       "/dev/log)\n"
	       "    -o no_default_permissions  with allow_other, let every user "
	       "create\n"
	       "                           snapshots and read all of them "
	       "(allow_other\n"
	       "                           implies default_permissions "
	       "otherwise)\n\n"
	       "A remote store, STORE = s3://BUCKET[/PREFIX] (credentials "
	       "from\nAWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
	       "~/.aws/credentials, AWS_PROFILE,\nAWS_REGION):\n"
	       "    -o writer              take the store's lease and write "
	       "snapshots (one\n"
	       "                           writer per store; without it the "
	       "mount reads only)\n"
	       "    -o s3_part=SIZE        multipart upload part (default 32M, "
	       "at least 5M)\n"
	       "    -o lease_ttl=SECONDS   the lease lapses this long after its "
	       "writer stops\n"
	       "                           renewing it (default 30)\n"
	       "    -o poll=SECONDS        a reading mount looks for the "
	       "writer's changes this\n"
	       "                           often (default 2; 0: never)\n"
	       "    -o endpoint=URL        the server (default "
	       "AWS_ENDPOINT_URL, else AWS)\n"
	       "    -o cache_dir=DIR       local disk cache, kept across "
	       "mounts (default\n"
	       "                           /var/cache/snapfs for root, else "
	       "~/.cache/snapfs)\n"
	       "    -o disk_cache=SIZE     bound on that cache (default 8G)\n"
	       "    -o s3_chunk=SIZE       fetch and cache unit (default 16M)\n"
	       "    -o s3_parallel=N       ranged GETs in flight (default 8)\n"
	       "    -o s3_timeout=SECONDS  a stalled request fails after this "
	       "(default 30)\n"
	       "    -o s3_retries=N        tries after the first (default 4)\n"
	       "    -o prefetch=NAME       fetch the working set of this "
	       "snapshot (what its\n"
	       "                           first restore read) at mount, "
	       "then the rest of its\n"
	       "                           layers; 'current' (default) or "
	       "'none'\n"
	       "    -o prefetch_ws_only    stop after the working set"
	       "\n\n",
	       prog);
}

/* The first non-option is the store; the second is left for libfuse. */
static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct opts *o = data;

	(void)outargs;
	(void)arg;
	if (key == FUSE_OPT_KEY_NONOPT && !o->store) {
		o->store = strdup(arg);
		return 0;
	}
	if (key == KEY_ALLOW_OTHER)
		o->allow_other = 1;
	if (key == KEY_DEFAULT_PERMISSIONS)
		o->default_permissions = 1;
	return 1;	/* kept for libfuse */
}

/* A size with an optional K/M/G suffix, at least min bytes. */
static int parse_size_min(const char *s, size_t *out, unsigned long long min)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end || v < min)
		return -EINVAL;
	*out = (size_t)v;
	return 0;
}

static int parse_size(const char *s, size_t *out)
{
	return parse_size_min(s, out, 1u << 20);
}

/*
 * The kernel gives a FUSE mount the default 128 KiB readahead whatever
 * max_readahead says; readers of snapshots (cat, cp, qemu) are sequential
 * and a larger window keeps more requests, and frame decoders, busy. The
 * device number comes from mountinfo: a stat() of the mountpoint here
 * would wait on our own, not yet running, session. Best effort (root).
 */
static void raise_readahead(const char *mountpoint, unsigned kb)
{
	char line[4096], path[96], real[PATH_MAX];
	unsigned maj, min;
	FILE *f;
	int found = 0;

	if (!realpath(mountpoint, real))
		return;
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return;
	while (!found && fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX];
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) == 3 &&
		    !strcmp(mp, real) && strstr(line, " fuse"))
			found = 1;
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj,
		 min);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "%u\n", kb);
		fclose(f);
	}
}

/*
 * A remote mount fetches the working set of one snapshot ahead of its
 * restore (fs/remote.h): -o prefetch=NAME, 'current' by default.
 */
static void start_prefetch(struct snapfs_mount *m, const struct opts *o)
{
	const char *which = o->prefetch ? o->prefetch : "current";
	uint32_t id;
	int rc;

	if (!strcmp(which, "none"))
		return;
	id = strcmp(which, "current") ? chain_lookup(m->chain, which) :
	     chain_current(m->chain);
	if (!id) {
		log_say(m->log, LOG_WARNING, "-o prefetch=%s: no such "
			"snapshot; nothing prefetched", which);
		return;
	}
	rc = remote_prefetch_start(m->remote, id, !o->prefetch_ws_only);
	if (rc == -ENOENT)
		log_say(m->log, LOG_INFO, "prefetch %s: no working set "
			"recorded yet; its first restore records it", which);
	else if (rc)
		log_say(m->log, LOG_WARNING, "prefetch %s: %s", which,
			strerror(-rc));
}

/*
 * The store in the bucket: a mount that only reads may meet the writer
 * in the middle of a commit (fs/rwrite.c: pending records, or a layers
 * file one step behind the tree) and reads again for up to 10 s.
 */
static int open_remote(struct snapfs_mount *m, char *err, size_t errlen)
{
	int rc = store_open_remote(&m->store, m->remote, err, errlen);

	for (int i = 0; (rc == -EBUSY || rc == -EINVAL) &&
	     !remote_writer(m->remote) && i < 40; i++) {
		struct timespec t = { 0, 250 * 1000 * 1000 };
		nanosleep(&t, NULL);
		rc = remote_refresh(m->remote, err, errlen);
		if (!rc)
			rc = store_open_remote(&m->store, m->remote, err,
					       errlen);
	}
	return rc;
}

static void remote_log_cb(void *ctx, int level, const char *msg)
{
	struct log_ctx *l = ctx;

	log_say(l->log, level, "%s", msg);
}

static void log_cb(void *ctx, int level, const char *msg)
{
	struct log_ctx *l = ctx;

	log_say(l->log, level == CHAIN_LOG_ERR ? LOG_ERR :
		level == CHAIN_LOG_WARN ? LOG_WARNING : LOG_INFO, "%s", msg);
}

/*
 * Every layer is an open file, so deep stores need more than the usual
 * soft limit of 1024: raise it to the hard limit (which only root can
 * raise; the systemd unit sets LimitNOFILE). Best effort.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Writes where the store is mounted into its lock file, with a fresh
 * token the root answers (fs/store.h), so that snapctl can route its
 * changes through this mount. After fuse_daemonize: the pid written is
 * the daemon's. A failure only costs snapctl the route: logged.
 */
static void note_mount(struct snapfs_mount *m, const char *mountpoint)
{
	unsigned char r[16];
	char real[PATH_MAX];
	int rc;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		rc = -errno;
	} else {
		for (size_t i = 0; i < sizeof(r); i++)
			snprintf(m->token + 2 * i, 3, "%02x", r[i]);
		rc = realpath(mountpoint, real) ? store_note_mount(m->store,
			real, m->token) : -errno;
	}
	if (rc)
		log_say(m->log, LOG_WARNING, "%s/%s/lock: cannot note the "
			"mountpoint (%s): snapctl will refuse changes while "
			"this mount is up", store_dir(m->store),
			STORE_META_DIR, strerror(-rc));
}

/*
 * Where the log goes once mounted: -o log=FILE (opened beneath its
 * directory, resolved now, before the daemon leaves the working
 * directory); daemonized, syslog if /dev/log exists, else
 * STORE/.snapfs/log. Returns 0 or -errno with a message.
 */
static int setup_log(struct log *log, const struct opts *o, int foreground,
		     const struct store *s, char *err, size_t errlen)
{
	char dir[PATH_MAX], shown[PATH_MAX + 300];
	const char *why = "", *base;
	int dfd, rc;

	if (o->log) {
		base = strrchr(o->log, '/');
		if (base) {
			snprintf(dir, sizeof(dir), "%.*s",
				 (int)(base - o->log), o->log);
			base++;
		} else {
			snprintf(dir, sizeof(dir), ".");
			base = o->log;
		}
		if (!realpath(*dir ? dir : "/", dir) ||
		    (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			rc = -errno;
			snprintf(err, errlen, "-o log=%s: %s", o->log,
				 strerror(-rc));
			return rc;
		}
		snprintf(shown, sizeof(shown), "%s/%s", strcmp(dir, "/") ? dir :
			 "", base);
	} else if (foreground) {
		return 0;
	} else if (access("/dev/log", F_OK) == 0) {
		log_to_syslog(log);
		return 0;
	} else {
		dfd = safefile_subdir(store_dirfd(s), STORE_META_DIR, 0755, &why);
		if (dfd < 0) {
			snprintf(err, errlen, "%s/%s: %s", store_dir(s),
				 STORE_META_DIR, why);
			return dfd;
		}
		base = "log";
		snprintf(shown, sizeof(shown), "%s/%s/log",
			 realpath(store_dir(s), dir) ? dir : store_dir(s),
			 STORE_META_DIR);
	}
	rc = log_to_file(log, dfd, base, shown, err, errlen);
	close(dfd);
	return rc;
}

static void progress_cb(void *ctx, const char *layer, const char *what,
			uint64_t done, uint64_t total)
{
	struct log_ctx *l = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;
	char esc[1024];

	if (l->quiet)
		return;
	/* Layer names come from the layers file: no raw control bytes to
	 * the terminal. */
	layer = msg_escape(layer, esc, sizeof(esc));
	/* On a terminal, one updating line; elsewhere a line per 25%. */
	if (strcmp(layer, l->last_layer)) {
		snprintf(l->last_layer, sizeof(l->last_layer), "%s", layer);
		l->last_pct = -1;
	}
	if (l->tty) {
		fprintf(stderr, "\rsnapfs: %s: %s %3d%%\033[K", layer, what, pct);
	} else if (pct / 25 != l->last_pct / 25 || l->last_pct < 0) {
		fprintf(stderr, "snapfs: %s: %s %d%%\n", layer, what, pct);
	}
	l->last_pct = pct;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl;
	struct opts o = { 0 };
	struct log_ctx lc = { 0 };
	struct snapfs_mount m = {
		.change = PTHREAD_MUTEX_INITIALIZER,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.changed = PTHREAD_COND_INITIALIZER,
		.buf_lock = PTHREAD_MUTEX_INITIALIZER,
	};
	struct chain_opts co = { 0 };
	struct fuse_session *se;
	struct fuse_loop_config *lcfg = NULL;
	struct rpoll *poller = NULL;
	char err[1024] = "";
	int rc, ret = 1;

	/*
	 * Memory stays at the cache budget plus a bounded working set only if
	 * freed buffers go back to the kernel. glibc's defaults raise the mmap
	 * threshold after each large free and give every thread an arena, so
	 * transient buffers (index building, encoder windows) stayed resident
	 * in up to one arena per thread: 570 MiB after a series of 1 GiB
	 * writes with a 256 MiB cache. Large allocations are mmap'd and
	 * returned; the hot per-request buffers come from a pool instead.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
	mallopt(M_ARENA_MAX, 2);
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) != 0)
		return 1;
	/*
	 * allow_other alone lets every user create snapshots in the store
	 * and read every snapshot whatever its mode: the kernel asks us, and
	 * we never said no. default_permissions makes the kernel check the
	 * modes we show (the store's own), as for any other file system.
	 */
	if (o.allow_other && !o.default_permissions &&
	    !o.no_default_permissions &&
	    fuse_opt_add_arg(&args, "-odefault_permissions") != 0)
		return 1;
	/* A store in a bucket is read-only but for its one writer (-o
	 * writer, fs/rlease.c): the kernel refuses every change with EROFS,
	 * as on any read-only mount. */
	if (s3_is_url(o.store) && !o.writer &&
	    fuse_opt_add_arg(&args, "-oro") != 0)
		return 1;
	raise_nofile();
	if (fuse_parse_cmdline(&args, &cl) != 0)
		return 1;
	if (cl.show_help) {
		usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out1;
	}
	if (cl.show_version) {
		printf("snapfs %s\n", SNAPFS_VERSION);
		fuse_lowlevel_version();
		ret = 0;
		goto out1;
	}
	if (!o.store || !cl.mountpoint) {
		fprintf(stderr, "usage: %s [options] STORE MOUNTPOINT "
			"(--help for options)\n", argv[0]);
		goto out1;
	}
	if (o.cache_size && parse_size(o.cache_size, &co.cache_size) < 0) {
		fprintf(stderr, "snapfs: -o cache_size=%s: give a size of at "
			"least 1M, like 512M or 2G\n", o.cache_size);
		goto out1;
	}
	size_t max_store = 0;
	if (o.max_store && parse_size(o.max_store, &max_store) < 0) {
		fprintf(stderr, "snapfs: -o max_store=%s: give a size of at "
			"least 1M, like 500M or 20G\n", o.max_store);
		goto out1;
	}
	size_t fcopy_max = 0;
	if (o.materialize && parse_size(o.materialize, &fcopy_max) < 0) {
		fprintf(stderr, "snapfs: -o materialize=%s: give a size of at "
			"least 1M, like 2G, room for the full copies of the "
			"snapshots you restore most\n", o.materialize);
		goto out1;
	}
	co.fcopy_max = fcopy_max;
	if (o.max_decoded) {
		size_t v = 0;
		/* 0 is a bound too: no decoded copies at all. */
		if (parse_size_min(o.max_decoded, &v, 0) < 0) {
			fprintf(stderr, "snapfs: -o max_decoded=%s: give a "
				"size, like 500M (0: none)\n",
				o.max_decoded);
			goto out1;
		}
		co.decoded_bounded = 1;
		co.decoded_max = v;
	}
	if (log_new(&m.log) < 0)
		goto out1;
	lc.log = m.log;
	lc.quiet = o.quiet;
	lc.tty = isatty(2);
	co.raw_base = o.raw_base;
	m.direct_read = o.direct_read;
	co.log = log_cb;
	co.progress = progress_cb;
	co.ctx = &lc;

	if (s3_is_url(o.store)) {
		struct remote_opts ro = {
			.endpoint = o.endpoint, .cache_dir = o.cache_dir,
			.parallel = o.s3_parallel, .retries = o.s3_retries,
			.timeout_ms = o.s3_timeout * 1000, .log = remote_log_cb,
			.log_ctx = &lc, .writer = o.writer,
			.lease_ttl = o.lease_ttl,
		};
		size_t v = 0;
		if (o.disk_cache && parse_size(o.disk_cache, &v) < 0) {
			fprintf(stderr, "snapfs: -o disk_cache=%s: give a size "
				"of at least 1M, like 2G\n", o.disk_cache);
			goto out1;
		}
		ro.disk_cache = o.disk_cache ? v : 0;
		if (o.s3_chunk && (parse_size(o.s3_chunk, &v) < 0 ||
				   (v & (v - 1)) || v > (1u << 30))) {
			fprintf(stderr, "snapfs: -o s3_chunk=%s: give a power "
				"of two from 1M to 1G, like 4M\n", o.s3_chunk);
			goto out1;
		}
		ro.chunk = o.s3_chunk ? (uint32_t)v : 0;
		if (o.s3_part && (parse_size(o.s3_part, &v) < 0 ||
				  v < (5u << 20) || v > (1u << 30))) {
			fprintf(stderr, "snapfs: -o s3_part=%s: give a size "
				"from 5M to 1G, like 64M\n", o.s3_part);
			goto out1;
		}
		ro.part_size = o.s3_part ? (unsigned)v : 0;
		rc = remote_open(&m.remote, o.store, &ro, err, sizeof(err));
		if (!rc)
			rc = open_remote(&m, err, sizeof(err));
	} else {
		rc = store_open(&m.store, o.store, err, sizeof(err));
	}
	if (rc) {
		log_say(m.log, LOG_ERR, "%s", err);
		goto out1;
	}
	store_set_max(m.store, max_store);
	rc = chain_open(&m.chain, m.store, &co, err, sizeof(err));
	if (lc.tty && lc.last_layer[0] && !lc.quiet)
		fprintf(stderr, "\n");
	if (rc) {
		log_say(m.log, LOG_ERR, "%s", err);
		goto out2;
	}

	se = fuse_session_new(&args, fuse_ops_table(),
			      sizeof(struct fuse_lowlevel_ops), &m);
	if (!se)
		goto out3;
	if (fuse_set_signal_handlers(se) != 0)
		goto out4;
	if (fuse_session_mount(se, cl.mountpoint) != 0)
		goto out5;
	raise_readahead(cl.mountpoint, 1024);
	if (setup_log(m.log, &o, cl.foreground, m.store, err,
		      sizeof(err)) < 0) {
		log_say(m.log, LOG_ERR, "%s", err);
		goto out6;
	}
	fuse_daemonize(cl.foreground);
	log_say(m.log, LOG_INFO, "%s mounted on %s (%zu snapshots)",
		store_dir(m.store), cl.mountpoint, chain_count(m.chain));
	note_mount(&m, cl.mountpoint);
	if (chain_start(m.chain) < 0)
		log_say(m.log, LOG_WARNING, "cannot start readahead threads: "
			"reading without readahead");
	if (m.remote)
		start_prefetch(&m, &o);
	unsigned poll_secs = o.poll_set ? o.poll : 2;
	if (m.remote && !o.writer && poll_secs &&
	    rpoll_start(&poller, &m, poll_secs) < 0)
		log_say(m.log, LOG_WARNING, "cannot start polling the bucket: "
			"the writer's changes show at the next mount");

	if (cl.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		lcfg = fuse_loop_cfg_create();
		if (!lcfg)
			goto out6;
		fuse_loop_cfg_set_clone_fd(lcfg, cl.clone_fd);
		/* libfuse leaves it at UINT_MAX unless -o max_threads= */
		if (cl.max_threads <= 100000)
			fuse_loop_cfg_set_max_threads(lcfg, cl.max_threads);
		if (cl.max_idle_threads <= 100000)
			fuse_loop_cfg_set_idle_threads(lcfg, cl.max_idle_threads);
		ret = fuse_session_loop_mt(se, lcfg);
	}
	ret = ret ? 1 : 0;
	rpoll_stop(poller);
	poller = NULL;
	/* umount -l, or a killed connection: the kernel never sent the
	 * writer's release, so nothing committed it. Say so, or the loss
	 * goes unnoticed (the writer itself saw its close succeed). */
	if (m.w)
		log_say(m.log, LOG_ERR, "%s: the mount went away (umount -l?) "
			"while this snapshot was being written (%" PRIu64
			" bytes so far); it was not added", writer_name(m.w),
			writer_size(m.w));
	/* Unmounted: a new mount of the store may start right away. The
	 * unfinished snapshot is abandoned, so nothing changes the store
	 * from here on. */
	writer_free(m.w);
	m.w = NULL;
	if (m.remote) {
		remote_prefetch_stop(m.remote);
		remote_ws_save(m.remote);
	}
	chain_stop_writes(m.chain);
	store_unlock(m.store);
out6:
	fuse_loop_cfg_destroy(lcfg);
	fuse_session_unmount(se);
out5:
	fuse_remove_signal_handlers(se);
out4:
	fuse_session_destroy(se);
out3:
	writer_free(m.w);	/* an unfinished snapshot is abandoned */
	fuse_ops_cleanup(&m);
	chain_free(m.chain);
out2:
	store_free(m.store);
out1:
	remote_free(m.remote);
	log_free(m.log);
	free(cl.mountpoint);
	free(o.store);
	free(o.cache_size);
	free(o.log);
	free(o.max_store);
	free(o.endpoint);
	free(o.cache_dir);
	free(o.materialize);
	free(o.max_decoded);
	free(o.disk_cache);
	free(o.s3_chunk);
	free(o.s3_part);
	free(o.prefetch);
	fuse_opt_free_args(&args);
	return ret;
}
