/* SPDX-License-Identifier: MIT */
/*
 * readahead: decoding the zstd frames (and the lzma data sections of
 * windowed patches) a reader will need before it asks, and checking
 * ahead the blocks of local raw files it will read (so its replies can
 * splice them: fs/rvec.c).
 * Each open file has a chain_stream that notices a sequential reader and
 * queues the next PF_WINDOW bytes; worker threads take jobs off a bounded
 * queue (full: the job is dropped) and decode their frames into the block
 * cache. Index building queues its next window's source the same way.
 *
 * Not here: reads themselves (fs/sfile.c); reading raw files ahead,
 * which the OS page cache does already. Threads: c->pf_lock guards the queue, then
 * (inside workers' reads) the cache's locks; st->lock guards one stream.
 * chain_start after any fork, since threads do not survive one.
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <xxhash.h>

#include "cache/bcache.h"
#include "codec/blob.h"
#include "codec/zframe.h"
#include "fs/xindex.h"

/* How far ahead of a sequential reader frames are decoded. */
#define PF_WINDOW ((uint64_t)8 << 20)
/* Reads this close to the last one count as sequential: FUSE runs the
 * kernel's readahead requests (up to 1 MiB) on several threads, slightly
 * out of order. */
#define PF_SLACK ((uint64_t)2 << 20)
/* In-order reads in a row before readahead starts: a random reader lands
 * near its previous read now and then, and an 8 MiB readahead for it
 * would only compete with its next reads (it showed as p99 latency). */
#define PF_MIN_RUN 2
/* The unit in which a stream's reads are remembered (seen_note). */
#define SEEN_PAGE ((uint64_t)4 << 10)

struct chain_stream {
	pthread_mutex_t lock;		/* protects the fields below */
	uint64_t next;			/* end of the last read */
	bool reread;			/* chain_stream_reread; immutable */
	uint64_t pf_end;		/* readahead submitted up to here */
	unsigned run;			/* in-order reads in a row */
	/* With -o materialize only: which pages of seen_layer this stream
	 * has read (a bit per SEEN_PAGE), to tell a reader that went
	 * through all of it (fs/fcopy.c), in whatever order its requests
	 * came: the kernel's readahead requests run on several threads. */
	uint64_t *seen;
	uint64_t seen_pages, seen_count;
	const struct chain_layer *seen_layer;	/* compared, never followed */
	/* The version last read: compared, never followed (it may be
	 * gone). */
	const struct chain_layer *layer;
};

/*
 * Checks ahead of the reader the blocks [src, src_end) of raw local file
 * f against their checksums and marks them (sfile_mark_checked), so the
 * reader's replies splice them from the page cache (fs/rvec.c) and the
 * read and hash happen here, on another core. A block that does not
 * match is left unmarked: the reader reads it, and reports it.
 */
static void check_ahead(struct chain *c, struct sfile *f, uint64_t src,
			uint64_t src_end)
{
	/* Blocks per pread: 128 KiB, under malloc's mmap threshold. */
	enum { CHUNK = 32 };
	uint8_t *buf = NULL;

	if (src_end > f->size)
		src_end = f->size;
	for (uint64_t b = src / SUM_BLOCK; b * SUM_BLOCK < src_end;) {
		if (sfile_checked(f, b * SUM_BLOCK, 1)) {
			b++;
			continue;
		}
		uint64_t n = 1;
		while (n < CHUNK && (b + n) * SUM_BLOCK < src_end &&
		       !sfile_checked(f, (b + n) * SUM_BLOCK, 1))
			n++;
		if (!buf && !(buf = malloc(CHUNK * SUM_BLOCK)))
			return;
		uint64_t at = b * SUM_BLOCK;
		size_t want = (size_t)(f->size - at < n * SUM_BLOCK ?
				       f->size - at : n * SUM_BLOCK);
		if (blob_pread(f->b, buf, want, at) != (ssize_t)want)
			break;	/* the reader will hit it and report */
		for (uint64_t k = 0; k < n; k++) {
			size_t bl = want - k * SUM_BLOCK < SUM_BLOCK ?
				    (size_t)(want - k * SUM_BLOCK) : SUM_BLOCK;
			if (b + k < f->nsum && XXH3_64bits(buf + k * SUM_BLOCK,
				bl) == f->sum[b + k])
			{
				sfile_mark_checked(f, at + k * SUM_BLOCK, bl);
				atomic_fetch_add(&c->pf_checked, 1);
			}
		}
		b += n;
	}
	free(buf);
}

/* Decodes into the cache the zstd frames or windowed sections [src,
 * src_end) of f needs; checks ahead the blocks of a local raw file (the
 * OS reads those ahead itself). */
static void prefetch_file(struct chain *c, struct sfile *f, uint64_t src,
			  uint64_t src_end, bool once)
{
	if (f && f->kind == SF_RAW && f->ok && f->b && f->wfd < 0 &&
	    blob_fd(f->b) >= 0) {
		/* Marks only pay when replies splice (fs/rvec.c): without
		 * that the reader reads and checks the block itself. */
		if (atomic_load(&c->fd_replies))
			check_ahead(c, f, src, src_end);
		return;
	}
	if (f && f->kind == SF_WINDOWED) {
		/* Its decompressed lzma sections, a window each. */
		sfile_prefetch_windowed(c, f, src, src_end, once);
		return;
	}
	if (!f || f->kind != SF_ZSTD)
		return;
	while (src < src_end) {
		struct bcache_blk blk;
		size_t k = zframe_find(f->z, src);

		if (k >= zframe_count(f->z))
			return;
		const struct zframe_entry *fe = zframe_frame(f->z, k);
		int rc = (once ? bcache_get_ahead : bcache_get)(
			c->cache, f->key, k, fe->raw_len, &blk);
		if (rc < 0)
			return;
		if (rc == BCACHE_MISS) {
			struct zframe_dctx *dc = sfile_dctx_get(c);
			ssize_t r = dc ? zframe_read_frame(f->z, dc, k,
							   blk.data,
							   fe->raw_len) :
					 -ENOMEM;
			if (dc)
				sfile_dctx_put(c, dc);
			if (r != (ssize_t)fe->raw_len) {
				/* The reader will hit it and report. */
				bcache_abandon(c->cache, &blk);
				return;
			}
			bcache_publish(c->cache, &blk, fe->raw_len);
			atomic_fetch_add(&c->pf_frames, 1);
		}
		bcache_put(c->cache, &blk);
		src = fe->raw_off + fe->raw_len;
	}
}

/* Decodes into the cache what [off, off+len) of j->L reads. */
static void prefetch(struct chain *c, const struct pf_job *j)
{
	struct chain_layer *L = j->L;
	size_t n, i;
	const struct xext *e;
	uint64_t off = j->off, end;

	if (L->damage[0] || off >= L->size)
		return;
	end = j->len > L->size - off ? L->size : off + j->len;
	e = xindex_ext(L->x, &n);
	for (i = xindex_find(L->x, off); i < n && e[i].off < end; i++) {
		if (xext_is_fill(&e[i]))
			continue;
		struct sfile *f = layer_fid_file(L, xext_fid(&e[i]));
		uint64_t a = e[i].off > off ? e[i].off : off;
		uint64_t b = e[i + 1].off < end ? e[i + 1].off : end;
		uint64_t src = xext_src(&e[i]) + (a - e[i].off);
		prefetch_file(c, f, src, src + (b - a), j->once);
	}
}

static void *pf_worker(void *arg)
{
	struct chain *c = arg;
	struct pf_job j;

	pthread_mutex_lock(&c->pf_lock);
	for (;;) {
		while (!c->pf_count && !c->pf_stop)
			pthread_cond_wait(&c->pf_cond, &c->pf_lock);
		if (c->pf_stop)
			break;
		j = c->pf_q[c->pf_head];
		c->pf_head = (c->pf_head + 1) % PF_QUEUE;
		c->pf_count--;
		pthread_mutex_unlock(&c->pf_lock);
		prefetch(c, &j);
		layer_put(c, j.L);
		pthread_mutex_lock(&c->pf_lock);
	}
	pthread_mutex_unlock(&c->pf_lock);
	return NULL;
}

/* Queues readahead in chunks, so several workers share one window. */
void ra_submit(struct chain *c, struct chain_layer *L, uint64_t off,
	       uint64_t len, bool once)
{
	const uint64_t chunk = (uint64_t)1 << 20;

	if (!c->pf_nthreads)
		return;
	pthread_mutex_lock(&c->pf_lock);
	for (uint64_t o = off; o < off + len; o += chunk) {
		if (c->pf_count == PF_QUEUE) {
			atomic_fetch_add(&c->pf_dropped, 1);
			break;
		}
		struct pf_job *j = &c->pf_q[(c->pf_head + c->pf_count) % PF_QUEUE];
		layer_ref(L);
		j->L = L;
		j->off = o;
		j->len = chunk;
		j->once = once;
		c->pf_count++;
		atomic_fetch_add(&c->pf_jobs, 1);
	}
	pthread_cond_broadcast(&c->pf_cond);
	pthread_mutex_unlock(&c->pf_lock);
}

void ra_stop(struct chain *c)
{
	pthread_mutex_lock(&c->pf_lock);
	c->pf_stop = 1;
	pthread_cond_broadcast(&c->pf_cond);
	pthread_mutex_unlock(&c->pf_lock);
	for (size_t i = 0; i < c->pf_nthreads; i++)
		pthread_join(c->pf_threads[i], NULL);
	/* Jobs nobody ran still hold their layer. */
	while (c->pf_count) {
		layer_put(c, c->pf_q[c->pf_head].L);
		c->pf_head = (c->pf_head + 1) % PF_QUEUE;
		c->pf_count--;
	}
	free(c->pf_threads);
	c->pf_threads = NULL;
	c->pf_nthreads = 0;
}

int chain_start(struct chain *c)
{
	long n = c->o.prefetch_threads;

	if (n < 0 || c->pf_nthreads)
		return 0;
	pthread_mutex_lock(&c->pf_lock);
	c->pf_stop = 0;		/* after an earlier ra_stop */
	pthread_mutex_unlock(&c->pf_lock);
	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	c->pf_threads = calloc((size_t)n, sizeof(*c->pf_threads));
	if (!c->pf_threads)
		return -ENOMEM;
	for (long i = 0; i < n; i++) {
		if (pthread_create(&c->pf_threads[i], NULL, pf_worker, c))
			break;
		c->pf_nthreads++;
	}
	return 0;
}

int chain_stream_new(struct chain_stream **out)
{
	struct chain_stream *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	*out = st;
	return 0;
}

void chain_stream_reread(struct chain_stream *st)
{
	st->reread = true;
}

void chain_stream_free(struct chain_stream *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st->seen);
	free(st);
}

/* Marks the pages [off, off+len) of L read (st->lock held). Returns 1
 * when the last unread page of L was read by this stream, once. */
static int seen_note(struct chain_stream *st, const struct chain_layer *L,
		     uint64_t off, size_t len)
{
	if (st->seen_layer != L) {
		free(st->seen);
		st->seen_layer = L;
		st->seen_count = 0;
		st->seen_pages = (L->size + SEEN_PAGE - 1) / SEEN_PAGE;
		st->seen = calloc(st->seen_pages / 64 + 1, 8);
	}
	if (!st->seen || !len || st->seen_count == st->seen_pages)
		return 0;
	for (uint64_t p = off / SEEN_PAGE;
	     p <= (off + len - 1) / SEEN_PAGE && p < st->seen_pages; p++) {
		uint64_t bit = (uint64_t)1 << (p % 64);
		if (!(st->seen[p / 64] & bit)) {
			st->seen[p / 64] |= bit;
			st->seen_count++;
		}
	}
	return st->seen_count == st->seen_pages;
}

int ra_note(struct chain *c, struct chain_stream *st,
	    struct chain_layer *L, uint64_t off, size_t len)
{
	uint64_t from = 0, want = 0;
	int whole = 0;

	pthread_mutex_lock(&st->lock);
	int seq = st->layer == L && off + PF_SLACK >= st->next &&
		  off <= st->next + PF_SLACK;
	st->run = seq ? st->run + 1 : 0;
	if (c->o.fcopy_max)
		whole = seen_note(st, L, off, len);
	if (!seq || st->pf_end < off)
		st->pf_end = off + len;
	if (off + len > st->next || !seq)
		st->next = off + len;
	st->layer = L;
	/* Not at a stream's first read, even from offset 0 (2e6f8fb did
	 * that): the workers then decoded 8 MiB on both cores while the
	 * first read decoded its own frame, and time to first byte at depth
	 * 5 went from 0.52-0.61 ms to 0.5-4.1 ms (a bisect over the builds,
	 * 12 fresh mounts each). The kernel's own readahead requests make
	 * the run within the first MiB, and a cold sequential read measured
	 * the same without it (1493-1729 against 459-1698 MB/s, 5 mounts
	 * each, alternating). */
	if (st->run >= PF_MIN_RUN &&
	    st->pf_end < off + len + PF_WINDOW) {
		from = st->pf_end > off + len ? st->pf_end : off + len;
		want = off + len + PF_WINDOW - from;
		st->pf_end = from + want;
	}
	pthread_mutex_unlock(&st->lock);
	if (want && !fcopy_of(L))
		ra_submit(c, L, from, want, !st->reread);
	return whole;
}
