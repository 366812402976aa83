/*
 * TLS over memory BIOs: contexts from configuration, connections that
 * take and give bytes, and what the Received header and logs need.
 */
#include "tls.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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
 * A memory BIO keeps the memory of its largest burst (a 64 KiB read of
 * message data) for as long as it lives.  Once the handshake is over, an
 * empty BIO holding more than this is swapped for a fresh one, so idle
 * connections stay small.
 */
#define TLS_BIO_KEEP 16384

/* RFC 9266 §2: the tls-exporter label, without a terminating NUL. */
static const char tls_exporter_label[] = "EXPORTER-Channel-Binding";

static const struct {
    const char *name;       /* OpenSSL's MinProtocol spelling */
    enum tls_version version;
    int proto;              /* OpenSSL's protocol number */
} tls_versions[] = {
    {.name = "TLSv1", .version = TLS_VERSION_1_0, .proto = TLS1_VERSION},
    {.name = "TLSv1.1", .version = TLS_VERSION_1_1, .proto = TLS1_1_VERSION},
    {.name = "TLSv1.2", .version = TLS_VERSION_1_2, .proto = TLS1_2_VERSION},
    {.name = "TLSv1.3", .version = TLS_VERSION_1_3, .proto = TLS1_3_VERSION},
};

#define TLS_NVERSIONS (sizeof(tls_versions) / sizeof(tls_versions[0]))

int
tls_version_parse(const char *s, enum tls_version *out)
{
    for (size_t i = 0; i < TLS_NVERSIONS; i++) {
        if (strcmp(s, tls_versions[i].name) == 0) {
            *out = tls_versions[i].version;
            return 0;
        }
    }
    return PST_EINVAL;
}

const char *
tls_version_name(enum tls_version v)
{
    for (size_t i = 0; i < TLS_NVERSIONS; i++) {
        if (tls_versions[i].version == v)
            return tls_versions[i].name;
    }
    return NULL;
}

/* OpenSSL's number for v; 0 for an out-of-range value. */
static int
tls_version_proto(enum tls_version v)
{
    for (size_t i = 0; i < TLS_NVERSIONS; i++) {
        if (tls_versions[i].version == v)
            return tls_versions[i].proto;
    }
    return 0;
}

/*
 * Describe the oldest error on this thread's OpenSSL queue (the cause; the
 * later ones are callers reporting it), after prefix, then empty the
 * queue.  Falls back to `none` when the queue is empty.
 */
static void
tls_format_error(char *buf, size_t size, const char *prefix,
                 const char *none)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_data(&data, &flags);
    char reason[160];

    if (e == 0) {
        snprintf(buf, size, "%s%s", prefix, none);
        return;
    }
    if (ERR_SYSTEM_ERROR(e)) {
        /* OpenSSL keeps errno values as reasons but will not name them. */
        if (strerror_r((int)ERR_GET_REASON(e), reason, sizeof(reason)) != 0)
            snprintf(reason, sizeof(reason), "errno %d",
                     (int)ERR_GET_REASON(e));
        data = NULL;      /* "calling fopen(...)": the caller names the file */
    } else if (ERR_reason_error_string(e) != NULL) {
        snprintf(reason, sizeof(reason), "%s", ERR_reason_error_string(e));
    } else {
        ERR_error_string_n(e, reason, sizeof(reason));
    }
    if (data != NULL && (flags & ERR_TXT_STRING) && data[0] != '\0')
        snprintf(buf, size, "%s%s (%s)", prefix, reason, data);
    else
        snprintf(buf, size, "%s%s", prefix, reason);
    ERR_clear_error();
}

/* Never ask a terminal for a key's passphrase: the daemon has none. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* A client that presents a certificate (SASL EXTERNAL). */
static int
tls_ctx_load_client_cert(SSL_CTX *c, const struct tls_config *cfg,
                         char *err, size_t err_size)
{
    char prefix[PATH_MAX + 40];

    SSL_CTX_set_default_passwd_cb(c, tls_no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1) {
        snprintf(prefix, sizeof(prefix), "cannot load certificate %s: ",
                 cfg->cert_file);
        tls_format_error(err, err_size, prefix, "unknown error");
        return PST_EIO;
    }
    if (SSL_CTX_use_PrivateKey_file(c, cfg->key_file, SSL_FILETYPE_PEM)
        != 1) {
        unsigned long e = ERR_peek_error();
        int rc = PST_EIO;

        /* A key that loads but belongs to another certificate. */
        if (ERR_GET_LIB(e) == ERR_LIB_X509
            && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH
                || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
            rc = PST_EINVAL;
        snprintf(prefix, sizeof(prefix), "cannot load key %s: ",
                 cfg->key_file);
        tls_format_error(err, err_size, prefix, "unknown error");
        return rc;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        snprintf(prefix, sizeof(prefix),
                 "key %s does not match certificate %s: ", cfg->key_file,
                 cfg->cert_file);
        tls_format_error(err, err_size, prefix, "unknown error");
        return PST_EINVAL;
    }
    return 0;
}

static int
tls_ctx_load_server(SSL_CTX *c, const struct tls_config *cfg, char *err,
                    size_t err_size)
{
    char prefix[PATH_MAX + 32];

    SSL_CTX_set_default_passwd_cb(c, tls_no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1) {
        snprintf(prefix, sizeof(prefix), "cannot load tls_cert %s: ",
                 cfg->cert_file);
        tls_format_error(err, err_size, prefix, "unknown error");
        return PST_EIO;
    }
    if (SSL_CTX_use_PrivateKey_file(c, cfg->key_file, SSL_FILETYPE_PEM)
        != 1) {
        unsigned long e = ERR_peek_error();
        int rc = PST_EIO;

        /* A key that loads but belongs to another certificate. */
        if (ERR_GET_LIB(e) == ERR_LIB_X509
            && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH
                || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
            rc = PST_EINVAL;
        snprintf(prefix, sizeof(prefix), "cannot load tls_key %s: ",
                 cfg->key_file);
        tls_format_error(err, err_size, prefix, "unknown error");
        return rc;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        snprintf(prefix, sizeof(prefix),
                 "tls_key %s does not match tls_cert: ", cfg->key_file);
        tls_format_error(err, err_size, prefix, "unknown error");
        return PST_EINVAL;
    }
    /* The server picks from its own list: strongest first. */
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
    return 0;
}

static int
tls_ctx_load_client(SSL_CTX *c, const struct tls_config *cfg, char *err,
                    size_t err_size)
{
    char prefix[PATH_MAX + 32];

    if (cfg->ca_file != NULL) {
        if (SSL_CTX_load_verify_file(c, cfg->ca_file) != 1) {
            snprintf(prefix, sizeof(prefix), "cannot load CA file %s: ",
                     cfg->ca_file);
            tls_format_error(err, err_size, prefix,
                             "no certificate in the file");
            return PST_EIO;
        }
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
        tls_format_error(err, err_size, "cannot load the system trust store: ",
                         "unknown error");
        return PST_EIO;
    }
    /*
     * Insecure still verifies (so tls_peer_verify() can report the
     * result) but does not abort the handshake on failure.
     */
    SSL_CTX_set_verify(c, cfg->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       NULL);
    if (cfg->cert_file != NULL)
        return tls_ctx_load_client_cert(c, cfg, err, err_size);
    return 0;
}

int
tls_ctx_new(const struct tls_config *cfg, struct tls_ctx **out, char *err,
            size_t err_size)
{
    struct tls_ctx *ctx;
    SSL_CTX *c;
    int min_proto, max_proto = 0;
    int rc;

    assert(cfg != NULL && out != NULL && err != NULL && err_size > 0);
    *out = NULL;
    err[0] = '\0';
    min_proto = tls_version_proto(cfg->min_version == TLS_VERSION_DEFAULT
                                      ? TLS_VERSION_1_2
                                      : cfg->min_version);
    if (cfg->max_version != TLS_VERSION_DEFAULT)
        max_proto = tls_version_proto(cfg->max_version);
    if (min_proto == 0 || (cfg->max_version != TLS_VERSION_DEFAULT
                           && (max_proto == 0 || max_proto < min_proto))) {
        snprintf(err, err_size, "invalid TLS version range");
        return PST_EINVAL;
    }
    if (cfg->role == TLS_ROLE_SERVER
        && (cfg->cert_file == NULL || cfg->key_file == NULL)) {
        snprintf(err, err_size, "a TLS server needs tls_cert and tls_key");
        return PST_EINVAL;
    }
    if (cfg->role != TLS_ROLE_SERVER && cfg->role != TLS_ROLE_CLIENT) {
        snprintf(err, err_size, "invalid TLS role");
        return PST_EINVAL;
    }
    if (cfg->role == TLS_ROLE_CLIENT
        && (cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        snprintf(err, err_size, "a client certificate needs its key, and "
                 "a key its certificate");
        return PST_EINVAL;
    }

    ERR_clear_error();
    c = SSL_CTX_new(cfg->role == TLS_ROLE_SERVER ? TLS_server_method()
                                                 : TLS_client_method());
    if (c == NULL) {
        tls_format_error(err, err_size, "cannot create a TLS context: ",
                         "out of memory");
        return PST_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(c, min_proto);
    SSL_CTX_set_max_proto_version(c, max_proto);
    if (min_proto < TLS1_2_VERSION) {
        /*
         * tls_min_version = TLSv1 or TLSv1.1 is for old devices (printers,
         * scanners).  TLS 1.0 and 1.1 sign the handshake with MD5+SHA-1 or
         * SHA-1 (RFC 4346 §7.4.3), and OpenSSL 3's default security level 1
         * forbids signatures under 80 bits of security, which includes
         * both: those versions would be refused whatever the minimum says
         * ("no suitable signature algorithm").  Level 0 allows them, and
         * with them short keys and DH groups: the price of old devices,
         * paid only by configurations that ask for it.  The cipher list
         * stays OpenSSL's DEFAULT, so no export, NULL, RC4 or 3DES suite
         * comes back.
         */
        SSL_CTX_set_security_level(c, 0);
    }
    /*
     * No renegotiation (the client-initiated kind is a DoS lever, and RFC
     * 9266 leaves tls-exporter undefined with it).  Wipe decrypted
     * plaintext (AUTH PLAIN carries passwords) once it is handed over and
     * when the connection is freed; release idle record buffers.
     */
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CLEANSE_PLAINTEXT);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS
                            | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (cfg->role == TLS_ROLE_SERVER)
        rc = tls_ctx_load_server(c, cfg, err, err_size);
    else
        rc = tls_ctx_load_client(c, cfg, err, err_size);
    if (rc != 0) {
        SSL_CTX_free(c);
        ERR_clear_error();
        return rc;
    }

    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL) {
        SSL_CTX_free(c);
        snprintf(err, err_size, "out of memory");
        return PST_ENOMEM;
    }
    ctx->ssl_ctx = c;
    ctx->role = cfg->role;
    *out = ctx;
    return 0;
}

void
tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    /* Only drops our reference: running connections hold their own. */
    SSL_CTX_free(ctx->ssl_ctx);
    OPENSSL_free(ctx);
}

int
tls_ctx_share(struct tls_ctx *ctx, struct tls_ctx **out)
{
    struct tls_ctx *copy;

    *out = NULL;
    copy = OPENSSL_zalloc(sizeof(*copy));
    if (copy == NULL)
        return PST_ENOMEM;
    if (SSL_CTX_up_ref(ctx->ssl_ctx) != 1) {
        OPENSSL_free(copy);
        return PST_ENOMEM;
    }
    copy->ssl_ctx = ctx->ssl_ctx;
    copy->role = ctx->role;
    *out = copy;
    return 0;
}

int
tls_ctx_reload(struct tls_ctx **cur, const struct tls_config *cfg,
               char *err, size_t err_size)
{
    struct tls_ctx *fresh;
    int rc;

    rc = tls_ctx_new(cfg, &fresh, err, err_size);
    if (rc != 0)
        return rc;
    tls_ctx_free(*cur);
    *cur = fresh;
    return 0;
}

/* Set up a client connection to check and name peer_host. */
static int
tls_set_peer_host(struct tls *t, const char *peer_host)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);

    /* RFC 6125 §6.4.3: a wildcard is the whole left-most label or none. */
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, peer_host) == 1)
        /* RFC 6066 §3: an IP literal is never sent as server_name. */
        return 0;
    ERR_clear_error();
    if (peer_host[0] == '\0' || strlen(peer_host) > TLSEXT_MAXLEN_host_name)
        return PST_EINVAL;
    if (SSL_set_tlsext_host_name(t->ssl, peer_host) != 1
        || X509_VERIFY_PARAM_set1_host(vp, peer_host, 0) != 1)
        return PST_ENOMEM;
    return 0;
}

static BIO *
tls_bio_new(void)
{
    BIO *b = BIO_new(BIO_s_mem());

    /* An empty BIO means "retry later", not end of stream. */
    if (b != NULL)
        BIO_set_mem_eof_return(b, -1);
    return b;
}

static int
tls_bio_oversized(BIO *b)
{
    BUF_MEM *bm = NULL;

    return BIO_ctrl_pending(b) == 0 && BIO_get_mem_ptr(b, &bm) > 0
           && bm != NULL && bm->max > TLS_BIO_KEEP;
}

/* Give back the memory of a past burst (see TLS_BIO_KEEP). */
static void
tls_trim(struct tls *t)
{
    BIO *b;

    /* During the handshake OpenSSL may stack a buffer on the write BIO. */
    if (!SSL_is_init_finished(t->ssl))
        return;
    if (tls_bio_oversized(t->in) && (b = tls_bio_new()) != NULL) {
        SSL_set0_rbio(t->ssl, b);       /* frees the old one */
        t->in = b;
    }
    if (tls_bio_oversized(t->out) && (b = tls_bio_new()) != NULL) {
        SSL_set0_wbio(t->ssl, b);
        t->out = b;
    }
}

int
tls_new(struct tls_ctx *ctx, const char *peer_host, struct tls **out)
{
    struct tls *t;
    int rc;

    assert(ctx != NULL && out != NULL);
    *out = NULL;
    if (ctx->role == TLS_ROLE_CLIENT && peer_host == NULL)
        return PST_EINVAL;
    t = OPENSSL_zalloc(sizeof(*t));
    if (t == NULL)
        return PST_ENOMEM;
    t->role = ctx->role;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->in = tls_bio_new();
    t->out = tls_bio_new();
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        OPENSSL_free(t);
        ERR_clear_error();
        return PST_ENOMEM;
    }
    SSL_set_bio(t->ssl, t->in, t->out);
    if (t->role == TLS_ROLE_CLIENT) {
        SSL_set_connect_state(t->ssl);
        rc = tls_set_peer_host(t, peer_host);
        if (rc != 0) {
            tls_free(t);
            ERR_clear_error();
            return rc;
        }
    } else {
        SSL_set_accept_state(t->ssl);
    }
    *out = t;
    return 0;
}

void
tls_free(struct tls *t)
{
    if (t == NULL)
        return;
    /* SSL_free cleanses the keys and (SSL_OP_CLEANSE_PLAINTEXT) records. */
    SSL_free(t->ssl);
    OPENSSL_clear_free(t, sizeof(*t));
}

/* Make rc the connection's sticky error; t->err must already say why. */
static int
tls_fail(struct tls *t, int rc)
{
    t->rc = rc;
    ERR_clear_error();
    return rc;
}

/*
 * Turn the result r of an SSL_* call into a status.  OpenSSL's queue must
 * have been empty before the call (SSL_get_error(3)).
 */
static int
tls_status(struct tls *t, int r)
{
    unsigned long e;

    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:  /* a memory BIO never refuses; be safe */
        ERR_clear_error();
        return TLS_WANT_MORE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return TLS_CLOSED;
    case SSL_ERROR_SSL:
        e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_SSL
            && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
            /* "certificate verify failed: hostname mismatch" */
            snprintf(t->err, sizeof(t->err), "%s: %s",
                     ERR_reason_error_string(e),
                     X509_verify_cert_error_string(
                         SSL_get_verify_result(t->ssl)));
            return tls_fail(t, PST_EAUTH);
        }
        tls_format_error(t->err, sizeof(t->err), "", "TLS protocol error");
        return tls_fail(t, PST_EPROTO);
    default:
        /* SSL_ERROR_SYSCALL: with memory BIOs, only an early end. */
        tls_format_error(t->err, sizeof(t->err), "",
                         "unexpected end of TLS stream");
        return tls_fail(t, PST_EPROTO);
    }
}

int
tls_feed(struct tls *t, const uint8_t *p, size_t len)
{
    if (t->rc < 0)
        return t->rc;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;

        if (BIO_write(t->in, p, chunk) != chunk) {
            snprintf(t->err, sizeof(t->err), "out of memory");
            return tls_fail(t, PST_ENOMEM);
        }
        p += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

int
tls_handshake(struct tls *t)
{
    int r, rc;

    if (t->rc < 0)
        return t->rc;
    if (SSL_is_init_finished(t->ssl))
        return TLS_OK;
    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return TLS_OK;
    rc = tls_status(t, r);
    if (rc == TLS_CLOSED) {
        snprintf(t->err, sizeof(t->err), "peer closed during the handshake");
        return tls_fail(t, PST_EPROTO);
    }
    return rc;
}

int
tls_read(struct tls *t, uint8_t *buf, size_t cap, size_t *n)
{
    size_t got = 0;
    int rc;

    assert(buf != NULL && cap > 0 && n != NULL);
    *n = 0;
    if (t->rc < 0)
        return t->rc;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, cap, &got) == 1) {
        *n = got;
        return TLS_OK;
    }
    rc = tls_status(t, 0);
    if (rc == TLS_WANT_MORE)
        tls_trim(t);
    return rc;
}

int
tls_write(struct tls *t, const uint8_t *p, size_t len)
{
    size_t written = 0;

    if (t->rc < 0)
        return t->rc;
    if (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)
        return PST_ESTATE;
    if (len == 0)
        return TLS_OK;
    ERR_clear_error();
    /* Without SSL_MODE_ENABLE_PARTIAL_WRITE this is all or nothing. */
    if (SSL_write_ex(t->ssl, p, len, &written) == 1)
        return TLS_OK;
    return tls_status(t, 0);
}

size_t
tls_pending_out(struct tls *t, const uint8_t **p)
{
    char *data = NULL;
    long n = BIO_get_mem_data(t->out, &data);

    *p = (const uint8_t *)data;
    return n > 0 ? (size_t)n : 0;
}

void
tls_consume_out(struct tls *t, size_t n)
{
    const uint8_t *p;
    size_t pending = tls_pending_out(t, &p);
    uint8_t scratch[4096];

    assert(n <= pending);
    if (n == pending) {
        /* Empties the BIO and zeroes its memory, keeping it for reuse. */
        (void)BIO_reset(t->out);
        tls_trim(t);
        return;
    }
    while (n > 0) {
        int chunk = n > sizeof(scratch) ? (int)sizeof(scratch) : (int)n;
        int r = BIO_read(t->out, scratch, chunk);

        if (r <= 0)
            break;
        n -= (size_t)r;
    }
}

int
tls_shutdown(struct tls *t)
{
    int r, rc;

    if (t->rc < 0)
        return t->rc;
    if (!SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    if (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)
        return 0;
    ERR_clear_error();
    /* 0: ours is queued and the peer's not yet seen; 1: both done. */
    r = SSL_shutdown(t->ssl);
    if (r >= 0)
        return 0;
    rc = tls_status(t, r);
    return rc < 0 ? rc : 0;
}

const char *
tls_error(const struct tls *t)
{
    return t->err;
}

const char *
tls_protocol(const struct tls *t)
{
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return "";
    return SSL_get_version(t->ssl);
}

const char *
tls_cipher(const struct tls *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

    if (t->rc < 0 || !SSL_is_init_finished(t->ssl) || c == NULL)
        return "";
    return SSL_CIPHER_get_name(c);
}

int
tls_cipher_bits(const struct tls *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

    if (t->rc < 0 || !SSL_is_init_finished(t->ssl) || c == NULL)
        return 0;
    return SSL_CIPHER_get_bits(c, NULL);
}

const char *
tls_server_name(const struct tls *t)
{
    const char *name = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);

    return name != NULL ? name : "";
}

/* Print name into a memory BIO and copy it, cut to size, into buf. */
static int
tls_name_text(const X509_NAME *name, char *buf, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (b == NULL)
        return PST_ENOMEM;
    /* RFC 2253 form; bytes above 127 are escaped, so the text is ASCII. */
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(b);
        return PST_ENOMEM;
    }
    n = BIO_get_mem_data(b, &data);
    snprintf(buf, size, "%.*s", (int)(n > 0 && n < INT_MAX ? n : 0), data);
    BIO_free(b);
    return 0;
}

int
tls_peer_cert(const struct tls *t, struct tls_peer_cert *out)
{
    X509 *x;
    BIO *b;
    char *data;
    long n;

    memset(out, 0, sizeof(*out));
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    x = SSL_get0_peer_certificate(t->ssl);
    if (x == NULL)
        return PST_ENOENT;
    if (tls_name_text(X509_get_subject_name(x), out->subject,
                      sizeof(out->subject)) != 0
        || tls_name_text(X509_get_issuer_name(x), out->issuer,
                         sizeof(out->issuer)) != 0)
        goto nomem;
    b = BIO_new(BIO_s_mem());
    if (b == NULL)
        goto nomem;
    if (ASN1_TIME_print_ex(b, X509_get0_notAfter(x), ASN1_DTFLGS_ISO8601)
        != 1) {
        BIO_free(b);
        goto nomem;
    }
    n = BIO_get_mem_data(b, &data);
    snprintf(out->not_after, sizeof(out->not_after), "%.*s",
             (int)(n > 0 && n < INT_MAX ? n : 0), data);
    BIO_free(b);
    return 0;

nomem:
    ERR_clear_error();
    memset(out, 0, sizeof(*out));
    return PST_ENOMEM;
}

int
tls_peer_verify(const struct tls *t, const char **why)
{
    long v;

    if (why != NULL)
        *why = "handshake not complete";
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    if (SSL_get0_peer_certificate(t->ssl) == NULL) {
        if (why != NULL)
            *why = "no peer certificate";
        return PST_EAUTH;
    }
    v = SSL_get_verify_result(t->ssl);
    if (why != NULL)
        *why = X509_verify_cert_error_string(v);
    return v == X509_V_OK ? 0 : PST_EAUTH;
}

/* --- Client certificates (tls_client_ca) --------------------------------- */

struct tls_client_ca {
    X509_STORE *store;                /* trust anchors and CRLs */
    STACK_OF(X509_NAME) *names;       /* for the CertificateRequest */
    unsigned required;
    uint8_t sid[SHA256_DIGEST_LENGTH]; /* session id context */
};

/*
 * client_cert = optional: the handshake goes on whatever the client
 * certificate's verification found; OpenSSL keeps the result
 * (SSL_get_verify_result()), which tls_peer_id() reports, so only SASL
 * EXTERNAL fails (DESIGN.md "Operations and the other SASL keys").
 */
static int
tls_verify_optional(int preverify_ok, X509_STORE_CTX *x)
{
    (void)preverify_ok;
    (void)x;
    return 1;
}

void
tls_client_ca_free(struct tls_client_ca *ca)
{
    if (ca == NULL)
        return;
    X509_STORE_free(ca->store);
    sk_X509_NAME_pop_free(ca->names, X509_NAME_free);
    OPENSSL_free(ca);
}

int
tls_client_ca_new(const char *ca_file, const char *crl_file,
                  unsigned required, struct tls_client_ca **out, char *err,
                  size_t err_size)
{
    char prefix[PATH_MAX + 40];
    struct tls_client_ca *ca;
    EVP_MD_CTX *md;
    int ok;

    assert(out != NULL && err != NULL && err_size > 0);
    *out = NULL;
    err[0] = '\0';
    if (ca_file == NULL) {
        snprintf(err, err_size, "client certificate settings need "
                 "tls_client_ca");
        return PST_EINVAL;
    }
    ERR_clear_error();
    ca = OPENSSL_zalloc(sizeof(*ca));
    if (ca == NULL || (ca->store = X509_STORE_new()) == NULL) {
        OPENSSL_free(ca);
        snprintf(err, err_size, "out of memory");
        return PST_ENOMEM;
    }
    ca->required = required ? 1u : 0u;
    /* RFC 8446 §4.3.2 / RFC 5246 §7.4.4: the CertificateRequest names the
     * acceptable issuers, so a client with several certificates picks
     * the right one. */
    if (X509_STORE_load_file(ca->store, ca_file) != 1 ||
        (ca->names = SSL_load_client_CA_file(ca_file)) == NULL) {
        snprintf(prefix, sizeof(prefix), "cannot load tls_client_ca %s: ",
                 ca_file);
        tls_format_error(err, err_size, prefix, "no certificate in the file");
        tls_client_ca_free(ca);
        return PST_EIO;
    }
    if (crl_file != NULL) {
        X509_LOOKUP *lu = X509_STORE_add_lookup(ca->store,
                                                X509_LOOKUP_file());

        if (lu == NULL ||
            X509_load_crl_file(lu, crl_file, X509_FILETYPE_PEM) <= 0) {
            snprintf(prefix, sizeof(prefix), "cannot load tls_client_crl "
                     "%s: ", crl_file);
            tls_format_error(err, err_size, prefix, "no CRL in the file");
            tls_client_ca_free(ca);
            return PST_EIO;
        }
        /* The leaf's issuer must have a CRL here, and the leaf must not
         * be on it. */
        X509_STORE_set_flags(ca->store, X509_V_FLAG_CRL_CHECK);
    }
    /*
     * A resumed session keeps the client certificate it was verified
     * with: it must resume only where the same trust applies.  The
     * session id context names the trust (OpenSSL refuses to resume a
     * verified session without one, and a session of a context without
     * one, or with another, is not resumed here).
     */
    md = EVP_MD_CTX_new();
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
         && EVP_DigestUpdate(md, ca_file, strlen(ca_file) + 1) == 1
         && (crl_file == NULL
             || EVP_DigestUpdate(md, crl_file, strlen(crl_file)) == 1)
         && EVP_DigestUpdate(md, ca->required ? "r" : "o", 1) == 1
         && EVP_DigestFinal_ex(md, ca->sid, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        tls_client_ca_free(ca);
        ERR_clear_error();
        snprintf(err, err_size, "out of memory");
        return PST_ENOMEM;
    }
    *out = ca;
    return 0;
}

int
tls_ask_client_cert(struct tls *t, const struct tls_client_ca *ca)
{
    STACK_OF(X509_NAME) *names;

    if (t->role != TLS_ROLE_SERVER || SSL_in_before(t->ssl) != 1)
        return PST_ESTATE;
    ERR_clear_error();
    names = SSL_dup_CA_list(ca->names);
    if (names == NULL ||
        SSL_set1_verify_cert_store(t->ssl, ca->store) != 1 ||
        SSL_set_session_id_context(t->ssl, ca->sid, sizeof(ca->sid)) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        ERR_clear_error();
        return PST_ENOMEM;
    }
    SSL_set_client_CA_list(t->ssl, names);
    SSL_set_verify(t->ssl, ca->required ? SSL_VERIFY_PEER
                                              | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                        : SSL_VERIFY_PEER,
                   ca->required ? NULL : tls_verify_optional);
    return 0;
}

/* Copy the UTF-8 of an ASN.1 string into buf; "" if it has a control
 * character (a name to log and to look a user up by). */
static void
tls_asn1_text(const ASN1_STRING *a, char *buf, size_t size)
{
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, a);

    buf[0] = '\0';
    if (n <= 0 || (size_t)n >= size) {
        OPENSSL_free(u);
        ERR_clear_error();
        return;
    }
    for (int i = 0; i < n; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            OPENSSL_free(u);
            return;
        }
    }
    memcpy(buf, u, (size_t)n);
    buf[n] = '\0';
    OPENSSL_free(u);
}

int
tls_peer_id(const struct tls *t, struct tls_peer_id *out, const char **why)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    X509 *x;
    const X509_NAME *subj;
    GENERAL_NAMES *sans;
    int i;
    long v;

    memset(out, 0, sizeof(*out));
    if (why != NULL)
        *why = "handshake not complete";
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    x = SSL_get0_peer_certificate(t->ssl);
    if (x == NULL) {
        if (why != NULL)
            *why = "no certificate";
        return PST_ENOENT;
    }
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        ERR_clear_error();
        return PST_ENOMEM;
    }
    for (unsigned k = 0; k < mdlen; k++) {
        out->fingerprint[2 * k] = hex[md[k] >> 4];
        out->fingerprint[2 * k + 1] = hex[md[k] & 0x0f];
    }
    subj = X509_get_subject_name(x);
    /* RFC 6125 §2.3.1 / §6.4.4: the most specific CN is the last. */
    i = -1;
    for (int j; (j = X509_NAME_get_index_by_NID(subj, NID_commonName, i))
                >= 0;)
        i = j;
    if (i >= 0)
        tls_asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)),
                      out->cn, sizeof(out->cn));
    sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int k = 0; sans != NULL && k < sk_GENERAL_NAME_num(sans); k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);

        if (g->type == GEN_EMAIL) {
            tls_asn1_text(g->d.rfc822Name, out->email, sizeof(out->email));
            break;
        }
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    v = SSL_get_verify_result(t->ssl);
    if (why != NULL)
        *why = X509_verify_cert_error_string(v);
    return v == X509_V_OK ? 0 : PST_EAUTH;
}

int
tls_channel_binding(const struct tls *t, const char **type, uint8_t *buf,
                    size_t cap, size_t *len)
{
    int rc;

    *len = 0;
    *type = NULL;
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    if (SSL_version(t->ssl) >= TLS1_3_VERSION) {
        if (cap < TLS_EXPORTER_LEN)
            return PST_ELIMIT;
        if ((rc = tls_exporter(t, buf)) < 0)
            return rc;
        *type = "tls-exporter";
        *len = TLS_EXPORTER_LEN;
        return 0;
    }
    /* RFC 7627 §1 and RFC 9266 §4: without the extended master secret
     * tls-unique is not unique to the connection. */
    if (SSL_get_extms_support(t->ssl) != 1)
        return PST_ENOTSUP;
    if ((rc = tls_unique(t, buf, cap, len)) < 0)
        return rc;
    *type = "tls-unique";
    return 0;
}

int
tls_exporter(const struct tls *t, uint8_t out[TLS_EXPORTER_LEN])
{
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    /*
     * RFC 9266 security considerations: below TLS 1.3 the master secret is
     * unique to the connection only with RFC 7627's extended master secret
     * (otherwise the triple-handshake attack applies).
     */
    if (SSL_version(t->ssl) < TLS1_3_VERSION
        && SSL_get_extms_support(t->ssl) != 1)
        return PST_ENOTSUP;
    /*
     * RFC 9266 §2: label "EXPORTER-Channel-Binding", an empty context
     * value, 32 bytes.  Below TLS 1.3 an empty context differs from none
     * (RFC 5705 §4), hence use_context = 1.
     */
    if (SSL_export_keying_material(t->ssl, out, TLS_EXPORTER_LEN,
                                   tls_exporter_label,
                                   sizeof(tls_exporter_label) - 1, NULL, 0,
                                   1) != 1) {
        ERR_clear_error();
        return PST_ENOTSUP;
    }
    return 0;
}

int
tls_unique(const struct tls *t, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t fin[EVP_MAX_MD_SIZE];
    size_t n;
    int ours;

    *len = 0;
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    /* RFC 8446 §7.5 / RFC 9266 §1: tls-unique is not defined for 1.3. */
    if (SSL_version(t->ssl) >= TLS1_3_VERSION)
        return PST_ENOTSUP;
    /*
     * RFC 5929 §3.1: "the first TLS Finished message sent ... in the most
     * recent TLS handshake".  In a full handshake the client sends the
     * first Finished; in an abbreviated (resumed) one, the server.
     * Renegotiation is off, so the most recent handshake is the only one.
     */
    ours = (t->role == TLS_ROLE_CLIENT) == !SSL_session_reused(t->ssl);
    n = ours ? SSL_get_finished(t->ssl, fin, sizeof(fin))
             : SSL_get_peer_finished(t->ssl, fin, sizeof(fin));
    if (n == 0 || n > sizeof(fin))
        return PST_ENOTSUP;
    if (n > cap) {
        OPENSSL_cleanse(fin, sizeof(fin));
        return PST_ELIMIT;
    }
    memcpy(out, fin, n);
    *len = n;
    OPENSSL_cleanse(fin, sizeof(fin));
    return 0;
}

/* --- The pump ------------------------------------------------------------ */

/*
 * Plaintext read at once: SSL_read() returns at most one record, and a
 * record carries at most 2^14 bytes (RFC 8446 §5.1, RFC 5246 §6.2.1).
 */
#define TLS_PUMP_CHUNK 16384

void
tls_set_io(struct tls *t, const struct tls_io *io, void *ctx)
{
    t->io = io;
    t->io_ctx = ctx;
}

int
tls_established(const struct tls *t)
{
    return t->established;
}

int
tls_flush(struct tls *t)
{
    const uint8_t *p;
    size_t n;

    assert(t->io != NULL);
    while ((n = tls_pending_out(t, &p)) > 0) {
        if (t->io->send(t->io_ctx, p, n) != 0)
            return TLS_STOPPED;
        tls_consume_out(t, n);
    }
    return TLS_OK;
}

int
tls_send(struct tls *t, const uint8_t *p, size_t len)
{
    int rc = tls_write(t, p, len);

    if (tls_flush(t) == TLS_STOPPED)
        return TLS_STOPPED;
    return rc;
}

int
tls_input(struct tls *t, const uint8_t *in, size_t n)
{
    const struct tls_io *io = t->io;
    void *ctx = t->io_ctx;
    uint8_t buf[TLS_PUMP_CHUNK];
    size_t got;
    int rc;

    assert(io != NULL);
    if (n > 0 && (rc = tls_feed(t, in, n)) < 0)
        return rc;
    if (!t->established) {
        rc = tls_handshake(t);
        if (tls_flush(t) == TLS_STOPPED)
            return TLS_STOPPED;
        if (rc != TLS_OK)
            return rc; /* TLS_WANT_MORE, or the failure */
        t->established = 1;
        if (io->established != NULL && io->established(ctx) != 0)
            return TLS_STOPPED;
    }
    for (;;) {
        rc = tls_read(t, buf, sizeof(buf), &got);
        if (rc != TLS_OK)
            break;
        rc = io->recv(ctx, buf, got);
        OPENSSL_cleanse(buf, got);
        if (rc != 0)
            return TLS_STOPPED;
    }
    if (tls_flush(t) == TLS_STOPPED)
        return TLS_STOPPED;
    return rc == TLS_WANT_MORE ? TLS_OK : rc;
}
