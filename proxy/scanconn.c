/* scanconn.c - see scanconn.h */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "scanconn.h"
#include "scanproto.h"

int scanconn_gone(int e)
{
	return e == EPIPE || e == ECONNRESET || e == ENOTCONN || e == ECONNREFUSED;
}

int scanconn_send_again(int e, int kept_idle)
{
	return kept_idle && scanconn_gone(e);
}

void scanconn_unsent_why(int e, char *buf, size_t len)
{
	char big[80];
	const char *what;

	switch (e) {
	case EMSGSIZE:
		/* scanproto_envelope_fd: past SCANPROTO_MAX_REQUEST */
		snprintf(big, sizeof(big), "the request is too big for the scanner (past %d MiB)",
		    SCANPROTO_MAX_REQUEST >> 20);
		what = big;
		break;
	case ENOMEM:
	case EMFILE:
	case ENFILE:
		what = "no memory or descriptor for its memfd";
		break;
	default:
		what = "the request's own failure, not the scanner's";
		break;
	}
	snprintf(buf, len, "scan request not sent: %s (%s)", what, strerror(e));
}
