/* tls.h - OpenSSL contexts of the proxy's two legs, and what a TLS
 * session is reported as (audit log, scan request).
 *
 * The I/O itself (SSL_read/SSL_write on the non-blocking socket) lives in
 * conn.c; this file only builds and configures the SSL_CTX objects. */
#ifndef MW_TLS_H
#define MW_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

struct tls_server;

/* tls_server_new - the client-facing context of listener l: every
 * tls_cert/tls_key pair loaded (the first one is the default; SNI picks
 * another whose names match), minimum version and ciphers from cfg.
 * NULL with a reason in err. */
struct tls_server *tls_server_new(const struct config *cfg, const struct listener_cfg *l,
                                  char *err, size_t errlen);
/* tls_server_free - drop the caller's reference; the contexts go when the
 * last SSL made from them is freed too (a reload replaces a listener's
 * while its sessions still use the old one) */
void tls_server_free(struct tls_server *t);
/* TLS_EXPIRY_WARN_DAYS - a certificate that expires within this many
 * days is warned of, as an expired one (Let's Encrypt renews at 30 days
 * left, so a warning means the renewal has failed for two weeks) */
#define TLS_EXPIRY_WARN_DAYS 14
/* tls_server_warning - "" or why one of t's certificates is unfit to
 * serve, as of when t was loaded: "tls_cert PATH: expired on DATE", "...:
 * expires in N days, on DATE", "...: not valid before DATE" ("; " between
 * two).  Such a certificate is served all the same (a warning, as
 * Postfix): most MTAs do not verify, and opportunistic TLS goes on. */
const char *tls_server_warning(const struct tls_server *t);
/* tls_server_ssl - a new SSL object for one accepted connection; it holds
 * a reference to t until SSL_free */
SSL *tls_server_ssl(struct tls_server *t);

/* tls_client_new - the upstream-facing context of listener l: minimum
 * version and ciphers from cfg; if upstream_tls_ca_file is set, the chain
 * is verified against it.  NULL with a reason in err. */
SSL_CTX *tls_client_new(const struct config *cfg, const struct listener_cfg *l,
                        char *err, size_t errlen);
/* tls_client_ssl - SSL object towards the upstream; when verify, the
 * certificate must carry name (a host name, or an IP address in its IP
 * address entries).  SNI carries name when it is a host name: never an
 * address (RFC 6066 3).  NULL if out of memory. */
SSL *tls_client_ssl(SSL_CTX *ctx, const char *name, int verify);

/* transport_check_config - every listener's transport settings hold: TLS
 * certificates, keys, CA file and ciphers load, PROXY networks parse.  0, or -1 with "listener NAME: reason".
 * warn (NULL: none) gets warn_arg and "listener NAME: ..." for each
 * listener whose certificates tls_server_warning finds fault with. */
int transport_check_config(const struct config *cfg, void (*warn)(void *arg, const char *msg),
                           void *warn_arg, char *err, size_t errlen);

/* tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384 256" into buf */
const char *tls_describe(SSL *ssl, char *buf, size_t bufsz);
/* tls_last_error - OpenSSL's error queue, one line, into buf (emptied) */
const char *tls_last_error(char *buf, size_t bufsz);

#endif
