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
 * The one message for EMFILE/ENFILE: names what (a file or the store),
 * the current limit and the fix. Every layer stays open while mounted,
 * so a deep store meets the limit wherever the next open happens to be;
 * the cause is the limit, whichever file it hit.
 */
void msg_nofile(char *err, size_t errlen, const char *what);

/*
 * For a public entry point's exit: if rc is -EMFILE or -ENFILE and err
 * does not already say so, replaces err with msg_nofile(what). Returns rc.
 */
int msg_nofile_rc(int rc, char *err, size_t errlen, const char *what);

/*
 * Copies s into out (cap bytes, always terminated, cut if too long) with
 * control bytes (below 0x20, 0x7f) and backslashes written as \xNN and
 * \\, so that a name from a hostile layers file or a mount client cannot
 * move a terminal's cursor or forge a second log line. Returns out.
 */
char *msg_escape(const char *s, char *out, size_t cap);

#endif
