/* smtpsend.h - a small blocking SMTP client with a deadline on every step,
 * for commands that send one message and exit ("mailwarden quarantine
 * release").  The daemon's own client (upstream.c) is event-driven; this
 * one keeps a command-line tool simple: each call waits at most its
 * timeout, and the socket is closed on any failure.  Plain SMTP: no TLS.
 */
#ifndef MW_SMTPSEND_H
#define MW_SMTPSEND_H

#include <stddef.h>

#include "proxy/netaddr.h"
#include "proxy/smtp_parse.h"

struct smtpsend {
	int    fd;
	char   in[4096];         /* bytes read, not yet used */
	size_t inlen;
	char   err[256];         /* why the last call failed */
	int    msg_sent;         /* the whole message and its end (DATA's dot, or
	                          * every octet of BDAT ... LAST) were written: a
	                          * failure after it (no reply, the connection
	                          * closed) leaves unknown whether the server
	                          * queued the message */
};

/* smtpsend_connect - connect to a (within timeout_ms) and read the
 * greeting into *greeting.  0 (whatever its code), or -1 with c->err. */
int smtpsend_connect(struct smtpsend *c, const struct netaddr *a, unsigned timeout_ms,
                     struct smtp_reply *greeting);

/* smtpsend_command - send line (no CRLF; must hold no CR or LF) and read
 * the reply into *r, each within timeout_ms.  0 when a well-formed reply
 * came (any code), -1 with c->err (I/O error, timeout, malformed reply). */
int smtpsend_command(struct smtpsend *c, const char *line, unsigned timeout_ms,
                     struct smtp_reply *r);

/* smtpsend_data - after a 354: the message msg[0..len) (CRLF lines, not
 * dot-stuffed; stuffed here) and the final ".", each write making progress
 * within write_ms; then the reply within reply_ms.  0 or -1 as above. */
int smtpsend_data(struct smtpsend *c, const char *msg, size_t len, unsigned write_ms,
                  unsigned reply_ms, struct smtp_reply *r);

/* smtpsend_bdat - instead of DATA: "BDAT len LAST" and the message
 * msg[0..len) as it is (RFC 3030: no dot-stuffing, no line rules, so a
 * BODY=BINARYMIME message goes byte for byte), each write making progress
 * within write_ms; then the reply within reply_ms.  0 or -1 as above. */
int smtpsend_bdat(struct smtpsend *c, const char *msg, size_t len, unsigned write_ms,
                  unsigned reply_ms, struct smtp_reply *r);

/* smtpsend_close - QUIT (waiting at most timeout_ms for its reply) if the
 * connection is still up, then close. */
void smtpsend_close(struct smtpsend *c, unsigned timeout_ms);

/* smtpsend_reply_text - the reply's lines joined by a space, without CRLF
 * (at most outsz-1 bytes).  Returns out. */
char *smtpsend_reply_text(const struct smtp_reply *r, char *out, size_t outsz);

#endif
