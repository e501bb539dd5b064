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
 * ids are 2*j for layer j's data file (the base file; a patch's plain
 * VCDIFF file, whose ADD bytes the extents point into) and 2*j+1 for its
 * aux file (bytes materialised from target copies whose period was too
 * short to keep as extents). Those ids are also the block cache's first
 * key; the second is the 64 KiB block (raw files) or the zstd frame.
 *
 * Layer N's index is built from N-1's: patch N's ops, in target order,
 * become extents; a COPY from the source is a slice of N-1's index, so
 * COPYs are followed down the chain once, at build time, never at read
 * time. Each finished window is read back through the new index and its
 * adler32 checked, which proves the whole composition before any reader
 * sees it.
 *
 * Derived files are named after a stamp of what they derive from (layer
 * file identity, chained through the parents), so a replaced layer file
 * simply misses its derived data, which is rebuilt.
 */
#include "fs/chain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cache/bcache.h"
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

void layer_damage(struct layer *L, const char *fmt, ...)
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

uint64_t chain_file_stamp(uint64_t parent, const struct store_layer *sl)
{
	uint64_t v[5] = {
		parent, (uint64_t)sl->st.st_ino, (uint64_t)sl->st.st_size,
		(uint64_t)sl->st.st_mtim.tv_sec,
		(uint64_t)sl->st.st_mtim.tv_nsec,
	};
	return XXH3_64bits_withSeed(v, sizeof(v), XXH3_64bits(sl->path,
							     strlen(sl->path)));
}

void layer_derived_name(char *buf, size_t cap, const struct layer *L,
			const char *ext)
{
	snprintf(buf, cap, "%s.%016" PRIx64 ".%s", L->name, L->stamp, ext);
}

/* --- layers --- */

static void layer_free(struct layer *L)
{
	if (!L)
		return;
	xindex_free(L->x);
	vcdiff_patch_free(L->patch);
	sfile_close(&L->data);
	sfile_close(&L->aux);
	free(L);
}

/* Opens layer j of the store; P is its parent (NULL for the base). */
static int layer_open(struct chain *c, size_t j, char *err, size_t errlen)
{
	struct layer *L = calloc(1, sizeof(*L));
	int rc;

	if (!L)
		return -ENOMEM;
	L->j = (unsigned)j;
	L->sl = store_layer(c->s, j);
	L->name = L->sl->name;
	L->stored = (uint64_t)L->sl->st.st_blocks * 512;
	L->mtime = L->sl->st.st_mtim;
	L->data.fd = L->aux.fd = -1;
	c->layers[j] = L;	/* readable by its own build, unpublished */
	if (j == 0)
		rc = derive_open_base(c, L, err, errlen);
	else
		rc = derive_open_patch(c, L, c->layers[j - 1], err, errlen);
	if (rc) {
		c->layers[j] = NULL;
		layer_free(L);
		return rc;
	}
	if (L->damage[0])
		chain_logf(c, CHAIN_LOG_ERR, "%s: %s; reads of it fail with "
			   "EIO", L->name, L->damage);
	/* The store may move its layer array (store_append): keep only
	 * what stays put (the name and fds). */
	L->sl = NULL;
	atomic_store(&c->n, j + 1);
	return 0;
}

int chain_append(struct chain *c, char *err, size_t errlen)
{
	size_t j = chain_count(c);

	if (j + 1 != store_count(c->s)) {
		msg_say(err, errlen, "internal: store has %zu layers, chain %zu",
		    store_count(c->s), j);
		return -EINVAL;
	}
	return layer_open(c, j, err, errlen);
}

/* --- the chain --- */

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
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_mutex_init(&c->pf_lock, NULL);
	pthread_cond_init(&c->pf_cond, NULL);
	c->layers = calloc(STORE_MAX_LAYERS, sizeof(*c->layers));
	bo.budget = c->o.cache_size;
	rc = c->layers ? bcache_new(&c->cache, &bo) : -ENOMEM;
	if (rc) {
		msg_say(err, errlen, "out of memory");
		goto fail;
	}
	/* Readahead helps indexing too; the threads end before we return,
	 * since the caller may fork (fuse_daemonize) and call chain_start. */
	chain_start(c);
	for (size_t j = 0; j < store_count(s); j++) {
		rc = layer_open(c, j, err, errlen);
		if (rc)
			goto fail;
	}
	ra_stop(c);
	*out = c;
	return 0;
fail:
	chain_free(c);
	return rc;
}

void chain_free(struct chain *c)
{
	if (!c)
		return;
	ra_stop(c);
	for (size_t j = 0; j < STORE_MAX_LAYERS && c->layers; j++) {
		if (!c->layers[j])
			break;
		layer_free(c->layers[j]);
	}
	free(c->layers);
	bcache_free(c->cache);
	for (size_t i = 0; i < c->npool; i++)
		zframe_dctx_free(c->pool[i]);
	free(c->pool);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->pf_lock);
	pthread_cond_destroy(&c->pf_cond);
	free(c);
}

size_t chain_count(const struct chain *c)
{
	return atomic_load(&((struct chain *)c)->n);
}

int chain_info(const struct chain *c, size_t i, struct chain_info *inf)
{
	const struct layer *L;

	if (i >= chain_count(c))
		return -ENOENT;
	L = c->layers[i];
	inf->name = L->name;
	inf->size = L->size;
	inf->stored = L->stored;
	inf->mtime = L->mtime;
	inf->damage = L->damage[0] ? L->damage : NULL;
	return 0;
}

ssize_t chain_lookup(const struct chain *c, const char *name)
{
	size_t n = chain_count(c);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(c->layers[i]->name, name))
			return (ssize_t)i;
	return -ENOENT;
}

int chain_check(struct chain *c, size_t i)
{
	struct layer *L;

	if (i >= chain_count(c))
		return -ENOENT;
	L = c->layers[i];
	if (!L->damage[0])
		return 0;
	atomic_fetch_add(&c->read_errors, 1);
	if (atomic_fetch_add(&L->nlogged, 1) < LOG_PER_LAYER)
		chain_logf(c, CHAIN_LOG_ERR, "%s: read refused: %s", L->name,
			   L->damage);
	return -EIO;
}

ssize_t chain_read(struct chain *c, size_t i, uint64_t off, void *buf,
		   size_t len)
{
	return chain_read_stream(c, i, off, buf, len, NULL);
}

ssize_t chain_read_stream(struct chain *c, size_t i, uint64_t off, void *buf,
			  size_t len, struct chain_stream *st)
{
	struct layer *L;
	int rc;

	rc = chain_check(c, i);
	if (rc)
		return rc;
	L = c->layers[i];
	atomic_fetch_add(&c->reads, 1);
	if (off >= L->size)
		return 0;
	if (len > L->size - off)
		len = (size_t)(L->size - off);
	if (st)
		ra_note(c, st, i, off, len);
	rc = sfile_resolve(c, L->x, off, buf, len);
	if (rc)
		return rc;
	atomic_fetch_add(&c->read_bytes, len);
	return (ssize_t)len;
}

int chain_stats(struct chain *c, char *buf, size_t cap)
{
	struct bcache_stats st;
	size_t n = chain_count(c), ext = 0;

	bcache_stats(c->cache, &st);
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		if (c->layers[i]->x)
			xindex_ext(c->layers[i]->x, &k);
		ext += k;
	}
	snprintf(buf, cap,
		 "layers %zu\nextents %zu\nreads %" PRIu64 "\nread_bytes %"
		 PRIu64 "\nread_errors %" PRIu64 "\ncache_hits %" PRIu64
		 "\ncache_misses %" PRIu64 "\ncache_evictions %" PRIu64
		 "\ncache_waits %" PRIu64 "\ncache_bytes %" PRIu64
		 "\ncache_budget %" PRIu64 "\ncache_blocks %" PRIu64
		 "\nreadahead_jobs %" PRIu64 "\nreadahead_dropped %" PRIu64
		 "\nreadahead_frames %" PRIu64 "\n",
		 n, ext, (uint64_t)atomic_load(&c->reads),
		 (uint64_t)atomic_load(&c->read_bytes),
		 (uint64_t)atomic_load(&c->read_errors), st.hits, st.misses,
		 st.evictions, st.waits, st.bytes_used, st.budget, st.blocks,
		 (uint64_t)atomic_load(&c->pf_jobs),
		 (uint64_t)atomic_load(&c->pf_dropped),
		 (uint64_t)atomic_load(&c->pf_frames));
	return 0;
}
