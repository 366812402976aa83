/*
 * posternd - the PostgreSQL user store ("userdb = pgsql:CONNINFO").
 *
 * A small pool of libpq connections driven without blocking by the event
 * loop: PQconnectStartParams() runs on the libuv thread pool (it may
 * resolve a host name), then PQconnectPoll(), PQsendQueryParams(),
 * PQconsumeInput(), PQisBusy() and PQgetResult() run from uv_poll_t
 * callbacks on PQsocket().  Connections are made when a lookup needs one
 * (none at start-up), so an unreachable database never stops posternd:
 * lookups fail with PST_ETEMP (454 4.7.0, RFC 4954 §6) until it answers.
 * A failed connection attempt holds new ones off for a delay that doubles
 * from USERDB_PGSQL_BACKOFF_MIN_MS to USERDB_PGSQL_BACKOFF_MAX_MS; while
 * no connection is up or being made, lookups fail at once, and when the
 * delay is over one connection is tried without waiting for a lookup.
 *
 * The query takes the user name as $1 (a parameter, never pasted into
 * the SQL) and returns the password and allow_from columns first; later
 * columns fill the user record's fields of the same names (userdb.h:
 * relay, and Dovecot's nologin, reason, noauthenticate, allow_nets; a
 * NULL is no value, and a flag is set by any other, as in Dovecot):
 *
 *   CREATE TABLE users (
 *       name       text PRIMARY KEY,
 *       password   text NOT NULL,  -- "{SCHEME}value ..." as in passwd-file
 *       allow_from text            -- "addr@example.test,@example.test"
 *   );
 *   SELECT password, allow_from, relay, nologin, reason, noauthenticate,
 *          allow_nets FROM users WHERE name = $1
 *
 * Everything here runs on the loop thread of the first lookup.
 */
#ifndef POSTERND_USERDB_PGSQL_H
#define POSTERND_USERDB_PGSQL_H

#include <stddef.h>

#include <uv.h>

#include <postern/cred.h>

/* The lookup unless userdb_query says otherwise. */
#define USERDB_PGSQL_QUERY \
    "SELECT password, allow_from FROM users WHERE name = $1"

#define USERDB_PGSQL_CONNS          4     /* connections in the pool */
#define USERDB_PGSQL_BACKOFF_MIN_MS 250   /* after a failed connection */
#define USERDB_PGSQL_BACKOFF_MAX_MS 5000  /* the doubling stops here */
#define USERDB_PGSQL_IDLE_MS        300000 /* an unused connection closes */
#define USERDB_PGSQL_STUCK_FACTOR   6     /* a query still running after
                                             this many timeouts: the
                                             connection is dropped */
#define USERDB_PGSQL_NAME_MAX       1024  /* bytes of a user name looked
                                             up; longer: unknown */
#define USERDB_PGSQL_FIELD_MAX      65536 /* bytes of a password or
                                             allow_from value */
#define USERDB_PGSQL_CHECK_TIMEOUT  "5"   /* connect_timeout of -t, s */

struct userdb_pgsql;       /* the store: conninfo, query and pool */
struct userdb_pgsql_query; /* one lookup in flight */

/*
 * Make a store for conninfo ([in], a libpq connection string or URI,
 * copied) and query ([in], copied; NULL: USERDB_PGSQL_QUERY), whose
 * lookups give up after timeout_ms.  The connection string is parsed
 * (PQconninfoParse()) but nothing is connected.
 * *out ([out] owned) is freed with userdb_pgsql_free().
 * Returns: 0, PST_ESYNTAX (bad connection string: err says why),
 * PST_ENOMEM.
 */
int userdb_pgsql_open(const char *conninfo, const char *query,
                      unsigned timeout_ms, struct userdb_pgsql **out,
                      char *err, size_t errlen);

/*
 * For posternd -t: connect (blocking, at most USERDB_PGSQL_CHECK_TIMEOUT
 * seconds unless the conninfo sets connect_timeout) and prepare the
 * query without running it.  msg ([out], msglen bytes) says what was
 * found.  Never call it on a store that serves lookups.
 * Returns: 0 (reachable, the query takes $1 and returns at least two
 * columns), PST_ETEMP (cannot connect), PST_ESYNTAX (the server refuses
 * the query, or its shape is wrong).
 */
int userdb_pgsql_check(struct userdb_pgsql *db, char *msg, size_t msglen);

/*
 * Look up name ([in], copied) on loop for req (userdb_backend.h): later,
 * from the loop, req's record is filled and userdb_req_answer() called
 * once (0, PST_ENOENT: no such user, or a row that cannot serve, the
 * reason logged; PST_ETEMP: the database is down, slow or refuses the
 * query), unless userdb_pgsql_cancel() comes first.  A store serves one
 * loop: the first lookup binds it.
 * *out ([out] borrowed until the answer or userdb_pgsql_cancel()).
 * Returns: 0, PST_EINVAL (another loop), PST_ENOMEM.
 */
struct userdb_req;
int userdb_pgsql_lookup(struct userdb_pgsql *db, uv_loop_t *loop,
                        const char *name, struct userdb_req *req,
                        struct userdb_pgsql_query **out);

/* Give up a lookup whose callback has not run: it will not run.  A query
 * already sent finishes on its connection and its result is dropped. */
void userdb_pgsql_cancel(struct userdb_pgsql_query *q);

/*
 * Close the connections and free db once its handles are closed (at
 * once if it never served a lookup).  Every lookup must have ended or
 * been cancelled.  Handles already closed by someone else (uv_walk() at
 * exit, followed by uv_run()) are taken as closed.  NULL is a no-op.
 */
void userdb_pgsql_free(struct userdb_pgsql *db);

#endif
