/* test_textfiles.c - the files encoded in text parts (uuencoded, yEnc,
 * BinHex) through a pipeline running the attachments and clamav filters:
 * both read every such file (names and types; scans), and each file is
 * decoded once per message, not once per filter.
 *
 * The decoders are counted by wrapping them at link time (the Makefile
 * links this test with --wrap=uu_decode, yenc_data and hqx_read): every
 * call from another object of libmw goes through __wrap_*.  The
 * signatures are the test database of the functional tests
 * (tests/data/av/db, or $MW_AV_DB). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/pipeline.h"
#include "proxy/config.h"
#include "proxy/scanproto.h"
#include "tests/unit/unit_tmpdir.h"

/* --- the decoders, counted ---------------------------------------------- */

size_t __real_uu_decode(const char *d, size_t n, unsigned char *out);
size_t __wrap_uu_decode(const char *d, size_t n, unsigned char *out);
size_t __real_yenc_data(const char *d, const char *end, unsigned char *out, const char **after);
size_t __wrap_yenc_data(const char *d, const char *end, unsigned char *out, const char **after);
struct hqx;
size_t __real_hqx_read(struct hqx *h, unsigned char *out, size_t max);
size_t __wrap_hqx_read(struct hqx *h, unsigned char *out, size_t max);

static size_t uu_calls, uu_bytes, yenc_calls, yenc_bytes, hqx_bytes;

size_t __wrap_uu_decode(const char *d, size_t n, unsigned char *out)
{
	size_t r = __real_uu_decode(d, n, out);

	uu_calls++;
	uu_bytes += r;
	return r;
}

size_t __wrap_yenc_data(const char *d, const char *end, unsigned char *out, const char **after)
{
	size_t r = __real_yenc_data(d, end, out, after);

	yenc_calls++;
	yenc_bytes += r;
	return r;
}

size_t __wrap_hqx_read(struct hqx *h, unsigned char *out, size_t max)
{
	size_t r = __real_hqx_read(h, out, max);

	hqx_bytes += r;
	return r;
}

static void counts_reset(void)
{
	uu_calls = uu_bytes = yenc_calls = yenc_bytes = hqx_bytes = 0;
}

/* --- encoders (as tests/functional/attachlib.py makes them) ------------- */

struct buf {
	char  *s;
	size_t len, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		assert_non_null(b->s);
	}
	memcpy(b->s + b->len, d, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void uuencoded(struct buf *b, const char *name, const unsigned char *d, size_t n)
{
	char line[64];

	snprintf(line, sizeof(line), "begin 644 %s\r\n", name);
	puts_(b, line);
	for (size_t i = 0; i < n; i += 45) {
		size_t k = n - i < 45 ? n - i : 45, o = 0;

		line[o++] = (char)(0x20 + k);
		for (size_t j = 0; j < k; j += 3) {
			unsigned c0 = d[i + j], c1 = j + 1 < k ? d[i + j + 1] : 0, c2 = j + 2 < k ? d[i + j + 2] : 0;
			unsigned s[4] = { c0 >> 2, ((c0 & 3) << 4) | (c1 >> 4), ((c1 & 15) << 2) | (c2 >> 6), c2 & 63 };

			for (int q = 0; q < 4; q++)
				line[o++] = (char)(s[q] ? 0x20 + s[q] : '`');
		}
		put(b, line, o);
		puts_(b, "\r\n");
	}
	puts_(b, "`\r\nend\r\n");
}

static void yenc(struct buf *b, const char *name, const unsigned char *d, size_t n)
{
	char head[128];
	size_t col = 0;

	snprintf(head, sizeof(head), "=ybegin line=128 size=%zu name=%s\r\n", n, name);
	puts_(b, head);
	for (size_t i = 0; i < n; i++) {
		unsigned char e = (unsigned char)(d[i] + 42);

		if (e == 0 || e == '\n' || e == '\r' || e == '=') {
			put(b, "=", 1);
			e = (unsigned char)(e + 64);
			col++;
		}
		put(b, &e, 1);
		if (++col >= 128) {
			puts_(b, "\r\n");
			col = 0;
		}
	}
	snprintf(head, sizeof(head), "\r\n=yend size=%zu\r\n", n);
	puts_(b, head);
}

static unsigned crc_xmodem(const unsigned char *d, size_t n)
{
	unsigned crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (unsigned)d[i] << 8;
		for (int k = 0; k < 8; k++)
			crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
	}
	return crc;
}

/* binhex - d as a BinHex 4.0 file named name (no runs coded: only 0x90
 * escaped), its "(This file ..." line first */
static void binhex(struct buf *b, const char *name, const unsigned char *d, size_t n)
{
	static const char alpha[] = "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
	struct buf raw = { 0 }, enc = { 0 };
	unsigned char hdr[128], crc[2];
	size_t nl = strlen(name), h = 0;
	uint32_t bits = 0;
	unsigned nbits = 0;

	hdr[h++] = (unsigned char)nl;
	memcpy(hdr + h, name, nl);
	h += nl;
	hdr[h++] = 0;
	memcpy(hdr + h, "APPL????\0\0", 10);
	h += 10;
	for (int k = 3; k >= 0; k--)
		hdr[h++] = (unsigned char)(n >> (8 * k));
	memset(hdr + h, 0, 4);       /* no resource fork */
	h += 4;
	put(&raw, hdr, h);
	crc[0] = (unsigned char)(crc_xmodem(hdr, h) >> 8);
	crc[1] = (unsigned char)crc_xmodem(hdr, h);
	put(&raw, crc, 2);
	put(&raw, d, n);
	crc[0] = (unsigned char)(crc_xmodem(d, n) >> 8);
	crc[1] = (unsigned char)crc_xmodem(d, n);
	put(&raw, crc, 2);
	crc[0] = crc[1] = 0;         /* the empty resource fork's */
	put(&raw, crc, 2);
	puts_(&enc, ":");
	for (size_t i = 0; i < raw.len; i++) {
		unsigned char c = (unsigned char)raw.s[i];
		int twice = c == 0x90;   /* 0x90 itself: 0x90 0x00 */

		for (int t = 0; t <= twice; t++) {
			bits = (bits << 8) | (t ? 0 : c);
			nbits += 8;
			while (nbits >= 6) {
				nbits -= 6;
				put(&enc, &alpha[(bits >> nbits) & 63], 1);
			}
		}
	}
	if (nbits > 0)
		put(&enc, &alpha[(bits << (6 - nbits)) & 63], 1);
	puts_(&enc, ":");
	puts_(b, "(This file must be converted with BinHex 4.0)\r\n");
	for (size_t i = 0; i < enc.len; i += 64) {
		put(b, enc.s + i, enc.len - i < 64 ? enc.len - i : 64);
		puts_(b, "\r\n");
	}
	free(raw.s);
	free(enc.s);
}

/* --- the pipeline --------------------------------------------------------- */

/* EICAR, built so this file itself is no sample */
static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/* av_db - $MW_AV_DB, else tests/data/av/db of the checkout this test was
 * built in (it is build/tests/test_textfiles), as an absolute path */
static const char *av_db(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("MW_AV_DB");
	char self[PATH_MAX - 64], *slash;
	ssize_t n;

	if (env != NULL && *env != '\0')
		return env;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	for (int up = 0; up < 3 && (slash = strrchr(self, '/')) != NULL; up++)
		*slash = '\0';
	snprintf(path, sizeof(path), "%s/tests/data/av/db", self);
	return path;
}

static void scan(const struct buf *msg, struct scan_result *res)
{
	char db[PATH_MAX + 32], err[512];
	/* no DNS: the client's name is not looked up, and a resolver
	 * would be a dead loopback port */
	const char *ov[] = { "filters = attachments clamav", db, "av_db_check_interval = 0",
	                     "dns_client_name = no", "dns_forwarder = 127.0.0.1@9", "dns_timeout = 200ms" };
	struct scan_request req = { 0 };
	struct config *cfg;
	struct pipeline *p;
	int fd;

	snprintf(db, sizeof(db), "av_database = %s", av_db());
	cfg = config_load(NULL, ov, sizeof(ov) / sizeof(ov[0]), err, sizeof(err));
	if (cfg == NULL)
		fail_msg("config: %s", err);
	p = pipeline_new(cfg, err, sizeof(err));
	if (p == NULL)
		fail_msg("pipeline_new: %s", err);
	strcpy(req.session_id, "00000000000000ab");
	req.listener = strdup("test");
	req.client_ip = strdup("192.0.2.1");
	req.client_name = strdup("");
	req.helo = strdup("client.example.org");
	req.mail_from = strdup("a@example.org");
	req.mail_params = strdup("");
	req.auth_user = strdup("");
	req.tls = strdup("");
	req.size = msg->len;
	fd = memfd_create("msg", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg->s, msg->len), (ssize_t)msg->len);
	memset(res, 0, sizeof(*res));
	counts_reset();
	pipeline_scan_ex(p, &req, fd, PIPELINE_DRY_RUN, res);
	close(fd);
	assert_string_equal(res->error, "");
	scan_request_free(&req);
	pipeline_free(p);
	config_unref(cfg);
}

static const char *symbol(const struct scan_result *r, const char *name)
{
	for (size_t i = 0; i < r->nsymbols; i++)
		if (strcmp(r->symbols[i].name, name) == 0)
			return r->symbols[i].desc != NULL ? r->symbols[i].desc : "";
	return NULL;
}

static void message_head(struct buf *b)
{
	puts_(b, "From: a@example.org\r\nTo: b@example.net\r\nSubject: files\r\n"
	    "Message-ID: <textfiles@example.org>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n\r\nHello,\r\n\r\nthe files are below.\r\n\r\n");
}

/* A uuencoded program (an ELF header: a banned type, found by the
 * attachments filter in what it decodes), EICAR yEnc'd (found by the
 * antivirus in what it decodes) and 100 KB BinHex'd (its head is what the
 * attachments filter reads, all of it what the antivirus scans): each
 * decoder runs once for its file, and decodes it once. */
static void test_each_file_decoded_once(void **state)
{
	unsigned char elf[4096] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 }, *big = malloc(100000);
	struct buf msg = { 0 };
	struct scan_result res;
	const char *d;

	(void)state;
	assert_non_null(big);
	elf[16] = 2;                 /* e_type ET_EXEC */
	elf[18] = 62;                /* e_machine x86-64 */
	elf[20] = 1;                 /* e_version */
	for (size_t i = 0; i < 100000; i++)
		big[i] = (unsigned char)("notes "[i % 6]);
	message_head(&msg);
	uuencoded(&msg, "notes.txt", elf, sizeof(elf));
	puts_(&msg, "\r\n");
	yenc(&msg, "readme.txt", (const unsigned char *)eicar, sizeof(eicar) - 1);
	puts_(&msg, "\r\n");
	binhex(&msg, "long.txt", big, 100000);
	puts_(&msg, "\r\nRegards\r\n");
	scan(&msg, &res);
	d = symbol(&res, "ATTACH_CONTENT_TYPE");
	assert_non_null(d);
	assert_non_null(strstr(d, "notes.txt (uuencoded in part 1)"));
	d = symbol(&res, "VIRUS_FOUND");
	assert_non_null(d);
	assert_non_null(strstr(d, "EICAR"));
	/* on the code before the memo: 2, 2 and 65,536 + 100,000 */
	assert_int_equal(uu_calls, 1);
	assert_int_equal(uu_bytes, sizeof(elf));
	assert_int_equal(yenc_calls, 1);
	assert_int_equal(yenc_bytes, sizeof(eicar) - 1);
	assert_int_equal(hqx_bytes, 100000);
	scan_result_free(&res);
	free(msg.s);
	free(big);
}

/* EICAR past the first 64 KiB of a BinHex file: the antivirus decodes it
 * whole (the attachments filter read only its head), once */
static void test_binhex_read_on_past_the_head(void **state)
{
	size_t n = 100000 + sizeof(eicar) - 1;
	unsigned char *big = malloc(n);
	struct buf msg = { 0 };
	struct scan_result res;
	const char *d;

	(void)state;
	assert_non_null(big);
	memset(big, 'x', 100000);
	memcpy(big + 100000, eicar, sizeof(eicar) - 1);
	message_head(&msg);
	binhex(&msg, "long.txt", big, n);
	scan(&msg, &res);
	d = symbol(&res, "VIRUS_FOUND");
	assert_non_null(d);
	assert_non_null(strstr(d, "EICAR"));
	assert_null(symbol(&res, "ATTACH_UNCHECKED"));
	assert_int_equal(hqx_bytes, n);
	scan_result_free(&res);
	free(msg.s);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_each_file_decoded_once, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_binhex_read_on_past_the_head, unit_tmpdir_setup,
		    unit_tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
