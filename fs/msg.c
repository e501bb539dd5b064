/* SPDX-License-Identifier: MIT */
/* msg: error messages into a caller's buffer (see msg.h). */
#include "fs/msg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

void msg_say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void msg_nofile(char *err, size_t errlen, const char *what)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl.rlim_cur = 0;
	msg_say(err, errlen, "%s: too many open files (limit %llu): snapfs "
		"keeps every layer open; raise the limit (ulimit -n, or "
		"LimitNOFILE= in the systemd unit) or remove old snapshots",
		what, (unsigned long long)rl.rlim_cur);
}

int msg_nofile_rc(int rc, char *err, size_t errlen, const char *what)
{
	if ((rc == -EMFILE || rc == -ENFILE) && err &&
	    !strstr(err, "too many open files (limit"))
		msg_nofile(err, errlen, what);
	return rc;
}

char *msg_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (!cap)
		return out;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || c == '\\') {
			if (o + 4 >= cap)
				break;
			out[o++] = '\\';
			if (c == '\\') {
				out[o++] = '\\';
				continue;
			}
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			if (o + 1 >= cap)
				break;
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return out;
}
