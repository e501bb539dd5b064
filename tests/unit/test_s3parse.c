/* SPDX-License-Identifier: MIT */
/*
 * test_s3parse: the parsers of S3 answers that the uploads read --
 * s3_parse_tag on the bodies of CreateMultipartUpload,
 * CompleteMultipartUpload, CopyObject and <Error> (entities, attributes,
 * element names that only start alike, cut and unterminated bodies, too
 * small buffers) and s3_parse_date on HTTP dates (the expected values
 * are `date -u -d DATE +%s`). s3_parse_list is in test_s3conf.
 */
#include "fs/s3.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tests/unit/t.h"

/* s3_parse_tag on a terminated body. */
static int tag(const char *body, const char *name, char *out, size_t cap)
{
	return s3_parse_tag(body, strlen(body), name, out, cap);
}

static void test_tag_answers(void)
{
	static const char init[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com"
		"/doc/2006-03-01/\"><Bucket>b</Bucket><Key>p/k</Key><UploadId>"
		"MzRjYjU4ZGQtZTBmNi00ZDg2LWI3ZWItYTc5MmE4ZjA3OGU5</UploadId>"
		"</InitiateMultipartUploadResult>";
	static const char done[] =
		"<?xml version='1.0' encoding='UTF-8'?>\n"
		"<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com"
		"/doc/2006-03-01/\"><Location>http://h/b/k</Location><Bucket>b"
		"</Bucket><Key>k</Key><ETag>&quot;3858f62230ac3c915f300c664312"
		"c11f-9&quot;</ETag></CompleteMultipartUploadResult>";
	static const char error[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<Error><Code>"
		"InternalError</Code><Message>We encountered an internal error."
		" Please try again.</Message><RequestId>656c76696e</RequestId>"
		"</Error>";
	static const char copy[] =
		"<CopyObjectResult><LastModified>2026-12-03T15:01:58.000Z"
		"</LastModified><ETag>\"9b2cf535f27731c974343645a3985328\""
		"</ETag></CopyObjectResult>";
	char out[128];

	T_EQ(tag(init, "UploadId", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "MzRjYjU4ZGQtZTBmNi00ZDg2LWI3ZWItYTc5MmE4ZjA3OGU5"));
	T_EQ(tag(init, "Key", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "p/k"));
	T_EQ(tag(done, "ETag", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "\"3858f62230ac3c915f300c664312c11f-9\""));
	T_EQ(tag(done, "Code", out, sizeof(out)), -ENOENT);
	T_EQ(tag(error, "Code", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "InternalError"));
	T_EQ(tag(error, "ETag", out, sizeof(out)), -ENOENT);
	T_CHECK(out[0] == 0);
	T_EQ(tag(copy, "ETag", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "\"9b2cf535f27731c974343645a3985328\""));
}

static void test_tag_entities(void)
{
	char out[64];

	T_EQ(tag("<K>a&amp;b&lt;c&gt;&apos;&quot;&#65;&#x42;&#xe9;&#x20AC;"
		 "&#128512;</K>", "K", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "a&b<c>'\"AB\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
	T_EQ(tag("<K>a&bogus;</K>", "K", out, sizeof(out)), -EILSEQ);
	T_CHECK(out[0] == 0);
	T_EQ(tag("<K>a & b</K>", "K", out, sizeof(out)), -EILSEQ);
	T_EQ(tag("<K>&#0;</K>", "K", out, sizeof(out)), -EILSEQ);
	T_EQ(tag("<K>&#xD800;</K>", "K", out, sizeof(out)), -EILSEQ);
	T_EQ(tag("<K>&#x110000;</K>", "K", out, sizeof(out)), -EILSEQ);
	T_EQ(tag("<K>&#;&#x;</K>", "K", out, sizeof(out)), -EILSEQ);
	T_EQ(tag("<K>&#99999999999999999999;</K>", "K", out, sizeof(out)),
	     -EILSEQ);
	T_EQ(tag("<K>&amp</K>", "K", out, sizeof(out)), -EILSEQ);
}

static void test_tag_shapes(void)
{
	char out[8];

	/* a name that only starts like the tag is another element */
	T_EQ(tag("<ETagX>1</ETagX><ETag>2</ETag>", "ETag", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "2"));
	T_EQ(tag("<E>1</EX></E>", "E", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "1</EX>"));	/* up to the real close */
	T_EQ(tag("<E a=\"1\">v</E>", "E", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "v"));
	T_EQ(tag("<E/><E>v</E>", "E", out, sizeof(out)), 0);
	T_CHECK(out[0] == 0);
	T_EQ(tag("<E></E>", "E", out, sizeof(out)), 0);
	T_CHECK(out[0] == 0);
	T_EQ(tag("<a>1</a><a>2</a>", "a", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "1"));	/* the first */
	/* not closed, not there, nothing */
	T_EQ(tag("<a>1", "a", out, sizeof(out)), -ENOENT);
	T_EQ(tag("<a>1</a", "a", out, sizeof(out)), -ENOENT);
	T_EQ(tag("<a", "a", out, sizeof(out)), -ENOENT);
	T_EQ(tag("<a attr", "a", out, sizeof(out)), -ENOENT);
	T_EQ(tag("", "a", out, sizeof(out)), -ENOENT);
	T_EQ(tag("<b>1</b>", "", out, sizeof(out)), -EINVAL);
	/* the length is the body's end, whatever bytes follow */
	T_EQ(s3_parse_tag("<a>xy</a>", 8, "a", out, sizeof(out)), -ENOENT);
	T_EQ(s3_parse_tag("<a>xy</a>", 9, "a", out, sizeof(out)), 0);
	T_EQ(s3_parse_tag("<a>x\0y</a>", 10, "a", out, sizeof(out)), 0);
	T_EQ(out[1], 0);	/* a NUL in the text ends the string */
	/* buffer sizes: cap - 1 characters fit, not one more */
	T_EQ(tag("<a>1234567</a>", "a", out, sizeof(out)), 0);
	T_CHECK(!strcmp(out, "1234567"));
	T_EQ(tag("<a>12345678</a>", "a", out, sizeof(out)), -EOVERFLOW);
	T_CHECK(out[0] == 0);
	T_EQ(tag("<a>123456&#xe9;</a>", "a", out, sizeof(out)), -EOVERFLOW);
	T_EQ(tag("<a>1</a>", "a", out, 1), -EOVERFLOW);
	T_EQ(tag("<a></a>", "a", out, 1), 0);
	T_EQ(tag("<a>1</a>", "a", out, 0), -EINVAL);
}

static void test_date(void)
{
	static const struct {
		const char *s;
		int64_t t;
	} good[] = {
		{ "Thu, 03 Dec 2026 15:01:58 GMT", 1796310118 },
		{ "Thu, 01 Jan 1970 00:00:00 GMT", 0 },
		{ "Sun, 06 Nov 1994 08:49:37 GMT", 784111777 },
		{ "Tue, 29 Feb 2028 23:59:59 GMT", 1835481599 },
		{ "Tue, 29 Feb 2000 12:00:00 GMT", 951825600 },
		{ "Tue, 19 Jan 2038 03:14:08 GMT", 2147483648LL },
		{ "Fri, 31 Dec 9999 23:59:59 GMT", 253402300799LL },
		/* a leap second: the second before, same day */
		{ "Wed, 31 Dec 2008 23:59:60 GMT", 1230767999 },
		/* header whitespace around it */
		{ "  Thu, 03 Dec 2026 15:01:58 GMT\r\n", 1796310118 },
	};
	static const char *bad[] = {
		"Sunday, 06-Nov-94 08:49:37 GMT",	/* RFC 850 */
		"Sun Nov  6 08:49:37 1994",		/* asctime */
		"Thu, 03 Dec 2026 15:01:58 UTC",
		"Thu, 03 Dec 2026 15:01:58 +0000",
		"Thu, 3 Dec 2026 15:01:58 GMT",
		"Thu, 03 dec 2026 15:01:58 GMT",
		"Xyz, 03 Dec 2026 15:01:58 GMT",
		"Thu, 31 Apr 2026 15:01:58 GMT",
		"Sun, 29 Feb 2027 15:01:58 GMT",
		"Mon, 29 Feb 1904 15:01:58 GMT",	/* before 1970 */
		"Wed, 31 Dec 1969 23:59:59 GMT",
		"Thu, 00 Dec 2026 15:01:58 GMT",
		"Thu, 03 Dec 2026 24:00:00 GMT",
		"Thu, 03 Dec 2026 15:60:58 GMT",
		"Thu, 03 Dec 2026 15:01:61 GMT",
		"Thu, 03 Dec 2026 15:-1:58 GMT",
		"Thu, 03 Dec 20x6 15:01:58 GMT",
		"Thu, 03 Dec 2026 15:01:58 GMTx",
		"",
	};
	int64_t t;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		t = -1;
		T_EQ(s3_parse_date(good[i].s, strlen(good[i].s), &t), 0);
		T_EQ(t, good[i].t);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = s3_parse_date(bad[i], strlen(bad[i]), &t);
		if (rc != -EINVAL)
			fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
		T_EQ(rc, -EINVAL);
	}
	/* len bounds the date: the bytes after it are not read */
	T_EQ(s3_parse_date("Thu, 03 Dec 2026 15:01:58 GMTxyz", 29, &t), 0);
	T_EQ(t, 1796310118);
	T_EQ(s3_parse_date("Thu, 03 Dec 2026 15:01:58 GMT", 28, &t), -EINVAL);
}

int main(void)
{
	T_RUN(test_tag_answers);
	T_RUN(test_tag_entities);
	T_RUN(test_tag_shapes);
	T_RUN(test_date);
	return t_done();
}
