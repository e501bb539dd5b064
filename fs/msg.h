/* SPDX-License-Identifier: MIT */
/*
 * msg: the one way fs/ modules fill a caller's error buffer. Every error
 * on the way to a user becomes one such message: what, which file, what
 * to do. Not a logger (messages for the log go through chain_opts.log).
 */
#ifndef SNAPFS_FS_MSG_H
#define SNAPFS_FS_MSG_H

#include <stddef.h>

/* Formats into err (errlen bytes); does nothing if err is NULL. */
void msg_say(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
