/* SPDX-License-Identifier: MIT */
/*
 * dlru: optional derived copies kept within a byte bound, those used least
 * recently deleted first. Two kinds live under one: full copies of
 * snapshots (-o materialize, .snapfs/full) and the decoded lzma sections
 * of windowed patches (-o max_decoded, the .sect files of .snapfs/plain).
 * "Used" is the file's mtime, set when a mount attaches or rereads the
 * copy; a copy's block checksums (.snapfs/sums/NAME.sum) go with it.
 *
 * Not here: what a copy holds, making or attaching one (fs/fcopy.c,
 * fs/vcopy.c). Not thread-safe for one subdirectory: each kind calls it
 * from one thread at a time (fcopy's worker; layer open, which the chain
 * serialises).
 */
#include "fs/chain_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct entry {
	char name[256];
	uint64_t bytes;
	struct timespec used;
};

static int ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec != b->tv_sec ? a->tv_sec < b->tv_sec :
	       a->tv_nsec < b->tv_nsec;
}

static int by_use(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	return ts_before(&x->used, &y->used) ? -1 :
	       ts_before(&y->used, &x->used);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

void dlru_drop(struct chain *c, const char *sub, const char *name)
{
	char sums[300];

	unlinkat(store_subdir(c->s, sub), name, 0);
	snprintf(sums, sizeof(sums), "%s.sum", name);
	unlinkat(store_subdir(c->s, "sums"), sums, 0);
}

int dlru_room(struct chain *c, const struct dlru_kind *k, uint64_t need,
	      const struct timespec *spare)
{
	int dfd = dup(store_subdir(c->s, k->sub));
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct entry *e = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0, kept = 0;
	struct dirent *de;
	int rc = 0;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return need > k->max ? -ENOSPC : -EIO;
	}
	/* The dup shares its offset with the store's own fd. */
	rewinddir(d);
	while (!rc && (de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.' ||
		    (k->suffix && !ends_with(de->d_name, k->suffix)))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISREG(st.st_mode) ||
		    strlen(de->d_name) >= sizeof(e->name)) {
			unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		uint64_t bytes = (uint64_t)st.st_blocks * 512;
		total += bytes;
		if (spare && !ts_before(&st.st_mtim, spare)) {
			kept += bytes;
			continue;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct entry *ne = realloc(e, nc * sizeof(*e));
			if (!ne) {
				rc = -ENOMEM;
				break;
			}
			e = ne;
			cap = nc;
		}
		snprintf(e[n].name, sizeof(e[n].name), "%s", de->d_name);
		e[n].bytes = bytes;
		e[n].used = st.st_mtim;
		n++;
	}
	/* Nothing is deleted for a copy that would not fit anyway. */
	if (!rc && kept + need > k->max)
		rc = -ENOSPC;
	if (!rc) {
		if (n)
			qsort(e, n, sizeof(*e), by_use);
		for (size_t i = 0; i < n && total + need > k->max; i++) {
			dlru_drop(c, k->sub, e[i].name);
			total -= e[i].bytes;
			chain_logf(c, CHAIN_LOG_INFO, "%s: deleted %s/%s/%s "
				   "(used least recently) to make room",
				   k->option, STORE_META_DIR, k->sub,
				   e[i].name);
		}
	}
	free(e);
	closedir(d);
	return rc;
}
