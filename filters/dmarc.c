/* dmarc.c - the built-in "dmarc" filter (RFC 7489) for inbound messages.
 *
 * Listed after "spf" and "dkim" in the filters setting, it reads what they
 * recorded (the spf entry's smtp.mailfrom / smtp.helo when it passed, the
 * header.d of every dkim signature that passed), fetches the policy record
 * _dmarc.FROM-DOMAIN (or, failing that, _dmarc.ORG-DOMAIN, where sp=
 * applies) through the DNS layer and stores it into libopendmarc, which
 * parses it.  Alignment and organizational domains are ours (libpsl over
 * dmarc_psl_file): libopendmarc 1.4.2 aligns x.evil.com with y.evil.com
 * strictly, among other bugs (LIBRARIES.md 3).  pct= sampling is ours too
 * (the library only parses it): a message not sampled gets the next milder
 * policy (RFC 7489 6.6.4).
 *
 * A message whose From holds several addresses, or none, or no usable
 * domain, cannot be evaluated and is a policy failure (RFC 7489 6.6.1
 * says such mail SHOULD be rejected): dmarc_bad_from_action.
 *
 * What a failure does is configured per published policy:
 * dmarc_reject_action (default reject: 550 5.7.1 through reject_reply),
 * dmarc_quarantine_action (default quarantine), p=none only scores.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <idn2.h>
#include <opendmarc/dmarc.h>

#include "filters/addrlist.h"
#include "filters/builtin.h"
#include "filters/dmarc.h"
#include "filters/dns.h"
#include "filters/filter_api.h"
#include "proxy/sbuf.h"
#include "proxy/log.h"
#include "proxy/smtp_parse.h"
#include "proxy/utf8.h"

#define DMARC_MAX_DKIM 16

struct dmarc_inst {
	psl_ctx_t *psl;                  /* read-only after setup */
	struct dns *dns;                 /* borrowed */
	const struct config *cfg;        /* borrowed */
};

/* --- the decision (dmarc.h) ---------------------------------------------- */

const char *dmarc_org_domain(const psl_ctx_t *psl, const char *d, char *out, size_t outsz)
{
	char low[DMARC_DOMAIN_MAX + 1];
	const char *r;
	size_t i;

	/* libpsl matches its rules byte for byte: "Bounce.Example.CO.UK"
	 * found no "co.uk" rule and came back as "CO.UK", so an upper-case
	 * DKIM d= or MAIL FROM domain failed relaxed alignment (DNS names
	 * are case-insensitive, RFC 4343).  ASCII only: a From domain is in
	 * A-labels by now, and no locale may map other bytes. */
	for (i = 0; d[i] != '\0' && i < sizeof(low) - 1; i++)
		low[i] = d[i] >= 'A' && d[i] <= 'Z' ? (char)(d[i] - 'A' + 'a') : d[i];
	low[i] = '\0';
	if (d[i] != '\0') {       /* longer than any domain: aligned with nothing */
		if (outsz > 0)
			out[0] = '\0';
		return out;
	}
	r = psl != NULL ? psl_registrable_domain(psl, low) : NULL;
	snprintf(out, outsz, "%s", r != NULL ? r : low);
	return out;
}

int dmarc_aligned(const psl_ctx_t *psl, const char *a, const char *b, int strict)
{
	char oa[DMARC_DOMAIN_MAX + 1], ob[DMARC_DOMAIN_MAX + 1];

	if (a == NULL || b == NULL || a[0] == '\0' || b[0] == '\0')
		return 0;
	if (strcasecmp(a, b) == 0)
		return 1;
	if (strict)
		return 0;
	dmarc_org_domain(psl, a, oa, sizeof(oa));
	dmarc_org_domain(psl, b, ob, sizeof(ob));
	return oa[0] != '\0' && strcasecmp(oa, ob) == 0;
}

int dmarc_record_version_ok(const char *t)
{
	if (*t != 'v' && *t != 'V')
		return 0;
	t += 1 + strspn(t + 1, " \t");
	if (*t != '=')
		return 0;
	t += 1 + strspn(t + 1, " \t");
	if (strncmp(t, "DMARC1", 6) != 0)
		return 0;
	t += 6 + strspn(t + 6, " \t");
	return *t == ';' || *t == '\0';
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
	/* static: the library keeps a pointer to it.  No TLD file: alignment
	 * and organizational domains are not its job here. */
	static OPENDMARC_LIB_T lib;

	memset(&lib, 0, sizeof(lib));
	lib.tld_type = OPENDMARC_TLD_TYPE_NONE;
	opendmarc_policy_library_init(&lib);
}

static char milder(char p)
{
	return p == DMARC_RECORD_P_REJECT ? DMARC_RECORD_P_QUARANTINE : DMARC_RECORD_P_NONE;
}

void dmarc_decide(const psl_ctx_t *psl, const struct dmarc_in *in, struct dmarc_out *out)
{
	DMARC_POLICY_T *pc;
	char *clean;
	int p = 0, sp = 0, pct = 100, adkim = 0, aspf = 0, st;
	char org[DMARC_DOMAIN_MAX + 1];
	size_t i;

	memset(out, 0, sizeof(*out));
	out->policy = out->applied = DMARC_RECORD_P_NONE;
	out->pct = 100;
	if (in->record == NULL) {
		out->result = DMARC_RES_NONE;
		return;
	}
	pthread_once(&lib_once, lib_init);
	/* the context wants a client address; nothing we ask of it uses one */
	pc = opendmarc_policy_connect_init((u_char *)"192.0.2.1", DMARC_POLICY_IP_TYPE_IPV4);
	if (pc == NULL) {
		out->result = DMARC_RES_PERMERROR;
		snprintf(out->why, sizeof(out->why), "libopendmarc: no memory");
		return;
	}
	dmarc_org_domain(psl, in->from_domain, org, sizeof(org));
	/* what the library refuses or misreads of the optional tags goes
	 * first (dmarc_record.c): one bad pct= made p=reject a permerror */
	clean = dmarc_record_clean(in->record, out->ignored, sizeof(out->ignored));
	st = opendmarc_policy_store_dmarc(pc, (u_char *)clean, (u_char *)in->from_domain,
	    in->record_at_org ? (u_char *)org : NULL);
	free(clean);
	if (st != DMARC_PARSE_OKAY) {
		out->result = DMARC_RES_PERMERROR;
		snprintf(out->why, sizeof(out->why), "bad DMARC record (%s)",
		    st == DMARC_PARSE_ERROR_BAD_VERSION ? "version" :
		    st == DMARC_PARSE_ERROR_NO_REQUIRED_P ? "no p=" : "bad value");
		opendmarc_policy_connect_shutdown(pc);
		return;
	}
	opendmarc_policy_fetch_p(pc, &p);
	opendmarc_policy_fetch_sp(pc, &sp);
	opendmarc_policy_fetch_pct(pc, &pct);
	opendmarc_policy_fetch_adkim(pc, &adkim);
	opendmarc_policy_fetch_aspf(pc, &aspf);
	opendmarc_policy_connect_shutdown(pc);

	for (i = 0; i < in->ndkim; i++)
		if (dmarc_aligned(psl, in->dkim_domains[i], in->from_domain,
		    adkim == DMARC_RECORD_A_STRICT))
			out->dkim_aligned = 1;
	out->spf_aligned = in->spf_domain != NULL &&
	    dmarc_aligned(psl, in->spf_domain, in->from_domain, aspf == DMARC_RECORD_A_STRICT);
	out->policy = (char)(in->record_at_org && sp != DMARC_RECORD_P_UNSPECIFIED ? sp : p);
	if (out->policy != DMARC_RECORD_P_REJECT && out->policy != DMARC_RECORD_P_QUARANTINE)
		out->policy = DMARC_RECORD_P_NONE;
	out->pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
	if (out->dkim_aligned || out->spf_aligned) {
		out->result = DMARC_RES_PASS;
		out->applied = DMARC_RECORD_P_NONE;
		return;
	}
	for (i = 0; i < in->ndkim_temp; i++)
		if (dmarc_aligned(psl, in->dkim_temp_domains[i], in->from_domain,
		    adkim == DMARC_RECORD_A_STRICT))
			out->result = DMARC_RES_TEMPERROR;
	if (in->spf_temp_domain != NULL && dmarc_aligned(psl, in->spf_temp_domain, in->from_domain,
	    aspf == DMARC_RECORD_A_STRICT))
		out->result = DMARC_RES_TEMPERROR;
	if (out->result == DMARC_RES_TEMPERROR) {
		out->applied = DMARC_RECORD_P_NONE;
		snprintf(out->why, sizeof(out->why), "an aligned identifier could not be checked for now");
		return;
	}
	out->result = DMARC_RES_FAIL;
	out->applied = in->draw < (unsigned)out->pct ? out->policy : milder(out->policy);
}

/* --- the filter ------------------------------------------------------------- */

static int dmarc_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct dmarc_inst *in = calloc(1, sizeof(*in));

	if (in == NULL) {
		snprintf(err, errlen, "no memory");
		return -1;
	}
	if ((in->psl = psl_load_file(env->cfg->dmarc_psl_file)) == NULL) {
		snprintf(err, errlen, "dmarc_psl_file %s: cannot load the public suffix list",
		    env->cfg->dmarc_psl_file);
		free(in);
		return -1;
	}
	in->dns = env->dns;
	in->cfg = env->cfg;
	pthread_once(&lib_once, lib_init);
	*instance = in;
	return 0;
}

static void dmarc_fini(void *instance)
{
	struct dmarc_inst *in = instance;

	if (in == NULL)
		return;
	psl_free(in->psl);
	free(in);
}

/* fetch_record - the one DMARC record at _dmarc.DOMAIN, whole, into *out
 * (allocated; free it): a record has no length limit (a long rua= list
 * before p= is common), and one cut at a fixed size lost its p=, which
 * made a domain's p=reject a permerror that let forged mail through.
 * 1 found, 0 none, 2 several (RFC 7489 6.6.3: no DMARC, and no look at
 * the organizational domain either: that is only for an empty set), -1
 * temporary DNS failure. */
static int fetch_record(const struct dmarc_inst *in, const char *domain, char **out)
{
	struct dns_reply *r;
	char name[DMARC_DOMAIN_MAX + 16];
	size_t i, found = 0;

	if (in->dns == NULL)
		return -1;
	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	r = dns_lookup(in->dns, name, DNS_T_TXT, 0);
	if (r->status == DNS_SERVFAIL || r->status == DNS_TIMEOUT) {
		dns_reply_free(r);
		return -1;
	}
	for (i = 0; r->status == DNS_OK && i < r->count; i++) {
		const char *t = r->rr[i].text;

		/* the version tag first, per the grammar: "v = DMARC1; p=reject"
		 * is a record (the exact prefix "v=DMARC1" made it none, and
		 * the domain's forgeries were accepted) */
		if (t == NULL || strlen(t) != r->rr[i].text_len || !dmarc_record_version_ok(t))
			continue;
		if (found++ == 0) {
			free(*out);
			*out = xstrdup(t);
		}
	}
	dns_reply_free(r);
	return found > 1 ? 2 : found == 1;
}

/* domain_of - the domain of an identity "user@domain" (smtp_path_domain,
 * as SPF and the dnsbl filter read the envelope) or "domain" */
static const char *domain_of(const char *id)
{
	const char *d = smtp_path_domain(id);

	return d != NULL ? d : id;
}

static const char *policy_name(char p)
{
	return p == DMARC_RECORD_P_REJECT ? "reject" : p == DMARC_RECORD_P_QUARANTINE ? "quarantine" : "none";
}

/* act - what a failure under policy does, per config */
static void act(struct mw_ctx *ctx, enum dmarc_action a, const char *text)
{
	switch (a) {
	case DMARC_ACT_REJECT:
		mw_verdict(ctx, MW_REJECT, text);
		break;
	case DMARC_ACT_QUARANTINE:
		mw_verdict(ctx, MW_QUARANTINE, text);
		break;
	case DMARC_ACT_TAG:
		mw_verdict(ctx, MW_TAG, text);
		break;
	case DMARC_ACT_SCORE:
		break;
	}
}

/* ascii_domain - d (lower case from addrlist: ASCII, or the UTF-8 of an
 * RFC 6532 address, which the proxy takes with SMTPUTF8) in A-labels, in
 * place: "bücher.test" is xn--bcher-kva.test, whose DMARC record applies
 * (RFC 8616 4); it was "without a usable domain", a reject.  IDNA2008
 * with UTS 46 non-transitional mapping (libidn2, as browsers and mail
 * programs do).  0, or -1 when d is no valid internationalized name. */
static int ascii_domain(char d[ADDR_DOMAIN_MAX + 1])
{
	char *a = NULL;

	if (!utf8_has_8bit(d, strlen(d)))
		return 0;
	if (idn2_to_ascii_8z(d, &a, IDN2_NONTRANSITIONAL) != IDN2_OK || a == NULL)
		return -1;
	if (strlen(a) > ADDR_DOMAIN_MAX) {
		idn2_free(a);
		return -1;
	}
	snprintf(d, ADDR_DOMAIN_MAX + 1, "%s", a);
	idn2_free(a);
	return 0;
}

/* from_domain - the domain of the one From address into from (A-labels,
 * lower case); NULL, or why DMARC cannot apply.  From fields are counted
 * over the whole header (msgscan_parse), not over the first 10,000 the
 * filters are shown: a second From past them made a one-From message of
 * a forgery.  A single field is read whole (addrlist). */
static const char *from_domain(struct mw_ctx *ctx, char from[ADDR_DOMAIN_MAX + 1])
{
	char doms[2][ADDR_DOMAIN_MAX + 1];
	const char *v;
	size_t k;

	from[0] = '\0';
	if (ctx->ms->nfrom > 1)
		return "several From fields";
	if ((v = mw_header(ctx, "From", 0)) == NULL)
		return "no From address";
	k = addrlist_domains(v, doms, 2);
	if (k == 0)
		return "no From address";
	if (k > 1)
		return "several From addresses";
	memcpy(from, doms[0], sizeof(doms[0]));
	if (ascii_domain(from) < 0 || !domain_ok(from)) {
		from[0] = '\0';
		return "From address without a usable domain";
	}
	return NULL;
}

/* dmarc_prefetch - the records dmarc_eom may fetch: the From domain's,
 * and its organizational domain's (asked when the first has none) */
static void dmarc_prefetch(struct mw_ctx *ctx)
{
	const struct dmarc_inst *in = mw_instance(ctx);
	char from[ADDR_DOMAIN_MAX + 1], org[DMARC_DOMAIN_MAX + 1], name[DMARC_DOMAIN_MAX + 16];

	if (in == NULL || mw_direction(ctx) != MW_INBOUND || from_domain(ctx, from) != NULL)
		return;
	snprintf(name, sizeof(name), "_dmarc.%s", from);
	dns_prefetch(in->dns, name, DNS_T_TXT);
	dmarc_org_domain(in->psl, from, org, sizeof(org));
	if (strcmp(org, from) != 0) {
		snprintf(name, sizeof(name), "_dmarc.%s", org);
		dns_prefetch(in->dns, name, DNS_T_TXT);
	}
}

static void dmarc_eom(struct mw_ctx *ctx)
{
	const struct dmarc_inst *in = mw_instance(ctx);
	const struct config *cfg = in->cfg;
	char from[ADDR_DOMAIN_MAX + 1];
	char org[DMARC_DOMAIN_MAX + 1], *record = NULL;
	char dkim_d[DMARC_MAX_DKIM][DMARC_DOMAIN_MAX + 1], spf_d[DMARC_DOMAIN_MAX + 1];
	char dkim_t[DMARC_MAX_DKIM][DMARC_DOMAIN_MAX + 1], spf_t[DMARC_DOMAIN_MAX + 1];
	const char *dkim_list[DMARC_MAX_DKIM], *dkim_tlist[DMARC_MAX_DKIM];
	const struct auth_entry *e;
	struct dmarc_in din;
	struct dmarc_out dout;
	const char *why;
	size_t n;
	int got;

	if (mw_direction(ctx) != MW_INBOUND)
		return;
	if ((why = from_domain(ctx, from)) != NULL) {
		mw_auth_result(ctx, "dmarc", "fail", "reason=\"%s\" header.from=invalid", why);
		mw_symbol(ctx, "DMARC_BAD_FROM", cfg->dmarc_fail_score, "DMARC cannot apply: %s", why);
		act(ctx, cfg->dmarc_bad_from_action, "Message refused: the From field must hold exactly one address (DMARC)");
		return;
	}

	memset(&din, 0, sizeof(din));
	din.from_domain = from;
	dmarc_org_domain(in->psl, from, org, sizeof(org));
	got = fetch_record(in, from, &record);
	if (got == 0 && strcmp(org, from) != 0) {
		got = fetch_record(in, org, &record);
		din.record_at_org = 1;
	}
	if (got == 2) {
		mw_auth_result(ctx, "dmarc", "none", "header.from=%s", from);
		mw_symbol(ctx, "DMARC_NONE", 0, "several DMARC records for %s: none applies", from);
		free(record);
		return;
	}
	if (got < 0) {
		mw_auth_result(ctx, "dmarc", "temperror", "header.from=%s", from);
		mw_symbol(ctx, "DMARC_TEMPFAIL", 0, "DMARC record of %s: DNS failure", from);
		free(record);
		return;
	}
	if (got == 0) {
		mw_auth_result(ctx, "dmarc", "none", "header.from=%s", from);
		mw_symbol(ctx, "DMARC_NONE", 0, "no DMARC record for %s", from);
		free(record);
		return;
	}
	din.record = record;

	/* what spf and dkim recorded before us.  The SPF identity DMARC uses
	 * is MAIL FROM; HELO only for the null sender (RFC 7489 3.1.2). */
	for (n = 0; (e = msgscan_auth(ctx->ms, "spf", n)) != NULL; n++)
		if ((strcmp(e->result, "pass") == 0 && din.spf_domain == NULL) ||
		    (strcmp(e->result, "temperror") == 0 && din.spf_temp_domain == NULL)) {
			int pass = strcmp(e->result, "pass") == 0;
			char id[600];

			if ((mw_mail_from(ctx)[0] != '\0' && auth_props_get(e, "smtp.mailfrom", id, sizeof(id))) ||
			    (mw_mail_from(ctx)[0] == '\0' &&
			     (auth_props_get(e, "smtp.helo", id, sizeof(id)) ||
			      auth_props_get(e, "smtp.mailfrom", id, sizeof(id))))) {
				const char *dd = domain_of(id);
				size_t dl = strlen(dd);

				/* the SPF identity is MAIL FROM (HELO for the null
				 * sender): a recorded value cut short or read wrong must
				 * not stand for another domain */
				if (dl >= sizeof(spf_d) || strcasecmp(dd, mw_mail_from(ctx)[0] != '\0' ?
				    domain_of(mw_mail_from(ctx)) : mw_helo(ctx)) != 0)
					continue;
				memcpy(pass ? spf_d : spf_t, dd, dl + 1);
				if (pass)
					din.spf_domain = spf_d;
				else
					din.spf_temp_domain = spf_t;
			}
		}
	for (n = 0; (e = msgscan_auth(ctx->ms, "dkim", n)) != NULL && din.ndkim < DMARC_MAX_DKIM; n++)
		if (strcmp(e->result, "pass") == 0 &&
		    auth_props_get(e, "header.d", dkim_d[din.ndkim], sizeof(dkim_d[0]))) {
			dkim_list[din.ndkim] = dkim_d[din.ndkim];
			din.ndkim++;
		}
	din.dkim_domains = dkim_list;
	for (n = 0; (e = msgscan_auth(ctx->ms, "dkim", n)) != NULL && din.ndkim_temp < DMARC_MAX_DKIM; n++)
		if (strcmp(e->result, "temperror") == 0 &&
		    auth_props_get(e, "header.d", dkim_t[din.ndkim_temp], sizeof(dkim_t[0]))) {
			dkim_tlist[din.ndkim_temp] = dkim_t[din.ndkim_temp];
			din.ndkim_temp++;
		}
	din.dkim_temp_domains = dkim_tlist;
	din.draw = arc4random_uniform(100);

	dmarc_decide(in->psl, &din, &dout);
	free(record);
	din.record = record = NULL;
	if (dout.ignored[0] != '\0')
		mw_log(ctx, LOG_INFO, "dmarc: record of %s: invalid %s ignored (RFC 7489 6.3: default)",
		    din.record_at_org ? org : from, dout.ignored);
	switch (dout.result) {
	case DMARC_RES_PASS:
		mw_auth_result(ctx, "dmarc", "pass", "header.from=%s", from);
		mw_symbol(ctx, "DMARC_PASS", 0, "DMARC pass for %s (%s aligned)", from,
		    dout.dkim_aligned && dout.spf_aligned ? "DKIM and SPF" : dout.dkim_aligned ? "DKIM" : "SPF");
		break;
	case DMARC_RES_TEMPERROR:
		mw_auth_result(ctx, "dmarc", "temperror", "header.from=%s", from);
		mw_symbol(ctx, "DMARC_TEMPFAIL", 0, "DMARC of %s: %s (policy %s not applied)", from,
		    dout.why, policy_name(dout.policy));
		break;
	case DMARC_RES_PERMERROR:
		mw_auth_result(ctx, "dmarc", "permerror", "header.from=%s", from);
		mw_symbol(ctx, "DMARC_PERMERROR", 0, "DMARC record of %s: %s", from, dout.why);
		break;
	case DMARC_RES_NONE:
		mw_auth_result(ctx, "dmarc", "none", "header.from=%s", from);
		break;
	case DMARC_RES_FAIL: {
		char text[300];

		mw_auth_result(ctx, "dmarc", "fail", "(p=%s dis=%s) header.from=%s",
		    policy_name(dout.policy), policy_name(dout.applied), from);
		mw_symbol(ctx, "DMARC_FAIL", cfg->dmarc_fail_score,
		    "DMARC fail for %s: policy %s, applied %s (pct=%d)", from,
		    policy_name(dout.policy), policy_name(dout.applied), dout.pct);
		snprintf(text, sizeof(text), "Message refused by the DMARC policy of %s", from);
		if (dout.applied == DMARC_RECORD_P_REJECT) {
			mw_symbol(ctx, "DMARC_POLICY_REJECT", 0, "p=reject of %s", from);
			act(ctx, cfg->dmarc_reject_action, text);
		} else if (dout.applied == DMARC_RECORD_P_QUARANTINE) {
			mw_symbol(ctx, "DMARC_POLICY_QUARANTINE", 0, "p=quarantine of %s", from);
			act(ctx, cfg->dmarc_quarantine_action, text);
		}
		break;
	}
	}
}

static const struct mw_filter_ops dmarc_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "dmarc",
	.fini = dmarc_fini,
	.on_eom = dmarc_eom,
};

const struct builtin_filter builtin_dmarc = {
	.name = "dmarc",
	.ops = &dmarc_ops,
	.setup = dmarc_setup,
	.prefetch = dmarc_prefetch,
};
