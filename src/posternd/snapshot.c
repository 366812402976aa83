/*
 * posternd - the configuration snapshot (snapshot.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver_maildir.h"
#include "log.h"
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

/* Whether file (NULL: none) exists but this process may not read it:
 * root's, and posternd runs as `user` now. */
static int
snapshot_unreadable(const char *file)
{
    return file != NULL && access(file, R_OK) != 0 && errno == EACCES;
}

static int
snapshot_same(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* A reload keeps what prev loaded from file, which it cannot read. */
static void
snapshot_log_kept(const char *what, const char *file)
{
    char uid[24];

    snprintf(uid, sizeof(uid), "%lu", (unsigned long)geteuid());
    log_event(LOG_LEVEL_WARN, "reload_kept", "what", what, "file", file,
              "uid", uid, "reason", "this process may not read it; the "
              "version loaded before stays in service (restart posternd "
              "to load a new one)", NULL);
}

/* The passwd-file store: prev's, when the file is the same one and this
 * process may no longer read it; else opened now. */
static int
snapshot_userdb(struct snapshot *sc, const struct snapshot *prev, char *err,
                size_t n)
{
    const struct config *cfg = sc->cfg;

    if (prev != NULL && cfg->userdb.kind == CONFIG_USERDB_PASSWD_FILE &&
        prev->cfg->userdb.kind == CONFIG_USERDB_PASSWD_FILE &&
        snapshot_same(cfg->userdb.arg, prev->cfg->userdb.arg) &&
        snapshot_unreadable(cfg->userdb.arg)) {
        sc->udb = userdb_ref(prev->udb);
        snapshot_log_kept("user file", cfg->userdb.arg);
        return 0;
    }
    return userdb_open(cfg, &sc->udb, err, n);
}

/* The TLS context: prev's, when the certificate and key are the same
 * files, tls_min_version the same, and this process may no longer read
 * one of them; else made now. */
static int
snapshot_tls(struct snapshot *sc, const struct snapshot *prev, char *err,
             size_t n)
{
    const struct config *cfg = sc->cfg;
    struct tls_config tc = {
        .role = TLS_ROLE_SERVER,
        .cert_file = cfg->tls_cert,
        .key_file = cfg->tls_key,
        .min_version = cfg->tls_min_version,
    };

    if (prev != NULL && prev->tls != NULL &&
        snapshot_same(cfg->tls_cert, prev->cfg->tls_cert) &&
        snapshot_same(cfg->tls_key, prev->cfg->tls_key) &&
        cfg->tls_min_version == prev->cfg->tls_min_version &&
        (snapshot_unreadable(cfg->tls_cert) ||
         snapshot_unreadable(cfg->tls_key))) {
        if (tls_ctx_share(prev->tls, &sc->tls) < 0) {
            snprintf(err, n, "out of memory");
            return -1;
        }
        snapshot_log_kept("tls_cert and tls_key",
                          snapshot_unreadable(cfg->tls_key)
                              ? cfg->tls_key
                              : cfg->tls_cert);
        return 0;
    }
    return tls_ctx_new(&tc, &sc->tls, err, n) < 0 ? -1 : 0;
}

struct snapshot *
snapshot_load(const char *path, const struct snapshot *prev, char *err,
              size_t n)
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
    if (cfg->user != NULL) {
        char why[CONFIG_ERR_MAX];

        if (priv_lookup(cfg->user, &sc->user, why, sizeof(why)) < 0) {
            snprintf(err, n, "%s: %s", cfg->file, why);
            goto fail;
        }
        /* Root about to become the user: the spool's tmp/ must be the
         * user's, not root's as maildir_check_spool() would make it. */
        if (geteuid() == 0) {
            char tmp[PATH_MAX];

            snprintf(tmp, sizeof(tmp), "%s/tmp", cfg->spool);
            (void)priv_make_dir(tmp, 0700, &sc->user);
        }
    }
    if (maildir_check_spool(cfg->spool, cfg->mailbox, err, n) < 0)
        goto fail;
    if (snapshot_userdb(sc, prev, err, n) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        need_tls |= cfg->listeners[i].tls != CONFIG_TLS_NONE;
    if (need_tls && snapshot_tls(sc, prev, err, n) < 0)
        goto fail;
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
        };
        if (snapshot_check_session(cfg, cl, &lc->scfg, err, n) < 0)
            goto fail;
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
