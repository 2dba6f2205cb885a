/* greylist.c - the built-in "greylist" filter: refuse mail from a new
 * (client network, sender, recipient) triplet with 451 4.7.1 and accept it
 * when the sender retries after greylist_delay, as real MTAs do and most
 * spam engines do not.
 *
 * The triplet uses the client's /24 (IPv4) or /64 (IPv6), since a pool of
 * outgoing servers rarely retries from the same address, and the sender
 * as sender_norm.h makes it (BATV and SRS tags, +ext and VERP numbers
 * gone), since a list or a BATV-signing site writes a new return path
 * for each message.  State, in the store so several mailwarden machines
 * behind one MX share it:
 *   gl:<hash>  "F<ms>"  first attempt at <ms>, kept greylist_retry_window
 *              (a stamp in the future, from a clock stepped back since,
 *              is taken as now and written so)
 *              "P<ms>"  passed (last renewed at <ms>); let through for
 *                       greylist_pass_lifetime, renewed by a message at
 *                       most once an hour (a pass is a read, not a write)
 *   glc:<hash> the client network's count of messages that passed by
 *              retrying (INCR), kept greylist_pass_lifetime from the first
 *   glt:<hash> the network counted lately: a message passing while it
 *              lives is not counted (INCR, kept awl_spacing_ms)
 *   gla:<hash> "P<ms>"  the network auto-whitelisted once that count
 *              reached greylist_auto_whitelist_clients, renewed as a pass
 * Every <ms> is the STORE's clock (store_get_now: Redis' TIME, LMDB this
 * machine's), read with the triplet, never the machine's own: with
 * machines sharing a Redis each stamping by its own clock, a first
 * attempt stamped by one whose clock ran behind looked old to the
 * others, and its retry passed at once (skew >= greylist_delay) or
 * after the delay less the skew (session 21).
 * <hash> is 32 hex digits, store_key_hash of the triplet (or network); an
 * entry under the key of the sender as written (before session 19) or
 * under the 16-digit FNV-1a key of before session 12 is moved on first
 * sight (legacy_get), and a pass there is preferred to a first attempt
 * under the new key.  A message passes only when every recipient's
 * triplet passes.  Skipped for authenticated and outbound mail, and for
 * greylist_whitelist (and greylist_whitelist_file) entries: client
 * IPs/networks (192.0.2.0/24), client host names, forward-confirmed
 * (.outbound.protection.outlook.com for any name below it,
 * mx.example.org exactly), sender domains (@example.org, only with an SPF
 * pass for that MAIL FROM from the spf filter run before: a MAIL FROM
 * alone is anyone's to write) and recipients (to:postmaster@example.net
 * or to:@example.net: such a recipient's triplet is not looked at).
 *
 * It answers where the front end asks: the proxy at the end of data (one
 * answer for the message, so a whitelisted recipient's copy waits with
 * the others'), the milter with milter_early at each RCPT (the envelope
 * request carries that one recipient, refused or accepted alone) and at
 * the end of the message.  A store failure is logged and, by
 * store_failure, lets the message through (open) or tempfails it (closed).
 */
#include <errno.h>
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
#include "proxy/smtp_parse.h"

#define MAX_WL 10000                 /* entries of a kind, setting and file together */
#define WL_LINE_MAX 1024             /* a line of greylist_whitelist_file, newline included */
#define WL_LINES_MAX 200000          /* lines of greylist_whitelist_file, comments included */
#define HOST_MAX 253
#define RENEW_MS (3600 * 1000LL)     /* a passed triplet's lifetime is renewed at most hourly... */
#define AWL_SPACING_MS (3600 * 1000LL) /* a client network counted at most hourly (Postgrey) */
#define HELD_SHOWN 5                 /* recipients named in the GREYLIST symbol */

/* a growable list of lower-case strings, at most MAX_WL */
struct wl_strs {
	char  **v;                     /* owned, each owned */
	size_t  n, cap;
};

struct greylist {
	const struct config *cfg;
	struct store *store;
	struct ipnet *nets;            /* owned */
	size_t nnets, capnets;
	struct wl_strs senders;        /* domains */
	struct wl_strs rcpts;          /* "addr" or "@domain" */
	struct wl_strs hosts;          /* ".suffix" or "host.name" */
	int spf_before;                /* the spf filter runs before us (filters setting) */
};

static char *lower_dup(const char *s)
{
	char *d = xstrdup(s);

	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

static void strs_free(struct wl_strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* strs_add - 0, or -1 when the list is full (s not taken) */
static int strs_add(struct wl_strs *l, const char *s)
{
	if (l->n == MAX_WL)
		return -1;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = lower_dup(s);
	return 0;
}

static void greylist_fini(void *instance)
{
	struct greylist *g = instance;

	if (g == NULL)
		return;
	strs_free(&g->senders);
	strs_free(&g->rcpts);
	strs_free(&g->hosts);
	free(g->nets);
	store_close(g->store);
	free(g);
}

/* host_entry_ok - a host name as DNS writes it (letters, digits, '-',
 * labels of 1..63 joined by dots, at least two), optionally with a
 * leading dot (a suffix), whose last label is not all digits (so that a
 * mistyped address, 10.0.0.300, is not taken for a name) */
static int host_entry_ok(const char *w)
{
	const char *p = w[0] == '.' ? w + 1 : w, *last = p;
	size_t lab = 0, labels = 1;
	int digits_only = 1;

	if (*p == '\0' || strlen(p) > HOST_MAX)
		return 0;
	for (; *p; p++) {
		char c = *p;

		if (c == '.') {
			if (lab == 0)
				return 0;
			lab = 0;
			labels++;
			last = p + 1;
			digits_only = 1;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
			return 0;
		if (++lab > 63)
			return 0;
		if (!(c >= '0' && c <= '9'))
			digits_only = 0;
	}
	return lab > 0 && labels >= 2 && !digits_only && *last != '\0';
}

/* parse_entry - one whitelist word into g; 0, or -1 with the reason in err */
static int parse_entry(struct greylist *g, const char *w, char *err, size_t errlen)
{
	struct ipnet net;
	int full = 0;

	if (strncasecmp(w, "to:", 3) == 0 && w[3] != '\0')
		full = strs_add(&g->rcpts, w + 3);
	else if (w[0] == '@' && w[1] != '\0')
		full = strs_add(&g->senders, w + 1);
	else if (ipnet_parse(w, &net) == 0) {
		if (g->nnets == MAX_WL)
			full = -1;
		else {
			if (g->nnets == g->capnets) {
				g->capnets = g->capnets ? g->capnets * 2 : 16;
				g->nets = xrealloc(g->nets, g->capnets * sizeof(*g->nets));
			}
			g->nets[g->nnets++] = net;
		}
	} else if (host_entry_ok(w))
		full = strs_add(&g->hosts, w);
	else {
		snprintf(err, errlen, "\"%.80s\" is not an IP/network, host name (.suffix), @domain "
		    "or to:recipient", w);
		return -1;
	}
	if (full < 0) {
		snprintf(err, errlen, "more than %d entries of a kind", MAX_WL);
		return -1;
	}
	return 0;
}

/* parse_words - the words of v (separated by blanks and commas) */
static int parse_words(struct greylist *g, char *v, char *err, size_t errlen)
{
	char *save = NULL, *w;

	for (w = strtok_r(v, " \t\r\n,", &save); w != NULL; w = strtok_r(NULL, " \t\r\n,", &save))
		if (parse_entry(g, w, err, errlen) < 0)
			return -1;
	return 0;
}

/* parse_whitelist - the greylist_whitelist setting */
static int parse_whitelist(struct greylist *g, const char *v, char *err, size_t errlen)
{
	char buf[sizeof(g->cfg->greylist_whitelist)], why[160];

	snprintf(buf, sizeof(buf), "%s", v);
	if (parse_words(g, buf, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "greylist_whitelist: %s", why);
		return -1;
	}
	return 0;
}

/* comment_start - the '#' that starts a comment in line (at its start or
 * after a blank or comma: where a word starts), or NULL.  A '#' inside a
 * word is the word's: to:a#b@example.net is a valid address. */
static char *comment_start(char *line)
{
	for (char *p = line; (p = strchr(p, '#')) != NULL; p++)
		if (p == line || strchr(" \t\r\n,", p[-1]) != NULL)
			return p;
	return NULL;
}

/* load_whitelist_file - greylist_whitelist_file: the setting's words, any
 * number a line, a '#' starting a word a comment to the end of the line
 * (comment_start); a line of
 * WL_LINE_MAX or more, more than WL_LINES_MAX lines or a bad word refuse
 * the file (with PATH:LINE), as the setting's would refuse the
 * configuration: a list half read would greylist whom it names */
static int load_whitelist_file(struct greylist *g, const char *path, char *err, size_t errlen)
{
	char line[WL_LINE_MAX + 1], why[160];
	unsigned long n = 0;
	FILE *f;
	int rc = 0;

	if (path[0] == '\0')
		return 0;
	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "greylist_whitelist_file %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strlen(line);
		char *hash;

		if (++n > WL_LINES_MAX) {
			snprintf(err, errlen, "greylist_whitelist_file %s: more than %d lines", path, WL_LINES_MAX);
			rc = -1;
			break;
		}
		if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
			snprintf(err, errlen, "greylist_whitelist_file %s:%lu: line longer than %d characters",
			    path, n, WL_LINE_MAX - 1);
			rc = -1;
			break;
		}
		if ((hash = comment_start(line)) != NULL)
			*hash = '\0';
		if (parse_words(g, line, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "greylist_whitelist_file %s:%lu: %s", path, n, why);
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(err, errlen, "greylist_whitelist_file %s: read error", path);
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* spf_runs_before - "spf" is named before "greylist" in the filters
 * setting: only then is its result there when we look (filters run in
 * that order, each through all its hooks) */
static int spf_runs_before(const char *filters)
{
	char buf[sizeof(((struct config *)0)->filters)], *save = NULL, *w;

	snprintf(buf, sizeof(buf), "%s", filters);
	for (w = strtok_r(buf, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save)) {
		if (strcmp(w, "spf") == 0)
			return 1;
		if (strcmp(w, "greylist") == 0)
			return 0;
	}
	return 0;
}

static int greylist_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct greylist *g = xcalloc(1, sizeof(*g));

	g->cfg = env->cfg;
	if (parse_whitelist(g, env->cfg->greylist_whitelist, err, errlen) < 0
	    || load_whitelist_file(g, env->cfg->greylist_whitelist_file, err, errlen) < 0
	    || (g->store = store_open(env->cfg, err, errlen)) == NULL) {
		greylist_fini(g);
		return -1;
	}
	g->spf_before = spf_runs_before(env->cfg->filters);
	if (g->senders.n > 0 && !g->spf_before)
		slog(NULL, LOG_WARNING, "greylist: %zu @domain whitelist entr%s never match%s: they need "
		    "an SPF pass, and the spf filter does not run before greylist (filters)",
		    g->senders.n, g->senders.n == 1 ? "y" : "ies", g->senders.n == 1 ? "es" : "");
	*instance = g;
	return 0;
}

/* domain_of - an envelope address's domain (smtp_path_domain), "" if none */
static const char *domain_of(const char *addr)
{
	const char *d = smtp_path_domain(addr);

	return d != NULL ? d : "";
}

static int rcpt_whitelisted(const struct greylist *g, const char *rcpt)
{
	for (size_t i = 0; i < g->rcpts.n; i++) {
		const char *w = g->rcpts.v[i];

		if (w[0] == '@' ? strcasecmp(domain_of(rcpt), w + 1) == 0 : strcasecmp(rcpt, w) == 0)
			return 1;
	}
	return 0;
}

/* spf_pass - the spf filter said pass for this message's MAIL FROM */
static int spf_pass(const struct mw_ctx *ctx)
{
	const struct auth_entry *e;
	char v[8];

	for (size_t n = 0; (e = msgscan_auth(ctx->ms, "spf", n)) != NULL; n++)
		if (strcmp(e->filter, "spf") == 0 && strcmp(e->result, "pass") == 0
		    && auth_props_get(e, "smtp.mailfrom", v, sizeof(v)) == 1)
			return 1;
	return 0;
}

/* host_whitelisted - the client's forward-confirmed name (never a PTR
 * alone: anyone writes any PTR for their own addresses) is an entry, or
 * lies below a ".suffix" entry */
static int host_whitelisted(const struct greylist *g, const char *name)
{
	size_t nl = strlen(name);

	if (nl > 0 && name[nl - 1] == '.')
		nl--;
	for (size_t i = 0; nl > 0 && i < g->hosts.n; i++) {
		const char *w = g->hosts.v[i];
		size_t wl = strlen(w);

		if (w[0] == '.' ? nl > wl && strncasecmp(name + nl - wl, w, wl) == 0
		                : nl == wl && strncasecmp(name, w, wl) == 0)
			return 1;
	}
	return 0;
}

/* client_whitelisted - the entry kind that exempts this message, or NULL */
static const char *client_whitelisted(const struct greylist *g, const struct mw_ctx *ctx,
                                      const char *ip, const char *sender)
{
	struct ipnet a;

	if (ipnet_parse(ip, &a) == 0)
		for (size_t i = 0; i < g->nnets; i++)
			if (ipnet_contains(&g->nets[i], &a))
				return "whitelisted client network";
	if (g->hosts.n > 0 && host_whitelisted(g, mw_client_name(ctx)))
		return "whitelisted client host name";
	if (g->senders.n > 0 && g->spf_before) {
		const char *d = domain_of(sender);

		for (size_t i = 0; i < g->senders.n; i++)
			if (strcasecmp(d, g->senders.v[i]) == 0)
				return spf_pass(ctx) ? "whitelisted sender domain, SPF pass" : NULL;
	}
	return NULL;
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

/* legacy_get - the triplet's entry under one of its keys of before
 * (olds[0..nold), each read once), to be moved to its key with what is
 * left of its lifetime (a pass lives greylist_pass_lifetime from its last
 * renewal, a first attempt greylist_retry_window from itself), so that an
 * upgrade does not greylist every known correspondent once more.  A pass
 * is preferred to a first attempt (the first in order of each kind); with
 * pass_only, only a pass is taken (a first attempt is left where it is).
 * 1 with the value in v, the key it was under in *which and the seconds
 * it has left in *left_s, 0 none (or spent), -1 store failure. */
static int legacy_get(struct greylist *g, char olds[][64], size_t nold, int pass_only, char *v,
                      size_t vsz, int64_t now, size_t *which, unsigned *left_s)
{
	const struct config *cfg = g->cfg;
	int64_t left, stamp;
	char cv[64];
	int r, found = 0;

	for (size_t i = 0; i < nold; i++) {
		if ((r = store_get(g->store, olds[i], cv, sizeof(cv))) < 0)
			return r;
		if (r == 0 || (cv[0] != 'P' && (cv[0] != 'F' || pass_only || found)))
			continue;
		stamp = strtoll(cv + 1, NULL, 10);
		if (stamp > now)
			stamp = now;       /* a clock ahead: its lifetime counts from now */
		left = stamp - now
		    + (int64_t)(cv[0] == 'P' ? cfg->greylist_pass_lifetime : cfg->greylist_retry_window);
		if (left <= 0)
			continue;
		snprintf(v, vsz, "%s", cv);
		*which = i;
		*left_s = (unsigned)((left + 999) / 1000);
		found = 1;
		if (cv[0] == 'P')
			break;
	}
	return found;
}

/* check_triplet - GL_PASS, GL_WAIT (*wait_s = seconds left), GL_FAIL
 * (store); *fresh 1 for a triplet seen the first time, *retried 1 for
 * one that passed now by its retry (the auto-whitelist counts a message
 * of those).  At most five store calls: the key, the keys of before when
 * the key is unknown or holds a first attempt (the sender as written,
 * when sender_norm changed it, and the FNV-1a key; one or two more reads
 * for a new triplet, which is written anyway, and for a retry; each read
 * once, legacy_get), one write, and the old key's removal when its entry
 * moved.
 *
 * Why a first attempt under the key does not end the look: since
 * sender_norm, senders of before share a key (user1@, user2@ are user#@).
 * user2's recent first attempt, moved there, would hide user1's pass of
 * before under user1's own old key, and greylist a known correspondent
 * again after the upgrade; the pass wins and moves (the shared triplet is
 * then passed for user2 too, as it would be had user1 written first). */
static enum gl_state check_triplet(struct greylist *g, const char *key, char olds[][64],
                                   size_t nold, unsigned *wait_s, int *fresh, int *retried,
                                   int64_t *now_out)
{
	const struct config *cfg = g->cfg;
	unsigned retry_s = (cfg->greylist_retry_window + 999) / 1000;
	unsigned pass_s = (cfg->greylist_pass_lifetime + 999) / 1000;
	char v[64], nv[32];
	const char *wv = NULL;         /* what to write under key, if anything */
	unsigned ttl = 0, moved_s = 0; /* moved_s: v came from an old key, with that long left */
	size_t which = 0;
	int64_t now, first;
	enum gl_state st;
	int r;

	*fresh = *retried = 0;
	if ((r = store_get_now(g->store, key, v, sizeof(v), &now)) < 0)
		return GL_FAIL;
	*now_out = now;
	if (r == 0 && (r = legacy_get(g, olds, nold, 0, v, sizeof(v), now, &which, &moved_s)) < 0)
		return GL_FAIL;
	/* a first attempt under key (legacy_get preferred a pass already) */
	if (r == 1 && moved_s == 0 && v[0] == 'F' && nold > 0) {
		char pv[64];
		int p = legacy_get(g, olds, nold, 1, pv, sizeof(pv), now, &which, &moved_s);

		if (p < 0)
			return GL_FAIL;
		if (p == 1)
			memcpy(v, pv, sizeof(v));
	}
	snprintf(nv, sizeof(nv), "P%lld", (long long)now);
	first = r == 1 && v[0] == 'F' ? strtoll(v + 1, NULL, 10) : 0;
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
	} else if (r == 1 && v[0] == 'F' && first > now) {
		/* written before the store's clock was stepped back (or by a
		 * version of before that stamped with each machine's own
		 * clock): without a bound the retry waited out the step too.
		 * Taken as a first attempt now, and written so, so that the
		 * retry after greylist_delay passes */
		snprintf(nv, sizeof(nv), "F%lld", (long long)now);
		st = GL_WAIT;
		wv = nv, ttl = retry_s;
		*wait_s = (cfg->greylist_delay + 999) / 1000;
	} else if (r == 1 && v[0] == 'F') {
		if (now - first >= (int64_t)cfg->greylist_delay) {
			st = GL_PASS;
			wv = nv, ttl = pass_s;
			*retried = 1;
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
	if (moved_s > 0 && store_del(g->store, olds[which]) < 0)
		return GL_FAIL;
	return st;
}

/* awl_key - "<prefix><32 hex>" of the client network */
static int awl_key(const char *prefix, const char *net, char *out, size_t outsz)
{
	const char *parts[1] = { net };

	return store_key_hash(prefix, parts, 1, out, outsz);
}

/* awl_check - 1 the client network is auto-whitelisted (renewed as a
 * pass is, at most hourly), 0 not, -1 store failure */
static int awl_check(struct greylist *g, const char *net)
{
	const struct config *cfg = g->cfg;
	int64_t now, renew = (int64_t)cfg->greylist_pass_lifetime / 2;
	char key[64], v[64], nv[32];
	int r;

	if (cfg->greylist_auto_whitelist_clients == 0)
		return 0;
	if (awl_key("gla:", net, key, sizeof(key)) < 0
	    || (r = store_get_now(g->store, key, v, sizeof(v), &now)) < 0)
		return -1;
	if (r == 0 || v[0] != 'P')
		return 0;
	if (renew > RENEW_MS)
		renew = RENEW_MS;
	if (now - strtoll(v + 1, NULL, 10) >= renew) {
		snprintf(nv, sizeof(nv), "P%lld", (long long)now);
		if (store_set(g->store, key, nv, (cfg->greylist_pass_lifetime + 999) / 1000) < 0)
			return -1;
	}
	return 1;
}

/* awl_spacing_ms - how long after a counted message another one of the
 * network is not counted: an hour, as Postgrey's "record only one
 * attempt per hour", or greylist_pass_lifetime shared out among
 * greylist_auto_whitelist_clients counts when that is shorter (the count
 * lives greylist_pass_lifetime: with a lifetime of a few hours it could
 * otherwise never reach the threshold) */
static int64_t awl_spacing_ms(const struct config *cfg)
{
	int64_t share = (int64_t)cfg->greylist_pass_lifetime / cfg->greylist_auto_whitelist_clients;

	return share < AWL_SPACING_MS ? share : AWL_SPACING_MS;
}

/* awl_count - a message of the network passed greylisting by retrying
 * (each of its triplets passes; one passed now by its retry): the
 * network's count goes one up, unless it went up within awl_spacing_ms,
 * and at greylist_auto_whitelist_clients the network is whitelisted.
 * One count a message, not a triplet: one message to five recipients
 * retried once whitelisted its sender's /24; and none for a message still
 * greylisted, which was never delivered.  Counted with INCR (the spacing
 * too: the first INCR of glt: in its lifetime is the one that counts) so
 * that machines sharing Redis add up and count a moment once between
 * them.  now: the store's clock, as the triplets read it.  1 whitelisted
 * now, 0 not (yet), -1 store failure */
static int awl_count(struct greylist *g, const char *net, int64_t now)
{
	const struct config *cfg = g->cfg;
	unsigned life_s = (cfg->greylist_pass_lifetime + 999) / 1000;
	char key[64], nv[32];
	int64_t n;

	if (cfg->greylist_auto_whitelist_clients == 0)
		return 0;
	if (awl_key("glt:", net, key, sizeof(key)) < 0
	    || store_incr(g->store, key, 1, (unsigned)((awl_spacing_ms(cfg) + 999) / 1000), &n) < 0)
		return -1;
	if (n != 1)
		return 0;               /* counted lately */
	if (awl_key("glc:", net, key, sizeof(key)) < 0 || store_incr(g->store, key, 1, life_s, &n) < 0)
		return -1;
	if (n < (int64_t)cfg->greylist_auto_whitelist_clients)
		return 0;
	snprintf(nv, sizeof(nv), "P%lld", (long long)now);
	if (awl_key("gla:", net, key, sizeof(key)) < 0 || store_set(g->store, key, nv, life_s) < 0)
		return -1;
	return 1;
}

static void store_failed(struct mw_ctx *ctx, const struct greylist *g)
{
	mw_log(ctx, LOG_WARNING, "store unavailable: %s",
	    g->cfg->store_fail_closed ? "tempfail (store_failure = closed)"
	                              : "message let through (store_failure = open)");
	mw_symbol(ctx, "GREYLIST_STORE_FAIL", 0, "greylisting store unavailable");
	if (g->cfg->store_fail_closed)
		mw_verdict(ctx, MW_TEMPFAIL, "Greylisting unavailable, please try again later");
}

static void greylist_eom(struct mw_ctx *ctx)
{
	struct greylist *g = mw_instance(ctx);
	const struct scan_request *req = ctx->ms->req;
	const char *ip = mw_client_ip(ctx), *sender = mw_mail_from(ctx), *why;
	char net[64], key[64], olds[2][64], nsender[1024];
	const char *tsender;
	unsigned wait = 0, w;
	size_t i, nold, nwait = 0, nnew = 0, nretried = 0, nshown = 0;
	int fresh, retried, awl_now = 0;
	int64_t now = 0;               /* the store's clock, as the last triplet read it */
	enum gl_state gl;
	struct sbuf held;

	if (mw_direction(ctx) == MW_OUTBOUND || (req->auth_user && req->auth_user[0])) {
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "authenticated or outbound");
		return;
	}
	if (ipnet_client_net(ip, net, sizeof(net)) < 0) {
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "client address unknown");
		return;
	}
	if ((why = client_whitelisted(g, ctx, ip, sender)) != NULL) {
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "%s", why);
		return;
	}
	switch (awl_check(g, net)) {
	case 1:
		mw_symbol(ctx, "GREYLIST_SKIP", 0, "client network auto-whitelisted (passed "
		    "greylisting %u times)", g->cfg->greylist_auto_whitelist_clients);
		return;
	case -1:
		store_failed(ctx, g);
		return;
	}
	/* the triplet's sender: the stable part of a tagged return path; one
	 * too long to normalise (longer than any SMTP path) as it is */
	tsender = sender_norm(sender, nsender, sizeof(nsender)) >= 0 ? nsender : sender;
	sbuf_init(&held, 400);        /* a few addresses for the symbol, within MW_MAX_DESC */
	for (i = 0; i < mw_rcpt_count(ctx); i++) {
		const char *rcpt = mw_rcpt(ctx, i);

		if (rcpt_whitelisted(g, rcpt))
			continue;
		nold = 0;
		if (triplet_key(net, tsender, rcpt, key, sizeof(key)) < 0
		    || triplet_key(net, sender, rcpt, olds[0], sizeof(olds[0])) < 0) {
			gl = GL_FAIL;
		} else {
			/* the sender as written is a key of before only where
			 * sender_norm changed more than its case (store_key_hash
			 * lower-cases): else it is key itself, read twice and,
			 * were it "moved", deleted */
			nold = strcmp(olds[0], key) != 0;
			legacy_key(net, sender, rcpt, olds[nold++], sizeof(olds[0]));
			gl = check_triplet(g, key, olds, nold, &w, &fresh, &retried, &now);
		}
		nretried += gl == GL_PASS && retried;
		switch (gl) {
		case GL_PASS:
			break;
		case GL_WAIT:
			if (nshown < HELD_SHOWN && sbuf_addf(&held, "%s%s", nshown ? ", " : "", rcpt) == 0)
				nshown++;
			nwait++;
			nnew += (size_t)fresh;
			if (w > wait)
				wait = w;
			break;
		case GL_FAIL:
			sbuf_free(&held);
			store_failed(ctx, g);
			return;
		}
	}
	if (nwait == 0) {
		/* the message passes: one count for the network if it passed by
		 * a retry now (awl_count) */
		if (nretried > 0 && (awl_now = awl_count(g, net, now)) < 0) {
			sbuf_free(&held);
			store_failed(ctx, g);
			return;
		}
		if (awl_now)
			mw_log(ctx, LOG_INFO, "client network %s auto-whitelisted: its messages passed "
			    "greylisting by retrying %u times", net, g->cfg->greylist_auto_whitelist_clients);
		mw_symbol(ctx, "GREYLIST_PASS", 0, "known triplet(s)%s", nretried ? ", retried after the delay" : "");
		sbuf_free(&held);
		return;
	}
	if (nwait > nshown)
		sbuf_addf(&held, "%s%zu more", nshown ? " and " : "", nwait - nshown);
	mw_symbol(ctx, "GREYLIST", 0, "%zu triplet(s) greylisted (%zu new), %u s left; held by %s",
	    nwait, nnew, wait, held.data);
	sbuf_free(&held);
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
