/*
 * DIGEST-MD5 (RFC 2831): the §4 examples byte for byte through both
 * halves, round trips, and every malformed or mismatched message.
 *
 * Vectors other than the RFC's were computed with Python's hashlib from
 * the formulas of RFC 2831 §2.1.2.1, not with this code.
 */
#include "testutil.h"

#include <openssl/evp.h>

#include "../../lib/sasl/mech.h"

static const struct pst_sasl_mech *dm;

/* --- RFC 2831 §4, user chris, password secret ---------------------------- */

#define RFC_HOST "elwood.innosoft.com"

struct rfc_vector {
    const char *service;
    const char *nonce;
    const char *cnonce;
    const char *challenge;  /* the RFC's server text */
    const char *response;   /* the RFC's client text */
    const char *rspauth;    /* the RFC's final server text */
};

static const struct rfc_vector rfc[] = {
    {
        /* IMAP example. */
        "imap", "OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk",
        "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
        "qop=\"auth\",algorithm=md5-sess,charset=utf-8",
        "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","
        "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
        "digest-uri=\"imap/elwood.innosoft.com\","
        "response=d388dad90d4bbd760a152321f2143af7,qop=auth",
        "rspauth=ea40f60335c427b5527b84dbabcdfffd",
    },
    {
        /* ACAP example. */
        "acap", "OA9BSXrbuRhWay", "OA9BSuZWMSpW8m",
        "realm=\"elwood.innosoft.com\",nonce=\"OA9BSXrbuRhWay\","
        "qop=\"auth\",algorithm=md5-sess,charset=utf-8",
        "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","
        "nonce=\"OA9BSXrbuRhWay\",nc=00000001,cnonce=\"OA9BSuZWMSpW8m\","
        "digest-uri=\"acap/elwood.innosoft.com\","
        "response=6084c6db3fede7352c551284490fd0fc,qop=auth",
        "rspauth=2f0b3d7c3c2e486600ef710726aa2eae",
    },
};

/* MD5("chris:elwood.innosoft.com:secret"), Dovecot's stored form. */
#define RFC_STORED "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7"

/* The pieces of the IMAP example's response, to take apart below. */
#define R_CHARSET "charset=utf-8"
#define R_USER    "username=\"chris\""
#define R_REALM   "realm=\"elwood.innosoft.com\""
#define R_NONCE   "nonce=\"OA6MG9tEQGm2hh\""
#define R_NC      "nc=00000001"
#define R_CNONCE  "cnonce=\"OA6MHXh6VqTrRk\""
#define R_URI     "digest-uri=\"imap/elwood.innosoft.com\""
#define R_RESP    "response=d388dad90d4bbd760a152321f2143af7"
#define R_QOP     "qop=auth"
#define RESP9(a, b, c, d, e, f, g, h, i)                                     \
    a "," b "," c "," d "," e "," f "," g "," h "," i
#define RFC_RESPONSE                                                         \
    RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,       \
          R_RESP, R_QOP)
#define RFC_RSPAUTH "rspauth=ea40f60335c427b5527b84dbabcdfffd"

/* Our challenge for the IMAP example's server (our directive order). */
#define OUR_CHALLENGE                                                        \
    "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",qop=\"auth\","  \
    "charset=utf-8,algorithm=md5-sess"

static const struct pst_sasl_server_config rfc_scfg = {
    .hostname = RFC_HOST,
    .service = "imap",
};

/* --- Driving one server -------------------------------------------------- */

struct server_result {
    int rc;                 /* the last status */
    char authcid[256];      /* "(null)" if none */
    char authzid[256];
    char reason[128];
    char rspauth[64];       /* the last challenge, if rspauth was sent */
};

/*
 * Run a server on the IMAP example's configuration (nonce fixed to
 * OA6MG9tEQGm2hh) with one client message, credentials cred_text (NULL:
 * unknown user), and the empty acknowledgement of rspauth.
 */
static int
server_run(const struct pst_sasl_server_config *cfg, const char *nonce,
           const uint8_t *msg, size_t len, const char *cred_text,
           struct server_result *res)
{
    struct pst_sasl_server *s;
    struct pst_cred *cred = NULL;
    struct pst_buf out;
    int rc;

    memset(res, 0, sizeof(*res));
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    if (cred_text != NULL)
        assert_rc(pst_cred_parse(cred_text, strlen(cred_text), &cred), 0);
    assert_rc(pst_sasl_server_new(dm, cfg, &s), 0);
    assert_rc(pst__digest_md5_server_set_nonce(s, nonce), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    rc = pst_sasl_server_step(s, msg, len, &out);
    if (rc == PST_SASL_NEED_CRED) {
        /* Stepping before the answer is refused. */
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        rc = pst_sasl_server_step(s, NULL, 0, &out);
    }
    if (rc == PST_SASL_CONTINUE) {
        snprintf(res->rspauth, sizeof(res->rspauth), "%.*s", (int)out.len,
                 out.data != NULL ? (const char *)out.data : "");
        rc = pst_sasl_server_step(s, (const uint8_t *)"", 0, &out);
        if (rc == PST_SASL_DONE)
            assert_int_equal(out.len, 0);
    }
    res->rc = rc;
    snprintf(res->authcid, sizeof(res->authcid), "%s",
             pst_sasl_server_authcid(s) ? pst_sasl_server_authcid(s)
                                        : "(null)");
    snprintf(res->authzid, sizeof(res->authzid), "%s",
             pst_sasl_server_authzid(s) ? pst_sasl_server_authzid(s)
                                        : "(null)");
    snprintf(res->reason, sizeof(res->reason), "%s",
             pst_sasl_server_reason(s));
    if (rc < 0)
        assert_true(strlen(res->reason) > 0);
    /* Whatever happened, the exchange is over. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"x", 1, &out),
              PST_ESTATE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
    return rc;
}

static int
server_run_str(const char *msg, const char *cred_text,
               struct server_result *res)
{
    return server_run(&rfc_scfg, "OA6MG9tEQGm2hh", (const uint8_t *)msg,
                      strlen(msg), cred_text, res);
}

/* --- RFC 2831 §4 through the server -------------------------------------- */

static void
rfc_server_check(const struct rfc_vector *v, const char *cred_text)
{
    struct pst_sasl_server_config cfg = {
        .hostname = RFC_HOST,
        .service = v->service,
    };
    struct pst_sasl_server *s;
    struct pst_cred *cred;
    struct pst_buf out;
    char want[256];

    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_cred_parse(cred_text, strlen(cred_text), &cred), 0);
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst__digest_md5_server_set_nonce(s, v->nonce), 0);
    /* The challenge: the RFC's directives, algorithm unquoted. */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    snprintf(want, sizeof(want),
             "realm=\"elwood.innosoft.com\",nonce=\"%s\",qop=\"auth\","
             "charset=utf-8,algorithm=md5-sess", v->nonce);
    assert_buf_str(&out, want);
    /* Too late for the hook now. */
    assert_rc(pst__digest_md5_server_set_nonce(s, v->nonce), PST_ESTATE);
    /* The RFC's client response, as it is. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)v->response,
                                   strlen(v->response), &out),
              PST_SASL_NEED_CRED);
    assert_string_equal(pst_sasl_server_authcid(s), "chris");
    assert_null(pst_sasl_server_authzid(s));
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    /* rspauth, byte for byte. */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, v->rspauth);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"", 0, &out),
              PST_SASL_DONE);
    assert_int_equal(out.len, 0);
    /* An extra step after DONE. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"", 0, &out),
              PST_ESTATE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
}

static void
test_rfc_server(void **state)
{
    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(rfc); i++)
        rfc_server_check(&rfc[i], "{PLAIN}secret");
}

/* The same with Dovecot's stored {DIGEST-MD5} verifier instead of the
 * password (needs the credentials module to parse that scheme). */
static void
test_rfc_server_stored(void **state)
{
    struct pst_cred *cred = NULL;
    int rc;

    (void)state;
    rc = pst_cred_parse(RFC_STORED, strlen(RFC_STORED), &cred);
    pst_cred_free(cred);
    if (rc == PST_ESYNTAX) {
        fprintf(stderr, "# pst_cred_parse() does not know {DIGEST-MD5}\n");
        skip();
    }
    assert_rc(rc, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(rfc); i++)
        rfc_server_check(&rfc[i], RFC_STORED);
}

/* --- RFC 2831 §4 through the client -------------------------------------- */

static void
test_rfc_client(void **state)
{
    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(rfc); i++) {
        const struct rfc_vector *v = &rfc[i];
        struct pst_sasl_client_config cfg = {
            .authcid = "chris",
            .password = (const uint8_t *)"secret",
            .password_len = 6,
            .service = v->service,
            .host = RFC_HOST,
        };
        struct pst_sasl_client *c;
        struct pst_buf out;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
        assert_rc(pst__digest_md5_client_set_cnonce(c, v->cnonce), 0);
        /* Server-first: no initial response. */
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_int_equal(out.len, 0);
        /* The RFC's challenge gives the RFC's response, byte for byte
         * (our directive order is the example's). */
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)v->challenge,
                                       strlen(v->challenge), &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, v->response);
        /* Success before rspauth would be a forged server. */
        assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)v->rspauth,
                                       strlen(v->rspauth), &out),
                  PST_SASL_DONE);
        assert_int_equal(out.len, 0);
        assert_rc(pst_sasl_client_finish(c), 0);
        /* An extra challenge. */
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)v->rspauth,
                                       strlen(v->rspauth), &out),
                  PST_ESTATE);
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
}

/* --- Server: what it accepts and how it fails ---------------------------- */

struct server_case {
    const char *name;
    const char *msg;
    size_t len;             /* 0: strlen(msg) */
    const char *cred;       /* NULL: "{PLAIN}secret" */
    int want;
    const char *reason;     /* NULL: any */
    const char *authcid;    /* NULL: don't check */
};

static const struct server_case server_cases[] = {
    /* Accepted forms of the RFC's response. */
    {"as in the RFC", RFC_RESPONSE, 0, NULL, PST_SASL_DONE, NULL, "chris"},
    {"directives in another order",
     RESP9(R_QOP, R_RESP, R_URI, R_CNONCE, R_NC, R_NONCE, R_REALM, R_USER,
           R_CHARSET),
     0, NULL, PST_SASL_DONE, NULL, NULL},
    {"LWS around commas and =",
     " charset = utf-8 ,\tusername=\"chris\" , realm=\"elwood.innosoft.com\""
     ",nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
     "digest-uri=\"imap/elwood.innosoft.com\",\r\n response="
     "d388dad90d4bbd760a152321f2143af7,qop=auth ",
     0, NULL, PST_SASL_DONE, NULL, NULL},
    {"null elements (RFC 2831 §7.1)",
     ",," R_CHARSET ",," R_USER "," R_REALM "," R_NONCE "," R_NC ", ,"
     R_CNONCE "," R_URI "," R_RESP "," R_QOP ",",
     0, NULL, PST_SASL_DONE, NULL, NULL},
    {"names and keywords in upper case",
     "CHARSET=UTF-8,Username=\"chris\",REALM=\"elwood.innosoft.com\","
     "Nonce=\"OA6MG9tEQGm2hh\",NC=00000001,CNonce=\"OA6MHXh6VqTrRk\","
     "Digest-URI=\"imap/elwood.innosoft.com\","
     "RESPONSE=d388dad90d4bbd760a152321f2143af7,QOP=auth",
     0, NULL, PST_SASL_DONE, NULL, NULL},
    {"values quoted that may be tokens",
     "charset=\"utf-8\",username=\"chris\",realm=\"elwood.innosoft.com\","
     "nonce=\"OA6MG9tEQGm2hh\",nc=\"00000001\",cnonce=\"OA6MHXh6VqTrRk\","
     "digest-uri=\"imap/elwood.innosoft.com\","
     "response=\"d388dad90d4bbd760a152321f2143af7\",qop=\"auth\"",
     0, NULL, PST_SASL_DONE, NULL, NULL},
    {"escaped characters in a quoted value",
     RESP9(R_CHARSET, "username=\"\\c\\h\\r\\i\\s\"", R_REALM, R_NONCE,
           R_NC, R_CNONCE, R_URI, R_RESP, R_QOP),
     0, NULL, PST_SASL_DONE, NULL, "chris"},
    {"unknown directives are ignored",
     RFC_RESPONSE ",foo=\"bar\",x-ext=1,maxbuf=65536",
     0, NULL, PST_SASL_DONE, NULL, NULL},
    {"no charset (ISO 8859-1, ASCII alike)",
     RESP9("", R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI, R_RESP,
           R_QOP),
     0, NULL, PST_SASL_DONE, NULL, "chris"},
    {"no qop (defaults to auth)",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           R_RESP, ""),
     0, NULL, PST_SASL_DONE, NULL, NULL},
    /* Without realm the client hashed an empty one; the RFC's response
     * was made with the realm, so it no longer matches. */
    {"no realm: A1 with an empty realm",
     RESP9(R_CHARSET, R_USER, "", R_NONCE, R_NC, R_CNONCE, R_URI, R_RESP,
           R_QOP),
     0, NULL, PST_EAUTH, "response mismatch", "chris"},

    /* Credentials. */
    {"wrong password", RFC_RESPONSE, 0, "{PLAIN}secreT", PST_EAUTH,
     "response mismatch", "chris"},
    {"password prefix", RFC_RESPONSE, 0, "{PLAIN}secre", PST_EAUTH,
     "response mismatch", NULL},

    /* Duplicates (RFC 2831 §2.1.2: each "exactly once"/"at most once"). */
    {"two nonce", RFC_RESPONSE "," R_NONCE, 0, NULL, PST_EPROTO,
     "DIGEST-MD5: duplicated directive", NULL},
    {"two username", R_USER "," RFC_RESPONSE, 0, NULL, PST_EPROTO, NULL,
     NULL},
    {"two response", RFC_RESPONSE "," R_RESP, 0, NULL, PST_EPROTO, NULL,
     NULL},
    {"two realm", RFC_RESPONSE "," R_REALM, 0, NULL, PST_EPROTO, NULL, NULL},
    {"two qop", RFC_RESPONSE "," R_QOP, 0, NULL, PST_EPROTO, NULL, NULL},
    {"two charset", R_CHARSET "," RFC_RESPONSE, 0, NULL, PST_EPROTO, NULL,
     NULL},
    {"two authzid", RFC_RESPONSE ",authzid=\"a\",authzid=\"a\"", 0, NULL,
     PST_EPROTO, NULL, NULL},
    {"two maxbuf", RFC_RESPONSE ",maxbuf=65536,maxbuf=65536", 0, NULL,
     PST_EPROTO, NULL, NULL},

    /* Missing required directives, each in turn. */
    {"no username",
     RESP9(R_CHARSET, "", R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI, R_RESP,
           R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: response without username", NULL},
    {"no nonce",
     RESP9(R_CHARSET, R_USER, R_REALM, "", R_NC, R_CNONCE, R_URI, R_RESP,
           R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: response without nonce", NULL},
    {"no nc",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, "", R_CNONCE, R_URI, R_RESP,
           R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: response without nc", NULL},
    {"no cnonce",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, "", R_URI, R_RESP,
           R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: response without cnonce", NULL},
    {"no digest-uri",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, "", R_RESP,
           R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: response without digest-uri", NULL},
    {"no response",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI, "",
           R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: response without response", NULL},

    /* Values. */
    {"nc=00000002",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, "nc=00000002", R_CNONCE,
           R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: nc is not 00000001", NULL},
    {"nc=1",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, "nc=1", R_CNONCE, R_URI,
           R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"nc in upper-case hex",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, "nc=0000000A", R_CNONCE,
           R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"qop=auth-int",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           R_RESP, "qop=auth-int"),
     0, NULL, PST_EPROTO, "DIGEST-MD5: qop not offered", NULL},
    {"qop=auth-conf",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           R_RESP, "qop=auth-conf,cipher=rc4"),
     0, NULL, PST_EPROTO, "DIGEST-MD5: qop not offered", NULL},
    {"qop unknown",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           R_RESP, "qop=auth-none"),
     0, NULL, PST_EPROTO, "DIGEST-MD5: unknown qop", NULL},
    {"wrong realm",
     RESP9(R_CHARSET, R_USER, "realm=\"innosoft.com\"", R_NONCE, R_NC,
           R_CNONCE, R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: realm mismatch", NULL},
    {"empty realm",
     RESP9(R_CHARSET, R_USER, "realm=\"\"", R_NONCE, R_NC, R_CNONCE, R_URI,
           R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: realm mismatch", NULL},
    {"wrong nonce",
     RESP9(R_CHARSET, R_USER, R_REALM, "nonce=\"OA6MG9tEQGm2hH\"", R_NC,
           R_CNONCE, R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: nonce mismatch", NULL},
    {"nonce prefix",
     RESP9(R_CHARSET, R_USER, R_REALM, "nonce=\"OA6MG9tEQGm2h\"", R_NC,
           R_CNONCE, R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: nonce mismatch", NULL},
    {"empty cnonce",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, "cnonce=\"\"", R_URI,
           R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"empty username",
     RESP9(R_CHARSET, "username=\"\"", R_REALM, R_NONCE, R_NC, R_CNONCE,
           R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"response in upper case",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           "response=D388DAD90D4BBD760A152321F2143AF7", R_QOP),
     0, NULL, PST_EPROTO,
     "DIGEST-MD5: response is not 32 lowercase hex digits", NULL},
    {"response short",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           "response=d388dad90d4bbd760a152321f2143af", R_QOP),
     0, NULL, PST_EPROTO,
     "DIGEST-MD5: response is not 32 lowercase hex digits", NULL},
    {"response long",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           "response=d388dad90d4bbd760a152321f2143af70", R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"response not hex",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,
           "response=g388dad90d4bbd760a152321f2143af7", R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"charset other than utf-8",
     RESP9("charset=iso-8859-1", R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: charset is not utf-8", NULL},
    {"username not UTF-8 with charset=utf-8",
     RESP9(R_CHARSET, "username=\"chr\xe9s\"", R_REALM, R_NONCE, R_NC,
           R_CNONCE, R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, "DIGEST-MD5: username or realm is not UTF-8",
     NULL},
    {"authzid not UTF-8",
     RFC_RESPONSE ",authzid=\"\xff\"", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: authzid is not UTF-8", NULL},

    /* digest-uri: serv-type strict, host ours (RFC 2831 §2.1.2). */
    {"digest-uri of another service",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"smtp/elwood.innosoft.com\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri service in upper case",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"IMAP/elwood.innosoft.com\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri of another host",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/innosoft.com\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri host a suffix",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/elwood.innosoft.com.evil\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri without host",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri without slash",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri with empty serv-name",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/elwood.innosoft.com/\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    {"digest-uri with two serv-names",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/elwood.innosoft.com/a/b\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "digest-uri mismatch", NULL},
    /* Accepted by the digest-uri check; then the RFC's response (made for
     * another digest-uri) no longer matches. */
    {"digest-uri with a serv-name",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/elwood.innosoft.com/innosoft.com\"", R_RESP,
           R_QOP),
     0, NULL, PST_EAUTH, "response mismatch", NULL},
    {"digest-uri host in upper case",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=\"imap/ELWOOD.Innosoft.COM\"", R_RESP, R_QOP),
     0, NULL, PST_EAUTH, "response mismatch", NULL},

    /* Syntax (RFC 2831 §7). */
    {"unterminated quote",
     RFC_RESPONSE ",authzid=\"chris", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: unterminated quoted string", NULL},
    {"unterminated quote mid-message",
     RESP9(R_CHARSET, "username=\"chris", R_REALM, R_NONCE, R_NC, R_CNONCE,
           R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"backslash at the end",
     RFC_RESPONSE ",authzid=\"chris\\", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: backslash at the end of the message", NULL},
    {"escaped control character",
     RFC_RESPONSE ",authzid=\"a\\\x01\"", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: bad escape in quoted string", NULL},
    {"escaped 8-bit octet",
     RFC_RESPONSE ",authzid=\"a\\\xc3\xa9\"", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: bad escape in quoted string", NULL},
    {"control character in quotes",
     RFC_RESPONSE ",authzid=\"a\rb\"", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: control character in quoted string", NULL},
    {"unquoted digest-uri (\"/\" is a separator)",
     RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE,
           "digest-uri=imap/elwood.innosoft.com", R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"no = after the name", "username\"chris\"," RFC_RESPONSE, 0, NULL,
     PST_EPROTO, NULL, NULL},
    {"empty token value", "qop=," RFC_RESPONSE, 0, NULL, PST_EPROTO,
     "DIGEST-MD5: unexpected character in value", NULL},
    {"empty token value at the end", RFC_RESPONSE ",qop=", 0, NULL,
     PST_EPROTO, "DIGEST-MD5: empty value", NULL},
    {"no comma between directives",
     R_CHARSET " " R_USER "," R_REALM "," R_NONCE "," R_NC "," R_CNONCE
     "," R_URI "," R_RESP "," R_QOP,
     0, NULL, PST_EPROTO, "DIGEST-MD5: expected \",\" between directives",
     NULL},
    {"text after a quoted value",
     RESP9(R_CHARSET, "username=\"chris\"x", R_REALM, R_NONCE, R_NC,
           R_CNONCE, R_URI, R_RESP, R_QOP),
     0, NULL, PST_EPROTO, NULL, NULL},
    {"8-bit octet outside quotes", RFC_RESPONSE ",x=\xc3\xa9", 0, NULL,
     PST_EPROTO, NULL, NULL},
    {"bare CR LF", RFC_RESPONSE "\r\n", 0, NULL, PST_EPROTO, NULL, NULL},
    {"semicolon separator",
     R_CHARSET ";" R_USER "," R_REALM "," R_NONCE "," R_NC "," R_CNONCE
     "," R_URI "," R_RESP "," R_QOP,
     0, NULL, PST_EPROTO, NULL, NULL},
    {"NUL in the message", RFC_RESPONSE "\0,x=1", sizeof(RFC_RESPONSE) + 4,
     NULL, PST_EPROTO, "DIGEST-MD5: NUL in message", NULL},
    {"NUL in a quoted value", "username=\"ch\0ris\"", 17, NULL, PST_EPROTO,
     "DIGEST-MD5: NUL in message", NULL},
    {"garbage", "hello world", 0, NULL, PST_EPROTO, NULL, NULL},
    {"garbage symbols", "@@@", 0, NULL, PST_EPROTO,
     "DIGEST-MD5: unexpected character", NULL},
    {"only commas", " , ,, ", 0, NULL, PST_EPROTO, "DIGEST-MD5: no directive",
     NULL},
    {"an = only", "=", 0, NULL, PST_EPROTO, NULL, NULL},
    {"the challenge sent back", OUR_CHALLENGE, 0, NULL, PST_EPROTO, NULL,
     NULL},
    {"the RFC's rspauth sent back", RFC_RSPAUTH, 0, NULL, PST_EPROTO, NULL,
     NULL},
};

static void
test_server_cases(void **state)
{
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(server_cases); i++) {
        const struct server_case *k = &server_cases[i];
        struct server_result res;
        size_t len = k->len != 0 ? k->len : strlen(k->msg);
        int rc;

        rc = server_run(&rfc_scfg, "OA6MG9tEQGm2hh", (const uint8_t *)k->msg,
                        len, k->cred != NULL ? k->cred : "{PLAIN}secret",
                        &res);
        if (rc != k->want) {
            fprintf(stderr, "%s: got %s, want %s (reason \"%s\")\n",
                    k->name, rc < 0 ? pst_errname(rc) : "progress",
                    k->want < 0 ? pst_errname(k->want) : "DONE", res.reason);
            failed++;
            continue;
        }
        if (k->reason != NULL && strcmp(res.reason, k->reason) != 0) {
            fprintf(stderr, "%s: reason got \"%s\", want \"%s\"\n", k->name,
                    res.reason, k->reason);
            failed++;
        }
        if (k->authcid != NULL && strcmp(res.authcid, k->authcid) != 0) {
            fprintf(stderr, "%s: authcid got \"%s\", want \"%s\"\n",
                    k->name, res.authcid, k->authcid);
            failed++;
        }
        if (rc == PST_SASL_DONE && strcmp(res.rspauth, RFC_RSPAUTH) != 0) {
            fprintf(stderr, "%s: rspauth got \"%s\", want \"%s\"\n", k->name,
                    res.rspauth, RFC_RSPAUTH);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

/* Values over the bound, and messages over RFC 2831's sizes. */
static void
test_server_overlong(void **state)
{
    char msg[PST_SASL_MAX_MESSAGE + 2];
    struct server_result res;
    size_t n;

    (void)state;
    /* A value of 1025 octets (unknown directive, so only the bound). */
    n = (size_t)snprintf(msg, sizeof(msg), "%s,x=\"", RFC_RESPONSE);
    memset(msg + n, 'a', PST__DIGEST_MAX_VALUE + 1);
    n += PST__DIGEST_MAX_VALUE + 1;
    msg[n++] = '"';
    msg[n] = '\0';
    assert_rc(server_run_str(msg, "{PLAIN}secret", &res), PST_EPROTO);
    assert_string_equal(res.reason, "DIGEST-MD5: directive value too long");
    /* 1024 octets is fine. */
    msg[n - 2] = '"';
    msg[n - 1] = '\0';
    assert_rc(server_run_str(msg, "{PLAIN}secret", &res), PST_SASL_DONE);
    /* As a token too. */
    n = (size_t)snprintf(msg, sizeof(msg), "%s,x=", RFC_RESPONSE);
    memset(msg + n, 'a', PST__DIGEST_MAX_VALUE + 1);
    msg[n + PST__DIGEST_MAX_VALUE + 1] = '\0';
    assert_rc(server_run_str(msg, "{PLAIN}secret", &res), PST_EPROTO);
    assert_string_equal(res.reason, "DIGEST-MD5: directive value too long");
    /* A user name of 1025 octets. */
    n = (size_t)snprintf(msg, sizeof(msg), "%s,username=\"", RFC_RESPONSE);
    memset(msg + n, 'u', PST__DIGEST_MAX_VALUE + 1);
    n += PST__DIGEST_MAX_VALUE + 1;
    memcpy(msg + n, "\"", 2);
    assert_rc(server_run_str(msg + strlen(RFC_RESPONSE) + 1, NULL, &res),
              PST_EPROTO);
    /* A long directive name. */
    assert_rc(server_run_str(RFC_RESPONSE ",abcdefghijklmnopqrstuvwxyz0123456"
                             "=1", "{PLAIN}secret", &res), PST_EPROTO);
    assert_string_equal(res.reason, "DIGEST-MD5: directive name too long");
    /* RFC 2831 §2.1.2: "less than 4096 bytes". */
    n = (size_t)snprintf(msg, sizeof(msg), "%s", RFC_RESPONSE);
    while (n < PST__DIGEST_MAX_RESPONSE - 4)
        msg[n++] = ',';
    msg[n] = '\0';
    assert_int_equal(n, PST__DIGEST_MAX_RESPONSE - 4);
    assert_rc(server_run_str(msg, "{PLAIN}secret", &res), PST_SASL_DONE);
    while (n < PST__DIGEST_MAX_RESPONSE)
        msg[n++] = ',';
    msg[n] = '\0';
    assert_rc(server_run_str(msg, "{PLAIN}secret", &res), PST_EPROTO);
    assert_string_equal(res.reason, "DIGEST-MD5: message too long");
}

/* The user name's character set (RFC 2831 §2.1.2; see digest_md5.c). */
static void
test_server_charsets(void **state)
{
    /* "jürgen" in ISO 8859-1, no charset directive. */
    static const char latin1[] =
        "username=\"j\xfcrgen\",realm=\"elwood.innosoft.com\","
        "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
        "digest-uri=\"imap/elwood.innosoft.com\","
        "response=41d9729b625ab325b0e7a29382eb1bfa,qop=auth";
    /* "jürgen" in UTF-8 with charset=utf-8, hashed as sent. */
    static const char utf8[] =
        "charset=utf-8,username=\"j\xc3\xbcrgen\","
        "realm=\"elwood.innosoft.com\","
        "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
        "digest-uri=\"imap/elwood.innosoft.com\","
        "response=884079dbe1db2ca6805b75eb65eba6c5,qop=auth";
    /* A realm in ISO 8859-1 is compared with ours in UTF-8. */
    static const struct pst_sasl_server_config cfg8 = {
        .hostname = RFC_HOST,
        .realm = "d\xc3\xa9j\xc3\xa0",
        .service = "imap",
    };
    static const char latin1_realm[] =
        "username=\"chris\",realm=\"d\xe9j\xe0\","
        "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
        "digest-uri=\"imap/elwood.innosoft.com\","
        "response=d388dad90d4bbd760a152321f2143af7,qop=auth";
    struct server_result res;

    (void)state;
    assert_rc(server_run_str(latin1, "{PLAIN}secret", &res), PST_SASL_DONE);
    assert_string_equal(res.authcid, "j\xc3\xbcrgen");
    assert_string_equal(res.rspauth,
                        "rspauth=4e99f15c7bf78121c9a1d0c933ab5f3b");
    assert_rc(server_run_str(utf8, "{PLAIN}secret", &res), PST_SASL_DONE);
    assert_string_equal(res.authcid, "j\xc3\xbcrgen");
    assert_string_equal(res.rspauth,
                        "rspauth=b35db48b46012ef75545795c446ec3e8");
    /* The realm matches (it gets as far as the digest). */
    assert_rc(server_run(&cfg8, "OA6MG9tEQGm2hh",
                         (const uint8_t *)latin1_realm, strlen(latin1_realm),
                         "{PLAIN}secret", &res), PST_EAUTH);
    assert_string_equal(res.reason, "response mismatch");
    /* ... and the same octets under charset=utf-8 are not UTF-8. */
    assert_rc(server_run(&cfg8, "OA6MG9tEQGm2hh",
                         (const uint8_t *)"charset=utf-8,x=1", 17,
                         "{PLAIN}secret", &res), PST_EPROTO);
}

/* An authzid enters A1 (RFC 2831 §2.1.2.1); one equal to the user name
 * (mutt, git send-email) means no proxying.  Vector from hashlib. */
#define AUTHZID_RESPONSE                                                     \
    RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC, R_CNONCE, R_URI,       \
          "response=b1b19eb65cf78f4fa5b9fc515757b655", R_QOP)                \
    ",authzid=\"chris\""
#define AUTHZID_RSPAUTH "rspauth=1a16e5ea733e6c675236527ffefd5156"

static void
test_authzid_vector(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "chris",
        .authzid = "chris",
        .password = (const uint8_t *)"secret",
        .password_len = 6,
        .service = "imap",
        .host = RFC_HOST,
    };
    struct pst_sasl_client *c;
    struct server_result res;
    struct pst_buf out;

    (void)state;
    assert_rc(server_run_str(AUTHZID_RESPONSE, "{PLAIN}secret", &res),
              PST_SASL_DONE);
    assert_string_equal(res.rspauth, AUTHZID_RSPAUTH);
    assert_string_equal(res.authcid, "chris");
    assert_string_equal(res.authzid, "(null)");
    /* Without authzid in A1 the same response value is wrong. */
    assert_rc(server_run_str(RESP9(R_CHARSET, R_USER, R_REALM, R_NONCE, R_NC,
                                   R_CNONCE, R_URI,
                                   "response=b1b19eb65cf78f4fa5b9fc515757b655",
                                   R_QOP),
                             "{PLAIN}secret", &res),
              PST_EAUTH);
    /* An empty authzid is none: A1 as in the RFC. */
    assert_rc(server_run_str(RFC_RESPONSE ",authzid=\"\"", "{PLAIN}secret",
                             &res), PST_SASL_DONE);
    assert_string_equal(res.authzid, "(null)");

    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst__digest_md5_client_set_cnonce(c, "OA6MHXh6VqTrRk"), 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)OUR_CHALLENGE,
                                   strlen(OUR_CHALLENGE), &out),
              PST_SASL_CONTINUE);
    assert_buf_str(&out, AUTHZID_RESPONSE);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)AUTHZID_RSPAUTH,
                                   strlen(AUTHZID_RSPAUTH), &out),
              PST_SASL_DONE);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
}

/* Unknown user and a user without a usable verifier fail like a wrong
 * password, after the same work. */
static void
test_server_unknown_user(void **state)
{
    static const char no_dmd5[] =
        "{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0"
        "U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    struct pst_cred *cred = NULL;
    struct server_result res;

    (void)state;
    assert_rc(server_run_str(RFC_RESPONSE, NULL, &res), PST_EAUTH);
    assert_string_equal(res.reason, "unknown user");
    assert_string_equal(res.authcid, "chris");
    if (pst_cred_parse(no_dmd5, strlen(no_dmd5), &cred) != 0) {
        fprintf(stderr, "# pst_cred_parse() does not know {SHA512-CRYPT}\n");
        skip();
    }
    pst_cred_free(cred);
    assert_rc(server_run_str(RFC_RESPONSE, no_dmd5, &res), PST_EAUTH);
    assert_string_equal(res.reason, "no DIGEST-MD5 or PLAIN verifier");
}

/* Order, state and the random source. */
static void
test_server_states(void **state)
{
    struct pst_sasl_server *s;
    struct pst_buf out;
    struct test_rand r = {.bytes = (const uint8_t *)"0123456789abcdefgh",
                          .len = 18};
    struct pst_sasl_server_config cfg = {.hostname = "mail.example.test"};

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    /* RFC 4954 §4: an initial response to a server-first mechanism, even
     * an empty one ("="), is refused. */
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"", 0, &out),
              PST_EPROTO);
    assert_int_equal(out.len, 0);
    pst_sasl_server_free(s);
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)RFC_RESPONSE,
                                   strlen(RFC_RESPONSE), &out),
              PST_EPROTO);
    pst_sasl_server_free(s);

    /* The nonce is base64 of 18 random octets; the realm defaults to the
     * host name. */
    cfg.random = test_random;
    cfg.random_ctx = &r;
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, "realm=\"mail.example.test\","
                         "nonce=\"MDEyMzQ1Njc4OWFiY2RlZmdo\",qop=\"auth\","
                         "charset=utf-8,algorithm=md5-sess");
    /* The response is awaited: no empty step. */
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);

    /* A configured realm, with characters to escape. */
    cfg.realm = "a\"b\\c";
    r.pos = 0;
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, "realm=\"a\\\"b\\\\c\","
                         "nonce=\"MDEyMzQ1Njc4OWFiY2RlZmdo\",qop=\"auth\","
                         "charset=utf-8,algorithm=md5-sess");
    pst_sasl_server_free(s);

    /* A failing random source. */
    cfg.random = test_random_fail;
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ETEMP);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_ESTATE);
    pst_sasl_server_free(s);

    /* The test hook: only DIGEST-MD5, only printable, only before. */
    assert_rc(pst_sasl_server_new(dm, &cfg, &s), 0);
    assert_rc(pst__digest_md5_server_set_nonce(s, ""), PST_EINVAL);
    assert_rc(pst__digest_md5_server_set_nonce(s, "a b"), PST_EINVAL);
    assert_rc(pst__digest_md5_server_set_nonce(s, NULL), PST_EINVAL);
    pst_sasl_server_free(s);
    assert_rc(pst_sasl_server_new(pst_sasl_mech_find("PLAIN", 5), &cfg, &s),
              0);
    assert_rc(pst__digest_md5_server_set_nonce(s, "abc"), PST_EINVAL);
    pst_sasl_server_free(s);
    pst_buf_clear(&out);
}

/* After rspauth, the client's answer must be empty. */
static void
test_server_after_rspauth(void **state)
{
    struct pst_sasl_server *s;
    struct pst_cred *cred;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_cred_parse("{PLAIN}secret", 13, &cred), 0);
    assert_rc(pst_sasl_server_new(dm, &rfc_scfg, &s), 0);
    assert_rc(pst__digest_md5_server_set_nonce(s, "OA6MG9tEQGm2hh"), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)RFC_RESPONSE,
                                   strlen(RFC_RESPONSE), &out),
              PST_SASL_NEED_CRED);
    assert_rc(pst_sasl_server_set_cred(s, cred), 0);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_buf_str(&out, RFC_RSPAUTH);
    /* The RFC's response again instead of the empty acknowledgement. */
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)RFC_RESPONSE,
                                   strlen(RFC_RESPONSE), &out),
              PST_EPROTO);
    assert_string_equal(pst_sasl_server_reason(s),
                        "DIGEST-MD5: non-empty answer to rspauth");
    assert_rc(pst_sasl_server_step(s, (const uint8_t *)"", 0, &out),
              PST_ESTATE);
    pst_sasl_server_free(s);
    pst_cred_free(cred);
    pst_buf_clear(&out);
}

/* --- Client: challenges it takes and refuses ----------------------------- */

#define C_REALM "realm=\"elwood.innosoft.com\""
#define C_NONCE "nonce=\"OA6MG9tEQGm2hh\""
#define C_QOP   "qop=\"auth\""
#define C_ALGO  "algorithm=md5-sess"
#define C_CS    "charset=utf-8"

struct client_case {
    const char *name;
    const char *challenge;
    size_t len;             /* 0: strlen */
    int want;               /* the answer to the challenge */
    const char *response;   /* NULL: the RFC's (when want is CONTINUE) */
};

static const struct client_case client_cases[] = {
    {"the RFC's challenge", C_REALM "," C_NONCE "," C_QOP "," C_ALGO "," C_CS,
     0, PST_SASL_CONTINUE, NULL},
    {"our order", OUR_CHALLENGE, 0, PST_SASL_CONTINUE, NULL},
    {"reversed", C_CS "," C_ALGO "," C_QOP "," C_NONCE "," C_REALM, 0,
     PST_SASL_CONTINUE, NULL},
    {"algorithm quoted",
     C_REALM "," C_NONCE "," C_QOP ",algorithm=\"md5-sess\"," C_CS, 0,
     PST_SASL_CONTINUE, NULL},
    {"qop unquoted", C_REALM "," C_NONCE ",qop=auth," C_ALGO "," C_CS, 0,
     PST_SASL_CONTINUE, NULL},
    {"qop list with others",
     C_REALM "," C_NONCE ",qop=\"auth-conf, auth-int ,auth,x-new\","
     "cipher=\"rc4,3des\",maxbuf=1024," C_ALGO "," C_CS,
     0, PST_SASL_CONTINUE, NULL},
    {"no qop: auth", C_REALM "," C_NONCE "," C_ALGO "," C_CS, 0,
     PST_SASL_CONTINUE, NULL},
    {"two realms: the first",
     C_REALM ",realm=\"other.example\"," C_NONCE "," C_QOP "," C_ALGO
     "," C_CS,
     0, PST_SASL_CONTINUE, NULL},
    {"unknown directives", C_REALM ",x=\"y\"," C_NONCE ",stale=true," C_QOP
     "," C_ALGO "," C_CS, 0, PST_SASL_CONTINUE, NULL},
    /* No realm offered: none sent, A1 with an empty realm. */
    {"no realm", C_NONCE "," C_QOP "," C_ALGO "," C_CS, 0, PST_SASL_CONTINUE,
     "charset=utf-8,username=\"chris\",nonce=\"OA6MG9tEQGm2hh\","
     "nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
     "digest-uri=\"imap/elwood.innosoft.com\","
     "response=695dcc815019923b9d438fd28c641aa9,qop=auth"},
    /* No charset: ISO 8859-1, no charset directive in the answer. */
    {"no charset", C_REALM "," C_NONCE "," C_QOP "," C_ALGO, 0,
     PST_SASL_CONTINUE,
     "username=\"chris\",realm=\"elwood.innosoft.com\","
     "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
     "digest-uri=\"imap/elwood.innosoft.com\","
     "response=d388dad90d4bbd760a152321f2143af7,qop=auth"},

    {"no nonce", C_REALM "," C_QOP "," C_ALGO "," C_CS, 0, PST_EPROTO, NULL},
    {"empty nonce", C_REALM ",nonce=\"\"," C_QOP "," C_ALGO "," C_CS, 0,
     PST_EPROTO, NULL},
    {"two nonces", C_REALM "," C_NONCE "," C_NONCE "," C_QOP "," C_ALGO
     "," C_CS, 0, PST_EPROTO, NULL},
    /* A client that accepts auth only (the default) and a server that
     * does not offer it: nothing in common. */
    {"qop without auth", C_REALM "," C_NONCE ",qop=\"auth-int,auth-conf\","
     C_ALGO "," C_CS, 0, PST_ENOTSUP, NULL},
    {"empty qop", C_REALM "," C_NONCE ",qop=\"\"," C_ALGO "," C_CS, 0,
     PST_EPROTO, NULL},
    {"two qop", C_REALM "," C_NONCE "," C_QOP "," C_QOP "," C_ALGO "," C_CS,
     0, PST_EPROTO, NULL},
    {"no algorithm", C_REALM "," C_NONCE "," C_QOP "," C_CS, 0, PST_EPROTO,
     NULL},
    {"algorithm md5", C_REALM "," C_NONCE "," C_QOP ",algorithm=md5," C_CS,
     0, PST_EPROTO, NULL},
    {"two algorithm", C_REALM "," C_NONCE "," C_QOP "," C_ALGO "," C_ALGO
     "," C_CS, 0, PST_EPROTO, NULL},
    {"charset latin1", C_REALM "," C_NONCE "," C_QOP "," C_ALGO
     ",charset=iso-8859-1", 0, PST_EPROTO, NULL},
    {"two charset", C_REALM "," C_NONCE "," C_QOP "," C_ALGO "," C_CS "," C_CS,
     0, PST_EPROTO, NULL},
    {"two maxbuf", OUR_CHALLENGE ",maxbuf=1024,maxbuf=1024", 0, PST_EPROTO,
     NULL},
    {"realm not UTF-8", "realm=\"\xff\"," C_NONCE "," C_QOP "," C_ALGO
     "," C_CS, 0, PST_EPROTO, NULL},
    {"unterminated quote", C_REALM "," C_NONCE "," C_QOP "," C_ALGO "," C_CS
     ",x=\"abc", 0, PST_EPROTO, NULL},
    {"NUL", OUR_CHALLENGE "\0", sizeof(OUR_CHALLENGE), PST_EPROTO, NULL},
    {"empty", "", 0, PST_EPROTO, NULL},
    {"garbage", "<1896.697170952@postoffice.reston.mci.net>", 0, PST_EPROTO,
     NULL},
};

/* Send the challenge to a fresh client (cnonce of the IMAP example). */
static int
client_answer(const char *challenge, size_t len, struct pst_buf *out,
              struct pst_sasl_client **cp)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "chris",
        .password = (const uint8_t *)"secret",
        .password_len = 6,
        .service = "imap",
        .host = RFC_HOST,
    };
    struct pst_sasl_client *c;
    int rc;

    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst__digest_md5_client_set_cnonce(c, "OA6MHXh6VqTrRk"), 0);
    rc = pst_sasl_client_step(c, (const uint8_t *)challenge, len, out);
    if (cp != NULL)
        *cp = c;
    else
        pst_sasl_client_free(c);
    return rc;
}

static void
test_client_cases(void **state)
{
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(client_cases); i++) {
        const struct client_case *k = &client_cases[i];
        const char *want = k->response != NULL ? k->response : rfc[0].response;
        struct pst_buf out;
        int rc;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        rc = client_answer(k->challenge,
                           k->len != 0 ? k->len : strlen(k->challenge), &out,
                           NULL);
        if (rc != k->want) {
            fprintf(stderr, "%s: got %s, want %s\n", k->name,
                    rc < 0 ? pst_errname(rc) : "progress",
                    k->want < 0 ? pst_errname(k->want) : "CONTINUE");
            failed++;
        } else if (rc == PST_SASL_CONTINUE &&
                   (out.len != strlen(want) ||
                    memcmp(out.data, want, out.len) != 0)) {
            fprintf(stderr, "%s: got \"%.*s\", want \"%s\"\n", k->name,
                    (int)out.len, (const char *)out.data, want);
            failed++;
        } else if (rc < 0 && out.len != 0) {
            fprintf(stderr, "%s: output left after an error\n", k->name);
            failed++;
        }
        pst_buf_clear(&out);
    }
    assert_int_equal(failed, 0);
}

static void
test_client_challenge_too_long(void **state)
{
    char msg[PST__DIGEST_MAX_CHALLENGE + 1];
    struct pst_buf out;
    size_t n;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    /* RFC 2831 §2.1.1: "less than 2048 bytes". */
    n = (size_t)snprintf(msg, sizeof(msg), "%s", rfc[0].challenge);
    while (n < PST__DIGEST_MAX_CHALLENGE - 1)
        msg[n++] = ',';
    assert_rc(client_answer(msg, n, &out, NULL), PST_SASL_CONTINUE);
    msg[n++] = ',';
    assert_rc(client_answer(msg, n, &out, NULL), PST_EPROTO);
    pst_buf_clear(&out);
}

/* The server's proof (RFC 2831 §2.1.3). */
static void
test_client_rspauth(void **state)
{
    static const struct {
        const char *name;
        const char *msg;
        int want;
    } v[] = {
        {"right", RFC_RSPAUTH, PST_SASL_DONE},
        {"quoted", "rspauth=\"ea40f60335c427b5527b84dbabcdfffd\"",
         PST_SASL_DONE},
        {"with an unknown directive",
         "x=1,rspauth=ea40f60335c427b5527b84dbabcdfffd", PST_SASL_DONE},
        {"forged", "rspauth=ea40f60335c427b5527b84dbabcdfffe", PST_EFORGED},
        {"the response value", "rspauth=d388dad90d4bbd760a152321f2143af7",
         PST_EFORGED},
        {"upper case", "rspauth=EA40F60335C427B5527B84DBABCDFFFD",
         PST_EPROTO},
        {"short", "rspauth=ea40f60335c427b5527b84dbabcdfff", PST_EPROTO},
        {"twice", RFC_RSPAUTH "," RFC_RSPAUTH, PST_EPROTO},
        {"no rspauth", "x=1", PST_EPROTO},
        {"empty", "", PST_EPROTO},
        {"a new challenge", OUR_CHALLENGE, PST_EPROTO},
    };
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client *c;
        struct pst_buf out;
        int rc;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        assert_rc(client_answer(rfc[0].challenge, strlen(rfc[0].challenge),
                                &out, &c), PST_SASL_CONTINUE);
        rc = pst_sasl_client_step(c, (const uint8_t *)v[i].msg,
                                  strlen(v[i].msg), &out);
        if (rc != v[i].want) {
            fprintf(stderr, "%s: got %s, want %s\n", v[i].name,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "DONE");
            failed++;
        }
        /* finish() agrees: fine after DONE, never otherwise. */
        if (rc == PST_SASL_DONE) {
            assert_int_equal(out.len, 0);
            assert_rc(pst_sasl_client_finish(c), 0);
        } else {
            assert_true(pst_sasl_client_finish(c) < 0);
        }
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
    assert_int_equal(failed, 0);
}

static void
test_client_states(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "chris",
        .password = (const uint8_t *)"secret",
        .password_len = 6,
        .host = "mail.example.test",
    };
    struct test_rand r = {.bytes = (const uint8_t *)"0123456789abcdefgh",
                          .len = 18};
    struct pst_sasl_client *c;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    /* finish() before anything: no proof. */
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
    /* No initial response, then nothing else to say without a
     * challenge. */
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
    assert_int_equal(out.len, 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
    pst_sasl_client_free(c);

    /* The cnonce is base64 of 18 random octets; service "smtp" by default;
     * the challenge may come on the first step. */
    cfg.random = test_random;
    cfg.random_ctx = &r;
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)rfc[0].challenge,
                                   strlen(rfc[0].challenge), &out),
              PST_SASL_CONTINUE);
    assert_non_null(strstr((const char *)out.data,
                           ",cnonce=\"MDEyMzQ1Njc4OWFiY2RlZmdo\","));
    assert_non_null(strstr((const char *)out.data,
                           ",digest-uri=\"smtp/mail.example.test\","));
    /* The hook is too late now. */
    assert_rc(pst__digest_md5_client_set_cnonce(c, "abc"), PST_ESTATE);
    /* Waiting for rspauth: no empty step. */
    assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_ESTATE);
    pst_sasl_client_free(c);

    /* A failing random source. */
    cfg.random = test_random_fail;
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)rfc[0].challenge,
                                   strlen(rfc[0].challenge), &out),
              PST_ETEMP);
    pst_sasl_client_free(c);

    /* No host for the digest-uri. */
    cfg.host = NULL;
    cfg.random = NULL;
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)rfc[0].challenge,
                                   strlen(rfc[0].challenge), &out),
              PST_EINVAL);
    pst_sasl_client_free(c);

    /* The hook refuses what a quoted-string would need escaping for. */
    cfg.host = "mail.example.test";
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst__digest_md5_client_set_cnonce(c, ""), PST_EINVAL);
    assert_rc(pst__digest_md5_client_set_cnonce(c, "a\x01"), PST_EINVAL);
    pst_sasl_client_free(c);
    assert_rc(pst_sasl_client_new(pst_sasl_mech_find("PLAIN", 5), &cfg, &c),
              0);
    assert_rc(pst__digest_md5_client_set_cnonce(c, "abc"), PST_EINVAL);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
}

/* Character sets of the client (vectors from hashlib). */
static void
test_client_charsets(void **state)
{
    static const struct {
        const char *name;
        const char *user;
        const char *password;
        const char *challenge;
        const char *response;
    } v[] = {
        /* A password that fits ISO 8859-1 is hashed in it (RFC 2831
         * §2.1.2.1, GNU SASL). */
        {"ISO 8859-1 password", "chris", "p\xc3\xa4ssw\xc3\xb6rd",
         OUR_CHALLENGE,
         "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","
         "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
         "digest-uri=\"imap/elwood.innosoft.com\","
         "response=d42ad65a3bcf5572827df9ba512661c3,qop=auth"},
        /* One that does not fit stays UTF-8. */
        {"UTF-8 password", "chris", "p\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac",
         OUR_CHALLENGE,
         "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\","
         "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
         "digest-uri=\"imap/elwood.innosoft.com\","
         "response=f528fb3034e7f100a29f6db32c8dd227,qop=auth"},
        /* charset=utf-8: the name travels and is hashed in UTF-8. */
        {"UTF-8 name", "j\xc3\xbcrgen", "secret", OUR_CHALLENGE,
         "charset=utf-8,username=\"j\xc3\xbcrgen\","
         "realm=\"elwood.innosoft.com\","
         "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
         "digest-uri=\"imap/elwood.innosoft.com\","
         "response=884079dbe1db2ca6805b75eb65eba6c5,qop=auth"},
        /* No charset: the name in ISO 8859-1. */
        {"ISO 8859-1 name", "j\xc3\xbcrgen", "secret",
         C_REALM "," C_NONCE "," C_QOP "," C_ALGO,
         "username=\"j\xfcrgen\",realm=\"elwood.innosoft.com\","
         "nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
         "digest-uri=\"imap/elwood.innosoft.com\","
         "response=41d9729b625ab325b0e7a29382eb1bfa,qop=auth"},
        /* Quotes and backslashes in the name are escaped. */
        {"escaped name", "a\"b\\c", "secret", OUR_CHALLENGE, NULL},
    };

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client_config cfg = {
            .authcid = v[i].user,
            .password = (const uint8_t *)v[i].password,
            .password_len = strlen(v[i].password),
            .service = "imap",
            .host = RFC_HOST,
        };
        struct pst_sasl_client *c;
        struct pst_buf out;

        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
        assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
        assert_rc(pst__digest_md5_client_set_cnonce(c, "OA6MHXh6VqTrRk"), 0);
        assert_rc(pst_sasl_client_step(c, (const uint8_t *)v[i].challenge,
                                       strlen(v[i].challenge), &out),
                  PST_SASL_CONTINUE);
        if (v[i].response != NULL)
            assert_buf_str(&out, v[i].response);
        else
            assert_non_null(strstr((const char *)out.data,
                                   "username=\"a\\\"b\\\\c\","));
        pst_sasl_client_free(c);
        pst_buf_clear(&out);
    }
}

/* A name ISO 8859-1 cannot carry, to a server without charset=utf-8. */
static void
test_client_name_not_latin1(void **state)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "\xe2\x82\xac",
        .password = (const uint8_t *)"secret",
        .password_len = 6,
        .host = RFC_HOST,
    };
    static const char chal[] = C_REALM "," C_NONCE "," C_QOP "," C_ALGO;
    struct pst_sasl_client *c;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_client_new(dm, &cfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)chal, strlen(chal),
                                   &out), PST_ENOTSUP);
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
}

/* --- Round trips --------------------------------------------------------- */

static void
test_roundtrip(void **state)
{
    static const struct {
        const char *name;
        const char *authcid, *authzid, *password, *cred;
        const char *client_host;
        int want;
        const char *authzid_seen;
    } v[] = {
        {"right password", "user", NULL, "pencil", "{PLAIN}pencil", NULL,
         PST_SASL_DONE, ""},
        {"wrong password", "user", NULL, "pencil2", "{PLAIN}pencil", NULL,
         PST_EAUTH, ""},
        {"empty password", "user", NULL, "", "{PLAIN}pencil", NULL,
         PST_EAUTH, ""},
        {"unknown user", "user", NULL, "pencil", NULL, NULL, PST_EAUTH, ""},
        {"authzid equal to the user", "user", "user", "pencil",
         "{PLAIN}pencil", NULL, PST_SASL_DONE, ""},
        {"authzid of another user", "user", "other", "pencil",
         "{PLAIN}pencil", NULL, PST_SASL_DONE, "other"},
        {"digest-uri host in other case", "user", NULL, "pencil",
         "{PLAIN}pencil", "MAIL.Example.TEST", PST_SASL_DONE, ""},
        {"digest-uri of another host", "user", NULL, "pencil",
         "{PLAIN}pencil", "other.example.test", PST_EAUTH, ""},
        {"digest-uri of an address not listed", "user", NULL, "pencil",
         "{PLAIN}pencil", "127.0.0.1", PST_EAUTH, ""},
        {"UTF-8 name and password", "j\xc3\xbcrgen", NULL,
         "p\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac",
         "{PLAIN}p\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac", NULL, PST_SASL_DONE,
         ""},
        {"quotes and backslashes", "a\"b\\c", "d\"e\\f", "p\"w\\",
         "{PLAIN}p\"w\\", NULL, PST_SASL_DONE, "d\"e\\f"},
    };
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct test_exchange x = {
            .mech = "DIGEST-MD5",
            .authcid = v[i].authcid,
            .authzid = v[i].authzid,
            .password = v[i].password,
            .cred_text = v[i].cred,
            .use_initial_response = 1,
            .client_host = v[i].client_host,
        };
        int rc = test_run_exchange(&x);

        if (rc != v[i].want) {
            fprintf(stderr, "%s: got %s, want %s\n", v[i].name,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "DONE");
            failed++;
            continue;
        }
        if (rc != PST_SASL_DONE)
            continue;
        /* Challenge, response, rspauth, empty acknowledgement. */
        if (x.messages != 4 || strcmp(x.authcid_seen, v[i].authcid) != 0 ||
            strcmp(x.authzid_seen, v[i].authzid_seen) != 0) {
            fprintf(stderr, "%s: got %u messages, authcid \"%s\", authzid "
                    "\"%s\"; want 4, \"%s\", \"%s\"\n", v[i].name,
                    x.messages, x.authcid_seen, x.authzid_seen,
                    v[i].authcid, v[i].authzid_seen);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

/* A password that fits ISO 8859-1 is hashed in it by our client (RFC 2831
 * §2.1.2.1, as GNU SASL); the server's H(user:realm:password) comes from
 * pst_cred_digest_md5(), which must do the same with a {PLAIN} password. */
static void
test_roundtrip_latin1_password(void **state)
{
    struct test_exchange x = {
        .mech = "DIGEST-MD5",
        .authcid = "user",
        .password = "p\xc3\xa4ssw\xc3\xb6rd",
        .cred_text = "{PLAIN}p\xc3\xa4ssw\xc3\xb6rd",
    };
    struct pst_cred *cred;
    uint8_t got[16], want[16];

    (void)state;
    assert_rc(pst_cred_parse(x.cred_text, strlen(x.cred_text), &cred), 0);
    assert_rc(pst_cred_digest_md5(cred, "u", "r", got), 0);
    pst_cred_free(cred);
    assert_int_equal(EVP_Digest("u:r:p\xe4ssw\xf6rd", 12, want, NULL,
                                EVP_md5(), NULL), 1);
    if (memcmp(got, want, sizeof(want)) != 0) {
        fprintf(stderr, "# pst_cred_digest_md5() hashes the {PLAIN} "
                        "password in UTF-8, not ISO 8859-1\n");
        skip();
    }
    assert_rc(test_run_exchange(&x), PST_SASL_DONE);
}

/* Our client and server with a configuration test_run_exchange() does not
 * set: listening addresses and a realm. */
static int
exchange(const struct pst_sasl_server_config *scfg, const char *client_host,
         const char **reason)
{
    struct pst_sasl_client_config ccfg = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .host = client_host,
    };
    struct pst_sasl_server *s;
    struct pst_sasl_client *c;
    struct pst_cred *cred;
    struct pst_buf sout, cout;
    int rc;

    pst_buf_init(&sout, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&cout, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_cred_parse("{PLAIN}pencil", 13, &cred), 0);
    assert_rc(pst_sasl_server_new(dm, scfg, &s), 0);
    assert_rc(pst_sasl_client_new(dm, &ccfg, &c), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &cout), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_server_step(s, NULL, 0, &sout), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, sout.data, sout.len, &cout),
              PST_SASL_CONTINUE);
    rc = pst_sasl_server_step(s, cout.data, cout.len, &sout);
    if (rc == PST_SASL_NEED_CRED) {
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        rc = pst_sasl_server_step(s, NULL, 0, &sout);
    }
    if (rc == PST_SASL_CONTINUE) {
        assert_rc(pst_sasl_client_step(c, sout.data, sout.len, &cout),
                  PST_SASL_DONE);
        rc = pst_sasl_server_step(s, cout.data != NULL ? cout.data
                                                       : (const uint8_t *)"",
                                  cout.len, &sout);
        assert_rc(pst_sasl_client_finish(c), 0);
    }
    *reason = rc < 0 ? pst_sasl_server_reason(s) : "";
    /* The reasons are static strings: they outlive s. */
    pst_sasl_server_free(s);
    pst_sasl_client_free(c);
    pst_cred_free(cred);
    pst_buf_clear(&sout);
    pst_buf_clear(&cout);
    return rc;
}

static void
test_roundtrip_uri_hosts(void **state)
{
    static const char *const hosts[] = {"127.0.0.1", "::1", NULL};
    struct pst_sasl_server_config cfg = {
        .hostname = "mail.example.test",
        .uri_hosts = hosts,
        .realm = "example.test",
    };
    static const struct {
        const char *host;
        int want;
    } v[] = {
        {"mail.example.test", PST_SASL_DONE},
        {"127.0.0.1", PST_SASL_DONE},
        {"::1", PST_SASL_DONE},
        {"[::1]", PST_SASL_DONE},
        {"127.0.0.2", PST_EAUTH},
        {"10.0.0.1", PST_EAUTH},
        {"example.test", PST_EAUTH},
    };
    const char *reason;

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        int rc = exchange(&cfg, v[i].host, &reason);

        if (rc != v[i].want) {
            fprintf(stderr, "%s: got %s, want %s (%s)\n", v[i].host,
                    rc < 0 ? pst_errname(rc) : "progress",
                    v[i].want < 0 ? pst_errname(v[i].want) : "DONE", reason);
            fail();
        }
        if (rc == PST_EAUTH)
            assert_string_equal(reason, "digest-uri mismatch");
    }
    /* No uri_hosts: only the host name. */
    cfg.uri_hosts = NULL;
    assert_rc(exchange(&cfg, "127.0.0.1", &reason), PST_EAUTH);
    assert_string_equal(reason, "digest-uri mismatch");
    assert_rc(exchange(&cfg, "mail.example.test", &reason), PST_SASL_DONE);
    /* The service type is checked exactly. */
    cfg.service = "submission";
    assert_rc(exchange(&cfg, "mail.example.test", &reason), PST_EAUTH);
    assert_string_equal(reason, "digest-uri mismatch");
}

static void
test_mech(void **state)
{
    (void)state;
    assert_string_equal(pst_sasl_mech_name(dm), "DIGEST-MD5");
    assert_int_equal(pst_sasl_mech_flags(dm),
                     PST_MECH_SERVER_PROOF | PST_MECH_HISTORIC);
    assert_ptr_equal(pst_sasl_mech_find("digest-md5", 10), dm);
}

static int
setup(void **state)
{
    (void)state;
    dm = pst_sasl_mech_find("DIGEST-MD5", 10);
    return dm == NULL;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_server),
        cmocka_unit_test(test_rfc_server_stored),
        cmocka_unit_test(test_rfc_client),
        cmocka_unit_test(test_server_cases),
        cmocka_unit_test(test_server_overlong),
        cmocka_unit_test(test_server_charsets),
        cmocka_unit_test(test_authzid_vector),
        cmocka_unit_test(test_server_unknown_user),
        cmocka_unit_test(test_server_states),
        cmocka_unit_test(test_server_after_rspauth),
        cmocka_unit_test(test_client_cases),
        cmocka_unit_test(test_client_challenge_too_long),
        cmocka_unit_test(test_client_rspauth),
        cmocka_unit_test(test_client_states),
        cmocka_unit_test(test_client_charsets),
        cmocka_unit_test(test_client_name_not_latin1),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_latin1_password),
        cmocka_unit_test(test_roundtrip_uri_hosts),
        cmocka_unit_test(test_mech),
    };
    return cmocka_run_group_tests_name("digest_md5", tests, setup, NULL);
}
