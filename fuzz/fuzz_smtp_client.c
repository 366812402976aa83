/*
 * Fuzz target: the SMTP client session (include/postern/smtp_client.h)
 * fed arbitrary server bytes: the reply parser, EHLO keyword parsing,
 * STARTTLS, AUTH with every mechanism, MAIL/RCPT/DATA/QUIT.
 *
 * Input: two option bytes, then the server's bytes.
 * Byte 0 (client settings):
 *   0-1  STARTTLS: 0 auto, 1 required, 2 never, 3 implicit TLS (smtps)
 *   2    allow PLAIN/LOGIN without TLS
 *   3-5  mechanism: 0 the strongest offered, 1-6 forced (SCRAM-SHA-256,
 *        SCRAM-SHA-1, DIGEST-MD5, CRAM-MD5, PLAIN, LOGIN), 7 no AUTH
 *   6    probe (stop after EHLO and AUTH)
 *   7    two recipients (else one)
 * Byte 1 (driver):
 *   0-1  feed: 0 all at once, 1 a byte at a time, 2 seven bytes at a
 *        time, 3 a line at a time
 *   2    SIZE=1234 and BODY=8BITMIME
 *   3    the message in two pieces (else one)
 *   4    null sender (MAIL FROM:<>)
 *   5    partial_rcpt (an event per RCPT reply)
 *   6    reuse: on READY, the next message (two recipients, 8BITMIME),
 *        twice, then quit
 *   7    relay settings: mechanisms allowed XOAUTH2 CRAM-MD5 PLAIN LOGIN
 *        in that order (unless one is forced), a 900-octet password
 *        (PLAIN's initial response then waits for "334 "), AUTH=<> on
 *        every message and SMTPUTF8 on the second
 *
 * Events are answered as a driver does: STARTTLS with
 * pst_smtp_client_tls_started(), DATA with pst_smtp_client_data() and a small
 * message.  The output is consumed after every feed.  An input with a
 * 334 challenge whose SCRAM iteration count passes FUZZ_SCRAM_MAX_ITER is
 * skipped: the client accepts up to 10^7 (PBKDF2 for seconds).
 *
 * Invariants (abort() on a violation): the client never sends AUTH PLAIN
 * or AUTH LOGIN without TLS unless allowed, never sends AUTH or MAIL
 * without TLS when TLS is required, every output line ends in CRLF, and
 * the session takes the answers to its own events (a STARTTLS or DATA
 * event followed by a failure of the session may be refused with
 * PST_ESTATE; so may READY's next message), RCPT events come only with
 * partial_rcpt, in order, each naming its recipient, READY only with
 * reuse, and the session takes the next message or QUIT after it; with
 * a list of mechanisms, AUTH names one of it; MAIL has SMTPUTF8 and
 * AUTH=<> only when the server offers SMTPUTF8 and AUTH.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <postern/base64.h>
#include <postern/sasl.h>
#include <postern/smtp_client.h>

#include "fuzz.h"

#define FUZZ_SCRAM_MAX_ITER 16384

static const char message[] =
    "From: tim@example.test\n"
    "To: bob@example.test\n"
    "Subject: test\n"
    "\n"
    ".a line with a leading dot\n"
    "bare CR\rand CRLF\r\n"
    ".\n";

static const char *const rcpts[] = {"bob@example.test",
                                    "carol@example.test"};

struct driver {
    struct pst_smtp_client *c;
    uint8_t opt0, opt1;
    int closed;
    size_t nrcpt;            /* of the message */
    size_t rcpt_events;      /* RCPT events of the message so far */
    int messages;            /* given after the first */
    uint8_t prev;            /* the last byte of output */
    uint8_t head[128];       /* start of the current output line */
    size_t head_len;
};

static int
has_prefix_ci(const uint8_t *p, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    return len >= n && strncasecmp((const char *)p, prefix, n) == 0;
}

/* A line's first bytes are known: may the client send it now? */
static const char *const relay_mechs[] = {"XOAUTH2", "CRAM-MD5", "PLAIN",
                                          "LOGIN", NULL};

/* With a list of mechanisms and none forced, AUTH names one of them. */
static void
check_auth_mech(const struct driver *d)
{
    size_t n;

    if (!(d->opt1 & 0x80u) || ((d->opt0 >> 3) & 7u) != 0 ||
        !has_prefix_ci(d->head, d->head_len, "AUTH "))
        return;
    for (n = 5; n < d->head_len && d->head[n] != ' ' && d->head[n] != '\r';
         n++)
        ;
    for (size_t i = 0; relay_mechs[i] != NULL; i++)
        if (n - 5 == strlen(relay_mechs[i]) &&
            memcmp(d->head + 5, relay_mechs[i], n - 5) == 0)
            return;
    abort();
}

/* 1 if the line so far holds word (case-sensitive). */
static int
head_has(const struct driver *d, const char *word)
{
    size_t n = strlen(word);

    for (size_t i = 0; i + n <= d->head_len; i++)
        if (memcmp(d->head + i, word, n) == 0)
            return 1;
    return 0;
}

static void
check_command(struct driver *d)
{
    int tls = pst_smtp_client_tls_active(d->c);
    unsigned ext = pst_smtp_client_ext(d->c);

    check_auth_mech(d);
    if (has_prefix_ci(d->head, d->head_len, "MAIL FROM:") &&
        ((head_has(d, " SMTPUTF8") &&
          !(ext & PST_SMTP_CLIENT_EXT_SMTPUTF8)) ||
         (head_has(d, " AUTH=<>") && !(ext & PST_SMTP_CLIENT_EXT_AUTH))))
        abort();

    if (tls)
        return;
    if (!(d->opt0 & 0x04u) &&
        (has_prefix_ci(d->head, d->head_len, "AUTH PLAIN") ||
         has_prefix_ci(d->head, d->head_len, "AUTH LOGIN")))
        abort();
    if ((d->opt0 & 3u) == 1 &&
        (has_prefix_ci(d->head, d->head_len, "AUTH ") ||
         has_prefix_ci(d->head, d->head_len, "MAIL ")))
        abort();
}

static void
check_output(struct driver *d, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (d->head_len < sizeof(d->head))
            d->head[d->head_len++] = p[i];
        if (p[i] == '\n') {
            /* Lines end in CRLF (RFC 5321 §2.3.8). */
            if (d->prev != '\r')
                abort();
            check_command(d);
            d->head_len = 0;
        }
        d->prev = p[i];
    }
}

static void
send_all(struct driver *d)
{
    const uint8_t *p;
    size_t len;

    pst_smtp_client_output(d->c, &p, &len);
    if (len > 0) {
        check_output(d, p, len);
        pst_smtp_client_consume(d->c, len);
    }
}

static void
handle(struct driver *d, const struct pst_smtp_client_event *ev)
{
    volatile size_t touch = 0;

    touch += ev->reply != NULL ? strlen(ev->reply) : 0;
    touch += ev->stage != NULL ? strlen(ev->stage) : 0;
    touch += ev->mech != NULL ? strlen(ev->mech) : 0;
#ifdef FUZZ_TRACE
    /* -DFUZZ_TRACE: show the events (for corpus work). */
    fprintf(stderr, "event %d error %s code %d stage %s: %s\n",
            (int)ev->type, pst_errname(ev->error), ev->code,
            ev->stage != NULL ? ev->stage : "-",
            ev->reply != NULL ? ev->reply : "-");
#endif
    switch (ev->type) {
    case PST_SMTP_CLIENT_EV_STARTTLS: {
        int rc;

        send_all(d);
        /* ESTATE: the session failed after queuing the event (bytes
         * glued to the 220, RFC 3207 §4.2); FAIL and CLOSE follow. */
        rc = pst_smtp_client_tls_started(d->c);
        if (rc != 0 && rc != PST_ESTATE)
            abort();
        break;
    }
    case PST_SMTP_CLIENT_EV_EHLO: {
        const struct pst_sasl_mech *m = pst_smtp_client_choose_mech(d->c);

        touch += strlen(pst_smtp_client_mechs(d->c));
        touch += strlen(pst_smtp_client_greeting(d->c));
        touch += strlen(pst_smtp_client_ehlo_reply(d->c));
        touch += pst_smtp_client_ext(d->c) +
                 (size_t)pst_smtp_client_size_limit(d->c);
        touch += m != NULL ? strlen(pst_sasl_mech_name(m)) : 0;
        break;
    }
    case PST_SMTP_CLIENT_EV_DATA: {
        size_t len = sizeof(message) - 1, half = len / 2;
        int rc;

        /* ESTATE: the server spoke while it should have listened (bytes
         * after the 354 in the same feed): FAIL and CLOSE follow. */
        if (d->opt1 & 0x08u) {
            rc = pst_smtp_client_data(d->c, (const uint8_t *)message, half, 0);
            if (rc != 0 && rc != PST_ESTATE)
                abort();
            send_all(d);
            rc = pst_smtp_client_data(d->c, (const uint8_t *)message + half,
                                      len - half, 1);
        } else {
            rc = pst_smtp_client_data(d->c, (const uint8_t *)message, len, 1);
        }
        if (rc != 0 && rc != PST_ESTATE)
            abort();
        break;
    }
    case PST_SMTP_CLIENT_EV_RCPT:
        touch += strlen(ev->enhanced);
        if (!(d->opt1 & 0x20u) || ev->rcpt_index != d->rcpt_events ||
            ev->rcpt_index >= d->nrcpt || ev->rcpt == NULL ||
            strcmp(ev->rcpt, rcpts[ev->rcpt_index]) != 0)
            abort();
        d->rcpt_events++;
        break;
    case PST_SMTP_CLIENT_EV_READY: {
        int rc;

        if (!(d->opt1 & 0x40u))
            abort();
        d->rcpt_events = 0;
        if (d->messages < 2) {
            unsigned flags = PST_SMTP_CLIENT_MAIL_8BITMIME;

            if (d->opt1 & 0x80u)
                flags = PST_SMTP_CLIENT_MAIL_AUTH_NULL |
                        (d->messages == 0 ? PST_SMTP_CLIENT_MAIL_SMTPUTF8
                                          : PST_SMTP_CLIENT_MAIL_8BITMIME);
            d->messages++;
            d->nrcpt = 2;
            rc = pst_smtp_client_next_message(d->c, "tim@example.test",
                                              rcpts, 2, 0, flags);
        } else {
            rc = pst_smtp_client_quit(d->c);
        }
        /* ESTATE: the server spoke between messages in the same feed
         * (e.g. 421): FAIL and CLOSE follow. */
        if (rc != 0 && rc != PST_ESTATE)
            abort();
        break;
    }
    case PST_SMTP_CLIENT_EV_FAIL:
        if (ev->error >= 0)
            abort();
        break;
    case PST_SMTP_CLIENT_EV_CLOSE:
        d->closed = 1;
        break;
    default:
        break;
    }
    (void)touch;
}

static void
drain(struct driver *d)
{
    struct pst_smtp_client_event ev;
    int guard = 0;

    while (pst_smtp_client_next_event(d->c, &ev) == 1) {
        handle(d, &ev);
        if (++guard > 10000)
            abort(); /* events without end */
    }
    send_all(d);
}

/* Whether a 334 line of the input makes SCRAM run a PBKDF2 too long. */
static int
too_many_iterations(const uint8_t *p, size_t len)
{
    struct pst_buf b;
    size_t start = 0;
    int found = 0;

    pst_buf_init(&b, len + 1, 0);
    while (start < len && !found) {
        const uint8_t *lf = memchr(p + start, '\n', len - start);
        size_t end = lf != NULL ? (size_t)(lf - p) : len;
        size_t s = start + 3, e = end;

        if (end - start >= 3 && memcmp(p + start, "334", 3) == 0) {
            if (s < e && (p[s] == ' ' || p[s] == '-'))
                s++;
            if (e > s && p[e - 1] == '\r')
                e--;
            pst_buf_reset(&b);
            if (pst_base64_decode(p + s, e - s, &b) == 0) {
                for (size_t i = 0; i + 2 < b.len && !found; i++) {
                    size_t digits;

                    if ((i == 0 || b.data[i - 1] == ',') &&
                        b.data[i] == 'i' && b.data[i + 1] == '=' &&
                        fuzz_number_above(b.data + i + 2, b.len - i - 2,
                                          FUZZ_SCRAM_MAX_ITER, &digits))
                        found = 1;
                }
            }
        }
        start = end + 1;
    }
    pst_buf_clear(&b);
    return found;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum pst_smtp_client_starttls modes[] = {
        PST_SMTP_CLIENT_STARTTLS_AUTO, PST_SMTP_CLIENT_STARTTLS_REQUIRED,
        PST_SMTP_CLIENT_STARTTLS_NEVER, PST_SMTP_CLIENT_STARTTLS_AUTO};
    struct driver d = {0};
    struct fuzz_rand rnd;
    struct pst_sasl_client_config sasl;
    struct pst_smtp_client_config cfg;
    static uint8_t long_pw[900];
    const struct pst_sasl_mech *forced = NULL;
    const uint8_t *p;
    size_t left;
    unsigned m;

    if (size < 2)
        return 0;
    d.opt0 = data[0];
    d.opt1 = data[1];
    p = data + 2;
    left = size - 2;
    if (too_many_iterations(p, left))
        return 0;
    m = (d.opt0 >> 3) & 7u;
    if (m >= 1 && m <= 6)
        forced = pst_sasl_mech_at(m - 1);
    fuzz_rand_init(&rnd, NULL, 0);
    sasl = (struct pst_sasl_client_config){
        .authcid = "tim",
        .password = (const uint8_t *)"tanstaaftanstaaf",
        .password_len = 16,
        .host = "mail.example.test",
        .random = fuzz_random,
        .random_ctx = &rnd,
    };
    cfg = (struct pst_smtp_client_config){
        .helo = "client.example.test",
        .starttls = modes[d.opt0 & 3u],
        .implicit_tls = (d.opt0 & 3u) == 3,
        .allow_plaintext_auth = (d.opt0 & 0x04u) != 0,
        .mech = forced != NULL ? pst_sasl_mech_name(forced) : NULL,
        .sasl = m == 7 ? NULL : &sasl,
        .probe = (d.opt0 & 0x40u) != 0,
        .mail_from = (d.opt1 & 0x10u) ? "" : "tim@example.test",
        .rcpt = rcpts,
        .nrcpt = (d.opt0 & 0x80u) ? 2 : 1,
        .size = (d.opt1 & 0x04u) ? 1234 : 0,
        .body_8bit = (d.opt1 & 0x04u) != 0,
        .partial_rcpt = (d.opt1 & 0x20u) != 0,
        .reuse = (d.opt1 & 0x40u) != 0,
    };
    d.nrcpt = cfg.nrcpt;
    if (d.opt1 & 0x80u) {
        memset(long_pw, 'p', sizeof(long_pw));
        sasl.password = long_pw;
        sasl.password_len = sizeof(long_pw);
        cfg.mechs = relay_mechs;
        cfg.mail_flags = PST_SMTP_CLIENT_MAIL_AUTH_NULL;
    }
    if (pst_smtp_client_new(&cfg, &d.c) != 0)
        abort();
    drain(&d);
    while (left > 0 && !d.closed) {
        size_t n = fuzz_chunk_len(d.opt1, p, left);

        if (pst_smtp_client_feed(d.c, p, n) != 0)
            break; /* PST_ESTATE: the session is over */
        p += n;
        left -= n;
        drain(&d);
    }
    pst_smtp_client_free(d.c);
    return 0;
}
