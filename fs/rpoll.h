/* SPDX-License-Identifier: MIT */
/*
 * rpoll: the thread by which a remote mount that does not write sees
 * the writer's new snapshots, renames and removals within seconds (see
 * fs/rpoll.c). Not here: the bucket (fs/remote.h).
 */
#ifndef SNAPFS_FS_RPOLL_H
#define SNAPFS_FS_RPOLL_H

struct rpoll;
struct snapfs_mount;

/* Starts polling every secs seconds (m must outlive it). 0 or -errno. */
int rpoll_start(struct rpoll **out, struct snapfs_mount *m, unsigned secs);
/* Stops and frees (NULL is fine). */
void rpoll_stop(struct rpoll *p);

#endif
