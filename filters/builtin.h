/* builtin.h - the filters compiled into mailwarden, and what they get that a
 * plugin does not: the whole config and the scanner's shared services (the
 * DNS layer).  The "filters" setting names the built-ins to run, in order;
 * plugins ("plugin" setting) run after them.
 *
 * A built-in is a struct mw_filter_ops like any plugin (its hooks see only
 * filter.h), whose init is NULL: setup() replaces it.  Adding one: write
 * filters/NAME.c defining a const struct builtin_filter, and list it in the
 * table of builtin.c. */
#ifndef MW_BUILTIN_H
#define MW_BUILTIN_H

#include <stddef.h>
#include "mailwarden/filter.h"
#include "proxy/config.h"
#include "proxy/scanproto.h"

struct dns;       /* filters/dns.h */

/* What every built-in shares, one per pipeline (scanner process or "mailwarden scan"). */
struct scan_env {
	const struct config *cfg;
	struct dns *dns;          /* NULL until the DNS layer exists / when off */
};

/* What a finalizer sees: the message exactly as it will be relayed. */
struct final_msg {
	const struct scan_request *req;
	const char *headers;      /* the header section as it leaves (edits applied),
	                           * CRLF lines, without the empty line */
	size_t      headers_len;
	const char *rest;         /* the empty line (CRLF) and the body, as relayed;
	                           * the body is not dot-stuffed */
	size_t      rest_len;
	struct scan_result *res;  /* final_prepend() adds fields to it */
};

struct builtin_filter {
	const char *name;                    /* as in the "filters" setting */
	const struct mw_filter_ops *ops;     /* ops->name == name; ops->init NULL */
	/* setup - once per pipeline; 0 and *instance, or -1 with a one-line
	 * reason (shown by -t and at start-up).  May be NULL. */
	int  (*setup)(void **instance, const struct scan_env *env, char *err, size_t errlen);
	/* finalize - after policy, for a message that will be delivered
	 * (accept or tag), in "filters" order: may prepend fields (DKIM
	 * signing).  May be NULL. */
	void (*finalize)(void *instance, const struct final_msg *m);
	/* prefetch - before the first filter runs on a message: start with
	 * dns_prefetch() the lookups this filter's hooks will make whose
	 * names the envelope and header already tell, so that every
	 * filter's names go out together (one round trip, and a server that
	 * drops them one timeout, instead of one each, filter after filter).
	 * Only starts queries; decides nothing.  May be NULL. */
	void (*prefetch)(struct mw_ctx *ctx);
};

/* builtin_find - the built-in called name, or NULL */
const struct builtin_filter *builtin_find(const char *name);
/* builtin_name - name of the i-th built-in (NULL past the end), for -t -v and docs */
const char *builtin_name(size_t i);

/* builtin_new_body - the message is to leave with rest (malloc'd, taken
 * over) after its header section: the empty line and the new body, CRLF
 * lines, not dot-stuffed.  Used if the final action lets the message
 * leave (accept, tag); quarantine keeps the original.  top: rest
 * replaces a single-part message's own body, so the pipeline also gives
 * the header section the replacement part's Content-Type and
 * Content-Transfer-Encoding (mime.h), then and only then.  A later call
 * replaces an earlier one. */
void builtin_new_body(struct mw_ctx *ctx, char *rest, size_t len, int top);

/* builtin_on_outcome - fn(data, taken) once the message's outcome is
 * known, after every filter and policy, on the scanner's thread: taken 1
 * when the client is told the message was taken (accept, tag,
 * quarantine, discard), 0 when it is refused (a tempfail or reject by
 * any filter or the score, a failure of the scan, a scan that ran out of
 * time and that the front end answers 451 itself).  "mailwarden scan"
 * tells it as a front end's message would be.  fn owns data from then
 * on and frees it.  For what counts only messages taken (ratelimit). */
void builtin_on_outcome(struct mw_ctx *ctx, void (*fn)(void *data, int taken), void *data);

/* builtin_log - mw_log for a built-in that escaped each value from
 * outside where it stands, as the core's lines do (proxy/log.h): a name
 * in quotes with log_esc_quoted (file="%s"), a bare one with log_esc_word
 * (domain=%s).  mw_log escapes its whole text as free text (a plugin's
 * text is), which leaves '"' and '=' as they are: an attachment named
 * `x" action="accept` made a field of its own in the line.  The text is
 * not escaped again here (slog's scrub still turns any control byte into
 * '?'); a value not escaped by the caller goes in as it is. */
void builtin_log(const struct mw_ctx *ctx, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* final_prepend - add "name: value" on top of the header section that
 * leaves (above every other added field).  value may be folded
 * ("\r\n\t" sequences) as a DKIM-Signature is. */
void final_prepend(const struct final_msg *m, const char *name, const char *value);

#endif
