/* quarantine.c - store a quarantined message with its envelope and result.
 *
 * Why write-fsync-rename: the client is told 250 for a quarantined message
 * (nothing goes upstream), so the copy here is the only one.  It must be
 * whole and on disk before that reply, and a crash must leave either a
 * complete entry or debris under a ".tmp-" name, never a truncated ID.eml.
 * The .json goes last: its presence is what makes an entry.
 *
 * Layout, index and locking: see quarantine.h.
 *
 * The .json is valid UTF-8, as the audit log is: json-c copies bytes >=
 * 0x80 into its text unchanged, so the text is repaired (utf8_sanitize:
 * every ill-formed sequence becomes U+FFFD) each time it is written.  A
 * Subject or a HELO with a stray 0xff made the record invalid UTF-8 until
 * session 19, which a strict reader of the store (Python's json.load)
 * refused.  The repair must not touch what a release sends, so:
 *  - a header edit of the release ("release": {"edits": ...}) whose value
 *    is not UTF-8 (the Subject tag's change carries the sender's Subject
 *    bytes, a plugin's field may carry any) is recorded as
 *    "value_base64" in place of "value" (armor_edits), and decoded back,
 *    strictly, by quarantine_release_edits: repaired, a Latin-1 Subject
 *    left with U+FFFD in place of its letters (session 19, rv-today1 R1);
 *  - envelope addresses: the proxy's path parser refuses an address that
 *    is not UTF-8 at MAIL/RCPT, and the release checks the recorded ones
 *    with that parser; a milter's MTA may pass one, recorded with U+FFFD,
 *    which the release refuses (see quarantine_cmd.c);
 *  - the rest a release reads is ASCII when it is usable at all (the
 *    recipients' DSN parameters, MAIL parameters, the upstream, the
 *    listener and direction are checked or compared as such), and the
 *    From/Subject/Message-ID copies and the result's own "edits" are for
 *    list and show only.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filters/filter_api.h"
#include "proxy/base64.h"
#include "proxy/fdio.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/policy.h"
#include "proxy/quarantine.h"
#include "proxy/sbuf.h"
#include "proxy/utf8.h"

#define Q_ATTEMPTS 8		/* fresh IDs tried on a (very unlikely) collision */

/* mkdir_p - create dir and its missing parents with mode 0700. */
static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	size_t n = strlen(dir), i;
	struct stat st;

	if (n == 0) {
		errno = ENOENT;
		return -1;
	}
	if (n >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -1;
		path[i] = i < n ? '/' : '\0';
	}
	if (stat(dir, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* write_file_as - create path (relative to dfd; must not exist), owned by
 * uid:gid unless they are -1, write it all, fsync, close.  The owner is
 * set through the descriptor: by name, root would follow whatever the
 * directory's owner put there meanwhile. */
static int write_file_as(int dfd, const char *path, const void *p, size_t len, uid_t uid, gid_t gid)
{
	int fd, saved;

	fd = openat(dfd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
		goto fail;
	if (fd_write_all(fd, p, len) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(dfd, path, 0);
	errno = saved;
	return -1;
}

static int write_file(const char *path, const void *p, size_t len)
{
	return write_file_as(AT_FDCWD, path, p, len, (uid_t)-1, (gid_t)-1);
}

/* publish - rename tmp to final unless final exists (then EEXIST). */
static int publish(const char *tmp, const char *final)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* a file system without RENAME_NOREPLACE: link() never overwrites */
	if (link(tmp, final) < 0)
		return -1;
	unlink(tmp);
	return 0;
}

static int make_id(char *id, size_t idsz, time_t now)
{
	unsigned char rnd[4];
	struct tm tm;
	char ts[32];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -1;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y%m%dT%H%M%S", &tm);
	if ((size_t)snprintf(id, idsz, "%s-%02x%02x%02x%02x", ts, rnd[0], rnd[1], rnd[2],
	    rnd[3]) >= idsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* IDs, days and paths                                                  */

/* digits - n decimal digits at s into *out; 0 or -1 */
static int digits(const char *s, size_t n, int *out)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* utc_time - the time_t of a UTC date and time, or -1 when the fields are
 * not a real one (month 13, February 30, hour 24, ...): timegm normalizes
 * such values, so the result must read back as the same fields. */
static int utc_time(int y, int mo, int d, int h, int mi, int s, time_t *out)
{
	struct tm tm, back;
	time_t t;

	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59
	    || s > 59 || h < 0 || mi < 0 || s < 0)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	t = timegm(&tm);	/* normalizes tm too: compare with the inputs */
	if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_year != y - 1900
	    || back.tm_mon != mo - 1 || back.tm_mday != d
	    || back.tm_hour != h || back.tm_min != mi || back.tm_sec != s)
		return -1;
	*out = t;
	return 0;
}

/* day_time - start of the day a "YYYYMMDD" directory name stands for */
static int day_time(const char *name, time_t *t)
{
	int y, mo, d;

	if (strlen(name) != 8 || digits(name, 4, &y) < 0 || digits(name + 4, 2, &mo) < 0
	    || digits(name + 6, 2, &d) < 0)
		return -1;
	return utc_time(y, mo, d, 0, 0, 0, t);
}

int quarantine_id_time(const char *id, time_t *t)
{
	int y, mo, d, h, mi, s;
	time_t v;

	if (id == NULL || strnlen(id, QUARANTINE_ID_LEN + 1) != QUARANTINE_ID_LEN
	    || id[8] != 'T' || id[15] != '-')
		return -1;
	if (digits(id, 4, &y) < 0 || digits(id + 4, 2, &mo) < 0 || digits(id + 6, 2, &d) < 0
	    || digits(id + 9, 2, &h) < 0 || digits(id + 11, 2, &mi) < 0
	    || digits(id + 13, 2, &s) < 0)
		return -1;
	for (int i = 16; i < QUARANTINE_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return -1;
	if (utc_time(y, mo, d, h, mi, s, &v) < 0)
		return -1;
	if (t != NULL)
		*t = v;
	return 0;
}

int quarantine_id_valid(const char *id)
{
	return quarantine_id_time(id, NULL) == 0;
}

/* day_dir - "dir/YYYYMMDD" of a valid id */
static int day_dir(const char *dir, const char *id, char *out, size_t outsz)
{
	if ((size_t)snprintf(out, outsz, "%s/%.8s", dir, id) >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int quarantine_path(const char *dir, const char *id, const char *ext, char *out, size_t outsz)
{
	if (!quarantine_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if ((size_t)snprintf(out, outsz, "%s/%.8s/%s.%s", dir, id, id, ext) >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int quarantine_parse_time(const char *s, time_t now, time_t *out)
{
	size_t n = strlen(s), d = 0;
	int y, mo, dd, h = 0, mi = 0, sec = 0;
	unsigned long long v;

	if (n == 0 || n > 32)
		return -1;
	if (s[0] == '@') {
		if (n < 2 || n > 12 || strspn(s + 1, "0123456789") != n - 1)
			return -1;
		*out = (time_t)strtoll(s + 1, NULL, 10);
		return 0;
	}
	while (d < n && isdigit((unsigned char)s[d]))
		d++;
	if (d > 0 && d == n - 1 && strchr("smhdw", s[d]) != NULL) {
		static const unsigned long long unit[] = { 1, 60, 3600, 86400, 604800 };

		if (d > 9)
			return -1;
		v = strtoull(s, NULL, 10) * unit[strchr("smhdw", s[d]) - "smhdw"];
		if ((time_t)v > now)
			return -1;
		*out = now - (time_t)v;
		return 0;
	}
	/* YYYY-MM-DD, then optionally [T ]HH:MM[:SS], then optionally Z */
	if (n < 10 || digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &mo) < 0
	    || s[7] != '-' || digits(s + 8, 2, &dd) < 0)
		return -1;
	d = 10;
	if (d < n && (s[d] == 'T' || s[d] == ' ')) {
		if (n < d + 6 || digits(s + d + 1, 2, &h) < 0 || s[d + 3] != ':'
		    || digits(s + d + 4, 2, &mi) < 0)
			return -1;
		d += 6;
		if (d < n && s[d] == ':') {
			if (n < d + 3 || digits(s + d + 1, 2, &sec) < 0)
				return -1;
			d += 3;
		}
	}
	if (d < n && s[d] == 'Z')
		d++;
	if (d != n)
		return -1;
	return utc_time(y, mo, dd, h, mi, sec, out);
}

/* ------------------------------------------------------------------ */
/* storing                                                              */

/* first_header - the unfolded value of the first field called name in
 * the header section of msg, or NULL */
static json_object *first_header(const char *msg, size_t len, const char *name)
{
	struct header_field f;
	size_t pos = 0;
	char val[1000];

	while (header_next(msg, len, &pos, &f) == 1)
		if (header_name_is(&f, name)) {
			size_t n = header_unfold(&f, val, sizeof(val));

			return json_object_new_string_len(val, (int)n);
		}
	return NULL;
}

/* listener_upstream - the upstream of the listener called name, or "" */
static const char *listener_upstream(const struct config *cfg, const char *name)
{
	for (unsigned i = 0; name != NULL && i < cfg->nlisteners; i++)
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return cfg->listeners[i].upstream;
	return "";
}

/* The key of a release edit's value that is not UTF-8, in base64 (see
 * the top of the file).  Its own key, not a flag beside "value": a reader
 * that does not know it (before this branch) refuses the edit as one
 * without a value, and the release with it, rather than send the base64
 * text as the field's value. */
#define EDIT_VALUE_B64 "value_base64"

/* armor_edits - in rec's "release": {"edits": [...]}, every "value" that is
 * not valid UTF-8 replaced by EDIT_VALUE_B64, its bytes in base64, so that
 * the repair of the record's text (record_text) leaves it whole.  A record
 * read back from a version before session 19 holds such values raw. */
static void armor_edits(json_object *rec)
{
	json_object *rel, *a, *e, *v;
	struct sbuf b;

	if (!json_object_object_get_ex(rec, "release", &rel) || !json_object_is_type(rel, json_type_object)
	    || !json_object_object_get_ex(rel, "edits", &a) || !json_object_is_type(a, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_object) || !json_object_object_get_ex(e, "value", &v)
		    || !json_object_is_type(v, json_type_string)
		    || utf8_valid(json_object_get_string(v), (size_t)json_object_get_string_len(v)))
			continue;
		sbuf_init(&b, (size_t)-1);
		(void)base64_encode(&b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		json_object_object_add(e, EDIT_VALUE_B64, json_object_new_string_len(b.data, (int)b.len));
		json_object_object_del(e, "value");
		sbuf_free(&b);
	}
}

/* record_text - rec as ID.json holds it: pretty JSON and a newline, valid
 * UTF-8, the release's edits whole (see the top of the file; rec's edits
 * are armored in place).  Returns the text (owned), *len set. */
static char *record_text(json_object *rec, size_t *len)
{
	size_t n;
	const char *t;
	struct sbuf b;

	armor_edits(rec);
	t = json_object_to_json_string_length(rec, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &n);
	sbuf_init(&b, (size_t)-1);
	(void)utf8_sanitize_sbuf(&b, t, n);	/* no limit: cannot fail */
	(void)sbuf_addc(&b, '\n');
	*len = b.len;
	return sbuf_steal(&b);
}

/* record_json - the record of a new entry (see record_text), *len set */
static char *record_json(const struct config *cfg, const char *id, time_t now,
                         const struct scan_request *req, const struct scan_result *res,
                         const char *reason, const void *msg, size_t len,
                         const void *new_body, size_t new_body_len, size_t *tlen)
{
	json_object *o = json_object_new_object(), *r;
	static const char *const fields[][2] = {
		{ "From", "header_from" }, { "Subject", "subject" }, { "Message-ID", "message_id" }
	};
	struct tm tm;
	char ts[32];
	char *text;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "time", json_object_new_string(ts));
	json_object_object_add(o, "reason", json_object_new_string(reason ? reason : ""));
	json_object_object_add(o, "size", json_object_new_uint64(len));
	json_object_object_add(o, "upstream",
	    json_object_new_string(listener_upstream(cfg, req->listener)));
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_object *v = first_header(msg, len, fields[i][0]);

		if (v != NULL)
			json_object_object_add(o, fields[i][1], v);
	}
	json_object_object_add(o, "envelope", scan_request_to_json(req));
	r = scan_result_to_json(res);
	json_object_object_add(r, "quarantine_id", json_object_new_string(id));
	json_object_object_add(o, "result", r);
	json_object_object_add(o, "released", json_object_new_array());
	/* what a release applies to ID.eml: the result's edits (see
	 * quarantine.h), checked whole by quarantine_store, and the body
	 * stored for it in ID.body, if any */
	r = json_object_new_object();
	json_object_object_add(r, "edits", header_edits_to_json(res->edits, res->nedits));
	if (new_body != NULL) {
		json_object *b = json_object_new_object();

		json_object_object_add(b, "size", json_object_new_uint64(new_body_len));
		json_object_object_add(r, "body", b);
	}
	json_object_object_add(o, "release", r);
	text = record_text(o, tlen);
	json_object_put(o);
	return text;
}

/* sync_dir - make new names in dir durable */
static void sync_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
}

int quarantine_store(const struct config *cfg, const struct scan_request *req,
                     const struct scan_result *res, const char *reason,
                     const void *msg, size_t len, const void *new_body, size_t new_body_len,
                     char *id_out, size_t idsz)
{
	const char *dir = cfg->quarantine_dir;
	char id[QUARANTINE_ID_MAX], day[PATH_MAX], tmp[PATH_MAX], eml[PATH_MAX], jsn[PATH_MAX];
	char body[PATH_MAX] = "";
	char *text = NULL;
	time_t now = time(NULL);
	int attempt, saved;
	size_t tlen;

	if (idsz < QUARANTINE_ID_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (dir[0] == '\0') {
		errno = ENOENT;
		return -1;
	}
	/* a release must apply them whole: an edit cut or refused on the way
	 * back would send the sender's forged fields, or a signature that
	 * does not verify */
	if (header_edits_check(res->edits, res->nedits, QUARANTINE_RELEASE_EDITS_MAX) < 0) {
		errno = EMSGSIZE;
		return -1;
	}
	/* the release reads it back within that bound, and sends it after the
	 * header section, whose empty line it starts with */
	if (new_body != NULL && (new_body_len > len + QUARANTINE_BODY_GROWTH || new_body_len < 2
	    || memcmp(new_body, "\r\n", 2) != 0)) {
		errno = EMSGSIZE;
		return -1;
	}
	for (attempt = 0;; attempt++) {
		if (attempt == Q_ATTEMPTS) {
			errno = EEXIST;
			return -1;
		}
		if (make_id(id, sizeof(id), now) < 0)
			return -1;
		if (day_dir(dir, id, day, sizeof(day)) < 0
		    || (size_t)snprintf(tmp, sizeof(tmp), "%s/.tmp-%s.eml", day, id) >= sizeof(tmp)
		    || quarantine_path(dir, id, "eml", eml, sizeof(eml)) < 0
		    || quarantine_path(dir, id, "json", jsn, sizeof(jsn)) < 0) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (mkdir_p(day) < 0)
			return -1;
		if (write_file(tmp, msg, len) < 0) {
			/* EEXIST: a colliding ID; ENOENT: expiry removed the
			 * (then empty) day directory just now: try again */
			if (errno == EEXIST || errno == ENOENT)
				continue;
			return -1;
		}
		if (publish(tmp, eml) == 0)
			break;
		saved = errno;
		unlink(tmp);
		if (saved != EEXIST) {
			errno = saved;
			return -1;
		}
	}

	if (new_body != NULL) {
		/* before the record: an entry that says it has a rewritten body
		 * has it (a crash leaves a lone ID.body, debris for expiry) */
		if (quarantine_path(dir, id, "body", body, sizeof(body)) < 0
		    || (size_t)snprintf(tmp, sizeof(tmp), "%s/.tmp-%s.body", day, id) >= sizeof(tmp)) {
			errno = ENAMETOOLONG;
			body[0] = '\0';
			goto fail;
		}
		if (write_file(tmp, new_body, new_body_len) < 0) {
			body[0] = '\0';
			goto fail;
		}
		if (publish(tmp, body) < 0) {
			saved = errno;
			unlink(tmp);
			body[0] = '\0';	/* not ours if it exists */
			errno = saved;
			goto fail;
		}
	}
	text = record_json(cfg, id, now, req, res, reason, msg, len, new_body, new_body_len, &tlen);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.tmp-%s.json", day, id) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if (write_file(tmp, text, tlen) < 0)
		goto fail;
	if (publish(tmp, jsn) < 0) {
		saved = errno;
		unlink(tmp);
		errno = saved;
		goto fail;
	}
	free(text);
	sync_dir(day);
	sync_dir(dir);		/* the day directory may be new */
	snprintf(id_out, idsz, "%s", id);
	return 0;
fail:
	saved = errno;
	free(text);
	if (body[0] != '\0')
		unlink(body);
	unlink(eml);
	errno = saved;
	return -1;
}

/* ------------------------------------------------------------------ */
/* opening, changing, removing one entry                                */

static int qfail(char *err, size_t errlen, int e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* qfail - message into err, errno = e, returns -1 */
static int qfail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	errno = e;
	return -1;
}

/* open_regular - name (relative to dfd) for reading, only if it is a
 * regular file: the fd,
 * or -1 with errno (EBADMSG: something else is there).  The day
 * directories are the daemon user's, who can put a FIFO in place of a
 * file: a plain open() for reading then waits for a writer that never
 * comes, and every quarantine command hung there, and so did the
 * master's expiry child, a new one every hour.  So the open does not
 * wait (O_NONBLOCK), follows no link (O_NOFOLLOW) and takes no terminal
 * (O_NOCTTY); what was opened is checked (fstat, into *st), and only a
 * regular file gets its O_NONBLOCK cleared for plain reads. */
static int open_regular(int dfd, const char *name, struct stat *st)
{
	int fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC), fl, saved;

	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0)
		goto fail;
	if (!S_ISREG(st->st_mode)) {
		errno = EBADMSG;
		goto fail;
	}
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* read_record - the JSON object in name, relative to dfd (at most
 * QUARANTINE_RECORD_MAX); path: its whole name, for messages */
static json_object *read_record(int dfd, const char *name, const char *path, char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct sbuf b;
	struct stat st;
	json_object *j = NULL;
	char buf[65536];
	ssize_t n;
	int fd;

	fd = open_regular(dfd, name, &st);
	if (fd < 0 && errno == EBADMSG) {
		qfail(err, errlen, EBADMSG, "%s: not a record (not a regular file)", path);
		return NULL;
	}
	if (fd < 0) {
		qfail(err, errlen, errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (st.st_size > QUARANTINE_RECORD_MAX) {
		close(fd);
		qfail(err, errlen, EBADMSG, "%s: not a record (not a regular file, or too big)", path);
		return NULL;
	}
	sbuf_init(&b, QUARANTINE_RECORD_MAX);
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || sbuf_add(&b, buf, (size_t)n) < 0)
			break;
	}
	close(fd);
	if (n < 0) {
		qfail(err, errlen, EIO, "%s: read failed", path);
		sbuf_free(&b);
		return NULL;
	}
	tok = json_tokener_new();
	if (b.len > 0)
		j = json_tokener_parse_ex(tok, b.data, (int)b.len);
	if (j != NULL && (json_tokener_get_error(tok) != json_tokener_success
	    || !json_object_is_type(j, json_type_object))) {
		json_object_put(j);
		j = NULL;
	}
	json_tokener_free(tok);
	sbuf_free(&b);
	if (j == NULL)
		qfail(err, errlen, EBADMSG, "%s: not a JSON object", path);
	return j;
}

/* entry_open - open (and lock) the .eml; read the record if want_record */
static int entry_open(const char *dir, const char *id, unsigned flags, int want_record,
                      struct quarantine_entry *e, char *err, size_t errlen)
{
	struct stat st;
	json_object *v;

	memset(e, 0, sizeof(*e));
	e->fd = -1;
	e->dfd = -1;
	if (!quarantine_id_valid(id))
		return qfail(err, errlen, EINVAL,
		    "not a quarantine ID (YYYYMMDDTHHMMSS-xxxxxxxx): '%.*s'", 40, id ? id : "");
	snprintf(e->id, sizeof(e->id), "%s", id);
	if (quarantine_path(dir, id, "eml", e->eml, sizeof(e->eml)) < 0
	    || quarantine_path(dir, id, "json", e->json, sizeof(e->json)) < 0)
		return qfail(err, errlen, ENAMETOOLONG, "quarantine_dir too long");
	snprintf(e->eml_name, sizeof(e->eml_name), "%s.eml", id);
	snprintf(e->json_name, sizeof(e->json_name), "%s.json", id);
	snprintf(e->body_name, sizeof(e->body_name), "%s.body", id);
	{
		/* its day a real directory, not a link to elsewhere (read_names),
		 * opened once: every name of the entry is looked up from there.
		 * The user owns quarantine_dir and can swap the day for a link
		 * after any check by name; a root release then wrote the record
		 * into the link's target and left the real entry unmarked. */
		char day[PATH_MAX];

		if (day_dir(dir, id, day, sizeof(day)) < 0)
			return qfail(err, errlen, ENAMETOOLONG, "quarantine_dir too long");
		e->dfd = open(day, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (e->dfd < 0) {
			int saved = errno;

			if (saved == ENOENT)
				return qfail(err, errlen, ENOENT, "no quarantined message %s", id);
			if (saved == ELOOP || saved == ENOTDIR)
				return qfail(err, errlen, ENOENT,
				    "no quarantined message %s (%s is not a directory)", id, day);
			return qfail(err, errlen, saved, "%s: %s", day, strerror(saved));
		}
	}
	e->fd = open_regular(e->dfd, e->eml_name, &st);
	if (e->fd < 0) {
		int saved = errno;

		quarantine_close(e);
		if (saved == ENOENT)
			return qfail(err, errlen, ENOENT, "no quarantined message %s", id);
		if (saved == EBADMSG)
			return qfail(err, errlen, EBADMSG, "%s is not a regular file", e->eml);
		return qfail(err, errlen, saved, "%s: %s", e->eml, strerror(saved));
	}
	if (want_record) {
		/* read by show and release (as root): only with one name and
		 * the owner of its day, as ID.body.  The day is the daemon
		 * user's, who must not have root's release send (or show
		 * print) a file of someone else's linked in here
		 * (fs.protected_hardlinks may be off).  Expiry only removes
		 * names, and still removes such an entry. */
		struct stat day;

		if (fstat(e->dfd, &day) < 0 || st.st_nlink != 1 || st.st_uid != day.st_uid) {
			quarantine_close(e);
			return qfail(err, errlen, EBADMSG, "%s has other names or another owner than its "
			    "day directory: not read", e->eml);
		}
	}
	if ((flags & QUARANTINE_LOCK) && flock(e->fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;

		quarantine_close(e);
		if (saved == EWOULDBLOCK)
			return qfail(err, errlen, EWOULDBLOCK,
			    "%s is busy: another release or delete is working on it", id);
		return qfail(err, errlen, saved, "lock %s: %s", id, strerror(saved));
	}
	/* the record is read after the lock: an entry removed meanwhile is
	 * seen as gone, not half there */
	if (!want_record) {
		if (fstatat(e->dfd, e->json_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			quarantine_close(e);
			return qfail(err, errlen, ENOENT, "no quarantined message %s", id);
		}
		return 0;
	}
	e->rec = read_record(e->dfd, e->json_name, e->json, err, errlen);
	if (e->rec == NULL) {
		int saved = errno;

		quarantine_close(e);
		if (saved == ENOENT)
			return qfail(err, errlen, ENOENT, "no quarantined message %s", id);
		errno = saved;
		return -1;
	}
	if (!json_object_object_get_ex(e->rec, "id", &v) || !json_object_is_type(v, json_type_string)
	    || strcmp(json_object_get_string(v), id) != 0) {
		quarantine_close(e);
		return qfail(err, errlen, EBADMSG, "the record of %s names another ID", id);
	}
	return 0;
}

int quarantine_open(const char *dir, const char *id, unsigned flags,
                    struct quarantine_entry *e, char *err, size_t errlen)
{
	return entry_open(dir, id, flags, 1, e, err, errlen);
}

void quarantine_close(struct quarantine_entry *e)
{
	if (e->fd >= 0)
		close(e->fd);	/* releases the lock */
	e->fd = -1;
	if (e->dfd >= 0)
		close(e->dfd);
	e->dfd = -1;
	if (e->rec != NULL)
		json_object_put(e->rec);
	e->rec = NULL;
}

/* read_whole - the regular file open at fd, read into memory (see
 * quarantine_message) */
static char *read_whole(int fd, size_t limit, size_t *len)
{
	struct stat st;
	size_t got = 0, n;
	char *p, extra;
	ssize_t r = 0;

	if (fstat(fd, &st) < 0)
		return NULL;
	if ((uintmax_t)st.st_size > (uintmax_t)limit || (uintmax_t)st.st_size >= (uintmax_t)SIZE_MAX) {
		errno = EFBIG;
		return NULL;
	}
	n = (size_t)st.st_size;
	p = xmalloc(n + 1);
	/* pread: the descriptor's offset is nobody else's business, and a
	 * second call reads the same bytes */
	while (got < n) {
		r = pread(fd, p + got, n - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	/* fewer bytes than fstat said, or more after them: changed meanwhile */
	if (got == n)
		r = pread(fd, &extra, 1, (off_t)n);
	if (got < n || r != 0) {
		int saved = r < 0 ? errno : ESTALE;

		free(p);
		errno = saved;
		return NULL;
	}
	p[n] = '\0';
	*len = n;
	return p;
}

char *quarantine_message(const struct quarantine_entry *e, size_t limit, size_t *len)
{
	return read_whole(e->fd, limit, len);
}

int quarantine_release_body(const struct quarantine_entry *e, size_t limit, char **body,
                            size_t *len, char *err, size_t errlen)
{
	json_object *rel, *b, *size;
	struct stat st, eml;
	int64_t want;
	int fd, saved;

	*body = NULL;
	*len = 0;
	if (!json_object_object_get_ex(e->rec, "release", &rel) || !json_object_is_type(rel, json_type_object)
	    || !json_object_object_get_ex(rel, "body", &b))
		return 0;
	if (!json_object_is_type(b, json_type_object) || !json_object_object_get_ex(b, "size", &size)
	    || !json_object_is_type(size, json_type_int) || (want = json_object_get_int64(size)) < 2)
		return qfail(err, errlen, EBADMSG, "%s: the rewritten body of its release is malformed "
		    "in its record", e->id);
	/* opened as ID.eml is (no link followed, no FIFO waited on), and only
	 * with one name and the owner of ID.eml: the day is the daemon user's,
	 * who must not have root's release send a file of someone else's
	 * linked in here (protected_hardlinks may be off) */
	fd = open_regular(e->dfd, e->body_name, &st);
	if (fd < 0) {
		saved = errno;
		if (saved == EBADMSG)
			return qfail(err, errlen, EBADMSG, "%s.body is not a regular file", e->id);
		return qfail(err, errlen, saved, "%s.body: %s", e->id, strerror(saved));
	}
	if (fstat(e->fd, &eml) < 0 || st.st_nlink != 1 || st.st_uid != eml.st_uid) {
		close(fd);
		return qfail(err, errlen, EBADMSG, "%s.body has other names or another owner than "
		    "%s.eml: not sent", e->id, e->id);
	}
	*body = read_whole(fd, limit, len);
	saved = errno;
	close(fd);
	if (*body == NULL) {
		if (saved == EFBIG)
			return qfail(err, errlen, EFBIG, "%s.body: larger than %zu bytes", e->id, limit);
		if (saved == ESTALE)
			return qfail(err, errlen, ESTALE, "%s.body: changed while it was read", e->id);
		return qfail(err, errlen, saved, "%s.body: %s", e->id, strerror(saved));
	}
	/* the release puts it after the header section: it must be what was
	 * stored, starting with the empty line that ends that section */
	if ((uint64_t)want != *len || *len < 2 || memcmp(*body, "\r\n", 2) != 0) {
		free(*body);
		*body = NULL;
		*len = 0;
		return qfail(err, errlen, EBADMSG, "%s.body is not the rewritten body its record "
		    "describes (%lld bytes)", e->id, (long long)want);
	}
	return 1;
}

/* The edits a release matches against every header field of ID.eml
 * (header_edit.c: each HE_REMOVE, HE_REMOVE_PREFIX and HE_CHANGE, and each name of the
 * HE_REMOVE_AT ones): a scan makes at most MW_MAX_EDITS of them from its
 * filters, and a few of its own (the Content-* fields of a rewritten body,
 * X-Spam-*, Subject, the Authentication-Results it removes).  The record
 * is the daemon user's to write: 4096 removals of distinct names over an
 * ID.eml of 400,000 short fields cost root's release 17 s of CPU. */
#define RELEASE_MATCHED_EDITS_MAX (MW_MAX_EDITS + 16)

/* matched_edits_ok - the edits are within RELEASE_MATCHED_EDITS_MAX */
static int matched_edits_ok(const struct header_edit *edits, size_t n)
{
	const char *at_names[RELEASE_MATCHED_EDITS_MAX];
	size_t matched = 0, nat = 0, i, k;

	for (i = 0; i < n; i++) {
		const struct header_edit *h = &edits[i];

		if (h->op == HE_REMOVE_AT) {
			for (k = 0; k < nat && strcasecmp(at_names[k], h->name) != 0; k++)
				;
			if (k < nat)
				continue;       /* another field of a name counted */
		} else if (h->op != HE_REMOVE && h->op != HE_REMOVE_PREFIX && h->op != HE_CHANGE)
			continue;
		if (matched == RELEASE_MATCHED_EDITS_MAX)
			return 0;
		matched++;
		if (h->op == HE_REMOVE_AT)
			at_names[nat++] = h->name;
	}
	return 1;
}

/* unarmored_edits - the recorded edits array a as header_edits_from_json
 * reads it: each edit with EDIT_VALUE_B64 (armor_edits) copied with its
 * decoded bytes as "value".  Returns a new reference (a itself when no
 * edit is armored, or when a is not an array: the decoder refuses that),
 * or NULL with the message in err: the record is the daemon user's file,
 * and root's release sends nothing it cannot read exactly. */
static json_object *unarmored_edits(const char *id, json_object *a, char *err, size_t errlen)
{
	json_object *out, *e, *v;
	size_t n, i;

	if (!json_object_is_type(a, json_type_array))
		return json_object_get(a);
	n = json_object_array_length(a);
	for (i = 0; i < n; i++)
		if (json_object_object_get_ex(json_object_array_get_idx(a, i), EDIT_VALUE_B64, NULL))
			break;
	if (i == n)
		return json_object_get(a);
	out = json_object_new_array_ext((int)n);
	for (i = 0; i < n; i++) {
		struct sbuf b;
		json_object *copy;
		const char *why = NULL;

		e = json_object_array_get_idx(a, i);
		if (!json_object_object_get_ex(e, EDIT_VALUE_B64, &v)) {
			json_object_array_add(out, json_object_get(e));
			continue;
		}
		/* bounded before it is decoded: no value of a release's edits is
		 * longer than all of them may be (header_edits_check, after);
		 * armor_edits writes no empty one ("" is UTF-8) */
		sbuf_init(&b, QUARANTINE_RELEASE_EDITS_MAX);
		if (json_object_object_get_ex(e, "value", NULL))
			why = "both value and " EDIT_VALUE_B64;
		else if (!json_object_is_type(v, json_type_string)
		    || (size_t)json_object_get_string_len(v) > base64_len(QUARANTINE_RELEASE_EDITS_MAX)
		    || base64_decode(&b, json_object_get_string(v), (size_t)json_object_get_string_len(v)) < 0
		    || b.len == 0)
			why = "its " EDIT_VALUE_B64 " is not base64 of a value";
		if (why != NULL) {
			sbuf_free(&b);
			json_object_put(out);
			qfail(err, errlen, EBADMSG, "%s: the header edits of its release are malformed "
			    "(edit %zu: %s)", id, i + 1, why);
			return NULL;
		}
		copy = json_object_new_object();
		json_object_object_foreach(e, k, kv)
			if (strcmp(k, EDIT_VALUE_B64) != 0)
				json_object_object_add(copy, k, json_object_get(kv));
		json_object_object_add(copy, "value", json_object_new_string_len(b.data, (int)b.len));
		sbuf_free(&b);
		json_object_array_add(out, copy);
	}
	return out;
}

int quarantine_release_edits(const struct quarantine_entry *e, struct header_edit **edits,
                             size_t *nedits, char *err, size_t errlen)
{
	json_object *rel, *a, *plain;
	int bad;

	*edits = NULL;
	*nedits = 0;
	if (!json_object_object_get_ex(e->rec, "release", &rel))
		return 0;
	if (!json_object_is_type(rel, json_type_object) || !json_object_object_get_ex(rel, "edits", &a))
		return qfail(err, errlen, EBADMSG, "%s: the header edits of its release are malformed",
		    e->id);
	/* a value recorded in base64 is checked, once decoded, as every
	 * other: header_edits_from_json refuses a NUL, a CR or LF that is
	 * not folding, a removal with a value */
	if ((plain = unarmored_edits(e->id, a, err, errlen)) == NULL)
		return -1;
	bad = header_edits_from_json(plain, edits, nedits) < 0;
	json_object_put(plain);
	if (bad)
		return qfail(err, errlen, EBADMSG, "%s: the header edits of its release are malformed",
		    e->id);
	/* recorded before session 18 gave the policy's X-Spam-* removal its
	 * own op: "remove" of "X-Spam-*" meant the prefix. Only that name: a
	 * filter's removal is literal now, and a record written today with
	 * remove "D*" must not strip Date and DKIM-Signature at release */
	for (size_t i = 0; i < *nedits; i++) {
		struct header_edit *h = &(*edits)[i];

		if (h->op == HE_REMOVE && strcasecmp(h->name, POLICY_HDR_PREFIX "*") == 0) {
			h->op = HE_REMOVE_PREFIX;
			h->name[strlen(POLICY_HDR_PREFIX)] = '\0';
		}
	}
	if (header_edits_check(*edits, *nedits, QUARANTINE_RELEASE_EDITS_MAX) < 0) {
		header_edits_free(*edits, *nedits);
		*edits = NULL;
		*nedits = 0;
		return qfail(err, errlen, EBADMSG, "%s: the header edits of its release are too large",
		    e->id);
	}
	if (!matched_edits_ok(*edits, *nedits)) {
		header_edits_free(*edits, *nedits);
		*edits = NULL;
		*nedits = 0;
		return qfail(err, errlen, EBADMSG, "%s: the header edits of its release remove or "
		    "change more fields than a scan does (%d names at most)", e->id,
		    RELEASE_MATCHED_EDITS_MAX);
	}
	return 1;
}

int quarantine_save_record(struct quarantine_entry *e)
{
	char tmp[QUARANTINE_ID_MAX + 16];
	struct stat st;
	char *line;
	size_t n;
	int rc;

	/* every name relative to the day opened with the entry: see
	 * entry_open */
	snprintf(tmp, sizeof(tmp), ".tmp-%s.json", e->id);
	/* a record stored before session 19 may hold invalid UTF-8: repaired
	 * as it is rewritten */
	line = record_text(e->rec, &n);
	unlinkat(e->dfd, tmp, 0);	/* debris of a save that crashed */
	/* keep the owner: an admin running this as root must not leave a
	 * record the daemon's user cannot rewrite */
	if (fstat(e->fd, &st) < 0) {
		free(line);
		return -1;
	}
	rc = write_file_as(e->dfd, tmp, line, n,
	    st.st_uid != geteuid() ? st.st_uid : (uid_t)-1, st.st_gid != getegid() ? st.st_gid : (gid_t)-1);
	free(line);
	if (rc < 0)
		return -1;
	if (renameat(e->dfd, tmp, e->dfd, e->json_name) < 0) {
		int saved = errno;

		unlinkat(e->dfd, tmp, 0);
		errno = saved;
		return -1;
	}
	(void)fsync(e->dfd);
	return 0;
}

int quarantine_remove(struct quarantine_entry *e)
{
	if (unlinkat(e->dfd, e->json_name, 0) < 0 && errno != ENOENT)
		return -1;
	if (unlinkat(e->dfd, e->body_name, 0) < 0 && errno != ENOENT)
		return -1;
	if (unlinkat(e->dfd, e->eml_name, 0) < 0 && errno != ENOENT)
		return -1;
	(void)fsync(e->dfd);
	return 0;
}

/* ------------------------------------------------------------------ */
/* listing and expiry                                                   */

struct names {
	char (*v)[QUARANTINE_ID_MAX + 16];
	size_t n, cap;
};

static void names_add(struct names *a, const char *s)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xrealloc(a->v, a->cap * sizeof(a->v[0]));
	}
	size_t n = strnlen(s, sizeof(a->v[0]) - 1);	/* callers keep short names only */

	memcpy(a->v[a->n], s, n);
	a->v[a->n++][n] = '\0';
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* read_names - the names in the directory open at dfd that keep(name)
 * accepts, sorted; with dirs_only, of real directories only.  0, or -1
 * with errno.
 *
 * A day that is a symlink is skipped: the master expires entries as well
 * as the CLI run by root, and a link from the user's quarantine to
 * another directory must not make them remove files there. */
static int read_names(int dfd, int (*keep)(const char *), int dirs_only, struct names *out)
{
	struct dirent *de;
	struct stat st;
	int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);

	memset(out, 0, sizeof(*out));
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL)
		if (keep(de->d_name) && (!dirs_only
		    || (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
		        && S_ISDIR(st.st_mode))))
			names_add(out, de->d_name);
	closedir(d);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(out->v[0]), names_cmp);
	return 0;
}

static int is_day_name(const char *name)
{
	time_t t;

	return day_time(name, &t) == 0;
}

/* is_entry_file - "ID.json", "ID.eml", "ID.body", ".tmp-ID.*": the names we own */
static int is_entry_file(const char *name)
{
	char id[QUARANTINE_ID_MAX];
	size_t n;

	if (strncmp(name, ".tmp-", 5) == 0)
		name += 5;
	n = strlen(name);
	if (n < QUARANTINE_ID_LEN + 1 || name[QUARANTINE_ID_LEN] != '.')
		return 0;
	memcpy(id, name, QUARANTINE_ID_LEN);
	id[QUARANTINE_ID_LEN] = '\0';
	return quarantine_id_valid(id);
}

static void free_names(struct names *a)
{
	free(a->v);
	memset(a, 0, sizeof(*a));
}

/* open_top - quarantine_dir itself (the admin names it: a link there is
 * followed) */
static int open_top(const char *dir)
{
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* open_day - day name under top, never through a link: it is read, and
 * what is in it removed, relative to the descriptor (read_names checked
 * it was a directory; the user can swap it for a link since) */
static int open_day(int top, const char *name)
{
	return openat(top, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int quarantine_list(const char *dir, time_t since, quarantine_list_fn fn, void *arg,
                    char *err, size_t errlen)
{
	struct names days, files;
	int rc = 0, top, dfd;

	if ((top = open_top(dir)) < 0 || read_names(top, is_day_name, 1, &days) < 0) {
		int saved = errno;

		if (top >= 0)
			close(top);
		if (saved == ENOENT)
			return 0;
		return qfail(err, errlen, saved, "%s: %s", dir, strerror(saved));
	}
	for (size_t i = 0; i < days.n && rc == 0; i++) {
		time_t t;

		day_time(days.v[i], &t);
		if (since > 0 && t + 86400 <= since)
			continue;
		if ((dfd = open_day(top, days.v[i])) < 0) {
			/* expired meanwhile, or a link now: neither is listed */
			if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
				continue;
			rc = qfail(err, errlen, errno, "%s/%s: %s", dir, days.v[i], strerror(errno));
			break;
		}
		if (read_names(dfd, is_entry_file, 0, &files) < 0) {
			rc = qfail(err, errlen, errno, "%s/%s: %s", dir, days.v[i], strerror(errno));
			close(dfd);
			break;
		}
		close(dfd);
		for (size_t k = 0; k < files.n && rc == 0; k++) {
			char *name = files.v[k];
			size_t n = strlen(name);

			if (name[0] == '.' || n != QUARANTINE_ID_LEN + 5
			    || strcmp(name + QUARANTINE_ID_LEN, ".json") != 0
			    || strncmp(name, days.v[i], 8) != 0)
				continue;
			name[QUARANTINE_ID_LEN] = '\0';
			if (since > 0 && quarantine_id_time(name, &t) == 0 && t < since)
				continue;
			if (fn(arg, name) < 0)
				rc = -1;
		}
		free_names(&files);
	}
	free_names(&days);
	close(top);
	return rc;
}

/* expire_entry - remove entry id if nobody holds its lock */
static void expire_entry(const char *dir, const char *id, struct quarantine_expiry *st)
{
	struct quarantine_entry e;

	if (entry_open(dir, id, QUARANTINE_LOCK, 0, &e, NULL, 0) < 0) {
		if (errno == EWOULDBLOCK)
			st->busy++;
		else if (errno != ENOENT)
			st->errors++;
		return;
	}
	if (quarantine_remove(&e) == 0)
		st->removed++;
	else
		st->errors++;
	quarantine_close(&e);
}

/* expire_debris - remove name in the day open at dfd (a temporary file or
 * a lone .eml) if it is older than QUARANTINE_DEBRIS_AGE */
static void expire_debris(int dfd, const char *name, time_t now, struct quarantine_expiry *st)
{
	struct stat sb;

	if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode)
	    || sb.st_mtime + QUARANTINE_DEBRIS_AGE > now)
		return;
	if (unlinkat(dfd, name, 0) == 0)
		st->debris++;
	else if (errno != ENOENT)
		st->errors++;
}

int quarantine_expire(const char *dir, time_t cutoff, time_t now, struct quarantine_expiry *st,
                      char *err, size_t errlen)
{
	struct names days, files;
	char json[QUARANTINE_ID_MAX + 8];
	time_t today = now - now % 86400;
	struct stat sb;
	int top, dfd;

	memset(st, 0, sizeof(*st));
	if ((top = open_top(dir)) < 0 || read_names(top, is_day_name, 1, &days) < 0) {
		int saved = errno;

		if (top >= 0)
			close(top);
		if (saved == ENOENT)
			return 0;
		return qfail(err, errlen, saved, "%s: %s", dir, strerror(saved));
	}
	for (size_t i = 0; i < days.n; i++) {
		time_t day;

		day_time(days.v[i], &day);
		if ((dfd = open_day(top, days.v[i])) < 0) {
			/* gone meanwhile, or a link now: not expired through */
			if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR)
				st->errors++;
			continue;
		}
		if (read_names(dfd, is_entry_file, 0, &files) < 0) {
			st->errors++;
			close(dfd);
			continue;
		}
		for (size_t k = 0; k < files.n; k++) {
			char *name = files.v[k];
			size_t n = strlen(name);
			char id[QUARANTINE_ID_MAX];
			time_t t;

			if (name[0] == '.') {
				expire_debris(dfd, name, now, st);
				continue;
			}
			memcpy(id, name, QUARANTINE_ID_LEN);
			id[QUARANTINE_ID_LEN] = '\0';
			if (quarantine_id_time(id, &t) < 0)
				continue;
			if (n == QUARANTINE_ID_LEN + 5 && strcmp(name + QUARANTINE_ID_LEN, ".json") == 0) {
				if (t < cutoff)
					expire_entry(dir, id, st);
			} else if (((n == QUARANTINE_ID_LEN + 4
			    && strcmp(name + QUARANTINE_ID_LEN, ".eml") == 0)
			    || (n == QUARANTINE_ID_LEN + 5 && strcmp(name + QUARANTINE_ID_LEN, ".body") == 0))
			    && snprintf(json, sizeof(json), "%s.json", id) > 0
			    && fstatat(dfd, json, &sb, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
				/* a .eml or .body without its record: a store that
				 * crashed before the record's rename (or one in
				 * progress) */
				expire_debris(dfd, name, now, st);
			}
		}
		free_names(&files);
		close(dfd);
		/* an emptied past day goes; never today's, which a scanner may be
		 * about to write into (it retries if this races anyway).  A link
		 * put in its place is not a directory: rmdir leaves it. */
		if (day < today && unlinkat(top, days.v[i], AT_REMOVEDIR) < 0 && errno != ENOTEMPTY
		    && errno != EEXIST && errno != ENOENT && errno != ENOTDIR)
			st->errors++;
	}
	free_names(&days);
	close(top);
	return 0;
}

void quarantine_expire_run(const struct config *cfg)
{
	struct quarantine_expiry st;
	time_t now = time(NULL);
	char err[512];

	if (cfg->quarantine_max_age == 0 || cfg->quarantine_dir[0] == '\0')
		return;
	if (quarantine_expire(cfg->quarantine_dir, now - (time_t)cfg->quarantine_max_age,
	    now, &st, err, sizeof(err)) < 0) {
		slog(NULL, LOG_WARNING, "quarantine expiry: %s", err);
		return;
	}
	if (st.removed > 0 || st.debris > 0 || st.errors > 0)
		slog(NULL, st.errors > 0 ? LOG_WARNING : LOG_INFO,
		    "quarantine expiry: removed=%u debris=%u busy=%u errors=%u",
		    st.removed, st.debris, st.busy, st.errors);
}
