/* upstream.h - mailwarden's SMTP client towards the next-hop MTA.
 *
 * One connection per client session, opened at the client's first MAIL
 * FROM (so idle clients and clients refused early cost the MTA nothing).
 * Commands are queued FIFO with a callback each; every wait has a deadline.
 * Replies are parsed strictly (smtp_reply_line) with the CRLF framer; a
 * malformed or unsolicited reply fails the connection, it is never handed
 * on.  Each upstream EHLO reply also refreshes what the proxy knows of that
 * MTA's capabilities (struct upstream_target), which is what the proxy
 * offers its own clients.
 */
#ifndef MW_UPSTREAM_H
#define MW_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <event2/event.h>

#include "config.h"
#include "netaddr.h"
#include "smtp_parse.h"

enum upstream_cap {
	UCAP_PIPELINING = 1u << 0, UCAP_SIZE = 1u << 1, UCAP_8BITMIME = 1u << 2,
	UCAP_SMTPUTF8 = 1u << 3, UCAP_ENHANCED = 1u << 4, UCAP_DSN = 1u << 5,
	UCAP_CHUNKING = 1u << 6, UCAP_STARTTLS = 1u << 7, UCAP_XCLIENT = 1u << 8,
	UCAP_XFORWARD = 1u << 9, UCAP_BINARYMIME = 1u << 10, UCAP_AUTH = 1u << 11,
	UCAP_VRFY = 1u << 12
};

/* What we know of one next hop: shared by all sessions of a listener. */
struct upstream_target {
	char           spec[256];     /* as configured */
	struct netaddr addr;
	int            caps_known;    /* an EHLO reply was seen */
	unsigned       caps;          /* UCAP_* */
	uint64_t       size_limit;    /* its SIZE value, 0 = none */
	struct smtp_reply ehlo;       /* the last EHLO reply, for other keywords */
	time_t         caps_time;
	/* transport (issue 3): set at start-up, read-only after, but for
	 * tls_ctx, which a reload replaces (proxy.c reload_tls): a copy of
	 * the target takes its own reference (SSL_CTX_up_ref) */
	int            tls_mode;      /* enum mw_upstream_tls */
	struct ssl_ctx_st *tls_ctx;   /* NULL when tls_mode is off */
	int            tls_verify;    /* check the chain and tls_name */
	char           tls_name[256];
	int            xclient;       /* send XCLIENT/XFORWARD when offered (a warning
	                               * when not: upstream.c xclient_missing) */
};

/* Who the real client is, for XCLIENT/XFORWARD (all borrowed, copied). */
struct upstream_client {
	const char *addr;             /* numeric IP */
	unsigned    port;
	const char *helo;             /* "" if none yet */
	int         esmtp;
	const char *login;            /* "" if not authenticated */
	const char *name;             /* verified host name; NULL or "" if unknown */
	const char *ident;            /* XFORWARD IDENT (the first MTA's queue id); NULL or "" */
	const char *source;           /* XFORWARD SOURCE (LOCAL, REMOTE); NULL or "" */
};

enum upstream_err {
	UP_OK = 0,
	UP_ERR_CONNECT,     /* connect failed or timed out */
	UP_ERR_TIMEOUT,     /* a reply did not come in time */
	UP_ERR_CLOSED,      /* the MTA closed the connection */
	UP_ERR_PROTOCOL,    /* malformed or unsolicited reply */
	UP_ERR_TLS          /* STARTTLS required but refused, or the handshake failed */
};
const char *upstream_err_name(enum upstream_err e);

struct upstream;

/* reply callback: r is the complete reply when err == UP_OK, else NULL.
 * After an error the connection is dead; every queued callback is called
 * with the same error, in order. */
typedef void (*upstream_reply_fn)(void *arg, const struct smtp_reply *r, enum upstream_err err);
/* called when the output buffer has drained below the low-water mark */
typedef void (*upstream_drain_fn)(void *arg);

/* upstream_open - connect to t and run greeting + EHLO (HELO if our EHLO
 * is refused), then STARTTLS + EHLO when t->tls_mode asks for it (the
 * plaintext the MTA sent after its 220 is dropped: response injection),
 * then XCLIENT (+ EHLO) or XFORWARD with client when the MTA offers them
 * and t->xclient is set.  After HELO (no extensions) the opening fails
 * (UP_ERR_TLS) when t->tls_mode is required; without XCLIENT/XFORWARD
 * (not offered, or HELO) it goes on, and with t->xclient set and a
 * client to name a WARNING says so, once a minute per target (uplog.h).
 * cb gets the EHLO/HELO reply (or the greeting if it was not
 * 220, or an error).  After XCLIENT the EHLO carries the client's HELO name,
 * and a refusal of it is not worked around with HELO <our name>: cb gets
 * that reply (see upstream_refused_client).
 * sid: borrowed, for logs; copied.  cfg: a reference is
 * taken (the connection may end in the background, after a reload). */
struct upstream *upstream_open(struct event_base *base, struct config *cfg,
                               struct upstream_target *t, const char *sid,
                               const struct upstream_client *client,
                               upstream_reply_fn cb, void *arg);
/* upstream_tls - "TLSv1.3 cipher bits" of this connection, or NULL */
const char *upstream_tls(const struct upstream *u);

/* upstream_command - send line (no CRLF; copied) and queue cb for its reply,
 * with timeout_ms as deadline.  Returns 0, or -1 if the connection is dead. */
int upstream_command(struct upstream *u, const char *line, unsigned timeout_ms,
                     upstream_reply_fn cb, void *arg);
/* upstream_expect - queue cb for a reply to data already written (end of
 * data).  0 / -1. */
int upstream_expect(struct upstream *u, unsigned timeout_ms, upstream_reply_fn cb, void *arg);
/* upstream_write - raw bytes (message content, already dot-stuffed). */
int upstream_write(struct upstream *u, const void *p, size_t len);
size_t upstream_output_pending(const struct upstream *u);
void upstream_set_drain_cb(struct upstream *u, upstream_drain_fn cb, void *arg);
/* upstream_set_body_fail_cb - while message content is written after a 354
 * no reply is queued (upstream_expect comes after the last octet), so a
 * connection that dies then has nobody to tell: cb gets the error (r NULL)
 * if the connection fails while nothing queued took it.  Called at most
 * once; cleared with the drain callback by upstream_close.  NULL: none. */
void upstream_set_body_fail_cb(struct upstream *u, upstream_reply_fn cb, void *arg);
/* upstream_refused_client - the MTA refused the client's HELO name in the
 * EHLO sent after XCLIENT: the open callback got that reply (err UP_OK, a
 * 4xx or 5xx), which is the client's to hear; the connection is dead. */
int upstream_refused_client(const struct upstream *u);
/* upstream_client_changed - this connection told the MTA with XCLIENT a
 * HELO name or protocol other than helo/esmtp: it speaks for a client that
 * is no more (a new EHLO in the session), and must not be reused. */
int upstream_client_changed(const struct upstream *u, const char *helo, int esmtp);
/* upstream_speaks_for - may this connection carry a transaction of
 * client c?  Not when it told the MTA (XCLIENT, XFORWARD) of another
 * client, nor when its XFORWARD was spent on an earlier transaction (the
 * MTA forgets XFORWARD attributes at the end of each one, as Postfix
 * does).  1 when the MTA was told nothing (it sees us either way). */
int upstream_speaks_for(const struct upstream *u, const struct upstream_client *c);
/* upstream_mail_sent - a MAIL went on this connection: its XFORWARD, if
 * any, is spent at the end of that transaction */
void upstream_mail_sent(struct upstream *u);

int upstream_alive(const struct upstream *u);
unsigned upstream_caps(const struct upstream *u);       /* of this connection */
const struct smtp_reply *upstream_ehlo(const struct upstream *u);

/* upstream_close - forget every callback; send QUIT if the connection is
 * alive and idle, then free it in the background.  u is gone after this. */
void upstream_close(struct upstream *u);

/* upstream_drop - as upstream_close, but never QUIT: for a connection out
 * of step with its MTA (it answered a BDAT whose chunk was not all sent,
 * and would read a QUIT, or any later command, as octets of the chunk).
 * u is gone after this. */
void upstream_drop(struct upstream *u);

/* upstream_probe - connect, EHLO, QUIT, only to refresh t's capabilities.
 * Runs in the background; no callback. */
void upstream_probe(struct event_base *base, struct config *cfg, struct upstream_target *t);

#endif
