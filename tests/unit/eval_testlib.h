/* eval_testlib.h - what the eval modules' unit tests share: load a
 * ruleset from text (asserting it parses and compiles) and collect the
 * names of the rules that hit.  Included by tests/unit/test_eval_*.c
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

#endif
