/* pgp_packet.c - the literal data of an opaque OpenPGP signed message
 * (pgp_packet.h).
 *
 * Why: libclamav (1.4.6), clamd and clamscan see a gpg --sign message as
 * opaque data (its literal data is deflated, and base64 again when
 * armored), so a virus signed that way passed every filter while the
 * recipient's program shows the file.  Nothing here needs a key: only
 * encrypted messages are unreadable, and those are left alone.
 *
 * Strictness: a message this reader cannot follow is refused (malformed
 * or a limit), which the callers treat as unchecked, not as clean. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bzlib.h>
#include <zlib.h>

#include "filters/pgp_packet.h"

static const char begin_line[] = "-----BEGIN PGP MESSAGE-----";
static const char end_line[] = "-----END PGP MESSAGE-----";

/* one reading: the bounds shared by all levels */
struct rd {
	size_t   max;            /* one stream's output, and the literal data */
	uint64_t inflated;       /* decompressed so far, all levels */
	uint64_t input;          /* bytes of the message as given */
	unsigned packets;
	int      encrypted;      /* an encrypted packet was met */
	struct pgp_literal *out;
	int      have_literal;
	char    *why;
	size_t   whylen;
};

static enum pgp_result fail(struct rd *r, enum pgp_result res, const char *why)
{
	snprintf(r->why, r->whylen, "%s", why);
	return res;
}

/* --- armor --------------------------------------------------------------- */

static int line_is(const unsigned char *d, size_t n, size_t at, const char *s)
{
	size_t k = strlen(s);

	return n - at >= k && memcmp(d + at, s, k) == 0;
}

int pgp_armor_find(const unsigned char *d, size_t n, size_t *pos, size_t *start, size_t *len)
{
	size_t i = *pos;

	while (i < n) {
		const unsigned char *hit = memmem(d + i, n - i, begin_line, sizeof(begin_line) - 1);
		size_t at, e;

		if (hit == NULL)
			break;
		at = (size_t)(hit - d);
		i = at + sizeof(begin_line) - 1;
		if (at > 0 && d[at - 1] != '\n')
			continue;            /* not at a line start: quoted, or in text */
		for (e = i; e < n; e++) {
			if ((e == 0 || d[e - 1] == '\n') && line_is(d, n, e, end_line)) {
				e += sizeof(end_line) - 1;
				break;
			}
		}
		if (e > n)
			e = n;
		*start = at;
		*len = e - at;
		*pos = e;
		return 1;
	}
	*pos = n;
	return 0;
}

static int b64val(unsigned char c)
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

static uint32_t crc24(const unsigned char *d, size_t n)
{
	uint32_t crc = 0xB704CEu;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint32_t)d[i] << 16;
		for (int k = 0; k < 8; k++) {
			crc <<= 1;
			if (crc & 0x1000000u)
				crc ^= 0x1864CFBu;
		}
	}
	return crc & 0xFFFFFFu;
}

/* next_line - [*at, end of line) without its CR LF; 0 at the end */
static int next_line(const unsigned char *d, size_t n, size_t *at, size_t *ls, size_t *le)
{
	const unsigned char *nl;

	if (*at >= n)
		return 0;
	*ls = *at;
	nl = memchr(d + *at, '\n', n - *at);
	*le = nl ? (size_t)(nl - d) : n;
	*at = nl ? *le + 1 : n;
	while (*le > *ls && (d[*le - 1] == '\r' || d[*le - 1] == ' ' || d[*le - 1] == '\t'))
		(*le)--;
	return 1;
}

/* dearmor - the binary packets of an armored block, in a new buffer */
static enum pgp_result dearmor(struct rd *r, const unsigned char *d, size_t n, unsigned char **bin,
                               size_t *binlen)
{
	size_t at = 0, ls, le, o = 0;
	unsigned char *b;
	uint32_t acc = 0;
	int bits = 0, headers = 1, ended = 0, pad = 0;
	long crc = -1;

	if (!next_line(d, n, &at, &ls, &le) || le - ls != sizeof(begin_line) - 1 ||
	    memcmp(d + ls, begin_line, le - ls) != 0)
		return fail(r, PGP_MALFORMED, "no armor header line");
	if ((b = malloc(n / 4 * 3 + 3)) == NULL)
		return fail(r, PGP_LIMIT, "out of memory");
	while (next_line(d, n, &at, &ls, &le)) {
		if (headers) {
			/* "Key: value" lines, then an empty one; gpg takes a
			 * block without them too */
			const unsigned char *colon = memchr(d + ls, ':', le - ls);

			if (le == ls) {
				headers = 0;
				continue;
			}
			if (colon != NULL && (size_t)(colon - d) + 1 < le && colon[1] == ' ')
				continue;
			headers = 0;
		}
		if (line_is(d, le, ls, end_line)) {
			ended = 1;
			break;
		}
		if (le > ls && d[ls] == '=' && le - ls == 5) {
			unsigned char c[3];
			int v[4];

			for (int k = 0; k < 4; k++)
				if ((v[k] = b64val(d[ls + 1 + k])) < 0)
					goto bad;
			c[0] = (unsigned char)(v[0] << 2 | v[1] >> 4);
			c[1] = (unsigned char)(v[1] << 4 | v[2] >> 2);
			c[2] = (unsigned char)(v[2] << 6 | v[3]);
			crc = (long)c[0] << 16 | (long)c[1] << 8 | c[2];
			continue;
		}
		if (crc >= 0)
			goto bad;            /* data after the checksum */
		for (size_t i = ls; i < le; i++) {
			int v;

			if (d[i] == '=') {
				pad++;
				continue;
			}
			if (pad || (v = b64val(d[i])) < 0)
				goto bad;
			acc = acc << 6 | (uint32_t)v;
			if ((bits += 6) >= 8) {
				bits -= 8;
				b[o++] = (unsigned char)(acc >> bits);
			}
		}
	}
	if (!ended) {
		free(b);
		return fail(r, PGP_MALFORMED, "armor without its END line");
	}
	if (crc >= 0 && (uint32_t)crc != crc24(b, o)) {
		free(b);
		return fail(r, PGP_MALFORMED, "armor checksum mismatch");
	}
	*bin = b;
	*binlen = o;
	return PGP_LITERAL;
bad:
	free(b);
	return fail(r, PGP_MALFORMED, "bad base64 in the armor");
}

/* --- packets ------------------------------------------------------------- */

struct pkt {
	unsigned tag;
	int      partial;        /* its body came in partial lengths */
	const unsigned char *body;   /* contiguous: d itself or *owned */
	size_t   len;
	unsigned char *owned;    /* reassembled partial body, or NULL */
};

/* body_len - a new-format length at d[*i]: 0 and *len, 1 for a partial
 * length (*len that chunk), -1 when truncated */
static int new_len(const unsigned char *d, size_t n, size_t *i, size_t *len)
{
	unsigned o;

	if (*i >= n)
		return -1;
	o = d[(*i)++];
	if (o < 192) {
		*len = o;
		return 0;
	}
	if (o < 224) {
		if (*i >= n)
			return -1;
		*len = ((size_t)(o - 192) << 8) + d[(*i)++] + 192;
		return 0;
	}
	if (o == 255) {
		if (n - *i < 4)
			return -1;
		*len = (size_t)d[*i] << 24 | (size_t)d[*i + 1] << 16 | (size_t)d[*i + 2] << 8 | d[*i + 3];
		*i += 4;
		return 0;
	}
	*len = (size_t)1 << (o & 0x1f);
	return 1;
}

static int data_tag(unsigned tag)
{
	return tag == 8 || tag == 9 || tag == 11 || tag == 18 || tag == 20;
}

/* next_packet - the packet at d[*i]; 1, 0 at the end, -1 malformed */
static int next_packet(const unsigned char *d, size_t n, size_t *i, struct pkt *p)
{
	unsigned ctb;
	size_t len = 0;

	memset(p, 0, sizeof(*p));
	if (*i >= n)
		return 0;
	ctb = d[(*i)++];
	if (!(ctb & 0x80))
		return -1;
	if (ctb & 0x40) {
		int part;

		p->tag = ctb & 0x3f;
		if ((part = new_len(d, n, i, &len)) < 0)
			return -1;
		if (part) {
			/* partial chunks joined; their total is below n */
			size_t o = 0;

			if (!data_tag(p->tag))
				return -1;
			if ((p->owned = malloc(n - *i + 1)) == NULL)
				return -1;
			for (;;) {
				if (len > n - *i) {
					free(p->owned);
					p->owned = NULL;
					return -1;
				}
				memcpy(p->owned + o, d + *i, len);
				o += len;
				*i += len;
				if (!part)
					break;
				if ((part = new_len(d, n, i, &len)) < 0) {
					free(p->owned);
					p->owned = NULL;
					return -1;
				}
			}
			p->partial = 1;
			p->body = p->owned;
			p->len = o;
			return 1;
		}
	} else {
		unsigned lt = ctb & 3, k = lt == 0 ? 1 : lt == 1 ? 2 : lt == 2 ? 4 : 0;

		p->tag = (ctb >> 2) & 0x0f;
		if (lt == 3) {
			len = n - *i;        /* indeterminate: to the end */
		} else {
			if (n - *i < k)
				return -1;
			for (unsigned j = 0; j < k; j++)
				len = len << 8 | d[*i + j];
			*i += k;
		}
	}
	if (len > n - *i)
		return -1;
	p->body = d + *i;
	p->len = len;
	*i += len;
	return 1;
}

/* grow - out made room for want more bytes, within cap */
static int grow(unsigned char **out, size_t *cap, size_t used, size_t want, size_t limit)
{
	size_t nc;
	unsigned char *q;

	if (*cap - used >= want)
		return 0;
	nc = *cap ? *cap : 65536;
	while (nc - used < want)
		nc *= 2;
	if (nc > limit + 1)
		nc = limit + 1;
	if (nc - used < want && nc <= *cap)
		return -1;
	if ((q = realloc(*out, nc)) == NULL)
		return -1;
	*out = q;
	*cap = nc;
	return 0;
}

/* bounded - the bounds after got more decompressed bytes: 0 or a result */
static enum pgp_result bounded(struct rd *r, size_t stream)
{
	if (stream > r->max)
		return fail(r, PGP_LIMIT, "decompressed data over the scan size limit");
	if (r->inflated > 2 * (uint64_t)r->max)
		return fail(r, PGP_LIMIT, "decompressed data over twice the scan size limit");
	if (r->inflated > PGP_RATIO_FLOOR && r->inflated > (uint64_t)PGP_MAX_RATIO * r->input)
		return fail(r, PGP_LIMIT, "compression ratio over 1000:1");
	return PGP_LITERAL;
}

#define CHUNK 65536

static enum pgp_result inflate_body(struct rd *r, const unsigned char *in, size_t n, int raw,
                                    unsigned char **out, size_t *outlen)
{
	z_stream z;
	size_t cap = 0, used = 0;
	enum pgp_result res = PGP_LITERAL;
	int zr = Z_OK;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, raw ? -15 : 15) != Z_OK)
		return fail(r, PGP_LIMIT, "out of memory");
	*out = NULL;
	z.next_in = (unsigned char *)(uintptr_t)in;
	while (zr != Z_STREAM_END) {
		size_t before;

		if (grow(out, &cap, used, 1, r->max) < 0) {
			res = used >= r->max ? fail(r, PGP_LIMIT, "decompressed data over the scan size limit")
			                     : fail(r, PGP_LIMIT, "out of memory");
			break;
		}
		/* zlib counts in uInt: fed and drained in bounded steps */
		z.avail_in = n - (size_t)(z.next_in - in) > CHUNK ? CHUNK : (uInt)(n - (size_t)(z.next_in - in));
		z.next_out = *out + used;
		z.avail_out = cap - used > CHUNK ? CHUNK : (uInt)(cap - used);
		before = z.avail_out;
		zr = inflate(&z, Z_NO_FLUSH);
		used += before - z.avail_out;
		r->inflated += before - z.avail_out;
		if (zr != Z_OK && zr != Z_STREAM_END) {
			res = fail(r, PGP_MALFORMED, zr == Z_BUF_ERROR ? "compressed data truncated"
			                                               : "compressed data corrupt");
			break;
		}
		if ((res = bounded(r, used)) != PGP_LITERAL)
			break;
	}
	inflateEnd(&z);
	if (res != PGP_LITERAL) {
		free(*out);
		*out = NULL;
		return res;
	}
	*outlen = used;
	return PGP_LITERAL;
}

static enum pgp_result bunzip_body(struct rd *r, const unsigned char *in, size_t n,
                                   unsigned char **out, size_t *outlen)
{
	bz_stream z;
	size_t cap = 0, used = 0;
	enum pgp_result res = PGP_LITERAL;
	int br = BZ_OK;

	memset(&z, 0, sizeof(z));
	if (BZ2_bzDecompressInit(&z, 0, 0) != BZ_OK)
		return fail(r, PGP_LIMIT, "out of memory");
	*out = NULL;
	z.next_in = (char *)(uintptr_t)in;
	while (br != BZ_STREAM_END) {
		size_t before, fed = (size_t)((const unsigned char *)z.next_in - in);

		if (grow(out, &cap, used, 1, r->max) < 0) {
			res = used >= r->max ? fail(r, PGP_LIMIT, "decompressed data over the scan size limit")
			                     : fail(r, PGP_LIMIT, "out of memory");
			break;
		}
		z.avail_in = n - fed > CHUNK ? CHUNK : (unsigned)(n - fed);
		z.next_out = (char *)*out + used;
		z.avail_out = cap - used > CHUNK ? CHUNK : (unsigned)(cap - used);
		before = z.avail_out;
		br = BZ2_bzDecompress(&z);
		used += before - z.avail_out;
		r->inflated += before - z.avail_out;
		if (br != BZ_OK && br != BZ_STREAM_END) {
			res = fail(r, PGP_MALFORMED, "bzip2 data corrupt");
			break;
		}
		if (br == BZ_OK && z.avail_in == 0 && before == z.avail_out &&
		    (size_t)((const unsigned char *)z.next_in - in) >= n) {
			res = fail(r, PGP_MALFORMED, "compressed data truncated");
			break;
		}
		if ((res = bounded(r, used)) != PGP_LITERAL)
			break;
	}
	BZ2_bzDecompressEnd(&z);
	if (res != PGP_LITERAL) {
		free(*out);
		*out = NULL;
		return res;
	}
	*outlen = used;
	return PGP_LITERAL;
}

static enum pgp_result literal(struct rd *r, const unsigned char *b, size_t n)
{
	size_t nl;

	if (r->have_literal)
		return fail(r, PGP_MALFORMED, "more than one literal data packet");
	if (n < 6 || (nl = b[1]) > n - 6)
		return fail(r, PGP_MALFORMED, "literal data packet truncated");
	if (n - 6 - nl > r->max)
		return fail(r, PGP_LIMIT, "literal data over the scan size limit");
	r->out->format = (char)b[0];
	memcpy(r->out->name, b + 2, nl);
	r->out->name[nl] = '\0';
	if ((r->out->data = malloc(n - 6 - nl + 1)) == NULL)
		return fail(r, PGP_LIMIT, "out of memory");
	memcpy(r->out->data, b + 6 + nl, n - 6 - nl);
	r->out->len = n - 6 - nl;
	r->out->data[r->out->len] = '\0';
	r->have_literal = 1;
	return PGP_LITERAL;
}

static int encrypted_tag(unsigned tag)
{
	return tag == 1 || tag == 3 || tag == 9 || tag == 18 || tag == 20;
}

/* packets - the packets of d at depth (0: the message itself) */
static enum pgp_result packets(struct rd *r, const unsigned char *d, size_t n, unsigned depth)
{
	size_t i = 0;
	int first = 1, rc;
	struct pkt p;
	enum pgp_result res = PGP_LITERAL;

	/* session keys then encrypted data: a message no key-less reader
	 * opens, whatever follows (even cut short, or only sketched, as in
	 * a test message) */
	if (depth == 0 && n > 0 && (d[0] & 0x80) &&
	    encrypted_tag(d[0] & 0x40 ? d[0] & 0x3fu : (d[0] >> 2) & 0x0fu))
		return PGP_ENCRYPTED;
	while ((rc = next_packet(d, n, &i, &p)) > 0) {
		if (++r->packets > PGP_MAX_PACKETS) {
			res = fail(r, PGP_LIMIT, "more than 10000 packets");
			break;
		}
		if (encrypted_tag(p.tag)) {
			r->encrypted = 1;
		} else if (p.tag == 8) {
			unsigned char *out = NULL;
			size_t outlen = 0;

			if (depth + 1 > PGP_MAX_DEPTH) {
				res = fail(r, PGP_LIMIT, "compressed packets nested more than 4 deep");
			} else if (p.len < 1) {
				res = fail(r, PGP_MALFORMED, "compressed data packet empty");
			} else if (p.body[0] == 0) {
				res = packets(r, p.body + 1, p.len - 1, depth + 1);
			} else if (p.body[0] == 1 || p.body[0] == 2) {
				res = inflate_body(r, p.body + 1, p.len - 1, p.body[0] == 1, &out, &outlen);
			} else if (p.body[0] == 3) {
				res = bunzip_body(r, p.body + 1, p.len - 1, &out, &outlen);
			} else {
				res = fail(r, PGP_MALFORMED, "unknown compression algorithm");
			}
			if (out != NULL) {
				res = packets(r, out, outlen, depth + 1);
				free(out);
			}
		} else if (p.tag == 11) {
			res = literal(r, p.body, p.len);
		} else if (p.tag != 2 && p.tag != 4 && p.tag != 10 && p.tag != 21) {
			/* keys, user IDs ...: no message of this kind */
			char why[64];

			snprintf(why, sizeof(why), "unexpected packet (tag %u)", p.tag);
			res = fail(r, PGP_MALFORMED, why);
		}
		free(p.owned);
		first = 0;
		if (res != PGP_LITERAL)
			return res;
	}
	if (rc < 0)
		return fail(r, PGP_MALFORMED, "packet framing malformed or truncated");
	if (first && depth > 0)
		return fail(r, PGP_MALFORMED, "compressed data packet holds no packets");
	return PGP_LITERAL;
}

enum pgp_result pgp_read(const unsigned char *d, size_t n, int armored, size_t max,
                         struct pgp_literal *out, char *why, size_t whylen)
{
	struct rd r = { .max = max, .input = n, .out = out, .why = why, .whylen = whylen };
	unsigned char *bin = NULL;
	size_t binlen = 0;
	enum pgp_result res;

	memset(out, 0, sizeof(*out));
	if (whylen > 0)
		why[0] = '\0';
	if (armored) {
		if ((res = dearmor(&r, d, n, &bin, &binlen)) != PGP_LITERAL)
			return res;
		d = bin;
		n = binlen;
	}
	if (n == 0)
		res = fail(&r, PGP_MALFORMED, "no packets");
	else
		res = packets(&r, d, n, 0);
	free(bin);
	if (res == PGP_LITERAL && !r.have_literal)
		res = r.encrypted ? PGP_ENCRYPTED : PGP_NONE;
	if (res != PGP_LITERAL) {
		free(out->data);
		memset(out, 0, sizeof(*out));
	}
	return res;
}

int pgp_binary_sniff(const unsigned char *d, size_t n)
{
	size_t i = 0;
	struct pkt p;
	int ok;

	if (n < 2 || !(d[0] & 0x80))
		return 0;
	/* the first packet whole: a file that only starts like one is no
	 * message (a random binary starts with a compressed packet's header
	 * once in 16,384) */
	if (next_packet(d, n, &i, &p) <= 0)
		return 0;
	switch (p.tag) {
	case 8:
		ok = p.len >= 1 && p.body[0] <= 3;
		break;
	case 4:
		ok = p.len >= 13 && (p.body[0] == 3 || p.body[0] == 6);
		break;
	case 10:
		ok = p.len == 3 && memcmp(p.body, "PGP", 3) == 0;
		break;
	case 11:
		ok = p.len >= 6 && p.body[0] != '\0' && strchr("btum1l", p.body[0]) != NULL;
		break;
	case 2:
		ok = p.len >= 4 && (p.body[0] == 3 || p.body[0] == 4 || p.body[0] == 5 || p.body[0] == 6);
		break;
	case 1:
	case 3:
	case 9:
	case 18:
	case 20:
		ok = p.len >= 2;
		break;
	default:
		ok = 0;
	}
	free(p.owned);
	return ok;
}

int pgp_looks_mime(const unsigned char *d, size_t n)
{
	size_t at = 0, ls, le, lines = 0;

	if (n > 8192)
		n = 8192;
	while (next_line(d, n, &at, &ls, &le) && le > ls && lines++ < 100) {
		size_t k = ls;

		if (d[ls] == ' ' || d[ls] == '\t')
			continue;            /* a folded field */
		while (k < le && d[k] != ':' && d[k] > 0x20 && d[k] < 0x7f)
			k++;
		if (k == ls || k == le || d[k] != ':')
			return 0;
		if (k - ls == 12 && strncasecmp((const char *)d + ls, "content-type", 12) == 0)
			return 1;
	}
	return 0;
}
