/*
 * EXTERNAL (RFC 4422 Appendix A): the client's authzid as its only
 * message, the server's check against the identity the TLS client
 * certificate maps to, every error status and resume point, and the
 * opt-in flag.
 */
#include "testutil.h"

#include "../../lib/sasl/mech.h"

#define MSG(s) (const uint8_t *)(s), (sizeof(s) - 1)

static const struct pst_sasl_mech *
external(void)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find("EXTERNAL", 8);

    assert_non_null(m);
    return m;
}

static struct pst_cred *
cred_new(const char *text)
{
    struct pst_cred *c = NULL;

    assert_rc(pst_cred_parse(text, strlen(text), &c), 0);
    return c;
}

static void
test_client(void **state)
{
    static const struct {
        const char *authcid, *authzid, *want;
        size_t want_len;
    } v[] = {
        {NULL, NULL, "", 0},
        {NULL, "", "", 0},
        {"ignored", NULL, "", 0},
        {NULL, "tim", "tim", 3},
        {"tim", "Ursel", "Ursel", 5},
        {NULL, "j\xc3\xbcrgen", "j\xc3\xbcrgen", 7},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        for (int ir = 0; ir <= 1; ir++) {
            struct pst_sasl_client_config cfg = {
                .authcid = v[i].authcid,
                .authzid = v[i].authzid,
            };
            struct pst_sasl_client *c;

            assert_rc(pst_sasl_client_new(external(), &cfg, &c), 0);
            /* As an initial response, or after the empty "334 ". */
            assert_rc(pst_sasl_client_step(c, ir ? NULL : MSG(""), &out),
                      PST_SASL_CONTINUE);
            assert_bytes_equal(out.data, out.len, v[i].want,
                               v[i].want_len);
            assert_rc(pst_sasl_client_finish(c), 0);
            /* The server says yes or no; any challenge is wrong. */
            assert_rc(pst_sasl_client_step(c, MSG(""), &out), PST_EPROTO);
            assert_rc(pst_sasl_client_step(c, MSG(""), &out), PST_ESTATE);
            pst_sasl_client_free(c);
        }
    }
    /* A first challenge that is not empty makes no sense. */
    {
        struct pst_sasl_client_config cfg = {.authzid = "tim"};
        struct pst_sasl_client *c;

        assert_rc(pst_sasl_client_new(external(), &cfg, &c), 0);
        assert_rc(pst_sasl_client_step(c, MSG("x"), &out), PST_EPROTO);
        pst_sasl_client_free(c);
        /* Names must be UTF-8. */
        cfg.authzid = "\xff";
        assert_rc(pst_sasl_client_new(external(), &cfg, &c), PST_EINVAL);
    }
    pst_buf_clear(&out);
}

/* The server, row by row: certificate identity, client message, whether
 * the user exists; the result and what it reports. */
static void
test_server(void **state)
{
    static const struct {
        const char *id;       /* external_id; NULL: no certificate */
        const char *in;       /* NULL: no initial response, then "" */
        size_t len;
        int known;            /* the user exists */
        int want;
        const char *authcid, *authzid, *reason;
    } v[] = {
        /* RFC 4954 §4.1's "AUTH EXTERNAL =": an empty authzid. */
        {"tim", "", 0, 1, PST_SASL_DONE, "tim", NULL, ""},
        {"tim", NULL, 0, 1, PST_SASL_DONE, "tim", NULL, ""},
        {"tim", "tim", 3, 1, PST_SASL_DONE, "tim", NULL, ""},
        {"tim@example.test", "tim@example.test", 16, 1, PST_SASL_DONE,
         "tim@example.test", NULL, ""},
        {"tim", "Ursel", 5, 1, PST_EAUTH, "tim", NULL,
         "EXTERNAL: authzid is not the certificate's identity"},
        {"tim", "Tim", 3, 1, PST_EAUTH, "tim", NULL,
         "EXTERNAL: authzid is not the certificate's identity"},
        {"tim", "tim ", 4, 1, PST_EAUTH, "tim", NULL,
         "EXTERNAL: authzid is not the certificate's identity"},
        {"tim", "", 0, 0, PST_EAUTH, "tim", NULL, "unknown user"},
        {NULL, "", 0, 1, PST_EAUTH, NULL, NULL,
         "EXTERNAL: no client certificate identity"},
        {"", "tim", 3, 1, PST_EAUTH, NULL, NULL,
         "EXTERNAL: no client certificate identity"},
        {"tim", "ti\0m", 4, 1, PST_EPROTO, NULL, NULL,
         "EXTERNAL: authzid is not UTF-8 without NUL"},
        {"tim", "\xc3", 1, 1, PST_EPROTO, NULL, NULL,
         "EXTERNAL: authzid is not UTF-8 without NUL"},
        {"bad\xff", "", 0, 1, PST_EAUTH, NULL, NULL,
         "EXTERNAL: unusable certificate identity"},
    };
    struct pst_cred *cred = cred_new("{PLAIN}unused");
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg = {
            .hostname = "mail.example.test",
            .external_id = v[i].id,
        };
        struct pst_sasl_server *s;
        int rc;

        assert_rc(pst_sasl_server_new(external(), &cfg, &s), 0);
        if (v[i].in == NULL) {
            assert_rc(pst_sasl_server_step(s, NULL, 0, &out),
                      PST_SASL_CONTINUE);
            assert_int_equal(out.len, 0);
            rc = pst_sasl_server_step(s, MSG(""), &out);
        } else {
            rc = pst_sasl_server_step(s, (const uint8_t *)v[i].in, v[i].len,
                                      &out);
        }
        if (rc == PST_SASL_NEED_CRED) {
            /* The mapped user's credentials are asked for. */
            assert_string_equal(pst_sasl_server_authcid(s), v[i].authcid);
            assert_rc(pst_sasl_server_verified(s, 1), PST_ESTATE);
            assert_rc(pst_sasl_server_set_cred(s, v[i].known ? cred : NULL),
                      0);
            rc = pst_sasl_server_step(s, NULL, 0, &out);
        }
        if (rc != v[i].want) {
            fprintf(stderr, "row %zu: got %s (%s), want %s\n", i,
                    pst_errname(rc), pst_sasl_server_reason(s),
                    pst_errname(v[i].want));
            fail();
        }
        assert_int_equal(out.len, 0);
        assert_string_equal(pst_sasl_server_reason(s), v[i].reason);
        if (v[i].authcid != NULL)
            assert_string_equal(pst_sasl_server_authcid(s), v[i].authcid);
        else
            assert_null(pst_sasl_server_authcid(s));
        assert_null(pst_sasl_server_authzid(s));
        /* Nothing after the end. */
        assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_ESTATE);
        pst_sasl_server_free(s);
    }
    pst_cred_free(cred);
    pst_buf_clear(&out);
}

/* Limits and misuse. */
static void
test_server_errors(void **state)
{
    struct pst_sasl_server_config cfg = {
        .hostname = "mail.example.test",
        .external_id = "tim",
    };
    struct pst_sasl_server *s;
    struct pst_buf out;
    uint8_t big[PST_SASL_MAX_NAME + 1];
    size_t len;

    (void)state;
    memset(big, 'a', sizeof(big));
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_server_new(external(), &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, big, sizeof(big), &out), PST_ELIMIT);
    pst_sasl_server_free(s);
    assert_rc(pst_sasl_server_new(external(), &cfg, &s), 0);
    assert_rc(pst_sasl_server_set_cred(s, NULL), PST_ESTATE);
    assert_rc(pst_sasl_server_verified(s, 1), PST_ESTATE);
    assert_null(pst_sasl_server_password(s, &len));
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    /* A second "no initial response". */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_ESTATE);
    pst_sasl_server_free(s);
    /* Stepping while the credentials are awaited. */
    assert_rc(pst_sasl_server_new(external(), &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    assert_rc(pst_sasl_server_set_cred(s, NULL), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_EAUTH);
    pst_sasl_server_free(s);
    pst_buf_clear(&out);
}

/* Our client against our server. */
static void
test_roundtrip(void **state)
{
    static const struct {
        const char *authzid, *id;
        int want;
    } v[] = {
        {NULL, "tim", PST_SASL_DONE},
        {"tim", "tim", PST_SASL_DONE},
        {"Ursel", "tim", PST_EAUTH},
        {NULL, NULL, PST_EAUTH},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        for (int ir = 0; ir <= 1; ir++) {
            struct pst_sasl_client_config ccfg = {.authzid = v[i].authzid};
            struct pst_sasl_server_config scfg = {
                .hostname = "mail.example.test",
                .external_id = v[i].id,
            };
            struct pst_cred *cred = cred_new("{PLAIN}x");
            struct pst_sasl_client *c;
            struct pst_sasl_server *s;
            struct pst_buf cb, sb;
            int rc;

            pst_buf_init(&cb, PST_SASL_MAX_MESSAGE, 1);
            pst_buf_init(&sb, PST_SASL_MAX_MESSAGE, 0);
            assert_rc(pst_sasl_client_new(external(), &ccfg, &c), 0);
            assert_rc(pst_sasl_server_new(external(), &scfg, &s), 0);
            if (ir) {
                assert_rc(pst_sasl_client_step(c, NULL, 0, &cb),
                          PST_SASL_CONTINUE);
            } else {
                assert_rc(pst_sasl_server_step(s, NULL, 0, &sb),
                          PST_SASL_CONTINUE);
                assert_rc(pst_sasl_client_step(c, MSG(""), &cb),
                          PST_SASL_CONTINUE);
            }
            rc = pst_sasl_server_step(
                s, cb.data != NULL ? cb.data : (const uint8_t *)"", cb.len,
                &sb);
            if (rc == PST_SASL_NEED_CRED) {
                assert_rc(pst_sasl_server_set_cred(s, cred), 0);
                rc = pst_sasl_server_step(s, NULL, 0, &sb);
            }
            assert_rc(rc, v[i].want);
            if (rc == PST_SASL_DONE) {
                assert_string_equal(pst_sasl_server_authcid(s), "tim");
                assert_rc(pst_sasl_client_finish(c), 0);
            }
            pst_sasl_client_free(c);
            pst_sasl_server_free(s);
            pst_cred_free(cred);
            pst_buf_clear(&cb);
            pst_buf_clear(&sb);
        }
    }
}

static void
test_mech_entry(void **state)
{
    int in_all = 0;

    (void)state;
    assert_string_equal(pst_sasl_mech_name(external()), "EXTERNAL");
    assert_int_equal(pst_sasl_mech_flags(external()),
                     PST_MECH_CLIENT_FIRST | PST_MECH_EXTERNAL);
    assert_ptr_equal(pst_sasl_mech_find("external", 8), external());
    /* Opt-in: never offered or chosen by default. */
    for (size_t i = 0; pst_sasl_mech_at(i) != NULL; i++)
        assert_ptr_not_equal(pst_sasl_mech_at(i), external());
    for (size_t i = 0; pst_sasl_mech_all_at(i) != NULL; i++)
        in_all |= pst_sasl_mech_all_at(i) == external();
    assert_true(in_all);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client),
        cmocka_unit_test(test_server),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_mech_entry),
    };
    return cmocka_run_group_tests_name("external", tests, NULL, NULL);
}
