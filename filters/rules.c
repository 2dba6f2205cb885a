/* rules.c - built-in "rules": runs the rule language of rules/ on each
 * message and turns every rule that hit into a symbol with its score.
 *
 * The ruleset is loaded and compiled once per pipeline (setup) and is
 * read-only afterwards; each scanner thread keeps its own Hyperscan/PCRE2
 * scratch (thread-specific key).  The message is presented as SpamAssassin
 * presents it: header fields raw and RFC 2047 decoded (GMime), body lines
 * from the shared MIME parse (mime.h) rendered and split into paragraphs,
 * rawbody lines, the full message, and the URIs the MIME layer found. */
#include <ctype.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <gmime/gmime.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/mime.h"
#include "filters/mime_bare.h"
#include "filters/rules_facts.h"
#include "filters/rules_net.h"
#include "proxy/log.h"
#include "rules/rules.h"

/* the shipped rules, read when rules_files names none: where make install
 * put them ($(DATADIR)/rules, the Makefile passes it); a fixed
 * /usr/share/mailwarden/rules missed the default PREFIX=/usr/local */
#ifndef MW_RULES_DIR
#define MW_RULES_DIR "/usr/local/share/mailwarden/rules"
#endif
#define RULES_SHIPPED_DIR MW_RULES_DIR
#define MAX_BODY_LINE   2048     /* SpamAssassin's MAX_BODY_LINE_LENGTH */

struct rules_inst {
	struct ruleset *rs;
	unsigned budget_ms;
	struct dns *dns;            /* network tests: NULL when off */
	unsigned dns_timeout_ms;
	char receiver[256];         /* hostname: by= of the client hop */
	pthread_key_t key;          /* struct rules_scratch * per thread */
};

static void scratch_free(void *p) { rules_scratch_free(p); }

static int add_path(struct ruleset *rs, const char *pat, char *err, size_t errlen)
{
	if (!strpbrk(pat, "*?[")) return rules_load_file(rs, pat, err, errlen);
	glob_t g;
	int rc = glob(pat, 0, NULL, &g);
	if (rc == GLOB_NOMATCH) return 0;    /* a glob that matches nothing is no error */
	if (rc != 0) { snprintf(err, errlen, "%.400s: glob failed", pat); return -1; }
	for (size_t i = 0; i < g.gl_pathc; i++)
		if (rules_load_file(rs, g.gl_pathv[i], err, errlen) < 0) { globfree(&g); return -1; }
	globfree(&g);
	return 0;
}

static const char *first_not_loaded(const struct ruleset *rs)
{
	static __thread char buf[200];
	const char *why, *name = rules_not_loaded(rs, 0, &why);
	snprintf(buf, sizeof buf, "%s (%s)", name ? name : "-", name ? why : "-");
	return buf;
}

static int rules_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	const struct config *cfg = env->cfg;
	struct rules_inst *in = calloc(1, sizeof *in);
	if (!in) { snprintf(err, errlen, "out of memory"); return -1; }
	in->rs = rules_new();
	in->budget_ms = cfg->rules_time_budget;
	in->dns = cfg->rules_net_tests ? env->dns : NULL;
	in->dns_timeout_ms = cfg->rules_dns_timeout;
	snprintf(in->receiver, sizeof in->receiver, "%s", cfg->hostname);
	rules_set_score_set(in->rs, cfg->rules_score_set >= 0 ? cfg->rules_score_set
	                            : (config_runs_filter(cfg, "bayes") ? 2 : 0) + (in->dns ? 1 : 0));
	char e[600];
	if (cfg->nrules_files == 0 && add_path(in->rs, RULES_SHIPPED_DIR, e, sizeof e) < 0) {
		/* the admin set no path: say which setting names one */
		snprintf(err, errlen, "rules: %.400s (the shipped rules, read when rules_files "
		         "names none: set rules_files)", e);
		goto fail;
	}
	for (unsigned i = 0; i < cfg->nrules_files; i++)
		if (add_path(in->rs, cfg->rules_files[i], e, sizeof e) < 0) {
			snprintf(err, errlen, "rules: %.500s", e);
			goto fail;
		}
	if (rules_compile(in->rs, cfg->rules_cache_dir, e, sizeof e) < 0) {
		snprintf(err, errlen, "rules: %.500s", e);
		goto fail;
	}
	if (pthread_key_create(&in->key, scratch_free) != 0) { snprintf(err, errlen, "rules: no thread key"); goto fail; }
	const struct rules_stats *st = rules_get_stats(in->rs);
	unsigned loaded = 0;
	for (int k = 0; k < RK_COUNT; k++) loaded += st->loaded[k];
	slog(NULL, LOG_INFO, "rules: %u files, %u rules loaded (header %u body %u rawbody %u full %u uri %u meta %u), "
	       "%u not loaded (%u eval:), hyperscan %u + %u prefilter, pcre2 only %u%s",
	       st->files, loaded, st->loaded[RK_HEADER], st->loaded[RK_BODY], st->loaded[RK_RAWBODY],
	       st->loaded[RK_FULL], st->loaded[RK_URI], st->loaded[RK_META], st->not_loaded,
	       st->not_loaded_eval, st->hs_patterns, st->hs_prefilter, st->pcre_only,
	       st->cache_hit ? ", from cache" : "");
	if (st->cache_write_err)
		slog(NULL, LOG_WARNING, "rules: rules_cache_dir %s: cannot write the compiled rules: %s "
		     "(loaded anyway; the next start compiles them again)", cfg->rules_cache_dir,
		     strerror(st->cache_write_err));
	if (st->not_loaded)
		slog(NULL, LOG_WARNING, "rules: %u not loaded (%u eval:, others: unsupported types, relay "
		     "pseudo-headers, regexes PCRE2 refuses, metas over those); first: %s",
		     st->not_loaded, st->not_loaded_eval, first_not_loaded(in->rs));
	g_mime_init();
	*instance = in;
	return 0;
fail:
	rules_free(in->rs);
	free(in);
	return -1;
}

static void rules_fini(void *instance)
{
	struct rules_inst *in = instance;
	if (!in) return;
	/* the scanner's workers have exited (their scratch went with them);
	 * the calling thread's is freed here */
	rules_scratch_free(pthread_getspecific(in->key));
	pthread_setspecific(in->key, NULL);
	pthread_key_delete(in->key);
	rules_free(in->rs);
	free(in);
}

/* --- presenting the message ------------------------------------------------ */

struct strv {              /* growable array of owned strings with lengths */
	char  **s;
	size_t *len;
	size_t  n, cap;
};

static void strv_add(struct strv *v, const char *p, size_t n)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 32;
		v->s = realloc(v->s, v->cap * sizeof *v->s);
		v->len = realloc(v->len, v->cap * sizeof *v->len);
		if (!v->s || !v->len) abort();
	}
	/* all n bytes: text parts' raw bytes may hold NULs, and strndup
	 * stopped at the first one while len kept n, so the rules read past
	 * the copy (found by fuzz_scan) */
	v->s[v->n] = malloc(n + 1);
	if (!v->s[v->n]) abort();
	memcpy(v->s[v->n], p, n);
	v->s[v->n][n] = '\0';
	v->len[v->n++] = n;
}

static void strv_free(struct strv *v)
{
	for (size_t i = 0; i < v->n; i++) free(v->s[i]);
	free(v->s);
	free(v->len);
}

/* SpamAssassin's body text: paragraphs (blank lines split them), every run
 * of whitespace one space, each line ending in "\n", long ones cut near
 * MAX_BODY_LINE at whitespace. */
static void render_lines(struct strv *out, const char *text, size_t len)
{
	char *buf = malloc(len + 2);
	if (!buf) abort();
	size_t j = 0, i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)text[i];
		if (c == '\n' || c == '\r' || c == ' ' || c == '\t' || c == '\v' || c == '\f') {
			/* a whitespace run: paragraph break if it holds two newlines */
			int nl = 0;
			size_t k = i;
			while (k < len && text[k] && strchr("\n\r \t\v\f", text[k])) { if (text[k] == '\n') nl++; k++; }
			buf[j++] = nl >= 2 ? '\n' : ' ';
			i = k;
			continue;
		}
		buf[j++] = (char)c;
		i++;
	}
	buf[j] = '\0';
	size_t s = 0;
	while (s < j) {
		size_t e = s;
		while (e < j && buf[e] != '\n') e++;
		/* cut lines longer than MAX_BODY_LINE at a space */
		while (e - s > MAX_BODY_LINE) {
			size_t cut = s + MAX_BODY_LINE;
			while (cut > s + 30 && buf[cut - 1] != ' ') cut--;
			if (cut <= s + 30) cut = s + MAX_BODY_LINE;
			strv_add(out, buf + s, cut - s);
			s = cut;
		}
		char *line = malloc(e - s + 2);
		if (!line) abort();
		memcpy(line, buf + s, e - s);
		line[e - s] = '\n';
		strv_add(out, line, e - s + 1);
		free(line);
		s = e + 1;
	}
	free(buf);
}

/* SpamAssassin's split_into_array_of_short_lines on one line: pieces
 * over MAX_BODY_LINE bytes are cut after the last space at or before
 * offset MAX_BODY_LINE (rindex), or at MAX_BODY_LINE when there is none */
static void add_short_line(struct strv *out, const char *p, size_t n)
{
	while (n > MAX_BODY_LINE) {
		size_t k = MAX_BODY_LINE + 1;
		while (k > 0 && p[k - 1] != ' ') k--;
		size_t len = k ? k : MAX_BODY_LINE;
		strv_add(out, p, len);
		p += len;
		n -= len;
	}
	strv_add(out, p, n);
}

static void split_lines(struct strv *out, const char *text, size_t len)
{
	size_t s = 0;
	while (s < len) {
		size_t e = s;
		while (e < len && text[e] != '\n') e++;
		size_t n = e < len ? e - s + 1 : e - s;
		while (n > MAX_BODY_LINE) { strv_add(out, text + s, MAX_BODY_LINE); s += MAX_BODY_LINE; n -= MAX_BODY_LINE; }
		strv_add(out, text + s, n);
		s = e + 1;
	}
}

/* Mail addresses written in the text are URIs to SpamAssassin too
 * ("mailto:addr"): uri rules such as an unsubscribe-address test see them.
 * Bounded on hostile text: at most MAX_TEXT_ADDRS new ones, and at most
 * MAX_TEXT_ADDR_LOOKS addresses looked at, repeats counted (each was
 * compared with every URI kept, up to 1,200, by strcasecmp, and repeats
 * never ended the walk: one address written 5 million times in 42 MB
 * took 38 s of CPU, before the rules' time budget started); duplicates are
 * found in a hash set, and the walk stops at stop_ms (the message's time
 * budget or the scan's deadline, CLOCK_MONOTONIC ms; 0 = none). */
#define MAX_TEXT_ADDRS      200
#define MAX_TEXT_ADDR_LOOKS 10000

/* text_addresses - returns 1 when it stopped at stop_ms, else 0 */
static int text_addresses(struct strv *uris, const char *t, size_t len, long long stop_ms)
{
	size_t found = 0, looks = 0;
	int late = 0;
	/* the URIs already kept, in lower case (strcasecmp before) */
	GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (size_t k = 0; k < uris->n; k++) g_hash_table_add(seen, g_ascii_strdown(uris->s[k], -1));
	for (size_t i = 1; i + 1 < len && found < MAX_TEXT_ADDRS && looks < MAX_TEXT_ADDR_LOOKS; i++) {
		const char *at = memchr(t + i, '@', len - 1 - i);
		if (!at) break;
		i = (size_t)(at - t);
		/* the MIME layer's grammar (mime_bare.h), so the addresses it
		 * kept (those of a real top-level domain) are found again, not
		 * a second form of them */
		size_t a, b = mime_bare_addr(t, len, i, &a);
		if (!b) continue;
		if (++looks % 1024 == 0 && stop_ms > 0 && deadline_now_ms() >= stop_ms) { late = 1; break; }
		char buf[340];
		snprintf(buf, sizeof buf, "mailto:%.*s", (int)(b - a), t + a);
		char *key = g_ascii_strdown(buf, -1);
		if (!g_hash_table_contains(seen, key)) {
			g_hash_table_add(seen, key);
			strv_add(uris, buf, strlen(buf));
			found++;
		} else
			g_free(key);
		i = b;
	}
	g_hash_table_destroy(seen);
	return late;
}

_Static_assert((int)MIME_URI_ANCHOR == (int)RULES_URI_ANCHOR && (int)MIME_URI_TEXT == (int)RULES_URI_TEXT,
               "URI kinds: one order for the MIME layer and the rules");

struct hits_ctx { struct mw_ctx *ctx; };

/* eval: rules' facts: DNS answers looked up before the scan, the rest
 * from the other filters (rules_facts.c) */
struct fact_ctx {
	struct mw_ctx *ctx;
	struct rules_net *net;
	char buf[4096];
};

static const char *fact(void *arg, const char *key)
{
	struct fact_ctx *fc = arg;
	if (strncmp(key, "dns:", 4) == 0) return rules_net_answer(fc->net, key);
	return rules_fact(fc->ctx, key, fc->buf, sizeof fc->buf);
}

/* decode_words - a MIME part's field for mimeheader rules, RFC 2047
 * decoded to UTF-8 by GMime as the message's own fields are above */
static char *decode_words(const char *value)
{
	char *g, *out;

	if (strstr(value, "=?") == NULL)
		return NULL;
	if ((g = g_mime_utils_header_decode_text(NULL, value)) == NULL)
		return NULL;
	out = strdup(g);
	g_free(g);
	if (out == NULL)
		abort();
	return out;
}

static void upper_symbol(char *out, size_t outlen, const char *name)
{
	size_t j = 0;
	for (; name[j] && j + 1 < outlen && j < 63; j++) {
		char c = name[j];
		out[j] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
	}
	out[j] = '\0';
}

static void on_hit(void *arg, const struct rules_hit *h)
{
	struct hits_ctx *hc = arg;
	char sym[64];
	upper_symbol(sym, sizeof sym, h->name);
	if (h->count > 1)
		mw_symbol(hc->ctx, sym, h->score * h->count, "%s (%u hits)", h->describe ? h->describe : h->name, h->count);
	else
		mw_symbol(hc->ctx, sym, h->score, "%s", h->describe ? h->describe : h->name);
}

static void rules_eom(struct mw_ctx *ctx)
{
	struct rules_inst *inst = mw_instance(ctx);
	struct rules_scratch *scr = pthread_getspecific(inst->key);
	if (!scr) {
		scr = rules_scratch_new(inst->rs);
		if (!scr) { mw_log(ctx, LOG_ERR, "no memory for rule scratch"); return; }
		pthread_setspecific(inst->key, scr);
	}
	size_t crlf_len, mlen = 0;
	const char *crlf_msg = (const char *)mw_message(ctx, &crlf_len);
	/* SpamAssassin reads messages with LF line ends: so do the rules */
	char *msg = malloc(crlf_len + 1);
	if (!msg) abort();
	for (size_t i = 0; i < crlf_len; i++)
		if (!(crlf_msg[i] == '\r' && i + 1 < crlf_len && crlf_msg[i + 1] == '\n')) msg[mlen++] = crlf_msg[i];
	msg[mlen] = '\0';

	/* header fields, raw with folding, and decoded: every field, as
	 * SpamAssassin reads them (the first 1,000 only, until session 16:
	 * 14 KB of short fields hid the Subject, From and Received from
	 * every rule), up to the header the MIME parse hands GMime
	 * (MIME_MAX_HEADER_LINES lines, MIME_MAX_HEADER_BYTES bytes; past
	 * that the parse is incomplete), so a 40 MB header costs no more
	 * than a 2 MiB one */
	size_t caph = 64, nh = 0, no = 0, p = 0, hlines = 0;
	struct rules_header *hdrs = malloc((caph + 1) * sizeof *hdrs);
	char **owned = malloc(3 * caph * sizeof *owned);
	if (!hdrs || !owned) abort();
	const char *subject = NULL;
	while (p < mlen && p < MIME_MAX_HEADER_BYTES && hlines < MIME_MAX_HEADER_LINES) {
		if (msg[p] == '\n' || (msg[p] == '\r' && p + 1 < mlen && msg[p + 1] == '\n')) break;
		size_t e = p;
		for (;;) {
			while (e < mlen && msg[e] != '\n') e++;
			hlines++;
			if (e + 1 < mlen && (msg[e + 1] == ' ' || msg[e + 1] == '\t')) { e++; continue; }
			break;
		}
		if (nh == caph) {          /* one more for EnvelopeFrom */
			caph *= 2;
			hdrs = realloc(hdrs, (caph + 1) * sizeof *hdrs);
			owned = realloc(owned, 3 * caph * sizeof *owned);
			if (!hdrs || !owned) abort();
		}
		const char *colon = memchr(msg + p, ':', e - p);
		if (colon) {
			/* SpamAssassin keeps RULES_MAX_HEADER_KEY bytes of a name and
			 * RULES_MAX_HEADER_VALUE of a value (its folding and newline
			 * counted): a 1 MB field folded into short lines was one
			 * header text for every rule on it, as long as that */
			size_t kl = (size_t)(colon - msg - p);
			char *name = strndup(msg + p, kl > RULES_MAX_HEADER_KEY ? RULES_MAX_HEADER_KEY : kl);
			size_t vs = (size_t)(colon - msg) + 1, ve = e;
			if ((e < mlen ? e + 1 : e) - vs > RULES_MAX_HEADER_VALUE) ve = vs + RULES_MAX_HEADER_VALUE;
			while (ve > vs && (msg[ve - 1] == '\r' || msg[ve - 1] == '\n')) ve--;
			if (vs < ve && msg[vs] == ' ') vs++;
			char *raw = strndup(msg + vs, ve - vs);
			/* unfold, trim, then RFC 2047 decode (GMime) */
			char *unf = malloc(ve - vs + 1);
			if (!name || !raw || !unf) abort();
			size_t k = 0;
			for (const char *c = raw; *c; c++) {
				if (*c == '\r') continue;
				if (*c == '\n') { unf[k++] = ' '; while (c[1] == ' ' || c[1] == '\t') c++; continue; }
				unf[k++] = *c;
			}
			while (k && (unf[k - 1] == ' ' || unf[k - 1] == '\t')) k--;
			unf[k] = '\0';
			char *s = unf;
			while (*s == ' ' || *s == '\t') s++;
			char *dec = strstr(s, "=?") ? g_mime_utils_header_decode_text(NULL, s) : NULL;
			char *decoded = strdup(dec ? dec : s);
			g_free(dec);
			free(unf);
			hdrs[nh].name = name;
			hdrs[nh].raw = raw;
			hdrs[nh].decoded = decoded;
			owned[no++] = name; owned[no++] = raw; owned[no++] = decoded;
			if (!subject && strcasecmp(name, "Subject") == 0) subject = decoded;
			nh++;
		}
		p = e + 1;
	}
	/* EnvelopeFrom pseudo-header: the envelope sender; without one (a
	 * saved message given to "mailwarden scan"), the Return-Path or
	 * X-Envelope-From field, as SpamAssassin guesses it */
	const char *env_from = mw_mail_from(ctx);
	char env_buf[512];
	if (!env_from || !*env_from) {
		env_from = NULL;
		for (size_t i = 0; i < nh && !env_from; i++)
			if ((strcasecmp(hdrs[i].name, "Return-Path") == 0 || strcasecmp(hdrs[i].name, "X-Envelope-From") == 0 ||
			     strcasecmp(hdrs[i].name, "Envelope-Sender") == 0) &&
			    rules_addr_of(hdrs[i].decoded, env_buf, sizeof env_buf) == 0 && env_buf[0])
				env_from = env_buf;
	}
	if (env_from && *env_from) {
		hdrs[nh].name = "EnvelopeFrom";
		hdrs[nh].raw = env_from;
		hdrs[nh].decoded = env_from;
		nh++;
	}

	struct strv body = { 0 }, raw = { 0 }, uris = { 0 };
	long long addr_ms = 0;      /* spent on text_addresses and the URI forms */
	size_t nmime_uris = 0;      /* uris[0..nmime_uris) are the MIME layer's, then text addresses */
	{   /* body: the Subject first, then every text part, rendered */
		size_t tl = 0;
		const struct mime_msg *mm = mime_get(ctx);
		char *text = NULL;
		size_t cap = 0;
#define APPEND(ptr, n) do { if (tl + (n) + 2 > cap) { cap = (tl + (n) + 2) * 2; text = realloc(text, cap); if (!text) abort(); } \
		memcpy(text + tl, (ptr), (n)); tl += (n); } while (0)
		if (subject) APPEND(subject, strlen(subject));
		APPEND("\n", 1);
		/* the Subject is a line of its own, its spacing kept, as
		 * SpamAssassin puts it before the rendered text, and cut into
		 * lines as that text is: a 256 KB Subject was one body line,
		 * and a regex on it cost up to 1 s in one call */
		size_t subject_end = tl;
		add_short_line(&body, text, tl);
		for (size_t i = 0; mm && i < mm->nparts; i++) {
			const struct mime_part *mp = &mm->parts[i];
			if (!mp->is_text) continue;
			if (tl && text[tl - 1] != '\n') APPEND("\n", 1);
			/* SpamAssassin (normalize_charset 0) matches text/plain and
			 * rawbody in the part's own bytes, not converted to UTF-8 */
			const char *bytes = (const char *)(mp->raw ? mp->raw : mp->data);
			size_t nbytes = mp->raw ? mp->raw_len : mp->len;
			if (mp->is_html && mp->rendered) APPEND(mp->rendered, mp->rendered_len);
			else if (bytes) APPEND(bytes, nbytes);
			if (bytes) split_lines(&raw, bytes, nbytes);
		}
		render_lines(&body, text + subject_end, tl - subject_end);
		for (size_t i = 0; mm && i < mm->nuris; i++) strv_add(&uris, mm->uris[i], strlen(mm->uris[i]));
		nmime_uris = mm ? mm->nuris : 0;
		/* the addresses' walk counts against the message's time budget
		 * (and the scan's deadline), as the rules' own work does */
		long long a0 = deadline_now_ms(), stop = inst->budget_ms ? a0 + inst->budget_ms : 0;
		long long dl = deadline_left_ms();
		if (dl >= 0 && (stop == 0 || a0 + dl < stop)) stop = a0 + dl;
		if (text_addresses(&uris, text, tl, stop))
			mw_log(ctx, LOG_INFO, "rules: the search for mail addresses in the text stopped at the time budget");
		addr_ms = deadline_now_ms() - a0;
		free(text);
#undef APPEND
	}
	/* the MIME leaves and the envelope, for eval: rules */
	const struct mime_msg *mm = mime_get(ctx);
	struct rules_part *parts = calloc(mm->nparts + 1, sizeof *parts);
	if (!parts) abort();
	for (size_t i = 0; i < mm->nparts; i++) {
		const struct mime_part *mp = &mm->parts[i];
		parts[i] = (struct rules_part){
			.depth = mp->depth, .content_type = mp->content_type,
			.filename = mp->filename, .disposition = mp->disposition,
			.charset = mp->charset, .encoding = mp->encoding,
			.is_text = mp->is_text, .is_html = mp->is_html,
			.data = (const char *)mp->data, .len = mp->len,
			.raw = (const char *)mp->raw, .raw_len = mp->raw_len,
			.rendered = mp->rendered, .rendered_len = mp->rendered_len,
		};
	}
	size_t nrcpt = mw_rcpt_count(ctx);
	const char **rcpts = calloc(nrcpt + 1, sizeof *rcpts);
	if (!rcpts) abort();
	for (size_t i = 0; i < nrcpt; i++) rcpts[i] = mw_rcpt(ctx, i);
	struct fact_ctx *fc = calloc(1, sizeof *fc);
	if (!fc) abort();
	fc->ctx = ctx;
	struct rules_input in = {
		.headers = hdrs, .nheaders = nh,
		.body = (const char *const *)body.s, .body_len = body.len, .nbody = body.n,
		.rawbody = (const char *const *)raw.s, .rawbody_len = raw.len, .nrawbody = raw.n,
		.full = msg, .full_len = mlen,
		.uris = (const char *const *)uris.s, .nuris = uris.n,
		.time_budget_ms = inst->budget_ms,
		.parts = parts, .nparts = mm->nparts, .mime_parse_error = mm->parse_error,
		.mail_from = mw_mail_from(ctx), .rcpts = rcpts, .nrcpts = nrcpt,
		.helo = mw_helo(ctx), .client_ip = mw_client_ip(ctx), .client_name = mw_client_name(ctx),
		.receiver = inst->receiver,
		.authenticated = mw_direction(ctx) == MW_OUTBOUND,
		.fact = fact, .fact_arg = fc,
		.decode_words = decode_words,
	};
	/* how each URI appeared, for the URI blocklists' choice (links first) */
	unsigned char *kinds = malloc(uris.n + 1);
	if (!kinds) abort();
	for (size_t i = 0; i < uris.n; i++)
		kinds[i] = i < nmime_uris && mm->uri_kinds ? mm->uri_kinds[i] : RULES_URI_MAILTO;
	in.uri_kinds = kinds;
	/* the URIs' forms once for the message: the DNS rounds, the uri rules
	 * and the blocklists' answers each made them again (up to 7 times);
	 * their time counts against the budget as the addresses' walk does */
	long long f0 = deadline_now_ms();
	struct rules_uri_set *uri_forms = rules_uri_set_new(inst->rs, in.uris, in.nuris);
	in.uri_forms = uri_forms;
	addr_ms += deadline_now_ms() - f0;
	if (inst->budget_ms)        /* what the addresses left of it; 0 would mean none */
		in.time_budget_ms = addr_ms < (long long)inst->budget_ms ? inst->budget_ms - (unsigned)addr_ms : 1;
	fc->net = rules_net_resolve(ctx, inst->dns, inst->rs, scr, &in, inst->dns_timeout_ms);
	struct hits_ctx hc = { ctx };
	/* the rules wait on nothing, but their CPU time counts against the
	 * front end's wait as much as spamd's: past the scan's deadline every
	 * finding is lost, so they stop there too (deadline.h), and the rules
	 * that ran make the verdict */
	long long left = deadline_left_ms();
	int capped = left >= 0 && (in.time_budget_ms == 0 || left < (long long)in.time_budget_ms);
	if (capped)
		in.time_budget_ms = (unsigned)left;
	int ran = !(capped && left == 0);
	if (!ran || rules_scan(inst->rs, scr, &in, on_hit, &hc) == 1) {
		if (capped) {
			mw_log(ctx, LOG_WARNING, "rules stopped at the scan's deadline (%lld ms were left)", left);
			mw_symbol(ctx, "RULES_TIMEOUT", 0, "rule evaluation stopped at the scan's deadline");
		} else {
			mw_log(ctx, LOG_WARNING, "rules time budget of %u ms exhausted", inst->budget_ms);
			mw_symbol(ctx, "RULES_TIMEOUT", 0, "rule evaluation stopped at the time budget");
		}
		deadline_timed_out("rules_time_budget");
	}
	unsigned long cut = 0, limited = ran ? rules_scratch_limit_hits(scr, &cut) : 0;
	if (cut)
		mw_log(ctx, LOG_INFO, "rules: %lu regex match(es) on a long text stopped at the deadline", cut);
	if (limited)
		mw_log(ctx, LOG_INFO, "rules: %lu regex match(es) stopped at PCRE2's match or depth limit "
		       "(counted as not hit)", limited);
	rules_net_free(fc->net);
	free(fc);
	free(rcpts);
	free(parts);
	strv_free(&body);
	strv_free(&raw);
	rules_uri_set_free(uri_forms);
	strv_free(&uris);
	free(kinds);
	for (size_t i = 0; i < no; i++) free(owned[i]);
	free(owned);
	free(hdrs);
	free(msg);
}

static const struct mw_filter_ops rules_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "rules",
	.fini = rules_fini,
	.on_eom = rules_eom,
};

const struct builtin_filter builtin_rules = {
	.name = "rules",
	.ops = &rules_ops,
	.setup = rules_setup,
};
