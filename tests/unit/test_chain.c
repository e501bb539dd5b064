/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of fs/store, fs/chain and fs/writer, without FUSE: stores made
 * by stock zstd and xdelta3 are opened and read at every layer and at
 * random ranges against the original bytes; damage is contained to the
 * damaged layer and the ones above; the writer's three paths (in order,
 * header fix-up, jumping around) produce layers that read back exactly and
 * that stock xdelta3 decodes; an abandoned writer leaves the store as it
 * was; comment lines of increments.txt stay where they were through
 * commits; windowed lzma patches are read as they are (no converted copy)
 * at random offsets, and a flipped byte in a compressed section gives
 * -EIO, never wrong bytes. Data comes from a fixed seed.
 */
#include "fs/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/vcdiff_dec.h"
#include "codec/vcdiff_enc.h"
#include "fs/store.h"
#include "fs/writer.h"
#include "tests/unit/t.h"
#include "tests/unit/tutil.h"

#define NSTATE 4
#define SZ (3u << 20)

static char dir[64];
static uint8_t *state[NSTATE + 3];
static size_t state_len[NSTATE + 3];
static uint64_t rng = 42;

/* State k: state k-1 with a few pages rewritten and a block moved. */
static void make_states(void)
{
	state_len[0] = SZ;
	state[0] = malloc(SZ);
	for (size_t i = 0; i < SZ; i++)
		state[0][i] = (i / 4096) % 3 == 0 ? 0 : (uint8_t)t_xorshift(&rng);
	for (int k = 1; k < NSTATE + 3; k++) {
		size_t n = state_len[k - 1] + (k % 2 ? 4096 : 0);
		state[k] = malloc(n);
		state_len[k] = n;
		/* Insert a page near the front so later bytes shift. */
		memcpy(state[k], state[k - 1], 8192);
		if (k % 2)
			memset(state[k] + 8192, 0x5a, 4096);
		memcpy(state[k] + 8192 + (k % 2 ? 4096 : 0), state[k - 1] + 8192,
		       state_len[k - 1] - 8192);
		for (int j = 0; j < 20; j++) {
			size_t p = (t_xorshift(&rng) % (n / 4096)) * 4096;
			for (int b = 0; b < 4096; b++)
				state[k][p + b] = (uint8_t)t_xorshift(&rng);
		}
	}
}

static void put_file(const char *name, const uint8_t *b, size_t n)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	T_CHECK(f && fwrite(b, 1, n, f) == n);
	if (f)
		fclose(f);
}

/* A store: zstd base + NSTATE-1 stock patches (lzma, -S none, ...). */
static void make_store(const char *sub)
{
	static const char *opts[] = { "", "-S none", "-9", "-S none -W 65536" };
	char s[128];

	snprintf(s, sizeof(s), "%s/%s", dir, sub);
	mkdir(s, 0755);
	for (int k = 0; k < NSTATE; k++) {
		char n[32];
		snprintf(n, sizeof(n), "st%d", k);
		put_file(n, state[k], state_len[k]);
	}
	T_EQ(t_sh("zstd -q -f %s/st0 -o %s/s0.zst", dir, s), 0);
	for (int k = 1; k < NSTATE; k++)
		T_EQ(t_sh("xdelta3 -e -f %s -s %s/st%d %s/st%d %s/s%d.patch",
			opts[k % 4], dir, k - 1, dir, k, s, k), 0);
	T_EQ(t_sh("cd %s && printf 's3.patch\\ns2.patch\\ns1.patch\\ns0.zst\\n' "
		"> increments.txt", s), 0);
}

static char lastlog[1024];	/* the last message logged */

static void logcb(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	snprintf(lastlog, sizeof(lastlog), "%s", msg);
	fprintf(stderr, "    log: %s\n", msg);
}

static int open_chain(const char *sub, struct store **s, struct chain **c)
{
	char p[128], err[1024] = "";
	struct chain_opts o = { .log = logcb, .prefetch_threads = 2 };
	int rc;

	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	rc = store_open(s, p, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "    store_open: %s\n", err);
		return rc;
	}
	rc = chain_open(c, *s, &o, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "    chain_open: %s\n", err);
		store_free(*s);
		return rc;
	}
	chain_start(*c);
	return 0;
}

/* Reads through a reference to snapshot id's current version. */
static ssize_t rd(struct chain *c, uint32_t id, uint64_t off, void *buf,
		  size_t len, struct chain_stream *st)
{
	struct chain_layer *L;
	int rc = chain_get(c, id, &L);

	if (rc)
		return rc;
	ssize_t r = chain_read(c, L, off, buf, len, st);
	chain_put(c, L);
	return r;
}

/* Snapshot id (a plain line's ids are 1 for the base, 2, ...). */
static int layer_equals(struct chain *c, uint32_t id, const uint8_t *b,
			size_t n)
{
	struct chain_info inf;
	uint8_t *buf = malloc(n + 1);
	int ok = chain_info(c, id, &inf) == 0 && inf.size == n &&
		 rd(c, id, 0, buf, n + 1, NULL) == (ssize_t)n &&
		 memcmp(buf, b, n) == 0;
	free(buf);
	return ok;
}

static void test_read_every_layer(void)
{
	struct store *s;
	struct chain *c;

	make_store("r");
	T_EQ(open_chain("r", &s, &c), 0);
	T_EQ(chain_count(c), NSTATE);
	for (int k = 0; k < NSTATE; k++)
		T_CHECK(layer_equals(c, (uint32_t)k + 1, state[k], state_len[k]));
	T_EQ(chain_lookup(c, "s2"), 3);
	T_EQ(chain_lookup(c, "nope"), 0);
	/* Random ranges, some across the end. */
	uint8_t buf[70000];
	for (int i = 0; i < 3000; i++) {
		size_t k = t_xorshift(&rng) % NSTATE, off = t_xorshift(&rng) % state_len[k];
		size_t len = 1 + t_xorshift(&rng) % sizeof(buf);
		size_t want = off + len > state_len[k] ? state_len[k] - off : len;
		ssize_t r = rd(c, (uint32_t)k + 1, off, buf, len, NULL);
		if (r != (ssize_t)want || memcmp(buf, state[k] + off, want)) {
			T_CHECK(0);
			break;
		}
	}
	T_EQ(rd(c, 2, state_len[1], buf, 10, NULL), 0);
	T_EQ(rd(c, 99, 0, buf, 10, NULL), -ENOENT);
	/* A stream (readahead) reads the same bytes. */
	struct chain_stream *st;
	T_EQ(chain_stream_new(&st), 0);
	uint8_t *all = malloc(state_len[3]);
	for (size_t off = 0; off < state_len[3]; off += 65536) {
		size_t n = state_len[3] - off < 65536 ? state_len[3] - off : 65536;
		T_EQ(rd(c, 4, off, all + off, n, st), (ssize_t)n);
	}
	T_CHECK(memcmp(all, state[3], state_len[3]) == 0);
	free(all);
	chain_stream_free(st);
	char stats[2048];
	chain_stats(c, stats, sizeof(stats));
	T_CHECK(strstr(stats, "cache_hits") != NULL);
	chain_free(c);
	store_free(s);

	/* Second open: indexes come from .snapfs/ and read the same. */
	T_EQ(open_chain("r", &s, &c), 0);
	T_CHECK(layer_equals(c, 4, state[3], state_len[3]));
	chain_free(c);
	store_free(s);
}

static void test_damage_contained(void)
{
	struct store *s;
	struct chain *c;
	struct chain_info inf;
	char p[128];

	make_store("d");
	/* Flip bytes in the middle of patch 2 (-9: lzma, adler32). */
	snprintf(p, sizeof(p), "%s/d/s2.patch", dir);
	int fd = open(p, O_RDWR);
	struct stat st;
	fstat(fd, &st);
	uint8_t junk[16];
	memset(junk, 0xa5, sizeof(junk));
	T_EQ(pwrite(fd, junk, sizeof(junk), st.st_size / 2), (ssize_t)sizeof(junk));
	close(fd);
	T_EQ(open_chain("d", &s, &c), 0);
	T_CHECK(layer_equals(c, 1, state[0], state_len[0]));
	T_CHECK(layer_equals(c, 2, state[1], state_len[1]));
	T_EQ(chain_info(c, 3, &inf), 0);
	T_CHECK(inf.damaged);
	T_EQ(chain_info(c, 4, &inf), 0);
	T_CHECK(inf.damaged && strstr(inf.damage, "s2"));
	uint8_t buf[100];
	T_EQ(rd(c, 3, 0, buf, sizeof(buf), NULL), -EIO);
	T_EQ(rd(c, 4, 0, buf, sizeof(buf), NULL), -EIO);
	struct chain_layer *L;
	T_EQ(chain_get(c, 4, &L), 0);
	T_EQ(chain_check(c, L), -EIO);
	chain_put(c, L);
	T_EQ(chain_get(c, 2, &L), 0);
	T_EQ(chain_check(c, L), 0);
	chain_put(c, L);
	chain_free(c);
	store_free(s);
}

/* The two steps of a commit (what FLUSH and RELEASE do). */
static int commit(struct writer *w, char *err, size_t errlen)
{
	int rc = writer_finish(w, err, errlen);
	return rc ? rc : writer_publish(w, err, errlen);
}

/* Writes state k into a writer in the given order, commits. */
static void write_layer(struct chain *c, struct store *s, const char *name,
			int k, int how)
{
	struct writer *w;
	char err[1024] = "";
	const uint8_t *b = state[k];
	size_t n = state_len[k], bs = 65536;

	T_EQ(writer_new(&w, c, s, name, err, sizeof(err)), 0);
	if (how == 0) {		/* in order, odd piece sizes */
		for (size_t off = 0; off < n;) {
			size_t len = 1 + t_xorshift(&rng) % 100000;
			if (len > n - off)
				len = n - off;
			T_EQ(writer_write(w, off, b + off, len), 0);
			off += len;
		}
	} else if (how == 1) {	/* placeholder header fixed up at the end */
		uint8_t zero[4096] = { 0 };
		T_EQ(writer_write(w, 0, zero, sizeof(zero)), 0);
		T_EQ(writer_write(w, 4096, b + 4096, n - 4096), 0);
		T_EQ(writer_write(w, 0, b, 4096), 0);
	} else {		/* blocks in a scrambled order */
		size_t nb = (n + bs - 1) / bs;
		for (size_t i = 0; i < nb; i++) {
			size_t blk = (i * 7919) % nb, off = blk * bs;
			size_t len = n - off < bs ? n - off : bs;
			T_EQ(writer_write(w, off, b + off, len), 0);
		}
	}
	T_EQ(writer_size(w), n);
	int rc = commit(w, err, sizeof(err));
	if (rc)
		fprintf(stderr, "    commit: %s\n", err);
	T_EQ(rc, 0);
	writer_free(w);
}

static void test_writer(void)
{
	struct store *s;
	struct chain *c;
	char p[128];

	snprintf(p, sizeof(p), "%s/w", dir);
	mkdir(p, 0755);
	T_EQ(open_chain("w", &s, &c), 0);
	T_EQ(chain_count(c), 0);
	write_layer(c, s, "base", 0, 0);	/* becomes the zstd base */
	write_layer(c, s, "inorder", 1, 0);
	write_layer(c, s, "fixup", 2, 1);
	write_layer(c, s, "jumpy", 3, 2);
	T_EQ(chain_count(c), 4);
	for (int k = 0; k < 4; k++)
		T_CHECK(layer_equals(c, (uint32_t)k + 1, state[k], state_len[k]));

	/* Refused: an existing name, a hidden or slashed name. */
	struct writer *w;
	char err[1024];
	T_EQ(writer_new(&w, c, s, "jumpy", err, sizeof(err)), -EEXIST);
	T_EQ(writer_new(&w, c, s, ".x", err, sizeof(err)), -EINVAL);
	T_EQ(writer_new(&w, c, s, "a/b", err, sizeof(err)), -EINVAL);

	/* Truncate grows with zeros; abandoning leaves nothing behind. */
	T_EQ(writer_new(&w, c, s, "grown", err, sizeof(err)), 0);
	T_EQ(writer_write(w, 0, state[4], 1000), 0);
	T_EQ(writer_truncate(w, 5000), 0);
	T_EQ(writer_size(w), 5000);
	T_EQ(commit(w, err, sizeof(err)), 0);
	writer_free(w);
	uint8_t expect[5000] = { 0 };
	memcpy(expect, state[4], 1000);
	T_CHECK(layer_equals(c, 5, expect, sizeof(expect)));

	T_EQ(writer_new(&w, c, s, "abandoned", err, sizeof(err)), 0);
	T_EQ(writer_write(w, 0, state[5], state_len[5]), 0);
	writer_free(w);
	T_EQ(chain_count(c), 5);
	T_EQ(chain_lookup(c, "abandoned"), 0);
	chain_free(c);
	store_free(s);

	/* The store on disk: stock tools decode every layer written. */
	T_EQ(t_sh("cd %s/w && zstd -q -d -c base.zst > ../dec && "
		"for f in inorder fixup jumpy; do xdelta3 -d -f -s ../dec $f.patch "
		"../dec2 && mv ../dec2 ../dec; done && cmp -s ../dec ../st3", dir), 0);
	T_EQ(t_sh("test ! -e %s/w/abandoned.patch && test -z \"$(ls %s/w/.snapfs/tmp)\"",
		dir, dir), 0);
	/* Reopened: everything reads back. */
	T_EQ(open_chain("w", &s, &c), 0);
	T_EQ(chain_count(c), 5);
	T_CHECK(layer_equals(c, 4, state[3], state_len[3]));
	chain_free(c);
	store_free(s);
}

/* The commit split: finish is idempotent, undone by a later write (an
 * append, a header fix-up), publish needs a finish; libvirt's partial
 * save header is recognised, and its compression named. */
static void test_writer_finish(void)
{
	struct store *s;
	struct chain *c;
	struct writer *w;
	char p[128], err[1024] = "";
	size_t n;

	snprintf(p, sizeof(p), "%s/wf", dir);
	mkdir(p, 0755);
	T_EQ(open_chain("wf", &s, &c), 0);
	T_EQ(writer_new(&w, c, s, "base", err, sizeof(err)), 0);
	T_EQ(writer_dirty(w), 0);
	T_EQ(writer_write(w, 0, state[0], state_len[0]), 0);
	T_EQ(writer_dirty(w), 1);
	T_EQ(commit(w, err, sizeof(err)), 0);
	writer_free(w);

	/* Finished half way (a dup closed), then appended to. */
	n = state_len[1];
	T_EQ(writer_new(&w, c, s, "appended", err, sizeof(err)), 0);
	T_EQ(writer_publish(w, err, sizeof(err)), -EINVAL);
	T_EQ(writer_write(w, 0, state[1], n / 2), 0);
	T_EQ(writer_finish(w, err, sizeof(err)), 0);
	T_EQ(writer_dirty(w), 0);
	T_EQ(writer_finish(w, err, sizeof(err)), 0);
	T_EQ(writer_write(w, n / 2, state[1] + n / 2, n - n / 2), 0);
	T_EQ(writer_dirty(w), 1);
	T_EQ(writer_publish(w, err, sizeof(err)), -EINVAL);
	T_EQ(commit(w, err, sizeof(err)), 0);
	writer_free(w);
	T_CHECK(layer_equals(c, 2, state[1], n));	/* ids: base is 1 */

	/* libvirt: partial magic, gzip, finished, closed, reopened, fixed. */
	n = state_len[2];
	uint8_t *b = malloc(n);
	memcpy(b, state[2], n);
	memcpy(b, "LibvirtQemudPart", 16);
	uint32_t hdr[4] = { 2, 1000, 1, 1 };	/* version .. compressed */
	memcpy(b + 16, hdr, sizeof(hdr));
	T_EQ(writer_new(&w, c, s, "virsh", err, sizeof(err)), 0);
	T_EQ(writer_write(w, 0, b, n), 0);
	T_EQ(writer_finish(w, err, sizeof(err)), 0);
	T_CHECK(writer_awaits_fixup(w));
	T_CHECK(writer_note(w) && strstr(writer_note(w), "gzip"));
	memcpy(b, "LibvirtQemudSave", 16);
	T_EQ(writer_write(w, 0, b, 16), 0);
	T_CHECK(!writer_awaits_fixup(w));
	T_EQ(commit(w, err, sizeof(err)), 0);
	/* the head was spliced in, not the whole file spooled */
	T_EQ(t_sh("! ls %s/wf/.snapfs/tmp | grep -q spool", dir), 0);
	writer_free(w);
	T_CHECK(layer_equals(c, 3, b, n));
	free(b);

	/* libvirt's iohelper at the end: the last O_DIRECT block padded,
	 * then cut back; also a rewrite of the last block. Both are held
	 * in memory: no spool file appears. */
	n = state_len[3];
	size_t pad = 4096 - n % 4096 + 4096;
	b = calloc(1, n + pad);
	memcpy(b, state[3], n);
	T_EQ(writer_new(&w, c, s, "iohelper", err, sizeof(err)), 0);
	T_EQ(writer_write(w, 0, b, n - 100000), 0);
	T_EQ(writer_write(w, n - 100000, b + n - 100000, 100000 + pad), 0);
	T_EQ(writer_truncate(w, n), 0);
	T_EQ(writer_write(w, n - 5000, b + n - 5000, 5000), 0);
	T_EQ(writer_size(w), n);
	T_EQ(t_sh("! ls %s/wf/.snapfs/tmp | grep -q spool", dir), 0);
	T_EQ(commit(w, err, sizeof(err)), 0);
	writer_free(w);
	T_CHECK(layer_equals(c, 4, state[3], n));
	free(b);

	/* A failed step is sticky and leaves no trace. */
	T_EQ(writer_new(&w, c, s, "spent", err, sizeof(err)), 0);
	T_EQ(writer_write(w, 0, state[3], 1000), 0);
	T_EQ(writer_truncate(w, 500), 0);
	T_EQ(writer_finish(w, err, sizeof(err)), 0);
	T_EQ(writer_publish(w, err, sizeof(err)), 0);
	T_EQ(writer_write(w, 0, state[3], 10), -EALREADY);
	writer_free(w);
	T_CHECK(layer_equals(c, 5, state[3], 500));
	T_EQ(chain_count(c), 5);
	chain_free(c);
	store_free(s);
	T_EQ(t_sh("test -z \"$(ls %s/wf/.snapfs/tmp)\"", dir), 0);
}

static void test_store_errors(void)
{
	struct store *s, *s2;
	char p[128], err[1024];

	snprintf(p, sizeof(p), "%s/e", dir);
	mkdir(p, 0755);
	T_EQ(store_open(&s, p, err, sizeof(err)), 0);	/* new, empty */
	T_EQ(tree_count(store_tree(s)), 0);
	T_EQ(store_open(&s2, p, err, sizeof(err)), -EBUSY);
	T_CHECK(strstr(err, "in use") != NULL);
	store_free(s);
	T_EQ(t_sh("printf '# only a comment\\n\\n' > %s/increments.txt", p), 0);
	T_EQ(store_open(&s, p, err, sizeof(err)), -ENODATA);
	T_CHECK(strstr(err, "increments.txt") != NULL);
	T_EQ(t_sh("printf 'gone.patch\\n' > %s/increments.txt", p), 0);
	T_EQ(store_open(&s, p, err, sizeof(err)), 0);
	struct chain *c;
	T_EQ(chain_open(&c, s, NULL, err, sizeof(err)), -ENOENT);
	T_CHECK(strstr(err, "gone.patch") != NULL);
	store_free(s);
	char name[64];
	T_EQ(store_name_of("dir/snapshot_4.patch", name, sizeof(name)), 0);
	T_CHECK(strcmp(name, "snapshot_4") == 0);
	T_EQ(store_name_of("base", name, sizeof(name)), 0);
	T_CHECK(strcmp(name, "base") == 0);
}

/* A new layer file on top of current, committed as the writer does. */
static int commit_on_top(struct store *s, const char *file)
{
	struct tree *next;
	uint32_t id;
	char err[1024] = "";
	int rc = tree_clone(store_tree(s), &next);

	if (rc)
		return rc;
	rc = tree_add(next, tree_current(next), file, 0, &id);
	if (!rc)
		rc = tree_set_current(next, id);
	if (rc) {
		tree_free(next);
		return rc;
	}
	rc = store_commit(s, next, err, sizeof(err));
	if (rc)
		fprintf(stderr, "    store_commit: %s\n", err);
	return rc;
}

/*
 * Comment and blank lines of increments.txt stay after the layer line
 * they followed, through commits: where a line of the plain layout
 * (s2.zstd, gone) is read as its patch, where a layer file is renamed,
 * and after an interrupted change is finished at open (each once).
 */
static void test_layers_comments(void)
{
	static const char want1[] = "# top\\nn3.patch\\ns2.patch\\n# after s2\\n"
		"s1.patch\\n\\n  # after s1\\ns0.zst\\n# after s0\\n";
	static const char want2[] = "# top\\nn3.patch\\ns2.patch\\n# after s2\\n"
		"r1.patch\\n\\n  # after s1\\ns0.zst\\n# after s0\\n";
	static const char want3[] = "# top\\nn4.patch\\nn3.patch\\ns2.patch\\n"
		"# after s2\\nr1.patch\\n\\n  # after s1\\ns0.zst\\n# after s0\\n";
	struct store *s;
	struct tree *next;
	const struct tree_node *n;
	char p[128], tp[160], err[1024] = "", *txt = NULL;
	size_t len = 0;

	snprintf(p, sizeof(p), "%s/lc", dir);
	mkdir(p, 0755);
	T_EQ(t_sh("cd %s && touch s2.patch s1.patch s0.zst n3.patch n4.patch && "
		  "printf '# top\\ns2.zstd\\n# after s2\\ns1.zstd\\n \\n"
		  "  # after s1\\ns0.zst\\n# after s0\\n' > increments.txt", p), 0);
	T_EQ(store_open(&s, p, err, sizeof(err)), 0);
	T_EQ(commit_on_top(s, "n3.patch"), 0);
	T_EQ(t_sh("printf '%s' | cmp - %s/increments.txt", want1, p), 0);

	/* A rename (snapctl rename, a rebase) keeps the snapshot's lines. */
	T_EQ(tree_clone(store_tree(s), &next), 0);
	n = tree_by_file(next, "s1.patch");
	T_CHECK(n != NULL);
	T_EQ(tree_set_file(next, n ? n->id : 0, "r1.patch"), 0);
	T_EQ(tree_add_pending(next, "s1.patch", "r1.patch"), 0);
	T_EQ(store_commit(s, next, err, sizeof(err)), 0);
	T_EQ(t_sh("printf '%s' | cmp - %s/increments.txt", want2, p), 0);

	/* A change cut short after its commit point: the open finishes it,
	 * reading increments.txt twice. */
	T_EQ(tree_clone(store_tree(s), &next), 0);
	T_EQ(tree_add_pending(next, NULL, "stale.patch"), 0);
	T_EQ(tree_format(next, &txt, &len), 0);
	tree_free(next);
	store_free(s);
	snprintf(tp, sizeof(tp), "%s/%s", p, TREE_FILE);
	T_EQ(t_write_file(tp, txt, len), 0);
	free(txt);
	T_EQ(store_open(&s, p, err, sizeof(err)), 0);
	T_EQ(t_sh("printf '%s' | cmp - %s/increments.txt", want2, p), 0);
	T_EQ(commit_on_top(s, "n4.patch"), 0);
	T_EQ(t_sh("printf '%s' | cmp - %s/increments.txt", want3, p), 0);
	store_free(s);
}

/* --- windowed lzma patches, read natively --- */

struct mem_src {
	const uint8_t *b;
	size_t n;
};

static ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct mem_src *m = ctx;

	if (off >= m->n)
		return 0;
	if (len > m->n - off)
		len = m->n - off;
	memcpy(buf, m->b + off, len);
	return (ssize_t)len;
}

static int fd_out(void *ctx, const void *buf, size_t len)
{
	return write(*(int *)ctx, buf, len) == (ssize_t)len ? 0 : -EIO;
}

/* States for windowed patches: like state[], but the pages rewritten
 * between states are text-like (lzma compresses their ADD bytes; random
 * pages would stay plain sections). */
static uint8_t *wst[NSTATE];
static size_t wst_len[NSTATE];

static void make_wstates(void)
{
	wst_len[0] = state_len[0];
	wst[0] = malloc(wst_len[0]);
	memcpy(wst[0], state[0], wst_len[0]);
	for (int k = 1; k < NSTATE; k++) {
		size_t n = wst_len[k - 1];
		wst[k] = malloc(n);
		wst_len[k] = n;
		memcpy(wst[k], wst[k - 1], n);
		for (int j = 0; j < 40; j++) {
			size_t p = (t_xorshift(&rng) % (n / 4096)) * 4096;
			for (int b = 0; b < 4096; b += 32) {
				char line[40];
				snprintf(line, sizeof(line), "state %d page "
					 "%05u line %03u %02u\n", k % 10,
					 (unsigned)(p / 4096 % 100000),
					 (unsigned)(b / 32),
					 (unsigned)(t_xorshift(&rng) % 97));
				memcpy(wst[k] + p + b, line, 32);
			}
		}
	}
}

/* Encodes wst[k] against wst[k-1] into path, windowed lzma, small windows
 * so that a patch has many of them. */
static int encode_windowed(int k, const char *path)
{
	struct vcdiff_enc_opts o = {
		.win_size = 256 << 10,
		.secondary = VCDIFF_SEC_LZMA_WINDOWED,
	};
	struct mem_src m = { wst[k - 1], wst_len[k - 1] };
	struct vcdiff_enc *e = NULL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int rc = fd < 0 ? -errno : vcdiff_enc_new(&e, &o, m.n, mem_read, &m,
						  fd_out, &fd);

	if (!rc)
		rc = vcdiff_enc_write(e, wst[k], wst_len[k]);
	if (!rc)
		rc = vcdiff_enc_finish(e);
	vcdiff_enc_free(e);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* A store: zstd base + NSTATE-1 windowed lzma patches. */
static void make_windowed_store(const char *sub)
{
	char s[128], p[256];

	snprintf(s, sizeof(s), "%s/%s", dir, sub);
	mkdir(s, 0755);
	make_wstates();
	put_file("st0", wst[0], wst_len[0]);
	T_EQ(t_sh("zstd -q -f %s/st0 -o %s/s0.zst", dir, s), 0);
	for (int k = 1; k < NSTATE; k++) {
		snprintf(p, sizeof(p), "%s/s%d.patch", s, k);
		T_EQ(encode_windowed(k, p), 0);
	}
	T_EQ(t_sh("cd %s && printf 's3.patch\\ns2.patch\\ns1.patch\\ns0.zst"
		  "\\n' > increments.txt", s), 0);
}

/* Where to damage: the middle of a compressed data section of a middle
 * window of the patch at path. 0 if it has none. */
static uint64_t compressed_data_off(const char *path, size_t *win)
{
	struct vcdiff_patch *p = NULL;
	uint64_t off = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || t_patch_open(&p, fd, NULL)) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	T_EQ(vcdiff_patch_windowed(p), 1);
	size_t n = vcdiff_patch_nwin(p);
	for (size_t i = n / 2; i < n && !off; i++) {
		const struct vcdiff_win *w = vcdiff_patch_win(p, i);
		if ((w->del_ind & VCDIFF_DEL_DATA) && w->data_len > 64) {
			off = w->data_off + w->data_len / 2;
			*win = i;
		}
	}
	vcdiff_patch_free(p);
	close(fd);
	return off;
}

static void test_windowed(void)
{
	struct store *s;
	struct chain *c;
	char p[256];

	make_windowed_store("wl");
	T_EQ(open_chain("wl", &s, &c), 0);
	for (int k = 0; k < NSTATE; k++)
		T_CHECK(layer_equals(c, (uint32_t)k + 1, wst[k], wst_len[k]));
	/* Read as they are: no converted copy under .snapfs/plain, only
	 * each layer's decoded data sections (.sect). */
	T_EQ(t_sh("test -z \"$(ls -A %s/wl/%s/plain | grep -v '\\.sect$')\"",
		  dir, STORE_META_DIR), 0);
	T_EQ(t_sh("test $(ls %s/wl/%s/plain | grep -c '\\.sect$') -ge 1", dir,
		  STORE_META_DIR), 0);
	uint8_t buf[70000];
	for (int i = 0; i < 3000; i++) {
		size_t k = 1 + t_xorshift(&rng) % (NSTATE - 1), off = t_xorshift(&rng) % wst_len[k];
		size_t len = 1 + t_xorshift(&rng) % sizeof(buf);
		size_t want = off + len > wst_len[k] ? wst_len[k] - off : len;
		ssize_t r = rd(c, (uint32_t)k + 1, off, buf, len, NULL);
		if (r != (ssize_t)want || memcmp(buf, wst[k] + off, want)) {
			T_CHECK(0);
			break;
		}
	}
	/* Sequential through a stream: readahead fills the same cache. */
	struct chain_stream *st;
	T_EQ(chain_stream_new(&st), 0);
	uint8_t *all = malloc(wst_len[3]);
	for (size_t off = 0; off < wst_len[3]; off += 65536) {
		size_t n = wst_len[3] - off < 65536 ? wst_len[3] - off : 65536;
		T_EQ(rd(c, 4, off, all + off, n, st), (ssize_t)n);
	}
	T_CHECK(memcmp(all, wst[3], wst_len[3]) == 0);
	free(all);
	chain_stream_free(st);
	chain_free(c);
	store_free(s);

	/* A flipped byte in a compressed data section once indexed (the
	 * mtime put back, so the saved index and sums still load): reads
	 * that need it fail with EIO and name the window; none returns
	 * wrong bytes. */
	size_t win = 0;
	snprintf(p, sizeof(p), "%s/wl/s2.patch", dir);
	uint64_t bad = compressed_data_off(p, &win);
	T_CHECK(bad != 0);
	if (!bad)
		return;
	struct stat sb;
	int fd = open(p, O_RDWR);
	T_CHECK(fd >= 0 && fstat(fd, &sb) == 0);
	uint8_t byte = 0;
	T_EQ(pread(fd, &byte, 1, (off_t)bad), 1);
	byte ^= 0x40;
	T_EQ(pwrite(fd, &byte, 1, (off_t)bad), 1);
	struct timespec ts[2] = { sb.st_atim, sb.st_mtim };
	T_EQ(futimens(fd, ts), 0);
	close(fd);
	/* The sections were decoded when first indexed: reads come from
	 * that copy, right, and do not touch the damaged bytes. */
	uint8_t *b3 = malloc(wst_len[2] + 1);
	T_EQ(open_chain("wl", &s, &c), 0);
	T_EQ(rd(c, 3, 0, b3, wst_len[2], NULL), (ssize_t)wst_len[2]);
	T_CHECK(memcmp(b3, wst[2], wst_len[2]) == 0);
	chain_free(c);
	store_free(s);
	/* Without the copy, making it again fails (logged), and reads
	 * decode the sections themselves. */
	T_EQ(t_sh("rm %s/wl/%s/plain/*.sect", dir, STORE_META_DIR), 0);
	T_EQ(open_chain("wl", &s, &c), 0);
	T_CHECK(strstr(lastlog, "no decoded copy of its lzma sections") !=
		NULL);
	struct chain_info inf;
	T_EQ(chain_info(c, 3, &inf), 0);
	T_CHECK(!inf.damaged);
	lastlog[0] = 0;
	T_EQ(rd(c, 3, 0, b3, wst_len[2], NULL), -EIO);
	/* The window named is the first read that needed the bad 4 KiB
	 * block: with windows this small, several share it. */
	T_CHECK(strstr(lastlog, "(window ") != NULL);
	T_CHECK(strstr(lastlog, "s2.patch") != NULL);
	int eio = 0;
	for (int i = 0; i < 500; i++) {
		size_t k = 2 + t_xorshift(&rng) % 2, off = t_xorshift(&rng) % wst_len[k];
		size_t len = 1 + t_xorshift(&rng) % sizeof(buf);
		size_t n = off + len > wst_len[k] ? wst_len[k] - off : len;
		ssize_t r = rd(c, (uint32_t)k + 1, off, buf, len, NULL);
		if (r == -EIO) {
			eio++;
			continue;
		}
		if (r != (ssize_t)n || memcmp(buf, wst[k] + off, n)) {
			T_CHECK(0);
			break;
		}
	}
	T_CHECK(eio > 0);
	free(b3);
	chain_free(c);
	store_free(s);
	for (int k = 0; k < NSTATE; k++)
		free(wst[k]);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_chain.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	make_states();
	T_RUN(test_read_every_layer);
	T_RUN(test_damage_contained);
	T_RUN(test_writer);
	T_RUN(test_writer_finish);
	T_RUN(test_store_errors);
	T_RUN(test_layers_comments);
	T_RUN(test_windowed);
	t_sh("rm -rf %s", dir);
	for (int k = 0; k < NSTATE + 3; k++)
		free(state[k]);
	return t_done();
}
