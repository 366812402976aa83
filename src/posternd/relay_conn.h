/*
 * posternd - one connection to a relay's smarthost (DESIGN.md "Routing,
 * relay and the queue").  It resolves the host, connects, speaks TLS
 * (implicit, or STARTTLS: required, never optional), authenticates
 * (password or bearer token), and delivers the jobs the queue manager
 * gives it, one after the other on the same connection, with the client
 * session of libpostern.  Everything runs on the control loop; the
 * message file is read with libuv's fs calls (the thread pool).
 *
 * The connection decides nothing about the queue: it reports what each
 * recipient's RCPT and the message's DATA got (relay_job) and how the
 * connection ended, and the manager (relay.c) records, retries, bounces.
 */
#ifndef POSTERND_RELAY_CONN_H
#define POSTERND_RELAY_CONN_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "queue_file.h"

struct relay_conn;
struct relay_msg;
struct relay_state;
struct tls_ctx;

/* One message to send, and what became of it. */
struct relay_job {
    char     id[QUEUE_ID_MAX + 1];
    char     path[PATH_MAX];      /* the message file */
    uint64_t offset;              /* first octet to send */
    char    *sender;              /* owned: the envelope sender to send */
    char    *rewrite_from;        /* owned: send the header From as this
                                     address (envelope+from), or NULL */
    char    *add_date;            /* owned: the Date added when missing */
    char    *add_msgid;           /* owned: the Message-ID added when
                                     missing (the same at every attempt) */
    size_t   n;                   /* recipients in this attempt */
    char   **rcpt;                /* owned: their addresses */
    size_t  *idx;                 /* owned: their index in the envelope */
    /* Filled by the connection: */
    unsigned *code;               /* owned: each one's RCPT reply (0: none
                                     yet), then the final dot's for those
                                     accepted */
    char   **reply;               /* owned: that reply's text, or NULL */
    unsigned msg_code;            /* what ended the transaction: the dot's
                                     reply, a refused MAIL or DATA, or 0
                                     when the connection failed */
    char    *msg_reply;           /* owned, or NULL */
    int      sent;                /* the smarthost took the message (the
                                     dot got 2xx) */
    int      after_idle;          /* given to a connection that had been
                                     idle (cached) before it */
    struct relay_msg *msg;        /* the manager's */
};

/* How a connection ended (relay_conn_ops.closed). */
enum relay_conn_end {
    RELAY_END_QUIT = 0,           /* we said QUIT: nothing more to send */
    RELAY_END_UNUSABLE,           /* before any message could go: DNS,
                                     connect, TLS, greeting, EHLO,
                                     STARTTLS, AUTH */
    RELAY_END_BROKEN,             /* later: 421, timeout, closed by the
                                     server, malformed reply */
};

/* What the connection tells the manager. */
struct relay_conn_ops {
    /* The next job for this connection, or NULL: then QUIT, unless
     * *linger is set (it is 0 on entry): the connection stays open, idle,
     * for cfg.idle_ms, until relay_conn_wake() or relay_conn_quit(). */
    struct relay_job *(*next_job)(void *ctx, struct relay_conn *c,
                                  int *linger);
    /* A job is over (code/reply/sent filled); the job is the manager's
     * again.  Called before next_job(). */
    void (*job_done)(void *ctx, struct relay_conn *c, struct relay_job *j);
    /* The connection is over; code and reply (borrowed for the call, may
     * be 0/NULL) say why when it failed.  A job in progress was given back
     * through job_done() first, with msg_code 0.  c is freed after this
     * returns. */
    void (*closed)(void *ctx, struct relay_conn *c, enum relay_conn_end end,
                   unsigned code, const char *reply);
};

/* Settings of one connection ([in] strings borrowed until it closes). */
struct relay_conn_config {
    const char *name;             /* the relay's name, for the log */
    const char *host;             /* smarthost: a name or an address */
    uint16_t    port;
    enum config_relay_tls tls;
    struct tls_ctx *tls_ctx;      /* client context (ca file or system) */
    const char *helo;             /* our host name */
    const char *user;             /* AUTH identity; NULL: no AUTH */
    const uint8_t *secret;        /* password or bearer token (secret) */
    size_t      secret_len;
    int         bearer;           /* secret is an OAuth 2.0 bearer token */
    const char *const *mechs;     /* NULL-terminated preference, or NULL */
    unsigned    connect_timeout;  /* seconds */
    unsigned    timeout;          /* seconds to wait for a reply */
    unsigned    idle_ms;          /* longest idle time between jobs, then
                                     QUIT; 0: QUIT at once */
};

/*
 * Open a connection on loop with cfg ([in], copied where needed except the
 * borrowed strings).  Nothing is reported before this returns.
 * Returns: 0, or a negative libuv error (nothing started, nothing will be
 * reported).
 */
int relay_conn_start(uv_loop_t *loop, const struct relay_conn_config *cfg,
                     const struct relay_conn_ops *ops, void *ctx,
                     struct relay_conn **out);

/*
 * Abort the connection (stopping: the grace period is over).  A job in
 * progress is given back (job_done() with msg_code 0), then closed()
 * follows with RELAY_END_BROKEN.
 */
void relay_conn_abort(struct relay_conn *c);

/*
 * An idle connection (relay_conn_idle()): ask next_job() again now.
 * Returns: 1 when it took a job, 0 when not (still idle, or not idle),
 * -1 when the connection failed (closed() was called: c is gone).
 */
int relay_conn_wake(struct relay_conn *c);

/* An idle connection says QUIT now (reload, stop); others: nothing. */
void relay_conn_quit(struct relay_conn *c);

/* Whether c is idle: its session open, no job, waiting for one. */
int relay_conn_idle(const struct relay_conn *c);

/* The address connected to ("192.0.2.1"), "" before; for the log and
 * Remote-MTA in bounces: the host name is used there. */
const char *relay_conn_peer(const struct relay_conn *c);

/* Free what a job owns (not the job itself). */
void relay_job_clear(struct relay_job *j);

#endif
