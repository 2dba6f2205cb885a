/* test_mime_rewrite.c - replacing leaves of a message by text parts
 * (filters/mime_rewrite.c): the part named by its index in the shared
 * parse is the one replaced, in a multipart, in a nested message/rfc822 and
 * as a single-part message's own body; every other part, the preamble and
 * the epilogue come out byte for byte (CRLF kept, never doubled); bad
 * indexes, a too small ceiling, a header section GMime ends elsewhere
 * than the front ends, and a result that does not parse back to the same
 * parts are refused; so is a leaf under a signature (multipart/signed, an
 * S/MIME signed-data part) or in a multipart/encrypted, while a leaf
 * beside a signed part is replaced. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "filters/mime.h"
#include "proxy/header_edit.h"
#include "proxy/sbuf.h"

static const char mixed[] =
	"From: a@example.org\r\n"
	"Subject: invoice\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"B1\"\r\n"
	"\r\n"
	"This is a multi-part message in MIME format.\r\n"
	"--B1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Please find the invoice attached.=0D=0A\r\n"
	"Regards\r\n"
	"--B1\r\n"
	"Content-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\n"
	"Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"--B1\r\n"
	"Content-Type: application/pdf; name=\"terms.pdf\"\r\n"
	"Content-Disposition: attachment; filename=\"terms.pdf\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n"
	"--B1--\r\n"
	"epilogue\r\n";

static const char *body_of(const char *msg)
{
	return strstr(msg, "\r\n\r\n") + 2;    /* from the empty line on */
}

static char *replace(const char *msg, size_t part, const char *note, size_t max, int *top, int *rc)
{
	struct mime_replacement r = { part, note };
	struct sbuf out;
	char err[200] = "";

	sbuf_init(&out, (size_t)-1);
	*rc = mime_replace_parts((const unsigned char *)msg, strlen(msg), NULL, &r, 1, max, &out, top,
	    err, sizeof(err));
	if (*rc < 0)
		assert_true(err[0] != '\0');
	return sbuf_steal(&out);
}

/* the leaves of the new message, as the filters would see them */
static struct mime_msg *reparse(const char *msg, const char *rest)
{
	size_t hdr = (size_t)(body_of(msg) - msg);
	size_t n = hdr + strlen(rest);
	char *whole = malloc(n + 1);
	struct mime_msg *m;

	memcpy(whole, msg, hdr);
	memcpy(whole + hdr, rest, strlen(rest) + 1);
	m = mime_parse((const unsigned char *)whole, n);
	free(whole);
	return m;
}

static void test_replace_in_multipart(void **state)
{
	int top, rc;
	struct sbuf out;
	struct mime_replacement r = { 1, "mailwarden removed invoice.pdf.exe (double extension .pdf.exe)\n" };
	char err[200];
	struct mime_msg *m;
	char *rest, *expect;
	const char *exe, *after;

	(void)state;
	sbuf_init(&out, (size_t)-1);
	rc = mime_replace_parts((const unsigned char *)mixed, strlen(mixed), NULL, &r, 1, 1 << 20, &out,
	    &top, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(top, 0);
	rest = out.data;
	/* everything before and after the replaced part is unchanged */
	exe = strstr(mixed, "--B1\r\nContent-Type: application/octet-stream");
	after = strstr(mixed, "--B1\r\nContent-Type: application/pdf");
	expect = strndup(body_of(mixed), (size_t)(exe - body_of(mixed)));
	assert_memory_equal(rest, expect, strlen(expect));
	free(expect);
	assert_non_null(strstr(rest, after));
	assert_string_equal(strstr(rest, after), after);
	assert_null(strstr(rest, "TVqQ"));
	assert_null(strstr(rest, "\r\r"));
	for (const char *p = rest; (p = strchr(p, '\n')) != NULL; p++)
		assert_int_equal(p[-1], '\r');
	/* the new leaf is a text part with the note; the others are intact */
	m = reparse(mixed, rest);
	assert_int_equal(m->parse_error, 0);
	assert_int_equal(m->nparts, 3);
	assert_string_equal(m->parts[1].content_type, "text/plain");
	assert_null(m->parts[1].filename);
	assert_non_null(strstr((const char *)m->parts[1].data, "removed invoice.pdf.exe"));
	assert_string_equal(m->parts[2].filename, "terms.pdf");
	assert_memory_equal(m->parts[2].data, "%PDF-1.4", 8);
	assert_non_null(strstr((const char *)m->parts[0].data, "invoice attached."));
	mime_free(m);
	sbuf_free(&out);
}

static const char nested[] =
	"From: a@example.org\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"OUT\"\r\n"
	"\r\n"
	"--OUT\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"see the forwarded mail\r\n"
	"--OUT\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: b@example.org\r\n"
	"Subject: inner\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"IN\"\r\n"
	"\r\n"
	"--IN\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"inner text\r\n"
	"--IN\r\n"
	"Content-Type: application/x-msdownload; name=\"setup.scr\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"TVqQAAMAAAAEAAAA\r\n"
	"--IN--\r\n"
	"--OUT--\r\n";

static void test_replace_in_nested_message(void **state)
{
	int top, rc;
	char *rest = replace(nested, 2, "removed setup.scr", 1 << 20, &top, &rc);
	struct mime_msg *m;

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(top, 0);
	assert_null(strstr(rest, "TVqQ"));
	assert_non_null(strstr(rest, "Subject: inner\r\n"));
	m = reparse(nested, rest);
	assert_int_equal(m->parse_error, 0);
	assert_int_equal(m->nparts, 3);
	assert_int_equal(m->parts[2].depth, 1);
	assert_string_equal(m->parts[2].content_type, "text/plain");
	assert_string_equal((const char *)m->parts[2].data, "removed setup.scr");
	assert_string_equal((const char *)m->parts[1].data, "inner text");
	mime_free(m);
	free(rest);
}

static const char single[] =
	"From: a@example.org\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: application/x-msdownload; name=\"run.exe\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"TVqQAAMAAAAEAAAA\r\n";

static void test_replace_whole_body(void **state)
{
	int top, rc;
	char *rest = replace(single, 0, "removed run.exe\n", 1 << 20, &top, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(top, 1);   /* the caller owes new top-level fields */
	assert_string_equal(rest, "\r\nremoved run.exe\r\n");
	free(rest);
}

static void test_refused(void **state)
{
	int top, rc;
	char *rest;

	(void)state;
	rest = replace(mixed, 3, "x", 1 << 20, &top, &rc);   /* 3 leaves: 0..2 */
	assert_int_equal(rc, -1);
	free(rest);
	rest = replace(mixed, 1, "x", 100, &top, &rc);       /* over the ceiling */
	assert_int_equal(rc, -1);
	free(rest);
}

/* a line that is no header field ends the header section for the front
 * ends (as Postfix treats it: body from there), not for GMime; the front
 * end's header section followed by GMime's body would lose or repeat
 * lines: refused (the filter quarantines) */
static void test_header_end_disagreement(void **state)
{
	static const char msg[] =
		"From: a@example.org\r\n"
		"MIME-Version: 1.0\r\n"
		"This line is no field\r\n"
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n"
		"\r\n"
		"--b\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"text\r\n"
		"--b\r\n"
		"Content-Type: application/x-msdownload\r\n"
		"\r\n"
		"MZ\r\n"
		"--b--\r\n";
	struct mime_msg *m = mime_parse((const unsigned char *)msg, strlen(msg));
	int top, rc;
	char *rest;

	(void)state;
	assert_int_equal(m->nparts, 2);
	mime_free(m);
	rest = replace(msg, 1, "x", 1 << 20, &top, &rc);
	assert_int_equal(rc, -1);
	free(rest);
}

/* a NUL byte in the header of a part left alone: GMime writes that field
 * back cut at the NUL, and the part loses its header/body separator
 * (found by fuzz_rewrite).  The rewritten message does not parse back to
 * the same parts: refused (the filter quarantines) */
static void test_must_parse_back_the_same(void **state)
{
	static const char msg[] =
		"From: a@example.org\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n"
		"\r\n"
		"--b\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"text\r\n"
		"--b\r\n"
		"Content-Type: text/pl\0ain\r\n"
		"\r\n"
		"hello\r\n"
		"--b\r\n"
		"Content-Type: application/x-msdownload\r\n"
		"\r\n"
		"MZ\r\n"
		"--b--\r\n";
	struct mime_msg *m = mime_parse((const unsigned char *)msg, sizeof(msg) - 1);
	struct mime_replacement r = { 2, "x" };
	struct sbuf out;
	char err[200] = "";
	int top;

	(void)state;
	assert_int_equal(m->nparts, 3);
	assert_int_equal(m->parse_error, 0);
	mime_free(m);
	sbuf_init(&out, (size_t)-1);
	assert_int_equal(mime_replace_parts((const unsigned char *)msg, sizeof(msg) - 1, NULL, &r, 1, 1 << 20,
	    &out, &top, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "parse back"));
	sbuf_free(&out);
}

/* the fuzz findings of tests/data/rewrite (its README): replacing the
 * first and the last leaf is refused, or the result parses back into the
 * same leaves with the notes in place */
static void test_fuzz_findings(void **state)
{
	static const char *const files[] = {
		"nested-same-boundary.eml", "rfc822-body-note-crlf.eml", "collapses-to-one-text-part.eml"
	};
	const char *dir = getenv("MW_TESTDATA");
	static unsigned char msg[1 << 16];
	size_t f;
	int refused = 0;

	(void)state;
	for (f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		char path[512], err[200] = "";
		struct mime_replacement rep[2];
		struct mime_msg *m, *again;
		struct sbuf out;
		size_t n, nrep = 0, hl, i;
		int top;
		FILE *fp;

		snprintf(path, sizeof(path), "%s/rewrite/%s", dir ? dir : "tests/data", files[f]);
		if ((fp = fopen(path, "rb")) == NULL)
			fail_msg("cannot open %s (run from the top of the tree)", path);
		n = fread(msg, 1, sizeof(msg), fp);
		fclose(fp);
		m = mime_parse(msg, n);
		assert_int_equal(m->parse_error, 0);
		rep[nrep++] = (struct mime_replacement){ 0, "NOTE" };
		if (m->nparts > 1)
			rep[nrep++] = (struct mime_replacement){ m->nparts - 1, "NOTE" };
		sbuf_init(&out, (size_t)-1);
		if (mime_replace_parts(msg, n, NULL, rep, nrep, 1 << 20, &out, &top, err, sizeof(err)) < 0) {
			refused++;
		} else {
			struct sbuf hdr;
			unsigned char *whole;

			/* the proxy's header section, then the rest */
			sbuf_init(&hdr, (size_t)-1);
			hl = header_edits_apply((const char *)msg, n, NULL, 0, &hdr);
			sbuf_free(&hdr);
			/* the offset alone (no output) is the same cut */
			assert_int_equal(header_edits_apply((const char *)msg, n, NULL, 0, NULL), hl);
			whole = malloc(hl + out.len);
			memcpy(whole, msg, hl);
			memcpy(whole + hl, out.data, out.len);
			again = mime_parse(whole, hl + out.len);
			assert_int_equal(again->parse_error, 0);
			assert_int_equal(again->nparts, m->nparts);
			for (i = 0; i < nrep; i++)
				assert_memory_equal(again->parts[rep[i].part].data, "NOTE", 4);
			mime_free(again);
			free(whole);
		}
		sbuf_free(&out);
		mime_free(m);
	}
	assert_int_equal(refused, 2);
}

/* a note cannot smuggle bytes that are not printable US-ASCII */
static void test_note_sanitised(void **state)
{
	int top, rc;
	char *rest = replace(single, 0, "a\x01" "b\xc3\xa9\r", 1 << 20, &top, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	for (const unsigned char *p = (const unsigned char *)rest; *p; p++)
		assert_true(*p == '\r' || *p == '\n' || (*p >= 0x20 && *p < 0x7f));
	free(rest);
}

/* a signature covers its part's bytes: a leaf replaced under a
 * multipart/signed, or an S/MIME signed-data part replaced whole, would
 * reach the recipient with a broken signature; a part beside the signed
 * one (a list's wrapper) is not covered and is replaced */
static void test_signed_refused(void **state)
{
	static const char wrapped[] =
	    "From: list@example.org\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"L\"\r\n\r\n"
	    "--L\r\n"
	    "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n"
	    " micalg=sha-256; boundary=\"S\"\r\n\r\n"
	    "--S\r\nContent-Type: multipart/mixed; boundary=\"I\"\r\n\r\n"
	    "--I\r\nContent-Type: text/plain\r\n\r\nsigned words\r\n"
	    "--I\r\nContent-Type: message/rfc822\r\n\r\n"
	    "Subject: fwd\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n\r\nMZ\r\n"
	    "--I--\r\n"
	    "\r\n--S\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\r\nsig\r\n"
	    "--S--\r\n"
	    "\r\n--L\r\nContent-Type: application/octet-stream; name=\"b.exe\"\r\n\r\nMZ\r\n"
	    "--L--\r\n";
	static const char encrypted[] =
	    "From: a@example.org\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"E\"\r\n\r\n"
	    "--E\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
	    "--E\r\nContent-Type: application/octet-stream\r\n\r\nciphertext\r\n--E--\r\n";
	/* a BER signed-data and enveloped-data head (openssl cms -stream),
	 * the first declared as the other */
	static const char opaque[] =
	    "From: a@example.org\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMAAAAAAA\r\n";
	static const char sealed[] =
	    "From: a@example.org\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMAAAAAAA\r\n";
	int top, rc;
	char *rest;
	size_t i;

	(void)state;
	/* leaves: text, a.exe (in a message in the signed part), the
	 * signature, b.exe beside it */
	for (i = 0; i < 3; i++) {
		rest = replace(wrapped, i, "x", 1 << 20, &top, &rc);
		assert_int_equal(rc, MIME_REPLACE_SIGNED);
		free(rest);
	}
	rest = replace(wrapped, 3, "removed b.exe\n", 1 << 20, &top, &rc);
	assert_int_equal(rc, 0);
	/* the signed part comes out as it went in */
	{
		const char *a = strstr(wrapped, "--L\r\n") + 5, *b = strstr(a, "\r\n--L\r\n");

		assert_non_null(strstr(rest, "removed b.exe"));
		assert_non_null(memmem(rest, strlen(rest), a, (size_t)(b - a)));
	}
	free(rest);
	rest = replace(encrypted, 1, "x", 1 << 20, &top, &rc);
	assert_int_equal(rc, MIME_REPLACE_ENCRYPTED);
	free(rest);
	rest = replace(opaque, 0, "x", 1 << 20, &top, &rc);
	assert_int_equal(rc, MIME_REPLACE_SIGNED);
	free(rest);
	rest = replace(sealed, 0, "x", 1 << 20, &top, &rc);  /* no signature to break */
	assert_int_equal(rc, 0);
	assert_int_equal(top, 1);
	free(rest);
}

/* what a CMS object holds, from the head of its ContentInfo */
static void test_cms_kind(void **state)
{
	static const unsigned char signed_der[] = { 0x30, 0x82, 0x05, 0xdd, 0x06, 0x09, 0x2a, 0x86,
	    0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0 };
	static const unsigned char env_short[] = { 0x30, 0x20, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
	    0xf7, 0x0d, 0x01, 0x07, 0x03 };
	static const unsigned char auth_env[] = { 0x30, 0x80, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86,
	    0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17 };
	static const unsigned char data[] = { 0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
	    0xf7, 0x0d, 0x01, 0x07, 0x01 };
	static const unsigned char cut[] = { 0x30, 0x82, 0x05, 0xdd, 0x06, 0x09, 0x2a, 0x86 };
	static const unsigned char long_len[] = { 0x30, 0x85, 1, 1, 1, 1, 1, 0x06, 0x09 };

	(void)state;
	assert_int_equal(mime_cms_kind(signed_der, sizeof(signed_der)), MIME_CMS_SIGNED);
	assert_int_equal(mime_cms_kind(env_short, sizeof(env_short)), MIME_CMS_ENVELOPED);
	assert_int_equal(mime_cms_kind(auth_env, sizeof(auth_env)), MIME_CMS_ENVELOPED);
	assert_int_equal(mime_cms_kind(data, sizeof(data)), MIME_CMS_OTHER);
	assert_int_equal(mime_cms_kind(cut, sizeof(cut)), MIME_CMS_NONE);
	assert_int_equal(mime_cms_kind(long_len, sizeof(long_len)), MIME_CMS_NONE);
	assert_int_equal(mime_cms_kind((const unsigned char *)"MZ\x90", 3), MIME_CMS_NONE);
	assert_int_equal(mime_cms_kind(signed_der, 0), MIME_CMS_NONE);
}

/* the content of a signed-data, whole, or nothing: a signed-data without
 * signers (valid syntax), the same without its content (detached), cut */
static void test_cms_content(void **state)
{
	static const unsigned char with[] = { 0x30, 0x47, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
	    0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x3a, 0x30, 0x38, 0x02, 0x01, 0x01, 0x31, 0x00,
	    0x30, 0x2f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0,
	    0x22, 0x04, 0x20, 'C', 'o', 'n', 't', 'e', 'n', 't', '-', 'T', 'y', 'p', 'e', ':', ' ',
	    't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n', '\r', '\n', '\r', '\n', 'h', 'i',
	    '\r', '\n', 0x31, 0x00 };
	static const unsigned char detached[] = { 0x30, 0x23, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
	    0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x16, 0x30, 0x14, 0x02, 0x01, 0x01, 0x31, 0x00,
	    0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0x31,
	    0x00 };
	unsigned char *c;
	size_t n = 99;

	(void)state;
	c = mime_cms_content(with, sizeof(with), &n);
	assert_non_null(c);
	assert_int_equal(n, 32);
	assert_memory_equal(c, "Content-Type: text/plain\r\n\r\nhi\r\n", 32);
	assert_int_equal(c[n], 0);
	free(c);
	assert_null(mime_cms_content(detached, sizeof(detached), &n));
	assert_int_equal(n, 0);
	assert_null(mime_cms_content(with, sizeof(with) - 3, &n));
	assert_null(mime_cms_content((const unsigned char *)"MZ\x90", 3, &n));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replace_in_multipart),
		cmocka_unit_test(test_replace_in_nested_message),
		cmocka_unit_test(test_replace_whole_body),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_header_end_disagreement),
		cmocka_unit_test(test_must_parse_back_the_same),
		cmocka_unit_test(test_fuzz_findings),
		cmocka_unit_test(test_note_sanitised),
		cmocka_unit_test(test_signed_refused),
		cmocka_unit_test(test_cms_kind),
		cmocka_unit_test(test_cms_content),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
