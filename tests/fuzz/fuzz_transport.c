/* fuzz_transport.c - libFuzzer target for the pure parsers of issue 3:
 * proxy/proxyproto.c (the PROXY header a balancer, or anyone allowed to
 * reach a PROXY listener, sends first) and proxy/bdat.c (BDAT chunk content).
 *
 * Build and run (from the top of the tree):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -I. -Iinclude tests/fuzz/fuzz_transport.c proxy/proxyproto.c proxy/bdat.c -o /tmp/fuzz_transport
 *   /tmp/fuzz_transport -max_total_time=60 -max_len=1024
 *
 * Checks beyond the sanitizers: a parsed header never claims more octets
 * than it was given, and every prefix of an accepted header asks for more
 * (never "done" early, never "invalid"); the BDAT content checker gives
 * the same content and fault whatever the chunking, and never writes more
 * than it was fed plus the CRs it adds in normalize mode. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/bdat.h"
#include "proxy/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

struct out {
	char   buf[4096];
	size_t len;
};

static int sink(void *arg, const char *p, size_t n)
{
	struct out *o = arg;
	if (o->len + n > sizeof o->buf) return -1;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

static void bdat(const uint8_t *data, size_t size, int normalize, int binary)
{
	static struct bdat_content a, b;
	static struct out oa, ob;
	oa.len = ob.len = 0;
	bdat_content_init(&a, sink, &oa, 3000, normalize, binary);
	bdat_content_init(&b, sink, &ob, 3000, normalize, binary);
	bdat_content_feed(&a, (const char *)data, size);
	for (size_t i = 0; i < size; i++) bdat_content_feed(&b, (const char *)data + i, 1);
	enum data_fault fa = bdat_content_finish(&a), fb = bdat_content_finish(&b);
	CHECK(fa == fb);
	CHECK(a.size == b.size);
	CHECK(oa.len == ob.len && memcmp(oa.buf, ob.buf, oa.len) == 0);
	CHECK(a.size <= 2 * size + 2);
	if (fa == DF_OK && !normalize && !binary) CHECK(oa.len == size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage src, dst;
	size_t used = 0;
	const char *why;
	enum pp_result r = proxyproto_parse(data, size, &used, &src, &dst, &why);
	if (r == PP_DONE) {
		CHECK(used > 0 && used <= size && used <= PROXYPROTO_MAX);
		for (size_t i = 0; i < used; i++) {
			size_t u2 = 0;
			CHECK(proxyproto_parse(data, i, &u2, &src, &dst, &why) == PP_NEED_MORE);
		}
	}
	if (size <= 1500) {
		bdat(data, size, 0, 0);
		bdat(data, size, 1, 0);
		bdat(data, size, 0, 1);
	}
	return 0;
}
