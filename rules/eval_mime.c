/* eval_mime.c - eval: functions over the MIME structure and the body
 * (SpamAssassin's MIMEEval and BodyEval plugins) and the rule type
 * "mimeheader" (its MIMEHeader plugin).
 *
 * These tests describe SpamAssassin's own view of the MIME tree: which
 * nodes exist (multipart containers and the message itself included), the
 * header fields of each as its parser kept them, the still-encoded body
 * lines of each leaf, and the oddities its parser noticed (a missing
 * header/body separator, an epilogue after the last boundary, a boundary
 * line not followed by header fields...).  GMime repairs exactly these
 * things away, so the tree is walked here the way SpamAssassin's
 * Message.pm walks it: boundaries and part headers only, nothing decoded.
 * Decoded and rendered text comes from the bridge (in->parts, in->body),
 * whose MIME parse lists the same leaves in the same order.
 *
 * Bounds: at most MAX_NODES nodes, nesting at most SA_SUBPARSE levels (as
 * SpamAssassin), header fields per node capped, every loop linear in the
 * message; the tree is built once per message (cache slot EVC_MIME). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "proxy/utf8.h"
#include "rules/eval.h"

#define SA_SUBPARSE        20       /* nesting levels parsed (Message.pm) */
#define SA_MAX_PARTS       1000     /* parts of one multipart (Message.pm) */
#define MAX_NODES          2000     /* nodes of the whole tree */
#define MAX_NODE_HDRS      200      /* header fields kept per node */
#define MAX_BODY_LINE      2048     /* MAX_BODY_LINE_LENGTH */

/* --- SpamAssassin's view of the tree ----------------------------------------- */

struct sa_field {
	char *name;                   /* as written (lower-case compare) */
	char *raw;                    /* value as stored: folding and final "\n" kept */
	char *dec;                    /* unfolded, trimmed (+ "\n" appended on use) */
};

struct sa_node {
	char type[128];               /* parse_content_type's type */
	int parent;                   /* index, -1 for the root */
	int leaf;                     /* no children list */
	int msg_root;                 /* the top-level message (headers from in->headers) */
	struct sa_field *f;
	size_t nf;
	const char *body;             /* leaves: the raw (encoded) body lines */
	size_t body_len;
	int part;                     /* leaves: index in in->parts, -1 if unknown */
};

struct sa_tree {
	struct sa_node *n;
	size_t nn, capn;
	size_t nleaves;
	/* Message.pm parse flags */
	int truncated_header, missing_head_body_separator, missing_mime_head_body_separator;
	int mime_epilogue_exists, missing_mime_headers, mimepart_limit_exceeded;
	size_t pristine_body_length;
	const char *hdr_b, *hdr_e;    /* the message's header block (pristine_headers) */
	int insert_blank;             /* Message.pm puts a blank line before a multipart
	                               * body that does not start with its boundary */
	/* _check_attachments results */
	int checked;
	unsigned base64_count, qp_count, body_html_count, body_text_count, attachment;
	int base64_encoded_text, bad_iso_charset, qp_long_line, multipart_alternative;
	unsigned ascii_text_illegal;
	unsigned long qp_bytes;       /* bytes of quoted-printable lines */
	double multipart_ratio, text_unicode_ratio;
	char charsets[512];           /* mime_html_charsets: every part's charset */
	/* cached values of other functions (-2 = not computed) */
	long base64_length;
	double uppercase;
	double madiff, madiff_html, madiff_text;
	int madiff_done;
	double tvd_vertical;
	int stock_info;
};

static void tree_free(void *p)
{
	struct sa_tree *t = p;
	if (!t) return;
	for (size_t i = 0; i < t->nn; i++) {
		for (size_t k = 0; k < t->n[i].nf; k++) {
			free(t->n[i].f[k].name);
			free(t->n[i].f[k].raw);
			free(t->n[i].f[k].dec);
		}
		free(t->n[i].f);
	}
	free(t->n);
	free(t);
}

static int node_new(struct sa_tree *t, int parent)
{
	if (t->nn >= MAX_NODES) return -1;
	if (t->nn == t->capn) {
		t->capn = t->capn ? t->capn * 2 : 16;
		t->n = realloc(t->n, t->capn * sizeof *t->n);
		if (!t->n) abort();
	}
	struct sa_node *n = &t->n[t->nn];
	memset(n, 0, sizeof *n);
	n->parent = parent;
	n->leaf = 1;
	n->part = -1;
	strcpy(n->type, "text/plain");
	return (int)t->nn++;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (!d) abort();
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* Node->header(): the decoded form is unfolded and trimmed */
static void field_add(struct sa_node *n, const char *name, size_t nl, const char *val, size_t vl)
{
	if (n->nf >= MAX_NODE_HDRS) return;
	if (n->nf % 8 == 0) {
		n->f = realloc(n->f, (n->nf + 8) * sizeof *n->f);
		if (!n->f) abort();
	}
	struct sa_field *f = &n->f[n->nf++];
	f->name = dupn(name, nl);
	f->raw = dupn(val, vl);
	char *d = malloc(vl + 1);
	if (!d) abort();
	size_t j = 0;
	for (size_t i = 0; i < vl; i++) {
		if (val[i] == '\n' && i + 1 < vl && (val[i + 1] == ' ' || val[i + 1] == '\t')) {
			d[j++] = ' ';
			while (i + 1 < vl && (val[i + 1] == ' ' || val[i + 1] == '\t')) i++;
			continue;
		}
		if (val[i] == '\r' && i + 1 < vl && val[i + 1] == '\n') continue;
		d[j++] = val[i];
	}
	while (j && isspace((unsigned char)d[j - 1])) j--;
	size_t s = 0;
	while (s < j && isspace((unsigned char)d[s])) s++;
	memmove(d, d + s, j - s);
	d[j - s] = '\0';
	f->dec = d;
}

/* the last field of that name (SpamAssassin's scalar get_header) */
static const struct sa_field *node_field(const struct sa_node *n, const char *name)
{
	for (size_t k = n->nf; k-- > 0;)
		if (strcasecmp(n->f[k].name, name) == 0) return &n->f[k];
	return NULL;
}

/* a field name as SpamAssassin's part parser recognises one:
 * /^[\041-\071\073-\176]+[ \t]*:/ (ws_ok) or /^[\041-\071\073-\176]+:/ */
static int is_field_line(const char *l, size_t n, int ws_ok)
{
	size_t i = 0;
	while (i < n && l[i] >= 0x21 && l[i] <= 0x7e && l[i] != ':') i++;
	if (i == 0) return 0;
	if (ws_ok) while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
	return i < n && l[i] == ':';
}

/* Util::parse_content_type: type, boundary, charset; *missing if no type */
struct ctype {
	char type[128];
	char boundary[256];
	int has_boundary;
	char charset[64];
	int has_charset;
	int missing;
};

static void param_value(const char *ct, const char *key, char *out, size_t outlen, int *found)
{
	/* /\bKEY\s*=\s*["']?(.*?)["']?(?:;|$)/i */
	size_t kl = strlen(key);
	*found = 0;
	out[0] = '\0';
	for (const char *p = ct; *p; p++) {
		if (strncasecmp(p, key, kl) != 0) continue;
		if (p > ct && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
		const char *q = p + kl;
		while (isspace((unsigned char)*q)) q++;
		if (*q != '=') continue;
		q++;
		while (isspace((unsigned char)*q)) q++;
		if (*q == '"' || *q == '\'') q++;
		const char *e = q;
		while (*e && *e != ';' && *e != '\n') e++;
		if (e > q && (e[-1] == '"' || e[-1] == '\'')) e--;
		size_t n = (size_t)(e - q);
		if (n >= outlen) n = outlen - 1;
		memcpy(out, q, n);
		out[n] = '\0';
		*found = 1;
		return;
	}
}

static void parse_ctype(const char *ct, struct ctype *c)
{
	memset(c, 0, sizeof *c);
	if (!ct || !*ct) { c->missing = 1; ct = "text/plain; charset=us-ascii"; }
	/* boundary: /\bboundary\s*=\s*("[^"]+|[^\s";]+(?=[\s;]|$))/i, quotes dropped */
	for (const char *p = ct; *p && !c->has_boundary; p++) {
		if (strncasecmp(p, "boundary", 8) != 0) continue;
		if (p > ct && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
		const char *q = p + 8;
		while (isspace((unsigned char)*q)) q++;
		if (*q != '=') continue;
		q++;
		while (isspace((unsigned char)*q)) q++;
		size_t n = 0;
		if (*q == '"') {
			q++;
			while (q[n] && q[n] != '"') n++;
			if (!n) continue;
		} else {
			while (q[n] && !isspace((unsigned char)q[n]) && q[n] != '"' && q[n] != ';') n++;
			if (!n || (q[n] && q[n] != ';' && !isspace((unsigned char)q[n]))) continue;
		}
		if (n >= sizeof c->boundary) n = sizeof c->boundary - 1;
		memcpy(c->boundary, q, n);
		c->boundary[n] = '\0';
		c->has_boundary = 1;
	}
	param_value(ct, "charset", c->charset, sizeof c->charset, &c->has_charset);
	if (c->has_charset && !c->charset[0]) c->has_charset = 0;
	while (isspace((unsigned char)*ct)) ct++;
	size_t n = strcspn(ct, ";");
	/* only something/something */
	size_t i = 0, j = 0;
	while (i < n && ct[i] != '/') i++;
	if (i < n) { i++; while (i < n && ct[i] != '/' && !isspace((unsigned char)ct[i])) i++; }
	n = i;
	char t[128];
	for (i = 0; i < n && j + 1 < sizeof t; i++) t[j++] = (char)tolower((unsigned char)ct[i]);
	t[j] = '\0';
	if (!t[0]) c->missing = 1;
	if (!t[0] || (strncmp(t, "text", 4) == 0 && !isalnum((unsigned char)t[4]) && t[4] != '_' &&
	              strcmp(t, "text/x-vcard") != 0 && strcmp(t, "text/calendar") != 0 &&
	              strcmp(t, "text/html") != 0))
		strcpy(t, "text/plain");
	/* tr/\000-\040\177-\377\042\050\051\054\072-\077\100\133-\135//d */
	j = 0;
	for (i = 0; t[i]; i++) {
		unsigned char ch = (unsigned char)t[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),:;<=>?@[\\]", ch)) continue;
		c->type[j++] = (char)ch;
	}
	c->type[j] = '\0';
}

static const char *node_ct(const struct eval_msg *m, const struct sa_node *n)
{
	if (n->msg_root) {
		/* the message's own field, last one, decoded */
		const char *v = NULL;
		for (size_t i = 0; i < m->in->nheaders; i++)
			if (strcasecmp(m->in->headers[i].name, "Content-Type") == 0)
				v = m->in->headers[i].decoded ? m->in->headers[i].decoded : m->in->headers[i].raw;
		return v;
	}
	const struct sa_field *f = node_field(n, "Content-Type");
	return f ? f->dec : NULL;
}

/* line iteration over [p, end): one line with its "\n" */
static size_t line_len(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	return nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
}

/* whether line l (length n) is "--boundary" [ "--" ] followed by whitespace only */
static int is_boundary(const char *l, size_t n, const char *b, size_t bl, int *last)
{
	*last = 0;
	if (n < 2 + bl || l[0] != '-' || l[1] != '-' || memcmp(l + 2, b, bl) != 0) return 0;
	size_t i = 2 + bl;
	if (i + 1 < n + 1 && i + 2 <= n && l[i] == '-' && l[i + 1] == '-') {
		size_t k = i + 2;
		while (k < n && isspace((unsigned char)l[k])) k++;
		if (k == n) { *last = 1; return 1; }
	}
	while (i < n && isspace((unsigned char)l[i])) i++;
	return i == n;
}

static void parse_node(struct eval_msg *m, struct sa_tree *t, int ni, const char *boundary,
                       const char *body, size_t blen, int subparse);

/* a header block at p (Message.pm for a whole message; here used for an
 * embedded message/rfc822): fields into node ni; returns where the body starts */
static const char *parse_msg_header(struct sa_tree *t, int ni, const char *p, const char *end, int top)
{
	const char *hs = NULL, *he = NULL;     /* pending field */
	int errors = 0;
	/* an mbox "From " line is not a header */
	if (end - p > 5 && memcmp(p, "From", 4) == 0 && (p[4] == ' ' || p[4] == '\t')) {
		const char *q = p + 4;
		while (q < end && (*q == ' ' || *q == '\t')) q++;
		if (q < end && *q != ':') p += line_len(p, end);
	}
	if (top) t->hdr_b = p;
	for (;;) {
		int eof = p >= end;
		size_t n = eof ? 1 : line_len(p, end);
		const char *cur = eof ? "\n" : p;
		if (!eof && (cur[0] == ' ' || cur[0] == '\t')) {
			if (!hs) hs = cur;
			he = cur + n;
			p += n;
			continue;
		}
		if (hs) {
			const char *colon = memchr(hs, ':', (size_t)(he - hs));
			if (colon) {
				size_t kl = (size_t)(colon - hs), vl = (size_t)(he - colon - 1);
				while (kl && (hs[kl - 1] == ' ' || hs[kl - 1] == '\t')) kl--;
				if (kl > RULES_MAX_HEADER_KEY) { kl = RULES_MAX_HEADER_KEY; if (top) t->truncated_header = 1; }
				if (vl > RULES_MAX_HEADER_VALUE) { vl = RULES_MAX_HEADER_VALUE; if (top) t->truncated_header = 1; }
				if (!top || 1) field_add(&t->n[ni], hs, kl, colon + 1, vl);
			}
			hs = NULL;
		}
		if (n == 1 && cur[0] == '\n') {
			if (eof) { if (top) t->missing_head_body_separator = 1; return end; }
			return p + 1;
		}
		if (n >= 2 && cur[0] == '-' && cur[1] == '-') {
			if (top) t->missing_head_body_separator = 1;
			return p;
		}
		if (!is_field_line(cur, n, 1) && ++errors > 3) {
			if (top) t->missing_head_body_separator = 1;
			return p;
		}
		hs = cur;
		he = cur + n;
		p += n;
	}
}

/* Message.pm _parse_multipart */
static void parse_multipart(struct eval_msg *m, struct sa_tree *t, int ni, const char *boundary,
                            const char *body, size_t blen, int subparse)
{
	const char *end = body + blen, *p = body;
	size_t bl = strlen(boundary);
	int last;
	int insert_blank = t->insert_blank, opened = 0;
	t->insert_blank = 0;
	t->n[ni].leaf = 0;
	subparse--;
	/* the preamble: up to the opening boundary */
	for (const char *q = body; q < end;) {
		size_t n = line_len(q, end);
		if (n >= 2 && q[0] == '-' && is_boundary(q, n, boundary, bl, &last) && !last) {
			const char *nx = q + n;
			if (nx < end && !is_field_line(nx, line_len(nx, end), 0)) t->missing_mime_headers = 1;
			p = nx;
			opened = 1;
			break;
		}
		q += n;
	}
	int child = -1, in_body = 0, nested = 0;
	const char *hs = NULL, *he = NULL;     /* pending field */
	const char *bs = NULL;                 /* body start of the part */
	unsigned partcnt = 0;
	if (insert_blank && !opened && p < end) {
		/* the inserted blank line ends the (empty) header of the first part */
		child = node_new(t, ni);
		if (child < 0) { t->mimepart_limit_exceeded = 1; return; }
		in_body = 1;
		bs = p;
	}
	while (p < end) {
		size_t n = line_len(p, end);
		const char *nx = p + n;
		int found = n >= 2 && p[0] == '-' && p[1] == '-' && is_boundary(p, n, boundary, bl, &last);
		if (found && nested) {
			found = 0;
			if (last) nested = 0;
		}
		if (child < 0) {
			child = node_new(t, ni);
			if (child < 0) { t->mimepart_limit_exceeded = 1; return; }
			in_body = 0; hs = NULL; bs = NULL;
		}
		if (nx >= end || found) {
			const char *be;
			if (!found) {            /* the last line belongs to the body */
				if (!in_body || !bs) bs = p;
				be = nx;
			} else if (bs && p > bs) {
				be = p - 1;          /* the newline before the boundary is the boundary's */
			} else {
				be = bs = p;
			}
			struct ctype c;
			const struct sa_field *ctf = node_field(&t->n[child], "Content-Type");
			parse_ctype(ctf ? ctf->dec : NULL, &c);
			if (c.missing && strcmp(t->n[ni].type, "multipart/digest") == 0)
				snprintf(t->n[child].type, sizeof t->n[child].type, "message/rfc822");
			else
				snprintf(t->n[child].type, sizeof t->n[child].type, "%s", c.type);
			int missing = c.missing;
			parse_node(m, t, child, c.has_boundary ? c.boundary : boundary, bs, (size_t)(be - bs),
			           subparse * (missing ? -1 : 1));
			child = -1;
			if (found && last) {
				p = nx;
				/* an epilogue: anything but whitespace and dots after the end */
				for (const char *q = p; q < end; q++)
					if (!isspace((unsigned char)*q) && *q != '.') { t->mime_epilogue_exists = 1; break; }
				return;
			}
			if (nx < end && !is_field_line(nx, line_len(nx, end), 0)) t->missing_mime_headers = 1;
			if (++partcnt == SA_MAX_PARTS) { t->mimepart_limit_exceeded = 1; return; }
			p = nx;
			continue;
		}
		if (!in_body) {
			if (is_field_line(p, n, 1)) {
				if (hs) {
					const char *colon = memchr(hs, ':', (size_t)(he - hs));
					const char *v = colon + 1;
					while (v < he && isspace((unsigned char)*v)) v++;
					field_add(&t->n[child], hs, (size_t)(colon - hs), v, (size_t)(he - v));
				}
				hs = p; he = nx;
				p = nx;
				continue;
			}
			if ((p[0] == ' ' || p[0] == '\t') && hs) {
				he = nx;
				p = nx;
				continue;
			}
			if (hs) {
				const char *colon = memchr(hs, ':', (size_t)(he - hs));
				const char *v = colon + 1;
				while (v < he && isspace((unsigned char)*v)) v++;
				field_add(&t->n[child], hs, (size_t)(colon - hs), v, (size_t)(he - v));
				if (strncasecmp(hs, "content-type", 12) == 0 && colon == hs + 12) {
					struct ctype c;
					parse_ctype(t->n[child].f[t->n[child].nf - 1].dec, &c);
					if (c.has_boundary && strcmp(c.boundary, boundary) == 0) nested = 1;
				}
				hs = NULL;
			}
			in_body = 1;
			if (n == 1 || (n == 2 && p[0] == '\r')) {   /* the separator */
				p = nx;
				bs = p;
				continue;
			}
			t->missing_mime_head_body_separator = 1;
			bs = p;
		}
		p = nx;
	}
}

/* parse_body for one node: a multipart is split, a message/rfc822 part
 * parsed as a message, anything else is a leaf.  subparse < 0: the part
 * had no Content-Type (its type set by the parent is kept) */
static void parse_node(struct eval_msg *m, struct sa_tree *t, int ni, const char *boundary,
                       const char *body, size_t blen, int subparse)
{
	int missing = subparse < 0;
	if (missing) subparse = -subparse;
	if (strncmp(t->n[ni].type, "multipart/", 10) == 0 && boundary && subparse > 0) {
		parse_multipart(m, t, ni, boundary, body, blen, subparse);
		return;
	}
	/* _parse_normal */
	if (!missing && strncmp(t->n[ni].type, "multipart/", 10) == 0 && !boundary)
		strcpy(t->n[ni].type, "text/plain");
	t->n[ni].body = body;
	t->n[ni].body_len = blen;
	t->nleaves++;
	const char *type = t->n[ni].type;
	if ((strcmp(type, "message/rfc822") == 0 || strcmp(type, "message/global") == 0) && subparse > 0 && blen) {
		/* only an identity transfer encoding is walked into (base64 or
		 * quoted-printable embedded messages stay leaves here) */
		const struct sa_field *cte = node_field(&t->n[ni], "Content-Transfer-Encoding");
		if (cte && (strcasestr(cte->dec, "base64") || strcasestr(cte->dec, "quoted"))) return;
		int sub = node_new(t, ni);
		if (sub < 0) { t->mimepart_limit_exceeded = 1; return; }
		t->n[ni].leaf = 0;
		t->n[ni].body = NULL;
		t->n[ni].body_len = 0;
		t->nleaves--;
		const char *end = body + blen;
		const char *b = parse_msg_header(t, sub, body, end, 0);
		struct ctype c;
		const struct sa_field *ctf = node_field(&t->n[sub], "Content-Type");
		parse_ctype(ctf ? ctf->dec : NULL, &c);
		snprintf(t->n[sub].type, sizeof t->n[sub].type, "%s", c.type);
		parse_node(m, t, sub, c.has_boundary ? c.boundary : NULL, b, (size_t)(end - b), subparse - 1);
	}
}

static struct sa_tree *tree_get(struct eval_msg *m)
{
	struct sa_tree *t = eval_cache_get(m, EVC_MIME);
	if (t) return t;
	t = calloc(1, sizeof *t);
	if (!t) abort();
	t->base64_length = -2;
	t->uppercase = -2;
	t->tvd_vertical = -2;
	t->stock_info = -2;
	eval_cache_set(m, EVC_MIME, t, tree_free);
	const char *full = m->in->full ? m->in->full : "";
	size_t flen = m->in->full ? m->in->full_len : 0;
	int root = node_new(t, -1);
	t->n[root].msg_root = 1;
	const char *body = parse_msg_header(t, root, full, full + flen, 1);
	t->hdr_e = body > full && body[-1] == '\n' && body - 1 > t->hdr_b && body[-2] == '\n' ? body - 1 : body;
	t->pristine_body_length = (size_t)(full + flen - body);
	/* the message's fields as the bridge decoded them replace ours */
	struct ctype c;
	parse_ctype(node_ct(m, &t->n[root]), &c);
	snprintf(t->n[root].type, sizeof t->n[root].type, "%s", c.type);
	/* a multipart body of more than one line, not starting with its
	 * boundary but with text, gets a blank line first */
	if (strncmp(c.type, "multipart/", 10) == 0) {
		const char *end = full + flen;
		size_t n1 = body < end ? line_len(body, end) : 0;
		int text = 0;
		for (size_t k = 0; k < n1; k++) if (!isspace((unsigned char)body[k])) text = 1;
		size_t bl = strlen(c.boundary);
		int starts = c.has_boundary && n1 >= 2 + bl && body[0] == '-' && body[1] == '-' &&
		             memcmp(body + 2, c.boundary, bl) == 0;
		t->insert_blank = body + n1 < end && text && !starts;
	}
	parse_node(m, t, root, c.has_boundary ? c.boundary : NULL, body, (size_t)(full + flen - body), SA_SUBPARSE);
	/* the leaves in tree order are the bridge's parts in tree order */
	size_t leaf = 0;
	int same = 1;
	for (size_t i = 0; i < t->nn; i++) if (t->n[i].leaf) leaf++;
	same = leaf == m->in->nparts;
	if (same) {
		/* nodes are created depth-first in tree order */
		size_t k = 0;
		for (size_t i = 0; i < t->nn; i++) if (t->n[i].leaf) t->n[i].part = (int)k++;
	}
	return t;
}

/* --- _check_attachments ---------------------------------------------------------- */

static int ascii_charset(const char *cs)
{
	static const char *const names[] = { "us-ascii", "ansi_x3.4-1968", "iso-ir-6", "ansi_x3.4-1986",
		"iso_646.irv:1991", "ascii", "iso646-us", "us", "ibm367", "cp367", "csascii", NULL };
	for (size_t i = 0; names[i]; i++) if (strstr(cs, names[i])) return 1;
	return 0;
}

/* /iso-\S+-\S+\b/i and not /iso-(?:8859-\d{1,2}|2022-(?:jp|kr))\b/ */
static int bad_iso(const char *cs)
{
	const char *p = strstr(cs, "iso-");
	if (!p) return 0;
	for (const char *q = cs; (q = strstr(q, "iso-")); q++) {
		const char *r = q + 4;
		if (strncmp(r, "8859-", 5) == 0 && isdigit((unsigned char)r[5])) {
			size_t d = isdigit((unsigned char)r[6]) ? 2 : 1;
			if (!isalnum((unsigned char)r[5 + d]) && r[5 + d] != '_') return 0;
		}
		if ((strncmp(r, "2022-jp", 7) == 0 || strncmp(r, "2022-kr", 7) == 0) &&
		    !isalnum((unsigned char)r[7]) && r[7] != '_')
			return 0;
	}
	/* iso-X-Y with X, Y non-space runs */
	const char *r = p + 4;
	const char *dash = NULL;
	for (const char *q = r; *q && !isspace((unsigned char)*q); q++)
		if (*q == '-' && q > r && q[1] && !isspace((unsigned char)q[1])) { dash = q; break; }
	return dash != NULL;
}

static void lower_copy(char *out, size_t outlen, const char *s)
{
	size_t j = 0;
	for (; s && s[j] && j + 1 < outlen; j++) out[j] = (char)tolower((unsigned char)s[j]);
	out[j] = '\0';
	while (j && (out[j - 1] == '\n' || out[j - 1] == '\r')) out[--j] = '\0';
}

/* printable characters quoted-printable encoded for no reason:
 * /=(?:09|3[0-9ABCEF]|[2456][0-9A-F]|7[0-9A-E])/g, less a trailing run of
 * encoded blanks (=09/=20 before the line end) */
static unsigned long qp_needless(const char *l, size_t n)
{
	unsigned long q = 0;
	for (size_t i = 0; i + 2 < n; i++) {
		if (l[i] != '=') continue;
		char a = l[i + 1], b = l[i + 2];
		int hexu = (b >= '0' && b <= '9') || (b >= 'A' && b <= 'F');
		if ((a == '0' && b == '9') || (a == '3' && ((b >= '0' && b <= '9') || (b >= 'A' && b <= 'F' && b != 'D'))) ||
		    ((a == '2' || a == '4' || a == '5' || a == '6') && hexu) ||
		    (a == '7' && hexu && b != 'F')) {
			q++;
			i += 2;
		}
	}
	if (!q) return 0;
	size_t e = n;
	while (e > 0 && isspace((unsigned char)l[e - 1])) e--;
	size_t run = 0;
	while (e >= 3 && l[e - 3] == '=' && ((l[e - 2] == '0' && l[e - 1] == '9') || (l[e - 2] == '2' && l[e - 1] == '0'))) {
		run++;
		e -= 3;
	}
	return q >= run ? q - run : 0;
}

static void check_attachments(struct eval_msg *m, struct sa_tree *t)
{
	if (t->checked) return;
	t->checked = 1;
	t->multipart_ratio = 1.0;
	long *part_bytes = calloc(t->nn + 1, sizeof *part_bytes);
	int *part_counted = calloc(t->nn + 1, sizeof *part_counted);
	if (!part_bytes || !part_counted) abort();
	size_t normal = 0, unicode = 0;
	unsigned long qp_bytes = 0, qp_encoded = 0;
	for (size_t i = 0; i < t->nn; i++) {
		struct sa_node *n = &t->n[i];
		struct ctype c;
		parse_ctype(node_ct(m, n), &c);
		const char *ctype = c.type;
		if (strcmp(ctype, "multipart/alternative") == 0) t->multipart_alternative = 1;
		char cte[128], cd[512], cs[64];
		const struct sa_field *f;
		const char *v = NULL;
		if (n->msg_root) v = eval_header_first(m, "Content-Transfer-Encoding");
		else if ((f = node_field(n, "Content-Transfer-Encoding"))) v = f->dec;
		lower_copy(cte, sizeof cte, v);
		v = NULL;
		if (n->msg_root) v = eval_header_first(m, "Content-Disposition");
		else if ((f = node_field(n, "Content-Disposition"))) v = f->dec;
		lower_copy(cd, sizeof cd, v);
		lower_copy(cs, sizeof cs, c.has_charset ? c.charset : "");
		/* _check_mime_header */
		if (strcmp(ctype, "text/html") == 0) t->body_html_count++;
		else if (strncasecmp(ctype, "text", 4) == 0) t->body_text_count++;
		if (strstr(cte, "base64")) t->base64_count++;
		else if (strstr(cte, "quoted-printable")) t->qp_count++;
		if (cd[0] && strstr(cd, "attachment")) t->attachment++;
		if (strncmp(ctype, "text", 4) == 0 && strstr(cte, "base64") && (!cs[0] || ascii_charset(cs)) &&
		    !(cd[0] && (strncmp(cd, "attachment", 10) == 0 || strncmp(cd, "inline", 6) == 0)))
			t->base64_encoded_text = 1;
		if (bad_iso(cs)) t->bad_iso_charset = 1;
		int has_alpha = 0;
		for (const char *q = cs; *q; q++) if (isalpha((unsigned char)*q)) has_alpha = 1;
		if (has_alpha) {
			size_t l = strlen(t->charsets);
			snprintf(t->charsets + l, sizeof t->charsets - l, "%s%s", l ? " " : "", cs);
		}
		if (!n->leaf) continue;
		part_counted[i] = !strstr(cd, "attachment");
		int text_plain = strcmp(ctype, "text/plain") == 0, text_html = strcmp(ctype, "text/html") == 0;
		int is_qp = strcmp(cte, "quoted-printable") == 0;
		int ascii = text_plain && (!c.has_charset || strcmp(cs, "us-ascii") == 0);
		int plain78 = text_plain && (!cte[0] || !strcmp(cte, "7bit") || !strcmp(cte, "8bit"));
		const char *p = n->body, *end = n->body + n->body_len;
		while (p < end) {
			size_t ln = line_len(p, end);
			/* SpamAssassin splits long lines into 2048-byte pieces, a newline added */
			size_t pieces = ln > MAX_BODY_LINE ? (ln - 1) / MAX_BODY_LINE : 0;
			for (size_t k = 0; k <= pieces; k++) {
				const char *l = p + k * MAX_BODY_LINE;
				size_t len = k < pieces ? MAX_BODY_LINE + 1 : ln - k * MAX_BODY_LINE;
				size_t real = k < pieces ? MAX_BODY_LINE : len;
				if (t->multipart_alternative && part_counted[i] && (text_plain || text_html))
					part_bytes[i] += (long)len;
				if (is_qp && !(real >= 6 && memcmp(l, "SPAM: ", 6) == 0)) {
					if (len > 79) t->qp_long_line = 1;
					qp_bytes += len;
					qp_encoded += qp_needless(l, real);
				}
				if (ascii) {
					for (size_t x = 0; x < real; x++) {
						unsigned char ch = (unsigned char)l[x];
						if (ch == 0 || ch == '\r' || ch >= 0x80) { t->ascii_text_illegal++; break; }
					}
				}
				if (plain78) {
					size_t subs = 0;
					for (size_t x = 0; x + 8 <= real; x++)
						if (l[x] == '&' && l[x + 1] == '#' && l[x + 2] == 'x' && isxdigit((unsigned char)l[x + 3]) &&
						    !islower((unsigned char)l[x + 3]) && isxdigit((unsigned char)l[x + 4]) &&
						    !islower((unsigned char)l[x + 4]) && isxdigit((unsigned char)l[x + 5]) &&
						    !islower((unsigned char)l[x + 5]) && isxdigit((unsigned char)l[x + 6]) &&
						    !islower((unsigned char)l[x + 6]) && l[x + 7] == ';') {
							subs++;
							x += 7;
						}
					normal += len - subs * 8;
					unicode += subs;
				}
			}
			p += ln;
		}
	}
	/* SpamAssassin then keeps the count of needlessly encoded bytes
	 * under the name of the part count */
	if (qp_bytes) t->qp_count = (unsigned)qp_encoded;
	t->qp_bytes = qp_bytes;
	if (normal) t->text_unicode_ratio = (double)unicode / (double)normal;
	if (t->multipart_alternative) {
		long text = -1, html = -1;
		for (size_t i = t->nn; i-- > 0;) {
			if (!t->n[i].leaf || !part_counted[i]) continue;
			struct ctype c;
			parse_ctype(node_ct(m, &t->n[i]), &c);
			if (html < 0 && strcmp(c.type, "text/html") == 0) html = part_bytes[i];
			else if (text < 0 && strcmp(c.type, "text/plain") == 0) text = part_bytes[i];
			if (html >= 0 && text >= 0) break;
		}
		if (text >= 0 && html > 0) t->multipart_ratio = (double)text / (double)html;
	}
	free(part_bytes);
	free(part_counted);
}

/* --- ok_locales ---------------------------------------------------------------------- */

/* Only the default "ok_locales all" is supported: with it SpamAssassin's
 * charset tests never fire.  A rule file setting other locales makes
 * the faraway-charset rules not load (see locales_check). */
struct mime_conf {
	int locales_set;              /* ok_locales other than "all" seen */
	struct mh_def *mh;            /* mimeheader definitions */
	size_t nmh;
};

struct mh_def {
	char *name;
	char *hdr;                    /* without :raw */
	int raw, negated;
	char *pattern;
	unsigned flags;
	char *if_unset;
};

static struct mime_conf *conf_of(struct ruleset *rs)
{
	if (!rs->evconf[EVF_MIME]) {
		rs->evconf[EVF_MIME] = calloc(1, sizeof(struct mime_conf));
		if (!rs->evconf[EVF_MIME]) abort();
	}
	return rs->evconf[EVF_MIME];
}

static int locales_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)r;
	struct mime_conf *c = rs->evconf[EVF_MIME];
	if (c && c->locales_set) {
		snprintf(why, whylen, "ok_locales other than \"all\" not supported");
		return -1;
	}
	return 0;
}

/* --- argument checks ------------------------------------------------------------------- */

static int is_number(const char *a)
{
	char *end;
	if (!*a) return 0;
	strtod(a, &end);
	return *end == '\0';
}

/* every argument from the first-th on is a number ('undef' too if undef_ok) */
static int numbers_from(const struct rule *r, unsigned first, int undef_ok, char *why, size_t whylen)
{
	for (unsigned i = first; i < r->ev_argc; i++)
		if (!is_number(eval_arg(r, i)) && !(undef_ok && !strcmp(eval_arg(r, i), "undef"))) {
			snprintf(why, whylen, "argument %u \"%.40s\" is not a number", i + 1, eval_arg(r, i));
			return -1;
		}
	return 0;
}

static int numbers_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	return numbers_from(r, 0, 0, why, whylen);
}

static int numbers_undef_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	return numbers_from(r, 0, 1, why, whylen);
}

/* check_illegal_chars(HEADER, RATIO, COUNT) */
static int illegal_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (!eval_arg(r, 0)[0]) { snprintf(why, whylen, "no header name"); return -1; }
	return numbers_from(r, 1, 0, why, whylen);
}

/* --- MIMEEval -------------------------------------------------------------------------- */

static const char *const mime_keys[] = {
	"mime_base64_count", "mime_base64_encoded_text", "mime_body_html_count", "mime_body_text_count",
	"mime_faraway_charset", "mime_missing_boundary", "mime_multipart_alternative", "mime_multipart_ratio",
	"mime_qp_count", "mime_qp_long_line", "mime_qp_ratio", "mime_ascii_text_illegal",
	"mime_text_unicode_ratio", "mime_bad_iso_charset", "mime_attachment", "mimepart_limit_exceeded",
	"mime_base64_blanks", NULL
};

static int for_mime_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	for (size_t i = 0; mime_keys[i]; i++)
		if (strcmp(eval_arg(r, 0), mime_keys[i]) == 0) return 0;
	snprintf(why, whylen, "unknown key \"%.60s\"", eval_arg(r, 0));
	return -1;
}

static double for_mime(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	check_attachments(m, t);
	const char *k = eval_arg(r, 0);
	if (!strcmp(k, "mime_base64_count")) return t->base64_count > 0;
	if (!strcmp(k, "mime_base64_encoded_text")) return t->base64_encoded_text;
	if (!strcmp(k, "mime_body_html_count")) return t->body_html_count > 0;
	if (!strcmp(k, "mime_body_text_count")) return t->body_text_count > 0;
	if (!strcmp(k, "mime_multipart_alternative")) return t->multipart_alternative;
	if (!strcmp(k, "mime_multipart_ratio")) return t->multipart_ratio != 0;
	if (!strcmp(k, "mime_qp_long_line")) return t->qp_long_line;
	if (!strcmp(k, "mime_ascii_text_illegal")) return t->ascii_text_illegal > 0;
	if (!strcmp(k, "mime_text_unicode_ratio")) return t->text_unicode_ratio != 0;
	if (!strcmp(k, "mime_bad_iso_charset")) return t->bad_iso_charset;
	if (!strcmp(k, "mime_attachment")) return t->attachment > 0;
	if (!strcmp(k, "mimepart_limit_exceeded")) return t->mimepart_limit_exceeded;
	/* SpamAssassin overwrites the part count with the count of needlessly
	 * encoded bytes when there were QP lines; the ratio is 0 without them */
	if (!strcmp(k, "mime_qp_count")) return t->qp_count > 0;
	if (!strcmp(k, "mime_qp_ratio")) return t->qp_bytes && t->qp_count > 0;
	/* mime_faraway_charset (ok_locales all), mime_missing_boundary and
	 * mime_base64_blanks: not computed by SpamAssassin 4 either / never set */
	return 0;
}

static double for_mime_html(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const char *ct = eval_header_first(m, "Content-Type");
	if (ct && strncasecmp(ct, "text/html", 9) == 0) return 1;
	struct sa_tree *t = tree_get(m);
	check_attachments(m, t);
	return t->body_html_count > 0;
}

static double for_mime_html_only(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const char *ct = eval_header_first(m, "Content-Type");
	if (ct && strncasecmp(ct, "text/html", 9) == 0) return 1;
	struct sa_tree *t = tree_get(m);
	check_attachments(m, t);
	return t->body_html_count > 0 && t->body_text_count == 0;
}

static double mime_multipart_ratio(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	check_attachments(m, t);
	return t->multipart_ratio >= eval_arg_num(r, 0, 0) && t->multipart_ratio < eval_arg_num(r, 1, 0);
}

static double ascii_text_illegal(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct sa_tree *t = tree_get(m);
	check_attachments(m, t);
	return t->ascii_text_illegal > 0;
}

static int ratio_arg_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	/* /^\d{0,3}\.\d{1,3}$/ */
	const char *a = eval_arg(r, 0), *p = a;
	size_t d = 0;
	while (isdigit((unsigned char)*p)) { p++; d++; }
	if (d <= 3 && *p == '.') {
		p++;
		size_t f = 0;
		while (isdigit((unsigned char)*p)) { p++; f++; }
		if (f >= 1 && f <= 3 && !*p) return 0;
	}
	snprintf(why, whylen, "ratio \"%.40s\" not of the form d.ddd", a);
	return -1;
}

static double abundant_unicode_ratio(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	check_attachments(m, t);
	return t->text_unicode_ratio >= eval_arg_num(r, 0, 0);
}

static double ma_non_text(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct sa_tree *t = tree_get(m);
	for (size_t i = 0; i < t->nn; i++) {
		if (strcmp(t->n[i].type, "multipart/alternative") != 0 || t->n[i].leaf) continue;
		/* the direct children (find_parts(qr/./, 1, 0): leaves one level down) */
		for (size_t k = i + 1; k < t->nn; k++) {
			if (t->n[k].parent != (int)i || !t->n[k].leaf) continue;
			const char *ty = t->n[k].type;
			if (!strcmp(ty, "multipart/related") || !strcmp(ty, "application/rtf") ||
			    strncasecmp(ty, "text/", 5) == 0)
				continue;
			return 1;
		}
	}
	return 0;
}

static double base64_length(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	if (t->base64_length == -2) {
		long best = 0;
		for (size_t i = 0; i < t->nn; i++) {
			struct sa_node *n = &t->n[i];
			if (!n->leaf || !strcmp(n->type, "application/ics")) continue;
			const char *v = NULL;
			const struct sa_field *f;
			if (n->msg_root) v = eval_header_first(m, "Content-Transfer-Encoding");
			else if ((f = node_field(n, "Content-Transfer-Encoding"))) v = f->dec;
			char cte[64];
			lower_copy(cte, sizeof cte, v);
			if (strcmp(cte, "base64") != 0) continue;
			const char *p = n->body, *end = n->body + n->body_len;
			while (p < end) {
				size_t ln = line_len(p, end);
				long len = ln > MAX_BODY_LINE ? MAX_BODY_LINE + 1 : (long)ln;
				if (len > best) best = len;
				p += ln;
			}
		}
		t->base64_length = best;
	}
	if (r->ev_argc > 1 && t->base64_length > eval_arg_num(r, 1, 0)) return 0;
	return t->base64_length >= eval_arg_num(r, 0, 0);
}

static const char *const parse_flags[] = {
	"truncated_header", "missing_head_body_separator", "missing_mime_head_body_separator",
	"mime_epilogue_exists", "missing_mime_headers", "mimepart_limit_exceeded", NULL
};

static int parse_flags_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	for (size_t i = 0; parse_flags[i]; i++) if (!strcmp(eval_arg(r, 0), parse_flags[i])) return 0;
	snprintf(why, whylen, "unknown parse flag \"%.60s\"", eval_arg(r, 0));
	return -1;
}

static double msg_parse_flags(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	const char *k = eval_arg(r, 0);
	if (!strcmp(k, "truncated_header")) return t->truncated_header;
	if (!strcmp(k, "missing_head_body_separator")) return t->missing_head_body_separator;
	if (!strcmp(k, "missing_mime_head_body_separator")) return t->missing_mime_head_body_separator;
	if (!strcmp(k, "mime_epilogue_exists")) return t->mime_epilogue_exists;
	if (!strcmp(k, "missing_mime_headers")) return t->missing_mime_headers;
	return t->mimepart_limit_exceeded;
}

/* with ok_locales all (the default, the only one supported) never a hit */
static double faraway_charset(struct eval_msg *m, const struct rule *r)
{
	(void)m; (void)r;
	return 0;
}

static double faraway_charset_in_headers(struct eval_msg *m, const struct rule *r)
{
	(void)m; (void)r;
	return 0;
}

/* check_illegal_chars(HEADER, RATIO, COUNT): control and 8-bit bytes in
 * the raw field(s) (ALL: the whole header), unless it is clean UTF-8 */
static double illegal_chars(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	const char *hdr = eval_arg(r, 0);
	size_t hl = strlen(hdr);
	if (hl > 4 && !strcasecmp(hdr + hl - 4, ":raw")) hl -= 4;
	int subject = hl == 7 && !strncasecmp(hdr, "Subject", 7);
	char *str = NULL;
	size_t len = 0;
	if (hl == 3 && !strncmp(hdr, "ALL", 3)) {
		len = (size_t)(t->hdr_e - t->hdr_b);
		str = dupn(t->hdr_b, len);
	} else {
		const struct sa_node *root = &t->n[0];
		size_t cap = 0;
		for (size_t k = 0; k < root->nf; k++)
			if (strlen(root->f[k].name) == hl && !strncasecmp(root->f[k].name, hdr, hl)) cap += strlen(root->f[k].raw);
		str = malloc(cap + 1);
		if (!str) abort();
		for (size_t k = 0; k < root->nf; k++)
			if (strlen(root->f[k].name) == hl && !strncasecmp(root->f[k].name, hdr, hl)) {
				size_t l = strlen(root->f[k].raw);
				memcpy(str + len, root->f[k].raw, l);
				len += l;
			}
		str[len] = '\0';
	}
	double hit = 0;
	int text = 0, high = 0, ctl = 0;
	size_t illegal = 0, exempt = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		if (!isspace(c)) text = 1;
		if (c >= 0x80) high = 1;
		if (c <= 0x08 || c == 0x0b || c == 0x0c || (c >= 0x0e && c <= 0x1f)) ctl = 1;
		if (c <= 0x08 || c == 0x0b || c == 0x0c || (c >= 0x0e && c <= 0x1f) || c >= 0x7f) illegal++;
		if (c == 0xa2 || c == 0xa3 || c == 0xae) exempt++;
	}
	if (text && !(high && !ctl && utf8_valid(str, len))) {
		if (illegal > 0 && subject && exempt == 1) illegal--;
		hit = len && (double)illegal / (double)len >= eval_arg_num(r, 1, 0) && (double)illegal >= eval_arg_num(r, 2, 0);
	}
	free(str);
	return hit;
}

/* charsets that use capitals heavily in their encoded form
 * (CHARSETS_LIKELY_TO_FP_AS_CAPS) */
static int caps_charset(const char *cs)
{
	static const char *const frag[] = { "koi", "jp", "jis", "euc", "gb", "big5", "isoir", "cp1251",
		"windows-1251", "georgianps", "pt154", "tis", NULL };
	char l[128];
	lower_copy(l, sizeof l, cs);
	for (const char *p = l; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') return 0;
	for (size_t i = 0; frag[i]; i++) if (strstr(l, frag[i])) return 1;
	return 0;
}

static double for_uppercase(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	double lo = eval_arg_num(r, 0, 0), hi = eval_arg_num(r, 1, 100);
	if (t->uppercase == -2) {
		t->uppercase = 0;
		check_attachments(m, t);
		int fp = 0;
		const char *ct = eval_header_first(m, "Content-Type");
		if (ct) {
			/* get_charset_from_ct_line */
			const char *p = strcasestr(ct, "charset=");
			if (p) {
				char cs[128];
				p += 8;
				char q = (*p == '"' || *p == '\'') ? *p++ : 0;
				size_t n = 0;
				while (p[n] && n + 1 < sizeof cs && (q ? p[n] != q : !isspace((unsigned char)p[n]))) n++;
				memcpy(cs, p, n);
				cs[n] = '\0';
				fp = caps_charset(cs);
			}
		}
		char buf[sizeof t->charsets];
		memcpy(buf, t->charsets, sizeof buf);
		for (char *s = strtok(buf, " "); s && !fp; s = strtok(NULL, " ")) fp = caps_charset(s);
		if (fp) return 0;
		size_t len = 0, lower = 0, upper = 0;
		for (size_t i = 0; i < m->in->nbody; i++) {
			const char *l = m->in->body[i];
			size_t n = m->in->body_len[i];
			/* only lines with an inner space: /\S\s+\S/ */
			int inner = 0;
			for (size_t k = 1; k + 1 < n && !inner; k++)
				if (isspace((unsigned char)l[k]) && !isspace((unsigned char)l[k - 1])) {
					size_t e = k;
					while (e < n && isspace((unsigned char)l[e])) e++;
					if (e < n) inner = 1;
				}
			if (!inner) continue;
			/* leftover base64: /^(?:[A-Za-z0-9+\/=]{60,76} ){2}/ */
			size_t k = 0;
			int words = 0;
			while (words < 2) {
				size_t s = k;
				while (k < n && (isalnum((unsigned char)l[k]) || l[k] == '+' || l[k] == '/' || l[k] == '=')) k++;
				if (k - s < 60 || k - s > 76 || k >= n || l[k] != ' ') break;
				k++;
				words++;
			}
			if (words == 2) continue;
			len += n;
			for (k = 0; k < n; k++) {
				unsigned char ch = (unsigned char)l[k];
				if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) lower++;
				else if (ch >= 'A' && ch <= 'Z') upper++;
			}
		}
		/* the lower-case letters and digits were deleted before the length counted */
		if (len >= 200 && upper + lower)
			t->uppercase = 100.0 * (double)upper / (double)(upper + lower);
	}
	return t->uppercase > lo && t->uppercase <= hi;
}

/* --- BodyEval ---------------------------------------------------------------------------- */

static double body_length(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	return (double)t->pristine_body_length <= eval_arg_num(r, 0, 0);
}

static double blank_line_ratio(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	double lo = eval_arg_num(r, 0, 0), hi = eval_arg_num(r, 1, 100), minl = eval_arg_num(r, 2, 1);
	if (minl < 1) minl = 1;
	size_t blank = 0, lines = 0;
	for (size_t i = 0; i < t->nn; i++) {
		struct sa_node *n = &t->n[i];
		if (!n->leaf || n->part < 0) continue;
		if (strncmp(n->type, "text", 4) != 0 && strncmp(n->type, "message", 7) != 0) continue;
		if (!strcmp(n->type, "text/calendar")) continue;
		const struct rules_part *p = &m->in->parts[n->part];
		const char *d = p->raw ? p->raw : p->data;
		size_t len = p->raw ? p->raw_len : p->len, s = 0;
		while (s < len) {
			size_t e = s;
			int nonspace = 0;
			while (e < len && d[e] != '\n') { if (!isspace((unsigned char)d[e])) nonspace = 1; e++; }
			lines++;
			if (!nonspace) blank++;
			s = e + 1;
		}
	}
	double ratio = lines < minl ? -1 : 100.0 * (double)blank / (double)lines;
	return (lo == 0 && ratio <= hi) || (ratio > lo && ratio <= hi);
}

static double vertical_words(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	double lo = eval_arg_num(r, 0, 0), hi = eval_arg_num(r, 1, 100);
	if (hi >= 100) hi = 101;
	if (t->tvd_vertical == -2) {
		t->tvd_vertical = -1;
		for (size_t i = 0; i < m->in->nbody; i++) {
			size_t n = m->in->body_len[i], spaces = 0;
			if (n <= 5) continue;
			for (size_t k = 0; k < n; k++) if (m->in->body[i][k] == ' ') spaces++;
			size_t non = n - spaces;
			double pct = (spaces > non || non == 0) ? 100 : (double)(long)(100.0 * (double)spaces / (double)non);
			if (pct > t->tvd_vertical) t->tvd_vertical = pct;
		}
	}
	return t->tvd_vertical >= lo && t->tvd_vertical < hi;
}

/* the rendered text of a leaf (the bridge's part), or NULL */
static const char *leaf_text(const struct eval_msg *m, const struct sa_node *n, size_t *len)
{
	if (n->part < 0) return NULL;
	const struct rules_part *p = &m->in->parts[n->part];
	if (p->is_html && p->rendered) { *len = p->rendered_len; return p->rendered; }
	*len = p->len;
	return p->data;
}

static int stock_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (numbers_from(r, 0, 0, why, whylen) < 0) return -1;
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)
		"^(trad(?:e|ing)date|company(?:name)?|s\\w?(?:t\\w?o\\w?c\\w?k|y\\w?m(?:\\w?b\\w?o\\w?l)?)|"
		"t(?:arget|icker)|(?:opening|current)p(?:rice)?|p(?:rojected|osition)|expectations|weeks?high|"
		"marketperformance|(?:year|week|month|day|price)(?:target|estimates?)|sector|r(?:ecommendation|ating))$",
		PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
	if (!c) { snprintf(why, whylen, "internal pattern"); return -1; }
	r->ev_data = c;
	return 0;
}

static void stock_free(void *p) { pcre2_code_free(p); }

static double stock_info(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	double min = eval_arg_num(r, 0, 0);
	if (t->stock_info == -2) {
		t->stock_info = 0;
		const struct sa_node *first = NULL;
		for (size_t i = 0; i < t->nn && !first; i++)
			if (!strcmp(t->n[i].type, "text/plain")) first = &t->n[i];
		size_t len = 0;
		const char *txt = first ? leaf_text(m, first, &len) : NULL;
		char seen[32][32];
		int nseen = 0;
		for (size_t s = 0; txt && s < len;) {
			size_t e = s;
			while (e < len && txt[e] != '\n') e++;
			/* ^\s*([^:\s][^:\n]{2,29})\s*:\s*\S */
			size_t k = s;
			while (k < e && isspace((unsigned char)txt[k])) k++;
			const char *colon = memchr(txt + k, ':', e - k);
			if (colon && !isspace((unsigned char)txt[k]) && txt[k] != ':') {
				size_t ke = (size_t)(colon - txt);
				/* \s*\S after the colon may reach into the next lines */
				size_t after = ke + 1;
				while (after < len && isspace((unsigned char)txt[after])) after++;
				size_t ks = ke;
				while (ks > k && isspace((unsigned char)txt[ks - 1])) ks--;
				/* the label ([^:\s][^:\n]{2,29}) may take trailing blanks */
				if (after < len && ke - k >= 3 && ks - k <= 30) {
					char word[40];
					size_t w = 0;
					for (size_t x = k; x < ks && w + 1 < sizeof word; x++) {
						char ch = (char)tolower((unsigned char)txt[x]);
						if (ch >= 'a' && ch <= 'z') word[w++] = ch;
					}
					word[w] = '\0';
					if (pcre2_match(r->ev_data, (PCRE2_SPTR)word, w, 0, 0, m->md, m->rs->mctx) > 0) {
						PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
						char hit[32];
						snprintf(hit, sizeof hit, "%.*s", (int)(ov[3] - ov[2]), word + ov[2]);
						int dup = 0;
						for (int q = 0; q < nseen && !dup; q++) dup = !strcmp(seen[q], hit);
						if (!dup && nseen < 32) strcpy(seen[nseen++], hit);
					}
				}
			}
			s = e + 1;
		}
		t->stock_info = nseen;
	}
	return min == 0 || t->stock_info >= min;
}

/* words of a text (split on whitespace, those with a \w character) and
 * how often each occurs: an open-addressing hash table, bounded */
#define WS_MAX 65536              /* distinct words kept per side */
struct wordset { const char **w; size_t *len; unsigned *count; size_t n, cap; };

static uint64_t ws_hash(const char *w, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)w[i]) * 1099511628211ull;
	return h;
}

/* the slot of word w: its own, or the empty one where it belongs */
static size_t ws_slot(const struct wordset *s, const char *w, size_t n)
{
	size_t i = (size_t)ws_hash(w, n) & (s->cap - 1);
	while (s->w[i] && !(s->len[i] == n && memcmp(s->w[i], w, n) == 0)) i = (i + 1) & (s->cap - 1);
	return i;
}

static void ws_add(struct wordset *s, const char *w, size_t n)
{
	if (!s->cap) {
		s->cap = 1024;
		s->w = calloc(s->cap, sizeof *s->w);
		s->len = calloc(s->cap, sizeof *s->len);
		s->count = calloc(s->cap, sizeof *s->count);
		if (!s->w || !s->len || !s->count) abort();
	}
	size_t i = ws_slot(s, w, n);
	if (s->w[i]) { s->count[i]++; return; }
	if (s->n >= WS_MAX) return;
	s->w[i] = w;              /* borrowed from the part's text */
	s->len[i] = n;
	s->count[i] = 1;
	if (++s->n * 2 > s->cap) {      /* grow: rehash */
		struct wordset g = { 0 };
		g.cap = s->cap * 2;
		g.w = calloc(g.cap, sizeof *g.w);
		g.len = calloc(g.cap, sizeof *g.len);
		g.count = calloc(g.cap, sizeof *g.count);
		if (!g.w || !g.len || !g.count) abort();
		for (size_t k = 0; k < s->cap; k++)
			if (s->w[k]) {
				size_t j = ws_slot(&g, s->w[k], s->len[k]);
				g.w[j] = s->w[k]; g.len[j] = s->len[k]; g.count[j] = s->count[k];
			}
		g.n = s->n;
		free(s->w); free(s->len); free(s->count);
		*s = g;
	}
}

static unsigned ws_count(const struct wordset *s, const char *w, size_t n)
{
	if (!s->cap) return 0;
	size_t i = ws_slot(s, w, n);
	return s->w[i] ? s->count[i] : 0;
}

static void ws_words(struct wordset *s, const char *t, size_t len)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && isspace((unsigned char)t[i])) i++;
		size_t b = i;
		int word = 0;
		while (i < len && !isspace((unsigned char)t[i])) {
			if (isalnum((unsigned char)t[i]) || t[i] == '_' || (unsigned char)t[i] >= 0x80) word = 1;
			i++;
		}
		if (word) ws_add(s, t + b, i - b);
	}
}

static void ws_free(struct wordset *s)
{
	free(s->w);
	free(s->len);
	free(s->count);
	memset(s, 0, sizeof *s);
}

static void madiff_compute(struct eval_msg *m, struct sa_tree *t)
{
	if (t->madiff_done) return;
	t->madiff_done = 1;
	/* content_summary: a multipart/alternative of text/html + text/calendar only */
	if (t->nn >= 1 && !strcmp(t->n[0].type, "multipart/alternative")) {
		size_t kids = 0, cal = 0, html = 0;
		for (size_t i = 1; i < t->nn; i++) {
			if (t->n[i].parent != 0) continue;
			kids++;
			if (!strcmp(t->n[i].type, "text/calendar")) cal = 1;
			if (!strcmp(t->n[i].type, "text/html")) html = 1;
		}
		if (kids == 2 && cal && html && !strcmp(t->n[2 < t->nn ? 2 : 0].type, "text/calendar")) return;
	}
	for (size_t i = 0; i < t->nn; i++) {
		if (strncmp(t->n[i].type, "multipart/alternative", 21) != 0 || t->n[i].leaf) continue;
		struct wordset html = { 0 }, text = { 0 };
		int img = 0;
		/* every text leaf below this node */
		for (size_t k = i + 1; k < t->nn; k++) {
			int below = 0;
			for (int a = t->n[k].parent; a >= 0; a = t->n[a].parent) if (a == (int)i) { below = 1; break; }
			if (!below || !t->n[k].leaf || strncmp(t->n[k].type, "text", 4) != 0) continue;
			size_t len;
			const char *tx = leaf_text(m, &t->n[k], &len);
			if (!tx) continue;
			if (!strcmp(t->n[k].type, "text/html")) {
				ws_words(&html, tx, len);
				const struct rules_part *p = &m->in->parts[t->n[k].part];
				if (!html.n && p->data && strcasestr(p->data, "<img")) img = 1;
			} else
				ws_words(&text, tx, len);
		}
		size_t orig = html.n + (html.n == 0 && img);
		if (orig) {
			t->madiff_html = (double)orig;
			t->madiff_text = (double)text.n;
			size_t left = html.n + (html.n == 0 && img);
			for (size_t a = 0; a < html.cap; a++) {
				if (!html.w[a]) continue;
				unsigned tc = ws_count(&text, html.w[a], html.len[a]);
				if (tc && (long)html.count[a] - (long)tc < 1) left--;
			}
			double diff = (double)left / (double)orig * 100.0;
			if (diff > t->madiff) t->madiff = diff;
		}
		ws_free(&html);
		ws_free(&text);
	}
}

static double ma_difference(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	madiff_compute(m, t);
	double min = eval_arg_num(r, 0, 0);
	const char *maxs = eval_arg(r, 1);
	return (min == 0 || t->madiff > min) && (!strcmp(maxs, "undef") || t->madiff <= eval_arg_num(r, 1, 0));
}

static double ma_difference_count(struct eval_msg *m, const struct rule *r)
{
	struct sa_tree *t = tree_get(m);
	madiff_compute(m, t);
	if (!(t->madiff_html > eval_arg_num(r, 1, 0))) return 0;
	return t->madiff_text / t->madiff_html > eval_arg_num(r, 0, 0);
}

/* --- mimeheader ---------------------------------------------------------------------------- */

static void mh_free_def(struct mh_def *d)
{
	free(d->name); free(d->hdr); free(d->pattern); free(d->if_unset);
}

/* mimeheader NAME Header[:raw] =~ /re/flags [if-unset: X] */
static int mimeheader_directive(struct ruleset *rs, const char *args, char *why, size_t whylen)
{
	const char *p = args;
	while (*p == ' ' || *p == '\t') p++;
	const char *nb = p;
	while (isalnum((unsigned char)*p) || *p == '_') p++;
	size_t nl = (size_t)(p - nb);
	if (!nl || (*p != ' ' && *p != '\t')) { snprintf(why, whylen, "bad rule name"); return -1; }
	while (*p == ' ' || *p == '\t') p++;
	const char *hb = p;
	while (*p && *p != ' ' && *p != '\t' && *p != '=' && *p != '!') p++;
	size_t hl = (size_t)(p - hb);
	while (*p == ' ' || *p == '\t') p++;
	if (!hl || !((p[0] == '=' || p[0] == '!') && p[1] == '~')) { snprintf(why, whylen, "expected HEADER =~ /re/"); return -1; }
	int negated = p[0] == '!';
	p += 2;
	while (*p == ' ' || *p == '\t') p++;
	char *pat;
	unsigned fl;
	const char *rest;
	if (perl_re_split(p, &pat, &fl, &rest) < 0) { snprintf(why, whylen, "bad regular expression"); return -1; }
	while (*rest == ' ' || *rest == '\t') rest++;
	char *unset = NULL;
	if (strncmp(rest, "[if-unset:", 10) == 0) {
		const char *u = rest + 10;
		while (*u == ' ' || *u == '\t') u++;
		const char *ue = strrchr(u, ']');
		if (ue) unset = dupn(u, (size_t)(ue - u));
	}
	struct mime_conf *c = conf_of(rs);
	struct mh_def *v = realloc(c->mh, (c->nmh + 1) * sizeof *v);
	if (!v) abort();
	c->mh = v;
	struct mh_def *d = &c->mh[c->nmh++];
	memset(d, 0, sizeof *d);
	d->name = dupn(nb, nl);
	d->raw = hl > 4 && strncasecmp(hb + hl - 4, ":raw", 4) == 0;
	if (d->raw) hl -= 4;
	else if (hl && hb[hl - 1] == ':') hl--;
	d->hdr = dupn(hb, hl);
	d->negated = negated;
	d->pattern = pat;
	d->flags = fl;
	d->if_unset = unset;
	char call[200];
	snprintf(call, sizeof call, "mimeheader_test('%s')", d->name);
	return eval_define_rule(rs, nb, nl, RK_BODY, 1, call, why, whylen) < 0 ? -1 : 1;
}

/* what a rule's test needs, copied: the definitions array may move */
struct mh_data { struct mh_def def; pcre2_code *pc; };

static void mh_data_free(void *p)
{
	struct mh_data *d = p;
	if (d) {
		pcre2_code_free(d->pc);
		mh_free_def(&d->def);
	}
	free(d);
}

static int mimeheader_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	struct mime_conf *c = rs->evconf[EVF_MIME];
	const struct mh_def *d = NULL;
	for (size_t i = c ? c->nmh : 0; i-- > 0;)
		if (!strcmp(c->mh[i].name, eval_arg(r, 0))) { d = &c->mh[i]; break; }
	if (!d) { snprintf(why, whylen, "no mimeheader definition"); return -1; }
	uint32_t opt = 0;
	if (d->flags & RE_I) opt |= PCRE2_CASELESS;
	if (d->flags & RE_M) opt |= PCRE2_MULTILINE;
	if (d->flags & RE_S) opt |= PCRE2_DOTALL;
	if (d->flags & RE_X) opt |= PCRE2_EXTENDED;
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *pc = pcre2_compile((PCRE2_SPTR)d->pattern, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
	if (!pc) {
		PCRE2_UCHAR msg[120];
		pcre2_get_error_message(ec, msg, sizeof msg);
		snprintf(why, whylen, "regular expression refused at offset %zu: %s", (size_t)eo, (char *)msg);
		return -1;
	}
	pcre2_jit_compile(pc, PCRE2_JIT_COMPLETE);
	struct mh_data *md = calloc(1, sizeof *md);
	if (!md) abort();
	md->def = *d;
	md->def.name = dupn(d->name, strlen(d->name));
	md->def.hdr = dupn(d->hdr, strlen(d->hdr));
	md->def.pattern = dupn(d->pattern, strlen(d->pattern));
	md->def.if_unset = d->if_unset ? dupn(d->if_unset, strlen(d->if_unset)) : NULL;
	md->pc = pc;
	r->ev_data = md;
	return 0;
}

/* hits of the pattern in one value, bounded by cap */
static unsigned mh_matches(struct eval_msg *m, const struct mh_data *d, const char *v, size_t len, unsigned cap)
{
	unsigned hits = 0;
	PCRE2_SIZE off = 0;
	while (hits < cap && off <= len) {
		int rc = pcre2_match(d->pc, (PCRE2_SPTR)v, len, off, 0, m->md, m->rs->mctx);
		if (rc <= 0) break;
		hits++;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return hits;
}

/* part_value - a MIME part's field as mimeheader sees it: raw, or
 * unfolded and RFC 2047 decoded (SpamAssassin's Node->header()); *dec
 * holds what the caller frees */
static const char *part_value(const struct eval_msg *m, const struct sa_field *f, int raw, char **dec)
{
	*dec = NULL;
	if (raw)
		return f->raw;
	if (m->in->decode_words != NULL && strstr(f->dec, "=?") != NULL)
		*dec = m->in->decode_words(f->dec);
	return *dec != NULL ? *dec : f->dec;
}

static double mimeheader_test(struct eval_msg *m, const struct rule *r)
{
	const struct mh_data *d = r->ev_data;
	const struct mh_def *def = &d->def;
	struct sa_tree *t = tree_get(m);
	unsigned cap = r->maxhits ? r->maxhits : (r->tflags & TF_MULTIPLE) ? 1000 : 1, hits = 0;
	char *buf = NULL;
	size_t bufcap = 0;
	for (size_t i = 0; i < t->nn && hits < cap; i++) {
		const struct sa_node *n = &t->n[i];
		const char *v = NULL;
		char *part_dec = NULL;          /* v's storage when decoded here */
		int add_nl = 0;
		if (!strcmp(def->hdr, "ALL")) {
			/* every field "Name: value\n" */
			size_t need = 1;
			if (n->msg_root)
				for (size_t k = 0; k < m->in->nheaders; k++)
					need += strlen(m->in->headers[k].name) + strlen(def->raw ? m->in->headers[k].raw :
					        m->in->headers[k].decoded ? m->in->headers[k].decoded : m->in->headers[k].raw) + 4;
			if (need > bufcap) { bufcap = need; buf = realloc(buf, bufcap); if (!buf) abort(); }
			size_t o = 0;
			buf[0] = '\0';
			if (n->msg_root)
				for (size_t k = 0; k < m->in->nheaders; k++) {
					const struct rules_header *h = &m->in->headers[k];
					if (!strcmp(h->name, "EnvelopeFrom")) continue;   /* the bridge's pseudo-header */
					o += (size_t)snprintf(buf + o, bufcap - o, "%s: %s\n", h->name,
					                      def->raw ? h->raw : h->decoded ? h->decoded : h->raw);
				}
			else
				for (size_t k = 0; k < n->nf; k++) {
					char *dec;           /* decoded once: the buffer grows to it */
					const char *fv = part_value(m, &n->f[k], def->raw, &dec);
					size_t vl = strlen(fv);
					int nl = !(vl && fv[vl - 1] == '\n');
					size_t want = o + strlen(n->f[k].name) + vl + 4;
					if (want > bufcap) { bufcap = want * 2; buf = realloc(buf, bufcap); if (!buf) abort(); }
					o += (size_t)snprintf(buf + o, bufcap - o, "%s: %s%s", n->f[k].name, fv, nl ? "\n" : "");
					free(dec);
				}
			v = buf;
		} else if (n->msg_root && !def->raw) {
			/* the message's own fields: decoded by the bridge (RFC 2047) */
			for (size_t k = 0; k < m->in->nheaders; k++)
				if (!strcasecmp(m->in->headers[k].name, def->hdr))
					v = m->in->headers[k].decoded ? m->in->headers[k].decoded : m->in->headers[k].raw;
			add_nl = v != NULL;
		} else {
			const struct sa_field *f = node_field(n, def->hdr);
			if (f) {
				v = part_value(m, f, def->raw, &part_dec);
				add_nl = !def->raw;
			}
		}
		if (!v) v = def->if_unset ? def->if_unset : "";
		size_t len = strlen(v);
		if (add_nl) {
			if (len + 2 > bufcap) { bufcap = len + 2; buf = realloc(buf, bufcap); if (!buf) abort(); }
			if (v != buf) memmove(buf, v, len);
			buf[len++] = '\n';
			buf[len] = '\0';
			v = buf;
		}
		free(part_dec);
		if (def->negated) continue;
		hits += mh_matches(m, d, v, len, cap - hits);
	}
	free(buf);
	if (def->negated) return 1;      /* as SpamAssassin: a negated rule always hits */
	return hits;
}

/* --- directives ------------------------------------------------------------------------------ */

static int mime_directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen)
{
	if (!strcmp(dir, "mimeheader")) return mimeheader_directive(rs, args, why, whylen);
	if (!strcmp(dir, "ok_locales")) {
		while (*args == ' ' || *args == '\t') args++;
		conf_of(rs)->locales_set = strncasecmp(args, "all", 3) != 0;
		return 1;
	}
	return 0;
}

static void mime_free_conf(struct ruleset *rs)
{
	struct mime_conf *c = rs->evconf[EVF_MIME];
	if (!c) return;
	for (size_t i = 0; i < c->nmh; i++) mh_free_def(&c->mh[i]);
	free(c->mh);
	free(c);
	rs->evconf[EVF_MIME] = NULL;
}

static const struct eval_def defs[] = {
	{ "check_for_mime", for_mime, 1, 1, for_mime_check, NULL, 0 },
	{ "check_for_mime_html", for_mime_html, 0, 0, NULL, NULL, 0 },
	{ "check_for_mime_html_only", for_mime_html_only, 0, 0, NULL, NULL, 0 },
	{ "check_mime_multipart_ratio", mime_multipart_ratio, 2, 2, numbers_check, NULL, 0 },
	{ "check_ma_non_text", ma_non_text, 0, 0, NULL, NULL, 0 },
	{ "check_base64_length", base64_length, 1, 2, numbers_check, NULL, 0 },
	{ "check_msg_parse_flags", msg_parse_flags, 1, 1, parse_flags_check, NULL, 0 },
	{ "check_for_ascii_text_illegal", ascii_text_illegal, 0, 0, NULL, NULL, 0 },
	{ "check_abundant_unicode_ratio", abundant_unicode_ratio, 1, 1, ratio_arg_check, NULL, 0 },
	{ "check_for_faraway_charset", faraway_charset, 0, 0, locales_check, NULL, 0 },
	{ "check_for_faraway_charset_in_headers", faraway_charset_in_headers, 0, 0, locales_check, NULL, 0 },
	{ "check_illegal_chars", illegal_chars, 3, 3, illegal_check, NULL, 0 },
	{ "check_for_uppercase", for_uppercase, 2, 2, numbers_check, NULL, 0 },
	{ "check_body_length", body_length, 1, 1, numbers_check, NULL, 0 },
	{ "check_blank_line_ratio", blank_line_ratio, 2, 3, numbers_check, NULL, 0 },
	{ "tvd_vertical_words", vertical_words, 2, 2, numbers_check, NULL, 0 },
	{ "check_stock_info", stock_info, 1, 1, stock_check, stock_free, 0 },
	{ "multipart_alternative_difference", ma_difference, 2, 2, numbers_undef_check, NULL, 0 },
	{ "multipart_alternative_difference_count", ma_difference_count, 2, 2, numbers_check, NULL, 0 },
	{ "mimeheader_test", mimeheader_test, 1, 1, mimeheader_check, mh_data_free, 0 },
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_mime = {
	.name = "mime",
	.defs = defs,
	.directive = mime_directive,
	.free_conf = mime_free_conf,
};
