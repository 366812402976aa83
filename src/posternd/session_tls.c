/*
 * posternd - a connection's TLS (session.h): starting it (implicit TLS,
 * STARTTLS), the pump's callbacks between the socket, tls.h and the
 * session, and what TLS gives the SASL exchanges once the handshake is
 * done (conn_tls_auth()): the channel binding SCRAM-*-PLUS checks (RFC
 * 5802 §6) and the user a verified client certificate names, whom
 * EXTERNAL logs in as (RFC 4422 App. A; DESIGN.md "Operations and the
 * other SASL keys").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "metrics.h"
#include "session.h"

/* The user the certificate id names under cert_user, into user (n
 * bytes).  Returns 0, or -1 with *why saying why none. */
static int
conn_cert_user(struct conn *c, const struct config_listener *cl,
               const struct tls_peer_id *id, char *user, size_t n,
               const char **why)
{
    const char *name = NULL;
    int rc;

    switch (cl->cert_user) {
    case CONFIG_CERT_USER_SAN_EMAIL:
        name = id->email;
        *why = "no e-mail address in subjectAltName";
        break;
    case CONFIG_CERT_USER_SUBJECT_CN:
        name = id->cn;
        *why = "no usable subject CN";
        break;
    case CONFIG_CERT_USER_FINGERPRINT:
        rc = userdb_find_cert(c->w->udb, id->fingerprint, user, n);
        *why = rc == PST_ENOENT ? "no user has cert= this fingerprint"
                                : "the user store cannot map fingerprints";
        return rc == 0 ? 0 : -1;
    }
    if (name == NULL || name[0] == '\0' || strlen(name) >= n)
        return -1;
    memcpy(user, name, strlen(name) + 1);
    return 0;
}

/* The TLS handshake is done: hand the session the channel binding and
 * the user the client certificate names.  Returns: 0, -1. */
static int
conn_tls_auth(struct conn *c)
{
    const struct config_listener *cl = &c->sc->cfg->listeners[c->lidx];
    struct pst_smtp_tls_auth ta = {0};
    uint8_t cb[TLS_UNIQUE_MAX > TLS_EXPORTER_LEN ? TLS_UNIQUE_MAX
                                                 : TLS_EXPORTER_LEN];
    char user[PST_SASL_MAX_NAME + 1];
    struct tls_peer_id id;
    const char *cb_type, *why = NULL, *map_why = NULL;
    size_t cb_len;
    int rc;

    /* No binding (TLS 1.2 without extended master secret): the session
     * does not offer -PLUS. */
    if (tls_channel_binding(c->tls, &cb_type, cb, sizeof(cb), &cb_len) == 0) {
        ta.cb_type = cb_type;
        ta.cb_data = cb;
        ta.cb_len = cb_len;
    }
    free(c->cert_fp);
    c->cert_fp = NULL;
    if (cl->tls_client_ca != NULL) {
        rc = tls_peer_id(c->tls, &id, &why);
        /* Out of memory: no fingerprint, so no pinned user (cert=)
         * matches. */
        if (rc == 0 || rc == PST_EAUTH)
            c->cert_fp = strdup(id.fingerprint);
        /* tls_client_cert = optional: a certificate that did not verify
         * maps to nobody, so only EXTERNAL fails. */
        if (rc == 0 &&
            conn_cert_user(c, cl, &id, user, sizeof(user), &map_why) == 0)
            ta.external_id = user;
        if (rc != PST_ENOENT && rc != PST_ESTATE)
            log_event(LOG_LEVEL_INFO, "tls_client_cert", "sid", c->sid,
                      "fingerprint", conn_cert_fp(c), "verify", why,
                      "user", ta.external_id != NULL ? ta.external_id : "-",
                      ta.external_id == NULL && map_why != NULL ? "why"
                                                                : NULL,
                      map_why, NULL);
    }
    rc = pst_smtp_server_tls_auth(c->s, &ta);
    if (rc == PST_EINVAL && ta.external_id != NULL) {
        /* A name the session will not take as a user (a control
         * character, too long): nobody. */
        log_event(LOG_LEVEL_INFO, "tls_client_cert", "sid", c->sid,
                  "fingerprint", conn_cert_fp(c), "why",
                  "the name is not a usable user name", NULL);
        ta.external_id = NULL;
        rc = pst_smtp_server_tls_auth(c->s, &ta);
    }
    OPENSSL_cleanse(cb, sizeof(cb));
    return rc < 0 ? -1 : 0;
}

/* The TLS pump's callbacks (tls_input(), tls_send()). */
static int
conn_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return conn_write_raw(ctx, p, n) < 0 ? -1 : 0;
}

static int
conn_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    return conn_take_plain(ctx, p, n) < 0 ? -1 : 0;
}

/* The handshake is over: the session learns it (RFC 3207 §4.2: it
 * forgets what it knew; on an implicit-TLS port it greets now). */
static int
conn_tls_established(void *ctx)
{
    struct conn *c = ctx;

    if (c->state == CONN_TLS_HANDSHAKE)
        conn_enter_state(c, CONN_RUNNING);
    log_event(LOG_LEVEL_INFO, "tls", "sid", c->sid, "version",
              tls_protocol(c->tls), "cipher", tls_cipher(c->tls), NULL);
    metrics_tls(c->w->metrics, tls_protocol(c->tls));
    conn_profile_tls_up(c);
    if (pst_smtp_server_tls_started(c->s, tls_protocol(c->tls),
                                    tls_cipher(c->tls)) < 0 ||
        conn_tls_auth(c) < 0)
        return -1;
    if (c->implicit && pst_smtp_server_start(c->s) < 0)
        return -1;
    return 0;
}

static const struct tls_io conn_tls_io = {
    .send = conn_tls_send,
    .recv = conn_tls_recv,
    .established = conn_tls_established,
};

int
conn_tls_begin(struct conn *c)
{
    struct tls_ctx *ctx = conn_profile_tls(c);
    const struct tls_client_ca *ca = c->sc->l[c->lidx].client_ca;

    if (ctx == NULL || tls_new(ctx, NULL, &c->tls) < 0)
        return -1;
    /* tls_client_ca: ask for a client certificate (EXTERNAL). */
    if (ca != NULL && tls_ask_client_cert(c->tls, ca) < 0)
        return -1;
    tls_set_io(c->tls, &conn_tls_io, c);
    conn_enter_state(c, CONN_TLS_HANDSHAKE);
    return 0;
}

/* Ciphertext arrived: advance the handshake, then decrypt.  Returns 0,
 * 1 (the client's close_notify: it sends no more), -1. */
int
conn_take_tls(struct conn *c, const uint8_t *p, size_t n)
{
    int rc = tls_input(c->tls, p, n);

    if (rc == TLS_OK || rc == TLS_WANT_MORE)
        return 0;
    if (rc == TLS_CLOSED && tls_established(c->tls))
        return 1;
    if (rc < 0 && !tls_established(c->tls)) {
        log_event(LOG_LEVEL_INFO, "tls_failed", "sid", c->sid, "peer",
                  c->peer, "error", tls_error(c->tls), NULL);
        metrics_tls_failed(c->w->metrics);
    }
    return -1;
}
