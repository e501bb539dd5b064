/* SPDX-License-Identifier: MIT */
/*
 * snapctl: manage a snapfs store without FUSE, on the same core as the
 * mount (fs/store, fs/chain, fs/writer): list, read, add, remove, rename,
 * describe, check, import, export, prune, stats, compact.
 *
 * Every change goes through the core's own calls (writer_publish,
 * chain_remove, chain_rename, chain_set_desc, chain_set_current), so a
 * change made here is exactly the change the mount makes for the
 * corresponding file operation, with the same crash safety. A store that
 * is mounted is opened read-only (store_open_ro: no lock taken, nothing of
 * the mount's touched); add, rm, mv, describe and prune then make their
 * changes as file operations on the mount (fs/snapctl_mnt.c), because two
 * processes changing one store would each work from a tree the other just
 * replaced. init, import and compact, which have no file operation, are
 * refused there (exit 3).
 *
 * Not here: anything about the formats (the core's business). One process,
 * one command; the only state is the struct ctl of main().
 *
 * This file is the command line (options, dispatch, usage, exit codes)
 * and opening the store; the commands are in fs/snapctl_cmd.c (over the
 * tree) and fs/snapctl_io.c (snapshot bytes in and out), sharing
 * fs/snapctl_int.h. Not here: the commands themselves.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/chain.h"
#include "fs/snapctl_int.h"
#include "fs/store.h"

#ifndef SNAPFS_VERSION
#define SNAPFS_VERSION "0.1"
#endif

/* --- messages --- */

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("snapctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void log_cb(void *ctx, int level, const char *msg)
{
	struct ctl *x = ctx;

	if (level == CHAIN_LOG_ERR)
		x->errors++;
	if (level <= CHAIN_LOG_WARN)
		fprintf(stderr, "snapctl: %s\n", msg);
}

/* --- opening --- */

/*
 * Opens the store and its chain. A reader (rw == 0) opens read-only, so
 * it works beside a mount; if an interrupted change is pending, it takes
 * the lock to finish it like any open would. A writer takes the lock and
 * is refused with EX_BUSY while the store is mounted. Returns EX_*.
 */
static int ctl_open(struct ctl *x, int rw)
{
	struct chain_opts co = { 0 };
	char err[1024] = "";
	int rc;

	if (!x->store_dir) {
		die_msg("no store: give -s STORE or set SNAPFS_STORE");
		return EX_USAGE;
	}
	rc = rw ? -EBUSY : store_open_ro(&x->s, x->store_dir, err, sizeof(err));
	if (rc == -EBUSY) {
		err[0] = 0;
		rc = store_open(&x->s, x->store_dir, err, sizeof(err));
	}
	if (rc == -EBUSY) {
		die_msg("%s", err);
		if (rw)
			die_msg("the store is locked by a mount snapctl cannot "
				"reach (another user's, or one that does not "
				"answer): make the change in that mount (cp FILE "
				"M/NAME, rm M/NAME, mv M/A M/B, setfattr -n "
				"user.description -v TEXT M/NAME, ln -sfn NAME "
				"M/current), or unmount it; compact and import "
				"need it unmounted");
		return EX_BUSY;
	}
	if (rc) {
		die_msg("%s", err);
		return EX_OTHER;
	}
	store_set_max(x->s, x->max_store);
	co.log = log_cb;
	co.ctx = x;
	co.prefetch_threads = 0;
	co.decoded_keep_only = 1;
	rc = chain_open(&x->c, x->s, &co, err, sizeof(err));
	if (rc) {
		die_msg("%s", err);
		return rc == -EIO ? EX_DAMAGE : EX_OTHER;
	}
	return EX_OK;
}

static void ctl_close(struct ctl *x)
{
	chain_free(x->c);
	store_free(x->s);
	x->c = NULL;
	x->s = NULL;
}

int lookup(struct ctl *x, const char *name, uint32_t *id)
{
	*id = chain_lookup(x->c, name);
	if (!*id) {
		die_msg("%s: no snapshot '%s' in %s", name, name, x->store_dir);
		return EX_USAGE;
	}
	return EX_OK;
}

/* --- sizes, times --- */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	case 't': case 'T': v <<= 40; end++; break;
	default: break;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "90s", "30m", "12h", "7d", "2w" (a bare number: seconds). */
static int parse_age(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -EINVAL;
	switch (*end) {
	case 0: case 's': break;
	case 'm': v *= 60; break;
	case 'h': v *= 3600; break;
	case 'd': v *= 86400; break;
	case 'w': v *= 7 * 86400; break;
	default: return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	*out = v;
	return 0;
}

/* --- command line --- */

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	int rw;		/* changes the store */
	int routed;	/* ...and can, through the mount, while mounted */
};

static const struct cmd cmds[] = {
	{ "init", "DIR", "make DIR a new, empty store", 1, 0 },
	{ "ls", "[--tsv]", "list snapshots: full size, stored size, ratio, "
	  "creation time (UTC), parent, description; * marks current", 0, 0 },
	{ "tree", "", "the same, indented under each parent", 0, 0 },
	{ "cat", "NAME", "write snapshot NAME to stdout", 0, 0 },
	{ "add", "NAME FILE [--parent P]", "add FILE (raw or zstd; - for "
	  "stdin) as NAME, a child of P (default: current); NAME becomes "
	  "current", 1, 1 },
	{ "rm", "NAME", "remove NAME; its children are rebased onto its "
	  "parent", 1, 1 },
	{ "mv", "A B", "rename snapshot A to B", 1, 1 },
	{ "describe", "NAME TEXT", "set NAME's description", 1, 1 },
	{ "check", "[--deep]", "read every snapshot, verifying every "
	  "window's adler32 and the stored blocks' checksums; --deep also "
	  "re-reads every stored file whole. Exit 1 on damage", 0, 0 },
	{ "import", "FILE... | --layers LAYERSFILE", "make an empty store "
	  "from full state files (raw or zstd), oldest first; each is a child "
	  "of the one before. LAYERSFILE: increments.txt order (newest "
	  "first)", 1, 0 },
	{ "export", "NAME... DIR [--sparse] | --plain NAME DIR", "write full "
	  "state files DIR/NAME (--sparse: zero blocks left as holes); "
	  "--plain: the base and patches of NAME's line plus increments.txt, "
	  "a store for snapfs-decode", 0, 0 },
	{ "prune", "--keep N | --older-than AGE [--dry-run]", "remove the "
	  "oldest snapshots beyond the newest N, or older than AGE (30d, "
	  "12h, 2w), with rebase; never the current one", 1, 1 },
	{ "stats", "", "totals, depth, cache counters", 0, 0 },
	{ "compact", "[NAME...] [--dry-run]", "store snapshots (default: "
	  "all) again in snapfs's own form, which needs no copy under "
	  ".snapfs/ to be read: a single-frame zstd or raw base as seekable "
	  "zstd, a patch with one lzma stream (stock -S lzma, djw, fgk) "
	  "re-encoded against its parent with windowed lzma, a patch without "
	  "secondary compression too if that is smaller. Stock zstd and "
	  "xdelta3 still decode every file", 1, 0 },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: snapctl [-s STORE] COMMAND [ARGS]\n\n"
		"STORE defaults to $SNAPFS_STORE. Commands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].args);
	fprintf(f, "\nChanging commands take --max-store SIZE (like "
		"-o max_store): a write or rebase that would pass it fails "
		"with ENOSPC, nothing lost.\n");
	fprintf(f, "\nsnapctl COMMAND --help says more. Exit codes: 0 ok, 1 "
		"damage found, 2 usage, 3 store busy (mounted, and the "
		"change cannot be made through the mount), 4 other "
		"error.\n");
}

static void cmd_usage(FILE *f, const struct cmd *c)
{
	fprintf(f, "usage: snapctl [-s STORE] %s %s\n  %s\n%s", c->name,
		c->args, c->help, c->routed ? "  On a mounted store, made "
		"through the mount (its max_store applies).\n" :
		c->rw && strcmp(c->name, "init") ? "  Changes the store: "
		"refused (exit 3) while it is mounted.\n" : "");
}

int main(int argc, char **argv)
{
	struct ctl x = { 0 };
	const struct cmd *c = NULL;
	int i = 1, rc;

	x.store_dir = getenv("SNAPFS_STORE");
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			x.store_dir = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "--max-store") && i + 1 < argc) {
			if (parse_size(argv[i + 1], &x.max_store) ||
			    !x.max_store) {
				die_msg("--max-store %s: give a size like 500M "
					"or 20G", argv[i + 1]);
				return EX_USAGE;
			}
			i += 2;
		} else if (!strcmp(argv[i], "-h") ||
			   !strcmp(argv[i], "--help")) {
			usage(stdout);
			return EX_OK;
		} else if (!strcmp(argv[i], "--version")) {
			printf("snapctl %s\n", SNAPFS_VERSION);
			return EX_OK;
		} else {
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EX_USAGE;
	}
	for (size_t k = 0; k < NCMDS; k++)
		if (!strcmp(cmds[k].name, argv[i]))
			c = &cmds[k];
	if (!c) {
		die_msg("unknown command '%s'", argv[i]);
		usage(stderr);
		return EX_USAGE;
	}
	/* Options anywhere after the command; the rest are operands. */
	char **ops = calloc((size_t)argc, sizeof(*ops));
	size_t nops = 0;
	const char *parent = NULL, *layers = NULL;
	int deep = 0, sparse = 0, plain = 0, tsv = 0, dry = 0;
	long keep = -1;
	int64_t age = -1;

	if (!ops)
		return EX_OTHER;
	for (int k = i + 1; k < argc; k++) {
		const char *a = argv[k];
		int more = k + 1 < argc;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			cmd_usage(stdout, c);
			free(ops);
			return EX_OK;
		} else if (!strcmp(a, "--max-store") && more) {
			if (parse_size(argv[++k], &x.max_store) ||
			    !x.max_store)
				goto bad;
		} else if (!strcmp(a, "--parent") && more) {
			parent = argv[++k];
		} else if (!strcmp(a, "--layers") && more) {
			layers = argv[++k];
		} else if (!strcmp(a, "--keep") && more) {
			char *end;
			keep = strtol(argv[++k], &end, 10);
			if (*end || keep < 0)
				goto bad;
		} else if (!strcmp(a, "--older-than") && more) {
			if (parse_age(argv[++k], &age))
				goto bad;
		} else if (!strcmp(a, "--deep")) {
			deep = 1;
		} else if (!strcmp(a, "--sparse")) {
			sparse = 1;
		} else if (!strcmp(a, "--plain")) {
			plain = 1;
		} else if (!strcmp(a, "--tsv")) {
			tsv = 1;
		} else if (!strcmp(a, "--dry-run")) {
			dry = 1;
		} else if (!strcmp(a, "--")) {
			while (++k < argc)
				ops[nops++] = argv[k];
		} else if (a[0] == '-' && a[1]) {
			goto bad;
		} else {
			ops[nops++] = argv[k];
		}
	}
#define NEED(lo, hi) do { if (nops < (lo) || nops > (hi)) goto bad; } while (0)
	const char *name = c->name;
	if (!strcmp(name, "init")) {
		NEED(1, 1);
		rc = cmd_init(ops[0]);
		free(ops);
		return rc;
	}
	if (!strcmp(name, "ls") || !strcmp(name, "tree") ||
	    !strcmp(name, "check") || !strcmp(name, "stats")) {
		if (nops)
			goto bad;
	}
	else if (!strcmp(name, "cat") || !strcmp(name, "rm"))
		NEED(1, 1);
	else if (!strcmp(name, "add") || !strcmp(name, "mv") ||
		 !strcmp(name, "describe"))
		NEED(2, 2);
	else if (!strcmp(name, "import") && !(layers ? nops == 0 : nops > 0))
		goto bad;
	else if (!strcmp(name, "export"))
		NEED(2, (size_t)argc);
	else if (!strcmp(name, "prune") && (keep < 0) == (age < 0))
		goto bad;
	else if (dry && strcmp(name, "prune") && strcmp(name, "compact"))
		goto bad;

	/* import makes a new store: the directory may not exist yet. */
	if (!strcmp(name, "import") && x.store_dir &&
	    mkdir(x.store_dir, 0755) < 0 && errno != EEXIST) {
		die_msg("%s: %s", x.store_dir, strerror(errno));
		free(ops);
		return EX_OTHER;
	}
	/* Mounted: the mount makes the change (fs/snapctl_mnt.c). */
	int rw = c->rw;
	if (c->routed && mnt_find(&x)) {
		fprintf(stderr, "snapctl: %s is mounted on %s: changing it "
			"through the mount%s\n", x.store_dir, x.mnt,
			x.max_store ? " (its max_store applies, not "
			"--max-store)" : "");
		rw = 0;
	}
	rc = ctl_open(&x, rw);
	if (rc) {
		free(ops);
		return rc;
	}
	if (!strcmp(name, "ls"))
		rc = cmd_ls(&x, tsv);
	else if (!strcmp(name, "tree"))
		rc = cmd_tree(&x);
	else if (!strcmp(name, "stats"))
		rc = cmd_stats(&x);
	else if (!strcmp(name, "cat"))
		rc = cmd_cat(&x, ops[0]);
	else if (!strcmp(name, "add"))
		rc = cmd_add(&x, ops[0], ops[1], parent);
	else if (!strcmp(name, "rm"))
		rc = cmd_rm(&x, ops[0]);
	else if (!strcmp(name, "mv"))
		rc = cmd_mv(&x, ops[0], ops[1]);
	else if (!strcmp(name, "describe"))
		rc = cmd_describe(&x, ops[0], ops[1]);
	else if (!strcmp(name, "check"))
		rc = cmd_check(&x, deep);
	else if (!strcmp(name, "import")) {
		char **files = ops;
		size_t n = nops;
		if (layers && read_layers(layers, &files, &n) < 0) {
			die_msg("%s: %s", layers, strerror(errno));
			rc = EX_USAGE;
		} else {
			rc = n ? cmd_import(&x, files, n) : EX_USAGE;
			if (layers) {
				for (size_t k = 0; k < n; k++)
					free(files[k]);
				free(files);
			}
		}
	} else if (!strcmp(name, "export"))
		rc = cmd_export(&x, ops, nops - 1, ops[nops - 1], sparse, plain);
	else if (!strcmp(name, "compact"))
		rc = cmd_compact(&x, ops, nops, dry);
	else
		rc = cmd_prune(&x, keep, age, dry);
	if (fflush(stdout) != 0 && rc == EX_OK) {
		die_msg("stdout: %s", strerror(errno));
		rc = EX_OTHER;
	}
	ctl_close(&x);
	mnt_close(&x);
	free(ops);
	return rc;
bad:
	cmd_usage(stderr, c);
	free(ops);
	return EX_USAGE;
}
