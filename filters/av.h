/* av.h - what the two antivirus filters (clamav: libclamav in-process,
 * clamd: over its socket) share: turning a scan outcome into symbols,
 * X-Virus-* header fields and a verdict, the same way for both.
 *
 * Outcomes and what they become:
 *   clean      X-Virus-Status: Clean
 *   virus      symbol VIRUS_FOUND (description: the signature name, and
 *              "in WHERE" when found in content taken out for the engine),
 *              X-Virus-Status: Infected (NAME), and per direction
 *              (av_inbound_action / av_outbound_action): a reject verdict
 *              with "554 5.7.1 Virus found: NAME", quarantine, or tag
 *   limit      a scan limit was hit (libclamav's "Heuristics.Limits.
 *              Exceeded.*", clamd's "size limit exceeded"): av_limit_action
 *   failure    the scan could not be made (clamd down or timed out, engine
 *              error): av_fail_action, tempfail by default, never a silent
 *              pass: accept and tag still say AV_UNSCANNED and
 *              X-Virus-Status: Unscanned.
 * A sender's own X-Virus-Status fields are always removed first. */
#ifndef MW_AV_H
#define MW_AV_H

#include <stddef.h>
#include <stdint.h>

#include "mailwarden/filter.h"
#include "proxy/config.h"

enum av_fail_mode { AV_FAIL_ACCEPT = 0, AV_FAIL_TAG, AV_FAIL_TEMPFAIL };
enum av_virus_mode { AV_VIRUS_REJECT = 0, AV_VIRUS_QUARANTINE, AV_VIRUS_TAG };

#define AV_SYM_VIRUS      "VIRUS_FOUND"
#define AV_SYM_UNSCANNED  "AV_UNSCANNED"
#define AV_HDR_SCANNED    "X-Virus-Scanned"
#define AV_HDR_STATUS     "X-Virus-Status"

/* av_limit_name - 1 if a detection name is libclamav's "a limit was hit"
 * heuristic rather than a signature */
int  av_limit_name(const char *virname);

/* av_clean - the message was scanned and is clean.  scanner: what goes
 * into X-Virus-Scanned ("ClamAV 1.4.6 (libclamav)"), borrowed. */
void av_clean(struct mw_ctx *ctx, const struct config *cfg, const char *scanner);
/* av_virus - a signature matched; virname borrowed (any bytes: sanitized).
 * where: NULL for the message as it came, else where the content scanned
 * was taken from ("the S/MIME signed content of smime.p7m"), which the
 * symbol's description, the reply and the log line then name. */
void av_virus(struct mw_ctx *ctx, const struct config *cfg, const char *scanner,
              const char *virname, const char *where);
/* What one scan of a buffer came to. */
enum av_result { AV_CLEAN = 0, AV_VIRUS, AV_LIMIT, AV_FAILED };

/* A scanner as av_scan_message drives it: scan() looks at n bytes at d
 * (name: what the engine's own messages call them) and puts the
 * signature name (AV_VIRUS) or the reason (AV_LIMIT, AV_FAILED) in out;
 * *counted is what the scan counted toward av_max_scansize. */
struct av_scanner {
	const char *label;            /* for X-Virus-Scanned */
	void       *arg;
	enum av_result (*scan)(void *arg, const unsigned char *d, size_t n, const char *name,
	                       char *out, size_t outsz, uint64_t *counted);
};

/* av_scan_message - the whole antivirus step of one message: one scan of
 * the message as it came, then, if that was clean, one scan of each
 * decoded leaf of the MIME parse as a file (the engine's MIME parser may
 * split the message elsewhere than mail programs: see av.c, "decoded
 * leaves": the same content once, the message's own first, toward a
 * budget of av_max_scansize of their own), and one scan of each
 * content the engine cannot open itself (the signed message inside S/MIME
 * opaque signed-data and OpenPGP signed data, found in the shared MIME
 * parse and in the messages GMime keeps as leaves; the decoded leaves of
 * the messages the engine reads as text, not mail, for the case of their
 * field names), within av_max_scansize counted with the message, and
 * none once the scan's deadline has passed (a failure); then the
 * verdict.  Before any scan, the zips of the message's
 * leaves, of those contents and of those messages (and the zips inside
 * them or inside the other containers libclamav opens: tar, 7z, gzip,
 * bzip2, xz; to av_max_recursion levels, 64 MiB unpacked at most) are
 * counted by their end-of-central-directory records: past
 * av_max_zip_entries together, a limit hit without a scan. */
void av_scan_message(struct mw_ctx *ctx, const struct config *cfg, const struct av_scanner *s);

/* av_unscanned - no verdict: is_limit selects av_limit_action (a scan
 * limit) or av_fail_action (a failure); why is logged and described. */
void av_unscanned(struct mw_ctx *ctx, const struct config *cfg, const char *scanner,
                  int is_limit, const char *why);

#endif
