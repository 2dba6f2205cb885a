/* fuzz_relay.c - libFuzzer target for rules/eval_relay.c: the Received
 * fields of a message (anyone's text) parsed into relays as SpamAssassin
 * does, the trust path, the X-Spam-Relays-* and ALL-* pseudo-headers and
 * every eval function of the module, and the Date parse behind
 * check_for_shifted_date.
 *
 * Build and run: make fuzz FUZZ_TARGETS=relay FUZZ_SECONDS=60
 *
 * Input: byte 0 picks the SMTP client (none, an IPv4 or IPv6 address,
 * trusted or not, authenticated or not); the rest is split at NUL bytes
 * into header fields: a piece that starts with a field name and ":" is
 * that field, any other piece is the value of a Received field.  The
 * last piece is also the HELO name and the envelope sender.  One
 * ruleset (every eval of the module, a rule on each pseudo-header, with
 * trusted, internal and MSA networks) is loaded once; the sanitizers
 * (and libFuzzer's -timeout) are the checks.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 64

static const char ruleset_text[] =
	"trusted_networks 10.0.0.0/8 192.0.2.0/24 2001:db8::/32\n"
	"internal_networks 10.0.0.0/8 192.0.2.1\n"
	"msa_networks 192.0.2.50\n"
	"welcomelist_bounce_relays smtp?.example.org mx.other.net\n"
	"header R_TRUSTED X-Spam-Relays-Trusted =~ /ip=/\n"
	"header R_UNTRUSTED X-Spam-Relays-Untrusted =~ /rdns=\\S/\n"
	"header R_INTERNAL X-Spam-Relays-Internal =~ /helo=\\S/\n"
	"header R_EXTERNAL X-Spam-Relays-External =~ /auth=\\S/\n"
	"header A_TRUSTED ALL-TRUSTED =~ /Received/\n"
	"header A_UNTRUSTED ALL-UNTRUSTED =~ /Received/\n"
	"header A_INTERNAL ALL-INTERNAL =~ /Received/\n"
	"header A_EXTERNAL ALL-EXTERNAL =~ /Received/\n"
	"header E01 eval:check_all_trusted()\n"
	"header E02 eval:check_no_relays()\n"
	"header E03 eval:check_relays_unparseable()\n"
	"header E04 eval:check_for_sender_no_reverse()\n"
	"header E05 eval:helo_ip_mismatch()\n"
	"header E06 eval:check_for_numeric_helo()\n"
	"header E07 eval:check_for_no_rdns_dotcom_helo()\n"
	"header E08 eval:check_for_forged_received_trail()\n"
	"header E09 eval:check_for_forged_received_ip_helo()\n"
	"header E10 eval:check_for_fake_aol_relay_in_rcvd()\n"
	"header E11 eval:gated_through_received_hdr_remover()\n"
	"header E12 eval:check_for_forged_hotmail_received_headers()\n"
	"header E13 eval:check_for_no_hotmail_received_headers()\n"
	"header E14 eval:check_for_forged_eudoramail_received_headers()\n"
	"header E15 eval:check_for_forged_yahoo_received_headers()\n"
	"header E16 eval:check_for_forged_juno_received_headers()\n"
	"header E17 eval:check_for_forged_gmail_received_headers()\n"
	"header E18 eval:check_for_shifted_date('-6', '-3')\n"
	"header E19 eval:check_for_shifted_date('2920', 'undef')\n"
	"header E20 eval:check_for_shifted_date('undef', '-96')\n"
	"header E21 eval:check_mailfrom_matches_rcvd()\n"
	"header E22 eval:have_any_bounce_relays()\n"
	"body E23 eval:check_welcomelist_bounce_relays()\n";

static struct ruleset *rs;

static void on_hit(void *arg, const struct rules_hit *h)
{
	(void)arg;
	(void)h;
}

static struct ruleset *ruleset(void)
{
	char err[512];

	if (rs != NULL)
		return rs;
	rs = rules_new();
	if (rules_load_text(rs, "fuzz_relay.cf", ruleset_text, sizeof(ruleset_text) - 1, err,
	                    sizeof(err)) != 0
	    || rules_compile(rs, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_relay: ruleset: %s\n", err);
		abort();
	}
	return rs;
}

/* name_len - length of "Name" when piece starts with "Name:", else 0 */
static size_t name_len(const char *p)
{
	size_t i = 0;

	while (p[i] > 32 && p[i] < 127 && p[i] != ':' && i < 40)
		i++;
	return (i > 0 && p[i] == ':') ? i : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const clients[] = { NULL, "203.0.113.7", "10.1.2.3", "192.0.2.50",
		"2001:db8::25", "2a00:1450::1", "::ffff:198.51.100.1", "127.0.0.1" };
	struct rules_header h[MAX_FIELDS + 3];
	char *text, *p, *end, *last = "";
	size_t n = 0;
	struct rules_scratch *s;
	const char *body[1] = { "bounce body\n" };
	size_t body_len[1] = { 12 };

	if (size < 1)
		return 0;
	text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	end = text + size - 1;
	for (p = text; p <= end && n < MAX_FIELDS; p += strlen(p) + 1) {
		size_t k = name_len(p);

		if (k > 0) {
			p[k] = '\0';
			h[n].name = p;
			h[n].raw = p + k + 1;
			p += k + 1;
		} else {
			h[n].name = "Received";
			h[n].raw = p;
		}
		h[n].decoded = NULL;
		last = (char *)h[n].raw;
		n++;
	}
	h[n++] = (struct rules_header){ "From", "someone@example.com", NULL };
	h[n++] = (struct rules_header){ "Date", "Thu, 13 Mar 2003 15:19:00 -0500", NULL };
	struct rules_input in = {
		.headers = h, .nheaders = n, .body = body, .body_len = body_len, .nbody = 1,
		.rawbody = body, .rawbody_len = body_len, .nrawbody = 1,
		.full = "", .full_len = 0, .time_budget_ms = 2000,
		.mail_from = last, .helo = last,
		.client_ip = clients[data[0] % 8],
		.client_name = (data[0] & 8) ? "mail.example.org" : NULL,
		.receiver = (data[0] & 16) ? "mx.example.net" : NULL,
		.authenticated = (data[0] & 32) != 0,
	};
	s = rules_scratch_new(ruleset());
	if (s == NULL)
		abort();
	rules_scan(rs, s, &in, on_hit, NULL);
	rules_scratch_free(s);
	free(text);
	return 0;
}
