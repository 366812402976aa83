/*
 * Fuzz target: the SMTP server session under a SASL security layer (RFC
 * 4954 §4).  Each input first runs a real DIGEST-MD5 exchange of
 * lib/sasl's client against the session (security_layer on, no TLS), so
 * the layer is up; then the rest of the input goes to the session,
 * protected by the client's layer or not.
 *
 * Input: two option bytes, then the client's bytes.
 * Byte 0:
 *   0    qop: 0 auth-int, 1 auth-conf (3DES)
 *   1-2  feed: 0 all at once, 1 a byte at a time, 2 seven bytes at a
 *        time, 3 a line at a time
 * Byte 1:
 *   0-1  what the rest is: 0 raw bytes (not protected: the first buffer
 *        is refused, or waits), 1 each FUZZ_SEP segment wrapped by the
 *        client's layer, 2 the same with octet byte1>>2 of the first
 *        buffer flipped, 3 wrapped, then raw bytes after the first
 *        segment
 *
 * Invariants (abort() on a violation):
 * - the exchange reaches 235, and the 235 is the only clear text after
 *   it; every later octet of output is a buffer the client's layer
 *   unwraps (the server protects everything, honouring the client's
 *   maxbuf), and what comes out is well-formed reply lines;
 * - a session that refused a buffer closes (one CLOSE event, with
 *   PST_EFORGED, PST_EPROTO or PST_ELIMIT) and takes no more input;
 * - with wrapped input and no flipped octet, the session never refuses
 *   a buffer; with an octet flipped past the length field it always
 *   does;
 * - every question it asks takes its answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/base64.h>
#include <postern/cred.h>
#include <postern/sasl.h>
#include <postern/smtp.h>

#include "fuzz.h"

#define HOST "mail.example.test"
#define CLIENT_MAXBUF 4096

struct drv {
    struct pst_smtp_server *s;
    struct pst_cred *cred;
    struct pst_sasl_layer *cl;   /* the client's layer */
    struct pst_buf out;          /* server output not yet looked at */
    struct pst_buf wire;         /* protected output not yet unwrapped */
    struct pst_buf plain;        /* unwrapped replies */
    int layered;                 /* past the 235 */
    int closed;
    int close_error;
};

static void
drv_answer(struct drv *d, enum pst_smtp_event_type t,
           enum pst_smtp_verdict v, const struct pst_cred *c)
{
    struct pst_smtp_answer a = {
        .type = t, .verdict = v, .cred = c, .queue_id = "FUZZQID1",
    };

    if (pst_smtp_server_answer(d->s, &a) < 0)
        abort();
}

/* Check reply lines in d->plain, keeping a partial one. */
static void
check_replies(struct drv *d)
{
    size_t start = 0;

    if (d->plain.data == NULL)
        return;
    for (;;) {
        const uint8_t *nl = d->plain.len > start
                                ? memchr(d->plain.data + start, '\n',
                                         d->plain.len - start)
                                : NULL;
        size_t end, n;

        if (nl == NULL)
            break;
        end = (size_t)(nl - d->plain.data);
        n = end - start;
        /* "[2-5]xx", then " ", "-" or nothing, CRLF. */
        if (n < 4 || d->plain.data[end - 1] != '\r' ||
            d->plain.data[start] < '2' || d->plain.data[start] > '5' ||
            (n > 4 && d->plain.data[start + 3] != ' ' &&
             d->plain.data[start + 3] != '-'))
            abort();
        start = end + 1;
    }
    memmove(d->plain.data, d->plain.data + start, d->plain.len - start);
    d->plain.len -= start;
}

/* Take the output: before the layer it is clear; after it, buffers. */
static void
drv_output(struct drv *d)
{
    const uint8_t *p;
    size_t len, used;
    int rc;

    pst_smtp_server_output(d->s, &p, &len);
    if (len == 0)
        return;
    if (!d->layered) {
        if (pst_buf_append(&d->out, p, len) < 0)
            abort();
    } else if (pst_buf_append(&d->wire, p, len) < 0) {
        abort();
    }
    pst_smtp_server_consume(d->s, len);
    while (d->layered && d->wire.len > 0) {
        rc = pst_sasl_layer_unwrap(d->cl, d->wire.data, d->wire.len, &used,
                                   &d->plain);
        if (rc == 0)
            break;
        if (rc < 0)
            abort(); /* the server's own buffer refused */
        memmove(d->wire.data, d->wire.data + used, d->wire.len - used);
        d->wire.len -= used;
    }
    check_replies(d);
}

static void
drv_drain(struct drv *d)
{
    struct pst_smtp_event ev;
    int rc;

    while ((rc = pst_smtp_server_next_event(d->s, &ev)) == 1) {
        switch (ev.type) {
        case PST_SMTP_EV_AUTH_LOOKUP:
            drv_answer(d, ev.type, PST_SMTP_ACCEPT, d->cred);
            break;
        case PST_SMTP_EV_AUTH_VERIFY:
            drv_answer(d, ev.type,
                       pst_cred_verify(d->cred, ev.user, ev.password,
                                       ev.password_len) == 0
                           ? PST_SMTP_ACCEPT
                           : PST_SMTP_REJECT,
                       NULL);
            break;
        case PST_SMTP_EV_MAIL:
        case PST_SMTP_EV_RCPT:
        case PST_SMTP_EV_DATA_END:
            if (ev.need_answer)
                drv_answer(d, ev.type, PST_SMTP_ACCEPT, NULL);
            break;
        case PST_SMTP_EV_CLOSE:
            if (d->closed)
                abort();
            d->closed = 1;
            d->close_error = ev.error;
            if (ev.error != 0 && ev.error != PST_EFORGED &&
                ev.error != PST_EPROTO && ev.error != PST_ELIMIT)
                abort();
            break;
        default:
            break;
        }
    }
    if (rc < 0)
        abort();
    drv_output(d);
}

static void
drv_feed(struct drv *d, const uint8_t *p, size_t len, unsigned mode)
{
    while (len > 0 && !d->closed) {
        size_t n = len, used = 0;

        if (mode == 1)
            n = 1;
        else if (mode == 2 && n > 7)
            n = 7;
        else if (mode == 3) {
            const uint8_t *nl = memchr(p, '\n', len);

            n = nl != NULL ? (size_t)(nl - p) + 1 : len;
        }
        if (pst_smtp_server_feed(d->s, p, n, &used) < 0)
            abort();
        drv_drain(d);
        if (used == 0) {
            /* Full: it must have acted, or be closed. */
            if (pst_smtp_server_feed(d->s, p, n, &used) < 0)
                abort();
            if (used == 0 && !d->closed)
                return; /* parked mid-stream: the input stops here */
        }
        p += used;
        len -= used;
    }
}

/* The DIGEST-MD5 exchange up to the 235; returns 0, or -1 when it could
 * not run (out of memory). */
static int
drv_login(struct drv *d, unsigned qop, struct fuzz_rand *rnd)
{
    struct pst_sasl_client_config cc = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
        .host = HOST,
        .digest_qops = qop,
        .digest_ciphers = PST_SASL_CIPHER_3DES,
        .digest_maxbuf = CLIENT_MAXBUF,
        .random = fuzz_random,
        .random_ctx = rnd,
    };
    const struct pst_sasl_mech *m = pst_sasl_mech_find("DIGEST-MD5", 10);
    struct pst_sasl_client *c;
    struct pst_buf msg, line, chal;
    int rc = 0, step = PST_SASL_CONTINUE;

    if (pst_sasl_client_new(m, &cc, &c) < 0)
        return -1;
    pst_buf_init(&msg, 1 << 16, 1);
    pst_buf_init(&line, 1 << 16, 0);
    pst_buf_init(&chal, 1 << 16, 0);
    drv_feed(d, (const uint8_t *)"EHLO fuzz.example\r\nAUTH DIGEST-MD5\r\n",
             36, 0);
    for (int guard = 0; guard < 4; guard++) {
        const uint8_t *p = d->out.data;
        const uint8_t *c334 = NULL;

        for (size_t i = 0; p != NULL && i + 4 <= d->out.len; i++)
            if ((i == 0 || p[i - 1] == '\n') && memcmp(p + i, "334 ", 4) == 0)
                c334 = p + i;
        if (c334 == NULL)
            break;
        pst_buf_reset(&chal);
        pst_buf_reset(&msg);
        if (pst_base64_decode(c334 + 4,
                              (size_t)(d->out.data + d->out.len - c334) - 6,
                              &chal) < 0)
            abort();
        pst_buf_reset(&d->out);
        step = pst_sasl_client_step(c, chal.data, chal.len, &msg);
        if (step < 0)
            abort();
        pst_buf_reset(&line);
        if (pst_base64_encode(msg.data, msg.len, &line) < 0 ||
            pst_buf_append(&line, "\r\n", 2) < 0)
            abort();
        if (step == PST_SASL_DONE && pst_sasl_client_layer(c, &d->cl) < 0)
            abort();
        drv_feed(d, line.data, line.len, 0);
    }
    /* The 235, then the layer; nothing else came in clear. */
    if (step != PST_SASL_DONE || d->cl == NULL ||
        d->out.len != 37 ||
        memcmp(d->out.data, "235 2.7.0 Authentication successful\r\n", 37) !=
            0 ||
        pst_smtp_server_layer(d->s, NULL) != (qop & ~PST_SASL_QOP_AUTH))
        abort();
    d->layered = 1;
    pst_sasl_client_free(c);
    pst_buf_clear(&msg);
    pst_buf_clear(&line);
    pst_buf_clear(&chal);
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct pst_sasl_mech *mechs[2];
    static const char cred_text[] = "{PLAIN}pencil";
    struct pst_smtp_server_config cfg = {
        .hostname = HOST,
        .tls = PST_SMTP_TLS_NONE,
        .auth = PST_SMTP_AUTH_REQUIRED,
        .auth_before_tls = PST_SMTP_BEFORE_TLS_CHALLENGE,
        .security_layer = 1,
        .sender_check = PST_SMTP_SENDER_OFF,
        .mechs = mechs,
    };
    struct drv d = {0};
    struct fuzz_rand srnd, crnd;
    struct fuzz_split sp;
    uint8_t *seg;
    size_t seg_len;
    unsigned qop, feed, what, flip;
    int first = 1, flipped = 0;

    if (size < 2)
        return 0;
    qop = PST_SASL_QOP_AUTH |
          ((data[0] & 1) ? PST_SASL_QOP_AUTH_CONF : PST_SASL_QOP_AUTH_INT);
    feed = (data[0] >> 1) & 3;
    what = data[1] & 3;
    flip = data[1] >> 2;
    mechs[0] = pst_sasl_mech_find("DIGEST-MD5", 10);
    fuzz_rand_init(&srnd, NULL, 0);
    fuzz_rand_init(&crnd, NULL, 0);
    cfg.random = fuzz_random;
    cfg.random_ctx = &srnd;
    pst_buf_init(&d.out, 1 << 20, 0);
    pst_buf_init(&d.wire, 1 << 22, 0);
    pst_buf_init(&d.plain, 1 << 22, 0);
    if (pst_cred_parse(cred_text, sizeof(cred_text) - 1, &d.cred) < 0 ||
        pst_smtp_server_new(&cfg, &d.s) < 0 ||
        pst_smtp_server_start(d.s) < 0)
        abort();
    drv_drain(&d);
    pst_buf_reset(&d.out);
    if (drv_login(&d, qop, &crnd) < 0)
        goto out;
    fuzz_split_init(&sp, data + 2, size - 2);
    while (!d.closed && fuzz_split_next(&sp, &seg, &seg_len)) {
        if (what == 0 || (what == 3 && !first)) {
            drv_feed(&d, seg, seg_len, feed);
        } else {
            struct pst_buf b;

            pst_buf_init(&b, 1 << 22, 0);
            if (pst_sasl_layer_wrap(d.cl, seg, seg_len, &b) < 0)
                abort();
            if (what == 2 && !flipped && flip < b.len) {
                b.data[flip] ^= 0x5a;
                flipped = 1;
            }
            drv_feed(&d, b.data != NULL ? b.data : (const uint8_t *)"",
                     b.len, feed);
            pst_buf_clear(&b);
        }
        free(seg);
        first = 0;
    }
    /* Protected input that was not tampered with is never refused; an
     * octet flipped past the length (in the message, MAC, type or
     * sequence number, RFC 2831 §2.3-2.4) always is. */
    if ((what == 1 || (what == 2 && !flipped)) && d.closed &&
        d.close_error != 0)
        abort();
    if (what == 2 && flipped && flip >= 4 &&
        (!d.closed || d.close_error == 0))
        abort();
out:
    pst_smtp_server_free(d.s);
    pst_sasl_layer_free(d.cl);
    pst_cred_free(d.cred);
    pst_buf_clear(&d.out);
    pst_buf_clear(&d.wire);
    pst_buf_clear(&d.plain);
    return 0;
}
