/* SPDX-License-Identifier: MIT */
/*
 * snapctl_cmd: snapctl's commands over the tree: ls, tree, stats (the
 * listings), rm, mv, describe (changes through the chain's own calls),
 * check, prune, compact, init. Not here: the command line and opening the store
 * (fs/snapctl.c), the commands that move snapshot bytes in or out
 * (fs/snapctl_io.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs/chain.h"
#include "fs/snapctl_int.h"
#include "fs/store.h"
#include "fs/tree.h"

/* --- sizes, times --- */

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

int cmd_ls(struct ctl *x, int machine)
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

int cmd_tree(struct ctl *x)
{
	print_header();
	tree_walk(x, 0, 0);
	return EX_OK;
}

int cmd_stats(struct ctl *x)
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

/* --- rm, mv, describe --- */

int cmd_rm(struct ctl *x, const char *name)
{
	char err[1024] = "";
	uint32_t id;
	int rc = lookup(x, name, &id);
	if (x->mnt[0])
		return mnt_rm(x, name);

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

int cmd_mv(struct ctl *x, const char *from, const char *to)
{
	char err[1024] = "";
	uint32_t id;
	int rc = lookup(x, from, &id);
	if (x->mnt[0])
		return mnt_mv(x, from, to);

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

int cmd_describe(struct ctl *x, const char *name, const char *text)
{
	char err[1024] = "";
	uint32_t id;
	int rc = lookup(x, name, &id);
	if (x->mnt[0])
		return mnt_describe(x, name, text);

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
int cmd_check(struct ctl *x, int deep)
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

/* --- prune --- */

/* Removes, oldest first (creation time, then id), every snapshot that
 * keep == 0 would drop: beyond the newest `keep` (if keep >= 0), or
 * older than `age` seconds (if age >= 0). Never the current one. */
int cmd_prune(struct ctl *x, long keep, int64_t age, int dry)
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

/* --- compact --- */

static const char *form_name(int form)
{
	switch (form) {
	case CHAIN_FORM_ZSTD1:
		return "single-frame zstd, read through a seekable copy in "
		       ".snapfs/base";
	case CHAIN_FORM_RAW:
		return "uncompressed";
	case CHAIN_FORM_STREAM:
		return "one secondary-compression stream, read through a "
		       "plain copy in .snapfs/plain";
	case CHAIN_FORM_PLAIN:
		return "no secondary compression";
	default:
		return "snapfs's own form";
	}
}

/* Stores the named snapshots (none: all) again in snapfs's own form,
 * parents first (chain_compact), and says what each took before and
 * after and what the store and its .snapfs/ took. */
int cmd_compact(struct ctl *x, char **names, size_t n, int dry)
{
	const struct tree *t = store_tree(x->s);
	size_t nt = tree_count(t), nv = 0, done = 0, kept = 0;
	struct { unsigned depth; uint32_t id; } *v = calloc(nt ? nt : 1,
							    sizeof(*v));
	uint64_t own0, meta0, own1, meta1;
	struct chain_info inf;
	int rc = EX_OK;

	if (!v)
		return EX_OTHER;
	for (size_t i = 0; i < (n ? n : nt) && nv < nt; i++) {
		uint32_t id = 0;
		if (n && (rc = lookup(x, names[i], &id)))
			goto out;
		if (!n)
			id = tree_at(t, i)->id;
		if (chain_info(x->c, id, &inf) == 0) {
			v[nv].depth = inf.depth;
			v[nv++].id = id;
		}
	}
	/* Parents first: insertion sort, n is small. */
	for (size_t i = 1; i < nv; i++)
		for (size_t j = i; j > 0 && (v[j - 1].depth > v[j].depth ||
		     (v[j - 1].depth == v[j].depth && v[j - 1].id > v[j].id));
		     j--) {
			__typeof__(*v) tmp = v[j];
			v[j] = v[j - 1];
			v[j - 1] = tmp;
		}
	store_bytes(x->s, &own0, &meta0);
	for (size_t i = 0; i < nv && rc == EX_OK; i++) {
		struct chain_compact_res r;
		char err[1024] = "", a[16], b[16];
		int e;

		if (chain_info(x->c, v[i].id, &inf))
			continue;
		if (inf.form == CHAIN_FORM_NATIVE) {
			if (n)
				printf("%s: already in snapfs's own form\n",
				       inf.name);
			continue;
		}
		if (dry) {
			printf("%s: %s: would be stored again\n", inf.name,
			       form_name(inf.form));
			continue;
		}
		if (store_rewrite_room(x->s, v[i].id)) {
			die_msg("%s: storing it again would pass --max-store "
				"(%" PRIu64 " bytes used); nothing changed",
				inf.name, store_used(x->s));
			rc = EX_OTHER;
			break;
		}
		e = chain_compact(x->c, v[i].id, &r, err, sizeof(err));
		human(r.before, a, sizeof(a));
		human(r.after, b, sizeof(b));
		if (e == -EALREADY) {
			printf("%s: %s: kept (%s; stored again: %s)\n",
			       inf.name, form_name(r.form), a, b);
			kept++;
		} else if (e) {
			die_msg("%s", *err ? err : strerror(-e));
			rc = e == -EIO ? EX_DAMAGE : EX_OTHER;
		} else {
			printf("%s: %s -> %s: %s -> %s\n", inf.name,
			       form_name(r.form), inf.kind == CHAIN_KIND_PATCH ?
			       "windowed lzma" : "seekable zstd", a, b);
			done++;
		}
	}
	if (!dry) {
		char o0[16], o1[16], m0[16], m1[16];
		store_bytes(x->s, &own1, &meta1);
		human(own0, o0, sizeof(o0));
		human(own1, o1, sizeof(o1));
		human(meta0, m0, sizeof(m0));
		human(meta1, m1, sizeof(m1));
		printf("%zu stored again, %zu kept; the store's files %s -> %s, "
		       ".snapfs/ %s -> %s (%" PRIu64 " -> %" PRIu64 " bytes)\n",
		       done, kept, o0, o1, m0, m1, meta0, meta1);
	}
out:
	free(v);
	return rc;
}

/* --- init --- */

int cmd_init(const char *dir)
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
