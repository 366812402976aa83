/*
 * postern bench: one connection and its session (bench.h): writing,
 * the reply reader (lines checked by pst_smtp_reply_parse_line()), the
 * SMTP steps and libpostern's SASL client, TLS through src/common's
 * pump, the end of a session.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "bench.h"

static const char *const bench_stage_names[] = {
    [ST_CONNECT] = "connect",     [ST_GREETING] = "greeting",
    [ST_EHLO] = "EHLO",           [ST_STARTTLS] = "STARTTLS",
    [ST_HANDSHAKE] = "TLS",       [ST_AUTH] = "AUTH",
    [ST_MAIL] = "MAIL",           [ST_RCPT] = "RCPT",
    [ST_DATA] = "DATA",           [ST_DOT] = "message",
    [ST_QUIT] = "QUIT",           [ST_IDLE] = "idle",
    [ST_NOOP] = "NOOP",           [ST_CLOSING] = "close",
};

static void bconn_finish(struct bconn *k, int ok);
static void bconn_fail_at(struct bconn *k, const char *stage,
                          const char *text);

/* --- Writing ------------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

static void
on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct bconn *k = req->handle->data;

    free(w);
    if (status < 0 && k != NULL && k->state != ST_CLOSING) {
        char msg[128];

        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(status));
        bconn_fail(k, msg);
    }
}

/* Send raw bytes: straight to the socket when it takes them (the usual
 * case on loopback), else through a queued write of a copy. */
static int
bconn_write_raw(struct bconn *k, const uint8_t *p, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned)len);
    struct wreq *w;
    int n;

    n = uv_try_write((uv_stream_t *)&k->tcp, &buf, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(n));
        bconn_fail(k, msg);
        return -1;
    }
    if ((size_t)n == len)
        return 0;
    w = malloc(sizeof(*w) + len - (size_t)n);
    if (w == NULL) {
        bconn_fail(k, "out of memory");
        return -1;
    }
    w->len = len - (size_t)n;
    memcpy(w->data, p + n, w->len);
    buf = uv_buf_init((char *)w->data, (unsigned)w->len);
    n = uv_write(&w->req, (uv_stream_t *)&k->tcp, &buf, 1, on_write);
    if (n < 0) {
        char msg[128];

        free(w);
        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(n));
        bconn_fail(k, msg);
        return -1;
    }
    return 0;
}

static int
bconn_send(struct bconn *k, const void *p, size_t len)
{
    int rc;

    if (k->tls == NULL)
        return bconn_write_raw(k, p, len);
    rc = tls_send(k->tls, p, len);
    if (rc == TLS_STOPPED)
        return -1; /* the write failed: bconn_fail() has run */
    if (rc != TLS_OK) {
        char msg[TLS_ERROR_MAX + 8];

        snprintf(msg, sizeof(msg), "TLS: %s", tls_error(k->tls));
        bconn_fail(k, msg);
        return -1;
    }
    return 0;
}

/* Queue a command line (CRLF added) and the stage of its reply. */
int
bconn_cmd(struct bconn *k, enum bench_stage st, const char *line)
{
    char buf[BENCH_CMD_MAX + 2];
    size_t n = strlen(line);

    if (n + 2 > sizeof(buf) || k->ex_len == BENCH_MAX_EXPECT) {
        bconn_fail(k, "command too long");
        return -1;
    }
    memcpy(buf, line, n);
    memcpy(buf + n, "\r\n", 2);
    k->expect[(k->ex_head + k->ex_len++) % BENCH_MAX_EXPECT] = (uint8_t)st;
    return bconn_send(k, buf, n + 2);
}

static void
bconn_expect(struct bconn *k, enum bench_stage st)
{
    k->expect[(k->ex_head + k->ex_len++) % BENCH_MAX_EXPECT] = (uint8_t)st;
}

/* --- Session ------------------------------------------------------------- */

static void
bconn_start_mail(struct bconn *k)
{
    struct bench *b = k->b;

    /* RFC 2920 §3.1: MAIL, RCPT and DATA may go in one group, DATA last;
     * without PIPELINING each waits for the reply before. */
    if (bconn_cmd(k, ST_MAIL, b->mail_cmd) < 0)
        return;
    if (!(k->ext & EXT_PIPELINING))
        return;
    for (unsigned i = 0; i < b->o->rcpt; i++)
        bconn_expect(k, ST_RCPT);
    bconn_expect(k, ST_DATA);
    if (bconn_send(k, b->rcpt_cmds, b->rcpt_cmds_len) < 0)
        return;
    bconn_send(k, "DATA\r\n", 6);
}

static void
bconn_auth_fail(struct bconn *k, int rc)
{
    char msg[96];

    snprintf(msg, sizeof(msg), "client SASL step failed: %s (%s)",
             pst_errname(rc), pst_strerror(rc));
    bconn_fail(k, msg);
}

static void
bconn_start_auth(struct bconn *k)
{
    struct bench *b = k->b;
    struct pst_buf out, b64;
    char line[BENCH_CMD_MAX];
    int rc;

    /* b->sasl carries the run's SCRAM key cache: after the first
     * session, SCRAM skips PBKDF2 (RFC 5802 §5.1). */
    k->challenges = 0;
    rc = pst_sasl_client_new(b->mech, &b->sasl, &k->sc);
    if (rc < 0) {
        bconn_auth_fail(k, rc);
        return;
    }
    if (!(pst_sasl_mech_flags(b->mech) & PST_MECH_CLIENT_FIRST)) {
        /* The server speaks first (CRAM-MD5, DIGEST-MD5): the step with
         * no input only records that. */
        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        rc = pst_sasl_client_step(k->sc, NULL, 0, &out);
        pst_buf_clear(&out);
        if (rc < 0) {
            bconn_auth_fail(k, rc);
            return;
        }
        snprintf(line, sizeof(line), "AUTH %s", pst_sasl_mech_name(b->mech));
        bconn_cmd(k, ST_AUTH, line);
        return;
    }
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&b64, PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE) + 1, 1);
    rc = pst_sasl_client_step(k->sc, NULL, 0, &out);
    if (rc >= 0 && pst_base64_encode(out.data, out.len, &b64) < 0)
        rc = PST_ENOMEM;
    if (rc < 0) {
        bconn_auth_fail(k, rc);
    } else if (b64.len + strlen(b->auth_ir_prefix) + 2 > 512) {
        /* RFC 4954 §4: an initial response that does not fit the 512
         * octet command line waits for an empty 334. */
        bconn_fail(k, "initial response too long for the bench");
    } else {
        /* RFC 4954 §4: an empty initial response is sent as "=". */
        snprintf(line, sizeof(line), "%s%s", b->auth_ir_prefix,
                 b64.len > 0 ? (const char *)b64.data : "=");
        bconn_cmd(k, ST_AUTH, line);
    }
    OPENSSL_cleanse(line, sizeof(line));
    pst_buf_clear(&out);
    pst_buf_clear(&b64);
}

/* 334: decode the challenge (the reply's text), step, send the
 * response. */
static void
bconn_auth_continue(struct bconn *k, const uint8_t *challenge, size_t len)
{
    struct bench *b = k->b;
    struct pst_buf in, out, b64;
    int rc;

    pst_buf_init(&in, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&b64, PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE) + 3, 1);
    rc = pst_base64_decode(challenge, len, &in);
    if (rc == 0)
        rc = pst_sasl_client_step(k->sc, in.data != NULL
                                             ? in.data
                                             : (const uint8_t *)"",
                                  in.len, &out);
    /* SCRAM's first challenge is server-first-message: answering it
     * derives the keys, unless the cache had them. */
    if (rc >= 0 && b->scram && k->challenges++ == 0 &&
        b->scram_cache == NULL)
        b->scram_derivations++;
    if (rc >= 0 && (pst_base64_encode(out.data, out.len, &b64) < 0 ||
                    pst_buf_append(&b64, "\r\n", 2) < 0))
        rc = PST_ENOMEM;
    if (rc < 0) {
        bconn_auth_fail(k, rc);
    } else {
        bconn_expect(k, ST_AUTH);
        bconn_send(k, b64.data, b64.len);
    }
    pst_buf_clear(&in);
    pst_buf_clear(&out);
    pst_buf_clear(&b64);
}

static void
bconn_after_ehlo(struct bconn *k)
{
    struct bench *b = k->b;

    if (b->o->starttls && !k->tls_up) {
        if (!(k->ext & EXT_STARTTLS)) {
            bconn_fail(k, "the server does not offer STARTTLS");
            return;
        }
        bconn_cmd(k, ST_STARTTLS, "STARTTLS");
        return;
    }
    if (b->o->idle > 0) {
        k->state = ST_IDLE;
        k->setting_up = 0;
        b->ready++;
        b->connecting--;
        bench_maybe_stop(b);
        return;
    }
    if (b->mech != NULL) {
        bconn_start_auth(k);
        return;
    }
    bconn_start_mail(k);
}

static void
bconn_send_ehlo(struct bconn *k)
{
    k->ext = 0;
    bconn_cmd(k, ST_EHLO, "EHLO " BENCH_HELO);
}

/* The TLS pump's callbacks: each returns -1 once the connection is
 * closing (its TLS state is then freed). */
static int
bconn_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return bconn_write_raw(ctx, p, n) < 0 ? -1 : 0;
}

static void bconn_take(struct bconn *k, const uint8_t *p, size_t n);

static int
bconn_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    struct bconn *k = ctx;

    bconn_take(k, p, n);
    return k->state == ST_CLOSING ? -1 : 0;
}

/* RFC 3207 §4.2: after the handshake the client forgets what it knew
 * and says EHLO again; on an implicit-TLS port the greeting is still to
 * come. */
static int
bconn_tls_established(void *ctx)
{
    struct bconn *k = ctx;

    k->handshaking = 0;
    k->tls_up = 1;
    k->t_last = uv_hrtime();
    if (k->ex_len == 0)
        bconn_send_ehlo(k);
    return k->state == ST_CLOSING ? -1 : 0;
}

static const struct tls_io bconn_tls_io = {
    .send = bconn_tls_send,
    .recv = bconn_tls_recv,
    .established = bconn_tls_established,
};

/* Ciphertext from the server (or none, to start): through the pump. */
static void
bconn_take_tls(struct bconn *k, const uint8_t *p, size_t n)
{
    char msg[TLS_ERROR_MAX + 16];
    int rc = tls_input(k->tls, p, n);

    if (rc == TLS_OK || rc == TLS_WANT_MORE || rc == TLS_STOPPED)
        return;
    if (rc == TLS_CLOSED) {
        bconn_fail(k, "the server closed the TLS session");
        return;
    }
    snprintf(msg, sizeof(msg), "TLS: %s", tls_error(k->tls));
    bconn_fail(k, msg);
}

static void
bconn_tls_begin(struct bconn *k)
{
    int rc = tls_new(k->b->tls_ctx, k->b->o->url.host, &k->tls);

    if (rc < 0) {
        bconn_fail(k, "TLS: cannot start");
        return;
    }
    tls_set_io(k->tls, &bconn_tls_io, k);
    k->handshaking = 1;
    k->state = ST_HANDSHAKE;
    k->line_len = 0;
    bconn_take_tls(k, NULL, 0);
}

static int
code_ok(enum bench_stage st, int code)
{
    switch (st) {
    case ST_GREETING:
    case ST_STARTTLS:
        return code == 220;
    case ST_EHLO:
    case ST_MAIL:
    case ST_DOT:
    case ST_NOOP:
        return code == 250;
    case ST_AUTH:
        return code == 334 || code == 235;
    case ST_RCPT:
        return code == 250 || code == 251;
    case ST_DATA:
        return code == 354;
    case ST_QUIT:
        return code == 221;
    case ST_CONNECT:
    case ST_HANDSHAKE:
    case ST_IDLE:
    case ST_CLOSING:
        break;
    }
    return 0;
}

/*
 * A complete reply for stage st; rl is its last line, taken apart (a 334
 * challenge is one line, and may be longer than the text kept for
 * failures).
 */
static void
bconn_dispatch(struct bconn *k, enum bench_stage st,
               const struct pst_smtp_reply_line *rl)
{
    struct bench *b = k->b;
    int code = rl->code;

    k->state = st;
    if (!code_ok(st, code)) {
        bconn_fail_at(k, bench_stage_names[st], k->text);
        return;
    }
    switch (st) {
    case ST_GREETING:
        bconn_send_ehlo(k);
        return;
    case ST_EHLO:
        bconn_after_ehlo(k);
        return;
    case ST_STARTTLS:
        bconn_tls_begin(k);
        return;
    case ST_AUTH:
        if (code == 334) {
            /* RFC 4954 §4: "334" SP the base64 challenge. */
            bconn_auth_continue(k, rl->text, rl->text_len);
            return;
        }
        /* 235: a mechanism whose server proves itself must have done so
         * (RFC 5802 §3 for SCRAM). */
        if (pst_sasl_client_finish(k->sc) < 0) {
            bconn_fail(k, "235 without the server's proof");
            return;
        }
        pst_sasl_client_free(k->sc);
        k->sc = NULL;
        bconn_start_mail(k);
        return;
    case ST_MAIL:
    case ST_RCPT:
        /* Without PIPELINING, one command at a time (RFC 2920 §3.1 lets
         * a client group them only when the server says it may). */
        if (k->ext & EXT_PIPELINING)
            return;
        if (k->rcpt_sent < b->o->rcpt) {
            size_t one = b->rcpt_cmds_len / b->o->rcpt;

            k->rcpt_sent++;
            bconn_expect(k, ST_RCPT);
            bconn_send(k, b->rcpt_cmds, one);
            return;
        }
        bconn_cmd(k, ST_DATA, "DATA");
        return;
    case ST_DATA:
        /* The message is prepared once: CRLF lines, none starting with
         * ".", ending in CRLF "." CRLF (RFC 5321 §4.1.1.4). */
        bconn_expect(k, ST_DOT);
        bconn_send(k, b->msg, b->msg_len);
        return;
    case ST_DOT:
        bconn_cmd(k, ST_QUIT, "QUIT");
        return;
    case ST_QUIT:
        bconn_finish(k, 1);
        return;
    case ST_NOOP:
        b->healthy++;
        bconn_cmd(k, ST_QUIT, "QUIT");
        return;
    case ST_CONNECT:
    case ST_HANDSHAKE:
    case ST_IDLE:
    case ST_CLOSING:
        break;
    }
}

/* Keep the reply text (lines joined with "\n", cut at BENCH_TEXT_MAX). */
static void
bconn_keep_text(struct bconn *k, const uint8_t *p, size_t n)
{
    size_t room;

    if (k->reply_lines > 1 && k->text_len + 1 < sizeof(k->text))
        k->text[k->text_len++] = '\n';
    room = sizeof(k->text) - 1 - k->text_len;
    if (n > room)
        n = room;
    memcpy(k->text + k->text_len, p, n);
    k->text_len += n;
    k->text[k->text_len] = '\0';
}

/* An EHLO keyword line's text: note the extensions the bench uses. */
static void
bconn_ehlo_keyword(struct bconn *k, const uint8_t *kw, size_t len)
{
    size_t n = 0;

    /* RFC 5321 §4.1.1.1: ehlo-line = ehlo-keyword *( SP ehlo-param );
     * "=" after the keyword is the old AUTH= form some servers send. */
    while (n < len && kw[n] != ' ' && kw[n] != '=')
        n++;
    if (n == 10 && strncasecmp((const char *)kw, "PIPELINING", 10) == 0)
        k->ext |= EXT_PIPELINING;
    else if (n == 8 && strncasecmp((const char *)kw, "STARTTLS", 8) == 0)
        k->ext |= EXT_STARTTLS;
}

/* One reply line, without its line end. */
static void
bconn_reply_line(struct bconn *k, const uint8_t *p, size_t n)
{
    struct pst_smtp_reply_line rl;
    enum bench_stage st;
    int rc;

    /* STYLE §8: every line through libpostern's one validator (RFC 5321
     * §4.2: a code [2-5][0-9][0-9], then "-", " " or the end; printable
     * text; the length limit). */
    rc = pst_smtp_reply_parse_line(p, n, &rl);
    if (rc < 0) {
        bconn_fail(k, rc == PST_ELIMIT ? "reply line too long"
                                       : "malformed reply line");
        return;
    }
    if (k->reply_lines == 0) {
        k->text_len = 0;
        k->reply_code = rl.code;
    } else if (rl.code != k->reply_code) {
        /* RFC 5321 §4.2.1: every line of a reply has the same code. */
        bconn_fail(k, "reply lines with different codes");
        return;
    }
    k->reply_lines++;
    bconn_keep_text(k, p, n);
    if (k->ex_len > 0 && k->expect[k->ex_head] == ST_EHLO &&
        rl.code == 250 && k->reply_lines > 1)
        bconn_ehlo_keyword(k, rl.text, rl.text_len);
    if (rl.more)
        return;
    k->reply_lines = 0;
    if (k->ex_len == 0) {
        bconn_fail(k, "a reply nobody asked for");
        return;
    }
    st = (enum bench_stage)k->expect[k->ex_head];
    k->ex_head = (k->ex_head + 1) % BENCH_MAX_EXPECT;
    k->ex_len--;
    k->t_last = uv_hrtime();
    bconn_dispatch(k, st, &rl);
}

/* Plaintext from the server: split into lines (memchr finds each LF; a
 * line may span reads). */
static void
bconn_take(struct bconn *k, const uint8_t *p, size_t n)
{
    while (n > 0 && k->state != ST_CLOSING) {
        const uint8_t *lf;
        size_t take, len;

        if (k->state == ST_IDLE) {
            bconn_fail(k, "data from the server while idle");
            return;
        }
        lf = memchr(p, '\n', n);
        take = lf != NULL ? (size_t)(lf - p) : n;
        /* A line (and its CR) longer than the validator takes. */
        if (take > sizeof(k->line) - 1 - k->line_len) {
            bconn_fail(k, "reply line too long");
            return;
        }
        memcpy(k->line + k->line_len, p, take);
        k->line_len += take;
        if (lf == NULL)
            return;
        p += take + 1;
        n -= take + 1;
        len = k->line_len;
        if (len > 0 && k->line[len - 1] == '\r')
            len--;
        k->line[len] = '\0';
        k->line_len = 0;
        bconn_reply_line(k, k->line, len);
        /* RFC 3207 §4.2: STARTTLS accepted, the server says nothing more
         * in clear (its TLS speaks after our ClientHello): bytes here
         * would be injected. */
        if (k->handshaking && k->state != ST_CLOSING && n > 0) {
            bconn_fail(k, "data after the STARTTLS reply");
            return;
        }
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct bconn *k = h->data;

    (void)suggested;
    /* One loop, and each read is consumed before the next: the
     * connections share one buffer (TLS decrypts into its own). */
    buf->base = (char *)k->b->rbuf;
    buf->len = BENCH_READ_CHUNK;
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct bconn *k = st->data;

    if (k->state == ST_CLOSING)
        return;
    if (n < 0) {
        char msg[128];

        if (n == UV_EOF)
            snprintf(msg, sizeof(msg), "the server closed the connection");
        else
            snprintf(msg, sizeof(msg), "read: %s", uv_strerror((int)n));
        bconn_fail(k, msg);
        return;
    }
    if (n == 0)
        return;
    if (k->tls != NULL)
        bconn_take_tls(k, (const uint8_t *)buf->base, (size_t)n);
    else
        bconn_take(k, (const uint8_t *)buf->base, (size_t)n);
}

static void
on_connect(uv_connect_t *req, int status)
{
    struct bconn *k = req->data;
    int rc;

    if (k->state == ST_CLOSING)
        return;
    if (status < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "connect: %s", uv_strerror(status));
        bconn_fail(k, msg);
        return;
    }
    k->t_last = uv_hrtime();
    /* SMTP is small writes and replies: no Nagle delay (RFC 1122
     * §4.2.3.4 allows turning it off). */
    uv_tcp_nodelay(&k->tcp, 1);
    rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (rc < 0) {
        bconn_fail(k, uv_strerror(rc));
        return;
    }
    k->state = ST_GREETING;
    if (k->b->o->url.implicit_tls)
        bconn_tls_begin(k);
}

static void
on_closed(uv_handle_t *h)
{
    struct bconn *k = h->data;
    struct bench *b = k->b;

    k->open = 0;
    b->active--;
    if (!b->stopping && b->o->idle == 0)
        bconn_start(k);
    else
        bench_maybe_stop(b);
}

void
bconn_close(struct bconn *k)
{
    if (k->state == ST_CLOSING)
        return;
    k->state = ST_CLOSING;
    if (k->sc != NULL) {
        pst_sasl_client_free(k->sc);
        k->sc = NULL;
    }
    tls_free(k->tls);
    k->tls = NULL;
    uv_close((uv_handle_t *)&k->tcp, on_closed);
}

/* The session is over: count it and close. */
static void
bconn_finish(struct bconn *k, int ok)
{
    struct bench *b = k->b;

    if (!k->counted) {
        k->counted = 1;
        if (ok) {
            b->ok++;
            if (b->o->idle == 0)
                bench_latency(b, bench_ms_between(k->t_start, uv_hrtime()));
        } else {
            b->failed++;
        }
    }
    bconn_close(k);
}

/* The stage a failure is reported at: the reply awaited, if any. */
static const char *
bconn_stage_name(const struct bconn *k)
{
    if (k->state == ST_CONNECT || k->state == ST_HANDSHAKE ||
        k->state == ST_IDLE || k->ex_len == 0)
        return bench_stage_names[k->state];
    return bench_stage_names[k->expect[k->ex_head]];
}

/*
 * The session failed: count it with its reason.  Sessions cut by the end
 * of a load run are closed by bench_end() without coming here, so they
 * count as neither.
 */
static void
bconn_fail_at(struct bconn *k, const char *stage, const char *text)
{
    struct bench *b = k->b;

    if (k->state == ST_CLOSING)
        return;
    if (!k->counted) {
        if (k->setting_up) {
            k->setting_up = 0;
            b->connecting--;
            b->setup_failed++;
        }
        bench_sample(b, stage, text);
        bconn_finish(k, 0);
        bench_maybe_stop(b);
        return;
    }
    bconn_close(k);
}

void
bconn_fail(struct bconn *k, const char *text)
{
    bconn_fail_at(k, bconn_stage_name(k), text);
}

void
bconn_start(struct bconn *k)
{
    struct bench *b = k->b;
    int rc;

    if (b->o->count > 0 && b->started >= b->o->count) {
        b->stopping = 1;
        bench_maybe_stop(b);
        return;
    }
    memset(k, 0, offsetof(struct bconn, line));
    k->b = b;
    k->state = ST_CONNECT;
    k->setting_up = b->o->idle > 0;
    k->t_start = k->t_last = uv_hrtime();
    k->expect[0] = ST_GREETING;
    k->ex_len = 1;
    rc = uv_tcp_init(&b->loop, &k->tcp);
    if (rc < 0) {
        fprintf(stderr, "postern bench: %s\n", uv_strerror(rc));
        b->stopping = 1;
        return;
    }
    k->tcp.data = k;
    k->connect.data = k;
    k->open = 1;
    b->active++;
    b->started++;
    rc = uv_tcp_connect(&k->connect, &k->tcp,
                        (const struct sockaddr *)&b->addr, on_connect);
    if (rc < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "connect: %s", uv_strerror(rc));
        bconn_fail(k, msg);
    }
}

