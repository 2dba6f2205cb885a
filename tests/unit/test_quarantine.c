/* test_quarantine.c - the quarantine store's index and ID functions: ID
 * syntax and time, paths, --since times, storing/opening/locking/updating/
 * removing an entry, listing in time order across day directories, expiry
 * (old entries, crash debris, busy entries, empty days), and concurrent
 * stores from several threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "proxy/config.h"
#include "proxy/quarantine.h"
#include "proxy/utf8.h"
#include "tests/unit/unit_tmpdir.h"

/* the running test's scratch directory (unit_tmpdir_setup) */
static const char *const tmpdir = unit_dir;

/* fresh_dir - a new empty store path under tmpdir (not created) */
static void fresh_dir(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

static void write_path(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* craft - an entry with a given ID, as the store would leave it */
static void craft(const char *dir, const char *id)
{
	char p[PATH_MAX], rec[128];

	snprintf(p, sizeof(p), "%s/%.8s", dir, id);
	mkdir(dir, 0700);
	mkdir(p, 0700);
	assert_int_equal(quarantine_path(dir, id, "eml", p, sizeof(p)), 0);
	write_path(p, "Subject: x\r\n\r\nbody\r\n");
	assert_int_equal(quarantine_path(dir, id, "json", p, sizeof(p)), 0);
	snprintf(rec, sizeof(rec), "{ \"id\": \"%s\" }\n", id);
	write_path(p, rec);
}

static int exists(const char *dir, const char *id, const char *ext)
{
	char p[PATH_MAX];

	assert_int_equal(quarantine_path(dir, id, ext, p, sizeof(p)), 0);
	return access(p, F_OK) == 0;
}

/* ------------------------------------------------------------------ */

static void test_id_valid(void **state)
{
	static const char *const good[] = {
		"20261127T013000-3f9a0c1d", "19700101T000000-00000000", "20280229T235959-ffffffff",
		"99991231T235959-0a1b2c3d",
	};
	static const char *const bad[] = {
		"", "2026", "20261127T013000-3f9a0c1", "20261127T013000-3f9a0c1d0",
		"20261127T013000-3F9A0C1D", "20261127t013000-3f9a0c1d", "20261127T013000_3f9a0c1d",
		"20261127T013000-3f9a0c1g", "../../../../etc/passwd00", "20261127/../../3f9a0c1d",
		"20261127T013000-3f9a0c/d", "2026112.T013000-3f9a0c1d", "20261127T01300.-3f9a0c1d",
		"20261327T013000-3f9a0c1d", "20261100T013000-3f9a0c1d", "20270229T013000-3f9a0c1d",
		"20260230T013000-3f9a0c1d", "20261127T240000-3f9a0c1d", "20261127T016000-3f9a0c1d",
		"20261127T013060-3f9a0c1d", "19691231T235959-3f9a0c1d", " 0261127T013000-3f9a0c1d",
		"+0261127T013000-3f9a0c1d", "20261127T013000-3f9a0c1d\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!quarantine_id_valid(good[i]))
			fail_msg("refused %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (quarantine_id_valid(bad[i]))
			fail_msg("accepted '%s'", bad[i]);
	assert_false(quarantine_id_valid(NULL));
	/* embedded NUL: the 24 characters seen are not an ID */
	assert_false(quarantine_id_valid("20261127T013000-3f9a\0c1d"));
}

static void test_id_time(void **state)
{
	time_t t = 0;

	(void)state;
	assert_int_equal(quarantine_id_time("20261127T013000-3f9a0c1d", &t), 0);
	assert_int_equal((long long)t, 1795743000LL);
	assert_int_equal(quarantine_id_time("19700101T000000-00000000", &t), 0);
	assert_int_equal((long long)t, 0);
	assert_int_equal(quarantine_id_time("20280229T235959-ffffffff", &t), 0);
	assert_int_equal((long long)t, 1835481599LL);
	t = 42;
	assert_int_equal(quarantine_id_time("20260230T013000-3f9a0c1d", &t), -1);
	assert_int_equal((long long)t, 42);
}

static void test_path(void **state)
{
	char p[64], longdir[200];

	(void)state;
	assert_int_equal(quarantine_path("/var/q", "20261127T013000-3f9a0c1d", "eml", p, sizeof(p)), 0);
	assert_string_equal(p, "/var/q/20261127/20261127T013000-3f9a0c1d.eml");
	errno = 0;
	assert_int_equal(quarantine_path("/var/q", "../20261127T013000-3f9a0c", "eml", p, sizeof(p)), -1);
	assert_int_equal(errno, EINVAL);
	memset(longdir, 'a', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	assert_int_equal(quarantine_path(longdir, "20261127T013000-3f9a0c1d", "eml", p, sizeof(p)), -1);
	assert_int_equal(errno, ENAMETOOLONG);
}

static void test_parse_time(void **state)
{
	static const char *const bad[] = {
		"", "yesterday", "2026-13-01", "2026-02-30", "2026-11-27T25:00", "2026-11-27T01:60",
		"2026-11-27X", "2026-11-27T01", "2026-11-27T01:30:5", "2h ", " 2h", "-2h", "2", "2y",
		"@", "@12a", "@-5", "2026/11/27", "2026-11-27T01:30Zx", "9999999999d",
	};
	time_t now = 1795743000, t;

	(void)state;
	assert_int_equal(quarantine_parse_time("2026-11-27", now, &t), 0);
	assert_int_equal((long long)t, 1795737600LL);
	assert_int_equal(quarantine_parse_time("2026-11-27T01:30", now, &t), 0);
	assert_int_equal((long long)t, 1795743000LL);
	assert_int_equal(quarantine_parse_time("2026-11-27 01:30:15Z", now, &t), 0);
	assert_int_equal((long long)t, 1795743015LL);
	assert_int_equal(quarantine_parse_time("2026-11-27Z", now, &t), 0);
	assert_int_equal((long long)t, 1795737600LL);
	assert_int_equal(quarantine_parse_time("@1700000000", now, &t), 0);
	assert_int_equal((long long)t, 1700000000LL);
	assert_int_equal(quarantine_parse_time("2h", now, &t), 0);
	assert_int_equal((long long)t, 1795743000LL - 7200);
	assert_int_equal(quarantine_parse_time("90s", now, &t), 0);
	assert_int_equal((long long)t, 1795743000LL - 90);
	assert_int_equal(quarantine_parse_time("7d", now, &t), 0);
	assert_int_equal((long long)t, 1795743000LL - 7 * 86400);
	assert_int_equal(quarantine_parse_time("2w", now, &t), 0);
	assert_int_equal((long long)t, 1795743000LL - 14 * 86400);
	assert_int_equal(quarantine_parse_time("5m", now, &t), 0);
	assert_int_equal((long long)t, 1795743000LL - 300);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (quarantine_parse_time(bad[i], now, &t) == 0)
			fail_msg("accepted '%s'", bad[i]);
}

/* ------------------------------------------------------------------ */

static struct config *store_config(const char *dir)
{
	char qd[600], err[256];
	const char *ov[3] = { qd, "listener.in.listen=127.0.0.1:2525",
	                      "listener.in.upstream=127.0.0.1:2526" };
	struct config *cfg;

	snprintf(qd, sizeof(qd), "quarantine_dir=%s", dir);
	cfg = config_load(NULL, ov, 3, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("config: %s", err);
	return cfg;
}

static const char test_msg[] =
	"From: a@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?= deal\r\n"
	"Message-ID: <m1@example.org>\r\n\r\n.dot line\r\nbody\r\n";

static void store_one(struct config *cfg, char *id)
{
	char *rcpts[2] = { "r1@example.net", "r2@example.net" };
	struct scan_request req;
	struct scan_result res;

	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	req.listener = "in";
	req.mail_from = "a@example.org";
	req.mail_params = "BODY=8BITMIME";
	req.rcpts = rcpts;
	req.nrcpts = 2;
	res.action = MW_QUARANTINE;
	res.score = 7;
	assert_int_equal(quarantine_store(cfg, &req, &res, "score 7 >= 5", test_msg,
	    strlen(test_msg), NULL, 0, id, QUARANTINE_ID_MAX), 0);
}

/* the edits a release applies are recorded whole and read back checked;
 * past QUARANTINE_RELEASE_EDITS_MAX, or one a reader would refuse, nothing
 * is stored (EMSGSIZE): a release must never apply half of them */
static void test_release_edits(void **state)
{
	struct header_edit edits[3] = {
		{ HE_REMOVE_PREFIX, "X-Spam-", NULL, 0 },
		{ HE_REMOVE_AT, "Authentication-Results", NULL, 2 },
		{ HE_ADD, "X-Spam-Status", "Yes, score=7.0 required=5.0\r\n\ttests=A,B", 0 },
	};
	char *rcpts[1] = { "r@example.net" };
	char dir[256], id[QUARANTINE_ID_MAX], err[256];
	struct quarantine_entry e;
	struct scan_request req;
	struct scan_result res;
	struct header_edit *got;
	size_t n;
	char *big;

	(void)state;
	fresh_dir(dir, sizeof(dir), "edits");
	struct config *cfg = store_config(dir);
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	req.listener = "in";
	req.mail_from = "a@example.org";
	req.rcpts = rcpts;
	req.nrcpts = 1;
	res.action = MW_QUARANTINE;
	res.edits = edits;
	res.nedits = 3;
	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg), NULL, 0, id,
	    QUARANTINE_ID_MAX), 0);
	assert_int_equal(quarantine_open(dir, id, 0, &e, err, sizeof(err)), 0);
	assert_int_equal(quarantine_release_edits(&e, &got, &n, err, sizeof(err)), 1);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(got[i].op, edits[i].op);
		assert_string_equal(got[i].name, edits[i].name);
		if (edits[i].value != NULL)
			assert_string_equal(got[i].value, edits[i].value);
		else
			assert_null(got[i].value);
	}
	assert_int_equal(got[1].index, 2);
	header_edits_free(got, n);
	/* recorded before HE_REMOVE_PREFIX (session 18): "remove" of
	 * "X-Spam-*" is read as the prefix removal it meant */
	{
		json_object *rel, *a, *e0;

		assert_true(json_object_object_get_ex(e.rec, "release", &rel));
		assert_true(json_object_object_get_ex(rel, "edits", &a));
		e0 = json_object_array_get_idx(a, 0);
		json_object_object_add(e0, "op", json_object_new_string("remove"));
		json_object_object_add(e0, "name", json_object_new_string("X-Spam-*"));
	}
	assert_int_equal(quarantine_release_edits(&e, &got, &n, err, sizeof(err)), 1);
	assert_int_equal(got[0].op, HE_REMOVE_PREFIX);
	assert_string_equal(got[0].name, "X-Spam-");
	header_edits_free(got, n);
	/* only that one: a filter's removal of "D*" (literal since session
	 * 18) stays the field named "D*", not Date and DKIM-Signature */
	{
		json_object *rel, *a, *e0;

		assert_true(json_object_object_get_ex(e.rec, "release", &rel));
		assert_true(json_object_object_get_ex(rel, "edits", &a));
		e0 = json_object_array_get_idx(a, 0);
		json_object_object_add(e0, "name", json_object_new_string("D*"));
	}
	assert_int_equal(quarantine_release_edits(&e, &got, &n, err, sizeof(err)), 1);
	assert_int_equal(got[0].op, HE_REMOVE);
	assert_string_equal(got[0].name, "D*");
	header_edits_free(got, n);
	/* a record without them (stored before session 18): 0, none */
	json_object_object_del(e.rec, "release");
	assert_int_equal(quarantine_release_edits(&e, &got, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	quarantine_close(&e);

	/* one value past what a result may carry: refused whole */
	big = malloc(QUARANTINE_RELEASE_EDITS_MAX + 2);
	assert_non_null(big);
	memset(big, 'a', QUARANTINE_RELEASE_EDITS_MAX + 1);
	big[QUARANTINE_RELEASE_EDITS_MAX + 1] = '\0';
	edits[2].value = big;
	errno = 0;
	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg), NULL, 0, id,
	    QUARANTINE_ID_MAX), -1);
	assert_int_equal(errno, EMSGSIZE);
	/* a value that would end the header section: refused too */
	edits[2].value = "x\r\n\r\nbody";
	errno = 0;
	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg), NULL, 0, id,
	    QUARANTINE_ID_MAX), -1);
	assert_int_equal(errno, EMSGSIZE);
	free(big);
	config_unref(cfg);
}

/* read_text - the whole file at path (owned, NUL-terminated), *len set */
static char *read_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = malloc(1 << 20);
	size_t n;

	assert_non_null(f);
	assert_non_null(p);
	n = fread(p, 1, (1 << 20) - 1, f);
	fclose(f);
	p[n] = '\0';
	*len = n;
	return p;
}

/* an edit value that is not UTF-8 (the Subject tag's change of a Latin-1
 * Subject) goes through the record byte for byte: in base64, so that the
 * record, repaired to valid UTF-8 as it is written, keeps it (it became
 * U+FFFD in session 19's logs19); a record written before, with the bytes
 * raw, gives them back as well and is armored when it is saved */
static void test_release_edits_8bit(void **state)
{
	static const char latin1[] = "[SPAM] caf\xe9 cr\xe8me \xff\xfe\xed\xa0\x80";
	struct header_edit edits[2] = {
		{ HE_CHANGE, "Subject", (char *)latin1, 0 },
		{ HE_ADD, "X-Spam-Status", "Yes, caf\xc3\xa9", 0 },
	};
	char *rcpts[1] = { "r@example.net" };
	char dir[256], id[QUARANTINE_ID_MAX], err[256], path[PATH_MAX];
	struct quarantine_entry e;
	struct scan_request req;
	struct scan_result res;
	struct header_edit *got;
	size_t n, len;
	char *text, *at;

	(void)state;
	fresh_dir(dir, sizeof(dir), "edits8bit");
	struct config *cfg = store_config(dir);
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	req.listener = "in";
	req.mail_from = "a@example.org";
	req.rcpts = rcpts;
	req.nrcpts = 1;
	res.action = MW_QUARANTINE;
	res.edits = edits;
	res.nedits = 2;
	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg), NULL, 0, id,
	    QUARANTINE_ID_MAX), 0);
	assert_int_equal(quarantine_path(dir, id, "json", path, sizeof(path)), 0);
	text = read_text(path, &len);
	assert_true(utf8_valid(text, len));
	assert_non_null(strstr(text, "\"value_base64\":\"W1NQQU1dIGNhZukgY3LobWUg//7toIA=\""));
	assert_non_null(strstr(text, "\"value\":\"Yes, caf\xc3\xa9\""));	/* UTF-8: as it is */
	free(text);

	for (int round = 0; round < 2; round++) {
		assert_int_equal(quarantine_open(dir, id, 0, &e, err, sizeof(err)), 0);
		assert_int_equal(quarantine_release_edits(&e, &got, &n, err, sizeof(err)), 1);
		assert_int_equal(n, 2);
		assert_int_equal(got[0].op, HE_CHANGE);
		assert_string_equal(got[0].value, latin1);
		assert_string_equal(got[1].value, edits[1].value);
		header_edits_free(got, n);
		/* rewritten (a release marks it): the same */
		assert_int_equal(quarantine_save_record(&e), 0);
		quarantine_close(&e);
		text = read_text(path, &len);
		assert_true(utf8_valid(text, len));
		assert_non_null(strstr(text, "\"value_base64\":\"W1NQQU1dIGNhZukgY3LobWUg//7toIA=\""));
		if (round == 0) {
			/* as written before session 19: the value raw */
			FILE *f = fopen(path, "wb");

			at = strstr(text, "\"value_base64\":\"W1NQ");
			assert_non_null(at);
			assert_non_null(f);
			fwrite(text, 1, (size_t)(at - text), f);
			fprintf(f, "\"value\":\"%s\"", latin1);
			fputs(strchr(at + 16, '"') + 1, f);
			fclose(f);
		}
		free(text);
	}
	config_unref(cfg);
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v))
		return NULL;
	return json_object_get_string(v);
}

static void test_store_open_save_remove(void **state)
{
	struct quarantine_entry e, e2;
	char dir[256], id[QUARANTINE_ID_MAX], err[256];
	struct stat st;
	char *m;
	json_object *v;
	size_t len;

	(void)state;
	fresh_dir(dir, sizeof(dir), "store");
	struct config *cfg = store_config(dir);
	store_one(cfg, id);
	assert_true(quarantine_id_valid(id));
	assert_true(exists(dir, id, "eml") && exists(dir, id, "json"));

	assert_int_equal(quarantine_open(dir, id, QUARANTINE_LOCK, &e, err, sizeof(err)), 0);
	assert_string_equal(jstr(e.rec, "id"), id);
	assert_string_equal(jstr(e.rec, "upstream"), "127.0.0.1:2526");   /* the listener's */
	assert_string_equal(jstr(e.rec, "subject"), "=?utf-8?q?caf=C3=A9?= deal");
	assert_string_equal(jstr(e.rec, "message_id"), "<m1@example.org>");
	assert_string_equal(jstr(e.rec, "reason"), "score 7 >= 5");
	assert_true(json_object_object_get_ex(e.rec, "envelope", &v));
	assert_string_equal(jstr(v, "mail_from"), "a@example.org");
	m = quarantine_message(&e, 1 << 20, &len);
	assert_non_null(m);
	assert_int_equal(len, strlen(test_msg));
	assert_memory_equal(m, test_msg, len);
	free(m);
	/* read, bounded: one byte under its size is too big */
	errno = 0;
	assert_null(quarantine_message(&e, strlen(test_msg) - 1, &len));
	assert_int_equal(errno, EFBIG);

	/* the lock: a second locker is refused at once, a reader is not */
	errno = 0;
	assert_int_equal(quarantine_open(dir, id, QUARANTINE_LOCK, &e2, err, sizeof(err)), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_non_null(strstr(err, "busy"));
	assert_int_equal(quarantine_open(dir, id, 0, &e2, err, sizeof(err)), 0);
	quarantine_close(&e2);

	/* an update replaces the record whole */
	json_object_object_add(e.rec, "note", json_object_new_string("checked"));
	assert_int_equal(quarantine_save_record(&e), 0);
	assert_int_equal(quarantine_open(dir, id, 0, &e2, err, sizeof(err)), 0);
	assert_string_equal(jstr(e2.rec, "note"), "checked");
	quarantine_close(&e2);
	assert_int_equal(stat(e.json, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(quarantine_remove(&e), 0);
	quarantine_close(&e);
	assert_false(exists(dir, id, "eml") || exists(dir, id, "json"));
	errno = 0;
	assert_int_equal(quarantine_open(dir, id, 0, &e, err, sizeof(err)), -1);
	assert_int_equal(errno, ENOENT);
	assert_non_null(strstr(err, "no quarantined message"));

	/* bad IDs never reach the file system */
	assert_int_equal(quarantine_open(dir, "../store/x", 0, &e, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_non_null(strstr(err, "not a quarantine ID"));
	config_unref(cfg);
}

static void test_open_bad_record(void **state)
{
	struct quarantine_entry e;
	char dir[256], p[PATH_MAX], err[256];
	const char *id = "20240101T000000-0000000a", *other = "20240101T000000-0000000b";

	(void)state;
	fresh_dir(dir, sizeof(dir), "badrec");
	craft(dir, id);
	quarantine_path(dir, id, "json", p, sizeof(p));
	write_path(p, "{ not json");
	assert_int_equal(quarantine_open(dir, id, 0, &e, err, sizeof(err)), -1);
	assert_int_equal(errno, EBADMSG);
	/* a record naming another ID (a file copied or renamed by hand) */
	write_path(p, "{ \"id\": \"20240101T000000-0000000b\" }");
	assert_int_equal(quarantine_open(dir, id, 0, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "another ID"));
	/* a symlink in place of the message is not followed */
	craft(dir, other);
	quarantine_path(dir, other, "eml", p, sizeof(p));
	unlink(p);
	assert_int_equal(symlink("/etc/passwd", p), 0);
	assert_int_equal(quarantine_open(dir, other, 0, &e, err, sizeof(err)), -1);
}

/* ------------------------------------------------------------------ */

struct seen {
	char ids[16][QUARANTINE_ID_MAX];
	int n, stop_after;
};

static int collect(void *arg, const char *id)
{
	struct seen *s = arg;

	snprintf(s->ids[s->n++], QUARANTINE_ID_MAX, "%s", id);
	return s->n == s->stop_after ? -1 : 0;
}

static void test_list_order_and_since(void **state)
{
	char dir[256], p[PATH_MAX], err[256];
	struct seen s;
	time_t since;

	(void)state;
	fresh_dir(dir, sizeof(dir), "list");
	/* created out of order, across three days */
	craft(dir, "20240102T120000-00000003");
	craft(dir, "20231231T010203-00000000");
	craft(dir, "20240102T000000-00000002");
	craft(dir, "20240101T235959-00000001");
	/* what is not an entry: a lone .eml, temporary files, strangers */
	snprintf(p, sizeof(p), "%s/20240102/20240102T060000-00000009.eml", dir);
	write_path(p, "x");
	snprintf(p, sizeof(p), "%s/20240102/.tmp-20240102T060000-00000008.json", dir);
	write_path(p, "{}");
	snprintf(p, sizeof(p), "%s/20240102/notes.json", dir);
	write_path(p, "{}");
	snprintf(p, sizeof(p), "%s/lost+found", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/20241301", dir);	/* not a date */
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/20241301/20240102T070000-00000007.json", dir);
	write_path(p, "{}");

	memset(&s, 0, sizeof(s));
	assert_int_equal(quarantine_list(dir, 0, collect, &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.ids[0], "20231231T010203-00000000");
	assert_string_equal(s.ids[1], "20240101T235959-00000001");
	assert_string_equal(s.ids[2], "20240102T000000-00000002");
	assert_string_equal(s.ids[3], "20240102T120000-00000003");

	assert_int_equal(quarantine_parse_time("2024-01-02", 0, &since), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(quarantine_list(dir, since, collect, &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.ids[0], "20240102T000000-00000002");

	assert_int_equal(quarantine_parse_time("2024-01-01T23:59:59", 0, &since), 0);
	memset(&s, 0, sizeof(s));
	quarantine_list(dir, since, collect, &s, err, sizeof(err));
	assert_int_equal(s.n, 3);

	/* the callback stops the walk */
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	assert_int_equal(quarantine_list(dir, 0, collect, &s, err, sizeof(err)), -1);
	assert_int_equal(s.n, 2);

	/* a store that does not exist yet is empty, not an error */
	memset(&s, 0, sizeof(s));
	snprintf(p, sizeof(p), "%s/none", tmpdir);
	assert_int_equal(quarantine_list(p, 0, collect, &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, 0);
}

static void make_old(const char *path)
{
	struct timeval tv[2];

	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= 2 * QUARANTINE_DEBRIS_AGE;
	tv[1] = tv[0];
	assert_int_equal(utimes(path, tv), 0);
}

static void test_expire(void **state)
{
	struct quarantine_expiry st;
	struct quarantine_entry busy;
	char dir[256], p[PATH_MAX], fresh_tmp[PATH_MAX], err[256], new_id[QUARANTINE_ID_MAX];
	time_t now = time(NULL);

	(void)state;
	fresh_dir(dir, sizeof(dir), "expire");
	struct config *cfg = store_config(dir);
	craft(dir, "20240101T000000-00000001");
	craft(dir, "20240101T000001-00000002");
	craft(dir, "20240105T000000-00000003");
	store_one(cfg, new_id);
	/* debris: an old temporary file and an old lone .eml go, a fresh
	 * temporary file (a store in progress) stays */
	snprintf(p, sizeof(p), "%s/20240105/.tmp-20240105T000000-00000004.eml", dir);
	write_path(p, "x");
	make_old(p);
	snprintf(p, sizeof(p), "%s/20240105/20240105T000000-00000005.eml", dir);
	write_path(p, "x");
	make_old(p);
	snprintf(fresh_tmp, sizeof(fresh_tmp), "%s/%.8s/.tmp-%s.json", dir, new_id, new_id);
	write_path(fresh_tmp, "{");
	/* an entry being released is skipped */
	assert_int_equal(quarantine_open(dir, "20240101T000001-00000002", QUARANTINE_LOCK, &busy,
	    err, sizeof(err)), 0);

	assert_int_equal(quarantine_expire(dir, now - 3600, now, &st, err, sizeof(err)), 0);
	assert_int_equal(st.removed, 2);
	assert_int_equal(st.debris, 2);
	assert_int_equal(st.busy, 1);
	assert_int_equal(st.errors, 0);
	assert_false(exists(dir, "20240101T000000-00000001", "json"));
	assert_false(exists(dir, "20240101T000000-00000001", "eml"));
	assert_true(exists(dir, "20240101T000001-00000002", "json"));
	assert_false(exists(dir, "20240105T000000-00000003", "eml"));
	assert_true(exists(dir, new_id, "eml") && exists(dir, new_id, "json"));
	assert_int_equal(access(fresh_tmp, F_OK), 0);
	snprintf(p, sizeof(p), "%s/20240105", dir);	/* emptied past day: gone */
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/20240101", dir);	/* still holds the busy one */
	assert_int_equal(access(p, F_OK), 0);
	quarantine_close(&busy);

	/* next run: the formerly busy one goes, and its day; today's stays
	 * even when emptied */
	assert_int_equal(quarantine_expire(dir, now + 10, now, &st, err, sizeof(err)), 0);
	assert_int_equal(st.removed, 2);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/%.8s", dir, new_id);
	assert_int_equal(access(p, F_OK), 0);
	config_unref(cfg);
}

/* a rewritten body (a banned attachment replaced) is stored as ID.body
 * for the release, named in the record with its size, and read back only
 * whole, as stored, with one name; removed with its entry, and expired as
 * debris when its record never came */
static void test_release_body(void **state)
{
	static const char body[] = "\r\n--b\r\nContent-Type: text/plain\r\n\r\nremoved\r\n--b--\r\n";
	char *rcpts[1] = { "r@example.net" };
	char dir[256], id[QUARANTINE_ID_MAX], err[256], p[PATH_MAX], other[PATH_MAX];
	struct quarantine_entry e;
	struct quarantine_expiry ex;
	struct scan_request req;
	struct scan_result res;
	json_object *rel, *b;
	struct stat st;
	char *got;
	size_t len;
	FILE *f;

	(void)state;
	fresh_dir(dir, sizeof(dir), "body");
	struct config *cfg = store_config(dir);
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	req.listener = "in";
	req.mail_from = "a@example.org";
	req.rcpts = rcpts;
	req.nrcpts = 1;
	res.action = MW_QUARANTINE;
	/* what does not follow a header section is refused before any file */
	errno = 0;
	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg),
	    "no empty line\r\n", 15, id, QUARANTINE_ID_MAX), -1);
	assert_int_equal(errno, EMSGSIZE);
	errno = 0;
	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg),
	    body, strlen(test_msg) + QUARANTINE_BODY_GROWTH + 1, id, QUARANTINE_ID_MAX), -1);
	assert_int_equal(errno, EMSGSIZE);

	assert_int_equal(quarantine_store(cfg, &req, &res, NULL, test_msg, strlen(test_msg),
	    body, strlen(body), id, QUARANTINE_ID_MAX), 0);
	assert_true(exists(dir, id, "body"));
	assert_int_equal(quarantine_path(dir, id, "body", p, sizeof(p)), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(quarantine_open(dir, id, QUARANTINE_LOCK, &e, err, sizeof(err)), 0);
	assert_true(json_object_object_get_ex(e.rec, "release", &rel));
	assert_true(json_object_object_get_ex(rel, "body", &b));
	{
		json_object *size;

		assert_true(json_object_object_get_ex(b, "size", &size));
		assert_int_equal(json_object_get_int64(size), (int64_t)strlen(body));
	}
	/* the stored message stays as it came */
	got = quarantine_message(&e, 1 << 20, &len);
	assert_non_null(got);
	assert_memory_equal(got, test_msg, strlen(test_msg));
	free(got);
	assert_int_equal(quarantine_release_body(&e, 1 << 20, &got, &len, err, sizeof(err)), 1);
	assert_int_equal(len, strlen(body));
	assert_memory_equal(got, body, len);
	free(got);
	errno = 0;
	assert_int_equal(quarantine_release_body(&e, strlen(body) - 1, &got, &len, err, sizeof(err)), -1);
	assert_int_equal(errno, EFBIG);
	assert_null(got);

	/* a second name (a hard link the daemon's user made): not sent */
	snprintf(other, sizeof(other), "%s/elsewhere", tmpdir);
	assert_int_equal(link(p, other), 0);
	assert_int_equal(quarantine_release_body(&e, 1 << 20, &got, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "other names"));
	assert_int_equal(unlink(other), 0);
	/* not what was stored: not sent */
	f = fopen(p, "a");
	assert_non_null(f);
	fputs("x", f);
	fclose(f);
	assert_int_equal(quarantine_release_body(&e, 1 << 20, &got, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not the rewritten body"));
	/* gone: not sent either (never the stored body in its place) */
	assert_int_equal(unlink(p), 0);
	errno = 0;
	assert_int_equal(quarantine_release_body(&e, 1 << 20, &got, &len, err, sizeof(err)), -1);
	assert_int_equal(errno, ENOENT);
	/* a record that names none (nothing rewritten, or stored before): 0 */
	json_object_object_del(rel, "body");
	assert_int_equal(quarantine_release_body(&e, 1 << 20, &got, &len, err, sizeof(err)), 0);
	write_path(p, body);
	assert_int_equal(quarantine_remove(&e), 0);
	quarantine_close(&e);
	assert_false(exists(dir, id, "eml") || exists(dir, id, "json") || exists(dir, id, "body"));

	/* a lone ID.body (a store that crashed before its record) is debris */
	snprintf(p, sizeof(p), "%s/20240105", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/20240105/20240105T000000-00000006.body", dir);
	write_path(p, body);
	make_old(p);
	assert_int_equal(quarantine_expire(dir, 0, time(NULL), &ex, err, sizeof(err)), 0);
	assert_int_equal(ex.debris, 1);
	assert_int_equal(access(p, F_OK), -1);
	config_unref(cfg);
}

/* ------------------------------------------------------------------ */

#define THREADS 8
#define PER_THREAD 25

static struct config *conc_cfg;

static void *store_many(void *arg)
{
	char id[QUARANTINE_ID_MAX];

	(void)arg;
	for (int i = 0; i < PER_THREAD; i++)
		store_one(conc_cfg, id);
	return NULL;
}

static int count_only(void *arg, const char *id)
{
	(void)id;
	(*(int *)arg)++;
	return 0;
}

static void test_concurrent_stores(void **state)
{
	pthread_t t[THREADS];
	char dir[256], err[256], p[PATH_MAX];
	struct dirent *de;
	int n = 0, tmp = 0;
	DIR *d;

	(void)state;
	fresh_dir(dir, sizeof(dir), "conc");
	conc_cfg = store_config(dir);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, store_many, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(quarantine_list(dir, 0, count_only, &n, err, sizeof(err)), 0);
	assert_int_equal(n, THREADS * PER_THREAD);
	/* and nothing left under a temporary name (one day; midnight aside) */
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		DIR *dd = opendir(p);
		struct dirent *f;

		assert_non_null(dd);
		while ((f = readdir(dd)) != NULL)
			tmp += strncmp(f->d_name, ".tmp-", 5) == 0;
		closedir(dd);
	}
	closedir(d);
	assert_int_equal(tmp, 0);
	config_unref(conc_cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_valid),
		cmocka_unit_test(test_id_time),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_store_open_save_remove),
		cmocka_unit_test(test_release_edits),
		cmocka_unit_test(test_release_edits_8bit),
		cmocka_unit_test(test_open_bad_record),
		cmocka_unit_test(test_list_order_and_since),
		cmocka_unit_test(test_expire),
		cmocka_unit_test(test_release_body),
		cmocka_unit_test(test_concurrent_stores),
	};

	return cmocka_run_group_tests(tests, unit_tmpdir_setup, unit_tmpdir_teardown);
}
