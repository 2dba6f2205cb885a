/* test_transport.c - the pure parts of issue 3: the PROXY protocol header
 * (v1, v2, cut anywhere, hostile), network lists, and the BDAT content
 * rules (bare CR/LF, NUL, line length, size, chunk boundaries). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy/bdat.h"
#include "proxy/proxyproto.h"
#include "proxy/sbuf.h"

static const unsigned char SIG[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static void ip_of(const struct sockaddr_storage *ss, char *buf, size_t len, unsigned *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, buf, (socklen_t)len);
		*port = ntohs(s->sin_port);
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, buf, (socklen_t)len);
		*port = ntohs(s->sin6_port);
	}
}

static void test_v1(void **state)
{
	(void)state;
	const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n";
	struct sockaddr_storage src, dst;
	size_t used = 0;
	const char *why;
	char ip[64];
	unsigned port;
	/* every prefix short of the CRLF asks for more */
	size_t hlen = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n");
	for (size_t i = 0; i < hlen; i++)
		assert_int_equal(proxyproto_parse((const unsigned char *)h, i, &used, &src, &dst, &why), PP_NEED_MORE);
	assert_int_equal(proxyproto_parse((const unsigned char *)h, strlen(h), &used, &src, &dst, &why), PP_DONE);
	assert_int_equal(used, hlen);           /* the EHLO after it is not taken */
	ip_of(&src, ip, sizeof ip, &port);
	assert_string_equal(ip, "192.0.2.7");
	assert_int_equal(port, 40000);
	ip_of(&dst, ip, sizeof ip, &port);
	assert_string_equal(ip, "198.51.100.1");
	assert_int_equal(port, 25);

	h = "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
	assert_int_equal(proxyproto_parse((const unsigned char *)h, strlen(h), &used, &src, &dst, &why), PP_DONE);
	ip_of(&src, ip, sizeof ip, &port);
	assert_string_equal(ip, "2001:db8::1");

	h = "PROXY UNKNOWN\r\n";
	assert_int_equal(proxyproto_parse((const unsigned char *)h, strlen(h), &used, &src, &dst, &why), PP_DONE);
	assert_int_equal(src.ss_family, AF_UNSPEC);

	static const char *bad[] = {
		"EHLO x\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000 70000\r\n", "PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", "PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n", "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (proxyproto_parse((const unsigned char *)bad[i], strlen(bad[i]), &used, &src, &dst, &why) != PP_INVALID)
			fail_msg("accepted: %s", bad[i]);
	/* no CRLF within 107 octets */
	char longer[200];
	memset(longer, 'x', sizeof longer);
	memcpy(longer, "PROXY ", 6);
	assert_int_equal(proxyproto_parse((unsigned char *)longer, sizeof longer, &used, &src, &dst, &why), PP_INVALID);
}

static void test_v2(void **state)
{
	(void)state;
	unsigned char h[64];
	struct sockaddr_storage src, dst;
	size_t used = 0;
	const char *why;
	char ip[64];
	unsigned port;
	memcpy(h, SIG, 12);
	h[12] = 0x21;                 /* v2 PROXY */
	h[13] = 0x11;                 /* TCP over IPv4 */
	h[14] = 0;
	h[15] = 12 + 4;               /* addresses + a TLV to skip */
	inet_pton(AF_INET, "203.0.113.5", h + 16);
	inet_pton(AF_INET, "203.0.113.1", h + 20);
	h[24] = 0x12; h[25] = 0x34; h[26] = 0; h[27] = 25;
	h[28] = 0x04; h[29] = 0; h[30] = 1; h[31] = 'x';   /* TLV NOOP */
	for (size_t i = 0; i < 32; i++)
		assert_int_equal(proxyproto_parse(h, i, &used, &src, &dst, &why), PP_NEED_MORE);
	assert_int_equal(proxyproto_parse(h, 40, &used, &src, &dst, &why), PP_DONE);
	assert_int_equal(used, 32);
	ip_of(&src, ip, sizeof ip, &port);
	assert_string_equal(ip, "203.0.113.5");
	assert_int_equal(port, 0x1234);

	h[12] = 0x20;                 /* LOCAL */
	assert_int_equal(proxyproto_parse(h, 32, &used, &src, &dst, &why), PP_DONE);
	assert_int_equal(src.ss_family, AF_UNSPEC);

	h[12] = 0x31;                 /* version 3 */
	assert_int_equal(proxyproto_parse(h, 32, &used, &src, &dst, &why), PP_INVALID);
	h[12] = 0x21;
	h[15] = 8;                    /* IPv4 block too short */
	assert_int_equal(proxyproto_parse(h, 32, &used, &src, &dst, &why), PP_INVALID);
	h[14] = 0xff;                 /* longer than we ever wait for */
	assert_int_equal(proxyproto_parse(h, 32, &used, &src, &dst, &why), PP_INVALID);
	h[3] = 'X';                   /* signature */
	assert_int_equal(proxyproto_parse(h, 32, &used, &src, &dst, &why), PP_INVALID);
}

static int in_list(const char *list, const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (strchr(ip, ':')) {
		ss.ss_family = AF_INET6;
		inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr);
	} else {
		ss.ss_family = AF_INET;
		inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr);
	}
	return netlist_match(list, (struct sockaddr *)&ss);
}

static void test_netlist(void **state)
{
	(void)state;
	char err[200];
	const char *l = "127.0.0.0/8 ::1 192.0.2.128/25, 2001:db8::/32";
	assert_int_equal(netlist_check(l, err, sizeof err), 0);
	assert_true(in_list(l, "127.9.9.9"));
	assert_true(in_list(l, "::1"));
	assert_true(in_list(l, "192.0.2.200"));
	assert_false(in_list(l, "192.0.2.100"));
	assert_true(in_list(l, "2001:db8:ffff::5"));
	assert_false(in_list(l, "2001:db9::5"));
	assert_true(in_list(l, "::ffff:127.0.0.1"));       /* mapped IPv4 */
	assert_false(in_list(l, "10.0.0.1"));
	assert_false(in_list("", "127.0.0.1"));
	assert_true(in_list("0.0.0.0/0", "198.51.100.1"));
	assert_int_equal(netlist_check("127.0.0.1/33", err, sizeof err), -1);
	assert_int_equal(netlist_check("::1/129", err, sizeof err), -1);
	assert_int_equal(netlist_check("localhost", err, sizeof err), -1);
	assert_int_equal(netlist_check("1.2.3.4/", err, sizeof err), -1);
	/* IPv6 networks are for IPv6 peers: "::/0" does not take IPv4 ones */
	assert_true(in_list("::/0", "2001:db8::1"));
	assert_false(in_list("::/0", "127.0.0.1"));
	assert_false(in_list("::/0", "::ffff:127.0.0.1"));
	assert_true(in_list("::ffff:127.0.0.0/104", "127.1.2.3"));
	assert_false(in_list("127.0.0.0/8", "::7f00:1"));     /* IPv4-compatible: IPv6 */
	assert_int_equal(netlist_check("::ffff:0:0/95", err, sizeof err), -1);
	assert_int_equal(netlist_check("::ffff:0:0/96", err, sizeof err), 0);
	/* a balancer behind a translator (nat64_prefixes, by default
	 * 64:ff9b::/96) is its IPv4 address, as any client */
	assert_true(in_list("192.0.2.0/24", "64:ff9b::c000:205"));
	assert_false(in_list("::/0", "64:ff9b::c000:205"));
	assert_true(in_list("::/0", "64:ff9b::7f00:1"));      /* never translated */
}

static int sink(void *arg, const char *p, size_t n)
{
	return sbuf_add(arg, p, n) < 0 ? -1 : 0;
}

/* the whole input in chunks of `step` octets */
static enum data_fault run(const char *in, size_t len, size_t step, int normalize, int binary,
                           uint64_t limit, struct sbuf *out, struct bdat_content *b)
{
	sbuf_init(out, (size_t)-1);
	bdat_content_init(b, sink, out, limit, normalize, binary);
	for (size_t off = 0; off < len; off += step)
		bdat_content_feed(b, in + off, len - off < step ? len - off : step);
	return bdat_content_finish(b);
}

static void test_bdat_content(void **state)
{
	(void)state;
	struct sbuf out;
	struct bdat_content b;
	const char ok[] = "Subject: x\r\n\r\n.dot\r\n.\r\n\r\n.\r\nend\r\n";
	for (size_t step = 1; step <= sizeof ok; step++) {
		assert_int_equal(run(ok, sizeof ok - 1, step, 0, 0, 0, &out, &b), DF_OK);
		assert_int_equal(out.len, sizeof ok - 1);
		assert_memory_equal(out.data, ok, out.len);      /* as it came: no unstuffing */
		sbuf_free(&out);
	}
	const char lf[] = "a\nb\r\n", cr[] = "a\rb\r\n", crend[] = "a\r\nb\r";
	assert_int_equal(run(lf, 5, 1, 0, 0, 0, &out, &b), DF_BARE_LF);
	sbuf_free(&out);
	assert_int_equal(run(cr, 5, 2, 0, 0, 0, &out, &b), DF_BARE_CR);
	sbuf_free(&out);
	assert_int_equal(run(crend, 6, 3, 0, 0, 0, &out, &b), DF_BARE_CR);   /* CR as the last octet */
	sbuf_free(&out);
	assert_int_equal(run(lf, 5, 1, 1, 0, 0, &out, &b), DF_OK);
	assert_int_equal(b.bare_lf, 1);
	assert_int_equal(out.len, 6);
	assert_memory_equal(out.data, "a\r\nb\r\n", 6);
	sbuf_free(&out);
	assert_int_equal(run("a\0b\r\n", 5, 5, 0, 0, 0, &out, &b), DF_NUL);
	sbuf_free(&out);
	char longl[1100];
	memset(longl, 'y', sizeof longl);
	assert_int_equal(run(longl, sizeof longl, 100, 0, 0, 0, &out, &b), DF_LINE_TOO_LONG);
	sbuf_free(&out);
	assert_int_equal(run(ok, sizeof ok - 1, 7, 0, 0, 10, &out, &b), DF_TOO_BIG);
	sbuf_free(&out);
	/* BINARYMIME: anything but the size limit */
	const char bin[] = "H: v\r\n\r\n\0\n\r\xff";
	assert_int_equal(run(bin, sizeof bin - 1, 3, 0, 1, 0, &out, &b), DF_OK);
	assert_int_equal(out.len, sizeof bin - 1);
	assert_memory_equal(out.data, bin, out.len);
	sbuf_free(&out);
	assert_int_equal(run(bin, sizeof bin - 1, 3, 0, 1, 5, &out, &b), DF_TOO_BIG);
	sbuf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1),
		cmocka_unit_test(test_v2),
		cmocka_unit_test(test_netlist),
		cmocka_unit_test(test_bdat_content),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
