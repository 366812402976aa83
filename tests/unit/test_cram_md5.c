/* CRAM-MD5 (RFC 2195): RFC and device vectors, challenge, every error. */
#include "testutil.h"

#include "../../lib/sasl/mech.h" /* pst__cram_md5_parse */

static const struct pst_sasl_mech *cram;

/* RFC 2195 §2, copied from the RFC text. */
#define RFC2195_CHALLENGE "<1896.697170952@postoffice.reston.mci.net>"
#define RFC2195_CHALLENGE_B64                                                \
    "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
#define RFC2195_PASSWORD  "tanstaaftanstaaf"
#define RFC2195_RESPONSE  "tim b913a602c7eda7a495b4e6e7334d3890"
#define RFC2195_RESPONSE_B64 "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"

/* The random bytes and time that make our server send exactly the RFC
 * 2195 §2 challenge: 1896 = 0x0768. */
static const uint8_t rfc2195_random[8] = {0, 0, 0, 0, 0, 0, 0x07, 0x68};

static void
assert_str_b64(const uint8_t *p, size_t len, const char *b64)
{
    char *got = test_b64enc(p, len);

    if (strcmp(got, b64) != 0) {
        fprintf(stderr, "base64: got \"%s\", want \"%s\"\n", got, b64);
        free(got);
        fail();
    }
    free(got);
}

/* --- Client -------------------------------------------------------------- */

static void
test_client_rfc2195(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "tim",
        .password = (const uint8_t *)RFC2195_PASSWORD,
        .password_len = strlen(RFC2195_PASSWORD),
    };
    struct pst_sasl_client *c;
    struct pst_buf out, ch;

    (void)state;
    test_b64dec(RFC2195_CHALLENGE_B64, &ch);
    assert_buf_str(&ch, RFC2195_CHALLENGE);
    pst_buf_init(&out, 1024, 1);

    /* Asked for an initial response: none (server-first). */
    assert_rc(pst_sasl_client_new(cram, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_int_equal(out.len, 0);
    assert_rc(pst_sasl_client_step(c, ch.data, ch.len, &out),
              PST_SASL_CONTINUE);
    assert_buf_str(&out, RFC2195_RESPONSE);
    assert_str_b64(out.data, out.len, RFC2195_RESPONSE_B64);
    /* No server proof in CRAM-MD5: success is accepted. */
    assert_rc(pst_sasl_client_finish(c), 0);
    /* A second challenge is not CRAM-MD5. */
    assert_rc(pst_sasl_client_step(c, ch.data, ch.len, &out), PST_ESTATE);
    assert_int_equal(out.len, 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
    pst_sasl_client_free(c);

    /* A driver may skip the "initial response?" step. */
    assert_rc(pst_sasl_client_new(cram, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, ch.data, ch.len, &out),
              PST_SASL_CONTINUE);
    assert_buf_str(&out, RFC2195_RESPONSE);
    pst_sasl_client_free(c);

    pst_buf_clear(&ch);
    pst_buf_clear(&out);
}

static void
test_client_errors(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "tim",
        .password = (const uint8_t *)RFC2195_PASSWORD,
        .password_len = strlen(RFC2195_PASSWORD),
    };
    struct pst_sasl_client *c;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, 1024, 1);

    /* An empty challenge ("334 ") is not a msg-id. */
    assert_rc(pst_sasl_client_new(cram, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)"", 0, &out),
              PST_EPROTO);
    assert_int_equal(out.len, 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)RFC2195_CHALLENGE,
                                   strlen(RFC2195_CHALLENGE), &out),
              PST_ESTATE);
    assert_rc(pst_sasl_client_finish(c), PST_ESTATE);
    pst_sasl_client_free(c);

    /* Asking twice for an initial response. */
    assert_rc(pst_sasl_client_new(cram, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
    pst_sasl_client_free(c);

    pst_buf_clear(&out);
}

/* --- Parsing: the device manual and RFC 4954 §4.1 ------------------------ */

static void
test_parse_vectors(void **state)
{
    static const struct {
        const char *challenge_b64, *challenge;
        const char *response_b64, *user;
        uint8_t digest[16];
    } v[] = {
        /* seed-device-manual-smtp-auth.txt (the exchange the project
         * started from). */
        {"PENCeUxFREJoU0NnbmhNWitOMjNGNndAZWx3b29kLmlubm9zb2Z0LmNvbT4=",
         "<CByLEDBhSCgnhMZ+N23F6w@elwood.innosoft.com>",
         "ZnJlZCA5ZTk1YWVlMDljNDBhZjJiODRhMGMyYjNiYmFlNzg2ZQ==", "fred",
         {0x9e, 0x95, 0xae, 0xe0, 0x9c, 0x40, 0xaf, 0x2b, 0x84, 0xa0, 0xc2,
          0xb3, 0xbb, 0xae, 0x78, 0x6e}},
        /* RFC 4954 §4.1 (password not published: parse only). */
        {"PDQxOTI5NDIzNDEuMTI4Mjg0NzJAc291cmNlZm91ci5hbmRyZXcuY211LmVkdT4=",
         "<4192942341.12828472@sourcefour.andrew.cmu.edu>",
         "cmpzMyBlYzNhNTlmZWQzOTVhYmExZWM2MzY3YzRmNGI0MWFjMA==", "rjs3",
         {0xec, 0x3a, 0x59, 0xfe, 0xd3, 0x95, 0xab, 0xa1, 0xec, 0x63, 0x67,
          0xc4, 0xf4, 0xb4, 0x1a, 0xc0}},
        /* RFC 2195 §2. */
        {RFC2195_CHALLENGE_B64, RFC2195_CHALLENGE, RFC2195_RESPONSE_B64,
         "tim",
         {0xb9, 0x13, 0xa6, 0x02, 0xc7, 0xed, 0xa7, 0xa4, 0x95, 0xb4, 0xe6,
          0xe7, 0x33, 0x4d, 0x38, 0x90}},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_buf ch, resp;
        uint8_t digest[16];
        size_t user_len = 99;

        test_b64dec(v[i].challenge_b64, &ch);
        assert_buf_str(&ch, v[i].challenge);
        test_b64dec(v[i].response_b64, &resp);
        assert_rc(pst__cram_md5_parse(resp.data, resp.len, &user_len,
                                      digest), 0);
        assert_bytes_equal(resp.data, user_len, v[i].user,
                           strlen(v[i].user));
        assert_bytes_equal(digest, sizeof(digest), v[i].digest,
                           sizeof(v[i].digest));
        pst_buf_clear(&ch);
        pst_buf_clear(&resp);
    }
}

#define HEX32 "b913a602c7eda7a495b4e6e7334d3890"
#define S(str) (const uint8_t *)str, sizeof(str) - 1

static void
test_parse_malformed(void **state)
{
    static uint8_t user_long[PST_SASL_MAX_NAME + 1 + 1 + 32]; /* 256 */
    static uint8_t user_max[PST_SASL_MAX_NAME + 1 + 32];      /* 255 */
    const struct {
        const char *name;
        const uint8_t *in;
        size_t len;
        int want;
        size_t user_len;
    } v[] = {
        {"empty", S(""), PST_EPROTO, 0},
        {"digest only", S(HEX32), PST_EPROTO, 0},
        {"no user", S(" " HEX32), PST_EPROTO, 0},
        {"no space", S("tim" HEX32), PST_EPROTO, 0},
        {"tab", S("tim\t" HEX32), PST_EPROTO, 0},
        {"no digest", S("tim "), PST_EPROTO, 0},
        {"uppercase hex", S("tim B913A602C7EDA7A495B4E6E7334D3890"),
         PST_EPROTO, 0},
        {"one uppercase", S("tim b913a602c7eda7a495b4e6e7334d389F"),
         PST_EPROTO, 0},
        {"not hex", S("tim b913a602c7eda7a495b4e6e7334d389g"), PST_EPROTO,
         0},
        {"31 digits", S("tim b913a602c7eda7a495b4e6e7334d389"), PST_EPROTO,
         0},
        {"33 digits", S("tim b913a602c7eda7a495b4e6e7334d38900"),
         PST_EPROTO, 0},
        {"trailing space", S("tim " HEX32 " "), PST_EPROTO, 0},
        {"trailing CRLF", S("tim " HEX32 "\r\n"), PST_EPROTO, 0},
        {"space in digest", S("tim b913a602c7eda7a4 95b4e6e7334d3890"),
         PST_EPROTO, 0},
        {"NUL in user", S("ti\0m " HEX32), PST_EPROTO, 0},
        {"NUL user", S("\0 " HEX32), PST_EPROTO, 0},
        {"control in user", S("t\x01m " HEX32), PST_EPROTO, 0},
        {"newline in user", S("t\nm " HEX32), PST_EPROTO, 0},
        {"DEL in user", S("t\x7fm " HEX32), PST_EPROTO, 0},
        {"C1 control in user", S("t\xc2\x85m " HEX32), PST_EPROTO, 0},
        {"bad UTF-8 user", S("t\xc3 " HEX32), PST_EPROTO, 0},
        {"Latin-1 user", S("j\xfcrgen " HEX32), PST_EPROTO, 0},
        {"overlong UTF-8 user", S("\xc0\xaf " HEX32), PST_EPROTO, 0},
        {"user too long", user_long, sizeof(user_long), PST_ELIMIT, 0},
        /* Accepted: the user ends at the last space. */
        {"user with spaces", S("tim smith " HEX32), 0, 9},
        {"trailing space in user", S("tim  " HEX32), 0, 4},
        {"UTF-8 user", S("j\xc3\xbcrgen " HEX32), 0, 7},
        {"user at the limit", user_max, sizeof(user_max), 0,
         PST_SASL_MAX_NAME},
    };

    (void)state;
    memset(user_long, 'u', sizeof(user_long));
    user_long[PST_SASL_MAX_NAME + 1] = ' ';
    memcpy(user_long + PST_SASL_MAX_NAME + 2, HEX32, 32);
    memset(user_max, 'u', sizeof(user_max));
    user_max[PST_SASL_MAX_NAME] = ' ';
    memcpy(user_max + PST_SASL_MAX_NAME + 1, HEX32, 32);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        uint8_t digest[16];
        size_t user_len = 99;
        int rc = pst__cram_md5_parse(v[i].in, v[i].len, &user_len, digest);

        if (rc != v[i].want || (rc == 0 && user_len != v[i].user_len)) {
            fprintf(stderr, "%s: got %s (user %zu), want %s (user %zu)\n",
                    v[i].name, rc < 0 ? pst_errname(rc) : "0", user_len,
                    v[i].want < 0 ? pst_errname(v[i].want) : "0",
                    v[i].user_len);
            fail();
        }
        if (rc < 0)
            assert_int_equal(user_len, 0);
        else
            assert_bytes_equal(digest, 16,
                               "\xb9\x13\xa6\x02\xc7\xed\xa7\xa4\x95\xb4"
                               "\xe6\xe7\x33\x4d\x38\x90", 16);
    }
}

/* --- Server -------------------------------------------------------------- */

/* The challenge for given random bytes and time, byte for byte. */
static void
test_server_challenge(void **state)
{
    static const struct {
        const char *hostname;
        uint64_t timestamp;
        uint8_t random[8];
        const char *want;
    } v[] = {
        {"mail.example.test", 1700000000, {1, 2, 3, 4, 5, 6, 7, 8},
         "<72623859790382856.1700000000@mail.example.test>"},
        {"mail.example.test", 1700000000, {0, 0, 0, 0, 0, 0, 0, 0},
         "<0.1700000000@mail.example.test>"},
        {"mail.example.test", 1700000000,
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         "<18446744073709551615.1700000000@mail.example.test>"},
        /* RFC 2195 §2 and RFC 4954 §4.1, reproduced. */
        {"postoffice.reston.mci.net", 697170952,
         {0, 0, 0, 0, 0, 0, 0x07, 0x68}, RFC2195_CHALLENGE},
        {"sourcefour.andrew.cmu.edu", 12828472,
         {0, 0, 0, 0, 0xf9, 0xeb, 0x39, 0x05},
         "<4192942341.12828472@sourcefour.andrew.cmu.edu>"},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct test_rand r = {.bytes = v[i].random, .len = 8};
        struct pst_sasl_server_config cfg = {
            .hostname = v[i].hostname,
            .timestamp = v[i].timestamp,
            .random = test_random,
            .random_ctx = &r,
        };
        struct pst_sasl_server *s;
        struct pst_buf out;

        pst_buf_init(&out, 1024, 0);
        assert_rc(pst_sasl_server_new(cram, &cfg, &s), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, v[i].want);
        /* Exactly 8 random bytes were drawn. */
        assert_int_equal(r.pos, 8);
        pst_sasl_server_free(s);
        pst_buf_clear(&out);
    }
}

/* With the default random source, two challenges differ. */
static void
test_server_challenge_unique(void **state)
{
    struct pst_sasl_server_config cfg = {
        .hostname = "mail.example.test",
        .timestamp = 1700000000,
    };
    struct pst_sasl_server *s1, *s2;
    struct pst_buf o1, o2;

    (void)state;
    pst_buf_init(&o1, 1024, 0);
    pst_buf_init(&o2, 1024, 0);
    assert_rc(pst_sasl_server_new(cram, &cfg, &s1), 0);
    assert_rc(pst_sasl_server_new(cram, &cfg, &s2), 0);
    assert_rc(pst_sasl_server_step(s1, NULL, 0, &o1), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s2, NULL, 0, &o2), PST_SASL_CONTINUE);
    assert_true(o1.len > strlen("<.1700000000@mail.example.test>"));
    assert_false(o1.len == o2.len && memcmp(o1.data, o2.data, o1.len) == 0);
    pst_sasl_server_free(s1);
    pst_sasl_server_free(s2);
    pst_buf_clear(&o1);
    pst_buf_clear(&o2);
}

enum server_stop {
    STOP_NONE = 0,     /* run to the end */
    STOP_IR,           /* send response_b64 as an initial response */
    STOP_NO_RESPONSE,  /* step with in == NULL instead of the response */
    STOP_EXTRA,        /* step with a message after set_cred */
};

struct server_case {
    const char *name;
    enum server_stop stop;
    const char *response;       /* decoded client response */
    size_t response_len;
    const char *cred;           /* NULL: unknown user */
    int random_fails;
    int want;
    const char *reason;         /* exact, or NULL: any non-empty */
};

/*
 * One server exchange against the RFC 2195 §2 challenge.  Returns the
 * final status; afterwards the exchange must refuse every step.
 */
static int
server_run(const struct server_case *k)
{
    struct test_rand r = {.bytes = rfc2195_random, .len = 8};
    struct pst_sasl_server_config cfg = {
        .hostname = "postoffice.reston.mci.net",
        .timestamp = 697170952,
        .random = k->random_fails ? test_random_fail : test_random,
        .random_ctx = &r,
    };
    struct pst_sasl_server *s;
    struct pst_cred *cred = NULL;
    struct pst_buf out;
    int rc;

    pst_buf_init(&out, 1024, 0);
    if (k->cred != NULL)
        assert_rc(pst_cred_parse(k->cred, strlen(k->cred), &cred), 0);
    assert_rc(pst_sasl_server_new(cram, &cfg, &s), 0);
    if (k->stop == STOP_IR) {
        rc = pst_sasl_server_step(s, (const uint8_t *)k->response,
                                  k->response_len, &out);
        goto end;
    }
    rc = pst_sasl_server_step(s, NULL, 0, &out);
    if (rc != PST_SASL_CONTINUE)
        goto end;
    assert_buf_str(&out, RFC2195_CHALLENGE);
    assert_str_b64(out.data, out.len, RFC2195_CHALLENGE_B64);
    if (k->stop == STOP_NO_RESPONSE) {
        rc = pst_sasl_server_step(s, NULL, 0, &out);
        goto end;
    }
    rc = pst_sasl_server_step(s, (const uint8_t *)k->response,
                              k->response_len, &out);
    if (rc != PST_SASL_NEED_CRED)
        goto end;
    assert_int_equal(out.len, 0);
    assert_non_null(pst_sasl_server_authcid(s));
    /* No password to verify in CRAM-MD5, and no verdict to give. */
    assert_null(pst_sasl_server_password(s, &(size_t){0}));
    assert_rc(pst_sasl_server_verified(s, 1), PST_ESTATE);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_set_cred(s, cred), PST_ESTATE);
    if (k->stop == STOP_EXTRA)
        rc = pst_sasl_server_step(s, (const uint8_t *)"x", 1, &out);
    else
        rc = pst_sasl_server_step(s, NULL, 0, &out);
end:
    if (rc < 0) {
        assert_true(strlen(pst_sasl_server_reason(s)) > 0);
        if (k->reason != NULL)
            assert_string_equal(pst_sasl_server_reason(s), k->reason);
    }
    if (rc == PST_SASL_DONE) {
        assert_int_equal(out.len, 0);
        assert_null(pst_sasl_server_authzid(s));
    }
    /* Whatever happened, the exchange is over: steps after the end. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)RFC2195_RESPONSE,
                                   strlen(RFC2195_RESPONSE), &out),
              PST_ESTATE);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
    return rc;
}

#define RESP(str) str, sizeof(str) - 1

static void
test_server_rfc2195(void **state)
{
    static char msg_long[PST_SASL_MAX_MESSAGE + 2];  /* 12289 */
    const struct server_case v[] = {
        {"RFC 2195", STOP_NONE, RESP(RFC2195_RESPONSE),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_SASL_DONE, NULL},
        /* {CLEARTEXT} is {PLAIN} under another name. */
        {"RFC 2195, {CLEARTEXT}", STOP_NONE, RESP(RFC2195_RESPONSE),
         "{CLEARTEXT}" RFC2195_PASSWORD, 0, PST_SASL_DONE, NULL},
        {"wrong password", STOP_NONE, RESP(RFC2195_RESPONSE),
         "{PLAIN}tanstaaftanstaafX", 0, PST_EAUTH, "digest mismatch"},
        {"one bit off", STOP_NONE,
         RESP("tim b913a602c7eda7a495b4e6e7334d3891"),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EAUTH, "digest mismatch"},
        {"another user's digest", STOP_NONE,
         RESP("fred b913a602c7eda7a495b4e6e7334d3890"),
         "{PLAIN}other", 0, PST_EAUTH, "digest mismatch"},
        {"unknown user", STOP_NONE, RESP(RFC2195_RESPONSE), NULL, 0,
         PST_EAUTH, "unknown user"},
        /* RFC 4954 §4: no initial response to a server-first mech. */
        {"initial response", STOP_IR, RESP(RFC2195_RESPONSE),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EPROTO,
         "CRAM-MD5: initial response not allowed"},
        {"empty initial response", STOP_IR, RESP(""),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EPROTO,
         "CRAM-MD5: initial response not allowed"},
        {"random source fails", STOP_NONE, RESP(RFC2195_RESPONSE),
         "{PLAIN}" RFC2195_PASSWORD, 1, PST_ETEMP,
         "CRAM-MD5: random source failed"},
        {"no response", STOP_NO_RESPONSE, RESP(""),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_ESTATE,
         "CRAM-MD5: no response"},
        {"message after the response", STOP_EXTRA, RESP(RFC2195_RESPONSE),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_ESTATE,
         "CRAM-MD5: message after the response"},
        {"empty response", STOP_NONE, RESP(""),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EPROTO,
         "CRAM-MD5: malformed response"},
        {"uppercase digest", STOP_NONE,
         RESP("tim B913A602C7EDA7A495B4E6E7334D3890"),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EPROTO,
         "CRAM-MD5: malformed response"},
        {"NUL in user", STOP_NONE,
         RESP("t\0m b913a602c7eda7a495b4e6e7334d3890"),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EPROTO,
         "CRAM-MD5: malformed response"},
        {"bad UTF-8 user", STOP_NONE,
         RESP("t\xffm b913a602c7eda7a495b4e6e7334d3890"),
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_EPROTO,
         "CRAM-MD5: malformed response"},
        {"message too long", STOP_NONE, msg_long, sizeof(msg_long) - 1,
         "{PLAIN}" RFC2195_PASSWORD, 0, PST_ELIMIT,
         "client message too long"},
    };

    (void)state;
    /* A long user name, then " " and 32 hex digits. */
    memset(msg_long, 'u', sizeof(msg_long) - 1);
    msg_long[sizeof(msg_long) - 34] = ' ';
    memcpy(msg_long + sizeof(msg_long) - 33, HEX32, 32);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        int rc = server_run(&v[i]);

        if (rc != v[i].want) {
            fprintf(stderr, "%s: got %s, want %s\n", v[i].name,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "progress");
            fail();
        }
    }
}

/* The user name the server records is the one before the last space. */
static void
test_server_authcid(void **state)
{
    static const struct {
        const char *response, *user;
    } v[] = {
        {RFC2195_RESPONSE, "tim"},
        {"tim smith " HEX32, "tim smith"},
        {"j\xc3\xbcrgen@example.test " HEX32, "j\xc3\xbcrgen@example.test"},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg = {
            .hostname = "mail.example.test",
        };
        struct pst_sasl_server *s;
        struct pst_buf out;

        pst_buf_init(&out, 1024, 0);
        assert_rc(pst_sasl_server_new(cram, &cfg, &s), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_null(pst_sasl_server_authcid(s));
        assert_rc(pst_sasl_server_step(s, (const uint8_t *)v[i].response,
                                       strlen(v[i].response), &out),
                  PST_SASL_NEED_CRED);
        assert_string_equal(pst_sasl_server_authcid(s), v[i].user);
        pst_sasl_server_free(s);
        pst_buf_clear(&out);
    }
}

/*
 * Verifiers other than {PLAIN}: a {CRAM-MD5} one (INTEROP.md's stored form
 * of "tanstaaftanstaaf") must accept the RFC response, and a verifier
 * CRAM-MD5 cannot use must fail like a wrong password.
 */
static int
cred_parses(const char *text)
{
    struct pst_cred *probe = NULL;
    int rc = pst_cred_parse(text, strlen(text), &probe);

    pst_cred_free(probe);
    assert_rc(rc, 0);
    return 1;
}

static void
test_server_other_verifiers(void **state)
{
    static const char cram_cred[] =
        "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
        "54b21152711fb604ca3e035e7015116b";
    static const char *const unusable[] = {
        "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7",
        "{SHA512-CRYPT}$6$saltsalt$rD9fW1BwIrjB90WCgCTdIQc3phTBhf04I6Iw/"
        "XlgKD9E9aEbzqGZipjiFxGo/4wWXDA6jV6/vZO.kKdDSfUJb0",
    };

    (void)state;
    assert_true(cred_parses(cram_cred));
    {
        const struct server_case ok = {
            "{CRAM-MD5}", STOP_NONE, RESP(RFC2195_RESPONSE), cram_cred, 0,
            PST_SASL_DONE, NULL,
        };
        const struct server_case bad = {
            "{CRAM-MD5}, wrong digest", STOP_NONE,
            RESP("tim b913a602c7eda7a495b4e6e7334d3891"), cram_cred, 0,
            PST_EAUTH, "digest mismatch",
        };

        assert_rc(server_run(&ok), PST_SASL_DONE);
        assert_rc(server_run(&bad), PST_EAUTH);
    }
    for (size_t i = 0; i < PST__ARRAY_LEN(unusable); i++) {
        const struct server_case k = {
            unusable[i], STOP_NONE, RESP(RFC2195_RESPONSE), unusable[i], 0,
            PST_EAUTH, "no CRAM-MD5 or PLAIN verifier",
        };

        assert_true(cred_parses(unusable[i]));
        assert_rc(server_run(&k), PST_EAUTH);
    }
}

/* --- Both halves --------------------------------------------------------- */

static void
test_exchange_roundtrip(void **state)
{
    static const struct {
        const char *user, *pw, *cred;
        int want;
    } v[] = {
        {"user", "pencil", "{PLAIN}pencil", PST_SASL_DONE},
        {"tim smith", "p\xc3\xa4ss", "{PLAIN}p\xc3\xa4ss", PST_SASL_DONE},
        {"user", "pencil2", "{PLAIN}pencil", PST_EAUTH},
        {"user", "pencil", NULL, PST_EAUTH},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct test_exchange x = {
            .mech = "CRAM-MD5", .authcid = v[i].user, .password = v[i].pw,
            .cred_text = v[i].cred,
            /* Ignored: the server speaks first. */
            .use_initial_response = 1,
        };

        fprintf(stderr, "# case %zu\n", i);
        assert_rc(test_run_exchange(&x), v[i].want);
        /* Challenge, response. */
        assert_int_equal(x.messages, 2);
        if (v[i].want == PST_SASL_DONE) {
            assert_string_equal(x.authcid_seen, v[i].user);
            assert_string_equal(x.authzid_seen, "");
        }
    }
}

static void
test_mech(void **state)
{
    (void)state;
    assert_string_equal(pst_sasl_mech_name(cram), "CRAM-MD5");
    assert_ptr_equal(pst_sasl_mech_find("cram-md5", 8), cram);
    assert_int_equal(pst_sasl_mech_flags(cram), 0);
}

static int
setup(void **state)
{
    (void)state;
    cram = pst_sasl_mech_find("CRAM-MD5", 8);
    return cram == NULL;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_rfc2195),
        cmocka_unit_test(test_client_errors),
        cmocka_unit_test(test_parse_vectors),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_server_challenge),
        cmocka_unit_test(test_server_challenge_unique),
        cmocka_unit_test(test_server_rfc2195),
        cmocka_unit_test(test_server_authcid),
        cmocka_unit_test(test_server_other_verifiers),
        cmocka_unit_test(test_exchange_roundtrip),
        cmocka_unit_test(test_mech),
    };
    return cmocka_run_group_tests_name("cram_md5", tests, setup, NULL);
}
