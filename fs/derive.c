/* SPDX-License-Identifier: MIT */
/*
 * derive: opening a layer's stored files, and the derived files that make
 * them readable: a single-frame zstd base is transcoded once into seekable
 * zstd (or decompressed, with -o raw_base), a secondary-compressed patch is
 * converted once into plain VCDIFF (djw/fgk through stock xdelta3) unless
 * its windows decode alone (windowed lzma, read as it is: fs/sfile.c; its
 * data sections decoded once into a raw .sect copy, fs/vcopy.c), and a
 * saved index is loaded with its aux file. Derived files are made in
 * .snapfs/tmp and renamed into place, and are named after the layer's
 * stamp, so a replaced layer file simply misses them. They are always
 * local, but a copy that stands for a stored file is read as one, through
 * a blob (blob_from_fd): one read path, whatever the store.
 *
 * Not here: building a missing index (fs/ibuild.c), reading (fs/sfile.c),
 * the layer's life cycle and publication (fs/chain.c). Runs at mount and
 * append time only, one layer at a time, on the caller's thread (readers
 * never see a layer before it is open).
 */
#include "fs/chain_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/blob.h"
#include "codec/fdio.h"
#include "codec/vcdiff_dec.h"
#include "codec/zframe.h"
#include "fs/msg.h"
#include "fs/safefile.h"
#include "fs/xindex.h"

struct prog_ctx {
	struct chain *c;
	const char *layer, *what;
};

static void prog_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct prog_ctx *p = ctx;
	chain_progress(p->c, p->layer, p->what, done, total);
}

/* Declared in fs/chain_int.h. */
int derive_made(struct chain *c, const char *sub, const char *name,
			int (*make)(struct blob *in, int out_fd, void *arg,
				    const char **why),
			struct blob *in, void *arg, const char **why,
			struct blob **out)
{
	int dfd = store_subdir(c->s, sub), tfd = store_subdir(c->s, "tmp");
	char tmp[400], label[400];
	int rc, fd;

	snprintf(label, sizeof(label), "%s/%s/%s", STORE_META_DIR, sub, name);
	/* Here, or (a store in a bucket) made by another host: read lazily
	 * from the bucket like the stored file it stands for. */
	if (store_derived_blob(c->s, sub, name, label, out) == 0)
		return 0;
	/* Missing, or a symlink/FIFO planted there: made afresh. */
	snprintf(tmp, sizeof(tmp), "%s.%s", sub, name);
	fd = safefile_create(tfd, tmp, 0644, NULL);
	if (fd < 0)
		return fd;
	rc = make(in, fd, arg, why);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (!rc && renameat(tfd, tmp, dfd, name) < 0)
		rc = -errno;
	if (rc) {
		close(fd);
		unlinkat(tfd, tmp, 0);
		return rc;
	}
	store_derived_saved(c->s, sub, name);
	return blob_from_fd(out, fd, label);
}

/* Said once, when a stock form's copy is made: how to do without it. */
static void hint_compact(const struct prog_ctx *p, const char *form)
{
	chain_logf(p->c, CHAIN_LOG_INFO, "%s: stored as %s, read through a "
		   "copy under %s/: `snapctl compact` stores it in a form read "
		   "as it is (stock tools still decode it) and drops the copy",
		   p->layer, form, STORE_META_DIR);
}

static int make_seekable(struct blob *in, int out_fd, void *arg,
			 const char **why)
{
	struct zframe_writer_opts o = { 0 };
	int rc = zframe_transcode(in, out_fd, &o, prog_cb, arg, why);

	if (!rc)
		hint_compact(arg, "single-frame zstd");
	return rc;
}

static int make_raw(struct blob *in, int out_fd, void *arg, const char **why)
{
	struct zframe_writer_opts o = { .raw = 1 };
	return zframe_transcode(in, out_fd, &o, prog_cb, arg, why);
}

static int make_plain(struct blob *in, int out_fd, void *arg,
		      const char **why)
{
	int rc = vcdiff_recode_plain(in, out_fd, prog_cb, arg, why);

	if (!rc)
		hint_compact(arg, "one lzma stream across its windows");
	return rc;
}

/*
 * A local fd on in's bytes, for a program that reads a file: a dup of
 * the blob's own fd, or for a blob without one (a remote store's) a copy
 * in an unlinked temporary under .snapfs/tmp. The caller closes it.
 * Returns the fd or -errno.
 */
static int local_fd(struct chain *c, struct blob *in)
{
	int tfd = store_subdir(c->s, "tmp"), fd = blob_fd(in), rc = 0;
	char name[64];
	uint8_t *buf;

	if (fd >= 0)
		return (fd = dup(fd)) < 0 ? -errno : fd;
	snprintf(name, sizeof(name), "copy.%ld", (long)getpid());
	unlinkat(tfd, name, 0);
	fd = safefile_create(tfd, name, 0600, NULL);
	if (fd < 0)
		return fd;
	unlinkat(tfd, name, 0);
	buf = malloc(1u << 20);
	if (!buf)
		rc = -ENOMEM;
	for (uint64_t off = 0; !rc && off < blob_size(in);) {
		ssize_t r = blob_pread(in, buf, 1u << 20, off);
		if (r <= 0)
			rc = r < 0 ? (int)r : -EIO;
		else
			rc = fdio_write(fd, buf, (size_t)r);
		off += r > 0 ? (uint64_t)r : 0;
	}
	free(buf);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

/* djw/fgk: liblzma cannot help; stock xdelta3 converts them. */
static int make_plain_xdelta3(struct blob *in, int out_fd, void *arg,
			      const char **why)
{
	struct prog_ctx *pc = arg;
	int status, rc = 0, in_fd = local_fd(pc->c, in);
	pid_t pid;

	if (in_fd < 0)
		return in_fd;
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(in_fd);
		return rc;
	}
	if (pid == 0) {
		/* stdin/stdout are the only fds the converter needs. */
		if (lseek(in_fd, 0, SEEK_SET) < 0 || dup2(in_fd, 0) < 0 ||
		    dup2(out_fd, 1) < 0)
			_exit(126);
		execlp("xdelta3", "xdelta3", "recode", "-q", "-f", "-S", "none",
		       "-c", (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rc = -errno;
			break;
		}
	}
	close(in_fd);
	if (rc)
		return rc;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		hint_compact(pc, "djw/fgk secondary compression");
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		*why = "djw/fgk secondary compression needs stock xdelta3 for a "
		       "one-time conversion: apt-get install xdelta3";
	else
		*why = "stock xdelta3 could not convert it (djw/fgk "
		       "secondary compression): the patch is damaged";
	return -ENOTSUP;
}

int derive_open_base(struct chain *c, struct chain_layer *L, char *err,
		     size_t errlen)
{
	uint8_t magic[4] = { 0 };
	const char *why = "";
	unsigned fid = 2 * L->id;
	struct blob *b = NULL;
	ssize_t r;
	int rc;

	L->fstamp = layer_file_stamp(L);
	L->stamp = layer_chain_stamp(L);
	char zname[300], zlabel[400];
	layer_derived_name(zname, sizeof(zname), L, L->fstamp, "zst");
	snprintf(zlabel, sizeof(zlabel), "%s/base/%s", STORE_META_DIR, zname);
	/*
	 * A seekable copy exists only because the stored base was not
	 * seekable: open it first, without walking the stored file's
	 * blocks (which, in a bucket, would fetch all of it).
	 */
	if (!c->o.raw_base &&
	    store_derived_blob(c->s, "base", zname, zlabel, &b) == 0) {
		rc = zframe_open(&L->data.z, b, &why);
		if (!rc) {
			sfile_raw(c, L, &L->data, b, 0, L->path);
			L->data.kind = SF_ZSTD;
			L->data.derived = 1;
			L->form = CHAIN_FORM_ZSTD1;
			snprintf(L->data.label, sizeof(L->data.label),
				 "%s/base/%.200s", STORE_META_DIR, zname);
			goto opened;
		}
		blob_put(b);	/* damaged: made again below */
		b = NULL;
	}
	if ((r = blob_pread(L->blob, magic, 4, 0)) < 0) {
		msg_say(err, errlen, "%s/%s: %s", store_dir(c->s), L->path,
		    strerror((int)-r));
		return -EIO;
	}
	if (!memcmp(magic, "\xd6\xc3\xc4", 3)) {
		msg_say(err, errlen, "%s/%s: the base (last line of %s) is a "
		    "VCDIFF patch, not a state file: fix the order of %s "
		    "(newest first, base last)", store_dir(c->s), L->path,
		    STORE_LAYERS_FILE, STORE_LAYERS_FILE);
		return -EINVAL;
	}
	uint32_t m = (uint32_t)magic[0] | (uint32_t)magic[1] << 8 |
		     (uint32_t)magic[2] << 16 | (uint32_t)magic[3] << 24;
	if (m != 0xFD2FB528u && (m & 0xFFFFFFF0u) != 0x184D2A50u) {
		L->form = CHAIN_FORM_RAW;
		sfile_raw(c, L, &L->data, blob_ref(L->blob),
			  (uint64_t)L->st.st_size, L->path);
		rc = sfile_sums_get(c, L, &L->data, L->fstamp, "data.sum");
		if (rc) {
			layer_damage(L, "%s: cannot read: %s", L->path,
				     strerror(-rc));
			return 0;
		}
		L->size = L->data.size;
		return xindex_new_file(&L->x, fid, L->size);
	}
	if (c->o.raw_base) {
		/* A full decompressed copy: disk for speed (-o raw_base). Its
		 * form is left unprobed (NATIVE): snapctl, the only one that
		 * asks (chain_compact), never mounts with raw_base. */
		char name[300];
		struct prog_ctx pc = { c, L->name, "decompressing the base "
				       "(raw_base; first mount only)" };
		layer_derived_name(name, sizeof(name), L, L->fstamp, "raw");
		rc = derive_made(c, "base", name, make_raw, L->blob, &pc,
				  &why, &b);
		if (rc) {
			layer_damage(L, "%s: cannot decompress: %s", L->path,
				     rc == -EBADMSG ? why : strerror(-rc));
			return 0;
		}
		sfile_raw(c, L, &L->data, b, blob_size(b), L->path);
		L->data.derived = 1;
		snprintf(L->data.label, sizeof(L->data.label), "%.100s "
			 "(decompressed copy %s/base/%.200s)", L->path,
			 STORE_META_DIR, name);
		rc = sfile_sums_get(c, L, &L->data, L->fstamp, "raw.sum");
		if (rc) {
			layer_damage(L, "%s: cannot read: %s", L->data.label,
				     strerror(-rc));
			return 0;
		}
		L->size = L->data.size;
		return xindex_new_file(&L->x, fid, L->size);
	}
	sfile_raw(c, L, &L->data, blob_ref(L->blob), 0, L->path);
	L->data.kind = SF_ZSTD;
	rc = zframe_open(&L->data.z, L->data.b, &why);
	if (rc == -E2BIG) {
		char name[300];
		struct prog_ctx pc = { c, L->name, "converting base to "
				       "seekable zstd (first mount only)" };
		layer_derived_name(name, sizeof(name), L, L->fstamp, "zst");
		rc = derive_made(c, "base", name, make_seekable, L->blob,
				  &pc, &why, &b);
		if (rc) {
			layer_damage(L, "%s: cannot convert to seekable "
				     "zstd: %s", L->path,
				     rc == -EBADMSG ? why : strerror(-rc));
			return 0;
		}
		blob_put(L->data.b);
		L->data.b = b;
		L->data.derived = 1;
		L->form = CHAIN_FORM_ZSTD1;
		snprintf(L->data.label, sizeof(L->data.label), "%s/base/%s",
			 STORE_META_DIR, name);
		rc = zframe_open(&L->data.z, b, &why);
	}
	if (rc) {
		layer_damage(L, "%s: damaged zstd base: %s", L->data.label,
			     why);
		return 0;
	}
opened:
	L->data.size = zframe_size(L->data.z);
	L->size = L->data.size;
	return xindex_new_file(&L->x, fid, L->size);
}

int derive_aux_zstd(struct chain *c, struct chain_layer *L, struct blob *b,
		    const char *label)
{
	const char *why = NULL;
	struct zframe *z = NULL;
	int rc = zframe_open(&z, b, &why);

	if (rc) {
		chain_logf(c, CHAIN_LOG_WARN, "%s: %s", label,
			   why ? why : strerror(-rc));
		blob_put(b);
		return rc;
	}
	sfile_raw(c, L, &L->aux, b, 0, label);
	L->aux.kind = SF_ZSTD;
	L->aux.z = z;
	L->aux.size = zframe_size(z);
	L->aux.derived = 1;
	return 0;
}

int derive_aux_reopen(struct chain *c, struct chain_layer *L)
{
	char name[300], label[sizeof(L->aux.label)];
	struct blob *b = NULL;
	int rc;

	/* Derived, read as stored files are: the local file, or in a
	 * bucket store another host's, read lazily (a restore reads most
	 * of it, a mount none). Raw, as mounts make them by default, or
	 * compressed (.auxz) where a mount bounds derived data
	 * (ibuild_aux_store): looked for second, so a default mount of a
	 * bucket store asks for nothing more than before. */
	layer_derived_name(name, sizeof(name), L, L->aux_stamp, "aux");
	snprintf(label, sizeof(label), "%s/aux/%.300s", STORE_META_DIR, name);
	rc = store_derived_blob(c->s, "aux", name, label, &b);
	if (rc == -ENOENT) {
		layer_derived_name(name, sizeof(name), L, L->aux_stamp, "auxz");
		snprintf(label, sizeof(label), "%s/aux/%.300s", STORE_META_DIR,
			 name);
		rc = store_derived_blob(c->s, "aux", name, label, &b);
		if (rc == 0)
			return derive_aux_zstd(c, L, b, label);
	}
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	/* Derived data bounded: a raw one is compressed once, here. */
	if (c->o.decoded_bounded && blob_fd(b) >= 0 &&
	    !store_readonly(c->s) && !store_is_remote(c->s) &&
	    ibuild_aux_store(c, L, blob_fd(b)) == 0) {
		blob_put(b);
		unlinkat(store_subdir(c->s, "aux"), name, 0);
		layer_derived_name(name, sizeof(name), L, L->aux_stamp,
				   "aux.sum");
		unlinkat(store_subdir(c->s, "sums"), name, 0);
		return 0;
	}
	sfile_raw(c, L, &L->aux, b, blob_size(b), name);
	L->aux.derived = 1;
	snprintf(L->aux.label, sizeof(L->aux.label), "%s", label);
	return sfile_sums_get(c, L, &L->aux, L->aux_stamp, "aux.sum");
}

struct index_out {
	const struct xindex *x;
	uint64_t stamp;
};

static int fill_index(int fd, void *arg)
{
	struct index_out *o = arg;
	return xindex_write(o->x, fd, o->stamp);
}

int derive_save_xindex(struct chain *c, const struct chain_layer *L,
		       const struct xindex *x)
{
	char name[300];
	struct index_out o = { x, L->stamp };

	layer_derived_name(name, sizeof(name), L, L->stamp, "idx");
	/* Logged inside; the index is rebuilt at the next mount. */
	return chain_save_derived(c, "index", name, fill_index, &o);
}

/* The file ids L's index may name: its ancestors' (layer_fid_file), as
 * a bitmap. A depth-100 index has millions of extents, and a binary
 * search over 100 layer pointers for each was 65% of such a mount's time
 * (perf record of the mount, 0.85-0.9 s). */
struct fid_set {
	const struct chain_layer *L;
	uint64_t *bits;		/* NULL: ask L (ids too large for a map) */
	uint64_t max;		/* fids above are not L's */
};

static int fid_set_init(struct fid_set *fs, const struct chain_layer *L)
{
	fs->L = L;
	fs->bits = NULL;
	fs->max = 0;
	for (size_t i = 0; i < L->nanc; i++)
		if (2 * (uint64_t)L->anc[i]->id + 1 > fs->max)
			fs->max = 2 * (uint64_t)L->anc[i]->id + 1;
	if (fs->max > ((uint64_t)1 << 24))
		return 0;
	fs->bits = calloc((size_t)(fs->max / 64 + 1), sizeof(uint64_t));
	if (!fs->bits)
		return -ENOMEM;
	for (size_t i = 0; i < L->nanc; i++) {
		uint64_t f = 2 * (uint64_t)L->anc[i]->id;
		fs->bits[f / 64] |= (uint64_t)3 << (f % 64);	/* f, f + 1 */
	}
	return 0;
}

static int fid_ok(unsigned fid, void *arg)
{
	const struct fid_set *fs = arg;

	if (!fs->bits)
		return layer_fid_file(fs->L, fid) != NULL;
	return fid <= fs->max && (fs->bits[fid / 64] >> (fid % 64) & 1);
}

/*
 * xdelta3's application header is "tgt/tgtcomp[/src/srccomp]"; a non-empty
 * comp field means xdelta3 ran that file through an external compressor
 * (gzip, xz, ...) and the patch is against the decompressed bytes.
 */
static int external_compression(const struct vcdiff_patch *p)
{
	size_t len, field = 0;
	const uint8_t *h = vcdiff_patch_appheader(p, &len);

	for (size_t i = 0; h && i < len; i++) {
		if (h[i] == '/')
			field++;
		else if (field == 1 || field == 3)
			return 1;
	}
	return 0;
}

uint64_t derive_fstamp(const struct chain_layer *L, int native)
{
	uint64_t v[2] = { layer_file_stamp(L), 0x57494e444f574544ull };

	return native ? XXH3_64bits(v, sizeof(v)) : v[0];
}

int derive_open_patch(struct chain *c, struct chain_layer *L, char *err,
		      size_t errlen)
{
	struct chain_layer *P = L->parent;
	const char *why = "";
	char name[300];
	struct blob *b = NULL;
	int rc;

	L->fstamp = layer_file_stamp(L);
	L->stamp = layer_chain_stamp(L);
	/*
	 * A plain copy exists only because the stored patch needed one:
	 * open it first, without walking the stored patch's windows (in a
	 * bucket, that would fetch all of it for nothing).
	 */
	int have_plain = 0;
	layer_derived_name(name, sizeof(name), L, L->fstamp, "vcdiff");
	if (store_derived_blob(c->s, "plain", name, name, &b) == 0) {
		if (vcdiff_patch_open(&L->patch, b, &why) == 0 &&
		    vcdiff_patch_secondary(L->patch) == VCDIFF_SEC_NONE) {
			have_plain = 1;
			L->form = CHAIN_FORM_STREAM;
			L->size = vcdiff_patch_target_size(L->patch);
			sfile_raw(c, L, &L->data, b, blob_size(b), name);
			L->data.derived = 1;
			snprintf(L->data.label, sizeof(L->data.label), "%.100s "
				 "(converted copy %s/plain/%.200s)", L->path,
				 STORE_META_DIR, name);
			b = NULL;
		} else {
			vcdiff_patch_free(L->patch);
			L->patch = NULL;
			blob_put(b);	/* damaged: made again below */
			b = NULL;
		}
	}
	rc = have_plain ? 0 : vcdiff_patch_open(&L->patch, L->blob, &why);
	if (rc == -EMEDIUMTYPE) {
		msg_say(err, errlen, "%s/%s: not a VCDIFF patch (no VCDIFF magic); "
		    "every layer but the last line of %s must be a patch made "
		    "by xdelta3 -e: restore it or remove its line",
		    store_dir(c->s), L->path, STORE_LAYERS_FILE);
		return -EINVAL;
	}
	if (rc) {
		layer_damage(L, "%s: damaged patch: %s", L->path,
			     rc == -EBADMSG ? why : strerror(-rc));
		return 0;
	}
	if (!have_plain) {
		L->size = vcdiff_patch_target_size(L->patch);
		sfile_raw(c, L, &L->data, blob_ref(L->blob),
			  (uint64_t)L->st.st_size, L->path);
	}
	if (external_compression(L->patch)) {
		layer_damage(L, "%s: made by xdelta3 from externally "
			     "compressed files (its application header names "
			     "a compressor): its COPYs refer to decompressed "
			     "bytes snapfs does not have; re-encode it from "
			     "the uncompressed states", L->path);
		return 0;
	}
	if (P->damage[0]) {
		layer_damage(L, "built on %s, which is damaged", P->name);
		return 0;
	}
	int sec = vcdiff_patch_secondary(L->patch);
	int native = sec != VCDIFF_SEC_NONE && vcdiff_patch_windowed(L->patch);
	if (!have_plain)
		L->form = native ? CHAIN_FORM_NATIVE : sec != VCDIFF_SEC_NONE ?
			  CHAIN_FORM_STREAM : CHAIN_FORM_PLAIN;
	if (native) {
		/* Its index points past the file's end (fs/sfile.c): one made
		 * when this file was converted must not load. */
		L->fstamp = derive_fstamp(L, 1);
		L->stamp = layer_chain_stamp(L);
	}
	if (sec != VCDIFF_SEC_NONE && !native && !have_plain) {
		struct prog_ctx pc = { c, L->name, "converting patch to plain "
				       "VCDIFF (first mount only)" };
		layer_derived_name(name, sizeof(name), L, L->fstamp, "vcdiff");
		rc = derive_made(c, "plain", name, sec == VCDIFF_SEC_LZMA ?
				  make_plain : make_plain_xdelta3, L->blob,
				  &pc, &why, &b);
		if (rc) {
			layer_damage(L, "%s: cannot convert to plain "
				     "VCDIFF: %s", L->path,
				     rc == -EBADMSG || rc == -ENOTSUP ?
				     why : strerror(-rc));
			return 0;
		}
		vcdiff_patch_free(L->patch);
		L->patch = NULL;
		sfile_raw(c, L, &L->data, b, blob_size(b), name);
		L->data.derived = 1;
		/* Name the user's file first: that is what to restore. */
		snprintf(L->data.label, sizeof(L->data.label), "%.100s "
			 "(converted copy %s/plain/%.200s)", L->path,
			 STORE_META_DIR, name);
		rc = vcdiff_patch_open(&L->patch, b, &why);
		if (rc) {
			layer_damage(L, "%s: converted patch unreadable: %s",
				     L->data.label, why);
			return 0;
		}
	}
	rc = sfile_sums_get(c, L, &L->data, L->fstamp, "data.sum");
	if (!rc && native)
		rc = sfile_windowed(&L->data, L->patch);
	if (rc) {
		layer_damage(L, "%s: cannot read: %s", L->data.label,
			     strerror(-rc));
		return 0;
	}
	if (native)
		vcopy_attach(c, L);
	layer_derived_name(name, sizeof(name), L, L->stamp, "idx");
	store_derived_want(c->s, "index", name);
	struct fid_set fs;
	rc = fid_set_init(&fs, L);
	if (!rc) {
		rc = xindex_load(&L->x, store_subdir(c->s, "index"), name,
				 L->stamp, fid_ok, &fs);
		free(fs.bits);
	}
	if (rc == 0) {
		if (xindex_size(L->x) != L->size) {
			xindex_free(L->x);
			L->x = NULL;
		} else {
			L->aux_stamp = xindex_tag(L->x);
			rc = derive_aux_reopen(c, L);
			if (rc)
				layer_damage(L, "%s: aux file: %s; it is derived "
					     "data: unmount, delete %s/index/%s "
					     "and mount again to rebuild it",
					     L->name, strerror(-rc),
					     STORE_META_DIR, name);
			return 0;
		}
	}
	rc = L->built ? ibuild_adopt(c, L, L->built) : ibuild_index(c, L);
	if (rc == -EMFILE || rc == -ENFILE) {
		char what[PATH_MAX + 64];

		snprintf(what, sizeof(what), "%s/%s (building derived data "
			 "for %s)", store_dir(c->s), STORE_META_DIR, L->name);
		msg_nofile(err, errlen, what);
		return rc;
	}
	if (rc == -ENOSPC || rc == -EDQUOT || rc == -EROFS || rc == -ENOMEM) {
		/* Not damage: the machine, and the message says which. */
		msg_say(err, errlen, "%s/%s: %s while building derived data for "
			"%s: %s", store_dir(c->s), STORE_META_DIR, strerror(-rc),
			L->name, rc == -ENOMEM ? "free memory" : "free space "
			"there and mount again");
		return rc;
	}
	if (rc)
		return 0;	/* damage recorded */
	derive_save_xindex(c, L, L->x);
	return 0;
}

int chain_prepare(struct chain *c, uint32_t id, struct chain_layer *P,
		  struct blob *b, struct chain_ibuild *built,
		  void (*on_bytes)(void *ctx, const void *buf, size_t len),
		  void *ctx, char *err, size_t errlen)
{
	struct chain_layer *L = NULL;
	int rc = layer_new(&L, id, P, b, blob_name(b));	/* takes b */
	if (rc)
		return rc;
	L->on_bytes = on_bytes;
	L->on_bytes_ctx = ctx;
	L->built = built;
	rc = derive_open_patch(c, L, err, errlen);
	if (!rc && L->damage[0]) {
		msg_say(err, errlen, "%s", L->damage);
		rc = -EBADMSG;
	}
	layer_put(c, L);
	return rc;
}
