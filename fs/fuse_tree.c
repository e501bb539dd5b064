/* SPDX-License-Identifier: MIT */
/*
 * fuse_tree: the mount's directory and the snapshot tree's operations:
 * listing, `current` and the temporary links `ln -sfn` makes, rm (a
 * snapshot removed, its children rebased), mv (renamed). Each change is
 * serialised with the others by m->change and done by the chain
 * (chain_remove, chain_rename, chain_set_current); this file only
 * translates. Not here: reading and writing snapshots (fs/fuse_ops.c).
 */
#include "fs/fuse_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/names.h"

void fuse_tree_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	char name[256];

	if (ino == CURRENT_INO) {
		fuse_ops_settle(m);
		fuse_current_name(m, name, sizeof(name));
		fuse_reply_readlink(req, name);
		return;
	}
	pthread_mutex_lock(&m->lock);
	struct snapfs_link *l = fuse_link_find(m, NULL, ino);
	if (l)
		snprintf(name, sizeof(name), "%s", l->target);
	pthread_mutex_unlock(&m->lock);
	if (l)
		fuse_reply_readlink(req, name);
	else
		fuse_reply_err(req, EINVAL);
}

/* A directory listing, taken at opendir so offsets stay meaningful
 * while snapshots come and go. */
struct dirlist {
	size_t n;
	struct {
		fuse_ino_t ino;
		mode_t type;
		char name[256];
	} e[];
};

void fuse_tree_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	struct dirlist *d;
	uint32_t *ids;
	size_t n, cap;

	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* `cat x > M/a; ls M` lists a: its RELEASE may still be coming. */
	fuse_ops_settle(m);
	n = chain_count(m->chain) + 8;
	ids = malloc(n * sizeof(*ids));
	cap = n + 4 + SNAPFS_MAX_LINKS;
	d = calloc(1, sizeof(*d) + cap * sizeof(d->e[0]));
	if (!ids || !d) {
		free(ids);
		free(d);
		fuse_reply_err(req, ENOMEM);
		return;
	}
#define ADD(i_, t_, nm_) do { \
	if (d->n < cap) { \
		d->e[d->n].ino = (i_); \
		d->e[d->n].type = (t_); \
		snprintf(d->e[d->n].name, sizeof(d->e[0].name), "%s", (nm_)); \
		d->n++; \
	} \
} while (0)
	ADD(ROOT_INO, S_IFDIR, ".");
	ADD(ROOT_INO, S_IFDIR, "..");
	if (chain_current(m->chain))	/* an empty store has none */
		ADD(CURRENT_INO, S_IFLNK, CURRENT_NAME);
	size_t k = chain_ids(m->chain, ids, n);
	for (size_t i = 0; i < k && i < n; i++) {
		struct chain_info inf;
		if (chain_info(m->chain, ids[i], &inf) == 0)
			ADD(INO_OF(ids[i]), S_IFREG, inf.name);
	}
	pthread_mutex_lock(&m->lock);
	if (m->w)
		ADD(m->w_ino, S_IFREG, writer_name(m->w));
	for (unsigned j = 0; j < SNAPFS_MAX_LINKS; j++)
		if (m->links[j].used)
			ADD(LINK_INO(j), S_IFLNK, m->links[j].name);
	pthread_mutex_unlock(&m->lock);
#undef ADD
	free(ids);
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		free(d);
}

void fuse_tree_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct dirlist *d = (struct dirlist *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	size_t used = 0;
	struct stat st;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t k = (size_t)off; k < d->n; k++) {
		memset(&st, 0, sizeof(st));
		st.st_ino = d->e[k].ino;
		st.st_mode = d->e[k].type;
		size_t need = fuse_add_direntry(req, buf + used, size - used,
						d->e[k].name, &st,
						(off_t)(k + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void fuse_tree_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	(void)ino;
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* rm NAME: the snapshot goes, its children are rebased (fs/rebase.c). */
void fuse_tree_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	char err[1024] = "";
	uint32_t id;
	int rc;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!strcmp(name, CURRENT_NAME)) {
		/* There is always a current snapshot: move it with ln -sfn. */
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_mutex_lock(&m->change);
	pthread_mutex_lock(&m->lock);
	struct snapfs_link *l = fuse_link_find(m, name, 0);
	if (l)
		l->used = 0;
	id = chain_lookup(m->chain, name);
	/* Not the file being written, nor what it is diffed against. */
	int writing = m->w && (!strcmp(writer_name(m->w), name) ||
			       (id && writer_parent_id(m->w) == id));
	pthread_mutex_unlock(&m->lock);
	if (l || writing) {
		pthread_mutex_unlock(&m->change);
		fuse_reply_err(req, l ? 0 : EBUSY);
		return;
	}
	rc = !id ? -ENOENT : store_remove_room(m->store, id);	/* max_store */
	if (!rc)
		rc = chain_remove(m->chain, id, NULL, 0, NULL, err,
				  sizeof(err));
	pthread_mutex_unlock(&m->change);
	if (rc && err[0])
		fuse_log_msg(m, err);
	fuse_reply_err(req, -rc);
}

/* ln -s TARGET NAME: only temporary links (ln -sfn makes one and renames
 * it over current); "current" itself exists already. */
void fuse_tree_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
		       const char *name)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	struct stat st;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!strcmp(name, CURRENT_NAME) || chain_lookup(m->chain, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	if (strlen(name) >= sizeof(m->links[0].name) ||
	    strlen(target) >= sizeof(m->links[0].target)) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&m->lock);
	struct snapfs_link *l = fuse_link_find(m, name, 0);
	for (unsigned k = 0; !l && k < SNAPFS_MAX_LINKS; k++)
		if (!m->links[k].used)
			l = &m->links[k];
	if (!l || l->used) {
		pthread_mutex_unlock(&m->lock);
		fuse_reply_err(req, l ? EEXIST : ENOSPC);
		return;
	}
	l->used = 1;
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->target, sizeof(l->target), "%s", target);
	fuse_link_stat(m, LINK_INO(l - m->links), target, &st);
	pthread_mutex_unlock(&m->lock);
	fuse_entry_reply(req, &st, 0);
}

/* mv A B renames a snapshot; mv LINK current moves current (ln -sfn). */
void fuse_tree_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct snapfs_mount *m = fuse_req_userdata(req);
	char err[1024] = "", target[256] = "";
	uint32_t id;
	int rc;

	if (parent != ROOT_INO || newparent != ROOT_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (flags & RENAME_EXCHANGE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&m->change);
	pthread_mutex_lock(&m->lock);
	struct snapfs_link *l = fuse_link_find(m, name, 0);
	if (l)
		snprintf(target, sizeof(target), "%s", l->target);
	int writing = m->w && (!strcmp(writer_name(m->w), name) ||
			       !strcmp(writer_name(m->w), newname));
	pthread_mutex_unlock(&m->lock);
	if (l) {
		/* Only onto current, and only naming a snapshot. */
		id = chain_lookup(m->chain, target);
		rc = strcmp(newname, CURRENT_NAME) ? -EPERM : !id ? -ENOENT :
		     chain_set_current(m->chain, id, err, sizeof(err));
		if (!rc) {
			pthread_mutex_lock(&m->lock);
			l->used = 0;
			pthread_mutex_unlock(&m->lock);
		}
	} else if (!strcmp(name, CURRENT_NAME)) {
		rc = -EPERM;
	} else if (writing) {
		rc = -EBUSY;
	} else if (!(id = chain_lookup(m->chain, name))) {
		rc = -ENOENT;
	} else if (!strcmp(name, newname)) {
		rc = 0;
	} else if (!strcmp(newname, CURRENT_NAME) ||
		   chain_lookup(m->chain, newname)) {
		rc = -EEXIST;	/* never replace a snapshot */
	} else if ((rc = names_check(newname, err, sizeof(err)))) {
		;	/* -EINVAL or -ENAMETOOLONG, with the rule in err */
	} else {
		rc = chain_rename(m->chain, id, newname, err, sizeof(err));
	}
	pthread_mutex_unlock(&m->change);
	if (rc && err[0])
		fuse_log_msg(m, err);
	fuse_reply_err(req, -rc);
}

void fuse_tree_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	(void)parent;
	(void)name;
	(void)mode;
	fuse_reply_err(req, EPERM);	/* the mount is flat */
}

void fuse_tree_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

void fuse_tree_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, EPERM);
}

