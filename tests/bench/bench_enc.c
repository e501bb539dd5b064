/* SPDX-License-Identifier: MIT */
/*
 * bench_enc: vcdiff_enc on a QEMU-like migration stream, next to stock
 * xdelta3 and cp on the same files.
 *
 *   bench_enc [MiB [dir [win_bytes [index_budget_MiB]]]]
 *                              default 1024 MiB in /tmp/bench_enc
 *   BENCH_REUSE=1      keep dir/src and dir/tgt if they exist
 *   BENCH_NO_XDELTA=1  only our encoder (no xdelta3, no decode check)
 *
 * From a fixed seed it writes dir/src (a migration stream: 8-byte
 * big-endian page headers, 4 KiB pages of text-like, pointer-like, random
 * data, zero pages as 9-byte records) and dir/tgt (the next state: ~3% of
 * pages changed, some partially, some wholly; some pages turning zero or
 * non-zero, which shifts every later byte). Then, in a child process (so
 * its peak RSS is the encoder's own), it encodes tgt against src reading
 * tgt in 128 KiB pieces as FUSE would hand them, and prints one table:
 * throughput, patch size and peak RSS for ours, `xdelta3 -e`,
 * `xdelta3 -e -9 -B <size>`, and `cp`. Our patch is checked with stock
 * `xdelta3 -d`. Last, it measures what per-window compression of the
 * literal (ADD) bytes would save (lzma preset 0, zstd -3 / -19).
 */
#include "codec/vcdiff_enc.h"

#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define PAGE 4096

static uint64_t rs;

static uint64_t rng(void)
{
	uint64_t z = (rs += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- the stream generator --- */

enum { K_ZERO, K_TEXT, K_PTR, K_RAND };

static const char *words[] = {
	"the ", "kernel ", "page ", "of ", "memory ", "snapshot ", "\n",
	"vm ", "struct ", "int ", "return ", "0x", "ffff", "(", ");\n",
	"if ", "error ", "file ", "/usr/lib/", ".so", "=", "user ", "data ",
	"cache ", "GET /index.html HTTP/1.1\r\n", "Host: ", "\t", "{", "}",
	"while ", "for ", "char ",
};

static void gen_page(uint8_t *p, int kind, uint64_t seed)
{
	uint64_t save = rs;

	rs = seed;
	if (kind == K_TEXT) {
		size_t at = 0;
		while (at < PAGE) {
			const char *s = words[rng() % 32];
			for (; *s && at < PAGE; s++)
				p[at++] = (uint8_t)*s;
		}
	} else if (kind == K_PTR) {
		uint64_t base = 0xffff888000000000ull + (rng() % 65536) * PAGE;
		for (int i = 0; i < PAGE / 8; i++) {
			uint64_t r = rng(), x;
			if (r % 8 < 5)
				x = base + (r >> 20) % 65536 * 8;
			else if (r % 8 < 7)
				x = 0;
			else
				x = (r >> 16) & 0xffff;
			memcpy(p + 8 * i, &x, 8);
		}
	} else {
		for (int i = 0; i < PAGE / 8; i++) {
			uint64_t x = rng();
			memcpy(p + 8 * i, &x, 8);
		}
	}
	rs = save;
}

/* A page changed in place: a few words, a few pointers, a short range. */
static void edit_page(uint8_t *p, int kind)
{
	int n = 1 + (int)(rng() % 16);

	for (int i = 0; i < n; i++) {
		size_t at = rng() % (PAGE - 64);
		if (kind == K_TEXT) {
			size_t len = 1 + rng() % 48;
			for (size_t k = 0; k < len; k++)
				p[at + k] = (uint8_t)("abcdefgh ijk\n"[rng() % 13]);
		} else {
			uint64_t x = rng();
			memcpy(p + (at & ~(size_t)7), &x, kind == K_PTR ? 4 : 8);
		}
	}
}

static void put_record(FILE *f, uint64_t addr, int kind, const uint8_t *page)
{
	uint8_t hdr[9];
	uint64_t v = addr | (kind == K_ZERO ? 0x02 : 0x08);

	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(v >> (56 - 8 * i));
	hdr[8] = 0;
	fwrite(hdr, 1, kind == K_ZERO ? 9 : 8, f);
	if (kind != K_ZERO)
		fwrite(page, 1, PAGE, f);
}

static int generate(const char *dir, uint64_t bytes)
{
	char ps[512], pt[512];
	snprintf(ps, sizeof(ps), "%s/src", dir);
	snprintf(pt, sizeof(pt), "%s/tgt", dir);
	FILE *fs = fopen(ps, "wb"), *ft = fopen(pt, "wb");
	uint8_t page[PAGE], page2[PAGE];
	uint64_t pages = bytes / (PAGE + 8);
	uint64_t st[8] = { 0 };

	if (!fs || !ft)
		return -1;
	static char b1[1 << 20], b2[1 << 20];
	setvbuf(fs, b1, _IOFBF, sizeof(b1));
	setvbuf(ft, b2, _IOFBF, sizeof(b2));
	rs = 20261121;
	/* A short stream header, as QEMU writes (magic, version). */
	fwrite("QEVM\0\0\0\3", 1, 8, fs);
	fwrite("QEVM\0\0\0\3", 1, 8, ft);
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t r = rng() % 100, seed = rng();
		/* Zero pages come in clusters (free memory). */
		int kind = r < 20 ? K_ZERO : r < 50 ? K_TEXT : r < 80 ? K_PTR
			: K_RAND;
		if (kind != K_ZERO)
			gen_page(page, kind, seed);
		put_record(fs, i * PAGE, kind, page);

		/* The next state. */
		uint64_t c = rng() % 10000;
		int k2 = kind;
		if (c < 150 && kind != K_ZERO) {		/* edited */
			memcpy(page2, page, PAGE);
			edit_page(page2, kind);
			st[0]++;
		} else if (c < 250 && kind != K_ZERO) {		/* rewritten */
			gen_page(page2, kind, rng());
			st[1]++;
		} else if (c < 300 && kind != K_ZERO) {		/* new random */
			k2 = K_RAND;
			gen_page(page2, k2, rng());
			st[2]++;
		} else if (c < 330 && kind != K_ZERO) {		/* freed */
			k2 = K_ZERO;
			st[3]++;
		} else if (c < 360 && kind == K_ZERO) {		/* allocated */
			k2 = (int)(1 + rng() % 3);
			gen_page(page2, k2, rng());
			st[4]++;
		} else if (kind != K_ZERO) {
			memcpy(page2, page, PAGE);
		}
		put_record(ft, i * PAGE, k2, page2);
	}
	fwrite("\0\0\0\0\0\0\0\x10", 1, 8, fs);	/* EOS */
	fwrite("\0\0\0\0\0\0\0\x10", 1, 8, ft);
	if (fclose(fs) || fclose(ft))
		return -1;
	printf("generated %llu pages: %llu edited, %llu rewritten, %llu new "
	       "random, %llu freed, %llu allocated\n",
	       (unsigned long long)pages, (unsigned long long)st[0],
	       (unsigned long long)st[1], (unsigned long long)st[2],
	       (unsigned long long)st[3], (unsigned long long)st[4]);
	return 0;
}

/* --- our encoder, in a child --- */

static uint64_t nreads, read_bytes;

static ssize_t fd_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	nreads++;
	read_bytes += len;
	ssize_t r = pread(*(int *)ctx, buf, len, (off_t)off);
	return r < 0 ? -errno : r;
}

static int fd_write(void *ctx, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t r = write(*(int *)ctx, p, len);
		if (r < 0)
			return -errno;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

struct add_log {
	int fd;
	uint64_t n;
};

/* Logs ADD ops (target offset, patch offset, length) for the measurement
 * of secondary compression. */
static int log_op(void *ctx, const struct vcdiff_op *op)
{
	struct add_log *l = ctx;

	if (op->kind != VCDIFF_OP_ADD)
		return 0;
	uint64_t rec[3] = { op->tgt_off, op->addr, op->len };
	l->n++;
	return fd_write(&l->fd, rec, sizeof(rec));
}

struct times {
	double index, encode;		/* wall seconds */
	double cindex, cencode;		/* CPU seconds (user + system) */
	uint64_t patch;
};

static size_t budget;	/* index budget for ours; 0 = default */

static int run_ours(const char *dir, uint32_t win, struct times *t)
{
	char p[512];
	int rc;

	snprintf(p, sizeof(p), "%s/src", dir);
	int sfd = open(p, O_RDONLY);
	snprintf(p, sizeof(p), "%s/tgt", dir);
	int tfd = open(p, O_RDONLY);
	snprintf(p, sizeof(p), "%s/ours.patch", dir);
	int ofd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	snprintf(p, sizeof(p), "%s/adds.log", dir);
	struct add_log log = { open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644), 0 };
	struct stat st;
	if (sfd < 0 || tfd < 0 || ofd < 0 || log.fd < 0 || fstat(sfd, &st))
		return -1;
	struct vcdiff_enc_opts o = { .win_size = win, .index_budget = budget,
				     .on_op = log_op,
				     .op_ctx = &log };
	struct vcdiff_enc *e;
	double t0 = now(), c0 = cpu_now();
	rc = vcdiff_enc_new(&e, &o, (uint64_t)st.st_size, fd_read, &sfd,
			    fd_write, &ofd);
	if (rc < 0)
		return rc;
	double t1 = now(), c1 = cpu_now();
	static uint8_t buf[128 << 10];
	for (;;) {
		ssize_t r = read(tfd, buf, sizeof(buf));
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		if ((rc = vcdiff_enc_write(e, buf, (size_t)r)) < 0)
			return rc;
	}
	if ((rc = vcdiff_enc_finish(e)) < 0)
		return rc;
	double t2 = now(), c2 = cpu_now();
	t->cindex = c1 - c0;
	t->cencode = c2 - c1;
	fprintf(stderr, "source reads: %llu calls, %llu bytes\n",
		(unsigned long long)nreads, (unsigned long long)read_bytes);
	t->index = t1 - t0;
	t->encode = t2 - t1;
	t->patch = vcdiff_enc_patch_size(e);
	vcdiff_enc_free(e);
	close(sfd);
	close(tfd);
	close(ofd);
	close(log.fd);
	return 0;
}

/* Runs ours in a child; returns its peak RSS in KiB. */
static long ours_child(const char *dir, uint32_t win, struct times *t)
{
	int pfd[2];

	if (pipe(pfd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		struct times tt = { 0 };
		int rc = run_ours(dir, win, &tt);
		if (write(pfd[1], &tt, sizeof(tt)) != sizeof(tt))
			_exit(3);
		exit(rc < 0 ? 2 : 0);
	}
	close(pfd[1]);
	int status;
	struct rusage ru;
	if (read(pfd[0], t, sizeof(*t)) != sizeof(*t))
		memset(t, 0, sizeof(*t));
	close(pfd[0]);
	if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench_enc: our encoder failed\n");
		return -1;
	}
	return ru.ru_maxrss;
}

/* Runs a shell command; returns wall seconds, peak RSS of children (KiB). */
static double timed(const char *cmd, long *rss)
{
	double t0 = now();
	int rc = system(cmd);
	double t = now() - t0;
	struct rusage ru;

	getrusage(RUSAGE_CHILDREN, &ru);
	if (rss)
		*rss = ru.ru_maxrss;
	if (rc != 0)
		fprintf(stderr, "bench_enc: '%s' failed (%d)\n", cmd, rc);
	return rc == 0 ? t : -1;
}

static uint64_t fsize(const char *dir, const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* --- what secondary compression of the ADD bytes would save --- */

static void measure_secondary(const char *dir, uint32_t win)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/adds.log", dir);
	FILE *lf = fopen(p, "rb");
	snprintf(p, sizeof(p), "%s/ours.patch", dir);
	int pfd = open(p, O_RDONLY);
	uint8_t *sec = malloc((size_t)win + 16);
	uint8_t *out = malloc(2 * (size_t)win + 65536);
	uint64_t rec[3], cur_win = UINT64_MAX, raw = 0, lz = 0, z3 = 0, z19 = 0;
	size_t len = 0;
	double tlz = 0, tz3 = 0, tz19 = 0;

	if (!lf || pfd < 0 || !sec || !out)
		return;
	for (int more = 1; more;) {
		more = fread(rec, sizeof(rec), 1, lf) == 1;
		uint64_t w = more ? rec[0] / win : UINT64_MAX;
		if ((w != cur_win || !more) && len) {
			/* One window's data section: compress it alone. */
			double t0 = now();
			size_t o = 0;
			lzma_options_lzma opt;
			lzma_lzma_preset(&opt, 0);
			lzma_filter f[2] = { { LZMA_FILTER_LZMA2, &opt },
					     { LZMA_VLI_UNKNOWN, NULL } };
			if (lzma_raw_buffer_encode(f, NULL, sec, len, out, &o,
						   2 * (size_t)win) == LZMA_OK)
				lz += o;
			double t1 = now();
			z3 += ZSTD_compress(out, 2 * (size_t)win, sec, len, 3);
			double t2 = now();
			z19 += ZSTD_compress(out, 2 * (size_t)win, sec, len, 19);
			double t3 = now();
			tlz += t1 - t0;
			tz3 += t2 - t1;
			tz19 += t3 - t2;
			raw += len;
			len = 0;
		}
		cur_win = w;
		if (!more)
			break;
		if (len + rec[2] > win)
			continue;	/* cannot happen: ADDs stay in a window */
		if (pread(pfd, sec + len, rec[2], (off_t)rec[1]) != (ssize_t)rec[2])
			break;
		len += rec[2];
	}
	printf("\nsecondary compression of the ADD bytes, per %u-byte window:\n",
	       win);
	printf("  %-22s %12llu bytes\n", "raw (as written)",
	       (unsigned long long)raw);
	printf("  %-22s %12llu bytes (%5.1f%%), %.2f s\n", "lzma preset 0",
	       (unsigned long long)lz, raw ? 100.0 * lz / raw : 0, tlz);
	printf("  %-22s %12llu bytes (%5.1f%%), %.2f s\n", "zstd -3",
	       (unsigned long long)z3, raw ? 100.0 * z3 / raw : 0, tz3);
	printf("  %-22s %12llu bytes (%5.1f%%), %.2f s\n", "zstd -19",
	       (unsigned long long)z19, raw ? 100.0 * z19 / raw : 0, tz19);
	fclose(lf);
	close(pfd);
	free(sec);
	free(out);
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	const char *dir = argc > 2 ? argv[2] : "/tmp/bench_enc";
	uint32_t win = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0;
	int skip_xd = getenv("BENCH_NO_XDELTA") != NULL;

	budget = argc > 4 ? (size_t)strtoull(argv[4], NULL, 10) << 20 : 0;
	char cmd[1024];

	if (!win)
		win = 8u << 20;
	mkdir(dir, 0755);
	double t0 = now();
	if (getenv("BENCH_REUSE") && fsize(dir, "src") && fsize(dir, "tgt"))
		printf("reusing %s/src and %s/tgt\n", dir, dir);
	else if (generate(dir, mib << 20) < 0) {
		perror("generate");
		return 1;
	}
	uint64_t tsz = fsize(dir, "tgt"), ssz = fsize(dir, "src");
	printf("src %llu bytes, tgt %llu bytes, generated in %.1f s\n",
	       (unsigned long long)ssz, (unsigned long long)tsz, now() - t0);
	/* Warm the page cache so every contender reads from memory. */
	snprintf(cmd, sizeof(cmd), "cat %s/src %s/tgt >/dev/null", dir, dir);
	if (system(cmd) != 0)
		return 1;

	struct times t;
	long rss = ours_child(dir, win, &t);
	if (rss < 0)
		return 1;
	double mb = (double)tsz / 1e6;

	printf("\n%-30s %9s %9s %12s %9s %9s\n", "encoder", "wall s", "MB/s",
	       "patch bytes", "vs -9", "RSS MiB");
	long xrss = 0, x9rss = 0;
	double xd = -1, x9 = -1;
	uint64_t xsz = 0, x9sz = 0;
	if (!skip_xd) {
		snprintf(cmd, sizeof(cmd), "xdelta3 -e -f -s %s/src %s/tgt "
			 "%s/xd.patch", dir, dir, dir);
		xd = timed(cmd, &xrss);
		xsz = fsize(dir, "xd.patch");
		snprintf(cmd, sizeof(cmd), "xdelta3 -e -9 -f -B %llu -s %s/src "
			 "%s/tgt %s/xd9.patch", (unsigned long long)ssz, dir,
			 dir, dir);
		x9 = timed(cmd, &x9rss);
		x9sz = fsize(dir, "xd9.patch");
	}
	snprintf(cmd, sizeof(cmd), "cp %s/tgt %s/tgt.copy", dir, dir);
	double cp = timed(cmd, NULL);
	double r9 = x9sz ? (double)t.patch / (double)x9sz : 0;
	printf("%-30s %9.2f %9.1f %12llu %9.3f %9.1f\n", "vcdiff_enc (write phase)",
	       t.encode, mb / t.encode, (unsigned long long)t.patch, r9,
	       rss / 1024.0);
	printf("%-30s %9.2f %9.1f %12s %9s %9s\n", "  same, CPU time",
	       t.cencode, mb / t.cencode, "", "", "");
	printf("%-30s %9.2f %9s %12s %9s %9s\n", "vcdiff_enc (index source)",
	       t.index, "", "", "", "");
	printf("%-30s %9.2f %9.1f %12s %9s %9s\n", "  same, CPU time",
	       t.cindex, (double)ssz / 1e6 / t.cindex, "", "", "");
	printf("%-30s %9.2f %9.1f %12s %9s %9s\n", "vcdiff_enc (index + write)",
	       t.index + t.encode, mb / (t.index + t.encode), "", "", "");
	if (!skip_xd) {
		printf("%-30s %9.2f %9.1f %12llu %9.3f %9.1f\n", "xdelta3 -e",
		       xd, mb / xd, (unsigned long long)xsz,
		       x9sz ? (double)xsz / (double)x9sz : 0, xrss / 1024.0);
		printf("%-30s %9.2f %9.1f %12llu %9.3f %9.1f\n",
		       "xdelta3 -e -9 -B <src size>", x9, mb / x9,
		       (unsigned long long)x9sz, 1.0, x9rss / 1024.0);
	}
	printf("%-30s %9.2f %9.1f %12s %9s %9s\n", "cp tgt", cp, mb / cp, "",
	       "", "");

	if (skip_xd) {
		measure_secondary(dir, win);
		return 0;
	}
	/* Stock xdelta3 must decode ours. */
	snprintf(cmd, sizeof(cmd), "xdelta3 -d -f -s %s/src %s/ours.patch "
		 "%s/ours.out && cmp %s/ours.out %s/tgt", dir, dir, dir, dir, dir);
	double dt = timed(cmd, NULL);
	printf("\nxdelta3 -d of our patch + cmp: %s (%.2f s)\n",
	       dt >= 0 ? "identical" : "FAILED", dt);
	measure_secondary(dir, win);
	snprintf(cmd, sizeof(cmd), "rm -f %s/ours.out %s/tgt.copy", dir, dir);
	if (system(cmd) != 0)
		return 1;
	return dt >= 0 ? 0 : 1;
}
