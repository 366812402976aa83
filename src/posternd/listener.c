/*
 * posternd - the workers (listener.h): each an event loop on its own
 * thread with its own copies of the listening sockets and its own
 * connections; accepting a connection (the limits, the throttle's
 * lockout); the per-address connection counts all loops share.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "session.h"

/* --- Connections per address (max_connections_per_ip) ------------------
 */

/*
 * The key an address is counted under: an IPv4 address as it is (also
 * when it comes IPv4-mapped, ::ffff:a.b.c.d, from a dual-stack
 * listener), an IPv6 address by its /64 (PEER_IPV6_PREFIX): one site or
 * one host gets a /64 (RFC 6177, RFC 7934), and any address in it is
 * its for the taking, so counting each address alone would let one /64
 * hold every slot of max_connections.
 */
static size_t
peer_key(const struct sockaddr_storage *sa, uint8_t addr[16], uint8_t *v6)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0xff, 0xff};
    uint64_t h = 1469598103934665603ull; /* FNV-1a; a chain is at most
                                            max_connections long */
    const uint8_t *a6 = (const uint8_t *)&(
        (const struct sockaddr_in6 *)sa)->sin6_addr;

    memset(addr, 0, 16);
    *v6 = sa->ss_family == AF_INET6 && memcmp(a6, mapped, 12) != 0;
    if (*v6)
        memcpy(addr, a6, PEER_IPV6_PREFIX / 8);
    else if (sa->ss_family == AF_INET6)
        memcpy(addr, a6 + 12, 4);
    else
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    for (size_t i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 1099511628211ull;
    return (size_t)(h % PEER_BUCKETS);
}

unsigned
listener_peer_add(struct server *srv, const struct sockaddr_storage *sa)
{
    uint8_t addr[16], v6;
    size_t b = peer_key(sa, addr, &v6);
    struct peer_count *p;
    unsigned n = 0;

    uv_mutex_lock(&srv->mu);
    for (p = srv->peers[b]; p != NULL; p = p->next)
        if (p->family_v6 == v6 && memcmp(p->addr, addr, 16) == 0)
            break;
    if (p == NULL && (p = calloc(1, sizeof(*p))) != NULL) {
        memcpy(p->addr, addr, 16);
        p->family_v6 = v6;
        p->next = srv->peers[b];
        srv->peers[b] = p;
    }
    if (p != NULL)
        n = ++p->n;
    uv_mutex_unlock(&srv->mu);
    return n;
}

void
listener_peer_remove(struct server *srv, const struct sockaddr_storage *sa)
{
    uint8_t addr[16], v6;
    size_t b = peer_key(sa, addr, &v6);
    struct peer_count **pp, *p;

    uv_mutex_lock(&srv->mu);
    for (pp = &srv->peers[b]; (p = *pp) != NULL; pp = &p->next)
        if (p->family_v6 == v6 && memcmp(p->addr, addr, 16) == 0) {
            if (--p->n == 0) {
                *pp = p->next;
                free(p);
            }
            break;
        }
    uv_mutex_unlock(&srv->mu);
}

void
listener_peers_free(struct server *srv)
{
    for (size_t b = 0; b < PEER_BUCKETS; b++)
        while (srv->peers[b] != NULL) {
            struct peer_count *p = srv->peers[b];

            srv->peers[b] = p->next;
            free(p);
        }
}

/* --- Accepting -------------------------------------------------------------
 */

static void
on_connection(uv_stream_t *ls, int status)
{
    struct listener *l = (struct listener *)ls;
    struct worker *w = l->w;
    const struct config *cfg = w->sc->cfg;
    enum conn_refuse refuse = REFUSE_NONE;
    struct conn *c;
    size_t total;
    unsigned same;
    uint64_t delay;

    if (status < 0)
        return;
    c = conn_new(w, l->idx, &total);
    if (c == NULL)
        return;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, NULL);
        return;
    }
    conn_accepted(c);
    same = listener_peer_add(w->srv, &c->peer_sa);
    c->peer_counted = same > 0;
    if ((cfg->max_connections > 0 && total > cfg->max_connections) ||
        (cfg->max_connections_per_ip > 0 &&
         (same == 0 || same > cfg->max_connections_per_ip)))
        refuse = REFUSE_BUSY;
    /* An address locked out by the throttle gets no session. */
    else if (throttle_check(conn_throttle(c), (struct sockaddr *)&c->peer_sa,
                            NULL, uv_now(&w->loop), &delay) ==
             THROTTLE_REFUSE)
        refuse = REFUSE_LOCKOUT;
    conn_start(c, refuse);
}

/* --- Workers ----------------------------------------------------------------
 */

static void
on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

/* The grace period is over: every session still open gets 421 now. */
static void
on_grace(uv_timer_t *t)
{
    struct worker *w = t->data;

    for (struct conn *c = w->conns, *next; c != NULL; c = next) {
        next = c->next;
        conn_stop(c, 1);
    }
}

/* Stop this loop: no more connections; idle sessions end now, the
 * others when their transaction is over or the grace period ends. */
static void
worker_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    for (size_t i = 0; i < w->nls; i++)
        uv_close((uv_handle_t *)&w->ls[i].tcp, on_listener_closed);
    if (w->nconn == 0) {
        uv_stop(&w->loop);
        return;
    }
    for (struct conn *c = w->conns, *next; c != NULL; c = next) {
        next = c->next;
        conn_stop(c, 0);
    }
    uv_timer_start(&w->grace, on_grace,
                   (uint64_t)w->sc->cfg->grace_period * 1000, 0);
}

/* The user store a worker looks users up in: the snapshot's own for a
 * passwd file (read-only, shared), a fresh one of its own for pgsql
 * (libpq connections belong to one loop).  NULL when it cannot be
 * opened (logged); lookups then get 454 4.7.0. */
static struct userdb *
worker_userdb(const struct snapshot *sc)
{
    struct userdb *u;
    char err[CONFIG_ERR_MAX];

    if (!userdb_per_loop(sc->udb))
        return userdb_ref(sc->udb);
    if (userdb_open(sc->cfg, &u, err, sizeof(err)) < 0) {
        log_event(LOG_LEVEL_WARN, "userdb_failed", "error", err, NULL);
        return NULL;
    }
    return u;
}

/* The main thread left something in the mailbox. */
static void
on_wake(uv_async_t *h)
{
    struct worker *w = h->data;
    struct snapshot *next;
    int stop;

    uv_mutex_lock(&w->srv->mu);
    next = w->next_sc;
    w->next_sc = NULL;
    stop = w->stop_requested;
    uv_mutex_unlock(&w->srv->mu);
    if (next != NULL) {
        struct userdb *u = worker_userdb(next);

        /* A store that cannot be opened keeps the previous one. */
        if (u != NULL || !userdb_per_loop(next->udb)) {
            userdb_unref(w->udb);
            w->udb = u;
        }
        snapshot_unref(w->sc);
        w->sc = next;
    }
    if (stop)
        worker_stop(w);
}

/* A new turn of the loop: every connection has its share again. */
static void
on_turn(uv_prepare_t *h)
{
    struct worker *w = h->data;

    w->turn++;
}

/* After the poll: the connections that yielded carry on. */
static void
on_ready_check(uv_check_t *h)
{
    conn_run_ready(h->data);
}

static void
on_ready_idle(uv_idle_t *h)
{
    (void)h; /* only there to keep the poll from blocking */
}

void
worker_ready_idle(struct worker *w, int on)
{
    if (on)
        uv_idle_start(&w->ready_idle, on_ready_idle);
    else
        uv_idle_stop(&w->ready_idle);
}

static void
on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void
loop_close_all(uv_loop_t *loop)
{
    uv_walk(loop, on_walk_close, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

void
worker_main(void *arg)
{
    struct worker *w = arg;

    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Close what is left and let the callbacks run. */
    loop_close_all(&w->loop);
}

void
worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    uv_loop_close(&w->loop);
    userdb_unref(w->udb);
    snapshot_unref(w->sc);
    uv_mutex_lock(&w->srv->mu);
    snapshot_unref(w->next_sc);
    uv_mutex_unlock(&w->srv->mu);
    free(w->ls);
    free(w);
}

struct worker *
worker_new(struct server *srv, unsigned id)
{
    const struct config *cfg = srv->sc->cfg;
    struct worker *w = calloc(1, sizeof(*w));
    int rc;

    if (w == NULL || uv_loop_init(&w->loop) < 0) {
        free(w);
        log_event(LOG_LEVEL_WARN, "worker_failed", "error",
                  "cannot create an event loop", NULL);
        return NULL;
    }
    w->srv = srv;
    w->id = id;
    w->sc = snapshot_ref(srv->sc);
    w->udb = worker_userdb(w->sc);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->grace);
    w->grace.data = w;
    uv_prepare_init(&w->loop, &w->turn_prep);
    w->turn_prep.data = w;
    uv_prepare_start(&w->turn_prep, on_turn);
    uv_unref((uv_handle_t *)&w->turn_prep);
    uv_check_init(&w->loop, &w->ready_check);
    w->ready_check.data = w;
    uv_check_start(&w->ready_check, on_ready_check);
    uv_unref((uv_handle_t *)&w->ready_check);
    uv_idle_init(&w->loop, &w->ready_idle);
    w->ready_idle.data = w;
    w->ls = calloc(srv->nls, sizeof(*w->ls));
    if (w->ls == NULL)
        goto fail;
    for (size_t i = 0; i < srv->nls; i++) {
        struct listener *l = &w->ls[i];
        int fd = fcntl(srv->lfd[i], F_DUPFD_CLOEXEC, 0);

        l->w = w;
        l->idx = i;
        snprintf(l->name, sizeof(l->name), "%s", cfg->listeners[i].name);
        uv_tcp_init(&w->loop, &l->tcp);
        w->nls++;
        rc = fd < 0 ? UV_EMFILE : uv_tcp_open(&l->tcp, fd);
        if (rc < 0 && fd >= 0)
            close(fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
        if (rc < 0) {
            log_event(LOG_LEVEL_WARN, "listen_failed", "listener",
                      cfg->listeners[i].name, "error", uv_strerror(rc),
                      NULL);
            goto fail;
        }
    }
    return w;
fail:
    loop_close_all(&w->loop);
    worker_free(w);
    return NULL;
}

/* Tell every worker (mailbox + wake-up): a new snapshot and/or stop. */
void
workers_post(struct server *srv, struct snapshot *sc, int stop)
{
    for (unsigned i = 0; i < srv->nw; i++) {
        struct worker *w = srv->w[i];

        uv_mutex_lock(&srv->mu);
        if (sc != NULL) {
            snapshot_unref(w->next_sc);
            w->next_sc = snapshot_ref(sc);
        }
        if (stop)
            w->stop_requested = 1;
        uv_mutex_unlock(&srv->mu);
        uv_async_send(&w->wake);
    }
}
