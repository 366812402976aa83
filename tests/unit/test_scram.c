/*
 * SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677): the RFC exchanges
 * byte for byte on both halves, round trips, and every failure.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "testutil.h"

#include "../../lib/sasl/mech.h"

/* A message with its length, so that NUL bytes can be part of it. */
#define MSG(s) (s), (sizeof(s) - 1)

/* The exchanges of RFC 5802 §5 and RFC 7677 §3, user "user", password
 * "pencil", with the stored keys INTEROP.md derived from them. */
struct rfc_vector {
    const char *mech;
    const char *cnonce;      /* client nonce */
    int cnonce_random;       /* 1: it is base64 of 18 bytes: inject those
                                through the random source; 0: test hook */
    const char *snonce;      /* server's part of the nonce (test hook) */
    const char *stored;      /* server credentials */
    const char *cfirst, *sfirst, *cfinal, *sfinal;
};

static const struct rfc_vector rfc[] = {
    {
        .mech = "SCRAM-SHA-1",
        .cnonce = "fyko+d2lbbFgONRv9qkxdawL",
        .cnonce_random = 1,
        .snonce = "3rfcNHYJY1ZVvWVs7j",
        .stored = "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,"
                  "6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
                  "D+CSWLOshSulAsxiupA+qs2/fTE=",
        .cfirst = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        .sfirst = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                  "s=QSXCR+Q6sek8bf92,i=4096",
        .cfinal = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                  "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        .sfinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    },
    {
        .mech = "SCRAM-SHA-256",
        .cnonce = "rOprNGfwEbeRWgbNEkqO",
        .cnonce_random = 0,
        .snonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        .stored = "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
                  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
                  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        .cfirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        .sfirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                  "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        .cfinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO"
                  "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                  "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        .sfinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    },
};

static const struct pst_sasl_server_config scfg = {
    .hostname = "mail.example.test",
};

static const struct pst_sasl_mech *
mech(const char *name)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(name, strlen(name));

    assert_non_null(m);
    return m;
}

static int
cstep(struct pst_sasl_client *c, const char *msg, size_t len,
      struct pst_buf *out)
{
    return pst_sasl_client_step(c, (const uint8_t *)msg, len, out);
}

static int
sstep(struct pst_sasl_server *s, const char *msg, size_t len,
      struct pst_buf *out)
{
    return pst_sasl_server_step(s, (const uint8_t *)msg, len, out);
}

static struct pst_cred *
cred_new(const char *text)
{
    struct pst_cred *c = NULL;

    if (text != NULL)
        assert_rc(pst_cred_parse(text, strlen(text), &c), 0);
    return c;
}

/* --- Client: the RFC exchanges ----------------------------------------- */

/*
 * A client of vector v with password pw whose nonce is the RFC's; rb holds
 * the injected random bytes (free it with pst_buf_clear).
 */
static struct pst_sasl_client *
rfc_client(const struct rfc_vector *v, struct test_rand *r,
           struct pst_buf *rb, const char *pw)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "user",
        .password = (const uint8_t *)pw,
        .password_len = strlen(pw),
        .random = test_random,
        .random_ctx = r,
    };
    struct pst_sasl_client *c;

    if (v->cnonce_random) {
        test_b64dec(v->cnonce, rb);
        assert_int_equal(rb->len, 18);
    } else {
        pst_buf_init(rb, 16, 0);
    }
    r->bytes = rb->data;
    r->len = rb->len;
    r->pos = 0;
    assert_rc(pst_sasl_client_new(mech(v->mech), &cfg, &c), 0);
    if (!v->cnonce_random)
        assert_rc(pst__scram_client_set_nonce(c, v->cnonce), 0);
    return c;
}

static void
test_client_rfc_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(rfc); i++) {
        for (int ir = 0; ir <= 1; ir++) {
            const struct rfc_vector *v = &rfc[i];
            struct test_rand r;
            struct pst_buf rb, out;
            struct pst_sasl_client *c = rfc_client(v, &r, &rb, "pencil");

            pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
            /* The server may have sent an empty challenge instead. */
            assert_rc(ir ? cstep(c, NULL, 0, &out) : cstep(c, "", 0, &out),
                      PST_SASL_CONTINUE);
            assert_buf_str(&out, v->cfirst);
            assert_int_equal(r.pos, r.len); /* the nonce came from there */
            assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
            assert_rc(cstep(c, v->sfirst, strlen(v->sfirst), &out),
                      PST_SASL_CONTINUE);
            assert_buf_str(&out, v->cfinal);
            assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
            assert_rc(cstep(c, v->sfinal, strlen(v->sfinal), &out),
                      PST_SASL_DONE);
            assert_int_equal(out.len, 0);
            assert_rc(pst_sasl_client_finish(c), 0);
            /* An extra challenge after the end. */
            assert_rc(cstep(c, "", 0, &out), PST_ESTATE);
            pst_sasl_client_free(c);
            pst_buf_clear(&out);
            pst_buf_clear(&rb);
        }
    }
}

/* --- Server: the RFC exchanges ----------------------------------------- */

/*
 * A server of vector v with credentials cred, fed the RFC
 * client-first-message; out holds its server-first-message.
 */
static struct pst_sasl_server *
rfc_server(const struct rfc_vector *v, const struct pst_cred *cred,
           struct pst_buf *out)
{
    struct pst_sasl_server *s;

    assert_rc(pst_sasl_server_new(mech(v->mech), &scfg, &s), 0);
    assert_rc(pst__scram_server_set_nonce(s, v->snonce), 0);
    assert_rc(sstep(s, v->cfirst, strlen(v->cfirst), out),
              PST_SASL_NEED_CRED);
    assert_string_equal(pst_sasl_server_authcid(s), "user");
    assert_null(pst_sasl_server_authzid(s));
    /* Not while credentials are awaited. */
    assert_rc(sstep(s, NULL, 0, out), PST_ESTATE);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_set_cred(s, cred), PST_ESTATE);
    assert_rc(sstep(s, NULL, 0, out), PST_SASL_CONTINUE);
    return s;
}

static void
test_server_rfc_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(rfc); i++) {
        const struct rfc_vector *v = &rfc[i];
        struct pst_cred *cred = cred_new(v->stored);
        struct pst_buf out;
        struct pst_sasl_server *s;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        s = rfc_server(v, cred, &out);
        assert_buf_str(&out, v->sfirst);
        assert_rc(sstep(s, v->cfinal, strlen(v->cfinal), &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, v->sfinal);
        /* The client's empty answer to v= ends it (RFC 4954 §4). */
        assert_rc(sstep(s, "", 0, &out), PST_SASL_DONE);
        assert_int_equal(out.len, 0);
        assert_string_equal(pst_sasl_server_authcid(s), "user");
        assert_null(pst_sasl_server_authzid(s));
        assert_rc(sstep(s, "", 0, &out), PST_ESTATE);
        pst_sasl_server_free(s);
        pst_cred_free(cred);
        pst_buf_clear(&out);
    }
}

/* No initial response: an empty challenge, then the same exchange. */
static void
test_server_no_initial_response(void **state)
{
    const struct rfc_vector *v = &rfc[0];
    struct pst_cred *cred = cred_new(v->stored);
    struct pst_sasl_server *s;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_server_new(mech(v->mech), &scfg, &s), 0);
    assert_rc(pst__scram_server_set_nonce(s, v->snonce), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_int_equal(out.len, 0);
    /* The hook works only before the first step. */
    assert_rc(pst__scram_server_set_nonce(s, v->snonce), PST_ESTATE);
    assert_rc(sstep(s, v->cfirst, strlen(v->cfirst), &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, v->sfirst);
    assert_rc(sstep(s, v->cfinal, strlen(v->cfinal), &out),
              PST_SASL_CONTINUE);
    assert_buf_str(&out, v->sfinal);
    assert_rc(sstep(s, "", 0, &out), PST_SASL_DONE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
}

/* --- Round trips -------------------------------------------------------- */

static void
test_roundtrip(void **state)
{
    static const struct {
        const char *authcid, *authzid, *password, *cred;
        int want;
        const char *authcid_seen, *authzid_seen;
    } v[] = {
        {"user", NULL, "pencil", "{PLAIN}pencil", PST_SASL_DONE, "user", ""},
        {"user", NULL, "pencil2", "{PLAIN}pencil", PST_EAUTH, "", ""},
        {"user", NULL, "pencil", "{PLAIN}pencil2", PST_EAUTH, "", ""},
        {"user", NULL, "Pencil", "{PLAIN}pencil", PST_EAUTH, "", ""},
        /* authzid equal to the user (neomutt): no proxying. */
        {"user", "user", "pencil", "{PLAIN}pencil", PST_SASL_DONE, "user",
         ""},
        {"user", "other", "pencil", "{PLAIN}pencil", PST_SASL_DONE, "user",
         "other"},
        /* "," and "=" travel escaped (RFC 5802 §5.1). */
        {"a,b=c", "=x,", "pencil", "{PLAIN}pencil", PST_SASL_DONE, "a,b=c",
         "=x,"},
        /* UTF-8 names, and SASLprep on both sides: the soft hyphen maps
         * to nothing (RFC 4013 §2.2), U+2168 ROMAN NUMERAL NINE to "IX"
         * (NFKC), U+00A0 to a space. */
        {"j\xc3\xbcrgen", NULL, "p\xc3\xa4ssw\xc3\xb6rd",
         "{PLAIN}p\xc3\xa4ssw\xc3\xb6rd", PST_SASL_DONE, "j\xc3\xbcrgen", ""},
        {"user", NULL, "I\xc2\xadX", "{PLAIN}IX", PST_SASL_DONE, "user", ""},
        {"user", NULL, "IX", "{PLAIN}I\xc2\xadX", PST_SASL_DONE, "user", ""},
        {"user", NULL, "\xe2\x85\xa8", "{PLAIN}IX", PST_SASL_DONE, "user",
         ""},
        {"user", NULL, "a\xc2\xa0" "b", "{PLAIN}a\xe2\x80\x80" "b",
         PST_SASL_DONE, "user", ""},
        {"us\xc2\xad" "er", NULL, "pencil", "{PLAIN}pencil", PST_SASL_DONE,
         "user", ""},
        {"\xe2\x85\xa8", "\xe2\x85\xa8", "pencil", "{PLAIN}pencil",
         PST_SASL_DONE, "IX", ""},
        /* No usable verifier: the stored password fails SASLprep (bidi
         * rule), or only another mechanism's verifier. */
        {"user", NULL, "pencil", "{PLAIN}\xd8\xa7" "1", PST_EAUTH, "", ""},
        {"user", NULL, "pencil",
         "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
         "54b21152711fb604ca3e035e7015116b", PST_EAUTH, "", ""},
    };
    static const char *const mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256"};

    (void)state;
    for (size_t m = 0; m < PST__ARRAY_LEN(mechs); m++) {
        for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
            for (int ir = 0; ir <= 1; ir++) {
                struct test_exchange x = {
                    .mech = mechs[m],
                    .authcid = v[i].authcid,
                    .authzid = v[i].authzid,
                    .password = v[i].password,
                    .cred_text = v[i].cred,
                    .use_initial_response = ir,
                };
                int rc = test_run_exchange(&x);

                if (rc != v[i].want) {
                    fprintf(stderr, "%s case %zu ir %d: got %s, want %s\n",
                            mechs[m], i, ir, pst_errname(rc),
                            pst_errname(v[i].want));
                    fail();
                }
                assert_string_equal(x.authcid_seen, v[i].authcid_seen);
                assert_string_equal(x.authzid_seen, v[i].authzid_seen);
                if (rc == PST_SASL_DONE) {
                    /* [""], first, server-first, final, v=, "". */
                    assert_int_equal(x.messages, ir ? 5u : 6u);
                    assert_rc(x.client_rc, 0);
                } else {
                    /* Refused at the proof, not before. */
                    assert_int_equal(x.messages, ir ? 3u : 4u);
                    assert_rc(x.server_rc, PST_EAUTH);
                }
            }
        }
    }
}

/* An unknown user looks like a wrong password until the proof. */
static void
test_roundtrip_unknown_user(void **state)
{
    static const char *const mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256"};

    (void)state;
    for (size_t m = 0; m < PST__ARRAY_LEN(mechs); m++) {
        struct test_exchange x = {
            .mech = mechs[m], .authcid = "nobody", .password = "pencil",
            .cred_text = NULL, .use_initial_response = 1,
        };

        assert_rc(test_run_exchange(&x), PST_EAUTH);
        assert_int_equal(x.messages, 3);
        assert_rc(x.client_rc, PST_SASL_CONTINUE);
        assert_rc(x.server_rc, PST_EAUTH);
    }
}

/* --- Server: unknown users get fake keys -------------------------------- */

/* Check "r=<cnonce><24 chars>,s=<24 chars>,i=<iter>"; return the salt. */
static void
check_fake_first(const struct pst_buf *out, const char *cnonce,
                 const char *iter, char salt[25])
{
    const char *p = (const char *)out->data;
    size_t n = strlen(cnonce);
    struct pst_buf raw;

    assert_non_null(p);
    assert_true(strncmp(p, "r=", 2) == 0);
    assert_true(strncmp(p + 2, cnonce, n) == 0);
    p += 2 + n;
    /* Our nonce: base64 of 18 bytes. */
    assert_true(strlen(p) > 24 && p[24] == ',');
    p += 25;
    assert_true(strncmp(p, "s=", 2) == 0);
    memcpy(salt, p + 2, 24);
    salt[24] = '\0';
    test_b64dec(salt, &raw);
    assert_int_equal(raw.len, 16);
    pst_buf_clear(&raw);
    assert_true(strncmp(p + 26, ",i=", 3) == 0);
    assert_string_equal(p + 29, iter);
}

static void
fake_first_cred(const struct pst_sasl_server_config *cfg, const char *mname,
                const char *user, const struct pst_cred *cred,
                const char *iter, char salt[25], const char *reason)
{
    char cfirst[128];
    struct pst_sasl_server *s;
    struct pst_buf out;
    /* A well-formed proof: a digest of the mechanism's size. */
    const char *proof = strcmp(mname, "SCRAM-SHA-1") == 0
                            ? "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
                            : "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    char cfinal[256];
    int n;

    n = snprintf(cfirst, sizeof(cfirst), "n,,n=%s,r=fyko", user);
    assert_true(n > 0 && (size_t)n < sizeof(cfirst));
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_server_new(mech(mname), cfg, &s), 0);
    assert_rc(sstep(s, cfirst, strlen(cfirst), &out), PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_SASL_CONTINUE);
    check_fake_first(&out, "fyko", iter, salt);
    /* It fails at the proof, whatever the proof. */
    n = snprintf(cfinal, sizeof(cfinal), "c=biws,r=%.*s,p=%s",
                 (int)(strchr((const char *)out.data, ',') -
                       (const char *)out.data - 2),
                 (const char *)out.data + 2, proof);
    assert_true(n > 0 && (size_t)n < sizeof(cfinal));
    assert_rc(sstep(s, cfinal, strlen(cfinal), &out), PST_EAUTH);
    assert_string_equal(pst_sasl_server_reason(s), reason);
    pst_sasl_server_free(s);
    pst_buf_clear(&out);
}

static void
fake_first(const struct pst_sasl_server_config *cfg, const char *mname,
           const char *user, const char *iter, char salt[25])
{
    fake_first_cred(cfg, mname, user, NULL, iter, salt, "unknown user");
}

static void
test_server_unknown_user(void **state)
{
    static const uint8_t secret[] = "server secret";
    uint8_t rnd[4 * (16 + 18)];
    struct test_rand r = {.bytes = rnd, .len = sizeof(rnd)};
    struct pst_sasl_server_config cfg = scfg;
    char a[25], b[25], c[25], d[25];

    (void)state;
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (uint8_t)(i * 7 + 1);
    /* Without a secret: random salts (16 bytes) and nonces (18 bytes). */
    cfg.random = test_random;
    cfg.random_ctx = &r;
    fake_first(&cfg, "SCRAM-SHA-1", "nobody", "4096", a);
    assert_int_equal(r.pos, 16 + 18);
    fake_first(&cfg, "SCRAM-SHA-1", "nobody", "4096", b);
    assert_string_not_equal(a, b);
    /* The configured iteration count, as a {PLAIN} user would get. */
    cfg.scram_iterations = 5000;
    fake_first(&cfg, "SCRAM-SHA-256", "nobody", "5000", a);

    /* With a secret: stable per user and mechanism, no random salt. */
    cfg.random = NULL;
    cfg.random_ctx = NULL;
    cfg.scram_iterations = 0;
    cfg.scram_secret = secret;
    cfg.scram_secret_len = sizeof(secret) - 1;
    fake_first(&cfg, "SCRAM-SHA-1", "nobody", "4096", a);
    fake_first(&cfg, "SCRAM-SHA-1", "nobody", "4096", b);
    assert_string_equal(a, b);
    fake_first(&cfg, "SCRAM-SHA-1", "nobody2", "4096", c);
    assert_string_not_equal(a, c);
    fake_first(&cfg, "SCRAM-SHA-256", "nobody", "4096", d);
    assert_string_not_equal(a, d);
    cfg.scram_secret = (const uint8_t *)"another";
    cfg.scram_secret_len = 7;
    fake_first(&cfg, "SCRAM-SHA-1", "nobody", "4096", b);
    assert_string_not_equal(a, b);
}

/* Known users without a usable verifier get fake keys too. */
static void
test_server_no_usable_verifier(void **state)
{
    static const struct {
        const char *mech, *cred, *reason;
    } v[] = {
        {"SCRAM-SHA-1", "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
                        "54b21152711fb604ca3e035e7015116b",
         "no SCRAM or PLAIN verifier"},
        /* A SHA-256 verifier does not serve SCRAM-SHA-1. */
        {"SCRAM-SHA-1", "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
                        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
                        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
         "no SCRAM or PLAIN verifier"},
        /* RFC 4013 §2.4: the stored password breaks the bidi rule. */
        {"SCRAM-SHA-256", "{PLAIN}\xd8\xa7" "1",
         "stored password fails SASLprep"},
    };
    struct pst_sasl_server_config cfg = scfg;
    char salt[25];

    (void)state;
    cfg.scram_secret = (const uint8_t *)"k";
    cfg.scram_secret_len = 1;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_cred *cred = cred_new(v[i].cred);

        fake_first_cred(&cfg, v[i].mech, "user", cred, "4096", salt,
                        v[i].reason);
        pst_cred_free(cred);
    }
}

/* --- Server: salts from the server secret, keys made off the loop ------ */

/* HMAC-SHA-256(secret, user NUL mech)[0..16) in base64, computed with
 * OpenSSL alone (not the module's code): what sasl.h promises. */
static void
secret_salt(const char *secret, const char *user, const char *mname,
            char out[25])
{
    uint8_t msg[128], mac[EVP_MAX_MD_SIZE];
    unsigned mlen = 0;
    size_t ulen = strlen(user), nlen = strlen(mname);

    assert_true(ulen + 1 + nlen <= sizeof(msg));
    memcpy(msg, user, ulen);
    msg[ulen] = 0;
    memcpy(msg + ulen + 1, mname, nlen);
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), msg,
                         ulen + 1 + nlen, mac, &mlen));
    assert_int_equal(EVP_EncodeBlock((unsigned char *)out, mac, 16), 24);
}

/*
 * One whole exchange: user with password pw against cred (NULL: unknown),
 * the server configured with cfg.  salt and iter get the s= and i= of the
 * server-first message.  Returns the server's last result.
 */
static int
exchange(const struct pst_sasl_server_config *cfg, const char *mname,
         const char *user, const char *pw, const struct pst_cred *cred,
         char salt[64], char iter[16])
{
    struct pst_sasl_client_config ccfg = {
        .authcid = user,
        .password = (const uint8_t *)pw,
        .password_len = strlen(pw),
    };
    struct pst_sasl_client *c;
    struct pst_sasl_server *s;
    struct pst_buf cout, sout;
    const char *p, *q;
    int rc;

    pst_buf_init(&cout, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&sout, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_client_new(mech(mname), &ccfg, &c), 0);
    assert_rc(pst_sasl_server_new(mech(mname), cfg, &s), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &cout), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s, cout.data, cout.len, &sout),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &sout), PST_SASL_CONTINUE);
    assert_rc(pst_buf_append_byte(&sout, 0), 0);
    p = strstr((const char *)sout.data, ",s=");
    q = strstr((const char *)sout.data, ",i=");
    assert_true(p != NULL && q != NULL && q - p - 3 < 64);
    snprintf(salt, 64, "%.*s", (int)(q - p - 3), p + 3);
    snprintf(iter, 16, "%s", q + 3);
    sout.len--;
    pst_buf_reset(&cout);
    assert_rc(pst_sasl_client_step(c, sout.data, sout.len, &cout),
              PST_SASL_CONTINUE);
    pst_buf_reset(&sout);
    rc = pst_sasl_server_step(s, cout.data, cout.len, &sout);
    if (rc == PST_SASL_CONTINUE) {
        pst_buf_reset(&cout);
        assert_rc(pst_sasl_client_step(c, sout.data, sout.len, &cout),
                  PST_SASL_DONE);
        rc = pst_sasl_server_step(s, (const uint8_t *)"", 0, &sout);
    }
    pst_sasl_client_free(c);
    pst_sasl_server_free(s);
    pst_buf_clear(&cout);
    pst_buf_clear(&sout);
    return rc;
}

/* With a secret, every salt not stored is HMAC(secret, user NUL mech):
 * an unknown user's and a {PLAIN} user's alike, stable between attempts,
 * so that two attempts and a '*' tell nothing. */
static void
test_server_secret_salts(void **state)
{
    static const char *const mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256"};
    struct pst_sasl_server_config cfg = scfg;
    struct pst_cred *plain = cred_new("{PLAIN}pencil");
    char want[25], a[64], b[64], ia[16], ib[16];

    (void)state;
    cfg.scram_secret = (const uint8_t *)"0123456789abcdef0123456789abcdef";
    cfg.scram_secret_len = 32;
    for (size_t m = 0; m < PST__ARRAY_LEN(mechs); m++) {
        secret_salt("0123456789abcdef0123456789abcdef", "user", mechs[m],
                    want);
        /* {PLAIN}: right password, twice; the salt does not move. */
        assert_rc(exchange(&cfg, mechs[m], "user", "pencil", plain, a, ia),
                  PST_SASL_DONE);
        assert_rc(exchange(&cfg, mechs[m], "user", "wrong", plain, b, ib),
                  PST_EAUTH);
        assert_string_equal(a, want);
        assert_string_equal(b, want);
        assert_string_equal(ia, "4096");
        assert_string_equal(ib, "4096");
        /* Unknown user of the same name: the same salt and count. */
        assert_rc(exchange(&cfg, mechs[m], "user", "pencil", NULL, a, ia),
                  PST_EAUTH);
        assert_string_equal(a, want);
        assert_string_equal(ia, "4096");
        /* Another name, another salt. */
        secret_salt("0123456789abcdef0123456789abcdef", "someone",
                    mechs[m], want);
        assert_rc(exchange(&cfg, mechs[m], "someone", "x", NULL, a, ia),
                  PST_EAUTH);
        assert_string_equal(a, want);
    }
    pst_cred_free(plain);
}

/* pst_sasl_server_cred_slow() / _prepare(): the keys made beforehand are
 * the ones the exchange would have derived, and the exchange then takes
 * them as stored. */
static void
test_server_cred_prepare(void **state)
{
    static const struct {
        const char *mech, *cred;
        int slow;
    } v[] = {
        {"SCRAM-SHA-256", "{PLAIN}pencil", 1},
        {"SCRAM-SHA-1", "{PLAIN}pencil", 1},
        {"SCRAM-SHA-1", "{PLAIN}pencil {CRAM-MD5}d06d4e1b26fccaa4b0b61801"
                        "132340a354b21152711fb604ca3e035e7015116b", 1},
        /* A stored verifier of the hash: nothing to derive. */
        {"SCRAM-SHA-256", "{PLAIN}pencil {SCRAM-SHA-256}4096,"
                          "W22ZaJ0SNY7soEsUEjb6gQ==,"
                          "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
                          "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", 0},
        /* ... but it does not serve SCRAM-SHA-1. */
        {"SCRAM-SHA-1", "{PLAIN}pencil {SCRAM-SHA-256}4096,"
                        "W22ZaJ0SNY7soEsUEjb6gQ==,"
                        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
                        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", 1},
        /* No {PLAIN}: fake keys, no derivation. */
        {"SCRAM-SHA-256", "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
                          "54b21152711fb604ca3e035e7015116b", 0},
        /* Other mechanisms derive nothing. */
        {"PLAIN", "{PLAIN}pencil", 0},
        {"CRAM-MD5", "{PLAIN}pencil", 0},
    };
    struct pst_sasl_server_config cfg = scfg;
    char a[64], b[64], ia[16], ib[16];

    (void)state;
    cfg.scram_secret = (const uint8_t *)"k";
    cfg.scram_secret_len = 1;
    assert_int_equal(pst_sasl_server_cred_slow(mech("SCRAM-SHA-256"), NULL),
                     0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_cred *c = cred_new(v[i].cred), *pre = NULL;
        int rc;

        if (pst_sasl_server_cred_slow(mech(v[i].mech), c) != v[i].slow) {
            fprintf(stderr, "case %zu: got slow %d, want %d\n", i,
                    !v[i].slow, v[i].slow);
            fail();
        }
        rc = pst_sasl_server_cred_prepare(mech(v[i].mech), &cfg, "user", c,
                                          &pre);
        if (!v[i].slow) {
            assert_rc(rc, PST_EINVAL);
            assert_null(pre);
            pst_cred_free(c);
            continue;
        }
        assert_rc(rc, 0);
        assert_non_null(pre);
        assert_int_equal(pst_sasl_server_cred_slow(mech(v[i].mech), pre), 0);
        /* The other verifiers are kept. */
        assert_int_equal(pst_cred_has(pre, PST_SCHEME_PLAIN), 1);
        assert_int_equal(pst_cred_has(pre, PST_SCHEME_CRAM_MD5),
                         pst_cred_has(c, PST_SCHEME_CRAM_MD5));
        assert_rc(pst_cred_verify(pre, "user", (const uint8_t *)"pencil",
                                  6), 0);
        /* Same salt and count as the derivation in the step; the right
         * password passes, a wrong one fails. */
        assert_rc(exchange(&cfg, v[i].mech, "user", "pencil", c, a, ia),
                  PST_SASL_DONE);
        assert_rc(exchange(&cfg, v[i].mech, "user", "pencil", pre, b, ib),
                  PST_SASL_DONE);
        assert_string_equal(a, b);
        assert_string_equal(ia, ib);
        assert_rc(exchange(&cfg, v[i].mech, "user", "pencil2", pre, b, ib),
                  PST_EAUTH);
        pst_cred_free(pre);
        pst_cred_free(c);
    }
}

/* A {PLAIN} password that fails SASLprep cannot be prepared. */
static void
test_server_cred_prepare_fails(void **state)
{
    struct pst_sasl_server_config cfg = scfg;
    struct pst_cred *c = cred_new("{PLAIN}\xd8\xa7" "1"), *pre = NULL;
    uint8_t none[1];
    struct test_rand r = {.bytes = none, .len = 0};

    (void)state;
    assert_rc(pst_sasl_server_cred_prepare(mech("SCRAM-SHA-256"), &cfg,
                                           "user", c, &pre), PST_EPREP);
    assert_null(pre);
    pst_cred_free(c);
    /* Without a secret the salt is random: a failing source says so. */
    c = cred_new("{PLAIN}pencil");
    cfg.random = test_random;
    cfg.random_ctx = &r;
    assert_rc(pst_sasl_server_cred_prepare(mech("SCRAM-SHA-1"), &cfg,
                                           "user", c, &pre), PST_ETEMP);
    assert_null(pre);
    pst_cred_free(c);
}

/* --- Server: malformed client-first-message ----------------------------- */

static void
test_server_client_first_malformed(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
        int want;
        const char *authzid;  /* when accepted: want this (NULL: none) */
    } v[] = {
        /* Accepted (controls). */
        {MSG("n,,n=user,r=abc"), PST_SASL_NEED_CRED, NULL},
        {MSG("y,,n=user,r=abc"), PST_SASL_NEED_CRED, NULL},
        {MSG("n,a=user,n=user,r=abc"), PST_SASL_NEED_CRED, NULL},
        {MSG("n,a=adm=2Cin,n=user,r=abc"), PST_SASL_NEED_CRED, "adm,in"},
        {MSG("n,,n=user,r=abc,x=1,y=2"), PST_SASL_NEED_CRED, NULL},
        {MSG("n,,n=user,r=!\"#$%&'()*+-./~"), PST_SASL_NEED_CRED, NULL},
        /* Negative vectors from Dovecot's test-mech.c. */
        {MSG("n,a=masteruser,,"), PST_EPROTO, NULL},
        {MSG("n,a==masteruser,,"), PST_EPROTO, NULL},
        {MSG("n,,m=testuser,,"), PST_EPROTO, NULL},
        {MSG("broken\0input"), PST_EPROTO, NULL},
        /* gs2 header. */
        {MSG(""), PST_EPROTO, NULL},
        {MSG("n"), PST_EPROTO, NULL},
        {MSG("n,"), PST_EPROTO, NULL},
        {MSG("n,,"), PST_EPROTO, NULL},
        {MSG("N,,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("x,,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("nn,,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG(",,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("p=tls-unique,,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("p=tls-exporter,a=user,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("p=,,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("p=tls_unique,,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("n,b=user,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("n,a=,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("n,a=us=er,n=user,r=abc"), PST_EPROTO, NULL},
        {MSG("n,n=user,r=abc"), PST_EPROTO, NULL},
        /* User name. */
        {MSG("n,,r=abc,n=user"), PST_EPROTO, NULL},
        {MSG("n,,n=user"), PST_EPROTO, NULL},
        {MSG("n,,n=,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,u=user,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,N=user,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,n=us=2cer,r=abc"), PST_EPROTO, NULL},  /* lowercase */
        {MSG("n,,n=us=er,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,n=user=,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,n=user=2,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,n=us\0er,r=abc"), PST_EPROTO, NULL},
        {MSG("n,,n=\xff,r=abc"), PST_EPROTO, NULL},     /* not UTF-8 */
        {MSG("n,,n=\x07,r=abc"), PST_EPREP, NULL},      /* SASLprep */
        {MSG("n,,n=\xc2\xad,r=abc"), PST_EPREP, NULL},  /* maps to "" */
        {MSG("n,,m=ext,n=user,r=abc"), PST_EPROTO, NULL},
        /* Nonce. */
        {MSG("n,,n=user,r="), PST_EPROTO, NULL},
        {MSG("n,,n=user,abc"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=a b"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=ab\x7f"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=ab\xc3\xa9"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=ab\0"), PST_EPROTO, NULL},
        /* Extensions. */
        {MSG("n,,n=user,r=abc,"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=abc,m=x"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=abc,x="), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=abc,1=x"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=abc,xy"), PST_EPROTO, NULL},
        {MSG("n,,n=user,r=abc,x=1\0"), PST_EPROTO, NULL},
    };
    static const char *const mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256"};

    (void)state;
    for (size_t m = 0; m < PST__ARRAY_LEN(mechs); m++) {
        for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
            struct pst_sasl_server *s;
            struct pst_buf out;
            int rc;

            pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
            assert_rc(pst_sasl_server_new(mech(mechs[m]), &scfg, &s), 0);
            rc = sstep(s, v[i].msg, v[i].len, &out);
            if (rc != v[i].want) {
                fprintf(stderr, "%s case %zu: got %s, want %s\n", mechs[m],
                        i, rc < 0 ? pst_errname(rc) : "progress",
                        v[i].want < 0 ? pst_errname(v[i].want)
                                      : "progress");
                fail();
            }
            if (rc < 0) {
                assert_true(strlen(pst_sasl_server_reason(s)) > 0);
                assert_int_equal(out.len, 0);
                /* The exchange is over. */
                assert_rc(sstep(s, "n,,n=user,r=abc", 15, &out),
                          PST_ESTATE);
            } else if (v[i].authzid != NULL) {
                assert_string_equal(pst_sasl_server_authzid(s),
                                    v[i].authzid);
            } else {
                assert_null(pst_sasl_server_authzid(s));
            }
            pst_sasl_server_free(s);
            pst_buf_clear(&out);
        }
    }
}

static void
test_server_client_first_limits(void **state)
{
    char msg[PST_SASL_MAX_NAME + 32];
    struct pst_sasl_server *s;
    struct pst_buf out;
    size_t n;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    /* A name of PST_SASL_MAX_NAME octets passes; one more does not. */
    for (int extra = 0; extra <= 1; extra++) {
        memcpy(msg, "n,,n=", 5);
        n = 5;
        memset(msg + n, 'u', PST_SASL_MAX_NAME + (size_t)extra);
        n += PST_SASL_MAX_NAME + (size_t)extra;
        memcpy(msg + n, ",r=abc", 6);
        n += 6;
        assert_rc(pst_sasl_server_new(mech("SCRAM-SHA-1"), &scfg, &s), 0);
        assert_rc(sstep(s, msg, n, &out),
                  extra ? PST_ELIMIT : PST_SASL_NEED_CRED);
        pst_sasl_server_free(s);
    }
    /* A message over PST_SASL_MAX_MESSAGE. */
    {
        static char big[PST_SASL_MAX_MESSAGE + 1];

        memset(big, 'x', sizeof(big));
        memcpy(big, "n,,n=user,r=", 12);
        assert_rc(pst_sasl_server_new(mech("SCRAM-SHA-1"), &scfg, &s), 0);
        assert_rc(sstep(s, big, sizeof(big), &out), PST_ELIMIT);
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&out);
}

/* --- Server: malformed client-final-message ----------------------------- */

#define SHA1_NONCE "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
#define SHA1_PROOF "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="

static void
test_server_client_final_malformed(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
        int want;
    } v[] = {
        /* The RFC message (control). */
        {MSG("c=biws,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_SASL_CONTINUE},
        {MSG(""), PST_EPROTO},
        {MSG("c=biws"), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ","), PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",c=biws,p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws,p=" SHA1_PROOF ",r=" SHA1_NONCE), PST_EPROTO},
        /* c= must be base64 of the gs2 header sent first. */
        {MSG("c=eSws,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=bixhPXVzZXIs,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biwsbixu,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biw,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws=,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=bi!s,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        /* r= must be exactly the combined nonce. */
        {MSG("c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7k,p="
             SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE "x,p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws,r=,p=" SHA1_PROOF), PST_EPROTO},
        /* p= last, strict base64 of exactly 20 bytes. */
        {MSG("c=biws,r=" SHA1_NONCE ",p="), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Q=="),
         PST_EPROTO},                                       /* 19 bytes */
        {MSG("c=biws,r=" SHA1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt4"),
         PST_EPROTO},                                       /* 21 bytes */
        {MSG("c=biws,r=" SHA1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts"),
         PST_EPROTO},                                       /* no pad */
        {MSG("c=biws,r=" SHA1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt="),
         PST_EPROTO},                                       /* pad bits */
        {MSG("c=biws,r=" SHA1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X-HI4Ts="),
         PST_EPROTO},                                       /* url-safe */
        {MSG("c=biws,r=" SHA1_NONCE ",p=" SHA1_PROOF ",x=y"), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",p=" SHA1_PROOF ",p=" SHA1_PROOF),
         PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",p=" SHA1_PROOF ","), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",m=x,p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",x,p=" SHA1_PROOF), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",p=" SHA1_PROOF "\0"), PST_EPROTO},
        {MSG("c=biws\0,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
        /* Well formed but wrong: a flipped proof, and an extension the
         * proof was not computed over (it is part of the AuthMessage). */
        {MSG("c=biws,r=" SHA1_NONCE ",p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
         PST_EAUTH},
        {MSG("c=biws,r=" SHA1_NONCE ",x=y,p=" SHA1_PROOF), PST_EAUTH},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_cred *cred = cred_new(rfc[0].stored);
        struct pst_sasl_server *s;
        struct pst_buf out;
        int rc;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        s = rfc_server(&rfc[0], cred, &out);
        assert_buf_str(&out, rfc[0].sfirst);
        rc = sstep(s, v[i].msg, v[i].len, &out);
        if (rc != v[i].want) {
            fprintf(stderr, "case %zu: got %s, want %s (%s)\n", i,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "progress",
                    pst_sasl_server_reason(s));
            fail();
        }
        if (rc < 0) {
            assert_true(strlen(pst_sasl_server_reason(s)) > 0);
            assert_int_equal(out.len, 0);
            assert_rc(sstep(s, "", 0, &out), PST_ESTATE);
        } else {
            assert_buf_str(&out, rfc[0].sfinal);
        }
        pst_sasl_server_free(s);
        pst_cred_free(cred);
        pst_buf_clear(&out);
    }
}

/* After v=: only an empty answer; nothing after the end. */
static void
test_server_after_final(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
        int want;
    } v[] = {
        {MSG(""), PST_SASL_DONE},
        {MSG("x"), PST_EPROTO},
        {MSG("\0"), PST_EPROTO},
        {MSG("c=biws,r=" SHA1_NONCE ",p=" SHA1_PROOF), PST_EPROTO},
    };
    const struct rfc_vector *r = &rfc[0];

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_cred *cred = cred_new(r->stored);
        struct pst_sasl_server *s;
        struct pst_buf out;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        s = rfc_server(r, cred, &out);
        assert_rc(sstep(s, r->cfinal, strlen(r->cfinal), &out),
                  PST_SASL_CONTINUE);
        assert_rc(sstep(s, v[i].msg, v[i].len, &out), v[i].want);
        /* Whatever happened, it is over. */
        assert_rc(sstep(s, "", 0, &out), PST_ESTATE);
        assert_rc(sstep(s, NULL, 0, &out), PST_ESTATE);
        pst_sasl_server_free(s);
        pst_cred_free(cred);
        pst_buf_clear(&out);
    }
}

/* Steps out of turn, failing randomness, the hook's own checks. */
static void
test_server_misuse(void **state)
{
    const struct rfc_vector *r = &rfc[0];
    struct pst_sasl_server_config cfg = scfg;
    struct pst_cred *cred = cred_new("{PLAIN}pencil");
    struct pst_sasl_server *s;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    /* No input where the client-final-message is due. */
    assert_rc(pst_sasl_server_new(mech(r->mech), &scfg, &s), 0);
    assert_rc(sstep(s, r->cfirst, strlen(r->cfirst), &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(sstep(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);

    /* Twice no input at the start. */
    assert_rc(pst_sasl_server_new(mech(r->mech), &scfg, &s), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(sstep(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);

    /* The random source fails: no salt for {PLAIN}, then no nonce. */
    cfg.random = test_random_fail;
    assert_rc(pst_sasl_server_new(mech(r->mech), &cfg, &s), 0);
    assert_rc(sstep(s, r->cfirst, strlen(r->cfirst), &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_ETEMP);
    pst_sasl_server_free(s);
    assert_rc(pst_sasl_server_new(mech(r->mech), &cfg, &s), 0);
    assert_rc(sstep(s, r->cfirst, strlen(r->cfirst), &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, NULL), 0);
    assert_rc(sstep(s, NULL, 0, &out), PST_ETEMP);
    pst_sasl_server_free(s);

    /* The nonce hook: SCRAM only, printable, at most 64 octets. */
    assert_rc(pst_sasl_server_new(mech("PLAIN"), &scfg, &s), 0);
    assert_rc(pst__scram_server_set_nonce(s, "abc"), PST_EINVAL);
    pst_sasl_server_free(s);
    assert_rc(pst_sasl_server_new(mech(r->mech), &scfg, &s), 0);
    assert_rc(pst__scram_server_set_nonce(s, "a,b"), PST_EINVAL);
    assert_rc(pst__scram_server_set_nonce(s, ""), PST_EINVAL);
    assert_rc(pst__scram_server_set_nonce(s, "a b"), PST_EINVAL);
    assert_rc(pst__scram_server_set_nonce(
                  s, "0123456789012345678901234567890123456789"
                     "012345678901234567890123"), 0);
    assert_rc(pst__scram_server_set_nonce(
                  s, "0123456789012345678901234567890123456789"
                     "0123456789012345678901234"), PST_EINVAL);
    pst_sasl_server_free(s);

    pst_cred_free(cred);
    pst_buf_clear(&out);
}

/* --- Client: escaping and SASLprep -------------------------------------- */

static void
test_client_first_forms(void **state)
{
    static const struct {
        const char *authcid, *authzid, *password;
        int want;
        const char *cfirst;
    } v[] = {
        {"user", NULL, "pencil", PST_SASL_CONTINUE, "n,,n=user,r=abc"},
        {"user", "", "pencil", PST_SASL_CONTINUE, "n,,n=user,r=abc"},
        {"user", "user", "pencil", PST_SASL_CONTINUE,
         "n,a=user,n=user,r=abc"},
        {"a,b=c", "=x,", "pencil", PST_SASL_CONTINUE,
         "n,a==3Dx=2C,n=a=2Cb=3Dc,r=abc"},
        {"==,,", NULL, "pencil", PST_SASL_CONTINUE,
         "n,,n==3D=3D=2C=2C,r=abc"},
        /* SASLprep of the names as queries (RFC 5802 §5.1). */
        {"us\xc2\xad" "er", "\xe2\x85\xa8", "pencil", PST_SASL_CONTINUE,
         "n,a=IX,n=user,r=abc"},
        {"j\xc3\xbcrgen", NULL, "pencil", PST_SASL_CONTINUE,
         "n,,n=j\xc3\xbcrgen,r=abc"},
        {"\xc8\xa1", NULL, "pencil", PST_SASL_CONTINUE,  /* unassigned */
         "n,,n=\xc8\xa1,r=abc"},
        {"\x07", NULL, "pencil", PST_EPREP, ""},
        {"\xc2\xad", NULL, "pencil", PST_EPREP, ""},
        {"user", "\x07", "pencil", PST_EPREP, ""},
        /* The password as a stored string (RFC 5802 §2.2). */
        {"user", NULL, "\x07", PST_EPREP, ""},
        {"user", NULL, "\xc8\xa1", PST_EPREP, ""},
        {"user", NULL, "\xd8\xa7" "1", PST_EPREP, ""},
        {"user", NULL, "\xc2\xad", PST_EPREP, ""},
        {"user", NULL, "p\xffw", PST_EPREP, ""},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client_config cfg = {
            .authcid = v[i].authcid,
            .authzid = v[i].authzid,
            .password = (const uint8_t *)v[i].password,
            .password_len = strlen(v[i].password),
        };
        struct pst_sasl_client *c;
        struct pst_buf out;
        int rc;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-256"), &cfg, &c), 0);
        assert_rc(pst__scram_client_set_nonce(c, "abc"), 0);
        rc = cstep(c, NULL, 0, &out);
        if (rc != v[i].want) {
            fprintf(stderr, "case %zu: got %s, want %s\n", i,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "progress");
            fail();
        }
        assert_buf_str(&out, v[i].cfirst);
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
}

/* --- Client: a bad server-first-message --------------------------------- */

static void
test_client_server_first_bad(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
        unsigned min_iter;
        int want;
    } v[] = {
        /* The RFC message (control), and an ignored extension. */
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096"), 0,
         PST_SASL_CONTINUE},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096,x=y"), 0,
         PST_SASL_CONTINUE},
        /* Iteration counts (RFC 7677 §4: at least 4096). */
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=1"), 0, PST_EWEAK},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4095"), 0, PST_EWEAK},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096"), 4097,
         PST_EWEAK},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=1000"), 1000,
         PST_SASL_CONTINUE},
        /* A count that would hang the client's PBKDF2 (hostile server). */
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=10000001"), 0,
         PST_ELIMIT},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=0"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=04096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=-4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=+4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096x"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i= 4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i="), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=2147483648"), 0,
         PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=99999999999999999999"),
         0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92"), 0, PST_EPROTO},
        /* The nonce must extend ours. */
        {MSG("r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096"), 0,
         PST_EPROTO},
        {MSG("r=fyko+d2lbbFgONRv9qkxdawX3rfcNHYJY1ZVvWVs7j,"
             "s=QSXCR+Q6sek8bf92,i=4096"), 0, PST_EPROTO},
        {MSG("r=3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"), 0,
         PST_EPROTO},
        {MSG("r=fyko,s=QSXCR+Q6sek8bf92,i=4096"), 0, PST_EPROTO},
        {MSG("r=,s=QSXCR+Q6sek8bf92,i=4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE " ,s=QSXCR+Q6sek8bf92,i=4096"), 0, PST_EPROTO},
        /* Salt. */
        {MSG("r=" SHA1_NONCE ",s=,i=4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf9,i=4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR Q6sek8bf92,i=4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR-Q6sek8bf92,i=4096"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s====,i=4096"), 0, PST_EPROTO},
        /* Order, mandatory extensions, NULs, emptiness. */
        {MSG("s=QSXCR+Q6sek8bf92,r=" SHA1_NONCE ",i=4096"), 0, PST_EPROTO},
        {MSG("m=x,r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096"), 0,
         PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096,m=x"), 0,
         PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096,"), 0, PST_EPROTO},
        {MSG("r=" SHA1_NONCE ",s=QSXCR+Q6sek8bf92,i=4096\0"), 0,
         PST_EPROTO},
        {MSG("e=other-error"), 0, PST_EPROTO},
        {MSG(""), 0, PST_EPROTO},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client_config cfg = {
            .authcid = "user",
            .password = (const uint8_t *)"pencil",
            .password_len = 6,
            .scram_min_iterations = v[i].min_iter,
        };
        struct pst_sasl_client *c;
        struct pst_buf out;
        int rc;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-1"), &cfg, &c), 0);
        assert_rc(pst__scram_client_set_nonce(c, rfc[0].cnonce), 0);
        assert_rc(cstep(c, NULL, 0, &out), PST_SASL_CONTINUE);
        rc = cstep(c, v[i].msg, v[i].len, &out);
        if (rc != v[i].want) {
            fprintf(stderr, "case %zu: got %s, want %s\n", i,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "progress");
            fail();
        }
        if (rc < 0) {
            assert_int_equal(out.len, 0);
            assert_rc(cstep(c, "", 0, &out), PST_ESTATE);
        } else {
            assert_true(out.len > 0);
            assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
        }
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
}

/* --- Client: a bad server-final-message --------------------------------- */

static void
test_client_server_final_bad(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
        int want;
    } v[] = {
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), PST_SASL_DONE},
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,x=y"), PST_SASL_DONE},
        /* Forged signatures. */
        {MSG("v=smF9pqV8S7suAoZWja4dJRkFsKQ="), PST_EFORGED},
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKA="), PST_EFORGED},
        {MSG("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="), PST_EFORGED},
        /* The server refuses us (RFC 5802 §5.1 e=). */
        {MSG("e=invalid-proof"), PST_EAUTH},
        {MSG("e=other-error,x=y"), PST_EAUTH},
        /* Malformed. */
        {MSG("e="), PST_EPROTO},
        {MSG("v="), PST_EPROTO},
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsA=="), PST_EPROTO}, /* 19 bytes */
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKQ"), PST_EPROTO},
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,"), PST_EPROTO},
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,m=x"), PST_EPROTO},
        {MSG("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=\0"), PST_EPROTO},
        {MSG("V=rmF9pqV8S7suAoZWja4dJRkFsKQ="), PST_EPROTO},
        {MSG("x=y,v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), PST_EPROTO},
        {MSG(""), PST_EPROTO},
    };
    const struct rfc_vector *r = &rfc[0];

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct test_rand tr;
        struct pst_buf rb, out;
        struct pst_sasl_client *c = rfc_client(r, &tr, &rb, "pencil");
        int rc;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        assert_rc(cstep(c, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(cstep(c, r->sfirst, strlen(r->sfirst), &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, r->cfinal);
        rc = cstep(c, v[i].msg, v[i].len, &out);
        if (rc != v[i].want) {
            fprintf(stderr, "case %zu: got %s, want %s\n", i,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "progress");
            fail();
        }
        assert_int_equal(out.len, 0);
        if (rc == PST_SASL_DONE)
            assert_rc(pst_sasl_client_finish(c), 0);
        else
            assert_rc(pst_sasl_client_finish(c), PST_ESTATE);
        /* Nothing more is expected either way. */
        assert_rc(cstep(c, "", 0, &out), PST_ESTATE);
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
        pst_buf_clear(&rb);
    }
}

/* The server says "success" without having sent v=. */
static void
test_client_finish_without_proof(void **state)
{
    const struct rfc_vector *r = &rfc[1];
    struct test_rand tr;
    struct pst_buf rb, out;
    struct pst_sasl_client *c = rfc_client(r, &tr, &rb, "pencil");

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
    assert_rc(cstep(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
    assert_rc(cstep(c, r->sfirst, strlen(r->sfirst), &out),
              PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
    pst_buf_clear(&rb);
}

/* A wrong password: the client's proof differs from the RFC's. */
static void
test_client_wrong_password(void **state)
{
    const struct rfc_vector *r = &rfc[0];
    struct test_rand tr;
    struct pst_buf rb, out;
    struct pst_sasl_client *c = rfc_client(r, &tr, &rb, "pencil2");

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(cstep(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, r->cfirst);
    assert_rc(cstep(c, r->sfirst, strlen(r->sfirst), &out),
              PST_SASL_CONTINUE);
    assert_int_equal(out.len, strlen(r->cfinal));
    assert_true(memcmp(out.data, r->cfinal, out.len) != 0);
    /* And the RFC server signature is not the one for this password. */
    assert_rc(cstep(c, r->sfinal, strlen(r->sfinal), &out), PST_EFORGED);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
    pst_buf_clear(&rb);
}

static void
test_client_misuse(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .random = test_random_fail,
    };
    struct pst_sasl_client *c;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    /* The random source fails: no nonce. */
    assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-1"), &cfg, &c), 0);
    assert_rc(cstep(c, NULL, 0, &out), PST_ETEMP);
    assert_int_equal(out.len, 0);
    pst_sasl_client_free(c);

    /* A client-first mechanism: a non-empty first challenge is wrong. */
    cfg.random = NULL;
    assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-1"), &cfg, &c), 0);
    assert_rc(cstep(c, MSG("r=abc,s=QSXCR+Q6sek8bf92,i=4096"), &out),
              PST_EPROTO);
    pst_sasl_client_free(c);

    /* No challenge where one is due. */
    assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-1"), &cfg, &c), 0);
    assert_rc(cstep(c, NULL, 0, &out), PST_SASL_CONTINUE);
    /* A random nonce: base64 of 18 bytes. */
    assert_int_equal(out.len, strlen("n,,n=user,r=") + 24);
    assert_rc(pst__scram_client_set_nonce(c, "abc"), PST_ESTATE);
    assert_rc(cstep(c, NULL, 0, &out), PST_ESTATE);
    pst_sasl_client_free(c);

    /* The nonce hook: SCRAM only, printable. */
    assert_rc(pst_sasl_client_new(mech("PLAIN"), &cfg, &c), 0);
    assert_rc(pst__scram_client_set_nonce(c, "abc"), PST_EINVAL);
    pst_sasl_client_free(c);
    assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-1"), &cfg, &c), 0);
    assert_rc(pst__scram_client_set_nonce(c, "a,c"), PST_EINVAL);
    assert_rc(pst__scram_client_set_nonce(c, "\xc3\xa9"), PST_EINVAL);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
}

/* The mechanism table entries. */
static void
test_mech_entries(void **state)
{
    static const char *const names[] = {"SCRAM-SHA-1", "SCRAM-SHA-256"};

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(names); i++) {
        const struct pst_sasl_mech *m = mech(names[i]);

        assert_string_equal(pst_sasl_mech_name(m), names[i]);
        assert_int_equal(pst_sasl_mech_flags(m),
                         PST_MECH_CLIENT_FIRST | PST_MECH_SERVER_PROOF);
    }
    assert_ptr_equal(mech("scram-sha-256"), mech("SCRAM-SHA-256"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_rfc_vectors),
        cmocka_unit_test(test_server_rfc_vectors),
        cmocka_unit_test(test_server_no_initial_response),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_unknown_user),
        cmocka_unit_test(test_server_unknown_user),
        cmocka_unit_test(test_server_no_usable_verifier),
        cmocka_unit_test(test_server_secret_salts),
        cmocka_unit_test(test_server_cred_prepare),
        cmocka_unit_test(test_server_cred_prepare_fails),
        cmocka_unit_test(test_server_client_first_malformed),
        cmocka_unit_test(test_server_client_first_limits),
        cmocka_unit_test(test_server_client_final_malformed),
        cmocka_unit_test(test_server_after_final),
        cmocka_unit_test(test_server_misuse),
        cmocka_unit_test(test_client_first_forms),
        cmocka_unit_test(test_client_server_first_bad),
        cmocka_unit_test(test_client_server_final_bad),
        cmocka_unit_test(test_client_finish_without_proof),
        cmocka_unit_test(test_client_wrong_password),
        cmocka_unit_test(test_client_misuse),
        cmocka_unit_test(test_mech_entries),
    };
    return cmocka_run_group_tests_name("scram", tests, NULL, NULL);
}
