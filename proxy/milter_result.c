/* milter_result.c - see milter_result.h.
 *
 * The proxy writes the header section itself (header_edit.c: added fields
 * on top in edit order, removals, changes); here the same edits become
 * milter requests with the same outcome: added fields are inserted at
 * index 0, 1, 2 ... (on top, in order, as a DKIM signer computed them),
 * and deletions run from the highest index down, because the MTA numbers
 * the remaining fields of a name again after each deletion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "milter_result.h"
#include "sbuf.h"

static const char R_NO_BODY[] = "451 4.3.0 Error: cannot deliver the filtered message, try again later";
static const char R_NOT_HELD[] = "451 4.3.0 Error: cannot hold the message, try again later";
static const char R_TOO_MANY_DELETIONS[] =
    "554 5.6.0 Error: too many spam-filter header fields in the message";

int milter_reply(SMFICTX *ctx, const char *reply)
{
	char code[4], xcode[16] = "", *text;
	const char *p = reply;
	char buf[600];
	size_t n;

	if (strlen(reply) < 3)
		return -1;
	memcpy(code, p, 3);
	code[3] = '\0';
	p += 3;
	while (*p == ' ' || *p == '-')
		p++;
	n = strspn(p, "0123456789.");
	if (n > 0 && n < sizeof(xcode) && p[n] == ' ' && (p[0] == '2' || p[0] == '4' || p[0] == '5')) {
		memcpy(xcode, p, n);
		xcode[n] = '\0';
		p += n + 1;
	}
	/* libmilter (and sendmail) treat '%' in the text as a format character */
	for (n = 0; *p != '\0' && n + 2 < sizeof(buf); p++) {
		if (*p == '%')
			buf[n++] = '%';
		buf[n++] = *p;
	}
	buf[n] = '\0';
	text = buf;
	return smfi_setreply(ctx, code, xcode[0] ? xcode : NULL, text) == MI_SUCCESS ? 0 : -1;
}

/* milter_value - a value as the MTA wants it: CRLF folding becomes LF
 * (libmilter's peers use bare LF inside values), and the leading space
 * when the MTA keeps leading space as sent. */
static char *milter_value(const char *v, int leadspc)
{
	struct sbuf b;

	sbuf_init(&b, (size_t)-1);
	if (leadspc)
		sbuf_add(&b, " ", 1);
	for (; *v != '\0'; v++)
		if (!(v[0] == '\r' && v[1] == '\n'))
			sbuf_add(&b, v, 1);
	sbuf_add(&b, "", 1);
	return b.data;
}

/* name_matches - field is removed by e (HE_REMOVE: that name exactly,
 * HE_REMOVE_PREFIX: a name starting so) */
static int name_matches(const char *field, const struct header_edit *e)
{
	if (e->op == HE_REMOVE_PREFIX)
		return strncasecmp(field, e->name, strlen(e->name)) == 0;
	return strcasecmp(field, e->name) == 0;
}

struct deletion {
	const char *name;
	size_t      pos;      /* among all fields, for the order of a name's fields */
	unsigned    index;    /* 1-based among fields of that name */
};

/* by_name_pos - a name's fields together (any case), in message order */
static int by_name_pos(const void *a, const void *b)
{
	const struct deletion *x = a, *y = b;
	int c = strcasecmp(x->name, y->name);

	return c != 0 ? c : x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int by_name_index(const void *a, const void *b)
{
	const struct deletion *x = a, *y = b;
	int c = strcasecmp(x->name, y->name);

	return c != 0 ? c : x->index < y->index ? -1 : x->index > y->index;
}

static int by_index_desc(const void *a, const void *b)
{
	const struct deletion *x = a, *y = b;

	return x->index < y->index ? 1 : x->index > y->index ? -1 : 0;
}

static void delete_field(SMFICTX *ctx, const char *name, unsigned index)
{
	if (smfi_chgheader(ctx, (char *)name, (int)index, NULL) != MI_SUCCESS)
		slog(NULL, LOG_WARNING, "milter: cannot delete header %s", name);
}

/* deletions - the fields the edits remove, each once, as (name, index
 * among that name's fields), highest index first.  A field a pattern
 * matches has every field of its name matched too, so its index is its
 * rank among the matched fields of its name: one sort, not a count over
 * the fields before each (quadratic in a header of thousands of X-Spam-*
 * fields).  Returns the count; *out is malloc'ed (or NULL). */
static size_t deletions(const struct scan_result *res, const struct milter_fields *fields,
                        struct deletion **out)
{
	struct deletion *del = xmalloc((fields->count + res->nedits + 1) * sizeof(*del));
	size_t *pat = xmalloc((res->nedits + 1) * sizeof(*pat)), npat = 0, ndel = 0, i, k, w;

	/* the patterns (a few: the policy's X-Spam-*), then each field against
	 * them: not every field against every edit, of which the forged
	 * Authentication-Results' removals can be a thousand */
	for (i = 0; i < res->nedits; i++)
		if (res->edits[i].op == HE_REMOVE || res->edits[i].op == HE_REMOVE_PREFIX)
			pat[npat++] = i;
	for (k = 0; k < fields->count; k++)
		for (i = 0; i < npat; i++)
			if (name_matches(fields->names[k], &res->edits[pat[i]])) {
				del[ndel++] = (struct deletion){ fields->names[k], k, 0 };
				break;
			}
	free(pat);
	if (ndel > 1)   /* qsort(NULL, 0, ...) is undefined (its pointer is nonnull) */
		qsort(del, ndel, sizeof(*del), by_name_pos);
	for (i = 0; i < ndel; i++)
		del[i].index = i > 0 && strcasecmp(del[i - 1].name, del[i].name) == 0 ? del[i - 1].index + 1 : 1;
	for (i = 0; i < res->nedits; i++)
		if (res->edits[i].op == HE_REMOVE_AT)
			del[ndel++] = (struct deletion){ res->edits[i].name, 0, res->edits[i].index + 1 };
	if (ndel > 1) {
		/* the same field asked twice (a pattern and an index) goes once */
		qsort(del, ndel, sizeof(*del), by_name_index);
		for (i = 1, w = 1; i < ndel; i++)
			if (del[i].index != del[w - 1].index || strcasecmp(del[i].name, del[w - 1].name) != 0)
				del[w++] = del[i];
		ndel = w;
		qsort(del, ndel, sizeof(*del), by_index_desc);
	}
	*out = del;
	return ndel;
}

/* left_after - fields named name that the deletions leave (a deletion
 * past the last field of its name removes nothing) */
static size_t left_after(const struct milter_fields *fields, const struct deletion *del,
                         size_t ndel, const char *name)
{
	size_t have = 0, gone = 0, i;

	for (i = 0; i < fields->count; i++)
		have += strcasecmp(fields->names[i], name) == 0;
	for (i = 0; i < ndel; i++)
		gone += strcasecmp(del[i].name, name) == 0 && del[i].index <= have;
	return have > gone ? have - gone : 0;
}

/* apply_edits - deletions first (the indexes refer to the message as
 * received: an inserted field of the same name would shift them), then
 * changes, then the added fields on top.  A change of a name no field
 * has (left) is not sent: smfi_chgheader of a field that is not there
 * adds it (Sendmail, and Postfix's cleanup after it), while the proxy,
 * `scan --output` and a release change only a field there is
 * (mw_header_change, filter.h). */
static void apply_edits(SMFICTX *ctx, const struct scan_result *res, const struct milter_fields *fields,
                        const struct deletion *del, size_t ndel, int leadspc)
{
	size_t i;
	int at = 0;

	for (i = 0; i < ndel; i++)
		delete_field(ctx, del[i].name, del[i].index);

	for (i = 0; i < res->nedits; i++) {
		const struct header_edit *e = &res->edits[i];
		char *v;

		if (e->op == HE_CHANGE && left_after(fields, del, ndel, e->name) > 0) {
			v = milter_value(e->value, leadspc);
			if (smfi_chgheader(ctx, e->name, 1, v) != MI_SUCCESS)
				slog(NULL, LOG_WARNING, "milter: cannot change header %s", e->name);
			free(v);
		}
	}
	for (i = 0; i < res->nedits; i++) {
		const struct header_edit *e = &res->edits[i];
		char *v;

		if (e->op == HE_ADD) {
			v = milter_value(e->value, leadspc);
			if (smfi_insheader(ctx, at++, e->name, v) != MI_SUCCESS)
				slog(NULL, LOG_WARNING, "milter: cannot insert header %s", e->name);
			free(v);
		}
	}
}

/* replace_body - the body the scanner rewrote, to the MTA (its fd holds
 * the empty line, then the body: the MTA gets the body).  0 / -1 */
static int replace_body(SMFICTX *ctx, const struct scan_result *res)
{
	unsigned char buf[65536];
	off_t off = 2;          /* past the empty line */
	ssize_t n;

	if (res->new_body_fd < 0 || pread(res->new_body_fd, buf, 2, 0) != 2 || memcmp(buf, "\r\n", 2) != 0)
		return -1;
	while ((n = pread(res->new_body_fd, buf, sizeof(buf), off)) > 0) {
		if (smfi_replacebody(ctx, buf, (int)n) != MI_SUCCESS)
			return -1;
		off += n;
	}
	/* nothing sent would leave the MTA's body (the banned file) as it is */
	return n < 0 || off == 2 ? -1 : 0;
}

/* edits - the deletions, then apply_edits; -1 (nothing sent) when there
 * are more than MILTER_MAX_DELETIONS: each is a request of its own, which
 * Postfix's cleanup serves by a walk over the header from its start (2,000
 * deletions 0.26 s of its time, 9,000 4.1 s: a 130 KB message could buy
 * seconds of MTA time, again and again), and no mail program writes more
 * than a few dozen X-Spam-* fields */
static int too_many(size_t ndel)
{
	if (ndel <= MILTER_MAX_DELETIONS)
		return 0;
	slog(NULL, LOG_WARNING, "milter: refused: %zu header fields to remove (X-Spam-* and the "
	    "like, forged), more than %d", ndel, MILTER_MAX_DELETIONS);
	return 1;
}

static sfsistat refuse_edits(SMFICTX *ctx, const char **what, const char **reply)
{
	*what = "reject";
	*reply = R_TOO_MANY_DELETIONS;
	milter_reply(ctx, R_TOO_MANY_DELETIONS);
	return SMFIS_REJECT;
}

static sfsistat apply(SMFICTX *ctx, const struct config *cfg, const struct scan_result *res,
                      const struct milter_fields *fields, const struct deletion *del, size_t ndel,
                      int leadspc, const char **what, const char **reply);

sfsistat milter_apply(SMFICTX *ctx, const struct config *cfg, const struct scan_result *res,
                      const struct milter_fields *fields, int leadspc, const char **what,
                      const char **reply)
{
	struct deletion *del = NULL;
	size_t ndel = 0;
	sfsistat rc;

	*what = mw_action_name(res->action);
	*reply = res->reply;
	/* the header edits are counted before anything reaches the MTA (the
	 * body replaced, then refused, would be sent for nothing) */
	if (res->action == MW_ACCEPT || res->action == MW_TAG ||
	    (res->action == MW_QUARANTINE && cfg->milter_quarantine == MILTER_QUARANTINE_MTA)) {
		ndel = deletions(res, fields, &del);
		if (too_many(ndel)) {
			free(del);
			return refuse_edits(ctx, what, reply);
		}
	}
	rc = apply(ctx, cfg, res, fields, del, ndel, leadspc, what, reply);
	free(del);
	return rc;
}

/* body_and_edits - the body a filter rewrote (the original must not go on
 * in its place: a tempfail when the MTA will not take it), then the
 * header edits; 0, or -1 with the tempfail answered */
static int body_and_edits(SMFICTX *ctx, const struct scan_result *res, const struct milter_fields *fields,
                          const struct deletion *del, size_t ndel, int leadspc, const char **what,
                          const char **reply)
{
	if (res->new_body && replace_body(ctx, res) < 0) {
		slog(NULL, LOG_ERR, "milter: cannot replace the body (the MTA must allow "
		    "SMFIF_CHGBODY): tempfail");
		*what = "tempfail";
		*reply = R_NO_BODY;
		milter_reply(ctx, R_NO_BODY);
		return -1;
	}
	apply_edits(ctx, res, fields, del, ndel, leadspc);
	return 0;
}

/* apply - milter_apply's action, its edits counted (del) */
static sfsistat apply(SMFICTX *ctx, const struct config *cfg, const struct scan_result *res,
                      const struct milter_fields *fields, const struct deletion *del, size_t ndel,
                      int leadspc, const char **what, const char **reply)
{
	switch (res->action) {
	case MW_ACCEPT:
	case MW_TAG:
		if (body_and_edits(ctx, res, fields, del, ndel, leadspc, what, reply) < 0)
			return SMFIS_TEMPFAIL;
		return SMFIS_CONTINUE;
	case MW_QUARANTINE:
		if (cfg->milter_quarantine == MILTER_QUARANTINE_MTA) {
			char reason[128];

			/* held in the MTA's queue, with our verdict on it, and
			 * with the body a filter rewrote: the admin's release
			 * (postsuper -H) passes no milter, and until session 18
			 * it delivered the banned file the accept path would
			 * have replaced, under a signature made over it */
			if (body_and_edits(ctx, res, fields, del, ndel, leadspc, what, reply) < 0)
				return SMFIS_TEMPFAIL;
			snprintf(reason, sizeof(reason), "mailwarden: score %.2f", res->score);
			if (smfi_quarantine(ctx, reason) != MI_SUCCESS) {
				/* not held: going on would deliver what the audit
				 * says is quarantined (a virus, say) */
				slog(NULL, LOG_ERR, "milter: smfi_quarantine failed: tempfail");
				*what = "tempfail";
				*reply = R_NOT_HELD;
				milter_reply(ctx, R_NOT_HELD);
				return SMFIS_TEMPFAIL;
			}
			return SMFIS_CONTINUE;
		}
		/* the scanner stored it in mailwarden's quarantine: the MTA drops it */
		return SMFIS_DISCARD;
	case MW_DISCARD:
		return SMFIS_DISCARD;
	case MW_TEMPFAIL:
		if (res->reply[0])
			milter_reply(ctx, res->reply);
		return SMFIS_TEMPFAIL;
	case MW_REJECT:
	default:
		if (res->reply[0])
			milter_reply(ctx, res->reply);
		return SMFIS_REJECT;
	}
}
