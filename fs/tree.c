/* SPDX-License-Identifier: MIT */
/*
 * tree: the snapshot tree and its text form (see tree.h).
 *
 * snapshots.txt, one record per line, fields separated by TABs, values
 * escaped (\\, \t, \n, \r, \xHH for other control bytes) so that any
 * description fits on one line:
 *
 *   snapfs-tree	1
 *   next	9				the next id to hand out
 *   current	7				0 in an empty store
 *   snap	id=1	parent=0	created=2026-12-03T07:40:00Z	file=snapshot_0.zst
 *   snap	id=2	parent=1	created=...	file=s1.patch	digest=xxh128:...	desc=...
 *   move	from=.snapfs/tmp/x	to=s3.patch	a change to roll forward
 *   delete	file=s2.patch			likewise
 *
 * Lines starting with '#' and blank lines are comments. Parents come
 * before their children, which makes a cycle impossible to write down.
 * Unknown keys in a snap line are an error rather than dropped, so a newer
 * snapfs's store is refused instead of silently losing what it wrote.
 *
 * Lookups are linear: a store has at most a few thousand snapshots and
 * the tree is consulted on changes, never on reads.
 */
#include "fs/tree.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/msg.h"

/* Nodes are the tree_node views handed out; their strings are owned
 * here (hence the casts where they are freed). */


struct tree {
	struct tree_node *n;
	size_t count, cap;
	struct tree_pending *p;	/* owns its strings */
	size_t np, pcap;
	uint32_t next, current;
	int explicit_;
};

int tree_new(struct tree **out)
{
	struct tree *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->next = 1;
	*out = t;
	return 0;
}

static void node_clear(struct tree_node *n)
{
	free((char *)n->file);
	free((char *)n->digest);
	free((char *)n->desc);
}

void tree_clear_pending(struct tree *t)
{
	for (size_t i = 0; i < t->np; i++) {
		free((char *)t->p[i].from);
		free((char *)t->p[i].to);
	}
	t->np = 0;
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->count; i++)
		node_clear(&t->n[i]);
	free(t->n);
	tree_clear_pending(t);
	free(t->p);
	free(t);
}

static struct tree_node *find(const struct tree *t, uint32_t id)
{
	for (size_t i = 0; id && i < t->count; i++)
		if (t->n[i].id == id)
			return &t->n[i];
	return NULL;
}

size_t tree_count(const struct tree *t)
{
	return t->count;
}

const struct tree_node *tree_at(const struct tree *t, size_t i)
{
	return i < t->count ? &t->n[i] : NULL;
}

const struct tree_node *tree_get(const struct tree *t, uint32_t id)
{
	return find(t, id);
}

const struct tree_node *tree_by_file(const struct tree *t, const char *file)
{
	for (size_t i = 0; i < t->count; i++)
		if (!strcmp(t->n[i].file, file))
			return &t->n[i];
	return NULL;
}

uint32_t tree_current(const struct tree *t)
{
	return t->current;
}

uint32_t tree_next_id(const struct tree *t)
{
	return t->next;
}

int tree_explicit(const struct tree *t)
{
	return t->explicit_;
}

void tree_set_explicit(struct tree *t)
{
	t->explicit_ = 1;
}

size_t tree_line(const struct tree *t, uint32_t id, uint32_t *ids,
		 size_t cap)
{
	size_t k = 0;

	for (const struct tree_node *n = find(t, id); n; n = find(t, n->parent)) {
		if (k < cap)
			ids[k] = n->id;
		k++;
		if (k > t->count)	/* cannot happen in a parsed tree */
			return 0;
	}
	return k;
}

size_t tree_children(const struct tree *t, uint32_t id, uint32_t *ids,
		     size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < t->count; i++) {
		if (t->n[i].parent != id)
			continue;
		if (k < cap)
			ids[k] = t->n[i].id;
		k++;
	}
	return k;
}

size_t tree_npending(const struct tree *t)
{
	return t->np;
}

const struct tree_pending *tree_pending_at(const struct tree *t, size_t i)
{
	return i < t->np ? &t->p[i] : NULL;
}

/* --- changes --- */

static int set_str(const char **dst, const char *s)
{
	char *c = strdup(s ? s : "");

	if (!c)
		return -ENOMEM;
	free((char *)*dst);
	*dst = c;
	return 0;
}

int tree_add_id(struct tree *t, uint32_t id, uint32_t parent,
		const char *file, int64_t created)
{
	struct tree_node *n;

	if (!id || id > TREE_MAX_ID)
		return -ENOSPC;
	if (find(t, id))
		return -EEXIST;
	if (parent && !find(t, parent))
		return -ENOENT;
	for (size_t i = 0; i < t->count; i++)
		if (!strcmp(t->n[i].file, file))
			return -EEXIST;
	if (t->count == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		n = realloc(t->n, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		t->n = n;
		t->cap = cap;
	}
	n = &t->n[t->count];
	memset(n, 0, sizeof(*n));
	if (set_str(&n->file, file) || set_str(&n->digest, "") ||
	    set_str(&n->desc, "")) {
		node_clear(n);
		return -ENOMEM;
	}
	n->id = id;
	n->parent = parent;
	n->created = created;
	t->count++;
	if (id >= t->next)
		t->next = id + 1;
	return 0;
}

int tree_add(struct tree *t, uint32_t parent, const char *file,
	     int64_t created, uint32_t *id)
{
	int rc = tree_add_id(t, t->next, parent, file, created);

	if (!rc)
		*id = t->next - 1;
	return rc;
}

int tree_remove(struct tree *t, uint32_t id)
{
	struct tree_node *n = find(t, id);
	uint32_t parent, first = 0;

	if (!n)
		return -ENOENT;
	parent = n->parent;
	for (size_t i = 0; i < t->count; i++) {
		if (t->n[i].parent == id) {
			t->n[i].parent = parent;
			if (!first)
				first = t->n[i].id;
		}
	}
	if (t->current == id)
		t->current = parent ? parent : first;
	node_clear(n);
	size_t k = (size_t)(n - t->n);
	memmove(n, n + 1, (t->count - k - 1) * sizeof(*n));
	t->count--;
	return 0;
}

int tree_set_parent(struct tree *t, uint32_t id, uint32_t parent)
{
	struct tree_node *n = find(t, id);

	if (!n || (parent && !find(t, parent)))
		return -ENOENT;
	/* A parent must not be one of id's own descendants. */
	for (const struct tree_node *a = find(t, parent); a; a = find(t, a->parent))
		if (a->id == id)
			return -ELOOP;
	n->parent = parent;
	return 0;
}

int tree_set_file(struct tree *t, uint32_t id, const char *file)
{
	struct tree_node *n = find(t, id);

	if (!n)
		return -ENOENT;
	for (size_t i = 0; i < t->count; i++)
		if (&t->n[i] != n && !strcmp(t->n[i].file, file))
			return -EEXIST;
	return set_str(&n->file, file);
}

int tree_set_desc(struct tree *t, uint32_t id, const char *desc)
{
	struct tree_node *n = find(t, id);
	return n ? set_str(&n->desc, desc) : -ENOENT;
}

int tree_set_digest(struct tree *t, uint32_t id, const char *digest)
{
	struct tree_node *n = find(t, id);
	return n ? set_str(&n->digest, digest) : -ENOENT;
}

int tree_set_current(struct tree *t, uint32_t id)
{
	if (id && !find(t, id))
		return -ENOENT;
	t->current = id;
	return 0;
}

int tree_add_pending(struct tree *t, const char *from, const char *to)
{
	struct tree_pending *p;
	char *f = NULL, *d;

	if (t->np == t->pcap) {
		size_t cap = t->pcap ? 2 * t->pcap : 8;
		p = realloc(t->p, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->p = p;
		t->pcap = cap;
	}
	if (from && !(f = strdup(from)))
		return -ENOMEM;
	if (!(d = strdup(to))) {
		free(f);
		return -ENOMEM;
	}
	p = &t->p[t->np++];
	p->from = f;
	p->to = d;
	return 0;
}

int tree_clone(const struct tree *t, struct tree **out)
{
	struct tree *c = NULL;
	int rc = tree_new(&c);

	for (size_t i = 0; !rc && i < t->count; i++) {
		const struct tree_node *n = &t->n[i];
		rc = tree_add_id(c, n->id, 0, n->file, n->created);
		if (!rc) {
			struct tree_node *m = &c->n[c->count - 1];
			m->parent = n->parent;	/* order may differ: no check */
			rc = set_str(&m->digest, n->digest);
			if (!rc)
				rc = set_str(&m->desc, n->desc);
		}
	}
	for (size_t i = 0; !rc && i < t->np; i++)
		rc = tree_add_pending(c, t->p[i].from, t->p[i].to);
	if (rc) {
		tree_free(c);
		return rc;
	}
	c->next = t->next;
	c->current = t->current;
	c->explicit_ = t->explicit_;
	*out = c;
	return 0;
}

/* --- text form --- */

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	sb_put(b, tmp, n < 0 ? 0 : (size_t)n < sizeof(tmp) ? (size_t)n :
	       sizeof(tmp) - 1);
}

/* key=value with the value escaped. */
static void sb_field(struct sbuf *b, const char *key, const char *v)
{
	sb_put(b, "\t", 1);
	sb_put(b, key, strlen(key));
	sb_put(b, "=", 1);
	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		char e[8];
		if (*s == '\\')
			sb_put(b, "\\\\", 2);
		else if (*s == '\t')
			sb_put(b, "\\t", 2);
		else if (*s == '\n')
			sb_put(b, "\\n", 2);
		else if (*s == '\r')
			sb_put(b, "\\r", 2);
		else if (*s < 0x20 || *s == 0x7f) {
			snprintf(e, sizeof(e), "\\x%02x", *s);
			sb_put(b, e, 4);
		} else
			sb_put(b, (const char *)s, 1);
	}
}

void tree_format_time(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&tt, &tm))
		snprintf(buf, cap, "-");
	else
		strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int tree_format(const struct tree *t, char **out, size_t *len)
{
	struct sbuf b = { 0 };
	char *done = calloc(t->count ? t->count : 1, 1);
	size_t ndone = 0;

	if (!done)
		return -ENOMEM;
	static const char head[] =
		"# snapfs snapshot tree (README: \"The store\"). increments.txt "
		"is the line\n# from the current snapshot down to the base; "
		"this file adds branches and\n# metadata. Fields are "
		"TAB-separated key=value.\n";
	sb_put(&b, head, sizeof(head) - 1);
	sb_printf(&b, "snapfs-tree\t1\nnext\t%" PRIu32 "\ncurrent\t%" PRIu32
		  "\n", t->next, t->current);
	/* Parents before children: emit, pass after pass, every node whose
	 * parent is out. Trees are shallow in passes for the usual shapes;
	 * the worst case (a long line stored in reverse) is n passes. */
	while (ndone < t->count) {
		size_t before = ndone;
		for (size_t i = 0; i < t->count; i++) {
			const struct tree_node *n = &t->n[i];
			int ready = !n->parent;
			if (done[i])
				continue;
			for (size_t k = 0; !ready && k < t->count; k++)
				ready = done[k] && t->n[k].id == n->parent;
			if (!ready)
				continue;
			char ts[40], num[24];
			tree_format_time(n->created, ts, sizeof(ts));
			sb_put(&b, "snap", 4);
			snprintf(num, sizeof(num), "%" PRIu32, n->id);
			sb_field(&b, "id", num);
			snprintf(num, sizeof(num), "%" PRIu32, n->parent);
			sb_field(&b, "parent", num);
			sb_field(&b, "created", ts);
			sb_field(&b, "file", n->file);
			if (*n->digest)
				sb_field(&b, "digest", n->digest);
			if (*n->desc)
				sb_field(&b, "desc", n->desc);
			sb_put(&b, "\n", 1);
			done[i] = 1;
			ndone++;
		}
		if (ndone == before) {	/* a parent that is not in the tree */
			free(done);
			free(b.p);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < t->np; i++) {
		if (t->p[i].from) {
			sb_put(&b, "move", 4);
			sb_field(&b, "from", t->p[i].from);
			sb_field(&b, "to", t->p[i].to);
		} else {
			sb_put(&b, "delete", 6);
			sb_field(&b, "file", t->p[i].to);
		}
		sb_put(&b, "\n", 1);
	}
	free(done);
	if (b.err) {
		free(b.p);
		return b.err;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* Unescapes in place. Returns 0 or -EINVAL. */
static int unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (*r != '\\') {
			*w++ = *r;
			continue;
		}
		r++;
		switch (*r) {
		case '\\': *w++ = '\\'; break;
		case 't': *w++ = '\t'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 'x': {
			char hex[3] = { r[1], r[1] ? r[2] : 0, 0 };
			char *end;
			long v = strtol(hex, &end, 16);
			if (end != hex + 2 || v == 0)
				return -EINVAL;
			*w++ = (char)v;
			r += 2;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	*w = 0;
	return 0;
}

static int parse_u32(const char *s, uint32_t *v)
{
	char *end;
	unsigned long long x;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end || x > TREE_MAX_ID)
		return -EINVAL;
	*v = (uint32_t)x;
	return 0;
}

static int parse_time(const char *s, int64_t *t)
{
	struct tm tm;
	const char *end;

	if (!strcmp(s, "-")) {
		*t = 0;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -EINVAL;
	*t = (int64_t)timegm(&tm);
	return 0;
}

/* Splits a line into its TAB-separated fields (in place). */
static size_t split(char *line, char **f, size_t cap)
{
	size_t n = 0;

	for (char *p = line; p && n < cap;) {
		f[n++] = p;
		p = strchr(p, '\t');
		if (p)
			*p++ = 0;
	}
	return n;
}

static const char *field(char **f, size_t n, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 1; i < n; i++)
		if (!strncmp(f[i], key, kl) && f[i][kl] == '=')
			return f[i] + kl + 1;
	return NULL;
}

static int parse_snap(struct tree *t, char **f, size_t n, const char **why)
{
	static const char *const keys[] = {
		"id", "parent", "created", "file", "digest", "desc",
	};
	const char *id = field(f, n, "id"), *parent = field(f, n, "parent");
	const char *file = field(f, n, "file");
	const char *created = field(f, n, "created");
	uint32_t vid, vparent;
	int64_t ct = 0;
	int rc;

	for (size_t i = 1; i < n; i++) {
		int known = 0;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			size_t kl = strlen(keys[k]);
			known |= !strncmp(f[i], keys[k], kl) && f[i][kl] == '=';
		}
		if (!known) {
			*why = "unknown field (written by a newer snapfs?)";
			return -EINVAL;
		}
	}
	if (!id || parse_u32(id, &vid) || !vid) {
		*why = "bad or missing id";
		return -EINVAL;
	}
	if (!parent || parse_u32(parent, &vparent)) {
		*why = "bad or missing parent";
		return -EINVAL;
	}
	if (!file || !*file) {
		*why = "missing file";
		return -EINVAL;
	}
	if (created && parse_time(created, &ct)) {
		*why = "created is not YYYY-MM-DDTHH:MM:SSZ";
		return -EINVAL;
	}
	for (size_t i = 1; i < n; i++)
		if (unescape(strchr(f[i], '=') + 1)) {
			*why = "bad escape";
			return -EINVAL;
		}
	rc = tree_add_id(t, vid, vparent, file, ct);
	if (rc == -ENOENT)
		*why = "its parent is not listed before it";
	else if (rc == -EEXIST)
		*why = "duplicate id or file";
	else if (rc)
		*why = strerror(-rc);
	if (rc)
		return rc == -ENOMEM ? rc : -EINVAL;
	const char *d = field(f, n, "digest"), *s = field(f, n, "desc");
	if (d && (rc = tree_set_digest(t, vid, d)))
		return rc;
	if (s && (rc = tree_set_desc(t, vid, s)))
		return rc;
	return 0;
}

int tree_parse(struct tree **out, const char *buf, size_t len, char *err,
	       size_t errlen)
{
	struct tree *t;
	char *text = malloc(len + 1), *line, *save = NULL;
	int rc = tree_new(&t), lineno = 0, version = 0;
	uint32_t current = 0, next = 0;
	const char *why = NULL;

	if (rc || !text) {
		free(text);
		tree_free(rc ? NULL : t);
		return -ENOMEM;
	}
	memcpy(text, buf, len);
	text[len] = 0;
	if (memchr(buf, 0, len)) {
		why = "contains a NUL byte";
		goto bad;
	}
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[16];
		size_t n;

		lineno++;	/* blank lines are not seen: numbers are of
				 * non-blank lines, good enough to find it */
		if (*line == '#' || !*line)
			continue;
		n = split(line, f, 16);
		if (!strcmp(f[0], "snapfs-tree")) {
			if (n != 2 || strcmp(f[1], "1")) {
				why = "unsupported version (written by a newer "
				      "snapfs?)";
				goto bad;
			}
			version = 1;
		} else if (!version) {
			why = "does not start with 'snapfs-tree<TAB>1'";
			goto bad;
		} else if (!strcmp(f[0], "next")) {
			if (n != 2 || parse_u32(f[1], &next)) {
				why = "bad next";
				goto bad;
			}
		} else if (!strcmp(f[0], "current")) {
			if (n != 2 || parse_u32(f[1], &current)) {
				why = "bad current";
				goto bad;
			}
		} else if (!strcmp(f[0], "snap")) {
			rc = parse_snap(t, f, n, &why);
			if (rc == -ENOMEM)
				goto fail;
			if (rc)
				goto bad;
		} else if (!strcmp(f[0], "move") || !strcmp(f[0], "delete")) {
			const char *from = field(f, n, "from");
			const char *to = field(f, n, f[0][0] == 'm' ? "to" :
					       "file");
			if (!to || (f[0][0] == 'm' && !from) ||
			    unescape((char *)to) ||
			    (from && unescape((char *)from))) {
				why = "bad move or delete";
				goto bad;
			}
			rc = tree_add_pending(t, f[0][0] == 'm' ? from : NULL,
					      to);
			if (rc)
				goto fail;
		} else {
			why = "unknown record";
			goto bad;
		}
	}
	if (!version) {
		why = "empty (no 'snapfs-tree<TAB>1' line)";
		lineno = 0;
		goto bad;
	}
	if (current && !find(t, current)) {
		why = "current names no snapshot";
		goto bad;
	}
	if (next > t->next)
		t->next = next;
	t->current = current;
	t->explicit_ = 1;
	free(text);
	*out = t;
	return 0;
bad:
	msg_say(err, errlen, "line %d: %s", lineno, why);
	rc = -EINVAL;
fail:
	free(text);
	tree_free(t);
	return rc;
}
