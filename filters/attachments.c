/* attachments.c - the "attachments" built-in: amavis-style banned files.
 *
 * Over the shared MIME parse (mime.h) of the message, every leaf part,
 * nested messages included, is checked against the rules of the message's
 * direction (settings attach_<direction>_*):
 *   extension  the filename's last extension (after the trailing dots and
 *              spaces Windows ignores) is banned; ATTACH_DOUBLE_EXT when a
 *              decoy extension precedes it (invoice.pdf.exe), else
 *              ATTACH_BANNED_EXT
 *   type       the declared MIME type is banned (ATTACH_BANNED_TYPE)
 *   content    libmagic finds a banned type in content declared as another
 *              type (an executable sent as text/plain: ATTACH_CONTENT_TYPE)
 *   archive    a banned name or content type inside an archive (zip, 7z,
 *              rar, tar, cab, iso, lha, cpio, ar, xar, also compressed;
 *              archives in archives to attach_archive_depth) read with
 *              libarchive, inside a bare compressed file (gzip, bzip2, xz,
 *              zstd, lzip, lzma, compress, lz4: the raw format) or a TNEF
 *              winmail.dat (ATTACH_ARCHIVE_BANNED)
 *   encrypted  an archive with encrypted entries, which nothing can look
 *              into (ATTACH_ENCRYPTED)
 *   unchecked  the MIME parse stopped at one of its limits (mime.h: parts,
 *              nesting, boundary and header lines, decoded bytes), an
 *              archive was not read whole (entries, unpack budget, depth,
 *              size of an inner archive) or not opened at all, or a part
 *              names itself too many ways: what was not seen could hide a
 *              banned file (ATTACH_UNCHECKED)
 * Every name a part's fields give is checked (filename=, filename*=,
 * name=), a name with a bidirectional control is a disguise
 * (ATTACH_BIDI_NAME, extension rule); files uuencoded, yEnc'd or BinHex'd
 * in text bodies (BinHex also in its own part), and
 * messages the MIME tree keeps as leaves (an encoded message/rfc822, a
 * file named .eml, the content of S/MIME opaque signed-data), are checked
 * as attachments; encrypted content, which cannot be, gets the score-0
 * ATTACH_ENCRYPTED_MESSAGE.
 * Each rule has its action per direction (none, tag, replace, quarantine,
 * reject); the hardest one met becomes the filter's verdict, with the rule
 * and the file in the reply text and in the symbol's description.  Symbols
 * score 0: the action is the verdict, not a score.  "replace" (between tag
 * and quarantine) delivers the message with each such part replaced by a
 * short text part saying what was removed (mime_rewrite.c; the proxy
 * relays the new body, the milter hands it to the MTA); where the
 * structure does not allow it (broken, or signed or encrypted: a rewrite
 * would break the signature the recipient checks) the message is
 * quarantined instead.
 *
 * Thread-safety: the instance is read-only after setup but for the pool of
 * libmagic handles (a magic_t is not thread-safe), taken and given back
 * under a mutex; libarchive objects are per call.
 */
#include <ctype.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <archive.h>
#include <archive_entry.h>
#include <magic.h>
#include <gmime/gmime.h>
#include <zlib.h>

#include "filters/builtin.h"
#include "filters/mime.h"
#include "filters/textenc.h"
#include "filters/pgp_packet.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define MAGIC_HEAD      (64 * 1024)   /* bytes libmagic looks at */
#define ARCHIVE_UNPACKED_MAX_MIB 256u
#define ARCHIVE_UNPACKED_MAX (ARCHIVE_UNPACKED_MAX_MIB << 20)  /* bytes decompressed per message, skips included */
#define XAR_TOC_MAX_MIB 16
#define XAR_TOC_MAX     (XAR_TOC_MAX_MIB << 20)  /* bytes of a xar's table of contents (XML) */
#define MAX_WORDS       256           /* entries of an extension or type list */
#define NAME_SHOWN      120           /* bytes of a filename in a reply */
#define STRINGIFY_(x)   #x
#define STRINGIFY(x)    STRINGIFY_(x)

enum rule { R_EXTENSION, R_TYPE, R_CONTENT, R_ARCHIVE, R_ENCRYPTED, R_UNCHECKED, R_COUNT };

static const char *const rule_name[R_COUNT] = {
	"extension", "type", "content", "archive", "encrypted", "unchecked"
};

struct dir_rules {
	char  **ext;                  /* owned, lower case, without the dot */
	size_t  next;
	char  **types;                /* owned, lower case; "type/ *" allowed */
	size_t  ntypes;
	int     action[R_COUNT];      /* enum attach_action */
};

struct magic_pool {
	pthread_mutex_t lock;
	magic_t free[64];             /* idle handles */
	size_t  nfree;
};

struct attach {
	struct dir_rules dir[2];      /* [MW_INBOUND], [MW_OUTBOUND] */
	int      scan_archives;
	unsigned archive_depth;
	unsigned max_entries;
	size_t   max_nested;          /* bytes of a nested archive read */
	unsigned filters;             /* bits of decompressor[] libarchive has built in */
	struct magic_pool magic;
};

/* what one message met: the hardest action and why */
struct finding {
	struct attach *a;
	struct mw_ctx *ctx;
	const struct dir_rules *r;
	int      worst;               /* enum attach_action */
	char     reason[300];         /* of the first hit at worst */
	char     tag_reason[300];     /* of the first hit to tag, "" if none */
	size_t   part;                /* index of the leaf being checked */
	struct mime_replacement *rep; /* leaves to replace, in order, one each */
	size_t   nrep;
	unsigned entries;             /* archive entries looked at */
	unsigned uu_blocks;           /* uuencoded files looked at */
	unsigned enc_blocks;          /* yEnc and BinHex files looked at */
	unsigned embed_level;         /* messages parsed from parts, nested */
	uint64_t embedded;            /* bytes of those messages */
	int      pgp_mime;            /* a PGP/MIME control part (application/pgp-encrypted) */
	unsigned pgp_read;            /* OpenPGP messages whose literal data was read */
	int      archive_unchecked;     /* an archive's rest was left unread */
	uint64_t unpacked;            /* entry bytes read, all archives and levels
	                               * (ARCHIVE_UNPACKED_MAX) */
};

/* ------------------------------------------------------------------ */
/* libmagic handles                                                     */

static magic_t magic_new(void)
{
	/* binary signatures only: the text classifiers (encoding, tokens,
	 * JSON, CSV) cost a millisecond per part and never find a banned type */
	magic_t m = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_ERROR |
	    MAGIC_NO_CHECK_TEXT | MAGIC_NO_CHECK_ENCODING | MAGIC_NO_CHECK_TOKENS |
	    MAGIC_NO_CHECK_JSON | MAGIC_NO_CHECK_CSV);

	if (m == NULL)
		return NULL;
	if (magic_load(m, NULL) != 0) {
		magic_close(m);
		return NULL;
	}
	return m;
}

static magic_t magic_take(struct attach *a)
{
	magic_t m = NULL;

	pthread_mutex_lock(&a->magic.lock);
	if (a->magic.nfree > 0)
		m = a->magic.free[--a->magic.nfree];
	pthread_mutex_unlock(&a->magic.lock);
	return m != NULL ? m : magic_new();
}

static void magic_give(struct attach *a, magic_t m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&a->magic.lock);
	if (a->magic.nfree < sizeof(a->magic.free) / sizeof(a->magic.free[0])) {
		a->magic.free[a->magic.nfree++] = m;
		m = NULL;
	}
	pthread_mutex_unlock(&a->magic.lock);
	if (m != NULL)
		magic_close(m);
}

/* detect - the MIME type libmagic sees in the first bytes, into out
 * ("" if unknown).  libmagic may add ", ..." remarks: they are cut. */
static void detect(struct attach *a, const unsigned char *data, size_t len, char *out, size_t outsz)
{
	magic_t m;
	const char *t;

	out[0] = '\0';
	if (len == 0 || (m = magic_take(a)) == NULL)
		return;
	t = magic_buffer(m, data, len < MAGIC_HEAD ? len : MAGIC_HEAD);
	if (t != NULL) {
		size_t n = strcspn(t, ",; ");

		snprintf(out, outsz, "%.*s", (int)n, t);
		for (char *p = out; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	magic_give(a, m);
	/* libmagic's DOS .COM guess matches text whose first byte is 0xb8 or
	 * 0xe9 (GB2312 mail does): a DOS/Windows program must start with MZ */
	if ((strcmp(out, "application/x-dosexec") == 0 ||
	     strcmp(out, "application/x-msdos-program") == 0) &&
	    !(len >= 2 && ((data[0] == 'M' && data[1] == 'Z') || (data[0] == 'Z' && data[1] == 'M'))))
		snprintf(out, outsz, "application/octet-stream");
}

/* ------------------------------------------------------------------ */
/* names and types                                                      */

/* name_exts - the last extension of a filename (lower case, into last)
 * and the one before it (into prev), as Windows sees the name: directory
 * part dropped, trailing dots and spaces ignored.  "" where none. */
static void name_exts(const char *name, char *last, size_t lastsz, char *prev, size_t prevsz)
{
	const char *base = name, *p, *end, *dot, *pdot;
	size_t n;

	last[0] = prev[0] = '\0';
	for (p = name; *p; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	end = base + strlen(base);
	while (end > base && (end[-1] == '.' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (dot = end; dot > base && dot[-1] != '.'; dot--)
		;
	if (dot == base)
		return;                 /* no dot */
	n = (size_t)(end - dot);
	if (n >= lastsz)
		n = lastsz - 1;
	for (size_t i = 0; i < n; i++)
		last[i] = (char)tolower((unsigned char)dot[i]);
	last[n] = '\0';
	/* the extension before: spaces around it ignored ("a.pdf   .exe") */
	end = dot - 1;
	while (end > base && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (pdot = end; pdot > base && pdot[-1] != '.'; pdot--)
		;
	if (pdot == base)
		return;
	while (pdot < end && (*pdot == ' ' || *pdot == '\t'))
		pdot++;
	n = (size_t)(end - pdot);
	if (n >= prevsz)
		n = prevsz - 1;
	for (size_t i = 0; i < n; i++)
		prev[i] = (char)tolower((unsigned char)pdot[i]);
	prev[n] = '\0';
}

/* is_decoy - could this extension make a user think the file is harmless:
 * 1 to 5 letters/digits, not only digits (setup-1.2.exe is no disguise) */
static int is_decoy(const char *ext)
{
	size_t n = strlen(ext), i;
	int alpha = 0;

	if (n == 0 || n > 5)
		return 0;
	for (i = 0; i < n; i++) {
		if (!isalnum((unsigned char)ext[i]))
			return 0;
		if (isalpha((unsigned char)ext[i]))
			alpha = 1;
	}
	return alpha;
}

static int in_list(char *const *list, size_t n, const char *w)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], w) == 0)
			return 1;
	return 0;
}

/* type_banned - exact "type/subtype" or "type/ *" */
static int type_banned(const struct dir_rules *r, const char *type)
{
	size_t i;

	if (type == NULL || *type == '\0')
		return 0;
	for (i = 0; i < r->ntypes; i++) {
		const char *t = r->types[i];
		size_t n = strlen(t);

		if (n >= 2 && t[n - 1] == '*' && t[n - 2] == '/') {
			if (strncmp(type, t, n - 1) == 0)
				return 1;
		} else if (strcmp(type, t) == 0)
			return 1;
	}
	return 0;
}

/* is_archive_type - libmagic's type of an archive or compressed file:
 * those libarchive reads (scan_archive_in), and those it does not (ARJ,
 * ACE, ZOO, StuffIt ...), which 7-Zip or WinRAR open by their signature
 * whatever the name: an archive of a type no reader opens is unchecked */
static int is_archive_type(const char *t)
{
	static const char *const types[] = {
		"application/zip", "application/x-7z-compressed", "application/x-rar",
		"application/vnd.rar", "application/x-tar", "application/gzip",
		"application/x-gzip", "application/x-bzip2", "application/x-xz",
		"application/vnd.ms-cab-compressed", "application/x-iso9660-image",
		"application/java-archive", "application/zstd", "application/x-lzip",
		"application/x-lzma",
		/* read since session 16 */
		"application/x-lha", "application/x-lzh-compressed", "application/x-cpio",
		"application/x-archive", "application/vnd.debian.binary-package", "application/x-xar",
		"application/x-compress", "application/x-lz4", "application/x-ustar", "application/x-gtar",
		"application/x-rpm", "application/vnd.android.package-archive",
		/* not read: unchecked */
		"application/x-arj", "application/x-ace-compressed", "application/x-arc",
		"application/x-zoo", "application/x-stuffit", "application/x-lrzip",
		"application/x-ms-wim", "application/x-apple-diskimage", "application/x-bzip",
		"application/x-compressed-iso", "application/x-ia-arc", "application/x-svr4-package",
		"application/x-ms-compress-szdd", "application/x-ms-compress-kwaj", NULL
	};
	size_t i;

	for (i = 0; types[i] != NULL; i++)
		if (strcmp(t, types[i]) == 0)
			return 1;
	return 0;
}

/* is_compressor_ext - the extension of a bare compressed file (read as
 * one file behind a decompressor); one that is no such stream is left
 * alone, as gunzip refuses it */
static int is_compressor_ext(const char *e)
{
	static const char *const exts[] = { "gz", "bz2", "xz", "zst", "lz", "lzma", "z", "lz4", NULL };

	for (size_t i = 0; exts[i] != NULL; i++)
		if (strcmp(e, exts[i]) == 0)
			return 1;
	return 0;
}

static int is_archive_ext(const char *e)
{
	static const char *const exts[] = {
		"zip", "7z", "rar", "tar", "gz", "tgz", "bz2", "tbz", "xz", "txz", "cab", "iso",
		"jar", "zst", "tzst", "lz", "lzma",
		/* since session 16: read (lzh ... taz), or unchecked when
		 * nothing reads them (arj ...) */
		"lzh", "lha", "cpio", "xar", "deb", "rpm", "z", "taz", "lz4", "tlz4",
		"arj", "ace", "zoo", "sit", "sitx", "wim", "dmg", NULL
	};
	size_t i;

	for (i = 0; exts[i] != NULL; i++)
		if (strcmp(e, exts[i]) == 0)
			return 1;
	return 0;
}

/* shown - a filename as printable ASCII for a reply text */
static void shown(const char *name, char *out, size_t outsz)
{
	size_t i, n = 0;

	for (i = 0; name[i] != '\0' && n + 1 < outsz && n < NAME_SHOWN; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c >= 0x80) {
			/* one '?' per UTF-8 character */
			if ((c & 0xc0) == 0x80)
				continue;
			c = '?';
		} else if (c < 0x20 || c == 0x7f)
			c = '?';
		out[n++] = (char)c;
	}
	out[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* findings                                                             */

static const char *const symbol_of[R_COUNT] = {
	"ATTACH_BANNED_EXT", "ATTACH_BANNED_TYPE", "ATTACH_CONTENT_TYPE",
	"ATTACH_ARCHIVE_BANNED", "ATTACH_ENCRYPTED", "ATTACH_UNCHECKED"
};

/* hit - rule met by file (what: details for the log and the symbol) */
static void hit(struct finding *f, enum rule rule, const char *symbol, const char *file,
                const char *what)
{
	int action = f->r->action[rule];
	char name[NAME_SHOWN + 8], fesc[512], wesc[512];

	if (action == ATTACH_NONE)
		return;
	mw_symbol(f->ctx, symbol, 0, "%s: %s", file, what);
	/* the sender names the file, and what names files inside it: both
	 * quoted, their '"' and '=' escaped, so that a name such as
	 * `x" action="accept` cannot add a field to the line */
	builtin_log(f->ctx, LOG_NOTICE, "banned attachment rule=%s file=\"%s\" detail=\"%s\" action=%s",
	    rule_name[rule], log_esc_quoted(fesc, sizeof(fesc), file, strlen(file)),
	    log_esc_quoted(wesc, sizeof(wesc), what, strlen(what)),
	    action == ATTACH_REJECT ? "reject" : action == ATTACH_QUARANTINE ? "quarantine" :
	    action == ATTACH_REPLACE ? "replace" : "tag");
	if (rule == R_UNCHECKED) {            /* no file to name; never replace */
		if (action == ATTACH_TAG && f->tag_reason[0] == '\0')
			snprintf(f->tag_reason, sizeof(f->tag_reason), "Attachments not all checked (%s)", what);
		if (action > f->worst) {
			f->worst = action;
			snprintf(f->reason, sizeof(f->reason), "Attachments not all checked (%s)", what);
		}
		return;
	}
	shown(file, name, sizeof(name));
	if (action == ATTACH_TAG && f->tag_reason[0] == '\0')
		snprintf(f->tag_reason, sizeof(f->tag_reason), "Banned attachment %s (%s)", name, what);
	if (action == ATTACH_REPLACE && (f->nrep == 0 || f->rep[f->nrep - 1].part != f->part)) {
		char note[600];

		snprintf(note, sizeof(note), "mailwarden removed an attachment from this message:\n"
		    "  %s (%s)\n"
		    "It breaks the mail policy of this site.  Ask the sender for it in another\n"
		    "form, or your mail administrator if you need it.\n", name, what);
		f->rep = xrealloc(f->rep, (f->nrep + 1) * sizeof(*f->rep));
		f->rep[f->nrep].part = f->part;
		f->rep[f->nrep].note = xstrdup(note);
		f->nrep++;
	}
	if (action > f->worst) {
		f->worst = action;
		snprintf(f->reason, sizeof(f->reason), "Banned attachment %s (%s)", name, what);
	}
}

/* has_bidi_control - does a UTF-8 name hold a bidirectional embedding,
 * override or isolate (U+202A-U+202E, U+2066-U+2069)?  Marks (U+200E,
 * U+200F) are left alone: right-to-left names may carry them. */
static int has_bidi_control(const char *name)
{
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p; p++)
		if (p[0] == 0xe2 && ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) ||
		    (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)))
			return 1;
	return 0;
}

/* blank_controls - control characters of a name taken from the message
 * as spaces, before it is checked and shown in the audit log */
static void blank_controls(char *name)
{
	for (char *c = name; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
}

/* check_name - the extension rule on one filename; in_archive: the
 * archive rule instead, with the archive named */
static void check_name(struct finding *f, const char *name, const char *archive)
{
	char last[32], prev[32], what[200];
	const struct dir_rules *r = f->r;

	if (has_bidi_control(name)) {
		/* the name shows otherwise than it is: "invoice\u202Efdp.exe"
		 * reads "invoiceexe.pdf"; no honest filename needs one */
		if (archive != NULL) {
			char inner[NAME_SHOWN + 8];

			shown(name, inner, sizeof(inner));
			snprintf(what, sizeof(what), "contains %s, a name with a bidirectional control character", inner);
			hit(f, R_ARCHIVE, symbol_of[R_ARCHIVE], archive, what);
		} else
			hit(f, R_EXTENSION, "ATTACH_BIDI_NAME", name, "name with a bidirectional control character");
	}
	name_exts(name, last, sizeof(last), prev, sizeof(prev));
	if (last[0] == '\0' || !in_list(r->ext, r->next, last))
		return;
	if (archive != NULL) {
		char inner[NAME_SHOWN + 8];

		shown(name, inner, sizeof(inner));
		snprintf(what, sizeof(what), "contains %s", inner);
		hit(f, R_ARCHIVE, symbol_of[R_ARCHIVE], archive, what);
	} else if (is_decoy(prev)) {
		snprintf(what, sizeof(what), "double extension .%s.%s", prev, last);
		hit(f, R_EXTENSION, "ATTACH_DOUBLE_EXT", name, what);
	} else {
		snprintf(what, sizeof(what), "extension .%s", last);
		hit(f, R_EXTENSION, symbol_of[R_EXTENSION], name, what);
	}
}

/* ------------------------------------------------------------------ */
/* archives                                                             */

static int scan_archive(struct finding *f, const unsigned char *data, size_t len,
                        const char *archive_name, unsigned level);
static void open_archive(struct finding *f, const unsigned char *data, size_t len, const char *archive_name,
                         unsigned level, const char *ext, const char *ext2, const char *type);
static unsigned char *read_head(struct archive *ar, size_t max, size_t *got);
static void archive_unchecked(struct finding *f, const char *archive_name, const char *why);

/* The decompression filters: libarchive falls back to an external program
 * (fork and exec of zstd, lzip ...) for one it was built without, and says
 * so only by answering ARCHIVE_WARN when it is enabled; setup() keeps
 * those that are built in (a bit each), and only those are ever enabled. */
static const struct {
	const char *name;
	int (*enable)(struct archive *);
} decompressor[] = {
	{ "gzip",  archive_read_support_filter_gzip },
	{ "bzip2", archive_read_support_filter_bzip2 },
	{ "xz",    archive_read_support_filter_xz },
	{ "zstd",  archive_read_support_filter_zstd },
	{ "lzip",  archive_read_support_filter_lzip },
	{ "lzma",  archive_read_support_filter_lzma },
	/* since session 16: a .tar.Z or .tar.lz4 passed unread */
	{ "compress", archive_read_support_filter_compress },
	{ "lz4",   archive_read_support_filter_lz4 },
	{ "rpm",   archive_read_support_filter_rpm },
};
#define NDECOMPRESSORS (sizeof(decompressor) / sizeof(decompressor[0]))

/* builtin_decompressors - the bit set of decompressor[] libarchive has
 * built in (no external program) */
static unsigned builtin_decompressors(void)
{
	unsigned bits = 0;
	size_t i;

	for (i = 0; i < NDECOMPRESSORS; i++) {
		struct archive *ar = archive_read_new();

		if (ar == NULL)
			continue;
		if (decompressor[i].enable(ar) == ARCHIVE_OK)
			bits |= 1u << i;
		archive_read_free(ar);
	}
	return bits;
}

/* compressed_name - for a bare compressed file, the name its
 * decompressor gives it: the name of the attachment (or of the archive
 * entry) without its compression suffix ("invoice.exe.gz" -> "invoice.exe"),
 * into out; "" when the name has no such suffix */
static void compressed_name(const char *archive_name, char *out, size_t outsz)
{
	static const char *const suffixes[] = { ".gz", ".bz2", ".xz", ".zst", ".lz", ".lzma", ".z", ".lz4", NULL };
	const char *base = archive_name, *p;
	size_t n, i;

	out[0] = '\0';
	for (p = archive_name; *p; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	n = strlen(base);
	/* trailing dots and spaces, as Windows drops them */
	while (n > 0 && (base[n - 1] == '.' || base[n - 1] == ' ' || base[n - 1] == '\t'))
		n--;
	for (i = 0; suffixes[i] != NULL; i++) {
		size_t k = strlen(suffixes[i]);

		if (n > k && strncasecmp(base + n - k, suffixes[i], k) == 0) {
			snprintf(out, outsz, "%.*s", (int)(n - k), base);
			return;
		}
	}
}

/* read_more - grow *buf (holding *got bytes) with the current entry's
 * data up to max bytes in all; 1 if the entry ended within them */
static int read_more(struct archive *ar, unsigned char **buf, size_t *got, size_t max)
{
	unsigned char *b = realloc(*buf, max + 1);
	la_ssize_t r = 0;

	if (b == NULL)
		return 0;
	*buf = b;
	while (*got < max + 1 && (r = archive_read_data(ar, b + *got, max + 1 - *got)) > 0)
		*got += (size_t)r;
	return *got <= max && r == 0;
}

/* scan_compressed - the one file of a bare compressed stream (libarchive's
 * raw format behind a decompression filter): both names it can get (the
 * gzip header's FNAME, the attachment's without the suffix) against the
 * banned extensions, its type by magic, and, if it is an archive, what is
 * inside it.  Only its head is decompressed unless it is an archive to
 * open: a gzip bomb costs 64 KiB.  An archive in it that is not opened
 * (depth, size) leaves it unchecked, as in an archive. */
static void scan_compressed(struct finding *f, struct archive *ar, struct archive_entry *e,
                            const char *archive_name, unsigned level)
{
	const char *stored = archive_entry_pathname(e);
	char derived[400], last[32], prev[32], dlast[32], type[128];
	unsigned char *head;
	size_t got = 0;
	int archive;

	compressed_name(archive_name, derived, sizeof(derived));
	/* "data" is what the raw format calls a stream without a name */
	if (stored != NULL && strcmp(stored, "data") == 0)
		stored = NULL;
	if (stored != NULL)
		check_name(f, stored, archive_name);
	if (derived[0] != '\0' && (stored == NULL || strcmp(stored, derived) != 0))
		check_name(f, derived, archive_name);
	if ((head = read_head(ar, MAGIC_HEAD, &got)) == NULL)
		return;
	f->unpacked += got;
	detect(f->a, head, got, type, sizeof(type));
	if (type_banned(f->r, type)) {
		char what[300], inner[NAME_SHOWN + 8];

		shown(stored != NULL ? stored : derived[0] ? derived : "its content", inner, sizeof(inner));
		snprintf(what, sizeof(what), "contains %s of type %s", inner, type);
		hit(f, R_ARCHIVE, symbol_of[R_ARCHIVE], archive_name, what);
	}
	name_exts(stored != NULL ? stored : "", last, sizeof(last), prev, sizeof(prev));
	name_exts(derived, dlast, sizeof(dlast), prev, sizeof(prev));
	archive = is_archive_ext(last) || is_archive_ext(dlast) || is_archive_type(type);
	if (archive && got == MAGIC_HEAD) {
		/* the rest of it, to max_nested, unless too deep */
		size_t before = got;
		int whole = level < f->a->archive_depth && read_more(ar, &head, &got, f->a->max_nested);

		f->unpacked += got - before;
		if (!whole) {
			char why[NAME_SHOWN + 80], inner[NAME_SHOWN + 8];

			shown(stored != NULL ? stored : derived[0] ? derived : "its content", inner, sizeof(inner));
			snprintf(why, sizeof(why), "%s not opened (%s)", inner,
			    level >= f->a->archive_depth ? "deeper than attach_archive_depth"
			                                  : "over attach_archive_max_size");
			archive_unchecked(f, archive_name, why);
			free(head);
			return;
		}
	}
	if (archive) {
		if (level < f->a->archive_depth) {
			char inner_name[400];

			snprintf(inner_name, sizeof(inner_name), "%.200s/%.190s", archive_name,
			    stored != NULL ? stored : derived[0] ? derived : "data");
			open_archive(f, head, got, inner_name, level + 1, last, dlast, type);
		} else
			archive_unchecked(f, archive_name, "compressed archive not opened (deeper than attach_archive_depth)");
	}
	free(head);
}

/* read_head - up to max bytes of the current entry's data; NULL if none */
static unsigned char *read_head(struct archive *ar, size_t max, size_t *got)
{
	unsigned char *b = malloc(max > 0 ? max : 1);
	size_t n = 0;
	la_ssize_t r;

	if (b == NULL)
		return NULL;
	while (n < max && (r = archive_read_data(ar, b + n, max - n)) > 0)
		n += (size_t)r;
	*got = n;
	return b;
}

/* drain - read the rest of the current entry into nothing, counted in
 * f->unpacked, until its end or ARCHIVE_UNPACKED_MAX */
static void drain(struct finding *f, struct archive *ar)
{
	char buf[65536];
	la_ssize_t r;

	while (f->unpacked <= ARCHIVE_UNPACKED_MAX && (r = archive_read_data(ar, buf, sizeof(buf))) > 0)
		f->unpacked += (uint64_t)r;
}

/* over_budget - 1 (and the archive unchecked) once the message's archives
 * have unpacked ARCHIVE_UNPACKED_MAX: the reading of archive_name stops
 * there, before the next archive_read_next_header, which would skip the
 * rest of the entry left by drain() by decompressing it whole (a tar.bz2
 * of 10 KB holding one 8 GB entry took 60 s, and passed) */
static int over_budget(struct finding *f, const char *archive_name)
{
	char why[64];

	if (f->unpacked <= ARCHIVE_UNPACKED_MAX)
		return 0;
	snprintf(why, sizeof(why), "archives unpack to more than %u MiB", ARCHIVE_UNPACKED_MAX_MIB);
	archive_unchecked(f, archive_name, why);
	return 1;
}

/* archive_unchecked - part of an archive is left unread (a limit): a
 * banned file could hide there, as past the MIME parse's limits, so it is
 * the "unchecked" rule, once a message */
static void archive_unchecked(struct finding *f, const char *archive_name, const char *why)
{
	char aesc[512], wesc[512];

	if (f->archive_unchecked)
		return;
	f->archive_unchecked = 1;
	builtin_log(f->ctx, LOG_NOTICE, "archive rest unchecked file=\"%s\" detail=\"%s\"",
	    log_esc_quoted(aesc, sizeof(aesc), archive_name, strlen(archive_name)),
	    log_esc_quoted(wesc, sizeof(wesc), why, strlen(why)));
	hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], archive_name, why);
}

static int scan_archive_in(struct finding *f, const unsigned char *data, size_t len,
                           const char *archive_name, unsigned level);

/* libarchive converts entry names to the charset of the current locale:
 * in the scanner's "C" locale a name with any non-ASCII character (UTF-8
 * in a zip, UTF-16 in a 7z) converts to nothing, and was never checked
 * ("Rechnung\u00e4.exe" passed).  The archive is read with a UTF-8
 * LC_CTYPE on this thread only (uselocale), so names come out whole. */
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale;

static void utf8_locale_init(void)
{
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

enum { XAR_PREFIX_MAX = 255 };  /* namespace prefixes longer are counted as files */

/* xml_ncname_byte - a byte of an XML NCName (letters, digits, '.', '-',
 * '_' and all of UTF-8's non-ASCII bytes): wider than XML's rule, which
 * can only count more elements as files */
static int xml_ncname_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_' || c >= 0x80;
}

/* xml_file_element_at - 1 if the '<' at p (n bytes from p on) starts an
 * element whose local name is "file": libarchive's xar reader matches
 * names as libxml2 gives them, without their namespace prefix, so
 * <a:file/> is a file as <file/> is.  A name of XAR_PREFIX_MAX or more
 * bytes, which n may not hold whole, counts as a file: over-counting can
 * only leave a xar unchecked, under-counting lets libarchive build it. */
static int xml_file_element_at(const unsigned char *p, size_t n)
{
	size_t i = 1;

	while (i < n && i <= XAR_PREFIX_MAX && xml_ncname_byte(p[i]))
		i++;
	if (i > XAR_PREFIX_MAX)
		return 1;
	if (i < n && p[i] == ':')
		i++;                  /* a prefix: the local name follows */
	else
		i = 1;
	return i + 4 < n && memcmp(p + i, "file", 4) == 0 &&
	       (p[i + 4] == '>' || p[i + 4] == '/' || isspace(p[i + 4]));
}

/* xar_toc_files - inflate the zlib TOC of a xar read from ar (its
 * header read: compressed bytes to come), counting the bytes in
 * f->unpacked and the <file> elements (with or without a prefix) into
 * *files; stops past XAR_TOC_MAX bytes or max_files files.  The bytes inflated, or 0 on a broken TOC:
 * what came before the break is within the limits, and libarchive, which
 * stops at the same byte, says so itself. */
static uint64_t xar_toc_files(struct finding *f, struct archive *ar, uint64_t compressed,
                              unsigned max_files, unsigned *files)
{
	/* the longest element start looked at: a match across two buffers */
	enum { KEEP = 1 + XAR_PREFIX_MAX + 1 + 4 + 1 };
	unsigned char in[16384], out[KEEP + 65536];
	size_t keep = 0;
	uint64_t total = 0;
	z_stream z;
	int zr = Z_OK;

	memset(&z, 0, sizeof(z));
	if (inflateInit(&z) != Z_OK)
		return 0;
	*files = 0;
	while (zr != Z_STREAM_END && compressed > 0 && total <= XAR_TOC_MAX && *files <= max_files) {
		la_ssize_t r = archive_read_data(ar, in, compressed < sizeof(in) ? (size_t)compressed : sizeof(in));

		if (r <= 0)
			break;
		compressed -= (uint64_t)r;
		z.next_in = in;
		z.avail_in = (uInt)r;
		do {
			size_t n, i, scan_to;

			z.next_out = out + keep;
			z.avail_out = (uInt)(sizeof(out) - keep);
			zr = inflate(&z, Z_NO_FLUSH);
			if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
				inflateEnd(&z);
				return 0;
			}
			n = sizeof(out) - z.avail_out;
			total += n - keep;
			f->unpacked += n - keep;
			/* the last KEEP bytes wait for the next buffer, but the TOC's end */
			scan_to = zr == Z_STREAM_END ? n : n > KEEP ? n - KEEP : 0;
			for (i = 0; i < scan_to; i++)
				if (out[i] == '<' && xml_file_element_at(out + i, n - i))
					++*files;
			keep = n < KEEP ? n : KEEP;
			memmove(out, out + n - keep, keep);
		} while (z.avail_out == 0 && total <= XAR_TOC_MAX && *files <= max_files);
	}
	inflateEnd(&z);
	return total;
}

/* xar_toc_over - 1 (and the archive unchecked) for a xar, bare or
 * compressed, whose table of contents is over XAR_TOC_MAX or lists more
 * than attach_archive_max_entries files.  libarchive parses the whole TOC
 * into memory before the first entry, and checks the size the header
 * claims only after: a TOC of 1,000,000 empty files, 7 MB by mail, took
 * 500 MB.  Here it is inflated first (within the unpack budget) and
 * counted. */
static int xar_toc_over(struct finding *f, const unsigned char *data, size_t len, const char *archive_name)
{
	struct archive *ar = archive_read_new();
	struct archive_entry *e;
	unsigned char *head = NULL;
	size_t got = 0;
	unsigned files = 0;
	uint64_t toc = 0;
	int over = 0;

	if (ar == NULL)
		return 0;
	archive_read_support_format_raw(ar);
	for (size_t i = 0; i < NDECOMPRESSORS; i++)
		if (f->a->filters & (1u << i))
			decompressor[i].enable(ar);
	if (archive_read_open_memory(ar, data, len) == ARCHIVE_OK &&
	    archive_read_next_header(ar, &e) == ARCHIVE_OK &&
	    (head = read_head(ar, 28, &got)) != NULL && got == 28 && memcmp(head, "xar!", 4) == 0) {
		size_t hsize = (size_t)head[4] << 8 | head[5];
		uint64_t compressed = 0;

		for (int i = 0; i < 8; i++)
			compressed = compressed << 8 | head[8 + i];
		f->unpacked += got;
		if (hsize > 28) {
			free(head);
			head = read_head(ar, hsize - 28, &got);
			f->unpacked += got;
		}
		if (head != NULL)
			toc = xar_toc_files(f, ar, compressed, f->a->max_entries, &files);
		if (toc > XAR_TOC_MAX) {
			archive_unchecked(f, archive_name, "xar table of contents over " STRINGIFY(XAR_TOC_MAX_MIB) " MiB");
			over = 1;
		} else if (files > f->a->max_entries) {
			archive_unchecked(f, archive_name, "more than attach_archive_max_entries entries");
			over = 1;
		}
	}
	free(head);
	archive_read_free(ar);
	return over;
}

/* scan_archive - the names and types inside an archive (or a bare
 * compressed file); 1 if a reader opened it, 0 if none did (no format
 * and no decompressor took it, or the format broke before its first
 * entry) */
static int scan_archive(struct finding *f, const unsigned char *data, size_t len,
                        const char *archive_name, unsigned level)
{
	locale_t old = (locale_t)0;
	int opened;

	pthread_once(&utf8_once, utf8_locale_init);
	if (utf8_locale != (locale_t)0)
		old = uselocale(utf8_locale);
	opened = xar_toc_over(f, data, len, archive_name) || scan_archive_in(f, data, len, archive_name, level);
	if (utf8_locale != (locale_t)0)
		uselocale(old);
	return opened;
}

/* open_archive - scan_archive on a file its name (last extension ext, or
 * ext2, may be "") or its libmagic type says is an archive.  One that no
 * reader opens is unchecked: 7-Zip and WinRAR open a file by its
 * signature whatever its name (an LHA named .zip, an ARJ), so what
 * libarchive cannot read may still show a program to the recipient.
 * Left alone: a file named only as a bare compressed one (.gz ...) whose
 * type is no archive, which is no such stream (gunzip refuses it). */
static void open_archive(struct finding *f, const unsigned char *data, size_t len, const char *archive_name,
                         unsigned level, const char *ext, const char *ext2, const char *type)
{
	char why[200];

	if (len == 0 || scan_archive(f, data, len, archive_name, level))
		return;
	if (!is_archive_type(type) &&
	    !(is_archive_ext(ext) && !is_compressor_ext(ext)) &&
	    !(is_archive_ext(ext2) && !is_compressor_ext(ext2)))
		return;
	snprintf(why, sizeof(why), "not read as an archive (type %.100s)", type[0] ? type : "unknown");
	archive_unchecked(f, archive_name, why);
}

static int scan_archive_in(struct finding *f, const unsigned char *data, size_t len,
                           const char *archive_name, unsigned level)
{
	struct archive *ar = archive_read_new();
	struct archive_entry *e;
	int encrypted = 0, r, opened = 1;
	unsigned listed = 0;          /* entries of this archive read */

	if (ar == NULL)
		return 1;             /* out of memory: not the archive's doing */
	/* formats and built-in decompressors only: never an external program */
	archive_read_support_format_zip(ar);
	archive_read_support_format_7zip(ar);
	archive_read_support_format_rar(ar);
	archive_read_support_format_rar5(ar);
	archive_read_support_format_tar(ar);
	archive_read_support_format_cab(ar);
	archive_read_support_format_iso9660(ar);
	/* since session 16 (an LHA, cpio or a .deb passed unread, also under
	 * a .zip name, which 7-Zip and WinRAR open by the signature) */
	archive_read_support_format_lha(ar);
	archive_read_support_format_cpio(ar);
	archive_read_support_format_ar(ar);
	archive_read_support_format_xar(ar);
	/* a bare compressed file: the raw format bids last, below every
	 * archive format, so a tar.gz stays a tar */
	archive_read_support_format_raw(ar);
	for (size_t i = 0; i < NDECOMPRESSORS; i++)
		if (f->a->filters & (1u << i))
			decompressor[i].enable(ar);
	if (archive_read_open_memory(ar, data, len) != ARCHIVE_OK) {
		archive_read_free(ar);
		return 0;
	}
	while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname_utf8(e);
		char last[32], prev[32], type[128];
		size_t want, got = 0;
		unsigned char *head;
		int nested;

		if (name == NULL)
			name = archive_entry_pathname(e);
		if (name == NULL)
			name = "";
		listed++;
		if (archive_format(ar) == ARCHIVE_FORMAT_RAW) {
			/* a stream no archive format took: a compressed file if a
			 * decompressor ran, else nothing we know (a file named
			 * like an archive that is none) */
			if (archive_filter_count(ar) > 1) {
				++f->entries;
				scan_compressed(f, ar, e, archive_name, level);
			} else
				opened = 0;
			break;
		}
		if (++f->entries > f->a->max_entries) {
			archive_unchecked(f, archive_name, "more than attach_archive_max_entries entries");
			break;
		}
		if (over_budget(f, archive_name))     /* spent by an archive read before */
			break;
		check_name(f, name, archive_name);
		/* an entry not looked into is still read to its end here, where
		 * skipping it means decompressing it (a directory or a hard link
		 * may carry data in a tar) */
		if (archive_entry_is_encrypted(e)) {
			encrypted = 1;
			drain(f, ar);
			if (over_budget(f, archive_name))
				break;
			continue;
		}
		if (archive_entry_filetype(e) != AE_IFREG) {
			drain(f, ar);
			if (over_budget(f, archive_name))
				break;
			continue;
		}
		/* what is inside: its type, and an archive in the archive */
		name_exts(name, last, sizeof(last), prev, sizeof(prev));
		nested = level < f->a->archive_depth && is_archive_ext(last) &&
		    archive_entry_size_is_set(e) &&
		    (uint64_t)archive_entry_size(e) <= (uint64_t)f->a->max_nested;
		want = nested ? (size_t)archive_entry_size(e) : MAGIC_HEAD;
		if ((head = read_head(ar, want, &got)) == NULL) {
			/* out of memory: what follows is not read, so not checked */
			archive_unchecked(f, archive_name, "out of memory reading it");
			break;
		}
		f->unpacked += got;
		/* skipping the rest of an entry means decompressing it (a
		 * stream, a solid block), unless it is a zip entry the central
		 * directory sized, which libarchive seeks past: done here, so
		 * that it stops at the budget */
		if (got == want && !((archive_format(ar) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_ZIP &&
		    archive_entry_size_is_set(e)))
			drain(f, ar);
		detect(f->a, head, got, type, sizeof(type));
		if (type_banned(f->r, type)) {
			char what[300], inner[NAME_SHOWN + 8];

			shown(name, inner, sizeof(inner));
			snprintf(what, sizeof(what), "contains %s of type %s", inner, type);
			hit(f, R_ARCHIVE, symbol_of[R_ARCHIVE], archive_name, what);
		}
		if (!nested && is_archive_ext(last)) {
			/* an archive by its name that is not opened: what it holds
			 * is not seen, as past the limits above */
			char why[NAME_SHOWN + 80], inner[NAME_SHOWN + 8];

			shown(name, inner, sizeof(inner));
			snprintf(why, sizeof(why), "%s not opened (%s)", inner,
			    level >= f->a->archive_depth ? "deeper than attach_archive_depth"
			                                  : "over attach_archive_max_size");
			archive_unchecked(f, archive_name, why);
		} else if (!nested && level < f->a->archive_depth && is_archive_type(type)) {
			char nesc[512], aesc[512];

			builtin_log(f->ctx, LOG_DEBUG, "archive not opened (size) file=\"%s\" in=\"%s\"",
			    log_esc_quoted(nesc, sizeof(nesc), name, strlen(name)),
			    log_esc_quoted(aesc, sizeof(aesc), archive_name, strlen(archive_name)));
		}
		if (nested && got > 0) {
			char inner_name[400];

			snprintf(inner_name, sizeof(inner_name), "%s/%s", archive_name, name);
			open_archive(f, head, got, inner_name, level + 1, last, "", type);
		}
		free(head);
		if (over_budget(f, archive_name))
			break;
	}
	if (r == ARCHIVE_FATAL && archive_read_has_encrypted_entries(ar) > 0)
		encrypted = 1;   /* encrypted headers (7z -mhe) */
	else if (r == ARCHIVE_FATAL && listed == 0)
		opened = 0;      /* a signature, then nothing readable */
	else if (r == ARCHIVE_FATAL && listed > 0) {
		/* read in part, then broken: what follows is not seen by us,
		 * but may be by another unpacker (a 7z behind gzip, which
		 * libarchive cannot seek in, lists its names and no more) */
		char why[200];

		snprintf(why, sizeof(why), "unreadable after %u entr%s (%.100s)", listed,
		    listed == 1 ? "y" : "ies", archive_error_string(ar) ? archive_error_string(ar) : "error");
		archive_unchecked(f, archive_name, why);
	}
	if (encrypted)
		hit(f, R_ENCRYPTED, symbol_of[R_ENCRYPTED], archive_name, "encrypted archive");
	archive_read_free(ar);
	return opened;
}

/* ------------------------------------------------------------------ */
/* the hook                                                             */

#define UU_MAX_BLOCKS MIME_MAX_TEXT_FILES   /* uuencoded files looked at per message */

/* check_text_file - a file decoded from a text body (uuencoded, yEnc,
 * BinHex; how says which) under name, label naming it in the part: its
 * type (content rule) and the archive it may be, as an attachment's */
static void check_text_file(struct finding *f, const char *name, const unsigned char *data, size_t len,
                            const char *label, const char *how)
{
	char type[128], last[32], prev[32];

	detect(f->a, data, len, type, sizeof(type));
	if (type_banned(f->r, type)) {
		char what[300];

		snprintf(what, sizeof(what), "%s, content %s", how, type);
		hit(f, R_CONTENT, symbol_of[R_CONTENT], label, what);
	}
	name_exts(name, last, sizeof(last), prev, sizeof(prev));
	if (f->a->scan_archives && len > 0 && (is_archive_type(type) || is_archive_ext(last)))
		open_archive(f, data, len, label, 1, last, "", type);
}

/* The files of a text part found and decoded by the MIME layer
 * (mime_text_files: once per message, for the antivirus too); each one's
 * name, type and archive checked as an attachment's.
 *
 * uuencoded ("begin 644 name" ... "end"), which mail programs show as
 * attachments; past UU_MAX_BLOCKS the message is unchecked. */
static void check_uuencoded(struct finding *f, const struct mime_file *e, size_t idx)
{
	char name[256], label[320];

	if (e->over || ++f->uu_blocks > UU_MAX_BLOCKS) {
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], "message",
		    "more than " STRINGIFY(UU_MAX_BLOCKS) " uuencoded files");
		return;
	}
	snprintf(name, sizeof(name), "%s", e->name);
	blank_controls(name);
	check_name(f, name, NULL);
	snprintf(label, sizeof(label), "%s (uuencoded in part %zu)", name, idx + 1);
	check_text_file(f, name, e->data, e->len, label, "uuencoded");
}

/* yEnc (=ybegin line=128 size=N name=...  ...  =yend), which Usenet
 * programs and Thunderbird show as an attachment from a text body as they
 * do uuencoded files. */
#define ENC_MAX_BLOCKS MIME_MAX_TEXT_FILES   /* yEnc and BinHex files looked at per message */

/* enc_block - one more yEnc or BinHex file (over: one the MIME layer found
 * past its own count): 0, or -1 (said once) past ENC_MAX_BLOCKS */
static int enc_block(struct finding *f, int over)
{
	if (over && f->enc_blocks < ENC_MAX_BLOCKS)
		f->enc_blocks = ENC_MAX_BLOCKS;
	if (++f->enc_blocks == ENC_MAX_BLOCKS + 1)
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], "message",
		    "more than " STRINGIFY(ENC_MAX_BLOCKS) " yEnc or BinHex files");
	return f->enc_blocks > ENC_MAX_BLOCKS ? -1 : 0;
}

/* check_yenc - a yEnc file: its name (from the =ybegin line, the rest of
 * it after "name="), type and archive, as a uuencoded file's; 0, or -1
 * past ENC_MAX_BLOCKS */
static int check_yenc(struct finding *f, const struct mime_file *e, size_t idx)
{
	char name[256], label[320];

	if (enc_block(f, e->over) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s", e->name != NULL ? e->name : "yenc.bin");
	blank_controls(name);
	if (name[0] != '\0')
		check_name(f, name, NULL);
	snprintf(label, sizeof(label), "%s (yEnc in part %zu)", name, idx + 1);
	check_text_file(f, name, e->data, e->len, label, "yEnc");
	return 0;
}

/* BinHex 4.0 ("(This file must be converted with BinHex 4.0)", then the
 * file between ':' and ':'), which Mac mail programs sent and Thunderbird
 * still decodes, in a text body or an application/mac-binhex40 part: six
 * bits a character of its own alphabet, run-length coded with 0x90, then
 * a header holding the file's name, the data fork and the resource fork,
 * each with a CRC.  The header and the data fork are decoded (the file a
 * program saves); the resource fork is not (no file of its own on other
 * systems).  Runs expand up to 255 times: only the data fork's head is
 * decoded unless it is an archive, which is read to attach_archive_max_size
 * (past it: unchecked); the decoder is in textenc.c, the memo of what is
 * decoded (shared with the antivirus, which reads it whole) in
 * mime_files.c. */

/* binhex_file - a BinHex file of the part m->parts[idx] (file names
 * it): its name, the type and archive of its data fork; one that does not
 * decode (bad character, header CRC, cut short) is unchecked */
static void binhex_file(struct finding *f, const struct mime_msg *m, size_t idx, const struct mime_file *e,
                        const char *file)
{
	char name[64], label[320], type[128], last[32], prev[32];
	size_t want, got;
	uint64_t dlen = e->claimed;
	const char *why = NULL;

	switch ((enum binhex_header_result)e->binhex) {
	case BINHEX_MALFORMED:
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, "BinHex file not read (malformed header)");
		return;
	case BINHEX_CUT:
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, "BinHex file not read (header cut short)");
		return;
	case BINHEX_CRC:
		why = "BinHex file not read (header CRC)";
		break;
	case BINHEX_OK:
		break;
	}
	snprintf(name, sizeof(name), "%s", e->name);
	blank_controls(name);
	check_name(f, name, NULL);
	snprintf(label, sizeof(label), "%s (BinHex in part %zu)", name, idx + 1);
	name_exts(name, last, sizeof(last), prev, sizeof(prev));
	want = dlen < MAGIC_HEAD ? (size_t)dlen : MAGIC_HEAD;
	if (why == NULL) {
		int partial = 0;

		/* what decodes is the same bytes however far it was read: a
		 * character out of the alphabet ends it short of what is asked */
		got = mime_file_read(m, e, want);
		if (got > want)         /* read further already (the antivirus) */
			got = want;
		f->unpacked += got;
		detect(f->a, e->data, got, type, sizeof(type));
		if (got == want && dlen > want && f->a->scan_archives &&
		    (is_archive_type(type) || is_archive_ext(last))) {
			/* an archive: the rest of it, within attach_archive_max_size
			 * and the message's unpack budget (runs of 0x90 make 255
			 * bytes of 4 characters: 330 KB of text claim 20 MB) */
			char over[80];

			partial = 1;
			if (dlen > f->a->max_nested)
				archive_unchecked(f, label, "BinHex archive over attach_archive_max_size");
			else if (f->unpacked + dlen > ARCHIVE_UNPACKED_MAX) {
				snprintf(over, sizeof(over), "archives unpack to more than %u MiB",
				    ARCHIVE_UNPACKED_MAX_MIB);
				archive_unchecked(f, label, over);
			} else {
				size_t all = mime_file_read(m, e, (size_t)dlen);

				f->unpacked += all - got;
				got = all;
				want = (size_t)dlen;
				partial = 0;
			}
		}
		if (got < want)
			why = "BinHex file not read (data fork cut short or malformed)";
		else if (!partial)   /* a head known to be partial is no archive to open */
			check_text_file(f, name, e->data, got, label, "BinHex");
	}
	if (why != NULL)
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], label, why);
}

/* check_encoded - the files of the part m->parts[idx]: uuencoded and
 * yEnc ones in a text part, BinHex ones in a text part or one that says it
 * is BinHex (its first line that starts with ':' is one even without the
 * "(This file ..." line) */
static void check_encoded(struct finding *f, const struct mime_msg *m, size_t idx, const char *file)
{
	const struct mime_part *p = &m->parts[idx];
	size_t n;
	const struct mime_file *e = mime_text_files(m, idx, &n);
	int typed = mime_says_binhex(p), found = 0, uu_done = 0, yenc_done = 0, binhex_done = 0;

	for (size_t k = 0; k < n; k++) {
		switch (e[k].kind) {
		case MIME_FILE_UU:
			/* the first past the count is said, the rest of the part not read */
			if (!uu_done && p->is_text) {
				check_uuencoded(f, &e[k], idx);
				uu_done = e[k].over || f->uu_blocks > UU_MAX_BLOCKS;
			}
			break;
		case MIME_FILE_YENC:
			/* yEnc in a part that is only BinHex no program shows */
			if (!yenc_done && p->is_text)
				yenc_done = check_yenc(f, &e[k], idx) < 0;
			break;
		case MIME_FILE_BINHEX:
			found = 1;
			if (!binhex_done) {
				if (enc_block(f, e[k].over) < 0)
					binhex_done = 1;
				else
					binhex_file(f, m, idx, &e[k], file);
			}
			break;
		}
	}
	if (typed && !found)
		/* it says it is BinHex, and a program would decode it so */
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, "BinHex part not read (no BinHex data found)");
}

static void check_part(struct finding *f, const struct mime_msg *m, size_t idx);

/* ------------------------------------------------------------------ */
/* TNEF (winmail.dat)                                                   */

#define TNEF_SIGNATURE   0x223E9F78u
#define TNEF_MAX_ATTRS   20000        /* attributes read; more: unchecked */
#define ATT_ATTACH_REND_DATA 0x00069002u  /* starts an attachment */
#define ATT_ATTACH_TITLE 0x00018010u  /* the file's (often 8.3) name */
#define ATT_ATTACH_DATA  0x0006800Fu  /* the file */
#define ATT_ATTACHMENT   0x00069005u  /* MAPI properties: the long name */

static uint32_t le32(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* tnef_props - the names among the MAPI properties of an attAttachment
 * (PR_ATTACH_LONG_FILENAME 0x3707, PR_ATTACH_FILENAME 0x3704,
 * PR_DISPLAY_NAME 0x3001), checked as names inside the TNEF file.  Stops
 * at a property type it does not know the size of; 0 then, else 1. */
static int tnef_props(struct finding *f, const unsigned char *b, size_t n, const char *file)
{
	const unsigned char *p = b, *end = b + n;
	uint32_t count, i;

	if (n < 4)
		return 0;
	count = le32(p);
	p += 4;
	for (i = 0; i < count; i++) {
		uint16_t type, id, base;
		uint32_t values = 1, v;

		if (end - p < 4)
			return 0;
		type = (uint16_t)(p[0] | p[1] << 8);
		id = (uint16_t)(p[2] | p[3] << 8);
		p += 4;
		if (id >= 0x8000) {               /* named property: GUID, kind, id or name */
			uint32_t kind;

			if (end - p < 24)
				return 0;
			kind = le32(p + 16);
			p += 20;
			if (kind == 0)
				p += 4;
			else {
				uint32_t len = le32(p);

				if ((size_t)(end - p) < 4 || (uint64_t)len + 3 > (uint64_t)(end - p) - 4)
					return 0;
				p += 4 + ((len + 3) & ~3u);
			}
		}
		base = type & ~0x1000;
		if ((type & 0x1000) || base == 0x001E || base == 0x001F || base == 0x0102 || base == 0x000D) {
			if (end - p < 4)
				return 0;
			values = le32(p);
			p += 4;
		}
		for (v = 0; v < values; v++) {
			size_t size;

			switch (base) {
			case 0x0001: case 0x0002: case 0x0003: case 0x0004: case 0x000A: case 0x000B:
				size = 4;
				break;
			case 0x0005: case 0x0006: case 0x0007: case 0x0014: case 0x0040:
				size = 8;
				break;
			case 0x0048:
				size = 16;
				break;
			case 0x001E: case 0x001F: case 0x0102: case 0x000D: {
				uint32_t len;

				if (end - p < 4)
					return 0;
				len = le32(p);
				p += 4;
				if ((uint64_t)len > (uint64_t)(end - p))
					return 0;
				if ((id == 0x3707 || id == 0x3704 || id == 0x3001) && len > 0) {
					char *name = base == 0x001F
					    ? g_utf16_to_utf8((const gunichar2 *)p, len / 2, NULL, NULL, NULL)
					    : base == 0x001E ? g_strndup((const char *)p, len) : NULL;

					if (name != NULL) {
						char *clean = g_utf8_make_valid(name, -1);

						blank_controls(clean);
						check_name(f, clean, file);
						g_free(clean);
						g_free(name);
					}
				}
				size = ((size_t)len + 3) & ~(size_t)3;
				if (size > (size_t)(end - p))
					size = (size_t)(end - p);
				break;
			}
			default:
				return 0;          /* a size we do not know: the rest unread */
			}
			if ((size_t)(end - p) < size)
				return 0;
			p += size;
		}
	}
	return 1;
}

/* check_tnef - the files inside a TNEF stream (application/ms-tnef,
 * winmail.dat: Outlook opens them as attachments): their names (title
 * and long name) and types as those of an archive's entries, archives
 * among them opened.  A stream that does not parse to its end, or has
 * more than TNEF_MAX_ATTRS attributes, is unchecked. */
static void check_tnef(struct finding *f, const struct mime_part *p, const char *file)
{
	const unsigned char *b = p->raw;
	size_t n = p->raw_len, off = 6;
	unsigned attrs = 0;
	char title[256] = "", why[120];

	if (n < 6 || le32(b) != TNEF_SIGNATURE)
		return;
	while (off < n) {
		uint32_t id, len;
		const unsigned char *d;

		if (++attrs > TNEF_MAX_ATTRS) {
			snprintf(why, sizeof(why), "TNEF with more than %u attributes", TNEF_MAX_ATTRS);
			archive_unchecked(f, file, why);
			return;
		}
		if (n - off < 9 || (uint64_t)(len = le32(b + off + 5)) + 2 > (uint64_t)(n - off - 9)) {
			archive_unchecked(f, file, "TNEF stream truncated or malformed");
			return;
		}
		id = le32(b + off + 1);
		d = b + off + 9;
		off += 9 + (size_t)len + 2;
		if (id == ATT_ATTACH_REND_DATA)
			title[0] = '\0';          /* a new attachment starts */
		else if (id == ATT_ATTACH_TITLE) {
			snprintf(title, sizeof(title), "%.*s", (int)strnlen((const char *)d, len), (const char *)d);
			blank_controls(title);
			check_name(f, title, file);
		} else if (id == ATT_ATTACH_DATA && len > 0) {
			char type[128], last[32], prev[32], label[400];

			detect(f->a, d, len, type, sizeof(type));
			if (type_banned(f->r, type)) {
				char what[300], inner[NAME_SHOWN + 8];

				shown(title[0] ? title : "a file", inner, sizeof(inner));
				snprintf(what, sizeof(what), "contains %s of type %s", inner, type);
				hit(f, R_ARCHIVE, symbol_of[R_ARCHIVE], file, what);
			}
			name_exts(title, last, sizeof(last), prev, sizeof(prev));
			if (f->a->scan_archives && (is_archive_type(type) || is_archive_ext(last))) {
				snprintf(label, sizeof(label), "%.140s/%.250s", file, title[0] ? title : "data");
				open_archive(f, d, len, label, 1, last, "", type);
			}
		} else if (id == ATT_ATTACHMENT && !tnef_props(f, d, len, file)) {
			char fesc[512];

			builtin_log(f->ctx, LOG_DEBUG, "TNEF attachment properties not all read file=\"%s\"",
			    log_esc_quoted(fesc, sizeof(fesc), file, strlen(file)));
		}
	}
}

#define EMBED_MAX_LEVELS 8   /* messages in messages parsed from parts' content */

/* check_embedded - a part that is a whole message the shared parse did not
 * descend into: a message/rfc822 (or message/global) part sent base64 or
 * quoted-printable, which GMime keeps as a leaf, or a file named .eml (a
 * forwarded message attached as application/octet-stream, opened by mail
 * programs as a message).  Its content is parsed and its parts checked as
 * the message's own; a banned file in it makes the outer part the one
 * replaced.  At most EMBED_MAX_LEVELS deep and MIME_MAX_DECODED bytes of
 * such messages per message: past that, unchecked. */
static void check_message(struct finding *f, const unsigned char *data, size_t len, const char *file);

static void check_embedded(struct finding *f, const struct mime_part *p, const char *file)
{
	int eml = strcmp(p->content_type, "message/rfc822") == 0 ||
	    strcmp(p->content_type, "message/global") == 0;
	char last[32], prev[32];

	for (size_t k = 0; !eml && p->names != NULL && p->names[k] != NULL; k++) {
		name_exts(p->names[k], last, sizeof(last), prev, sizeof(prev));
		eml = strcmp(last, "eml") == 0;
	}
	if (eml && p->raw_len > 0)
		check_message(f, p->raw, p->raw_len, file);
}

/* check_message - a message held in a part (file names it) is checked
 * as the message's own parts, within the levels and bytes of
 * EMBED_MAX_LEVELS and MIME_MAX_DECODED */
static void check_message(struct finding *f, const unsigned char *data, size_t len, const char *file)
{
	struct mime_msg *m;

	if (f->embed_level >= EMBED_MAX_LEVELS || f->embedded + len > MIME_MAX_DECODED) {
		char why[200], name[NAME_SHOWN + 8];

		shown(file, name, sizeof(name));
		snprintf(why, sizeof(why), "message %s not opened (%s)", name,
		    f->embed_level >= EMBED_MAX_LEVELS ? "more than " STRINGIFY(EMBED_MAX_LEVELS) " levels"
		                                       : "embedded messages over 64 MiB");
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, why);
		return;
	}
	f->embedded += len;
	m = mime_parse(data, len);
	f->embed_level++;
	for (size_t i = 0; i < m->nparts; i++)
		check_part(f, m, i);
	f->embed_level--;
	if (m->incomplete != NULL)
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, m->incomplete);
	mime_free(m);
}

/* check_smime - an S/MIME part (application/pkcs7-mime, smime.p7m).
 * Opaque signed-data holds the signed message in the clear, and mail
 * programs show its attachments: it is checked as an attached message
 * (a banned file in it makes the part the one replace would remove, which
 * the rewrite refuses: it is signed).  Enveloped data cannot be read:
 * ATTACH_ENCRYPTED_MESSAGE (score 0, no action) says the policy did not
 * see into it, as does the encrypted part of a PGP/MIME message. */
static void check_smime(struct finding *f, const struct mime_part *p, const char *file)
{
	int pkcs7 = strcmp(p->content_type, "application/pkcs7-mime") == 0 ||
	    strcmp(p->content_type, "application/x-pkcs7-mime") == 0;
	char last[32], prev[32];
	int kind;

	if (strcmp(p->content_type, "application/pgp-encrypted") == 0) {
		/* said at the end, unless its "encrypted" part was only signed */
		f->pgp_mime = 1;
		return;
	}
	for (size_t k = 0; !pkcs7 && p->names != NULL && p->names[k] != NULL; k++) {
		name_exts(p->names[k], last, sizeof(last), prev, sizeof(prev));
		pkcs7 = strcmp(last, "p7m") == 0;
	}
	if (!pkcs7 || (kind = mime_cms_kind(p->raw, p->raw_len)) == MIME_CMS_NONE)
		return;
	if (kind == MIME_CMS_ENVELOPED) {
		mw_symbol(f->ctx, "ATTACH_ENCRYPTED_MESSAGE", 0,
		    "%s: S/MIME enveloped data, its content is not checked", file);
		return;
	}
	if (kind == MIME_CMS_SIGNED) {
		size_t n;
		/* a signed-data without its content (detached) has nothing
		 * to show; one OpenSSL cannot read no program shows either */
		unsigned char *content = mime_cms_content(p->raw, p->raw_len, &n);

		if (content != NULL)
			check_message(f, content, n, file);
		free(content);
	}
}

/* is_message_part - a part check_embedded parses as a message (its own
 * parts are then looked at one by one) */
static int is_message_part(const struct mime_part *p)
{
	char last[32], prev[32];

	if (strcmp(p->content_type, "message/rfc822") == 0 || strcmp(p->content_type, "message/global") == 0)
		return 1;
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++) {
		name_exts(p->names[k], last, sizeof(last), prev, sizeof(prev));
		if (strcmp(last, "eml") == 0)
			return 1;
	}
	return 0;
}

/* pgp_named - a part that says it is OpenPGP data (its type, or a name
 * ending .gpg .pgp .asc .sig); *derived gets the name gpg gives what it
 * takes out (the name without that suffix), "" if none */
static int pgp_named(const struct mime_part *p, char *derived, size_t dsz)
{
	static const char *const sfx[] = { ".gpg", ".pgp", ".asc", ".sig", NULL };
	int named = strncmp(p->content_type, "application/pgp", 15) == 0;

	derived[0] = '\0';
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++) {
		size_t n = strlen(p->names[k]);

		for (size_t i = 0; sfx[i] != NULL; i++)
			if (n > 4 && strcasecmp(p->names[k] + n - 4, sfx[i]) == 0) {
				named = 1;
				if (derived[0] == '\0')
					snprintf(derived, dsz, "%.*s", (int)(n - 4), p->names[k]);
			}
	}
	return named;
}

/* check_pgp_file - the literal data of an OpenPGP message that is no MIME
 * entity: the file gpg writes, under the name the packet gives it and the
 * one of the part without its suffix, checked as a compressed file's is:
 * names, type, and the archive it may be */
static void check_pgp_file(struct finding *f, const struct pgp_literal *lit, const char *derived,
                           const char *file)
{
	char type[128], last[32], prev[32], dlast[32];
	const char *inner = lit->name[0] ? lit->name : derived[0] ? derived : "its content";

	if (lit->name[0] != '\0')
		check_name(f, lit->name, file);
	if (derived[0] != '\0' && strcmp(derived, lit->name) != 0)
		check_name(f, derived, file);
	detect(f->a, lit->data, lit->len, type, sizeof(type));
	if (type_banned(f->r, type)) {
		char what[300], shown_inner[NAME_SHOWN + 8];

		shown(inner, shown_inner, sizeof(shown_inner));
		snprintf(what, sizeof(what), "contains %s of type %s", shown_inner, type);
		hit(f, R_ARCHIVE, symbol_of[R_ARCHIVE], file, what);
	}
	name_exts(lit->name, last, sizeof(last), prev, sizeof(prev));
	name_exts(derived, dlast, sizeof(dlast), prev, sizeof(prev));
	if (f->a->scan_archives && lit->len > 0 &&
	    (is_archive_ext(last) || is_archive_ext(dlast) || is_archive_type(type))) {
		char label[400];

		snprintf(label, sizeof(label), "%.200s/%.190s", file, inner);
		if (lit->len > f->a->max_nested)
			archive_unchecked(f, file, "signed archive over attach_archive_max_size");
		else
			open_archive(f, lit->data, lit->len, label, 1, last, dlast, type);
	}
}

/* check_pgp - an opaque OpenPGP signed message in a part (armored blocks
 * anywhere in it, or the part a binary message): its literal data is
 * what the recipient's program shows or saves, checked as an attached
 * message when it is a MIME entity (PGP/MIME), else as a file.  Encrypted
 * messages cannot be read and are left as they were.  One that cannot be
 * read (a limit, or malformed where the part is armored or says it is
 * OpenPGP) is unchecked. */
static void check_pgp(struct finding *f, const struct mime_part *p, const char *file)
{
	size_t pos = 0, at, blen;
	int armored = 0;
	char derived[300];
	int named = pgp_named(p, derived, sizeof(derived));

	if (p->raw_len == 0)
		return;
	for (;;) {
		const unsigned char *d;
		size_t n;
		struct pgp_literal lit;
		char why[150], what[300];
		enum pgp_result res;

		if (pgp_armor_find(p->raw, p->raw_len, &pos, &at, &blen)) {
			armored = 1;
			d = p->raw + at;
			n = blen;
		} else if (!armored && pos == p->raw_len && pgp_binary_sniff(p->raw, p->raw_len)) {
			armored = -1;        /* the whole part, once */
			d = p->raw;
			n = p->raw_len;
		} else
			return;
		if (f->embed_level >= EMBED_MAX_LEVELS || f->embedded >= MIME_MAX_DECODED) {
			snprintf(what, sizeof(what), "OpenPGP message not read (%s)",
			    f->embed_level >= EMBED_MAX_LEVELS ? "more than " STRINGIFY(EMBED_MAX_LEVELS) " levels"
			                                       : "embedded messages over 64 MiB");
			hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, what);
			return;
		}
		res = pgp_read(d, n, armored > 0, MIME_MAX_DECODED - f->embedded, &lit, why, sizeof(why));
		if (res == PGP_LIMIT || (res == PGP_MALFORMED && (armored > 0 || named))) {
			snprintf(what, sizeof(what), "OpenPGP message not read (%s)", why);
			hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file, what);
		} else if (res == PGP_LITERAL) {
			f->pgp_read++;
			if (pgp_looks_mime(lit.data, lit.len))
				check_message(f, lit.data, lit.len, file);
			else {
				/* a file: its bytes count as an embedded message's */
				f->embedded += lit.len;
				f->embed_level++;
				check_pgp_file(f, &lit, derived, file);
				f->embed_level--;
			}
			free(lit.data);
		}
		if (armored < 0)
			return;
	}
}

static void check_part(struct finding *f, const struct mime_msg *m, size_t idx)
{
	const struct mime_part *p = &m->parts[idx];
	const char *declared = p->declared_type[0] ? p->declared_type : p->content_type;
	char type[128], label[64], last[32], prev[32];
	const char *file;
	int declared_banned = 0;      /* another Content-Type field's type is banned */

	if (p->filename != NULL)
		file = p->filename;
	else {
		snprintf(label, sizeof(label), "part %zu (%s)", idx + 1, p->content_type);
		file = label;
	}
	/* every name the fields give (filename=, name=, repeated ones,
	 * repeated fields) */
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++)
		check_name(f, p->names[k], NULL);
	if (p->names_truncated)
		/* no mailer names a file that many ways: the names not kept
		 * could be the one a program saves it under */
		hit(f, R_UNCHECKED, symbol_of[R_UNCHECKED], file,
		    "more than 64 names or 16 Content-Type/Content-Disposition fields, not all checked");
	if (p->raw_len > 0)
		check_encoded(f, m, idx, file);
	if (type_banned(f->r, declared)) {
		char what[300];

		snprintf(what, sizeof(what), "type %s", declared);
		hit(f, R_TYPE, symbol_of[R_TYPE], file, what);
	}
	/* a Content-Type field given twice: mail programs differ on which
	 * one they take, so each type declared is checked */
	for (size_t k = 0; p->types != NULL && p->types[k] != NULL; k++)
		if (strcmp(p->types[k], declared) != 0 && type_banned(f->r, p->types[k])) {
			char what[300];

			snprintf(what, sizeof(what), "type %s", p->types[k]);
			hit(f, R_TYPE, symbol_of[R_TYPE], file, what);
			declared_banned = 1;
		}
	/* a text body without a name holds no program unless it has NULs
	 * (every executable header does): libmagic is spared the rest */
	if (p->filename == NULL && p->is_text &&
	    memchr(p->raw, '\0', p->raw_len < MAGIC_HEAD ? p->raw_len : MAGIC_HEAD) == NULL)
		type[0] = '\0';
	else
		detect(f->a, p->raw, p->raw_len, type, sizeof(type));
	if (type[0] != '\0' && type_banned(f->r, type) && !type_banned(f->r, declared) && !declared_banned) {
		char what[400];

		snprintf(what, sizeof(what), "declared %.200s, content %s", declared, type);
		hit(f, R_CONTENT, symbol_of[R_CONTENT], file, what);
	}
	check_embedded(f, p, file);
	check_smime(f, p, file);
	if (!is_message_part(p))
		check_pgp(f, p, file);
	check_tnef(f, p, file);
	if (f->a->scan_archives && p->raw_len > 0) {
		name_exts(p->filename != NULL ? p->filename : "", last, sizeof(last), prev, sizeof(prev));
		if (is_archive_type(type) || is_archive_ext(last))
			open_archive(f, p->raw, p->raw_len, file, 1, last, "", type);
	}
}

/* replace_parts - the leaves to replace become text parts in the body
 * the message leaves with.  Where that cannot be done (a structure the
 * parse found broken, a rewrite that fails) the message is quarantined:
 * the banned file never goes on, and the recipient's mail is not lost.
 * A message this filter quarantines anyway (another part's rule) is
 * rewritten too, for its release (an admin releasing it lets through what
 * that rule held, not the files replace rules remove); a rewrite that
 * fails then leaves its reason alone and the release sends it as it came. */
static void replace_parts(struct finding *f, const struct mime_msg *m)
{
	size_t len;
	const unsigned char *msg = mw_message(f->ctx, &len);
	struct sbuf rest;
	char err[200];
	const char *what = "";
	int top, rc, held = f->worst == ATTACH_QUARANTINE;

	if (m->parse_error) {
		snprintf(err, sizeof(err), "the MIME structure is broken");
		goto quarantine;
	}
	sbuf_init(&rest, len + f->nrep * 1024 + 4096);
	rc = mime_replace_parts(msg, len, m, f->rep, f->nrep, rest.limit, &rest, &top, err, sizeof(err));
	if (rc < 0) {
		sbuf_free(&rest);
		/* a broken signature on a genuine message is worse than a
		 * quarantine: the recipient is told the mail was forged */
		if (rc == MIME_REPLACE_SIGNED)
			what = ", signed message";
		else if (rc == MIME_REPLACE_ENCRYPTED)
			what = ", encrypted message";
		goto quarantine;
	}
	mw_symbol(f->ctx, "ATTACH_REPLACED", 0, "%zu part%s replaced by a text part", f->nrep,
	    f->nrep == 1 ? "" : "s");
	mw_log(f->ctx, LOG_NOTICE, "%zu banned attachment%s replaced by a text part", f->nrep,
	    f->nrep == 1 ? "" : "s");
	builtin_new_body(f->ctx, rest.data ? rest.data : xstrdup(""), rest.len, top);
	return;
quarantine:
	if (held) {
		mw_log(f->ctx, LOG_WARNING, "cannot replace the banned attachment (%s): held for "
		    "another part, and a release sends it as it came", err);
		return;
	}
	mw_log(f->ctx, LOG_WARNING, "cannot replace the banned attachment (%s): quarantined", err);
	f->worst = ATTACH_QUARANTINE;
	snprintf(f->reason + strlen(f->reason), sizeof(f->reason) - strlen(f->reason),
	    "%s, not replaceable", what);
}

static void attach_eom(struct mw_ctx *ctx)
{
	struct attach *a = mw_instance(ctx);
	const struct mime_msg *m = mime_get(ctx);
	struct finding f;
	size_t i;

	memset(&f, 0, sizeof(f));
	f.a = a;
	f.ctx = ctx;
	f.r = &a->dir[mw_direction(ctx) == MW_OUTBOUND ? 1 : 0];
	for (i = 0; i < m->nparts; i++) {
		f.part = i;
		check_part(&f, m, i);
	}
	if (m->incomplete != NULL)
		hit(&f, R_UNCHECKED, symbol_of[R_UNCHECKED], "message", m->incomplete);
	if (f.pgp_mime && f.pgp_read == 0)
		mw_symbol(ctx, "ATTACH_ENCRYPTED_MESSAGE", 0, "PGP/MIME encrypted: its content is not checked");
	if (f.worst == ATTACH_REPLACE || (f.worst == ATTACH_QUARANTINE && f.nrep > 0))
		replace_parts(&f, m);
	switch (f.worst) {
	case ATTACH_REJECT:
		mw_verdict(ctx, MW_REJECT, f.reason);
		break;
	case ATTACH_QUARANTINE:
		mw_verdict(ctx, MW_QUARANTINE, f.reason);
		break;
	case ATTACH_REPLACE:
	case ATTACH_TAG:
		if (f.tag_reason[0] != '\0')
			mw_verdict(ctx, MW_TAG, f.tag_reason);
		break;
	default:
		break;
	}
	for (i = 0; i < f.nrep; i++)
		free((char *)f.rep[i].note);
	free(f.rep);
}

/* ------------------------------------------------------------------ */
/* setup                                                                */

static void words_free(char **w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

/* words - split a list setting (spaces or commas), lower case, each
 * checked by ok(); 0 or -1 with err. */
static int words(const char *setting, const char *v, int (*ok)(const char *),
                 char ***out, size_t *nout, char *err, size_t errlen)
{
	char **w = calloc(MAX_WORDS, sizeof(*w));
	size_t n = 0;

	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		size_t k;
		char *s;

		v += strspn(v, " \t,");
		if ((k = strcspn(v, " \t,")) == 0)
			break;
		if (n == MAX_WORDS) {
			snprintf(err, errlen, "%s: more than %d entries", setting, MAX_WORDS);
			words_free(w, n);
			return -1;
		}
		if ((s = strndup(*v == '.' ? v + 1 : v, *v == '.' ? k - 1 : k)) == NULL) {
			words_free(w, n);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (char *p = s; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (!ok(s)) {
			snprintf(err, errlen, "%s: bad entry \"%s\"", setting, s);
			free(s);
			words_free(w, n);
			return -1;
		}
		w[n++] = s;
		v += k;
	}
	*out = w;
	*nout = n;
	return 0;
}

static int ext_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 16)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return 0;
	return 1;
}

static int type_ok(const char *s)
{
	const char *slash = strchr(s, '/');

	if (slash == NULL || slash == s || slash[1] == '\0' || strchr(slash + 1, '/') != NULL ||
	    strlen(s) > 100)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("/.+-_*", *s) == NULL)
			return 0;
	return 1;
}

static void attach_fini(void *instance)
{
	struct attach *a = instance;
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < 2; i++) {
		words_free(a->dir[i].ext, a->dir[i].next);
		words_free(a->dir[i].types, a->dir[i].ntypes);
	}
	for (i = 0; i < a->magic.nfree; i++)
		magic_close(a->magic.free[i]);
	pthread_mutex_destroy(&a->magic.lock);
	free(a);
}

static int attach_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	const struct config *c = env->cfg;
	struct attach *a = calloc(1, sizeof(*a));
	magic_t m;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&a->magic.lock, NULL);
	if (words("attach_inbound_banned_extensions", c->attach_inbound_banned_extensions, ext_ok,
	        &a->dir[0].ext, &a->dir[0].next, err, errlen) < 0 ||
	    words("attach_outbound_banned_extensions", c->attach_outbound_banned_extensions, ext_ok,
	        &a->dir[1].ext, &a->dir[1].next, err, errlen) < 0 ||
	    words("attach_inbound_banned_types", c->attach_inbound_banned_types, type_ok,
	        &a->dir[0].types, &a->dir[0].ntypes, err, errlen) < 0 ||
	    words("attach_outbound_banned_types", c->attach_outbound_banned_types, type_ok,
	        &a->dir[1].types, &a->dir[1].ntypes, err, errlen) < 0) {
		attach_fini(a);
		return -1;
	}
	a->dir[0].action[R_EXTENSION] = c->attach_inbound_extension_action;
	a->dir[0].action[R_TYPE] = c->attach_inbound_type_action;
	a->dir[0].action[R_CONTENT] = c->attach_inbound_content_action;
	a->dir[0].action[R_ARCHIVE] = c->attach_inbound_archive_action;
	a->dir[0].action[R_ENCRYPTED] = c->attach_inbound_encrypted_action;
	a->dir[1].action[R_EXTENSION] = c->attach_outbound_extension_action;
	a->dir[1].action[R_TYPE] = c->attach_outbound_type_action;
	a->dir[1].action[R_CONTENT] = c->attach_outbound_content_action;
	a->dir[1].action[R_ARCHIVE] = c->attach_outbound_archive_action;
	a->dir[1].action[R_ENCRYPTED] = c->attach_outbound_encrypted_action;
	a->dir[0].action[R_UNCHECKED] = c->attach_inbound_unchecked_action;
	a->dir[1].action[R_UNCHECKED] = c->attach_outbound_unchecked_action;
	a->scan_archives = c->attach_scan_archives;
	a->archive_depth = c->attach_archive_depth;
	a->max_entries = c->attach_archive_max_entries;
	a->max_nested = (size_t)c->attach_archive_max_size;
	a->filters = builtin_decompressors();
	/* the magic database must load now, not at the first message */
	if ((m = magic_new()) == NULL) {
		snprintf(err, errlen, "libmagic: cannot load the default magic database");
		attach_fini(a);
		return -1;
	}
	magic_give(a, m);
	*instance = a;
	return 0;
}

static const struct mw_filter_ops attach_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "attachments",
	.fini = attach_fini,
	.on_eom = attach_eom,
};

const struct builtin_filter builtin_attachments = {
	.name = "attachments",
	.ops = &attach_ops,
	.setup = attach_setup,
};
