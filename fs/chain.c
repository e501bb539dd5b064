/* SPDX-License-Identifier: MIT */
/*
 * chain: snapshot chain of a store (see chain.h).
 *
 * This file is the public API (open, append, lookup, read, stats) and the
 * layer life cycle. The parts behind it, sharing fs/chain_int.h: stored
 * file reads in fs/sfile.c, derived files and layer opening in
 * fs/derive.c, index building in fs/ibuild.c, readahead in
 * fs/readahead.c. Not here: any of those.
 *
 * The offset mapping, once, for the whole tree. A read of layer N at
 * offset X finds the extent of N's composed index holding X; the extent
 * names a stored file by id and an offset in it (or is a fill byte). File
 * ids are 2*id for snapshot id's data file (the base file; a patch's plain
 * VCDIFF file, whose ADD bytes the extents point into; for a windowed lzma
 * patch, offsets past its end are its decompressed data sections, see
 * fs/sfile.c) and 2*id+1 for its
 * aux file (bytes materialised from target copies whose period was too
 * short to keep as extents). Ids are the snapshots' own (fs/tree.h), not
 * positions, and a version of a layer finds the file behind an id among
 * its own ancestors (layer_fid_file): a reader of an old version, kept
 * after a rebase, reads the old files, a reader of the new one the new.
 * The block cache is keyed by a number each opened file gets, so versions
 * never share cached blocks by mistake.
 *
 * Layer N's index is built from N-1's: patch N's ops, in target order,
 * become extents; a COPY from the source is a slice of N-1's index, so
 * COPYs are followed down the chain once, at build time, never at read
 * time. Each finished window is read back through the new index and its
 * adler32 checked, which proves the whole composition before any reader
 * sees it.
 *
 * Derived files are named "<id>.<stamp>.<ext>" after what they derive
 * from: per-file data (checksums, converted copies) after the layer file's
 * identity (id, inode, size, mtime: not its name, so a rename keeps it),
 * the index after that chained through the ancestors' stamps (a rebase
 * below changes it). A replaced file simply misses its derived data,
 * which is rebuilt; files no current version names are deleted
 * (chain_gc).
 *
 * Changes publish new versions under c->lock held for writing, for the
 * time of a pointer swap; the slow work (encoding, indexing) is done
 * before, on versions nobody else sees yet.
 */
#include "fs/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cache/bcache.h"
#include "codec/blob.h"
#include "codec/vcdiff_dec.h"
#include "codec/zframe.h"
#include "fs/chain_int.h"
#include "fs/msg.h"
#include "fs/xindex.h"

/* --- messages --- */

void chain_logf(struct chain *c, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!c->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->o.log(c->o.ctx, level, msg);
}

void layer_damage(struct chain_layer *L, const char *fmt, ...)
{
	va_list ap;

	if (L->damage[0])
		return;
	va_start(ap, fmt);
	vsnprintf(L->damage, sizeof(L->damage), fmt, ap);
	va_end(ap);
}

void chain_progress(struct chain *c, const char *layer, const char *what,
		    uint64_t done, uint64_t total)
{
	if (c->o.progress)
		c->o.progress(c->o.ctx, layer, what, done, total);
}

/* --- stamps and names of derived files --- */

uint64_t layer_file_stamp(const struct chain_layer *L)
{
	uint64_t v[5] = {
		L->id, (uint64_t)L->st.st_ino, (uint64_t)L->st.st_size,
		(uint64_t)L->st.st_mtim.tv_sec,
		(uint64_t)L->st.st_mtim.tv_nsec,
	};
	return XXH3_64bits(v, sizeof(v));
}

uint64_t layer_chain_stamp(const struct chain_layer *L)
{
	uint64_t v[2] = { L->parent ? L->parent->stamp : 0, L->fstamp };
	return XXH3_64bits(v, sizeof(v));
}

void layer_derived_name(char *buf, size_t cap, const struct chain_layer *L,
			uint64_t stamp, const char *ext)
{
	snprintf(buf, cap, "%" PRIu32 ".%016" PRIx64 ".%s", L->id, stamp, ext);
}

int chain_save_derived(struct chain *c, const char *sub, const char *name,
		       int (*fill)(int fd, void *arg), void *arg)
{
	int rc = store_replace(store_subdir(c->s, sub), name, fill, arg);

	if (rc)
		chain_logf(c, CHAIN_LOG_WARN, "%s/%s/%s/%s: cannot save: %s%s",
			   store_dir(c->s), STORE_META_DIR, sub, name,
			   strerror(-rc), rc == -ENOSPC || rc == -EDQUOT ?
			   " (no space for derived data: it is rebuilt at the "
			   "next mount; free space there)" : " (it is rebuilt "
			   "at the next mount)");
	else
		store_derived_saved(c->s, sub, name);
	return rc;
}

/* --- layer versions --- */

void layer_ref(struct chain_layer *L)
{
	atomic_fetch_add(&L->ref, 1);
}

void layer_put(struct chain *c, struct chain_layer *L)
{
	while (L && atomic_fetch_sub(&L->ref, 1) == 1) {
		struct chain_layer *P = L->parent;
		fcopy_free(c, L);
		xindex_free(L->x);
		vcdiff_patch_free(L->patch);
		sfile_close(c, &L->data);
		sfile_close(c, &L->aux);
		blob_put(L->blob);
		free(L->anc);
		free(L);
		L = P;		/* its reference on the parent goes too */
	}
}

/* Fills the ancestry table a version's index ids are looked up in. */
int layer_new(struct chain_layer **out, uint32_t id, struct chain_layer *P,
	      struct blob *b, const char *path)
{
	struct chain_layer *L = calloc(1, sizeof(*L));
	size_t n = P ? P->nanc + 1 : 1, k = 0;

	if (L)
		L->anc = malloc(n * sizeof(*L->anc));
	if (!L || !L->anc) {
		if (L)
			free(L->anc);
		free(L);
		blob_put(b);
		return -ENOMEM;
	}
	atomic_init(&L->ref, 1);
	atomic_init(&L->nlogged, 0);
	L->id = id;
	L->blob = b;
	L->st = *blob_stat(b);
	L->data.wfd = L->aux.wfd = -1;
	L->stored = (uint64_t)L->st.st_size;
	snprintf(L->path, sizeof(L->path), "%s", path);
	if (store_name_of(path, L->name, sizeof(L->name)) < 0)
		snprintf(L->name, sizeof(L->name), "%s", path);
	if (P) {
		layer_ref(P);
		L->parent = P;
		L->depth = P->depth + 1;
		/* Sorted insert of itself into the parent's table. */
		for (size_t i = 0; i < P->nanc; i++) {
			if (k == i && P->anc[i]->id > id)
				L->anc[k++] = L;
			L->anc[k++] = P->anc[i];
		}
	}
	if (k < n)
		L->anc[k++] = L;
	L->nanc = n;
	*out = L;
	return 0;
}

/*
 * A layer with a parent whose file is a full state (raw or zstd, not
 * VCDIFF): the plain scripts leave these in the middle of a chain
 * (fs/store_load.c, resolve_line). It is opened like a base, so its reads and
 * those of the layers above it never go below it: it cuts the depth. The
 * tree still records the parent. Sets L->full and L->depth.
 */
static int layer_is_full(struct chain *c, struct chain_layer *L)
{
	uint8_t magic[3];

	(void)c;
	/* A file named .patch that is not VCDIFF is a damaged or wrong
	 * patch, to be refused by name, never read as a full state. Known
	 * by name before any read: in a bucket, a read fetches a chunk. */
	const char *dot = strrchr(L->path, '.');
	if (dot && !strcmp(dot, ".patch"))
		return 0;
	if (blob_pread(L->blob, magic, 3, 0) != 3 ||
	    !memcmp(magic, "\xd6\xc3\xc4", 3))
		return 0;
	L->full = 1;
	L->depth = 0;
	return 1;
}

int layer_index(struct chain *c, struct chain_layer *L, char *err,
		       size_t errlen)
{
	int rc = L->parent && !layer_is_full(c, L) ?
		 derive_open_patch(c, L, err, errlen) :
		 derive_open_base(c, L, err, errlen);

	if (!rc && L->damage[0])
		chain_logf(c, CHAIN_LOG_ERR, "%s: %s; reads of it fail with "
			   "EIO", L->name, L->damage);
	if (!rc)
		fcopy_attach(c, L);
	return rc;
}

struct chain_layer *chain_find_cur(const struct chain *c, uint32_t id)
{
	for (size_t i = 0; i < c->ncur; i++)
		if (c->cur[i]->id == id)
			return c->cur[i];
	return NULL;
}

int layer_open_on(struct chain *c, uint32_t id, struct chain_layer *P,
		  struct chain_layer **out, char *err, size_t errlen)
{
	const struct tree_node *n = tree_get(store_tree(c->s), id);
	struct chain_layer *L;
	struct blob *b;
	int rc;

	if (!n || (n->parent && !P))
		return -ENOENT;
	int64_t created = n->created;
	char desc[sizeof(L->desc)], digest[sizeof(L->digest)];
	snprintf(desc, sizeof(desc), "%s", n->desc);
	snprintf(digest, sizeof(digest), "%s", n->digest);
	rc = store_open_layer(c->s, id, &b, err, errlen);
	if (rc)
		return rc;
	rc = layer_new(&L, id, P, b, n->file);
	if (rc)
		return rc;
	L->created = created ? created : (int64_t)L->st.st_mtim.tv_sec;
	memcpy(L->desc, desc, sizeof(desc));
	memcpy(L->digest, digest, sizeof(digest));
	rc = layer_index(c, L, err, errlen);
	if (rc) {
		layer_put(c, L);
		return rc;
	}
	*out = L;
	return 0;
}

/* Opens the version of tree node id from the store: the parent must be
 * current already. Returns the new version (unpublished). */
static int layer_open(struct chain *c, uint32_t id,
		      struct chain_layer **out, char *err, size_t errlen)
{
	const struct tree_node *n = tree_get(store_tree(c->s), id);
	struct chain_layer *P = NULL;

	if (!n)
		return -ENOENT;
	if (n->parent && !(P = chain_find_cur(c, n->parent)))
		return -ENOENT;
	return layer_open_on(c, id, P, out, err, errlen);
}

/* Appends L to the table (c->lock held for writing); the table takes the
 * reference. */
static int publish(struct chain *c, struct chain_layer *L)
{
	if (c->ncur == c->capcur) {
		size_t cap = c->capcur ? 2 * c->capcur : 64;
		struct chain_layer **p = realloc(c->cur, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		c->cur = p;
		c->capcur = cap;
	}
	c->cur[c->ncur++] = L;
	return 0;
}

int chain_add(struct chain *c, uint32_t id, char *err, size_t errlen)
{
	struct chain_layer *L;
	int rc;

	chain_note_tree(c);	/* the caller committed: current moved */
	pthread_rwlock_rdlock(&c->lock);
	int known = chain_find_cur(c, id) != NULL;
	pthread_rwlock_unlock(&c->lock);
	if (known)
		return -EEXIST;
	/* Only changes touch the table, and the caller serialises those:
	 * the parent found here stays current meanwhile. */
	rc = layer_open(c, id, &L, err, errlen);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&c->lock);
	rc = publish(c, L);
	pthread_rwlock_unlock(&c->lock);
	if (rc)
		layer_put(c, L);
	return rc;
}

/* --- derived data no version names --- */

/*
 * Whether a derived file "<id>.<stamp>.<ext>" belongs to a current
 * version. Which stamp names it depends on what it derives from: the
 * index on the ancestry (stamp), the aux file and its checksums on the
 * build that made them (aux_stamp, kept across remaps), the rest on the
 * layer file alone (fstamp).
 */
static int derived_live(struct chain *c, const char *name)
{
	char *end;
	unsigned long id = strtoul(name, &end, 10);
	uint64_t stamp;

	if (end == name || *end != '.')
		return 0;
	stamp = strtoull(end + 1, &end, 16);
	if (*end != '.')
		return 0;
	const char *ext = end + 1;
	for (size_t i = 0; i < c->ncur; i++) {
		const struct chain_layer *L = c->cur[i];
		if (L->id != id)
			continue;
		if (!strcmp(ext, "idx"))
			return stamp == L->stamp;
		if (!strcmp(ext, "aux") || !strcmp(ext, "aux.sum") ||
		    !strcmp(ext, "auxz"))
			return stamp == L->aux_stamp;
		if (!strcmp(ext, "full") || !strcmp(ext, "full.sum"))
			return stamp == L->stamp;
		return stamp == L->fstamp;
	}
	return 0;
}

/*
 * Deletes derived files (indexes, aux files, checksums, converted copies)
 * that no current version names: those of removed or rebased snapshots,
 * of replaced files, of an older snapfs. A reader still holding an old
 * version has its files open, and keeps them until it closes.
 */
static int gc_keep(const char *name, void *arg)
{
	return derived_live(arg, name);
}

void chain_gc(struct chain *c)
{
	static const char *const subs[] = { "index", "aux", "sums", "plain",
					    "base", "full" };

	pthread_rwlock_rdlock(&c->lock);
	for (size_t k = 0; k < sizeof(subs) / sizeof(subs[0]); k++)
		store_sweep(c->s, subs[k], gc_keep, c);
	pthread_rwlock_unlock(&c->lock);
}

/* --- the chain --- */

/* Opens id after its parent (the tree's order may have been edited). */
static int open_rec(struct chain *c, const struct tree *t, uint32_t id,
		    unsigned depth, char *err, size_t errlen)
{
	const struct tree_node *n = tree_get(t, id);
	struct chain_layer *L;
	int rc;

	if (!n || chain_find_cur(c, id))
		return 0;
	if (depth > STORE_MAX_LAYERS)
		return -ELOOP;
	uint32_t parent = n->parent;
	if (parent && (rc = open_rec(c, t, parent, depth + 1, err, errlen)))
		return rc;
	rc = layer_open(c, id, &L, err, errlen);
	if (!rc && (rc = publish(c, L)))
		layer_put(c, L);
	return rc;
}

int chain_open(struct chain **out, struct store *s,
	       const struct chain_opts *o, char *err, size_t errlen)
{
	struct chain *c = calloc(1, sizeof(*c));
	struct bcache_opts bo = { 0 };
	int rc;

	if (!c)
		return -ENOMEM;
	c->s = s;
	if (o)
		c->o = *o;
	clock_gettime(CLOCK_REALTIME_COARSE, &c->opened);
	pthread_rwlock_init(&c->lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_mutex_init(&c->pf_lock, NULL);
	pthread_cond_init(&c->pf_cond, NULL);
	pthread_mutex_init(&c->fc_lock, NULL);
	pthread_cond_init(&c->fc_cond, NULL);
	atomic_init(&c->next_key, 1);
	bo.budget = c->o.cache_size;
	rc = bcache_new(&c->cache, &bo);
	if (rc) {
		msg_say(err, errlen, "out of memory");
		goto fail;
	}
	/* Readahead helps indexing too; the threads end before we return,
	 * since the caller may fork (fuse_daemonize) and call chain_start. */
	chain_start(c);
	const struct tree *t = store_tree(s);
	for (size_t i = 0; i < tree_count(t); i++) {
		rc = open_rec(c, t, tree_at(t, i)->id, 0, err, errlen);
		if (rc)
			goto fail;
	}
	ra_stop(c);
	chain_gc(c);
	chain_note_tree(c);
	*out = c;
	return 0;
fail:
	chain_free(c);
	return msg_nofile_rc(rc, err, errlen, store_dir(s));
}

static void *hint_unhook(struct chain *c, void (**free_fn)(void *));

void chain_free(struct chain *c)
{
	if (!c)
		return;
	fcopy_stop(c);
	ra_stop(c);
	/* Children first: each holds its parent. */
	for (size_t i = c->ncur; i-- > 0;)
		layer_put(c, c->cur[i]);
	free(c->cur);
	void (*hint_free)(void *) = NULL;
	void *hint = hint_unhook(c, &hint_free);	/* no thread is left */
	if (hint && hint_free)
		hint_free(hint);
	bcache_free(c->cache);
	sfile_pools_free(c);
	pthread_rwlock_destroy(&c->lock);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->pf_lock);
	pthread_cond_destroy(&c->pf_cond);
	pthread_mutex_destroy(&c->fc_lock);
	pthread_cond_destroy(&c->fc_cond);
	free(c);
}

/* --- listing --- */

size_t chain_count(const struct chain *c)
{
	struct chain *m = (struct chain *)c;
	size_t n;

	pthread_rwlock_rdlock(&m->lock);
	n = m->ncur;
	pthread_rwlock_unlock(&m->lock);
	return n;
}

size_t chain_ids(struct chain *c, uint32_t *ids, size_t cap)
{
	size_t n;

	pthread_rwlock_rdlock(&c->lock);
	n = c->ncur;
	for (size_t i = 0; i < n && i < cap; i++)
		ids[i] = c->cur[i]->id;
	pthread_rwlock_unlock(&c->lock);
	return n;
}

static void fill_info(const struct chain_layer *L, struct chain_info *inf)
{
	inf->id = L->id;
	inf->parent = L->parent ? L->parent->id : 0;
	memcpy(inf->name, L->name, sizeof(inf->name));
	inf->size = L->size;
	inf->stored = L->stored;
	inf->mtime = L->st.st_mtim;
	inf->uid = L->st.st_uid;
	inf->gid = L->st.st_gid;
	inf->mode = L->st.st_mode & 07777;
	inf->created = L->created;
	inf->depth = L->depth;
	inf->kind = L->full ? CHAIN_KIND_FULL : L->parent ? CHAIN_KIND_PATCH :
		    CHAIN_KIND_BASE;
	inf->form = L->form;
	inf->damaged = L->damage[0] != 0;
	memcpy(inf->damage, L->damage, sizeof(inf->damage));
}

int chain_info(struct chain *c, uint32_t id, struct chain_info *inf)
{
	const struct chain_layer *L;

	pthread_rwlock_rdlock(&c->lock);
	L = chain_find_cur(c, id);
	if (L)
		fill_info(L, inf);
	pthread_rwlock_unlock(&c->lock);
	return L ? 0 : -ENOENT;
}

int chain_layer_info(struct chain *c, const struct chain_layer *L,
		     struct chain_info *inf)
{
	pthread_rwlock_rdlock(&c->lock);
	fill_info(L, inf);
	int current = chain_find_cur(c, L->id) == L;
	pthread_rwlock_unlock(&c->lock);
	return current;
}

uint32_t chain_lookup(struct chain *c, const char *name)
{
	uint32_t id = 0;

	pthread_rwlock_rdlock(&c->lock);
	for (size_t i = 0; i < c->ncur && !id; i++)
		if (!strcmp(c->cur[i]->name, name))
			id = c->cur[i]->id;
	pthread_rwlock_unlock(&c->lock);
	return id;
}

int chain_desc(struct chain *c, uint32_t id, char *buf, size_t cap)
{
	const struct chain_layer *L;

	pthread_rwlock_rdlock(&c->lock);
	L = chain_find_cur(c, id);
	if (L)
		snprintf(buf, cap, "%s", L->desc);
	pthread_rwlock_unlock(&c->lock);
	return L ? 0 : -ENOENT;
}

/* --- reading --- */

int chain_get(struct chain *c, uint32_t id, struct chain_layer **out)
{
	struct chain_layer *L;

	pthread_rwlock_rdlock(&c->lock);
	L = chain_find_cur(c, id);
	if (L)
		layer_ref(L);
	pthread_rwlock_unlock(&c->lock);
	*out = L;
	return L ? 0 : -ENOENT;
}

void chain_put(struct chain *c, struct chain_layer *L)
{
	layer_put(c, L);
}

uint32_t chain_layer_id(const struct chain_layer *L)
{
	return L->id;
}

uint64_t chain_layer_size(const struct chain_layer *L)
{
	return L->size;
}

int chain_check(struct chain *c, struct chain_layer *L)
{
	if (!L->damage[0])
		return 0;
	atomic_fetch_add(&c->read_errors, 1);
	if (atomic_fetch_add(&L->nlogged, 1) < LOG_PER_LAYER)
		chain_logf(c, CHAIN_LOG_ERR, "%s: read refused: %s", L->name,
			   L->damage);
	return -EIO;
}

ssize_t chain_read(struct chain *c, struct chain_layer *L, uint64_t off,
		   void *buf, size_t len, struct chain_stream *st)
{
	int rc = chain_check(c, L);

	if (rc)
		return rc;
	atomic_fetch_add(&c->reads, 1);
	if (off >= L->size)
		return 0;
	if (len > L->size - off)
		len = (size_t)(L->size - off);
	if (st)
		ra_note(c, st, L, off, len);
	struct sfile *F = fcopy_of(L);
	rc = F ? fcopy_read(c, L, F, off, buf, len) :
	     sfile_resolve(c, L, L->x, off, buf, len);
	if (rc)
		return rc;
	atomic_fetch_add(&c->read_bytes, len);
	return (ssize_t)len;
}

/* The cache's budget with what is lent taken off (pool_lock held). */
static void cache_rebudget(struct chain *c)
{
	size_t full = c->o.cache_size ? c->o.cache_size : BCACHE_DEFAULT_BUDGET;
	size_t b = full > c->lent ? full - c->lent : 0;

	if (b < CHAIN_CACHE_MIN)
		b = full < CHAIN_CACHE_MIN ? full : CHAIN_CACHE_MIN;
	bcache_set_budget(c->cache, b);
}

void chain_cache_lend(struct chain *c, size_t bytes)
{
	pthread_mutex_lock(&c->pool_lock);
	c->lent += bytes;
	cache_rebudget(c);
	pthread_mutex_unlock(&c->pool_lock);
}

void chain_cache_return(struct chain *c, size_t bytes)
{
	pthread_mutex_lock(&c->pool_lock);
	c->lent -= bytes < c->lent ? bytes : c->lent;
	cache_rebudget(c);
	pthread_mutex_unlock(&c->pool_lock);
}

/* Unhooks the hint (caller holds pool_lock); returns it. */
static void *hint_unhook(struct chain *c, void (**free_fn)(void *))
{
	void *obj = c->hint;

	*free_fn = c->hint_free;
	c->lent -= c->hint_bytes < c->lent ? c->hint_bytes : c->lent;
	c->hint = NULL;
	c->hint_free = NULL;
	c->hint_bytes = 0;
	c->hint_tag[0] = 0;
	return obj;
}

void chain_hint_put(struct chain *c, const char *tag, void *obj,
		    size_t bytes, void (*free_fn)(void *))
{
	void (*old_free)(void *) = NULL;
	void *old;

	pthread_mutex_lock(&c->pool_lock);
	old = hint_unhook(c, &old_free);
	c->hint = obj;
	c->hint_free = free_fn;
	c->hint_bytes = bytes;
	snprintf(c->hint_tag, sizeof(c->hint_tag), "%s", tag);
	c->lent += bytes;
	cache_rebudget(c);
	pthread_mutex_unlock(&c->pool_lock);
	if (old && old_free)
		old_free(old);
}

void *chain_hint_take(struct chain *c, const char *tag)
{
	void (*free_fn)(void *) = NULL;
	void *obj = NULL;
	int match;

	pthread_mutex_lock(&c->pool_lock);
	match = c->hint && !strcmp(c->hint_tag, tag);
	if (c->hint) {
		obj = hint_unhook(c, &free_fn);
		cache_rebudget(c);
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (obj && !match) {
		if (free_fn)
			free_fn(obj);
		obj = NULL;
	}
	return obj;
}

int chain_stats(struct chain *c, char *buf, size_t cap)
{
	struct bcache_stats st;
	size_t n, ext = 0;

	bcache_stats(c->cache, &st);
	pthread_rwlock_rdlock(&c->lock);
	n = c->ncur;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		if (c->cur[i]->x)
			xindex_ext(c->cur[i]->x, &k);
		ext += k;
	}
	pthread_rwlock_unlock(&c->lock);
	snprintf(buf, cap,
		 "layers %zu\nextents %zu\nreads %" PRIu64 "\nread_bytes %"
		 PRIu64 "\nread_errors %" PRIu64 "\ncache_hits %" PRIu64
		 "\ncache_misses %" PRIu64 "\ncache_evictions %" PRIu64
		 "\ncache_waits %" PRIu64 "\ncache_recycled %" PRIu64
		 "\ncache_bytes %" PRIu64
		 "\ncache_budget %" PRIu64 "\ncache_blocks %" PRIu64
		 "\nreadahead_jobs %" PRIu64 "\nreadahead_dropped %" PRIu64
		 "\nreadahead_frames %" PRIu64 "\nreadahead_checked %" PRIu64
		 "\nreply_splice_bytes %" PRIu64 "\nreply_pinned_bytes %"
		 PRIu64 "\nreply_zero_bytes %" PRIu64 "\nreply_copied_bytes %"
		 PRIu64 "\nfull_copies_made %" PRIu64 "\nfull_copy_read_bytes %"
		 PRIu64 "\nfull_copies_dropped %" PRIu64
		 "\nsections_decoded %" PRIu64 "\n",
		 n, ext, (uint64_t)atomic_load(&c->reads),
		 (uint64_t)atomic_load(&c->read_bytes),
		 (uint64_t)atomic_load(&c->read_errors), st.hits, st.misses,
		 st.evictions, st.waits, st.recycled, st.bytes_used, st.budget,
		 st.blocks,
		 (uint64_t)atomic_load(&c->pf_jobs),
		 (uint64_t)atomic_load(&c->pf_dropped),
		 (uint64_t)atomic_load(&c->pf_frames),
		 (uint64_t)atomic_load(&c->pf_checked),
		 (uint64_t)atomic_load(&c->rv_fd),
		 (uint64_t)atomic_load(&c->rv_pin),
		 (uint64_t)atomic_load(&c->rv_zero),
		 (uint64_t)atomic_load(&c->rv_copy),
		 (uint64_t)atomic_load(&c->fc_made),
		 (uint64_t)atomic_load(&c->fc_read),
		 (uint64_t)atomic_load(&c->fc_dropped),
		 (uint64_t)atomic_load(&c->win_decoded));
	return 0;
}

