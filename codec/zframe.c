/* SPDX-License-Identifier: MIT */
/*
 * zframe: random access into zstd files by frame (see zframe.h).
 *
 * An open zframe is an index: one entry per frame that holds data, with
 * 64-bit raw and file offsets, taken either from the seek table at the end
 * of the file (zstd's contrib seekable format) or, when there is none, from
 * walking frame and block headers (never the data) from the start. The
 * file is untrusted: the table is checked against the file size at open,
 * and each frame is checked against its entry when it is read (magic,
 * content size, exact length, content checksum, seek-table checksum), so a
 * damaged file gives -EBADMSG, never wrong bytes. The one hole is a file
 * without a seek table: there a frame's own Frame_Content_Size is all that
 * places the frames after it, and a small lie in it (checked only against
 * what the blocks allow) fails that frame but shifts the later ones. A
 * caller that cannot accept this transcodes such files too.
 *
 * The writer cuts its input into frames and hands them to worker threads
 * through a ring of slots; the caller's thread copies input in and writes
 * finished frames out in order, so memory stays at a few frames per thread
 * whatever the stream's size, and write(2) errors reach the caller.
 *
 * Not here: caching of decompressed frames, dictionaries, frames other
 * than zstd and skippable ones. Never prints, logs or exits.
 */
#include "codec/zframe.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
/* For ZSTD_getFrameHeader(): exported by libzstd, only declared here. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "codec/blob.h"
#include "codec/fdio.h"

#define SKIP_HDR	8		/* skippable magic + Frame_Size */
#define SEEK_SKIP_MAGIC	0x184D2A5Eu	/* the seek table's skippable frame */
#define SEEK_MAGIC	0x8F92EAB1u
#define SEEK_FOOTER	9		/* Number_Of_Frames, descriptor, magic */
#define SEEK_CKSUM_FLAG	0x80
#define SEEK_RESERVED	0x7C		/* must be 0; bits 0-1 are "unused" */
#define SEEK_ENTRY_MAX	12
#define BLOCK_HDR	3
#define WALK_BUF	(64u << 10)

/* ------------------------------------------------------------------ */
/* small helpers */

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static int is_skippable(uint32_t magic)
{
	return (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

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

/* ------------------------------------------------------------------ */
/* writing */

enum { SLOT_FREE, SLOT_QUEUED, SLOT_DONE };

struct slot {
	uint8_t *raw;
	uint8_t *comp;
	size_t raw_len;
	size_t comp_len;
	int err;
	int state;			/* protected by w->lock */
};

/*
 * Frames are numbered in input order; frame s lives in slot s % nslots.
 * The caller fills slots and writes them out in number order; workers
 * take queued slots in number order. A slot is refilled only after its
 * previous frame was written, which bounds memory to nslots frames.
 */
struct zframe_writer {
	int fd;				/* borrowed */
	uint32_t frame_size;
	int level;
	int nthreads, nstarted;
	size_t nslots;
	struct slot *slots;
	ZSTD_CCtx **cctx;		/* one per worker */
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t work_cv;		/* workers wait for queued frames */
	pthread_cond_t done_cv;		/* the caller waits for a frame */
	uint64_t submitted;		/* protected by lock */
	uint64_t taken;			/* protected by lock */
	int stop;			/* protected by lock */
	/* The caller's thread only: */
	uint64_t written;
	size_t fill;			/* bytes in slot submitted % nslots */
	uint8_t *table;			/* seek table entries, LE, 12 each */
	size_t table_len, table_cap;
	int err;			/* sticky: the stream is broken */
	int finished;
};

struct worker_arg {
	struct zframe_writer *w;
	ZSTD_CCtx *cctx;
};

static int zstd_errno(size_t r)
{
	return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ?
		-ENOMEM : -EIO;
}

static void *worker(void *arg)
{
	struct zframe_writer *w = arg;
	ZSTD_CCtx *cctx;
	size_t me;

	pthread_mutex_lock(&w->lock);
	me = (size_t)w->nstarted++;
	cctx = w->cctx[me];
	for (;;) {
		struct slot *s;
		size_t r;

		while (!w->stop && w->taken == w->submitted)
			pthread_cond_wait(&w->work_cv, &w->lock);
		if (w->stop)
			break;
		s = &w->slots[w->taken % w->nslots];
		w->taken++;
		pthread_mutex_unlock(&w->lock);

		r = ZSTD_compress2(cctx, s->comp,
				   ZSTD_compressBound(w->frame_size),
				   s->raw, s->raw_len);
		pthread_mutex_lock(&w->lock);
		if (ZSTD_isError(r)) {
			s->err = zstd_errno(r);
		} else {
			s->err = 0;
			s->comp_len = r;
		}
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&w->done_cv);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void stop_workers(struct zframe_writer *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->nthreads; i++)
		if (w->threads[i])
			pthread_join(w->threads[i], NULL);
}

void zframe_writer_free(struct zframe_writer *w)
{
	if (!w)
		return;
	if (w->threads) {
		stop_workers(w);
		free(w->threads);
	}
	if (w->cctx) {
		for (int i = 0; i < w->nthreads; i++)
			ZSTD_freeCCtx(w->cctx[i]);
		free(w->cctx);
	}
	if (w->slots) {
		for (size_t i = 0; i < w->nslots; i++) {
			free(w->slots[i].raw);
			free(w->slots[i].comp);
		}
		free(w->slots);
	}
	free(w->table);
	pthread_cond_destroy(&w->done_cv);
	pthread_cond_destroy(&w->work_cv);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

int zframe_writer_new(struct zframe_writer **out, int out_fd,
		      const struct zframe_writer_opts *o)
{
	struct zframe_writer_opts d = { 0 };
	struct zframe_writer *w;
	int rc;

	*out = NULL;
	if (!o)
		o = &d;
	if (o->frame_size > ZFRAME_MAX_FRAME || o->nthreads < 0 ||
	    o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel())
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work_cv, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	w->fd = out_fd;
	w->frame_size = o->frame_size ? o->frame_size : ZFRAME_DEFAULT_FRAME;
	w->level = o->level ? o->level : 3;
	w->nthreads = o->nthreads;
	if (w->nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		w->nthreads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
	}
	/* Two frames per worker keep every worker busy while the caller
	 * fills one slot and writes another. */
	w->nslots = (size_t)w->nthreads * 2 + 1;
	w->slots = calloc(w->nslots, sizeof(*w->slots));
	w->cctx = calloc((size_t)w->nthreads, sizeof(*w->cctx));
	w->threads = calloc((size_t)w->nthreads, sizeof(*w->threads));
	if (!w->slots || !w->cctx || !w->threads) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->nslots; i++) {
		w->slots[i].raw = malloc(w->frame_size);
		w->slots[i].comp = malloc(ZSTD_compressBound(w->frame_size));
		if (!w->slots[i].raw || !w->slots[i].comp) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (int i = 0; i < w->nthreads; i++) {
		size_t r1, r2;

		w->cctx[i] = ZSTD_createCCtx();
		if (!w->cctx[i]) {
			rc = -ENOMEM;
			goto fail;
		}
		r1 = ZSTD_CCtx_setParameter(w->cctx[i], ZSTD_c_compressionLevel,
					    w->level);
		r2 = ZSTD_CCtx_setParameter(w->cctx[i], ZSTD_c_checksumFlag, 1);
		if (ZSTD_isError(r1) || ZSTD_isError(r2)) {
			rc = -EINVAL;
			goto fail;
		}
	}
	for (int i = 0; i < w->nthreads; i++) {
		rc = pthread_create(&w->threads[i], NULL, worker, w);
		if (rc) {
			w->threads[i] = 0;
			rc = -rc;
			goto fail;
		}
	}
	*out = w;
	return 0;
fail:
	zframe_writer_free(w);
	return rc;
}

/* Waits for the oldest unwritten frame, writes it and its table entry. */
static int write_oldest(struct zframe_writer *w)
{
	struct slot *s = &w->slots[w->written % w->nslots];
	uint8_t *e;
	int rc;

	pthread_mutex_lock(&w->lock);
	while (s->state != SLOT_DONE)
		pthread_cond_wait(&w->done_cv, &w->lock);
	s->state = SLOT_FREE;
	pthread_mutex_unlock(&w->lock);
	if (s->err)
		return s->err;
	/* Number_Of_Frames is a u32 and the table's Frame_Size too. */
	if (w->written >= (UINT32_MAX - SEEK_FOOTER) / SEEK_ENTRY_MAX)
		return -EFBIG;
	rc = fdio_write(w->fd, s->comp, s->comp_len);
	if (rc)
		return rc;
	if (w->table_len + SEEK_ENTRY_MAX > w->table_cap) {
		size_t cap = w->table_cap ? w->table_cap * 2 :
			     64 * SEEK_ENTRY_MAX;
		uint8_t *t = realloc(w->table, cap);
		if (!t)
			return -ENOMEM;
		w->table = t;
		w->table_cap = cap;
	}
	e = w->table + w->table_len;
	put_le32(e, (uint32_t)s->comp_len);
	put_le32(e + 4, (uint32_t)s->raw_len);
	/* The frame's content checksum is by definition the low 32 bits of
	 * XXH64 (seed 0) of its data: the seek table's checksum, for free. */
	memcpy(e + 8, s->comp + s->comp_len - 4, 4);
	w->table_len += SEEK_ENTRY_MAX;
	w->written++;
	return 0;
}

/* Hands the filled slot to the workers. */
static void submit(struct zframe_writer *w)
{
	struct slot *s = &w->slots[w->submitted % w->nslots];

	pthread_mutex_lock(&w->lock);
	s->raw_len = w->fill;
	s->state = SLOT_QUEUED;
	w->submitted++;
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->lock);
	w->fill = 0;
}

int zframe_writer_write(struct zframe_writer *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int rc;

	if (w->err)
		return w->err;
	if (w->finished)
		return -EINVAL;
	while (len > 0) {
		size_t n;

		/* Starting a frame: its slot's previous frame must be out. */
		while (w->fill == 0 && w->written + w->nslots <= w->submitted) {
			rc = write_oldest(w);
			if (rc)
				goto fail;
		}
		n = w->frame_size - w->fill;
		if (n > len)
			n = len;
		memcpy(w->slots[w->submitted % w->nslots].raw + w->fill, p, n);
		w->fill += n;
		p += n;
		len -= n;
		if (w->fill == w->frame_size)
			submit(w);
	}
	return 0;
fail:
	w->err = rc;
	return rc;
}

int zframe_writer_finish(struct zframe_writer *w)
{
	uint8_t hdr[SKIP_HDR], foot[SEEK_FOOTER];
	uint32_t n;
	int rc;

	if (w->err)
		return w->err;
	if (w->finished)
		return -EINVAL;
	if (w->fill > 0)
		submit(w);
	while (w->written < w->submitted) {
		rc = write_oldest(w);
		if (rc)
			goto fail;
	}
	n = (uint32_t)(w->table_len / SEEK_ENTRY_MAX);
	put_le32(hdr, SEEK_SKIP_MAGIC);
	put_le32(hdr + 4, (uint32_t)(w->table_len + SEEK_FOOTER));
	put_le32(foot, n);
	foot[4] = SEEK_CKSUM_FLAG;
	put_le32(foot + 5, SEEK_MAGIC);
	rc = fdio_write(w->fd, hdr, sizeof(hdr));
	if (!rc && w->table_len)
		rc = fdio_write(w->fd, w->table, w->table_len);
	if (!rc)
		rc = fdio_write(w->fd, foot, sizeof(foot));
	if (rc)
		goto fail;
	w->finished = 1;
	return 0;
fail:
	w->err = rc;
	return rc;
}

/* ------------------------------------------------------------------ */
/* transcoding */

int zframe_transcode(struct blob *src, int out_fd,
		     const struct zframe_writer_opts *o,
		     void (*progress)(void *ctx, uint64_t done, uint64_t total),
		     void *ctx, const char **why)
{
	const char *reason = "";
	struct zframe_writer *w = NULL;
	ZSTD_DCtx *dctx = NULL;
	size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
	uint8_t *in = NULL, *outb = NULL;
	uint64_t total = blob_size(src), off = 0;
	size_t last = 0;
	int rc;

	dctx = ZSTD_createDCtx();
	in = malloc(in_cap);
	outb = malloc(out_cap);
	if (!dctx || !in || !outb) {
		rc = -ENOMEM;
		goto out;
	}
	/* Bases written with `zstd --long=31` need windows up to 2 GiB;
	 * the default limit (128 MiB) would refuse them. */
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZSTD_WINDOWLOG_MAX);
	if (!o || !o->raw) {
		rc = zframe_writer_new(&w, out_fd, o);
		if (rc)
			goto out;
	}
	while (off < total) {
		size_t want = total - off < in_cap ? (size_t)(total - off) : in_cap;
		ssize_t got = blob_pread(src, in, want, off);
		ZSTD_inBuffer ib = { in, 0, 0 };
		ZSTD_outBuffer ob;

		if (got < 0) {
			reason = "read error";
			rc = (int)got;
			goto out;
		}
		if (got == 0)
			break;		/* shrank: reported as truncated */
		if (off == 0 && (got < 4 ||
		    (get_le32(in) != ZSTD_MAGICNUMBER &&
		     !is_skippable(get_le32(in))))) {
			reason = "not a zstd file";
			rc = -EMEDIUMTYPE;
			goto out;
		}
		ib.size = (size_t)got;
		/* Keep going while input remains or zstd filled the whole
		 * output buffer (it may hold more). */
		do {
			ob = (ZSTD_outBuffer){ outb, out_cap, 0 };
			last = ZSTD_decompressStream(dctx, &ob, &ib);
			if (ZSTD_isError(last)) {
				if (ZSTD_getErrorCode(last) ==
				    ZSTD_error_memory_allocation) {
					rc = -ENOMEM;
				} else {
					reason = ZSTD_getErrorCode(last) ==
						ZSTD_error_checksum_wrong ?
						"zstd content checksum mismatch" :
						"corrupt zstd stream";
					rc = -EBADMSG;
				}
				goto out;
			}
			if (ob.pos > 0) {
				rc = w ? zframe_writer_write(w, outb, ob.pos) :
					 fdio_write(out_fd, outb, ob.pos);
				if (rc) {
					reason = "write error";
					goto out;
				}
			}
		} while (ib.pos < ib.size || ob.pos == ob.size);
		off += (uint64_t)got;
		if (progress)
			progress(ctx, off, total);
	}
	if (off == 0) {
		reason = "not a zstd file";
		rc = -EMEDIUMTYPE;
		goto out;
	}
	if (last != 0) {
		reason = "truncated zstd stream";
		rc = -EBADMSG;
		goto out;
	}
	rc = w ? zframe_writer_finish(w) : 0;
	if (rc)
		reason = "write error";
out:
	zframe_writer_free(w);
	ZSTD_freeDCtx(dctx);
	free(in);
	free(outb);
	if (rc && why)
		*why = reason;
	return rc;
}
