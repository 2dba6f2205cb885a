/* policy.c - from score and verdicts to one action, its reply and the
 * X-Spam-* header edits.
 *
 * Why it looks like SpamAssassin: sites have years of Sieve, procmail and
 * MUA rules keyed on "X-Spam-Flag: YES" and "X-Spam-Status: Yes, score=...",
 * so tagged mail carries exactly those fields.  They are always removed
 * from the incoming message first, whatever the action, or a spammer could
 * pre-set "X-Spam-Status: No" and walk past those rules.
 *
 * Replies: the code and enhanced code of a reply always come from config
 * (reject_reply, ...); a filter may only supply the text.  So a plugin can
 * never make a reject look like a 250 or a tempfail like a 5xx.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy.h"
#include "proxy/sbuf.h"

#define STATUS_FOLD 78          /* fold X-Spam-Status lines past this column */
/* SUBJECT_TAG_MAX - a longer Subject is left untagged (X-Spam-Flag still
 * says it): the scanner's reply carries a value of at most 64 KiB
 * (scanproto.c SP_MAX_STRING), and so do libmilter's packets.  8 KiB
 * until session 16: a sender could fold his Subject past it to keep the
 * tag off his messages */
#define SUBJECT_TAG_MAX 60000

/* fallback replies, should the configured one be unusable */
static const char *const default_reply[MW_ACTION_COUNT] = {
	[MW_QUARANTINE] = "250 2.0.0 Ok: message accepted",
	[MW_DISCARD]    = "250 2.0.0 Ok: message accepted",
	[MW_TEMPFAIL]   = "451 4.7.1 Try again later",
	[MW_REJECT]     = "550 5.7.1 Message rejected",
};

int policy_text_ok(const char *text)
{
	size_t n = 0;

	for (; text[n] != '\0'; n++)
		if ((unsigned char)text[n] < 0x20 || (unsigned char)text[n] > 0x7e || n >= 400)
			return 0;
	return n > 0;
}

/* split_reply - "550 5.7.1 text": a 3-digit code of class cls, an
 * optional enhanced code of the same class, then the text; printable ASCII
 * only.  *code_end: end of the code(s); *text_off: start of the text.
 * 0 or -1. */
static int split_reply(const char *r, char cls, size_t *code_end, size_t *text_off)
{
	size_t i, k, d;

	for (i = 0; r[i] != '\0'; i++)
		if ((unsigned char)r[i] < 0x20 || (unsigned char)r[i] > 0x7e)
			return -1;
	if (r[0] != cls || r[1] < '0' || r[1] > '9' || r[2] < '0' || r[2] > '9'
	    || (r[3] != ' ' && r[3] != '\0'))
		return -1;
	*code_end = 3;
	if (r[3] == ' ' && r[4] == cls && r[5] == '.') {
		for (k = 6, d = 0; r[k] >= '0' && r[k] <= '9'; k++, d++)
			;
		if (d >= 1 && d <= 3 && r[k] == '.') {
			for (k++, d = 0; r[k] >= '0' && r[k] <= '9'; k++, d++)
				;
			if (d >= 1 && d <= 3 && (r[k] == ' ' || r[k] == '\0'))
				*code_end = k;
		}
	}
	for (i = *code_end; r[i] == ' '; i++)
		;
	*text_off = i;
	return 0;
}

void policy_reply(const struct config *cfg, enum mw_action a, const char *text,
                  char *out, size_t outsz)
{
	const char *conf = NULL;
	size_t code_end, text_off;
	char cls;

	if (outsz == 0)
		return;
	out[0] = '\0';
	switch (a) {
	case MW_QUARANTINE:
		conf = cfg->quarantine_reply;
		cls = '2';
		break;
	case MW_DISCARD:
		conf = cfg->discard_reply;
		cls = '2';
		break;
	case MW_TEMPFAIL:
		conf = cfg->tempfail_reply;
		cls = '4';
		break;
	case MW_REJECT:
		conf = cfg->reject_reply;
		cls = '5';
		break;
	default:
		return;
	}
	/* a verdict's text that carries its own code of the action's class
	 * ("554 5.7.1 Virus found: X" for a reject) is the whole reply */
	if (text != NULL && policy_text_ok(text)
	    && split_reply(text, cls, &code_end, &text_off) == 0 && text[text_off] != '\0'
	    && code_end > 3) {
		snprintf(out, outsz, "%s", text);
		return;
	}
	if (split_reply(conf, cls, &code_end, &text_off) < 0) {
		conf = default_reply[a];
		(void)split_reply(conf, cls, &code_end, &text_off);
	}
	if ((text == NULL || !policy_text_ok(text)) && conf[text_off] == '\0') {
		/* a bare code: the default text */
		size_t dc, dt;

		(void)split_reply(default_reply[a], cls, &dc, &dt);
		text = default_reply[a] + dt;
	}
	if (text != NULL && policy_text_ok(text))
		snprintf(out, outsz, "%.*s %s", (int)code_end, conf, text);
	else
		snprintf(out, outsz, "%s", conf);
}

/* edit_push - append an edit; name and value are copied. */
static void edit_push(struct header_edit **v, size_t *n, enum header_edit_op op,
                      const char *name, const char *value)
{
	struct header_edit *e;

	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	e = &(*v)[(*n)++];
	e->op = op;
	e->name = xstrdup(name);
	e->value = value != NULL ? xstrdup(value) : NULL;
}

static int sym_cmp(const void *a, const void *b)
{
	const struct scan_symbol *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* spam_status - "Yes, score=7.3 required=5.0 tests=A,B" with the tests
 * sorted and the field folded (CRLF TAB) after a comma past STATUS_FOLD. */
static char *spam_status(const struct scan_result *res, int spam)
{
	const struct scan_symbol **v;
	struct sbuf b;
	size_t i, col, before;

	sbuf_init(&b, 1024 * 1024);
	sbuf_addf(&b, "%s, score=%.1f required=%.1f tests=", spam ? "Yes" : "No",
	    res->score, res->required);
	if (res->nsymbols == 0) {
		sbuf_adds(&b, "none");
		return sbuf_steal(&b);
	}
	v = xcalloc(res->nsymbols, sizeof(*v));
	for (i = 0; i < res->nsymbols; i++)
		v[i] = &res->symbols[i];
	qsort(v, res->nsymbols, sizeof(*v), sym_cmp);
	col = sizeof(POLICY_HDR_STATUS ": ") - 1 + b.len;
	before = 0;
	for (i = 0; i < res->nsymbols; i++) {
		size_t w = strlen(v[i]->name) + (i + 1 < res->nsymbols);

		if (before > 0 && col + w > STATUS_FOLD) {
			sbuf_adds(&b, "\r\n\t");
			col = 8;
			before = 0;
		}
		sbuf_adds(&b, v[i]->name);
		if (i + 1 < res->nsymbols)
			sbuf_addc(&b, ',');
		col += w;
		before++;
	}
	free(v);
	return sbuf_steal(&b);
}

/* threshold - the action the score alone earns. */
static enum mw_action by_score(const struct policy_cfg *pc, double score)
{
	if (pc->reject_score != 0 && score >= pc->reject_score)
		return MW_REJECT;
	if (pc->quarantine_score != 0 && score >= pc->quarantine_score)
		return MW_QUARANTINE;
	if (pc->tag_score != 0 && score >= pc->tag_score)
		return MW_TAG;
	return MW_ACCEPT;
}

static double required_of(const struct policy_cfg *pc)
{
	double t[3] = { pc->tag_score, pc->quarantine_score, pc->reject_score }, r = 0;
	int i;

	if (pc->tag_score != 0)
		return pc->tag_score;
	for (i = 0; i < 3; i++)
		if (t[i] != 0 && (r == 0 || t[i] < r))
			r = t[i];
	return r;
}

static void subject_edit(const struct config *cfg, const struct policy_in *in,
                         struct header_edit **v, size_t *n)
{
	const char *s = in->subject;
	size_t len = in->subject_len;
	char *value;

	if (s == NULL) {
		edit_push(v, n, HE_ADD, "Subject", cfg->subject_tag);
		return;
	}
	/* drop the leading whitespace (and a fold right after the colon) */
	while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
		s++;
		len--;
	}
	if (len > SUBJECT_TAG_MAX)
		return;
	/* the tag on the first line would take a line of up to 998 octets
	 * past RFC 5322's limit, and the next hop refuses the message: the
	 * tag then has its line, the value folded after it */
	size_t first = 0, fold;
	while (first < len && s[first] != '\r' && s[first] != '\n')
		first++;
	fold = len > 0 && strlen("Subject: ") + strlen(cfg->subject_tag) + 1 + first > 998;
	value = xmalloc(strlen(cfg->subject_tag) + 3 + len + 1);
	sprintf(value, "%s%s%.*s", cfg->subject_tag, fold ? "\r\n " : len ? " " : "", (int)len, s);
	edit_push(v, n, HE_CHANGE, "Subject", value);
	free(value);
}

void policy_decide(const struct config *cfg, const struct policy_in *in,
                   struct scan_result *res, char *why, size_t whysz)
{
	const struct policy_cfg *pc = in->direction == MW_OUTBOUND ? &cfg->outbound : &cfg->inbound;
	enum mw_action score_action = by_score(pc, res->score), a;
	struct header_edit *v = NULL;
	size_t n = 0, i;
	int add_status, tagged;
	char num[32], *status;

	a = (unsigned)in->hard < MW_ACTION_COUNT && in->hard > score_action ? in->hard : score_action;
	res->action = a;
	res->required = required_of(pc);
	policy_reply(cfg, a, a == in->hard ? in->hard_text : NULL, res->reply, sizeof(res->reply));

	if (why != NULL && whysz > 0) {
		if (a == MW_ACCEPT)
			snprintf(why, whysz, "score %.2f below thresholds", res->score);
		else if (a == in->hard && a != score_action)
			snprintf(why, whysz, "%s verdict of filter %s", mw_action_name(a),
			    in->hard_by ? in->hard_by : "?");
		else
			snprintf(why, whysz, "score %.2f reached the %s threshold", res->score,
			    mw_action_name(a));
	}

	/* removals first, then what the filters asked for, then our fields */
	/* every X-Spam-* field of the sender's (X-Spam-Level, -Checker-Version
	 * too), not only the three we write: downstream rules must only ever
	 * see ours */
	edit_push(&v, &n, HE_REMOVE_PREFIX, POLICY_HDR_PREFIX, NULL);
	v = xrealloc(v, (n + res->nedits) * sizeof(*v));
	for (i = 0; i < res->nedits; i++)
		v[n++] = res->edits[i];
	free(res->edits);
	res->edits = NULL;
	res->nedits = 0;

	/* a quarantined message is held, in the MTA's queue or in our store,
	 * and leaves as a tagged one once released: the admin's release does
	 * not change its score, and the recipient's rules must see it (flag
	 * YES, Subject tag) as they would a tagged message, not a forged
	 * "X-Spam-Status: No".  Until session 18 a message stored in our
	 * quarantine got none of these and left with the sender's fields. */
	tagged = a == MW_TAG || a == MW_QUARANTINE;
	add_status = tagged || (a == MW_ACCEPT && cfg->spam_headers == SPAM_HEADERS_ALWAYS);
	if (add_status) {
		if (tagged)
			edit_push(&v, &n, HE_ADD, POLICY_HDR_FLAG, "YES");
		snprintf(num, sizeof(num), "%.1f", res->score);
		edit_push(&v, &n, HE_ADD, POLICY_HDR_SCORE, num);
		status = spam_status(res, tagged);
		edit_push(&v, &n, HE_ADD, POLICY_HDR_STATUS, status);
		free(status);
	}
	if (tagged && cfg->subject_tag[0] != '\0')
		subject_edit(cfg, in, &v, &n);
	res->edits = v;
	res->nedits = n;
}
