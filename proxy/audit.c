/* audit.c - the audit log; see audit.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"
#include "sbuf.h"
#include "utf8.h"

static int audit_fd = -1;

int audit_open(const char *path)
{
	if (path == NULL || path[0] == '\0') {
		audit_close();
		return 0;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) return -1;
	if (audit_fd < 0) {
		audit_fd = fd;
		return 0;
	}
	/* reopen (log rotation, reload) while other threads may be writing:
	 * dup3 swaps the file under the same descriptor number atomically */
	if (dup3(fd, audit_fd, O_CLOEXEC) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

void audit_close(void)
{
	if (audit_fd >= 0) close(audit_fd);
	audit_fd = -1;
}

json_object *json_string_bytes(const char *p, size_t len)
{
	return json_object_new_string_len(p, (int)len);
}

json_object *json_number(double d, int decimals)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.*f", decimals, d);
	/* trim trailing zeros, keep one decimal: 6.000 -> 6.0 */
	char *dot = strchr(buf, '.');
	if (dot) {
		char *end = buf + strlen(buf) - 1;
		while (end > dot + 1 && *end == '0') *end-- = '\0';
	}
	return json_object_new_double_s(d, buf);
}

void audit_write(json_object *rec)
{
	if (audit_fd < 0) {
		json_object_put(rec);
		return;
	}
	size_t len;
	const char *text = json_object_to_json_string_length(rec, JSON_C_TO_STRING_PLAIN |
	                                                     JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct sbuf line;
	sbuf_init(&line, (size_t)-1);
	utf8_sanitize_sbuf(&line, text, len);
	sbuf_addc(&line, '\n');
	ssize_t w = write(audit_fd, line.data, line.len);
	if (w < 0 || (size_t)w != line.len)
		slog_errno(NULL, LOG_ERR, "audit log write");
	sbuf_free(&line);
	json_object_put(rec);
}
