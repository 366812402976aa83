/*
 * posternd - reading a connection's PROXY protocol header before its
 * session (proxy.h: proxy_begin(), proxy_end()); the parser is proxy.c.
 *
 * Section numbers are those of HAProxy's doc/proxy-protocol.txt.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "session.h"

/* A connection waiting for its header (c->proxy). */
struct proxy_read {
    void (*done)(struct conn *c);
    enum config_proxy version;
    size_t len;
    uint8_t buf[PROXY_HDR_MAX];
};

void
proxy_end(struct conn *c)
{
    free(c->proxy);
    c->proxy = NULL;
}

/* Close c without a reply: the proxy (or whoever it is) gets nothing. */
static void
proxy_refuse(struct conn *c, const char *why)
{
    log_event(LOG_LEVEL_INFO, "proxy_refused", "sid", c->sid, "proxy",
              c->peer, "listener", c->w->ls[c->lidx].name, "reason", why,
              NULL);
    proxy_end(c);
    conn_close(c, NULL);
}

/* The peer closed (error 0) or failed before its header was whole.  A
 * load balancer's health check connects and closes without a byte: a
 * debug line only, not one every few seconds at info. */
static void
proxy_gone(struct conn *c, int error)
{
    log_event(c->proxy->len == 0 && error == 0 ? LOG_LEVEL_DEBUG
                                               : LOG_LEVEL_INFO,
              "proxy_refused", "sid", c->sid, "proxy", c->peer, "listener",
              c->w->ls[c->lidx].name, "reason",
              error != 0              ? uv_strerror(error)
              : c->proxy->len == 0    ? "closed before the header"
                                      : "closed in the header",
              NULL);
    proxy_end(c);
    conn_close(c, NULL);
}

static void
on_proxy_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;

    if (conn_closed(c) || c->proxy == NULL)
        return;
    proxy_refuse(c, c->proxy->len == 0 ? "no header in time"
                                       : "header incomplete in time");
}

/* The header is whole: c's peer is its client from now on. */
static void
proxy_complete(struct conn *c, const struct proxy_hdr *h)
{
    struct proxy_read *pr = c->proxy;
    void (*done)(struct conn *) = pr->done;
    char proxy[sizeof(c->peer)];

    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    snprintf(proxy, sizeof(proxy), "%s", c->peer);
    if (!h->local)
        conn_set_peer(c, &h->src);
    log_event(LOG_LEVEL_INFO, "proxy", "sid", c->sid, "peer", c->peer,
              "proxy", proxy, "version",
              pr->version == CONFIG_PROXY_V1 ? "v1" : "v2",
              h->local ? "command" : NULL, "local", NULL);
    proxy_end(c);
    done(c);
}

/* Readable (the alloc callback gave no buffer: libuv says so with
 * UV_ENOBUFS and reads nothing).  Take what is certainly header: for
 * version 2 the length it announces; for version 1 a peek shows where
 * its LF is.  Nothing past the header leaves the socket. */
static void
on_proxy_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)st;
    struct proxy_read *pr = c->proxy;
    struct proxy_hdr h;
    uv_os_fd_t fd;
    size_t want;
    ssize_t n;
    int rc;

    (void)buf;
    if (pr == NULL || conn_closed(c))
        return;
    if (nread != UV_ENOBUFS) {
        if (nread < 0)
            proxy_gone(c, nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
        return;
    want = proxy_want(pr->version, pr->buf, pr->len);
    if (pr->version == CONFIG_PROXY_V1) {
        const uint8_t *lf;

        do
            n = recv(fd, pr->buf + pr->len, want, MSG_PEEK);
        while (n < 0 && errno == EINTR);
        if (n > 0 && (lf = memchr(pr->buf + pr->len, '\n', (size_t)n)))
            want = (size_t)(lf - (pr->buf + pr->len)) + 1;
        else if (n > 0)
            want = (size_t)n;
    }
    do
        n = recv(fd, pr->buf + pr->len, want, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        proxy_gone(c, n == 0 ? 0 : uv_translate_sys_error(errno));
        return;
    }
    pr->len += (size_t)n;
    rc = proxy_parse(pr->version, pr->buf, pr->len, &h);
    if (rc < 0)
        proxy_refuse(c, "invalid header");
    else if (rc > 0)
        proxy_complete(c, &h);
}

static void
on_proxy_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = NULL;
    buf->len = 0;
}

void
proxy_begin(struct conn *c, void (*done)(struct conn *c))
{
    const struct config *cfg = c->sc->cfg;
    const struct config_listener *cl = &cfg->listeners[c->lidx];
    struct proxy_read *pr;

    /* §1: "The receiver SHOULD ensure proper access filtering so that
     * only trusted proxies are allowed to use this protocol." */
    if (!config_cidrs_match(&cl->proxy_from,
                            (const struct sockaddr *)&c->peer_sa)) {
        log_event(LOG_LEVEL_INFO, "proxy_refused", "sid", c->sid, "peer",
                  c->peer, "listener", c->w->ls[c->lidx].name, "reason",
                  "not in proxy_from", NULL);
        conn_close(c, NULL);
        return;
    }
    pr = calloc(1, sizeof(*pr));
    if (pr == NULL) {
        conn_close(c, NULL);
        return;
    }
    pr->done = done;
    pr->version = cl->proxy_protocol;
    c->proxy = pr;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_proxy_alloc,
                      on_proxy_read) < 0) {
        proxy_end(c);
        conn_close(c, NULL);
        return;
    }
    uv_timer_start(&c->timer, on_proxy_timeout,
                   (uint64_t)cfg->timeout_command * 1000, 0);
}
