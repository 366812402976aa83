/*
 * posternd - the PostgreSQL user store: a pool of non-blocking libpq
 * connections driven by the event loop (see userdb_pgsql.h).
 *
 * Every lookup sits in one list, oldest first, until it is answered:
 * queued (no connection yet) or sent (on a busy connection).  One timer
 * serves the whole store: lookup deadlines, connection deadlines, the
 * reconnection delay and answers that must not be given from inside
 * userdb_pgsql_lookup().  A callback may start or cancel lookups, so the
 * code gives answers last and looks at nothing of the store afterwards.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <uv.h>

#include <postern/error.h>

#include "log.h"
#include "userdb_backend.h"
#include "userdb_pgsql.h"

enum pg_state {
    PG_DOWN = 0,   /* no connection */
    PG_STARTING,   /* PQconnectStartParams() on the thread pool */
    PG_CONNECTING, /* PQconnectPoll() until OK or FAILED */
    PG_IDLE,       /* connected, no query */
    PG_BUSY,       /* a query sent, its results not all read */
};

struct pg_conn;

/* A poll handle lives until its close callback, which may come after its
 * connection moved on to another socket: it is allocated on its own. */
struct pg_poll {
    uv_poll_t h;
    struct userdb_pgsql *db;
    struct pg_conn *pc; /* NULL once detached */
};

struct pg_conn {
    struct userdb_pgsql *db;
    enum pg_state state;
    PGconn *pg;
    struct pg_poll *poll;         /* watching PQsocket(pg), or NULL */
    int poll_fd;
    int flushing;                 /* BUSY: PQflush() has more to send */
    uv_work_t work;               /* STARTING */
    uint64_t started;             /* uv_now() when STARTING began */
    uint64_t deadline;            /* CONNECTING: give up; BUSY: drop the
                                     connection (stuck); IDLE: close it
                                     (unused); 0: none */
    struct userdb_pgsql_query *q; /* BUSY: whose result this is; NULL when
                                     that lookup is gone (then dropped) */
    PGresult *res;                /* BUSY: the first result */
};

struct userdb_pgsql_query {
    struct userdb_pgsql *db;
    struct pg_conn *pc;           /* sent on; NULL while queued */
    struct userdb_req *req;       /* whose lookup (userdb_backend.h) */
    uint64_t deadline;            /* uv_now() ms: then PST_ETEMP */
    int rc;                       /* != 0: answer it on the next timer turn */
    int retried;                  /* sent again after a lost connection */
    struct userdb_pgsql_query *prev, *next;
    char name[];                  /* $1 */
};

struct userdb_pgsql {
    char *conninfo;               /* may hold a password: wiped on free */
    char *query;
    unsigned timeout_ms;
    uv_loop_t *loop;              /* bound by the first lookup */
    uv_timer_t timer;             /* initialised with loop */
    struct pg_conn conns[USERDB_PGSQL_CONNS];
    struct userdb_pgsql_query *head, *tail; /* unanswered, oldest first */
    unsigned nready;              /* lookups with rc set */
    uint64_t down_until;          /* no connection attempt before; 0: up */
    unsigned backoff_ms;
    int down_logged;              /* "userdb_down" said, "userdb_up" not */
    int ever_up;
    unsigned open;                /* handles open and jobs running */
    int freed;                    /* userdb_pgsql_free() was called */
};

static void pool_dispatch(struct userdb_pgsql *db);
static void pool_arm(struct userdb_pgsql *db);
static void conn_on_poll(uv_poll_t *h, int status, int events);

/* --- Helpers --------------------------------------------------------------
 */

/* A libpq message (multi-line, ending in a newline) on one line. */
static void
pg_message(const char *m, char *buf, size_t n)
{
    size_t len = 0;

    if (n == 0)
        return;
    if (m == NULL)
        m = "";
    for (; *m != '\0' && len + 1 < n; m++) {
        if (*m == '\n' || *m == '\r' || *m == '\t') {
            /* Runs of line breaks and indentation become one space. */
            if (len > 0 && buf[len - 1] != ' ')
                buf[len++] = ' ';
            continue;
        }
        buf[len++] = *m;
    }
    while (len > 0 && buf[len - 1] == ' ')
        len--;
    buf[len] = '\0';
    if (len == 0)
        snprintf(buf, n, "unknown error");
}

/* Free a result after wiping its values: they hold password verifiers
 * (libpq's own input buffer is out of our reach). */
static void
pg_res_free(PGresult *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++)
            OPENSSL_cleanse(PQgetvalue(r, i, j),
                            (size_t)PQgetlength(r, i, j));
    PQclear(r);
}

/* Notices (a NOTICE from the query, the FATAL an idle connection gets
 * before the server closes it) go to the log, not to stderr. */
static void
pg_on_notice(void *arg, const char *message)
{
    char m[512];

    (void)arg;
    pg_message(message, m, sizeof(m));
    log_event(LOG_LEVEL_DEBUG, "userdb_notice", "message", m, NULL);
}

/* Whether name is UTF-8 that PostgreSQL takes as a text parameter (with
 * client_encoding UTF8): no overlong forms, surrogates or values past
 * U+10FFFF (RFC 3629 §4).  Anything else cannot be a user name. */
static int
pg_utf8_ok(const char *name)
{
    const unsigned char *p = (const unsigned char *)name;

    while (*p != '\0') {
        unsigned c = *p, min;
        int n;

        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            min = 0x80;
            c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            min = 0x800;
            c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return 0;
        }
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* The store is going away: by userdb_pgsql_free(), or because uv_walk()
 * closed its timer at exit.  Nothing new may start on the loop. */
static int
pool_stopping(struct userdb_pgsql *db)
{
    return db->freed || uv_is_closing((uv_handle_t *)&db->timer);
}

static void
pool_destroy(struct userdb_pgsql *db)
{
    OPENSSL_clear_free(db->conninfo, strlen(db->conninfo));
    free(db->query);
    free(db);
}

/* One handle or job fewer; the last one after userdb_pgsql_free()
 * frees the store. */
static void
pool_unhold(struct userdb_pgsql *db)
{
    db->open--;
    if (db->freed && db->open == 0)
        pool_destroy(db);
}

static void
pool_on_timer_closed(uv_handle_t *h)
{
    pool_unhold(h->data);
}

/* --- The lookup list ------------------------------------------------------
 */

/* Take q out of the list and off its connection (whose result, if any is
 * still to come, is then dropped). */
static void
query_take(struct userdb_pgsql_query *q)
{
    struct userdb_pgsql *db = q->db;

    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        db->head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else
        db->tail = q->prev;
    q->prev = q->next = NULL;
    if (q->rc != 0)
        db->nready--;
    if (q->pc != NULL) {
        q->pc->q = NULL;
        q->pc = NULL;
    }
}

/* Answer a lookup already taken out (its record filled if rc is 0).
 * The callback may do anything to the store: callers touch nothing after
 * this. */
static void
query_deliver(struct userdb_pgsql_query *q, int rc)
{
    struct userdb_req *req = q->req;

    free(q);
    userdb_req_answer(req, rc);
}

/* Answer q with rc on the next timer turn. */
static void
query_fail_later(struct userdb_pgsql_query *q, int rc)
{
    if (q->pc != NULL) {
        q->pc->q = NULL;
        q->pc = NULL;
    }
    if (q->rc == 0)
        q->db->nready++;
    q->rc = rc;
}

/* The first lookup waiting for a connection, or NULL. */
static struct userdb_pgsql_query *
query_first_queued(struct userdb_pgsql *db)
{
    for (struct userdb_pgsql_query *q = db->head; q != NULL; q = q->next)
        if (q->pc == NULL && q->rc == 0)
            return q;
    return NULL;
}

/* --- Connections ----------------------------------------------------------
 */

static void
poll_on_close(uv_handle_t *h)
{
    struct pg_poll *p = (struct pg_poll *)h;
    struct userdb_pgsql *db = p->db;

    free(p);
    pool_unhold(db);
}

/* Stop watching pc's socket.  The poll stops before libpq closes the
 * socket (libuv must not watch a closed descriptor). */
static void
conn_unwatch(struct pg_conn *pc)
{
    struct pg_poll *p = pc->poll;

    if (p == NULL)
        return;
    pc->poll = NULL;
    p->pc = NULL;
    if (uv_is_closing((uv_handle_t *)&p->h)) {
        /* Closed by uv_walk() at exit, and the loop has run since. */
        free(p);
        pc->db->open--;
        return;
    }
    uv_poll_stop(&p->h);
    uv_close((uv_handle_t *)&p->h, poll_on_close);
}

/*
 * Watch pc's socket for events.  libpq may replace its socket while it
 * connects (another host, SSL refused: PQsocket() changes), possibly by
 * one with the same number that epoll has never seen: the poll starts
 * again every time, which registers the descriptor anew.
 * Returns: 0, -1 (no socket, or libuv refuses).
 */
static int
conn_watch(struct pg_conn *pc, int events)
{
    struct userdb_pgsql *db = pc->db;
    int fd = PQsocket(pc->pg);
    struct pg_poll *p = pc->poll;

    if (fd < 0 || pool_stopping(db))
        return -1;
    if (p != NULL && pc->poll_fd != fd) {
        conn_unwatch(pc);
        p = NULL;
    }
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL)
            return -1;
        if (uv_poll_init_socket(db->loop, &p->h, fd) < 0) {
            free(p);
            return -1;
        }
        p->db = db;
        p->pc = pc;
        db->open++;
        pc->poll = p;
        pc->poll_fd = fd;
    }
    return uv_poll_start(&p->h, events, conn_on_poll) < 0 ? -1 : 0;
}

/* Close pc's connection (its lookup, if any, is the caller's). */
static void
conn_reset(struct pg_conn *pc)
{
    conn_unwatch(pc);
    pg_res_free(pc->res);
    pc->res = NULL;
    if (pc->pg != NULL)
        PQfinish(pc->pg);
    pc->pg = NULL;
    if (pc->q != NULL) {
        pc->q->pc = NULL;
        pc->q = NULL;
    }
    pc->state = PG_DOWN;
    pc->deadline = 0;
    pc->flushing = 0;
}

static unsigned
pool_count(const struct userdb_pgsql *db, int live_only)
{
    unsigned n = 0;

    for (size_t i = 0; i < USERDB_PGSQL_CONNS; i++) {
        enum pg_state st = db->conns[i].state;

        if (live_only ? st != PG_DOWN
                      : (st == PG_STARTING || st == PG_CONNECTING))
            n++;
    }
    return n;
}

/*
 * A connection attempt failed: hold further attempts off (the delay
 * doubles while they keep failing) and say so once per outage.  Lookups
 * are dealt with by pool_dispatch().
 */
static void
conn_note_failure(struct pg_conn *pc, const char *why)
{
    struct userdb_pgsql *db = pc->db;
    uint64_t now = uv_now(db->loop);
    char msg[512], retry[24];

    pg_message(why, msg, sizeof(msg)); /* before PQfinish() frees it */
    conn_reset(pc);
    /* Several connections failing together are one failure. */
    if (db->down_until <= now) {
        db->down_until = now + db->backoff_ms;
        snprintf(retry, sizeof(retry), "%u", db->backoff_ms);
        db->backoff_ms = db->backoff_ms * 2 > USERDB_PGSQL_BACKOFF_MAX_MS
                             ? USERDB_PGSQL_BACKOFF_MAX_MS
                             : db->backoff_ms * 2;
        log_event(db->down_logged ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
                  "userdb_down", "store", "pgsql", "error", msg,
                  "retry_ms", retry, NULL);
        db->down_logged = 1;
    }
}

/* An established connection broke: its lookup is sent once more on
 * another (a server restart between lookups), else answered 454. */
static void
conn_note_lost(struct pg_conn *pc, const char *why)
{
    struct userdb_pgsql_query *q = pc->q;
    char msg[512];

    pg_message(why, msg, sizeof(msg));
    log_event(LOG_LEVEL_WARN, "userdb_disconnected", "store", "pgsql",
              "error", msg, NULL);
    conn_reset(pc);
    if (q != NULL) {
        if (!q->retried)
            q->retried = 1; /* queued again: q->pc is NULL now */
        else
            query_fail_later(q, PST_ETEMP);
    }
}

static void
conn_start_work(uv_work_t *w)
{
    struct pg_conn *pc = w->data;
    /* Later keywords override earlier ones, and "dbname" expands to the
     * whole conninfo: the application name is a default, the encoding
     * is not (SASL user names are UTF-8, RFC 4616 §2). */
    static const char *const keys[] = {
        "fallback_application_name", "dbname", "client_encoding", NULL,
    };
    const char *values[] = {"posternd", pc->db->conninfo, "UTF8", NULL};

    /* May resolve a host name: hence the thread pool. */
    pc->pg = PQconnectStartParams(keys, values, 1);
}

static void
conn_start_done(uv_work_t *w, int status)
{
    struct pg_conn *pc = w->data;
    struct userdb_pgsql *db = pc->db;

    pc->state = PG_CONNECTING;
    if (pool_stopping(db)) {
        conn_reset(pc);
        pool_unhold(db);
        return;
    }
    db->open--;
    if (status < 0 || pc->pg == NULL)
        conn_note_failure(pc, "cannot start a connection");
    else if (PQstatus(pc->pg) == CONNECTION_BAD)
        conn_note_failure(pc, PQerrorMessage(pc->pg));
    else if (uv_now(db->loop) >= pc->started + db->timeout_ms)
        conn_note_failure(pc, "timed out starting the connection");
    else {
        pc->deadline = pc->started + db->timeout_ms;
        /* libpq: after PQconnectStart(), poll as if PQconnectPoll() had
         * returned PGRES_POLLING_WRITING. */
        if (conn_watch(pc, UV_WRITABLE) < 0)
            conn_note_failure(pc, "cannot watch the connection");
    }
    pool_dispatch(db);
    pool_arm(db);
}

/* Start connecting pc.  Returns: 0, -1 (the thread pool refused). */
static int
conn_start(struct pg_conn *pc)
{
    struct userdb_pgsql *db = pc->db;

    pc->state = PG_STARTING;
    pc->started = uv_now(db->loop);
    pc->deadline = 0; /* a job cannot be stopped: checked when done */
    pc->work.data = pc;
    if (uv_queue_work(db->loop, &pc->work, conn_start_work,
                      conn_start_done) < 0) {
        pc->state = PG_DOWN;
        return -1;
    }
    db->open++;
    return 0;
}

/* The connection is up. */
static void
conn_ready(struct pg_conn *pc)
{
    struct userdb_pgsql *db = pc->db;

    if (PQsetnonblocking(pc->pg, 1) != 0) {
        conn_note_failure(pc, PQerrorMessage(pc->pg));
        return;
    }
    PQsetNoticeProcessor(pc->pg, pg_on_notice, NULL);
    pc->state = PG_IDLE;
    pc->deadline = uv_now(db->loop) + USERDB_PGSQL_IDLE_MS;
    db->down_until = 0;
    db->backoff_ms = USERDB_PGSQL_BACKOFF_MIN_MS;
    log_event(db->down_logged || !db->ever_up ? LOG_LEVEL_INFO
                                              : LOG_LEVEL_DEBUG,
              "userdb_up", "store", "pgsql", NULL);
    db->down_logged = 0;
    db->ever_up = 1;
    /* Idle, it is watched for the server closing it. */
    if (conn_watch(pc, UV_READABLE) < 0)
        conn_note_lost(pc, "cannot watch the connection");
}

static void
conn_connect_step(struct pg_conn *pc)
{
    switch (PQconnectPoll(pc->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(pc, UV_READABLE) < 0)
            conn_note_failure(pc, "cannot watch the connection");
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(pc, UV_WRITABLE) < 0)
            conn_note_failure(pc, "cannot watch the connection");
        return;
    case PGRES_POLLING_OK:
        conn_ready(pc);
        return;
    case PGRES_POLLING_FAILED:
    case PGRES_POLLING_ACTIVE: /* unused by libpq */
        conn_note_failure(pc, PQerrorMessage(pc->pg));
        return;
    }
}

/* Send q on the idle connection pc.  Returns: 0, -1 (pc is broken). */
static int
conn_send(struct pg_conn *pc, struct userdb_pgsql_query *q)
{
    struct userdb_pgsql *db = pc->db;
    const char *params[1] = {q->name};
    int r;

    /* The name is a parameter, never part of the SQL text. */
    if (!PQsendQueryParams(pc->pg, db->query, 1, NULL, params, NULL, NULL,
                           0))
        return -1;
    pc->state = PG_BUSY;
    pc->q = q;
    q->pc = pc;
    pc->deadline = uv_now(db->loop) +
                   (uint64_t)db->timeout_ms * USERDB_PGSQL_STUCK_FACTOR;
    r = PQflush(pc->pg);
    if (r < 0)
        return -1;
    pc->flushing = r == 1;
    return conn_watch(pc, UV_READABLE | (pc->flushing ? UV_WRITABLE : 0));
}

/*
 * The row's extra fields into req's record: the second column is
 * allow_from whatever its name, later ones go by their names (a column
 * posternd does not know is ignored).  Returns: 0, PST_ENOMEM.
 */
static int
query_fields(const PGresult *res, struct userdb_req *req)
{
    for (int c = 1; c < PQnfields(res); c++) {
        const char *col = c == 1 ? "allow_from" : PQfname(res, c);
        int f = col != NULL ? userdb_field_find(col, strlen(col)) : -1;
        size_t len = (size_t)PQgetlength(res, 0, c);

        /* NULL or empty: the user has none. */
        if (f < 0 || PQgetisnull(res, 0, c) || len == 0)
            continue;
        if (userdb_req_set_field(req, (size_t)f, PQgetvalue(res, 0, c), len,
                                 1) < 0)
            return PST_ENOMEM;
    }
    return 0;
}

/*
 * What the query returned for name: 0 (found: req's record filled),
 * PST_ENOENT, PST_ETEMP.  Problems with a row make an unknown user (the
 * reason is logged, DESIGN.md: fails like a wrong password); problems
 * with the query or the server make 454.
 */
static int
query_result(const char *name, const PGresult *res, struct userdb_req *req)
{
    const char *reason = NULL;
    struct pst_cred *cred = NULL;
    char msg[512];
    int rc;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_message(res != NULL ? PQresultErrorMessage(res) : "no result",
                   msg, sizeof(msg));
        log_event(LOG_LEVEL_WARN, "userdb_query_failed", "store", "pgsql",
                  "user", name, "error", msg, NULL);
        return PST_ETEMP;
    }
    if (PQnfields(res) < 2) {
        log_event(LOG_LEVEL_WARN, "userdb_query_failed", "store", "pgsql",
                  "user", name, "error",
                  "the query must return password, allow_from", NULL);
        return PST_ETEMP;
    }
    if (PQntuples(res) == 0)
        return PST_ENOENT;
    if (PQntuples(res) > 1)
        reason = "more than one row for the user";
    else if (PQgetisnull(res, 0, 0))
        reason = "password is NULL";
    for (int c = 0; reason == NULL && c < PQnfields(res); c++) {
        const char *col = PQfname(res, c);

        /* The columns read: password, allow_from, and known fields. */
        if ((c < 2 || (col != NULL &&
                       userdb_field_find(col, strlen(col)) >= 0)) &&
            (size_t)PQgetlength(res, 0, c) > USERDB_PGSQL_FIELD_MAX)
            reason = "value too long";
    }
    if (reason == NULL) {
        rc = pst_cred_parse_reason(PQgetvalue(res, 0, 0),
                                   (size_t)PQgetlength(res, 0, 0), &cred,
                                   &reason);
        if (rc == PST_ENOMEM)
            return PST_ETEMP;
        if (rc < 0 && reason == NULL)
            reason = pst_strerror(rc);
    }
    if (reason != NULL) {
        log_event(LOG_LEVEL_WARN, "userdb_bad_row", "store", "pgsql", "user",
                  name, "reason", reason, NULL);
        return PST_ENOENT;
    }
    userdb_req_set_cred(req, cred, cred);
    return query_fields(res, req) < 0 ? PST_ETEMP : 0;
}

/* Every result of pc's query is in. */
static void
conn_query_done(struct pg_conn *pc)
{
    struct userdb_pgsql *db = pc->db;
    struct userdb_pgsql_query *q = pc->q;
    PGresult *res = pc->res;
    int rc;

    if (PQstatus(pc->pg) != CONNECTION_OK) {
        conn_note_lost(pc, PQerrorMessage(pc->pg));
        pool_dispatch(db);
        pool_arm(db);
        return;
    }
    pc->res = NULL;
    pc->state = PG_IDLE;
    pc->deadline = uv_now(db->loop) + USERDB_PGSQL_IDLE_MS;
    if (q == NULL) {
        /* The lookup was cancelled or timed out meanwhile. */
        pg_res_free(res);
        pool_dispatch(db);
        pool_arm(db);
        return;
    }
    query_take(q);
    rc = query_result(q->name, res, q->req);
    pg_res_free(res);
    /* The connection is free again before the answer goes. */
    pool_dispatch(db);
    pool_arm(db);
    query_deliver(q, rc);
}

/*
 * Socket events of a busy connection: PQflush() / PQconsumeInput() until
 * PQgetResult() has given every result (libpq, "Asynchronous Command
 * Processing" and "Non-Blocking Mode").
 * Returns: 1 (the query ended: the store has moved on and may have
 * answered), 0 (the caller dispatches).
 */
static int
conn_busy_io(struct pg_conn *pc, int events)
{
    if ((events & UV_READABLE) && !PQconsumeInput(pc->pg)) {
        conn_note_lost(pc, PQerrorMessage(pc->pg));
        return 0;
    }
    if (pc->flushing) {
        int r = PQflush(pc->pg);

        if (r < 0) {
            conn_note_lost(pc, PQerrorMessage(pc->pg));
            return 0;
        }
        if (r == 0) {
            pc->flushing = 0;
            if (conn_watch(pc, UV_READABLE) < 0) {
                conn_note_lost(pc, "cannot watch the connection");
                return 0;
            }
        }
    }
    while (!pc->flushing && !PQisBusy(pc->pg)) {
        PGresult *r = PQgetResult(pc->pg);

        if (r == NULL) {
            conn_query_done(pc);
            return 1;
        }
        if (pc->res == NULL)
            pc->res = r;
        else
            pg_res_free(r);
    }
    return 0;
}

static void
conn_on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_poll *p = (struct pg_poll *)h;
    struct pg_conn *pc = p->pc;
    struct userdb_pgsql *db = p->db;

    if (pc == NULL || pool_stopping(db))
        return;
    if (status < 0) {
        if (pc->state == PG_CONNECTING)
            conn_note_failure(pc, uv_strerror(status));
        else
            conn_note_lost(pc, uv_strerror(status));
    } else {
        switch (pc->state) {
        case PG_CONNECTING:
            conn_connect_step(pc);
            break;
        case PG_IDLE:
            /* Nothing is due between queries but notices and the
             * server's goodbye: read them, and notice the end. */
            if (!PQconsumeInput(pc->pg) ||
                PQstatus(pc->pg) != CONNECTION_OK) {
                conn_note_lost(pc, PQerrorMessage(pc->pg));
                break;
            }
            for (PGnotify *n; (n = PQnotifies(pc->pg)) != NULL;)
                PQfreemem(n);
            return;
        case PG_BUSY:
            if (conn_busy_io(pc, events))
                return; /* dispatched, and may have answered */
            break;
        case PG_DOWN:
        case PG_STARTING:
            return;
        }
    }
    pool_dispatch(db);
    pool_arm(db);
}

/* --- The pool -------------------------------------------------------------
 */

/*
 * Give queued lookups to idle connections, start connections for the
 * rest, and fail them at once while the database is known to be down
 * (no connection up or being made, and the reconnection delay running).
 * Never calls a callback.
 */
static void
pool_dispatch(struct userdb_pgsql *db)
{
    uint64_t now;
    unsigned waiting = 0, starting;
    struct userdb_pgsql_query *q;

    if (db->loop == NULL || pool_stopping(db))
        return;
    now = uv_now(db->loop);
    while ((q = query_first_queued(db)) != NULL) {
        struct pg_conn *pc = NULL;

        for (size_t i = 0; i < USERDB_PGSQL_CONNS && pc == NULL; i++)
            if (db->conns[i].state == PG_IDLE)
                pc = &db->conns[i];
        if (pc == NULL)
            break;
        if (conn_send(pc, q) < 0) {
            /* Broken under us: q waits for another connection. */
            if (pc->q == q) {
                pc->q = NULL;
                q->pc = NULL;
            }
            conn_note_lost(pc, PQerrorMessage(pc->pg));
        }
    }
    for (q = db->head; q != NULL; q = q->next)
        waiting += q->pc == NULL && q->rc == 0;
    if (waiting == 0)
        return;
    starting = pool_count(db, 0);
    for (size_t i = 0; i < USERDB_PGSQL_CONNS && starting < waiting &&
                       now >= db->down_until; i++) {
        struct pg_conn *pc = &db->conns[i];

        if (pc->state != PG_DOWN)
            continue;
        if (conn_start(pc) < 0)
            conn_note_failure(pc, "cannot queue the connection");
        else
            starting++;
    }
    if (pool_count(db, 1) == 0 && now < db->down_until) {
        /* RFC 4954 §6: 454 4.7.0 now rather than after the timeout. */
        for (q = db->head; q != NULL; q = q->next)
            if (q->pc == NULL && q->rc == 0)
                query_fail_later(q, PST_ETEMP);
    }
}

static void
pool_on_timer(uv_timer_t *t)
{
    struct userdb_pgsql *db = t->data;
    uint64_t now = uv_now(db->loop);
    struct userdb_pgsql_query *q;

    for (size_t i = 0; i < USERDB_PGSQL_CONNS; i++) {
        struct pg_conn *pc = &db->conns[i];

        if (pc->deadline == 0 || pc->deadline > now)
            continue;
        if (pc->state == PG_CONNECTING) {
            conn_note_failure(pc, "timed out connecting");
        } else if (pc->state == PG_BUSY) {
            conn_note_lost(pc, "a query ran far past userdb_timeout");
        } else if (pc->state == PG_IDLE) {
            /* Unused for long: give the server its backend back (a
             * store replaced by a reload ends up with none). */
            log_event(LOG_LEVEL_DEBUG, "userdb_idle_close", "store",
                      "pgsql", NULL);
            conn_reset(pc);
        } else {
            pc->deadline = 0;
        }
    }
    pool_dispatch(db);
    /* After a failed connection, try again without waiting for a
     * lookup, so that the store is up when the next one comes. */
    if (db->down_until != 0 && now >= db->down_until &&
        pool_count(db, 1) == 0) {
        if (conn_start(&db->conns[0]) < 0)
            conn_note_failure(&db->conns[0], "cannot queue the connection");
    }
    pool_arm(db);
    /* Answers last, one at a time: a callback may change the list. */
    for (;;) {
        int rc;

        for (q = db->head; q != NULL; q = q->next)
            if (q->rc != 0 || q->deadline <= now)
                break;
        if (q == NULL)
            break;
        rc = q->rc != 0 ? q->rc : PST_ETEMP;
        if (q->rc == 0)
            log_event(LOG_LEVEL_WARN, "userdb_timeout", "store", "pgsql",
                      "user", q->name, NULL);
        query_take(q);
        query_deliver(q, rc);
        if (pool_stopping(db))
            return;
        pool_arm(db);
    }
}

/* Set the timer for the next thing due. */
static void
pool_arm(struct userdb_pgsql *db)
{
    uint64_t now, next = UINT64_MAX;

    if (db->loop == NULL || pool_stopping(db))
        return;
    now = uv_now(db->loop);
    if (db->nready > 0)
        next = now;
    /* Deadlines grow in list order (one timeout, a monotonic clock). */
    if (db->head != NULL && db->head->deadline < next)
        next = db->head->deadline;
    for (size_t i = 0; i < USERDB_PGSQL_CONNS; i++)
        if (db->conns[i].deadline != 0 && db->conns[i].deadline < next)
            next = db->conns[i].deadline;
    if (db->down_until != 0 && pool_count(db, 1) == 0 &&
        db->down_until < next)
        next = db->down_until;
    if (next == UINT64_MAX) {
        uv_timer_stop(&db->timer);
        return;
    }
    uv_timer_start(&db->timer, pool_on_timer, next > now ? next - now : 0,
                   0);
}

/* --- API ------------------------------------------------------------------
 */

int
userdb_pgsql_open(const char *conninfo, const char *query,
                  unsigned timeout_ms, struct userdb_pgsql **out, char *err,
                  size_t errlen)
{
    struct userdb_pgsql *db;
    PQconninfoOption *opts;
    char *perr = NULL, msg[512];

    *out = NULL;
    opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        if (perr == NULL) {
            snprintf(err, errlen, "out of memory");
            return PST_ENOMEM;
        }
        pg_message(perr, msg, sizeof(msg));
        PQfreemem(perr);
        snprintf(err, errlen, "bad connection string: %s", msg);
        return PST_ESYNTAX;
    }
    PQconninfoFree(opts);
    db = calloc(1, sizeof(*db));
    if (db == NULL || (db->conninfo = strdup(conninfo)) == NULL ||
        (db->query = strdup(query != NULL ? query : USERDB_PGSQL_QUERY)) ==
            NULL) {
        if (db != NULL && db->conninfo != NULL)
            OPENSSL_clear_free(db->conninfo, strlen(db->conninfo));
        free(db);
        snprintf(err, errlen, "out of memory");
        return PST_ENOMEM;
    }
    db->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    db->backoff_ms = USERDB_PGSQL_BACKOFF_MIN_MS;
    for (size_t i = 0; i < USERDB_PGSQL_CONNS; i++)
        db->conns[i].db = db;
    *out = db;
    return 0;
}

int
userdb_pgsql_check(struct userdb_pgsql *db, char *msg, size_t msglen)
{
    /* As conn_start_work(), with a connect_timeout the conninfo may
     * override (it comes first). */
    static const char *const keys[] = {
        "connect_timeout", "fallback_application_name", "dbname",
        "client_encoding", NULL,
    };
    const char *values[] = {
        USERDB_PGSQL_CHECK_TIMEOUT, "posternd", db->conninfo, "UTF8", NULL,
    };
    PGconn *pg;
    PGresult *res;
    char m[512];
    int rc = 0;

    pg = PQconnectdbParams(keys, values, 1);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        pg_message(pg != NULL ? PQerrorMessage(pg) : "out of memory", m,
                   sizeof(m));
        snprintf(msg, msglen, "userdb pgsql: cannot connect: %s", m);
        PQfinish(pg);
        return PST_ETEMP;
    }
    PQsetNoticeProcessor(pg, pg_on_notice, NULL);
    /* Prepared, not run: the query is checked without its cost. */
    res = PQprepare(pg, "", db->query, 1, NULL);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQdescribePrepared(pg, "");
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_message(res != NULL ? PQresultErrorMessage(res)
                               : PQerrorMessage(pg),
                   m, sizeof(m));
        snprintf(msg, msglen, "userdb pgsql: the server refuses the "
                 "query: %s", m);
        rc = PST_ESYNTAX;
    } else if (PQnparams(res) != 1) {
        snprintf(msg, msglen, "userdb pgsql: the query takes %d "
                 "parameters; want one, $1, the user name",
                 PQnparams(res));
        rc = PST_ESYNTAX;
    } else if (PQnfields(res) < 2) {
        snprintf(msg, msglen, "userdb pgsql: the query returns %d "
                 "column%s; want password, allow_from", PQnfields(res),
                 PQnfields(res) == 1 ? "" : "s");
        rc = PST_ESYNTAX;
    } else {
        snprintf(msg, msglen, "userdb pgsql: database reachable, query OK");
    }
    PQclear(res);
    PQfinish(pg);
    return rc;
}

int
userdb_pgsql_lookup(struct userdb_pgsql *db, uv_loop_t *loop,
                    const char *name, struct userdb_req *req,
                    struct userdb_pgsql_query **out)
{
    struct userdb_pgsql_query *q;
    size_t len = strlen(name);

    *out = NULL;
    if (db->freed || (db->loop != NULL && db->loop != loop))
        return PST_EINVAL;
    if (db->loop == NULL) {
        if (uv_timer_init(loop, &db->timer) < 0)
            return PST_ENOMEM;
        db->timer.data = db;
        db->loop = loop;
        db->open++;
    }
    if (pool_stopping(db))
        return PST_EINVAL;
    q = calloc(1, sizeof(*q) + len + 1);
    if (q == NULL)
        return PST_ENOMEM;
    memcpy(q->name, name, len + 1);
    q->db = db;
    q->req = req;
    q->deadline = uv_now(loop) + db->timeout_ms;
    q->prev = db->tail;
    if (db->tail != NULL)
        db->tail->next = q;
    else
        db->head = q;
    db->tail = q;
    /* A name the database could not even take is nobody's. */
    if (len == 0 || len > USERDB_PGSQL_NAME_MAX || !pg_utf8_ok(name))
        query_fail_later(q, PST_ENOENT);
    pool_dispatch(db);
    pool_arm(db);
    *out = q;
    return 0;
}

void
userdb_pgsql_cancel(struct userdb_pgsql_query *q)
{
    if (q == NULL)
        return;
    query_take(q);
    free(q);
}

void
userdb_pgsql_free(struct userdb_pgsql *db)
{
    if (db == NULL)
        return;
    /* Lookups hold the store: there should be none.  Drop any left
     * without an answer rather than leave them pointing at it. */
    while (db->head != NULL)
        userdb_pgsql_cancel(db->head);
    db->freed = 1;
    for (size_t i = 0; i < USERDB_PGSQL_CONNS; i++)
        if (db->conns[i].state != PG_STARTING)
            conn_reset(&db->conns[i]); /* a job ends in its callback */
    if (db->loop != NULL) {
        if (uv_is_closing((uv_handle_t *)&db->timer))
            db->open--; /* closed by uv_walk() at exit */
        else
            uv_close((uv_handle_t *)&db->timer, pool_on_timer_closed);
    }
    if (db->open == 0)
        pool_destroy(db);
}

/* --- The backend (userdb_backend.h) -------------------------------------- */

static int
userdb_pgsql_be_open(const struct config *cfg, void **store, char *err,
                     size_t err_size)
{
    char why[CONFIG_ERR_MAX];

    if (userdb_pgsql_open(cfg->userdb.arg, cfg->userdb_query,
                          cfg->userdb_timeout * 1000u,
                          (struct userdb_pgsql **)store, why,
                          sizeof(why)) < 0) {
        snprintf(err, err_size, "%s: userdb pgsql: %s", cfg->file, why);
        return -1;
    }
    return 0;
}

static void
userdb_pgsql_be_free(void *store)
{
    userdb_pgsql_free(store);
}

static int
userdb_pgsql_be_lookup(void *store, uv_loop_t *loop, const char *name,
                       struct userdb_req *req)
{
    return userdb_pgsql_lookup(store, loop, name, req,
                               (struct userdb_pgsql_query **)&req->pending);
}

static void
userdb_pgsql_be_cancel(struct userdb_req *req)
{
    userdb_pgsql_cancel(req->pending);
}

static int
userdb_pgsql_be_check(void *store, char *msg, size_t n)
{
    return userdb_pgsql_check(store, msg, n);
}

const struct userdb_backend userdb_pgsql_backend = {
    .name = "pgsql",
    .per_loop = 1,
    .open = userdb_pgsql_be_open,
    .free = userdb_pgsql_be_free,
    .lookup = userdb_pgsql_be_lookup,
    .cancel = userdb_pgsql_be_cancel,
    .check = userdb_pgsql_be_check,
    .count = NULL,
};
