/* html_stats.h - SpamAssassin's statistics of one HTML part (its
 * Mail::SpamAssassin::HTML results: tag counts and balance, unknown tags,
 * font colours and sizes, visible text, image area, anchors, comments,
 * titles...), computed by a tokenizer that reports tags as they are
 * written, the way Perl's HTML::Parser does for SpamAssassin: no tree is
 * built, no tag is implied or closed for the author, so counts such as
 * "closed_extra" or the balance of <body> mean what the stock rules expect.
 *
 * Pure computation on a buffer, no I/O: used by eval_html.c (rules/),
 * fuzzable with the rest of rules/.  Every list is capped (HTML_MAX_*),
 * the work is linear in the input. */
#ifndef MW_RULES_HTML_STATS_H
#define MW_RULES_HTML_STATS_H

#include <stddef.h>

#define HTML_MAX_INPUT     (8u << 20)   /* bytes of one part parsed; the rest ignored */
#define HTML_MAX_TAGNAMES  512          /* distinct tag names tracked in "inside" */
#define HTML_MAX_ITEMS     2000         /* comments, anchors, titles, scripts kept each */
#define HTML_MAX_ITEM_LEN  4096         /* bytes kept of one of those */
#define HTML_MAX_URI_LEN   8192         /* SpamAssassin's MAX_URI_LENGTH */
#define HTML_MAX_STYLE_DEPTH 256        /* font/table style stack */

/* a list of strings, each capped at HTML_MAX_ITEM_LEN */
struct html_strs {
	char **s;
	size_t n, cap;
};

/* one <a href> as SpamAssassin's uri_detail keys it (the href trimmed,
 * not resolved against <base>) with the text inside it */
struct html_anchor {
	char *href;
	char *text;
	size_t textlen;
};

struct html_tagcount {
	char name[32];
	int inside;                     /* start tags minus end tags, never below 0 */
	unsigned cls;                   /* what SpamAssassin does with the tag (html_stats.c) */
};

struct html_stats {
	double length;                  /* characters given to the parser */
	unsigned tags, elements, tags_seen, elements_seen;
	unsigned closed_extra, obfuscation;
	int has_elements, has_elements_seen, has_obfuscation;
	double image_area;              /* <img width height> areas, as SpamAssassin guesses them */
	int max_size, min_size;         /* font sizes seen (3 = default) */
	int font_low_contrast, font_invalid_color, font_face_bad;
	int form_action_mailto, embeds, uri_truncated, iframe_src;
	double html_length;             /* rendered text, characters */
	double non_space_len;           /* of which not white space */
	struct html_tagcount *tagv;     /* "inside": every tag name seen */
	size_t ntags;
	struct html_strs comment, title, script, anchor_texts, charsets;
	struct html_anchor *anchors;
	size_t nanchors, capanchors;
};

/* html_stats_parse - the statistics of one HTML document.  utf8: the
 * text is treated as characters (SpamAssassin decodes UTF-8/ASCII parts
 * before parsing; other charsets are counted in bytes).  Never NULL. */
struct html_stats *html_stats_parse(const char *html, size_t len, int utf8);
void html_stats_free(struct html_stats *st);

/* the count of start minus end tags of name, or -1 if never seen */
int html_stats_inside(const struct html_stats *st, const char *name);

/* a numeric result by SpamAssassin's name ("length", "max_size",
 * "bad_tag_ratio"...; flags such as "font_low_contrast" are 0/1):
 * 1 with *v set, 0 when not defined for this document, -1 unknown name */
int html_stats_value(const struct html_stats *st, const char *name, double *v);
/* a text list by name ("comment", "anchor", "title", "script"), NULL if unknown */
const struct html_strs *html_stats_list(const struct html_stats *st, const char *name);

/* html_color - SpamAssassin's name_to_rgb: "#rrggbb" (or shorter forms it
 * produces) or "invalid"; out at least 16 bytes */
void html_color(const char *in, size_t len, char *out);

#endif
