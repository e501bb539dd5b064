/* SPDX-License-Identifier: MIT */
/*
 * test_safefile: opens beneath a directory refuse symlinks (last or
 * middle component, absolute, ".."), FIFOs without blocking, and
 * directories; subdirectories must be real; creates replace a planted
 * symlink instead of writing through it.
 */
#include "fs/safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

static char dir[96];
static int dfd = -1;

static const char *P(const char *name)
{
	static char buf[4][256];
	static int k;
	k = (k + 1) & 3;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static void test_open(void)
{
	const char *why = NULL;
	struct stat st;
	int fd;

	fd = safefile_open(dfd, "plain", O_RDONLY, 0, &st, &why);
	T_CHECK(fd >= 0 && S_ISREG(st.st_mode) && st.st_size == 5);
	if (fd >= 0) {
		T_CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
		close(fd);
	}
	T_EQ(safefile_open(dfd, "sub/inner", O_RDONLY, 0, NULL, &why) >= 0, 1);
	T_EQ(safefile_open(dfd, "missing", O_RDONLY, 0, NULL, &why), -ENOENT);
	T_EQ(safefile_open(dfd, "link", O_RDONLY, 0, NULL, &why), -ELOOP);
	T_CHECK(why && strstr(why, "symbolic link"));
	T_EQ(safefile_open(dfd, "linkdir/inner", O_RDONLY, 0, NULL, &why),
	     -ELOOP);
	T_CHECK(safefile_open(dfd, "../x", O_RDONLY, 0, NULL, &why) < 0);
	T_CHECK(safefile_open(dfd, "/etc/passwd", O_RDONLY, 0, NULL, &why) < 0);
	/* A FIFO with no writer: refused at once, never waited on. */
	why = NULL;
	T_EQ(safefile_open(dfd, "fifo", O_RDONLY, 0, NULL, &why), -EINVAL);
	T_CHECK(why && strstr(why, "FIFO"));
	T_EQ(safefile_open(dfd, "fifo", O_RDWR, 0, NULL, &why), -EINVAL);
	T_EQ(safefile_open(dfd, "sub", O_RDONLY, 0, NULL, &why), -EISDIR);
	T_EQ(safefile_open(dfd, "/dev/null", O_RDONLY, 0, NULL, &why) < 0, 1);
	/* O_CREAT beneath: creates a new file, never through a symlink. */
	fd = safefile_open(dfd, "made", O_WRONLY | O_CREAT | O_APPEND, 0600,
			   &st, &why);
	T_CHECK(fd >= 0 && (st.st_mode & 0777) == 0600);
	if (fd >= 0)
		close(fd);
	T_EQ(safefile_open(dfd, "link", O_WRONLY | O_CREAT, 0600, NULL, &why),
	     -ELOOP);
}

static void test_subdir(void)
{
	const char *why = NULL;
	int fd;

	fd = safefile_subdir(dfd, "newdir", 0755, &why);
	T_CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	fd = safefile_subdir(dfd, "newdir", 0755, &why);	/* exists */
	T_CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	why = NULL;
	T_EQ(safefile_subdir(dfd, "linkdir", 0755, &why), -ELOOP);
	T_CHECK(why && strstr(why, "symbolic link"));
	T_EQ(safefile_subdir(dfd, "dangling", 0755, &why), -ELOOP);
	T_EQ(safefile_subdir(dfd, "plain", 0755, &why), -ENOTDIR);
}

static void test_create(void)
{
	struct stat st;
	char buf[16] = "";
	int fd;

	/* victim is outside dir; "trap" points to it. */
	fd = safefile_create(dfd, "trap", 0600, NULL);
	T_CHECK(fd >= 0);
	if (fd >= 0) {
		T_EQ(write(fd, "new", 3), 3);
		close(fd);
	}
	T_CHECK(lstat(P("trap"), &st) == 0 && S_ISREG(st.st_mode));
	fd = open(P("../victim"), O_RDONLY);
	T_CHECK(fd >= 0 && read(fd, buf, sizeof(buf) - 1) == 8);
	T_CHECK(!strcmp(buf, "precious"));
	if (fd >= 0)
		close(fd);
	/* An existing file is replaced by an empty one. */
	fd = safefile_create(dfd, "trap", 0600, NULL);
	T_CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 0);
	if (fd >= 0)
		close(fd);
	T_CHECK(safefile_create(dfd, "sub", 0600, NULL) < 0);
}

int main(void)
{
	char top[64] = "/tmp/test_safefile.XXXXXX";

	if (!mkdtemp(top))
		return 1;
	snprintf(dir, sizeof(dir), "%s/d", top);
	t_sh("set -e; cd %s; printf precious > victim; mkdir d; cd d; "
	     "printf hello > plain; mkdir sub; : > sub/inner; "
	     "ln -s plain link; ln -s sub linkdir; ln -s nowhere dangling; "
	     "ln -s ../victim trap; mkfifo fifo", top);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	T_RUN(test_open);
	T_RUN(test_subdir);
	T_RUN(test_create);
	close(dfd);
	t_sh("rm -rf %s", top);
	return t_done();
}
