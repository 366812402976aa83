/*
 * The DIGEST-MD5 security layer (RFC 2831 §2.3, qop=auth-int): qop
 * negotiation, the exchange's messages with auth-int, the keys and the
 * protected buffers byte for byte, wrap/unwrap round trips, maxbuf, and
 * the refusal of corrupted, replayed and reordered buffers.
 *
 * The vectors use RFC 2831 §4's IMAP example (chris, secret, the nonces
 * and digest-uri) with qop=auth-int; no RFC publishes an auth-int
 * exchange, so the response, rspauth and the protected buffers were
 * computed outside postern (Python hashlib and hmac, the formulas of RFC
 * 2831 §2.1.2.1 and §2.3); the same script reproduces §4's qop=auth
 * response d388dad90d4bbd760a152321f2143af7.
 */
#include "testutil.h"

#include "../../lib/sasl/mech.h"

#define MSG(s) (const uint8_t *)(s), (sizeof(s) - 1)

#define RFC_NONCE  "OA6MG9tEQGm2hh"
#define RFC_CNONCE "OA6MHXh6VqTrRk"
#define INT_CHALLENGE                                                        \
    "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","                \
    "qop=\"auth,auth-int\",charset=utf-8,algorithm=md5-sess"
#define INT_RESPONSE                                                         \
    "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","        \
    "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","        \
    "digest-uri=\"imap/elwood.innosoft.com\","                               \
    "response=89fdc8198a2499ec4b6d0045c00ae24a,qop=auth-int"
#define INT_RSPAUTH "rspauth=2342e4b9b84956beda20b94d83cc8fe0"

/* Kic-protected "EHLO client.example\r\n" (seq 0), an empty message
 * (seq 1); Kis-protected "250 mail.example.test\r\n" (seq 0). */
static const uint8_t vec_c0[] = {
    0x00, 0x00, 0x00, 0x25, 0x45, 0x48, 0x4c, 0x4f, 0x20, 0x63, 0x6c,
    0x69, 0x65, 0x6e, 0x74, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c,
    0x65, 0x0d, 0x0a, 0xcf, 0x6f, 0x27, 0x0a, 0x9b, 0x9b, 0xf6, 0xc8,
    0x82, 0xb3, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t vec_c1[] = {
    0x00, 0x00, 0x00, 0x10, 0xc2, 0x3b, 0x4c, 0xac, 0x31, 0x5f, 0x29,
    0x36, 0xeb, 0x59, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
};
static const uint8_t vec_s0[] = {
    0x00, 0x00, 0x00, 0x27, 0x32, 0x35, 0x30, 0x20, 0x6d, 0x61, 0x69,
    0x6c, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x74,
    0x65, 0x73, 0x74, 0x0d, 0x0a, 0xeb, 0x10, 0xdb, 0xa7, 0x46, 0xd5,
    0x08, 0x7a, 0x57, 0x5e, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};

static const struct pst_sasl_mech *
dm(void)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find("DIGEST-MD5", 10);

    assert_non_null(m);
    return m;
}

static struct pst_sasl_server_config
rfc_server_cfg(unsigned qops, unsigned maxbuf)
{
    return (struct pst_sasl_server_config){
        .hostname = "elwood.innosoft.com",
        .service = "imap",
        .digest_qops = qops,
        .digest_maxbuf = maxbuf,
    };
}

static struct pst_sasl_client_config
rfc_client_cfg(unsigned qops, unsigned maxbuf)
{
    return (struct pst_sasl_client_config){
        .authcid = "chris",
        .password = (const uint8_t *)"secret",
        .password_len = 6,
        .service = "imap",
        .host = "elwood.innosoft.com",
        .digest_qops = qops,
        .digest_maxbuf = maxbuf,
    };
}

/*
 * Our client and our server through a whole exchange; each side's
 * layer (NULL: none) goes to *cl and *sl.  Returns the server's last rc,
 * or the client's error.
 */
static int
exchange(const struct pst_sasl_client_config *ccfg,
         const struct pst_sasl_server_config *scfg,
         struct pst_sasl_layer **cl, struct pst_sasl_layer **sl)
{
    struct pst_sasl_client *c;
    struct pst_sasl_server *s;
    struct pst_cred *cred = NULL;
    struct pst_buf cb, sb;
    int rc;

    *cl = *sl = NULL;
    pst_buf_init(&cb, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&sb, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_cred_parse("{PLAIN}secret", 13, &cred), 0);
    assert_rc(pst_sasl_client_new(dm(), ccfg, &c), 0);
    assert_rc(pst_sasl_server_new(dm(), scfg, &s), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &cb), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &sb), PST_SASL_CONTINUE);
    rc = pst_sasl_client_step(c, sb.data, sb.len, &cb);
    if (rc < 0)
        goto out;
    rc = pst_sasl_server_step(s, cb.data, cb.len, &sb);
    if (rc == PST_SASL_NEED_CRED) {
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        rc = pst_sasl_server_step(s, NULL, 0, &sb);
    }
    if (rc != PST_SASL_CONTINUE)
        goto out;
    assert_rc(pst_sasl_client_step(c, sb.data, sb.len, &cb), PST_SASL_DONE);
    rc = pst_sasl_server_step(s, MSG(""), &sb);
    assert_rc(rc, PST_SASL_DONE);
    assert_rc(pst_sasl_server_layer(s, sl), 0);
    assert_rc(pst_sasl_client_layer(c, cl), 0);
    /* Once only: the keys have left the exchange. */
    {
        struct pst_sasl_layer *again = (struct pst_sasl_layer *)&again;

        assert_rc(pst_sasl_server_layer(s, &again), PST_ESTATE);
        assert_null(again);
        assert_rc(pst_sasl_client_layer(c, &again), PST_ESTATE);
    }
out:
    pst_sasl_client_free(c);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&cb);
    pst_buf_clear(&sb);
    return rc;
}

/* The exchange with qop=auth-int byte for byte, then the first buffers
 * of each side byte for byte. */
static void
test_rfc_vectors(void **state)
{
    struct pst_sasl_server_config scfg =
        rfc_server_cfg(PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT, 0);
    struct pst_sasl_client_config ccfg =
        rfc_client_cfg(PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT, 0);
    struct pst_sasl_server *s;
    struct pst_sasl_client *c;
    struct pst_sasl_layer *sl, *cl;
    struct pst_cred *cred = NULL;
    struct pst_buf out, data;
    size_t used;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&data, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_cred_parse("{PLAIN}secret", 13, &cred), 0);
    /* Server. */
    assert_rc(pst_sasl_server_new(dm(), &scfg, &s), 0);
    assert_rc(pst__digest_md5_server_set_nonce(s, RFC_NONCE), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, INT_CHALLENGE);
    assert_rc(pst_sasl_server_step(s, MSG(INT_RESPONSE), &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, INT_RSPAUTH);
    assert_rc(pst_sasl_server_layer(s, &sl), PST_ESTATE);
    assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_SASL_DONE);
    assert_rc(pst_sasl_server_layer(s, &sl), 0);
    pst_sasl_server_free(s);
    assert_non_null(sl);
    assert_int_equal(pst_sasl_layer_qop(sl), PST_SASL_QOP_AUTH_INT);
    /* Client. */
    assert_rc(pst_sasl_client_new(dm(), &ccfg, &c), 0);
    assert_rc(pst__digest_md5_client_set_cnonce(c, RFC_CNONCE), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, MSG(INT_CHALLENGE), &out),
              PST_SASL_CONTINUE);
    assert_buf_str(&out, INT_RESPONSE);
    assert_rc(pst_sasl_client_layer(c, &cl), PST_ESTATE);
    assert_rc(pst_sasl_client_step(c, MSG(INT_RSPAUTH), &out),
              PST_SASL_DONE);
    assert_rc(pst_sasl_client_layer(c, &cl), 0);
    pst_sasl_client_free(c);
    assert_non_null(cl);

    /* Client -> server: Kic, sequence numbers 0 and 1. */
    pst_buf_reset(&out);
    assert_rc(pst_sasl_layer_wrap(cl, MSG("EHLO client.example\r\n"), &out),
              0);
    assert_bytes_equal(out.data, out.len, vec_c0, sizeof(vec_c0));
    pst_buf_reset(&out);
    assert_rc(pst_sasl_layer_wrap(cl, NULL, 0, &out), 0);
    assert_bytes_equal(out.data, out.len, vec_c1, sizeof(vec_c1));
    assert_rc(pst_sasl_layer_unwrap(sl, vec_c0, sizeof(vec_c0), &used,
                                    &data),
              1);
    assert_int_equal(used, sizeof(vec_c0));
    assert_buf_str(&data, "EHLO client.example\r\n");
    pst_buf_reset(&data);
    assert_rc(pst_sasl_layer_unwrap(sl, vec_c1, sizeof(vec_c1), &used,
                                    &data),
              1);
    assert_int_equal(data.len, 0);
    /* Server -> client: Kis, its own sequence from 0. */
    pst_buf_reset(&out);
    assert_rc(pst_sasl_layer_wrap(sl, MSG("250 mail.example.test\r\n"),
                                  &out),
              0);
    assert_bytes_equal(out.data, out.len, vec_s0, sizeof(vec_s0));
    assert_rc(pst_sasl_layer_unwrap(cl, vec_s0, sizeof(vec_s0), &used,
                                    &data),
              1);
    assert_buf_str(&data, "250 mail.example.test\r\n");
    pst_sasl_layer_free(sl);
    pst_sasl_layer_free(cl);
    pst_cred_free(cred);
    pst_buf_clear(&out);
    pst_buf_clear(&data);
}

/* Which qop comes out of what each side allows. */
static void
test_negotiation(void **state)
{
    enum { A = PST_SASL_QOP_AUTH, I = PST_SASL_QOP_AUTH_INT };
    static const struct {
        unsigned server, client;
        int want;          /* exchange result */
        unsigned layer;    /* 0: none */
    } v[] = {
        {0, 0, PST_SASL_DONE, 0},
        {A, A, PST_SASL_DONE, 0},
        {A | I, 0, PST_SASL_DONE, 0},
        {A, A | I, PST_SASL_DONE, 0},
        {A | I, A | I, PST_SASL_DONE, I},
        {I, A | I, PST_SASL_DONE, I},
        {I, I, PST_SASL_DONE, I},
        {A | I, I, PST_SASL_DONE, I},
        /* Nothing in common. */
        {I, A, PST_ENOTSUP, 0},
        {A, I, PST_ENOTSUP, 0},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config scfg = rfc_server_cfg(v[i].server, 0);
        struct pst_sasl_client_config ccfg = rfc_client_cfg(v[i].client, 0);
        struct pst_sasl_layer *cl, *sl;
        int rc = exchange(&ccfg, &scfg, &cl, &sl);

        if (rc != v[i].want) {
            fprintf(stderr, "row %zu: got %s, want %s\n", i,
                    pst_errname(rc), pst_errname(v[i].want));
            fail();
        }
        if (v[i].layer == 0) {
            assert_null(cl);
            assert_null(sl);
        } else {
            assert_int_equal(pst_sasl_layer_qop(cl), v[i].layer);
            assert_int_equal(pst_sasl_layer_qop(sl), v[i].layer);
        }
        pst_sasl_layer_free(cl);
        pst_sasl_layer_free(sl);
    }
}

/* Wrap on one side, unwrap on the other, in both directions, fed whole,
 * byte by byte and several buffers at once. */
static void
test_roundtrip(void **state)
{
    struct pst_sasl_server_config scfg = rfc_server_cfg(PST_SASL_QOP_AUTH_INT,
                                                        0);
    struct pst_sasl_client_config ccfg = rfc_client_cfg(PST_SASL_QOP_AUTH_INT,
                                                        0);
    struct pst_sasl_layer *cl, *sl;
    struct pst_buf wire, got;
    uint8_t big[5000];

    (void)state;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    pst_buf_init(&wire, 1 << 20, 0);
    pst_buf_init(&got, 1 << 20, 0);
    assert_rc(exchange(&ccfg, &scfg, &cl, &sl), PST_SASL_DONE);
    for (int dir = 0; dir < 2; dir++) {
        struct pst_sasl_layer *from = dir ? sl : cl, *to = dir ? cl : sl;
        size_t used, off = 0;
        int rc;

        pst_buf_reset(&wire);
        pst_buf_reset(&got);
        assert_rc(pst_sasl_layer_wrap(from, MSG("one"), &wire), 0);
        assert_rc(pst_sasl_layer_wrap(from, big, sizeof(big), &wire), 0);
        assert_rc(pst_sasl_layer_wrap(from, MSG("three"), &wire), 0);
        assert_int_equal(wire.len, 3 * 20 + 3 + sizeof(big) + 5);
        /* The first buffer a byte at a time. */
        for (size_t n = 0; n < 23; n++) {
            rc = pst_sasl_layer_unwrap(to, wire.data, n, &used, &got);
            assert_rc(rc, 0);
            assert_int_equal(used, 0);
        }
        /* Then all of them from one input. */
        while (off < wire.len) {
            rc = pst_sasl_layer_unwrap(to, wire.data + off, wire.len - off,
                                       &used, &got);
            assert_rc(rc, 1);
            off += used;
        }
        assert_int_equal(got.len, 3 + sizeof(big) + 5);
        assert_bytes_equal(got.data, 3, "one", 3);
        assert_bytes_equal(got.data + 3, sizeof(big), big, sizeof(big));
        assert_bytes_equal(got.data + 3 + sizeof(big), 5, "three", 5);
        assert_rc(pst_sasl_layer_unwrap(to, NULL, 0, &used, &got), 0);
    }
    pst_sasl_layer_free(cl);
    pst_sasl_layer_free(sl);
    pst_sasl_layer_free(NULL);
    pst_buf_clear(&wire);
    pst_buf_clear(&got);
}

/*
 * maxbuf (RFC 2831 §2.1.1, §2.1.2): each side's is what the other may
 * send it.  The client takes 100, the server 64: buffers are cut to fit,
 * and a buffer above the receiver's maxbuf is refused.
 */
static void
test_maxbuf(void **state)
{
    struct pst_sasl_server_config scfg =
        rfc_server_cfg(PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT, 64);
    struct pst_sasl_client_config ccfg =
        rfc_client_cfg(PST_SASL_QOP_AUTH_INT, 100);
    struct pst_sasl_layer *cl, *sl, *cl2, *sl2;
    struct pst_buf wire, got;
    uint8_t data[1000];
    size_t used, off = 0, n = 0;

    (void)state;
    memset(data, 'x', sizeof(data));
    pst_buf_init(&wire, 1 << 20, 0);
    pst_buf_init(&got, 1 << 20, 0);
    assert_rc(exchange(&ccfg, &scfg, &cl, &sl), PST_SASL_DONE);
    assert_int_equal(pst_sasl_layer_max_wrap(cl), 64 - 16);
    assert_int_equal(pst_sasl_layer_max_wrap(sl), 100 - 16);
    /* Server -> client: 1000 octets in buffers of at most 100. */
    assert_rc(pst_sasl_layer_wrap(sl, data, sizeof(data), &wire), 0);
    while (off < wire.len) {
        size_t len = (size_t)wire.data[off] << 24 |
                     (size_t)wire.data[off + 1] << 16 |
                     (size_t)wire.data[off + 2] << 8 | wire.data[off + 3];

        assert_true(len <= 100);
        assert_rc(pst_sasl_layer_unwrap(cl, wire.data + off, wire.len - off,
                                        &used, &got),
                  1);
        off += used;
        n++;
    }
    assert_int_equal(n, (sizeof(data) + 83) / 84);
    assert_int_equal(got.len, sizeof(data));
    /* A buffer of 100 to the server, whose maxbuf is 64: refused, and
     * the layer with it.  (The client's layer of another exchange,
     * whose server took 100, made it.) */
    scfg.digest_maxbuf = 100;
    assert_rc(exchange(&ccfg, &scfg, &cl2, &sl2), PST_SASL_DONE);
    pst_buf_reset(&wire);
    assert_rc(pst_sasl_layer_wrap(cl2, data, 84, &wire), 0);
    assert_int_equal(wire.len, 4 + 100);
    assert_rc(pst_sasl_layer_unwrap(sl, wire.data, wire.len, &used, &got),
              PST_ELIMIT);
    assert_rc(pst_sasl_layer_unwrap(sl, wire.data, wire.len, &used, &got),
              PST_ESTATE);
    /* Its own server takes it. */
    assert_rc(pst_sasl_layer_unwrap(sl2, wire.data, wire.len, &used, &got),
              1);
    pst_sasl_layer_free(cl);
    pst_sasl_layer_free(sl);
    pst_sasl_layer_free(cl2);
    pst_sasl_layer_free(sl2);
    pst_buf_clear(&wire);
    pst_buf_clear(&got);
}

/* Tampering: every refusal ends the layer. */
static void
test_refusals(void **state)
{
    static const struct {
        const char *what;
        size_t at;        /* octet to change in vec_c0 ... */
        uint8_t xor;      /* ... and how */
        int replay;       /* deliver vec_c0 twice */
        int skip;         /* deliver vec_c1 first */
        int want;
    } v[] = {
        {"MAC's first octet", 25, 0x01, 0, 0, PST_EFORGED},
        {"MAC's last octet", 34, 0x80, 0, 0, PST_EFORGED},
        {"message octet", 10, 0x20, 0, 0, PST_EFORGED},
        {"sequence number", 40, 0x01, 0, 0, PST_EFORGED},
        {"message type", 36, 0x02, 0, 0, PST_EPROTO},
        {"message type high octet", 35, 0x01, 0, 0, PST_EPROTO},
        {"replayed buffer", 0, 0, 1, 0, PST_EFORGED},
        {"reordered buffers", 0, 0, 0, 1, PST_EFORGED},
    };
    struct pst_sasl_server_config scfg =
        rfc_server_cfg(PST_SASL_QOP_AUTH_INT, 0);
    struct pst_buf got;

    (void)state;
    pst_buf_init(&got, 1 << 16, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server *s;
        struct pst_sasl_layer *sl;
        struct pst_cred *cred = NULL;
        struct pst_buf out;
        uint8_t buf[sizeof(vec_c0)];
        size_t used;
        int rc;

        /* The RFC server's layer, which vec_c0 and vec_c1 are for. */
        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        assert_rc(pst_cred_parse("{PLAIN}secret", 13, &cred), 0);
        assert_rc(pst_sasl_server_new(dm(), &scfg, &s), 0);
        assert_rc(pst__digest_md5_server_set_nonce(s, RFC_NONCE), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, MSG(INT_RESPONSE), &out),
                  PST_SASL_NEED_CRED);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_SASL_DONE);
        assert_rc(pst_sasl_server_layer(s, &sl), 0);
        pst_sasl_server_free(s);
        pst_cred_free(cred);
        pst_buf_clear(&out);

        memcpy(buf, vec_c0, sizeof(buf));
        buf[v[i].at] ^= v[i].xor;
        pst_buf_reset(&got);
        if (v[i].replay)
            assert_rc(pst_sasl_layer_unwrap(sl, buf, sizeof(buf), &used,
                                            &got),
                      1);
        rc = pst_sasl_layer_unwrap(sl, v[i].skip ? vec_c1 : buf,
                                   v[i].skip ? sizeof(vec_c1) : sizeof(buf),
                                   &used, &got);
        if (rc != v[i].want) {
            fprintf(stderr, "%s: got %s, want %s\n", v[i].what,
                    pst_errname(rc), pst_errname(v[i].want));
            fail();
        }
        assert_int_equal(used, 0);
        /* Nothing of a refused buffer comes out, and the layer is over:
         * even the right buffer is refused now. */
        assert_int_equal(got.len, v[i].replay ? 21u : 0u);
        assert_rc(pst_sasl_layer_unwrap(sl, vec_c0, sizeof(vec_c0), &used,
                                        &got),
                  PST_ESTATE);
        assert_rc(pst_sasl_layer_wrap(sl, MSG("x"), &got), PST_ESTATE);
        pst_sasl_layer_free(sl);
    }
    pst_buf_clear(&got);
}

/* A length below the 16-octet trailer, and what the configs accept. */
static void
test_errors(void **state)
{
    static const uint8_t short_buf[] = {0, 0, 0, 15, 1, 2, 3, 4, 5, 6, 7,
                                        8, 9, 10, 11, 12, 13, 14, 15};
    struct pst_sasl_server_config scfg =
        rfc_server_cfg(PST_SASL_QOP_AUTH_INT, 0);
    struct pst_sasl_client_config ccfg =
        rfc_client_cfg(PST_SASL_QOP_AUTH_INT, 0);
    struct pst_sasl_layer *cl, *sl;
    struct pst_sasl_server *s = (struct pst_sasl_server *)&s;
    struct pst_sasl_client *c = (struct pst_sasl_client *)&c;
    struct pst_buf got;
    size_t used;
    static const struct {
        unsigned qops, maxbuf;
        int want;
    } cfgs[] = {
        {0x08, 0, PST_EINVAL},
        {PST_SASL_QOP_AUTH_CONF, 0, 0},
        {PST_SASL_QOP_AUTH_INT, 16, PST_EINVAL},
        {PST_SASL_QOP_AUTH_INT, 17, 0},
        {PST_SASL_QOP_AUTH_INT, 16777215, 0},
        {PST_SASL_QOP_AUTH_INT, 16777216, PST_EINVAL},
    };

    (void)state;
    pst_buf_init(&got, 1 << 16, 0);
    assert_rc(exchange(&ccfg, &scfg, &cl, &sl), PST_SASL_DONE);
    assert_rc(pst_sasl_layer_unwrap(sl, short_buf, sizeof(short_buf), &used,
                                    &got),
              PST_EPROTO);
    pst_sasl_layer_free(cl);
    pst_sasl_layer_free(sl);
    for (size_t i = 0; i < PST__ARRAY_LEN(cfgs); i++) {
        scfg = rfc_server_cfg(cfgs[i].qops, cfgs[i].maxbuf);
        ccfg = rfc_client_cfg(cfgs[i].qops, cfgs[i].maxbuf);
        assert_rc(pst_sasl_server_new(dm(), &scfg, &s), cfgs[i].want);
        pst_sasl_server_free(s);
        assert_rc(pst_sasl_client_new(dm(), &ccfg, &c), cfgs[i].want);
        pst_sasl_client_free(c);
    }
    /* Other mechanisms have no layer; none before DONE. */
    {
        struct pst_sasl_server_config pcfg = {.hostname = "h"};
        struct pst_sasl_layer *l = (struct pst_sasl_layer *)&l;
        struct pst_cred *cred = NULL;
        struct pst_buf out;

        pst_buf_init(&out, 1024, 0);
        assert_rc(pst_cred_parse("{PLAIN}p", 8, &cred), 0);
        assert_rc(pst_sasl_server_new(pst_sasl_mech_find("PLAIN", 5), &pcfg,
                                      &s),
                  0);
        assert_rc(pst_sasl_server_layer(s, &l), PST_ESTATE);
        assert_null(l);
        assert_rc(pst_sasl_server_step(s, MSG("\0u\0p"), &out),
                  PST_SASL_NEED_CRED);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out),
                  PST_SASL_NEED_VERIFY);
        assert_rc(pst_sasl_server_verified(s, 1), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_DONE);
        assert_rc(pst_sasl_server_layer(s, &l), 0);
        assert_null(l);
        pst_sasl_server_free(s);
        pst_cred_free(cred);
        pst_buf_clear(&out);
    }
    pst_buf_clear(&got);
}

/* The challenge carries maxbuf only where it means something. */
static void
test_challenge_forms(void **state)
{
    static const struct {
        unsigned qops, maxbuf;
        const char *want;
    } v[] = {
        {0, 1024,
         "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
         "qop=\"auth\",charset=utf-8,algorithm=md5-sess"},
        {PST_SASL_QOP_AUTH_INT, 0,
         "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
         "qop=\"auth-int\",charset=utf-8,algorithm=md5-sess"},
        {PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT, 1024,
         "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
         "qop=\"auth,auth-int\",maxbuf=1024,charset=utf-8,"
         "algorithm=md5-sess"},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, 1024, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg =
            rfc_server_cfg(v[i].qops, v[i].maxbuf);
        struct pst_sasl_server *s;

        assert_rc(pst_sasl_server_new(dm(), &cfg, &s), 0);
        assert_rc(pst__digest_md5_server_set_nonce(s, RFC_NONCE), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, v[i].want);
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_vectors),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_maxbuf),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_challenge_forms),
    };
    return cmocka_run_group_tests_name("digest_layer", tests, NULL, NULL);
}
