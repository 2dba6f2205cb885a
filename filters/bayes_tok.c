/* bayes_tok.c - the Bayes tokenizer: what of a message counts as
 * evidence.  In the spirit of SpamAssassin's and bogofilter's tokenizers:
 *   - text of the decoded text parts (HTML as rendered text): words of 3
 *     to 15 bytes, lower-cased ASCII, and each pair of neighbouring words;
 *     longer words become "sk:" + their first 7 bytes (random strings
 *     otherwise make every message unique); an all-capitals word of 4 or
 *     more bytes gives a second token as written ("FREE" is not "free");
 *   - header fields: the words of each field, prefixed by the field name
 *     (so "free" in a Subject is not "free" in a Received line; the
 *     Subject's words and word pairs under "S" only); fields
 *     written by filters (X-Spam-*, our own) are skipped, as are those
 *     that only identify one message (Date, Message-ID) and a mailing
 *     list's boilerplate (List-Subscribe/-Post/..., Sender, Errors-To,
 *     Precedence: the same in every message of every list, spam relayed
 *     through a list included; List-Id is kept); words of a header field
 *     are kept whole up to HDR_WORD_MAX bytes (addresses, host names);
 *   - attachments: their content type and filename extension.
 * Tokens are 64-bit FNV-1a hashes of prefix + word; a message keeps each
 * distinct token once (Bayes counts messages, not occurrences).
 *
 *   - URIs: the host of each URI (and its parent domains), from the
 *     shared MIME parse.
 * Bounded: at most TEXT_MAX bytes of text and 4 x BAYES_MAX_TOKENS tokens
 * per message (bayes_tokens_keep then keeps BAYES_MAX_TOKENS).  A message without any MIME part (broken structure) gets its
 * raw body read instead, skipping lines that look base64-encoded.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/bayes.h"
#include "filters/mime.h"
#include "proxy/sbuf.h"

#define TEXT_MAX   (512 * 1024)     /* text bytes tokenized per message */
#define WORD_MIN   3
#define WORD_MAX   15
#define HDR_WORD_MAX 48             /* header words kept whole up to this */
#define CAPS_MIN   4                /* shortest all-capitals word kept as written */

struct tok {
	struct bayes_tokens *out;
	size_t   text;                  /* text bytes seen */
	char     prev[WORD_MAX + 8];    /* previous word, for pairs; "" = none */
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void push(struct tok *t, uint64_t h)
{
	struct bayes_tokens *o = t->out;

	if (o->n >= BAYES_MAX_TOKENS * 4)    /* before dedup; bounded anyway */
		return;
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 1024;
		o->h = xrealloc(o->h, o->cap * sizeof(*o->h));
	}
	o->h[o->n++] = h;
}

static void token(struct tok *t, const char *prefix, const char *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = fnv(h, prefix, strlen(prefix));
	h = fnv(h, "\x01", 1);
	push(t, fnv(h, w, n));
}

static int word_byte(unsigned char c)
{
	return isalnum(c) || c >= 0x80 || c == '\'' || c == '-' || c == '.' || c == '_'
	    || c == '$' || c == '@' || c == '!' || c == '%';
}

/* all_caps - no lower-case ASCII letter and at least one upper-case one */
static int all_caps(const char *s, size_t n)
{
	int upper = 0;

	for (size_t i = 0; i < n; i++) {
		if (islower((unsigned char)s[i]))
			return 0;
		upper |= isupper((unsigned char)s[i]) != 0;
	}
	return upper;
}

/* words - every word of s[0..n) as a token with prefix; pairs of
 * neighbours too when pairs is set */
static void words(struct tok *t, const char *prefix, const char *s, size_t n, int pairs)
{
	size_t i = 0;

	t->prev[0] = '\0';
	while (i < n) {
		char w[HDR_WORD_MAX + 1];
		size_t st, len, k;

		while (i < n && !word_byte((unsigned char)s[i]))
			i++;
		st = i;
		while (i < n && word_byte((unsigned char)s[i]))
			i++;
		/* trim punctuation at the ends ("end." "--" "'quoted'") */
		len = i - st;
		while (len > 0 && strchr(".-'_!", s[st]) != NULL) {
			st++;
			len--;
		}
		while (len > 0 && strchr(".-'_", s[st + len - 1]) != NULL)
			len--;
		if (len < WORD_MIN)
			continue;
		if (len > WORD_MAX && prefix[0] == 'H' && len <= HDR_WORD_MAX) {
			/* in a header field a long word is an address or a host
			 * name: the sender's identity, kept whole (as "sk:" its
			 * first 7 bytes would be shared by unrelated senders) */
			for (k = 0; k < len; k++)
				w[k] = (char)tolower((unsigned char)s[st + k]);
			token(t, prefix, w, len);
			continue;
		}
		if (len > WORD_MAX) {
			/* a long word: "sk:" + its start, as SpamAssassin does */
			char sk[16];

			for (k = 0; k < 7; k++)
				sk[k] = (char)tolower((unsigned char)s[st + k]);
			sk[7] = '\0';
			token(t, "sk", sk, 7);
			t->prev[0] = '\0';
			continue;
		}
		if (prefix[0] == '\0' && len >= CAPS_MIN && all_caps(s + st, len)) {
			/* shouting ("FREE", "ACT NOW") is evidence of its own:
			 * the word as written too, besides its lower case */
			token(t, "C", s + st, len);
		}
		for (k = 0; k < len; k++)
			w[k] = (char)tolower((unsigned char)s[st + k]);
		w[len] = '\0';
		token(t, prefix, w, len);
		if (pairs) {
			if (t->prev[0] != '\0') {
				char pair[2 * (WORD_MAX + 8)];
				int pn = snprintf(pair, sizeof(pair), "%s %s", t->prev, w);

				token(t, "P", pair, (size_t)pn);
			}
			memcpy(t->prev, w, len + 1);
		}
	}
}

static void text(struct tok *t, const char *s, size_t n)
{
	if (t->text >= TEXT_MAX)
		return;
	if (n > TEXT_MAX - t->text)
		n = TEXT_MAX - t->text;
	t->text += n;
	words(t, "", s, n, 1);
}

/* looks_base64 - a long line of base64 characters only */
static int looks_base64(const char *s, size_t n)
{
	if (n < 40)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
			return 0;
	return 1;
}

static void raw_body(struct tok *t, const struct msgscan *ms)
{
	const char *p = (const char *)ms->msg + ms->body_off;
	const char *end = (const char *)ms->msg + ms->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (!looks_base64(p, n > 0 && p[n - 1] == '\r' ? n - 1 : n))
			text(t, p, n);
		p += n + 1;
	}
}

/* uri_host - "U" tokens of a URI's host and each parent domain */
static void uri_host(struct tok *t, const char *uri)
{
	const char *p = strstr(uri, "://"), *h;
	char host[256];
	size_t n, k;

	p = p ? p + 3 : uri;
	h = p;
	n = strcspn(h, "/?#:@ \t");
	if (h[n] == '@') {                    /* user@host */
		h += n + 1;
		n = strcspn(h, "/?#: \t");
	}
	if (n == 0 || n >= sizeof(host))
		return;
	for (k = 0; k < n; k++)
		host[k] = (char)tolower((unsigned char)h[k]);
	host[n] = '\0';
	for (const char *d = host; d != NULL; d = strchr(d, '.')) {
		if (*d == '.')
			d++;
		if (strchr(d, '.') == NULL)        /* the TLD alone says little */
			break;
		token(t, "U", d, strlen(d));
	}
}

/* skip_field - fields that are not evidence: written by filters (ours or
 * others'), or unique to each message */
static int skip_field(const char *name)
{
	static const char *const skip[] = {
		"date", "message-id", "x-spam-", "x-mailwarden", "x-bogosity", "x-dspam-",
		"x-crm114-", "x-virus-", "x-amavis", "x-quarantine-", "delivered-to",
		"content-length", "lines", "x-uid", "status", "x-status", "x-keywords",
		"list-subscribe", "list-unsubscribe", "list-post", "list-help", "list-archive",
		"x-mailman-", "x-beenthere", "errors-to", "sender", "precedence",
		NULL
	};
	for (size_t i = 0; skip[i] != NULL; i++) {
		size_t n = strlen(skip[i]);

		if (skip[i][n - 1] == '-' ? strncasecmp(name, skip[i], n) == 0
		                          : strcasecmp(name, skip[i]) == 0)
			return 1;
	}
	return 0;
}

static void headers(struct tok *t, const struct msgscan *ms)
{
	for (size_t i = 0; i < ms->nfields; i++) {
		const struct msg_field *f = &ms->fields[i];
		char prefix[40];
		size_t k;

		if (skip_field(f->name))
			continue;
		snprintf(prefix, sizeof(prefix), "H%.36s", f->name);
		for (k = 1; prefix[k]; k++)
			prefix[k] = (char)tolower((unsigned char)prefix[k]);
		if (strcasecmp(f->name, "Subject") == 0)
			words(t, "S", f->value, strnlen(f->value, 4096), 1);
		else
			words(t, prefix, f->value, strnlen(f->value, 4096), 0);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void bayes_tokenize(struct mw_ctx *ctx, struct bayes_tokens *out)
{
	const struct msgscan *ms = ctx->ms;
	struct tok t;
	size_t i, k;

	out->n = 0;
	memset(&t, 0, sizeof(t));
	t.out = out;
	headers(&t, ms);
	{
		const struct mime_msg *m = mime_get(ctx);

		for (i = 0; i < m->nparts; i++) {
			const struct mime_part *p = &m->parts[i];

			if (p->is_html && p->rendered != NULL)
				text(&t, p->rendered, p->rendered_len);
			else if (p->is_text)
				text(&t, (const char *)p->data, p->len);
			else {
				token(&t, "A", p->content_type, strlen(p->content_type));
				if (p->filename != NULL) {
					const char *dot = strrchr(p->filename, '.');

					if (dot != NULL && strlen(dot) <= 10)
						words(&t, "AE", dot, strlen(dot), 0);
				}
			}
		}
		for (i = 0; i < m->nuris; i++)
			uri_host(&t, m->uris[i]);
		if (m->parse_error)
			token(&t, "M", "parse-error", 11);
		if (m->nparts == 0)
			raw_body(&t, ms);
	}

	/* a message may give no token at all, and out->h is then NULL:
	 * qsort's array must not be NULL even for 0 elements (UBSan;
	 * found by fuzz_bayes) */
	if (out->n > 0)
		qsort(out->h, out->n, sizeof(*out->h), cmp_u64);
	for (i = 0, k = 0; i < out->n; i++)
		if (k == 0 || out->h[k - 1] != out->h[i])
			out->h[k++] = out->h[i];
	/* no cut here: which are kept is the store's choice (bayes_sample.c);
	 * the lowest hashes, kept until session 21, were the sender's */
	out->n = k;
}

void bayes_tokens_free(struct bayes_tokens *t)
{
	free(t->h);
	memset(t, 0, sizeof(*t));
}

/* msg_id - the Message-ID that names the message, or NULL: one shorter
 * than 5 bytes ("<>", "<x>") names too many */
static const char *msg_id(const struct msgscan *ms)
{
	for (size_t i = 0; i < ms->nfields; i++)
		if (strcasecmp(ms->fields[i].name, "Message-ID") == 0)
			return strlen(ms->fields[i].value) > 4 ? ms->fields[i].value : NULL;
	return NULL;
}

int bayes_msg_key(struct mw_ctx *ctx, char *out, size_t outsz)
{
	const struct msgscan *ms = ctx->ms;
	const char *mid = msg_id(ms);
	const void *f[2];
	size_t len[2];

	if (mid != NULL) {
		f[0] = "mid", f[1] = mid;
		len[1] = strlen(mid);
	} else {
		f[0] = "msg", f[1] = ms->msg;
		len[1] = ms->len;
	}
	len[0] = 3;
	return store_key_hash_bytes("bayes:seen:", f, len, 2, out, outsz);
}

void bayes_msg_key_legacy(struct mw_ctx *ctx, char *out, size_t outsz)
{
	const struct msgscan *ms = ctx->ms;
	const char *mid = msg_id(ms);
	uint64_t h = 0xcbf29ce484222325ULL;

	if (mid != NULL)
		h = fnv(fnv(h, "mid", 3), mid, strlen(mid));
	else
		h = fnv(fnv(h, "msg", 3), ms->msg, ms->len);
	snprintf(out, outsz, "bayes:seen:%016llx", (unsigned long long)h);
}
