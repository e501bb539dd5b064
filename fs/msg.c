/* SPDX-License-Identifier: MIT */
/* msg: error messages into a caller's buffer (see msg.h). */
#include "fs/msg.h"

#include <stdarg.h>
#include <stdio.h>

void msg_say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
