/* filter_api.c - the mw_* functions of include/mailwarden/filter.h: what a
 * filter hook may read about the message, and what it may say.
 *
 * Why so much checking: a filter copies text from the message into what it
 * says (a Subject into a description, a domain into a header), so every
 * symbol name, header name and value, and reply text is validated here, at
 * the one place all filters pass through, before it can reach the SMTP
 * reply or the header section the proxy writes.  A bad item is dropped and
 * logged (a bad reply text is replaced by the configured one: the verdict
 * itself stands, a reject must not turn into an accept).  Caps keep one
 * message's result well inside one scanner protocol packet.
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/filter_api.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/policy.h"
#include "proxy/sbuf.h"

/* --- parsing the message once ------------------------------------------- */

int msgscan_parse(struct msgscan *ms)
{
	const char *buf = (const char *)ms->msg;
	struct header_field f;
	size_t pos = 0, cap = 0;
	int r;

	while ((r = header_next(buf, ms->len, &pos, &f)) == 1) {
		struct msg_field *m;
		int from = header_name_is(&f, "From"), subject = header_name_is(&f, "Subject");

		/* From fields are counted over the whole header: DMARC applies
		 * to a message with exactly one, and a second one past the
		 * cap, unseen, let a forgery through as a one-From message.
		 * The first From field is kept wherever it stands, so that
		 * mw_header(ctx, "From", 0) is always the message's first. */
		ms->nfrom += from;
		/* so is the first Subject: the policy tags it, and one past the
		 * cap was left as it was under a second, tagged one it added */
		ms->nsubject += subject;
		if (ms->nfields >= MW_MAX_FIELDS && !(from && ms->nfrom == 1) &&
		    !(subject && ms->nsubject == 1)) {
			ms->nunseen++;
			continue;	/* keep walking to find the body */
		}
		if (ms->nfields == cap) {
			cap = cap ? cap * 2 : 32;
			ms->fields = xrealloc(ms->fields, cap * sizeof(*ms->fields));
		}
		m = &ms->fields[ms->nfields++];
		m->name = xstrndup(f.name, f.name_len);
		m->value = xmalloc(f.value_len + 1);
		header_unfold(&f, m->value, f.value_len + 1);
		m->raw = f.value;
		m->raw_len = f.value_len;
	}
	ms->body_off = pos;
	return 0;
}

void msgscan_free(struct msgscan *ms)
{
	size_t i;

	/* an outcome not told (a scan cut short) is a message not taken */
	msgscan_outcome(ms, 0);
	for (i = 0; i < ms->nfields; i++) {
		free(ms->fields[i].name);
		free(ms->fields[i].value);
	}
	free(ms->fields);
	for (i = 0; i < ms->nsymbols; i++)
		free(ms->symbols[i].desc);
	free(ms->symbols);
	for (i = 0; i < ms->nedits; i++) {
		free(ms->edits[i].name);
		free(ms->edits[i].value);
	}
	free(ms->edits);
	for (i = 0; i < ms->nauth; i++)
		free(ms->auth[i].props);
	free(ms->auth);
	if (ms->mime != NULL && ms->mime_free != NULL)
		ms->mime_free(ms->mime);
	free(ms->new_rest);
	memset(ms, 0, sizeof(*ms));
}

void builtin_on_outcome(struct mw_ctx *ctx, void (*fn)(void *data, int taken), void *data)
{
	struct msgscan *ms = ctx->ms;

	ms->outcome = xrealloc(ms->outcome, (ms->noutcome + 1) * sizeof(*ms->outcome));
	ms->outcome[ms->noutcome].fn = fn;
	ms->outcome[ms->noutcome].data = data;
	ms->noutcome++;
}

void msgscan_outcome(struct msgscan *ms, int taken)
{
	size_t i;
	long long at;

	if (ms->noutcome == 0)
		return;
	/* the outcome is told whatever time is left: a message refused for
	 * running out of time gives back what it took, and under the scan's
	 * deadline every such give-back (a store call) found no time left,
	 * failed, and left the units taken */
	at = deadline_suspend();
	for (i = 0; i < ms->noutcome; i++)
		ms->outcome[i].fn(ms->outcome[i].data, taken);
	deadline_resume(at);
	free(ms->outcome);
	ms->outcome = NULL;
	ms->noutcome = 0;
}

void builtin_new_body(struct mw_ctx *ctx, char *rest, size_t len, int top)
{
	struct msgscan *ms = ctx->ms;

	free(ms->new_rest);
	ms->new_rest = rest;
	ms->new_rest_len = len;
	ms->new_rest_top = top;
}

void mw_ctx_begin(struct mw_ctx *ctx, struct msgscan *ms, const struct mw_filter_ops *ops,
                  void *instance)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->ms = ms;
	ctx->ops = ops;
	ctx->instance = instance;
	ctx->name = ops->name;
	ctx->owner = pthread_self();
	ctx->owned = 1;
	atomic_init(&ctx->ended, 0);
	atomic_init(&ctx->misuse_logged, 0);
}

void mw_ctx_end(struct mw_ctx *ctx)
{
	if (ctx->msgdata != NULL && ctx->msgdata_free != NULL)
		ctx->msgdata_free(ctx->msgdata);
	ctx->msgdata = NULL;
	ctx->msgdata_free = NULL;
	atomic_store(&ctx->ended, 1);
}

int filter_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 31 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int header_field_name_ok(const char *name)
{
	size_t n;

	for (n = 0; name[n] != '\0'; n++)
		if ((unsigned char)name[n] < 33 || (unsigned char)name[n] > 126 || name[n] == ':')
			return 0;
	return n >= 1 && n <= 76;
}

static const char *sid(const struct mw_ctx *ctx)
{
	return ctx->ms->req->session_id;
}

/* say_dropped - one log line per rejected item; esc: the offending text */
static void say_dropped(const struct mw_ctx *ctx, const char *what, const char *text,
                        const char *why)
{
	char esc[128];

	slog(sid(ctx), LOG_WARNING, "filter=%s dropped %s \"%s\": %s", ctx->name, what,
	    log_esc_quoted(esc, sizeof(esc), text ? text : "(null)", text ? strlen(text) : 6), why);
}

/* writer_ok - may this call write the message's result through ctx?  Only
 * from the hook's own thread while the ctx lives (filter_api.h); a plugin
 * thread's call raced the worker's writes to the same arrays (memory
 * corruption) and is refused now, logged once per ctx. */
static int writer_ok(struct mw_ctx *ctx, const char *call)
{
	int ended;

	if (!ctx->owned)
		return 1;
	ended = atomic_load(&ctx->ended);
	if (!ended && pthread_equal(pthread_self(), ctx->owner))
		return 1;
	if (!atomic_exchange(&ctx->misuse_logged, 1))
		slog(sid(ctx), LOG_ERR, "filter=%s %s called %s: ignored (only the hook's own thread "
		    "may say something, while the hook runs: mailwarden/filter.h)", ctx->name, call,
		    ended ? "after the filter's hooks ended" : "from a thread other than its hook's");
	return 0;
}

/* --- what a hook can read ----------------------------------------------- */

static const char *nz(const char *s)
{
	return s != NULL ? s : "";
}

void *mw_instance(const struct mw_ctx *ctx)
{
	return ctx->instance;
}

const char *mw_session_id(const struct mw_ctx *ctx)
{
	return ctx->ms->req->session_id;
}

const char *mw_listener(const struct mw_ctx *ctx)
{
	return nz(ctx->ms->req->listener);
}

enum mw_direction mw_direction(const struct mw_ctx *ctx)
{
	return ctx->ms->req->direction;
}

const char *mw_client_ip(const struct mw_ctx *ctx)
{
	return nz(ctx->ms->req->client_ip);
}

unsigned mw_client_port(const struct mw_ctx *ctx)
{
	return ctx->ms->req->client_port;
}

const char *mw_client_name(const struct mw_ctx *ctx)
{
	const char *fe = ctx->ms->req->client_name;

	/* a front end that knows it (the MTA of a milter) wins */
	return fe != NULL && fe[0] != '\0' ? fe : ctx->ms->client_name;
}

long mw_time_left_ms(const struct mw_ctx *ctx)
{
	long long left = deadline_left_ms();

	(void)ctx;	/* the deadline is the scan's, kept per scanner thread */
	if (left < 0)
		return MW_NO_DEADLINE;
	if (left == 0)
		/* whatever it skips now is missing from the verdict: the audit
		 * record says who was cut, as for a filter's wait cut short */
		deadline_timed_out("scan_deadline");
	return left > LONG_MAX ? LONG_MAX : (long)left;
}

const char *mw_helo(const struct mw_ctx *ctx)
{
	return nz(ctx->ms->req->helo);
}

const char *mw_mail_from(const struct mw_ctx *ctx)
{
	return nz(ctx->ms->req->mail_from);
}

size_t mw_rcpt_count(const struct mw_ctx *ctx)
{
	return ctx->ms->req->nrcpts;
}

const char *mw_rcpt(const struct mw_ctx *ctx, size_t i)
{
	if (i >= ctx->ms->req->nrcpts)
		return NULL;
	return nz(ctx->ms->req->rcpts[i]);
}

const char *mw_header(const struct mw_ctx *ctx, const char *name, size_t n)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < ctx->ms->nfields; i++)
		if (strcasecmp(ctx->ms->fields[i].name, name) == 0 && n-- == 0)
			return ctx->ms->fields[i].value;
	return NULL;
}

const unsigned char *mw_message(const struct mw_ctx *ctx, size_t *len)
{
	if (len != NULL)
		*len = ctx->ms->len;
	return ctx->ms->msg;
}

/* --- per-message state ---------------------------------------------------- */

void mw_set_msgdata(struct mw_ctx *ctx, void *data, void (*free_fn)(void *))
{
	if (!writer_ok(ctx, "mw_set_msgdata"))
		return;
	if (ctx->msgdata != NULL && ctx->msgdata != data && ctx->msgdata_free != NULL)
		ctx->msgdata_free(ctx->msgdata);
	ctx->msgdata = data;
	ctx->msgdata_free = free_fn;
}

void *mw_msgdata(const struct mw_ctx *ctx)
{
	return ctx->msgdata;
}

/* --- what a hook can say ------------------------------------------------ */

static int symbol_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 63 && strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

static void cap_reached(struct mw_ctx *ctx, const char *what, const char *text)
{
	if (!ctx->ms->cap_logged) {
		ctx->ms->cap_logged = 1;
		say_dropped(ctx, what, text, "too many for one message (further drops not logged)");
	}
}

void mw_symbol(struct mw_ctx *ctx, const char *name, double score, const char *desc_fmt, ...)
{
	struct msgscan *ms = ctx->ms;
	struct scan_symbol *s;
	char desc[MW_MAX_DESC + 1];
	va_list ap;
	size_t i;

	if (!writer_ok(ctx, "mw_symbol"))
		return;
	if (name == NULL || !symbol_name_ok(name)) {
		say_dropped(ctx, "symbol", name, "name must be [A-Z0-9_], 1 to 63 chars");
		return;
	}
	if (!isfinite(score)) {
		say_dropped(ctx, "symbol", name, "score is not a finite number");
		return;
	}
	for (i = 0; i < ms->nsymbols; i++)
		if (strcmp(ms->symbols[i].name, name) == 0)
			return;		/* the first one stays */
	if (ms->nsymbols >= MW_MAX_SYMBOLS) {
		cap_reached(ctx, "symbol", name);
		return;
	}
	ms->symbols = xrealloc(ms->symbols, (ms->nsymbols + 1) * sizeof(*ms->symbols));
	s = &ms->symbols[ms->nsymbols++];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->filter, sizeof(s->filter), "%s", ctx->name);
	s->score = score;
	if (desc_fmt != NULL) {
		va_start(ap, desc_fmt);
		vsnprintf(desc, sizeof(desc), desc_fmt, ap);
		va_end(ap);
		/* one printable line: control bytes (from the message) become SP */
		for (i = 0; desc[i] != '\0'; i++)
			if ((unsigned char)desc[i] < 0x20 || desc[i] == 0x7f)
				desc[i] = ' ';
		s->desc = xstrdup(desc);
	}
}

/* header_value_ok - no CR, LF or other control bytes but HTAB. */
static int header_value_ok(const char *v)
{
	for (; *v; v++)
		if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f)
			return 0;
	return 1;
}

static int owned_by_policy(const char *name)
{
	return strcasecmp(name, POLICY_HDR_FLAG) == 0 || strcasecmp(name, POLICY_HDR_SCORE) == 0
	    || strcasecmp(name, POLICY_HDR_STATUS) == 0;
}

static void edit_add(struct mw_ctx *ctx, enum header_edit_op op, const char *name,
                     const char *value)
{
	struct msgscan *ms = ctx->ms;
	struct header_edit *e;

	if (!writer_ok(ctx, op == HE_ADD ? "mw_header_add" : op == HE_REMOVE ? "mw_header_remove"
	    : "mw_header_change"))
		return;
	if (name == NULL || !header_field_name_ok(name)) {
		say_dropped(ctx, "header edit", name, "not a valid field name");
		return;
	}
	if (owned_by_policy(name)) {
		say_dropped(ctx, "header edit", name, "X-Spam-* fields belong to policy");
		return;
	}
	if (op != HE_REMOVE) {
		if (value == NULL || !header_value_ok(value)) {
			say_dropped(ctx, "header edit", name,
			    "value missing or holds CR, LF or control bytes (folding is not allowed)");
			return;
		}
		if (strlen(name) + 2 + strlen(value) > MW_MAX_LINE) {
			say_dropped(ctx, "header edit", name, "field longer than 998 octets");
			return;
		}
	}
	if (ms->nedits >= MW_MAX_EDITS) {
		cap_reached(ctx, "header edit", name);
		return;
	}
	ms->edits = xrealloc(ms->edits, (ms->nedits + 1) * sizeof(*ms->edits));
	e = &ms->edits[ms->nedits++];
	e->op = op;
	e->name = xstrdup(name);
	e->value = op == HE_REMOVE ? NULL : xstrdup(value);
}

void mw_header_add(struct mw_ctx *ctx, const char *name, const char *value)
{
	edit_add(ctx, HE_ADD, name, value);
}

void mw_header_remove(struct mw_ctx *ctx, const char *name)
{
	edit_add(ctx, HE_REMOVE, name, NULL);
}

void mw_header_change(struct mw_ctx *ctx, const char *name, const char *value)
{
	edit_add(ctx, HE_CHANGE, name, value);
}

/* stated_wait_s - the wait a tempfail's text states ("please try again in
 * 300 seconds", "... in 59 minutes", "... in 2 hours"), in seconds; 0
 * when it states none */
static unsigned long stated_wait_s(const char *text)
{
	const char *p = strstr(text, "again in ");
	unsigned long n;
	char *end;

	if (p == NULL || (n = strtoul(p + 9, &end, 10)) == 0 || n > 1000000 || *end != ' ')
		return 0;
	end++;
	if (strncmp(end, "second", 6) == 0)
		return n;
	if (strncmp(end, "minute", 6) == 0)
		return n * 60;
	if (strncmp(end, "hour", 4) == 0)
		return n * 3600;
	return 0;
}

void mw_verdict(struct mw_ctx *ctx, enum mw_action action, const char *reply_text)
{
	struct msgscan *ms = ctx->ms;
	char esc[128];

	if (!writer_ok(ctx, "mw_verdict"))
		return;
	if ((unsigned)action >= MW_ACTION_COUNT) {
		slog(sid(ctx), LOG_WARNING, "filter=%s ignored verdict %d: no such action",
		    ctx->name, (int)action);
		return;
	}
	if (action == MW_TEMPFAIL && ms->hard == MW_TEMPFAIL && reply_text != NULL
	    && policy_text_ok(reply_text) && stated_wait_s(ms->hard_text) > 0
	    && stated_wait_s(reply_text) > stated_wait_s(ms->hard_text)) {
		/* two tempfails that each say when to come back: the later
		 * time, or the sender retries into the other refusal again
		 * (greylisting's "in 1 second" beside a rate limit's hour) */
		snprintf(ms->hard_text, sizeof(ms->hard_text), "%s", reply_text);
		snprintf(ms->hard_by, sizeof(ms->hard_by), "%s", ctx->name);
		return;
	}
	if (action <= ms->hard)
		return;		/* a harder (or the same, earlier) verdict stands */
	ms->hard = action;
	ms->hard_text[0] = '\0';
	snprintf(ms->hard_by, sizeof(ms->hard_by), "%s", ctx->name);
	if (reply_text != NULL) {
		if (policy_text_ok(reply_text))
			snprintf(ms->hard_text, sizeof(ms->hard_text), "%s", reply_text);
		else
			slog(sid(ctx), LOG_WARNING, "filter=%s verdict %s: reply text \"%s\" "
			    "replaced by the configured one (printable ASCII, 1 to %d "
			    "chars, no code)", ctx->name, mw_action_name(action),
			    log_esc_quoted(esc, sizeof(esc), reply_text, strlen(reply_text)),
			    MW_MAX_REPLY_TEXT);
	}
}

static int auth_token_ok(const char *t, size_t max)
{
	size_t n = strlen(t);

	return n >= 1 && n < max && strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

void mw_auth_result(struct mw_ctx *ctx, const char *method, const char *result,
                    const char *props_fmt, ...)
{
	struct msgscan *ms = ctx->ms;
	struct auth_entry *e;
	char props[MW_MAX_AUTH_PROPS + 2] = "";
	va_list ap;
	size_t i;

	if (!writer_ok(ctx, "mw_auth_result"))
		return;
	if (method == NULL || result == NULL || !auth_token_ok(method, sizeof(e->method))
	    || !auth_token_ok(result, sizeof(e->result))) {
		say_dropped(ctx, "auth result", method, "method and result must be [a-z0-9._-] tokens");
		return;
	}
	if (props_fmt != NULL) {
		int n;

		va_start(ap, props_fmt);
		n = vsnprintf(props, sizeof(props), props_fmt, ap);
		va_end(ap);
		if (n < 0 || (size_t)n > MW_MAX_AUTH_PROPS) {
			say_dropped(ctx, "auth result", method, "properties longer than 900 bytes");
			return;
		}
		for (i = 0; props[i] != '\0'; i++)
			if ((unsigned char)props[i] < 0x20 || (unsigned char)props[i] > 0x7e) {
				say_dropped(ctx, "auth result", method,
				    "properties must be printable ASCII");
				return;
			}
	}
	if (ms->nauth >= MW_MAX_AUTH) {
		cap_reached(ctx, "auth result", method);
		return;
	}
	ms->auth = xrealloc(ms->auth, (ms->nauth + 1) * sizeof(*ms->auth));
	e = &ms->auth[ms->nauth++];
	memset(e, 0, sizeof(*e));
	snprintf(e->method, sizeof(e->method), "%s", method);
	snprintf(e->result, sizeof(e->result), "%s", result);
	snprintf(e->filter, sizeof(e->filter), "%s", ctx->name);
	e->props = xstrdup(props);
}

const struct auth_entry *msgscan_auth(const struct msgscan *ms, const char *method, size_t n)
{
	size_t i;

	for (i = 0; i < ms->nauth; i++)
		if (strcmp(ms->auth[i].method, method) == 0 && n-- == 0)
			return &ms->auth[i];
	return NULL;
}

/* word_end - past the property word at p: up to a blank outside a
 * quoted-string ("..." with \-escapes, which may hold blanks) */
static const char *word_end(const char *p)
{
	while (*p != '\0' && *p != ' ' && *p != '\t') {
		if (*p++ != '"')
			continue;
		for (; *p != '\0' && *p != '"'; p++)
			if (*p == '\\' && p[1] != '\0')
				p++;
		if (*p == '"')
			p++;
	}
	return p;
}

/* The words are split outside quoted-strings and a value is given without
 * its quotes: split at every blank, the SPF entry of MAIL FROM:<"x@victim.test
 * y"@evil.test>, smtp.mailfrom="\"x@victim.test y\"@evil.test", gave DMARC
 * the word "\"x@victim.test, so the domain victim.test, and an SPF pass of
 * evil.test aligned with From: victim.test (a DMARC pass for forged mail). */
int auth_props_get(const struct auth_entry *e, const char *key, char *out, size_t outsz)
{
	size_t klen = strlen(key);
	const char *p = e->props;

	while (*p != '\0') {
		const char *end;

		p += strspn(p, " \t");
		end = word_end(p);
		if ((size_t)(end - p) > klen && strncasecmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t o = 0;
			int quoted = 0;

			for (p += klen + 1; p < end; p++) {
				if (*p == '"') {
					quoted = !quoted;
					continue;
				}
				if (quoted && *p == '\\' && p + 1 < end)
					p++;
				if (o + 1 < outsz)
					out[o++] = *p;
			}
			if (outsz > 0)
				out[o] = '\0';
			return 1;
		}
		p = end;
	}
	if (outsz > 0)
		out[0] = '\0';
	return 0;
}

/* filter_vlog - a filter's line: its text escaped whole (mw_log, for
 * plug-ins, whose text may carry anything), or as the caller escaped each
 * outside value (builtin_log: escaped again, the backslash of each \xHH
 * would be doubled) */
__attribute__((format(printf, 4, 0)))
static void filter_vlog(const struct mw_ctx *ctx, int priority, int escape, const char *fmt, va_list ap)
{
	char msg[1024], esc[1024];

	if (priority < LOG_EMERG || priority > LOG_DEBUG)
		priority = LOG_INFO;
	if (!log_enabled(priority))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	slog(sid(ctx), priority, "filter=%s %s", ctx->name,
	    escape ? log_esc(esc, sizeof(esc), msg, strlen(msg)) : msg);
}

void mw_log(const struct mw_ctx *ctx, int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	filter_vlog(ctx, priority, 1, fmt, ap);
	va_end(ap);
}

/* builtin_log - see builtin.h */
void builtin_log(const struct mw_ctx *ctx, int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	filter_vlog(ctx, priority, 0, fmt, ap);
	va_end(ap);
}
