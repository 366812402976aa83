/*
 * posternd - the configuration snapshot (snapshot.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/rand.h>

#include "deliver_maildir.h"
#include "fileio.h"
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
    for (size_t i = 0; sc->l != NULL && i < sc->cfg->n_listeners; i++)
        tls_client_ca_free(sc->l[i].client_ca);
    free(sc->l);
    free(sc->mail_root);
    if (sc->p != NULL) {
        for (size_t i = 0; i < sc->cfg->n_profiles; i++)
            tls_ctx_free(sc->p[i].tls);
        free(sc->p);
    }
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

void
snapshot_session_config(const struct snapshot *sc, size_t lidx,
                        const struct config_profile *p,
                        struct pst_smtp_server_config *out)
{
    const struct config_listener *cl = &sc->cfg->listeners[lidx];
    enum config_auth_before_tls abt;

    *out = sc->l[lidx].scfg;
    if (p == NULL)
        return;
    abt = config_profile_abt(p, cl);
    out->auth_before_tls = abt == CONFIG_ABT_ALL ? PST_SMTP_BEFORE_TLS_ALL
                           : abt == CONFIG_ABT_CHALLENGE
                               ? PST_SMTP_BEFORE_TLS_CHALLENGE
                               : PST_SMTP_BEFORE_TLS_NONE;
    out->helo_auth = p->helo_auth;
    out->bare_lf = p->bare_lf == CONFIG_BARE_LF_NORMALIZE
                       ? PST_SMTP_BARE_LF_NORMALIZE
                       : PST_SMTP_BARE_LF_REJECT;
    out->long_lines = p->long_lines == CONFIG_LONG_LINES_FOLD
                          ? PST_SMTP_LONG_LINES_FOLD
                          : PST_SMTP_LONG_LINES_REJECT;
    if (p->legacy_auth_line != CONFIG_UNSET)
        out->legacy_auth_line = p->legacy_auth_line;
}

struct tls_ctx *
snapshot_client_tls(const struct snapshot *sc, const struct config_profile *p)
{
    if (p != NULL) {
        size_t i = (size_t)(p - sc->cfg->profiles);

        if (i < sc->cfg->n_profiles && sc->p[i].tls != NULL)
            return sc->p[i].tls;
    }
    return sc->tls;
}

/* Whether the SMTP session takes the settings of listener cl (for the
 * clients of profile pr, when not NULL). */
static int
snapshot_check_session(const struct config *cfg,
                       const struct config_listener *cl,
                       const struct config_profile *pr,
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
    if (rc < 0 && pr != NULL) {
        snprintf(err, n, "%s:%u: [profile %s] on [listener %s]: settings "
                 "refused by the SMTP session (%s)", cfg->file, pr->line,
                 pr->name, cl->name, pst_errname(rc));
        return -1;
    }
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

/*
 * Profile i's own TLS context (its tls_min_version): made now, so that
 * the handshake of its clients uses it from the ClientHello on
 * (tls_ctx_new() puts a context below TLSv1.2 at security level 0, that
 * context alone).  As for the global context (snapshot_tls()), a reload
 * that may no longer read the certificate or key keeps prev's context of
 * the profile of the same name and version, if the files are the same.
 */
static int
snapshot_profile_tls(struct snapshot *sc, const struct snapshot *prev,
                     size_t i, char *err, size_t n)
{
    const struct config *cfg = sc->cfg;
    const struct config_profile *pr = &cfg->profiles[i];
    struct tls_config tc = {
        .role = TLS_ROLE_SERVER,
        .cert_file = cfg->tls_cert,
        .key_file = cfg->tls_key,
        .min_version = pr->tls_min_version,
    };
    char why[CONFIG_ERR_MAX], what[CONFIG_ERR_MAX];

    if (prev != NULL && prev->p != NULL &&
        snapshot_same(cfg->tls_cert, prev->cfg->tls_cert) &&
        snapshot_same(cfg->tls_key, prev->cfg->tls_key) &&
        (snapshot_unreadable(cfg->tls_cert) ||
         snapshot_unreadable(cfg->tls_key))) {
        for (size_t j = 0; j < prev->cfg->n_profiles; j++) {
            const struct config_profile *pp = &prev->cfg->profiles[j];

            if (prev->p[j].tls == NULL || strcmp(pp->name, pr->name) != 0 ||
                pp->tls_min_version != pr->tls_min_version)
                continue;
            if (tls_ctx_share(prev->p[j].tls, &sc->p[i].tls) < 0) {
                snprintf(err, n, "out of memory");
                return -1;
            }
            snprintf(what, sizeof(what), "[profile %s] tls_cert and tls_key",
                     pr->name);
            snapshot_log_kept(what, snapshot_unreadable(cfg->tls_key)
                                        ? cfg->tls_key
                                        : cfg->tls_cert);
            return 0;
        }
    }
    if (tls_ctx_new(&tc, &sc->p[i].tls, why, sizeof(why)) < 0) {
        snprintf(err, n, "%s:%u: [profile %s]: %s", cfg->file, pr->line,
                 pr->name, why);
        return -1;
    }
    return 0;
}

/*
 * Each profile: its own TLS context when it sets tls_min_version, and its
 * session settings tried on every listener it applies on.
 */
static int
snapshot_load_profiles(struct snapshot *sc, const struct snapshot *prev,
                       int need_tls, char *err, size_t n)
{
    const struct config *cfg = sc->cfg;

    sc->p = calloc(cfg->n_profiles + 1, sizeof(*sc->p));
    if (sc->p == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *pr = &cfg->profiles[i];

        if (need_tls && pr->tls_min_version != TLS_VERSION_DEFAULT &&
            snapshot_profile_tls(sc, prev, i, err, n) < 0)
            return -1;
        for (size_t j = 0; j < cfg->n_listeners; j++) {
            struct pst_smtp_server_config scfg;

            if (!config_profile_on_listener(pr, &cfg->listeners[j]))
                continue;
            snapshot_session_config(sc, j, pr, &scfg);
            if (snapshot_check_session(cfg, &cfg->listeners[j], pr, &scfg,
                                       err, n) < 0)
                return -1;
        }
    }
    return 0;
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
            .security_layer = cl->security_layer,
        };
        if (snapshot_check_session(cfg, cl, NULL, &lc->scfg, err, n) < 0)
            goto fail;
        /* Client certificates for EXTERNAL: what this listener's
         * connections ask of them (with whatever context, a profile's
         * too; read again at each reload, without the TLS key). */
        if (cl->tls_client_ca != NULL) {
            char why[CONFIG_ERR_MAX];

            if (tls_client_ca_new(cl->tls_client_ca, cl->tls_client_crl,
                                  cl->tls_client_cert_required ? 1u : 0u,
                                  &lc->client_ca, why, sizeof(why)) < 0) {
                snprintf(err, n, "%s:%u: [listener %s]: %s", cfg->file,
                         cl->line, cl->name, why);
                goto fail;
            }
        }
    }
    if (snapshot_load_profiles(sc, prev, need_tls, err, n) < 0)
        goto fail;
    return sc;
fail:
    snapshot_unref(sc);
    return NULL;
}

/* Make the secret file at path (O_EXCL: another posternd may be making
 * it too; then it is read as it is), owner's when not NULL.  Returns 0,
 * or -1 with err. */
static int
snapshot_secret_make(const char *path, const struct priv_user *owner,
                     char *err, size_t n)
{
    uint8_t raw[SNAPSHOT_SECRET_LEN];
    char text[2 * SNAPSHOT_SECRET_LEN + 2], dir[4096];
    const char *slash;
    int fd, dfd, e, ok;
    ssize_t w;

    if (pst_random_default(NULL, raw, sizeof(raw)) < 0) {
        snprintf(err, n, "%s: no random bytes for a new secret", path);
        return -1;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(text + 2 * i, 3, "%02x", raw[i]);
    OPENSSL_cleanse(raw, sizeof(raw));
    text[2 * SNAPSHOT_SECRET_LEN] = '\n';
    text[2 * SNAPSHOT_SECRET_LEN + 1] = '\0';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0) {
        e = errno;
        OPENSSL_cleanse(text, sizeof(text));
        if (e == EEXIST)
            return 0;
        snprintf(err, n, "%s: cannot create: %s", path, strerror(e));
        return -1;
    }
    errno = EIO; /* a short write sets none */
    w = write(fd, text, 2 * SNAPSHOT_SECRET_LEN + 1);
    /* Root about to become `user`: the file is the user's, as the spool
     * it is in by default (a restart as the user, posternd -t as the
     * user, read it then); still 0600. */
    ok = w == 2 * SNAPSHOT_SECRET_LEN + 1 &&
         (owner == NULL || fchown(fd, owner->uid, owner->gid) == 0) &&
         fsync(fd) == 0;
    e = errno;
    OPENSSL_cleanse(text, sizeof(text));
    close(fd);
    if (!ok) {
        unlink(path);
        snprintf(err, n, "%s: cannot write: %s", path, strerror(e));
        return -1;
    }
    /* The name too must survive a crash: the salts shown so far would
     * change with a new secret. */
    slash = strrchr(path, '/');
    snprintf(dir, sizeof(dir), "%.*s",
             slash == NULL ? 1 : slash == path ? 1 : (int)(slash - path),
             slash == NULL ? "." : path);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

int
snapshot_secret_load(const struct snapshot *sc, int create, uint8_t **out,
                     size_t *len, char *err, size_t n)
{
    const char *path = sc->cfg->scram_secret_file;
    const struct priv_user *owner =
        sc->user.name[0] != '\0' && geteuid() == 0 ? &sc->user : NULL;
    uint8_t buf[SNAPSHOT_SECRET_MAX + 1];
    struct stat st;
    size_t got = 0;
    int fd;

    *out = NULL;
    *len = 0;
    if (create && access(path, F_OK) != 0 && errno == ENOENT &&
        snapshot_secret_make(path, owner, err, n) < 0)
        return -1;
    /* O_NONBLOCK: a FIFO in its place must not hang the start. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT && !create) {
            snprintf(err, n, "%s: not there yet; posternd makes it at "
                     "start-up", path);
            return 1;
        }
        snprintf(err, n, "scram_secret_file %s: cannot open: %s", path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, n, "scram_secret_file %s: not a regular file", path);
        return -1;
    }
    if (st.st_mode & 077) {
        close(fd);
        snprintf(err, n, "scram_secret_file %s: mode %03o: others than "
                 "its owner may read it (chmod 600)", path,
                 (unsigned)(st.st_mode & 0777));
        return -1;
    }
    /* A read error ends the secret there (too short: refused below). */
    (void)fileio_read_full(fd, buf, sizeof(buf), &got);
    close(fd);
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r' ||
                       buf[got - 1] == ' ' || buf[got - 1] == '\t'))
        got--;
    if (got < SNAPSHOT_SECRET_MIN || got > SNAPSHOT_SECRET_MAX) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, n, "scram_secret_file %s: %zu bytes; %d to %d "
                 "wanted", path, got, SNAPSHOT_SECRET_MIN,
                 SNAPSHOT_SECRET_MAX);
        return -1;
    }
    *out = OPENSSL_malloc(got);
    if (*out == NULL) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, n, "out of memory");
        return -1;
    }
    memcpy(*out, buf, got);
    *len = got;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

void
snapshot_set_secret(struct snapshot *sc, const uint8_t *secret, size_t len)
{
    for (size_t i = 0; i < sc->cfg->n_listeners; i++) {
        sc->l[i].scfg.scram_secret = secret;
        sc->l[i].scfg.scram_secret_len = len;
    }
}

struct snapshot *
snapshot_ref(struct snapshot *sc)
{
    atomic_fetch_add(&sc->refs, 1);
    return sc;
}
