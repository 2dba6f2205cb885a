/* pipeline.c - run every filter over one message, then policy.
 *
 * The message is the front end's spool (a memfd), mapped read-only: no
 * copy, whatever its size.  Only a file sealed against shrinking
 * (F_SEAL_SHRINK, as the proxy's spool is) is mapped: truncating a mapped
 * file under a reader raises SIGBUS, which would take down every scan in
 * the process; anything else is read into a private copy.  Its header section is parsed once (headers.c)
 * and shown to every filter; the body goes to on_body in 64 KiB chunks.
 * Filters run one after the other, each through all its hooks (connect,
 * helo, mail, rcpt..., header..., body..., eom), with a struct mw_ctx of
 * its own; their symbols, header edits and verdicts are collected in one
 * struct msgscan, and policy turns that into the result.
 *
 * The pipeline itself is read-only after pipeline_new, so scanner threads
 * share one; per-message state lives on the stack of pipeline_scan.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/dns.h"
#include "filters/filter_api.h"
#include "filters/ipnet.h"
#include "filters/mime.h"
#include "filters/pipeline.h"
#include "filters/plugin.h"
#include "filters/scanstale.h"
#include "proxy/header_edit.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/policy.h"
#include "proxy/quarantine.h"
#include "proxy/sbuf.h"
#include "proxy/spool.h"

#define BODY_CHUNK (64 * 1024)

#define MAX_BUILTINS 32

struct pipeline {
	struct config  *cfg;        /* borrowed */
	struct scan_env env;        /* shared services of the built-ins */
	struct plugin **filters;    /* owned: built-ins ("filters"), then plugins */
	const struct builtin_filter **builtin;  /* per filter: its table entry, or NULL */
	size_t          nfilters;
};

/* add_builtins - the "filters" setting, in order.  0 or -1 with err. */
static int add_builtins(struct pipeline *p, char *err, size_t errlen)
{
	const char *v = p->cfg->filters;

	for (;;) {
		char name[64];
		size_t n, k;
		const struct builtin_filter *bf;
		struct plugin *pl;

		v += strspn(v, " \t");
		if ((n = strcspn(v, " \t")) == 0)
			return 0;
		snprintf(name, sizeof(name), "%.*s", (int)n, v);
		v += n;
		if ((bf = builtin_find(name)) == NULL) {
			snprintf(err, errlen, "filters: no built-in filter \"%s\"", name);
			return -1;
		}
		for (k = 0; k < p->nfilters; k++)
			if (p->builtin[k] == bf) {
				snprintf(err, errlen, "filters: \"%s\" is listed twice", name);
				return -1;
			}
		if (p->nfilters == MAX_BUILTINS) {
			snprintf(err, errlen, "filters: more than %d built-ins", MAX_BUILTINS);
			return -1;
		}
		if ((pl = plugin_builtin(bf->ops, NULL, err, errlen)) == NULL)
			return -1;
		p->builtin[p->nfilters] = bf;
		p->filters[p->nfilters++] = pl;
		if (bf->setup != NULL) {
			char serr[400] = "";

			if (bf->setup(&pl->instance, &p->env, serr, sizeof(serr)) != 0) {
				pl->inited = 0;    /* no fini for what never set up */
				snprintf(err, errlen, "filter %s: %s", name,
				    serr[0] ? serr : "setup failed");
				return -1;
			}
		}
	}
}

struct pipeline *pipeline_new(struct config *cfg, char *err, size_t errlen)
{
	struct pipeline *p = xcalloc(1, sizeof(*p));
	unsigned i;

	p->cfg = cfg;
	p->env.cfg = cfg;
	/* --- DNS layer: create p->env.dns here (issue 4) --- */
	if ((p->env.dns = dns_new(cfg, err, errlen)) == NULL) {
		free(p);
		return NULL;
	}

	p->filters = xcalloc(MAX_BUILTINS + CFG_MAX_PLUGINS, sizeof(*p->filters));
	p->builtin = xcalloc(MAX_BUILTINS + CFG_MAX_PLUGINS, sizeof(*p->builtin));
	if (add_builtins(p, err, errlen) < 0) {
		pipeline_free(p);
		return NULL;
	}
	for (i = 0; i < cfg->nplugins && i < CFG_MAX_PLUGINS; i++) {
		struct plugin *pl = plugin_load(cfg->plugins[i], err, errlen);

		if (pl == NULL) {
			pipeline_free(p);
			return NULL;
		}
		p->filters[p->nfilters++] = pl;
	}
	return p;
}

void pipeline_free(struct pipeline *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = p->nfilters; i > 0; i--)
		plugin_free(p->filters[i - 1]);
	free(p->filters);
	free(p->builtin);
	if (p->env.dns != NULL) {
		struct dns_stats st;

		dns_stats(p->env.dns, &st);
		if (st.lookups > 0)
			slog(NULL, LOG_INFO, "dns: %llu lookups, %llu cache hits, %llu timeouts, "
			    "%llu failures, %llu prefetched", (unsigned long long)st.lookups,
			    (unsigned long long)st.cache_hits, (unsigned long long)st.timeouts,
			    (unsigned long long)st.failures, (unsigned long long)st.prefetches);
	}
	dns_free(p->env.dns);
	free(p);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

#define PIPELINE_COPY_MAX (256 * 1024)

/* read_copy - the file's content into memory, up to *len bytes (fewer if
 * it shrank meanwhile: *len is updated).  NULL with errno on failure. */
static unsigned char *read_copy(int fd, size_t *len)
{
	unsigned char *b = malloc(*len);
	size_t off = 0;
	ssize_t n;

	if (b == NULL)
		return NULL;
	while (off < *len) {
		n = pread(fd, b + off, *len - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;

			free(b);
			errno = saved;
			return NULL;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	*len = off;
	return b;
}

/* client_name - the client's forward-confirmed reverse DNS, for the
 * filters (mw_client_name) and the audit log, before any filter runs. */
static void client_name(struct pipeline *p, const struct scan_request *req, struct msgscan *ms)
{
	int rc;

	if (!p->cfg->dns_client_name || p->env.dns == NULL || req->client_ip == NULL
	    || req->client_ip[0] == '\0')
		return;
	if (req->client_name != NULL && req->client_name[0] != '\0')
		return;		/* the front end knows it */
	deadline_filter("rdns");
	rc = dns_client_name(p->env.dns, req->client_ip, p->cfg->dns_timeout, ms->client_name,
	    sizeof(ms->client_name));
	deadline_filter(NULL);
	if (rc < 0)
		slog(req->session_id, LOG_INFO, "reverse DNS of %s: temporary error", req->client_ip);
}

/* prefetch_names - before any filter runs: the client's PTR and every
 * name the built-ins can tell from the envelope and header (builtin.h
 * prefetch) go out together, so that a message's lookups cost about one
 * round trip instead of one per filter in turn, and names whose server
 * drops them one timeout for the message (each lookup waits at most its
 * timeout counted from the prefetch, dns.h) instead of one per filter. */
static void prefetch_names(struct pipeline *p, struct msgscan *ms)
{
	const struct scan_request *req = ms->req;
	char rev[80];
	size_t i;

	if (p->env.dns == NULL)
		return;
	if (p->cfg->dns_client_name && req->client_ip != NULL && req->client_ip[0] != '\0'
	    && (req->client_name == NULL || req->client_name[0] == '\0')
	    && dns_reverse_name(req->client_ip, rev, sizeof(rev)) == 0)
		dns_prefetch(p->env.dns, rev, DNS_T_PTR);
	for (i = 0; i < p->nfilters; i++) {
		struct mw_ctx ctx;

		if (p->builtin[i] == NULL || p->builtin[i]->prefetch == NULL)
			continue;
		mw_ctx_begin(&ctx, ms, p->filters[i]->ops, p->filters[i]->instance);
		p->builtin[i]->prefetch(&ctx);
		mw_ctx_end(&ctx);
	}
}

/* run_filter - one filter through all its hooks over the message (only
 * the envelope hooks when there is no message yet). */
static void run_filter(struct msgscan *ms, const struct plugin *pl, int envelope_only)
{
	const struct mw_filter_ops *ops = pl->ops;
	const struct scan_request *req = ms->req;
	struct mw_ctx ctx;
	size_t i, off, n;

	deadline_filter(ops->name);
	/* the filter's waits are capped by the scan's deadline, and note
	 * themselves when they run out (deadline.h); one that ends past the
	 * deadline without waiting on anything (a plugin, a slow rule) is
	 * noted by run_filters */
	mw_ctx_begin(&ctx, ms, ops, pl->instance);
	if (ops->on_connect)
		ops->on_connect(&ctx);
	if (ops->on_helo)
		ops->on_helo(&ctx, req->helo ? req->helo : "");
	if (ops->on_mail)
		ops->on_mail(&ctx, req->mail_from ? req->mail_from : "");
	if (ops->on_rcpt)
		for (i = 0; i < req->nrcpts; i++)
			ops->on_rcpt(&ctx, req->rcpts[i] ? req->rcpts[i] : "");
	if (envelope_only) {
		mw_ctx_end(&ctx);
		deadline_filter(NULL);
		return;
	}
	if (ops->on_header)
		for (i = 0; i < ms->nfields; i++)
			ops->on_header(&ctx, ms->fields[i].name, ms->fields[i].value);
	if (ops->on_body)
		for (off = ms->body_off; off < ms->len; off += n) {
			n = ms->len - off < BODY_CHUNK ? ms->len - off : BODY_CHUNK;
			ops->on_body(&ctx, ms->msg + off, n);
		}
	if (ops->on_eom)
		ops->on_eom(&ctx);
	mw_ctx_end(&ctx);
	deadline_filter(NULL);
}

/* run_filters - every filter in turn; one that starts with time left and
 * ends past the scan's deadline is noted as the one that took it */
static void run_filters(struct pipeline *p, struct msgscan *ms, int envelope_only)
{
	size_t i;

	for (i = 0; i < p->nfilters; i++) {
		int had_time = deadline_left_ms() != 0;

		run_filter(ms, p->filters[i], envelope_only);
		if (had_time && deadline_left_ms() == 0) {
			deadline_filter(p->filters[i]->ops->name);
			deadline_timed_out("scan_deadline");
			deadline_filter(NULL);
		}
	}
}

/* push_edit - an edit of the pipeline's own (not subject to the filters' cap) */
static void push_edit(struct msgscan *ms, enum header_edit_op op, const char *name,
                      const char *value, unsigned index)
{
	struct header_edit *e;

	ms->edits = xrealloc(ms->edits, (ms->nedits + 1) * sizeof(*ms->edits));
	e = &ms->edits[ms->nedits++];
	memset(e, 0, sizeof(*e));
	e->op = op;
	e->name = xstrdup(name);
	e->value = value != NULL ? xstrdup(value) : NULL;
	e->index = index;
}

/* skip_cfws - past RFC 5322 CFWS: white space, line breaks and comments,
 * which nest and may hold quoted-pairs; NULL for a comment never closed */
static const char *skip_cfws(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			return p;
		for (unsigned depth = 0; ; p++) {
			if (*p == '\0')
				return NULL;
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
}

/* ar_authserv_is - does an Authentication-Results value start with this
 * authserv-id?  RFC 8601: CFWS, the id as a token or a quoted-string
 * (RFC 2045 "value"), an optional version, then ';'.  Every form that a
 * reader following the RFC takes for our id counts: a forged field that
 * hid it in quotes or nested comments would pass as ours downstream. */
static int ar_authserv_is(const char *value, const char *id)
{
	size_t n = strlen(id), k = 0;
	const char *p = skip_cfws(value);

	if (p == NULL)
		return 0;
	if (*p != '"') {
		if (strncasecmp(p, id, n) != 0)
			return 0;
		p += n;
		return *p == ';' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' ||
		    *p == '(' || *p == '\0';
	}
	/* a quoted-string: its content, quoted-pairs undone and folding
	 * dropped, compared with the id */
	for (p++; *p != '"'; p++) {
		if (*p == '\0')
			return 0;
		if (*p == '\r' || *p == '\n')
			continue;
		if (*p == '\\' && p[1] != '\0')
			p++;
		if (k >= n || tolower((unsigned char)*p) != tolower((unsigned char)id[k]))
			return 0;
		k++;
	}
	return k == n;
}

#define MAX_FORGED_AR 1000     /* Authentication-Results fields a message may carry */

static const char *authserv_id(const struct config *cfg)
{
	return cfg->authserv_id[0] ? cfg->authserv_id : cfg->hostname;
}

/* auth_results - forged Authentication-Results (with our authserv-id) are
 * removed, whoever sent them; then the filters' entries become one field
 * on top.  A folded field: one "method=result props" per line. */
static void auth_results(const struct config *cfg, struct msgscan *ms)
{
	static const char ar[] = "Authentication-Results";
	const char *id = authserv_id(cfg);
	unsigned nth = 0;
	struct header_field f;
	struct sbuf v;
	size_t i, pos = 0;

	/* the whole header section, not ms->fields: those stop at
	 * MW_MAX_FIELDS, and a forged field past them would stay.  Past
	 * MAX_FORGED_AR of them the message is refused instead: their
	 * removals would not fit the scanner's reply (SP_MAX_EDITS), which
	 * made every try a 451, and the milter refuses that many deletions */
	size_t nar = 0, at = 0;

	while (header_next((const char *)ms->msg, ms->len, &at, &f) == 1)
		if (f.name_len == sizeof(ar) - 1 && strncasecmp(f.name, ar, f.name_len) == 0 &&
		    ++nar > MAX_FORGED_AR)
			break;
	if (nar > MAX_FORGED_AR) {
		slog(ms->req->session_id, LOG_NOTICE, "more than %d Authentication-Results fields: refused",
		    MAX_FORGED_AR);
		if (ms->hard < MW_REJECT) {
			ms->hard = MW_REJECT;
			snprintf(ms->hard_text, sizeof(ms->hard_text), "Too many Authentication-Results fields");
			snprintf(ms->hard_by, sizeof(ms->hard_by), "auth_results");
		}
		return;
	}
	while (header_next((const char *)ms->msg, ms->len, &pos, &f) == 1) {
		if (f.name_len != sizeof(ar) - 1 || strncasecmp(f.name, ar, f.name_len) != 0)
			continue;
		char *value = xmalloc(f.value_len + 1);

		header_unfold(&f, value, f.value_len + 1);
		if (ar_authserv_is(value, id)) {
			slog(ms->req->session_id, LOG_NOTICE,
			    "removing an Authentication-Results field with our authserv-id %s", id);
			push_edit(ms, HE_REMOVE_AT, ar, NULL, nth);
		}
		free(value);
		nth++;
	}
	if (ms->nauth == 0)
		return;
	sbuf_init(&v, (size_t)-1);
	sbuf_addf(&v, "%s", id);
	for (i = 0; i < ms->nauth; i++) {
		const struct auth_entry *e = &ms->auth[i];

		sbuf_addf(&v, ";\r\n\t%s=%s%s%s", e->method, e->result, e->props[0] ? " " : "",
		    e->props);
	}
	sbuf_add(&v, "", 1);
	push_edit(ms, HE_ADD, "Authentication-Results", v.data, 0);
	sbuf_free(&v);
}

/* finalize - the built-ins' last look at the message as it will leave:
 * res->edits applied, with the body a filter rewrote, if one did. */
static void finalize(struct pipeline *p, const struct msgscan *ms, struct scan_result *res)
{
	struct final_msg m;
	struct sbuf hdr;
	size_t i, rest;
	int any = 0;

	for (i = 0; i < p->nfilters; i++)
		if (p->builtin[i] != NULL && p->builtin[i]->finalize != NULL)
			any = 1;
	if (!any)
		return;
	sbuf_init(&hdr, (size_t)-1);
	rest = header_edits_apply((const char *)ms->msg, ms->len, res->edits, res->nedits, &hdr);
	memset(&m, 0, sizeof(m));
	m.req = ms->req;
	m.headers = hdr.data ? hdr.data : "";
	m.headers_len = hdr.len;
	if (ms->new_rest != NULL) {     /* new_body ran (finalize comes only after it) */
		m.rest = ms->new_rest;
		m.rest_len = ms->new_rest_len;
	} else {
		m.rest = (const char *)ms->msg + rest;
		m.rest_len = ms->len - rest;
	}
	m.res = res;
	for (i = 0; i < p->nfilters; i++)
		if (p->builtin[i] != NULL && p->builtin[i]->finalize != NULL)
			p->builtin[i]->finalize(p->filters[i]->instance, &m);
	sbuf_free(&hdr);
}

void final_prepend(const struct final_msg *m, const char *name, const char *value)
{
	struct scan_result *res = m->res;

	res->edits = xrealloc(res->edits, (res->nedits + 1) * sizeof(*res->edits));
	memmove(res->edits + 1, res->edits, res->nedits * sizeof(*res->edits));
	memset(&res->edits[0], 0, sizeof(res->edits[0]));
	res->edits[0].op = HE_ADD;
	res->edits[0].name = xstrdup(name);
	res->edits[0].value = xstrdup(value);
	res->nedits++;
}

/* store_quarantined - quarantine_store of the message as it came (what
 * `quarantine show` and forensics need), with res->edits as the edits a
 * release applies: the policy's for a held message (the sender's X-Spam-*
 * and forged Authentication-Results removed, ours added, as if tagged),
 * new_body's Content-* fields, and an outbound message's DKIM signatures,
 * which finalize made over the message with those edits applied and the
 * body a filter rewrote (a banned attachment replaced), so that they
 * verify on what the release sends: that body is stored beside the
 * message for the release.  Signed here, by the scanner that holds the
 * keys, not by the release; dkim_sign sets no x= a late release could
 * outlive.  0, or -1 with errno. */
static int store_quarantined(struct pipeline *p, const struct msgscan *ms,
                             struct scan_result *res, const char *why)
{
	int rewritten = ms->new_rest != NULL;     /* new_body made its edits */

	return quarantine_store(p->cfg, ms->req, res, why, ms->msg, ms->len,
	    rewritten ? ms->new_rest : NULL, rewritten ? ms->new_rest_len : 0,
	    res->quarantine_id, sizeof(res->quarantine_id));
}

/* fail - an internal failure: tempfail with the reason. */
static void fail(const struct config *cfg, const struct scan_request *req,
                 struct scan_result *res, const char *what, int err)
{
	if (err)
		snprintf(res->error, sizeof(res->error), "%s: %s", what, strerror(err));
	else
		snprintf(res->error, sizeof(res->error), "%s", what);
	res->action = MW_TEMPFAIL;
	policy_reply(cfg, MW_TEMPFAIL, NULL, res->reply, sizeof(res->reply));
	slog(req->session_id, LOG_ERR, "scan id=%llu failed: %s",
	    (unsigned long long)req->id, res->error);
}

/* new_body - the body a filter rewrote goes with the result, sealed,
 * when the front end sends it (sealed: 1): accepted, tagged, or held in
 * the MTA's queue.  A message kept in our store has it stored beside it
 * (store_quarantined), and the edits for its fields either way.  If the
 * copy cannot be made, the message must not leave with the old one:
 * tempfail. */
static void new_body(const struct config *cfg, const struct scan_request *req,
                     const struct msgscan *ms, struct scan_result *res, int sealed)
{
	static const char *const own[] = {
		"Content-Type", "Content-Transfer-Encoding", "Content-Disposition"
	};
	size_t i;

	if (sealed) {
		int fd = spool_sealed_copy(ms->new_rest, ms->new_rest_len);
		if (fd < 0) {
			fail(cfg, req, res, "new body memfd", errno);
			return;
		}
		res->new_body = 1;
		res->new_body_fd = fd;
	}
	if (!ms->new_rest_top)
		return;
	/* the message's own body was replaced: its fields describe the
	 * text part now (added fields go on top, the old ones go) */
	res->edits = xrealloc(res->edits, (res->nedits + 5) * sizeof(*res->edits));
	for (i = 0; i < 3; i++)
		res->edits[res->nedits++] = (struct header_edit){ HE_REMOVE, xstrdup(own[i]), NULL, 0 };
	res->edits[res->nedits++] = (struct header_edit){ HE_ADD, xstrdup("Content-Type"),
	    xstrdup(MIME_REPLACEMENT_TYPE), 0 };
	res->edits[res->nedits++] = (struct header_edit){ HE_ADD, xstrdup("Content-Transfer-Encoding"),
	    xstrdup(MIME_REPLACEMENT_CTE), 0 };
}

/* scan_envelope - before DATA: only a hard tempfail or reject counts (a
 * score needs the message); symbols are reported for the logs. */
static void scan_envelope(struct pipeline *p, const struct scan_request *req,
                          struct scan_result *res)
{
	static const unsigned char empty[1];
	struct msgscan ms;
	size_t i;

	memset(&ms, 0, sizeof(ms));
	ms.req = req;
	ms.msg = empty;
	prefetch_names(p, &ms);     /* no header yet: the envelope's names */
	client_name(p, req, &ms);
	run_filters(p, &ms, 1);
	res->symbols = ms.symbols;
	res->nsymbols = ms.nsymbols;
	ms.symbols = NULL;
	ms.nsymbols = 0;
	for (i = 0; i < res->nsymbols; i++)
		res->score += res->symbols[i].score;
	res->action = ms.hard >= MW_TEMPFAIL ? ms.hard : MW_ACCEPT;
	if (res->action != MW_ACCEPT)
		policy_reply(p->cfg, res->action, ms.hard_text[0] ? ms.hard_text : NULL,
		    res->reply, sizeof(res->reply));
	msgscan_free(&ms);
}

void pipeline_scan(struct pipeline *p, const struct scan_request *req, int msgfd,
                   struct scan_result *res)
{
	pipeline_scan_ex(p, req, msgfd, 0, res);
}

/* scan_timed - the scan of one message or envelope, under the deadline
 * the caller set */
static void scan_timed(struct pipeline *p, const struct scan_request *req, int msgfd,
                       unsigned flags, struct scan_result *res)
{
	static const unsigned char empty[1];
	const struct config *cfg = p->cfg;
	struct msgscan ms;
	struct policy_in in;
	struct timespec t0;
	struct stat st;
	void *map = NULL;
	unsigned char *copy = NULL;
	size_t len = 0, i;
	double score = 0;
	char why[256], canon_ip[64];
	struct scan_request canon_req;
	int seals;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(res, 0, sizeof(*res));
	memset(&ms, 0, sizeof(ms));
	res->id = req->id;
	/* Front ends, milters and "scan --client-ip" may write the client as
	 * ::ffff:192.0.2.1 or 2001:DB8:0::1: one spelling here, so that the
	 * filters' lists, DNS names and store keys see one client as one */
	if (req->client_ip != NULL && ipnet_canon(req->client_ip, canon_ip, sizeof(canon_ip)) == 0
	    && strcmp(canon_ip, req->client_ip) != 0) {
		canon_req = *req;
		canon_req.client_ip = canon_ip;
		req = &canon_req;
	}

	if (req->stage == SCAN_ENVELOPE) {
		scan_envelope(p, req, res);
		res->scan_ms = ms_since(&t0);
		return;
	}

	if (req->msg_inline) {
		/* the message came in the request packet: our own copy */
		len = req->msg_len;
		goto have_msg;
	}
	if (fstat(msgfd, &st) < 0) {
		fail(cfg, req, res, "message fd", errno);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		fail(cfg, req, res, "message fd is not a regular file", 0);
		goto out;
	}
	if ((uintmax_t)st.st_size > (uintmax_t)SIZE_MAX / 2) {
		fail(cfg, req, res, "message too large to map", 0);
		goto out;
	}
	len = (size_t)st.st_size;
	seals = fcntl(msgfd, F_GET_SEALS);
	if (len > PIPELINE_COPY_MAX && seals > 0 && (seals & F_SEAL_SHRINK)) {
		/* big and sealed: map it.  Small ones are read into a copy: in a
		 * threaded process each munmap costs a TLB shootdown on every core,
		 * more than copying a few KiB. */
		map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, msgfd, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			fail(cfg, req, res, "mmap message", errno);
			goto out;
		}
	} else if (len > 0) {
		/* not sealed against shrinking: a mapping could SIGBUS the whole
		 * scanner if the sender truncated the file, so read a copy */
		if ((copy = read_copy(msgfd, &len)) == NULL) {
			fail(cfg, req, res, "read message", errno);
			goto out;
		}
	}
have_msg:
	ms.req = req;
	ms.msg = req->msg_inline ? (req->msg != NULL ? req->msg : empty)
	       : map != NULL ? map : copy != NULL ? copy : empty;
	ms.len = len;
	msgscan_parse(&ms);
	prefetch_names(p, &ms);
	client_name(p, req, &ms);

	run_filters(p, &ms, 0);
	auth_results(cfg, &ms);

	/* the findings move into the result */
	res->symbols = ms.symbols;
	res->nsymbols = ms.nsymbols;
	res->edits = ms.edits;
	res->nedits = ms.nedits;
	memcpy(res->client_name, ms.client_name, sizeof(res->client_name));
	ms.symbols = NULL;
	ms.nsymbols = 0;
	ms.edits = NULL;
	ms.nedits = 0;
	for (i = 0; i < res->nsymbols; i++)
		score += res->symbols[i].score;
	/* three decimals: 1.1 + 1.2 + 2.7 is 5.0 and tags at 5.0 */
	res->score = round(score * 1000) / 1000;

	memset(&in, 0, sizeof(in));
	in.direction = req->direction;
	in.hard = ms.hard;
	in.hard_text = ms.hard_text[0] ? ms.hard_text : NULL;
	in.hard_by = ms.hard_by[0] ? ms.hard_by : NULL;
	for (i = 0; i < ms.nfields; i++)
		if (strcasecmp(ms.fields[i].name, "Subject") == 0) {
			in.subject = ms.fields[i].raw;
			in.subject_len = ms.fields[i].raw_len;
			break;
		}
	policy_decide(cfg, &in, res, why, sizeof(why));
	/* a quarantined message leaves once the admin releases it, from the
	 * MTA's hold queue (postsuper -H, no milter on that way: the milter
	 * replaces the body before the hold) or from our store (`quarantine
	 * release`, which applies res->edits and sends the body stored for
	 * it): as the accept path would have sent it, so with the body a
	 * filter rewrote (a banned attachment replaced, not released with it
	 * as a false-positive spam; until session 18 it was) and signed now,
	 * over the tagged fields it is held with and that body */
	if ((res->action == MW_ACCEPT || res->action == MW_TAG || res->action == MW_QUARANTINE)
	    && ms.new_rest != NULL)
		new_body(cfg, req, &ms, res, res->action != MW_QUARANTINE || req->mta_quarantine);
	if (res->action == MW_ACCEPT || res->action == MW_TAG || res->action == MW_QUARANTINE)
		finalize(p, &ms, res);

	if (res->action == MW_QUARANTINE && !(flags & PIPELINE_DRY_RUN)) {
		if (req->mta_quarantine)
			/* the front end has the MTA hold it (smfi_quarantine): a
			 * copy here would be a second one to release */
			slog(req->session_id, LOG_INFO, "scan id=%llu quarantined in the MTA's hold queue: %s",
			    (unsigned long long)req->id, why);
		else if (cfg->quarantine_dir[0] == '\0')
			fail(cfg, req, res, "quarantine: quarantine_dir is not set", 0);
		else if (deadline_left_ms() == 0)
			/* the front end answers 451 about now (or has): a copy kept
			 * would be one the sender was told was not taken, and its
			 * retry a second one */
			fail(cfg, req, res, "quarantine: out of time before the quarantine store", 0);
		else if (store_quarantined(p, &ms, res, why) < 0) {
			char what[600];

			int err = errno;

			snprintf(what, sizeof(what), "quarantine store %s", cfg->quarantine_dir);
			fail(cfg, req, res, what, err);
			/* a full disk is ours, not a policy verdict: say so (RFC
			 * 3463 4.3.1) rather than tempfail_reply's usual 4.7.1 */
			if (err == ENOSPC || err == EDQUOT)
				snprintf(res->reply, sizeof(res->reply), "%s",
				    "452 4.3.1 Insufficient system storage, try again later");
		} else
			slog(req->session_id, LOG_INFO, "scan id=%llu quarantined as %s: %s",
			    (unsigned long long)req->id, res->quarantine_id, why);
	}
	/* what counts only messages taken learns whether this one was: told
	 * 250 (a quarantine store that failed made it a tempfail above) and
	 * answered in time (past the deadline the front end answers 451
	 * about now, as for the quarantine store above).  "mailwarden scan"
	 * (a dry run) counts as the message would, as its greylisting does */
	msgscan_outcome(&ms, res->action <= MW_DISCARD && deadline_left_ms() != 0);
out:
	if (map != NULL)
		munmap(map, len);
	free(copy);
	msgscan_free(&ms);
	res->scan_ms = ms_since(&t0);
}

void pipeline_scan_ex(struct pipeline *p, const struct scan_request *req, int msgfd,
                      unsigned flags, struct scan_result *res)
{
	unsigned budget = req->timeout_ms ? req->timeout_ms : p->cfg->scan_timeout;
	long long start = scanstale_start_ms(req, deadline_now_ms()), took;

	/* the front end gives up after budget ms from when it sent the
	 * request (time unread in the socket counts: scanstale.h): the
	 * filters' waits end a margin before, so that the verdict from what
	 * did answer gets there; a scan that ends past it gives back what it
	 * took (msgscan_outcome) */
	deadline_begin(start + budget - deadline_margin_ms(budget));
	deadline_watch_scan(req->session_id, (unsigned long long)req->id, start, start + budget);
	scan_timed(p, req, msgfd, flags, res);
	if (deadline_report(res->timed_out, sizeof(res->timed_out)) > 0)
		slog(req->session_id, LOG_WARNING, "scan id=%llu: out of time: %s (the front end "
		    "waits %u ms); the verdict is from what answered", (unsigned long long)req->id,
		    res->timed_out, budget);
	took = deadline_now_ms() - start;
	if (took >= (long long)budget)
		slog(req->session_id, LOG_WARNING, "scan id=%llu: done after %lld ms, past the front "
		    "end's %u ms: it has given up on it", (unsigned long long)req->id, took, budget);
	deadline_end();
}
