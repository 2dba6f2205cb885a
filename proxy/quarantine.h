/* quarantine.h - the quarantine store.
 *
 * Layout: one directory per UTC day under quarantine_dir, and in it, per
 * message, ID.eml (the message exactly as received: CRLF lines, not dot-
 * stuffed) and ID.json (envelope, scan result, reason, time, the
 * listener's upstream, a few header fields for listings, the releases
 * made so far, and "release": {"edits": [...]}, the header edits a release
 * applies to ID.eml: the sender's X-Spam-* and forged Authentication-
 * Results removed, ours and an outbound message's DKIM signatures added,
 * as the accept path would have; records written before session 18 have
 * none, and such a message is released as stored), and, when a filter
 * rewrote the body (a banned attachment replaced by a text part), ID.body:
 * that body, from the empty line that ends the header section on, which a
 * release sends in place of ID.eml's ("release": {"body": {"size": N}};
 * the edits then hold the Content-* fields of a replaced single-part
 * body).  An edit's value that is not UTF-8 is "value_base64" there, not
 * "value" (ID.json is valid UTF-8: see quarantine.c).  ID is the UTC time
 * of storage and random hex, e.g.
 * "20261127T013000-3f9a0c1d", stored as quarantine_dir/20261127/ID.*.
 *
 * The index is that directory tree itself, not a second file: an entry
 * exists once its .json has been renamed into place, so there is nothing
 * that a crash or two writers could leave out of step with the entries.
 * Scanner threads and processes (an old and a new scanner during a reload)
 * write concurrently without a lock: each file is created under a fresh
 * ".tmp-" name with O_EXCL and renamed without replacing.  Listing in time
 * order is a sort of names; "--since" skips whole days; expiry removes
 * whole days.  Whoever changes or removes an entry (release, delete,
 * expiry) holds flock(LOCK_EX) on its ID.eml, so two admins cannot release
 * the same message twice at once, and expiry skips an entry being released.
 *
 * A lone ID.eml or ID.body or a ".tmp-*" file is debris of a crash; expiry removes it
 * once it is an hour old.
 */
#ifndef MW_QUARANTINE_H
#define MW_QUARANTINE_H

#include <limits.h>
#include <stddef.h>
#include <time.h>
#include <json-c/json.h>

#include "proxy/config.h"
#include "proxy/scanproto.h"

#define QUARANTINE_ID_LEN 24    /* "YYYYMMDDTHHMMSS-xxxxxxxx" */
#define QUARANTINE_ID_MAX 32    /* ... + NUL fits */
#define QUARANTINE_DEBRIS_AGE 3600   /* seconds before crash debris is removed */
#define QUARANTINE_RECORD_MAX (16 * 1024 * 1024)   /* largest ID.json read */
/* the names and values of a release's edits, at most: what the scanner's
 * reply to a front end can carry, so the accept path would have had no
 * more to apply (quarantine_store fails with EMSGSIZE past it) */
#define QUARANTINE_RELEASE_EDITS_MAX SCANPROTO_MAX_PACKET
/* how much longer than the message a rewritten body may be: the bound of
 * the attachments filter's rewrite (1 KiB of note per part replaced, at
 * most MIME_MAX_PARTS of them, and 4 KiB); a release reads ID.body up to
 * message_size_limit plus this */
#define QUARANTINE_BODY_GROWTH (1000 * 1024 + 4096)
/* the field a release puts on top of a message that came in inbound
 * ("X-Mailwarden-Released: ID").  Our milter takes a message carrying it
 * as inbound whoever submits it: a release into the MTA that runs the
 * milter comes from 127.0.0.1 (milter_internal_networks), and a
 * stranger's message was scanned again as outbound and signed with the
 * site's keys.  It only ever takes trust away, so a sender who forges it
 * gains nothing. */
#define QUARANTINE_RELEASED_FIELD "X-Mailwarden-Released"

/* quarantine_store - store msg[0..len) with its envelope (req), result
 * (res; res->quarantine_id is not read) and reason (may be NULL) under a
 * new ID in cfg->quarantine_dir, creating the directories (mode 0700) if
 * missing.  The record also gets the upstream of the listener req came
 * through (from cfg), for a later release.  Each file is written to a
 * temporary name, fsync'ed and renamed into place; an existing entry is
 * never overwritten.  res->edits are recorded for the release (see above),
 * and new_body[0..new_body_len) (NULL: none), the rewritten body, as
 * ID.body.  Thread-safe.  Returns 0 with the ID in id_out, or -1 with
 * errno (ENAMETOOLONG when idsz is too small or the dir too long; EMSGSIZE
 * when res->edits exceed QUARANTINE_RELEASE_EDITS_MAX or would not read
 * back whole, or new_body does not start with CRLF or is longer than len
 * + QUARANTINE_BODY_GROWTH). */
int quarantine_store(const struct config *cfg, const struct scan_request *req,
                     const struct scan_result *res, const char *reason,
                     const void *msg, size_t len, const void *new_body, size_t new_body_len,
                     char *id_out, size_t idsz);

/* quarantine_id_valid - 1 if id is exactly an ID as quarantine_store makes
 * them (a real UTC date and time, 8 lowercase hex digits), else 0.  Nothing
 * else ever becomes part of a path. */
int quarantine_id_valid(const char *id);

/* quarantine_id_time - the storage time an ID names.  0, or -1 if the ID
 * is not valid. */
int quarantine_id_time(const char *id, time_t *t);

/* quarantine_path - "dir/YYYYMMDD/ID.ext" into out.  0, or -1 with errno
 * EINVAL (bad ID) or ENAMETOOLONG. */
int quarantine_path(const char *dir, const char *id, const char *ext, char *out, size_t outsz);

/* quarantine_parse_time - a point in time for "--since": "YYYY-MM-DD",
 * "YYYY-MM-DDTHH:MM[:SS][Z]" (or with a space instead of T; always UTC),
 * "@EPOCH", or an age "N" + s|m|h|d|w meaning now - N.  0 or -1. */
int quarantine_parse_time(const char *s, time_t now, time_t *out);

/* One entry, opened. */
struct quarantine_entry {
	char id[QUARANTINE_ID_MAX];
	char eml[PATH_MAX];      /* whole names, for messages only */
	char json[PATH_MAX];
	char eml_name[QUARANTINE_ID_MAX + 8];    /* "ID.eml", relative to dfd */
	char json_name[QUARANTINE_ID_MAX + 8];   /* "ID.json", relative to dfd */
	char body_name[QUARANTINE_ID_MAX + 8];   /* "ID.body", relative to dfd */
	int  dfd;                /* its day directory, opened once (O_NOFOLLOW):
	                          * every later open, rename and removal is
	                          * relative to it, never by path */
	int  fd;                 /* ID.eml, read-only; flock'ed if opened locked */
	json_object *rec;        /* the record, owned */
};

#define QUARANTINE_LOCK    0x1   /* take the entry's lock (fails if busy) */

/* quarantine_open - open entry id of dir: validate the ID, open its .eml
 * (and lock it with QUARANTINE_LOCK, without waiting), read its record.
 * Returns 0, or -1 with a one-line reason in err: not an ID, no such
 * entry, busy, unreadable or malformed record. */
int quarantine_open(const char *dir, const char *id, unsigned flags,
                    struct quarantine_entry *e, char *err, size_t errlen);
void quarantine_close(struct quarantine_entry *e);

/* quarantine_message - the stored message read into memory: *len bytes
 * at the returned address (owned: free() it; NUL-terminated past *len),
 * or NULL with errno: EFBIG longer than limit, ESTALE when the file was
 * shorter or longer than fstat said (changed while read), or read's.
 * Read, not mapped: the file is the daemon user's, who can truncate it
 * under a mapping (SIGBUS in root's release, mid-SMTP). */
char *quarantine_message(const struct quarantine_entry *e, size_t limit, size_t *len);

/* quarantine_release_edits - the edits a release applies to the stored
 * message, from the record: 1 and *edits (owned: header_edits_free), 0
 * when the record has none (stored before session 18: the message goes as
 * stored), -1 with err when they are malformed (the record is the daemon
 * user's to write: such a release is refused), a "value_base64" that is
 * not strict base64 included. */
int quarantine_release_edits(const struct quarantine_entry *e, struct header_edit **edits,
                             size_t *nedits, char *err, size_t errlen);

/* quarantine_release_body - the body a release sends in place of the
 * stored message's (a filter rewrote it), read whole from ID.body (at most
 * limit bytes): 1 and *body (owned: free(); NUL-terminated past *len), 0
 * when the record names none (the stored body goes), -1 with err when it
 * cannot be sent: malformed in the record, missing, not a regular file,
 * with other names or another owner than ID.eml, larger than limit,
 * changed while read, or not what the record says (its size, its leading
 * CRLF).  Never the stored body in its place: that would be the banned
 * file. */
int quarantine_release_body(const struct quarantine_entry *e, size_t limit, char **body,
                            size_t *len, char *err, size_t errlen);

/* quarantine_save_record - write e->rec back (temporary file, fsync,
 * rename over the old one; owner kept).  Needs the lock.  0 or -1 errno. */
int quarantine_save_record(struct quarantine_entry *e);

/* quarantine_remove - remove the entry (its .json first: from then on it
 * does not exist; then its .body, if any, and its .eml).  Needs the lock.  0 or -1 errno. */
int quarantine_remove(struct quarantine_entry *e);

/* quarantine_list - call fn(arg, id) for every entry of dir stored at or
 * after since (0: all), oldest first.  fn returns 0 to go on, -1 to stop.
 * A missing dir is an empty store.  Returns 0, -1 with err (unreadable
 * directory), or fn's -1. */
typedef int (*quarantine_list_fn)(void *arg, const char *id);
int quarantine_list(const char *dir, time_t since, quarantine_list_fn fn, void *arg,
                    char *err, size_t errlen);

struct quarantine_expiry {
	unsigned removed;        /* entries */
	unsigned debris;         /* crash leftovers */
	unsigned busy;           /* entries skipped: locked by a release/delete */
	unsigned errors;         /* files that could not be removed */
};

/* quarantine_expire - remove every entry stored before cutoff, crash debris
 * older than QUARANTINE_DEBRIS_AGE (before now), and day directories left
 * empty (never today's).  Counts in *st.  0, or -1 with err if dir cannot
 * be read (a missing dir is fine). */
int quarantine_expire(const char *dir, time_t cutoff, time_t now, struct quarantine_expiry *st,
                      char *err, size_t errlen);

/* quarantine_expire_run - the daemon's periodic expiry: quarantine_expire
 * with cutoff now - cfg->quarantine_max_age (nothing if that is 0), a log
 * line when something was removed or failed. */
void quarantine_expire_run(const struct config *cfg);

#endif
