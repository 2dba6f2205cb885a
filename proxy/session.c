/* session.c - one client SMTP session (RFC 5321), from the greeting to QUIT.
 *
 * Commands are handled one at a time, in order: a command that needs the
 * upstream or the scanner sets s->busy and the rest of a pipelined batch
 * waits in the input buffer (bounded by a read watermark) until the answer
 * is in.  Replies are appended to the output buffer and leave in one write
 * per loop turn, so a pipelined batch is answered in order, in few packets.
 *
 * The envelope is relayed live (MAIL and RCPT replies are the upstream's
 * own), the message is spooled and scanned, and only then sent upstream:
 * the client hears 250 for a message only after the upstream said 250.
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include <event2/buffer.h>

#include "audit.h"
#include "auditcap.h"
#include "jsonw.h"
#include "bdat.h"
#include "conn.h"
#include "dataframe.h"
#include "header_edit.h"
#include "headers.h"
#include "filters/ipnet.h"
#include "log.h"
#include "netaddr.h"
#include "proxy.h"
#include "proxyproto.h"
#include "sbuf.h"
#include "scanclient.h"
#include "session.h"
#include "smtp_parse.h"
#include "spool.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "utf8.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>

#define RELAY_CHUNK      (64 * 1024)
#define RELAY_HIWAT      (256 * 1024)
#define CLIENT_OUT_MAX   (256 * 1024)  /* replies the client has not read yet */
#define REPLY_MAX        512

enum sess_state {
	SS_GREET_PAUSE,   /* greet_pause running; input is early talk */
	SS_CMD,           /* reading commands */
	SS_DATA,          /* reading message content */
	SS_TLS,           /* TLS handshake with the client running */
	SS_BDAT,          /* reading a BDAT chunk */
	SS_CLOSING        /* flushing the last reply, then close */
};

struct rcpt {
	char *addr;                   /* owned */
	char *params;                 /* owned */
	char  reply[REPLY_MAX];       /* what the client was told */
	int   accepted;
};

/* RCPTS_REFUSED_LISTED - how many refused recipients (by mailwarden
 * itself: 452 past max_recipients, 555, 553, the 451 of a transaction the
 * upstream failed; or by the upstream) a transaction keeps for its audit
 * record, which lists no more (auditcap.h); the rest are only counted
 * (rcpts_unlisted), so that a client sending thousands keeps the record
 * and the transaction's memory bounded */
#define RCPTS_REFUSED_LISTED AUDIT_REFUSED_LISTED

struct txn {
	char    *mail_from;           /* owned */
	char    *mail_arg;            /* owned: the client's MAIL argument, for a new upstream connection */
	char     mail_params[1024];   /* what goes upstream */
	struct rcpt *rcpts;           /* owned: every recipient the client named, in
	                               * order, with the reply it got (the audit's rcpts) */
	size_t   nrcpts, cap, naccepted;
	size_t   nrelayed;            /* of them, sent to the upstream */
	size_t   nrefused;            /* of them, refused (by mailwarden or the upstream) */
	size_t   unlisted;            /* refused past RCPTS_REFUSED_LISTED: not kept */
	const char *failed;           /* static: the upstream failed in the middle of
	                               * the envelope (421, closed, out of protocol);
	                               * the client still has its transaction open,
	                               * so each later RCPT, DATA and BDAT of it gets
	                               * this 4xx until RSET, MAIL, HELO/EHLO or QUIT
	                               * (a 503 "need MAIL" there is permanent: a
	                               * relaying MTA bounced those recipients) */
	struct timespec start;
	int      at_upstream;         /* MAIL accepted by the upstream */
	uint64_t size;
	int      data_seen;
	int      bdat_seen;           /* content comes in BDAT chunks */
	const char *bdat_failed;      /* static: the reply that refused a chunk of
	                               * it; every later chunk gets it too */
	int      binarymime;          /* MAIL BODY=BINARYMIME */
	int      smtputf8;            /* MAIL SMTPUTF8: UTF-8 addresses allowed */
	double   scan_ms;
	struct scan_result res;       /* owned members */
	int      have_res;
	int      sent_whole;          /* the whole message written to the upstream */
	char     reply[REPLY_MAX];    /* final reply to the client */
	char     queue_id[128];
	const char *action;           /* static string */
	char     fault[64];
	char     message_id[256];
	char     subject[512];
};

/* what a trusted peer's XFORWARD said of the client of the next
 * transaction (Postfix's semantics: given before MAIL, forgotten at the end
 * of the transaction, at RSET, HELO/EHLO and STARTTLS) */
struct xf_client {
	struct smtp_xforward v;
	char ip[64];                      /* its ADDR, canonical; "" = the peer's own */
};

struct session {
	struct proxy     *px;         /* borrowed */
	struct listener  *ln;         /* borrowed */
	struct config    *cfg;        /* ref held */
	char              id[17];
	struct conn      *conn;       /* owned: the client connection */
	char              client_ip[64];  /* the connection's peer */
	unsigned          client_port;
	int               counted_per_ip; /* proxy_admit counted it per IP */
	int               xforward_peer;  /* in xforward_from: XFORWARD offered and taken */
	struct xf_client *xf;             /* NULL: no XFORWARD since then (allocated
	                                   * on the first: 2 KiB no other session
	                                   * should carry while idle) */
	enum sess_state   state;
	int               busy;       /* waiting for the upstream or the scanner */
	int               helo_seen, esmtp;
	char             *helo;       /* owned, never NULL: the client's whole name, up
	                               * to command_line_limit (never cut: the MTA's
	                               * HELO checks judge the name the client gave) */
	int               early_talker;
	unsigned          errors;     /* towards max_errors; forgiven at a delivery */
	unsigned          auth_errors; /* refused credentials: never forgiven */
	unsigned          junk;       /* junk commands (is_junk); forgiven at a delivery */
	int               skip_line;  /* discarding an overlong command line */
	int               draining;   /* daemon stopping: close when idle */
	struct txn       *tx;         /* owned; NULL outside MAIL..end */
	struct upstream  *up;         /* owned; opened at the first MAIL */
	struct spool      spool;
	struct data_decoder *dec;     /* owned; only during DATA */
	uint64_t          scan_id;    /* pending scan, 0 if none */
	/* relaying the message to the upstream */
	struct data_encoder enc;
	const char       *relay_p;    /* into spool.map */
	size_t            relay_left;
	struct sbuf       hdrbuf;     /* rewritten header section */
	size_t            hdr_off;
	void             *newbody;    /* mapped scan_result.new_body_fd, or NULL */
	size_t            newbody_len;
	struct event     *greet_timer;
	struct timespec   start;
	unsigned          ntxn;
	int               in_process; /* inside session_process(): don't recurse */
	int               close_after_txn; /* bare CR/LF seen: no more transactions */
	int               held_by_output;  /* commands wait until our replies leave */
	int               peer_eof;   /* the client shut down its sending side: finish
	                               * what it sent, answer it, then close */
	char             *vrfy_line;  /* owned; VRFY waiting for the upstream */
	/* transport (issue 3) */
	char              tls_desc[128];  /* "TLSv1.3 cipher bits"; "" = plaintext */
	char              auth_user[256]; /* set by the upstream's 235 */
	char             *auth_line;      /* owned; AUTH waiting for the upstream to open */
	int               auth_wait;      /* the client owes a line for a 334 */
	int               auth_mech_login;/* AUTH LOGIN: first response is the user */
	int               auth_user_seen; /* the response naming the user has passed */
	char              auth_try[256];  /* user of the AUTH in progress */
	struct bdat_content *bdat;        /* owned; the chunks' content checker */
	uint64_t          bdat_left;      /* octets of the current chunk still to read */
	int               bdat_last;
	const char       *bdat_refuse;    /* static reply when the chunk is refused */
	int               relay_raw;      /* relaying as BDAT: no dot-stuffing */
	struct upstream_target *tgt;      /* the listener's, or own_tgt */
	struct upstream_target *own_tgt;  /* owned; transparent: the original destination */
	struct session   *prev, *next;
};

static void session_process(struct session *s);
static void check_error_limit(struct session *s);
static int auth_offered(const struct session *s);
static void session_free(struct session *s);
static void txn_end(struct session *s, const char *action);
static void greet(struct session *s);

/* ---- helpers ------------------------------------------------------------ */

static double elapsed_ms(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

static void tv_ms(unsigned ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* Client timeouts apply only while we wait for the client. */
static void arm_client_timeout(struct session *s)
{
	unsigned wr = s->cfg->client_command_timeout;
	if (s->state == SS_TLS) {
		/* the handshake waits for the client, though the session is
		 * "busy" (no command taken): an implicit-TLS client that sent
		 * nothing was held for ever */
		conn_set_timeouts(s->conn, wr, wr);
		return;
	}
	if (s->busy) {
		conn_set_timeouts(s->conn, 0, wr);
		return;
	}
	conn_set_timeouts(s->conn, s->state == SS_DATA || s->state == SS_BDAT ? s->cfg->client_data_timeout
	                                               : s->cfg->client_command_timeout, wr);
}

static void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct session *s, const char *fmt, ...)
{
	char buf[REPLY_MAX + 2];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	if ((size_t)n > sizeof buf - 3) n = (int)(sizeof buf - 3);
	if (log_enabled(LOG_DEBUG)) slog(s->id, LOG_DEBUG, "> %s", buf);
	buf[n++] = '\r';
	buf[n++] = '\n';
	conn_write(s->conn, buf, (size_t)n);
}

/* Relay an upstream reply as the upstream wrote it. */
static void reply_relay(struct session *s, const struct smtp_reply *r)
{
	conn_write(s->conn, r->text, r->len);
	if (log_enabled(LOG_DEBUG)) {
		char esc[300];
		slog(s->id, LOG_DEBUG, "> (upstream) %s", log_esc(esc, sizeof esc, r->text, r->len));
	}
}

/* Copy the last line's text of a reply (for the audit log), without CRLF. */
static void reply_summary(const struct smtp_reply *r, char *out, size_t outsz)
{
	size_t len = r->len;
	while (len > 0 && (r->text[len - 1] == '\n' || r->text[len - 1] == '\r')) len--;
	const char *last = r->text;
	for (const char *q = r->text; q < r->text + len; q++)
		if (*q == '\n') last = q + 1;
	size_t n = (size_t)(r->text + len - last);
	if (n >= outsz) n = outsz - 1;
	memcpy(out, last, n);
	out[n] = '\0';
}

static void free_later_cb(evutil_socket_t fd, short what, void *arg)
{
	session_free(arg);
}

/* Close once the output has left.  Never frees s before returning: callers
 * may still be walking their loop. */
static void close_after_flush(struct session *s)
{
	s->state = SS_CLOSING;
	conn_stop_reading(s->conn);
	if (conn_output_len(s->conn) == 0) {
		struct timeval now = { 0, 0 };
		event_base_once(s->px->base, -1, EV_TIMEOUT, free_later_cb, s, &now);
	}
}

/* abandon_pending - a session that ends while the scanner or the upstream
 * still owes it an answer: their callbacks must not run once the
 * transaction is freed, and the 421 may take a while to leave (the write
 * deadline fired: the client is not reading) */
static void abandon_pending(struct session *s)
{
	if (s->scan_id) {
		scanclient_cancel(s->px->scan, s->scan_id);
		s->scan_id = 0;
	}
	if (s->tx != NULL)
		s->tx->at_upstream = 0;       /* no RSET: the connection goes */
	upstream_close(s->up);
	s->up = NULL;
}

static void set_busy(struct session *s, int busy)
{
	s->busy = busy;
	arm_client_timeout(s);
}

/* ---- transactions and the audit record -------------------------------- */

static void unmap_new_body(struct session *s)
{
	if (s->newbody != NULL && s->newbody_len > 0)
		munmap(s->newbody, s->newbody_len);
	s->newbody = NULL;
	s->newbody_len = 0;
}

/* map_new_body - the body the scanner rewrote (a banned attachment
 * replaced), to relay instead of the spool's.  -1 if it cannot be read:
 * the original must not go on in its place. */
static int map_new_body(struct session *s, const struct scan_result *res)
{
	struct stat st;
	void *p;

	if (res->new_body_fd < 0 || fstat(res->new_body_fd, &st) < 0 || st.st_size <= 0)
		return -1;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, res->new_body_fd, 0);
	if (p == MAP_FAILED)
		return -1;
	s->newbody = p;
	s->newbody_len = (size_t)st.st_size;
	return 0;
}

static void txn_free(struct txn *t)
{
	if (t == NULL) return;
	free(t->mail_from);
	free(t->mail_arg);
	for (size_t i = 0; i < t->nrcpts; i++) {
		free(t->rcpts[i].addr);
		free(t->rcpts[i].params);
	}
	free(t->rcpts);
	if (t->have_res) scan_result_free(&t->res);
	free(t);
}

/* The client every check, the audit record and the upstream see: the
 * connection's, or the one a trusted peer (xforward_from: Postfix's
 * smtpd_proxy_filter) named with XFORWARD for this transaction.  Once the
 * peer sent XFORWARD, what it did not say is unknown ("", 0), never the
 * peer's own HELO or login; but its address stays the peer's when ADDR
 * is [UNAVAILABLE] (the checks need one; they then judge the peer, as
 * without XFORWARD). */
static const char *xf_value(const struct session *s, enum smtp_xf_attr a)
{
	return s->xf != NULL && s->xf->v.state[a] == SMTP_XF_VALUE ? s->xf->v.value[a] : NULL;
}

static const char *client_ip_of(const struct session *s)
{
	return s->xf != NULL && s->xf->ip[0] ? s->xf->ip : s->client_ip;
}

/* the port goes with the address: the peer's with the peer's own (ADDR
 * [UNAVAILABLE] or not said, whatever PORT says), else XFORWARD's PORT */
static unsigned client_port_of(const struct session *s)
{
	if (s->xf == NULL || !s->xf->ip[0]) return s->client_port;
	const char *port = xf_value(s, SMTP_XF_PORT);
	return port != NULL ? (unsigned)strtoul(port, NULL, 10) : 0;   /* 0..65535, checked */
}

static const char *helo_of(const struct session *s)
{
	const char *helo = xf_value(s, SMTP_XF_HELO);
	return s->xf != NULL ? (helo ? helo : "") : s->helo;
}

static int esmtp_of(const struct session *s)
{
	const char *proto = xf_value(s, SMTP_XF_PROTO);
	return proto ? strncasecmp(proto, "ESMTP", 5) == 0 : s->esmtp;
}

/* the session's own AUTH (relayed to the upstream), else the peer's LOGIN */
static const char *login_of(const struct session *s)
{
	const char *login = xf_value(s, SMTP_XF_LOGIN);
	return s->auth_user[0] ? s->auth_user : login ? login : "";
}

static void xforward_reset(struct session *s)
{
	free(s->xf);
	s->xf = NULL;
}

/* "ESMTP", "ESMTPS", "ESMTPSA", "ESMTPA" (RFC 3848), or "SMTP" */
static const char *session_proto(const struct session *s)
{
	const char *login = login_of(s);
	if (!esmtp_of(s)) return "SMTP";
	if (s->tls_desc[0]) return login[0] ? "ESMTPSA" : "ESMTPS";
	return login[0] ? "ESMTPA" : "ESMTP";
}

/* An authenticated client sends outbound mail, whatever the listener.
 * On a listener that relays AUTH, AUTH is what makes a client one of ours:
 * until it has authenticated it is a stranger, even on an outbound
 * (submission) listener, where it would otherwise skip SPF, DMARC and
 * greylisting and get the site's DKIM signature on a forged From of the
 * site's domain, sent to a local recipient the upstream accepts without
 * AUTH.  An outbound listener without AUTH trusts every client it admits. */
static enum mw_direction session_direction(const struct session *s)
{
	if (login_of(s)[0])
		return MW_OUTBOUND;
	if (s->ln->cfg.auth == MW_AUTH_RELAY)
		return MW_INBOUND;
	return s->ln->cfg.direction;
}

/* The audit record, written directly as JSON text (jsonw.h) into one
 * scratch buffer per thread: a json-c object tree per transaction cost
 * about a tenth of the proxy's CPU per message.  The buffer is freed when
 * its thread ends (a pthread key, not _Thread_local, for that). */
static pthread_key_t audit_buf_key;
static pthread_once_t audit_buf_once = PTHREAD_ONCE_INIT;

/* the record, and what follows its rcpts list (written first, so that the
 * list knows the room it has: auditcap.h) */
struct audit_bufs {
	struct sbuf rec, tail;
};

static void audit_buf_free(void *p)
{
	struct audit_bufs *ab = p;
	sbuf_free(&ab->rec);
	sbuf_free(&ab->tail);
	free(ab);
}

static void audit_buf_key_init(void)
{
	(void)pthread_key_create(&audit_buf_key, audit_buf_free);
}

static struct audit_bufs *audit_scratch(void)
{
	(void)pthread_once(&audit_buf_once, audit_buf_key_init);
	struct audit_bufs *ab = pthread_getspecific(audit_buf_key);
	if (ab == NULL) {
		ab = xmalloc(sizeof *ab);
		sbuf_init(&ab->rec, (size_t)-1);
		sbuf_init(&ab->tail, (size_t)-1);
		(void)pthread_setspecific(audit_buf_key, ab);
	}
	return ab;
}

/* audit_tail - the record after its rcpts list, closing brace included */
static void audit_tail(struct jsonw *w, struct session *s, struct txn *t)
{
	jsonw_key(w, "message_id");  audit_text(w, t->message_id, AUDIT_TEXT_MAX);
	jsonw_key(w, "subject");     audit_text(w, t->subject, AUDIT_TEXT_MAX);
	jsonw_key(w, "size");        jsonw_int(w, (int64_t)t->size);
	audit_symbols(w, t->res.symbols, t->have_res ? t->res.nsymbols : 0);
	jsonw_key(w, "score");       jsonw_num(w, t->have_res ? t->res.score : 0.0, 3);
	jsonw_key(w, "action");      jsonw_cstr(w, t->action ? t->action : "none");
	if (t->fault[0]) {
		jsonw_key(w, "fault");
		audit_text(w, t->fault, AUDIT_TEXT_MAX);
	}
	if (t->have_res && t->res.error[0]) {
		jsonw_key(w, "scan_error");
		audit_text(w, t->res.error, AUDIT_TEXT_MAX);
	}
	if (t->have_res && t->res.timed_out[0]) {
		jsonw_key(w, "timed_out");
		audit_timed_out(w, t->res.timed_out, AUDIT_TEXT_MAX);
	}
	if (t->have_res)
		audit_dkim_sign(w, t->res.dkim_sign);
	if (xf_value(s, SMTP_XF_NAME)) {
		jsonw_key(w, "client_name");
		audit_text(w, xf_value(s, SMTP_XF_NAME), AUDIT_TEXT_MAX);
	} else if (t->have_res && t->res.client_name[0]) {
		jsonw_key(w, "client_name");
		audit_text(w, t->res.client_name, AUDIT_TEXT_MAX);
	}
	if (t->have_res && t->res.quarantine_id[0]) {
		jsonw_key(w, "quarantine_id");
		audit_text(w, t->res.quarantine_id, AUDIT_TEXT_MAX);
	}
	jsonw_key(w, "reply");       audit_text(w, t->reply, AUDIT_TEXT_MAX);
	jsonw_key(w, "queue_id");    audit_text(w, t->queue_id, AUDIT_TEXT_MAX);
	jsonw_key(w, "upstream");    audit_text(w, s->tgt->spec, AUDIT_TEXT_MAX);
	jsonw_key(w, "scan_ms");     jsonw_num(w, t->scan_ms, 3);
	jsonw_key(w, "total_ms");    jsonw_num(w, elapsed_ms(&t->start), 3);
	jsonw_object_end(w);
}

static void audit_txn(struct session *s, struct txn *t)
{
	char ts[64];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);

	struct audit_bufs *ab = audit_scratch();
	struct sbuf *b = &ab->rec;
	sbuf_reset(b);
	sbuf_reset(&ab->tail);
	struct jsonw w, tw;
	jsonw_init_inside(&tw, &ab->tail);
	audit_tail(&tw, s, t);
	jsonw_init(&w, b);
	jsonw_object_begin(&w);
	jsonw_key(&w, "time");        jsonw_cstr(&w, ts);
	jsonw_key(&w, "session");     jsonw_cstr(&w, s->id);
	jsonw_key(&w, "txn");         jsonw_int(&w, (int)s->ntxn);
	jsonw_key(&w, "listener");    jsonw_cstr(&w, s->ln->cfg.name);
	jsonw_key(&w, "direction");
	jsonw_cstr(&w, session_direction(s) == MW_OUTBOUND ? "outbound" : "inbound");
	jsonw_key(&w, "client_ip");   jsonw_cstr(&w, client_ip_of(s));
	jsonw_key(&w, "client_port"); jsonw_int(&w, (int)client_port_of(s));
	if (s->xf != NULL) {          /* who said so */
		jsonw_key(&w, "xforward_peer");
		jsonw_cstr(&w, s->client_ip);
	}
	jsonw_key(&w, "helo");        audit_text(&w, helo_of(s), AUDIT_TEXT_MAX);
	jsonw_key(&w, "protocol");    jsonw_cstr(&w, session_proto(s));
	jsonw_key(&w, "tls");         audit_text(&w, s->tls_desc, AUDIT_TEXT_MAX);
	jsonw_key(&w, "auth_user");   audit_text(&w, login_of(s), AUDIT_TEXT_MAX);
	jsonw_key(&w, "early_talker"); jsonw_bool(&w, s->early_talker);
	jsonw_key(&w, "mail_from");   audit_text(&w, t->mail_from, AUDIT_TEXT_MAX);
	jsonw_key(&w, "mail_params"); audit_text(&w, t->mail_params, AUDIT_TEXT_MAX);
	/* the list gets what the rest leaves of AUDIT_RECORD_MAX (newline,
	 * its key and the counters after it kept) */
	size_t fixed = b->len + ab->tail.len + 1 + 16 + AUDIT_COUNTS_ROOM;
	size_t budget = fixed < AUDIT_RECORD_MAX ? AUDIT_RECORD_MAX - fixed : 0;
	struct audit_rcpt *ar = xcalloc(t->nrcpts ? t->nrcpts : 1, sizeof *ar);
	for (size_t i = 0; i < t->nrcpts; i++) {
		ar[i].addr = t->rcpts[i].addr;
		ar[i].reply = t->rcpts[i].reply;
		ar[i].accepted = t->rcpts[i].accepted;
	}
	(void)audit_rcpts(&w, ar, t->nrcpts, t->unlisted, budget);
	free(ar);
	if (!jsonw_failed(&w) && !jsonw_failed(&tw) && sbuf_add(b, ab->tail.data, ab->tail.len) == 0) {
		if (b->len + 1 > AUDIT_RECORD_MAX)    /* the bounds of auditcap.h failed: a bug */
			slog(s->id, LOG_ERR, "audit record of %zu bytes, past %d", b->len + 1, AUDIT_RECORD_MAX);
		audit_write_line(b->data, b->len);
	} else {
		slog(s->id, LOG_ERR, "audit record too large or malformed: not written");
	}
	/* a scratch buffer that grew for a huge record does not stay huge */
	if (b->cap > 2 * AUDIT_RECORD_MAX) sbuf_free(b);
	if (ab->tail.cap > 2 * AUDIT_RECORD_MAX) sbuf_free(&ab->tail);

	char esc[200], resc[REPLY_MAX], qesc[4 * sizeof t->queue_id];
	stats_txn(STATS_PROXY, session_direction(s) == MW_OUTBOUND, t->action ? t->action : "none",
	          t->size, t->have_res ? t->scan_ms : -1);
	if (log_enabled(LOG_INFO))   /* not the escaping either, when the line goes nowhere */
		slog(s->id, LOG_INFO, "txn=%u from=<%s> rcpts=%zu/%zu size=%llu score=%.2f action=%s reply=\"%s\"%s%s%s%s%s",
		     s->ntxn, log_esc_word(esc, sizeof esc, t->mail_from, strlen(t->mail_from ? t->mail_from : "")),
		     t->naccepted, t->nrcpts + t->unlisted, (unsigned long long)t->size,
		     t->have_res ? t->res.score : 0.0, t->action ? t->action : "none",
		     log_esc_quoted(resc, sizeof resc, t->reply, strlen(t->reply)),
		     t->queue_id[0] ? " queue_id=" : "",
		     log_esc_word(qesc, sizeof qesc, t->queue_id, strlen(t->queue_id)),
		     t->have_res && t->res.timed_out[0] ? " timed_out=\"" : "",
		     t->have_res ? t->res.timed_out : "", t->have_res && t->res.timed_out[0] ? "\"" : "");
}

/* The transaction is over, for whatever reason: log it, forget it, and
 * leave the upstream ready for the next one. */
static void txn_end(struct session *s, const char *action)
{
	struct txn *t = s->tx;
	if (t == NULL) return;
	s->ntxn++;
	if (action && !t->failed) t->action = action;   /* a failed one stays "tempfail" */
	audit_txn(s, t);
	/* at_upstream is cleared once the upstream finished the transaction
	 * itself (its reply to end of data, or a refused MAIL) */
	if (t->at_upstream && upstream_alive(s->up))
		upstream_command(s->up, "RSET", s->cfg->upstream_command_timeout, NULL, NULL);
	txn_free(t);
	s->tx = NULL;
	spool_close(&s->spool);
	sbuf_free(&s->hdrbuf);
	unmap_new_body(s);
	xforward_reset(s);
}

static void txn_set_reply(struct txn *t, const char *text)
{
	snprintf(t->reply, sizeof t->reply, "%s", text);
}

/* After a transaction or command: go on with pipelined input, or leave if
 * the daemon is stopping. */
static void resume(struct session *s)
{
	set_busy(s, 0);
	if (s->close_after_txn && s->tx == NULL && s->state != SS_CLOSING) {
		close_after_flush(s);
		return;
	}
	if (!s->in_process) session_process(s);
}

/* ---- upstream interaction ---------------------------------------------- */

/* An upstream reply is relayed to the client only when it is well-formed
 * and fits the command; 421 becomes 451, since our own session goes on. */
static int reply_fits(const struct smtp_reply *r, int allow_354)
{
	if (r->code == 354) return allow_354;
	int c = r->code / 100;
	return c == 2 || c == 4 || c == 5;
}

static void upstream_gone(struct session *s, enum upstream_err err, const char *when)
{
	slog(s->id, LOG_WARNING, "upstream=%s %s: %s", s->tgt->spec, when, upstream_err_name(err));
	upstream_close(s->up);
	s->up = NULL;
}

static const char R_NEXTHOP[] = "451 4.4.1 Next hop unavailable, try again later";
static const char R_NEXTHOP_LOST[] = "451 4.4.2 Next hop connection lost, try again later";
static const char R_NEW_BODY[] = "451 4.3.0 Error: cannot read the filtered message, try again later";
/* the scan request could not be sent for a reason of its own (the
 * milter's wording too): the scanner is not down */
static const char R_NOT_SCANNED[] = "451 4.3.0 Error: message not scanned, try again later";
/* RFC 3463 4.3.1: the messages in flight fill spool_memory_max */
static const char R_STORAGE[] = "452 4.3.1 Insufficient system storage, try again later";
static const char R_NEXTHOP_BAD[] = "451 4.4.0 Next hop answered out of protocol, try again later";

static void on_mail_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	struct txn *t = s->tx;
	if (err != UP_OK) {
		upstream_gone(s, err, "at MAIL");
		reply(s, "%s", R_NEXTHOP);
		txn_set_reply(t, R_NEXTHOP);
		txn_end(s, "tempfail");
	} else if (!reply_fits(r, 0)) {
		char esc[200];
		slog(s->id, LOG_WARNING, "upstream reply out of place at MAIL: %s", log_esc(esc, sizeof esc, r->text, r->len));
		reply(s, "%s", R_NEXTHOP_BAD);
		upstream_close(s->up);
		s->up = NULL;
		txn_set_reply(t, R_NEXTHOP_BAD);
		txn_end(s, "tempfail");
	} else if (r->code == 421) {
		reply(s, "451 4.4.2 Next hop closing, try again later");
		txn_set_reply(t, "451 4.4.2 Next hop closing");
		txn_end(s, "tempfail");
	} else if (r->code / 100 == 2) {
		t->at_upstream = 1;
		reply_relay(s, r);
	} else {
		reply_relay(s, r);
		reply_summary(r, t->reply, sizeof t->reply);
		txn_end(s, "rejected-by-upstream");
	}
	resume(s);
}

static void send_mail(struct session *s)
{
	char line[1700];
	snprintf(line, sizeof line, "MAIL FROM:<%s>%s%s", s->tx->mail_from,
	         s->tx->mail_params[0] ? " " : "", s->tx->mail_params);
	upstream_mail_sent(s->up);
	if (upstream_command(s->up, line, s->cfg->upstream_command_timeout, on_mail_reply, s) < 0)
		on_mail_reply(s, NULL, UP_ERR_CLOSED);
}

/* Who the client is, for the upstream (XCLIENT/XFORWARD). */
static void session_client(const struct session *s, struct upstream_client *c)
{
	*c = (struct upstream_client){
		.addr = client_ip_of(s), .port = client_port_of(s), .helo = helo_of(s),
		.esmtp = esmtp_of(s), .login = login_of(s), .name = xf_value(s, SMTP_XF_NAME),
		.ident = xf_value(s, SMTP_XF_IDENT), .source = xf_value(s, SMTP_XF_SOURCE),
	};
}

/* Open the upstream, telling it (XCLIENT/XFORWARD) who the client is. */
static struct upstream *session_upstream_open(struct session *s, upstream_reply_fn cb)
{
	struct upstream_client c;
	session_client(s, &c);
	return upstream_open(s->px->base, s->cfg, s->tgt, s->id, &c, cb, s);
}

/* client_name_refused - the upstream, told by XCLIENT who the client is,
 * refused the client's HELO name in the EHLO that followed: that refusal is
 * the client's, as if it had connected directly (Postfix's smtpd with
 * smtpd_delay_reject = yes refuses the HELO name at the first command
 * that checks it; we answered the client's EHLO ourselves, so it hears the
 * refusal at the command that opened the upstream).  The reply is relayed
 * when it fits (4xx/5xx, not 421); the caller closes the upstream. */
static int client_name_refused(struct session *s, const struct smtp_reply *r, enum upstream_err err)
{
	/* refused_client is set only on a refusal: never a 2xx here */
	if (err != UP_OK || !upstream_refused_client(s->up) || r->code == 421 || !reply_fits(r, 0))
		return 0;
	reply_relay(s, r);
	return 1;
}

static int mail_params_refused(struct session *s);

static void on_upstream_open(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	if (client_name_refused(s, r, err)) {
		upstream_close(s->up);
		s->up = NULL;
		reply_summary(r, s->tx->reply, sizeof s->tx->reply);
		txn_end(s, "rejected-by-upstream");
		resume(s);
		return;
	}
	if (err != UP_OK || r->code / 100 != 2) {
		if (err == UP_OK) {
			char esc[200];
			slog(s->id, LOG_WARNING, "upstream=%s refused the session: %s", s->tgt->spec,
			     log_esc(esc, sizeof esc, r->text, r->len));
		} else {
			slog(s->id, LOG_WARNING, "upstream=%s unavailable: %s", s->tgt->spec,
			     upstream_err_name(err));
		}
		upstream_close(s->up);
		s->up = NULL;
		reply(s, "%s", R_NEXTHOP);
		txn_set_reply(s->tx, R_NEXTHOP);
		txn_end(s, "tempfail");
		resume(s);
		return;
	}
	if (mail_params_refused(s)) {
		resume(s);
		return;
	}
	send_mail(s);
}

/* ---- MAIL / RCPT -------------------------------------------------------- */

/* R_UTF8_UNDECLARED - RFC 6531 3.4: a UTF-8 address needs MAIL's
 * SMTPUTF8; without it the next hop never agreed to such an address */
static const char R_UTF8_UNDECLARED[] = "553 5.6.7 Must declare SMTPUTF8 to send unicode address";

/* auth_extension - the AUTH extension is part of this session: the
 * listener relays AUTH, and it was offered (or used) here.  Its MAIL
 * parameter AUTH= (RFC 4954 5) then belongs to the client's protocol:
 * Postfix with smtp_send_dummy_mail_auth sends AUTH=<>, Exim relaying for
 * an authenticated user AUTH=<user>. */
static int auth_extension(const struct session *s)
{
	return s->ln->cfg.auth == MW_AUTH_RELAY && (s->auth_user[0] || auth_offered(s));
}

/* mail_auth_value_ok - RFC 4954 5: AUTH=<> or AUTH=xtext (RFC 3461 4:
 * "!" to "~" but "+" and "=", and "+" with two upper-case hex digits) */
static int mail_auth_value_ok(const struct smtp_param *p)
{
	if (!p->has_value || p->value[0] == '\0') return 0;
	if (strcmp(p->value, "<>") == 0) return 1;
	for (const char *c = p->value; *c; c++) {
		if (*c == '+') {
			if (!isxdigit((unsigned char)c[1]) || !isxdigit((unsigned char)c[2]) ||
			    islower((unsigned char)c[1]) || islower((unsigned char)c[2]))
				return 0;
			c += 2;
		} else if (*c < '!' || *c > '~' || *c == '=') {
			return 0;
		}
	}
	return 1;
}

/* Which MAIL/RCPT parameters go upstream: only what the upstream offers. */
static int param_allowed(struct session *s, const struct smtp_param *p, int is_mail, char *why, size_t whysz)
{
	unsigned caps = upstream_alive(s->up) ? upstream_caps(s->up) : s->tgt->caps;
	const struct smtp_reply *ehlo = upstream_alive(s->up) ? upstream_ehlo(s->up) : &s->tgt->ehlo;
	if (is_mail && strcmp(p->key, "SIZE") == 0) return 1;      /* handled by the caller */
	if (is_mail && strcmp(p->key, "BODY") == 0) {
		if (strcasecmp(p->value, "7BIT") == 0) return 1;
		if (strcasecmp(p->value, "8BITMIME") == 0 && (caps & UCAP_8BITMIME)) return 1;
		if (strcasecmp(p->value, "BINARYMIME") == 0 && (caps & UCAP_BINARYMIME) && (caps & UCAP_CHUNKING))
			return 1;
		snprintf(why, whysz, "555 5.5.4 Unsupported BODY type");
		return 0;
	}
	if (is_mail && strcmp(p->key, "SMTPUTF8") == 0) {
		if (caps & UCAP_SMTPUTF8) return 1;
		snprintf(why, whysz, "555 5.6.7 SMTPUTF8 not supported by the next hop");
		return 0;
	}
	if ((is_mail && (strcmp(p->key, "RET") == 0 || strcmp(p->key, "ENVID") == 0)) ||
	    (!is_mail && (strcmp(p->key, "NOTIFY") == 0 || strcmp(p->key, "ORCPT") == 0))) {
		if (caps & UCAP_DSN) return 1;
		snprintf(why, whysz, "555 5.5.4 DSN not supported");
		return 0;
	}
	if (is_mail && strcmp(p->key, "AUTH") == 0 && auth_extension(s)) {
		/* the caller drops it: checked only */
		if (mail_auth_value_ok(p)) return 1;
		snprintf(why, whysz, "501 5.5.4 Bad AUTH parameter syntax");
		return 0;
	}
	if (strcmp(p->key, "AUTH") == 0 || strcmp(p->key, "XCLIENT") == 0) {
		snprintf(why, whysz, "555 5.5.4 Unsupported option: %s", p->key);
		return 0;
	}
	if (smtp_ehlo_has(ehlo, p->key, NULL, 0)) return 1;
	snprintf(why, whysz, "555 5.5.4 Unsupported option: %s", p->key);
	return 0;
}

static int build_params(struct session *s, const struct smtp_path_args *a, int is_mail,
                        char *out, size_t outsz, char *why, size_t whysz)
{
	size_t len = 0;
	out[0] = '\0';
	for (size_t i = 0; i < a->nparams; i++) {
		const struct smtp_param *p = &a->params[i];
		if (!param_allowed(s, p, is_mail, why, whysz)) return -1;
		unsigned caps = upstream_alive(s->up) ? upstream_caps(s->up) : s->tgt->caps;
		if (is_mail && strcmp(p->key, "SIZE") == 0 && !(caps & UCAP_SIZE)) continue;
		/* the client's claim of who submitted the message is never
		 * passed on: the upstream learns the authenticated user from
		 * XCLIENT LOGIN=, which mailwarden vouches for, and RFC 4954 5
		 * lets a server that does not trust the value drop it */
		if (is_mail && strcmp(p->key, "AUTH") == 0) continue;
		int n = snprintf(out + len, outsz - len, "%s%s%s%s", len ? " " : "", p->key,
		                 p->has_value ? "=" : "", p->value);
		if (n < 0 || (size_t)n >= outsz - len) {
			snprintf(why, whysz, "501 5.5.4 Too many parameters");
			return -1;
		}
		len += (size_t)n;
	}
	return 0;
}

/* mail_params_refused - the first MAIL of a connection was checked
 * against what the proxy knew of the upstream (an earlier connection's
 * EHLO, or the probe's): the connection just opened, the one that carries
 * the MAIL, decides.  An upstream restarted without SMTPUTF8 was sent it
 * (the client heard its 555, or 250 for an address it cannot deliver), and
 * one that gained SIZE did not get it.  Refused: the client has the
 * reply, the transaction is gone (as when cmd_mail refuses), 1. */
static int mail_params_refused(struct session *s)
{
	struct txn *t = s->tx;
	struct smtp_path_args a;
	const char *why = NULL;
	char err[200];

	if (smtp_path_parse(t->mail_arg, &a, &why) == 0 &&
	    build_params(s, &a, 1, t->mail_params, sizeof t->mail_params, err, sizeof err) == 0)
		return 0;
	if (why) snprintf(err, sizeof err, "501 5.1.7 Bad sender address syntax: %s", why);
	reply(s, "%s", err);
	txn_free(t);
	s->tx = NULL;
	return 1;
}

static void cmd_mail(struct session *s, const char *arg)
{
	struct smtp_path_args a;
	const char *why = NULL;
	char err[200];

	if (!s->helo_seen) { reply(s, "503 5.5.1 Error: send HELO/EHLO first"); s->errors++; return; }
	/* a transaction the upstream failed is over for a client that moves on */
	if (s->tx && s->tx->failed) txn_end(s, NULL);
	if (s->tx) { reply(s, "503 5.5.1 Error: nested MAIL command"); s->errors++; return; }
	if (s->draining) { reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname); close_after_flush(s); return; }
	if (smtp_path_parse(arg, &a, &why) < 0) {
		reply(s, "501 5.1.7 Bad sender address syntax: %s", why ? why : "syntax error");
		s->errors++;
		return;
	}
	if (utf8_has_8bit(a.path, strlen(a.path)) && smtp_param_get(&a, "SMTPUTF8") == NULL) {
		reply(s, "%s", R_UTF8_UNDECLARED);
		s->errors++;
		return;
	}
	const struct smtp_param *size = smtp_param_get(&a, "SIZE");
	if (size) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(size->value, &end, 10);
		if (!size->has_value || *end != '\0' || errno != 0 || size->value[0] == '-') {
			reply(s, "501 5.5.4 Bad SIZE parameter");
			s->errors++;
			return;
		}
		if (n > s->cfg->message_size_limit) {
			reply(s, "552 5.3.4 Message size exceeds fixed limit");
			return;
		}
	}
	struct txn *t = xcalloc(1, sizeof *t);
	clock_gettime(CLOCK_MONOTONIC, &t->start);
	t->mail_from = xstrdup(a.path);
	t->mail_arg = xstrdup(arg);
	if (build_params(s, &a, 1, t->mail_params, sizeof t->mail_params, err, sizeof err) < 0) {
		reply(s, "%s", err);
		txn_free(t);
		return;
	}
	const struct smtp_param *body = smtp_param_get(&a, "BODY");
	t->binarymime = body && strcasecmp(body->value, "BINARYMIME") == 0;
	t->smtputf8 = smtp_param_get(&a, "SMTPUTF8") != NULL;
	s->tx = t;
	set_busy(s, 1);
	struct upstream_client c;
	session_client(s, &c);
	if (upstream_alive(s->up) && !s->auth_user[0] && !upstream_speaks_for(s->up, &c)) {
		/* it told the MTA of another client, or its XFORWARD is spent;
		 * not an authenticated one: a new connection would lose that */
		upstream_close(s->up);
		s->up = NULL;
	}
	if (upstream_alive(s->up)) {
		send_mail(s);
		return;
	}
	upstream_close(s->up);
	s->up = session_upstream_open(s, on_upstream_open);
	if (s->up == NULL) {
		slog_errno(s->id, LOG_WARNING, "upstream=%s connect", s->tgt->spec);
		reply(s, "%s", R_NEXTHOP);
		txn_set_reply(t, R_NEXTHOP);
		txn_end(s, "tempfail");
		set_busy(s, 0);
	}
}

/* rcpt_add - a new entry at the end of t's recipient list, or NULL for a
 * recipient mailwarden refused itself past RCPTS_REFUSED_LISTED (then only
 * counted).  addr, params: borrowed, copied. */
static struct rcpt *rcpt_add(struct txn *t, const char *addr, const char *params, int own_refusal)
{
	if (own_refusal) {
		if (t->nrefused >= RCPTS_REFUSED_LISTED) {
			t->unlisted++;
			return NULL;
		}
		t->nrefused++;
	}
	if (t->nrcpts == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 8;
		t->rcpts = xrealloc(t->rcpts, t->cap * sizeof *t->rcpts);
	}
	struct rcpt *rc = &t->rcpts[t->nrcpts++];
	memset(rc, 0, sizeof *rc);
	rc->addr = xstrdup(addr);
	rc->params = xstrdup(params);
	return rc;
}

/* rcpt_refused - the client is told text (a full reply line) for the
 * recipient addr, by mailwarden itself; the audit record lists it */
static void rcpt_refused(struct session *s, const char *addr, const char *text)
{
	struct rcpt *rc = rcpt_add(s->tx, addr, "", 1);
	if (rc != NULL) snprintf(rc->reply, sizeof rc->reply, "%s", text);
	reply(s, "%s", text);
}

/* txn_fail - the upstream failed in the middle of the envelope: the
 * caller tells the client text (4xx) for this command and, since the
 * transaction stays open on the client's side, every later RCPT/DATA/BDAT
 * of it gets text too (see txn.failed).  The transaction is logged when the
 * client ends it.  text: static. */
static void txn_fail(struct txn *t, const char *text)
{
	t->failed = text;
	t->action = "tempfail";
	t->at_upstream = 0;           /* nothing to RSET there: it is gone */
	txn_set_reply(t, text);
}

static const char R_NEXTHOP_CLOSING[] = "451 4.4.2 Next hop closing, try again later";

/* errors_forgiven - as Postfix's smtpd forgives a client's errors once a
 * message was received: a list server that reuses its connection is not
 * closed for the stale recipients of earlier messages (refused
 * credentials stay counted) */
static void errors_forgiven(struct session *s)
{
	s->errors = s->auth_errors;
	s->junk = 0;
}

/* refusal_counts - whether the upstream's refusal of a recipient (or a
 * VRFY) counts toward max_errors: any 4xx or 5xx, as Postfix counts its
 * own (a 450 for unknown users, soft_bounce or reject_unverified_recipient,
 * is as good to a harvester as a 550: review rv-today5), but a 452, "too
 * many recipients" past the upstream's own limit (Exchange's 200), which
 * asks for the rest in another transaction (RFC 5321 4.5.3.1.10) and
 * which Postfix does not count of its own (smtpd_recipient_overshoot_limit):
 * counted, it closed a list message's session at max_errors, the client
 * deferred every recipient and met the same 421 at every retry (review
 * rv-today4) */
static int refusal_counts(const struct smtp_reply *r)
{
	return r->code / 100 != 2 && r->code != 452;
}

static void on_rcpt_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	struct txn *t = s->tx;
	struct rcpt *rc = &t->rcpts[t->nrcpts - 1];
	if (err != UP_OK) {
		upstream_gone(s, err, "at RCPT");
		snprintf(rc->reply, sizeof rc->reply, "%s", R_NEXTHOP_LOST);
		txn_fail(t, R_NEXTHOP_LOST);
		reply(s, "%s", R_NEXTHOP_LOST);
	} else if (!reply_fits(r, 0)) {
		char esc[200];
		slog(s->id, LOG_WARNING, "upstream reply out of place at RCPT: %s", log_esc(esc, sizeof esc, r->text, r->len));
		snprintf(rc->reply, sizeof rc->reply, "%s", R_NEXTHOP_BAD);
		upstream_close(s->up);
		s->up = NULL;
		txn_fail(t, R_NEXTHOP_BAD);
		reply(s, "%s", R_NEXTHOP_BAD);
	} else if (r->code == 421) {
		snprintf(rc->reply, sizeof rc->reply, "%s", R_NEXTHOP_CLOSING);
		txn_fail(t, R_NEXTHOP_CLOSING);
		reply(s, "%s", R_NEXTHOP_CLOSING);
	} else {
		reply_summary(r, rc->reply, sizeof rc->reply);
		if (r->code / 100 == 2) {
			rc->accepted = 1;
			t->naccepted++;
		} else if (t->nrefused >= RCPTS_REFUSED_LISTED) {
			/* the upstream's refusals past those the audit lists are
			 * only counted: up to 2 x max_recipients of them, each
			 * with an address and a reply, were megabytes kept */
			free(rc->addr);
			free(rc->params);
			t->nrcpts--;
			t->unlisted++;
		} else {
			t->nrefused++;
		}
		reply_relay(s, r);
		if (refusal_counts(r)) {
			/* the next hop's refusal is an error like ours (Postfix
			 * counts its own towards smtpd_hard_error_limit): else a
			 * harvester probes recipients without end, the upstream
			 * leg reopening whenever the MTA closes it */
			s->errors++;
			check_error_limit(s);
		}
	}
	resume(s);
}

/* Every recipient max_recipients lets in goes into the scan request, and
 * the scanner takes one of at most SCANPROTO_MAX_REQUEST: its maximum
 * must fit, each with its DSN parameters (rcpt_dsn), or a transaction the client was told 250 for could never be
 * scanned (scanproto.h "Big envelopes"). */
_Static_assert((unsigned long long)CONFIG_MAX_RECIPIENTS_MAX * (4 + SMTP_PATH_MAX + 4 + SMTP_DSN_RCPT_MAX)
               <= SCANPROTO_RCPTS_MAX_BYTES, "max_recipients' maximum passes a scan request");

static void cmd_rcpt(struct session *s, const char *arg)
{
	struct smtp_path_args a;
	const char *why = NULL;
	char err[200], params[1024], line[1700];
	struct txn *t = s->tx;

	if (t == NULL) { reply(s, "503 5.5.1 Error: need MAIL command"); s->errors++; return; }
	if (t->bdat_seen || t->bdat_failed) { reply(s, "503 5.5.1 Error: RCPT after BDAT"); s->errors++; return; }
	if (smtp_path_parse(arg, &a, &why) < 0 || a.path[0] == '\0') {
		/* even then: a 5xx for a recipient of a failed transaction would
		 * be its only permanent refusal */
		if (t->failed) reply(s, "%s", t->failed);
		else reply(s, "501 5.1.3 Bad recipient address syntax%s%s", why ? ": " : "", why ? why : "");
		s->errors++;
		return;
	}
	if (t->failed) {
		rcpt_refused(s, a.path, t->failed);
		return;
	}
	if (utf8_has_8bit(a.path, strlen(a.path)) && !t->smtputf8) {
		rcpt_refused(s, a.path, R_UTF8_UNDECLARED);
		s->errors++;
		return;
	}
	/* accepted recipients are capped by max_recipients; the attempts the
	 * upstream refused are capped too (at twice that), or a client could
	 * grow one transaction's memory without end */
	if (t->naccepted >= s->cfg->max_recipients || t->nrelayed >= 2 * (size_t)s->cfg->max_recipients) {
		rcpt_refused(s, a.path, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (build_params(s, &a, 0, params, sizeof params, err, sizeof err) < 0) {
		rcpt_refused(s, a.path, err);
		return;
	}
	if (!upstream_alive(s->up)) {
		/* it closed (or said 421) since the last command */
		txn_fail(t, R_NEXTHOP_LOST);
		rcpt_refused(s, a.path, R_NEXTHOP_LOST);
		return;
	}
	(void)rcpt_add(t, a.path, params, 0);   /* on_rcpt_reply fills in its reply */
	t->nrelayed++;
	snprintf(line, sizeof line, "RCPT TO:<%s>%s%s", a.path, params[0] ? " " : "", params);
	set_busy(s, 1);
	if (upstream_command(s->up, line, s->cfg->upstream_command_timeout, on_rcpt_reply, s) < 0)
		on_rcpt_reply(s, NULL, UP_ERR_CLOSED);
}

static void on_vrfy_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	if (err != UP_OK || !reply_fits(r, 0) || r->code == 421) {
		if (err != UP_OK) upstream_gone(s, err, "at VRFY");
		reply(s, "%s", R_NEXTHOP);
	} else {
		reply_relay(s, r);
		if (refusal_counts(r)) {     /* as a refused RCPT: no harvesting by VRFY */
			s->errors++;
			check_error_limit(s);
		}
	}
	resume(s);
}

static void on_vrfy_open(void *arg, const struct smtp_reply *r, enum upstream_err err);

static void cmd_vrfy(struct session *s, const char *arg)
{
	if (arg[0] == '\0') { reply(s, "501 5.5.4 Syntax: VRFY address"); s->errors++; return; }
	if (s->cfg->vrfy == VRFY_252) {
		reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
		return;
	}
	char line[600];
	snprintf(line, sizeof line, "VRFY %.512s", arg);
	set_busy(s, 1);
	if (upstream_alive(s->up)) {
		if (upstream_command(s->up, line, s->cfg->upstream_command_timeout, on_vrfy_reply, s) < 0)
			on_vrfy_reply(s, NULL, UP_ERR_CLOSED);
		return;
	}
	free(s->vrfy_line);
	s->vrfy_line = xstrdup(line);
	upstream_close(s->up);
	s->up = session_upstream_open(s, on_vrfy_open);
	if (s->up == NULL) {
		reply(s, "%s", R_NEXTHOP);
		set_busy(s, 0);
	}
}

static void on_vrfy_open(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	if (err != UP_OK || r->code / 100 != 2) {
		if (!client_name_refused(s, r, err)) reply(s, "%s", R_NEXTHOP);
		upstream_close(s->up);
		s->up = NULL;
		resume(s);
		return;
	}
	if (upstream_command(s->up, s->vrfy_line, s->cfg->upstream_command_timeout, on_vrfy_reply, s) < 0)
		on_vrfy_reply(s, NULL, UP_ERR_CLOSED);
}

/* ---- DATA --------------------------------------------------------------- */

static void cmd_data(struct session *s, const char *arg)
{
	struct txn *t = s->tx;
	if (arg[0] != '\0') { reply(s, "501 5.5.4 Syntax: DATA"); s->errors++; return; }
	if (t == NULL) { reply(s, "503 5.5.1 Error: need MAIL command"); s->errors++; return; }
	if (t->failed) { reply(s, "%s", t->failed); return; }
	if (t->naccepted == 0) { reply(s, "554 5.5.1 Error: no valid recipients"); return; }
	if (t->bdat_seen || t->bdat_failed) { reply(s, "503 5.5.1 Error: DATA after BDAT"); s->errors++; return; }
	if (t->binarymime) { reply(s, "503 5.5.1 Error: BODY=BINARYMIME needs BDAT"); s->errors++; return; }
	if (spool_full()) {
		slog(s->id, LOG_WARNING, "DATA refused: spool_memory_max reached");
		reply(s, "%s", R_STORAGE);
		return;
	}
	if (s->cfg->audit_fail_tempfail && audit_failing()) {
		/* this transaction's record is tried at its end: once one is
		 * written, mail flows again */
		slog(s->id, LOG_WARNING, "DATA refused: the audit log cannot be written (audit_failure = tempfail)");
		reply(s, "%s", R_STORAGE);
		return;
	}
	if (spool_open(&s->spool) < 0) {
		slog_errno(s->id, LOG_ERR, "spool");
		reply(s, "451 4.3.0 Error: local spool failure");
		return;
	}
	if (s->dec == NULL) s->dec = xmalloc(sizeof *s->dec);
	data_decoder_init(s->dec, spool_write, &s->spool, s->cfg->message_size_limit,
	                  s->cfg->bare_newline == BARE_NEWLINE_NORMALIZE);
	t->data_seen = 1;
	s->state = SS_DATA;
	arm_client_timeout(s);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void extract_headers_for_audit(struct session *s)
{
	struct txn *t = s->tx;
	const char *buf = s->spool.map;
	size_t pos = 0, len = s->spool.size;
	struct header_field f;
	if (buf == NULL) return;
	while (header_next(buf, len, &pos, &f) == 1) {
		if (!t->message_id[0] && header_name_is(&f, "Message-ID"))
			header_unfold(&f, t->message_id, sizeof t->message_id);
		else if (!t->subject[0] && header_name_is(&f, "Subject"))
			header_unfold(&f, t->subject, sizeof t->subject);
	}
}

static int to_upstream(void *arg, const char *p, size_t len)
{
	struct session *s = arg;
	return upstream_write(s->up, p, len);
}

static void on_eod_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	struct txn *t = s->tx;
	const char *action = t->action;
	/* a BDAT's reply before its chunk was all written (RFC 3030: the MTA
	 * reads the whole chunk, then answers): the MTA would read the rest
	 * of the chunk we stop sending, or take our next command as octets of
	 * it; the connection is out of step and goes, without QUIT */
	unsigned long long unsent = s->relay_raw ? s->relay_left + (s->hdrbuf.len - s->hdr_off) : 0;
	upstream_set_drain_cb(s->up, NULL, NULL);
	upstream_set_body_fail_cb(s->up, NULL, NULL);
	s->relay_raw = 0;
	if (err == UP_OK && unsent > 0) {
		char esc[200];
		slog(s->id, LOG_WARNING, "upstream=%s answered BDAT with %llu octets of its chunk not sent "
		     "(connection dropped): %s", s->tgt->spec, unsent, log_esc(esc, sizeof esc, r->text, r->len));
		upstream_drop(s->up);
		s->up = NULL;
		t->at_upstream = 0;
		if (reply_fits(r, 0) && r->code / 100 != 2 && r->code != 421) {
			/* a refusal stands: it never took the message */
			reply_relay(s, r);
			reply_summary(r, t->reply, sizeof t->reply);
			txn_end(s, r->code / 100 == 4 ? "tempfail-by-upstream" : "rejected-by-upstream");
		} else {
			/* "accepted" before it had the message: not believed */
			reply(s, "%s", R_NEXTHOP_BAD);
			txn_set_reply(t, R_NEXTHOP_BAD);
			txn_end(s, "tempfail");
		}
		resume(s);
		return;
	}
	if (err != UP_OK) {
		upstream_gone(s, err, "at end of data");
		reply(s, "%s", R_NEXTHOP_LOST);
		txn_set_reply(t, R_NEXTHOP_LOST);
		t->at_upstream = 0;
		txn_end(s, "tempfail");
	} else if (!reply_fits(r, 0)) {
		char esc[200];
		slog(s->id, LOG_WARNING, "upstream reply out of place at end of data: %s",
		     log_esc(esc, sizeof esc, r->text, r->len));
		reply(s, "%s", R_NEXTHOP_BAD);
		upstream_close(s->up);
		s->up = NULL;
		txn_set_reply(t, R_NEXTHOP_BAD);
		txn_end(s, "tempfail");
	} else if (r->code == 421) {
		reply(s, "451 4.4.2 Next hop closing, try again later");
		txn_set_reply(t, "451 4.4.2 Next hop closing");
		txn_end(s, "tempfail");
	} else {
		reply_relay(s, r);
		reply_summary(r, t->reply, sizeof t->reply);
		if (r->code / 100 == 2) {
			smtp_reply_queue_id(r, t->queue_id, sizeof t->queue_id);
			t->at_upstream = 0;   /* the upstream transaction is complete */
			txn_end(s, action);
			errors_forgiven(s);
		} else {
			t->at_upstream = 0;   /* a failed DATA ends the upstream transaction too */
			txn_end(s, r->code / 100 == 4 ? "tempfail-by-upstream" : "rejected-by-upstream");
		}
	}
	resume(s);
}

/* Push the message upstream without holding more than RELAY_HIWAT in the
 * output buffer; called again by the drain callback. */
static void relay_pump(void *arg)
{
	struct session *s = arg;
	if (!upstream_alive(s->up)) return;
	while (upstream_output_pending(s->up) < RELAY_HIWAT) {
		if (s->hdr_off < s->hdrbuf.len) {
			size_t n = s->hdrbuf.len - s->hdr_off;
			if (s->relay_raw) upstream_write(s->up, s->hdrbuf.data + s->hdr_off, n);
			else data_encoder_feed(&s->enc, s->hdrbuf.data + s->hdr_off, n, to_upstream, s);
			s->hdr_off += n;
			continue;
		}
		if (s->relay_left == 0 && s->relay_raw) {   /* the BDAT reply is queued already */
			upstream_set_drain_cb(s->up, NULL, NULL);
			s->relay_raw = 0;
			s->tx->sent_whole = 1;
			return;
		}
		if (s->relay_raw) {
			size_t n = s->relay_left < RELAY_CHUNK ? s->relay_left : RELAY_CHUNK;
			upstream_write(s->up, s->relay_p, n);
			s->relay_p += n;
			s->relay_left -= n;
			continue;
		}
		if (s->relay_left == 0) {
			upstream_set_drain_cb(s->up, NULL, NULL);
			data_encoder_finish(&s->enc, to_upstream, s);
			s->tx->sent_whole = 1;
			if (upstream_expect(s->up, s->cfg->upstream_eod_timeout, on_eod_reply, s) < 0)
				on_eod_reply(s, NULL, UP_ERR_CLOSED);
			return;
		}
		size_t n = s->relay_left < RELAY_CHUNK ? s->relay_left : RELAY_CHUNK;
		data_encoder_feed(&s->enc, s->relay_p, n, to_upstream, s);
		s->relay_p += n;
		s->relay_left -= n;
	}
}

/* The header section as it goes out (header_edit.c). */
static void build_headers(struct session *s)
{
	const struct scan_result *res = &s->tx->res;
	const char *buf = s->spool.map ? s->spool.map : "";
	size_t body;

	sbuf_init(&s->hdrbuf, (size_t)-1);
	body = header_edits_apply(buf, s->spool.size, res->edits, res->nedits, &s->hdrbuf);
	if (s->newbody != NULL) {
		/* the empty line and the body, as the scanner rewrote them */
		s->relay_p = s->newbody;
		s->relay_left = s->newbody_len;
	} else {
		s->relay_p = buf + body;
		s->relay_left = s->spool.size - body;
	}
	s->hdr_off = 0;
}

static void on_data_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	struct txn *t = s->tx;
	if (err != UP_OK) {
		upstream_gone(s, err, "at DATA");
		reply(s, "%s", R_NEXTHOP_LOST);
		txn_set_reply(t, R_NEXTHOP_LOST);
		t->at_upstream = 0;
		txn_end(s, "tempfail");
		resume(s);
		return;
	}
	if (r->code != 354) {
		if (!reply_fits(r, 0) || r->code / 100 == 2 || r->code == 421) {
			reply(s, "%s", R_NEXTHOP_BAD);
			txn_set_reply(t, R_NEXTHOP_BAD);
		} else {
			reply_relay(s, r);
			reply_summary(r, t->reply, sizeof t->reply);
		}
		txn_end(s, "tempfail");
		resume(s);
		return;
	}
	build_headers(s);
	data_encoder_init(&s->enc);
	upstream_set_drain_cb(s->up, relay_pump, s);
	/* until the end of data is written no reply is awaited: a connection
	 * lost (or a write deadline passed) mid-body ends the transaction as a
	 * loss at the end of data would, or the client would wait for ever */
	upstream_set_body_fail_cb(s->up, on_eod_reply, s);
	relay_pump(s);
}

/* The message goes on as one "BDAT n LAST" chunk, as it is (no stuffing);
 * the reply to it is the final one. */
static void relay_bdat(struct session *s)
{
	char line[64];
	build_headers(s);
	unsigned long long total = (unsigned long long)(s->hdrbuf.len + s->relay_left);
	snprintf(line, sizeof line, "BDAT %llu LAST", total);
	if (upstream_command(s->up, line, s->cfg->upstream_eod_timeout, on_eod_reply, s) < 0) {
		on_eod_reply(s, NULL, UP_ERR_CLOSED);
		return;
	}
	s->relay_raw = 1;
	upstream_set_drain_cb(s->up, relay_pump, s);
	relay_pump(s);
}

static void on_scan_done(void *arg, struct scan_result *moved)
{
	struct session *s = arg;
	struct txn *t = s->tx;
	s->scan_id = 0;
	/* take the result over; the caller frees what is left: nothing */
	t->res = *moved;
	t->have_res = 1;
	memset(moved, 0, sizeof *moved);
	const struct scan_result *res = &t->res;
	t->scan_ms = res->scan_ms;
	const char *action = mw_action_name(res->action);
	t->action = action;
	if (res->error[0]) {
		slog(s->id, LOG_WARNING, "scan failed: %s", res->error);
		stats_scan_failure(STATS_PROXY);
	}
	switch (res->action) {
	case MW_ACCEPT:
	case MW_TAG:
		if (!upstream_alive(s->up)) {
			reply(s, "%s", R_NEXTHOP_LOST);
			txn_set_reply(t, R_NEXTHOP_LOST);
			txn_end(s, "tempfail");
			break;
		}
		if (res->new_body && map_new_body(s, res) < 0) {
			slog_errno(s->id, LOG_ERR, "cannot map the rewritten body");
			reply(s, "%s", R_NEW_BODY);
			txn_set_reply(t, R_NEW_BODY);
			txn_end(s, "tempfail");
			break;
		}
		if (t->bdat_seen && (upstream_caps(s->up) & UCAP_CHUNKING)) {
			relay_bdat(s);
			return;
		}
		if (upstream_command(s->up, "DATA", s->cfg->upstream_command_timeout, on_data_reply, s) < 0)
			on_data_reply(s, NULL, UP_ERR_CLOSED);
		return;
	default: {
		const char *text = res->reply[0] ? res->reply : "451 4.3.0 Error: no reply for this action";
		/* a message taken (discarded, quarantined: 250 to the client)
		 * is a delivery as far as the client knows (read before
		 * txn_end, which frees the result text points into) */
		int taken = text[0] == '2';
		reply(s, "%s", text);
		txn_set_reply(t, text);
		txn_end(s, action);
		if (taken)
			errors_forgiven(s);
		break;
	}
	}
	resume(s);
}

static const char *fault_reply(enum data_fault f)
{
	switch (f) {
	case DF_BARE_LF:
	case DF_BARE_CR: return "550 5.5.2 Error: bare CR or LF in message content (RFC 5321 requires CRLF)";
	case DF_NUL: return "550 5.6.0 Error: NUL character in message content";
	case DF_LINE_TOO_LONG: return "550 5.6.0 Error: message line longer than 998 octets";
	case DF_TOO_BIG: return "552 5.3.4 Error: message size exceeds fixed limit";
	case DF_SINK_ERROR: return "451 4.3.0 Error: local spool failure";
	case DF_OK: break;
	}
	return "451 4.3.0 Error: local failure";
}

/* The content is in (DATA or the last BDAT chunk): refuse it for its
 * fault, or seal the spool and ask the scanner. */
static void content_done(struct session *s, enum data_fault fault, uint64_t size,
                         unsigned bare_lf, unsigned bare_cr, unsigned nul)
{
	struct txn *t = s->tx;
	s->state = SS_CMD;
	t->size = size;
	if (bare_lf || bare_cr || fault == DF_BARE_LF || fault == DF_BARE_CR) {
		/* Smuggling defence: a client that mixes line ends gets this one
		 * message answered (rejected, or normalized and relayed), and then
		 * the connection closes, so nothing it pipelined after an end of
		 * data that other MTAs might place elsewhere is ever relayed. */
		s->close_after_txn = 1;
		slog(s->id, LOG_NOTICE, "bare CR/LF in message (lf=%u cr=%u): closing after this transaction",
		     bare_lf, bare_cr);
	}
	if (fault != DF_OK) {
		int sink = fault == DF_SINK_ERROR;
		int full = sink && (s->spool.full || spool_err_storage(s->spool.err));
		const char *r = full ? R_STORAGE : fault_reply(fault);
		char why[160] = "";
		if (sink && s->spool.full)
			snprintf(why, sizeof why, ", spool_memory_max reached");
		else if (sink)      /* a write to the memfd failed: say why */
			snprintf(why, sizeof why, ", spool write: %s", strerror(s->spool.err));
		snprintf(t->fault, sizeof t->fault, "%s", data_fault_name(fault));
		slog(s->id, sink ? LOG_WARNING : LOG_NOTICE, "message refused: %s%s (bare_lf=%u bare_cr=%u nul=%u)",
		     data_fault_name(fault), why, bare_lf, bare_cr, nul);
		reply(s, "%s", r);
		txn_set_reply(t, r);
		txn_end(s, r[0] == '4' ? "tempfail" : "reject");
		if (s->close_after_txn) close_after_flush(s);
		else arm_client_timeout(s);
		return;
	}
	/* a small message goes to the scanner inline (no memfd) */
	if (spool_finish_small(&s->spool, SCANPROTO_INLINE_MAX) < 0) {
		const char *r = spool_err_storage(errno) ? R_STORAGE : "451 4.3.0 Error: local spool failure";
		slog_errno(s->id, LOG_ERR, "spool seal");
		reply(s, "%s", r);
		txn_set_reply(t, r);
		txn_end(s, "tempfail");
		return;
	}
	extract_headers_for_audit(s);

	struct scan_request req;
	memset(&req, 0, sizeof req);
	memcpy(req.session_id, s->id, sizeof req.session_id);
	req.listener = s->ln->cfg.name;
	req.direction = session_direction(s);
	/* borrowed for the submit, which encodes them (the casts: the
	 * scanner's side of struct scan_request owns its strings) */
	req.client_ip = (char *)client_ip_of(s);
	req.client_port = client_port_of(s);
	req.client_name = (char *)(xf_value(s, SMTP_XF_NAME) ? xf_value(s, SMTP_XF_NAME) : "");
	req.helo = (char *)helo_of(s);
	req.mail_from = t->mail_from;
	req.mail_params = t->mail_params;
	char **rcpts = xcalloc(t->naccepted ? t->naccepted : 1, sizeof *rcpts);
	char **dsn = xcalloc(t->naccepted ? t->naccepted : 1, sizeof *dsn);
	int any_dsn = 0;
	for (size_t i = 0; i < t->nrcpts; i++)
		if (t->rcpts[i].accepted) {
			char d[SMTP_DSN_RCPT_MAX + 1];
			any_dsn |= smtp_dsn_rcpt_params(t->rcpts[i].params, d, sizeof d) > 0;
			dsn[req.nrcpts] = xstrdup(d);
			rcpts[req.nrcpts++] = t->rcpts[i].addr;
		}
	req.rcpts = rcpts;
	req.rcpt_dsn = any_dsn ? dsn : NULL;   /* for a quarantine release */
	req.size = s->spool.size;
	req.auth_user = (char *)login_of(s);
	req.tls = s->tls_desc;
	if (s->spool.fd < 0) {
		req.msg = (const unsigned char *)s->spool.map;
		req.msg_len = s->spool.size;
		req.msg_inline = 1;
	}
	set_busy(s, 1);
	struct scan_unsent un;
	s->scan_id = scanclient_submit(s->px->scan, &req, s->spool.fd, s->cfg->scan_timeout, on_scan_done, s,
	                               &un);
	free(rcpts);
	for (size_t i = 0; i < req.nrcpts; i++) free(dsn[i]);
	free(dsn);
	if (s->scan_id == 0) {
		/* "scanner unavailable" only when it is: a request that could
		 * not go for a reason of its own would send the admin looking
		 * for a dead scanner */
		stats_scan_failure(STATS_PROXY);
		if (un.request_fault) {
			slog(s->id, LOG_WARNING, "tempfail: %s", un.why);
			reply(s, "%s", R_NOT_SCANNED);
			txn_set_reply(t, R_NOT_SCANNED);
		} else {
			slog(s->id, LOG_WARNING, "scanner unavailable: %s", un.why);
			reply(s, "451 4.3.0 Error: content scanner unavailable, try again later");
			txn_set_reply(t, "451 4.3.0 Error: content scanner unavailable");
		}
		txn_end(s, "tempfail");
		set_busy(s, 0);
	}
}

static void end_of_data(struct session *s)
{
	struct data_decoder *dec = s->dec;
	s->dec = NULL;
	content_done(s, dec->fault, dec->size, dec->bare_lf, dec->bare_cr, dec->nul);
	free(dec);
}

/* ---- BDAT (RFC 3030) ---------------------------------------------------- */

/* cmd_bdat - BDAT count [LAST]: the chunk is always read to its end,
 * even when it is refused, so that the client and we stay in step.
 * refuse: the reply for the chunk whatever the transaction (NULL: none),
 * given once the chunk has been read */
static void cmd_bdat(struct session *s, const char *arg, const char *refuse)
{
	struct txn *t = s->tx;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(arg, &end, 10);
	int last = 0;
	if (end != arg && (*end == ' ' || *end == '\0')) {
		while (*end == ' ') end++;
		if (strcasecmp(end, "LAST") == 0) last = 1;
		else if (*end != '\0') end = (char *)arg;
	}
	if (arg[0] < '0' || arg[0] > '9' || errno != 0 || end == arg || strlen(arg) > 40) {
		/* the chunk's length is unknown: what follows cannot be read as
		 * commands (it is message content), so the session ends */
		reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
		if (s->tx) txn_end(s, "aborted");
		close_after_flush(s);
		return;
	}
	s->bdat_left = n;
	s->bdat_last = last;
	s->bdat_refuse = refuse;
	/* RFC 3030 2: after a refused chunk the transaction has failed; the
	 * chunks a pipelining client sent behind it are read and refused (with
	 * the same reply: a temporary failure stays temporary) until RSET or a
	 * new transaction, never taken as the start of the message */
	if (s->bdat_refuse == NULL) {
		if (t != NULL && t->bdat_failed) s->bdat_refuse = t->bdat_failed;
		else if (t != NULL && t->failed) s->bdat_refuse = t->failed;
		else if (t == NULL) s->bdat_refuse = "503 5.5.1 Error: need MAIL command";
		else if (t->data_seen) s->bdat_refuse = "503 5.5.1 Error: BDAT after DATA";
		else if (t->naccepted == 0) s->bdat_refuse = "554 5.5.1 Error: no valid recipients";
	}
	if (s->bdat_refuse == NULL && !t->bdat_seen && spool_full()) {
		slog(s->id, LOG_WARNING, "BDAT refused: spool_memory_max reached");
		s->bdat_refuse = R_STORAGE;
	}
	if (s->bdat_refuse == NULL && !t->bdat_seen && s->cfg->audit_fail_tempfail && audit_failing()) {
		slog(s->id, LOG_WARNING, "BDAT refused: the audit log cannot be written (audit_failure = tempfail)");
		s->bdat_refuse = R_STORAGE;
	}
	if (s->bdat_refuse == NULL && !t->bdat_seen) {
		if (spool_open(&s->spool) < 0) {
			slog_errno(s->id, LOG_ERR, "spool");
			s->bdat_refuse = "451 4.3.0 Error: local spool failure";
		} else {
			t->bdat_seen = 1;
			if (s->bdat == NULL) s->bdat = xmalloc(sizeof *s->bdat);
			bdat_content_init(s->bdat, spool_write, &s->spool, s->cfg->message_size_limit,
			                  s->cfg->bare_newline == BARE_NEWLINE_NORMALIZE, t->binarymime);
		}
	}
	if (t != NULL && s->bdat_refuse != NULL) t->bdat_failed = s->bdat_refuse;
	s->state = SS_BDAT;
	arm_client_timeout(s);
}

/* A chunk has been read. */
static void end_of_chunk(struct session *s)
{
	s->state = SS_CMD;
	if (s->bdat_refuse) {
		reply(s, "%s", s->bdat_refuse);
		s->errors++;
		arm_client_timeout(s);
		check_error_limit(s);     /* an error like any other refused command */
		return;
	}
	if (!s->bdat_last) {
		reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->bdat->size);
		arm_client_timeout(s);
		return;
	}
	struct bdat_content *b = s->bdat;
	enum data_fault f = bdat_content_finish(b);
	content_done(s, f, b->size, b->bare_lf, b->bare_cr, b->nul);
}

/* Feed buffered chunk octets; 1 when the chunk is complete. */
static int process_bdat(struct session *s)
{
	size_t len;
	const char *p = conn_in_peek(s->conn, &len);
	size_t n = s->bdat_left < len ? (size_t)s->bdat_left : len;
	if (n > 0) {
		if (s->bdat_refuse == NULL) bdat_content_feed(s->bdat, p, n);
		conn_in_drain(s->conn, n);
		s->bdat_left -= n;
	}
	return s->bdat_left == 0;
}

/* ---- command dispatch -------------------------------------------------- */

/* AUTH is offered on relay listeners, over TLS unless plaintext is allowed. */
static int auth_offered(const struct session *s)
{
	return s->ln->cfg.auth == MW_AUTH_RELAY && !s->auth_user[0] &&
	       (s->tls_desc[0] || (s->ln->cfg.auth_plaintext && !s->ln->cfg.tls_required));
}

static void send_ehlo(struct session *s)
{
	const struct upstream_target *t = s->tgt;
	unsigned caps = t->caps_known ? t->caps : 0;
	struct sbuf b;
	sbuf_init(&b, 4096);
	sbuf_addf(&b, "250-%s\r\n", s->cfg->hostname);
	sbuf_adds(&b, "250-PIPELINING\r\n");
	if (s->ln->cfg.tls_mode == MW_TLS_STARTTLS && !s->tls_desc[0]) sbuf_adds(&b, "250-STARTTLS\r\n");
	if (auth_offered(s)) sbuf_adds(&b, "250-AUTH PLAIN LOGIN\r\n");
	if (s->xforward_peer) sbuf_adds(&b, "250-XFORWARD " SMTP_XF_ANNOUNCE "\r\n");
	sbuf_addf(&b, "250-SIZE %llu\r\n", (unsigned long long)s->cfg->message_size_limit);
	if (caps & UCAP_8BITMIME) sbuf_adds(&b, "250-8BITMIME\r\n");
	if (caps & UCAP_SMTPUTF8) sbuf_adds(&b, "250-SMTPUTF8\r\n");
	if (caps & UCAP_DSN) sbuf_adds(&b, "250-DSN\r\n");
	if (caps & UCAP_ENHANCED) sbuf_adds(&b, "250-ENHANCEDSTATUSCODES\r\n");
	/* BDAT is ours (relayed as DATA when the upstream lacks it); binary
	 * content can only go on as BDAT to an upstream that takes it */
	sbuf_adds(&b, "250-CHUNKING\r\n");
	if ((caps & UCAP_BINARYMIME) && (caps & UCAP_CHUNKING)) sbuf_adds(&b, "250-BINARYMIME\r\n");
	sbuf_adds(&b, "250 HELP\r\n");        /* the last line carries the space */
	conn_write(s->conn, b.data, b.len);
	sbuf_free(&b);
}

static void cmd_helo(struct session *s, const char *arg, int esmtp)
{
	if (arg[0] == '\0') {
		reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		s->errors++;
		return;
	}
	if (s->tx) txn_end(s, "aborted");
	xforward_reset(s);
	/* whole: a name over 255 octets (RFC 5321 4.5.3.1.2) is the MTA's
	 * to refuse (Postfix's reject_invalid_helo_hostname), which it can
	 * only do on the name itself; cut, it reached the MTA as a valid name
	 * the client never gave.  XCLIENT sends it as [UNAVAILABLE] (Postfix
	 * takes no longer value there) and the EHLO after it carries it. */
	free(s->helo);
	s->helo = xstrndup(arg, strcspn(arg, " "));
	s->helo_seen = 1;
	s->esmtp = esmtp;
	if (upstream_client_changed(s->up, s->helo, s->esmtp)) {
		/* its XCLIENT named the old HELO: the MTA would check (and log,
		 * and write into Received:) the old name while the scan sees the
		 * new one; the next command opens a connection that names this one */
		upstream_close(s->up);
		s->up = NULL;
	}
	if (esmtp) send_ehlo(s);
	else reply(s, "250 %s", s->cfg->hostname);
}

static void cmd_rset(struct session *s)
{
	if (s->tx) txn_end(s, "aborted");
	xforward_reset(s);
	reply(s, "250 2.0.0 Ok");
}

/* XFORWARD (Postfix's XFORWARD_README), from a peer in xforward_from only:
 * the client of the next transaction.  Strangers get 502 as for any
 * command we do not offer them. */
static void cmd_xforward(struct session *s, const char *arg)
{
	const char *why = NULL;
	struct smtp_xforward xf;
	char ip[64] = "";

	if (!s->xforward_peer) { reply(s, "502 5.5.1 Error: command not implemented"); s->errors++; return; }
	if (!s->helo_seen || !s->esmtp) { reply(s, "503 5.5.1 Error: send EHLO first"); s->errors++; return; }
	if (s->tx) { reply(s, "503 5.5.1 Error: MAIL transaction in progress"); s->errors++; return; }
	/* several commands add up: merged into what this transaction has */
	if (s->xf != NULL)
		xf = s->xf->v;
	else
		memset(&xf, 0, sizeof xf);
	if (smtp_xforward_parse(arg, &xf, &why) < 0) {
		reply(s, "%s", why);
		s->errors++;
		return;
	}
	const char *addr = xf.state[SMTP_XF_ADDR] == SMTP_XF_VALUE ? xf.value[SMTP_XF_ADDR] : NULL;
	if (addr != NULL && strncasecmp(addr, "IPV6:", 5) == 0) addr += 5;
	/* one spelling of an address (a mapped or translated IPv4 client is
	 * its IPv4 address), as for a client connecting directly */
	if (addr != NULL && ipnet_canon(addr, ip, sizeof ip) < 0) {
		reply(s, "501 5.5.4 Bad XFORWARD attribute value");
		s->errors++;
		return;
	}
	if (s->xf == NULL)
		s->xf = xcalloc(1, sizeof *s->xf);
	s->xf->v = xf;
	snprintf(s->xf->ip, sizeof s->xf->ip, "%s", ip);
	if (log_enabled(LOG_INFO)) {
		char esc[300];
		slog(s->id, LOG_INFO, "XFORWARD from [%s]: client [%s]:%u helo=%s%s%s", s->client_ip,
		     client_ip_of(s), client_port_of(s),
		     log_esc_word(esc, sizeof esc, helo_of(s), strlen(helo_of(s))),
		     login_of(s)[0] ? " login=" : "", login_of(s)[0] ? "(set)" : "");
	}
	reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct session *s)
{
	if (s->tx) txn_end(s, "aborted");
	reply(s, "221 2.0.0 Bye");
	close_after_flush(s);
}

/* ---- STARTTLS (RFC 3207) ------------------------------------------------ */

static void start_tls(struct session *s)
{
	SSL *ssl = tls_server_ssl(s->ln->tls);
	if (ssl == NULL) {
		slog(s->id, LOG_ERR, "SSL_new failed");
		close_after_flush(s);
		return;
	}
	SSL_set_accept_state(ssl);
	set_busy(s, 1);
	/* a handshake gets the command timeout */
	conn_set_timeouts(s->conn, s->cfg->client_command_timeout, s->cfg->client_command_timeout);
	size_t dropped = conn_start_tls(s->conn, ssl);
	if (dropped)
		slog(s->id, LOG_NOTICE, "client [%s] pipelined %zu bytes after STARTTLS: discarded (command injection)",
		     s->client_ip, dropped);
}

static void cmd_starttls(struct session *s, const char *arg)
{
	if (s->peer_eof) {
		/* a client that sent its last octet cannot do a handshake, and
		 * one waiting for it would have no read deadline (nothing is read) */
		close_after_flush(s);
		return;
	}
	if (s->ln->cfg.tls_mode != MW_TLS_STARTTLS || s->ln->tls == NULL) {
		reply(s, "502 5.5.1 Error: command not implemented");
		s->errors++;
		return;
	}
	if (arg[0] != '\0') { reply(s, "501 5.5.4 Syntax: STARTTLS"); s->errors++; return; }
	if (s->tls_desc[0]) { reply(s, "554 5.5.1 Error: TLS already active"); s->errors++; return; }
	if (s->tx) { reply(s, "503 5.5.1 Error: MAIL transaction in progress"); s->errors++; return; }
	reply(s, "220 2.0.0 Ready to start TLS");
	/* RFC 3207 4.2: nothing learnt before TLS survives it: not the EHLO
	 * name, not an authentication, and not the upstream session opened
	 * (with XCLIENT, perhaps authenticated) on their strength */
	s->auth_user[0] = '\0';
	xforward_reset(s);
	upstream_close(s->up);
	s->up = NULL;
	s->state = SS_TLS;
	start_tls(s);
}

/* The handshake is done: the session starts again (RFC 3207 4.2), a new
 * EHLO is needed; an implicit-TLS session gets its greeting now. */
static void tls_ready(struct session *s)
{
	tls_describe(conn_ssl(s->conn), s->tls_desc, sizeof s->tls_desc);
	slog(s->id, LOG_INFO, "client [%s] TLS %s", s->client_ip, s->tls_desc);
	s->helo_seen = 0;
	s->esmtp = 0;
	s->helo[0] = '\0';
	s->state = SS_CMD;
	if (s->ln->cfg.tls_mode == MW_TLS_IMPLICIT) greet(s);
	resume(s);
}

/* ---- AUTH (RFC 4954), relayed to the upstream ------------------------- */

static const char R_AUTH_TEMP[] = "454 4.7.0 Temporary authentication failure";
static const char R_AUTH_UNDECODED[] = "501 5.5.2 Cannot decode response";

/* The user of a PLAIN response ("authzid\0authcid\0passwd", base64), or of
 * a LOGIN username response, into out; "" if it does not decode. */
static void auth_user_of(const char *b64, int login, char *out, size_t outsz)
{
	unsigned char buf[1024];
	size_t n = strlen(b64);
	out[0] = '\0';
	if (n == 0 || n > 4 * (sizeof buf / 3) || n % 4 != 0) return;
	/* strict: the alphabet, '=' only as the last one or two; OpenSSL reads
	 * an '=' inside as zero bits and goes on, where a server may stop */
	size_t pad = b64[n - 1] == '=' ? (b64[n - 2] == '=' ? 2 : 1) : 0;
	for (size_t i = 0; i < n - pad; i++)
		if (!((b64[i] >= 'A' && b64[i] <= 'Z') || (b64[i] >= 'a' && b64[i] <= 'z') ||
		      (b64[i] >= '0' && b64[i] <= '9') || b64[i] == '+' || b64[i] == '/'))
			return;
	int len = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
	if (len < 0) goto wipe;       /* it may have written part of it */
	while (len > 0 && n >= 2 && b64[n - 1] == '=') { len--; n--; }  /* padding */
	const unsigned char *u = buf;
	size_t ulen = (size_t)len;
	if (!login) {                  /* skip authzid; authcid ends at the next NUL */
		const unsigned char *z = memchr(buf, '\0', (size_t)len);
		const unsigned char *e = z ? memchr(z + 1, '\0', (size_t)len - (size_t)(z + 1 - buf)) : NULL;
		if (e == NULL) goto wipe;    /* not PLAIN's authzid NUL authcid NUL passwd */
		u = z + 1;
		ulen = (size_t)(e - u);
	}
	if (ulen >= outsz) ulen = outsz - 1;
	for (size_t i = 0; i < ulen; i++)          /* keep the log and audit sane */
		out[i] = (u[i] < 32 || u[i] == 127) ? '?' : (char)u[i];
	out[ulen] = '\0';
wipe:
	/* every way out: the decoded credential holds the password */
	explicit_bzero(buf, sizeof buf);
}

static void on_auth_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	s->auth_wait = 0;
	if (err != UP_OK) {
		upstream_gone(s, err, "at AUTH");
		reply(s, "%s", R_AUTH_TEMP);
	} else if (r->code == 334) {
		s->auth_wait = 1;             /* the client's next line answers it */
		reply_relay(s, r);
	} else if (r->code == 235 && s->auth_try[0] == '\0') {
		/* logged in upstream as a user we could not name: not taken as
		 * authenticated (no ratelimit_user key, no user in the audit),
		 * and that upstream session, authenticated, is dropped */
		slog(s->id, LOG_WARNING, "upstream=%s accepted an AUTH whose user mailwarden could not "
		     "read: refused", s->tgt->spec);
		upstream_close(s->up);
		s->up = NULL;
		reply(s, "%s", R_AUTH_TEMP);
	} else if (r->code == 235) {
		snprintf(s->auth_user, sizeof s->auth_user, "%s", s->auth_try);
		char uesc[4 * sizeof s->auth_user];   /* the client's text: one token (log.h) */
		slog(s->id, LOG_INFO, "client [%s] authenticated as %s", s->client_ip,
		     log_esc_word(uesc, sizeof uesc, s->auth_user, strlen(s->auth_user)));
		reply_relay(s, r);
	} else if (!reply_fits(r, 0) || r->code / 100 == 2 || r->code == 421) {
		reply(s, "%s", R_AUTH_TEMP);
	} else {
		slog(s->id, LOG_NOTICE, "client [%s] authentication failed (%d)", s->client_ip, r->code);
		reply_relay(s, r);
		/* a refused credential is an error like any other: a password
		 * guesser gets max_errors tries per connection, not unlimited
		 * (and no more for a message delivered between tries) */
		s->errors++;
		s->auth_errors++;
		check_error_limit(s);
	}
	if (!s->auth_wait) explicit_bzero(s->auth_try, sizeof s->auth_try);
	resume(s);
}

static void on_auth_cancelled(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	if (err != UP_OK) upstream_gone(s, err, "at AUTH");
	explicit_bzero(s->auth_try, sizeof s->auth_try);
	resume(s);
}

/* The client's answer to a 334 was too long (our 500 is sent): the
 * exchange is over on both sides, so the upstream gets "*" (RFC 4954 4)
 * and its reply is not relayed; else the client's next command would
 * reach the upstream as a credential. */
static void auth_cancel(struct session *s)
{
	s->auth_wait = 0;
	if (!upstream_alive(s->up)) return;
	set_busy(s, 1);
	if (upstream_command(s->up, "*", s->cfg->upstream_command_timeout, on_auth_cancelled, s) < 0)
		on_auth_cancelled(s, NULL, UP_ERR_CLOSED);
}

/* A line the client sent in answer to a 334: relayed as it is. */
static void auth_response(struct session *s, const char *line)
{
	s->auth_wait = 0;
	/* the first response carries the user (LOGIN: the user name; PLAIN:
	 * the whole credential), and only the first: a later one is a password */
	if (!s->auth_user_seen) {
		s->auth_user_seen = 1;
		if (strcmp(line, "*") != 0) {
			auth_user_of(line, s->auth_mech_login, s->auth_try, sizeof s->auth_try);
			if (s->auth_try[0] == '\0') {
				/* the exchange ends here on both sides (the upstream gets "*") */
				reply(s, "%s", R_AUTH_UNDECODED);
				s->errors++;
				check_error_limit(s);
				if (s->state != SS_CLOSING) auth_cancel(s);
				return;
			}
		}
	}
	if (!upstream_alive(s->up)) {
		reply(s, "%s", R_AUTH_TEMP);
		return;
	}
	set_busy(s, 1);
	if (upstream_command(s->up, line, s->cfg->upstream_command_timeout, on_auth_reply, s) < 0)
		on_auth_reply(s, NULL, UP_ERR_CLOSED);
}

static void send_auth(struct session *s)
{
	char *line = s->auth_line;
	s->auth_line = NULL;
	if (!(upstream_caps(s->up) & UCAP_AUTH)) {
		slog(s->id, LOG_WARNING, "upstream=%s does not offer AUTH", s->tgt->spec);
		reply(s, "%s", R_AUTH_TEMP);
		explicit_bzero(line, strlen(line));
		free(line);
		resume(s);
		return;
	}
	int rc = upstream_command(s->up, line, s->cfg->upstream_command_timeout, on_auth_reply, s);
	explicit_bzero(line, strlen(line));
	free(line);
	if (rc < 0) on_auth_reply(s, NULL, UP_ERR_CLOSED);
}

static void on_auth_open(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct session *s = arg;
	if (err != UP_OK || r->code / 100 != 2) {
		slog(s->id, LOG_WARNING, "upstream=%s unavailable for AUTH: %s", s->tgt->spec,
		     err != UP_OK ? upstream_err_name(err) : "refused");
		if (!client_name_refused(s, r, err)) reply(s, "%s", R_AUTH_TEMP);
		upstream_close(s->up);
		s->up = NULL;
		if (s->auth_line) explicit_bzero(s->auth_line, strlen(s->auth_line));
		free(s->auth_line);
		s->auth_line = NULL;
		resume(s);
		return;
	}
	send_auth(s);
}

static void cmd_auth(struct session *s, const char *arg)
{
	char mech[32], line[1100];
	if (s->ln->cfg.auth != MW_AUTH_RELAY) {
		reply(s, "502 5.5.1 Error: command not implemented");
		s->errors++;
		return;
	}
	if (!s->helo_seen || !s->esmtp) { reply(s, "503 5.5.1 Error: send EHLO first"); s->errors++; return; }
	if (s->auth_user[0]) { reply(s, "503 5.5.1 Error: already authenticated"); s->errors++; return; }
	if (s->tx) { reply(s, "503 5.5.1 Error: MAIL transaction in progress"); s->errors++; return; }
	if (!s->tls_desc[0] && !s->ln->cfg.auth_plaintext) {
		reply(s, s->ln->cfg.tls_mode != MW_TLS_NONE ? "530 5.7.0 Must issue a STARTTLS command first"
		                                            : "538 5.7.11 Encryption required for requested authentication mechanism");
		s->errors++;
		return;
	}
	size_t n = strcspn(arg, " ");
	if (n == 0 || n >= sizeof mech) { reply(s, "501 5.5.4 Syntax: AUTH mechanism"); s->errors++; return; }
	memcpy(mech, arg, n);
	mech[n] = '\0';
	/* "AUTH" SP mech [SP initial-response] (RFC 4954): one token.  The
	 * line relayed is rebuilt from it, so what the upstream reads is what
	 * the user was taken from; with the raw rest of the line, "AUTH PLAIN
	 * <2 spaces>cred" logged in upstream while no user was found here,
	 * past ratelimit_user and unnamed in the audit */
	const char *initial = arg + n;
	while (*initial == ' ')
		initial++;
	if (*initial == '\0')
		initial = NULL;
	else if (strchr(initial, ' ') != NULL) {
		reply(s, "501 5.5.2 Syntax: AUTH mechanism [initial-response]");
		s->errors++;
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0) {
		reply(s, "504 5.5.4 Unrecognized authentication type");
		s->errors++;
		return;
	}
	s->auth_mech_login = strcasecmp(mech, "LOGIN") == 0;
	s->auth_try[0] = '\0';
	s->auth_user_seen = initial != NULL;
	if (initial && strcmp(initial, "=") != 0) {
		auth_user_of(initial, s->auth_mech_login, s->auth_try, sizeof s->auth_try);
		if (s->auth_try[0] == '\0') {
			reply(s, "%s", R_AUTH_UNDECODED);
			s->errors++;
			return;
		}
	}
	snprintf(line, sizeof line, "AUTH %s%s%.1000s", s->auth_mech_login ? "LOGIN" : "PLAIN",
	         initial ? " " : "", initial ? initial : "");
	set_busy(s, 1);
	free(s->auth_line);
	s->auth_line = xstrdup(line);
	explicit_bzero(line, sizeof line);
	if (upstream_alive(s->up)) {
		send_auth(s);
		return;
	}
	upstream_close(s->up);
	s->up = session_upstream_open(s, on_auth_open);
	if (s->up == NULL) on_auth_open(s, NULL, UP_ERR_CONNECT);
}

/* max_errors reached: 421 and the session ends */
static void check_error_limit(struct session *s)
{
	if (s->errors >= s->cfg->max_errors && s->state != SS_CLOSING) {
		slog(s->id, LOG_NOTICE, "too many errors (%u)", s->errors);
		reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
		if (s->tx) txn_end(s, "aborted");
		close_after_flush(s);
	}
}

/* RFC 3207 4: a listener that requires TLS answers every command with
 * this until STARTTLS, but those that carry nothing and change nothing:
 * EHLO (which offers STARTTLS), HELO, STARTTLS, NOOP, RSET, QUIT (the RFC
 * names NOOP, EHLO, STARTTLS and QUIT; Postfix lets HELO through too, and
 * RSET with no transaction possible is a NOOP).  Unknown commands keep
 * their 500.  It was checked in MAIL, AUTH and VRFY only: RCPT, DATA,
 * BDAT, EXPN, ETRN, HELP... got their usual answers in plaintext. */
static const char R_TLS_FIRST[] = "530 5.7.0 Must issue a STARTTLS command first";

static int tls_first(const struct session *s, enum smtp_verb v)
{
	if (!s->ln->cfg.tls_required || s->tls_desc[0]) return 0;
	switch (v) {
	case SMTP_EHLO: case SMTP_HELO: case SMTP_STARTTLS:
	case SMTP_NOOP: case SMTP_RSET: case SMTP_QUIT: case SMTP_UNKNOWN:
		return 0;
	default:
		return 1;
	}
}

/* is_junk - a command that carries no mail and may be repeated without
 * end: NOOP, RSET, VRFY, HELP, HELO and EHLO (Postfix's junk commands
 * are NOOP, VRFY, ETRN and RSET; ETRN is an error here already) */
static int is_junk(enum smtp_verb v)
{
	switch (v) {
	case SMTP_NOOP: case SMTP_RSET: case SMTP_VRFY: case SMTP_HELP:
	case SMTP_HELO: case SMTP_EHLO:
		return 1;
	default:
		return 0;
	}
}

static void handle_command(struct session *s, char *line, size_t len)
{
	const char *arg = "";
	if (log_enabled(LOG_DEBUG)) {
		char esc[300];
		/* AUTH lines carry credentials: only the verb and mechanism */
		size_t shown = len;
		if (len >= 5 && strncasecmp(line, "AUTH ", 5) == 0) {
			shown = 5 + strcspn(line + 5, " ");
			if (shown > len) shown = len;
		}
		slog(s->id, LOG_DEBUG, "< %s%s", log_esc(esc, sizeof esc, line, shown), shown < len ? " ****" : "");
	}
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL) {
		reply(s, "500 5.5.2 Error: bad character in command");
		s->errors++;
		check_error_limit(s);
		return;
	}
	enum smtp_verb v = smtp_verb_parse(line, &arg);
	if (tls_first(s, v)) {
		if (v == SMTP_BDAT) {
			/* its chunk is read, never taken as commands; the reply
			 * (and the error it counts) after it */
			cmd_bdat(s, arg, R_TLS_FIRST);
			return;
		}
		reply(s, "%s", R_TLS_FIRST);
		s->errors++;
		check_error_limit(s);
		return;
	}
	/* past junk_command_limit, each one is an error (Postfix's
	 * smtpd_junk_command_limit): a client that only keeps the
	 * connection busy goes at max_errors */
	if (is_junk(v) && ++s->junk > s->cfg->junk_command_limit) s->errors++;
	switch (v) {
	case SMTP_EHLO: cmd_helo(s, arg, 1); break;
	case SMTP_HELO: cmd_helo(s, arg, 0); break;
	case SMTP_MAIL: cmd_mail(s, arg); break;
	case SMTP_RCPT: cmd_rcpt(s, arg); break;
	case SMTP_DATA: cmd_data(s, arg); break;
	case SMTP_RSET: cmd_rset(s); break;
	case SMTP_NOOP: reply(s, "250 2.0.0 Ok"); break;
	case SMTP_QUIT: cmd_quit(s); break;
	case SMTP_VRFY: cmd_vrfy(s, arg); break;
	case SMTP_HELP: reply(s, "214 2.0.0 mailwarden: commands HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"); break;
	case SMTP_STARTTLS: cmd_starttls(s, arg); break;
	case SMTP_AUTH: cmd_auth(s, arg); break;
	case SMTP_BDAT: cmd_bdat(s, arg, NULL); break;
	case SMTP_XFORWARD: cmd_xforward(s, arg); break;
	case SMTP_EXPN: case SMTP_ETRN: case SMTP_TURN:
	case SMTP_XCLIENT:
		reply(s, "502 5.5.1 Error: command not implemented");
		s->errors++;
		break;
	default:
		/* "MAIL" or "RCPT" without their "FROM:"/"TO:" is a syntax error
		 * in a known command, not an unknown one (as Postfix answers) */
		if (strncasecmp(line, "MAIL", 4) == 0 && (line[4] == ' ' || line[4] == '\0'))
			reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		else if (strncasecmp(line, "RCPT", 4) == 0 && (line[4] == ' ' || line[4] == '\0'))
			reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		else
			reply(s, "500 5.5.1 Error: command not recognized");
		s->errors++;
		break;
	}
	check_error_limit(s);
}

/* Feed buffered DATA content to the framer.  Returns 1 at end of data. */
static int process_data(struct session *s)
{
	size_t len;
	const char *p = conn_in_peek(s->conn, &len);
	if (len == 0) return 0;
	int done = 0;
	size_t used = data_decoder_feed(s->dec, p, len, &done);
	conn_in_drain(s->conn, used);
	return done;
}

/* input_ended - a half-closed client's input is used up, and it waits for
 * nothing of ours: what it left unfinished (a message without its end of
 * data, a chunk cut short, a transaction without DATA) is aborted, never
 * relayed; the replies still queued leave, then the connection closes. */
static void input_ended(struct session *s)
{
	if (s->tx != NULL) {
		slog(s->id, LOG_INFO, "client input ended%s: transaction aborted",
		     s->state == SS_DATA ? " in the middle of DATA" :
		     s->state == SS_BDAT ? " in the middle of a BDAT chunk" : "");
		txn_end(s, "aborted");
	}
	close_after_flush(s);
}

/* line_error - a command line refused before it was read as a command
 * (too long, bare LF; the 500 is sent): an error like any refused command,
 * so max_errors ends a client that sends nothing else.  An AUTH exchange
 * waiting for this line ends on both sides: else the next command would
 * reach the upstream as the answer to its 334. */
static void line_error(struct session *s)
{
	s->errors++;
	check_error_limit(s);
	if (s->state == SS_CLOSING) {
		s->auth_wait = 0;         /* the upstream leg goes with the session */
		return;
	}
	if (s->auth_wait) auth_cancel(s);
}

/* Take complete lines from the input and act on them, until the input is
 * empty or we wait for something. */
static void session_process(struct session *s)
{
	size_t limit = s->cfg->command_line_limit;
	char small[1024], *line = small;

	if (s->in_process) return;
	s->in_process = 1;
	while (!s->busy && s->state != SS_CLOSING && s->state != SS_GREET_PAUSE) {
		/* a client that pipelines without reading our replies: take no
		 * more of its input until they have left (write_cb), so its input
		 * stops at the read limit and TCP pushes back; else our output
		 * would grow without end until the write deadline */
		if (conn_output_len(s->conn) > CLIENT_OUT_MAX) {
			s->held_by_output = 1;
			break;
		}
		if (s->state == SS_DATA) {
			if (!process_data(s)) break;
			end_of_data(s);
			continue;
		}
		if (s->state == SS_BDAT) {
			if (!process_bdat(s)) break;
			end_of_chunk(s);
			continue;
		}
		if ((s->tx == NULL || s->tx->failed) && s->draining) {
			reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
			close_after_flush(s);
			break;
		}
		size_t avail;
		const char *in = conn_in_peek(s->conn, &avail);
		const char *lf = memchr(in, '\n', avail);
		if (lf == NULL) {
			if (avail > limit) {     /* never buffer past the cap */
				conn_in_drain(s->conn, avail);
				s->skip_line = 1;
			}
			break;
		}
		size_t n = (size_t)(lf - in);
		if (s->skip_line || n + 1 > limit) {
			conn_in_drain(s->conn, n + 1);
			s->skip_line = 0;
			reply(s, "500 5.5.2 Error: line too long");
			line_error(s);
			continue;
		}
		if (n + 1 > sizeof small && line == small)
			line = xmalloc(limit + 1);        /* n + 1 <= limit, checked above */
		memcpy(line, in, n + 1);
		conn_in_drain(s->conn, n + 1);
		int bare_lf = !(n > 0 && line[n - 1] == '\r');
		if (!bare_lf) n--;
		line[n] = '\0';
		if (bare_lf && s->cfg->bare_newline == BARE_NEWLINE_REJECT) {
			slog(s->id, LOG_NOTICE, "bare LF in command");
			reply(s, "500 5.5.2 Error: bare LF in command (RFC 5321 requires CRLF)");
			line_error(s);
			continue;
		}
		if (s->auth_wait) auth_response(s, line);
		else handle_command(s, line, n);
	}
	/* the loop ends waiting for input (or for the upstream, the scanner,
	 * our output): a client that has sent its last octet sends no more */
	if (s->peer_eof && !s->busy && !s->held_by_output && s->state != SS_CLOSING &&
	    s->state != SS_GREET_PAUSE)
		input_ended(s);
	s->in_process = 0;
	if (line != small) free(line);
}

/* ---- events ------------------------------------------------------------- */

static void read_cb(struct conn *c, void *arg)
{
	struct session *s = arg;
	if (s->state == SS_GREET_PAUSE) {
		s->early_talker = 1;
		return;
	}
	session_process(s);
}

static void write_cb(struct conn *c, void *arg)
{
	struct session *s = arg;
	if (s->state == SS_CLOSING) {
		session_free(s);
		return;
	}
	if (s->held_by_output) {       /* the replies have left: go on */
		s->held_by_output = 0;
		session_process(s);
	}
}

/* session_owes_replies - the client has sent commands not yet answered:
 * a complete line in the input, or one being handled (the upstream or the
 * scanner has it), or replies held until the earlier ones leave. */
static int session_owes_replies(struct session *s)
{
	size_t avail;
	const char *in = conn_in_peek(s->conn, &avail);
	return s->busy || s->held_by_output || (s->state == SS_CMD && memchr(in, '\n', avail) != NULL);
}

static void event_cb(struct conn *c, void *arg, enum conn_event what)
{
	struct session *s = arg;
	if (what == CONN_TLS_READY) {
		tls_ready(s);
		return;
	}
	if (what == CONN_TLS_FAILED) {
		slog(s->id, LOG_NOTICE, "client [%s] %s", s->client_ip, conn_tls_error(c));
		session_free(s);
		return;
	}
	if ((what == CONN_TIMEOUT_READ || what == CONN_TIMEOUT_WRITE) && s->state == SS_TLS) {
		slog(s->id, LOG_INFO, "client [%s] timeout in the TLS handshake", s->client_ip);
		session_free(s);
		return;
	}
	if (what == CONN_TIMEOUT_READ || what == CONN_TIMEOUT_WRITE) {
		slog(s->id, LOG_INFO, "client timeout while %s",
		     what == CONN_TIMEOUT_WRITE ? "it was not reading our replies"
		     : s->state == SS_DATA ? "reading data" : "waiting for a command");
		if (s->state != SS_CLOSING) {
			reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
			abandon_pending(s);
			if (s->tx) txn_end(s, "aborted");
			close_after_flush(s);
			return;
		}
	} else if (what == CONN_EOF && s->state != SS_CLOSING && s->state != SS_GREET_PAUSE &&
	           s->state != SS_TLS && session_owes_replies(s)) {
		/* A half-close (shutdown(SHUT_WR), "nc -N", a script) after a
		 * pipelined batch: the client still reads.  Postfix answers what
		 * it was sent; so do we: the buffered commands run, the pending
		 * transaction ends, the replies leave, then the connection closes.
		 * Every wait keeps its deadline (the upstream's and the scanner's
		 * timeouts, our write deadline); none is on reading any more. */
		slog(s->id, LOG_INFO, "client disconnected its sending side: answering what it sent");
		s->peer_eof = 1;
		conn_stop_reading(c);
		if (!s->in_process) session_process(s);
		return;
	} else {
		/* a TLS error says which (a refused renegotiation, a bad record) */
		const char *why = what == CONN_ERROR ? conn_tls_error(c) : "";
		slog(s->id, LOG_INFO, "client %s%s%s%s", what == CONN_EOF ? "disconnected" : "connection error",
		     s->state == SS_DATA ? " in the middle of DATA" : "", why[0] ? ": " : "", why);
	}
	session_free(s);
}

static void greet(struct session *s)
{
	reply(s, "220 %s ESMTP mailwarden", s->cfg->hostname);
}

static void greet_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	s->state = SS_CMD;
	if (s->early_talker) {
		slog(s->id, LOG_NOTICE, "early talker: client sent data before the greeting");
		if (s->cfg->early_talker == EARLY_TALKER_REJECT) {
			reply(s, "554 5.5.0 %s Error: protocol violation, talked before the greeting", s->cfg->hostname);
			close_after_flush(s);
			return;
		}
	}
	greet(s);
	session_process(s);
}

/* Transparent listener: the upstream is where the client meant to go.
 * nftables/iptables REDIRECT keep it in SO_ORIGINAL_DST; with TPROXY the
 * socket's own local address is it.  A connection made to the listener
 * itself has none (relaying it to ourselves would loop). */
static int transparent_target(struct session *s, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) < 0 &&
	    getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) < 0) {
		len = sizeof ss;
		if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
	}
	struct netaddr self;
	char err[200];
	if (netaddr_parse(s->ln->cfg.listen, 1, &self, err, sizeof err) == 0 &&
	    netaddr_same(&self, (struct sockaddr *)&ss)) {
		slog(s->id, LOG_WARNING, "transparent listener %s: connection without an original destination",
		     s->ln->cfg.name);
		return -1;
	}
	s->own_tgt = xmalloc(sizeof *s->own_tgt);
	*s->own_tgt = s->ln->target;              /* TLS and XCLIENT settings, known caps */
	/* a reload swaps the listener's upstream context (reload_tls) and
	 * frees its own reference: the copy needs one of its own */
	if (s->own_tgt->tls_ctx != NULL) SSL_CTX_up_ref(s->own_tgt->tls_ctx);
	memcpy(&s->own_tgt->addr.ss, &ss, len);
	s->own_tgt->addr.len = len;
	char ip[64];
	unsigned port;
	netaddr_ip((struct sockaddr *)&ss, ip, sizeof ip, &port);
	snprintf(s->own_tgt->spec, sizeof s->own_tgt->spec, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
	/* the upstream TLS name: the host of `upstream =` is only the probe's
	 * target, so each destination is checked against its own address
	 * (the certificate's IP address entries), unless upstream_tls_name
	 * names the one certificate every destination shows */
	if (s->ln->cfg.upstream_tls_name[0] == '\0')
		snprintf(s->own_tgt->tls_name, sizeof s->own_tgt->tls_name, "%s", ip);
	s->tgt = s->own_tgt;
	slog(s->id, LOG_INFO, "original destination %s", s->own_tgt->spec);
	return 0;
}

struct session *session_new(struct proxy *px, struct listener *ln, evutil_socket_t fd,
                            const struct sockaddr *sa, int salen)
{
	struct session *s = xcalloc(1, sizeof *s);
	s->helo = xstrdup("");
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
		rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
	snprintf(s->id, sizeof s->id, "%016llx", (unsigned long long)rnd);
	s->px = px;
	s->ln = ln;
	s->cfg = config_ref(px->cfg);
	s->spool.fd = -1;
	clock_gettime(CLOCK_MONOTONIC, &s->start);
	netaddr_ip(sa, s->client_ip, sizeof s->client_ip, &s->client_port);
	/* as listener.c's admit() decided for proxy_admit */
	s->xforward_peer = netlist_match(ln->cfg.xforward_from, sa);
	s->counted_per_ip = !s->xforward_peer;
	s->tgt = &ln->target;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s->conn = conn_new(px->base, fd, read_cb, write_cb, event_cb, s);
	size_t hiwat = s->cfg->command_line_limit * 4;
	if (hiwat < 65536) hiwat = 65536;
	conn_set_read_limit(s->conn, hiwat);
	s->next = px->sessions;
	if (px->sessions) px->sessions->prev = s;
	px->sessions = s;
	px->nsessions++;
	stats_session(STATS_PROXY, 1);
	slog(s->id, LOG_INFO, "connect from [%s]:%u listener=%s", s->client_ip, s->client_port, ln->cfg.name);
	if (ln->cfg.transparent && transparent_target(s, fd) < 0) {
		reply(s, "421 4.3.0 %s Error: no original destination for this connection", s->cfg->hostname);
		close_after_flush(s);
	} else if (s->ln->cfg.tls_mode == MW_TLS_IMPLICIT && s->ln->tls) {
		/* RFC 8314: TLS first, the greeting inside it */
		s->state = SS_TLS;
		start_tls(s);
	} else if (s->cfg->greet_pause > 0) {
		s->state = SS_GREET_PAUSE;
		s->greet_timer = evtimer_new(px->base, greet_timer_cb, s);
		struct timeval tv;
		tv_ms(s->cfg->greet_pause, &tv);
		evtimer_add(s->greet_timer, &tv);
	} else {
		s->state = SS_CMD;
		greet(s);
	}
	arm_client_timeout(s);
	return s;
}

static void session_free(struct session *s)
{
	struct proxy *px = s->px;
	if (s->scan_id) scanclient_cancel(px->scan, s->scan_id);
	if (s->tx) txn_end(s, "aborted");
	upstream_close(s->up);
	spool_close(&s->spool);
	sbuf_free(&s->hdrbuf);
	unmap_new_body(s);
	free(s->dec);
	free(s->vrfy_line);
	free(s->auth_line);
	free(s->bdat);
	if (s->own_tgt != NULL) SSL_CTX_free(s->own_tgt->tls_ctx);
	free(s->own_tgt);
	explicit_bzero(s->auth_try, sizeof s->auth_try);
	if (s->greet_timer) event_free(s->greet_timer);
	conn_free(s->conn);
	proxy_release(px, s->client_ip, s->counted_per_ip);
	if (s->prev) s->prev->next = s->next;
	else px->sessions = s->next;
	if (s->next) s->next->prev = s->prev;
	px->nsessions--;
	stats_session(STATS_PROXY, -1);
	slog(s->id, LOG_INFO, "disconnect [%s] transactions=%u", s->client_ip, s->ntxn);
	config_unref(s->cfg);
	xforward_reset(s);
	free(s->helo);
	free(s);
	proxy_session_gone(px, NULL);
}

void session_shutdown(struct session *s, int force)
{
	s->draining = 1;
	if (s->state == SS_CLOSING) return;
	/* a transaction the upstream failed waits for nothing but its
	 * client's next 4xx: as good as none */
	if (force || (!s->busy && (s->tx == NULL || s->tx->failed) && s->state != SS_DATA && s->state != SS_BDAT)) {
		reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
		abandon_pending(s);
		if (s->tx) txn_end(s, "aborted");
		close_after_flush(s);
	}
}

int session_upstream_holds_message(const struct session *s)
{
	return s->state != SS_CLOSING && s->tx != NULL && s->tx->sent_whole && s->up != NULL &&
	    upstream_alive(s->up) && upstream_output_pending(s->up) == 0;
}

struct session *session_next(const struct session *s)
{
	return s->next;
}
