/*
 * posternd - Prometheus metrics (DESIGN.md "Operations": metrics =
 * ADDRESS, text exposition format 0.0.4 at GET /metrics).
 *
 * Where the numbers live:
 * - each worker loop counts its own events in its struct metrics_loop
 *   (connections, TLS, AUTH, throttle, messages, delivery latency):
 *   only that loop's thread writes them, with a relaxed atomic load and
 *   store (no lock, no locked instruction on the hot path); a scrape
 *   reads every loop's with relaxed atomic loads and adds them up;
 * - the relay's attempts are counted on the control loop, where the
 *   queue manager runs, in a process-wide table that only the control
 *   loop touches (metrics_relay_attempt()); queue sizes, token refreshes
 *   and pauses are read from the manager's own state at scrape time
 *   (metrics_relay.c);
 * - the HTTP endpoint (metrics_http.c, libmicrohttpd) runs on the
 *   control loop too, driven by libuv: no thread of its own.
 *
 * Every family is written with its HELP and TYPE lines, and every label
 * value known in advance (listeners, TLS versions, mechanisms, results,
 * reasons, relays) is written even at 0, so that rate() has a series
 * from the start.
 */
#ifndef POSTERND_METRICS_H
#define POSTERND_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <uv.h>

#include "config.h"

struct relay_mgr;

#define METRICS_MECHS_MAX 16      /* mechanisms libpostern implements */
#define METRICS_LATENCY_BUCKETS 14

/* Why a message was refused (posternd_messages_refused_total{reason}). */
#define METRICS_REFUSAL_MAP(X)                                               \
    X(SIZE, "size")               /* over max_message_size */                \
    X(LINE_LENGTH, "line_length") /* a line over 998 octets */               \
    X(BARE_LF, "bare_lf")         /* a bare CR or LF (RFC 5321 §2.3.8) */    \
    X(STORAGE, "storage")         /* spooling or the commit failed (451) */  \
    X(OTHER, "other")             /* another refusal of the session */

enum metrics_refusal {
#define METRICS_REFUSAL_ENUM_(name, text) METRICS_REFUSED_##name,
    METRICS_REFUSAL_MAP(METRICS_REFUSAL_ENUM_)
#undef METRICS_REFUSAL_ENUM_
    METRICS_REFUSALS
};

/* What one relay attempt of a message came to
 * (posternd_relay_attempts_total{relay,result}). */
#define METRICS_RELAY_MAP(X)                                                 \
    X(SENT, "sent")               /* every recipient accepted */             \
    X(DEFERRED, "deferred")       /* some wait for a retry (4xx, no
                                     connection) */                          \
    X(FAILED, "failed")           /* refused for good (5xx), none waits */ \
    X(UNUSABLE, "unusable")       /* a connection that failed before a
                                     message (connect, TLS, AUTH): the
                                     relay waits for its retry */

enum metrics_relay_result {
#define METRICS_RELAY_ENUM_(name, text) METRICS_RELAY_##name,
    METRICS_RELAY_MAP(METRICS_RELAY_ENUM_)
#undef METRICS_RELAY_ENUM_
    METRICS_RELAY_RESULTS
};

/* One worker loop's counters: written by that loop's thread only.  A
 * cache line of its own, so that loops do not share lines. */
struct metrics_loop {
    _Alignas(64) atomic_uint_fast64_t conns[CONFIG_LISTENERS_MAX];
    atomic_int_fast64_t open;
    atomic_uint_fast64_t tls[5];     /* by enum tls_version; [0]: other */
    atomic_uint_fast64_t tls_failed;
    atomic_uint_fast64_t auth[METRICS_MECHS_MAX + 1][2]; /* [mech][ok];
                                        the last row: unknown */
    atomic_uint_fast64_t throttle_delays;
    atomic_uint_fast64_t lockouts;
    atomic_uint_fast64_t accepted;
    atomic_uint_fast64_t accepted_bytes;
    atomic_uint_fast64_t refused[METRICS_REFUSALS];
    /* Delivery latency: from the final dot to the durable commit. */
    atomic_uint_fast64_t latency[METRICS_LATENCY_BUCKETS]; /* not
                                        cumulative: one bucket each */
    atomic_uint_fast64_t latency_count;
    atomic_uint_fast64_t latency_sum_us;
};

struct metrics;

/*
 * The counters of a posternd with nloops worker loops.
 * Returns: 0 with *out ([out] owned: metrics_free()), PST_ENOMEM.
 */
int metrics_new(unsigned nloops, struct metrics **out);

/* Free m (after every loop has stopped); NULL is a no-op. */
void metrics_free(struct metrics *m);

/* Loop i's counters (i < nloops), or NULL when m is NULL. */
struct metrics_loop *metrics_loop(struct metrics *m, unsigned i);

/*
 * Write every family in the text exposition format to out: the loops'
 * counters summed, listener names and relays from cfg ([in]), queue
 * sizes from relay ([in], may be NULL).  Control loop only.
 * Returns: 0, PST_ELIMIT, PST_ENOMEM (out's ceiling).
 */
int metrics_render(struct metrics *m, const struct config *cfg,
                   const struct relay_mgr *relay, struct pst_buf *out);

/* What the queue manager knows of one relay, at a scrape. */
struct metrics_relay_state {
    size_t   queued;              /* messages with recipients to try */
    int      paused;              /* the OAuth grant is dead */
    uint64_t refreshes_ok;        /* OAuth token refreshes */
    uint64_t refreshes_failed;
};

/*
 * The state of each of cfg's relays ([in]; st has cfg->n_relays
 * entries), read from the queue manager relay ([in], NULL: none, all
 * zero) on the control loop, where it runs (metrics_relay.c).
 */
void metrics_relay_states(const struct relay_mgr *relay,
                          const struct config *cfg,
                          struct metrics_relay_state *st);

/* --- Counting, on a worker loop (ml may be NULL: no-op) ------------- */

/* A connection accepted on listener index lidx (now open). */
void metrics_conn_opened(struct metrics_loop *ml, size_t lidx);

/* A connection closed (freed). */
void metrics_conn_closed(struct metrics_loop *ml);

/* A TLS handshake finished with version ([in]: "TLSv1.3"). */
void metrics_tls(struct metrics_loop *ml, const char *version);

/* A TLS handshake failed. */
void metrics_tls_failed(struct metrics_loop *ml);

/* An AUTH exchange ended: mech ([in] the name, NULL if none), ok. */
void metrics_auth(struct metrics_loop *ml, const char *mech, int ok);

/* The throttle held the reply to a failed AUTH back (its penalty; the
 * next attempt's wait for what is left of it is not counted again). */
void metrics_throttle_delay(struct metrics_loop *ml);

/* The throttle locked an address out (in a session, or at connect). */
void metrics_lockout(struct metrics_loop *ml);

/* A message was accepted (250 after the commit): its octets, and the
 * nanoseconds from the final dot to the commit being durable. */
void metrics_accepted(struct metrics_loop *ml, uint64_t bytes,
                      uint64_t latency_ns);

/* A message was refused (DATA_ABORT, a failed spool or commit). */
void metrics_refused(struct metrics_loop *ml, enum metrics_refusal why);

/* The refusal a DATA_ABORT event's reason ([in], may be NULL) and
 * PST_E* error stand for. */
enum metrics_refusal metrics_refusal_of(const char *reason, int error);

/* --- The relay's counters, on the control loop only --------------------
 *
 * The queue manager calls these (relay.c); relay ([in]) is the
 * [relay NAME]'s name.  Out of memory, a count is lost (never an error
 * for the caller).  Token refreshes and pauses need no call: the scrape
 * reads relay_token.c's own counts (metrics_relay_states()).
 */

/* One attempt to relay one message ended so. */
void metrics_relay_attempt(const char *relay,
                           enum metrics_relay_result result);

/* What a finished relay job ([in], struct relay_job of relay_conn.h)
 * came to, pending of its recipients still waiting (metrics_relay.c). */
struct relay_job;
enum metrics_relay_result metrics_relay_result_of(const struct relay_job *j,
                                                  size_t pending);

/* Forget the relay counters (at exit, and between unit tests). */
void metrics_relay_reset(void);

/* --- The HTTP endpoint (metrics_http.c) --------------------------------- */

struct metrics_http;

/* What a scrape writes: out ([in,out]) gets the exposition. */
typedef int (*metrics_render_fn)(void *ctx, struct pst_buf *out);

/*
 * Serve GET /metrics on addr ([in] borrowed for the call) from loop (the
 * control loop: libmicrohttpd runs without threads of its own, driven
 * by a uv_poll_t on its epoll descriptor and a timer).  Each scrape
 * calls render(ctx, out) on that loop.
 * Returns: 0 with *out ([out] owned: metrics_http_stop()), PST_EIO
 * (cannot listen: err, err_size bytes, says why), PST_ENOMEM.
 */
int metrics_http_start(uv_loop_t *loop, const struct config_address *addr,
                       metrics_render_fn render, void *ctx,
                       struct metrics_http **out, char *err,
                       size_t err_size);

/* Stop serving and free h (its handles close on the loop); NULL is a
 * no-op. */
void metrics_http_stop(struct metrics_http *h);

#endif
