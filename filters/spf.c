/* spf.c - the "spf" built-in filter: SPF (RFC 7208) with libspf2 over the
 * scanner's DNS layer.
 *
 * The identity is MAIL FROM, or the HELO name for the null sender (then
 * libspf2 checks "postmaster@HELO"), the address the client connected
 * from (or the one XCLIENT/PROXY gave the proxy).  Results become a symbol
 * (SPF_PASS, SPF_FAIL, ...) with the configured score, an optional hard
 * verdict per result (spf_*_action), a Received-SPF field (RFC 7208 9.1)
 * and an Authentication-Results entry (spf=RESULT smtp.mailfrom=... or
 * smtp.helo=...).
 *
 * libspf2 asks DNS through a custom layer of ours (spf_lookup) that calls
 * dns_lookup(): one cache, one deadline per lookup, and all lookups of one
 * check within spf_timeout.  That layer must never return NULL (libspf2
 * would abort): failures are answered with TRY_AGAIN, which libspf2 turns
 * into temperror.  The budget of the check running on this thread is a
 * thread-local, since libspf2 evaluates synchronously on the caller's
 * thread and its layer callback has no per-request argument.
 *
 * Things done here rather than in libspf2, and why:
 *   - libspf2 gives any 127/8 or ::1 client "pass" without looking
 *     (SPF_request_query_mailfrom); RFC 7208 knows no such rule, so the
 *     check is run through libspf2's public pieces (SPF_server_get_record,
 *     SPF_record_interpret) and loopback clients are skipped only by
 *     configuration (spf_skip_networks, default 127.0.0.0/8 ::1);
 *   - RFC 7208 4.3: a malformed or single-label domain is "none" before
 *     any lookup;
 *   - libspf2's "invalid" result is temperror when the error is a DNS one,
 *     permerror otherwise, and it writes no header then: we build the
 *     Received-SPF field ourselves for every result;
 *   - what libspf2 1.2.10 gets wrong is mended in the DNS layer, on what
 *     it is given (rfc7208_checks, spf_text, spf_get_exp): record syntax,
 *     the limits of 4.6.4 over all include levels (terms, void lookups, MX
 *     names) become permerror; the record it compiles loses unknown
 *     modifiers, a redirect= beside "all", and CIDR lengths of 0 (which it
 *     cannot hold: see spf_syntax.h); a DNS error on a PTR name's address
 *     skips the name (5.5), and only 10 PTR names are passed on (4.6.4); long names are cut on the left (7.3);
 *     explanations are expanded piece by piece.  With all of it the RFC
 *     7208 test suite passes (tests/functional/test_spf_suite.py).
 * Only inbound messages are checked.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/dns.h"
#include "filters/ipnet.h"
#include "filters/spf_syntax.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/smtp_parse.h"

#define SPF_MAX_SKIP 32
#define SPF_MAX_VALUE 256       /* bytes of one Received-SPF / A-R value */
#define SPF_MAX_COMMENT 300
#define SPF_MAX_VOID 2          /* RFC 7208 4.6.4 */
#define SPF_MAX_TERMS 10        /* RFC 7208 4.6.4 */
#define SPF_MAX_MX_NAMES 10     /* RFC 7208 4.6.4: more is a permerror */
#define SPF_MAX_PTR_NAMES 10    /* RFC 7208 4.6.4: only the first are used */

struct spf_net {
	int           family;
	unsigned char addr[16];
	unsigned      bits;
};

struct spf_inst {
	const struct config *cfg;
	struct dns      *dns;
	SPF_server_t    *server;
	SPF_dns_server_t layer;          /* our DNS layer; libspf2 does not own it */
	struct spf_net   skip[SPF_MAX_SKIP];
	size_t           nskip;
};

/* the check running on this thread: its deadline, and what the DNS layer
 * saw that RFC 7208 makes a permerror but libspf2 does not */
struct spf_budget {
	struct timespec deadline;
	int             expired;
	unsigned        lookups;        /* answers given to libspf2 */
	unsigned        voids;          /* of those, NXDOMAIN or no records (4.6.4) */
	unsigned        terms;          /* DNS-querying terms evaluated (4.6.4) */
	int             after_list;     /* the last lookup of a term was MX or PTR */
	int             after_ptr;      /* ... and it was PTR */
	char            permerror[256]; /* "" or why the check is a permerror */
	char            cut[128];       /* "" or a record libspf2 holds only in part */
	SPF_request_t  *req;            /* for the explanation's macros */
	SPF_response_t *resp;
};
static _Thread_local struct spf_budget *spf_current;

/* --- the DNS layer for libspf2 ----------------------------------------- */

static unsigned budget_left(unsigned cap)
{
	struct timespec now;
	long long ms;

	if (spf_current == NULL)
		return cap;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(spf_current->deadline.tv_sec - now.tv_sec) * 1000
	    + (spf_current->deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (ms <= 0) {
		spf_current->expired = 1;
		return 0;
	}
	return ms < (long long)cap ? (unsigned)ms : cap;
}

static SPF_dns_rr_t *rr_new(SPF_dns_server_t *srv, const char *domain, ns_type type,
                            int ttl, SPF_dns_stat_t herrno)
{
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(srv, domain, type, ttl, herrno);

	if (rr == NULL)
		bug("spf: out of memory for a DNS answer");	/* never NULL to libspf2 */
	return rr;
}

/* fit_name - RFC 7208 7.3: a name longer than 253 bytes loses labels on
 * its left until it fits (macro expansions can make long names) */
static const char *fit_name(const char *d)
{
	size_t n = strlen(d);

	if (n > 0 && d[n - 1] == '.')
		n--;
	while (n > 253) {
		const char *dot = memchr(d, '.', n);

		if (dot == NULL)
			break;
		n -= (size_t)(dot + 1 - d);
		d = dot + 1;
	}
	return d;
}

static void set_permerror(struct spf_budget *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_permerror(struct spf_budget *b, const char *fmt, ...)
{
	va_list ap;

	if (b->permerror[0] != '\0')
		return;		/* the first one says it */
	va_start(ap, fmt);
	vsnprintf(b->permerror, sizeof(b->permerror), fmt, ap);
	va_end(ap);
}

/* is_spf_record - "v=spf1" alone or followed by a space (4.5) */
static int is_spf_record(const char *t, size_t len)
{
	return len >= 6 && strncasecmp(t, "v=spf1", 6) == 0 && (len == 6 || t[6] == ' ');
}

/* mechanisms - the number of mechanisms of an SPF record as libspf2
 * counts them: terms that are not "name=value" modifiers, and redirect=
 * (which it keeps among the mechanisms) */
static size_t mechanisms(const char *t, size_t len)
{
	size_t i = 6, n = 0;

	while (i < len) {
		size_t start, k;

		for (; i < len && t[i] == ' '; i++)
			;
		if (i >= len)
			break;
		for (start = i; i < len && t[i] != ' '; i++)
			;
		for (k = start; k < i && (isalnum((unsigned char)t[k]) || t[k] == '-' || t[k] == '_'
		    || t[k] == '.'); k++)
			;
		if (k == start || k == i || t[k] != '='
		    || (k - start == 8 && strncasecmp(t + start, "redirect", 8) == 0))
			n++;
	}
	return n;
}

/* compiles_whole - does libspf2 hold every mechanism of the SPF record
 * txt (as it is given it)?  Its compiled record has room for about 512
 * bytes of mechanisms (64 "ip4:" terms; fewer with longer ones); past
 * that it drops the rest without an error, a final "-all" included, so
 * that "v=spf1" + 64 ip4 terms + "-all" was "neutral" instead of "fail"
 * (and a client listed after the cut was not found).  Compiled here once
 * more to compare the counts; a record libspf2 refuses is its own
 * permerror.  Terms are evaluated in order, so a pass found before the
 * cut stands; any other result of a cut record is a permerror
 * (spf_check). */
static int compiles_whole(SPF_server_t *server, const char *txt)
{
	SPF_response_t *resp = SPF_response_new(spf_current->req);
	SPF_record_t *rec = NULL;
	int whole = 1;

	if (resp == NULL)
		return 1;
	if (SPF_record_compile(server, resp, &rec, txt) == SPF_E_SUCCESS && rec != NULL)
		whole = rec->num_mech == mechanisms(txt, strlen(txt));
	if (rec != NULL)
		SPF_record_free(rec);
	SPF_response_free(resp);
	return whole;
}

/* rfc7208_checks - what libspf2 1.2.10 does not check about an answer it
 * is given: the syntax of SPF records (the ones it will evaluate: it only
 * asks for records it evaluates), more than 10 MX names, and more than 2
 * void lookups (not counting the first TXT lookup, the record itself). */
static void rfc7208_checks(struct spf_budget *b, const char *domain, int type,
                           const struct dns_reply *r)
{
	char why[128];
	size_t i;

	if (type == ns_t_txt && r->status == DNS_OK)
		for (i = 0; i < r->count; i++) {
			const char *t = r->rr[i].text;
			size_t len = r->rr[i].text_len;

			if (is_spf_record(t, len) && (memchr(t, '\0', len) != NULL
			    || !spf_record_syntax_ok(t, len, why, sizeof(why))))
				set_permerror(b, "syntax error in the SPF record of %.80s: %.120s", domain,
				    memchr(t, '\0', len) != NULL ? "NUL byte" : why);

		}
	if (type == ns_t_mx && r->status == DNS_OK && r->count > SPF_MAX_MX_NAMES)
		set_permerror(b, "%.80s has more than 10 MX records", domain);
	/* a void lookup is one a term makes (a, mx, ptr, exists, include,
	 * redirect): not the address lookups of MX or PTR names that follow */
	if (type == ns_t_a || type == ns_t_aaaa) {
		if (b->after_list)
			goto counted;
	} else {
		b->after_list = type == ns_t_mx || type == ns_t_ptr;
		b->after_ptr = type == ns_t_ptr;
	}
	/* each DNS-querying term makes one such lookup (the first TXT is the
	 * record itself): libspf2 counts them per record only */
	if (b->lookups > 0 && ++b->terms > SPF_MAX_TERMS)
		set_permerror(b, "more than 10 DNS-querying terms (the last: %.80s)", domain);
	if (b->lookups > 0 && type != ns_t_ptr
	    && (r->status == DNS_NXDOMAIN || r->status == DNS_NODATA || r->status == DNS_BADNAME)
	    && ++b->voids > SPF_MAX_VOID)
		set_permerror(b, "more than 2 void lookups (the last: %.80s)", domain);
counted:
	b->lookups++;
}

static SPF_errcode_t default_exp(SPF_server_t *server, struct spf_budget *b, char **bufp,
                                 size_t *buflenp)
{
	SPF_macro_t *def = server->explanation;

	if (def == NULL)
		return SPF_E_NOT_CONFIG;
	return SPF_record_expand_data(server, b->req, b->resp,
	    (SPF_data_t *)((char *)def + sizeof(*def)), def->macro_len, bufp, buflenp);
}

/* spf_get_exp - the explanation of an exp= (RFC 7208 6.2) for libspf2:
 * its own code expands an explanation with spaces wrongly (they come out
 * as '%' and the macros after them unexpanded), so each space-separated
 * macro-string is compiled and expanded on its own.  Anything wrong with
 * the TXT (none, several, bad syntax, non-ASCII) gives the default
 * explanation, as 6.2 says. */
static SPF_errcode_t spf_get_exp(SPF_server_t *server, const char *domain, char **bufp,
                                 size_t *buflenp)
{
	struct spf_inst *in = server->resolver->hook;
	struct spf_budget *b = spf_current;
	struct dns_reply *r = NULL;
	struct sbuf out;
	SPF_errcode_t err = SPF_E_SUCCESS;
	const char *t;
	size_t len, i = 0, start;
	unsigned left;

	if (b == NULL)
		return SPF_E_NOT_CONFIG;
	left = budget_left(in->cfg->dns_timeout);
	if (left > 0)
		r = dns_lookup(in->dns, fit_name(domain), DNS_T_TXT, left);
	if (r == NULL || r->status != DNS_OK || r->count != 1
	    || !spf_explain_string_ok(r->rr[0].text, r->rr[0].text_len)
	    || memchr(r->rr[0].text, '\0', r->rr[0].text_len) != NULL) {
		dns_reply_free(r);
		return default_exp(server, b, bufp, buflenp);
	}
	t = r->rr[0].text;
	len = r->rr[0].text_len;
	sbuf_init(&out, 8192);
	while (i < len && err == SPF_E_SUCCESS) {
		SPF_macro_t *mac = NULL;
		char *piece = NULL, *src;
		size_t piece_len = 0;

		if (t[i] == ' ') {
			sbuf_add(&out, " ", 1);
			i++;
			continue;
		}
		for (start = i; i < len && t[i] != ' '; i++)
			;
		src = xstrndup(t + start, i - start);
		err = SPF_record_compile_macro(server, b->resp, &mac, src);
		if (err == SPF_E_SUCCESS)
			err = SPF_record_expand_data(server, b->req, b->resp,
			    (SPF_data_t *)((char *)mac + sizeof(*mac)), mac->macro_len,
			    &piece, &piece_len);
		if (err == SPF_E_SUCCESS && piece != NULL)
			sbuf_addf(&out, "%s", piece);
		free(piece);
		free(src);
		if (mac != NULL)
			SPF_macro_free(mac);
	}
	dns_reply_free(r);
	sbuf_add(&out, "", 1);
	if (err == SPF_E_SUCCESS) {
		size_t n = out.len;

		if (*buflenp < n) {
			char *tmp = realloc(*bufp, n);

			if (tmp == NULL) {
				sbuf_free(&out);
				return SPF_E_NO_MEMORY;
			}
			*bufp = tmp;
			*buflenp = n;
		}
		memcpy(*bufp, out.data, n);
	}
	sbuf_free(&out);
	/* libspf2 cannot expand some macros (%{c}, %{p} of IPv6 clients) */
	return err == SPF_E_SUCCESS ? err : default_exp(server, b, bufp, buflenp);
}

/* spf_text - a TXT record as libspf2 gets it (owned, NUL-terminated): an
 * SPF record with valid syntax without unknown modifiers and without
 * CIDR lengths of 0 (spf_syntax.h); anything else as it is */
static char *spf_text(const char *t, size_t len)
{
	char why[128], *out = xmalloc(len + 1), *rw;
	size_t cap = 2 * len + 256, n;

	memcpy(out, t, len);
	out[len] = '\0';
	if (!is_spf_record(t, len) || memchr(t, '\0', len) != NULL
	    || !spf_record_syntax_ok(t, len, why, sizeof(why)))
		return out;
	n = spf_strip_unknown_modifiers(t, len, out);
	if (spf_current == NULL)
		return out;
	rw = xmalloc(cap);
	if (spf_rewrite_cidr0(out, n, spf_current->req->client_ver == AF_INET6, rw, cap) > 0) {
		free(out);
		return rw;
	}
	free(rw);
	return out;
}

/* spf_lookup - libspf2's lookup: a new SPF_dns_rr_t, never NULL */
static SPF_dns_rr_t *spf_lookup(SPF_dns_server_t *srv, const char *domain, ns_type type,
                                int should_cache)
{
	struct spf_inst *in = srv->hook;
	struct dns_reply *r;
	SPF_dns_rr_t *rr;
	SPF_dns_stat_t herrno;
	unsigned left;
	size_t i, sl = strlen(SPF_CIDR0_SUFFIX), dl;
	int n = 0, cidr0 = 0;
	char real[300];
	const char *qname;

	(void)should_cache;
	if (domain == NULL)
		domain = "";
	switch ((int)type) {
	case ns_t_a: case ns_t_aaaa: case ns_t_mx: case ns_t_ptr: case ns_t_txt:
		break;
	default:        /* type SPF (99) and others: RFC 7208 uses TXT only */
		return rr_new(srv, domain, type, 0, NO_DATA);
	}
	if ((left = budget_left(in->cfg->dns_timeout)) == 0)
		return rr_new(srv, domain, type, 0, TRY_AGAIN);
	qname = fit_name(domain);
	dl = strlen(qname);
	if (dl > 0 && qname[dl - 1] == '.')
		dl--;
	if ((type == ns_t_a || type == ns_t_aaaa || type == ns_t_mx) && dl > sl && dl - sl < sizeof(real)
	    && strncasecmp(qname + dl - sl, SPF_CIDR0_SUFFIX, sl) == 0 && spf_current != NULL) {
		/* a term with CIDR length 0 (spf_rewrite_cidr0): the real name */
		cidr0 = 1;
		memcpy(real, qname, dl - sl);
		real[dl - sl] = '\0';
		qname = real;
	}
	r = dns_lookup(in->dns, qname, (int)type, left);
	switch (r->status) {
	case DNS_OK:        herrno = NETDB_SUCCESS; break;
	case DNS_NODATA:    herrno = NO_DATA; break;
	case DNS_NXDOMAIN:
	case DNS_BADNAME:   herrno = HOST_NOT_FOUND; break;
	default:            herrno = TRY_AGAIN; break;
	}
	/* RFC 7208 5.5: a DNS error looking up the address of a PTR name
	 * skips that name; libspf2 would make it a temperror */
	if (herrno == TRY_AGAIN && (type == ns_t_a || type == ns_t_aaaa) && spf_current != NULL
	    && spf_current->after_ptr)
		herrno = HOST_NOT_FOUND;
	rr = rr_new(srv, domain, type, (int)r->ttl, herrno);
	for (i = 0; r->status == DNS_OK && i < r->count; i++) {
		const struct dns_rr *x = &r->rr[i];
		size_t len;

		char *txt = NULL;

		/* RFC 7208 4.6.4: a ptr term looks at the first 10 names in the
		 * order the DNS gave them, and more must not be a permerror;
		 * libspf2 makes more than 10 a permerror (SPF_E_BIG_DNS), so it
		 * is given 10.  (libunbound rotates an RRset by the clock's
		 * second, so the suite's ptr-limit test, 11 names with the
		 * matching one last, got permerror one second in 11.) */
		if (type == ns_t_ptr && n >= SPF_MAX_PTR_NAMES)
			break;
		switch ((int)type) {
		case ns_t_a:    len = sizeof(struct in_addr); break;
		case ns_t_aaaa: len = sizeof(struct in6_addr); break;
		case ns_t_txt:
			txt = spf_text(x->text, x->text_len);
			len = strlen(txt) + 1;
			if (spf_current != NULL && spf_current->cut[0] == '\0'
			    && is_spf_record(txt, len - 1) && !compiles_whole(in->server, txt))
				snprintf(spf_current->cut, sizeof(spf_current->cut), "%.80s",
				    fit_name(domain));
			break;
		case ns_t_mx:   len = strlen(x->name) + 1 + (cidr0 ? sl : 0); break;
		default:        len = strlen(x->name) + 1; break;
		}
		if (SPF_dns_rr_buf_realloc(rr, n, len) != SPF_E_SUCCESS) {
			free(txt);
			break;
		}
		switch ((int)type) {
		case ns_t_a:
		case ns_t_aaaa:
			if (cidr0 && spf_current->req->client_ver == (type == ns_t_a ? AF_INET : AF_INET6)) {
				/* the name has an address: /0 matches any client */
				if (type == ns_t_a)
					rr->rr[n]->a = spf_current->req->ipv4;
				else
					rr->rr[n]->aaaa = spf_current->req->ipv6;
				i = r->count;	/* one is enough */
			} else if (type == ns_t_a) {
				memcpy(&rr->rr[n]->a, x->addr, len);
			} else {
				memcpy(&rr->rr[n]->aaaa, x->addr, len);
			}
			break;
		case ns_t_txt:
			memcpy(rr->rr[n]->txt, txt, len);
			free(txt);
			break;
		case ns_t_mx:
			/* mx/0: the MX names' addresses are looked up as /0 too */
			snprintf(rr->rr[n]->mx, len, "%s%s", x->name, cidr0 ? SPF_CIDR0_SUFFIX : "");
			break;
		default:        memcpy(rr->rr[n]->ptr, x->name, len); break;
		}
		n++;
	}
	rr->num_rr = n;
	if (herrno == NETDB_SUCCESS && n == 0)
		rr->herrno = NO_DATA;
	if (spf_current != NULL)
		rfc7208_checks(spf_current, qname, (int)type, r);
	dns_reply_free(r);
	return rr;
}

static void spf_layer_destroy(SPF_dns_server_t *srv)
{
	(void)srv;	/* part of struct spf_inst */
}

/* libspf2's warnings and notes are about records from the network */
static void spf_log_note(const char *file, int line, const char *msg)
{
	char esc[400];

	(void)file;
	(void)line;
	slog(NULL, LOG_DEBUG, "spf: libspf2: %s", log_esc(esc, sizeof(esc), msg, strlen(msg)));
}

/* --- setup ------------------------------------------------------------- */

static int parse_skip(struct spf_inst *in, const char *v, char *err, size_t errlen)
{
	for (;;) {
		char tok[80], *slash;
		size_t len;
		struct spf_net *net;
		struct ipnet n;

		v += strspn(v, " \t,");
		if ((len = strcspn(v, " \t,")) == 0)
			return 0;
		if (len >= sizeof(tok) || in->nskip == SPF_MAX_SKIP) {
			snprintf(err, errlen, "spf_skip_networks: at most %d entries of ADDR[/BITS]",
			    SPF_MAX_SKIP);
			return -1;
		}
		memcpy(tok, v, len);
		tok[len] = '\0';
		v += len;
		net = &in->skip[in->nskip];
		/* ipnet_parse: a mapped network (::ffff:10.0.0.0/104) is the IPv4
		 * one, as the client is (spf_check); kept as IPv6 it never matched */
		if (ipnet_parse(tok, &n) < 0) {
			if ((slash = strchr(tok, '/')) != NULL)
				*slash = '\0';
			if (ipnet_parse(tok, &n) < 0)
				snprintf(err, errlen, "spf_skip_networks: \"%s\" is not an address", tok);
			else
				snprintf(err, errlen, "spf_skip_networks: bad prefix length in \"%s/%s\"",
				    tok, slash + 1);
			return -1;
		}
		net->family = n.family == 4 ? AF_INET : AF_INET6;
		memcpy(net->addr, n.addr, sizeof(net->addr));
		net->bits = n.bits;
		in->nskip++;
	}
}

static int net_contains(const struct spf_net *n, int family, const unsigned char *a)
{
	unsigned full = n->bits / 8, rest = n->bits % 8;

	if (n->family != family)
		return 0;
	if (memcmp(n->addr, a, full) != 0)
		return 0;
	return rest == 0 || ((n->addr[full] ^ a[full]) & (0xff00 >> rest) & 0xff) == 0;
}

/* text_ok - printable ASCII, 1 to 400 bytes (an SMTP reply text) */
static int text_ok(const char *t)
{
	size_t n = strlen(t), i;

	for (i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x20 || (unsigned char)t[i] > 0x7e)
			return 0;
	return n >= 1 && n <= 400;
}

static void spf_fini(void *instance)
{
	struct spf_inst *in = instance;

	if (in == NULL)
		return;
	if (in->server != NULL)
		SPF_server_free(in->server);	/* destroy_resolver is 0: our layer stays */
	free(in);
}

static int spf_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct spf_inst *in;
	SPF_response_t *resp = NULL;

	if (env->dns == NULL) {
		snprintf(err, errlen, "the DNS layer is not available");
		return -1;
	}
	if (!text_ok(env->cfg->spf_reject_text)) {
		snprintf(err, errlen, "spf_reject_text: printable ASCII, 1 to 400 characters");
		return -1;
	}
	in = xcalloc(1, sizeof(*in));
	in->cfg = env->cfg;
	in->dns = env->dns;
	if (parse_skip(in, env->cfg->spf_skip_networks, err, errlen) < 0) {
		free(in);
		return -1;
	}
	/* process-wide, set before any scanner thread exists */
	SPF_warning_handler = spf_log_note;
	SPF_info_handler = spf_log_note;
	SPF_debug_handler = NULL;

	in->layer.destroy = spf_layer_destroy;
	in->layer.lookup = spf_lookup;
	in->layer.get_exp = spf_get_exp;
	in->layer.name = "mailwarden";
	in->layer.hook = in;
	if ((in->server = SPF_server_new_dns(&in->layer, 0)) == NULL) {
		snprintf(err, errlen, "libspf2: cannot create a server");
		free(in);
		return -1;
	}
	SPF_server_set_rec_dom(in->server, env->cfg->hostname);
	SPF_server_set_sanitize(in->server, 0);
	if (SPF_server_set_explanation(in->server,
	    "%{d}%_does%_not%_designate%_%{i}%_as%_a%_permitted%_sender", &resp) != SPF_E_SUCCESS) {
		snprintf(err, errlen, "libspf2: cannot set the default explanation");
		if (resp != NULL)
			SPF_response_free(resp);
		spf_fini(in);
		return -1;
	}
	if (resp != NULL)
		SPF_response_free(resp);
	*instance = in;
	return 0;
}

/* --- one check --------------------------------------------------------- */

/* domain_ok - RFC 7208 4.3: a multi-label domain name, labels of 1 to 63
 * characters, at most 253 in all (a final dot allowed) */
static int domain_ok(const char *d)
{
	size_t n = strlen(d), label = 0, labels = 0, i;

	if (n > 0 && d[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			labels++;
			label = 0;
		} else if (c <= 0x20 || c >= 0x7f || ++label > 63) {
			return 0;
		}
	}
	return label > 0 && labels >= 1;
}

/* spf_query - what SPF_request_query_mailfrom does, without its free pass
 * for loopback clients (public libspf2 API only) */
static SPF_errcode_t spf_query(SPF_server_t *server, SPF_request_t *req, SPF_response_t **respp)
{
	SPF_record_t *rec = NULL;
	SPF_response_t *resp;
	SPF_errcode_t err;

	if ((*respp = resp = SPF_response_new(req)) == NULL)
		return SPF_E_NO_MEMORY;
	if (spf_current != NULL)
		spf_current->resp = resp;
	req->cur_dom = req->use_helo ? req->helo_dom : req->env_from_dp;
	err = SPF_server_get_record(server, req, resp, &rec);
	if (err != SPF_E_SUCCESS) {
		if (rec != NULL)
			SPF_record_free(rec);
		SPF_i_done(resp, resp->result, resp->reason, resp->err);
		return err;
	}
	resp->spf_record_exp = rec;	/* for the explanation (exp=) */
	err = SPF_record_interpret(rec, req, resp, 0);
	SPF_record_free(rec);
	resp->spf_record_exp = NULL;
	return err;
}

enum spf_res { R_PASS, R_FAIL, R_SOFTFAIL, R_NEUTRAL, R_NONE, R_TEMPERROR, R_PERMERROR };
static const char *const res_name[] = {
	"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"
};
static const char *const res_symbol[] = {
	"SPF_PASS", "SPF_FAIL", "SPF_SOFTFAIL", "SPF_NEUTRAL", "SPF_NONE", "SPF_TEMPERROR",
	"SPF_PERMERROR"
};

/* map_result - libspf2's result; its "invalid" is an error that stopped
 * the check: temperror for a DNS error, permerror for anything else */
static enum spf_res map_result(SPF_result_t r, SPF_errcode_t err)
{
	switch (r) {
	case SPF_RESULT_PASS:      return R_PASS;
	case SPF_RESULT_FAIL:      return R_FAIL;
	case SPF_RESULT_SOFTFAIL:  return R_SOFTFAIL;
	case SPF_RESULT_NEUTRAL:   return R_NEUTRAL;
	case SPF_RESULT_NONE:      return R_NONE;
	case SPF_RESULT_TEMPERROR: return R_TEMPERROR;
	case SPF_RESULT_PERMERROR: return R_PERMERROR;
	default:
		return err == SPF_E_DNS_ERROR ? R_TEMPERROR : R_PERMERROR;
	}
}

static void score_action(const struct config *c, enum spf_res r, double *score,
                         enum mw_action *action)
{
	switch (r) {
	case R_PASS:      *score = c->spf_pass_score; *action = MW_ACCEPT; break;
	case R_FAIL:      *score = c->spf_fail_score; *action = c->spf_fail_action; break;
	case R_SOFTFAIL:  *score = c->spf_softfail_score; *action = c->spf_softfail_action; break;
	case R_NEUTRAL:   *score = c->spf_neutral_score; *action = c->spf_neutral_action; break;
	case R_NONE:      *score = c->spf_none_score; *action = c->spf_none_action; break;
	case R_TEMPERROR: *score = c->spf_temperror_score; *action = c->spf_temperror_action; break;
	default:          *score = c->spf_permerror_score; *action = c->spf_permerror_action; break;
	}
}

/* printable - s made printable ASCII (other bytes as '?'), without the
 * bytes in drop, at most max bytes ("..." marks a cut) */
static void printable(char *out, size_t outsz, const char *s, size_t max, const char *drop)
{
	size_t o = 0;

	if (max > outsz - 1)
		max = outsz - 1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (drop != NULL && strchr(drop, c) != NULL)
			continue;
		if (o + 1 > max) {
			if (max >= 3)
				memcpy(out + max - 3, "...", 3);
			o = max;
			break;
		}
		out[o++] = (c >= 0x20 && c <= 0x7e) ? (char)c : '?';
	}
	out[o] = '\0';
}

/* kv_value - a Received-SPF / Authentication-Results value: as it is when
 * it is a dot-atom (or an address of dot-atoms), else a quoted-string */
static void kv_value(char *out, size_t outsz, const char *v)
{
	char p[SPF_MAX_VALUE + 4];
	size_t i, o = 0;
	int plain;

	printable(p, sizeof(p), v, SPF_MAX_VALUE, NULL);
	plain = p[0] != '\0' && p[0] != '.' && p[strlen(p) - 1] != '.' && strstr(p, "..") == NULL;
	for (i = 0; plain && p[i] != '\0'; i++)
		if (!isalnum((unsigned char)p[i]) && strchr("!#$%&'*+-/=?^_`{|}~.@", p[i]) == NULL)
			plain = 0;
	if (plain) {
		snprintf(out, outsz, "%s", p);
		return;
	}
	out[o++] = '"';
	for (i = 0; p[i] != '\0' && o + 3 < outsz; i++) {
		if (p[i] == '"' || p[i] == '\\')
			out[o++] = '\\';
		out[o++] = p[i];
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* expand_text - spf_reject_text with %{d}, %{i}, %{e}, %% */
static void expand_text(char *out, size_t outsz, const char *tmpl, const char *domain,
                        const char *ip, const char *expl)
{
	struct sbuf b;

	sbuf_init(&b, 4096);
	while (*tmpl != '\0') {
		if (strncmp(tmpl, "%{d}", 4) == 0) {
			sbuf_addf(&b, "%s", domain);
			tmpl += 4;
		} else if (strncmp(tmpl, "%{i}", 4) == 0) {
			sbuf_addf(&b, "%s", ip);
			tmpl += 4;
		} else if (strncmp(tmpl, "%{e}", 4) == 0) {
			sbuf_addf(&b, "%s", expl);
			tmpl += 4;
		} else if (strncmp(tmpl, "%%", 2) == 0) {
			sbuf_add(&b, "%", 1);
			tmpl += 2;
		} else {
			sbuf_add(&b, tmpl++, 1);
		}
	}
	sbuf_add(&b, "", 1);
	printable(out, outsz, b.data ? b.data : "", 400, NULL);
	sbuf_free(&b);
}

/* identity_domain - the domain checked: MAIL FROM's (smtp_path_domain, as
 * every filter reads it), or HELO for the null sender */
static const char *identity_domain(const char *from, const char *helo)
{
	const char *d = smtp_path_domain(from);

	return from[0] == '\0' ? helo : d != NULL ? d : from;
}

static void spf_check(struct mw_ctx *ctx)
{
	struct spf_inst *in = mw_instance(ctx);
	const struct config *cfg = in->cfg;
	const char *ip = mw_client_ip(ctx), *helo = mw_helo(ctx), *from = mw_mail_from(ctx);
	const char *domain, *identity;
	unsigned char addr[16];
	int family;
	SPF_request_t *req = NULL;
	SPF_response_t *resp = NULL;
	SPF_errcode_t err = SPF_E_SUCCESS;
	struct spf_budget budget;
	enum spf_res res;
	enum mw_action action;
	double score;
	char comment[SPF_MAX_COMMENT + 4], expl[SPF_MAX_COMMENT + 4], v_ip[80],
	     v_from[SPF_MAX_VALUE + 8], v_helo[SPF_MAX_VALUE + 8], v_rcv[SPF_MAX_VALUE + 8],
	     v_dom[SPF_MAX_VALUE + 8], text[401];
	size_t i;

	if (mw_direction(ctx) != MW_INBOUND)
		return;
	if (inet_pton(AF_INET, ip, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, addr) == 1) {
		family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)addr)) {
			memmove(addr, addr + 12, 4);
			family = AF_INET;
		}
	} else {
		mw_log(ctx, LOG_INFO, "no client address: SPF not checked");
		return;
	}
	for (i = 0; i < in->nskip; i++)
		if (net_contains(&in->skip[i], family, addr)) {
			mw_log(ctx, LOG_DEBUG, "client %s in spf_skip_networks: SPF not checked", ip);
			return;
		}
	if (inet_ntop(family, addr, v_ip, sizeof(v_ip)) == NULL)
		return;

	identity = from[0] != '\0' ? "mailfrom" : "helo";
	domain = identity_domain(from, helo);
	expl[0] = comment[0] = '\0';
	if (!domain_ok(domain)) {
		res = R_NONE;
		snprintf(comment, sizeof(comment), "%s: no valid domain to check in %s",
		    cfg->hostname, identity);
	} else {
		req = SPF_request_new(in->server);
		if (req == NULL)
			bug("spf: out of memory");
		if (family == AF_INET)
			SPF_request_set_ipv4(req, *(struct in_addr *)addr);
		else
			SPF_request_set_ipv6(req, *(struct in6_addr *)addr);
		SPF_request_set_helo_dom(req, helo[0] ? helo : domain);
		if (from[0] != '\0')
			SPF_request_set_env_from(req, from);
		else
			SPF_request_set_env_from(req, "");	/* postmaster@HELO */

		clock_gettime(CLOCK_MONOTONIC, &budget.deadline);
		budget.deadline.tv_sec += cfg->spf_timeout / 1000;
		budget.deadline.tv_nsec += (long)(cfg->spf_timeout % 1000) * 1000000L;
		if (budget.deadline.tv_nsec >= 1000000000L) {
			budget.deadline.tv_sec++;
			budget.deadline.tv_nsec -= 1000000000L;
		}
		budget.expired = 0;
		budget.lookups = budget.voids = budget.terms = 0;
		budget.after_list = budget.after_ptr = 0;
		budget.permerror[0] = budget.cut[0] = '\0';
		budget.req = req;
		budget.resp = NULL;
		spf_current = &budget;
		err = spf_query(in->server, req, &resp);
		spf_current = NULL;

		if (SPF_response_errcode(resp) != SPF_E_SUCCESS)
			err = SPF_response_errcode(resp);
		res = map_result(SPF_response_result(resp), err);
		if (SPF_response_result(resp) == SPF_RESULT_INVALID)
			snprintf(comment, sizeof(comment), "%s: %s checking %s: %s", cfg->hostname,
			    res == R_TEMPERROR ? "temporary error" : "permanent error", domain,
			    SPF_strerror(err));
		else if (SPF_response_get_header_comment(resp) != NULL)
			printable(comment, sizeof(comment), SPF_response_get_header_comment(resp),
			    SPF_MAX_COMMENT, "()\\");
		if (budget.cut[0] != '\0' && budget.permerror[0] == '\0' && res != R_PASS
		    && res != R_PERMERROR && res != R_TEMPERROR)
			snprintf(budget.permerror, sizeof(budget.permerror), "the SPF record of %s "
			    "is too long for libspf2 (mechanisms past its room were dropped)",
			    budget.cut);
		if (budget.permerror[0] != '\0' && res != R_PERMERROR && res != R_TEMPERROR) {
			res = R_PERMERROR;
			snprintf(comment, sizeof(comment), "%.40s: %.250s", cfg->hostname,
			    budget.permerror);
		}
		if (res != R_PERMERROR && SPF_response_get_explanation(resp) != NULL)
			printable(expl, sizeof(expl), SPF_response_get_explanation(resp),
			    SPF_MAX_COMMENT, NULL);
		if (budget.expired && res == R_TEMPERROR) {
			mw_log(ctx, LOG_INFO, "spf: check of %s ran out of spf_timeout", domain);
			deadline_timed_out("spf_timeout");
		}
	}
	kv_value(v_from, sizeof(v_from), from);
	kv_value(v_helo, sizeof(v_helo), helo);
	kv_value(v_rcv, sizeof(v_rcv), cfg->hostname);
	kv_value(v_dom, sizeof(v_dom), domain);
	{
		/* a field within 998 octets: without the comment if need be */
		struct sbuf h;

		sbuf_init(&h, (size_t)-1);
		sbuf_addf(&h, "%s%s%s%s client-ip=%s; envelope-from=%s; helo=%s; receiver=%s; "
		    "identity=%s;", res_name[res], comment[0] ? " (" : "", comment,
		    comment[0] ? ")" : "", v_ip, v_from, v_helo, v_rcv, identity);
		if (h.len > 980) {
			sbuf_reset(&h);
			sbuf_addf(&h, "%s client-ip=%s; envelope-from=%s; helo=%s; identity=%s;",
			    res_name[res], v_ip, v_from, v_helo, identity);
		}
		mw_header_add(ctx, "Received-SPF", h.data);
		sbuf_free(&h);
	}
	if (from[0] != '\0')
		mw_auth_result(ctx, "spf", res_name[res], "smtp.mailfrom=%s", v_from);
	else
		mw_auth_result(ctx, "spf", res_name[res], "smtp.helo=%s", v_helo);

	score_action(cfg, res, &score, &action);
	if (expl[0] != '\0' && (res == R_FAIL || res == R_SOFTFAIL))
		mw_symbol(ctx, res_symbol[res], score, "SPF %s for %s from %s: %s", res_name[res],
		    v_dom, v_ip, expl);
	else
		mw_symbol(ctx, res_symbol[res], score, "SPF %s for %s from %s%s%s%s", res_name[res],
		    v_dom, v_ip, comment[0] ? " (" : "", comment, comment[0] ? ")" : "");
	if (action != MW_ACCEPT) {
		if (action == MW_REJECT) {
			expand_text(text, sizeof(text), cfg->spf_reject_text, v_dom, v_ip,
			    expl[0] ? expl : "no explanation");
			mw_verdict(ctx, action, text);
		} else {
			mw_verdict(ctx, action, NULL);
		}
	}
	{
		/* the domain is the client's (HELO, MAIL FROM), not always one
		 * that domain_ok passed: one token, as the core's helo= */
		char dom_esc[4 * SPF_MAX_VALUE + 8];

		builtin_log(ctx, LOG_INFO, "spf=%s identity=%s domain=%s client=%s", res_name[res], identity,
		    log_esc_word(dom_esc, sizeof(dom_esc), domain, strlen(domain)), v_ip);
	}
	if (resp != NULL)
		SPF_response_free(resp);
	if (req != NULL)
		SPF_request_free(req);
}

/* The check needs only the envelope, so it runs at the first recipient:
 * a front end that asks before DATA (the milter at RCPT) gets the verdict
 * in time to refuse the recipient.  At the end of the message it runs if it
 * has not (a message without recipients, as "mailwarden scan" may give). */
static void spf_once(struct mw_ctx *ctx)
{
	if (mw_msgdata(ctx) != NULL)
		return;
	mw_set_msgdata(ctx, ctx, NULL);	/* any non-NULL marks it done */
	spf_check(ctx);
}

static void spf_rcpt(struct mw_ctx *ctx, const char *rcpt)
{
	(void)rcpt;
	spf_once(ctx);
}

static void spf_eom(struct mw_ctx *ctx)
{
	spf_once(ctx);
}

/* spf_prefetch - the TXT record of the identity spf_check will check */
static void spf_prefetch(struct mw_ctx *ctx)
{
	struct spf_inst *in = mw_instance(ctx);
	const char *domain;

	if (in == NULL || mw_direction(ctx) != MW_INBOUND)
		return;
	domain = identity_domain(mw_mail_from(ctx), mw_helo(ctx));
	if (domain_ok(domain))
		dns_prefetch(in->dns, fit_name(domain), DNS_T_TXT);
}

static const struct mw_filter_ops spf_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "spf",
	.fini = spf_fini,
	.on_rcpt = spf_rcpt,
	.on_eom = spf_eom,
};

const struct builtin_filter builtin_spf = {
	.name = "spf",
	.ops = &spf_ops,
	.setup = spf_setup,
	.prefetch = spf_prefetch,
};
