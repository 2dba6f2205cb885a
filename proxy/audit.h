/* audit.h - the audit log: one JSON line per transaction, appended (with
 * O_APPEND) in writes of whole lines under flock, by every process that
 * writes it, so lines never interleave and a write that fails part-way is
 * cut off before anyone appends after it.  Any byte from the network ends
 * up as valid UTF-8 JSON (jsonw.h, or json-c text passed through utf8
 * sanitizing). */
#ifndef MW_AUDIT_H
#define MW_AUDIT_H

#include <json-c/json.h>

/* audit_open - open (create, append) path; "" disables.  0 / -1 errno.
 * Called again on reload/reopen (log rotation).  A path that cannot be
 * opened stays the configured log: the descriptor of an earlier file is
 * given up (unless it is still the file path names), audit_failing() is
 * true, each record is counted lost, and the writes try to open it again
 * once a second.
 * audit_open_logged - the same, a failure logged with its consequence
 * (who: a prefix of the line, "" or "milter: ").
 * audit_close - no audit log (writes do nothing; not failing). */
int  audit_open(const char *path);
int  audit_open_logged(const char *path, const char *who);
void audit_close(void);
/* audit_write - serialize and append rec; takes ownership of rec.
 * 0, or -1 with errno when the line could not be written: then none of it
 * is in the file (a partial write is cut off again) and the loss is logged
 * with the path and errno, once per streak of failures.  Batched lines
 * (audit_batch_start) always return 0 here: they are written later. */
int  audit_write(json_object *rec);
/* audit_failing - the last write of this process's audit log failed, or
 * the configured log is not open (records are being lost): for
 * audit_failure = tempfail */
int  audit_failing(void);
/* audit_write_line - append one line: text is one JSON object, valid
 * UTF-8 (jsonw.h writes such text), without the newline.  As audit_write. */
int  audit_write_line(const char *text, size_t len);

/* audit_batch_start - from now on, this thread's lines are collected and
 * written with one write() per iteration of base's event loop, before the
 * loop waits again (a crash loses at most one iteration's lines).  Without
 * it (milter, command line tools) each line is written at once.
 * audit_batch_stop - write what is collected and stop batching; call it in
 * the same thread once its loop has returned (SIGTERM shutdown). */
struct event_base;
void audit_batch_start(struct event_base *base);
void audit_batch_stop(void);
/* json_string_bytes - a json string from arbitrary bytes (NUL-free or not) */
json_object *json_string_bytes(const char *p, size_t len);

/* json_number - a double that prints with at most `decimals` decimals
 * (json-c's default is %.17g: 0.059372000000000001) */
json_object *json_number(double d, int decimals);

#endif
