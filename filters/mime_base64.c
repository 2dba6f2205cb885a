/* mime_base64.c - tolerant base64 decoding of MIME part contents, quartet
 * by quartet as Thunderbird decodes (mime_base64.h). */
#include <string.h>

#include "filters/mime_base64.h"

/* rank - the value of a base64 character, 64 for '=', -1 for any other
 * byte (skipped) */
static int rank(unsigned char c)
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
	return c == '=' ? 64 : -1;
}

void mime_base64_init(struct mime_base64 *d)
{
	memset(d, 0, sizeof(*d));
}

/* quartet - the bytes of n (1..4) quartet values, '=' counting as zero
 * bits: 3 less one per '=' (none for three or more), or for a quartet cut
 * short (n < 4), the whole bytes its characters before any '=' hold */
static size_t quartet(const unsigned char *q, unsigned n, unsigned char *out)
{
	unsigned long num = 0;
	unsigned eq = 0, lead = 0, k;
	size_t len;

	for (k = 0; k < 4; k++) {
		unsigned v = k < n ? q[k] : 64;

		if (v == 64) {
			eq += k < n;
			v = 0;
		} else if (eq == 0)
			lead++;
		num = num << 6 | v;
	}
	if (n < 4)
		len = lead >= 2 ? lead - 1 : 0;
	else
		len = eq >= 3 ? 0 : 3 - eq;
	out[0] = (unsigned char)(num >> 16);
	out[1] = (unsigned char)(num >> 8);
	out[2] = (unsigned char)num;
	return len;
}

size_t mime_base64_step(struct mime_base64 *d, const char *in, size_t n, unsigned char *out)
{
	size_t w = 0;

	for (size_t i = 0; i < n; i++) {
		int v = rank((unsigned char)in[i]);
		unsigned char tmp[3];
		size_t k;

		if (v < 0)
			continue;
		d->q[d->nq++] = (unsigned char)v;
		if (d->nq < 4)
			continue;
		k = quartet(d->q, 4, tmp);
		memcpy(out + w, tmp, k);
		w += k;
		d->nq = 0;
	}
	return w;
}

size_t mime_base64_finish(struct mime_base64 *d, unsigned char *out)
{
	unsigned char tmp[3];
	size_t k = d->nq > 0 ? quartet(d->q, d->nq, tmp) : 0;

	memcpy(out, tmp, k);
	mime_base64_init(d);
	return k;
}
