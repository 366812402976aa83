/*
 * TLS over memory BIOs: a server object and a client object shuttle bytes
 * in memory.  Keys and self-signed certificates are made here with the
 * OpenSSL C API (not by tls.c) in a temporary directory.
 */
#include "testutil.h"

#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* Not before/after of the generated certificates, fixed so the peer
 * certificate accessor has an exact answer. */
#define CERT_NOT_BEFORE "20240101000000Z"
#define CERT_NOT_AFTER "20351231235959Z"
#define CERT_NOT_AFTER_ISO "2035-12-31 23:59:59Z"

static struct {
    char dir[64];
    char a_crt[128], a_key[128];   /* mail.example.test, IP 127.0.0.1 */
    char b_crt[128], b_key[128];   /* other.example.test */
    char junk[128];                /* not PEM */
    char enc_key[128];             /* a key under a passphrase */
} fx;

/* A fixed-seed generator (xorshift64*) so runs are reproducible. */
static uint64_t rng_state;

static void
rng_seed(uint64_t seed)
{
    rng_state = seed;
}

static uint64_t
rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* A number in [1, max]. */
static size_t
rng_size(size_t max)
{
    return 1 + (size_t)(rng_next() % max);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A P-256 key and a self-signed certificate for cn with subjectAltName
 * san, written as PEM to crt and key. */
static void
make_cert(const char *cn, const char *san, const char *crt, const char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    X509_EXTENSION *ext;
    X509V3_CTX v3;
    FILE *f;

    assert_non_null(pk);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    assert_int_equal(ASN1_TIME_set_string(X509_getm_notBefore(x),
                                          CERT_NOT_BEFORE), 1);
    assert_int_equal(ASN1_TIME_set_string(X509_getm_notAfter(x),
                                          CERT_NOT_AFTER), 1);
    name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn,
                                                -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_int_equal(X509_set_pubkey(x, pk), 1);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);

    f = fopen(crt, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    assert_int_equal(fclose(f), 0);
    f = fopen(key, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL),
                     1);
    assert_int_equal(fclose(f), 0);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int
group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");

    (void)state;
    snprintf(fx.dir, sizeof(fx.dir), "%s/test_tls.XXXXXX",
             tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    snprintf(fx.a_crt, sizeof(fx.a_crt), "%s/a.crt", fx.dir);
    snprintf(fx.a_key, sizeof(fx.a_key), "%s/a.key", fx.dir);
    snprintf(fx.b_crt, sizeof(fx.b_crt), "%s/b.crt", fx.dir);
    snprintf(fx.b_key, sizeof(fx.b_key), "%s/b.key", fx.dir);
    snprintf(fx.junk, sizeof(fx.junk), "%s/junk.pem", fx.dir);
    snprintf(fx.enc_key, sizeof(fx.enc_key), "%s/enc.key", fx.dir);
    make_cert("mail.example.test", "DNS:mail.example.test,IP:127.0.0.1",
              fx.a_crt, fx.a_key);
    make_cert("other.example.test", "DNS:other.example.test", fx.b_crt,
              fx.b_key);
    write_file(fx.junk, "this is not a certificate\n");
    {
        EVP_PKEY *pk = EVP_EC_gen("P-256");
        FILE *f = fopen(fx.enc_key, "w");

        if (pk == NULL || f == NULL
            || PEM_write_PrivateKey(f, pk, EVP_aes_128_cbc(),
                                    (const unsigned char *)"secret", 6,
                                    NULL, NULL) != 1)
            return -1;
        fclose(f);
        EVP_PKEY_free(pk);
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    unlink(fx.a_crt);
    unlink(fx.a_key);
    unlink(fx.b_crt);
    unlink(fx.b_key);
    unlink(fx.junk);
    unlink(fx.enc_key);
    rmdir(fx.dir);
    return 0;
}

/* --- helpers ------------------------------------------------------------ */

static struct tls_ctx *
server_ctx(const char *crt, const char *key, enum tls_version min,
           enum tls_version max)
{
    struct tls_config cfg = {
        .role = TLS_ROLE_SERVER,
        .cert_file = crt,
        .key_file = key,
        .min_version = min,
        .max_version = max,
    };
    struct tls_ctx *ctx;
    char err[TLS_ERROR_MAX];
    int rc = tls_ctx_new(&cfg, &ctx, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "server context: %s\n", err);
    assert_rc(rc, 0);
    return ctx;
}

static struct tls_ctx *
client_ctx(const char *ca, unsigned insecure, enum tls_version min,
           enum tls_version max)
{
    struct tls_config cfg = {
        .role = TLS_ROLE_CLIENT,
        .ca_file = ca,
        .insecure = insecure,
        .min_version = min,
        .max_version = max,
    };
    struct tls_ctx *ctx;
    char err[TLS_ERROR_MAX];
    int rc = tls_ctx_new(&cfg, &ctx, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "client context: %s\n", err);
    assert_rc(rc, 0);
    return ctx;
}

/* Move all of from's pending ciphertext into to, in random-sized pieces
 * (so records arrive split).  Returns the byte count. */
static size_t
shuttle(struct tls *from, struct tls *to)
{
    const uint8_t *p;
    size_t n, moved = 0;

    while ((n = tls_pending_out(from, &p)) > 0) {
        size_t k = rng_size(n < 3000 ? n : 3000);

        /* A failed receiver keeps its error; the bytes are dropped. */
        (void)tls_feed(to, p, k);
        tls_consume_out(from, k);
        moved += k;
    }
    return moved;
}

/* Run the handshake to its end either way; the last statuses are left in
 * *crc and *src. */
static void
handshake(struct tls *c, struct tls *s, int *crc, int *src)
{
    for (int round = 0; round < 50; round++) {
        size_t moved;

        *crc = tls_handshake(c);
        moved = shuttle(c, s);
        *src = tls_handshake(s);
        moved += shuttle(s, c);
        if (moved == 0)
            return;
    }
    fail_msg("handshake did not settle in 50 rounds");
}

struct conn {
    struct tls_ctx *sctx, *cctx;
    struct tls *s, *c;
    int src, crc;
};

/* Handshake a client (peer host `host`) with a server; contexts are
 * freed at once, the connections keep them alive. */
static void
conn_open(struct conn *k, struct tls_ctx *sctx, struct tls_ctx *cctx,
          const char *host)
{
    memset(k, 0, sizeof(*k));
    assert_rc(tls_new(sctx, NULL, &k->s), 0);
    assert_rc(tls_new(cctx, host, &k->c), 0);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
    handshake(k->c, k->s, &k->crc, &k->src);
}

static void
conn_close(struct conn *k)
{
    tls_free(k->c);
    tls_free(k->s);
}

/* A connection with default settings against cert A, verified. */
static void
conn_default(struct conn *k, enum tls_version max)
{
    conn_open(k, server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT, max),
              client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT,
                         TLS_VERSION_DEFAULT),
              "mail.example.test");
    if (k->crc != TLS_OK || k->src != TLS_OK)
        fprintf(stderr, "client: %s\nserver: %s\n", tls_error(k->c),
                tls_error(k->s));
    assert_rc(k->crc, TLS_OK);
    assert_rc(k->src, TLS_OK);
}

/*
 * Send len bytes from one side to the other in random-sized writes (max
 * wmax), shuttling as we go, and read them back in random-sized reads.
 * Asserts they arrive byte-identical.
 */
static void
transfer(struct tls *from, struct tls *to, const uint8_t *data, size_t len,
         size_t wmax)
{
    uint8_t *got = malloc(len + 1);
    size_t sent = 0, recvd = 0;

    assert_non_null(got);
    while (sent < len || recvd < len) {
        size_t n;
        int rc;

        if (sent < len) {
            size_t k = rng_size(wmax);

            if (k > len - sent)
                k = len - sent;
            assert_rc(tls_write(from, data + sent, k), TLS_OK);
            sent += k;
        }
        shuttle(from, to);
        for (;;) {
            size_t cap = rng_size(40000);

            if (cap > len + 1 - recvd)
                cap = len + 1 - recvd;
            rc = tls_read(to, got + recvd, cap, &n);
            if (rc != TLS_OK)
                break;
            assert_true(n > 0 && n <= cap);
            recvd += n;
            assert_true(recvd <= len);
        }
        assert_rc(rc, TLS_WANT_MORE);
        /* Anything the receiver has to say (TLS 1.3 tickets, none here
         * usually) goes back too. */
        shuttle(to, from);
    }
    if (recvd != len || memcmp(got, data, len) != 0) {
        size_t i = 0;

        while (i < len && i < recvd && got[i] == data[i])
            i++;
        fail_msg("got %zu bytes, want %zu; first difference at %zu", recvd,
                 len, i);
    }
    free(got);
}

/* --- tests -------------------------------------------------------------- */

static void
test_version_parse(void **state)
{
    static const struct {
        const char *text;
        int rc;
        enum tls_version v;
    } rows[] = {
        {"TLSv1", 0, TLS_VERSION_1_0},
        {"TLSv1.1", 0, TLS_VERSION_1_1},
        {"TLSv1.2", 0, TLS_VERSION_1_2},
        {"TLSv1.3", 0, TLS_VERSION_1_3},
        {"TLSv1.0", PST_EINVAL, TLS_VERSION_DEFAULT},
        {"tlsv1.2", PST_EINVAL, TLS_VERSION_DEFAULT},
        {"SSLv3", PST_EINVAL, TLS_VERSION_DEFAULT},
        {"TLSv1.4", PST_EINVAL, TLS_VERSION_DEFAULT},
        {"", PST_EINVAL, TLS_VERSION_DEFAULT},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum tls_version v = TLS_VERSION_DEFAULT;

        assert_rc(tls_version_parse(rows[i].text, &v), rows[i].rc);
        assert_int_equal(v, rows[i].v);
        /* The name is the text it was parsed from. */
        if (rows[i].rc == 0)
            assert_string_equal(tls_version_name(v), rows[i].text);
    }
    assert_null(tls_version_name(TLS_VERSION_DEFAULT));
    assert_null(tls_version_name((enum tls_version)99));
}

/* Every way a context can fail to load, and the reason it gives. */
static void
test_ctx_errors(void **state)
{
    struct {
        struct tls_config cfg;
        int rc;
        const char *text;   /* a substring of the reason */
    } rows[] = {
        {{.role = TLS_ROLE_SERVER, .cert_file = "/nonexistent/c.pem",
          .key_file = fx.a_key},
         PST_EIO, "cannot load tls_cert /nonexistent/c.pem: No such file"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = "/nonexistent/k.pem"},
         PST_EIO, "cannot load tls_key /nonexistent/k.pem: No such file"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.junk,
          .key_file = fx.a_key},
         PST_EIO, "no start line"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = fx.junk},
         PST_EIO, "cannot load tls_key"},
        /* Never prompts for the passphrase. */
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = fx.enc_key},
         PST_EIO, "cannot load tls_key"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = fx.b_key},
         PST_EINVAL, "key values mismatch"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt},
         PST_EINVAL, "needs tls_cert and tls_key"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = fx.a_key, .min_version = TLS_VERSION_1_3,
          .max_version = TLS_VERSION_1_2},
         PST_EINVAL, "invalid TLS version range"},
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = fx.a_key, .min_version = (enum tls_version)9},
         PST_EINVAL, "invalid TLS version range"},
        {{.role = TLS_ROLE_CLIENT, .ca_file = "/nonexistent/ca.pem"},
         PST_EIO, "cannot load CA file /nonexistent/ca.pem"},
        {{.role = TLS_ROLE_CLIENT, .ca_file = fx.junk},
         PST_EIO, "cannot load CA file"},
        {{.role = (enum tls_role)7}, PST_EINVAL, "invalid TLS role"},
        /* And the ones that work. */
        {{.role = TLS_ROLE_SERVER, .cert_file = fx.a_crt,
          .key_file = fx.a_key, .min_version = TLS_VERSION_1_0}, 0, ""},
        {{.role = TLS_ROLE_CLIENT}, 0, ""},
        {{.role = TLS_ROLE_CLIENT, .ca_file = fx.a_crt,
          .max_version = TLS_VERSION_1_2}, 0, ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct tls_ctx *ctx = (struct tls_ctx *)&rows[i];
        char err[TLS_ERROR_MAX];
        int rc = tls_ctx_new(&rows[i].cfg, &ctx, err, sizeof(err));

        if (rc != rows[i].rc || strstr(err, rows[i].text) == NULL)
            fail_msg("row %zu: got %d \"%s\", want %d \"...%s...\"", i, rc,
                     err, rows[i].rc, rows[i].text);
        if (rc != 0) {
            assert_null(ctx);
            assert_true(strlen(err) > 0);
        } else {
            assert_non_null(ctx);
            assert_string_equal(err, "");
        }
        tls_ctx_free(ctx);
    }
    tls_ctx_free(NULL);
}

/* A full TLS 1.3 handshake, the accessors, and data both ways. */
static void
test_handshake_and_data(void **state)
{
    static const char hello[] = "EHLO device.example.test\r\n";
    static const char reply[] = "250-mail.example.test\r\n250 AUTH PLAIN\r\n";
    struct tls_ctx *sctx, *cctx;
    struct tls *s, *c;
    struct tls_peer_cert pc;
    const char *why;
    int crc, src;

    (void)state;
    rng_seed(1);
    sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                      TLS_VERSION_DEFAULT);
    cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT);
    assert_rc(tls_new(sctx, NULL, &s), 0);
    assert_rc(tls_new(cctx, "mail.example.test", &c), 0);

    /* Nothing is known, or sent, before the handshake. */
    assert_int_equal(tls_pending_out(c, &(const uint8_t *){NULL}), 0);
    assert_string_equal(tls_protocol(c), "");
    assert_string_equal(tls_cipher(c), "");
    assert_int_equal(tls_cipher_bits(c), 0);
    assert_string_equal(tls_error(c), "");
    assert_rc(tls_peer_cert(c, &pc), PST_ESTATE);
    assert_rc(tls_peer_verify(c, &why), PST_ESTATE);
    assert_rc(tls_exporter(c, (uint8_t[TLS_EXPORTER_LEN]){0}), PST_ESTATE);
    /* The server waits for a ClientHello. */
    assert_rc(tls_handshake(s), TLS_WANT_MORE);
    assert_int_equal(tls_pending_out(s, &(const uint8_t *){NULL}), 0);

    handshake(c, s, &crc, &src);
    assert_rc(crc, TLS_OK);
    assert_rc(src, TLS_OK);
    assert_rc(tls_handshake(c), TLS_OK);     /* idempotent */

    assert_string_equal(tls_protocol(c), "TLSv1.3");
    assert_string_equal(tls_protocol(s), "TLSv1.3");
    assert_string_equal(tls_cipher(c), "TLS_AES_256_GCM_SHA384");
    assert_string_equal(tls_cipher(s), "TLS_AES_256_GCM_SHA384");
    assert_int_equal(tls_cipher_bits(c), 256);
    assert_int_equal(tls_cipher_bits(s), 256);

    assert_rc(tls_peer_cert(c, &pc), 0);
    assert_string_equal(pc.subject, "CN=mail.example.test");
    assert_string_equal(pc.issuer, "CN=mail.example.test");
    assert_string_equal(pc.not_after, CERT_NOT_AFTER_ISO);
    assert_rc(tls_peer_verify(c, &why), 0);
    assert_string_equal(why, "ok");
    /* The server asked for no client certificate. */
    assert_rc(tls_peer_cert(s, &pc), PST_ENOENT);
    assert_string_equal(pc.subject, "");
    assert_rc(tls_peer_verify(s, &why), PST_EAUTH);
    assert_string_equal(why, "no peer certificate");

    transfer(c, s, (const uint8_t *)hello, strlen(hello), 7);
    transfer(s, c, (const uint8_t *)reply, strlen(reply), 1000);
    assert_string_equal(tls_error(c), "");
    assert_string_equal(tls_error(s), "");

    tls_free(c);
    tls_free(s);
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
}

/*
 * No tls_handshake() at all: the client writes (retrying the same bytes
 * while it returns TLS_WANT_MORE), the server reads, and the handshake
 * happens on the way.
 */
static void
test_driven_by_read_write(void **state)
{
    static const uint8_t ehlo[] = "EHLO device.example.test\r\n";
    struct tls_ctx *sctx, *cctx;
    struct tls *s, *c;
    uint8_t buf[256];
    size_t n = 0;
    int wrc = TLS_WANT_MORE, rrc = TLS_WANT_MORE, rounds = 0;
    unsigned want_more_writes = 0;

    (void)state;
    rng_seed(9);
    sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                      TLS_VERSION_DEFAULT);
    cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT);
    assert_rc(tls_new(sctx, NULL, &s), 0);
    assert_rc(tls_new(cctx, "mail.example.test", &c), 0);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
    while (rrc != TLS_OK) {
        assert_true(++rounds < 50);
        if (wrc == TLS_WANT_MORE) {
            /* A copy each time: the buffer may move between retries. */
            uint8_t copy[sizeof(ehlo)];

            memcpy(copy, ehlo, sizeof(copy));
            wrc = tls_write(c, copy, sizeof(ehlo) - 1);
            assert_true(wrc == TLS_OK || wrc == TLS_WANT_MORE);
            want_more_writes += wrc == TLS_WANT_MORE;
        }
        shuttle(c, s);
        rrc = tls_read(s, buf, sizeof(buf), &n);
        assert_true(rrc == TLS_OK || rrc == TLS_WANT_MORE);
        shuttle(s, c);
    }
    /* The first write had to wait for the server's flight. */
    assert_true(want_more_writes >= 1);
    assert_rc(wrc, TLS_OK);
    assert_bytes_equal(buf, n, ehlo, sizeof(ehlo) - 1);
    assert_string_equal(tls_protocol(s), "TLSv1.3");
    tls_free(c);
    tls_free(s);
}

/* 1 MiB each way in random-sized writes, pieces and reads (fixed seed). */
static void
test_bulk_transfer(void **state)
{
    static const struct {
        enum tls_version max;
        const char *protocol;
    } rows[] = {
        {TLS_VERSION_DEFAULT, "TLSv1.3"},
        {TLS_VERSION_1_2, "TLSv1.2"},
    };
    const size_t len = 1 << 20;
    uint8_t *data = malloc(len);

    (void)state;
    assert_non_null(data);
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        struct conn k;

        rng_seed(0x9e3779b97f4a7c15ULL + r);
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)(rng_next() >> 56);
        conn_default(&k, rows[r].max);
        assert_string_equal(tls_protocol(k.c), rows[r].protocol);
        transfer(k.c, k.s, data, len, 65536);
        transfer(k.s, k.c, data, len, 20000);
        /* Small writes interleaved with the big ones still line up. */
        transfer(k.c, k.s, data, 4096, 3);
        conn_close(&k);
    }
    free(data);
}

/* Version ranges on each side, including TLSv1 for old devices. */
static void
test_versions(void **state)
{
    static const struct {
        enum tls_version smin, smax, cmin, cmax;
        int rc;                 /* both sides: TLS_OK, or < 0 */
        const char *protocol;   /* on success */
        const char *cerr;       /* client's reason on failure (substring) */
    } rows[] = {
        {TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT,
         TLS_VERSION_DEFAULT, TLS_OK, "TLSv1.3", NULL},
        {TLS_VERSION_DEFAULT, TLS_VERSION_1_2, TLS_VERSION_DEFAULT,
         TLS_VERSION_DEFAULT, TLS_OK, "TLSv1.2", NULL},
        {TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT, TLS_VERSION_1_3,
         TLS_VERSION_DEFAULT, TLS_OK, "TLSv1.3", NULL},
        /* tls_min_version = TLSv1 lets a TLS 1.0-only device in ... */
        {TLS_VERSION_1_0, TLS_VERSION_DEFAULT, TLS_VERSION_1_0,
         TLS_VERSION_1_0, TLS_OK, "TLSv1", NULL},
        {TLS_VERSION_1_1, TLS_VERSION_DEFAULT, TLS_VERSION_1_0,
         TLS_VERSION_1_1, TLS_OK, "TLSv1.1", NULL},
        /* ... and still gives a modern client the best. */
        {TLS_VERSION_1_0, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT,
         TLS_VERSION_DEFAULT, TLS_OK, "TLSv1.3", NULL},
        /* The default minimum refuses it. */
        {TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT, TLS_VERSION_1_0,
         TLS_VERSION_1_1, PST_EPROTO, NULL, "alert protocol version"},
        /* A TLS 1.3-only client against a TLS 1.2-only server. */
        {TLS_VERSION_DEFAULT, TLS_VERSION_1_2, TLS_VERSION_1_3,
         TLS_VERSION_DEFAULT, PST_EPROTO, NULL, "alert protocol version"},
    };

    (void)state;
    rng_seed(2);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct conn k;

        conn_open(&k, server_ctx(fx.a_crt, fx.a_key, rows[i].smin,
                                 rows[i].smax),
                  client_ctx(fx.a_crt, 0, rows[i].cmin, rows[i].cmax),
                  "mail.example.test");
        if (rows[i].rc == TLS_OK) {
            if (k.crc != TLS_OK || k.src != TLS_OK)
                fail_msg("row %zu: got %d/%d (%s / %s), want success", i,
                         k.crc, k.src, tls_error(k.c), tls_error(k.s));
            assert_string_equal(tls_protocol(k.c), rows[i].protocol);
            assert_string_equal(tls_protocol(k.s), rows[i].protocol);
            transfer(k.c, k.s, (const uint8_t *)"QUIT\r\n", 6, 6);
        } else {
            if (k.crc != rows[i].rc || k.src >= 0
                || strstr(tls_error(k.c), rows[i].cerr) == NULL)
                fail_msg("row %zu: got %d/%d (\"%s\" / \"%s\"), want %d "
                         "\"...%s...\"", i, k.crc, k.src, tls_error(k.c),
                         tls_error(k.s), rows[i].rc, rows[i].cerr);
            assert_true(strlen(tls_error(k.s)) > 0);
            assert_string_equal(tls_protocol(k.c), "");
            /* The failure is sticky. */
            assert_rc(tls_handshake(k.c), rows[i].rc);
            assert_rc(tls_write(k.c, (const uint8_t *)"x", 1), rows[i].rc);
            assert_rc(tls_shutdown(k.c), rows[i].rc);
        }
        conn_close(&k);
    }
}

/* The client's verification of the server's certificate. */
static void
test_verify(void **state)
{
    static const struct {
        const char *ca;         /* "A", "B", or NULL: system store */
        unsigned insecure;
        const char *host;
        int rc;                 /* client's handshake */
        const char *err;        /* client's tls_error() */
        int vrc;                /* tls_peer_verify() after success */
        const char *why;
    } rows[] = {
        {"A", 0, "mail.example.test", TLS_OK, "", 0, "ok"},
        {"A", 0, "MAIL.Example.TEST", TLS_OK, "", 0, "ok"},
        {"A", 0, "127.0.0.1", TLS_OK, "", 0, "ok"},
        {"A", 0, "wrong.example.test", PST_EAUTH,
         "certificate verify failed: hostname mismatch", 0, NULL},
        {"A", 0, "example.test", PST_EAUTH,
         "certificate verify failed: hostname mismatch", 0, NULL},
        {"A", 0, "127.0.0.2", PST_EAUTH,
         "certificate verify failed: IP address mismatch", 0, NULL},
        {"B", 0, "mail.example.test", PST_EAUTH,
         "certificate verify failed: self-signed certificate", 0, NULL},
        {NULL, 0, "mail.example.test", PST_EAUTH,
         "certificate verify failed: self-signed certificate", 0, NULL},
        /* Insecure connects anyway, and still says what is wrong. */
        {"A", 1, "wrong.example.test", TLS_OK, "", PST_EAUTH,
         "hostname mismatch"},
        {NULL, 1, "mail.example.test", TLS_OK, "", PST_EAUTH,
         "self-signed certificate"},
        {"A", 1, "mail.example.test", TLS_OK, "", 0, "ok"},
    };

    (void)state;
    rng_seed(3);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *ca = rows[i].ca == NULL ? NULL
                         : rows[i].ca[0] == 'A' ? fx.a_crt
                                                : fx.b_crt;
        struct conn k;
        const char *why = NULL;

        conn_open(&k, server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                                 TLS_VERSION_DEFAULT),
                  client_ctx(ca, rows[i].insecure, TLS_VERSION_DEFAULT,
                             TLS_VERSION_DEFAULT),
                  rows[i].host);
        if (k.crc != rows[i].rc || strcmp(tls_error(k.c), rows[i].err) != 0)
            fail_msg("row %zu (%s): got %d \"%s\", want %d \"%s\"", i,
                     rows[i].host, k.crc, tls_error(k.c), rows[i].rc,
                     rows[i].err);
        if (rows[i].rc == TLS_OK) {
            /* RFC 6066 §3: SNI carries DNS names, never IP literals. */
            const char *sni = strcmp(rows[i].host, "127.0.0.1") == 0
                                  ? ""
                                  : rows[i].host;

            assert_rc(k.src, TLS_OK);
            assert_string_equal(tls_server_name(k.s), sni);
            assert_string_equal(tls_server_name(k.c), sni);
            assert_rc(tls_peer_verify(k.c, &why), rows[i].vrc);
            assert_string_equal(why, rows[i].why);
        } else {
            /* The client told the server why with an alert. */
            assert_true(k.src < 0);
            assert_non_null(strstr(tls_error(k.s), "alert"));
        }
        conn_close(&k);
    }
}

/* Channel bindings: RFC 9266 tls-exporter and RFC 5929 tls-unique. */
static void
test_channel_binding(void **state)
{
    uint8_t ec[TLS_EXPORTER_LEN], es[TLS_EXPORTER_LEN];
    uint8_t first[TLS_EXPORTER_LEN];
    uint8_t uc[TLS_UNIQUE_MAX], us[TLS_UNIQUE_MAX];
    static const uint8_t zero[TLS_EXPORTER_LEN];
    size_t ulc, uls;
    struct conn k;

    (void)state;
    rng_seed(4);
    /* TLS 1.3: exporter equal on both sides; no tls-unique. */
    conn_default(&k, TLS_VERSION_DEFAULT);
    assert_rc(tls_exporter(k.c, ec), 0);
    assert_rc(tls_exporter(k.s, es), 0);
    assert_bytes_equal(ec, sizeof(ec), es, sizeof(es));
    assert_true(CRYPTO_memcmp(ec, zero, sizeof(ec)) != 0);
    memcpy(first, ec, sizeof(first));
    assert_rc(tls_unique(k.c, uc, sizeof(uc), &ulc), PST_ENOTSUP);
    assert_int_equal(ulc, 0);
    conn_close(&k);

    /* Another connection, another value. */
    conn_default(&k, TLS_VERSION_DEFAULT);
    assert_rc(tls_exporter(k.c, ec), 0);
    assert_true(CRYPTO_memcmp(ec, first, sizeof(ec)) != 0);
    conn_close(&k);

    /* TLS 1.2 (with extended master secret, OpenSSL's default): both. */
    conn_default(&k, TLS_VERSION_1_2);
    assert_string_equal(tls_protocol(k.c), "TLSv1.2");
    assert_rc(tls_exporter(k.c, ec), 0);
    assert_rc(tls_exporter(k.s, es), 0);
    assert_bytes_equal(ec, sizeof(ec), es, sizeof(es));
    assert_rc(tls_unique(k.c, uc, sizeof(uc), &ulc), 0);
    assert_rc(tls_unique(k.s, us, sizeof(us), &uls), 0);
    /* RFC 5246 §7.4.9: verify_data is 12 bytes. */
    assert_int_equal(ulc, 12);
    assert_bytes_equal(uc, ulc, us, uls);
    assert_rc(tls_unique(k.c, uc, 11, &ulc), PST_ELIMIT);
    assert_int_equal(ulc, 0);
    conn_close(&k);
}

/* Bytes that are not TLS get an error status, never a crash. */
static void
test_garbage(void **state)
{
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
        int to_client;      /* 1: fed to a client after its ClientHello */
        const char *err;    /* substring of tls_error() */
    } rows[] = {
        {"SMTP command", "EHLO x\r\n", 8, 0, "wrong version number"},
        {"HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, 0,
         "http request"},
        {"oversized record", "\x16\x03\x01\xff\xff", 5, 0,
         "packet length too long"},
        {"plaintext banner", "220 mail.example.test ESMTP\r\n", 29, 1,
         "wrong version number"},
    };

    (void)state;
    rng_seed(5);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* Whole, then byte by byte. */
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct tls_ctx *ctx;
            struct tls *t;
            int rc = TLS_WANT_MORE;
            size_t n;
            uint8_t buf[64];

            if (rows[i].to_client) {
                ctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT,
                                 TLS_VERSION_DEFAULT);
                assert_rc(tls_new(ctx, "mail.example.test", &t), 0);
                assert_rc(tls_handshake(t), TLS_WANT_MORE);
                assert_true(tls_pending_out(t, &(const uint8_t *){NULL})
                            > 0);
                tls_consume_out(t, tls_pending_out(t,
                                                   &(const uint8_t *){NULL}));
            } else {
                ctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                                 TLS_VERSION_DEFAULT);
                assert_rc(tls_new(ctx, NULL, &t), 0);
            }
            tls_ctx_free(ctx);
            if (bytewise) {
                for (size_t j = 0; j < rows[i].len && rc == TLS_WANT_MORE;
                     j++) {
                    assert_rc(tls_feed(t, (const uint8_t *)rows[i].bytes + j,
                                       1), 0);
                    rc = tls_read(t, buf, sizeof(buf), &n);
                }
            } else {
                assert_rc(tls_feed(t, (const uint8_t *)rows[i].bytes,
                                   rows[i].len), 0);
                rc = tls_handshake(t);
            }
            if (rc != PST_EPROTO || strstr(tls_error(t), rows[i].err) == NULL)
                fail_msg("%s%s: got %d \"%s\", want EPROTO \"...%s...\"",
                         rows[i].name, bytewise ? " (bytewise)" : "", rc,
                         tls_error(t), rows[i].err);
            /* Sticky, for every call. */
            assert_rc(tls_read(t, buf, sizeof(buf), &n), PST_EPROTO);
            assert_int_equal(n, 0);
            assert_rc(tls_feed(t, (const uint8_t *)"x", 1), PST_EPROTO);
            assert_rc(tls_handshake(t), PST_EPROTO);
            tls_free(t);
        }
    }
}

/* Garbage inside an established connection: a record that fails its MAC. */
static void
test_garbage_after_handshake(void **state)
{
    uint8_t junk[64], buf[64];
    struct conn k;
    const uint8_t *p;
    size_t n, len;
    uint8_t *copy;

    (void)state;
    rng_seed(6);
    conn_default(&k, TLS_VERSION_DEFAULT);
    /* Flip a bit in a genuine record in flight. */
    assert_rc(tls_write(k.c, (const uint8_t *)"NOOP\r\n", 6), TLS_OK);
    len = tls_pending_out(k.c, &p);
    assert_true(len > 6);
    copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, p, len);
    tls_consume_out(k.c, len);
    copy[len - 1] ^= 0x01;
    assert_rc(tls_feed(k.s, copy, len), 0);
    assert_rc(tls_read(k.s, buf, sizeof(buf), &n), PST_EPROTO);
    assert_non_null(strstr(tls_error(k.s), "bad record mac"));
    free(copy);
    conn_close(&k);

    /* Random bytes shaped like an application-data record. */
    conn_default(&k, TLS_VERSION_DEFAULT);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(rng_next() >> 56);
    junk[0] = 0x17;
    junk[1] = 0x03;
    junk[2] = 0x03;
    junk[3] = 0x00;
    junk[4] = (uint8_t)(sizeof(junk) - 5);
    assert_rc(tls_feed(k.c, junk, sizeof(junk)), 0);
    assert_rc(tls_read(k.c, buf, sizeof(buf), &n), PST_EPROTO);
    assert_true(strlen(tls_error(k.c)) > 0);
    conn_close(&k);
}

/* close_notify: produced by tls_shutdown(), recognised by tls_read(). */
static void
test_close_notify(void **state)
{
    static const uint8_t quit[] = "QUIT\r\n";
    uint8_t buf[64];
    struct conn k;
    size_t n;

    (void)state;
    rng_seed(7);
    conn_default(&k, TLS_VERSION_DEFAULT);
    /* Data written before close_notify is read before TLS_CLOSED. */
    assert_rc(tls_write(k.c, quit, 6), TLS_OK);
    assert_rc(tls_shutdown(k.c), 0);
    assert_rc(tls_shutdown(k.c), 0);               /* once is enough */
    assert_rc(tls_write(k.c, quit, 6), PST_ESTATE);
    assert_true(shuttle(k.c, k.s) > 0);
    assert_rc(tls_read(k.s, buf, sizeof(buf), &n), TLS_OK);
    assert_bytes_equal(buf, n, quit, 6);
    assert_rc(tls_read(k.s, buf, sizeof(buf), &n), TLS_CLOSED);
    assert_int_equal(n, 0);
    assert_rc(tls_read(k.s, buf, sizeof(buf), &n), TLS_CLOSED);
    /* The server answers with its own close_notify. */
    assert_rc(tls_shutdown(k.s), 0);
    assert_true(shuttle(k.s, k.c) > 0);
    assert_rc(tls_read(k.c, buf, sizeof(buf), &n), TLS_CLOSED);
    assert_string_equal(tls_error(k.c), "");
    assert_string_equal(tls_error(k.s), "");
    conn_close(&k);

    /* The same over TLS 1.2, server first. */
    conn_default(&k, TLS_VERSION_1_2);
    assert_rc(tls_shutdown(k.s), 0);
    shuttle(k.s, k.c);
    assert_rc(tls_read(k.c, buf, sizeof(buf), &n), TLS_CLOSED);
    assert_rc(tls_shutdown(k.c), 0);
    shuttle(k.c, k.s);
    assert_rc(tls_read(k.s, buf, sizeof(buf), &n), TLS_CLOSED);
    conn_close(&k);
}

/* --- the pump (tls_input, tls_send, tls_flush) ------------------------- */

/* One end of a pumped connection: what its callbacks saw. */
struct pend {
    struct tls *t;
    struct pst_buf wire;      /* ciphertext sent, not yet delivered */
    struct pst_buf plain;     /* plaintext received */
    unsigned sends, recvs, established;
    int stop_send, stop_recv, stop_established; /* 1: that callback stops */
    int free_on_stop;         /* a stopping callback frees t (as bench) */
};

static int
pend_send(void *ctx, const uint8_t *p, size_t n)
{
    struct pend *e = ctx;

    e->sends++;
    assert_true(n > 0);
    if (e->stop_send) {
        if (e->free_on_stop) {
            tls_free(e->t);
            e->t = NULL;
        }
        return 1;
    }
    assert_rc(pst_buf_append(&e->wire, p, n), 0);
    return 0;
}

static int
pend_recv(void *ctx, const uint8_t *p, size_t n)
{
    struct pend *e = ctx;

    e->recvs++;
    assert_true(n > 0 && n <= 16384);
    assert_rc(pst_buf_append(&e->plain, p, n), 0);
    if (e->stop_recv) {
        if (e->free_on_stop) {
            tls_free(e->t);
            e->t = NULL;
        }
        return 1;
    }
    return 0;
}

static int
pend_established(void *ctx)
{
    struct pend *e = ctx;

    e->established++;
    /* The accessors answer from the callback on. */
    assert_true(strlen(tls_protocol(e->t)) > 0);
    assert_int_equal(tls_established(e->t), 1);
    return e->stop_established;
}

static const struct tls_io pend_io = {
    .send = pend_send,
    .recv = pend_recv,
    .established = pend_established,
};

static void
pend_init(struct pend *e, struct tls *t)
{
    memset(e, 0, sizeof(*e));
    e->t = t;
    pst_buf_init(&e->wire, 1 << 20, 0);
    pst_buf_init(&e->plain, 1 << 20, 0);
    tls_set_io(t, &pend_io, e);
}

static void
pend_clear(struct pend *e)
{
    tls_free(e->t);
    pst_buf_clear(&e->wire);
    pst_buf_clear(&e->plain);
}

/*
 * Deliver what `from` sent to `to` through tls_input() in random pieces
 * (empty ones included).  Returns the last status (TLS_OK when nothing
 * was in flight).
 */
static int
pump_deliver(struct pend *from, struct pend *to)
{
    size_t off = 0;
    int rc = TLS_OK;

    while (off < from->wire.len) {
        size_t k = rng_size(from->wire.len - off + 1) - 1;

        rc = tls_input(to->t, from->wire.data + off, k);
        off += k;
        if (rc != TLS_OK && rc != TLS_WANT_MORE)
            break;
    }
    pst_buf_reset(&from->wire);
    return rc;
}

/* Both ends through the pump: the handshake, data both ways, the
 * callbacks counted exactly. */
static void
test_pump(void **state)
{
    struct tls_ctx *sctx, *cctx;
    struct tls *s, *c;
    struct pend se, ce;
    uint8_t *big;
    size_t big_len = 200000;
    int crc = TLS_WANT_MORE, src = TLS_WANT_MORE;

    (void)state;
    rng_seed(11);
    for (int v = 0; v < 2; v++) {
        sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                          v == 0 ? TLS_VERSION_DEFAULT : TLS_VERSION_1_2);
        cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT,
                          TLS_VERSION_DEFAULT);
        assert_rc(tls_new(sctx, NULL, &s), 0);
        assert_rc(tls_new(cctx, "mail.example.test", &c), 0);
        tls_ctx_free(sctx);
        tls_ctx_free(cctx);
        pend_init(&se, s);
        pend_init(&ce, c);

        /* No input: the client's ClientHello goes out, nothing else. */
        assert_rc(tls_input(c, NULL, 0), TLS_WANT_MORE);
        assert_int_equal(ce.sends, 1);
        assert_true(ce.wire.len > 0);
        assert_int_equal(tls_established(c), 0);
        /* Plaintext cannot go out yet. */
        assert_rc(tls_send(c, (const uint8_t *)"x", 1),
                  TLS_WANT_MORE);
        for (int round = 0; round < 20 && (ce.wire.len || se.wire.len);
             round++) {
            src = pump_deliver(&ce, &se);
            crc = pump_deliver(&se, &ce);
        }
        assert_rc(src, TLS_OK);
        assert_rc(crc, TLS_OK);
        assert_int_equal(se.established, 1);
        assert_int_equal(ce.established, 1);
        assert_int_equal(se.recvs + ce.recvs, 0);
        assert_string_equal(tls_protocol(c), v == 0 ? "TLSv1.3"
                                                    : "TLSv1.2");

        /* Data both ways, split anyhow; established is not called
         * again. */
        assert_rc(tls_send(c, (const uint8_t *)"EHLO x\r\n", 8),
                  TLS_OK);
        assert_rc(pump_deliver(&ce, &se), TLS_OK);
        assert_bytes_equal(se.plain.data, se.plain.len, "EHLO x\r\n", 8);
        big = malloc(big_len);
        assert_non_null(big);
        for (size_t i = 0; i < big_len; i++)
            big[i] = (uint8_t)(rng_next() >> 56);
        assert_rc(tls_send(s, big, big_len), TLS_OK);
        assert_rc(pump_deliver(&se, &ce), TLS_OK);
        assert_bytes_equal(ce.plain.data, ce.plain.len, big, big_len);
        /* Records carry at most 16 KiB: one recv per record at least. */
        assert_true(ce.recvs >= big_len / 16384);
        assert_int_equal(se.established, 1);
        assert_int_equal(ce.established, 1);
        free(big);

        /* Plaintext and close_notify in one input: both delivered, then
         * TLS_CLOSED. */
        pst_buf_reset(&se.plain);
        assert_rc(tls_send(c, (const uint8_t *)"QUIT\r\n", 6),
                  TLS_OK);
        assert_rc(tls_shutdown(c), 0);
        assert_rc(tls_flush(c), TLS_OK);
        assert_int_equal(tls_pending_out(c, &(const uint8_t *){NULL}), 0);
        assert_rc(tls_input(s, ce.wire.data, ce.wire.len),
                  TLS_CLOSED);
        assert_bytes_equal(se.plain.data, se.plain.len, "QUIT\r\n", 6);
        pend_clear(&se);
        pend_clear(&ce);
    }
}

/* A callback that stops: the pump returns TLS_STOPPED at once and does
 * not touch the connection again (the callback freed it: ASan would
 * see any use). */
static void
test_pump_stop(void **state)
{
    struct tls_ctx *sctx, *cctx;
    struct tls *s, *c;
    struct pend se, ce;

    (void)state;
    rng_seed(12);
    for (int which = 0; which < 3; which++) {
        sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                          TLS_VERSION_DEFAULT);
        cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT,
                          TLS_VERSION_DEFAULT);
        assert_rc(tls_new(sctx, NULL, &s), 0);
        assert_rc(tls_new(cctx, "mail.example.test", &c), 0);
        tls_ctx_free(sctx);
        tls_ctx_free(cctx);
        pend_init(&se, s);
        pend_init(&ce, c);
        se.free_on_stop = 1;
        assert_rc(tls_input(c, NULL, 0), TLS_WANT_MORE);
        if (which == 0) {
            /* The server's first flight cannot be sent. */
            se.stop_send = 1;
            assert_rc(tls_input(s, ce.wire.data, ce.wire.len),
                      TLS_STOPPED);
            assert_int_equal(se.sends, 1);
            assert_null(se.t);
        } else {
            assert_rc(tls_input(s, ce.wire.data, ce.wire.len),
                      TLS_WANT_MORE);
            pst_buf_reset(&ce.wire);
            assert_rc(tls_input(c, se.wire.data, se.wire.len),
                      TLS_OK);
            assert_int_equal(ce.established, 1);
            /* The client's Finished and a command in one input. */
            assert_rc(tls_send(c, (const uint8_t *)"NOOP\r\n", 6),
                      TLS_OK);
            if (which == 1) {
                se.stop_established = 1;
                assert_rc(tls_input(s, ce.wire.data, ce.wire.len),
                          TLS_STOPPED);
                assert_int_equal(se.established, 1);
                assert_int_equal(se.recvs, 0);
                tls_free(se.t); /* pend_established does not free */
                se.t = NULL;
            } else {
                se.stop_recv = 1;
                assert_rc(tls_input(s, ce.wire.data, ce.wire.len),
                          TLS_STOPPED);
                assert_int_equal(se.recvs, 1);
                assert_bytes_equal(se.plain.data, se.plain.len,
                                   "NOOP\r\n", 6);
                assert_null(se.t);
            }
        }
        pend_clear(&se);
        pend_clear(&ce);
    }
}

/* A failure: the error comes back, the alert goes out, and the
 * handshake is known not to have completed. */
static void
test_pump_failure(void **state)
{
    struct tls_ctx *sctx, *cctx;
    struct tls *s, *c;
    struct pend se, ce;
    uint8_t rec[64];

    (void)state;
    rng_seed(13);
    sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                      TLS_VERSION_DEFAULT);
    assert_rc(tls_new(sctx, NULL, &s), 0);
    tls_ctx_free(sctx);
    pend_init(&se, s);
    assert_rc(tls_input(s, (const uint8_t *)"EHLO x\r\n", 8),
              PST_EPROTO);
    assert_non_null(strstr(tls_error(s), "wrong version number"));
    assert_int_equal(tls_established(s), 0);
    assert_int_equal(se.established + se.recvs, 0);
    /* Sticky. */
    assert_rc(tls_input(s, (const uint8_t *)"x", 1), PST_EPROTO);
    pend_clear(&se);

    /* A client that refuses the certificate (wrong name) says so. */
    sctx = server_ctx(fx.b_crt, fx.b_key, TLS_VERSION_DEFAULT,
                      TLS_VERSION_DEFAULT);
    cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT);
    assert_rc(tls_new(sctx, NULL, &s), 0);
    assert_rc(tls_new(cctx, "mail.example.test", &c), 0);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
    pend_init(&se, s);
    pend_init(&ce, c);
    assert_rc(tls_input(c, NULL, 0), TLS_WANT_MORE);
    assert_rc(tls_input(s, ce.wire.data, ce.wire.len), TLS_WANT_MORE);
    pst_buf_reset(&ce.wire);
    assert_rc(tls_input(c, se.wire.data, se.wire.len), PST_EAUTH);
    assert_true(ce.wire.len > 0); /* the alert */
    assert_int_equal(ce.established, 0);
    pend_clear(&se);
    pend_clear(&ce);

    /* After the handshake: a record that fails its MAC. */
    sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                      TLS_VERSION_DEFAULT);
    cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT);
    assert_rc(tls_new(sctx, NULL, &s), 0);
    assert_rc(tls_new(cctx, "mail.example.test", &c), 0);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
    pend_init(&se, s);
    pend_init(&ce, c);
    assert_rc(tls_input(c, NULL, 0), TLS_WANT_MORE);
    while (ce.wire.len > 0 || se.wire.len > 0) {
        pump_deliver(&ce, &se);
        pump_deliver(&se, &ce);
    }
    assert_int_equal(se.established, 1);
    memset(rec, 0x41, sizeof(rec));
    rec[0] = 0x17;
    rec[1] = 0x03;
    rec[2] = 0x03;
    rec[3] = 0x00;
    rec[4] = (uint8_t)(sizeof(rec) - 5);
    assert_rc(tls_input(s, rec, sizeof(rec)), PST_EPROTO);
    assert_int_equal(tls_established(s), 1);
    assert_true(se.wire.len > 0); /* the alert */
    assert_int_equal(se.recvs, 0);
    pend_clear(&se);
    pend_clear(&ce);
}

/* Reload: a new context for new connections, the old one lives on. */
static void
test_reload(void **state)
{
    struct tls_config a = {
        .role = TLS_ROLE_SERVER,
        .cert_file = fx.a_crt,
        .key_file = fx.a_key,
    };
    struct tls_config b = a, bad = a;
    struct tls_ctx *cur = NULL, *before;
    struct tls_ctx *cctx;
    struct tls *old_s, *old_c, *new_s, *new_c;
    struct tls_peer_cert pc;
    char err[TLS_ERROR_MAX];
    int crc, src;

    (void)state;
    rng_seed(8);
    b.cert_file = fx.b_crt;
    b.key_file = fx.b_key;
    bad.cert_file = "/nonexistent/c.pem";
    assert_rc(tls_ctx_new(&a, &cur, err, sizeof(err)), 0);
    cctx = client_ctx(NULL, 1, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT);

    /* A connection starts on A, but its handshake comes after reloads. */
    assert_rc(tls_new(cur, NULL, &old_s), 0);
    assert_rc(tls_new(cctx, "mail.example.test", &old_c), 0);

    /* A failed reload keeps what runs. */
    before = cur;
    assert_rc(tls_ctx_reload(&cur, &bad, err, sizeof(err)), PST_EIO);
    assert_ptr_equal(cur, before);
    assert_non_null(strstr(err, "cannot load tls_cert"));

    /* A good one replaces it (and frees A's context object). */
    assert_rc(tls_ctx_reload(&cur, &b, err, sizeof(err)), 0);
    assert_true(cur != NULL);
    assert_rc(tls_new(cur, NULL, &new_s), 0);
    assert_rc(tls_new(cctx, "other.example.test", &new_c), 0);
    tls_ctx_free(cur);
    tls_ctx_free(cctx);

    handshake(old_c, old_s, &crc, &src);
    assert_rc(crc, TLS_OK);
    assert_rc(src, TLS_OK);
    assert_rc(tls_peer_cert(old_c, &pc), 0);
    assert_string_equal(pc.subject, "CN=mail.example.test");

    handshake(new_c, new_s, &crc, &src);
    assert_rc(crc, TLS_OK);
    assert_rc(src, TLS_OK);
    assert_rc(tls_peer_cert(new_c, &pc), 0);
    assert_string_equal(pc.subject, "CN=other.example.test");

    tls_free(old_c);
    tls_free(old_s);
    tls_free(new_c);
    tls_free(new_s);
}

/* Caller mistakes the API refuses. */
static void
test_misuse(void **state)
{
    struct tls_ctx *cctx, *sctx;
    struct tls *t = (struct tls *)&t;

    (void)state;
    cctx = client_ctx(fx.a_crt, 0, TLS_VERSION_DEFAULT, TLS_VERSION_DEFAULT);
    sctx = server_ctx(fx.a_crt, fx.a_key, TLS_VERSION_DEFAULT,
                      TLS_VERSION_DEFAULT);
    assert_rc(tls_new(cctx, NULL, &t), PST_EINVAL);
    assert_null(t);
    assert_rc(tls_new(cctx, "", &t), PST_EINVAL);
    assert_null(t);

    assert_rc(tls_new(sctx, NULL, &t), 0);
    /* Nothing to shut down before the handshake; empty writes are no-ops. */
    assert_rc(tls_shutdown(t), PST_ESTATE);
    assert_rc(tls_write(t, NULL, 0), TLS_OK);
    assert_rc(tls_feed(t, NULL, 0), 0);
    assert_rc(tls_handshake(t), TLS_WANT_MORE);
    tls_free(t);
    tls_free(NULL);
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_parse),
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_driven_by_read_write),
        cmocka_unit_test(test_bulk_transfer),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_channel_binding),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_garbage_after_handshake),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_pump),
        cmocka_unit_test(test_pump_stop),
        cmocka_unit_test(test_pump_failure),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_misuse),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
