/* SPDX-License-Identifier: MIT */
/*
 * snapctl: manage a snapfs store without FUSE, on the same core as the
 * mount (fs/store, fs/chain, fs/writer): list, read, add, remove, rename,
 * describe, check, import, export, prune, stats.
 *
 * Every change goes through the core's own calls (writer_publish,
 * chain_remove, chain_rename, chain_set_desc, chain_set_current), so a
 * change made here is exactly the change the mount makes for the
 * corresponding file operation, with the same crash safety. A store that
 * is mounted is opened read-only (store_open_ro: no lock taken, nothing of
 * the mount's touched) for the commands that only read; a changing
 * command is refused there (exit 3) with the file operation to use in the
 * mount instead, because two processes changing one store would each
 * work from a tree the other just replaced.
 *
 * Not here: anything about the formats (the core's business). One process,
 * one command; the only state is the struct ctl of main().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "fs/chain.h"
#include "fs/names.h"
#include "fs/store.h"
#include "fs/tree.h"
#include "fs/writer.h"

#ifndef SNAPFS_VERSION
#define SNAPFS_VERSION "0.1"
#endif

/* Exit codes (documented in snapctl.1 and the README). */
enum {
	EX_OK = 0,
	EX_DAMAGE = 1,	/* check found damage, or a read hit it */
	EX_USAGE = 2,
	EX_BUSY = 3,	/* store mounted / locked: change it in the mount */
	EX_OTHER = 4,
};

#define IO_CHUNK ((size_t)1 << 20)

struct ctl {
	const char *store_dir;
	uint64_t max_store;	/* --max-store: capacity bound, 0 none */
	struct store *s;
	struct chain *c;
	unsigned long errors;	/* ERR messages the chain logged */
	int quiet_log;		/* check prints them itself */
};

/* --- messages --- */

static void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die_msg(const char *fmt, ...)
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
			die_msg("the store is mounted: make the change through "
				"the mount (cp FILE M/NAME, rm M/NAME, mv M/A "
				"M/B, setfattr -n user.description -v TEXT "
				"M/NAME, ln -sfn NAME M/current)");
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

static int lookup(struct ctl *x, const char *name, uint32_t *id)
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

static void human(uint64_t v, char *buf, size_t cap)
{
	static const char u[] = "BKMGTP";
	double d = (double)v;
	int i = 0;

	while (d >= 1024 && i < 5) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, cap, "%" PRIu64 "B", v);
	else
		snprintf(buf, cap, "%.1f%c", d, u[i]);
}

static void iso_time(int64_t t, char *buf, size_t cap)
{
	tree_format_time(t, buf, cap);
}

/* --- ls, tree, stats --- */

static void print_row(struct ctl *x, uint32_t id, const char *indent,
		      int machine)
{
	struct chain_info inf, pinf;
	char full[32], stored[32], when[32], desc[1024] = "";
	const char *parent = "-";

	if (chain_info(x->c, id, &inf))
		return;
	if (inf.parent && !chain_info(x->c, inf.parent, &pinf))
		parent = pinf.name;
	chain_desc(x->c, id, desc, sizeof(desc));
	iso_time(inf.created, when, sizeof(when));
	double ratio = inf.stored ? (double)inf.size / (double)inf.stored : 0;
	if (machine) {
		printf("%s\t%" PRIu64 "\t%" PRIu64 "\t%.2f\t%s\t%s\t%s%s\n",
		       inf.name, inf.size, inf.stored, ratio, when, parent,
		       desc, inf.damaged ? "\t(damaged)" : "");
		return;
	}
	human(inf.size, full, sizeof(full));
	human(inf.stored, stored, sizeof(stored));
	printf("%c %s%-*s %9s %9s %7.1fx  %-20s  %-16s %s%s\n",
	       chain_current(x->c) == id ? '*' : ' ', indent,
	       (int)(24 > strlen(indent) ? 24 - strlen(indent) : 1), inf.name,
	       full, stored, ratio, when, parent, desc,
	       inf.damaged ? " (damaged)" : "");
}

static void print_header(void)
{
	printf("  %-24s %9s %9s %8s  %-20s  %-16s %s\n", "NAME", "SIZE",
	       "STORED", "RATIO", "CREATED", "PARENT", "DESCRIPTION");
}

static int cmd_ls(struct ctl *x, int machine)
{
	const struct tree *t = store_tree(x->s);

	if (!machine)
		print_header();
	for (size_t i = 0; i < tree_count(t); i++)
		print_row(x, tree_at(t, i)->id, "", machine);
	return EX_OK;
}

static void tree_walk(struct ctl *x, uint32_t id, unsigned depth)
{
	const struct tree *t = store_tree(x->s);
	char indent[64];
	size_t n = tree_children(t, id, NULL, 0);
	uint32_t *kids = n ? calloc(n, sizeof(*kids)) : NULL;
	unsigned d = depth > 30 ? 30 : depth;

	memset(indent, ' ', 2 * d);
	indent[2 * d] = 0;
	if (id)
		print_row(x, id, indent, 0);
	if (!kids)
		return;
	tree_children(t, id, kids, n);
	for (size_t i = 0; i < n; i++)
		tree_walk(x, kids[i], id ? depth + 1 : 0);
	free(kids);
}

static int cmd_tree(struct ctl *x)
{
	print_header();
	tree_walk(x, 0, 0);
	return EX_OK;
}

static int cmd_stats(struct ctl *x)
{
	const struct tree *t = store_tree(x->s);
	uint64_t full = 0, stored = 0;
	unsigned maxd = 0, damaged = 0;
	char a[32], b[32], buf[4096];

	for (size_t i = 0; i < tree_count(t); i++) {
		struct chain_info inf;
		if (chain_info(x->c, tree_at(t, i)->id, &inf))
			continue;
		full += inf.size;
		stored += inf.stored;
		maxd = inf.depth > maxd ? inf.depth : maxd;
		damaged += inf.damaged != 0;
	}
	human(full, a, sizeof(a));
	human(stored, b, sizeof(b));
	printf("snapshots: %zu\nfull size: %" PRIu64 " (%s)\n"
	       "stored: %" PRIu64 " (%s)\nratio: %.1fx\nmax depth: %u\n"
	       "damaged: %u\n", tree_count(t), full, a, stored, b,
	       stored ? (double)full / (double)stored : 0.0, maxd, damaged);
	if (chain_stats(x->c, buf, sizeof(buf)) == 0)
		printf("%s", buf);
	return EX_OK;
}

/* --- reading a snapshot out --- */

/* Writes all of snapshot id to fd at its offsets; with sparse, blocks of
 * zeros are skipped (left as holes) and the size set at the end. */
static int copy_out(struct ctl *x, uint32_t id, int fd, int sparse,
		    const char *what)
{
	struct chain_layer *L = NULL;
	struct chain_stream *st = NULL;
	uint8_t *buf = malloc(IO_CHUNK);
	static const uint8_t zero[4096];
	uint64_t off = 0, size;
	int rc = chain_get(x->c, id, &L);

	if (!rc)
		rc = chain_check(x->c, L);
	if (!rc)
		rc = chain_stream_new(&st);
	if (!rc && !buf)
		rc = -ENOMEM;
	size = L ? chain_layer_size(L) : 0;
	while (!rc && off < size) {
		size_t want = size - off < IO_CHUNK ? (size_t)(size - off) :
			      IO_CHUNK;
		uint64_t next;
		/* Holes the index knows of are skipped unread; zero blocks
		 * among the data are found by looking at them. */
		if (sparse) {
			int s = chain_seek_data(x->c, L, off, 0, &next);
			if (s == -ENXIO)
				break;
			if (s == 0 && next > off) {
				off = next;
				continue;
			}
			if (s == 0 &&
			    chain_seek_data(x->c, L, off, 1, &next) == 0 &&
			    next > off && next - off < want)
				want = (size_t)(next - off);
		}
		ssize_t r = chain_read(x->c, L, off, buf, want, st);
		if (r <= 0) {
			rc = r < 0 ? (int)r : -EIO;
			break;
		}
		if (!sparse) {
			rc = fdio_write(fd, buf, (size_t)r);
		} else {
			for (size_t k = 0; !rc && k < (size_t)r; k += 4096) {
				size_t bl = (size_t)r - k < 4096 ?
					    (size_t)r - k : 4096;
				if (!memcmp(buf + k, zero, bl))
					continue;
				rc = fdio_pwrite(fd, buf + k, bl, off + k);
			}
		}
		off += (uint64_t)r;
	}
	if (!rc && sparse && ftruncate(fd, (off_t)size) < 0)
		rc = -errno;
	chain_stream_free(st);
	chain_put(x->c, L);
	free(buf);
	if (rc) {
		die_msg("%s: %s", what, rc == -EIO ? "damaged (see above)" :
			strerror(-rc));
		return rc == -EIO ? EX_DAMAGE : EX_OTHER;
	}
	return EX_OK;
}

static int cmd_cat(struct ctl *x, const char *name)
{
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	chain_start(x->c);
	return copy_out(x, id, 1, 0, name);
}

/* --- adding a snapshot from a file (raw or zstd) --- */

struct src {
	int fd;
	ZSTD_DStream *z;	/* NULL: raw */
	uint8_t *in;
	ZSTD_inBuffer ib;
	int eof;
};

static int src_open(struct src *r, const char *path)
{
	uint8_t magic[4];
	ssize_t n;

	memset(r, 0, sizeof(*r));
	r->fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	if (r->fd < 0)
		return -errno;
	/* The user's input file (not a stored layer). */
	n = pread(r->fd, magic, 4, 0);
	/* zstd's frame magic, 0xFD2FB528 little-endian. A pipe cannot be
	 * peeked at: stdin is taken as raw. */
	if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 &&
	    magic[2] == 0x2f && magic[3] == 0xfd) {
		r->z = ZSTD_createDStream();
		r->in = malloc(ZSTD_DStreamInSize());
		if (!r->z || !r->in)
			return -ENOMEM;
		ZSTD_initDStream(r->z);
	}
	return 0;
}

/* Up to cap bytes of the decoded file into buf; 0 at the end. */
static ssize_t src_read(struct src *r, uint8_t *buf, size_t cap)
{
	if (!r->z) {
		size_t got = 0;
		while (got < cap) {
			ssize_t n = read(r->fd, buf + got, cap - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				break;
			got += (size_t)n;
		}
		return (ssize_t)got;
	}
	ZSTD_outBuffer ob = { buf, cap, 0 };
	while (ob.pos < ob.size) {
		if (r->ib.pos == r->ib.size) {
			if (r->eof)
				break;
			ssize_t n = read(r->fd, r->in, ZSTD_DStreamInSize());
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0) {
				r->eof = 1;
				break;
			}
			r->ib.src = r->in;
			r->ib.size = (size_t)n;
			r->ib.pos = 0;
		}
		size_t z = ZSTD_decompressStream(r->z, &ob, &r->ib);
		if (ZSTD_isError(z))
			return -EINVAL;
	}
	return (ssize_t)ob.pos;
}

static void src_close(struct src *r)
{
	if (r->fd > 0)
		close(r->fd);
	ZSTD_freeDStream(r->z);
	free(r->in);
}

/* Adds file path as snapshot name, a child of the current snapshot (or
 * the base of an empty store). */
static int add_file(struct ctl *x, const char *name, const char *path)
{
	struct writer *w = NULL;
	struct src r;
	uint8_t *buf = malloc(IO_CHUNK);
	uint64_t off = 0;
	char err[1024] = "";
	int rc = buf ? src_open(&r, path) : -ENOMEM;

	if (rc) {
		die_msg("%s: %s", path, strerror(-rc));
		free(buf);
		return EX_OTHER;
	}
	rc = writer_new(&w, x->c, x->s, name, err, sizeof(err));
	while (!rc) {
		ssize_t n = src_read(&r, buf, IO_CHUNK);
		if (n < 0) {
			snprintf(err, sizeof(err), "%s: %s", path,
				 n == -EINVAL ? "not a valid zstd file" :
				 strerror((int)-n));
			rc = (int)n;
			break;
		}
		if (n == 0)
			break;
		if (store_room(x->s, (uint64_t)n)) {
			/* Nothing is published: the writer is abandoned. */
			rc = -ENOSPC;
			snprintf(err, sizeof(err), "%s: the store would pass "
				 "--max-store (%" PRIu64 " bytes used); %s was "
				 "not added", x->store_dir, store_used(x->s),
				 name);
			break;
		}
		rc = writer_write(w, off, buf, (size_t)n);
		if (rc)
			snprintf(err, sizeof(err), "%s: %s", name, strerror(-rc));
		off += (uint64_t)n;
	}
	if (!rc && off == 0) {
		snprintf(err, sizeof(err), "%s: empty file: not added", path);
		rc = -EINVAL;
	}
	if (!rc)
		rc = writer_finish(w, err, sizeof(err));
	if (!rc && store_room(x->s, 0)) {	/* the whole patch, in tmp/ */
		rc = -ENOSPC;
		snprintf(err, sizeof(err), "%s: the store would pass --max-store "
			 "(%" PRIu64 " bytes with %s); it was not added",
			 x->store_dir, store_used(x->s), name);
	}
	if (!rc && writer_note(w))
		die_msg("%s", writer_note(w));
	if (!rc)
		rc = writer_publish(w, err, sizeof(err));
	writer_free(w);
	src_close(&r);
	free(buf);
	if (rc) {
		die_msg("%s", *err ? err : strerror(-rc));
		return rc == -EEXIST || rc == -EINVAL ||
		       rc == -ENAMETOOLONG ? EX_USAGE : EX_OTHER;
	}
	return EX_OK;
}

static int cmd_add(struct ctl *x, const char *name, const char *path,
		   const char *parent)
{
	char err[1024] = "";
	uint32_t id;
	int rc;

	if (parent) {
		rc = lookup(x, parent, &id);
		if (rc)
			return rc;
		rc = chain_set_current(x->c, id, err, sizeof(err));
		if (rc) {
			die_msg("%s", *err ? err : strerror(-rc));
			return EX_OTHER;
		}
	}
	return add_file(x, name, path);
}

/* --- rm, mv, describe --- */

static int cmd_rm(struct ctl *x, const char *name)
{
	char err[1024] = "";
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	rc = store_remove_room(x->s, id);
	if (rc) {
		die_msg("%s: removing it rebases its children, which would pass "
			"--max-store (%" PRIu64 " bytes used); nothing changed",
			name, store_used(x->s));
		return EX_OTHER;
	}
	rc = chain_remove(x->c, id, NULL, 0, NULL, err, sizeof(err));
	if (rc) {
		die_msg("%s", *err ? err : strerror(-rc));
		return EX_OTHER;
	}
	return EX_OK;
}

static int cmd_mv(struct ctl *x, const char *from, const char *to)
{
	char err[1024] = "";
	uint32_t id;
	int rc = lookup(x, from, &id);

	if (rc)
		return rc;
	rc = chain_rename(x->c, id, to, err, sizeof(err));
	if (rc) {
		die_msg("%s", *err ? err : rc == -EEXIST ? "the new name is "
			"taken" : strerror(-rc));
		return rc == -EEXIST || rc == -EINVAL ? EX_USAGE : EX_OTHER;
	}
	return EX_OK;
}

static int cmd_describe(struct ctl *x, const char *name, const char *text)
{
	char err[1024] = "";
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	rc = chain_set_desc(x->c, id, text, err, sizeof(err));
	if (rc) {
		die_msg("%s", *err ? err : strerror(-rc));
		return EX_OTHER;
	}
	return EX_OK;
}

/* --- check --- */

/* Reads every snapshot through the chain: each read is checked against
 * the stored blocks' checksums, and the indexes were checked against
 * every window's adler32 when built. --deep re-reads every stored file
 * whole (chain_verify_stored). Damage is logged by the chain, naming the
 * file and offset. */
static int cmd_check(struct ctl *x, int deep)
{
	const struct tree *t = store_tree(x->s);
	uint8_t *buf = malloc(IO_CHUNK);
	unsigned bad = 0;
	char err[1024];

	if (!buf)
		return EX_OTHER;
	chain_start(x->c);
	for (size_t i = 0; i < tree_count(t); i++) {
		uint32_t id = tree_at(t, i)->id;
		struct chain_info inf;
		struct chain_layer *L = NULL;
		struct chain_stream *st = NULL;
		int rc = chain_info(x->c, id, &inf);

		if (rc)
			continue;
		if (inf.damaged) {
			printf("%s: DAMAGED: %s\n", inf.name, inf.damage);
			bad++;
			continue;
		}
		if (deep && chain_verify_stored(x->c, id, err,
						sizeof(err)) != 0) {
			printf("%s: DAMAGED: %s\n", inf.name, err);
			bad++;
			continue;
		}
		rc = chain_get(x->c, id, &L);
		if (!rc)
			rc = chain_stream_new(&st);
		for (uint64_t off = 0; !rc && off < inf.size;) {
			ssize_t r = chain_read(x->c, L, off, buf, IO_CHUNK, st);
			if (r <= 0)
				rc = r < 0 ? (int)r : -EIO;
			else
				off += (uint64_t)r;
		}
		chain_stream_free(st);
		chain_put(x->c, L);
		if (rc) {
			printf("%s: DAMAGED: read failed (%s; see the message "
			       "above for the file and offset)\n", inf.name,
			       strerror(-rc));
			bad++;
		} else {
			printf("%s: ok\n", inf.name);
		}
	}
	free(buf);
	printf("%zu snapshots, %u damaged\n", tree_count(t), bad);
	return bad ? EX_DAMAGE : EX_OK;
}

/* --- import, export --- */

/* A layers file: increments.txt order (newest first, base last),
 * '#' comments and blank lines skipped, paths relative to its directory.
 * Fills *paths oldest first. */
static int read_layers(const char *file, char ***paths, size_t *n)
{
	FILE *f = fopen(file, "r");
	char line[PATH_MAX], *dir = strdup(file), *slash;
	char **v = NULL;
	size_t k = 0;

	if (!f || !dir) {
		int e = errno;
		if (f)
			fclose(f);
		free(dir);
		return -e;
	}
	slash = strrchr(dir, '/');
	if (slash)
		slash[1] = 0;
	else
		dir[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *e;
		while (*p == ' ' || *p == '\t')
			p++;
		e = p + strlen(p);
		while (e > p && (e[-1] == '\n' || e[-1] == '\r' ||
				 e[-1] == ' ' || e[-1] == '\t'))
			*--e = 0;
		if (!*p || *p == '#')
			continue;
		char **nv = realloc(v, (k + 1) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		size_t len = strlen(dir) + strlen(p) + 1;
		v[k] = malloc(len);
		if (!v[k])
			break;
		snprintf(v[k], len, "%s%s", *p == '/' ? "" : dir, p);
		k++;
	}
	fclose(f);
	free(dir);
	for (size_t i = 0; i < k / 2; i++) {	/* oldest first */
		char *tmp = v[i];
		v[i] = v[k - 1 - i];
		v[k - 1 - i] = tmp;
	}
	*paths = v;
	*n = k;
	return 0;
}

/* The shown name for an imported file: its base name without .zst,
 * .zstd or .raw. */
static void import_name(const char *path, char *name, size_t cap)
{
	const char *b = strrchr(path, '/');
	char *dot;

	snprintf(name, cap, "%s", b ? b + 1 : path);
	dot = strrchr(name, '.');
	if (dot && dot != name && (!strcmp(dot, ".zst") ||
	    !strcmp(dot, ".zstd") || !strcmp(dot, ".raw")))
		*dot = 0;
}

static int cmd_import(struct ctl *x, char **files, size_t n)
{
	char name[NAMES_MAX + 16];
	int rc;

	if (chain_count(x->c)) {
		die_msg("%s is not empty: import makes a new store (use add "
			"for one more snapshot)", x->store_dir);
		return EX_USAGE;
	}
	for (size_t i = 0; i < n; i++) {
		import_name(files[i], name, sizeof(name));
		rc = add_file(x, name, files[i]);
		if (rc)
			return rc;
		fprintf(stderr, "snapctl: %s: added as %s\n", files[i], name);
	}
	return EX_OK;
}

/* Copies snapshot id's layer file into dir (same base name), read as
 * the chain reads it: through its blob. */
static int copy_file(struct ctl *x, uint32_t id, const char *dir)
{
	const char *rel = tree_get(store_tree(x->s), id)->file;
	const char *base = strrchr(rel, '/');
	char out[PATH_MAX], err[1024] = "";
	uint8_t *buf = malloc(IO_CHUNK);
	struct blob *in = NULL;
	int fd = -1, rc = buf ? store_open_layer(x->s, id, &in, err,
						 sizeof(err)) : -ENOMEM;

	if (rc) {
		die_msg("%s", err[0] ? err : strerror(-rc));
		goto out;
	}
	snprintf(out, sizeof(out), "%s/%s", dir, base ? base + 1 : rel);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		rc = -errno;
	for (uint64_t off = 0; !rc && off < blob_size(in);) {
		ssize_t r = blob_pread(in, buf, IO_CHUNK, off);
		if (r <= 0) {
			rc = r < 0 ? (int)r : -EIO;
			die_msg("%s/%s: cannot read at offset %" PRIu64 ": %s",
				store_dir(x->s), rel, off, r < 0 ?
				strerror(-rc) : "file shrank");
			goto out;
		}
		rc = fdio_write(fd, buf, (size_t)r);
		off += (uint64_t)r;
	}
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0 && close(fd) < 0 && !rc)
		rc = -errno;
	fd = -1;
	if (rc)
		die_msg("%s: %s", out, strerror(-rc));
out:
	if (fd >= 0)
		close(fd);
	blob_put(in);
	free(buf);
	return rc;
}

/* A plain store for the stock scripts: the files of name's line, base
 * to name, and an increments.txt naming them newest first. */
static int export_plain(struct ctl *x, const char *name, const char *dir)
{
	const struct tree *t = store_tree(x->s);
	uint32_t id, ids[STORE_MAX_LAYERS];
	char path[PATH_MAX];
	int rc = lookup(x, name, &id);
	size_t n;
	FILE *f;

	if (rc)
		return rc;
	n = tree_line(t, id, ids, STORE_MAX_LAYERS);
	if (n > STORE_MAX_LAYERS)
		return EX_OTHER;
	for (size_t i = 0; i < n; i++)
		if (copy_file(x, ids[i], dir))
			return EX_OTHER;
	snprintf(path, sizeof(path), "%s/increments.txt", dir);
	f = fopen(path, "w");
	if (!f) {
		die_msg("%s: %s", path, strerror(errno));
		return EX_OTHER;
	}
	for (size_t i = 0; i < n; i++) {
		const char *file = tree_get(t, ids[i])->file;
		const char *b = strrchr(file, '/');
		fprintf(f, "%s\n", b ? b + 1 : file);
	}
	if (fclose(f) != 0) {
		die_msg("%s: %s", path, strerror(errno));
		return EX_OTHER;
	}
	return EX_OK;
}

static int cmd_export(struct ctl *x, char **names, size_t n,
		      const char *dir, int sparse, int plain)
{
	struct stat st;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		die_msg("%s: not a directory", dir);
		return EX_USAGE;
	}
	if (plain && n != 1) {
		die_msg("export --plain takes one NAME (the newest of the line)");
		return EX_USAGE;
	}
	if (plain)
		return export_plain(x, names[0], dir);
	chain_start(x->c);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		uint32_t id;
		int rc = lookup(x, names[i], &id), fd;

		if (rc)
			return rc;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			die_msg("%s: %s", path, strerror(errno));
			return EX_OTHER;
		}
		rc = copy_out(x, id, fd, sparse, names[i]);
		if (!rc && fsync(fd) < 0) {
			die_msg("%s: %s", path, strerror(errno));
			rc = EX_OTHER;
		}
		close(fd);
		if (rc)
			return rc;
	}
	return EX_OK;
}

/* --- prune --- */

/* Removes, oldest first (creation time, then id), every snapshot that
 * keep == 0 would drop: beyond the newest `keep` (if keep >= 0), or
 * older than `age` seconds (if age >= 0). Never the current one. */
static int cmd_prune(struct ctl *x, long keep, int64_t age, int dry)
{
	const struct tree *t = store_tree(x->s);
	size_t n = tree_count(t), ndel = 0;
	struct { int64_t created; uint32_t id; } *v = calloc(n ? n : 1,
							     sizeof(*v));
	int64_t now = (int64_t)time(NULL);
	uint32_t cur = chain_current(x->c);
	char name[256];
	int rc = EX_OK;

	if (!v)
		return EX_OTHER;
	for (size_t i = 0; i < n; i++) {
		v[i].created = tree_at(t, i)->created;
		v[i].id = tree_at(t, i)->id;
	}
	/* Oldest first: insertion sort, n is small. */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && (v[j - 1].created > v[j].created ||
		     (v[j - 1].created == v[j].created &&
		      v[j - 1].id > v[j].id)); j--) {
			__typeof__(*v) tmp = v[j];
			v[j] = v[j - 1];
			v[j - 1] = tmp;
		}
	size_t left = n;
	for (size_t i = 0; i < n && rc == EX_OK; i++) {
		struct chain_info inf;
		int drop = (keep >= 0 && left > (size_t)keep) ||
			   (age >= 0 && v[i].created < now - age);
		if (!drop || v[i].id == cur ||
		    chain_info(x->c, v[i].id, &inf))
			continue;
		snprintf(name, sizeof(name), "%s", inf.name);
		if (dry) {
			printf("would remove %s\n", name);
		} else {
			rc = cmd_rm(x, name);
			if (!rc)
				printf("removed %s\n", name);
		}
		left--;
		ndel++;
	}
	free(v);
	if (!rc)
		fprintf(stderr, "snapctl: %zu snapshot(s) %sremoved, %zu left\n",
			ndel, dry ? "would be " : "", left);
	return rc;
}

/* --- init --- */

static int cmd_init(const char *dir)
{
	struct store *s = NULL;
	char err[1024] = "";
	int rc;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		die_msg("%s: %s", dir, strerror(errno));
		return EX_OTHER;
	}
	rc = store_open(&s, dir, err, sizeof(err));
	if (rc) {
		die_msg("%s", err);
		return rc == -EBUSY ? EX_BUSY : EX_OTHER;
	}
	store_free(s);
	printf("%s: store ready; mount it with: snapfs %s MOUNTPOINT\n", dir,
	       dir);
	return EX_OK;
}

/* --- command line --- */

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	int rw;		/* changes the store: refused while mounted */
};

static const struct cmd cmds[] = {
	{ "init", "DIR", "make DIR a new, empty store", 1 },
	{ "ls", "[--tsv]", "list snapshots: full size, stored size, ratio, "
	  "creation time (UTC), parent, description; * marks current", 0 },
	{ "tree", "", "the same, indented under each parent", 0 },
	{ "cat", "NAME", "write snapshot NAME to stdout", 0 },
	{ "add", "NAME FILE [--parent P]", "add FILE (raw or zstd; - for "
	  "stdin) as NAME, a child of P (default: current); NAME becomes "
	  "current", 1 },
	{ "rm", "NAME", "remove NAME; its children are rebased onto its "
	  "parent", 1 },
	{ "mv", "A B", "rename snapshot A to B", 1 },
	{ "describe", "NAME TEXT", "set NAME's description", 1 },
	{ "check", "[--deep]", "read every snapshot, verifying every "
	  "window's adler32 and the stored blocks' checksums; --deep also "
	  "re-reads every stored file whole. Exit 1 on damage", 0 },
	{ "import", "FILE... | --layers LAYERSFILE", "make an empty store "
	  "from full state files (raw or zstd), oldest first; each is a child "
	  "of the one before. LAYERSFILE: increments.txt order (newest "
	  "first)", 1 },
	{ "export", "NAME... DIR [--sparse] | --plain NAME DIR", "write full "
	  "state files DIR/NAME (--sparse: zero blocks left as holes); "
	  "--plain: the base and patches of NAME's line plus increments.txt, "
	  "a store for snapfs-decode", 0 },
	{ "prune", "--keep N | --older-than AGE [--dry-run]", "remove the "
	  "oldest snapshots beyond the newest N, or older than AGE (30d, "
	  "12h, 2w), with rebase; never the current one", 1 },
	{ "stats", "", "totals, depth, cache counters", 0 },
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
		"damage found, 2 usage, 3 store busy (mounted: change it "
		"through the mount), 4 other error.\n");
}

static void cmd_usage(FILE *f, const struct cmd *c)
{
	fprintf(f, "usage: snapctl [-s STORE] %s %s\n  %s\n%s", c->name,
		c->args, c->help, c->rw && strcmp(c->name, "init") ?
		"  Changes the store: refused (exit 3) while it is mounted.\n" :
		"");
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

	/* import makes a new store: the directory may not exist yet. */
	if (!strcmp(name, "import") && x.store_dir &&
	    mkdir(x.store_dir, 0755) < 0 && errno != EEXIST) {
		die_msg("%s: %s", x.store_dir, strerror(errno));
		free(ops);
		return EX_OTHER;
	}
	rc = ctl_open(&x, c->rw);
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
	else
		rc = cmd_prune(&x, keep, age, dry);
	if (fflush(stdout) != 0 && rc == EX_OK) {
		die_msg("stdout: %s", strerror(errno));
		rc = EX_OTHER;
	}
	ctl_close(&x);
	free(ops);
	return rc;
bad:
	cmd_usage(stderr, c);
	free(ops);
	return EX_USAGE;
}
