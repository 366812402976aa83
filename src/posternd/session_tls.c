/*
 * posternd - what a connection's TLS gives its SASL exchanges
 * (session.h, conn_tls_auth()): the channel binding SCRAM-*-PLUS checks
 * (RFC 5802 §6) and the user a verified client certificate names, whom
 * EXTERNAL logs in as (RFC 4422 App. A; DESIGN.md "Operations and the
 * other SASL keys").
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
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

int
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
    c->cert_fp[0] = '\0';
    if (cl->tls_client_ca != NULL) {
        rc = tls_peer_id(c->tls, &id, &why);
        if (rc == 0 || rc == PST_EAUTH)
            memcpy(c->cert_fp, id.fingerprint, sizeof(c->cert_fp));
        /* tls_client_cert = optional: a certificate that did not verify
         * maps to nobody, so only EXTERNAL fails. */
        if (rc == 0 &&
            conn_cert_user(c, cl, &id, user, sizeof(user), &map_why) == 0)
            ta.external_id = user;
        if (rc != PST_ENOENT && rc != PST_ESTATE)
            log_event(LOG_LEVEL_INFO, "tls_client_cert", "sid", c->sid,
                      "fingerprint", c->cert_fp, "verify", why,
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
                  "fingerprint", c->cert_fp, "why",
                  "the name is not a usable user name", NULL);
        ta.external_id = NULL;
        rc = pst_smtp_server_tls_auth(c->s, &ta);
    }
    OPENSSL_cleanse(cb, sizeof(cb));
    return rc < 0 ? -1 : 0;
}
