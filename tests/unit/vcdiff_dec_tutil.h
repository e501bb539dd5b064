/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_dec_tutil.h: what the VCDIFF decoder's three tests share
 * (test_vcdiff_dec, test_vcdiff_dec_bad, test_vcdiff_dec_xd3): the
 * seeded generator and the data made from it, the private temporary
 * directory, whole-file and in-memory readers, and the builder of
 * hand-made patches (struct vb, struct hw, the default table's opcodes).
 * Header-only, static inline, test code only; no checks of its own.
 */
#ifndef SNAPFS_VCDIFF_DEC_TUTIL_H
#define SNAPFS_VCDIFF_DEC_TUTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec/vcdiff_dec.h"
#include "tests/unit/tutil.h"

static char tmpdir[64];

/* --- helpers --- */

static uint64_t rng_state;

static inline void rng_seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static inline uint64_t rng(void)
{
	return t_rng(&rng_state);
}

static inline size_t rng_below(size_t n)
{
	return n ? (size_t)(rng() % n) : 0;
}

static inline char *tpath(const char *name)
{
	static char buf[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static inline uint8_t *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;

	*len = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf && pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	if (buf)
		*len = (size_t)st.st_size;
	return buf;
}

static inline int run(const char *cmd)
{
	int st = system(cmd);

	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

struct mem {
	const uint8_t *p;
	size_t n;
};

static inline ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct mem *m = ctx;

	if (off >= m->n)
		return 0;
	if (len > m->n - off)
		len = m->n - (size_t)off;
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

/* Makes the private temporary directory /tmp/NAME.XXXXXX for tpath().
 * Returns 0, or -1 after saying why. */
static inline int tmpdir_make(const char *name)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

/* Removes every file of tmpdir, then tmpdir. */
static inline void cleanup_tmpdir(void)
{
	DIR *dir = opendir(tmpdir);
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		unlink(tpath(e->d_name));
	}
	closedir(dir);
	rmdir(tmpdir);
}

/* --- data generators (fixed seeds) --- */

static inline void gen_random(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rng();
}

static inline void gen_text(uint8_t *b, size_t n)
{
	static const char *words[] = {
		"the", "snapshot", "of", "a", "virtual", "machine", "page",
		"zero", "memory", "kernel", "delta", "window", "copy", "add",
		"run", "source", "target", "qemu", "migrate", "state", "and",
		"is", "in", "for", "with", "0x7fff", "struct", "return",
	};
	size_t i = 0;

	while (i < n) {
		size_t nw = sizeof(words) / sizeof(*words);
		const char *w = words[rng_below(nw)];
		for (; *w && i < n; w++)
			b[i++] = (uint8_t)*w;
		if (i < n)
			b[i++] = rng_below(12) ? ' ' : '\n';
	}
}

/* Target = source with inserts, deletes, moved blocks, point edits. */
static inline size_t mutate(const uint8_t *src, size_t n, uint8_t *tgt,
			    size_t cap)
{
	size_t s = 0, t = 0;

	while (t < cap && n > 0) {
		size_t what = rng_below(10), len;
		if (what < 5) {	/* copy on */
			len = 1 + rng_below(8192);
			if (s + len > n)
				len = n - s;
			if (len > cap - t)
				len = cap - t;
			memcpy(tgt + t, src + s, len);
			t += len;
			s += len;
		} else if (what < 7) {	/* insert */
			len = 1 + rng_below(300);
			if (len > cap - t)
				len = cap - t;
			gen_random(tgt + t, len);
			t += len;
		} else if (what < 8) {	/* delete */
			s += rng_below(2000);
		} else if (what < 9) {	/* jump: moved block */
			s = rng_below(n);
		} else if (t < cap) {	/* point edit */
			tgt[t++] = (uint8_t)rng();
			s++;
		}
		if (s >= n) {
			if (t > cap / 2)
				break;
			s = rng_below(n);
		}
	}
	return t;
}

/* --- hand-made patches --- */

struct vb {
	uint8_t b[65536];
	size_t n;
};

static inline void vb_put(struct vb *v, const void *p, size_t n)
{
	if (n == 0)
		return;
	memcpy(v->b + v->n, p, n);
	v->n += n;
}

static inline void vb_byte(struct vb *v, uint8_t c)
{
	v->b[v->n++] = c;
}

static inline void vb_varint(struct vb *v, uint64_t x)
{
	uint8_t tmp[10];
	int n = 0;

	do {
		tmp[n++] = x & 0x7f;
		x >>= 7;
	} while (x);
	while (n-- > 0)
		vb_byte(v, (uint8_t)(tmp[n] | (n ? 0x80 : 0)));
}

static inline size_t put_varint(uint64_t x, uint8_t *p)
{
	uint8_t tmp[10];
	size_t n = 0, k = 0;

	do {
		tmp[n++] = x & 0x7f;
		x >>= 7;
	} while (x);
	while (n-- > 0)
		p[k++] = (uint8_t)(tmp[n] | (n ? 0x80 : 0));
	return k;
}

static inline size_t varint_len(uint64_t x)
{
	size_t n = 1;
	while (x >= 0x80) {
		x >>= 7;
		n++;
	}
	return n;
}

static inline void vb_header(struct vb *v)
{
	v->n = 0;
	vb_put(v, "\xd6\xc3\xc4\x00\x00", 5);
}

struct hw {			/* a hand-made window */
	uint8_t win_ind;
	uint32_t cpy_len;
	uint64_t cpy_off;
	uint32_t tgt_len;
	const void *data, *inst, *addr;
	uint32_t data_len, inst_len, addr_len;
	uint32_t adler;
	int enclen_delta;	/* to corrupt enclen */
};

static inline void vb_window(struct vb *v, const struct hw *w)
{
	uint64_t enclen = 1 + varint_len(w->tgt_len) +
		varint_len(w->data_len) + varint_len(w->inst_len) +
		varint_len(w->addr_len) + w->data_len + w->inst_len +
		w->addr_len + ((w->win_ind & VCDIFF_WIN_ADLER32) ? 4 : 0);

	vb_byte(v, w->win_ind);
	if (w->win_ind & 3) {
		vb_varint(v, w->cpy_len);
		vb_varint(v, w->cpy_off);
	}
	vb_varint(v, enclen + w->enclen_delta);
	vb_varint(v, w->tgt_len);
	vb_byte(v, 0);
	vb_varint(v, w->data_len);
	vb_varint(v, w->inst_len);
	vb_varint(v, w->addr_len);
	if (w->win_ind & VCDIFF_WIN_ADLER32) {
		uint8_t a[4] = { (uint8_t)(w->adler >> 24),
				 (uint8_t)(w->adler >> 16),
				 (uint8_t)(w->adler >> 8), (uint8_t)w->adler };
		vb_put(v, a, 4);
	}
	vb_put(v, w->data, w->data_len);
	vb_put(v, w->inst, w->inst_len);
	vb_put(v, w->addr, w->addr_len);
}

/* Opcodes of the default table. */
#define OP_RUN 0
#define OP_ADD 1		/* explicit size */
#define OP_COPY(m) (19 + 16 * (m))	/* explicit size */

/* Opens a hand-made patch from memory. */
static inline int open_vb(const struct vb *v, struct vcdiff_patch **p, int *fd,
			  const char **why)
{
	*fd = t_mem_fd(v->b, v->n);
	return t_patch_open(p, *fd, why);
}

#endif
