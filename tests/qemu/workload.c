/* SPDX-License-Identifier: MIT */
/*
 * workload: the guest program of the QEMU end-to-end test (tests/e2e/50-qemu.sh).
 *
 * It fills a large part of guest RAM with data that looks like a real VM's
 * memory (log-like text, binary records, random bytes, zero pages), then
 * loops once a second: rewrites a few percent of the pages, verifies pages
 * against the checksums it keeps for every page, and prints one line on the
 * console:
 *
 *     snapwork counter=N verify=ok pages=P checked=C rewritten=R
 *
 * The checksums and the counter live in guest RAM like the data, so a
 * snapshot that is restored from a wrong or mixed-up state file shows as
 * verify=FAIL (or a counter that starts again from zero, announced by a
 * new "snapwork start" line). Rewrites sometimes turn zero pages into data
 * and back, because that is what shifts bytes around in QEMU's migration
 * stream and what a delta encoder has to cope with.
 *
 * Usage: workload [MiB [permille_rewritten_per_tick [verify_fraction]]]
 *   MiB                 data to allocate (default 192)
 *   permille            pages rewritten per tick, in 1/1000 (default 10 = 1%)
 *   verify_fraction     1/N of all pages verified per tick, rotating, plus
 *                       every page rewritten in this tick (default 4)
 * Exit status 1 on a verification failure (after printing the page).
 * Deterministic: fixed seed, so two runs write the same data.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u

enum kind { K_ZERO, K_TEXT, K_RECORD, K_RANDOM };

struct record {			/* 48 bytes, like a row of some table */
	uint64_t id;
	uint32_t gen;
	uint32_t flags;
	double value;
	char name[16];
	uint64_t link;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)	/* xorshift64* */
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Word-wise hash: cheap enough to check tens of MiB per second under TCG. */
static uint64_t page_hash(const unsigned char *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (unsigned i = 0; i < PAGE / 8; i++) {
		h ^= w[i] + i;
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h;
}

static const char *const words[] = {
	"INFO", "WARN", "request", "served", "GET", "POST", "/api/v1/items",
	"/static/app.js", "user", "session", "cache", "miss", "hit", "latency",
	"ms", "status=200", "status=404", "backend", "worker", "queue",
	"commit", "rollback", "the", "of", "and", "snapshot", "memory", "page",
};

static void fill_text(unsigned char *p, uint64_t seed)
{
	size_t n = 0, nw = sizeof(words) / sizeof(words[0]);
	uint64_t line = seed & 0xffffff;
	while (n < PAGE) {
		char buf[160];
		int len = snprintf(buf, sizeof(buf), "%08llu ",
				   (unsigned long long)line++);
		for (int k = 0; k < 6; k++)
			len += snprintf(buf + len, sizeof(buf) - len, "%s ",
					words[rnd() % nw]);
		buf[len - 1] = '\n';
		size_t take = (size_t)len < PAGE - n ? (size_t)len : PAGE - n;
		memcpy(p + n, buf, take);
		n += take;
	}
}

static void fill_records(unsigned char *p, uint64_t page, uint32_t gen)
{
	struct record r;
	for (size_t off = 0; off + sizeof(r) <= PAGE; off += sizeof(r)) {
		memset(&r, 0, sizeof(r));
		r.id = page * (PAGE / sizeof(r)) + off / sizeof(r);
		r.gen = gen;
		r.flags = (uint32_t)(rnd() & 0x7);
		r.value = (double)(rnd() % 100000) / 100.0;
		snprintf(r.name, sizeof(r.name), "obj-%llu",
			 (unsigned long long)(r.id % 997));
		r.link = r.id ^ 0x5a5a;
		memcpy(p + off, &r, sizeof(r));
	}
	memset(p + (PAGE / sizeof(r)) * sizeof(r), 0, PAGE % sizeof(r));
}

static void fill_random(unsigned char *p)
{
	for (unsigned i = 0; i < PAGE; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, 8);
	}
}

/* Share of kinds on first fill: 25% zero, 30% text, 25% records, 20% random. */
static enum kind initial_kind(uint64_t i)
{
	uint64_t h = (i * 0x9e3779b97f4a7c15ull) >> 58;	/* 0..63 */
	if (h < 16)
		return K_ZERO;
	if (h < 35)
		return K_TEXT;
	if (h < 51)
		return K_RECORD;
	return K_RANDOM;
}

static void fill(unsigned char *p, uint64_t i, enum kind k, uint32_t gen)
{
	switch (k) {
	case K_ZERO: memset(p, 0, PAGE); break;
	case K_TEXT: fill_text(p, i * 131 + gen); break;
	case K_RECORD: fill_records(p, i, gen); break;
	case K_RANDOM: fill_random(p); break;
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 192;
	unsigned long permille = argc > 2 ? strtoul(argv[2], NULL, 0) : 10;
	unsigned long vfrac = argc > 3 ? strtoul(argv[3], NULL, 0) : 4;
	if (mib == 0 || vfrac == 0) {
		fprintf(stderr, "usage: workload [MiB [permille [verify_fraction]]]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	uint64_t npages = (uint64_t)mib * (1024 * 1024 / PAGE);
	unsigned char *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
				  -1, 0);
	uint64_t *sum = calloc(npages, sizeof(*sum));
	unsigned char *kinds = calloc(npages, 1);
	uint32_t *gens = calloc(npages, sizeof(*gens));
	if (mem == MAP_FAILED || !sum || !kinds || !gens) {
		printf("snapwork error: cannot allocate %lu MiB: %s\n", mib,
		       strerror(errno));
		return 1;
	}
	printf("snapwork start pages=%llu mib=%lu permille=%lu\n",
	       (unsigned long long)npages, mib, permille);
	double t0 = now();
	for (uint64_t i = 0; i < npages; i++) {
		kinds[i] = (unsigned char)initial_kind(i);
		fill(mem + i * PAGE, i, (enum kind)kinds[i], 0);
		sum[i] = page_hash(mem + i * PAGE);
	}
	printf("snapwork filled in %.1fs\n", now() - t0);

	uint64_t per_tick = npages * permille / 1000;
	uint64_t vcursor = 0, vchunk = (npages + vfrac - 1) / vfrac;
	uint64_t *touched = calloc(per_tick ? per_tick : 1, sizeof(*touched));
	if (!touched)
		return 1;
	for (uint64_t counter = 1;; counter++) {
		double start = now();
		for (uint64_t n = 0; n < per_tick; n++) {
			uint64_t i = rnd() % npages;
			enum kind k = (enum kind)kinds[i];
			if (rnd() % 8 == 0)	/* pages change kind now and then */
				k = (enum kind)(rnd() % 4);
			kinds[i] = (unsigned char)k;
			fill(mem + i * PAGE, i, k, ++gens[i]);
			sum[i] = page_hash(mem + i * PAGE);
			touched[n] = i;
		}
		uint64_t checked = 0, bad = UINT64_MAX;
		for (uint64_t n = 0; n < per_tick && bad == UINT64_MAX; n++, checked++)
			if (page_hash(mem + touched[n] * PAGE) != sum[touched[n]])
				bad = touched[n];
		for (uint64_t n = 0; n < vchunk && bad == UINT64_MAX; n++, checked++) {
			if (page_hash(mem + vcursor * PAGE) != sum[vcursor])
				bad = vcursor;
			vcursor = (vcursor + 1) % npages;
		}
		if (bad != UINT64_MAX) {
			printf("snapwork counter=%llu verify=FAIL page=%llu kind=%u\n",
			       (unsigned long long)counter,
			       (unsigned long long)bad, kinds[bad]);
			return 1;
		}
		printf("snapwork counter=%llu verify=ok pages=%llu checked=%llu "
		       "rewritten=%llu\n", (unsigned long long)counter,
		       (unsigned long long)npages, (unsigned long long)checked,
		       (unsigned long long)per_tick);
		/* Relative sleep: after a restore the guest clock may have
		 * jumped, and catching up on missed ticks is not wanted. */
		double left = 1.0 - (now() - start);
		if (left > 0) {
			struct timespec ts = { 0, (long)(left * 1e9) };
			nanosleep(&ts, NULL);
		}
	}
}
