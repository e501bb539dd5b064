/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the layers file (increments.txt) as store_open parses
 * it: comments, blank lines, CR/LF, paths that leave the store, duplicate
 * shown names, missing files. A few real layer files exist so that valid
 * lines get as far as opening them. Must never crash or leak.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void setup(void)
{
	static const char *files[] = { "a.zst", "b.patch", "c.patch", "d" };
	char p[128];

	snprintf(dir, sizeof(dir), "/tmp/fuzz_layers.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		int fd = open(p, O_WRONLY | O_CREAT, 0644);
		if (fd >= 0)
			close(fd);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char p[128], err[1024];
	struct store *s;

	if (!dir[0])
		setup();
	snprintf(p, sizeof(p), "%s/increments.txt", dir);
	FILE *f = fopen(p, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (store_open(&s, dir, err, sizeof(err)) == 0) {
		const struct tree *t = store_tree(s);
		char name[256];
		for (size_t i = 0; i < tree_count(t); i++)
			if (store_name_of(tree_at(t, i)->file, name,
					  sizeof(name)) || !name[0])
				abort();
		store_free(s);
	}
	return 0;
}
