/* example_plugin.c - the example mailwarden plugin, and the living
 * documentation of the plugin API (include/mailwarden/filter.h).
 *
 * What it does:
 *   - a Subject containing WORD (case-insensitive) adds the symbol
 *     EXAMPLE_SUBJECT_WORD with score N and a description;
 *   - a header field named NAME makes it ask for a reject, with its own
 *     reply text ("Message refused by example plugin").
 *
 * Config line (mailwarden.conf):
 *   plugin = /usr/local/lib/mailwarden/plugins/example.so word=viagra score=6.0 reject_header=X-Reject-Me
 * Arguments are "key=value" words after the path; a value cannot contain a
 * blank.  Defaults: word=viagra score=6.0 reject_header=X-Reject-Me.
 * For tests only: delay_ms=N makes every message take N ms more (a slow
 * filter: scanner queue full, scan_timeout, shutdown with scans running);
 * action_header=NAME: a field NAME whose value is an action name (accept,
 * tag, quarantine, discard, tempfail, reject) asks for that verdict;
 * sleep_header=NAME: a field NAME holding a number of ms delays that one
 * message (a scan that misses its deadline, a scanner killed mid-scan);
 * work_header=NAME: a field NAME holding a number of ms is work done in
 * steps while the message's deadline leaves time (mw_time_left_ms), cut
 * short with the symbol EXAMPLE_WORK_CUT when it does not;
 * edit_header=NAME: a field NAME holding "remove FIELD" or "change FIELD
 * VALUE" makes the plugin call mw_header_remove or mw_header_change with
 * what the message says (the name taken as it is, as a sanitizer would).
 *
 * Build:  cc -std=c11 -Iinclude -shared -fPIC -o example.so example_plugin.c
 *         (the Makefile builds it as build/tests/example_plugin.so)
 * A plugin links against nothing of mailwarden: the mw_* functions it calls
 * are resolved from the mailwarden executable when it is loaded.
 *
 * The rules a plugin lives by:
 *   1. Export one const struct mw_filter_ops named MW_FILTER_SYMBOL
 *      ("mailwarden_filter"), with api_version = MW_FILTER_API_VERSION.
 *   2. init() runs once per scanner process, before any message; parse and
 *      check the arguments there and fail loudly (return -1 with a reason:
 *      "mailwarden -t" shows it).  The instance is read-only afterwards:
 *      hooks of different messages run at the same time on several threads.
 *   3. Keep per-message state only with mw_set_msgdata(); mailwarden frees
 *      it (with the function you give) after on_eom.
 *   4. Every string a hook gets is borrowed: copy what you keep.  It comes
 *      from the network: any byte but NUL, not necessarily UTF-8.
 *   5. Say what you found with mw_symbol() (scores add up; policy compares
 *      the sum with the thresholds), mw_header_add/remove/change(), and for
 *      a hard decision mw_verdict().  Never block for long: the front end
 *      waits for the scan only so long (scan_timeout, milter_timeout), and
 *      the message has a deadline a little before that.  A filter that
 *      waits on the network or works long caps each wait by
 *      mw_time_left_ms() and stops when it says 0 (see work() below);
 *      MW_NO_DEADLINE (-1) means no one is waiting.
 *   6. What is refused (logged and dropped, the scan goes on):
 *      - symbol names other than [A-Z0-9_]{1,63}, non-finite scores; a name
 *        given twice keeps its first score; at most 256 symbols per message
 *        (all filters together); descriptions are cut at 512 bytes and
 *        control characters in them become spaces;
 *      - header edits whose name is not an RFC 5322 field name (1 to 76
 *        printable characters, no colon), whose value holds CR, LF or
 *        another control character but TAB (no folding from plugins), whose
 *        field would pass 998 octets, or that touch X-Spam-Flag,
 *        X-Spam-Score or X-Spam-Status (policy owns those); at most 64 edits
 *        per message;
 *      - a verdict's reply text that is not printable ASCII of 1 to 400
 *        bytes: the configured text is used, the verdict stands.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* strcasestr */
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "mailwarden/filter.h"

/* Instance data: set up by init, read-only afterwards. */
struct example {
	char   word[256];           /* matched in Subject, case-insensitively */
	double score;               /* score of EXAMPLE_SUBJECT_WORD */
	char   reject_header[77];   /* a field of this name means reject */
	long   delay_ms;            /* tests: sleep this long per message */
	char   action_header[77];   /* tests: its value names the verdict */
	char   sleep_header[77];    /* tests: its value is a delay in ms */
	char   work_header[77];     /* tests: its value is ms of work under the deadline */
	char   edit_header[77];     /* tests: its value asks for a header edit */
	char   reject_rcpt[256];    /* tests: a recipient containing this is refused */
};

/* Per-message data: what the header hooks saw, used at end of message. */
struct example_msg {
	int  subject_hit;
	int  reject_hit;
	int  action;                /* from action_header; -1 = none */
	long sleep_ms;              /* from sleep_header */
	long work_ms;               /* from work_header */
};

static int example_init(void **instance, const struct mw_filter_args *args,
                        char *err, size_t errlen)
{
	struct example *ex = calloc(1, sizeof(*ex));
	size_t i;

	if (ex == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(ex->word, sizeof(ex->word), "viagra");
	ex->score = 6.0;
	snprintf(ex->reject_header, sizeof(ex->reject_header), "X-Reject-Me");

	for (i = 0; i < args->count; i++) {
		const char *k = args->keys[i], *v = args->values[i];
		char *end;

		if (strcmp(k, "word") == 0) {
			if (*v == '\0' || strlen(v) >= sizeof(ex->word)) {
				snprintf(err, errlen, "word: 1 to %zu characters", sizeof(ex->word) - 1);
				goto fail;
			}
			snprintf(ex->word, sizeof(ex->word), "%s", v);
		} else if (strcmp(k, "score") == 0) {
			errno = 0;
			ex->score = strtod(v, &end);
			if (errno != 0 || end == v || *end != '\0' || !isfinite(ex->score)) {
				snprintf(err, errlen, "score: \"%s\" is not a number", v);
				goto fail;
			}
		} else if (strcmp(k, "reject_header") == 0) {
			if (*v == '\0' || strlen(v) >= sizeof(ex->reject_header)
			    || strchr(v, ':') != NULL) {
				snprintf(err, errlen, "reject_header: not a header field name");
				goto fail;
			}
			snprintf(ex->reject_header, sizeof(ex->reject_header), "%s", v);
		} else if (strcmp(k, "action_header") == 0 || strcmp(k, "sleep_header") == 0
		    || strcmp(k, "work_header") == 0 || strcmp(k, "edit_header") == 0) {
			char *dst = k[0] == 'a' ? ex->action_header : k[0] == 's' ? ex->sleep_header
			          : k[0] == 'w' ? ex->work_header : ex->edit_header;
			if (*v == '\0' || strlen(v) >= sizeof(ex->action_header)
			    || strchr(v, ':') != NULL) {
				snprintf(err, errlen, "%s: not a header field name", k);
				goto fail;
			}
			snprintf(dst, sizeof(ex->action_header), "%s", v);
		} else if (strcmp(k, "reject_rcpt") == 0) {
			if (*v == '\0' || strlen(v) >= sizeof(ex->reject_rcpt)) {
				snprintf(err, errlen, "reject_rcpt: 1 to %zu characters",
				    sizeof(ex->reject_rcpt) - 1);
				goto fail;
			}
			snprintf(ex->reject_rcpt, sizeof(ex->reject_rcpt), "%s", v);
		} else if (strcmp(k, "delay_ms") == 0) {
			errno = 0;
			ex->delay_ms = strtol(v, &end, 10);
			if (errno != 0 || end == v || *end != '\0' || ex->delay_ms < 0
			    || ex->delay_ms > 600000) {
				snprintf(err, errlen, "delay_ms: \"%s\" is not 0 to 600000", v);
				goto fail;
			}
		} else {
			snprintf(err, errlen, "unknown argument \"%s\" (known: word, score, "
			    "reject_header, action_header, sleep_header, work_header, edit_header, reject_rcpt, "
			    "delay_ms)", k);
			goto fail;
		}
	}
	*instance = ex;
	return 0;
fail:
	free(ex);
	return -1;
}

static void example_fini(void *instance)
{
	free(instance);
}

/* msg_state - this message's state, created on first use. */
static struct example_msg *msg_state(struct mw_ctx *ctx)
{
	struct example_msg *m = mw_msgdata(ctx);

	if (m == NULL) {
		m = calloc(1, sizeof(*m));
		if (m == NULL)
			return NULL;
		m->action = -1;
		mw_set_msgdata(ctx, m, free);
	}
	return m;
}

/* on_header - called once per header field, in message order: name
 * without the colon, value unfolded and trimmed, not RFC 2047 decoded. */
static void example_on_header(struct mw_ctx *ctx, const char *name, const char *value)
{
	const struct example *ex = mw_instance(ctx);
	struct example_msg *m;

	if (strcasecmp(name, "Subject") == 0 && strcasestr(value, ex->word) != NULL) {
		if ((m = msg_state(ctx)) != NULL)
			m->subject_hit = 1;
	} else if (strcasecmp(name, ex->reject_header) == 0) {
		if ((m = msg_state(ctx)) != NULL)
			m->reject_hit = 1;
	} else if (ex->action_header[0] && strcasecmp(name, ex->action_header) == 0) {
		static const char *const names[] = { "accept", "tag", "quarantine", "discard",
		                                     "tempfail", "reject" };
		if ((m = msg_state(ctx)) != NULL)
			for (int i = 0; i < 6; i++)
				if (strcasecmp(value, names[i]) == 0)
					m->action = i;
	} else if (ex->sleep_header[0] && strcasecmp(name, ex->sleep_header) == 0) {
		if ((m = msg_state(ctx)) != NULL) {
			m->sleep_ms = strtol(value, NULL, 10);
			if (m->sleep_ms < 0 || m->sleep_ms > 600000)
				m->sleep_ms = 0;
		}
	} else if (ex->work_header[0] && strcasecmp(name, ex->work_header) == 0) {
		if ((m = msg_state(ctx)) != NULL) {
			m->work_ms = strtol(value, NULL, 10);
			if (m->work_ms < 0 || m->work_ms > 600000)
				m->work_ms = 0;
		}
	} else if (ex->edit_header[0] && strcasecmp(name, ex->edit_header) == 0) {
		char field[256];
		const char *sp;

		if (strncmp(value, "remove ", 7) == 0) {
			mw_header_remove(ctx, value + 7);
		} else if (strncmp(value, "change ", 7) == 0 && (sp = strchr(value + 7, ' ')) != NULL
		           && (size_t)(sp - (value + 7)) < sizeof(field)) {
			snprintf(field, sizeof(field), "%.*s", (int)(sp - (value + 7)), value + 7);
			mw_header_change(ctx, field, sp + 1);
		}
	}
}

/* sleep_ms - nanosleep through signals */
static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* work - want_ms of work in steps (a plugin's lookups or heavy checks),
 * as long as the message's deadline leaves time.  The front end waits for
 * the verdict only so long: a filter that goes on past the deadline loses
 * the whole message's verdict (451 from the front end), one that stops
 * loses only its own finding.  Returns the ms done. */
static long work(struct mw_ctx *ctx, long want_ms)
{
	const long step = 20;
	long done = 0, left, n;

	while (done < want_ms) {
		left = mw_time_left_ms(ctx);
		if (left == 0)
			break;		/* out of time; mailwarden notes the cut */
		n = want_ms - done < step ? want_ms - done : step;
		if (left != MW_NO_DEADLINE && left < n)
			n = left;	/* never a step past the deadline */
		sleep_ms(n);
		done += n;
	}
	return done;
}

/* on_eom - the whole message has been seen: report.  (mw_header(ctx,
 * "Subject", 0) would have given the Subject here too; the header hook is
 * used above to show the streaming style.) */
static void example_on_eom(struct mw_ctx *ctx)
{
	const struct example *ex = mw_instance(ctx);
	const struct example_msg *m = mw_msgdata(ctx);

	if (ex->delay_ms > 0)
		sleep_ms(ex->delay_ms);
	if (m == NULL)
		return;
	if (m->sleep_ms > 0)
		sleep_ms(m->sleep_ms);	/* blind: the deadline is not asked */
	if (m->work_ms > 0) {
		long done = work(ctx, m->work_ms);

		if (done < m->work_ms)
			mw_symbol(ctx, "EXAMPLE_WORK_CUT", 0.0, "work cut short at the message's "
			    "deadline after %ld of %ld ms", done, m->work_ms);
	}
	if (m->action >= 0)
		mw_verdict(ctx, (enum mw_action)m->action, NULL);
	if (m->subject_hit)
		mw_symbol(ctx, "EXAMPLE_SUBJECT_WORD", ex->score,
		    "Subject contains \"%s\"", ex->word);
	if (m->reject_hit) {
		/* The reply text only: the SMTP code (550 5.7.1 by default) comes
		 * from the configured reject_reply. */
		mw_verdict(ctx, MW_REJECT, "Message refused by example plugin");
		mw_log(ctx, LOG_INFO, "reject: header %s present", ex->reject_header);
	}
}

/* An envelope verdict: it needs no message, so a front end that asks
 * before DATA (the milter at RCPT) gets it in time to refuse the
 * recipient.  For tests: reject_rcpt=TEXT refuses recipients containing
 * TEXT. */
static void example_on_rcpt(struct mw_ctx *ctx, const char *rcpt)
{
	const struct example *ex = mw_instance(ctx);

	if (ex->reject_rcpt[0] && strstr(rcpt, ex->reject_rcpt) != NULL)
		mw_verdict(ctx, MW_REJECT, "Recipient refused by example plugin");
}

/* The one exported object.  Hooks this plugin does not need stay NULL:
 * on_connect (client address: mw_client_ip), on_helo, on_mail (envelope
 * sender, "" for <>), on_body (raw body in
 * chunks of at most 64 KiB, CRLF line ends). */
const struct mw_filter_ops mailwarden_filter = {
	.api_version = MW_FILTER_API_VERSION,
	.name        = "example",
	.init        = example_init,
	.fini        = example_fini,
	.on_rcpt     = example_on_rcpt,
	.on_header   = example_on_header,
	.on_eom      = example_on_eom,
};
