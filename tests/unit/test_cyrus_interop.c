/*
 * DIGEST-MD5 with its security layers against Cyrus SASL (libsasl2 and
 * its digestmd5 plugin), the implementation that ships auth-conf: our
 * client against Cyrus's server and Cyrus's client against our server,
 * with qop auth, auth-int and auth-conf with des, rc4, rc4-56 and rc4-40.
 * Not 3des: Cyrus 2.1.28 on OpenSSL 3 (Debian 12) cannot run it, its
 * init_3des() fails ("couldn't init cipher '3des'") because
 * DES_key_sched() now returns -1 for a key without odd parity, which its
 * slid keys almost never have (our 3DES is checked against vectors made
 * with Python's "cryptography" in test_digest_conf.c).  After each
 * success, messages go each way through the layers
 * (sasl_encode/sasl_decode against pst_sasl_layer_wrap/unwrap), then one
 * with a bit flipped each way,
 * which each side must refuse.
 *
 * Cyrus's server finds the password in a sasldb made for the run in a
 * temporary directory (sasl_setpass()).  Cyrus chooses qop and cipher by
 * security strength factor: its side of each row gets min_ssf = max_ssf
 * = the row's (1 for auth-int, the cipher's key bits for auth-conf).
 */
#include <stdlib.h>
#include <unistd.h>

#include <sasl/sasl.h>

#include "testutil.h"

#define HOSTNAME "mail.example.test"
#define USER     "tim"
#define PASSWORD "tanstaaftanstaaf"
#define WRONG_PW "tanstaaftanstaaX"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum dir { OUR_CLIENT = 0, CYRUS_CLIENT };

struct row {
    const char *name;
    enum dir dir;
    unsigned qop;          /* PST_SASL_QOP_*: what both sides must use */
    unsigned cipher;       /* PST_SASL_CIPHER_* with auth-conf */
    unsigned ssf;          /* Cyrus's min_ssf = max_ssf */
    int wrong;             /* the client types WRONG_PW */
};

#define ROWS(c, q, ci, s)                                                    \
    {"our client, " c, OUR_CLIENT, q, ci, s, 0},                            \
    {"Cyrus client, " c, CYRUS_CLIENT, q, ci, s, 0}

static const struct row rows[] = {
    ROWS("auth", PST_SASL_QOP_AUTH, 0, 0),
    ROWS("auth-int", PST_SASL_QOP_AUTH_INT, 0, 1),
    ROWS("auth-conf des", PST_SASL_QOP_AUTH_CONF, PST_SASL_CIPHER_DES, 55),
    ROWS("auth-conf rc4", PST_SASL_QOP_AUTH_CONF, PST_SASL_CIPHER_RC4, 128),
    ROWS("auth-conf rc4-56", PST_SASL_QOP_AUTH_CONF,
         PST_SASL_CIPHER_RC4_56, 56),
    ROWS("auth-conf rc4-40", PST_SASL_QOP_AUTH_CONF,
         PST_SASL_CIPHER_RC4_40, 40),
    {"our client, wrong password", OUR_CLIENT, PST_SASL_QOP_AUTH_CONF,
     PST_SASL_CIPHER_RC4, 128, 1},
    {"Cyrus client, wrong password", CYRUS_CLIENT, PST_SASL_QOP_AUTH_CONF,
     PST_SASL_CIPHER_RC4, 128, 1},
};

static char dbdir[] = "/tmp/postern-cyrus-XXXXXX";
static char dbpath[sizeof(dbdir) + 16];
static const struct row *cur;

/*
 * Cyrus's digestmd5 plugin never frees the ciphers it fetches with
 * EVP_CIPHER_fetch() when a layer is set up (seen under ASan; our own
 * code runs with no leaks in test_digest_conf).  LeakSanitizer calls this
 * when the test is built with it: leaks allocated under Cyrus's step
 * functions are Cyrus's.
 */
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:sasl_client_step\nleak:sasl_server_step\n";
}

/* libcrypto has no frame pointers: without the slow unwinder the stacks
 * of those leaks stop before Cyrus's functions. */
const char *
__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}

/* --- Cyrus callbacks ------------------------------------------------------ */

static int
cb_getopt(void *ctx, const char *plugin, const char *option,
          const char **result, unsigned *len)
{
    (void)ctx, (void)plugin;
    if (strcmp(option, "sasldb_path") == 0)
        *result = dbpath;
    else if (strcmp(option, "auxprop_plugin") == 0)
        *result = "sasldb";
    else if (strcmp(option, "mech_list") == 0)
        *result = "DIGEST-MD5";
    /* No subsequent authentication (RFC 2831 §2.2) on Cyrus's server. */
    else if (strcmp(option, "reauth_timeout") == 0)
        *result = "0";
    else
        return SASL_FAIL;
    if (len != NULL)
        *len = (unsigned)strlen(*result);
    return SASL_OK;
}

static int
cb_log(void *ctx, int level, const char *message)
{
    (void)ctx;
    if (getenv("POSTERN_CYRUS_LOG") != NULL)
        fprintf(stderr, "# cyrus[%d]: %s\n", level, message);
    return SASL_OK;
}

static int
cb_simple(void *ctx, int id, const char **result, unsigned *len)
{
    (void)ctx;
    *result = id == SASL_CB_USER ? "" : USER;
    if (len != NULL)
        *len = (unsigned)strlen(*result);
    return SASL_OK;
}

static int
cb_pass(sasl_conn_t *conn, void *ctx, int id, sasl_secret_t **psecret)
{
    static union {
        sasl_secret_t s;
        char space[sizeof(sasl_secret_t) + 64];
    } secret;
    const char *pw = cur->wrong ? WRONG_PW : PASSWORD;

    (void)conn, (void)ctx, (void)id;
    secret.s.len = strlen(pw);
    memcpy(secret.s.data, pw, secret.s.len + 1);
    *psecret = &secret.s;
    return SASL_OK;
}

/* Cyrus takes every callback as int (*)(void); going through
 * void (*)(void) says the cast is meant (-Wcast-function-type). */
#define CB(f) ((int (*)(void))(void (*)(void))(f))

static const sasl_callback_t global_cbs[] = {
    {SASL_CB_GETOPT, CB(cb_getopt), NULL},
    {SASL_CB_LOG, CB(cb_log), NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

static const sasl_callback_t client_cbs[] = {
    {SASL_CB_AUTHNAME, CB(cb_simple), NULL},
    {SASL_CB_USER, CB(cb_simple), NULL},
    {SASL_CB_PASS, CB(cb_pass), NULL},
    {SASL_CB_LOG, CB(cb_log), NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

static void
cyrus_props(sasl_conn_t *conn, unsigned ssf)
{
    sasl_security_properties_t p = {
        .min_ssf = ssf,
        .max_ssf = ssf,
        .maxbufsize = 65536,
    };

    assert_int_equal(sasl_setprop(conn, SASL_SEC_PROPS, &p), SASL_OK);
}

/* --- The run -------------------------------------------------------------- */

struct run {
    const struct row *row;
    sasl_conn_t *conn;
    struct pst_sasl_client *pc;
    struct pst_sasl_server *ps;
    struct pst_cred *cred;
    struct pst_sasl_layer *layer;
    struct pst_buf buf;
};

#define FAIL(r, ...)                                                         \
    do {                                                                     \
        fprintf(stderr, "%s: ", (r)->row->name);                             \
        fprintf(stderr, __VA_ARGS__);                                        \
        fprintf(stderr, "\n");                                               \
        fail();                                                              \
    } while (0)

/* Our client against Cyrus's server.  Returns 0 when both agree on
 * success, 1 when the server refused. */
static int
run_our_client(struct run *r)
{
    const struct row *row = r->row;
    struct pst_sasl_client_config cfg = {
        .authcid = USER,
        .password = (const uint8_t *)(row->wrong ? WRONG_PW : PASSWORD),
        .password_len = strlen(PASSWORD),
        .host = HOSTNAME,
        .digest_qops = row->qop,
        .digest_ciphers = row->cipher,
    };
    const char *out = NULL;
    unsigned out_len = 0;
    int rc;

    assert_int_equal(sasl_server_new("smtp", HOSTNAME, NULL, NULL, NULL,
                                     NULL, 0, &r->conn),
                     SASL_OK);
    cyrus_props(r->conn, row->ssf);
    assert_rc(pst_sasl_client_new(pst_sasl_mech_find("DIGEST-MD5", 10),
                                  &cfg, &r->pc),
              0);
    assert_rc(pst_sasl_client_step(r->pc, NULL, 0, &r->buf),
              PST_SASL_CONTINUE);
    rc = sasl_server_start(r->conn, "DIGEST-MD5", NULL, 0, &out, &out_len);
    if (rc != SASL_CONTINUE)
        FAIL(r, "sasl_server_start: %s", sasl_errstring(rc, NULL, NULL));
    rc = pst_sasl_client_step(r->pc, (const uint8_t *)out, out_len,
                              &r->buf);
    if (rc != PST_SASL_CONTINUE)
        FAIL(r, "our client on Cyrus's challenge: %s (%.*s)",
             pst_errname(rc), (int)out_len, out);
    rc = sasl_server_step(r->conn, (const char *)r->buf.data,
                          (unsigned)r->buf.len, &out, &out_len);
    if (row->wrong) {
        if (rc != SASL_BADAUTH)
            FAIL(r, "Cyrus server: %s, want SASL_BADAUTH",
                 sasl_errstring(rc, NULL, NULL));
        return 1;
    }
    /* Cyrus sends rspauth as one more challenge (SMTP has no success
     * data, RFC 4954 §6), then takes the empty answer. */
    if (rc != SASL_CONTINUE)
        FAIL(r, "Cyrus server: %s (%s)", sasl_errstring(rc, NULL, NULL),
             sasl_errdetail(r->conn));
    rc = pst_sasl_client_step(r->pc, (const uint8_t *)out, out_len,
                              &r->buf);
    if (rc != PST_SASL_DONE || pst_sasl_client_finish(r->pc) != 0)
        FAIL(r, "our client on rspauth: %s", pst_errname(rc));
    rc = sasl_server_step(r->conn, "", 0, &out, &out_len);
    if (rc != SASL_OK)
        FAIL(r, "Cyrus server at the end: %s (%s)",
             sasl_errstring(rc, NULL, NULL), sasl_errdetail(r->conn));
    assert_rc(pst_sasl_client_layer(r->pc, &r->layer), 0);
    return 0;
}

/*
 * Cyrus's client against our server.  Each row has a server name of its
 * own: Cyrus's client remembers the servers it authenticated to and tries
 * subsequent authentication (RFC 2831 §2.2) with them, as an initial
 * response, which SMTP does not allow for DIGEST-MD5 (RFC 4954 §4).
 */
static int
run_cyrus_client(struct run *r)
{
    const struct row *row = r->row;
    char host[64];
    struct pst_sasl_server_config cfg = {
        .hostname = host,
        .digest_qops = row->qop,
        .digest_ciphers = row->cipher,
    };
    const char *out = NULL, *mech = NULL;
    unsigned out_len = 0;
    sasl_interact_t *prompts = NULL;
    int rc;

    snprintf(host, sizeof(host), "r%zu.%s", (size_t)(row - rows), HOSTNAME);
    assert_rc(pst_cred_parse("{PLAIN}" PASSWORD, strlen(PASSWORD) + 7,
                             &r->cred),
              0);
    assert_int_equal(sasl_client_new("smtp", host, NULL, NULL, client_cbs,
                                     0, &r->conn),
                     SASL_OK);
    cyrus_props(r->conn, row->ssf);
    assert_rc(pst_sasl_server_new(pst_sasl_mech_find("DIGEST-MD5", 10),
                                  &cfg, &r->ps),
              0);
    rc = sasl_client_start(r->conn, "DIGEST-MD5", &prompts, &out, &out_len,
                           &mech);
    if (rc != SASL_CONTINUE || (out != NULL && out_len != 0))
        FAIL(r, "sasl_client_start: %s, %u octets",
             sasl_errstring(rc, NULL, NULL), out_len);
    assert_rc(pst_sasl_server_step(r->ps, NULL, 0, &r->buf),
              PST_SASL_CONTINUE);
    rc = sasl_client_step(r->conn, (const char *)r->buf.data,
                          (unsigned)r->buf.len, &prompts, &out, &out_len);
    if (rc != SASL_CONTINUE)
        FAIL(r, "Cyrus client on our challenge: %s (%s)",
             sasl_errstring(rc, NULL, NULL), sasl_errdetail(r->conn));
    rc = pst_sasl_server_step(r->ps, (const uint8_t *)out, out_len, &r->buf);
    if (rc == PST_SASL_NEED_CRED) {
        assert_rc(pst_sasl_server_set_cred(r->ps, r->cred), 0);
        rc = pst_sasl_server_step(r->ps, NULL, 0, &r->buf);
    }
    if (row->wrong) {
        if (rc != PST_EAUTH)
            FAIL(r, "our server: %s, want EAUTH", pst_errname(rc));
        return 1;
    }
    if (rc != PST_SASL_CONTINUE)
        FAIL(r, "our server: %s (%s)", pst_errname(rc),
             pst_sasl_server_reason(r->ps));
    rc = sasl_client_step(r->conn, (const char *)r->buf.data,
                          (unsigned)r->buf.len, &prompts, &out, &out_len);
    if (rc != SASL_OK || out_len != 0)
        FAIL(r, "Cyrus client on rspauth: %s",
             sasl_errstring(rc, NULL, NULL));
    assert_rc(pst_sasl_server_step(r->ps, (const uint8_t *)"", 0, &r->buf),
              PST_SASL_DONE);
    assert_rc(pst_sasl_server_layer(r->ps, &r->layer), 0);
    return 0;
}

/* What Cyrus says it negotiated, against what our layer says. */
static void
check_negotiated(struct run *r)
{
    const struct row *row = r->row;
    const void *v = NULL;
    sasl_ssf_t ssf;

    assert_int_equal(sasl_getprop(r->conn, SASL_SSF, &v), SASL_OK);
    ssf = *(const sasl_ssf_t *)v;
    if (ssf != row->ssf)
        FAIL(r, "Cyrus's ssf %u, want %u", ssf, row->ssf);
    if (row->qop == PST_SASL_QOP_AUTH) {
        if (r->layer != NULL)
            FAIL(r, "a layer for qop auth");
        return;
    }
    if (r->layer == NULL || pst_sasl_layer_qop(r->layer) != row->qop ||
        pst_sasl_layer_cipher(r->layer) != row->cipher)
        FAIL(r, "our layer: qop %u cipher %u, want %u %u",
             r->layer != NULL ? pst_sasl_layer_qop(r->layer) : 0,
             r->layer != NULL ? pst_sasl_layer_cipher(r->layer) : 0,
             row->qop, row->cipher);
}

/* Messages each way, then a forged one each way. */
static void
check_layer(struct run *r)
{
    static const char *const msgs[] = {
        "EHLO client.example\r\n", "x", "MAIL FROM:<tim@example.test>\r\n",
        "a longer line of text that fills several cipher blocks "
        "and then some more\r\n",
    };
    struct pst_buf wire, got;
    const char *out = NULL;
    unsigned out_len = 0;
    size_t used;
    int rc;

    pst_buf_init(&wire, 1 << 16, 0);
    pst_buf_init(&got, 1 << 16, 0);
    for (size_t i = 0; i < ARRAY_LEN(msgs); i++) {
        size_t n = strlen(msgs[i]);

        /* Ours -> Cyrus. */
        pst_buf_reset(&wire);
        assert_rc(pst_sasl_layer_wrap(r->layer, (const uint8_t *)msgs[i], n,
                                      &wire),
                  0);
        rc = sasl_decode(r->conn, (const char *)wire.data,
                         (unsigned)wire.len, &out, &out_len);
        if (rc != SASL_OK || out_len != n || memcmp(out, msgs[i], n) != 0)
            FAIL(r, "sasl_decode of our buffer %zu: %s (%s)", i,
                 sasl_errstring(rc, NULL, NULL), sasl_errdetail(r->conn));
        /* Cyrus -> ours. */
        rc = sasl_encode(r->conn, msgs[i], (unsigned)n, &out, &out_len);
        if (rc != SASL_OK)
            FAIL(r, "sasl_encode %zu: %s", i,
                 sasl_errstring(rc, NULL, NULL));
        pst_buf_reset(&got);
        rc = pst_sasl_layer_unwrap(r->layer, (const uint8_t *)out, out_len,
                                   &used, &got);
        if (rc != 1 || used != out_len || got.len != n ||
            memcmp(got.data, msgs[i], n) != 0)
            FAIL(r, "our unwrap of Cyrus's buffer %zu: %s", i,
                 pst_errname(rc));
    }
    /* A flipped bit in the protected part, each way. */
    pst_buf_reset(&wire);
    assert_rc(pst_sasl_layer_wrap(r->layer, (const uint8_t *)"forged", 6,
                                  &wire),
              0);
    wire.data[5] ^= 0x01;
    rc = sasl_decode(r->conn, (const char *)wire.data, (unsigned)wire.len,
                     &out, &out_len);
    if (rc == SASL_OK)
        FAIL(r, "Cyrus accepted a forged buffer");
    rc = sasl_encode(r->conn, "forged", 6, &out, &out_len);
    assert_int_equal(rc, SASL_OK);
    pst_buf_reset(&wire);
    assert_rc(pst_buf_append(&wire, out, out_len), 0);
    wire.data[6] ^= 0x01;
    rc = pst_sasl_layer_unwrap(r->layer, wire.data, wire.len, &used, &got);
    if (rc != PST_EFORGED)
        FAIL(r, "our unwrap of a forged buffer: %s, want EFORGED",
             pst_errname(rc));
    pst_buf_clear(&wire);
    pst_buf_clear(&got);
}

static void
test_row(void **state)
{
    struct run r = {.row = *state};

    cur = r.row;
    pst_buf_init(&r.buf, PST_SASL_MAX_MESSAGE, 1);
    if ((r.row->dir == OUR_CLIENT ? run_our_client(&r)
                                  : run_cyrus_client(&r)) == 0) {
        check_negotiated(&r);
        if (r.layer != NULL)
            check_layer(&r);
    }
    pst_sasl_layer_free(r.layer);
    pst_sasl_client_free(r.pc);
    pst_sasl_server_free(r.ps);
    pst_cred_free(r.cred);
    sasl_dispose(&r.conn);
    pst_buf_clear(&r.buf);
}

static int
group_setup(void **state)
{
    sasl_conn_t *conn = NULL;
    int rc;

    (void)state;
    if (mkdtemp(dbdir) == NULL)
        return -1;
    snprintf(dbpath, sizeof(dbpath), "%s/sasldb2", dbdir);
    if (sasl_server_init(global_cbs, "postern-test") != SASL_OK ||
        sasl_client_init(global_cbs) != SASL_OK)
        return -1;
    /* The user Cyrus's server knows. */
    if (sasl_server_new("smtp", HOSTNAME, NULL, NULL, NULL, NULL, 0,
                        &conn) != SASL_OK)
        return -1;
    rc = sasl_setpass(conn, USER, PASSWORD, strlen(PASSWORD), NULL, 0,
                      SASL_SET_CREATE);
    if (rc != SASL_OK)
        fprintf(stderr, "sasl_setpass: %s (%s)\n",
                sasl_errstring(rc, NULL, NULL), sasl_errdetail(conn));
    sasl_dispose(&conn);
    return rc == SASL_OK ? 0 : -1;
}

static int
group_teardown(void **state)
{
    (void)state;
    sasl_client_done();
    sasl_server_done();
    unlink(dbpath);
    rmdir(dbdir);
    return 0;
}

int
main(void)
{
    static struct CMUnitTest tests[ARRAY_LEN(rows)];

    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        tests[i] = (struct CMUnitTest){
            .name = rows[i].name,
            .test_func = test_row,
            .initial_state = (void *)&rows[i],
        };
    return _cmocka_run_group_tests("cyrus_interop", tests, ARRAY_LEN(rows),
                                   group_setup, group_teardown);
}
