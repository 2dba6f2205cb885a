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
 */
#include <string.h>

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
	memset(d, 0, sizeof(*d));
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
	size_t  i = 0, run;
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
					d->state = d->state == ST_BOL ? ST_DOT : ST_NDOT;
					df_octet(d);
					i++;
					continue;
				}
				d->state = ST_TEXT;
			}
			if (c == '\r') {
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
			/* fast path: a run of ordinary octets */
			run = 1;
			while (i + run < len && u[i + run] != '\r'
			    && u[i + run] != '\n' && u[i + run] != '\0')
				run++;
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
				/* the line "." ended by a bare LF: content "." */
				if (d->normalize)
					df_emit(d, ".", 1);
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
 * writes even when the content comes line by line.
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

static void enc_put(struct enc_batch *b, const char *p, size_t n)
{
	size_t room;

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
	struct enc_batch b;
	size_t i = 0, run;
	char   c;

	b.len = 0;
	b.out = out;
	b.arg = arg;
	b.err = 0;
	while (i < len && !b.err) {
		c = p[i];
		if (e->pending_cr) {
			/* CR LF, or a bare CR: both become CR LF */
			e->pending_cr = 0;
			enc_put(&b, "\r\n", 2);
			e->at_line_start = 1;
			if (c == '\n')
				i++;
			continue;
		}
		if (c == '\r') {
			e->pending_cr = 1;
			i++;
			continue;
		}
		if (c == '\n') {	/* bare LF */
			enc_put(&b, "\r\n", 2);
			e->at_line_start = 1;
			i++;
			continue;
		}
		if (e->at_line_start && c == '.')
			enc_put(&b, ".", 1);
		e->at_line_start = 0;
		run = 1;
		while (i + run < len && p[i + run] != '\r' && p[i + run] != '\n')
			run++;
		enc_put(&b, p + i, run);
		i += run;
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
