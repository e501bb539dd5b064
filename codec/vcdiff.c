/* SPDX-License-Identifier: MIT */
/*
 * vcdiff: the pieces the decoder and encoder share (see vcdiff.h). The
 * checksum is libdeflate's: exactly zlib's adler32, vectorised (measured
 * 4.3 GB/s against zlib's 1.2 GB/s here), and every window of every layer
 * is checked once when its index is built, so it is on the first-mount
 * path.
 */
#include "codec/vcdiff.h"

#include <libdeflate.h>

uint32_t vcdiff_adler32(uint32_t adler, const void *buf, size_t len)
{
	return libdeflate_adler32(adler, buf, len);
}
