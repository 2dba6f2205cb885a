/* dmarc.h - the DMARC decision of the "dmarc" filter (RFC 7489), apart
 * from DNS and the pipeline so that it can be tested on a table of cases:
 * the record is parsed by libopendmarc; organizational domains and
 * alignment come from libpsl over the public suffix list (not from
 * libopendmarc, whose alignment is wrong for some names: LIBRARIES.md 3). */
#ifndef MW_DMARC_H
#define MW_DMARC_H

#include <stddef.h>
#include <libpsl.h>

#define DMARC_DOMAIN_MAX 254

/* dmarc_org_domain - the organizational domain of d, lower case (ASCII:
 * d in any case), into out: its registrable domain per the list, or d
 * itself when d is a public suffix; "" when d is longer than any domain.
 * Returns out. */
const char *dmarc_org_domain(const psl_ctx_t *psl, const char *d, char *out, size_t outsz);

/* dmarc_record_version_ok - does a TXT string start as a DMARC record
 * (RFC 7489 6.4: "v" *WSP "=" *WSP "DMARC1", the tag name in either case,
 * "DMARC1" exactly (%x in the ABNF), then *WSP and ';' or the end)? */
int dmarc_record_version_ok(const char *txt);

/* dmarc_record_clean - the DMARC record txt (its version tag checked) as
 * libopendmarc is to parse it, allocated (free it): v=DMARC1, p= and sp=
 * as published, adkim=, aspf= and pct= only with a valid value (RFC 7489
 * 6.3: an invalid optional tag takes its default; libopendmarc refused
 * the whole record, and read pct=abc as 0), no reporting tags.  The
 * optional tags ignored for an invalid value, blank separated, into
 * ignored[0..isz) ("" if none). */
char *dmarc_record_clean(const char *txt, char *ignored, size_t isz);

/* dmarc_aligned - is identifier domain a aligned with the From domain b?
 * strict: the same name; relaxed: the same organizational domain. */
int dmarc_aligned(const psl_ctx_t *psl, const char *a, const char *b, int strict);

struct dmarc_in {
	const char *from_domain;            /* the one RFC5322.From domain */
	const char *record;                 /* the DMARC record; NULL = none found */
	int         record_at_org;          /* found at the organizational domain */
	const char *spf_domain;             /* SPF-authenticated domain, or NULL */
	const char *const *dkim_domains;    /* d= of the signatures that passed */
	size_t      ndkim;
	unsigned    draw;                   /* 0..99, uniform: pct sampling */
	/* identifiers whose check failed for now (temperror): a failure
	 * that one of them, aligned, might have turned into a pass is a
	 * temperror, not a fail (a slow or dead name server of the sender
	 * must not get its mail a 550); unaligned ones change nothing, so a
	 * forger cannot dodge the policy with a timeout on its own domain */
	const char *spf_temp_domain;        /* or NULL */
	const char *const *dkim_temp_domains;
	size_t      ndkim_temp;
};

enum dmarc_result { DMARC_RES_NONE = 0, DMARC_RES_PASS, DMARC_RES_FAIL, DMARC_RES_PERMERROR,
	DMARC_RES_TEMPERROR };

struct dmarc_out {
	enum dmarc_result result;
	char policy;        /* 'n', 'q', 'r': what the record asks (p=, or sp= for a subdomain) */
	char applied;       /* what applies after pct sampling */
	int  pct;
	int  dkim_aligned, spf_aligned;
	char why[128];      /* for permerror */
	char ignored[64];   /* optional tags ignored for an invalid value, or "" */
};

/* dmarc_decide - the verdict for one message; fills out */
void dmarc_decide(const psl_ctx_t *psl, const struct dmarc_in *in, struct dmarc_out *out);

#endif
