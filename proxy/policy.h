/* policy.h - turn what the filters found (score, symbols, hard verdicts)
 * into one action per message, its SMTP reply and the X-Spam-* header
 * edits.  Pure: no I/O, so it is unit-tested alone.  Used by the scanner's
 * pipeline; the proxy only applies the result. */
#ifndef MW_POLICY_H
#define MW_POLICY_H

#include <stddef.h>
#include "proxy/config.h"
#include "proxy/scanproto.h"

/* The X-Spam-* fields policy owns: removed from every message (a sender
 * must not pre-set them), added again for tagged mail. */
#define POLICY_HDR_FLAG   "X-Spam-Flag"
#define POLICY_HDR_SCORE  "X-Spam-Score"
#define POLICY_HDR_STATUS "X-Spam-Status"
#define POLICY_HDR_PREFIX "X-Spam-"        /* HE_REMOVE_PREFIX: every field so named */

struct policy_in {
	enum mw_direction direction;   /* which thresholds apply */
	enum mw_action hard;           /* hardest filter verdict, MW_ACCEPT if none */
	const char *hard_text;         /* its reply text (no code), NULL = configured */
	const char *hard_by;           /* name of the filter that asked, NULL if none */
	const char *subject;           /* raw value of the first Subject field (folding
	                                * kept, leading WSP allowed), NULL if none */
	size_t subject_len;
};

/* policy_decide - res->score, ->symbols and ->edits (the filters' header
 * edits) are input.  Sets res->action = hardest of in->hard and the
 * thresholds of the direction (score >= reject_score -> reject,
 * >= quarantine_score -> quarantine, >= tag_score -> tag; a threshold of 0
 * is disabled), res->required (the tag threshold, or the lowest enabled one
 * when tag is disabled), res->reply (for quarantine, discard, tempfail and
 * reject: the configured reply, its text replaced by in->hard_text when the
 * action is that verdict's), and the edits: removal of X-Spam-Flag,
 * X-Spam-Score and X-Spam-Status first (always), then the filters' edits,
 * then for tagged mail (every delivered message with spam_headers = always)
 * X-Spam-Flag: YES (tagged only), X-Spam-Score and X-Spam-Status in
 * SpamAssassin's form, and the Subject tag.  A quarantine gets the
 * tagged message's edits: it is held (in the MTA's queue, or in
 * mailwarden's store, which records them for the release) and leaves only
 * when an admin releases it, and then whoever gets it sees why it was
 * held, with our Authentication-Results and none of the sender's forged
 * fields.  why (may be NULL) gets a short reason for logs and the
 * quarantine record. */
void policy_decide(const struct config *cfg, const struct policy_in *in,
                   struct scan_result *res, char *why, size_t whysz);

/* policy_reply - the SMTP reply line (no CRLF) for action a: the configured
 * one for that action, with its text replaced by text when text is not NULL
 * and printable ASCII; a text that starts with a code and an enhanced code
 * of the action's class ("554 5.7.1 ...") is the whole reply.  "" for
 * accept and tag.  out: at most outsz-1 bytes. */
void policy_reply(const struct config *cfg, enum mw_action a, const char *text,
                  char *out, size_t outsz);

/* policy_text_ok - 1 if text may be a reply text: printable ASCII, 1 to 400
 * bytes, no CR/LF. */
int policy_text_ok(const char *text);

#endif
