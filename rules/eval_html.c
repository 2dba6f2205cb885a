/* eval_html.c - eval: functions over HTML and images (SpamAssassin's
 * HTMLEval, ImageInfo, HTTPSMismatch, the HTML parts of URIEval, and
 * DecodeShortURLs without its network part).
 *
 * The statistics of every text/html part (html_stats.c) and the image
 * sizes are computed once per message, on the first eval that wants them,
 * and kept in the EVC_HTML cache slot.  Directives owned here:
 * url_shortener, url_shortener_get, clear_url_shortener; ok_locales is
 * read (not taken) for html_charset_faraway. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "proxy/utf8.h"
#include "rules/eval.h"
#include "rules/html_stats.h"

#define MAX_HTML_PARTS   50          /* HTML parts analysed per message */
#define MAX_IMAGE_DIMS   64          /* distinct image sizes kept per type */
#define MAX_SHORTENERS   10000

/* --- per-ruleset configuration --------------------------------------------------- */

struct html_conf {
	char **shorteners;               /* lower case, sorted */
	size_t nshort, capshort;
	char ok_locales[256];            /* "" = never set: SpamAssassin's default "all" */
};

static struct html_conf *conf_of(const struct ruleset *rs) { return rs->evconf[EVF_HTML]; }

static struct html_conf *conf_get(struct ruleset *rs)
{
	if (!rs->evconf[EVF_HTML]) {
		rs->evconf[EVF_HTML] = calloc(1, sizeof(struct html_conf));
		if (!rs->evconf[EVF_HTML]) abort();
	}
	return rs->evconf[EVF_HTML];
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int shortener_known(const struct html_conf *c, const char *host)
{
	if (!c || !c->nshort) return 0;
	return bsearch(&host, c->shorteners, c->nshort, sizeof *c->shorteners, cmp_str) != NULL;
}

static void shortener_add(struct html_conf *c, const char *d, size_t n)
{
	char name[256];
	if (n >= sizeof name || c->nshort >= MAX_SHORTENERS) return;
	for (size_t i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)d[i]);
	name[n] = '\0';
	const char *key = name;
	size_t lo = 0, hi = c->nshort;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(c->shorteners[mid], key);
		if (r == 0) return;
		if (r < 0) lo = mid + 1; else hi = mid;
	}
	if (c->nshort == c->capshort) {
		c->capshort = c->capshort ? c->capshort * 2 : 64;
		c->shorteners = realloc(c->shorteners, c->capshort * sizeof *c->shorteners);
		if (!c->shorteners) abort();
	}
	memmove(c->shorteners + lo + 1, c->shorteners + lo, (c->nshort - lo) * sizeof *c->shorteners);
	c->shorteners[lo] = strdup(name);
	if (!c->shorteners[lo]) abort();
	c->nshort++;
}

static void shortener_del(struct html_conf *c, const char *d, size_t n)
{
	for (size_t i = 0; i < c->nshort; i++)
		if (strlen(c->shorteners[i]) == n && strncasecmp(c->shorteners[i], d, n) == 0) {
			free(c->shorteners[i]);
			memmove(c->shorteners + i, c->shorteners + i + 1, (c->nshort - i - 1) * sizeof *c->shorteners);
			c->nshort--;
			return;
		}
}

static int html_directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen)
{
	if (strcmp(dir, "ok_locales") == 0) {
		/* read, not owned: other modules (check_for_faraway_charset) may want it too */
		snprintf(conf_get(rs)->ok_locales, sizeof conf_get(rs)->ok_locales, "%s", args);
		return 0;
	}
	int add = strcmp(dir, "url_shortener") == 0 || strcmp(dir, "url_shortener_get") == 0;
	int clear = strcmp(dir, "clear_url_shortener") == 0;
	if (!add && !clear) return 0;
	struct html_conf *c = conf_get(rs);
	const char *s = args;
	int any = 0;
	while (*s) {
		while (*s == ' ' || *s == '\t') s++;
		size_t n = strcspn(s, " \t");
		if (!n) break;
		for (size_t i = 0; i < n; i++)
			if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '_')) {
				snprintf(why, whylen, "not a domain: %.*s", (int)(n > 80 ? 80 : n), s);
				return -1;
			}
		if (add) shortener_add(c, s, n); else shortener_del(c, s, n);
		any = 1;
		s += n;
	}
	if (add && !any) { snprintf(why, whylen, "no domain given"); return -1; }
	if (clear && !any) {
		for (size_t i = 0; i < c->nshort; i++) free(c->shorteners[i]);
		c->nshort = 0;
	}
	return 1;
}

static void html_free_conf(struct ruleset *rs)
{
	struct html_conf *c = rs->evconf[EVF_HTML];
	if (!c) return;
	for (size_t i = 0; i < c->nshort; i++) free(c->shorteners[i]);
	free(c->shorteners);
	free(c);
	rs->evconf[EVF_HTML] = NULL;
}

/* --- per-message data ------------------------------------------------------------- */

enum img_type { IMG_GIF, IMG_PNG, IMG_JPEG, IMG_ALL, IMG_NTYPES };
static const char *const img_names[IMG_NTYPES] = { "gif", "png", "jpeg", "all" };

struct img_dims { unsigned long h, w; };

struct html_msg {
	struct html_stats *docs[MAX_HTML_PARTS];
	int doc_utf8[MAX_HTML_PARTS];
	size_t ndocs;
	int images_done;
	double count[IMG_NTYPES], pixels[IMG_NTYPES];
	struct img_dims dims[IMG_NTYPES][MAX_IMAGE_DIMS];
	size_t ndims[IMG_NTYPES];
	const char *names[MAX_IMAGE_DIMS];   /* file names of the measured images (borrowed) */
	size_t nnames;
};

static void msg_free(void *p)
{
	struct html_msg *h = p;
	for (size_t i = 0; i < h->ndocs; i++) html_stats_free(h->docs[i]);
	free(h);
}

static struct html_msg *msg_html(struct eval_msg *m)
{
	struct html_msg *h = eval_cache_get(m, EVC_HTML);
	if (h) return h;
	h = calloc(1, sizeof *h);
	if (!h) abort();
	const struct rules_input *in = m->in;
	for (size_t i = 0; i < in->nparts && h->ndocs < MAX_HTML_PARTS; i++) {
		const struct rules_part *p = &in->parts[i];
		if (!p->is_html) continue;
		/* SpamAssassin parses the part's own bytes; as characters when
		 * they are ASCII or UTF-8 declared so (or undeclared) */
		const char *data = p->raw ? p->raw : p->data;
		size_t len = p->raw ? p->raw_len : p->len;
		if (!data || !len) continue;
		int utf8 = (!p->charset || strcasecmp(p->charset, "utf-8") == 0 || strcasecmp(p->charset, "us-ascii") == 0) &&
		           utf8_valid(data, len);
		/* SpamAssassin reads the message with LF line ends (the proxy
		 * spools CRLF): lengths are counted without the CRs */
		if (len > HTML_MAX_INPUT) len = HTML_MAX_INPUT;
		char *lf = malloc(len + 1);
		if (!lf) abort();
		size_t n = 0;
		for (size_t k = 0; k < len; k++)
			if (!(data[k] == '\r' && k + 1 < len && data[k + 1] == '\n')) lf[n++] = data[k];
		lf[n] = '\0';
		h->doc_utf8[h->ndocs] = utf8;
		h->docs[h->ndocs++] = html_stats_parse(lf, n, utf8);
		free(lf);
	}
	eval_cache_set(m, EVC_HTML, h, msg_free);
	return h;
}

/* --- images (ImageInfo) ------------------------------------------------------------- */

static unsigned long be16(const unsigned char *p) { return (unsigned long)p[0] << 8 | p[1]; }
static unsigned long be32(const unsigned char *p) { return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3]; }

/* width and height of an image as ImageInfo reads them; 0 when not found */
static void image_size(enum img_type t, const unsigned char *d, size_t n, unsigned long *w, unsigned long *h)
{
	*w = *h = 0;
	if (t == IMG_GIF) {
		if (n >= 10 && memcmp(d, "GIF8", 4) == 0 && (d[4] == '7' || d[4] == '9') && d[5] == 'a') {
			*w = d[6] | (unsigned long)d[7] << 8;
			*h = d[8] | (unsigned long)d[9] << 8;
		}
	} else if (t == IMG_PNG) {
		if (n < 8 || memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0) return;
		/* ImageInfo steps 8 bytes at a time looking for IHDR (the first
		 * chunk of a valid PNG) */
		for (size_t pos = 8; pos + 8 <= n; pos += 8) {
			unsigned long len = be32(d + pos);
			if (memcmp(d + pos + 4, "IEND", 4) == 0) return;
			if (memcmp(d + pos + 4, "IHDR", 4) == 0 && len == 13) {
				if (pos + 16 <= n) { *w = be32(d + pos + 8); *h = be32(d + pos + 12); }
				return;
			}
		}
	} else if (t == IMG_JPEG) {
		if (n < 2 || d[0] != 0xff || d[1] != 0xd8) return;
		size_t pos = 2;
		while (pos + 4 <= n) {
			unsigned mark = d[pos + 1];
			unsigned long len = be16(d + pos + 2);
			if (d[pos] != 0xff || mark == 0xda || mark == 0xd9 || len < 2) return;
			pos += 4;
			if ((mark >= 0xc0 && mark <= 0xc3) || (mark >= 0xc5 && mark <= 0xc7) ||
			    (mark >= 0xc9 && mark <= 0xcb) || (mark >= 0xcd && mark <= 0xcf)) {
				if (pos + 5 <= n) { *h = be16(d + pos + 1); *w = be16(d + pos + 3); }
				return;
			}
			pos += len - 2;
		}
	}
}

static void images(struct eval_msg *m, struct html_msg *h)
{
	if (h->images_done) return;
	h->images_done = 1;
	const struct rules_input *in = m->in;
	for (size_t i = 0; i < in->nparts; i++) {
		const struct rules_part *p = &in->parts[i];
		const char *ct = p->content_type;
		if (!ct || strncmp(ct, "image/", 6) != 0) continue;
		enum img_type t;
		if (strcmp(ct + 6, "gif") == 0) t = IMG_GIF;
		else if (strcmp(ct + 6, "png") == 0) t = IMG_PNG;
		else if (strcmp(ct + 6, "jpeg") == 0 || strcmp(ct + 6, "jpg") == 0) t = IMG_JPEG;
		else continue;
		/* ImageInfo looks only at base64 images (encoding NULL: not known here) */
		if (p->encoding && strcmp(p->encoding, "base64") != 0) continue;
		unsigned long w, ht;
		image_size(t, (const unsigned char *)p->data, p->data ? p->len : 0, &w, &ht);
		h->count[t]++;
		h->count[IMG_ALL]++;
		if (w && ht) {
			if (p->filename && *p->filename && h->nnames < MAX_IMAGE_DIMS) h->names[h->nnames++] = p->filename;
			h->pixels[t] += (double)w * ht;
			h->pixels[IMG_ALL] += (double)w * ht;
			for (int k = 0; k < 2; k++) {
				enum img_type slot = k ? IMG_ALL : t;
				int dup = 0;
				for (size_t d = 0; d < h->ndims[slot]; d++)
					if (h->dims[slot][d].h == ht && h->dims[slot][d].w == w) dup = 1;
				if (!dup && h->ndims[slot] < MAX_IMAGE_DIMS) h->dims[slot][h->ndims[slot]++] = (struct img_dims){ ht, w };
			}
		}
	}
}

static int img_type_of(const char *s)
{
	for (int t = 0; t < IMG_NTYPES; t++)
		if (strcmp(img_names[t], s) == 0) return t;
	return -1;
}

static int number(const char *s, double *v)
{
	char *end;
	while (isspace((unsigned char)*s)) s++;
	if (!*s) return 0;
	*v = strtod(s, &end);
	while (isspace((unsigned char)*end)) end++;
	return *end == '\0' && isfinite(*v);
}

/* ImageInfo's result_check */
static int in_range(double v, const struct rule *r, unsigned imin, int nomaxequal)
{
	double lo = eval_arg_num(r, imin, 0);
	if (v < lo) return 0;
	if (r->ev_argc > imin + 1) {
		double hi = eval_arg_num(r, imin + 1, 0);
		if (v > hi) return 0;
		if (nomaxequal && v == hi) return 0;
	}
	return 1;
}

/* arguments: TYPE, numbers from index 1 on */
static int check_image_args(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (img_type_of(eval_arg(r, 0)) < 0) {
		snprintf(why, whylen, "image type must be all, gif, png or jpeg, not \"%.40s\"", eval_arg(r, 0));
		return -1;
	}
	for (unsigned i = 1; i < r->ev_argc; i++) {
		double v;
		if (!number(eval_arg(r, i), &v)) { snprintf(why, whylen, "argument %u is not a number", i + 1); return -1; }
	}
	return 0;
}

static double image_count(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	return in_range(h->count[img_type_of(eval_arg(r, 0))], r, 1, 0);
}

static double pixel_coverage(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	return in_range(h->pixels[img_type_of(eval_arg(r, 0))], r, 1, 0);
}

/* image_to_text_ratio(TYPE, MIN, MAX): characters of the body (rendered,
 * or decoded for a rawbody rule) per image pixel */
static double image_to_text_ratio(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	double px = h->pixels[img_type_of(eval_arg(r, 0))];
	const size_t *lens = r->kind == RK_RAWBODY ? m->in->rawbody_len : m->in->body_len;
	size_t n = r->kind == RK_RAWBODY ? m->in->nrawbody : m->in->nbody;
	double textlen = 0;
	for (size_t i = 0; i < n && lens; i++) textlen += (double)lens[i];
	if (textlen <= 0 || px <= 0) return 0;
	return in_range(textlen / px, r, 1, 1);
}

static double image_size_exact(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	int t = img_type_of(eval_arg(r, 0));
	double hh = eval_arg_num(r, 1, -1), ww = eval_arg_num(r, 2, -1);
	for (size_t d = 0; d < h->ndims[t]; d++)
		if (h->dims[t][d].h == hh && h->dims[t][d].w == ww) return 1;
	return 0;
}

static double image_size_range(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	int t = img_type_of(eval_arg(r, 0));
	double minh = eval_arg_num(r, 1, 0), minw = eval_arg_num(r, 2, 0);
	for (size_t d = 0; d < h->ndims[t]; d++) {
		double dh = (double)h->dims[t][d].h, dw = (double)h->dims[t][d].w;
		if (dh < minh || dw < minw) continue;
		if (r->ev_argc > 3 && dh > eval_arg_num(r, 3, 0)) continue;
		if (r->ev_argc > 4 && dw > eval_arg_num(r, 4, 0)) continue;
		return 1;
	}
	return 0;
}

/* image_named(NAME): a measured image of that file name */
static int check_image_name(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (!*eval_arg(r, 0)) { snprintf(why, whylen, "no image name given"); return -1; }
	return 0;
}

static double image_named(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	for (size_t i = 0; i < h->nnames; i++)
		if (strcmp(h->names[i], eval_arg(r, 0)) == 0) return 1;
	return 0;
}

static int compile_arg_regex(struct rule *r, unsigned i, char *why, size_t whylen);

static int check_image_regex(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	return compile_arg_regex(r, 0, why, whylen);
}

/* image_name_regex(/RE/): a measured image whose file name matches */
static double image_name_regex(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	images(m, h);
	for (size_t i = 0; i < h->nnames; i++)
		if (pcre2_match(r->ev_data, (PCRE2_SPTR)h->names[i], strlen(h->names[i]), 0, 0, m->md, m->rs->mctx) >= 0)
			return 1;
	return 0;
}

/* --- HTMLEval ------------------------------------------------------------------------ */

/* "OP NUMBER" of html_eval / html_tag_balance */
struct cmp_expr { char op[3]; double num; };

static int check_expr_arg(struct rule *r, unsigned i, char *why, size_t whylen)
{
	const char *e = eval_arg(r, i);
	if (strspn(e, "<>=!-+ 0123456789") != strlen(e)) { snprintf(why, whylen, "bad expression \"%.40s\"", e); return -1; }
	while (*e == ' ') e++;
	struct cmp_expr *c = calloc(1, sizeof *c);
	if (!c) abort();
	size_t n = strspn(e, "<>=!");
	static const char *const ops[] = { "<", ">", "<=", ">=", "==", "!=", NULL };
	int ok = 0;
	for (size_t k = 0; ops[k]; k++) if (strlen(ops[k]) == n && strncmp(ops[k], e, n) == 0) ok = 1;
	if (ok) {
		memcpy(c->op, e, n);
		ok = number(e + n, &c->num);
	}
	if (!ok) { free(c); snprintf(why, whylen, "expression must be OP NUMBER, not \"%.40s\"", eval_arg(r, i)); return -1; }
	r->ev_data = c;
	return 0;
}

static int cmp_true(const struct cmp_expr *c, double v)
{
	if (strcmp(c->op, "<") == 0) return v < c->num;
	if (strcmp(c->op, ">") == 0) return v > c->num;
	if (strcmp(c->op, "<=") == 0) return v <= c->num;
	if (strcmp(c->op, ">=") == 0) return v >= c->num;
	if (strcmp(c->op, "==") == 0) return v == c->num;
	return v != c->num;
}

static int check_tag_arg(struct rule *r, unsigned i, char *why, size_t whylen)
{
	const char *t = eval_arg(r, i);
	size_t n = strlen(t);
	if (!n || n >= 32) { snprintf(why, whylen, "bad tag name"); return -1; }
	for (size_t k = 0; k < n; k++)
		if (!isalnum((unsigned char)t[k])) { snprintf(why, whylen, "bad tag name \"%.40s\"", t); return -1; }
	return 0;
}

static int check_tag_balance(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (check_tag_arg(r, 0, why, whylen) < 0) return -1;
	return check_expr_arg(r, 1, why, whylen);
}

static double html_tag_balance(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++) {
		int v = html_stats_inside(h->docs[i], eval_arg(r, 0));
		if (v >= 0 && cmp_true(r->ev_data, v)) return 1;
	}
	return 0;
}

static int check_tag_exists(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	const char *t = eval_arg(r, 0);
	if (!*t || strlen(t) >= 32) { snprintf(why, whylen, "bad tag name"); return -1; }
	return 0;
}

static double html_tag_exists(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++)
		if (html_stats_inside(h->docs[i], eval_arg(r, 0)) >= 0) return 1;
	return 0;
}

static int check_two_numbers(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	for (unsigned i = 0; i < r->ev_argc; i++) {
		double v;
		if (!number(eval_arg(r, i), &v)) { snprintf(why, whylen, "argument %u is not a number", i + 1); return -1; }
	}
	return 0;
}

static double html_image_only(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	double lo = eval_arg_num(r, 0, 0), hi = eval_arg_num(r, 1, 0);
	for (size_t i = 0; i < h->ndocs; i++)
		if (html_stats_inside(h->docs[i], "img") >= 0 && h->docs[i]->length > lo && h->docs[i]->length <= hi) return 1;
	return 0;
}

static double html_image_ratio(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	double lo = eval_arg_num(r, 0, 0), hi = eval_arg_num(r, 1, 0);
	for (size_t i = 0; i < h->ndocs; i++) {
		const struct html_stats *d = h->docs[i];
		if (d->image_area <= 0) continue;
		double ratio = d->non_space_len / d->image_area;
		if (ratio > lo && ratio <= hi) return 1;
	}
	return 0;
}

static int check_stat_name(struct rule *r, unsigned i, char *why, size_t whylen)
{
	static const struct html_stats empty;
	double v;
	if (html_stats_value(&empty, eval_arg(r, i), &v) < 0) {
		snprintf(why, whylen, "no HTML result called \"%.40s\"", eval_arg(r, i));
		return -1;
	}
	return 0;
}

static int check_html_test(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	return check_stat_name(r, 0, why, whylen);
}

static double html_test(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	double v;
	for (size_t i = 0; i < h->ndocs; i++)
		if (html_stats_value(h->docs[i], eval_arg(r, 0), &v) == 1 && v != 0) return 1;
	return 0;
}

static int check_html_eval(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (check_stat_name(r, 0, why, whylen) < 0) return -1;
	return check_expr_arg(r, 1, why, whylen);
}

static double html_eval(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	double v;
	for (size_t i = 0; i < h->ndocs; i++)
		if (html_stats_value(h->docs[i], eval_arg(r, 0), &v) == 1 && cmp_true(r->ev_data, v)) return 1;
	return 0;
}

static int check_html_range(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (check_stat_name(r, 0, why, whylen) < 0) return -1;
	double v;
	if (!number(eval_arg(r, 1), &v)) { snprintf(why, whylen, "minimum is not a number"); return -1; }
	if (r->ev_argc > 2 && strcmp(eval_arg(r, 2), "inf") != 0 && !number(eval_arg(r, 2), &v)) {
		snprintf(why, whylen, "maximum is not a number or inf");
		return -1;
	}
	return 0;
}

static double html_range(struct eval_msg *m, const struct rule *r)
{
	struct html_msg *h = msg_html(m);
	double lo = eval_arg_num(r, 1, 0);
	int nomax = r->ev_argc < 3 || strcmp(eval_arg(r, 2), "inf") == 0;
	double hi = nomax ? 0 : eval_arg_num(r, 2, 0);
	double v;
	for (size_t i = 0; i < h->ndocs; i++) {
		if (html_stats_value(h->docs[i], eval_arg(r, 0), &v) != 1) continue;
		if (nomax ? v > lo : (v > lo && v <= hi)) return 1;
	}
	return 0;
}

/* html_text_match(LIST, REGEX) and html_text_not_match */
static int check_text_match(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	static const struct html_stats empty;
	if (!html_stats_list(&empty, eval_arg(r, 0))) {
		snprintf(why, whylen, "no HTML text list called \"%.40s\"", eval_arg(r, 0));
		return -1;
	}
	return compile_arg_regex(r, 1, why, whylen);
}

/* argument i as a regex: a delimited /re/flags, or the bare pattern
 * SpamAssassin's compile_regexp also accepts; compiled into r->ev_data */
static int compile_arg_regex(struct rule *r, unsigned i, char *why, size_t whylen)
{
	const char *re = eval_arg(r, i);
	char *pat = NULL;
	unsigned fl = 0;
	const char *rest = NULL;
	/* a delimited /re/flags, or the bare pattern SpamAssassin also accepts */
	if ((re[0] == '/' || (re[0] == 'm' && re[1] && !isalnum((unsigned char)re[1]) && !isspace((unsigned char)re[1]))) &&
	    perl_re_split(re, &pat, &fl, &rest) == 0 && (!rest || !*rest)) {
		/* pat, fl set */
	} else {
		free(pat);
		pat = strdup(re);
		if (!pat) abort();
		fl = 0;
	}
	uint32_t opt = (fl & RE_I ? PCRE2_CASELESS : 0) | (fl & RE_M ? PCRE2_MULTILINE : 0) |
	               (fl & RE_S ? PCRE2_DOTALL : 0) | (fl & RE_X ? PCRE2_EXTENDED : 0);
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
	free(pat);
	if (!c) {
		PCRE2_UCHAR msg[120];
		pcre2_get_error_message(ec, msg, sizeof msg);
		snprintf(why, whylen, "bad regular expression: %s", (const char *)msg);
		return -1;
	}
	pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	r->ev_data = c;
	return 0;
}

static void free_code(void *p) { pcre2_code_free(p); }

static double text_match(struct eval_msg *m, const struct rule *r, int want)
{
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++) {
		const struct html_strs *l = html_stats_list(h->docs[i], eval_arg(r, 0));
		for (size_t k = 0; l && k < l->n; k++) {
			int rc = pcre2_match(r->ev_data, (PCRE2_SPTR)l->s[k], strlen(l->s[k]), 0, 0, m->md, m->rs->mctx);
			if ((rc >= 0) == want) return 1;
		}
	}
	return 0;
}

static double html_text_match(struct eval_msg *m, const struct rule *r) { return text_match(m, r, 1); }
static double html_text_not_match(struct eval_msg *m, const struct rule *r) { return text_match(m, r, 0); }

static size_t utf8_chars(const char *s)
{
	size_t c = 0;
	for (; *s; s++) c += ((unsigned char)*s & 0xc0) != 0x80;
	return c;
}

/* html_title_subject_ratio(R): a <title> R times longer than the Subject */
static double html_title_subject_ratio(struct eval_msg *m, const struct rule *r)
{
	/* SpamAssassin's get('Subject'): every Subject field, each with its
	 * newline; "" only when there is none */
	char subject[4096];
	size_t nsubj = eval_header_all(m, "Subject", subject, sizeof subject);
	if (!nsubj) return 0;
	double slen = (double)(utf8_chars(subject) + 1), ratio = eval_arg_num(r, 0, 0);
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++) {
		double max = 0;
		for (size_t k = 0; k < h->docs[i]->title.n; k++) {
			const char *t = h->docs[i]->title.s[k];
			if (!*t || strcmp(t, "0") == 0) continue;       /* Perl: "" and "0" are false */
			double l = h->doc_utf8[i] ? (double)utf8_chars(t) : (double)strlen(t);
			if (l / slen > max) max = l / slen;
		}
		if (max > ratio) return 1;
	}
	return 0;
}

static int check_one_number(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	return check_two_numbers(rs, r, why, whylen);
}

/* SpamAssassin's Locales: is a charset fine for one of the locales? */
static int charset_ok(const char *cs0, const char *locales)
{
	char cs[64];
	size_t n = 0;
	for (const char *c = cs0; *c && n + 1 < sizeof cs; c++)
		if (isalnum((unsigned char)*c)) cs[n++] = (char)toupper((unsigned char)*c);
	cs[n] = '\0';
	char *p = cs;
	while (strncmp(p, "3D", 2) == 0) p += 2;
	static const char *const always_prefix[] = { "ISO8859", "ISO10646", "UTF", "UCS", "CP125", "WINDOWS", "UNICODE11UTF7",
	                                             "UNICODE11UTF8", NULL };
	static const char *const always[] = { "USASCII", "ASCII", "IBM852", "XUNKNOWN", "ISO", NULL };
	for (size_t i = 0; always[i]; i++) if (strcmp(p, always[i]) == 0) return 1;
	for (size_t i = 0; always_prefix[i]; i++) if (strncmp(p, always_prefix[i], strlen(always_prefix[i])) == 0) return 1;
	static const struct { const char *loc, *sets; } table[] = {
		{ "ja", " EUCJP JISX020119760 JISX020819830 JISX020819900 JISX020819970 JISX021219900 JISX021320001 "
		        "JISX021320002 SHIFT_JIS SHIFTJIS ISO2022JP SJIS JIS7 JISX0201 JISX0208 JISX0212 " },
		{ "ko", " EUCKR KSC56011987 " },
		{ "ru", " KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS PT154 CP866 " },
		{ "ka", " KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS PT154 CP866 " },
		{ "tg", " KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS PT154 CP866 " },
		{ "be", " KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS PT154 CP866 " },
		{ "uk", " KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS PT154 CP866 " },
		{ "bg", " KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS PT154 CP866 " },
		{ "th", " TIS620 " },
		{ "zh", " GB1988 GB2312 GB231219800 GB18030 GBK BIG5HKSCS BIG5 EUCTW ISO2022CN " },
		{ NULL, NULL }
	};
	char key[80];
	snprintf(key, sizeof key, " %s ", p);
	const char *l = locales;
	while (*l) {
		while (*l == ' ' || *l == '\t') l++;
		size_t ln = strcspn(l, " \t");
		if (!ln) break;
		char loc[3] = { 'e', 'n', 0 };
		if (!(ln == 1 && l[0] == 'C') && ln >= 2) { loc[0] = l[0]; loc[1] = l[1]; }
		for (size_t i = 0; table[i].loc; i++)
			if (strcmp(table[i].loc, loc) == 0 && strstr(table[i].sets, key)) return 1;
		l += ln;
	}
	return 0;
}

/* html_charset_faraway: the <meta> charsets are mostly not for ok_locales */
static double html_charset_faraway(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct html_conf *c = conf_of(m->rs);
	const char *locales = c && c->ok_locales[0] ? c->ok_locales : "all";
	char buf[300];
	snprintf(buf, sizeof buf, " %s ", locales);
	if (strstr(buf, " all ") || strstr(buf, "\tall ") || strstr(buf, " all\t")) return 0;
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++) {
		const struct html_strs *cs = &h->docs[i]->charsets;
		if (!cs->n) continue;
		unsigned ok = 0, bad = 0;
		for (size_t k = 0; k < cs->n; k++) {
			/* each <meta> value may name several, space separated */
			const char *s = cs->s[k];
			while (*s) {
				while (isspace((unsigned char)*s)) s++;
				size_t n = strcspn(s, " \t\r\n");
				if (!n) break;
				char one[64];
				snprintf(one, sizeof one, "%.*s", (int)(n < 63 ? n : 63), s);
				if (charset_ok(one, locales)) ok++; else bad++;
				s += n;
			}
		}
		if (bad && bad >= ok) return 1;
	}
	return 0;
}

static double check_iframe_src(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++)
		if (h->docs[i]->iframe_src) return 1;
	return 0;
}

/* --- anchors: HTTPSMismatch, URIEval -------------------------------------------------- */

/* "scheme:" + slashes + optional user@: where the host starts, or NULL */
static const char *after_scheme(const char *u, int https_only)
{
	const char *p;
	if (strncasecmp(u, "https:", 6) == 0) p = u + 6;
	else if (!https_only && strncasecmp(u, "http:", 5) == 0) p = u + 5;
	else return NULL;
	while (*p == '/') p++;
	/* (?:[^\@/]+\@)? */
	const char *at = p + strcspn(p, "@/");
	if (*at == '@' && at > p) p = at + 1;
	return p;
}

/* \d+\.\d+\.\d+\.\d+ at s */
static int starts_with_ipv4(const char *s)
{
	for (int k = 0; k < 4; k++) {
		if (!isdigit((unsigned char)*s)) return 0;
		while (isdigit((unsigned char)*s)) s++;
		if (k < 3) { if (*s != '.') return 0; s++; }
	}
	return 1;
}

static int is_ipv4(const char *s)
{
	int dots = 0;
	for (const char *c = s; *c; c++) {
		if (*c == '.') dots++;
		else if (!isdigit((unsigned char)*c)) return 0;
	}
	return dots == 3 && starts_with_ipv4(s);
}

/* the registrable domain of a host (an approximation of SpamAssassin's
 * RegistryBoundaries without its TLD lists: two labels, three under the
 * usual second-level labels of country domains); "" if not a valid name */
static void trim_domain(const char *host, char *out, size_t outlen)
{
	char h[256];
	size_t n = 0;
	for (const char *c = host; *c && n + 1 < sizeof h; c++) h[n++] = (char)tolower((unsigned char)*c);
	h[n] = '\0';
	while (n && h[n - 1] == '.') h[--n] = '\0';
	out[0] = '\0';
	const char *dot1 = strrchr(h, '.');
	if (!dot1 || dot1 == h) return;
	const char *tld = dot1 + 1;
	size_t tl = strlen(tld);
	if (tl < 2) return;
	for (const char *c = tld; *c; c++) if (!isalpha((unsigned char)*c) && *c != '-') return;
	const char *start = h;
	size_t labels_wanted = 2;
	{
		const char *p2 = dot1 - 1;
		while (p2 > h && *p2 != '.') p2--;
		const char *sld = *p2 == '.' ? p2 + 1 : h;
		size_t sl = (size_t)(dot1 - sld);
		static const char *const slds[] = { "co", "com", "net", "org", "gov", "edu", "ac", "ne", "or", "go", "ltd", "plc", NULL };
		if (tl == 2) for (size_t i = 0; slds[i]; i++) if (strlen(slds[i]) == sl && strncmp(slds[i], sld, sl) == 0) labels_wanted = 3;
	}
	size_t seen = 0;
	for (const char *c = h + n; c > h; c--)
		if (c[-1] == '.' && ++seen == labels_wanted) { start = c; break; }
	snprintf(out, outlen, "%s", start);
}

/* check_https_ip_mismatch: a link to an IP address shown as an https: link */
static double https_ip_mismatch(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++) {
		const struct html_stats *d = h->docs[i];
		for (size_t k = 0; k < d->nanchors; k++) {
			const char *host = after_scheme(d->anchors[k].href, 0);
			if (!host || !starts_with_ipv4(host)) continue;
			const char *t = d->anchors[k].text;
			const char *th = after_scheme(t, 1);
			if (th && starts_with_ipv4(th)) continue;
			if (strcasestr(t, "https:")) return 1;
		}
	}
	return 0;
}

/* the host of an "https?://host" prefix into out (up to [/:?#] and, for
 * anchor text, white space); 0 if not that form */
static int url_host(const char *s, int https_only, int stop_space, char *out, size_t outlen)
{
	const char *p;
	if (strncasecmp(s, "https://", 8) == 0) p = s + 8;
	else if (!https_only && strncasecmp(s, "http://", 7) == 0) p = s + 7;
	else return 0;
	size_t n = 0;
	while (p[n] && !strchr("/:?#", p[n]) && !(stop_space && isspace((unsigned char)p[n]))) n++;
	if (!n || n >= outlen) return 0;
	memcpy(out, p, n);
	out[n] = '\0';
	return 1;
}

static int check_https_http(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	return check_two_numbers(rs, r, why, whylen);
}

/* check_https_http_mismatch(MIN, MAX): anchor text naming an https: site
 * other than where the (http) link goes, among MIN..MAX-1 linked sites */
static double https_http_mismatch(struct eval_msg *m, const struct rule *r)
{
	double minanchors = eval_arg_num(r, 0, 0);
	if (minanchors == 0) minanchors = 1;
	int has_max = r->ev_argc > 1;
	double maxanchors = eval_arg_num(r, 1, 0);
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++) {
		const struct html_stats *d = h->docs[i];
		int hit = 0;
		unsigned anchors = 0;
		for (size_t k = 0; k < d->nanchors; k++) {
			/* once per distinct href, over all its anchor texts */
			int dup = 0;
			for (size_t j = 0; j < k && !dup; j++) dup = strcmp(d->anchors[j].href, d->anchors[k].href) == 0;
			if (dup) continue;
			char host[256], dom[256];
			if (!url_host(d->anchors[k].href, 0, 0, host, sizeof host) || is_ipv4(host)) continue;
			trim_domain(host, dom, sizeof dom);
			if (!dom[0]) continue;
			anchors++;
			for (size_t j = k; j < d->nanchors && !hit; j++) {
				if (strcmp(d->anchors[j].href, d->anchors[k].href) != 0) continue;
				const char *t = strcasestr(d->anchors[j].text, "https://");
				char th[256], tdom[256];
				if (!t || !url_host(t, 1, 1, th, sizeof th)) continue;
				if (is_ipv4(th)) snprintf(tdom, sizeof tdom, "%s", th);
				else trim_domain(th, tdom, sizeof tdom);
				if (!tdom[0] || strcmp(tdom, dom) == 0) continue;
				hit = 1;
			}
		}
		if (hit && anchors >= minanchors && (!has_max || anchors < maxanchors)) return 1;
	}
	return 0;
}

/* check_uri_truncated: a link longer than SpamAssassin keeps (8192) */
static double uri_truncated(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct html_msg *h = msg_html(m);
	for (size_t i = 0; i < h->ndocs; i++)
		if (h->docs[i]->uri_truncated) return 1;
	for (size_t i = 0; i < m->in->nuris; i++)
		if (strlen(m->in->uris[i]) > HTML_MAX_URI_LEN) return 1;
	/* a bare link in a text part that long (the MIME layer keeps no such URI) */
	for (size_t i = 0; i < m->in->nparts; i++) {
		const struct rules_part *p = &m->in->parts[i];
		if (!p->is_text || p->is_html || !p->data) continue;
		const char *s = p->data, *end = p->data + p->len;
		while (s < end && (s = memmem(s, (size_t)(end - s), "http", 4))) {
			const char *e = s;
			while (e < end && !isspace((unsigned char)*e) && *e != '"' && *e != '<' && *e != '>') e++;
			if ((size_t)(e - s) > HTML_MAX_URI_LEN && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0))
				return 1;
			s = e;
		}
	}
	return 0;
}

/* --- URL shorteners (DecodeShortURLs without HTTP) --------------------------------------- */

/* a shortener URL (DecodeShortURLs' _check_shortener_uri), query and
 * fragment already cut */
static int is_short_url(const struct html_conf *c, const char *u)
{
	const char *p;
	if (strncasecmp(u, "http://", 7) == 0) p = u + 7;
	else if (strncasecmp(u, "https://", 8) == 0) p = u + 8;
	else return 0;
	const char *at = p + strcspn(p, "@/?#");
	if (*at == '@') p = at + 1;
	size_t hl = strcspn(p, "/?#:");
	if (!hl || hl >= 256) return 0;
	char host[256];
	for (size_t i = 0; i < hl; i++) host[i] = (char)tolower((unsigned char)p[i]);
	host[hl] = '\0';
	const char *rest = p + hl;
	if (*rest == ':') { rest++; while (isdigit((unsigned char)*rest)) rest++; }
	int has_path = 0;
	for (const char *q = rest; *q; q++) if (isalnum((unsigned char)*q) || *q == '_') has_path = 1;
	int levels = 0;
	for (const char *q = host; *q; q++) levels += *q == '.';
	if (levels == 1 && !has_path) return 0;
	if (shortener_known(c, host)) return 1;
	if (levels == 2) {
		const char *d1 = strchr(host, '.');
		if (strncmp(host, "www.", 4) == 0) return shortener_known(c, host + 4);
		return shortener_known(c, d1);            /* ".page.link" entries */
	}
	return 0;
}

static void cut_query(const char *u, char *out, size_t outlen)
{
	size_t n = strcspn(u, "#?");
	if (n >= outlen) n = outlen - 1;
	memcpy(out, u, n);
	out[n] = '\0';
}

static double short_url(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct html_conf *c = conf_of(m->rs);
	char u[HTML_MAX_URI_LEN + 1];
	for (size_t i = 0; i < m->in->nuris; i++) {
		cut_query(m->in->uris[i], u, sizeof u);
		if (is_short_url(c, u)) return 1;
	}
	return 0;
}

/* short_url_chained: without HTTP requests, a short URL that carries
 * another short URL (as a redirect parameter or path) */
static double short_url_chained(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct html_conf *c = conf_of(m->rs);
	char u[HTML_MAX_URI_LEN + 1];
	for (size_t i = 0; i < m->in->nuris; i++) {
		const char *full = m->in->uris[i];
		cut_query(full, u, sizeof u);
		if (!is_short_url(c, u)) continue;
		const char *inner = full + 8;
		while ((inner = strcasestr(inner, "http"))) {
			const char *s = inner;
			if (strncasecmp(s, "http%3a%2f%2f", 13) == 0 || strncasecmp(s, "https%3a%2f%2f", 14) == 0) {
				/* percent-encoded: decode just the scheme and host part */
				char dec[300];
				size_t n = 0;
				for (const char *q = s; *q && n + 1 < sizeof dec; q++) {
					if (*q == '%' && isxdigit((unsigned char)q[1]) && isxdigit((unsigned char)q[2])) {
						char hx[3] = { q[1], q[2], 0 };
						dec[n++] = (char)strtol(hx, NULL, 16);
						q += 2;
					} else dec[n++] = *q;
				}
				dec[n] = '\0';
				cut_query(dec, u, sizeof u);
			} else {
				cut_query(s, u, sizeof u);
			}
			if (is_short_url(c, u)) return 1;
			inner++;
		}
	}
	return 0;
}

static const struct eval_def defs[] = {
	{ "html_tag_balance", html_tag_balance, 2, 2, check_tag_balance, free, 0 },
	{ "html_image_only", html_image_only, 2, 2, check_two_numbers, NULL, 0 },
	{ "html_image_ratio", html_image_ratio, 2, 2, check_two_numbers, NULL, 0 },
	{ "html_charset_faraway", html_charset_faraway, 0, 0, NULL, NULL, 0 },
	{ "html_tag_exists", html_tag_exists, 1, 1, check_tag_exists, NULL, 0 },
	{ "html_test", html_test, 1, 1, check_html_test, NULL, 0 },
	{ "html_eval", html_eval, 2, 2, check_html_eval, free, 0 },
	{ "html_text_match", html_text_match, 2, 2, check_text_match, free_code, 0 },
	{ "html_text_not_match", html_text_not_match, 2, 2, check_text_match, free_code, 0 },
	{ "html_title_subject_ratio", html_title_subject_ratio, 1, 1, check_one_number, NULL, 0 },
	{ "html_range", html_range, 2, 3, check_html_range, NULL, 0 },
	{ "check_iframe_src", check_iframe_src, 0, 0, NULL, NULL, 0 },
	{ "image_count", image_count, 2, 3, check_image_args, NULL, 0 },
	{ "pixel_coverage", pixel_coverage, 2, 3, check_image_args, NULL, 0 },
	{ "image_to_text_ratio", image_to_text_ratio, 3, 3, check_image_args, NULL, 0 },
	{ "image_size_exact", image_size_exact, 3, 3, check_image_args, NULL, 0 },
	{ "image_size_range", image_size_range, 3, 5, check_image_args, NULL, 0 },
	{ "image_named", image_named, 1, 1, check_image_name, NULL, 0 },
	{ "image_name_regex", image_name_regex, 1, 1, check_image_regex, free_code, 0 },
	{ "check_https_ip_mismatch", https_ip_mismatch, 0, 0, NULL, NULL, 0 },
	{ "check_https_http_mismatch", https_http_mismatch, 0, 2, check_https_http, NULL, 0 },
	{ "check_uri_truncated", uri_truncated, 0, 0, NULL, NULL, 0 },
	{ "short_url", short_url, 0, 0, NULL, NULL, 0 },
	{ "short_url_chained", short_url_chained, 0, 0, NULL, NULL, 0 },
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_html = {
	.name = "html",
	.defs = defs,
	.directive = html_directive,
	.free_conf = html_free_conf,
};
