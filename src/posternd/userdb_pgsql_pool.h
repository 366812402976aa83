/*
 * posternd - the PostgreSQL user store's insides, shared by its two
 * files: userdb_pgsql.c (the lookups, their answers, the API and the
 * backend table) and userdb_pgsql_pool.c (the libpq connections driven
 * by the event loop, and the pool's timer).  Nothing else includes it.
 */
#ifndef POSTERND_USERDB_PGSQL_POOL_H
#define POSTERND_USERDB_PGSQL_POOL_H

#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

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

/* --- userdb_pgsql.c ------------------------------------------------------ */

/* A libpq message (multi-line, ending in a newline) on one line in buf. */
void pgsql_message(const char *m, char *buf, size_t n);

/* libpq's notice processor: notices go to the log, not to stderr. */
void pgsql_on_notice(void *arg, const char *message);

/* Take q out of the list and off its connection (whose result, if any
 * is still to come, is then dropped). */
void pgsql_query_take(struct userdb_pgsql_query *q);

/* Answer a lookup already taken out; callers touch nothing after. */
void pgsql_query_deliver(struct userdb_pgsql_query *q, int rc);

/* Answer q with rc on the next timer turn. */
void pgsql_query_fail_later(struct userdb_pgsql_query *q, int rc);

/* The first lookup waiting for a connection, or NULL. */
struct userdb_pgsql_query *pgsql_query_first_queued(struct userdb_pgsql *db);

/* What the query returned for name, into req's record: 0, PST_ENOENT,
 * PST_ETEMP. */
int pgsql_query_result(const char *name, const PGresult *res,
                       struct userdb_req *req);

/* --- userdb_pgsql_pool.c ------------------------------------------------- */

/* Whether the store is going away (nothing new may start on the loop). */
int pgsql_pool_stopping(struct userdb_pgsql *db);

/* Free the store itself (its handles all closed). */
void pgsql_pool_destroy(struct userdb_pgsql *db);

/* The close callback of the pool's timer. */
void pgsql_pool_on_timer_closed(uv_handle_t *h);

/* Give queued lookups to idle connections, start connections, fail
 * lookups at once while the database is known to be down.  Never calls
 * a callback. */
void pgsql_pool_dispatch(struct userdb_pgsql *db);

/* Set the pool's timer for the next thing due. */
void pgsql_pool_arm(struct userdb_pgsql *db);

/* Close pc's connection (its lookup, if any, is the caller's). */
void pgconn_reset(struct pg_conn *pc);

#endif
