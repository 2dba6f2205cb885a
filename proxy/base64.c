/* base64.c - RFC 4648 base64, strict on the way in (see base64.h). */
#include <stdint.h>

#include "proxy/base64.h"
#include "proxy/sbuf.h"

static const char ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_len(size_t n)
{
	return (n / 3 + (n % 3 != 0)) * 4;
}

int base64_encode(struct sbuf *out, const void *in, size_t n)
{
	const unsigned char *p = in;
	size_t i;
	char q[4];

	if (base64_len(n) > out->limit - out->len)
		return -1;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		q[0] = ALPHABET[v >> 18];
		q[1] = ALPHABET[(v >> 12) & 63];
		q[2] = ALPHABET[(v >> 6) & 63];
		q[3] = ALPHABET[v & 63];
		(void)sbuf_add(out, q, 4);	/* room checked above */
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		q[0] = ALPHABET[v >> 18];
		q[1] = ALPHABET[(v >> 12) & 63];
		q[2] = i + 1 < n ? ALPHABET[(v >> 6) & 63] : '=';
		q[3] = '=';
		(void)sbuf_add(out, q, 4);
	}
	return 0;
}

/* sextet - the value of base64 character c, or -1 */
static int sextet(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(struct sbuf *out, const char *in, size_t n)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t start = out->len, pad = 0, i;

	if (n % 4 != 0)
		return -1;
	if (n > 0 && p[n - 1] == '=')
		pad = p[n - 2] == '=' ? 2 : 1;
	if (n / 4 * 3 - pad > out->limit - out->len)
		return -1;
	for (i = 0; i < n; i += 4) {
		int a = sextet(p[i]), b = sextet(p[i + 1]), c, d;
		int last = i + 4 == n;
		unsigned char o[3];
		uint32_t v;

		c = last && pad == 2 ? 0 : sextet(p[i + 2]);
		d = last && pad >= 1 ? 0 : sextet(p[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			goto bad;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		o[0] = (unsigned char)(v >> 16);
		o[1] = (unsigned char)(v >> 8);
		o[2] = (unsigned char)v;
		/* the bits past the last byte are zero in the one encoding */
		if ((last && pad == 2 && (b & 15) != 0) || (last && pad == 1 && (c & 3) != 0))
			goto bad;
		(void)sbuf_add(out, o, last ? 3 - pad : 3);	/* room checked above */
	}
	return 0;
bad:
	out->len = start;
	if (out->data != NULL)
		out->data[start] = '\0';
	return -1;
}
