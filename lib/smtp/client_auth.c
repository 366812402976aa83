/*
 * The client session's AUTH (RFC 4954): choosing the mechanism, the
 * initial response, the 334 challenges and their answers, cancelling with
 * "*", and what a 235 must still prove (pst_sasl_client_finish()).
 */
#include <stdio.h>
#include <string.h>

#include <postern/base64.h>
#include <postern/smtp_client.h>

#include "client_int.h"

/* Send an AUTH continuation line: base64 of msg, "" for an empty one. */
static int
client_send_b64(struct pst_smtp_client *c, const uint8_t *msg, size_t len)
{
    int rc;

    pst_buf_reset(&c->b64);
    if ((rc = pst_base64_encode(msg, len, &c->b64)) < 0 ||
        (rc = pst_buf_append(&c->b64, "", 0)) < 0)
        return rc;
    /* RFC 4954 §4: "12288 octets is considered to be a sufficient line
     * length limit"; a server's buffer may be no larger, and one that
     * overflows fails the exchange with 500 5.5.6.  Say so here. */
    if (c->b64.len > PST_SMTP_CLIENT_MAX_AUTH_LINE) {
        pst__client_fail(c, PST_ELIMIT, 0, STAGE_AUTH,
                         "the SASL response is longer than 12288 octets, "
                         "the line length servers accept (RFC 4954 §4)");
        return PST_ELIMIT;
    }
    return pst__client_send(c, STAGE_AUTH, "<redacted>", "%s",
                            (const char *)c->b64.data);
}

/* --- Choosing a mechanism ----------------------------------------------- */

/* Whether m could be used with what the caller gave (a password, a
 * token, a client certificate, the channel binding), TLS aside. */
static int
client_mech_fits(const struct pst_smtp_client *c,
                 const struct pst_sasl_mech *m)
{
    unsigned f = pst_sasl_mech_flags(m);

    /* EXTERNAL: the TLS client certificate only the caller knows of. */
    if (f & PST_MECH_EXTERNAL)
        return c->tls_client_cert;
    /* Everything else needs a user name. */
    if (c->sasl_authcid.len == 0)
        return 0;
    if ((f & PST_MECH_BEARER) && c->sasl_token.len == 0)
        return 0;
    /* SCRAM-*-PLUS: this connection's binding data (RFC 5802 §6). */
    if ((f & PST_MECH_CHANNEL_BINDING) && c->cb_len == 0)
        return 0;
    return (f & PST_MECH_BEARER) || c->sasl_token.len == 0 ||
           c->sasl_password.len > 0;
}

static int
client_mech_usable(const struct pst_smtp_client *c,
                   const struct pst_sasl_mech *m)
{
    unsigned f = pst_sasl_mech_flags(m);

    /* A bearer mechanism needs a token (not a password); channel
     * binding the TLS data the caller handed over; EXTERNAL a client
     * certificate; a token alone serves only bearer mechanisms. */
    if (!client_mech_fits(c, m))
        return 0;
    /* Both bind to TLS: nothing to bind to without it. */
    if (f & (PST_MECH_CHANNEL_BINDING | PST_MECH_EXTERNAL))
        return c->tls;
    /* Never send a password (or a token) in clear unless told to
     * (msmtp's SMTP_EINSECURE). */
    return !(f & (PST_MECH_SENDS_PASSWORD | PST_MECH_BEARER)) || c->tls ||
           c->allow_plaintext_auth;
}

const struct pst_sasl_mech *
pst_smtp_client_choose_mech(const struct pst_smtp_client *c)
{
    const struct pst_sasl_mech *m;

    if (c->forced_mech.len > 0) {
        m = pst_sasl_mech_find((const char *)c->forced_mech.data,
                               c->forced_mech.len);
        if (m == NULL || !pst__client_has_mech(c, pst_sasl_mech_name(m)) ||
            !client_mech_usable(c, m))
            return NULL;
        return m;
    }
    /* The caller's order: the first one the server offers and the
     * session may use (names lib/sasl does not know were dropped by
     * pst_smtp_client_new()). */
    if (c->have_prefs) {
        for (size_t i = 0; i < c->nprefs; i++)
            if (pst__client_has_mech(c, pst_sasl_mech_name(c->prefs[i])) &&
                client_mech_usable(c, c->prefs[i]))
                return c->prefs[i];
        return NULL;
    }
    /* With a token, the bearer mechanisms (opt-in, so not in
     * pst_sasl_mech_at()): OAUTHBEARER, the standard (RFC 7628), then
     * XOAUTH2, the table's order (INTEROP.md: Gmail offers both,
     * Microsoft 365 only XOAUTH2). */
    if (c->sasl_token.len > 0)
        for (size_t i = 0; (m = pst_sasl_mech_all_at(i)) != NULL; i++)
            if ((pst_sasl_mech_flags(m) & PST_MECH_BEARER) &&
                pst__client_has_mech(c, pst_sasl_mech_name(m)) &&
                client_mech_usable(c, m))
                return m;
    /* A client certificate was given to log in with: EXTERNAL first.
     * Then, with a channel binding, SCRAM-*-PLUS (RFC 5802 §6: a client
     * that can bind and sees -PLUS "MUST use" it); pst_sasl_mech_all_at()
     * lists them strongest first. */
    for (size_t i = 0; (m = pst_sasl_mech_all_at(i)) != NULL; i++)
        if ((pst_sasl_mech_flags(m) & PST_MECH_EXTERNAL) &&
            pst__client_has_mech(c, pst_sasl_mech_name(m)) &&
            client_mech_usable(c, m))
            return m;
    for (size_t i = 0; (m = pst_sasl_mech_all_at(i)) != NULL; i++)
        if ((pst_sasl_mech_flags(m) & PST_MECH_CHANNEL_BINDING) &&
            pst__client_has_mech(c, pst_sasl_mech_name(m)) &&
            client_mech_usable(c, m))
            return m;
    /* pst_sasl_mech_at() lists the strongest first. */
    for (size_t i = 0; (m = pst_sasl_mech_at(i)) != NULL; i++)
        if (pst__client_has_mech(c, pst_sasl_mech_name(m)) &&
            client_mech_usable(c, m))
            return m;
    return NULL;
}

/* No mechanism can be used: fail, saying why. */
static void
client_auth_unavailable(struct pst_smtp_client *c)
{
    const char *offered = c->mechs.len > 0 ? (const char *)c->mechs.data
                                           : "none";
    char why[512];

    if (c->forced_mech.len > 0) {
        const struct pst_sasl_mech *f = pst_sasl_mech_find(
            (const char *)c->forced_mech.data, c->forced_mech.len);

        if (f != NULL && pst__client_has_mech(c, pst_sasl_mech_name(f)) &&
            client_mech_fits(c, f)) {
            snprintf(why, sizeof(why),
                     "%s would send the password without TLS "
                     "(allow it with --allow-plaintext-auth)",
                     pst_sasl_mech_name(f));
            pst__client_fail(c, PST_EWEAK, 0, STAGE_AUTH, why);
            return;
        }
        snprintf(why, sizeof(why),
                 "the server does not offer %s (it offers: %s)",
                 (const char *)c->forced_mech.data, offered);
        pst__client_fail(c, PST_ENOTSUP, 0, STAGE_AUTH, why);
        return;
    }
    if (c->have_prefs) {
        for (size_t i = 0; i < c->nprefs; i++) {
            const char *name = pst_sasl_mech_name(c->prefs[i]);

            if (pst__client_has_mech(c, name) &&
                client_mech_fits(c, c->prefs[i])) {
                snprintf(why, sizeof(why),
                         "%s would send the password without TLS", name);
                pst__client_fail(c, PST_EWEAK, 0, STAGE_AUTH, why);
                return;
            }
        }
        snprintf(why, sizeof(why),
                 "no mechanism allowed (%s) is both offered and "
                 "implemented (the server offers: %s)",
                 c->pref_names.len > 0 ? (const char *)c->pref_names.data
                                       : "none",
                 offered);
        pst__client_fail(c, PST_ENOTSUP, 0, STAGE_AUTH, why);
        return;
    }
    if (c->mechs.len > 0 && c->sasl_token.len > 0 &&
        c->sasl_password.len == 0) {
        const struct pst_sasl_mech *m;
        int offered_bearer = 0;

        for (size_t i = 0; (m = pst_sasl_mech_all_at(i)) != NULL; i++)
            if ((pst_sasl_mech_flags(m) & PST_MECH_BEARER) &&
                pst__client_has_mech(c, pst_sasl_mech_name(m)))
                offered_bearer = 1;
        if (offered_bearer && !c->tls) {
            snprintf(why, sizeof(why), "the bearer token would go "
                     "without TLS (the server offers %s)", offered);
            pst__client_fail(c, PST_EWEAK, 0, STAGE_AUTH, why);
            return;
        }
        snprintf(why, sizeof(why),
                 "the server offers no mechanism for a bearer token "
                 "(OAUTHBEARER, XOAUTH2); it offers %s", offered);
        pst__client_fail(c, PST_ENOTSUP, 0, STAGE_AUTH, why);
        return;
    }
    if (c->mechs.len > 0)
        snprintf(why, sizeof(why),
                 "no usable mechanism: the server offers %s%s", offered,
                 c->tls ? "" : " (PLAIN and LOGIN need TLS or "
                               "--allow-plaintext-auth)");
    else
        snprintf(why, sizeof(why), "the server does not offer AUTH%s",
                 c->tls ? "" : " before TLS");
    pst__client_fail(c, c->mechs.len > 0 && !c->tls ? PST_EWEAK : PST_ENOTSUP,
                     0, STAGE_AUTH, why);
}

/* Whether the server offered a SCRAM-*-PLUS. */
static int
client_plus_offered(const struct pst_smtp_client *c)
{
    const struct pst_sasl_mech *m;

    for (size_t i = 0; (m = pst_sasl_mech_all_at(i)) != NULL; i++)
        if ((pst_sasl_mech_flags(m) & PST_MECH_CHANNEL_BINDING) &&
            pst__client_has_mech(c, pst_sasl_mech_name(m)))
            return 1;
    return 0;
}

/* The exchange's settings: the session's, with this connection's channel
 * binding and what the security layer may be. */
static void
client_exchange_config(const struct pst_smtp_client *c,
                       const struct pst_sasl_mech *m,
                       struct pst_sasl_client_config *cfg)
{
    int plus = (pst_sasl_mech_flags(m) & PST_MECH_CHANNEL_BINDING) != 0;
    int scram = strncmp(pst_sasl_mech_name(m), "SCRAM-", 6) == 0;
    int offered = client_plus_offered(c);

    *cfg = c->sasl;
    cfg->cb_type = NULL;
    cfg->cb_data = NULL;
    cfg->cb_len = 0;
    cfg->cb_plus_offered = offered;
    /* RFC 5802 §6: -PLUS sends "p=<type>"; a plain SCRAM sends "y" when
     * it could bind but the server offered no -PLUS.  Forced to a plain
     * SCRAM although -PLUS was offered, it can only say "n". */
    if (c->tls && c->cb_len > 0 && (plus || (scram && !offered))) {
        cfg->cb_type = plus ? c->cb_type : NULL;
        cfg->cb_data = c->cb_data;
        cfg->cb_len = c->cb_len;
    }
    /* DESIGN.md security_layer: never under TLS, where it adds nothing. */
    if (c->tls)
        cfg->digest_qops = 0;
}

void
pst__client_start_auth(struct pst_smtp_client *c)
{
    const struct pst_sasl_mech *m = pst_smtp_client_choose_mech(c);
    struct pst_sasl_client_config cfg;
    struct pst_buf msg;
    char why[512];
    size_t line_len;
    int rc;

    if (m == NULL) {
        client_auth_unavailable(c);
        return;
    }
    c->mech = m;
    client_exchange_config(c, m, &cfg);
    rc = pst_sasl_client_new(m, &cfg, &c->sc);
    if (rc < 0) {
        pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
        return;
    }
    /* LOGIN goes without an initial response, as msmtp and curl send it:
     * a server that ignores the IR prompts "Username:" anyway, and our
     * LOGIN client, answering by position, would send it the password
     * as the user name (into its logs). */
    if (!(pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST) ||
        strcmp(pst_sasl_mech_name(m), "LOGIN") == 0) {
        rc = pst__client_send(c, STAGE_AUTH, NULL, "AUTH %s",
                              pst_sasl_mech_name(m));
        /* A server-first mechanism: step(NULL) just records that.  (LOGIN
         * answers the first prompt with the user name.) */
        if (rc == 0 && !(pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST))
            rc = pst_sasl_client_step(c->sc, NULL, 0, &c->scratch);
        if (rc < 0)
            pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
        return;
    }
    rc = pst_sasl_client_step(c->sc, NULL, 0, &c->scratch);
    if (rc < 0) {
        pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
        return;
    }
    msg = c->scratch;
    pst_buf_reset(&c->b64);
    if ((rc = pst_base64_encode(msg.data, msg.len, &c->b64)) < 0 ||
        (rc = pst_buf_append(&c->b64, "", 0)) < 0) {
        pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
        return;
    }
    snprintf(why, sizeof(why), "AUTH %s <redacted>", pst_sasl_mech_name(m));
    /* RFC 4954 §4: "If use of the initial response argument would cause
     * the AUTH command to exceed this length [RFC 5321 §4.5.3.1.4: 512
     * octets with the CRLF], the client MUST NOT use the initial
     * response parameter": it goes after an empty 334 instead.  An empty
     * one is sent as "=". */
    line_len = strlen("AUTH ") + strlen(pst_sasl_mech_name(m)) + 1 +
               (c->b64.len > 0 ? c->b64.len : 1) + 2;
    if (line_len > CLIENT_CMD_LINE) {
        pst_buf_reset(&c->pending_ir);
        if ((rc = pst_buf_append(&c->pending_ir, msg.data, msg.len)) < 0) {
            pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
            return;
        }
        c->have_pending_ir = 1;
        rc = pst__client_send(c, STAGE_AUTH, NULL, "AUTH %s",
                              pst_sasl_mech_name(m));
    } else {
        rc = pst__client_send(c, STAGE_AUTH, why, "AUTH %s %s",
                              pst_sasl_mech_name(m),
                              c->b64.len > 0 ? (const char *)c->b64.data : "=");
    }
    if (rc < 0)
        pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
}

/* The reply to one AUTH step. */
void
pst__client_auth_reply(struct pst_smtp_client *c)
{
    const char *text = (const char *)c->reply.data;
    char why[256];
    int rc;

    if (c->reply_code == 334 && !c->auth_cancelled) {
        const char *b64 = text + 3;

        b64 += (*b64 == ' ');
        if (c->have_pending_ir) {
            c->have_pending_ir = 0;
            rc = client_send_b64(c, c->pending_ir.data, c->pending_ir.len);
            pst_buf_clear(&c->pending_ir);
            if (rc < 0)
                pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
            return;
        }
        pst_buf_reset(&c->b64);
        rc = pst_base64_decode((const uint8_t *)b64, strlen(b64), &c->b64);
        if (rc == 0)
            rc = pst_sasl_client_step(
                c->sc, c->b64.data != NULL ? c->b64.data : (const uint8_t *)"",
                c->b64.len, &c->scratch);
        /* The server has proved itself: a negotiated layer leaves the
         * exchange now, and applies once the 235 comes. */
        if (rc == PST_SASL_DONE && c->pending_layer == NULL &&
            pst_sasl_client_layer(c->sc, &c->pending_layer) < 0)
            rc = PST_ENOMEM;
        if (rc >= 0) {
            rc = client_send_b64(c, c->scratch.data, c->scratch.len);
            if (rc < 0)
                pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
            return;
        }
        /* RFC 4954 §4: a client that cannot use a challenge cancels with
         * "*"; the server answers 501 and we report our reason.  A
         * challenge after the mechanism has said all it has to say
         * (PST_ESTATE from the step) is the server breaking the protocol,
         * not a bug of ours. */
        c->auth_cancelled = 1;
        c->auth_error = rc == PST_ESTATE ? PST_EPROTO : rc;
        c->auth_extra_challenge = rc == PST_ESTATE;
        if (pst__client_send(c, STAGE_AUTH, NULL, "*") < 0)
            pst__client_fail(c, rc, 0, STAGE_AUTH, pst_strerror(rc));
        return;
    }
    if (c->auth_cancelled) {
        snprintf(why, sizeof(why), "%s; cancelled the exchange",
                 c->auth_error == PST_EFORGED
                     ? "the server failed to prove it knows the password"
                 : c->auth_error == PST_EWEAK
                     ? "the server's SCRAM iteration count is too low"
                 : c->auth_extra_challenge
                     ? "the server sent a challenge after the exchange "
                       "was complete"
                 : c->auth_error == PST_EPROTO
                     ? "malformed challenge from the server"
                     : pst_strerror(c->auth_error));
        pst__client_fail(c, c->auth_error, 0, STAGE_AUTH, why);
        return;
    }
    if (c->reply_code == 235) {
        rc = pst_sasl_client_finish(c->sc);
        if (rc < 0) {
            pst__client_fail(c, PST_EFORGED, c->reply_code, STAGE_AUTH,
                             "the server accepted without proving it knows the "
                             "password");
            return;
        }
        pst__client_event(c, PST_SMTP_CLIENT_EV_AUTH, 0, c->reply_code,
                          STAGE_AUTH, text);
        pst_sasl_client_free(c->sc);
        c->sc = NULL;
        c->authed = 1;
        if (c->pending_layer != NULL) {
            /* RFC 4954 §4: "the client MUST discard any knowledge
             * obtained from the server, such as the list of SMTP service
             * extensions ... The client SHOULD send an EHLO command as
             * the first command after a successful SASL negotiation that
             * results in the enabling of a security layer." */
            if (pst__client_layer_start(c) < 0) {
                pst__client_fail(c, PST_ENOMEM, 0, STAGE_AUTH,
                                 "out of memory");
                return;
            }
            c->ext = 0;
            pst_buf_reset(&c->mechs);
            pst_buf_append(&c->mechs, "", 0);
            if (pst__client_send(c, STAGE_EHLO, NULL, "EHLO %s",
                                 (const char *)c->helo.data) < 0)
                pst__client_fail(c, PST_ENOMEM, 0, STAGE_EHLO,
                                 "out of memory");
            return;
        }
        if (c->probe) {
            pst__client_event(c, PST_SMTP_CLIENT_EV_DONE, 0, c->reply_code,
                              STAGE_AUTH, text);
            pst__client_enter_phase(c, PHASE_ENDING);
            pst__client_quit(c);
            return;
        }
        pst__client_begin(c);
        return;
    }
    if (c->reply_code == 504) {
        pst__client_fail(c, PST_ENOTSUP, c->reply_code, STAGE_AUTH, text);
        return;
    }
    if (c->reply_code >= 500) {
        pst__client_fail(c, PST_EAUTH, c->reply_code, STAGE_AUTH, text);
        return;
    }
    pst__client_fail_reply(c, STAGE_AUTH);
}

const uint8_t *
pst_smtp_client_auth_error_json(const struct pst_smtp_client *c, size_t *len)
{
    *len = 0;
    /* The exchange is kept after a failure (freed with the session). */
    if (c->sc == NULL || c->mech == NULL ||
        !(pst_sasl_mech_flags(c->mech) & PST_MECH_BEARER))
        return NULL;
    return pst_sasl_client_error_json(c->sc, len);
}
