/* quarantine_cmd.c - "mailwarden quarantine"; see quarantine_cmd.h.
 *
 * What is printed is made safe for a terminal: the record and the headers
 * hold bytes a sender chose, and the record is the daemon user's file
 * while these commands run as root, so every string taken from them (and
 * every upstream reply) goes out through put_text, err1 or out1: invalid
 * UTF-8 becomes U+FFFD, C0 controls and DEL are shown as \xHH, C1
 * controls (U+009B is CSI) and the bidi formatting characters (an override
 * reverses the rest of the line) as \uXXXX.  --json output is valid UTF-8
 * JSON with those characters as \u escapes (the same strings to a JSON
 * reader); --raw and --release are the message byte for byte, for piping.
 * list's line escapes its values as a log line's fields are (put_jstr),
 * and strings are read with their length, whatever their bytes; a value
 * of the wrong type in the record is shown as such, never dereferenced.
 *
 * A release sends the message as the accept path would have (the header
 * edits the scanner recorded applied, the body a filter rewrote, ID.body,
 * in place of the stored one: release_message, which `show --release`
 * prints), replays the stored envelope (or the --to recipients) to the
 * upstream with a blocking client (smtpsend.c), under the entry's lock, and
 * writes one audit-log line whatever the outcome once the upstream was
 * tried.  The envelope strings come from a file: each is checked again
 * with the proxy's own path parser before it goes into a command, so a
 * tampered record cannot inject SMTP commands.  Of the client's MAIL
 * parameters only those that still mean something and that the upstream
 * offers are passed on (BODY, SMTPUTF8, RET/ENVID with DSN); SIZE is our
 * own count.  A client's SMTPUTF8 is kept whatever the envelope (UTF-8
 * header fields), and a BODY=BINARYMIME message goes with one BDAT ...
 * LAST, byte for byte; an upstream that lacks what either needs gets
 * nothing, and the reason is said.  A release goes to the recipients no
 * earlier release delivered to (the record's "released"), unless --again:
 * the lock only keeps two releases from running at once.  Each recorded recipient's NOTIFY/ORCPT (envelope.rcpt_dsn)
 * goes with its RCPT when the upstream offers DSN, checked as the rest
 * (recorded_dsn); recipients given with --to go without.
 */
#include <errno.h>
#include <stdarg.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proxy/audit.h"
#include "proxy/auditcap.h"
#include "proxy/header_edit.h"
#include "proxy/headers.h"
#include "proxy/jsonw.h"
#include "proxy/netaddr.h"
#include "proxy/quarantine.h"
#include "proxy/quarantine_cmd.h"
#include "proxy/sbuf.h"
#include "proxy/smtp_parse.h"
#include "proxy/smtpsend.h"
#include "proxy/log.h"
#include "proxy/utf8.h"

/* recipients of one release: max_recipients allows 50000 since session
 * 19, 100000 before, and a message quarantined then still releases whole */
#define MAX_TO 100000

static const char q_usage[] =
	"usage: mailwarden quarantine [-c FILE] [-o name=value]... list [--since TIME] [--json]\n"
	"       mailwarden quarantine [-c FILE] [-o name=value]... show [--json|--raw|--release] ID\n"
	"       mailwarden quarantine [-c FILE] [-o name=value]... release [--to RCPT]... [--again] ID\n"
	"       mailwarden quarantine [-c FILE] [-o name=value]... delete ID\n"
	"       mailwarden quarantine [-c FILE] [-o name=value]... expire\n"
	"TIME: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC), @EPOCH, or an age like 2h, 7d\n";

static int err1(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void put_text(FILE *f, const char *s, size_t n);

/* put_line - fmt formatted, then through put_text, then a newline: a line
 * that may hold a record's string or an upstream's reply */
static void put_line(FILE *f, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void put_line(FILE *f, const char *fmt, va_list ap)
{
	struct sbuf b;

	sbuf_init(&b, (size_t)-1);
	(void)sbuf_vaddf(&b, fmt, ap);
	put_text(f, b.data != NULL ? b.data : "", b.len);
	fputc('\n', f);
	sbuf_free(&b);
}

/* err1 - "mailwarden quarantine: <reason>" on stderr, made safe for a
 * terminal; returns 1 */
static int err1(const char *fmt, ...)
{
	va_list ap;

	fputs("mailwarden quarantine: ", stderr);
	va_start(ap, fmt);
	put_line(stderr, fmt, ap);
	va_end(ap);
	return 1;
}

/* out1 - one line on stdout, made safe for a terminal */
static void out1(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out1(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	put_line(stdout, fmt, ap);
	va_end(ap);
}

static int usage_err(const char *what, const char *arg)
{
	err1("%s%s%s", what, arg ? ": " : "", arg ? arg : "");
	fputs(q_usage, stderr);
	return 1;
}

/* ------------------------------------------------------------------ */
/* safe output                                                          */

/* put_text_as - s[0..n) for a terminal: invalid UTF-8 as U+FFFD, controls
 * escaped, and in mode UTF8_TERM_QUOTED / _WORD what would end a quoted
 * value / a bare word (utf8_term_sbuf) */
static void put_text_as(FILE *f, const char *s, size_t n, int mode)
{
	struct sbuf b;

	sbuf_init(&b, (size_t)-1);
	(void)utf8_term_sbuf(&b, s, n, mode);  /* no limit: never -1 */
	if (b.len > 0)
		fwrite(b.data, 1, b.len, f);
	sbuf_free(&b);
}

/* put_text - s[0..n) as free text (a value alone on its line) */
static void put_text(FILE *f, const char *s, size_t n)
{
	put_text_as(f, s, n, UTF8_TERM_TEXT);
}

static void put_str(FILE *f, const char *s)
{
	put_text(f, s, strlen(s));
}

/* put_json - j as one line (or pretty) of valid UTF-8, controls escaped
 * (utf8_term_sbuf) */
static void put_json(FILE *f, json_object *j, int pretty)
{
	size_t len;
	const char *t = json_object_to_json_string_length(j, JSON_C_TO_STRING_NOSLASHESCAPE |
	    (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN), &len);
	struct sbuf b;

	sbuf_init(&b, (size_t)-1);
	(void)utf8_term_sbuf(&b, t, len, 1);
	if (b.len > 0)
		fwrite(b.data, 1, b.len, f);
	sbuf_free(&b);
}

/* ------------------------------------------------------------------ */
/* record access                                                        */

static json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* jstrn - jstr with the string's length: a NUL in a Subject is the
 * sender's byte, kept in the record (first_header keeps the length), and
 * what follows it must be shown, not hidden by a C string's end */
static const char *jstrn(json_object *o, const char *key, size_t *len)
{
	json_object *v = jget(o, key);

	if (v == NULL || !json_object_is_type(v, json_type_string)) {
		*len = 0;
		return "";
	}
	*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

/* put_jstr - the string at key (jstrn), printed in mode (put_text_as) */
static void put_jstr(FILE *f, json_object *o, const char *key, int mode)
{
	size_t n;
	const char *s = jstrn(o, key, &n);

	put_text_as(f, s, n, mode);
}

/* put_jaddr - element i of the address list a as " <addr>" (addr a bare
 * word: UTF8_TERM_WORD).  The record is the daemon user's file: an
 * element that is not a string (null, a number, a list) is shown as
 * such, not taken for an address (a null was a NULL, and strlen(NULL)
 * killed root's `list` for every entry) */
static void put_jaddr(FILE *f, json_object *a, size_t i)
{
	json_object *v = json_object_array_get_idx(a, i);

	if (v == NULL || !json_object_is_type(v, json_type_string)) {
		fputs(" (not an address)", f);
		return;
	}
	fputs(" <", f);
	put_text_as(f, json_object_get_string(v), (size_t)json_object_get_string_len(v), UTF8_TERM_WORD);
	fputc('>', f);
}

/* the largest magnitude jnum gives: the record's numbers are sizes,
 * ports and scores, far below; a record the daemon's user wrote may hold
 * 1e308, whose conversion to long long is undefined, or NaN */
#define JNUM_MAX 1e15

/* jnum - the number at key, or 0 (none, not finite, or past JNUM_MAX) */
static double jnum(json_object *o, const char *key)
{
	json_object *v = jget(o, key);
	double d = v != NULL ? json_object_get_double(v) : 0;

	return d >= -JNUM_MAX && d <= JNUM_MAX ? d : 0;     /* false for NaN too */
}

/* jll - jnum as a whole number (bounded by jnum, so the cast is defined) */
static long long jll(json_object *o, const char *key)
{
	return (long long)jnum(o, key);
}

static json_object *jarr(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v != NULL && json_object_is_type(v, json_type_array) ? v : NULL;
}

static int released(json_object *rec)
{
	json_object *a = jarr(rec, "released");

	return a != NULL && json_object_array_length(a) > 0;
}

/* utc_now - the time as the daemon's audit lines write it */
static void utc_now(char *ts, size_t n)
{
	struct timespec now;
	struct tm tm;
	size_t k;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	k = strftime(ts, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + k, n - k, ".%03ldZ", now.tv_nsec / 1000000);
}

/* who - the user running the command, for the audit log */
static const char *who(void)
{
	static char name[64];
	struct passwd *pw = getpwuid(getuid());

	if (pw != NULL && pw->pw_name != NULL)
		snprintf(name, sizeof(name), "%s", pw->pw_name);
	else
		snprintf(name, sizeof(name), "uid %u", (unsigned)getuid());
	return name;
}

/* ------------------------------------------------------------------ */
/* list                                                                 */

struct list_ctx {
	const char *dir;
	int json, n;
};

static json_object *summary(json_object *rec)
{
	json_object *o = json_object_new_object(), *env = jget(rec, "envelope"),
	    *res = jget(rec, "result"), *a;
	static const char *const keys[] = { "id", "time", "subject", "header_from", "reason" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t n;
		const char *v = jstrn(rec, keys[i], &n);   /* a NUL in a Subject kept */

		json_object_object_add(o, keys[i], json_object_new_string_len(v, (int)n));
	}
	json_object_object_add(o, "status",
	    json_object_new_string(released(rec) ? "released" : "quarantined"));
	json_object_object_add(o, "size", json_object_new_int64(jll(rec, "size")));
	json_object_object_add(o, "score", json_number(jnum(res, "score"), 3));
	json_object_object_add(o, "action", json_object_new_string(jstr(res, "action")));
	json_object_object_add(o, "listener", json_object_new_string(jstr(env, "listener")));
	json_object_object_add(o, "direction", json_object_new_string(jstr(env, "direction")));
	json_object_object_add(o, "client_ip", json_object_new_string(jstr(env, "client_ip")));
	json_object_object_add(o, "mail_from", json_object_new_string(jstr(env, "mail_from")));
	a = jarr(env, "rcpts");
	json_object_object_add(o, "rcpts", a ? json_object_get(a) : json_object_new_array());
	return o;
}

static int list_one(void *arg, const char *id)
{
	struct list_ctx *c = arg;
	struct quarantine_entry e;
	json_object *rec, *env, *rcpts;
	char err[512];

	if (quarantine_open(c->dir, id, 0, &e, err, sizeof(err)) < 0) {
		if (errno != ENOENT)	/* gone meanwhile: not an error */
			err1("skipping %s: %s", id, err);
		return 0;
	}
	rec = e.rec;
	if (c->json) {
		json_object *s = summary(rec);

		fputs(c->n ? ",\n" : "[\n", stdout);
		put_json(stdout, s, 0);
		json_object_put(s);
	} else {
		/* one line per entry, read by eye and by grep: each value
		 * from the record escaped so that it stays in its place (a
		 * Subject  x"  reason="released by admin  wrote a second
		 * reason, a quoted local part "x> -> <ceo@..."@evil a second
		 * recipient), as log_esc_quoted/_word do in the log lines */
		env = jget(rec, "envelope");
		rcpts = jarr(env, "rcpts");
		put_str(stdout, id);
		fputs("  ", stdout);
		put_jstr(stdout, rec, "time", UTF8_TERM_WORD);
		printf("  %-11s  score=%.3g  size=%lld  <",
		    released(rec) ? "released" : "quarantined", jnum(jget(rec, "result"), "score"),
		    jll(rec, "size"));
		put_jstr(stdout, env, "mail_from", UTF8_TERM_WORD);
		fputs("> ->", stdout);
		for (size_t i = 0; rcpts != NULL && i < json_object_array_length(rcpts) && i < 3; i++)
			put_jaddr(stdout, rcpts, i);
		if (rcpts != NULL && json_object_array_length(rcpts) > 3)
			printf(" (+%zu)", json_object_array_length(rcpts) - 3);
		fputs("  subject=\"", stdout);
		put_jstr(stdout, rec, "subject", UTF8_TERM_QUOTED);
		fputs("\"  reason=\"", stdout);
		put_jstr(stdout, rec, "reason", UTF8_TERM_QUOTED);
		fputs("\"\n", stdout);
	}
	c->n++;
	quarantine_close(&e);
	return 0;
}

static int cmd_list(struct config *cfg, int argc, char **argv)
{
	struct list_ctx c = { cfg->quarantine_dir, 0, 0 };
	time_t since = 0;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			c.json = 1;
		else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			if (quarantine_parse_time(argv[++i], time(NULL), &since) < 0)
				return usage_err("--since: not a time", argv[i]);
		} else
			return usage_err("list: unknown argument", argv[i]);
	}
	if (quarantine_list(c.dir, since, list_one, &c, err, sizeof(err)) < 0)
		return err1("list: %s", err);
	if (c.json)
		fputs(c.n ? "\n]\n" : "[]\n", stdout);
	return fflush(stdout) == 0 ? 0 : err1("list: write: %s", strerror(errno));
}

/* ------------------------------------------------------------------ */
/* the message a release sends                                          */

/* message_error - why quarantine_message failed (e: its errno) */
static const char *message_error(const struct config *cfg, int e)
{
	static char why[160];

	if (e == EFBIG)
		snprintf(why, sizeof(why), "larger than message_size_limit (%llu bytes)",
		    (unsigned long long)cfg->message_size_limit);
	else if (e == ESTALE)
		snprintf(why, sizeof(why), "changed while it was read");
	else
		snprintf(why, sizeof(why), "%s", strerror(e));
	return why;
}

/* release_form - the stored message msg[0..*len) (owned, taken) as a
 * release sends it: with the header edits the scanner recorded applied
 * the way the proxy applies a result's (the same function, so an
 * outbound message's signatures, made over that form, verify), and the
 * body a filter rewrote (body, from the header section's empty line on)
 * in place of its own, as the proxy relays a result's new body, and,
 * when released_id is not NULL, QUARANTINE_RELEASED_FIELD on top.  Returns
 * the new message (owned; NUL-terminated past *len), *len updated. */
static char *release_form(char *msg, size_t *len, const struct header_edit *edits, size_t nedits,
                          const char *body, size_t body_len, const char *released_id)
{
	struct sbuf out;
	size_t rest;

	sbuf_init(&out, (size_t)-1);
	if (released_id != NULL)
		sbuf_addf(&out, "%s: %s\r\n", QUARANTINE_RELEASED_FIELD, released_id);
	rest = header_edits_apply(msg, *len, edits, nedits, &out);
	if (body != NULL)
		sbuf_add(&out, body, body_len);
	else
		sbuf_add(&out, msg + rest, *len - rest);
	sbuf_add(&out, "", 1);
	*len = out.len - 1;
	free(msg);
	return sbuf_steal(&out);
}

/* release_body_limit - the most a release reads of ID.body: what it reads
 * of ID.eml, and what the rewrite may add */
static size_t release_body_limit(const struct config *cfg)
{
	return (size_t)cfg->message_size_limit + QUARANTINE_BODY_GROWTH;
}

enum { RELEASE_FAILED = 1, RELEASE_REFUSED = 2 };

/* release's exit codes besides 0 and 1 (mailwarden(8), EXIT STATUS), so
 * that a script can tell "retry" (1: a retry goes to the recipients
 * that have not got it) from "do not retry" */
#define RELEASE_EXIT_DONE   2   /* nothing sent: every recipient had it from an
                                 * earlier release, or may have from one that
                                 * did not finish (--again sends it again) */
#define RELEASE_EXIT_UNSURE 3   /* delivered, or perhaps, and the record does not
                                 * say released: a retry may deliver it twice */

/* how long QUIT's reply is waited for once the outcome is recorded */
#define RELEASE_QUIT_WAIT_MS 10000

/* release_message - the entry's message as a release sends it (see
 * release_form), read whole: the message (owned) with *len, *edited and
 * *rewritten set, or NULL with why and RELEASE_FAILED in *fail (a file
 * that cannot be read: a release that failed, audited) or RELEASE_REFUSED
 * (malformed edits: no release).  A record without edits (stored before
 * session 18) gives the stored message with a warning; one that names a
 * rewritten body that cannot be read fails, never the stored body in its
 * place (the banned file a filter replaced). */
static char *release_message(const struct config *cfg, const struct quarantine_entry *e, size_t *len,
                             int *edited, int *rewritten, int *fail, char *why, size_t whylen)
{
	struct header_edit *edits = NULL;
	size_t nedits = 0, body_len = 0;
	char *msg, *body = NULL;

	*edited = *rewritten = *fail = 0;
	*len = 0;
	msg = quarantine_message(e, cfg->message_size_limit, len);
	if (msg == NULL) {
		snprintf(why, whylen, "%s.eml: %s", e->id, message_error(cfg, errno));
		*fail = RELEASE_FAILED;
		return NULL;
	}
	switch (quarantine_release_edits(e, &edits, &nedits, why, whylen)) {
	case 1:
		*edited = 1;
		break;
	case 0:
		slog(NULL, LOG_WARNING, "quarantine release %s: its record has no header edits "
		    "(stored before session 18): the sender's X-Spam-* and Authentication-Results "
		    "fields could not be replaced by ours; released as stored", e->id);
		break;
	default:
		*fail = RELEASE_REFUSED;
		goto fail;
	}
	switch (quarantine_release_body(e, release_body_limit(cfg), &body, &body_len, why, whylen)) {
	case 1:
		*rewritten = 1;
		break;
	case 0:
		break;
	default:
		*fail = RELEASE_FAILED;
		goto fail;
	}
	/* an inbound message the milter held is marked as one: should it pass
	 * the milter again (the release upstream is the MTA that runs it, the
	 * only one such a site has), it is not taken for the site's own mail
	 * from 127.0.0.1 and signed.  A proxy's goes to its listener's
	 * upstream, which runs no milter of ours, and leaves byte for byte as
	 * the tag action delivers it. */
	json_object *env = jget(e->rec, "envelope");
	const char *mark = strcmp(jstr(env, "listener"), SCAN_LISTENER_MILTER) == 0
	    && strcmp(jstr(env, "direction"), "outbound") != 0 ? e->id : NULL;

	if (*edited || *rewritten || mark != NULL)
		msg = release_form(msg, len, edits, nedits, body, body_len, mark);
	header_edits_free(edits, nedits);
	free(body);
	return msg;
fail:
	header_edits_free(edits, nedits);
	free(msg);
	*len = 0;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* show                                                                 */

static void show_field(const char *label, const char *value)
{
	printf("%-12s", label);
	put_str(stdout, value);
	fputc('\n', stdout);
}

/* show_release_head - a release's line in show, up to its outcome: the
 * label, when, by whom, via which upstream, to whom */
static void show_release_head(const char *label, json_object *r)
{
	json_object *to = jarr(r, "rcpts");

	printf("%-12s", label);
	put_str(stdout, jstr(r, "time"));
	fputs(" by ", stdout);
	put_str(stdout, jstr(r, "by"));
	fputs(" via ", stdout);
	put_str(stdout, jstr(r, "upstream"));
	fputs(" to", stdout);
	for (size_t k = 0; to != NULL && k < json_object_array_length(to); k++)
		put_jaddr(stdout, to, k);
}

static void show_human(const struct quarantine_entry *e, const char *msg, size_t len)
{
	json_object *rec = e->rec, *env = jget(rec, "envelope"), *res = jget(rec, "result"), *a;
	struct header_field f;
	size_t pos = 0;
	char buf[128];

	show_field("ID:", e->id);
	show_field("Time:", jstr(rec, "time"));
	show_field("Status:", released(rec) ? "released" : "quarantined");
	show_field("Reason:", jstr(rec, "reason"));
	printf("%-12s", "Listener:");
	put_str(stdout, jstr(env, "listener"));
	fputs(" (", stdout);
	put_str(stdout, jstr(env, "direction"));
	fputs("), upstream ", stdout);
	put_str(stdout, jstr(rec, "upstream")[0] ? jstr(rec, "upstream") : "(not recorded)");
	printf("\n%-12s", "Client:");
	put_str(stdout, jstr(env, "client_ip"));
	printf(" port %lld", jll(env, "client_port"));
	if (jstr(env, "client_name")[0]) {
		fputs(" name ", stdout);
		put_str(stdout, jstr(env, "client_name"));
	}
	fputs(", HELO ", stdout);
	put_str(stdout, jstr(env, "helo"));
	fputc('\n', stdout);
	if (jstr(env, "auth_user")[0])
		show_field("Auth user:", jstr(env, "auth_user"));
	if (jstr(env, "tls")[0])
		show_field("TLS:", jstr(env, "tls"));
	printf("%-12s<", "From:");
	put_str(stdout, jstr(env, "mail_from"));
	fputc('>', stdout);
	if (jstr(env, "mail_params")[0]) {
		fputc(' ', stdout);
		put_str(stdout, jstr(env, "mail_params"));
	}
	fputc('\n', stdout);
	a = jarr(env, "rcpts");
	for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++) {
		printf("%-11s", i == 0 ? "To:" : "");
		put_jaddr(stdout, a, i);
		fputc('\n', stdout);
	}
	printf("%-12s%lld bytes\n", "Size:", jll(rec, "size"));
	printf("%-12s", "Result:");
	put_str(stdout, jstr(res, "action"));
	snprintf(buf, sizeof(buf), ", score %.3f (required %.3f)", jnum(res, "score"),
	    jnum(res, "required"));
	fputs(buf, stdout);
	fputc('\n', stdout);
	a = jarr(res, "symbols");
	for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++) {
		json_object *s = json_object_array_get_idx(a, i);

		printf("%-12s", i == 0 ? "Symbols:" : "");
		put_str(stdout, jstr(s, "name"));
		printf(" %.3f [", jnum(s, "score"));
		put_str(stdout, jstr(s, "filter"));
		fputc(']', stdout);
		if (jstr(s, "desc")[0]) {
			fputc(' ', stdout);
			put_str(stdout, jstr(s, "desc"));
		}
		fputc('\n', stdout);
	}
	if (jget(jget(rec, "release"), "body") != NULL) {
		/* the admin about to release a false positive must know that the
		 * file below is not what leaves */
		const char *what = "the body a filter rewrote";

		a = jarr(res, "symbols");
		for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++)
			if (strcmp(jstr(json_object_array_get_idx(a, i), "name"), "ATTACH_REPLACED") == 0)
				what = jstr(json_object_array_get_idx(a, i), "desc");
		printf("%-12ssends ", "Release:");
		put_str(stdout, what);
		printf(" (%lld bytes, %s.body), not the stored one; show --release prints it\n",
		    jll(jget(jget(rec, "release"), "body"), "size"), e->id);
	}
	a = jarr(rec, "released");
	for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++) {
		json_object *r = json_object_array_get_idx(a, i);

		show_release_head(i == 0 ? "Released:" : "", r);
		fputs(": ", stdout);
		put_str(stdout, jstr(r, "reply"));
		fputc('\n', stdout);
	}
	/* a release whose outcome was never recorded: the upstream may have
	 * it, and a release leaves these recipients out unless --again */
	a = jarr(rec, "release_unfinished");
	for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++) {
		json_object *r = json_object_array_get_idx(a, i);

		show_release_head(i == 0 ? "Unfinished:" : "", r);
		fputs(strcmp(jstr(r, "outcome"), "unknown") == 0 ? ": outcome unknown, " : ": interrupted, "
		    "outcome unknown", stdout);
		put_str(stdout, jstr(r, "reply"));
		fputc('\n', stdout);
	}
	fputs("Headers:\n", stdout);
	while (header_next(msg, len, &pos, &f) == 1) {
		/* each field as it is, folding kept; its CRLFs as newlines */
		size_t n = f.len;

		while (n > 0 && (f.start[n - 1] == '\n' || f.start[n - 1] == '\r'))
			n--;
		for (size_t k = 0, s = 0; k <= n; k++) {
			if (k == n || f.start[k] == '\r' || f.start[k] == '\n') {
				fputs("  ", stdout);
				put_text(stdout, f.start + s, k - s);
				fputc('\n', stdout);
				while (k + 1 < n && (f.start[k + 1] == '\r' || f.start[k + 1] == '\n'))
					k++;
				s = k + 1;
			}
		}
	}
}

static int cmd_show(struct config *cfg, int argc, char **argv)
{
	struct quarantine_entry e;
	const char *id = NULL;
	char *msg;
	int json = 0, raw = 0, release = 0, rc = 0;
	char err[512];
	size_t len = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--raw") == 0)
			raw = 1;
		else if (strcmp(argv[i], "--release") == 0)
			release = 1;
		else if (argv[i][0] == '-' || id != NULL)
			return usage_err("show: unexpected argument", argv[i]);
		else
			id = argv[i];
	}
	if (id == NULL)
		return usage_err("show: which ID?", NULL);
	if (json + raw + release > 1)
		return usage_err("show: one of --json, --raw and --release", NULL);
	if (quarantine_open(cfg->quarantine_dir, id, 0, &e, err, sizeof(err)) < 0)
		return err1("%s", err);
	if (release) {
		int edited, rewritten, fail;

		msg = release_message(cfg, &e, &len, &edited, &rewritten, &fail, err, sizeof(err));
		if (msg == NULL) {
			quarantine_close(&e);
			return err1("%s", err);
		}
	} else
		msg = quarantine_message(&e, cfg->message_size_limit, &len);
	if (msg == NULL) {
		rc = err1("%s: %s", e.eml, message_error(cfg, errno));
		quarantine_close(&e);
		return rc;
	}
	if (raw || release) {
		if (fwrite(msg, 1, len, stdout) != len)
			rc = err1("write: %s", strerror(errno));
	} else if (json) {
		size_t body = header_body_offset(msg, len);
		json_object *o = json_object_get(e.rec);

		json_object_object_add(o, "headers", json_object_new_string_len(msg, (int)body));
		put_json(stdout, o, 1);
		fputc('\n', stdout);
		json_object_put(o);
	} else
		show_human(&e, msg, len);
	free(msg);
	quarantine_close(&e);
	if (fflush(stdout) != 0 && rc == 0)
		rc = err1("write: %s", strerror(errno));
	return rc;
}

/* ------------------------------------------------------------------ */
/* release                                                              */

/* path_ok - addr is what the proxy would accept inside <>: checked with
 * the same parser, and nothing is lost on the way (no source route, no
 * parameters, no CR/LF) */
static int path_ok(const char *addr, int empty_ok)
{
	static struct smtp_path_args pa;
	const char *why;
	char buf[SMTP_PATH_MAX + 8];

	if (addr[0] == '\0')
		return empty_ok;
	if (strlen(addr) > SMTP_PATH_MAX || strpbrk(addr, "<> \t\r\n") != NULL)
		return 0;
	snprintf(buf, sizeof(buf), "<%s>", addr);
	return smtp_path_parse(buf, &pa, &why) == 0 && pa.nparams == 0 && strcmp(pa.path, addr) == 0;
}

/* recorded_ok - path_ok for an address taken from the record.  Since
 * session 19 the record is repaired to valid UTF-8 as it is written, and a
 * U+FFFD there may stand for bytes that were not UTF-8 (only a milter's MTA
 * passes such an address; the proxy refuses it at MAIL/RCPT, and so did
 * path_ok before the repair): that is not the address the client gave, so
 * it is not sent. */
static int recorded_ok(const char *addr, int empty_ok)
{
	return path_ok(addr, empty_ok) && strstr(addr, "\xef\xbf\xbd") == NULL;
}

/* recorded_dsn - the recipients' DSN parameters the record keeps
 * (envelope.rcpt_dsn, one per recipient), or NULL when it has none.  Each
 * must be exactly what smtp_dsn_rcpt_params keeps of it (well-formed
 * NOTIFY and ORCPT only): the record is a file the daemon's user may
 * write, and root puts these into a command.  One that is not is dropped,
 * with a warning: the message still goes, without that notice request. */
static const char **recorded_dsn(const char *id, json_object *env, size_t nrcpts)
{
	json_object *a = jarr(env, "rcpt_dsn");
	const char **v;

	if (a == NULL)
		return NULL;
	if (json_object_array_length(a) != nrcpts) {
		err1("%s: the recorded DSN parameters do not match the recipients; released without them", id);
		return NULL;
	}
	v = xcalloc(nrcpts ? nrcpts : 1, sizeof(*v));
	for (size_t i = 0; i < nrcpts; i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(a, i));

		v[i] = "";
		if (s == NULL || s[0] == '\0')
			continue;
		if (smtp_dsn_rcpt_params_ok(s))
			v[i] = s;
		else
			err1("%s: recipient %zu: recorded DSN parameters not usable; released without them",
			    id, i + 1);
	}
	return v;
}

/* param_has - the recorded MAIL parameters orig hold the token tok
 * (case-insensitive, whole tokens only) */
static int param_has(const char *orig, const char *tok)
{
	size_t k = strlen(tok);

	while (*orig) {
		size_t n = strcspn(orig, " ");

		if (n == k && strncasecmp(orig, tok, k) == 0)
			return 1;
		orig += n;
		orig += strspn(orig, " ");
	}
	return 0;
}

/* mail_params - the parameters for MAIL FROM: see the top of the file.
 * binary: the message goes as BODY=BINARYMIME (release_send checked that
 * the upstream offers it) */
static void mail_params(const char *orig, const struct smtp_reply *ehlo, size_t size,
                        int need_utf8, int eight_bit, int binary, char *out, size_t outsz)
{
	int has_8bit = smtp_ehlo_has(ehlo, "8BITMIME", NULL, 0), body = 0;
	int has_dsn = smtp_ehlo_has(ehlo, "DSN", NULL, 0);
	size_t o = 0;
	char tok[600];

	out[0] = '\0';
#define ADD(...) do { \
		int k_ = snprintf(out + o, outsz - o, __VA_ARGS__); \
		if (k_ > 0 && (size_t)k_ < outsz - o) o += (size_t)k_; \
	} while (0)
	if (smtp_ehlo_has(ehlo, "SIZE", NULL, 0))
		ADD(" SIZE=%zu", size);
	if (need_utf8)
		ADD(" SMTPUTF8");
	while (*orig) {
		size_t n = strcspn(orig, " ");
		int printable = 1;

		if (n > 0 && n < sizeof(tok)) {
			memcpy(tok, orig, n);
			tok[n] = '\0';
			for (size_t i = 0; i < n; i++)
				if ((unsigned char)tok[i] <= 0x20 || (unsigned char)tok[i] >= 0x7f)
					printable = 0;
			if (!printable)
				;
			else if (strncasecmp(tok, "BODY=", 5) == 0 && binary && !body++)
				ADD(" BODY=BINARYMIME");
			else if (strncasecmp(tok, "BODY=", 5) == 0 && has_8bit && !body++)
				ADD(" BODY=%s", strcasecmp(tok + 5, "7BIT") == 0 && !eight_bit
				    ? "7BIT" : "8BITMIME");
			else if ((strncasecmp(tok, "RET=", 4) == 0 || strncasecmp(tok, "ENVID=", 6) == 0)
			    && has_dsn)
				ADD(" %s", tok);
		}
		orig += n;
		orig += strspn(orig, " ");
	}
	/* 8-bit content the client did not declare: declare it (RFC 6152) */
	if (eight_bit && has_8bit && !body)
		ADD(" BODY=8BITMIME");
#undef ADD
}

/* a listener's upstream: an address the admin wrote in the config */
static int configured_upstream(const struct config *cfg, const char *u)
{
	for (unsigned i = 0; i < cfg->nlisteners; i++)
		if (strcmp(cfg->listeners[i].upstream, u) == 0)
			return 1;
	return 0;
}

/* which_upstream - quarantine_release_upstream, else the one recorded with
 * the entry, else the current upstream of the listener it came through.
 * Root does not take the recorded one from a record the daemon's user
 * may write (with `user` set) unless a listener of the config names it:
 * that user could otherwise point root's connection at any host and port
 * (a loopback service, or past a firewall rule matching the socket's
 * owner).  *refused: the recorded upstream was not taken for that. */
static const char *which_upstream(const struct config *cfg, json_object *rec, int *refused)
{
	const char *l = jstr(jget(rec, "envelope"), "listener"), *u = jstr(rec, "upstream");

	*refused = 0;
	if (cfg->quarantine_release_upstream[0])
		return cfg->quarantine_release_upstream;
	if (u[0]) {
		if (geteuid() != 0 || cfg->user[0] == '\0' || configured_upstream(cfg, u))
			return u;
		*refused = 1;
		return "";
	}
	for (unsigned i = 0; i < cfg->nlisteners; i++)
		if (strcmp(cfg->listeners[i].name, l) == 0)
			return cfg->listeners[i].upstream;
	return "";
}

/* why a release needs SMTPUTF8: an address of the envelope is UTF-8, or
 * the client's MAIL carried SMTPUTF8 (RFC 6531/6532: UTF-8 header fields
 * under an ASCII envelope; the tag action relays it) */
enum { UTF8_ENVELOPE = 1, UTF8_CLIENT = 2 };

struct release {
	const char *upstream;
	const char *from;
	const char **rcpts;
	size_t nrcpts;
	const char **rcpt_dsn;   /* NULL, or each recipient's recorded NOTIFY/ORCPT
	                          * ("" for none), checked; sent when the next hop
	                          * offers DSN */
	char  (*rcpt_reply)[300];
	int   *accepted;
	size_t naccepted;
	char   params[700];
	char   reply[600];       /* the final reply, or why it failed */
	char   queue_id[128];
	int    utf8;             /* SMTPUTF8 is needed: UTF8_ENVELOPE, UTF8_CLIENT or 0 */
	int    binary;           /* the client's BODY=BINARYMIME: sent with BDAT */
	int    delivered;        /* the upstream took the message (2xx at the end) */
	int    unknown;          /* the whole message was sent and no reply came:
	                          * the upstream may have queued it */
	int    edited;           /* the record's header edits were applied */
	int    rewritten;        /* the body stored for it (ID.body) was sent */
	int    again;            /* --again: recipients that had it get it again */
	size_t nskipped;         /* recipients left out: an earlier release of
	                          * the entry delivered to them */
	int    recorded;         /* the record says released (or the entry was
	                          * removed); 0 when it could not be rewritten */
	struct quarantine_entry *entry;  /* marked before the message goes */
	json_object *pending;    /* this release's element of the record's
	                          * "release_unfinished" (borrowed), written before
	                          * the message goes; NULL before that */
	int    open;             /* the connection is up, QUIT not sent: the caller
	                          * QUITs once the outcome is recorded */
	size_t nunsure;          /* recipients left out: an unfinished release (an
	                          * unknown outcome, or one killed) may have
	                          * delivered to them */
	int    blocked;          /* SIGINT/SIGTERM/SIGHUP blocked (saved_mask) */
	sigset_t saved_mask;
};

/* release_block - from the moment the record says "pending" until the
 * outcome is recorded and audited, a Ctrl-C or a SIGTERM waits: killed in
 * between, the upstream may have the message while the record says
 * nothing (the next release delivered it again, exit 0).  The wait is
 * bounded by DATA's upstream_command_timeout, upstream_data_timeout and
 * upstream_eod_timeout; a SIGKILL
 * leaves the "pending" mark, which a later release refuses to pass
 * without --again. */
static void release_block(struct release *r)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (!r->blocked && sigprocmask(SIG_BLOCK, &set, &r->saved_mask) == 0)
		r->blocked = 1;
}

/* release_unblock - a signal that came meanwhile acts now */
static void release_unblock(struct release *r)
{
	if (r->blocked)
		(void)sigprocmask(SIG_SETMASK, &r->saved_mask, NULL);
	r->blocked = 0;
}

/* unfinished_drop - take r->pending out of the record (in memory) */
static void unfinished_drop(struct release *r)
{
	json_object *list = jarr(r->entry->rec, "release_unfinished");

	for (size_t i = 0; list != NULL && i < json_object_array_length(list); i++)
		if (json_object_array_get_idx(list, i) == r->pending) {
			json_object_array_del_idx(list, i, 1);
			break;
		}
	if (list != NULL && json_object_array_length(list) == 0)
		json_object_object_del(r->entry->rec, "release_unfinished");
	r->pending = NULL;
}

/* release_item - a release's entry for the record: when, by whom, via
 * which upstream, (with_from: the envelope sender,) the recipients the
 * upstream accepted */
static json_object *release_item(const struct release *r, int with_from)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	char ts[64];

	utc_now(ts, sizeof(ts));
	json_object_object_add(o, "time", json_object_new_string(ts));
	json_object_object_add(o, "by", json_object_new_string(who()));
	json_object_object_add(o, "upstream", json_object_new_string(r->upstream));
	if (with_from)
		json_object_object_add(o, "mail_from", json_object_new_string(r->from));
	for (size_t i = 0; i < r->nrcpts; i++)
		if (r->accepted[i])
			json_object_array_add(a, json_object_new_string(r->rcpts[i]));
	json_object_object_add(o, "rcpts", a);
	return o;
}

/* record_list_add - o appended to the record's list name (made when
 * absent: a record before session 21, or not a list) */
static void record_list_add(struct quarantine_entry *e, const char *name, json_object *o)
{
	json_object *list = jarr(e->rec, name);

	if (list == NULL) {
		list = json_object_new_array();
		json_object_object_add(e->rec, name, list);
	}
	json_object_array_add(list, o);
}

/* mark_pending - before the message goes (its recipients accepted): the
 * record says a release to them is under way ("release_unfinished", outcome
 * "pending"), saved, signals blocked.  An outcome the upstream never
 * reported (no reply to the final dot) or a release killed from here on
 * stays in the record, and a later release leaves those recipients out
 * unless --again.  0, or -1 (r->reply says why: the message is not sent,
 * the release must be recorded or not happen) */
static int mark_pending(struct release *r)
{
	json_object *o = release_item(r, 0);

	json_object_object_add(o, "outcome", json_object_new_string("pending"));
	record_list_add(r->entry, "release_unfinished", o);
	r->pending = o;
	release_block(r);
	if (quarantine_save_record(r->entry) < 0) {
		snprintf(r->reply, sizeof(r->reply), "its record could not be marked (release under way) "
		    "before the message: %s; not sent", strerror(errno));
		unfinished_drop(r);
		release_unblock(r);
		return -1;
	}
	return 0;
}

/* release_hangup - QUIT now (waiting at most t), or, once the record says
 * "pending", leave it to the caller after the outcome is recorded: an
 * upstream slow to answer QUIT must not hold up the record (nor, with
 * the signals blocked, the admin's Ctrl-C) */
static void release_hangup(struct smtpsend *c, struct release *r, unsigned t)
{
	if (r->pending != NULL)
		r->open = 1;
	else
		smtpsend_close(c, t);
}

/* release_send - the SMTP dialogue over c; fills r; 0 delivered, -1 not
 * (with r->unknown set when the message was sent whole and no reply
 * came).  The record is marked (mark_pending) before the message goes;
 * from then on the connection is left open (r->open) for the caller to
 * QUIT once the outcome is recorded */
static int release_send(const struct config *cfg, const struct netaddr *to, const char *msg,
                        size_t len, const char *orig_params, struct release *r, struct smtpsend *c)
{
	struct smtp_reply rep, ehlo;
	char line[SMTP_PATH_MAX + 800];

	if (smtpsend_connect(c, to, cfg->upstream_connect_timeout, &rep) < 0)
		goto io_fail;
	if (rep.code != 220)
		goto refused;
	snprintf(line, sizeof(line), "EHLO %s", cfg->hostname);
	if (smtpsend_command(c, line, cfg->upstream_command_timeout, &ehlo) < 0)
		goto io_fail;
	if (ehlo.code != 250) {
		snprintf(line, sizeof(line), "HELO %s", cfg->hostname);
		if (smtpsend_command(c, line, cfg->upstream_command_timeout, &rep) < 0)
			goto io_fail;
		if (rep.code != 250)
			goto refused;
		memset(&ehlo, 0, sizeof(ehlo));
	}
	if (r->utf8 && !smtp_ehlo_has(&ehlo, "SMTPUTF8", NULL, 0)) {
		snprintf(r->reply, sizeof(r->reply), r->utf8 == UTF8_ENVELOPE
		    ? "the envelope needs SMTPUTF8, which %s does not offer"
		    : "the message came with SMTPUTF8 (UTF-8 header fields), which %s does not offer",
		    r->upstream);
		release_hangup(c, r, cfg->upstream_command_timeout);
		return -1;
	}
	/* over DATA a binary body is changed (bare CR and LF become CRLF, a
	 * line "." is stuffed) and its NULs break the rules of DATA: it goes
	 * with BDAT, as the proxy relays it, or not at all */
	if (r->binary && !(smtp_ehlo_has(&ehlo, "CHUNKING", NULL, 0)
	    && smtp_ehlo_has(&ehlo, "BINARYMIME", NULL, 0))) {
		snprintf(r->reply, sizeof(r->reply), "the message came with BODY=BINARYMIME, which "
		    "needs CHUNKING and BINARYMIME; %s does not offer both", r->upstream);
		release_hangup(c, r, cfg->upstream_command_timeout);
		return -1;
	}
	mail_params(orig_params, &ehlo, len, r->utf8 != 0, utf8_has_8bit(msg, len), r->binary,
	    r->params, sizeof(r->params));
	snprintf(line, sizeof(line), "MAIL FROM:<%s>%s", r->from, r->params);
	if (smtpsend_command(c, line, cfg->upstream_command_timeout, &rep) < 0)
		goto io_fail;
	if (rep.code / 100 != 2)
		goto refused;
	for (size_t i = 0; i < r->nrcpts; i++) {
		const char *dsn = r->rcpt_dsn != NULL && smtp_ehlo_has(&ehlo, "DSN", NULL, 0)
		    ? r->rcpt_dsn[i] : "";

		snprintf(line, sizeof(line), "RCPT TO:<%s>%s%s", r->rcpts[i], dsn[0] ? " " : "", dsn);
		if (smtpsend_command(c, line, cfg->upstream_command_timeout, &rep) < 0)
			goto io_fail;
		smtpsend_reply_text(&rep, r->rcpt_reply[i], sizeof(r->rcpt_reply[i]));
		r->accepted[i] = rep.code / 100 == 2;
		r->naccepted += r->accepted[i];
	}
	if (r->naccepted == 0) {
		snprintf(r->reply, sizeof(r->reply), "every recipient was refused");
		release_hangup(c, r, cfg->upstream_command_timeout);
		return -1;
	}
	if (mark_pending(r) < 0) {
		smtpsend_close(c, cfg->upstream_command_timeout);
		return -1;
	}
	if (r->binary) {
		if (smtpsend_bdat(c, msg, len, cfg->upstream_data_timeout, cfg->upstream_eod_timeout,
		    &rep) < 0)
			goto io_fail;
	} else {
		if (smtpsend_command(c, "DATA", cfg->upstream_command_timeout, &rep) < 0)
			goto io_fail;
		if (rep.code != 354)
			goto refused;
		if (smtpsend_data(c, msg, len, cfg->upstream_data_timeout,
		    cfg->upstream_eod_timeout, &rep) < 0)
			goto io_fail;
	}
	smtpsend_reply_text(&rep, r->reply, sizeof(r->reply));
	r->delivered = rep.code / 100 == 2;
	if (r->delivered)
		smtp_reply_queue_id(&rep, r->queue_id, sizeof(r->queue_id));
	release_hangup(c, r, cfg->upstream_command_timeout);
	return r->delivered ? 0 : -1;
refused:
	smtpsend_reply_text(&rep, r->reply, sizeof(r->reply));
	release_hangup(c, r, cfg->upstream_command_timeout);
	return -1;
io_fail:
	/* silent (or gone) after the end of the message: it may be queued */
	r->unknown = c->msg_sent;
	snprintf(r->reply, sizeof(r->reply), "%s: %s", r->upstream, c->err);
	smtpsend_close(c, 0);
	return -1;
}

/* audit_release - the quarantine_release audit record of r: within the
 * bounds of the proxy's own record (auditcap.h), so that a log shipper
 * keeps it: each text cut to AUDIT_TEXT_MAX, each recipient's reply to
 * AUDIT_RCPT_REPLY_MAX, and the recipients listed in the room the rest
 * leaves, the accepted ones first, those left out counted
 * (rcpts_unlisted, rcpts_unlisted_accepted).  400 recipients of 500
 * bytes, the sender's choice, made a line of 221 KB, which Fluent Bit and
 * Vector drop: the release of that message vanished from the central log.
 * Written as JSON text (jsonw.h), as the proxy's record is: the list needs
 * to know its room.  0, or -1 with errno (audit_write_line). */
static int audit_release(const struct quarantine_entry *e, const struct release *r, int to_given,
                         int removed, size_t size)
{
	json_object *env = jget(e->rec, "envelope");
	struct audit_rcpt *ar = xcalloc(r->nrcpts ? r->nrcpts : 1, sizeof(*ar));
	struct sbuf rec, tail;
	struct jsonw w, tw;
	size_t fixed, budget;
	char ts[64];
	int rc, saved;

	utc_now(ts, sizeof(ts));
	sbuf_init(&rec, (size_t)-1);
	sbuf_init(&tail, (size_t)-1);
	/* what follows the list first, so that the list knows its room */
	jsonw_init_inside(&tw, &tail);
	jsonw_key(&tw, "rcpts_overridden"); jsonw_bool(&tw, to_given);
	jsonw_key(&tw, "size");             jsonw_int(&tw, (int64_t)size);
	jsonw_key(&tw, "upstream");         audit_text(&tw, r->upstream, AUDIT_TEXT_MAX);
	jsonw_key(&tw, "action");
	jsonw_cstr(&tw, r->delivered ? "released" : r->unknown ? "release_outcome_unknown" : "release_failed");
	jsonw_key(&tw, "reply");            audit_text(&tw, r->reply, AUDIT_TEXT_MAX);
	jsonw_key(&tw, "queue_id");         audit_text(&tw, r->queue_id, AUDIT_TEXT_MAX);
	jsonw_key(&tw, "removed");          jsonw_bool(&tw, removed);
	jsonw_key(&tw, "header_edits");     jsonw_bool(&tw, r->edited);
	jsonw_key(&tw, "rewritten_body");   jsonw_bool(&tw, r->rewritten);
	jsonw_key(&tw, "again");            jsonw_bool(&tw, r->again);
	jsonw_key(&tw, "rcpts_skipped");    jsonw_int(&tw, (int64_t)r->nskipped);
	if (r->delivered) {
		jsonw_key(&tw, "recorded");
		jsonw_bool(&tw, r->recorded);
	}
	jsonw_object_end(&tw);

	jsonw_init(&w, &rec);
	jsonw_object_begin(&w);
	jsonw_key(&w, "time");          jsonw_cstr(&w, ts);
	jsonw_key(&w, "event");         jsonw_cstr(&w, "quarantine_release");
	jsonw_key(&w, "quarantine_id"); audit_text(&w, e->id, AUDIT_TEXT_MAX);
	jsonw_key(&w, "by");            audit_text(&w, who(), AUDIT_TEXT_MAX);
	jsonw_key(&w, "listener");      audit_text(&w, jstr(env, "listener"), AUDIT_TEXT_MAX);
	jsonw_key(&w, "direction");     audit_text(&w, jstr(env, "direction"), AUDIT_TEXT_MAX);
	jsonw_key(&w, "mail_from");     audit_text(&w, r->from, AUDIT_TEXT_MAX);
	jsonw_key(&w, "mail_params");   audit_text(&w, r->params + strspn(r->params, " "), AUDIT_TEXT_MAX);
	/* the list gets what the rest leaves of AUDIT_RECORD_MAX (newline,
	 * its key and the counters after it kept), as in the proxy's */
	fixed = rec.len + tail.len + 1 + 16 + AUDIT_COUNTS_ROOM;
	budget = fixed < AUDIT_RECORD_MAX ? AUDIT_RECORD_MAX - fixed : 0;
	for (size_t i = 0; i < r->nrcpts; i++) {
		ar[i].addr = r->rcpts[i];
		ar[i].reply = r->rcpt_reply != NULL ? r->rcpt_reply[i] : "";
		ar[i].accepted = r->accepted != NULL && r->accepted[i];
	}
	(void)audit_rcpts(&w, ar, r->nrcpts, 0, budget);
	free(ar);
	if (jsonw_failed(&w) || jsonw_failed(&tw) || sbuf_add(&rec, tail.data, tail.len) < 0) {
		/* cannot happen (no limit on either buffer): not a record */
		rc = -1;
		errno = ENOMEM;
	} else
		rc = audit_write_line(rec.data, rec.len);
	saved = errno;
	sbuf_free(&rec);
	sbuf_free(&tail);
	errno = saved;
	return rc;
}

static void record_release(struct quarantine_entry *e, const struct release *r)
{
	json_object *o = release_item(r, 1);

	json_object_object_add(o, "reply", json_object_new_string(r->reply));
	json_object_object_add(o, "queue_id", json_object_new_string(r->queue_id));
	record_list_add(e, "released", o);
}

/* addr_cmp - qsort/bsearch order of addresses (const char **): case
 * does not count, so "Bob@x" is taken for "bob@x" and a release does not
 * send a second copy because the case differs (--again overrides) */
static int addr_cmp(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* released_to - every recipient an earlier release of the entry was
 * accepted for (the record's key[].rcpts: "released", or
 * "release_unfinished" for those it may have been), sorted for bsearch
 * with addr_cmp: an array (owned; NULL when *n is 0) of strings borrowed
 * from rec.  The record is the daemon user's to write: a forged entry
 * there can only keep a recipient from a release, which --again undoes. */
static const char **released_to(json_object *rec, const char *key, size_t *n)
{
	json_object *list = jarr(rec, key);
	const char **v = NULL;
	size_t cap = 0;

	*n = 0;
	for (size_t i = 0; list != NULL && i < json_object_array_length(list); i++) {
		json_object *a = jarr(json_object_array_get_idx(list, i), "rcpts");

		for (size_t k = 0; a != NULL && k < json_object_array_length(a); k++) {
			json_object *o = json_object_array_get_idx(a, k);

			if (o == NULL || !json_object_is_type(o, json_type_string))
				continue;
			if (*n == cap) {
				cap = cap ? cap * 2 : 16;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[(*n)++] = json_object_get_string(o);
		}
	}
	if (*n > 1)
		qsort(v, *n, sizeof(*v), addr_cmp);
	return v;
}

/* skip_released - leave out of r the recipients an earlier release
 * delivered to (a release after "released to 1 of 2", or a second
 * release, must not send a second copy to who has one); count them in
 * r->nskipped.  r->rcpts and r->rcpt_dsn are compacted in place. */
static void skip_released(json_object *rec, struct release *r)
{
	size_t nprev, nunsure, k = 0;
	const char **prev = released_to(rec, "released", &nprev);
	const char **unsure = released_to(rec, "release_unfinished", &nunsure);

	for (size_t i = 0; i < r->nrcpts; i++) {
		if (nprev > 0 && bsearch(&r->rcpts[i], prev, nprev, sizeof(*prev), addr_cmp) != NULL) {
			r->nskipped++;
			continue;
		}
		/* an outcome unknown, or a release killed after the record
		 * said "pending": the upstream may have it; sending it again
		 * is the admin's decision (--again), not a retry's reflex */
		if (nunsure > 0 && bsearch(&r->rcpts[i], unsure, nunsure, sizeof(*unsure), addr_cmp) != NULL) {
			r->nunsure++;
			continue;
		}
		r->rcpts[k] = r->rcpts[i];
		if (r->rcpt_dsn != NULL)
			r->rcpt_dsn[k] = r->rcpt_dsn[i];
		k++;
	}
	r->nrcpts = k;
	free(prev);
	free(unsure);
}

/* last_unfinished - "TIME by WHO via UPSTREAM: WHAT" of the record's
 * last unfinished release, for a message */
static const char *last_unfinished(json_object *rec, char *out, size_t outsz)
{
	json_object *list = jarr(rec, "release_unfinished"), *l;
	size_t n = list != NULL ? json_object_array_length(list) : 0;
	char esc[3][200];

	if (n == 0)
		return snprintf(out, outsz, "(no time recorded)"), out;
	l = json_object_array_get_idx(list, n - 1);
	/* the record is the daemon user's: no raw bytes to root's terminal */
	snprintf(out, outsz, "%s by %s via %s: %s",
	    log_esc(esc[0], sizeof(esc[0]), jstr(l, "time"), strlen(jstr(l, "time"))),
	    log_esc(esc[1], sizeof(esc[1]), jstr(l, "by"), strlen(jstr(l, "by"))),
	    log_esc(esc[2], sizeof(esc[2]), jstr(l, "upstream"), strlen(jstr(l, "upstream"))),
	    strcmp(jstr(l, "outcome"), "unknown") == 0 ? "outcome unknown, no reply to the message"
	    : "interrupted after the record said it was under way, outcome unknown");
	return out;
}

/* last_release - "TIME by WHO" of the record's last release, for a message */
static const char *last_release(json_object *rec, char *out, size_t outsz)
{
	json_object *list = jarr(rec, "released"), *l;
	size_t n = list != NULL ? json_object_array_length(list) : 0;

	if (n == 0)
		return snprintf(out, outsz, "(no time recorded)"), out;
	l = json_object_array_get_idx(list, n - 1);
	snprintf(out, outsz, "%s by %s", jstr(l, "time"), jstr(l, "by"));
	return out;
}

static int cmd_release(struct config *cfg, int argc, char **argv)
{
	static const char *to[MAX_TO];
	struct quarantine_entry e;
	struct release r;
	struct smtpsend conn = { .fd = -1 };
	struct netaddr addr;
	const char *id = NULL;
	char *msg = NULL;
	json_object *env, *rcpts;
	size_t nto = 0, len = 0, norig;
	int removed = 0, refused, fail, again = 0, audit_failed, save_errno = 0, rc = 1;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			if (!path_ok(argv[++i], 0))
				return usage_err("--to: not a mail address", argv[i]);
			if (nto == MAX_TO)
				return usage_err("too many --to recipients", NULL);
			to[nto++] = argv[i];
		} else if (strcmp(argv[i], "--again") == 0)
			again = 1;
		else if (argv[i][0] == '-' || id != NULL)
			return usage_err("release: unexpected argument", argv[i]);
		else
			id = argv[i];
	}
	if (id == NULL)
		return usage_err("release: which ID?", NULL);
	/* the release must be recorded: no audit log that can be written, no
	 * release */
	if (audit_open(cfg->audit_log) < 0)
		return err1("audit log %s: %s", cfg->audit_log, strerror(errno));
	if (quarantine_open(cfg->quarantine_dir, id, QUARANTINE_LOCK, &e, err, sizeof(err)) < 0)
		return err1("%s", err);

	memset(&r, 0, sizeof(r));
	r.again = again;
	r.entry = &e;
	env = jget(e.rec, "envelope");
	rcpts = jarr(env, "rcpts");
	norig = rcpts ? json_object_array_length(rcpts) : 0;
	r.from = jstr(env, "mail_from");
	if (!recorded_ok(r.from, 1)) {
		err1("%s: the recorded sender is not a usable address", id);
		goto out;
	}
	if (nto > 0) {
		r.rcpts = to;
		r.nrcpts = nto;
	} else {
		r.nrcpts = norig;
		if (r.nrcpts == 0 || r.nrcpts > MAX_TO) {
			err1("%s: the record has %zu recipients; give --to", id, r.nrcpts);
			goto out;
		}
		for (size_t i = 0; i < r.nrcpts; i++) {
			to[i] = json_object_get_string(json_object_array_get_idx(rcpts, i));
			if (to[i] == NULL || !recorded_ok(to[i], 0)) {
				err1("%s: recorded recipient %zu is not a usable address", id, i + 1);
				goto out;
			}
		}
		r.rcpts = to;
		r.rcpt_dsn = recorded_dsn(id, env, r.nrcpts);
	}
	/* the flock only keeps two releases from running at once: one after
	 * the other, the record says who has the message already */
	if (!again)
		skip_released(e.rec, &r);
	if (r.nrcpts == 0 && r.nunsure > 0) {
		char what[700];

		err1("%s: an earlier release to %s%s did not finish (%s); the upstream may have queued "
		    "it (look in its log); nothing sent: give --again to send it anyway", id,
		    r.nskipped > 0 ? "the recipients that do not have it" : "its recipients",
		    nto > 0 ? " given" : "", last_unfinished(e.rec, what, sizeof(what)));
		rc = RELEASE_EXIT_DONE;
		goto out;
	}
	if (r.nrcpts == 0) {
		char when[200];

		err1("%s was released already to every %srecipient (last %s); nothing sent: "
		    "give --again to deliver it again", id, nto > 0 ? "given " : "",
		    last_release(e.rec, when, sizeof(when)));
		rc = RELEASE_EXIT_DONE;
		goto out;
	}
	for (size_t i = 0; i < r.nrcpts; i++)
		if (utf8_has_8bit(r.rcpts[i], strlen(r.rcpts[i])))
			r.utf8 = UTF8_ENVELOPE;
	if (utf8_has_8bit(r.from, strlen(r.from)))
		r.utf8 = UTF8_ENVELOPE;
	else if (!r.utf8 && param_has(jstr(env, "mail_params"), "SMTPUTF8"))
		r.utf8 = UTF8_CLIENT;
	r.binary = param_has(jstr(env, "mail_params"), "BODY=BINARYMIME");
	r.upstream = which_upstream(cfg, e.rec, &refused);
	if (refused) {
		char esc[300];     /* the record is the daemon user's: no raw bytes to root's terminal */
		const char *u = jstr(e.rec, "upstream");

		err1("%s: the recorded upstream %s is no listener's upstream, and root does not go where a "
		    "record the daemon's user may write says: set quarantine_release_upstream", id,
		    log_esc(esc, sizeof(esc), u, strlen(u)));
		goto out;
	}
	if (r.upstream[0] == '\0' && strcmp(jstr(env, "listener"), SCAN_LISTENER_MILTER) == 0) {
		/* the MTA that runs the milter would scan it again (from
		 * 127.0.0.1: as outbound) and quarantine it anew */
		err1("%s: quarantined by the milter, which has no upstream of its own: set "
		    "quarantine_release_upstream to an smtpd of the MTA that runs no milter "
		    "(README \"Quarantine\": 127.0.0.1:10027 with -o smtpd_milters=)", id);
		goto out;
	}
	if (r.upstream[0] == '\0') {
		char esc[300];
		const char *l = jstr(env, "listener");

		err1("%s: no upstream known (listener '%s' is not in the configuration): set "
		    "quarantine_release_upstream", id, log_esc(esc, sizeof(esc), l, strlen(l)));
		goto out;
	}
	if (netaddr_parse(r.upstream, 0, &addr, err, sizeof(err)) < 0) {
		err1("upstream %s: %s", r.upstream, err);
		goto out;
	}
	r.rcpt_reply = xcalloc(r.nrcpts, sizeof(r.rcpt_reply[0]));
	r.accepted = xcalloc(r.nrcpts, sizeof(r.accepted[0]));
	/* read whole before the upstream is called: the daemon's user can
	 * change the file meanwhile (mapped, a truncation killed the release
	 * with SIGBUS mid-SMTP, and left no audit line); a message that
	 * cannot be read is a release that failed, audited as such */
	msg = release_message(cfg, &e, &len, &r.edited, &r.rewritten, &fail, err, sizeof(err));
	if (fail == RELEASE_REFUSED) {
		err1("%s", err);
		goto out;
	}
	if (msg == NULL)
		snprintf(r.reply, sizeof(r.reply), "%s", err);
	else
		release_send(cfg, &addr, msg, len, jstr(env, "mail_params"), &r, &conn);
	/* the outcome recorded and audited before QUIT (its reply tells
	 * nothing more, and an upstream may be slow to give it) */
	if (r.pending != NULL) {
		if (r.unknown) {
			/* kept: a later release leaves these recipients out */
			json_object_object_add(r.pending, "outcome", json_object_new_string("unknown"));
			json_object_object_add(r.pending, "reply", json_object_new_string(r.reply));
			r.pending = NULL;
		} else
			unfinished_drop(&r);
	}
	if (r.delivered) {
		record_release(&e, &r);
		if (cfg->quarantine_delete_released && nto == 0 && r.nskipped + r.naccepted == norig)
			removed = quarantine_remove(&e) == 0;
		r.recorded = removed || quarantine_save_record(&e) == 0;
		if (!r.recorded)
			save_errno = errno;
	} else if (r.blocked && quarantine_save_record(&e) < 0) {
		/* the mark stays: a later release refuses these recipients
		 * until --again, which is what an admin must then give */
		err1("%s: its record still says a release is under way (it could not be rewritten: %s); "
		    "a release again needs --again", id, strerror(errno));
	}
	audit_failed = audit_release(&e, &r, nto > 0, removed, len) < 0;
	if (audit_failed) {
		/* done and cannot be undone, but not recorded: the admin must
		 * know (and the exit status says it) */
		err1("%s %s, but its audit record could not be written to %s: %s", id,
		    r.delivered ? "released" : "not released", cfg->audit_log, strerror(errno));
	}
	if (r.unknown) {
		/* the upstream took the whole message and fell silent (or
		 * closed): it may have queued it.  Not recorded as released,
		 * and said, so that a retry is a decision, not a reflex */
		err1("release %s: outcome unknown: %s after the whole message was sent; %s may have "
		    "queued it (look in its log): it is not marked released, and a release again "
		    "leaves these recipients out unless --again, which may deliver it twice", id,
		    r.reply, r.upstream);
		rc = RELEASE_EXIT_UNSURE;
	} else if (!r.delivered) {
		err1("release %s failed: %s", id, r.reply);
	} else if (!r.recorded) {
		/* delivered, and the store does not say so: the next release
		 * would send it again to the same recipients */
		err1("%s WAS delivered to %zu recipient%s via %s (%s), but its record could not be "
		    "updated: %s; it still shows as quarantined, with the release under way: a release "
		    "again refuses it, and --again would deliver it twice", id, r.naccepted,
		    r.naccepted == 1 ? "" : "s", r.upstream, r.reply, strerror(save_errno));
		rc = RELEASE_EXIT_UNSURE;
	} else if (r.naccepted < r.nrcpts) {
		size_t i = 0;

		while (r.accepted[i])
			i++;
		err1("%s released to %zu of %zu recipients; <%s> refused: %s; a release again goes "
		    "to the refused ones only", id, r.naccepted, r.nrcpts, r.rcpts[i], r.rcpt_reply[i]);
	} else {
		char skipped[240] = "";

		if (r.nskipped > 0)
			snprintf(skipped, sizeof(skipped), "; %zu recipient%s that had it already left out",
			    r.nskipped, r.nskipped == 1 ? "" : "s");
		if (r.nunsure > 0)
			snprintf(skipped + strlen(skipped), sizeof(skipped) - strlen(skipped),
			    "; %zu recipient%s of an unfinished release left out (--again sends)",
			    r.nunsure, r.nunsure == 1 ? "" : "s");
		out1("%s released to %zu recipient%s via %s: %s%s%s", id, r.naccepted,
		    r.naccepted == 1 ? "" : "s", r.upstream, r.reply, removed ? " (removed)" : "",
		    skipped);
		rc = 0;
	}
	if (audit_failed && rc == 0)
		rc = 1;
out:
	/* the outcome recorded, audited and said (flushed: a signal held
	 * back meanwhile may end us now), then QUIT, whose reply changes
	 * nothing any more: waited for briefly */
	fflush(stdout);
	fflush(stderr);
	release_unblock(&r);
	if (r.open)
		smtpsend_close(&conn, cfg->upstream_command_timeout < RELEASE_QUIT_WAIT_MS
		    ? cfg->upstream_command_timeout : RELEASE_QUIT_WAIT_MS);
	free(msg);
	free(r.rcpt_reply);
	free(r.accepted);
	free((void *)r.rcpt_dsn);
	quarantine_close(&e);
	audit_close();
	return rc;
}

/* ------------------------------------------------------------------ */
/* delete, expire                                                       */

static int cmd_delete(struct config *cfg, int argc, char **argv)
{
	struct quarantine_entry e;
	json_object *j, *env;
	char err[512], ts[64];

	if (argc != 2 || argv[1][0] == '-')
		return usage_err("delete: give one ID", argc > 2 ? argv[2] : NULL);
	if (audit_open(cfg->audit_log) < 0)
		return err1("audit log %s: %s", cfg->audit_log, strerror(errno));
	if (quarantine_open(cfg->quarantine_dir, argv[1], QUARANTINE_LOCK, &e, err, sizeof(err)) < 0)
		return err1("%s", err);
	if (quarantine_remove(&e) < 0) {
		int saved = errno;

		quarantine_close(&e);
		return err1("delete %s: %s", argv[1], strerror(saved));
	}
	env = jget(e.rec, "envelope");
	j = json_object_new_object();
	utc_now(ts, sizeof(ts));
	json_object_object_add(j, "time", json_object_new_string(ts));
	json_object_object_add(j, "event", json_object_new_string("quarantine_delete"));
	json_object_object_add(j, "quarantine_id", json_object_new_string(e.id));
	json_object_object_add(j, "by", json_object_new_string(who()));
	json_object_object_add(j, "mail_from", json_object_new_string(jstr(env, "mail_from")));
	json_object_object_add(j, "action", json_object_new_string("deleted"));
	if (audit_write(j) < 0) {
		int saved = errno;

		audit_close();
		quarantine_close(&e);
		return err1("%s deleted, but its audit record could not be written to %s: %s", argv[1],
		    cfg->audit_log, strerror(saved));
	}
	audit_close();
	out1("%s deleted", e.id);
	quarantine_close(&e);
	return 0;
}

static int cmd_expire(struct config *cfg, int argc, char **argv)
{
	struct quarantine_expiry st;
	time_t now = time(NULL);
	char err[512];

	if (argc != 1)
		return usage_err("expire: unexpected argument", argv[1]);
	if (cfg->quarantine_max_age == 0) {
		printf("quarantine_max_age is 0: nothing expires\n");
		return 0;
	}
	if (quarantine_expire(cfg->quarantine_dir, now - (time_t)cfg->quarantine_max_age,
	    now, &st, err, sizeof(err)) < 0)
		return err1("expire: %s", err);
	printf("expired %u message%s, removed %u crash leftover%s; %u busy, %u errors\n",
	    st.removed, st.removed == 1 ? "" : "s", st.debris, st.debris == 1 ? "" : "s",
	    st.busy, st.errors);
	if (st.errors > 0)
		return err1("expire: %u files could not be removed", st.errors);
	return 0;
}

int quarantine_command(struct config *cfg, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (sub == NULL)
		return usage_err("which subcommand?", NULL);
	if (strcmp(sub, "list") == 0)
		return cmd_list(cfg, argc - 1, argv + 1);
	if (strcmp(sub, "show") == 0)
		return cmd_show(cfg, argc - 1, argv + 1);
	if (strcmp(sub, "release") == 0)
		return cmd_release(cfg, argc - 1, argv + 1);
	if (strcmp(sub, "delete") == 0)
		return cmd_delete(cfg, argc - 1, argv + 1);
	if (strcmp(sub, "expire") == 0)
		return cmd_expire(cfg, argc - 1, argv + 1);
	return usage_err("unknown subcommand", sub);
}
