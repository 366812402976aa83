/*
 * TLS over memory BIOs, inside (tls.c, tls_peer.c): the two structures
 * tls.h keeps opaque, and what both files use.  Only src/common's TLS
 * files include it.
 */
#ifndef POSTERN_COMMON_TLS_INT_H
#define POSTERN_COMMON_TLS_INT_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "tls.h"

struct tls_ctx {
    SSL_CTX *ssl_ctx;   /* reference-counted by OpenSSL; each SSL holds one */
    enum tls_role role;
};

struct tls {
    SSL *ssl;           /* owns both BIOs */
    BIO *in;            /* ciphertext from the peer: tls_feed() -> SSL */
    BIO *out;           /* ciphertext to the peer: SSL -> tls_pending_out() */
    enum tls_role role;
    int established;    /* the pump saw the handshake complete */
    const struct tls_io *io; /* the driver's callbacks (tls_set_io()) */
    void *io_ctx;
    int rc;             /* 0, or the error every later call returns */
    char err[TLS_ERROR_MAX];
};

/*
 * Describe the oldest error on this thread's OpenSSL queue (the cause),
 * after prefix ([in]), into buf ([out], size bytes, NUL-terminated), then
 * empty the queue; none ([in]) when the queue is empty (tls.c).
 */
void tls_format_error(char *buf, size_t size, const char *prefix,
                      const char *none);

#endif
