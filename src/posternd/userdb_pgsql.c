/*
 * posternd - the PostgreSQL user store: a pool of non-blocking libpq
 * connections driven by the event loop (see userdb_pgsql.h).
 *
 * This file: the lookups and their answers, the API and the backend
 * table; userdb_pgsql_pool.c drives the connections.
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

#include <openssl/crypto.h>

#include <postern/error.h>

#include "log.h"
#include "userdb_pgsql_pool.h"

/* --- Helpers --------------------------------------------------------------
 */

/* A libpq message (multi-line, ending in a newline) on one line. */
void
pgsql_message(const char *m, char *buf, size_t n)
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

/* Notices (a NOTICE from the query, the FATAL an idle connection gets
 * before the server closes it) go to the log, not to stderr. */
void
pgsql_on_notice(void *arg, const char *message)
{
    char m[512];

    (void)arg;
    pgsql_message(message, m, sizeof(m));
    log_event(LOG_LEVEL_DEBUG, "userdb_notice", "message", m, NULL);
}

/* Whether name is UTF-8 that PostgreSQL takes as a text parameter (with
 * client_encoding UTF8): no overlong forms, surrogates or values past
 * U+10FFFF (RFC 3629 §4).  Anything else cannot be a user name. */
static int
pgsql_utf8_ok(const char *name)
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

/* --- The lookup list ------------------------------------------------------
 */

/* Take q out of the list and off its connection (whose result, if any is
 * still to come, is then dropped). */
void
pgsql_query_take(struct userdb_pgsql_query *q)
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
void
pgsql_query_deliver(struct userdb_pgsql_query *q, int rc)
{
    struct userdb_req *req = q->req;

    free(q);
    userdb_req_answer(req, rc);
}

/* Answer q with rc on the next timer turn. */
void
pgsql_query_fail_later(struct userdb_pgsql_query *q, int rc)
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
struct userdb_pgsql_query *
pgsql_query_first_queued(struct userdb_pgsql *db)
{
    for (struct userdb_pgsql_query *q = db->head; q != NULL; q = q->next)
        if (q->pc == NULL && q->rc == 0)
            return q;
    return NULL;
}

/*
 * The row's extra fields into req's record: the second column is
 * allow_from whatever its name, later ones go by their names (a column
 * posternd does not know is ignored).  Returns: 0, PST_ENOMEM.
 */
static int
pgsql_query_fields(const PGresult *res, struct userdb_req *req)
{
    for (int c = 1; c < PQnfields(res); c++) {
        const char *col = c == 1 ? "allow_from" : PQfname(res, c);
        int f = col != NULL ? userdb_field_find(col, strlen(col)) : -1;
        size_t len = (size_t)PQgetlength(res, 0, c);

        /* NULL: the user has none (Dovecot's passdb-sql skips a NULL
         * field too).  Empty: none, but for the fields that count by
         * their presence (nologin, noauthenticate, allow_nets), which
         * Dovecot sets from any value that is not NULL. */
        if (f < 0 || PQgetisnull(res, 0, c) ||
            (len == 0 &&
             !(userdb_field_flags((size_t)f) & USERDB_FIELD_PRESENCE)))
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
int
pgsql_query_result(const char *name, const PGresult *res,
                   struct userdb_req *req)
{
    const char *reason = NULL;
    struct pst_cred *cred = NULL;
    char msg[512];
    int rc;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgsql_message(res != NULL ? PQresultErrorMessage(res) : "no result",
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
    return pgsql_query_fields(res, req) < 0 ? PST_ETEMP : 0;
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
        pgsql_message(perr, msg, sizeof(msg));
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
    /* As pgconn_start_work(), with a connect_timeout the conninfo may
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
        pgsql_message(pg != NULL ? PQerrorMessage(pg) : "out of memory", m,
                   sizeof(m));
        snprintf(msg, msglen, "userdb pgsql: cannot connect: %s", m);
        PQfinish(pg);
        return PST_ETEMP;
    }
    PQsetNoticeProcessor(pg, pgsql_on_notice, NULL);
    /* Prepared, not run: the query is checked without its cost. */
    res = PQprepare(pg, "", db->query, 1, NULL);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQdescribePrepared(pg, "");
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pgsql_message(res != NULL ? PQresultErrorMessage(res)
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
    if (pgsql_pool_stopping(db))
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
    if (len == 0 || len > USERDB_PGSQL_NAME_MAX || !pgsql_utf8_ok(name))
        pgsql_query_fail_later(q, PST_ENOENT);
    pgsql_pool_dispatch(db);
    pgsql_pool_arm(db);
    *out = q;
    return 0;
}

void
userdb_pgsql_cancel(struct userdb_pgsql_query *q)
{
    if (q == NULL)
        return;
    pgsql_query_take(q);
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
            pgconn_reset(&db->conns[i]); /* a job ends in its callback */
    if (db->loop != NULL) {
        if (uv_is_closing((uv_handle_t *)&db->timer))
            db->open--; /* closed by uv_walk() at exit */
        else
            uv_close((uv_handle_t *)&db->timer, pgsql_pool_on_timer_closed);
    }
    if (db->open == 0)
        pgsql_pool_destroy(db);
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
