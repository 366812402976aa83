/*
 * The SMTP sessions' part of SASL beyond the mechanisms: the channel
 * binding of SCRAM-*-PLUS (RFC 5802 §6), EXTERNAL with the identity of a
 * TLS client certificate (RFC 4422 App. A), and the DIGEST-MD5 security
 * layer after AUTH (RFC 4954 §4, RFC 2831 §2.3-2.4).
 *
 * Two kinds of test: the server session driven with raw bytes made by
 * lib/sasl's client half (so the exact replies and the moment the layer
 * starts can be checked), and the client session talking to the server
 * session in memory, fed whole, one byte at a time and in random pieces.
 * GNU SASL against both sessions is in test_smtp_gsasl.c.
 */
#include <postern/smtp.h>
#include <postern/smtp_client.h>

#include "testutil.h"

#include "../../lib/smtp/smtp_int.h"

#define HOST "mail.example.test"

static const uint8_t cb_a[32] = {
    0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
    0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0,
};
/* Another TLS session's binding: one octet differs. */
static const uint8_t cb_b[32] = {
    0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
    0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc1,
};

static const struct pst_sasl_mech *
mech(const char *name)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(name, strlen(name));

    assert_non_null(m);
    return m;
}

/* --- The server, raw ----------------------------------------------------- */

struct raw {
    struct pst_smtp_server *s;
    const struct pst_sasl_mech *mechs[8];
    struct pst_cred *cred;
    struct pst_buf out;        /* server output not yet looked at */
    struct pst_buf data;       /* DATA content */
    unsigned counts[16];
    int last_ok;
    int last_error;
    char last_user[256];
    char lookup_user[256];
    int close_error;
    char close_reason[256];
};

static void
raw_drain(struct raw *r)
{
    struct pst_smtp_event ev;
    const uint8_t *p;
    size_t len;
    int rc;

    for (;;) {
        rc = pst_smtp_server_next_event(r->s, &ev);
        assert_true(rc >= 0);
        if (rc == 0)
            break;
        r->counts[ev.type]++;
        switch (ev.type) {
        case PST_SMTP_EV_AUTH_LOOKUP: {
            struct pst_smtp_answer a = {
                .type = ev.type, .verdict = PST_SMTP_ACCEPT, .cred = r->cred,
            };

            snprintf(r->lookup_user, sizeof(r->lookup_user), "%s", ev.user);
            assert_rc(pst_smtp_server_answer(r->s, &a), 0);
            break;
        }
        case PST_SMTP_EV_AUTH_VERIFY: {
            struct pst_smtp_answer a = {
                .type = ev.type,
                .verdict = pst_cred_verify(r->cred, ev.user, ev.password,
                                           ev.password_len) == 0
                               ? PST_SMTP_ACCEPT
                               : PST_SMTP_REJECT,
            };

            assert_rc(pst_smtp_server_answer(r->s, &a), 0);
            break;
        }
        case PST_SMTP_EV_AUTH_RESULT:
            r->last_ok = ev.ok;
            r->last_error = ev.error;
            snprintf(r->last_user, sizeof(r->last_user), "%s",
                     ev.user != NULL ? ev.user : "-");
            break;
        case PST_SMTP_EV_MAIL:
        case PST_SMTP_EV_RCPT:
            if (ev.need_answer) {
                struct pst_smtp_answer a = {.type = ev.type,
                                            .verdict = PST_SMTP_ACCEPT};

                assert_rc(pst_smtp_server_answer(r->s, &a), 0);
            }
            break;
        case PST_SMTP_EV_DATA:
            assert_rc(pst_buf_append(&r->data, ev.data, ev.len), 0);
            break;
        case PST_SMTP_EV_DATA_END: {
            struct pst_smtp_answer a = {.type = ev.type,
                                        .verdict = PST_SMTP_ACCEPT,
                                        .queue_id = "Q1"};

            assert_rc(pst_smtp_server_answer(r->s, &a), 0);
            break;
        }
        case PST_SMTP_EV_CLOSE:
            r->close_error = ev.error;
            snprintf(r->close_reason, sizeof(r->close_reason), "%s",
                     ev.reason != NULL ? ev.reason : "");
            break;
        default:
            break;
        }
    }
    pst_smtp_server_output(r->s, &p, &len);
    if (len > 0) {
        assert_rc(pst_buf_append(&r->out, p, len), 0);
        pst_smtp_server_consume(r->s, len);
    }
}

/* A session with mechanisms names (space separated): tls 0 none, 1
 * implicit TLS (up), 2 STARTTLS offered (not up). */
static void
raw_new(struct raw *r, const char *names, int tls, int security_layer)
{
    struct pst_smtp_server_config cfg = {
        .hostname = HOST,
        .tls = tls == 1   ? PST_SMTP_TLS_IMPLICIT
               : tls == 2 ? PST_SMTP_TLS_STARTTLS
                          : PST_SMTP_TLS_NONE,
        .auth = PST_SMTP_AUTH_REQUIRED,
        .auth_before_tls = PST_SMTP_BEFORE_TLS_ALL,
        .security_layer = security_layer,
        .sender_check = PST_SMTP_SENDER_OFF,
    };
    static const char cred_text[] = "{PLAIN}pencil";
    char buf[64];
    size_t n = 0;

    memset(r, 0, sizeof(*r));
    for (const char *p = names; *p != '\0';) {
        size_t w = strcspn(p, " ");

        snprintf(buf, sizeof(buf), "%.*s", (int)w, p);
        r->mechs[n++] = mech(buf);
        p += w + (p[w] == ' ');
    }
    r->mechs[n] = NULL;
    cfg.mechs = r->mechs;
    pst_buf_init(&r->out, 1 << 22, 0);
    pst_buf_init(&r->data, 1 << 22, 0);
    assert_rc(pst_cred_parse(cred_text, strlen(cred_text), &r->cred), 0);
    assert_rc(pst_smtp_server_new(&cfg, &r->s), 0);
    if (tls == 1)
        assert_rc(pst_smtp_server_tls_started(r->s, "TLSv1.3",
                                              "TLS_AES_128_GCM_SHA256"), 0);
}

static void
raw_start(struct raw *r)
{
    assert_rc(pst_smtp_server_start(r->s), 0);
    raw_drain(r);
    pst_buf_reset(&r->out);
}

static void
raw_free(struct raw *r)
{
    pst_smtp_server_free(r->s);
    pst_cred_free(r->cred);
    pst_buf_clear(&r->out);
    pst_buf_clear(&r->data);
}

/* Feed like a driver: what the session does not take now (its input
 * buffer full) after it acted on what it has. */
static void
raw_send_bytes(struct raw *r, const void *p, size_t len)
{
    const uint8_t *b = p;
    size_t used;

    for (;;) {
        assert_rc(pst_smtp_server_feed(r->s, b, len, &used), 0);
        raw_drain(r);
        b += used;
        len -= used;
        if (len == 0)
            break;
        assert_true(used > 0 ||
                    pst_smtp_server_state(r->s, NULL) ==
                        PST_SMTP_STATE_CLOSED);
        if (used == 0)
            break;
    }
}

static void
raw_send(struct raw *r, const char *text)
{
    raw_send_bytes(r, text, strlen(text));
}

/* Assert the output so far is want, then forget it. */
static void
raw_expect(struct raw *r, const char *want)
{
    assert_bytes_equal(r->out.data, r->out.len, want, strlen(want));
    pst_buf_reset(&r->out);
}

/* The AUTH line of the EHLO reply in r->out ("" if none). */
static void
raw_auth_line(struct raw *r, char *line, size_t size)
{
    const char *p = r->out.data != NULL
                        ? strstr((const char *)r->out.data, "250-AUTH ")
                        : NULL;
    size_t n;

    if (p == NULL)
        p = r->out.data != NULL
                ? strstr((const char *)r->out.data, "250 AUTH ")
                : NULL;
    if (p == NULL) {
        line[0] = '\0';
        return;
    }
    p += 9;
    n = strcspn(p, "\r");
    snprintf(line, size, "%.*s", (int)n, p);
}

/*
 * One SCRAM exchange of our client half over the raw server: mech name,
 * the client's channel-binding settings.  Returns the server's final
 * reply line (static).
 */
static const char *
raw_scram(struct raw *r, const char *name, const char *cb_type,
          const uint8_t *cb, size_t cb_len, int plus_offered)
{
    static char last[512];
    struct pst_sasl_client_config cc = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .cb_type = cb_type,
        .cb_data = cb,
        .cb_len = cb_len,
        .cb_plus_offered = plus_offered,
    };
    struct pst_sasl_client *c;
    struct pst_buf msg, line, chal;
    int rc;

    pst_buf_init(&msg, 1 << 16, 1);
    pst_buf_init(&line, 1 << 16, 0);
    pst_buf_init(&chal, 1 << 16, 0);
    assert_rc(pst_sasl_client_new(mech(name), &cc, &c), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, &msg), PST_SASL_CONTINUE);
    pst_buf_printf(&line, "AUTH %s ", name);
    pst_base64_encode(msg.data, msg.len, &line);
    pst_buf_append_str(&line, "\r\n");
    raw_send_bytes(r, line.data, line.len);
    for (int guard = 0; guard < 4; guard++) {
        if (r->out.len < 4 || memcmp(r->out.data, "334 ", 4) != 0)
            break;
        pst_buf_reset(&chal);
        assert_rc(pst_base64_decode(r->out.data + 4, r->out.len - 6, &chal),
                  0);
        pst_buf_reset(&r->out);
        pst_buf_reset(&msg);
        rc = pst_sasl_client_step(c, chal.data, chal.len, &msg);
        assert_true(rc == PST_SASL_CONTINUE || rc == PST_SASL_DONE);
        pst_buf_reset(&line);
        pst_base64_encode(msg.data, msg.len, &line);
        pst_buf_append_str(&line, "\r\n");
        raw_send_bytes(r, line.data, line.len);
    }
    snprintf(last, sizeof(last), "%.*s", (int)r->out.len,
             (const char *)r->out.data);
    pst_buf_reset(&r->out);
    pst_sasl_client_free(c);
    pst_buf_clear(&msg);
    pst_buf_clear(&line);
    pst_buf_clear(&chal);
    return last;
}

/* What is offered where: -PLUS needs TLS and a binding, EXTERNAL TLS. */
static void
test_offered(void **state)
{
    struct pst_smtp_tls_auth ta = {
        .cb_type = "tls-exporter", .cb_data = cb_a, .cb_len = sizeof(cb_a),
    };
    char line[256];
    struct raw r;

    (void)state;
    /* Without TLS, not even auth_before_tls = all offers them. */
    raw_new(&r, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 EXTERNAL PLAIN", 0, 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    raw_auth_line(&r, line, sizeof(line));
    assert_string_equal(line, "SCRAM-SHA-256 PLAIN");
    pst_buf_reset(&r.out);
    raw_send(&r, "AUTH SCRAM-SHA-256-PLUS\r\n");
    raw_expect(&r, "504 5.5.4 Unrecognized authentication type\r\n");
    raw_send(&r, "AUTH EXTERNAL =\r\n");
    raw_expect(&r, "504 5.5.4 Unrecognized authentication type\r\n");
    /* tls_auth needs TLS. */
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_ESTATE);
    raw_free(&r);

    /* Under TLS without a binding: EXTERNAL, no -PLUS. */
    raw_new(&r, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 EXTERNAL PLAIN", 1, 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    raw_auth_line(&r, line, sizeof(line));
    assert_string_equal(line, "SCRAM-SHA-256 EXTERNAL PLAIN");
    raw_free(&r);

    /* With it: all of them, in the configured order. */
    raw_new(&r, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 EXTERNAL PLAIN", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    raw_auth_line(&r, line, sizeof(line));
    assert_string_equal(line,
                        "SCRAM-SHA-256-PLUS SCRAM-SHA-256 EXTERNAL PLAIN");
    raw_free(&r);
}

/* A listener without TLS where only -PLUS or EXTERNAL could log in
 * would refuse every message: pst_smtp_server_new() says so. */
static void
test_config_needs_tls(void **state)
{
    static const char *const names[] = {"SCRAM-SHA-256-PLUS", "EXTERNAL"};
    const struct pst_sasl_mech *mechs[2];
    struct pst_smtp_server_config cfg = {
        .hostname = HOST,
        .tls = PST_SMTP_TLS_NONE,
        .auth = PST_SMTP_AUTH_REQUIRED,
        .auth_before_tls = PST_SMTP_BEFORE_TLS_ALL,
        .mechs = mechs,
    };
    struct pst_smtp_server *s;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        mechs[0] = mech(names[i]);
        mechs[1] = NULL;
        cfg.tls = PST_SMTP_TLS_NONE;
        assert_rc(pst_smtp_server_new(&cfg, &s), PST_EINVAL);
        cfg.tls = PST_SMTP_TLS_STARTTLS;
        assert_rc(pst_smtp_server_new(&cfg, &s), 0);
        pst_smtp_server_free(s);
    }
}

static void
test_tls_auth_checks(void **state)
{
    static const uint8_t big[PST_SASL_MAX_CB_DATA + 1];
    struct pst_smtp_tls_auth ta;
    char longname[PST_SASL_MAX_NAME + 2];
    struct raw r;

    (void)state;
    raw_new(&r, "SCRAM-SHA-256-PLUS", 1, 0);
    ta = (struct pst_smtp_tls_auth){.cb_type = "tls exporter",
                                    .cb_data = cb_a, .cb_len = 32};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    ta = (struct pst_smtp_tls_auth){.cb_type = "tls-exporter"};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    ta = (struct pst_smtp_tls_auth){.cb_data = cb_a, .cb_len = 32};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    ta = (struct pst_smtp_tls_auth){.cb_type = "tls-exporter",
                                    .cb_data = big, .cb_len = sizeof(big)};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_ELIMIT);
    ta = (struct pst_smtp_tls_auth){.external_id = ""};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    ta = (struct pst_smtp_tls_auth){.external_id = "a\nb"};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    ta = (struct pst_smtp_tls_auth){.external_id = "caf\xc3"};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ta = (struct pst_smtp_tls_auth){.external_id = longname};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), PST_EINVAL);
    ta = (struct pst_smtp_tls_auth){.external_id = "caf\xc3\xa9"};
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_free(&r);
}

/* SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS with the right binding; the
 * wrong one (another TLS session's) and an unsupported type get 535. */
static void
test_plus_binding(void **state)
{
    static const char *const names[] = {"SCRAM-SHA-256-PLUS",
                                        "SCRAM-SHA-1-PLUS"};
    struct pst_smtp_tls_auth ta = {
        .cb_type = "tls-exporter", .cb_data = cb_a, .cb_len = sizeof(cb_a),
    };
    struct raw r;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        raw_new(&r, names[i], 1, 0);
        assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
        raw_start(&r);
        raw_send(&r, "EHLO client.example\r\n");
        pst_buf_reset(&r.out);
        assert_string_equal(raw_scram(&r, names[i], "tls-exporter", cb_a,
                                      sizeof(cb_a), 1),
                            "235 2.7.0 Authentication successful\r\n");
        assert_int_equal(r.last_ok, 1);
        raw_free(&r);

        raw_new(&r, names[i], 1, 0);
        assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
        raw_start(&r);
        raw_send(&r, "EHLO client.example\r\n");
        pst_buf_reset(&r.out);
        assert_string_equal(raw_scram(&r, names[i], "tls-exporter", cb_b,
                                      sizeof(cb_b), 1),
                            "535 5.7.8 Authentication credentials "
                            "invalid\r\n");
        assert_int_equal(r.last_ok, 0);
        assert_int_equal(r.last_error, PST_EAUTH);
        /* tls-unique where the server has tls-exporter. */
        assert_string_equal(raw_scram(&r, names[i], "tls-unique", cb_a,
                                      sizeof(cb_a), 1),
                            "535 5.7.8 Authentication credentials "
                            "invalid\r\n");
        assert_int_equal(r.counts[PST_SMTP_EV_AUTH_RESULT], 2);
        raw_free(&r);
    }
}

/* RFC 5802 §6: a client that could bind says "y" when it saw no -PLUS;
 * a server that offered -PLUS takes that as a downgrade. */
static void
test_plus_downgrade(void **state)
{
    struct pst_smtp_tls_auth ta = {
        .cb_type = "tls-exporter", .cb_data = cb_a, .cb_len = sizeof(cb_a),
    };
    struct raw r;

    (void)state;
    raw_new(&r, "SCRAM-SHA-256-PLUS SCRAM-SHA-256", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    assert_string_equal(raw_scram(&r, "SCRAM-SHA-256", NULL, cb_a,
                                  sizeof(cb_a), 0),
                        "535 5.7.8 Authentication credentials invalid\r\n");
    assert_int_equal(r.last_error, PST_EAUTH);
    /* "n" (cannot bind) is no downgrade. */
    assert_string_equal(raw_scram(&r, "SCRAM-SHA-256", NULL, NULL, 0, 0),
                        "235 2.7.0 Authentication successful\r\n");
    raw_free(&r);

    /* Without -PLUS on offer, "y" is just right. */
    raw_new(&r, "SCRAM-SHA-256", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    assert_string_equal(raw_scram(&r, "SCRAM-SHA-256", NULL, cb_a,
                                  sizeof(cb_a), 0),
                        "235 2.7.0 Authentication successful\r\n");
    raw_free(&r);
}

/* RFC 4422 App. A: EXTERNAL with an empty or matching authzid logs in as
 * the certificate's user; no certificate, or another authzid, is 535. */
static void
test_external(void **state)
{
    struct pst_smtp_tls_auth ta = {.external_id = "scanner@example.test"};
    char *b64;
    char line[300];
    struct raw r;

    (void)state;
    raw_new(&r, "EXTERNAL PLAIN", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    raw_send(&r, "AUTH EXTERNAL =\r\n");
    raw_expect(&r, "235 2.7.0 Authentication successful\r\n");
    assert_string_equal(r.lookup_user, "scanner@example.test");
    assert_string_equal(pst_smtp_server_user(r.s, NULL),
                        "scanner@example.test");
    raw_free(&r);

    /* Without an initial response: an empty challenge, then the authzid
     * equal to the certificate's user. */
    raw_new(&r, "EXTERNAL", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    raw_send(&r, "AUTH EXTERNAL\r\n");
    raw_expect(&r, "334 \r\n");
    b64 = test_b64enc((const uint8_t *)"scanner@example.test", 20);
    snprintf(line, sizeof(line), "%s\r\n", b64);
    free(b64);
    raw_send(&r, line);
    raw_expect(&r, "235 2.7.0 Authentication successful\r\n");
    raw_free(&r);

    /* Another authzid: no proxying. */
    raw_new(&r, "EXTERNAL", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(r.s, &ta), 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    b64 = test_b64enc((const uint8_t *)"boss@example.test", 17);
    snprintf(line, sizeof(line), "AUTH EXTERNAL %s\r\n", b64);
    free(b64);
    raw_send(&r, line);
    raw_expect(&r, "535 5.7.8 Authentication credentials invalid\r\n");
    assert_int_equal(r.last_error, PST_EAUTH);
    raw_free(&r);

    /* No certificate (or one that maps to nobody). */
    raw_new(&r, "EXTERNAL", 1, 0);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    raw_send(&r, "AUTH EXTERNAL =\r\n");
    raw_expect(&r, "535 5.7.8 Authentication credentials invalid\r\n");
    assert_int_equal(r.counts[PST_SMTP_EV_AUTH_LOOKUP], 0);
    assert_null(pst_smtp_server_user(r.s, NULL));
    raw_free(&r);
}

/* --- The security layer, raw -------------------------------------------- */

/* The client half of a DIGEST-MD5 exchange over the raw server, asking
 * for qops; leaves the layer in *layer (NULL: none).  tail (may be NULL)
 * is wrapped and sent in the same write as the last response, as a
 * client that pipelines would.  Returns the final reply. */
static const char *
raw_digest_tail(struct raw *r, unsigned qops, unsigned ciphers,
                struct pst_sasl_layer **layer, const char *tail)
{
    static char last[512];
    struct pst_sasl_client_config cc = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .host = HOST,
        .digest_qops = qops,
        .digest_ciphers = ciphers,
    };
    struct pst_sasl_client *c;
    struct pst_buf msg, line, chal;
    int rc = PST_SASL_CONTINUE;

    *layer = NULL;
    pst_buf_init(&msg, 1 << 16, 1);
    pst_buf_init(&line, 1 << 16, 0);
    pst_buf_init(&chal, 1 << 16, 0);
    assert_rc(pst_sasl_client_new(mech("DIGEST-MD5"), &cc, &c), 0);
    raw_send(r, "AUTH DIGEST-MD5\r\n");
    for (int guard = 0; guard < 4; guard++) {
        if (r->out.len < 4 || memcmp(r->out.data, "334 ", 4) != 0)
            break;
        pst_buf_reset(&chal);
        assert_rc(pst_base64_decode(r->out.data + 4, r->out.len - 6, &chal),
                  0);
        pst_buf_reset(&r->out);
        pst_buf_reset(&msg);
        rc = pst_sasl_client_step(c, chal.data, chal.len, &msg);
        assert_true(rc == PST_SASL_CONTINUE || rc == PST_SASL_DONE);
        pst_buf_reset(&line);
        pst_base64_encode(msg.data, msg.len, &line);
        pst_buf_append_str(&line, "\r\n");
        if (rc == PST_SASL_DONE) {
            assert_rc(pst_sasl_client_layer(c, layer), 0);
            if (tail != NULL)
                assert_rc(pst_sasl_layer_wrap(*layer, (const uint8_t *)tail,
                                              strlen(tail), &line), 0);
        }
        raw_send_bytes(r, line.data, line.len);
    }
    assert_int_equal(rc, PST_SASL_DONE);
    /* Only the 235 line is clear text: take it off, leave the rest. */
    {
        const uint8_t *nl = memchr(r->out.data, '\n', r->out.len);
        size_t n = nl != NULL ? (size_t)(nl - r->out.data) + 1 : r->out.len;

        snprintf(last, sizeof(last), "%.*s", (int)n,
                 (const char *)r->out.data);
        memmove(r->out.data, r->out.data + n, r->out.len - n);
        r->out.len -= n;
    }
    pst_sasl_client_free(c);
    pst_buf_clear(&msg);
    pst_buf_clear(&line);
    pst_buf_clear(&chal);
    return last;
}

static const char *
raw_digest(struct raw *r, unsigned qops, unsigned ciphers,
           struct pst_sasl_layer **layer)
{
    return raw_digest_tail(r, qops, ciphers, layer, NULL);
}

/* Wrap text with the client's layer and send it. */
static void
raw_send_wrapped(struct raw *r, struct pst_sasl_layer *l, const char *text)
{
    struct pst_buf b;

    pst_buf_init(&b, 1 << 22, 0);
    assert_rc(pst_sasl_layer_wrap(l, (const uint8_t *)text, strlen(text),
                                  &b), 0);
    raw_send_bytes(r, b.data, b.len);
    pst_buf_clear(&b);
}

/* Unwrap every buffer of the server's output; assert it is text. */
static void
raw_expect_wrapped(struct raw *r, struct pst_sasl_layer *l, const char *want)
{
    struct pst_buf b;
    size_t off = 0, used;
    int rc;

    pst_buf_init(&b, 1 << 22, 0);
    while (off < r->out.len) {
        rc = pst_sasl_layer_unwrap(l, r->out.data + off, r->out.len - off,
                                   &used, &b);
        assert_int_equal(rc, 1);
        off += used;
    }
    assert_bytes_equal(b.data, b.len, want, strlen(want));
    pst_buf_reset(&r->out);
    pst_buf_clear(&b);
}

static const char ehlo_layer_reply[] =
    "250-" HOST "\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE\r\n"
    "250-8BITMIME\r\n"
    "250-AUTH DIGEST-MD5\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

/*
 * RFC 4954 §4: the 235 goes in clear, everything after it in protected
 * buffers both ways; the session starts again (EHLO first), keeps the
 * authentication, and offers no STARTTLS inside the layer.
 */
static void
test_layer_raw(void **state)
{
    static const unsigned qops[] = {PST_SASL_QOP_AUTH_INT,
                                    PST_SASL_QOP_AUTH_CONF};
    struct pst_sasl_layer *l;
    unsigned cipher;
    struct raw r;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        raw_new(&r, "DIGEST-MD5", 0, 1);
        raw_start(&r);
        raw_send(&r, "EHLO client.example\r\n");
        pst_buf_reset(&r.out);
        assert_string_equal(raw_digest(&r, PST_SASL_QOP_AUTH | qops[i],
                                       PST_SASL_CIPHER_3DES, &l),
                            "235 2.7.0 Authentication successful\r\n");
        assert_non_null(l);
        assert_int_equal(r.out.len, 0);
        assert_int_equal(pst_smtp_server_layer(r.s, &cipher), qops[i]);
        assert_int_equal(cipher, i == 0 ? 0 : PST_SASL_CIPHER_3DES);
        /* The session was reset: MAIL before EHLO is refused, but the
         * user stays authenticated. */
        raw_send_wrapped(&r, l, "MAIL FROM:<user@example.test>\r\n");
        raw_expect_wrapped(&r, l, "503 5.5.1 Error: send HELO/EHLO first\r\n");
        assert_string_equal(pst_smtp_server_user(r.s, NULL), "user");
        raw_send_wrapped(&r, l, "EHLO client.example\r\n");
        raw_expect_wrapped(&r, l, ehlo_layer_reply);
        raw_send_wrapped(&r, l, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
        raw_expect_wrapped(&r, l, "503 5.5.1 Error: already authenticated\r\n");
        /* A whole transaction, pipelined in one buffer. */
        raw_send_wrapped(&r, l,
                         "MAIL FROM:<user@example.test>\r\n"
                         "RCPT TO:<rcpt@example.test>\r\n"
                         "DATA\r\n");
        raw_expect_wrapped(&r, l,
                           "250 2.1.0 Ok\r\n"
                           "250 2.1.5 Ok\r\n"
                           "354 End data with <CR><LF>.<CR><LF>\r\n");
        raw_send_wrapped(&r, l, "Subject: layered\r\n\r\n..dot\r\nbody\r\n");
        raw_send_wrapped(&r, l, ".\r\nQUIT\r\n");
        raw_expect_wrapped(&r, l, "250 2.0.0 Ok: queued as Q1\r\n"
                                  "221 2.0.0 Bye\r\n");
        assert_buf_str(&r.data, "Subject: layered\r\n\r\n.dot\r\nbody\r\n");
        assert_int_equal(r.counts[PST_SMTP_EV_CLOSE], 1);
        assert_int_equal(r.close_error, 0);
        pst_sasl_layer_free(l);
        raw_free(&r);
    }
}

/* Bytes the client pipelined after its last response (before the 235
 * came) are protected already; a STARTTLS inside the layer is refused. */
static void
test_layer_pipelined(void **state)
{
    struct pst_sasl_layer *l;
    struct pst_buf b;
    struct raw r;

    (void)state;
    raw_new(&r, "DIGEST-MD5", 2, 1);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    /* The last response and a protected EHLO in one write: the EHLO is
     * acted on after the 235, under the layer. */
    assert_string_equal(raw_digest_tail(&r, PST_SASL_QOP_AUTH_INT, 0, &l,
                                        "EHLO a.example\r\n"),
                        "235 2.7.0 Authentication successful\r\n");
    raw_expect_wrapped(&r, l, ehlo_layer_reply);
    raw_send_wrapped(&r, l, "STARTTLS\r\n");
    raw_expect_wrapped(&r, l, "503 5.5.1 Error: a security layer is "
                              "active\r\n");
    pst_buf_init(&b, 1 << 16, 0);
    assert_rc(pst_sasl_layer_wrap(l, (const uint8_t *)"EHLO a.example\r\n",
                                  16, &b), 0);
    /* Split the buffer: the server waits for the whole of it. */
    raw_send_bytes(&r, b.data, 3);
    assert_int_equal(r.out.len, 0);
    raw_send_bytes(&r, b.data + 3, b.len - 3);
    raw_expect_wrapped(&r, l, ehlo_layer_reply);
    pst_buf_clear(&b);
    pst_sasl_layer_free(l);
    raw_free(&r);
}

/* A layered session that took a large burst gives its memory back once
 * idle, as a clear one does (test_smtp_server.c test_memory_*). */
static void
test_layer_memory(void **state)
{
    struct pst_sasl_layer *l;
    struct pst_buf big;
    size_t n;
    struct raw r;

    (void)state;
    raw_new(&r, "DIGEST-MD5", 0, 1);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    raw_digest(&r, PST_SASL_QOP_AUTH_CONF, PST_SASL_CIPHER_3DES, &l);
    raw_send_wrapped(&r, l, "EHLO client.example\r\n"
                            "MAIL FROM:<user@example.test>\r\n"
                            "RCPT TO:<rcpt@example.test>\r\nDATA\r\n");
    raw_expect_wrapped(&r, l, "250-" HOST "\r\n"
                              "250-PIPELINING\r\n"
                              "250-SIZE\r\n"
                              "250-8BITMIME\r\n"
                              "250-AUTH DIGEST-MD5\r\n"
                              "250 ENHANCEDSTATUSCODES\r\n"
                              "250 2.1.0 Ok\r\n"
                              "250 2.1.5 Ok\r\n"
                              "354 End data with <CR><LF>.<CR><LF>\r\n");
    pst_buf_init(&big, 1 << 20, 0);
    for (int i = 0; i < 3000; i++)
        pst_buf_printf(&big, "line %d of a burst that fills buffers\r\n", i);
    pst_buf_append_str(&big, ".\r\n");
    assert_rc(pst_buf_append(&big, "", 0), 0);
    raw_send_wrapped(&r, l, (const char *)big.data);
    raw_expect_wrapped(&r, l, "250 2.0.0 Ok: queued as Q1\r\n");
    n = pst__smtp_server_buffer_bytes(r.s);
    if (n > 4096)
        fail_msg("got %zu buffer bytes idle, want at most 4096", n);
    pst_buf_clear(&big);
    pst_sasl_layer_free(l);
    raw_free(&r);
}

/* A buffer whose MAC does not match, or out of sequence, or malformed,
 * closes the session without a reply. */
static void
test_layer_corrupt(void **state)
{
    struct pst_sasl_layer *l;
    struct pst_buf b;
    struct raw r;

    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        raw_new(&r, "DIGEST-MD5", 0, 1);
        raw_start(&r);
        raw_send(&r, "EHLO client.example\r\n");
        pst_buf_reset(&r.out);
        assert_string_equal(raw_digest(&r, PST_SASL_QOP_AUTH_INT, 0, &l),
                            "235 2.7.0 Authentication successful\r\n");
        pst_buf_init(&b, 1 << 16, 0);
        assert_rc(pst_sasl_layer_wrap(l,
                                      (const uint8_t *)"EHLO a.example\r\n",
                                      16, &b), 0);
        if (kind == 0)
            b.data[4 + 16 + 3] ^= 0x01; /* a MAC octet */
        else if (kind == 1)
            b.data[4 + 3] ^= 0x20;      /* the message: MAC mismatch */
        else
            b.data[b.len - 5] = 2;      /* message type 2 */
        raw_send_bytes(&r, b.data, b.len);
        assert_int_equal(r.out.len, 0);
        assert_int_equal(r.counts[PST_SMTP_EV_CLOSE], 1);
        assert_int_equal(r.close_error, kind < 2 ? PST_EFORGED : PST_EPROTO);
        assert_non_null(strstr(r.close_reason, "security layer"));
        assert_int_equal(pst_smtp_server_state(r.s, NULL),
                         PST_SMTP_STATE_CLOSED);
        pst_buf_clear(&b);
        pst_sasl_layer_free(l);
        raw_free(&r);
    }

    /* A replayed buffer: its sequence number is old. */
    raw_new(&r, "DIGEST-MD5", 0, 1);
    raw_start(&r);
    raw_send(&r, "EHLO client.example\r\n");
    pst_buf_reset(&r.out);
    raw_digest(&r, PST_SASL_QOP_AUTH_INT, 0, &l);
    pst_buf_init(&b, 1 << 16, 0);
    assert_rc(pst_sasl_layer_wrap(l, (const uint8_t *)"NOOP\r\n", 6, &b), 0);
    raw_send_bytes(&r, b.data, b.len);
    assert_true(r.out.len > 0);
    pst_buf_reset(&r.out);
    raw_send_bytes(&r, b.data, b.len);
    assert_int_equal(r.out.len, 0);
    assert_int_equal(r.close_error, PST_EFORGED);
    pst_buf_clear(&b);
    pst_sasl_layer_free(l);
    raw_free(&r);
}

/* The layer is offered only where configured and never under TLS: the
 * challenge's qop-options say so. */
static void
test_layer_offer(void **state)
{
    static const struct {
        int tls, security_layer;
        const char *qop;
    } rows[] = {
        {0, 1, "qop=\"auth,auth-int,auth-conf\""},
        {0, 0, "qop=\"auth\""},
        {1, 1, "qop=\"auth\""},
    };
    struct pst_buf chal;
    struct raw r;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        raw_new(&r, "DIGEST-MD5", rows[i].tls, rows[i].security_layer);
        raw_start(&r);
        raw_send(&r, "EHLO client.example\r\n");
        pst_buf_reset(&r.out);
        raw_send(&r, "AUTH DIGEST-MD5\r\n");
        assert_true(r.out.len > 6 && memcmp(r.out.data, "334 ", 4) == 0);
        pst_buf_init(&chal, 4096, 0);
        assert_rc(pst_base64_decode(r.out.data + 4, r.out.len - 6, &chal), 0);
        assert_rc(pst_buf_append(&chal, "", 0), 0);
        if (strstr((const char *)chal.data, rows[i].qop) == NULL)
            fail_msg("row %zu: got \"%s\", want %s", i,
                     (const char *)chal.data, rows[i].qop);
        pst_buf_clear(&chal);
        raw_free(&r);
    }
}

/* --- Client session against server session ------------------------------ */

struct pair {
    struct raw srv;
    struct pst_smtp_client *c;
    const uint8_t *message;
    size_t message_len;
    unsigned chunk;            /* 0: whole; 1: a byte at a time; else a
                                  random split with this seed */
    uint32_t rnd;
    int tamper_s2c;            /* flip an octet of the server's output
                                  once the layer is on */
    int tamper_c2s;
    /* Results: */
    int done, failed, closed;
    int error;
    char fail_text[512];
    char mech[64];
    unsigned auth_events;
    struct pst_buf s2c;        /* every byte the server sent */
};

static size_t
pair_piece(struct pair *p, size_t left)
{
    uint32_t x;

    if (p->chunk == 0)
        return left;
    if (p->chunk == 1)
        return 1;
    x = p->rnd;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p->rnd = x;
    return 1 + x % (left < 700 ? left : 700);
}

/* Client output to the server, in pieces. */
static int
pair_c2s(struct pair *p)
{
    const uint8_t *o;
    size_t len, off = 0;
    uint8_t *copy;

    pst_smtp_client_output(p->c, &o, &len);
    if (len == 0)
        return 0;
    copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, o, len);
    pst_smtp_client_consume(p->c, len);
    if (p->tamper_c2s && pst_smtp_server_layer(p->srv.s, NULL) != 0 &&
        len > 10) {
        copy[len - 1] ^= 0x40;
        p->tamper_c2s = 0;
    }
    while (off < len) {
        size_t n = pair_piece(p, len - off), used;

        assert_rc(pst_smtp_server_feed(p->srv.s, copy + off, n, &used), 0);
        off += used;
        raw_drain(&p->srv);
        if (pst_smtp_server_state(p->srv.s, NULL) == PST_SMTP_STATE_CLOSED)
            break;
    }
    free(copy);
    return 1;
}

static void
pair_client_events(struct pair *p)
{
    struct pst_smtp_client_event ev;

    while (pst_smtp_client_next_event(p->c, &ev) == 1) {
        switch (ev.type) {
        case PST_SMTP_CLIENT_EV_AUTH:
            p->auth_events++;
            snprintf(p->mech, sizeof(p->mech), "%s", ev.mech);
            break;
        case PST_SMTP_CLIENT_EV_DATA:
            assert_rc(pst_smtp_client_data(p->c, p->message, p->message_len,
                                           1), 0);
            break;
        case PST_SMTP_CLIENT_EV_DONE:
            p->done = 1;
            break;
        case PST_SMTP_CLIENT_EV_FAIL:
            p->failed = 1;
            p->error = ev.error;
            snprintf(p->fail_text, sizeof(p->fail_text), "%s", ev.reply);
            break;
        case PST_SMTP_CLIENT_EV_CLOSE:
            p->closed = 1;
            break;
        default:
            break;
        }
    }
}

/* Server output to the client, in pieces. */
static int
pair_s2c(struct pair *p)
{
    size_t len = p->srv.out.len, off = 0;

    if (len == 0)
        return 0;
    if (p->tamper_s2c && pst_smtp_client_layer(p->c, NULL) != 0 &&
        len > 10) {
        p->srv.out.data[len - 1] ^= 0x40;
        p->tamper_s2c = 0;
    }
    assert_rc(pst_buf_append(&p->s2c, p->srv.out.data, len), 0);
    while (off < len && !p->closed) {
        size_t n = pair_piece(p, len - off);

        if (pst_smtp_client_feed(p->c, p->srv.out.data + off, n) < 0)
            break;
        off += n;
        pair_client_events(p);
    }
    pst_buf_reset(&p->srv.out);
    return 1;
}

/* Run the two sessions until the client closes or nothing moves. */
static void
pair_run(struct pair *p, const struct pst_smtp_client_config *cc)
{
    assert_rc(pst_smtp_client_new(cc, &p->c), 0);
    pst_buf_init(&p->s2c, 1 << 22, 0);
    assert_rc(pst_smtp_server_start(p->srv.s), 0);
    raw_drain(&p->srv);
    for (int guard = 0; guard < 100000 && !p->closed; guard++) {
        int moved = pair_s2c(p);

        pair_client_events(p);
        moved |= pair_c2s(p);
        if (!moved)
            break;
    }
}

static void
pair_free(struct pair *p)
{
    pst_smtp_client_free(p->c);
    pst_buf_clear(&p->s2c);
    raw_free(&p->srv);
}

static const char *const one_rcpt[] = {"rcpt@example.test"};
static const char test_message[] =
    "From: user@example.test\r\nSubject: t\r\n\r\nhello\r\n.dot\r\n";

static struct pst_smtp_client_config
pair_client_config(const struct pst_sasl_client_config *sasl, int tls)
{
    return (struct pst_smtp_client_config){
        .helo = "client.example",
        .implicit_tls = tls,
        .starttls = tls ? PST_SMTP_CLIENT_STARTTLS_AUTO
                        : PST_SMTP_CLIENT_STARTTLS_NEVER,
        .sasl = sasl,
        .mail_from = "user@example.test",
        .rcpt = one_rcpt,
        .nrcpt = 1,
    };
}

static void
pair_message(struct pair *p, const char *text)
{
    p->message = (const uint8_t *)text;
    p->message_len = strlen(text);
}

/* Our client prefers -PLUS under TLS when it has the binding; the wrong
 * binding fails; without a binding it takes plain SCRAM ("n"). */
static void
test_pair_plus(void **state)
{
    static const struct {
        const char *srv_type;
        const uint8_t *srv_cb, *cli_cb;
        const char *cli_type;
        const char *want_mech;   /* NULL: fails with 535 */
    } rows[] = {
        {"tls-exporter", cb_a, cb_a, "tls-exporter", "SCRAM-SHA-256-PLUS"},
        {"tls-unique", cb_a, cb_a, "tls-unique", "SCRAM-SHA-256-PLUS"},
        {"tls-exporter", cb_a, cb_b, "tls-exporter", NULL},
        {"tls-exporter", cb_a, cb_a, "tls-unique", NULL},
        {"tls-exporter", cb_a, NULL, NULL, "SCRAM-SHA-256"},
    };
    struct pst_sasl_client_config sasl = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
    };
    struct pst_smtp_client_config cc = pair_client_config(&sasl, 1);

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        for (unsigned chunk = 0; chunk < 3; chunk++) {
            struct pst_smtp_tls_auth ta = {
                .cb_type = rows[i].srv_type,
                .cb_data = rows[i].srv_cb,
                .cb_len = 32,
            };
            struct pair p = {.chunk = chunk, .rnd = 2463534242u};

            raw_new(&p.srv,
                    "SCRAM-SHA-1-PLUS SCRAM-SHA-256-PLUS SCRAM-SHA-256 "
                    "PLAIN",
                    1, 0);
            assert_rc(pst_smtp_server_tls_auth(p.srv.s, &ta), 0);
            pair_message(&p, test_message);
            assert_rc(pst_smtp_client_new(&cc, &p.c), 0);
            if (rows[i].cli_cb != NULL)
                assert_rc(pst_smtp_client_tls_binding(p.c, rows[i].cli_type,
                                                      rows[i].cli_cb, 32),
                          0);
            pst_buf_init(&p.s2c, 1 << 22, 0);
            assert_rc(pst_smtp_server_start(p.srv.s), 0);
            raw_drain(&p.srv);
            for (int guard = 0; guard < 100000 && !p.closed; guard++) {
                int moved = pair_s2c(&p);

                pair_client_events(&p);
                moved |= pair_c2s(&p);
                if (!moved)
                    break;
            }
            if (rows[i].want_mech != NULL) {
                if (!p.done)
                    fail_msg("row %zu chunk %u: %s", i, chunk, p.fail_text);
                assert_string_equal(p.mech, rows[i].want_mech);
                assert_buf_str(&p.srv.data, test_message);
            } else {
                assert_int_equal(p.failed, 1);
                assert_int_equal(p.error, PST_EAUTH);
                assert_non_null(strstr(p.fail_text, "535 5.7.8"));
            }
            assert_int_equal(p.closed, 1);
            pair_free(&p);
        }
    }
}

/* EXTERNAL: the client with a certificate and no user name. */
static void
test_pair_external(void **state)
{
    struct pst_sasl_client_config sasl = {0};
    struct pst_smtp_client_config cc = pair_client_config(&sasl, 1);
    struct pst_smtp_tls_auth ta = {.external_id = "scanner@example.test"};
    struct pair p = {0};

    (void)state;
    cc.tls_client_cert = 1;
    raw_new(&p.srv, "SCRAM-SHA-256 EXTERNAL PLAIN", 1, 0);
    assert_rc(pst_smtp_server_tls_auth(p.srv.s, &ta), 0);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.done, 1);
    assert_string_equal(p.mech, "EXTERNAL");
    assert_string_equal(p.srv.lookup_user, "scanner@example.test");
    pair_free(&p);

    /* No certificate identity on the server's side: 535. */
    memset(&p, 0, sizeof(p));
    raw_new(&p.srv, "EXTERNAL", 1, 0);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.error, PST_EAUTH);
    pair_free(&p);

    /* Without a certificate the client does not pick EXTERNAL; with no
     * user name either, nothing is usable. */
    memset(&p, 0, sizeof(p));
    cc.tls_client_cert = 0;
    assert_rc(pst_smtp_client_new(&cc, &p.c), PST_EINVAL);
}

/* A whole message through auth-int and auth-conf, split every way; the
 * layer is on in both sessions. */
static void
test_pair_layer(void **state)
{
    static const unsigned qops[] = {PST_SASL_QOP_AUTH_INT,
                                    PST_SASL_QOP_AUTH_CONF};
    struct pst_buf big;

    (void)state;
    /* Larger than a buffer (65536), with dots and long lines. */
    pst_buf_init(&big, 1 << 22, 0);
    for (int i = 0; i < 4000; i++)
        pst_buf_printf(&big, "%sline %d of the message, long enough to "
                             "fill a buffer or two\r\n",
                       i % 7 == 0 ? "." : "", i);
    pst_buf_append(&big, "", 0);
    for (size_t q = 0; q < 2; q++) {
        for (unsigned chunk = 0; chunk < 3; chunk++) {
            struct pst_sasl_client_config sasl = {
                .authcid = "user",
                .password = (const uint8_t *)"pencil",
                .password_len = 6,
                .host = HOST,
                .digest_qops = PST_SASL_QOP_AUTH | qops[q],
            };
            struct pst_smtp_client_config cc = pair_client_config(&sasl, 0);
            struct pair p = {.chunk = chunk, .rnd = 88172645u};
            const char *want = (const char *)big.data;

            raw_new(&p.srv, "DIGEST-MD5", 0, 1);
            pair_message(&p, want);
            pair_run(&p, &cc);
            if (!p.done)
                fail_msg("qop %u chunk %u: %s", qops[q], chunk, p.fail_text);
            assert_string_equal(p.mech, "DIGEST-MD5");
            assert_int_equal(p.auth_events, 1);
            assert_int_equal(pst_smtp_client_layer(p.c, NULL), qops[q]);
            assert_int_equal(pst_smtp_server_layer(p.srv.s, NULL), qops[q]);
            /* The server got it as sent (a "." line start is stuffed on
             * the wire and unstuffed again). */
            assert_bytes_equal(p.srv.data.data, p.srv.data.len, want,
                               strlen(want));
            /* After the 235 a protected buffer: a 4-octet length, not a
             * reply line; with auth-conf no reply text at all. */
            {
                static const char ok[] = "235 2.7.0 Authentication "
                                         "successful\r\n";
                const char *t = strstr((const char *)p.s2c.data, ok);

                assert_non_null(t);
                t += strlen(ok);
                assert_int_equal(t[0], 0);
                assert_int_equal(t[1], 0);
                if (qops[q] == PST_SASL_QOP_AUTH_CONF)
                    assert_null(strstr(t, "250"));
            }
            pair_free(&p);
        }
    }
    pst_buf_clear(&big);
}

/* RFC 2831 §2.1.2.1: maxbuf is the largest buffer the peer takes; the
 * server cuts its replies for a client that takes 100 octets. */
static void
test_pair_layer_maxbuf(void **state)
{
    static const char ok[] = "235 2.7.0 Authentication successful\r\n";
    struct pst_sasl_client_config sasl = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .host = HOST,
        .digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT,
        .digest_maxbuf = 100,
    };
    struct pst_smtp_client_config cc = pair_client_config(&sasl, 0);
    struct pair p = {0};
    const uint8_t *t, *end;
    unsigned full = 0;

    (void)state;
    raw_new(&p.srv, "DIGEST-MD5", 0, 1);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.done, 1);
    t = (const uint8_t *)strstr((const char *)p.s2c.data, ok);
    assert_non_null(t);
    t += strlen(ok);
    end = p.s2c.data + p.s2c.len;
    while (t < end) {
        size_t n;

        assert_true(end - t >= 4);
        n = (size_t)t[0] << 24 | (size_t)t[1] << 16 | (size_t)t[2] << 8 |
            t[3];
        if (n > 100)
            fail_msg("a buffer of %zu octets, want at most 100", n);
        assert_true((size_t)(end - t) >= 4 + n);
        t += 4 + n;
        full += n == 100;
    }
    /* The EHLO reply (131 octets) did not fit in one: it was cut at
     * the maximum. */
    assert_true(full >= 1);
    pair_free(&p);
}

/* A tampered buffer either way ends the session. */
static void
test_pair_layer_tamper(void **state)
{
    struct pst_sasl_client_config sasl = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .host = HOST,
        .digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT,
    };
    struct pst_smtp_client_config cc = pair_client_config(&sasl, 0);
    struct pair p = {.tamper_s2c = 1};

    (void)state;
    raw_new(&p.srv, "DIGEST-MD5", 0, 1);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.error, PST_EFORGED);
    assert_int_equal(p.closed, 1);
    assert_non_null(strstr(p.fail_text, "security layer"));
    assert_int_equal(p.srv.data.len, 0);
    pair_free(&p);

    memset(&p, 0, sizeof(p));
    p.tamper_c2s = 1;
    raw_new(&p.srv, "DIGEST-MD5", 0, 1);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.srv.counts[PST_SMTP_EV_CLOSE], 1);
    assert_int_equal(p.srv.close_error, PST_EFORGED);
    assert_int_equal(p.done, 0);
    pair_free(&p);
}

/* Under TLS the client asks for no layer, and a server that offers none
 * gives auth only. */
static void
test_pair_layer_not_under_tls(void **state)
{
    struct pst_sasl_client_config sasl = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .host = HOST,
        .digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT,
    };
    struct pst_smtp_client_config cc = pair_client_config(&sasl, 1);
    struct pair p = {0};

    (void)state;
    raw_new(&p.srv, "DIGEST-MD5", 1, 1);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.done, 1);
    assert_int_equal(pst_smtp_client_layer(p.c, NULL), 0);
    assert_int_equal(pst_smtp_server_layer(p.srv.s, NULL), 0);
    pair_free(&p);

    /* No TLS, but the listener does not offer a layer. */
    memset(&p, 0, sizeof(p));
    cc = pair_client_config(&sasl, 0);
    raw_new(&p.srv, "DIGEST-MD5", 0, 0);
    pair_message(&p, test_message);
    pair_run(&p, &cc);
    assert_int_equal(p.done, 1);
    assert_int_equal(pst_smtp_client_layer(p.c, NULL), 0);
    pair_free(&p);
}

static void
test_client_binding_checks(void **state)
{
    struct pst_sasl_client_config sasl = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
    };
    struct pst_smtp_client_config cc = pair_client_config(&sasl, 0);
    static const uint8_t big[PST_SASL_MAX_CB_DATA + 1];
    struct pst_smtp_client *c;

    (void)state;
    assert_rc(pst_smtp_client_new(&cc, &c), 0);
    assert_rc(pst_smtp_client_tls_binding(c, "tls-exporter", cb_a, 32),
              PST_ESTATE);
    pst_smtp_client_free(c);
    cc.implicit_tls = 1;
    assert_rc(pst_smtp_client_new(&cc, &c), 0);
    assert_rc(pst_smtp_client_tls_binding(c, "tls_exporter", cb_a, 32),
              PST_EINVAL);
    assert_rc(pst_smtp_client_tls_binding(c, "tls-exporter", NULL, 0),
              PST_EINVAL);
    assert_rc(pst_smtp_client_tls_binding(c, "tls-exporter", big,
                                          sizeof(big)),
              PST_ELIMIT);
    assert_rc(pst_smtp_client_tls_binding(c, "tls-exporter", cb_a, 32), 0);
    pst_smtp_client_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offered),
        cmocka_unit_test(test_tls_auth_checks),
        cmocka_unit_test(test_config_needs_tls),
        cmocka_unit_test(test_plus_binding),
        cmocka_unit_test(test_plus_downgrade),
        cmocka_unit_test(test_external),
        cmocka_unit_test(test_layer_raw),
        cmocka_unit_test(test_layer_pipelined),
        cmocka_unit_test(test_layer_corrupt),
        cmocka_unit_test(test_layer_memory),
        cmocka_unit_test(test_layer_offer),
        cmocka_unit_test(test_pair_plus),
        cmocka_unit_test(test_pair_external),
        cmocka_unit_test(test_pair_layer),
        cmocka_unit_test(test_pair_layer_maxbuf),
        cmocka_unit_test(test_pair_layer_tamper),
        cmocka_unit_test(test_pair_layer_not_under_tls),
        cmocka_unit_test(test_client_binding_checks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
