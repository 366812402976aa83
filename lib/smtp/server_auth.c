/*
 * The server session's AUTH (RFC 4954): which mechanisms are offered in
 * this state, the AUTH command, the 334 continuation lines and the SASL
 * exchange with its pauses for the driver (AUTH_LOOKUP, AUTH_VERIFY).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/base64.h>
#include <postern/smtp.h>

#include "server_int.h"

void
pst__server_end_sasl(struct pst_smtp_server *s)
{
    pst_sasl_server_free(s->sasl);
    s->sasl = NULL;
    /* Most sessions authenticate once: the messages go (sasl_in wiped,
     * it is secret) rather than stay for the rest of the session.
     * Releasing memory cannot fail. */
    pst_buf_reset(&s->sasl_in);
    pst_buf_reset(&s->sasl_out);
    (void)pst_buf_shrink(&s->sasl_in, 0);
    (void)pst_buf_shrink(&s->sasl_out, 0);
}

/* Whether mechanism m is offered now: auth policy, what TLS gave, and
 * auth_before_tls. */
static int
server_mech_offered(const struct pst_smtp_server *s,
                    const struct pst_sasl_mech *m)
{
    unsigned f = pst_sasl_mech_flags(m);

    if (s->cfg.auth == PST_SMTP_AUTH_OFF)
        return 0;
    /* SCRAM-*-PLUS binds to the TLS connection (RFC 5802 §6): only under
     * TLS, and only with its binding data.  EXTERNAL takes the identity
     * of the TLS client certificate (RFC 4422 App. A): only under TLS,
     * where a missing or unmapped certificate fails with 535. */
    if (f & PST_MECH_CHANNEL_BINDING)
        return s->tls && s->tlsi->cb_len > 0;
    if (f & PST_MECH_EXTERNAL)
        return s->tls;
    if (s->tls)
        return 1;
    switch (s->cfg.auth_before_tls) {
    case PST_SMTP_BEFORE_TLS_NONE:
        return 0;
    case PST_SMTP_BEFORE_TLS_CHALLENGE:
        /* DESIGN.md: before TLS only mechanisms that never send the
         * password (RFC 4954 §4: a configuration without plaintext
         * mechanisms over plaintext). */
        return !(pst_sasl_mech_flags(m) & PST_MECH_SENDS_PASSWORD);
    case PST_SMTP_BEFORE_TLS_ALL:
        return 1;
    }
    return 0;
}

/* Whether a SCRAM-*-PLUS is offered now: a plain SCRAM client that says
 * it could bind ("y") is then a downgrade (RFC 5802 §6). */
static int
server_plus_offered(const struct pst_smtp_server *s)
{
    for (size_t i = 0; i < s->nmechs; i++)
        if ((pst_sasl_mech_flags(s->mechs[i]) & PST_MECH_CHANNEL_BINDING) &&
            server_mech_offered(s, s->mechs[i]))
            return 1;
    return 0;
}

/* The mechanism called name if it is offered now, else NULL. */
static const struct pst_sasl_mech *
server_find_mech(const struct pst_smtp_server *s, const uint8_t *name,
                 size_t len)
{
    for (size_t i = 0; i < s->nmechs; i++)
        if (pst__smtp_word_eq(name, len, pst_sasl_mech_name(s->mechs[i])))
            return server_mech_offered(s, s->mechs[i]) ? s->mechs[i]
                                                       : NULL;
    return NULL;
}

/* --- AUTH (RFC 4954) ----------------------------------------------------- */

/* The exchange ended without success. */
static void
server_auth_fail(struct pst_smtp_server *s, int err, const char *reason,
                 const char *reply)
{
    struct pst_smtp_event *ev;

    snprintf(s->reason, sizeof(s->reason), "%s",
             reason != NULL && reason[0] != '\0' ? reason
                                                 : pst_strerror(err));
    if (reply == NULL)
        reply = pst__smtp_auth_reply(err);
    /* 5xx: a failed authentication (RFC 4954 §9); 454 is ours. */
    pst__server_reply(s, "%s", reply);
    if (reply[0] == '5')
        pst__server_count_error(s, 1);
    ev = pst__server_event(s, PST_SMTP_EV_AUTH_RESULT, 0);
    ev->ok = 0;
    ev->error = err;
    ev->reason = s->reason;
    ev->mech = pst_sasl_mech_name(s->sasl_mech);
    ev->user = s->attempt.len > 0 ? server_str(&s->attempt) : NULL;
    pst__server_end_sasl(s);
    pst__server_enter_state(s, PST_SMTP_STATE_IDLE);
}

static void
server_auth_success(struct pst_smtp_server *s)
{
    struct pst_smtp_event *ev;
    struct pst_sasl_layer *layer = NULL;

    /* The authorization identity must be the authentication identity:
     * postern does not proxy (RFC 4954 §4 authzid; RFC 4422 §3.4.1). */
    if (pst_sasl_server_authzid(s->sasl) != NULL) {
        server_auth_fail(s, PST_EAUTH,
                         "authorization identity not permitted", NULL);
        return;
    }
    /* A security layer (DIGEST-MD5 auth-int, auth-conf) leaves the
     * exchange now; it applies after the 235 (RFC 4954 §4). */
    if (pst_sasl_server_layer(s->sasl, &layer) < 0) {
        server_auth_fail(s, PST_ETEMP, "cannot set up the security layer",
                         NULL);
        return;
    }
    pst_buf_reset(&s->user);
    if (pst_buf_append(&s->user, s->attempt.data, s->attempt.len) < 0 ||
        pst_buf_append(&s->user, "", 0) < 0) {
        s->broken = PST_ENOMEM;
        return;
    }
    s->authed = 1;
    s->auth_mech = pst_sasl_mech_name(s->sasl_mech);
    /* RFC 4954 §6: "235 2.7.0 Authentication Succeeded". */
    pst__server_reply(s, "235 2.7.0 Authentication successful");
    ev = pst__server_event(s, PST_SMTP_EV_AUTH_RESULT, 0);
    ev->ok = 1;
    ev->mech = s->auth_mech;
    ev->user = server_str(&s->user);
    pst__server_end_sasl(s);
    pst__server_enter_state(s, PST_SMTP_STATE_IDLE);
    if (layer != NULL)
        pst__server_layer_start(s, layer);
}

/* Act on what pst_sasl_server_step() returned. */
static void
server_auth_progress(struct pst_smtp_server *s, int rc)
{
    const char *id = pst_sasl_server_authcid(s->sasl);
    struct pst_smtp_event *ev;

    if (id != NULL) {
        pst_buf_reset(&s->attempt);
        if (pst_buf_append_str(&s->attempt, id) < 0) {
            s->broken = PST_ENOMEM;
            return;
        }
    }
    switch (rc) {
    case PST_SASL_CONTINUE: {
        struct pst_buf line;

        /* RFC 4954 §4: "334" SP base64 challenge; an empty challenge is
         * "334 " with the space. */
        pst_buf_init(&line, 4 + PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE),
                     0);
        if (pst_buf_append_str(&line, "334 ") < 0 ||
            pst_base64_encode(s->sasl_out.data, s->sasl_out.len,
                              &line) < 0) {
            pst_buf_clear(&line);
            s->broken = PST_ENOMEM;
            return;
        }
        pst__server_put(s, server_str(&line), line.len);
        pst_buf_clear(&line);
        pst__server_enter_state(s, PST_SMTP_STATE_AUTH);
        s->flush = 1;
        return;
    }
    case PST_SASL_NEED_CRED:
        ev = pst__server_event(s, PST_SMTP_EV_AUTH_LOOKUP, 1);
        ev->mech = pst_sasl_mech_name(s->sasl_mech);
        ev->user = server_str(&s->attempt);
        pst__server_enter_state(s, PST_SMTP_STATE_WAIT_LOOKUP);
        return;
    case PST_SASL_NEED_VERIFY:
        ev = pst__server_event(s, PST_SMTP_EV_AUTH_VERIFY, 1);
        ev->mech = pst_sasl_mech_name(s->sasl_mech);
        ev->user = server_str(&s->attempt);
        ev->password = pst_sasl_server_password(s->sasl, &ev->password_len);
        pst__server_enter_state(s, PST_SMTP_STATE_WAIT_VERIFY);
        return;
    case PST_SASL_DONE:
        server_auth_success(s);
        return;
    default:
        server_auth_fail(s, rc, pst_sasl_server_reason(s->sasl), NULL);
        return;
    }
}

/* Step the exchange with a client message (in == NULL: none, or resume). */
static void
server_auth_step(struct pst_smtp_server *s, const uint8_t *in, size_t len)
{
    int rc = pst_sasl_server_step(s->sasl, in, len, &s->sasl_out);

    pst_buf_reset(&s->sasl_in);
    server_auth_progress(s, rc);
}

int
pst__server_check_auth(struct pst_smtp_server *s, const uint8_t *arg,
                       size_t len)
{
    (void)arg;
    (void)len;
    if (s->cfg.auth == PST_SMTP_AUTH_OFF) {
        pst__server_error(s, "503 5.5.1 Error: authentication not enabled");
        return 0;
    }
    /* AUTH is an ESMTP extension: EHLO first (RFC 4954 §3); helo_auth
     * lets legacy devices that say HELO authenticate all the same. */
    if (!s->esmtp && !(s->cfg.helo_auth && s->greeted)) {
        pst__server_error(s, "503 5.5.1 Error: send EHLO first");
        return 0;
    }
    /* RFC 4954 §4: "After an AUTH command has been successfully
     * completed, no more AUTH commands may be issued" -> 503. */
    if (s->authed) {
        pst__server_error(s, "503 5.5.1 Error: already authenticated");
        return 0;
    }
    /* RFC 4954 §4: "The AUTH command is not permitted during a mail
     * transaction" -> 503. */
    if (s->state == PST_SMTP_STATE_MAIL) {
        pst__server_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return 0;
    }
    if (!s->esmtp)
        s->compat_used |= PST_SMTP_COMPAT_HELO_AUTH;
    return 1;
}

void
pst__server_proceed_auth(struct pst_smtp_server *s, const uint8_t *arg,
                         size_t len)
{
    /* Under TLS only; then cb_len and external_id may say more. */
    const struct server_tls *t = s->tlsi;
    struct pst_sasl_server_config scfg = {
        .hostname = s->cfg.hostname,
        .realm = s->cfg.realm,
        .uri_hosts = s->cfg.uri_hosts,
        .timestamp = s->cfg.timestamp,
        .random = s->cfg.random,
        .random_ctx = s->cfg.random_ctx,
        .scram_iterations = s->cfg.scram_iterations,
        .scram_secret = s->cfg.scram_secret,
        .scram_secret_len = s->cfg.scram_secret_len,
        .external_id = t != NULL && t->external_id.len > 0
                           ? server_str(&t->external_id)
                           : NULL,
        .cb_type = t != NULL && t->cb_len > 0 ? t->cb_type : NULL,
        .cb_data = t != NULL && t->cb_len > 0 ? t->cb_data : NULL,
        .cb_len = t != NULL ? t->cb_len : 0,
        .cb_plus_offered = server_plus_offered(s),
        /* DESIGN.md security_layer: offered only where configured, never
         * under TLS, and not a second time inside one. */
        .digest_qops = s->cfg.security_layer && !s->tls && s->layer == NULL
                           ? PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT |
                                 PST_SASL_QOP_AUTH_CONF
                           : 0,
        .digest_maxbuf = SERVER_LAYER_MAXBUF,
        .digest_ciphers = s->cfg.digest_ciphers,
    };
    const uint8_t *ir = NULL;
    size_t mlen = 0, irlen = 0;
    const struct pst_sasl_mech *m;
    int rc;

    /* auth-command = "AUTH" SP sasl-mech [SP initial-response] */
    while (mlen < len && arg[mlen] != ' ')
        mlen++;
    if (mlen < len) {
        ir = arg + mlen + 1;
        irlen = len - mlen - 1;
        if (irlen == 0 || memchr(ir, ' ', irlen) != NULL) {
            pst__server_error(s, "501 5.5.4 Syntax: AUTH mechanism "
                                 "[initial-response]");
            return;
        }
    }
    /* RFC 4954 §4: an unknown mechanism, or one not offered in this
     * state (e.g. PLAIN before TLS), is 504 5.5.4 (538 is historical). */
    m = server_find_mech(s, arg, mlen);
    if (m == NULL) {
        pst__server_error(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    s->sasl_mech = m;
    s->reason[0] = '\0';
    pst_buf_reset(&s->attempt);
    if (ir != NULL) {
        /* RFC 4954 §4: an initial response to a mechanism where the
         * server speaks first is 501 (5.7.0). */
        if (!(pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST)) {
            server_auth_fail(s, PST_EPROTO,
                             "initial response to a server-first "
                             "mechanism",
                             "501 5.7.0 Initial response not allowed "
                             "for this mechanism");
            return;
        }
        /* RFC 4954 §4: "=" is an initial response that is present but
         * empty; anything else must be valid base64 (501 5.5.2). */
        pst_buf_reset(&s->sasl_in);
        if (!(irlen == 1 && ir[0] == '=') &&
            pst_base64_decode(ir, irlen, &s->sasl_in) < 0) {
            server_auth_fail(s, PST_EPROTO,
                             "invalid base64 in the initial response",
                             "501 5.5.2 Invalid base64 data");
            return;
        }
    }
    rc = pst_sasl_server_new(m, &scfg, &s->sasl);
    if (rc == PST_ENOTSUP && (scfg.digest_qops & PST_SASL_QOP_AUTH_CONF)) {
        /* No cipher of the configured ones in this OpenSSL: integrity
         * only. */
        scfg.digest_qops &= ~PST_SASL_QOP_AUTH_CONF;
        rc = pst_sasl_server_new(m, &scfg, &s->sasl);
    }
    if (rc < 0) {
        server_auth_fail(s, rc, "cannot start the exchange", NULL);
        return;
    }
    if (ir != NULL)
        server_auth_step(s, s->sasl_in.data != NULL
                                ? s->sasl_in.data
                                : (const uint8_t *)"",
                         s->sasl_in.len);
    else
        server_auth_step(s, NULL, 0);
}

/* A line in the AUTH state: the client's answer to a 334 challenge. */
int
pst__server_auth_line(struct pst_smtp_server *s)
{
    const uint8_t *line;
    size_t len;
    unsigned flags;

    if (!pst__server_read_line(s, LINE_MODE_AUTH, &line, &len, &flags))
        return 0;
    pst__server_trace_line(s, line, len, 1);
    if (flags & LINE_TOO_LONG) {
        /* RFC 4954 §4: longer than the server's buffer -> 500 5.5.6. */
        server_auth_fail(s, PST_ELIMIT, "response line too long", NULL);
    } else if (flags & (LINE_BARE_LF | LINE_BARE_CR)) {
        server_auth_fail(s, PST_EPROTO, "bare CR or LF in the response",
                         "501 5.5.2 Invalid base64 data");
    } else if (len == 1 && line[0] == '*') {
        /* RFC 4954 §4: "*" cancels the exchange -> 501. */
        server_auth_fail(s, PST_ECANCEL, "cancelled by the client", NULL);
    } else {
        pst_buf_reset(&s->sasl_in);
        if (pst_base64_decode(line, len, &s->sasl_in) < 0) {
            /* RFC 4954 §4: a response that cannot be decoded -> 501. */
            server_auth_fail(s, PST_EPROTO, "invalid base64 in a response",
                             "501 5.5.2 Invalid base64 data");
        } else {
            /* An empty line is an empty response (RFC 4954 §4). */
            server_auth_step(s, s->sasl_in.data != NULL
                                    ? s->sasl_in.data
                                    : (const uint8_t *)"",
                             s->sasl_in.len);
        }
    }
    OPENSSL_cleanse((uint8_t *)line, len);
    return 1;
}

/* Append "AUTH m1 m2" of the mechanisms offered now (empty if none). */
size_t
pst__server_auth_keyword(const struct pst_smtp_server *s, const char *prefix,
                         char *out, size_t size)
{
    size_t n = 0, count = 0;

    for (size_t i = 0; i < s->nmechs; i++) {
        const char *name = pst_sasl_mech_name(s->mechs[i]);
        int w;

        if (!server_mech_offered(s, s->mechs[i]))
            continue;
        w = snprintf(out + n, size - n, "%s%s", count == 0 ? prefix : " ",
                     name);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
        count++;
    }
    if (count == 0)
        n = 0;
    out[n] = '\0';
    return n;
}

void
pst__server_answer_auth(struct pst_smtp_server *s,
                        const struct pst_smtp_answer *a)
{
    int lookup = s->state == PST_SMTP_STATE_WAIT_LOOKUP;
    int rc;

    if (a->verdict == PST_SMTP_TEMPFAIL) {
        /* RFC 4954 §6: 454 4.7.0 when the user store is unavailable. */
        server_auth_fail(s, PST_ETEMP, "temporary failure of the store",
                         a->reply);
        return;
    }
    if (a->verdict == PST_SMTP_REJECT && a->reply != NULL) {
        server_auth_fail(s, PST_EAUTH, "refused by the server", a->reply);
        return;
    }
    /* Unknown user and wrong password go the same way (DESIGN.md). */
    if (lookup)
        rc = pst_sasl_server_set_cred(
            s->sasl, a->verdict == PST_SMTP_ACCEPT ? a->cred : NULL);
    else
        rc = pst_sasl_server_verified(s->sasl,
                                      a->verdict == PST_SMTP_ACCEPT);
    if (rc < 0) {
        server_auth_fail(s, rc, "exchange out of step", NULL);
        return;
    }
    server_auth_step(s, NULL, 0);
}

