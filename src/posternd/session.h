/*
 * posternd - one connection and its SMTP session: the driver between
 * libuv, TLS (src/common/tls.h), the sans-IO session of libpostern, the
 * user store, the throttle and delivery.
 *
 * session.c: the lifecycle (conn_enter_state()), writes, reads and the
 * pump, the timeouts, the end.  session_tls.c: TLS, its pump callbacks
 * and what it gives SASL (channel binding, the client certificate's
 * user).  session_events.c:
 * what the session's events ask for (AUTH lookups, password checks and
 * the throttle, MAIL FROM's allow_from, RCPT, DATA).  session_jobs.c:
 * the thread-pool jobs (password checks, SCRAM keys, the message data
 * on its way to the spool, the commit and delivery) and giving them up.
 * Slow work runs on the thread pool and lookups are asynchronous: the
 * session is parked meanwhile and resumed from the completion callback.
 */
#ifndef POSTERND_SESSION_H
#define POSTERND_SESSION_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include <postern/buf.h>
#include <postern/smtp.h>

#include "deliver_maildir.h"
#include "listener.h"
#include "tls.h"
#include "queue_file.h"
#include "userdb.h"

#define CONN_BACKLOG_MAX (64 * 1024) /* plaintext waiting for the session */
/* Plaintext one read can yield beyond its own size: a TLS record whose
 * first part came in the read before (16 KiB of data plus overhead). */
#define CONN_TLS_SLACK   (17 * 1024)
/*
 * Output the client has not taken yet (libuv's write queue: what the
 * kernel's socket buffer would not hold).  Above CONN_OUT_HIGH the
 * connection is neither read nor pumped, so a client that sends without
 * reading is slowed by TCP instead of growing our memory; both resume
 * once it is down to CONN_OUT_LOW.  With the session's own 16 KiB of
 * unsent replies and the backlog, a connection holds at most about
 * CONN_OUT_HIGH + 16 KiB + CONN_BACKLOG_MAX of buffers, whatever it sends.
 */
#define CONN_OUT_HIGH    (64 * 1024)
#define CONN_OUT_LOW     (16 * 1024)
/*
 * What the pump does for one connection in one turn of the loop: events
 * acted on and batches of output taken (a batch is up to 16 KiB of
 * replies: ~100 EHLO or ~800 NOOP).  Then it yields, and carries on
 * after the loop has polled for I/O again (the worker's ready list), so
 * a client pipelining commands cannot keep a loop from its other
 * connections.  DATA lines do not count: the backlog bounds them.
 */
#define CONN_TURN_STEPS  32
/* After the goodbye (221, 421) and our FIN: how long the client's input
 * is read and dropped while we wait for its own close (ms). */
#define CONN_LINGER_MS   2000
/* Message data is written to the spool on the thread pool in pieces of
 * CONN_DATA_CHUNK; while one is being written the next is gathered, and
 * the session stops acting (so reading stops) once CONN_DATA_MAX wait. */
#define CONN_DATA_CHUNK  (64 * 1024)
#define CONN_DATA_MAX    (2 * CONN_DATA_CHUNK)

/*
 * The lifecycle of a connection, one state at a time, changed only by
 * conn_enter_state(), which logs each change at debug level (as
 * lib/smtp/server.c's server_enter_state() does for the session):
 *
 *   ACCEPTED      the socket is accepted; nothing queued yet
 *   TLS_HANDSHAKE the TLS handshake runs (implicit TLS, or after
 *                 STARTTLS); the session waits for it
 *   RUNNING       the session acts on input and answers
 *   WORKING       parked on the thread pool (a password check, SCRAM
 *                 keys, the commit of a message): c->job
 *   LOOKUP        parked on the user store (AUTH, MAIL FROM's
 *                 allow_from)
 *   HELD          held by the throttle: no input acted on and no output
 *                 sent until the delay ends (conn->hold_why says which)
 *   FLUSHING      the session has said goodbye (221, 421): its last
 *                 replies go out, then the connection closes
 *   CLOSING       the handles are closing; freed when they are
 *
 * A job on the thread pool never holds a connection up: a running job
 * cannot be stopped (a hung fsync may never end), so the connection
 * gives it up instead (struct job) when timeout_final passes, the
 * client goes, or posternd stops.
 *
 * Whether the socket is read (flow control) is another matter:
 * conn->reading.
 */
#define CONN_STATE_MAP(X)                                                    \
    X(ACCEPTED, "accepted")                                                  \
    X(TLS_HANDSHAKE, "tls_handshake")                                        \
    X(RUNNING, "running")                                                    \
    X(WORKING, "working")                                                    \
    X(LOOKUP, "lookup")                                                      \
    X(HELD, "held")                                                          \
    X(FLUSHING, "flushing")                                                  \
    X(CLOSING, "closing")

enum conn_state {
#define CONN_STATE_ENUM_(name, text) CONN_##name,
    CONN_STATE_MAP(CONN_STATE_ENUM_)
#undef CONN_STATE_ENUM_
};

/* What a job on the thread pool does. */
enum work_kind {
    WORK_VERIFY = 1,         /* pst_cred_verify() */
    WORK_DERIVE,             /* pst_sasl_server_cred_prepare(): SCRAM
                                keys of a {PLAIN} user (PBKDF2) */
    WORK_COMMIT,             /* maildir_deliver() */
    WORK_WRITE,              /* maildir_append() of message data */
};

/*
 * A job on the thread pool.  It owns (or holds a reference to) all it
 * reads and writes, so that its connection can give it up at any time
 * and go on, or go: the job then finishes on its own, and its
 * completion frees it (a commit given up undoes itself: the maildir
 * gate).  Only the loop thread touches the fields but the inputs and
 * outputs, which only the pool thread touches while it runs.
 */
struct job {
    uv_work_t work;
    enum work_kind kind;
    struct conn *c;          /* NULL once given up */
    struct snapshot *sc;     /* a reference: the settings it uses */
    size_t lidx;             /* listener, for the session settings */
    int result;
    const char *why;         /* given up: why, for the log */
    _Atomic int gate;        /* COMMIT: MAILDIR_GATE_* */
    /* VERIFY, DERIVE: */
    const struct pst_cred *cred; /* the lookup's (c->auth_req, or req) */
    struct userdb_req *req;  /* given up: the lookup, owned */
    char *user;
    uint8_t *pw;             /* VERIFY: secret */
    size_t pwlen;
    const struct pst_sasl_mech *mech; /* DERIVE */
    struct pst_cred *derived;         /* DERIVE: the result */
    /* COMMIT, WRITE: */
    struct maildir_msg *msg; /* COMMIT: owned; WRITE: c->msg, owned once
                                given up */
    char **paths;            /* COMMIT: owned */
    size_t npaths;
    struct queue_env *qenv;  /* COMMIT: the relayed recipients' envelope
                                (owned, queue_env_free()), or NULL */
    struct server *srv;      /* COMMIT: for relay_mgr_post() once it
                                stands, given up or not */
    uint64_t size;           /* COMMIT: octets received */
    struct pst_buf data;     /* WRITE, COMMIT: data to append first */
};

/* Why a connection is HELD by the throttle (auth_throttle). */
enum conn_hold {
    HOLD_NONE = 0,
    HOLD_LOOKUP,             /* AUTH_LOOKUP answered after the delay */
    HOLD_REPLY,              /* the 535 goes out after the delay */
};

/* add_missing_headers: where the message's header section is. */
enum conn_hdr {
    CONN_HDR_OFF = 0,        /* not held back (no profile, or done) */
    CONN_HDR_HOLDING,        /* held back in conn->hdr until its end */
    CONN_HDR_ADDED,          /* written with Date or Message-ID added */
};

/* Why a connection gets 421 instead of a greeting. */
enum conn_refuse {
    REFUSE_NONE = 0,
    REFUSE_BUSY,             /* max_connections, max_connections_per_ip */
    REFUSE_LOCKOUT,          /* the throttle locked the address out */
};

struct conn {
    uv_tcp_t tcp;            /* first, so a handle is its conn */
    uv_timer_t timer;
    uv_timer_t hold;         /* throttle delays */
    struct worker *w;
    struct server *srv;
    struct snapshot *sc;
    size_t lidx;
    enum conn_state state;
    struct pst_smtp_server *s;
    struct tls *tls;
    int implicit;            /* an implicit-TLS listener */
    int reading;             /* uv_read_start() in force */
    int out_blocked;         /* unsent output went over CONN_OUT_HIGH and
                                is not down to CONN_OUT_LOW yet */
    int shut;                /* FLUSHING: uv_shutdown() issued (our FIN
                                after the last write) */
    int shut_done;           /* ... and done: lingering */
    int peer_eof;            /* the client closed its side */
    /* The pump's share of the loop (CONN_TURN_STEPS): */
    uint64_t turn;           /* the worker's turn counted in turn_steps */
    unsigned turn_steps;
    int ready;               /* on the worker's ready list */
    struct conn *ready_next;
    char sid[20];
    char peer[INET6_ADDRSTRLEN + 2];  /* for the log (Received: from
                                         peer_sa, conn_on_data_begin()) */
    int peer_counted;        /* in srv->peers */
    struct sockaddr_storage peer_sa;
    struct proxy_read *proxy; /* reading the PROXY header (proxy.h) */
    struct pst_buf backlog;
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
    const struct pst_sasl_mech *auth_mech; /* of the AUTH_LOOKUP */
    char *auth_user;         /* its user name (HOLD_LOOKUP: the name to
                                look up after the delay) */
    struct pst_cred *auth_derived; /* WORK_DERIVE's credentials (owned,
                                until the AUTH_RESULT event) */
    enum conn_hold hold_why; /* HELD: what waits for the delay */
    int auth_external;       /* the lookup is EXTERNAL's: check the pin */
    uint64_t auth_tag;       /* throttle_tag() of the PLAIN/LOGIN guess */
    char *cert_fp;           /* the client certificate's SHA-256 (owned),
                                NULL if none (session_tls.c):
                                conn_cert_fp() */
    /* The MAIL FROM check against allow_from (asynchronous too): */
    struct userdb_req *mail_req;
    char *mail_from;         /* the address being checked */
    /* Routing (DESIGN.md "Routing, relay and the queue"): */
    char *env_from;          /* MAIL FROM of the transaction (owned) */
    char *user_relay;        /* the authenticated user's relay= (owned),
                                or NULL */
    struct userdb_req *rcpt_req; /* does the local recipient exist? */
    char *rcpt_addr;         /* the recipient being looked up */
    char **relayed;          /* recipients for the relay (owned) */
    size_t nrelayed;
    char *relay_name;        /* their relay (the sender's) */
    size_t rp_len;           /* the Return-Path line's octets */
    int rcpt_local_part;     /* looking up its local part alone now */
    /* The message: */
    struct maildir_msg *msg; /* NULL: none, or spooling failed */
    char *msg_error;         /* why spooling failed (owned), or NULL */
    char **paths;
    size_t npaths;
    /* Its data on the way to the spool (written on the thread pool,
     * CONN_DATA_CHUNK at a time, one write at a time): */
    struct pst_buf dbuf;     /* gathered, not yet handed to a write */
    struct job *wjob;        /* the write in flight, or NULL */
    uint64_t data_end_size;  /* its size */
    uint64_t dot_ns;         /* uv_hrtime() of DATA_END: the latency
                                metrics count from it */
    int data_end;            /* DATA_END came while a write was in
                                flight: commit after it (WORKING) */
    int stop_after_job;      /* stopping: 421 once the answer to the job
                                (below) is out */
    /* The compatibility profile (session_profile.c): */
    const struct config_profile *profile; /* NULL: none applies */
    unsigned profile_used;   /* PROFILE_USED_* the driver saw */
    enum conn_hdr hdr_holding; /* add_missing_headers */
    struct pst_buf hdr;      /* the header section held back */
    /* The thread-pool job the session is parked on (WORKING): */
    struct job *job;
    struct conn *prev, *next;
};

/* --- For the workers (listener.c) ----------------------------------------
 */

/*
 * A new connection on worker w's listener lidx: its handles, its place
 * in the worker's list and the counts, a session id.  *total gets the
 * number of connections of all loops, this one included.  The caller
 * accepts the socket into c->tcp and calls conn_accepted(), counts the
 * peer (c->peer_counted), then calls conn_start(), or conn_close() if
 * the accept failed.
 * Returns: the connection, or NULL (out of memory; nothing to undo).
 */
struct conn *conn_new(struct worker *w, size_t lidx, size_t *total);

/* The socket is accepted: note the peer's address (c->peer_sa, and the
 * text forms for the log and Received). */
void conn_accepted(struct conn *c);

/* The client is at sa (the peer, or the client a PROXY header names):
 * c->peer_sa and the text forms for the log and Received. */
void conn_set_peer(struct conn *c, const struct sockaddr_storage *sa);

/* Start the session: the greeting (or TLS first), or 421 instead when
 * refuse says why (RFC 5321 §3.1). */
void conn_start(struct conn *c, enum conn_refuse refuse);

/* Shutting down: an idle session ends now (421); with force, every
 * session does (the grace period is over). */
void conn_stop(struct conn *c, int force);

/* --- Within the session (session*.c) -----------------------------------
 */

/* The only way to change c->state: logs "old -> new" at debug level. */
void conn_enter_state(struct conn *c, enum conn_state to);

/*
 * Close the connection (idempotent).  why ([in] static string), when
 * not NULL, is logged as the "disconnect" reason unless the connection
 * already said goodbye.
 */
void conn_close(struct conn *c, const char *why);

/* The client certificate's SHA-256 in hex, "" if none. */
static inline const char *
conn_cert_fp(const struct conn *c)
{
    return c->cert_fp != NULL ? c->cert_fp : "";
}

/* Whether the connection is closing (CLOSING). */
int conn_closed(const struct conn *c);

/* Whether the session is over: FLUSHING or closing.  A late answer
 * (a lookup, a job) is then for nobody. */
int conn_ending(const struct conn *c);

/* Act on input and events, send output, until neither moves, the
 * output is backed up (CONN_OUT_HIGH), or the connection's share of this
 * turn of the loop is used up (CONN_TURN_STEPS: then it carries on in
 * the next turn, conn_run_ready()). */
void conn_pump(struct conn *c);

/* Pump the connections of w that yielded their turn (the worker's
 * uv_check callback, after the loop has polled for I/O). */
void conn_run_ready(struct worker *w);

/* Carry on after an answer to the session (rc of
 * pst_smtp_server_answer()): refused means a bug on our side, and the
 * connection goes. */
void conn_resume(struct conn *c, int rc);

/* Start TLS on the connection (implicit TLS at accept, or STARTTLS;
 * session_tls.c).  Returns: 0, -1. */
int conn_tls_begin(struct conn *c);

/* Queue len bytes ([in] borrowed) for the client: the session's replies
 * in clear, or TLS records.  Returns 0, -1. */
int conn_write_raw(struct conn *c, const uint8_t *p, size_t len);

/* Plaintext from the client ([in] borrowed: from the socket, or
 * decrypted) joins the backlog the pump feeds the session.  Returns 0,
 * -1 (too much pipelined input: the connection goes). */
int conn_take_plain(struct conn *c, const uint8_t *p, size_t n);

/* Send what the session has for the client.  Returns: 1 if something
 * was taken, 0 if nothing, -1 on failure. */
int conn_flush(struct conn *c);

/* The throttle as it is now (NULL: auth_throttle = no). */
struct throttle *conn_throttle(const struct conn *c);

/* Handle one event of the session (session_events.c).  Returns: 0, or
 * -1 when the connection must go. */
int conn_on_event(struct conn *c, const struct pst_smtp_event *ev);

/* Answer the session's event t with verdict v, cred and reply as in
 * struct pst_smtp_answer (all [in] borrowed for the call).  Returns
 * what pst_smtp_server_answer() does. */
int conn_answer(struct conn *c, enum pst_smtp_event_type t,
                enum pst_smtp_verdict v, const struct pst_cred *cred,
                const char *reply);

/* --- The thread-pool jobs (session_jobs.c) -------------------------------
 */

/* A job for c of kind, with its settings ([out] owned: conn_queue_job()
 * or conn_job_free()); NULL when out of memory. */
struct job *conn_job_new(struct conn *c, enum work_kind kind);

/* Free j and what it owns (wiping the password it holds). */
void conn_job_free(struct job *j);

/*
 * Park the session on job j ([in] owned: freed on failure): no input is
 * acted on until its completion answers it, or timeout_final passes
 * (conn_job_timeout()).  Returns 0, -1.
 */
int conn_queue_job(struct conn *c, struct job *j);

/* Forget the message of the transaction (its spool file goes). */
void conn_reset_message(struct conn *c);

/*
 * Message data for c->msg (not NULL): len bytes ([in] borrowed) put in
 * c->dbuf, on their way to the spool file; the thread pool writes them
 * (session_jobs.c), in order.
 * Returns: 0, -1 (more than c->dbuf holds: cannot be, the pump stops at
 * CONN_DATA_MAX).
 */
int conn_data_put(struct conn *c, const uint8_t *p, size_t len);

/* Give up the job c is parked on, and the write in flight (session.h,
 * struct job), why ([in] static) saying why for the log.
 * Returns: 1 (given up, or none), 0 (a commit that has gone through
 * already: its answer comes with the job's completion). */
int conn_give_up(struct conn *c, const char *why);

/* timeout_final passed while c was parked on a job (c->timer). */
void conn_job_timeout(struct conn *c);

/* c closes: its jobs go on without it (a commit is given up if it has
 * not gone through; if it has, it stands, unanswered). */
void conn_drop_jobs(struct conn *c, const char *why);

/* After data was put: a write once CONN_DATA_CHUNK is gathered, unless
 * one is in flight.  Returns 0, -1. */
int conn_data_kick(struct conn *c);

/* Spooling the message failed: its spool file goes now, and the final
 * dot gets 451 with why ([in] copied, kept for the log). */
void conn_spool_failed(struct conn *c, const char *why);

/* The final dot (the DATA_END event ev, [in] borrowed): commit the
 * message on the thread pool, after the write in flight, or answer 451
 * when it could not be spooled.  Returns 0, -1 (the connection goes). */
int conn_data_end(struct conn *c, const struct pst_smtp_event *ev);

/* --- The compatibility profile (session_profile.c) ----------------------
 */

/*
 * At accept (the client's address known, nothing sent yet): pick the
 * connection's profile (config_profile_match()) and make *scfg the
 * session settings for it (snapshot_session_config()).
 */
void conn_profile_pick(struct conn *c, struct pst_smtp_server_config *scfg);

/* The TLS context for the connection: its profile's, else the global. */
struct tls_ctx *conn_profile_tls(const struct conn *c);

/* The TLS handshake is over: note a version only the profile allows. */
void conn_profile_tls_up(struct conn *c);

/* An AUTH exchange ended (AUTH_RESULT): note one before TLS that only
 * the profile's auth_before_tls allowed. */
void conn_profile_auth(struct conn *c, const struct pst_smtp_event *ev);

/* DATA_BEGIN (the Received header written): with add_missing_headers,
 * start holding back the header section. */
void conn_profile_data_begin(struct conn *c);

/*
 * A DATA line, for c->msg (not NULL): held back while it belongs to the
 * header section, else (and at the section's end, with the additions)
 * put with the data on its way to the spool (conn_data_put()).
 * Returns: 0, -1 (more than that buffer holds: cannot be).
 */
int conn_profile_data(struct conn *c, const uint8_t *p, size_t len);

/* DATA_END: write what is still held back (a message that ended in its
 * header section).  Returns: as conn_profile_data(). */
int conn_profile_data_end(struct conn *c);

/* The message is forgotten: drop what is held back. */
void conn_profile_data_reset(struct conn *c);

/* The session is over: log what it used of its profile (event=compat),
 * once, and count it. */
void conn_profile_end(struct conn *c);

/* --- TLS (session_tls.c) -------------------------------------------------
 */

/* Ciphertext arrived: advance the handshake, then decrypt (the pump's
 * callbacks take the plaintext, conn_take_plain()).  Returns 0, 1 (the
 * client's close_notify: it sends no more), -1. */
int conn_take_tls(struct conn *c, const uint8_t *p, size_t n);

#endif
