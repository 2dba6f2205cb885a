/* smtp_parse.h - pure parsers for the SMTP protocol (RFC 5321): client
 * command lines, MAIL/RCPT paths with their ESMTP parameters, and server
 * replies.  No I/O and no allocation beyond what the caller passes in, so
 * they can be unit-tested and fuzzed alone.  Input is hostile: every
 * function takes explicit lengths and bounds every copy. */
#ifndef MW_SMTP_PARSE_H
#define MW_SMTP_PARSE_H

#include <stddef.h>

enum smtp_verb {
	SMTP_UNKNOWN = 0, SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA,
	SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN, SMTP_HELP,
	SMTP_STARTTLS, SMTP_AUTH, SMTP_BDAT, SMTP_ETRN, SMTP_TURN,
	SMTP_XCLIENT, SMTP_XFORWARD, SMTP_VERB_COUNT
};

/* smtp_verb_parse - line (no CRLF) -> verb; *arg points after the verb and
 * the single space (or at the NUL).  "MAIL FROM:" / "RCPT TO:" are matched
 * case-insensitively with the colon; the arg then starts after it, leading
 * spaces skipped (a common client deviation).  Returns SMTP_UNKNOWN for
 * anything else. */
enum smtp_verb smtp_verb_parse(const char *line, const char **arg);
const char *smtp_verb_name(enum smtp_verb v);

#define SMTP_MAX_PARAMS 16
#define SMTP_PATH_MAX   512     /* RFC 5321 4.5.3.1.3: 256 octets; we allow more */

struct smtp_param {
	char key[32];     /* upper-cased */
	char value[512];  /* "" when the parameter has no '=' */
	int  has_value;
};

struct smtp_path_args {
	char   path[SMTP_PATH_MAX + 1];  /* between < and >, "" for <> */
	size_t nparams;
	struct smtp_param params[SMTP_MAX_PARAMS];
};

/* smtp_path_parse - "<a@b> KEY=V KEY2" -> path + params.  Rejects missing
 * angle brackets, control characters, spaces inside the path, overlong
 * fields, more than SMTP_MAX_PARAMS, and params with an empty or non-
 * esmtp-keyword key.  Source routes (<@a,@b:u@d>) are stripped to the
 * mailbox as RFC 5321 C allows.  Returns 0, or -1 with a short reason in
 * *why (a static string). */
int smtp_path_parse(const char *arg, struct smtp_path_args *out, const char **why);
const struct smtp_param *smtp_param_get(const struct smtp_path_args *a, const char *key);

/* smtp_path_domain - the domain of an envelope address (a path without its
 * angle brackets: what smtp_path_parse leaves, or a milter's MAIL argument):
 * the text after its LAST '@'.  A quoted local part may hold '@'
 * ("a@x"@d), a source route (@r1,@r2:u@d) several, a domain never one; so
 * the last '@' is the one, as Postfix's resolver and libspf2 take it.  The
 * one reading of the envelope sender's domain for SPF, DMARC, greylisting,
 * the dnsbl filter and the rules (SENDERDOMAIN, check_dns_sender): until
 * session 21 the rules took the first '@' and gave up at a second, so
 * "x@listed"@clean asked no list at all.  Returns a pointer into path, or
 * NULL when there is no '@'. */
const char *smtp_path_domain(const char *path);

/* smtp_dsn_rcpt_params - of in, a RCPT's parameters as they went upstream
 * ("KEY=V KEY2 ..."), the DSN ones (RFC 3461 4.1, 4.2) that are
 * well-formed, into out, space-separated: NOTIFY=NEVER or a list of
 * SUCCESS, FAILURE, DELAY; ORCPT=addr-type;xtext, at most 500 octets of
 * printable ASCII with '+' followed by two upper-case hex digits (xtext, as
 * XFORWARD's values: no +00).  The
 * rest is dropped (also an ORCPT in RFC 6533's raw UTF-8 form).  For
 * keeping them with a quarantined message and checking them when the
 * record is read back (the record is a file: what it says must not add
 * anything to a command).  out is "" when nothing is kept or outsz is too
 * small for what is.  Returns the length of out. */
/* "NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=<500>": 28 + 1 + 6 + 500 octets (530
 * until session 20, which dropped the largest well-formed pair whole) */
#define SMTP_DSN_RCPT_MAX 535
size_t smtp_dsn_rcpt_params(const char *in, char *out, size_t outsz);
/* smtp_dsn_rcpt_params_ok - s (NUL-terminated) is exactly what
 * smtp_dsn_rcpt_params keeps of it: only well-formed NOTIFY and ORCPT,
 * nothing else (a stored copy checked before it goes into a command) */
int smtp_dsn_rcpt_params_ok(const char *s);

/* Server replies ----------------------------------------------------------- */

#define SMTP_REPLY_MAX_LINES 64

struct smtp_reply {
	int    code;              /* 200..599 */
	size_t nlines;
	char   text[8192];        /* the lines as received, each + CRLF */
	size_t len;
};

/* smtp_reply_line - feed one reply line (no CRLF).  Returns 1 when the reply
 * is complete (last line "NNN " or "NNN"), 0 when more lines follow
 * ("NNN-"), -1 when the line is malformed: not three digits 2xx..5xx, a
 * code that differs from the earlier lines, a bad separator, too many or
 * too long lines.  r must be zeroed (or smtp_reply_reset) before the
 * first line. */
int smtp_reply_line(struct smtp_reply *r, const char *line, size_t len);

/* smtp_reply_reset - r empty, for smtp_reply_line's first line: what
 * zeroing it does, without writing the 8 KB of text (the proxy did so
 * for every reply of every session: a memset and a copy of the whole
 * struct were a third of its instructions per message) */
void smtp_reply_reset(struct smtp_reply *r);

/* smtp_reply_copy - *dst = *src, but only the text src holds (up to its
 * len and the NUL after it) */
void smtp_reply_copy(struct smtp_reply *dst, const struct smtp_reply *src);

/* smtp_reply_has_keyword - in a complete EHLO reply, is the extension
 * keyword present (case-insensitive)?  If so and args != NULL, copy its
 * parameters (the rest of that line) into args. */
int smtp_ehlo_has(const struct smtp_reply *r, const char *keyword, char *args, size_t argsz);

/* smtp_reply_queue_id - from a 250 reply to end of data, the upstream's
 * queue id if it says one ("250 2.0.0 Ok: queued as 4F2A1B" (Postfix),
 * "250 OK id=1r2s3t-..." (Exim), "250 2.0.0 <id> Message accepted",
 * "queued as ID").  Copies at most outsz-1 chars of [A-Za-z0-9._-@<>]. */
int smtp_reply_queue_id(const struct smtp_reply *r, char *out, size_t outsz);

/* XFORWARD (Postfix's XFORWARD_README) -------------------------------------
 * What a trusted peer (a Postfix smtpd with smtpd_proxy_filter) says of its
 * own client.  "XFORWARD" 1*(SP attribute "=" xtext): names are
 * case-insensitive, values xtext (RFC 3461: "+" and two upper-case hex
 * digits for any octet outside "!".."~", "+" and "="), at most
 * SMTP_XF_VALUE_MAX octets decoded (Postfix's own limit).  "[UNAVAILABLE]"
 * (and "[TEMPUNAVAIL]", which Postfix's XCLIENT uses for a name whose DNS
 * lookup failed) says the peer does not know it. */

enum smtp_xf_attr {
	SMTP_XF_NAME, SMTP_XF_ADDR, SMTP_XF_PORT, SMTP_XF_PROTO, SMTP_XF_HELO,
	SMTP_XF_IDENT, SMTP_XF_SOURCE, SMTP_XF_LOGIN, SMTP_XF_COUNT
};

enum smtp_xf_state { SMTP_XF_UNSET = 0, SMTP_XF_VALUE, SMTP_XF_UNAVAILABLE };

#define SMTP_XF_VALUE_MAX 255
/* what the listener announces after "250-XFORWARD " */
#define SMTP_XF_ANNOUNCE "NAME ADDR PORT PROTO HELO IDENT SOURCE LOGIN"

struct smtp_xforward {
	enum smtp_xf_state state[SMTP_XF_COUNT];
	char value[SMTP_XF_COUNT][SMTP_XF_VALUE_MAX + 1];   /* decoded, when SMTP_XF_VALUE */
};

/* smtp_xforward_parse - the argument of one XFORWARD command, merged into
 * xf (an attribute given again: the last value counts) only when the whole
 * command is valid; on -1 xf is unchanged and *why holds the reply (a
 * static "501 5.5.4 ..." string).  Values are checked per attribute:
 * ADDR an IPv4 or IPv6 address (an "IPV6:" prefix allowed), PORT 0..65535,
 * PROTO a protocol name ([A-Za-z0-9-], at most 64), SOURCE LOCAL or
 * REMOTE, NAME a host name ([A-Za-z0-9._-]), HELO no space; none may hold
 * a control octet once decoded.  Non-ASCII only as well-formed UTF-8. */
int smtp_xforward_parse(const char *arg, struct smtp_xforward *xf, const char **why);
/* smtp_xf_attr_name - "NAME", "ADDR", ... */
const char *smtp_xf_attr_name(enum smtp_xf_attr a);

#endif
