/*
 * posternd - the metrics endpoint (metrics.h): libmicrohttpd parses HTTP,
 * libuv drives it on the control loop.
 *
 * libmicrohttpd runs in its "external polling" mode with epoll: it keeps
 * every socket it owns (the listening one, the scrapers') in an epoll
 * descriptor of its own, which a uv_poll_t watches; when that descriptor
 * is readable, or when the timeout MHD_get_timeout() gives runs out,
 * MHD_run() does the work without blocking.  So the endpoint has no
 * thread: each scrape runs on the control loop, where the relay's
 * counters live, and reads the loops' counters with atomic loads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "log.h"
#include "metrics.h"

#define METRICS_HTTP_CONNECTIONS 32   /* scrapers at once */
#define METRICS_HTTP_TIMEOUT 10       /* seconds a scraper may idle */
#define METRICS_OUT_MAX (4u << 20)    /* bytes of one exposition */

/* Prometheus' text format, version 0.0.4. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    unsigned handles;             /* open libuv handles */
    metrics_render_fn render;
    void *ctx;
};

static void http_run(struct metrics_http *h);

static void
on_http_timer(uv_timer_t *t)
{
    http_run(t->data);
}

static void
on_http_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    http_run(p->data);
}

/* Let libmicrohttpd do what is ready, then wake it again when it says. */
static void
http_run(struct metrics_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms;

    MHD_run(h->d);
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_http_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static __attribute__((format(printf, 2, 0))) void
on_http_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    log_vmsg(LOG_LEVEL_WARN, fmt, ap);
}

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned status, const char *type,
        const void *body, size_t len, const char *allow)
{
    struct MHD_Response *r;
    enum MHD_Result rc;

    r = MHD_create_response_from_buffer(len, (void *)body,
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) !=
            MHD_YES ||
        (allow != NULL &&
         MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) !=
             MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/*
 * One request (DESIGN.md "Operations"): GET /metrics answers the
 * exposition, other paths 404, other methods 405 (RFC 9110 §15.5.6, with
 * Allow).  HEAD is GET without the body (RFC 9110 §9.3.2; libmicrohttpd
 * leaves the body out).  A request body is read and dropped.
 */
static enum MHD_Result
on_http_request(void *cls, struct MHD_Connection *conn, const char *url,
                const char *method, const char *version,
                const char *upload_data, size_t *upload_data_size,
                void **req_cls)
{
    static int seen;
    struct metrics_http *h = cls;
    static const char not_found[] = "Not found: try /metrics\n";
    static const char no_method[] = "Method not allowed: GET /metrics\n";
    struct pst_buf out;
    enum MHD_Result rc;

    (void)version;
    (void)upload_data;
    /* The first call has the header only: answer once the request is
     * whole (the libmicrohttpd tutorial's pattern). */
    if (*req_cls == NULL) {
        *req_cls = &seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                       no_method, sizeof(no_method) - 1, "GET, HEAD");
    if (strcmp(url, "/metrics") != 0)
        return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain", not_found,
                       sizeof(not_found) - 1, NULL);
    pst_buf_init(&out, METRICS_OUT_MAX, 0);
    if (h->render(h->ctx, &out) < 0) {
        static const char failed[] = "metrics failed\n";

        pst_buf_clear(&out);
        log_event(LOG_LEVEL_WARN, "metrics_failed", "error",
                  "the exposition did not fit", NULL);
        return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
                       failed, sizeof(failed) - 1, NULL);
    }
    rc = respond(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, out.data, out.len,
                 NULL);
    pst_buf_clear(&out);
    return rc;
}

int
metrics_http_start(uv_loop_t *loop, const struct config_address *addr,
                   metrics_render_fn render, void *ctx,
                   struct metrics_http **out, char *err, size_t err_size)
{
    struct metrics_http *h = calloc(1, sizeof(*h));
    const union MHD_DaemonInfo *info;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

    *out = NULL;
    if (h == NULL)
        return PST_ENOMEM;
    if (addr->sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->loop = loop;
    h->render = render;
    h->ctx = ctx;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_http_request, h,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr->sa,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_HTTP_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_HTTP_TIMEOUT,
        MHD_OPTION_EXTERNAL_LOGGER, on_http_log, NULL,
        MHD_OPTION_END);
    if (h->d == NULL) {
        snprintf(err, err_size, "metrics = %s: cannot listen there",
                 addr->text);
        free(h);
        return PST_EIO;
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL ||
        uv_poll_init(loop, &h->poll, info->epoll_fd) < 0) {
        snprintf(err, err_size, "metrics = %s: no epoll descriptor",
                 addr->text);
        MHD_stop_daemon(h->d);
        free(h);
        return PST_EIO;
    }
    h->poll.data = h;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_http_poll);
    http_run(h);
    *out = h;
    return 0;
}

static void
on_http_closed(uv_handle_t *handle)
{
    struct metrics_http *h = handle->data;

    if (--h->handles == 0)
        free(h);
}

void
metrics_http_stop(struct metrics_http *h)
{
    if (h == NULL)
        return;
    /* Out of libuv's epoll set before libmicrohttpd closes the
     * descriptor. */
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->timer);
    MHD_stop_daemon(h->d);
    h->d = NULL;
    uv_close((uv_handle_t *)&h->poll, on_http_closed);
    uv_close((uv_handle_t *)&h->timer, on_http_closed);
}
