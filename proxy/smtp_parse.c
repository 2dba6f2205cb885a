/* smtp_parse.c - pure parsers for the SMTP protocol (RFC 5321, with the
 * SMTPUTF8 extensions of RFC 6531): command verbs, MAIL/RCPT paths and
 * their ESMTP parameters, and server replies.
 *
 * No I/O, no allocation, no locale: character classes are ASCII tables here,
 * so a LANG setting cannot change what the proxy accepts.  Every input is
 * hostile; each loop is bounded by a NUL (command side, where the line
 * reader has already refused NUL bytes) or by an explicit length (reply
 * side).  The grammar follows RFC 5321 section 4.1.2 strictly where the
 * proxy and the upstream could otherwise disagree about what was said
 * (brackets, quoting, control bytes, parameters), and non-ASCII is accepted
 * only as well-formed UTF-8.
 */
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>

#include "proxy/smtp_parse.h"

/* ASCII helpers ------------------------------------------------------------ */

static int is_alpha(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

static int is_ctl(int c)
{
	return (c >= 0 && c < 0x20) || c == 0x7f;
}

static int to_upper(int c)
{
	return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

/* ascii_ncaseeq - the first n bytes of a equal b's, ignoring ASCII case.
 * Stops at a NUL in a, so a may be shorter than n. */
static int ascii_ncaseeq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (a[i] == '\0' || to_upper((unsigned char)a[i]) != to_upper((unsigned char)b[i]))
			return 0;
	}
	return 1;
}

static int ascii_caseeq(const char *a, const char *b)
{
	size_t n = strlen(b);

	return strlen(a) == n && ascii_ncaseeq(a, b, n);
}

/* utf8_len - length (2..4) of one well-formed UTF-8 sequence at p (RFC 3629:
 * no overlongs, no surrogates, nothing past U+10FFFF), or 0.  Never reads
 * past a NUL, since NUL is not a continuation byte. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* Verbs -------------------------------------------------------------------- */

static const char *const verb_names[SMTP_VERB_COUNT] = {
	[SMTP_UNKNOWN] = "UNKNOWN", [SMTP_HELO] = "HELO", [SMTP_EHLO] = "EHLO",
	[SMTP_MAIL] = "MAIL", [SMTP_RCPT] = "RCPT", [SMTP_DATA] = "DATA",
	[SMTP_RSET] = "RSET", [SMTP_NOOP] = "NOOP", [SMTP_QUIT] = "QUIT",
	[SMTP_VRFY] = "VRFY", [SMTP_EXPN] = "EXPN", [SMTP_HELP] = "HELP",
	[SMTP_STARTTLS] = "STARTTLS", [SMTP_AUTH] = "AUTH", [SMTP_BDAT] = "BDAT",
	[SMTP_ETRN] = "ETRN", [SMTP_TURN] = "TURN", [SMTP_XCLIENT] = "XCLIENT",
	[SMTP_XFORWARD] = "XFORWARD",
};

const char *smtp_verb_name(enum smtp_verb v)
{
	if ((int)v < 0 || v >= SMTP_VERB_COUNT || verb_names[v] == NULL)
		return "UNKNOWN";
	return verb_names[v];
}

/* smtp_verb_parse - see smtp_parse.h.  The verb is the run of letters at the
 * start of the line; it must end at a space or the end of the line, so
 * "NOOPX" and "MAILFROM:" are unknown.  On SMTP_UNKNOWN *arg is the line. */
enum smtp_verb smtp_verb_parse(const char *line, const char **arg)
{
	const char *p, *dummy;
	size_t vlen = 0;
	int v;

	if (arg == NULL)
		arg = &dummy;
	if (line == NULL) {
		*arg = "";
		return SMTP_UNKNOWN;
	}
	*arg = line;
	while (vlen < 9 && is_alpha((unsigned char)line[vlen]))
		vlen++;
	if (vlen == 0 || vlen > 8 || (line[vlen] != ' ' && line[vlen] != '\0'))
		return SMTP_UNKNOWN;
	for (v = SMTP_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++)
		if (strlen(verb_names[v]) == vlen && ascii_ncaseeq(line, verb_names[v], vlen))
			break;
	if (v == SMTP_VERB_COUNT)
		return SMTP_UNKNOWN;
	p = line + vlen;
	if (*p == ' ')
		p++;
	if (v == SMTP_MAIL || v == SMTP_RCPT) {
		const char *kw = v == SMTP_MAIL ? "FROM:" : "TO:";
		size_t kl = strlen(kw);

		if (!ascii_ncaseeq(p, kw, kl))
			return SMTP_UNKNOWN;
		p += kl;
		while (*p == ' ')
			p++;
	}
	*arg = p;
	return (enum smtp_verb)v;
}

/* Paths -------------------------------------------------------------------- */

/* A cursor over the NUL-terminated argument; on error 'why' is set once. */
struct pcur {
	const unsigned char *p;
	const char          *why;
};

/* pfail - record why at the current byte: control, space and end of input
 * get their own reason whatever the grammar expected there. */
static int pfail(struct pcur *c, const char *why)
{
	int ch = c->p[0];

	if (c->why != NULL)
		return -1;
	if (ch == '\0')
		c->why = "missing >";
	else if (is_ctl(ch))
		c->why = "control character in path";
	else if (ch == ' ')
		c->why = "space in path";
	else if (ch >= 0x80 && utf8_len(c->p) == 0)
		c->why = "invalid UTF-8 in path";
	else
		c->why = why;
	return -1;
}

/* atext (RFC 5322 3.2.3) plus UTF8-non-ascii (RFC 6531); returns the length
 * of the character at p, 0 if it is not atext */
static size_t atext_len(const unsigned char *p)
{
	if (is_alnum(*p) || (*p != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", *p) != NULL))
		return 1;
	if (*p >= 0x80)
		return utf8_len(p);
	return 0;
}

/* Dot-string = Atom *("."  Atom) */
static int parse_dot_string(struct pcur *c)
{
	size_t n;

	for (;;) {
		if ((n = atext_len(c->p)) == 0)
			return pfail(c, "bad local part");
		while ((n = atext_len(c->p)) != 0)
			c->p += n;
		if (*c->p != '.')
			return 0;
		c->p++;
	}
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE; qtextSMTP is %d32-33 /
 * %d35-91 / %d93-126 / UTF8-non-ascii, quoted-pairSMTP is "\" %d32-126 */
static int parse_quoted(struct pcur *c)
{
	size_t n;

	c->p++;				/* the opening quote */
	for (;;) {
		int ch = *c->p;

		if (ch == '"') {
			c->p++;
			return 0;
		}
		if (ch == '\\') {
			if (c->p[1] < 32 || c->p[1] > 126) {
				c->p++;
				return pfail(c, "bad quoted pair");
			}
			c->p += 2;
		} else if (ch >= 32 && ch <= 126)
			c->p++;
		else if (ch >= 0x80 && (n = utf8_len(c->p)) != 0)
			c->p += n;
		else if (ch == '\0')
			return c->why = "unterminated quoted string", -1;
		else
			return pfail(c, "bad quoted string");
	}
}

/* let_dig - ALPHA / DIGIT, or a UTF-8 character (U-label, RFC 6531);
 * returns its length or 0.  *ascii is cleared for a non-ASCII one. */
static size_t let_dig(const unsigned char *p, int *ascii)
{
	size_t n;

	if (is_alnum(*p))
		return 1;
	if (*p >= 0x80 && (n = utf8_len(p)) != 0) {
		*ascii = 0;
		return n;
	}
	return 0;
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]:
 * letters, digits and inner hyphens.  ASCII labels are held to 63 octets
 * (RFC 1035); the whole name to 255. */
static int parse_domain(struct pcur *c)
{
	const unsigned char *start = c->p, *lab;
	size_t n;
	int ascii;

	for (;;) {
		lab = c->p;
		ascii = 1;
		if ((n = let_dig(c->p, &ascii)) == 0)
			return pfail(c, "bad domain");
		c->p += n;
		for (;;) {
			if ((n = let_dig(c->p, &ascii)) != 0)
				c->p += n;
			else if (*c->p == '-')
				c->p++;
			else
				break;
		}
		if (c->p[-1] == '-') {
			c->p--;
			return pfail(c, "bad domain");
		}
		if (ascii && c->p - lab > 63)
			return c->why = "domain label too long", -1;
		if (c->p - start > 255)
			return c->why = "domain too long", -1;
		if (*c->p != '.')
			return 0;
		c->p++;
	}
}

/* Snum 3("."  Snum), Snum = 1*3DIGIT with a value of 0..255 */
static int ipv4_literal_ok(const char *s, size_t len)
{
	size_t i = 0, d;
	int parts, v;

	for (parts = 0; parts < 4; parts++) {
		if (parts > 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
		for (d = 0, v = 0; d < 3 && i < len && is_digit((unsigned char)s[i]); d++, i++)
			v = v * 10 + (s[i] - '0');
		if (d == 0 || v > 255)
			return 0;
	}
	return i == len;
}

/* address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]".  The IPv6 form is checked by inet_pton,
 * which accepts exactly the RFC 4291 text forms RFC 5321 lists.  RFC 5321's
 * dcontent would let a general literal hold '<', '>', '"' or '@' (as in
 * "<a@[x:>]>"), which an upstream that looks for the first '>' reads
 * differently; no registered tag needs them, so a literal here is letters,
 * digits, '.', ':' and '-' only. */
static int literal_char(int ch)
{
	return is_alnum(ch) || ch == '.' || ch == ':' || ch == '-';
}

static int parse_addr_literal(struct pcur *c)
{
	const unsigned char *s = c->p + 1, *e = s;
	size_t len, i;
	char buf[64];

	while (literal_char(*e))
		e++;
	if (*e != ']') {
		c->p = e;
		return pfail(c, "bad address literal");
	}
	len = (size_t)(e - s);
	if (len == 0)
		return c->why = "bad address literal", -1;
	if (is_digit(*s)) {
		if (!ipv4_literal_ok((const char *)s, len))
			return c->why = "bad address literal", -1;
	} else if (len > 5 && ascii_ncaseeq((const char *)s, "IPv6:", 5)) {
		if (len - 5 >= sizeof buf)
			return c->why = "bad address literal", -1;
		memcpy(buf, s + 5, len - 5);
		buf[len - 5] = '\0';
		if (inet_pton(AF_INET6, buf, &(struct in6_addr){ 0 }) != 1)
			return c->why = "bad address literal", -1;
	} else {
		/* General-address-literal = Standardized-tag ":" 1*dcontent,
		 * Standardized-tag = Ldh-str; we also want it to start with a
		 * letter or digit, as every registered tag does */
		for (i = 0; i < len && (is_alnum(s[i]) || s[i] == '-'); i++)
			;
		if (i == 0 || !is_alnum(s[0]) || i >= len - 1 || s[i] != ':' || s[i - 1] == '-')
			return c->why = "bad address literal", -1;
	}
	c->p = e + 1;
	return 0;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ), or the bare
 * "postmaster" RFC 5321 4.5.1 requires to be accepted in RCPT. */
static int parse_mailbox(struct pcur *c)
{
	const unsigned char *start = c->p;

	if (*c->p == '"') {
		if (parse_quoted(c) < 0)
			return -1;
	} else if (parse_dot_string(c) < 0)
		return -1;
	if (*c->p != '@') {
		if (*c->p == '>' && c->p - start == 10 &&
		    ascii_ncaseeq((const char *)start, "postmaster", 10))
			return 0;
		return pfail(c, "bad local part");
	}
	c->p++;
	if (*c->p == '[')
		return parse_addr_literal(c);
	return parse_domain(c);
}

/* Param value: esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii
 * (RFC 6531 3.4, for ORCPT and ENVID with SMTPUTF8) */
static size_t esmtp_value_len(const unsigned char *p)
{
	if (*p >= 33 && *p <= 126 && *p != '=')
		return 1;
	if (*p >= 0x80)
		return utf8_len(p);
	return 0;
}

/* parse_params - esmtp-param *(SP esmtp-param), one or more spaces between
 * them, trailing spaces tolerated.  Keys are upper-cased; a key given twice
 * is refused, so the proxy and the upstream cannot act on different copies
 * of SIZE or BODY. */
static int parse_params(const unsigned char *p, struct smtp_path_args *out,
    const char **why)
{
	struct smtp_param *prm;
	size_t k, v, n, i;

	for (;;) {
		if (*p == '\0')
			return 0;
		if (*p != ' ')
			return *why = is_ctl(*p) ? "control character after path" :
			    "garbage after path", -1;
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return 0;
		if (!is_alnum(*p))
			return *why = "bad parameter name", -1;
		if (out->nparams >= SMTP_MAX_PARAMS)
			return *why = "too many parameters", -1;
		prm = &out->params[out->nparams];
		for (k = 0; is_alnum(p[k]) || p[k] == '-'; k++) {
			if (k >= sizeof prm->key - 1)
				return *why = "parameter name too long", -1;
			prm->key[k] = (char)to_upper(p[k]);
		}
		prm->key[k] = '\0';
		p += k;
		prm->has_value = 0;
		prm->value[0] = '\0';
		if (*p == '=') {
			p++;
			v = 0;
			while ((n = esmtp_value_len(p)) != 0) {
				if (v + n > sizeof prm->value - 1)
					return *why = "parameter value too long", -1;
				memcpy(prm->value + v, p, n);
				v += n;
				p += n;
			}
			prm->value[v] = '\0';
			if (*p >= 0x80)
				return *why = "invalid UTF-8 in parameter", -1;
			if (v == 0)
				return *why = (*p == ' ' || *p == '\0') ?
				    "empty parameter value" : "bad parameter value", -1;
			prm->has_value = 1;
		}
		if (*p != ' ' && *p != '\0')
			return *why = is_ctl(*p) ? "control character in parameter" :
			    "bad parameter", -1;
		for (i = 0; i < out->nparams; i++)
			if (strcmp(out->params[i].key, prm->key) == 0)
				return *why = "duplicate parameter", -1;
		out->nparams++;
	}
}

/* smtp_path_parse - see smtp_parse.h.  Leading spaces are skipped (the verb
 * parser already did so after "FROM:"; this keeps the function usable on
 * its own).  out is valid only when 0 is returned. */
int smtp_path_parse(const char *arg, struct smtp_path_args *out, const char **why)
{
	struct pcur c = { NULL, NULL };
	const unsigned char *mbox;
	const char *dummy;
	size_t len;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	out->path[0] = '\0';
	out->nparams = 0;
	if (arg == NULL)
		return *why = "missing <", -1;
	c.p = (const unsigned char *)arg;
	while (*c.p == ' ')
		c.p++;
	if (*c.p != '<')
		return *why = is_ctl(*c.p) && *c.p ? "control character in path" :
		    "missing <", -1;
	c.p++;
	if (*c.p == '>') {		/* <> */
		c.p++;
		return parse_params(c.p, out, why);
	}
	if (*c.p == '@') {		/* A-d-l ":" : dropped (RFC 5321 C) */
		for (;;) {
			c.p++;		/* '@' */
			if (parse_domain(&c) < 0)
				goto bad;
			if (*c.p == ':')
				break;
			if (*c.p != ',' || c.p[1] != '@') {
				pfail(&c, "bad source route");
				goto bad;
			}
			c.p++;
		}
		c.p++;
	}
	mbox = c.p;
	if (parse_mailbox(&c) < 0)
		goto bad;
	if (*c.p != '>') {
		pfail(&c, "bad domain");
		goto bad;
	}
	len = (size_t)(c.p - mbox);
	if (len > SMTP_PATH_MAX)
		return *why = "path too long", -1;
	memcpy(out->path, mbox, len);
	out->path[len] = '\0';
	if (parse_params(c.p + 1, out, why) < 0) {
		out->path[0] = '\0';
		return -1;
	}
	return 0;
bad:
	*why = c.why != NULL ? c.why : "bad path";
	return -1;
}

const struct smtp_param *smtp_param_get(const struct smtp_path_args *a, const char *key)
{
	size_t i;

	if (a == NULL || key == NULL)
		return NULL;
	for (i = 0; i < a->nparams && i < SMTP_MAX_PARAMS; i++)
		if (ascii_caseeq(a->params[i].key, key))
			return &a->params[i];
	return NULL;
}

/* smtp_path_domain - see smtp_parse.h */
const char *smtp_path_domain(const char *path)
{
	const char *at = path != NULL ? strrchr(path, '@') : NULL;

	return at != NULL ? at + 1 : NULL;
}

/* Replies ------------------------------------------------------------------ */

static int xtext_decode(const char *p, size_t n, char *out, size_t outmax);

/* dsn_notify_ok - NOTIFY's value: NEVER, or SUCCESS/FAILURE/DELAY each
 * once at most, comma-separated (case-insensitive) */
static int dsn_notify_ok(const char *v, size_t n)
{
	static const char *const kw[] = { "SUCCESS", "FAILURE", "DELAY" };
	unsigned seen = 0;

	if (n == 5 && ascii_ncaseeq(v, "NEVER", 5))
		return 1;
	while (n > 0) {
		size_t k = 0, i;
		while (k < n && v[k] != ',')
			k++;
		for (i = 0; i < 3; i++)
			if (k == strlen(kw[i]) && ascii_ncaseeq(v, kw[i], k))
				break;
		if (i == 3 || (seen & (1u << i)))
			return 0;
		seen |= 1u << i;
		if (k == n)
			return 1;
		v += k + 1;
		n -= k + 1;
		if (n == 0)
			return 0;       /* a trailing comma */
	}
	return 0;
}

/* dsn_orcpt_ok - ORCPT's value: addr-type ";" xtext (RFC 3461 4.2), at
 * most 500 octets */
static int dsn_orcpt_ok(const char *v, size_t n)
{
	char decoded[501];
	size_t i = 0;

	if (n > 500)
		return 0;
	while (i < n && (is_alnum((unsigned char)v[i]) || v[i] == '-'))
		i++;
	if (i == 0 || i >= n || v[i] != ';')
		return 0;
	return xtext_decode(v + i + 1, n - i - 1, decoded, sizeof(decoded) - 1) == 0;
}

size_t smtp_dsn_rcpt_params(const char *in, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return 0;
	out[0] = '\0';
	while (*in) {
		size_t n = strcspn(in, " "), k = strcspn(in, "=");
		int keep = 0;

		if (k < n && k == 6 && ascii_ncaseeq(in, "NOTIFY", 6))
			keep = dsn_notify_ok(in + 7, n - 7);
		else if (k < n && k == 5 && ascii_ncaseeq(in, "ORCPT", 5))
			keep = dsn_orcpt_ok(in + 6, n - 6);
		if (keep) {
			if (o + (o > 0) + n + 1 > outsz) {
				out[0] = '\0';
				return 0;
			}
			if (o > 0)
				out[o++] = ' ';
			memcpy(out + o, in, n);
			o += n;
			out[o] = '\0';
		}
		in += n;
		in += strspn(in, " ");
	}
	return o;
}

int smtp_dsn_rcpt_params_ok(const char *s)
{
	char buf[SMTP_DSN_RCPT_MAX + 1];
	size_t n = strlen(s);

	return n <= SMTP_DSN_RCPT_MAX && smtp_dsn_rcpt_params(s, buf, sizeof(buf)) == n
	    && strcmp(buf, s) == 0;
}

/* reply_done - has the last stored line closed the reply ("NNN " or "NNN")? */
static int reply_done(const struct smtp_reply *r)
{
	size_t start;

	if (r->nlines == 0 || r->len < 5)
		return 0;
	start = r->len - 2;		/* at the CR of the last line */
	while (start > 0 && r->text[start - 1] != '\n')
		start--;
	return r->len - start == 5 || r->text[start + 3] == ' ';
}

/* smtp_reply_line - see smtp_parse.h.  Reply-code = %x32-35 %x30-35 %x30-39
 * (RFC 5321 4.2); text is TAB and %d32-126, and 8-bit bytes some servers
 * send in localized texts; any other control byte, NUL included, makes the
 * reply malformed, since it must never reach a client.  r is left unchanged
 * when -1 is returned. */
int smtp_reply_line(struct smtp_reply *r, const char *line, size_t len)
{
	const unsigned char *u = (const unsigned char *)line;
	size_t i;
	int code;

	if (r == NULL || line == NULL || len < 3)
		return -1;
	if (u[0] < '2' || u[0] > '5' || u[1] < '0' || u[1] > '5' || !is_digit(u[2]))
		return -1;
	if (len > 3 && u[3] != ' ' && u[3] != '-')
		return -1;
	for (i = 4; i < len; i++)
		if (is_ctl(u[i]) && u[i] != '\t')
			return -1;
	code = (u[0] - '0') * 100 + (u[1] - '0') * 10 + (u[2] - '0');
	if (r->len >= sizeof r->text || r->nlines >= SMTP_REPLY_MAX_LINES)
		return -1;
	if (r->nlines > 0 && (code != r->code || reply_done(r)))
		return -1;
	if (len > sizeof r->text - r->len - 3)	/* CRLF and a NUL */
		return -1;
	memcpy(r->text + r->len, line, len);
	r->len += len;
	r->text[r->len++] = '\r';
	r->text[r->len++] = '\n';
	r->text[r->len] = '\0';
	r->nlines++;
	r->code = code;
	return (len == 3 || u[3] == ' ') ? 1 : 0;
}

void smtp_reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->nlines = 0;
	r->len = 0;
	r->text[0] = '\0';
}

void smtp_reply_copy(struct smtp_reply *dst, const struct smtp_reply *src)
{
	/* len < sizeof text always (smtp_reply_line keeps room for the NUL);
	 * bounded all the same */
	size_t n = src->len < sizeof src->text ? src->len : sizeof src->text - 1;

	dst->code = src->code;
	dst->nlines = src->nlines;
	dst->len = n;
	memcpy(dst->text, src->text, n);
	dst->text[n] = '\0';
}

/* next_line - the line at text[*pos] without its CRLF: start and length;
 * advances *pos past it.  0 at the end. */
static int next_line(const struct smtp_reply *r, size_t *pos, const char **s, size_t *n)
{
	size_t p = *pos, e;
	size_t end = r->len < sizeof r->text ? r->len : sizeof r->text;

	if (p >= end)
		return 0;
	for (e = p; e < end && r->text[e] != '\r' && r->text[e] != '\n'; e++)
		;
	*s = r->text + p;
	*n = e - p;
	while (e < end && (r->text[e] == '\r' || r->text[e] == '\n'))
		e++;
	*pos = e;
	return 1;
}

/* smtp_ehlo_has - see smtp_parse.h.  The first line (greeting/domain) is
 * skipped; on the others the keyword is the text up to the first space. */
int smtp_ehlo_has(const struct smtp_reply *r, const char *keyword, char *args, size_t argsz)
{
	size_t pos = 0, n, k, kl, a;
	const char *s;
	int first = 1;

	if (r == NULL || keyword == NULL || (kl = strlen(keyword)) == 0)
		return 0;
	while (next_line(r, &pos, &s, &n)) {
		if (first) {
			first = 0;
			continue;
		}
		if (n <= 4)
			continue;
		s += 4;
		n -= 4;
		for (k = 0; k < n && s[k] != ' '; k++)
			;
		if (k != kl || !ascii_ncaseeq(s, keyword, kl))
			continue;
		if (args != NULL && argsz > 0) {
			s += k;
			n -= k;
			if (n > 0) {		/* the space */
				s++;
				n--;
			}
			a = n < argsz - 1 ? n : argsz - 1;
			memcpy(args, s, a);
			args[a] = '\0';
		}
		return 1;
	}
	return 0;
}

/* Queue ids ---------------------------------------------------------------- */

static int qid_char(int c)
{
	return is_alnum(c) || (c != '\0' && strchr("._-@<>", c) != NULL);
}

/* find_ci - first case-insensitive occurrence of needle in s[0..n) */
static const char *find_ci(const char *s, size_t n, const char *needle)
{
	size_t nl = strlen(needle), i;

	for (i = 0; i + nl <= n; i++)
		if (ascii_ncaseeq(s + i, needle, nl))
			return s + i;
	return NULL;
}

/* is_status_code - an enhanced status code (RFC 3463) "d.ddd.ddd" */
static int is_status_code(const char *s, size_t n)
{
	size_t i = 0, d;
	int part;

	for (part = 0; part < 3; part++) {
		if (part > 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
		for (d = 0; i < n && is_digit((unsigned char)s[i]); i++)
			d++;
		if (d == 0 || d > 3)
			return 0;
	}
	return i == n;
}

static int qid_copy(const char *s, size_t n, char *out, size_t outsz)
{
	size_t k, c;

	for (k = 0; k < n && qid_char((unsigned char)s[k]); k++)
		;
	if (k == 0 || is_status_code(s, k))
		return 0;
	if (out != NULL && outsz > 0) {
		c = k < outsz - 1 ? k : outsz - 1;
		memcpy(out, s, c);
		out[c] = '\0';
	}
	return 1;
}

/* qid_line - the queue id in one reply line's text, in the forms:
 *   "... queued as ID"                   Postfix, Exchange and others
 *   "... id=ID"                          Exim
 *   "... ID Message accepted for ..."   Sendmail */
static int qid_line(const char *s, size_t n, char *out, size_t outsz)
{
	const char *m, *t;
	size_t i;

	if ((m = find_ci(s, n, "queued as ")) != NULL) {
		m += 10;
		while (m < s + n && *m == ' ')
			m++;
		if (qid_copy(m, (size_t)(s + n - m), out, outsz))
			return 1;
	}
	for (i = 0; i + 3 < n; i++)
		if ((i == 0 || s[i - 1] == ' ') && ascii_ncaseeq(s + i, "id=", 3) &&
		    qid_copy(s + i + 3, n - i - 3, out, outsz))
			return 1;
	if ((m = find_ci(s, n, " message accepted")) != NULL) {
		/* the whole word before it must be an id */
		for (t = m; t > s && qid_char((unsigned char)t[-1]); t--)
			;
		if (t < m && (t == s || t[-1] == ' ') &&
		    qid_copy(t, (size_t)(m - t), out, outsz))
			return 1;
	}
	return 0;
}

/* smtp_reply_queue_id - see smtp_parse.h.  Only a 250 reply carries one;
 * the first line that names an id wins.  Returns 1 if found, else 0 (out is
 * then untouched). */
int smtp_reply_queue_id(const struct smtp_reply *r, char *out, size_t outsz)
{
	size_t pos = 0, n;
	const char *s;

	if (r == NULL || r->code != 250)
		return 0;
	while (next_line(r, &pos, &s, &n)) {
		if (n <= 4)
			continue;
		if (qid_line(s + 4, n - 4, out, outsz))
			return 1;
	}
	return 0;
}

/* XFORWARD ----------------------------------------------------------------- */

static const char *const xf_names[SMTP_XF_COUNT] = {
	[SMTP_XF_NAME] = "NAME", [SMTP_XF_ADDR] = "ADDR", [SMTP_XF_PORT] = "PORT",
	[SMTP_XF_PROTO] = "PROTO", [SMTP_XF_HELO] = "HELO", [SMTP_XF_IDENT] = "IDENT",
	[SMTP_XF_SOURCE] = "SOURCE", [SMTP_XF_LOGIN] = "LOGIN",
};

const char *smtp_xf_attr_name(enum smtp_xf_attr a)
{
	return (unsigned)a < SMTP_XF_COUNT ? xf_names[a] : "?";
}

static int hex_upper(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* xtext_decode - RFC 3461 xtext p[0..n) into out (NUL-terminated), at most
 * outmax octets decoded.  -1 on a raw octet outside "!".."~", a raw "=",
 * a "+" not followed by two upper-case hex digits, a decoded NUL, or too
 * long. */
static int xtext_decode(const char *p, size_t n, char *out, size_t outmax)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		int hi, lo;

		if (c < 0x21 || c > 0x7e || c == '=')
			return -1;
		if (c == '+') {
			if (n - i < 3 || (hi = hex_upper(p[i + 1])) < 0 || (lo = hex_upper(p[i + 2])) < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			if (c == 0)
				return -1;
			i += 2;
		}
		if (o >= outmax)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* xf_text_ok - no control octet, non-ASCII only as UTF-8; no space unless
 * spaces are allowed */
static int xf_text_ok(const char *v, int space_ok)
{
	const unsigned char *p = (const unsigned char *)v;

	while (*p) {
		if (*p >= 0x80) {
			size_t k = utf8_len(p);

			if (k == 0)
				return 0;
			p += k;
			continue;
		}
		if (is_ctl(*p) || (*p == ' ' && !space_ok))
			return 0;
		p++;
	}
	return 1;
}

static int xf_value_ok(enum smtp_xf_attr a, const char *v)
{
	size_t n = strlen(v), i;
	unsigned char buf[16];
	unsigned long port = 0;

	switch (a) {
	case SMTP_XF_ADDR:
		if (ascii_ncaseeq(v, "IPV6:", 5))
			return inet_pton(AF_INET6, v + 5, buf) == 1;
		return inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1;
	case SMTP_XF_PORT:
		if (n == 0 || n > 5)
			return 0;
		for (i = 0; i < n; i++) {
			if (!is_digit(v[i]))
				return 0;
			port = port * 10 + (unsigned long)(v[i] - '0');
		}
		return port <= 65535;
	case SMTP_XF_PROTO:
		if (n == 0 || n > 64)
			return 0;
		for (i = 0; i < n; i++)
			if (!is_alnum(v[i]) && v[i] != '-')
				return 0;
		return 1;
	case SMTP_XF_SOURCE:
		return ascii_caseeq(v, "LOCAL") || ascii_caseeq(v, "REMOTE");
	case SMTP_XF_NAME:
		for (i = 0; i < n; i++)
			if (!is_alnum(v[i]) && v[i] != '.' && v[i] != '-' && v[i] != '_')
				return 0;
		return n > 0;
	case SMTP_XF_HELO:
		return xf_text_ok(v, 0);
	case SMTP_XF_IDENT:
	case SMTP_XF_LOGIN:
		return xf_text_ok(v, 1);
	case SMTP_XF_COUNT:
		break;
	}
	return 0;
}

int smtp_xforward_parse(const char *arg, struct smtp_xforward *xf, const char **why)
{
	struct smtp_xforward next;   /* xf changes only when all of it is valid */
	const char *p = arg;
	int seen = 0;

	next = *xf;
	for (;;) {
		const char *name, *eq, *val;
		size_t nlen, vlen;
		enum smtp_xf_attr a;
		char decoded[SMTP_XF_VALUE_MAX + 1];

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		name = p;
		while (*p != '\0' && *p != ' ')
			p++;
		eq = memchr(name, '=', (size_t)(p - name));
		if (eq == NULL || eq == name || eq + 1 == p) {
			*why = "501 5.5.4 Syntax: XFORWARD attribute=value...";
			return -1;
		}
		nlen = (size_t)(eq - name);
		val = eq + 1;
		vlen = (size_t)(p - val);
		for (a = 0; a < SMTP_XF_COUNT; a++)
			if (strlen(xf_names[a]) == nlen && ascii_ncaseeq(name, xf_names[a], nlen))
				break;
		if (a == SMTP_XF_COUNT) {
			*why = "501 5.5.4 Bad XFORWARD attribute name";
			return -1;
		}
		if (xtext_decode(val, vlen, decoded, SMTP_XF_VALUE_MAX) < 0) {
			*why = "501 5.5.4 Bad XFORWARD attribute value (xtext, at most 255 octets)";
			return -1;
		}
		if (strcmp(decoded, "[UNAVAILABLE]") == 0 || strcmp(decoded, "[TEMPUNAVAIL]") == 0) {
			next.state[a] = SMTP_XF_UNAVAILABLE;
			next.value[a][0] = '\0';
		} else if (xf_value_ok(a, decoded)) {
			next.state[a] = SMTP_XF_VALUE;
			memcpy(next.value[a], decoded, strlen(decoded) + 1);
		} else {
			*why = "501 5.5.4 Bad XFORWARD attribute value";
			return -1;
		}
		seen = 1;
	}
	if (!seen) {
		*why = "501 5.5.4 Syntax: XFORWARD attribute=value...";
		return -1;
	}
	*xf = next;
	return 0;
}
