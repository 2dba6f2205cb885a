/* ratelimit.c - the built-in "ratelimit" filter: at most COUNT messages
 * per WINDOW from one client (ratelimit_ip: an IPv4 address or an IPv6
 * /64, ipnet_limit_key), one envelope sender
 * (ratelimit_sender), one authenticated user (ratelimit_user), and to one
 * recipient domain (ratelimit_rcpt_domain); over the limit the message
 * gets 451 4.7.1 with about how long to wait.
 *
 * Counters live in the store, so the limits hold across several
 * mailwarden machines.  Sliding window, approximated as most rate
 * limiters do with two fixed windows: the rate is this window's count
 * plus the previous window's count weighted by how much of it still lies
 * within WINDOW.  A subject's key is rl:<kind>:<hash of the value>, the
 * hash store_key_hash's (32 hex digits); the store keeps its windows
 * (store_take: LMDB as <key>:<window number>, Redis as one hash), numbered
 * by the STORE's clock, so that machines sharing a Redis whose clocks
 * differ count into the same windows (numbered by each machine's own
 * clock, one a window ahead of another counted where that one never
 * looked, and a limit let about twice its count through; session 21).
 * Counters under the 16-digit FNV-1a keys of before, or Redis' string
 * counters of before session 21, are not read: they are gone in two
 * windows, and an upgrade only starts each subject's count afresh.
 *
 * Only messages the client is told were taken count, as with a token
 * bucket: a refused attempt, by this filter or any other (greylisting,
 * a reject, the score), must not, or a legitimate MTA retrying its
 * deferred queue keeps itself over the limit with its retries alone and
 * nothing arrives until its queue lifetime bounces the lot (session 19).
 * So each limit is taken with store_take, the look and the increment one
 * step (two threads or machines cannot both take the last unit), only
 * while the message is not refused yet; what was taken is given back
 * when the message ends up refused (builtin_on_outcome).  Once another
 * filter has refused the message the counters are only looked at: over a
 * limit, the reply says so when it asks for the longer wait.
 *
 * Runs at end of data; with the milter's envelope check at RCPT (no
 * message yet) it only looks, so that the MTA refuses a recipient over a
 * limit before DATA without anything counted.  Domains are keyed in
 * their IDNA A-label form (bücher.example, BÜCHER.example and
 * xn--bcher-kva.example are one domain); an address literal is keyed as
 * written.  A store failure is logged and handled as store_failure says.
 */
#include <idn2.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "filters/builtin.h"
#include "filters/filter_api.h"
#include "filters/ipnet.h"
#include "filters/sender_norm.h"
#include "filters/store.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

enum rl_kind { RL_IP, RL_SENDER, RL_USER, RL_RCPT_DOMAIN, RL_KINDS };

static const char *const kind_name[RL_KINDS] = { "ip", "sender", "user", "rcpt_domain" };
static const char *const kind_symbol[RL_KINDS] = {
	"RATELIMIT_IP", "RATELIMIT_SENDER", "RATELIMIT_USER", "RATELIMIT_RCPT_DOMAIN"
};

#define RL_KEY_MAX 64        /* "rl:rcpt_domain:" + 32 hex */

struct limit {
	unsigned count;                /* 0 = off */
	unsigned window_ms;
};

struct ratelimit {
	const struct config *cfg;
	struct store *store;
	struct limit lim[RL_KINDS];
};

/* one unit a message took, given back if the message is refused: the
 * subject, its window length and the store's time of the take (which
 * window it counted in) */
struct rl_unit {
	char key[RL_KEY_MAX];
	unsigned window_ms;
	int64_t at_ms;
};

/* what one message took: handed to builtin_on_outcome */
struct rl_taken {
	struct store *store;
	char session_id[sizeof(((struct scan_request *)0)->session_id)];
	struct rl_unit *u;
	size_t n, cap;
};

/* one message's pass over the limits */
struct rl_run {
	int look_only;                 /* refused already, or no message yet: nothing taken */
	int failed;                    /* a store failure */
	unsigned over_wait_s;          /* the longest wait of a limit over, 0 = none over */
	enum rl_kind over_kind;        /* ... and its kind */
	struct rl_taken *taken;        /* NULL until something is taken */
};

/* parse_limit - "COUNT/WINDOW" ("100/1h"), "" = off */
static int parse_limit(const char *name, const char *v, struct limit *l, char *err, size_t errlen)
{
	char *slash, *end;
	unsigned long n;

	l->count = 0;
	if (v[0] == '\0')
		return 0;
	slash = strchr(v, '/');
	n = strtoul(v, &end, 10);
	if (slash == NULL || end != slash || n == 0 || n > 100000000
	    || config_parse_duration(slash + 1, &l->window_ms) < 0 || l->window_ms < 1000) {
		snprintf(err, errlen, "%s: \"%s\" is not COUNT/WINDOW (e.g. 100/1h; window at least 1s)", name, v);
		return -1;
	}
	l->count = (unsigned)n;
	return 0;
}

static void ratelimit_fini(void *instance)
{
	struct ratelimit *r = instance;

	if (r == NULL)
		return;
	store_close(r->store);
	free(r);
}

static int ratelimit_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct ratelimit *r = xcalloc(1, sizeof(*r));
	const struct config *c = env->cfg;

	r->cfg = c;
	if (parse_limit("ratelimit_ip", c->ratelimit_ip, &r->lim[RL_IP], err, errlen) < 0
	    || parse_limit("ratelimit_sender", c->ratelimit_sender, &r->lim[RL_SENDER], err, errlen) < 0
	    || parse_limit("ratelimit_user", c->ratelimit_user, &r->lim[RL_USER], err, errlen) < 0
	    || parse_limit("ratelimit_rcpt_domain", c->ratelimit_rcpt_domain, &r->lim[RL_RCPT_DOMAIN],
	                   err, errlen) < 0
	    || (r->store = store_open(c, err, errlen)) == NULL) {
		ratelimit_fini(r);
		return -1;
	}
	*instance = r;
	return 0;
}

/* domain_key - the domain d as it is keyed (malloc'd): its IDNA A-label
 * form (UTS 46 non-transitional mapping, which also folds non-ASCII
 * case, as dmarc.c does), so that one domain written as U-labels, as
 * A-labels or in another case has one counter; ASCII is lower-cased by
 * store_key_hash.  An address literal ([192.0.2.1]), or a name libidn2
 * refuses, is keyed as written (whole: never cut, or two long names
 * would share a counter). */
static char *domain_key(const char *d)
{
	char *a = NULL, *k;
	const unsigned char *p;

	if (d[0] == '[')
		return xstrdup(d);
	for (p = (const unsigned char *)d; *p && *p < 0x80; p++)
		;
	if (*p == '\0' || idn2_to_ascii_8z(d, &a, IDN2_NONTRANSITIONAL) != IDN2_OK || a == NULL) {
		idn2_free(a);
		return xstrdup(d);
	}
	k = xstrdup(a);
	idn2_free(a);
	return k;
}

/* sender_key - the envelope sender without its per-message tags
 * (sender_norm_tags: a BATV or SRS tag and a +extension do not make a new
 * sender, or each message of a tagging sender would start a counter of its
 * own; digits stay: user1@ and user2@ are two mailboxes), its domain as
 * domain_key has it (malloc'd) */
static char *sender_key(const char *raw)
{
	size_t rawlen = strlen(raw);
	char *s = xmalloc(rawlen + 1), *dom, *k;
	const char *at;
	size_t n;

	if (sender_norm_tags(raw, s, rawlen + 1) < 0)
		snprintf(s, rawlen + 1, "%s", raw);
	at = strrchr(s, '@');
	if (at == NULL)
		return s;
	dom = domain_key(at + 1);
	n = (size_t)(at - s) + 1 + strlen(dom) + 1;
	k = xmalloc(n);
	snprintf(k, n, "%.*s@%s", (int)(at - s), s, dom);
	free(dom);
	free(s);
	return k;
}

/* wait_ms - about how long from now until the limit lets one message
 * through, with cur taken in this window, prev in the one before and
 * into the part of this window gone (nobody else taking meanwhile) */
static double wait_ms(const struct limit *l, int64_t cur, int64_t prev, double into)
{
	double c = (double)l->count, w = (double)l->window_ms, need;

	if ((double)cur + 1 <= c) {
		/* within this window, once the previous one weighs little enough */
		need = prev > 0 ? 1.0 - (c - 1 - (double)cur) / (double)prev : 0.0;
		return need > into ? (need - into) * w : 0.0;
	}
	/* in the next window, once this one (its previous then) weighs
	 * little enough */
	need = 1.0 - (c - 1) / (double)cur;
	return (1.0 - into) * w + (need > 0 ? need * w : 0.0);
}

/* say_wait - "N seconds" (or minutes, hours) into out; "1 second" */
static void say_wait(unsigned s, char *out, size_t outsz)
{
	unsigned n = s;
	const char *unit = "second";

	if (s >= 2 * 3600)
		n = (s + 3599) / 3600, unit = "hour";
	else if (s >= 120)
		n = (s + 59) / 60, unit = "minute";
	snprintf(out, outsz, "%u %s%s", n, unit, n == 1 ? "" : "s");
}

static void taken_free(struct rl_taken *t)
{
	if (t != NULL)
		free(t->u);
	free(t);
}

/* give_back - every unit t took, back to its counter */
static void give_back(struct rl_taken *t)
{
	size_t i, failed = 0;

	for (i = 0; i < t->n; i++)
		if (store_take(t->store, t->u[i].key, t->u[i].window_ms, -1, 0, &t->u[i].at_ms, NULL,
		               NULL) < 0)
			failed++;
	if (failed)
		slog(t->session_id, LOG_WARNING, "ratelimit: %zu of %zu units taken by a refused "
		     "message not given back: store unavailable", failed, t->n);
	t->n = 0;
}

/* outcome - builtin_on_outcome's call: a message refused gives back
 * what it took, one taken keeps it */
static void outcome(void *data, int taken)
{
	struct rl_taken *t = data;

	if (!taken)
		give_back(t);
	taken_free(t);
}

/* check - one limit for value: taken (or looked at), and noted in run
 * when over it.  0, or -1 on a store failure. */
static int check(struct mw_ctx *ctx, struct ratelimit *r, struct rl_run *run, enum rl_kind k,
                 const char *value)
{
	const struct limit *l = &r->lim[k];
	double into, rate, w;
	char pre[32], key[RL_KEY_MAX];
	int64_t cur, old, at = 0;
	int got, look = run->look_only || run->over_wait_s > 0;

	if (l->count == 0 || value == NULL || value[0] == '\0')
		return 0;
	snprintf(pre, sizeof(pre), "rl:%s:", kind_name[k]);
	if (store_key_hash(pre, &value, 1, key, sizeof(key)) < 0)
		return -1;
	/* a message already refused (or after a limit over) takes nothing:
	 * it only looks whether it would be over */
	got = store_take(r->store, key, l->window_ms, look ? 0 : 1, (int64_t)l->count, &at, &cur,
	                 &old);
	if (got < 0)
		return -1;
	/* how far into its window the store's clock was */
	into = (double)((uint64_t)at % l->window_ms) / (double)l->window_ms;
	rate = (double)cur + (double)old * (1.0 - into);
	if (!look && got == 1) {
		struct rl_taken *t = run->taken;

		if (t == NULL) {
			t = run->taken = xcalloc(1, sizeof(*t));
			t->store = r->store;
			snprintf(t->session_id, sizeof(t->session_id), "%s", ctx->ms->req->session_id);
		}
		if (t->n == t->cap) {
			t->cap = t->cap ? 2 * t->cap : 4;
			t->u = xrealloc(t->u, t->cap * sizeof(*t->u));
		}
		memcpy(t->u[t->n].key, key, sizeof(key));
		t->u[t->n].window_ms = l->window_ms;
		t->u[t->n].at_ms = at;
		t->n++;
		return 0;
	}
	/* what this attempt would make the rate (a take refused wrote
	 * nothing); a take refused is over whatever the rounding here (the
	 * store compared with the weight as it was sent) */
	rate += 1.0;
	if (look && rate <= (double)l->count)
		return 0;
	w = wait_ms(l, cur, old, into);
	mw_symbol(ctx, kind_symbol[k], 0, "%s rate %.1f over %u per %us", kind_name[k], rate,
	    l->count, l->window_ms / 1000);
	if ((unsigned)((w + 999) / 1000) >= run->over_wait_s) {
		unsigned s = (unsigned)((w + 999) / 1000);

		run->over_wait_s = s ? s : 1;
		run->over_kind = k;
	}
	return 0;
}

/* verdict - 451 for a limit over, saying about when to come back.  An
 * earlier tempfail that says to come back sooner (greylisting's "try
 * again in 1 second") gives way to it (mw_verdict). */
static void verdict(struct mw_ctx *ctx, const struct rl_run *run)
{
	char text[160], when[32];

	say_wait(run->over_wait_s, when, sizeof(when));
	snprintf(text, sizeof(text), "Rate limit exceeded (%s), please try again in %s",
	    kind_name[run->over_kind], when);
	mw_verdict(ctx, MW_TEMPFAIL, text);
}

/* ratelimit_run - the limits over the message (envelope: over the
 * recipients given, with no message the look only) */
static void ratelimit_run(struct mw_ctx *ctx, int envelope)
{
	struct ratelimit *r = mw_instance(ctx);
	const struct scan_request *req = ctx->ms->req;
	struct rl_run run;
	char ipkey[64], *skey, *dom, **seen = NULL;
	size_t i, j, nseen = 0;
	int rc = 0;

	memset(&run, 0, sizeof(run));
	run.look_only = envelope || ctx->ms->hard >= MW_TEMPFAIL;
	/* an IPv6 client can take any address of its /64, and a mapped
	 * address is its IPv4 one: counted per address, either would start
	 * a fresh counter at will */
	if (ipnet_limit_key(mw_client_ip(ctx), ipkey, sizeof(ipkey)) < 0)
		snprintf(ipkey, sizeof(ipkey), "%s", mw_client_ip(ctx));
	rc |= check(ctx, r, &run, RL_IP, ipkey) < 0;
	skey = sender_key(mw_mail_from(ctx));
	rc |= check(ctx, r, &run, RL_SENDER, skey) < 0;
	free(skey);
	rc |= check(ctx, r, &run, RL_USER, req->auth_user) < 0;
	if (r->lim[RL_RCPT_DOMAIN].count)
		seen = xcalloc(mw_rcpt_count(ctx) + 1, sizeof(*seen));
	for (i = 0; seen != NULL && i < mw_rcpt_count(ctx); i++) {
		const char *at = strrchr(mw_rcpt(ctx, i), '@');

		if (at == NULL)
			continue;
		dom = domain_key(at + 1);
		/* each domain once per message, however it is written */
		for (j = 0; j < nseen; j++)
			if (strcasecmp(seen[j], dom) == 0)
				break;
		if (j < nseen) {
			free(dom);
			continue;
		}
		seen[nseen++] = dom;
		rc |= check(ctx, r, &run, RL_RCPT_DOMAIN, dom) < 0;
	}
	for (j = 0; j < nseen; j++)
		free(seen[j]);
	free(seen);
	if (rc) {
		mw_log(ctx, LOG_WARNING, "store unavailable: %s",
		    r->cfg->store_fail_closed ? "tempfail (store_failure = closed)"
		                              : "limits not applied (store_failure = open)");
		mw_symbol(ctx, "RATELIMIT_STORE_FAIL", 0, "rate limit store unavailable");
		if (r->cfg->store_fail_closed)
			mw_verdict(ctx, MW_TEMPFAIL, "Rate limiting unavailable, please try again later");
	}
	if (run.over_wait_s > 0)
		verdict(ctx, &run);
	if (run.taken == NULL)
		return;
	if (ctx->ms->hard >= MW_TEMPFAIL) {
		/* refused here (a limit over, the store closed): what the
		 * limits before took goes back now */
		give_back(run.taken);
		taken_free(run.taken);
		return;
	}
	builtin_on_outcome(ctx, outcome, run.taken);
}

static void ratelimit_eom(struct mw_ctx *ctx)
{
	ratelimit_run(ctx, 0);
}

/* The milter's envelope check (one recipient, at RCPT) only looks: the
 * MTA refuses a recipient over a limit before DATA, and nothing counts
 * until a message is taken at its end. */
static void ratelimit_rcpt(struct mw_ctx *ctx, const char *rcpt)
{
	(void)rcpt;
	if (ctx->ms->req->stage == SCAN_ENVELOPE)
		ratelimit_run(ctx, 1);
}

static const struct mw_filter_ops ratelimit_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "ratelimit",
	.fini = ratelimit_fini,
	.on_rcpt = ratelimit_rcpt,
	.on_eom = ratelimit_eom,
};

const struct builtin_filter builtin_ratelimit = {
	.name = "ratelimit",
	.ops = &ratelimit_ops,
	.setup = ratelimit_setup,
};
