/* deadline.c - one message's time budget in the scanner (deadline.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "filters/deadline.h"
#include "proxy/config.h"

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
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void deadline_begin(long long at_ms)
{
	memset(&st, 0, sizeof(st));
	st.at = at_ms;
}

void deadline_end(void)
{
	memset(&st, 0, sizeof(st));
}

void deadline_filter(const char *name)
{
	st.filter = name;
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

struct waits {
	char     text[1024];      /* "spamd: spamd_timeout 30s, clamd: clamd_timeout 60s" */
	size_t   len;
	unsigned long long total;
	int      uncut;           /* a wait the deadline does not cut (libclamav's scan) */
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

/* add - times x ms of setting, waited by filter, to the worst case */
static void add(struct waits *w, const char *filter, const char *setting, unsigned times,
                unsigned ms)
{
	char d[32];
	int n;

	if (ms == 0 || times == 0 || w->len >= sizeof(w->text))
		return;
	fmt_ms(d, sizeof(d), ms);
	if (times > 1)
		n = snprintf(w->text + w->len, sizeof(w->text) - w->len, "%s%s: %u x %s %s",
		    w->len ? ", " : "", filter, times, setting, d);
	else
		n = snprintf(w->text + w->len, sizeof(w->text) - w->len, "%s%s: %s %s",
		    w->len ? ", " : "", filter, setting, d);
	if (n > 0)
		w->len += (size_t)n;
	w->total += (unsigned long long)times * ms;
}

/* warn - the worst case against one front end's wait */
static int warn(const struct waits *w, const char *setting, unsigned budget, FILE *out,
                const char *who)
{
	unsigned margin = deadline_margin_ms(budget);
	char tot[32], b[32], m[32];

	if (w->total <= (unsigned long long)(budget - margin))
		return 0;
	fmt_ms(tot, sizeof(tot), w->total);
	fmt_ms(b, sizeof(b), budget);
	fmt_ms(m, sizeof(m), margin);
	fprintf(out, "%s: warning: the filters' waits add up to %s at worst, one after the "
	    "other (%s), more than "
	    "%s %s leaves them (%s is kept back for the verdict to get there): when they all "
	    "run long, the last ones are cut short and fail as on their own timeout "
	    "(SPAMD_FAIL, av_fail_action, DNS temperror, store_failure)%s; raise %s or lower "
	    "those timeouts\n", who, tot, w->text, setting, b, m,
	    w->uncut ? ", but libclamav's scan is not cut (av_max_scantime): past the deadline "
	    "its message gets the front end's tempfail" : "", setting);
	return 1;
}

int deadline_check_config(const struct config *cfg, FILE *out, const char *who)
{
	struct waits w;
	const char *v = cfg->filters;
	int redis = cfg->store_backend == 1, n = 0;

	memset(&w, 0, sizeof(w));
	if (cfg->dns_client_name)
		add(&w, "rdns", "dns_timeout", 1, cfg->dns_timeout);
	for (;;) {
		char name[64];
		size_t len;

		v += strspn(v, " \t");
		if ((len = strcspn(v, " \t")) == 0)
			break;
		snprintf(name, sizeof(name), "%.*s", (int)len, v);
		v += len;
		/* each filter's longest wait, as its code bounds it */
		if (strcmp(name, "spamd") == 0)
			add(&w, name, "spamd_timeout", 1, cfg->spamd_timeout);
		else if (strcmp(name, "clamd") == 0) {
			/* the exchange's deadline counts from before the connect */
			if (cfg->clamd_connect_timeout > cfg->clamd_timeout)
				add(&w, name, "clamd_connect_timeout", 1, cfg->clamd_connect_timeout);
			else
				add(&w, name, "clamd_timeout", 1, cfg->clamd_timeout);
		} else if (strcmp(name, "clamav") == 0) {
			add(&w, name, "av_max_scantime", 1, cfg->av_max_scantime);
			w.uncut = 1;
		} else if (strcmp(name, "spf") == 0)
			add(&w, name, "spf_timeout", 1, cfg->spf_timeout);
		else if (strcmp(name, "dkim") == 0)
			add(&w, name, "dkim_timeout", 1, cfg->dkim_timeout);
		else if (strcmp(name, "dmarc") == 0)
			/* the From domain's record, then its organizational domain's */
			add(&w, name, "dns_timeout", 2, cfg->dns_timeout);
		else if (strcmp(name, "dnsbl") == 0 && cfg->dnsbl_timeout)
			add(&w, name, "dnsbl_timeout", 1, cfg->dnsbl_timeout);
		else if (strcmp(name, "dnsbl") == 0)
			add(&w, name, "dns_timeout", 1, cfg->dns_timeout);
		else if (strcmp(name, "rules") == 0 && cfg->rules_net_tests)
			add(&w, name, "rules_dns_timeout", 1, cfg->rules_dns_timeout);
		else if (redis && (strcmp(name, "greylist") == 0 || strcmp(name, "ratelimit") == 0))
			add(&w, name, "store_timeout", 2, cfg->store_timeout);
		else if (redis && strcmp(name, "bayes") == 0)
			add(&w, name, "store_timeout", 3, cfg->store_timeout);
	}
	if (cfg->nlisteners > 0)
		n += warn(&w, "scan_timeout", cfg->scan_timeout, out, who);
	if (cfg->milter_listen[0] != '\0')
		n += warn(&w, "milter_timeout", cfg->milter_timeout, out, who);
	return n;
}
