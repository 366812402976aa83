/* LOGIN (draft-murchison-sasl-login): prompts, both orders, every error. */
#include "testutil.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const struct pst_sasl_mech *login;

static const struct pst_sasl_server_config scfg = {
    .hostname = "mail.example.test",
};

/* INTEROP.md: "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"; "tim" -> "dGlt",
 * "tanstaaftanstaaf" -> "dGFuc3RhYWZ0YW5zdGFhZg==". */
#define B64_USER_PROMPT "VXNlcm5hbWU6"
#define B64_PW_PROMPT   "UGFzc3dvcmQ6"
#define B64_TIM         "dGlt"
#define B64_TANSTAAF    "dGFuc3RhYWZ0YW5zdGFhZg=="

/* Assert that out holds exactly the bytes base64 b64 encodes. */
static void
assert_buf_b64(const struct pst_buf *out, const char *b64)
{
    char *got = test_b64enc(out->data, out->len);

    if (strcmp(got, b64) != 0) {
        fprintf(stderr, "base64: got \"%s\", want \"%s\"\n", got, b64);
        free(got);
        fail();
    }
    free(got);
}

/* --- Client -------------------------------------------------------------- */

/* The client answers by position, whatever the prompts say (msmtp and curl
 * do the same); NULL as the first challenge asks for an initial response. */
static void
test_client_messages(void **state)
{
    static const struct {
        const char *first, *second; /* challenges; first NULL: IR */
    } v[] = {
        {NULL, "Password:"},           /* curl --sasl-ir, then the prompt */
        {"Username:", "Password:"},    /* the usual prompts */
        {"User Name", "Password"},     /* the draft's suggestion */
        {"", ""},                      /* empty challenges ("334 ") */
        {"Password:", "Username:"},    /* nonsense: still by position */
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        struct pst_sasl_client_config cfg = {
            .authcid = "tim",
            .password = (const uint8_t *)"tanstaaftanstaaf",
            .password_len = 16,
        };
        struct pst_sasl_client *c;
        struct pst_buf out;
        const char *ch;

        fprintf(stderr, "# case %zu\n", i);
        pst_buf_init(&out, 1024, 1);
        assert_rc(pst_sasl_client_new(login, &cfg, &c), 0);
        ch = v[i].first;
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)ch,
                                       ch != NULL ? strlen(ch) : 0, &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, "tim");
        assert_buf_b64(&out, B64_TIM);
        ch = v[i].second;
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)ch, strlen(ch),
                                       &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, "tanstaaftanstaaf");
        assert_buf_b64(&out, B64_TANSTAAF);
        /* A third challenge is not LOGIN. */
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)"Username:", 9,
                                       &out),
                  PST_ESTATE);
        assert_int_equal(out.len, 0);
        /* Failed: nothing more, not even finish. */
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)"x", 1, &out),
                  PST_ESTATE);
        assert_rc(pst_sasl_client_finish(c), PST_ESTATE);
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
}

static void
test_client_bad_order(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "tim",
        .password = (const uint8_t *)"tanstaaftanstaaf",
        .password_len = 16,
    };
    struct pst_sasl_client *c;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, 1024, 1);
    /* An initial response can only be asked for first. */
    assert_rc(pst_sasl_client_new(login, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
    assert_int_equal(out.len, 0);
    pst_sasl_client_free(c);

    /* The password is the answer to the second challenge, then done:
     * the client accepts success. */
    assert_rc(pst_sasl_client_new(login, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)"Username:", 9,
                                   &out),
              PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)"Password:", 9,
                                   &out),
              PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_finish(c), 0);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
}

/* --- Server -------------------------------------------------------------- */

struct server_case {
    const char *name;
    int use_ir;              /* user name as the initial response */
    const char *user;        /* NULL: stop before */
    size_t user_len;
    const char *pw;          /* NULL: stop before */
    size_t pw_len;
    const char *cred;        /* NULL: unknown user */
    int want;                /* final status */
    const char *reason;      /* exact reason, or NULL: any non-empty */
};

/*
 * Drive a server through one LOGIN exchange the way the SMTP layer and a
 * driver would, checking every prompt byte for byte.  Returns the final
 * status; afterwards the exchange must refuse every step.
 */
static int
server_run(const struct server_case *k, char *authcid)
{
    struct pst_sasl_server *s;
    struct pst_cred *cred = NULL;
    struct pst_buf out;
    int rc;

    pst_buf_init(&out, 1024, 0);
    if (authcid != NULL)
        authcid[0] = '\0';
    if (k->cred != NULL)
        assert_rc(pst_cred_parse(k->cred, strlen(k->cred), &cred), 0);
    assert_rc(pst_sasl_server_new(login, &scfg, &s), 0);
    if (!k->use_ir) {
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, "Username:");
        assert_buf_b64(&out, B64_USER_PROMPT);
    }
    if (k->user == NULL) {
        rc = pst_sasl_server_step(s, NULL, 0, &out);
        goto end;
    }
    rc = pst_sasl_server_step(s, (const uint8_t *)k->user, k->user_len,
                              &out);
    if (rc != PST_SASL_CONTINUE)
        goto end;
    assert_buf_str(&out, "Password:");
    assert_buf_b64(&out, B64_PW_PROMPT);
    /* LOGIN has no authorization identity, and no password yet. */
    assert_null(pst_sasl_server_authzid(s));
    assert_null(pst_sasl_server_password(s, &(size_t){0}));
    if (k->pw == NULL) {
        rc = pst_sasl_server_step(s, NULL, 0, &out);
        goto end;
    }
    rc = pst_sasl_server_step(s, (const uint8_t *)k->pw, k->pw_len, &out);
    if (rc != PST_SASL_NEED_CRED)
        goto end;
    assert_int_equal(out.len, 0);
    /* Waiting for credentials: no step, no verdict. */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    assert_rc(pst_sasl_server_verified(s, 1), PST_ESTATE);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    rc = pst_sasl_server_step(s, NULL, 0, &out);
    /* Unknown users are verified too, like wrong passwords. */
    assert_rc(rc, PST_SASL_NEED_VERIFY);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    assert_rc(pst_sasl_server_set_cred(s, cred), PST_ESTATE);
    {
        size_t len;
        const uint8_t *pw = pst_sasl_server_password(s, &len);

        assert_non_null(pw);
        assert_bytes_equal(pw, len, k->pw, k->pw_len);
        assert_rc(pst_sasl_server_verified(
                      s, pst_cred_verify(cred, pst_sasl_server_authcid(s),
                                         pw, len) == 0),
                  0);
    }
    /* The verdict wiped the password. */
    assert_null(pst_sasl_server_password(s, &(size_t){0}));
    rc = pst_sasl_server_step(s, NULL, 0, &out);
end:
    if (authcid != NULL && pst_sasl_server_authcid(s) != NULL)
        snprintf(authcid, 256, "%s", pst_sasl_server_authcid(s));
    if (rc < 0) {
        assert_true(strlen(pst_sasl_server_reason(s)) > 0);
        if (k->reason != NULL)
            assert_string_equal(pst_sasl_server_reason(s), k->reason);
        assert_null(pst_sasl_server_password(s, &(size_t){0}));
    }
    if (rc == PST_SASL_DONE)
        assert_null(pst_sasl_server_authzid(s));
    /* Whatever happened, the exchange is over: steps after the end. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"x", 1, &out),
              PST_ESTATE);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
    return rc;
}

#define S(str) str, sizeof(str) - 1

static void
test_server_success(void **state)
{
    static const struct server_case v[] = {
        {"two prompts", 0, S("tim"), S("tanstaaftanstaaf"),
         "{PLAIN}tanstaaftanstaaf", PST_SASL_DONE, NULL},
        {"initial response", 1, S("tim"), S("tanstaaftanstaaf"),
         "{PLAIN}tanstaaftanstaaf", PST_SASL_DONE, NULL},
        {"UTF-8", 0, S("j\xc3\xbcrgen"), S("p\xc3\xa4ssw\xc3\xb6rd"),
         "{PLAIN}p\xc3\xa4ssw\xc3\xb6rd", PST_SASL_DONE, NULL},
        /* Spaces and punctuation are ordinary bytes. */
        {"spaces", 1, S("tim smith@example.test"), S("p@ss:w0rd!"),
         "{PLAIN}p@ss:w0rd!", PST_SASL_DONE, NULL},
    };
    static const char *const want_user[] = {
        "tim", "tim", "j\xc3\xbcrgen", "tim smith@example.test",
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        char cid[256];

        fprintf(stderr, "# %s\n", v[i].name);
        assert_rc(server_run(&v[i], cid), v[i].want);
        assert_string_equal(cid, want_user[i]);
    }
}

static void
test_server_failures(void **state)
{
    static char user_max[PST_SASL_MAX_NAME + 1];      /* 255 octets: ok */
    static char user_long[PST_SASL_MAX_NAME + 2];     /* 256: too long */
    static char pw_max[PST_SASL_MAX_PASSWORD + 1];    /* 1024: ok */
    static char pw_long[PST_SASL_MAX_PASSWORD + 2];   /* 1025: too long */
    static char msg_long[PST_SASL_MAX_MESSAGE + 2];   /* 12289 */
    const struct server_case v[] = {
        /* Wrong password and unknown user: same code, log tells. */
        {"wrong password", 0, S("tim"), S("tanstaaftanstaafX"),
         "{PLAIN}tanstaaftanstaaf", PST_EAUTH, "password mismatch"},
        {"wrong password, IR", 1, S("tim"), S("tanstaaf"),
         "{PLAIN}tanstaaftanstaaf", PST_EAUTH, "password mismatch"},
        {"unknown user", 0, S("nobody"), S("tanstaaftanstaaf"), NULL,
         PST_EAUTH, "unknown user"},
        {"unknown user, IR", 1, S("nobody"), S("x"), NULL, PST_EAUTH,
         "unknown user"},
        /* Malformed user names. */
        {"empty user", 0, S(""), S("pw"), "{PLAIN}pw", PST_EPROTO,
         "LOGIN: empty user name"},
        {"empty user, IR", 1, S(""), S("pw"), "{PLAIN}pw", PST_EPROTO,
         "LOGIN: empty user name"},
        {"NUL in user", 0, S("ti\0m"), S("pw"), "{PLAIN}pw", PST_EPROTO,
         NULL},
        {"NUL-only user", 1, S("\0"), S("pw"), "{PLAIN}pw", PST_EPROTO,
         NULL},
        {"bad UTF-8 user", 0, S("t\xc3"), S("pw"), "{PLAIN}pw", PST_EPROTO,
         NULL},
        {"Latin-1 user", 1, S("j\xfcrgen"), S("pw"), "{PLAIN}pw",
         PST_EPROTO, NULL},
        {"overlong UTF-8 user", 0, S("\xc0\xaf"), S("pw"), "{PLAIN}pw",
         PST_EPROTO, NULL},
        {"surrogate user", 0, S("\xed\xa0\x80"), S("pw"), "{PLAIN}pw",
         PST_EPROTO, NULL},
        {"user too long", 0, user_long, sizeof(user_long) - 1, S("pw"),
         "{PLAIN}pw", PST_ELIMIT, NULL},
        {"user too long, IR", 1, user_long, sizeof(user_long) - 1, S("pw"),
         "{PLAIN}pw", PST_ELIMIT, NULL},
        {"message too long", 0, msg_long, sizeof(msg_long) - 1, S("pw"),
         "{PLAIN}pw", PST_ELIMIT, "client message too long"},
        /* Malformed passwords. */
        {"empty password", 0, S("tim"), S(""), "{PLAIN}pw", PST_EPROTO,
         "LOGIN: empty password"},
        {"NUL in password", 0, S("tim"), S("p\0w"), "{PLAIN}pw",
         PST_EPROTO, "LOGIN: NUL in password"},
        {"NUL-only password", 1, S("tim"), S("\0"), "{PLAIN}pw",
         PST_EPROTO, "LOGIN: NUL in password"},
        /* Non-UTF-8 passwords are opaque bytes for the verifier. */
        {"Latin-1 password, wrong", 0, S("tim"), S("p\xff"), "{PLAIN}pw",
         PST_EAUTH, "password mismatch"},
        {"Latin-1 password, right", 1, S("tim"), S("p\xe9"),
         "{PLAIN}p\xe9", PST_SASL_DONE, NULL},
        {"truncated UTF-8 password", 0, S("tim"), S("p\xe2\x82"),
         "{PLAIN}pw", PST_EAUTH, "password mismatch"},
        {"password too long", 0, S("tim"), pw_long, sizeof(pw_long) - 1,
         "{PLAIN}pw", PST_ELIMIT, "LOGIN: password too long"},
        {"password message too long", 1, S("tim"), msg_long,
         sizeof(msg_long) - 1, "{PLAIN}pw", PST_ELIMIT,
         "client message too long"},
        /* Steps out of order: no answer where one is due. */
        {"no user name", 0, NULL, 0, NULL, 0, "{PLAIN}pw", PST_ESTATE,
         "LOGIN: no user name"},
        {"no password", 0, S("tim"), NULL, 0, "{PLAIN}pw", PST_ESTATE,
         "LOGIN: no password"},
        {"no password, IR", 1, S("tim"), NULL, 0, "{PLAIN}pw", PST_ESTATE,
         "LOGIN: no password"},
        /* At the limits: accepted (then wrong or right). */
        {"user at the limit", 0, user_max, sizeof(user_max) - 1, S("pw"),
         "{PLAIN}pw", PST_SASL_DONE, NULL},
        {"password at the limit", 0, S("tim"), pw_max, sizeof(pw_max) - 1,
         "{PLAIN}pw", PST_EAUTH, "password mismatch"},
    };

    (void)state;
    memset(user_max, 'u', sizeof(user_max) - 1);
    memset(user_long, 'u', sizeof(user_long) - 1);
    memset(pw_max, 'p', sizeof(pw_max) - 1);
    memset(pw_long, 'p', sizeof(pw_long) - 1);
    memset(msg_long, 'm', sizeof(msg_long) - 1);
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        int rc = server_run(&v[i], NULL);

        if (rc != v[i].want) {
            fprintf(stderr, "%s: got %s, want %s\n", v[i].name,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "progress");
            fail();
        }
    }
}

/* Messages where the server wants none: after the password, the exchange
 * only resumes with in == NULL. */
static void
test_server_unexpected_message(void **state)
{
    struct pst_sasl_server *s;
    struct pst_cred *cred;
    struct pst_buf out;
    size_t len;
    const uint8_t *pw;

    (void)state;
    pst_buf_init(&out, 1024, 0);
    assert_rc(pst_cred_parse("{PLAIN}pw", 9, &cred), 0);

    /* A message when the server resumes after the lookup. */
    assert_rc(pst_sasl_server_new(login, &scfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"tim", 3, &out),
              PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"pw", 2, &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"extra", 5, &out),
              PST_ESTATE);
    assert_string_equal(pst_sasl_server_reason(s),
                        "LOGIN: message after the password");
    assert_null(pst_sasl_server_password(s, &len));
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);

    /* A message when the server resumes after the verdict. */
    assert_rc(pst_sasl_server_new(login, &scfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"tim", 3, &out),
              PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"pw", 2, &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_NEED_VERIFY);
    pw = pst_sasl_server_password(s, &len);
    assert_bytes_equal(pw, len, "pw", 2);
    assert_rc(pst_sasl_server_verified(s, 1), 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"", 0, &out),
              PST_ESTATE);
    assert_string_equal(pst_sasl_server_reason(s),
                        "LOGIN: message after the password");
    /* Not authenticated, however the verdict went. */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);

    pst_cred_free(cred);
    pst_buf_clear(&out);
}

/* --- Both halves --------------------------------------------------------- */

static void
test_exchange_roundtrip(void **state)
{
    static const struct {
        const char *user, *pw, *cred;
        int ir;
        int want;
        unsigned messages;
    } v[] = {
        /* IR: user; "Password:"; password. */
        {"user", "pencil", "{PLAIN}pencil", 1, PST_SASL_DONE, 3},
        /* "Username:"; user; "Password:"; password. */
        {"user", "pencil", "{PLAIN}pencil", 0, PST_SASL_DONE, 4},
        {"j\xc3\xbcrgen", "p\xc3\xa4ss", "{PLAIN}p\xc3\xa4ss", 0,
         PST_SASL_DONE, 4},
        {"user", "pencil2", "{PLAIN}pencil", 1, PST_EAUTH, 3},
        {"user", "pencil", NULL, 0, PST_EAUTH, 4},
        /* The client sends what it is given; the server refuses. */
        {"user", "", "{PLAIN}pencil", 1, PST_EPROTO, 3},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        struct test_exchange x = {
            .mech = "LOGIN", .authcid = v[i].user, .password = v[i].pw,
            .cred_text = v[i].cred, .use_initial_response = v[i].ir,
        };

        fprintf(stderr, "# case %zu\n", i);
        assert_rc(test_run_exchange(&x), v[i].want);
        assert_int_equal(x.messages, v[i].messages);
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
    assert_string_equal(pst_sasl_mech_name(login), "LOGIN");
    assert_ptr_equal(pst_sasl_mech_find("login", 5), login);
    assert_int_equal(pst_sasl_mech_flags(login),
                     PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST);
}

static int
setup(void **state)
{
    (void)state;
    login = pst_sasl_mech_find("LOGIN", 5);
    return login == NULL;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_messages),
        cmocka_unit_test(test_client_bad_order),
        cmocka_unit_test(test_server_success),
        cmocka_unit_test(test_server_failures),
        cmocka_unit_test(test_server_unexpected_message),
        cmocka_unit_test(test_exchange_roundtrip),
        cmocka_unit_test(test_mech),
    };
    return cmocka_run_group_tests_name("login", tests, setup, NULL);
}
