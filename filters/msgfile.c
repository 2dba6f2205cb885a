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
