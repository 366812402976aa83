/*
 * Stored credentials: every scheme against published vectors (RFC 2195,
 * RFC 2831, RFC 5802, RFC 7677) and hashes made by Dovecot's `doveadm pw`
 * (data made without this module), round trips, wrong passwords, and
 * truncated or corrupted stored values.
 */
#include "testutil.h"

/* RFC 2195 §2. */
#define CRAM_PW        "tanstaaftanstaaf"
#define CRAM_CHALLENGE "<1896.697170952@postoffice.reston.mci.net>"
#define CRAM_DIGEST    "b913a602c7eda7a495b4e6e7334d3890"
/* `doveadm pw -s CRAM-MD5 -p tanstaaftanstaaf` (INTEROP.md). */
#define CRAM_STORED \
    "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"

/* RFC 2831 §4: chris, elwood.innosoft.com, secret; H(A1's first part). */
#define DIGEST_STORED "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7"
#define DIGEST_HA1    "eb5a750053e4d2c34aa84bbc9b0b6ee7"

/* RFC 5802 §5 (user, pencil); keys as Dovecot/gsasl store them. */
#define SCRAM1_SALT "QSXCR+Q6sek8bf92"
#define SCRAM1_STORED                                                        \
    "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"       \
    "D+CSWLOshSulAsxiupA+qs2/fTE="
#define SCRAM1_SK  "6dlGYMOdZcOPutkcNY8U2g7vK9Y="
#define SCRAM1_SVK "D+CSWLOshSulAsxiupA+qs2/fTE="

/* RFC 7677 §3 (user, pencil). */
#define SCRAM256_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define SCRAM256_SK   "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define SCRAM256_SVK  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define SCRAM256_STORED                                                      \
    "{SCRAM-SHA-256}4096," SCRAM256_SALT "," SCRAM256_SK "," SCRAM256_SVK

static void
hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(hex), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;

        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static struct pst_cred *
parse_ok(const char *text)
{
    struct pst_cred *c = NULL;
    const char *why = NULL;
    int rc = pst_cred_parse_reason(text, strlen(text), &c, &why);

    if (rc != 0)
        fprintf(stderr, "parse \"%s\": %s\n", text, why ? why : "?");
    assert_rc(rc, 0);
    assert_non_null(c);
    return c;
}

static int
verify(const struct pst_cred *c, const char *user, const char *pw)
{
    return pst_cred_verify(c, user, (const uint8_t *)pw, strlen(pw));
}

/* Make a verifier into a fresh C string (free()), asserting rc. */
static char *
make(const char *scheme, const char *user, const char *realm,
     const char *pw, unsigned rounds, pst_random_fn rnd, void *ctx,
     int want_rc)
{
    struct pst_buf out;

    pst_buf_init(&out, 4096, 1);
    assert_rc(pst_cred_make(scheme, user, realm, (const uint8_t *)pw,
                            strlen(pw), rounds, rnd, ctx, &out),
              want_rc);
    if (want_rc != 0) {
        assert_int_equal(out.len, 0);
        pst_buf_clear(&out);
        return NULL;
    }
    assert_int_equal(pst_buf_append(&out, "", 0), 0);
    return (char *)out.data;
}

/* CRAM-MD5: the RFC 2195 digest from Dovecot's stored context and from
 * {PLAIN}, and pst_cred_make() reproducing Dovecot's stored form. */
static void
test_cram_md5_vector(void **state)
{
    static const char *const creds[] = {
        CRAM_STORED,
        "{PLAIN}" CRAM_PW,
        "{HMAC-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e"
        "7015116b",
        "{cram-md5}D06D4E1B26FCCAA4B0B61801132340A354B21152711FB604CA3E035E"
        "7015116B",
        "{CRAM-MD5.hex}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e"
        "035e7015116b",
        /* The same 32 bytes in base64, with and without the suffix
         * (Dovecot tries base64 when hex does not decode). */
        "{CRAM-MD5.b64}0G1OGyb8yqSwthgBEyNAo1SyEVJxH7YEyj4DXnAVEWs=",
        "{CRAM-MD5}0G1OGyb8yqSwthgBEyNAo1SyEVJxH7YEyj4DXnAVEWs=",
    };
    uint8_t want[16], got[16];
    char *s;

    (void)state;
    hex_to_bytes(CRAM_DIGEST, want, sizeof(want));
    for (size_t i = 0; i < sizeof(creds) / sizeof(creds[0]); i++) {
        struct pst_cred *c = parse_ok(creds[i]);

        memset(got, 0, sizeof(got));
        assert_rc(pst_cred_cram_md5(c, (const uint8_t *)CRAM_CHALLENGE,
                                    strlen(CRAM_CHALLENGE), got),
                  0);
        assert_bytes_equal(got, sizeof(got), want, sizeof(want));
        assert_true(pst_cred_has(c, i == 1 ? PST_SCHEME_PLAIN
                                           : PST_SCHEME_CRAM_MD5));
        /* PLAIN/LOGIN against the context: derive it and compare. */
        assert_rc(verify(c, "tim", CRAM_PW), 0);
        assert_rc(verify(c, "tim", "tanstaaftanstaag"), PST_EAUTH);
        assert_rc(verify(c, "tim", ""), PST_EAUTH);
        pst_cred_free(c);
    }
    s = make("CRAM-MD5", NULL, NULL, CRAM_PW, 0, NULL, NULL, 0);
    assert_string_equal(s, CRAM_STORED);
    free(s);
    s = make("HMAC-MD5", NULL, NULL, CRAM_PW, 0, NULL, NULL, 0);
    assert_string_equal(s, "{HMAC-MD5}d06d4e1b26fccaa4b0b61801132340a354b2"
                           "1152711fb604ca3e035e7015116b");
    free(s);
    s = make("cram-md5.b64", NULL, NULL, CRAM_PW, 0, NULL, NULL, 0);
    assert_string_equal(s, "{CRAM-MD5.b64}0G1OGyb8yqSwthgBEyNAo1SyEVJxH7YE"
                           "yj4DXnAVEWs=");
    free(s);
}

/* A key longer than the 64-byte block is hashed first (RFC 2104 §2):
 * the stored context must finish to the same HMAC as {PLAIN}. */
static void
test_cram_md5_long_key(void **state)
{
    char pw[200];
    uint8_t a[16], b[16];
    struct pst_cred *c1, *c2;
    char *s, *plain;

    (void)state;
    for (size_t len = 60; len < sizeof(pw); len += 7) {
        for (size_t i = 0; i < len; i++)
            pw[i] = (char)('a' + (i * 7) % 26);
        pw[len] = '\0';
        s = make("CRAM-MD5", NULL, NULL, pw, 0, NULL, NULL, 0);
        plain = make("PLAIN", NULL, NULL, pw, 0, NULL, NULL, 0);
        c1 = parse_ok(s);
        c2 = parse_ok(plain);
        assert_rc(pst_cred_cram_md5(c1, (const uint8_t *)CRAM_CHALLENGE,
                                    strlen(CRAM_CHALLENGE), a),
                  0);
        assert_rc(pst_cred_cram_md5(c2, (const uint8_t *)CRAM_CHALLENGE,
                                    strlen(CRAM_CHALLENGE), b),
                  0);
        assert_bytes_equal(a, 16, b, 16);
        assert_rc(verify(c1, NULL, pw), 0);
        pst_cred_free(c1);
        pst_cred_free(c2);
        free(s);
        free(plain);
    }
}

/* DIGEST-MD5: H(chris:elwood.innosoft.com:secret) (RFC 2831 §4), realm
 * from user@realm as Dovecot takes it. */
static void
test_digest_md5_vector(void **state)
{
    uint8_t want[16], got[16];
    struct pst_cred *c;
    char *s;

    (void)state;
    hex_to_bytes(DIGEST_HA1, want, sizeof(want));

    c = parse_ok(DIGEST_STORED);
    assert_true(pst_cred_has(c, PST_SCHEME_DIGEST_MD5));
    assert_rc(pst_cred_digest_md5(c, "chris", "elwood.innosoft.com", got), 0);
    assert_bytes_equal(got, 16, want, 16);
    assert_rc(verify(c, "chris@elwood.innosoft.com", "secret"), 0);
    assert_rc(verify(c, "chris@elwood.innosoft.com", "secreT"), PST_EAUTH);
    /* Another realm, no realm, no user: no match. */
    assert_rc(verify(c, "chris@example.test", "secret"), PST_EAUTH);
    assert_rc(verify(c, "chris", "secret"), PST_EAUTH);
    assert_rc(verify(c, NULL, "secret"), PST_EAUTH);
    /* DIGEST-MD5 serves no other mechanism. */
    assert_rc(pst_cred_cram_md5(c, (const uint8_t *)"x", 1, got), PST_EAUTH);
    pst_cred_free(c);

    c = parse_ok("{PLAIN}secret");
    memset(got, 0, sizeof(got));
    assert_rc(pst_cred_digest_md5(c, "chris", "elwood.innosoft.com", got), 0);
    assert_bytes_equal(got, 16, want, 16);
    pst_cred_free(c);

    s = make("DIGEST-MD5", "chris", "elwood.innosoft.com", "secret", 0, NULL,
             NULL, 0);
    assert_string_equal(s, DIGEST_STORED);
    free(s);
    s = make("DIGEST-MD5", "chris@elwood.innosoft.com", NULL, "secret", 0,
             NULL, NULL, 0);
    assert_string_equal(s, DIGEST_STORED);
    free(s);
    /* `doveadm pw -s DIGEST-MD5 -u chris -p secret`: empty realm. */
    s = make("DIGEST-MD5", "chris", NULL, "secret", 0, NULL, NULL, 0);
    assert_string_equal(s, "{DIGEST-MD5}24eb07b326d14dafb194f1fe58bb6806");
    free(s);
    /* user@domain@realm keeps user@domain. */
    s = make("DIGEST-MD5", "chris@a.test@elwood.innosoft.com", NULL, "secret",
             0, NULL, NULL, 0);
    c = parse_ok(s);
    assert_rc(verify(c, "chris@a.test@elwood.innosoft.com", "secret"), 0);
    assert_rc(pst_cred_digest_md5(c, "chris@a.test", "elwood.innosoft.com",
                                  got),
              0);
    pst_cred_free(c);
    free(s);
    assert_null(make("DIGEST-MD5", NULL, NULL, "secret", 0, NULL, NULL,
                     PST_EINVAL));
}

/* RFC 2831 §2.1.2.1: a password whose characters all fit ISO 8859-1 is
 * hashed in it.  Dovecot hashes UTF-8 (`doveadm pw -s DIGEST-MD5 -u
 * chris@elwood.innosoft.com -p pässwörd`); both verify a password. */
static void
test_digest_md5_latin1(void **state)
{
    static const char pw[] = "p\xc3\xa4ssw\xc3\xb6rd"; /* UTF-8 */
    static const char dovecot[] =
        "{DIGEST-MD5}167e5fd00ef419b2404f9b626301f8b9";
    uint8_t want[16], got[16];
    struct pst_cred *c;
    char *s;

    (void)state;
    /* MD5("chris:elwood.innosoft.com:p\xe4ssw\xf6rd"), md5sum(1). */
    hex_to_bytes("ff87b71fd6c3cabc1b06c8c8419ab896", want, 16);
    c = parse_ok("{PLAIN}p\xc3\xa4ssw\xc3\xb6rd");
    assert_rc(pst_cred_digest_md5(c, "chris", "elwood.innosoft.com", got), 0);
    assert_bytes_equal(got, 16, want, 16);
    pst_cred_free(c);
    s = make("DIGEST-MD5", "chris@elwood.innosoft.com", NULL, pw, 0, NULL,
             NULL, 0);
    assert_string_equal(s, "{DIGEST-MD5}ff87b71fd6c3cabc1b06c8c8419ab896");
    c = parse_ok(s);
    assert_rc(verify(c, "chris@elwood.innosoft.com", pw), 0);
    assert_rc(verify(c, "chris@elwood.innosoft.com", "p\xe4ssw\xf6rd"), 0);
    assert_rc(verify(c, "chris@elwood.innosoft.com", "passwort"), PST_EAUTH);
    pst_cred_free(c);
    free(s);
    c = parse_ok(dovecot);
    assert_rc(verify(c, "chris@elwood.innosoft.com", pw), 0);
    assert_rc(verify(c, "chris@elwood.innosoft.com", "passwort"), PST_EAUTH);
    pst_cred_free(c);
    /* Not ISO 8859-1 (U+20AC): UTF-8 for everyone, Dovecot's value. */
    s = make("DIGEST-MD5", "chris@elwood.innosoft.com", NULL,
             "p\xe2\x82\xacss", 0, NULL, NULL, 0);
    assert_string_equal(s, "{DIGEST-MD5}b5da125c352615c492108f0baf3740b0");
    free(s);
}

struct scram_vector {
    enum pst_scram_hash h;
    const char *scheme, *stored, *salt, *sk, *svk;
};

static const struct scram_vector scram_vectors[] = {
    {PST_SCRAM_SHA1, "SCRAM-SHA-1", SCRAM1_STORED, SCRAM1_SALT, SCRAM1_SK,
     SCRAM1_SVK},
    {PST_SCRAM_SHA256, "SCRAM-SHA-256", SCRAM256_STORED, SCRAM256_SALT,
     SCRAM256_SK, SCRAM256_SVK},
};

/* SCRAM: the stored keys of RFC 5802 §5 and RFC 7677 §3, from the stored
 * form, from {PLAIN} with the RFC salt, and made by pst_cred_make(). */
static void
test_scram_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        const struct scram_vector *v = &scram_vectors[i];
        struct pst_buf salt, sk, svk;
        struct pst_scram_keys k;
        struct test_rand r;
        struct pst_cred *c;
        char *s;

        test_b64dec(v->salt, &salt);
        test_b64dec(v->sk, &sk);
        test_b64dec(v->svk, &svk);

        c = parse_ok(v->stored);
        assert_true(pst_cred_has(c, i == 0 ? PST_SCHEME_SCRAM_SHA1
                                           : PST_SCHEME_SCRAM_SHA256));
        assert_rc(pst_cred_scram(c, v->h, test_random_fail, NULL, 0, &k), 0);
        assert_int_equal(k.iterations, 4096);
        assert_bytes_equal(k.salt, k.salt_len, salt.data, salt.len);
        assert_bytes_equal(k.stored_key, k.key_len, sk.data, sk.len);
        assert_bytes_equal(k.server_key, k.key_len, svk.data, svk.len);
        /* The other hash is not served by this verifier. */
        assert_rc(pst_cred_scram(c, v->h == PST_SCRAM_SHA1 ? PST_SCRAM_SHA256
                                                           : PST_SCRAM_SHA1,
                                 NULL, NULL, 0, &k),
                  PST_EAUTH);
        assert_rc(verify(c, "user", "pencil"), 0);
        assert_rc(verify(c, "user", "pencil "), PST_EAUTH);
        assert_rc(verify(c, "user", "Pencil"), PST_EAUTH);
        pst_cred_free(c);

        /* From {PLAIN}, with the RFC salt injected: only RFC 7677's is
         * the 16 bytes we draw (RFC 5802's has 12). */
        c = parse_ok("{PLAIN}pencil");
        if (salt.len == PST_CRED_SCRAM_SALT_LEN) {
            r = (struct test_rand){.bytes = salt.data, .len = salt.len};
            assert_rc(pst_cred_scram(c, v->h, test_random, &r, 4096, &k), 0);
            assert_bytes_equal(k.stored_key, k.key_len, sk.data, sk.len);
            assert_bytes_equal(k.server_key, k.key_len, svk.data, svk.len);
            /* pst_cred_make() with the RFC salt prints the stored form. */
            r = (struct test_rand){.bytes = salt.data, .len = salt.len};
            s = make(v->scheme, "user", NULL, "pencil", 0, test_random, &r, 0);
            assert_string_equal(s, v->stored);
            free(s);
        }
        assert_rc(pst_cred_scram(c, v->h, NULL, NULL, 0, &k), 0);
        assert_int_equal(k.iterations, 4096);
        assert_int_equal(k.salt_len, PST_CRED_SCRAM_SALT_LEN);
        assert_rc(pst_cred_scram(c, v->h, test_random_fail, NULL, 0, &k),
                  PST_ETEMP);
        pst_cred_free(c);
        pst_buf_clear(&salt);
        pst_buf_clear(&sk);
        pst_buf_clear(&svk);
    }
}

/* SCRAM passwords are SASLprep'd (RFC 5802 §2.2): U+00A0 maps to a space
 * (RFC 4013 §2.1) and U+00AD to nothing. */
static void
test_scram_saslprep(void **state)
{
    struct pst_cred *c;
    char *s;

    (void)state;
    s = make("SCRAM-SHA-256", NULL, NULL, "pen\xc2\xa0" "cil", 0, NULL, NULL,
             0);
    c = parse_ok(s);
    assert_rc(verify(c, "u", "pen cil"), 0);
    assert_rc(verify(c, "u", "pen\xc2\xa0" "cil"), 0);
    assert_rc(verify(c, "u", "pencil"), PST_EAUTH);
    pst_cred_free(c);
    free(s);
    s = make("SCRAM-SHA-1", NULL, NULL, "pen\xc2\xad" "cil", 0, NULL, NULL, 0);
    c = parse_ok(s);
    assert_rc(verify(c, "u", "pencil"), 0);
    pst_cred_free(c);
    free(s);
    /* Dovecot does not SASLprep: `doveadm pw -s SCRAM-SHA-256 -p
     * $'pen\tcil'` (SASLprep refuses the tab) and `-s SCRAM-SHA-1 -p
     * $'pen\u00a0cil'` (SASLprep makes it "pen cil") verify with the
     * password as it is. */
    c = parse_ok("{SCRAM-SHA-256}4096,leLMBxWDmIHsceVUYzWb9Q==,d14IdSI2VrRW3K"
                 "9OBDWJ+wQdt5o1giLE4kbtsqXfvPU=,Y+hwXEo2ucur53cyyb6cMNrL1wnf"
                 "qNcdhHS4X66fJBY=");
    assert_rc(verify(c, "u", "pen\tcil"), 0);
    assert_rc(verify(c, "u", "pen cil"), PST_EAUTH);
    pst_cred_free(c);
    c = parse_ok("{SCRAM-SHA-1}4096,rR1Qx4nhfSun2USRz51fGw==,s0eCNa5aIu8pT7WQ"
                 "A8bLA6MRzSU=,UJqQ7sMofld0Awp/YDiu6nOscuI=");
    assert_rc(verify(c, "u", "pen\xc2\xa0" "cil"), 0);
    assert_rc(verify(c, "u", "pen cil"), PST_EAUTH);
    pst_cred_free(c);
    /* A password SASLprep refuses cannot be made for SCRAM. */
    assert_null(make("SCRAM-SHA-256", NULL, NULL, "pen\x01" "cil", 0, NULL,
                     NULL, PST_EPREP));
    assert_null(make("SCRAM-SHA-256", NULL, NULL, "\xff", 0, NULL, NULL,
                     PST_EPREP));
}

/* crypt(3) hashes made by `doveadm pw` (Dovecot 2.3.19) and by Python's
 * crypt module, password tanstaaftanstaaf. */
static void
test_crypt_vectors(void **state)
{
    static const char *const v[] = {
        "{SHA512-CRYPT}$6$dEa/PaeaEaTRSXnR$EPJ3ydX.HlXcVc8ZGwj/M5vpKiDqv660/"
        "4K10wjEIrMZIXY32v4f7Qg1r8JcqIYwybyxDXVRjEgGLjAPJLstL0",
        "{SHA256-CRYPT}$5$l.FcXBu6FYhtHnix$DRxfTqU4V51b/gPUkICa4WOwFfiavaYkSO"
        "9qpoYYEQ6",
        "{BLF-CRYPT}$2y$05$FYMqlZhk7w84ku3cW61omeez7D774k1KqmwGWXTX6WgsAsp0uR"
        "veG",
        "{MD5-CRYPT}$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0",
        "{DES-CRYPT}uonAf.eN02G/6",
        "{CRYPT}$2y$05$jM2fCquqmaURLCgZhvVxq.S6YE7OcH996n2cWhu70M/BIZPcBrv0u",
        /* No {SCHEME}: CRYPT, as Dovecot's passwd-file. */
        "$y$j9T$abcdefghijklmnop$3nEcIA45CWDjopp.mYomgAP0g.OEzcJK7/rUDFCD0g2",
        "ab/TdqTfG5VbQ",
        /* {SCHEME.b64}: the crypt string in base64. */
        "{SHA256-CRYPT.b64}JDUkbC5GY1hCdTZGWWh0SG5peCREUnhmVHFVNFY1MWIvZ1BVa0"
        "lDYTRXT3dGZmlhdmFZa1NPOXFwb1lZRVE2",
    };
    uint8_t d[16];

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_cred *c = parse_ok(v[i]);
        struct pst_scram_keys k;

        assert_true(pst_cred_has(c, PST_SCHEME_CRYPT));
        assert_false(pst_cred_has(c, PST_SCHEME_PLAIN));
        assert_rc(verify(c, "tim", CRAM_PW), 0);
        /* (DES-CRYPT sees only the first 8 characters.) */
        assert_rc(verify(c, "tim", "Tanstaaftanstaaf"), PST_EAUTH);
        assert_rc(verify(c, "tim", "tanstaaf"), i == 4 || i == 7 ? 0
                                                                 : PST_EAUTH);
        /* A NUL would cut the password short for crypt(3). */
        assert_rc(pst_cred_verify(c, "tim", (const uint8_t *)CRAM_PW "\0x",
                                  strlen(CRAM_PW) + 2),
                  PST_EAUTH);
        /* crypt hashes serve no challenge mechanism. */
        assert_rc(pst_cred_cram_md5(c, (const uint8_t *)"x", 1, d),
                  PST_EAUTH);
        assert_rc(pst_cred_digest_md5(c, "tim", "r", d), PST_EAUTH);
        assert_rc(pst_cred_scram(c, PST_SCRAM_SHA256, NULL, NULL, 0, &k),
                  PST_EAUTH);
        pst_cred_free(c);
    }
}

/* {PLAIN} and its aliases and encodings. */
static void
test_plain(void **state)
{
    static const struct {
        const char *text, *pw;
    } v[] = {
        {"{PLAIN}pencil", "pencil"},
        {"{CLEAR}pencil", "pencil"},
        {"{CLEARTEXT}pencil", "pencil"},
        {"{plain}pencil", "pencil"},
        {"{PLAIN.b64}cGVuIGNpbA==", "pen cil"},   /* doveadm PLAIN.b64 */
        {"{PLAIN.BASE64}cGVuIGNpbA==", "pen cil"},
        {"{PLAIN.hex}70656e3a63696c", "pen:cil"},
        {"{PLAIN}", ""},
        {"{PLAIN}{PLAIN}x", "{PLAIN}x"},
        {"{PLAIN}p\xc3\xa9" "ncil", "p\xc3\xa9" "ncil"},
        /* Dovecot's files hold {PLAIN} passwords with spaces. */
        {"{PLAIN}pen cil", "pen cil"},
        {"{PLAIN}pen ", "pen "},
        {"{PLAIN} pen  cil ", " pen  cil "},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_cred *c = parse_ok(v[i].text);

        assert_true(pst_cred_has(c, PST_SCHEME_PLAIN));
        assert_false(pst_cred_has(c, PST_SCHEME_CRAM_MD5));
        assert_rc(verify(c, "u", v[i].pw), 0);
        assert_rc(verify(c, "u", "pencil!"), PST_EAUTH);
        pst_cred_free(c);
    }
}

/* pst_cred_make() for {PLAIN}: as it is, or base64 when the file could not
 * hold it. */
static void
test_make_plain(void **state)
{
    static const struct {
        const char *scheme, *pw, *want;
    } v[] = {
        {"PLAIN", "pencil", "{PLAIN}pencil"},
        {"CLEARTEXT", "pencil", "{CLEARTEXT}pencil"},
        {"PLAIN", "pen cil", "{PLAIN.b64}cGVuIGNpbA=="},
        {"PLAIN", "pen:cil", "{PLAIN.b64}cGVuOmNpbA=="},
        {"PLAIN", "p\xc3\xa9", "{PLAIN}p\xc3\xa9"},
        {"PLAIN", "p\xe9", "{PLAIN.b64}cOk="},
        {"PLAIN.hex", "pen:cil", "{PLAIN.hex}70656e3a63696c"},
        {"PLAIN.b64", "pencil", "{PLAIN.b64}cGVuY2ls"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *s = make(v[i].scheme, NULL, NULL, v[i].pw, 0, NULL, NULL, 0);
        struct pst_cred *c;

        assert_string_equal(s, v[i].want);
        c = parse_ok(s);
        assert_rc(verify(c, "u", v[i].pw), 0);
        pst_cred_free(c);
        free(s);
    }
}

#define RT_PW "pass word\xc3\xa9"

/* Every makeable scheme: make, parse, verify; a wrong password fails; two
 * makes differ where the scheme is salted. */
static void
test_roundtrip(void **state)
{
    static const struct {
        const char *scheme;
        unsigned rounds;
        const char *prefix; /* the made value starts with this */
        int salted;
    } v[] = {
        {"PLAIN", 0, "{PLAIN}", 0},
        {"CRAM-MD5", 0, "{CRAM-MD5}", 0},
        {"DIGEST-MD5", 0, "{DIGEST-MD5}", 0},
        {"SCRAM-SHA-1", 0, "{SCRAM-SHA-1}4096,", 1},
        {"SCRAM-SHA-256", 0, "{SCRAM-SHA-256}4096,", 1},
        {"SCRAM-SHA-256", 5000, "{SCRAM-SHA-256}5000,", 1},
        {"SHA512-CRYPT", 0, "{SHA512-CRYPT}$6$", 1},
        {"SHA512-CRYPT", 1000, "{SHA512-CRYPT}$6$rounds=1000$", 1},
        {"SHA256-CRYPT", 0, "{SHA256-CRYPT}$5$", 1},
        {"BLF-CRYPT", 4, "{BLF-CRYPT}$2y$04$", 1},
        {"MD5-CRYPT", 0, "{MD5-CRYPT}$1$", 1},
        {"CRYPT", 0, "{CRYPT}$", 1},
        {"SHA512-CRYPT.b64", 0, "{SHA512-CRYPT.b64}JDYk", 1},
        {"SCRAM-SHA-1.hex", 0, "{SCRAM-SHA-1.hex}343039362c", 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *a = make(v[i].scheme, "tim@example.test", NULL, RT_PW,
                       v[i].rounds, NULL, NULL, 0);
        char *b = make(v[i].scheme, "tim@example.test", NULL, RT_PW,
                       v[i].rounds, NULL, NULL, 0);
        struct pst_cred *c;

        if (strncmp(a, v[i].prefix, strlen(v[i].prefix)) != 0 &&
            strncmp(v[i].scheme, "PLAIN", 5) != 0)
            fail_msg("%s: got \"%s\", want prefix \"%s\"", v[i].scheme, a,
                     v[i].prefix);
        if (v[i].salted)
            assert_string_not_equal(a, b);
        else
            assert_string_equal(a, b);
        c = parse_ok(a);
        assert_rc(verify(c, "tim@example.test", RT_PW), 0);
        assert_rc(verify(c, "tim@example.test", "pass word\xc3\xa8"),
                  PST_EAUTH);
        assert_rc(verify(c, "tim@example.test", ""), PST_EAUTH);
        pst_cred_free(c);
        free(a);
        free(b);
    }
}

/* pst_cred_make() refusals leave out untouched. */
static void
test_make_errors(void **state)
{
    static const struct {
        const char *scheme;
        const char *user;
        unsigned rounds;
        int want;
    } v[] = {
        {"NOPE", NULL, 0, PST_ENOTSUP},
        {"PLAIN.b65", NULL, 0, PST_ENOTSUP},
        {"SCRAM-SHA-512", NULL, 0, PST_ENOTSUP},
        {"", NULL, 0, PST_ENOTSUP},
        {"DIGEST-MD5", NULL, 0, PST_EINVAL},
        {"SCRAM-SHA-1", NULL, 4095, PST_EWEAK},
        {"SCRAM-SHA-256", NULL, 1, PST_EWEAK},
        {"SCRAM-SHA-256", NULL, 10000001, PST_EINVAL},
        {"DES-CRYPT", NULL, 0, PST_EWEAK},
        {"BLF-CRYPT", NULL, 3, PST_EINVAL},
        {"BLF-CRYPT", NULL, 32, PST_EINVAL},
        {"SHA512-CRYPT", NULL, 999, PST_EINVAL},
    };
    struct test_rand r = {.bytes = (const uint8_t *)"0123456789abcdef",
                          .len = 8};
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, 4096, 1);
    assert_int_equal(pst_buf_append_str(&out, "kept"), 0);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_rc(pst_cred_make(v[i].scheme, v[i].user, NULL,
                                (const uint8_t *)"pencil", 6, v[i].rounds,
                                NULL, NULL, &out),
                  v[i].want);
        assert_buf_str(&out, "kept");
    }
    /* The random source fails: salted schemes fail with it. */
    assert_rc(pst_cred_make("SCRAM-SHA-256", NULL, NULL,
                            (const uint8_t *)"pencil", 6, 0, test_random_fail,
                            NULL, &out),
              PST_ETEMP);
    assert_rc(pst_cred_make("SHA512-CRYPT", NULL, NULL,
                            (const uint8_t *)"pencil", 6, 0, test_random, &r,
                            &out),
              PST_ETEMP);
    /* A NUL cannot go through crypt(3). */
    assert_rc(pst_cred_make("SHA512-CRYPT", NULL, NULL,
                            (const uint8_t *)"pen\0cil", 7, 0, NULL, NULL,
                            &out),
              PST_EINVAL);
    /* Past the buffer's ceiling. */
    {
        struct pst_buf small;

        pst_buf_init(&small, 20, 0);
        assert_rc(pst_cred_make("CRAM-MD5", NULL, NULL,
                                (const uint8_t *)"pencil", 6, 0, NULL, NULL,
                                &small),
                  PST_ELIMIT);
        assert_int_equal(small.len, 0);
        pst_buf_clear(&small);
    }
    assert_buf_str(&out, "kept");
    pst_buf_clear(&out);
}

/* Several verifiers on one user: each mechanism finds its own. */
static void
test_multiple_verifiers(void **state)
{
    uint8_t want[16], got[16];
    struct pst_scram_keys k;
    struct pst_cred *c;

    (void)state;
    c = parse_ok(SCRAM256_STORED " " CRAM_STORED " " SCRAM1_STORED);
    assert_true(pst_cred_has(c, PST_SCHEME_SCRAM_SHA256));
    assert_true(pst_cred_has(c, PST_SCHEME_SCRAM_SHA1));
    assert_true(pst_cred_has(c, PST_SCHEME_CRAM_MD5));
    assert_false(pst_cred_has(c, PST_SCHEME_PLAIN));
    assert_false(pst_cred_has(c, PST_SCHEME_DIGEST_MD5));
    hex_to_bytes(CRAM_DIGEST, want, 16);
    assert_rc(pst_cred_cram_md5(c, (const uint8_t *)CRAM_CHALLENGE,
                                strlen(CRAM_CHALLENGE), got),
              0);
    assert_bytes_equal(got, 16, want, 16);
    assert_rc(pst_cred_scram(c, PST_SCRAM_SHA1, NULL, NULL, 0, &k), 0);
    assert_int_equal(k.key_len, 20);
    assert_rc(pst_cred_scram(c, PST_SCRAM_SHA256, NULL, NULL, 0, &k), 0);
    assert_int_equal(k.key_len, 32);
    assert_rc(pst_cred_digest_md5(c, "tim", "r", got), PST_EAUTH);
    /* Either password matches one of them. */
    assert_rc(verify(c, "tim", "pencil"), 0);
    assert_rc(verify(c, "tim", CRAM_PW), 0);
    assert_rc(verify(c, "tim", "neither"), PST_EAUTH);
    pst_cred_free(c);

    /* Eight is the most one user carries. */
    c = parse_ok("{PLAIN}1 {PLAIN}2 {PLAIN}3 {PLAIN}4 {PLAIN}5 {PLAIN}6 "
                 "{PLAIN}7 {PLAIN}8");
    assert_rc(verify(c, "u", "8"), 0);
    pst_cred_free(c);
}

/* An unknown user (NULL) fails everything, doing the work anyway. */
static void
test_null_cred(void **state)
{
    uint8_t d[16];
    struct pst_scram_keys k;

    (void)state;
    assert_rc(verify(NULL, "tim", "pencil"), PST_EAUTH);
    assert_rc(verify(NULL, NULL, ""), PST_EAUTH);
    assert_rc(pst_cred_cram_md5(NULL, (const uint8_t *)"x", 1, d), PST_EAUTH);
    assert_rc(pst_cred_digest_md5(NULL, "u", "r", d), PST_EAUTH);
    assert_rc(pst_cred_scram(NULL, PST_SCRAM_SHA1, NULL, NULL, 0, &k),
              PST_EAUTH);
    assert_false(pst_cred_has(NULL, PST_SCHEME_PLAIN));
    pst_cred_free(NULL);
}

/* Malformed stored values: refused with PST_ESYNTAX and a reason. */
static void
test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        " {PLAIN}a",
        "{PLAIN}a {",
        "{PLAIN}a {PLAIN}b {CRAM-MD5}x",
        "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e"
        "7015116b {PLAIN.b64}cGVu Y2ls",
        "{SHA256-CRYPT}$5$l.FcXBu6FYhtHnix$DRxfTqU4V51b/gPUkICa4WOwFfiavaYk "
        "SO9qpoYYEQ6",
        "$6$dEa/PaeaEaTRSXnR$EPJ3ydX.HlXcVc8ZGwj/M5vpKiDqv660/4K10wjEIrMZIXY32v"
        "4f7Qg1r8JcqIYwybyxDXVRjEgGLjAPJLstL0 x",
        "{PLAIN}a\x01",
        "{PLAIN}a\x7f",
        "{PLAIN}a\tb",
        "{NOPE}x",
        "{PLAIN",
        "{}x",
        "{PLAIN.b65}x",
        "{PLAIN.}x",
        "{PLAIN.b64}cGVuY2ls=",
        "{PLAIN.b64}cGVuY2lsx",
        "{PLAIN.hex}7",
        "{PLAIN.hex}7g",
        "{PLAIN}1 {PLAIN}2 {PLAIN}3 {PLAIN}4 {PLAIN}5 {PLAIN}6 {PLAIN}7 "
        "{PLAIN}8 {PLAIN}9",
        /* CRAM-MD5: length, digits. */
        "{CRAM-MD5}",
        "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015"
        "116b00",
        "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015"
        "116",
        "{CRAM-MD5}g06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015"
        "116b",
        "{CRAM-MD5.b64}0G1OGyb8yqSwthgBEyNAo1SyEVJxH7YEyj4DXnAVEQ==",
        /* DIGEST-MD5. */
        "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee",
        "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7e",
        "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7eb",
        /* SCRAM: fields, iteration bounds, base64, key sizes. */
        "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=",
        "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=,",
        "{SCRAM-SHA-1}4095,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}0,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}04096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}-4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}10000001,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}99999999999,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9"
        "Y=,D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}4096,,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf9,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        /* A SHA-256 key under SHA-1, and the reverse. */
        "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92," SCRAM256_SK "," SCRAM256_SVK,
        "{SCRAM-SHA-256}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        /* Salt over 64 bytes. */
        "{SCRAM-SHA-1}4096,QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUF"
        "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
        "D+CSWLOshSulAsxiupA+qs2/fTE=",
        /* crypt(3): incomplete or unknown. */
        "{CRYPT}",
        "$6$dEa/PaeaEaTRSXnR$EPJ3ydX",
        "$6$dEa/PaeaEaTRSXnR",
        "$6$dEa/PaeaEaTRSXnR$",
        "$6$sa!t$EPJ3ydX.HlXcVc8ZGwj/M5vpKiDqv660/4K10wjEIrMZIXY32v4f7Qg1r8Jc"
        "qIYwybyxDXVRjEgGLjAPJLstL0",
        "$2y$03$FYMqlZhk7w84ku3cW61omeez7D774k1KqmwGWXTX6WgsAsp0uRveG",
        "$2y$32$FYMqlZhk7w84ku3cW61omeez7D774k1KqmwGWXTX6WgsAsp0uRveG",
        "$2q$05$FYMqlZhk7w84ku3cW61omeez7D774k1KqmwGWXTX6WgsAsp0uRveG",
        "$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM",
        "uonAf.eN02G/",
        "uonAf.eN02G/6x",
        "uonAf.eN02G!6",
        "!",
        "*",
        "x",
        "$",
        "$9$abc$def",
        "$y$j9T$abcdefghijklmnop$3nEcIA45CWDjopp.mYomgAP0g.OEzcJK7/rUDFCD0g",
    };
    struct pst_cred *c;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        int rc;

        c = (struct pst_cred *)1;
        rc = pst_cred_parse_reason(bad[i], strlen(bad[i]), &c, &why);
        if (rc != PST_ESYNTAX)
            fail_msg("\"%s\": got %s, want ESYNTAX", bad[i], pst_errname(rc));
        assert_null(c);
        assert_non_null(why);
        assert_rc(pst_cred_parse(bad[i], strlen(bad[i]), &c), PST_ESYNTAX);
    }
    /* A NUL inside the text. */
    assert_rc(pst_cred_parse("{PLAIN}a\0b", 10, &c), PST_ESYNTAX);
    assert_rc(pst_cred_parse("$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0\0", 35, &c),
              PST_ESYNTAX);
}

/* Every proper prefix of a fixed-form value is refused, and so is the
 * value with any one byte replaced by a character outside its alphabets;
 * none crashes (run under ASan). */
static void
test_truncated_and_corrupted(void **state)
{
    static const char *const v[] = {
        CRAM_STORED,
        DIGEST_STORED,
        SCRAM1_STORED,
        SCRAM256_STORED,
        "{SHA512-CRYPT}$6$dEa/PaeaEaTRSXnR$EPJ3ydX.HlXcVc8ZGwj/M5vpKiDqv660/"
        "4K10wjEIrMZIXY32v4f7Qg1r8JcqIYwybyxDXVRjEgGLjAPJLstL0",
        "{SHA256-CRYPT}$5$l.FcXBu6FYhtHnix$DRxfTqU4V51b/gPUkICa4WOwFfiavaYkSO"
        "9qpoYYEQ6",
        "{BLF-CRYPT}$2y$05$FYMqlZhk7w84ku3cW61omeez7D774k1KqmwGWXTX6WgsAsp0uR"
        "veG",
        "{MD5-CRYPT}$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0",
        "{DES-CRYPT}uonAf.eN02G/6",
    };
    static const char corrupt[] = {'!', '\x01', ' ', '\xff', '\0'};
    struct pst_cred *c;

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len = strlen(v[i]);
        char *copy = malloc(len);

        assert_non_null(copy);
        c = parse_ok(v[i]);
        pst_cred_free(c);
        for (size_t n = 0; n < len; n++) {
            /* Exactly n bytes, in their own allocation: ASan sees any
             * read past the end. */
            char *t = malloc(n + 1);

            assert_non_null(t);
            memcpy(t, v[i], n);
            if (pst_cred_parse(t, n, &c) != PST_ESYNTAX)
                fail_msg("prefix %zu of \"%s\" accepted", n, v[i]);
            free(t);
        }
        for (size_t at = 0; at < len; at++) {
            for (size_t k = 0; k < sizeof(corrupt); k++) {
                memcpy(copy, v[i], len);
                copy[at] = corrupt[k];
                if (pst_cred_parse(copy, len, &c) != PST_ESYNTAX)
                    fail_msg("\"%s\" with byte %zu = 0x%02x accepted", v[i],
                             at, (unsigned)(uint8_t)corrupt[k]);
            }
        }
        free(copy);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cram_md5_vector),
        cmocka_unit_test(test_cram_md5_long_key),
        cmocka_unit_test(test_digest_md5_vector),
        cmocka_unit_test(test_digest_md5_latin1),
        cmocka_unit_test(test_scram_vectors),
        cmocka_unit_test(test_scram_saslprep),
        cmocka_unit_test(test_crypt_vectors),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_make_plain),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_make_errors),
        cmocka_unit_test(test_multiple_verifiers),
        cmocka_unit_test(test_null_cred),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_truncated_and_corrupted),
    };
    return cmocka_run_group_tests_name("cred", tests, NULL, NULL);
}
