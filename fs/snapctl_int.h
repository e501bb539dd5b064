/* SPDX-License-Identifier: MIT */
/*
 * snapctl_int: what snapctl's three files share: the exit codes, the
 * struct ctl of main(), the messages and the commands each file gives the
 * others. fs/snapctl.c is the command line (main, options, dispatch,
 * usage) and opening the store; fs/snapctl_cmd.c the commands over the
 * tree (ls, tree, stats, rm, mv, describe, check, prune, compact, init);
 * fs/snapctl_io.c those that move snapshot bytes in or out (cat, add,
 * import, export); fs/snapctl_mnt.c the changes made through the store's
 * mount while it is mounted. Nothing else includes it; it is not part of
 * libsnapfs.a.
 */
#ifndef SNAPFS_FS_SNAPCTL_INT_H
#define SNAPFS_FS_SNAPCTL_INT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zstd.h>

struct chain;
struct store;

/* Exit codes (documented in snapctl.1 and the README). */
enum {
	EX_OK = 0,
	EX_DAMAGE = 1,	/* check found damage, or a read hit it */
	EX_USAGE = 2,
	EX_BUSY = 3,	/* store locked and no mount to route through */
	EX_OTHER = 4,
};

#define IO_CHUNK ((size_t)1 << 20)

struct ctl {
	const char *store_dir;
	uint64_t max_store;	/* --max-store: capacity bound, 0 none */
	struct store *s;
	struct chain *c;
	unsigned long errors;	/* ERR messages the chain logged */
	int quiet_log;		/* check prints them itself */
	/* Where the store is mounted, if it is and the mount answered the
	 * lock file's token (mnt_find): the changes go through it, relative
	 * to mntfd, its root opened and checked once. "" no. */
	char mnt[PATH_MAX];
	int mntfd;
};

/* fs/snapctl.c */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int lookup(struct ctl *x, const char *name, uint32_t *id);

/* fs/snapctl_cmd.c */
int cmd_ls(struct ctl *x, int machine);
int cmd_tree(struct ctl *x);
int cmd_stats(struct ctl *x);
int cmd_rm(struct ctl *x, const char *name);
int cmd_mv(struct ctl *x, const char *from, const char *to);
int cmd_describe(struct ctl *x, const char *name, const char *text);
int cmd_check(struct ctl *x, int deep);
int cmd_prune(struct ctl *x, long keep, int64_t age, int dry);
int cmd_compact(struct ctl *x, char **names, size_t n, int dry);
int cmd_init(const char *dir);

/* fs/snapctl_io.c */
/* A file to add, raw or zstd ("-": stdin, taken as raw): opened by
 * src_open (src_close frees, also after a failed open), read decoded. */
struct src {
	int fd;
	ZSTD_DStream *z;	/* NULL: raw */
	uint8_t *in;
	ZSTD_inBuffer ib;
	int eof;
	int need;	/* the frame being decoded has not ended */
};
int src_open(struct src *r, const char *path);
/* Up to cap decoded bytes into buf; 0 at the end, -EINVAL bad zstd. */
ssize_t src_read(struct src *r, uint8_t *buf, size_t cap);
void src_close(struct src *r);
int cmd_cat(struct ctl *x, const char *name);
int cmd_add(struct ctl *x, const char *name, const char *path,
	    const char *parent);
int read_layers(const char *file, char ***paths, size_t *n);
int cmd_import(struct ctl *x, char **files, size_t n);
int cmd_export(struct ctl *x, char **names, size_t n,
	       const char *dir, int sparse, int plain);

/* fs/snapctl_mnt.c: the same changes, through the store's mount. */
int mnt_find(struct ctl *x);	/* 1: mounted, x->mnt set; 0: not */
void mnt_close(struct ctl *x);
int mnt_rm(struct ctl *x, const char *name);
int mnt_mv(struct ctl *x, const char *from, const char *to);
int mnt_describe(struct ctl *x, const char *name, const char *text);
int mnt_add(struct ctl *x, const char *name, const char *path,
	    const char *parent);

#endif
