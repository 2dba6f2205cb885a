/* scanproto.c - the scanner protocol: scan requests and results, one per
 * SOCK_SEQPACKET packet in a compact binary encoding (see "the binary wire
 * format" below), the message passed as a file descriptor with SCM_RIGHTS
 * or, when small, inline in the packet; and the same requests and results
 * as JSON objects (json-c), for "mailwarden scan" output and for tests.
 *
 * Why this shape: a packet socket keeps message boundaries, so there is no
 * framing to get wrong, and passing the spool's memfd means the message is
 * never copied between processes.  Both sides treat the other as hostile
 * (the scanner parses network text with third-party libraries; the proxy
 * faces the network), so every decoded field is type-checked and bounded,
 * and truncated packets are refused rather than half-read.  The wire went
 * from JSON to binary for speed: json-c's parse and object build were
 * about a tenth of the proxy's and a fifth of the scanner's CPU per
 * message; the checks stayed the same.
 *
 * In both forms any byte but NUL survives a round trip in a string, UTF-8
 * or not.  Whoever prints the JSON for humans or other programs passes it
 * through utf8_sanitize first.
 *
 * JSON form (field names are the struct members):
 *   request: {"id":N,"session_id":"..","listener":"..","direction":
 *             "inbound"|"outbound","client_ip":"..","client_port":N,
 *             "client_name":"..","helo":"..","mail_from":"..",
 *             "mail_params":"..","rcpts":[".."],"rcpt_dsn":[".."] (only
 *             when some recipient has one),"size":N,"auth_user":"..",
 *             "tls":"..","mta_quarantine":true,"timeout_ms":N}
 *   result:  {"id":N,"action":"accept"|..,"score":D,"required":D,
 *             "reply":"..","symbols":[{"name":"..","score":D,"filter":"..",
 *             "desc":".."}],"edits":[{"op":"add"|"remove"|"change"|"remove_at"|"remove_prefix",
 *             "name":"..","value":".."}],"quarantine_id":"..","error":"..",
 *             "scan_ms":D,"timed_out":"..","dkim_sign":".."}
 * Only "id" is required; a missing string is "", a missing number 0.  The
 * JSON transport (scanproto_send/recv*) puts an inline message after the
 * JSON text and one NUL byte.
 *
 * A request's message travels either as the fd (a sealed memfd) or, up to
 * SCANPROTO_INLINE_MAX, inline.  Never both.
 *
 * A request whose encoding passes one packet (every recipient is in it:
 * 1000 of ~300 octets do) travels in a sealed memfd of its own, the packet
 * holding SCANPROTO_BIG_MAGIC, the length, and the descriptors (see
 * scanproto.h "Big envelopes").  Sending it in several packets would have
 * needed reassembly state per connection on the scanner's side, and packets
 * of different requests interleave there (the proxy's loops share one
 * connection); a memfd keeps one request one packet.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/smtp_parse.h"
#include "proxy/spool.h"

#define SP_MAX_STRING   (64 * 1024)  /* any one decoded string */
#define SP_MAX_RCPTS    100000
#define SP_MAX_SYMBOLS  4096
#define SP_MAX_EDITS    4096
#define SP_MAX_FDS      8            /* cmsg room; more is a truncation */
#define SP_JSON_DEPTH   8

static const char *const action_names[MW_ACTION_COUNT] = {
	"accept", "tag", "quarantine", "discard", "tempfail", "reject",
};

static const char *const edit_op_names[] = { "add", "remove", "change", "remove_at", "remove_prefix" };

const char *mw_action_name(enum mw_action a)
{
	if ((unsigned)a >= MW_ACTION_COUNT)
		return "unknown";
	return action_names[a];
}

int mw_action_parse(const char *s, enum mw_action *a)
{
	unsigned i;

	for (i = 0; i < MW_ACTION_COUNT; i++)
		if (strcmp(s, action_names[i]) == 0) {
			*a = (enum mw_action)i;
			return 0;
		}
	return -1;
}

void scan_request_free(struct scan_request *r)
{
	size_t i;

	if (r == NULL)
		return;
	free(r->listener);
	free(r->client_ip);
	free(r->client_name);
	free(r->helo);
	free(r->mail_from);
	free(r->mail_params);
	for (i = 0; i < r->nrcpts; i++) {
		free(r->rcpts[i]);
		if (r->rcpt_dsn != NULL)
			free(r->rcpt_dsn[i]);
	}
	free(r->rcpts);
	free(r->rcpt_dsn);
	free(r->auth_user);
	free(r->tls);
	memset(r, 0, sizeof(*r));
}

void header_edits_free(struct header_edit *edits, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(edits[i].name);
		free(edits[i].value);
	}
	free(edits);
}

void scan_result_free(struct scan_result *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nsymbols; i++)
		free(r->symbols[i].desc);
	free(r->symbols);
	header_edits_free(r->edits, r->nedits);
	if (r->new_body && r->new_body_fd >= 0)
		close(r->new_body_fd);
	memset(r, 0, sizeof(*r));
}

/* --- encoding ------------------------------------------------------------ */

/* add_str - s may be NULL (encoded as ""). */
static void add_str(json_object *o, const char *key, const char *s)
{
	if (s == NULL)
		s = "";
	json_object_object_add(o, key, json_object_new_string_len(s, (int)strnlen(s, SP_MAX_STRING)));
}

/* new_double - a number that prints as people write it ("7.3", not
 * "7.2999999999999998"), and never as NaN/Infinity (not JSON). */
static json_object *new_double(double d)
{
	char buf[64];

	if (!isfinite(d))
		d = 0;
	snprintf(buf, sizeof(buf), "%.15g", d);
	if (strpbrk(buf, ".e") == NULL)
		strcat(buf, ".0");
	return json_object_new_double_s(d, buf);
}

json_object *scan_request_to_json(const struct scan_request *r)
{
	json_object *o = json_object_new_object(), *a;
	size_t i;

	json_object_object_add(o, "id", json_object_new_uint64(r->id));
	add_str(o, "session_id", r->session_id);
	add_str(o, "listener", r->listener);
	add_str(o, "direction", r->direction == MW_OUTBOUND ? "outbound" : "inbound");
	add_str(o, "client_ip", r->client_ip);
	json_object_object_add(o, "client_port", json_object_new_int64(r->client_port));
	add_str(o, "client_name", r->client_name);
	add_str(o, "helo", r->helo);
	add_str(o, "mail_from", r->mail_from);
	add_str(o, "mail_params", r->mail_params);
	a = json_object_new_array_ext((int)(r->nrcpts < SP_MAX_RCPTS ? r->nrcpts : SP_MAX_RCPTS));
	for (i = 0; i < r->nrcpts && i < SP_MAX_RCPTS; i++) {
		const char *s = r->rcpts[i] ? r->rcpts[i] : "";

		json_object_array_add(a, json_object_new_string_len(s, (int)strnlen(s, SP_MAX_STRING)));
	}
	json_object_object_add(o, "rcpts", a);
	if (r->rcpt_dsn != NULL) {
		a = json_object_new_array_ext((int)(r->nrcpts < SP_MAX_RCPTS ? r->nrcpts : SP_MAX_RCPTS));
		for (i = 0; i < r->nrcpts && i < SP_MAX_RCPTS; i++)
			json_object_array_add(a, json_object_new_string(r->rcpt_dsn[i] ? r->rcpt_dsn[i] : ""));
		json_object_object_add(o, "rcpt_dsn", a);
	}
	json_object_object_add(o, "size", json_object_new_uint64(r->size));
	add_str(o, "auth_user", r->auth_user);
	add_str(o, "tls", r->tls);
	if (r->stage == SCAN_ENVELOPE)
		add_str(o, "stage", "envelope");
	if (r->mta_quarantine)
		json_object_object_add(o, "mta_quarantine", json_object_new_boolean(1));
	if (r->timeout_ms)
		json_object_object_add(o, "timeout_ms", json_object_new_uint64(r->timeout_ms));
	return o;
}

json_object *header_edits_to_json(const struct header_edit *edits, size_t n)
{
	json_object *a = json_object_new_array_ext((int)n), *e;
	size_t i;

	for (i = 0; i < n; i++) {
		const struct header_edit *h = &edits[i];

		e = json_object_new_object();
		add_str(e, "op", (unsigned)h->op <= HE_OP_LAST ? edit_op_names[h->op] : "?");
		add_str(e, "name", h->name);
		if (h->op == HE_REMOVE_AT)
			json_object_object_add(e, "index", json_object_new_int64(h->index));
		else if (!header_edit_removes(h->op))
			add_str(e, "value", h->value);
		json_object_array_add(a, e);
	}
	return a;
}

json_object *scan_result_to_json(const struct scan_result *r)
{
	json_object *o = json_object_new_object(), *a, *e;
	size_t i;

	json_object_object_add(o, "id", json_object_new_uint64(r->id));
	add_str(o, "action", mw_action_name(r->action));
	json_object_object_add(o, "score", new_double(r->score));
	json_object_object_add(o, "required", new_double(r->required));
	add_str(o, "reply", r->reply);
	a = json_object_new_array_ext((int)r->nsymbols);
	for (i = 0; i < r->nsymbols; i++) {
		const struct scan_symbol *s = &r->symbols[i];

		e = json_object_new_object();
		add_str(e, "name", s->name);
		json_object_object_add(e, "score", new_double(s->score));
		add_str(e, "filter", s->filter);
		if (s->desc != NULL)
			add_str(e, "desc", s->desc);
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "symbols", a);
	json_object_object_add(o, "edits", header_edits_to_json(r->edits, r->nedits));
	add_str(o, "quarantine_id", r->quarantine_id);
	add_str(o, "error", r->error);
	add_str(o, "client_name", r->client_name);
	json_object_object_add(o, "scan_ms", new_double(r->scan_ms));
	if (r->timed_out[0])
		add_str(o, "timed_out", r->timed_out);
	if (r->dkim_sign[0])
		add_str(o, "dkim_sign", r->dkim_sign);
	json_object_object_add(o, "new_body", json_object_new_boolean(r->new_body != 0));
	return o;
}

/* --- decoding: every field typed and bounded ----------------------------- */

/* str_of - a string value: 1 and *s, *len, or -1 when of another type,
 * longer than max or holding a NUL. */
static int str_of(json_object *v, size_t max, const char **s, size_t *len)
{
	int n;

	if (!json_object_is_type(v, json_type_string))
		return -1;
	n = json_object_get_string_len(v);
	*s = json_object_get_string(v);
	if (n < 0 || (size_t)n > max || *s == NULL || memchr(*s, '\0', (size_t)n) != NULL)
		return -1;
	*len = (size_t)n;
	return 1;
}

/* str_at - the string value of key: 1 and *s, *len when present, 0 when
 * absent, -1 as str_of. */
static int str_at(json_object *j, const char *key, size_t max, const char **s, size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(j, key, &v))
		return 0;
	return str_of(v, max, s, len);
}

/* get_dup - a malloc'ed copy of the string at key ("" when absent). */
static int get_dup(json_object *j, const char *key, size_t max, char **out)
{
	const char *s = "";
	size_t len = 0;

	if (str_at(j, key, max, &s, &len) < 0)
		return -1;
	*out = xstrndup(s, len);
	return 0;
}

/* get_buf - the string at key into a fixed buffer; it must fit whole. */
static int get_buf(json_object *j, const char *key, char *buf, size_t bufsz)
{
	const char *s = "";
	size_t len = 0;

	if (str_at(j, key, bufsz - 1, &s, &len) < 0)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

/* get_u64 - a non-negative integer at key; required or 0 when absent. */
static int get_u64(json_object *j, const char *key, int required, uint64_t *out)
{
	json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(j, key, &v))
		return required ? -1 : 0;
	if (!json_object_is_type(v, json_type_int))
		return -1;
	if (json_object_get_int64(v) < 0)
		return -1;
	*out = json_object_get_uint64(v);
	return 0;
}

/* get_double - a finite number at key (an integer is fine), 0 if absent. */
static int get_double(json_object *j, const char *key, double *out)
{
	json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(j, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return -1;
	*out = json_object_get_double(v);
	return isfinite(*out) ? 0 : -1;
}

/* get_array - the array at key (NULL and 0 when absent), at most max long. */
static int get_array(json_object *j, const char *key, size_t max, json_object **a, size_t *n)
{
	*a = NULL;
	*n = 0;
	if (!json_object_object_get_ex(j, key, a))
		return 0;
	if (!json_object_is_type(*a, json_type_array))
		return -1;
	*n = json_object_array_length(*a);
	return *n <= max ? 0 : -1;
}

static int all_of(const char *s, const char *set)
{
	return s[strspn(s, set)] == '\0';
}

#define UPPER_DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
/* dkim_sign's entries: domains and selectors as dkim_sign checks them */
#define DKIM_SIGN_CHARS LOWER_DIGITS UPPER_DIGITS "-_./= "
#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"

/* field_name_ok - RFC 5322 field name: 1*(%d33-57 / %d59-126). */
static int field_name_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return 0;
	return 1;
}

/* field_value_ok - CR and LF only as folding (CRLF followed by SP or HTAB),
 * so an edit can never end the header section or start a new field. */
static int field_value_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\n')
			return 0;
		if (s[i] == '\r') {
			if (i + 2 >= len || s[i + 1] != '\n' || (s[i + 2] != ' ' && s[i + 2] != '\t'))
				return 0;
			i++;
		}
	}
	return 1;
}

/* reply_ok - an SMTP reply line: printable ASCII, no CR/LF. */
static int reply_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

int scan_request_from_json(json_object *j, struct scan_request *r)
{
	json_object *a;
	const char *s;
	size_t n, len, i;
	uint64_t port, timeout;

	memset(r, 0, sizeof(*r));
	if (j == NULL || !json_object_is_type(j, json_type_object))
		return -1;
	if (get_u64(j, "id", 1, &r->id) < 0
	    || get_buf(j, "session_id", r->session_id, sizeof(r->session_id)) < 0
	    || get_dup(j, "listener", 256, &r->listener) < 0
	    || get_dup(j, "client_ip", 64, &r->client_ip) < 0
	    || get_u64(j, "client_port", 0, &port) < 0 || port > 65535
	    || get_dup(j, "client_name", 1024, &r->client_name) < 0
	    || get_dup(j, "helo", SP_MAX_STRING, &r->helo) < 0
	    || get_dup(j, "mail_from", SP_MAX_STRING, &r->mail_from) < 0
	    || get_dup(j, "mail_params", SP_MAX_STRING, &r->mail_params) < 0
	    || get_u64(j, "size", 0, &r->size) < 0
	    || get_dup(j, "auth_user", SP_MAX_STRING, &r->auth_user) < 0
	    || get_dup(j, "tls", 1024, &r->tls) < 0
	    || get_u64(j, "timeout_ms", 0, &timeout) < 0 || timeout > UINT32_MAX)
		goto bad;
	r->client_port = (unsigned)port;
	r->timeout_ms = (unsigned)timeout;
	switch (str_at(j, "stage", 16, &s, &len)) {
	case 0:
		r->stage = SCAN_MESSAGE;
		break;
	case 1:
		if (strcmp(s, "envelope") == 0)
			r->stage = SCAN_ENVELOPE;
		else if (strcmp(s, "message") == 0)
			r->stage = SCAN_MESSAGE;
		else
			goto bad;
		break;
	default:
		goto bad;
	}
	if (json_object_object_get_ex(j, "mta_quarantine", &a)) {
		if (!json_object_is_type(a, json_type_boolean))
			goto bad;
		r->mta_quarantine = json_object_get_boolean(a);
	}
	switch (str_at(j, "direction", 16, &s, &len)) {
	case 0:
		r->direction = MW_INBOUND;
		break;
	case 1:
		if (strcmp(s, "inbound") == 0)
			r->direction = MW_INBOUND;
		else if (strcmp(s, "outbound") == 0)
			r->direction = MW_OUTBOUND;
		else
			goto bad;
		break;
	default:
		goto bad;
	}
	if (get_array(j, "rcpts", SP_MAX_RCPTS, &a, &n) < 0)
		goto bad;
	r->rcpts = xcalloc(n ? n : 1, sizeof(char *));
	for (i = 0; i < n; i++) {
		if (str_of(json_object_array_get_idx(a, i), SP_MAX_STRING, &s, &len) != 1)
			goto bad;
		r->rcpts[i] = xstrndup(s, len);
		r->nrcpts = i + 1;
	}
	if (json_object_object_get_ex(j, "rcpt_dsn", &a)) {
		if (get_array(j, "rcpt_dsn", SP_MAX_RCPTS, &a, &n) < 0 || n != r->nrcpts)
			goto bad;
		r->rcpt_dsn = xcalloc(n ? n : 1, sizeof(char *));
		for (i = 0; i < n; i++) {
			if (str_of(json_object_array_get_idx(a, i), SMTP_DSN_RCPT_MAX, &s, &len) != 1
			    || !smtp_dsn_rcpt_params_ok(s))
				goto bad;
			r->rcpt_dsn[i] = xstrndup(s, len);
		}
	}
	return 0;
bad:
	scan_request_free(r);
	return -1;
}

static int symbol_from_json(json_object *e, struct scan_symbol *sym)
{
	const char *s;
	size_t len;

	if (!json_object_is_type(e, json_type_object)
	    || get_buf(e, "name", sym->name, sizeof(sym->name)) < 0
	    || sym->name[0] == '\0' || !all_of(sym->name, UPPER_DIGITS "_")
	    || get_double(e, "score", &sym->score) < 0
	    || get_buf(e, "filter", sym->filter, sizeof(sym->filter)) < 0
	    || !all_of(sym->filter, LOWER_DIGITS "_"))
		return -1;
	switch (str_at(e, "desc", SP_MAX_STRING, &s, &len)) {
	case 1:
		sym->desc = xstrndup(s, len);
		/* FALLTHROUGH */
	case 0:
		return 0;
	default:
		return -1;
	}
}

static int edit_from_json(json_object *e, struct header_edit *h)
{
	const char *s;
	size_t len, k;
	int have;

	if (!json_object_is_type(e, json_type_object)
	    || str_at(e, "op", 16, &s, &len) != 1)
		return -1;
	for (k = 0; k < sizeof(edit_op_names) / sizeof(edit_op_names[0]); k++)
		if (strcmp(s, edit_op_names[k]) == 0)
			break;
	if (k == sizeof(edit_op_names) / sizeof(edit_op_names[0]))
		return -1;
	h->op = (enum header_edit_op)k;
	if (str_at(e, "name", 256, &s, &len) != 1)
		return -1;
	h->name = xstrndup(s, len);
	if (!field_name_ok(h->name))
		return -1;
	if (h->op == HE_REMOVE_AT) {
		json_object *ix;
		int64_t v;

		if (!json_object_object_get_ex(e, "index", &ix)
		    || !json_object_is_type(ix, json_type_int)
		    || (v = json_object_get_int64(ix)) < 0 || v > 100000)
			return -1;
		h->index = (unsigned)v;
	}
	have = str_at(e, "value", SP_MAX_STRING, &s, &len);
	if (have < 0 || header_edit_removes(h->op) != (have == 0))
		return -1;
	if (have) {
		if (!field_value_ok(s, len))
			return -1;
		h->value = xstrndup(s, len);
	}
	return 0;
}

int scan_result_from_json(json_object *j, struct scan_result *r)
{
	json_object *a;
	const char *s;
	size_t n, len, i;

	memset(r, 0, sizeof(*r));
	if (j == NULL || !json_object_is_type(j, json_type_object))
		return -1;
	if (get_u64(j, "id", 1, &r->id) < 0
	    || str_at(j, "action", 16, &s, &len) != 1
	    || mw_action_parse(s, &r->action) < 0
	    || get_double(j, "score", &r->score) < 0
	    || get_double(j, "required", &r->required) < 0
	    || get_buf(j, "reply", r->reply, sizeof(r->reply)) < 0
	    || !reply_ok(r->reply)
	    || get_buf(j, "quarantine_id", r->quarantine_id, sizeof(r->quarantine_id)) < 0
	    || !all_of(r->quarantine_id, LOWER_DIGITS UPPER_DIGITS "-_.")
	    || r->quarantine_id[0] == '.'
	    || get_buf(j, "error", r->error, sizeof(r->error)) < 0
	    || get_buf(j, "client_name", r->client_name, sizeof(r->client_name)) < 0
	    || !all_of(r->client_name, LOWER_DIGITS "-.")
	    || get_double(j, "scan_ms", &r->scan_ms) < 0
	    || get_buf(j, "timed_out", r->timed_out, sizeof(r->timed_out)) < 0
	    || !all_of(r->timed_out, LOWER_DIGITS "_= ")
	    || get_buf(j, "dkim_sign", r->dkim_sign, sizeof(r->dkim_sign)) < 0
	    || !all_of(r->dkim_sign, DKIM_SIGN_CHARS))
		goto bad;
	r->new_body_fd = -1;     /* JSON carries the flag, never the body */
	if (json_object_object_get_ex(j, "new_body", &a)) {
		if (!json_object_is_type(a, json_type_boolean))
			goto bad;
		r->new_body = json_object_get_boolean(a);
	}
	if (get_array(j, "symbols", SP_MAX_SYMBOLS, &a, &n) < 0)
		goto bad;
	r->symbols = xcalloc(n ? n : 1, sizeof(*r->symbols));
	for (i = 0; i < n; i++) {
		r->nsymbols = i + 1;
		if (symbol_from_json(json_object_array_get_idx(a, i), &r->symbols[i]) < 0)
			goto bad;
	}
	if (json_object_object_get_ex(j, "edits", &a)
	    && header_edits_from_json(a, &r->edits, &r->nedits) < 0)
		goto bad;
	return 0;
bad:
	scan_result_free(r);
	return -1;
}

int header_edits_check(const struct header_edit *edits, size_t n, size_t max_bytes)
{
	size_t total = 0;

	if (n > SP_MAX_EDITS)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct header_edit *h = &edits[i];
		size_t nl = h->name != NULL ? strlen(h->name) : 0;
		size_t vl = h->value != NULL ? strlen(h->value) : 0;
		int removal = header_edit_removes(h->op);

		if ((unsigned)h->op > HE_OP_LAST || nl == 0 || nl > 256 || !field_name_ok(h->name)
		    || removal != (h->value == NULL) || vl > SP_MAX_STRING
		    || (h->op == HE_REMOVE_AT && h->index > 100000)
		    || (h->value != NULL && !field_value_ok(h->value, vl)))
			return -1;
		total += nl + vl;
		if (total > max_bytes)
			return -1;
	}
	return 0;
}

int header_edits_from_json(json_object *a, struct header_edit **edits, size_t *nedits)
{
	struct header_edit *v;
	size_t n, i;

	*edits = NULL;
	*nedits = 0;
	if (!json_object_is_type(a, json_type_array)
	    || (n = json_object_array_length(a)) > SP_MAX_EDITS)
		return -1;
	v = xcalloc(n ? n : 1, sizeof(*v));
	for (i = 0; i < n; i++)
		if (edit_from_json(json_object_array_get_idx(a, i), &v[i]) < 0) {
			header_edits_free(v, i + 1);
			return -1;
		}
	*edits = v;
	*nedits = n;
	return 0;
}

/* --- the binary wire format ------------------------------------------------
 *
 * What travels on the scanner socket.  Both ends are the same program
 * (the master forks proxy and scanner from one binary), so integers and
 * doubles go in host byte order.  Layout, in this order:
 *   u32 n  4 bytes;  u64, f64  8 bytes;  str  u32 length, then the bytes
 *   request: "MWq1" u64 id, str session_id, str listener, u8 direction
 *            (0 inbound, 1 outbound), str client_ip, u32 client_port,
 *            str client_name, str helo, str mail_from, str mail_params,
 *            u32 nrcpts, nrcpts x str, u64 size, str auth_user, str tls,
 *            u8 stage (0 message, 1 envelope), u8 mta_quarantine (0/1),
 *            u32 timeout_ms, u32 ndsn (0 or nrcpts), ndsn x str (rcpt_dsn);
 *            then, for a message sent
 *            inline, the byte SCANPROTO_INLINE_MARK and the message bytes
 *   result:  "MWr1" u64 id, u8 action, f64 score, f64 required, str reply,
 *            u32 nsymbols, each {str name, f64 score, str filter, u8
 *            has_desc, [str desc]}, u32 nedits, each {u8 op, str name,
 *            [u32 index if remove_at], u8 has_value, [str value]}, str
 *            quarantine_id, str error, str client_name, f64 scan_ms,
 *            str timed_out, str dkim_sign, u8 new_body (0/1: the packet's descriptor is the new body);
 *            nothing after it.
 * The decoders apply the same types, bounds and character checks as the
 * JSON ones above: the scanner does not trust the proxy, nor the proxy
 * the scanner. */

#define REQ_MAGIC "MWq1"
#define RES_MAGIC "MWr1"

static void put_u8(struct sbuf *b, unsigned v)
{
	sbuf_addc(b, (char)v);
}

static void put_u32(struct sbuf *b, uint32_t v)
{
	sbuf_add(b, &v, sizeof(v));
}

static void put_u64(struct sbuf *b, uint64_t v)
{
	sbuf_add(b, &v, sizeof(v));
}

static void put_f64(struct sbuf *b, double d)
{
	if (!isfinite(d))
		d = 0;
	sbuf_add(b, &d, sizeof(d));
}

/* put_str - s may be NULL (""); cut at SP_MAX_STRING like the JSON form */
static void put_str(struct sbuf *b, const char *s)
{
	size_t n = s ? strnlen(s, SP_MAX_STRING) : 0;

	put_u32(b, (uint32_t)n);
	sbuf_add(b, s ? s : "", n);
}

size_t scan_request_rcpt_bytes(const char *rcpt)
{
	return 4 + (rcpt ? strnlen(rcpt, SP_MAX_STRING) : 0);
}

void scan_request_encode(struct sbuf *out, const struct scan_request *r)
{
	size_t i, n = r->nrcpts < SP_MAX_RCPTS ? r->nrcpts : SP_MAX_RCPTS;

	sbuf_add(out, REQ_MAGIC, 4);
	put_u64(out, r->id);
	put_str(out, r->session_id);
	put_str(out, r->listener);
	put_u8(out, r->direction == MW_OUTBOUND);
	put_str(out, r->client_ip);
	put_u32(out, r->client_port);
	put_str(out, r->client_name);
	put_str(out, r->helo);
	put_str(out, r->mail_from);
	put_str(out, r->mail_params);
	put_u32(out, (uint32_t)n);
	for (i = 0; i < n; i++)
		put_str(out, r->rcpts[i]);
	put_u64(out, r->size);
	put_str(out, r->auth_user);
	put_str(out, r->tls);
	put_u8(out, r->stage == SCAN_ENVELOPE);
	put_u8(out, r->mta_quarantine != 0);
	put_u32(out, r->timeout_ms);
	put_u32(out, r->rcpt_dsn != NULL ? (uint32_t)n : 0);
	for (i = 0; r->rcpt_dsn != NULL && i < n; i++)
		put_str(out, r->rcpt_dsn[i]);
	put_u64(out, r->sent_ms > 0 ? (uint64_t)r->sent_ms : 0);
}

void scan_result_encode(struct sbuf *out, const struct scan_result *r)
{
	size_t i;

	sbuf_add(out, RES_MAGIC, 4);
	put_u64(out, r->id);
	put_u8(out, (unsigned)r->action < MW_ACTION_COUNT ? (unsigned)r->action : 0xff);
	put_f64(out, r->score);
	put_f64(out, r->required);
	put_str(out, r->reply);
	put_u32(out, (uint32_t)r->nsymbols);
	for (i = 0; i < r->nsymbols; i++) {
		const struct scan_symbol *s = &r->symbols[i];

		put_str(out, s->name);
		put_f64(out, s->score);
		put_str(out, s->filter);
		put_u8(out, s->desc != NULL);
		if (s->desc != NULL)
			put_str(out, s->desc);
	}
	put_u32(out, (uint32_t)r->nedits);
	for (i = 0; i < r->nedits; i++) {
		const struct header_edit *h = &r->edits[i];

		put_u8(out, (unsigned)h->op <= HE_OP_LAST ? (unsigned)h->op : 0xff);
		put_str(out, h->name);
		if (h->op == HE_REMOVE_AT)
			put_u32(out, h->index);
		put_u8(out, !header_edit_removes(h->op));
		if (!header_edit_removes(h->op))
			put_str(out, h->value);
	}
	put_str(out, r->quarantine_id);
	put_str(out, r->error);
	put_str(out, r->client_name);
	put_f64(out, r->scan_ms);
	put_str(out, r->timed_out);
	put_str(out, r->dkim_sign);
	put_u8(out, r->new_body != 0);
}

/* A reader over a received packet: any read past the end, or any check
 * that fails, sets bad; later reads then return zeros. */
struct rd {
	const unsigned char *p;
	size_t left;
	int bad;
};

static int take(struct rd *r, void *dst, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = 1;
		memset(dst, 0, n);
		return -1;
	}
	memcpy(dst, r->p, n);
	r->p += n;
	r->left -= n;
	return 0;
}

static unsigned get8(struct rd *r)
{
	unsigned char v;

	take(r, &v, 1);
	return v;
}

static uint32_t get32(struct rd *r)
{
	uint32_t v;

	take(r, &v, sizeof(v));
	return v;
}

static uint64_t get64(struct rd *r)
{
	uint64_t v;

	take(r, &v, sizeof(v));
	return v;
}

/* getf - a finite double */
static double getf(struct rd *r)
{
	double d;

	take(r, &d, sizeof(d));
	if (!isfinite(d)) {
		r->bad = 1;
		return 0;
	}
	return d;
}

/* getflag - a 0/1 byte */
static int getflag(struct rd *r)
{
	unsigned v = get8(r);

	if (v > 1)
		r->bad = 1;
	return v == 1;
}

/* getstr - a string of at most max bytes without NUL: a pointer into the
 * packet (not terminated) and its length */
static const char *getstr(struct rd *r, size_t max, size_t *len)
{
	uint32_t n = get32(r);
	const char *s;

	*len = 0;
	if (r->bad || n > max || n > r->left
	    || memchr(r->p, '\0', n) != NULL) {
		r->bad = 1;
		return "";
	}
	s = (const char *)r->p;
	r->p += n;
	r->left -= n;
	*len = n;
	return s;
}

static char *getdup(struct rd *r, size_t max)
{
	size_t len;
	const char *s = getstr(r, max, &len);

	return xstrndup(s, len);
}

/* getbuf - into a fixed buffer; it must fit whole */
static void getbuf(struct rd *r, char *buf, size_t bufsz)
{
	size_t len;
	const char *s = getstr(r, bufsz - 1, &len);

	memcpy(buf, s, len);
	buf[len] = '\0';
}

static int magic(struct rd *r, const char *m)
{
	if (r->left < 4 || memcmp(r->p, m, 4) != 0)
		return -1;
	r->p += 4;
	r->left -= 4;
	return 0;
}

int scan_request_decode(const void *p, size_t len, struct scan_request *r, size_t *used)
{
	struct rd rd = { p, len, 0 };
	uint32_t port, n, i;

	memset(r, 0, sizeof(*r));
	*used = 0;
	if (magic(&rd, REQ_MAGIC) < 0)
		return -1;
	r->id = get64(&rd);
	getbuf(&rd, r->session_id, sizeof(r->session_id));
	r->listener = getdup(&rd, 256);
	r->direction = getflag(&rd) ? MW_OUTBOUND : MW_INBOUND;
	r->client_ip = getdup(&rd, 64);
	port = get32(&rd);
	r->client_port = port;
	r->client_name = getdup(&rd, 1024);
	r->helo = getdup(&rd, SP_MAX_STRING);
	r->mail_from = getdup(&rd, SP_MAX_STRING);
	r->mail_params = getdup(&rd, SP_MAX_STRING);
	n = get32(&rd);
	/* each recipient takes 4 bytes at least: a count the packet cannot
	 * hold is refused before anything is allocated for it */
	if (rd.bad || port > 65535 || n > SP_MAX_RCPTS || n > rd.left / 4)
		goto bad;
	r->rcpts = xcalloc(n ? n : 1, sizeof(char *));
	for (i = 0; i < n && !rd.bad; i++) {
		r->rcpts[i] = getdup(&rd, SP_MAX_STRING);
		r->nrcpts = i + 1;
	}
	r->size = get64(&rd);
	r->auth_user = getdup(&rd, SP_MAX_STRING);
	r->tls = getdup(&rd, 1024);
	r->stage = getflag(&rd) ? SCAN_ENVELOPE : SCAN_MESSAGE;
	r->mta_quarantine = getflag(&rd);
	r->timeout_ms = get32(&rd);
	n = get32(&rd);
	if (rd.bad || (n != 0 && n != r->nrcpts) || n > rd.left / 4)
		goto bad;
	if (n > 0) {
		r->rcpt_dsn = xcalloc(n, sizeof(char *));
		for (i = 0; i < n && !rd.bad; i++) {
			r->rcpt_dsn[i] = getdup(&rd, SMTP_DSN_RCPT_MAX);
			if (!rd.bad && !smtp_dsn_rcpt_params_ok(r->rcpt_dsn[i]))
				rd.bad = 1;
		}
	}
	{
		uint64_t sent = get64(&rd);

		/* a time no clock of ours shows (2^62 ms: 146 million years)
		 * is no time: unknown */
		r->sent_ms = sent < ((uint64_t)1 << 62) ? (long long)sent : 0;
	}
	if (rd.bad)
		goto bad;
	*used = len - rd.left;
	return 0;
bad:
	scan_request_free(r);
	memset(r, 0, sizeof(*r));
	return -1;
}

static int symbol_decode(struct rd *rd, struct scan_symbol *sym)
{
	getbuf(rd, sym->name, sizeof(sym->name));
	sym->score = getf(rd);
	getbuf(rd, sym->filter, sizeof(sym->filter));
	if (getflag(rd))
		sym->desc = getdup(rd, SP_MAX_STRING);
	if (rd->bad || sym->name[0] == '\0' || !all_of(sym->name, UPPER_DIGITS "_")
	    || !all_of(sym->filter, LOWER_DIGITS "_"))
		return -1;
	return 0;
}

static int edit_decode(struct rd *rd, struct header_edit *h)
{
	unsigned op = get8(rd);
	const char *s;
	size_t len;
	int have;

	if (rd->bad || op > HE_OP_LAST)
		return -1;
	h->op = (enum header_edit_op)op;
	h->name = getdup(rd, 256);
	if (rd->bad || !field_name_ok(h->name))
		return -1;
	if (h->op == HE_REMOVE_AT) {
		uint32_t ix = get32(rd);

		if (rd->bad || ix > 100000)
			return -1;
		h->index = ix;
	}
	have = getflag(rd);
	if (rd->bad || header_edit_removes(h->op) == have)
		return -1;
	if (have) {
		s = getstr(rd, SP_MAX_STRING, &len);
		if (rd->bad || !field_value_ok(s, len))
			return -1;
		h->value = xstrndup(s, len);
	}
	return 0;
}

int scan_result_decode(const void *p, size_t len, struct scan_result *r)
{
	struct rd rd = { p, len, 0 };
	unsigned action;
	uint32_t n, i;

	memset(r, 0, sizeof(*r));
	if (magic(&rd, RES_MAGIC) < 0)
		return -1;
	r->id = get64(&rd);
	action = get8(&rd);
	if (action >= MW_ACTION_COUNT)
		goto bad;
	r->action = (enum mw_action)action;
	r->score = getf(&rd);
	r->required = getf(&rd);
	getbuf(&rd, r->reply, sizeof(r->reply));
	if (rd.bad || !reply_ok(r->reply))
		goto bad;
	n = get32(&rd);
	/* a symbol takes 18 bytes at least (a 1-byte name, a score, an empty
	 * filter, no desc: str 5 + f64 8 + str 4 + u8 1), an edit 6.  The
	 * bound was 22, which refused valid results whose symbols are short
	 * (found by fuzz_scanwire's round trip). */
	if (rd.bad || n > SP_MAX_SYMBOLS || n > rd.left / 18)
		goto bad;
	r->symbols = xcalloc(n ? n : 1, sizeof(*r->symbols));
	for (i = 0; i < n; i++) {
		r->nsymbols = i + 1;
		if (symbol_decode(&rd, &r->symbols[i]) < 0)
			goto bad;
	}
	n = get32(&rd);
	if (rd.bad || n > SP_MAX_EDITS || n > rd.left / 6)
		goto bad;
	r->edits = xcalloc(n ? n : 1, sizeof(*r->edits));
	for (i = 0; i < n; i++) {
		r->nedits = i + 1;
		if (edit_decode(&rd, &r->edits[i]) < 0)
			goto bad;
	}
	getbuf(&rd, r->quarantine_id, sizeof(r->quarantine_id));
	getbuf(&rd, r->error, sizeof(r->error));
	getbuf(&rd, r->client_name, sizeof(r->client_name));
	r->scan_ms = getf(&rd);
	getbuf(&rd, r->timed_out, sizeof(r->timed_out));
	getbuf(&rd, r->dkim_sign, sizeof(r->dkim_sign));
	r->new_body = getflag(&rd);
	r->new_body_fd = -1;
	if (rd.bad || rd.left != 0
	    || !all_of(r->quarantine_id, LOWER_DIGITS UPPER_DIGITS "-_.")
	    || r->quarantine_id[0] == '.'
	    || !all_of(r->client_name, LOWER_DIGITS "-.")
	    || !all_of(r->timed_out, LOWER_DIGITS "_= ")
	    || !all_of(r->dkim_sign, DKIM_SIGN_CHARS))
		goto bad;
	return 0;
bad:
	scan_result_free(r);
	memset(r, 0, sizeof(*r));
	return -1;
}

/* --- transport ----------------------------------------------------------- */

static int send_packet(int sock, json_object *j, int fd, const void *body, size_t blen,
                       int has_body);

int scanproto_send(int sock, json_object *j, int fd)
{
	return send_packet(sock, j, fd, NULL, 0, 0);
}

int scanproto_send_msg(int sock, json_object *j, const void *msg, size_t len)
{
	return send_packet(sock, j, -1, msg, len, 1);
}

/* send_iov_fds - one packet of iov[0..niov) (total bytes), fds[0..nfds)
 * (at most 2: a big request's envelope and message) as SCM_RIGHTS. */
static int send_iov_fds(int sock, struct iovec *iov, int niov, size_t total,
                        const int *fds, size_t nfds)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct msghdr msg;
	struct cmsghdr *c;
	ssize_t n;

	if (total > SCANPROTO_MAX_PACKET || nfds > 2) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)niov;
	if (nfds > 0) {
		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EMSGSIZE) {
		/* a packet must fit the send buffer (about 208 KiB by default):
		 * make room for the largest one and try again */
		int sz = SCANPROTO_MAX_PACKET + 64 * 1024;

		if (setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0)
			do
				n = sendmsg(sock, &msg, MSG_NOSIGNAL);
			while (n < 0 && errno == EINTR);
		else
			errno = EMSGSIZE;
	}
	if (n < 0)
		return -1;
	if ((size_t)n != total) {	/* cannot happen on SOCK_SEQPACKET */
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

/* send_iov - send_iov_fds with fd (if >= 0) as the one descriptor */
static int send_iov(int sock, struct iovec *iov, int niov, size_t total, int fd)
{
	return send_iov_fds(sock, iov, niov, total, &fd, fd >= 0 ? 1 : 0);
}

static int send_packet(int sock, json_object *j, int fd, const void *body, size_t blen,
                       int has_body)
{
	static const char nul = '\0';
	struct iovec iov[3];
	const char *text;
	size_t len, total;

	text = json_object_to_json_string_length(j,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (text == NULL) {
		errno = ENOMEM;
		return -1;
	}
	total = len;
	if (has_body)
		total = blen > SCANPROTO_MAX_PACKET ? SIZE_MAX : len + 1 + blen;
	iov[0].iov_base = (void *)(uintptr_t)text;
	iov[0].iov_len = len;
	iov[1].iov_base = (void *)(uintptr_t)&nul;
	iov[1].iov_len = 1;
	iov[2].iov_base = (void *)(uintptr_t)body;
	iov[2].iov_len = blen;
	return send_iov(sock, iov, has_body ? (blen > 0 ? 3 : 2) : 1, total, fd);
}

int scanproto_send_raw(int sock, const void *pkt, size_t len, int fd,
                       const void *body, size_t blen, int has_body)
{
	static const char mark = SCANPROTO_INLINE_MARK;
	struct iovec iov[3];

	iov[0].iov_base = (void *)(uintptr_t)pkt;
	iov[0].iov_len = len;
	iov[1].iov_base = (void *)(uintptr_t)&mark;
	iov[1].iov_len = 1;
	iov[2].iov_base = (void *)(uintptr_t)body;
	iov[2].iov_len = blen;
	if (!has_body)
		return send_iov(sock, iov, 1, len, fd);
	return send_iov(sock, iov, blen > 0 ? 3 : 2,
	    blen > SCANPROTO_MAX_PACKET ? SIZE_MAX : len + 1 + blen, fd);
}

/* take_fds - collect the descriptors of every SCM_RIGHTS message: the
 * first two go to fds[0], fds[1] (else -1), the others are closed.
 * Returns how many came. */
static size_t take_fds(struct msghdr *msg, int fds[2])
{
	struct cmsghdr *c;
	size_t i, nfds, got = 0;
	int f;

	fds[0] = fds[1] = -1;
	for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS
		    || c->cmsg_len < CMSG_LEN(0))
			continue;
		nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfds; i++) {
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < 2)
				fds[got] = f;
			else
				close(f);
			got++;
		}
	}
	return got;
}

static void close_fds(int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* The receive buffer: one per thread, kept (a fresh 256 KiB block per
 * packet cost a malloc_consolidate each time), freed when the thread
 * ends. */
static pthread_key_t recv_key;
static pthread_once_t recv_once = PTHREAD_ONCE_INIT;

static void recv_key_init(void)
{
	(void)pthread_key_create(&recv_key, free);
}

static char *recv_buffer(void)
{
	char *b;

	(void)pthread_once(&recv_once, recv_key_init);
	b = pthread_getspecific(recv_key);
	if (b == NULL) {
		b = xmalloc(SCANPROTO_MAX_PACKET + 1);
		(void)pthread_setspecific(recv_key, b);
	}
	return b;
}

int scanproto_recv(int sock, json_object **out, int *fd)
{
	return scanproto_recv_flags(sock, out, fd, 0);
}

int scanproto_recv_flags(int sock, json_object **out, int *fd, int flags)
{
	return scanproto_recv_msg(sock, out, fd, flags, NULL, NULL);
}

/* recv_raw_fds - scanproto_recv_raw, keeping the first two descriptors
 * in fds[] (-1 each when absent) and their count, extra ones included
 * (closed), in *nfds */
static int recv_raw_fds(int sock, const unsigned char **pkt, size_t *len, int fds[2],
                        size_t *nfds, int flags)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(SP_MAX_FDS * sizeof(int))];
	} cm;
	struct msghdr msg;
	struct iovec iov;
	char *buf;
	ssize_t n;

	*pkt = NULL;
	*len = 0;
	fds[0] = fds[1] = -1;
	*nfds = 0;
	/* one byte more than the limit, so an oversized packet shows */
	buf = recv_buffer();
	memset(&msg, 0, sizeof(msg));
	memset(&cm, 0, sizeof(cm));
	iov.iov_base = buf;
	iov.iov_len = SCANPROTO_MAX_PACKET + 1;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	*nfds = take_fds(&msg, fds);
	if (n == 0) {
		close_fds(fds);
		return 0;
	}
	if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n > SCANPROTO_MAX_PACKET) {
		close_fds(fds);
		errno = EBADMSG;
		return -1;
	}
	*pkt = (const unsigned char *)buf;
	*len = (size_t)n;
	return 1;
}

int scanproto_recv_raw(int sock, const unsigned char **pkt, size_t *len, int *fd, int flags)
{
	int fds[2], r;
	size_t nfds;

	r = recv_raw_fds(sock, pkt, len, fds, &nfds, flags);
	/* one descriptor is all a packet but a big request carries */
	if (fds[1] >= 0)
		close(fds[1]);
	*fd = fds[0];
	return r;
}

int scanproto_recv_msg(int sock, json_object **out, int *fd, int flags,
                       unsigned char **body, size_t *body_len)
{
	struct json_tokener *tok;
	const unsigned char *pkt;
	const char *buf;
	json_object *j;
	size_t n, end, text_len;
	const char *sep;
	int r;

	*out = NULL;
	if (body != NULL) {
		*body = NULL;
		*body_len = 0;
	}
	r = scanproto_recv_raw(sock, &pkt, &n, fd, flags);
	if (r <= 0)
		return r;
	buf = (const char *)pkt;
	/* an inline message follows the first NUL */
	text_len = n;
	sep = memchr(buf, '\0', n);
	if (sep != NULL) {
		if (body == NULL || *fd >= 0)
			goto bad;
		text_len = (size_t)(sep - buf);
	}

	tok = json_tokener_new_ex(SP_JSON_DEPTH);
	if (tok == NULL)
		goto bad;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	j = json_tokener_parse_ex(tok, buf, (int)text_len);
	end = json_tokener_get_parse_end(tok);
	if (j == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(j);
		json_tokener_free(tok);
		goto bad;
	}
	json_tokener_free(tok);
	while (end < text_len && strchr(" \t\r\n", buf[end]) != NULL && buf[end] != '\0')
		end++;
	if (end != text_len || !json_object_is_type(j, json_type_object)) {
		json_object_put(j);
		goto bad;
	}
	if (sep != NULL) {
		size_t blen = n - text_len - 1;

		*body = xmalloc(blen + 1);
		memcpy(*body, sep + 1, blen);
		(*body)[blen] = '\0';
		*body_len = blen;
	}
	*out = j;
	return 1;
bad:
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	errno = EBADMSG;
	return -1;
}

/* --- requests and results on the wire ----------------------------------------- */

/* The encoding buffer: one per thread, kept between packets, freed when
 * the thread ends. */
static pthread_key_t enc_key;
static pthread_once_t enc_once = PTHREAD_ONCE_INIT;

static void enc_free(void *p)
{
	sbuf_free(p);
	free(p);
}

static void enc_key_init(void)
{
	(void)pthread_key_create(&enc_key, enc_free);
}

static struct sbuf *enc_buffer(void)
{
	struct sbuf *b;

	(void)pthread_once(&enc_once, enc_key_init);
	b = pthread_getspecific(enc_key);
	if (b == NULL) {
		b = xmalloc(sizeof(*b));
		/* no ceiling: an encoding that stopped at one would lose the
		 * fields past it and still be sent; the length is checked once
		 * it is whole */
		sbuf_init(b, SIZE_MAX);
		(void)pthread_setspecific(enc_key, b);
	}
	return b;
}

static struct sbuf *enc_reset(void)
{
	struct sbuf *b = enc_buffer();

	sbuf_reset(b);
	return b;
}

/* enc_done - the buffer does not stay large after one big packet */
static void enc_done(void)
{
	struct sbuf *b = enc_buffer();

	if (b->cap > 64 * 1024)
		sbuf_free(b);
}

int scanproto_envelope_fd(const void *enc, size_t len)
{
	if (len > SCANPROTO_MAX_REQUEST) {
		errno = EMSGSIZE;
		return -1;
	}
	return spool_sealed_copy(enc, len);
}

/* The big packet: the magic, then the encoding's length (8 bytes, host
 * order like the rest of the wire). */
#define BIG_PACKET_LEN 12

int scanproto_send_big(int sock, int envfd, size_t len, int msgfd)
{
	unsigned char hdr[BIG_PACKET_LEN];
	uint64_t n = len;
	int fds[2] = { envfd, msgfd };
	struct iovec iov;

	memcpy(hdr, SCANPROTO_BIG_MAGIC, 4);
	memcpy(hdr + 4, &n, sizeof(n));
	iov.iov_base = hdr;
	iov.iov_len = sizeof(hdr);
	return send_iov_fds(sock, &iov, 1, sizeof(hdr), fds, msgfd >= 0 ? 2 : 1);
}

int scanproto_send_request(int sock, const struct scan_request *r, int fd)
{
	struct sbuf *b = enc_reset();
	int rc, saved, own = -1, envfd = -1;

	scan_request_encode(b, r);
	if (fd < 0 && r->stage == SCAN_MESSAGE && r->msg_inline) {
		rc = scanproto_send_raw(sock, b->data, b->len, -1, r->msg, r->msg_len, 1);
		if (rc == 0 || errno != EMSGSIZE)
			goto out;
		/* too big with its envelope for one packet: as a memfd */
		if ((own = spool_sealed_copy((const char *)r->msg, r->msg_len)) < 0)
			goto out;
		fd = own;
	}
	rc = scanproto_send_raw(sock, b->data, b->len, fd, NULL, 0, 0);
	if (rc < 0 && errno == EMSGSIZE) {
		/* the envelope alone passes one packet (many recipients): in a
		 * memfd of its own */
		if ((envfd = scanproto_envelope_fd(b->data, b->len)) >= 0)
			rc = scanproto_send_big(sock, envfd, b->len, fd);
	}
out:
	saved = errno;
	if (own >= 0)
		close(own);
	if (envfd >= 0)
		close(envfd);
	enc_done();
	errno = saved;
	return rc;
}

int scanproto_send_result(int sock, const struct scan_result *r)
{
	struct sbuf *b = enc_reset();
	int rc, saved;

	scan_result_encode(b, r);
	if (b->len > SCANPROTO_MAX_PACKET) {
		enc_done();
		errno = EMSGSIZE;
		return -1;
	}
	rc = scanproto_send_raw(sock, b->data, b->len, r->new_body ? r->new_body_fd : -1, NULL, 0, 0);
	saved = errno;
	enc_done();
	errno = saved;
	return rc;
}

/* A decoded request holds its strings (each a malloc'd copy: its bytes, a
 * NUL, the allocator's header and rounding, at most 40 bytes more than
 * the bytes; and a pointer to it, 8) and what its encoding says of them:
 * SP_STR_COST bounds what one string adds beyond the bytes, whose length
 * the encoding already counts.  Its fixed strings (listener, helo, ...)
 * are SP_FIXED_STRS. */
#define SP_STR_COST   48
#define SP_FIXED_STRS 16

size_t scan_request_mem(const struct scan_request *r, size_t n)
{
	size_t strs = SP_FIXED_STRS + r->nrcpts * (r->rcpt_dsn != NULL ? 2 : 1);

	return sizeof(*r) + n + strs * SP_STR_COST;
}

size_t scanproto_big_read_cost(uint64_t n)
{
	/* every string takes 4 bytes of the encoding at least (its length),
	 * and the decoder takes SP_MAX_RCPTS recipients, as many DSN
	 * parameters */
	uint64_t strs = n / 4;

	if (strs > 2 * (uint64_t)SP_MAX_RCPTS + SP_FIXED_STRS)
		strs = 2 * (uint64_t)SP_MAX_RCPTS + SP_FIXED_STRS;
	if (n > SCANPROTO_MAX_REQUEST)
		n = SCANPROTO_MAX_REQUEST;	/* refused unread anyway */
	return (size_t)(2 * n + strs * SP_STR_COST) + sizeof(struct scan_request);
}

/* envelope_ok - efd is a sealed regular file of exactly n bytes (n within
 * SCANPROTO_MAX_REQUEST), *st its fstat: sealed, it cannot change under
 * us, and (memfd) no read of it blocks */
static int envelope_ok(int efd, uint64_t n, struct stat *st)
{
	const int want = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
	int seals = fcntl(efd, F_GET_SEALS);

	return n > 0 && n <= SCANPROTO_MAX_REQUEST && seals >= 0 && (seals & want) == want
	    && fstat(efd, st) == 0 && S_ISREG(st->st_mode) && (uint64_t)st->st_size == n;
}

/* read_envelope - the encoding in a big request's memfd (envelope_ok), of
 * n bytes: a malloc'd copy, or NULL (errno EBADMSG, or ENOMEM) */
static unsigned char *read_envelope(int efd, uint64_t n)
{
	unsigned char *buf;
	size_t got = 0;
	ssize_t k;

	/* not xmalloc: a front end must not make the scanner abort */
	if ((buf = malloc((size_t)n)) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	while (got < n) {
		k = pread(efd, buf + got, (size_t)n - got, (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			free(buf);
			errno = EBADMSG;
			return NULL;
		}
		got += (size_t)k;
	}
	return buf;
}

/* read_head - a refused big request's id and session id, from the start
 * of its encoding (REQ_MAGIC, u64 id, str session_id) without reading the
 * rest: its answer needs them.  0, or -1 when that start is malformed. */
static int read_head(int efd, uint64_t n, struct scan_request *r)
{
	unsigned char head[4 + 8 + 4 + sizeof(r->session_id) - 1];
	struct rd rd;
	ssize_t k;
	size_t want = n < sizeof(head) ? (size_t)n : sizeof(head);

	do
		k = pread(efd, head, want, 0);
	while (k < 0 && errno == EINTR);
	if (k < 0 || (size_t)k != want)
		return -1;
	rd.p = head;
	rd.left = want;
	rd.bad = 0;
	if (magic(&rd, REQ_MAGIC) < 0)
		return -1;
	r->id = get64(&rd);
	getbuf(&rd, r->session_id, sizeof(r->session_id));
	return rd.bad ? -1 : 0;
}

/* recv_big - the request of a big packet pkt[0..len) (SCANPROTO_BIG_MAGIC):
 * its encoding from fds[0], the message as fds[1] (none for an envelope
 * request).  1 and *r, *fd; 2 when admit refused it (r->id and
 * r->session_id only, fds closed); -1 with errno, fds closed. */
static int recv_big(const unsigned char *pkt, size_t len, int fds[2], size_t nfds,
                    struct scan_request *r, int *fd, scanproto_admit_fn admit, void *arg)
{
	unsigned char *buf;
	struct stat st;
	uint64_t n;
	size_t used;
	int e;

	if (len != BIG_PACKET_LEN || nfds < 1 || nfds > 2)
		goto bad;
	memcpy(&n, pkt + 4, sizeof(n));
	if (!envelope_ok(fds[0], n, &st))
		goto bad;
	/* asked before anything of its size is allocated: the scanner bounds
	 * what big requests hold (each packet may name the same memfd) */
	if (admit != NULL && admit(arg, n, &st) < 0) {
		if (read_head(fds[0], n, r) < 0) {
			memset(r, 0, sizeof(*r));
			goto bad;
		}
		close_fds(fds);
		return 2;
	}
	if ((buf = read_envelope(fds[0], n)) == NULL) {
		e = errno;
		close_fds(fds);
		errno = e;
		return -1;
	}
	close(fds[0]);
	fds[0] = -1;
	/* the copy goes as soon as it is decoded: the two are never held
	 * longer than the decoding */
	if (scan_request_decode(buf, (size_t)n, r, &used) < 0) {
		free(buf);
		goto bad;
	}
	free(buf);
	/* the whole memfd is the request (no inline message), and the
	 * message descriptor is there exactly when the stage wants one */
	if (used != n || (r->stage == SCAN_ENVELOPE ? nfds != 1 : nfds != 2)) {
		scan_request_free(r);
		memset(r, 0, sizeof(*r));
		goto bad;
	}
	*fd = fds[1];
	return 1;
bad:
	close_fds(fds);
	errno = EBADMSG;
	return -1;
}

int scanproto_recv_request(int sock, struct scan_request *r, int *fd, unsigned char **msg,
                           int flags)
{
	return scanproto_recv_request_admit(sock, r, fd, msg, flags, NULL, NULL);
}

int scanproto_recv_request_admit(int sock, struct scan_request *r, int *fd, unsigned char **msg,
                                 int flags, scanproto_admit_fn admit, void *arg)
{
	const unsigned char *pkt;
	size_t len, used, blen, nfds;
	int rc, has_body, fds[2];

	memset(r, 0, sizeof(*r));
	*msg = NULL;
	*fd = -1;
	rc = recv_raw_fds(sock, &pkt, &len, fds, &nfds, flags);
	if (rc <= 0)
		return rc;
	if (len >= 4 && memcmp(pkt, SCANPROTO_BIG_MAGIC, 4) == 0)
		return recv_big(pkt, len, fds, nfds, r, fd, admit, arg);
	/* any packet but a big request carries one descriptor at most */
	if (fds[1] >= 0)
		close(fds[1]);
	*fd = fds[0];
	if (scan_request_decode(pkt, len, r, &used) < 0)
		goto bad;
	/* the message: a descriptor, or inline (the mark, then the bytes,
	 * possibly none); exactly one of them for a message request, neither
	 * for an envelope request */
	has_body = len > used;
	if (has_body && pkt[used] != SCANPROTO_INLINE_MARK) {
		scan_request_free(r);
		memset(r, 0, sizeof(*r));
		goto bad;
	}
	blen = has_body ? len - used - 1 : 0;
	if (r->stage == SCAN_ENVELOPE ? (*fd >= 0 || has_body) : (*fd >= 0) == has_body) {
		scan_request_free(r);
		memset(r, 0, sizeof(*r));
		goto bad;
	}
	if (has_body) {
		*msg = xmalloc(blen + 1);
		memcpy(*msg, pkt + used + 1, blen);
		(*msg)[blen] = '\0';
		r->msg = *msg;
		r->msg_len = blen;
		r->msg_inline = 1;
	}
	return 1;
bad:
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	errno = EBADMSG;
	return -1;
}

int scanproto_recv_result(int sock, struct scan_result *r, int flags)
{
	const unsigned char *pkt;
	size_t len;
	int rc, fd;

	memset(r, 0, sizeof(*r));
	rc = scanproto_recv_raw(sock, &pkt, &len, &fd, flags);
	if (rc <= 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (scan_result_decode(pkt, len, r) < 0)
		goto bad;
	if (r->new_body) {
		/* the new body, sealed: the sender can change nothing we relay */
		int seals = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;

		if (seals < 0 || (seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)) !=
		    (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)) {
			scan_result_free(r);
			goto bad;
		}
		r->new_body_fd = fd;
	} else if (fd >= 0)
		close(fd);          /* a result without a new body carries none */
	return 1;
bad:
	if (fd >= 0)
		close(fd);
	errno = EBADMSG;
	return -1;
}
