/*
 * posternd - the control socket (see control.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <postern/buf.h>

#include "control.h"
#include "log.h"
#include "relay.h"

#define CONTROL_OUT_MAX (64u << 20) /* octets of one answer */

struct control {
    uv_pipe_t pipe;
    uv_loop_t *loop;
    struct relay_mgr *m;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char pidfile[PATH_MAX];
};

struct control_conn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    uv_write_t write;
    struct control *ctl;
    struct pst_buf in, out;
    unsigned handles;
    int answered;
};

static void
on_conn_closed(uv_handle_t *h)
{
    struct control_conn *k = h->data;

    if (--k->handles == 0) {
        pst_buf_clear(&k->in);
        pst_buf_clear(&k->out);
        free(k);
    }
}

static void
conn_close(struct control_conn *k)
{
    if (!uv_is_closing((uv_handle_t *)&k->pipe)) {
        uv_close((uv_handle_t *)&k->pipe, on_conn_closed);
        uv_close((uv_handle_t *)&k->timer, on_conn_closed);
    }
}

static void
on_written(uv_write_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void
conn_reply(struct control_conn *k)
{
    uv_buf_t b;

    if (k->answered)
        return;
    k->answered = 1;
    /* The end of the answer: a line with a single dot. */
    pst_buf_append_str(&k->out, ".\n");
    b = uv_buf_init((char *)k->out.data, (unsigned)k->out.len);
    k->write.data = k;
    if (uv_write(&k->write, (uv_stream_t *)&k->pipe, &b, 1, on_written) < 0)
        conn_close(k);
}

/* A command that needed the disk has finished. */
static void
on_command_done(void *ctx, int rc)
{
    struct control_conn *k = ctx;

    if (rc != 0) {
        pst_buf_reset(&k->out);
        pst_buf_printf(&k->out, "error failed\n");
    }
    conn_reply(k);
}

static void
on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char buf[CONTROL_LINE_MAX];

    (void)h;
    (void)suggested;
    *b = uv_buf_init(buf, sizeof(buf));
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct control_conn *k = st->data;
    uint8_t *nl;
    int rc;

    if (n == 0)
        return;
    if (n < 0 || pst_buf_append(&k->in, b->base, (size_t)n) < 0) {
        conn_close(k);
        return;
    }
    nl = memchr(k->in.data, '\n', k->in.len);
    if (nl == NULL)
        return;
    uv_read_stop(st);
    *nl = '\0';
    if (nl > k->in.data && nl[-1] == '\r')
        nl[-1] = '\0';
    log_event(LOG_LEVEL_INFO, "control", "command", (char *)k->in.data,
              NULL);
    rc = relay_mgr_command(k->ctl->m, (const char *)k->in.data, &k->out,
                           on_command_done, k);
    if (rc != 1)
        conn_reply(k); /* else on_command_done() */
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct control *ctl = server->data;
    struct control_conn *k;

    if (status < 0)
        return;
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return;
    k->ctl = ctl;
    pst_buf_init(&k->in, CONTROL_LINE_MAX, 0);
    pst_buf_init(&k->out, CONTROL_OUT_MAX, 0);
    uv_pipe_init(ctl->loop, &k->pipe, 0);
    uv_timer_init(ctl->loop, &k->timer);
    k->pipe.data = k;
    k->timer.data = k;
    k->handles = 2;
    if (uv_accept(server, (uv_stream_t *)&k->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&k->pipe, on_alloc, on_read) < 0) {
        conn_close(k);
        return;
    }
    uv_timer_start(&k->timer, on_timeout, CONTROL_TIMEOUT_MS, 0);
}

static void
on_ctl_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Whether a posternd answers on the socket at path. */
static int
socket_alive(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), alive;

    if (fd < 0)
        return 0;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return alive;
}

int
control_start(uv_loop_t *loop, const char *spool, struct relay_mgr *m,
              struct control **out, char *err, size_t err_size)
{
    struct control *ctl = calloc(1, sizeof(*ctl));
    char pid[32];
    mode_t old;
    int fd, rc;

    *out = NULL;
    if (ctl == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    ctl->loop = loop;
    ctl->m = m;
    if (snprintf(ctl->path, sizeof(ctl->path), "%s/%s", spool,
                 CONTROL_SOCKET) >= (int)sizeof(ctl->path) ||
        snprintf(ctl->pidfile, sizeof(ctl->pidfile), "%s/%s", spool,
                 CONTROL_PIDFILE) >= (int)sizeof(ctl->pidfile)) {
        snprintf(err, err_size, "spool %s: name too long for a socket",
                 spool);
        free(ctl);
        return -1;
    }
    if (socket_alive(ctl->path)) {
        snprintf(err, err_size, "%s: another posternd runs on this spool",
                 ctl->path);
        free(ctl);
        return -1;
    }
    unlink(ctl->path); /* a dead posternd's */
    uv_pipe_init(loop, &ctl->pipe, 0);
    ctl->pipe.data = ctl;
    old = umask(077); /* the socket file: 0600 */
    rc = uv_pipe_bind(&ctl->pipe, ctl->path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->pipe, 16, on_connection);
    if (rc < 0) {
        snprintf(err, err_size, "%s: %s", ctl->path, uv_strerror(rc));
        uv_close((uv_handle_t *)&ctl->pipe, on_ctl_closed);
        return -1;
    }
    fd = open(ctl->pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
                                O_NOFOLLOW, 0644);
    if (fd >= 0) {
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

        if (write(fd, pid, (size_t)n) != n)
            log_event(LOG_LEVEL_WARN, "pidfile_failed", "path",
                      ctl->pidfile, "error", strerror(errno), NULL);
        close(fd);
    }
    *out = ctl;
    return 0;
}


void
control_stop(struct control *ctl)
{
    if (ctl == NULL)
        return;
    unlink(ctl->path);
    unlink(ctl->pidfile);
    uv_close((uv_handle_t *)&ctl->pipe, on_ctl_closed);
}
