/*
 * Client certificates over the memory-BIO TLS module (for SASL EXTERNAL):
 * a server that asks for one (optional or required), verifies it against
 * its client CA and CRL, and says who it names; a client that presents
 * one; and the channel binding each TLS version gives SCRAM-*-PLUS.
 *
 * The CA, the certificates and the CRL are made here with the OpenSSL C
 * API (not by tls.c), in a temporary directory; the expected fingerprint
 * is X509_digest() of the certificate as written.
 */
#include "testutil.h"

#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls.h"

static struct {
    char dir[64];
    char srv_crt[128], srv_key[128];  /* the server, self-signed */
    char ca[128], ca_key[128];        /* the client CA */
    char ca2[128], ca2_key[128];      /* another CA */
    char good[128], good_key[128];    /* CN=scanner, email, from ca */
    char expired[128], expired_key[128];
    char revoked[128], revoked_key[128];
    char stranger[128], stranger_key[128]; /* from ca2 */
    char crl[128];                    /* ca's CRL: revoked is on it */
    char good_fp[TLS_FINGERPRINT_LEN + 1];
} fx;

#define CLIENT_CN "scanner"
#define CLIENT_EMAIL "scanner@example.test"

static void
write_pem_cert(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    assert_int_equal(fclose(f), 0);
}

static void
write_pem_key(const char *path, EVP_PKEY *pk)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL),
                     1);
    assert_int_equal(fclose(f), 0);
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/*
 * A certificate for cn (and san, may be NULL) with a new P-256 key,
 * signed by issuer/ikey (NULL: self-signed, a CA).  Validity from nb to
 * na (ASN.1 GeneralizedTime).  Written to crt and key; *out_x and
 * *out_pk (may be NULL) keep them.
 */
static void
make(const char *cn, const char *san, long serial, const char *nb,
     const char *na, X509 *issuer, EVP_PKEY *ikey, int ca, const char *crt,
     const char *key, X509 **out_x, EVP_PKEY **out_pk)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;

    assert_non_null(pk);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_int_equal(ASN1_TIME_set_string(X509_getm_notBefore(x), nb), 1);
    assert_int_equal(ASN1_TIME_set_string(X509_getm_notAfter(x), na), 1);
    name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)
                                                "postern tests",
                                                -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn,
                                                -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(
                         x, issuer != NULL ? X509_get_subject_name(issuer)
                                           : name),
                     1);
    assert_int_equal(X509_set_pubkey(x, pk), 1);
    if (ca) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints,
                "CA:FALSE");
        add_ext(x, issuer != NULL ? issuer : x, NID_ext_key_usage,
                "clientAuth,serverAuth");
    }
    if (san != NULL)
        add_ext(x, issuer != NULL ? issuer : x, NID_subject_alt_name, san);
    assert_true(X509_sign(x, ikey != NULL ? ikey : pk, EVP_sha256()) > 0);
    write_pem_cert(crt, x);
    write_pem_key(key, pk);
    if (out_x != NULL)
        *out_x = x;
    else
        X509_free(x);
    if (out_pk != NULL)
        *out_pk = pk;
    else
        EVP_PKEY_free(pk);
}

/* ca's CRL listing serial. */
static void
make_crl(X509 *ca, EVP_PKEY *ca_key, long serial, const char *path)
{
    X509_CRL *crl = X509_CRL_new();
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *sn = ASN1_INTEGER_new();
    ASN1_TIME *t = ASN1_TIME_new();
    FILE *f;

    assert_non_null(crl);
    assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl,
                                              X509_get_subject_name(ca)), 1);
    assert_int_equal(ASN1_TIME_set_string(t, "20240101000000Z"), 1);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
    assert_int_equal(ASN1_TIME_set_string(t, "20991231000000Z"), 1);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
    assert_int_equal(ASN1_INTEGER_set(sn, serial), 1);
    assert_int_equal(X509_REVOKED_set_serialNumber(r, sn), 1);
    assert_int_equal(ASN1_TIME_set_string(t, "20240601000000Z"), 1);
    assert_int_equal(X509_REVOKED_set_revocationDate(r, t), 1);
    assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
    assert_int_equal(X509_CRL_sort(crl), 1);
    assert_true(X509_CRL_sign(crl, ca_key, EVP_sha256()) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509_CRL(f, crl), 1);
    assert_int_equal(fclose(f), 0);
    ASN1_TIME_free(t);
    ASN1_INTEGER_free(sn);
    X509_CRL_free(crl);
}

#define PATH(field, name) \
    snprintf(fx.field, sizeof(fx.field), "%s/" name, fx.dir)

static int
group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    X509 *ca, *ca2, *good;
    EVP_PKEY *ca_key, *ca2_key;
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen;

    (void)state;
    snprintf(fx.dir, sizeof(fx.dir), "%s/test_tlscc.XXXXXX",
             tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    PATH(srv_crt, "srv.crt");
    PATH(srv_key, "srv.key");
    PATH(ca, "ca.crt");
    PATH(ca_key, "ca.key");
    PATH(ca2, "ca2.crt");
    PATH(ca2_key, "ca2.key");
    PATH(good, "good.crt");
    PATH(good_key, "good.key");
    PATH(expired, "expired.crt");
    PATH(expired_key, "expired.key");
    PATH(revoked, "revoked.crt");
    PATH(revoked_key, "revoked.key");
    PATH(stranger, "stranger.crt");
    PATH(stranger_key, "stranger.key");
    PATH(crl, "ca.crl");
    make("mail.example.test", "DNS:mail.example.test", 1, "20240101000000Z",
         "20991231000000Z", NULL, NULL, 0, fx.srv_crt, fx.srv_key, NULL,
         NULL);
    make("Client CA", NULL, 1, "20240101000000Z", "20991231000000Z", NULL,
         NULL, 1, fx.ca, fx.ca_key, &ca, &ca_key);
    make("Other CA", NULL, 1, "20240101000000Z", "20991231000000Z", NULL,
         NULL, 1, fx.ca2, fx.ca2_key, &ca2, &ca2_key);
    make(CLIENT_CN, "email:" CLIENT_EMAIL, 10, "20240101000000Z",
         "20991231000000Z", ca, ca_key, 0, fx.good, fx.good_key, &good,
         NULL);
    make(CLIENT_CN, "email:" CLIENT_EMAIL, 11, "20200101000000Z",
         "20210101000000Z", ca, ca_key, 0, fx.expired, fx.expired_key, NULL,
         NULL);
    make(CLIENT_CN, "email:" CLIENT_EMAIL, 12, "20240101000000Z",
         "20991231000000Z", ca, ca_key, 0, fx.revoked, fx.revoked_key, NULL,
         NULL);
    make(CLIENT_CN, "email:" CLIENT_EMAIL, 13, "20240101000000Z",
         "20991231000000Z", ca2, ca2_key, 0, fx.stranger, fx.stranger_key,
         NULL, NULL);
    make_crl(ca, ca_key, 12, fx.crl);
    assert_int_equal(X509_digest(good, EVP_sha256(), md, &mdlen), 1);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(fx.good_fp + 2 * i, 3, "%02x", md[i]);
    X509_free(ca);
    X509_free(ca2);
    X509_free(good);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ca2_key);
    return 0;
}

static int
group_teardown(void **state)
{
    const char *files[] = {
        fx.srv_crt, fx.srv_key, fx.ca, fx.ca_key, fx.ca2, fx.ca2_key,
        fx.good, fx.good_key, fx.expired, fx.expired_key, fx.revoked,
        fx.revoked_key, fx.stranger, fx.stranger_key, fx.crl,
    };

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(fx.dir);
    return 0;
}

/* --- Helpers ------------------------------------------------------------- */

/* A server: its context, and what it asks of client certificates
 * (client_ca NULL: nothing). */
struct srv {
    struct tls_ctx *ctx;
    struct tls_client_ca *ca;
};

static struct srv
server(const char *client_ca, int required, const char *crl,
       enum tls_version max)
{
    struct tls_config cfg = {
        .role = TLS_ROLE_SERVER,
        .cert_file = fx.srv_crt,
        .key_file = fx.srv_key,
        .max_version = max,
    };
    struct srv v = {0};
    char err[TLS_ERROR_MAX];
    int rc = tls_ctx_new(&cfg, &v.ctx, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "server context: %s\n", err);
    assert_rc(rc, 0);
    if (client_ca != NULL) {
        rc = tls_client_ca_new(client_ca, crl, required ? 1u : 0u, &v.ca,
                               err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "client CA: %s\n", err);
        assert_rc(rc, 0);
    }
    return v;
}

static struct tls_ctx *
client(const char *crt, const char *key)
{
    struct tls_config cfg = {
        .role = TLS_ROLE_CLIENT,
        .ca_file = fx.srv_crt,
        .cert_file = crt,
        .key_file = key,
    };
    struct tls_ctx *ctx;
    char err[TLS_ERROR_MAX];
    int rc = tls_ctx_new(&cfg, &ctx, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "client context: %s\n", err);
    assert_rc(rc, 0);
    return ctx;
}

static void
shuttle(struct tls *from, struct tls *to)
{
    const uint8_t *p;
    size_t n;

    while ((n = tls_pending_out(from, &p)) > 0) {
        (void)tls_feed(to, p, n);
        tls_consume_out(from, n);
    }
}

/*
 * Handshake; then (TLS 1.3 sends the client's certificate after the
 * server's Finished) one byte from the client so the server has read it
 * all.  *src gets the server's last status.
 */
static void
connect_pair(struct srv sv, struct tls_ctx *cctx, struct tls **s,
             struct tls **c, int *src)
{
    uint8_t b;
    size_t n;
    int crc = 0;

    assert_rc(tls_new(sv.ctx, NULL, s), 0);
    if (sv.ca != NULL)
        assert_rc(tls_ask_client_cert(*s, sv.ca), 0);
    /* The settings and the context may go: the connection keeps what it
     * needs. */
    tls_client_ca_free(sv.ca);
    assert_rc(tls_new(cctx, "mail.example.test", c), 0);
    for (int round = 0; round < 20; round++) {
        crc = tls_handshake(*c);
        shuttle(*c, *s);
        *src = tls_handshake(*s);
        shuttle(*s, *c);
    }
    if (crc == TLS_OK && *src == TLS_OK) {
        assert_rc(tls_write(*c, (const uint8_t *)"x", 1), TLS_OK);
        shuttle(*c, *s);
        *src = tls_read(*s, &b, 1, &n);
        shuttle(*s, *c);
    }
    tls_ctx_free(sv.ctx);
    tls_ctx_free(cctx);
}

/* --- Tests --------------------------------------------------------------- */

/*
 * client_cert = optional: every handshake completes; tls_peer_id() says
 * who a good certificate names and why the others do not count.
 */
static void
test_optional(void **state)
{
    static const enum tls_version versions[] = {TLS_VERSION_DEFAULT,
                                                TLS_VERSION_1_2};
    struct {
        const char *crt, *key;
        int crl;
        int want;
        const char *why;
    } rows[] = {
        {NULL, NULL, 0, PST_ENOENT, "no certificate"},
        {fx.good, fx.good_key, 0, 0, "ok"},
        {fx.good, fx.good_key, 1, 0, "ok"},
        {fx.expired, fx.expired_key, 0, PST_EAUTH,
         "certificate has expired"},
        /* OpenSSL's words for a chain of one it cannot anchor. */
        {fx.stranger, fx.stranger_key, 0, PST_EAUTH,
         "unable to verify the first certificate"},
        {fx.revoked, fx.revoked_key, 0, 0, "ok"},
        {fx.revoked, fx.revoked_key, 1, PST_EAUTH, "certificate revoked"},
    };

    (void)state;
    for (size_t v = 0; v < 2; v++) {
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            struct tls *s, *c;
            struct tls_peer_id id;
            const char *why = NULL;
            int src, rc;

            connect_pair(server(fx.ca, 0, rows[i].crl ? fx.crl : NULL,
                                versions[v]),
                         client(rows[i].crt, rows[i].key), &s, &c, &src);
            if (src != TLS_OK)
                fail_msg("row %zu: the handshake failed: %s", i,
                         tls_error(s));
            rc = tls_peer_id(s, &id, &why);
            if (rc != rows[i].want || strcmp(why, rows[i].why) != 0)
                fail_msg("row %zu v %zu: got %s \"%s\", want %s \"%s\"", i,
                         v, pst_errname(rc), why, pst_errname(rows[i].want),
                         rows[i].why);
            if (rows[i].crt != NULL) {
                assert_string_equal(id.cn, CLIENT_CN);
                assert_string_equal(id.email, CLIENT_EMAIL);
                assert_int_equal(strlen(id.fingerprint),
                                 TLS_FINGERPRINT_LEN);
            }
            if (rows[i].crt == fx.good)
                assert_string_equal(id.fingerprint, fx.good_fp);
            tls_free(s);
            tls_free(c);
        }
    }
}

/* client_cert = required: no certificate, or one that does not verify,
 * ends the handshake. */
static void
test_required(void **state)
{
    struct {
        const char *crt, *key;
        int ok;
    } rows[] = {
        {NULL, NULL, 0},
        {fx.good, fx.good_key, 1},
        {fx.expired, fx.expired_key, 0},
        {fx.stranger, fx.stranger_key, 0},
        {fx.revoked, fx.revoked_key, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct tls *s, *c;
        int src;

        connect_pair(server(fx.ca, 1, fx.crl, TLS_VERSION_DEFAULT),
                     client(rows[i].crt, rows[i].key), &s, &c, &src);
        if (rows[i].ok) {
            assert_rc(src, TLS_OK);
            assert_rc(tls_peer_id(s, &(struct tls_peer_id){0}, NULL), 0);
        } else if (src != PST_EPROTO && src != PST_EAUTH) {
            fail_msg("row %zu: got %s, want a failed handshake", i,
                     pst_errname(src));
        }
        tls_free(s);
        tls_free(c);
    }
}

/* Without client_ca_file the server asks for nothing: a client's
 * certificate is not sent. */
static void
test_not_asked(void **state)
{
    struct tls *s, *c;
    int src;

    (void)state;
    connect_pair(server(NULL, 0, NULL, TLS_VERSION_DEFAULT),
                 client(fx.good, fx.good_key), &s, &c, &src);
    assert_rc(src, TLS_OK);
    assert_rc(tls_peer_id(s, &(struct tls_peer_id){0}, NULL), PST_ENOENT);
    tls_free(s);
    tls_free(c);
}

/* tls-exporter under TLS 1.3, tls-unique under 1.2, the same both
 * sides. */
static void
test_binding(void **state)
{
    static const struct {
        enum tls_version max;
        const char *type;
        size_t len;
    } rows[] = {
        {TLS_VERSION_DEFAULT, "tls-exporter", 32},
        {TLS_VERSION_1_2, "tls-unique", 12},
    };

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        uint8_t bs[TLS_UNIQUE_MAX], bc[TLS_UNIQUE_MAX];
        const char *ts, *tc;
        size_t ls, lc;
        struct tls *s, *c;
        int src;

        connect_pair(server(NULL, 0, NULL, rows[i].max), client(NULL, NULL),
                     &s, &c, &src);
        assert_rc(src, TLS_OK);
        assert_rc(tls_channel_binding(s, &ts, bs, sizeof(bs), &ls), 0);
        assert_rc(tls_channel_binding(c, &tc, bc, sizeof(bc), &lc), 0);
        assert_string_equal(ts, rows[i].type);
        assert_string_equal(tc, rows[i].type);
        assert_int_equal(ls, rows[i].len);
        assert_bytes_equal(bs, ls, bc, lc);
        assert_rc(tls_channel_binding(s, &ts, bs, 4, &ls), PST_ELIMIT);
        tls_free(s);
        tls_free(c);
    }
}

static void
test_config_errors(void **state)
{
    struct tls_config cfg;
    struct tls_ctx *ctx;
    char err[TLS_ERROR_MAX];

    (void)state;
    struct tls_client_ca *ca;
    struct tls *t;

    assert_rc(tls_client_ca_new(NULL, fx.crl, 0, &ca, err, sizeof(err)),
              PST_EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err, "tls_client_ca"));
    assert_rc(tls_client_ca_new("/nonexistent/ca.pem", NULL, 0, &ca, err,
                                sizeof(err)),
              PST_EIO);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    /* A certificate where the CRLs should be, and the other way round. */
    assert_rc(tls_client_ca_new(fx.ca, fx.ca, 0, &ca, err, sizeof(err)),
              PST_EIO);
    assert_non_null(strstr(err, "tls_client_crl"));
    assert_rc(tls_client_ca_new(fx.crl, NULL, 0, &ca, err, sizeof(err)),
              PST_EIO);
    /* Only a server connection, before its handshake, asks. */
    assert_rc(tls_client_ca_new(fx.ca, fx.crl, 1, &ca, err, sizeof(err)),
              0);
    cfg = (struct tls_config){.role = TLS_ROLE_CLIENT, .ca_file = fx.ca};
    assert_rc(tls_ctx_new(&cfg, &ctx, err, sizeof(err)), 0);
    assert_rc(tls_new(ctx, "mail.example.test", &t), 0);
    assert_rc(tls_ask_client_cert(t, ca), PST_ESTATE);
    tls_free(t);
    tls_ctx_free(ctx);
    {
        struct srv sv = server(NULL, 0, NULL, TLS_VERSION_DEFAULT);
        struct tls *s2, *c2;
        int src;

        connect_pair(sv, client(NULL, NULL), &s2, &c2, &src);
        assert_rc(src, TLS_OK);
        assert_rc(tls_ask_client_cert(s2, ca), PST_ESTATE);
        tls_free(s2);
        tls_free(c2);
    }
    tls_client_ca_free(ca);
    tls_client_ca_free(NULL);
    cfg = (struct tls_config){.role = TLS_ROLE_CLIENT, .cert_file = fx.good};
    assert_rc(tls_ctx_new(&cfg, &ctx, err, sizeof(err)), PST_EINVAL);
    cfg.key_file = fx.expired_key; /* another certificate's key */
    assert_rc(tls_ctx_new(&cfg, &ctx, err, sizeof(err)), PST_EINVAL);
    cfg.key_file = fx.good_key;
    assert_rc(tls_ctx_new(&cfg, &ctx, err, sizeof(err)), 0);
    tls_ctx_free(ctx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optional),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_not_asked),
        cmocka_unit_test(test_binding),
        cmocka_unit_test(test_config_errors),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
