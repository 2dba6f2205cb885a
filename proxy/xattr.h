/* xattr.h - one value of an XCLIENT or XFORWARD attribute, as mailwarden
 * sends it to the next hop: xtext (RFC 3461), within the length the next
 * hop takes.
 *
 * Postfix (smtpd.c, xclient_cmd and xforward_cmd; 3.7.11 tested) refuses
 * any attribute value of more than 255 octets of xtext, counted before it
 * decodes it: "501 5.5.4 Error: attribute value too long".  A refused
 * XCLIENT or XFORWARD tempfails the transaction, so a client whose HELO
 * name (or login) encodes longer would be tempfailed on every retry until
 * its mail bounces.  Such a value goes as [UNAVAILABLE] instead, which both
 * commands accept for every attribute. */
#ifndef MW_XATTR_H
#define MW_XATTR_H

#include <stddef.h>

#define XATTR_VALUE_MAX   255               /* octets of xtext, as Postfix */
#define XATTR_UNAVAILABLE "[UNAVAILABLE]"

/* xattr_xtext_len - the octets of xtext that value (NUL-terminated,
 * borrowed) encodes to: 3 for each octet outside "!".."~" and for "+" and
 * "=", 1 for any other. */
size_t xattr_xtext_len(const char *value);

/* xattr_encode - value as xtext into out[outsz], NUL-terminated.  Returns
 * the length written, or -1 when the xtext would be longer than
 * XATTR_VALUE_MAX or than out holds: out is then XATTR_UNAVAILABLE (when
 * it fits, else "").  Never writes half a value. */
int xattr_encode(const char *value, char *out, size_t outsz);

/* xattr_name_ok - name (NUL-terminated, borrowed) is one Postfix takes
 * as XCLIENT or XFORWARD NAME: its valid_hostname() (util/
 * valid_hostname.c) and, for XCLIENT, not an address.  Labels of letters,
 * digits, "_" and inner "-", 1 to 63 octets, single dots between them,
 * 255 octets in all, the last label not all digits (which also refuses
 * every IPv4 address; an IPv6 one has ":").  Postfix answers any other
 * NAME with "501 5.5.4 Bad NAME syntax", which tempfailed the client's
 * every transaction for good: such a NAME (a trusted XFORWARD peer's
 * "-bad.example", "a..b.example", a 64-octet label) goes as
 * XATTR_UNAVAILABLE.  1 if it passes, 0 if not. */
int xattr_name_ok(const char *name);

#endif
