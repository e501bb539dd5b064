/* SPDX-License-Identifier: MIT */
/*
 * fcopy: full copies of whole snapshots (-o materialize=SIZE), so that a
 * snapshot restored once is read at page-cache speed by every later
 * mount, with no decoding at all.
 *
 * Why (issue 10): a restore from a fresh mount of a zstd-based store is
 * bound by decompression on this machine's two cores, which QEMU and cat
 * share; a restore from a plain file is not. Restoring one snapshot many
 * times (many VMs started from it) is the common case, so the bytes of a
 * snapshot one open file read all of (QEMU's `exec:cat`, cp: ra_note keeps
 * a bitmap of the pages each stream read, since the kernel's readahead
 * requests arrive out of order) are written once more as a plain file
 * under .snapfs/full/, in the background, and the next mount reads that
 * file instead of the index.
 *
 * Decisions:
 *   - Off by default: a full copy costs a whole state of disk, in a store
 *     whose point is to keep many states small. The bound is the option's
 *     value; copies used least recently (file mtime, set at each whole
 *     read) are deleted first to make room. A copy still read by this
 *     mount keeps its space until the version is let go.
 *   - A copy is named "<id>.<stamp>.full" after the version's index stamp
 *     (its ancestry), like the index: a rebase below it orphans the copy
 *     and chain_gc deletes it. Its block checksums are kept in
 *     .snapfs/sums as any raw derived file's, and every block is checked
 *     once per mount before its bytes reach a reader (sfile raw reads,
 *     splice where the pipe fits: fs/rvec.c).
 *   - A damaged copy is dropped (logged, deleted) and the read goes on
 *     through the index: derived data never turns a readable snapshot
 *     into EIO.
 *   - The copy is made from the index (the bytes are decoded once more,
 *     on one thread at low priority), not from what the reader was sent:
 *     the reader's restore is not slowed by writing 0.5-1 GB of page cache.
 *   - Local stores only; a store in a bucket has its own disk cache.
 *
 * Not here: reading the copy (chain_read, chain_readv call fcopy_read),
 * noticing a whole read (ra_note). Threads: one copying thread, started
 * at the first request; c->fc_lock guards the queue. L->fcopy is set once
 * (atomic) and freed with the version.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "fs/safefile.h"

/* Bytes decoded and written per step; the stop flag is seen between. */
#define STEP ((size_t)1 << 20)

static int fcopy_enabled(const struct chain *c)
{
	return c->o.fcopy_max && !store_is_remote(c->s) &&
	       !store_readonly(c->s);
}

static void names(const struct chain_layer *L, char *name, char *sums,
		  size_t cap)
{
	layer_derived_name(name, cap, L, L->stamp, "full");
	layer_derived_name(sums, cap, L, L->stamp, "full.sum");
}

/* Deletes a copy and its checksums (stale, damaged or evicted). */
static void drop_files(struct chain *c, const char *name)
{
	dlru_drop(c, "full", name);
}

void fcopy_attach(struct chain *c, struct chain_layer *L)
{
	char name[300], sums[300], label[400];
	struct stat st;
	struct sfile *F;
	struct blob *b;

	if (!fcopy_enabled(c) || L->damage[0] || !L->x ||
	    atomic_load(&L->fcopy))
		return;
	names(L, name, sums, sizeof(name));
	int fd = safefile_open(store_subdir(c->s, "full"), name, O_RDONLY, 0,
			       &st, NULL);
	if (fd < 0) {
		if (fd != -ENOENT)	/* a symlink, a FIFO: not ours */
			drop_files(c, name);
		return;
	}
	snprintf(label, sizeof(label), "%s/full/%s", STORE_META_DIR, name);
	F = calloc(1, sizeof(*F));
	if (!F || (uint64_t)st.st_size != L->size ||
	    blob_from_fd(&b, fd, label) < 0) {
		close(fd);
		free(F);
		if ((uint64_t)st.st_size != L->size)
			drop_files(c, name);
		return;
	}
	F->wfd = -1;
	sfile_raw(c, L, F, b, L->size, label);
	F->derived = 1;
	F->fallback = 1;
	if (sfile_sums_load(c, F, sums) < 0) {
		sfile_close(c, F);
		free(F);
		drop_files(c, name);
		return;
	}
	struct sfile *none = NULL;
	if (!atomic_compare_exchange_strong(&L->fcopy, &none, F)) {
		sfile_close(c, F);
		free(F);
	}
}

void fcopy_free(struct chain *c, struct chain_layer *L)
{
	struct sfile *F = atomic_exchange(&L->fcopy, NULL);

	if (F) {
		sfile_close(c, F);
		free(F);
	}
}

int fcopy_read(struct chain *c, struct chain_layer *L, struct sfile *F,
	       uint64_t off, uint8_t *dst, size_t len)
{
	ssize_t r = sfile_pread(c, F, off, dst, len);
	char name[300], sums[300];

	if (r >= 0) {
		atomic_fetch_add(&c->fc_read, len);
		return 0;
	}
	if (r != -EIO)
		return (int)r;
	if (!atomic_exchange(&L->fcopy_bad, 1)) {
		names(L, name, sums, sizeof(name));
		drop_files(c, name);
		atomic_fetch_add(&c->fc_dropped, 1);
		chain_logf(c, CHAIN_LOG_WARN, "%s: its full copy %s/full/%s "
			   "is damaged (a checksum mismatch or a short read "
			   "in bytes %" PRIu64 "-%" PRIu64 "): deleted; reads "
			   "go on from the store, and the copy is made again "
			   "when a later mount reads %s whole", L->name,
			   STORE_META_DIR, name, off, off + len - 1, L->name);
	}
	return sfile_resolve(c, L, L->x, off, dst, len);
}

/* --- making copies --- */

/*
 * Makes room for need more bytes under .snapfs/full within the bound,
 * deleting the copies used least recently (fs/dlru.c). 0, or -ENOSPC if
 * need does not fit even alone.
 */
static int make_room(struct chain *c, uint64_t need)
{
	struct dlru_kind k = { "full", NULL, c->o.fcopy_max,
			       "-o materialize" };
	return dlru_room(c, &k, need, NULL);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Writes L's bytes into fd, taking their block checksums. 0 or -errno;
 * -ECANCELED when the chain is stopping. */
static int copy_out(struct chain *c, struct chain_layer *L, int fd,
		    uint64_t *sum)
{
	uint8_t *buf = malloc(STEP);
	int rc = buf ? 0 : -ENOMEM;

	for (uint64_t off = 0; !rc && off < L->size; off += STEP) {
		size_t n = L->size - off < STEP ? (size_t)(L->size - off) :
			   STEP;
		if (atomic_load(&c->fc_stop)) {
			rc = -ECANCELED;
			break;
		}
		if ((rc = sfile_resolve(c, L, L->x, off, buf, n)) ||
		    (rc = fdio_write(fd, buf, n)))
			break;
		for (size_t k = 0; k < n; k += SUM_BLOCK)
			sum[(off + k) / SUM_BLOCK] = XXH3_64bits(buf + k,
				n - k < SUM_BLOCK ? n - k : SUM_BLOCK);
	}
	free(buf);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	return rc;
}

/* Makes L's full copy (the copying thread). Failures are logged: the
 * snapshot stays readable from the store. */
static void make_copy(struct chain *c, struct chain_layer *L)
{
	char name[300], sums[300], tmp[64];
	int tfd = store_subdir(c->s, "tmp"), fd, rc;
	size_t nsum = (size_t)((L->size + SUM_BLOCK - 1) / SUM_BLOCK);
	uint64_t *sum = NULL;
	double t0 = now_s();

	/* A version replaced meanwhile (a rebase): its copy would be
	 * orphaned at once. */
	pthread_rwlock_rdlock(&c->lock);
	int current = chain_find_cur(c, L->id) == L;
	pthread_rwlock_unlock(&c->lock);
	if (!current || atomic_load(&L->fcopy) || L->damage[0])
		return;
	names(L, name, sums, sizeof(name));
	if ((rc = store_room(c->s, L->size)) < 0 ||
	    (rc = make_room(c, L->size)) < 0) {
		chain_logf(c, CHAIN_LOG_INFO, "%s: no full copy made: its %"
			   PRIu64 " bytes do not fit %s", L->name, L->size,
			   rc == -ENOSPC && L->size > c->o.fcopy_max ?
			   "-o materialize (raise it)" : "the store's bound");
		return;
	}
	snprintf(tmp, sizeof(tmp), "full.%" PRIu32, L->id);
	fd = safefile_create(tfd, tmp, 0644, NULL);
	sum = malloc(nsum ? nsum * 8 : 8);
	rc = fd < 0 ? fd : !sum ? -ENOMEM : copy_out(c, L, fd, sum);
	if (!rc)
		rc = sfile_sums_save(c, sums, sum, L->size);
	if (!rc && renameat(tfd, tmp, store_subdir(c->s, "full"), name) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(sum);
	if (rc) {
		unlinkat(tfd, tmp, 0);
		if (rc != -ECANCELED)
			chain_logf(c, CHAIN_LOG_WARN, "%s: no full copy made "
				   "in %s/%s/full: %s; reads go on from the "
				   "store (free space there, or mount without "
				   "-o materialize)", L->name, store_dir(c->s),
				   STORE_META_DIR, strerror(-rc));
		return;
	}
	/* Replaced while being copied (a rebase): its chain_gc may have
	 * run before the rename, so the orphan is deleted here. A later
	 * replacement's chain_gc sees the file. */
	pthread_rwlock_rdlock(&c->lock);
	current = chain_find_cur(c, L->id) == L;
	pthread_rwlock_unlock(&c->lock);
	if (!current) {
		drop_files(c, name);
		return;
	}
	fcopy_attach(c, L);
	atomic_fetch_add(&c->fc_made, 1);
	chain_logf(c, CHAIN_LOG_INFO, "%s: full copy made, %s/full/%s (%"
		   PRIu64 " bytes, %.1f s): later mounts read it from there",
		   L->name, STORE_META_DIR, name, L->size, now_s() - t0);
}

static void *fc_worker(void *arg)
{
	struct chain *c = arg;

	/* Behind every reader: the copy is for later. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	pthread_mutex_lock(&c->fc_lock);
	for (;;) {
		while (!c->fc_n && !atomic_load(&c->fc_stop))
			pthread_cond_wait(&c->fc_cond, &c->fc_lock);
		if (atomic_load(&c->fc_stop))
			break;
		struct chain_layer *L = c->fc_q[0];
		memmove(c->fc_q, c->fc_q + 1, --c->fc_n * sizeof(*c->fc_q));
		pthread_mutex_unlock(&c->fc_lock);
		make_copy(c, L);
		atomic_store(&L->fcopy_queued, 0);
		layer_put(c, L);
		pthread_mutex_lock(&c->fc_lock);
	}
	pthread_mutex_unlock(&c->fc_lock);
	return NULL;
}

void fcopy_want(struct chain *c, struct chain_layer *L)
{
	struct sfile *F = atomic_load(&L->fcopy);

	if (!fcopy_enabled(c) || L->damage[0] || !L->x)
		return;
	if (F) {
		/* Used again: last to be evicted. */
		if (!atomic_load(&L->fcopy_bad))
			futimens(blob_fd(F->b), NULL);
		return;
	}
	if (atomic_exchange(&L->fcopy_queued, 1))
		return;
	if (L->size > c->o.fcopy_max) {
		/* Said once per version: fcopy_queued stays set. */
		chain_logf(c, CHAIN_LOG_INFO, "%s: no full copy made: its %"
			   PRIu64 " bytes do not fit -o materialize (raise "
			   "it)", L->name, L->size);
		return;
	}
	pthread_mutex_lock(&c->fc_lock);
	if (atomic_load(&c->fc_stop) || c->fc_n == FC_QUEUE) {
		pthread_mutex_unlock(&c->fc_lock);
		atomic_store(&L->fcopy_queued, 0);
		return;
	}
	if (!c->fc_running) {
		if (pthread_create(&c->fc_thread, NULL, fc_worker, c)) {
			pthread_mutex_unlock(&c->fc_lock);
			atomic_store(&L->fcopy_queued, 0);
			return;
		}
		c->fc_running = 1;
	}
	layer_ref(L);
	c->fc_q[c->fc_n++] = L;
	pthread_cond_signal(&c->fc_cond);
	pthread_mutex_unlock(&c->fc_lock);
}

void fcopy_stop(struct chain *c)
{
	pthread_mutex_lock(&c->fc_lock);
	atomic_store(&c->fc_stop, 1);
	pthread_cond_broadcast(&c->fc_cond);
	int running = c->fc_running;
	pthread_mutex_unlock(&c->fc_lock);
	if (running)
		pthread_join(c->fc_thread, NULL);
	c->fc_running = 0;
	while (c->fc_n)
		layer_put(c, c->fc_q[--c->fc_n]);
}

void chain_stop_writes(struct chain *c)
{
	fcopy_stop(c);
}
