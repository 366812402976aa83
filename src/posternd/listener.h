/*
 * posternd - the threads and what they share.
 *
 * The main thread runs the control loop (server.c: signals, reloads, the
 * spool cleaner) and starts `workers` worker threads (listener.c), each
 * with its own loop, its own connections (session.h), and its own copy
 * of every listening socket (a dup of one socket bound by the main
 * thread: the kernel hands each new connection to whichever loop accepts
 * first, so a busy loop leaves the next connections to an idle one).
 * What the loops share: the configuration snapshot (reference counted,
 * atomically), a passwd-file user store (read-only), the throttle (its
 * own mutex), and the per-address connection counts (srv->mu).  Each
 * worker has its own PostgreSQL store, since libpq connections live on
 * one loop.  The main thread talks to a worker only through its mailbox
 * (under srv->mu) and uv_async_send().
 */
#ifndef POSTERND_LISTENER_H
#define POSTERND_LISTENER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "snapshot.h"
#include "throttle.h"

#define WORKER_READ_CHUNK (64 * 1024) /* one read of any connection */
#define PEER_BUCKETS 4096
#define PEER_IPV6_PREFIX 64           /* max_connections_per_ip counts an
                                         IPv6 client by its /64 */

struct conn;
struct server;
struct relay_mgr;
struct control;
struct worker;

/* One listening socket of one worker. */
struct listener {
    uv_tcp_t tcp;
    struct worker *w;
    size_t idx;              /* index in cfg->listeners */
    char name[64];
};

/* One event loop on its own thread, with its own connections. */
struct worker {
    uv_loop_t loop;
    uv_thread_t thread;
    struct server *srv;
    unsigned id;
    struct snapshot *sc;     /* this loop's snapshot (a reference) */
    struct userdb *udb;      /* the store this loop looks users up in */
    struct listener *ls;
    size_t nls;
    uv_async_t wake;         /* the mailbox has something */
    uv_timer_t grace;
    struct conn *conns;
    size_t nconn;
    /* Fairness (session.h, CONN_TURN_STEPS): */
    uint64_t turn;           /* turns of the loop (turn_prep counts) */
    uv_prepare_t turn_prep;
    uv_check_t ready_check;  /* pumps the ready list after each poll */
    uv_idle_t ready_idle;    /* active while the list is not empty, so
                                that the poll does not block */
    struct conn *ready, *ready_tail; /* connections that yielded */
    int stopping;
    /* The mailbox, under srv->mu: */
    struct snapshot *next_sc;  /* a reload (a reference), or NULL */
    int stop_requested;
    /* Every read lands here first: a connection keeps only what its
     * session has not consumed yet (conn->backlog). */
    uint8_t rbuf[WORKER_READ_CHUNK];
};

/* The per-address connection counts (max_connections_per_ip), shared by
 * all loops under srv->mu; an IPv6 address counts by its /64
 * (PEER_IPV6_PREFIX). */
struct peer_count {
    struct peer_count *next;
    uint8_t addr[16];
    uint8_t family_v6;
    unsigned n;
};

/* The control loop, and what the workers share through it. */
struct server {
    uv_loop_t *loop;         /* the control loop (main thread) */
    char *path;
    struct snapshot *sc;
    uv_os_sock_t *lfd;       /* listening sockets, one per listener */
    size_t nls;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t spool_timer;
    uv_work_t spool_work;
    int spool_busy;          /* spool_work queued */
    char *spool_path;        /* what spool_work cleans */
    int spool_removed;
    uv_mutex_t mu;           /* peers, mailboxes */
    /* The throttle the loops use, NULL while auth_throttle = no; it is
     * made once (throttle_obj) and freed only at exit, so a loop that
     * read the pointer never sees it freed. */
    _Atomic(struct throttle *) throttle;
    struct throttle *throttle_obj;
    struct peer_count *peers[PEER_BUCKETS];
    atomic_size_t nconn;     /* connections of all loops */
    atomic_uint_fast64_t seq; /* session ids */
    struct worker **w;
    unsigned nw;
    struct relay_mgr *relay;  /* the queue manager (control loop); its
                                 relay_mgr_post() is thread-safe */
    struct control *control;  /* the control socket */
    uv_timer_t stop_timer;    /* stopping: waits for the relay */
    uint64_t stop_started;
    int stopping;
    int exit_code;
    /* SCRAM's server secret (scram_secret_file), read once at start and
     * lent to every snapshot (snapshot_set_secret()): */
    uint8_t *scram_secret;
    size_t scram_secret_len;
    char *scram_secret_path;
};

/*
 * A worker and its copies of the listening sockets (srv->lfd); its
 * thread (worker_main()) is started by the caller.
 * Returns: the worker ([out] owned: worker_free() after the thread
 * ends), or NULL (logged).
 */
struct worker *worker_new(struct server *srv, unsigned id);

/* The thread of a worker: its loop until it is stopped and empty. */
void worker_main(void *arg);

/* Free a worker whose thread has ended (or never started). */
void worker_free(struct worker *w);

/* Keep the poll of w's loop from blocking (on), while its ready list
 * is not empty, or let it block again (off). */
void worker_ready_idle(struct worker *w, int on);

/* Tell every worker (mailbox and wake-up): a new snapshot sc (it takes
 * its own reference) and/or stop. */
void workers_post(struct server *srv, struct snapshot *sc, int stop);

/* Close every handle of loop and run it until they are closed. */
void loop_close_all(uv_loop_t *loop);

/*
 * Count one more connection from sa.
 * Returns: how many there are now (this one included), or 0 when out of
 * memory.
 */
unsigned listener_peer_add(struct server *srv,
                           const struct sockaddr_storage *sa);

/* One connection from sa fewer. */
void listener_peer_remove(struct server *srv,
                          const struct sockaddr_storage *sa);

/* Free every count (at exit). */
void listener_peers_free(struct server *srv);

#endif
