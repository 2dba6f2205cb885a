/* scanproto.h - what a front end (proxy, milter, the scan command) asks the
 * scanner, and what it answers; and how both travel between processes.
 *
 * Transport: a SOCK_SEQPACKET unix socket; one packet per request or
 * result, its payload a compact binary encoding (scan_request_encode,
 * scan_result_encode: both ends are the same program, and decoding JSON
 * with json-c cost a tenth of the scanner's CPU per message).  A request
 * carries the spool's file descriptor (memfd, message content as CRLF
 * lines, not dot-stuffed) with SCM_RIGHTS, or a small message inline after
 * its encoding.  Results come back in any order, matched by id.  The JSON
 * forms below remain for "mailwarden scan" output and for tests.
 */
#ifndef MW_SCANPROTO_H
#define MW_SCANPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <json-c/json.h>
#include "mailwarden/filter.h"

#define SCANPROTO_MAX_PACKET (256 * 1024)

/* Big envelopes.  Every recipient goes into the request, and one packet
 * holds 256 KiB: 1000 recipients of ~300 octets do not fit it.  A request
 * whose encoding does not fit one packet travels in a sealed memfd of its
 * own (scanproto_send_big): the packet is then SCANPROTO_BIG_MAGIC and the
 * encoding's length, with two descriptors, that memfd first, then the
 * message's (none for an envelope-stage request).  The receiver takes at
 * most SCANPROTO_MAX_REQUEST: 100000 recipients (max_recipients' maximum)
 * of SMTP_PATH_MAX (512) octets are 51.6 MB, the other fields at most
 * SCANPROTO_FIXED_MAX more.  A front end whose recipients are not bounded
 * that way (the milter: the MTA chooses them) refuses a recipient that
 * would take the envelope past SCANPROTO_RCPTS_MAX_BYTES
 * (scan_request_rcpt_bytes each) with 452 at RCPT.  The scanner bounds
 * what big requests hold together (filters/scanmem.h): it is asked before
 * one is read (scanproto_recv_request_admit). */
#define SCANPROTO_MAX_REQUEST (64 * 1024 * 1024)
#define SCANPROTO_FIXED_MAX   (1024 * 1024)
#define SCANPROTO_RCPTS_MAX_BYTES (SCANPROTO_MAX_REQUEST - SCANPROTO_FIXED_MAX)
#define SCANPROTO_BIG_MAGIC   "MWqB"

struct scan_request {
	uint64_t id;                 /* chosen by the front end, echoed back */
	char     session_id[17];
	char    *listener;           /* owned */
	enum mw_direction direction;
	char    *client_ip;          /* owned, "" if unknown */
	unsigned client_port;
	char    *client_name;        /* owned; reverse DNS, "" until issue 4 */
	char    *helo;               /* owned */
	char    *mail_from;          /* owned, "" for <> */
	char    *mail_params;        /* owned, as the client sent them */
	char   **rcpts;              /* owned array of owned strings */
	size_t   nrcpts;
	/* owned, NULL when no recipient has any: one string per rcpts, its
	 * DSN parameters (NOTIFY, ORCPT) as they went upstream, "" for none
	 * (smtp_dsn_rcpt_params); kept with a quarantined message, so that a
	 * release asks for the notices the sender asked for */
	char   **rcpt_dsn;
	uint64_t size;               /* bytes in the spool */
	char    *auth_user;          /* owned, "" if none */
	char    *tls;                /* owned, "" if none: "TLSv1.3 cipher" */
	/* SCAN_ENVELOPE: no message (no fd); the filters' connect/helo/mail/
	 * rcpt hooks only, for a verdict before DATA (the milter at RCPT) */
	enum scan_stage { SCAN_MESSAGE = 0, SCAN_ENVELOPE } stage;
	/* the front end has the MTA hold a quarantined message (the milter
	 * with milter_quarantine = mta): the scanner stores no copy of it */
	int      mta_quarantine;
	/* how long the front end waits for the result (scan_timeout,
	 * milter_timeout, ...), 0 = the scanner's scan_timeout: the scanner
	 * answers before then with what its filters found in time (deadline.h) */
	unsigned timeout_ms;
	/* when the front end began to wait for the result: CLOCK_MONOTONIC
	 * ms of the front end, which is this machine's (monotonic clocks run
	 * per boot, the same for every process of one time namespace, and the
	 * master forks them all), 0 = unknown.  On the binary wire (not a JSON
	 * field): the scanner does not start a request whose front end has
	 * given up on it (sent_ms + timeout_ms past; scanstale.h) and counts
	 * its scan's time from here, so that time in the socket's backlog or
	 * the scanner's queue counts */
	long long sent_ms;
	/* not on the wire: when the scanner read the request (CLOCK_MONOTONIC
	 * ms), so that time in its queue counts when sent_ms is unknown; 0 =
	 * when the scan starts */
	long long received_ms;
	/* SCAN_MESSAGE sent inline (no fd): the message bytes, borrowed (the
	 * sender's spool; on the receiving side the caller's copy of the
	 * packet's tail).  Not JSON fields: see scanproto_send_msg. */
	const unsigned char *msg;
	size_t   msg_len;
	int      msg_inline;
};

struct scan_symbol {
	char   name[64];
	double score;
	char  *desc;                 /* owned, may be NULL */
	char   filter[32];           /* who added it */
};

/* HE_REMOVE_AT removes one field: the index-th (0-based) field of that
 * name in the message as received (e.g. one forged Authentication-Results
 * among several); the milter front end maps it to smfi_chgheader(index+1).
 * HE_REMOVE removes every field of exactly that name (a '*' in it is a
 * character of the name: filters copy names from the message);
 * HE_REMOVE_PREFIX every field whose name starts with it (the policy's
 * "X-Spam-"), never made from a filter's call.  Until session 18 a
 * trailing '*' of any HE_REMOVE was read as a prefix. */
enum header_edit_op { HE_ADD = 0, HE_REMOVE, HE_CHANGE, HE_REMOVE_AT, HE_REMOVE_PREFIX };
#define HE_OP_LAST HE_REMOVE_PREFIX

/* header_edit_removes - the op takes no value */
static inline int header_edit_removes(enum header_edit_op op)
{
	return op == HE_REMOVE || op == HE_REMOVE_AT || op == HE_REMOVE_PREFIX;
}

struct header_edit {
	enum header_edit_op op;
	char *name;                  /* owned; for HE_REMOVE_PREFIX a prefix */
	char *value;                 /* owned; NULL for HE_REMOVE/HE_REMOVE_AT */
	unsigned index;              /* HE_REMOVE_AT only */
};

struct scan_result {
	uint64_t id;
	enum mw_action action;
	double   score;
	double   required;           /* the tag threshold that applied */
	char     reply[512];         /* the SMTP reply for this action, "" for accept/tag */
	struct scan_symbol *symbols; /* owned */
	size_t   nsymbols;
	struct header_edit *edits;   /* owned, in order */
	size_t   nedits;
	char     quarantine_id[64];  /* set when action == MW_QUARANTINE */
	char     error[256];         /* set when the scan failed: action is then MW_TEMPFAIL */
	char     client_name[256];   /* forward-confirmed reverse DNS of the client, "" if none */
	double   scan_ms;
	/* the filters that gave up waiting on a service, and what ran out:
	 * "spamd=spamd_timeout clamd=scan_deadline" ([a-z0-9_=], one space
	 * between entries), "" if none (deadline.h) */
	char     timed_out[256];
	/* what dkim_sign did with an outbound message that leaves (or is
	 * held): "signed=DOMAIN/SELECTOR", "kept=D/S" (it carries a
	 * signature of that key that verifies), "failed=D/S", "nokey=DOMAIN",
	 * "badfrom", "more=N" (entries left out), one space between entries,
	 * [A-Za-z0-9-_./=] and space; "" if dkim_sign did not look at it
	 * (inbound, no key, not run, refused).  The front ends turn it into
	 * the audit record's dkim_sign (auditcap.h). */
	char     dkim_sign[512];
	/* new_body: the message leaves with another body (a banned attachment
	 * replaced by a text part).  new_body_fd, a sealed memfd, holds what
	 * follows the header section then: the empty line and the body, CRLF
	 * lines, not dot-stuffed.  Owned (scan_result_free closes it); it
	 * travels as the result packet's descriptor.  Without new_body the fd
	 * means nothing (a zeroed result has none). */
	int      new_body;
	int      new_body_fd;
};

void scan_request_free(struct scan_request *r);   /* frees members, not r */
void scan_result_free(struct scan_result *r);     /* frees members, not r */

json_object *scan_request_to_json(const struct scan_request *r);
int scan_request_from_json(json_object *j, struct scan_request *r);  /* 0 / -1 */
json_object *scan_result_to_json(const struct scan_result *r);
int scan_result_from_json(json_object *j, struct scan_result *r);    /* 0 / -1 */

/* header_edits_to_json - the edits as the "edits" array of a result;
 * header_edits_from_json - such an array back, every edit checked as a
 * result's (at most SP_MAX_EDITS; names, values and folding as the scanner
 * may send them): 0 and *edits (owned: header_edits_free), or -1 */
json_object *header_edits_to_json(const struct header_edit *edits, size_t n);
int header_edits_from_json(json_object *a, struct header_edit **edits, size_t *nedits);
/* header_edits_check - 0 if the edits go through header_edits_to_json and
 * back whole (nothing cut, nothing the decoder refuses) and their names
 * and values add up to at most max_bytes, else -1 */
int header_edits_check(const struct header_edit *edits, size_t n, size_t max_bytes);
void header_edits_free(struct header_edit *edits, size_t n);

const char *mw_action_name(enum mw_action a);      /* "accept", "tag", ... */
int mw_action_parse(const char *s, enum mw_action *a);

/* scanproto_send - one packet: the JSON text of j, and fd (if >= 0) as
 * SCM_RIGHTS.  Blocking or not as the socket is.  0, or -1 with errno. */
int scanproto_send(int sock, json_object *j, int fd);
/* scanproto_recv - one packet into a new json object (*out); *fd gets the
 * passed descriptor or -1 (any extra descriptors are closed).  Returns 1,
 * 0 on EOF, -1 with errno (EAGAIN when nothing is there; EBADMSG when the
 * packet is not a JSON object or was truncated). */
int scanproto_recv(int sock, json_object **out, int *fd);
/* the same with recvmsg flags (MSG_DONTWAIT on a blocking socket); a
 * packet that carries an inline message is refused (EBADMSG) */
int scanproto_recv_flags(int sock, json_object **out, int *fd, int flags);

/* Inline messages.  A message up to SCANPROTO_INLINE_MAX may travel in the
 * request packet itself instead of as a sealed memfd: the packet is the
 * JSON text, one NUL byte, then the message bytes (JSON text never holds a
 * raw NUL, so the first NUL is the boundary; an empty message is a NUL at
 * the end).  It saves the memfd's create/write/seal/close on the sending
 * side and fstat/F_GET_SEALS/pread/close on the receiving side; the
 * sender keeps its own copy, so the receiver can alter nothing it relays.
 * The whole packet is bounded by SCANPROTO_MAX_PACKET like any other. */
#define SCANPROTO_INLINE_MAX (64 * 1024)

/* scanproto_send_msg - one packet: the JSON text of j, a NUL, then len
 * bytes of msg; no descriptor.  0, or -1 with errno (EMSGSIZE when the
 * whole does not fit one packet: send the message as a memfd instead). */
int scanproto_send_msg(int sock, json_object *j, const void *msg, size_t len);
/* scanproto_recv_msg - as scanproto_recv_flags, and a packet with an
 * inline message sets *msg (a malloc'd copy, NUL-terminated for safety,
 * the caller frees it) and *msg_len; without one *msg is NULL.  A packet
 * with both a descriptor and an inline message is refused (EBADMSG). */
int scanproto_recv_msg(int sock, json_object **out, int *fd, int flags,
                       unsigned char **msg, size_t *msg_len);

/* --- the binary wire format ------------------------------------------------ */

struct sbuf;

/* scan_request_encode / scan_result_encode - append the encoding of r to
 * out (strings are cut at SP_MAX_STRING bytes, non-finite numbers sent as
 * 0, as in the JSON form). */
void scan_request_encode(struct sbuf *out, const struct scan_request *r);
void scan_result_encode(struct sbuf *out, const struct scan_result *r);
/* scan_request_decode - the request at the start of p[0..len): 0 and *r
 * (caller frees with scan_request_free) and *used, the bytes it took (the
 * rest of the packet is an inline message); -1 when malformed: every field
 * is type-checked and bounded as the JSON decoder does.  r->msg is not set. */
int scan_request_decode(const void *p, size_t len, struct scan_request *r, size_t *used);
/* scan_result_decode - the result that is exactly p[0..len): 0 / -1 */
int scan_result_decode(const void *p, size_t len, struct scan_result *r);

/* scanproto_send_raw - one packet: pkt[0..len), then, when has_body, the
 * byte SCANPROTO_INLINE_MARK and body[0..blen) (an inline message, maybe
 * empty), and fd (if >= 0) as SCM_RIGHTS.  0, or -1 with errno (EMSGSIZE
 * when it does not fit one packet). */
#define SCANPROTO_INLINE_MARK 'M'
int scanproto_send_raw(int sock, const void *pkt, size_t len, int fd,
                       const void *body, size_t blen, int has_body);
/* scanproto_recv_raw - one packet: 1 and *pkt, *len (a per-thread buffer,
 * valid until this thread's next receive), *fd the passed descriptor or -1
 * (extra ones are closed); 0 on EOF; -1 with errno (EAGAIN; EBADMSG when
 * truncated or too large). */
int scanproto_recv_raw(int sock, const unsigned char **pkt, size_t *len, int *fd, int flags);

/* scan_request_rcpt_bytes - what one recipient adds to a request's
 * encoding (a length, and the address as put_str cuts it) */
size_t scan_request_rcpt_bytes(const char *rcpt);

/* scanproto_envelope_fd - a new sealed memfd holding a request's encoding
 * enc[0..len), for scanproto_send_big: fd, or -1 with errno (EMSGSIZE
 * past SCANPROTO_MAX_REQUEST, which no receiver takes) */
int scanproto_envelope_fd(const void *enc, size_t len);
/* scanproto_send_big - the request in envfd (scanproto_envelope_fd, len
 * bytes) as one small packet, its descriptors envfd and msgfd (if >= 0);
 * both borrowed.  0, or -1 with errno */
int scanproto_send_big(int sock, int envfd, size_t len, int msgfd);

/* scanproto_send_request - r as one packet: with fd (>= 0) as SCM_RIGHTS,
 * or else r->msg inline when r->msg_inline; an inline message that does
 * not fit the packet with its envelope goes as a sealed memfd, and an
 * envelope too big for a packet as scanproto_send_big.  0 / -1 errno
 * (EMSGSIZE only past SCANPROTO_MAX_REQUEST). */
int scanproto_send_request(int sock, const struct scan_request *r, int fd);
/* scanproto_recv_request - one request: 1 and *r; the message as *fd or,
 * inline, r->msg/msg_len/msg_inline pointing into *msg (a malloc'd copy
 * the caller frees); an envelope request has neither.  A big request
 * (scanproto_send_big) is read from its memfd: sealed, of the length the
 * packet says, at most SCANPROTO_MAX_REQUEST, and nothing after the
 * encoding.  0 on EOF, -1 with errno (EAGAIN; EBADMSG: malformed, or a
 * message that does not match the stage, or both a descriptor and inline
 * bytes). */
int scanproto_recv_request(int sock, struct scan_request *r, int *fd, unsigned char **msg,
                           int flags);
/* scanproto_admit_fn - asked before a big request's encoding is read
 * (sealed, n bytes, its memfd's fstat st): 0 to read it, -1 to leave it
 * unread (the scanner's memory budget, filters/scanmem.h) */
typedef int (*scanproto_admit_fn)(void *arg, uint64_t n, const struct stat *st);
/* scanproto_recv_request_admit - scanproto_recv_request, asking admit
 * (if not NULL) about a big request first; 2 when it said no: r->id and
 * r->session_id only (nothing to free), its descriptors closed, for an
 * answer without a scan */
int scanproto_recv_request_admit(int sock, struct scan_request *r, int *fd, unsigned char **msg,
                                 int flags, scanproto_admit_fn admit, void *arg);
/* scanproto_big_read_cost - the most memory reading a big request of n
 * bytes takes at once: its encoding's copy and the request decoded from
 * it (the copy is freed as soon as it is decoded) */
size_t scanproto_big_read_cost(uint64_t n);
/* scan_request_mem - the most memory the decoded request r, of n bytes of
 * encoding, holds (its strings, their pointers, the struct) */
size_t scan_request_mem(const struct scan_request *r, size_t n);
int scanproto_send_result(int sock, const struct scan_result *r);
/* scanproto_recv_result - one result: 1 and *r (caller frees), 0 on EOF,
 * -1 with errno (EAGAIN; EBADMSG) */
int scanproto_recv_result(int sock, struct scan_result *r, int flags);

#endif
