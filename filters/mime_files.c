/* mime_files.c - the files encoded in a parse's text parts (mime.h:
 * mime_text_files), found and decoded once, on first use.
 *
 * The attachments filter checks their names and types and the antivirus
 * scans them (libclamav decodes none of them in most text parts); each
 * used to find and decode them itself, so a 30 MB uuencoded file was
 * decoded twice per message.  The memo hangs on the parse (mime_store)
 * and goes with it: a message's parse lives to the end of its scan, and a
 * filter's own parse of an embedded message (mime_parse) has its own.
 *
 * What is kept: uuencoded and yEnc files whole (each at most its block of
 * the part: the parts' bytes are bounded by MIME_MAX_DECODED), up to
 * MIME_MAX_TEXT_FILES of each group (mime.h); BinHex data forks only as far as a
 * reader asked (mime_file_read: runs expand 255 times, so what a reader
 * takes is bounded by the reader's own budget, as before the memo).  The
 * order is the parts', and in a part uuencoded, yEnc, then BinHex files:
 * the order the filters met them in. */
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "filters/mime.h"
#include "filters/mime_gmime.h"
#include "filters/textenc.h"

#define HQX_FIRST_READ (64 * 1024)   /* a data fork's first buffer */

struct file_state {
	struct hqx h;                 /* BinHex: the decoder, at the data decoded so far */
	size_t     cap;               /* BinHex: room of data */
	int        ended;             /* BinHex: no more data decodes */
};

struct mime_files {
	struct mime_file  *files;
	struct file_state *state;     /* one per file */
	size_t             n, cap;
	unsigned           uu, enc;   /* listed, not over: uuencoded; yEnc and BinHex that decode */
	/* BinHex files whose header does not decode (no data to scan), listed
	 * for the attachments filter but not counted in enc: 100 of them
	 * made the antivirus's 101st file one past the count, a limit hit, so
	 * that a virus BinHex'd after them passed (av_limit_action accept) */
	unsigned           unread;
};

static struct mime_file *add(struct mime_files *mf, size_t part, enum mime_file_kind kind)
{
	struct mime_file *f;

	if (mf->n == mf->cap) {
		mf->cap = mf->cap ? 2 * mf->cap : 8;
		mf->files = g_realloc_n(mf->files, mf->cap, sizeof(*mf->files));
		mf->state = g_realloc_n(mf->state, mf->cap, sizeof(*mf->state));
	}
	memset(&mf->state[mf->n], 0, sizeof(mf->state[mf->n]));
	f = &mf->files[mf->n++];
	memset(f, 0, sizeof(*f));
	f->part = part;
	f->kind = kind;
	return f;
}

/* name_of - n bytes of a header line as a name: its line break cut, at
 * most 255 bytes, to a NUL (as the filters printed it into 256 bytes) */
static char *name_of(const char *s, size_t n)
{
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	return g_strndup(s, n < 255 ? n : 255);
}

/* uu_files - the uuencoded blocks of a text part ("begin 644 name" ...
 * "end"), decoded by GMime; each byte once (a block left open ends at
 * the next one's header) */
static void uu_files(struct mime_files *mf, const struct mime_part *p, size_t part)
{
	const char *line = (const char *)p->raw, *end = line + p->raw_len;

	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *next = nl != NULL ? nl + 1 : end, *stop;
		size_t n = (size_t)(next - line), k, len;
		struct mime_file *f;
		unsigned char *out;

		if ((k = uu_begin(line, n)) == 0) {
			line = next;
			continue;
		}
		f = add(mf, part, MIME_FILE_UU);
		if (mf->uu >= MIME_MAX_TEXT_FILES) {
			f->over = 1;
			return;
		}
		mf->uu++;
		f->name = name_of(line + k, n - k);
		stop = uu_end(next, end);
		f->claimed = (uint64_t)(stop - next);
		out = g_malloc((size_t)(stop - next) + 4);
		len = uu_decode(next, (size_t)(stop - next), out);
		out = g_realloc(out, len + 1);
		out[len] = '\0';
		f->data = out;
		f->len = len;
		line = stop;
	}
}

/* yenc_files - the yEnc blocks of a part (=ybegin ... =yend); what one
 * decodes to is at most the rest of the part, cut to what it is */
static void yenc_files(struct mime_files *mf, const struct mime_part *p, size_t part)
{
	const char *line = (const char *)p->raw, *end = line + p->raw_len;

	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *next = nl != NULL ? nl + 1 : end, *nm;
		size_t n = (size_t)(next - line), len;
		struct mime_file *f;
		unsigned char *out;

		if (n < 9 || memcmp(line, YENC_BEGIN, 8) != 0) {
			line = next;
			continue;
		}
		f = add(mf, part, MIME_FILE_YENC);
		if (mf->enc >= MIME_MAX_TEXT_FILES) {
			f->over = 1;
			return;
		}
		mf->enc++;
		if ((nm = g_strstr_len(line, (gssize)n, " name=")) != NULL)
			f->name = name_of(nm + 6, (size_t)(next - nm - 6));
		f->claimed = (uint64_t)(end - next);
		out = g_malloc((size_t)(end - next) + 1);
		/* the next block starts after this one: each byte read once */
		len = yenc_data(next, end, out, &line);
		out = g_realloc(out, len + 1);
		out[len] = '\0';
		f->data = out;
		f->len = len;
	}
}

/* binhex_files - the BinHex files of a part: their headers read, the
 * decoder left at the data fork for mime_file_read; only those whose
 * header decodes count toward MIME_MAX_TEXT_FILES (what the antivirus
 * scans), the first MIME_MAX_TEXT_FILES of the others listed with over 0 */
static void binhex_files(struct mime_files *mf, const struct mime_part *p, size_t part, int typed)
{
	const unsigned char *b = p->raw, *end = b + p->raw_len, *at = b, *q;

	while ((q = binhex_next(b, end, &at, typed)) != NULL) {
		struct hqx h = { .p = q + 1, .end = end, .last = -1 };
		char name[64];
		uint32_t dlen;
		int res = binhex_header(&h, name, &dlen);
		struct mime_file *f;

		if (res == BINHEX_OK) {
			if (mf->enc >= MIME_MAX_TEXT_FILES) {
				add(mf, part, MIME_FILE_BINHEX)->over = 1;
				return;
			}
			mf->enc++;
		} else if (mf->unread >= MIME_MAX_TEXT_FILES)
			/* the attachments filter, which counts these with the
			 * others, is past its 100 files once it met those listed */
			continue;
		else
			mf->unread++;
		f = add(mf, part, MIME_FILE_BINHEX);
		mf->state[mf->n - 1].h = h;
		f->binhex = res;
		if (res == BINHEX_OK || res == BINHEX_CRC)
			f->name = g_strdup(name);
		f->claimed = dlen;
		f->data = g_malloc0(1);
		mf->state[mf->n - 1].ended = res != BINHEX_OK;
	}
}

int mime_says_binhex(const struct mime_part *p)
{
	if (strcmp(p->content_type, "application/mac-binhex40") == 0)
		return 1;
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++) {
		const char *base = p->names[k], *s, *end;

		for (s = base; *s != '\0'; s++)
			if (*s == '/' || *s == '\\')
				base = s + 1;
		/* the extension a program saves it under: trailing dots and
		 * spaces dropped, as for every name the attachments filter checks */
		for (end = s; end > base && (end[-1] == '.' || end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		if (end - base >= 4 && end[-4] == '.' && g_ascii_strncasecmp(end - 3, "hqx", 3) == 0)
			return 1;
	}
	return 0;
}

static struct mime_files *build(const struct mime_msg *m)
{
	struct mime_files *mf = g_new0(struct mime_files, 1);

	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		int typed = mime_says_binhex(p);

		if (p->raw_len == 0 || (!p->is_text && !typed))
			continue;
		if (p->is_text)
			uu_files(mf, p, i);
		yenc_files(mf, p, i);
		binhex_files(mf, p, i, typed);
	}
	return mf;
}

static struct mime_files *memo(const struct mime_msg *m)
{
	struct mime_files **slot = mime_files_slot(m);

	if (*slot == NULL)
		*slot = build(m);
	return *slot;
}

const struct mime_file *mime_text_files(const struct mime_msg *m, size_t part, size_t *n)
{
	struct mime_files *mf = memo(m);
	size_t lo = 0, hi = mf->n, first;

	while (lo < hi) {                /* the first file of part or after */
		size_t mid = lo + (hi - lo) / 2;

		if (mf->files[mid].part < part)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	while (lo < mf->n && mf->files[lo].part == part)
		lo++;
	*n = lo - first;
	return *n > 0 ? &mf->files[first] : NULL;
}

size_t mime_file_read(const struct mime_msg *m, const struct mime_file *f, size_t want)
{
	struct mime_files *mf = memo(m);
	size_t k = (size_t)(f - mf->files);
	struct mime_file *w = &mf->files[k];
	struct file_state *s = &mf->state[k];
	unsigned char *data = (unsigned char *)w->data;

	if (w->kind != MIME_FILE_BINHEX || w->over || s->ended)
		return w->len;
	if (want > w->claimed)
		want = (size_t)w->claimed;
	while (w->len < want && !s->ended) {
		size_t ask, got;

		if (w->len == s->cap) {
			/* doubling to what is asked: the claim is the sender's */
			s->cap = s->cap < HQX_FIRST_READ ? HQX_FIRST_READ : 2 * s->cap;
			if (s->cap > want)
				s->cap = want;
			data = g_realloc(data, s->cap + 1);
		}
		ask = s->cap - w->len;
		got = hqx_read(&s->h, data + w->len, ask);
		w->len += got;
		s->ended = got < ask;
	}
	if ((s->ended || w->len == w->claimed) && s->cap > w->len) {
		/* all of it: the room not used given back */
		data = g_realloc(data, w->len + 1);
		s->cap = w->len;
	}
	data[w->len] = '\0';
	w->data = data;
	return w->len;
}

void mime_files_free(struct mime_files *mf)
{
	if (mf == NULL)
		return;
	for (size_t i = 0; i < mf->n; i++) {
		g_free((char *)mf->files[i].name);
		g_free((void *)mf->files[i].data);
	}
	g_free(mf->files);
	g_free(mf->state);
	g_free(mf);
}
