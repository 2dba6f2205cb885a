/* eval_testlib.h - what the eval modules' unit tests share: load a
 * ruleset from text (asserting it parses and compiles), collect the
 * names of the rules that hit, ask whether a rule was loaded.  Included by tests/unit/test_eval_*.c
 * after cmocka.h and rules/rules.h. */
#ifndef MW_EVAL_TESTLIB_H
#define MW_EVAL_TESTLIB_H

struct hits { char names[8192]; };

static void collect(void *arg, const struct rules_hit *h)
{
	struct hits *hs = arg;
	strcat(hs->names, " ");
	strcat(hs->names, h->name);
	strcat(hs->names, " ");
}

static int has(const struct hits *h, const char *name)
{
	char k[128];
	snprintf(k, sizeof k, " %s ", name);
	return strstr(h->names, k) != NULL;
}

static struct ruleset *load(const char *text)
{
	struct ruleset *rs = rules_new();
	char err[512] = "";
	int rc = rules_load_text(rs, "test.cf", text, strlen(text), err, sizeof err);
	if (rc) fprintf(stderr, "load: %s\n", err);
	assert_int_equal(rc, 0);
	rc = rules_compile(rs, NULL, err, sizeof err);
	if (rc) fprintf(stderr, "compile: %s\n", err);
	assert_int_equal(rc, 0);
	return rs;
}

/* rule_loaded - 1 loaded, 0 known but not loaded, -1 not in the ruleset */
static inline int rule_loaded(const struct ruleset *rs, const char *name)
{
	for (size_t i = 0; i < rules_count(rs); i++) {
		enum rule_kind k;
		int loaded;
		double score;
		const char *n = rules_info(rs, i, &k, &loaded, &score);
		if (strcmp(n, name) == 0) return loaded;
	}
	return -1;
}

#endif
