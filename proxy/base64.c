/* base64.c - RFC 4648 base64 through OpenSSL's EVP_EncodeBlock and
 * EVP_DecodeBlock, strict on the way in (see base64.h): EVP_DecodeBlock
 * skips surrounding whitespace, ignores the unused bits of the last
 * character and counts the padding as bytes, so the input is taken only
 * when it is the very text EVP_EncodeBlock writes for what it decodes to. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "proxy/base64.h"
#include "proxy/sbuf.h"

size_t base64_len(size_t n)
{
	return (n / 3 + (n % 3 != 0)) * 4;
}

int base64_encode(struct sbuf *out, const void *in, size_t n)
{
	size_t len = base64_len(n);
	unsigned char *q;
	int rc;

	if (len > out->limit - out->len || n > (size_t)INT32_MAX / 2)
		return -1;
	q = xmalloc(len + 1);
	(void)EVP_EncodeBlock(q, in, (int)n);
	rc = sbuf_add(out, q, len);
	free(q);
	return rc;
}

int base64_decode(struct sbuf *out, const char *in, size_t n)
{
	size_t pad, len;
	unsigned char *bytes, *again;
	int got, rc = -1;

	if (n % 4 != 0 || n > (size_t)INT32_MAX / 2)
		return -1;
	if (n == 0)
		return 0;
	pad = in[n - 1] == '=' ? (in[n - 2] == '=' ? 2 : 1) : 0;
	len = n / 4 * 3 - pad;
	if (len > out->limit - out->len)
		return -1;
	bytes = xmalloc(n / 4 * 3 + 1);
	again = xmalloc(n + 1);
	got = EVP_DecodeBlock(bytes, (const unsigned char *)in, (int)n);
	/* the one encoding of those bytes, byte for byte: no whitespace, no
	 * '=' but at the end, the unused bits zero */
	if (got == (int)(n / 4 * 3) && EVP_EncodeBlock(again, bytes, (int)len) == (int)n
	    && memcmp(again, in, n) == 0)
		rc = sbuf_add(out, bytes, len);
	free(bytes);
	free(again);
	return rc;
}
