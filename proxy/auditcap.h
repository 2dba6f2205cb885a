/* auditcap.h - the bounds of one audit record (proxy and milter), so that
 * a client cannot make a line that log shippers drop (Vector's file source
 * keeps lines up to 100 KiB, Fluent Bit's tail 32 KiB by default) or that
 * costs megabytes of disk per transaction.
 *
 * A record, its newline included, is at most AUDIT_RECORD_MAX bytes:
 * - each text field from outside (helo, mail_from, mail_params, auth_user,
 *   message_id, subject, reply, ...) is cut to AUDIT_TEXT_MAX bytes of
 *   JSON, a recipient's reply to AUDIT_RCPT_REPLY_MAX, "..." marking a cut;
 * - the rcpts list takes what the rest of the record leaves: the accepted
 *   recipients first (the delivery audit), then at most
 *   AUDIT_REFUSED_LISTED refused ones, each in the client's order; those
 *   left out are counted (rcpts_unlisted, rcpts_unlisted_accepted);
 * - symbols take at most AUDIT_SYMBOLS_MAX bytes (symbols_unlisted);
 * - the milter's rcpt_checks_cut lists at most AUDIT_CUTS_LISTED
 *   recipients in at most AUDIT_CUTS_MAX bytes, each string of an entry
 *   cut to AUDIT_CUT_TEXT_MAX (rcpt_checks_cut_unlisted counts the rest):
 *   it sits in the fixed part of the record, so that 100 entries of 400
 *   bytes (a scanner too busy to answer at RCPT cuts every recipient's
 *   check) left the accepted recipients a few KiB, or passed the cap. */
#ifndef MW_AUDITCAP_H
#define MW_AUDITCAP_H

#include <stddef.h>

struct jsonw;
struct scan_symbol;

#define AUDIT_RECORD_MAX     (64 * 1024)
#define AUDIT_TEXT_MAX       1024
#define AUDIT_RCPT_REPLY_MAX 256
#define AUDIT_REFUSED_LISTED 100
#define AUDIT_SYMBOLS_MAX    (16 * 1024)
#define AUDIT_CUTS_LISTED    20
#define AUDIT_CUTS_MAX       (6 * 1024)
#define AUDIT_CUT_TEXT_MAX   128
/* room kept for the counters after the rcpts list */
#define AUDIT_COUNTS_ROOM    96

/* one recipient as the record shows it */
struct audit_rcpt {
	const char *addr;
	const char *reply;
	int         accepted;
};

/* audit_text - a text field's value, cut to max bytes of JSON (see
 * jsonw_str_max) */
void audit_text(struct jsonw *w, const char *s, size_t max);

/* audit_rcpts - the "rcpts" key and list of r[0..n) written into w within
 * budget bytes (as above), then rcpts_unlisted (those left out, plus
 * `before` the caller left out already: never kept) and
 * rcpts_unlisted_accepted when not 0.  Returns rcpts_unlisted. */
size_t audit_rcpts(struct jsonw *w, const struct audit_rcpt *r, size_t n, size_t before,
                   size_t budget);

/* audit_symbols - the "symbols" key and list of syms[0..n), within
 * AUDIT_SYMBOLS_MAX bytes, then symbols_unlisted (those past the room)
 * when not 0 */
void audit_symbols(struct jsonw *w, const struct scan_symbol *syms, size_t n);

/* audit_timed_out - the object of a timed_out list ("spamd=spamd_timeout
 * clamd=scan_deadline", checked by the decoders: [a-z0-9_=], single
 * spaces) as {filter: what ran out}, each value cut to max bytes of JSON;
 * the caller writes the key */
void audit_timed_out(struct jsonw *w, const char *list, size_t max);

/* audit_dkim_sign - the "dkim_sign" key and object of what dkim_sign did
 * (scan_result.dkim_sign, checked by the decoders: "signed=D/S kept=D/S
 * failed=D/S nokey=D badfrom more=N"): {"signed": ["d=D s=S", ...],
 * "kept": [...], "failed": [...], "unsigned": "why", "more": N}, each
 * key only when it has something; "unsigned" when no signature of ours
 * is on the message.  Nothing for "" (dkim_sign did not look at it).  At
 * most 512 bytes in, so about 700 out. */
void audit_dkim_sign(struct jsonw *w, const char *list);

#endif
