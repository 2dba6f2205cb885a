/* milter.c - see milter.h.
 *
 * libmilter runs the callbacks of one MTA connection one at a time, but
 * on any of its worker threads: all session state hangs off the context
 * (smfi_setpriv), nothing is thread-local.  A scan blocks the worker that
 * asked (libmilter starts more workers as needed).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "audit.h"
#include "auditcap.h"
#include "ctlmsg.h"
#include "headers.h"
#include "jsonw.h"
#include "log.h"
#include "milter.h"
#include "milter_accept.h"
#include "milter_result.h"
#include "netaddr.h"
#include "quarantine.h"
#include "sbuf.h"
#include "scansync.h"
#include "smtp_parse.h"
#include "spool.h"
#include "stats.h"
#include "filters/ipnet.h"

#define MAX_FIELDS 10000
#define MAX_RCPTS  10000

/* R_STORAGE - RFC 3463 4.3.1, as the proxy answers: the messages in flight
 * fill spool_memory_max */
static const char R_STORAGE[] = "452 4.3.1 Insufficient system storage, try again later";
/* the scan request could not be sent for a reason of its own (scansync's
 * -3): the message waits, as for our own spool's failure */
static const char R_NOT_SCANNED[] = "451 4.3.0 Error: message not scanned, try again later";
/* a header of more than MAX_FIELDS fields: no mail program writes one */
static const char R_TOO_MANY_FIELDS[] = "552 5.3.4 Error: too many header fields";

static struct {
	/* the newest configuration: a session takes a reference at each MAIL
	 * (msess.cfg), so a reload swaps it between messages and a message in
	 * flight finishes with the config it started with */
	pthread_mutex_t lock;
	struct config *cfg;
	struct scansync *scan;
	int ctl_fd;
	int listen_fd;          /* libmilter's listening socket, or -1 */
	/* callbacks waiting for the scanner: the stop lets them end first */
	pthread_cond_t idle;
	unsigned busy;
	int stopped;            /* smfi_stop() returned */
} G = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER, .listen_fd = -1 };

static void busy_enter(void)
{
	pthread_mutex_lock(&G.lock);
	G.busy++;
	pthread_mutex_unlock(&G.lock);
}

static void busy_leave(void)
{
	pthread_mutex_lock(&G.lock);
	if (--G.busy == 0)
		pthread_cond_broadcast(&G.idle);
	pthread_mutex_unlock(&G.lock);
}

/* config_current - a reference to the newest configuration */
static struct config *config_current(void)
{
	struct config *c;

	pthread_mutex_lock(&G.lock);
	c = config_ref(G.cfg);
	pthread_mutex_unlock(&G.lock);
	return c;
}

struct rcpt {
	char *addr;
	char *dsn;             /* its NOTIFY/ORCPT (smtp_dsn_rcpt_params), "" for none */
	char  reply[512];      /* "" = accepted by us; else what we refused it with */
	/* its check at RCPT did not run whole (audit's rcpt_checks_cut): who
	 * ran out of what ("greylist=scan_deadline"), and why the scanner did
	 * not answer; NULL each when not so */
	char *cut_timed_out;
	char *cut_fault;
	const char *cut_action; /* what the recipient got then: accept, tempfail, reject */
};

struct msess {
	char     id[17];
	struct config *cfg;     /* a reference, renewed at each MAIL (between messages) */
	unsigned ntxn;
	char     client_ip[64];
	unsigned client_port;
	char     client_name[256];
	char    *helo;
	int      leadspc;       /* SMFIP_HDR_LEADSPC negotiated */
	unsigned long noreply;  /* SMFIP_NR_* negotiated: those steps get no answer */
	/* the transaction */
	int      in_txn;
	struct timespec start;
	char    *mail_from, *mail_params;
	struct rcpt *rcpts;
	size_t   nrcpts;
	/* what the recipients add to the scan request's encoding: held under
	 * SCANPROTO_RCPTS_MAX_BYTES, or the request could not be sent */
	size_t   rcpt_bytes;
	char     auth_user[256];
	char     tls[128];
	struct spool spool;
	int      spool_ok;      /* opened and no write failed */
	int      too_big;
	int      too_many_fields;  /* past MAX_FIELDS: refused at the end */
	/* the field names, whole: a deletion names its field exactly (the
	 * MTA compares the whole name), so a name kept cut would miss a
	 * forged X-Spam-<1,000 bytes>.  Their sum is held within
	 * message_size_limit (names_bytes), past which the message is
	 * refused anyway */
	struct milter_fields fields;
	size_t   names_bytes;
	char     message_id[256];
	char     subject[256];
	char     queue_id[64];
	/* QUARANTINE_RELEASED_FIELD's value ("" = none): a release of an
	 * inbound message, never taken as outbound */
	char     released[QUARANTINE_ID_MAX + 8];
	/* the last recipient refused by an envelope verdict: reported in the
	 * audit record when the transaction never reaches the end of message */
	struct scan_result early_res;
	int      have_early;
};

/* --- helpers ------------------------------------------------------------------ */

static char *macro(SMFICTX *ctx, const char *name)
{
	char *v = smfi_getsymval(ctx, (char *)name);

	return v != NULL ? v : "";
}

/* strip_angles - "<a@b>" -> "a@b" (a copy) */
static char *strip_angles(const char *a)
{
	size_t n = strlen(a);

	if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
		return xstrndup(a + 1, n - 2);
	return xstrdup(a);
}

static double elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* in_networks - is ip inside one of the blank-separated CIDRs?  ipnet
 * reads both sides, so a mapped client or network is its IPv4 form */
static int in_networks(const char *ip, const char *list)
{
	struct ipnet a, n;

	if (ipnet_parse(ip, &a) < 0)
		return 0;
	for (;;) {
		char word[64];
		size_t len;

		list += strspn(list, " \t,");
		if ((len = strcspn(list, " \t,")) == 0)
			return 0;
		snprintf(word, sizeof(word), "%.*s", (int)len, list);
		list += len;
		if (ipnet_parse(word, &n) == 0 && ipnet_contains(&n, &a))
			return 1;
	}
}

static void txn_reset(struct msess *s)
{
	size_t i;

	free(s->mail_from);
	free(s->mail_params);
	for (i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].dsn);
		free(s->rcpts[i].cut_timed_out);
		free(s->rcpts[i].cut_fault);
	}
	free(s->rcpts);
	for (i = 0; i < s->fields.count; i++)
		free(s->fields.names[i]);
	free(s->fields.names);
	if (s->spool_ok || s->spool.fd >= 0 || s->spool.mem != NULL)
		spool_close(&s->spool);
	memset(&s->spool, 0, sizeof(s->spool));
	s->spool.fd = -1;
	s->mail_from = s->mail_params = NULL;
	s->rcpts = NULL;
	s->nrcpts = 0;
	s->rcpt_bytes = 0;
	s->fields.names = NULL;
	s->fields.count = s->fields.cap = 0;
	s->names_bytes = 0;
	s->spool_ok = s->too_big = s->too_many_fields = 0;
	s->message_id[0] = s->subject[0] = s->queue_id[0] = s->released[0] = '\0';
	s->auth_user[0] = s->tls[0] = '\0';
	if (s->have_early)
		scan_result_free(&s->early_res);
	s->have_early = 0;
	s->in_txn = 0;
}

static void spool_put(struct msess *s, const char *p, size_t n)
{
	if (!s->spool_ok || s->too_big || s->too_many_fields)
		return;
	if (s->spool.size + n > s->cfg->message_size_limit) {
		s->too_big = 1;
		return;
	}
	if (spool_write(&s->spool, p, n) < 0) {
		if (s->spool.full)
			slog(s->id, LOG_WARNING, "milter: spool_memory_max reached");
		else
			slog_errno(s->id, LOG_ERR, "milter: spool write");
		s->spool_ok = 0;
	}
}

static enum mw_direction direction_of(const struct msess *s)
{
	if (s->released[0] != '\0')
		return MW_INBOUND;
	if (s->auth_user[0] != '\0')
		return MW_OUTBOUND;
	return in_networks(s->client_ip, s->cfg->milter_internal_networks) ? MW_OUTBOUND : MW_INBOUND;
}

/* fill_request - the envelope part of a scan request (rcpts: all ours,
 * or only the one given) */
static void fill_request(struct msess *s, struct scan_request *req, const char *only_rcpt)
{
	size_t i;

	memset(req, 0, sizeof(*req));
	snprintf(req->session_id, sizeof(req->session_id), "%s", s->id);
	req->listener = xstrdup(SCAN_LISTENER_MILTER);
	req->mta_quarantine = s->cfg->milter_quarantine == MILTER_QUARANTINE_MTA;
	req->direction = direction_of(s);
	req->client_ip = xstrdup(s->client_ip);
	req->client_port = s->client_port;
	req->client_name = xstrdup(s->client_name);
	req->helo = xstrdup(s->helo ? s->helo : "");
	req->mail_from = xstrdup(s->mail_from ? s->mail_from : "");
	req->mail_params = xstrdup(s->mail_params ? s->mail_params : "");
	req->auth_user = xstrdup(s->auth_user);
	req->tls = xstrdup(s->tls);
	req->rcpts = xcalloc(s->nrcpts + 1, sizeof(char *));
	if (only_rcpt != NULL) {
		req->rcpts[req->nrcpts++] = xstrdup(only_rcpt);
	} else {
		int any_dsn = 0;

		req->rcpt_dsn = xcalloc(s->nrcpts + 1, sizeof(char *));
		for (i = 0; i < s->nrcpts; i++)
			if (s->rcpts[i].reply[0] == '\0') {
				any_dsn |= s->rcpts[i].dsn[0] != '\0';
				req->rcpt_dsn[req->nrcpts] = xstrdup(s->rcpts[i].dsn);
				req->rcpts[req->nrcpts++] = xstrdup(s->rcpts[i].addr);
			}
		if (!any_dsn) {       /* none: no field (scanproto.h) */
			for (i = 0; i < req->nrcpts; i++)
				free(req->rcpt_dsn[i]);
			free(req->rcpt_dsn);
			req->rcpt_dsn = NULL;
		}
	}
	req->size = s->spool.size;
}

/* --- the audit record (the same fields as a proxy transaction) ------------------- */

/* The audit record is written as the proxy's is (jsonw.h), within the
 * bounds of auditcap.h: the MTA hands over up to MAX_RCPTS recipients and
 * addresses, a HELO and a sender of any length. */

/* rcpt_checks_cut - the recipients whose check at RCPT was cut short or
 * got no answer, each with what ran out and what it got; nothing if none.
 * The check's own result is dropped once the recipient is let through, so
 * without this a cut that passed a recipient was only in the logs.  Within
 * the bounds of auditcap.h (AUDIT_CUTS_*), the rest counted
 * (rcpt_checks_cut_unlisted): a scanner that stops answering cuts every
 * recipient, and this list is outside the room the accepted recipients
 * get, so it must stay small. */
static void rcpt_checks_cut(struct jsonw *w, const struct msess *s)
{
	size_t i, start = 0, listed = 0, unlisted = 0;

	for (i = 0; i < s->nrcpts; i++) {
		const struct rcpt *r = &s->rcpts[i];
		size_t before;
		unsigned char first;

		if (r->cut_timed_out == NULL && r->cut_fault == NULL)
			continue;
		if (listed == AUDIT_CUTS_LISTED) {
			unlisted++;
			continue;
		}
		if (listed == 0) {
			jsonw_key(w, "rcpt_checks_cut");
			start = w->out->len;
			jsonw_array_begin(w);
		}
		before = w->out->len;
		first = w->first[w->depth];
		jsonw_object_begin(w);
		jsonw_key(w, "address");
		audit_text(w, r->addr, AUDIT_CUT_TEXT_MAX);
		if (r->cut_timed_out != NULL) {
			jsonw_key(w, "timed_out");
			audit_timed_out(w, r->cut_timed_out, AUDIT_CUT_TEXT_MAX);
		}
		if (r->cut_fault != NULL) {
			jsonw_key(w, "fault");
			audit_text(w, r->cut_fault, AUDIT_CUT_TEXT_MAX);
		}
		jsonw_key(w, "action");
		jsonw_cstr(w, r->cut_action);
		jsonw_object_end(w);
		if (listed > 0 && w->out->len - start > AUDIT_CUTS_MAX) {
			/* taken back, as symbols past their room; never the first
			 * (at most ~1 KiB), so the list is never empty */
			w->out->len = before;
			w->out->data[before] = '\0';
			w->first[w->depth] = first;
			unlisted++;
			continue;
		}
		listed++;
	}
	if (listed > 0)
		jsonw_array_end(w);
	if (unlisted > 0) {
		jsonw_key(w, "rcpt_checks_cut_unlisted");
		jsonw_int(w, (int64_t)unlisted);
	}
}

/* audit_tail - the record after its rcpts list, closing brace included */
static void audit_tail(struct jsonw *w, struct msess *s, const struct scan_result *res,
                       const char *action, const char *reply, const char *queue_id,
                       const char *fault)
{
	jsonw_key(w, "message_id");
	audit_text(w, s->message_id, AUDIT_TEXT_MAX);
	jsonw_key(w, "subject");
	audit_text(w, s->subject, AUDIT_TEXT_MAX);
	jsonw_key(w, "size");
	jsonw_int(w, (int64_t)s->spool.size);
	audit_symbols(w, res != NULL ? res->symbols : NULL, res != NULL ? res->nsymbols : 0);
	jsonw_key(w, "score");
	jsonw_num(w, res ? res->score : 0.0, 3);
	jsonw_key(w, "action");
	jsonw_cstr(w, action);
	if (fault != NULL && fault[0]) {
		jsonw_key(w, "fault");
		audit_text(w, fault, AUDIT_TEXT_MAX);
	}
	if (res != NULL && res->error[0]) {
		jsonw_key(w, "scan_error");
		audit_text(w, res->error, AUDIT_TEXT_MAX);
	}
	if (res != NULL && res->timed_out[0]) {
		jsonw_key(w, "timed_out");
		audit_timed_out(w, res->timed_out, AUDIT_TEXT_MAX);
	}
	rcpt_checks_cut(w, s);
	if (res != NULL)
		audit_dkim_sign(w, res->dkim_sign);
	if (res != NULL && res->quarantine_id[0]) {
		jsonw_key(w, "quarantine_id");
		audit_text(w, res->quarantine_id, AUDIT_TEXT_MAX);
	}
	jsonw_key(w, "reply");
	audit_text(w, reply, AUDIT_TEXT_MAX);
	jsonw_key(w, "queue_id");
	audit_text(w, queue_id, AUDIT_TEXT_MAX);
	jsonw_key(w, "upstream");
	jsonw_cstr(w, "milter");
	jsonw_key(w, "scan_ms");
	jsonw_num(w, res ? res->scan_ms : 0.0, 3);
	jsonw_key(w, "total_ms");
	jsonw_num(w, elapsed_ms(&s->start), 3);
	jsonw_object_end(w);
}

static void audit(struct msess *s, const struct scan_result *res, const char *action,
                  const char *reply, const char *queue_id, const char *fault)
{
	struct sbuf rec, tail;
	struct jsonw w, tw;
	struct audit_rcpt *ar;
	struct timespec now;
	struct tm tm;
	char ts[64];
	size_t i, n, fixed;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
	sbuf_init(&rec, (size_t)-1);
	sbuf_init(&tail, (size_t)-1);
	jsonw_init_inside(&tw, &tail);
	audit_tail(&tw, s, res, action, reply, queue_id, fault);
	jsonw_init(&w, &rec);
	jsonw_object_begin(&w);
	jsonw_key(&w, "time");
	jsonw_cstr(&w, ts);
	jsonw_key(&w, "session");
	jsonw_cstr(&w, s->id);
	jsonw_key(&w, "txn");
	jsonw_int(&w, (int)s->ntxn);
	jsonw_key(&w, "listener");
	jsonw_cstr(&w, "milter");
	jsonw_key(&w, "direction");
	jsonw_cstr(&w, direction_of(s) == MW_OUTBOUND ? "outbound" : "inbound");
	jsonw_key(&w, "client_ip");
	audit_text(&w, s->client_ip, AUDIT_TEXT_MAX);
	jsonw_key(&w, "client_port");
	jsonw_int(&w, (int)s->client_port);
	jsonw_key(&w, "client_name");
	audit_text(&w, s->client_name, AUDIT_TEXT_MAX);
	jsonw_key(&w, "helo");
	audit_text(&w, s->helo, AUDIT_TEXT_MAX);
	jsonw_key(&w, "protocol");
	jsonw_cstr(&w, "milter");
	jsonw_key(&w, "tls");
	audit_text(&w, s->tls, AUDIT_TEXT_MAX);
	jsonw_key(&w, "auth_user");
	audit_text(&w, s->auth_user, AUDIT_TEXT_MAX);
	jsonw_key(&w, "early_talker");
	jsonw_bool(&w, 0);
	jsonw_key(&w, "mail_from");
	audit_text(&w, s->mail_from, AUDIT_TEXT_MAX);
	jsonw_key(&w, "mail_params");
	audit_text(&w, s->mail_params, AUDIT_TEXT_MAX);
	/* the list gets what the rest leaves (auditcap.h) */
	fixed = rec.len + tail.len + 1 + 16 + AUDIT_COUNTS_ROOM;
	ar = xcalloc(s->nrcpts ? s->nrcpts : 1, sizeof(*ar));
	for (i = 0; i < s->nrcpts; i++) {
		ar[i].addr = s->rcpts[i].addr;
		ar[i].reply = s->rcpts[i].reply;
		ar[i].accepted = s->rcpts[i].reply[0] == '\0';
	}
	(void)audit_rcpts(&w, ar, s->nrcpts, 0, fixed < AUDIT_RECORD_MAX ? AUDIT_RECORD_MAX - fixed : 0);
	free(ar);
	if (!jsonw_failed(&w) && !jsonw_failed(&tw) && sbuf_add(&rec, tail.data, tail.len) == 0) {
		if (rec.len + 1 > AUDIT_RECORD_MAX)   /* the bounds of auditcap.h failed: a bug */
			slog(s->id, LOG_ERR, "milter: audit record of %zu bytes, past %d", rec.len + 1,
			    AUDIT_RECORD_MAX);
		audit_write_line(rec.data, rec.len);
	} else {
		slog(s->id, LOG_ERR, "milter: audit record malformed: not written");
	}
	sbuf_free(&rec);
	sbuf_free(&tail);
	stats_txn(STATS_MILTER, direction_of(s) == MW_OUTBOUND, action, s->spool.size,
	    res != NULL ? res->scan_ms : -1);
	if (res != NULL && res->error[0])
		stats_scan_failure(STATS_MILTER);
	/* the queue id is the MTA's macro: escaped like anything from outside */
	char qesc[128];
	slog(s->id, LOG_INFO, "milter txn=%u queue_id=%s rcpts=%zu size=%llu score=%.2f action=%s%s%s%s",
	    s->ntxn, queue_id[0] ? log_esc_word(qesc, sizeof(qesc), queue_id, strlen(queue_id)) : "-",
	    s->nrcpts, (unsigned long long)s->spool.size, res ? res->score : 0.0, action,
	    res != NULL && res->timed_out[0] ? " timed_out=\"" : "",
	    res != NULL ? res->timed_out : "", res != NULL && res->timed_out[0] ? "\"" : "");
}

/* txn_finish - a transaction that ends without an end of message (every
 * recipient refused, RSET, QUIT, a lost connection) still gets its audit
 * record, as the proxy writes one for a transaction that never reached DATA */
static void txn_finish(struct msess *s)
{
	if (!s->in_txn)
		return;
	if (s->have_early)
		audit(s, &s->early_res, mw_action_name(s->early_res.action), s->early_res.reply,
		    s->queue_id, "no message: recipients refused");
	else
		audit(s, NULL, "none", "", s->queue_id, "no message");
	txn_reset(s);
}

/* --- callbacks ------------------------------------------------------------------- */

/* After a close the context may go on: with SMFIC_QUIT_NC (Sendmail
 * reusing the connection for its next SMTP session) libmilter calls
 * xxfi_close, then xxfi_connect again, with no new negotiation.  What was
 * negotiated (SMFIP_NR_*, SMFIP_HDR_LEADSPC) must outlive the session, yet
 * nothing may be left to free when the connection really ends (after a
 * QUIT no callback follows): it is kept in the private pointer itself,
 * shifted, with the low bit set (a session pointer's is 0). */
#define NEGOTIATED_TAG ((uintptr_t)1)

static struct msess *sess(SMFICTX *ctx)
{
	void *p = smfi_getpriv(ctx);

	return ((uintptr_t)p & NEGOTIATED_TAG) ? NULL : p;
}

/* sess_new - the session of ctx, created on first use */
static struct msess *sess_new(SMFICTX *ctx)
{
	void *p = smfi_getpriv(ctx);
	struct msess *s;
	uint64_t rnd = 0;

	if (p != NULL && !((uintptr_t)p & NEGOTIATED_TAG))
		return p;
	s = xcalloc(1, sizeof(*s));
	if (p != NULL) {        /* the same connection after SMFIC_QUIT_NC */
		s->noreply = (unsigned long)((uintptr_t)p >> 1);
		s->leadspc = (s->noreply & SMFIP_HDR_LEADSPC) != 0;
	}
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)s;
	snprintf(s->id, sizeof(s->id), "%016llx", (unsigned long long)rnd);
	s->cfg = config_current();
	s->spool.fd = -1;
	clock_gettime(CLOCK_MONOTONIC, &s->start);
	smfi_setpriv(ctx, s);
	stats_session(STATS_MILTER, 1);
	return s;
}

/* answer - rc, or SMFIS_NOREPLY for a step negotiated without reply */
static sfsistat answer(const struct msess *s, unsigned long nr_flag, sfsistat rc)
{
	return s != NULL && (s->noreply & nr_flag) ? SMFIS_NOREPLY : rc;
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	unsigned long want0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;
	/* no answer to connect, HELO, each header, end of headers and body
	 * chunks: the MTA does not wait for a round trip on each (the verdict
	 * comes at RCPT and at the end of the message) */
	unsigned long want1 = SMFIP_HDR_LEADSPC | SMFIP_NOUNKNOWN | SMFIP_NODATA
	    | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY;
	struct msess *s;

	(void)f2;
	(void)f3;
	if ((f0 & want0) != want0) {
		slog(NULL, LOG_ERR, "milter: the MTA does not allow adding/changing headers "
		    "and quarantine (offered actions 0x%lx)", f0);
		return SMFIS_REJECT;
	}
	/* replacing the body (a banned attachment made a text part) when the
	 * MTA allows it; without, such a message is tempfailed (milter_apply) */
	*pf0 = want0 | (f0 & SMFIF_CHGBODY);
	*pf1 = want1 & f1;
	*pf2 = *pf3 = 0;
	/* the session starts here: whether values keep their leading space is
	 * known only now */
	s = sess_new(ctx);
	s->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	s->noreply = *pf1;
	return SMFIS_CONTINUE;
}

/* mta_says_local - the MTA's "_" macro shows its own local client:
 * Postfix's "reverse_name [addr]" (in its default
 * milter_connect_macros) with the address 127.0.0.1 or ::1 ("localhost
 * [127.0.0.1]" for its smtpd on a pipe or UNIX socket), or no address in
 * brackets at all: Sendmail's "_" for -bs ("user@localhost"), and no "_"
 * (an admin who took it out of milter_connect_macros: README
 * "Direction").  Any other address is no local client: "[unknown]" after
 * a trusted XCLIENT NAME=localhost ADDR=[UNAVAILABLE], followed by
 * " (may be forged)" when its REVERSE_NAME differs from NAME (Postfix
 * smtpd_milter.c); session 21's first check, "_" ending in "[unknown]",
 * took that one for local again.  The last '[' is read: Postfix puts
 * the address after the name. */
static int mta_says_local(const char *mac)
{
	const char *b = strrchr(mac, '['), *e;
	size_t n;

	if (b == NULL)
		return 1;
	b++;
	if ((e = strchr(b, ']')) == NULL)
		return 0;
	n = (size_t)(e - b);
	return (n == 9 && memcmp(b, "127.0.0.1", 9) == 0) || (n == 3 && memcmp(b, "::1", 3) == 0);
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	struct msess *s = sess_new(ctx);
	const char *addr = "";

	if (sa != NULL && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, s->client_ip, sizeof(s->client_ip));
		s->client_port = ntohs(in->sin_port);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		/* as shown as IPv4: milter_internal_networks, the audit log
		 * and the scanner's filters see a mapped or translated
		 * (nat64_prefixes) client as IPv4 */
		netaddr_client_ip(sa, s->client_ip, sizeof(s->client_ip), NULL);
		s->client_port = ntohs(in6->sin6_port);
	} else if ((addr = macro(ctx, "{client_addr}"))[0] != '\0' &&
	    ipnet_canon(addr, s->client_ip, sizeof(s->client_ip)) == 0) {
		/* Sendmail writes "IPv6:2001:db8::1" */
	} else if (hostname != NULL && strcmp(hostname, "localhost") == 0 &&
	    mta_says_local(macro(ctx, "_"))) {
		/* no address at all, and "localhost": the MTA's own local
		 * submission (Sendmail -bm/-bs: SMFIA_UNKNOWN, "localhost";
		 * Postfix's smtpd on a pipe or UNIX socket likewise, "_" then
		 * "localhost [127.0.0.1]").  It is taken as Postfix takes it,
		 * and as Postfix's non_smtpd_milters show it: from 127.0.0.1,
		 * so milter_internal_networks decides (outbound by default).
		 * Not for a client whose address the MTA does not know: a
		 * trusted XCLIENT NAME=localhost ADDR=[UNAVAILABLE] on such an
		 * smtpd comes the same way, "_" "localhost [unknown]" (or
		 * "other [unknown] (may be forged)" with a REVERSE_NAME), and
		 * Postfix's mynetworks does not take that client for local
		 * (its address "unknown" is in no network); until session 21
		 * the milter made it outbound: no SPF, DMARC or greylisting,
		 * and DKIM-signed.  It stays inbound, with no address, as
		 * "unknown" does (mta_says_local) */
		snprintf(s->client_ip, sizeof(s->client_ip), "127.0.0.1");
		slog(s->id, LOG_DEBUG, "milter: connect from localhost without an address: "
		    "local submission, client 127.0.0.1");
	} else if (addr[0] != '\0') {
		snprintf(s->client_ip, sizeof(s->client_ip), "%s", addr);
	}
	/* Postfix gives "unknown" or "[1.2.3.4]" when the name did not verify */
	if (hostname != NULL && hostname[0] != '[' && strcmp(hostname, "unknown") != 0)
		snprintf(s->client_name, sizeof(s->client_name), "%s", hostname);
	return answer(s, SMFIP_NR_CONN, SMFIS_CONTINUE);
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	struct msess *s = sess(ctx);

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	free(s->helo);
	s->helo = xstrndup(helo ? helo : "", 255);
	return answer(s, SMFIP_NR_HELO, SMFIS_CONTINUE);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct msess *s = sess(ctx);
	struct sbuf params;
	const char *tv, *ci;
	int i;

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	txn_finish(s);
	txn_reset(s);
	/* between messages: a reload since the last one applies from here */
	config_unref(s->cfg);
	s->cfg = config_current();
	s->in_txn = 1;
	snprintf(s->queue_id, sizeof(s->queue_id), "%s", macro(ctx, "i"));
	s->ntxn++;
	clock_gettime(CLOCK_MONOTONIC, &s->start);
	s->mail_from = strip_angles(argv[0] ? argv[0] : "");
	sbuf_init(&params, 4096);
	for (i = 1; argv[i] != NULL; i++)
		sbuf_addf(&params, "%s%s", i > 1 ? " " : "", argv[i]);
	sbuf_add(&params, "", 1);
	s->mail_params = xstrdup(params.data ? params.data : "");
	sbuf_free(&params);
	snprintf(s->auth_user, sizeof(s->auth_user), "%s", macro(ctx, "{auth_authen}"));
	tv = macro(ctx, "{tls_version}");
	ci = macro(ctx, "{cipher}");
	if (tv[0] != '\0')
		snprintf(s->tls, sizeof(s->tls), "%s %s", tv, ci);
	if (spool_full()) {
		/* as the proxy refuses DATA then (and Postfix a MAIL under
		 * queue_minfree): a message now would be cut off on its way */
		slog(s->id, LOG_WARNING, "milter: MAIL refused: spool_memory_max reached");
		milter_reply(ctx, R_STORAGE);
		audit(s, NULL, "tempfail", R_STORAGE, s->queue_id, "spool_memory_max reached");
		txn_reset(s);
		return SMFIS_TEMPFAIL;
	}
	if (s->cfg->audit_fail_tempfail && audit_failing()) {
		/* this refusal's record is tried now: once one is written, mail
		 * flows again */
		slog(s->id, LOG_WARNING, "milter: MAIL refused: the audit log cannot be written "
		     "(audit_failure = tempfail)");
		milter_reply(ctx, R_STORAGE);
		audit(s, NULL, "tempfail", R_STORAGE, s->queue_id, "audit log not writable");
		txn_reset(s);
		return SMFIS_TEMPFAIL;
	}
	if (spool_open(&s->spool) < 0) {
		slog_errno(s->id, LOG_ERR, "milter: spool");
		return SMFIS_TEMPFAIL;
	}
	s->spool_ok = 1;
	return SMFIS_CONTINUE;
}

/* early - an envelope-only scan for one recipient r; SMFIS_CONTINUE unless
 * a filter gave a hard tempfail/reject (a scanner problem never refuses a
 * recipient here: the end of message applies the fail action).  A check
 * cut short, or not answered, is noted in r for the audit record. */
static sfsistat early(SMFICTX *ctx, struct msess *s, struct rcpt *r)
{
	struct scan_request req;
	struct scan_result res;
	char err[256];
	sfsistat rc = SMFIS_CONTINUE;
	int got;

	fill_request(s, &req, r->addr);
	req.stage = SCAN_ENVELOPE;
	/* RCPT is a command for the MTA (Postfix's milter_command_timeout,
	 * 30 s), not content: a slow scanner must not make it give up on us */
	got = scansync_scan(G.scan, &req, -1, s->cfg->milter_early_timeout, &res, err, sizeof(err));
	if (got < 0) {
		slog(s->id, LOG_WARNING, "milter: envelope check skipped: %s", err);
		stats_scan_failure(STATS_MILTER);
		if (got == -2)
			r->cut_timed_out = xstrdup("envelope_check=milter_early_timeout");
		r->cut_fault = xstrdup(err);
		r->cut_action = "accept";
		scan_request_free(&req);
		return SMFIS_CONTINUE;
	}
	if (res.timed_out[0] != '\0') {
		r->cut_timed_out = xstrdup(res.timed_out);
		r->cut_action = res.action == MW_REJECT || res.action == MW_TEMPFAIL
		    ? mw_action_name(res.action) : "accept";
	}
	if (res.action == MW_REJECT || res.action == MW_TEMPFAIL) {
		milter_reply(ctx, res.reply);
		snprintf(r->reply, sizeof(r->reply), "%s", res.reply);
		rc = res.action == MW_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
		if (s->have_early)
			scan_result_free(&s->early_res);
		s->early_res = res;          /* moved: reported if no message follows */
		s->have_early = 1;
		scan_request_free(&req);
		return rc;
	}
	scan_result_free(&res);
	scan_request_free(&req);
	return rc;
}

/* queue_id_refresh - the MTA's queue id {i}, whenever it sends one.
 * Postfix (smtpd_delay_open_until_valid_rcpt = yes, its default) has none
 * at MAIL: it makes one once a recipient is accepted and sends it with
 * the next RCPT and with the end of header, so a transaction ended by
 * RSET or QUIT after two recipients is logged by Postfix under an id
 * that only those steps carried */
static void queue_id_refresh(SMFICTX *ctx, struct msess *s)
{
	const char *q = macro(ctx, "i");

	if (q[0] != '\0')
		snprintf(s->queue_id, sizeof(s->queue_id), "%s", q);
}

/* rcpt_dsn - the DSN arguments (NOTIFY, ORCPT) of a RCPT's ESMTP
 * arguments (argv[1..], one each), well-formed, as smtp_dsn_rcpt_params
 * keeps them; the first of each (an MTA refuses a second: RFC 3461 4.1).
 * Picked out one by one, so that no other argument, however long, pushes
 * them out: until session 20 all the arguments were joined into 2 KiB
 * first, and a long one before them dropped the DSN request without a
 * word.  Returns a malloc'ed string, "" for none. */
static char *rcpt_dsn(const struct msess *s, char **argv)
{
	char all[2 * (SMTP_DSN_RCPT_MAX + 1)], kept[SMTP_DSN_RCPT_MAX + 1];
	int have_notify = 0, have_orcpt = 0;
	size_t o = 0;

	all[0] = '\0';
	for (int k = 1; argv[0] != NULL && argv[k] != NULL; k++) {
		const char *a = argv[k];
		size_t n = strlen(a);
		int *seen = strncasecmp(a, "NOTIFY=", 7) == 0 ? &have_notify
		          : strncasecmp(a, "ORCPT=", 6) == 0 ? &have_orcpt : NULL;

		if (seen == NULL)
			continue;
		if (*seen || n > SMTP_DSN_RCPT_MAX || strchr(a, ' ') != NULL) {
			/* a second one, or one no well-formed value makes:
			 * dropped as a malformed one is (smtp_dsn_rcpt_params) */
			char esc[80];
			slog(s->id, LOG_NOTICE, "milter: RCPT argument dropped (DSN, %s): %s",
			    *seen ? "repeated" : "malformed", log_esc(esc, sizeof(esc), a, n));
			continue;
		}
		*seen = 1;
		o += (size_t)snprintf(all + o, sizeof(all) - o, "%s%s", o ? " " : "", a);
	}
	smtp_dsn_rcpt_params(all, kept, sizeof(kept));
	return xstrdup(kept);
}

static sfsistat envrcpt(SMFICTX *ctx, char **argv)
{
	struct msess *s = sess(ctx);
	struct rcpt *r;
	sfsistat rc = SMFIS_CONTINUE;

	if (s == NULL || !s->in_txn)
		return SMFIS_TEMPFAIL;
	queue_id_refresh(ctx, s);
	if (s->nrcpts >= MAX_RCPTS) {
		smfi_setreply(ctx, "452", "4.5.3", "Too many recipients");
		return SMFIS_TEMPFAIL;
	}
	char *addr = strip_angles(argv[0] ? argv[0] : "");
	char *dsn = rcpt_dsn(s, argv);
	/* the recipient's DSN parameters go into the request too (rcpt_dsn) */
	size_t cost = scan_request_rcpt_bytes(addr) + 4 + strlen(dsn);
	/* the MTA chooses how many recipients and how long: past what one
	 * scan request carries, this one waits for another transaction
	 * (RFC 5321 4.5.3.1.10), rather than the whole message going
	 * unscanned or tempfailed at its end */
	if (s->rcpt_bytes + cost > SCANPROTO_RCPTS_MAX_BYTES) {
		free(addr);
		free(dsn);
		smfi_setreply(ctx, "452", "4.5.3", "Too many recipients");
		return SMFIS_TEMPFAIL;
	}
	s->rcpt_bytes += cost;
	s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof(*s->rcpts));
	r = &s->rcpts[s->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->addr = addr;
	r->dsn = dsn;
	if (s->cfg->milter_early)
		rc = early(ctx, s, r);
	return rc;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct msess *s = sess(ctx);
	const char *v;

	if (s == NULL || !s->in_txn)
		return answer(s, SMFIP_NR_HDR, SMFIS_TEMPFAIL);
	if (s->fields.count == MAX_FIELDS) {
		/* the fields past it could not be removed (a forged X-Spam-*
		 * or Authentication-Results would reach the mailbox): the
		 * message is refused at its end, and nothing more is kept */
		s->too_many_fields = 1;
		return answer(s, SMFIP_NR_HDR, SMFIS_CONTINUE);
	}
	size_t nlen = strlen(name);
	if (s->too_big || s->names_bytes + nlen > s->cfg->message_size_limit) {
		/* past the size limit: refused at its end, nothing more kept */
		s->too_big = 1;
		return answer(s, SMFIP_NR_HDR, SMFIS_CONTINUE);
	}
	if (s->fields.count == s->fields.cap) {    /* doubled: up to 10,000 a message */
		s->fields.cap = s->fields.cap ? 2 * s->fields.cap : 32;
		s->fields.names = xrealloc(s->fields.names, s->fields.cap * sizeof(char *));
	}
	s->fields.names[s->fields.count++] = xstrdup(name);
	s->names_bytes += nlen;
	/* the field as it was sent: "Name:" value CRLF, with the MTA's LF
	 * folding (or CRLF) turned back into CRLF.  A CR alone stays a byte of
	 * the value, as the proxy relays it and headers.c reads it: as a line
	 * break it would end the header section for the scanner at the next
	 * line without a colon, and the fields after it (a forged
	 * Authentication-Results, X-Spam-*) would go unseen and unremoved
	 * while the MTA delivers them */
	spool_put(s, name, strlen(name));
	spool_put(s, ":", 1);
	if (!s->leadspc && value[0] != ' ' && value[0] != '\t')
		spool_put(s, " ", 1);
	for (v = value; *v != '\0'; ) {
		const char *lf = strchr(v, '\n');
		size_t n = lf != NULL ? (size_t)(lf - v) : strlen(v);

		if (lf == NULL) {
			spool_put(s, v, n);
			break;
		}
		spool_put(s, v, n > 0 && lf[-1] == '\r' ? n - 1 : n);
		spool_put(s, "\r\n", 2);
		v = lf + 1;
	}
	spool_put(s, "\r\n", 2);
	for (v = value; *v == ' ' || *v == '\t'; v++)
		;
	if (strcasecmp(name, "Message-ID") == 0 && s->message_id[0] == '\0')
		snprintf(s->message_id, sizeof(s->message_id), "%s", v);
	else if (strcasecmp(name, "Subject") == 0 && s->subject[0] == '\0')
		snprintf(s->subject, sizeof(s->subject), "%s", v);
	else if (strcasecmp(name, QUARANTINE_RELEASED_FIELD) == 0 && s->released[0] == '\0')
		snprintf(s->released, sizeof(s->released), "%s", v[0] != '\0' ? v : "?");
	return answer(s, SMFIP_NR_HDR, SMFIS_CONTINUE);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);

	if (s == NULL || !s->in_txn)
		return answer(s, SMFIP_NR_EOH, SMFIS_TEMPFAIL);
	queue_id_refresh(ctx, s);
	spool_put(s, "\r\n", 2);
	return answer(s, SMFIP_NR_EOH, SMFIS_CONTINUE);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct msess *s = sess(ctx);

	if (s == NULL || !s->in_txn)
		return answer(s, SMFIP_NR_BODY, SMFIS_TEMPFAIL);
	spool_put(s, (const char *)chunk, len);
	return answer(s, SMFIP_NR_BODY, SMFIS_CONTINUE);
}

/* fail_action - the scanner did not answer: milter_default_action */
static sfsistat fail_action(SMFICTX *ctx, struct msess *s, const char *why, const char *qid)
{
	if (s->cfg->milter_default_action == MILTER_FAIL_ACCEPT) {
		slog(s->id, LOG_WARNING, "milter: accepting unscanned (milter_default_action = accept): %s", why);
		audit(s, NULL, "accept", "", qid, why);
		return SMFIS_CONTINUE;
	}
	slog(s->id, LOG_WARNING, "milter: tempfail: %s", why);
	milter_reply(ctx, "451 4.3.0 Scanner unavailable, try again later");
	audit(s, NULL, "tempfail", "451 4.3.0 Scanner unavailable, try again later", qid, why);
	return SMFIS_TEMPFAIL;
}

/* Sendmail waits T=R: (10 s by default) for each read of a milter's
 * reply, at the end of the message too (T=E:, 5 min, bounds the whole);
 * a progress packet starts that wait again, so a scan may take its whole
 * milter_timeout.  Postfix reads it and waits on (milter_content_timeout
 * bounds each read there). */
#define PROGRESS_EVERY_MS 5000

static void progress(void *arg)
{
	smfi_progress((SMFICTX *)arg);
}

static sfsistat eom(SMFICTX *ctx)
{
	const struct scansync_progress pg = { PROGRESS_EVERY_MS, progress, ctx };
	struct msess *s = sess(ctx);
	struct scan_request req;
	struct scan_result res;
	const char *what = "none", *reply;
	char err[300], qid[64];
	sfsistat rc;
	int got;

	if (s == NULL || !s->in_txn)
		return SMFIS_TEMPFAIL;
	queue_id_refresh(ctx, s);
	snprintf(qid, sizeof(qid), "%s", s->queue_id);
	if (s->too_big) {
		milter_reply(ctx, "552 5.3.4 Message too big");
		audit(s, NULL, "reject", "552 5.3.4 Message too big", qid, "message too big");
		txn_reset(s);
		return SMFIS_REJECT;
	}
	if (s->too_many_fields) {
		milter_reply(ctx, R_TOO_MANY_FIELDS);
		audit(s, NULL, "reject", R_TOO_MANY_FIELDS, qid, "too many header fields");
		txn_reset(s);
		return SMFIS_REJECT;
	}
	if (s->have_early && s->nrcpts > 0) {
		size_t i, ok = 0;

		for (i = 0; i < s->nrcpts; i++)
			ok += s->rcpts[i].reply[0] == '\0';
		if (ok == 0) {
			/* every recipient was refused: there is nobody to deliver to
			 * (an MTA does not even get here) */
			rc = s->early_res.action == MW_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
			milter_reply(ctx, s->early_res.reply);
			audit(s, &s->early_res, mw_action_name(s->early_res.action), s->early_res.reply,
			    qid, "no recipient left");
			txn_reset(s);
			return rc;
		}
	}
	if (s->spool.full) {
		/* our own memory, not the scanner: never milter_default_action
		 * (which may be accept, unscanned) */
		milter_reply(ctx, R_STORAGE);
		audit(s, NULL, "tempfail", R_STORAGE, qid, "spool_memory_max reached");
		txn_reset(s);
		return SMFIS_TEMPFAIL;
	}
	if (!s->spool_ok || spool_finish(&s->spool) < 0) {
		/* our own spool failed, not the scanner: a tempfail, never
		 * milter_default_action (which may be accept, unscanned) */
		int e = s->spool.err ? s->spool.err : errno;
		const char *r = spool_err_storage(e) ? R_STORAGE
		                                     : "451 4.3.0 Error: local spool failure, try again later";
		slog(s->id, LOG_WARNING, "milter: tempfail: cannot spool the message: %s", strerror(e));
		milter_reply(ctx, r);
		audit(s, NULL, "tempfail", r, qid, "cannot spool the message");
		txn_reset(s);
		return SMFIS_TEMPFAIL;
	}
	fill_request(s, &req, NULL);
	got = scansync_scan_progress(G.scan, &req, s->spool.fd, s->cfg->milter_timeout, &pg, &res, err,
	    sizeof(err));
	if (got == -3) {
		/* this request could not be sent, the scanner is not down:
		 * never milter_default_action (with accept, the sender would
		 * choose to pass unscanned) */
		stats_scan_failure(STATS_MILTER);
		slog(s->id, LOG_WARNING, "milter: tempfail: %s", err);
		milter_reply(ctx, R_NOT_SCANNED);
		audit(s, NULL, "tempfail", R_NOT_SCANNED, qid, err);
		scan_request_free(&req);
		txn_reset(s);
		return SMFIS_TEMPFAIL;
	}
	if (got < 0) {
		stats_scan_failure(STATS_MILTER);
		rc = fail_action(ctx, s, err, qid);
		scan_request_free(&req);
		txn_reset(s);
		return rc;
	}
	rc = milter_apply(ctx, s->cfg, &res, &s->fields, s->leadspc, &what, &reply);
	if (s->released[0] != '\0' && res.action == MW_QUARANTINE) {
		char esc[80];

		/* the admin's release said "250 queued" and the message is held
		 * again: the release upstream runs this milter */
		slog(s->id, LOG_WARNING, "milter: a message released from quarantine (%s: %s) came back "
		    "through the milter and was quarantined again: quarantine_release_upstream must be "
		    "an smtpd of the MTA without milters (README \"Quarantine\")", QUARANTINE_RELEASED_FIELD,
		    log_esc(esc, sizeof(esc), s->released, strlen(s->released)));
	}
	audit(s, &res, what, reply, qid, NULL);
	scan_result_free(&res);
	scan_request_free(&req);
	txn_reset(s);
	return rc;
}

/* on_envrcpt, on_eom - the two steps that wait for the scanner, counted
 * so that a stop lets them give their verdict to the MTA */
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	sfsistat rc;

	busy_enter();
	rc = envrcpt(ctx, argv);
	busy_leave();
	return rc;
}

static sfsistat on_eom(SMFICTX *ctx)
{
	sfsistat rc;

	busy_enter();
	rc = eom(ctx);
	busy_leave();
	return rc;
}

static sfsistat on_abort(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);

	if (s != NULL)
		txn_finish(s);
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	struct msess *s = sess(ctx);

	if (s != NULL) {
		uintptr_t kept = ((uintptr_t)s->noreply << 1) | NEGOTIATED_TAG;

		txn_finish(s);
		config_unref(s->cfg);
		free(s->helo);
		free(s);
		smfi_setpriv(ctx, (void *)kept);
		stats_session(STATS_MILTER, -1);
	}
	return SMFIS_CONTINUE;
}

/* --- the process ------------------------------------------------------------------- */

/* peer_timeout_s - milter_peer_timeout for smfi_settimeout, which takes
 * whole seconds: rounded up, so "1500ms" never becomes a shorter wait */
static unsigned peer_timeout_s(const struct config *cfg)
{
	return (cfg->milter_peer_timeout + 999) / 1000;
}

/* reload - the master's reload: c (taken), the config the master passed
 * down once the scanner that runs it was ready, is the one the next
 * message gets (the milter never reads the file: it runs as "user").  A
 * session holds its own reference (msess.cfg), so messages in flight end
 * with the config they started with, as in the proxy.  The socket
 * (milter_listen) cannot change in place: libmilter owns it, and the
 * master passes down the one it started with (master.c reload, which
 * says so). */
static void reload(struct config *c)
{
	struct config *old;

	pthread_mutex_lock(&G.lock);
	old = G.cfg;
	if (c->milter_peer_timeout != old->milter_peer_timeout) {
		/* libmilter gives each connection the timeout smfi_main started
		 * with: what is set now would reach no connection */
		slog(NULL, LOG_WARNING, "milter: reload: milter_peer_timeout %us needs a restart; "
		    "still %us", peer_timeout_s(c), peer_timeout_s(old));
		c->milter_peer_timeout = old->milter_peer_timeout;
	}
	G.cfg = c;
	pthread_mutex_unlock(&G.lock);
	config_unref(old);
	milter_accept_set_max(c->milter_max_connections);
	log_set_level(c->log_level);
	spool_set_budget(c->spool_memory_max);
	/* the audit log reopened as the proxy does on its SIGHUP, or the milter
	 * would go on writing into a rotated file (libmilter takes SIGHUP as
	 * "stop", so the master passes the config down the control channel) */
	audit_open_logged(c->audit_log, "milter: ");
	slog(NULL, LOG_NOTICE, "milter: config reloaded (for the next message of each connection)");
}

/* reopen_audit_log - the master's SIGUSR1 (log rotation): the audit log
 * and nothing else */
static void reopen_audit_log(void)
{
	char path[sizeof(G.cfg->audit_log)];

	pthread_mutex_lock(&G.lock);
	snprintf(path, sizeof(path), "%s", G.cfg->audit_log);
	pthread_mutex_unlock(&G.lock);
	if (audit_open_logged(path, "milter: ") == 0)
		slog(NULL, LOG_NOTICE, "milter: audit log reopened");
}

/* stopper - smfi_stop(), which waits for libmilter's listener to let go of
 * its socket: the listener holds it while it waits for a connection, and
 * looks at its stop flag only between accepts or every 5 s (MI_CHK_TIME) */
static void *stopper(void *arg)
{
	(void)arg;
	smfi_stop();
	__atomic_store_n(&G.stopped, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* wake_listener - a connection of our own, so the listener's wait ends */
static void wake_listener(void)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd;

	if (G.listen_fd < 0 || getsockname(G.listen_fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		(void)connect(fd, (struct sockaddr *)&ss, len);
		close(fd);
	}
}

/* stop - stop taking connections, in milliseconds rather than up to 5 s:
 * the stop flag is raised (stopper), then the listener woken until it
 * has seen it */
static void stop(void)
{
	pthread_t th;
	int i;

	if (pthread_create(&th, NULL, stopper, NULL) != 0) {
		smfi_stop();
		return;
	}
	pthread_detach(th);
	for (i = 0; i < 100 && !__atomic_load_n(&G.stopped, __ATOMIC_ACQUIRE); i++) {
		struct timespec t = { 0, 20 * 1000000L };

		nanosleep(&t, NULL);
		wake_listener();
	}
}

/* control_reader - the master's messages (ctlmsg.h): a new scanner
 * address, a reload's config (CTL_CONFIG) or CTL_REOPEN; EOF = the master
 * stops (or is gone): stop. */
static void *control_reader(void *arg)
{
	(void)arg;
	for (;;) {
		struct ctl_msg msg;
		int cfd;
		ssize_t n = ctl_recv(G.ctl_fd, &msg, &cfd);

		if (n == (ssize_t)sizeof(msg) && msg.len == CTL_CONFIG) {
			struct config *c = ctl_config(cfd, "milter: ");

			if (c != NULL)
				reload(c);
			continue;
		}
		if (cfd >= 0)
			close(cfd);
		if (n == (ssize_t)sizeof(msg) && msg.len == CTL_REOPEN) {
			reopen_audit_log();
			continue;
		}
		if (n != (ssize_t)sizeof(msg) || msg.len == 0 || msg.len > sizeof(msg.a)) {
			if (n != 0)
				slog_errno(NULL, LOG_ERR, "milter: control channel");
			stop();
			return NULL;
		}
		scansync_set_address(G.scan, &msg.a, msg.len);
		slog(NULL, LOG_INFO, "milter: scanner address updated");
	}
}

/* find_listener - libmilter's listening socket (it does not expose it:
 * it is the one listening among ours) into G.listen_fd, with TCP_NODELAY
 * (Linux passes it on to each accepted connection).  libmilter writes each
 * packet of the end of message (every header edit, then the verdict) with
 * a write of its own, and the MTA answers none of them: with Nagle each
 * packet after the first waited for the MTA's delayed ACK, 40 ms per
 * message. */
const char *milter_socket_path(const struct config *cfg)
{
	const char *v = cfg->milter_listen;

	if (strncmp(v, "unix:", 5) == 0)
		return v + 5;
	if (strncmp(v, "local:", 6) == 0)
		return v + 6;
	return NULL;
}

int milter_socket_dir_check(const struct config *cfg, int missing_ok, char *err, size_t errlen)
{
	const char *path = milter_socket_path(cfg), *slash;
	char dir[600], owner[64], group[64];
	struct passwd *pw;
	struct group *gr;
	struct stat st;
	int e;

	if (path == NULL || (slash = strrchr(path, '/')) == NULL)
		return 0;
	snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	if (access(dir, W_OK | X_OK) == 0)
		return 0;
	e = errno;
	if (e == ENOENT && missing_ok)
		return 0;
	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "milter_listen %s: directory %s: %s (the daemon makes a missing one "
		    "for \"user\" at start; on a read-only /var, as under the shipped unit's "
		    "ProtectSystem=strict, it needs a ReadWritePaths= drop-in)", cfg->milter_listen, dir,
		    strerror(e));
		return -1;
	}
	if ((pw = getpwuid(st.st_uid)) != NULL)
		snprintf(owner, sizeof(owner), "%s", pw->pw_name);
	else
		snprintf(owner, sizeof(owner), "%u", (unsigned)st.st_uid);
	if ((gr = getgrgid(st.st_gid)) != NULL)
		snprintf(group, sizeof(group), "%s", gr->gr_name);
	else
		snprintf(group, sizeof(group), "%u", (unsigned)st.st_gid);
	snprintf(err, errlen, "milter_listen %s: user %s cannot make its socket in %s (%s:%s, mode %04o): "
	    "%s; give the socket a directory of its own that the daemon makes for \"user\", e.g. "
	    "unix:/var/spool/postfix/mailwarden/milter.sock (README \"Milter front end\")",
	    cfg->milter_listen, cfg->user[0] ? cfg->user : "(the running user)", dir, owner, group,
	    (unsigned)(st.st_mode & 07777), strerror(e));
	return -1;
}

/* socket_access - a unix: socket gets milter_socket_mode and
 * milter_socket_group: libmilter leaves it to the umask (0750 then), and
 * an MTA that is not our user could not connect.  0, or -1 logged. */
static int socket_access(const struct config *cfg)
{
	const char *v = cfg->milter_listen, *path;
	struct stat st;

	if (strncmp(v, "unix:", 5) == 0)
		path = v + 5;
	else if (strncmp(v, "local:", 6) == 0)
		path = v + 6;
	else
		return 0;
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		slog(NULL, LOG_ERR, "milter: %s is not the socket just made", path);
		return -1;
	}
	if (cfg->milter_socket_group[0] != '\0') {
		struct group *g = getgrnam(cfg->milter_socket_group);
		if (g == NULL) {
			slog(NULL, LOG_ERR, "milter: milter_socket_group %s: no such group", cfg->milter_socket_group);
			return -1;
		}
		if (lchown(path, (uid_t)-1, g->gr_gid) < 0) {
			slog_errno(NULL, LOG_ERR, "milter: cannot give %s to group %s", path, cfg->milter_socket_group);
			return -1;
		}
	}
	if (chmod(path, (mode_t)strtoul(cfg->milter_socket_mode, NULL, 8)) < 0) {
		slog_errno(NULL, LOG_ERR, "milter: chmod %s %s", cfg->milter_socket_mode, path);
		return -1;
	}
	return 0;
}

static void find_listener(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name), one = 1, v = 0;
		socklen_t len = sizeof(v);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || !v)
			continue;
		G.listen_fd = fd;
		len = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) < 0 || v != IPPROTO_TCP)
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
			slog_errno(NULL, LOG_WARNING, "milter: TCP_NODELAY");
	}
	closedir(d);
}

/* drain - smfi_main returned (stopped) but callbacks may still be waiting
 * for the scanner: let them give their verdicts to the MTA, for at most
 * shutdown_timeout, before the process ends under them */
static void drain(unsigned timeout_ms)
{
	struct timespec until;
	int left, had;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&G.lock);
	had = G.busy > 0;
	while (G.busy > 0 && pthread_cond_timedwait(&G.idle, &G.lock, &until) == 0)
		;
	left = (int)G.busy;
	pthread_mutex_unlock(&G.lock);
	if (left > 0)
		slog(NULL, LOG_WARNING, "milter: stopping with %d scans unanswered", left);
	else if (had) {
		/* the worker writes the verdict just after the callback returns */
		struct timespec grace = { 0, 100 * 1000000L };
		nanosleep(&grace, NULL);
	}
}

int milter_main(struct config *cfg, int ctl_fd, const struct sockaddr_un *scan_addr,
                socklen_t scan_addrlen)
{
	struct smfiDesc desc;
	pthread_t th;
	unsigned timeout;
	int rc;

	G.cfg = config_ref(cfg);
	G.ctl_fd = ctl_fd;
	G.scan = scansync_new();
	if (scan_addrlen > 0)
		scansync_set_address(G.scan, scan_addr, scan_addrlen);
	spool_set_budget(cfg->spool_memory_max);
	audit_open_logged(cfg->audit_log, "milter: ");

	memset(&desc, 0, sizeof(desc));
	desc.xxfi_name = "mailwarden";
	desc.xxfi_version = SMFI_VERSION;
	desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGBODY;
	desc.xxfi_connect = on_connect;
	desc.xxfi_helo = on_helo;
	desc.xxfi_envfrom = on_envfrom;
	desc.xxfi_envrcpt = on_envrcpt;
	desc.xxfi_header = on_header;
	desc.xxfi_eoh = on_eoh;
	desc.xxfi_body = on_body;
	desc.xxfi_eom = on_eom;
	desc.xxfi_abort = on_abort;
	desc.xxfi_close = on_close;
	desc.xxfi_negotiate = on_negotiate;

	/* the timeout bounds what a silent or stalled peer costs: libmilter
	 * (Debian's, with its pool of workers) parks a connection idle between
	 * packets in one poll() and drops it once idle that long (it looks
	 * every 10 min), but a peer stopped in the middle of a packet holds a
	 * worker thread (8 MiB of stack) until then, and workers are started
	 * without bound.  Postfix is idle between commands as long as its
	 * client (smtpd_timeout, 300 s) and for the whole DATA transfer. */
	if (smfi_setconn(cfg->milter_listen) != MI_SUCCESS
	    || smfi_register(desc) != MI_SUCCESS
	    || smfi_settimeout((int)peer_timeout_s(cfg)) != MI_SUCCESS) {
		slog(NULL, LOG_ERR, "milter: cannot set up libmilter on %s", cfg->milter_listen);
		return 1;
	}
	/* libmilter says nothing of why (it logs to syslog, if anywhere), and
	 * a directory this user cannot write is no failure a restart mends */
	char why[1024];
	if (milter_socket_dir_check(cfg, 0, why, sizeof(why)) < 0) {
		slog(NULL, LOG_ERR, "milter: cannot listen: %s", why);
		return MILTER_EXIT_CANNOT_LISTEN;
	}
	errno = 0;
	if (smfi_opensocket(1) != MI_SUCCESS) {
		int e = errno;
		slog(NULL, LOG_ERR, "milter: cannot listen on %s%s%s", cfg->milter_listen,
		    e != 0 ? ": " : "", e != 0 ? strerror(e) : "");
		return 1;
	}
	/* an MTA that cannot connect tempfails (or passes) all mail: better
	 * a milter that does not start, and says why */
	if (socket_access(cfg) < 0)
		return 1;
	find_listener();
	/* libmilter takes SIGTERM, SIGHUP and SIGINT with sigwait() in a thread
	 * of its own, and blocks them only in the thread that calls smfi_main:
	 * a thread started before (ours) took SIGTERM with its default action,
	 * and the master's stop killed the milter in the middle of its
	 * messages.  Blocked here, every thread inherits the mask. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	if (pthread_create(&th, NULL, control_reader, NULL) != 0) {
		slog(NULL, LOG_ERR, "milter: cannot start the control thread");
		return 1;
	}
	pthread_detach(th);
	milter_accept_start(cfg->milter_max_connections);
	slog(NULL, LOG_NOTICE, "milter listening on %s (milter_peer_timeout %us, milter_max_connections %u)",
	    cfg->milter_listen, peer_timeout_s(cfg), cfg->milter_max_connections);
	rc = smfi_main();
	pthread_mutex_lock(&G.lock);
	timeout = G.cfg->shutdown_timeout;
	pthread_mutex_unlock(&G.lock);
	drain(timeout);
	slog(NULL, LOG_NOTICE, "milter stopped");
	return rc == MI_SUCCESS ? 0 : 1;
}
