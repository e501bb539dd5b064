/* SPDX-License-Identifier: MIT */
/*
 * s3conf: where a remote store's credentials, region and server come
 * from (s3.h: s3_conf_load), following the AWS conventions: environment
 * variables, then the shared credentials and config files. Not here:
 * requests (fs/s3.c); the INI syntax beyond "[section]" and
 * "key = value" lines.
 */
#include "fs/s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/msg.h"

int s3_is_url(const char *path)
{
	return path && strncmp(path, "s3://", 5) == 0;
}

/* Copies src into dst (cap bytes), cut if too long. */
static void copy(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;

	if (n)
		memcpy(dst, src, n);
	dst[n] = 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/*
 * Looks key up in section of the INI file path ("[section]" lines, then
 * "key = value"). Returns 1 and fills out if found.
 */
static int ini_get(const char *path, const char *section, const char *key,
		   char *out, size_t cap)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	int in = 0, found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = line, *e;

		while (isspace((unsigned char)*p))
			p++;
		e = p + strlen(p);
		while (e > p && isspace((unsigned char)e[-1]))
			*--e = 0;
		if (*p == '[') {
			char *q = strchr(p, ']');
			if (q) {
				*q = 0;
				in = strcmp(p + 1, section) == 0;
			}
			continue;
		}
		if (!in || *p == '#' || *p == ';')
			continue;
		char *eq = strchr(p, '=');
		if (!eq)
			continue;
		char *k = p, *ke = eq, *v = eq + 1;
		while (ke > k && isspace((unsigned char)ke[-1]))
			ke--;
		while (isspace((unsigned char)*v))
			v++;
		if ((size_t)(ke - k) == strlen(key) &&
		    strncmp(k, key, strlen(key)) == 0) {
			copy(out, cap, v);
			found = 1;
		}
	}
	fclose(f);
	return found;
}

int s3_conf_load(struct s3_conf *c, const char *url, const char *endpoint,
		 char *err, size_t errlen)
{
	const char *home = env("HOME"), *profile = env("AWS_PROFILE");
	char creds[1024], config[1024], section[300];
	const char *p;

	memset(c, 0, sizeof(*c));
	if (!s3_is_url(url) || !url[5] || url[5] == '/') {
		msg_say(err, errlen, "%s: give a remote store as s3://BUCKET "
			"or s3://BUCKET/PREFIX", url ? url : "");
		return -EINVAL;
	}
	p = url + 5;
	const char *slash = strchr(p, '/');
	size_t bl = slash ? (size_t)(slash - p) : strlen(p);
	if (bl >= sizeof(c->bucket)) {
		msg_say(err, errlen, "%s: bucket name too long", url);
		return -EINVAL;
	}
	memcpy(c->bucket, p, bl);
	if (slash) {
		copy(c->prefix, sizeof(c->prefix), slash + 1);
		size_t n = strlen(c->prefix);
		while (n && c->prefix[n - 1] == '/')
			c->prefix[--n] = 0;
	}
	if (!profile)
		profile = "default";
	if (env("AWS_SHARED_CREDENTIALS_FILE"))
		copy(creds, sizeof(creds), env("AWS_SHARED_CREDENTIALS_FILE"));
	else
		snprintf(creds, sizeof(creds), "%s/.aws/credentials",
			 home ? home : "/root");
	if (env("AWS_CONFIG_FILE"))
		copy(config, sizeof(config), env("AWS_CONFIG_FILE"));
	else
		snprintf(config, sizeof(config), "%s/.aws/config",
			 home ? home : "/root");
	/* ~/.aws/config names sections "profile NAME", except default. */
	if (strcmp(profile, "default") == 0)
		copy(section, sizeof(section), "default");
	else
		snprintf(section, sizeof(section), "profile %s", profile);

	if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
		copy(c->key_id, sizeof(c->key_id), env("AWS_ACCESS_KEY_ID"));
		copy(c->secret, sizeof(c->secret),
		     env("AWS_SECRET_ACCESS_KEY"));
		copy(c->token, sizeof(c->token), env("AWS_SESSION_TOKEN"));
	} else if (ini_get(creds, profile, "aws_access_key_id", c->key_id,
			   sizeof(c->key_id))) {
		ini_get(creds, profile, "aws_secret_access_key", c->secret,
			sizeof(c->secret));
		ini_get(creds, profile, "aws_session_token", c->token,
			sizeof(c->token));
	}
	if (!c->key_id[0] || !c->secret[0]) {
		msg_say(err, errlen, "%s: no credentials: set "
			"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put "
			"them in profile '%s' of %s", url, profile, creds);
		return -EINVAL;
	}
	if (env("AWS_REGION"))
		copy(c->region, sizeof(c->region), env("AWS_REGION"));
	else if (env("AWS_DEFAULT_REGION"))
		copy(c->region, sizeof(c->region), env("AWS_DEFAULT_REGION"));
	else if (!ini_get(config, section, "region", c->region,
			  sizeof(c->region)))
		copy(c->region, sizeof(c->region), "us-east-1");

	if (!endpoint)
		endpoint = env("AWS_ENDPOINT_URL_S3");
	if (!endpoint)
		endpoint = env("AWS_ENDPOINT_URL");
	if (endpoint) {
		if (strncmp(endpoint, "http://", 7) &&
		    strncmp(endpoint, "https://", 8)) {
			msg_say(err, errlen, "endpoint '%s': give it as "
				"http://HOST[:PORT] or https://HOST[:PORT]",
				endpoint);
			return -EINVAL;
		}
		copy(c->endpoint, sizeof(c->endpoint), endpoint);
		/* A server of one's own (Swift, Ceph RGW, MinIO) is reached
		 * by its address: path-style, which needs no DNS names. */
		c->path_style = 1;
	} else {
		snprintf(c->endpoint, sizeof(c->endpoint),
			 "https://s3.%s.amazonaws.com", c->region);
		c->path_style = strchr(c->bucket, '.') != NULL;
	}
	size_t n = strlen(c->endpoint);
	while (n && c->endpoint[n - 1] == '/')
		c->endpoint[--n] = 0;
	c->retries = 4;
	return 0;
}

