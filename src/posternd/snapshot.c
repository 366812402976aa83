/*
 * posternd - the configuration snapshot (snapshot.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver_maildir.h"
#include "snapshot.h"

void
snapshot_unref(struct snapshot *sc)
{
    if (sc == NULL || atomic_fetch_sub(&sc->refs, 1) != 1)
        return;
    if (sc->uri_hosts != NULL) {
        for (size_t i = 0; sc->uri_hosts[i] != NULL; i++)
            free(sc->uri_hosts[i]);
        free(sc->uri_hosts);
    }
    for (size_t i = 0; sc->l != NULL && i < sc->cfg->n_listeners; i++)
        tls_ctx_free(sc->l[i].tls);
    free(sc->l);
    free(sc->mail_root);
    tls_ctx_free(sc->tls);
    userdb_unref(sc->udb);
    config_free(sc->cfg);
    free(sc);
}

/* The host part of a listener address ("127.0.0.1", "::1"). */
static char *
snapshot_host(const struct config_listener *l)
{
    char buf[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&l->address.sa;

    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
                  sizeof(buf));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  buf, sizeof(buf));
    return strdup(buf);
}

/* Whether the SMTP session takes the settings of listener cl. */
static int
snapshot_check_session(const struct config *cfg,
                       const struct config_listener *cl,
                       const struct pst_smtp_server_config *scfg, char *err,
                       size_t n)
{
    struct pst_smtp_server *s;
    int rc;

    /* RFC 4954 §9: no session is dropped before 3 failed AUTHs. */
    if (cfg->max_errors < PST_SMTP_MIN_MAX_ERRORS) {
        snprintf(err, n, "%s: max_errors = %u: must be at least %d",
                 cfg->file, cfg->max_errors, PST_SMTP_MIN_MAX_ERRORS);
        return -1;
    }
    rc = pst_smtp_server_new(scfg, &s);
    if (rc < 0) {
        snprintf(err, n, "%s:%u: [listener %s]: settings refused by the "
                 "SMTP session (%s)", cfg->file, cl->line, cl->name,
                 pst_errname(rc));
        return -1;
    }
    pst_smtp_server_free(s);
    return 0;
}

struct snapshot *
snapshot_load(const char *path, char *err, size_t n)
{
    struct snapshot *sc = calloc(1, sizeof(*sc));
    struct config *cfg;
    int need_tls = 0;

    if (sc == NULL) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    atomic_init(&sc->refs, 1);
    if (config_load(path, &sc->cfg, err, n) < 0) {
        free(sc);
        return NULL;
    }
    cfg = sc->cfg;
    /* A pure relay has no mailboxes. */
    if (cfg->mailbox != NULL &&
        (sc->mail_root = config_mailbox_root(cfg->mailbox)) == NULL) {
        snprintf(err, n, "out of memory");
        goto fail;
    }
    if (maildir_check_spool(cfg->spool, cfg->mailbox, err, n) < 0)
        goto fail;
    if (userdb_open(cfg, &sc->udb, err, n) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        need_tls |= cfg->listeners[i].tls != CONFIG_TLS_NONE;
    if (need_tls) {
        struct tls_config tc = {
            .role = TLS_ROLE_SERVER,
            .cert_file = cfg->tls_cert,
            .key_file = cfg->tls_key,
            .min_version = cfg->tls_min_version,
        };

        if (tls_ctx_new(&tc, &sc->tls, err, n) < 0)
            goto fail;
    }
    sc->l = calloc(cfg->n_listeners, sizeof(*sc->l));
    sc->uri_hosts = calloc(cfg->n_listeners + 1, sizeof(char *));
    if (sc->l == NULL || sc->uri_hosts == NULL) {
        snprintf(err, n, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        struct snapshot_listener *lc = &sc->l[i];

        sc->uri_hosts[i] = snapshot_host(cl);
        for (size_t k = 0; k < cl->mechs.n; k++)
            lc->mechs[k] = cl->mechs.v[k];
        lc->mechs[cl->mechs.n] = NULL;
        lc->scfg = (struct pst_smtp_server_config){
            .hostname = cfg->hostname,
            .tls = cl->tls == CONFIG_TLS_IMPLICIT ? PST_SMTP_TLS_IMPLICIT
                   : cl->tls == CONFIG_TLS_STARTTLS ? PST_SMTP_TLS_STARTTLS
                                                    : PST_SMTP_TLS_NONE,
            .auth = cl->auth == CONFIG_AUTH_OPTIONAL ? PST_SMTP_AUTH_OPTIONAL
                    : cl->auth == CONFIG_AUTH_OFF    ? PST_SMTP_AUTH_OFF
                                                     : PST_SMTP_AUTH_REQUIRED,
            .auth_before_tls =
                cl->auth_before_tls == CONFIG_ABT_ALL ? PST_SMTP_BEFORE_TLS_ALL
                : cl->auth_before_tls == CONFIG_ABT_CHALLENGE
                    ? PST_SMTP_BEFORE_TLS_CHALLENGE
                    : PST_SMTP_BEFORE_TLS_NONE,
            .mechs = lc->mechs,
            .legacy_auth_line = cfg->legacy_auth_line,
            .max_message_size = cfg->max_message_size,
            .max_recipients = cfg->max_recipients,
            .max_errors = cfg->max_errors,
            .sender_check = cfg->sender_check == CONFIG_SENDER_OFF
                                ? PST_SMTP_SENDER_OFF
                                : PST_SMTP_SENDER_STRICT,
            .uri_hosts = (const char *const *)sc->uri_hosts,
            .security_layer = cl->security_layer,
        };
        if (snapshot_check_session(cfg, cl, &lc->scfg, err, n) < 0)
            goto fail;
        /* Client certificates for EXTERNAL: a context that asks for
         * them, for this listener alone. */
        if (cl->tls_client_ca != NULL) {
            struct tls_config tc = {
                .role = TLS_ROLE_SERVER,
                .cert_file = cfg->tls_cert,
                .key_file = cfg->tls_key,
                .min_version = cfg->tls_min_version,
                .client_ca_file = cl->tls_client_ca,
                .client_cert_required = cl->tls_client_cert_required ? 1u
                                                                     : 0u,
                .client_crl_file = cl->tls_client_crl,
            };
            char why[CONFIG_ERR_MAX];

            if (tls_ctx_new(&tc, &lc->tls, why, sizeof(why)) < 0) {
                snprintf(err, n, "%s:%u: [listener %s]: %s", cfg->file,
                         cl->line, cl->name, why);
                goto fail;
            }
        }
    }
    return sc;
fail:
    snapshot_unref(sc);
    return NULL;
}

struct snapshot *
snapshot_ref(struct snapshot *sc)
{
    atomic_fetch_add(&sc->refs, 1);
    return sc;
}
