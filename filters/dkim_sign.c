/* dkim_sign.c - the built-in "dkim_sign" filter: DKIM signatures (RFC 6376,
 * relaxed/relaxed) on outbound messages, with libopendkim.
 *
 * Signing happens in the finalize hook: after policy and after every other
 * filter's header edits, on the message exactly as it will leave, so no
 * later change can break the signature.  The key table (dkim_sign_key
 * lines "DOMAIN SELECTOR /path/key.pem") maps the domain of the From
 * field to keys; a domain with two keys (RSA and Ed25519, RFC 8463) gets
 * two signatures.  Key files are read once at setup; a key that cannot be
 * read or is neither RSA nor Ed25519 fails the setup (mailwarden -t says
 * which).  dkim_sign_headers names the signed fields; the fields of
 * dkim_oversign_headers are signed once more than they occur, so nobody
 * can add another From, To or Subject after us.  A message whose From
 * does not hold exactly one address is not signed (and logged).  What was
 * done goes with the result (scan_result.dkim_sign) into the audit record,
 * so that an outbound message that left unsigned is seen there.  A key
 * file every local user may read or write is refused (key_mode_check).
 *
 * libopendkim 2.11.0~beta2 leaks every Ed25519 signing context: dkim_free()
 * frees its key material only for RSA (measured with LeakSanitizer: the
 * 64-byte struct dkim_crypto plus OpenSSL's EVP_PKEY and BIO, about 1.2 KB
 * a signature).  A scanner signing millions of messages cannot live with
 * that, so the signing library gets our allocator (dkim_init's mallocf/
 * freef, one tracker per signature as the memory closure): after
 * dkim_free() whatever the handle still holds is the leak.  Before
 * dkim_free() the crypto struct is recognised by its contents (keysize
 * 512 bits, a 64-byte output buffer that is itself one of the handle's
 * blocks, an EVP_PKEY that says Ed25519) and its EVP_PKEY noted; after it,
 * that key and every block left are freed.  See sign_free().
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <dkim.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "filters/addrlist.h"
#include "filters/builtin.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/monotime.h"
#include "proxy/sbuf.h"
#include "proxy/uplog.h"

#define SIGN_MAX_KEYS 32
#define SIGN_MAX_HDRS 64
#define KEY_FILE_MAX  (64 * 1024)

/* --- an allocator that knows what a DKIM handle still holds ----------- */

struct mblk {                       /* header of each block; 32 bytes keeps
	                             * malloc's 16-byte alignment */
	struct mblk *prev, *next;
	size_t size;
	size_t pad;
};

struct mtrack {
	struct mblk head;                /* sentinel of a circular list */
};

static void *track_malloc(void *closure, size_t n)
{
	struct mtrack *t = closure;
	struct mblk *b;

	if (t == NULL)                   /* library-wide allocations */
		return malloc(n);
	if (n > SIZE_MAX - sizeof(*b) || (b = malloc(sizeof(*b) + n)) == NULL)
		return NULL;
	b->size = n;
	b->next = t->head.next;
	b->prev = &t->head;
	t->head.next->prev = b;
	t->head.next = b;
	return b + 1;
}

static void track_free(void *closure, void *p)
{
	struct mblk *b;

	if (closure == NULL) {
		free(p);
		return;
	}
	if (p == NULL)
		return;
	b = (struct mblk *)p - 1;
	b->prev->next = b->next;
	b->next->prev = b->prev;
	free(b);
}

static void track_init(struct mtrack *t)
{
	t->head.next = t->head.prev = &t->head;
}

static int track_holds(const struct mtrack *t, const void *p, size_t size)
{
	const struct mblk *b;

	for (b = t->head.next; b != &t->head; b = b->next)
		if ((const void *)(b + 1) == p && b->size == size)
			return 1;
	return 0;
}

/* The OpenSSL branch of libopendkim 2.11's struct dkim_crypto (dkim-types.h):
 * u_char pad; int keysize; size_t inlen, outlen; EVP_PKEY *pkey; void *key;
 * BIO *keydata; u_char *in, *out; -- 64 bytes on LP64. */
#define CRYPTO_SIZE        64
#define CRYPTO_OFF_KEYSIZE 4
#define CRYPTO_OFF_OUTLEN  16
#define CRYPTO_OFF_PKEY    24
#define CRYPTO_OFF_OUT     56
#define ED25519_SIG_BYTES  64

/* ed25519_pkey - before dkim_free(): the EVP_PKEY of the handle's Ed25519
 * crypto struct, recognised by its contents, or NULL */
static EVP_PKEY *ed25519_pkey(const struct mtrack *t)
{
	const struct mblk *b;

	for (b = t->head.next; b != &t->head; b = b->next) {
		const unsigned char *c = (const unsigned char *)(b + 1);
		int keysize;
		size_t outlen;
		void *pkey, *out;

		if (b->size != CRYPTO_SIZE)
			continue;
		memcpy(&keysize, c + CRYPTO_OFF_KEYSIZE, sizeof(keysize));
		memcpy(&outlen, c + CRYPTO_OFF_OUTLEN, sizeof(outlen));
		memcpy(&pkey, c + CRYPTO_OFF_PKEY, sizeof(pkey));
		memcpy(&out, c + CRYPTO_OFF_OUT, sizeof(out));
		if (keysize == ED25519_SIG_BYTES * 8 && outlen == ED25519_SIG_BYTES && pkey != NULL &&
		    track_holds(t, out, ED25519_SIG_BYTES) &&
		    EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519)
			return pkey;
	}
	return NULL;
}

/* free_leftovers - after dkim_free(): every block the handle still holds */
static void free_leftovers(struct mtrack *t)
{
	struct mblk *b, *next;

	for (b = t->head.next; b != &t->head; b = next) {
		next = b->next;
		free(b);
	}
	track_init(t);
}

/* sign_free - dkim_free() and what it forgets for Ed25519 (the EVP_PKEY and
 * the signature buffer; it does free the struct and the BIO) */
static void sign_free(DKIM *d, struct mtrack *t, dkim_alg_t alg)
{
	/* only the version known to leak: a fixed library would free the key
	 * itself, and freeing it again would be a double free */
	EVP_PKEY *pk = alg == DKIM_SIGN_ED25519SHA256 && dkim_libversion() == 0x020B0000 ?
	    ed25519_pkey(t) : NULL;

	dkim_free(d);
	if (pk != NULL)
		EVP_PKEY_free(pk);
	free_leftovers(t);
}

struct sign_key {
	char domain[ADDR_DOMAIN_MAX + 1];
	char selector[64];
	char *pem;                         /* owned: the key file */
	char *record;                      /* owned: its public key as the TXT
	                                    * record a verifier would fetch */
	dkim_alg_t alg;                    /* RSA-SHA256 or Ed25519-SHA256 */
};

struct sign_inst {
	DKIM_LIB *lib;
	DKIM_LIB *vlib;                    /* verifies our own signatures, keys
	                                    * from the table: no DNS */
	struct sign_key keys[SIGN_MAX_KEYS];
	size_t nkeys;
	char *hdr_words, *over_words;      /* owned: the lists, split in place */
	const char *hdrs[SIGN_MAX_HDRS + 1], *over[SIGN_MAX_HDRS + 1];
};

/* split_list - "a:b:c" in place into a NULL-terminated array; count */
static size_t split_list(char *s, const char **out, size_t max)
{
	size_t n = 0;
	char *tok, *save = NULL;

	for (tok = strtok_r(s, ": \t,", &save); tok != NULL && n < max;
	     tok = strtok_r(NULL, ": \t,", &save))
		out[n++] = tok;
	out[n] = NULL;
	return n;
}

/* no_passphrase - OpenSSL's default would ask on the terminal: an
 * encrypted key simply fails to load */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

/* key_record - the DNS TXT record of pk's public key (RFC 6376 3.6.1; for
 * Ed25519 the raw key, RFC 8463), as a verifier would fetch it; owned, or
 * NULL */
static char *key_record(EVP_PKEY *pk, int id)
{
	unsigned char *der = NULL, raw[32];
	const unsigned char *pub;
	size_t n;
	int len;
	char *rec = NULL;

	if (id == EVP_PKEY_ED25519) {
		n = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(pk, raw, &n) != 1)
			return NULL;
		pub = raw;
	} else {
		if ((len = i2d_PUBKEY(pk, &der)) <= 0)
			return NULL;
		pub = der;
		n = (size_t)len;
	}
	/* base64: 4 characters per 3 bytes, and the NUL */
	rec = xmalloc(40 + (n + 2) / 3 * 4 + 1);
	len = sprintf(rec, "v=DKIM1; k=%s; p=", id == EVP_PKEY_ED25519 ? "ed25519" : "rsa");
	EVP_EncodeBlock((unsigned char *)rec + len, pub, (int)n);
	OPENSSL_free(der);
	return rec;
}

/* key_mode_check - the key file f (path) as opened, by the user the
 * scanner runs as (setup runs as that user, in `mailwarden -t` too).  A
 * private key that every local user may read signs nothing a receiver
 * should believe, and one they may write lets them sign as the site:
 * refused, as opendkim does by default (RequireSafeKeys) and OpenSSH
 * does for its keys; the admin's fix is a chmod, and -t says which.  A
 * key a group may write, or read when that group is not the one the
 * scanner runs as (root:mailwarden 0640 is the usual way to give it
 * the key), is a warning: a group is a choice the admin made.  0, or -1
 * with err. */
static int key_mode_check(FILE *f, const char *path, char *err, size_t errlen)
{
	struct stat st;
	unsigned mode;

	if (fstat(fileno(f), &st) < 0) {
		snprintf(err, errlen, "dkim_sign_key: cannot stat %s", path);
		return -1;
	}
	mode = (unsigned)(st.st_mode & 07777);
	if (mode & 0006) {
		snprintf(err, errlen, "dkim_sign_key: %s is mode %04o: every local user may %s the "
		    "private key (chmod o-rwx %s)", path, mode, mode & 0002 ? "change" : "read", path);
		return -1;
	}
	if ((mode & 0020) || ((mode & 0040) && st.st_gid != getegid()))
		slog(NULL, LOG_WARNING, "dkim_sign_key: %s is mode %04o, group %u: the users of that "
		    "group may %s the private key", path, mode, (unsigned)st.st_gid,
		    mode & 0020 ? "change" : "read");
	return 0;
}

/* load_key - read and classify one key file; 0 or -1 with err */
static int load_key(struct sign_key *k, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *pk;
	size_t n;
	int id;

	if (f == NULL) {
		snprintf(err, errlen, "dkim_sign_key: cannot open %s", path);
		return -1;
	}
	if (key_mode_check(f, path, err, errlen) < 0) {
		fclose(f);
		return -1;
	}
	k->pem = xmalloc(KEY_FILE_MAX + 1);
	n = fread(k->pem, 1, KEY_FILE_MAX, f);
	k->pem[n] = '\0';
	rewind(f);
	pk = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (pk == NULL) {
		snprintf(err, errlen, "dkim_sign_key: %s is not an unencrypted PEM private key", path);
		return -1;
	}
	id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_RSA)
		k->alg = DKIM_SIGN_RSASHA256;
	else if (id == EVP_PKEY_ED25519)
		k->alg = DKIM_SIGN_ED25519SHA256;
	else {
		EVP_PKEY_free(pk);
		snprintf(err, errlen, "dkim_sign_key: %s is neither an RSA nor an Ed25519 key", path);
		return -1;
	}
	k->record = key_record(pk, id);
	EVP_PKEY_free(pk);
	if (k->record == NULL) {
		snprintf(err, errlen, "dkim_sign_key: %s: cannot derive its public key", path);
		return -1;
	}
	return 0;
}

/* --- signatures of ours the message already carries ---------------------
 *
 * A message that passes through mailwarden twice (released from the
 * quarantine to an MTA that runs our milter, or relayed back through the
 * proxy) carried our signature already and got a second one by the same
 * key.  Two signatures of one key say nothing more than one, double the
 * verifiers' work, and a receiver's signature count or size limit may
 * drop the message's good one.  So a key signs only when the message does
 * not carry a signature of that key (its d= and s=, its algorithm, no l=)
 * that verifies over the message exactly as it now leaves; one that no
 * longer does (the second pass changed a signed field) is left as it is
 * and a fresh one added, as before.  The check needs no DNS: the key
 * comes from the table (own_key_lookup), and other signers' signatures
 * are not verified at all (own_prescreen). */

static const struct sign_key *key_of(const struct sign_inst *in, const char *dom, const char *sel)
{
	for (size_t i = 0; dom != NULL && sel != NULL && i < in->nkeys; i++)
		if (strcasecmp(in->keys[i].domain, dom) == 0 && strcmp(in->keys[i].selector, sel) == 0)
			return &in->keys[i];
	return NULL;
}

static DKIM_CBSTAT own_key_lookup(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	const struct sign_inst *in = dkim_get_user_context(d);
	const struct sign_key *k = in == NULL ? NULL :
	    key_of(in, (const char *)dkim_sig_getdomain(sig), (const char *)dkim_sig_getselector(sig));

	if (k == NULL || strlen(k->record) >= buflen)
		return DKIM_CBSTAT_NOTFOUND;
	memcpy(buf, k->record, strlen(k->record) + 1);
	return DKIM_CBSTAT_CONTINUE;
}

/* own_prescreen - only signatures naming a key of ours, at most
 * SIGN_MAX_KEYS of them (each costs a public-key operation) */
static DKIM_CBSTAT own_prescreen(DKIM *d, DKIM_SIGINFO **sigs, int nsigs)
{
	const struct sign_inst *in = dkim_get_user_context(d);
	int kept = 0;

	for (int i = 0; i < nsigs; i++)
		if (in == NULL || kept == SIGN_MAX_KEYS ||
		    key_of(in, (const char *)dkim_sig_getdomain(sigs[i]),
		        (const char *)dkim_sig_getselector(sigs[i])) == NULL)
			dkim_sig_ignore(sigs[i]);
		else
			kept++;
	return DKIM_CBSTAT_CONTINUE;
}

static int has_signature(const char *hdrs, size_t len)
{
	struct header_field f;
	size_t pos = 0;

	while (header_next(hdrs, len, &pos, &f) == 1)
		if (header_name_is(&f, DKIM_SIGNHEADER))
			return 1;
	return 0;
}

/* feed - the message as it leaves (m) through d, up to its end (the
 * caller's dkim_eom): DKIM_STAT_OK or the first failure */
static DKIM_STAT feed(DKIM *d, const struct final_msg *m)
{
	DKIM_STAT st = dkim_chunk(d, (u_char *)m->headers, m->headers_len);

	if (st == DKIM_STAT_OK)
		st = dkim_chunk(d, (u_char *)m->rest, m->rest_len);
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(d, NULL, 0);
	return st;
}

/* verified_keys - done[i] = 1 for each key i of the table of which the
 * message, as it leaves (m), carries a signature that verifies */
static void verified_keys(const struct sign_inst *in, const struct final_msg *m, int *done)
{
	DKIM_SIGINFO **sigs = NULL;
	DKIM_STAT st;
	DKIM *d;
	int nsigs = 0;

	if (!has_signature(m->headers, m->headers_len))
		return;
	d = dkim_verify(in->vlib, (const u_char *)m->req->session_id, NULL, &st);
	if (d == NULL)
		return;
	dkim_set_user_context(d, (void *)in);
	st = feed(d, m);
	if (st == DKIM_STAT_OK)
		(void)dkim_eom(d, NULL);      /* each signature's own result below */
	if (st == DKIM_STAT_OK && dkim_getsiglist(d, &sigs, &nsigs) == DKIM_STAT_OK) {
		for (int i = 0; i < nsigs; i++) {
			const struct sign_key *k;
			ssize_t msglen, canonlen, signlen = 0;
			dkim_alg_t alg;

			if ((dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE) || !DKIM_SIG_CHECK(sigs[i]))
				continue;
			k = key_of(in, (const char *)dkim_sig_getdomain(sigs[i]),
			    (const char *)dkim_sig_getselector(sigs[i]));
			if (k == NULL || dkim_sig_getsignalg(sigs[i], &alg) != DKIM_STAT_OK ||
			    alg != k->alg ||
			    dkim_sig_getcanonlen(d, sigs[i], &msglen, &canonlen, &signlen) != DKIM_STAT_OK ||
			    signlen != (ssize_t)-1)
				continue;
			done[k - in->keys] = 1;
		}
	}
	dkim_free(d);
}

static void sign_fini(void *instance)
{
	struct sign_inst *in = instance;
	size_t i;

	if (in == NULL)
		return;
	if (in->lib != NULL)
		dkim_close(in->lib);
	if (in->vlib != NULL)
		dkim_close(in->vlib);
	for (i = 0; i < SIGN_MAX_KEYS; i++) {
		free(in->keys[i].pem);
		free(in->keys[i].record);
	}
	free(in->hdr_words);
	free(in->over_words);
	free(in);
}

static int sign_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	const struct config *cfg = env->cfg;
	struct sign_inst *in = xcalloc(1, sizeof(*in));
	unsigned int flags = DKIM_LIBFLAGS_FIXCRLF;
	size_t i, nh;
	int has_from = 0;

	for (i = 0; i < cfg->ndkim_sign_keys && i < SIGN_MAX_KEYS; i++) {
		struct sign_key *k = &in->keys[in->nkeys];
		char dom[300], sel[100], path[600];

		if (sscanf(cfg->dkim_sign_keys[i], "%299s %99s %599s", dom, sel, path) != 3 ||
		    strlen(dom) > ADDR_DOMAIN_MAX || strlen(sel) >= sizeof(k->selector)) {
			snprintf(err, errlen, "dkim_sign_key \"%s\": want DOMAIN SELECTOR /path/key.pem",
			    cfg->dkim_sign_keys[i]);
			goto fail;
		}
		for (char *p = dom; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		if (!domain_ok(dom) || strspn(sel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(sel)) {
			snprintf(err, errlen, "dkim_sign_key \"%s\": bad domain or selector",
			    cfg->dkim_sign_keys[i]);
			goto fail;
		}
		memcpy(k->domain, dom, strlen(dom) + 1);      /* lengths checked above */
		memcpy(k->selector, sel, strlen(sel) + 1);
		if (load_key(k, path, err, errlen) < 0)
			goto fail;
		in->nkeys++;
	}
	in->hdr_words = xstrdup(cfg->dkim_sign_headers);
	in->over_words = xstrdup(cfg->dkim_oversign_headers);
	nh = split_list(in->hdr_words, in->hdrs, SIGN_MAX_HDRS);
	split_list(in->over_words, in->over, SIGN_MAX_HDRS);
	for (i = 0; i < nh; i++)
		if (strcasecmp(in->hdrs[i], "from") == 0)
			has_from = 1;
	if (!has_from) {
		snprintf(err, errlen, "dkim_sign_headers must include from (RFC 6376 5.4)");
		goto fail;
	}
	if ((in->lib = dkim_init(track_malloc, track_free)) == NULL) {
		snprintf(err, errlen, "cannot initialize libopendkim");
		goto fail;
	}
	if (dkim_options(in->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_options(in->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, in->hdrs, sizeof(char **)) != DKIM_STAT_OK ||
	    (in->over[0] != NULL &&
	     dkim_options(in->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, in->over, sizeof(char **)) != DKIM_STAT_OK)) {
		snprintf(err, errlen, "cannot configure libopendkim (signed header lists)");
		goto fail;
	}
	if ((in->vlib = dkim_init(NULL, NULL)) == NULL ||
	    dkim_options(in->vlib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_set_key_lookup(in->vlib, own_key_lookup) != DKIM_STAT_OK ||
	    dkim_set_prescreen(in->vlib, own_prescreen) != DKIM_STAT_OK) {
		snprintf(err, errlen, "cannot initialize libopendkim (verifier of our signatures)");
		goto fail;
	}
	*instance = in;
	return 0;
fail:
	sign_fini(in);
	return -1;
}

/* from_domain - the domain of the single From address of the header
 * section, into out; 0, or -1 (none, several, no usable domain) */
static int from_domain(const char *hdrs, size_t len, char *out)
{
	struct header_field f;
	size_t pos = 0, total = 0;
	char doms[2][ADDR_DOMAIN_MAX + 1];

	out[0] = '\0';
	while (header_next(hdrs, len, &pos, &f) == 1) {
		char *v;
		size_t k;

		if (!header_name_is(&f, "From"))
			continue;
		/* the whole field: one cut at 4 KB read a display name padded
		 * past the cut as the address, and missed a second mailbox */
		v = xmalloc(f.value_len + 1);
		header_unfold(&f, v, f.value_len + 1);
		k = addrlist_domains(v, doms, 2);
		free(v);
		if (total == 0 && k >= 1)
			snprintf(out, ADDR_DOMAIN_MAX + 1, "%s", doms[0]);
		total += k;
	}
	return total == 1 && domain_ok(out) ? 0 : -1;
}

/* sign_one - one signature with key k; the field value (folded with CRLF
 * TAB) into *value (owned), or -1 */
static int sign_one(const struct sign_inst *in, const struct sign_key *k,
                    const struct final_msg *m, char **value)
{
	DKIM_STAT st;
	DKIM *d;
	u_char *sig = NULL;
	size_t siglen = 0, i;
	struct sbuf v;
	struct mtrack mem;
	int rc = -1;

	track_init(&mem);
	d = dkim_sign(in->lib, (const u_char *)m->req->session_id, &mem, (dkim_sigkey_t)k->pem,
	    (const u_char *)k->selector, (const u_char *)k->domain, DKIM_CANON_RELAXED,
	    DKIM_CANON_RELAXED, k->alg, -1, &st);
	if (d == NULL) {
		slog(m->req->session_id, LOG_ERR, "dkim_sign d=%s s=%s: %s", k->domain,
		    k->selector, dkim_getresultstr(st));
		free_leftovers(&mem);
		return -1;
	}
	st = feed(d, m);
	if (st == DKIM_STAT_OK)
		st = dkim_eom(d, NULL);
	if (st == DKIM_STAT_OK)
		st = dkim_getsighdr_d(d, strlen(DKIM_SIGNHEADER) + 2, &sig, &siglen);
	if (st != DKIM_STAT_OK || sig == NULL) {
		slog(m->req->session_id, LOG_ERR, "dkim_sign d=%s s=%s: %s (%s)", k->domain,
		    k->selector, dkim_getresultstr(st), dkim_geterror(d) ? dkim_geterror(d) : "");
		goto out;
	}
	/* libopendkim folds with bare LF + TAB: the message wants CRLF */
	sbuf_init(&v, (size_t)-1);
	for (i = 0; i < siglen && sig[i] != '\0'; i++) {
		if (sig[i] == '\r')
			continue;
		if (sig[i] == '\n')
			sbuf_add(&v, "\r", 1);
		sbuf_add(&v, &sig[i], 1);
	}
	sbuf_add(&v, "", 1);
	*value = sbuf_steal(&v);
	rc = 0;
out:
	sign_free(d, &mem, k->alg);
	return rc;
}

/* A From domain without a key is said at NOTICE the first time in an
 * hour (UPLOG_SLOTS domains remembered, the one said longest ago
 * replaced), at INFO after that: a site relaying for domains it holds no
 * key for would get a NOTICE per message, and the audit record has each
 * message anyway. */
static struct uplog_table nokey_said = UPLOG_TABLE_INIT(3600 * 1000LL);

/* nokey_notice - 1 if dom's missing key is to be said at NOTICE now */
static int nokey_notice(const char *dom)
{
	unsigned long since;

	return uplog_table_due(&nokey_said, dom, 1, monotime_ms(), &since);
}

/* note - append "what=dom/sel" (sel NULL: "what=dom"; dom NULL: "what")
 * to the result's dkim_sign (scanproto.h); an entry that does not fit
 * (with room left for "more=N") is counted in *cut instead */
static void note(struct scan_result *res, const char *what, const char *dom, const char *sel,
                 unsigned *cut)
{
	char e[sizeof(res->dkim_sign)];
	size_t have = strlen(res->dkim_sign);
	int n;

	if (dom == NULL)
		n = snprintf(e, sizeof(e), "%s", what);
	else if (sel == NULL)
		n = snprintf(e, sizeof(e), "%s=%s", what, dom);
	else
		n = snprintf(e, sizeof(e), "%s=%s/%s", what, dom, sel);
	/* " more=NNNNNNNNNN" and the NUL stay free */
	if (n < 0 || *cut > 0 || have + 1 + (size_t)n + 17 > sizeof(res->dkim_sign)) {
		(*cut)++;
		return;
	}
	if (have > 0)
		res->dkim_sign[have++] = ' ';
	memcpy(res->dkim_sign + have, e, (size_t)n + 1);        /* fits: checked above */
}

static void note_cut(struct scan_result *res, unsigned cut)
{
	size_t have = strlen(res->dkim_sign);
	char tail[24];
	int n;

	if (cut == 0)
		return;
	n = snprintf(tail, sizeof(tail), "%smore=%u", have ? " " : "", cut);
	if (n > 0 && have + (size_t)n < sizeof(res->dkim_sign))      /* note() kept the room */
		memcpy(res->dkim_sign + have, tail, (size_t)n + 1);
}

static void sign_finalize(void *instance, const struct final_msg *m)
{
	const struct sign_inst *in = instance;
	char dom[ADDR_DOMAIN_MAX + 1];
	size_t i;
	unsigned cut = 0;
	int any = 0, done[SIGN_MAX_KEYS] = { 0 };

	if (m->req->direction != MW_OUTBOUND || in->nkeys == 0)
		return;
	if (from_domain(m->headers, m->headers_len, dom) < 0) {
		slog(m->req->session_id, LOG_NOTICE,
		    "dkim_sign: not signed: From does not hold exactly one address with a domain");
		note(m->res, "badfrom", NULL, NULL, &cut);
		return;
	}
	/* the domain as the key table has it (keys match in any case) */
	for (char *p = dom; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	verified_keys(in, m, done);
	/* prepending puts each signature on top: sign in reverse table order
	 * so the fields read in the order of the table */
	for (i = in->nkeys; i > 0; i--) {
		const struct sign_key *k = &in->keys[i - 1];
		char *value;

		if (strcmp(k->domain, dom) != 0)
			continue;
		any = 1;
		if (done[i - 1]) {
			slog(m->req->session_id, LOG_INFO, "dkim_sign: not signed again d=%s s=%s: "
			    "the message carries a signature of this key that verifies", k->domain,
			    k->selector);
			note(m->res, "kept", k->domain, k->selector, &cut);
			continue;
		}
		if (sign_one(in, k, m, &value) == 0) {
			final_prepend(m, DKIM_SIGNHEADER, value);
			slog(m->req->session_id, LOG_INFO, "dkim_sign: signed d=%s s=%s a=%s",
			    k->domain, k->selector,
			    k->alg == DKIM_SIGN_ED25519SHA256 ? "ed25519-sha256" : "rsa-sha256");
			free(value);
			note(m->res, "signed", k->domain, k->selector, &cut);
		} else
			note(m->res, "failed", k->domain, k->selector, &cut);
	}
	if (!any) {
		slog(m->req->session_id, nokey_notice(dom) ? LOG_NOTICE : LOG_INFO,
		    "dkim_sign: not signed: no key for %s (dkim_sign_key)", dom);
		note(m->res, "nokey", dom, NULL, &cut);
	}
	note_cut(m->res, cut);
}

static const struct mw_filter_ops sign_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "dkim_sign",
	.fini = sign_fini,
};

const struct builtin_filter builtin_dkim_sign = {
	.name = "dkim_sign",
	.ops = &sign_ops,
	.setup = sign_setup,
	.finalize = sign_finalize,
};
