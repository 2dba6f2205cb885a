/* spf_syntax.h - RFC 7208 syntax checks (spf_syntax.c) for the spf filter. */
#ifndef MW_SPF_SYNTAX_H
#define MW_SPF_SYNTAX_H

#include <stddef.h>

/* spf_record_syntax_ok - is rec[0..len) ("v=spf1 ...") a record per the
 * RFC 7208 ABNF (section 12: terms, domain-specs with an alphanumeric top
 * label or a final macro, macro letters, CIDR lengths, at most one
 * redirect= and one exp=)?  1, or 0 with a short reason in why. */
int spf_record_syntax_ok(const char *rec, size_t len, char *why, size_t whylen);

/* spf_strip_unknown_modifiers - rec (a record spf_record_syntax_ok
 * accepted) without its unknown modifiers ("name=value" other than
 * redirect= and exp=), which RFC 7208 6 says to ignore and libspf2 1.2.10
 * refuses when the name holds '.' or '_'; and without redirect= when the
 * record has an "all" mechanism (6.1: it is ignored then; libspf2 may
 * still follow it).  out has room for len + 1
 * bytes; returns the new length (out NUL-terminated). */
size_t spf_strip_unknown_modifiers(const char *rec, size_t len, char *out);

/* SPF_CIDR0_SUFFIX - appended by spf_rewrite_cidr0 to the domain-spec of
 * an a or mx term whose CIDR length (for this client's family) is 0; the
 * DNS layer answers the address lookups of such names with the client's
 * own address when the real name has any, which is what /0 means. */
#define SPF_CIDR0_SUFFIX ".mw-cidr0.invalid"

/* spf_rewrite_cidr0 - rec (syntax ok) without CIDR lengths of 0, which
 * libspf2 1.2.10 cannot hold (0 is its "none given"), for a client of this
 * family: "ip4:X/0" is "all" for an IPv4 client and never matches an IPv6
 * one (then left out), "ip6:X/0" the other way round; "a/0", "mx//0" etc.
 * become a domain-spec ending in SPF_CIDR0_SUFFIX when the 0 is the
 * length for this family, and lose the length when it is the other
 * family's.  Writes at most outsz bytes (NUL included); returns the length,
 * or 0 if nothing needed rewriting or it did not fit (use rec as it is). */
size_t spf_rewrite_cidr0(const char *rec, size_t len, int client_v6, char *out, size_t outsz);

/* spf_explain_string_ok - an explanation TXT (RFC 7208 6.2:
 * explain-string = *( macro-string / SP ), macro letters c, r, t allowed) */
int spf_explain_string_ok(const char *s, size_t len);

#endif
