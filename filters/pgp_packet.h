/* pgp_packet.h - the literal data of an opaque OpenPGP signed message
 * (gpg --sign, armored or not: a compressed-data packet holding a
 * one-pass signature, the literal data and the signature), read without
 * any key, for the filters that look into what the engines cannot open.
 *
 * RFC 4880 / RFC 9580 packet framing (old and new headers, partial body
 * lengths), ASCII armor (CRC24 checked when present), compressed data
 * (uncompressed, ZIP, ZLIB, BZip2), one-pass signature, literal data,
 * signature, marker and padding packets.  Everything is bounded: what is
 * refused is said (a limit or a malformed message), never taken as clean.
 * Thread-safety: no shared state. */
#ifndef MW_PGP_PACKET_H
#define MW_PGP_PACKET_H

#include <stddef.h>

#define PGP_MAX_DEPTH   4        /* compressed packets inside compressed packets */
#define PGP_MAX_PACKETS 10000    /* packets read, all levels together */
#define PGP_MAX_RATIO   1000     /* decompressed bytes per byte of input ... */
#define PGP_RATIO_FLOOR (1u << 20) /* ... once past this many decompressed */
#define PGP_NAME_MAX    255      /* a literal packet's file name (one length octet) */

enum pgp_result {
	PGP_LITERAL,     /* out holds the literal data */
	PGP_NONE,        /* no literal data (a signature, a marker alone) */
	PGP_ENCRYPTED,   /* an encrypted message: nothing to read without a key */
	PGP_LIMIT,       /* past a bound (depth, size, ratio, packets): why says */
	PGP_MALFORMED,   /* does not parse (armor, framing, a packet, a stream) */
};

struct pgp_literal {
	unsigned char *data;          /* malloc'd, a NUL after len bytes; free */
	size_t         len;
	char           name[PGP_NAME_MAX + 1];   /* as sent, NUL bytes cut it */
	char           format;        /* 'b', 't', 'u', 'm' ... */
};

/* pgp_armor_find - the next armored OpenPGP message ("-----BEGIN PGP
 * MESSAGE-----" at a line start, to its END line or the end of d) at or
 * after *pos: 1 with *start and *len set and *pos past it, 0 when none */
int pgp_armor_find(const unsigned char *d, size_t n, size_t *pos, size_t *start, size_t *len);

/* pgp_binary_sniff - d starts as a binary OpenPGP message that may hold
 * literal data or is encrypted: a well-framed first packet that is
 * compressed data (a known algorithm), a one-pass signature, literal
 * data, a marker, a signature or an encrypted (session key, data) one */
int pgp_binary_sniff(const unsigned char *d, size_t n);

/* pgp_read - the literal data of the message in d (armored: the text of
 * one block as pgp_armor_find gives it; else binary packets).  max bounds
 * each decompressed stream and the literal data; all decompression
 * together gets 2 * max and PGP_MAX_RATIO.  PGP_LITERAL with *out filled
 * (free out->data), or another result with why (NUL-terminated). */
enum pgp_result pgp_read(const unsigned char *d, size_t n, int armored, size_t max,
                         struct pgp_literal *out, char *why, size_t whylen);

/* pgp_looks_mime - the literal data is a MIME entity (PGP/MIME, RFC 3156:
 * header fields, a Content-Type among them, before the first empty line),
 * which is read as a message rather than as a file */
int pgp_looks_mime(const unsigned char *d, size_t n);

#endif
