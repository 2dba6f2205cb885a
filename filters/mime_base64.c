/* mime_base64.c - tolerant base64 decoding of MIME part contents, quartet
 * by quartet as Thunderbird decodes, a last quartet cut short as GMime
 * does (mime_base64.h).
 *
 * Table-driven, with a fast path for what nearly every content is (runs
 * of four alphabet characters without '='): one lookup per character and
 * one test per quartet; everything else goes a character at a time. */
#include <string.h>

#include "filters/mime_base64.h"

/* code - a character's value plus one (1..64), PAD for '=', and 0 (the
 * default) for any other byte, which is skipped */
#define PAD 65

static const unsigned char code[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
	['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
	['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
	['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
	['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
	['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
	['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
	['='] = 65,
};

void mime_base64_init(struct mime_base64 *d)
{
	memset(d, 0, sizeof(*d));
}

/* quartet - the bytes of four characters (their codes in v, PAD for
 * '=', which counts as zero bits), as mime_decode_base64_token: 3 bytes,
 * 2 with one '=' anywhere in it, 1 with two or more (three or four too:
 * "x===" gives x << 2, "====" a NUL byte) */
static size_t quartet(const unsigned char v[4], unsigned char *out)
{
	unsigned long num = 0;
	unsigned eq = 0;

	for (int k = 0; k < 4; k++) {
		if (v[k] == PAD)
			eq++;
		num = num << 6 | (v[k] == PAD ? 0u : v[k] - 1u);
	}
	out[0] = (unsigned char)(num >> 16);
	out[1] = (unsigned char)(num >> 8);
	out[2] = (unsigned char)num;
	return eq == 0 ? 3 : eq == 1 ? 2 : 1;
}

size_t mime_base64_step(struct mime_base64 *d, const char *in, size_t n, unsigned char *out)
{
	const unsigned char *s = (const unsigned char *)in, *end = s + n;
	unsigned char *o = out;

	while (s < end) {
		unsigned char v;

		if (d->nq == 0) {
			/* the fast path: whole quartets of alphabet characters */
			while (end - s >= 4) {
				/* 0 (skipped) wraps to the largest value */
				unsigned a = code[s[0]] - 1u, b = code[s[1]] - 1u, c = code[s[2]] - 1u,
				         e = code[s[3]] - 1u;
				unsigned long num;

				if ((a | b | c | e) >= 64)
					break;
				num = (unsigned long)a << 18 | (unsigned long)b << 12 | c << 6 | e;
				o[0] = (unsigned char)(num >> 16);
				o[1] = (unsigned char)(num >> 8);
				o[2] = (unsigned char)num;
				o += 3;
				s += 4;
			}
			if (s == end)
				break;
		}
		/* one character: skipped, or into the quartet being read */
		if ((v = code[*s++]) == 0)
			continue;
		d->q[d->nq] = (unsigned char)s[-1];
		d->v[d->nq++] = v;
		if (d->nq == 4) {
			o += quartet(d->v, o);
			d->nq = 0;
		}
	}
	return (size_t)(o - out);
}

size_t mime_base64_finish(struct mime_base64 *d, unsigned char *out, unsigned char *tb, size_t *tb_len)
{
	unsigned long num = 0;
	unsigned k = 0;
	size_t n;

	/* GMime's decoder (and Python's) takes the bits of the characters up
	 * to the first '=' and writes the whole bytes they make: "Yg" gives
	 * "b", a single character nothing */
	while (k < d->nq && d->v[k] != PAD)
		num = num << 6 | (d->v[k++] - 1u);
	n = k * 6 / 8;
	num >>= k * 6 - n * 8;
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(num >> (8 * (n - 1 - i)));
	/* Thunderbird (MimeDecoderDestroy) writes the characters as they
	 * are, made four with '=', unless the first is '=': it saves "Yg"
	 * at the end of a part as the bytes "Yg==".  Given apart: the
	 * antivirus scans that save too */
	*tb_len = 0;
	if (d->nq > 0 && d->q[0] != '=') {
		memcpy(tb, d->q, d->nq);
		memset(tb + d->nq, '=', 4 - d->nq);
		*tb_len = 4;
	}
	mime_base64_init(d);
	return n;
}
