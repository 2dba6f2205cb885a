/* fuzz_pgp.c - libFuzzer target for filters/pgp_packet.c: the OpenPGP
 * reader the antivirus and attachments filters run on any part that holds
 * an armored block or starts like a binary OpenPGP message (anyone's
 * bytes).
 *
 * Build and run: make fuzz FUZZ_TARGETS=pgp FUZZ_SECONDS=60
 *
 * Input: the part's bytes (given without a terminating NUL), read as a
 * binary message and, block by block, as armored text; seeds are the
 * gpg-made messages of tests/data/pgp.  Checks beyond the sanitizers:
 *   - armored blocks lie within the input, in order, each starting with
 *     the BEGIN line;
 *   - literal data is within the bound, NUL-terminated, its name a
 *     C string; every other result but NONE and ENCRYPTED says why;
 *   - the same input reads the same way twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/pgp_packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)
#define MAX (256u << 10)     /* small, to reach the bounds */

static void read_one(const unsigned char *d, size_t n, int armored)
{
	struct pgp_literal a, b;
	char why[150], why2[150];
	enum pgp_result r = pgp_read(d, n, armored, MAX, &a, why, sizeof(why));
	enum pgp_result r2 = pgp_read(d, n, armored, MAX, &b, why2, sizeof(why2));

	CHECK(r == r2);
	CHECK(strcmp(why, why2) == 0);
	CHECK(strlen(why) < sizeof(why));
	if (r == PGP_LITERAL) {
		CHECK(a.data != NULL && a.len <= MAX && a.data[a.len] == '\0');
		CHECK(strlen(a.name) <= PGP_NAME_MAX);
		CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
		(void)pgp_looks_mime(a.data, a.len);
	} else {
		CHECK(a.data == NULL);
		CHECK(r == PGP_NONE || r == PGP_ENCRYPTED || why[0] != '\0');
	}
	free(a.data);
	free(b.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *d = malloc(size ? size : 1);
	size_t pos = 0, at, len, last = 0;

	memcpy(d, data, size);
	/* the reader does not rely on the sniff: read whatever it says */
	(void)pgp_binary_sniff(d, size);
	read_one(d, size, 0);
	while (pgp_armor_find(d, size, &pos, &at, &len)) {
		CHECK(at >= last && at + len <= size && pos <= size && pos >= at + len);
		CHECK(len >= 27 && memcmp(d + at, "-----BEGIN PGP MESSAGE-----", 27) == 0);
		last = at + len;
		read_one(d + at, len, 1);
	}
	CHECK(pos == size);
	free(d);
	return 0;
}
