/* SPDX-License-Identifier: MIT */
/*
 * log: the mount's message sink (see log.h).
 *
 * The size cap is checked before each write against the size known from
 * the last open plus what this process wrote since; another writer of the
 * same file (a second snapfs given the same -o log=) only makes the cap
 * approximate, never lets it grow without bound.
 */
#include "fs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/msg.h"
#include "fs/safefile.h"

enum { TO_STDERR, TO_SYSLOG, TO_FILE };

struct log {
	pthread_mutex_t lock;	/* guards everything below */
	int kind;
	int dirfd, fd;		/* TO_FILE */
	char name[256];
	char rotated[264];
	char shown[4096];
	long long size;		/* of the file, as far as we know */
};

int log_new(struct log **out)
{
	struct log *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	l->kind = TO_STDERR;
	l->dirfd = l->fd = -1;
	*out = l;
	return 0;
}

void log_free(struct log *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	if (l->dirfd >= 0)
		close(l->dirfd);
	if (l->kind == TO_SYSLOG)
		closelog();
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* (Re)opens the file; caller holds the lock or owns l alone. */
static int open_file(struct log *l, const char **why)
{
	struct stat st;
	int fd = safefile_open(l->dirfd, l->name, O_WRONLY | O_APPEND | O_CREAT,
			       0640, &st, why);

	if (fd < 0)
		return fd;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = fd;
	l->size = (long long)st.st_size;
	return 0;
}

int log_to_file(struct log *l, int dirfd, const char *name, const char *shown,
		char *err, size_t errlen)
{
	const char *why = "";
	int rc;

	if (strlen(name) >= sizeof(l->name) - 8 || !*name) {
		msg_say(err, errlen, "%s: log file name too long", shown);
		return -ENAMETOOLONG;
	}
	pthread_mutex_lock(&l->lock);
	if (l->dirfd >= 0)
		close(l->dirfd);
	l->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->rotated, sizeof(l->rotated), "%s.1", name);
	snprintf(l->shown, sizeof(l->shown), "%s", shown);
	rc = l->dirfd < 0 ? -errno : open_file(l, &why);
	if (rc == 0)
		l->kind = TO_FILE;
	pthread_mutex_unlock(&l->lock);
	if (rc)
		msg_say(err, errlen, "%s: cannot log there: %s", shown,
		    *why ? why : strerror(-rc));
	return rc;
}

void log_to_syslog(struct log *l)
{
	pthread_mutex_lock(&l->lock);
	openlog("snapfs", LOG_PID, LOG_DAEMON);
	l->kind = TO_SYSLOG;
	pthread_mutex_unlock(&l->lock);
}

const char *log_where(const struct log *l)
{
	return l->kind == TO_FILE ? l->shown :
	       l->kind == TO_SYSLOG ? "syslog" : "stderr";
}

static const char *level_name(int level)
{
	return level <= LOG_ERR ? "error" : level == LOG_WARNING ? "warning" :
	       "info";
}

/* One line to the file, rotating first if it would pass the cap. */
static void file_write(struct log *l, int level, const char *msg)
{
	char line[8400];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02dZ "
		     "snapfs[%ld]: %s: %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
		     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (long)getpid(), level_name(level), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (l->size + n > LOG_FILE_MAX && l->size > 0) {
		/* Best effort: if the rename fails the file just grows
		 * one more line, and the next message tries again. */
		if (renameat(l->dirfd, l->name, l->dirfd, l->rotated) == 0)
			open_file(l, NULL);
	}
	if (l->fd >= 0 && write(l->fd, line, (size_t)n) == n)
		l->size += n;
}

void log_say(struct log *l, int level, const char *fmt, ...)
{
	char raw[2048], esc[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	msg_escape(raw, esc, sizeof(esc));
	pthread_mutex_lock(&l->lock);
	switch (l->kind) {
	case TO_FILE:
		file_write(l, level, esc);
		break;
	case TO_SYSLOG:
		syslog(level, "%s", esc);
		break;
	default:
		fprintf(stderr, "snapfs: %s\n", esc);
	}
	pthread_mutex_unlock(&l->lock);
}
