/* textenc.c - yEnc and BinHex 4.0 decoders (textenc.h). */
#include <string.h>

#include <gmime/gmime.h>

#include "filters/textenc.h"

size_t uu_begin(const char *line, size_t n)
{
	size_t k = 6;

	if (n < 12 || memcmp(line, "begin ", 6) != 0)
		return 0;
	while (k < n && line[k] >= '0' && line[k] <= '7')
		k++;
	return k < 9 || k > 10 || line[k] != ' ' ? 0 : k + 1;
}

const char *uu_end(const char *p, const char *end)
{
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);

		if ((n >= 3 && memcmp(p, "end", 3) == 0 && (n == 3 || (n == 4 && p[3] == '\r'))) ||
		    (n >= 6 && memcmp(p, "begin ", 6) == 0))
			return p;
		p = nl != NULL ? nl + 1 : end;
	}
	return end;
}

size_t uu_decode(const char *d, size_t n, unsigned char *out)
{
	int state = GMIME_UUDECODE_STATE_BEGIN;
	guint32 save = 0;

	return g_mime_encoding_uudecode_step((const unsigned char *)d, n, out, &state, &save);
}

size_t yenc_data(const char *d, const char *end, unsigned char *out, const char **after)
{
	size_t len = 0;

	while (d < end) {
		const char *dl = memchr(d, '\n', (size_t)(end - d));
		const char *dnext = dl != NULL ? dl + 1 : end;

		if (dnext - d >= 5 && memcmp(d, "=yend", 5) == 0) {
			d = dnext;
			break;
		}
		if (!(dnext - d >= 6 && memcmp(d, "=ypart", 6) == 0))
			for (const char *c = d; c < dnext; c++) {
				if (*c == '\r' || *c == '\n')
					continue;
				if (*c == '=') {
					if (c + 1 >= dnext || c[1] == '\r' || c[1] == '\n')
						continue;
					c++;
					out[len++] = (unsigned char)((unsigned char)*c - 64 - 42);
				} else
					out[len++] = (unsigned char)((unsigned char)*c - 42);
			}
		d = dnext;
	}
	*after = d;
	return len;
}

static const char hqx_alphabet[] =
    "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

/* hqx_raw - the next byte of the six-bit decoding, or -1 at the end */
static int hqx_raw(struct hqx *h)
{
	while (h->nbits < 8) {
		const char *c;

		if (h->done || h->p >= h->end) {
			h->done = 1;
			return -1;
		}
		if (*h->p == '\r' || *h->p == '\n' || *h->p == ' ' || *h->p == '\t') {
			h->p++;
			continue;
		}
		if (*h->p == ':') {
			h->done = 1;
			return -1;
		}
		if (*h->p == '\0' || (c = strchr(hqx_alphabet, *h->p)) == NULL) {
			h->bad = h->done = 1;
			return -1;
		}
		h->p++;
		h->bits = (h->bits << 6) | (uint32_t)(c - hqx_alphabet);
		h->nbits += 6;
	}
	h->nbits -= 8;
	return (int)((h->bits >> h->nbits) & 0xff);
}

/* hqx_byte - the next byte after run-length decoding ("c 0x90 n": c n
 * times in all; "0x90 0": 0x90 itself), or -1 at the end */
static int hqx_byte(struct hqx *h)
{
	for (;;) {
		int b, n;

		if (h->rep > 0) {
			h->rep--;
			return h->last;
		}
		if ((b = hqx_raw(h)) < 0)
			return -1;
		if (b != 0x90)
			return h->last = b;
		if ((n = hqx_raw(h)) < 0)
			return -1;
		if (n == 0)
			return h->last = 0x90;
		if (h->last < 0) {           /* a run of nothing */
			h->bad = 1;
			return -1;
		}
		/* c was given once already: n - 1 more (none for n == 1) */
		h->rep = (unsigned)n - 1;
	}
}

size_t hqx_read(struct hqx *h, unsigned char *out, size_t max)
{
	size_t n = 0;
	int b;

	while (n < max && (b = hqx_byte(h)) >= 0)
		out[n++] = (unsigned char)b;
	return n;
}

/* crc_xmodem - BinHex's CRC (CCITT, 0x1021, from 0) */
static unsigned crc_xmodem(const unsigned char *d, size_t n)
{
	unsigned crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (unsigned)d[i] << 8;
		for (int k = 0; k < 8; k++)
			crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
	}
	return crc;
}

enum binhex_header_result binhex_header(struct hqx *h, char name[64], uint32_t *data_len)
{
	unsigned char hdr[1 + 63 + 1 + 4 + 4 + 2 + 4 + 4 + 2];
	size_t nlen, hlen;

	name[0] = '\0';
	*data_len = 0;
	if (hqx_read(h, hdr, 1) < 1 || (nlen = hdr[0]) < 1 || nlen > 63)
		return BINHEX_MALFORMED;
	hlen = 1 + nlen + 1 + 4 + 4 + 2 + 4 + 4;
	if (hqx_read(h, hdr + 1, hlen + 2 - 1) < hlen + 2 - 1)
		return BINHEX_CUT;
	memcpy(name, hdr + 1, nlen);
	name[nlen] = '\0';
	*data_len = (uint32_t)hdr[1 + nlen + 11] << 24 | (uint32_t)hdr[1 + nlen + 12] << 16 |
	    (uint32_t)hdr[1 + nlen + 13] << 8 | hdr[1 + nlen + 14];
	if (crc_xmodem(hdr, hlen) != ((unsigned)hdr[hlen] << 8 | hdr[hlen + 1]))
		return BINHEX_CRC;
	return BINHEX_OK;
}

const unsigned char *binhex_next(const unsigned char *b, const unsigned char *end,
                                 const unsigned char **at, int typed)
{
	const size_t marklen = sizeof(HQX_MARK) - 1;

	while (*at < end) {
		const unsigned char *mark = memmem(*at, (size_t)(end - *at), HQX_MARK, marklen);
		const unsigned char *q, *lim, *close;

		if (mark == NULL && !(typed && *at == b))
			return NULL;
		/* the data: the first line starting with ':' in the next KiB
		 * (a text only quoting the sentence has none) */
		q = mark != NULL ? mark + marklen : b;
		lim = end - q > 1024 ? q + 1024 : end;
		for (; q < lim; q++)
			if (*q == ':' && (q == b || q[-1] == '\n'))
				break;
		if (q >= lim) {
			if (mark == NULL)
				return NULL;
			*at = mark + marklen;
			continue;
		}
		close = memchr(q + 1, ':', (size_t)(end - q - 1));
		*at = close != NULL ? close + 1 : end;
		return q;
	}
	return NULL;
}
