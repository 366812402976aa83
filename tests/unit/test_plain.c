/* PLAIN (RFC 4616): vectors, authzid handling, every malformed message. */
#include "testutil.h"

static const struct pst_sasl_mech *plain;

static const struct pst_sasl_server_config scfg = {
    .hostname = "mail.example.test",
};

/* Client messages of RFC 4616 §4 and RFC 4954 §4.1, byte for byte. */
static void
test_client_vectors(void **state)
{
    static const struct {
        const char *authzid, *authcid, *pw, *b64;
    } v[] = {
        {NULL, "tim", "tanstaaftanstaaf", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"},
        {"Ursel", "Kurt", "xipj3plmq", "VXJzZWwAS3VydAB4aXBqM3BsbXE="},
        {"test", "test", "1234", "dGVzdAB0ZXN0ADEyMzQ="},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_sasl_client_config cfg = {
            .authcid = v[i].authcid,
            .authzid = v[i].authzid,
            .password = (const uint8_t *)v[i].pw,
            .password_len = strlen(v[i].pw),
        };
        struct pst_sasl_client *c;
        struct pst_buf out;
        char *b64;

        pst_buf_init(&out, 1024, 1);
        assert_rc(pst_sasl_client_new(plain, &cfg, &c), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
        b64 = test_b64enc(out.data, out.len);
        assert_string_equal(b64, v[i].b64);
        free(b64);
        /* No further step is expected. */
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)"", 0, &out),
                  PST_ESTATE);
        assert_rc(pst_sasl_client_finish(c), PST_ESTATE);
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
}

/* Drive a server with one decoded message; return the final status. */
static int
server_run(const uint8_t *msg, size_t len, const char *cred_text,
           char *authcid, char *authzid)
{
    struct pst_sasl_server *s;
    struct pst_cred *cred = NULL;
    struct pst_buf out;
    int rc;

    pst_buf_init(&out, 1024, 0);
    if (cred_text != NULL)
        assert_rc(pst_cred_parse(cred_text, strlen(cred_text), &cred), 0);
    assert_rc(pst_sasl_server_new(plain, &scfg, &s), 0);
    rc = pst_sasl_server_step(s, msg, len, &out);
    if (rc == PST_SASL_NEED_CRED) {
        assert_null(pst_sasl_server_password(s, &(size_t){0}));
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        /* Stepping twice without an answer is refused. */
        rc = pst_sasl_server_step(s, NULL, 0, &out);
        assert_rc(rc, PST_SASL_NEED_VERIFY);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
        {
            size_t pwlen;
            const uint8_t *pw = pst_sasl_server_password(s, &pwlen);

            assert_non_null(pw);
            assert_rc(pst_sasl_server_verified(
                          s, pst_cred_verify(cred, pst_sasl_server_authcid(s),
                                             pw, pwlen) == 0),
                      0);
        }
        assert_null(pst_sasl_server_password(s, &(size_t){0}));
        rc = pst_sasl_server_step(s, NULL, 0, &out);
    }
    if (authcid != NULL)
        snprintf(authcid, 256, "%s",
                 pst_sasl_server_authcid(s) ? pst_sasl_server_authcid(s)
                                            : "(null)");
    if (authzid != NULL)
        snprintf(authzid, 256, "%s",
                 pst_sasl_server_authzid(s) ? pst_sasl_server_authzid(s)
                                            : "(null)");
    if (rc < 0)
        assert_true(strlen(pst_sasl_server_reason(s)) > 0);
    /* Whatever happened, the exchange is over. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"x", 1, &out),
              PST_ESTATE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
    return rc;
}

static void
test_server_vectors(void **state)
{
    struct pst_buf m;
    char cid[256], zid[256];

    (void)state;
    test_b64dec("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", &m);
    assert_rc(server_run(m.data, m.len, "{PLAIN}tanstaaftanstaaf", cid, zid),
              PST_SASL_DONE);
    assert_string_equal(cid, "tim");
    assert_string_equal(zid, "(null)");
    pst_buf_clear(&m);

    /* authzid different from authcid: reported for policy to decide. */
    test_b64dec("VXJzZWwAS3VydAB4aXBqM3BsbXE=", &m);
    assert_rc(server_run(m.data, m.len, "{PLAIN}xipj3plmq", cid, zid),
              PST_SASL_DONE);
    assert_string_equal(cid, "Kurt");
    assert_string_equal(zid, "Ursel");
    pst_buf_clear(&m);

    /* authzid equal to authcid: no proxying. */
    test_b64dec("dGVzdAB0ZXN0ADEyMzQ=", &m);
    assert_rc(server_run(m.data, m.len, "{PLAIN}1234", cid, zid),
              PST_SASL_DONE);
    assert_string_equal(cid, "test");
    assert_string_equal(zid, "(null)");
    pst_buf_clear(&m);
}

static void
test_server_wrong_password_and_unknown_user(void **state)
{
    struct pst_buf m;

    (void)state;
    test_b64dec("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", &m);
    assert_rc(server_run(m.data, m.len, "{PLAIN}tanstaaftanstaafX", NULL,
                         NULL), PST_EAUTH);
    assert_rc(server_run(m.data, m.len, "{PLAIN}tanstaaftanstaa", NULL,
                         NULL), PST_EAUTH);
    assert_rc(server_run(m.data, m.len, NULL, NULL, NULL), PST_EAUTH);
    pst_buf_clear(&m);
}

static void
test_server_utf8(void **state)
{
    /* authcid "jürgen", password "pässwörd" in UTF-8. */
    static const uint8_t msg[] = "\0j\xc3\xbcrgen\0p\xc3\xa4ssw\xc3\xb6rd";
    char cid[256];

    (void)state;
    assert_rc(server_run(msg, sizeof(msg) - 1,
                         "{PLAIN}p\xc3\xa4ssw\xc3\xb6rd", cid, NULL),
              PST_SASL_DONE);
    assert_string_equal(cid, "j\xc3\xbcrgen");
}

static void
test_server_malformed(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
        int want;
    } v[] = {
        /* Negative vectors after Dovecot's test-mech.c. */
        {"failingwiththis", 15, PST_EPROTO},            /* no NUL */
        {"failing\0withthis", 16, PST_EPROTO},          /* one NUL */
        {"\0fa\0il\0ing\0withthis", 20, PST_EPROTO},    /* too many */
        {"", 0, PST_EPROTO},                            /* empty */
        {"\0\0", 2, PST_EPROTO},                        /* empty fields */
        {"\0tim\0", 5, PST_EPROTO},                     /* empty password */
        {"\0\0pw", 4, PST_EPROTO},                      /* empty authcid */
        {"\0t\xc3\0pw", 6, PST_EPROTO},                 /* bad UTF-8 name */
        {"\xff\0tim\0pw", 8, PST_EPROTO},               /* bad UTF-8 authzid */
        {"\0tim\0p\xc0\xafw", 9, PST_EPROTO},           /* overlong UTF-8 */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = server_run((const uint8_t *)v[i].msg, v[i].len,
                            "{PLAIN}pw", NULL, NULL);

        if (rc != v[i].want) {
            fprintf(stderr, "case %zu: got %s, want %s\n", i,
                    pst_errname(rc), pst_errname(v[i].want));
            fail();
        }
    }
}

static void
test_server_overlong(void **state)
{
    uint8_t msg[PST_SASL_MAX_MESSAGE + 1];
    uint8_t name[PST_SASL_MAX_NAME + 4]; /* authcid of MAX + 1 */

    (void)state;
    memset(msg, 'a', sizeof(msg));
    msg[0] = 0;
    msg[5] = 0;
    assert_rc(server_run(msg, sizeof(msg), "{PLAIN}pw", NULL, NULL),
              PST_ELIMIT);
    /* An authcid over the name limit. */
    memset(name, 'n', sizeof(name));
    name[0] = 0;
    name[sizeof(name) - 2] = 0;
    assert_rc(server_run(name, sizeof(name), "{PLAIN}pw", NULL, NULL),
              PST_ELIMIT);
}

static void
test_server_two_step(void **state)
{
    struct pst_sasl_server *s;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, 1024, 0);
    assert_rc(pst_sasl_server_new(plain, &scfg, &s), 0);
    /* No initial response: an empty challenge ("334 "). */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_int_equal(out.len, 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"\0u\0p", 4, &out),
              PST_SASL_NEED_CRED);
    assert_string_equal(pst_sasl_server_authcid(s), "u");
    /* set_cred only when asked; verified only when asked. */
    assert_rc(pst_sasl_server_verified(s, 1), PST_ESTATE);
    pst_sasl_server_free(s);
    pst_buf_clear(&out);

    assert_rc(pst_sasl_server_new(plain, &scfg, &s), 0);
    assert_rc(pst_sasl_server_set_cred(s, NULL), PST_ESTATE);
    pst_sasl_server_free(s);
}

static void
test_exchange_roundtrip(void **state)
{
    struct test_exchange x = {
        .mech = "PLAIN", .authcid = "user", .password = "pencil",
        .cred_text = "{PLAIN}pencil", .use_initial_response = 1,
    };

    (void)state;
    assert_rc(test_run_exchange(&x), PST_SASL_DONE);
    assert_int_equal(x.messages, 1);
    assert_string_equal(x.authcid_seen, "user");
    x.use_initial_response = 0;
    assert_rc(test_run_exchange(&x), PST_SASL_DONE);
    assert_int_equal(x.messages, 2);
    x.password = "pencil2";
    assert_rc(test_run_exchange(&x), PST_EAUTH);
    x.password = "pencil";
    x.authzid = "other";
    assert_rc(test_run_exchange(&x), PST_SASL_DONE);
    assert_string_equal(x.authzid_seen, "other");
}

static void
test_mech_table(void **state)
{
    static const char *const order[] = {
        "SCRAM-SHA-256", "SCRAM-SHA-1", "DIGEST-MD5", "CRAM-MD5", "PLAIN",
        "LOGIN",
    };
    size_t i;

    (void)state;
    for (i = 0; pst_sasl_mech_at(i) != NULL; i++)
        assert_string_equal(pst_sasl_mech_name(pst_sasl_mech_at(i)),
                            order[i]);
    assert_int_equal(i, 6);
    assert_ptr_equal(pst_sasl_mech_find("plain", 5), plain);
    assert_null(pst_sasl_mech_find("PLAINX", 6));
    assert_null(pst_sasl_mech_find("PLAI", 4));
    assert_true(pst_sasl_mech_flags(plain) & PST_MECH_SENDS_PASSWORD);
    assert_true(pst_sasl_mech_flags(plain) & PST_MECH_CLIENT_FIRST);
}

static int
setup(void **state)
{
    (void)state;
    plain = pst_sasl_mech_find("PLAIN", 5);
    return plain == NULL;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_vectors),
        cmocka_unit_test(test_server_vectors),
        cmocka_unit_test(test_server_wrong_password_and_unknown_user),
        cmocka_unit_test(test_server_utf8),
        cmocka_unit_test(test_server_malformed),
        cmocka_unit_test(test_server_overlong),
        cmocka_unit_test(test_server_two_step),
        cmocka_unit_test(test_exchange_roundtrip),
        cmocka_unit_test(test_mech_table),
    };
    return cmocka_run_group_tests_name("plain", tests, setup, NULL);
}
