/* log.c - the one logging entry point of every mailwarden process.
 *
 * A line is "SID message", SID being the session id (16 hex digits) or "-".
 * To stderr it is prefixed "ident[pid]: " and written with one write(2), so
 * lines from the master, proxy and scanner (which share stderr) and from the
 * scanner's threads never interleave; to syslog it is one syslog(3) call.
 * The line is built in a local buffer (no shared state but the settings),
 * capped at LOG_LINE_MAX with "..." on truncation.  As a last guard against
 * log injection, control bytes that slipped into a message are replaced by
 * '?', and what is not UTF-8 text a reader can show as it is becomes \xHH
 * per byte: bytes of invalid UTF-8 (journald stores such a line as a blob,
 * "[N bytes blob data]" in journalctl, and log shippers mangle it), C1
 * controls (U+009B is CSI to a terminal that shows the log) and bidi
 * overrides (they reorder the rest of the line); valid UTF-8 text stays
 * readable.  Client text should have gone through log_esc() already; this
 * covers what did not (Redis and clamd error strings, an AUTH user name).
 * Logging preserves errno, so "slog(...); return -1" keeps the cause.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "proxy/fdio.h"
#include "proxy/log.h"
#include "proxy/utf8.h"

#define LOG_LINE_MAX  2048	/* message text, before prefix and newline */
#define LOG_IDENT_MAX 64
#define LOG_SID_MAX   32

static char        log_ident[LOG_IDENT_MAX] = "mailwarden";	/* set once, at init */
static atomic_int  log_syslog;		/* 1: syslog, 0: stderr */
static atomic_int  log_level = LOG_INFO;	/* highest priority number logged */

static const struct {
	const char *name;
	int         fac;
} log_facilities[] = {
	{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

/* log_init - call once at startup, before any thread exists.  ident: copied.
 * facility: syslog facility name ("mail", "local0", ...; NULL/"" = mail); an
 * unknown name falls back to mail with a warning.  level: LOG_ERR..LOG_DEBUG. */
void log_init(const char *ident, int to_syslog, const char *facility, int level)
{
	int fac = LOG_MAIL, known = 1;
	size_t i;

	if (ident != NULL && *ident != '\0')
		snprintf(log_ident, sizeof log_ident, "%s", ident);
	log_set_level(level);
	if (facility != NULL && *facility != '\0') {
		known = 0;
		for (i = 0; i < sizeof log_facilities / sizeof log_facilities[0]; i++)
			if (strcasecmp(facility, log_facilities[i].name) == 0) {
				fac = log_facilities[i].fac;
				known = 1;
				break;
			}
	}
	if (to_syslog) {
		closelog();
		openlog(log_ident, LOG_PID | LOG_NDELAY, fac);
	}
	atomic_store(&log_syslog, to_syslog ? 1 : 0);
	if (!known)
		slog(NULL, LOG_WARNING, "unknown syslog facility \"%.32s\", using mail",
		    facility);
}

void log_set_level(int level)
{
	if (level < LOG_EMERG)
		level = LOG_EMERG;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	atomic_store(&log_level, level);
}

int log_enabled(int prio)
{
	return LOG_PRI(prio) <= atomic_load(&log_level);
}

/* errno text, thread-safe whichever strerror_r the C library declares */
static const char *err_gnu(char *r, char *buf)
{
	(void)buf;
	return r;
}

static const char *err_xsi(int r, char *buf)
{
	return r == 0 ? buf : "unknown error";
}

#define ERRSTR(e, buf) \
	_Generic(strerror_r((e), (buf), sizeof(buf)), char *: err_gnu, default: err_xsi) \
	    (strerror_r((e), (buf), sizeof(buf)), (buf))

/* scrub_item - how in[i..len) starts: *w output bytes (1: '?' or the byte
 * itself, n: a whole UTF-8 character copied, 4n: each of its n bytes as
 * \xHH); returns n, the input bytes it covers */
static size_t scrub_item(const unsigned char *in, size_t i, size_t len, size_t *w, int *esc)
{
	size_t n, bad;

	*esc = 0;
	if (in[i] < 0x80) {
		*w = 1;
		return 1;
	}
	n = utf8_seq(in + i, len - i, &bad);
	if (n == 0) {		/* one stray byte at a time: the rest follow */
		*esc = 1;
		*w = 4;
		return 1;
	}
	*esc = utf8_cp_acts(utf8_decode(in + i, n));
	*w = *esc ? 4 * n : n;
	return n;
}

/* log_scrub - the line text in[0..len) into out (at most outsz-1 bytes,
 * NUL-terminated; outsz > 3): C0 and DEL as '?', invalid UTF-8, C1 and
 * bidi controls as \xHH per byte, the rest as it is; cut between items,
 * with "...", when it does not fit.  Returns the length written. */
static size_t log_scrub(char *out, size_t outsz, const char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)in;
	size_t total = 0, room = outsz - 1, o = 0, i, n, w;
	int esc;

	for (i = 0; i < len && total <= room; i += n) {
		n = scrub_item(u, i, len, &w, &esc);
		total += w;
	}
	if (total > room)
		room -= 3;
	for (i = 0; i < len; i += n) {
		n = scrub_item(u, i, len, &w, &esc);
		if (o + w > room)
			break;
		if (esc)
			for (size_t k = 0; k < n; k++) {
				out[o++] = '\\';
				out[o++] = 'x';
				out[o++] = hex[u[i + k] >> 4];
				out[o++] = hex[u[i + k] & 15];
			}
		else if (n == 1)
			out[o++] = (u[i] < 0x20 || u[i] == 0x7f) ? '?' : (char)u[i];
		else {
			memcpy(out + o, in + i, n);
			o += n;
		}
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return o;
}

/* vlog - format, cap, scrub and emit one line.  errnum >= 0 appends
 * ": strerror(errnum)" (kept even when the message is cut).  force: log
 * whatever the level, and copy to stderr when logging to syslog (die/bug:
 * the admin starting the daemon must see why it stopped). */
static void vlog(const char *sid, int prio, int errnum, int force,
    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void vlog(const char *sid, int prio, int errnum, int force,
    const char *fmt, va_list ap)
{
	char raw[LOG_LINE_MAX], msg[LOG_LINE_MAX];
	char line[LOG_LINE_MAX + LOG_IDENT_MAX + LOG_SID_MAX + 32];
	char ebuf[128], etext[sizeof ebuf + 2];
	size_t used, elen = 0;
	int n, saved = errno;

	if (!force && !log_enabled(prio)) {
		errno = saved;
		return;
	}
	n = vsnprintf(raw, sizeof raw, fmt, ap);
	if (n < 0) {
		snprintf(raw, sizeof raw, "(bad log format \"%.64s\")", fmt);
		used = strlen(raw);
	} else if ((size_t)n >= sizeof raw) {
		used = sizeof raw - 1;
		memcpy(raw + used - 3, "...", 3);
	} else
		used = (size_t)n;
	if (errnum >= 0) {
		snprintf(etext, sizeof etext, ": %s", ERRSTR(errnum, ebuf));
		elen = strlen(etext);
	}
	/* the message, escaped, in what the errno text leaves (it is kept) */
	used = log_scrub(msg, sizeof msg - elen, raw, used);
	if (elen > 0)
		log_scrub(msg + used, sizeof msg - used, etext, elen);
	if (sid == NULL || *sid == '\0')
		sid = "-";

	if (atomic_load(&log_syslog)) {
		syslog(prio, "%.*s %s", LOG_SID_MAX, sid, msg);
		if (!force)
			goto out;
	}
	n = snprintf(line, sizeof line, "%s[%ld]: %.*s %s\n", log_ident,
	    (long)getpid(), LOG_SID_MAX, sid, msg);
	if (n > 0) {
		if ((size_t)n >= sizeof line) {
			n = (int)sizeof line - 1;
			line[n - 1] = '\n';
		}
		(void)fd_write_all(STDERR_FILENO, line, (size_t)n);   /* nowhere to say it failed */
	}
out:
	errno = saved;
}

void slog(const char *sid, int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(sid, prio, -1, 0, fmt, ap);
	va_end(ap);
}

void slog_errno(const char *sid, int prio, const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	vlog(sid, prio, e, 0, fmt, ap);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(NULL, LOG_CRIT, -1, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

/* forced - a die()/bug() line: logged whatever the level, also on stderr */
static void forced(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void forced(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(NULL, LOG_CRIT, -1, 1, fmt, ap);
	va_end(ap);
}

void bug(const char *fmt, ...)
{
	char buf[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	forced("bug: %s", buf);
	abort();
}

/* esc_width - how a byte of outside text is written: 1 as it is, 2 "\\",
 * 4 "\xHH".  mode ESC_TEXT: the bytes a terminal or journald cannot take.
 * ESC_QUOTED, for a value in quotes (reply="..."): '"' and '=' too, so
 * that text from the network can neither end the value nor make a
 * key=value field of its own in a line a parser splits into fields (a
 * MAIL FROM holding " action=accept").  ESC_WORD, for a value that stands
 * bare (key=VALUE, from=<VALUE>): a space, '<' and '>' as well, so that
 * the value is one token. */
enum { ESC_TEXT, ESC_QUOTED, ESC_WORD };

static size_t esc_width(unsigned char c, int mode)
{
	if (c == '\\')
		return 2;
	if (c < 0x20 || c > 0x7e)
		return 4;
	if (mode >= ESC_QUOTED && (c == '"' || c == '='))
		return 4;
	if (mode == ESC_WORD && (c == ' ' || c == '<' || c == '>'))
		return 4;
	return 1;
}

/* Two passes: if the escaped form fits whole it is written whole;
 * otherwise as many whole escapes as leave room for "...". */
static char *esc(char *out, size_t outsz, const void *s, size_t len, int mode)
{
	const unsigned char *p = s;
	static const char hex[] = "0123456789abcdef";
	size_t total = 0, room, o = 0, i, w;

	if (out == NULL || outsz == 0)
		return out;
	room = outsz - 1;
	if (p == NULL)
		len = 0;
	for (i = 0; i < len && total <= room; i++)
		total += esc_width(p[i], mode);
	if (total > room)		/* truncate: reserve the marker */
		room = room >= 3 ? room - 3 : 0;
	for (i = 0; i < len; i++) {
		w = esc_width(p[i], mode);
		if (o + w > room)
			break;
		if (w == 1)
			out[o++] = (char)p[i];
		else if (w == 2) {
			out[o++] = '\\';
			out[o++] = '\\';
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[p[i] >> 4];
			out[o++] = hex[p[i] & 15];
		}
	}
	if (i < len)
		for (w = 0; w < 3 && o < outsz - 1; w++)
			out[o++] = '.';
	out[o] = '\0';
	return out;
}

/* log_esc, log_esc_quoted, log_esc_word - see log.h */
char *log_esc(char *out, size_t outsz, const void *s, size_t len)
{
	return esc(out, outsz, s, len, ESC_TEXT);
}

char *log_esc_quoted(char *out, size_t outsz, const void *s, size_t len)
{
	return esc(out, outsz, s, len, ESC_QUOTED);
}

char *log_esc_word(char *out, size_t outsz, const void *s, size_t len)
{
	return esc(out, outsz, s, len, ESC_WORD);
}
