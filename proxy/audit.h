/* audit.h - the audit log: one JSON line per transaction, appended with
 * one write() so lines never interleave.  Any byte from the network ends up
 * as valid UTF-8 JSON (json-c text passed through utf8 sanitizing). */
#ifndef MW_AUDIT_H
#define MW_AUDIT_H

#include <json-c/json.h>

/* audit_open - open (create, append) path; "" disables.  0 / -1 errno.
 * Called again on reload/reopen (log rotation). */
int  audit_open(const char *path);
void audit_close(void);
/* audit_write - serialize and append rec; takes ownership of rec. */
void audit_write(json_object *rec);
/* json_string_bytes - a json string from arbitrary bytes (NUL-free or not) */
json_object *json_string_bytes(const char *p, size_t len);

/* json_number - a double that prints with at most `decimals` decimals
 * (json-c's default is %.17g: 0.059372000000000001) */
json_object *json_number(double d, int decimals);

#endif
