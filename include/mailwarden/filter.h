/* mailwarden/filter.h - the one interface every filter implements.
 *
 * Built-in filters and plugins loaded with dlopen() ("plugin = /path/x.so
 * key=value ...") are the same thing: a const struct mw_filter_ops.  A plugin
 * exports it as the symbol MW_FILTER_SYMBOL ("mailwarden_filter").
 *
 * The scanner calls the hooks of one message in order (connect, helo, mail,
 * rcpt per recipient, header per field, body per chunk, eom) on one of its
 * worker threads.  Hooks of different messages run concurrently, so a
 * filter keeps per-message state only through mw_set_msgdata(), and treats
 * its instance data as read-only after init() (or locks it).
 *
 * A filter never writes to a socket and never decides the final action
 * alone: it adds symbols (name, score, description), header edits, and at
 * most asks for a hard verdict; policy turns all of that into one action.
 * Every string handed to a hook is borrowed: valid until the hook returns.
 * Strings may hold any byte but NUL (they come from the network).
 *
 * The ctx and threads.  A struct mw_ctx is valid only while the hook it
 * was handed to runs: after the hook returns it is gone (the next hook
 * gets one of its own, and the message's state is freed when its scan
 * ends), so a pointer to it must not be kept or used later.  A plugin may
 * hand work to threads of its own during a hook and wait for them before
 * the hook returns; those threads may read through the ctx (mw_header,
 * mw_message, mw_rcpt, ..., mw_log) while the hook waits.  They must not
 * call what says something: mw_symbol, mw_verdict, mw_header_add,
 * mw_header_remove, mw_header_change, mw_auth_result, mw_set_msgdata.
 * These write the message's result without a lock; the hook's own thread
 * makes them once its threads' answers are in.  Such a call from another
 * thread, or after the filter's last hook, is ignored and logged ("called
 * from a thread other than its hook's") instead of racing the scanner's
 * writes; one made after the hook returned may reach memory already used
 * for something else, and nothing can catch every such call.
 * mw_time_left_ms answers for the hook's thread only (see there).
 *
 * A hook that blocks or loops holds its scanner thread until it returns:
 * the scanner cannot stop it (threads are never killed).  Past the front
 * end's wait the scanner logs the filter by name ("filter NAME still
 * running") and counts it (scanner.overruns); ask mw_time_left_ms before
 * each wait instead.
 */
#ifndef MAILWARDEN_FILTER_H
#define MAILWARDEN_FILTER_H

#include <stddef.h>

/* Versions.  MW_FILTER_API_VERSION is the layout of struct mw_filter_ops
 * and the meaning of its hooks: a plugin built for another one is refused
 * at load.  MW_FILTER_API_MINOR counts the mw_* calls added since, which
 * change nothing for a plugin that does not call them: old plugins load
 * unchanged, and one that calls a newer function than the mailwarden
 * loading it has fails to load at start ("undefined symbol", shown by -t),
 * not on a message.  A plugin that must build against older headers tests
 * it: #if MW_FILTER_API_MINOR >= 1.
 *   minor 1: mw_time_left_ms(), MW_NO_DEADLINE */
#define MW_FILTER_API_VERSION 1
#define MW_FILTER_API_MINOR   1
#define MW_FILTER_SYMBOL "mailwarden_filter"

/* The actions, from mildest to hardest.  Policy picks the hardest of the
 * filters' verdicts and the score thresholds. */
enum mw_action {
	MW_ACCEPT = 0,   /* deliver unchanged (but for header edits) */
	MW_TAG,          /* deliver with X-Spam-* headers, optional Subject tag */
	MW_QUARANTINE,   /* keep in the quarantine store, deliver nothing */
	MW_DISCARD,      /* tell the client 250, deliver nothing */
	MW_TEMPFAIL,     /* 451 to the client */
	MW_REJECT,       /* 550 to the client */
	MW_ACTION_COUNT
};

enum mw_direction { MW_INBOUND = 0, MW_OUTBOUND = 1 };

/* Arguments given to the plugin on its config line: "path k1=v1 k2=v2". */
struct mw_filter_args {
	size_t             count;
	const char *const *keys;
	const char *const *values;
};

struct mw_ctx;   /* one message seen by one filter; opaque */

struct mw_filter_ops {
	unsigned    api_version;   /* MW_FILTER_API_VERSION */
	const char *name;          /* [a-z0-9_]+; prefixes its log lines */

	/* init - once per scanner process, before any message.  Returns 0 and
	 * sets *instance, or -1 with a one-line reason in err (shown by -t). */
	int  (*init)(void **instance, const struct mw_filter_args *args,
	             char *err, size_t errlen);
	void (*fini)(void *instance);

	/* Hooks; any may be NULL. */
	void (*on_connect)(struct mw_ctx *ctx);
	void (*on_helo)(struct mw_ctx *ctx, const char *helo);
	void (*on_mail)(struct mw_ctx *ctx, const char *sender);   /* "" = null sender */
	void (*on_rcpt)(struct mw_ctx *ctx, const char *rcpt);
	/* name without the colon; value unfolded (CRLF+WSP -> WSP), leading
	 * whitespace removed, raw (not RFC 2047 decoded) */
	void (*on_header)(struct mw_ctx *ctx, const char *name, const char *value);
	/* raw body (after the empty line), in chunks, CRLF line ends */
	void (*on_body)(struct mw_ctx *ctx, const unsigned char *chunk, size_t len);
	void (*on_eom)(struct mw_ctx *ctx);
};

/* --- what a hook can read ---------------------------------------------- */
void       *mw_instance(const struct mw_ctx *ctx);
const char *mw_session_id(const struct mw_ctx *ctx);
const char *mw_listener(const struct mw_ctx *ctx);
enum mw_direction mw_direction(const struct mw_ctx *ctx);
const char *mw_client_ip(const struct mw_ctx *ctx);     /* "" if unknown */
unsigned    mw_client_port(const struct mw_ctx *ctx);
/* the client's forward-confirmed reverse DNS name (its PTR name whose
 * A/AAAA records hold the address again), lower case; "" if there is none
 * or it could not be looked up (dns_client_name setting) */
const char *mw_client_name(const struct mw_ctx *ctx);
const char *mw_helo(const struct mw_ctx *ctx);
const char *mw_mail_from(const struct mw_ctx *ctx);
size_t      mw_rcpt_count(const struct mw_ctx *ctx);
const char *mw_rcpt(const struct mw_ctx *ctx, size_t i);
/* n-th (0-based) field of that name, case-insensitive; NULL if none */
const char *mw_header(const struct mw_ctx *ctx, const char *name, size_t n);
/* the whole message as received (CRLF lines, not dot-stuffed) */
const unsigned char *mw_message(const struct mw_ctx *ctx, size_t *len);
/* Milliseconds left before the message's deadline, 0 once it has passed;
 * MW_NO_DEADLINE (-1) when the hooks run outside a timed scan (no front
 * end waits for them).  The front end waits for the verdict only so long
 * (scan_timeout, milter_timeout, milter_early_timeout at RCPT); the
 * scanner's deadline is a margin before that, and what is left of it is
 * shared by the filters that have not run yet.  A filter that waits on
 * the network or works long caps its waits by this and stops when it says
 * 0: the verdict is then built from what the filters said in time instead
 * of the front end's 451 for the whole message.  A filter told 0 is noted
 * as cut short by the deadline (the audit record's timed_out names it,
 * "name=scan_deadline"), as one that ends past the deadline is.  Call it
 * on the hook's own thread (a thread of the plugin's gets MW_NO_DEADLINE:
 * the deadline is kept per scanner thread); ask again before each wait. */
#define MW_NO_DEADLINE (-1L)
long        mw_time_left_ms(const struct mw_ctx *ctx);

/* --- per-message state of this filter ----------------------------------- */
void  mw_set_msgdata(struct mw_ctx *ctx, void *data, void (*free_fn)(void *));
void *mw_msgdata(const struct mw_ctx *ctx);

/* --- what a hook can say ------------------------------------------------ */
/* All of these, and mw_set_msgdata: on the hook's own thread only, while
 * the hook runs (see the top of this file); otherwise ignored and logged. */
/* A named symbol ([A-Z0-9_]+, at most 63 chars) with a score; adding the
 * same name twice keeps the first.  desc may be NULL. */
void mw_symbol(struct mw_ctx *ctx, const char *name, double score,
               const char *desc_fmt, ...)
	__attribute__((format(printf, 4, 5)));
void mw_header_add(struct mw_ctx *ctx, const char *name, const char *value);
/* mw_header_remove - every field of exactly that name (any case); a '*'
 * in it is a character of the name, never a wildcard (before session 18
 * a trailing '*' matched every name so starting: a name copied from the
 * message, "*", removed the whole header). */
void mw_header_remove(struct mw_ctx *ctx, const char *name);
/* mw_header_change - the first field of that name (the first one left
 * after removals) gets value; when the message has none, nothing is done,
 * by every front end (before session 18 the milter's smfi_chgheader made
 * the MTA add the field).  To add a field, mw_header_add. */
void mw_header_change(struct mw_ctx *ctx, const char *name, const char *value);
/* A hard verdict: the hardest one wins over the score (among equal ones,
 * the first; but of two tempfails whose texts each say when to come back,
 * "... again in N seconds" (or minutes, hours), the one with the later
 * time, whose text and name then stand).  reply_text is the text part of the SMTP reply only, without
 * code: the code and enhanced code always come from the configured reply
 * of the action that is finally taken (reject_reply "550 5.7.1 ...",
 * tempfail_reply, quarantine_reply, discard_reply), and the text is used
 * only when that action is this verdict's.  It must be printable ASCII
 * (0x20-0x7e), 1 to 400 bytes, no CR/LF; otherwise it is logged and the
 * configured text is used (the verdict stands).  reply_text may be NULL
 * (the configured text).  MW_ACCEPT is no verdict (it changes nothing).
 * A reply_text that starts with its own reply code and enhanced code of
 * the action's class ("554 5.7.1 Virus found" for MW_REJECT) replaces the
 * configured reply whole when that action is taken. */
void mw_verdict(struct mw_ctx *ctx, enum mw_action action, const char *reply_text);
/* An Authentication-Results (RFC 8601) entry.  The pipeline writes one
 * Authentication-Results field with the configured authserv-id holding
 * every entry, in order.  method and result are tokens ([a-z0-9._-]+, e.g.
 * "spf" and "softfail"); props is "ptype.property=value ..." text such as
 * "smtp.mailfrom=user@example.org" or "header.d=example.com header.s=sel",
 * and may carry a "reason=..." or a comment; printable ASCII, at most 900
 * bytes; may be NULL. */
void mw_auth_result(struct mw_ctx *ctx, const char *method, const char *result,
                    const char *props_fmt, ...)
	__attribute__((format(printf, 4, 5)));
void mw_log(const struct mw_ctx *ctx, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
