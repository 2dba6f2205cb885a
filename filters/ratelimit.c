/* ratelimit.c - the built-in "ratelimit" filter: at most COUNT messages
 * per WINDOW from one client (ratelimit_ip: an IPv4 address or an IPv6
 * /64, ipnet_limit_key), one envelope sender
 * (ratelimit_sender), one authenticated user (ratelimit_user), and to one
 * recipient domain (ratelimit_rcpt_domain); over the limit the message
 * gets 451 4.7.1.
 *
 * Counters live in the store, so the limits hold across several
 * mailwarden machines.  Sliding window, approximated as most rate
 * limiters do with two fixed windows: the rate is this window's count
 * plus the previous window's count weighted by how much of it still lies
 * within WINDOW.  Every attempt counts, refused ones too (a sender that
 * keeps hammering stays throttled).  Keys:
 *   rl:<kind>:<hash of the value>:<window number>   integer, TTL 2 windows
 * where the hash is store_key_hash's (32 hex digits); counters under the
 * 16-digit FNV-1a keys of before are not read: they are gone in two
 * windows, and an upgrade only starts each subject's count afresh.
 * Runs at end of data (see greylist.c for RCPT time).  A store failure is
 * logged and handled as store_failure says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "filters/builtin.h"
#include "filters/filter_api.h"
#include "filters/ipnet.h"
#include "filters/store.h"
#include "proxy/sbuf.h"

enum rl_kind { RL_IP, RL_SENDER, RL_USER, RL_RCPT_DOMAIN, RL_KINDS };

static const char *const kind_name[RL_KINDS] = { "ip", "sender", "user", "rcpt_domain" };
static const char *const kind_symbol[RL_KINDS] = {
	"RATELIMIT_IP", "RATELIMIT_SENDER", "RATELIMIT_USER", "RATELIMIT_RCPT_DOMAIN"
};

struct limit {
	unsigned count;                /* 0 = off */
	unsigned window_ms;
};

struct ratelimit {
	const struct config *cfg;
	struct store *store;
	struct limit lim[RL_KINDS];
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

/* rate - count this attempt for value; the sliding-window rate in *rate.
 * 0, or -1 on a store failure. */
static int rate(struct ratelimit *r, enum rl_kind k, const char *value, double *out)
{
	const struct limit *l = &r->lim[k];
	struct timespec ts;
	uint64_t now, win, idx;
	double into;
	char pre[32], subj[64], key[96], v[32];
	int64_t cur;
	int got;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	win = l->window_ms;
	idx = now / win;
	into = (double)(now % win) / (double)win;
	snprintf(pre, sizeof(pre), "rl:%s:", kind_name[k]);
	if (store_key_hash(pre, &value, 1, subj, sizeof(subj)) < 0)
		return -1;
	snprintf(key, sizeof(key), "%s:%llu", subj, (unsigned long long)idx);
	if (store_incr(r->store, key, 1, (unsigned)(2 * win / 1000 + 1), &cur) < 0)
		return -1;
	snprintf(key, sizeof(key), "%s:%llu", subj, (unsigned long long)(idx - 1));
	if ((got = store_get(r->store, key, v, sizeof(v))) < 0)
		return -1;
	*out = (double)cur + (got ? (double)strtoll(v, NULL, 10) * (1.0 - into) : 0.0);
	return 0;
}

/* check - 1 over the limit (verdict given), 0 fine, -1 store failure */
static int check(struct mw_ctx *ctx, struct ratelimit *r, enum rl_kind k, const char *value)
{
	double rt;
	char text[160];

	if (r->lim[k].count == 0 || value == NULL || value[0] == '\0')
		return 0;
	if (rate(r, k, value, &rt) < 0)
		return -1;
	if (rt <= (double)r->lim[k].count)
		return 0;
	mw_symbol(ctx, kind_symbol[k], 0, "%s rate %.1f over %u per %us", kind_name[k], rt,
	    r->lim[k].count, r->lim[k].window_ms / 1000);
	snprintf(text, sizeof(text), "Rate limit exceeded (%s), please try again later", kind_name[k]);
	mw_verdict(ctx, MW_TEMPFAIL, text);
	return 1;
}

static void ratelimit_eom(struct mw_ctx *ctx)
{
	struct ratelimit *r = mw_instance(ctx);
	const struct scan_request *req = ctx->ms->req;
	char ipkey[64];
	int rc = 0;
	size_t i, j;

	/* an IPv6 client can take any address of its /64, and a mapped
	 * address is its IPv4 one: counted per address, either would start
	 * a fresh counter at will */
	if (ipnet_limit_key(mw_client_ip(ctx), ipkey, sizeof(ipkey)) < 0)
		snprintf(ipkey, sizeof(ipkey), "%s", mw_client_ip(ctx));
	rc |= check(ctx, r, RL_IP, ipkey) < 0;
	rc |= check(ctx, r, RL_SENDER, mw_mail_from(ctx)) < 0;
	rc |= check(ctx, r, RL_USER, req->auth_user) < 0;
	for (i = 0; i < mw_rcpt_count(ctx) && r->lim[RL_RCPT_DOMAIN].count; i++) {
		const char *at = strrchr(mw_rcpt(ctx, i), '@');

		/* each domain once per message */
		for (j = 0; j < i; j++) {
			const char *o = strrchr(mw_rcpt(ctx, j), '@');

			if (o && at && strcasecmp(o, at) == 0)
				break;
		}
		if (at != NULL && j == i)
			rc |= check(ctx, r, RL_RCPT_DOMAIN, at + 1) < 0;
	}
	if (rc) {
		mw_log(ctx, LOG_WARNING, "store unavailable: %s",
		    r->cfg->store_fail_closed ? "tempfail (store_failure = closed)"
		                              : "limits not applied (store_failure = open)");
		mw_symbol(ctx, "RATELIMIT_STORE_FAIL", 0, "rate limit store unavailable");
		if (r->cfg->store_fail_closed)
			mw_verdict(ctx, MW_TEMPFAIL, "Rate limiting unavailable, please try again later");
	}
}

static const struct mw_filter_ops ratelimit_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "ratelimit",
	.fini = ratelimit_fini,
	.on_eom = ratelimit_eom,
};

const struct builtin_filter builtin_ratelimit = {
	.name = "ratelimit",
	.ops = &ratelimit_ops,
	.setup = ratelimit_setup,
};
