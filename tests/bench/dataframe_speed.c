/* dataframe_speed.c - throughput of the DATA decoder and the dot-stuffing
 * encoder (proxy/dataframe.c) on typical text messages.  A benchmark, not a
 * test: it asserts nothing about time and is not run by "make check".
 *
 * Build and run (from the top of the tree):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g -Iinclude -I. \
 *     tests/bench/dataframe_speed.c proxy/dataframe.c -o build/dataframe_speed
 *   build/dataframe_speed
 *
 * Messages: a 10 KB one (headers and plain text) and a 30 MB one (headers,
 * some text and a base64 attachment in 76-octet lines), both made from a
 * fixed seed; a few text lines start with "." so that stuffing happens.
 * The decoder reads the wire form in 16 KB chunks (a socket read), the
 * encoder the content in 64 KB chunks (RELAY_CHUNK in session.c).  Each case
 * runs for about half a second, five times; the best MB/s (10^6 octets of
 * input per second) is printed.  The output of one pass is checked against
 * the input (encode then decode gives the content back) so a broken build
 * cannot print a fast, meaningless figure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/dataframe.h"

struct buf {
	char  *p;		/* owned */
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL) {
			perror("realloc");
			exit(1);
		}
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static int buf_put(void *arg, const char *p, size_t n)
{
	buf_add(arg, p, n);
	return 0;
}

/* count_put - the sink of the timed runs: counts, touches nothing */
static int count_put(void *arg, const char *p, size_t n)
{
	(void)p;
	*(uint64_t *)arg += n;
	return 0;
}

static uint32_t rng(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static const char *const words[] = {
	"the", "of", "and", "to", "a", "in", "is", "message", "proxy", "mail",
	"server", "delivery", "queue", "that", "for", "with", "on", "as",
	"upstream", "filter", "we", "will", "be", "meeting", "Thursday",
	"attached", "please", "find", "regards", "report", "2024", "budget",
	"--", "re:", "https://example.org/x", "(see", "below)", "thanks,"
};

/* make_text - lines of words up to ~72 octets, blank lines between
 * paragraphs, now and then a line that starts with "." */
static void make_text(struct buf *b, size_t want, uint32_t *s)
{
	char   line[128];
	size_t n, w;

	while (want > b->len) {
		n = 0;
		if (rng(s) % 150 == 0)
			line[n++] = '.';
		for (;;) {
			w = rng(s) % (sizeof(words) / sizeof(words[0]));
			if (n + strlen(words[w]) + 1 > 72)
				break;
			if (n > 0 && line[n - 1] != '.')
				line[n++] = ' ';
			memcpy(line + n, words[w], strlen(words[w]));
			n += strlen(words[w]);
			if (rng(s) % 12 == 0)
				break;
		}
		buf_add(b, line, n);
		buf_add(b, "\r\n", 2);
		if (rng(s) % 8 == 0)
			buf_add(b, "\r\n", 2);
	}
}

static void make_base64(struct buf *b, size_t want, uint32_t *s)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char   line[78];
	size_t i;

	while (want > b->len) {
		for (i = 0; i < 76; i++)
			line[i] = b64[rng(s) % 64];
		line[76] = '\r';
		line[77] = '\n';
		buf_add(b, line, 78);
	}
}

static void make_message(struct buf *b, size_t size, uint32_t seed)
{
	uint32_t s = seed;

	buf_str(b, "Return-Path: <alice@example.org>\r\n"
	    "Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n"
	    "\tby mail.example.net with ESMTPS id 4Xy2Zq1abcz9sT\r\n"
	    "\tfor <bob@example.net>; Tue, 14 May 2024 10:11:12 +0200\r\n"
	    "From: Alice <alice@example.org>\r\n"
	    "To: Bob <bob@example.net>\r\n"
	    "Subject: quarterly report and the meeting on Thursday\r\n"
	    "Date: Tue, 14 May 2024 10:11:10 +0200\r\n"
	    "Message-ID: <20240514081110.12345@mx.example.org>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	    "\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
	if (size < 100000) {
		make_text(b, size, &s);
		return;
	}
	make_text(b, 40000, &s);
	buf_str(b, "--b1\r\nContent-Type: application/pdf\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	make_base64(b, size - 8, &s);
	buf_str(b, "--b1--\r\n");
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void decode_once(const struct buf *wire, size_t chunk, void *arg,
                        data_sink_fn sink, struct data_decoder *d)
{
	size_t off = 0, n, k;
	int    done = 0;

	data_decoder_init(d, sink, arg, 0, 0);
	while (off < wire->len && !done) {
		k = wire->len - off < chunk ? wire->len - off : chunk;
		n = data_decoder_feed(d, wire->p + off, k, &done);
		off += n;
	}
	if (!done || off != wire->len || d->fault != DF_OK) {
		fprintf(stderr, "decode: done=%d off=%zu/%zu fault=%s\n", done,
		    off, wire->len, data_fault_name(d->fault));
		exit(1);
	}
}

static void encode_once(const struct buf *content, size_t chunk, void *arg,
                        data_out_fn out)
{
	struct data_encoder e;
	size_t off, k;

	data_encoder_init(&e);
	for (off = 0; off < content->len; off += k) {
		k = content->len - off < chunk ? content->len - off : chunk;
		if (data_encoder_feed(&e, content->p + off, k, out, arg) < 0)
			exit(1);
	}
	if (data_encoder_finish(&e, out, arg) < 0)
		exit(1);
}

static void bench(const char *name, size_t size, uint32_t seed)
{
	static struct data_decoder d;	/* 8 KB batch: keep it off the stack */
	struct buf content = { 0 }, wire = { 0 }, back = { 0 };
	double t0, t, best_dec = 0, best_enc = 0;
	uint64_t sink = 0;
	long   reps, r;
	int    round;

	make_message(&content, size, seed);
	encode_once(&content, 65536, &wire, buf_put);
	decode_once(&wire, 16384, &back, buf_put, &d);
	if (back.len != content.len || memcmp(back.p, content.p, back.len) != 0) {
		fprintf(stderr, "%s: round trip differs\n", name);
		exit(1);
	}
	reps = (long)(300e6 / (double)content.len) + 1;
	for (round = 0; round < 5; round++) {
		t0 = now();
		for (r = 0; r < reps; r++)
			decode_once(&wire, 16384, &sink, count_put, &d);
		t = now() - t0;
		if ((double)wire.len * (double)reps / t / 1e6 > best_dec)
			best_dec = (double)wire.len * (double)reps / t / 1e6;
		t0 = now();
		for (r = 0; r < reps; r++)
			encode_once(&content, 65536, &sink, count_put);
		t = now() - t0;
		if ((double)content.len * (double)reps / t / 1e6 > best_enc)
			best_enc = (double)content.len * (double)reps / t / 1e6;
	}
	printf("%-6s %9zu octets  decode %8.0f MB/s  encode %8.0f MB/s\n",
	    name, content.len, best_dec, best_enc);
	free(content.p);
	free(wire.p);
	free(back.p);
}

int main(void)
{
	bench("10KB", 10 * 1024, 12345);
	bench("30MB", 30 * 1024 * 1024, 54321);
	return 0;
}
