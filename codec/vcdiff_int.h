/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_int: RFC 3284 details private to codec/ and shared by the VCDIFF
 * decoder and encoder: the default instruction code table (s_near = 4,
 * s_same = 3, built in the order xdelta3 builds it), the address caches,
 * and the base-128 integers.
 *
 * Everything is static inline and depends on libc only, so either side can
 * include it without a link dependency on the other. Not here: window or
 * file layout, secondary compression, I/O. No file outside codec/ may
 * include this header (STYLE.md 2.1 rule 6).
 */
#ifndef SNAPFS_CODEC_VCDIFF_INT_H
#define SNAPFS_CODEC_VCDIFF_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* File header. */
#define VCDIFF_MAGIC0 0xD6
#define VCDIFF_MAGIC1 0xC3
#define VCDIFF_MAGIC2 0xC4
#define VCDIFF_VERSION 0x00
#define VCDIFF_HDR_SECONDARY 0x01	/* RFC: VCD_DECOMPRESS */
#define VCDIFF_HDR_CODETABLE 0x02
#define VCDIFF_HDR_APPHEADER 0x04	/* xdelta3 only */

/* Instruction types; COPY is stored as VCDIFF_INST_COPY + mode. */
#define VCDIFF_INST_NOOP 0
#define VCDIFF_INST_ADD 1
#define VCDIFF_INST_RUN 2
#define VCDIFF_INST_COPY 3

/* Address cache sizes of the default code table. */
#define VCDIFF_S_NEAR 4
#define VCDIFF_S_SAME 3
#define VCDIFF_MODE_SELF 0
#define VCDIFF_MODE_HERE 1
#define VCDIFF_MODE_NEAR0 2				/* 2..5 */
#define VCDIFF_MODE_SAME0 (2 + VCDIFF_S_NEAR)		/* 6..8 */
#define VCDIFF_NMODES (2 + VCDIFF_S_NEAR + VCDIFF_S_SAME)

/* One code table entry: two half-instructions (type NOOP = absent). A size
 * of 0 means "explicit size follows in the instruction section". */
struct vcdiff_code {
	uint8_t type1, size1, type2, size2;
};

/*
 * Fills t[256] with the RFC 3284 default code table (§5.6), in xdelta3's
 * construction order: RUN, ADD0, ADD1..17, per mode COPY0 and COPY4..18,
 * the ADD+COPY pairs, then the COPY+ADD pairs. Returns the number of
 * entries written, which must be 256 (callers may assert it).
 */
static inline int vcdiff_code_table_build(struct vcdiff_code t[256])
{
	int n = 0;

	memset(t, 0, 256 * sizeof(t[0]));
	t[n++] = (struct vcdiff_code){ VCDIFF_INST_RUN, 0, 0, 0 };
	for (int s = 0; s <= 17; s++)
		t[n++] = (struct vcdiff_code){ VCDIFF_INST_ADD, (uint8_t)s,
					       0, 0 };
	for (int m = 0; m < VCDIFF_NMODES; m++) {
		t[n++] = (struct vcdiff_code){ (uint8_t)(VCDIFF_INST_COPY + m),
					       0, 0, 0 };
		for (int s = 4; s <= 18; s++)
			t[n++] = (struct vcdiff_code){
				(uint8_t)(VCDIFF_INST_COPY + m), (uint8_t)s,
				0, 0 };
	}
	/* ADD 1..4 then COPY 4..6, modes 0..5 (SELF, HERE, NEAR). */
	for (int m = 0; m < 6; m++)
		for (int a = 1; a <= 4; a++)
			for (int c = 4; c <= 6; c++)
				t[n++] = (struct vcdiff_code){
					VCDIFF_INST_ADD, (uint8_t)a,
					(uint8_t)(VCDIFF_INST_COPY + m),
					(uint8_t)c };
	/* ADD 1..4 then COPY 4, SAME modes. */
	for (int m = 6; m < VCDIFF_NMODES; m++)
		for (int a = 1; a <= 4; a++)
			t[n++] = (struct vcdiff_code){
				VCDIFF_INST_ADD, (uint8_t)a,
				(uint8_t)(VCDIFF_INST_COPY + m), 4 };
	/* COPY 4 (any mode) then ADD 1. */
	for (int m = 0; m < VCDIFF_NMODES; m++)
		t[n++] = (struct vcdiff_code){ (uint8_t)(VCDIFF_INST_COPY + m),
					       4, VCDIFF_INST_ADD, 1 };
	return n;
}

/*
 * The address caches (§5.1). Reset at the start of every window. Addresses
 * are 32-bit, as in xdelta3, and wrap the way xdelta3's do.
 */
struct vcdiff_acache {
	uint32_t near[VCDIFF_S_NEAR];
	uint32_t next_slot;
	uint32_t same[VCDIFF_S_SAME * 256];
};

static inline void vcdiff_acache_reset(struct vcdiff_acache *c)
{
	memset(c, 0, sizeof(*c));
}

static inline void vcdiff_acache_update(struct vcdiff_acache *c,
					uint32_t addr)
{
	c->near[c->next_slot] = addr;
	c->next_slot = (c->next_slot + 1) % VCDIFF_S_NEAR;
	c->same[addr % (VCDIFF_S_SAME * 256)] = addr;
}

/* Bytes of the minimal base-128 encoding of v (1..10). */
static inline size_t vcdiff_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Writes the minimal encoding of v at p (room for 10 bytes); returns its
 * length. */
static inline size_t vcdiff_varint_put(uint8_t *p, uint64_t v)
{
	size_t n = vcdiff_varint_size(v);

	for (size_t i = n; i-- > 0; v >>= 7)
		p[i] = (uint8_t)((v & 0x7f) | (i + 1 < n ? 0x80 : 0));
	return n;
}

/* Results of the varint readers. */
#define VCDIFF_VARINT_OK 0
#define VCDIFF_VARINT_TRUNC (-1)	/* input ended inside the integer */
#define VCDIFF_VARINT_OVERFLOW (-2)	/* value does not fit */

/*
 * Reads one base-128 integer of at most max (UINT32_MAX or UINT64_MAX)
 * from *p, not reading at or past end. Leading zero digits are accepted,
 * as xdelta3 accepts them. Advances *p only on success.
 */
static inline int vcdiff_varint_get(const uint8_t **p, const uint8_t *end,
				    uint64_t max, uint64_t *v)
{
	const uint8_t *q = *p;
	uint64_t x = 0;

	for (;;) {
		if (q >= end)
			return VCDIFF_VARINT_TRUNC;
		uint8_t b = *q++;
		if (x > (max >> 7))
			return VCDIFF_VARINT_OVERFLOW;
		x = (x << 7) | (b & 0x7f);
		if (x > max)
			return VCDIFF_VARINT_OVERFLOW;
		if (!(b & 0x80))
			break;
	}
	*p = q;
	*v = x;
	return VCDIFF_VARINT_OK;
}

/* 32-bit sizes, the hot path of instruction decoding: one-byte values are
 * by far the most common. */
static inline int vcdiff_varint_get32(const uint8_t **p, const uint8_t *end,
				      uint32_t *v)
{
	uint64_t x;
	int rc;

	if (*p < end && !(**p & 0x80)) {
		*v = *(*p)++;
		return VCDIFF_VARINT_OK;
	}
	rc = vcdiff_varint_get(p, end, UINT32_MAX, &x);
	if (rc == VCDIFF_VARINT_OK)
		*v = (uint32_t)x;
	return rc;
}

#endif
