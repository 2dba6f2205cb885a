/* greylist.c - the built-in "greylist" filter: refuse mail from a new
 * (client network, sender, recipient) triplet with 451 4.7.1 and accept it
 * when the sender retries after greylist_delay, as real MTAs do and most
 * spam engines do not.
 *
 * The triplet uses the client's /24 (IPv4) or /64 (IPv6), since a pool of
 * outgoing servers rarely retries from the same address.  State, in the
 * store so several mailwarden machines behind one MX share it:
 *   gl:<hash>  "F<ms>"  first attempt at <ms>, kept greylist_retry_window
 *              "P<ms>"  passed (last renewed at <ms>); let through for
 *                       greylist_pass_lifetime, renewed by a message at
 *                       most once an hour (a pass is a read, not a write)
 * <hash> is 32 hex digits, store_key_hash of the triplet; an entry under
 * the 16-digit FNV-1a key of before is moved on first sight (legacy_get).
 * A message passes only when every recipient's triplet passes.  Skipped
 * for authenticated and outbound mail, and for greylist_whitelist entries:
 * client IPs/networks (192.0.2.0/24), sender domains (@example.org) and
 * recipients (to:postmaster@example.net or to:@example.net).
 *
 * It runs at end of data (the proxy can tempfail a message after DATA as
 * well as at RCPT; a milter front end wanting RCPT-time answers would need
 * a scanner request at RCPT).  A store failure is logged and, by
 * store_failure, lets the message through (open) or tempfails it (closed).
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

#define MAX_WL 256
#define RENEW_MS (3600 * 1000LL)     /* a passed triplet's lifetime is renewed at most hourly... */

struct greylist {
	const struct config *cfg;
	struct store *store;
	struct ipnet nets[MAX_WL];
	size_t nnets;
	char  *senders[MAX_WL];        /* domains, lower case */
	size_t nsenders;
	char  *rcpts[MAX_WL];          /* "addr" or "@domain", lower case */
	size_t nrcpts;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *lower_dup(const char *s)
{
	char *d = xstrdup(s);

	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

static void greylist_fini(void *instance)
{
	struct greylist *g = instance;
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->nsenders; i++)
		free(g->senders[i]);
	for (i = 0; i < g->nrcpts; i++)
		free(g->rcpts[i]);
	store_close(g->store);
	free(g);
}

static int parse_whitelist(struct greylist *g, const char *v, char *err, size_t errlen)
{
	char buf[sizeof(g->cfg->greylist_whitelist)], *save = NULL, *w;

	snprintf(buf, sizeof(buf), "%s", v);
	for (w = strtok_r(buf, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save)) {
		if (g->nnets == MAX_WL || g->nsenders == MAX_WL || g->nrcpts == MAX_WL) {
			snprintf(err, errlen, "greylist_whitelist: more than %d entries of a kind", MAX_WL);
			return -1;
		}
		if (strncasecmp(w, "to:", 3) == 0 && w[3] != '\0')
			g->rcpts[g->nrcpts++] = lower_dup(w + 3);
		else if (w[0] == '@' && w[1] != '\0')
			g->senders[g->nsenders++] = lower_dup(w + 1);
		else if (ipnet_parse(w, &g->nets[g->nnets]) == 0)
			g->nnets++;
		else {
			snprintf(err, errlen, "greylist_whitelist: \"%s\" is not an IP/network, @domain or to:recipient", w);
			return -1;
		}
	}
	return 0;
}

static int greylist_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct greylist *g = xcalloc(1, sizeof(*g));

	g->cfg = env->cfg;
	if (parse_whitelist(g, env->cfg->greylist_whitelist, err, errlen) < 0
	    || (g->store = store_open(env->cfg, err, errlen)) == NULL) {
		greylist_fini(g);
		return -1;
	}
	*instance = g;
	return 0;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

static int rcpt_whitelisted(const struct greylist *g, const char *rcpt)
{
	for (size_t i = 0; i < g->nrcpts; i++) {
		const char *w = g->rcpts[i];

		if (w[0] == '@' ? strcasecmp(domain_of(rcpt), w + 1) == 0 : strcasecmp(rcpt, w) == 0)
			return 1;
	}
	return 0;
}

static int client_whitelisted(const struct greylist *g, const char *ip, const char *sender)
{
	struct ipnet a;

	if (ipnet_parse(ip, &a) == 0)
		for (size_t i = 0; i < g->nnets; i++)
			if (ipnet_contains(&g->nets[i], &a))
				return 1;
	for (size_t i = 0; i < g->nsenders; i++)
		if (strcasecmp(domain_of(sender), g->senders[i]) == 0)
			return 1;
	return 0;
}

/* triplet_key - "gl:<32 hex>": the triplet hashed by store_key_hash */
static int triplet_key(const char *net, const char *sender, const char *rcpt, char *out, size_t outsz)
{
	const char *parts[3] = { net, sender, rcpt };

	return store_key_hash("gl:", parts, 3, out, outsz);
}

/* legacy_key - "gl:<16 hex>", the key of the same triplet before the
 * upgrade to store_key_hash: 64-bit FNV-1a over the lower-cased parts,
 * each followed by 0xff.  Only read, to migrate an entry (check_triplet):
 * a sender crafting a collision with it gains at most what it could
 * before the upgrade, and only while old entries live. */
static void legacy_key(const char *net, const char *sender, const char *rcpt, char *out, size_t outsz)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *parts[3] = { net, sender, rcpt };

	for (int k = 0; k < 3; k++) {
		for (const char *p = parts[k]; *p; p++) {
			unsigned char c = (unsigned char)*p;

			h ^= (c >= 'A' && c <= 'Z') ? c + 32 : c;
			h *= 0x100000001b3ULL;
		}
		h ^= 0xff;
		h *= 0x100000001b3ULL;
	}
	snprintf(out, outsz, "gl:%016llx", (unsigned long long)h);
}

enum gl_state { GL_PASS, GL_WAIT, GL_FAIL };

/* legacy_get - the triplet's entry under its legacy_key, to be moved to
 * its key with what is left of its lifetime (a pass lives
 * greylist_pass_lifetime from its last renewal, a first attempt
 * greylist_retry_window from itself), so that an upgrade does not
 * greylist every known correspondent once more.  1 with the value in v
 * and the seconds it has left in *left_s, 0 none (or spent), -1 store
 * failure. */
static int legacy_get(struct greylist *g, const char *old, char *v, size_t vsz, int64_t now,
                      unsigned *left_s)
{
	const struct config *cfg = g->cfg;
	int64_t left;
	int r;

	if ((r = store_get(g->store, old, v, vsz)) <= 0)
		return r;
	if (v[0] != 'P' && v[0] != 'F')
		return 0;
	left = strtoll(v + 1, NULL, 10) - now
	    + (int64_t)(v[0] == 'P' ? cfg->greylist_pass_lifetime : cfg->greylist_retry_window);
	if (left <= 0)
		return 0;
	*left_s = (unsigned)((left + 999) / 1000);
	return 1;
}

/* check_triplet - GL_PASS, GL_WAIT (*wait_s = seconds left), GL_FAIL
 * (store).  At most four store calls: the key, the old key when the key
 * is unknown (one more read for a new triplet, which is written anyway),
 * one write, and the old key's removal when its entry moved. */
static enum gl_state check_triplet(struct greylist *g, const char *key, const char *old,
                                   unsigned *wait_s, int *fresh)
{
	const struct config *cfg = g->cfg;
	unsigned retry_s = (cfg->greylist_retry_window + 999) / 1000;
	unsigned pass_s = (cfg->greylist_pass_lifetime + 999) / 1000;
	char v[64], nv[32];
	const char *wv = NULL;         /* what to write under key, if anything */
	unsigned ttl = 0, moved_s = 0; /* moved_s: v came from old, with that long left */
	int64_t now = now_ms(), first;
	enum gl_state st;
	int r;

	*fresh = 0;
	if ((r = store_get(g->store, key, v, sizeof(v))) < 0)
		return GL_FAIL;
	if (r == 0 && (r = legacy_get(g, old, v, sizeof(v), now, &moved_s)) < 0)
		return GL_FAIL;
	snprintf(nv, sizeof(nv), "P%lld", (long long)now);
	if (r == 1 && v[0] == 'P') {
		/* renewed so a regular correspondent never expires, but at most
		 * once per RENEW_MS: a pass is then a read, not a write.  ...and
		 * after half its lifetime when that is shorter: with a lifetime
		 * under an hour a correspondent writing every few minutes was
		 * never renewed, and greylisted again when it ran out */
		int64_t renew = (int64_t)cfg->greylist_pass_lifetime / 2;

		if (renew > RENEW_MS)
			renew = RENEW_MS;
		st = GL_PASS;
		if (now - strtoll(v + 1, NULL, 10) >= renew)
			wv = nv, ttl = pass_s;
	} else if (r == 1 && v[0] == 'F') {
		first = strtoll(v + 1, NULL, 10);
		if (now - first >= (int64_t)cfg->greylist_delay) {
			st = GL_PASS;
			wv = nv, ttl = pass_s;
		} else {
			st = GL_WAIT;
			*wait_s = (unsigned)((first + cfg->greylist_delay - now + 999) / 1000);
		}
	} else if (cfg->greylist_delay == 0) {
		st = GL_PASS;
		wv = nv, ttl = pass_s;
	} else {
		snprintf(nv, sizeof(nv), "F%lld", (long long)now);
		st = GL_WAIT;
		wv = nv, ttl = retry_s;
		*fresh = 1;
		*wait_s = (cfg->greylist_delay + 999) / 1000;
	}
	if (wv == NULL && moved_s > 0)
		wv = v, ttl = moved_s;
	if (wv != NULL && store_set(g->store, key, wv, ttl) < 0)
		return GL_FAIL;
	/* moved: the old key then speaks for no other triplet colliding
	 * with it */
	if (moved_s > 0 && store_del(g->store, old) < 0)
		return GL_FAIL;
	return st;
}

static void greylist_eom(struct mw_ctx *ctx)
{
	struct greylist *g = mw_instance(ctx);
	const struct scan_request *req = ctx->ms->req;
	const char *ip = mw_client_ip(ctx), *sender = mw_mail_from(ctx);
	char net[64], key[64], old[64];
	unsigned wait = 0, w;
	size_t i, nwait = 0, nnew = 0;
	int fresh;
	enum gl_state gl;

	if (mw_direction(ctx) == MW_OUTBOUND || (req->auth_user && req->auth_user[0])) {
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "authenticated or outbound");
		return;
	}
	if (ipnet_client_net(ip, net, sizeof(net)) < 0) {
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "client address unknown");
		return;
	}
	if (client_whitelisted(g, ip, sender)) {
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "whitelisted client or sender");
		return;
	}
	for (i = 0; i < mw_rcpt_count(ctx); i++) {
		const char *rcpt = mw_rcpt(ctx, i);

		if (rcpt_whitelisted(g, rcpt))
			continue;
		if (triplet_key(net, sender, rcpt, key, sizeof(key)) < 0) {
			gl = GL_FAIL;
		} else {
			legacy_key(net, sender, rcpt, old, sizeof(old));
			gl = check_triplet(g, key, old, &w, &fresh);
		}
		switch (gl) {
		case GL_PASS:
			break;
		case GL_WAIT:
			nwait++;
			nnew += (size_t)fresh;
			if (w > wait)
				wait = w;
			break;
		case GL_FAIL:
			mw_log(ctx, LOG_WARNING, "store unavailable: %s",
			    g->cfg->store_fail_closed ? "tempfail (store_failure = closed)"
			                              : "message let through (store_failure = open)");
			mw_symbol(ctx, "GREYLIST_STORE_FAIL", 0, "greylisting store unavailable");
			if (g->cfg->store_fail_closed)
				mw_verdict(ctx, MW_TEMPFAIL, "Greylisting unavailable, please try again later");
			return;
		}
	}
	if (nwait == 0) {
		mw_symbol(ctx, "GREYLIST_PASS", 0, "known triplet(s)");
		return;
	}
	mw_symbol(ctx, "GREYLIST", 0, "%zu triplet(s) greylisted (%zu new), %u s left", nwait, nnew, wait);
	{
		char text[128];

		snprintf(text, sizeof(text), "Greylisted, please try again in %u seconds", wait ? wait : 1);
		mw_verdict(ctx, MW_TEMPFAIL, text);
	}
}

/* An envelope request (the milter asks at each RCPT, with that one
 * recipient) gets its answer here, so the MTA refuses the recipient before
 * DATA; a whole message is answered at its end, over all recipients. */
static void greylist_rcpt(struct mw_ctx *ctx, const char *rcpt)
{
	(void)rcpt;
	if (ctx->ms->req->stage == SCAN_ENVELOPE)
		greylist_eom(ctx);
}

static const struct mw_filter_ops greylist_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "greylist",
	.fini = greylist_fini,
	.on_rcpt = greylist_rcpt,
	.on_eom = greylist_eom,
};

const struct builtin_filter builtin_greylist = {
	.name = "greylist",
	.ops = &greylist_ops,
	.setup = greylist_setup,
};
