/* deadline.c - one message's time budget in the scanner (deadline.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "filters/bayes.h"
#include "filters/deadline.h"
#include "proxy/config.h"
#include "proxy/monotime.h"

#define MAX_NOTES 16

struct note {
	char filter[32];
	char why[32];
};

struct state {
	long long   at;            /* 0 = no deadline */
	const char *filter;        /* borrowed */
	struct note notes[MAX_NOTES];
	size_t      nnotes;
	struct deadline_watch *watch;   /* NULL: this thread's scans are not watched */
};

static _Thread_local struct state st;

unsigned deadline_margin_ms(unsigned budget_ms)
{
	unsigned m = budget_ms / 10;

	if (m < 200)
		m = 200;
	if (m > 5000)
		m = 5000;
	if (m > budget_ms / 2)
		m = budget_ms / 2;
	return m;
}

long long deadline_now_ms(void)
{
	return monotime_ms();
}

/* the watch's view of this thread's scan: ended (give_up 0), or its
 * filter changed */
static void watch_filter(const char *name, int ended)
{
	struct deadline_watch *w = st.watch;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	if (ended) {
		w->give_up = 0;
		w->reported = 0;
	}
	w->filter = name;
	w->filter_since = deadline_now_ms();
	pthread_mutex_unlock(&w->lock);
}

void deadline_begin(long long at_ms)
{
	struct deadline_watch *w = st.watch;

	memset(&st, 0, sizeof(st));
	st.watch = w;
	st.at = at_ms;
	watch_filter(NULL, 1);
}

void deadline_end(void)
{
	struct deadline_watch *w = st.watch;

	memset(&st, 0, sizeof(st));
	st.watch = w;
	watch_filter(NULL, 1);
}

void deadline_filter(const char *name)
{
	st.filter = name;
	watch_filter(name, 0);
}

/* --- the watch --------------------------------------------------------------- */

void deadline_watch_init(struct deadline_watch *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
}

void deadline_watch_destroy(struct deadline_watch *w)
{
	pthread_mutex_destroy(&w->lock);
}

void deadline_watch_use(struct deadline_watch *w)
{
	st.watch = w;
}

void deadline_watch_scan(const char *session, unsigned long long id, long long began,
                         long long give_up)
{
	struct deadline_watch *w = st.watch;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	snprintf(w->session, sizeof(w->session), "%s", session != NULL ? session : "");
	w->id = id;
	w->began = began;
	w->give_up = give_up;
	w->reported = 0;
	pthread_mutex_unlock(&w->lock);
}

int deadline_watch_overdue(struct deadline_watch *w, long long now, long long grace_ms,
                           struct deadline_overdue *out, int *held)
{
	int late, report;

	pthread_mutex_lock(&w->lock);
	late = w->give_up != 0 && now >= w->give_up + grace_ms;
	report = late && !w->reported;
	if (report) {
		w->reported = 1;
		out->id = w->id;
		snprintf(out->session, sizeof(out->session), "%s", w->session);
		/* the name is the pipeline's, alive while the scanner runs */
		snprintf(out->filter, sizeof(out->filter), "%s", w->filter != NULL ? w->filter : "pipeline");
		out->filter_ms = now - w->filter_since;
		out->past_ms = now - w->give_up;
	}
	pthread_mutex_unlock(&w->lock);
	if (held != NULL)
		*held = late;
	return report;
}

long long deadline_suspend(void)
{
	long long at = st.at;

	st.at = 0;
	return at;
}

void deadline_resume(long long at_ms)
{
	st.at = at_ms;
}

long long deadline_left_ms(void)
{
	long long left;

	if (st.at == 0)
		return -1;
	left = st.at - deadline_now_ms();
	return left > 0 ? left : 0;
}

unsigned deadline_cap(unsigned want_ms, int *capped)
{
	long long left = deadline_left_ms();

	if (capped != NULL)
		*capped = 0;
	if (left < 0 || left >= (long long)want_ms)
		return want_ms;
	if (capped != NULL)
		*capped = 1;
	return (unsigned)left;
}

void deadline_timed_out(const char *setting)
{
	const char *who = st.filter != NULL ? st.filter : "pipeline";
	const char *why = st.at != 0 && deadline_now_ms() >= st.at ? "scan_deadline" : setting;
	size_t i;

	for (i = 0; i < st.nnotes; i++)
		if (strcmp(st.notes[i].filter, who) == 0) {
			if (strcmp(why, "scan_deadline") == 0)
				snprintf(st.notes[i].why, sizeof(st.notes[i].why), "%s", why);
			return;
		}
	if (st.nnotes == MAX_NOTES)
		return;
	snprintf(st.notes[st.nnotes].filter, sizeof(st.notes[0].filter), "%s", who);
	snprintf(st.notes[st.nnotes].why, sizeof(st.notes[0].why), "%s", why);
	st.nnotes++;
}

size_t deadline_report(char *out, size_t outsz)
{
	size_t i, n = 0;
	int w;

	if (outsz == 0)
		return st.nnotes;
	out[0] = '\0';
	for (i = 0; i < st.nnotes; i++) {
		w = snprintf(out + n, outsz - n, "%s%s=%s", n ? " " : "", st.notes[i].filter,
		    st.notes[i].why);
		if (w < 0 || (size_t)w >= outsz - n) {
			out[n] = '\0';	/* whole entries only */
			break;
		}
		n += (size_t)w;
	}
	return st.nnotes;
}

/* --- the configuration check (-t) ------------------------------------------ */

/* The filters of a scan run one after the other on one scanner thread;
 * only DNS queries overlap (the names prefetched before the first filter
 * runs, and a filter's own batch).  That overlap shortens a dead server's
 * cost, not the worst case: a server that answers each query a little
 * before its timeout, with a TTL of 0 so that no answer is kept, makes
 * every wait count in turn.  So the worst case is the sum, over the
 * filters, of each one's longest wait as its code bounds it. */

#define BAYES_TOKEN_BATCH 4096	/* bayes.c's TOKEN_BATCH: tokens per store lookup */

struct waits {
	char     text[1024];      /* "spamd: spamd_timeout 30s, clamd: clamd_timeout 60s" */
	size_t   len;
	char     last[32];        /* the filter the text ends with */
	unsigned long long total;
	int      uncut;           /* a wait the deadline does not cut (libclamav's scan) */
	int      per_rcpt;        /* a wait repeated for each recipient, counted once */
	/* at RCPT: the waits up to the last filter whose cut refuses the
	 * recipient (refusing_total 0: none does), and the settings that make
	 * them refuse */
	unsigned long long refusing_total;
	size_t   refusing_len;
	char     refusing[128];
};

static void fmt_ms(char *out, size_t outsz, unsigned long long ms)
{
	if (ms % 1000 == 0)
		snprintf(out, outsz, "%llus", ms / 1000);
	else if (ms > 1000)
		snprintf(out, outsz, "%.1fs", (double)ms / 1000);
	else
		snprintf(out, outsz, "%llums", ms);
}

/* add_per - times x ms of setting, waited by filter, to the worst case;
 * per: NULL, or what the wait repeats for ("recipient": counted for one,
 * and said so); a second wait of the same filter is written "+ ..." */
static void add_per(struct waits *w, const char *filter, const char *setting, unsigned times,
                    unsigned ms, const char *per)
{
	char d[32], x[16] = "";
	int n, same;

	if (ms == 0 || times == 0)
		return;
	fmt_ms(d, sizeof(d), ms);
	if (times > 1)
		snprintf(x, sizeof(x), "%u x ", times);
	same = strcmp(w->last, filter) == 0;
	n = snprintf(w->text + w->len, sizeof(w->text) - w->len, "%s%s%s%s%s %s%s%s",
	    same ? " + " : w->len ? ", " : "", same ? "" : filter, same ? "" : ": ", x, setting, d,
	    per ? " per " : "", per ? per : "");
	/* a cut text still counts the wait: the last one that fits, then
	 * nothing more is written */
	if (n > 0)
		w->len += (size_t)n;
	if (w->len >= sizeof(w->text))
		w->len = sizeof(w->text) - 1;
	snprintf(w->last, sizeof(w->last), "%s", filter);
	w->total += (unsigned long long)times * ms;
	if (per != NULL)
		w->per_rcpt = 1;
}

static void add(struct waits *w, const char *filter, const char *setting, unsigned times,
                unsigned ms)
{
	add_per(w, filter, setting, times, ms, NULL);
}

/* warn - the worst case against one front end's wait.  stage: "the
 * filters' waits" or "the envelope check's waits at RCPT"; fails: how the
 * filters cut short fail; bound: what setting must stay below, or "" */
static int warn(const struct waits *w, const char *stage, const char *setting, unsigned budget,
                const char *fails, const char *bound, FILE *out, const char *who)
{
	unsigned margin = deadline_margin_ms(budget);
	char tot[32], b[32], m[32];

	if (w->total <= (unsigned long long)(budget - margin))
		return 0;
	fmt_ms(tot, sizeof(tot), w->total);
	fmt_ms(b, sizeof(b), budget);
	fmt_ms(m, sizeof(m), margin);
	fprintf(out, "%s: warning: %s add up to %s at worst%s, one after the other (%s), more "
	    "than %s %s leaves them (%s is kept back for the verdict to get there): when they all "
	    "run long, the last ones are cut short and fail as on their own timeout (%s)%s; raise "
	    "%s%s or lower those timeouts\n", who, stage, tot,
	    w->per_rcpt ? " for one recipient" : "", w->text, setting, b, m, fails,
	    w->uncut ? ", but libclamav's scan is not cut (av_max_scantime): past the deadline "
	    "its message gets the front end's tempfail" : "", setting, bound);
	return 1;
}

/* next_filter - the next name of the filters setting (a list split on
 * blanks) into name; 0 at its end */
static int next_filter(const char **v, char *name, size_t size)
{
	size_t len;

	*v += strspn(*v, " \t");
	if ((len = strcspn(*v, " \t")) == 0)
		return 0;
	snprintf(name, size, "%.*s", (int)len, *v);
	*v += len;
	return 1;
}

/* message_waits - every filter's longest wait over a whole message */
static void message_waits(const struct config *cfg, struct waits *w)
{
	const char *v = cfg->filters;
	int redis = cfg->store_backend == 1;
	char name[64];

	if (cfg->dns_client_name)
		add(w, "rdns", "dns_timeout", 1, cfg->dns_timeout);
	while (next_filter(&v, name, sizeof(name))) {
		/* each filter's longest wait, as its code bounds it */
		if (strcmp(name, "spamd") == 0)
			add(w, name, "spamd_timeout", 1, cfg->spamd_timeout);
		else if (strcmp(name, "clamd") == 0) {
			/* the exchange's deadline counts from before the connect */
			if (cfg->clamd_connect_timeout > cfg->clamd_timeout)
				add(w, name, "clamd_connect_timeout", 1, cfg->clamd_connect_timeout);
			else
				add(w, name, "clamd_timeout", 1, cfg->clamd_timeout);
		} else if (strcmp(name, "clamav") == 0) {
			add(w, name, "av_max_scantime", 1, cfg->av_max_scantime);
			w->uncut = 1;
		} else if (strcmp(name, "spf") == 0)
			add(w, name, "spf_timeout", 1, cfg->spf_timeout);
		else if (strcmp(name, "dkim") == 0)
			add(w, name, "dkim_timeout", 1, cfg->dkim_timeout);
		else if (strcmp(name, "dmarc") == 0)
			/* the From domain's record, then its organizational domain's:
			 * both prefetched, but an answer with TTL 0 is asked again */
			add(w, name, "dns_timeout", 2, cfg->dns_timeout);
		else if (strcmp(name, "dnsbl") == 0)
			/* every name out at once, each lookup waiting at most this
			 * long from when its query went out */
			add(w, name, cfg->dnsbl_timeout ? "dnsbl_timeout" : "dns_timeout", 1,
			    cfg->dnsbl_timeout ? cfg->dnsbl_timeout : cfg->dns_timeout);
		else if (strcmp(name, "rules") == 0) {
			/* the network tests' lookups, then the rules' CPU time,
			 * which the deadline cuts too (0: no budget of their own,
			 * only the deadline) */
			if (cfg->rules_net_tests)
				add(w, name, "rules_dns_timeout", 1, cfg->rules_dns_timeout);
			add(w, name, "rules_time_budget", 1, cfg->rules_time_budget);
		} else if (redis && strcmp(name, "greylist") == 0) {
			/* each recipient's triplet: a GET, the GETs of its two keys
			 * of before if unknown or a first attempt (the sender as
			 * written, FNV-1a), a SET if new, renewed or moved, a DEL of
			 * the old key if moved; the message: the auto-whitelist's
			 * GET, and when it passed by retrying the spacing's and the
			 * count's INCR and the whitelisting's SET (greylist.c) */
			unsigned awl = cfg->greylist_auto_whitelist_clients > 0;

			add_per(w, name, "store_timeout", 5, cfg->store_timeout, "recipient");
			add(w, name, "store_timeout", awl ? 4 : 0, cfg->store_timeout);
		}
		else if (redis && strcmp(name, "ratelimit") == 0) {
			/* each limit that applies: its take (one script reading
			 * both windows' counters and incrementing this one's),
			 * and its give-back when the message ends up refused
			 * (ratelimit.c) */
			unsigned limits = (cfg->ratelimit_ip[0] != '\0') + (cfg->ratelimit_sender[0] != '\0')
			    + (cfg->ratelimit_user[0] != '\0');

			add(w, name, "store_timeout", 2 * limits, cfg->store_timeout);
			if (cfg->ratelimit_rcpt_domain[0] != '\0')
				add_per(w, name, "store_timeout", 2, cfg->store_timeout,
				    "recipient domain");
		} else if (redis && strcmp(name, "bayes") == 0) {
			/* the two message counts and the tokens (at most
			 * BAYES_MAX_TOKENS, in batches), the character model's
			 * version and blob; autolearn: the message's seen mark
			 * (and on a miss its key of before, bayes.c), the look
			 * whether a message learned so already keeps its
			 * example (bayes_chars and bayes_autolearn_examples),
			 * and the learning itself (tokens, count, mark, and
			 * example with the examples' count: one store_learn);
			 * with bayes_list_boilerplate, a list's message: its
			 * boilerplate (bayes_list_strip), and when autolearned
			 * its window read and it and the boilerplate written
			 * (bayes_list_note; without the setting nothing of the
			 * lists is read or written since session 20's review) */
			unsigned batches = (BAYES_MAX_TOKENS + BAYES_TOKEN_BATCH - 1) / BAYES_TOKEN_BATCH;
			unsigned calls = 2 + batches + (cfg->bayes_chars ? 2 : 0)
			    + (cfg->bayes_list_boilerplate ? 1 : 0)
			    + (cfg->bayes_autolearn ? 2 + 1 + (cfg->bayes_list_boilerplate ? 3 : 0)
			        + (cfg->bayes_chars && cfg->bayes_autolearn_examples ? 1 : 0) : 0);

			add(w, name, "store_timeout", calls, cfg->store_timeout);
		}
	}
}

/* refuses - the filter just added fails, when cut short, with a verdict
 * that refuses the recipient (setting: what makes it so): the waits up to
 * here are the ones that must fit */
static void refuses(struct waits *w, const char *setting)
{
	size_t n = strlen(w->refusing);

	w->refusing_total = w->total;
	w->refusing_len = w->len;
	if (strstr(w->refusing, setting) == NULL)
		snprintf(w->refusing + n, sizeof(w->refusing) - n, "%s%s", n ? ", " : "", setting);
}

/* envelope_waits - the same for the envelope check at RCPT (the milter's
 * milter_early): only the filters with an envelope hook wait there, over
 * the one recipient the check is for.
 *
 * A cut there matters only when it refuses the recipient.  One that lets
 * it through (SPF's temperror scored, greylisting's store_failure = open)
 * costs nothing but the early answer: the end of the message runs the
 * same filters again under milter_timeout, with their whole timeouts,
 * and the audit record says what was cut at RCPT (rcpt_checks_cut).  So
 * only the waits up to the last filter that refuses when cut are held
 * against milter_early_timeout: with the defaults (spf_timeout 15s and
 * the client's reverse DNS, against 10s) every start warned of a cut
 * that harms nobody, and a budget at RCPT that fits them would be past
 * Sendmail's 10s wait for a milter's reply. */
static void envelope_waits(const struct config *cfg, struct waits *w)
{
	const char *v = cfg->filters;
	char name[64];

	if (cfg->dns_client_name)
		add(w, "rdns", "dns_timeout", 1, cfg->dns_timeout);
	while (next_filter(&v, name, sizeof(name))) {
		if (strcmp(name, "spf") == 0) {
			add(w, name, "spf_timeout", 1, cfg->spf_timeout);
			if (cfg->spf_temperror_action == MW_TEMPFAIL)
				refuses(w, "spf_temperror_action = tempfail");
			else if (cfg->spf_temperror_action == MW_REJECT)
				refuses(w, "spf_temperror_action = reject");
		} else if (cfg->store_backend == 1 && strcmp(name, "greylist") == 0) {
			/* one recipient: as counted above */
			add(w, name, "store_timeout", cfg->greylist_auto_whitelist_clients > 0 ? 9 : 5,
			    cfg->store_timeout);
			if (cfg->store_fail_closed)
				refuses(w, "store_failure = closed");
		} else if (cfg->store_backend == 1 && strcmp(name, "ratelimit") == 0) {
			/* a look per limit that applies, the recipient's domain
			 * one of them (ratelimit.c: nothing taken at RCPT) */
			unsigned limits = (cfg->ratelimit_ip[0] != '\0') + (cfg->ratelimit_sender[0] != '\0')
			    + (cfg->ratelimit_user[0] != '\0') + (cfg->ratelimit_rcpt_domain[0] != '\0');

			if (limits > 0) {
				add(w, name, "store_timeout", limits, cfg->store_timeout);
				if (cfg->store_fail_closed)
					refuses(w, "store_failure = closed");
			}
		}
	}
	w->total = w->refusing_total;
	w->len = w->refusing_len;
	w->text[w->len] = '\0';
}

int deadline_check_config(const struct config *cfg, FILE *out, const char *who)
{
	static const char msg_fails[] = "SPAMD_FAIL, av_fail_action, DNS temperror, store_failure, "
	    "RULES_TIMEOUT";
	struct waits w;
	int n = 0;

	memset(&w, 0, sizeof(w));
	message_waits(cfg, &w);
	if (cfg->nlisteners > 0)
		n += warn(&w, "the filters' waits", "scan_timeout", cfg->scan_timeout, msg_fails, "",
		    out, who);
	if (cfg->milter_listen[0] != '\0')
		n += warn(&w, "the filters' waits", "milter_timeout", cfg->milter_timeout, msg_fails,
		    " (below the MTA's wait for the end of message, Postfix's milter_content_timeout, "
		    "300s)", out, who);
	if (cfg->milter_listen[0] != '\0' && cfg->milter_early) {
		char fails[192];

		memset(&w, 0, sizeof(w));
		envelope_waits(cfg, &w);
		snprintf(fails, sizeof(fails), "DNS temperror, store_failure; with %s that refuses "
		    "the recipient", w.refusing);
		n += warn(&w, "the envelope check's waits at RCPT", "milter_early_timeout",
		    cfg->milter_early_timeout, fails, " (below the MTA's wait for a RCPT reply, "
		    "Postfix's milter_command_timeout, 30s)", out, who);
	}
	return n;
}
