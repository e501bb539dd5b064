/* SPDX-License-Identifier: MIT */
/*
 * readbench: the reader side of `make bench`, for any file (a snapshot in
 * a mount or a plain file, measured the same way in the same run).
 *
 *   readbench seq FILE [BUFSIZE]     sequential read: MB/s
 *   readbench ttfb FILE              open + first 4 KiB read: ms
 *   readbench rand FILE N [SEED]     N random 4 KiB preads with readahead
 *                                    off: median and p99 in ms
 *
 * Prints one line "key=value ..." for the bench script to pick up. Not a
 * test: it checks nothing about the bytes (the e2e tests do that).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int die(const char *what, const char *file)
{
	fprintf(stderr, "readbench: %s %s: %s\n", what, file, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: readbench seq|ttfb|rand FILE [...]\n");
		return 2;
	}
	const char *mode = argv[1], *file = argv[2];
	static char page[4096] __attribute__((aligned(4096)));

	if (!strcmp(mode, "seq")) {
		size_t bs = argc > 3 ? (size_t)atol(argv[3]) : (size_t)1 << 20;
		char *buf = malloc(bs);
		double t0 = now();
		int fd = open(file, O_RDONLY);
		uint64_t total = 0;
		ssize_t r;
		if (fd < 0 || !buf)
			return die("open", file);
		while ((r = read(fd, buf, bs)) > 0)
			total += (uint64_t)r;
		if (r < 0)
			return die("read", file);
		double dt = now() - t0;
		printf("bytes=%llu seconds=%.3f mbps=%.0f\n",
		       (unsigned long long)total, dt, (double)total / dt / 1e6);
		return 0;
	}
	if (!strcmp(mode, "ttfb")) {
		double t0 = now();
		int fd = open(file, O_RDONLY);
		if (fd < 0)
			return die("open", file);
		if (read(fd, page, sizeof(page)) < 0)
			return die("read", file);
		printf("ttfb_ms=%.3f\n", (now() - t0) * 1e3);
		return 0;
	}
	if (!strcmp(mode, "rand") && argc > 3) {
		long n = atol(argv[3]);
		uint64_t x = argc > 4 ? strtoull(argv[4], NULL, 0) | 1 : 88172645463325252ull;
		struct stat st;
		int fd = open(file, O_RDONLY);
		if (fd < 0 || fstat(fd, &st) < 0 || n < 1)
			return die("open", file);
		/* Each read costs what it costs, not a readahead window. */
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
		double *lat = malloc(sizeof(double) * (size_t)n);
		uint64_t pages = (uint64_t)st.st_size / 4096;
		if (!lat || pages == 0)
			return die("setup", file);
		for (long i = 0; i < n; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			off_t off = (off_t)((x % pages) * 4096);
			double t0 = now();
			if (pread(fd, page, sizeof(page), off) < 0)
				return die("pread", file);
			lat[i] = (now() - t0) * 1e3;
		}
		qsort(lat, (size_t)n, sizeof(double), cmpd);
		printf("n=%ld median_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", n,
		       lat[n / 2], lat[(size_t)((double)n * 0.99)], lat[n - 1]);
		return 0;
	}
	fprintf(stderr, "usage: readbench seq|ttfb|rand FILE [...]\n");
	return 2;
}
