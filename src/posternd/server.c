/*
 * posternd's control loop (server.h): the main thread binds the
 * listening sockets, starts the workers (listener.c), and runs a loop of
 * its own for the signals (SIGTERM/SIGINT stop, SIGHUP reloads the
 * configuration snapshot), the throttle's settings and the spool
 * cleaner.  listener.h says what the threads share.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <uv.h>

#include <openssl/crypto.h>

#include "deliver_maildir.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "priv.h"
#include "profile.h"
#include "relay.h"
#include "server.h"

#define SERVER_MAX_WORKERS 1024
/* How often the spool is searched for files a dead process left (named
 * spool files only: maildir_spool_clean()). */
#define SPOOL_CLEAN_INTERVAL_MS (5 * 60 * 1000)

#define SERVER_STOP_POLL_MS 50

/* Stopping: the relay's connections finish the message they send (and
 * its record) within the grace period, then are cut. */
static void
on_stop_timer(uv_timer_t *t)
{
    struct server *srv = t->data;
    uint64_t waited = uv_now(srv->loop) - srv->stop_started;

    if (srv->relay != NULL && !relay_mgr_idle(srv->relay)) {
        if (waited < (uint64_t)srv->sc->cfg->grace_period * 1000)
            return;
        relay_mgr_abort(srv->relay);
        if (!relay_mgr_idle(srv->relay) &&
            waited < (uint64_t)srv->sc->cfg->grace_period * 1000 + 5000)
            return; /* the aborted ones' last records */
    }
    uv_timer_stop(t);
    /* server_run() joins the workers. */
    uv_stop(srv->loop);
}

static void
server_stop(struct server *srv, const char *why)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    log_event(LOG_LEVEL_INFO, "stopping", "signal", why, NULL);
    workers_post(srv, NULL, 1);
    /* The workers close their copies: the socket stops listening when
     * the last copy is closed, ours included. */
    for (size_t i = 0; i < srv->nls; i++)
        if (srv->lfd[i] >= 0) {
            close(srv->lfd[i]);
            srv->lfd[i] = -1;
        }
    control_stop(srv->control);
    srv->control = NULL;
    if (srv->relay != NULL)
        relay_mgr_stop(srv->relay);
    srv->stop_started = uv_now(srv->loop);
    uv_timer_start(&srv->stop_timer, on_stop_timer, 0, SERVER_STOP_POLL_MS);
}

/* Create, retune or switch off the throttle to match the configuration
 * (the counters survive a reload).  Returns 0, or -1 with a message
 * logged. */
static int
server_throttle_apply(struct server *srv)
{
    const struct config *cfg = srv->sc->cfg;
    struct throttle_config tc;
    int rc;

    if (!cfg->auth_throttle) {
        atomic_store(&srv->throttle, NULL);
        return 0;
    }
    throttle_config_init(&tc);
    tc.base_delay_ms = cfg->auth_throttle_delay * 1000u;
    tc.max_delay_ms = cfg->auth_throttle_max_delay * 1000u;
    if (tc.max_delay_ms < tc.base_delay_ms)
        tc.max_delay_ms = tc.base_delay_ms;
    tc.lockout_failures = cfg->auth_throttle_lockout_failures;
    tc.lockout_ms = cfg->auth_throttle_lockout_time * 1000u;
    tc.user_failures = cfg->auth_throttle_user_failures;
    tc.user_max_delay_ms = tc.max_delay_ms;
    tc.forget_ms = cfg->auth_throttle_forget * 1000u;
    tc.exempt = &cfg->auth_throttle_exempt;
    rc = srv->throttle_obj != NULL
             ? throttle_reconfigure(srv->throttle_obj, &tc)
             : throttle_new(&tc, &srv->throttle_obj);
    if (rc < 0) {
        log_event(LOG_LEVEL_WARN, "throttle_failed", "error",
                  pst_strerror(rc), NULL);
        return -1;
    }
    atomic_store(&srv->throttle, srv->throttle_obj);
    return 0;
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    struct snapshot *sc;
    char err[CONFIG_ERR_MAX], users[24];
    size_t n;

    if (signum != SIGHUP) {
        server_stop(srv, signum == SIGTERM ? "TERM" : "INT");
        return;
    }
    if (srv->stopping)
        return;
    sc = snapshot_load(srv->path, srv->sc, err, sizeof(err));
    if (sc == NULL) {
        log_event(LOG_LEVEL_WARN, "reload_failed", "error", err,
                  "action", "keeping the previous configuration", NULL);
        return;
    }
    if (sc->cfg->n_listeners != srv->nls) {
        log_event(LOG_LEVEL_WARN, "reload_failed", "error",
                  "listeners changed; restart posternd to change them",
                  NULL);
        snapshot_unref(sc);
        return;
    }
    /* Privileges dropped stay dropped; root's stay root's. */
    if (strcmp(sc->user.name, srv->sc->user.name) != 0) {
        log_event(LOG_LEVEL_WARN, "reload_failed", "error",
                  "user changed; restart posternd to change it", NULL);
        snapshot_unref(sc);
        return;
    }
    /* The secret stays as read at start (posternd.conf(5)). */
    if (strcmp(sc->cfg->scram_secret_file, srv->scram_secret_path) != 0)
        log_event(LOG_LEVEL_WARN, "reload_partial", "key",
                  "scram_secret_file", "action",
                  "restart posternd to use the new file", NULL);
    snapshot_set_secret(sc, srv->scram_secret, srv->scram_secret_len);
    /* The relay manager moves to the new configuration before the old
     * one can go. */
    if (srv->relay != NULL)
        relay_mgr_reload(srv->relay, sc->cfg);
    snapshot_unref(srv->sc);
    srv->sc = sc;
    log_set_level(sc->cfg->log_level);
    server_throttle_apply(srv);
    workers_post(srv, sc, 0);
    /* A passwd file says how many users it has; PostgreSQL cannot
     * without a query. */
    if (userdb_count(sc->udb, &n) == 0) {
        snprintf(users, sizeof(users), "%zu", n);
        log_event(LOG_LEVEL_INFO, "reloaded", "users", users, NULL);
    } else {
        log_event(LOG_LEVEL_INFO, "reloaded", "userdb",
                  userdb_kind(sc->udb), NULL);
    }
}

/* --- The spool cleaner ------------------------------------------------ */

static void
spool_clean_run(uv_work_t *w)
{
    struct server *srv = w->data;

    srv->spool_removed = maildir_spool_clean(srv->spool_path,
                                             MAILDIR_SPOOL_GRACE);
}

static void
spool_log(int removed)
{
    char files[24];

    if (removed > 0) {
        snprintf(files, sizeof(files), "%d", removed);
        log_event(LOG_LEVEL_INFO, "spool_cleaned", "files", files, NULL);
    }
}

static void
spool_clean_done(uv_work_t *w, int status)
{
    struct server *srv = w->data;

    srv->spool_busy = 0;
    free(srv->spool_path);
    srv->spool_path = NULL;
    if (status == 0)
        spool_log(srv->spool_removed);
}

/* Now and then, on the thread pool: named spool files whose process died
 * (a crash of another posternd sharing the spool, or ours before a quick
 * restart left files too young to go at start-up). */
static void
on_spool_timer(uv_timer_t *t)
{
    struct server *srv = t->data;

    if (srv->spool_busy || srv->stopping)
        return;
    srv->spool_path = strdup(srv->sc->cfg->spool);
    if (srv->spool_path == NULL)
        return;
    srv->spool_work.data = srv;
    if (uv_queue_work(srv->loop, &srv->spool_work, spool_clean_run,
                      spool_clean_done) == 0)
        srv->spool_busy = 1;
    else {
        free(srv->spool_path);
        srv->spool_path = NULL;
    }
}

/* Bind and listen on every listener's address, once; the workers use
 * copies of these sockets.  Returns 0 or -1 (logged). */
static int
server_bind(struct server *srv)
{
    const struct config *cfg = srv->sc->cfg;

    srv->lfd = calloc(cfg->n_listeners, sizeof(*srv->lfd));
    if (srv->lfd == NULL)
        return -1;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        const struct sockaddr *sa = (const struct sockaddr *)&cl->address.sa;
        int fd, on = 1, rc = 0;

        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
                    SOCK_CLOEXEC, 0);
        if (fd < 0)
            rc = -errno;
        /* As libuv's uv_tcp_bind(): a restart need not wait for the
         * TIME_WAIT connections of the previous process. */
        else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on,
                            sizeof(on)) < 0 ||
                 bind(fd, sa, sa->sa_family == AF_INET6
                                  ? sizeof(struct sockaddr_in6)
                                  : sizeof(struct sockaddr_in)) < 0 ||
                 listen(fd, 511) < 0)
            rc = -errno;
        if (rc < 0) {
            if (fd >= 0)
                close(fd);
            log_event(LOG_LEVEL_WARN, "listen_failed", "listener", cl->name,
                      "address", cl->address.text, "error", uv_strerror(rc),
                      NULL);
            return -1;
        }
        srv->lfd[srv->nls++] = fd;
        log_event(LOG_LEVEL_INFO, "listening", "listener", cl->name,
                  "address", cl->address.text, "tls",
                  cl->tls == CONFIG_TLS_IMPLICIT   ? "implicit"
                  : cl->tls == CONFIG_TLS_STARTTLS ? "starttls"
                                                   : "none",
                  NULL);
    }
    return 0;
}

/* --- Privileges (DESIGN.md "Privileges"; priv.h) ------------------------- */

static void
server_report_dir(void *ctx, enum priv_severity severity,
                  const char *message)
{
    (void)ctx;
    log_event(LOG_LEVEL_WARN, severity == PRIV_ERROR ? "not_writable"
                                                     : "mailbox_not_writable",
              "error", message, NULL);
}

/*
 * After binding: become `user` (started as root), or say that root's
 * privileges stay (no `user`).  Then what the user must write is checked:
 * a spool or queue it cannot write stops posternd here rather than fail
 * every message; a mail root it cannot write is a warning.
 * Returns: 0, or the exit code (logged).
 */
static int
server_drop_privileges(struct server *srv)
{
    const struct priv_user *u = &srv->sc->user;
    char err[CONFIG_ERR_MAX], who[PRIV_NAME_MAX + 32], id[48];

    if (u->name[0] == '\0') {
        if (geteuid() == 0)
            log_event(LOG_LEVEL_WARN, "running_as_root", "reason",
                      "no user = NAME in the configuration: the network "
                      "parser, the users' verifiers and the TLS key share "
                      "root's privileges (posternd.conf(5), user)", NULL);
        return 0;
    }
    snprintf(id, sizeof(id), "%lu:%lu", (unsigned long)u->uid,
             (unsigned long)u->gid);
    if (geteuid() == 0) {
        if (priv_drop(u, err, sizeof(err)) < 0) {
            log_event(LOG_LEVEL_WARN, "privileges_failed", "user", u->name,
                      "error", err, NULL);
            return EX_OSERR;
        }
        log_event(LOG_LEVEL_INFO, "privileges_dropped", "user", u->name,
                  "uid_gid", id, NULL);
    } else if (geteuid() != u->uid || getuid() != u->uid) {
        snprintf(err, sizeof(err), "posternd runs as uid %lu: start it as "
                 "root (or as %s)", (unsigned long)geteuid(), u->name);
        log_event(LOG_LEVEL_WARN, "privileges_failed", "user", u->name,
                  "error", err, NULL);
        return EX_CONFIG;
    }
    snprintf(who, sizeof(who), "%s (uid %lu)", u->name,
             (unsigned long)u->uid);
    if (priv_check_dirs(srv->sc->cfg, 0, who, server_report_dir, NULL,
                        NULL) > 0)
        return EX_CONFIG;
    return 0;
}

/* workers = auto: one loop per core this process may run on. */
static unsigned
server_workers(const struct config *cfg)
{
    unsigned n = cfg->workers;

    if (n == 0)
        n = uv_available_parallelism();
    if (n < 1)
        n = 1;
    if (n > SERVER_MAX_WORKERS)
        n = SERVER_MAX_WORKERS;
    return n;
}

/* Start the workers' threads.  Returns 0 or -1 (logged; those started
 * are told to stop and joined by the caller). */
static int
server_start_workers(struct server *srv)
{
    unsigned n = server_workers(srv->sc->cfg);
    char count[16];

    srv->w = calloc(n, sizeof(*srv->w));
    if (srv->w == NULL)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = worker_new(srv, i);

        if (w == NULL)
            return -1;
        if (uv_thread_create(&w->thread, worker_main, w) < 0) {
            log_event(LOG_LEVEL_WARN, "worker_failed", "error",
                      "cannot start a thread", NULL);
            loop_close_all(&w->loop);
            worker_free(w);
            return -1;
        }
        srv->w[srv->nw++] = w;
    }
    snprintf(count, sizeof(count), "%u", n);
    log_event(LOG_LEVEL_INFO, "started", "hostname", srv->sc->cfg->hostname,
              "workers", count, NULL);
    return 0;
}

int
server_run(const char *path)
{
    struct server srv = {0};
    char err[CONFIG_ERR_MAX];

    srv.path = strdup(path);
    srv.sc = snapshot_load(path, NULL, err, sizeof(err));
    if (srv.sc == NULL) {
        fprintf(stderr, "posternd: %s\n", err);
        free(srv.path);
        return EX_CONFIG;
    }
    log_set_level(srv.sc->cfg->log_level);
    if (snapshot_secret_load(srv.sc, 1, &srv.scram_secret,
                             &srv.scram_secret_len, err, sizeof(err)) != 0 ||
        (srv.scram_secret_path =
             strdup(srv.sc->cfg->scram_secret_file)) == NULL) {
        fprintf(stderr, "posternd: %s\n", srv.scram_secret == NULL
                                                 ? err
                                                 : "out of memory");
        OPENSSL_clear_free(srv.scram_secret, srv.scram_secret_len);
        snapshot_unref(srv.sc);
        free(srv.path);
        return EX_CONFIG;
    }
    snapshot_set_secret(srv.sc, srv.scram_secret, srv.scram_secret_len);
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit must fail the write (451), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    uv_mutex_init(&srv.mu);
    atomic_init(&srv.throttle, NULL);
    atomic_init(&srv.nconn, 0);
    atomic_init(&srv.seq, 0);
    srv.loop = uv_default_loop();
    uv_signal_init(srv.loop, &srv.sig_term);
    uv_signal_init(srv.loop, &srv.sig_int);
    uv_signal_init(srv.loop, &srv.sig_hup);
    srv.sig_term.data = srv.sig_int.data = srv.sig_hup.data = &srv;
    uv_signal_start(&srv.sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv.sig_int, on_signal, SIGINT);
    uv_signal_start(&srv.sig_hup, on_signal, SIGHUP);
    uv_timer_init(srv.loop, &srv.spool_timer);
    srv.spool_timer.data = &srv;
    uv_timer_start(&srv.spool_timer, on_spool_timer,
                   SPOOL_CLEAN_INTERVAL_MS, SPOOL_CLEAN_INTERVAL_MS);
    uv_timer_init(srv.loop, &srv.stop_timer);
    srv.stop_timer.data = &srv;
    /* Root's work first: the listeners are bound (and the TLS key and
     * the user file read, by snapshot_load()); then `user` for good,
     * before any thread starts.  The relay's files (queue, token files,
     * password and client-secret files) and the control socket are the
     * user's: they come after. */
    if (server_throttle_apply(&srv) < 0)
        srv.exit_code = EX_SOFTWARE;
    else if (server_bind(&srv) < 0)
        srv.exit_code = EX_UNAVAILABLE;
    else
        srv.exit_code = server_drop_privileges(&srv);
    if (srv.exit_code == 0) {
        /* Named spool files that no live process holds locked were left
         * by a crash: nobody was promised them (deliver_maildir.h). */
        spool_log(maildir_spool_clean(srv.sc->cfg->spool,
                                      MAILDIR_SPOOL_GRACE));
        if (relay_mgr_new(srv.loop, srv.sc->cfg, &srv.relay, err,
                          sizeof(err)) < 0) {
            fprintf(stderr, "posternd: %s\n", err);
            srv.exit_code = EX_CANTCREAT;
        } else if (control_start(srv.loop, srv.sc->cfg->spool, srv.relay,
                                 &srv.control, err, sizeof(err)) < 0) {
            fprintf(stderr, "posternd: %s\n", err);
            srv.exit_code = EX_UNAVAILABLE;
        } else if (server_start_workers(&srv) < 0) {
            srv.exit_code = EX_OSERR;
        } else {
            uv_run(srv.loop, UV_RUN_DEFAULT);
        }
    }
    control_stop(srv.control);
    /* Stopping (or a failed start): the workers finish their sessions
     * within the grace period. */
    if (!srv.stopping)
        workers_post(&srv, NULL, 1);
    for (unsigned i = 0; i < srv.nw; i++) {
        uv_thread_join(&srv.w[i]->thread);
        worker_free(srv.w[i]);
    }
    free(srv.w);
    for (size_t i = 0; i < srv.nls; i++)
        if (srv.lfd[i] >= 0)
            close(srv.lfd[i]);
    free(srv.lfd);
    relay_mgr_free(srv.relay);
    loop_close_all(srv.loop);
    uv_loop_close(srv.loop);
    throttle_free(srv.throttle_obj);
    listener_peers_free(&srv);
    uv_mutex_destroy(&srv.mu);
    snapshot_unref(srv.sc);
    free(srv.path);
    /* Every snapshot that borrowed it is gone. */
    OPENSSL_clear_free(srv.scram_secret, srv.scram_secret_len);
    free(srv.scram_secret_path);
    /* Join the thread-pool threads now, so that what they hold (OpenSSL's
     * per-thread state) is freed by their exit handlers before atexit()
     * cleans up.  No libuv call may follow. */
    uv_library_shutdown();
    /* What the compatibility profiles were used for (profile.h). */
    profile_stats_log();
    if (srv.exit_code == 0) {
        uint64_t syncs, saved;
        char a[24], b[24];

        /* What group commit did (deliver_maildir.c): fsyncs of new/
         * run, and links that another commit's fsync covered. */
        maildir_stats(&syncs, &saved);
        snprintf(a, sizeof(a), "%llu", (unsigned long long)syncs);
        snprintf(b, sizeof(b), "%llu", (unsigned long long)saved);
        log_event(LOG_LEVEL_INFO, "stopped", "dir_syncs", a,
                  "dir_syncs_shared", b, NULL);
    }
    return srv.exit_code;
}

static void
server_check_report(void *ctx, enum priv_severity severity,
                    const char *message)
{
    fprintf(stderr, "posternd: %s: %s%s\n", (const char *)ctx,
            severity == PRIV_WARNING ? "warning: " : "", message);
}

/*
 * posternd -t: who posternd will run as, and whether that user may write
 * the spool, the queue and the mailboxes (checked as the user: in a child
 * that drops to it when -t runs as root).  Problems go to stderr.
 * Returns: 0, or -1 when posternd could not work (an error said so).
 */
static int
server_check_privileges(const struct snapshot *sc, const char *path)
{
    const struct priv_user *u = &sc->user;
    char err[CONFIG_ERR_MAX], who[PRIV_NAME_MAX + 32];
    unsigned warnings = 0;
    int errors;

    if (u->name[0] == '\0') {
        if (geteuid() == 0)
            fprintf(stderr, "posternd: %s: warning: no user = NAME: "
                    "started as root, posternd keeps root's privileges "
                    "(posternd.conf(5), user)\n", path);
        return 0;
    }
    if (geteuid() == 0) {
        errors = priv_check_as(u, sc->cfg, path, &warnings, err,
                               sizeof(err));
        if (errors < 0) {
            fprintf(stderr, "posternd: %s: %s\n", path, err);
            return -1;
        }
        return errors > 0 ? -1 : 0;
    }
    if (geteuid() == u->uid && getuid() == u->uid) {
        snprintf(who, sizeof(who), "%s (uid %lu)", u->name,
                 (unsigned long)u->uid);
        return priv_check_dirs(sc->cfg, 1, who, server_check_report,
                               (void *)path, &warnings) > 0
                   ? -1
                   : 0;
    }
    fprintf(stderr, "posternd: %s: warning: user = %s: what %s may write "
            "is not checked (posternd -t runs as uid %lu: run it as root "
            "or as %s)\n", path, u->name, u->name,
            (unsigned long)geteuid(), u->name);
    return 0;
}

int
server_check(const char *path)
{
    char err[CONFIG_ERR_MAX], what[CONFIG_ERR_MAX], as[PRIV_NAME_MAX + 16];
    struct snapshot *sc = snapshot_load(path, NULL, err, sizeof(err));
    int rc;

    if (sc == NULL) {
        fprintf(stderr, "posternd: %s\n", err);
        return EX_CONFIG;
    }
    /* The user store: "N users", or whether PostgreSQL answers and takes
     * the query.  A database that cannot be reached is no error: posternd
     * starts without it and answers AUTH with 454 until it is back. */
    {
        uint8_t *secret;
        size_t len;

        rc = snapshot_secret_load(sc, 0, &secret, &len, what,
                                  sizeof(what));
        OPENSSL_clear_free(secret, len);
        if (rc < 0) {
            fprintf(stderr, "posternd: %s: %s\n", path, what);
            snapshot_unref(sc);
            return EX_CONFIG;
        }
        /* rc > 0: not made yet, as on a first start: nothing to say. */
    }
    rc = userdb_check(sc->udb, what, sizeof(what));
    if (rc == PST_ESYNTAX) {
        fprintf(stderr, "posternd: %s: %s\n", path, what);
        snapshot_unref(sc);
        return EX_CONFIG;
    }
    if (rc < 0)
        fprintf(stderr, "posternd: %s: warning: %s (posternd starts all the "
                "same; AUTH gets 454 4.7.0 until the database answers)\n",
                path, what);
    if (server_check_privileges(sc, path) < 0) {
        snapshot_unref(sc);
        return EX_CONFIG;
    }
    as[0] = '\0';
    if (sc->user.name[0] != '\0')
        snprintf(as, sizeof(as), ", runs as %s", sc->user.name);
    printf("posternd: %s: configuration OK (%zu listener%s, %s%s)\n", path,
           sc->cfg->n_listeners, sc->cfg->n_listeners == 1 ? "" : "s",
           rc < 0 ? "userdb pgsql: database unreachable" : what, as);
    /* Which profile relaxes what for which networks, and the warnings
     * of those that do it for wide ones. */
    fflush(stdout);
    profile_report(sc->cfg, stdout, stderr);
    snapshot_unref(sc);
    return EX_OK;
}
