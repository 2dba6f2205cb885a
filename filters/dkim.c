/* dkim.c - the built-in "dkim" filter: DKIM verification (RFC 6376, RSA-
 * SHA256 and Ed25519-SHA256 per RFC 8463) of inbound messages with
 * libopendkim.
 *
 * Every signature is verified (up to dkim_max_signatures) and reported on
 * its own: one Authentication-Results entry "dkim=RESULT header.d=
 * header.s= header.b=" each, and symbols for the message (DKIM_VALID,
 * DKIM_INVALID, DKIM_TEMPFAIL, DKIM_PERMERROR, DKIM_POLICY, DKIM_NONE).
 *
 * Why the care:
 *   - libopendkim sets DKIM_SIGFLAG_PASSED when the header hash verifies
 *     even if the body hash does not (LIBRARIES.md 2): a signature passes
 *     only when both do.
 *   - Keys never come from libopendkim's own (blocking, deadline-less)
 *     resolver: dkim_set_key_lookup() hands every lookup to the scanner's
 *     DNS layer, under one deadline per message (dkim_timeout), so a
 *     malformed d= or a dead name server costs at most that.
 *   - rsa-sha1 signatures never pass (RFC 8301), whatever they verify to.
 *   - l= lets anyone append to a signed body; dkim_body_length decides
 *     whether such a signature may pass.
 * The whole message is fed with dkim_chunk() from the raw spool, so simple
 * canonicalization sees the header fields exactly as they arrived.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <dkim.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/dns.h"
#include "proxy/headers.h"
#include "proxy/log.h"

struct dkim_inst {
	DKIM_LIB *lib;                    /* shared by threads; configured in setup */
	struct dns *dns;                  /* borrowed: the scanner's DNS layer */
	const struct config *cfg;         /* borrowed */
};

#define DKIM_MAX_TEMP 64

/* per message, reached from the key lookup callback via the user context */
struct verify_ctx {
	const struct dkim_inst *in;
	struct timespec deadline;         /* CLOCK_MONOTONIC */
	DKIM_SIGINFO *temp[DKIM_MAX_TEMP]; /* signatures whose key lookup failed for now */
	size_t ntemp;
	DKIM_SIGINFO *late[DKIM_MAX_TEMP]; /* reached after the deadline, key not at hand */
	size_t nlate;
	int    looked_up;                 /* key lookups so far */
};

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static void mark_temp(struct verify_ctx *vc, DKIM_SIGINFO *sig)
{
	if (vc->ntemp < DKIM_MAX_TEMP)
		vc->temp[vc->ntemp++] = sig;
}

/* listed - is sig one of v[0..n) (the temp or the late ones)? */
static int listed(DKIM_SIGINFO *const *v, size_t n, const DKIM_SIGINFO *sig)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == sig)
			return 1;
	return 0;
}

/* key_lookup - libopendkim's key retrieval, answered by the DNS layer:
 * the TXT record at SELECTOR._domainkey.DOMAIN into buf.
 *
 * A lookup that fails for now marks the signature (temperror) but answers
 * NOTFOUND, not TRYAGAIN: on TRYAGAIN libopendkim's eom stops, and the
 * signatures after it were never verified nor listed (one of the sender's
 * own dead keys on top hid a valid signature below it).
 *
 * The message's deadline is shared by all its signatures, whose order the
 * sender chooses, and the time before a key lookup is the sender's too
 * (libopendkim's header work, the other signatures' lookups).  A
 * signature reached after the deadline is still verified if its key is at
 * hand (the pipeline prefetched it: a cached answer costs nothing); if it
 * is not, the signature is "late": not verified (neutral), never
 * temperror, because DMARC takes an aligned temperror for a failure of
 * the From domain's own DNS and applies no policy (RFC 7489 6.6.2): with
 * the budget spent on the sender's work, a forged From of a p=reject
 * domain was delivered as dmarc=temperror. */
static DKIM_CBSTAT key_lookup(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	struct verify_ctx *vc = dkim_get_user_context(d);
	const char *dom = (const char *)dkim_sig_getdomain(sig);
	const char *sel = (const char *)dkim_sig_getselector(sig);
	struct dns_reply *r;
	char name[600];
	long left;
	int n, late = 0;

	if (vc == NULL || dom == NULL || sel == NULL)
		return DKIM_CBSTAT_ERROR;
	vc->looked_up++;
	if (vc->in->dns == NULL) {
		mark_temp(vc, sig);
		return DKIM_CBSTAT_NOTFOUND;
	}
	n = snprintf(name, sizeof(name), "%s._domainkey.%s", sel, dom);
	if (n < 0 || (size_t)n >= sizeof(name) || n > 253)
		return DKIM_CBSTAT_NOTFOUND;
	left = ms_left(&vc->deadline);
	if (left <= 0) {
		/* deadline passed: only what is cached (or answers within
		 * 1 ms), so dkim_max_signatures late lookups cost at most
		 * that many milliseconds */
		deadline_timed_out("dkim_timeout");
		late = 1;
		left = 1;
	}
	/* one lookup: at most dns_timeout, and never past the message's deadline */
	if (vc->in->cfg->dns_timeout > 0 && left > (long)vc->in->cfg->dns_timeout)
		left = (long)vc->in->cfg->dns_timeout;
	r = dns_lookup(vc->in->dns, name, DNS_T_TXT, (unsigned)left);
	if (late && (r->status == DNS_SERVFAIL || r->status == DNS_TIMEOUT)) {
		dns_reply_free(r);
		if (vc->nlate < DKIM_MAX_TEMP)
			vc->late[vc->nlate++] = sig;
		return DKIM_CBSTAT_NOTFOUND;
	}
	switch (r->status) {
	case DNS_OK: {
		size_t i;

		/* the first record that looks like a key (RFC 6376 3.6.2.2:
		 * a name with several records is ambiguous; take the first) */
		for (i = 0; i < r->count; i++)
			if (r->rr[i].text != NULL && strlen(r->rr[i].text) == r->rr[i].text_len &&
			    r->rr[i].text_len < buflen) {
				memcpy(buf, r->rr[i].text, r->rr[i].text_len + 1);
				dns_reply_free(r);
				return DKIM_CBSTAT_CONTINUE;
			}
		dns_reply_free(r);
		return DKIM_CBSTAT_NOTFOUND;
	}
	case DNS_SERVFAIL:
	case DNS_TIMEOUT:
		dns_reply_free(r);
		mark_temp(vc, sig);
		return DKIM_CBSTAT_NOTFOUND;
	default:
		dns_reply_free(r);
		return DKIM_CBSTAT_NOTFOUND;
	}
}

/* prescreen - only the first dkim_max_signatures signatures are verified
 * (each costs a key lookup and a public-key operation) */
static DKIM_CBSTAT prescreen(DKIM *d, DKIM_SIGINFO **sigs, int nsigs)
{
	struct verify_ctx *vc = dkim_get_user_context(d);
	int i;

	for (i = vc != NULL ? (int)vc->in->cfg->dkim_max_signatures : nsigs; i < nsigs; i++)
		dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

static int dkim_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct dkim_inst *in = calloc(1, sizeof(*in));
	unsigned int flags = DKIM_LIBFLAGS_FIXCRLF;
	unsigned int minbits;

	if (in == NULL || (in->lib = dkim_init(NULL, NULL)) == NULL) {
		snprintf(err, errlen, "cannot initialize libopendkim");
		free(in);
		return -1;
	}
	in->dns = env->dns;
	in->cfg = env->cfg;
	minbits = env->cfg->dkim_min_key_bits;
	if (dkim_options(in->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_options(in->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof(minbits)) != DKIM_STAT_OK ||
	    dkim_set_key_lookup(in->lib, key_lookup) != DKIM_STAT_OK ||
	    dkim_set_prescreen(in->lib, prescreen) != DKIM_STAT_OK) {
		snprintf(err, errlen, "cannot configure libopendkim");
		dkim_close(in->lib);
		free(in);
		return -1;
	}
	*instance = in;
	return 0;
}

static void dkim_fini(void *instance)
{
	struct dkim_inst *in = instance;

	if (in == NULL)
		return;
	dkim_close(in->lib);
	free(in);
}

/* printable - s cut to a printable ASCII token (whitespace dropped; ';',
 * '(', ')', '"', '\\' and control bytes as '?') into out: it goes into an
 * Authentication-Results property.  Returns out, or "?" if that is empty. */
static const char *printable(const char *s, char *out, size_t outsz)
{
	size_t i, o = 0;

	for (i = 0; s != NULL && s[i] != '\0' && o + 1 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;        /* folding inside b= */
		out[o++] = (c > 0x20 && c < 0x7f && c != ';' && c != '(' && c != ')' &&
		    c != '"' && c != '\\') ? (char)c : '?';
	}
	out[o] = '\0';
	return o ? out : "?";
}

/* canon_body_len - length of the body after DKIM body canonicalization
 * (RFC 6376 3.4.3/3.4.4), to tell whether l= covers all of it:
 * libopendkim's own count stops at l=. */
static size_t canon_body_len(const unsigned char *b, size_t n, int relaxed)
{
	size_t total = 0, line = 0, pending_empty = 0, i = 0;

	while (i < n) {
		size_t e = i, len = 0;
		int wsp = 0;

		while (e < n && !(b[e] == '\r' && e + 1 < n && b[e + 1] == '\n'))
			e++;
		/* the line b[i..e) */
		if (relaxed) {
			for (size_t k = i; k < e; k++) {
				if (b[k] == ' ' || b[k] == '\t') {
					wsp = 1;
					continue;
				}
				if (wsp && len > 0)
					len++;       /* a run of WSP inside the line: one SP */
				wsp = 0;
				len++;
			}
		} else
			len = e - i;
		if (e >= n && len == 0)
			break;               /* nothing after the last CRLF */
		if (len == 0)
			pending_empty++;     /* empty lines count only if text follows */
		else {
			total += pending_empty * 2 + len + 2;
			pending_empty = 0;
		}
		line++;
		i = e < n ? e + 2 : n;
	}
	/* an empty body is CRLF in simple canonicalization, empty in relaxed */
	return total == 0 && !relaxed ? 2 : total;
}

/* SR_TESTING: a signature that failed (or was not acceptable) under a
 * key in testing mode (t=y).  RFC 6376 3.6.1: "Verifiers MUST NOT treat
 * messages from Signers in testing mode differently from unsigned email,
 * even should the signature fail to verify": RFC 8601's "neutral" (what
 * opendkim reports too), no score; it was DKIM_INVALID with
 * dkim_fail_score. */
enum sig_result { SR_PASS, SR_FAIL, SR_POLICY, SR_TEMPERROR, SR_PERMERROR, SR_NEUTRAL, SR_TESTING };

static const char *const result_names[] = {
	"pass", "fail", "policy", "temperror", "permerror", "neutral", "neutral"
};

/* judge - one signature's result and the reason ("" if none) */
static enum sig_result judge(const struct dkim_inst *in, const struct verify_ctx *vc,
                             DKIM *d, DKIM_SIGINFO *sig, const unsigned char *body,
                             size_t bodylen, char *why, size_t whylen)
{
	unsigned int flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig);
	ssize_t msglen = -1, canonlen = -1, signlen = -1;
	unsigned int bits = 0;
	const char *es;

	why[0] = '\0';
	if (listed(vc->temp, vc->ntemp, sig)) {
		snprintf(why, whylen, "key lookup failed for now");
		return SR_TEMPERROR;
	}
	if (listed(vc->late, vc->nlate, sig)) {
		snprintf(why, whylen, "not verified: dkim_timeout spent before its key lookup");
		return SR_NEUTRAL;
	}
	if ((flags & DKIM_SIGFLAG_PASSED) && dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH) {
		dkim_alg_t a = DKIM_SIGN_UNKNOWN;

		/* RFC 8301 3.1: rsa-sha1 signatures must not be considered valid */
		if (dkim_sig_getsignalg(sig, &a) == DKIM_STAT_OK && a == DKIM_SIGN_RSASHA1) {
			snprintf(why, whylen, "rsa-sha1 not accepted");
			return SR_POLICY;
		}
		if (dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK && bits > 0 &&
		    bits < in->cfg->dkim_min_key_bits && (flags & DKIM_SIGFLAG_KEYLOADED)) {
			/* Ed25519 keys are 256 bits and strong: the floor is for RSA */
			dkim_alg_t alg = DKIM_SIGN_UNKNOWN;

			if (dkim_sig_getsignalg(sig, &alg) == DKIM_STAT_OK && alg != DKIM_SIGN_ED25519SHA256) {
				snprintf(why, whylen, "key of %u bits, below %u", bits,
				    in->cfg->dkim_min_key_bits);
				return SR_POLICY;
			}
		}
		if (dkim_sig_getcanonlen(d, sig, &msglen, &canonlen, &signlen) == DKIM_STAT_OK &&
		    signlen >= 0) {
			if (in->cfg->dkim_body_length == DKIM_LENGTH_REFUSE) {
				snprintf(why, whylen, "l= not accepted");
				return SR_POLICY;
			}
			dkim_canon_t hc = DKIM_CANON_SIMPLE, bc = DKIM_CANON_SIMPLE;
			size_t full;

			dkim_sig_getcanons(sig, &hc, &bc);
			full = canon_body_len(body, bodylen, bc == DKIM_CANON_RELAXED);
			if (in->cfg->dkim_body_length == DKIM_LENGTH_WHOLE && full > (size_t)signlen) {
				snprintf(why, whylen, "l=%zd covers %zd of %zu body bytes", signlen,
				    signlen, full);
				return SR_POLICY;
			}
		}
		return SR_PASS;
	}
	es = dkim_sig_geterrorstr(err);
	if (err == DKIM_SIGERROR_KEYTOOSMALL) {
		snprintf(why, whylen, "key below %u bits", in->cfg->dkim_min_key_bits);
		return SR_POLICY;
	}
	if ((flags & DKIM_SIGFLAG_PASSED) && dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
		snprintf(why, whylen, "body hash mismatch");
		return SR_FAIL;
	}
	switch (err) {
	case DKIM_SIGERROR_BADSIG:
	case DKIM_SIGERROR_EXPIRED:
	case DKIM_SIGERROR_FUTURE:
	case DKIM_SIGERROR_MBSFAILED:
		snprintf(why, whylen, "%s", es ? es : "bad signature");
		return SR_FAIL;
	case DKIM_SIGERROR_KEYFAIL:
		snprintf(why, whylen, "%s", es ? es : "key lookup failed");
		return SR_TEMPERROR;
	case DKIM_SIGERROR_OK:
	case DKIM_SIGERROR_UNKNOWN:
		if (!(flags & DKIM_SIGFLAG_PROCESSED)) {
			/* never temperror for another signature's failed
			 * lookup: DMARC would take it for this d='s own */
			snprintf(why, whylen, "not verified");
			return SR_NEUTRAL;
		}
		snprintf(why, whylen, "bad signature");
		return SR_FAIL;
	default:
		snprintf(why, whylen, "%s", es ? es : "unusable signature");
		return SR_PERMERROR;
	}
}

#define DKIM_MAX_FIELDS 10000    /* header fields of a message we verify */
#define DKIM_MAX_H      1000     /* names in the h= of a signature we verify */

/* h_entries - the number of names in the h= tag of a DKIM-Signature
 * field (its colons + 1; 0 without one) */
static size_t h_entries(const struct header_field *f)
{
	const char *v = f->value, *end = f->value + f->value_len;

	while (v < end) {
		const char *semi = memchr(v, ';', (size_t)(end - v)), *t = v;
		size_t n = 1;

		if (semi == NULL)
			semi = end;
		while (t < semi && (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n'))
			t++;
		if (t < semi && *t == 'h') {
			for (t++; t < semi && (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n'); t++)
				;
			if (t < semi && *t == '=') {
				for (; t < semi; t++)
					n += *t == ':';
				return n;
			}
		}
		v = semi + 1;
	}
	return 0;
}

/* feed - the message to libopendkim, but without the DKIM-Signature
 * fields past dkim_max_signatures and those whose h= names more than
 * DKIM_MAX_H fields.  libopendkim's end of header step takes time
 * quadratic in the number of signature fields (5,000 fields: 2 s, 20,000:
 * over a minute, 50,000 in a 28 MB message: over 10 minutes of one
 * scanner thread), and its header selection time h= entries x header
 * fields x signatures (h= of 200 names over 1,000,000 fields: 39 s);
 * only the first dkim_max_signatures are verified anyway, and no signer
 * names a thousand fields.  (A kept signature that signs a left-out
 * DKIM-Signature field then fails: only in a message with more signatures
 * than we look at.)  Returns libopendkim's status; *dropped = the fields
 * left out for their number, *long_h = those left out for their h=. */
static DKIM_STAT feed(DKIM *d, const unsigned char *msg, size_t len, unsigned max,
                      unsigned *dropped, unsigned *long_h)
{
	const char *m = (const char *)msg;
	struct header_field f;
	size_t pos = 0, from = 0;
	unsigned n = 0, skip = 0;
	DKIM_STAT st = DKIM_STAT_OK;

	*dropped = *long_h = 0;
	while (n <= max && header_next(m, len, &pos, &f) == 1)
		if (header_name_is(&f, "DKIM-Signature")) {
			n++;
			skip += h_entries(&f) > DKIM_MAX_H;
		}
	if (n <= max && skip == 0)
		return dkim_chunk(d, (u_char *)msg, len);
	pos = n = 0;
	while (st == DKIM_STAT_OK && header_next(m, len, &pos, &f) == 1) {
		if (!header_name_is(&f, "DKIM-Signature"))
			continue;
		if (++n <= max && h_entries(&f) <= DKIM_MAX_H)
			continue;
		if (n <= max)
			(*long_h)++;
		else
			(*dropped)++;
		if (f.start > m + from)
			st = dkim_chunk(d, (u_char *)msg + from, (size_t)(f.start - m) - from);
		from = pos;
	}
	if (st == DKIM_STAT_OK && len > from)
		st = dkim_chunk(d, (u_char *)msg + from, len - from);
	return st;
}

/* header_fields - the number of header fields libopendkim gets (feed:
 * DKIM-Signature fields past max_sigs do not count), up to max + 1 */
static size_t header_fields(const unsigned char *msg, size_t len, size_t max, unsigned max_sigs)
{
	struct header_field f;
	size_t pos = 0, n = 0;
	unsigned sigs = 0;

	while (n <= max && header_next((const char *)msg, len, &pos, &f) == 1)
		if (!header_name_is(&f, "DKIM-Signature") || ++sigs <= max_sigs)
			n++;
	return n;
}

/* verify_eom - verify every signature of the message. */
static void verify_eom(struct mw_ctx *ctx)
{
	const struct dkim_inst *in = mw_instance(ctx);
	struct verify_ctx vc;
	DKIM_SIGINFO **sigs = NULL;
	DKIM_STAT st;
	DKIM *d;
	const unsigned char *msg, *body;
	size_t len, bodylen;
	int nsigs = 0, i, npass = 0, nfail = 0, ntemp = 0, nperm = 0, npolicy = 0, ntesting = 0;
	unsigned dropped = 0, long_h = 0;

	if (mw_direction(ctx) != MW_INBOUND)
		return;
	if (mw_header(ctx, "DKIM-Signature", 0) == NULL) {
		mw_auth_result(ctx, "dkim", "none", NULL);
		mw_symbol(ctx, "DKIM_NONE", 0, "no DKIM signature");
		return;
	}
	memset(&vc, 0, sizeof(vc));
	vc.in = in;
	clock_gettime(CLOCK_MONOTONIC, &vc.deadline);
	vc.deadline.tv_sec += in->cfg->dkim_timeout / 1000;
	vc.deadline.tv_nsec += (long)(in->cfg->dkim_timeout % 1000) * 1000000;
	if (vc.deadline.tv_nsec >= 1000000000) {
		vc.deadline.tv_sec++;
		vc.deadline.tv_nsec -= 1000000000;
	}

	msg = mw_message(ctx, &len);
	if (header_fields(msg, len, DKIM_MAX_FIELDS, in->cfg->dkim_max_signatures)
	    > DKIM_MAX_FIELDS) {
		/* each signature would cost libopendkim time h= x fields */
		mw_auth_result(ctx, "dkim", "permerror", "reason=\"more than %d header fields\"",
		    DKIM_MAX_FIELDS);
		mw_symbol(ctx, "DKIM_PERMERROR", 0, "more than %d header fields: DKIM not verified",
		    DKIM_MAX_FIELDS);
		return;
	}
	d = dkim_verify(in->lib, (const u_char *)mw_session_id(ctx), NULL, &st);
	if (d == NULL) {
		mw_log(ctx, LOG_ERR, "dkim_verify: %s", dkim_getresultstr(st));
		mw_auth_result(ctx, "dkim", "temperror", "reason=\"verifier unavailable\"");
		mw_symbol(ctx, "DKIM_TEMPFAIL", 0, "DKIM verifier unavailable");
		return;
	}
	dkim_set_user_context(d, &vc);
	body = msg + header_body_offset((const char *)msg, len);
	bodylen = len - (size_t)(body - msg);
	st = feed(d, msg, len, in->cfg->dkim_max_signatures, &dropped, &long_h);
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(d, NULL, 0);
	if (st == DKIM_STAT_OK || st == DKIM_STAT_NOSIG || st == DKIM_STAT_SYNTAX)
		st = dkim_eom(d, NULL);
	if ((dkim_getsiglist(d, &sigs, &nsigs) != DKIM_STAT_OK || nsigs <= 0) && vc.ntemp > 0) {
		/* should libopendkim's eom stop before it lists the
		 * signatures: report those whose lookup failed for now */
		sigs = vc.temp;
		nsigs = (int)vc.ntemp;
	}
	if (long_h > 0) {
		mw_auth_result(ctx, "dkim", "permerror", "reason=\"h= of more than %d fields\"",
		    DKIM_MAX_H);
		nperm++;
		mw_symbol(ctx, "DKIM_PERMERROR", 0, "%u DKIM signatures with h= of more than %d fields",
		    long_h, DKIM_MAX_H);
	}
	if (nsigs <= 0 && long_h > 0) {
		dkim_free(d);
		return;
	}
	if (nsigs <= 0) {
		/* fields named DKIM-Signature that libopendkim could not even
		 * take apart: say so once */
		mw_auth_result(ctx, "dkim", "permerror", "reason=\"unusable signature\"");
		mw_symbol(ctx, "DKIM_PERMERROR", 0, "unusable DKIM signature (%s)",
		    dkim_getresultstr(st));
		dkim_free(d);
		return;
	}
	for (i = 0; i < nsigs && i < (int)in->cfg->dkim_max_signatures; i++) {
		char why[200], dom[256], sel[128], b[9];
		const char *bv;
		enum sig_result r = judge(in, &vc, d, sigs[i], body, bodylen, why, sizeof(why));

		const char *pd, *ps, *pb;

		if ((r == SR_FAIL || r == SR_POLICY) &&
		    (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_TESTKEY)) {
			char w[sizeof(why) + 32];
			size_t wl = (size_t)snprintf(w, sizeof(w), "testing key (t=y): %s", why);

			if (wl >= sizeof(why))  /* the reason may lose its end */
				wl = sizeof(why) - 1;
			memcpy(why, w, wl);
			why[wl] = '\0';
			r = SR_TESTING;
		}

		bv = (const char *)dkim_sig_gettagvalue(sigs[i], 0, (u_char *)"b");
		pb = printable(bv, b, sizeof(b));
		pd = printable((const char *)dkim_sig_getdomain(sigs[i]), dom, sizeof(dom));
		ps = printable((const char *)dkim_sig_getselector(sigs[i]), sel, sizeof(sel));
		if (why[0])
			mw_auth_result(ctx, "dkim", result_names[r],
			    "reason=\"%s\" header.d=%s header.s=%s header.b=%s", why, pd, ps, pb);
		else
			mw_auth_result(ctx, "dkim", result_names[r],
			    "header.d=%s header.s=%s header.b=%s", pd, ps, pb);
		switch (r) {
		case SR_PASS:
			if (npass++ == 0)
				mw_symbol(ctx, "DKIM_VALID", in->cfg->dkim_pass_score,
				    "valid DKIM signature of %s", pd);
			break;
		case SR_FAIL:
			if (nfail++ == 0)
				mw_symbol(ctx, "DKIM_INVALID", in->cfg->dkim_fail_score,
				    "invalid DKIM signature of %s: %s", pd, why);
			break;
		case SR_POLICY:
			if (npolicy++ == 0)
				mw_symbol(ctx, "DKIM_POLICY", in->cfg->dkim_fail_score,
				    "DKIM signature of %s not acceptable: %s", pd, why);
			break;
		case SR_TEMPERROR:
			if (ntemp++ == 0)
				mw_symbol(ctx, "DKIM_TEMPFAIL", 0, "DKIM signature of %s: %s", pd, why);
			break;
		case SR_PERMERROR:
		case SR_NEUTRAL:
			if (nperm++ == 0)
				mw_symbol(ctx, "DKIM_PERMERROR", 0, "DKIM signature of %s: %s", pd, why);
			break;
		case SR_TESTING:
			if (ntesting++ == 0)
				mw_symbol(ctx, "DKIM_TESTING", 0, "DKIM signature of %s: %s", pd, why);
			break;
		}
	}
	if (nsigs > (int)in->cfg->dkim_max_signatures || dropped > 0)
		mw_log(ctx, LOG_NOTICE, "dkim: %u signatures, verified the first %u",
		    (unsigned)nsigs + dropped, in->cfg->dkim_max_signatures);
	dkim_free(d);
}

/* sig_tag - the value of tag (d, s) in a DKIM-Signature tag list (RFC
 * 6376 3.2: "tag = value" separated by ';', whitespace inside a value
 * ignored) into out; 0 if absent or too long */
static int sig_tag(const char *sig, const char *tag, char *out, size_t outsz)
{
	size_t tl = strlen(tag);

	while (*sig != '\0') {
		const char *p = sig + strspn(sig, " \t\r\n"), *end = strchr(p, ';');
		size_t o = 0;

		if (end == NULL)
			end = p + strlen(p);
		if (strncmp(p, tag, tl) == 0 && p[tl + strspn(p + tl, " \t\r\n")] == '=') {
			for (p = strchr(p, '=') + 1; p < end; p++) {
				if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
					continue;
				if (o + 1 >= outsz)
					return 0;
				out[o++] = *p;
			}
			out[o] = '\0';
			return o > 0;
		}
		sig = *end == ';' ? end + 1 : end;
	}
	return 0;
}

/* dkim_prefetch - the keys of the signatures verify_eom will verify */
static void dkim_prefetch(struct mw_ctx *ctx)
{
	const struct dkim_inst *in = mw_instance(ctx);
	const char *v;
	char d[256], s[256], name[600];
	size_t n;

	if (in == NULL || mw_direction(ctx) != MW_INBOUND)
		return;
	for (n = 0; n < in->cfg->dkim_max_signatures && (v = mw_header(ctx, "DKIM-Signature", n)) != NULL;
	     n++)
		if (sig_tag(v, "d", d, sizeof(d)) && sig_tag(v, "s", s, sizeof(s))
		    && (size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", s, d) < 254)
			dns_prefetch(in->dns, name, DNS_T_TXT);
}

static const struct mw_filter_ops dkim_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "dkim",
	.fini = dkim_fini,
	.on_eom = verify_eom,
};

const struct builtin_filter builtin_dkim = {
	.name = "dkim",
	.ops = &dkim_ops,
	.setup = dkim_setup,
	.prefetch = dkim_prefetch,
};
