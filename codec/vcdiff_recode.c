/* SPDX-License-Identifier: MIT */
/*
 * vcdiff_recode: streaming a patch whose sections share one xz stream per
 * kind (stock xdelta3 -S lzma) once into a plain one, whose windows decode
 * alone (see vcdiff_recode_plain() in vcdiff_dec.h).
 *
 * Not here: random access, applying windows (vcdiff_dec.c); the reader
 * and header parsing are vcdiff_patch.c's. Never prints or exits.
 */
#include "codec/vcdiff_dec.h"

#include <errno.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/blob.h"
#include "codec/fdio.h"

#include "codec/vcdiff_dec_int.h"

/* Buffered output for recode. */
struct bwriter {
	int fd;
	size_t len;
	uint8_t buf[64u << 10];
};

static int bw_flush(struct bwriter *b)
{
	int rc = fdio_write(b->fd, b->buf, b->len);

	b->len = 0;
	return rc;
}

static int bw_put(struct bwriter *b, const void *p, size_t n)
{
	int rc;

	if (n > sizeof(b->buf) - b->len) {
		if ((rc = bw_flush(b)))
			return rc;
		if (n > sizeof(b->buf))
			return fdio_write(b->fd, p, n);
	}
	memcpy(b->buf + b->len, p, n);
	b->len += n;
	return 0;
}

static int bw_varint(struct bwriter *b, uint64_t v)
{
	uint8_t tmp[10];

	return bw_put(b, tmp, vcdiff_varint_put(tmp, v));
}

/*
 * One section kind (data, inst or addr) across the whole patch: xdelta3
 * runs one xz stream per kind through all windows and never ends it
 * (notes 2.4), so the decoder lives as long as the recode.
 */
struct sec_kind {
	lzma_stream strm;
	bool live;
	uint8_t *in;		/* stored bytes of the current section */
	size_t in_cap;
	uint8_t *out;		/* plain bytes of the current section */
	size_t out_cap;
	const uint8_t *plain;	/* in or out */
	uint32_t plain_len;
};

/*
 * Decompresses one framed lzma section (varint uncompressed length, then
 * LZMA2 chunks of the running xz stream) exactly as xdelta3 does: run
 * until the output is full, then require every input byte consumed.
 */
static int lzma_section(struct sec_kind *k, uint32_t in_len, const char **why)
{
	const uint8_t *p = k->in, *end = k->in + in_len;
	uint32_t ulen;
	int rc;

	if (vcdiff_varint_get32(&p, end, &ulen)) {
		*why = "secondary decoder end of input";
		return -EBADMSG;
	}
	if (ulen == 0) {
		*why = "secondary decoder invalid output size";
		return -EBADMSG;
	}
	if (ulen > SECT_MAX) {
		*why = "secondary section too large";
		return -EBADMSG;
	}
	if ((rc = grow((void **)&k->out, &k->out_cap, ulen, 1)))
		return rc;
	if (!k->live) {
		lzma_stream init = LZMA_STREAM_INIT;
		k->strm = init;
		if (lzma_stream_decoder(&k->strm, LZMA_MEMLIMIT,
					LZMA_TELL_NO_CHECK) != LZMA_OK)
			return -ENOMEM;
		k->live = true;
	}
	k->strm.next_in = p;
	k->strm.avail_in = (size_t)(end - p);
	k->strm.next_out = k->out;
	k->strm.avail_out = ulen;
	while (k->strm.avail_out > 0) {
		size_t in0 = k->strm.avail_in, out0 = k->strm.avail_out;
		lzma_ret ret = lzma_code(&k->strm, LZMA_RUN);

		if (ret == LZMA_MEM_ERROR)
			return -ENOMEM;
		if (ret != LZMA_OK && ret != LZMA_NO_CHECK) {
			*why = ret == LZMA_MEMLIMIT_ERROR ?
				"lzma dictionary too large" :
				"lzma decoding error";
			return -EBADMSG;
		}
		if (k->strm.avail_in == in0 && k->strm.avail_out == out0) {
			*why = "secondary decoder short output";
			return -EBADMSG;
		}
	}
	if (k->strm.avail_in != 0) {
		*why = "secondary decoder finished with unused input";
		return -EBADMSG;
	}
	k->plain = k->out;
	k->plain_len = ulen;
	return 0;
}

int vcdiff_recode_plain(struct blob *src, int out_fd,
			void (*progress)(void *ctx, uint64_t done,
					 uint64_t total),
			void *ctx, const char **why)
{
	static const uint8_t magic[4] = { VCDIFF_MAGIC0, VCDIFF_MAGIC1,
					  VCDIFF_MAGIC2, VCDIFF_VERSION };
	static const uint8_t del_bit[3] = { VCDIFF_DEL_DATA, VCDIFF_DEL_INST,
					    VCDIFF_DEL_ADDR };
	const char *dummy;
	struct breader r = { .buf = NULL };
	struct file_hdr h = { .apphdr = NULL };
	struct bwriter *bw = NULL;
	struct sec_kind kinds[3];
	uint64_t tgt_off = 0, reported = 0;
	int rc;

	if (!why)
		why = &dummy;
	*why = "";
	memset(kinds, 0, sizeof(kinds));
	if ((rc = dec_br_init(&r, src)))
		goto out;
	bw = malloc(sizeof(*bw));
	if (!bw) {
		rc = -ENOMEM;
		goto out;
	}
	bw->fd = out_fd;
	bw->len = 0;
	if (progress)
		progress(ctx, 0, r.size);
	if ((rc = dec_parse_file_hdr(&r, &h, why)))
		goto out;
	if (h.secondary == VCDIFF_SEC_DJW || h.secondary == VCDIFF_SEC_FGK) {
		*why = "djw/fgk secondary compression not supported "
		       "(use xdelta3 recode -S none)";
		rc = -ENOTSUP;
		goto out;
	}
	if ((rc = bw_put(bw, magic, 4)))
		goto out;
	{
		uint8_t ind = h.hdr_ind & VCDIFF_HDR_APPHEADER;
		if ((rc = bw_put(bw, &ind, 1)))
			goto out;
	}
	if (h.hdr_ind & VCDIFF_HDR_APPHEADER) {
		if ((rc = bw_varint(bw, h.apphdr_len)) ||
		    (rc = bw_put(bw, h.apphdr, h.apphdr_len)))
			goto out;
	}

	for (;;) {
		struct vcdiff_win w;
		uint32_t stored[3];
		uint64_t enclen;

		rc = dec_parse_win_hdr(&r, tgt_off, h.secondary, &w, why);
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (rc)
			goto out;
		stored[0] = w.data_len;
		stored[1] = w.inst_len;
		stored[2] = w.addr_len;
		for (int k = 0; k < 3; k++) {
			struct sec_kind *sk = &kinds[k];

			if (stored[k] > SECT_MAX) {
				*why = "section too large";
				rc = -EBADMSG;
				goto out;
			}
			if ((rc = grow((void **)&sk->in, &sk->in_cap,
				       stored[k] ? stored[k] : 1, 1)))
				goto out;
			rc = dec_br_read(&r, sk->in, stored[k]);
			if (rc > 0) {
				*why = "truncated window sections";
				rc = -EBADMSG;
			}
			if (rc)
				goto out;
			if (w.del_ind & del_bit[k]) {
				if ((rc = lzma_section(sk, stored[k], why)))
					goto out;
			} else {
				sk->plain = sk->in;
				sk->plain_len = stored[k];
			}
		}
		/* Each plain section is at most SECT_MAX, so enclen fits
		 * the 32 bits xdelta3 reads it into. */
		enclen = 1 + vcdiff_varint_size(w.tgt_len) +
			(uint64_t)kinds[0].plain_len + kinds[1].plain_len +
			kinds[2].plain_len +
			((w.win_ind & VCDIFF_WIN_ADLER32) ? 4 : 0);
		for (int k = 0; k < 3; k++)
			enclen += vcdiff_varint_size(kinds[k].plain_len);
		{
			uint8_t b = w.win_ind, zero = 0;
			if ((rc = bw_put(bw, &b, 1)))
				goto out;
			if (w.win_ind & (VCDIFF_WIN_SOURCE |
					 VCDIFF_WIN_TARGET)) {
				if ((rc = bw_varint(bw, w.cpy_len)) ||
				    (rc = bw_varint(bw, w.cpy_off)))
					goto out;
			}
			if ((rc = bw_varint(bw, enclen)) ||
			    (rc = bw_varint(bw, w.tgt_len)) ||
			    (rc = bw_put(bw, &zero, 1)))
				goto out;
		}
		for (int k = 0; k < 3; k++)
			if ((rc = bw_varint(bw, kinds[k].plain_len)))
				goto out;
		if (w.win_ind & VCDIFF_WIN_ADLER32) {
			uint8_t a[4] = { (uint8_t)(w.adler32 >> 24),
					 (uint8_t)(w.adler32 >> 16),
					 (uint8_t)(w.adler32 >> 8),
					 (uint8_t)w.adler32 };
			if ((rc = bw_put(bw, a, 4)))
				goto out;
		}
		for (int k = 0; k < 3; k++)
			if ((rc = bw_put(bw, kinds[k].plain,
					 kinds[k].plain_len)))
				goto out;
		tgt_off += w.tgt_len;
		if (progress && r.pos - reported >= (8u << 20)) {
			reported = r.pos;
			progress(ctx, r.pos, r.size);
		}
	}
	if ((rc = bw_flush(bw)))
		goto out;
	if (progress)
		progress(ctx, r.size, r.size);
out:
	for (int k = 0; k < 3; k++) {
		if (kinds[k].live)
			lzma_end(&kinds[k].strm);
		free(kinds[k].in);
		free(kinds[k].out);
	}
	free(bw);
	free(h.apphdr);
	free(r.buf);
	return rc;
}
