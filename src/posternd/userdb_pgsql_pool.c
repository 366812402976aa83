/*
 * posternd - the PostgreSQL user store's connections (userdb_pgsql.h):
 * a pool of non-blocking libpq connections driven by the event loop,
 * and the one timer that serves the store (lookup deadlines, connection
 * deadlines, the reconnection delay, answers that must not be given
 * from inside a lookup call).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/error.h>

#include "log.h"
#include "userdb_pgsql_pool.h"

static void pgsql_pool_on_timer(uv_timer_t *t);
static void pgsql_pool_unhold(struct userdb_pgsql *db);
static void pgconn_on_poll(uv_poll_t *h, int status, int events);

/* --- The pool's life ------------------------------------------------------
 */

/* Free a result after wiping its values: they hold password verifiers
 * (libpq's own input buffer is out of our reach). */
static void
pgsql_res_free(PGresult *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++)
            OPENSSL_cleanse(PQgetvalue(r, i, j),
                            (size_t)PQgetlength(r, i, j));
    PQclear(r);
}

/* The store is going away: by userdb_pgsql_free(), or because uv_walk()
 * closed its timer at exit.  Nothing new may start on the loop. */
int
pgsql_pool_stopping(struct userdb_pgsql *db)
{
    return db->freed || uv_is_closing((uv_handle_t *)&db->timer);
}

void
pgsql_pool_destroy(struct userdb_pgsql *db)
{
    OPENSSL_clear_free(db->conninfo, strlen(db->conninfo));
    free(db->query);
    free(db);
}

/* One handle or job fewer; the last one after userdb_pgsql_free()
 * frees the store. */
static void
pgsql_pool_unhold(struct userdb_pgsql *db)
{
    db->open--;
    if (db->freed && db->open == 0)
        pgsql_pool_destroy(db);
}

void
pgsql_pool_on_timer_closed(uv_handle_t *h)
{
    pgsql_pool_unhold(h->data);
}

/* --- Connections ----------------------------------------------------------
 */

static void
pgconn_poll_closed(uv_handle_t *h)
{
    struct pg_poll *p = (struct pg_poll *)h;
    struct userdb_pgsql *db = p->db;

    free(p);
    pgsql_pool_unhold(db);
}

/* Stop watching pc's socket.  The poll stops before libpq closes the
 * socket (libuv must not watch a closed descriptor). */
static void
pgconn_unwatch(struct pg_conn *pc)
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
    uv_close((uv_handle_t *)&p->h, pgconn_poll_closed);
}

/*
 * Watch pc's socket for events.  libpq may replace its socket while it
 * connects (another host, SSL refused: PQsocket() changes), possibly by
 * one with the same number that epoll has never seen: the poll starts
 * again every time, which registers the descriptor anew.
 * Returns: 0, -1 (no socket, or libuv refuses).
 */
static int
pgconn_watch(struct pg_conn *pc, int events)
{
    struct userdb_pgsql *db = pc->db;
    int fd = PQsocket(pc->pg);
    struct pg_poll *p = pc->poll;

    if (fd < 0 || pgsql_pool_stopping(db))
        return -1;
    if (p != NULL && pc->poll_fd != fd) {
        pgconn_unwatch(pc);
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
    return uv_poll_start(&p->h, events, pgconn_on_poll) < 0 ? -1 : 0;
}

/* Close pc's connection (its lookup, if any, is the caller's). */
void
pgconn_reset(struct pg_conn *pc)
{
    pgconn_unwatch(pc);
    pgsql_res_free(pc->res);
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
pgsql_pool_count(const struct userdb_pgsql *db, int live_only)
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
 * are dealt with by pgsql_pool_dispatch().
 */
static void
pgconn_note_failure(struct pg_conn *pc, const char *why)
{
    struct userdb_pgsql *db = pc->db;
    uint64_t now = uv_now(db->loop);
    char msg[512], retry[24];

    pgsql_message(why, msg, sizeof(msg)); /* before PQfinish() frees it */
    pgconn_reset(pc);
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
pgconn_note_lost(struct pg_conn *pc, const char *why)
{
    struct userdb_pgsql_query *q = pc->q;
    char msg[512];

    pgsql_message(why, msg, sizeof(msg));
    log_event(LOG_LEVEL_WARN, "userdb_disconnected", "store", "pgsql",
              "error", msg, NULL);
    pgconn_reset(pc);
    if (q != NULL) {
        if (!q->retried)
            q->retried = 1; /* queued again: q->pc is NULL now */
        else
            pgsql_query_fail_later(q, PST_ETEMP);
    }
}

static void
pgconn_start_work(uv_work_t *w)
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
pgconn_start_done(uv_work_t *w, int status)
{
    struct pg_conn *pc = w->data;
    struct userdb_pgsql *db = pc->db;

    pc->state = PG_CONNECTING;
    if (pgsql_pool_stopping(db)) {
        pgconn_reset(pc);
        pgsql_pool_unhold(db);
        return;
    }
    db->open--;
    if (status < 0 || pc->pg == NULL)
        pgconn_note_failure(pc, "cannot start a connection");
    else if (PQstatus(pc->pg) == CONNECTION_BAD)
        pgconn_note_failure(pc, PQerrorMessage(pc->pg));
    else if (uv_now(db->loop) >= pc->started + db->timeout_ms)
        pgconn_note_failure(pc, "timed out starting the connection");
    else {
        pc->deadline = pc->started + db->timeout_ms;
        /* libpq: after PQconnectStart(), poll as if PQconnectPoll() had
         * returned PGRES_POLLING_WRITING. */
        if (pgconn_watch(pc, UV_WRITABLE) < 0)
            pgconn_note_failure(pc, "cannot watch the connection");
    }
    pgsql_pool_dispatch(db);
    pgsql_pool_arm(db);
}

/* Start connecting pc.  Returns: 0, -1 (the thread pool refused). */
static int
pgconn_start(struct pg_conn *pc)
{
    struct userdb_pgsql *db = pc->db;

    pc->state = PG_STARTING;
    pc->started = uv_now(db->loop);
    pc->deadline = 0; /* a job cannot be stopped: checked when done */
    pc->work.data = pc;
    if (uv_queue_work(db->loop, &pc->work, pgconn_start_work,
                      pgconn_start_done) < 0) {
        pc->state = PG_DOWN;
        return -1;
    }
    db->open++;
    return 0;
}

/* The connection is up. */
static void
pgconn_ready(struct pg_conn *pc)
{
    struct userdb_pgsql *db = pc->db;

    if (PQsetnonblocking(pc->pg, 1) != 0) {
        pgconn_note_failure(pc, PQerrorMessage(pc->pg));
        return;
    }
    PQsetNoticeProcessor(pc->pg, pgsql_on_notice, NULL);
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
    if (pgconn_watch(pc, UV_READABLE) < 0)
        pgconn_note_lost(pc, "cannot watch the connection");
}

static void
pgconn_connect_step(struct pg_conn *pc)
{
    switch (PQconnectPoll(pc->pg)) {
    case PGRES_POLLING_READING:
        if (pgconn_watch(pc, UV_READABLE) < 0)
            pgconn_note_failure(pc, "cannot watch the connection");
        return;
    case PGRES_POLLING_WRITING:
        if (pgconn_watch(pc, UV_WRITABLE) < 0)
            pgconn_note_failure(pc, "cannot watch the connection");
        return;
    case PGRES_POLLING_OK:
        pgconn_ready(pc);
        return;
    case PGRES_POLLING_FAILED:
    case PGRES_POLLING_ACTIVE: /* unused by libpq */
        pgconn_note_failure(pc, PQerrorMessage(pc->pg));
        return;
    }
}

/* Send q on the idle connection pc.  Returns: 0, -1 (pc is broken). */
static int
pgconn_send(struct pg_conn *pc, struct userdb_pgsql_query *q)
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
    return pgconn_watch(pc, UV_READABLE | (pc->flushing ? UV_WRITABLE : 0));
}

/* Every result of pc's query is in. */
static void
pgconn_query_done(struct pg_conn *pc)
{
    struct userdb_pgsql *db = pc->db;
    struct userdb_pgsql_query *q = pc->q;
    PGresult *res = pc->res;
    int rc;

    if (PQstatus(pc->pg) != CONNECTION_OK) {
        pgconn_note_lost(pc, PQerrorMessage(pc->pg));
        pgsql_pool_dispatch(db);
        pgsql_pool_arm(db);
        return;
    }
    pc->res = NULL;
    pc->state = PG_IDLE;
    pc->deadline = uv_now(db->loop) + USERDB_PGSQL_IDLE_MS;
    if (q == NULL) {
        /* The lookup was cancelled or timed out meanwhile. */
        pgsql_res_free(res);
        pgsql_pool_dispatch(db);
        pgsql_pool_arm(db);
        return;
    }
    pgsql_query_take(q);
    rc = pgsql_query_result(q->name, res, q->req);
    pgsql_res_free(res);
    /* The connection is free again before the answer goes. */
    pgsql_pool_dispatch(db);
    pgsql_pool_arm(db);
    pgsql_query_deliver(q, rc);
}

/*
 * Socket events of a busy connection: PQflush() / PQconsumeInput() until
 * PQgetResult() has given every result (libpq, "Asynchronous Command
 * Processing" and "Non-Blocking Mode").
 * Returns: 1 (the query ended: the store has moved on and may have
 * answered), 0 (the caller dispatches).
 */
static int
pgconn_busy_io(struct pg_conn *pc, int events)
{
    if ((events & UV_READABLE) && !PQconsumeInput(pc->pg)) {
        pgconn_note_lost(pc, PQerrorMessage(pc->pg));
        return 0;
    }
    if (pc->flushing) {
        int r = PQflush(pc->pg);

        if (r < 0) {
            pgconn_note_lost(pc, PQerrorMessage(pc->pg));
            return 0;
        }
        if (r == 0) {
            pc->flushing = 0;
            if (pgconn_watch(pc, UV_READABLE) < 0) {
                pgconn_note_lost(pc, "cannot watch the connection");
                return 0;
            }
        }
    }
    while (!pc->flushing && !PQisBusy(pc->pg)) {
        PGresult *r = PQgetResult(pc->pg);

        if (r == NULL) {
            pgconn_query_done(pc);
            return 1;
        }
        if (pc->res == NULL)
            pc->res = r;
        else
            pgsql_res_free(r);
    }
    return 0;
}

static void
pgconn_on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_poll *p = (struct pg_poll *)h;
    struct pg_conn *pc = p->pc;
    struct userdb_pgsql *db = p->db;

    if (pc == NULL || pgsql_pool_stopping(db))
        return;
    if (status < 0) {
        if (pc->state == PG_CONNECTING)
            pgconn_note_failure(pc, uv_strerror(status));
        else
            pgconn_note_lost(pc, uv_strerror(status));
    } else {
        switch (pc->state) {
        case PG_CONNECTING:
            pgconn_connect_step(pc);
            break;
        case PG_IDLE:
            /* Nothing is due between queries but notices and the
             * server's goodbye: read them, and notice the end. */
            if (!PQconsumeInput(pc->pg) ||
                PQstatus(pc->pg) != CONNECTION_OK) {
                pgconn_note_lost(pc, PQerrorMessage(pc->pg));
                break;
            }
            for (PGnotify *n; (n = PQnotifies(pc->pg)) != NULL;)
                PQfreemem(n);
            return;
        case PG_BUSY:
            if (pgconn_busy_io(pc, events))
                return; /* dispatched, and may have answered */
            break;
        case PG_DOWN:
        case PG_STARTING:
            return;
        }
    }
    pgsql_pool_dispatch(db);
    pgsql_pool_arm(db);
}

/* --- The pool -------------------------------------------------------------
 */

/*
 * Give queued lookups to idle connections, start connections for the
 * rest, and fail them at once while the database is known to be down
 * (no connection up or being made, and the reconnection delay running).
 * Never calls a callback.
 */
void
pgsql_pool_dispatch(struct userdb_pgsql *db)
{
    uint64_t now;
    unsigned waiting = 0, starting;
    struct userdb_pgsql_query *q;

    if (db->loop == NULL || pgsql_pool_stopping(db))
        return;
    now = uv_now(db->loop);
    while ((q = pgsql_query_first_queued(db)) != NULL) {
        struct pg_conn *pc = NULL;

        for (size_t i = 0; i < USERDB_PGSQL_CONNS && pc == NULL; i++)
            if (db->conns[i].state == PG_IDLE)
                pc = &db->conns[i];
        if (pc == NULL)
            break;
        if (pgconn_send(pc, q) < 0) {
            /* Broken under us: q waits for another connection. */
            if (pc->q == q) {
                pc->q = NULL;
                q->pc = NULL;
            }
            pgconn_note_lost(pc, PQerrorMessage(pc->pg));
        }
    }
    for (q = db->head; q != NULL; q = q->next)
        waiting += q->pc == NULL && q->rc == 0;
    if (waiting == 0)
        return;
    starting = pgsql_pool_count(db, 0);
    for (size_t i = 0; i < USERDB_PGSQL_CONNS && starting < waiting &&
                       now >= db->down_until; i++) {
        struct pg_conn *pc = &db->conns[i];

        if (pc->state != PG_DOWN)
            continue;
        if (pgconn_start(pc) < 0)
            pgconn_note_failure(pc, "cannot queue the connection");
        else
            starting++;
    }
    if (pgsql_pool_count(db, 1) == 0 && now < db->down_until) {
        /* RFC 4954 §6: 454 4.7.0 now rather than after the timeout. */
        for (q = db->head; q != NULL; q = q->next)
            if (q->pc == NULL && q->rc == 0)
                pgsql_query_fail_later(q, PST_ETEMP);
    }
}

static void
pgsql_pool_on_timer(uv_timer_t *t)
{
    struct userdb_pgsql *db = t->data;
    uint64_t now = uv_now(db->loop);
    struct userdb_pgsql_query *q;

    for (size_t i = 0; i < USERDB_PGSQL_CONNS; i++) {
        struct pg_conn *pc = &db->conns[i];

        if (pc->deadline == 0 || pc->deadline > now)
            continue;
        if (pc->state == PG_CONNECTING) {
            pgconn_note_failure(pc, "timed out connecting");
        } else if (pc->state == PG_BUSY) {
            pgconn_note_lost(pc, "a query ran far past userdb_timeout");
        } else if (pc->state == PG_IDLE) {
            /* Unused for long: give the server its backend back (a
             * store replaced by a reload ends up with none). */
            log_event(LOG_LEVEL_DEBUG, "userdb_idle_close", "store",
                      "pgsql", NULL);
            pgconn_reset(pc);
        } else {
            pc->deadline = 0;
        }
    }
    pgsql_pool_dispatch(db);
    /* After a failed connection, try again without waiting for a
     * lookup, so that the store is up when the next one comes. */
    if (db->down_until != 0 && now >= db->down_until &&
        pgsql_pool_count(db, 1) == 0) {
        if (pgconn_start(&db->conns[0]) < 0)
            pgconn_note_failure(&db->conns[0], "cannot queue the connection");
    }
    pgsql_pool_arm(db);
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
        pgsql_query_take(q);
        pgsql_query_deliver(q, rc);
        if (pgsql_pool_stopping(db))
            return;
        pgsql_pool_arm(db);
    }
}

/* Set the timer for the next thing due. */
void
pgsql_pool_arm(struct userdb_pgsql *db)
{
    uint64_t now, next = UINT64_MAX;

    if (db->loop == NULL || pgsql_pool_stopping(db))
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
    if (db->down_until != 0 && pgsql_pool_count(db, 1) == 0 &&
        db->down_until < next)
        next = db->down_until;
    if (next == UINT64_MAX) {
        uv_timer_stop(&db->timer);
        return;
    }
    uv_timer_start(&db->timer, pgsql_pool_on_timer, next > now ? next - now : 0,
                   0);
}

