/* proxyproto.c - see proxyproto.h.  Formats: HAProxy's proxy-protocol.txt
 * (v1: "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n"; v2: 12-octet
 * signature, version/command, family/protocol, 16-bit length, addresses). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"
#include "filters/ipnet.h"

static const unsigned char V2_SIG[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static int set_addr(struct sockaddr_storage *ss, int fam, const char *ip, const char *port)
{
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	if (*end != '\0' || port[0] == '\0' || p > 65535 || (port[0] == '0' && port[1] != '\0')) return -1;
	memset(ss, 0, sizeof *ss);
	if (fam == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons((uint16_t)p);
	return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? 0 : -1;
}

static enum pp_result parse_v1(const unsigned char *p, size_t len, size_t *consumed,
                               struct sockaddr_storage *src, struct sockaddr_storage *dst,
                               const char **why)
{
	char line[108], *f[6];
	const unsigned char *lf = memchr(p, '\n', len < 107 ? len : 107);
	if (lf == NULL) {
		if (len >= 107) { *why = "v1 header longer than 107 octets"; return PP_INVALID; }
		return PP_NEED_MORE;
	}
	size_t n = (size_t)(lf - p);
	if (n == 0 || p[n - 1] != '\r') { *why = "v1 header not ended by CRLF"; return PP_INVALID; }
	memcpy(line, p, n - 1);
	line[n - 1] = '\0';
	*consumed = n + 1;
	int nf = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (nf == 6) { *why = "v1 header: too many fields"; return PP_INVALID; }
		f[nf++] = t;
	}
	if (nf >= 2 && strcmp(f[1], "UNKNOWN") == 0) {
		src->ss_family = dst->ss_family = AF_UNSPEC;
		return PP_DONE;
	}
	if (nf != 6) { *why = "v1 header: wrong number of fields"; return PP_INVALID; }
	int fam = strcmp(f[1], "TCP4") == 0 ? AF_INET : strcmp(f[1], "TCP6") == 0 ? AF_INET6 : -1;
	if (fam < 0) { *why = "v1 header: unknown protocol"; return PP_INVALID; }
	if (set_addr(src, fam, f[2], f[4]) < 0 || set_addr(dst, fam, f[3], f[5]) < 0) {
		*why = "v1 header: bad address or port";
		return PP_INVALID;
	}
	return PP_DONE;
}

enum pp_result proxyproto_parse(const unsigned char *p, size_t len, size_t *consumed,
                                struct sockaddr_storage *src, struct sockaddr_storage *dst,
                                const char **why)
{
	*why = "";
	if (len == 0) return PP_NEED_MORE;
	if (p[0] == 'P') {
		size_t k = len < 6 ? len : 6;
		if (memcmp(p, "PROXY ", k) != 0) { *why = "no PROXY header"; return PP_INVALID; }
		if (len < 6) return PP_NEED_MORE;
		return parse_v1(p, len, consumed, src, dst, why);
	}
	size_t k = len < sizeof V2_SIG ? len : sizeof V2_SIG;
	if (memcmp(p, V2_SIG, k) != 0) { *why = "no PROXY header"; return PP_INVALID; }
	if (len < 16) return PP_NEED_MORE;
	unsigned ver = p[12] >> 4, cmd = p[12] & 0x0F, fam = p[13] >> 4, proto = p[13] & 0x0F;
	size_t alen = ((size_t)p[14] << 8) | p[15];
	if (ver != 2 || cmd > 1) { *why = "v2 header: bad version or command"; return PP_INVALID; }
	if (16 + alen > PROXYPROTO_MAX) { *why = "v2 header too long"; return PP_INVALID; }
	if (len < 16 + alen) return PP_NEED_MORE;
	*consumed = 16 + alen;
	const unsigned char *a = p + 16;
	if (cmd == 0 || proto != 1 || (fam != 1 && fam != 2)) {
		/* LOCAL (health check), or not TCP over IP: no client address */
		src->ss_family = dst->ss_family = AF_UNSPEC;
		return PP_DONE;
	}
	memset(src, 0, sizeof *src);
	memset(dst, 0, sizeof *dst);
	if (fam == 1) {
		if (alen < 12) { *why = "v2 header: short IPv4 block"; return PP_INVALID; }
		struct sockaddr_in *s = (struct sockaddr_in *)src, *d = (struct sockaddr_in *)dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
	} else {
		if (alen < 36) { *why = "v2 header: short IPv6 block"; return PP_INVALID; }
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)src, *d = (struct sockaddr_in6 *)dst;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
	}
	return PP_DONE;   /* TLVs after the addresses are skipped */
}

static int mapped(const unsigned char a[16])
{
	static const unsigned char pfx[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
	return memcmp(a, pfx, 12) == 0;
}

/* One "ADDR[/BITS]" into a 16-octet address (IPv4 as mapped IPv6) and a
 * prefix length over 128 bits.  0 / -1. */
static int net_parse(const char *w, unsigned char addr[16], unsigned *bits)
{
	char ip[64];
	const char *slash = strchr(w, '/');
	size_t n = slash ? (size_t)(slash - w) : strlen(w);
	if (n == 0 || n >= sizeof ip) return -1;
	memcpy(ip, w, n);
	ip[n] = '\0';
	struct in_addr a4;
	int v4 = inet_pton(AF_INET, ip, &a4) == 1;
	if (v4) {
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, ip, addr) != 1) {
		return -1;
	}
	unsigned max = v4 ? 32 : 128;
	unsigned b = max;
	if (slash) {
		char *end;
		unsigned long v = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || slash[1] == '\0' || v > max) return -1;
		b = (unsigned)v;
	}
	*bits = v4 ? b + 96 : b;
	/* a mapped network wider than the mapped space has no IPv4 meaning
	 * (ipnet.h reads mapped networks the same way) */
	if (!v4 && mapped(addr) && *bits < 96) return -1;
	return 0;
}

static int next_word(const char **p, char *out, size_t outsz)
{
	const char *s = *p;
	while (*s == ' ' || *s == ',' || *s == '\t') s++;
	size_t n = strcspn(s, " ,\t");
	if (n == 0) return 0;
	if (n >= outsz) n = outsz - 1;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = s + strcspn(s, " ,\t");
	return 1;
}

int netlist_check(const char *list, char *err, size_t errlen)
{
	char w[128];
	unsigned char a[16];
	unsigned bits;
	while (next_word(&list, w, sizeof w))
		if (net_parse(w, a, &bits) < 0) {
			snprintf(err, errlen, "'%s' is not ADDRESS or ADDRESS/BITS", w);
			return -1;
		}
	return 0;
}

int netlist_match(const char *list, const struct sockaddr *sa)
{
	unsigned char ip[16], net[16];
	if (sa->sa_family == AF_INET) {
		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		/* a balancer behind a translator is its IPv4 address, as any
		 * client is: config_load took the list's entries inside the
		 * prefix as IPv4 too */
		unsigned char v4[4];
		if (ipnet_xlat_v4(ip, v4)) {
			memset(ip, 0, 10);
			ip[10] = ip[11] = 0xff;
			memcpy(ip + 12, v4, 4);
		}
	} else {
		return 0;
	}
	char w[128];
	unsigned bits;
	while (next_word(&list, w, sizeof w)) {
		if (net_parse(w, net, &bits) < 0) continue;
		/* an IPv4 client is matched by IPv4 (or mapped) networks only:
		 * "::/0" means every IPv6 client, as in the other lists, not
		 * every client there is */
		if (mapped(ip) != (bits >= 96 && mapped(net))) continue;
		unsigned full = bits / 8, rest = bits % 8;
		if (memcmp(ip, net, full) != 0) continue;
		if (rest && ((ip[full] ^ net[full]) & (0xFF << (8 - rest)) & 0xFF)) continue;
		return 1;
	}
	return 0;
}
