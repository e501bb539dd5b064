/* SPDX-License-Identifier: MIT */
/*
 * zframe: random access into zstd files by frame (see zframe.h for the API
 * and zframe_int.h for the design). Builds the index at open, from the
 * seek table or by walking frame headers, and reads and checks one frame
 * at a time.
 *
 * Not here: writing frames or transcoding (zframe_write.c). Never prints,
 * logs or exits.
 */
#include "codec/zframe.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
/* For ZSTD_getFrameHeader(): exported by libzstd, only declared here. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "codec/blob.h"

#include "codec/zframe_int.h"

#define BLOCK_HDR	3
#define WALK_BUF	(64u << 10)

/* ------------------------------------------------------------------ */
/* small helpers */

/*
 * The most a frame of raw bytes may take in the file: zstd's own bound plus
 * slack for odd but legal framing. Bigger means a lying size field, and
 * refusing it keeps read buffers proportional to frame content.
 */
static uint64_t comp_bound(uint64_t raw)
{
	return (uint64_t)ZSTD_compressBound((size_t)raw) + 4096;
}

/* ------------------------------------------------------------------ */
/* the index */

struct zframe {
	struct blob *b;			/* a reference */
	uint64_t file_size;
	uint64_t raw_size;
	size_t n, cap;
	struct zframe_entry *e;		/* frames with data, raw order */
	uint32_t *sum;			/* seek-table checksums, or NULL */
	uint32_t max_frame;
};

struct zframe_dctx {
	ZSTD_DCtx *z;
	uint8_t *buf;			/* one compressed frame */
	size_t cap;
	const char *reason;
};

static int index_push(struct zframe *z, uint64_t comp_off, uint32_t comp_len,
		      uint32_t raw_len, int want_sum, uint32_t sum)
{
	if (z->n == z->cap) {
		size_t cap = z->cap ? z->cap * 2 : 64;
		struct zframe_entry *e;

		if (cap > SIZE_MAX / sizeof(*e))
			return -ENOMEM;
		e = realloc(z->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		z->e = e;
		if (want_sum) {
			uint32_t *s = realloc(z->sum, cap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			z->sum = s;
		}
		z->cap = cap;
	}
	z->e[z->n] = (struct zframe_entry){
		.raw_off = z->raw_size, .comp_off = comp_off,
		.raw_len = raw_len, .comp_len = comp_len,
	};
	if (want_sum)
		z->sum[z->n] = sum;
	z->n++;
	z->raw_size += raw_len;
	if (raw_len > z->max_frame)
		z->max_frame = raw_len;
	return 0;
}

/* A read-ahead window over the file for walking headers without one
 * syscall per 3-byte block header. */
struct walker {
	struct blob *b;
	uint64_t size;
	uint64_t boff;
	size_t blen;
	uint8_t buf[WALK_BUF];
};

/* Points *p at len (<= WALK_BUF) bytes at off; returns how many are there
 * (fewer only at end of file) or -EIO. */
static ssize_t walk_get(struct walker *w, uint64_t off, size_t len,
			const uint8_t **p)
{
	if (off < w->boff || off + len > w->boff + w->blen) {
		ssize_t got = blob_pread(w->b, w->buf, WALK_BUF, off);
		if (got < 0)
			return got;
		w->boff = off;
		w->blen = (size_t)got;
	}
	*p = w->buf + (off - w->boff);
	if (off - w->boff >= w->blen)
		return 0;
	return (ssize_t)(w->blen - (off - w->boff) < len ?
			 w->blen - (off - w->boff) : len);
}

/*
 * A frame's raw offset is the sum of the sizes before it, so one wrong
 * Decompressed_Size would shift every later frame: each would decode
 * cleanly, checksum and all, to the wrong place, and reading frame i
 * cannot notice. So every entry is checked against its frame's header at
 * open (the reads are sequential and share a read-ahead window): a data
 * entry must be a zstd frame whose content size, when stated (ours always
 * state it), is the entry's; an empty entry must be a skippable frame of
 * exactly that length or a zstd frame stating 0 bytes.
 */
static int check_entry(struct walker *w, uint64_t off, uint32_t c,
		       uint32_t r, const char **why)
{
	const uint8_t *p;
	size_t want = c < ZSTD_FRAMEHEADERSIZE_MAX ? c :
		      ZSTD_FRAMEHEADERSIZE_MAX;
	ssize_t got;
	ZSTD_frameHeader fh;
	uint32_t magic;

	if (c == 0 && r == 0)
		return 0;
	got = walk_get(w, off, want, &p);
	if (got < 0)
		return (int)got;
	if ((size_t)got != want || want < 4) {
		*why = "seek table entry too short for a frame";
		return -EBADMSG;
	}
	magic = get_le32(p);
	if (r == 0 && is_skippable(magic)) {
		if (want < SKIP_HDR || get_le32(p + 4) != c - SKIP_HDR) {
			*why = "seek table entry disagrees with skippable frame";
			return -EBADMSG;
		}
		return 0;
	}
	if (magic != ZSTD_MAGICNUMBER ||
	    ZSTD_getFrameHeader(&fh, p, want) != 0 ||
	    fh.frameType != ZSTD_frame) {
		*why = "seek table entry does not point at a zstd frame";
		return -EBADMSG;
	}
	if (fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN ? r == 0 :
	    fh.frameContentSize != r) {
		*why = "seek table size disagrees with the frame header";
		return -EBADMSG;
	}
	return 0;
}

/*
 * Seek table: the footer says how many entries there are and how wide;
 * that fixes where the skippable frame must start, and the entries'
 * compressed sizes must then tile the rest of the file exactly. Entries
 * of 0 raw bytes (skippable or empty frames) are validated but not indexed.
 */
static int load_seek_table(struct zframe *z, const uint8_t *foot,
			   const char **why)
{
	uint32_t n = get_le32(foot);
	uint8_t desc = foot[4];
	int has_sum = !!(desc & SEEK_CKSUM_FLAG);
	unsigned es = has_sum ? 12 : 8;
	uint64_t tbl = SKIP_HDR + (uint64_t)n * es + SEEK_FOOTER;
	uint64_t data_end, comp_off = 0;
	uint8_t hdr[SKIP_HDR], *chunk = NULL;
	struct walker *w = NULL;
	const size_t per_chunk = 4096;
	int big = 0, rc;
	ssize_t got;

	if (desc & SEEK_RESERVED) {
		*why = "seek table: reserved descriptor bits set";
		return -EBADMSG;
	}
	if (tbl > z->file_size) {
		*why = "seek table: claims more frames than fit in the file";
		return -EBADMSG;
	}
	data_end = z->file_size - tbl;
	got = blob_pread(z->b, hdr, sizeof(hdr), data_end);
	if (got < 0)
		return (int)got;
	if (got != SKIP_HDR || get_le32(hdr) != SEEK_SKIP_MAGIC ||
	    get_le32(hdr + 4) != tbl - SKIP_HDR) {
		*why = "seek table: skippable frame header does not match footer";
		return -EBADMSG;
	}
	chunk = malloc(per_chunk * SEEK_ENTRY_MAX);
	w = malloc(sizeof(*w));
	if (!chunk || !w) {
		rc = -ENOMEM;
		goto out;
	}
	*w = (struct walker){ .b = z->b, .size = z->file_size };
	for (uint32_t i = 0; i < n;) {
		uint32_t k = n - i < per_chunk ? n - i : (uint32_t)per_chunk;
		uint64_t at = data_end + SKIP_HDR + (uint64_t)i * es;

		got = blob_pread(z->b, chunk, (size_t)k * es, at);
		if (got < 0) {
			rc = (int)got;
			goto out;
		}
		if ((size_t)got != (size_t)k * es) {
			*why = "seek table: file shrank while reading";
			rc = -EBADMSG;
			goto out;
		}
		for (uint32_t j = 0; j < k; j++) {
			const uint8_t *p = chunk + (size_t)j * es;
			uint32_t c = get_le32(p), r = get_le32(p + 4);

			if (c > data_end - comp_off) {
				*why = "seek table: frame sizes exceed the file";
				rc = -EBADMSG;
				goto out;
			}
			if (r > 0 && c < SKIP_HDR) {
				*why = "seek table: frame too short to hold data";
				rc = -EBADMSG;
				goto out;
			}
			if (r > 0 && c > comp_bound(r)) {
				*why = "seek table: frame much larger than its content";
				rc = -EBADMSG;
				goto out;
			}
			/*
			 * Each entry's frame header is checked here only for
			 * a local file. For a blob without one (an object in
			 * a bucket), reading one header per frame would fetch
			 * nearly the whole file at open; decoding a frame
			 * makes the same checks (magic, header, sizes) before
			 * its bytes are used, so nothing unchecked is served,
			 * the damage is only found at the read.
			 */
			rc = blob_fd(w->b) >= 0 ?
			     check_entry(w, comp_off, c, r, why) : 0;
			if (rc)
				goto out;
			if (r > ZFRAME_MAX_FRAME)
				big = 1;
			else if (r > 0) {
				rc = index_push(z, comp_off, c, r, has_sum,
						has_sum ? get_le32(p + 8) : 0);
				if (rc)
					goto out;
			}
			comp_off += c;
		}
		i += k;
	}
	if (comp_off != data_end) {
		*why = "seek table: frame sizes do not add up to the file size";
		rc = -EBADMSG;
		goto out;
	}
	if (big) {
		*why = "frame larger than ZFRAME_MAX_FRAME: transcode";
		rc = -E2BIG;
		goto out;
	}
	rc = 0;
out:
	free(w);
	free(chunk);
	return rc;
}

/*
 * No seek table: index by walking frames. A zstd frame's length is its
 * header plus its blocks (each a 3-byte header and 1 byte for RLE, else
 * Block_Size bytes) plus an optional 4-byte checksum, so only headers are
 * read. Frames of unknown or too large content size end the walk: the
 * caller must transcode.
 */
static int walk_frames(struct zframe *z, const char **why)
{
	struct walker *w = malloc(sizeof(*w));
	uint64_t off = 0;
	int rc = 0;

	if (!w)
		return -ENOMEM;
	*w = (struct walker){ .b = z->b, .size = z->file_size };
	while (off < z->file_size) {
		const uint8_t *p;
		ssize_t got = walk_get(w, off, ZSTD_FRAMEHEADERSIZE_MAX, &p);
		ZSTD_frameHeader fh;
		uint64_t pos, nblocks, raw_min;
		uint32_t magic;
		size_t hr;

		if (got < 0) {
			rc = (int)got;
			goto out;
		}
		if (got < 4) {
			*why = "truncated frame header";
			rc = -EBADMSG;
			goto out;
		}
		magic = get_le32(p);
		if (is_skippable(magic)) {
			if (got < SKIP_HDR ||
			    get_le32(p + 4) > z->file_size - off - SKIP_HDR) {
				*why = "truncated skippable frame";
				rc = -EBADMSG;
				goto out;
			}
			off += SKIP_HDR + (uint64_t)get_le32(p + 4);
			continue;
		}
		if (magic != ZSTD_MAGICNUMBER) {
			*why = "garbage after a zstd frame";
			rc = -EBADMSG;
			goto out;
		}
		hr = ZSTD_getFrameHeader(&fh, p, (size_t)got);
		if (ZSTD_isError(hr) || fh.frameType != ZSTD_frame) {
			*why = "bad zstd frame header";
			rc = -EBADMSG;
			goto out;
		}
		if (hr > 0) {
			*why = "truncated frame header";
			rc = -EBADMSG;
			goto out;
		}
		if (fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN ||
		    fh.frameContentSize > ZFRAME_MAX_FRAME) {
			*why = "frame of unknown size or larger than "
			       "ZFRAME_MAX_FRAME: transcode";
			rc = -E2BIG;
			goto out;
		}
		pos = off + fh.headerSize;
		nblocks = 0;
		raw_min = 0;
		for (;;) {
			uint32_t bh, bsz, type;

			got = walk_get(w, pos, BLOCK_HDR, &p);
			if (got < 0) {
				rc = (int)got;
				goto out;
			}
			if (got < BLOCK_HDR) {
				*why = "truncated zstd frame";
				rc = -EBADMSG;
				goto out;
			}
			bh = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
			     (uint32_t)p[2] << 16;
			type = (bh >> 1) & 3;
			bsz = bh >> 3;
			if (type == 3 || bsz > fh.blockSizeMax) {
				*why = "bad zstd block header";
				rc = -EBADMSG;
				goto out;
			}
			nblocks++;
			if (type != 2)
				raw_min += bsz;	/* raw and RLE: exact size */
			pos += BLOCK_HDR + (type == 1 ? 1 : bsz);
			if (pos > z->file_size) {
				*why = "truncated zstd frame";
				rc = -EBADMSG;
				goto out;
			}
			if (bh & 1)
				break;
		}
		/*
		 * Without a seek table the stated content size is all that
		 * places the next frames; check what the blocks allow (each
		 * decodes to at most blockSizeMax, raw and RLE ones to
		 * exactly their size). Small lies still pass: the frame
		 * itself then fails to decode, but later frames would sit
		 * at shifted offsets. Files we write carry a seek table.
		 */
		if (fh.frameContentSize < raw_min ||
		    fh.frameContentSize > nblocks * (uint64_t)fh.blockSizeMax) {
			*why = "frame content size disagrees with its blocks";
			rc = -EBADMSG;
			goto out;
		}
		if (fh.checksumFlag)
			pos += 4;
		if (pos > z->file_size) {
			*why = "truncated zstd frame";
			rc = -EBADMSG;
			goto out;
		}
		if (pos - off > comp_bound(fh.frameContentSize)) {
			*why = "zstd frame longer than its content allows";
			rc = -EBADMSG;
			goto out;
		}
		if (fh.frameContentSize > 0) {
			rc = index_push(z, off, (uint32_t)(pos - off),
					(uint32_t)fh.frameContentSize, 0, 0);
			if (rc)
				goto out;
		}
		off = pos;
	}
out:
	free(w);
	return rc;
}

int zframe_open(struct zframe **out, struct blob *b, const char **why)
{
	struct zframe *z = NULL;
	const char *reason = "";
	uint8_t head[4], foot[SEEK_FOOTER];
	ssize_t got;
	uint32_t magic;
	int rc;

	*out = NULL;
	z = calloc(1, sizeof(*z));
	if (!z) {
		rc = -ENOMEM;
		goto fail;
	}
	z->b = blob_ref(b);
	z->file_size = blob_size(b);
	got = blob_pread(b, head, sizeof(head), 0);
	if (got < 0) {
		reason = "read error";
		rc = (int)got;
		goto fail;
	}
	magic = got == 4 ? get_le32(head) : 0;
	if (got < 4 || (magic != ZSTD_MAGICNUMBER && !is_skippable(magic))) {
		reason = "not a zstd file";
		rc = -EMEDIUMTYPE;
		goto fail;
	}
	rc = 0;
	if (z->file_size >= SKIP_HDR + SEEK_FOOTER) {
		got = blob_pread(b, foot, sizeof(foot),
				 z->file_size - SEEK_FOOTER);
		if (got < 0) {
			reason = "read error";
			rc = (int)got;
			goto fail;
		}
		if (got == SEEK_FOOTER && get_le32(foot + 5) == SEEK_MAGIC)
			rc = load_seek_table(z, foot, &reason);
		else
			rc = walk_frames(z, &reason);
	} else {
		rc = walk_frames(z, &reason);
	}
	if (rc)
		goto fail;
	*out = z;
	return 0;
fail:
	zframe_free(z);
	if (why)
		*why = reason;
	return rc;
}

void zframe_free(struct zframe *z)
{
	if (!z)
		return;
	blob_put(z->b);
	free(z->e);
	free(z->sum);
	free(z);
}

uint64_t zframe_size(const struct zframe *z)
{
	return z->raw_size;
}

size_t zframe_count(const struct zframe *z)
{
	return z->n;
}

const struct zframe_entry *zframe_frame(const struct zframe *z, size_t i)
{
	return i < z->n ? &z->e[i] : NULL;
}

size_t zframe_find(const struct zframe *z, uint64_t raw_off)
{
	size_t lo = 0, hi = z->n;

	if (raw_off >= z->raw_size)
		return z->n;
	/* Frames tile [0, raw_size): find the last one starting <= raw_off. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->e[mid].raw_off <= raw_off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

uint32_t zframe_max_frame(const struct zframe *z)
{
	return z->max_frame;
}

/* ------------------------------------------------------------------ */
/* reading frames */

int zframe_dctx_new(struct zframe_dctx **out)
{
	struct zframe_dctx *dc = calloc(1, sizeof(*dc));

	*out = NULL;
	if (!dc)
		return -ENOMEM;
	dc->z = ZSTD_createDCtx();
	if (!dc->z) {
		free(dc);
		return -ENOMEM;
	}
	dc->reason = "";
	*out = dc;
	return 0;
}

void zframe_dctx_free(struct zframe_dctx *dc)
{
	if (!dc)
		return;
	ZSTD_freeDCtx(dc->z);
	free(dc->buf);
	free(dc);
}

const char *zframe_dctx_reason(const struct zframe_dctx *dc)
{
	return dc->reason;
}

static ssize_t bad(struct zframe_dctx *dc, const char *why)
{
	dc->reason = why;
	return -EBADMSG;
}

ssize_t zframe_read_frame(const struct zframe *z, struct zframe_dctx *dc,
			  size_t i, void *dst, size_t dst_cap)
{
	const struct zframe_entry *e;
	unsigned long long fcs;
	ZSTD_frameHeader fh;
	size_t r;
	ssize_t got;

	dc->reason = "";
	if (i >= z->n) {
		dc->reason = "no such frame";
		return -EINVAL;
	}
	e = &z->e[i];
	if (dst_cap < e->raw_len) {
		dc->reason = "destination buffer too small";
		return -ERANGE;
	}
	if (dc->cap < e->comp_len) {
		uint8_t *b = realloc(dc->buf, e->comp_len);
		if (!b)
			return -ENOMEM;
		dc->buf = b;
		dc->cap = e->comp_len;
	}
	got = blob_pread(z->b, dc->buf, e->comp_len, e->comp_off);
	if (got < 0) {
		dc->reason = "read error";
		return got;
	}
	if ((size_t)got != e->comp_len)
		return bad(dc, "frame extends past the end of the file");
	/*
	 * The index only promised a length: the bytes there must be exactly
	 * one zstd frame (not a skippable one, not two frames, which
	 * ZSTD_decompressDCtx would happily decode together) of the size
	 * the index says.
	 */
	if (get_le32(dc->buf) != ZSTD_MAGICNUMBER)
		return bad(dc, "index entry does not point at a zstd frame");
	if (ZSTD_getFrameHeader(&fh, dc->buf, e->comp_len) != 0)
		return bad(dc, "bad zstd frame header");
	fcs = fh.frameContentSize;
	if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != e->raw_len)
		return bad(dc, "frame content size disagrees with the index");
	r = ZSTD_findFrameCompressedSize(dc->buf, e->comp_len);
	if (ZSTD_isError(r) || r != e->comp_len)
		return bad(dc, "frame length disagrees with the index");
	/* dst_cap is exactly raw_len, so a frame that decodes to more
	 * fails here instead of writing past what the index promised. */
	r = ZSTD_decompressDCtx(dc->z, dst, e->raw_len, dc->buf, e->comp_len);
	if (ZSTD_isError(r)) {
		switch (ZSTD_getErrorCode(r)) {
		case ZSTD_error_checksum_wrong:
			return bad(dc, "zstd content checksum mismatch");
		case ZSTD_error_memory_allocation:
			return -ENOMEM;
		default:
			return bad(dc, "corrupt zstd frame");
		}
	}
	if (r != e->raw_len)
		return bad(dc, "frame decompressed to fewer bytes than indexed");
	if (z->sum) {
		/*
		 * The seek-table checksum is the low 32 bits of XXH64 (seed
		 * 0), exactly what a zstd content checksum is; when the frame
		 * has one, zstd has just verified the data against it, so
		 * comparing the two fields is enough.
		 */
		uint32_t want = fh.checksumFlag ?
			get_le32(dc->buf + e->comp_len - 4) :
			(uint32_t)XXH64(dst, e->raw_len, 0);
		if (want != z->sum[i])
			return bad(dc, "seek table checksum mismatch");
	}
	return (ssize_t)e->raw_len;
}

