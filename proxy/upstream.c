/* upstream.c - the SMTP client leg towards the next-hop MTA.  See upstream.h.
 *
 * Lifetime: the session owns the struct upstream and ends it with
 * upstream_close().  Callbacks may call upstream_close() from inside; the
 * struct is then freed once the callback returns (u->depth guards it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "conn.h"
#include "log.h"
#include "monotime.h"
#include "sbuf.h"
#include "tls.h"
#include "uplog.h"
#include "upstream.h"
#include "xattr.h"

#include <openssl/ssl.h>

#define UP_QUEUE_MAX   256     /* commands in flight on one connection */
#define UP_LINE_MAX    2048    /* reply line; RFC 5321 says 512 */
#define UP_LOWAT       (64 * 1024)
#define UP_QUIT_WAIT   10000

enum up_state { UPS_CONNECTING, UPS_GREETING, UPS_EHLO, UPS_HELO, UPS_STARTTLS, UPS_TLS,
                UPS_XCLIENT, UPS_READY, UPS_DEAD };

struct pending {
	upstream_reply_fn cb;     /* NULL once detached */
	void             *arg;
	unsigned          timeout_ms;
	uint64_t          rx_mark;  /* reply octets received when the command was
	                             * queued: a reply that starts before this
	                             * arrived before its command left, so it is
	                             * not its reply (an extra one, unsolicited) */
};

/* One XCLIENT or XFORWARD command, CRLF excluded; what the proxy sends
 * is under Postfix's line_length_limit (2048) */
#define XF_LINE_MAX 1200
/* An attribute is at most " IDENT=" and XATTR_VALUE_MAX octets of xtext
 * (a longer value goes as [UNAVAILABLE], xattr.h): one always fits in a
 * command of XF_LINE_MAX, even after XCLIENT's address part */
#define XF_ATTR_MAX (1 + 5 + 1 + XATTR_VALUE_MAX)
#define XF_REST_MAX (3 * XF_ATTR_MAX + 1)
#define XCLIENT_HEAD_MAX (sizeof "XCLIENT ADDR=IPV6: PORT=65535 PROTO=ESMTP" - 1 + 64)
_Static_assert(sizeof "XFORWARD" - 1 + XF_ATTR_MAX < XF_LINE_MAX, "an attribute fits in one command");
_Static_assert(XCLIENT_HEAD_MAX + XF_ATTR_MAX < XF_LINE_MAX, "NAME fits with the address");

struct upstream {
	struct event_base      *base;         /* borrowed */
	struct config          *cfg;          /* ref held: a QUIT in the background outlives
	                                       * the session, and a reload its config */
	struct upstream_target *t;            /* borrowed; lives as long as the listener */
	char                    sid[17];
	struct conn            *conn;         /* owned */
	enum up_state           state;
	struct pending          q[UP_QUEUE_MAX];
	size_t                  qhead, qlen;
	struct smtp_reply       reply;        /* being assembled */
	unsigned                caps;
	struct smtp_reply       ehlo;
	upstream_reply_fn       open_cb;
	void                   *open_arg;
	upstream_drain_fn       drain_cb;
	void                   *drain_arg;
	upstream_reply_fn       body_fail_cb; /* the failure while message content is
	                                       * written and no reply is awaited */
	void                   *body_fail_arg;
	uint64_t                rx_total;     /* reply octets taken from the input */
	uint64_t                reply_at;     /* where the reply being assembled began */
	int                     depth;        /* >0 while inside callbacks */
	int                     zombie;       /* close requested: free when depth drops to 0 */
	int                     quitting;     /* QUIT sent, waiting for the reply or EOF */
	int                     in_body;      /* message content written, its end not yet
	                                       * answered: a QUIT now would be a line of it */
	int                     probe;        /* only refreshing t's capabilities */
	int                     tls_done;     /* STARTTLS step over (TLS up or not wanted) */
	int                     xclient_done; /* XCLIENT/XFORWARD step over */
	int                     ehlo_for_client; /* the EHLO in flight names the client
	                                       * (sent after XCLIENT) */
	int                     client_refused;  /* the MTA refused that EHLO */
	int                     sent_xclient;    /* XCLIENT named c_helo and c_esmtp */
	int                     sent_xforward;   /* XFORWARD named the client */
	int                     mail_sent;       /* a transaction began here */
	char                    xf_rest[XF_REST_MAX]; /* " HELO=.. IDENT=.. LOGIN=..": the
	                                          * attributes not sent yet, in as many XFORWARD
	                                          * (or XCLIENT) commands as they need, each
	                                          * after the last is answered; "" = none */
	char                    tls_desc[128];/* "" without TLS */
	/* the real client, for XCLIENT/XFORWARD */
	int                     have_client;
	char                    c_addr[64], c_login[256], c_name[256], c_ident[256], c_source[16];
	char                   *c_helo;       /* owned, NULL = none: whole, up to the client's
	                                       * command line limit (never cut: the MTA's HELO
	                                       * checks judge the name the client gave) */
	unsigned                c_port;
	int                     c_esmtp;
};

static void up_read_cb(struct conn *c, void *arg);
static void up_write_cb(struct conn *c, void *arg);
static void up_event_cb(struct conn *c, void *arg, enum conn_event what);
static void up_greeting(void *arg, const struct smtp_reply *r, enum upstream_err err);

const char *upstream_err_name(enum upstream_err e)
{
	switch (e) {
	case UP_OK: return "ok";
	case UP_ERR_CONNECT: return "connect";
	case UP_ERR_TIMEOUT: return "timeout";
	case UP_ERR_CLOSED: return "closed";
	case UP_ERR_PROTOCOL: return "protocol";
	case UP_ERR_TLS: return "tls";
	}
	return "?";
}

/* The read deadline is the one of the oldest reply we wait for. */
static void up_arm_timeout(struct upstream *u)
{
	conn_set_timeouts(u->conn, u->qlen > 0 ? u->q[u->qhead].timeout_ms : 0,
	                  u->cfg->upstream_data_timeout);
}

/* up_helo - the client's HELO name, "" if none */
static const char *up_helo(const struct upstream *u)
{
	return u->c_helo ? u->c_helo : "";
}

static void up_free(struct upstream *u)
{
	free(u->c_helo);
	conn_free(u->conn);
	config_unref(u->cfg);
	free(u);
}

static int up_push(struct upstream *u, unsigned timeout_ms, upstream_reply_fn cb, void *arg)
{
	if (u->qlen >= UP_QUEUE_MAX) return -1;
	struct pending *p = &u->q[(u->qhead + u->qlen) % UP_QUEUE_MAX];
	size_t buffered;
	(void)conn_in_peek(u->conn, &buffered);
	p->cb = cb;
	p->arg = arg;
	p->timeout_ms = timeout_ms;
	p->rx_mark = u->rx_total + buffered;
	u->qlen++;
	if (u->qlen == 1) up_arm_timeout(u);
	return 0;
}

/* Deliver err to every waiting callback, in order; the connection is dead.
 * While message content is written after the 354 no reply is awaited (the
 * end of data's comes after the last octet): the body's failure callback
 * gets err then, or the client would wait without end for a reply. */
static void up_fail(struct upstream *u, enum upstream_err err)
{
	if (u->state == UPS_DEAD) return;
	u->state = UPS_DEAD;
	conn_stop_reading(u->conn);
	/* and no more writing: a write deadline left armed fires for ever */
	conn_stop_writing(u->conn);
	u->depth++;
	while (u->qlen > 0 && !u->zombie) {
		struct pending p = u->q[u->qhead];
		u->qhead = (u->qhead + 1) % UP_QUEUE_MAX;
		u->qlen--;
		if (p.cb) p.cb(p.arg, NULL, err);
	}
	u->qlen = 0;
	if (!u->zombie && u->body_fail_cb) {
		upstream_reply_fn cb = u->body_fail_cb;
		u->body_fail_cb = NULL;
		u->drain_cb = NULL;
		cb(u->body_fail_arg, NULL, err);
	}
	u->depth--;
	if (u->zombie && u->depth == 0) up_free(u);
}

static void up_parse_caps(struct upstream *u, const struct smtp_reply *r)
{
	static const struct { const char *kw; unsigned cap; } tab[] = {
		{ "PIPELINING", UCAP_PIPELINING }, { "SIZE", UCAP_SIZE }, { "8BITMIME", UCAP_8BITMIME },
		{ "SMTPUTF8", UCAP_SMTPUTF8 }, { "ENHANCEDSTATUSCODES", UCAP_ENHANCED }, { "DSN", UCAP_DSN },
		{ "CHUNKING", UCAP_CHUNKING }, { "STARTTLS", UCAP_STARTTLS }, { "XCLIENT", UCAP_XCLIENT },
		{ "XFORWARD", UCAP_XFORWARD }, { "BINARYMIME", UCAP_BINARYMIME }, { "AUTH", UCAP_AUTH },
		{ "VRFY", UCAP_VRFY },
	};
	char args[256];
	unsigned caps = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (smtp_ehlo_has(r, tab[i].kw, args, sizeof args)) {
			caps |= tab[i].cap;
			if (tab[i].cap == UCAP_SIZE) size = strtoull(args, NULL, 10);
		}
	u->caps = caps;
	smtp_reply_copy(&u->ehlo, r);
	u->t->caps = caps;
	u->t->size_limit = size;
	smtp_reply_copy(&u->t->ehlo, r);
	u->t->caps_known = 1;
	u->t->caps_time = time(NULL);
}

static void up_open_done(struct upstream *u, const struct smtp_reply *r, enum upstream_err err)
{
	upstream_reply_fn cb = u->open_cb;
	u->open_cb = NULL;
	if (u->probe) {
		if (err == UP_OK && u->state == UPS_READY) {
			u->quitting = 1;
			conn_write(u->conn, "QUIT\r\n", 6);
			up_push(u, UP_QUIT_WAIT, NULL, NULL);
		} else {
			u->zombie = 1;
		}
		return;
	}
	if (cb) cb(u->open_arg, r, err);
}

static void up_open_fail(struct upstream *u, enum upstream_err err);

/* Why an opening goes on without XCLIENT/XFORWARD (uplog kinds) */
enum xc_missing {
	XC_MISSING_EHLO = 1,      /* the EHLO reply offers neither */
	XC_MISSING_HELO,          /* our EHLO refused: HELO offers nothing */
	XC_MISSING_ATTRS          /* XFORWARD offered with no attribute we send */
};

/* xclient_missing - the opening goes on without XCLIENT/XFORWARD, though
 * upstream_xclient = yes wants one and there is a client to name: the MTA
 * judges mailwarden's address, not the client's (in Postfix's mynetworks
 * in the README's set-up).  That is the documented "when offered", but
 * never silent: a WARNING, once a minute per next hop and when the reason
 * changes (uplog.h), since such a hop meets it at every connection. */
static void xclient_missing(struct upstream *u, enum xc_missing why)
{
	static const char *const what[] = {
		[XC_MISSING_EHLO] = "offers neither XCLIENT nor XFORWARD",
		[XC_MISSING_HELO] = "refused our EHLO, and HELO has no XCLIENT/XFORWARD",
		[XC_MISSING_ATTRS] = "offers XFORWARD with no attribute mailwarden sends",
	};
	unsigned long since;
	char more[64] = "";
	if (u->probe || !u->have_client || !u->t->xclient) return;
	if (!uplog_due(u->t->spec, why, monotime_ms(), &since)) return;
	if (since > 0) snprintf(more, sizeof more, ", %lu sessions since the last", since);
	slog(u->sid, LOG_WARNING, "upstream=%s %s: its sessions go on under mailwarden's address, not the "
	     "client's (upstream_xclient = yes sends them when offered; this line once a minute%s)",
	     u->t->spec, what[why], more);
}

/* reply_esc - r's text for a log line: escaped, without the CRLF that
 * ends its last line (a line break inside a multi-line reply stays
 * escaped: it is not one of ours) */
static const char *reply_esc(char *out, size_t outsz, const struct smtp_reply *r)
{
	size_t n = r->len >= 2 && r->text[r->len - 2] == '\r' ? r->len - 2 : r->len;
	return log_esc(out, outsz, r->text, n);
}

/* up_helo_reply - the MTA refused our EHLO (5xx) and this answers the
 * HELO we tried instead.  A HELO session has no extensions: neither
 * STARTTLS nor XCLIENT/XFORWARD can follow.  upstream_tls = required then
 * fails the opening, as a missing STARTTLS does (before session 19 the
 * message went in plaintext).  XCLIENT is sent "when offered", and after
 * HELO it is not: the session goes on under mailwarden's own address, as
 * after an EHLO that offers neither, with the same rate-limited warning
 * (xclient_missing).  Session 19's tls19 failed it (451) instead; that
 * stopped no man in the middle, who strips 250-XCLIENT from the EHLO reply
 * to the same effect, and cost every HELO-only next hop all its mail. */
static void up_helo_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct upstream *u = arg;
	if (err != UP_OK || r->code / 100 != 2) {
		up_open_done(u, r, err);
		return;
	}
	u->caps = 0;
	if (!u->probe && !u->tls_done && u->t->tls_mode == MW_UPTLS_REQUIRED) {
		slog(u->sid, LOG_WARNING, "upstream=%s refused our EHLO: no STARTTLS after HELO, and "
		     "upstream_tls = required", u->t->spec);
		up_open_fail(u, UP_ERR_TLS);
		return;
	}
	if (!u->probe && !u->tls_done && u->t->tls_mode == MW_UPTLS_OPPORTUNISTIC)
		slog(u->sid, LOG_NOTICE, "upstream=%s refused our EHLO: going on after HELO without TLS",
		     u->t->spec);
	u->tls_done = 1;
	xclient_missing(u, XC_MISSING_HELO);
	u->state = UPS_READY;
	up_open_done(u, r, err);
}

static void up_ehlo_reply(void *arg, const struct smtp_reply *r, enum upstream_err err);

static void up_send(struct upstream *u, const char *line, upstream_reply_fn cb)
{
	conn_write(u->conn, line, strlen(line));
	conn_write(u->conn, "\r\n", 2);
	up_push(u, u->cfg->upstream_command_timeout, cb, u);
}

/* After XCLIENT the EHLO speaks for the client (its HELO name), or the
 * MTA would log and check our name instead. */
static void up_send_ehlo(struct upstream *u)
{
	int after_xclient = u->state == UPS_XCLIENT;
	int as_client = after_xclient && up_helo(u)[0];
	const char *name = as_client ? up_helo(u) : u->cfg->hostname;
	size_t len = 5 + strlen(name) + 1;
	char *line = xmalloc(len);
	u->state = UPS_EHLO;
	/* whatever name it carries, an EHLO after XCLIENT is the client's
	 * session: its refusal is the client's (up_ehlo_reply) */
	u->ehlo_for_client = after_xclient;
	snprintf(line, len, "EHLO %s", name);
	up_send(u, line, up_ehlo_reply);
	free(line);
}

/* The opening failed past the greeting: the connection is of no use. */
static void up_open_fail(struct upstream *u, enum upstream_err err)
{
	u->state = UPS_DEAD;
	conn_stop_reading(u->conn);
	conn_stop_writing(u->conn);
	up_open_done(u, NULL, err);
}

static void up_tls_wait(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	/* only reached on failure (timeout, EOF, handshake error) */
	up_open_done(arg, NULL, err == UP_ERR_CLOSED ? UP_ERR_TLS : err);
}

static void up_starttls_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct upstream *u = arg;
	if (err != UP_OK) {
		up_open_done(u, r, err);
		return;
	}
	if (r->code != 220) {
		if (u->t->tls_mode == MW_UPTLS_REQUIRED) {
			slog(u->sid, LOG_WARNING, "upstream=%s refused STARTTLS (%d) and upstream_tls = required",
			     u->t->spec, r->code);
			up_open_fail(u, UP_ERR_TLS);
			return;
		}
		/* opportunistic: go on in plaintext, the session is still sane */
		slog(u->sid, LOG_NOTICE, "upstream=%s refused STARTTLS (%d): going on without TLS",
		     u->t->spec, r->code);
		u->tls_done = 1;
		up_send_ehlo(u);
		return;
	}
	SSL *ssl = tls_client_ssl(u->t->tls_ctx, u->t->tls_name, u->t->tls_verify);
	if (ssl == NULL) {
		up_open_fail(u, UP_ERR_TLS);
		return;
	}
	SSL_set_connect_state(ssl);
	u->state = UPS_TLS;
	size_t dropped = conn_start_tls(u->conn, ssl);
	u->rx_total += dropped;
	if (dropped)
		slog(u->sid, LOG_WARNING, "upstream=%s sent %zu bytes after its 220 to STARTTLS: dropped (response injection)",
		     u->t->spec, dropped);
	/* a placeholder reply: gives the handshake the connect deadline, and
	 * reaches the open callback through up_fail when it fails */
	up_push(u, u->cfg->upstream_connect_timeout, up_tls_wait, u);
}

/* attrs_take - onto the command in line (its verb, and whatever it
 * holds already) as many of the attributes left in u->xf_rest as fit,
 * whole, in order; the rest stay for the next command */
static void attrs_take(struct upstream *u, size_t verb_len, char *line, size_t linesz)
{
	size_t len = strlen(line), taken = 0;
	const char *rest = u->xf_rest;
	while (rest[taken] != '\0') {
		size_t n = 1 + strcspn(rest + taken + 1, " ");      /* " NAME=xtext" */
		if (len + n < linesz) {
			memcpy(line + len, rest + taken, n);
			len += n;
			line[len] = '\0';
		} else if (len > verb_len) {
			break;                                       /* the next command's */
		} else {                                             /* never half a value */
			slog(u->sid, LOG_WARNING, "upstream=%s: an %.*s attribute of %zu octets not sent",
			     u->t->spec, (int)verb_len, line, n);
		}
		taken += n;
	}
	memmove(u->xf_rest, rest + taken, strlen(rest + taken) + 1);
}

/* attrs_next - the next command of verb in line, with the attributes
 * still in u->xf_rest */
static void attrs_next(struct upstream *u, const char *verb, char *line, size_t linesz)
{
	snprintf(line, linesz, "%s", verb);
	attrs_take(u, strlen(verb), line, linesz);
}

static void up_xclient_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct upstream *u = arg;
	int is_xclient = u->state == UPS_XCLIENT;
	if (err != UP_OK) {
		up_open_done(u, r, err);
		return;
	}
	if (r->code / 100 != 2) {
		/* never go on as if we were the client: the MTA would apply its
		 * rules to our address (often in its mynetworks) */
		char esc[200];
		slog(u->sid, LOG_WARNING, "upstream=%s refused %s: %s", u->t->spec,
		     is_xclient ? "XCLIENT" : "XFORWARD", reply_esc(esc, sizeof esc, r));
		up_open_fail(u, UP_ERR_PROTOCOL);
		return;
	}
	if (u->xf_rest[0]) {
		/* Postfix adds up the attributes of several commands; after
		 * XCLIENT's new greeting (220) the next XCLIENT needs no EHLO */
		char line[XF_LINE_MAX];
		attrs_next(u, is_xclient ? "XCLIENT" : "XFORWARD", line, sizeof line);
		up_send(u, line, up_xclient_reply);
		return;
	}
	if (is_xclient) {           /* a new greeting (220): the session starts again */
		up_send_ehlo(u);
		return;
	}
	u->state = UPS_READY;
	up_open_done(u, r, UP_OK);
}

/* attr_add - " NAME=xtext" onto out, whole or not at all; nothing for
 * an empty value.  A value of more xtext than the next hop takes
 * (XATTR_VALUE_MAX, Postfix's limit) goes as [UNAVAILABLE], with a log
 * line: Postfix answers 501 to the whole command, and that tempfailed the
 * client's every transaction for good.  Never cut: a cut NAME or LOGIN
 * names another host or user, a cut HELO a name the client never gave
 * (after XCLIENT the EHLO carries the HELO whole anyway). */
static void attr_add(const struct upstream *u, const char *verb, const char *attr,
                     const char *value, char *out, size_t outsz)
{
	char v[XATTR_VALUE_MAX + 1];
	size_t len = strlen(out);
	if (value == NULL || value[0] == '\0') return;
	if (xattr_encode(value, v, sizeof v) < 0)
		slog(u->sid, LOG_NOTICE, "upstream=%s: %s %s is %zu octets of xtext, over the %d the next hop "
		     "takes: sent as %s", u->t->spec, verb, attr, xattr_xtext_len(value), XATTR_VALUE_MAX, v);
	if (len + strlen(attr) + strlen(v) + 2 >= outsz) return;   /* never half a value */
	snprintf(out + len, outsz - len, " %s=%s", attr, v);
}

/* name_value - what NAME says of the client: its name when Postfix takes
 * it (xattr_name_ok), else [UNAVAILABLE], with a log line.  A trusted
 * XFORWARD peer's NAME, or a PTR name, that our own parser let through but
 * Postfix's valid_hostname() does not ("-bad.example", "a..b.example") had
 * Postfix answer 501 to the whole command, and the client 451 for ever. */
static const char *name_value(const struct upstream *u, const char *verb)
{
	char esc[300];
	if (u->c_name[0] == '\0') return XATTR_UNAVAILABLE;
	if (xattr_name_ok(u->c_name)) return u->c_name;
	slog(u->sid, LOG_NOTICE, "upstream=%s: %s NAME %s is no host name the next hop takes: sent as %s",
	     u->t->spec, verb, log_esc_word(esc, sizeof esc, u->c_name, strlen(u->c_name)), XATTR_UNAVAILABLE);
	return XATTR_UNAVAILABLE;
}

/* announces - the MTA announced attr in its "250-XFORWARD NAME ADDR
 * ..." (announced: what follows the keyword) */
static int announces(const char *announced, const char *attr)
{
	char word[16];
	const char *p = announced;
	size_t n;
	int found = 0;

	while (!found && *p) {
		p += strspn(p, " ");
		n = strcspn(p, " ");
		snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word - 1 ? n : sizeof word - 1), p);
		found = n > 0 && strcasecmp(word, attr) == 0;
		p += n;
	}
	return found;
}

/* xforward_add - attr_add when the MTA announced the attribute: Postfix
 * answers 501 to one it does not know */
static void xforward_add(const struct upstream *u, const char *announced, const char *attr,
                         const char *value, char *out, size_t outsz)
{
	if (announces(announced, attr)) attr_add(u, "XFORWARD", attr, value, out, outsz);
}

/* xforward_lines - the XFORWARD command(s) naming the client: the address
 * part in line, the free-text part (HELO, IDENT, LOGIN: up to
 * XATTR_VALUE_MAX octets of xtext each) in u->xf_rest, sent once the first is answered, in as
 * many more commands as it takes (Postfix adds up the attributes of
 * several, and its own client splits them the same way).  0 when there is
 * nothing to send. */
static int xforward_lines(struct upstream *u, const char *addr, const char *proto,
                          char *line, size_t linesz)
{
	char announced[256] = "", port[16];
	(void)smtp_ehlo_has(&u->ehlo, "XFORWARD", announced, sizeof announced);
	snprintf(port, sizeof port, "%u", u->c_port);
	snprintf(line, linesz, "XFORWARD");
	if (announces(announced, "NAME"))       /* name_value logs what it replaces */
		attr_add(u, "XFORWARD", "NAME", name_value(u, "XFORWARD"), line, linesz);
	xforward_add(u, announced, "ADDR", addr, line, linesz);
	xforward_add(u, announced, "PORT", port, line, linesz);
	xforward_add(u, announced, "PROTO", proto, line, linesz);
	xforward_add(u, announced, "SOURCE", u->c_source, line, linesz);
	u->xf_rest[0] = '\0';
	xforward_add(u, announced, "HELO", up_helo(u)[0] ? up_helo(u) : "[UNAVAILABLE]", u->xf_rest, sizeof u->xf_rest);
	xforward_add(u, announced, "IDENT", u->c_ident, u->xf_rest, sizeof u->xf_rest);
	xforward_add(u, announced, "LOGIN", u->c_login, u->xf_rest, sizeof u->xf_rest);
	if (strcmp(line, "XFORWARD") == 0 && u->xf_rest[0])
		attrs_next(u, "XFORWARD", line, linesz);
	return strcmp(line, "XFORWARD") != 0;   /* 0: it announced nothing we know */
}

/* After each EHLO: STARTTLS, then XCLIENT/XFORWARD, then ready. */
static void up_after_ehlo(struct upstream *u, const struct smtp_reply *r)
{
	if (!u->tls_done && !u->probe && u->t->tls_mode != MW_UPTLS_OFF) {
		if (u->caps & UCAP_STARTTLS) {
			u->state = UPS_STARTTLS;
			up_send(u, "STARTTLS", up_starttls_reply);
			return;
		}
		if (u->t->tls_mode == MW_UPTLS_REQUIRED) {
			slog(u->sid, LOG_WARNING, "upstream=%s does not offer STARTTLS and upstream_tls = required",
			     u->t->spec);
			up_open_fail(u, UP_ERR_TLS);
			return;
		}
		u->tls_done = 1;
	}
	if (!u->xclient_done && !u->probe && u->have_client && u->t->xclient &&
	    (u->caps & (UCAP_XCLIENT | UCAP_XFORWARD))) {
		char line[XF_LINE_MAX], addr[80];
		const char *proto = u->c_esmtp ? "ESMTP" : "SMTP";
		u->xclient_done = 1;
		if (uplog_clear(u->t->spec))
			slog(u->sid, LOG_NOTICE, "upstream=%s offers %s again", u->t->spec,
			     u->caps & UCAP_XCLIENT ? "XCLIENT" : "XFORWARD");
		snprintf(addr, sizeof addr, "%s%s", strchr(u->c_addr, ':') ? "IPV6:" : "", u->c_addr);
		if (u->caps & UCAP_XCLIENT) {
			/* the address and name in the first command, HELO and
			 * LOGIN (XATTR_VALUE_MAX octets of xtext each at most, a
			 * longer one is [UNAVAILABLE]: attr_add) in it too when
			 * they fit, else in more XCLIENT commands (attrs_take) */
			snprintf(line, sizeof line, "XCLIENT ADDR=%s PORT=%u", addr, u->c_port);
			attr_add(u, "XCLIENT", "NAME", name_value(u, "XCLIENT"), line, sizeof line);
			attr_add(u, "XCLIENT", "PROTO", proto, line, sizeof line);
			u->xf_rest[0] = '\0';
			attr_add(u, "XCLIENT", "HELO", up_helo(u)[0] ? up_helo(u) : "[UNAVAILABLE]", u->xf_rest, sizeof u->xf_rest);
			attr_add(u, "XCLIENT", "LOGIN", u->c_login, u->xf_rest, sizeof u->xf_rest);
			attrs_take(u, sizeof "XCLIENT" - 1, line, sizeof line);
			u->state = UPS_XCLIENT;
			u->sent_xclient = 1;
		} else if (xforward_lines(u, addr, proto, line, sizeof line)) {
			u->state = UPS_EHLO;
			u->sent_xforward = 1;
		} else {
			xclient_missing(u, XC_MISSING_ATTRS);
			u->state = UPS_READY;
			up_open_done(u, r, UP_OK);
			return;
		}
		up_send(u, line, up_xclient_reply);
		return;
	}
	/* not offered (the first EHLO's reply, or the one after STARTTLS):
	 * on without, as documented, but said; once XCLIENT is done, the
	 * EHLO after it is the client's session and needs no word */
	if (!u->xclient_done) xclient_missing(u, XC_MISSING_EHLO);
	u->state = UPS_READY;
	up_open_done(u, r, UP_OK);
}

static void up_ehlo_reply(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct upstream *u = arg;
	char line[320];
	if (err == UP_OK && r->code / 100 == 2) {
		up_parse_caps(u, r);
		up_after_ehlo(u, r);
		return;
	}
	if (err == UP_OK && u->ehlo_for_client) {
		/* After XCLIENT the MTA judged the client's name, not ours: its
		 * refusal is the client's (as if it had connected directly), and
		 * falling back to "HELO <our name>" would pass the client off
		 * under our name, past the MTA's HELO restrictions.  The opener
		 * gets the reply and relays it (upstream_refused_client). */
		char esc[200];
		slog(u->sid, LOG_NOTICE, "upstream=%s refused the client's EHLO after XCLIENT: %s", u->t->spec,
		     reply_esc(esc, sizeof esc, r));
		u->client_refused = 1;
		u->state = UPS_DEAD;
		conn_stop_reading(u->conn);
		conn_stop_writing(u->conn);
		up_open_done(u, r, UP_OK);
		return;
	}
	if (err == UP_OK && r->code / 100 == 5) {      /* no ESMTP: try HELO (our own EHLO only) */
		char esc[200];
		if (!u->probe)
			slog(u->sid, LOG_NOTICE, "upstream=%s refused our EHLO, trying HELO: %s", u->t->spec,
			     reply_esc(esc, sizeof esc, r));
		u->state = UPS_HELO;
		snprintf(line, sizeof line, "HELO %s\r\n", u->cfg->hostname);
		conn_write(u->conn, line, strlen(line));
		up_push(u, u->cfg->upstream_command_timeout, up_helo_reply, u);
		return;
	}
	up_open_done(u, r, err);
}

static void up_greeting(void *arg, const struct smtp_reply *r, enum upstream_err err)
{
	struct upstream *u = arg;
	char line[320];
	if (err != UP_OK || r->code != 220) {
		up_open_done(u, r, err);
		return;
	}
	u->state = UPS_EHLO;
	snprintf(line, sizeof line, "EHLO %s\r\n", u->cfg->hostname);
	conn_write(u->conn, line, strlen(line));
	up_push(u, u->cfg->upstream_command_timeout, up_ehlo_reply, u);
}

static void up_protocol_error(struct upstream *u, const char *what, const char *line, size_t len)
{
	char esc[300];
	/* after QUIT the session is gone, and with it a transparent
	 * listener's target: u->t is not ours to read any more */
	slog(u->sid, LOG_WARNING, "upstream=%s protocol error: %s: %s", u->quitting ? "(quitting)" : u->t->spec,
	     what, log_esc(esc, sizeof esc, line, len));
	up_fail(u, UP_ERR_PROTOCOL);
	/* nobody owns a quitting connection: no upstream_close will come */
	if (u->quitting) u->zombie = 1;
}

static void up_read_cb(struct conn *c, void *arg)
{
	struct upstream *u = arg;
	char line[UP_LINE_MAX + 2];

	u->depth++;
	while (u->state != UPS_DEAD && !u->zombie) {
		size_t avail;
		const char *in = conn_in_peek(c, &avail);
		const char *lf = memchr(in, '\n', avail);
		if (lf == NULL) {
			if (avail > UP_LINE_MAX) {
				up_protocol_error(u, "reply line too long", "", 0);
			}
			break;
		}
		size_t n = (size_t)(lf - in);      /* bytes before the LF */
		if (n > UP_LINE_MAX) {
			up_protocol_error(u, "reply line too long", "", 0);
			break;
		}
		memcpy(line, in, n + 1);
		conn_in_drain(c, n + 1);
		uint64_t line_at = u->rx_total;
		u->rx_total += n + 1;
		if (n == 0 || line[n - 1] != '\r') {
			up_protocol_error(u, "bare LF in reply", line, n);
			break;
		}
		n--;                                /* drop the CR */
		line[n] = '\0';
		if (memchr(line, '\r', n) != NULL) {
			up_protocol_error(u, "bare CR in reply", line, n);
			break;
		}
		if (u->qlen == 0) {
			if (u->quitting) continue;
			up_protocol_error(u, "unsolicited reply", line, n);
			break;
		}
		if (u->reply.nlines == 0) u->reply_at = line_at;
		if (u->reply_at < u->q[u->qhead].rx_mark) {
			/* it was in our input before the command it would answer was
			 * queued (a callback of this loop queued it): an extra reply to
			 * an earlier command, which must not answer a later one */
			up_protocol_error(u, "unsolicited reply (before its command)", line, n);
			break;
		}
		int rc = smtp_reply_line(&u->reply, line, n);
		if (rc < 0) {
			up_protocol_error(u, "malformed reply", line, n);
			break;
		}
		if (rc == 0) continue;
		/* a copy: a callback may read the next reply into u->reply.
		 * Of what it holds only, not all 8 KB, twice (smtp_parse.h) */
		struct smtp_reply done;
		smtp_reply_copy(&done, &u->reply);
		smtp_reply_reset(&u->reply);
		struct pending pe = u->q[u->qhead];
		u->qhead = (u->qhead + 1) % UP_QUEUE_MAX;
		u->qlen--;
		u->in_body = 0;     /* a BDAT chunk's reply, or DATA's 354 before any content */
		up_arm_timeout(u);
		if (done.code == 421 && u->state == UPS_READY) {
			/* The MTA is closing: this reply still answers the command, but
			 * nothing after it will be answered. */
			u->state = UPS_DEAD;
			if (pe.cb) pe.cb(pe.arg, &done, UP_OK);
			u->state = UPS_READY;
			up_fail(u, UP_ERR_CLOSED);
			break;
		}
		if (pe.cb) pe.cb(pe.arg, &done, UP_OK);
		if (u->quitting && u->qlen == 0) {
			u->zombie = 1;
			break;
		}
	}
	u->depth--;
	if (u->zombie && u->depth == 0) up_free(u);
}

static void up_write_cb(struct conn *c, void *arg)
{
	struct upstream *u = arg;
	if (u->drain_cb && u->state != UPS_DEAD) {
		u->depth++;
		u->drain_cb(u->drain_arg);
		u->depth--;
		if (u->zombie && u->depth == 0) up_free(u);
	}
}

static void up_event_cb(struct conn *c, void *arg, enum conn_event what)
{
	struct upstream *u = arg;
	if (what == CONN_CONNECTED) {
		u->state = UPS_GREETING;
		up_arm_timeout(u);
		return;
	}
	if (what == CONN_TLS_READY) {
		SSL *ssl = conn_ssl(c);
		tls_describe(ssl, u->tls_desc, sizeof u->tls_desc);
		slog(u->sid, LOG_INFO, "upstream=%s TLS %s%s", u->t->spec, u->tls_desc,
		     u->t->tls_verify ? " verified" : "");
		u->qhead = (u->qhead + 1) % UP_QUEUE_MAX;     /* the up_tls_wait placeholder */
		u->qlen--;
		u->tls_done = 1;
		up_send_ehlo(u);
		return;
	}
	enum upstream_err err;
	if (u->state == UPS_DEAD && !u->quitting)
		return;         /* failed already and told its callbacks; the owner frees it */
	if (what == CONN_TLS_FAILED) {
		slog(u->sid, LOG_WARNING, "upstream=%s %s", u->t->spec, conn_tls_error(c));
		u->depth++;
		up_fail(u, UP_ERR_TLS);
		u->depth--;
		if (u->zombie && u->depth == 0) up_free(u);
		return;
	}
	if (u->state == UPS_CONNECTING) {
		err = UP_ERR_CONNECT;
		if (what == CONN_TIMEOUT_READ || what == CONN_TIMEOUT_WRITE) errno = ETIMEDOUT;
		slog_errno(u->sid, LOG_WARNING, "upstream=%s connect", u->t->spec);
	} else if (what == CONN_TIMEOUT_READ || what == CONN_TIMEOUT_WRITE) {
		err = UP_ERR_TIMEOUT;
		if (!u->quitting && u->state == UPS_TLS)   /* up_tls_wait's deadline: no reply is due */
			slog(u->sid, LOG_WARNING, "upstream=%s timeout in the TLS handshake", u->t->spec);
		else if (!u->quitting)
			slog(u->sid, LOG_WARNING, "upstream=%s timeout waiting for %s", u->t->spec,
			     what == CONN_TIMEOUT_READ ? "reply" : "write");
	} else {
		err = UP_ERR_CLOSED;
		if (!u->quitting)
			slog(u->sid, u->qlen ? LOG_WARNING : LOG_INFO, "upstream=%s connection closed%s",
			     u->t->spec, u->qlen ? " with replies pending" : "");
	}
	if (u->quitting) {
		u->qlen = 0;
		if (u->depth == 0) up_free(u);
		else u->zombie = 1;
		return;
	}
	/* during the opening, the open callback waits in the queue behind
	 * up_greeting & co., so up_fail reaches it too */
	u->depth++;
	up_fail(u, err);
	u->depth--;
	if (u->zombie && u->depth == 0) up_free(u);
}

static struct upstream *up_new(struct event_base *base, struct config *cfg,
                               struct upstream_target *t, const char *sid)
{
	struct upstream *u = xcalloc(1, sizeof *u);
	u->base = base;
	u->cfg = config_ref(cfg);
	u->t = t;
	snprintf(u->sid, sizeof u->sid, "%s", sid ? sid : "-");
	u->state = UPS_CONNECTING;
	u->conn = conn_new(base, -1, up_read_cb, up_write_cb, up_event_cb, u);
	conn_set_lowat(u->conn, UP_LOWAT);
	/* the greeting is the first reply we wait for; the connect timeout
	 * covers it too (an MTA that accepts and never greets is down) */
	u->q[0].cb = up_greeting;
	u->q[0].arg = u;
	u->q[0].timeout_ms = cfg->upstream_connect_timeout;
	u->qlen = 1;
	return u;
}

struct upstream *upstream_open(struct event_base *base, struct config *cfg,
                               struct upstream_target *t, const char *sid,
                               const struct upstream_client *client,
                               upstream_reply_fn cb, void *arg)
{
	struct upstream *u = up_new(base, cfg, t, sid);
	if (u == NULL) return NULL;
	if (client) {
		u->have_client = 1;
		snprintf(u->c_addr, sizeof u->c_addr, "%s", client->addr);
		u->c_helo = xstrdup(client->helo ? client->helo : "");
		snprintf(u->c_login, sizeof u->c_login, "%s", client->login ? client->login : "");
		snprintf(u->c_name, sizeof u->c_name, "%s", client->name ? client->name : "");
		snprintf(u->c_ident, sizeof u->c_ident, "%s", client->ident ? client->ident : "");
		snprintf(u->c_source, sizeof u->c_source, "%s", client->source ? client->source : "");
		u->c_port = client->port;
		u->c_esmtp = client->esmtp;
	}
	u->open_cb = cb;
	u->open_arg = arg;
	if (conn_connect(u->conn, (struct sockaddr *)&t->addr.ss, t->addr.len,
	                 cfg->upstream_connect_timeout) < 0) {
		up_free(u);
		return NULL;
	}
	return u;
}

void upstream_probe(struct event_base *base, struct config *cfg, struct upstream_target *t)
{
	struct upstream *u = up_new(base, cfg, t, "probe");
	if (u == NULL) return;
	u->probe = 1;
	if (conn_connect(u->conn, (struct sockaddr *)&t->addr.ss, t->addr.len,
	                 cfg->upstream_connect_timeout) < 0) {
		up_free(u);
		return;
	}
}

int upstream_command(struct upstream *u, const char *line, unsigned timeout_ms,
                     upstream_reply_fn cb, void *arg)
{
	if (u->state != UPS_READY || u->zombie) return -1;
	if (up_push(u, timeout_ms, cb, arg) < 0) return -1;
	char buf[1024];
	size_t n = strlen(line);
	if (n + 2 <= sizeof buf) {           /* one buffer append, one flush */
		memcpy(buf, line, n);
		memcpy(buf + n, "\r\n", 2);
		conn_write(u->conn, buf, n + 2);
	} else {
		conn_write(u->conn, line, n);
		conn_write(u->conn, "\r\n", 2);
	}
	return 0;
}

int upstream_expect(struct upstream *u, unsigned timeout_ms, upstream_reply_fn cb, void *arg)
{
	if (u->state != UPS_READY || u->zombie) return -1;
	u->in_body = 0;     /* the end of data was written */
	return up_push(u, timeout_ms, cb, arg);
}

int upstream_write(struct upstream *u, const void *p, size_t len)
{
	if (u->state != UPS_READY || u->zombie) return -1;
	u->in_body = 1;
	return conn_write(u->conn, p, len);
}

size_t upstream_output_pending(const struct upstream *u)
{
	return conn_output_len(u->conn);
}

void upstream_set_drain_cb(struct upstream *u, upstream_drain_fn cb, void *arg)
{
	u->drain_cb = cb;
	u->drain_arg = arg;
}

void upstream_set_body_fail_cb(struct upstream *u, upstream_reply_fn cb, void *arg)
{
	u->body_fail_cb = cb;
	u->body_fail_arg = arg;
}

int upstream_refused_client(const struct upstream *u)
{
	return u != NULL && u->client_refused;
}

int upstream_client_changed(const struct upstream *u, const char *helo, int esmtp)
{
	if (u == NULL || !u->sent_xclient) return 0;
	return strcmp(up_helo(u), helo ? helo : "") != 0 || u->c_esmtp != esmtp;
}

static int same_text(const char *mine, const char *theirs)
{
	return strcmp(mine, theirs ? theirs : "") == 0;
}

int upstream_speaks_for(const struct upstream *u, const struct upstream_client *c)
{
	if (u == NULL || (!u->sent_xclient && !u->sent_xforward)) return 1;
	if (u->sent_xforward && u->mail_sent) return 0;
	return same_text(u->c_addr, c->addr) && u->c_port == c->port && same_text(up_helo(u), c->helo) &&
	       u->c_esmtp == c->esmtp && same_text(u->c_login, c->login) && same_text(u->c_name, c->name) &&
	       same_text(u->c_ident, c->ident) && same_text(u->c_source, c->source);
}

void upstream_mail_sent(struct upstream *u)
{
	if (u != NULL) u->mail_sent = 1;
}

int upstream_alive(const struct upstream *u)
{
	return u != NULL && u->state == UPS_READY && !u->zombie;
}

unsigned upstream_caps(const struct upstream *u)
{
	return u->caps;
}

const char *upstream_tls(const struct upstream *u)
{
	return u->tls_desc[0] ? u->tls_desc : NULL;
}

const struct smtp_reply *upstream_ehlo(const struct upstream *u)
{
	return &u->ehlo;
}

void upstream_drop(struct upstream *u)
{
	if (u == NULL) return;
	u->in_body = 1;       /* upstream_close then drops the connection */
	upstream_close(u);
}

void upstream_close(struct upstream *u)
{
	if (u == NULL) return;
	for (size_t i = 0; i < u->qlen; i++)
		u->q[(u->qhead + i) % UP_QUEUE_MAX].cb = NULL;
	u->open_cb = NULL;
	u->drain_cb = NULL;
	u->body_fail_cb = NULL;
	if (u->state == UPS_READY && !u->zombie && !u->quitting && u->qlen == 0 && !u->in_body) {
		/* polite goodbye; freed on the reply, EOF or timeout.  Not in the
		 * middle of a message: the upstream would read the QUIT as a line
		 * of it and wait for more until its own timeout; dropping the
		 * connection there ends the transaction undelivered at once */
		u->quitting = 1;
		conn_write(u->conn, "QUIT\r\n", 6);
		up_push(u, UP_QUIT_WAIT, NULL, NULL);
		return;
	}
	if (u->quitting) return;
	if (u->depth > 0) u->zombie = 1;
	else up_free(u);
}
