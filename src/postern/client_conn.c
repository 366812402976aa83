/*
 * The client's network loop: one connection, blocking with poll() and a
 * timeout per wait, TLS through the memory-BIO module, the SMTP client
 * session from libpostern doing all the protocol.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client.h"
#include "prompt.h"

#define CLIENT_CHUNK (16 * 1024)

struct client_conn {
    int fd;
    struct tls_ctx *ctx;
    struct tls *tls;
    const struct client_opts *o;
    struct pst_smtp_client *c;
    struct client_result *res;
    int timeout_ms;
    int eof;
};

/* --- URL, names ---------------------------------------------------------- */

int
client_url_parse(const char *s, struct server_url *u, char *err, size_t n)
{
    const char *p, *host, *end, *port = NULL;
    size_t hlen;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(s, "smtp://", 7) == 0) {
        p = s + 7;
        snprintf(u->port, sizeof(u->port), "587");
    } else if (strncasecmp(s, "smtps://", 8) == 0) {
        p = s + 8;
        u->implicit_tls = 1;
        snprintf(u->port, sizeof(u->port), "465");
    } else {
        snprintf(err, n, "'%s': the server must be smtp://HOST[:PORT] or "
                 "smtps://HOST[:PORT]", s);
        return -1;
    }
    if (*p == '[') { /* [IPv6]:port */
        host = p + 1;
        end = strchr(host, ']');
        if (end == NULL) {
            snprintf(err, n, "'%s': missing ']'", s);
            return -1;
        }
        hlen = (size_t)(end - host);
        p = end + 1;
        if (*p == ':')
            port = p + 1;
        else if (*p != '\0' && strcmp(p, "/") != 0) {
            snprintf(err, n, "'%s': junk after the address", s);
            return -1;
        }
    } else {
        host = p;
        hlen = strcspn(p, ":/");
        if (p[hlen] == ':')
            port = p + hlen + 1;
        else if (p[hlen] != '\0' && strcmp(p + hlen, "/") != 0) {
            snprintf(err, n, "'%s': junk after the host", s);
            return -1;
        }
    }
    if (hlen == 0 || hlen >= sizeof(u->host)) {
        snprintf(err, n, "'%s': no host", s);
        return -1;
    }
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (port != NULL) {
        size_t plen = strcspn(port, "/");
        char *e;
        unsigned long v;

        if (plen == 0 || plen >= sizeof(u->port)) {
            snprintf(err, n, "'%s': bad port", s);
            return -1;
        }
        memcpy(u->port, port, plen);
        u->port[plen] = '\0';
        v = strtoul(u->port, &e, 10);
        if (*e != '\0' || v == 0 || v > 65535 ||
            (port[plen] != '\0' && strcmp(port + plen, "/") != 0)) {
            snprintf(err, n, "'%s': bad port", s);
            return -1;
        }
    }
    return 0;
}

void
client_helo_name(char *buf, size_t n)
{
    struct addrinfo hints = {.ai_flags = AI_CANONNAME}, *ai = NULL;
    char host[256];

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if (getaddrinfo(host, NULL, &hints, &ai) == 0 && ai != NULL &&
        ai->ai_canonname != NULL && strchr(ai->ai_canonname, '.') != NULL)
        snprintf(buf, n, "%s", ai->ai_canonname);
    else
        snprintf(buf, n, "%s", host);
    if (ai != NULL)
        freeaddrinfo(ai);
}

/* RFC 5321 §4.1.3: a name without a dot is not a domain; use an address
 * literal of our end of the connection. */
static void
helo_from_socket(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char a[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET &&
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a,
                  sizeof(a)) != NULL)
        snprintf(buf, n, "[%s]", a);
    else if (ss.ss_family == AF_INET6 &&
             inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
                       a, sizeof(a)) != NULL)
        snprintf(buf, n, "[IPv6:%s]", a);
}

/* --- Password -------------------------------------------------------------
 */

/* "what: why a password could not be read" into err. */
static void
password_error(char *err, size_t n, const char *what, int rc)
{
    if (rc == PST_ELIMIT)
        snprintf(err, n, "%s: longer than %d bytes", what,
                 CLIENT_PASSWORD_MAX);
    else
        snprintf(err, n, "%s: %s", what,
                 rc == PST_EIO ? strerror(errno) : pst_strerror(rc));
}

int
client_password(const char *file, const char *prompt, char **out,
                size_t *len, char *err, size_t err_size)
{
    const char *env = getenv("POSTERN_PASSWORD");
    struct pst_buf pw;
    int fd, rc;

    if (file == NULL && env != NULL) {
        *len = strlen(env);
        *out = malloc(*len + 1);
        if (*out == NULL) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        memcpy(*out, env, *len + 1);
        return 0;
    }
    pst_buf_init(&pw, CLIENT_PASSWORD_MAX, 1);
    if (file != NULL) {
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, err_size, "%s: %s", file, strerror(errno));
            return -1;
        }
        rc = prompt_read_line(fd, &pw);
        close(fd);
        if (rc < 0 && rc != PST_ENOENT) {
            password_error(err, err_size, file, rc);
            pst_buf_clear(&pw);
            return -1;
        }
    } else {
        fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
        rc = fd < 0 ? PST_ENOTSUP : prompt_password(fd, fd, prompt, &pw);
        if (fd >= 0)
            close(fd);
        if (rc == PST_ENOTSUP) {
            snprintf(err, err_size, "no password: use --password-file, "
                     "POSTERN_PASSWORD, or run on a terminal");
            pst_buf_clear(&pw);
            return -1;
        }
        if (rc < 0 && rc != PST_ENOENT) {
            password_error(err, err_size, "cannot read the password", rc);
            pst_buf_clear(&pw);
            return -1;
        }
    }
    /* An empty file or line is an empty password. */
    *len = pw.len;
    *out = malloc(pw.len + 1);
    if (*out == NULL) {
        snprintf(err, err_size, "out of memory");
        pst_buf_clear(&pw);
        return -1;
    }
    if (pw.len > 0)
        memcpy(*out, pw.data, pw.len);
    (*out)[pw.len] = '\0';
    pst_buf_clear(&pw);
    return 0;
}

/* --- Socket I/O ----------------------------------------------------------
 */

static void
client_net_fail(struct client_conn *k, const char *what)
{
    /* After the message was accepted a close (before or after QUIT's
     * reply) changes nothing: keep the server's answer as the result. */
    if (k->res->ok)
        return;
    if (k->res->error == 0 && !k->res->net_error) {
        k->res->net_error = 1;
        k->res->error = PST_EIO;
        snprintf(k->res->text, sizeof(k->res->text), "%s", what);
    }
}

static int
client_wait(struct client_conn *k, short events)
{
    struct pollfd pfd = {.fd = k->fd, .events = events};
    int rc;

    do {
        rc = poll(&pfd, 1, k->timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        client_net_fail(k, "timed out waiting for the server");
        return -1;
    }
    if (rc < 0) {
        client_net_fail(k, strerror(errno));
        return -1;
    }
    return 0;
}

static int
client_send_raw(struct client_conn *k, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(k->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (client_wait(k, POLLOUT) < 0)
                return -1;
            continue;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            char msg[128];

            snprintf(msg, sizeof(msg), "send: %s", strerror(errno));
            client_net_fail(k, msg);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Send what the session has queued. */
static int
client_flush(struct client_conn *k)
{
    const uint8_t *p;
    size_t len;

    pst_smtp_client_output(k->c, &p, &len);
    if (len == 0)
        return 0;
    if (k->tls != NULL) {
        int rc = tls_send(k->tls, p, len);

        if (rc != TLS_OK) {
            char msg[300];

            /* TLS_STOPPED: the socket failed, and said so. */
            snprintf(msg, sizeof(msg), "TLS: %s", tls_error(k->tls));
            client_net_fail(k, msg);
            return -1;
        }
        pst_smtp_client_consume(k->c, len);
        return 0;
    }
    if (client_send_raw(k, p, len) < 0)
        return -1;
    pst_smtp_client_consume(k->c, len);
    return 0;
}

/* Read once from the socket (waiting up to the timeout). */
static int
client_recv(struct client_conn *k, uint8_t *buf, size_t cap, size_t *got)
{
    ssize_t n;

    for (;;) {
        n = recv(k->fd, buf, cap, 0);
        if (n > 0) {
            *got = (size_t)n;
            return 0;
        }
        if (n == 0) {
            k->eof = 1;
            client_net_fail(k, "the server closed the connection");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            char msg[128];

            snprintf(msg, sizeof(msg), "recv: %s", strerror(errno));
            client_net_fail(k, msg);
            return -1;
        }
        if (client_wait(k, POLLIN) < 0)
            return -1;
    }
}

/* The TLS pump's callbacks (tls_input(), tls_send()). */
static int
client_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return client_send_raw(ctx, p, n) < 0 ? -1 : 0;
}

static int
client_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    struct client_conn *k = ctx;

    return pst_smtp_client_feed(k->c, p, n) < 0 ? -1 : 0;
}

/* The channel binding of the connection, for SCRAM-*-PLUS (RFC 5802 §6):
 * the session prefers -PLUS when the server offers it.  None (TLS 1.2
 * without the extended master secret): plain SCRAM, as before. */
static int
client_tls_binding(struct client_conn *k)
{
    uint8_t cb[TLS_UNIQUE_MAX > TLS_EXPORTER_LEN ? TLS_UNIQUE_MAX
                                                 : TLS_EXPORTER_LEN];
    const char *type;
    size_t len;
    int rc = 0;

    if (tls_channel_binding(k->tls, &type, cb, sizeof(cb), &len) == 0) {
        snprintf(k->res->channel_binding, sizeof(k->res->channel_binding),
                 "%s", type);
        rc = pst_smtp_client_tls_binding(k->c, type, cb, len);
    }
    OPENSSL_cleanse(cb, sizeof(cb));
    return rc < 0 ? -1 : 0;
}

/* The handshake is over: note what was negotiated; after STARTTLS the
 * session starts again (RFC 3207 §4.2) before any plaintext reaches it. */
static int
client_tls_established(void *ctx)
{
    struct client_conn *k = ctx;
    const char *why = NULL;

    snprintf(k->res->tls_protocol, sizeof(k->res->tls_protocol), "%s",
             tls_protocol(k->tls));
    snprintf(k->res->tls_cipher, sizeof(k->res->tls_cipher), "%s",
             tls_cipher(k->tls));
    k->res->tls_bits = tls_cipher_bits(k->tls);
    k->res->have_cert = tls_peer_cert(k->tls, &k->res->cert) == 0;
    tls_peer_verify(k->tls, &why);
    snprintf(k->res->verify, sizeof(k->res->verify), "%s",
             why != NULL ? why : "unknown");
    if (!k->o->url.implicit_tls && pst_smtp_client_tls_started(k->c) < 0)
        return -1;
    return client_tls_binding(k);
}

static const struct tls_io client_tls_io = {
    .send = client_tls_send,
    .recv = client_tls_recv,
    .established = client_tls_established,
};

/* A status of tls_input() other than TLS_OK: record why, return -1. */
static int
client_tls_fail(struct client_conn *k, int rc)
{
    char msg[TLS_ERROR_MAX + 300];

    if (rc == TLS_CLOSED) {
        client_net_fail(k, "the server closed the TLS session");
    } else if (rc < 0 && !tls_established(k->tls)) {
        snprintf(msg, sizeof(msg), "TLS handshake with %s failed: %s",
                 k->o->url.host, tls_error(k->tls));
        client_net_fail(k, msg);
        if (rc == PST_EAUTH)
            k->res->tls_verify_failed = 1;
    } else if (rc < 0) {
        snprintf(msg, sizeof(msg), "TLS: %s", tls_error(k->tls));
        client_net_fail(k, msg);
    }
    /* TLS_STOPPED: a callback failed and said why, if anything. */
    return -1;
}

/* Start TLS and wait for the handshake to complete. */
static int
client_tls_start(struct client_conn *k)
{
    uint8_t buf[CLIENT_CHUNK];
    char err[TLS_ERROR_MAX + 64];
    size_t n;
    int rc;

    if (k->ctx == NULL) {
        struct tls_config tc = {
            .role = TLS_ROLE_CLIENT,
            .ca_file = k->o->cafile,
            .insecure = k->o->insecure ? 1u : 0u,
            .cert_file = k->o->cert,
            .key_file = k->o->key,
        };

        if (tls_ctx_new(&tc, &k->ctx, err, sizeof(err)) < 0) {
            client_net_fail(k, err);
            return -1;
        }
    }
    if (tls_new(k->ctx, k->o->url.host, &k->tls) < 0) {
        client_net_fail(k, "TLS: out of memory");
        return -1;
    }
    tls_set_io(k->tls, &client_tls_io, k);
    /* No input yet: sends the ClientHello. */
    rc = tls_input(k->tls, NULL, 0);
    while (rc == TLS_WANT_MORE) {
        if (client_recv(k, buf, sizeof(buf), &n) < 0)
            return -1;
        rc = tls_input(k->tls, buf, n);
    }
    return rc == TLS_OK ? 0 : client_tls_fail(k, rc);
}

/* Read what the server sent and hand the plaintext to the session. */
static int
client_read(struct client_conn *k)
{
    uint8_t buf[CLIENT_CHUNK];
    size_t n;
    int rc;

    if (client_recv(k, buf, sizeof(buf), &n) < 0)
        return -1;
    if (k->tls == NULL)
        return pst_smtp_client_feed(k->c, buf, n) < 0 ? -1 : 0;
    /* Plaintext goes to the session; what TLS answers (a TLS 1.3 key
     * update) to the server. */
    rc = tls_input(k->tls, buf, n);
    return rc == TLS_OK ? 0 : client_tls_fail(k, rc);
}

static int
client_connect(struct client_conn *k)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
    }, *ai = NULL, *a;
    char msg[512];
    int rc, last_errno = 0;

    rc = getaddrinfo(k->o->url.host, k->o->url.port, &hints, &ai);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s: %s", k->o->url.host,
                 gai_strerror(rc));
        client_net_fail(k, msg);
        return -1;
    }
    for (a = ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC |
                                          SOCK_NONBLOCK, a->ai_protocol);
        socklen_t elen = sizeof(int);
        int soerr = 0;

        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        k->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            if (errno != EINPROGRESS || client_wait(k, POLLOUT) < 0 ||
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) != 0 ||
                soerr != 0) {
                last_errno = soerr != 0 ? soerr : errno;
                close(fd);
                k->fd = -1;
                /* A timeout on one address: try the next. */
                k->res->net_error = 0;
                k->res->error = 0;
                continue;
            }
        }
        getnameinfo(a->ai_addr, a->ai_addrlen, k->res->address,
                    sizeof(k->res->address), NULL, 0, NI_NUMERICHOST);
        break;
    }
    freeaddrinfo(ai);
    if (k->fd < 0) {
        snprintf(msg, sizeof(msg), "cannot connect to %s port %s: %s",
                 k->o->url.host, k->o->url.port,
                 last_errno ? strerror(last_errno) : "no address");
        client_net_fail(k, msg);
        return -1;
    }
    return 0;
}

/* --- Transcript -----------------------------------------------------------
 */

static void
trace_line(void *ctx, int dir, const char *line, size_t len)
{
    const char *p = line, *end = line + len;

    (void)ctx;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

        fprintf(stderr, "%s %.*s\n",
                dir == PST_SMTP_CLIENT_TRACE_OUT ? "C:" : "S:", (int)n, p);
        p += n + (nl != NULL);
    }
}

/* --- Message ------------------------------------------------------------- */

static void
progress(const struct client_conn *k, uint64_t done, uint64_t total, int final)
{
    if (!k->o->progress)
        return;
    if (total > 0)
        fprintf(stderr, "\rsending: %" PRIu64 " of %" PRIu64 " KiB (%d%%)%s",
                done / 1024, total / 1024,
                (int)(total ? done * 100 / total : 100), final ? "\n" : "");
    else
        fprintf(stderr, "\rsending: %" PRIu64 " KiB%s", done / 1024,
                final ? "\n" : "");
}

static int
client_send_message(struct client_conn *k, struct msg_source *msg)
{
    uint8_t buf[CLIENT_CHUNK];
    uint64_t done = 0;
    unsigned tick = 0;
    int shown = 0;

    for (;;) {
        size_t n = 0;
        int rc;

        if (msg != NULL && msg->read(msg->ctx, buf, sizeof(buf), &n) < 0) {
            char m[128];

            /* We cannot take the message back: drop the connection so
             * the server discards it (RFC 5321 §4.1.1.4). */
            snprintf(m, sizeof(m), "reading the message: %s",
                     strerror(errno));
            client_net_fail(k, m);
            k->res->net_error = 0;
            k->res->error = PST_EIO;
            goto fail;
        }
        while ((rc = pst_smtp_client_data(k->c, buf, n, n == 0)) == PST_ELIMIT)
            if (client_flush(k) < 0)
                goto fail;
        if (rc < 0) {
            client_net_fail(k, pst_strerror(rc));
            goto fail;
        }
        done += n;
        if (++tick % 16 == 0 || n == 0) {
            progress(k, done, msg != NULL ? msg->total : 0, n == 0);
            shown = n != 0;
        }
        if (client_flush(k) < 0)
            goto fail;
        if (n == 0)
            return 0;
    }
fail:
    /* End the progress line so the error starts a line of its own. */
    if (shown && k->o->progress)
        fputc('\n', stderr);
    return -1;
}

/* --- The session --------------------------------------------------------- */

/*
 * After a failed AUTH with a bearer token: keep the server's JSON error
 * challenge (RFC 7628 §3.2.2), raw bytes from the server, as printable
 * text (other bytes as \xHH).
 */
static void
note_auth_json(struct client_conn *k)
{
    char *out = k->res->auth_json;
    size_t cap = sizeof(k->res->auth_json), n = 0, len = 0;
    const uint8_t *j = pst_smtp_client_auth_error_json(k->c, &len);

    out[0] = '\0';
    for (size_t i = 0; j != NULL && i < len && n + 5 < cap; i++) {
        if (j[i] >= 0x20 && j[i] < 0x7f && j[i] != '\\')
            out[n++] = (char)j[i];
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", j[i]);
    }
    out[n] = '\0';
}

/* The outcome events still queued when the connection broke: a server
 * that answers and closes at once (a 421 or 5xx and, under TLS, its
 * close_notify in the same read) has its answer reported, not the close. */
static void
client_drain_events(struct client_conn *k)
{
    struct client_result *res = k->res;
    struct pst_smtp_client_event ev;

    while (pst_smtp_client_next_event(k->c, &ev) == 1) {
        if (ev.type == PST_SMTP_CLIENT_EV_DONE && !res->ok) {
            res->ok = 1;
            res->net_error = 0;
            res->error = 0;
            snprintf(res->text, sizeof(res->text), "%s", ev.reply);
        } else if (ev.type == PST_SMTP_CLIENT_EV_FAIL && !res->ok) {
            res->net_error = 0;
            res->error = ev.error;
            res->code = ev.code;
            snprintf(res->stage, sizeof(res->stage), "%s", ev.stage);
            snprintf(res->text, sizeof(res->text), "%s", ev.reply);
            if (strcmp(ev.stage, "AUTH") == 0)
                note_auth_json(k);
        }
    }
}

static void
note_ehlo(struct client_conn *k)
{
    struct client_result *r = k->res;

    if (pst_smtp_client_tls_active(k->c)) {
        r->had_tls_ehlo = 1;
        snprintf(r->ehlo_tls, sizeof(r->ehlo_tls), "%s",
                 pst_smtp_client_ehlo_reply(k->c));
        snprintf(r->mechs_tls, sizeof(r->mechs_tls), "%s",
                 pst_smtp_client_mechs(k->c));
    } else {
        r->had_plain_ehlo = 1;
        snprintf(r->ehlo_plain, sizeof(r->ehlo_plain), "%s",
                 pst_smtp_client_ehlo_reply(k->c));
        snprintf(r->mechs_plain, sizeof(r->mechs_plain), "%s",
                 pst_smtp_client_mechs(k->c));
    }
    snprintf(r->greeting, sizeof(r->greeting), "%s",
             pst_smtp_client_greeting(k->c));
}

int
client_run(const struct client_opts *o, struct pst_smtp_client_config *cfg,
           struct msg_source *msg, struct client_result *res)
{
    struct client_conn k = {.fd = -1, .o = o, .res = res};
    char helo[256];
    int closed = 0, rc;

    memset(res, 0, sizeof(*res));
    k.timeout_ms = (int)(o->timeout ? o->timeout : 60) * 1000;
    if (client_connect(&k) < 0)
        goto out;
    if (cfg->helo == NULL) {
        client_helo_name(helo, sizeof(helo));
        if (strchr(helo, '.') == NULL)
            helo_from_socket(k.fd, helo, sizeof(helo));
        cfg->helo = helo;
    }
    cfg->implicit_tls = o->url.implicit_tls;
    if (o->verbose) {
        cfg->trace = trace_line;
        cfg->trace_ctx = NULL;
    }
    rc = pst_smtp_client_new(cfg, &k.c);
    if (rc < 0) {
        res->error = rc;
        snprintf(res->text, sizeof(res->text), "%s", pst_strerror(rc));
        goto out;
    }
    if (o->url.implicit_tls && client_tls_start(&k) < 0)
        goto out;
    while (!closed) {
        struct pst_smtp_client_event ev;

        if (client_flush(&k) < 0)
            break;
        while (pst_smtp_client_next_event(k.c, &ev) == 1) {
            switch (ev.type) {
            case PST_SMTP_CLIENT_EV_STARTTLS:
                if (client_tls_start(&k) < 0)
                    goto out;
                break;
            case PST_SMTP_CLIENT_EV_EHLO:
                note_ehlo(&k);
                break;
            case PST_SMTP_CLIENT_EV_AUTH:
                snprintf(res->mech, sizeof(res->mech), "%s",
                         ev.mech != NULL ? ev.mech : "");
                res->layer = pst_smtp_client_layer(k.c, NULL);
                break;
            case PST_SMTP_CLIENT_EV_DATA:
                if (client_send_message(&k, msg) < 0)
                    goto out;
                break;
            case PST_SMTP_CLIENT_EV_DONE:
                res->ok = 1;
                snprintf(res->text, sizeof(res->text), "%s", ev.reply);
                break;
            case PST_SMTP_CLIENT_EV_FAIL:
                res->error = ev.error;
                res->code = ev.code;
                snprintf(res->stage, sizeof(res->stage), "%s", ev.stage);
                snprintf(res->text, sizeof(res->text), "%s", ev.reply);
                if (strcmp(ev.stage, "AUTH") == 0)
                    note_auth_json(&k);
                break;
            case PST_SMTP_CLIENT_EV_CLOSE:
                closed = 1;
                break;
            default: /* RCPT, READY: without partial_rcpt and reuse */
                break;
            }
        }
        if (client_flush(&k) < 0)
            break;
        if (closed)
            break;
        if (client_read(&k) < 0) {
            client_drain_events(&k);
            break;
        }
    }
    /* A failure before the server said goodbye may still be a success
     * already recorded (the 250 after "." came; QUIT's reply did not). */
    if (res->ok && res->net_error && res->error == PST_EIO) {
        res->net_error = 0;
        res->error = 0;
    }
    if (k.tls != NULL && tls_shutdown(k.tls) == 0)
        tls_flush(k.tls);
out:
    pst_smtp_client_free(k.c);
    tls_free(k.tls);
    tls_ctx_free(k.ctx);
    if (k.fd >= 0)
        close(k.fd);
    return res->ok && res->error == 0 ? 0 : -1;
}

int
client_exit_code(const struct client_result *r)
{
    if (r->ok && r->error == 0)
        return EX_OK;
    if (r->tls_verify_failed)
        return EX_UNAVAILABLE;
    if (r->net_error)
        return EX_TEMPFAIL;
    switch (r->error) {
    case PST_EAUTH:
    case PST_EFORGED:
        return EX_NOPERM;       /* 77: authentication refused */
    case PST_ENOTSUP:
    case PST_EWEAK:
    case PST_EREJECT:
        return EX_UNAVAILABLE;  /* 69: permanent refusal */
    case PST_ETEMP:
        return EX_TEMPFAIL;     /* 75 */
    case PST_EPROTO:
        return EX_PROTOCOL;     /* 76 */
    case PST_EIO:
        return EX_IOERR;
    default:
        return EX_SOFTWARE;
    }
}

void
client_describe(const struct client_result *r, char *buf, size_t n)
{
    const char *what;

    if (r->tls_verify_failed) {
        snprintf(buf, n, "%s (use --cafile, or --insecure to skip the "
                 "check)", r->text);
        return;
    }
    if (r->net_error) {
        snprintf(buf, n, "%s", r->text);
        return;
    }
    switch (r->error) {
    case PST_EAUTH:
        what = "authentication failed";
        break;
    case PST_EFORGED:
        what = "authentication aborted";
        break;
    case PST_ENOTSUP:
    case PST_EWEAK:
        what = "cannot authenticate";
        break;
    case PST_EPROTO:
        what = "protocol error";
        break;
    default:
        what = r->code >= 500 ? "refused" : r->code >= 400
                                                ? "temporary failure"
                                                : "failed";
        break;
    }
    if (r->stage[0] != '\0' && r->error != PST_EAUTH)
        snprintf(buf, n, "%s at %s: %s", what, r->stage, r->text);
    else
        snprintf(buf, n, "%s: %s", what, r->text);
}
