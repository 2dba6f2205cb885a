/* xattr.c - XCLIENT/XFORWARD attribute values for the next hop.  See
 * xattr.h for the limit and why a value over it is not cut. */
#include <stdio.h>
#include <string.h>

#include "xattr.h"

#define XATTR_LABEL_MAX 63    /* RFC 1035 2.3.4, Postfix VALID_LABEL_LEN */
#define XATTR_NAME_MAX  255   /* Postfix VALID_HOSTNAME_LEN */

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

static int is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

/* label_ok - a label that ended is fit: len octets, 1 to 63, the last
 * one not a hyphen (hyphen_last) */
static int label_ok(size_t len, int hyphen_last)
{
	return len >= 1 && len <= XATTR_LABEL_MAX && !hyphen_last;
}

int xattr_name_ok(const char *name)
{
	size_t len = 0, total = 0;
	int hyphen_last = 0, digits_only = 1;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++, total++) {
		if (*p == '.') {
			if (!label_ok(len, hyphen_last)) return 0;       /* "..", ".a", "a-." */
			len = 0;
			hyphen_last = 0;
			digits_only = 1;
			continue;
		}
		if (*p == '-') {
			if (len == 0) return 0;                          /* "-a" */
		} else if (!is_digit(*p) && !((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') && *p != '_') {
			return 0;                                        /* ASCII, whatever the locale */
		} else if (!is_digit(*p)) {
			digits_only = 0;
		}
		hyphen_last = *p == '-';
		len++;
	}
	return total > 0 && total <= XATTR_NAME_MAX && label_ok(len, hyphen_last) && !digits_only;
}
