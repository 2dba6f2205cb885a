/* dataframe.c - the strict CRLF framer for the DATA phase (decoder) and the
 * dot-stuffing encoder for the way out.
 *
 * Why this file is small and paranoid: SMTP smuggling works because two
 * hops disagree on where a message ends.  We end a message only at the raw
 * five octets CR LF "." CR LF (the first CR LF may be the virtual line start
 * at the beginning of the data phase), whatever mode we are in.  Everything
 * else -- "\n.\n", "\r.\r", "\r\n.\n", NUL tricks -- is content (normalize
 * mode, where it is rewritten to canonical CRLF and re-stuffed on the way
 * out) or a fault (reject mode).  Because the encoder stuffs every line that
 * starts with "." and turns any bare CR or LF into CRLF, the upstream can
 * never see an end of data other than the one we append.
 *
 * Decoder state machine (one byte at a time, so any chunk split works; a
 * CR at the end of a chunk stays pending in ST_CR / ST_*DOT_CR):
 *
 *   ST_BOL      at a line start that follows a raw CR LF (or the start of
 *               data): a "." here may begin the end of data
 *   ST_BOL_NORM at a line start that follows a bare LF/CR taken as a line
 *               end (normalize mode): a "." here can never end the data
 *   ST_TEXT     inside a line
 *   ST_CR       inside a line, a CR seen, waiting for the next byte
 *   ST_DOT      ST_BOL + "."        ST_DOT_CR   ST_BOL + "." CR
 *   ST_NDOT     ST_BOL_NORM + "."   ST_NDOT_CR  ST_BOL_NORM + "." CR
 *   ST_DONE     end of data seen; nothing more is consumed
 *
 * Content rules: a line that starts with "." loses that dot, except a line
 * that is just "." (which is not the end of data because it ended with a
 * bare CR/LF or did not start after a raw CR LF): it is kept as "." and the
 * encoder stuffs it again (RFC 5321 4.5.2 deletes the dot only when "there
 * are other characters on the line").  In reject mode a bare CR or LF is
 * not a line end at all: it is an offending byte inside the line.
 *
 * Speed: the proxy runs every message through both halves, so neither walks
 * the common case byte by byte.  df_find() looks for the next CR, LF (or
 * NUL) sixteen octets at a time.  The decoder takes a run of ordinary
 * octets in one step, and gathers whole lines that end in CR LF and are
 * followed by a line that starts with an ordinary octet other than "."
 * (content exactly as on the wire) into one copy to the batch.  The encoder
 * copies runs of whole CR LF lines as they are, and stops only before a
 * line that starts with "." and at a CR or LF that is not a CR LF pair.
 * These steps do exactly what the byte-at-a-time rules above do, whatever
 * the chunking: the same content, the same faults in the same order, the
 * same counts and size, and the same writes to the sink.  The unit tests
 * and the fuzzer compare a whole feed with a byte-by-byte one (which never
 * takes the fast paths), and the fuzzer checks both against a plain
 * reference; tests/bench/dataframe_speed.c measures.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* df_find() uses SSE2 where there is SSE2 (every x86-64), else eight
 * octets at a time on little-endian GCC/clang, else a plain loop.  For
 * tests of the other ways: -DDF_NO_SSE2, -DDF_NO_SIMD (plain loop). */
#if defined(__SSE2__) && !defined(DF_NO_SSE2) && !defined(DF_NO_SIMD)
#include <emmintrin.h>
#define DF_SSE2 1
#elif defined(__GNUC__) && defined(__BYTE_ORDER__) && !defined(DF_NO_SIMD) \
    && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DF_SWAR 1
#endif

#include "proxy/dataframe.h"

enum {
	ST_BOL = 0,
	ST_BOL_NORM,
	ST_TEXT,
	ST_CR,
	ST_DOT,
	ST_DOT_CR,
	ST_NDOT,
	ST_NDOT_CR,
	ST_DONE
};

/* df_find - offset of the first CR, LF or c3 in p[0..n), n if none.  The
 * encoder passes c3 = CR (just CR and LF), the decoder NUL.  It reads
 * nothing outside p[0..n). */
static inline size_t df_find(const unsigned char *p, size_t n,
                             unsigned char c3)
{
	size_t i = 0;

#if defined(DF_SSE2)
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i x3 = _mm_set1_epi8((char)c3);
	__m128i v;
	unsigned m;

	for (; n - i >= 16; i += 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(
		    _mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
		    _mm_cmpeq_epi8(v, x3)));
		if (m != 0)
			return i + (size_t)__builtin_ctz(m);
	}
#elif defined(DF_SWAR)
	/* (x - 0x01..) & ~x & 0x80.. marks the bytes of x that are zero; the
	 * lowest mark is exact (a false one can only sit above a true one),
	 * so the lowest mark of the three is the first match */
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t w, x, m;

	for (; n - i >= 8; i += 8) {
		memcpy(&w, p + i, 8);
		x = w ^ (ones * '\r');
		m = (x - ones) & ~x;
		x = w ^ (ones * '\n');
		m |= (x - ones) & ~x;
		x = w ^ (ones * c3);
		m |= (x - ones) & ~x;
		m &= high;
		if (m != 0)
			return i + (size_t)(__builtin_ctzll(m) >> 3);
	}
#endif
	for (; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == c3)
			break;
	return i;
}

/* df_fault - record the first fault; from then on content is discarded */
static void df_fault(struct data_decoder *d, enum data_fault f)
{
	if (d->fault == DF_OK) {
		d->fault = f;
		d->outlen = 0;		/* the message is lost; drop the batch */
	}
}

/* df_flush - hand the batch to the sink */
static void df_flush(struct data_decoder *d)
{
	if (d->outlen == 0)
		return;
	if (d->fault == DF_OK && d->sink(d->sink_arg, d->out, d->outlen) < 0) {
		d->outlen = 0;
		df_fault(d, DF_SINK_ERROR);
	}
	d->outlen = 0;
}

/* df_emit - append content; enforces the size limit (0 = none) */
static void df_emit(struct data_decoder *d, const char *p, size_t n)
{
	size_t room;

	if (d->fault != DF_OK)
		return;
	if (d->size_limit != 0 && (d->size > d->size_limit
	    || n > d->size_limit - d->size)) {
		df_fault(d, DF_TOO_BIG);
		return;
	}
	d->size += n;
	while (n > 0) {
		if (d->outlen == sizeof(d->out)) {
			df_flush(d);
			if (d->fault != DF_OK)
				return;
		}
		room = sizeof(d->out) - d->outlen;
		if (room > n)
			room = n;
		memcpy(d->out + d->outlen, p, room);
		d->outlen += room;
		p += room;
		n -= room;
	}
}

/* df_plain - c may start a line that the fast path takes whole */
static inline int df_plain(unsigned char c)
{
	return c != '.' && c != '\r' && c != '\n' && c != '\0';
}

/* df_room - df_emit(n octets) can neither flush, fail nor fault (after a
 * fault it does nothing at all) */
static inline int df_room(const struct data_decoder *d, size_t n)
{
	if (d->fault != DF_OK)
		return 1;
	return sizeof(d->out) - d->outlen >= n && (d->size_limit == 0
	    || (d->size <= d->size_limit && n <= d->size_limit - d->size));
}

/* df_put - df_emit() when df_room() said yes */
static inline void df_put(struct data_decoder *d, const char *p, size_t n)
{
	if (d->fault != DF_OK)
		return;
	memcpy(d->out + d->outlen, p, n);
	d->outlen += n;
	d->size += n;
}

/* df_octet - one more raw octet in the current line (not a line end) */
static void df_octet(struct data_decoder *d)
{
	if (++d->line_len > DATA_LINE_MAX)
		df_fault(d, DF_LINE_TOO_LONG);
}

/* df_bare - a bare CR or LF.  Normalize: it ended the line, write CRLF and
 * return 1 (the caller moves to ST_BOL_NORM).  Reject: fault, the octet
 * stays inside the line, return 0 (the caller moves to ST_TEXT). */
static int df_bare(struct data_decoder *d, int is_cr)
{
	if (is_cr)
		d->bare_cr++;
	else
		d->bare_lf++;
	if (d->normalize) {
		df_emit(d, "\r\n", 2);
		d->line_len = 0;
		return 1;
	}
	df_fault(d, is_cr ? DF_BARE_CR : DF_BARE_LF);
	df_octet(d);
	return 0;
}

void data_decoder_init(struct data_decoder *d, data_sink_fn sink, void *arg,
                       uint64_t size_limit, int normalize)
{
	/* all but the batch, which is only ever read up to outlen: 8 KB of
	 * memset per message is worth saving */
	memset(d, 0, offsetof(struct data_decoder, out));
	memset((char *)d + offsetof(struct data_decoder, out) + sizeof(d->out),
	    0, sizeof(*d) - offsetof(struct data_decoder, out) - sizeof(d->out));
	d->sink = sink;
	d->sink_arg = arg;
	d->size_limit = size_limit;
	d->normalize = normalize ? 1 : 0;
	d->state = ST_BOL;
	d->fault = DF_OK;
}

size_t data_decoder_feed(struct data_decoder *d, const char *p, size_t len,
                         int *done)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t  i = 0, run, blk;
	unsigned char c;

	*done = 0;
	if (d->state == ST_DONE) {
		*done = 1;
		return 0;
	}
	while (i < len) {
		c = u[i];
		switch (d->state) {
		case ST_BOL:
		case ST_BOL_NORM:
		case ST_TEXT:
			if (d->state != ST_TEXT) {
				if (c == '.') {
					/* not counted yet: RFC 5321 4.5.3.1.6 does
					 * not count the dot "duplicated for
					 * transparency", so a 998-octet line that
					 * starts with "." (999 on the wire) fits */
					d->state = d->state == ST_BOL ? ST_DOT : ST_NDOT;
					i++;
					continue;
				}
				d->state = ST_TEXT;
			}
			if (c == '\r') {
				if (i + 1 < len && u[i + 1] == '\n') {
					/* ST_CR then LF, in one step */
					df_emit(d, "\r\n", 2);
					d->line_len = 0;
					d->state = ST_BOL;
					i += 2;
					continue;
				}
				d->state = ST_CR;
				i++;
				continue;
			}
			if (c == '\n') {
				d->state = df_bare(d, 0) ? ST_BOL_NORM : ST_TEXT;
				i++;
				continue;
			}
			if (c == '\0') {
				d->nul++;
				df_fault(d, DF_NUL);
				df_octet(d);
				i++;
				continue;
			}
			/* fast path.  A line that ends in CR LF in this chunk,
			 * is not too long and is not followed by a line that
			 * starts with ".", CR, LF or NUL, is content exactly as
			 * it is: such lines are gathered into one block, which
			 * goes to the batch in one copy when it fits there and
			 * under the limit (then it is what emitting each run
			 * and each CR LF would do) */
			blk = i;
			for (;;) {
				run = 1 + df_find(u + i + 1, len - i - 1, '\0');
				if (d->line_len + run > DATA_LINE_MAX
				    || len - i - run < 2 || u[i + run] != '\r'
				    || u[i + run + 1] != '\n'
				    || !df_room(d, i + run + 2 - blk))
					break;
				i += run + 2;
				d->line_len = 0;
				if (i == len || !df_plain(u[i]))
					break;
			}
			if (i > blk) {
				df_put(d, p + blk, i - blk);
				d->state = ST_BOL;
				if (i == len || !df_plain(u[i]))
					continue;
				d->state = ST_TEXT;
			}
			/* a run of ordinary octets at i, that the loop above
			 * did not take */
			if (d->line_len + run > DATA_LINE_MAX) {
				/* what fits first, so that faults come in
				 * byte order whatever the chunking */
				if (d->line_len < DATA_LINE_MAX)
					df_emit(d, p + i, DATA_LINE_MAX - d->line_len);
				d->line_len += run;
				df_fault(d, DF_LINE_TOO_LONG);
			} else {
				d->line_len += run;
				df_emit(d, p + i, run);
			}
			i += run;
			continue;

		case ST_CR:
			if (c == '\n') {
				df_emit(d, "\r\n", 2);
				d->line_len = 0;
				d->state = ST_BOL;
				i++;
				continue;
			}
			/* bare CR; c is looked at again in the new state */
			d->state = df_bare(d, 1) ? ST_BOL_NORM : ST_TEXT;
			continue;

		case ST_DOT:
		case ST_NDOT:
			if (c == '\r') {
				d->state = d->state == ST_DOT ? ST_DOT_CR : ST_NDOT_CR;
				i++;
				continue;
			}
			if (c == '\n') {
				/* the line "." ended by a bare LF: content "."
				 * (in reject mode the dot stays in the line) */
				if (d->normalize)
					df_emit(d, ".", 1);
				d->line_len++;
				d->state = df_bare(d, 0) ? ST_BOL_NORM : ST_TEXT;
				i++;
				continue;
			}
			/* a stuffed dot: drop it, c starts the text */
			d->state = ST_TEXT;
			continue;

		case ST_DOT_CR:
		case ST_NDOT_CR:
			if (c == '\n' && d->state == ST_DOT_CR) {
				/* CR LF "." CR LF: the one and only end of data */
				i++;
				d->state = ST_DONE;
				df_flush(d);
				*done = 1;
				return i;
			}
			if (c == '\n') {
				/* "." after a normalized line end: content */
				df_emit(d, ".\r\n", 3);
				d->line_len = 0;
				d->state = ST_BOL;
				i++;
				continue;
			}
			/* the line "." ended by a bare CR; c is looked at again */
			if (d->normalize)
				df_emit(d, ".", 1);
			d->line_len++;
			d->state = df_bare(d, 1) ? ST_BOL_NORM : ST_TEXT;
			continue;

		default:		/* ST_DONE is handled above */
			*done = 1;
			return i;
		}
	}
	/* flush whole batches only; the rest waits for more input */
	if (d->outlen == sizeof(d->out))
		df_flush(d);
	return i;
}

const char *data_fault_name(enum data_fault f)
{
	switch (f) {
	case DF_OK:            return "ok";
	case DF_BARE_LF:       return "bare-lf";
	case DF_BARE_CR:       return "bare-cr";
	case DF_NUL:           return "nul";
	case DF_LINE_TOO_LONG: return "line-too-long";
	case DF_TOO_BIG:       return "too-big";
	case DF_SINK_ERROR:    return "sink-error";
	}
	return "unknown";
}

/*
 * Encoder.  Output is batched in a buffer on the stack, so out() sees large
 * writes even when the content comes line by line.  Canonical content goes
 * out as it is, so the encoder copies whole runs of CR LF lines and does
 * work only before a line that starts with "." (the stuffed dot) and at a
 * CR or LF that is not a CR LF pair (made one).  After out() failed, the
 * wire form is broken anyway: the rest of the chunk is dropped, and where
 * *e stands then is not specified (the caller gives up on the message).
 */
#define ENC_BUF 8192

struct enc_batch {
	char        buf[ENC_BUF];
	size_t      len;
	data_out_fn out;
	void       *arg;
	int         err;
};

static void enc_flush(struct enc_batch *b)
{
	if (b->len > 0 && !b->err && b->out(b->arg, b->buf, b->len) < 0)
		b->err = 1;
	b->len = 0;
}

static inline void enc_put(struct enc_batch *b, const char *p, size_t n)
{
	size_t room;

	if (n <= sizeof(b->buf) - b->len && !b->err) {
		/* fits: no flush, the usual case */
		memcpy(b->buf + b->len, p, n);
		b->len += n;
		return;
	}
	while (n > 0 && !b->err) {
		if (b->len == sizeof(b->buf))
			enc_flush(b);
		room = sizeof(b->buf) - b->len;
		if (room > n)
			room = n;
		memcpy(b->buf + b->len, p, room);
		b->len += room;
		p += room;
		n -= room;
	}
}

void data_encoder_init(struct data_encoder *e)
{
	e->at_line_start = 1;
	e->pending_cr = 0;
}

int data_encoder_feed(struct data_encoder *e, const char *p, size_t len,
                      data_out_fn out, void *arg)
{
	const unsigned char *u = (const unsigned char *)p;
	struct enc_batch b;
	size_t i = 0, j, start;

	b.len = 0;
	b.out = out;
	b.arg = arg;
	b.err = 0;
	while (i < len && !b.err) {
		if (e->pending_cr) {
			/* CR LF, or a bare CR: both become CR LF */
			e->pending_cr = 0;
			enc_put(&b, "\r\n", 2);
			e->at_line_start = 1;
			if (u[i] == '\n')
				i++;
			continue;
		}
		if (e->at_line_start && u[i] == '.')
			enc_put(&b, ".", 1);	/* the line's own dot follows */
		/* ordinary octets and CR LF pairs go out as they are, up to a
		 * line that starts with "." or a CR or LF not in a pair */
		start = i;
		for (;;) {
			j = i + df_find(u + i, len - i, '\r');
			if (j > i)
				e->at_line_start = 0;
			if (j + 1 < len && u[j] == '\r' && u[j + 1] == '\n') {
				i = j + 2;
				e->at_line_start = 1;
				if (i < len && u[i] != '.')
					continue;
				break;		/* end of chunk, or a "." to stuff */
			}
			i = j;
			break;
		}
		enc_put(&b, p + start, i - start);
		if (i == len || (u[i] != '\r' && u[i] != '\n'))
			continue;
		if (u[i] == '\r' && i + 1 == len) {
			/* CR at the end of the chunk: LF may follow */
			e->pending_cr = 1;
			i++;
			continue;
		}
		/* a bare LF, or a CR followed by something else than LF */
		enc_put(&b, "\r\n", 2);
		e->at_line_start = 1;
		i++;
	}
	enc_flush(&b);
	return b.err ? -1 : 0;
}

int data_encoder_finish(struct data_encoder *e, data_out_fn out, void *arg)
{
	int rc;

	if (e->pending_cr || !e->at_line_start)
		rc = out(arg, "\r\n.\r\n", 5);
	else
		rc = out(arg, ".\r\n", 3);
	e->pending_cr = 0;
	e->at_line_start = 1;
	return rc < 0 ? -1 : 0;
}
