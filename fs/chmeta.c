/* SPDX-License-Identifier: MIT */
/*
 * chmeta: what the chain says and changes about snapshots beyond their
 * bytes: descriptions, current, renames (each one store_commit() of an
 * edited tree, then the version's copy updated under c->lock), digests
 * (computed by reading a snapshot once, then kept in the tree), the
 * deep check of stored files (snapctl check --deep), and holes for
 * SEEK_DATA/SEEK_HOLE (from the index's zero fills). Not here: opening,
 * reading or removing layers (fs/chain.c, fs/rebase.c). Changes are
 * serialised by the caller, like every change of the chain.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/blob.h"
#include "codec/vcdiff_dec.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/xindex.h"

/* --- metadata changes --- */

/* Commits next, an edited clone of the store's tree (taken), unless
 * the edit failed (edit != 0: next is dropped and edit returned), so
 * each change is clone, edit, commit, whatever goes wrong. */
static int commit(struct chain *c, struct tree *next, int edit, char *err,
		  size_t errlen)
{
	char why[1024] = "";
	int rc;

	if (edit) {
		tree_free(next);
		return edit;
	}
	rc = store_commit(c->s, next, why, sizeof(why));

	if (!rc)
		chain_note_tree(c);
	if (rc)
		msg_say(err, errlen, "%s", why);
	else if (why[0])
		chain_logf(c, CHAIN_LOG_WARN, "%s", why);
	return rc;
}

int chain_set_desc(struct chain *c, uint32_t id, const char *desc,
		   char *err, size_t errlen)
{
	struct tree *next;
	struct chain_layer *L;
	int rc;

	if (strlen(desc) >= sizeof(L->desc))
		return -E2BIG;
	rc = tree_clone(store_tree(c->s), &next);
	if (rc)
		return rc;
	rc = commit(c, next, tree_set_desc(next, id, desc), err, errlen);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&c->lock);
	if ((L = chain_find_cur(c, id)))
		snprintf(L->desc, sizeof(L->desc), "%s", desc);
	pthread_rwlock_unlock(&c->lock);
	return 0;
}

int chain_set_current(struct chain *c, uint32_t id, char *err,
		      size_t errlen)
{
	struct tree *next;
	int rc;

	if (tree_current(store_tree(c->s)) == id)
		return 0;
	rc = tree_clone(store_tree(c->s), &next);
	if (rc)
		return rc;
	return commit(c, next, tree_set_current(next, id), err, errlen);
}

/* --- a tree changed elsewhere --- */

struct sync {
	struct chain *c;
	const struct tree *t;
	struct chain_layer **cur;	/* the new table, parents first */
	size_t n;
	char *err;
	size_t errlen;
};

static struct chain_layer *sync_find(struct sync *y, uint32_t id)
{
	for (size_t i = 0; i < y->n; i++)
		if (y->cur[i]->id == id)
			return y->cur[i];
	return NULL;
}

/* Puts node id's version in the new table after its parent's: the
 * current one if its file and parent version are the same, else one
 * opened now. depth bounds a parent loop the tree's checks refused. */
static int sync_one(struct sync *y, const struct tree_node *n, size_t depth)
{
	struct chain_layer *P = NULL, *L;
	int rc;

	if (sync_find(y, n->id))
		return 0;
	if (depth > STORE_MAX_LAYERS)
		return -ELOOP;
	if (n->parent) {
		const struct tree_node *pn = tree_get(y->t, n->parent);
		if (!pn)
			return -ENOENT;
		if ((rc = sync_one(y, pn, depth + 1)))
			return rc;
		P = sync_find(y, n->parent);
	}
	pthread_rwlock_rdlock(&y->c->lock);
	L = chain_find_cur(y->c, n->id);
	if (L && (L->parent != P || strcmp(L->path, n->file)))
		L = NULL;
	if (L)
		atomic_fetch_add(&L->ref, 1);
	pthread_rwlock_unlock(&y->c->lock);
	if (!L && (rc = layer_open_on(y->c, n->id, P, &L, y->err, y->errlen)))
		return rc;
	y->cur[y->n++] = L;
	return 0;
}

int chain_sync(struct chain *c, char *err, size_t errlen)
{
	const struct tree *t = store_tree(c->s);
	size_t count = tree_count(t);
	struct sync y = { c, t, calloc(count ? count : 1, sizeof(*y.cur)), 0,
			  err, errlen };
	int rc = y.cur ? 0 : -ENOMEM;

	for (size_t i = 0; !rc && i < count; i++)
		rc = sync_one(&y, tree_at(t, i), 0);
	if (rc) {
		for (size_t i = 0; i < y.n; i++)
			layer_put(c, y.cur[i]);
		free(y.cur);
		return rc;
	}
	/* The swap; open files keep the versions they hold. */
	pthread_rwlock_wrlock(&c->lock);
	struct chain_layer **old = c->cur;
	size_t nold = c->ncur;
	for (size_t i = 0; i < y.n; i++) {
		struct chain_layer *L = y.cur[i];
		const struct tree_node *n = tree_get(t, L->id);
		snprintf(L->desc, sizeof(L->desc), "%s", n->desc);
		if (n->digest[0])
			snprintf(L->digest, sizeof(L->digest), "%s",
				 n->digest);
		if (n->created)
			L->created = n->created;
	}
	c->cur = y.cur;
	c->ncur = y.n;
	chain_note_tree(c);
	c->capcur = count ? count : 1;
	pthread_rwlock_unlock(&c->lock);
	for (size_t i = 0; i < nold; i++)
		layer_put(c, old[i]);
	free(old);
	return 0;
}

void chain_note_tree(struct chain *c)
{
	atomic_store(&c->current, tree_current(store_tree(c->s)));
}

uint32_t chain_current(struct chain *c)
{
	return atomic_load(&c->current);
}

int chain_rename(struct chain *c, uint32_t id, const char *name, char *err,
		 size_t errlen)
{
	const struct tree_node *n = tree_get(store_tree(c->s), id);
	char file[600], dir[300] = "";
	const char *base, *dot;
	struct tree *next;
	struct stat st;
	int rc;

	if (!n)
		return -ENOENT;
	if (chain_lookup(c, name))
		return -EEXIST;
	/* Same directory, same extension: only the name changes. */
	base = strrchr(n->file, '/');
	if (base)
		snprintf(dir, sizeof(dir), "%.*s", (int)(base - n->file + 1),
			 n->file);
	base = base ? base + 1 : n->file;
	dot = strrchr(base, '.');
	snprintf(file, sizeof(file), "%s%s%s", dir, name,
		 dot && dot != base ? dot : "");
	if (fstatat(store_dirfd(c->s), file, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		msg_say(err, errlen, "%s/%s exists but is not a snapshot: move "
			"it away or pick another name", store_dir(c->s), file);
		return -EEXIST;
	}
	rc = tree_clone(store_tree(c->s), &next);
	if (rc)
		return rc;
	char old[600];
	snprintf(old, sizeof(old), "%s", n->file);
	rc = tree_set_file(next, id, file);
	if (!rc)
		rc = tree_add_pending(next, old, file);
	rc = commit(c, next, rc, err, errlen);
	if (rc)
		return rc;
	/* In a bucket the old key is gone (a copy, then a delete): the
	 * version, and its children's, read the new one from now on. */
	if (store_is_remote(c->s))
		return chain_sync(c, err, errlen);
	pthread_rwlock_wrlock(&c->lock);
	struct chain_layer *L = chain_find_cur(c, id);
	if (L) {
		snprintf(L->name, sizeof(L->name), "%s", name);
		snprintf(L->path, sizeof(L->path), "%.255s", file);
	}
	pthread_rwlock_unlock(&c->lock);
	return 0;
}

void chain_format_digest(const unsigned char canon[16], char *buf,
			 size_t cap)
{
	char hex[33];

	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", canon[i]);
	snprintf(buf, cap, "xxh128:%s", hex);
}

/* The XXH128 of a version's full state, read through the chain. */
static int digest_of(struct chain *c, struct chain_layer *L, char *buf,
		     size_t cap)
{
	XXH3_state_t *h = XXH3_createState();
	struct chain_stream *st = NULL;
	uint8_t *b = malloc(1 << 20);
	int rc = h && b ? chain_stream_new(&st) : -ENOMEM;

	if (!rc)
		XXH3_128bits_reset(h);
	for (uint64_t off = 0; !rc && off < L->size;) {
		ssize_t r = chain_read(c, L, off, b, 1 << 20, st);
		if (r <= 0) {
			rc = r < 0 ? (int)r : -EIO;
			break;
		}
		XXH3_128bits_update(h, b, (size_t)r);
		off += (uint64_t)r;
	}
	if (!rc) {
		XXH128_canonical_t cn;
		XXH128_canonicalFromHash(&cn, XXH3_128bits_digest(h));
		chain_format_digest(cn.digest, buf, cap);
	}
	chain_stream_free(st);
	XXH3_freeState(h);
	free(b);
	return rc;
}

int chain_digest(struct chain *c, uint32_t id, char *buf, size_t cap)
{
	struct chain_layer *L;
	struct tree *next;
	int rc = chain_get(c, id, &L);

	if (rc)
		return rc;
	pthread_rwlock_rdlock(&c->lock);
	snprintf(buf, cap, "%s", L->digest);
	pthread_rwlock_unlock(&c->lock);
	if (buf[0]) {
		chain_put(c, L);
		return 0;
	}
	rc = digest_of(c, L, buf, cap);
	if (!rc) {
		pthread_rwlock_wrlock(&c->lock);
		snprintf(L->digest, sizeof(L->digest), "%s", buf);
		pthread_rwlock_unlock(&c->lock);
		/* Kept in the tree; if that fails it is computed again. */
		if (!tree_clone(store_tree(c->s), &next))
			commit(c, next, tree_set_digest(next, id, buf), NULL,
			       0);
	}
	chain_put(c, L);
	return rc;
}

/* --- verifying stored files (snapctl check --deep) --- */

/* Checks every block of f against the sums taken at index time: a raw
 * file, or the stored bytes of a windowed patch and its decoded copy
 * (reads take its literals from that copy, so they no longer touch the
 * patch's data sections). A zstd file (a base, a compressed aux file) has
 * no block sums here: its frames carry their own checksums, checked on
 * every decode, and reading the snapshot decodes every frame it uses. */
static int verify_sfile(const struct sfile *f, char *err, size_t errlen)
{
	uint8_t *buf;
	int rc = 0;

	if ((f->kind != SF_RAW && f->kind != SF_WINDOWED) || !f->sum || !f->b)
		return 0;
	buf = malloc(SUM_BLOCK);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < f->nsum && !rc; i++) {
		uint64_t off = i * SUM_BLOCK;
		size_t want = (size_t)(f->size - off < SUM_BLOCK ?
				       f->size - off : SUM_BLOCK);
		ssize_t r = blob_pread(f->b, buf, want, off);
		if (r != (ssize_t)want) {
			rc = -EIO;
			msg_say(err, errlen, "%s: cannot read at offset %" PRIu64
				": %s", f->label, off, r < 0 ?
				strerror((int)-r) : "short read");
		} else if (XXH3_64bits(buf, want) != f->sum[i]) {
			rc = -EIO;
			msg_say(err, errlen, "%s: checksum mismatch in the "
				"block at offset %" PRIu64 " (%" PRIu64
				" bytes); %s", f->label, off, (uint64_t)want,
				f->derived ? "it is derived data: delete it "
				"and mount again to rebuild it" :
				"restore the file");
		}
	}
	free(buf);
	if (!rc && f->vcopy)
		rc = verify_sfile(f->vcopy, err, errlen);
	return rc;
}

int chain_verify_stored(struct chain *c, uint32_t id, char *err,
			size_t errlen)
{
	struct chain_layer *L = NULL;
	uint8_t *buf = NULL;
	int rc = chain_get(c, id, &L);

	if (rc)
		return rc;
	rc = verify_sfile(&L->data, err, errlen);
	if (!rc)
		rc = verify_sfile(&L->aux, err, errlen);
	/* The layer file itself, whole: what the store says about it. */
	buf = rc ? NULL : malloc((size_t)1 << 20);
	if (!rc && !buf)
		rc = -ENOMEM;
	for (uint64_t off = 0; !rc && off < blob_size(L->blob);) {
		ssize_t r = blob_pread(L->blob, buf, (size_t)1 << 20, off);
		if (r <= 0) {
			rc = -EIO;
			msg_say(err, errlen, "%s/%s: cannot read at offset %"
				PRIu64 ": %s", store_dir(c->s), L->path, off,
				r < 0 ? strerror((int)-r) : "file shrank");
		}
		off += r > 0 ? (uint64_t)r : 0;
	}
	free(buf);
	chain_put(c, L);
	return rc;
}

/* --- holes (SEEK_DATA / SEEK_HOLE) --- */

int chain_seek_data(struct chain *c, struct chain_layer *L, uint64_t off,
		    int hole, uint64_t *out)
{
	const struct xext *e;
	size_t n, i;

	(void)c;
	if (L->damage[0] || !L->x)
		return -EIO;
	if (off >= L->size)
		return -ENXIO;
	e = xindex_ext(L->x, &n);
	i = xindex_find(L->x, off);
	/* Runs of fill-0 extents are holes as a whole (adjacent ones are one
	 * run): start at the run holding off. A run shorter than
	 * CHAIN_HOLE_MIN is data. e[n] is the sentinel at the size. */
	while (i > 0 && xext_is_fill(&e[i - 1]) && !xext_byte(&e[i - 1]) &&
	       xext_is_fill(&e[i]) && !xext_byte(&e[i]))
		i--;
	while (i < n) {
		size_t j = i;
		while (j < n && xext_is_fill(&e[j]) && !xext_byte(&e[j]))
			j++;
		if (j > i && e[j].off - e[i].off >= CHAIN_HOLE_MIN) {
			uint64_t a = e[i].off, b = e[j].off;
			if (hole) {
				*out = a > off ? a : off;
				return 0;
			}
			if (off < a) {		/* off is in the data before */
				*out = off;
				return 0;
			}
			off = b;		/* off is in the hole */
			if (off >= L->size)
				return -ENXIO;
		} else if (!hole) {
			*out = off;
			return 0;
		}
		i = j > i ? j : i + 1;
	}
	if (!hole)
		return -ENXIO;
	*out = L->size;
	return 0;
}
