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
 * refuses when the name holds '.' or '_'.  out has room for len + 1
 * bytes; returns the new length (out NUL-terminated). */
size_t spf_strip_unknown_modifiers(const char *rec, size_t len, char *out);

/* spf_explain_string_ok - an explanation TXT (RFC 7208 6.2:
 * explain-string = *( macro-string / SP ), macro letters c, r, t allowed) */
int spf_explain_string_ok(const char *s, size_t len);

#endif
