/* auditcap.c - the bounds of one audit record; see auditcap.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/auditcap.h"
#include "proxy/jsonw.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

void audit_text(struct jsonw *w, const char *s, size_t max)
{
	if (s == NULL)
		s = "";
	jsonw_str_max(w, s, strlen(s), max);
}

void audit_symbols(struct jsonw *w, const struct scan_symbol *syms, size_t n)
{
	size_t start = w->out->len, unlisted = 0;

	jsonw_key(w, "symbols");
	jsonw_array_begin(w);
	for (size_t i = 0; i < n; i++) {
		size_t before = w->out->len;
		unsigned char first = w->first[w->depth];

		jsonw_object_begin(w);
		jsonw_key(w, "name");
		audit_text(w, syms[i].name, AUDIT_TEXT_MAX);
		jsonw_key(w, "score");
		jsonw_num(w, syms[i].score, 3);
		if (syms[i].desc != NULL) {
			jsonw_key(w, "description");
			audit_text(w, syms[i].desc, AUDIT_TEXT_MAX);
		}
		jsonw_key(w, "filter");
		audit_text(w, syms[i].filter, AUDIT_TEXT_MAX);
		jsonw_object_end(w);
		if (w->out->len - start > AUDIT_SYMBOLS_MAX) {
			/* taken back: the symbols past the room are counted */
			w->out->len = before;
			w->out->data[before] = '\0';
			w->first[w->depth] = first;
			unlisted++;
		}
	}
	jsonw_array_end(w);
	if (unlisted > 0) {
		jsonw_key(w, "symbols_unlisted");
		jsonw_int(w, (int64_t)unlisted);
	}
}

void audit_timed_out(struct jsonw *w, const char *list, size_t max)
{
	jsonw_object_begin(w);
	for (const char *p = list; *p; ) {
		size_t len = strcspn(p, " "), k = strcspn(p, "=");
		char key[64];

		if (k < len) {
			snprintf(key, sizeof(key), "%.*s", (int)(k < 63 ? k : 63), p);
			jsonw_key(w, key);
			jsonw_str_max(w, p + k + 1, len - k - 1, max);
		}
		p += len;
		p += strspn(p, " ");
	}
	jsonw_object_end(w);
}

/* dkim_sign_list - the entries "what=D/S" of list as "d=D s=S" in an
 * array under key what, if there are any; their count */
static size_t dkim_sign_list(struct jsonw *w, const char *list, const char *what)
{
	size_t wl = strlen(what), n = 0;

	for (const char *p = list; *p; ) {
		size_t len = strcspn(p, " ");

		if (len > wl + 1 && strncmp(p, what, wl) == 0 && p[wl] == '=') {
			const char *v = p + wl + 1, *slash = memchr(v, '/', len - wl - 1);
			char e[600];

			if (n++ == 0) {
				jsonw_key(w, what);
				jsonw_array_begin(w);
			}
			if (slash != NULL)
				snprintf(e, sizeof(e), "d=%.*s s=%.*s", (int)(slash - v), v,
				    (int)(p + len - slash - 1), slash + 1);
			else
				snprintf(e, sizeof(e), "d=%.*s", (int)(len - wl - 1), v);
			jsonw_cstr(w, e);
		}
		p += len;
		p += strspn(p, " ");
	}
	if (n > 0)
		jsonw_array_end(w);
	return n;
}

void audit_dkim_sign(struct jsonw *w, const char *list)
{
	size_t ours;
	const char *p;

	if (list == NULL || list[0] == '\0')
		return;
	jsonw_key(w, "dkim_sign");
	jsonw_object_begin(w);
	ours = dkim_sign_list(w, list, "signed");
	ours += dkim_sign_list(w, list, "kept");
	(void)dkim_sign_list(w, list, "failed");
	if (ours == 0) {
		char why[300];

		if ((p = strstr(list, "nokey=")) != NULL && (p == list || p[-1] == ' '))
			snprintf(why, sizeof(why), "no key for %.*s", (int)strcspn(p + 6, " "), p + 6);
		else if ((p = strstr(list, "badfrom")) != NULL && (p == list || p[-1] == ' '))
			snprintf(why, sizeof(why), "From does not hold exactly one address with a domain");
		else
			snprintf(why, sizeof(why), "signing failed");
		jsonw_key(w, "unsigned");
		jsonw_cstr(w, why);
	}
	if ((p = strstr(list, "more=")) != NULL && (p == list || p[-1] == ' ')) {
		jsonw_key(w, "more");
		jsonw_int(w, strtoll(p + 5, NULL, 10));
	}
	jsonw_object_end(w);
}

/* one entry of the list, as it is written */
static void entry(struct jsonw *w, const struct audit_rcpt *r)
{
	jsonw_object_begin(w);
	jsonw_key(w, "address");
	audit_text(w, r->addr, AUDIT_TEXT_MAX);
	jsonw_key(w, "reply");
	audit_text(w, r->reply, AUDIT_RCPT_REPLY_MAX);
	jsonw_key(w, "accepted");
	jsonw_bool(w, r->accepted);
	jsonw_object_end(w);
}

/* entry_cost - the bytes of r's entry, its comma included */
static size_t entry_cost(struct sbuf *tmp, const struct audit_rcpt *r)
{
	struct jsonw w;

	sbuf_reset(tmp);
	jsonw_init(&w, tmp);
	entry(&w, r);
	return tmp->len + 1;
}

size_t audit_rcpts(struct jsonw *w, const struct audit_rcpt *r, size_t n, size_t before,
                   size_t budget)
{
	unsigned char *listed = xcalloc(n ? n : 1, 1);
	size_t *cost = xcalloc(n ? n : 1, sizeof(*cost));
	size_t used = 2, refused = 0, unlisted = 0, unlisted_acc = 0, i;
	struct sbuf tmp;

	sbuf_init(&tmp, (size_t)-1);
	for (i = 0; i < n; i++)
		cost[i] = entry_cost(&tmp, &r[i]);
	sbuf_free(&tmp);
	/* the accepted ones first: a client's refused recipients (thousands,
	 * long ones) must not push the delivered ones out of the record;
	 * within each kind, the client's order */
	for (i = 0; i < n; i++)
		if (r[i].accepted && used + cost[i] <= budget) {
			listed[i] = 1;
			used += cost[i];
		}
	for (i = 0; i < n; i++)
		if (!r[i].accepted && refused < AUDIT_REFUSED_LISTED && used + cost[i] <= budget) {
			listed[i] = 1;
			used += cost[i];
			refused++;
		}
	jsonw_key(w, "rcpts");
	jsonw_array_begin(w);
	for (i = 0; i < n; i++) {
		if (listed[i]) {
			entry(w, &r[i]);
			continue;
		}
		unlisted++;
		unlisted_acc += r[i].accepted != 0;
	}
	jsonw_array_end(w);
	unlisted += before;
	if (unlisted > 0) {
		jsonw_key(w, "rcpts_unlisted");
		jsonw_int(w, (int64_t)unlisted);
	}
	if (unlisted_acc > 0) {
		jsonw_key(w, "rcpts_unlisted_accepted");
		jsonw_int(w, (int64_t)unlisted_acc);
	}
	free(listed);
	free(cost);
	return unlisted;
}
