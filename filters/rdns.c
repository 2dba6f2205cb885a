/* rdns.c - the client's forward-confirmed reverse DNS name (dns.h,
 * dns_client_name): PTR of the address, then A/AAAA of each name until one
 * points back.  An unconfirmed PTR says nothing (anyone can write any PTR
 * for their own addresses), so only a confirmed name is ever reported. */
#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include "filters/dns.h"

#define RDNS_MAX_NAMES 10     /* as RFC 7208 5.5 limits PTR names */

static unsigned ms_left(const struct timespec *t0, unsigned budget)
{
	struct timespec t;
	long long el;

	clock_gettime(CLOCK_MONOTONIC, &t);
	el = (long long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
	return el >= (long long)budget ? 0 : (unsigned)(budget - el);
}

/* host_name_ok - letters, digits, '-' and '.', as a host name is written */
static int host_name_ok(const char *n)
{
	return *n != '\0' && strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-.") == strlen(n);
}

int dns_client_name(struct dns *d, const char *ip, unsigned budget_ms, char *out, size_t outsz)
{
	unsigned char want[16];
	char rev[80];
	struct dns_reply *ptr;
	struct timespec t0;
	int type, alen, rc = 0;
	size_t i, k;

	out[0] = '\0';
	if (inet_pton(AF_INET, ip, want) == 1) {
		type = DNS_T_A;
		alen = 4;
	} else if (inet_pton(AF_INET6, ip, want) == 1) {
		type = DNS_T_AAAA;
		alen = 16;
	} else {
		return 0;
	}
	if (dns_reverse_name(ip, rev, sizeof(rev)) < 0)
		return 0;
	if (budget_ms == 0)
		budget_ms = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ptr = dns_lookup(d, rev, DNS_T_PTR, budget_ms);
	if (ptr->status == DNS_TIMEOUT || ptr->status == DNS_SERVFAIL)
		rc = -1;
	/* the names' addresses asked together, then checked in order: one
	 * round trip for a host with several PTR names, not one each */
	for (i = 0; ptr->status == DNS_OK && i < ptr->count && i < RDNS_MAX_NAMES; i++)
		if (host_name_ok(ptr->rr[i].name) && strlen(ptr->rr[i].name) < outsz)
			dns_prefetch(d, ptr->rr[i].name, type);
	for (i = 0; ptr->status == DNS_OK && i < ptr->count && i < RDNS_MAX_NAMES; i++) {
		const char *name = ptr->rr[i].name;
		unsigned left = ms_left(&t0, budget_ms);
		struct dns_reply *fw;

		if (!host_name_ok(name) || strlen(name) >= outsz)
			continue;
		if (left == 0) {
			rc = -1;
			break;
		}
		fw = dns_lookup(d, name, type, left);
		if (fw->status == DNS_TIMEOUT || fw->status == DNS_SERVFAIL)
			rc = -1;
		for (k = 0; fw->status == DNS_OK && k < fw->count; k++)
			if (memcmp(fw->rr[k].addr, want, (size_t)alen) == 0) {
				memcpy(out, name, strlen(name) + 1);
				rc = 1;
				break;
			}
		dns_reply_free(fw);
		if (rc == 1)
			break;
	}
	dns_reply_free(ptr);
	return rc;
}
