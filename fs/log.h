/* SPDX-License-Identifier: MIT */
/*
 * log: where a mount's messages go, and the only way they get there.
 *
 * In the foreground, stderr. Daemonized, syslog when /dev/log exists,
 * otherwise a file: STORE/.snapfs/log by default or the -o log=FILE the
 * user gave (which also wins over syslog). A file is capped: past
 * LOG_FILE_MAX bytes it is renamed to FILE.1 (one older generation kept)
 * and started afresh, so a daemon left running cannot fill the disk. The
 * file is opened beneath its directory's fd, never through a symlink.
 * Every message has its control bytes escaped (msg_escape) before it is
 * written anywhere, so no file name can forge a line or drive a terminal.
 *
 * Owned by the mount's context; safe from any thread (one mutex around
 * each write). Not here: what is worth logging (the callers decide) and
 * libfuse's own fuse_log() lines, which stay on stderr.
 */
#ifndef SNAPFS_FS_LOG_H
#define SNAPFS_FS_LOG_H

#include <stddef.h>
#include <syslog.h>	/* LOG_ERR, LOG_WARNING, LOG_INFO: the levels */

#define LOG_FILE_MAX ((long long)1 << 20)

struct log;

/* A log writing to stderr. Returns 0 or -ENOMEM. */
int log_new(struct log **out);
void log_free(struct log *l);

/*
 * From now on, write to file name beneath dirfd (dup'd; the caller keeps
 * its own). shown is how messages and log_where() name it. Opens (creates,
 * 0640) the file at once so a problem is reported before daemonizing:
 * returns 0 or -errno with a message in err.
 */
int log_to_file(struct log *l, int dirfd, const char *name, const char *shown,
		char *err, size_t errlen);
/* From now on, write to syslog (ident "snapfs", facility daemon). */
void log_to_syslog(struct log *l);

/* Formats, escapes and writes one message. */
void log_say(struct log *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "stderr", "syslog" or the file's shown name: for messages and xattrs.
 * The string lives as long as l. */
const char *log_where(const struct log *l);

#endif
