/* SPDX-License-Identifier: MIT */
/*
 * snapctl_io: snapctl's commands that move snapshot bytes in or out: cat,
 * add (a raw or zstd file through the writer), import (a new store from
 * full state files), export (full state files, or a plain store for the
 * stock scripts). Not here: the command line and opening the store
 * (fs/snapctl.c), the commands over the tree (fs/snapctl_cmd.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "fs/chain.h"
#include "fs/names.h"
#include "fs/snapctl_int.h"
#include "fs/store.h"
#include "fs/tree.h"
#include "fs/writer.h"

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

int cmd_cat(struct ctl *x, const char *name)
{
	uint32_t id;
	int rc = lookup(x, name, &id);

	if (rc)
		return rc;
	chain_start(x->c);
	return copy_out(x, id, 1, 0, name);
}

/* --- adding a snapshot from a file (raw or zstd) --- */

int src_open(struct src *r, const char *path)
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
ssize_t src_read(struct src *r, uint8_t *buf, size_t cap)
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
		if (r->ib.pos == r->ib.size && !r->eof) {
			ssize_t n = read(r->fd, r->in, ZSTD_DStreamInSize());
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			r->eof = n == 0;
			r->ib.src = r->in;
			r->ib.size = (size_t)n;
			r->ib.pos = 0;
		}
		size_t before = ob.pos, in = r->ib.pos;
		size_t z = ZSTD_decompressStream(r->z, &ob, &r->ib);
		if (ZSTD_isError(z))
			return -EINVAL;
		if (ob.pos != before || r->ib.pos != in)
			r->need = z != 0;	/* 0: a frame just ended */
		/* At the end of the input, once nothing more comes out: a
		 * frame cut short is damage, not a shorter state. */
		else if (r->eof) {
			if (r->need)
				return -EINVAL;
			break;
		}
	}
	return (ssize_t)ob.pos;
}

void src_close(struct src *r)
{
	if (r->fd > 0)
		close(r->fd);
	r->fd = -1;
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

int cmd_add(struct ctl *x, const char *name, const char *path,
		   const char *parent)
{
	char err[1024] = "";
	uint32_t id;
	int rc;
	if (x->mnt[0])
		return mnt_add(x, name, path, parent);

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

/* --- import, export --- */

/* A layers file: increments.txt order (newest first, base last),
 * '#' comments and blank lines skipped, paths relative to its directory.
 * Fills *paths oldest first. */
int read_layers(const char *file, char ***paths, size_t *n)
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

int cmd_import(struct ctl *x, char **files, size_t n)
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

int cmd_export(struct ctl *x, char **names, size_t n,
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
