/*
 * OAUTHBEARER (RFC 7628) and XOAUTH2: the RFC 7628 §4 messages and
 * Google's XOAUTH2 example byte for byte on both halves, the error
 * challenges and their dummy responses, in-process round trips, every
 * error status, and the mechanism table's opt-in flags.
 */
#include "testutil.h"

#include "../../lib/sasl/mech.h"

/* RFC 7628 §4.1 (IMAP, port 143, and SMTP, port 587). */
#define RFC_TOKEN "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
#define RFC_IR_143                                                           \
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9"  \
    "MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZ"  \
    "Mjl0Q2c9PQEB"
#define RFC_IR_587                                                           \
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9"  \
    "NTg3AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZ"  \
    "Mjl0Q2c9PQEB"
/* RFC 7628 §4.3: an empty auth= asks for the error result. */
#define RFC_IR_EMPTY_AUTH                                                    \
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9"  \
    "MTQzAWF1dGg9AQE="
#define RFC_ERR_CONFIG                                                       \
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwi"  \
    "b3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtu"  \
    "b3duL29wZW5pZC1jb25maWcifQ=="
#define RFC_ERR_CONFIGURATION                                                \
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwi"  \
    "b3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtu"  \
    "b3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="
/* RFC 7628 §4.4 (SMTP). */
#define RFC_ERR_SMTP                                                         \
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciBtYWMiLCJz"  \
    "Y29wZSI6Imh0dHBzOi8vbWFpbC5leGFtcGxlLmNvbS8ifQ=="

/* Google's XOAUTH2 documentation (developers.google.com/gmail/imap/
 * xoauth2-protocol), also in INTEROP.md. */
#define G_USER  "someuser@example.com"
#define G_TOKEN "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
#define G_IR                                                                 \
    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRx"  \
    "bVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
#define G_ERR                                                                \
    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0"  \
    "cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0K"
/* What Gmail sends today (seen in client test suites):
 * {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"} */
#define G_ERR_NOW                                                            \
    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczov"  \
    "L21haWwuZ29vZ2xlLmNvbS8ifQ=="

#define MSG(s) (const uint8_t *)(s), (sizeof(s) - 1)

static const struct pst_sasl_mech *
mech(const char *name)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(name, strlen(name));

    assert_non_null(m);
    return m;
}

static void
assert_b64(const struct pst_buf *b, const char *b64)
{
    char *got = test_b64enc(b->data, b->len);

    assert_string_equal(got, b64);
    free(got);
}

static struct pst_sasl_client *
client_new(const char *m, const char *user, const char *token,
           const char *host, unsigned port)
{
    struct pst_sasl_client_config cfg = {
        .authcid = user,
        .token = (const uint8_t *)token,
        .token_len = strlen(token),
        .oauth_host = host,
        .oauth_port = port,
    };
    struct pst_sasl_client *c;

    assert_rc(pst_sasl_client_new(mech(m), &cfg, &c), 0);
    return c;
}

static struct pst_sasl_server_config
server_cfg(void)
{
    return (struct pst_sasl_server_config){
        .hostname = "server.example.com",
    };
}

static struct pst_sasl_server *
server_new(const char *m, const struct pst_sasl_server_config *cfg)
{
    struct pst_sasl_server *s;

    assert_rc(pst_sasl_server_new(mech(m), cfg, &s), 0);
    return s;
}

/* --- Client: the documented messages ----------------------------------- */

static void
test_client_vectors(void **state)
{
    static const struct {
        const char *mech, *user, *token, *host;
        unsigned port;
        const char *ir;
    } v[] = {
        {"OAUTHBEARER", "user@example.com", RFC_TOKEN, "server.example.com",
         143, RFC_IR_143},
        {"OAUTHBEARER", "user@example.com", RFC_TOKEN, "server.example.com",
         587, RFC_IR_587},
        {"XOAUTH2", G_USER, G_TOKEN, NULL, 0, G_IR},
        /* XOAUTH2 has no host or port: they are not sent. */
        {"XOAUTH2", G_USER, G_TOKEN, "server.example.com", 587, G_IR},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        for (int ir = 0; ir <= 1; ir++) {
            struct pst_sasl_client *c = client_new(
                v[i].mech, v[i].user, v[i].token, v[i].host, v[i].port);
            size_t n = 99;

            /* As an initial response, or after the empty "334 ". */
            assert_rc(pst_sasl_client_step(c, ir ? NULL : MSG(""), &out),
                      PST_SASL_CONTINUE);
            assert_b64(&out, v[i].ir);
            /* The server says 235: fine, no proof is owed. */
            assert_rc(pst_sasl_client_finish(c), 0);
            assert_null(pst_sasl_client_error_json(c, &n));
            assert_int_equal(n, 0);
            pst_sasl_client_free(c);
        }
    }
    pst_buf_clear(&out);
}

/* The optional kvpairs: no host, no port; an authzid other than the
 * user; "," and "=" escaped in a= (RFC 5801 §4 saslname). */
static void
test_client_forms(void **state)
{
    static const struct {
        const char *user, *authzid, *host;
        unsigned port;
        const char *want;
    } v[] = {
        {"u@x", NULL, NULL, 0, "n,a=u@x,\001auth=Bearer tok\001\001"},
        {"u@x", NULL, "h", 0, "n,a=u@x,\001host=h\001auth=Bearer tok\001\001"},
        {"u@x", NULL, NULL, 25, "n,a=u@x,\001port=25\001auth=Bearer "
                                "tok\001\001"},
        {"u@x", "boss@x", NULL, 0, "n,a=boss@x,\001auth=Bearer "
                                   "tok\001\001"},
        {"a,b=c", NULL, NULL, 0, "n,a=a=2Cb=3Dc,\001auth=Bearer "
                                 "tok\001\001"},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client_config cfg = {
            .authcid = v[i].user,
            .authzid = v[i].authzid,
            .token = (const uint8_t *)"tok",
            .token_len = 3,
            .oauth_host = v[i].host,
            .oauth_port = v[i].port,
        };
        struct pst_sasl_client *c;

        assert_rc(pst_sasl_client_new(mech("OAUTHBEARER"), &cfg, &c), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out),
                  PST_SASL_CONTINUE);
        assert_bytes_equal(out.data, out.len, v[i].want,
                           strlen(v[i].want));
        pst_sasl_client_free(c);
    }
    pst_buf_clear(&out);
}

/*
 * The error challenges: OAUTHBEARER answers 0x01 (RFC 7628 §3.2.3, "AQ=="
 * in §4.3 and §4.4), XOAUTH2 an empty response (Google); the JSON is kept;
 * a success afterwards is not believed; a further challenge is an error.
 */
static void
test_client_error_challenge(void **state)
{
    static const struct {
        const char *mech, *user, *token, *err, *answer;
    } v[] = {
        {"OAUTHBEARER", "user@example.com", RFC_TOKEN, RFC_ERR_CONFIG,
         "AQ=="},
        {"OAUTHBEARER", "someuser@example.com", RFC_TOKEN, RFC_ERR_SMTP,
         "AQ=="},
        {"XOAUTH2", G_USER, G_TOKEN, G_ERR, ""},
        {"XOAUTH2", G_USER, G_TOKEN, G_ERR_NOW, ""},
    };
    struct pst_buf out, err;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client *c = client_new(v[i].mech, v[i].user,
                                               v[i].token, NULL, 0);
        const uint8_t *json;
        size_t json_len = 99;

        test_b64dec(v[i].err, &err);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_client_step(c, err.data, err.len, &out),
                  PST_SASL_CONTINUE);
        assert_b64(&out, v[i].answer);
        json = pst_sasl_client_error_json(c, &json_len);
        assert_non_null(json);
        assert_bytes_equal(json, json_len, err.data, err.len);
        /* "235" now would contradict the refusal. */
        assert_rc(pst_sasl_client_finish(c), PST_EREJECT);
        /* Only the failure may follow. */
        assert_rc(pst_sasl_client_step(c, MSG(""), &out), PST_EPROTO);
        assert_rc(pst_sasl_client_step(c, MSG(""), &out), PST_ESTATE);
        assert_rc(pst_sasl_client_finish(c), PST_ESTATE);
        /* The JSON stays readable for the log. */
        assert_non_null(pst_sasl_client_error_json(c, &json_len));
        pst_sasl_client_free(c);
        pst_buf_clear(&err);
    }
    pst_buf_clear(&out);
}

/* Every error of the client half. */
static void
test_client_errors(void **state)
{
    char big[PST_SASL_MAX_TOKEN + 2];
    struct pst_sasl_client_config cfg = {
        .authcid = "u@x",
        .token = (const uint8_t *)"tok",
        .token_len = 3,
    };
    struct pst_sasl_client *c = (struct pst_sasl_client *)&c;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    for (int m = 0; m < 2; m++) {
        const struct pst_sasl_mech *me = mech(m ? "XOAUTH2" : "OAUTHBEARER");
        struct pst_sasl_client_config bad;

        /* No token, a token that is not a b64token, a NULL token with a
         * length, no user. */
        bad = cfg;
        bad.token = NULL;
        bad.token_len = 0;
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        assert_null(c);
        bad.token = (const uint8_t *)"a b";
        bad.token_len = 3;
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        bad.token = (const uint8_t *)"a\001b";
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        bad.token = (const uint8_t *)"=abc";
        bad.token_len = 4;
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        bad.token = (const uint8_t *)"ab=c";
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        bad.token = (const uint8_t *)"ab\0c";
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        bad.token = NULL;
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        bad = cfg;
        bad.authcid = NULL;
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_EINVAL);
        /* Longer than PST_SASL_MAX_TOKEN. */
        memset(big, 'a', sizeof(big));
        bad = cfg;
        bad.token = (const uint8_t *)big;
        bad.token_len = PST_SASL_MAX_TOKEN + 1;
        assert_rc(pst_sasl_client_new(me, &bad, &c), PST_ELIMIT);
        bad.token_len = PST_SASL_MAX_TOKEN;
        assert_rc(pst_sasl_client_new(me, &bad, &c), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out),
                  PST_SASL_CONTINUE);
        pst_sasl_client_free(c);

        /* A first challenge that is not empty: no initial response was
         * asked for, so it makes no sense. */
        assert_rc(pst_sasl_client_new(me, &cfg, &c), 0);
        assert_rc(pst_sasl_client_step(c, MSG("x"), &out), PST_EPROTO);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
        pst_sasl_client_free(c);
        /* A step with nothing after the credentials. */
        assert_rc(pst_sasl_client_new(me, &cfg, &c), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out),
                  PST_SASL_CONTINUE);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
        pst_sasl_client_free(c);
        /* A challenge above the SASL message limit. */
        assert_rc(pst_sasl_client_new(me, &cfg, &c), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out),
                  PST_SASL_CONTINUE);
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)big,
                                       PST_SASL_MAX_MESSAGE + 1, &out),
                  PST_ELIMIT);
        pst_sasl_client_free(c);
    }
    /* XOAUTH2's user= cannot hold 0x01; OAUTHBEARER's host= must be
     * VCHAR. */
    cfg.authcid = "u\001x";
    assert_rc(pst_sasl_client_new(mech("XOAUTH2"), &cfg, &c), PST_EINVAL);
    cfg.authcid = "u@x";
    cfg.oauth_host = "a b";
    assert_rc(pst_sasl_client_new(mech("OAUTHBEARER"), &cfg, &c),
              PST_EINVAL);
    cfg.oauth_host = "a\001b";
    assert_rc(pst_sasl_client_new(mech("OAUTHBEARER"), &cfg, &c),
              PST_EINVAL);
    cfg.oauth_host = "";
    assert_rc(pst_sasl_client_new(mech("OAUTHBEARER"), &cfg, &c),
              PST_EINVAL);
    pst_buf_clear(&out);
}

/* --- Server: the documented messages ----------------------------------- */

/* Step the server with base64 b64; return its rc. */
static int
sstep_b64(struct pst_sasl_server *s, const char *b64, struct pst_buf *out)
{
    struct pst_buf in;
    int rc;

    test_b64dec(b64, &in);
    rc = pst_sasl_server_step(s, in.data != NULL ? in.data
                                                 : (const uint8_t *)"",
                              in.len, out);
    pst_buf_clear(&in);
    return rc;
}

static void
test_server_vectors(void **state)
{
    static const struct {
        const char *mech, *ir, *user, *token;
        unsigned port;
    } v[] = {
        {"OAUTHBEARER", RFC_IR_143, "user@example.com", RFC_TOKEN, 143},
        {"OAUTHBEARER", RFC_IR_587, "user@example.com", RFC_TOKEN, 587},
        {"OAUTHBEARER", RFC_IR_587, "user@example.com", RFC_TOKEN, 0},
        {"XOAUTH2", G_IR, G_USER, G_TOKEN, 0},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        for (int ir = 0; ir <= 1; ir++) {
            struct pst_sasl_server_config cfg = server_cfg();
            struct pst_sasl_server *s;
            const uint8_t *pw;
            size_t len;

            cfg.oauth_port = v[i].port;
            s = server_new(v[i].mech, &cfg);
            if (!ir) {
                /* AUTH without an initial response: "334 " first. */
                assert_rc(pst_sasl_server_step(s, NULL, 0, &out),
                          PST_SASL_CONTINUE);
                assert_int_equal(out.len, 0);
            }
            assert_rc(sstep_b64(s, v[i].ir, &out), PST_SASL_NEED_VERIFY);
            assert_string_equal(pst_sasl_server_authcid(s), v[i].user);
            assert_null(pst_sasl_server_authzid(s));
            pw = pst_sasl_server_password(s, &len);
            assert_bytes_equal(pw, len, v[i].token, strlen(v[i].token));
            /* No credentials are asked for: the verifier decides. */
            assert_rc(pst_sasl_server_set_cred(s, NULL), PST_ESTATE);
            assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
            assert_rc(pst_sasl_server_verified(s, 1), 0);
            assert_null(pst_sasl_server_password(s, &len));
            assert_rc(pst_sasl_server_step(s, NULL, 0, &out),
                      PST_SASL_DONE);
            assert_int_equal(out.len, 0);
            assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_ESTATE);
            pst_sasl_server_free(s);
        }
    }
    pst_buf_clear(&out);
}

/* RFC 7628 §4.3: the empty auth= gets the error result byte for byte, the
 * client's "AQ==" ends it in failure. */
static void
test_server_rfc_error(void **state)
{
    static const struct {
        const char *openid, *err;
    } v[] = {
        {"https://example.com/.well-known/openid-config", RFC_ERR_CONFIG},
        {"https://example.com/.well-known/openid-configuration",
         RFC_ERR_CONFIGURATION},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg = server_cfg();
        struct pst_sasl_server *s;

        cfg.oauth_scope = "example_scope";
        cfg.oauth_openid_configuration = v[i].openid;
        s = server_new("OAUTHBEARER", &cfg);
        assert_rc(sstep_b64(s, RFC_IR_EMPTY_AUTH, &out), PST_SASL_CONTINUE);
        assert_b64(&out, v[i].err);
        assert_rc(sstep_b64(s, "AQ==", &out), PST_EAUTH);
        assert_string_equal(pst_sasl_server_reason(s),
                            "OAUTHBEARER: no bearer token");
        assert_int_equal(out.len, 0);
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&out);
}

/*
 * A refused token: the error challenge of each mechanism (XOAUTH2 as
 * Gmail sends it today), then failure whatever the dummy response is.
 */
static void
test_server_refused_token(void **state)
{
    static const struct {
        const char *mech, *ir, *scope, *err, *dummy;
        const char *reason;
    } v[] = {
        {"XOAUTH2", G_IR, "https://mail.google.com/", G_ERR_NOW, "",
         "XOAUTH2: token refused"},
        /* {"status":"401","schemes":"bearer"} without a scope. */
        {"XOAUTH2", G_IR, NULL,
         "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=", "",
         "XOAUTH2: token refused"},
        /* {"status":"invalid_token"} */
        {"OAUTHBEARER", RFC_IR_143, NULL,
         "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=", "AQ==",
         "OAUTHBEARER: token refused"},
        /* A client that answers something else still just fails. */
        {"OAUTHBEARER", RFC_IR_143, NULL,
         "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=", "eA==",
         "OAUTHBEARER: token refused"},
    };
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg = server_cfg();
        struct pst_sasl_server *s;

        cfg.oauth_scope = v[i].scope;
        s = server_new(v[i].mech, &cfg);
        assert_rc(sstep_b64(s, v[i].ir, &out), PST_SASL_NEED_VERIFY);
        assert_rc(pst_sasl_server_verified(s, 0), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_b64(&out, v[i].err);
        assert_rc(sstep_b64(s, v[i].dummy, &out), PST_EAUTH);
        assert_string_equal(pst_sasl_server_reason(s), v[i].reason);
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&out);
}

/* The JSON strings are escaped (RFC 8259 §7). */
static void
test_server_json_escaping(void **state)
{
    struct pst_sasl_server_config cfg = server_cfg();
    struct pst_sasl_server *s;
    struct pst_buf out;
    static const char want[] =
        "{\"status\":\"invalid_token\",\"scope\":\"a\\\"b\\\\c\\u0001\"}";

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    cfg.oauth_scope = "a\"b\\c\001";
    s = server_new("OAUTHBEARER", &cfg);
    assert_rc(pst_sasl_server_step(s, MSG("n,a=u,\001auth=\001\001"), &out),
              PST_SASL_CONTINUE);
    assert_bytes_equal(out.data, out.len, want, sizeof(want) - 1);
    pst_sasl_server_free(s);
    pst_buf_clear(&out);
}

/* The parsers, row by row: what is malformed (501), what gets the error
 * challenge at once, and what reaches the verifier. */
static void
test_server_parse(void **state)
{
    enum { VERIFY = 100, TOKEN_ERR, REQUEST_ERR };
    static const struct {
        const char *mech;
        const char *in;
        size_t len;
        int want;     /* PST_EPROTO, PST_ELIMIT, VERIFY, *_ERR */
        const char *user, *token;
    } v[] = {
#define ROW(m, s, w) {m, s, sizeof(s) - 1, w, NULL, NULL}
#define OK(m, s, u, t) {m, s, sizeof(s) - 1, VERIFY, u, t}
        /* XOAUTH2 */
        OK("XOAUTH2", "user=u@x\001auth=Bearer tok\001\001", "u@x", "tok"),
        OK("XOAUTH2", "user=u@x\001auth=bearer   tok==\001\001", "u@x",
           "tok=="),
        ROW("XOAUTH2", "", PST_EPROTO),
        ROW("XOAUTH2", "user=", PST_EPROTO),
        ROW("XOAUTH2", "user=\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer tok\001", PST_EPROTO),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer tok", PST_EPROTO),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer tok\001\001\001",
            PST_EPROTO),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer tok\001\001x", PST_EPROTO),
        ROW("XOAUTH2", "auth=Bearer tok\001user=u@x\001\001", PST_EPROTO),
        ROW("XOAUTH2", "User=u@x\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("XOAUTH2", "user=u@x\001host=h\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("XOAUTH2", "user=u\0x\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("XOAUTH2", "user=\xff\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer\001\001", TOKEN_ERR),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer \001\001", TOKEN_ERR),
        ROW("XOAUTH2", "user=u@x\001auth=Basic dTpw\001\001", TOKEN_ERR),
        ROW("XOAUTH2", "user=u@x\001auth=Bearer a b\001\001", TOKEN_ERR),
        ROW("XOAUTH2", "user=u@x\001auth=\001\001", TOKEN_ERR),
        /* OAUTHBEARER */
        OK("OAUTHBEARER", "n,a=u@x,\001auth=Bearer tok\001\001", "u@x",
           "tok"),
        OK("OAUTHBEARER", "y,a=u@x,\001auth=Bearer tok\001\001", "u@x",
           "tok"),
        OK("OAUTHBEARER", "n,a=a=2Cb=3Dc,\001auth=Bearer tok\001\001",
           "a,b=c", "tok"),
        /* Unknown keys are ignored (RFC 7628 §3.1), so are reserved ones;
         * values may hold SP, HTAB, CR, LF. */
        OK("OAUTHBEARER",
           "n,a=u@x,\001mthd=POST\001qs=\001xyz=a b\t\r\n\001"
           "auth=Bearer tok\001\001", "u@x", "tok"),
        OK("OAUTHBEARER",
           "n,a=u@x,\001auth=Bearer tok\001host=SERVER.example.com\001"
           "\001", "u@x", "tok"),
        ROW("OAUTHBEARER", "\001", PST_EPROTO),
        ROW("OAUTHBEARER", "", PST_EPROTO),
        ROW("OAUTHBEARER", "F,n,a=u,\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "p=tls-unique,a=u,\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,auth=Bearer tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,,\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,b=u,\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=,\001auth=Bearer tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u=2X,\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer tok\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer tok", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer tok\001\001x",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer tok\001auth=Bearer "
            "tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001a1=x\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001=x\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001host\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001qs=\0\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001port=0143\001auth=Bearer "
            "tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001port=65536\001auth=Bearer "
            "tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001port=\001auth=Bearer tok\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001host=a\001host=a\001auth=Bearer "
            "tok\001\001", PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer tok\001\001", VERIFY),
        ROW("OAUTHBEARER", "n,a=u,\001auth=\001\001", TOKEN_ERR),
        ROW("OAUTHBEARER", "n,a=u,\001auth=OAuth realm=x\001\001",
            TOKEN_ERR),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer t\xc3\xa9\001\001",
            PST_EPROTO),
        ROW("OAUTHBEARER", "n,a=u,\001auth=Bearer to ken\001\001",
            TOKEN_ERR),
        /* RFC 7628 §3.2: host= and port= must match the server's. */
        ROW("OAUTHBEARER", "n,a=u,\001host=other.example\001auth=Bearer "
            "tok\001\001", REQUEST_ERR),
        ROW("OAUTHBEARER", "n,a=u,\001host=127.0.0.1\001auth=Bearer "
            "tok\001\001", VERIFY),
        ROW("OAUTHBEARER", "n,a=u,\001port=587\001auth=Bearer "
            "tok\001\001", VERIFY),
        ROW("OAUTHBEARER", "n,a=u,\001port=143\001auth=Bearer "
            "tok\001\001", REQUEST_ERR),
#undef ROW
#undef OK
    };
    static const char *const uri_hosts[] = {"127.0.0.1", NULL};
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg = server_cfg();
        struct pst_sasl_server *s;
        int rc;

        cfg.uri_hosts = uri_hosts;
        cfg.oauth_port = 587;
        s = server_new(v[i].mech, &cfg);
        rc = pst_sasl_server_step(s, (const uint8_t *)v[i].in, v[i].len,
                                  &out);
        if (v[i].want == VERIFY) {
            if (rc != PST_SASL_NEED_VERIFY) {
                fprintf(stderr, "row %zu: got %s (%s), want NEED_VERIFY\n",
                        i, pst_errname(rc), pst_sasl_server_reason(s));
                fail();
            }
            if (v[i].user != NULL) {
                size_t len;
                const uint8_t *t = pst_sasl_server_password(s, &len);

                assert_string_equal(pst_sasl_server_authcid(s), v[i].user);
                assert_bytes_equal(t, len, v[i].token, strlen(v[i].token));
            }
        } else if (v[i].want == TOKEN_ERR || v[i].want == REQUEST_ERR) {
            const char *st =
                strcmp(v[i].mech, "XOAUTH2") == 0
                    ? (v[i].want == TOKEN_ERR ? "401" : "400")
                    : (v[i].want == TOKEN_ERR ? "invalid_token"
                                              : "invalid_request");
            char want[128];

            if (rc != PST_SASL_CONTINUE) {
                fprintf(stderr, "row %zu: got %s (%s), want CONTINUE\n", i,
                        pst_errname(rc), pst_sasl_server_reason(s));
                fail();
            }
            snprintf(want, sizeof(want), "{\"status\":\"%s\"%s}", st,
                     strcmp(v[i].mech, "XOAUTH2") == 0
                         ? ",\"schemes\":\"bearer\""
                         : "");
            assert_buf_str(&out, want);
            assert_rc(pst_sasl_server_step(s, MSG("\001"), &out),
                      PST_EAUTH);
        } else if (rc != v[i].want) {
            fprintf(stderr, "row %zu: got %s (%s), want %s\n", i,
                    pst_errname(rc), pst_sasl_server_reason(s),
                    pst_errname(v[i].want));
            fail();
        }
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&out);
}

/* Every error status of the server half, and its resume points. */
static void
test_server_errors(void **state)
{
    struct pst_sasl_server_config cfg = server_cfg();
    struct pst_sasl_server *s;
    struct pst_buf out, msg;
    size_t len;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&msg, 2 * PST_SASL_MAX_MESSAGE, 1);
    /* PST_ELIMIT: a token above PST_SASL_MAX_TOKEN, a message above the
     * SASL limit. */
    for (int m = 0; m < 2; m++) {
        const char *name = m ? "XOAUTH2" : "OAUTHBEARER";

        pst_buf_reset(&msg);
        assert_rc(pst_buf_append_str(&msg, m ? "user=u\001auth=Bearer "
                                             : "n,a=u,\001auth=Bearer "),
                  0);
        for (size_t i = 0; i < PST_SASL_MAX_TOKEN + 1; i++)
            assert_rc(pst_buf_append_byte(&msg, 'a'), 0);
        assert_rc(pst_buf_append_str(&msg, "\001\001"), 0);
        s = server_new(name, &cfg);
        assert_rc(pst_sasl_server_step(s, msg.data, msg.len, &out),
                  PST_ELIMIT);
        assert_string_equal(pst_sasl_server_reason(s), "token too long");
        pst_sasl_server_free(s);
        s = server_new(name, &cfg);
        while (msg.len <= PST_SASL_MAX_MESSAGE)
            assert_rc(pst_buf_append_byte(&msg, 'a'), 0);
        assert_rc(pst_sasl_server_step(s, msg.data, msg.len, &out),
                  PST_ELIMIT);
        pst_sasl_server_free(s);
        /* PST_ESTATE: resuming with input, stepping while the verdict is
         * awaited, a verdict never asked for. */
        s = server_new(name, &cfg);
        assert_rc(pst_sasl_server_verified(s, 1), PST_ESTATE);
        assert_null(pst_sasl_server_password(s, &len));
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
        pst_sasl_server_free(s);
        /* PST_EAUTH after a refusal; then PST_ESTATE for ever. */
        s = server_new(name, &cfg);
        {
            const char *first = m ? "user=u\001auth=Bearer t\001\001"
                                  : "n,a=u,\001auth=Bearer t\001\001";

            assert_rc(pst_sasl_server_step(s, (const uint8_t *)first,
                                           strlen(first), &out),
                      PST_SASL_NEED_VERIFY);
        }
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
        assert_rc(pst_sasl_server_verified(s, 0), 0);
        assert_rc(pst_sasl_server_verified(s, 0), PST_ESTATE);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, (const uint8_t *)"\001",
                                       m ? 0 : 1, &out),
                  PST_EAUTH);
        assert_rc(pst_sasl_server_step(s, MSG(""), &out), PST_ESTATE);
        pst_sasl_server_free(s);
    }
    pst_buf_clear(&msg);
    pst_buf_clear(&out);
}

/* --- Round trips -------------------------------------------------------- */

/*
 * Our client against our server; the verifier accepts exactly the token
 * "good" + the row's suffix for user "u@x".  Returns the server's last rc.
 */
struct trip {
    const char *mech;
    const char *user, *authzid;
    const char *token;
    int ir;
    /* Results: */
    int client_finish;
    unsigned messages;
    char json[256];
};

static int
roundtrip(struct trip *t, const char *good_token)
{
    struct pst_sasl_client_config ccfg = {
        .authcid = t->user,
        .authzid = t->authzid,
        .token = (const uint8_t *)t->token,
        .token_len = strlen(t->token),
        .oauth_host = "server.example.com",
        .oauth_port = 587,
    };
    struct pst_sasl_server_config scfg = server_cfg();
    struct pst_sasl_client *c;
    struct pst_sasl_server *s;
    struct pst_buf cb, sb;
    int crc, src;

    scfg.oauth_port = 587;
    scfg.oauth_scope = "https://mail.example.com/";
    pst_buf_init(&cb, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&sb, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_client_new(mech(t->mech), &ccfg, &c), 0);
    assert_rc(pst_sasl_server_new(mech(t->mech), &scfg, &s), 0);
    t->messages = 0;
    if (t->ir) {
        crc = pst_sasl_client_step(c, NULL, 0, &cb);
        src = pst_sasl_server_step(s, cb.data, cb.len, &sb);
    } else {
        src = pst_sasl_server_step(s, NULL, 0, &sb);
    }
    t->messages++;
    for (int guard = 0; guard < 8; guard++) {
        if (src == PST_SASL_NEED_VERIFY) {
            size_t len;
            const uint8_t *tok = pst_sasl_server_password(s, &len);
            int ok = strcmp(pst_sasl_server_authcid(s), "u@x") == 0 &&
                     len == strlen(good_token) &&
                     memcmp(tok, good_token, len) == 0;

            assert_rc(pst_sasl_server_verified(s, ok), 0);
            src = pst_sasl_server_step(s, NULL, 0, &sb);
            continue;
        }
        if (src != PST_SASL_CONTINUE)
            break;
        t->messages++;
        crc = pst_sasl_client_step(c, sb.data != NULL ? sb.data
                                                      : (const uint8_t *)"",
                                   sb.len, &cb);
        assert_rc(crc, PST_SASL_CONTINUE);
        t->messages++;
        src = pst_sasl_server_step(s, cb.data != NULL ? cb.data
                                                      : (const uint8_t *)"",
                                   cb.len, &sb);
    }
    t->client_finish = pst_sasl_client_finish(c);
    {
        size_t n;
        const uint8_t *j = pst_sasl_client_error_json(c, &n);

        snprintf(t->json, sizeof(t->json), "%.*s", (int)n,
                 j != NULL ? (const char *)j : "");
    }
    pst_sasl_client_free(c);
    pst_sasl_server_free(s);
    pst_buf_clear(&cb);
    pst_buf_clear(&sb);
    return src;
}

static void
test_roundtrip(void **state)
{
    char tok1200[1201], tokmax[PST_SASL_MAX_TOKEN + 1];

    (void)state;
    /* A Google service-account sized token: ~1,200 octets; and the
     * largest one. */
    for (size_t i = 0; i < sizeof(tok1200) - 1; i++)
        tok1200[i] = "abcdefghijklmnopqrstuvwxyz0123456789-._~+/"[i % 42];
    tok1200[sizeof(tok1200) - 1] = '\0';
    memset(tokmax, 'Z', sizeof(tokmax) - 1);
    tokmax[sizeof(tokmax) - 1] = '\0';
    for (int m = 0; m < 2; m++) {
        const char *name = m ? "XOAUTH2" : "OAUTHBEARER";
        const char *refusal =
            m ? "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":"
                "\"https://mail.example.com/\"}"
              : "{\"status\":\"invalid_token\",\"scope\":"
                "\"https://mail.example.com/\"}";

        for (int ir = 0; ir <= 1; ir++) {
            struct trip t = {.mech = name, .user = "u@x", .ir = ir};

            t.token = "good";
            assert_rc(roundtrip(&t, "good"), PST_SASL_DONE);
            assert_rc(t.client_finish, 0);
            assert_int_equal(t.messages, ir ? 1u : 3u);
            assert_string_equal(t.json, "");

            t.token = tok1200;
            assert_rc(roundtrip(&t, tok1200), PST_SASL_DONE);
            t.token = tokmax;
            assert_rc(roundtrip(&t, tokmax), PST_SASL_DONE);

            /* Refused: error challenge, dummy response, 535. */
            t.token = "bad";
            assert_rc(roundtrip(&t, "good"), PST_EAUTH);
            assert_rc(t.client_finish, PST_EREJECT);
            assert_int_equal(t.messages, ir ? 3u : 5u);
            assert_string_equal(t.json, refusal);

            /* The verifier checks the user the token is for. */
            t.token = "good";
            t.user = "v@x";
            assert_rc(roundtrip(&t, "good"), PST_EAUTH);
            t.user = "u@x";
            if (!m) {
                /* OAUTHBEARER names the authzid in a=, which is the
                 * user the token must be for. */
                t.authzid = "u@x";
                t.user = "other";
                assert_rc(roundtrip(&t, "good"), PST_SASL_DONE);
                t.authzid = NULL;
                t.user = "u@x";
            }
        }
    }
}

/* --- The mechanism table ------------------------------------------------ */

static void
test_mech_table(void **state)
{
    static const char *const defaults[] = {
        "SCRAM-SHA-256", "SCRAM-SHA-1", "DIGEST-MD5", "CRAM-MD5", "PLAIN",
        "LOGIN",
    };
    size_t i, n_all;
    int seen_xoauth2 = 0, seen_oauthbearer = 0;

    (void)state;
    for (int m = 0; m < 2; m++) {
        const struct pst_sasl_mech *me = mech(m ? "XOAUTH2" : "OAUTHBEARER");

        assert_string_equal(pst_sasl_mech_name(me),
                            m ? "XOAUTH2" : "OAUTHBEARER");
        assert_int_equal(pst_sasl_mech_flags(me),
                         PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST |
                             PST_MECH_BEARER);
        assert_true(pst_sasl_mech_flags(me) & PST_MECH_OPT_IN);
    }
    assert_ptr_equal(mech("xoauth2"), mech("XOAUTH2"));
    assert_ptr_equal(mech("OAuthBearer"), mech("OAUTHBEARER"));
    /* Not among the defaults, which keep their order... */
    for (i = 0; pst_sasl_mech_at(i) != NULL; i++) {
        assert_true(i < PST__ARRAY_LEN(defaults));
        assert_string_equal(pst_sasl_mech_name(pst_sasl_mech_at(i)),
                            defaults[i]);
        assert_false(pst_sasl_mech_flags(pst_sasl_mech_at(i)) &
                     PST_MECH_OPT_IN);
    }
    assert_int_equal(i, PST__ARRAY_LEN(defaults));
    /* ... but in the full list, after them. */
    for (n_all = 0; pst_sasl_mech_all_at(n_all) != NULL; n_all++) {
        const char *name = pst_sasl_mech_name(pst_sasl_mech_all_at(n_all));

        seen_xoauth2 |= strcmp(name, "XOAUTH2") == 0;
        seen_oauthbearer |= strcmp(name, "OAUTHBEARER") == 0;
        assert_ptr_equal(pst_sasl_mech_find(name, strlen(name)),
                         pst_sasl_mech_all_at(n_all));
    }
    assert_true(seen_xoauth2 && seen_oauthbearer);
    assert_true(n_all > i);
    assert_null(pst_sasl_mech_all_at(n_all + 1));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_vectors),
        cmocka_unit_test(test_client_forms),
        cmocka_unit_test(test_client_error_challenge),
        cmocka_unit_test(test_client_errors),
        cmocka_unit_test(test_server_vectors),
        cmocka_unit_test(test_server_rfc_error),
        cmocka_unit_test(test_server_refused_token),
        cmocka_unit_test(test_server_json_escaping),
        cmocka_unit_test(test_server_parse),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_mech_table),
    };
    return cmocka_run_group_tests_name("sasl_oauth", tests, NULL, NULL);
}
