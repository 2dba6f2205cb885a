/* rules_facts.c - answers eval: functions' questions about other filters'
 * verdicts (see rules_facts.h) from the Authentication-Results entries the
 * filters before the rules filter recorded for this message (pipeline
 * order: list spf, dkim, dmarc before rules in the filters setting).
 *
 * Keys (rules/eval_facts.c asks them):
 *   "spf:mailfrom"  the spf filter's result for the MAIL FROM identity
 *                   ("pass", "fail", "softfail", "neutral", "none",
 *                   "temperror", "permerror")
 *   "spf:helo"      its result for the HELO identity (null sender)
 *   "dkim"          one line per signature the dkim filter judged:
 *                   "RESULT DOMAIN SELECTOR B-PREFIX" ("-" for a missing
 *                   one); "none" when it found no signature
 *   "dmarc"         "RESULT POLICY" of the dmarc filter ("fail reject",
 *                   "pass -", "none -")
 *   "arc"           the result of an "arc" entry, if a filter made one
 * NULL when the filter did not run for this message (not configured,
 * listed after rules, or outbound mail). */
#include <stdio.h>
#include <string.h>

#include "filters/filter_api.h"
#include "filters/rules_facts.h"

/* an entry's property, "-" when it has none */
static void prop(const struct auth_entry *e, const char *key, char *out, size_t outlen)
{
	if (!auth_props_get(e, key, out, outlen) || !out[0]) snprintf(out, outlen, "-");
}

static const char *spf_fact(const struct msgscan *ms, const char *ident, char *buf, size_t buflen)
{
	const struct auth_entry *e;
	char v[8];
	for (size_t n = 0; (e = msgscan_auth(ms, "spf", n)) != NULL; n++)
		if (auth_props_get(e, ident, v, sizeof v)) {
			snprintf(buf, buflen, "%s", e->result);
			return buf;
		}
	return NULL;
}

static const char *dkim_fact(const struct msgscan *ms, char *buf, size_t buflen)
{
	const struct auth_entry *e;
	size_t o = 0;
	buf[0] = '\0';
	for (size_t n = 0; (e = msgscan_auth(ms, "dkim", n)) != NULL; n++) {
		char d[256], s[128], b[16];
		prop(e, "header.d", d, sizeof d);
		prop(e, "header.s", s, sizeof s);
		prop(e, "header.b", b, sizeof b);
		int w = snprintf(buf + o, buflen - o, "%s%s %s %s %s", o ? "\n" : "", e->result, d, s, b);
		if (w < 0 || (size_t)w >= buflen - o) { buf[o] = '\0'; break; }   /* the ones that fit */
		o += (size_t)w;
	}
	return msgscan_auth(ms, "dkim", 0) ? buf : NULL;
}

static const char *dmarc_fact(const struct msgscan *ms, char *buf, size_t buflen)
{
	const struct auth_entry *e = msgscan_auth(ms, "dmarc", 0);
	if (!e) return NULL;
	/* the policy is in the comment of a failure: "(p=reject dis=...)" */
	char pol[32] = "-";
	const char *p = strstr(e->props, "(p=");
	if (p) {
		p += 3;
		size_t n = strcspn(p, " )");
		if (n && n < sizeof pol) { memcpy(pol, p, n); pol[n] = '\0'; }
	}
	snprintf(buf, buflen, "%s %s", e->result, pol);
	return buf;
}

const char *rules_fact(struct mw_ctx *ctx, const char *key, char *buf, size_t buflen)
{
	if (!ctx || !ctx->ms || !buflen) return NULL;
	const struct msgscan *ms = ctx->ms;
	if (strcmp(key, "spf:mailfrom") == 0) return spf_fact(ms, "smtp.mailfrom", buf, buflen);
	if (strcmp(key, "spf:helo") == 0) return spf_fact(ms, "smtp.helo", buf, buflen);
	if (strcmp(key, "dkim") == 0) return dkim_fact(ms, buf, buflen);
	if (strcmp(key, "dmarc") == 0) return dmarc_fact(ms, buf, buflen);
	if (strcmp(key, "arc") == 0) {
		const struct auth_entry *e = msgscan_auth(ms, "arc", 0);
		if (!e) return NULL;
		snprintf(buf, buflen, "%s", e->result);
		return buf;
	}
	return NULL;
}
