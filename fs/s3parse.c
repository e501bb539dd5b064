/* SPDX-License-Identifier: MIT */
/*
 * s3parse: the pure parsers of what an S3 server answers (see s3.h): a
 * ListObjectsV2 page, one element of a small XML answer
 * (CreateMultipartUpload, CompleteMultipartUpload, CopyObject, an
 * <Error>), an HTTP date. Their input comes from the network -- a
 * server, or whatever answers in its place -- so they never trust a
 * length, a terminator or an entity, and they are fuzzed
 * (tests/fuzz/fuzz_s3list.c, tests/fuzz/fuzz_s3xml.c).
 *
 * Not here: requests (fs/s3.c, fs/s3put.c), a general XML parser. S3's
 * answers are flat and small; finding an element by its name is all
 * these few fields need (no namespaces, CDATA, comments, or an element
 * nested in one of its own name).
 */
#include "fs/s3.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Writes code point cp as UTF-8 at out; returns its length, 0 if cp is
 * not a character XML allows in text (NUL, surrogates, beyond U+10FFFF). */
static size_t utf8(uint32_t cp, char *out)
{
	if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The entity at s ("&name;", n bytes up to and with the ';') as bytes in
 * out (up to 4); returns their count, 0 for an entity we do not know. */
static size_t entity(const char *s, size_t n, char *out)
{
	static const struct { const char *name; char c; } named[] = {
		{ "&quot;", '"' }, { "&amp;", '&' }, { "&lt;", '<' },
		{ "&gt;", '>' }, { "&apos;", '\'' },
	};
	uint32_t cp = 0;
	size_t i = 2;
	int hex;

	for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++)
		if (n == strlen(named[k].name) && !memcmp(s, named[k].name, n)) {
			out[0] = named[k].c;
			return 1;
		}
	if (n < 4 || s[1] != '#')
		return 0;
	hex = s[2] == 'x';
	i += (size_t)hex;
	if (i >= n - 1)
		return 0;
	for (; i < n - 1; i++) {
		char c = s[i];
		uint32_t d;
		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (hex && c >= 'a' && c <= 'f')
			d = (uint32_t)(c - 'a' + 10);
		else if (hex && c >= 'A' && c <= 'F')
			d = (uint32_t)(c - 'A' + 10);
		else
			return 0;
		cp = cp * (hex ? 16 : 10) + d;
		if (cp > 0x10ffff)
			return 0;
	}
	return utf8(cp, out);
}

/* The first "</tag>" in [p, end), or NULL. */
static const char *find_close(const char *p, const char *end,
			      const char *tag, size_t tl)
{
	while (p < end) {
		const char *c = memmem(p, (size_t)(end - p), "</", 2);
		if (!c)
			return NULL;
		if ((size_t)(end - c) >= tl + 3 && !memcmp(c + 2, tag, tl) &&
		    c[2 + tl] == '>')
			return c;
		p = c + 2;
	}
	return NULL;
}

int s3_parse_tag(const char *body, size_t len, const char *tag, char *out,
		 size_t cap)
{
	const char *p = body, *end = body + len, *a = NULL, *b;
	size_t tl = strlen(tag), o = 0;

	if (!cap)
		return -EINVAL;
	out[0] = 0;
	if (!tl)
		return -EINVAL;
	/* "<tag>", "<tag attributes...>" or the empty "<tag/>" */
	while (p < end && !a) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		if (!lt || (size_t)(end - lt) < tl + 2)
			return -ENOENT;
		p = lt + 1;
		if (memcmp(p, tag, tl))
			continue;
		const char *c = p + tl;	/* inside: end - lt >= tl + 2 */
		if (*c == '>') {
			a = c + 1;
		} else if (*c == ' ' || *c == '\t' || *c == '\r' ||
			   *c == '\n' || *c == '/') {
			const char *gt = memchr(c, '>', (size_t)(end - c));
			if (!gt)
				return -ENOENT;
			if (gt[-1] == '/')
				return 0;
			a = gt + 1;
		}
	}
	if (!a || !(b = find_close(a, end, tag, tl)))
		return -ENOENT;
	while (a < b) {
		char tmp[4];
		size_t n = 1;
		const char *src = a;
		if (*a == '&') {
			size_t room = (size_t)(b - a) < 12 ? (size_t)(b - a) : 12;
			const char *semi = memchr(a, ';', room);
			if (!semi ||
			    !(n = entity(a, (size_t)(semi - a) + 1, tmp))) {
				out[0] = 0;
				return -EILSEQ;
			}
			src = tmp;
			a = semi + 1;
		} else {
			a++;
		}
		if (o + n >= cap) {
			out[0] = 0;
			return -EOVERFLOW;
		}
		memcpy(out + o, src, n);
		o += n;
	}
	out[o] = 0;
	return 0;
}

/* n decimal digits at s as *v; -1 if one is not a digit. */
static int digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

int s3_parse_date(const char *s, size_t len, int64_t *t)
{
	/* "Thu, 03 Dec 2026 15:01:58 GMT" (RFC 9110's IMF-fixdate) */
	static const char days[] = "SunMonTueWedThuFriSat";
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
				     30, 31 };
	struct tm tm = { 0 };
	int day, year, h, m, sec, mon = -1, ok = 0;

	while (len && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
		       s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	if (len != 29 || memcmp(s + 3, ", ", 2) || s[7] != ' ' ||
	    s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
	    memcmp(s + 25, " GMT", 4))
		return -EINVAL;
	for (int i = 0; i < 7; i++)
		ok |= !memcmp(s, days + 3 * i, 3);
	for (int i = 0; i < 12; i++)
		if (!memcmp(s + 8, months + 3 * i, 3))
			mon = i;
	if (!ok || mon < 0 || digits(s + 5, 2, &day) ||
	    digits(s + 12, 4, &year) || digits(s + 17, 2, &h) ||
	    digits(s + 20, 2, &m) || digits(s + 23, 2, &sec))
		return -EINVAL;
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	/* Before 1970 is no server's clock: a broken header. */
	if (year < 1970 || day < 1 || day > mdays[mon] + (mon == 1 && leap) ||
	    h > 23 || m > 59 || sec > 60)
		return -EINVAL;
	/* A leap second is the second before the next minute: 59 keeps
	 * the date on its day. */
	tm.tm_sec = sec == 60 ? 59 : sec;
	tm.tm_min = m;
	tm.tm_hour = h;
	tm.tm_mday = day;
	tm.tm_mon = mon;
	tm.tm_year = year - 1900;
	*t = (int64_t)timegm(&tm);
	return 0;
}

/* "2026-12-03T12:55:00.000Z" (ListObjectsV2's LastModified) to seconds. */
static int64_t iso_time(const char *s)
{
	struct tm tm = { 0 };

	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

int s3_parse_list(const char *body, size_t len, size_t skip,
		  int (*cb)(void *arg, const char *key, const struct s3_obj *o),
		  void *arg, char *token, size_t tokcap)
{
	const char *p = body, *end = body + len;
	char trunc[16];
	int rc;

	token[0] = 0;
	while (p < end) {
		const char *c = memmem(p, (size_t)(end - p), "<Contents>", 10);
		if (!c)
			break;
		const char *ce = memmem(c, (size_t)(end - c), "</Contents>",
					11);
		if (!ce)
			break;
		char k[2048], sz[32], lm[64];
		struct s3_obj o = { 0 };
		size_t cl = (size_t)(ce - c);
		p = ce + 11;
		/* A key that does not parse whole (too long, a bad entity)
		 * is not one of the store's: a cut name would be another. */
		if (s3_parse_tag(c, cl, "Key", k, sizeof(k)))
			continue;
		s3_parse_tag(c, cl, "Size", sz, sizeof(sz));
		s3_parse_tag(c, cl, "LastModified", lm, sizeof(lm));
		s3_parse_tag(c, cl, "ETag", o.etag, sizeof(o.etag));
		o.size = strtoull(sz, NULL, 10);
		o.mtime = iso_time(lm);
		/* Keys outside the prefix, or with bytes a name cannot
		 * have, are not the store's. */
		if (strlen(k) > skip && !memchr(k, '\n', strlen(k)) &&
		    (rc = cb(arg, k + skip, &o)))
			return rc;
	}
	s3_parse_tag(body, len, "IsTruncated", trunc, sizeof(trunc));
	if (strcmp(trunc, "true") == 0 &&
	    (s3_parse_tag(body, len, "NextContinuationToken", token,
			  tokcap) || !token[0]))
		return -EPROTO;
	return 0;
}
