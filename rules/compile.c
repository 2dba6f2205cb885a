/* compile.c - turns a parsed ruleset into something that scans fast.
 *
 * Every regex is compiled by PCRE2 (JIT): it confirms Hyperscan's prefilter
 * matches, counts "multiple" hits and runs what Hyperscan refuses.  Per
 * kind, the patterns Hyperscan accepts (exactly, or as a prefilter that
 * PCRE2 confirms) go into one database, scanned once per text.  Databases
 * are cached on disk (hs_serialize_database) under a name derived from a
 * hash of the patterns, their flags and the Hyperscan version. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "proxy/thread.h"
#include "rules/rules_int.h"

#define PCRE_MATCH_LIMIT 200000u
#define PCRE_DEPTH_LIMIT 20000u
#define HS_MAX_PATTERN 400
#define HS_MAX_REPEAT  40
#define CACHE_MAGIC "MWRULES3"
#define HS_MAX_PIECE_LEN 16000   /* pieces of a cut regex (split.c) Hyperscan prefilters */
#define CACHE_KEEP 4             /* databases kept per kind in the cache directory */
#define CACHE_TMP_STALE 3600     /* s after which a writer's temporary file is left over */

/* --- replace_tag ----------------------------------------------------------- */

static const struct replace_tag *find_tag(const struct ruleset *rs, const char *name, size_t n, int kind)
{
	for (size_t i = rs->ntags; i-- > 0;)
		if (rs->tags[i].kind == kind && strlen(rs->tags[i].name) == n &&
		    memcmp(rs->tags[i].name, name, n) == 0)
			return &rs->tags[i];
	return NULL;
}

static void sb_add(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*b = realloc(*b, *cap);
		if (!*b) abort();
	}
	memcpy(*b + *len, s, n);
	*len += n;
	(*b)[*len] = '\0';
}

#define MAX_TAG_DEPTH 8

/* expand <TAG>, <pre X>, <inter X>, <post X> as SpamAssassin's ReplaceTags
 * does; tag values may hold tags themselves (expanded too, bounded depth) */
static char *expand_tags(const struct ruleset *rs, const char *re, int depth)
{
	char *out = NULL;
	size_t len = 0, cap = 0;
	const char *pre = "", *inter = "", *post = "";
	int prev_tag = 0;
	sb_add(&out, &len, &cap, "", 0);
	for (const char *s = re; *s;) {
		if (*s == '\\' && s[1]) { sb_add(&out, &len, &cap, s, 2); s += 2; prev_tag = 0; continue; }
		if (*s == '<') {
			const char *e = strchr(s, '>');
			if (e) {
				const char *in = s + 1;
				size_t n = (size_t)(e - in);
				int kind = -1;
				if (n > 4 && memcmp(in, "pre ", 4) == 0) kind = 1;
				else if (n > 6 && memcmp(in, "inter ", 6) == 0) kind = 2;
				else if (n > 5 && memcmp(in, "post ", 5) == 0) kind = 3;
				if (kind > 0) {
					const char *nm = strchr(in, ' ') + 1;
					const struct replace_tag *t = find_tag(rs, nm, (size_t)(e - nm), kind);
					if (t) {
						if (kind == 1) pre = t->value;
						else if (kind == 2) inter = t->value;
						else post = t->value;
					}
					s = e + 1;
					continue;
				}
				const struct replace_tag *t = find_tag(rs, in, n, 0);
				if (t) {
					if (prev_tag) sb_add(&out, &len, &cap, inter, strlen(inter));
					sb_add(&out, &len, &cap, pre, strlen(pre));
					if (depth < MAX_TAG_DEPTH && strchr(t->value, '<')) {
						char *v = expand_tags(rs, t->value, depth + 1);
						sb_add(&out, &len, &cap, v, strlen(v));
						free(v);
					} else {
						sb_add(&out, &len, &cap, t->value, strlen(t->value));
					}
					sb_add(&out, &len, &cap, post, strlen(post));
					prev_tag = 1;
					s = e + 1;
					continue;
				}
			}
		}
		sb_add(&out, &len, &cap, s, 1);
		s++;
		prev_tag = 0;
	}
	return out;
}

/* --- hashing for the cache ------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++) { h ^= c[i]; h *= 1099511628211ull; }
	return h;
}

static unsigned hs_flags_of(unsigned reflags, enum rule_kind kind)
{
	/* multi-line always: texts of a kind are scanned joined by "\n" and
	 * PCRE2 confirms every candidate on its own text with the real flags */
	/* single match: Hyperscan only says a rule may match somewhere;
	 * PCRE2 then checks the rule's own texts */
	unsigned f = HS_FLAG_ALLOWEMPTY | HS_FLAG_MULTILINE | HS_FLAG_SINGLEMATCH;
	(void)kind;
	if (reflags & RE_I) f |= HS_FLAG_CASELESS;
	if (reflags & RE_M) f |= HS_FLAG_MULTILINE;
	if (reflags & RE_S) f |= HS_FLAG_DOTALL;
	return f;
}

static char *hs_pattern_of(const struct rule *r)
{
	size_t n = strlen(r->re);
	char *p = malloc(n + 5);
	if (!p) abort();
	if (r->reflags & RE_X) { memcpy(p, "(?x)", 4); memcpy(p + 4, r->re, n + 1); }
	else memcpy(p, r->re, n + 1);
	return p;
}

/* \A \z \Z \G: in the joined scan they would see the joined buffer's
 * ends, not the text's */
static int has_text_anchor(const char *pat)
{
	for (const char *p = pat; *p; p++) {
		if (*p == '\\' && (p[1] == 'A' || p[1] == 'z' || p[1] == 'Z' || p[1] == 'G')) return 1;
		if (*p == '\\' && p[1]) p++;
	}
	return 0;
}

/* Patterns that make Hyperscan's compile explode (very long alternations
 * from replace_tag, large bounded repeats) stay with PCRE2: compiling the
 * stock SpamAssassin set otherwise takes minutes.  max_len: a whole
 * pattern's limit, or a cut piece's.  Text anchors stay with PCRE2 too. */
static int hs_too_costly(const char *pat, size_t max_len)
{
	if (strlen(pat) > max_len || has_text_anchor(pat)) return 1;
	for (const char *p = pat; *p; p++) {
		if (*p == '\\' && p[1]) { p++; continue; }
		if (*p != '{') continue;
		unsigned long lo = 0, hi = 0;
		const char *q = p + 1;
		while (*q >= '0' && *q <= '9') lo = lo * 10 + (unsigned long)(*q++ - '0');
		if (*q == ',') { q++; while (*q >= '0' && *q <= '9') hi = hi * 10 + (unsigned long)(*q++ - '0'); }
		if (*q == '}' && (lo > HS_MAX_REPEAT || hi > HS_MAX_REPEAT)) return 1;
	}
	return 0;
}

static int try_hs(const char *pat, unsigned flags, size_t max_len)
{
	if (hs_too_costly(pat, max_len)) return -1;
	hs_database_t *db = NULL;
	hs_compile_error_t *ce = NULL;
	if (hs_compile(pat, flags, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
		hs_free_compile_error(ce);
		return -1;
	}
	hs_free_database(db);
	return 0;
}

static int cache_read(const char *path, unsigned n, unsigned char *modes, hs_database_t **db)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) return -1;
	struct stat st;
	int rc = -1;
	/* root (a "mailwarden scan" by the admin) loads no compiled database
	 * that another user could have written: it is code for Hyperscan,
	 * trusted as it is deserialized */
	if (geteuid() == 0 && (fstat(fd, &st) < 0 || st.st_uid != 0)) {
		close(fd);
		return -1;
	}
	(void)futimens(fd, NULL);      /* in use: the last a prune removes (may be read-only: fine) */
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)(8 + 4 + n) && st.st_size < (off_t)(1u << 30)) {
		size_t sz = (size_t)st.st_size;
		char *buf = malloc(sz);
		if (!buf) abort();
		if (read(fd, buf, sz) == (ssize_t)sz && memcmp(buf, CACHE_MAGIC, 8) == 0) {
			uint32_t cnt;
			memcpy(&cnt, buf + 8, 4);
			if (cnt == n) {
				memcpy(modes, buf + 12, n);
				if (hs_deserialize_database(buf + 12 + n, sz - 12 - n, db) == HS_SUCCESS) rc = 0;
			}
		}
		free(buf);
	}
	close(fd);
	return rc;
}

/* write_full - n bytes or an errno in *e (a short write on a full disk
 * counts as ENOSPC) */
static int write_full(int fd, const void *p, size_t n, int *e)
{
	const char *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) { *e = w < 0 ? errno : ENOSPC; return 0; }
		b += w;
		n -= (size_t)w;
	}
	return 1;
}

/* cache_write - the compiled database into path (a temporary file renamed
 * into place; nothing half-written stays).  0, or an errno: the caller
 * reports it (a cache that cannot be written must not stop the load). */
static int cache_write(const char *path, unsigned n, const unsigned char *modes, const hs_database_t *db)
{
	char *bytes = NULL;
	size_t len = 0;
	int e = 0;
	if (hs_serialize_database(db, &bytes, &len) != HS_SUCCESS) return ENOMEM;
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	/* a new file, never a link (the cache directory may be the daemon's
	 * user's, and this may run as root): one left there is removed, once */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd >= 0) {
		uint32_t cnt = n;
		int ok = write_full(fd, CACHE_MAGIC, 8, &e) && write_full(fd, &cnt, 4, &e) &&
		         (n == 0 || write_full(fd, modes, n, &e)) && write_full(fd, bytes, len, &e);
		if (close(fd) != 0 && ok) { ok = 0; e = errno; }
		if (ok && rename(tmp, path) < 0) { ok = 0; e = errno; }
		if (!ok) unlink(tmp);
	} else
		e = errno;
	free(bytes);
	return e;
}

struct cache_file {
	char name[256];
	time_t used;
};

static int newest_first(const void *a, const void *b)
{
	const struct cache_file *x = a, *y = b;
	return (x->used < y->used) - (x->used > y->used);
}

/* cache_prune - in dir, keep the CACHE_KEEP most recently used databases
 * of kind (written is one of them), and remove their writers' temporary
 * files once stale (a writer killed between write and rename) */
static void cache_prune(const char *dir, int kind, const char *written)
{
	char prefix[32], path[4400];
	struct cache_file *files = NULL;
	size_t n = 0, cap = 0;
	time_t now = time(NULL);
	struct dirent *de;
	DIR *d = opendir(dir);
	if (!d) return;
	snprintf(prefix, sizeof prefix, "rules-%d-", kind);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		struct stat st;
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || len >= sizeof files->name) continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) continue;
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			if (now - st.st_mtime > CACHE_TMP_STALE) unlink(path);
			continue;
		}
		if (len < 5 || strcmp(de->d_name + len - 5, ".hsdb") != 0) continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			files = realloc(files, cap * sizeof *files);
			if (!files) abort();
		}
		snprintf(files[n].name, sizeof files[n].name, "%s", de->d_name);
		/* the one just written counts as the newest whatever the clock says */
		files[n].used = strcmp(path, written) == 0 ? (time_t)INT64_MAX : st.st_mtime;
		n++;
	}
	closedir(d);
	if (n > CACHE_KEEP) {
		qsort(files, n, sizeof *files, newest_first);
		for (size_t i = CACHE_KEEP; i < n; i++) {
			snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
			unlink(path);
		}
	}
	free(files);
}

/* --- building the kinds' databases ------------------------------------------- */

/* One kind's database being built.  What the threads fill (modes, db,
 * the compile error) belongs to this kind alone; the ruleset itself is
 * written only afterwards, by kind_finish in kind order, so the stats, the
 * cache files and the first error are those of building the kinds one
 * after the other. */
struct kind_job {
	enum rule_kind kind;
	unsigned n;                   /* its loaded regex rules */
	unsigned *idx;                /* their rule indexes */
	unsigned char *modes;
	char **pats;
	char path[4096];              /* cache file, or "" */
	int cached;
	hs_database_t *db;            /* from the cache, or compiled */
	unsigned pending;             /* rules whose mode is not decided yet */
	size_t cost;                  /* its patterns' length: which kind goes first */
	char *cerr;                   /* hs_compile_multi's message, NULL if it succeeded */
	int cerr_expr;
	int failed;
};

static void kind_prepare(const struct ruleset *rs, enum rule_kind kind, const char *cache_dir, struct kind_job *jb)
{
	unsigned n = 0;
	memset(jb, 0, sizeof *jb);
	jb->kind = kind;
	for (size_t i = 0; i < rs->nrules; i++) {
		const struct rule *r = &rs->rules[i];
		if (r->kind == kind && r->loaded == 1 && r->re) n++;
	}
	jb->idx = calloc(n + 1, sizeof *jb->idx);
	jb->modes = calloc(n + 1, 1);
	jb->pats = calloc(n + 1, sizeof *jb->pats);
	if (!jb->idx || !jb->modes || !jb->pats) abort();
	n = 0;
	uint64_t h = fnv(1469598103934665603ull, hs_version(), strlen(hs_version()));
	h = fnv(h, &kind, sizeof kind);
	h = fnv(h, CACHE_MAGIC, 8);
	for (size_t i = 0; i < rs->nrules; i++) {
		const struct rule *r = &rs->rules[i];
		if (r->kind != kind || r->loaded != 1 || !r->re) continue;
		jb->idx[n] = (unsigned)i;
		jb->pats[n] = hs_pattern_of(r);
		h = fnv(h, jb->pats[n], strlen(jb->pats[n]) + 1);
		unsigned hf = hs_flags_of(r->reflags, kind);
		h = fnv(h, &hf, sizeof hf);
		n++;
	}
	jb->n = n;
	if (cache_dir && *cache_dir) {
		snprintf(jb->path, sizeof jb->path, "%s/rules-%d-%016llx.hsdb", cache_dir, (int)kind, (unsigned long long)h);
		if (cache_read(jb->path, n, jb->modes, &jb->db) == 0) jb->cached = 1;
	}
	jb->pending = jb->cached ? 0 : n;
}

/* the mode of the job's j-th rule: what Hyperscan accepts of it alone */
static void kind_mode(const struct ruleset *rs, struct kind_job *jb, unsigned j)
{
	const struct rule *r = &rs->rules[jb->idx[j]];
	unsigned f = hs_flags_of(r->reflags, jb->kind);
	unsigned char m;
	if (r->npcx) {          /* a regex cut in pieces: each a prefilter */
		m = RM_HS_PREFILTER;
		for (unsigned q = 0; q < r->npcx && m != RM_PCRE; q++)
			if (try_hs(r->pcx_src[q], f | HS_FLAG_PREFILTER, HS_MAX_PIECE_LEN) < 0) m = RM_PCRE;
	} else if (try_hs(jb->pats[j], f, HS_MAX_PATTERN) == 0) m = RM_HS;
	else if (try_hs(jb->pats[j], f | HS_FLAG_PREFILTER, HS_MAX_PATTERN) == 0) m = RM_HS_PREFILTER;
	else m = RM_PCRE;
	jb->modes[j] = m;
}

/* the database's expressions: the rules in Hyperscan (a cut regex: its
 * pieces, all for the same rule), ids = position; how many */
static unsigned kind_count_hs(const struct ruleset *rs, const struct kind_job *jb)
{
	unsigned nh = 0;
	for (unsigned j = 0; j < jb->n; j++)
		if (jb->modes[j] != RM_PCRE) nh += rs->rules[jb->idx[j]].npcx ? rs->rules[jb->idx[j]].npcx : 1;
	return nh;
}

static void kind_compile(const struct ruleset *rs, struct kind_job *jb)
{
	unsigned nh = kind_count_hs(rs, jb);
	if (!nh) return;
	const char **ex = calloc(nh + 1, sizeof *ex);
	unsigned *fl = calloc(nh + 1, sizeof *fl), *ids = calloc(nh + 1, sizeof *ids);
	if (!ex || !fl || !ids) abort();
	unsigned m = 0;
	for (unsigned j = 0; j < jb->n; j++) {
		const struct rule *r = &rs->rules[jb->idx[j]];
		if (jb->modes[j] == RM_PCRE) continue;
		for (unsigned q = 0; q < (r->npcx ? r->npcx : 1); q++) {
			ex[m] = r->npcx ? r->pcx_src[q] : jb->pats[j];
			fl[m] = hs_flags_of(r->reflags, jb->kind) | (jb->modes[j] == RM_HS_PREFILTER ? HS_FLAG_PREFILTER : 0);
			ids[m] = m;
			m++;
		}
	}
	hs_compile_error_t *ce = NULL;
	if (hs_compile_multi(ex, fl, ids, nh, HS_MODE_BLOCK, NULL, &jb->db, &ce) != HS_SUCCESS) {
		jb->failed = 1;
		jb->db = NULL;
		jb->cerr = strdup(ce ? ce->message : "?");
		if (!jb->cerr) abort();
		jb->cerr_expr = ce ? ce->expression : -1;
		hs_free_compile_error(ce);
	}
	free(ex); free(fl); free(ids);
}

/* the job into the ruleset: 0, or -1 with its compile error in err */
static int kind_finish(struct ruleset *rs, struct kind_job *jb, const char *cache_dir, char *err, size_t errlen)
{
	struct kind_db *k = &rs->kdb[jb->kind];
	unsigned nh = kind_count_hs(rs, jb);
	k->rule_of = calloc(nh + 1, sizeof *k->rule_of);
	k->pcre_rules = calloc(jb->n + 1, sizeof *k->pcre_rules);
	if (!k->rule_of || !k->pcre_rules) abort();
	unsigned m = 0;
	for (unsigned j = 0; j < jb->n; j++) {
		struct rule *r = &rs->rules[jb->idx[j]];
		r->mode = jb->modes[j];
		if (jb->modes[j] == RM_PCRE) { k->pcre_rules[k->npcre++] = jb->idx[j]; rs->stats.pcre_only++; continue; }
		if (jb->modes[j] == RM_HS) rs->stats.hs_patterns++; else rs->stats.hs_prefilter++;
		r->hs_id = m;
		for (unsigned q = 0; q < (r->npcx ? r->npcx : 1); q++) k->rule_of[m++] = jb->idx[j];
	}
	k->n = nh;
	k->db = jb->db;
	jb->db = NULL;
	if (jb->cached) {
		rs->stats.cache_hit = 1;
	} else if (jb->failed) {
		snprintf(err, errlen, "hyperscan: %s (expression %d)", jb->cerr, jb->cerr_expr);
		return -1;
	} else if (nh && *jb->path) {
		int e = cache_write(jb->path, jb->n, jb->modes, k->db);
		if (e != 0 && rs->stats.cache_write_err == 0) rs->stats.cache_write_err = e;
		cache_prune(cache_dir, (int)jb->kind, jb->path);
	}
	return 0;
}

static void kind_job_free(struct kind_job *jb)
{
	for (unsigned j = 0; j < jb->n; j++) free(jb->pats[j]);
	free(jb->pats); free(jb->idx); free(jb->modes); free(jb->cerr);
	if (jb->db) hs_free_database(jb->db);
}

#define BUILD_MAX_THREADS 4

/* The work of building the databases: each rule's mode (Hyperscan
 * compiles of it alone), and each kind's database once its rules' modes
 * are known (hs_compile_multi: most of the time of a cold compile), on a
 * few threads (Hyperscan's compiler keeps no state between calls: each
 * builds its own context).  The rules are tasks in one list, the kinds
 * with the longest patterns first and in a kind the longest first (the
 * longest cost the most: the stock body rule cut in pieces takes 3 s);
 * the thread that decides a kind's last rule compiles its database, so
 * the stock body database, about two thirds of the whole, starts early
 * and the other kinds are done beside it. */
struct build_task { struct kind_job *jb; unsigned j; size_t cost; };

struct build_pool {
	const struct ruleset *rs;
	struct build_task *tasks;
	size_t ntasks, next;
	pthread_mutex_t mu;
};

static void *build_worker(void *arg)
{
	struct build_pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		size_t t = p->next < p->ntasks ? p->next++ : p->ntasks;
		pthread_mutex_unlock(&p->mu);
		if (t == p->ntasks) return NULL;
		struct build_task *tk = &p->tasks[t];
		kind_mode(p->rs, tk->jb, tk->j);
		pthread_mutex_lock(&p->mu);
		int last = --tk->jb->pending == 0;
		pthread_mutex_unlock(&p->mu);
		if (last) kind_compile(p->rs, tk->jb);
	}
}

static size_t rule_cost(const struct ruleset *rs, const struct kind_job *jb, unsigned j)
{
	const struct rule *r = &rs->rules[jb->idx[j]];
	if (!r->npcx) return strlen(jb->pats[j]);
	size_t c = 0;
	for (unsigned q = 0; q < r->npcx; q++) c += strlen(r->pcx_src[q]);
	return c;
}

static int costly_first(const void *a, const void *b)
{
	const struct build_task *x = a, *y = b;
	if (x->jb != y->jb) {
		size_t cx = x->jb->cost, cy = y->jb->cost;
		if (cx != cy) return cx < cy ? 1 : -1;
		return (x->jb->kind > y->jb->kind) - (x->jb->kind < y->jb->kind);
	}
	if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
	return (x->j > y->j) - (x->j < y->j);
}

/* build_threads - online CPUs, at most BUILD_MAX_THREADS (the compile must
 * not take a large machine's every core), at least 1 */
static unsigned build_threads(void)
{
	long c = sysconf(_SC_NPROCESSORS_ONLN);
	return c < 1 ? 1 : c > BUILD_MAX_THREADS ? BUILD_MAX_THREADS : (unsigned)c;
}

static int build_kinds(struct ruleset *rs, const char *cache_dir, char *err, size_t errlen)
{
	struct kind_job jobs[RK_META];
	size_t ntasks = 0;
	for (int k = 0; k < RK_META; k++) {
		kind_prepare(rs, (enum rule_kind)k, cache_dir, &jobs[k]);
		if (!jobs[k].cached) ntasks += jobs[k].n;
	}
	struct build_pool p = { .rs = rs };
	p.tasks = calloc(ntasks + 1, sizeof *p.tasks);
	if (!p.tasks) abort();
	for (int k = 0; k < RK_META; k++) {
		struct kind_job *jb = &jobs[k];
		if (jb->cached) continue;
		for (unsigned j = 0; j < jb->n; j++) {
			size_t c = rule_cost(rs, jb, j);
			p.tasks[p.ntasks++] = (struct build_task){ jb, j, c };
			jb->cost += c;
		}
	}
	qsort(p.tasks, p.ntasks, sizeof *p.tasks, costly_first);
	pthread_mutex_init(&p.mu, NULL);
	pthread_t th[BUILD_MAX_THREADS];
	unsigned nth = 0, want = build_threads();
	/* the calling thread is one of them; a thread that cannot be
	 * started leaves its share to the others.  The others leave the
	 * process's signals to the thread that handled them (thread.h). */
	while (nth + 1 < want && nth + 1 < p.ntasks && thread_start_blocked(&th[nth], build_worker, &p) == 0) nth++;
	build_worker(&p);
	for (unsigned i = 0; i < nth; i++) pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.mu);
	free(p.tasks);
	int rc = 0;
	for (int k = 0; k < RK_META; k++) {
		/* after a kind that fails, the next ones are not taken in (as
		 * when the kinds were built one after the other) */
		if (rc == 0 && kind_finish(rs, &jobs[k], cache_dir, err, errlen) < 0) rc = -1;
		kind_job_free(&jobs[k]);
	}
	return rc;
}

/* --- metas ------------------------------------------------------------------ */

/* resolve r (a meta): 1 loaded, 0 not; marks visiting for cycle detection */
static int resolve_meta(struct ruleset *rs, unsigned i, unsigned char *state, unsigned depth)
{
	struct rule *r = &rs->rules[i];
	if (state[i] == 2) return r->loaded == 1;
	if (state[i] == 1 || depth > 1000) { rule_not_loaded(r, "meta dependency loop"); state[i] = 2; return 0; }
	state[i] = 1;
	int ok = r->loaded == 1 && r->meta != NULL;
	for (size_t t = 0; ok && t < r->nmeta; t++) {
		if (r->meta[t].op != 1) continue;
		unsigned d = r->meta[t].rule;
		struct rule *dr = &rs->rules[d];
		if (!dr->defined) { continue; }   /* defined nowhere: counts as 0 */
		if (dr->kind == RK_META) {
			if (!resolve_meta(rs, d, state, depth + 1)) {
				rule_not_loaded(r, "depends on %s, not loaded", dr->name);
				ok = 0;
			}
		} else if (dr->loaded != 1 && (dr->tflags & (TF_NET | TF_LEARN))) {
			/* a network or Bayes test: never hit here, as in SpamAssassin
			 * with network tests and Bayes off; the meta still works */
			continue;
		} else if (dr->loaded != 1) {
			rule_not_loaded(r, "depends on %s, not loaded", dr->name);
			ok = 0;
		}
	}
	state[i] = 2;
	if (ok) rs->meta_order[rs->nmeta_order++] = i;
	return ok;
}

#define MAX_SPLIT_DEPTH 8
#define MAX_SPLIT_PIECES 512     /* compiled pieces of one rule */
#define HS_MAX_PIECE 12000       /* cut pieces longer than this again: Hyperscan refuses ~16K */

static void free_pieces(struct rule *r)
{
	for (unsigned i = 0; i < r->npcx; i++) { pcre2_code_free(r->pcx[i]); free(r->pcx_src[i]); }
	free(r->pcx);
	free(r->pcx_src);
	r->pcx = NULL;
	r->pcx_src = NULL;
	r->npcx = 0;
}

static void add_piece(struct rule *r, pcre2_code *c, char *src)
{
	pcre2_code **v = realloc(r->pcx, (r->npcx + 1) * sizeof *v);
	char **w = realloc(r->pcx_src, (r->npcx + 1) * sizeof *w);
	if (!v || !w) abort();
	r->pcx = v;
	r->pcx_src = w;
	v[r->npcx] = c;
	w[r->npcx++] = src;
}

struct piece_list { char **src; size_t n; };

/* cut re (textually) into pieces short enough for Hyperscan to prefilter:
 * 0, or -1 (some part cannot be cut short enough) */
static int cut_pieces(const char *re, int depth, struct piece_list *out)
{
	char **pieces;
	size_t np = depth < MAX_SPLIT_DEPTH ? rules_split_regex(re, HS_MAX_PIECE, &pieces) : 0;
	if (!np) return -1;
	int rc = 0;
	for (size_t i = 0; i < np; i++) {
		size_t len = strlen(pieces[i]);
		if (rc == 0 && len > HS_MAX_PIECE && cut_pieces(pieces[i], depth + 1, out) == 0) {
			free(pieces[i]);
			continue;
		}
		if (rc || out->n >= MAX_SPLIT_PIECES || len > HS_MAX_PIECE_LEN || has_text_anchor(pieces[i])) {
			rc = -1;
			free(pieces[i]);
			continue;
		}
		char **v = realloc(out->src, (out->n + 1) * sizeof *v);
		if (!v) abort();
		out->src = v;
		v[out->n++] = pieces[i];
	}
	free(pieces);
	return rc;
}

/* A regex PCRE2 finds too large, as pieces (split.c) that Hyperscan can
 * prefilter, each compiled by PCRE2: PCRE2 then runs only on the texts
 * Hyperscan points at (PCRE2 alone on every text: five such stock rules
 * halved the speed of the whole scan).  0, or -1 leaving r without pieces;
 * the cutting is done on the text first, so a rule that cannot be cut
 * costs no compile. */
static int compile_pieces(struct rule *r, uint32_t opt)
{
	struct piece_list pl = { NULL, 0 };
	int rc = cut_pieces(r->re, 0, &pl);
	for (size_t i = 0; i < pl.n; i++) {
		int ec;
		PCRE2_SIZE eo;
		pcre2_code *c = rc ? NULL : pcre2_compile((PCRE2_SPTR)pl.src[i], PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
		if (!c) { rc = -1; free(pl.src[i]); continue; }
		pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
		add_piece(r, c, pl.src[i]);
	}
	free(pl.src);
	if (rc < 0) free_pieces(r);
	return rc;
}

int rules_compile(struct ruleset *rs, const char *cache_dir, char *err, size_t errlen)
{
	if (rs->compiled) { snprintf(err, errlen, "already compiled"); return -1; }
	if (hs_valid_platform() != HS_SUCCESS) { snprintf(err, errlen, "hyperscan: CPU lacks SSSE3"); return -1; }
	rs->compiled = 1;
	if (cache_dir && *cache_dir && mkdir(cache_dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "rules cache %s: %s", cache_dir, strerror(errno));
		return -1;
	}
	/* undefined names (score/describe only): not rules */
	for (size_t i = 0; i < rs->nreplace; i++) {
		int k = rs_find(rs, rs->replace_names[i], strlen(rs->replace_names[i]));
		if (k < 0) continue;
		struct rule *r = &rs->rules[k];
		if (r->re && r->loaded == 1) {
			char *x = expand_tags(rs, r->re, 0);
			free(r->re);
			r->re = x;
		}
	}
	for (size_t i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		if (!r->defined) continue;
		if (!r->has_score) {
			/* as SpamAssassin: 1.0, 0.01 for T_ rules, negated for nice rules */
			r->score = strncmp(r->name, "__", 2) == 0 ? 0 : strncmp(r->name, "T_", 2) == 0 ? 0.01 : 1.0;
			if (r->tflags & TF_NICE) r->score = -r->score;
		}
		if (r->loaded != 1 || !r->re) continue;
		/* the offset limit: scan.c matches long texts in runs of start offsets */
		uint32_t opt = PCRE2_USE_OFFSET_LIMIT;
		if (r->reflags & RE_I) opt |= PCRE2_CASELESS;
		if (r->reflags & RE_M) opt |= PCRE2_MULTILINE;
		if (r->reflags & RE_S) opt |= PCRE2_DOTALL;
		if (r->reflags & RE_X) opt |= PCRE2_EXTENDED;
		int ec;
		PCRE2_SIZE eo;
		r->pc = pcre2_compile((PCRE2_SPTR)r->re, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
		if (!r->pc && ec == PCRE2_ERROR_PATTERN_TOO_LARGE) {
			if (compile_pieces(r, opt) == 0) continue;
			rule_not_loaded(r, "regular expression too large for PCRE2, and it cannot be cut into pieces "
			                "short enough for Hyperscan to prefilter");
			continue;
		}
		if (!r->pc) {
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(ec, msg, sizeof msg);
			rule_not_loaded(r, "regular expression refused at offset %zu: %s", (size_t)eo, (char *)msg);
			continue;
		}
		pcre2_jit_compile(r->pc, PCRE2_JIT_COMPLETE);   /* no JIT: interpreted, same result */
	}
	rs->eval_rules = calloc(rs->nrules + 1, sizeof *rs->eval_rules);
	if (!rs->eval_rules) abort();
	for (size_t i = 0; i < rs->nrules; i++)
		if (rs->rules[i].defined && rs->rules[i].loaded == 1 && rs->rules[i].ev)
			rs->eval_rules[rs->neval++] = (unsigned)i;
	rs->meta_order = calloc(rs->nrules + 1, sizeof *rs->meta_order);
	unsigned char *state = calloc(rs->nrules + 1, 1);
	if (!rs->meta_order || !state) abort();
	for (size_t i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		if (r->defined && r->kind == RK_META && r->loaded == 1) meta_compile(rs, r);
	}
	for (size_t i = 0; i < rs->nrules; i++)
		if (rs->rules[i].defined && rs->rules[i].kind == RK_META) resolve_meta(rs, (unsigned)i, state, 0);
	free(state);
	if (build_kinds(rs, cache_dir, err, errlen) < 0) return -1;
	/* redirector_pattern: a regex PCRE2 refuses is left out (as SpamAssassin
	 * warns and goes on) */
	rs->redirectors = calloc(rs->nredirector_src + 1, sizeof *rs->redirectors);
	if (!rs->redirectors) abort();
	for (size_t i = 0; i < rs->nredirector_src; i++) {
		char *pat;
		unsigned fl;
		const char *after;
		if (perl_re_split(rs->redirector_src[i], &pat, &fl, &after) < 0) continue;
		int ec;
		PCRE2_SIZE eo;
		pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
		                              (fl & RE_I ? PCRE2_CASELESS : 0) | (fl & RE_S ? PCRE2_DOTALL : 0) |
		                              (fl & RE_M ? PCRE2_MULTILINE : 0) | (fl & RE_X ? PCRE2_EXTENDED : 0),
		                              &ec, &eo, NULL);
		free(pat);
		if (!c) continue;
		pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
		rs->redirectors[rs->nredirectors++] = c;
	}
	rs->mctx = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(rs->mctx, PCRE_MATCH_LIMIT);
	pcre2_set_depth_limit(rs->mctx, PCRE_DEPTH_LIMIT);
	rules_prepare_targets(rs);
	for (size_t i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		if (!r->defined) continue;
		if (r->loaded == 1 && r->kind < RK_COUNT) rs->stats.loaded[r->kind]++;
		else {
			rs->stats.not_loaded++;
			if (r->why && strncmp(r->why, "eval:", 5) == 0) rs->stats.not_loaded_eval++;
		}
	}
	return 0;
}
