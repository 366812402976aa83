/*
 * postern probe --as-device (probe_device.h): the session of a legacy
 * device, one quirk per step, each on a connection of its own, over a
 * plain socket and the TLS module: the SMTP client of libpostern would
 * never say HELO before AUTH or send a bare LF, which is the point here.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/base64.h>

#include "date.h"
#include "probe_device.h"

#define DEV_IN_MAX    (64 * 1024) /* reply bytes buffered, at most */
#define DEV_LINE_MAX  1024        /* one reply line (RFC 5321 §4.5.3.1.5:
                                     512), with room */
#define DEV_LONG_LINE 1500        /* the long line of the long-line step */

/* One connection to the server. */
struct dev_conn {
    int fd;
    struct tls_ctx *ctx;
    struct tls *tls;
    int timeout_ms;
    int verbose;               /* the transcript on stderr */
    struct pst_buf in;         /* plaintext from the server, unread */
    char err[DEV_LINE_MAX + 128]; /* why the last call failed */
};

struct dev_reply {
    int code;                  /* 0 until a reply is whole */
    char text[DEV_LINE_MAX];   /* its last line: "504 5.5.4 ..." */
    char all[CLIENT_TEXT_MAX]; /* every line, '\n' between */
};

enum step_status {
    STEP_OK = 0,
    STEP_FAIL,                 /* the device would fail here */
    STEP_SKIP,                 /* could not be tried (says why) */
    STEP_ABSENT,               /* a feature few devices need is absent */
};

struct step {
    const char *name;
    enum step_status st;
    char text[DEV_LINE_MAX + 128];
    const char *fix;           /* the [profile NAME] key, or NULL */
};

/* --- The connection ------------------------------------------------------ */

static int
dev_wait(struct dev_conn *k, short events)
{
    struct pollfd pfd = {.fd = k->fd, .events = events};
    int rc;

    do {
        rc = poll(&pfd, 1, k->timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        snprintf(k->err, sizeof(k->err), "timed out waiting for the server");
        return -1;
    }
    if (rc < 0) {
        snprintf(k->err, sizeof(k->err), "poll: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int
dev_send_raw(struct dev_conn *k, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(k->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (dev_wait(k, POLLOUT) < 0)
                return -1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(k->err, sizeof(k->err), "send: %s", strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The TLS pump's callbacks. */
static int
dev_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return dev_send_raw(ctx, p, n) < 0 ? -1 : 0;
}

static int
dev_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    struct dev_conn *k = ctx;

    return pst_buf_append(&k->in, p, n) < 0 ? -1 : 0;
}

static const struct tls_io dev_tls_io = {
    .send = dev_tls_send,
    .recv = dev_tls_recv,
};

/* Read once (waiting up to the timeout) into k->in, through TLS if up. */
static int
dev_recv(struct dev_conn *k)
{
    uint8_t buf[16384];
    ssize_t n;
    int rc;

    for (;;) {
        n = recv(k->fd, buf, sizeof(buf), 0);
        if (n > 0)
            break;
        if (n == 0) {
            snprintf(k->err, sizeof(k->err),
                     "the server closed the connection");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(k->err, sizeof(k->err), "recv: %s", strerror(errno));
            return -1;
        }
        if (dev_wait(k, POLLIN) < 0)
            return -1;
    }
    if (k->tls == NULL) {
        if (pst_buf_append(&k->in, buf, (size_t)n) < 0) {
            snprintf(k->err, sizeof(k->err), "reply too long");
            return -1;
        }
        return 0;
    }
    rc = tls_input(k->tls, buf, (size_t)n);
    if (rc == TLS_OK || rc == TLS_WANT_MORE)
        return 0;
    snprintf(k->err, sizeof(k->err), "%s",
             rc == TLS_CLOSED ? "the server closed the TLS session"
                              : tls_error(k->tls));
    return -1;
}

static int
dev_write(struct dev_conn *k, const void *p, size_t len)
{
    if (k->tls == NULL)
        return dev_send_raw(k, p, len);
    if (tls_send(k->tls, p, len) != TLS_OK) {
        snprintf(k->err, sizeof(k->err), "TLS: %s", tls_error(k->tls));
        return -1;
    }
    return 0;
}

/* One line from the server, CRLF removed, into line (cap bytes). */
static int
dev_line(struct dev_conn *k, char *line, size_t cap)
{
    for (;;) {
        const uint8_t *nl = k->in.len > 0 ? memchr(k->in.data, '\n',
                                                   k->in.len)
                                          : NULL;

        if (nl != NULL) {
            size_t n = (size_t)(nl - k->in.data), len = n;

            if (len > 0 && k->in.data[len - 1] == '\r')
                len--;
            if (len >= cap)
                len = cap - 1;
            memcpy(line, k->in.data, len);
            line[len] = '\0';
            memmove(k->in.data, k->in.data + n + 1, k->in.len - n - 1);
            k->in.len -= n + 1;
            return 0;
        }
        if (k->in.len > DEV_LINE_MAX) {
            snprintf(k->err, sizeof(k->err), "reply line too long");
            return -1;
        }
        if (dev_recv(k) < 0)
            return -1;
    }
}

/* A whole reply (RFC 5321 §4.2: "NNN-" lines, then "NNN "). */
static int
dev_reply(struct dev_conn *k, struct dev_reply *r)
{
    char line[DEV_LINE_MAX];
    size_t n = 0;

    r->code = 0;
    r->text[0] = '\0';
    r->all[0] = '\0';
    for (;;) {
        if (dev_line(k, line, sizeof(line)) < 0)
            return -1;
        if (k->verbose)
            fprintf(stderr, "S: %s\n", line);
        if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' ||
            line[1] < '0' || line[1] > '9' || line[2] < '0' ||
            line[2] > '9' || (line[3] != '\0' && line[3] != ' ' &&
                              line[3] != '-')) {
            snprintf(k->err, sizeof(k->err), "not an SMTP reply: %.100s",
                     line);
            return -1;
        }
        if (n < sizeof(r->all))
            n += (size_t)snprintf(r->all + n, sizeof(r->all) - n, "%s%s",
                                  n > 0 ? "\n" : "", line);
        if (line[3] != '-') {
            r->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
                      (line[2] - '0');
            snprintf(r->text, sizeof(r->text), "%s", line);
            return 0;
        }
    }
}

/* Send line (CRLF added; shown as "********" when secret) and read the
 * reply. */
static int
dev_cmd(struct dev_conn *k, const char *line, int secret,
        struct dev_reply *r)
{
    size_t len = strlen(line);
    char *buf = malloc(len + 3);
    int rc;

    if (buf == NULL) {
        snprintf(k->err, sizeof(k->err), "out of memory");
        return -1;
    }
    if (k->verbose)
        fprintf(stderr, "C: %s\n", secret ? "********" : line);
    memcpy(buf, line, len);
    memcpy(buf + len, "\r\n", 3);
    rc = dev_write(k, buf, len + 2);
    OPENSSL_cleanse(buf, len + 2);
    free(buf);
    return rc < 0 ? -1 : dev_reply(k, r);
}

/* Start TLS on the connection: TLS 1.0 alone (SECLEVEL 0, as an old
 * device), or whatever both sides know best. */
static int
dev_tls_start(struct dev_conn *k, const char *host, int tls10)
{
    struct tls_config tc = {
        .role = TLS_ROLE_CLIENT,
        .insecure = 1,
        .min_version = tls10 ? TLS_VERSION_1_0 : TLS_VERSION_DEFAULT,
        .max_version = tls10 ? TLS_VERSION_1_0 : TLS_VERSION_DEFAULT,
    };
    char err[TLS_ERROR_MAX + 64];
    int rc;

    if (tls_ctx_new(&tc, &k->ctx, err, sizeof(err)) < 0) {
        snprintf(k->err, sizeof(k->err), "%s", err);
        return -1;
    }
    if (tls_new(k->ctx, host, &k->tls) < 0) {
        snprintf(k->err, sizeof(k->err), "TLS: out of memory");
        return -1;
    }
    tls_set_io(k->tls, &dev_tls_io, k);
    /* RFC 3207 §4.2: nothing read before the handshake counts. */
    pst_buf_reset(&k->in);
    rc = tls_input(k->tls, NULL, 0);
    if (rc < 0) {
        snprintf(k->err, sizeof(k->err), "%s", tls_error(k->tls));
        return -1;
    }
    while (!tls_established(k->tls))
        if (dev_recv(k) < 0)
            return -1;
    return 0;
}

static void
dev_close(struct dev_conn *k)
{
    if (k->tls != NULL && tls_established(k->tls) &&
        tls_shutdown(k->tls) == 0)
        tls_flush(k->tls);
    tls_free(k->tls);
    k->tls = NULL;
    tls_ctx_free(k->ctx);
    k->ctx = NULL;
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    pst_buf_clear(&k->in);
}

/* Connect to the server (no greeting read yet). */
static int
dev_connect(const struct client_opts *co, struct dev_conn *k)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
    }, *ai = NULL, *a;
    int rc, last = 0;

    memset(k, 0, sizeof(*k));
    k->fd = -1;
    k->timeout_ms = (int)(co->timeout > 0 ? co->timeout : 60) * 1000;
    k->verbose = co->verbose;
    pst_buf_init(&k->in, DEV_IN_MAX, 0);
    rc = getaddrinfo(co->url.host, co->url.port, &hints, &ai);
    if (rc != 0) {
        snprintf(k->err, sizeof(k->err), "%s: %s", co->url.host,
                 gai_strerror(rc));
        return -1;
    }
    for (a = ai; a != NULL && k->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC |
                                          SOCK_NONBLOCK, a->ai_protocol);
        socklen_t elen = sizeof(int);
        int soerr = 0;

        if (fd < 0) {
            last = errno;
            continue;
        }
        k->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 &&
            (errno != EINPROGRESS || dev_wait(k, POLLOUT) < 0 ||
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) != 0 ||
             soerr != 0)) {
            last = soerr != 0 ? soerr : errno;
            close(fd);
            k->fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (k->fd < 0) {
        snprintf(k->err, sizeof(k->err), "cannot connect to %s port %s: %s",
                 co->url.host, co->url.port,
                 last != 0 ? strerror(last) : "no address");
        return -1;
    }
    return 0;
}

/* Connect, start implicit TLS (the best both know) on an smtps URL, and
 * read the greeting. */
static int
dev_open(const struct client_opts *co, struct dev_conn *k)
{
    struct dev_reply r;

    if (dev_connect(co, k) < 0)
        return -1;
    if (co->url.implicit_tls && dev_tls_start(k, co->url.host, 0) < 0)
        return -1;
    if (dev_reply(k, &r) < 0)
        return -1;
    if (r.code != 220) {
        snprintf(k->err, sizeof(k->err), "greeting: %s", r.text);
        return -1;
    }
    return 0;
}

/* Whether an EHLO reply (every line, '\n' between) offers keyword
 * (RFC 5321 §4.1.1.1: the first word after "250-", case-insensitive). */
static int
ehlo_has(const char *all, const char *keyword)
{
    size_t n = strlen(keyword);

    for (const char *line = all; line != NULL;) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

        if (len >= 4 + n && strncasecmp(line + 4, keyword, n) == 0 &&
            (len == 4 + n || line[4 + n] == ' '))
            return 1;
        line = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* The name a device gives in HELO: this host's, or an address literal
 * of our end when it has no dot (RFC 5321 §4.1.3). */
static void
dev_helo_name(const struct dev_conn *k, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[64];

    client_helo_name(buf, n);
    if (strchr(buf, '.') != NULL)
        return;
    if (getsockname(k->fd, (struct sockaddr *)&ss, &len) == 0 &&
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), NULL,
                    0, NI_NUMERICHOST) == 0)
        snprintf(buf, n, ss.ss_family == AF_INET6 ? "[IPv6:%s]" : "[%s]",
                 host);
}

/* --- The steps ----------------------------------------------------------- */

static void step_set(struct step *s, enum step_status st, const char *fix,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
step_set(struct step *s, enum step_status st, const char *fix,
         const char *fmt, ...)
{
    va_list ap;

    s->st = st;
    s->fix = fix;
    va_start(ap, fmt);
    vsnprintf(s->text, sizeof(s->text), fmt, ap);
    va_end(ap);
}

/*
 * AUTH LOGIN after its 334 (the device's mechanism): the user and the
 * password, or "*" without --user (RFC 4954 §4: cancelled, 501), which
 * shows that the mechanism was accepted.
 */
static int
dev_login(struct dev_conn *k, const struct probe_device *d,
          struct dev_reply *r)
{
    struct pst_buf b;
    int rc;

    if (d->user == NULL)
        return dev_cmd(k, "*", 0, r);
    pst_buf_init(&b, 8192, 1);
    rc = pst_base64_encode((const uint8_t *)d->user, strlen(d->user), &b);
    if (rc == 0)
        rc = pst_buf_append_byte(&b, 0);
    /* Transcripts show no AUTH continuation line (STYLE.md §6). */
    if (rc == 0)
        rc = dev_cmd(k, (const char *)b.data, 1, r);
    if (rc == 0 && r->code == 334) {
        pst_buf_reset(&b);
        rc = pst_base64_encode(d->password, d->password_len, &b);
        if (rc == 0)
            rc = pst_buf_append_byte(&b, 0);
        if (rc == 0)
            rc = dev_cmd(k, (const char *)b.data, 1, r);
    }
    pst_buf_clear(&b);
    return rc < 0 ? -1 : 0;
}

/* What the end of an AUTH LOGIN exchange says. */
static void
login_result(struct step *s, const struct probe_device *d,
             const struct dev_reply *r)
{
    if (d->user == NULL && r->code == 501)
        step_set(s, STEP_OK, NULL, "%s", "ok (offered; no --user, so "
                 "cancelled)");
    else if (r->code == 235)
        step_set(s, STEP_OK, NULL, "%s", "ok");
    else
        step_set(s, STEP_FAIL, NULL, "fails: %s (the user or the password, "
                 "not a profile key)", r->text);
}

/* TLS 1.0 (SECLEVEL 0), implicit or after STARTTLS. */
static void
step_tls10(const struct client_opts *co, struct step *s)
{
    struct dev_conn k;
    struct dev_reply r;
    char helo[300], line[320];

    s->name = "TLS 1.0 handshake";
    if (dev_connect(co, &k) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err);
        goto done;
    }
    if (!co->url.implicit_tls) {
        if (dev_reply(&k, &r) < 0 || r.code != 220) {
            step_set(s, STEP_SKIP, NULL, "%s", r.code ? r.text : k.err);
            goto done;
        }
        dev_helo_name(&k, helo, sizeof(helo));
        snprintf(line, sizeof(line), "EHLO %s", helo);
        if (dev_cmd(&k, line, 0, &r) < 0 || r.code != 250) {
            step_set(s, STEP_SKIP, NULL, "EHLO: %s", r.code ? r.text : k.err);
            goto done;
        }
        if (!ehlo_has(r.all, "STARTTLS")) {
            step_set(s, STEP_SKIP, NULL, "%s", "no STARTTLS offered");
            goto done;
        }
        if (dev_cmd(&k, "STARTTLS", 0, &r) < 0 || r.code != 220) {
            step_set(s, STEP_FAIL, NULL, "fails: STARTTLS: %s",
                     r.code ? r.text : k.err);
            goto done;
        }
    }
    if (dev_tls_start(&k, co->url.host, 1) < 0) {
        step_set(s, STEP_FAIL, "tls_min_version = TLSv1",
                 "fails: the handshake was refused (%s)", k.err);
        goto done;
    }
    snprintf(s->text, sizeof(s->text), "ok: %s, %s", tls_protocol(k.tls),
             tls_cipher(k.tls));
    s->st = STEP_OK;
    s->fix = NULL;
    /* The session goes on under it (the greeting of implicit TLS). */
    if (co->url.implicit_tls && (dev_reply(&k, &r) < 0 || r.code != 220))
        step_set(s, STEP_FAIL, NULL, "fails: after the handshake: %s",
                 r.code ? r.text : k.err);
done:
    dev_close(&k);
}

/*
 * AUTH LOGIN before TLS (after EHLO); the EHLO reply is kept for the
 * AUTH= step.
 */
static void
step_auth_plain(const struct client_opts *co, const struct probe_device *d,
                struct step *s, struct dev_reply *ehlo)
{
    struct dev_conn k;
    struct dev_reply r;
    char helo[300], line[320];

    s->name = "AUTH LOGIN before TLS";
    ehlo->code = 0;
    if (dev_open(co, &k) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err);
        goto done;
    }
    dev_helo_name(&k, helo, sizeof(helo));
    snprintf(line, sizeof(line), "EHLO %s", helo);
    if (dev_cmd(&k, line, 0, ehlo) < 0 || ehlo->code != 250) {
        step_set(s, STEP_SKIP, NULL, "EHLO: %s",
                 ehlo->code ? ehlo->text : k.err);
        ehlo->code = 0;
        goto done;
    }
    if (co->url.implicit_tls) {
        step_set(s, STEP_SKIP, NULL, "%s", "implicit TLS: nothing is sent "
                 "before TLS");
        goto done;
    }
    if (dev_cmd(&k, "AUTH LOGIN", 0, &r) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err);
        goto done;
    }
    if (r.code == 334) {
        if (dev_login(&k, d, &r) < 0)
            step_set(s, STEP_SKIP, NULL, "%s", k.err);
        else
            login_result(s, d, &r);
    } else if (r.code == 504) {
        /* RFC 4954 §4: a mechanism not offered in this state. */
        step_set(s, STEP_FAIL, "auth_before_tls = all", "fails: %s",
                 r.text);
    } else {
        step_set(s, STEP_FAIL, NULL, "fails: %s", r.text);
    }
done:
    dev_close(&k);
}

/* HELO, then AUTH LOGIN (RFC 4954 §3 makes AUTH an EHLO extension). */
static void
step_helo_auth(const struct client_opts *co, const struct probe_device *d,
               struct step *s)
{
    struct dev_conn k;
    struct dev_reply r;
    char helo[300], line[320];

    s->name = "HELO, then AUTH LOGIN";
    if (dev_open(co, &k) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err);
        goto done;
    }
    dev_helo_name(&k, helo, sizeof(helo));
    snprintf(line, sizeof(line), "HELO %s", helo);
    if (dev_cmd(&k, line, 0, &r) < 0 || r.code != 250) {
        step_set(s, STEP_FAIL, NULL, "fails: HELO: %s",
                 r.code ? r.text : k.err);
        goto done;
    }
    if (dev_cmd(&k, "AUTH LOGIN", 0, &r) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err);
        goto done;
    }
    if (r.code == 334) {
        if (dev_login(&k, d, &r) < 0)
            step_set(s, STEP_SKIP, NULL, "%s", k.err);
        else
            login_result(s, d, &r);
    } else if (r.code == 503) {
        step_set(s, STEP_FAIL, "helo_auth = yes", "fails: %s", r.text);
    } else if (r.code == 504 && !co->url.implicit_tls) {
        step_set(s, STEP_FAIL, "auth_before_tls = all", "fails: %s",
                 r.text);
    } else {
        step_set(s, STEP_FAIL, NULL, "fails: %s", r.text);
    }
done:
    dev_close(&k);
}

/* The pre-standard "AUTH=" line some old clients look for. */
static void
step_auth_line(const struct dev_reply *ehlo, struct step *s)
{
    s->name = "AUTH= line after EHLO";
    if (ehlo->code != 250)
        step_set(s, STEP_SKIP, NULL, "%s", "no EHLO reply");
    else if (strstr(ehlo->all, "\n250-AUTH=") != NULL ||
             strstr(ehlo->all, "\n250 AUTH=") != NULL)
        step_set(s, STEP_OK, NULL, "%s", "ok");
    else
        step_set(s, STEP_ABSENT, "legacy_auth_line = yes", "%s", "absent");
}

/* One test message, its line ends as a device sends them: bare_lf, LF
 * alone (the last line and the end of data CRLF: RFC 5321 §2.3.8, only
 * CRLF.CRLF ends the data); else a line of DEV_LONG_LINE octets. */
static int
dev_message(const struct probe_device *d, const char *helo, int bare_lf,
            struct pst_buf *out)
{
    const char *eol = bare_lf ? "\n" : "\r\n";
    const char *from = d->from[0] != '\0' ? d->from : d->to;
    char date[DATE_RFC5322_MAX];
    int rc;

    if (date_rfc5322(time(NULL), date, sizeof(date)) != 0)
        snprintf(date, sizeof(date), "Thu, 01 Jan 1970 00:00:00 +0000");
    rc = pst_buf_printf(out,
        "From: <%s>%sTo: <%s>%sSubject: postern probe --as-device: %s%s"
        "Date: %s%sMessage-ID: <probe.%lld.%ld.%d@%s>%s%s"
        "This test message was sent by postern probe --as-device.%s",
        from, eol, d->to, eol,
        bare_lf ? "bare LF line ends" : "a 1500-octet line", eol, date, eol,
        (long long)time(NULL), (long)getpid(), bare_lf, helo, eol, eol,
        eol);
    if (rc == 0 && !bare_lf) {
        for (size_t i = 0; i < DEV_LONG_LINE && rc == 0; i++)
            rc = pst_buf_append_byte(out, (uint8_t)('0' + i % 10));
        if (rc == 0)
            rc = pst_buf_append_str(out, "\r\n");
    }
    if (rc == 0)
        rc = pst_buf_append_str(out, "Its last line.\r\n.\r\n");
    return rc;
}

/* A message with bare LF line ends, or with a long line: the session as
 * a modern client runs it (STARTTLS when offered, AUTH LOGIN), only the
 * message is the device's. */
static void
step_data(const struct client_opts *co, const struct probe_device *d,
          int bare_lf, struct step *s)
{
    struct dev_conn k;
    struct dev_reply r;
    struct pst_buf msg;
    char helo[300], line[600];

    s->name = bare_lf ? "bare LF line ends" : "1500-octet line";
    pst_buf_init(&msg, 64 * 1024, 0);
    if (d->to == NULL) {
        step_set(s, STEP_SKIP, NULL, "%s", "needs --to (a test message is "
                 "delivered)");
        pst_buf_clear(&msg);
        return;
    }
    if (dev_open(co, &k) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err);
        goto done;
    }
    dev_helo_name(&k, helo, sizeof(helo));
    snprintf(line, sizeof(line), "EHLO %s", helo);
    if (dev_cmd(&k, line, 0, &r) < 0 || r.code != 250) {
        step_set(s, STEP_SKIP, NULL, "EHLO: %s", r.code ? r.text : k.err);
        goto done;
    }
    if (!co->url.implicit_tls && ehlo_has(r.all, "STARTTLS")) {
        if (dev_cmd(&k, "STARTTLS", 0, &r) < 0 || r.code != 220 ||
            dev_tls_start(&k, co->url.host, 0) < 0 ||
            dev_cmd(&k, line, 0, &r) < 0 || r.code != 250) {
            step_set(s, STEP_SKIP, NULL, "STARTTLS: %s",
                     r.code != 0 && r.code != 220 ? r.text : k.err);
            goto done;
        }
    }
    if (d->user != NULL) {
        if (dev_cmd(&k, "AUTH LOGIN", 0, &r) == 0 && r.code == 334 &&
            dev_login(&k, d, &r) == 0 && r.code == 235) {
            /* authenticated */
        } else {
            step_set(s, STEP_SKIP, NULL, "cannot authenticate: %s",
                     r.code ? r.text : k.err);
            goto done;
        }
    }
    snprintf(line, sizeof(line), "MAIL FROM:<%s>", d->from);
    if (dev_cmd(&k, line, 0, &r) < 0 || r.code != 250) {
        step_set(s, STEP_SKIP, NULL, d->user == NULL && r.code == 530
                 ? "MAIL FROM: %s (give --user)" : "MAIL FROM: %s",
                 r.code ? r.text : k.err);
        goto done;
    }
    snprintf(line, sizeof(line), "RCPT TO:<%s>", d->to);
    if (dev_cmd(&k, line, 0, &r) < 0 || r.code != 250) {
        step_set(s, STEP_SKIP, NULL, "RCPT TO: %s", r.code ? r.text : k.err);
        goto done;
    }
    if (dev_cmd(&k, "DATA", 0, &r) < 0 || r.code != 354) {
        step_set(s, STEP_SKIP, NULL, "DATA: %s", r.code ? r.text : k.err);
        goto done;
    }
    if (dev_message(d, helo, bare_lf, &msg) < 0 ||
        dev_write(&k, msg.data, msg.len) < 0 || dev_reply(&k, &r) < 0) {
        step_set(s, STEP_SKIP, NULL, "%s", k.err[0] ? k.err
                                                    : "out of memory");
        goto done;
    }
    if (k.verbose)
        fprintf(stderr, "C: (the message, %zu octets)\n", msg.len);
    if (r.code == 250)
        step_set(s, STEP_OK, NULL, "%s", "ok (a test message was delivered)");
    else if (bare_lf && r.code == 550)
        /* RFC 5321 §2.3.8: only CRLF ends a line. */
        step_set(s, STEP_FAIL, "bare_lf = normalize", "fails: %s", r.text);
    else if (!bare_lf && r.code == 500)
        /* RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF. */
        step_set(s, STEP_FAIL, "long_lines = fold", "fails: %s", r.text);
    else
        step_set(s, STEP_FAIL, NULL, "fails: %s", r.text);
    dev_cmd(&k, "QUIT", 0, &r);
done:
    pst_buf_clear(&msg);
    dev_close(&k);
}

/* --- The report ---------------------------------------------------------- */

static void
print_step(FILE *out, const struct step *s)
{
    fprintf(out, "  %-22s %s%s", s->name,
            s->st == STEP_SKIP ? "skipped: " : "", s->text);
    if (s->fix != NULL)
        fprintf(out, " -> %s%s", s->fix, s->st == STEP_ABSENT
                ? " (only for clients that look for it)" : "");
    fputc('\n', out);
}

int
probe_device_run(const struct client_opts *co, const struct probe_device *d,
                 FILE *out)
{
    struct step steps[6];
    struct dev_reply ehlo;
    struct dev_conn k;
    unsigned fail = 0, skip = 0, n = 0;
    const char *sep = "";

    memset(steps, 0, sizeof(steps));
    fprintf(out, "postern probe --as-device %s://%s:%s\n",
            co->url.implicit_tls ? "smtps" : "smtp", co->url.host,
            co->url.port);
    /* A server that does not answer at all is not a device matter. */
    if (dev_open(co, &k) < 0) {
        fprintf(out, "  %-22s fails: %s\n", "connect", k.err);
        dev_close(&k);
        return EX_UNAVAILABLE;
    }
    dev_close(&k);
    step_tls10(co, &steps[n++]);
    step_auth_plain(co, d, &steps[n++], &ehlo);
    step_helo_auth(co, d, &steps[n++]);
    step_auth_line(&ehlo, &steps[n++]);
    step_data(co, d, 1, &steps[n++]);
    step_data(co, d, 0, &steps[n++]);
    for (unsigned i = 0; i < n; i++) {
        print_step(out, &steps[i]);
        fail += steps[i].st == STEP_FAIL;
        skip += steps[i].st == STEP_SKIP;
    }
    if (fail == 0) {
        fprintf(out, "result: no step fails");
        if (skip > 0)
            fprintf(out, " (%u skipped)", skip);
        fputc('\n', out);
        return EX_OK;
    }
    fprintf(out, "result: %u of %u steps fail", fail, n - skip);
    if (skip > 0)
        fprintf(out, " (%u skipped)", skip);
    for (unsigned i = 0; i < n; i++) {
        int dup = 0;

        if (steps[i].st != STEP_FAIL || steps[i].fix == NULL)
            continue;
        for (unsigned j = 0; j < i; j++)
            dup |= steps[j].st == STEP_FAIL && steps[j].fix != NULL &&
                   strcmp(steps[j].fix, steps[i].fix) == 0;
        if (dup)
            continue;
        fprintf(out, "%s%s", *sep == '\0' ? "; in a [profile NAME] for the "
                "device's network: " : sep, steps[i].fix);
        sep = ", ";
    }
    fputc('\n', out);
    return EX_PROTOCOL;
}
