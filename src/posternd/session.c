/*
 * posternd - a connection's lifecycle and I/O (session.h): the state,
 * writes, reads and the pump that drives the sans-IO session, the
 * timeouts, the start and the end.  TLS is in session_tls.c, what the
 * session's events ask for in session_events.c, the thread-pool jobs in
 * session_jobs.c.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "session.h"

static const char *const conn_state_names[] = {
#define CONN_STATE_NAME_(name, text) [CONN_##name] = text,
    CONN_STATE_MAP(CONN_STATE_NAME_)
#undef CONN_STATE_NAME_
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void on_timeout(uv_timer_t *t);
static void conn_arm_timer(struct conn *c);

/* --- State ----------------------------------------------------------------
 */

void
conn_enter_state(struct conn *c, enum conn_state to)
{
    if (c->state == to)
        return;
    log_event(LOG_LEVEL_DEBUG, "conn_state", "sid", c->sid, "from",
              conn_state_names[c->state], "to", conn_state_names[to], NULL);
    c->state = to;
}

int
conn_closed(const struct conn *c)
{
    return c->state == CONN_CLOSING;
}

int
conn_ending(const struct conn *c)
{
    return c->state == CONN_FLUSHING || conn_closed(c);
}

/* Whether the TLS handshake runs (also once the session has said
 * goodbye: then nothing goes out but the close). */
static int
conn_in_handshake(const struct conn *c)
{
    return c->tls != NULL && !tls_established(c->tls);
}

struct throttle *
conn_throttle(const struct conn *c)
{
    return atomic_load(&c->srv->throttle);
}

/* Why the session asked to close: the driver's reason, or the last reply
 * queued (221 after QUIT, 421 4.7.0 after too many errors). */
static const char *
conn_close_reason(struct conn *c)
{
    const uint8_t *p;
    size_t len, i;

    if (c->close_why != NULL)
        return c->close_why;
    pst_smtp_server_output(c->s, &p, &len);
    if (len < 5)
        return "closed by the session";
    for (i = len - 2; i > 0 && p[i - 1] != '\n'; i--)
        ;
    if (len - i >= 4 && memcmp(p + i, "221 ", 4) == 0)
        return "quit";
    if (len - i >= 10 && memcmp(p + i, "421 4.7.0 ", 10) == 0)
        return "too many errors";
    return "closed by the session";
}

/* The disconnect line, once: on entering FLUSHING or closing from any
 * other state. */
static void
conn_log_close(struct conn *c, const char *why)
{
    if (why == NULL || conn_ending(c))
        return;
    log_event(LOG_LEVEL_INFO, "disconnect", "sid", c->sid, "peer", c->peer,
              "reason", why, NULL);
}

/* --- The end --------------------------------------------------------------
 */

static void
conn_free(struct conn *c)
{
    struct worker *w = c->w;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->ready) {
        struct conn **pp = &w->ready, *last = NULL;

        while (*pp != c) {
            last = *pp;
            pp = &(*pp)->ready_next;
        }
        *pp = c->ready_next;
        if (w->ready_tail == c)
            w->ready_tail = last;
        if (w->ready == NULL)
            worker_ready_idle(w, 0);
    }
    w->nconn--;
    atomic_fetch_sub(&c->srv->nconn, 1);
    metrics_conn_closed(w->metrics);
    if (c->peer_counted)
        listener_peer_remove(c->srv, &c->peer_sa);
    conn_profile_end(c);
    conn_reset_message(c);
    pst_buf_clear(&c->dbuf);
    pst_smtp_server_free(c->s);
    proxy_end(c);
    free(c->auth_user);
    pst_cred_free(c->auth_derived);
    /* A lookup still in flight is cancelled: no callback follows. */
    userdb_lookup_free(c->auth_req);
    userdb_lookup_free(c->mail_req);
    free(c->mail_from);
    free(c->env_from);
    free(c->user_relay);
    free(c->cert_fp);
    tls_free(c->tls);
    pst_buf_clear(&c->backlog);
    snapshot_unref(c->sc);
    free(c);
    if (w->stopping && w->nconn == 0)
        uv_stop(&w->loop);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    if (--c->handles_open == 0)
        conn_free(c);
}

void
conn_close(struct conn *c, const char *why)
{
    if (c->state == CONN_CLOSING)
        return;
    conn_log_close(c, why);
    /* A job on the thread pool goes on without us (struct job). */
    conn_drop_jobs(c, why != NULL ? why : "closed");
    conn_enter_state(c, CONN_CLOSING);
    /* The connection is over for the limits now, not when its handles
     * are freed a loop turn later. */
    if (c->peer_counted) {
        listener_peer_remove(c->srv, &c->peer_sa);
        c->peer_counted = 0;
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->hold, on_handle_closed);
}

void
conn_resume(struct conn *c, int rc)
{
    if (rc < 0) {
        log_event(LOG_LEVEL_WARN, "internal_error", "sid", c->sid, "what",
                  "answer refused by the session", NULL);
        conn_close(c, "internal error");
        return;
    }
    conn_pump(c);
}

/* --- Writing --------------------------------------------------------------
 */

struct write_req {
    uv_write_t req;
    struct conn *c;
    size_t len;
    uint8_t data[];
};

/* Bytes the client has not taken yet: libuv's write queue (what the
 * kernel's socket buffer would not hold).  TLS output is moved there as
 * soon as it is made (tls_flush()). */
static size_t
conn_unsent(const struct conn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static void
conn_read_stop(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void
on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = w->c;

    c->writes_pending--;
    OPENSSL_cleanse(w->data, w->len);
    free(w);
    if (status < 0 && !conn_closed(c)) {
        conn_close(c, "write failed");
        return;
    }
    /* The client is reading again: so do we. */
    if (c->out_blocked && !conn_closed(c) &&
        conn_unsent(c) <= CONN_OUT_LOW) {
        c->out_blocked = 0;
        conn_pump(c);
    }
}

/* Queue len bytes for the client.  Every path that produces output (the
 * session's replies, TLS handshake messages and alerts) comes here, so
 * this is where the high-water mark is noticed: reading stops until
 * on_write() sees the queue drained to the low-water mark. */
int
conn_write_raw(struct conn *c, const uint8_t *p, size_t len)
{
    struct write_req *w;
    uv_buf_t b;

    if (len == 0 || conn_closed(c))
        return 0;
    w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return -1;
    w->c = c;
    w->len = len;
    memcpy(w->data, p, len);
    b = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(w);
        return -1;
    }
    c->writes_pending++;
    if (conn_unsent(c) > CONN_OUT_HIGH && !c->out_blocked) {
        c->out_blocked = 1;
        /* After the goodbye the input is read only to be dropped
         * (conn_finish()): that may go on. */
        if (c->state != CONN_FLUSHING)
            conn_read_stop(c);
    }
    return 0;
}

int
conn_flush(struct conn *c)
{
    const uint8_t *p;
    size_t len;

    pst_smtp_server_output(c->s, &p, &len);
    if (len == 0)
        return 0;
    if (c->tls != NULL) {
        if (conn_in_handshake(c))
            return 0; /* nothing may go out before the handshake ends */
        if (tls_send(c->tls, p, len) != TLS_OK)
            return -1;
    } else if (conn_write_raw(c, p, len) < 0) {
        return -1;
    }
    pst_smtp_server_consume(c->s, len);
    c->progress++;
    return 1;
}

/* --- Timeouts -------------------------------------------------------------
 */

/* When session_time_limit ends the connection (uv_now() ms), or
 * UINT64_MAX for no limit. */
static uint64_t
conn_session_deadline(const struct conn *c)
{
    unsigned limit = c->sc->cfg->session_time_limit;

    return limit > 0 ? c->started + (uint64_t)limit * 1000 : UINT64_MAX;
}

/* When data_time_limit ends the DATA in progress, or UINT64_MAX. */
static uint64_t
conn_data_deadline(const struct conn *c)
{
    unsigned limit = c->sc->cfg->data_time_limit;

    return limit > 0 && c->data_started > 0
               ? c->data_started + (uint64_t)limit * 1000
               : UINT64_MAX;
}

/* Which limit ends the session now, if any (conn_arm_timer()). */
static const char *
conn_limit_passed(const struct conn *c, uint64_t now)
{
    if (now >= conn_session_deadline(c))
        return "session time limit";
    if (now >= conn_data_deadline(c))
        return "data time limit";
    return NULL;
}

static void
on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    const char *limit;

    if (conn_closed(c))
        return;
    /* After the goodbye: the client did not take our last replies in
     * time, or lingered long enough after our FIN. */
    if (c->state == CONN_FLUSHING) {
        conn_close(c, NULL);
        return;
    }
    limit = conn_limit_passed(c, uv_now(&c->w->loop));
    log_event(LOG_LEVEL_INFO, "timeout", "sid", c->sid, "state",
              pst_smtp_state_name(pst_smtp_server_state(c->s, NULL)),
              limit != NULL ? "limit" : NULL, limit, NULL);
    c->close_why = limit != NULL ? limit : "timeout";
    /* RFC 5321 §4.5.3.2: 421 4.4.2, also for the time limits.  A client
     * that has not taken its replies for so long (output over
     * CONN_OUT_HIGH) would not take the 421 either: it goes now. */
    if (c->out_blocked ||
        pst_smtp_server_close(c->s, PST_SMTP_CLOSE_TIMEOUT) < 0 ||
        conn_in_handshake(c)) {
        conn_close(c, c->close_why);
        return;
    }
    conn_pump(c);
}

/*
 * (Re)start the one timer of a connection at the earliest of:
 * - a command (or the TLS handshake) must arrive whole within
 *   timeout_command of the previous reply.  Bytes that do not complete a
 *   line do not restart it (as Postfix's smtpd_per_record_deadline), so
 *   a client sending one byte every few seconds is cut off;
 * - in DATA, timeout_data since the last bytes read (RFC 5321
 *   §4.5.3.2.5: the time per data block), and data_time_limit since the
 *   354;
 * - session_time_limit since the connection was accepted.
 * Nothing runs while the server itself is busy (storing the message,
 * checking a password).
 */
static void
conn_arm_timer(struct conn *c)
{
    const struct config *cfg = c->sc->cfg;
    enum pst_smtp_state st = pst_smtp_server_state(c->s, NULL);
    uint64_t now = uv_now(&c->w->loop), deadline;

    /* Parked on a job: its timer is timeout_final's. */
    if (c->job != NULL || c->data_end)
        return;
    if (st == PST_SMTP_STATE_WAIT_STORED || st == PST_SMTP_STATE_WAIT_VERIFY) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (st == PST_SMTP_STATE_DATA) {
        if (c->data_started == 0)
            c->data_started = now;
        deadline = now + (uint64_t)cfg->timeout_data * 1000;
        if (conn_data_deadline(c) < deadline)
            deadline = conn_data_deadline(c);
        c->line_deadline = 0;
    } else {
        c->data_started = 0;
        if (c->line_deadline == 0 || c->progress != c->armed_progress) {
            c->line_deadline = now + (uint64_t)cfg->timeout_command * 1000;
            c->armed_progress = c->progress;
        }
        deadline = c->line_deadline;
    }
    if (conn_session_deadline(c) < deadline)
        deadline = conn_session_deadline(c);
    uv_timer_start(&c->timer, on_timeout, deadline > now ? deadline - now : 0,
                   0);
}

/* --- The pump -------------------------------------------------------------
 */

/* Give the session what it will take of the backlog. */
static void
conn_feed_backlog(struct conn *c)
{
    while (c->backlog.len > 0) {
        size_t used = 0;

        if (pst_smtp_server_feed(c->s, c->backlog.data, c->backlog.len,
                                 &used) < 0 || used == 0)
            break;
        memmove(c->backlog.data, c->backlog.data + used,
                c->backlog.len - used);
        c->backlog.len -= used;
    }
    /* Nothing left over: an idle connection keeps no input buffer. */
    if (c->backlog.len == 0 && c->backlog.data != NULL)
        pst_buf_clear(&c->backlog);
}

/* Whether the pump may not run: closing, held by the throttle, or the
 * message data waiting for the disk (CONN_DATA_MAX gathered while a
 * write is in flight). */
static int
conn_stalled(const struct conn *c)
{
    return conn_closed(c) || c->state == CONN_HELD ||
           (c->wjob != NULL && c->dbuf.len >= CONN_DATA_MAX);
}

/* Our FIN is out: every reply was handed to the kernel before it. */
static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;

    /* libuv calls this once for every request, UV_ECANCELED when the
     * handle closes first (before its close callback: c is still
     * there). */
    free(req);
    if (conn_closed(c))
        return; /* cancelled by conn_close() */
    c->shut_done = 1;
    if (status < 0 || c->peer_eof) {
        conn_close(c, NULL);
        return;
    }
    /* Linger: the client reads our last replies and closes. */
    uv_timer_start(&c->timer, on_timeout, CONN_LINGER_MS, 0);
}

/*
 * The session said goodbye and conn_pump() has taken all its output.
 * Closing at once is not enough: a close with unread input makes the
 * kernel reset the connection, and a reset destroys whatever the client
 * has not read yet, our last replies included (a client that pipelined
 * past QUIT lost up to the last thousand replies so).  So (a lingering
 * close, as Apache httpd's): close_notify under TLS, our FIN once every
 * write is out (uv_shutdown() waits for them), meanwhile the client's
 * input is read and dropped, and the connection closes when the client
 * closes its side, or CONN_LINGER_MS after our FIN.  A client that does
 * not take the replies at all is cut off timeout_command after the
 * goodbye.  Idempotent.
 */
static void
conn_finish(struct conn *c)
{
    uv_shutdown_t *req;

    if (c->shut)
        return;
    c->shut = 1;
    if (c->tls != NULL && !conn_in_handshake(c) &&
        tls_shutdown(c->tls) == 0)
        tls_flush(c->tls);
    /* The connection is over for the limits now. */
    if (c->peer_counted) {
        listener_peer_remove(c->srv, &c->peer_sa);
        c->peer_counted = 0;
    }
    pst_buf_clear(&c->backlog);
    if (c->peer_eof && c->writes_pending == 0) {
        conn_close(c, NULL);
        return;
    }
    /* The request is allocated here rather than held in every struct
     * conn: on_shutdown() frees it. */
    if ((req = malloc(sizeof(*req))) == NULL) {
        conn_close(c, NULL);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        conn_close(c, NULL);
        return;
    }
    uv_timer_start(&c->timer, on_timeout,
                   (uint64_t)c->sc->cfg->timeout_command * 1000, 0);
    if (!c->reading && !c->peer_eof &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
}

/* Put c on its worker's ready list: its pump carries on after the next
 * poll. */
static void
conn_defer(struct conn *c)
{
    struct worker *w = c->w;

    if (c->ready)
        return;
    c->ready = 1;
    c->ready_next = NULL;
    if (w->ready_tail != NULL)
        w->ready_tail->ready_next = c;
    else
        w->ready = c;
    w->ready_tail = c;
    worker_ready_idle(w, 1);
}

void
conn_run_ready(struct worker *w)
{
    struct conn *batch = w->ready;

    /* Those that yield again go on a new list, for the next turn.  No
     * connection is freed while this runs (frees come from the close
     * callbacks, a later phase of the loop). */
    w->ready = w->ready_tail = NULL;
    worker_ready_idle(w, 0);
    while (batch != NULL) {
        struct conn *c = batch;

        batch = c->ready_next;
        c->ready = 0;
        c->ready_next = NULL;
        conn_pump(c);
    }
}

/* Whether c has used its share of this turn of the loop. */
static int
conn_spent(struct conn *c)
{
    if (c->turn != c->w->turn) {
        c->turn = c->w->turn;
        c->turn_steps = 0;
    }
    return c->turn_steps >= CONN_TURN_STEPS && c->state != CONN_FLUSHING;
}

void
conn_pump(struct conn *c)
{
    struct pst_smtp_event ev;
    int rc, yield = 0;

    if (conn_stalled(c))
        return;
    /* The session acts only inside next_event(), and stops while much
     * output is unsent: drain events and output until neither moves, the
     * client stops taking the output, or c has had its share of this
     * turn. */
    for (;;) {
        int flushed;

        for (;;) {
            if (conn_spent(c)) {
                yield = 1;
                break;
            }
            conn_feed_backlog(c);
            rc = pst_smtp_server_next_event(c->s, &ev);
            if (rc < 0) {
                conn_close(c, "session error");
                return;
            }
            if (rc == 0) {
                /* No event, but the session may have made room (an
                 * overlong line it discards): feed more, or stop. */
                size_t before = c->backlog.len;

                conn_feed_backlog(c);
                if (c->backlog.len == before)
                    break;
                continue;
            }
            if (ev.type == PST_SMTP_EV_CLOSE) {
                /* The session's own reason (a broken security layer),
                 * or what its last reply says. */
                conn_log_close(c, ev.reason != NULL ? ev.reason
                                                    : conn_close_reason(c));
                conn_enter_state(c, CONN_FLUSHING);
                continue;
            }
            if (ev.type != PST_SMTP_EV_DATA)
                c->turn_steps++;
            if (conn_on_event(c, &ev) < 0) {
                conn_close(c, "internal error");
                return;
            }
            /* Held by the throttle: nothing moves until the delay
             * ends. */
            if (conn_stalled(c))
                return;
        }
        /* The client does not take what it has: the session keeps its
         * replies (and so stops acting, past 16 KiB of them) until
         * on_write() sees the queue drained.  The goodbye goes out
         * all the same (bounded: the session says no more after it). */
        if (c->out_blocked && c->state != CONN_FLUSHING)
            break;
        flushed = conn_flush(c);
        if (flushed < 0) {
            conn_close(c, "write failed");
            return;
        }
        if (flushed == 0 || conn_closed(c) || yield)
            break;
        c->turn_steps++;
    }
    if (c->state == CONN_FLUSHING) {
        conn_finish(c);
        return;
    }
    if (yield)
        conn_defer(c);
    /* The client closed its side and the session waits for input that
     * will not come: its replies are out (or going); finish. */
    if (c->peer_eof && c->state == CONN_RUNNING && !c->out_blocked &&
        !yield) {
        conn_log_close(c, "client closed");
        conn_enter_state(c, CONN_FLUSHING);
        conn_finish(c);
        return;
    }
    /* Stopping: a session that has finished its transaction goes now
     * rather than at the end of the grace period. */
    if (c->w->stopping) {
        enum pst_smtp_state st = pst_smtp_server_state(c->s, NULL);

        if (st == PST_SMTP_STATE_IDLE || st == PST_SMTP_STATE_GREETING) {
            c->close_why = "shutdown";
            if (pst_smtp_server_close(c->s, PST_SMTP_CLOSE_SHUTDOWN) == 0) {
                conn_pump(c);
                return;
            }
        }
    }
    /* Flow control: stop reading while the session cannot take more,
     * or the client does not take our output. */
    if ((c->backlog.len >= CONN_BACKLOG_MAX / 2 || c->out_blocked ||
         c->peer_eof) && c->reading) {
        conn_read_stop(c);
    } else if (c->backlog.len < CONN_BACKLOG_MAX / 2 && !c->out_blocked &&
               !c->peer_eof && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    }
    conn_arm_timer(c);
}

/* --- Reading --------------------------------------------------------------
 */

int
conn_take_plain(struct conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;

    /* Nothing waits before these bytes and the pump may run: they go
     * straight to the session, as conn_pump() would feed them first
     * thing (the session only buffers them there).  The backlog keeps
     * what the session does not take now, and all of it while the pump
     * is stalled, so flow control (on_alloc(), the end of conn_pump())
     * sees what it always did; a read no longer costs a copy, and a
     * wipe and free of the backlog's memory. */
    if (c->backlog.len == 0 && c->s != NULL && !conn_stalled(c)) {
        if (pst_smtp_server_feed(c->s, p, n, &used) < 0)
            used = 0; /* the pump's next_event() reports the session's
                         error; the bytes wait as they did */
        p += used;
        n -= used;
        if (n == 0)
            return 0;
    }
    if (pst_buf_append(&c->backlog, p, n) < 0) {
        /* The client ignores flow control: too much pipelined input. */
        log_event(LOG_LEVEL_WARN, "input_overflow", "sid", c->sid, NULL);
        return -1;
    }
    return 0;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t room = CONN_BACKLOG_MAX - c->backlog.len, n = WORKER_READ_CHUNK;

    (void)suggested;
    /* Never read more than the backlog can take: reading stops at half
     * full (conn_pump), so a pipelining client that sends faster than
     * the session acts is slowed by TCP, not cut off as an overflow. */
    if (room <= CONN_TLS_SLACK) {
        buf->base = NULL;
        buf->len = 0; /* on_read gets UV_ENOBUFS */
        return;
    }
    if (n > room - CONN_TLS_SLACK)
        n = room - CONN_TLS_SLACK;
    /* The loop's buffer: on_read() takes all of it before the next
     * read of any connection of this loop. */
    buf->base = (char *)c->w->rbuf;
    buf->len = n;
}

/*
 * The client closed its side (EOF, or close_notify under TLS).  It may
 * still read (a half-close: `printf ... | nc`), so what it sent before
 * is acted on and answered before we close: the pump finishes once the
 * session waits for input that cannot come.  During the TLS handshake
 * there is nothing to answer.
 */
static void
conn_peer_eof(struct conn *c)
{
    c->peer_eof = 1;
    conn_read_stop(c);
    if (c->state == CONN_FLUSHING) {
        if (c->shut_done)
            conn_close(c, NULL);
        return; /* on_shutdown() closes */
    }
    if (c->state == CONN_TLS_HANDSHAKE || c->state == CONN_ACCEPTED) {
        conn_close(c, "client closed");
        return;
    }
    conn_pump(c);
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)st;
    int rc = 0;

    if (n == 0)
        return;
    if (n == UV_ENOBUFS && c->backlog.len > 0) {
        /* The backlog is full: wait until the session takes some
         * (conn_pump reads again below half full). */
        if (c->reading) {
            uv_read_stop(st);
            c->reading = 0;
        }
        conn_pump(c);
        return;
    }
    if (n == UV_EOF && !conn_closed(c)) {
        conn_peer_eof(c);
        return;
    }
    if (n < 0) {
        if (!conn_closed(c))
            conn_close(c, uv_strerror((int)n));
        return;
    }
    if (conn_ending(c)) {
        OPENSSL_cleanse(buf->base, (size_t)n);
        return;
    }
    c->last_input_ns = uv_hrtime();
    if (c->tls != NULL)
        rc = conn_take_tls(c, (const uint8_t *)buf->base, (size_t)n);
    else
        rc = conn_take_plain(c, (const uint8_t *)buf->base, (size_t)n);
    OPENSSL_cleanse(buf->base, (size_t)n);
    if (rc < 0) {
        conn_close(c, "input error");
        return;
    }
    if (rc > 0) {
        conn_peer_eof(c);
        return;
    }
    if (c->state == CONN_TLS_HANDSHAKE) {
        conn_arm_timer(c);
        return;
    }
    conn_pump(c);
}

/* --- The start ------------------------------------------------------------
 */

static void
session_trace(void *ctx, enum pst_smtp_trace what, const char *text,
              size_t len)
{
    struct conn *c = ctx;
    struct log_line l;

    log_begin(&l, LOG_LEVEL_DEBUG, what == PST_SMTP_TRACE_CLIENT ? "client"
                                   : what == PST_SMTP_TRACE_SERVER ? "server"
                                                                   : "state");
    log_kv(&l, "sid", c->sid);
    log_kv_bytes(&l, "line", text, len);
    log_end(&l);
}

struct conn *
conn_new(struct worker *w, size_t lidx, size_t *total)
{
    struct server *srv = w->srv;
    struct conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->w = w;
    c->srv = srv;
    c->lidx = lidx;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    uv_timer_init(&w->loop, &c->hold);
    c->tcp.data = c;
    c->timer.data = c;
    c->hold.data = c;
    c->handles_open = 3;
    c->started = uv_now(&w->loop);
    c->sc = snapshot_ref(w->sc);
    pst_buf_init(&c->backlog, CONN_BACKLOG_MAX, 1);
    pst_buf_init(&c->dbuf, CONN_DATA_MAX + 2 * PST_SMTP_MAX_TEXT_LINE, 0);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->nconn++;
    *total = atomic_fetch_add(&srv->nconn, 1) + 1;
    snprintf(c->sid, sizeof(c->sid), "%llx",
             (unsigned long long)atomic_fetch_add(&srv->seq, 1) + 1);
    return c;
}

void
conn_accepted(struct conn *c)
{
    struct sockaddr_storage sa;
    int namelen = sizeof(sa);

    uv_tcp_nodelay(&c->tcp, 1);
    memset(&sa, 0, sizeof(sa));
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &namelen);
    conn_set_peer(c, &sa);
}

void
conn_set_peer(struct conn *c, const struct sockaddr_storage *sa)
{
    c->peer_sa = *sa;
    if (c->peer_sa.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&c->peer_sa)->sin6_addr,
                  c->peer, sizeof(c->peer));
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&c->peer_sa)->sin_addr,
                  c->peer, sizeof(c->peer));
}

void
conn_start(struct conn *c, enum conn_refuse refuse)
{
    struct pst_smtp_server_config scfg;

    /* The client's profile, if any, before anything is sent. */
    conn_profile_pick(c, &scfg);
    scfg.timestamp = (uint64_t)time(NULL);
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        scfg.trace = session_trace;
        scfg.trace_ctx = c;
    }
    if (pst_smtp_server_new(&scfg, &c->s) < 0) {
        conn_close(c, NULL);
        return;
    }
    if (refuse != REFUSE_NONE)
        c->close_why = refuse == REFUSE_LOCKOUT ? "auth lockout"
                                                : "too many connections";
    log_event(LOG_LEVEL_INFO, "connect", "sid", c->sid, "peer", c->peer,
              "listener", c->w->ls[c->lidx].name,
              refuse != REFUSE_NONE ? "refused" : NULL,
              refuse != REFUSE_NONE ? c->close_why : NULL, NULL);
    if (refuse != REFUSE_NONE) {
        /* RFC 5321 §3.1: a 421 instead of the greeting.  Without TLS even
         * on an implicit-TLS port: the client sees a handshake failure. */
        if (scfg.tls == PST_SMTP_TLS_IMPLICIT ||
            pst_smtp_server_close(c->s, refuse == REFUSE_LOCKOUT
                                            ? PST_SMTP_CLOSE_AUTH_LOCKOUT
                                            : PST_SMTP_CLOSE_BUSY) < 0) {
            conn_close(c, c->close_why);
            return;
        }
        conn_pump(c);
        return;
    }
    if (scfg.tls == PST_SMTP_TLS_IMPLICIT) {
        c->implicit = 1;
        if (conn_tls_begin(c) < 0) {
            conn_close(c, NULL);
            return;
        }
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
        conn_arm_timer(c);
        return;
    }
    if (pst_smtp_server_start(c->s) < 0) {
        conn_close(c, NULL);
        return;
    }
    conn_enter_state(c, CONN_RUNNING);
    conn_pump(c);
}

void
conn_stop(struct conn *c, int force)
{
    enum pst_smtp_state st;

    if (conn_closed(c))
        return;
    /* No session yet: still reading a PROXY header (proxy.h). */
    if (c->s == NULL) {
        conn_close(c, NULL);
        return;
    }
    if (!force) {
        st = pst_smtp_server_state(c->s, NULL);
        if (st != PST_SMTP_STATE_GREETING && st != PST_SMTP_STATE_IDLE)
            return;
    }
    /* A message being stored gets its answer (250, or 451 once
     * timeout_final passes) before the 421: a 421 for a message that
     * was in fact accepted would have the client send it again. */
    if ((c->job != NULL && c->job->kind == WORK_COMMIT) || c->data_end) {
        c->stop_after_job = 1;
        return;
    }
    /* A password check or SCRAM keys: nobody will want them. */
    (void)conn_give_up(c, "shutdown");
    c->close_why = "shutdown";
    if ((force && conn_in_handshake(c)) ||
        pst_smtp_server_close(c->s, PST_SMTP_CLOSE_SHUTDOWN) < 0)
        conn_close(c, c->close_why);
    else
        conn_pump(c);
}
