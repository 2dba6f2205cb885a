/* test_dataframe.c - the DATA framer (decoder) and the dot-stuffing encoder.
 *
 * The smuggling tests read the 13 fake end-of-data sequences from
 * tests/data/smuggling/eod-sequences.txt (run from the top of the tree, as
 * "make unit" does; MW_TESTDATA overrides the tests/data directory), embed
 * each in messages the way the public scanners do, and feed them whole,
 * byte by byte and split at every offset, in reject and normalize mode.
 *
 * The oracle for the end of data is deliberately dumb: the first CR LF "."
 * CR LF in "\r\n" + input.  The decoder must agree with it everywhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/dataframe.h"

/* ---- helpers */

struct cap {
	char  *data;
	size_t len;
	size_t cap;
	int    fail_after;	/* >0: the n-th call and later fail */
	int    calls;
};

static int cap_write(void *arg, const char *p, size_t n)
{
	struct cap *c = arg;

	c->calls++;
	if (c->fail_after > 0 && c->calls >= c->fail_after)
		return -1;
	if (c->len + n + 1 > c->cap) {
		c->cap = (c->len + n + 1) * 2;
		c->data = realloc(c->data, c->cap);
		assert_non_null(c->data);
	}
	memcpy(c->data + c->len, p, n);
	c->len += n;
	c->data[c->len] = '\0';
	return 0;
}

static void cap_free(struct cap *c)
{
	free(c->data);
	memset(c, 0, sizeof(*c));
}

struct result {
	struct cap      content;
	size_t          consumed;
	int             done;
	enum data_fault fault;
	unsigned        bare_lf, bare_cr, nul;
	uint64_t        size;
};

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_AT, SPLIT_EVERY };

/* decode - feed in[0..len) in the chunks split/k describe (SPLIT_AT: two
 * chunks, the first k octets and the rest; SPLIT_EVERY: chunks of k
 * octets); stop at done */
static void decode(const char *in, size_t len, int normalize, uint64_t limit,
                   enum split split, size_t k, struct result *r)
{
	struct data_decoder d;
	size_t off = 0, end, n;
	int done = 0;

	memset(r, 0, sizeof(*r));
	data_decoder_init(&d, cap_write, &r->content, limit, normalize);
	while (off < len && !done) {
		switch (split) {
		case SPLIT_WHOLE: end = len; break;
		case SPLIT_BYTES: end = off + 1; break;
		case SPLIT_EVERY: end = len - off > k ? off + k : len; break;
		default:          end = off < k ? k : len; break;
		}
		n = data_decoder_feed(&d, in + off, end - off, &done);
		assert_true(n <= end - off);
		if (!done)
			assert_int_equal(n, end - off);
		off += n;
	}
	r->consumed = off;
	r->done = done;
	r->fault = d.fault;
	r->bare_lf = d.bare_lf;
	r->bare_cr = d.bare_cr;
	r->nul = d.nul;
	r->size = d.size;
	if (done) {
		/* nothing more is consumed after the end */
		assert_int_equal(data_decoder_feed(&d, "x\r\n", 3, &done), 0);
		assert_int_equal(done, 1);
	}
}

/* oracle_end - bytes up to and including the first CR LF "." CR LF of
 * "\r\n" + in, or 0 if there is none */
static size_t oracle_end(const char *in, size_t len)
{
	size_t i;

	for (i = 0; i + 3 <= len; i++) {
		if (in[i] != '.' || in[i + 1] != '\r' || in[i + 2] != '\n')
			continue;
		if (i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n'))
			return i + 3;
	}
	return 0;
}

/* count_eod - number of CR LF "." CR LF in "\r\n" + wire */
static size_t count_eod(const char *w, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i + 3 <= len; i++)
		if (w[i] == '.' && w[i + 1] == '\r' && w[i + 2] == '\n'
		    && (i == 0 || (i >= 2 && w[i - 2] == '\r' && w[i - 1] == '\n')))
			n++;
	return n;
}

/* canonical - every CR is followed by LF and every LF preceded by CR */
static int canonical(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '\r' && (i + 1 >= len || p[i + 1] != '\n'))
			return 0;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return 0;
	}
	return 1;
}

/* encode - content -> wire form, fed in two chunks split at k */
static void encode(const char *p, size_t len, size_t k, struct cap *w)
{
	struct data_encoder e;

	memset(w, 0, sizeof(*w));
	if (k > len)
		k = len;
	data_encoder_init(&e);
	assert_int_equal(data_encoder_feed(&e, p, k, cap_write, w), 0);
	assert_int_equal(data_encoder_feed(&e, p + k, len - k, cap_write, w), 0);
	assert_int_equal(data_encoder_finish(&e, cap_write, w), 0);
	if (w->data == NULL)
		cap_write(w, "", 0);
}

/* same_result - whole-feed result equals a split-feed result */
static void same_result(const struct result *a, const struct result *b)
{
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->done, b->done);
	assert_int_equal(a->fault, b->fault);
	assert_int_equal(a->bare_lf, b->bare_lf);
	assert_int_equal(a->bare_cr, b->bare_cr);
	assert_int_equal(a->nul, b->nul);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->content.len, b->content.len);
	if (a->content.len)
		assert_memory_equal(a->content.data, b->content.data, a->content.len);
}

/* check_all_splits - whole, byte by byte and at every split point give the
 * same answer; returns the whole-feed result in *r */
static void check_all_splits(const char *in, size_t len, int normalize,
                             uint64_t limit, struct result *r)
{
	struct result t;
	size_t k;

	decode(in, len, normalize, limit, SPLIT_WHOLE, 0, r);
	decode(in, len, normalize, limit, SPLIT_BYTES, 0, &t);
	same_result(r, &t);
	cap_free(&t.content);
	for (k = 1; k < len; k++) {
		decode(in, len, normalize, limit, SPLIT_AT, k, &t);
		same_result(r, &t);
		cap_free(&t.content);
	}
}

/* expect_decode - consumed 0 means all of in */
static void expect_decode(const char *in, size_t len, int normalize,
                          enum data_fault fault, const char *content,
                          size_t clen, size_t consumed)
{
	struct result r;

	check_all_splits(in, len, normalize, 0, &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.consumed, consumed ? consumed : len);
	assert_int_equal(r.fault, fault);
	if (fault == DF_OK) {
		assert_int_equal(r.content.len, clen);
		if (clen)
			assert_memory_equal(r.content.data, content, clen);
		assert_int_equal(r.size, clen);
	}
	cap_free(&r.content);
}

#define S(x) x, sizeof(x) - 1

/* ---- framing basics */

static void test_simple(void **state)
{
	(void)state;
	expect_decode(S("Subject: x\r\n\r\nbody\r\n.\r\n"), 0, DF_OK,
	              S("Subject: x\r\n\r\nbody\r\n"), 0);
	expect_decode(S("Subject: x\r\n\r\nbody\r\n.\r\n"), 1, DF_OK,
	              S("Subject: x\r\n\r\nbody\r\n"), 0);
}

static void test_empty_message(void **state)
{
	(void)state;
	expect_decode(S(".\r\n"), 0, DF_OK, S(""), 0);
	expect_decode(S(".\r\n"), 1, DF_OK, S(""), 0);
	expect_decode(S(".\r\nQUIT\r\n"), 0, DF_OK, S(""), 3);
	/* one empty line */
	expect_decode(S("\r\n.\r\n"), 0, DF_OK, S("\r\n"), 0);
	expect_decode(S("\r\n\r\n.\r\n"), 1, DF_OK, S("\r\n\r\n"), 0);
}

static void test_incomplete(void **state)
{
	static const char *const in[] = {
		"", "a", "a\r", "a\r\n", "a\r\n.", "a\r\n.\r", "\r\n.\r",
		".", ".\r", "a\n.\n", "a\r\n.\n", "a\r\n..\r\n", "a\r.\r",
	};
	struct result r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		check_all_splits(in[i], strlen(in[i]), 1, 0, &r);
		assert_int_equal(r.done, 0);
		assert_int_equal(r.consumed, strlen(in[i]));
		cap_free(&r.content);
		check_all_splits(in[i], strlen(in[i]), 0, 0, &r);
		assert_int_equal(r.done, 0);
		cap_free(&r.content);
	}
}

static void test_pipelined_not_consumed(void **state)
{
	static const char in[] =
		"Subject: a\r\n\r\nhello\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
	struct result r;
	size_t k;

	(void)state;
	for (k = 0; k <= 1; k++) {
		check_all_splits(S(in), (int)k, 0, &r);
		assert_int_equal(r.done, 1);
		assert_int_equal(r.consumed, strlen("Subject: a\r\n\r\nhello\r\n.\r\n"));
		assert_int_equal(r.fault, DF_OK);
		assert_int_equal(r.content.len, strlen("Subject: a\r\n\r\nhello\r\n"));
		cap_free(&r.content);
	}
	/* the terminator's LF is the last byte of a chunk: done, all consumed */
	decode(S(in), 0, 0, SPLIT_AT, strlen("Subject: a\r\n\r\nhello\r\n.\r\n"), &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.consumed, strlen("Subject: a\r\n\r\nhello\r\n.\r\n"));
	cap_free(&r.content);
}

static void test_unstuffing(void **state)
{
	(void)state;
	expect_decode(S("..\r\n.x\r\n...\r\n. y\r\n.\r\n"), 0, DF_OK,
	              S(".\r\nx\r\n..\r\n y\r\n"), 0);
	expect_decode(S("a\r\n..\r\n.\r\n"), 1, DF_OK, S("a\r\n.\r\n"), 0);
	/* a dot inside a line is never touched */
	expect_decode(S("a.b\r\n a.\r\n.\r\n"), 0, DF_OK, S("a.b\r\n a.\r\n"), 0);
	/* ". CR CR LF": not the end; stuffed dot then a bare CR */
	expect_decode(S("a\r\n.\r\r\nb\r\n.\r\n"), 0, DF_BARE_CR, NULL, 0, 0);
	expect_decode(S("a\r\n.\r\r\nb\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\n\r\nb\r\n"), 0);
}

/* ---- bare CR / LF */

static void test_bare_lf_reject(void **state)
{
	struct result r;

	(void)state;
	check_all_splits(S("a\nb\r\n.\r\nNOOP\r\n"), 0, 0, &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.consumed, 8);
	assert_int_equal(r.fault, DF_BARE_LF);
	assert_int_equal(r.bare_lf, 1);
	assert_int_equal(r.content.len, 0);	/* discarded, never flushed */
	assert_string_equal(data_fault_name(r.fault), "bare-lf");
	cap_free(&r.content);

	check_all_splits(S("a\rb\r\n.\r\n"), 0, 0, &r);
	assert_int_equal(r.fault, DF_BARE_CR);
	assert_int_equal(r.bare_cr, 1);
	cap_free(&r.content);

	/* first fault wins, all are counted */
	check_all_splits(S("a\rb\nc\0\r\n.\r\n"), 0, 0, &r);
	assert_int_equal(r.fault, DF_BARE_CR);
	assert_int_equal(r.bare_cr, 1);
	assert_int_equal(r.bare_lf, 1);
	assert_int_equal(r.nul, 1);
	cap_free(&r.content);

	/* CR at the end of a chunk followed by LF is no bare CR */
	decode(S("a\r\nb\r\n.\r\n"), 0, 0, SPLIT_AT, 2, &r);
	assert_int_equal(r.fault, DF_OK);
	assert_int_equal(r.bare_cr, 0);
	cap_free(&r.content);
}

static void test_bare_normalize(void **state)
{
	struct result r;

	(void)state;
	/* "\n\n.\r\n": the dot follows a bare LF, so it is not the end */
	check_all_splits(S("a\nb\rc\r\r\nd\n\n.\r\n"), 1, 0, &r);
	assert_int_equal(r.done, 0);
	cap_free(&r.content);

	expect_decode(S("a\nb\rc\r\r\nd\r\n.\r\n"), 1, DF_OK,
	              S("a\r\nb\r\nc\r\n\r\nd\r\n"), 0);
	check_all_splits(S("a\nb\rc\r\r\nd\r\n.\r\n"), 1, 0, &r);
	assert_int_equal(r.bare_lf, 1);
	assert_int_equal(r.bare_cr, 2);
	cap_free(&r.content);

	/* a normalized line end never starts the end of data */
	expect_decode(S("a\n.\r\nb\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\nb\r\n"), 0);
	expect_decode(S("a\r.\r\nb\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\nb\r\n"), 0);
	/* the line "." ended by a bare LF / CR is content "." */
	expect_decode(S("a\r\n.\nb\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\nb\r\n"), 0);
	expect_decode(S("a\r\n.\rb\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\nb\r\n"), 0);
	/* first line of data */
	expect_decode(S(".\n.\r\n.\r\n"), 1, DF_OK, S(".\r\n.\r\n"), 0);
	expect_decode(S("\n.\r\n.\r\n"), 1, DF_OK, S("\r\n.\r\n"), 0);
	/* a stuffed line after a normalized line end is unstuffed */
	expect_decode(S("a\n..\n.b\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\nb\r\n"), 0);
	/* a normalized line "." followed by CR LF is content too */
	expect_decode(S("a\r.\r\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n.\r\n\r\n"), 0);
}

static void test_nul(void **state)
{
	(void)state;
	expect_decode(S("a\0b\r\n.\r\n"), 0, DF_NUL, NULL, 0, 0);
	expect_decode(S("a\0b\r\n.\r\n"), 1, DF_NUL, NULL, 0, 0);
	expect_decode(S("\0\r\n.\r\n"), 1, DF_NUL, NULL, 0, 0);
	expect_decode(S(".\0\r\n.\r\n"), 1, DF_NUL, NULL, 0, 0);
	assert_string_equal(data_fault_name(DF_NUL), "nul");
}

/* ---- limits */

static void test_long_lines(void **state)
{
	char *buf = malloc(4000);
	struct result r;
	size_t n;
	int norm;

	(void)state;
	assert_non_null(buf);
	for (norm = 0; norm <= 1; norm++) {
		/* 998 octets: fine */
		memset(buf, 'a', 998);
		memcpy(buf + 998, "\r\n.\r\n", 5);
		n = 1003;
		decode(buf, n, norm, 0, SPLIT_WHOLE, 0, &r);
		assert_int_equal(r.fault, DF_OK);
		assert_int_equal(r.content.len, 1000);
		cap_free(&r.content);
		decode(buf, n, norm, 0, SPLIT_BYTES, 0, &r);
		assert_int_equal(r.fault, DF_OK);
		cap_free(&r.content);
		/* the CR at position 998 in its own chunk */
		decode(buf, n, norm, 0, SPLIT_AT, 999, &r);
		assert_int_equal(r.fault, DF_OK);
		cap_free(&r.content);

		/* 999: too long, and the end is still found */
		memset(buf, 'a', 999);
		memcpy(buf + 999, "\r\nmore\r\n.\r\nQUIT\r\n", 17);
		n = 999 + 17;
		decode(buf, n, norm, 0, SPLIT_WHOLE, 0, &r);
		assert_int_equal(r.fault, DF_LINE_TOO_LONG);
		assert_int_equal(r.done, 1);
		assert_int_equal(r.consumed, n - 6);
		cap_free(&r.content);
		decode(buf, n, norm, 0, SPLIT_BYTES, 0, &r);
		assert_int_equal(r.fault, DF_LINE_TOO_LONG);
		assert_int_equal(r.consumed, n - 6);
		cap_free(&r.content);
		decode(buf, n, norm, 0, SPLIT_AT, 500, &r);
		assert_int_equal(r.fault, DF_LINE_TOO_LONG);
		cap_free(&r.content);

		/* the stuffed dot does not count (RFC 5321 4.5.3.1.6):
		 * "." + 999 is too long ... */
		buf[0] = '.';
		memset(buf + 1, 'a', 999);
		memcpy(buf + 1000, "\r\n.\r\n", 5);
		for (int sp = 0; sp < 3; sp++) {
			decode(buf, 1005, norm, 0, sp == 0 ? SPLIT_WHOLE : sp == 1 ? SPLIT_BYTES : SPLIT_AT,
			       1, &r);
			assert_int_equal(r.fault, DF_LINE_TOO_LONG);
			cap_free(&r.content);
		}
		/* ... "." + 998 (998 octets of content) is not */
		memcpy(buf + 999, "\r\n.\r\n", 5);
		for (int sp = 0; sp < 3; sp++) {
			decode(buf, 1004, norm, 0, sp == 0 ? SPLIT_WHOLE : sp == 1 ? SPLIT_BYTES : SPLIT_AT,
			       1, &r);
			assert_int_equal(r.fault, DF_OK);
			assert_int_equal(r.content.len, 1000);
			assert_memory_equal(r.content.data, buf + 1, 998);
			cap_free(&r.content);
		}
		/* a long line made of ordinary runs and NUL-free splits */
		memset(buf, 'b', 3000);
		memcpy(buf + 3000, "\r\n.\r\n", 5);
		decode(buf, 3005, norm, 0, SPLIT_AT, 1500, &r);
		assert_int_equal(r.fault, DF_LINE_TOO_LONG);
		assert_int_equal(r.consumed, 3005);
		cap_free(&r.content);
	}
	/* normalize: a bare CR ends the line, so two lines of 998 are fine */
	memset(buf, 'a', 998);
	buf[998] = '\r';
	memset(buf + 999, 'b', 998);
	memcpy(buf + 1997, "\r\n.\r\n", 5);
	decode(buf, 2002, 1, 0, SPLIT_WHOLE, 0, &r);
	assert_int_equal(r.fault, DF_OK);
	assert_int_equal(r.content.len, 2000);
	cap_free(&r.content);
	decode(buf, 2002, 0, 0, SPLIT_WHOLE, 0, &r);
	assert_int_equal(r.fault, DF_BARE_CR);
	cap_free(&r.content);
	free(buf);
}

static void test_size_limit(void **state)
{
	static const char in[] = "12345678\r\n..abc\r\n.\r\nQUIT\r\n";
	/* content: "12345678\r\n.abc\r\n" = 16 bytes */
	struct result r;
	uint64_t lim;

	(void)state;
	for (lim = 14; lim <= 17; lim++) {
		decode(S(in), 0, lim, SPLIT_WHOLE, 0, &r);
		assert_int_equal(r.done, 1);
		assert_int_equal(r.consumed, sizeof(in) - 1 - 6);
		assert_int_equal(r.fault, lim < 16 ? DF_TOO_BIG : DF_OK);
		assert_true(r.content.len <= lim);
		assert_true(r.size <= lim);
		cap_free(&r.content);
		decode(S(in), 1, lim, SPLIT_BYTES, 0, &r);
		assert_int_equal(r.fault, lim < 16 ? DF_TOO_BIG : DF_OK);
		assert_int_equal(r.consumed, sizeof(in) - 1 - 6);
		cap_free(&r.content);
	}
	/* 0: no limit */
	decode(S(in), 0, 0, SPLIT_WHOLE, 0, &r);
	assert_int_equal(r.fault, DF_OK);
	assert_int_equal(r.size, 16);
	cap_free(&r.content);
	assert_string_equal(data_fault_name(DF_TOO_BIG), "too-big");
}

static void test_big_and_sink_error(void **state)
{
	size_t n = 200000, i, lines;
	char *buf = malloc(n + 16);
	struct data_decoder d;
	struct cap c;
	int done;

	(void)state;
	assert_non_null(buf);
	/* 78-octet lines, some stuffed */
	for (i = 0, lines = 0; i + 80 <= n; i += 80, lines++) {
		memset(buf + i, 'x', 78);
		if (lines % 7 == 0)
			buf[i] = '.';
		buf[i + 78] = '\r';
		buf[i + 79] = '\n';
	}
	memcpy(buf + i, ".\r\n", 3);
	n = i + 3;

	memset(&c, 0, sizeof(c));
	data_decoder_init(&d, cap_write, &c, 0, 0);
	assert_int_equal(data_decoder_feed(&d, buf, n, &done), n);
	assert_int_equal(done, 1);
	assert_int_equal(d.fault, DF_OK);
	assert_int_equal(c.len, i - (lines + 6) / 7);
	assert_true(c.calls > 1);		/* batched, not one write */
	cap_free(&c);

	/* the sink fails on its second write: framing goes on */
	memset(&c, 0, sizeof(c));
	c.fail_after = 2;
	data_decoder_init(&d, cap_write, &c, 0, 0);
	assert_int_equal(data_decoder_feed(&d, buf, n, &done), n);
	assert_int_equal(done, 1);
	assert_int_equal(d.fault, DF_SINK_ERROR);
	assert_int_equal(c.calls, 2);		/* no writes after the error */
	cap_free(&c);

	/* the sink fails on the final flush */
	memset(&c, 0, sizeof(c));
	c.fail_after = 1;
	data_decoder_init(&d, cap_write, &c, 0, 1);
	assert_int_equal(data_decoder_feed(&d, S("hi\r\n.\r\n"), &done), 7);
	assert_int_equal(done, 1);
	assert_int_equal(d.fault, DF_SINK_ERROR);
	assert_string_equal(data_fault_name(d.fault), "sink-error");
	cap_free(&c);
	free(buf);
}

/* ---- smuggling sequences */

struct eodseq {
	char   b[16];
	size_t len;
	char   hex[32];
};

static int unhex(const char *h, struct eodseq *s)
{
	size_t n = strlen(h), i;
	unsigned v;

	if (n == 0 || n % 2 || n / 2 > sizeof(s->b) || n >= sizeof(s->hex))
		return -1;
	for (i = 0; i < n / 2; i++) {
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		s->b[i] = (char)v;
	}
	s->len = n / 2;
	memcpy(s->hex, h, n + 1);
	return 0;
}

static size_t load_sequences(struct eodseq *seq, size_t max)
{
	const char *dir = getenv("MW_TESTDATA");
	char path[512], line[1024], *tab;
	size_t n = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/smuggling/eod-sequences.txt",
	         dir ? dir : "tests/data");
	fp = fopen(path, "r");
	if (fp == NULL)
		fail_msg("cannot open %s (run from the top of the tree)", path);
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if ((tab = strchr(line, '\t')) == NULL)
			continue;
		*tab = '\0';
		assert_true(n < max);
		assert_int_equal(unhex(line, &seq[n]), 0);
		n++;
	}
	fclose(fp);
	return n;
}

/* has_eod - the sequence itself holds a real CR LF "." CR LF */
static int has_eod(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i + 5 <= len; i++)
		if (memcmp(p + i, "\r\n.\r\n", 5) == 0)
			return 1;
	return 0;
}

static size_t build(char *buf, size_t bufsz, const char *pre, const char *seq,
                    size_t seqlen, const char *post)
{
	size_t a = strlen(pre), c = strlen(post);

	assert_true(a + seqlen + c <= bufsz);
	memcpy(buf, pre, a);
	memcpy(buf + a, seq, seqlen);
	memcpy(buf + a + seqlen, post, c);
	return a + seqlen + c;
}

/* the message shapes of the public scanners (see tests/data/smuggling) */
static const char HDRS[] =
	"From: alice@example.org\r\nTo: bob@example.org\r\n"
	"Subject: smuggling test\r\n\r\n";
static const char SMUGGLED[] =
	"mail FROM:<admin@example.org>\r\nrcpt TO:<bob@example.org>\r\ndata\r\n"
	"From: admin@example.org\r\n\r\nSMUGGLING WORKS\r\n";
static const char TAIL[] = ".\r\nQUIT\r\n";	/* after a CR LF */

static void check_smuggling_case(const char *in, size_t len,
                                 const struct eodseq *s, size_t real_end)
{
	struct result r;
	struct cap w;
	int norm;

	for (norm = 0; norm <= 1; norm++) {
		check_all_splits(in, len, norm, 0, &r);
		assert_int_equal(r.done, 1);
		/* the oracle and the decoder agree on the end */
		assert_int_equal(r.consumed, oracle_end(in, len));
		if (has_eod(s->b, s->len)) {
			/* the sequence holds the real thing: it ends there */
			assert_true(r.consumed < real_end);
		} else if (r.consumed != real_end) {
			fail_msg("sequence %s ended the data at %zu, not %zu",
			         s->hex, r.consumed, real_end);
		}
		if (!norm) {
			/* every sequence has a bare CR, bare LF or NUL */
			if (r.fault == DF_OK)
				fail_msg("sequence %s: no fault in reject mode", s->hex);
			assert_int_equal(r.content.len, 0);
		} else if (memchr(s->b, '\0', s->len) != NULL) {
			assert_int_equal(r.fault, DF_NUL);
		} else {
			assert_int_equal(r.fault, DF_OK);
			assert_true(canonical(r.content.data, r.content.len));
			/* on the wire: exactly one end of data, at the end */
			encode(r.content.data, r.content.len, r.content.len / 2, &w);
			assert_int_equal(count_eod(w.data, w.len), 1);
			assert_true(w.len >= 3);
			assert_memory_equal(w.data + w.len - 3, ".\r\n", 3);
			if (w.len > 3)
				assert_memory_equal(w.data + w.len - 5, "\r\n.\r\n", 5);
			cap_free(&w);
		}
		cap_free(&r.content);
	}
}

static void test_smuggling_sequences(void **state)
{
	struct eodseq seq[32];
	size_t n, i, len, nreal = 0;
	char pre[512], post[512], buf[2048];

	(void)state;
	n = load_sequences(seq, 32);
	assert_int_equal(n, 13);
	for (i = 0; i < n; i++) {
		nreal += has_eod(seq[i].b, seq[i].len);

		/* SEC Consult scanner shape: line CRLF, sequence, CRLF commands */
		snprintf(pre, sizeof(pre), "%sbody line\r\n", HDRS);
		snprintf(post, sizeof(post), "\r\n%s", SMUGGLED);
		len = build(buf, sizeof(buf), pre, seq[i].b, seq[i].len, post);
		memcpy(buf + len, TAIL, strlen(TAIL));
		len += strlen(TAIL);
		check_smuggling_case(buf, len, &seq[i], len - 6);

		/* smtpsmug shape: line CRLF, sequence, more text, CRLF.CRLF */
		snprintf(pre, sizeof(pre), "%sThis is a test mail with a bad ending.\r\n", HDRS);
		snprintf(post, sizeof(post), "This is after a bad mail ending.\r\n\r\n");
		len = build(buf, sizeof(buf), pre, seq[i].b, seq[i].len, post);
		memcpy(buf + len, TAIL, strlen(TAIL));
		len += strlen(TAIL);
		check_smuggling_case(buf, len, &seq[i], len - 6);

		/* the sequence right after text, no line end before it */
		snprintf(pre, sizeof(pre), "%stext", HDRS);
		snprintf(post, sizeof(post), "%s", SMUGGLED);
		len = build(buf, sizeof(buf), pre, seq[i].b, seq[i].len, post);
		memcpy(buf + len, TAIL, strlen(TAIL));
		len += strlen(TAIL);
		check_smuggling_case(buf, len, &seq[i], len - 6);

		/* the sequence at the very start of the data phase */
		len = build(buf, sizeof(buf), "", seq[i].b, seq[i].len, SMUGGLED);
		memcpy(buf + len, TAIL, strlen(TAIL));
		len += strlen(TAIL);
		check_smuggling_case(buf, len, &seq[i], len - 6);
	}
	/* only "\r\r\n.\r\n" holds a real end of data (after a bare CR) */
	assert_int_equal(nreal, 1);
}

/* explicit content for a few, in normalize mode */
static void test_smuggling_normalized_content(void **state)
{
	(void)state;
	expect_decode(S("a\r\n\n.\nMAIL\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n\r\n.\r\nMAIL\r\n"), 0);
	expect_decode(S("a\r\n\r.\rMAIL\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n\r\n.\r\nMAIL\r\n"), 0);
	expect_decode(S("a\r\n\r\n.\nMAIL\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n\r\n.\r\nMAIL\r\n"), 0);
	expect_decode(S("a\r\n\r\n.\r\r\nMAIL\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n\r\n.\r\n\r\nMAIL\r\n"), 0);
	expect_decode(S("a\r\n\n.\r\nMAIL\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n\r\n.\r\nMAIL\r\n"), 0);
	/* the real end inside "\r\r\n.\r\n" */
	expect_decode(S("a\r\n\r\r\n.\r\nMAIL\r\n.\r\n"), 1, DF_OK,
	              S("a\r\n\r\n\r\n"), 9);
	expect_decode(S("a\r\n\r\r\n.\r\nMAIL\r\n.\r\n"), 0, DF_BARE_CR,
	              NULL, 0, 9);
}

/* ---- encoder */

static void expect_encode(const char *in, size_t len, const char *wire,
                          size_t wlen)
{
	struct cap w;
	size_t k;

	for (k = 0; k <= len; k++) {
		encode(in, len, k, &w);
		assert_int_equal(w.len, wlen);
		assert_memory_equal(w.data, wire, wlen);
		cap_free(&w);
	}
}

static void test_encoder(void **state)
{
	struct data_encoder e;
	struct cap w;

	(void)state;
	expect_encode(S(""), S(".\r\n"));
	expect_encode(S("a\r\n"), S("a\r\n.\r\n"));
	expect_encode(S("a"), S("a\r\n.\r\n"));
	expect_encode(S(".\r\n"), S("..\r\n.\r\n"));
	expect_encode(S("."), S("..\r\n.\r\n"));
	expect_encode(S("..x\r\n.\r\nb.c\r\n"), S("...x\r\n..\r\nb.c\r\n.\r\n"));
	expect_encode(S("\r\n"), S("\r\n.\r\n"));
	/* bare CR / LF become CRLF, and their lines are stuffed too */
	expect_encode(S("a\nb\rc"), S("a\r\nb\r\nc\r\n.\r\n"));
	expect_encode(S("a\n.\n"), S("a\r\n..\r\n.\r\n"));
	expect_encode(S("a\r.\r"), S("a\r\n..\r\n.\r\n"));
	expect_encode(S("a\r\r\n.\r\n"), S("a\r\n\r\n..\r\n.\r\n"));
	expect_encode(S("\r"), S("\r\n.\r\n"));
	expect_encode(S("\n"), S("\r\n.\r\n"));
	expect_encode(S("a\r\n\0.\r\n"), S("a\r\n\0.\r\n.\r\n"));

	/* CR at the end of one feed, LF in the next, many feeds */
	memset(&w, 0, sizeof(w));
	data_encoder_init(&e);
	assert_int_equal(data_encoder_feed(&e, S("a\r"), cap_write, &w), 0);
	assert_int_equal(data_encoder_feed(&e, S("\n"), cap_write, &w), 0);
	assert_int_equal(data_encoder_feed(&e, S(""), cap_write, &w), 0);
	assert_int_equal(data_encoder_feed(&e, S("."), cap_write, &w), 0);
	assert_int_equal(data_encoder_feed(&e, S("\r"), cap_write, &w), 0);
	assert_int_equal(data_encoder_finish(&e, cap_write, &w), 0);
	assert_int_equal(w.len, strlen("a\r\n..\r\n.\r\n"));
	assert_memory_equal(w.data, "a\r\n..\r\n.\r\n", w.len);
	cap_free(&w);

	/* out() failing is reported */
	memset(&w, 0, sizeof(w));
	w.fail_after = 1;
	data_encoder_init(&e);
	assert_int_equal(data_encoder_feed(&e, S("abc\r\n"), cap_write, &w), -1);
	assert_int_equal(data_encoder_finish(&e, cap_write, &w), -1);
	cap_free(&w);
}

/* decode(encode(x)) == x for canonical x */
static void test_roundtrip(void **state)
{
	static const char *const x[] = {
		"",
		"\r\n",
		"a\r\n",
		".\r\n",
		"..\r\n",
		"...\r\n",
		".\r\n.\r\n.\r\n",
		"Subject: hi\r\n\r\n.\r\n..\r\n. \r\nbody\r\n",
		"\r\n\r\n\r\n",
		"x.\r\n.x\r\n\r\n.\r\n",
		"\xff\xfe\x80.\r\n.\xc3\xa9\r\n",
	};
	struct result r;
	struct cap w;
	size_t i, k, len;
	char big[20000];

	(void)state;
	for (i = 0; i < sizeof(x) / sizeof(x[0]); i++) {
		len = strlen(x[i]);
		for (k = 0; k <= len; k++) {
			encode(x[i], len, k, &w);
			assert_int_equal(count_eod(w.data, w.len), 1);
			check_all_splits(w.data, w.len, 0, 0, &r);
			assert_int_equal(r.done, 1);
			assert_int_equal(r.consumed, w.len);
			assert_int_equal(r.fault, DF_OK);
			assert_int_equal(r.content.len, len);
			if (len)
				assert_memory_equal(r.content.data, x[i], len);
			cap_free(&r.content);
			cap_free(&w);
		}
	}
	/* a big one with dot lines across the decoder's batch size */
	for (i = 0, len = 0; len + 12 < sizeof(big); i++) {
		memcpy(big + len, i % 3 ? ".line.\r\n" : "..\r\n", i % 3 ? 8 : 4);
		len += i % 3 ? 8 : 4;
	}
	encode(big, len, 8191, &w);
	assert_int_equal(count_eod(w.data, w.len), 1);
	decode(w.data, w.len, 0, 0, SPLIT_AT, 8193, &r);
	assert_int_equal(r.fault, DF_OK);
	assert_int_equal(r.consumed, w.len);
	assert_int_equal(r.content.len, len);
	assert_memory_equal(r.content.data, big, len);
	cap_free(&r.content);
	cap_free(&w);
}

/* ---- the fast paths
 *
 * The decoder and the encoder take runs of ordinary octets and whole lines
 * in one step.  A byte-by-byte feed never does (no line and its CR LF ever
 * sit in one 1-octet chunk), so it follows the plain rules; every other
 * chunking must give the same answer.  With a fault, the size and what
 * reached the sink may depend on the chunking (only whole batches get out,
 * and a fault drops the batch), so only the framing is compared then. */

static uint32_t xrand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* same_framing - what must not depend on the chunking */
static void same_framing(const struct result *a, const struct result *b)
{
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->done, b->done);
	assert_int_equal(a->fault, b->fault);
	assert_int_equal(a->bare_lf, b->bare_lf);
	assert_int_equal(a->bare_cr, b->bare_cr);
	assert_int_equal(a->nul, b->nul);
	if (a->fault == DF_OK) {
		assert_int_equal(a->size, b->size);
		assert_int_equal(a->content.len, b->content.len);
		if (a->content.len)
			assert_memory_equal(a->content.data, b->content.data,
			                    a->content.len);
	}
}

/* check_chunkings - byte by byte, whole, and in chunks of many sizes, with
 * the same answer; the byte-by-byte result is left in *r */
static void check_chunkings(const char *in, size_t len, int normalize,
                            uint64_t limit, struct result *r)
{
	static const size_t every[] = {
		2, 3, 4, 5, 7, 8, 13, 15, 16, 17, 31, 32, 33, 64, 77, 78, 79,
		80, 81, 100, 997, 998, 999, 1000, 1001, 4096, 8191, 8192, 8193
	};
	struct result t;
	size_t i, k;

	decode(in, len, normalize, limit, SPLIT_BYTES, 0, r);
	decode(in, len, normalize, limit, SPLIT_WHOLE, 0, &t);
	same_framing(r, &t);
	cap_free(&t.content);
	for (i = 0; i < sizeof(every) / sizeof(every[0]); i++) {
		decode(in, len, normalize, limit, SPLIT_EVERY, every[i], &t);
		same_framing(r, &t);
		cap_free(&t.content);
	}
	for (k = 1; k < len; k += 1 + k / 8) {
		decode(in, len, normalize, limit, SPLIT_AT, k, &t);
		same_framing(r, &t);
		cap_free(&t.content);
	}
}

/* add - append n octets to buf[*len], within cap */
static void add(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
	assert_true(*len + n <= cap);
	memcpy(buf + *len, p, n);
	*len += n;
}

/* text_lines - lines of every length from 0 to 80 and from 990 to 998,
 * crossing every 16-octet boundary, every fifth one stuffed; the wire form
 * goes to wire, the content to content */
static void text_lines(char *wire, size_t *wlen, char *content, size_t *clen,
                       size_t cap)
{
	char line[1000];
	size_t n, i;

	for (n = 0; n <= 998; n = n == 80 ? 990 : n + 1) {
		for (i = 0; i < n; i++)
			line[i] = (char)('a' + (n + i) % 26);
		if (n > 0 && n % 5 == 0 && n < 998)
			add(wire, cap, wlen, ".", 1);	/* stuffed */
		add(wire, cap, wlen, line, n);
		add(wire, cap, wlen, "\r\n", 2);
		add(content, cap, clen, line, n);
		add(content, cap, clen, "\r\n", 2);
	}
}

static void test_fast_path_decoder(void **state)
{
	size_t cap = 40000, wlen = 0, clen = 0, base, base_c;
	char *wire = malloc(cap), *content = malloc(cap);
	struct result r;
	int norm;

	(void)state;
	assert_non_null(wire);
	assert_non_null(content);
	text_lines(wire, &wlen, content, &clen, cap);
	text_lines(wire, &wlen, content, &clen, cap);
	base = wlen;
	base_c = clen;
	add(wire, cap, &wlen, ".\r\nQUIT\r\n", 9);
	for (norm = 0; norm <= 1; norm++) {
		check_chunkings(wire, wlen, norm, 0, &r);
		assert_int_equal(r.done, 1);
		assert_int_equal(r.consumed, wlen - 6);
		assert_int_equal(r.fault, DF_OK);
		assert_int_equal(r.content.len, clen);
		assert_memory_equal(r.content.data, content, clen);
		cap_free(&r.content);
		/* the size limit, exactly met and one short */
		check_chunkings(wire, wlen, norm, clen, &r);
		assert_int_equal(r.fault, DF_OK);
		cap_free(&r.content);
		check_chunkings(wire, wlen, norm, clen - 1, &r);
		assert_int_equal(r.fault, DF_TOO_BIG);
		assert_int_equal(r.consumed, wlen - 6);
		cap_free(&r.content);
		check_chunkings(wire, wlen, norm, clen / 2, &r);
		assert_int_equal(r.fault, DF_TOO_BIG);
		cap_free(&r.content);
	}

	/* one bad octet after all those lines, then more lines: the fault is
	 * found wherever the chunks fall, and the end of data too */
	{
		static const struct {
			const char     *bad;
			size_t          len;
			enum data_fault reject, normalize;
		} t[] = {
			{ "ab\0cd\r\n", 7, DF_NUL, DF_NUL },
			{ "\0\r\n", 3, DF_NUL, DF_NUL },
			{ "ab\rcd\r\n", 7, DF_BARE_CR, DF_OK },
			{ "ab\ncd\r\n", 7, DF_BARE_LF, DF_OK },
			{ "ab\r\r\n", 5, DF_BARE_CR, DF_OK },
			{ "\n.\n", 3, DF_BARE_LF, DF_OK },
			{ ".\r.\r\n", 5, DF_BARE_CR, DF_OK },
		};
		size_t i;

		for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			wlen = base;
			clen = base_c;
			add(wire, cap, &wlen, t[i].bad, t[i].len);
			text_lines(wire, &wlen, content, &clen, cap);
			add(wire, cap, &wlen, ".\r\n", 3);
			for (norm = 0; norm <= 1; norm++) {
				check_chunkings(wire, wlen, norm, 0, &r);
				assert_int_equal(r.done, 1);
				assert_int_equal(r.consumed, wlen);
				assert_int_equal(r.fault, norm ? t[i].normalize
				                                : t[i].reject);
				cap_free(&r.content);
			}
		}
	}

	/* a 999-octet line after them */
	wlen = base;
	memset(wire + wlen, 'z', 999);
	wlen += 999;
	add(wire, cap, &wlen, "\r\nabc\r\n.\r\n", 10);
	for (norm = 0; norm <= 1; norm++) {
		check_chunkings(wire, wlen, norm, 0, &r);
		assert_int_equal(r.fault, DF_LINE_TOO_LONG);
		assert_int_equal(r.consumed, wlen);
		cap_free(&r.content);
	}
	free(wire);
	free(content);
}

/* random streams made mostly of the octets the framer looks at */
static size_t noise(char *buf, size_t cap, uint32_t *s)
{
	static const char *const piece[] = {
		"\r\n", "\r\n", "\r\n", "\r", "\n", ".", "..", "\r\n.", "\0",
		"abc", "hello world ", "x", "\r\n\r\n", ".\r\n", "\r\n.\r"
	};
	size_t len = 0, want = 64 + xrand(s) % (cap - 1200), k, n;

	while (len < want) {
		k = xrand(s) % (sizeof(piece) / sizeof(piece[0]) + 2);
		if (k >= sizeof(piece) / sizeof(piece[0])) {
			/* a long run, sometimes around the line limit */
			n = k % 2 ? xrand(s) % 100 : 990 + xrand(s) % 12;
			memset(buf + len, 'a' + (char)(xrand(s) % 3), n);
			len += n;
			continue;
		}
		n = k == 8 ? 1 : strlen(piece[k]);
		if (k == 8 && xrand(s) % 4 != 0)
			continue;	/* NUL: now and then only */
		memcpy(buf + len, piece[k], n);
		len += n;
	}
	return len;
}

static void test_fast_path_noise(void **state)
{
	char *buf = malloc(12000);
	struct result r;
	uint32_t s = 2463534242u;
	size_t len;
	int i;

	(void)state;
	assert_non_null(buf);
	for (i = 0; i < 120; i++) {
		len = noise(buf, 12000, &s);
		check_chunkings(buf, len, i & 1, 0, &r);
		cap_free(&r.content);
		if (i % 4 == 0) {
			check_chunkings(buf, len, i & 1, 1 + xrand(&s) % len, &r);
			cap_free(&r.content);
		}
	}
	free(buf);
}

/* decode_sink - whole or byte by byte, into a sink that fails on its
 * fail_after-th write (0: never) */
static void decode_sink(const char *in, size_t len, int bytes, int fail_after,
                        struct data_decoder *d, struct cap *c)
{
	size_t off = 0, n;
	int done = 0;

	memset(c, 0, sizeof(*c));
	c->fail_after = fail_after;
	data_decoder_init(d, cap_write, c, 0, 0);
	while (off < len && !done) {
		n = data_decoder_feed(d, in + off, bytes ? 1 : len - off, &done);
		off += n;
	}
	assert_int_equal(done, 1);
	assert_int_equal(off, len);
}

static void test_fast_path_batches(void **state)
{
	size_t cap = 100000, len = 0, clen, n;
	char *buf = malloc(cap), line[80];
	struct data_decoder d;
	struct cap a, b;
	uint32_t s = 7;
	int fail;

	(void)state;
	assert_non_null(buf);
	/* lines of 1 to 78 octets, so that batches end anywhere in a line */
	while (len < cap - 200) {
		n = 1 + xrand(&s) % 78;
		memset(line, 'a' + (char)(n % 26), n);
		add(buf, cap, &len, line, n);
		add(buf, cap, &len, "\r\n", 2);
	}
	clen = len;
	add(buf, cap, &len, ".\r\n", 3);

	decode_sink(buf, len, 1, 0, &d, &a);
	decode_sink(buf, len, 0, 0, &d, &b);
	assert_int_equal(d.fault, DF_OK);
	assert_int_equal(a.len, clen);
	assert_int_equal(b.len, clen);
	assert_memory_equal(a.data, buf, clen);
	assert_memory_equal(b.data, buf, clen);
	/* the same writes: full batches, then the rest */
	assert_int_equal(a.calls, b.calls);
	assert_int_equal(b.calls, (int)((clen + sizeof(d.out) - 1) / sizeof(d.out)));
	cap_free(&a);
	cap_free(&b);

	for (fail = 1; fail <= 4; fail++) {
		decode_sink(buf, len, 1, fail, &d, &a);
		assert_int_equal(d.fault, DF_SINK_ERROR);
		decode_sink(buf, len, 0, fail, &d, &b);
		assert_int_equal(d.fault, DF_SINK_ERROR);
		assert_int_equal(a.calls, fail);
		assert_int_equal(b.calls, fail);
		assert_int_equal(a.len, b.len);
		assert_int_equal(a.len, (size_t)(fail - 1) * sizeof(d.out));
		cap_free(&a);
		cap_free(&b);
	}
	free(buf);
}

/* ref_encode - the encoder's rules, one octet at a time */
static void ref_encode(const char *p, size_t len, struct cap *w)
{
	int bol = 1;
	size_t i;

	memset(w, 0, sizeof(*w));
	for (i = 0; i < len; i++) {
		if (p[i] == '\r' || p[i] == '\n') {
			cap_write(w, "\r\n", 2);	/* CR LF, bare CR, bare LF */
			bol = 1;
			if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
				i++;
			continue;
		}
		if (bol && p[i] == '.')
			cap_write(w, ".", 1);
		cap_write(w, p + i, 1);
		bol = 0;
	}
	if (bol)
		cap_write(w, ".\r\n", 3);
	else
		cap_write(w, "\r\n.\r\n", 5);
}

/* encode_every - content -> wire form, in chunks of k octets */
static void encode_every(const char *p, size_t len, size_t k, struct cap *w)
{
	struct data_encoder e;
	size_t off, n;

	memset(w, 0, sizeof(*w));
	data_encoder_init(&e);
	for (off = 0; off < len; off += n) {
		n = len - off < k ? len - off : k;
		assert_int_equal(data_encoder_feed(&e, p + off, n, cap_write, w), 0);
	}
	assert_int_equal(data_encoder_finish(&e, cap_write, w), 0);
}

static void check_encode(const char *p, size_t len)
{
	static const size_t every[] = {
		1, 2, 3, 5, 15, 16, 17, 64, 79, 80, 81, 8191, 8192, 8193, 65536
	};
	struct cap ref, w;
	size_t i, k;

	ref_encode(p, len, &ref);
	assert_int_equal(count_eod(ref.data, ref.len), 1);
	assert_true(canonical(ref.data, ref.len));
	for (i = 0; i < sizeof(every) / sizeof(every[0]); i++) {
		encode_every(p, len, every[i], &w);
		assert_int_equal(w.len, ref.len);
		assert_memory_equal(w.data, ref.data, ref.len);
		cap_free(&w);
	}
	for (k = 0; k <= len; k += 1 + k / 4) {
		encode(p, len, k, &w);
		assert_int_equal(w.len, ref.len);
		assert_memory_equal(w.data, ref.data, ref.len);
		cap_free(&w);
	}
	cap_free(&ref);
}

static void test_fast_path_encoder(void **state)
{
	size_t cap = 40000, wlen = 0, clen = 0, len;
	char *wire = malloc(cap), *content = malloc(cap);
	uint32_t s = 88675123u;
	int i;

	(void)state;
	assert_non_null(wire);
	assert_non_null(content);
	/* canonical text with lines of every length, and its dot lines */
	text_lines(wire, &wlen, content, &clen, cap);
	check_encode(content, clen);
	check_encode(wire, wlen);
	/* the same without its last CR LF, and with bare ends */
	check_encode(content, clen - 2);
	check_encode(content, clen - 1);
	/* noise: bare CR and LF everywhere, dots after them, NUL */
	for (i = 0; i < 60; i++) {
		len = noise(wire, 12000, &s);
		check_encode(wire, len);
	}
	free(wire);
	free(content);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_pipelined_not_consumed),
		cmocka_unit_test(test_unstuffing),
		cmocka_unit_test(test_bare_lf_reject),
		cmocka_unit_test(test_bare_normalize),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_big_and_sink_error),
		cmocka_unit_test(test_smuggling_sequences),
		cmocka_unit_test(test_smuggling_normalized_content),
		cmocka_unit_test(test_encoder),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_fast_path_decoder),
		cmocka_unit_test(test_fast_path_noise),
		cmocka_unit_test(test_fast_path_batches),
		cmocka_unit_test(test_fast_path_encoder),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
