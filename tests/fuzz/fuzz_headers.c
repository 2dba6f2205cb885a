/* fuzz_headers.c - libFuzzer target for the header section walker
 * (proxy/headers.c), the header edits applied on the way out
 * (proxy/header_edit.c) and the UTF-8 repair every logged or JSON string
 * goes through (proxy/utf8.c).  The input is a message as a client sends
 * it (any bytes, LF or CRLF lines).
 *
 * Build and run: make fuzz FUZZ_TARGETS=headers FUZZ_SECONDS=60
 *
 * Checks beyond the sanitizers:
 *   - header_next: fields follow each other without gap or overlap, the
 *     name is 1*ftext, the value lies inside the field; header_body_offset
 *     is where the walk stopped;
 *   - header_unfold: no line break left, fits its buffer;
 *   - addrlist_domains (filters/addrlist.c, the From domains DMARC and the
 *     DKIM signer use) over each unfolded field: domains in lower case,
 *     without a blank, within ADDR_DOMAIN_MAX, no final dot in one that
 *     domain_ok accepts;
 *   - header_edits_apply: removing nothing and adding nothing gives the
 *     fields back byte for byte (and the empty line after them when a line
 *     that is no field ended them); an added field comes out first; a removed
 *     name is gone;
 *   - utf8: utf8_valid agrees with utf8_seq walked over the input; the
 *     repaired text is valid, equal to the input when that was valid, the
 *     same from the fixed buffer and the sbuf form, and a cut repair is a
 *     prefix of the whole one, ending on a character boundary.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/addrlist.h"
#include "proxy/header_edit.h"
#include "proxy/headers.h"
#include "proxy/sbuf.h"
#include "proxy/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

static void addresses(const struct header_field *f)
{
	static char value[8192];
	char doms[4][ADDR_DOMAIN_MAX + 1];
	size_t n, i, k;

	header_unfold(f, value, sizeof(value));
	n = addrlist_domains(value, doms, 4);
	for (i = 0; i < n && i < 4; i++) {
		k = strlen(doms[i]);
		CHECK(k <= ADDR_DOMAIN_MAX);
		/* one final dot goes ("a@example.com."); "a@example.com.."
		 * keeps one, and domain_ok, which every caller applies,
		 * refuses it */
		CHECK(k == 0 || doms[i][k - 1] != '.' || !domain_ok(doms[i]));
		CHECK(strpbrk(doms[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZ \t") == NULL);
		domain_ok(doms[i]);
	}
}

static void walk(const char *buf, size_t len)
{
	struct header_field f;
	size_t pos = 0, prev = 0, i, n;
	char out[256];
	int rc;

	while ((rc = header_next(buf, len, &pos, &f)) == 1) {
		CHECK(f.start == buf + prev);
		CHECK(f.len == pos - prev && f.len > 0 && pos <= len);
		CHECK(f.name == f.start && f.name_len > 0);
		for (i = 0; i < f.name_len; i++)
			CHECK((unsigned char)f.name[i] >= 33 && (unsigned char)f.name[i] <= 126
			      && f.name[i] != ':');
		CHECK(f.value > f.name && f.value + f.value_len <= f.start + f.len);
		CHECK(header_name_is(&f, "x") == (f.name_len == 1 && (f.name[0] | 0x20) == 'x'));
		n = header_unfold(&f, out, sizeof(out));
		CHECK(n < sizeof(out) && out[n] == '\0');
		CHECK(memchr(out, '\n', n) == NULL);
		CHECK(header_unfold(&f, out, 1) == 0 && out[0] == '\0');
		addresses(&f);
		prev = pos;
	}
	CHECK(rc == 0 ? pos <= len : pos == prev);
	CHECK(header_body_offset(buf, len) == pos);
}

static void edits(const char *buf, size_t len)
{
	struct header_edit e[3] = {
		{ HE_ADD, "X-Fuzz", "added", 0 },
		{ HE_REMOVE, "Received", NULL, 0 },
		{ HE_REMOVE_AT, "X", NULL, 1 },
	};
	struct sbuf a, b;
	size_t rest_a, rest_b, pos = 0;
	struct header_field f;
	int rc;

	sbuf_init(&a, SIZE_MAX);
	sbuf_init(&b, SIZE_MAX);
	/* no edit: the header section as it was (up to the end of its fields) */
	rest_a = header_edits_apply(buf, len, NULL, 0, &a);
	rest_b = 0;
	while ((rc = header_next(buf, len, &pos, &f)) == 1)
		rest_b = pos;
	CHECK(rest_a == rest_b);
	/* a section ended by a line that is no field gets its empty line */
	CHECK(a.len == rest_a + (rc < 0 ? 2 : 0));
	CHECK(memcmp(a.data ? a.data : "", buf, rest_a) == 0);
	CHECK(rc >= 0 || memcmp(a.data + rest_a, "\r\n", 2) == 0);
	/* with edits: same rest, the added field first, no Received left */
	rest_b = header_edits_apply(buf, len, e, 3, &b);
	CHECK(rest_b == rest_a);
	CHECK(b.len >= 15 && memcmp(b.data, "X-Fuzz: added\r\n", 15) == 0);
	pos = 0;
	while (header_next(b.data, b.len, &pos, &f) == 1)
		CHECK(!header_name_is(&f, "Received"));
	sbuf_free(&a);
	sbuf_free(&b);
}

static void utf8(const char *in, size_t len)
{
	size_t i = 0, bad, n, outsz = 3 * len + 1, cut;
	int valid = 1;
	char *out = malloc(outsz), *small;
	struct sbuf sb;

	while (i < len) {
		n = utf8_seq((const unsigned char *)in + i, len - i, &bad);
		if (n == 0) {
			CHECK(bad >= 1 && bad <= 3 && bad <= len - i);
			valid = 0;
			i += bad;
		} else {
			CHECK(n <= 4 && n <= len - i);
			i += n;
		}
	}
	CHECK(utf8_valid(in, len) == valid);
	n = utf8_sanitize(in, len, out, outsz);
	CHECK(n < outsz && out[n] == '\0');
	CHECK(utf8_valid(out, n));
	if (valid)
		CHECK(n == len && memcmp(out, in, len) == 0);
	sbuf_init(&sb, SIZE_MAX);
	CHECK(utf8_sanitize_sbuf(&sb, in, len) == 0);
	CHECK(sb.len == n && memcmp(sb.data ? sb.data : "", out, n) == 0);
	sbuf_free(&sb);
	/* a cut repair: a prefix of the whole one, on a boundary */
	cut = len % 7 + 1;
	small = malloc(cut);
	i = utf8_sanitize(in, len, small, cut);
	CHECK(i < cut && small[i] == '\0' && i <= n && memcmp(small, out, i) == 0);
	CHECK(utf8_valid(small, i));
	free(small);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a private copy, so that a read past the end is caught */
	char *buf = malloc(size ? size : 1);

	memcpy(buf, data, size);
	walk(buf, size);
	edits(buf, size);
	utf8(buf, size);
	free(buf);
	return 0;
}
