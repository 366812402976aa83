/*
 * posternd - one connection to a relay's smarthost (see relay_conn.h).
 *
 * Life of a connection: RESOLVING (uv_getaddrinfo) -> CONNECTING (each
 * address in turn) -> SESSION (the client session of libpostern, with
 * TLS through src/common's pump) -> CLOSING (handles closing; freed when
 * the last one is closed and no file request is in flight).  The
 * session runs with `reuse` (several messages) and `partial_rcpt` (each
 * RCPT's reply is reported): a READY event asks for the next job.  With
 * none, the connection may stay idle (a connection cache, as Postfix's
 * smtp_connection_cache_on_demand) until the manager wakes it with a job
 * or the idle time is over (QUIT).  No RSET is owed after a transaction
 * that ended with the dot's 250; after one that failed the session sends
 * RSET before the next MAIL (RFC 5321 §4.1.1.5).  A smarthost may close
 * an idle connection at any time (EOF, or 421: RFC 5321 §3.8).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/sasl.h>
#include <postern/smtp_client.h>

#include "log.h"
#include "relay_conn_int.h"
#include "tls.h"

static void rc_free(struct relay_conn *c);

void
relay_job_clear(struct relay_job *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n; i++) {
        free(j->rcpt != NULL ? j->rcpt[i] : NULL);
        free(j->reply != NULL ? j->reply[i] : NULL);
    }
    free(j->rcpt);
    free(j->reply);
    free(j->idx);
    free(j->code);
    free(j->sender);
    free(j->rewrite_from);
    free(j->add_date);
    free(j->add_msgid);
    free(j->msg_reply);
    j->rcpt = NULL;
    j->reply = NULL;
    j->idx = NULL;
    j->code = NULL;
    j->sender = NULL;
    j->rewrite_from = NULL;
    j->add_date = NULL;
    j->add_msgid = NULL;
    j->msg_reply = NULL;
    j->n = 0;
}

const char *
relay_conn_peer(const struct relay_conn *c)
{
    return c->peer;
}

void
rc_log(const struct relay_conn *c, enum log_level lv, const char *event,
       const char *k1, const char *v1, const char *k2, const char *v2)
{
    log_event(lv, event, "relay", c->cfg.name, "host", c->cfg.host, "peer",
              c->peer[0] != '\0' ? c->peer : "-", k1, v1, k2, v2, NULL);
}

/* --- Timers ---------------------------------------------------------- */

static void
on_timeout(uv_timer_t *t)
{
    struct relay_conn *c = t->data;

    rc_log(c, LOG_LEVEL_INFO, "relay_timeout", "state",
           c->state == RC_SESSION ? "session" : "connect", NULL, NULL);
    rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE, 0,
             "timed out waiting for the smarthost");
}

static void
rc_arm(struct relay_conn *c, unsigned seconds)
{
    uv_timer_start(&c->timer, on_timeout, (uint64_t)seconds * 1000, 0);
}

/* --- Writing --------------------------------------------------------- */

struct rc_write {
    uv_write_t req;
    struct relay_conn *c;
    size_t len;
    uint8_t data[];
};

static void
on_write(uv_write_t *req, int status)
{
    struct rc_write *w = (struct rc_write *)req;
    struct relay_conn *c = w->c;

    c->write_queue -= w->len;
    OPENSSL_cleanse(w->data, w->len); /* AUTH lines */
    free(w);
    if (c->state == RC_CLOSING)
        return;
    if (status < 0) {
        rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE, 0,
                 uv_strerror(status));
        return;
    }
    /* Room again: read on in the message file. */
    if (c->data_phase && !c->eof && c->reqs == 0 &&
        c->write_queue < RC_WRITE_HIGH / 2)
        rc_read_file(c);
}

static int
rc_write_raw(struct relay_conn *c, const uint8_t *p, size_t n)
{
    struct rc_write *w;
    uv_buf_t b;

    if (n == 0 || c->state == RC_CLOSING)
        return 0;
    w = malloc(sizeof(*w) + n);
    if (w == NULL)
        return -1;
    w->c = c;
    w->len = n;
    memcpy(w->data, p, n);
    b = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)c->tcp, &b, 1, on_write) < 0) {
        free(w);
        return -1;
    }
    c->write_queue += n;
    return 0;
}

static int
rc_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return rc_write_raw(ctx, p, n) < 0 ? -1 : 0;
}

static int
rc_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    struct relay_conn *c = ctx;

    return pst_smtp_client_feed(c->s, p, n) < 0 ? -1 : 0;
}

static int
rc_tls_established(void *ctx)
{
    struct relay_conn *c = ctx;

    rc_log(c, LOG_LEVEL_INFO, "relay_tls", "version", tls_protocol(c->tls),
           "cipher", tls_cipher(c->tls));
    /* STARTTLS: RFC 3207 §4.2, forget what was learnt, EHLO again.
     * (Implicit TLS: the session knew from the start.) */
    if (c->cfg.tls == CONFIG_RELAY_TLS_STARTTLS &&
        pst_smtp_client_tls_started(c->s) < 0)
        return -1;
    /* Channel binding (RFC 5802 §6, RFC 9266): SCRAM-*-PLUS preferred
     * when the smarthost offers it; without it, a plain SCRAM exchange
     * says "y" so a stripped -PLUS is noticed.  No binding safe to use
     * (TLS 1.2 without the extended master secret): none is given. */
    {
        uint8_t cb[TLS_UNIQUE_MAX > TLS_EXPORTER_LEN ? TLS_UNIQUE_MAX
                                                     : TLS_EXPORTER_LEN];
        const char *type;
        size_t len;
        int rc = 0;

        if (tls_channel_binding(c->tls, &type, cb, sizeof(cb), &len) == 0)
            rc = pst_smtp_client_tls_binding(c->s, type, cb, len);
        OPENSSL_cleanse(cb, sizeof(cb));
        return rc < 0 ? -1 : 0;
    }
}

static const struct tls_io rc_tls_io = {
    .send = rc_tls_send,
    .recv = rc_tls_recv,
    .established = rc_tls_established,
};

/* Send what the session has; returns -1 when the connection failed. */
int
rc_flush(struct relay_conn *c)
{
    const uint8_t *p;
    size_t n;

    pst_smtp_client_output(c->s, &p, &n);
    if (n == 0)
        return 0;
    if (c->tls_on) {
        int rc = tls_send(c->tls, p, n);

        if (rc == TLS_WANT_MORE)
            return 0; /* after the handshake */
        if (rc != TLS_OK)
            return -1;
    } else if (rc_write_raw(c, p, n) < 0) {
        return -1;
    }
    pst_smtp_client_consume(c->s, n);
    return 0;
}

/* --- The session ----------------------------------------------------- */

static char *
dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* Say QUIT (the session is waiting for a message). */
static int
rc_quit(struct relay_conn *c)
{
    c->idle = 0;
    c->quitting = 1;
    rc_arm(c, c->cfg.timeout);
    return pst_smtp_client_quit(c->s);
}

static void
on_idle_over(uv_timer_t *t)
{
    struct relay_conn *c = t->data;

    if (c->state != RC_SESSION || !c->idle)
        return;
    if (rc_quit(c) < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "session error");
        return;
    }
    rc_pump(c);
}

/* Give the next job to the session, or stay idle, or say QUIT. */
static int
rc_next_job(struct relay_conn *c)
{
    int linger = 0;
    struct relay_job *j = c->ops->next_job(c->ctx, c, &linger);

    if (j == NULL) {
        if (!linger || c->cfg.idle_ms == 0)
            return rc_quit(c);
        if (!c->idle) {
            /* The reply timeout no longer runs: nothing is asked. */
            c->idle = 1;
            uv_timer_start(&c->timer, on_idle_over, c->cfg.idle_ms, 0);
        }
        return 0;
    }
    if (c->idle) {
        c->idle = 0;
        j->after_idle = 1;
        rc_arm(c, c->cfg.timeout);
    }
    c->job = j;
    j->code = calloc(j->n, sizeof(*j->code));
    j->reply = calloc(j->n, sizeof(*j->reply));
    if (j->code == NULL || j->reply == NULL)
        return PST_ENOMEM;
    free(c->fail_reply);
    c->fail_reply = NULL;
    c->fail_code = 0;
    return pst_smtp_client_next_message(c->s, j->sender,
                                        (const char *const *)j->rcpt, j->n,
                                        0, 0);
}

/* The job is over: back to the manager. */
static void
rc_job_done(struct relay_conn *c)
{
    struct relay_job *j = c->job;

    c->job = NULL;
    if (j == NULL)
        return;
    if (c->fd >= 0) {
        uv_fs_t close_req;

        uv_fs_close(NULL, &close_req, c->fd, NULL);
        uv_fs_req_cleanup(&close_req);
        c->fd = -1;
    }
    c->data_phase = 0;
    pst_buf_clear(&c->hdr);
    c->ops->job_done(c->ctx, c, j);
}

static int
rc_on_event(struct relay_conn *c, const struct pst_smtp_client_event *ev)
{
    char code[8];

    switch (ev->type) {
    case PST_SMTP_CLIENT_EV_STARTTLS:
        if (c->tls == NULL)
            return -1;
        c->tls_on = 1;
        tls_set_io(c->tls, &rc_tls_io, c);
        /* A client speaks first: the ClientHello. */
        return tls_input(c->tls, NULL, 0) < 0 ? -1 : 0;
    case PST_SMTP_CLIENT_EV_EHLO:
        return 0;
    case PST_SMTP_CLIENT_EV_AUTH:
        rc_log(c, LOG_LEVEL_INFO, "relay_auth_ok", "user", c->cfg.user,
               "mech", ev->mech);
        return 0;
    case PST_SMTP_CLIENT_EV_RCPT:
        if (c->job != NULL && ev->rcpt_index < c->job->n) {
            c->job->code[ev->rcpt_index] = (unsigned)ev->code;
            free(c->job->reply[ev->rcpt_index]);
            c->job->reply[ev->rcpt_index] = dup_or_null(ev->reply);
        }
        return 0;
    case PST_SMTP_CLIENT_EV_DATA:
        if (c->job == NULL)
            return -1;
        rc_start_data(c);
        return 0;
    case PST_SMTP_CLIENT_EV_DONE:
        if (c->job != NULL) {
            c->job->sent = 1;
            c->job->msg_code = (unsigned)ev->code;
            free(c->job->msg_reply);
            c->job->msg_reply = dup_or_null(ev->reply);
            snprintf(code, sizeof(code), "%d", ev->code);
            rc_log(c, LOG_LEVEL_INFO, "relay_sent", "qid", c->job->id,
                   "reply", ev->reply != NULL ? ev->reply : "-");
        }
        return 0;
    case PST_SMTP_CLIENT_EV_FAIL:
        /* A READY after it: the message failed; a CLOSE: the session. */
        c->fail_code = (unsigned)ev->code;
        free(c->fail_reply);
        c->fail_reply = dup_or_null(ev->reply);
        snprintf(code, sizeof(code), "%d", ev->code);
        rc_log(c, LOG_LEVEL_INFO, "relay_refused", "stage", ev->stage,
               "reply", ev->reply != NULL ? ev->reply : pst_errname(ev->error));
        if (c->job != NULL && ev->code != 0) {
            c->job->msg_code = (unsigned)ev->code;
            free(c->job->msg_reply);
            c->job->msg_reply = dup_or_null(ev->reply);
        }
        return 0;
    case PST_SMTP_CLIENT_EV_READY:
        c->ready_seen = 1;
        rc_arm(c, c->cfg.timeout);
        rc_job_done(c);
        return rc_next_job(c) < 0 ? -1 : 0;
    case PST_SMTP_CLIENT_EV_CLOSE:
        if (rc_flush(c) < 0)
            return -1;
        if (c->quitting && c->fail_code == 0)
            rc_close(c, RELAY_END_QUIT, 0, NULL);
        else
            rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE,
                     c->fail_code, c->fail_reply);
        return 0;
    }
    return 0;
}

void
rc_pump(struct relay_conn *c)
{
    struct pst_smtp_client_event ev;

    while (c->state == RC_SESSION &&
           pst_smtp_client_next_event(c->s, &ev) == 1) {
        if (rc_on_event(c, &ev) < 0) {
            rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE,
                     c->fail_code, c->fail_reply != NULL
                                       ? c->fail_reply
                                       : "session error");
            return;
        }
    }
    if (c->state == RC_SESSION && rc_flush(c) < 0)
        rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE, 0,
                 "write failed");
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct relay_conn *c = h->data;

    (void)suggested;
    *b = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct relay_conn *c = st->data;
    int rc;

    if (n == 0 || c->state != RC_SESSION)
        return;
    if (n < 0) {
        rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE,
                 c->fail_code,
                 c->fail_reply != NULL ? c->fail_reply
                                       : "connection closed by the smarthost");
        return;
    }
    rc_arm(c, c->cfg.timeout);
    if (c->tls_on) {
        rc = tls_input(c->tls, (const uint8_t *)b->base, (size_t)n);
        if (rc == TLS_STOPPED)
            return;
        if (rc == TLS_CLOSED) {
            /* The server's close_notify after its last reply (221 to our
             * QUIT, or a 421): act on what came before it first. */
            rc_pump(c);
            if (c->state == RC_SESSION)
                rc_close(c, c->quitting && c->fail_code == 0
                                ? RELAY_END_QUIT
                                : c->ready_seen ? RELAY_END_BROKEN
                                                : RELAY_END_UNUSABLE,
                         c->fail_code, c->fail_reply != NULL
                                           ? c->fail_reply
                                           : "TLS closed by the smarthost");
            return;
        }
        if (rc < 0) {
            rc_log(c, LOG_LEVEL_INFO, "relay_tls_failed", "error",
                   tls_error(c->tls), NULL, NULL);
            rc_close(c, c->ready_seen ? RELAY_END_BROKEN : RELAY_END_UNUSABLE,
                     c->fail_code, c->fail_reply != NULL ? c->fail_reply
                                                         : tls_error(c->tls));
            return;
        }
    } else if (pst_smtp_client_feed(c->s, (const uint8_t *)b->base,
                                    (size_t)n) < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "session error");
        return;
    }
    OPENSSL_cleanse(b->base, (size_t)n);
    rc_pump(c);
}

/* --- Connecting ------------------------------------------------------ */

static void rc_try_next(struct relay_conn *c);

static int
rc_session_new(struct relay_conn *c)
{
    struct pst_sasl_client_config sasl = {
        .authcid = c->cfg.user,
        .host = c->cfg.host,
    };
    struct pst_smtp_client_config sc = {
        .helo = c->cfg.helo,
        .starttls = c->cfg.tls == CONFIG_RELAY_TLS_STARTTLS
                        ? PST_SMTP_CLIENT_STARTTLS_REQUIRED
                        : PST_SMTP_CLIENT_STARTTLS_NEVER,
        .implicit_tls = c->cfg.tls == CONFIG_RELAY_TLS_IMPLICIT,
        .sasl = c->cfg.user != NULL ? &sasl : NULL,
        .partial_rcpt = 1,
        .reuse = 1,
        .mechs = c->cfg.mechs,
    };

    if (c->cfg.bearer) {
        /* XOAUTH2 / OAUTHBEARER (RFC 7628 §3.1: host= and port=). */
        sasl.token = c->cfg.secret;
        sasl.token_len = c->cfg.secret_len;
        sasl.oauth_host = c->cfg.host;
        sasl.oauth_port = c->cfg.port;
    } else {
        sasl.password = c->cfg.secret;
        sasl.password_len = c->cfg.secret_len;
    }
    return pst_smtp_client_new(&sc, &c->s);
}

static void
on_tcp_closed(uv_handle_t *h)
{
    struct relay_conn *c = h->data;

    free(h);
    if (--c->handles == 0 && c->reqs == 0 && c->state == RC_CLOSING)
        rc_close(c, c->end, c->end_code, c->end_reply); /* free */
}

/* Close this attempt's socket (asynchronously: its memory goes in
 * on_tcp_closed()). */
static void
rc_drop_tcp(struct relay_conn *c)
{
    if (c->tcp != NULL) {
        uv_close((uv_handle_t *)c->tcp, on_tcp_closed);
        c->tcp = NULL;
    }
}

static void
on_connect(uv_connect_t *req, int status)
{
    struct relay_conn *c = req->data;

    c->reqs--;
    if (c->state == RC_CLOSING) {
        rc_close(c, c->end, c->end_code, c->end_reply);
        return;
    }
    if (status < 0) {
        rc_log(c, LOG_LEVEL_INFO, "relay_connect_failed", "error",
               uv_strerror(status), NULL, NULL);
        rc_drop_tcp(c);
        if (c->ai_next == NULL) {
            rc_close(c, RELAY_END_UNUSABLE, 0, uv_strerror(status));
            return;
        }
        rc_try_next(c); /* the next address, on a fresh socket */
        return;
    }
    c->state = RC_SESSION;
    uv_tcp_nodelay(c->tcp, 1);
    rc_arm(c, c->cfg.timeout);
    if (rc_session_new(c) < 0) {
        rc_close(c, RELAY_END_UNUSABLE, 0, "cannot start the SMTP session");
        return;
    }
    if (c->cfg.tls == CONFIG_RELAY_TLS_IMPLICIT) {
        c->tls_on = 1;
        tls_set_io(c->tls, &rc_tls_io, c);
        if (tls_input(c->tls, NULL, 0) < 0) {
            rc_close(c, RELAY_END_UNUSABLE, 0, tls_error(c->tls));
            return;
        }
    }
    if (uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read) < 0) {
        rc_close(c, RELAY_END_UNUSABLE, 0, "cannot read");
        return;
    }
    rc_pump(c);
}

static void
rc_try_next(struct relay_conn *c)
{
    struct addrinfo *a;
    int rc;

    while ((a = c->ai_next) != NULL) {
        c->ai_next = a->ai_next;
        if (a->ai_family == AF_INET6)
            inet_ntop(AF_INET6,
                      &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr,
                      c->peer, sizeof(c->peer));
        else
            inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr,
                      c->peer, sizeof(c->peer));
        c->tcp = malloc(sizeof(*c->tcp));
        if (c->tcp == NULL) {
            rc_close(c, RELAY_END_UNUSABLE, 0, "out of memory");
            return;
        }
        uv_tcp_init(c->loop, c->tcp);
        c->tcp->data = c;
        c->handles++;
        c->state = RC_CONNECTING;
        c->connect.data = c;
        rc_arm(c, c->cfg.connect_timeout);
        rc = uv_tcp_connect(&c->connect, c->tcp, a->ai_addr, on_connect);
        if (rc == 0) {
            c->reqs++;
            return;
        }
        rc_log(c, LOG_LEVEL_INFO, "relay_connect_failed", "error",
               uv_strerror(rc), NULL, NULL);
        rc_drop_tcp(c);
    }
    rc_close(c, RELAY_END_UNUSABLE, 0, "no address of the smarthost answered");
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct relay_conn *c = req->data;

    c->ai = res;
    c->ai_next = res;
    c->reqs--;
    if (c->state == RC_CLOSING) {
        rc_close(c, c->end, c->end_code, c->end_reply);
        return;
    }
    if (status < 0 || res == NULL) {
        rc_log(c, LOG_LEVEL_INFO, "relay_resolve_failed", "error",
               uv_strerror(status), NULL, NULL);
        rc_close(c, RELAY_END_UNUSABLE, 0, uv_strerror(status));
        return;
    }
    rc_try_next(c);
}

static void
on_first_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

int
relay_conn_start(uv_loop_t *loop, const struct relay_conn_config *cfg,
                 const struct relay_conn_ops *ops, void *ctx,
                 struct relay_conn **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG};
    struct relay_conn *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL)
        return UV_ENOMEM;
    c->loop = loop;
    c->cfg = *cfg;
    /* Our own copies: a reload may free the configuration meanwhile. */
    c->name = strdup(cfg->name);
    c->host = strdup(cfg->host);
    c->helo = strdup(cfg->helo);
    c->user = cfg->user != NULL ? strdup(cfg->user) : NULL;
    c->secret = malloc(cfg->secret_len + 1);
    if (c->name == NULL || c->host == NULL || c->helo == NULL ||
        (cfg->user != NULL && c->user == NULL) || c->secret == NULL ||
        (cfg->tls != CONFIG_RELAY_TLS_NONE &&
         (cfg->tls_ctx == NULL || tls_new(cfg->tls_ctx, cfg->host,
                                          &c->tls) < 0))) {
        rc_free(c);
        return UV_ENOMEM;
    }
    if (cfg->secret_len > 0)
        memcpy(c->secret, cfg->secret, cfg->secret_len);
    c->secret[cfg->secret_len] = 0;
    c->cfg.name = c->name;
    c->cfg.host = c->host;
    c->cfg.helo = c->helo;
    c->cfg.user = c->user;
    c->cfg.secret = c->secret;
    c->cfg.tls_ctx = NULL; /* not kept */
    if (cfg->mechs != NULL) {
        size_t n = 0;

        while (cfg->mechs[n] != NULL)
            n++;
        c->mechs = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; c->mechs != NULL && i < n; i++)
            c->mechs[i] = strdup(cfg->mechs[i]);
        c->cfg.mechs = (const char *const *)c->mechs;
    }
    c->ops = ops;
    c->ctx = ctx;
    c->fd = -1;
    snprintf(c->port, sizeof(c->port), "%u", cfg->port);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    c->gai.data = c;
    c->state = RC_RESOLVING;
    rc = uv_getaddrinfo(loop, &c->gai, on_resolved, cfg->host, c->port,
                        &hints);
    if (rc < 0) {
        uv_close((uv_handle_t *)&c->timer, on_first_timer_closed);
        return rc;
    }
    c->reqs++;
    rc_arm(c, cfg->connect_timeout);
    *out = c;
    return 0;
}

/* --- Closing --------------------------------------------------------- */

static void
rc_free(struct relay_conn *c)
{
    if (c->ai != NULL)
        uv_freeaddrinfo(c->ai);
    pst_smtp_client_free(c->s);
    tls_free(c->tls);
    pst_buf_clear(&c->hdr);
    free(c->fail_reply);
    free(c->end_reply);
    free(c->name);
    free(c->host);
    free(c->helo);
    free(c->user);
    if (c->secret != NULL)
        OPENSSL_clear_free(c->secret, c->cfg.secret_len + 1);
    for (size_t i = 0; c->mechs != NULL && c->mechs[i] != NULL; i++)
        free(c->mechs[i]);
    free(c->mechs);
    free(c);
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct relay_conn *c = h->data;

    if (--c->handles == 0 && c->reqs == 0)
        rc_free(c);
}

/*
 * End the connection: give the job back, report, close the handles.
 * Called again (with the saved reason) by each request callback that was
 * in flight, and by the socket's close callback: the memory goes when
 * nothing of libuv refers to it any more.
 */
void
rc_close(struct relay_conn *c, enum relay_conn_end end, unsigned code,
         const char *reply)
{
    enum rc_state was = c->state;

    if (was == RC_CLOSING) {
        if (c->handles == 0 && c->reqs == 0)
            rc_free(c);
        return;
    }
    c->state = RC_CLOSING;
    c->end = end;
    c->end_code = code;
    c->end_reply = reply != NULL ? strdup(reply) : NULL;
    uv_timer_stop(&c->timer);
    if (c->job != NULL && c->job->msg_code == 0 && !c->job->sent) {
        free(c->job->msg_reply);
        c->job->msg_reply = dup_or_null(c->end_reply);
    }
    rc_job_done(c);
    c->ops->closed(c->ctx, c, end, code, c->end_reply);
    if (was == RC_RESOLVING)
        uv_cancel((uv_req_t *)&c->gai); /* its callback still comes */
    if (c->tcp != NULL && c->tls_on && tls_established(c->tls) &&
        tls_shutdown(c->tls) == 0)
        tls_flush(c->tls);
    rc_drop_tcp(c);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

int
relay_conn_idle(const struct relay_conn *c)
{
    return c->state == RC_SESSION && c->idle;
}

int
relay_conn_wake(struct relay_conn *c)
{
    if (!relay_conn_idle(c))
        return 0;
    if (rc_next_job(c) < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "session error");
        return -1;
    }
    if (c->idle)
        return 0;
    rc_pump(c);
    return c->state == RC_SESSION ? 1 : -1;
}

void
relay_conn_quit(struct relay_conn *c)
{
    if (!relay_conn_idle(c))
        return;
    if (rc_quit(c) < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "session error");
        return;
    }
    rc_pump(c);
}

void
relay_conn_abort(struct relay_conn *c)
{
    rc_close(c, RELAY_END_BROKEN, 0, "stopping");
}
