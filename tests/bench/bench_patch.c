/* SPDX-License-Identifier: MIT */
/*
 * bench_patch: encode one pair of files with vcdiff_enc, for the size
 * table of tests/bench/size.sh.
 *
 *   bench_patch SRC TGT OUT [none|lzma [PRESET [WIN_BYTES [WORKERS]]]]
 *
 * Reads TGT in 128 KiB pieces as FUSE hands them over, SRC through pread,
 * writes the patch to OUT and prints one line:
 *   bytes=N seconds=S rss_mib=M
 * (seconds: wall time of index + encode; rss: this process's peak).
 * PRESET: liblzma preset 1..9, "e" suffix for extreme (0: default).
 * WORKERS: vcdiff_enc_opts.workers (0..2). Exit 1 on error.
 */
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static ssize_t src_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	ssize_t n = pread(*(int *)ctx, buf, len, (off_t)off);

	return n < 0 ? -errno : n;
}

static int out_write(void *ctx, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(*(int *)ctx, p, len);
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct vcdiff_enc_opts o = { .win_size = 0 };
	struct vcdiff_enc *e = NULL;
	struct rusage ru;
	struct stat st;
	static char piece[128 << 10];
	int sfd, tfd, ofd, rc;
	double t0;

	if (argc < 4) {
		fprintf(stderr, "usage: bench_patch SRC TGT OUT "
			"[none|lzma [PRESET [WIN_BYTES [WORKERS]]]]\n");
		return 1;
	}
	if (argc > 4 && strcmp(argv[4], "lzma") == 0)
		o.secondary = VCDIFF_SEC_LZMA_WINDOWED;
	if (argc > 5) {
		o.lzma_preset = (uint32_t)atoi(argv[5]);
		if (strchr(argv[5], 'e'))
			o.lzma_preset |= VCDIFF_LZMA_EXTREME;
	}
	if (argc > 6)
		o.win_size = (uint32_t)strtoul(argv[6], NULL, 0);
	if (argc > 7)
		o.workers = atoi(argv[7]);
	sfd = open(argv[1], O_RDONLY);
	tfd = open(argv[2], O_RDONLY);
	ofd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (sfd < 0 || tfd < 0 || ofd < 0 || fstat(sfd, &st) < 0) {
		perror("open");
		return 1;
	}
	t0 = now();
	rc = vcdiff_enc_new(&e, &o, (uint64_t)st.st_size, src_read, &sfd,
			    out_write, &ofd);
	while (rc == 0) {
		ssize_t n = read(tfd, piece, sizeof(piece));
		if (n < 0)
			rc = -errno;
		if (n <= 0)
			break;
		rc = vcdiff_enc_write(e, piece, (size_t)n);
	}
	if (rc == 0)
		rc = vcdiff_enc_finish(e);
	if (rc) {
		fprintf(stderr, "bench_patch: %s\n", strerror(-rc));
		return 1;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("bytes=%llu seconds=%.2f rss_mib=%ld\n",
	       (unsigned long long)vcdiff_enc_patch_size(e), now() - t0,
	       ru.ru_maxrss / 1024);
	vcdiff_enc_free(e);
	close(sfd);
	close(tfd);
	return close(ofd) == 0 ? 0 : 1;
}
