/* SPDX-License-Identifier: MIT */
/*
 * snapgen: seeded generator of realistic VM migration streams, the test data
 * for snapfs. State k of a chain is a pure function of (seed, k, options).
 *
 * The stream is modelled on QEMU's RAM migration format (migration/ram.c,
 * savevm.c): "QEVM" header, a configuration record, a "ram" section whose
 * pages are 8-byte big-endian records (guest address | RAM_SAVE_FLAG_*),
 * a zero page as header + 1 fill byte (RAM_SAVE_FLAG_ZERO), a normal page as
 * header + 4096 bytes (RAM_SAVE_FLAG_PAGE), RAM_SAVE_FLAG_EOS, then a small
 * device ("cpu") section and QEMU_VM_EOF. Page contents mix text (log lines,
 * prose), pointer-like words, structured records, sparse pages, random
 * (incompressible) data and zero pages.
 *
 * Between consecutive states a few percent of pages change, clustered in a
 * few hot regions: some are rewritten, some only get a few bytes, a word or
 * a cache line patched, and some turn zero or non-zero, which shifts every
 * later byte of the stream (4104 bytes become 9 or the reverse).
 *
 * Cost: only a page table is kept in memory (~20 bytes per guest page).
 * A page's content is regenerated on output from (seed, step of its last
 * full rewrite, page) plus a short log of partial edits, each keyed by
 * (seed, step, page). So state K costs K cheap metadata steps plus one pass
 * of output, never K full states. A page whose edit log is full is rewritten
 * at its next change; that rule is part of the definition of a state.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_SIZE 4096u
#define EDITS_MAX 3
#define CHUNK_PAGES 64		/* pages per region of one dominant kind */
#define HOT_REGIONS 8
#define OUTBUF (1u << 20)

/* QEMU's RAM_SAVE_FLAG_* and QEMU_VM_* values. */
#define RAM_SAVE_FLAG_ZERO 0x02
#define RAM_SAVE_FLAG_MEM_SIZE 0x04
#define RAM_SAVE_FLAG_PAGE 0x08
#define RAM_SAVE_FLAG_EOS 0x10
#define RAM_SAVE_FLAG_CONTINUE 0x20
#define QEMU_VM_EOF 0x00
#define QEMU_VM_SECTION_START 0x01
#define QEMU_VM_SECTION_PART 0x02
#define QEMU_VM_SECTION_FULL 0x04
#define QEMU_VM_CONFIGURATION 0x07
#define QEMU_VM_SECTION_FOOTER 0x7e

/* Domain tags, so that no two uses of the PRNG share a key. */
#define TAG_CHUNK 0x43484e4bull
#define TAG_STEP 0x53544550ull
#define TAG_HOT 0x484f5421ull
#define TAG_CHANGE 0x43484721ull
#define TAG_CONTENT 0x434f4e54ull
#define TAG_EDIT 0x45444954ull
#define TAG_DEV 0x44455621ull
#define TAG_BASES 0x42415345ull

enum kind { K_ZERO, K_TEXT, K_PTR, K_STRUCT, K_RANDOM, K_SPARSE, K_NKINDS };
static const char *const kind_name[K_NKINDS] = {
	"zero", "text", "pointer", "struct", "random", "sparse"
};
/* Relative weights of the non-zero kinds (K_TEXT..K_SPARSE). */
static const unsigned kind_weight[K_NKINDS] = { 0, 30, 25, 20, 12, 13 };

struct page {
	uint32_t gen;			/* step of the last full rewrite */
	uint32_t edit[EDITS_MAX];	/* steps of partial edits since */
	uint8_t kind;			/* enum kind */
	uint8_t nedit;
};

struct gen {
	uint64_t seed;
	uint64_t npages;
	uint32_t step;			/* state the table describes */
	uint32_t change_ppm;		/* pages changed per step */
	uint32_t zero_ppm;		/* wanted fraction of zero pages */
	uint32_t tozero_ppm;		/* chance a touched data page turns zero */
	uint32_t fromzero_ppm;		/* chance a touched zero page gets data */
	int shift;			/* zero <-> non-zero allowed */
	uint64_t bases[4];		/* pointer bases */
	uint64_t hot_start[HOT_REGIONS];
	uint64_t hot_len;
	uint64_t changed;		/* pages changed by the last step */
	struct page *pages;
	/* output */
	int fd;
	const char *out_name;
	uint8_t *buf;
	size_t fill;
	uint64_t written;
};

/* ---------------------------------------------------------------- PRNG */

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static inline uint64_t key3(uint64_t seed, uint64_t tag, uint64_t a, uint64_t b)
{
	return mix64(seed ^ mix64(tag ^ mix64(a + 0x9e3779b97f4a7c15ull *
					      (b + 1))));
}

struct rng {
	uint64_t s;
};

/* wyrand: fast, good enough for test data, one 64-bit state word. */
static inline uint64_t rng_next(struct rng *r)
{
	r->s += 0xa0761d6478bd642full;
	__uint128_t t = (__uint128_t)r->s * (r->s ^ 0xe7037ed1a0b428dbull);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Uniform in [0, n). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((__uint128_t)rng_next(r) * n) >> 64);
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint8_t *put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
	return p + 8;
}

static inline uint8_t *put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
	return p + 4;
}

static uint8_t *put_str8(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	*p++ = (uint8_t)n;
	memcpy(p, s, n);
	return p + n;
}

/* ------------------------------------------------------- page contents */

static const char *const words[128] = {
	"the", "of", "and", "to", "in", "is", "for", "on", "with", "that",
	"by", "from", "at", "as", "an", "be", "this", "are", "or", "was",
	"kernel", "device", "memory", "page", "cache", "buffer", "request",
	"error", "warning", "info", "debug", "connection", "client", "server",
	"session", "timeout", "retry", "queue", "worker", "thread", "process",
	"started", "stopped", "finished", "failed", "success", "received",
	"sent", "bytes", "packet", "socket", "interface", "eth0", "lo",
	"systemd", "nginx", "postgres", "sshd", "cron", "dbus", "user",
	"root", "admin", "GET", "POST", "HTTP/1.1", "200", "404", "500",
	"/var/log", "/usr/lib", "/home", "/tmp", "/etc/passwd", "index.html",
	"api", "v1", "status", "health", "metrics", "query", "SELECT", "FROM",
	"WHERE", "INSERT", "UPDATE", "commit", "rollback", "transaction",
	"lock", "mutex", "wait", "signal", "alloc", "free", "mapped", "unmapped",
	"block", "inode", "file", "directory", "mount", "disk", "sda1",
	"nvme0n1", "read", "write", "flush", "sync", "dirty", "clean",
	"value", "key", "table", "index", "row", "column", "json", "null",
	"true", "false", "id", "name", "time", "date", "host", "port",
	"address",
};

static const char *const procs[8] = {
	"kernel", "systemd[1]", "sshd[812]", "nginx[1204]", "postgres[977]",
	"cron[602]", "dbus-daemon[530]", "app[3141]"
};

static char *put_dec(char *p, unsigned v, int width)
{
	char tmp[12];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < 11);
	while (n < width)
		tmp[n++] = '0';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *put_word(char *p, const char *w)
{
	size_t n = strlen(w);

	memcpy(p, w, n);
	return p + n;
}

/*
 * Text: syslog-like lines or prose. Lines are at most ~200 bytes, so a
 * scratch buffer of len + 256 never overflows.
 */
static void fill_text(struct rng *r, uint8_t *dst, size_t len)
{
	char tmp[PAGE_SIZE + 256];
	char *p = tmp, *end = tmp + len;
	uint64_t mode = rng_next(r);
	unsigned t = (unsigned)(mode >> 8) % 86400;
	unsigned day = 1 + (unsigned)(mode >> 32) % 28;

	while (p < end) {
		uint64_t w = rng_next(r);
		int nw = 3 + (int)(w & 7);

		w >>= 3;
		if (mode & 1) {	/* log line */
			t += (unsigned)(w & 3);
			w >>= 2;
			p = put_word(p, "May ");
			p = put_dec(p, day, 2);
			*p++ = ' ';
			p = put_dec(p, t / 3600 % 24, 2);
			*p++ = ':';
			p = put_dec(p, t / 60 % 60, 2);
			*p++ = ':';
			p = put_dec(p, t % 60, 2);
			p = put_word(p, " vm1 ");
			p = put_word(p, procs[w & 7]);
			w >>= 3;
			p = put_word(p, ": ");
		}
		for (int i = 0; i < nw; i++) {
			if (i == 7)
				w = rng_next(r);
			p = put_word(p, words[w & 127]);
			w >>= 7;
			*p++ = ' ';
		}
		if (mode & 1) {
			p = put_dec(p, (unsigned)(w & 0xffff), 1);
			*p++ = '\n';
		} else {
			p[-1] = (w & 3) ? ' ' : '\n';
		}
	}
	memcpy(dst, tmp, len);
}

static inline uint64_t ptr_word(const struct gen *g, uint64_t u)
{
	switch (u & 15) {
	case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8:
		return g->bases[(u >> 4) & 3] + ((u >> 8) & 0x3ffff8);
	case 9: case 10: case 11:
		return (u >> 40) & 0xffff;		/* small integer */
	case 12: case 13:
		return 0;
	default:
		return ((u >> 12) & 0xfffff000ull) | 0x63; /* PTE-like */
	}
}

static void fill_ptr(const struct gen *g, struct rng *r, uint8_t *dst,
		     size_t len)
{
	for (size_t i = 0; i + 8 <= len; i += 8)
		put_le64(dst + i, ptr_word(g, rng_next(r)));
}

/* 64-byte records: id, flags, timestamp, name, pointer, refcount, state. */
static void fill_struct(const struct gen *g, struct rng *r, uint8_t *dst,
			size_t len)
{
	uint64_t u = rng_next(r);
	uint32_t id = (uint32_t)u;
	uint64_t ts = 1714550000000000ull + (u >> 40) * 1000;

	for (size_t i = 0; i + 64 <= len; i += 64) {
		uint8_t *rec = dst + i;
		uint64_t v = rng_next(r);
		const char *w = words[v & 127];
		size_t wn = strlen(w);

		memset(rec, 0, 64);
		put_le32(rec, id++);
		put_le32(rec + 4, (uint32_t)((v >> 7) & 0x13));
		put_le64(rec + 8, ts += (v >> 12) & 0xfff);
		memcpy(rec + 16, w, wn > 15 ? 15 : wn);
		put_le64(rec + 32, g->bases[(v >> 24) & 1] +
			 ((v >> 26) & 0xfffc0));
		put_le32(rec + 40, 1 + (uint32_t)((v >> 46) & 3));
		put_le32(rec + 44, (uint32_t)((v >> 48) & 7));
	}
}

static void fill_random(struct rng *r, uint8_t *dst, size_t len)
{
	for (size_t i = 0; i + 8 <= len; i += 8)
		put_le64(dst + i, rng_next(r));
}

/* Mostly zero: a few words and maybe a short string. */
static void fill_sparse(const struct gen *g, struct rng *r, uint8_t *dst,
			size_t len)
{
	uint64_t u = rng_next(r);
	unsigned n = 1 + (unsigned)(u % (len >= PAGE_SIZE ? 24 : 2));

	memset(dst, 0, len);
	for (unsigned i = 0; i < n; i++) {
		uint64_t v = rng_next(r);
		size_t off = (size_t)rng_below(r, len / 8) * 8;

		put_le64(dst + off, ptr_word(g, v));
	}
	if ((u >> 40) & 1 && len >= 256) {
		size_t off = (size_t)rng_below(r, len / 64 - 2) * 64;

		strcpy((char *)dst + off, words[(u >> 48) & 127]);
	}
}

static void fill_kind(const struct gen *g, int kind, struct rng *r,
		      uint8_t *dst, size_t len)
{
	switch (kind) {
	case K_TEXT: fill_text(r, dst, len); break;
	case K_PTR: fill_ptr(g, r, dst, len); break;
	case K_STRUCT: fill_struct(g, r, dst, len); break;
	case K_RANDOM: fill_random(r, dst, len); break;
	case K_SPARSE: fill_sparse(g, r, dst, len); break;
	default: memset(dst, 0, len); break;
	}
}

/*
 * A partial edit: a few counters bumped or words replaced, one cache line
 * rewritten in the page's own style, or a few bytes changed anywhere.
 */
static void apply_edit(const struct gen *g, int kind, uint64_t key,
		       uint8_t *page)
{
	struct rng r = { key };
	uint64_t type = rng_below(&r, 10);

	if (type < 4) {
		unsigned n = 1 + (unsigned)rng_below(&r, 4);

		for (unsigned i = 0; i < n; i++) {
			uint8_t *w = page + rng_below(&r, PAGE_SIZE / 8) * 8;
			uint64_t v = rng_next(&r);

			if (v & 1)
				put_le64(w, get_le64(w) + 1 + ((v >> 1) & 1023));
			else
				put_le64(w, ptr_word(g, v >> 1));
		}
	} else if (type < 7) {
		uint8_t *line = page + rng_below(&r, PAGE_SIZE / 64) * 64;

		fill_kind(g, kind, &r, line, 64);
	} else {
		unsigned n = 1 + (unsigned)rng_below(&r, 3);

		for (unsigned i = 0; i < n; i++) {
			size_t len = 1 + (size_t)rng_below(&r, 8);
			size_t off = (size_t)rng_below(&r, PAGE_SIZE - len);
			uint64_t v = rng_next(&r);

			for (size_t j = 0; j < len; j++, v >>= 8)
				page[off + j] = kind == K_TEXT ?
					(uint8_t)('a' + (v & 0xff) % 26) :
					(uint8_t)v;
		}
	}
}

static void page_content(const struct gen *g, uint64_t i, uint8_t *dst)
{
	const struct page *pg = &g->pages[i];
	struct rng r = { key3(g->seed, TAG_CONTENT, pg->gen, i) };

	fill_kind(g, pg->kind, &r, dst, PAGE_SIZE);
	for (int e = 0; e < pg->nedit; e++)
		apply_edit(g, pg->kind, key3(g->seed, TAG_EDIT, pg->edit[e], i),
			   dst);
}

/* ------------------------------------------------------ the page table */

static int pick_kind(struct rng *r)
{
	unsigned total = 0, x;

	for (int k = 1; k < K_NKINDS; k++)
		total += kind_weight[k];
	x = (unsigned)rng_below(r, total);
	for (int k = 1; k < K_NKINDS; k++) {
		if (x < kind_weight[k])
			return k;
		x -= kind_weight[k];
	}
	return K_TEXT;
}

/*
 * State 0: memory comes in regions of CHUNK_PAGES pages with one dominant
 * kind; free memory is mostly whole zero regions plus scattered zero pages.
 */
static void table_init(struct gen *g)
{
	uint64_t z = g->zero_ppm, scatter = 30000, zc;

	if (z < scatter)
		scatter = z;
	zc = (z - scatter) * 1000000 / (1000000 - scatter);
	for (uint64_t c = 0; c * CHUNK_PAGES < g->npages; c++) {
		struct rng r = { key3(g->seed, TAG_CHUNK, c, 0) };
		int zero_chunk = rng_below(&r, 1000000) < zc;
		int dom = pick_kind(&r);

		for (uint64_t i = c * CHUNK_PAGES;
		     i < (c + 1) * CHUNK_PAGES && i < g->npages; i++) {
			struct page *pg = &g->pages[i];

			memset(pg, 0, sizeof(*pg));
			if (zero_chunk || rng_below(&r, 1000000) < scatter)
				pg->kind = K_ZERO;
			else if (rng_below(&r, 10) < 8)
				pg->kind = (uint8_t)dom;
			else
				pg->kind = (uint8_t)pick_kind(&r);
		}
	}
	for (int h = 0; h < HOT_REGIONS; h++)
		g->hot_start[h] = key3(g->seed, TAG_HOT, (uint64_t)h, 0) %
				  g->npages;
	g->hot_len = g->npages / 64 ? g->npages / 64 : 1;
	g->step = 0;
}

/* Changes page i in step s; returns 1 if it changed. */
static int change_page(struct gen *g, uint32_t s, uint64_t i)
{
	struct page *pg = &g->pages[i];
	struct rng r = { key3(g->seed, TAG_CHANGE, s, i) };
	uint64_t u = rng_below(&r, 1000000);

	if (pg->gen == s || (pg->nedit && pg->edit[pg->nedit - 1] == s))
		return 0;	/* already changed in this step */
	if (pg->kind == K_ZERO) {
		/* fromzero_ppm and tozero_ppm keep the zero fraction
		 * stable over time (see main). */
		if (!g->shift || u >= g->fromzero_ppm)
			return 0;
		pg->kind = (uint8_t)pick_kind(&r);
		pg->gen = s;
		pg->nedit = 0;
	} else if (g->shift && u < g->tozero_ppm) {
		pg->kind = K_ZERO;
		pg->gen = s;
		pg->nedit = 0;
	} else if (rng_below(&r, 100) < 65 || pg->nedit == EDITS_MAX) {
		if (rng_below(&r, 10) == 0)
			pg->kind = (uint8_t)pick_kind(&r);
		pg->gen = s;
		pg->nedit = 0;
	} else {
		pg->edit[pg->nedit++] = s;
	}
	return 1;
}

/*
 * Moves the table from state g->step to g->step + 1: exactly change_ppm of
 * the pages change (fewer only if touching pages keeps missing), 60% of
 * them in runs inside the hot regions, the rest in short runs anywhere.
 */
static void table_step(struct gen *g)
{
	uint32_t s = ++g->step;
	struct rng r = { key3(g->seed, TAG_STEP, s, 0) };
	uint64_t target = (uint64_t)((double)g->npages * g->change_ppm / 1e6 +
				     0.5);
	uint64_t tries = 4 * target + 1000;

	g->changed = 0;
	while (g->changed < target && tries) {
		uint64_t start, run;

		if (rng_below(&r, 10) < 6) {	/* hot working set */
			int h = (int)rng_below(&r, HOT_REGIONS);

			start = g->hot_start[h] + rng_below(&r, g->hot_len);
			run = 1 + rng_below(&r, 8);
		} else {
			start = rng_below(&r, g->npages);
			run = 1 + rng_below(&r, 3);
		}
		for (uint64_t i = 0; i < run && g->changed < target && tries;
		     i++, tries--)
			g->changed += (uint64_t)change_page(g, s,
						(start + i) % g->npages);
	}
}

/* -------------------------------------------------------------- output */

static void die(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("snapgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void out_flush(struct gen *g)
{
	size_t off = 0;

	while (off < g->fill) {
		ssize_t n = write(g->fd, g->buf + off, g->fill - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("cannot write %s: %s", g->out_name,
			    n < 0 ? strerror(errno) : "short write");
		off += (size_t)n;
	}
	g->written += g->fill;
	g->fill = 0;
}

/* Room for n more bytes in the output buffer. */
static inline uint8_t *out_room(struct gen *g, size_t n)
{
	if (g->fill + n > OUTBUF)
		out_flush(g);
	return g->buf + g->fill;
}

static void out_bytes(struct gen *g, const uint8_t *p, size_t n)
{
	memcpy(out_room(g, n), p, n);
	g->fill += n;
}

/* A small device section: mostly fixed per seed, some bytes per state. */
static void emit_device(struct gen *g)
{
	uint8_t dev[2048];
	struct rng r = { key3(g->seed, TAG_DEV, 0, 0) };
	struct rng rs = { key3(g->seed, TAG_DEV, g->step, 1) };

	fill_struct(g, &r, dev, sizeof(dev));
	fill_random(&rs, dev, 256);	/* registers, clocks */
	out_bytes(g, dev, sizeof(dev));
}

static void emit_state(struct gen *g, int fd, const char *name,
		       uint64_t *nzero)
{
	uint8_t hdr[256], *p = hdr;
	uint64_t ram = g->npages * PAGE_SIZE;
	static const char block[] = "pc.ram";

	g->fd = fd;
	g->out_name = name;
	g->fill = 0;
	g->written = 0;
	*nzero = 0;

	p = put_be32(p, 0x5145564d);	/* "QEVM" */
	p = put_be32(p, 3);
	*p++ = QEMU_VM_CONFIGURATION;
	p = put_be32(p, 10);
	memcpy(p, "pc-q35-8.2", 10);
	p += 10;
	*p++ = QEMU_VM_SECTION_START;
	p = put_be32(p, 2);
	p = put_str8(p, "ram");
	p = put_be32(p, 0);
	p = put_be32(p, 4);
	p = put_be64(p, ram | RAM_SAVE_FLAG_MEM_SIZE);
	p = put_str8(p, block);
	p = put_be64(p, ram);
	p = put_be64(p, RAM_SAVE_FLAG_EOS);
	*p++ = QEMU_VM_SECTION_FOOTER;
	p = put_be32(p, 2);
	*p++ = QEMU_VM_SECTION_PART;
	p = put_be32(p, 2);
	out_bytes(g, hdr, (size_t)(p - hdr));

	for (uint64_t i = 0; i < g->npages; i++) {
		uint64_t flags = i ? RAM_SAVE_FLAG_CONTINUE : 0;
		uint8_t *o = out_room(g, 8 + 1 + sizeof(block) + PAGE_SIZE);
		uint8_t *q;

		if (g->pages[i].kind == K_ZERO) {
			q = put_be64(o, i * PAGE_SIZE | flags | RAM_SAVE_FLAG_ZERO);
			if (!i)
				q = put_str8(q, block);
			*q++ = 0;
			(*nzero)++;
		} else {
			q = put_be64(o, i * PAGE_SIZE | flags | RAM_SAVE_FLAG_PAGE);
			if (!i)
				q = put_str8(q, block);
			page_content(g, i, q);
			q += PAGE_SIZE;
		}
		g->fill += (size_t)(q - o);
	}

	p = hdr;
	p = put_be64(p, RAM_SAVE_FLAG_EOS);
	*p++ = QEMU_VM_SECTION_FOOTER;
	p = put_be32(p, 2);
	*p++ = QEMU_VM_SECTION_FULL;
	p = put_be32(p, 3);
	p = put_str8(p, "cpu");
	p = put_be32(p, 0);
	p = put_be32(p, 1);
	out_bytes(g, hdr, (size_t)(p - hdr));
	emit_device(g);
	p = hdr;
	*p++ = QEMU_VM_SECTION_FOOTER;
	p = put_be32(p, 3);
	*p++ = QEMU_VM_EOF;
	out_bytes(g, hdr, (size_t)(p - hdr));
	out_flush(g);
}

/* ------------------------------------------------------------ the tool */

static void usage(FILE *f)
{
	fputs(
"usage: snapgen [options] -o FILE|-      write state K of a chain\n"
"       snapgen [options] --count N -o DIR  write DIR/state_0..state_{N-1}\n"
"\n"
"Writes a synthetic VM migration stream shaped like QEMU's RAM stream.\n"
"State k is a pure function of (seed, k, options): same arguments, same\n"
"bytes.\n"
"\n"
"  -s, --seed N       PRNG seed (default 1)\n"
"  -S, --size BYTES   approximate stream size; suffixes K, M, G, T\n"
"                     (powers of 1024; default 64M)\n"
"  -i, --index K      which state to write (default 0)\n"
"  -n, --count N      write states 0..N-1 into the directory given by -o\n"
"  -c, --change PCT   percent of pages changed per step (default 3)\n"
"  -z, --zero PCT     percent of zero pages (default 20)\n"
"      --no-shift     pages never turn zero or non-zero, so the stream\n"
"                     keeps its layout between states (for byte diffs)\n"
"  -o, --output PATH  output file, '-' for stdout, or directory with -n\n"
"  -v, --verbose      print statistics to stderr\n"
"  -h, --help         this text\n", f);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v;
	double mul = 1;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	switch (*end) {
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (mul > 1 && *end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -1;
	*out = (uint64_t)(v * mul);
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return (errno || end == s || *end || *s == '-') ? -1 : 0;
}

static int parse_pct(const char *s, uint32_t *ppm)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < 0 || v > 100)
		return -1;
	*ppm = (uint32_t)(v * 10000 + 0.5);
	return 0;
}

static void report(const struct gen *g, const char *name, uint64_t nzero)
{
	uint64_t nk[K_NKINDS] = { 0 }, edited = 0;

	for (uint64_t i = 0; i < g->npages; i++) {
		nk[g->pages[i].kind]++;
		edited += g->pages[i].nedit != 0;
	}
	fprintf(stderr, "snapgen: %s: state %u, %llu bytes, %llu pages "
		"(%llu zero = %.1f%%), %llu changed by the last step, %llu with "
		"partial edits; kinds:",
		name, g->step, (unsigned long long)g->written,
		(unsigned long long)g->npages, (unsigned long long)nzero,
		100.0 * (double)nzero / (double)g->npages,
		(unsigned long long)g->changed, (unsigned long long)edited);
	for (int k = 1; k < K_NKINDS; k++)
		fprintf(stderr, " %s %.1f%%", kind_name[k],
			100.0 * (double)nk[k] / (double)g->npages);
	fputc('\n', stderr);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'S' },
		{ "index", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "change", required_argument, NULL, 'c' },
		{ "zero", required_argument, NULL, 'z' },
		{ "no-shift", no_argument, NULL, 'N' },
		{ "output", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct gen g;
	uint64_t size = 64ull << 20, index = 0, count = 0, nzero;
	const char *out = NULL;
	int verbose = 0, have_index = 0, c;

	memset(&g, 0, sizeof(g));
	g.seed = 1;
	g.change_ppm = 30000;
	g.zero_ppm = 200000;
	g.shift = 1;
	while ((c = getopt_long(argc, argv, "s:S:i:n:c:z:o:vh", lopts,
				NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_u64(optarg, &g.seed))
				die("bad --seed '%s': want a number", optarg);
			break;
		case 'S':
			if (parse_size(optarg, &size))
				die("bad --size '%s': want bytes, e.g. 64M or 1G",
				    optarg);
			break;
		case 'i':
			if (parse_u64(optarg, &index) || index > 0xfffffff0u)
				die("bad --index '%s'", optarg);
			have_index = 1;
			break;
		case 'n':
			if (parse_u64(optarg, &count) || !count ||
			    count > 0xfffffff0u)
				die("bad --count '%s': want N >= 1", optarg);
			break;
		case 'c':
			if (parse_pct(optarg, &g.change_ppm))
				die("bad --change '%s': want a percent 0..100",
				    optarg);
			break;
		case 'z':
			if (parse_pct(optarg, &g.zero_ppm) ||
			    g.zero_ppm > 990000)
				die("bad --zero '%s': want a percent 0..99",
				    optarg);
			break;
		case 'N': g.shift = 0; break;
		case 'o': out = optarg; break;
		case 'v': verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'; see --help", argv[optind]);
	if (count && have_index)
		die("--index and --count exclude each other");
	if (count && (!out || !strcmp(out, "-")))
		die("--count needs -o DIR");
	if (!out) {
		if (isatty(1))
			die("refusing to write binary data to a terminal; "
			    "give -o FILE or -o -");
		out = "-";
	}

	/* Expected record size: 4104 bytes for a data page, 9 for a zero one. */
	{
		double z = g.zero_ppm / 1e6;
		double rec = (1 - z) * (8 + PAGE_SIZE) + z * 9;

		g.npages = (uint64_t)((double)size / rec + 0.5);
		if (g.npages < 1)
			g.npages = 1;
	}
	/* Balance the flows: pages are touched uniformly, so z * from ==
	 * (1 - z) * to keeps the zero fraction z; the larger of the two
	 * chances is 30%. */
	{
		double z = g.zero_ppm / 1e6;

		if (z <= 0.5) {
			g.fromzero_ppm = 300000;
			g.tozero_ppm = (uint32_t)(z * 0.3 / (1 - z) * 1e6);
		} else {
			g.tozero_ppm = 300000;
			g.fromzero_ppm = (uint32_t)((1 - z) * 0.3 / z * 1e6);
		}
	}
	{
		struct rng r = { key3(g.seed, TAG_BASES, 0, 0) };

		g.bases[0] = 0xffff888000000000ull + (rng_below(&r, 64) << 30);
		g.bases[1] = 0xffffffff81000000ull + (rng_below(&r, 16) << 21);
		g.bases[2] = 0x00007f0000000000ull + (rng_below(&r, 1 << 16) << 24);
		g.bases[3] = 0x0000550000000000ull + (rng_below(&r, 1 << 16) << 24);
	}
	g.pages = calloc(g.npages, sizeof(*g.pages));
	g.buf = malloc(OUTBUF);
	if (!g.pages || !g.buf)
		die("out of memory");
	table_init(&g);

	if (!count) {
		int fd = 1;

		while (g.step < index)
			table_step(&g);
		if (strcmp(out, "-")) {
			fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0)
				die("cannot create %s: %s", out, strerror(errno));
		}
		emit_state(&g, fd, strcmp(out, "-") ? out : "stdout", &nzero);
		if (fd != 1 && close(fd))
			die("cannot write %s: %s", out, strerror(errno));
		if (verbose)
			report(&g, out, nzero);
	} else {
		if (mkdir(out, 0755) && errno != EEXIST)
			die("cannot create directory %s: %s", out,
			    strerror(errno));
		for (uint64_t k = 0; k < count; k++) {
			char path[4096];
			int fd;

			if (k)
				table_step(&g);
			snprintf(path, sizeof(path), "%s/state_%llu", out,
				 (unsigned long long)k);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0)
				die("cannot create %s: %s", path, strerror(errno));
			emit_state(&g, fd, path, &nzero);
			if (close(fd))
				die("cannot write %s: %s", path, strerror(errno));
			if (verbose)
				report(&g, path, nzero);
		}
	}
	free(g.pages);
	free(g.buf);
	return 0;
}
