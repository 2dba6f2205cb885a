/* test_pgp_packet.c - the OpenPGP reader (filters/pgp_packet.c): messages
 * made by gpg (tests/data/pgp, README there), and messages built here
 * packet by packet for what gpg does not write: partial lengths, nesting,
 * bombs, truncation, encrypted and malformed ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <zlib.h>

#include "filters/pgp_packet.h"

#define MAX (64u << 20)

static unsigned char *slurp(const char *name, size_t *n)
{
	char path[256];
	FILE *f;
	unsigned char *b = malloc(1 << 16);

	snprintf(path, sizeof(path), "tests/data/pgp/%s", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	*n = fread(b, 1, 1 << 16, f);
	fclose(f);
	return b;
}

static enum pgp_result rd(const unsigned char *d, size_t n, int armored, size_t max,
                          struct pgp_literal *lit)
{
	char why[150];
	enum pgp_result r = pgp_read(d, n, armored, max, lit, why, sizeof(why));

	if (r == PGP_LITERAL)
		assert_string_equal(why, "");
	else
		assert_true(r == PGP_NONE || r == PGP_ENCRYPTED || why[0] != '\0');
	return r;
}

static void test_gpg_made(void **state)
{
	static const char *const files[] = { "signed-zip.gpg", "signed-zlib.gpg", "signed-bzip2.gpg",
	                                      "signed-none.gpg" };
	struct pgp_literal lit;
	size_t n;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		unsigned char *b = slurp(files[i], &n);

		assert_true(pgp_binary_sniff(b, n));
		assert_int_equal(rd(b, n, 0, MAX, &lit), PGP_LITERAL);
		assert_int_equal(lit.len, 12);
		assert_memory_equal(lit.data, "hello world\n", 12);
		assert_string_equal(lit.name, "hello.txt");
		assert_int_equal(lit.format, 'b');
		free(lit.data);
		/* the size bound: 11 bytes may not hold it */
		assert_int_equal(rd(b, n, 0, 11, &lit), PGP_LIMIT);
		assert_null(lit.data);
		free(b);
	}
}

static void test_armored(void **state)
{
	struct pgp_literal lit;
	size_t n, pos = 0, at, len;
	unsigned char *b = slurp("signed-zip.asc", &n), *text, *crc;
	size_t tn;

	assert_int_equal(rd(b, n, 1, MAX, &lit), PGP_LITERAL);
	assert_memory_equal(lit.data, "hello world\n", 12);
	free(lit.data);
	/* in a text body, CRLF lines, between other text: found, and read */
	tn = n + 200;
	text = malloc(tn * 2);
	tn = (size_t)sprintf((char *)text, "Hi,\r\nhere it is:\r\n");
	for (size_t i = 0; i < n; i++) {
		if (b[i] == '\n')
			text[tn++] = '\r';
		text[tn++] = b[i];
	}
	tn += (size_t)sprintf((char *)text + tn, "\r\nbye\r\n");
	assert_true(pgp_armor_find(text, tn, &pos, &at, &len));
	assert_int_equal(at, 18);
	assert_int_equal(rd(text + at, len, 1, MAX, &lit), PGP_LITERAL);
	assert_memory_equal(lit.data, "hello world\n", 12);
	free(lit.data);
	assert_false(pgp_armor_find(text, tn, &pos, &at, &len));
	/* the checksum is optional, and checked when present */
	crc = (unsigned char *)strstr((char *)b, "\n=");
	assert_non_null(crc);
	crc[2] = crc[2] == 'A' ? 'B' : 'A';
	assert_int_equal(rd(b, n, 1, MAX, &lit), PGP_MALFORMED);
	memmove(crc + 1, crc + 7, n - (size_t)(crc + 7 - b));
	assert_int_equal(rd(b, n - 6, 1, MAX, &lit), PGP_LITERAL);
	free(lit.data);
	/* a quoted block ("> -----BEGIN") is not at a line start */
	pos = 0;
	assert_false(pgp_armor_find((const unsigned char *)"> -----BEGIN PGP MESSAGE-----\n", 30, &pos, &at, &len));
	free(text);
	free(b);
}

static void test_truncated(void **state)
{
	struct pgp_literal lit;
	size_t n, an;
	unsigned char *b = slurp("signed-zip.gpg", &n), *a = slurp("signed-zip.asc", &an);

	/* a compressed stream cut anywhere does not end: never read */
	for (size_t k = 0; k < n; k++) {
		enum pgp_result r = rd(b, k, 0, MAX, &lit);

		if (r != PGP_MALFORMED)
			fail_msg("prefix of %zu bytes: %d", k, r);
	}
	/* the armor cut before its END line is whole (the last byte is
	 * the line's newline) */
	for (size_t k = 0; k < an - 1; k++)
		assert_int_equal(rd(a, k, 1, MAX, &lit), PGP_MALFORMED);
	assert_int_equal(rd(a, an - 1, 1, MAX, &lit), PGP_LITERAL);
	free(lit.data);
	free(a);
	free(b);
}

/* --- messages built here --------------------------------------------------- */

struct buf {
	unsigned char *d;
	size_t n;
};

static void put(struct buf *b, const void *d, size_t n)
{
	b->d = realloc(b->d, b->n + n + 1);
	memcpy(b->d + b->n, d, n);
	b->n += n;
}

/* a new-format packet with a five-octet length */
static struct buf packet(unsigned tag, const unsigned char *body, size_t n)
{
	struct buf b = { 0 };
	unsigned char h[6] = { (unsigned char)(0xc0 | tag), 255, (unsigned char)(n >> 24),
	                       (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n };

	put(&b, h, 6);
	put(&b, body, n);
	return b;
}

static struct buf literal_packet(const char *name, const unsigned char *data, size_t n)
{
	struct buf body = { 0 }, p;
	unsigned char h[2] = { 'b', (unsigned char)strlen(name) };

	put(&body, h, 2);
	put(&body, name, strlen(name));
	put(&body, "\0\0\0\0", 4);
	put(&body, data, n);
	p = packet(11, body.d, body.n);
	free(body.d);
	return p;
}

/* a compressed packet of inner: algorithm 0 (stored) or 2 (ZLIB) */
static struct buf compressed(const struct buf *inner, int algo)
{
	struct buf body = { 0 }, p;
	unsigned char a = (unsigned char)algo;

	put(&body, &a, 1);
	if (algo == 0)
		put(&body, inner->d, inner->n);
	else {
		uLongf zn = compressBound(inner->n);
		unsigned char *z = malloc(zn);

		assert_int_equal(compress2(z, &zn, inner->d, inner->n, 9), Z_OK);
		put(&body, z, zn);
		free(z);
	}
	p = packet(8, body.d, body.n);
	free(body.d);
	return p;
}

static void test_partial_lengths(void **state)
{
	/* literal data in partial chunks of 512, 1 and 2 bytes, then a last
	 * length: joined */
	struct buf m = { 0 };
	struct pgp_literal lit;
	unsigned char data[600], c;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)i;
	c = 0xc0 | 11;
	put(&m, &c, 1);
	c = 224 + 9;                         /* 512 */
	put(&m, &c, 1);
	put(&m, "b\x01x\0\0\0\0", 7);
	put(&m, data, 505);
	c = 224;                             /* 1 */
	put(&m, &c, 1);
	put(&m, data + 505, 1);
	c = 225;                             /* 2 */
	put(&m, &c, 1);
	put(&m, data + 506, 2);
	c = 92;                              /* the last 92 */
	put(&m, &c, 1);
	put(&m, data + 508, 92);
	assert_true(pgp_binary_sniff(m.d, m.n));
	assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_LITERAL);
	assert_int_equal(lit.len, 600);
	assert_memory_equal(lit.data, data, 600);
	assert_string_equal(lit.name, "x");
	free(lit.data);
	/* the last length missing: truncated */
	assert_int_equal(rd(m.d, m.n - 93, 0, MAX, &lit), PGP_MALFORMED);
	free(m.d);
	/* partial lengths on a packet that may not have them */
	m = (struct buf){ 0 };
	put(&m, "\xc4\xe0\x03\x01", 4);
	assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_MALFORMED);
	free(m.d);
}

static void test_nesting(void **state)
{
	struct buf m = literal_packet("n.txt", (const unsigned char *)"deep", 4), next;
	struct pgp_literal lit;

	for (int depth = 1; depth <= PGP_MAX_DEPTH + 1; depth++) {
		next = compressed(&m, depth % 2 ? 2 : 0);
		free(m.d);
		m = next;
		if (depth <= PGP_MAX_DEPTH) {
			assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_LITERAL);
			assert_memory_equal(lit.data, "deep", 4);
			free(lit.data);
		} else
			assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_LIMIT);
	}
	free(m.d);
}

static void test_bombs(void **state)
{
	size_t big = 16u << 20, o = 0;
	unsigned char *lines = malloc(big + 64), *zeros = calloc(1, big);
	struct buf lp, c1, zp, z1, z2;
	struct pgp_literal lit;

	while (o < big)
		o += (size_t)sprintf((char *)lines + o, "log line %08zu: nothing happened\n", o);
	lp = literal_packet("log.txt", lines, big);
	c1 = compressed(&lp, 2);
	/* 16 MiB of text from well under 1 MB: read */
	assert_int_equal(rd(c1.d, c1.n, 0, MAX, &lit), PGP_LITERAL);
	assert_int_equal(lit.len, big);
	assert_memory_equal(lit.data, lines, big);
	free(lit.data);
	/* ... but not past the size bound */
	assert_int_equal(rd(c1.d, c1.n, 0, 1u << 20, &lit), PGP_LIMIT);
	/* zeros compressed twice, about 100 bytes: a bomb, stopped once
	 * past the ratio, whatever the size bound */
	zp = literal_packet("z.bin", zeros, big);
	z1 = compressed(&zp, 2);
	z2 = compressed(&z1, 2);
	assert_true(z2.n < 200);
	assert_int_equal(rd(z2.d, z2.n, 0, MAX, &lit), PGP_LIMIT);
	free(z2.d);
	free(z1.d);
	free(zp.d);
	free(c1.d);
	free(lp.d);
	free(zeros);
	free(lines);
}

static void test_encrypted_and_odd(void **state)
{
	struct pgp_literal lit;
	struct buf m = { 0 }, l = literal_packet("a", (const unsigned char *)"x", 1), k;
	static const unsigned char pkesk[] = { 0x84, 0x03, 0x03, 0x01, 0x02 };
	unsigned char junk[64];

	/* session key, then encrypted data: nothing to read */
	put(&m, pkesk, sizeof(pkesk));
	put(&m, "\xd2\x02\x01\x00", 4);
	assert_true(pgp_binary_sniff(m.d, m.n));
	assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_ENCRYPTED);
	free(m.d);
	/* two literal data packets: which one is shown is the reader's guess */
	m = (struct buf){ 0 };
	put(&m, l.d, l.n);
	put(&m, l.d, l.n);
	assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_MALFORMED);
	free(m.d);
	/* a key packet: no message */
	k = packet(6, (const unsigned char *)"\x04\0\0\0\0\x16", 6);
	assert_int_equal(rd(k.d, k.n, 0, MAX, &lit), PGP_MALFORMED);
	assert_false(pgp_binary_sniff(k.d, k.n));
	free(k.d);
	/* a marker alone: nothing; a marker then the literal data: read */
	m = (struct buf){ 0 };
	put(&m, "\xa8\x03PGP", 5);
	assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_NONE);
	put(&m, l.d, l.n);
	assert_int_equal(rd(m.d, m.n, 0, MAX, &lit), PGP_LITERAL);
	free(lit.data);
	free(m.d);
	free(l.d);
	/* unknown compression, and a corrupt stream */
	assert_int_equal(rd((const unsigned char *)"\xa3\x07xx", 4, 0, MAX, &lit), PGP_MALFORMED);
	assert_int_equal(rd((const unsigned char *)"\xa3\x01\xff\xff\xff", 5, 0, MAX, &lit), PGP_MALFORMED);
	/* text is no binary message; bytes without a packet header neither */
	assert_false(pgp_binary_sniff((const unsigned char *)"hello", 5));
	memset(junk, 0x41, sizeof(junk));
	assert_false(pgp_binary_sniff(junk, sizeof(junk)));
}

static void test_looks_mime(void **state)
{
	static const char mime[] = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n";
	static const char folded[] = "X-Note: a\r\n  b\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
	static const char text[] = "hello world\nContent-Type: text/plain\n";
	static const char nofield[] = "Subject: x\r\n\r\nContent-Type: x/y\r\n";

	assert_true(pgp_looks_mime((const unsigned char *)mime, sizeof(mime) - 1));
	assert_true(pgp_looks_mime((const unsigned char *)folded, sizeof(folded) - 1));
	assert_false(pgp_looks_mime((const unsigned char *)text, sizeof(text) - 1));
	assert_false(pgp_looks_mime((const unsigned char *)nofield, sizeof(nofield) - 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gpg_made),
		cmocka_unit_test(test_armored),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_partial_lengths),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_bombs),
		cmocka_unit_test(test_encrypted_and_odd),
		cmocka_unit_test(test_looks_mime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
