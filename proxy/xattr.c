/* xattr.c - XCLIENT/XFORWARD attribute values for the next hop.  See
 * xattr.h for the limit and why a value over it is not cut. */
#include <stdio.h>
#include <string.h>

#include "xattr.h"

/* needs_hex - RFC 3461: xchar is "!".."~" except "+" and "=" */
static int needs_hex(unsigned char ch)
{
	return ch < 33 || ch > 126 || ch == '+' || ch == '=';
}

size_t xattr_xtext_len(const char *value)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		n += needs_hex(*p) ? 3 : 1;
	return n;
}

int xattr_encode(const char *value, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = xattr_xtext_len(value), o = 0;

	if (outsz == 0) return -1;
	if (len > XATTR_VALUE_MAX || len >= outsz) {
		snprintf(out, outsz, "%s", sizeof XATTR_UNAVAILABLE <= outsz ? XATTR_UNAVAILABLE : "");
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (needs_hex(*p)) {
			out[o++] = '+';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	return (int)o;
}
