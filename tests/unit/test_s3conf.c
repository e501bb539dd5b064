/* SPDX-License-Identifier: MIT */
/*
 * test_s3conf: where a remote store's settings come from (s3_conf_load):
 * the URL's bucket and prefix, environment before profile files, the
 * named profile of ~/.aws/credentials and its region in ~/.aws/config,
 * endpoints (option, then environment, else AWS's own), and the message
 * when credentials are missing. Plus s3_parse_list on a listing.
 */
#include "fs/s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/t.h"

static char home[64];

static void clear_env(void)
{
	static const char *v[] = {
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
		"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		unsetenv(v[i]);
	setenv("HOME", home, 1);
}

static void put(const char *rel, const char *text)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", home, rel);
	f = fopen(p, "w");
	T_CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_env_and_url(void)
{
	struct s3_conf c;
	char err[512];

	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "test:tester", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t", 1);
	setenv("AWS_REGION", "eu-west-3", 1);
	T_EQ(s3_conf_load(&c, "s3://bkt/a/b/", NULL, err, sizeof(err)), 0);
	T_CHECK(!strcmp(c.bucket, "bkt"));
	T_CHECK(!strcmp(c.prefix, "a/b"));	/* trailing '/' dropped */
	T_CHECK(!strcmp(c.key_id, "test:tester"));
	T_CHECK(!strcmp(c.region, "eu-west-3"));
	/* no endpoint: AWS itself, virtual-hosted */
	T_CHECK(!strcmp(c.endpoint, "https://s3.eu-west-3.amazonaws.com"));
	T_EQ(c.path_style, 0);
	/* an endpoint: path-style; the option wins over the environment */
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1/", 1);
	T_EQ(s3_conf_load(&c, "s3://bkt", NULL, err, sizeof(err)), 0);
	T_CHECK(!strcmp(c.endpoint, "http://127.0.0.1:1"));
	T_EQ(c.path_style, 1);
	T_CHECK(c.prefix[0] == 0);
	T_EQ(s3_conf_load(&c, "s3://bkt", "https://h:9", err, sizeof(err)), 0);
	T_CHECK(!strcmp(c.endpoint, "https://h:9"));
	T_EQ(s3_conf_load(&c, "s3://bkt", "ftp://h", err, sizeof(err)),
	     -EINVAL);
	T_CHECK(strstr(err, "http://") != NULL);
	T_EQ(s3_conf_load(&c, "s3://", NULL, err, sizeof(err)), -EINVAL);
	T_EQ(s3_conf_load(&c, "/local/dir", NULL, err, sizeof(err)), -EINVAL);
	T_EQ(s3_is_url("s3://x"), 1);
	T_EQ(s3_is_url("/x"), 0);
}

static void test_profiles(void)
{
	struct s3_conf c;
	char err[512];

	clear_env();
	put(".aws/credentials", "[default]\naws_access_key_id = DEF\n"
	    "aws_secret_access_key = defsecret\n\n[other]\n"
	    "aws_access_key_id=OTH\naws_secret_access_key= othsecret \n"
	    "aws_session_token = tok\n");
	put(".aws/config", "[default]\nregion = us-west-2\n"
	    "[profile other]\nregion = ap-south-1\n");
	T_EQ(s3_conf_load(&c, "s3://b", NULL, err, sizeof(err)), 0);
	T_CHECK(!strcmp(c.key_id, "DEF"));
	T_CHECK(!strcmp(c.secret, "defsecret"));
	T_CHECK(!strcmp(c.region, "us-west-2"));
	setenv("AWS_PROFILE", "other", 1);
	T_EQ(s3_conf_load(&c, "s3://b", NULL, err, sizeof(err)), 0);
	T_CHECK(!strcmp(c.key_id, "OTH"));
	T_CHECK(!strcmp(c.secret, "othsecret"));
	T_CHECK(!strcmp(c.token, "tok"));
	T_CHECK(!strcmp(c.region, "ap-south-1"));
	/* the environment comes first */
	setenv("AWS_ACCESS_KEY_ID", "ENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	T_EQ(s3_conf_load(&c, "s3://b", NULL, err, sizeof(err)), 0);
	T_CHECK(!strcmp(c.key_id, "ENV"));
	/* a profile that does not exist: no credentials, and it says how */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	setenv("AWS_PROFILE", "nope", 1);
	T_EQ(s3_conf_load(&c, "s3://b", NULL, err, sizeof(err)), -EINVAL);
	T_CHECK(strstr(err, "AWS_ACCESS_KEY_ID") != NULL);
	T_CHECK(strstr(err, "'nope'") != NULL);
}

struct seen {
	int n;
	char keys[4][64];
	char etag[4][128];
	uint64_t size[4];
};

static int on_key(void *arg, const char *key, const struct s3_obj *o)
{
	struct seen *s = arg;

	if (s->n < 4) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
		snprintf(s->etag[s->n], sizeof(s->etag[0]), "%s", o->etag);
		s->size[s->n] = o->size;
	}
	s->n++;
	return 0;
}

static void test_parse_list(void)
{
	static const char body[] =
		"<ListBucketResult><IsTruncated>true</IsTruncated>"
		"<NextContinuationToken>abc=</NextContinuationToken>"
		"<Contents><Key>p/increments.txt</Key><ETag>&quot;e1&quot;"
		"</ETag><Size>80</Size></Contents>"
		"<Contents><Key>p/snapshot_0.zst</Key><ETag>\"e2-3\"</ETag>"
		"<Size>123456789012</Size></Contents>"
		"<Contents><Key>p/cut";
	struct seen s = { 0 };
	char token[32];

	T_EQ(s3_parse_list(body, sizeof(body) - 1, 2, on_key, &s, token,
			   sizeof(token)), 0);
	T_EQ(s.n, 2);	/* the cut entry is not one */
	T_CHECK(!strcmp(s.keys[0], "increments.txt"));
	T_CHECK(!strcmp(s.etag[0], "\"e1\""));
	T_CHECK(!strcmp(s.keys[1], "snapshot_0.zst"));
	T_CHECK(!strcmp(s.etag[1], "\"e2-3\""));
	T_EQ(s.size[1], 123456789012ULL);
	T_CHECK(!strcmp(token, "abc="));
	memset(&s, 0, sizeof(s));
	T_EQ(s3_parse_list("<IsTruncated>false</IsTruncated>", 32, 0,
			   on_key, &s, token, sizeof(token)), 0);
	T_EQ(s.n, 0);
	T_CHECK(token[0] == 0);
}

int main(void)
{
	char cmd[128];

	snprintf(home, sizeof(home), "/tmp/test_s3conf.%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/.aws", home);
	if (system(cmd) != 0)
		return 1;
	T_RUN(test_env_and_url);
	T_RUN(test_profiles);
	T_RUN(test_parse_list);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
	if (system(cmd) != 0)
		return 1;
	return t_done();
}
