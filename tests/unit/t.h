/* SPDX-License-Identifier: MIT */
/*
 * t.h: the unit-test runner, small on purpose.
 *
 * T_CHECK records file:line and continues, so one failure does not hide
 * the checks after it. T_RUN counts one test, failed if any check inside
 * it failed. t_done() prints the closing line "N passed, M failed" and
 * returns the exit status. Not thread-safe: checks run on the main thread.
 */
#ifndef SNAPFS_T_H
#define SNAPFS_T_H

#include <stdio.h>

static int t_pass, t_fail, t_cur_fail;

#define T_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		t_cur_fail++; \
	} \
} while (0)

/* Like T_CHECK, with the two values printed when they differ. */
#define T_EQ(a, b) do { \
	long long t_a_ = (long long)(a), t_b_ = (long long)(b); \
	if (t_a_ != t_b_) { \
		fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", \
			__FILE__, __LINE__, #a, #b, t_a_, t_b_); \
		t_cur_fail++; \
	} \
} while (0)

#define T_RUN(fn) do { \
	t_cur_fail = 0; \
	fn(); \
	if (t_cur_fail) { t_fail++; fprintf(stderr, "not ok %s\n", #fn); } \
	else { t_pass++; fprintf(stderr, "ok %s\n", #fn); } \
} while (0)

static inline int t_done(void)
{
	printf("%d passed, %d failed\n", t_pass, t_fail);
	return t_fail ? 1 : 0;
}

#endif
