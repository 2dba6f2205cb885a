/* log.h - one logging entry point: every line starts with the session id
 * (16 hex digits, or "-" outside a session), then key=value text.  Goes to
 * stderr or syslog by config.  Client-supplied text must pass through
 * log_esc() first, so a line never carries control bytes from the network. */
#ifndef MW_LOG_H
#define MW_LOG_H

#include <stddef.h>
#include <syslog.h>

void log_init(const char *ident, int to_syslog, const char *facility, int level);
void log_set_level(int level);
int  log_enabled(int prio);

/* sid may be NULL. */
void slog(const char *sid, int prio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* the same, with ": strerror(errno)" appended */
void slog_errno(const char *sid, int prio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* die - startup failures only: log and exit(1). */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* bug - a broken invariant: log and abort(). */
void bug(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* log_esc - printable copy of len bytes of s into out (at most outsz-1
 * chars, always NUL-terminated): bytes outside 0x20..0x7e become \xHH,
 * backslash becomes \\; truncation marked with "...".  Returns out.  For
 * free text (after a colon, at the end of a line).
 * log_esc_quoted - the same, and '"' and '=' become \xHH too: for a value
 * in quotes (reply="%s"), which outside text then can neither end early
 * nor use to start a forged key=value.
 * log_esc_word - as log_esc_quoted, and a space, '<' and '>' become \xHH
 * too: for a value that stands bare in a line (from=<%s>, helo=%s,
 * authenticated as %s), which then stays one token, whatever was sent. */
char *log_esc(char *out, size_t outsz, const void *s, size_t len);
char *log_esc_quoted(char *out, size_t outsz, const void *s, size_t len);
char *log_esc_word(char *out, size_t outsz, const void *s, size_t len);

#endif
