/* fuzz_spf.c - libFuzzer target for filters/spf_syntax.c: the RFC 7208
 * checks and rewrites the spf filter applies to every SPF record and
 * explanation its DNS layer returns (TXT data: anyone's bytes).
 *
 * Build and run: make fuzz FUZZ_TARGETS=spf FUZZ_SECONDS=60
 *
 * Input: byte 0 picks the client family for spf_rewrite_cidr0 and the
 * size of its output buffer; the rest is the record (given without a
 * terminating NUL, so a read past its end is caught).  Checks beyond the
 * sanitizers:
 *   - an accepted record or explanation holds printable US-ASCII and
 *     spaces only (RFC 7208 12: the ABNF has nothing else);
 *   - spf_strip_unknown_modifiers of an accepted record is no longer than
 *     it and still accepted;
 *   - spf_rewrite_cidr0 writes within its buffer, NUL-terminated, and
 *     what it writes is accepted too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/spf_syntax.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

static int printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

/* copy - exactly n bytes in their own allocation (no NUL after them) */
static char *copy(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	memcpy(p, s, n);
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[128], *rec, *out, *rw, *strip;
	size_t len, n, m, rwsz;
	int v6;

	if (size < 1)
		return 0;
	v6 = data[0] & 1;
	rwsz = (size_t)(data[0] >> 1) * 4 + 1;
	len = size - 1;
	rec = copy((const char *)data + 1, len);
	if (spf_explain_string_ok(rec, len))
		CHECK(printable(rec, len));
	if (!spf_record_syntax_ok(rec, len, why, sizeof(why))) {
		CHECK(strlen(why) < sizeof(why));
		free(rec);
		return 0;
	}
	CHECK(printable(rec, len));
	out = malloc(len + 1);
	n = spf_strip_unknown_modifiers(rec, len, out);
	CHECK(n <= len && out[n] == '\0');
	strip = copy(out, n);
	CHECK(spf_record_syntax_ok(strip, n, why, sizeof(why)));
	rw = malloc(rwsz);
	m = spf_rewrite_cidr0(strip, n, v6, rw, rwsz);
	if (m > 0) {
		CHECK(m < rwsz && rw[m] == '\0');
		if (!spf_record_syntax_ok(rw, m, why, sizeof(why))) {
			fprintf(stderr, "rewritten \"%.*s\" -> \"%s\": %s\n", (int)n, strip, rw, why);
			abort();
		}
	}
	free(rw);
	free(strip);
	free(out);
	free(rec);
	return 0;
}
