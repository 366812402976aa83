/*
 * The SMTP sessions against GNU SASL (libgsasl 2.x), an independent
 * implementation, for what test_gsasl_interop.c cannot show with the
 * mechanisms alone: SCRAM-*-PLUS with the binding handed to the session
 * (RFC 5802 §6), EXTERNAL, and the DIGEST-MD5 auth-int layer over a whole
 * SMTP conversation (RFC 4954 §4, RFC 2831 §2.3), both ways:
 *
 *   - gsasl's client half, framed by a small SMTP client written here,
 *     against our server session (pst_smtp_server);
 *   - our client session (pst_smtp_client) against gsasl's server half,
 *     framed by a small SMTP server written here.
 *
 * The layer's buffers on the gsasl side are gsasl_encode()/gsasl_decode():
 * nothing of ours frames or checks them there.  GNU SASL has no auth-conf
 * (its DIGEST-MD5 offers qop-auth and qop-int), so auth-conf is tested
 * against Cyrus SASL in test_cyrus_interop.c and between our two halves
 * in test_smtp_sasl.c.
 */
#include <gsasl.h>

#include <postern/smtp.h>
#include <postern/smtp_client.h>

#include "testutil.h"

#define HOST "mail.example.test"
#define USER "tim"
#define PASSWORD "tanstaaftanstaaf"

static Gsasl *gctx;

static const uint8_t cb_data[32] = {
    0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x01, 0x23, 0x45,
    0x67, 0x89, 0xab, 0xcd, 0xef, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
    0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
};
static const uint8_t cb_other[32] = {
    0x11, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x01, 0x23, 0x45,
    0x67, 0x89, 0xab, 0xcd, 0xef, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
    0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01,
};
/* tls-unique is a Finished message: 12 octets in TLS 1.2. */
#define UNIQUE_LEN 12

static const char message[] =
    "From: tim@example.test\r\n"
    "Subject: through the layer\r\n"
    "\r\n"
    "..a line that starts with a dot\r\n"
    "the end\r\n";

/* What gsasl's half is told. */
struct gs_setup {
    const char *cb_type;        /* NULL: no binding */
    const uint8_t *cb;          /* its data */
    size_t cb_len;
    int qop_int;                /* DIGEST-MD5: allow qop-int */
    const char *authzid;
};

static int
gs_set_b64(Gsasl_session *sess, Gsasl_property prop, const uint8_t *p,
           size_t len)
{
    char *b64 = NULL;
    int rc = gsasl_base64_to((const char *)p, len, &b64, NULL);

    if (rc == GSASL_OK)
        rc = gsasl_property_set(sess, prop, b64);
    gsasl_free(b64);
    return rc;
}

static int
gs_callback(Gsasl *ctx, Gsasl_session *sess, Gsasl_property prop)
{
    const struct gs_setup *g = gsasl_session_hook_get(sess);
    const char *authid = gsasl_property_fast(sess, GSASL_AUTHID);
    const char *v = NULL;

    (void)ctx;
    if (g == NULL)
        return GSASL_NO_CALLBACK;
    switch (prop) {
    case GSASL_AUTHID:
        v = USER;
        break;
    case GSASL_AUTHZID:
        v = g->authzid;
        break;
    case GSASL_PASSWORD:
        /* Client: the password.  Server: the user's, if it is USER. */
        if (authid == NULL || strcmp(authid, USER) == 0)
            v = PASSWORD;
        break;
    case GSASL_SERVICE:
        v = "smtp";
        break;
    case GSASL_HOSTNAME:
    case GSASL_REALM:
        v = HOST;
        break;
    case GSASL_QOP:
        v = g->qop_int ? "qop-int" : NULL;
        break;
    case GSASL_QOPS:
        v = g->qop_int ? "qop-auth,qop-int" : "qop-auth";
        break;
    case GSASL_CB_TLS_EXPORTER:
    case GSASL_CB_TLS_UNIQUE:
        if (g->cb_type == NULL ||
            (prop == GSASL_CB_TLS_EXPORTER) !=
                (strcmp(g->cb_type, "tls-exporter") == 0))
            break;
        return gs_set_b64(sess, prop, g->cb, g->cb_len);
    default:
        break;
    }
    if (v == NULL)
        return GSASL_NO_CALLBACK;
    return gsasl_property_set(sess, prop, v);
}

/* Split p[0..len) into protected buffers (4-octet length first) and
 * gsasl_decode() each into out.  Returns the first gsasl error, or 0. */
static int
gs_decode_all(Gsasl_session *gs, const uint8_t *p, size_t len,
              struct pst_buf *out)
{
    while (len > 0) {
        size_t n, out_len = 0;
        char *o = NULL;
        int rc;

        assert_true(len >= 4);
        n = 4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 |
                 (size_t)p[2] << 8 | p[3]);
        assert_true(n <= len);
        rc = gsasl_decode(gs, (const char *)p, n, &o, &out_len);
        if (rc != GSASL_OK)
            return rc;
        assert_rc(pst_buf_append(out, o, out_len), 0);
        gsasl_free(o);
        p += n;
        len -= n;
    }
    return 0;
}

/* The code of the reply at p[0..len), or 0. */
static int
reply_code(const uint8_t *p, size_t len)
{
    if (len < 3 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9')
        return 0;
    return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* --- gsasl's client against our server session -------------------------- */

struct srv {
    struct pst_smtp_server *s;
    const struct pst_sasl_mech *mechs[4];
    struct pst_cred *cred;
    struct pst_buf out, data;
    int ok, error, close_error, closes;
    char lookup_user[128];
};

static void
srv_drain(struct srv *v)
{
    struct pst_smtp_event ev;
    const uint8_t *p;
    size_t len;
    int rc;

    while ((rc = pst_smtp_server_next_event(v->s, &ev)) == 1) {
        struct pst_smtp_answer a = {.type = ev.type,
                                    .verdict = PST_SMTP_ACCEPT};

        switch (ev.type) {
        case PST_SMTP_EV_AUTH_LOOKUP:
            snprintf(v->lookup_user, sizeof(v->lookup_user), "%s", ev.user);
            a.cred = strcmp(ev.user, USER) == 0 ? v->cred : NULL;
            break;
        case PST_SMTP_EV_AUTH_VERIFY:
            a.verdict = pst_cred_verify(v->cred, ev.user, ev.password,
                                        ev.password_len) == 0
                            ? PST_SMTP_ACCEPT
                            : PST_SMTP_REJECT;
            break;
        case PST_SMTP_EV_AUTH_RESULT:
            v->ok = ev.ok;
            v->error = ev.error;
            break;
        case PST_SMTP_EV_DATA:
            assert_rc(pst_buf_append(&v->data, ev.data, ev.len), 0);
            break;
        case PST_SMTP_EV_DATA_END:
            a.queue_id = "Q1";
            break;
        case PST_SMTP_EV_CLOSE:
            v->closes++;
            v->close_error = ev.error;
            break;
        default:
            break;
        }
        if (ev.need_answer)
            assert_rc(pst_smtp_server_answer(v->s, &a), 0);
    }
    assert_int_equal(rc, 0);
    pst_smtp_server_output(v->s, &p, &len);
    if (len > 0) {
        assert_rc(pst_buf_append(&v->out, p, len), 0);
        pst_smtp_server_consume(v->s, len);
    }
}

static void
srv_new(struct srv *v, const char *mech_name, int tls, int layer,
        const struct pst_smtp_tls_auth *ta)
{
    struct pst_smtp_server_config cfg = {
        .hostname = HOST,
        .tls = tls ? PST_SMTP_TLS_IMPLICIT : PST_SMTP_TLS_NONE,
        .auth = PST_SMTP_AUTH_REQUIRED,
        .auth_before_tls = PST_SMTP_BEFORE_TLS_ALL,
        .security_layer = layer,
        .sender_check = PST_SMTP_SENDER_OFF,
    };
    static const char cred_text[] = "{PLAIN}" PASSWORD;

    memset(v, 0, sizeof(*v));
    v->mechs[0] = pst_sasl_mech_find(mech_name, strlen(mech_name));
    assert_non_null(v->mechs[0]);
    cfg.mechs = v->mechs;
    pst_buf_init(&v->out, 1 << 20, 0);
    pst_buf_init(&v->data, 1 << 20, 0);
    assert_rc(pst_cred_parse(cred_text, strlen(cred_text), &v->cred), 0);
    assert_rc(pst_smtp_server_new(&cfg, &v->s), 0);
    if (tls) {
        assert_rc(pst_smtp_server_tls_started(v->s, "TLSv1.3",
                                              "TLS_AES_128_GCM_SHA256"), 0);
        if (ta != NULL)
            assert_rc(pst_smtp_server_tls_auth(v->s, ta), 0);
    }
    assert_rc(pst_smtp_server_start(v->s), 0);
    srv_drain(v);
    pst_buf_reset(&v->out);
}

static void
srv_free(struct srv *v)
{
    pst_smtp_server_free(v->s);
    pst_cred_free(v->cred);
    pst_buf_clear(&v->out);
    pst_buf_clear(&v->data);
}

static void
srv_send(struct srv *v, const void *p, size_t len)
{
    size_t used;

    assert_rc(pst_smtp_server_feed(v->s, p, len, &used), 0);
    assert_int_equal(used, len);
    srv_drain(v);
}

/*
 * AUTH with gsasl's client half: "AUTH <mech> [ir]", then a response to
 * every 334 (RFC 4954 §4).  Returns the final reply's code; *gs gets the
 * session (for the layer).
 */
static int
gs_client_auth(struct srv *v, const char *mech_name, struct gs_setup *g,
               Gsasl_session **gs)
{
    struct pst_buf line;
    char *o = NULL;
    int rc, code;

    pst_buf_init(&line, 1 << 16, 0);
    assert_int_equal(gsasl_client_start(gctx, mech_name, gs), GSASL_OK);
    gsasl_session_hook_set(*gs, g);
    pst_buf_printf(&line, "AUTH %s", mech_name);
    if (strncmp(mech_name, "DIGEST", 6) != 0) {
        rc = gsasl_step64(*gs, NULL, &o);
        assert_true(rc == GSASL_OK || rc == GSASL_NEEDS_MORE);
        pst_buf_printf(&line, " %s", o[0] != '\0' ? o : "=");
        gsasl_free(o);
    }
    pst_buf_append_str(&line, "\r\n");
    srv_send(v, line.data, line.len);
    for (int guard = 0; guard < 6; guard++) {
        char chal[4096];

        if (v->out.len < 4 || memcmp(v->out.data, "334 ", 4) != 0)
            break;
        snprintf(chal, sizeof(chal), "%.*s", (int)v->out.len - 6,
                 (const char *)v->out.data + 4);
        pst_buf_reset(&v->out);
        o = NULL;
        rc = gsasl_step64(*gs, chal, &o);
        assert_true(rc == GSASL_OK || rc == GSASL_NEEDS_MORE);
        pst_buf_reset(&line);
        pst_buf_printf(&line, "%s\r\n", o != NULL ? o : "");
        gsasl_free(o);
        srv_send(v, line.data, line.len);
    }
    code = reply_code(v->out.data, v->out.len);
    pst_buf_clear(&line);
    return code;
}

/* Send text to our server, through gsasl's layer if there is one
 * (gsasl_encode(); with qop auth it copies), and return the server's
 * answer, decoded if layered. */
static void
gs_exchange(struct srv *v, Gsasl_session *gs, int layer, const char *text,
            struct pst_buf *answer)
{
    char *o = NULL;
    size_t olen = 0;

    assert_int_equal(gsasl_encode(gs, text, strlen(text), &o, &olen),
                     GSASL_OK);
    srv_send(v, o, olen);
    gsasl_free(o);
    pst_buf_reset(answer);
    if (layer)
        assert_int_equal(gs_decode_all(gs, v->out.data, v->out.len, answer),
                         0);
    else
        assert_rc(pst_buf_append(answer, v->out.data, v->out.len), 0);
    assert_rc(pst_buf_append(answer, "", 0), 0);
    pst_buf_reset(&v->out);
}

/* The rest of the session after a 235, through gsasl's layer. */
static void
gs_client_mail(struct srv *v, Gsasl_session *gs, int layer)
{
    struct pst_buf ans;

    pst_buf_init(&ans, 1 << 16, 0);
    /* RFC 4954 §4: after a layer the client starts again with EHLO. */
    if (layer) {
        gs_exchange(v, gs, 1, "EHLO client.example\r\n", &ans);
        assert_non_null(strstr((const char *)ans.data, "250-" HOST "\r\n"));
    }
    gs_exchange(v, gs, layer,
                "MAIL FROM:<tim@example.test>\r\n"
                "RCPT TO:<rcpt@example.test>\r\n"
                "DATA\r\n",
                &ans);
    assert_string_equal((const char *)ans.data,
                        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                        "354 End data with <CR><LF>.<CR><LF>\r\n");
    gs_exchange(v, gs, layer, message, &ans);
    assert_int_equal(ans.len, 0);
    gs_exchange(v, gs, layer, ".\r\nQUIT\r\n", &ans);
    assert_string_equal((const char *)ans.data,
                        "250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n");
    /* RFC 5321 §4.5.2: the server took the leading dot off. */
    assert_buf_str(&v->data, "From: tim@example.test\r\n"
                             "Subject: through the layer\r\n"
                             "\r\n"
                             ".a line that starts with a dot\r\n"
                             "the end\r\n");
    pst_buf_clear(&ans);
}

static const char ok235[] = "235 2.7.0 Authentication successful\r\n";

/* SCRAM-*-PLUS from gsasl's client with the binding both sides have: a
 * whole message; another connection's binding: 535. */
static void
test_gsasl_client_plus(void **state)
{
    static const struct {
        const char *mech, *type;
        size_t len;
        int mitm;
    } rows[] = {
        {"SCRAM-SHA-256-PLUS", "tls-exporter", 32, 0},
        {"SCRAM-SHA-1-PLUS", "tls-exporter", 32, 0},
        {"SCRAM-SHA-256-PLUS", "tls-unique", UNIQUE_LEN, 0},
        {"SCRAM-SHA-1-PLUS", "tls-unique", UNIQUE_LEN, 0},
        {"SCRAM-SHA-256-PLUS", "tls-exporter", 32, 1},
        {"SCRAM-SHA-1-PLUS", "tls-unique", UNIQUE_LEN, 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct pst_smtp_tls_auth ta = {
            .cb_type = rows[i].type, .cb_data = cb_data,
            .cb_len = rows[i].len,
        };
        struct gs_setup g = {
            .cb_type = rows[i].type,
            .cb = rows[i].mitm ? cb_other : cb_data,
            .cb_len = rows[i].len,
        };
        Gsasl_session *gs = NULL;
        struct srv v;
        int code;

        srv_new(&v, rows[i].mech, 1, 0, &ta);
        srv_send(&v, "EHLO client.example\r\n", 21);
        pst_buf_reset(&v.out);
        code = gs_client_auth(&v, rows[i].mech, &g, &gs);
        if (rows[i].mitm) {
            if (code != 535)
                fail_msg("row %zu: got %d, want 535", i, code);
            assert_int_equal(v.error, PST_EAUTH);
        } else {
            if (code != 235)
                fail_msg("row %zu (%s %s): got \"%.*s\"", i, rows[i].mech,
                         rows[i].type, (int)v.out.len,
                         (const char *)v.out.data);
            assert_buf_str(&v.out, ok235);
            pst_buf_reset(&v.out);
            gs_client_mail(&v, gs, 0);
        }
        gsasl_finish(gs);
        srv_free(&v);
    }
}

/* EXTERNAL from gsasl's client, with no authzid and with USER's. */
static void
test_gsasl_client_external(void **state)
{
    struct pst_smtp_tls_auth ta = {.external_id = USER};
    struct gs_setup g = {0};
    Gsasl_session *gs = NULL;
    struct srv v;

    (void)state;
    for (int z = 0; z < 2; z++) {
        g.authzid = z ? USER : NULL;
        srv_new(&v, "EXTERNAL", 1, 0, &ta);
        srv_send(&v, "EHLO client.example\r\n", 21);
        pst_buf_reset(&v.out);
        assert_int_equal(gs_client_auth(&v, "EXTERNAL", &g, &gs), 235);
        assert_string_equal(v.lookup_user, USER);
        gsasl_finish(gs);
        srv_free(&v);
    }
}

/* DIGEST-MD5 auth-int from gsasl's client: the whole conversation after
 * the 235 through gsasl_encode()/gsasl_decode(); then a forged buffer. */
static void
test_gsasl_client_layer(void **state)
{
    struct gs_setup g = {.qop_int = 1};
    Gsasl_session *gs = NULL;
    struct srv v;
    char *o = NULL;
    size_t olen = 0;

    (void)state;
    srv_new(&v, "DIGEST-MD5", 0, 1, NULL);
    srv_send(&v, "EHLO client.example\r\n", 21);
    pst_buf_reset(&v.out);
    assert_int_equal(gs_client_auth(&v, "DIGEST-MD5", &g, &gs), 235);
    /* The 235 in clear and nothing after it. */
    assert_buf_str(&v.out, ok235);
    pst_buf_reset(&v.out);
    assert_int_equal(pst_smtp_server_layer(v.s, NULL),
                     PST_SASL_QOP_AUTH_INT);
    gs_client_mail(&v, gs, 1);
    gsasl_finish(gs);
    srv_free(&v);

    /* A forged buffer: the session closes without a word. */
    srv_new(&v, "DIGEST-MD5", 0, 1, NULL);
    srv_send(&v, "EHLO client.example\r\n", 21);
    pst_buf_reset(&v.out);
    assert_int_equal(gs_client_auth(&v, "DIGEST-MD5", &g, &gs), 235);
    pst_buf_reset(&v.out);
    assert_int_equal(gsasl_encode(gs, "NOOP\r\n", 6, &o, &olen), GSASL_OK);
    o[4 + 2] ^= 0x01; /* the message: the MAC no longer matches */
    srv_send(&v, o, olen);
    gsasl_free(o);
    assert_int_equal(v.out.len, 0);
    assert_int_equal(v.closes, 1);
    assert_int_equal(v.close_error, PST_EFORGED);
    gsasl_finish(gs);
    srv_free(&v);

    /* Without security_layer the server offers qop auth alone: gsasl's
     * client, which would take auth-int, logs in without a layer. */
    g.qop_int = 0;
    srv_new(&v, "DIGEST-MD5", 0, 0, NULL);
    srv_send(&v, "EHLO client.example\r\n", 21);
    pst_buf_reset(&v.out);
    assert_int_equal(gs_client_auth(&v, "DIGEST-MD5", &g, &gs), 235);
    pst_buf_reset(&v.out);
    assert_int_equal(pst_smtp_server_layer(v.s, NULL), 0);
    gs_client_mail(&v, gs, 0);
    gsasl_finish(gs);
    srv_free(&v);
}

/* --- Our client session against gsasl's server -------------------------- */

/* A small SMTP server around gsasl's server half. */
struct fake {
    const char *mechs;          /* the AUTH line */
    struct gs_setup g;
    Gsasl_session *gs;
    int auth;                   /* 1: a response is awaited; 2: the empty
                                   one after the server's final data */
    int layer;                  /* gsasl's layer in force */
    int in_data;
    int authed, failed_auth;
    struct pst_buf in;          /* clear text not yet a whole line */
    struct pst_buf raw;         /* protected input */
    struct pst_buf out;         /* to the client */
    struct pst_buf data;        /* the message */
};

static void
fake_reply(struct fake *f, const char *text)
{
    if (f->layer) {
        char *o = NULL;
        size_t olen = 0;

        assert_int_equal(gsasl_encode(f->gs, text, strlen(text), &o, &olen),
                         GSASL_OK);
        assert_rc(pst_buf_append(&f->out, o, olen), 0);
        gsasl_free(o);
        return;
    }
    assert_rc(pst_buf_append_str(&f->out, text), 0);
}

/* The exchange went well: 235, and from the octet after it the layer
 * when qop-int was offered (our client, allowed it, takes the strongest
 * qop: the run checks that its layer agrees).  gsasl's DIGEST-MD5 does
 * not say which qop the client chose, and a probe with gsasl_encode()
 * would use up a sequence number. */
static void
fake_auth_ok(struct fake *f, size_t rest_off)
{
    fake_reply(f, "235 2.7.0 Authentication successful\r\n");
    f->auth = 0;
    f->authed = 1;
    if (f->g.qop_int && strcmp(gsasl_mechanism_name(f->gs), "DIGEST-MD5") ==
                            0) {
        f->layer = 1;
        /* Whatever followed the last response is protected. */
        assert_rc(pst_buf_append(&f->raw, f->in.data + rest_off,
                                 f->in.len - rest_off), 0);
        f->in.len = rest_off;
    }
}

static void
fake_step(struct fake *f, const char *b64, size_t line_end)
{
    char *o = NULL;
    int rc = gsasl_step64(f->gs, b64, &o);
    char line[8192];

    if (rc == GSASL_NEEDS_MORE) {
        snprintf(line, sizeof(line), "334 %s\r\n", o);
        fake_reply(f, line);
        f->auth = 1;
    } else if (rc == GSASL_OK && o != NULL && o[0] != '\0') {
        /* Data with success travels as one more challenge (RFC 4954
         * §4: no data in the 235). */
        snprintf(line, sizeof(line), "334 %s\r\n", o);
        fake_reply(f, line);
        f->auth = 2;
    } else if (rc == GSASL_OK) {
        fake_auth_ok(f, line_end);
    } else {
        fake_reply(f, "535 5.7.8 Authentication credentials invalid\r\n");
        f->auth = 0;
        f->failed_auth = 1;
    }
    gsasl_free(o);
}

static void
fake_line(struct fake *f, const char *line, size_t line_end)
{
    char buf[512];

    if (f->in_data) {
        if (strcmp(line, ".") == 0) {
            f->in_data = 0;
            fake_reply(f, "250 2.0.0 Ok\r\n");
            return;
        }
        pst_buf_printf(&f->data, "%s\r\n", line[0] == '.' ? line + 1 : line);
        return;
    }
    if (f->auth == 2) {
        if (line[0] != '\0') {
            fake_reply(f, "501 5.5.2 want an empty response\r\n");
            f->auth = 0;
            return;
        }
        fake_auth_ok(f, line_end);
        return;
    }
    if (f->auth == 1) {
        fake_step(f, line, line_end);
        return;
    }
    if (strncmp(line, "EHLO ", 5) == 0) {
        snprintf(buf, sizeof(buf),
                 "250-fake.example\r\n250-PIPELINING\r\n250 AUTH %s\r\n",
                 f->mechs);
        fake_reply(f, buf);
    } else if (strncmp(line, "AUTH ", 5) == 0) {
        const char *sp = strchr(line + 5, ' ');
        char name[64];

        snprintf(name, sizeof(name), "%.*s",
                 (int)(sp != NULL ? (size_t)(sp - line - 5)
                                  : strlen(line + 5)),
                 line + 5);
        gsasl_finish(f->gs);
        f->gs = NULL;
        assert_int_equal(gsasl_server_start(gctx, name, &f->gs), GSASL_OK);
        gsasl_session_hook_set(f->gs, &f->g);
        fake_step(f, sp == NULL ? NULL : strcmp(sp + 1, "=") == 0 ? ""
                                                                   : sp + 1,
                  line_end);
    } else if (strncmp(line, "MAIL ", 5) == 0 ||
               strncmp(line, "RCPT ", 5) == 0) {
        fake_reply(f, "250 2.1.0 Ok\r\n");
    } else if (strcmp(line, "DATA") == 0) {
        fake_reply(f, "354 go ahead\r\n");
        f->in_data = 1;
    } else if (strcmp(line, "QUIT") == 0) {
        fake_reply(f, "221 2.0.0 Bye\r\n");
    } else {
        fake_reply(f, "500 5.5.2 what\r\n");
    }
}

/* Act on the whole lines of f->in. */
static void
fake_lines(struct fake *f)
{
    size_t start = 0;

    for (;;) {
        uint8_t *nl = f->in.len > start
                          ? memchr(f->in.data + start, '\n',
                                   f->in.len - start)
                          : NULL;
        size_t end;
        char line[70000];
        int had_layer = f->layer;

        if (nl == NULL)
            break;
        end = (size_t)(nl - f->in.data);
        snprintf(line, sizeof(line), "%.*s",
                 (int)(end > start && f->in.data[end - 1] == '\r'
                           ? end - 1 - start
                           : end - start),
                 (const char *)f->in.data + start);
        start = end + 1;
        fake_line(f, line, start);
        if (!had_layer && f->layer) {
            /* fake_auth_ok() moved the rest to raw. */
            start = f->in.len;
            break;
        }
    }
    memmove(f->in.data, f->in.data + start, f->in.len - start);
    f->in.len -= start;
}

static void
fake_feed(struct fake *f, const uint8_t *p, size_t len)
{
    if (!f->layer) {
        assert_rc(pst_buf_append(&f->in, p, len), 0);
        fake_lines(f);
        if (!f->layer)
            return;
        p = NULL;
        len = 0;
    }
    if (len > 0)
        assert_rc(pst_buf_append(&f->raw, p, len), 0);
    for (;;) {
        size_t n;
        char *o = NULL;
        size_t olen = 0;

        if (f->raw.len < 4)
            break;
        n = 4 + ((size_t)f->raw.data[0] << 24 |
                 (size_t)f->raw.data[1] << 16 |
                 (size_t)f->raw.data[2] << 8 | f->raw.data[3]);
        if (f->raw.len < n)
            break;
        assert_int_equal(gsasl_decode(f->gs, (const char *)f->raw.data, n,
                                      &o, &olen),
                         GSASL_OK);
        memmove(f->raw.data, f->raw.data + n, f->raw.len - n);
        f->raw.len -= n;
        assert_rc(pst_buf_append(&f->in, o, olen), 0);
        gsasl_free(o);
        fake_lines(f);
    }
}

struct cli_result {
    int done, failed, error;
    char mech[64];
    char why[512];
    unsigned layer;
};

/* Our client session against the fake, bytes one way then the other. */
static void
run_our_client(struct fake *f, const struct pst_smtp_client_config *cc,
               const char *cb_type, const uint8_t *cb, size_t cb_len,
               struct cli_result *res)
{
    struct pst_smtp_client *c;
    int closed = 0;

    memset(res, 0, sizeof(*res));
    pst_buf_init(&f->in, 1 << 20, 0);
    pst_buf_init(&f->raw, 1 << 20, 0);
    pst_buf_init(&f->out, 1 << 20, 0);
    pst_buf_init(&f->data, 1 << 20, 0);
    assert_rc(pst_smtp_client_new(cc, &c), 0);
    if (cb_type != NULL)
        assert_rc(pst_smtp_client_tls_binding(c, cb_type, cb, cb_len), 0);
    fake_reply(f, "220 fake.example ESMTP\r\n");
    for (int guard = 0; guard < 1000 && !closed; guard++) {
        struct pst_smtp_client_event ev;
        const uint8_t *p;
        size_t len;

        if (f->out.len > 0) {
            assert_rc(pst_smtp_client_feed(c, f->out.data, f->out.len), 0);
            pst_buf_reset(&f->out);
        }
        while (pst_smtp_client_next_event(c, &ev) == 1) {
            if (ev.type == PST_SMTP_CLIENT_EV_AUTH)
                snprintf(res->mech, sizeof(res->mech), "%s", ev.mech);
            else if (ev.type == PST_SMTP_CLIENT_EV_DATA)
                assert_rc(pst_smtp_client_data(c, (const uint8_t *)message,
                                               strlen(message), 1), 0);
            else if (ev.type == PST_SMTP_CLIENT_EV_DONE)
                res->done = 1;
            else if (ev.type == PST_SMTP_CLIENT_EV_FAIL) {
                res->failed = 1;
                res->error = ev.error;
                snprintf(res->why, sizeof(res->why), "%s", ev.reply);
            } else if (ev.type == PST_SMTP_CLIENT_EV_CLOSE)
                closed = 1;
        }
        pst_smtp_client_output(c, &p, &len);
        if (len == 0 && f->out.len == 0)
            break;
        if (len > 0) {
            uint8_t *copy = malloc(len);

            assert_non_null(copy);
            memcpy(copy, p, len);
            pst_smtp_client_consume(c, len);
            fake_feed(f, copy, len);
            free(copy);
        }
    }
    res->layer = pst_smtp_client_layer(c, NULL);
    pst_smtp_client_free(c);
    gsasl_finish(f->gs);
    f->gs = NULL;
}

static void
fake_free(struct fake *f)
{
    pst_buf_clear(&f->in);
    pst_buf_clear(&f->raw);
    pst_buf_clear(&f->out);
    pst_buf_clear(&f->data);
}

static const char *const one_rcpt[] = {"rcpt@example.test"};

static struct pst_smtp_client_config
our_client(const struct pst_sasl_client_config *sasl, int tls)
{
    return (struct pst_smtp_client_config){
        .helo = "client.example",
        .implicit_tls = tls,
        .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER,
        .allow_plaintext_auth = 1,
        .sasl = sasl,
        .mail_from = "tim@example.test",
        .rcpt = one_rcpt,
        .nrcpt = 1,
    };
}

/* Our client prefers -PLUS and binds as gsasl's server checks. */
static void
test_our_client_plus(void **state)
{
    static const struct {
        const char *offer, *type;
        size_t len;
        int mitm;
        const char *want;       /* NULL: 535 */
    } rows[] = {
        {"PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", "tls-exporter", 32, 0,
         "SCRAM-SHA-256-PLUS"},
        {"SCRAM-SHA-1 SCRAM-SHA-1-PLUS PLAIN", "tls-unique", UNIQUE_LEN, 0,
         "SCRAM-SHA-1-PLUS"},
        {"SCRAM-SHA-256-PLUS", "tls-exporter", 32, 1, NULL},
        /* No -PLUS on offer: plain SCRAM with "y", which a server
         * that cannot bind accepts ... */
        {"SCRAM-SHA-256", NULL, 32, 0, "SCRAM-SHA-256"},
        /* ... and one that can (its -PLUS stripped from the EHLO reply
         * by a man in the middle) refuses (RFC 5802 §6). */
        {"SCRAM-SHA-256", "tls-exporter", 32, 0, NULL},
    };
    struct pst_sasl_client_config sasl = {
        .authcid = USER,
        .password = (const uint8_t *)PASSWORD,
        .password_len = strlen(PASSWORD),
    };
    struct pst_smtp_client_config cc = our_client(&sasl, 1);

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct fake f = {
            .mechs = rows[i].offer,
            .g = {.cb_type = rows[i].type,
                  .cb = rows[i].mitm ? cb_other : cb_data,
                  .cb_len = rows[i].len},
        };
        struct cli_result res;

        run_our_client(&f, &cc,
                       rows[i].type != NULL ? rows[i].type : "tls-exporter",
                       cb_data, rows[i].len, &res);
        if (rows[i].want != NULL) {
            if (!res.done)
                fail_msg("row %zu: %s", i, res.why);
            assert_string_equal(res.mech, rows[i].want);
            assert_non_null(strstr((const char *)f.data.data, "the end"));
        } else {
            assert_int_equal(res.failed, 1);
            assert_int_equal(res.error, PST_EAUTH);
            assert_int_equal(f.failed_auth, 1);
        }
        fake_free(&f);
    }
}

/* EXTERNAL against gsasl's server, which validates it. */
static int ext_validated;

static int
ext_callback(Gsasl *ctx, Gsasl_session *sess, Gsasl_property prop)
{
    if (prop == GSASL_VALIDATE_EXTERNAL) {
        const char *z = gsasl_property_fast(sess, GSASL_AUTHZID);

        ext_validated++;
        return z == NULL || z[0] == '\0' ? GSASL_OK
                                         : GSASL_AUTHENTICATION_ERROR;
    }
    return gs_callback(ctx, sess, prop);
}

static void
test_our_client_external(void **state)
{
    struct pst_sasl_client_config sasl = {0};
    struct pst_smtp_client_config cc = our_client(&sasl, 1);
    struct fake f = {.mechs = "SCRAM-SHA-256 EXTERNAL PLAIN"};
    struct cli_result res;

    (void)state;
    cc.tls_client_cert = 1;
    gsasl_callback_set(gctx, ext_callback);
    run_our_client(&f, &cc, NULL, NULL, 0, &res);
    gsasl_callback_set(gctx, gs_callback);
    if (!res.done)
        fail_msg("%s", res.why);
    assert_string_equal(res.mech, "EXTERNAL");
    assert_int_equal(ext_validated, 1);
    fake_free(&f);
}

/* DIGEST-MD5 auth-int with gsasl's server: the message arrives through
 * gsasl_decode() as sent. */
static void
test_our_client_layer(void **state)
{
    struct pst_sasl_client_config sasl = {
        .authcid = USER,
        .password = (const uint8_t *)PASSWORD,
        .password_len = strlen(PASSWORD),
        .host = HOST,
        .digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT,
    };
    struct pst_smtp_client_config cc = our_client(&sasl, 0);
    struct cli_result res;

    (void)state;
    for (int qop_int = 1; qop_int >= 0; qop_int--) {
        struct fake f = {.mechs = "DIGEST-MD5", .g = {.qop_int = qop_int}};

        run_our_client(&f, &cc, NULL, NULL, 0, &res);
        if (!res.done)
            fail_msg("qop_int %d: %s", qop_int, res.why);
        assert_int_equal(res.layer, qop_int ? PST_SASL_QOP_AUTH_INT : 0);
        assert_int_equal(f.layer, qop_int);
        assert_buf_str(&f.data, message);
        fake_free(&f);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsasl_client_plus),
        cmocka_unit_test(test_gsasl_client_external),
        cmocka_unit_test(test_gsasl_client_layer),
        cmocka_unit_test(test_our_client_plus),
        cmocka_unit_test(test_our_client_external),
        cmocka_unit_test(test_our_client_layer),
    };
    int rc;

    if (gsasl_init(&gctx) != GSASL_OK)
        return 1;
    gsasl_callback_set(gctx, gs_callback);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    gsasl_done(gctx);
    return rc;
}
