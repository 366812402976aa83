/*
 * The DIGEST-MD5 confidentiality layer (RFC 2831 §2.4, qop=auth-conf)
 * with each cipher: the exchange's messages, the sealed buffers byte for
 * byte, round trips with cut buffers, refusals, and cipher negotiation.
 *
 * No RFC publishes an auth-conf exchange.  The vectors use RFC 2831 §4's
 * IMAP example (chris, secret, the nonces and digest-uri) with
 * qop=auth-conf and were computed outside postern: Python hashlib and
 * hmac for the digests and keys (the same script reproduces §4's qop=auth
 * response), the "cryptography" package for 3DES, DES (3DES with one
 * key) and RC4, with the DES key spreading Cyrus SASL's slidebits() does.
 * Each cipher: the client's "EHLO client.example\r\n" (SeqNum 0) and an
 * empty message (SeqNum 1, so the CBC chain or RC4 stream runs on), and
 * the server's "250 mail.example.test\r\n" (SeqNum 0).
 */
#include "testutil.h"

#include "../../lib/sasl/mech.h"

#define MSG(s) (const uint8_t *)(s), (sizeof(s) - 1)

#define RFC_NONCE  "OA6MG9tEQGm2hh"
#define RFC_CNONCE "OA6MHXh6VqTrRk"
#define CONF_RESPONSE_HEAD                                                   \
    "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","        \
    "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","        \
    "digest-uri=\"imap/elwood.innosoft.com\","                               \
    "response=c7d2efa41f50398d289b732a0c09f381,qop=auth-conf,cipher="
#define CONF_RSPAUTH "rspauth=e2b2f2d1742ec87e03e40f22efdeaac8"

static const uint8_t conf_3des_c0[] = {
    0x00, 0x00, 0x00, 0x26, 0x9c, 0x62, 0xb5, 0x28, 0x98, 0x58, 0x51,
    0x26, 0x89, 0x73, 0x96, 0x0f, 0xa7, 0x7a, 0xf1, 0xf9, 0x79, 0x7e,
    0x8d, 0x0b, 0x84, 0xa0, 0x7f, 0xaa, 0xbb, 0xcc, 0x6e, 0xcf, 0xc4,
    0x16, 0xd5, 0xec, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_3des_c1[] = {
    0x00, 0x00, 0x00, 0x16, 0x07, 0x53, 0x79, 0x7a, 0x81, 0x44, 0x2b,
    0xc8, 0x3e, 0xfb, 0x16, 0xa8, 0x18, 0x9a, 0xab, 0x77, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x01,
};
static const uint8_t conf_3des_s0[] = {
    0x00, 0x00, 0x00, 0x2e, 0x43, 0x95, 0x64, 0x8b, 0xa7, 0xfb, 0x79,
    0x52, 0x2c, 0x30, 0xc7, 0x4e, 0x33, 0xf1, 0x90, 0x3c, 0x02, 0x47,
    0xc3, 0x59, 0xd4, 0xa9, 0x35, 0x27, 0xff, 0x9e, 0x6a, 0x61, 0x4b,
    0xe2, 0xa5, 0x42, 0x46, 0xb0, 0x58, 0x2e, 0xd6, 0x49, 0xcf, 0x60,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_des_c0[] = {
    0x00, 0x00, 0x00, 0x26, 0xc7, 0xd5, 0x8c, 0x1f, 0x44, 0x3d, 0x3e,
    0xd9, 0xbf, 0x3e, 0xa5, 0xf5, 0x8e, 0x73, 0xb5, 0xfe, 0xe1, 0x74,
    0x7a, 0xe3, 0x42, 0x48, 0x51, 0x5a, 0x2f, 0xe2, 0x18, 0x79, 0xc2,
    0x39, 0x08, 0x68, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_des_c1[] = {
    0x00, 0x00, 0x00, 0x16, 0x86, 0x49, 0x3e, 0x25, 0x2d, 0x5b, 0x96,
    0x32, 0x4d, 0x5a, 0x8c, 0xa1, 0x8c, 0xbd, 0x1d, 0xa1, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x01,
};
static const uint8_t conf_des_s0[] = {
    0x00, 0x00, 0x00, 0x2e, 0xd1, 0xab, 0x2e, 0xb6, 0x17, 0xfb, 0x94,
    0xaf, 0x41, 0x2f, 0xe0, 0x17, 0x80, 0x13, 0xa0, 0xde, 0xdf, 0xcf,
    0x08, 0x84, 0xfd, 0x62, 0x7a, 0x05, 0x64, 0x49, 0xb0, 0xe8, 0x9a,
    0xaa, 0xf0, 0x3e, 0x2f, 0x2f, 0xae, 0x5e, 0x43, 0xfe, 0x5c, 0xc9,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_rc4_c0[] = {
    0x00, 0x00, 0x00, 0x25, 0x12, 0x38, 0xd0, 0x6b, 0x15, 0xbe, 0x0f,
    0x06, 0x12, 0x8d, 0x3b, 0xb2, 0x42, 0xfe, 0xd5, 0xca, 0xe3, 0xc2,
    0x00, 0x04, 0x68, 0xea, 0x6e, 0xa6, 0x2f, 0xd7, 0x4b, 0x02, 0xc1,
    0x5c, 0x21, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_rc4_c1[] = {
    0x00, 0x00, 0x00, 0x10, 0x38, 0xca, 0xc5, 0x2d, 0x13, 0x30, 0xba,
    0xe0, 0x25, 0x77, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
};
static const uint8_t conf_rc4_s0[] = {
    0x00, 0x00, 0x00, 0x27, 0x13, 0x09, 0x74, 0x2d, 0xaf, 0xf0, 0x79,
    0x13, 0x6d, 0xc8, 0xdf, 0x9a, 0xf3, 0x22, 0xad, 0xdb, 0x18, 0x56,
    0x76, 0x7e, 0x79, 0xaa, 0xca, 0xf8, 0x58, 0x83, 0x0a, 0x78, 0xd5,
    0x61, 0x82, 0xe4, 0x62, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_rc4_40_c0[] = {
    0x00, 0x00, 0x00, 0x25, 0xe2, 0x86, 0x93, 0xbf, 0x89, 0xde, 0x3d,
    0x98, 0x4e, 0xe0, 0x91, 0xa6, 0xdf, 0xfa, 0x28, 0x70, 0x51, 0x05,
    0x22, 0xe8, 0x4e, 0x06, 0x0e, 0xa3, 0x2b, 0xc5, 0x95, 0x6b, 0x23,
    0x37, 0x34, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_rc4_40_c1[] = {
    0x00, 0x00, 0x00, 0x10, 0xe3, 0xdf, 0x12, 0xe0, 0xbe, 0xe2, 0x69,
    0x20, 0x5e, 0x73, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
};
static const uint8_t conf_rc4_40_s0[] = {
    0x00, 0x00, 0x00, 0x27, 0x36, 0xda, 0x23, 0x07, 0x0a, 0x03, 0xf0,
    0x99, 0x7a, 0x64, 0x4d, 0xec, 0xd7, 0x56, 0x12, 0xdb, 0xeb, 0x47,
    0x6d, 0xf5, 0x0d, 0x56, 0x0e, 0x05, 0x42, 0xdb, 0x4e, 0x19, 0x33,
    0x6e, 0xab, 0x64, 0xfb, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_rc4_56_c0[] = {
    0x00, 0x00, 0x00, 0x25, 0x2d, 0xf8, 0x31, 0xd6, 0x1f, 0x5c, 0x38,
    0xa4, 0x43, 0x3a, 0xc2, 0xf4, 0xe3, 0x4f, 0xa9, 0x63, 0xf2, 0x49,
    0x18, 0xc2, 0x35, 0x50, 0xde, 0x91, 0x08, 0x99, 0x3d, 0xad, 0x19,
    0xd9, 0x95, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t conf_rc4_56_c1[] = {
    0x00, 0x00, 0x00, 0x10, 0x99, 0x57, 0x32, 0x37, 0xda, 0xde, 0xc7,
    0x67, 0x70, 0x91, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
};
static const uint8_t conf_rc4_56_s0[] = {
    0x00, 0x00, 0x00, 0x27, 0x47, 0x4d, 0x5f, 0x1b, 0x29, 0xb5, 0xf2,
    0xdb, 0x27, 0x3a, 0x08, 0xea, 0x18, 0xa4, 0x31, 0x2f, 0xc1, 0x3f,
    0xa5, 0x97, 0xb1, 0x39, 0xdd, 0x32, 0x47, 0xd0, 0x6f, 0x78, 0x9b,
    0x9c, 0xfa, 0x7f, 0x9c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
};

static const struct vector {
    const char *name;
    unsigned cipher;
    const uint8_t *c0, *c1, *s0;
    size_t c0_len, c1_len, s0_len;
} vectors[] = {
#define V(n, bit, id)                                                        \
    {n, bit, conf_##id##_c0, conf_##id##_c1, conf_##id##_s0,                 \
     sizeof(conf_##id##_c0), sizeof(conf_##id##_c1),                         \
     sizeof(conf_##id##_s0)}
    V("3des", PST_SASL_CIPHER_3DES, 3des),
    V("des", PST_SASL_CIPHER_DES, des),
    V("rc4", PST_SASL_CIPHER_RC4, rc4),
    V("rc4-40", PST_SASL_CIPHER_RC4_40, rc4_40),
    V("rc4-56", PST_SASL_CIPHER_RC4_56, rc4_56),
#undef V
};

static const struct pst_sasl_mech *
dm(void)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find("DIGEST-MD5", 10);

    assert_non_null(m);
    return m;
}

/* The ciphers this OpenSSL runs (the legacy provider may be absent). */
static int
have(unsigned cipher)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "x",
        .host = "h",
        .digest_qops = PST_SASL_QOP_AUTH_CONF,
        .digest_ciphers = cipher,
    };
    struct pst_sasl_client *c;
    int rc = pst_sasl_client_new(dm(), &cfg, &c);

    pst_sasl_client_free(c);
    return rc == 0;
}

static struct pst_sasl_server_config
server_cfg(unsigned qops, unsigned ciphers, unsigned maxbuf)
{
    return (struct pst_sasl_server_config){
        .hostname = "elwood.innosoft.com",
        .service = "imap",
        .digest_qops = qops,
        .digest_ciphers = ciphers,
        .digest_maxbuf = maxbuf,
    };
}

static struct pst_sasl_client_config
client_cfg(unsigned qops, unsigned ciphers, unsigned maxbuf)
{
    return (struct pst_sasl_client_config){
        .authcid = "chris",
        .password = (const uint8_t *)"secret",
        .password_len = 6,
        .service = "imap",
        .host = "elwood.innosoft.com",
        .digest_qops = qops,
        .digest_ciphers = ciphers,
        .digest_maxbuf = maxbuf,
    };
}

/* Both halves of each vector byte for byte. */
static void
test_vectors(void **state)
{
    struct pst_buf out, data, want;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&data, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&want, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(vectors); i++) {
        const struct vector *v = &vectors[i];
        struct pst_sasl_server_config scfg =
            server_cfg(PST_SASL_QOP_AUTH_CONF, v->cipher, 0);
        struct pst_sasl_client_config ccfg =
            client_cfg(PST_SASL_QOP_AUTH_CONF, 0, 0);
        struct pst_sasl_server *s;
        struct pst_sasl_client *c;
        struct pst_sasl_layer *sl, *cl;
        struct pst_cred *cred = NULL;
        size_t used;

        if (!have(v->cipher)) {
            fprintf(stderr, "# %s: not in this OpenSSL\n", v->name);
            continue;
        }
        pst_buf_reset(&want);
        assert_rc(pst_buf_printf(&want,
                                 "realm=\"elwood.innosoft.com\","
                                 "nonce=\"OA6MG9tEQGm2hh\","
                                 "qop=\"auth-conf\",cipher=\"%s\","
                                 "charset=utf-8,algorithm=md5-sess",
                                 v->name),
                  0);
        assert_rc(pst_cred_parse("{PLAIN}secret", 13, &cred), 0);
        /* Server: offers only this cipher. */
        assert_rc(pst_sasl_server_new(dm(), &scfg, &s), 0);
        assert_rc(pst__digest_md5_server_set_nonce(s, RFC_NONCE), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_bytes_equal(out.data, out.len, want.data, want.len);
        /* Client: takes it. */
        assert_rc(pst_sasl_client_new(dm(), &ccfg, &c), 0);
        assert_rc(pst__digest_md5_client_set_cnonce(c, RFC_CNONCE), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &data), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_client_step(c, out.data, out.len, &data),
                  PST_SASL_CONTINUE);
        pst_buf_reset(&want);
        assert_rc(pst_buf_printf(&want, CONF_RESPONSE_HEAD "%s", v->name),
                  0);
        assert_bytes_equal(data.data, data.len, want.data, want.len);
        assert_rc(pst_sasl_server_step(s, data.data, data.len, &out),
                  PST_SASL_NEED_CRED);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, CONF_RSPAUTH);
        assert_rc(pst_sasl_client_step(c, out.data, out.len, &data),
                  PST_SASL_DONE);
        assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_SASL_DONE);
        assert_rc(pst_sasl_server_layer(s, &sl), 0);
        assert_rc(pst_sasl_client_layer(c, &cl), 0);
        pst_sasl_server_free(s);
        pst_sasl_client_free(c);
        pst_cred_free(cred);
        assert_int_equal(pst_sasl_layer_qop(sl), PST_SASL_QOP_AUTH_CONF);
        assert_int_equal(pst_sasl_layer_cipher(cl), v->cipher);

        /* Client -> server. */
        pst_buf_reset(&out);
        assert_rc(pst_sasl_layer_wrap(cl, MSG("EHLO client.example\r\n"),
                                      &out),
                  0);
        assert_bytes_equal(out.data, out.len, v->c0, v->c0_len);
        pst_buf_reset(&out);
        assert_rc(pst_sasl_layer_wrap(cl, NULL, 0, &out), 0);
        assert_bytes_equal(out.data, out.len, v->c1, v->c1_len);
        pst_buf_reset(&data);
        assert_rc(pst_sasl_layer_unwrap(sl, v->c0, v->c0_len, &used, &data),
                  1);
        assert_int_equal(used, v->c0_len);
        assert_buf_str(&data, "EHLO client.example\r\n");
        pst_buf_reset(&data);
        assert_rc(pst_sasl_layer_unwrap(sl, v->c1, v->c1_len, &used, &data),
                  1);
        assert_int_equal(data.len, 0);
        /* Server -> client. */
        pst_buf_reset(&out);
        assert_rc(pst_sasl_layer_wrap(sl, MSG("250 mail.example.test\r\n"),
                                      &out),
                  0);
        assert_bytes_equal(out.data, out.len, v->s0, v->s0_len);
        assert_rc(pst_sasl_layer_unwrap(cl, v->s0, v->s0_len, &used, &data),
                  1);
        assert_buf_str(&data, "250 mail.example.test\r\n");
        pst_sasl_layer_free(sl);
        pst_sasl_layer_free(cl);
    }
    pst_buf_clear(&out);
    pst_buf_clear(&data);
    pst_buf_clear(&want);
}

/*
 * Our client against our server with each cipher; exchange() leaves the
 * layers in *cl and *sl (NULL: none) and returns the first error.
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
    if ((rc = pst_sasl_client_step(c, sb.data, sb.len, &cb)) < 0)
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
    assert_rc(pst_sasl_server_layer(s, sl), 0);
    assert_rc(pst_sasl_client_layer(c, cl), 0);
out:
    pst_sasl_client_free(c);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&cb);
    pst_buf_clear(&sb);
    return rc;
}

/* Round trips: many sizes (every pad length), buffers cut to a small
 * maxbuf, fed a byte at a time. */
static void
test_roundtrip(void **state)
{
    uint8_t data[300];
    struct pst_buf wire, got;

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13 + 1);
    pst_buf_init(&wire, 1 << 20, 0);
    pst_buf_init(&got, 1 << 20, 0);
    for (size_t k = 0; k < PST__ARRAY_LEN(vectors); k++) {
        unsigned cipher = vectors[k].cipher;
        struct pst_sasl_server_config scfg =
            server_cfg(PST_SASL_QOP_AUTH_CONF, cipher, 64);
        struct pst_sasl_client_config ccfg =
            client_cfg(PST_SASL_QOP_AUTH_CONF, cipher, 0);
        struct pst_sasl_layer *cl, *sl;

        if (!have(cipher))
            continue;
        assert_rc(exchange(&ccfg, &scfg, &cl, &sl), PST_SASL_DONE);
        /* The server takes 64: 64 - 6 = 58, 56 in whole blocks, less 10
         * MAC octets and 1 of pad for DES; 48 for RC4. */
        assert_int_equal(pst_sasl_layer_max_wrap(cl),
                         cipher & (PST_SASL_CIPHER_3DES |
                                   PST_SASL_CIPHER_DES)
                             ? 45u
                             : 48u);
        for (size_t n = 0; n <= 20; n++) {
            size_t off = 0, used;

            pst_buf_reset(&wire);
            pst_buf_reset(&got);
            assert_rc(pst_sasl_layer_wrap(cl, data, n * 7, &wire), 0);
            /* a byte at a time for the first buffer */
            for (size_t b = 0; b < 4 && b < wire.len; b++)
                assert_rc(pst_sasl_layer_unwrap(sl, wire.data, b, &used,
                                                &got),
                          0);
            while (off < wire.len) {
                size_t blen = (size_t)wire.data[off + 2] << 8 |
                              wire.data[off + 3];

                assert_true(blen <= 64);
                assert_rc(pst_sasl_layer_unwrap(sl, wire.data + off,
                                                wire.len - off, &used,
                                                &got),
                          1);
                off += used;
            }
            assert_bytes_equal(got.data, got.len, data, n * 7);
            /* And back. */
            pst_buf_reset(&wire);
            pst_buf_reset(&got);
            assert_rc(pst_sasl_layer_wrap(sl, data, n * 11, &wire), 0);
            off = 0;
            while (off < wire.len) {
                assert_rc(pst_sasl_layer_unwrap(cl, wire.data + off,
                                                wire.len - off, &used,
                                                &got),
                          1);
                off += used;
            }
            assert_bytes_equal(got.data, got.len, data, n * 11);
        }
        pst_sasl_layer_free(cl);
        pst_sasl_layer_free(sl);
    }
    pst_buf_clear(&wire);
    pst_buf_clear(&got);
}

/* A changed octet anywhere, a replay, a bad length: refused, the layer
 * over. */
static void
test_refusals(void **state)
{
    (void)state;
    for (size_t k = 0; k < PST__ARRAY_LEN(vectors); k++) {
        const struct vector *v = &vectors[k];
        int block = v->cipher & (PST_SASL_CIPHER_3DES | PST_SASL_CIPHER_DES);

        if (!have(v->cipher))
            continue;
        for (size_t at = 4; at < v->c0_len + 2; at++) {
            struct pst_sasl_server_config scfg =
                server_cfg(PST_SASL_QOP_AUTH_CONF, v->cipher, 0);
            struct pst_sasl_client_config ccfg =
                client_cfg(PST_SASL_QOP_AUTH_CONF, 0, 0);
            struct pst_sasl_layer *cl, *sl;
            struct pst_buf wire, got;
            size_t used;
            int rc, want;

            pst_buf_init(&wire, 4096, 0);
            pst_buf_init(&got, 4096, 0);
            assert_rc(exchange(&ccfg, &scfg, &cl, &sl), PST_SASL_DONE);
            assert_rc(pst_sasl_layer_wrap(cl, MSG("EHLO client.example\r\n"),
                                          &wire),
                      0);
            if (at < wire.len) {
                /* One bit of the buffer. */
                wire.data[at] ^= 0x04;
                want = at >= wire.len - 6 && at < wire.len - 4
                           ? PST_EPROTO /* message type */
                           : PST_EFORGED;
            } else if (at == wire.len) {
                /* A replay of a good buffer. */
                assert_rc(pst_sasl_layer_unwrap(sl, wire.data, wire.len,
                                                &used, &got),
                          1);
                want = PST_EFORGED;
            } else {
                /* A ciphered part of a length no block cipher makes. */
                if (!block) {
                    pst_sasl_layer_free(cl);
                    pst_sasl_layer_free(sl);
                    pst_buf_clear(&wire);
                    pst_buf_clear(&got);
                    continue;
                }
                wire.data[3] -= 1;
                memmove(wire.data + wire.len - 7, wire.data + wire.len - 6,
                        6);
                wire.len--;
                want = PST_EPROTO;
            }
            pst_buf_reset(&got);
            rc = pst_sasl_layer_unwrap(sl, wire.data, wire.len, &used, &got);
            if (rc != want) {
                fprintf(stderr, "%s, octet %zu: got %s, want %s\n", v->name,
                        at, pst_errname(rc), pst_errname(want));
                fail();
            }
            assert_int_equal(got.len, 0);
            assert_rc(pst_sasl_layer_unwrap(sl, wire.data, wire.len, &used,
                                            &got),
                      PST_ESTATE);
            pst_sasl_layer_free(cl);
            pst_sasl_layer_free(sl);
            pst_buf_clear(&wire);
            pst_buf_clear(&got);
        }
    }
}

/* Which qop and cipher each side's settings give. */
static void
test_negotiation(void **state)
{
    enum {
        I = PST_SASL_QOP_AUTH_INT,
        C = PST_SASL_QOP_AUTH_CONF,
        D3 = PST_SASL_CIPHER_3DES,
        R = PST_SASL_CIPHER_RC4,
        D = PST_SASL_CIPHER_DES,
    };
    static const struct {
        unsigned sq, sc, cq, cc;
        int want;
        unsigned qop, cipher;
    } v[] = {
        {I | C, 0, I | C, 0, PST_SASL_DONE, C, D3},
        {I | C, 0, I, 0, PST_SASL_DONE, I, 0},
        {I, 0, I | C, 0, PST_SASL_DONE, I, 0},
        {C, R | D, C, 0, PST_SASL_DONE, C, R},
        {C, 0, C, D, PST_SASL_DONE, C, D},
        {C, D3, C, R, PST_ENOTSUP, 0, 0},
        {C | I, D3, C, R, PST_ENOTSUP, 0, 0},
        {C | I, D3, C | I, R, PST_SASL_DONE, I, 0},
    };

    (void)state;
    if (!have(PST_SASL_CIPHER_RC4) || !have(PST_SASL_CIPHER_DES)) {
        fprintf(stderr, "# no legacy provider: skipped\n");
        return;
    }
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config scfg = server_cfg(v[i].sq, v[i].sc, 0);
        struct pst_sasl_client_config ccfg = client_cfg(v[i].cq, v[i].cc, 0);
        struct pst_sasl_layer *cl, *sl;
        int rc = exchange(&ccfg, &scfg, &cl, &sl);

        if (rc != v[i].want) {
            fprintf(stderr, "row %zu: got %s, want %s\n", i,
                    pst_errname(rc), pst_errname(v[i].want));
            fail();
        }
        if (rc == PST_SASL_DONE) {
            assert_int_equal(pst_sasl_layer_qop(cl), v[i].qop);
            assert_int_equal(pst_sasl_layer_qop(sl), v[i].qop);
            assert_int_equal(pst_sasl_layer_cipher(cl), v[i].cipher);
            assert_int_equal(pst_sasl_layer_cipher(sl), v[i].cipher);
        }
        pst_sasl_layer_free(cl);
        pst_sasl_layer_free(sl);
    }
}

/* Configuration errors and the response checks on the server. */
static void
test_errors(void **state)
{
    struct pst_sasl_server_config scfg =
        server_cfg(PST_SASL_QOP_AUTH_CONF, 0x20, 0);
    struct pst_sasl_client_config ccfg =
        client_cfg(PST_SASL_QOP_AUTH_CONF, 0x40, 0);
    struct pst_sasl_server *s = (struct pst_sasl_server *)&s;
    struct pst_sasl_client *c = (struct pst_sasl_client *)&c;
    struct pst_buf out;

    (void)state;
    assert_rc(pst_sasl_server_new(dm(), &scfg, &s), PST_EINVAL);
    assert_rc(pst_sasl_client_new(dm(), &ccfg, &c), PST_EINVAL);
    /* A response choosing a cipher not offered, or none. */
    pst_buf_init(&out, 1024, 0);
    scfg = server_cfg(PST_SASL_QOP_AUTH_CONF, PST_SASL_CIPHER_3DES, 0);
    for (int i = 0; i < 2; i++) {
        static const char *const resp[] = {
            CONF_RESPONSE_HEAD "rc4",
            "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","
            "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
            "digest-uri=\"imap/elwood.innosoft.com\","
            "response=c7d2efa41f50398d289b732a0c09f381,qop=auth-conf",
        };
        static const char *const why[] = {
            "DIGEST-MD5: cipher not offered",
            "DIGEST-MD5: auth-conf without cipher",
        };

        assert_rc(pst_sasl_server_new(dm(), &scfg, &s), 0);
        assert_rc(pst__digest_md5_server_set_nonce(s, RFC_NONCE), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, (const uint8_t *)resp[i],
                                       strlen(resp[i]), &out),
                  PST_EPROTO);
        assert_string_equal(pst_sasl_server_reason(s), why[i]);
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("digest_conf", tests, NULL, NULL);
}
