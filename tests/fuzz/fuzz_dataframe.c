/* fuzz_dataframe.c - libFuzzer target for the DATA framer and the encoder.
 *
 * Build and run (from the top of the tree):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=undefined -Iinclude -I. \
 *     tests/fuzz/fuzz_dataframe.c proxy/dataframe.c -o build/fuzz_dataframe
 *   mkdir -p build/fuzz-corpus && build/fuzz_dataframe -max_total_time=60 \
 *     -max_len=4096 build/fuzz-corpus
 *
 * Input: byte 0 seeds the chunking, byte 1 picks a size limit (0 = none),
 * the rest is the raw stream after "354".  If byte 0 has its top bit set,
 * 0x01 n in the stream stands for 8*n octets "a", and 0x02 n for 990 + n%12
 * octets "a", so that lines around the 998-octet limit are within the
 * fuzzer's reach.  Each input is decoded in both
 * modes, in random chunks, and checked against a whole-buffer reference
 * written as plainly as possible:
 *   - consumed <= len; all of it is consumed unless done;
 *   - done exactly when the stream holds CR LF "." CR LF (with the start of
 *     data counting as CR LF), and consumed ends right after the first one;
 *   - the fault is the reference's first fault, and without a fault the
 *     content is the reference's content, byte for byte;
 *   - content never holds a bare CR or LF;
 *   - encode(content) holds exactly one end of data, at its end, and
 *     decodes back to the content.
 * The decoder and the encoder have fast paths (runs and whole lines in one
 * step) that a byte-by-byte feed never takes, so each input is also fed
 * whole and byte by byte, and must give the same answer as the random
 * chunks: the same end, fault and counts, and without a fault the same
 * content and size; the same wire form from the encoder.  The raw stream
 * itself, bare CR, LF and all, is encoded too and checked against a
 * one-octet-at-a-time reference encoder.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/dataframe.h"

#define CHECK(x) do { if (!(x)) { \
	fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
	abort(); } } while (0)

struct buf {
	char  *p;
	size_t len, cap;
};

static int buf_put(void *arg, const char *p, size_t n)
{
	struct buf *b = arg;

	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p != NULL);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void buf_fill(struct buf *b, char c, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p != NULL);
	}
	memset(b->p + b->len, c, n);
	b->len += n;
}

static uint32_t rng(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* oracle_end - offset just past the first CR LF "." CR LF of "\r\n"+in,
 * 0 if none */
static size_t oracle_end(const unsigned char *in, size_t len)
{
	size_t i;

	for (i = 0; i + 3 <= len; i++)
		if (in[i] == '.' && in[i + 1] == '\r' && in[i + 2] == '\n'
		    && (i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n')))
			return i + 3;
	return 0;
}

/* eod_only_at_end - the first end of data in w is at its very end, so
 * there is exactly one */
static int eod_only_at_end(const char *w, size_t len)
{
	return oracle_end((const unsigned char *)w, len) == len;
}

/* reference - the content and first fault for body = in[0..m) */
struct ref {
	struct buf      content;
	enum data_fault fault;
	uint64_t        size;
	uint64_t        limit;
};

static void ref_fault(struct ref *r, enum data_fault f)
{
	if (r->fault == DF_OK)
		r->fault = f;
}

static void ref_emit(struct ref *r, const char *p, size_t n)
{
	if (r->fault != DF_OK)
		return;
	if (r->limit && r->size + n > r->limit) {
		ref_fault(r, DF_TOO_BIG);
		return;
	}
	r->size += n;
	buf_put(&r->content, p, n);
}

static void reference(const unsigned char *in, size_t m, int normalize,
                      struct ref *r)
{
	size_t i = 0, s, e, j;
	int crlf;

	while (i < m) {
		/* find the end of this line: CR LF, or a bare CR/LF if normalize */
		s = i;
		for (e = s; e < m; e++) {
			if (in[e] == '\r' && e + 1 < m && in[e + 1] == '\n')
				break;
			if (normalize && (in[e] == '\n' || in[e] == '\r'))
				break;
		}
		CHECK(e < m);	/* the body ends with CR LF */
		crlf = in[e] == '\r' && in[e + 1] == '\n';
		for (j = s; j < e; j++) {
			if (in[j] == '\n')
				ref_fault(r, DF_BARE_LF);	/* reject mode only */
			else if (in[j] == '\r')
				ref_fault(r, DF_BARE_CR);
			if (in[j] == '\0')
				ref_fault(r, DF_NUL);
			/* the leading dot is not counted (RFC 5321 4.5.3.1.6) */
			if (j - s + 1 - (in[s] == '.') > DATA_LINE_MAX)
				ref_fault(r, DF_LINE_TOO_LONG);
			if (j == s && in[j] == '.')
				continue;	/* the dot: dropped, or emitted below */
			ref_emit(r, (const char *)in + j, 1);
		}
		if (e - s == 1 && in[s] == '.')
			ref_emit(r, ".", 1);	/* a lone "." that did not end the data */
		ref_emit(r, "\r\n", 2);
		i = e + (crlf ? 2 : 1);
	}
}

/* ref_encode - the encoder's rules, one octet at a time: CR LF, a bare CR
 * and a bare LF all become CR LF; a "." at a line start is doubled; the
 * end is CR LF "." CR LF, or "." CR LF at a line start */
static void ref_encode(const unsigned char *p, size_t len, struct buf *w)
{
	int bol = 1;
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '\r' || p[i] == '\n') {
			buf_put(w, "\r\n", 2);
			bol = 1;
			if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
				i++;
			continue;
		}
		if (bol && p[i] == '.')
			buf_put(w, ".", 1);
		buf_put(w, (const char *)p + i, 1);
		bol = 0;
	}
	if (bol)
		buf_put(w, ".\r\n", 3);
	else
		buf_put(w, "\r\n.\r\n", 5);
}

/* encode_chunks - chunk 0: random chunks of 1..200 octets */
static void encode_chunks(const char *p, size_t len, size_t chunk,
                          uint32_t *s, struct buf *w)
{
	struct data_encoder e;
	size_t off, n;

	data_encoder_init(&e);
	for (off = 0; off < len; off += n) {
		n = chunk ? chunk : 1 + rng(s) % 200;
		if (n > len - off)
			n = len - off;
		CHECK(data_encoder_feed(&e, p + off, n, buf_put, w) == 0);
	}
	CHECK(data_encoder_finish(&e, buf_put, w) == 0);
}

struct framing {
	size_t          consumed;
	int             done;
	enum data_fault fault;
	unsigned        bare_lf, bare_cr, nul;
	uint64_t        size;
	struct buf      content;
};

/* decode_fixed - in chunks of chunk octets (len: whole) */
static void decode_fixed(const unsigned char *in, size_t len, int normalize,
                         uint64_t limit, size_t chunk, struct framing *f)
{
	struct data_decoder d;
	size_t off = 0, n;
	int done = 0;

	memset(f, 0, sizeof(*f));
	data_decoder_init(&d, buf_put, &f->content, limit, normalize);
	while (off < len && !done) {
		n = len - off < chunk ? len - off : chunk;
		n = data_decoder_feed(&d, (const char *)in + off, n, &done);
		off += n;
	}
	f->consumed = off;
	f->done = done;
	f->fault = d.fault;
	f->bare_lf = d.bare_lf;
	f->bare_cr = d.bare_cr;
	f->nul = d.nul;
	f->size = d.size;
}

/* same_framing - f against the random-chunk decoder d and its content */
static void same_framing(const struct framing *f, const struct data_decoder *d,
                         size_t consumed, int done, const struct buf *content)
{
	CHECK(f->consumed == consumed);
	CHECK(f->done == done);
	CHECK(f->fault == d->fault);
	CHECK(f->bare_lf == d->bare_lf && f->bare_cr == d->bare_cr
	    && f->nul == d->nul);
	if (d->fault == DF_OK) {
		CHECK(f->size == d->size);
		CHECK(f->content.len == content->len);
		CHECK(content->len == 0
		    || memcmp(f->content.p, content->p, content->len) == 0);
	}
}

static void run(const unsigned char *in, size_t len, int normalize,
                uint32_t seed, uint64_t limit)
{
	struct data_decoder d;
	struct data_encoder e;
	struct buf content = { 0 }, wire = { 0 }, again = { 0 };
	struct ref r;
	size_t off = 0, n, chunk, i, oend;
	int done = 0;
	uint32_t s = seed ? seed : 1;

	data_decoder_init(&d, buf_put, &content, limit, normalize);
	while (off < len && !done) {
		chunk = 1 + rng(&s) % ((rng(&s) & 1) ? 4 : 300);
		if (chunk > len - off)
			chunk = len - off;
		n = data_decoder_feed(&d, (const char *)in + off, chunk, &done);
		CHECK(n <= chunk);
		CHECK(done || n == chunk);
		off += n;
	}
	oend = oracle_end(in, len);
	CHECK(done == (oend != 0));
	CHECK(!done || off == oend);
	CHECK(off <= len);
	CHECK(limit == 0 || d.size <= limit);

	/* whole and byte by byte: the same answer */
	{
		struct framing f;

		decode_fixed(in, len, normalize, limit, len ? len : 1, &f);
		same_framing(&f, &d, off, done, &content);
		free(f.content.p);
		decode_fixed(in, len, normalize, limit, 1, &f);
		same_framing(&f, &d, off, done, &content);
		free(f.content.p);
	}

	/* content: canonical CRLF, always */
	for (i = 0; i < content.len; i++) {
		if (content.p[i] == '\r')
			CHECK(i + 1 < content.len && content.p[i + 1] == '\n');
		if (content.p[i] == '\n')
			CHECK(i > 0 && content.p[i - 1] == '\r');
	}
	if (done) {
		memset(&r, 0, sizeof(r));
		r.limit = limit;
		reference(in, oend - 3, normalize, &r);
		CHECK(d.fault == r.fault);
		if (d.fault == DF_OK) {
			CHECK(content.len == r.content.len);
			CHECK(content.len == d.size);
			CHECK(content.len == 0
			    || memcmp(content.p, r.content.p, content.len) == 0);
		} else {
			/* a fault drops the batch: only full ones got out */
			CHECK(content.len % sizeof(d.out) == 0);
		}
		free(r.content.p);
	}

	/* encode what we got, in random chunks: one end of data, at the end */
	data_encoder_init(&e);
	for (off = 0; off < content.len; off += chunk) {
		chunk = 1 + rng(&s) % 200;
		if (chunk > content.len - off)
			chunk = content.len - off;
		CHECK(data_encoder_feed(&e, content.p + off, chunk, buf_put, &wire) == 0);
	}
	CHECK(data_encoder_finish(&e, buf_put, &wire) == 0);
	CHECK(eod_only_at_end(wire.p, wire.len));
	{
		struct buf w1 = { 0 }, w2 = { 0 };

		ref_encode((const unsigned char *)content.p, content.len, &w1);
		CHECK(w1.len == wire.len);
		CHECK(memcmp(w1.p, wire.p, wire.len) == 0);
		encode_chunks(content.p, content.len, 1, &s, &w2);
		CHECK(w2.len == wire.len);
		CHECK(memcmp(w2.p, wire.p, wire.len) == 0);
		free(w1.p);
		free(w2.p);
	}

	/* and it decodes back */
	if (d.fault == DF_OK) {
		data_decoder_init(&d, buf_put, &again, 0, 0);
		CHECK(data_decoder_feed(&d, wire.p, wire.len, &done) == wire.len);
		CHECK(done && d.fault == DF_OK);
		CHECK(again.len == content.len);
		CHECK(again.len == 0 || memcmp(again.p, content.p, again.len) == 0);
	}
	free(content.p);
	free(wire.p);
	free(again.p);
}

/* run_encoder - the raw stream, bare CR, LF and all, as content: random
 * chunks, whole and byte by byte all give the reference's wire form, which
 * is canonical CRLF with one end of data, at its end */
static void run_encoder(const unsigned char *in, size_t len, uint32_t seed)
{
	struct buf ref = { 0 }, w = { 0 };
	uint32_t s = seed ? seed : 1;
	size_t i, chunk[3];
	int k;

	ref_encode(in, len, &ref);
	CHECK(eod_only_at_end(ref.p, ref.len));
	for (i = 0; i < ref.len; i++) {
		if (ref.p[i] == '\r')
			CHECK(i + 1 < ref.len && ref.p[i + 1] == '\n');
		if (ref.p[i] == '\n')
			CHECK(i > 0 && ref.p[i - 1] == '\r');
	}
	chunk[0] = 0;
	chunk[1] = len ? len : 1;
	chunk[2] = 1;
	for (k = 0; k < 3; k++) {
		w.len = 0;
		encode_chunks((const char *)in, len, chunk[k], &s, &w);
		CHECK(w.len == ref.len);
		CHECK(memcmp(w.p, ref.p, ref.len) == 0);
	}
	free(ref.p);
	free(w.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = { 0 };
	uint64_t limit;
	size_t i;

	if (size < 2)
		return 0;
	limit = data[1] == 0 ? 0 : (uint64_t)data[1] * 8;
	for (i = 2; i < size; i++) {
		if ((data[0] & 0x80) && data[i] == 0x01 && i + 1 < size) {
			i++;
			buf_fill(&in, 'a', 8 * (size_t)data[i]);
			continue;
		}
		if ((data[0] & 0x80) && data[i] == 0x02 && i + 1 < size) {
			i++;
			buf_fill(&in, 'a', 990 + (size_t)data[i] % 12);
			continue;
		}
		buf_put(&in, (const char *)data + i, 1);
	}
	run((const unsigned char *)in.p, in.len, 0, data[0] * 2654435761u, limit);
	run((const unsigned char *)in.p, in.len, 1, data[0] * 2654435761u + 7, limit);
	run_encoder((const unsigned char *)in.p, in.len, data[0] * 2654435761u + 11);
	free(in.p);
	return 0;
}
