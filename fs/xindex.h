/* SPDX-License-Identifier: MIT */
/*
 * xindex: the composed ("flattened") extent index of one layer.
 *
 * A layer's bytes are a sequence of extents, each "bytes of stored file F
 * from offset X" or "byte B repeated". Layer N's index is built from layer
 * N-1's and patch N's ops (COPYs are followed down by slicing the parent's
 * extents), so reading any layer is one binary search plus copies, whatever
 * the chain depth. Extents tile the layer exactly; a sentinel extent at the
 * layer size ends the array, so extent i spans [ext[i].off, ext[i+1].off).
 *
 * Persisted under .snapfs/index/ as a versioned, checksummed file that is
 * mmap'd on load. The file names nothing: file ids are the chain's.
 *
 * Not here: reading bytes, chains, VCDIFF. An xindex is immutable after
 * build or load and may be shared by threads; an xbuild is one thread's.
 */
#ifndef SNAPFS_FS_XINDEX_H
#define SNAPFS_FS_XINDEX_H

#include <stddef.h>
#include <stdint.h>

/*
 * One extent, 16 bytes. ref packs: bit 63 = fill; for a fill the low 8 bits
 * are the byte; otherwise bits 43..62 are the file id and bits 0..42 the
 * offset in that file (8 TiB). File ids are 2 * snapshot id for a layer's
 * data file and 2 * id + 1 for its aux file (fs/chain.c): ids, never
 * positions, so a change elsewhere in the tree leaves an index valid.
 */
struct xext {
	uint64_t off;
	uint64_t ref;
};

#define XEXT_FILL ((uint64_t)1 << 63)
#define XEXT_FID_SHIFT 43
#define XEXT_FID_MAX 0xfffffu
#define XEXT_SRC_MAX (((uint64_t)1 << XEXT_FID_SHIFT) - 1)

static inline int xext_is_fill(const struct xext *e)
{
	return (e->ref & XEXT_FILL) != 0;
}
static inline uint8_t xext_byte(const struct xext *e)
{
	return (uint8_t)e->ref;
}
static inline unsigned xext_fid(const struct xext *e)
{
	return (unsigned)((e->ref >> XEXT_FID_SHIFT) & XEXT_FID_MAX);
}
static inline uint64_t xext_src(const struct xext *e)
{
	return e->ref & XEXT_SRC_MAX;
}

struct xindex;
struct xbuild;

/* --- a finished index --- */

/* Number of extents (without the sentinel); ext[n].off == size. */
const struct xext *xindex_ext(const struct xindex *x, size_t *n);
uint64_t xindex_size(const struct xindex *x);
/* Index of the extent holding off (off < size). */
size_t xindex_find(const struct xindex *x, uint64_t off);
/* A caller's 64-bit tag, kept in the index file (0 unless set). The
 * chain keeps there the stamp of the aux file the extents point into. */
uint64_t xindex_tag(const struct xindex *x);
void xindex_set_tag(struct xindex *x, uint64_t tag);
/* A one-extent index: the whole of file fid, size bytes (the base). */
int xindex_new_file(struct xindex **out, unsigned fid, uint64_t size);
void xindex_free(struct xindex *x);

/*
 * Loads dir/name (dirfd-relative) if its stamp equals the given one, its
 * checksum holds and its structure is sound (offsets strictly increasing
 * from 0 to the size, every file id accepted by fid_ok): a checksum is no
 * proof against a crafted file. Returns 0, -ENOENT if absent, -ESTALE if
 * stale, damaged or of another version (the caller rebuilds), -ELOOP or
 * -EINVAL for a symlink or a FIFO/device in its place (never followed,
 * never waited on; the caller rebuilds and replaces it), -errno for I/O.
 */
int xindex_load(struct xindex **out, int dirfd, const char *name,
		uint64_t stamp, int (*fid_ok)(unsigned fid, void *arg),
		void *arg);
/* Writes the index file (header, extents) to fd from its start; the
 * caller makes that atomic (store_replace). Returns 0 or -errno. */
int xindex_write(const struct xindex *x, int fd, uint64_t stamp);

/*
 * Rewrites x, the index of a layer built on parent P, for a new version
 * of P (same bytes, other files: P was rebased). The extents of x chosen
 * by dead(fid, arg) != 0 must hold bytes x took from p_old; each is found
 * in p_old (an extent there with the same file bytes) and replaced by the
 * same range of p_new. Reads no data: the cost is the extents'.
 * Returns 0 with the new index in *out, -ENOMEM, or -EBADMSG if some
 * dead bytes are not in p_old (x was not built on it).
 */
int xindex_remap(const struct xindex *x, const struct xindex *p_old,
		 const struct xindex *p_new,
		 int (*dead)(unsigned fid, void *arg), void *arg,
		 struct xindex **out);

/* --- building --- */

int xbuild_new(struct xbuild **out);
void xbuild_free(struct xbuild *b);
/* Appends len bytes of file fid from src; merges with a contiguous tail. */
int xbuild_file(struct xbuild *b, uint64_t len, unsigned fid, uint64_t src);
int xbuild_fill(struct xbuild *b, uint64_t len, uint8_t byte);
/* Appends [from, from+len) of the index x (a parent layer). -EBADMSG if
 * the range is outside x. */
int xbuild_slice(struct xbuild *b, const struct xindex *x, uint64_t from,
		 uint64_t len);
/*
 * Appends [from, from+len) of what was built so far, front to back, so a
 * range that overlaps its own output repeats with period size - from (the
 * VCDIFF target-copy rule). If that would add more than max_ext extents,
 * adds nothing and returns -E2BIG (the caller materialises the bytes).
 */
int xbuild_copy_self(struct xbuild *b, uint64_t from, uint64_t len,
		     size_t max_ext);
/* Drops extents n.. (a boundary), so the index ends at their start. */
void xbuild_truncate(struct xbuild *b, size_t n);
/* Appends len bytes described by ref (as in struct xext). */
int xbuild_ref(struct xbuild *b, uint64_t len, uint64_t ref);
uint64_t xbuild_size(const struct xbuild *b);
/* A read-only view of what is built so far, valid until the next append:
 * usable with the same read code as a finished index. */
const struct xindex *xbuild_view(struct xbuild *b);
/* Moves the extents of file fid at offsets >= from by to - from (each
 * src becomes src - from + to), for a builder that placed them before
 * their final offsets were known. Contiguous extents stay as merged.
 * 0, or -EOVERFLOW past XEXT_SRC_MAX. */
int xbuild_move_file(struct xbuild *b, unsigned fid, uint64_t from,
		     uint64_t to);
/* Ends the build; the builder is consumed (freed) either way. */
int xbuild_finish(struct xbuild *b, struct xindex **out);

#endif
