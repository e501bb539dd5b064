/* SPDX-License-Identifier: MIT */
/*
 * xindex: composed extent index of one layer (see xindex.h).
 *
 * On disk (host byte order; another host's file fails the version check
 * and is rebuilt): a 64-byte header {magic, version, header size, stamp,
 * layer size, extent count, XXH3 of the extent array} followed by n + 1
 * extents, the last being the sentinel. Loading maps the file and checks
 * the digest once, so a torn or bit-rotted index is rebuilt, never used.
 *
 * The builder keeps the sentinel current after every append, which is what
 * lets xbuild_view() hand out the partial index to the same read code that
 * serves finished ones (target COPYs read what the window built so far).
 */
#include "fs/xindex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/fdio.h"
#include "fs/safefile.h"

#define XI_MAGIC "SNAPIDX1"
#define XI_VERSION 2u	/* 2: 20-bit file ids, which are snapshot ids */

struct xi_hdr {
	char magic[8];
	uint32_t version;
	uint32_t hdr_size;
	uint64_t stamp;
	uint64_t size;
	uint64_t n;
	uint64_t digest;
	uint64_t tag;
	uint64_t reserved;
};

struct xindex {
	struct xext *ext;	/* n + 1 entries, ext[n].off == size */
	size_t n;
	uint64_t size;
	uint64_t tag;
	void *map;		/* non-NULL if ext lives in a mapping */
	size_t map_len;
};

struct xbuild {
	struct xindex x;	/* ext is heap, capacity cap (>= n + 1) */
	size_t cap;
};

const struct xext *xindex_ext(const struct xindex *x, size_t *n)
{
	*n = x->n;
	return x->ext;
}

uint64_t xindex_size(const struct xindex *x)
{
	return x->size;
}

uint64_t xindex_tag(const struct xindex *x)
{
	return x->tag;
}

void xindex_set_tag(struct xindex *x, uint64_t tag)
{
	x->tag = tag;
}

size_t xindex_find(const struct xindex *x, uint64_t off)
{
	size_t lo = 0, hi = x->n;	/* answer in [lo, hi) */

	if (x->n == 0)
		return 0;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (x->ext[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int xindex_new_file(struct xindex **out, unsigned fid, uint64_t size)
{
	struct xindex *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->ext = calloc(2, sizeof(*x->ext));
	if (!x->ext) {
		free(x);
		return -ENOMEM;
	}
	x->n = size ? 1 : 0;
	x->size = size;
	x->ext[0].ref = (uint64_t)fid << XEXT_FID_SHIFT;
	x->ext[x->n].off = size;
	*out = x;
	return 0;
}

void xindex_free(struct xindex *x)
{
	if (!x)
		return;
	if (x->map)
		munmap(x->map, x->map_len);
	else
		free(x->ext);
	free(x);
}

int xindex_load(struct xindex **out, int dirfd, const char *name,
		uint64_t stamp, int (*fid_ok)(unsigned fid, void *arg),
		void *arg)
{
	struct xindex *x = NULL;
	struct stat st;
	void *map = MAP_FAILED;
	/* A symlink or FIFO planted in .snapfs/index/ is refused (and the
	 * index rebuilt over it), never followed or waited on. */
	int rc, fd = safefile_open(dirfd, name, O_RDONLY, 0, NULL, NULL);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = -ESTALE;
	if ((size_t)st.st_size < sizeof(struct xi_hdr) + sizeof(struct xext))
		goto out;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	const struct xi_hdr *h = map;
	if (memcmp(h->magic, XI_MAGIC, 8) || h->version != XI_VERSION ||
	    h->hdr_size != sizeof(*h) || h->stamp != stamp)
		goto out;
	if (h->n >= ((size_t)st.st_size - sizeof(*h)) / sizeof(struct xext) ||
	    (size_t)st.st_size != sizeof(*h) + (h->n + 1) * sizeof(struct xext))
		goto out;
	const struct xext *e = (const struct xext *)(h + 1);
	if (XXH3_64bits(e, (h->n + 1) * sizeof(*e)) != h->digest)
		goto out;
	if (e[h->n].off != h->size || (h->n && e[0].off != 0))
		goto out;
	for (size_t i = 0; i < h->n; i++)
		if (e[i + 1].off <= e[i].off ||
		    (!xext_is_fill(&e[i]) && !fid_ok(xext_fid(&e[i]), arg)))
			goto out;
	x = calloc(1, sizeof(*x));
	if (!x) {
		rc = -ENOMEM;
		goto out;
	}
	x->ext = (struct xext *)e;
	x->n = h->n;
	x->size = h->size;
	x->tag = h->tag;
	x->map = map;
	x->map_len = (size_t)st.st_size;
	map = MAP_FAILED;
	*out = x;
	rc = 0;
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return rc;
}

int xindex_write(const struct xindex *x, int fd, uint64_t stamp)
{
	struct xi_hdr h;
	size_t bytes = (x->n + 1) * sizeof(struct xext);
	int rc;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, XI_MAGIC, 8);
	h.version = XI_VERSION;
	h.hdr_size = sizeof(h);
	h.stamp = stamp;
	h.size = x->size;
	h.n = x->n;
	h.digest = XXH3_64bits(x->ext, bytes);
	h.tag = x->tag;
	rc = fdio_pwrite(fd, &h, sizeof(h), 0);
	if (!rc)
		rc = fdio_pwrite(fd, x->ext, bytes, sizeof(h));
	return rc;
}

/* --- building --- */

int xbuild_new(struct xbuild **out)
{
	struct xbuild *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->cap = 1024;
	b->x.ext = calloc(b->cap, sizeof(struct xext));
	if (!b->x.ext) {
		free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

void xbuild_free(struct xbuild *b)
{
	if (!b)
		return;
	free(b->x.ext);
	free(b);
}

uint64_t xbuild_size(const struct xbuild *b)
{
	return b->x.size;
}

const struct xindex *xbuild_view(struct xbuild *b)
{
	return &b->x;
}

/* Does an extent with ref continue the last one, which ends at size? */
static int continues(const struct xbuild *b, uint64_t ref)
{
	const struct xext *last;

	if (b->x.n == 0)
		return 0;
	last = &b->x.ext[b->x.n - 1];
	if (ref & XEXT_FILL)
		return last->ref == ref;
	if (last->ref & XEXT_FILL)
		return 0;
	return (last->ref >> XEXT_FID_SHIFT) == (ref >> XEXT_FID_SHIFT) &&
	       xext_src(last) + (b->x.size - last->off) == (ref & XEXT_SRC_MAX);
}

static int append(struct xbuild *b, uint64_t len, uint64_t ref)
{
	if (len == 0)
		return 0;
	if (b->x.size + len < b->x.size)
		return -EOVERFLOW;
	if (!continues(b, ref)) {
		if (b->x.n + 2 > b->cap) {
			size_t cap = b->cap * 2;
			struct xext *e = realloc(b->x.ext, cap * sizeof(*e));
			if (!e)
				return -ENOMEM;
			b->x.ext = e;
			b->cap = cap;
		}
		b->x.ext[b->x.n].off = b->x.size;
		b->x.ext[b->x.n].ref = ref;
		b->x.n++;
	}
	b->x.size += len;
	b->x.ext[b->x.n].off = b->x.size;
	b->x.ext[b->x.n].ref = 0;
	return 0;
}

int xbuild_file(struct xbuild *b, uint64_t len, unsigned fid, uint64_t src)
{
	if (fid > XEXT_FID_MAX || src > XEXT_SRC_MAX ||
	    len > XEXT_SRC_MAX - src)
		return -EOVERFLOW;
	return append(b, len, ((uint64_t)fid << XEXT_FID_SHIFT) | src);
}

int xbuild_fill(struct xbuild *b, uint64_t len, uint8_t byte)
{
	return append(b, len, XEXT_FILL | byte);
}

/*
 * Appends [from, from+len) of x. x may be the builder's own view: entries
 * are re-read by index after each append because append may move them.
 */
static int slice(struct xbuild *b, const struct xindex *x, uint64_t from,
		 uint64_t len)
{
	size_t i;
	int rc;

	if (from > x->size || len > x->size - from)
		return -EBADMSG;
	if (len == 0)
		return 0;
	i = xindex_find(x, from);
	while (len) {
		struct xext e = x->ext[i];
		uint64_t end = x->ext[i + 1].off;
		uint64_t skip = from - e.off;
		uint64_t n = end - from < len ? end - from : len;

		if (e.ref & XEXT_FILL)
			rc = append(b, n, e.ref);
		else
			rc = append(b, n, e.ref + skip);
		if (rc)
			return rc;
		from += n;
		len -= n;
		i++;
	}
	return 0;
}

void xbuild_truncate(struct xbuild *b, size_t n)
{
	if (n >= b->x.n)
		return;
	b->x.n = n;
	b->x.size = b->x.ext[n].off;
	b->x.ext[n].ref = 0;
}

int xbuild_ref(struct xbuild *b, uint64_t len, uint64_t ref)
{
	return append(b, len, ref);
}

int xbuild_slice(struct xbuild *b, const struct xindex *x, uint64_t from,
		 uint64_t len)
{
	return slice(b, x, from, len);
}

int xbuild_copy_self(struct xbuild *b, uint64_t from, uint64_t len,
		     size_t max_ext)
{
	size_t n0 = b->x.n;
	uint64_t size0 = b->x.size;
	uint64_t period, done = 0;
	int rc = 0;

	if (from >= b->x.size)
		return -EBADMSG;
	/*
	 * Byte k of the copy is T[from + k % period]. Once a whole number of
	 * periods is out, the source range [from, from + done) holds that
	 * many periods, so each step may copy twice as much as the last:
	 * log(len / period) slices, and fills merge into one extent.
	 */
	period = b->x.size - from;
	while (done < len) {
		uint64_t avail = b->x.size - from;
		uint64_t n = avail - avail % period;

		if (n > len - done)
			n = len - done;
		rc = slice(b, &b->x, from, n);
		if (rc)
			break;
		if (b->x.n - n0 > max_ext) {
			rc = -E2BIG;
			break;
		}
		done += n;
	}
	if (rc) {
		/* Roll back (appends only grow the tail or add entries). */
		b->x.n = n0;
		b->x.size = size0;
		b->x.ext[n0].off = size0;
		b->x.ext[n0].ref = 0;
	}
	return rc;
}

int xbuild_move_file(struct xbuild *b, unsigned fid, uint64_t from,
		     uint64_t to)
{
	for (size_t i = 0; i < b->x.n; i++) {
		struct xext *e = &b->x.ext[i];
		if (xext_is_fill(e) || xext_fid(e) != fid || xext_src(e) < from)
			continue;
		uint64_t src = xext_src(e) - from + to;
		uint64_t len = b->x.ext[i + 1].off - e->off;
		if (src > XEXT_SRC_MAX || len > XEXT_SRC_MAX - src)
			return -EOVERFLOW;
		e->ref = ((uint64_t)fid << XEXT_FID_SHIFT) | src;
	}
	return 0;
}

int xbuild_finish(struct xbuild *b, struct xindex **out)
{
	struct xindex *x = calloc(1, sizeof(*x));

	if (!x) {
		xbuild_free(b);
		return -ENOMEM;
	}
	*x = b->x;
	/* Give back the slack of the doubling growth. */
	struct xext *e = realloc(x->ext, (x->n + 1) * sizeof(*e));
	if (e)
		x->ext = e;
	free(b);
	*out = x;
	return 0;
}

/* --- remapping onto a rebased parent --- */

/* An extent of the old parent whose file died: where its bytes sit. */
struct rmap {
	unsigned fid;
	uint64_t src, len;	/* in the dead file */
	uint64_t poff;		/* in the parent */
};

static int rmap_cmp(const void *a, const void *b)
{
	const struct rmap *x = a, *y = b;

	if (x->fid != y->fid)
		return x->fid < y->fid ? -1 : 1;
	return x->src < y->src ? -1 : x->src > y->src;
}

/*
 * An entry of m holding byte s of file fid. Entries may overlap (a
 * parent can hold the same bytes twice); maxend[i] is the furthest end
 * among the entries of the same fid up to i, which bounds the walk back
 * from the last entry that starts at or before s.
 */
static const struct rmap *rmap_find(const struct rmap *m,
				    const uint64_t *maxend, size_t nm,
				    unsigned fid, uint64_t s)
{
	size_t lo = 0, hi = nm;	/* first entry greater than (fid, s) */

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m[mid].fid < fid || (m[mid].fid == fid && m[mid].src <= s))
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t j = lo; j-- > 0;) {
		if (m[j].fid != fid || maxend[j] <= s)
			return NULL;
		if (m[j].src + m[j].len > s)
			return &m[j];
	}
	return NULL;
}

int xindex_remap(const struct xindex *x, const struct xindex *p_old,
		 const struct xindex *p_new,
		 int (*dead)(unsigned fid, void *arg), void *arg,
		 struct xindex **out)
{
	struct rmap *m = malloc((p_old->n ? p_old->n : 1) * sizeof(*m));
	uint64_t *maxend = malloc((p_old->n ? p_old->n : 1) * sizeof(*maxend));
	struct xbuild *b = NULL;
	size_t nm = 0;
	int rc = m && maxend ? xbuild_new(&b) : -ENOMEM;

	for (size_t i = 0; !rc && i < p_old->n; i++) {
		const struct xext *e = &p_old->ext[i];
		if (xext_is_fill(e) || !dead(xext_fid(e), arg))
			continue;
		m[nm].fid = xext_fid(e);
		m[nm].src = xext_src(e);
		m[nm].len = p_old->ext[i + 1].off - e->off;
		m[nm].poff = e->off;
		nm++;
	}
	if (!rc) {
		qsort(m, nm, sizeof(*m), rmap_cmp);
		for (size_t i = 0; i < nm; i++) {
			uint64_t end = m[i].src + m[i].len;
			maxend[i] = i && m[i - 1].fid == m[i].fid &&
				    maxend[i - 1] > end ? maxend[i - 1] : end;
		}
	}
	for (size_t i = 0; !rc && i < x->n; i++) {
		const struct xext *e = &x->ext[i];
		uint64_t len = x->ext[i + 1].off - e->off;
		if (xext_is_fill(e) || !dead(xext_fid(e), arg)) {
			rc = append(b, len, e->ref);
			continue;
		}
		for (uint64_t s = xext_src(e); !rc && len;) {
			const struct rmap *r = rmap_find(m, maxend, nm,
							 xext_fid(e), s);
			if (!r) {
				rc = -EBADMSG;
				break;
			}
			uint64_t take = r->src + r->len - s;
			if (take > len)
				take = len;
			rc = slice(b, p_new, r->poff + (s - r->src), take);
			s += take;
			len -= take;
		}
	}
	free(m);
	free(maxend);
	if (rc) {
		xbuild_free(b);
		return rc;
	}
	rc = xbuild_finish(b, out);
	if (!rc)
		(*out)->tag = x->tag;
	return rc;
}
