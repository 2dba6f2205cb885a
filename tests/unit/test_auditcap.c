/* test_auditcap.c - the rcpts list of an audit record (auditcap.h): within
 * its budget whatever the recipients, the accepted ones listed before any
 * refused one, at most AUDIT_REFUSED_LISTED refused, each kind in order,
 * and the rest counted; the text it writes is strict JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "proxy/auditcap.h"
#include "proxy/jsonw.h"
#include "proxy/sbuf.h"

/* write - {"rcpts": [...], counters} of r[0..n) in budget bytes; the
 * object parsed back */
static struct json_object *write(const struct audit_rcpt *r, size_t n, size_t before,
                                 size_t budget, size_t *len)
{
	struct sbuf b;
	struct jsonw w;
	struct json_object *o;

	sbuf_init(&b, (size_t)-1);
	jsonw_init(&w, &b);
	jsonw_object_begin(&w);
	audit_rcpts(&w, r, n, before, budget);
	jsonw_object_end(&w);
	assert_false(jsonw_failed(&w));
	o = json_tokener_parse(b.data);
	assert_non_null(o);
	*len = b.len;
	sbuf_free(&b);
	return o;
}

static size_t count(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? (size_t)json_object_get_int64(v) : 0;
}

static void test_all_listed_when_small(void **state)
{
	struct audit_rcpt r[] = {
		{ "a@example.net", "250 2.1.5 Ok", 1 },
		{ "b@example.net", "550 5.1.1 No", 0 },
	};
	size_t len;
	struct json_object *o = write(r, 2, 0, 10000, &len), *a;

	(void)state;
	assert_true(json_object_object_get_ex(o, "rcpts", &a));
	assert_int_equal(json_object_array_length(a), 2);
	assert_string_equal(json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(a, 1), "address")), "b@example.net");
	assert_int_equal(count(o, "rcpts_unlisted"), 0);
	assert_false(json_object_object_get_ex(o, "rcpts_unlisted", NULL));
	json_object_put(o);
}

static void test_budget_and_priority(void **state)
{
	enum { N = 3000 };
	struct audit_rcpt *r = calloc(N, sizeof(*r));
	char (*addr)[600] = calloc(N, sizeof(*addr));
	char reply[600];
	size_t len, i, listed, acc = 0, refused = 0, last = 0;
	struct json_object *o, *a;

	(void)state;
	memset(reply, 'R', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	for (i = 0; i < N; i++) {
		/* the refused ones first: they must not take the room */
		snprintf(addr[i], sizeof(addr[i]), "%05zux%0500d@example.net", i, 0);
		r[i].addr = addr[i];
		r[i].reply = reply;
		r[i].accepted = i >= 2000;
	}
	o = write(r, N, 7, 40000, &len);
	assert_true(len <= 40000 + 64);
	assert_true(json_object_object_get_ex(o, "rcpts", &a));
	listed = json_object_array_length(a);
	for (i = 0; i < listed; i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		const char *ad = json_object_get_string(json_object_object_get(e, "address"));
		const char *rp = json_object_get_string(json_object_object_get(e, "reply"));
		size_t idx = 0;

		assert_int_equal(sscanf(ad, "%5zu", &idx), 1);

		assert_true(i == 0 || idx > last);           /* the client's order */
		last = idx;
		assert_true(strlen(rp) + 2 <= AUDIT_RCPT_REPLY_MAX);
		assert_string_equal(rp + strlen(rp) - 3, "...");
		if (json_object_get_boolean(json_object_object_get(e, "accepted")))
			acc++;
		else
			refused++;
	}
	/* all the room went to accepted ones: not a refused one listed */
	assert_true(acc > 0);
	assert_int_equal(refused, 0);
	assert_int_equal(count(o, "rcpts_unlisted"), N - listed + 7);
	assert_int_equal(count(o, "rcpts_unlisted_accepted"), 1000 - acc);
	json_object_put(o);

	/* room enough: every accepted one, then 100 refused ones, no more */
	for (i = 0; i < N; i++)
		r[i].addr = "x@example.net";
	o = write(r, N, 0, 1 << 20, &len);
	assert_true(json_object_object_get_ex(o, "rcpts", &a));
	assert_int_equal(json_object_array_length(a), 1000 + AUDIT_REFUSED_LISTED);
	assert_int_equal(count(o, "rcpts_unlisted"), 2000 - AUDIT_REFUSED_LISTED);
	assert_int_equal(count(o, "rcpts_unlisted_accepted"), 0);
	json_object_put(o);

	/* no room: nothing listed, all counted */
	o = write(r, N, 0, 0, &len);
	assert_true(json_object_object_get_ex(o, "rcpts", &a));
	assert_int_equal(json_object_array_length(a), 0);
	assert_int_equal(count(o, "rcpts_unlisted"), N);
	assert_int_equal(count(o, "rcpts_unlisted_accepted"), 1000);
	json_object_put(o);
	free(addr);
	free(r);
}

/* dkim_sign - {"dkim_sign": ...} of list, parsed back ("{}" for "") */
static struct json_object *dkim_sign(const char *list)
{
	struct sbuf b;
	struct jsonw w;
	struct json_object *o;

	sbuf_init(&b, (size_t)-1);
	jsonw_init(&w, &b);
	jsonw_object_begin(&w);
	audit_dkim_sign(&w, list);
	jsonw_object_end(&w);
	assert_false(jsonw_failed(&w));
	o = json_tokener_parse(b.data);
	assert_non_null(o);
	sbuf_free(&b);
	return o;
}

static void expect(const char *list, const char *json)
{
	struct json_object *o = dkim_sign(list), *want = json_tokener_parse(json);

	assert_non_null(want);
	if (!json_object_equal(o, want))
		fail_msg("%s gave %s, want %s", list, json_object_to_json_string(o), json);
	json_object_put(o);
	json_object_put(want);
}

/* the audit record's dkim_sign from the scanner's list (scanproto.h) */
static void test_dkim_sign(void **state)
{
	(void)state;
	expect("", "{}");
	expect("signed=sign.test/ed1 signed=sign.test/rsa1",
	    "{\"dkim_sign\": {\"signed\": [\"d=sign.test s=ed1\", \"d=sign.test s=rsa1\"]}}");
	expect("kept=sign.test/ed1 signed=sign.test/rsa1",
	    "{\"dkim_sign\": {\"signed\": [\"d=sign.test s=rsa1\"], \"kept\": [\"d=sign.test s=ed1\"]}}");
	expect("nokey=signed.test", "{\"dkim_sign\": {\"unsigned\": \"no key for signed.test\"}}");
	expect("badfrom", "{\"dkim_sign\": {\"unsigned\": "
	    "\"From does not hold exactly one address with a domain\"}}");
	expect("failed=sign.test/ed1 signed=sign.test/rsa1",
	    "{\"dkim_sign\": {\"signed\": [\"d=sign.test s=rsa1\"], \"failed\": [\"d=sign.test s=ed1\"]}}");
	expect("failed=sign.test/ed1 more=31",
	    "{\"dkim_sign\": {\"failed\": [\"d=sign.test s=ed1\"], \"unsigned\": \"signing failed\", "
	    "\"more\": 31}}");
	/* a selector "nokey=..." is no reason */
	expect("signed=nokey.test/nokey=x", "{\"dkim_sign\": {\"signed\": [\"d=nokey.test s=nokey=x\"]}}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_listed_when_small),
		cmocka_unit_test(test_budget_and_priority),
		cmocka_unit_test(test_dkim_sign),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
