/* test_bayes_list.c - a mailing list's boilerplate (filters/bayes_list.c):
 * which messages name a list and which list, the window of its learned
 * messages, the boilerplate made from it and taken out of a message's
 * tokens, and stored values that are not what they should be. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/bayes_list.h"
#include "proxy/config.h"
#include "proxy/scanproto.h"
#include "tests/unit/unit_tmpdir.h"

static int key_of(const char *msg, char *key, size_t keysz)
{
	struct scan_request req;
	struct msgscan ms;
	int r;

	memset(&req, 0, sizeof(req));
	memset(&ms, 0, sizeof(ms));
	ms.req = &req;
	ms.msg = (const unsigned char *)msg;
	ms.len = strlen(msg);
	msgscan_parse(&ms);
	r = bayes_list_key(&ms, key, keysz);
	msgscan_free(&ms);
	return r;
}

static void test_key(void **state)
{
	char a[64], b[64], c[64];

	(void)state;
	assert_int_equal(key_of("List-Id: ILUG <ilug.linux.ie>\r\nSubject: x\r\n\r\nbody\r\n", a, sizeof(a)), 1);
	assert_memory_equal(a, "bayes:list:", 11);
	/* the name alone counts, in any case; the description does not */
	assert_int_equal(key_of("List-Id: Irish Linux Users <ILUG.linux.ie>\r\n\r\nb\r\n", b, sizeof(b)), 1);
	assert_string_equal(a, b);
	/* without brackets: the value */
	assert_int_equal(key_of("List-Id: ilug.linux.ie\r\n\r\nb\r\n", b, sizeof(b)), 1);
	assert_string_equal(a, b);
	/* another list, another key */
	assert_int_equal(key_of("List-Id: <fork.xent.com>\r\n\r\nb\r\n", c, sizeof(c)), 1);
	assert_string_not_equal(a, c);
	/* older list software: Mailing-List, X-Mailing-List, List-Post */
	assert_int_equal(key_of("Mailing-List: list zzzzteana@yahoogroups.com; contact x-owner@y.com\r\n\r\nb\r\n",
	                        b, sizeof(b)), 1);
	assert_int_equal(key_of("List-Post: <mailto:zzzzteana@yahoogroups.com>\r\n\r\nb\r\n", c, sizeof(c)), 1);
	assert_string_equal(b, c);
	/* a list's own Sender; a person's Sender is no list */
	assert_int_equal(key_of("Sender: owner-cypherpunks@minder.net\r\n\r\nb\r\n", b, sizeof(b)), 1);
	assert_int_equal(key_of("Sender: fork-admin@xent.com\r\n\r\nb\r\n", b, sizeof(b)), 1);
	assert_int_equal(key_of("Sender: bob@example.com\r\nFrom: bob@example.com\r\n\r\nb\r\n", b, sizeof(b)), 0);
	assert_int_equal(key_of("From: a@b.c\r\nSubject: s\r\n\r\nb\r\n", b, sizeof(b)), 0);
	/* empty names are none */
	assert_int_equal(key_of("List-Id:   \r\n\r\nb\r\n", b, sizeof(b)), 0);
	/* "<>" names nothing either (until session 20's review it was the
	 * name "<>": one list of every message that carried it) */
	assert_int_equal(key_of("List-Id: <>\r\n\r\nb\r\n", b, sizeof(b)), 0);
	assert_int_equal(key_of("List-Id: Offers < \t>\r\n\r\nb\r\n", b, sizeof(b)), 0);
	/* and a List-Id that names nothing does not hide the fields after
	 * it: the list is the one List-Post names (until the review: none
	 * for a blank one, "<>" for the other) */
	assert_int_equal(key_of("List-Post: <mailto:zzzzteana@yahoogroups.com>\r\n\r\nb\r\n", c, sizeof(c)), 1);
	assert_int_equal(key_of("List-Id:  \r\nList-Post: <mailto:zzzzteana@yahoogroups.com>\r\n\r\nb\r\n",
	                        b, sizeof(b)), 1);
	assert_string_equal(b, c);
	assert_int_equal(key_of("List-Id: <>\r\nList-Post: <mailto:zzzzteana@yahoogroups.com>\r\n\r\nb\r\n",
	                        b, sizeof(b)), 1);
	assert_string_equal(b, c);
	assert_int_equal(key_of("List-Id: <>\r\nSender: owner-cypherpunks@minder.net\r\n\r\nb\r\n",
	                        b, sizeof(b)), 1);
	assert_string_not_equal(b, c);
	/* a name in brackets with blanks around it is the name */
	assert_int_equal(key_of("List-Id: < ilug.linux.ie >\r\n\r\nb\r\n", b, sizeof(b)), 1);
	assert_string_equal(a, b);
}

static struct store *open_store(struct config **c)
{
	char ov[160], err[512];
	const char *o[1] = { ov };
	struct store *st;

	snprintf(ov, sizeof(ov), "store_path=%s/s.lmdb", unit_dir);
	assert_non_null(*c = config_load(NULL, o, 1, err, sizeof(err)));
	assert_non_null(st = store_open(*c, err, sizeof(err)));
	return st;
}

/* a message's tokens: the list's footer (1000..1009, in every message),
 * a token every other message has (2000), and i's own words */
static void tokens(struct bayes_tokens *t, unsigned i)
{
	size_t n = 0;

	t->cap = 32;
	t->h = calloc(t->cap, sizeof(*t->h));
	for (uint64_t f = 1000; f < 1010; f++)
		t->h[n++] = f;
	if (i % 2 == 0)
		t->h[n++] = 2000;
	t->h[n++] = 100000 + 2 * (uint64_t)i;
	t->h[n++] = 100000 + 2 * (uint64_t)i + 1;
	t->n = n;
}

/* strip_of - what is left of message i's tokens plus a probe (3) */
static size_t strip_of(struct store *st, const char *key, unsigned i, size_t *removed)
{
	struct bayes_tokens t, listed = { 0 };
	size_t left;

	tokens(&t, i);
	t.h[t.n++] = 3;                          /* a probe, moved to its sorted place */
	for (size_t a = t.n - 1; a > 0 && t.h[a] < t.h[a - 1]; a--) {
		uint64_t x = t.h[a];

		t.h[a] = t.h[a - 1];
		t.h[a - 1] = x;
	}
	assert_int_equal(bayes_list_strip(st, key, &t, &listed), 0);
	left = t.n;
	*removed = listed.n;
	for (size_t a = 1; a < t.n; a++)
		assert_true(t.h[a - 1] < t.h[a]);  /* still sorted, unique */
	for (size_t a = 1; a < listed.n; a++)
		assert_true(listed.h[a - 1] < listed.h[a]);
	/* what left one went to the other */
	assert_int_equal(left + listed.n, (i % 2 == 0 ? 14 : 13));
	bayes_tokens_free(&listed);
	free(t.h);
	return left;
}

static void test_window(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:0123456789abcdef0123456789abcdef";
	size_t removed;
	unsigned i;

	(void)state;
	/* nothing learned: nothing left out (12 tokens and the probe) */
	assert_int_equal(strip_of(st, key, 1, &removed), 13);
	assert_int_equal(removed, 0);
	for (i = 0; i < BAYES_LIST_MIN - 1; i++) {
		struct bayes_tokens t;

		tokens(&t, i);
		assert_int_equal(bayes_list_note(st, key, i + 1, &t, 0, 0), 0);
		free(t.h);
	}
	/* below BAYES_LIST_MIN messages: still nothing */
	assert_int_equal(strip_of(st, key, 1, &removed), 13);
	assert_int_equal(removed, 0);
	{
		struct bayes_tokens t;

		tokens(&t, i);
		assert_int_equal(bayes_list_note(st, key, i + 1, &t, 0, 0), 0);
		i++;
		free(t.h);
	}
	/* five remembered: the footer (5 of 5) and 2000 (3 of 5) are the
	 * list's; each message's own words (1 of 5) are not */
	assert_int_equal(strip_of(st, key, 2, &removed), 14 - 11);
	assert_int_equal(removed, 11);
	assert_int_equal(strip_of(st, key, 1, &removed), 13 - 10);
	assert_int_equal(removed, 10);
	/* the window keeps the latest BAYES_LIST_RING: after 40 more whose
	 * even ones all lack 2000 (odd i only), 2000 is no longer the list's */
	for (; i < 5 + 2 * BAYES_LIST_RING; i++) {
		struct bayes_tokens t;

		tokens(&t, 2 * i + 1);
		assert_int_equal(bayes_list_note(st, key, i + 1, &t, 0, 0), 0);
		free(t.h);
	}
	assert_int_equal(strip_of(st, key, 2, &removed), 14 - 10);
	assert_int_equal(removed, 10);
	{
		/* the stored window holds BAYES_LIST_RING messages, no more */
		unsigned char *d;
		size_t len;

		assert_int_equal(store_blob_get(st, key, &d, &len), 1);
		assert_int_equal(len, 12 + BAYES_LIST_RING * (8 + 4 + 12 * 8));
		free(d);
	}
	store_close(st);
	config_unref(c);
}

static void test_long_message_not_remembered(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:00000000000000000000000000000001";
	struct bayes_tokens t = { 0 };
	unsigned char *d = NULL;
	size_t len = 0;

	(void)state;
	t.n = t.cap = BAYES_LIST_SLOT_MAX + 1;
	t.h = calloc(t.n, sizeof(*t.h));
	for (size_t i = 0; i < t.n; i++)
		t.h[i] = i + 1;
	assert_int_equal(bayes_list_note(st, key, 1, &t, 0, 1), 0);
	assert_int_equal(store_blob_get(st, key, &d, &len), 0);     /* not even a stub */
	t.n = BAYES_LIST_SLOT_MAX;
	assert_int_equal(bayes_list_note(st, key, 2, &t, 0, 0), 0);
	assert_int_equal(store_blob_get(st, key, &d, &len), 1);
	assert_int_equal(len, 12 + 12 + BAYES_LIST_SLOT_MAX * 8);
	/* 2,048 since session 20's review (4,096 before: a slot of 32 KB) */
	assert_int_equal(BAYES_LIST_SLOT_MAX, 2048);
	free(d);
	free(t.h);
	store_close(st);
	config_unref(c);
}

/* values that are not this version's (damaged, a hostile Redis): the
 * window starts anew, the boilerplate is not used; never read past them */
static void test_damaged_values(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:00000000000000000000000000000002";
	const char *bp = "bayes:listbp:00000000000000000000000000000002";
	static const unsigned char bad_ring[] = "MWL1\0\0\0\0\x05\0\0\0\xff\xff\0\0";
	static const unsigned char bad_bp[] = "MWB1\xff\xff\0\0\x01\x02\x03\x04\x05\x06\x07\x08";
	unsigned char *d;
	size_t len, removed;
	struct bayes_tokens t;

	(void)state;
	assert_int_equal(store_blob_set(st, key, bad_ring, sizeof(bad_ring) - 1, 0), 0);
	assert_int_equal(store_blob_set(st, bp, bad_bp, sizeof(bad_bp) - 1, 0), 0);
	assert_int_equal(strip_of(st, key, 1, &removed), 13);
	assert_int_equal(removed, 0);
	tokens(&t, 0);
	assert_int_equal(bayes_list_note(st, key, 7, &t, 0, 1), 0);
	free(t.h);
	assert_int_equal(store_blob_get(st, key, &d, &len), 1);
	assert_int_equal(len, 12 + 12 + 13 * 8);       /* one message, anew (a list seen before) */
	free(d);
	store_close(st);
	config_unref(c);
}

/* note - message i (tokens(i)) noted with id, as learn does (stub 0) or
 * autolearn (1) */
static void note_as(struct store *st, const char *key, uint64_t id, unsigned i, int stub)
{
	struct bayes_tokens t;

	tokens(&t, i);
	assert_int_equal(bayes_list_note(st, key, id, &t, 0, stub), 0);
	free(t.h);
}

static void note(struct store *st, const char *key, uint64_t id, unsigned i)
{
	struct bayes_tokens t;

	tokens(&t, i);
	assert_int_equal(bayes_list_note(st, key, id, &t, 0, 0), 0);
	free(t.h);
}

static size_t stored_len(struct store *st, const char *key)
{
	unsigned char *d = NULL;
	size_t len = 0;

	if (store_blob_get(st, key, &d, &len) != 1)
		return 0;
	free(d);
	return len;
}

/* autolearn: a name seen once costs a stub of 24 bytes, not a window of
 * the message's tokens (a sender may name a new list in every message);
 * learn remembers a list's first message */
static void test_first_message_a_stub(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:00000000000000000000000000000003";
	const char *key2 = "bayes:list:00000000000000000000000000000013";

	(void)state;
	note_as(st, key, 11, 0, 1);
	assert_int_equal(stored_len(st, key), 24);
	note_as(st, key, 11, 0, 1);                    /* the same message: still a stub */
	assert_int_equal(stored_len(st, key), 24);
	note_as(st, key, 12, 1, 1);                    /* another: the window begins */
	assert_int_equal(stored_len(st, key), 12 + 12 + 12 * 8);
	note_as(st, key, 13, 2, 1);
	assert_int_equal(stored_len(st, key), 12 + 2 * 12 + (12 + 13) * 8);
	/* learn: the first message is remembered; a stub autolearn left
	 * gives way to learn's message */
	note(st, key2, 21, 0);
	assert_int_equal(stored_len(st, key2), 12 + 12 + 13 * 8);
	store_del(st, key2);
	note_as(st, key2, 21, 0, 1);
	note(st, key2, 22, 1);
	assert_int_equal(stored_len(st, key2), 12 + 12 + 12 * 8);
	store_close(st);
	config_unref(c);
}

/* a message forgotten and learned again (its mark was absent) is not in
 * the window twice: until session 20's review it was, its tokens
 * counting double in the half */
static void test_relearned_message_once(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:00000000000000000000000000000004";
	size_t removed, len;
	unsigned i;

	(void)state;
	for (i = 0; i < BAYES_LIST_MIN - 1; i++)
		note(st, key, i + 1, 2 * i + 1);       /* odd: without 2000 */
	len = stored_len(st, key);
	/* message 1 again, and again: nothing added */
	note(st, key, 1, 1);
	note(st, key, 1, 1);
	assert_int_equal(stored_len(st, key), len);
	/* four messages, below BAYES_LIST_MIN: no boilerplate yet (with
	 * message 1 counted again it had five) */
	assert_int_equal(strip_of(st, key, 1, &removed), 13);
	assert_int_equal(removed, 0);
	/* one more, another message: the footer is the list's */
	note(st, key, 50, 9);
	assert_int_equal(strip_of(st, key, 1, &removed), 3);
	assert_int_equal(removed, 10);
	store_close(st);
	config_unref(c);
}

/* a window of before the review (no ids, RING_MAGIC "MWL1") is read, not
 * started anew, and goes on in the new form */
static void test_window_of_before_read(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:00000000000000000000000000000005";
	unsigned char v1[12 + 4 * (4 + 12 * 8)], *p = v1;
	size_t removed;

	(void)state;
	memcpy(p, "MWL1", 4);
	p[4] = 4, p[5] = p[6] = p[7] = 0;              /* next */
	p[8] = 4, p[9] = p[10] = p[11] = 0;            /* four slots */
	p += 12;
	for (unsigned i = 0; i < 4; i++) {
		struct bayes_tokens t;

		tokens(&t, 2 * i + 1);
		assert_int_equal(t.n, 12);
		memset(p, 0, 4);
		p[0] = 12;
		p += 4;
		for (size_t k = 0; k < t.n; k++, p += 8)
			for (int b = 0; b < 8; b++)
				p[b] = (unsigned char)(t.h[k] >> (8 * b));
		free(t.h);
	}
	assert_int_equal(store_blob_set(st, key, v1, sizeof(v1), 0), 0);
	note(st, key, 77, 9);                          /* the fifth: the boilerplate */
	assert_int_equal(stored_len(st, key), 12 + 5 * (8 + 4 + 12 * 8));
	assert_int_equal(strip_of(st, key, 1, &removed), 3);
	assert_int_equal(removed, 10);
	store_close(st);
	config_unref(c);
}

/* a damaged boilerplate is said once, not at every scan of its list
 * (until session 20's review a warning a message) */
static void test_damaged_boilerplate_said_once(void **state)
{
	struct config *c;
	struct store *st = open_store(&c);
	const char *key = "bayes:list:00000000000000000000000000000006";
	const char *bp = "bayes:listbp:00000000000000000000000000000006";
	static const unsigned char bad_bp[] = "MWB1\x09\0\0\0\x01\x02\x03\x04\x05\x06\x07\x08";
	char path[600], line[1024];
	size_t removed;
	unsigned said = 0;
	int saved, fd;
	FILE *f;

	(void)state;
	assert_int_equal(store_blob_set(st, bp, bad_bp, sizeof(bad_bp) - 1, 0), 0);
	snprintf(path, sizeof(path), "%s/stderr.txt", unit_dir);
	fflush(stderr);
	saved = dup(2);
	assert_true((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	dup2(fd, 2);
	close(fd);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(strip_of(st, key, 1, &removed), 13);
		assert_int_equal(removed, 0);
	}
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_non_null(f = fopen(path, "r"));
	while (fgets(line, sizeof(line), f) != NULL)
		said += strstr(line, "no list boilerplate of this version") != NULL;
	fclose(f);
	assert_true(said <= 1);         /* test_damaged_values may have said it already */
	/* the list's next learned message writes it anew */
	for (unsigned i = 0; i < BAYES_LIST_MIN; i++)
		note(st, key, i + 1, 2 * i + 1);
	assert_int_equal(strip_of(st, key, 1, &removed), 3);
	assert_int_equal(removed, 10);
	store_close(st);
	config_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key),
		cmocka_unit_test_setup_teardown(test_window, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_long_message_not_remembered, unit_tmpdir_setup,
		                                unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_values, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_first_message_a_stub, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_relearned_message_once, unit_tmpdir_setup,
		                                unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_window_of_before_read, unit_tmpdir_setup,
		                                unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_boilerplate_said_once, unit_tmpdir_setup,
		                                unit_tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
