/* SPDX-License-Identifier: MIT */
/*
 * names: which snapshot names the store can carry.
 *
 * A snapshot's file name ends up as one line of increments.txt, which
 * stock scripts read with `while read f`: a line starting with '#' is a
 * comment, surrounding whitespace is trimmed, a newline ends it. A name
 * that would read back differently is refused here instead of escaped,
 * so the file stays readable by those scripts. Shared by create and (in
 * time) rename. Not here: whether the name is taken (the store's and the
 * chain's business). Pure functions.
 */
#ifndef SNAPFS_FS_NAMES_H
#define SNAPFS_FS_NAMES_H

#include <stddef.h>

#define NAMES_MAX 200	/* bytes; leaves room for an extension and a pid */

/*
 * 0 if name can be a snapshot name; otherwise -EINVAL (or -ENAMETOOLONG
 * past NAMES_MAX bytes) with a message in err saying which rule it
 * breaks: empty, '/', hidden (leading '.'), "current" (the mount's
 * link), leading '#', leading or trailing whitespace, a control
 * character.
 */
int names_check(const char *name, char *err, size_t errlen);

#endif
