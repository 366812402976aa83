/*
 * posternd's event loops: libuv listeners and connections driving the
 * sans-IO SMTP session of libpostern.  Slow work (password hashes, the
 * fsyncs of delivery) runs on the libuv thread pool; the session is
 * parked meanwhile and resumed from the completion callback.
 *
 * Threads: the main thread runs a control loop (signals, reloads, the
 * spool cleaner) and starts `workers` worker threads, each with its own
 * loop, its own connections, and its own copy of every listening socket
 * (a dup of one socket bound by the main thread: the kernel hands each
 * new connection to whichever loop accepts first, so a busy loop leaves
 * the next connections to an idle one).  What the loops share: the
 * configuration snapshot (reference counted, atomically), a passwd-file
 * user store (read-only), the throttle (its own mutex), and the
 * per-address connection counts (srv->mu).  Each worker has its own
 * PostgreSQL store, since libpq connections live on one loop.  The main
 * thread talks to a worker only through its mailbox (under srv->mu) and
 * uv_async_send().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <uv.h>

#include <postern/smtp.h>

#include "config.h"
#include "date.h"
#include "deliver_maildir.h"
#include "log.h"
#include "server.h"
#include "throttle.h"
#include "tls.h"
#include "userdb.h"

#define CONN_BACKLOG_MAX (64 * 1024) /* plaintext waiting for the session */
#define CONN_READ_CHUNK  (64 * 1024)
#define SERVER_MAX_WORKERS 1024
/* How often the spool is searched for files a dead process left (named
 * spool files only: maildir_spool_clean()). */
#define SPOOL_CLEAN_INTERVAL_MS (5 * 60 * 1000)
/* Plaintext one read can yield beyond its own size: a TLS record whose
 * first part came in the read before (16 KiB of data plus overhead). */
#define CONN_TLS_SLACK   (17 * 1024)

/* Everything that a reload replaces, shared by the connections made
 * under it (reference counted). */
struct srv_conf {
    atomic_uint refs;        /* taken and dropped by every loop */
    struct config *cfg;
    struct tls_ctx *tls;
    struct userdb *udb;
    struct lconf {
        struct pst_smtp_server_config scfg;
        const struct pst_sasl_mech *mechs[CONFIG_MAX_MECHS + 1];
    } *l;
    char **uri_hosts;        /* NULL-terminated listening addresses */
};

struct server;
struct worker;

struct listener {
    uv_tcp_t tcp;
    struct worker *w;
    size_t idx;              /* index in cfg->listeners */
    char name[64];
};

enum work_kind {
    WORK_VERIFY = 1,         /* pst_cred_verify() */
    WORK_COMMIT,             /* maildir_commit() */
};

/* Why a connection is held by the throttle (auth_throttle). */
enum conn_hold {
    HOLD_NONE = 0,
    HOLD_LOOKUP,             /* AUTH_LOOKUP answered after the delay */
    HOLD_REPLY,              /* the 535 goes out after the delay */
};

struct conn {
    uv_tcp_t tcp;            /* first, so a handle is its conn */
    uv_timer_t timer;
    uv_timer_t hold;         /* throttle delays */
    uv_work_t work;
    struct worker *w;
    struct server *srv;
    struct srv_conf *sc;
    size_t lidx;
    struct pst_smtp_server *s;
    struct tls *tls;
    int tls_handshaking;
    int implicit;
    char sid[20];
    char peer[INET6_ADDRSTRLEN + 8];  /* for the log */
    char peer_rcvd[INET6_ADDRSTRLEN + 8]; /* for Received: IPv6:... */
    struct sockaddr_storage peer_sa;
    int peer_counted;        /* in srv->peers */
    struct pst_buf backlog;
    int reading;
    int closing;
    int close_after_flush;
    int close_logged;        /* the disconnect line is out */
    const char *close_why;   /* why the driver ended the session */
    unsigned writes_pending;
    unsigned handles_open;
    /* Time limits (conn_arm_timer()), uv_now() milliseconds: */
    uint64_t started;        /* accepted */
    uint64_t data_started;   /* the 354, while in DATA; else 0 */
    uint64_t line_deadline;  /* the command being read must be whole by
                                then; 0: not set */
    uint64_t progress;       /* replies sent: a command was acted on */
    uint64_t armed_progress; /* progress when line_deadline was set */
    uint64_t last_input_ns;  /* uv_hrtime() of the last bytes read */
    /* The AUTH exchange (userdb lookups are asynchronous): */
    struct userdb_req *auth_req; /* the lookup; owns auth_cred until the
                                    AUTH_RESULT event */
    const struct pst_cred *auth_cred;
    enum conn_hold holding;
    char *held_user;         /* HOLD_LOOKUP: the name to look up */
    uint64_t auth_tag;       /* throttle_tag() of the PLAIN/LOGIN guess */
    /* The MAIL FROM check against allow_from (asynchronous too): */
    struct userdb_req *mail_req;
    char *mail_from;         /* the address being checked */
    /* The message: */
    struct maildir_msg *msg;
    char **paths;
    size_t npaths;
    int data_failed;
    uint64_t msg_size;       /* octets received (DATA_END) */
    /* The thread-pool job: */
    enum work_kind work_kind;
    int work_pending;
    int work_result;
    uint8_t *work_pw;
    size_t work_pwlen;
    char *work_user;
    struct conn *prev, *next;
};

/* One event loop on its own thread, with its own connections. */
struct worker {
    uv_loop_t loop;
    uv_thread_t thread;
    struct server *srv;
    unsigned id;
    struct srv_conf *sc;     /* this loop's snapshot (a reference) */
    struct userdb *udb;      /* the store this loop looks users up in */
    struct listener *ls;
    size_t nls;
    uv_async_t wake;         /* the mailbox has something */
    uv_timer_t grace;
    struct conn *conns;
    size_t nconn;
    int stopping;
    /* The mailbox, under srv->mu: */
    struct srv_conf *next_sc;  /* a reload (a reference), or NULL */
    int stop_requested;
    /* Every read lands here first: a connection keeps only what its
     * session has not consumed yet (conn->backlog). */
    uint8_t rbuf[CONN_READ_CHUNK];
};

/* The per-address connection counts (max_connections_per_ip), shared by
 * all loops under srv->mu. */
struct peer_count {
    struct peer_count *next;
    uint8_t addr[16];
    uint8_t family_v6;
    unsigned n;
};

#define PEER_BUCKETS 4096

struct server {
    uv_loop_t *loop;         /* the control loop (main thread) */
    char *path;
    struct srv_conf *sc;
    uv_os_sock_t *lfd;       /* listening sockets, one per listener */
    size_t nls;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t spool_timer;
    uv_work_t spool_work;
    int spool_busy;          /* spool_work queued */
    char *spool_path;        /* what spool_work cleans */
    int spool_removed;
    uv_mutex_t mu;           /* peers, mailboxes */
    /* The throttle the loops use, NULL while auth_throttle = no; it is
     * made once (throttle_obj) and freed only at exit, so a loop that
     * read the pointer never sees it freed. */
    _Atomic(struct throttle *) throttle;
    struct throttle *throttle_obj;
    struct peer_count *peers[PEER_BUCKETS];
    atomic_size_t nconn;     /* connections of all loops */
    atomic_uint_fast64_t seq; /* session ids */
    struct worker **w;
    unsigned nw;
    int stopping;
    int exit_code;
};

static void conn_pump(struct conn *c);
static void conn_close(struct conn *c);

/* The throttle as it is now (NULL: auth_throttle = no). */
static struct throttle *
conn_throttle(const struct conn *c)
{
    return atomic_load(&c->srv->throttle);
}

/* --- Configuration snapshots ---------------------------------------------
 */

static void
srv_conf_unref(struct srv_conf *sc)
{
    if (sc == NULL || atomic_fetch_sub(&sc->refs, 1) != 1)
        return;
    if (sc->uri_hosts != NULL) {
        for (size_t i = 0; sc->uri_hosts[i] != NULL; i++)
            free(sc->uri_hosts[i]);
        free(sc->uri_hosts);
    }
    free(sc->l);
    tls_ctx_free(sc->tls);
    userdb_unref(sc->udb);
    config_free(sc->cfg);
    free(sc);
}

/* The host part of a listener address ("127.0.0.1", "::1"). */
static char *
listener_host(const struct config_listener *l)
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

/*
 * The session refuses some settings that the parser accepts: find out at
 * load time (posternd -t, start, SIGHUP), not by closing every connection
 * without a word.
 */
static int
srv_conf_check_session(const struct config *cfg,
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

/* Load a configuration and all it names.  Returns NULL with err set. */
static struct srv_conf *
srv_conf_load(const char *path, char *err, size_t n)
{
    struct srv_conf *sc = calloc(1, sizeof(*sc));
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
        struct lconf *lc = &sc->l[i];

        sc->uri_hosts[i] = listener_host(cl);
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
        if (srv_conf_check_session(cfg, cl, &lc->scfg, err, n) < 0)
            goto fail;
    }
    return sc;
fail:
    srv_conf_unref(sc);
    return NULL;
}

/* -------------------------------------------------------------------------- */

static void
conn_log_close(struct conn *c, const char *why)
{
    if (c->close_logged)
        return;
    c->close_logged = 1;
    log_event(LOG_LEVEL_INFO, "disconnect", "sid", c->sid, "peer", c->peer,
              "reason", why, NULL);
}

/* Why the session asked to close: the driver's reason, or the last reply
 * queued (221 after QUIT, 421 4.7.0 after too many errors). */
static const char *
conn_close_reason(struct conn *c)
{
    const uint8_t *p;
    size_t len, i;

    if (c->close_why != NULL)
        return c->close_why;
    pst_smtp_server_output(c->s, &p, &len);
    if (len < 5)
        return "closed by the session";
    for (i = len - 2; i > 0 && p[i - 1] != '\n'; i--)
        ;
    if (len - i >= 4 && memcmp(p + i, "221 ", 4) == 0)
        return "quit";
    if (len - i >= 10 && memcmp(p + i, "421 4.7.0 ", 10) == 0)
        return "too many errors";
    return "closed by the session";
}

/* -------------------------------------------------------------------------- */

struct write_req {
    uv_write_t req;
    struct conn *c;
    size_t len;
    uint8_t data[];
};

static void
on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = w->c;

    c->writes_pending--;
    OPENSSL_cleanse(w->data, w->len);
    free(w);
    if (status < 0 && !c->closing) {
        conn_log_close(c, "write failed");
        conn_close(c);
        return;
    }
    if (c->close_after_flush && c->writes_pending == 0)
        conn_close(c);
}

static int
conn_write_raw(struct conn *c, const uint8_t *p, size_t len)
{
    struct write_req *w;
    uv_buf_t b;

    if (len == 0 || c->closing)
        return 0;
    w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return -1;
    w->c = c;
    w->len = len;
    memcpy(w->data, p, len);
    b = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(w);
        return -1;
    }
    c->writes_pending++;
    return 0;
}

/* The TLS pump's callbacks (tls_input(), tls_send()). */
static int
conn_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return conn_write_raw(ctx, p, n) < 0 ? -1 : 0;
}

static int conn_take_plain(struct conn *c, const uint8_t *p, size_t n);
static int conn_tls_established(void *ctx);

static int
conn_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    return conn_take_plain(ctx, p, n) < 0 ? -1 : 0;
}

static const struct tls_io conn_tls_io = {
    .send = conn_tls_send,
    .recv = conn_tls_recv,
    .established = conn_tls_established,
};

/* Start TLS on the connection (implicit TLS at accept, or STARTTLS). */
static int
conn_tls_begin(struct conn *c)
{
    if (c->sc->tls == NULL || tls_new(c->sc->tls, NULL, &c->tls) < 0)
        return -1;
    tls_set_io(c->tls, &conn_tls_io, c);
    c->tls_handshaking = 1;
    return 0;
}

/* Send what the session has for the client.  Returns 1 if something
 * was taken, 0 if nothing, -1 on failure. */
static int
conn_flush(struct conn *c)
{
    const uint8_t *p;
    size_t len;

    pst_smtp_server_output(c->s, &p, &len);
    if (len == 0)
        return 0;
    if (c->tls != NULL) {
        if (c->tls_handshaking)
            return 0; /* nothing may go out before the handshake ends */
        if (tls_send(c->tls, p, len) != TLS_OK)
            return -1;
        pst_smtp_server_consume(c->s, len);
        c->progress++;
        return 1;
    }
    if (conn_write_raw(c, p, len) < 0)
        return -1;
    pst_smtp_server_consume(c->s, len);
    c->progress++;
    return 1;
}

/* --- Closing ----------------------------------------------------------------
 */

/* --- Connections per address (max_connections_per_ip) ------------------
 */

static size_t
peer_key(const struct sockaddr_storage *sa, uint8_t addr[16], uint8_t *v6)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a; a chain is at most
                                            max_connections long */

    memset(addr, 0, 16);
    *v6 = sa->ss_family == AF_INET6;
    if (*v6)
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    else
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    for (size_t i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 1099511628211ull;
    return (size_t)(h % PEER_BUCKETS);
}

/* Count one more connection from sa.  Returns how many there are now
 * (this one included), or 0 when out of memory. */
static unsigned
peers_add(struct server *srv, const struct sockaddr_storage *sa)
{
    uint8_t addr[16], v6;
    size_t b = peer_key(sa, addr, &v6);
    struct peer_count *p;
    unsigned n = 0;

    uv_mutex_lock(&srv->mu);
    for (p = srv->peers[b]; p != NULL; p = p->next)
        if (p->family_v6 == v6 && memcmp(p->addr, addr, 16) == 0)
            break;
    if (p == NULL && (p = calloc(1, sizeof(*p))) != NULL) {
        memcpy(p->addr, addr, 16);
        p->family_v6 = v6;
        p->next = srv->peers[b];
        srv->peers[b] = p;
    }
    if (p != NULL)
        n = ++p->n;
    uv_mutex_unlock(&srv->mu);
    return n;
}

static void
peers_remove(struct server *srv, const struct sockaddr_storage *sa)
{
    uint8_t addr[16], v6;
    size_t b = peer_key(sa, addr, &v6);
    struct peer_count **pp, *p;

    uv_mutex_lock(&srv->mu);
    for (pp = &srv->peers[b]; (p = *pp) != NULL; pp = &p->next)
        if (p->family_v6 == v6 && memcmp(p->addr, addr, 16) == 0) {
            if (--p->n == 0) {
                *pp = p->next;
                free(p);
            }
            break;
        }
    uv_mutex_unlock(&srv->mu);
}

/* -------------------------------------------------------------------------- */

static void
conn_free(struct conn *c)
{
    struct worker *w = c->w;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->nconn--;
    atomic_fetch_sub(&c->srv->nconn, 1);
    if (c->peer_counted)
        peers_remove(c->srv, &c->peer_sa);
    if (c->msg != NULL)
        maildir_abort(c->msg);
    for (size_t i = 0; i < c->npaths; i++)
        free(c->paths[i]);
    free(c->paths);
    pst_smtp_server_free(c->s);
    free(c->held_user);
    /* A lookup still in flight is cancelled: no callback follows. */
    userdb_lookup_free(c->auth_req);
    userdb_lookup_free(c->mail_req);
    free(c->mail_from);
    tls_free(c->tls);
    pst_buf_clear(&c->backlog);
    srv_conf_unref(c->sc);
    free(c);
    if (w->stopping && w->nconn == 0)
        uv_stop(&w->loop);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    if (--c->handles_open == 0)
        conn_free(c);
}

static void
conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->work_pending)
        return; /* the job's completion closes it */
    /* The connection is over for the limits now, not when its handles
     * are freed a loop turn later. */
    if (c->peer_counted) {
        peers_remove(c->srv, &c->peer_sa);
        c->peer_counted = 0;
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->hold, on_handle_closed);
}

/* --- Timeouts ---------------------------------------------------------------
 */

/* When session_time_limit ends the connection (uv_now() ms), or
 * UINT64_MAX for no limit. */
static uint64_t
conn_session_deadline(const struct conn *c)
{
    unsigned limit = c->sc->cfg->session_time_limit;

    return limit > 0 ? c->started + (uint64_t)limit * 1000 : UINT64_MAX;
}

/* When data_time_limit ends the DATA in progress, or UINT64_MAX. */
static uint64_t
conn_data_deadline(const struct conn *c)
{
    unsigned limit = c->sc->cfg->data_time_limit;

    return limit > 0 && c->data_started > 0
               ? c->data_started + (uint64_t)limit * 1000
               : UINT64_MAX;
}

/* Which limit ends the session now, if any (conn_arm_timer()). */
static const char *
conn_limit_passed(const struct conn *c, uint64_t now)
{
    if (now >= conn_session_deadline(c))
        return "session time limit";
    if (now >= conn_data_deadline(c))
        return "data time limit";
    return NULL;
}

static void
on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    const char *limit;

    if (c->closing)
        return;
    limit = conn_limit_passed(c, uv_now(&c->w->loop));
    log_event(LOG_LEVEL_INFO, "timeout", "sid", c->sid, "state",
              pst_smtp_state_name(pst_smtp_server_state(c->s, NULL)),
              limit != NULL ? "limit" : NULL, limit, NULL);
    c->close_why = limit != NULL ? limit : "timeout";
    /* RFC 5321 §4.5.3.2: 421 4.4.2, also for the time limits. */
    if (pst_smtp_server_close(c->s, PST_SMTP_CLOSE_TIMEOUT) < 0 ||
        c->tls_handshaking) {
        conn_log_close(c, c->close_why);
        conn_close(c);
        return;
    }
    conn_pump(c);
}

/*
 * (Re)start the one timer of a connection at the earliest of:
 * - a command (or the TLS handshake) must arrive whole within
 *   timeout_command of the previous reply.  Bytes that do not complete a
 *   line do not restart it (as Postfix's smtpd_per_record_deadline), so
 *   a client sending one byte every few seconds is cut off;
 * - in DATA, timeout_data since the last bytes read (RFC 5321
 *   §4.5.3.2.5: the time per data block), and data_time_limit since the
 *   354;
 * - session_time_limit since the connection was accepted.
 * Nothing runs while the server itself is busy (storing the message,
 * checking a password).
 */
static void
conn_arm_timer(struct conn *c)
{
    const struct config *cfg = c->sc->cfg;
    enum pst_smtp_state st = pst_smtp_server_state(c->s, NULL);
    uint64_t now = uv_now(&c->w->loop), deadline;

    if (st == PST_SMTP_STATE_WAIT_STORED || st == PST_SMTP_STATE_WAIT_VERIFY) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (st == PST_SMTP_STATE_DATA) {
        if (c->data_started == 0)
            c->data_started = now;
        deadline = now + (uint64_t)cfg->timeout_data * 1000;
        if (conn_data_deadline(c) < deadline)
            deadline = conn_data_deadline(c);
        c->line_deadline = 0;
    } else {
        c->data_started = 0;
        if (c->line_deadline == 0 || c->progress != c->armed_progress) {
            c->line_deadline = now + (uint64_t)cfg->timeout_command * 1000;
            c->armed_progress = c->progress;
        }
        deadline = c->line_deadline;
    }
    if (conn_session_deadline(c) < deadline)
        deadline = conn_session_deadline(c);
    uv_timer_start(&c->timer, on_timeout, deadline > now ? deadline - now : 0,
                   0);
}

/* -------------------------------------------------------------------------- */

/* Carry on after an answer to the session (rc of
 * pst_smtp_server_answer()): refused means a bug on our side, and the
 * connection goes. */
static void
conn_resume(struct conn *c, int rc)
{
    if (rc < 0) {
        log_event(LOG_LEVEL_WARN, "internal_error", "sid", c->sid, "what",
                  "answer refused by the session", NULL);
        conn_log_close(c, "internal error");
        conn_close(c);
        return;
    }
    conn_pump(c);
}

static void
work_run(uv_work_t *w)
{
    struct conn *c = w->data;

    switch (c->work_kind) {
    case WORK_VERIFY:
        c->work_result = pst_cred_verify(c->auth_cred, c->work_user,
                                         c->work_pw, c->work_pwlen);
        break;
    case WORK_COMMIT:
        c->work_result = maildir_commit(c->msg, (const char *const *)c->paths,
                                        c->npaths);
        break;
    }
}

static void
work_done(uv_work_t *w, int status)
{
    struct conn *c = w->data;
    struct pst_smtp_answer a = {0};
    char qid[MAILDIR_QID_LEN + 1], size[24], rcpts[24];

    c->work_pending = 0;
    if (c->work_pw != NULL) {
        OPENSSL_clear_free(c->work_pw, c->work_pwlen);
        c->work_pw = NULL;
    }
    free(c->work_user);
    c->work_user = NULL;
    if (c->closing) {
        /* The client went away meanwhile: finish closing. */
        c->closing = 0;
        conn_close(c);
        return;
    }
    if (c->work_kind == WORK_VERIFY) {
        a.type = PST_SMTP_EV_AUTH_VERIFY;
        /* A check that could not run (out of memory, job cancelled) is
         * not a wrong password: 454 4.7.0, RFC 4954 §6. */
        if (status == 0 && c->work_result == 0)
            a.verdict = PST_SMTP_ACCEPT;
        else if (status == 0 && c->work_result == PST_EAUTH)
            a.verdict = PST_SMTP_REJECT;
        else
            a.verdict = PST_SMTP_TEMPFAIL;
    } else {
        /* Copied: the message (and its id) is freed before the answer. */
        snprintf(qid, sizeof(qid), "%s", maildir_qid(c->msg));
        a.type = PST_SMTP_EV_DATA_END;
        if (status == 0 && c->work_result == 0 && !c->data_failed) {
            a.verdict = PST_SMTP_ACCEPT;
            a.queue_id = qid;
            snprintf(size, sizeof(size), "%llu",
                     (unsigned long long)c->msg_size);
            snprintf(rcpts, sizeof(rcpts), "%zu", c->npaths);
            log_event(LOG_LEVEL_INFO, "message_accepted", "sid", c->sid,
                      "qid", qid, "user",
                      pst_smtp_server_user(c->s, NULL) != NULL
                          ? pst_smtp_server_user(c->s, NULL)
                          : "-",
                      "size", size, "rcpts", rcpts, NULL);
        } else {
            a.verdict = PST_SMTP_TEMPFAIL;
            log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid,
                      "qid", qid, "error", maildir_error(c->msg), NULL);
        }
        maildir_free(c->msg);
        c->msg = NULL;
    }
    conn_resume(c, pst_smtp_server_answer(c->s, &a));
}

static int
conn_queue_work(struct conn *c, enum work_kind kind)
{
    c->work_kind = kind;
    c->work.data = c;
    if (uv_queue_work(&c->w->loop, &c->work, work_run, work_done) < 0)
        return -1;
    c->work_pending = 1;
    return 0;
}

/* --- Events from the session --------------------------------------------- */

static int
conn_answer(struct conn *c, enum pst_smtp_event_type t,
            enum pst_smtp_verdict v, const struct pst_cred *cred,
            const char *reply)
{
    struct pst_smtp_answer a = {
        .type = t, .verdict = v, .cred = cred, .reply = reply,
    };

    return pst_smtp_server_answer(c->s, &a);
}

static void on_hold(uv_timer_t *t);

/* The throttle locked this address: 421 4.7.0 and close (RFC 4954 §9). */
static void
conn_lockout(struct conn *c)
{
    c->close_why = "auth lockout";
    log_event(LOG_LEVEL_INFO, "auth_lockout", "sid", c->sid, "peer",
              c->peer, NULL);
    if (pst_smtp_server_close(c->s, PST_SMTP_CLOSE_AUTH_LOCKOUT) < 0)
        conn_close(c);
}

/* Hold the session for ms (throttle): no input is acted on, no output
 * sent, until on_hold(). */
static void
conn_hold(struct conn *c, enum conn_hold why, uint64_t ms)
{
    c->holding = why;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    uv_timer_stop(&c->timer);
    /* From now, not from when this loop turn began. */
    uv_update_time(&c->w->loop);
    uv_timer_start(&c->hold, on_hold, ms, 0);
}

/* The user store answered the AUTH lookup: resume the session. */
static void
conn_on_lookup(void *ctx, int rc, const struct userdb_user *u)
{
    struct conn *c = ctx;
    int arc;

    /* The session ended meanwhile (timeout, shutdown): nothing waits. */
    if (c->closing || c->close_after_flush)
        return;
    if (rc == PST_ETEMP) {
        /* RFC 4954 §6: 454 4.7.0, and the session goes on. */
        arc = conn_answer(c, PST_SMTP_EV_AUTH_LOOKUP, PST_SMTP_TEMPFAIL,
                          NULL, NULL);
    } else {
        /* The request owns the credentials until AUTH_RESULT.  An
         * unknown user gets NULL: the session does the same work and
         * fails the same way as for a wrong password. */
        c->auth_cred = rc == 0 ? u->cred : NULL;
        arc = conn_answer(c, PST_SMTP_EV_AUTH_LOOKUP, PST_SMTP_ACCEPT,
                          c->auth_cred, NULL);
    }
    conn_resume(c, arc);
}

/* Start the lookup of the AUTH_LOOKUP event; the session stays parked
 * until conn_on_lookup(). */
static int
conn_lookup_begin(struct conn *c, const char *user)
{
    userdb_lookup_free(c->auth_req);
    c->auth_req = NULL;
    c->auth_cred = NULL;
    /* The user store as it is now, not as it was when the client
     * connected: a password changed or removed by a reload must stop
     * working on connections that were already open. */
    if (userdb_lookup_start(c->w->udb, &c->w->loop, user,
                            conn_on_lookup, c, &c->auth_req) < 0)
        return conn_answer(c, PST_SMTP_EV_AUTH_LOOKUP, PST_SMTP_TEMPFAIL,
                           NULL, NULL);
    return 0;
}

static int
conn_on_auth_lookup(struct conn *c, const struct pst_smtp_event *ev)
{
    uint64_t delay = 0;

    c->auth_tag = 0;
    /* Every mechanism asks for credentials once per attempt, before any
     * check: the one place to hold an address (or a user name) under
     * penalty, as Dovecot delays the whole request. */
    if (throttle_check(conn_throttle(c), (struct sockaddr *)&c->peer_sa,
                       ev->user, uv_now(&c->w->loop), &delay) ==
        THROTTLE_REFUSE) {
        conn_lockout(c);
        return 0;
    }
    if (delay > 0) {
        free(c->held_user);
        c->held_user = strdup(ev->user);
        if (c->held_user == NULL)
            return -1;
        conn_hold(c, HOLD_LOOKUP, delay);
        return 0;
    }
    return conn_lookup_begin(c, ev->user);
}

static int
conn_on_auth_verify(struct conn *c, const struct pst_smtp_event *ev)
{
    /* The same guess again does not count twice (throttle.h). */
    c->auth_tag = throttle_tag(conn_throttle(c), ev->user, ev->password,
                               ev->password_len);
    c->work_pw = malloc(ev->password_len + 1);
    c->work_user = strdup(ev->user != NULL ? ev->user : "");
    if (c->work_pw == NULL || c->work_user == NULL)
        return -1;
    memcpy(c->work_pw, ev->password, ev->password_len);
    c->work_pwlen = ev->password_len;
    return conn_queue_work(c, WORK_VERIFY);
}

static void
conn_on_auth_result(struct conn *c, const struct pst_smtp_event *ev)
{
    if (ev->ok)
        log_event(LOG_LEVEL_INFO, "auth_ok", "sid", c->sid, "peer", c->peer,
                  "user", ev->user, "mech", ev->mech, NULL);
    else
        log_event(LOG_LEVEL_INFO, "auth_failed", "sid", c->sid, "peer",
                  c->peer, "user", ev->user != NULL ? ev->user : "-",
                  "mech", ev->mech != NULL ? ev->mech : "-", "error",
                  pst_errname(ev->error), "reason",
                  ev->reason != NULL ? ev->reason : "-", NULL);
    /* The exchange is over: the credentials it borrowed can go. */
    c->auth_cred = NULL;
    userdb_lookup_free(c->auth_req);
    c->auth_req = NULL;
    if (ev->ok) {
        throttle_auth_ok(conn_throttle(c), (struct sockaddr *)&c->peer_sa,
                         uv_now(&c->w->loop));
    } else if (ev->error == PST_EAUTH) {
        /* Only exchanges that tested a password count: a malformed or
         * cancelled one guessed nothing. */
        uint64_t delay = 0, elapsed;
        enum throttle_verdict v;

        v = throttle_auth_failed(conn_throttle(c),
                                 (struct sockaddr *)&c->peer_sa, ev->user,
                                 c->auth_tag, uv_now(&c->w->loop), &delay);
        if (v == THROTTLE_REFUSE)
            conn_lockout(c); /* the 421 goes out after the 535 */
        /* The 535 leaves auth_failure_delay (or the throttle's delay, if
         * longer) after the client's last byte, however long the lookup
         * and the check took: an unknown user, a cheap verifier and a
         * costly crypt(3) hash all answer at the same moment (as long as
         * the check takes less than the delay), so the timing does not
         * tell which users exist.  Dovecot: auth_failure_delay. */
        if (delay < c->sc->cfg->auth_failure_delay_ms)
            delay = c->sc->cfg->auth_failure_delay_ms;
        elapsed = (uv_hrtime() - c->last_input_ns) / 1000000u;
        if (delay > elapsed)
            conn_hold(c, HOLD_REPLY, delay - elapsed);
    }
    c->auth_tag = 0;
}

static void
conn_reset_message(struct conn *c)
{
    for (size_t i = 0; i < c->npaths; i++)
        free(c->paths[i]);
    free(c->paths);
    c->paths = NULL;
    c->npaths = 0;
    if (c->msg != NULL) {
        maildir_abort(c->msg);
        c->msg = NULL;
    }
    c->data_failed = 0;
}

/* The user store answered the allow_from lookup of MAIL FROM. */
static void
conn_on_mail_lookup(void *ctx, int rc, const struct userdb_user *u)
{
    struct conn *c = ctx;
    const char *user = pst_smtp_server_user(c->s, NULL);
    enum pst_smtp_verdict v;

    if (c->closing || c->close_after_flush)
        return;
    if (rc == 0 &&
        userdb_allow_from(u->allow_from.v, u->allow_from.len, c->mail_from)) {
        v = PST_SMTP_ACCEPT;
    } else if (rc == PST_ETEMP) {
        v = PST_SMTP_TEMPFAIL; /* 451 4.3.0: try again later */
        log_event(LOG_LEVEL_WARN, "sender_check_failed", "sid", c->sid,
                  "user", user != NULL ? user : "-", "sender", c->mail_from,
                  "error", "user store unavailable", NULL);
    } else {
        v = PST_SMTP_REJECT;
        log_event(LOG_LEVEL_INFO, "sender_refused", "sid", c->sid, "user",
                  user != NULL ? user : "-", "sender", c->mail_from, NULL);
    }
    /* u is not used past this point. */
    userdb_lookup_free(c->mail_req);
    c->mail_req = NULL;
    free(c->mail_from);
    c->mail_from = NULL;
    conn_resume(c, conn_answer(c, PST_SMTP_EV_MAIL, v, NULL, NULL));
}

static int
conn_on_mail(struct conn *c, const struct pst_smtp_event *ev)
{
    const char *user;

    conn_reset_message(c);
    if (!ev->need_answer)
        return 0;
    /* The session asks when the user does not own the address by name:
     * the user's allow_from decides, as the store has it now (looked up
     * asynchronously: the session stays parked until the answer). */
    user = pst_smtp_server_user(c->s, NULL);
    if (user == NULL) {
        log_event(LOG_LEVEL_INFO, "sender_refused", "sid", c->sid, "user",
                  "-", "sender", ev->address, NULL);
        return conn_answer(c, ev->type, PST_SMTP_REJECT, NULL, NULL);
    }
    free(c->mail_from);
    userdb_lookup_free(c->mail_req);
    c->mail_req = NULL;
    c->mail_from = strdup(ev->address);
    if (c->mail_from == NULL)
        return -1;
    if (userdb_lookup_start(c->w->udb, &c->w->loop, user,
                            conn_on_mail_lookup, c, &c->mail_req) < 0)
        return conn_answer(c, ev->type, PST_SMTP_TEMPFAIL, NULL, NULL);
    return 0;
}

static int
conn_on_rcpt(struct conn *c, const struct pst_smtp_event *ev)
{
    struct pst_buf path;
    char **p;
    int rc;

    pst_buf_init(&path, 4096, 0);
    rc = config_mailbox_expand(c->sc->cfg->mailbox, ev->address,
                               strlen(ev->address), &path);
    if (rc < 0) {
        pst_buf_clear(&path);
        return conn_answer(c, ev->type, PST_SMTP_REJECT, NULL,
                           "553 5.1.3 Recipient address not accepted here");
    }
    /* A recipient given twice gets one copy (as Postfix does). */
    for (size_t i = 0; i < c->npaths; i++)
        if (strcmp(c->paths[i], (const char *)path.data) == 0) {
            pst_buf_clear(&path);
            return conn_answer(c, ev->type, PST_SMTP_ACCEPT, NULL, NULL);
        }
    p = realloc(c->paths, (c->npaths + 1) * sizeof(char *));
    if (p == NULL) {
        pst_buf_clear(&path);
        return -1;
    }
    c->paths = p;
    c->paths[c->npaths] = strdup((const char *)path.data);
    pst_buf_clear(&path);
    if (c->paths[c->npaths] == NULL)
        return -1;
    c->npaths++;
    return conn_answer(c, ev->type, PST_SMTP_ACCEPT, NULL, NULL);
}

static void
conn_on_data_begin(struct conn *c)
{
    struct pst_buf hdr;
    struct pst_smtp_received r = {0};
    char date[DATE_RFC5322_MAX];
    int rc;

    c->data_failed = 0;
    rc = maildir_begin(c->sc->cfg->spool, c->sc->cfg->hostname, &c->msg);
    if (rc < 0) {
        log_event(LOG_LEVEL_WARN, "spool_failed", "sid", c->sid, "error",
                  strerror(errno), NULL);
        c->data_failed = 1;
        return;
    }
    date_rfc5322(time(NULL), date, sizeof(date));
    r.peer_addr = c->peer_rcvd;
    r.queue_id = maildir_qid(c->msg);
    r.date = date;
    r.recipient = NULL;
    pst_buf_init(&hdr, 4096, 0);
    if (pst_smtp_server_received(c->s, &r, &hdr) < 0 ||
        maildir_append(c->msg, hdr.data, hdr.len) < 0)
        c->data_failed = 1;
    pst_buf_clear(&hdr);
}

/* Handle one event.  Returns -1 when the connection must go. */
static int
conn_on_event(struct conn *c, const struct pst_smtp_event *ev)
{
    switch (ev->type) {
    case PST_SMTP_EV_STARTTLS:
        /* The 220 goes out in clear; then everything is TLS.  Bytes the
         * client sent after STARTTLS were discarded by the session
         * (RFC 3207 §4.2, CVE-2011-0411); so are ours. */
        if (conn_flush(c) < 0)
            return -1;
        pst_buf_reset(&c->backlog);
        return conn_tls_begin(c);
    case PST_SMTP_EV_AUTH_LOOKUP:
        return conn_on_auth_lookup(c, ev);
    case PST_SMTP_EV_AUTH_VERIFY:
        return conn_on_auth_verify(c, ev);
    case PST_SMTP_EV_AUTH_RESULT:
        conn_on_auth_result(c, ev);
        return 0;
    case PST_SMTP_EV_MAIL:
        return conn_on_mail(c, ev);
    case PST_SMTP_EV_RCPT:
        return conn_on_rcpt(c, ev);
    case PST_SMTP_EV_DATA_BEGIN:
        conn_on_data_begin(c);
        return 0;
    case PST_SMTP_EV_DATA:
        if (c->msg != NULL && !c->data_failed &&
            maildir_append(c->msg, ev->data, ev->len) < 0)
            c->data_failed = 1;
        return 0;
    case PST_SMTP_EV_DATA_END:
        if (c->msg == NULL || c->data_failed) {
            log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid,
                      "error", c->msg != NULL ? maildir_error(c->msg)
                                              : "no spool file",
                      NULL);
            conn_reset_message(c);
            return conn_answer(c, ev->type, PST_SMTP_TEMPFAIL, NULL, NULL);
        }
        c->msg_size = ev->size;
        return conn_queue_work(c, WORK_COMMIT);
    case PST_SMTP_EV_DATA_ABORT:
        log_event(LOG_LEVEL_INFO, "message_refused", "sid", c->sid, "error",
                  pst_errname(ev->error), "reason",
                  ev->reason != NULL ? ev->reason : "-", NULL);
        conn_reset_message(c);
        return 0;
    case PST_SMTP_EV_CLOSE:
        conn_log_close(c, conn_close_reason(c));
        c->close_after_flush = 1;
        return 0;
    }
    return 0;
}

/* -------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* Give the session what it will take of the backlog. */
static void
conn_feed_backlog(struct conn *c)
{
    while (c->backlog.len > 0) {
        size_t used = 0;

        if (pst_smtp_server_feed(c->s, c->backlog.data, c->backlog.len,
                                 &used) < 0 || used == 0)
            break;
        memmove(c->backlog.data, c->backlog.data + used,
                c->backlog.len - used);
        c->backlog.len -= used;
    }
    /* Nothing left over: an idle connection keeps no input buffer. */
    if (c->backlog.len == 0 && c->backlog.data != NULL)
        pst_buf_clear(&c->backlog);
}

/* A throttle delay is over: answer the held lookup, or let the held
 * 535 go, and carry on. */
static void
on_hold(uv_timer_t *t)
{
    struct conn *c = t->data;
    enum conn_hold why = c->holding;
    uint64_t delay = 0;

    if (c->closing)
        return;
    c->holding = HOLD_NONE;
    if (why == HOLD_LOOKUP) {
        /* Another connection may have locked the address meanwhile. */
        if (throttle_check(conn_throttle(c),
                           (struct sockaddr *)&c->peer_sa, c->held_user,
                           uv_now(&c->w->loop), &delay) == THROTTLE_REFUSE)
            conn_lockout(c);
        else if (conn_lookup_begin(c, c->held_user) < 0) {
            conn_log_close(c, "internal error");
            conn_close(c);
            return;
        }
        free(c->held_user);
        c->held_user = NULL;
    }
    conn_pump(c);
}

static void
conn_pump(struct conn *c)
{
    struct pst_smtp_event ev;
    int rc;

    if (c->closing || c->holding != HOLD_NONE)
        return;
    /* The session acts only inside next_event(), and stops while much
     * output is unsent: drain events and output until neither moves. */
    for (;;) {
        int flushed;

        for (;;) {
            conn_feed_backlog(c);
            rc = pst_smtp_server_next_event(c->s, &ev);
            if (rc < 0) {
                conn_log_close(c, "session error");
                conn_close(c);
                return;
            }
            if (rc == 0) {
                /* No event, but the session may have made room (an
                 * overlong line it discards): feed more, or stop. */
                size_t before = c->backlog.len;

                conn_feed_backlog(c);
                if (c->backlog.len == before)
                    break;
                continue;
            }
            if (conn_on_event(c, &ev) < 0) {
                conn_log_close(c, "internal error");
                conn_close(c);
                return;
            }
            /* Held by the throttle: nothing moves until on_hold(). */
            if (c->holding != HOLD_NONE || c->closing)
                return;
        }
        flushed = conn_flush(c);
        if (flushed < 0) {
            conn_log_close(c, "write failed");
            conn_close(c);
            return;
        }
        if (flushed == 0 || c->closing)
            break;
    }
    if (c->close_after_flush) {
        if (c->tls != NULL && !c->tls_handshaking &&
            tls_shutdown(c->tls) == 0)
            tls_flush(c->tls);
        if (c->writes_pending == 0)
            conn_close(c);
        else if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        return;
    }
    /* Stopping: a session that has finished its transaction goes now
     * rather than at the end of the grace period. */
    if (c->w->stopping) {
        enum pst_smtp_state st = pst_smtp_server_state(c->s, NULL);

        if (st == PST_SMTP_STATE_IDLE || st == PST_SMTP_STATE_GREETING) {
            c->close_why = "shutdown";
            if (pst_smtp_server_close(c->s, PST_SMTP_CLOSE_SHUTDOWN) == 0) {
                conn_pump(c);
                return;
            }
        }
    }
    /* Flow control: stop reading while the session cannot take more. */
    if (c->backlog.len >= CONN_BACKLOG_MAX / 2 && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    } else if (c->backlog.len < CONN_BACKLOG_MAX / 2 && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    }
    conn_arm_timer(c);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t room = CONN_BACKLOG_MAX - c->backlog.len, n = CONN_READ_CHUNK;

    (void)suggested;
    /* Never read more than the backlog can take: reading stops at half
     * full (conn_pump), so a pipelining client that sends faster than
     * the session acts is slowed by TCP, not cut off as an overflow. */
    if (room <= CONN_TLS_SLACK) {
        buf->base = NULL;
        buf->len = 0; /* on_read gets UV_ENOBUFS */
        return;
    }
    if (n > room - CONN_TLS_SLACK)
        n = room - CONN_TLS_SLACK;
    /* The loop's buffer: on_read() takes all of it before the next
     * read of any connection of this loop. */
    buf->base = (char *)c->w->rbuf;
    buf->len = n;
}

static int
conn_take_plain(struct conn *c, const uint8_t *p, size_t n)
{
    if (pst_buf_append(&c->backlog, p, n) < 0) {
        /* The client ignores flow control: too much pipelined input. */
        log_event(LOG_LEVEL_WARN, "input_overflow", "sid", c->sid, NULL);
        return -1;
    }
    return 0;
}

/* The handshake is over: the session learns it (RFC 3207 §4.2: it
 * forgets what it knew; on an implicit-TLS port it greets now). */
static int
conn_tls_established(void *ctx)
{
    struct conn *c = ctx;

    c->tls_handshaking = 0;
    log_event(LOG_LEVEL_INFO, "tls", "sid", c->sid, "version",
              tls_protocol(c->tls), "cipher", tls_cipher(c->tls), NULL);
    if (pst_smtp_server_tls_started(c->s, tls_protocol(c->tls),
                                    tls_cipher(c->tls)) < 0)
        return -1;
    if (c->implicit && pst_smtp_server_start(c->s) < 0)
        return -1;
    return 0;
}

/* Ciphertext arrived: advance the handshake, then decrypt. */
static int
conn_take_tls(struct conn *c, const uint8_t *p, size_t n)
{
    int rc = tls_input(c->tls, p, n);

    if (rc == TLS_OK || rc == TLS_WANT_MORE)
        return 0;
    if (rc < 0 && !tls_established(c->tls))
        log_event(LOG_LEVEL_INFO, "tls_failed", "sid", c->sid, "peer",
                  c->peer, "error", tls_error(c->tls), NULL);
    return -1;
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)st;
    int rc = 0;

    if (n == 0)
        return;
    if (n == UV_ENOBUFS && c->backlog.len > 0) {
        /* The backlog is full: wait until the session takes some
         * (conn_pump reads again below half full). */
        if (c->reading) {
            uv_read_stop(st);
            c->reading = 0;
        }
        conn_pump(c);
        return;
    }
    if (n < 0) {
        if (!c->closing) {
            conn_log_close(c, n == UV_EOF ? "client closed" : uv_strerror(
                                                                 (int)n));
            conn_close(c);
        }
        return;
    }
    if (c->closing || c->close_after_flush) {
        OPENSSL_cleanse(buf->base, (size_t)n);
        return;
    }
    c->last_input_ns = uv_hrtime();
    if (c->tls != NULL)
        rc = conn_take_tls(c, (const uint8_t *)buf->base, (size_t)n);
    else
        rc = conn_take_plain(c, (const uint8_t *)buf->base, (size_t)n);
    OPENSSL_cleanse(buf->base, (size_t)n);
    if (rc < 0) {
        conn_log_close(c, "input error");
        conn_close(c);
        return;
    }
    if (c->tls_handshaking) {
        conn_arm_timer(c);
        return;
    }
    conn_pump(c);
}

/* -------------------------------------------------------------------------- */

static void
session_trace(void *ctx, enum pst_smtp_trace what, const char *text,
              size_t len)
{
    struct conn *c = ctx;
    struct log_line l;

    log_begin(&l, LOG_LEVEL_DEBUG, what == PST_SMTP_TRACE_CLIENT ? "client"
                                   : what == PST_SMTP_TRACE_SERVER ? "server"
                                                                   : "state");
    log_kv(&l, "sid", c->sid);
    log_kv_bytes(&l, "line", text, len);
    log_end(&l);
}

static void
on_connection(uv_stream_t *ls, int status)
{
    struct listener *l = (struct listener *)ls;
    struct worker *w = l->w;
    struct server *srv = w->srv;
    struct srv_conf *sc = w->sc;
    const struct config *cfg = sc->cfg;
    struct pst_smtp_server_config scfg;
    struct conn *c;
    int namelen = sizeof(struct sockaddr_storage), busy = 0;
    size_t total;
    unsigned same;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->w = w;
    c->srv = srv;
    c->lidx = l->idx;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    uv_timer_init(&w->loop, &c->hold);
    c->tcp.data = c;
    c->timer.data = c;
    c->hold.data = c;
    c->handles_open = 3;
    c->started = uv_now(&w->loop);
    c->sc = sc;
    atomic_fetch_add(&sc->refs, 1);
    pst_buf_init(&c->backlog, CONN_BACKLOG_MAX, 1);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->nconn++;
    total = atomic_fetch_add(&srv->nconn, 1) + 1;
    snprintf(c->sid, sizeof(c->sid), "%llx",
             (unsigned long long)atomic_fetch_add(&srv->seq, 1) + 1);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer_sa, &namelen);
    if (c->peer_sa.ss_family == AF_INET6) {
        char a[INET6_ADDRSTRLEN];

        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&c->peer_sa)->sin6_addr,
                  a, sizeof(a));
        snprintf(c->peer, sizeof(c->peer), "%s", a);
        snprintf(c->peer_rcvd, sizeof(c->peer_rcvd), "IPv6:%s", a);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&c->peer_sa)->sin_addr,
                  c->peer, sizeof(c->peer));
        snprintf(c->peer_rcvd, sizeof(c->peer_rcvd), "%s", c->peer);
    }
    same = peers_add(srv, &c->peer_sa);
    c->peer_counted = same > 0;
    if ((cfg->max_connections > 0 && total > cfg->max_connections) ||
        (cfg->max_connections_per_ip > 0 &&
         (same == 0 || same > cfg->max_connections_per_ip)))
        busy = 1;
    else {
        uint64_t delay;

        /* An address locked out by the throttle gets no session. */
        if (throttle_check(conn_throttle(c), (struct sockaddr *)&c->peer_sa,
                           NULL, uv_now(&w->loop), &delay) ==
            THROTTLE_REFUSE)
            busy = 2;
    }
    scfg = sc->l[l->idx].scfg;
    scfg.timestamp = (uint64_t)time(NULL);
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        scfg.trace = session_trace;
        scfg.trace_ctx = c;
    }
    if (pst_smtp_server_new(&scfg, &c->s) < 0) {
        conn_close(c);
        return;
    }
    if (busy)
        c->close_why = busy == 2 ? "auth lockout" : "too many connections";
    log_event(LOG_LEVEL_INFO, "connect", "sid", c->sid, "peer", c->peer,
              "listener", l->name, busy ? "refused" : NULL,
              busy ? c->close_why : NULL, NULL);
    if (busy) {
        /* RFC 5321 §3.1: a 421 instead of the greeting.  Without TLS even
         * on an implicit-TLS port: the client sees a handshake failure. */
        if (scfg.tls == PST_SMTP_TLS_IMPLICIT ||
            pst_smtp_server_close(c->s, busy == 2
                                            ? PST_SMTP_CLOSE_AUTH_LOCKOUT
                                            : PST_SMTP_CLOSE_BUSY) < 0) {
            conn_log_close(c, c->close_why);
            conn_close(c);
            return;
        }
        conn_pump(c);
        return;
    }
    if (scfg.tls == PST_SMTP_TLS_IMPLICIT) {
        c->implicit = 1;
        if (conn_tls_begin(c) < 0) {
            conn_close(c);
            return;
        }
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
        conn_arm_timer(c);
        return;
    }
    if (pst_smtp_server_start(c->s) < 0) {
        conn_close(c);
        return;
    }
    conn_pump(c);
}

/* -------------------------------------------------------------------------- */

static void
on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

/* The grace period is over: every session still open gets 421 now. */
static void
on_grace(uv_timer_t *t)
{
    struct worker *w = t->data;

    for (struct conn *c = w->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        c->close_why = "shutdown";
        if (c->tls_handshaking ||
            pst_smtp_server_close(c->s, PST_SMTP_CLOSE_SHUTDOWN) < 0) {
            conn_log_close(c, c->close_why);
            conn_close(c);
        } else {
            conn_pump(c);
        }
    }
}

/* Stop this loop: no more connections; idle sessions end now, the
 * others when their transaction is over or the grace period ends. */
static void
worker_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    for (size_t i = 0; i < w->nls; i++)
        uv_close((uv_handle_t *)&w->ls[i].tcp, on_listener_closed);
    if (w->nconn == 0) {
        uv_stop(&w->loop);
        return;
    }
    for (struct conn *c = w->conns, *next; c != NULL; c = next) {
        enum pst_smtp_state st;

        next = c->next;
        if (c->closing || c->s == NULL)
            continue;
        st = pst_smtp_server_state(c->s, NULL);
        if (st == PST_SMTP_STATE_GREETING || st == PST_SMTP_STATE_IDLE) {
            c->close_why = "shutdown";
            if (pst_smtp_server_close(c->s, PST_SMTP_CLOSE_SHUTDOWN) < 0) {
                conn_log_close(c, c->close_why);
                conn_close(c);
            } else {
                conn_pump(c);
            }
        }
    }
    uv_timer_start(&w->grace, on_grace,
                   (uint64_t)w->sc->cfg->grace_period * 1000, 0);
}

/* The user store a worker looks users up in: the snapshot's own for a
 * passwd file (read-only, shared), a fresh one of its own for pgsql
 * (libpq connections belong to one loop).  NULL when it cannot be
 * opened (logged); lookups then get 454 4.7.0. */
static struct userdb *
worker_userdb(const struct srv_conf *sc)
{
    struct userdb *u;
    char err[CONFIG_ERR_MAX];

    if (!userdb_per_loop(sc->udb))
        return userdb_ref(sc->udb);
    if (userdb_open(sc->cfg, &u, err, sizeof(err)) < 0) {
        log_event(LOG_LEVEL_WARN, "userdb_failed", "error", err, NULL);
        return NULL;
    }
    return u;
}

/* The main thread left something in the mailbox. */
static void
on_wake(uv_async_t *h)
{
    struct worker *w = h->data;
    struct srv_conf *next;
    int stop;

    uv_mutex_lock(&w->srv->mu);
    next = w->next_sc;
    w->next_sc = NULL;
    stop = w->stop_requested;
    uv_mutex_unlock(&w->srv->mu);
    if (next != NULL) {
        struct userdb *u = worker_userdb(next);

        /* A store that cannot be opened keeps the previous one. */
        if (u != NULL || !userdb_per_loop(next->udb)) {
            userdb_unref(w->udb);
            w->udb = u;
        }
        srv_conf_unref(w->sc);
        w->sc = next;
    }
    if (stop)
        worker_stop(w);
}

static void
on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void
worker_main(void *arg)
{
    struct worker *w = arg;

    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Close what is left and let the callbacks run. */
    uv_walk(&w->loop, on_walk_close, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void
worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    uv_loop_close(&w->loop);
    userdb_unref(w->udb);
    srv_conf_unref(w->sc);
    uv_mutex_lock(&w->srv->mu);
    srv_conf_unref(w->next_sc);
    uv_mutex_unlock(&w->srv->mu);
    free(w->ls);
    free(w);
}

/* A worker and its copies of the listening sockets; its thread is
 * started by the caller.  Returns NULL (logged) on failure. */
static struct worker *
worker_new(struct server *srv, unsigned id)
{
    const struct config *cfg = srv->sc->cfg;
    struct worker *w = calloc(1, sizeof(*w));
    int rc;

    if (w == NULL || uv_loop_init(&w->loop) < 0) {
        free(w);
        log_event(LOG_LEVEL_WARN, "worker_failed", "error",
                  "cannot create an event loop", NULL);
        return NULL;
    }
    w->srv = srv;
    w->id = id;
    w->sc = srv->sc;
    atomic_fetch_add(&w->sc->refs, 1);
    w->udb = worker_userdb(w->sc);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->grace);
    w->grace.data = w;
    w->ls = calloc(srv->nls, sizeof(*w->ls));
    if (w->ls == NULL)
        goto fail;
    for (size_t i = 0; i < srv->nls; i++) {
        struct listener *l = &w->ls[i];
        int fd = fcntl(srv->lfd[i], F_DUPFD_CLOEXEC, 0);

        l->w = w;
        l->idx = i;
        snprintf(l->name, sizeof(l->name), "%s", cfg->listeners[i].name);
        uv_tcp_init(&w->loop, &l->tcp);
        w->nls++;
        rc = fd < 0 ? UV_EMFILE : uv_tcp_open(&l->tcp, fd);
        if (rc < 0 && fd >= 0)
            close(fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
        if (rc < 0) {
            log_event(LOG_LEVEL_WARN, "listen_failed", "listener",
                      cfg->listeners[i].name, "error", uv_strerror(rc),
                      NULL);
            goto fail;
        }
    }
    return w;
fail:
    uv_walk(&w->loop, on_walk_close, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    worker_free(w);
    return NULL;
}

/* Tell every worker (mailbox + wake-up): a new snapshot and/or stop. */
static void
server_post(struct server *srv, struct srv_conf *sc, int stop)
{
    for (unsigned i = 0; i < srv->nw; i++) {
        struct worker *w = srv->w[i];

        uv_mutex_lock(&srv->mu);
        if (sc != NULL) {
            srv_conf_unref(w->next_sc);
            atomic_fetch_add(&sc->refs, 1);
            w->next_sc = sc;
        }
        if (stop)
            w->stop_requested = 1;
        uv_mutex_unlock(&srv->mu);
        uv_async_send(&w->wake);
    }
}

static void
server_stop(struct server *srv, const char *why)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    log_event(LOG_LEVEL_INFO, "stopping", "signal", why, NULL);
    server_post(srv, NULL, 1);
    /* The workers close their copies: the socket stops listening when
     * the last copy is closed, ours included. */
    for (size_t i = 0; i < srv->nls; i++)
        if (srv->lfd[i] >= 0) {
            close(srv->lfd[i]);
            srv->lfd[i] = -1;
        }
    /* server_run() joins the workers. */
    uv_stop(srv->loop);
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
    struct srv_conf *sc;
    char err[CONFIG_ERR_MAX], users[24];
    size_t n;

    if (signum != SIGHUP) {
        server_stop(srv, signum == SIGTERM ? "TERM" : "INT");
        return;
    }
    if (srv->stopping)
        return;
    sc = srv_conf_load(srv->path, err, sizeof(err));
    if (sc == NULL) {
        log_event(LOG_LEVEL_WARN, "reload_failed", "error", err,
                  "action", "keeping the previous configuration", NULL);
        return;
    }
    if (sc->cfg->n_listeners != srv->nls) {
        log_event(LOG_LEVEL_WARN, "reload_failed", "error",
                  "listeners changed; restart posternd to change them",
                  NULL);
        srv_conf_unref(sc);
        return;
    }
    srv_conf_unref(srv->sc);
    srv->sc = sc;
    log_set_level(sc->cfg->log_level);
    server_throttle_apply(srv);
    server_post(srv, sc, 0);
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
            uv_walk(&w->loop, on_walk_close, NULL);
            uv_run(&w->loop, UV_RUN_DEFAULT);
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
    srv.sc = srv_conf_load(path, err, sizeof(err));
    if (srv.sc == NULL) {
        fprintf(stderr, "posternd: %s\n", err);
        free(srv.path);
        return EX_CONFIG;
    }
    log_set_level(srv.sc->cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit must fail the write (451), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    /* Named spool files that no live process holds locked were left by
     * a crash: nobody was promised them (deliver_maildir.h). */
    spool_log(maildir_spool_clean(srv.sc->cfg->spool, MAILDIR_SPOOL_GRACE));
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
    if (server_throttle_apply(&srv) < 0)
        srv.exit_code = EX_SOFTWARE;
    else if (server_bind(&srv) < 0)
        srv.exit_code = EX_UNAVAILABLE;
    else if (server_start_workers(&srv) < 0)
        srv.exit_code = EX_OSERR;
    else
        uv_run(srv.loop, UV_RUN_DEFAULT);
    /* Stopping (or a failed start): the workers finish their sessions
     * within the grace period. */
    if (!srv.stopping)
        server_post(&srv, NULL, 1);
    for (unsigned i = 0; i < srv.nw; i++) {
        uv_thread_join(&srv.w[i]->thread);
        worker_free(srv.w[i]);
    }
    free(srv.w);
    for (size_t i = 0; i < srv.nls; i++)
        if (srv.lfd[i] >= 0)
            close(srv.lfd[i]);
    free(srv.lfd);
    uv_walk(srv.loop, on_walk_close, NULL);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(srv.loop);
    throttle_free(srv.throttle_obj);
    for (size_t b = 0; b < PEER_BUCKETS; b++)
        while (srv.peers[b] != NULL) {
            struct peer_count *p = srv.peers[b];

            srv.peers[b] = p->next;
            free(p);
        }
    uv_mutex_destroy(&srv.mu);
    srv_conf_unref(srv.sc);
    free(srv.path);
    /* Join the thread-pool threads now, so that what they hold (OpenSSL's
     * per-thread state) is freed by their exit handlers before atexit()
     * cleans up.  No libuv call may follow. */
    uv_library_shutdown();
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

int
server_check(const char *path)
{
    char err[CONFIG_ERR_MAX], what[CONFIG_ERR_MAX];
    struct srv_conf *sc = srv_conf_load(path, err, sizeof(err));
    int rc;

    if (sc == NULL) {
        fprintf(stderr, "posternd: %s\n", err);
        return EX_CONFIG;
    }
    /* The user store: "N users", or whether PostgreSQL answers and takes
     * the query.  A database that cannot be reached is no error: posternd
     * starts without it and answers AUTH with 454 until it is back. */
    rc = userdb_check(sc->udb, what, sizeof(what));
    if (rc == PST_ESYNTAX) {
        fprintf(stderr, "posternd: %s: %s\n", path, what);
        srv_conf_unref(sc);
        return EX_CONFIG;
    }
    if (rc < 0)
        fprintf(stderr, "posternd: %s: warning: %s (posternd starts all the "
                "same; AUTH gets 454 4.7.0 until the database answers)\n",
                path, what);
    printf("posternd: %s: configuration OK (%zu listener%s, %s)\n", path,
           sc->cfg->n_listeners, sc->cfg->n_listeners == 1 ? "" : "s",
           rc < 0 ? "userdb pgsql: database unreachable" : what);
    srv_conf_unref(sc);
    return EX_OK;
}
