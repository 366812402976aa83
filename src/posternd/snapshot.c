/*
 * posternd - the configuration snapshot (snapshot.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/rand.h>

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
        };
        if (snapshot_check_session(cfg, cl, &lc->scfg, err, n) < 0)
            goto fail;
    }
    return sc;
fail:
    snapshot_unref(sc);
    return NULL;
}

/* Make the secret file at path (O_EXCL: another posternd may be making
 * it too; then it is read as it is).  Returns 0, or -1 with err. */
static int
snapshot_secret_make(const char *path, char *err, size_t n)
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
    ok = w == 2 * SNAPSHOT_SECRET_LEN + 1 && fsync(fd) == 0;
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
snapshot_secret_load(const struct config *cfg, int create, uint8_t **out,
                     size_t *len, char *err, size_t n)
{
    const char *path = cfg->scram_secret_file;
    uint8_t buf[SNAPSHOT_SECRET_MAX + 1];
    struct stat st;
    size_t got = 0;
    int fd;

    *out = NULL;
    *len = 0;
    if (create && access(path, F_OK) != 0 && errno == ENOENT &&
        snapshot_secret_make(path, err, n) < 0)
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
    while (got < sizeof(buf)) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
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
