/* SPDX-License-Identifier: MIT */
/*
 * test_log: msg_escape, and the log file: escaped lines, rotation to
 * FILE.1 past LOG_FILE_MAX, refusal of a symlinked log file.
 */
#include "fs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/msg.h"
#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char dir[64];

static void test_escape(void)
{
	char out[64];

	T_CHECK(!strcmp(msg_escape("plain text", out, sizeof(out)),
			"plain text"));
	T_CHECK(!strcmp(msg_escape("a\nb\033[2J\\c\177", out, sizeof(out)),
			"a\\x0ab\\x1b[2J\\\\c\\x7f"));
	/* Cut, never overflowing, never half an escape. */
	T_CHECK(!strcmp(msg_escape("abc\n", out, 6), "abc"));
	T_CHECK(!strcmp(msg_escape("ab\ncd", out, 7), "ab\\x0a"));
	T_CHECK(!strcmp(msg_escape("xyz", out, 1), ""));
}

static long long fsize(const char *name)
{
	char p[128];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static void test_file(void)
{
	struct log *l = NULL;
	char err[256], p[128], buf[4096];
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	int fd;
	ssize_t n;

	T_EQ(log_new(&l), 0);
	T_CHECK(!strcmp(log_where(l), "stderr"));
	T_EQ(log_to_file(l, dfd, "log", "DIR/log", err, sizeof(err)), 0);
	T_CHECK(!strcmp(log_where(l), "DIR/log"));
	log_say(l, LOG_ERR, "name %s here", "a\nforged line\033[2J");
	snprintf(p, sizeof(p), "%s/log", dir);
	fd = open(p, O_RDONLY);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	buf[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
	T_CHECK(strstr(buf, "error: name a\\x0aforged line\\x1b[2J here\n"));
	T_EQ(strchr(buf, '\n') - buf + 1, n);	/* one line */
	/* Past the cap: rotated once to log.1, both bounded. */
	memset(buf, 'm', 1000);
	buf[1000] = 0;
	for (int i = 0; i < 2500; i++)
		log_say(l, LOG_INFO, "%s", buf);
	T_CHECK(fsize("log.1") > LOG_FILE_MAX / 2 &&
		fsize("log.1") <= LOG_FILE_MAX);
	T_CHECK(fsize("log") > 0 && fsize("log") <= LOG_FILE_MAX);
	log_free(l);
	/* A symlink in the log's place is refused, not written through. */
	T_EQ(log_new(&l), 0);
	t_sh("ln -s /etc/passwd %s/evil", dir);
	T_EQ(log_to_file(l, dfd, "evil", "DIR/evil", err, sizeof(err)), -ELOOP);
	T_CHECK(strstr(err, "DIR/evil") != NULL);
	T_CHECK(!strcmp(log_where(l), "stderr"));
	log_free(l);
	close(dfd);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_log.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	T_RUN(test_escape);
	T_RUN(test_file);
	t_sh("rm -rf %s", dir);
	return t_done();
}
