/* uri_hosts.c - the distinct hosts of a message's URIs, links first
 * (uri_hosts.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/uri_hosts.h"

struct hosts_build {
	struct eval_uri_hosts h;
	size_t vcap;          /* entries h.v holds: grown, most messages list few
	                         hosts (EVAL_URI_HOSTS_MAX of 268 bytes is 1 MB) */
	size_t *slot;         /* open addressing: index + 1 into h.v, 0 empty */
	size_t cap;           /* a power of two, over twice EVAL_URI_HOSTS_MAX */
};

static uint64_t hash_host(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int looks_ip(const char *h)
{
	if (strchr(h, ':')) return 1;                     /* IPv6 (rules_uri_host strips brackets) */
	return h[0] && strspn(h, "0123456789.") == strlen(h);
}

/* add - host as seen in class cls (passes run from the most link-like
 * class, so a host's first appearance is its best one) */
static void add(struct hosts_build *b, const char *host, unsigned cls, int mailto)
{
	size_t j = (size_t)hash_host(host) & (b->cap - 1);
	for (; b->slot[j]; j = (j + 1) & (b->cap - 1)) {
		struct eval_uri_host *e = &b->h.v[b->slot[j] - 1];
		if (strcmp(e->host, host) == 0) {
			if (!mailto) e->mailto = 0;
			return;
		}
	}
	if (b->h.n >= EVAL_URI_HOSTS_MAX) { b->h.truncated = 1; return; }
	if (b->h.n == b->vcap) {
		b->vcap = b->vcap * 2 < EVAL_URI_HOSTS_MAX ? b->vcap * 2 : EVAL_URI_HOSTS_MAX;
		b->h.v = realloc(b->h.v, b->vcap * sizeof *b->h.v);
		if (!b->h.v) abort();
	}
	struct eval_uri_host *e = &b->h.v[b->h.n];
	size_t l = strlen(host);
	if (l >= sizeof e->host) return;
	memcpy(e->host, host, l + 1);
	e->cls = cls;
	e->mailto = mailto;
	e->is_ip = looks_ip(host);
	b->slot[j] = ++b->h.n;
}

static void hosts_free(void *p)
{
	struct eval_uri_hosts *h = p;
	if (!h) return;
	free(h->v);
	free(h);
}

const struct eval_uri_hosts *eval_uri_hosts(struct eval_msg *m)
{
	struct eval_uri_hosts *out = eval_cache_get(m, EVC_URI_HOSTS);
	if (out) return out;
	struct hosts_build b = { .cap = 8192, .vcap = 32 };
	b.h.v = malloc(b.vcap * sizeof *b.h.v);
	b.slot = calloc(b.cap, sizeof *b.slot);
	out = malloc(sizeof *out);
	if (!b.h.v || !b.slot || !out) abort();
	const struct rules_uri_set *set = eval_uri_set(m);
	char host[256];
	/* one pass per class, most link-like first: a link is listed before
	 * any decoy in the text, however many there are */
	for (unsigned cls = 0; cls < RULES_URI_CLASSES && !b.h.truncated; cls++) {
		for (size_t i = 0; i < m->in->nuris && !b.h.truncated; i++) {
			const char *u = m->in->uris[i];
			int mailto = strncasecmp(u, "mailto:", 7) == 0;
			unsigned kind = mailto ? RULES_URI_MAILTO : m->in->uri_kinds ? m->in->uri_kinds[i] : RULES_URI_TEXT;
			if (kind >= RULES_URI_CLASSES) kind = RULES_URI_TEXT;
			if (kind != cls) continue;
			if (mailto) {
				if (rules_uri_mailto_host(u, host, sizeof host) == 0) add(&b, host, cls, 1);
				continue;
			}
			size_t nf;
			const char *const *forms = rules_uri_set_forms(set, i, &nf);
			for (size_t k = 0; k < nf; k++)
				if (rules_uri_host(forms[k], host, sizeof host) == 0) add(&b, host, cls, 0);
		}
	}
	free(b.slot);
	*out = b.h;
	eval_cache_set(m, EVC_URI_HOSTS, out, hosts_free);
	return out;
}
