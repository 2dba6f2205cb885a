/* html_stats.c - SpamAssassin's HTML statistics of one part (see
 * html_stats.h): a tokenizer with HTML::Parser's event model (start tag,
 * end tag, text, comment, declaration; script, style, xmp, iframe, title,
 * textarea and plaintext content taken literally) feeding handlers that
 * keep what Mail::SpamAssassin::HTML keeps. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/html_stats.h"

/* --- tag classes (Mail::SpamAssassin::HTML) --------------------------------- */

static int in_list(const char *const *list, const char *name)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(list[i], name) == 0) return 1;
	return 0;
}

static const char *const known_elements[] = {
	"a", "abbr", "acronym", "address", "area", "b", "base", "bdo", "big", "blockquote", "body", "br",
	"button", "caption", "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em",
	"fieldset", "form", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "html", "i", "img", "input",
	"ins", "kbd", "label", "legend", "li", "link", "map", "meta", "noscript", "object", "ol",
	"optgroup", "option", "p", "param", "pre", "q", "samp", "script", "select", "small", "span",
	"strong", "style", "sub", "sup", "table", "tbody", "td", "textarea", "tfoot", "th", "thead",
	"title", "tr", "tt", "ul", "var",
	"applet", "basefont", "center", "dir", "font", "frame", "frameset", "iframe", "isindex", "menu",
	"noframes", "s", "strike", "u",
	"nobr", "x-sigsep", "x-tab", NULL
};
static const char *const trick_elements[] = { "bgsound", "embed", "listing", "plaintext", "xmp", NULL };
static const char *const text_style_elements[] = {
	"body", "font", "table", "tr", "th", "td", "big", "small", "basefont", "marquee", "span", "p",
	"div", "a", NULL
};
static const char *const literal_elements[] = {
	"script", "style", "xmp", "iframe", "title", "textarea", "plaintext", NULL
};

/* the classes of a tag name, computed once per name */
enum {
	TC_KNOWN = 1, TC_TRICK = 2, TC_TEXT_STYLE = 4, TC_LITERAL = 8,
	TC_WS_LINE = 16, TC_WS_SPACE = 32, TC_WS_PARA = 64, TC_NAMESPACE = 128
};

static int namespace_tag(const char *t);

static unsigned classify(const char *tag)
{
	static const char *const sp[] = { "li", "th", "td", "dt", "dd", "embed", NULL };
	static const char *const para[] = { "p", "hr", "blockquote", "pre", "listing", "plaintext", "xmp", "title", NULL };
	unsigned c = 0;
	if (in_list(known_elements, tag)) c |= TC_KNOWN;
	if (in_list(trick_elements, tag)) c |= TC_TRICK;
	if (in_list(text_style_elements, tag)) c |= TC_TEXT_STYLE;
	if (in_list(literal_elements, tag)) c |= TC_LITERAL;
	if (strcmp(tag, "br") == 0 || strcmp(tag, "div") == 0) c |= TC_WS_LINE;
	else if (in_list(sp, tag) || (tag[0] == 'h' && isdigit((unsigned char)tag[1]) && !tag[2])) c |= TC_WS_SPACE;
	else if (in_list(para, tag)) c |= TC_WS_PARA;
	if (namespace_tag(tag)) c |= TC_NAMESPACE;
	return c;
}

/* --- growing things ---------------------------------------------------------- */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) abort();
	return q;
}

static void strs_push(struct html_strs *l, const char *s, size_t n)
{
	if (l->n >= HTML_MAX_ITEMS) return;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->s = xrealloc(l->s, l->cap * sizeof *l->s);
	}
	if (n > HTML_MAX_ITEM_LEN) n = HTML_MAX_ITEM_LEN;
	char *c = xrealloc(NULL, n + 1);
	memcpy(c, s, n);
	c[n] = '\0';
	l->s[l->n++] = c;
}

/* append to the last string of the list (bounded) */
static void strs_append(struct html_strs *l, const char *s, size_t n)
{
	if (!l->n) return;
	char **last = &l->s[l->n - 1];
	size_t have = strlen(*last);
	if (have >= HTML_MAX_ITEM_LEN) return;
	if (have + n > HTML_MAX_ITEM_LEN) n = HTML_MAX_ITEM_LEN - have;
	*last = xrealloc(*last, have + n + 1);
	memcpy(*last + have, s, n);
	(*last)[have + n] = '\0';
}

static void strs_free(struct html_strs *l)
{
	for (size_t i = 0; i < l->n; i++) free(l->s[i]);
	free(l->s);
}

/* --- colours (SpamAssassin's name_to_rgb) ------------------------------------ */

struct named_color { const char *name; unsigned rgb; };
static const struct named_color colors[] = {
	{ "aliceblue", 0xf0f8ff }, { "antiquewhite", 0xfaebd7 }, { "aqua", 0x00ffff }, { "aquamarine", 0x7fffd4 },
	{ "azure", 0xf0ffff }, { "beige", 0xf5f5dc }, { "bisque", 0xffe4c4 }, { "black", 0x000000 },
	{ "blanchedalmond", 0xffebcd }, { "blue", 0x0000ff }, { "blueviolet", 0x8a2be2 }, { "brown", 0xa52a2a },
	{ "burlywood", 0xdeb887 }, { "cadetblue", 0x5f9ea0 }, { "chartreuse", 0x7fff00 }, { "chocolate", 0xd2691e },
	{ "coral", 0xff7f50 }, { "cornflowerblue", 0x6495ed }, { "cornsilk", 0xfff8dc }, { "crimson", 0xdc143c },
	{ "cyan", 0x00ffff }, { "darkblue", 0x00008b }, { "darkcyan", 0x008b8b }, { "darkgoldenrod", 0xb8860b },
	{ "darkgray", 0xa9a9a9 }, { "darkgreen", 0x006400 }, { "darkgrey", 0xa9a9a9 }, { "darkkhaki", 0xbdb76b },
	{ "darkmagenta", 0x8b008b }, { "darkolivegreen", 0x556b2f }, { "darkorange", 0xff8c00 },
	{ "darkorchid", 0x9932cc }, { "darkred", 0x8b0000 }, { "darksalmon", 0xe9967a },
	{ "darkseagreen", 0x8fbc8f }, { "darkslateblue", 0x483d8b }, { "darkslategray", 0x2f4f4f },
	{ "darkslategrey", 0x2f4f4f }, { "darkturquoise", 0x00ced1 }, { "darkviolet", 0x9400d3 },
	{ "deeppink", 0xff1493 }, { "deepskyblue", 0x00bfff }, { "dimgray", 0x696969 }, { "dimgrey", 0x696969 },
	{ "dodgerblue", 0x1e90ff }, { "firebrick", 0xb22222 }, { "floralwhite", 0xfffaf0 },
	{ "forestgreen", 0x228b22 }, { "fuchsia", 0xff00ff }, { "gainsboro", 0xdcdcdc }, { "ghostwhite", 0xf8f8ff },
	{ "gold", 0xffd700 }, { "goldenrod", 0xdaa520 }, { "gray", 0x808080 }, { "green", 0x008000 },
	{ "greenyellow", 0xadff2f }, { "grey", 0x808080 }, { "honeydew", 0xf0fff0 }, { "hotpink", 0xff69b4 },
	{ "indianred", 0xcd5c5c }, { "indigo", 0x4b0082 }, { "ivory", 0xfffff0 }, { "khaki", 0xf0e68c },
	{ "lavender", 0xe6e6fa }, { "lavenderblush", 0xfff0f5 }, { "lawngreen", 0x7cfc00 },
	{ "lemonchiffon", 0xfffacd }, { "lightblue", 0xadd8e6 }, { "lightcoral", 0xf08080 },
	{ "lightcyan", 0xe0ffff }, { "lightgoldenrodyellow", 0xfafad2 }, { "lightgray", 0xd3d3d3 },
	{ "lightgreen", 0x90ee90 }, { "lightgrey", 0xd3d3d3 }, { "lightpink", 0xffb6c1 },
	{ "lightsalmon", 0xffa07a }, { "lightseagreen", 0x20b2aa }, { "lightskyblue", 0x87cefa },
	{ "lightslategray", 0x778899 }, { "lightslategrey", 0x778899 }, { "lightsteelblue", 0xb0c4de },
	{ "lightyellow", 0xffffe0 }, { "lime", 0x00ff00 }, { "limegreen", 0x32cd32 }, { "linen", 0xfaf0e6 },
	{ "magenta", 0xff00ff }, { "maroon", 0x800000 }, { "mediumaquamarine", 0x66cdaa },
	{ "mediumblue", 0x0000cd }, { "mediumorchid", 0xba55d3 }, { "mediumpurple", 0x9370db },
	{ "mediumseagreen", 0x3cb371 }, { "mediumslateblue", 0x7b68ee }, { "mediumspringgreen", 0x00fa9a },
	{ "mediumturquoise", 0x48d1cc }, { "mediumvioletred", 0xc71585 }, { "midnightblue", 0x191970 },
	{ "mintcream", 0xf5fffa }, { "mistyrose", 0xffe4e1 }, { "moccasin", 0xffe4b5 },
	{ "navajowhite", 0xffdead }, { "navy", 0x000080 }, { "oldlace", 0xfdf5e6 }, { "olive", 0x808000 },
	{ "olivedrab", 0x6b8e23 }, { "orange", 0xffa500 }, { "orangered", 0xff4500 }, { "orchid", 0xda70d6 },
	{ "palegoldenrod", 0xeee8aa }, { "palegreen", 0x98fb98 }, { "paleturquoise", 0xafeeee },
	{ "palevioletred", 0xdb7093 }, { "papayawhip", 0xffefd5 }, { "peachpuff", 0xffdab9 }, { "peru", 0xcd853f },
	{ "pink", 0xffc0cb }, { "plum", 0xdda0dd }, { "powderblue", 0xb0e0e6 }, { "purple", 0x800080 },
	{ "red", 0xff0000 }, { "rosybrown", 0xbc8f8f }, { "royalblue", 0x4169e1 }, { "saddlebrown", 0x8b4513 },
	{ "salmon", 0xfa8072 }, { "sandybrown", 0xf4a460 }, { "seagreen", 0x2e8b57 }, { "seashell", 0xfff5ee },
	{ "sienna", 0xa0522d }, { "silver", 0xc0c0c0 }, { "skyblue", 0x87ceeb }, { "slateblue", 0x6a5acd },
	{ "slategray", 0x708090 }, { "slategrey", 0x708090 }, { "snow", 0xfffafa }, { "springgreen", 0x00ff7f },
	{ "steelblue", 0x4682b4 }, { "tan", 0xd2b48c }, { "teal", 0x008080 }, { "thistle", 0xd8bfd8 },
	{ "tomato", 0xff6347 }, { "turquoise", 0x40e0d0 }, { "violet", 0xee82ee }, { "wheat", 0xf5deb3 },
	{ "white", 0xffffff }, { "whitesmoke", 0xf5f5f5 }, { "yellow", 0xffff00 }, { "yellowgreen", 0x9acd32 },
	{ NULL, 0 }
};

/* "rgb(10%, 20%, 30%)" or "rgb(1, 2, 3)" somewhere in s: the three values
 * as SpamAssassin's dec2hex joins them ("#" + hex of each, at least two
 * digits); 0 if not that form */
static int rgb_form(const char *s, char *out, size_t outlen)
{
	for (const char *p = strstr(s, "rgb("); p; p = strstr(p + 1, "rgb(")) {
		const char *q = p + 4;
		unsigned long v[3];
		int pct = -1, ok = 1;
		for (int k = 0; k < 3 && ok; k++) {
			if (!isdigit((unsigned char)*q)) { ok = 0; break; }
			char *end;
			v[k] = strtoul(q, &end, 10);
			if (v[k] > 100000) v[k] = 100000;
			q = end;
			int is_pct = *q == '%';
			if (pct < 0) pct = is_pct;
			if (pct != is_pct) { ok = 0; break; }
			if (is_pct) q++;
			if (k < 2) {
				if (*q != ',') { ok = 0; break; }
				q++;
				while (isspace((unsigned char)*q)) q++;
			} else {
				while (isspace((unsigned char)*q)) q++;
				if (*q != ')') ok = 0;
			}
		}
		if (!ok) continue;
		size_t o = 0;
		out[o++] = '#';
		for (int k = 0; k < 3; k++) {
			unsigned long x = pct ? (unsigned long)(v[k] / 100.0 * 255) : v[k];
			o += (size_t)snprintf(out + o, outlen - o, "%02lx", x);
			if (o >= outlen) o = outlen - 1;
		}
		return 1;
	}
	return 0;
}

void html_color(const char *in, size_t len, char *out)
{
	char c[64];
	size_t n = 0;
	while (len && isspace((unsigned char)*in)) { in++; len--; }
	while (len && isspace((unsigned char)in[len - 1])) len--;
	if (len >= sizeof c) { strcpy(out, "invalid"); return; }
	for (size_t i = 0; i < len; i++) c[n++] = (char)tolower((unsigned char)in[i]);
	c[n] = '\0';
	size_t lo = 0, hi = sizeof colors / sizeof *colors - 1;       /* sorted by name, NULL last */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(colors[mid].name, c);
		if (r == 0) { snprintf(out, 16, "#%06x", colors[mid].rgb); return; }
		if (r < 0) lo = mid + 1; else hi = mid;
	}
	int hexish = 1;
	for (size_t i = 0; i < n; i++)
		if (!(isxdigit((unsigned char)c[i]) || c[i] == '#')) hexish = 0;
	char buf[64];
	if (!hexish) {
		/* only the rgb() forms with plain numbers and commas qualify */
		const char *p = strstr(c, "rgb(");
		int form = 0;
		if (p) {
			const char *q = p + 4;
			while (*q && (isdigit((unsigned char)*q) || *q == '%' || *q == ',' || *q == ' ')) q++;
			form = *q == ')';
		}
		if (!form) { strcpy(out, "invalid"); return; }
	}
	if (rgb_form(c, buf, sizeof buf)) { strcpy(c, buf); n = strlen(c); }
	if (c[0] != '#') { strcpy(out, "invalid"); return; }
	char h[16];
	size_t hn = 0;
	for (size_t i = 0; i < n; i++)
		if (isxdigit((unsigned char)c[i]) && hn < 6) h[hn++] = c[i];
	/* more than six: the first six (done above); four or five: three */
	if (hn > 3 && hn < 6) hn = 3;
	while (hn % 3) h[hn++] = '0';
	h[hn] = '\0';
	if (hn == 3) snprintf(out, 16, "#%c%c%c%c%c%c", h[0], h[0], h[1], h[1], h[2], h[2]);
	else snprintf(out, 16, "#%.6s", h);
}

/* --- the parse state ------------------------------------------------------- */

#define TAG_HASH 2048             /* > 2 * HTML_MAX_TAGNAMES, a power of two */
enum { F_SCRIPT, F_STYLE, F_A, F_TITLE, NFAST };
static const char *const fast_names[NFAST] = { "script", "style", "a", "title" };

struct style {
	char tag[12];
	char fg[16], bg[16];
	int size;
	int display_none, hidden;
};

struct parser {
	struct html_stats *st;
	int utf8;
	struct style *styles;         /* text_style stack; [0] the default */
	size_t nstyles;
	size_t overflow;              /* pushes past HTML_MAX_STYLE_DEPTH */
	int basefont;
	int title_index;              /* -1: none yet */
	/* the rendered text */
	char *text;
	size_t tlen, tcap;
	size_t last_start;            /* where the last piece begins; (size_t)-1 = none */
	int last_ws, last_invisible;
	int anchor_open;              /* an <a> pushed an anchor */
	unsigned short hidx[TAG_HASH];/* tag name -> index + 1 in st->tagv */
	int fast[NFAST];              /* index in st->tagv of script, style, a, title; -1 */
};

static unsigned name_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++) { h ^= (unsigned char)*s; h *= 16777619u; }
	return h;
}

/* the "inside" counter of a tag name: a hash over the names seen (at most
 * HTML_MAX_TAGNAMES, so the table never fills) */
static struct html_tagcount *tag_entry(struct parser *p, const char *name, int create)
{
	struct html_stats *st = p->st;
	char key[sizeof st->tagv->name];
	size_t kl = 0;
	while (name[kl] && kl + 1 < sizeof key) { key[kl] = name[kl]; kl++; }
	key[kl] = '\0';
	unsigned i = name_hash(key) & (TAG_HASH - 1);
	while (p->hidx[i]) {
		struct html_tagcount *t = &st->tagv[p->hidx[i] - 1];
		if (strcmp(t->name, key) == 0) return t;
		i = (i + 1) & (TAG_HASH - 1);
	}
	if (!create || st->ntags >= HTML_MAX_TAGNAMES) return NULL;
	if (!st->tagv) st->tagv = xrealloc(NULL, HTML_MAX_TAGNAMES * sizeof *st->tagv);
	struct html_tagcount *t = &st->tagv[st->ntags++];
	memcpy(t->name, key, sizeof key);
	t->inside = 0;
	t->cls = classify(key);
	p->hidx[i] = (unsigned short)st->ntags;
	for (int k = 0; k < NFAST; k++)
		if (strcmp(key, fast_names[k]) == 0) p->fast[k] = (int)st->ntags - 1;
	return t;
}

static int inside_fast(const struct parser *p, int which)
{
	return p->fast[which] >= 0 ? p->st->tagv[p->fast[which]].inside : 0;
}


/* white space as display_text's collapse sees it */
static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
/* SpamAssassin's [^\s\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]: not space, not ASCII punctuation */
static int wordish(unsigned char c)
{
	if (is_ws(c)) return 0;
	if ((c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e))
		return 0;
	return 1;
}

static void text_put(struct parser *p, const char *s, size_t n)
{
	if (p->tlen + n + 1 > HTML_MAX_INPUT * 2) return;
	if (p->tlen + n + 1 > p->tcap) {
		p->tcap = (p->tlen + n + 1) * 2;
		p->text = xrealloc(p->text, p->tcap);
	}
	memcpy(p->text + p->tlen, s, n);
	p->tlen += n;
	p->text[p->tlen] = '\0';
}

/* display_text: one piece of rendered text */
static void display(struct parser *p, const char *s, size_t n, int whitespace, int invisible)
{
	int have_last = p->last_start != (size_t)-1;
	if (whitespace) {
		/* a line break swallows the space the visible text before it ended with */
		if (have_last && !p->last_ws && !p->last_invisible && p->tlen > p->last_start &&
		    p->text[p->tlen - 1] == ' ')
			p->text[--p->tlen] = '\0';
		p->last_start = p->tlen;
		text_put(p, s, n);
	} else {
		p->last_start = p->tlen;
		int lead_strip = have_last && !invisible && p->last_ws;
		int prev_space = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];
			int sp = is_ws(c);
			if (!sp && c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0 && !p->utf8) { sp = 1; i++; }
			if (sp) {
				if (prev_space) continue;
				prev_space = 1;
				if (lead_strip && p->tlen == p->last_start) continue;
				text_put(p, " ", 1);
			} else {
				prev_space = 0;
				text_put(p, s + i, 1);
			}
		}
	}
	p->last_ws = whitespace;
	p->last_invisible = invisible;
}

/* --- text style (fonts, colours) ------------------------------------------- */

static void style_push(struct parser *p, const struct style *s)
{
	if (p->nstyles >= HTML_MAX_STYLE_DEPTH) { p->overflow++; return; }
	p->styles[p->nstyles++] = *s;
}

static int style_has(struct parser *p, const char *tag)
{
	for (size_t i = 0; i < p->nstyles; i++)
		if (strcmp(p->styles[i].tag, tag) == 0) return 1;
	return 0;
}

static void close_table_tag(struct parser *p, const char *tag)
{
	if (!style_has(p, tag)) return;
	while (p->nstyles > 1) {
		const char *top = p->styles[p->nstyles - 1].tag;
		int pop = strcmp(tag, "td") == 0 ? (strcmp(top, "font") == 0 || strcmp(top, "td") == 0)
		        : (strcmp(top, "font") == 0 || strcmp(top, "td") == 0 || strcmp(top, "tr") == 0);
		if (!pop) break;
		p->nstyles--;
	}
}

static void close_tag(struct parser *p, const char *tag)
{
	if (p->overflow) { p->overflow--; return; }
	if (!style_has(p, tag)) return;
	while (p->nstyles > 1) {
		int last = strcmp(p->styles[p->nstyles - 1].tag, tag) == 0;
		p->nstyles--;
		if (last) break;
	}
}

struct attr { const char *name; char *value; };

static const char *attr_get(const struct attr *a, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(a[i].name, name) == 0) return a[i].value;
	return NULL;
}

/* the CSS "background:" shorthand's last layer: its first token that is a colour */
static void css_background(const char *v, size_t len, char *bg)
{
	/* tokens split at spaces and commas outside () and quotes; the last
	 * comma-separated layer counts */
	size_t layer = 0;
	int depth = 0;
	char q = 0;
	for (size_t i = 0; i < len; i++) {
		char c = v[i];
		if (q) { if (c == q) q = 0; continue; }
		if (c == '"' || c == '\'') q = c;
		else if (c == '(') depth = 1;
		else if (c == ')') depth = 0;
		else if (c == ',' && !depth) layer = i + 1;
	}
	size_t i = layer;
	while (i < len) {
		while (i < len && v[i] == ' ') i++;
		size_t s = i;
		depth = 0;
		q = 0;
		while (i < len) {
			char c = v[i];
			if (q) { if (c == q) q = 0; i++; continue; }
			if (c == '"' || c == '\'') q = c;
			else if (c == '(') depth = 1;
			else if (c == ')') { depth = 0; i++; break; }
			else if (c == ' ' && !depth) break;
			i++;
		}
		if (i > s) {
			char col[16];
			html_color(v + s, i - s, col);
			if (strcmp(col, "invalid") != 0) { strcpy(bg, col); return; }
		}
	}
}

static void apply_style_attr(struct parser *p, struct style *ns, const char *style)
{
	const char *s = style;
	while (*s) {
		const char *e = strchr(s, ';');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		char decl[512];
		if (n >= sizeof decl) n = sizeof decl - 1;
		memcpy(decl, s, n);
		decl[n] = '\0';
		s = e ? e + 1 : s + strlen(s);
		char *d = decl;
		while (isspace((unsigned char)*d)) d++;
		size_t dl = strlen(d);
		while (dl && isspace((unsigned char)d[dl - 1])) d[--dl] = '\0';
		int bgc = strncasecmp(d, "background-color:", 17) == 0;
		if (bgc || strncasecmp(d, "color:", 6) == 0) {
			char *v = d + (bgc ? 17 : 6);
			while (isspace((unsigned char)*v)) v++;
			if (!*v) continue;
			for (char *c = v; *c; c++) *c = (char)tolower((unsigned char)*c);
			/* "!important" at the end is no part of the colour */
			char *bang = strrchr(v, '!');
			if (bang && strcmp(bang + 1 + strspn(bang + 1, " \t"), "important") == 0) {
				*bang = '\0';
				size_t vl = strlen(v);
				while (vl && isspace((unsigned char)v[vl - 1])) v[--vl] = '\0';
			}
			char *target = bgc ? ns->bg : ns->fg;
			if (strstr(v, "rgb")) {
				unsigned long c3[3] = { 0, 0, 0 };
				int k = 0;
				char num[32];
				size_t nl = 0;
				for (const char *c = v;; c++) {
					if (isdigit((unsigned char)*c)) { if (nl + 1 < sizeof num) num[nl++] = *c; continue; }
					if (*c == ',' || !*c) {
						num[nl] = '\0';
						if (k < 3) { unsigned long x = nl ? strtoul(num, NULL, 10) : 0; c3[k++] = x > 255 ? 255 : x; }
						nl = 0;
						if (!*c) break;
					}
				}
				snprintf(target, 16, "#%02lx%02lx%02lx", c3[0], c3[1], c3[2]);
			} else if (strcmp(v, "inherit") == 0) {
				/* keeps the parent's */
			} else if (strcmp(v, "transparent") == 0) {
				strcpy(target, "transparent");
			} else {
				html_color(v, strlen(v), target);
			}
		} else if (strncmp(d, "background:", 11) == 0) {
			char *v = d + 11;
			while (isspace((unsigned char)*v)) v++;
			if (!*v) continue;
			for (char *c = v; *c; c++) *c = (char)tolower((unsigned char)*c);
			css_background(v, strlen(v), ns->bg);
		} else {
			/* "name: value": only display and visibility matter here */
			char *colon = strchr(d, ':');
			if (!colon) continue;
			char *nm_end = colon;
			while (nm_end > d && isspace((unsigned char)nm_end[-1])) nm_end--;
			int okname = nm_end > d;
			for (char *c = d; c < nm_end; c++)
				if (!(isalpha((unsigned char)*c) || *c == '_' || *c == '-')) okname = 0;
			char *v = colon + 1;
			while (isspace((unsigned char)*v)) v++;
			if (!okname || !*v) continue;
			size_t nml = (size_t)(nm_end - d);
			if (nml == 7 && strncmp(d, "display", 7) == 0) ns->display_none = strcasecmp(v, "none") == 0;
			else if (nml == 10 && strncmp(d, "visibility", 10) == 0) ns->hidden = strcasecmp(v, "hidden") == 0;
		}
	}
	if (strcmp(ns->bg, "transparent") == 0) strcpy(ns->bg, p->styles[p->nstyles - 1].bg);
	if (strcmp(ns->fg, "transparent") == 0) strcpy(ns->fg, ns->bg);
}

static int ok_attribute(const char *tag, const char *name)
{
	static const struct { const char *tag, *names; } ok[] = {
		{ "basefont", " color face size " }, { "body", " text bgcolor link alink vlink background " },
		{ "font", " color face size " }, { "marquee", " bgcolor background " },
		{ "table", " bgcolor style " }, { "td", " bgcolor style " }, { "th", " bgcolor style " },
		{ "tr", " bgcolor style " }, { "span", " style " }, { "p", " style " }, { "div", " style " },
		{ "a", " style " }, { NULL, NULL }
	};
	char key[40];
	snprintf(key, sizeof key, " %s ", name);
	for (size_t i = 0; ok[i].tag; i++)
		if (strcmp(ok[i].tag, tag) == 0) return strstr(ok[i].names, key) != NULL;
	return 0;
}

static void text_style(struct parser *p, const char *tag0, const struct attr *a, size_t na, int start)
{
	const char *tag = strcmp(tag0, "th") == 0 ? "td" : tag0;
	if (!start) {
		if (strcmp(tag, "body") != 0) close_tag(p, tag);
		return;
	}
	if (strcmp(tag, "basefont") == 0) {
		const char *sz = attr_get(a, na, "size");
		if (sz) {
			while (isspace((unsigned char)*sz)) sz++;
			if (isdigit((unsigned char)*sz)) { p->basefont = atoi(sz); return; }
		}
	}
	if (strcmp(tag, "td") == 0 || strcmp(tag, "tr") == 0) close_table_tag(p, tag);
	struct style ns = p->styles[p->nstyles - 1];
	snprintf(ns.tag, sizeof ns.tag, "%s", tag);
	if (strcmp(tag, "big") == 0 || strcmp(tag, "small") == 0) {
		ns.size += tag[0] == 'b' ? 1 : -1;
		style_push(p, &ns);
		return;
	}
	for (size_t i = 0; i < na; i++) {
		const char *name = a[i].name, *v = a[i].value;
		if (!ok_attribute(tag, name)) continue;
		if (strcmp(name, "text") == 0 || strcmp(name, "color") == 0) {
			html_color(v, strlen(v), ns.fg);
		} else if (strcmp(name, "size") == 0) {
			const char *s = v;
			while (isspace((unsigned char)*s)) s++;
			if ((*s == '+' || *s == '-') && isdigit((unsigned char)s[1])) {
				long d = strtol(s + 1, NULL, 10);
				if (d > 1000) d = 1000;
				ns.size = p->basefont + (*s == '-' ? -(int)d : (int)d);
			} else if (isdigit((unsigned char)*s)) {
				long d = strtol(s, NULL, 10);
				ns.size = d > 100000 ? 100000 : (int)d;
			}
		} else if (strcmp(name, "style") == 0) {
			apply_style_attr(p, &ns, v);
		}
		/* bgcolor attributes do not change the colour SpamAssassin
		 * compares (it rewrites the attribute, not the style) */
		if (ns.size > p->st->max_size) p->st->max_size = ns.size;
		else if (ns.size < p->st->min_size) p->st->min_size = ns.size;
	}
	style_push(p, &ns);
}

/* html_font_invisible: is this text hidden (and is its colour odd)? */
static int font_invisible(struct parser *p)
{
	const struct style *s = &p->styles[p->nstyles - 1];
	size_t fl = strlen(s->fg), bl = strlen(s->bg);
	const char *f6 = fl > 6 ? s->fg + fl - 6 : s->fg, *b6 = bl > 6 ? s->bg + bl - 6 : s->bg;
	if (strcmp(f6, b6) == 0) { p->st->font_low_contrast = 1; return 1; }
	const char *f = s->fg[0] == '#' ? s->fg + 1 : s->fg, *b = s->bg[0] == '#' ? s->bg + 1 : s->bg;
	if (strlen(f) == 6 && strspn(f, "0123456789abcdef") == 6 && strlen(b) == 6 && strspn(b, "0123456789abcdef") == 6) {
		long fv = strtol(f, NULL, 16), bv = strtol(b, NULL, 16);
		double dr = 0.2126 * (double)((fv >> 16) - (bv >> 16)), dg = 0.7152 * (double)(((fv >> 8) & 0xff) - ((bv >> 8) & 0xff)),
		       db = 0.0722 * (double)((fv & 0xff) - (bv & 0xff));
		if (sqrt(dr * dr + dg * dg + db * db) < 12) { p->st->font_low_contrast = 1; return 1; }
	}
	if (strcmp(s->fg, "invalid") == 0 || strcmp(s->bg, "invalid") == 0) { p->st->font_invalid_color = 1; return 1; }
	if (s->size <= 1) return 1;
	return s->display_none || s->hidden;
}

/* --- handlers --------------------------------------------------------------- */

/* SpamAssassin's canon_uri: trimmed (white space and NBSP), cut at MAX_URI_LENGTH */
static char *canon_uri(struct parser *p, const char *v)
{
	size_t n = strlen(v);
	for (;;) {
		if (n && is_ws((unsigned char)*v)) { v++; n--; continue; }
		if (n >= 2 && (unsigned char)v[0] == 0xc2 && (unsigned char)v[1] == 0xa0) { v += 2; n -= 2; continue; }
		break;
	}
	for (;;) {
		if (n && is_ws((unsigned char)v[n - 1])) { n--; continue; }
		if (n >= 2 && (unsigned char)v[n - 2] == 0xc2 && (unsigned char)v[n - 1] == 0xa0) { n -= 2; continue; }
		break;
	}
	if (n > HTML_MAX_URI_LEN) { p->st->uri_truncated = 1; n = HTML_MAX_URI_LEN; }
	char *c = xrealloc(NULL, n + 1);
	memcpy(c, v, n);
	c[n] = '\0';
	return c;
}

static void uri_attr(struct parser *p, const char *tag, const struct attr *a, size_t na)
{
	/* only the length limit and iframes matter to the evals */
	static const char *const uri_attrs[] = { "background", "href", "src", "action", "data-saferedirecturl", NULL };
	for (size_t i = 0; i < na; i++) {
		if (!in_list(uri_attrs, a[i].name)) continue;
		char *u = canon_uri(p, a[i].value);
		if (u[0] && strcmp(tag, "iframe") == 0 && strcmp(a[i].name, "src") == 0) p->st->iframe_src = 1;
		free(u);
	}
}

static void anchor_add(struct parser *p, char *href)
{
	struct html_stats *st = p->st;
	if (st->nanchors >= HTML_MAX_ITEMS) { free(href); p->anchor_open = 0; return; }
	if (st->nanchors == st->capanchors) {
		st->capanchors = st->capanchors ? st->capanchors * 2 : 8;
		st->anchors = xrealloc(st->anchors, st->capanchors * sizeof *st->anchors);
	}
	st->anchors[st->nanchors++] = (struct html_anchor){ href, xrealloc(NULL, 1), 0 };
	st->anchors[st->nanchors - 1].text[0] = '\0';
	strs_push(&st->anchor_texts, "", 0);
	p->anchor_open = 1;
}

static void anchor_text(struct parser *p, const char *s, size_t n)
{
	struct html_stats *st = p->st;
	if (!p->anchor_open || !st->nanchors) return;
	struct html_anchor *an = &st->anchors[st->nanchors - 1];
	size_t room = HTML_MAX_ITEM_LEN > an->textlen ? HTML_MAX_ITEM_LEN - an->textlen : 0;
	size_t k = n < room ? n : room;
	an->text = xrealloc(an->text, an->textlen + k + 1);
	memcpy(an->text + an->textlen, s, k);
	an->textlen += k;
	an->text[an->textlen] = '\0';
	strs_append(&st->anchor_texts, s, n);
}

static int face_ok(const char *face)
{
	/* ^\s*["'.]?[a-z ][a-z -]*[a-z]\d?["']?(?:,\s*["']?[a-z][a-z -]*[a-z]\d?["']?)*;?$  (case-insensitive) */
	const char *s = face;
	while (isspace((unsigned char)*s)) s++;
	int first = 1;
	for (;;) {
		if (first) { if (*s == '"' || *s == '\'' || *s == '.') s++; }
		else if (*s == '"' || *s == '\'') s++;
		/* a run of letters, spaces and dashes that starts with a letter
		 * (or a space, first name only) and ends with a letter */
		const char *w = s;
		if (!(isalpha((unsigned char)*s) || (first && *s == ' '))) return 0;
		s++;
		while (isalpha((unsigned char)*s) || *s == ' ' || *s == '-') s++;
		/* backtrack to the last letter */
		const char *e = s;
		while (e > w + 1 && !isalpha((unsigned char)e[-1])) e--;
		if (e == w + 1 && !isalpha((unsigned char)*w)) return 0;
		if (!isalpha((unsigned char)e[-1]) || e - w < 2) return 0;
		s = e;
		if (isdigit((unsigned char)*s)) s++;
		if (*s == '"' || *s == '\'') s++;
		first = 0;
		if (*s == ',') {
			s++;
			while (isspace((unsigned char)*s)) s++;
			continue;
		}
		if (*s == ';') s++;
		return *s == '\0' || (*s == '\n' && !s[1]);
	}
}

static void html_tests(struct parser *p, const char *tag, const struct attr *a, size_t na)
{
	struct html_stats *st = p->st;
	const char *v;
	if (strcmp(tag, "font") == 0 && (v = attr_get(a, na, "face")) && !face_ok(v)) st->font_face_bad = 1;
	if (strcmp(tag, "img") == 0 && inside_fast(p, F_A) > 0) anchor_text(p, "<img>\n", 6);
	if (strcmp(tag, "img") == 0 && attr_get(a, na, "width") && attr_get(a, na, "height")) {
		double dim[2];
		const char *val[2] = { attr_get(a, na, "width"), attr_get(a, na, "height") };
		for (int k = 0; k < 2; k++) {
			const char *s = val[k];
			size_t dl = strspn(s, "0123456789");
			dim[k] = 0;
			if (dl && dl < 12 && (s[dl] == '\0' || (s[dl] == '%' && s[dl + 1] == '\0'))) {
				dim[k] = strtod(s, NULL);
				if (s[dl] == '%') dim[k] *= k == 0 ? 8 : 6;
			}
			if (dim[k] <= 0) dim[k] = 200;
		}
		st->image_area += dim[0] * dim[1];
	}
	if (strcmp(tag, "form") == 0 && (v = attr_get(a, na, "action")) && strcasestr(v, "mailto:")) st->form_action_mailto = 1;
	if (strcmp(tag, "object") == 0 || strcmp(tag, "embed") == 0) st->embeds = 1;
	if (strcmp(tag, "a") == 0) {
		v = attr_get(a, na, "href");
		anchor_add(p, canon_uri(p, v ? v : ""));
	}
	if (strcmp(tag, "title") == 0) {
		p->title_index++;
		strs_push(&st->title, "", 0);
	}
	const char *he, *ct;
	if (strcmp(tag, "meta") == 0 && (he = attr_get(a, na, "http-equiv")) && (ct = attr_get(a, na, "content")) &&
	    strcasestr(he, "content-type")) {
		/* \bcharset\s*=\s*["']?([^"']+) */
		for (const char *c = strcasestr(ct, "charset"); c; c = strcasestr(c + 1, "charset")) {
			if (c > ct && (isalnum((unsigned char)c[-1]) || c[-1] == '_')) continue;
			const char *q = c + 7;
			while (isspace((unsigned char)*q)) q++;
			if (*q != '=') continue;
			q++;
			while (isspace((unsigned char)*q)) q++;
			if (*q == '"' || *q == '\'') q++;
			size_t n = strcspn(q, "\"'");
			if (n) strs_push(&st->charsets, q, n);
			break;
		}
	}
}

static void whitespace_for(struct parser *p, unsigned cls)
{
	if (cls & TC_WS_LINE) display(p, "\n", 1, 1, 0);
	else if (cls & TC_WS_SPACE) display(p, " ", 1, 1, 0);
	else if (cls & TC_WS_PARA) display(p, "\n\n", 2, 1, 0);
}

static int namespace_tag(const char *t)
{
	/* ^(?:o|st\d):[\w-]+/?$ */
	const char *s;
	if (t[0] == 'o' && t[1] == ':') s = t + 2;
	else if (t[0] == 's' && t[1] == 't' && isdigit((unsigned char)t[2]) && t[3] == ':') s = t + 4;
	else return 0;
	size_t n = 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == '-') n++;
	if (!n) return 0;
	return s[n] == '\0' || (s[n] == '/' && !s[n + 1]);
}

/* a start or end tag; returns the tag's classes */
static unsigned on_tag(struct parser *p, const char *tag, const struct attr *a, size_t na, int start)
{
	struct html_stats *st = p->st;
	struct html_tagcount *t = tag_entry(p, tag, 0);
	int seen = t != NULL;
	if (!t) t = tag_entry(p, tag, 1);
	unsigned cls = t ? t->cls : classify(tag);
	int ns = (cls & TC_NAMESPACE) != 0;
	if ((cls & TC_KNOWN) || ns) {
		st->elements++;
		st->has_elements = 1;
		if (!seen) { st->elements_seen++; st->has_elements_seen = 1; }
	}
	st->tags++;
	if (!seen) st->tags_seen++;
	if (t) {
		t->inside += start ? 1 : -1;
		if (t->inside < 0) { t->inside = 0; st->closed_extra++; }
	}
	if (ns) return cls;
	if (!(cls & (TC_KNOWN | TC_TRICK))) return cls;
	if (cls & TC_TEXT_STYLE) text_style(p, tag, a, na, start);
	whitespace_for(p, cls);
	if (start) {
		uri_attr(p, tag, a, na);
		html_tests(p, tag, a, na);
	}
	return cls;
}

static void on_text(struct parser *p, const char *s, size_t n)
{
	struct html_stats *st = p->st;
	if (!n) return;
	if (inside_fast(p, F_SCRIPT) > 0) { strs_push(&st->script, s, n); return; }
	if (inside_fast(p, F_STYLE) > 0) return;
	if (inside_fast(p, F_A) > 0) anchor_text(p, s, n);
	if (inside_fast(p, F_TITLE) > 0 && p->title_index >= 0) strs_append(&st->title, s, n);
	int invisible = 0, visible_chars = 0;
	for (size_t i = 0; i < n && !visible_chars; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_ws(c)) continue;
		if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0) { i++; continue; }
		visible_chars = 1;
	}
	if (visible_chars) invisible = font_invisible(p);
	if (p->last_start != (size_t)-1) {
		/* a word split by markup ("Vi<b></b>agra") */
		if (wordish((unsigned char)s[0]) && p->tlen > p->last_start && wordish((unsigned char)p->text[p->tlen - 1])) {
			st->obfuscation++;
			st->has_obfuscation = 1;
		}
	}
	display(p, s, n, 0, invisible);
}

/* --- entities ---------------------------------------------------------------- */

static size_t put_utf8(char *o, unsigned long cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
	if (cp < 0x80) { o[0] = (char)cp; return 1; }
	if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static const struct { const char *name; unsigned cp; } entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' }, { "nbsp", 0xa0 },
	{ "copy", 0xa9 }, { "reg", 0xae }, { "trade", 0x2122 }, { "hellip", 0x2026 }, { "mdash", 0x2014 },
	{ "ndash", 0x2013 }, { "lsquo", 0x2018 }, { "rsquo", 0x2019 }, { "ldquo", 0x201c }, { "rdquo", 0x201d },
	{ "bull", 0x2022 }, { "middot", 0xb7 }, { "laquo", 0xab }, { "raquo", 0xbb }, { "euro", 0x20ac },
	{ "pound", 0xa3 }, { "yen", 0xa5 }, { "cent", 0xa2 }, { "sect", 0xa7 }, { "para", 0xb6 }, { "deg", 0xb0 },
	{ "plusmn", 0xb1 }, { "times", 0xd7 }, { "divide", 0xf7 }, { "iexcl", 0xa1 }, { "iquest", 0xbf },
	{ "shy", 0xad }, { "eacute", 0xe9 }, { "egrave", 0xe8 }, { "agrave", 0xe0 }, { "aacute", 0xe1 },
	{ "uuml", 0xfc }, { "ouml", 0xf6 }, { "auml", 0xe4 }, { "Uuml", 0xdc }, { "Ouml", 0xd6 }, { "Auml", 0xc4 },
	{ "szlig", 0xdf }, { "ccedil", 0xe7 }, { "ntilde", 0xf1 }, { "oacute", 0xf3 }, { "iacute", 0xed },
	{ "uacute", 0xfa }, { "zwnj", 0x200c }, { "zwj", 0x200d }, { "thinsp", 0x2009 }, { "ensp", 0x2002 },
	{ "emsp", 0x2003 }, { NULL, 0 }
};

/* decode entities of s[0..n) into a new string (length in *outlen) */
static char *decode_entities(const char *s, size_t n, size_t *outlen)
{
	char *o = xrealloc(NULL, n + 1);
	size_t j = 0;
	for (size_t i = 0; i < n;) {
		if (s[i] != '&') { o[j++] = s[i++]; continue; }
		size_t k = i + 1;
		unsigned long cp = 0;
		int ok = 0;
		if (k < n && s[k] == '#') {
			k++;
			int hex = k < n && (s[k] == 'x' || s[k] == 'X');
			if (hex) k++;
			size_t d0 = k;
			while (k < n && (hex ? isxdigit((unsigned char)s[k]) : isdigit((unsigned char)s[k])) && k - d0 < 8) {
				cp = cp * (hex ? 16 : 10) + (unsigned long)(isdigit((unsigned char)s[k]) ? s[k] - '0'
				                                           : (tolower((unsigned char)s[k]) - 'a' + 10));
				k++;
			}
			ok = k > d0;
		} else {
			size_t a0 = k;
			while (k < n && isalnum((unsigned char)s[k]) && k - a0 < 10) k++;
			for (size_t e = 0; entities[e].name && k > a0; e++)
				if (strlen(entities[e].name) == k - a0 && memcmp(entities[e].name, s + a0, k - a0) == 0) {
					cp = entities[e].cp;
					ok = 1;
					break;
				}
		}
		if (!ok) { o[j++] = s[i++]; continue; }
		if (k < n && s[k] == ';') k++;
		char u[4];
		size_t ul = put_utf8(u, cp);
		if (j + ul > k - i + j) {            /* never longer than what it replaces */
			o[j++] = s[i++];
			continue;
		}
		memcpy(o + j, u, ul);
		j += ul;
		i = k;
	}
	o[j] = '\0';
	*outlen = j;
	return o;
}

/* --- the tokenizer ------------------------------------------------------------ */

static int name_char(unsigned char c) { return isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'; }

static void attrs_free(struct attr *a, size_t n)
{
	for (size_t x = 0; x < n; x++) { free((char *)a[x].name); free(a[x].value); }
}

/* a start or end tag at h[i] == '<': its end (after '>'), or 0 if it does not end */
static size_t parse_tag(struct parser *p, const char *h, size_t len, size_t i, char *lit, size_t litlen)
{
	size_t k = i + 1;
	int end = h[k] == '/';
	if (end) k++;
	char name[64];
	size_t nl = 0;
	while (k < len && name_char((unsigned char)h[k])) {
		if (nl + 1 < sizeof name) name[nl++] = (char)tolower((unsigned char)h[k]);
		k++;
	}
	name[nl] = '\0';
	struct attr a[64];
	size_t na = 0;
	for (;;) {
		while (k < len && (is_ws((unsigned char)h[k]) || h[k] == '/')) k++;
		if (k >= len) {
			attrs_free(a, na);
			return 0;
		}
		if (h[k] == '>') { k++; break; }
		size_t an = k;
		while (k < len && !is_ws((unsigned char)h[k]) && h[k] != '=' && h[k] != '>') k++;
		size_t anl = k - an;
		while (k < len && is_ws((unsigned char)h[k])) k++;
		char *val;
		size_t vl;
		if (k < len && h[k] == '=') {
			k++;
			while (k < len && is_ws((unsigned char)h[k])) k++;
			if (k < len && (h[k] == '"' || h[k] == '\'')) {
				char q = h[k++];
				size_t vs = k;
				while (k < len && h[k] != q) k++;
				if (k >= len) { attrs_free(a, na); return 0; }
				val = decode_entities(h + vs, k - vs, &vl);
				k++;
			} else {
				size_t vs = k;
				while (k < len && !is_ws((unsigned char)h[k]) && h[k] != '>') k++;
				val = decode_entities(h + vs, k - vs, &vl);
			}
		} else {
			/* a boolean attribute: its value is its name */
			val = decode_entities(h + an, anl, &vl);
			for (char *c = val; *c; c++) *c = (char)tolower((unsigned char)*c);
		}
		if (!end && na < sizeof a / sizeof *a && anl && anl < 40) {
			char *nm = xrealloc(NULL, anl + 1);
			for (size_t x = 0; x < anl; x++) nm[x] = (char)tolower((unsigned char)h[an + x]);
			nm[anl] = '\0';
			int dup = 0;
			for (size_t x = 0; x < na; x++) if (strcmp(a[x].name, nm) == 0) dup = 1;
			if (dup) { free(nm); free(val); }
			else { a[na].name = nm; a[na].value = val; na++; }
		} else {
			free(val);
		}
	}
	unsigned cls = on_tag(p, name, a, na, !end);
	attrs_free(a, na);
	if (!end && (cls & TC_LITERAL)) snprintf(lit, litlen, "%.15s", name);
	return k;
}

static void emit_text(struct parser *p, const char *s, size_t n, int literal)
{
	if (!n) return;
	if (literal) { on_text(p, s, n); return; }
	size_t dl;
	char *d = decode_entities(s, n, &dl);
	on_text(p, d, dl);
	free(d);
}

static void tokenize(struct parser *p, const char *h, size_t len)
{
	char lit[16] = "";                 /* inside a literal element: its name */
	size_t i = 0, text_start = 0;
	/* a search for "-->" or '>' that failed from i fails from every later
	 * offset too: remembered, so a million "<!--" or "<!x" without an end
	 * cost one scan of the rest, not one each */
	int no_comment_end = 0, no_gt = 0;
	while (i < len) {
		if (lit[0]) {
			/* literal content up to "</name" */
			size_t ln = strlen(lit), k = i;
			const char *end = NULL;
			while (k + 2 + ln <= len) {
				const char *lt = memchr(h + k, '<', len - k);
				if (!lt) break;
				size_t at = (size_t)(lt - h);
				if (at + 2 + ln <= len && h[at + 1] == '/' && strncasecmp(h + at + 2, lit, ln) == 0 &&
				    (at + 2 + ln == len || !name_char((unsigned char)h[at + 2 + ln]))) { end = lt; break; }
				k = at + 1;
			}
			if (!end || strcmp(lit, "plaintext") == 0) {
				emit_text(p, h + i, len - i, 1);
				return;
			}
			emit_text(p, h + i, (size_t)(end - h) - i, 1);
			lit[0] = '\0';
			i = (size_t)(end - h);
			text_start = i;
			size_t after = parse_tag(p, h, len, i, lit, sizeof lit);
			if (!after) { emit_text(p, h + i, len - i, 0); return; }
			i = text_start = after;
			continue;
		}
		const char *lt = memchr(h + i, '<', len - i);
		if (!lt) break;
		i = (size_t)(lt - h);
		unsigned char c1 = i + 1 < len ? (unsigned char)h[i + 1] : 0;
		size_t after = 0;
		int markup = 1;
		if (isalpha(c1) || (c1 == '/' && i + 2 < len && isalpha((unsigned char)h[i + 2]))) {
			emit_text(p, h + text_start, i - text_start, 0);
			after = parse_tag(p, h, len, i, lit, sizeof lit);
			if (!after) { text_start = i; break; }        /* unterminated: text */
		} else if (c1 == '!') {
			const char *gt;
			if (i + 3 < len && h[i + 2] == '-' && h[i + 3] == '-') {
				const char *e = no_comment_end ? NULL : memmem(h + i + 4, len - i - 4, "-->", 3);
				if (!e) { markup = 0; no_comment_end = 1; }
				else {
					emit_text(p, h + text_start, i - text_start, 0);
					after = (size_t)(e - h) + 3;
					strs_push(&p->st->comment, h + i, after - i);
				}
			} else if (!no_gt && (gt = memchr(h + i, '>', len - i))) {
				emit_text(p, h + text_start, i - text_start, 0);
				after = (size_t)(gt - h) + 1;
				if (i + 2 < len && isalpha((unsigned char)h[i + 2])) {
					/* a declaration; <!doctype> counts as a known tag */
					if (after - i >= 9 && strncasecmp(h + i, "<!doctype", 9) == 0) {
						p->st->elements++;
						p->st->has_elements = 1;
						p->st->tags++;
						struct html_tagcount *t = tag_entry(p, "!doctype", 1);
						if (t) t->inside = 0;
					}
				} else {
					strs_push(&p->st->comment, h + i, after - i);   /* "<!...>": a comment */
				}
			} else {
				markup = 0;
				no_gt = 1;
			}
		} else if (c1 == '?') {
			const char *gt = no_gt ? NULL : memchr(h + i, '>', len - i);
			if (gt) {
				emit_text(p, h + text_start, i - text_start, 0);
				after = (size_t)(gt - h) + 1;
			} else {
				markup = 0;
				no_gt = 1;
			}
		} else {
			markup = 0;
		}
		if (!markup) { i++; continue; }
		i = text_start = after;
	}
	emit_text(p, h + text_start, len - text_start, 0);
}

/* --- the document --------------------------------------------------------------- */

/* SpamAssassin's parse() first: &nbsp; as a space, <name/> as <name>,
 * curly double quotes as straight ones */
static char *prepare(const char *h, size_t len, size_t *outlen)
{
	char *o = xrealloc(NULL, len + 1);
	size_t j = 0;
	for (size_t i = 0; i < len;) {
		if (h[i] == '&' && i + 6 <= len && memcmp(h + i, "&nbsp;", 6) == 0) { o[j++] = ' '; i += 6; continue; }
		if ((unsigned char)h[i] == 0xe2 && i + 2 < len && (unsigned char)h[i + 1] == 0x80 &&
		    ((unsigned char)h[i + 2] == 0x9c || (unsigned char)h[i + 2] == 0x9d)) { o[j++] = '"'; i += 3; continue; }
		if (h[i] == '<' && i + 1 < len && (isalnum((unsigned char)h[i + 1]) || h[i + 1] == '_')) {
			size_t k = i + 1;
			while (k < len && (isalnum((unsigned char)h[k]) || h[k] == '_')) k++;
			size_t w = k;
			while (k < len && is_ws((unsigned char)h[k])) k++;
			if (k + 1 < len && h[k] == '/' && h[k + 1] == '>') {
				memcpy(o + j, h + i, w - i);
				j += w - i;
				o[j++] = '>';
				i = k + 2;
				continue;
			}
			memcpy(o + j, h + i, w - i);
			j += w - i;
			i = w;
			continue;
		}
		o[j++] = h[i++];
	}
	o[j] = '\0';
	*outlen = j;
	return o;
}

static size_t count_chars(const char *s, size_t n, int utf8)
{
	if (!utf8) return n;
	size_t c = 0;
	for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

struct html_stats *html_stats_parse(const char *html, size_t len, int utf8)
{
	struct html_stats *st = calloc(1, sizeof *st);
	if (!st) abort();
	if (len > HTML_MAX_INPUT) len = HTML_MAX_INPUT;
	st->length = (double)count_chars(html, len, utf8);
	st->max_size = st->min_size = 3;
	struct parser p = { .st = st, .utf8 = utf8, .basefont = 3, .title_index = -1, .last_start = (size_t)-1,
	                    .fast = { -1, -1, -1, -1 } };
	p.styles = xrealloc(NULL, HTML_MAX_STYLE_DEPTH * sizeof *p.styles);
	p.styles[0] = (struct style){ .tag = "default", .fg = "#000000", .bg = "#ffffff", .size = 3 };
	p.nstyles = 1;
	size_t plen;
	char *h = prepare(html, len, &plen);
	tokenize(&p, h, plen);
	/* SpamAssassin closes a style or script left open */
	static const struct attr none[1];
	for (int k = 0; k < 2; k++) {
		const char *name = k ? "script" : "style";
		struct html_tagcount *t = tag_entry(&p, name, 0);
		while (t && t->inside > 0) { on_tag(&p, name, none, 0, 0); t = tag_entry(&p, name, 0); }
	}
	/* the rendered text: its length and how much of it is not white space */
	size_t chars = 0, spaces = 0;
	for (size_t i = 0; i < p.tlen; i++) {
		unsigned char c = (unsigned char)p.text[i];
		if (utf8 && (c & 0xc0) == 0x80) continue;
		chars++;
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v') spaces++;
		else if (utf8 && (c == '\f' || (c == 0xc2 && i + 1 < p.tlen && (unsigned char)p.text[i + 1] == 0xa0))) spaces++;
	}
	st->html_length = (double)chars;
	st->non_space_len = (double)(chars - spaces);
	free(h);
	free(p.text);
	free(p.styles);
	return st;
}

void html_stats_free(struct html_stats *st)
{
	if (!st) return;
	free(st->tagv);
	strs_free(&st->comment);
	strs_free(&st->title);
	strs_free(&st->script);
	strs_free(&st->anchor_texts);
	strs_free(&st->charsets);
	for (size_t i = 0; i < st->nanchors; i++) { free(st->anchors[i].href); free(st->anchors[i].text); }
	free(st->anchors);
	free(st);
}

int html_stats_inside(const struct html_stats *st, const char *name)
{
	for (size_t i = 0; i < st->ntags; i++)
		if (strcmp(st->tagv[i].name, name) == 0) return st->tagv[i].inside;
	return -1;
}

int html_stats_value(const struct html_stats *st, const char *name, double *v)
{
	struct { const char *name; double value; int defined; } t[] = {
		{ "html", 1, 1 },
		{ "length", st->length, 1 },
		{ "max_size", st->max_size, 1 },
		{ "min_size", st->min_size, 1 },
		{ "image_area", st->image_area, 1 },
		{ "html_length", st->html_length, 1 },
		{ "non_space_len", st->non_space_len, 1 },
		{ "closed_extra_ratio", st->tags ? (double)st->closed_extra / st->tags : 0, st->tags > 0 },
		{ "bad_tag_ratio", st->tags ? ((double)st->tags - st->elements) / st->tags : 0, st->tags > 0 && st->has_elements },
		{ "non_element_ratio", st->tags_seen ? ((double)st->tags_seen - st->elements_seen) / st->tags_seen : 0,
		  st->tags_seen > 0 && st->has_elements_seen },
		{ "obfuscation_ratio", st->tags ? (double)st->obfuscation / st->tags : 0, st->tags > 0 && st->has_obfuscation },
		{ "font_low_contrast", st->font_low_contrast, st->font_low_contrast },
		{ "font_invalid_color", st->font_invalid_color, st->font_invalid_color },
		{ "font_face_bad", st->font_face_bad, st->font_face_bad },
		{ "form_action_mailto", st->form_action_mailto, st->form_action_mailto },
		{ "embeds", st->embeds, st->embeds },
		{ "uri_truncated", st->uri_truncated, st->uri_truncated },
		{ NULL, 0, 0 }
	};
	for (size_t i = 0; t[i].name; i++)
		if (strcmp(t[i].name, name) == 0) {
			if (!t[i].defined) return 0;
			*v = t[i].value;
			return 1;
		}
	return -1;
}

const struct html_strs *html_stats_list(const struct html_stats *st, const char *name)
{
	if (strcmp(name, "comment") == 0) return &st->comment;
	if (strcmp(name, "title") == 0) return &st->title;
	if (strcmp(name, "script") == 0) return &st->script;
	if (strcmp(name, "anchor") == 0) return &st->anchor_texts;
	return NULL;
}
