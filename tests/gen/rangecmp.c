/* SPDX-License-Identifier: MIT */
/*
 * rangecmp: compares many random ranges of two files with pread, the way
 * a random reader (a VM restoring lazily, a backup tool) would hit a
 * mount. A test tool: the e2e scripts compare thousands of ranges with it
 * where one dd per range would take minutes.
 *
 *   rangecmp [-n COUNT] [-m MAXLEN] [-s SEED] A B
 *
 * Exit 0 if every range matches (and both files have the same size),
 * 1 with the first differing range on stderr otherwise, 2 on errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rng;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static ssize_t full(int fd, uint8_t *b, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, b + got, len - got, off + (off_t)got);
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int main(int argc, char **argv)
{
	long count = 2000, maxlen = 1 << 20;
	int opt;
	struct stat sa, sb;

	rng = 12345;
	while ((opt = getopt(argc, argv, "n:m:s:")) != -1) {
		switch (opt) {
		case 'n': count = atol(optarg); break;
		case 'm': maxlen = atol(optarg); break;
		case 's': rng = strtoull(optarg, NULL, 0) | 1; break;
		default:
			fprintf(stderr, "usage: rangecmp [-n COUNT] [-m MAXLEN] "
				"[-s SEED] A B\n");
			return 2;
		}
	}
	if (argc - optind != 2 || maxlen < 1) {
		fprintf(stderr, "usage: rangecmp [-n COUNT] [-m MAXLEN] [-s SEED] A B\n");
		return 2;
	}
	int a = open(argv[optind], O_RDONLY), b = open(argv[optind + 1], O_RDONLY);
	if (a < 0 || b < 0 || fstat(a, &sa) || fstat(b, &sb)) {
		perror("rangecmp: open");
		return 2;
	}
	if (sa.st_size != sb.st_size) {
		fprintf(stderr, "rangecmp: sizes differ: %lld vs %lld\n",
			(long long)sa.st_size, (long long)sb.st_size);
		return 1;
	}
	uint8_t *x = malloc((size_t)maxlen), *y = malloc((size_t)maxlen);
	int rc = 0;
	if (!x || !y)
		return 2;
	for (long i = 0; i < count && sa.st_size > 0; i++) {
		uint64_t off = next() % (uint64_t)sa.st_size;
		/* Mostly small reads, some large, some crossing the end. */
		size_t len = (size_t)(next() % 8 == 0 ? next() % (uint64_t)maxlen :
				      next() % 8192) + 1;
		if (len > (size_t)maxlen)
			len = (size_t)maxlen;
		ssize_t ra = full(a, x, len, (off_t)off), rb = full(b, y, len, (off_t)off);
		if (ra < 0 || rb < 0) {
			fprintf(stderr, "rangecmp: read at %llu+%zu: %s\n",
				(unsigned long long)off, len,
				strerror((int)-(ra < 0 ? ra : rb)));
			rc = 1;
			break;
		}
		if (ra != rb || memcmp(x, y, (size_t)ra)) {
			fprintf(stderr, "rangecmp: range %llu+%zu differs\n",
				(unsigned long long)off, len);
			rc = 1;
			break;
		}
	}
	if (!rc)
		printf("rangecmp: %ld ranges equal\n", count);
	free(x);
	free(y);
	close(a);
	close(b);
	return rc;
}
