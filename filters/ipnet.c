/* ipnet.c - client networks and CIDR lists (ipnet.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/ipnet.h"

int ipnet_parse(const char *s, struct ipnet *out)
{
	char buf[64], *slash;
	unsigned max, mapped_net = 0;

	memset(out, 0, sizeof(*out));
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = 4;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

		if (memcmp(out->addr, mapped, 12) == 0) {
			memmove(out->addr, out->addr + 12, 4);
			memset(out->addr + 4, 0, 12);
			out->family = 4;
			max = 32;
			/* "::ffff:10.0.0.0/104" is 10.0.0.0/8 written as IPv6 */
			mapped_net = 1;
		} else {
			out->family = 6;
			max = 128;
		}
	} else
		return -1;
	out->bits = max;
	if (slash != NULL) {
		char *end;
		long b = strtol(slash + 1, &end, 10);

		if (mapped_net && b >= 96 && b <= 128)
			b -= 96;
		else if (mapped_net)
			return -1;	/* wider than the mapped space: no IPv4 meaning */
		if (*end != '\0' || slash[1] == '\0' || !isdigit((unsigned char)slash[1])
		    || b < 0 || b > (long)max)
			return -1;
		out->bits = (unsigned)b;
	}
	return 0;
}

int ipnet_contains(const struct ipnet *net, const struct ipnet *ip)
{
	unsigned full, rest;

	if (net->family != ip->family || net->family == 0)
		return 0;
	full = net->bits / 8;
	rest = net->bits % 8;
	if (memcmp(net->addr, ip->addr, full) != 0)
		return 0;
	if (rest != 0) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));

		if ((net->addr[full] & mask) != (ip->addr[full] & mask))
			return 0;
	}
	return 1;
}

int ipnet_client_net(const char *ip, char *out, size_t outsz)
{
	struct ipnet a;
	char txt[INET6_ADDRSTRLEN];

	if (ipnet_parse(ip, &a) < 0 || a.bits != (a.family == 4 ? 32u : 128u))
		return -1;
	if (a.family == 4) {
		snprintf(out, outsz, "%u.%u.%u.0/24", a.addr[0], a.addr[1], a.addr[2]);
		return 0;
	}
	memset(a.addr + 8, 0, 8);
	inet_ntop(AF_INET6, a.addr, txt, sizeof(txt));
	snprintf(out, outsz, "%s/64", txt);
	return 0;
}

int ipnet_canon(const char *ip, char *out, size_t outsz)
{
	struct ipnet a;
	unsigned char v4[4];

	/* Sendmail's {client_addr} and XCLIENT write "IPv6:2001:db8::1" */
	if (strncasecmp(ip, "IPv6:", 5) == 0)
		ip += 5;
	if (strchr(ip, '/') != NULL || ipnet_parse(ip, &a) < 0)
		return -1;
	if (a.family == 6 && ipnet_xlat_v4(a.addr, v4)) {
		memcpy(a.addr, v4, 4);
		memset(a.addr + 4, 0, 12);
		a.family = 4;
	}
	return inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.addr, out, (socklen_t)outsz) != NULL ? 0 : -1;
}

int ipnet_limit_key(const char *ip, char *out, size_t outsz)
{
	struct ipnet a;

	if (ipnet_parse(ip, &a) < 0 || a.bits != (a.family == 4 ? 32u : 128u))
		return -1;
	if (a.family == 6)
		return ipnet_client_net(ip, out, outsz);
	return inet_ntop(AF_INET, a.addr, out, (socklen_t)outsz) != NULL ? 0 : -1;
}

/* --- translated IPv4 clients (RFC 6052) ------------------------------------ */

struct xlat {
	const struct xlat *older;    /* kept: a thread may still read it */
	size_t             n;
	struct ipnet       net[IPNET_XLAT_MAX];
};

static const struct xlat xlat_default = {
	NULL, 1, { { 6, { 0x00, 0x64, 0xff, 0x9b }, 96 } }
};
static _Atomic(const struct xlat *) xlat_cur = &xlat_default;

static int is_wkp(const struct ipnet *n)
{
	return n->bits == 96 && memcmp(n->addr, xlat_default.net[0].addr, 12) == 0;
}

static int in4(const unsigned char *a, unsigned net, unsigned bits)
{
	unsigned long v = (unsigned long)a[0] << 24 | (unsigned long)a[1] << 16 | (unsigned long)a[2] << 8 | a[3];

	return (v >> (32 - bits)) == (net >> (32 - bits));
}

/* The IPv4 networks a translator's address never stands for.  All
 * prefixes: 0/8, loopback, multicast and reserved (not what a translator
 * hands on as a source, and 127/8 is in the default trusted lists,
 * spf_skip_networks and milter_internal_networks).  The well-known prefix
 * also: what RFC 6052 3.1 forbids there, the site's own networks, which
 * its lists tend to trust. */
static const struct { unsigned long net; unsigned bits; int wkp_only; } untranslated[] = {
	{ 0x00000000, 8, 0 }, { 0x7f000000, 8, 0 }, { 0xe0000000, 3, 0 },
	{ 0x0a000000, 8, 1 }, { 0x64400000, 10, 1 }, { 0xa9fe0000, 16, 1 },
	{ 0xac100000, 12, 1 }, { 0xc0a80000, 16, 1 },
};
#define NUNTRANSLATED (sizeof untranslated / sizeof untranslated[0])

/* never_translated - v4 is one of untranslated[] for this prefix */
static int never_translated(const unsigned char *v4, int wkp)
{
	for (size_t i = 0; i < NUNTRANSLATED; i++)
		if ((wkp || !untranslated[i].wkp_only) && in4(v4, (unsigned)untranslated[i].net, untranslated[i].bits))
			return 1;
	return 0;
}

int ipnet_xlat_parse(const char *list, struct ipnet *nets, size_t *n, char *err, size_t errlen)
{
	*n = 0;
	for (;;) {
		char word[64];
		size_t len;
		struct ipnet net;
		unsigned i;

		list += strspn(list, " \t,");
		if ((len = strcspn(list, " \t,")) == 0)
			return 0;
		if (len >= sizeof(word)) {
			snprintf(err, errlen, "\"%.*s...\" is not an IPv6 prefix", 40, list);
			return -1;
		}
		memcpy(word, list, len);
		word[len] = '\0';
		list += len;
		if (strchr(word, '/') == NULL || ipnet_parse(word, &net) < 0 || net.family != 6) {
			snprintf(err, errlen, "\"%s\" is not an IPv6 prefix (PREFIX/96, e.g. 64:ff9b::/96)", word);
			return -1;
		}
		if (net.addr[0] == 0x20 && net.addr[1] == 0x02) {
			snprintf(err, errlen, "\"%s\" is 6to4 (2002::/16): the IPv4 address in it is the relay's, "
			         "not the client's; it is never translated", word);
			return -1;
		}
		if (net.bits != 32 && net.bits != 40 && net.bits != 48 && net.bits != 56
		    && net.bits != 64 && net.bits != 96) {
			snprintf(err, errlen, "\"%s\": a translation prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)",
			         word);
			return -1;
		}
		for (i = net.bits / 8; i < 16; i++)
			if (net.addr[i] != 0) {
				snprintf(err, errlen, "\"%s\": bits set after the prefix length", word);
				return -1;
			}
		if (memcmp(net.addr, "\0\0\0\0", 4) == 0) {
			snprintf(err, errlen, "\"%s\" overlaps the IPv4-compatible and -mapped space (::/32), "
			         "not a translation prefix", word);
			return -1;
		}
		if (*n >= IPNET_XLAT_MAX) {
			snprintf(err, errlen, "more than %d prefixes", IPNET_XLAT_MAX);
			return -1;
		}
		nets[(*n)++] = net;
	}
}

int ipnet_xlat_set(const char *list, char *err, size_t errlen)
{
	struct ipnet nets[IPNET_XLAT_MAX];
	size_t n;
	const struct xlat *cur = atomic_load_explicit(&xlat_cur, memory_order_acquire);
	struct xlat *x;

	if (ipnet_xlat_parse(list, nets, &n, err, errlen) < 0)
		return -1;
	if (n == cur->n && memcmp(nets, cur->net, n * sizeof(nets[0])) == 0)
		return 0;
	/* never freed (a few hundred bytes per reload that changes the list):
	 * a proxy or milter thread may be reading the table it replaces */
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	x->older = cur;
	x->n = n;
	memcpy(x->net, nets, n * sizeof(nets[0]));
	atomic_store_explicit(&xlat_cur, x, memory_order_release);
	return 0;
}

int ipnet_xlat_v4(const unsigned char a6[16], unsigned char v4[4])
{
	const struct xlat *x = atomic_load_explicit(&xlat_cur, memory_order_acquire);
	struct ipnet ip = { 6, { 0 }, 128 };

	memcpy(ip.addr, a6, 16);
	for (size_t k = 0; k < x->n; k++) {
		const struct ipnet *net = &x->net[k];
		unsigned i = net->bits / 8, got = 0;

		if (!ipnet_contains(net, &ip))
			continue;
		/* RFC 6052 2.2: below /96, bits 64..71 (the u-octet) are skipped
		 * and must be zero; the suffix after the IPv4 address is zero in
		 * what a translator makes, so a host's own address in a /64
		 * prefix (SLAAC) is not mistaken for a translated one */
		if (net->bits < 96 && a6[8] != 0)
			continue;
		for (; got < 4; i++)
			if (i != 8 || net->bits == 96)
				v4[got++] = a6[i];
		while (i < 16 && a6[i] == 0)
			i++;
		if (i < 16)
			continue;
		if (never_translated(v4, is_wkp(net)))
			continue;
		return 1;
	}
	return 0;
}

int ipnet_xlat_net(const struct ipnet *pfx, size_t npfx, const struct ipnet *net,
                   struct ipnet *v4, int *keep6, size_t *which)
{
	*keep6 = 0;
	if (net->family != 6)
		return 0;
	for (size_t k = 0; k < npfx; k++) {
		const struct ipnet *p = &pfx[k];
		unsigned got = 0, clean = 1;
		unsigned long v = 0;
		int wkp = is_wkp(p);

		if (net->bits < p->bits || !ipnet_contains(p, net))
			continue;
		/* the entry's bits after the prefix, laid out as ipnet_xlat_v4
		 * reads a client: the u-octet (below /96) and the suffix after the
		 * IPv4 address are zero in every translated address, so an entry
		 * with one of them set holds none (a SLAAC host of a /64 prefix) */
		for (unsigned i = p->bits; i < net->bits; i++) {
			unsigned bit = (net->addr[i / 8] >> (7 - i % 8)) & 1;

			if ((p->bits < 96 && i >= 64 && i < 72) || got == 32)
				clean &= !bit;
			else
				v |= (unsigned long)bit << (31 - got++);
		}
		if (!clean)
			continue;
		if (got == 0) {
			*which = k;
			return -1;
		}
		memset(v4, 0, sizeof(*v4));
		v4->family = 4;
		v4->bits = got;
		v4->addr[0] = (unsigned char)(v >> 24);
		v4->addr[1] = (unsigned char)(v >> 16);
		v4->addr[2] = (unsigned char)(v >> 8);
		v4->addr[3] = (unsigned char)v;
		/* inside a range that stays IPv6: no translated client there,
		 * the entry is what it says */
		for (size_t i = 0; i < NUNTRANSLATED && clean; i++)
			if ((wkp || !untranslated[i].wkp_only) && untranslated[i].bits <= got
			    && in4(v4->addr, (unsigned)untranslated[i].net, untranslated[i].bits))
				clean = 0;
		if (!clean)
			continue;
		/* a wide entry holding such a range: those addresses stay IPv6,
		 * so the entry is needed as written too; likewise below /96 when
		 * the entry leaves the u-octet or the suffix open, as the hosts
		 * sharing the prefix with the translator are not translated */
		*keep6 = p->bits < 96 && net->bits < 128;
		for (size_t i = 0; i < NUNTRANSLATED; i++)
			if ((wkp || !untranslated[i].wkp_only) && untranslated[i].bits > got
			    && (untranslated[i].net >> (32 - got)) == (v >> (32 - got)))
				*keep6 = 1;
		*which = k;
		return 1;
	}
	return 0;
}

int ipnet_private(const struct ipnet *a)
{
	if (a->family == 4)
		return in4(a->addr, 0x7f000000, 8) || in4(a->addr, 0x0a000000, 8) || in4(a->addr, 0xac100000, 12)
		    || in4(a->addr, 0xc0a80000, 16) || in4(a->addr, 0xa9fe0000, 16);
	if (a->family == 6) {
		static const unsigned char loop[16] = { [15] = 1 };

		return memcmp(a->addr, loop, 16) == 0 || (a->addr[0] & 0xfe) == 0xfc
		    || (a->addr[0] == 0xfe && (a->addr[1] & 0xc0) == 0x80);
	}
	return 0;
}
