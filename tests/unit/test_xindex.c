/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of fs/xindex: random builds compared byte for byte with a
 * reference model (plain byte arrays built by the same operations done
 * the naive way), persistence round trips, and rejection of stale or
 * damaged index files.
 */
#include "fs/xindex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
/* Contents of "stored file" fid at off: any fixed function will do. */
static uint8_t file_byte(unsigned fid, uint64_t off)
{
	uint64_t h = (off + 1) * 0x9e3779b97f4a7c15ull ^ (fid * 0xbf58476d1ce4e5b9ull);
	return (uint8_t)(h >> 56);
}

/* Materialises [0, size) of an index into buf. */
static void expand(const struct xindex *x, uint8_t *buf)
{
	size_t n;
	const struct xext *e = xindex_ext(x, &n);

	for (size_t i = 0; i < n; i++) {
		uint64_t len = e[i + 1].off - e[i].off;
		for (uint64_t k = 0; k < len; k++)
			buf[e[i].off + k] = xext_is_fill(&e[i]) ?
				xext_byte(&e[i]) :
				file_byte(xext_fid(&e[i]), xext_src(&e[i]) + k);
	}
}

static void test_base(void)
{
	struct xindex *x;
	size_t n;

	T_EQ(xindex_new_file(&x, 0, 1000), 0);
	const struct xext *e = xindex_ext(x, &n);
	T_EQ(n, 1);
	T_EQ(e[1].off, 1000);
	T_EQ(xindex_find(x, 999), 0);
	xindex_free(x);
	T_EQ(xindex_new_file(&x, 3, 0), 0);
	xindex_ext(x, &n);
	T_EQ(n, 0);
	xindex_free(x);
}

/* Three generations of random edits, each checked against the model. */
static void test_random_chain(void)
{
	enum { SZ = 1 << 16 };
	struct xindex *parent;
	uint8_t *pm = malloc(SZ * 4), *cm = malloc(SZ * 4), *got = malloc(SZ * 4);
	uint64_t psize = SZ;

	T_EQ(xindex_new_file(&parent, 0, psize), 0);
	for (uint64_t k = 0; k < psize; k++)
		pm[k] = file_byte(0, k);
	for (int gen = 1; gen <= 6; gen++) {
		struct xbuild *b;
		uint64_t size = 0;

		T_EQ(xbuild_new(&b), 0);
		while (size < SZ) {
			uint64_t len = 1 + t_xorshift(&rng) % 700, r = t_xorshift(&rng) % 4;
			if (r == 0) {
				uint64_t src = t_xorshift(&rng) % 100000;
				T_EQ(xbuild_file(b, len, (unsigned)gen, src), 0);
				for (uint64_t k = 0; k < len; k++)
					cm[size + k] = file_byte((unsigned)gen, src + k);
			} else if (r == 1) {
				uint8_t byte = (uint8_t)t_xorshift(&rng);
				T_EQ(xbuild_fill(b, len, byte), 0);
				memset(cm + size, byte, len);
			} else if (r == 2 || size == 0) {
				if (len > psize)
					len = psize;
				uint64_t from = t_xorshift(&rng) % (psize - len + 1);
				T_EQ(xbuild_slice(b, parent, from, len), 0);
				memcpy(cm + size, pm + from, len);
			} else {
				uint64_t from = t_xorshift(&rng) % size;
				/* Overlapping or not, copied front to back. */
				if (xbuild_copy_self(b, from, len, 1 << 20) != 0) {
					T_CHECK(0);
					break;
				}
				for (uint64_t k = 0; k < len; k++)
					cm[size + k] = cm[from + k];
			}
			size += len;
			T_EQ(xbuild_size(b), size);
		}
		/* The partial view reads like a finished index. */
		const struct xindex *v = xbuild_view(b);
		T_EQ(xindex_size(v), size);
		struct xindex *x;
		T_EQ(xbuild_finish(b, &x), 0);
		expand(x, got);
		T_CHECK(memcmp(got, cm, size) == 0);
		for (int i = 0; i < 200; i++) {
			uint64_t off = t_xorshift(&rng) % size;
			size_t n, j = xindex_find(x, off);
			const struct xext *e = xindex_ext(x, &n);
			T_CHECK(j < n && e[j].off <= off && off < e[j + 1].off);
		}
		xindex_free(parent);
		parent = x;
		psize = size;
		uint8_t *t = pm; pm = cm; cm = t;
	}
	xindex_free(parent);
	free(pm);
	free(cm);
	free(got);
}

static void test_merge_and_period(void)
{
	struct xbuild *b;
	struct xindex *x;
	size_t n;

	T_EQ(xbuild_new(&b), 0);
	T_EQ(xbuild_file(b, 100, 1, 500), 0);
	T_EQ(xbuild_file(b, 50, 1, 600), 0);	/* contiguous: merges */
	T_EQ(xbuild_fill(b, 10, 0), 0);
	T_EQ(xbuild_fill(b, 10, 0), 0);		/* same byte: merges */
	T_EQ(xbuild_fill(b, 1, 7), 0);
	/* period 1 over a fill stays one extent, even for 16 MiB */
	T_EQ(xbuild_copy_self(b, 170, 16 << 20, 4), 0);
	xindex_ext(xbuild_view(b), &n);
	T_EQ(n, 3);
	/* period 2 of two files explodes: refused and rolled back */
	T_EQ(xbuild_file(b, 1, 2, 0), 0);
	T_EQ(xbuild_file(b, 1, 3, 0), 0);
	uint64_t before = xbuild_size(b);
	T_EQ(xbuild_copy_self(b, before - 2, 1 << 20, 1000), -E2BIG);
	T_EQ(xbuild_size(b), before);
	xindex_ext(xbuild_view(b), &n);
	T_EQ(n, 5);
	T_EQ(xbuild_copy_self(b, before - 2, 100, 1000), 0);
	T_EQ(xbuild_size(b), before + 100);
	T_EQ(xbuild_copy_self(b, before + 200, 1, 10), -EBADMSG);
	T_EQ(xbuild_finish(b, &x), 0);
	xindex_free(x);
}

static int fid_max = 5;
static int fid_ok(unsigned fid, void *arg)
{
	(void)arg;
	return (int)fid <= fid_max;
}

static int save(const struct xindex *x, int dfd, const char *name,
		uint64_t stamp)
{
	int fd = openat(dfd, name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	int rc = fd < 0 ? -errno : xindex_write(x, fd, stamp);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void test_persist(void)
{
	char dir[] = "/tmp/test_xindex.XXXXXX";
	struct xbuild *b;
	struct xindex *x, *y;
	size_t n1, n2;

	T_CHECK(mkdtemp(dir) != NULL);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	T_EQ(xbuild_new(&b), 0);
	for (int i = 0; i < 5000; i++)
		T_EQ(xbuild_file(b, 1 + t_xorshift(&rng) % 4096, 1 + t_xorshift(&rng) % 5, t_xorshift(&rng) % 1000000), 0);
	T_EQ(xbuild_finish(b, &x), 0);
	T_EQ(save(x, dfd, "a.idx", 42), 0);
	T_EQ(xindex_load(&y, dfd, "a.idx", 42, fid_ok, NULL), 0);
	const struct xext *e1 = xindex_ext(x, &n1), *e2 = xindex_ext(y, &n2);
	T_EQ(n1, n2);
	T_CHECK(memcmp(e1, e2, (n1 + 1) * sizeof(*e1)) == 0);
	T_EQ(xindex_size(y), xindex_size(x));
	xindex_free(y);
	T_EQ(xindex_load(&y, dfd, "a.idx", 43, fid_ok, NULL), -ESTALE);
	/* File ids above what the layer may use: refused. */
	fid_max = 4;
	T_EQ(xindex_load(&y, dfd, "a.idx", 42, fid_ok, NULL), -ESTALE);
	fid_max = 5;
	T_EQ(xindex_load(&y, dfd, "missing.idx", 42, fid_ok, NULL), -ENOENT);
	/* One flipped bit anywhere in the extents: refused. */
	int fd = openat(dfd, "a.idx", O_RDWR);
	uint8_t c;
	T_EQ(pread(fd, &c, 1, 64 + 16 * 1234 + 3), 1);
	c ^= 0x10;
	T_EQ(pwrite(fd, &c, 1, 64 + 16 * 1234 + 3), 1);
	T_EQ(xindex_load(&y, dfd, "a.idx", 42, fid_ok, NULL), -ESTALE);
	/* Truncated: refused. */
	T_EQ(ftruncate(fd, 64 + 16 * 100), 0);
	T_EQ(xindex_load(&y, dfd, "a.idx", 42, fid_ok, NULL), -ESTALE);
	close(fd);
	unlinkat(dfd, "a.idx", 0);
	close(dfd);
	rmdir(dir);
	xindex_free(x);
}

/*
 * A child built on a parent whose files 10 and 11 die (the parent is
 * rebased onto file 12, which holds the parent's bytes): the remapped
 * child reads the same bytes, keeps its own and live extents as they
 * are, and no longer names a dead file.
 */
static const uint8_t *rebased;	/* file 12's bytes */
static uint8_t byte_of(unsigned fid, uint64_t off)
{
	return fid == 12 ? rebased[off] : file_byte(fid, off);
}

static void expand_with(const struct xindex *x, uint8_t *buf)
{
	size_t n;
	const struct xext *e = xindex_ext(x, &n);

	for (size_t i = 0; i < n; i++)
		for (uint64_t k = 0; k < e[i + 1].off - e[i].off; k++)
			buf[e[i].off + k] = xext_is_fill(&e[i]) ?
				xext_byte(&e[i]) :
				byte_of(xext_fid(&e[i]), xext_src(&e[i]) + k);
}

static int dead_10_11(unsigned fid, void *arg)
{
	(void)arg;
	return fid == 10 || fid == 11;
}

static void test_remap(void)
{
	enum { SZ = 1 << 15 };
	uint8_t *pm = malloc(SZ), *cm = malloc(SZ), *got = malloc(SZ);

	for (int round = 0; round < 20; round++) {
		struct xbuild *b;
		struct xindex *p_old, *p_new, *x, *y;
		uint64_t size = 0;

		/* The old parent: pieces of live file 3, dead 10 and 11
		 * (reused ranges included), fills. */
		T_EQ(xbuild_new(&b), 0);
		while (size < SZ) {
			uint64_t len = 1 + t_xorshift(&rng) % 500, r = t_xorshift(&rng) % 4;
			if (size + len > SZ)
				len = SZ - size;
			if (r == 3)
				T_EQ(xbuild_fill(b, len, (uint8_t)t_xorshift(&rng)), 0);
			else
				T_EQ(xbuild_file(b, len, r == 0 ? 3 : 10 + (unsigned)(r - 1),
						 t_xorshift(&rng) % 3000), 0);
			size += len;
		}
		T_EQ(xbuild_finish(b, &p_old), 0);
		expand(p_old, pm);
		rebased = pm;
		/* The new parent: live and fill extents kept, dead ones now
		 * in file 12 at the parent's own offsets. */
		size_t n;
		const struct xext *e = xindex_ext(p_old, &n);
		T_EQ(xbuild_new(&b), 0);
		for (size_t i = 0; i < n; i++) {
			uint64_t len = e[i + 1].off - e[i].off;
			if (!xext_is_fill(&e[i]) && dead_10_11(xext_fid(&e[i]), NULL))
				T_EQ(xbuild_file(b, len, 12, e[i].off), 0);
			else
				T_EQ(xbuild_ref(b, len, e[i].ref), 0);
		}
		T_EQ(xbuild_finish(b, &p_new), 0);
		/* The child: slices of the old parent, its own file 20,
		 * fills, target copies. */
		T_EQ(xbuild_new(&b), 0);
		size = 0;
		while (size < SZ) {
			uint64_t len = 1 + t_xorshift(&rng) % 900, r = t_xorshift(&rng) % 4;
			if (size + len > SZ)
				len = SZ - size;
			if (r == 0) {
				T_EQ(xbuild_file(b, len, 20, t_xorshift(&rng) % 5000), 0);
			} else if (r == 1) {
				T_EQ(xbuild_fill(b, len, 0), 0);
			} else if (r == 2 || size == 0) {
				T_EQ(xbuild_slice(b, p_old, t_xorshift(&rng) % (SZ - len + 1), len), 0);
			} else {
				T_EQ(xbuild_copy_self(b, t_xorshift(&rng) % size, len, 1 << 20), 0);
			}
			size += len;
		}
		T_EQ(xbuild_finish(b, &x), 0);
		expand_with(x, cm);
		T_EQ(xindex_remap(x, p_old, p_new, dead_10_11, NULL, &y), 0);
		T_EQ(xindex_size(y), xindex_size(x));
		expand_with(y, got);
		T_CHECK(memcmp(got, cm, SZ) == 0);
		e = xindex_ext(y, &n);
		int named_dead = 0;
		for (size_t i = 0; i < n; i++)
			named_dead |= !xext_is_fill(&e[i]) &&
				      dead_10_11(xext_fid(&e[i]), NULL);
		T_CHECK(!named_dead);
		xindex_free(y);
		/* A child not built on p_old: its dead bytes are not there. */
		struct xindex *alien;
		T_EQ(xindex_new_file(&alien, 10, 1 << 20), 0);
		T_EQ(xindex_remap(alien, p_old, p_new, dead_10_11, NULL, &y), -EBADMSG);
		xindex_free(alien);
		xindex_free(x);
		xindex_free(p_old);
		xindex_free(p_new);
	}
	free(pm);
	free(cm);
	free(got);
}

int main(void)
{
	T_RUN(test_remap);
	T_RUN(test_base);
	T_RUN(test_random_chain);
	T_RUN(test_merge_and_period);
	T_RUN(test_persist);
	return t_done();
}
