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
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <errno.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "fs/chain.h"
#include "fs/fuse_ops.h"
#include "fs/store.h"

#define SNAPFS_VERSION "0.1"

struct opts {
	char *store;
	char *cache_size;
	int quiet;
	int raw_base;
};

struct log_ctx {
	int foreground;
	int quiet;
	int tty;
	int last_pct;
	char last_layer[256];
};

static const struct fuse_opt opt_spec[] = {
	{ "cache_size=%s", offsetof(struct opts, cache_size), 0 },
	{ "quiet", offsetof(struct opts, quiet), 1 },
	{ "raw_base", offsetof(struct opts, raw_base), 1 },
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
	       "    -o quiet               no progress messages\n"
	       "    -o raw_base            keep a decompressed copy of a zstd "
	       "base under\n"
	       "                           .snapfs/ (one full state of disk) "
	       "for page-cache-\n"
	       "                           speed reads\n\n",
	       prog);
}

/* The first non-option is the store; the second is left for libfuse. */
static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct opts *o = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !o->store) {
		o->store = strdup(arg);
		return 0;
	}
	return 1;
}

static int parse_size(const char *s, size_t *out)
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
	if (*end || v < (1u << 20))
		return -EINVAL;
	*out = (size_t)v;
	return 0;
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

static void log_cb(void *ctx, int level, const char *msg)
{
	struct log_ctx *l = ctx;

	if (l->foreground) {
		fprintf(stderr, "snapfs: %s\n", msg);
		return;
	}
	syslog(level == CHAIN_LOG_ERR ? LOG_ERR : level == CHAIN_LOG_WARN ?
	       LOG_WARNING : LOG_INFO, "%s", msg);
}

static void progress_cb(void *ctx, const char *layer, const char *what,
			uint64_t done, uint64_t total)
{
	struct log_ctx *l = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;

	if (l->quiet)
		return;
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
	lc.foreground = 1;	/* until daemonized */
	lc.quiet = o.quiet;
	lc.tty = isatty(2);
	co.raw_base = o.raw_base;
	co.log = log_cb;
	co.progress = progress_cb;
	co.ctx = &lc;

	rc = store_open(&m.store, o.store, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "snapfs: %s\n", err);
		goto out1;
	}
	rc = chain_open(&m.chain, m.store, &co, err, sizeof(err));
	if (lc.tty && lc.last_layer[0] && !lc.quiet)
		fprintf(stderr, "\n");
	if (rc) {
		fprintf(stderr, "snapfs: %s\n", err);
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
	if (!cl.foreground)
		openlog("snapfs", LOG_PID, LOG_DAEMON);
	fuse_daemonize(cl.foreground);
	lc.foreground = cl.foreground;
	if (chain_start(m.chain) < 0)
		log_cb(&lc, CHAIN_LOG_WARN, "cannot start readahead threads: "
		       "reading without readahead");

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
	/* Unmounted: a new mount of the store may start right away. An
	 * unfinished snapshot is abandoned, so nothing changes the store
	 * from here on. */
	if (m.w)
		fprintf(stderr, "snapfs: %s: unmounted while it was being "
			"written: it was not added\n", writer_name(m.w));
	writer_free(m.w);
	m.w = NULL;
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
	free(cl.mountpoint);
	free(o.store);
	free(o.cache_size);
	fuse_opt_free_args(&args);
	return ret;
}
