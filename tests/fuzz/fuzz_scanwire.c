/* fuzz_scanwire.c - libFuzzer target for the binary scan protocol
 * (proxy/scanproto.c): scan_request_decode (the scanner reads what a front
 * end sent) and scan_result_decode (a front end reads what the scanner
 * answered).  Neither side trusts the other, so both decoders get any
 * bytes.
 *
 * Build and run: make fuzz FUZZ_TARGETS=scanwire FUZZ_SECONDS=60
 *
 * Byte 0 picks the mode, the rest is the input:
 *   0: a request packet; 1: a result packet.  Whatever decodes must
 *      encode back to the very bytes it was decoded from (the format has
 *      one encoding per value), and a request's *used stays in the packet;
 *   2: a result built from the input (symbols and edits of every shape
 *      the encoder may be given: the first byte sets how many of each,
 *      then each byte is one symbol or edit): it must encode, decode, and
 *      encode again to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

static void request(const uint8_t *p, size_t n)
{
	struct scan_request r;
	struct sbuf out;
	size_t used;

	if (scan_request_decode(p, n, &r, &used) < 0)
		return;
	CHECK(used <= n);
	sbuf_init(&out, SIZE_MAX);
	scan_request_encode(&out, &r);
	CHECK(out.len == used && memcmp(out.data, p, used) == 0);
	sbuf_free(&out);
	scan_request_free(&r);
}

static void result(const uint8_t *p, size_t n)
{
	struct scan_result r;
	struct sbuf out;

	if (scan_result_decode(p, n, &r) < 0)
		return;
	sbuf_init(&out, SIZE_MAX);
	scan_result_encode(&out, &r);
	CHECK(out.len == n && memcmp(out.data, p, n) == 0);
	sbuf_free(&out);
	scan_result_free(&r);
}

/* built - a valid result whose symbols and edits take their shapes from
 * the input bytes: every field at its shortest and longest */
static void built(const uint8_t *p, size_t n)
{
	struct scan_result r, back;
	struct sbuf a, b;
	size_t i, nsym, ned;

	if (n == 0)
		return;
	/* the first byte shares the rest out between symbols and edits */
	nsym = (n - 1) * p[0] / 255;
	ned = n - 1 - nsym;
	p++;

	memset(&r, 0, sizeof(r));
	r.action = MW_TAG;
	r.symbols = calloc(nsym ? nsym : 1, sizeof(*r.symbols));
	r.nsymbols = nsym;
	for (i = 0; i < nsym; i++) {
		struct scan_symbol *s = &r.symbols[i];
		unsigned c = p[i];

		/* name 1..63 upper case, filter 0..31 lower case */
		memset(s->name, 'A' + (int)(c % 26), (c & 1) ? sizeof(s->name) - 1 : 1);
		memset(s->filter, 'a', (c & 2) ? sizeof(s->filter) - 1 : 0);
		s->score = (double)c - 128;
		if (c & 4)
			s->desc = strdup((c & 8) ? "" : "why");
	}
	r.edits = calloc(ned ? ned : 1, sizeof(*r.edits));
	r.nedits = ned;
	for (i = 0; i < ned; i++) {
		struct header_edit *h = &r.edits[i];
		unsigned c = p[nsym + i];

		h->op = (enum header_edit_op)(c % 4);
		h->name = strdup((c & 4) ? "X-Spam-Flag" : "X");
		if (h->op == HE_ADD || h->op == HE_CHANGE)
			h->value = strdup((c & 8) ? "" : "a\r\n b");
		if (h->op == HE_REMOVE_AT)
			h->index = c >> 4;
	}
	sbuf_init(&a, SIZE_MAX);
	sbuf_init(&b, SIZE_MAX);
	scan_result_encode(&a, &r);
	if (nsym <= 4096 && ned <= 4096) {	/* SP_MAX_SYMBOLS, SP_MAX_EDITS */
		CHECK(scan_result_decode(a.data, a.len, &back) == 0);
		scan_result_encode(&b, &back);
		CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
		scan_result_free(&back);
	}
	sbuf_free(&a);
	sbuf_free(&b);
	scan_result_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p;

	if (size < 1)
		return 0;
	/* a private copy of exactly the packet, so reads past it are caught */
	p = malloc(size - 1 ? size - 1 : 1);
	memcpy(p, data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		request(p, size - 1);
		break;
	case 1:
		result(p, size - 1);
		break;
	default:
		built(p, size - 1);
		break;
	}
	free(p);
	return 0;
}
