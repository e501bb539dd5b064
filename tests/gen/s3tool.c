/* SPDX-License-Identifier: MIT */
/*
 * s3tool: fs/s3's calls from the command line, one per run, for the
 * end-to-end scripts (tests/e2e/65-s3-server.sh) to drive the client
 * itself against a real server. A test tool, not a user's: no retries
 * of its own, no recursion, one object at a time.
 *
 *   s3tool [-p PART_SIZE] [-r RETRIES] [-t TIMEOUT_MS] s3://BUCKET[/PREFIX]
 *          VERB ARGS...
 *     put KEY FILE [none | match ETAG]   s3_put_cond of FILE's bytes
 *     put-file KEY FILE [SIZE]           s3_put_fd (SIZE: default FILE's;
 *                                        larger: the read fails there)
 *     copy FROM TO                       s3_copy
 *     head KEY | get KEY FILE | delete KEY
 *     cond-support KEY                   s3_cond_support (KEY: scratch)
 *
 * Endpoint and credentials as the mount takes them (s3_conf_load:
 * AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). On success: one line
 * "etag=E size=N mtime=T date=T" (the object; cond-support: "mask=M"),
 * then "requests=N retries=N failures=N bytes_out=N bytes_in=N". On
 * failure: the message on stderr, "rc=-N NAME" on stdout, exit 1; exit 2
 * for a wrong command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/s3.h"

static int usage(void)
{
	fprintf(stderr, "usage: s3tool [-p PART_SIZE] [-r RETRIES] "
		"[-t TIMEOUT_MS] s3://BUCKET[/PREFIX] VERB ARGS...\n"
		"  put KEY FILE [none | match ETAG] | put-file KEY FILE [SIZE]\n"
		"  copy FROM TO | head KEY | get KEY FILE | delete KEY\n"
		"  cond-support KEY\n");
	return 2;
}

/* FILE's bytes in a malloc'd buffer. */
static int slurp(const char *path, void **buf, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY), rc = 0;

	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		rc = -ENOMEM;
	else if (pread(fd, *buf, *len, 0) != (ssize_t)*len)
		rc = -EIO;
	close(fd);
	return rc;
}

static void print_obj(const struct s3_obj *o)
{
	printf("etag=%s size=%" PRIu64 " mtime=%" PRId64 " date=%" PRId64 "\n",
	       o->etag, o->size, o->mtime, o->date);
}

static int run(struct s3 *s, int argc, char **argv, char *err, size_t errlen)
{
	const char *verb = argv[0];
	struct s3_obj o = { 0 };
	void *buf = NULL;
	size_t len = 0;
	int rc;

	if (!strcmp(verb, "put") && (argc == 3 || argc == 4 || argc == 5)) {
		struct s3_cond c = { 0 };
		if (argc >= 4 && !strcmp(argv[3], "none"))
			c.if_none_match = 1;
		else if (argc == 5 && !strcmp(argv[3], "match"))
			c.if_match = argv[4];
		else if (argc != 3)
			return usage();
		if ((rc = slurp(argv[2], &buf, &len))) {
			snprintf(err, errlen, "%s: %s", argv[2], strerror(-rc));
			return rc;
		}
		rc = s3_put_cond(s, argv[1], buf, len, argc > 3 ? &c : NULL,
				 &o, err, errlen);
		free(buf);
	} else if (!strcmp(verb, "put-file") && (argc == 3 || argc == 4)) {
		struct stat st;
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0 || fstat(fd, &st)) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", argv[2], strerror(errno));
			if (fd >= 0)
				close(fd);
			return rc;
		}
		rc = s3_put_fd(s, argv[1], fd, argc == 4 ?
			       strtoull(argv[3], NULL, 0) :
			       (uint64_t)st.st_size, &o, err, errlen);
		close(fd);
	} else if (!strcmp(verb, "copy") && argc == 3) {
		rc = s3_copy(s, argv[1], argv[2], &o, err, errlen);
	} else if (!strcmp(verb, "head") && argc == 2) {
		rc = s3_head(s, argv[1], &o, err, errlen);
	} else if (!strcmp(verb, "get") && argc == 3) {
		rc = s3_get(s, argv[1], (size_t)1 << 34, &buf, &len, &o, err,
			    errlen);
		if (!rc) {
			FILE *f = fopen(argv[2], "w");
			if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
				rc = -errno;
				snprintf(err, errlen, "%s: %s", argv[2],
					 strerror(errno));
			}
		}
		free(buf);
	} else if (!strcmp(verb, "delete") && argc == 2) {
		rc = s3_delete(s, argv[1], err, errlen);
	} else if (!strcmp(verb, "cond-support") && argc == 2) {
		rc = s3_cond_support(s, argv[1], err, errlen);
		if (rc >= 0) {
			printf("mask=%d\n", rc);
			fprintf(stderr, "%s\n", err);
			return 0;
		}
		return rc;
	} else {
		return usage();
	}
	if (!rc)
		print_obj(&o);
	return rc;
}

int main(int argc, char **argv)
{
	struct s3_conf c;
	struct s3_stats st;
	struct s3 *s;
	char err[2048] = "";
	long part = -1, retries = -1, timeout = -1;
	int opt, rc;

	while ((opt = getopt(argc, argv, "+p:r:t:")) != -1) {
		switch (opt) {
		case 'p':
			part = strtol(optarg, NULL, 0);
			break;
		case 'r':
			retries = strtol(optarg, NULL, 0);
			break;
		case 't':
			timeout = strtol(optarg, NULL, 0);
			break;
		default:
			return usage();
		}
	}
	if (argc - optind < 2)
		return usage();
	if ((rc = s3_conf_load(&c, argv[optind], NULL, err, sizeof(err)))) {
		fprintf(stderr, "s3tool: %s\n", err);
		return 2;
	}
	if (part >= 0)
		c.part_size = (unsigned)part;
	if (retries >= 0)
		c.retries = (unsigned)retries;
	if (timeout >= 0)
		c.timeout_ms = (unsigned)timeout;
	if ((rc = s3_new(&s, &c, err, sizeof(err)))) {
		fprintf(stderr, "s3tool: %s\n", err);
		printf("rc=%d %s\n", rc, strerrorname_np(-rc));
		return 1;
	}
	rc = run(s, argc - optind - 1, argv + optind + 1, err, sizeof(err));
	if (rc == 2 && !err[0]) {
		s3_free(s);
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "s3tool: %s\n", err);
		printf("rc=%d %s\n", rc, strerrorname_np(-rc));
	}
	s3_get_stats(s, &st);
	printf("requests=%" PRIu64 " retries=%" PRIu64 " failures=%" PRIu64
	       " bytes_out=%" PRIu64 " bytes_in=%" PRIu64 "\n", st.requests,
	       st.retries, st.failures, st.bytes_out, st.bytes_in);
	s3_free(s);
	return rc < 0 ? 1 : 0;
}
