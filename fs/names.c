/* SPDX-License-Identifier: MIT */
/* names: the snapshot-name rules (see names.h). */
#include "fs/names.h"

#include <errno.h>
#include <string.h>

#include "fs/msg.h"

/* Whitespace as the shell's read and store's parser trim it. */
static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == '\v' || c == '\f';
}

int names_check(const char *name, char *err, size_t errlen)
{
	size_t len = strlen(name);
	const char *why = NULL;

	if (len == 0)
		why = "empty";
	else if (len > NAMES_MAX) {
		msg_say(err, errlen, "snapshot name of %zu bytes: at most %d",
		    len, NAMES_MAX);
		return -ENAMETOOLONG;
	} else if (strchr(name, '/'))
		why = "contains '/'";
	else if (name[0] == '.')
		why = "hidden names (leading '.') are snapfs's own";
	else if (!strcmp(name, "current"))
		why = "'current' is the mount's link to the current snapshot";
	else if (name[0] == '#')
		why = "a leading '#' makes its line in the layers file a comment";
	else if (is_space((unsigned char)name[0]) ||
		 is_space((unsigned char)name[len - 1]))
		why = "leading or trailing whitespace is trimmed from the "
		      "layers file";
	else {
		for (size_t i = 0; i < len && !why; i++) {
			unsigned char c = (unsigned char)name[i];
			if (c < 0x20 || c == 0x7f)
				why = "control characters (newline, tab, escape, "
				      "...) cannot be carried by the layers file";
		}
	}
	if (!why)
		return 0;
	msg_say(err, errlen, "not a usable snapshot name: %s", why);
	return -EINVAL;
}
