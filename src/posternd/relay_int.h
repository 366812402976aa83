/*
 * posternd - the relay's queue manager, inside (relay.c, relay_bounce.c,
 * relay_cmd.c, relay_token.c).  Everything here runs on the control loop
 * but the pool jobs' work_run() part.
 */
#ifndef POSTERND_RELAY_INT_H
#define POSTERND_RELAY_INT_H

#include <stdint.h>

#include <postern/buf.h>
#include <uv.h>

#include "config.h"
#include "oauth.h"
#include "queue_file.h"
#include "relay.h"
#include "relay_conn.h"

#define RELAY_HEADERS_MAX (256u << 10) /* octets returned in a bounce */
#define RELAY_SECRET_MAX 16384      /* octets of a password file */
/* A connection whose transaction is over and that has no due job stays
 * open this long for the next one (Postfix's
 * smtp_connection_cache_time_limit, 2 s), far below a smarthost's idle
 * timeout (RFC 5321 §4.5.3.2.7: 5 minutes). */
#define RELAY_CONN_IDLE_MS 2000

struct relay_rt;

struct relay_msg {
    struct queue_env *env;          /* owned */
    struct relay_rt *rt;            /* NULL: its relay is not configured */
    int active;                     /* a connection sends it */
    int busy;                       /* a pool job works on its files */
    int deleted;                    /* `postern queue delete`: remove */
    int64_t due;                    /* Unix seconds; not before */
    int reuse_failed;               /* an idle connection failed it */
    struct relay_msg *prev, *next;  /* the manager's, by arrival */
    /* Due now, in its relay's ready list (by arrival): */
    struct relay_rt *ready;         /* the list's relay, or NULL */
    struct relay_msg *rprev, *rnext;
};

struct relay_rt {
    char *name;                     /* owned */
    const struct config_relay *cfg; /* in the current configuration */
    struct tls_ctx *tls;            /* client context for it */
    uint8_t *secret;                /* password (auth = password), wiped */
    size_t secret_len;
    unsigned conns;                 /* open now */
    unsigned starting;              /* of them, before their first job */
    struct relay_msg *ready_head, *ready_tail; /* due messages */
    size_t nready;
    unsigned limit;                 /* connections allowed now */
    double tokens;                  /* max_messages_per_minute bucket */
    uint64_t refill_ms;             /* uv_now() of the last refill */
    unsigned failures;              /* unusable connections in a row */
    int64_t retry_at;               /* relay-wide: not before */
    char last_error[512];
    int found;                      /* in the configuration (reload) */
    /* auth = oauth2 (relay_token.c): */
    struct relay_mgr *mgr;
    struct oauth_token tok;         /* the token file as last read or
                                       written (secrets wiped on free) */
    uint8_t *client_secret;         /* oauth2_client_secret_file's */
    size_t client_secret_len;
    int refreshing;                 /* a token request on the pool */
    int paused;                     /* the grant is dead: log in again */
    unsigned tok_failures;          /* temporary failures in a row */
    int64_t tok_retry_at;           /* no request before */
    int retried_535;                /* a 535 made us refresh once */
    char tok_error[256];            /* the last failure, for status */
    uint64_t refreshes_ok, refreshes_failed;
};

/* A pool job on one message's files. */
enum relay_work_kind {
    WORK_LOAD = 0,                  /* read the envelope of a new id */
    WORK_RECORD,                    /* append records, fdatasync */
    WORK_BOUNCE,                    /* queue the bounce, record it */
    WORK_REMOVE,                    /* remove the files */
};

struct relay_work {
    uv_work_t req;
    struct relay_mgr *m;
    enum relay_work_kind kind;
    struct relay_msg *msg;          /* NULL for WORK_LOAD */
    char id[QUEUE_ID_MAX + 1];
    struct pst_buf lines;           /* WORK_RECORD */
    struct queue_env *loaded;       /* WORK_LOAD */
    int rc;
    char err[512];
    /* Copied settings the job needs (the configuration may be reloaded
     * while it runs): */
    char *queue, *spool, *hostname, *mailbox, *mail_root, *remote;
    int sender_local;
    void (*done)(void *ctx, int rc); /* a control command waiting */
    void *done_ctx;
    struct pst_buf *out;
};

struct relay_mgr {
    uv_loop_t *loop;
    const struct config *cfg;
    uv_timer_t timer;
    uv_async_t wake;
    uv_mutex_t mu;                  /* inbox */
    char **inbox;
    size_t ninbox;
    struct relay_rt **rt;
    size_t nrt;
    struct relay_msg *msgs, *msgs_tail; /* by arrival */
    size_t nmsgs;
    uint64_t wake_ms;               /* when the timer fires (uv_now()),
                                       or UINT64_MAX */
    int kicking, rekick;            /* relay_kick() runs; once more */
    unsigned works;                 /* pool jobs running */
    unsigned nconns;
    struct conn_ctx *conns;         /* open connections */
    int stopping;
    int closing;                    /* relay_mgr_free(): handles closing */
};

struct conn_ctx {
    struct relay_mgr *m;
    struct relay_rt *rt;
    char *name;                     /* the relay's, for a removed one */
    struct relay_conn *conn;
    int started;                    /* asked for its first job */
    struct conn_ctx *prev, *next;   /* the manager's open connections */
};

/* relay.c */
int64_t relay_now(void);
struct relay_msg *relay_msg_find(const struct relay_mgr *m, const char *id);
struct relay_work *relay_work_new(struct relay_mgr *m,
                                  enum relay_work_kind kind,
                                  struct relay_msg *msg);
int relay_work_queue(struct relay_work *w);
/* Where msg goes next (after any change of it): removal, a bounce, its
 * expiry, its relay's ready list, or waiting (the timer set for it). */
void relay_msg_settle(struct relay_mgr *m, struct relay_msg *msg);
void relay_ready_remove(struct relay_msg *msg);
/* The timer fires at Unix second at, unless it fires sooner already. */
void relay_wake_at(struct relay_mgr *m, int64_t at);
/* Every message looked at again (the timer, reload, flush): O(queue). */
void relay_run(struct relay_mgr *m);
/* Connections for the ready lists: idle ones first, then new ones;
 * O(relays + connections), whatever the queue's length. */
void relay_kick(struct relay_mgr *m);
/* Idle connections (of rt, or all; but except) say QUIT: stopping, a
 * reload (its settings apply from the next connection), a stale cache.
 * Each may end at once (closed() unlinks it). */
void relay_quit_idle(struct relay_mgr *m, const struct relay_rt *rt,
                     const struct conn_ctx *except);
void relay_msg_record(struct relay_mgr *m, struct relay_msg *msg,
                      struct pst_buf *lines);

/* relay_rt.c: the relays at run time. */
/* The relay called name, NULL when the configuration has none. */
struct relay_rt *relay_rt_find(const struct relay_mgr *m, const char *name);
/* Match the configuration's relays with the runtime ones (start and
 * reload); each message's relay looked up again. */
void relay_rt_sync(struct relay_mgr *m);
/* rt and what it holds (the secret wiped); NULL is a no-op. */
void relay_rt_free(struct relay_rt *rt);
/* max_messages_per_minute: 1 when a token is there (taken if take),
 * else 0 with *wait_ms until the next one. */
int relay_rt_token(struct relay_mgr *m, struct relay_rt *rt, int take,
                   uint64_t *wait_ms);
/* retry_min doubling per attempt, up to retry_max (seconds). */
int64_t relay_backoff(const struct config *cfg, unsigned attempts);
/* The secret of a password file: its first line.  Returns 0, or -1
 * with err set. */
int relay_read_secret(const char *path, uint8_t **out, size_t *len,
                      char *err, size_t n);

/* relay_jobs.c: a connection for rt, with the access token of an oauth2
 * relay (else NULL).  Returns 0 or -1. */
int relay_conn_open(struct relay_mgr *m, struct relay_rt *rt,
                    const char *token);

/* relay_token.c: OAuth 2.0 for auth = oauth2 */
void relay_token_configure(struct relay_mgr *m, struct relay_rt *rt);
void relay_token_free(struct relay_rt *rt);
/* 1 with the access token in *tok when it is usable now; 0 when not (a
 * refresh is started if none runs and the relay is not paused), with
 * *wake (Unix seconds) when to look again, or 0 for "when a refresh
 * ends". */
int relay_token_ready(struct relay_mgr *m, struct relay_rt *rt, int64_t now,
                      const char **tok, int64_t *wake);
/* The smarthost refused the token (535): refresh once before waiting. */
int relay_token_refused(struct relay_mgr *m, struct relay_rt *rt);
/* Re-read the token file (postern oauth login wrote it): resumes. */
void relay_token_reread(struct relay_mgr *m, struct relay_rt *rt);
void relay_token_status(const struct relay_rt *rt, int64_t now,
                        struct pst_buf *out);

/* relay_bounce.c (blocking: from a pool job) */
int relay_domain_local(const struct config *cfg, const char *addr);
int relay_bounce_queue(struct relay_work *w, const struct queue_env *e);

#endif
