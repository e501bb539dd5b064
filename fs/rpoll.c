/* SPDX-License-Identifier: MIT */
/*
 * rpoll: a remote mount that does not write follows the bucket. Every
 * -o poll=SECONDS (default 2) it HEADs the tree and layers files; when
 * an ETag changed, it fetches both, reloads the store's tree and makes
 * the chain follow it (chain_sync), as one change of the mount (under
 * m->change). A tree caught in the middle of the writer's commit (its
 * pending records, or a layers file one step behind) is left for the
 * next poll: the mount keeps showing the last whole tree meanwhile.
 *
 * Not here: what changed means for the bucket (fs/rwrite.c), the chain's
 * swap (fs/chmeta.c). One thread per mount, stopped before unmount.
 */
#include "fs/rpoll.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fs/fuse_ops.h"
#include "fs/remote.h"

struct rpoll {
	struct snapfs_mount *m;
	unsigned secs;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int stop;		/* under lock */
};

/* One look at the bucket: 0 (nothing new, or followed), 1 (caught
 * mid-commit: look again), -errno. */
static int poll_once(struct rpoll *p, int force, char *err, size_t errlen)
{
	struct snapfs_mount *m = p->m;
	int rc = force ? 1 : remote_changed(m->remote);

	if (rc <= 0) {
		if (rc)
			snprintf(err, errlen, "cannot reach the bucket: %s",
				 strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&m->change);
	rc = remote_refresh(m->remote, err, errlen);
	if (!rc)
		rc = store_reload(m->store, err, errlen);
	if (!rc)
		rc = chain_sync(m->chain, err, errlen);
	pthread_mutex_unlock(&m->change);
	if (rc == -EBUSY || rc == -EINVAL)
		return 1;
	if (!rc)
		log_say(m->log, LOG_INFO, "%s: the store changed in the bucket: "
			"%zu snapshots now", store_dir(m->store),
			chain_count(m->chain));
	return rc;
}

static void *poller(void *arg)
{
	struct rpoll *p = arg;
	int again = 0, warned = 0;
	time_t stuck = 0;
	char err[1024];

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += p->secs;
		while (!p->stop &&
		       pthread_cond_timedwait(&p->cv, &p->lock, &t) == 0)
			;
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->lock);
		err[0] = 0;
		int rc = poll_once(p, again, err, sizeof(err));
		again = rc != 0;
		if (rc == 1 && !stuck)
			stuck = time(NULL);
		if (rc == 1 && time(NULL) - stuck > 60 && !warned++)
			log_say(p->m->log, LOG_WARNING, "%s: the bucket's tree "
				"has been mid-change for a minute (%s): its "
				"writer may have died; its next mount with -o "
				"writer finishes the change", store_dir(p->m->store),
				err);
		if (rc == 0)
			stuck = 0, warned = 0;
		if (rc < 0 && !warned++)
			log_say(p->m->log, LOG_WARNING, "%s: %s; showing the "
				"last tree read until it answers",
				store_dir(p->m->store), err);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int rpoll_start(struct rpoll **out, struct snapfs_mount *m, unsigned secs)
{
	struct rpoll *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;

	if (!p)
		return -ENOMEM;
	p->m = m;
	p->secs = secs;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&p->thread, NULL, poller, p) != 0) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cv);
		free(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void rpoll_stop(struct rpoll *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cv);
	free(p);
}
