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

static int name_matches(const char *field, const char *pattern)
{
	size_t n = strlen(pattern);

	if (n > 0 && pattern[n - 1] == '*')
		return strncasecmp(field, pattern, n - 1) == 0;
	return strcasecmp(field, pattern) == 0;
}

struct deletion {
	const char *name;
	unsigned index;    /* 1-based among fields of that name */
};

static int by_index_desc(const void *a, const void *b)
{
	const struct deletion *x = a, *y = b;

	return x->index < y->index ? 1 : x->index > y->index ? -1 : 0;
}

/* nth_of - how many fields before position i have the same name as i, + 1 */
static unsigned nth_of(const struct milter_fields *f, size_t i)
{
	unsigned n = 1;
	size_t k;

	for (k = 0; k < i; k++)
		if (strcasecmp(f->names[k], f->names[i]) == 0)
			n++;
	return n;
}

static void delete_field(SMFICTX *ctx, const char *name, unsigned index)
{
	if (smfi_chgheader(ctx, (char *)name, (int)index, NULL) != MI_SUCCESS)
		slog(NULL, LOG_WARNING, "milter: cannot delete header %s", name);
}

/* apply_edits - deletions first (the indexes refer to the message as
 * received: an inserted field of the same name would shift them), then
 * changes, then the added fields on top. */
static void apply_edits(SMFICTX *ctx, const struct scan_result *res,
                        const struct milter_fields *fields, int leadspc)
{
	struct deletion *del = NULL;
	size_t ndel = 0, i, k;
	int at = 0;

	for (i = 0; i < res->nedits; i++) {
		const struct header_edit *e = &res->edits[i];

		if (e->op == HE_REMOVE) {
			for (k = 0; k < fields->count; k++)
				if (name_matches(fields->names[k], e->name)) {
					del = xrealloc(del, (ndel + 1) * sizeof(*del));
					del[ndel].name = fields->names[k];
					del[ndel++].index = nth_of(fields, k);
				}
		} else if (e->op == HE_REMOVE_AT) {
			del = xrealloc(del, (ndel + 1) * sizeof(*del));
			del[ndel].name = e->name;
			del[ndel++].index = e->index + 1;
		}
	}
	if (ndel > 1)   /* qsort(NULL, 0, ...) is undefined (its pointer is nonnull) */
		qsort(del, ndel, sizeof(*del), by_index_desc);
	for (i = 0; i < ndel; i++) {
		for (k = 0; k < i; k++)     /* the same field asked twice */
			if (del[k].index == del[i].index && strcasecmp(del[k].name, del[i].name) == 0)
				break;
		if (k == i)
			delete_field(ctx, del[i].name, del[i].index);
	}
	free(del);

	for (i = 0; i < res->nedits; i++) {
		const struct header_edit *e = &res->edits[i];
		char *v;

		if (e->op == HE_CHANGE) {
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

sfsistat milter_apply(SMFICTX *ctx, const struct config *cfg, const struct scan_result *res,
                      const struct milter_fields *fields, int leadspc, const char **what)
{
	*what = mw_action_name(res->action);
	switch (res->action) {
	case MW_ACCEPT:
	case MW_TAG:
		if (res->new_body && replace_body(ctx, res) < 0) {
			/* the original must not go on in its place */
			slog(NULL, LOG_ERR, "milter: cannot replace the body (the MTA must allow "
			    "SMFIF_CHGBODY): tempfail");
			*what = "tempfail";
			milter_reply(ctx, "451 4.3.0 Error: cannot deliver the filtered message, try again later");
			return SMFIS_TEMPFAIL;
		}
		apply_edits(ctx, res, fields, leadspc);
		return SMFIS_CONTINUE;
	case MW_QUARANTINE:
		if (cfg->milter_quarantine == MILTER_QUARANTINE_MTA) {
			char reason[128];

			/* held in the MTA's queue, with our verdict on it */
			apply_edits(ctx, res, fields, leadspc);
			snprintf(reason, sizeof(reason), "mailwarden: score %.2f", res->score);
			if (smfi_quarantine(ctx, reason) != MI_SUCCESS)
				slog(NULL, LOG_WARNING, "milter: smfi_quarantine failed");
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
