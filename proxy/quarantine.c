/* quarantine.c - store a quarantined message with its envelope and result.
 *
 * Why write-fsync-rename: the client is told 250 for a quarantined message
 * (nothing goes upstream), so the copy here is the only one.  It must be
 * whole and on disk before that reply, and a crash must leave either a
 * complete entry or debris under a ".tmp-" name, never a truncated ID.eml.
 * The .json goes last: its presence is what makes an entry.
 *
 * The .json keeps the envelope bytes as they came (json-c passes bytes >=
 * 0x80 through unchanged), so a release can replay the exact addresses; a
 * reader wanting strict UTF-8 sanitizes on display.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/quarantine.h"

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

/* write_file - create path (must not exist), write it all, fsync, close. */
static int write_file(const char *path, const void *p, size_t len)
{
	const char *b = p;
	ssize_t w;
	int fd, saved;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	while (len > 0) {
		w = write(fd, b, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		b += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0)
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
	unlink(path);
	errno = saved;
	return -1;
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

static char *record_json(const char *id, time_t now, const struct scan_request *req,
                         const struct scan_result *res, const char *reason, size_t len)
{
	json_object *o = json_object_new_object(), *r;
	struct tm tm;
	char ts[32];
	char *text;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "time", json_object_new_string(ts));
	json_object_object_add(o, "reason", json_object_new_string(reason ? reason : ""));
	json_object_object_add(o, "size", json_object_new_uint64(len));
	json_object_object_add(o, "envelope", scan_request_to_json(req));
	r = scan_result_to_json(res);
	json_object_object_add(r, "quarantine_id", json_object_new_string(id));
	json_object_object_add(o, "result", r);
	text = strdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

int quarantine_store(const char *dir, const struct scan_request *req,
                     const struct scan_result *res, const char *reason,
                     const void *msg, size_t len, char *id_out, size_t idsz)
{
	char id[QUARANTINE_ID_MAX], tmp[PATH_MAX], eml[PATH_MAX], jsn[PATH_MAX];
	char *text = NULL;
	time_t now = time(NULL);
	int attempt, saved, dfd;
	size_t tlen;

	if (idsz < QUARANTINE_ID_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (dir == NULL || mkdir_p(dir) < 0)
		return -1;
	for (attempt = 0;; attempt++) {
		if (attempt == Q_ATTEMPTS) {
			errno = EEXIST;
			return -1;
		}
		if (make_id(id, sizeof(id), now) < 0)
			return -1;
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.tmp-%s.eml", dir, id) >= sizeof(tmp)
		    || (size_t)snprintf(eml, sizeof(eml), "%s/%s.eml", dir, id) >= sizeof(eml)
		    || (size_t)snprintf(jsn, sizeof(jsn), "%s/%s.json", dir, id) >= sizeof(jsn)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (write_file(tmp, msg, len) < 0) {
			if (errno == EEXIST)
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

	text = record_json(id, now, req, res, reason, len);
	if (text == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	tlen = strlen(text);
	text[tlen] = '\n';	/* replaces the NUL; length kept below */
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s.json", dir, id);
	if (write_file(tmp, text, tlen + 1) < 0)
		goto fail;
	if (publish(tmp, jsn) < 0) {
		saved = errno;
		unlink(tmp);
		errno = saved;
		goto fail;
	}
	free(text);
	/* make the new names durable too */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	snprintf(id_out, idsz, "%s", id);
	return 0;
fail:
	saved = errno;
	free(text);
	unlink(eml);
	errno = saved;
	return -1;
}
