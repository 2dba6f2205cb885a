/* msgfile.c - see msgfile.h */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "filters/msgfile.h"

int msgfile_read_fd(int fd, struct sbuf *b)
{
	char buf[65536];
	ssize_t n;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (sbuf_add(b, buf, (size_t)n) < 0) {
			errno = EFBIG;
			return -1;
		}
	}
}

void msgfile_to_spool(const char *in, size_t len, struct sbuf *out)
{
	size_t i = 0, start;

	if (len >= 5 && memcmp(in, "From ", 5) == 0) {
		const char *lf = memchr(in, '\n', len);

		i = lf ? (size_t)(lf - in) + 1 : len;
	}
	for (start = i; i < len; i++) {
		if (in[i] != '\n' || (i > 0 && in[i - 1] == '\r'))
			continue;
		sbuf_add(out, in + start, i - start);
		sbuf_add(out, "\r\n", 2);
		start = i + 1;
	}
	sbuf_add(out, in + start, len - start);
}

void msgfile_mbox_to_spool(const char *in, size_t len, struct sbuf *out)
{
	size_t i = 0;

	while (i < len) {
		const char *lf = memchr(in + i, '\n', len - i);
		size_t end = lf ? (size_t)(lf - in) : len, j = i;

		/* ">>From " -> ">From ": one '>' off a run of them before "From " */
		while (j < end && in[j] == '>')
			j++;
		if (j > i && end - j >= 5 && memcmp(in + j, "From ", 5) == 0)
			i++;
		sbuf_add(out, in + i, (end > i && in[end - 1] == '\r' ? end - 1 : end) - i);
		if (lf)
			sbuf_add(out, "\r\n", 2);
		else if (end > i && in[end - 1] == '\r')
			sbuf_add(out, "\r", 1);
		i = end + 1;
	}
}

void msgfile_iter_init(struct msgfile_iter *it, const char *data, size_t len)
{
	memset(it, 0, sizeof(*it));
	it->data = data;
	it->len = len;
	it->mbox = len >= 5 && memcmp(data, "From ", 5) == 0;
}

/* from_line_at - is there a From_ line at off that starts a message: it
 * follows an empty line, and reads "From SENDER DATE" with a time (h:mm)
 * in the date, so that an unquoted "From the desk of ..." paragraph of a
 * message (mboxo writers, a single-message file with a From_ line) does
 * not cut it in two.  (Of the 3,056 SpamAssassin corpus files, each one
 * message with a From_ line, one has a paragraph starting "From " after
 * an empty line; none a From_ line with a time.) */
static int from_line_at(const char *d, size_t len, size_t off)
{
	size_t i, end;

	if (off < 2 || len - off < 5 || memcmp(d + off, "From ", 5) != 0 || d[off - 1] != '\n')
		return 0;
	/* the line before: empty ("\n" or "\r\n") */
	if (!(d[off - 2] == '\n' || (d[off - 2] == '\r' && (off == 2 || d[off - 3] == '\n'))))
		return 0;
	for (end = off + 5; end < len && d[end] != '\n'; end++)
		;
	for (i = off + 5; i < end && d[i] != ' ' && d[i] != '\t'; i++)    /* the sender */
		;
	if (i == off + 5)
		return 0;
	for (; i + 3 < end; i++)
		if (d[i] >= '0' && d[i] <= '9' && d[i + 1] == ':' && d[i + 2] >= '0' && d[i + 2] <= '9'
		    && d[i + 3] >= '0' && d[i + 3] <= '9')
			return 1;
	return 0;
}

int msgfile_next(struct msgfile_iter *it, const char **msg, size_t *len)
{
	const char *d = it->data;
	size_t start, end, i;
	const char *lf;

	if (it->done)
		return 0;
	if (!it->mbox) {
		it->done = 1;
		*msg = d;
		*len = it->len;
		return 1;
	}
	if (it->off >= it->len) {
		it->done = 1;
		return 0;
	}
	/* it->off is at a From_ line: the message starts after it */
	lf = memchr(d + it->off, '\n', it->len - it->off);
	start = lf ? (size_t)(lf - d) + 1 : it->len;
	for (i = start, end = it->len; i < it->len; ) {
		if (from_line_at(d, it->len, i)) {
			end = i;
			break;
		}
		lf = memchr(d + i, '\n', it->len - i);
		if (lf == NULL)
			break;
		i = (size_t)(lf - d) + 1;
	}
	it->off = end;
	/* the empty line before the next From_ line separates, it is no
	 * part of the message */
	if (end < it->len) {
		if (end - start >= 2 && d[end - 2] == '\r' && d[end - 1] == '\n')
			end -= 2;
		else if (end - start >= 1 && d[end - 1] == '\n')
			end -= 1;
	}
	*msg = d + start;
	*len = end - start;
	return 1;
}

int msgfile_is_message(const char *msg, size_t len)
{
	size_t i = 0;

	while (i < len && i < 77 && ((msg[i] >= 'a' && msg[i] <= 'z') || (msg[i] >= 'A' && msg[i] <= 'Z')
	    || (msg[i] >= '0' && msg[i] <= '9') || msg[i] == '-' || msg[i] == '_' || msg[i] == '.'))
		i++;
	if (i == 0 || i > 76)
		return 0;
	while (i < len && (msg[i] == ' ' || msg[i] == '\t'))
		i++;
	return i < len && msg[i] == ':';
}
