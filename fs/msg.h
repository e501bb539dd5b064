/* SPDX-License-Identifier: MIT */
/*
 * msg: the one way fs/ modules fill a caller's error buffer. Every error
 * on the way to a user becomes one such message: what, which file, what
 * to do. Not a logger (fs/log is; messages for it go through
 * chain_opts.log or log_say).
 */
#ifndef SNAPFS_FS_MSG_H
#define SNAPFS_FS_MSG_H

#include <stddef.h>

/* Formats into err (errlen bytes); does nothing if err is NULL. */
void msg_say(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Copies s into out (cap bytes, always terminated, cut if too long) with
 * control bytes (below 0x20, 0x7f) and backslashes written as \xNN and
 * \\, so that a name from a hostile layers file or a mount client cannot
 * move a terminal's cursor or forge a second log line. Returns out.
 */
char *msg_escape(const char *s, char *out, size_t cap);

#endif
