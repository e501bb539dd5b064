/* SPDX-License-Identifier: MIT */
/*
 * test_names: the snapshot-name rules, and that every accepted name
 * reads back from a layers-file line as itself (what the rules are for).
 */
#include "fs/names.h"

#include <errno.h>
#include <string.h>

#include "tests/unit/t.h"

/* A layers-file line as the store reads it: trimmed, '#' a comment. */
static int reads_back(const char *name)
{
	char line[512];
	char *p = line, *e;

	snprintf(line, sizeof(line), "%s.patch", name);
	e = line + strlen(line);
	while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '#' || strchr(p, '\n'))
		return 0;
	return strlen(p) == strlen(name) + 6 && !strncmp(p, name, strlen(name));
}

static void test_rules(void)
{
	static const char *good[] = { "snapshot_6", "a b", "vm1.2024-01-01",
				      "x#y", "ünïcode", "a" };
	static const char *bad[] = { "", "#note", " lead", "trail ", "new\nline",
				     "tab\tx", "esc\033x", "del\177x", "a/b",
				     ".hidden", ".", "..", "cr\r" };
	char err[256], big[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		T_EQ(names_check(good[i], err, sizeof(err)), 0);
		T_CHECK(reads_back(good[i]));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		T_EQ(names_check(bad[i], err, sizeof(err)), -EINVAL);
		T_CHECK(err[0] != 0);
	}
	memset(big, 'x', sizeof(big));
	big[NAMES_MAX] = 0;
	T_EQ(names_check(big, err, sizeof(err)), 0);
	big[NAMES_MAX] = 'x';
	big[NAMES_MAX + 1] = 0;
	T_EQ(names_check(big, err, sizeof(err)), -ENAMETOOLONG);
}

/* Exhaustive over two-byte names: accepted ones always read back. */
static void test_all_pairs(void)
{
	char name[3] = "", err[256];
	int fails = 0;

	for (int a = 1; a < 256; a++)
		for (int b = 0; b < 256; b++) {
			name[0] = (char)a;
			name[1] = (char)b;
			if (names_check(name, err, sizeof(err)) == 0 &&
			    !reads_back(name))
				fails++;
		}
	T_EQ(fails, 0);
}

int main(void)
{
	T_RUN(test_rules);
	T_RUN(test_all_pairs);
	return t_done();
}
