/*
 * posternd - one connection and its SMTP session: the driver between
 * libuv, TLS (src/common/tls.h), the sans-IO session of libpostern, the
 * user store, the throttle and delivery.
 *
 * session.c: the lifecycle (conn_enter_state()), writes, TLS, reads and
 * the pump, the timeouts, the end.  session_tls.c: what TLS gives SASL
 * (channel binding, the client certificate's user).  session_events.c:
 * what the session's
 * events ask for (AUTH lookups, password checks and the throttle, MAIL
 * FROM's allow_from, RCPT, DATA and delivery, the thread-pool jobs).
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
 * The lifecycle of a connection, one state at a time, changed only by
 * conn_enter_state(), which logs each change at debug level (as
 * lib/smtp/server.c's server_enter_state() does for the session):
 *
 *   ACCEPTED      the socket is accepted; nothing queued yet
 *   TLS_HANDSHAKE the TLS handshake runs (implicit TLS, or after
 *                 STARTTLS); the session waits for it
 *   RUNNING       the session acts on input and answers
 *   WORKING       parked on the thread pool (a password check, the
 *                 commit of a message)
 *   LOOKUP        parked on the user store (AUTH, MAIL FROM's
 *                 allow_from)
 *   HELD          held by the throttle: no input acted on and no output
 *                 sent until the delay ends (conn->hold_why says which)
 *   FLUSHING      the session has said goodbye (221, 421): its last
 *                 replies go out, then the connection closes
 *   CLOSE_WAIT    closing once the thread-pool job ends (a running job
 *                 cannot be stopped)
 *   CLOSING       the handles are closing; freed when they are
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
    X(CLOSE_WAIT, "close_wait")                                              \
    X(CLOSING, "closing")

enum conn_state {
#define CONN_STATE_ENUM_(name, text) CONN_##name,
    CONN_STATE_MAP(CONN_STATE_ENUM_)
#undef CONN_STATE_ENUM_
};

/* The job on the thread pool, if any. */
enum work_kind {
    WORK_NONE = 0,
    WORK_VERIFY,             /* pst_cred_verify() */
    WORK_COMMIT,             /* maildir_commit() */
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
    uv_work_t work;
    struct worker *w;
    struct server *srv;
    struct snapshot *sc;
    size_t lidx;
    enum conn_state state;
    struct pst_smtp_server *s;
    struct tls *tls;
    int implicit;            /* an implicit-TLS listener */
    int reading;             /* uv_read_start() in force */
    char sid[20];
    char peer[INET6_ADDRSTRLEN + 8];  /* for the log */
    char peer_rcvd[INET6_ADDRSTRLEN + 8]; /* for Received: IPv6:... */
    struct sockaddr_storage peer_sa;
    int peer_counted;        /* in srv->peers */
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
    enum conn_hold hold_why; /* HELD: what waits for the delay */
    char *held_user;         /* HOLD_LOOKUP: the name to look up */
    uint64_t auth_tag;       /* throttle_tag() of the PLAIN/LOGIN guess */
    int auth_external;       /* the lookup is EXTERNAL's: check the pin */
    char cert_fp[TLS_FINGERPRINT_LEN + 1]; /* the client certificate's
                                SHA-256, "" if none (session_tls.c) */
    /* The MAIL FROM check against allow_from (asynchronous too): */
    struct userdb_req *mail_req;
    char *mail_from;         /* the address being checked */
    /* Routing (DESIGN.md "Routing, relay and the queue"): */
    char *env_from;          /* MAIL FROM of the transaction (owned) */
    char *user_relay;        /* the authenticated user's relay= (owned),
                                or NULL */
    struct userdb_req *rcpt_req; /* does the local recipient exist? */
    char *rcpt_addr;         /* the recipient being looked up */
    int rcpt_local_part;     /* looking up its local part alone now */
    char **relayed;          /* recipients for the relay (owned) */
    size_t nrelayed;
    char *relay_name;        /* their relay (the sender's) */
    size_t rp_len;           /* the Return-Path line's octets */
    /* The message: */
    struct maildir_msg *msg; /* NULL: none, or spooling failed */
    char *msg_error;         /* why spooling failed (owned), or NULL */
    char **paths;
    size_t npaths;
    struct queue_rcpt *qrcpt; /* the commit's envelope (WORK_COMMIT) */
    struct queue_env qenv;
    uint64_t msg_size;       /* octets received (DATA_END) */
    uint64_t dot_ns;         /* uv_hrtime() of DATA_END (metrics) */
    /* The compatibility profile (session_profile.c): */
    const struct config_profile *profile; /* NULL: none applies */
    unsigned profile_used;   /* PROFILE_USED_* the driver saw */
    enum conn_hdr hdr_holding; /* add_missing_headers */
    struct pst_buf hdr;      /* the header section held back */
    /* The thread-pool job: */
    enum work_kind work_kind;
    int work_result;
    uint8_t *work_pw;
    size_t work_pwlen;
    char *work_user;
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

/* --- Within the session (session.c and session_events.c) ---------------
 */

/* The only way to change c->state: logs "old -> new" at debug level. */
void conn_enter_state(struct conn *c, enum conn_state to);

/*
 * Close the connection (idempotent).  why ([in] static string), when
 * not NULL, is logged as the "disconnect" reason unless the connection
 * already said goodbye.
 */
void conn_close(struct conn *c, const char *why);

/* Whether the connection is closing (CLOSE_WAIT, CLOSING). */
int conn_closed(const struct conn *c);

/* Whether the session is over: FLUSHING or closing.  A late answer
 * (a lookup, a job) is then for nobody. */
int conn_ending(const struct conn *c);

/* Act on input and events, send output, until neither moves. */
void conn_pump(struct conn *c);

/* Carry on after an answer to the session (rc of
 * pst_smtp_server_answer()): refused means a bug on our side, and the
 * connection goes. */
void conn_resume(struct conn *c, int rc);

/* Start TLS on the connection (implicit TLS at accept, or STARTTLS).
 * Returns: 0, -1. */
int conn_tls_begin(struct conn *c);

/* Send what the session has for the client.  Returns: 1 if something
 * was taken, 0 if nothing, -1 on failure. */
int conn_flush(struct conn *c);

/* The throttle as it is now (NULL: auth_throttle = no). */
struct throttle *conn_throttle(const struct conn *c);

/* Handle one event of the session (session_events.c).  Returns: 0, or
 * -1 when the connection must go. */
int conn_on_event(struct conn *c, const struct pst_smtp_event *ev);

/* Forget the message of the transaction (its spool file goes). */
void conn_reset_message(struct conn *c);

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
 * written to the spool.
 * Returns: 0, -1 (a spool write failed: maildir_error() says why).
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
/* The TLS handshake is done: hand the session the channel binding and
 * the user the client certificate names (session_tls.c).  Returns: 0,
 * -1. */
int conn_tls_auth(struct conn *c);

#endif
