/* mime_bare.h - URIs written in text without a scheme: a bare host with an
 * optional port and path ("visit spammer.com/offer") and a bare mail
 * address ("sales@spammer.com").
 *
 * SpamAssassin (PerMsgStatus::_tbirdurire, _process_text_uri_list) and
 * rspamd's URL extractor take both from the text, so the URI blocklists
 * ask their domains; a spammer who leaves out "http://" was otherwise
 * asked about nowhere.  A word with a dot is no host unless it ends in a
 * real top-level domain (SpamAssassin's valid_tlds; here libpsl's ICANN
 * section without its "*" rule), so "file.txt", "e.g." and "1.2.3" are not
 * taken; "readme.md" and "setup.py" are, as SpamAssassin takes them (.md
 * and .py are country domains).
 *
 * Pure functions over a text buffer: the caller (mime.c text_uris) walks
 * the text once and bounds how many candidates it checks. */
#ifndef MW_MIME_BARE_H
#define MW_MIME_BARE_H

#include <stddef.h>

/* mime_bare_host - a schemeless host URI starting at t[i] (len bytes in
 * t): t[i] starts a word (the text's start or, before it, a space or
 * punctuation SpamAssassin lets start one: not a letter, digit, '.',
 * '-', '_', '%' or a byte over 0x7f other than 0xa0; '/' is one, so
 * "/etc/postfix/main.cf" holds "main.cf", as it does to SpamAssassin),
 * then a host of at least two labels (letters, digits, '-', '_' as
 * SpamAssassin's is_fqdn_valid allows them) whose last label is letters
 * only (or "xn--..."), an optional dot, ":port", and then "/" or the end
 * of the word (a space, one of ><"`}]{[| or the end, after sentence
 * punctuation, which is not part of the URI).
 *
 * Returns the length from t[i] of the host and its port, the host's
 * length in *hostlen; 0 when there is none.  The path is not read here
 * (mime_bare_uri_len), nor the top-level domain checked
 * (mime_bare_tld_ok): the caller checks it first, so the path of a host
 * such as "a.zz/a.zz/..." is never read.  A walk calling it at every
 * byte stays linear: no word starts inside the run of host characters
 * it reads, so no byte of a run is read twice. */
size_t mime_bare_host(const char *t, size_t len, size_t i, size_t *hostlen);

/* mime_bare_uri_len - the length of the URI whose host and port
 * mime_bare_host found at t[i] (n bytes): n, or with its "/path" to the
 * end of its word, trailing sentence punctuation cut.  The path is read
 * until the URI is max bytes long at most, where it is cut (at the start
 * of a character): the rest of the word is text of its own, as
 * SpamAssassin reads a word longer than its 2048-byte body pieces.  At
 * most max bytes from t[i] are read, and a walk that goes on after the
 * URI reads none of them again. */
size_t mime_bare_uri_len(const char *t, size_t len, size_t i, size_t n, size_t max);

/* mime_bare_addr - a mail address around the '@' at t[at]: the local part
 * back over letters, digits and ._%+- (up to 64), the domain forward over
 * letters, digits, '.' and '-' (up to 255), trailing dots and dashes and
 * leading dots cut; the domain has a dot and a last label of two or more
 * letters.  Returns the index after the address and its start in *start;
 * 0 when there is none.  The rules filter's search for addresses in the
 * text (filters/rules.c) reads them with this same grammar. */
size_t mime_bare_addr(const char *t, size_t len, size_t at, size_t *start);

/* mime_bare_tld_ok - 1 if the last label of host (n bytes, a trailing dot
 * allowed) is a top-level domain of the public suffix list's ICANN
 * section (libpsl's builtin list, no "*" rule: "txt" is none), else 0 */
int mime_bare_tld_ok(const char *host, size_t n);

#endif
