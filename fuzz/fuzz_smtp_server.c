/*
 * Fuzz target: the SMTP server session (include/postern/smtp.h) fed
 * arbitrary client bytes, across STARTTLS, AUTH and DATA; also
 * pst_smtp_server_received() and pst_smtp_redact().
 *
 * Input: two option bytes, then the client's bytes.
 * Byte 0 (listener policy):
 *   0-1  TLS: 0 none, 1 STARTTLS, 2 implicit, 3 STARTTLS + require_tls
 *   2-3  AUTH: 0 required, 1 optional, 2 off, 3 required
 *   4-5  auth_before_tls: 0 none, 1 challenge, 2 all, 3 all and the
 *        exceptions of a compatibility profile: helo_auth, bare_lf =
 *        normalize, long_lines = fold
 *   6    sender_check off (else strict)
 *   7    legacy "250-AUTH=" line
 * Byte 1 (driver):
 *   0-1  feed: 0 all at once, 1 a byte at a time, 2 seven bytes at a
 *        time, 3 a line at a time
 *   2-3  answers: 0 accept, 1 every third refused, 2 every third
 *        temporary failure, 3 every user unknown
 *   4    small limits: SIZE 2000, 3 recipients, 3 errors
 *   5    mechanisms: PLAIN and CRAM-MD5 only (else all)
 *   6    refusals carry the driver's own reply text
 *   7    the driver ends the session (421 timeout) after the input
 *
 * Every event that asks is answered: AUTH_LOOKUP with "{PLAIN}pencil",
 * AUTH_VERIFY with pst_cred_verify(), MAIL and RCPT accepted, DATA_END
 * stored as "TESTQID1" (with a Received header made first), STARTTLS with
 * pst_smtp_server_tls_started(s, "TLSv1.3", "TLS_AES_128_GCM_SHA256").
 *
 * Invariants (abort() on a violation):
 * - every reply line is "[2-5]xx" then " ", "-" or nothing, printable
 *   text, CRLF, at most 512 octets (RFC 5321 §4.2, §4.5.3.1.5), and the
 *   lines of a multi-line reply share their code;
 * - trace lines of client commands and the output of pst_smtp_redact()
 *   are printable ASCII; an AUTH continuation is redacted whole;
 * - a DATA event is one line (with long_lines = fold, a piece of one)
 *   ending in CRLF with no other CR or LF, at most 1000 octets (no
 *   smuggled end of data, CVE-2023-51764), with or without the
 *   exceptions; the session reports only exceptions it was allowed;
 * - a Received header is printable text in CRLF-ended lines;
 * - an unknown user never authenticates, and a success reports a user;
 * - the session takes every answer to a question it asked, and after a
 *   full drain it takes more input unless it is closed;
 * - "421 ... too many errors" never follows the reply to a failed AUTH
 *   before the third failed AUTH (RFC 4954 §9).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/cred.h>
#include <postern/sasl.h>
#include <postern/smtp.h>

#include "fuzz.h"

#define FUZZ_REPLY_MAX 512   /* RFC 5321 §4.5.3.1.5, CRLF included */

struct driver {
    struct pst_smtp_server *s;
    uint8_t opt0, opt1;
    unsigned answers;            /* answers given, for the variations */
    const struct pst_cred *looked_up; /* last AUTH_LOOKUP answer */
    int closed;
    char rcpt[PST_SMTP_MAX_PATH + 1]; /* last recipient asked about */
    /* Reply lines being checked across output chunks. */
    uint8_t line[FUZZ_REPLY_MAX + 1];
    size_t line_len;
    int in_multiline;
    char code[3];
    unsigned auth_failures;      /* AUTH_RESULT failures with a 5xx */
    int last_was_auth_failure;   /* the last reply line was one */
};

/* The replies of a failed AUTH (lib/smtp/reply.c, server_auth.c, and the
 * driver's own refusal below). */
static const char *const auth_failure_replies[] = {
    "535 5.7.8 ", "501 5.5.2 ", "501 5.7.0 ", "500 5.5.6 Authentication",
    "534 5.7.9 ",
};

static struct pst_cred *pencil;

static const struct pst_sasl_mech *mech_subset[3];

static void
init_once(void)
{
    static const char text[] = "{PLAIN}pencil";

    if (pencil != NULL)
        return;
    if (pst_cred_parse(text, sizeof(text) - 1, &pencil) != 0)
        abort();
    mech_subset[0] = pst_sasl_mech_find("PLAIN", 5);
    mech_subset[1] = pst_sasl_mech_find("CRAM-MD5", 8);
    mech_subset[2] = NULL;
    if (mech_subset[0] == NULL || mech_subset[1] == NULL)
        abort();
}

static int
printable(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return 0;
    return 1;
}

static void
trace_cb(void *ctx, enum pst_smtp_trace what, const char *text, size_t len)
{
    (void)ctx;
    if (what != PST_SMTP_TRACE_STATE &&
        !printable((const uint8_t *)text, len))
        abort();
}

/* One complete reply line (CRLF included). */
static void
check_reply_line(struct driver *d, const uint8_t *p, size_t len)
{
    if (len < 5 || len > FUZZ_REPLY_MAX || p[len - 2] != '\r')
        abort();
    if (p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9')
        abort();
    if (d->in_multiline && memcmp(d->code, p, 3) != 0)
        abort();
    if (len > 5 && p[3] != ' ' && p[3] != '-')
        abort();
    if (!printable(p + 3, len - 5))
        abort();
    memcpy(d->code, p, 3);
    d->in_multiline = len > 5 && p[3] == '-';
    if (len >= 37 && memcmp(p, "421 4.7.0 ", 10) == 0 &&
        memcmp(p + len - 17, "too many errors\r\n", 17) == 0 &&
        d->last_was_auth_failure && d->auth_failures < 3)
        abort();
    d->last_was_auth_failure = 0;
    for (size_t i = 0; i < sizeof(auth_failure_replies) /
                               sizeof(auth_failure_replies[0]); i++) {
        size_t n = strlen(auth_failure_replies[i]);

        if (len >= n && memcmp(p, auth_failure_replies[i], n) == 0)
            d->last_was_auth_failure = 1;
    }
}

static void
check_output(struct driver *d, const uint8_t *p, size_t len)
{
#ifdef FUZZ_TRACE
    /* -DFUZZ_TRACE: show the replies (for corpus work). */
    fwrite(p, 1, len, stderr);
#endif
    for (size_t i = 0; i < len; i++) {
        if (d->line_len >= sizeof(d->line))
            abort(); /* a line longer than 512 octets */
        d->line[d->line_len++] = p[i];
        if (p[i] == '\n') {
            check_reply_line(d, d->line, d->line_len);
            d->line_len = 0;
        }
    }
}

static void
check_received(const struct pst_buf *b)
{
    size_t i;

    if (b->len < 2 || b->data[b->len - 2] != '\r' ||
        b->data[b->len - 1] != '\n')
        abort();
    for (i = 0; i < b->len; i++) {
        uint8_t c = b->data[i];

        if (c == '\r') {
            if (i + 1 >= b->len || b->data[i + 1] != '\n')
                abort();
            i++;
        } else if ((c < 0x20 && c != '\t') || c > 0x7e) {
            abort();
        }
    }
}

static enum pst_smtp_verdict
verdict(struct driver *d)
{
    unsigned mode = (d->opt1 >> 2) & 3u;
    unsigned n = d->answers++;

    if (mode == 1 && n % 3 == 2)
        return PST_SMTP_REJECT;
    if (mode == 2 && n % 3 == 2)
        return PST_SMTP_TEMPFAIL;
    return PST_SMTP_ACCEPT;
}

static const char *
own_reply(const struct driver *d, enum pst_smtp_verdict v, int auth)
{
    if (!(d->opt1 & 0x40u) || v == PST_SMTP_ACCEPT)
        return NULL;
    if (v == PST_SMTP_REJECT)
        return auth ? "534 5.7.9 Authentication mechanism is too weak"
                    : "550 5.7.1 Refused by local policy";
    return auth ? "454 4.7.0 Temporary authentication failure"
                : "451 4.3.0 Try again later";
}

static void
answer(struct driver *d, struct pst_smtp_answer *a)
{
    if (pst_smtp_server_answer(d->s, a) != 0)
        abort();
}

static void
handle(struct driver *d, const struct pst_smtp_event *ev)
{
    struct pst_smtp_answer a = {.type = ev->type};
    volatile size_t touch = 0;

    /* Every string of an event must be readable until the next call. */
    touch += ev->mech != NULL ? strlen(ev->mech) : 0;
    touch += ev->user != NULL ? strlen(ev->user) : 0;
    touch += ev->reason != NULL ? strlen(ev->reason) : 0;
    touch += ev->address != NULL ? strlen(ev->address) : 0;
    (void)touch;

    switch (ev->type) {
    case PST_SMTP_EV_STARTTLS:
        if (pst_smtp_server_tls_started(d->s, "TLSv1.3",
                                        "TLS_AES_128_GCM_SHA256") != 0)
            abort();
        break;
    case PST_SMTP_EV_AUTH_LOOKUP:
        a.verdict = verdict(d);
        a.cred = ((d->opt1 >> 2) & 3u) == 3 ? NULL : pencil;
        a.reply = own_reply(d, a.verdict, 1);
        d->looked_up = a.verdict == PST_SMTP_ACCEPT ? a.cred : NULL;
        answer(d, &a);
        break;
    case PST_SMTP_EV_AUTH_VERIFY:
        if (ev->password == NULL && ev->password_len > 0)
            abort();
        a.verdict = pst_cred_verify(d->looked_up,
                                    ev->user != NULL ? ev->user : "",
                                    ev->password != NULL
                                        ? ev->password
                                        : (const uint8_t *)"",
                                    ev->password_len) == 0
                        ? PST_SMTP_ACCEPT
                        : PST_SMTP_REJECT;
        answer(d, &a);
        break;
    case PST_SMTP_EV_AUTH_RESULT:
        if (ev->ok && (d->looked_up == NULL || ev->user == NULL ||
                       pst_smtp_server_user(d->s, NULL) == NULL))
            abort();
        /* The classes lib/smtp/reply.c answers with a 5xx; ETEMP (and
         * our own failures) get 454. */
        if (!ev->ok &&
            (ev->error == PST_EAUTH || ev->error == PST_EPREP ||
             ev->error == PST_EPROTO || ev->error == PST_ECANCEL ||
             ev->error == PST_ELIMIT || ev->error == PST_EWEAK))
            d->auth_failures++;
        break;
    case PST_SMTP_EV_MAIL:
    case PST_SMTP_EV_RCPT:
        if (ev->address == NULL)
            abort();
        if (ev->type == PST_SMTP_EV_RCPT) {
            size_t n = strlen(ev->address);

            if (n >= sizeof(d->rcpt))
                n = sizeof(d->rcpt) - 1;
            memcpy(d->rcpt, ev->address, n);
            d->rcpt[n] = '\0';
        }
        if (!ev->need_answer)
            break;
        a.verdict = verdict(d);
        a.reply = own_reply(d, a.verdict, 0);
        answer(d, &a);
        break;
    case PST_SMTP_EV_DATA:
        /* RFC 5321 §2.3.8: one line, ended by CRLF and nothing else. */
        if (ev->data == NULL || ev->len < 2 ||
            ev->len > PST_SMTP_MAX_TEXT_LINE ||
            ev->data[ev->len - 2] != '\r' || ev->data[ev->len - 1] != '\n' ||
            memchr(ev->data, '\r', ev->len - 2) != NULL ||
            memchr(ev->data, '\n', ev->len - 2) != NULL)
            abort();
        break;
    case PST_SMTP_EV_DATA_END: {
        struct pst_smtp_received r = {
            .peer_addr = "192.0.2.1",
            .peer_name = (d->answers & 1u) ? "client.example.test" : NULL,
            .queue_id = "TESTQID1",
            .recipient = d->rcpt[0] != '\0' ? d->rcpt : NULL,
            .date = "Tue, 2 Jan 2024 10:00:00 +0000",
        };
        struct pst_buf b;

        pst_buf_init(&b, 4096, 0);
        if (pst_smtp_server_received(d->s, &r, &b) == 0)
            check_received(&b);
        pst_buf_clear(&b);
        a.verdict = verdict(d);
        a.queue_id = "TESTQID1";
        a.reply = own_reply(d, a.verdict, 0);
        answer(d, &a);
        break;
    }
    case PST_SMTP_EV_CLOSE:
        d->closed = 1;
        break;
    default:
        break;
    }
}

/* Act on everything buffered and send all output.  Returns -1 when the
 * session is broken. */
static int
drain(struct driver *d)
{
    for (int guard = 0; guard < 10000; guard++) {
        struct pst_smtp_event ev;
        const uint8_t *p;
        size_t len;
        int rc, events = 0;

        while ((rc = pst_smtp_server_next_event(d->s, &ev)) == 1) {
            handle(d, &ev);
            events++;
        }
        if (rc < 0)
            return -1;
        (void)pst_smtp_server_output(d->s, &p, &len);
        if (len > 0) {
            check_output(d, p, len);
            pst_smtp_server_consume(d->s, len);
        }
        if (events == 0 && len == 0)
            return 0;
    }
    abort(); /* events or output without end */
}


static void
fuzz_redact(const uint8_t *p, size_t len)
{
    struct pst_buf b;
    size_t start = 0;
    int cont = 0;

    pst_buf_init(&b, 2 * PST_SMTP_MAX_AUTH_LINE, 0);
    while (start < len) {
        const uint8_t *lf = memchr(p + start, '\n', len - start);
        size_t end = lf != NULL ? (size_t)(lf - p) : len;
        size_t n = end - start;
        uint8_t *line;

        if (n > 0 && p[start + n - 1] == '\r')
            n--;
        line = fuzz_dup(p + start, n, 0);
        if (line == NULL)
            break;
        pst_buf_reset(&b);
        if (pst_smtp_redact(line, n, cont, &b) == 0) {
            if (!printable(b.data, b.len))
                abort();
            if (cont && (b.len != 8 || memcmp(b.data, "********", 8) != 0))
                abort();
        }
        free(line);
        cont = !cont;
        start = end + 1;
    }
    pst_buf_clear(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum pst_smtp_tls_mode tls_modes[] = {
        PST_SMTP_TLS_NONE, PST_SMTP_TLS_STARTTLS, PST_SMTP_TLS_IMPLICIT,
        PST_SMTP_TLS_STARTTLS};
    static const enum pst_smtp_auth_policy auth_modes[] = {
        PST_SMTP_AUTH_REQUIRED, PST_SMTP_AUTH_OPTIONAL, PST_SMTP_AUTH_OFF,
        PST_SMTP_AUTH_REQUIRED};
    static const enum pst_smtp_auth_before_tls abt_modes[] = {
        PST_SMTP_BEFORE_TLS_NONE, PST_SMTP_BEFORE_TLS_CHALLENGE,
        PST_SMTP_BEFORE_TLS_ALL, PST_SMTP_BEFORE_TLS_ALL};
    static const char *const uri_hosts[] = {"127.0.0.1", NULL};
    struct driver d = {0};
    struct pst_smtp_server_config cfg;
    struct fuzz_rand rnd;
    const uint8_t *p;
    size_t left, stalls = 0;
    int rc;

    if (size < 2)
        return 0;
    init_once();
    d.opt0 = data[0];
    d.opt1 = data[1];
    p = data + 2;
    left = size - 2;
    fuzz_rand_init(&rnd, NULL, 0);
    cfg = (struct pst_smtp_server_config){
        .hostname = "mail.example.test",
        .tls = tls_modes[d.opt0 & 3u],
        .require_tls = (d.opt0 & 3u) == 3,
        .auth = auth_modes[(d.opt0 >> 2) & 3u],
        .auth_before_tls = abt_modes[(d.opt0 >> 4) & 3u],
        .helo_auth = ((d.opt0 >> 4) & 3u) == 3,
        .bare_lf = ((d.opt0 >> 4) & 3u) == 3 ? PST_SMTP_BARE_LF_NORMALIZE
                                             : PST_SMTP_BARE_LF_REJECT,
        .long_lines = ((d.opt0 >> 4) & 3u) == 3 ? PST_SMTP_LONG_LINES_FOLD
                                                : PST_SMTP_LONG_LINES_REJECT,
        .mechs = (d.opt1 & 0x20u) ? mech_subset : NULL,
        .legacy_auth_line = (d.opt0 & 0x80u) != 0,
        .max_message_size = (d.opt1 & 0x10u) ? 2000 : 0,
        .max_recipients = (d.opt1 & 0x10u) ? 3 : 0,
        .max_errors = (d.opt1 & 0x10u) ? 3 : 0,
        .sender_check = (d.opt0 & 0x40u) ? PST_SMTP_SENDER_OFF
                                         : PST_SMTP_SENDER_STRICT,
        .uri_hosts = uri_hosts,
        .timestamp = 1700000000,
        .random = fuzz_random,
        .random_ctx = &rnd,
        .trace = trace_cb,
    };
    rc = pst_smtp_server_new(&cfg, &d.s);
    if (rc == PST_EINVAL)
        return 0; /* e.g. AUTH required where no mechanism can be offered */
    if (rc != 0)
        abort();
    if (cfg.tls == PST_SMTP_TLS_IMPLICIT &&
        pst_smtp_server_tls_started(d.s, "TLSv1.3",
                                    "TLS_AES_128_GCM_SHA256") != 0)
        abort();
    if (pst_smtp_server_start(d.s) != 0)
        abort();
    if (drain(&d) < 0)
        goto out;

    while (left > 0 && !d.closed) {
        size_t n = fuzz_chunk_len(d.opt1, p, left), used = 0;

        if (pst_smtp_server_feed(d.s, p, n, &used) != 0)
            abort();
        p += used;
        left -= used;
        if (drain(&d) < 0)
            goto out;
        if (used == 0) {
            /* Drained and answered everything, yet no room for input:
             * a real driver would stop reading for good. */
            if (++stalls > 1 &&
                pst_smtp_server_state(d.s, NULL) != PST_SMTP_STATE_CLOSED)
                abort();
        } else {
            stalls = 0;
        }
    }
    if ((d.opt1 & 0x80u) && !d.closed) {
        if (pst_smtp_server_close(d.s, PST_SMTP_CLOSE_TIMEOUT) != 0)
            abort();
        (void)drain(&d);
        if (!d.closed)
            abort();
    }
    {
        volatile size_t touch = 0;
        const char *mech = NULL, *user = pst_smtp_server_user(d.s, &mech);
        const char *helo = pst_smtp_server_helo(d.s);

        touch += user != NULL ? strlen(user) : 0;
        touch += mech != NULL ? strlen(mech) : 0;
        touch += helo != NULL ? strlen(helo) : 0;
        touch += strlen(pst_smtp_state_name(pst_smtp_server_state(d.s,
                                                                  NULL)));
        (void)touch;
    }
    if (((d.opt0 >> 4) & 3u) != 3 && pst_smtp_server_compat_used(d.s) != 0)
        abort();
out:
    pst_smtp_server_free(d.s);
    fuzz_redact(data + 2, size - 2);
    return 0;
}
