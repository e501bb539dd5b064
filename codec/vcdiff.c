/* SPDX-License-Identifier: MIT */
/*
 * vcdiff: the pieces the decoder and encoder share (see vcdiff.h). The
 * checksum is zlib's, a well-kept implementation of exactly what xdelta3
 * computes.
 */
#include "codec/vcdiff.h"

#include <zlib.h>

uint32_t vcdiff_adler32(uint32_t adler, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* zlib takes uInt lengths: feed large buffers in slices. */
	while (len > 0) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		adler = (uint32_t)adler32(adler, p, n);
		p += n;
		len -= n;
	}
	return adler;
}
