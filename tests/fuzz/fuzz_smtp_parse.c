/* fuzz_smtp_parse.c - libFuzzer target for proxy/smtp_parse.c.
 *
 * Build and run (from the top of the tree; ~60 s, corpus in /tmp):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -I. -Iinclude tests/fuzz/fuzz_smtp_parse.c proxy/smtp_parse.c -o /tmp/fuzz_smtp_parse
 *   mkdir -p /tmp/fuzz_smtp_corpus
 *   /tmp/fuzz_smtp_parse -max_total_time=60 -max_len=4096 /tmp/fuzz_smtp_corpus
 *
 * One input is used three ways: as a command line (verb, then the path and
 * parameters of MAIL/RCPT, or the attributes of XFORWARD), as a bare path
 * argument, and as a server reply
 * split at LF (CR and every other byte left in, NUL included).  Besides the
 * sanitizers, the target checks the promises other modules rely on: an
 * accepted path has no control byte, no unquoted space and fits its buffer,
 * and parses again to itself; an accepted reply is relayable as it stands;
 * an accepted XFORWARD value is at most 255 octets without a control octet,
 * and a refused command changes nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

static void check_path(const struct smtp_path_args *a)
{
	size_t i, n = strlen(a->path);
	int quoted = 0, esc = 0;

	CHECK(n <= SMTP_PATH_MAX);
	CHECK(a->nparams <= SMTP_MAX_PARAMS);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a->path[i];

		CHECK(c >= 0x20 && c != 0x7f);
		if (esc)
			esc = 0;
		else if (quoted && c == '\\')
			esc = 1;
		else if (c == '"')
			quoted = !quoted;
		else
			CHECK(quoted || (c != ' ' && c != '<' && c != '>'));
	}
	for (i = 0; i < a->nparams; i++) {
		const struct smtp_param *p = &a->params[i];
		size_t k;

		CHECK(p->key[0] != '\0');
		CHECK(strlen(p->key) < sizeof p->key);
		CHECK(strlen(p->value) < sizeof p->value);
		for (k = 0; p->key[k]; k++)
			CHECK((p->key[k] >= 'A' && p->key[k] <= 'Z') ||
			    (p->key[k] >= '0' && p->key[k] <= '9') || p->key[k] == '-');
		for (k = 0; p->value[k]; k++)
			CHECK((unsigned char)p->value[k] > 0x20 && p->value[k] != 0x7f &&
			    p->value[k] != '=');
		CHECK(p->has_value == (p->value[0] != '\0'));
		CHECK(smtp_param_get(a, p->key) == p);
	}
}

/* an accepted path, put back between brackets, must parse to itself */
static void check_roundtrip(const struct smtp_path_args *a)
{
	static struct smtp_path_args b;
	char buf[SMTP_PATH_MAX + 8];
	const char *why;

	snprintf(buf, sizeof buf, "<%s>", a->path);
	if (smtp_path_parse(buf, &b, &why) != 0) {
		fprintf(stderr, "reparse of \"%s\" failed: %s\n", buf, why);
		abort();
	}
	CHECK(strcmp(a->path, b.path) == 0);
	CHECK(b.nparams == 0);
}

static void do_path(const char *arg)
{
	static struct smtp_path_args a;
	const char *why = NULL;

	if (smtp_path_parse(arg, &a, &why) == 0) {
		check_path(&a);
		check_roundtrip(&a);
	} else
		CHECK(why != NULL && why[0] != '\0');
}

static void do_xforward(const char *arg)
{
	static struct smtp_xforward x, before;
	const char *why = NULL;
	size_t i, k;

	memset(&x, 0, sizeof x);
	(void)smtp_xforward_parse("ADDR=192.0.2.1 HELO=seed.example", &x, &why);
	before = x;
	if (smtp_xforward_parse(arg, &x, &why) < 0) {
		CHECK(why != NULL && strncmp(why, "501 ", 4) == 0);
		CHECK(memcmp(&x, &before, sizeof x) == 0);
		return;
	}
	for (i = 0; i < SMTP_XF_COUNT; i++) {
		size_t n = strlen(x.value[i]);

		CHECK(x.state[i] == SMTP_XF_UNSET || x.state[i] == SMTP_XF_VALUE ||
		    x.state[i] == SMTP_XF_UNAVAILABLE);
		CHECK(n <= SMTP_XF_VALUE_MAX);
		CHECK(x.state[i] == SMTP_XF_VALUE || n == 0);
		for (k = 0; k < n; k++)
			CHECK((unsigned char)x.value[i][k] >= 0x20 && x.value[i][k] != 0x7f);
	}
}

static void do_reply(const uint8_t *data, size_t size)
{
	struct smtp_reply r;
	size_t start = 0, end, i;
	char args[64], qid[32];
	int rc = 0;

	memset(&r, 0, sizeof r);
	while (start < size && rc == 0) {
		for (end = start; end < size && data[end] != '\n'; end++)
			;
		rc = smtp_reply_line(&r, (const char *)data + start, end - start);
		start = end + 1;
	}
	CHECK(r.len < sizeof r.text);
	CHECK(r.nlines <= SMTP_REPLY_MAX_LINES);
	if (r.nlines > 0) {
		CHECK(r.code >= 200 && r.code <= 559);
		CHECK(r.text[r.len] == '\0');
		CHECK(r.len >= 2 && r.text[r.len - 2] == '\r' && r.text[r.len - 1] == '\n');
		for (i = 0; i < r.len; i++) {
			unsigned char c = (unsigned char)r.text[i];

			if (c == '\r') {
				CHECK(i + 1 < r.len && r.text[i + 1] == '\n');
				i++;
				continue;
			}
			CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
		}
	}
	if (rc == 1) {
		(void)smtp_ehlo_has(&r, "SIZE", args, sizeof args);
		(void)smtp_ehlo_has(&r, "PIPELINING", NULL, 0);
		(void)smtp_ehlo_has(&r, "AUTH", args, 1);
		if (smtp_reply_queue_id(&r, qid, sizeof qid))
			CHECK(qid[0] != '\0' && strlen(qid) < sizeof qid);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line;
	const char *arg;
	enum smtp_verb v;

	if (size > 65536)
		return 0;
	line = malloc(size + 1);
	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';

	v = smtp_verb_parse(line, &arg);
	CHECK(arg != NULL);
	CHECK(arg >= line && arg <= line + strlen(line));
	CHECK(smtp_verb_name(v) != NULL);
	if (v == SMTP_MAIL || v == SMTP_RCPT)
		do_path(arg);
	if (v == SMTP_XFORWARD)
		do_xforward(arg);
	do_path(line);
	free(line);

	do_reply(data, size);
	return 0;
}
