/*
 * The SMTP server session: RFC 5321 with PIPELINING (RFC 2920), SIZE (RFC
 * 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463),
 * STARTTLS (RFC 3207) and AUTH (RFC 4954), without I/O.
 *
 * feed() only copies bytes in; next_event() reads one line at a time and
 * acts on it through the command table, or through the AUTH-continuation
 * and DATA handlers, which see their lines before any command lookup
 * (OpenSMTPD smtp_command()).  Every state change goes through
 * pst__server_enter_state().  A step that needs the driver queues an event
 * with need_answer set and enters a WAIT_* state, where no input is acted
 * on until pst_smtp_server_answer().
 *
 * Memory: no buffer is allocated up front.  Each grows with the bytes that
 * go through it; the input and output are given back once they are empty
 * if they grew past SERVER_BUF_KEEP (a long AUTH line, a DATA burst, a
 * run of pipelined replies), and the SASL messages when the exchange
 * ends, so an idle session holds a few hundred bytes of buffers.
 *
 * This file holds the session's core; server_int.h says where the rest is.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/smtp.h>

#include "server_int.h"

/* --- Names --------------------------------------------------------------- */

static const char *const state_names[] = {
#define SERVER_STATE_TEXT_(name, text) text,
    PST_SMTP_STATE_MAP(SERVER_STATE_TEXT_)
#undef SERVER_STATE_TEXT_
};

static const char *const event_names[] = {
#define SERVER_EVENT_TEXT_(name) #name,
    PST_SMTP_EVENT_MAP(SERVER_EVENT_TEXT_)
#undef SERVER_EVENT_TEXT_
};

const char *
pst_smtp_state_name(enum pst_smtp_state st)
{
    if ((unsigned)st >= PST__ARRAY_LEN(state_names))
        return "unknown";
    return state_names[st];
}

const char *
pst_smtp_event_name(enum pst_smtp_event_type t)
{
    if ((unsigned)t >= PST__ARRAY_LEN(event_names))
        return "UNKNOWN";
    return event_names[t];
}

/*
 * The only way to change state (curl smtp_state(), OpenSMTPD
 * smtp_enter_state()): remembers the old one and traces "old -> new".
 */
void
pst__server_enter_state(struct pst_smtp_server *s, enum pst_smtp_state st)
{
    char text[64];
    int n;

    if (st == s->state)
        return;
    s->prev = s->state;
    s->state = st;
    if (s->cfg.trace == NULL)
        return;
    n = snprintf(text, sizeof(text), "%s -> %s",
                 pst_smtp_state_name(s->prev), pst_smtp_state_name(st));
    if (n > 0)
        s->cfg.trace(s->cfg.trace_ctx, PST_SMTP_TRACE_STATE, text,
                     (size_t)n < sizeof(text) ? (size_t)n
                                              : sizeof(text) - 1);
}

static int
server_parked(const struct pst_smtp_server *s)
{
    switch (s->state) {
    case PST_SMTP_STATE_WAIT_LOOKUP:
    case PST_SMTP_STATE_WAIT_VERIFY:
    case PST_SMTP_STATE_WAIT_SENDER:
    case PST_SMTP_STATE_WAIT_RCPT:
    case PST_SMTP_STATE_WAIT_STORED:
    case PST_SMTP_STATE_WAIT_TLS:
        return 1;
    default:
        return 0;
    }
}

/* --- Output -------------------------------------------------------------- */

void
pst__server_trace(struct pst_smtp_server *s, enum pst_smtp_trace what,
                  const void *text, size_t len)
{
    if (s->cfg.trace != NULL)
        s->cfg.trace(s->cfg.trace_ctx, what, text, len);
}

/* Queue one reply line (CRLF added). */
void
pst__server_put(struct pst_smtp_server *s, const char *line, size_t len)
{
    int rc;

    if (s->broken)
        return;
    if ((rc = pst_buf_append(&s->out, line, len)) < 0 ||
        (rc = pst_buf_append(&s->out, "\r\n", 2)) < 0) {
        s->broken = rc == PST_ELIMIT ? PST_ENOMEM : rc;
        return;
    }
    s->flush = 0;
    pst__server_trace(s, PST_SMTP_TRACE_SERVER, line, len);
}

__attribute__((format(printf, 2, 0))) static void
server_vreply(struct pst_smtp_server *s, const char *fmt, va_list ap)
{
    char line[PST__SMTP_MAX_REPLY + 1];
    int n = vsnprintf(line, sizeof(line), fmt, ap);

    if (n < 0)
        n = 0;
    pst__server_put(s, line,
                    (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void
pst__server_reply(struct pst_smtp_server *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    server_vreply(s, fmt, ap);
    va_end(ap);
}

/*
 * Count a client error.  Every one in the session counts, whatever came
 * between (DESIGN.md: "repeated abuse gets 421"; a success does not start
 * the count again, or BOGUS/NOOP pairs would never end).  At max_errors
 * the session closes with 421 at the next command boundary, except that
 * a failed AUTH closes it only from the third on (RFC 4954 §9: no
 * connection dropped before 3 failed authentications).
 */
void
pst__server_count_error(struct pst_smtp_server *s, int auth_failure)
{
    s->errors++;
    if (auth_failure)
        s->auth_failures++;
    if (s->errors >= s->max_errors &&
        (!auth_failure || s->auth_failures >= PST_SMTP_MIN_MAX_ERRORS))
        s->close_pending = 1;
}

/* A reply to a client mistake, counted. */
void
pst__server_error(struct pst_smtp_server *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    server_vreply(s, fmt, ap);
    va_end(ap);
    pst__server_count_error(s, 0);
}

/* A reply chosen elsewhere: 5xx counts as an error, 4xx does not. */
void
pst__server_reply_line(struct pst_smtp_server *s, const char *line)
{
    if (line[0] == '5')
        pst__server_error(s, "%s", line);
    else
        pst__server_reply(s, "%s", line);
}

/* --- Events -------------------------------------------------------------- */

struct pst_smtp_event *
pst__server_event(struct pst_smtp_server *s, enum pst_smtp_event_type t,
                  int ask)
{
    struct pst_smtp_event *ev;

    if (s->evq_len == SERVER_MAX_EVENTS) {
        /* Cannot happen: next_event() empties the queue before acting
         * on more input.  Fail safe rather than overwrite. */
        s->broken = PST_ENOMEM;
        ev = &s->scratch;
    } else {
        ev = &s->evq[(s->evq_head + s->evq_len) % SERVER_MAX_EVENTS];
        s->evq_len++;
    }
    memset(ev, 0, sizeof(*ev));
    ev->type = t;
    ev->need_answer = ask;
    return ev;
}

/* 1 if an event that needs an answer is still queued (not yet seen). */
static int
server_ask_queued(const struct pst_smtp_server *s)
{
    for (unsigned i = 0; i < s->evq_len; i++)
        if (s->evq[(s->evq_head + i) % SERVER_MAX_EVENTS].need_answer)
            return 1;
    return 0;
}

/* --- Input --------------------------------------------------------------- */

void
pst__server_drop_input(struct pst_smtp_server *s)
{
    s->rpos = s->in.len;
    s->scan = 0;
    s->line_flags = 0;
    s->discard = 0;
    s->discard_cr = 0;
}

/* Trace a client line the way a log may show it. */
void
pst__server_trace_line(struct pst_smtp_server *s, const uint8_t *line,
                       size_t len, int auth_continuation)
{
    struct pst_buf b;

    if (s->cfg.trace == NULL)
        return;
    pst_buf_init(&b, PST_SMTP_MAX_AUTH_LINE + 16, 0);
    if (pst_smtp_redact(line, len, auth_continuation, &b) == 0)
        pst__server_trace(s, PST_SMTP_TRACE_CLIENT, server_str(&b), b.len);
    pst_buf_clear(&b);
}

/* --- Session knowledge --------------------------------------------------- */

void
pst__server_reset_transaction(struct pst_smtp_server *s)
{
    pst_buf_reset(&s->mail_from);
    pst_buf_reset(&s->rcpt);
    s->nrcpt = 0;
    s->rcpt_seen = 0;
    s->mail_size = 0;
    s->body_8bit = 0;
    s->data_size = 0;
    s->data_error = 0;
    s->data_reason = NULL;
    s->data_reply = NULL;
}

/* Drop everything and queue CLOSE: after 221, or after a 421 reply. */
struct pst_smtp_event *
pst__server_close_now(struct pst_smtp_server *s)
{
    struct pst_smtp_event *ev;

    pst__server_drop_input(s);
    pst__server_end_sasl(s);
    ev = pst__server_event(s, PST_SMTP_EV_CLOSE, 0);
    pst__server_enter_state(s, PST_SMTP_STATE_CLOSED);
    s->flush = 1;
    return ev;
}

void
pst__server_restart(struct pst_smtp_server *s)
{
    s->greeted = 0;
    s->esmtp = 0;
    pst_buf_reset(&s->helo);
    pst__server_reset_transaction(s);
    pst__server_enter_state(s, PST_SMTP_STATE_GREETING);
}

/* Too many errors: 421 4.7.0 and close. */
static void
server_check_close(struct pst_smtp_server *s)
{
    if (!s->close_pending || s->broken)
        return;
    if (s->state != PST_SMTP_STATE_GREETING &&
        s->state != PST_SMTP_STATE_IDLE && s->state != PST_SMTP_STATE_MAIL)
        return;
    pst__server_reply(s, "421 4.7.0 %s Error: too many errors",
                      s->cfg.hostname);
    pst__server_close_now(s)->reason = "too many errors";
}

/* --- The loop ------------------------------------------------------------ */

/*
 * All input was acted on: start the buffer over, and give its memory back
 * if a long line or a large write made it grow (an idle session stays
 * small).  Called only when no event that points into the input is still
 * valid.  The buffer is secret: pst_buf_shrink() wipes it.
 */
static void
server_trim_input(struct pst_smtp_server *s)
{
    if (s->rpos < s->in.len)
        return;
    s->rpos = 0;
    s->in.len = 0;
    if (s->in.data != NULL)
        s->in.data[0] = '\0';
    if (s->in.cap > SERVER_BUF_KEEP)
        (void)pst_buf_shrink(&s->in, 0);
}

static int
server_can_act(const struct pst_smtp_server *s)
{
    if (pst__server_pending_out(s) >= SERVER_OUT_HIGH)
        return 0;
    switch (s->state) {
    case PST_SMTP_STATE_GREETING:
    case PST_SMTP_STATE_IDLE:
    case PST_SMTP_STATE_MAIL:
    case PST_SMTP_STATE_AUTH:
    case PST_SMTP_STATE_DATA:
        return 1;
    default:
        return 0;
    }
}

/* Act on one line.  Returns 1 if one was taken, 0 if none is complete. */
static int
server_step(struct pst_smtp_server *s)
{
    switch (s->state) {
    case PST_SMTP_STATE_AUTH:
        return pst__server_auth_line(s);
    case PST_SMTP_STATE_DATA:
        return pst__server_data_line(s);
    default:
        return pst__server_command(s);
    }
}

int
pst_smtp_server_next_event(struct pst_smtp_server *s,
                           struct pst_smtp_event *ev)
{
    int progressed;

    if (s == NULL || ev == NULL)
        return PST_EINVAL;
    for (;;) {
        if (s->broken)
            return s->broken;
        if (s->evq_len > 0) {
            *ev = s->evq[s->evq_head];
            s->evq_head = (s->evq_head + 1) % SERVER_MAX_EVENTS;
            s->evq_len--;
            /* Only a DATA event points into the input.  After the last
             * queued event the driver may stop calling (a parked
             * session): trim now. */
            if (s->evq_len == 0 && ev->type != PST_SMTP_EV_DATA)
                server_trim_input(s);
            return 1;
        }
        if (!server_can_act(s))
            break;
        /* Under a security layer, what came whole is unwrapped first. */
        progressed = s->layer != NULL ? pst__server_layer_pull(s) : 0;
        if (s->evq_len > 0 || s->broken)
            continue;
        progressed |= server_step(s);
        server_check_close(s);
        if (!progressed && s->evq_len == 0)
            break;
    }
    /* No event is out: the last one's pointers ended with this call. */
    server_trim_input(s);
    return s->broken;
}

/* --- Public API ---------------------------------------------------------- */

int
pst_smtp_server_new(const struct pst_smtp_server_config *cfg,
                    struct pst_smtp_server **out)
{
    struct pst_smtp_server *s;
    int can_offer = 0;

    if (out == NULL)
        return PST_EINVAL;
    *out = NULL;
    if (cfg == NULL ||
        !pst__smtp_printable(cfg->hostname, PST_SMTP_MAX_DOMAIN, 1) ||
        (cfg->max_errors != 0 &&
         cfg->max_errors < PST_SMTP_MIN_MAX_ERRORS) ||
        (unsigned)cfg->tls > PST_SMTP_TLS_IMPLICIT ||
        (unsigned)cfg->auth > PST_SMTP_AUTH_OFF ||
        (unsigned)cfg->auth_before_tls > PST_SMTP_BEFORE_TLS_ALL ||
        (unsigned)cfg->sender_check > PST_SMTP_SENDER_OFF ||
        (unsigned)cfg->bare_lf > PST_SMTP_BARE_LF_NORMALIZE ||
        (unsigned)cfg->long_lines > PST_SMTP_LONG_LINES_FOLD)
        return PST_EINVAL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PST_ENOMEM;
    s->cfg = *cfg;
    if (cfg->mechs == NULL) {
        const struct pst_sasl_mech *m;

        while (s->nmechs < SERVER_MAX_MECHS &&
               (m = pst_sasl_mech_at(s->nmechs)) != NULL)
            s->mechs[s->nmechs++] = m;
    } else {
        for (size_t i = 0; cfg->mechs[i] != NULL; i++) {
            if (s->nmechs == SERVER_MAX_MECHS) {
                free(s);
                return PST_EINVAL;
            }
            s->mechs[s->nmechs++] = cfg->mechs[i];
        }
    }
    /* auth = required where no mechanism can ever be offered would
     * refuse every message. */
    for (size_t i = 0; i < s->nmechs; i++) {
        unsigned f = pst_sasl_mech_flags(s->mechs[i]);

        /* -PLUS and EXTERNAL only ever under TLS. */
        if ((f & (PST_MECH_CHANNEL_BINDING | PST_MECH_EXTERNAL)) &&
            cfg->tls == PST_SMTP_TLS_NONE)
            continue;
        if (cfg->tls != PST_SMTP_TLS_NONE ||
            cfg->auth_before_tls == PST_SMTP_BEFORE_TLS_ALL ||
            (cfg->auth_before_tls == PST_SMTP_BEFORE_TLS_CHALLENGE &&
             !(f & PST_MECH_SENDS_PASSWORD)))
            can_offer = 1;
    }
    if (cfg->auth == PST_SMTP_AUTH_REQUIRED && !can_offer) {
        free(s);
        return PST_EINVAL;
    }
    s->max_rcpt = cfg->max_recipients != 0 ? cfg->max_recipients
                                           : PST_SMTP_DEFAULT_MAX_RCPT;
    s->max_errors = cfg->max_errors != 0 ? cfg->max_errors
                                         : PST_SMTP_DEFAULT_MAX_ERRORS;
    /* No buffer is allocated yet: each grows with what goes through it
     * (feed(), replies) and is given back when it is empty again. */
    pst_buf_init(&s->in, PST_SMTP_MAX_INPUT, 1);
    pst_buf_init(&s->out, SERVER_OUT_MAX, 0);
    pst_buf_init(&s->helo, PST_SMTP_MAX_DOMAIN, 0);
    pst_buf_init(&s->user, PST_SASL_MAX_NAME, 0);
    pst_buf_init(&s->attempt, PST_SASL_MAX_NAME, 0);
    pst_buf_init(&s->sasl_in, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&s->sasl_out, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&s->mail_from, PST_SMTP_MAX_PATH, 0);
    pst_buf_init(&s->rcpt, PST_SMTP_MAX_PATH, 0);
    pst_buf_init(&s->data_line, PST_SMTP_MAX_TEXT_LINE, 0);
    s->state = s->prev = PST_SMTP_STATE_NEW;
    *out = s;
    return 0;
}

void
pst_smtp_server_free(struct pst_smtp_server *s)
{
    if (s == NULL)
        return;
    pst_sasl_server_free(s->sasl);
    pst__server_layer_free(s);
    if (s->tlsi != NULL) {
        pst_buf_clear(&s->tlsi->external_id);
        OPENSSL_clear_free(s->tlsi, sizeof(*s->tlsi));
    }
    /* The input may hold AUTH lines not yet wiped: it is secret. */
    pst_buf_clear(&s->in);
    pst_buf_clear(&s->out);
    pst_buf_clear(&s->helo);
    pst_buf_clear(&s->user);
    pst_buf_clear(&s->attempt);
    pst_buf_clear(&s->sasl_in);
    pst_buf_clear(&s->sasl_out);
    pst_buf_clear(&s->mail_from);
    pst_buf_clear(&s->rcpt);
    pst_buf_clear(&s->data_line);
    OPENSSL_clear_free(s, sizeof(*s));
}

int
pst_smtp_server_start(struct pst_smtp_server *s)
{
    if (s == NULL)
        return PST_EINVAL;
    if (s->state != PST_SMTP_STATE_NEW ||
        (s->cfg.tls == PST_SMTP_TLS_IMPLICIT && !s->tls))
        return PST_ESTATE;
    /* RFC 5321 §4.2: 220 <domain>; RFC 2034 §3: no enhanced code. */
    pst__server_reply(s, "220 %s ESMTP ready", s->cfg.hostname);
    s->flush = 1;
    pst__server_enter_state(s, PST_SMTP_STATE_GREETING);
    return s->broken;
}

int
pst_smtp_server_feed(struct pst_smtp_server *s, const uint8_t *in,
                     size_t len, size_t *consumed)
{
    size_t n;

    if (consumed != NULL)
        *consumed = 0;
    if (s == NULL || consumed == NULL || (in == NULL && len > 0))
        return PST_EINVAL;
    if (s->state == PST_SMTP_STATE_NEW)
        return PST_ESTATE;
    /* RFC 3207 §4.2: plaintext after STARTTLS is dropped. */
    if (s->state == PST_SMTP_STATE_WAIT_TLS ||
        s->state == PST_SMTP_STATE_CLOSED) {
        *consumed = len;
        return 0;
    }
    /* Under a security layer the bytes are protected buffers: they wait
     * whole in their own buffer (RFC 4954 §4). */
    if (s->layer != NULL) {
        *consumed = pst__server_layer_feed(s, in, len);
        return 0;
    }
    if (s->rpos > 0) {
        memmove(s->in.data, s->in.data + s->rpos, s->in.len - s->rpos);
        s->in.len -= s->rpos;
        s->in.data[s->in.len] = '\0';
        s->rpos = 0;
    }
    n = s->in.max - s->in.len;
    if (n > len)
        n = len;
    /* The buffer grows (doubling, up to PST_SMTP_MAX_INPUT) only as the
     * client sends.  Without memory the session cannot go on: the next
     * pst_smtp_server_next_event() says so. */
    if (n > 0 && pst_buf_append(&s->in, in, n) < 0) {
        s->broken = PST_ENOMEM;
        n = 0;
    }
    *consumed = n;
    return 0;
}

/* The event a parked session waits for, or -1. */
static int
server_waiting_for(const struct pst_smtp_server *s)
{
    switch (s->state) {
    case PST_SMTP_STATE_WAIT_LOOKUP:
        return PST_SMTP_EV_AUTH_LOOKUP;
    case PST_SMTP_STATE_WAIT_VERIFY:
        return PST_SMTP_EV_AUTH_VERIFY;
    case PST_SMTP_STATE_WAIT_SENDER:
        return PST_SMTP_EV_MAIL;
    case PST_SMTP_STATE_WAIT_RCPT:
        return PST_SMTP_EV_RCPT;
    case PST_SMTP_STATE_WAIT_STORED:
        return PST_SMTP_EV_DATA_END;
    default:
        return -1;
    }
}
int
pst_smtp_server_answer(struct pst_smtp_server *s,
                       const struct pst_smtp_answer *a)
{
    int want;

    if (s == NULL || a == NULL)
        return PST_EINVAL;
    if (s->broken)
        return s->broken;
    want = server_waiting_for(s);
    if (want < 0 || server_ask_queued(s))
        return PST_ESTATE;
    if ((int)a->type != want ||
        (a->verdict != PST_SMTP_ACCEPT && a->verdict != PST_SMTP_REJECT &&
         a->verdict != PST_SMTP_TEMPFAIL))
        return PST_EINVAL;
    if (a->reply != NULL &&
        !(a->verdict == PST_SMTP_REJECT && pst__smtp_reply_ok(a->reply,
                                                              '5')) &&
        !(a->verdict == PST_SMTP_TEMPFAIL && pst__smtp_reply_ok(a->reply,
                                                                '4')))
        return PST_EINVAL;
    if (want == PST_SMTP_EV_DATA_END && a->verdict == PST_SMTP_ACCEPT &&
        !pst__smtp_printable(a->queue_id, PST__SMTP_MAX_QUEUEID, 1))
        return PST_EINVAL;

    switch (want) {
    case PST_SMTP_EV_AUTH_LOOKUP:
    case PST_SMTP_EV_AUTH_VERIFY:
        pst__server_answer_auth(s, a);
        break;
    case PST_SMTP_EV_MAIL:
        if (a->verdict == PST_SMTP_ACCEPT) {
            pst__server_reply(s, "250 2.1.0 Ok");
            pst__server_enter_state(s, PST_SMTP_STATE_MAIL);
            break;
        }
        /* sender_check = strict refusal: 553 5.7.1 (RFC 3463 X.7.1
         * "delivery not authorized"). */
        pst__server_reply_line(
            s, a->reply != NULL ? a->reply
               : a->verdict == PST_SMTP_REJECT
                   ? "553 5.7.1 Error: sender address not owned by the "
                     "authenticated user"
                   : "451 4.3.0 Error: sender check failed, try again "
                     "later");
        pst__server_reset_transaction(s);
        pst__server_enter_state(s, PST_SMTP_STATE_IDLE);
        break;
    case PST_SMTP_EV_RCPT:
        if (a->verdict == PST_SMTP_ACCEPT) {
            s->nrcpt++;
            pst__server_reply(s, "250 2.1.5 Ok");
        } else {
            /* A refused recipient is the client's error too (a
             * dictionary attack); a 4xx is not counted. */
            pst__server_reply_line(
                s, a->reply != NULL ? a->reply
                   : a->verdict == PST_SMTP_REJECT
                       ? "550 5.1.1 Error: recipient address rejected"
                       : "451 4.3.0 Error: recipient check failed, try "
                         "again later");
        }
        pst__server_enter_state(s, PST_SMTP_STATE_MAIL);
        break;
    case PST_SMTP_EV_DATA_END:
        /* DESIGN.md: 250 only once the message is stored durably. */
        if (a->verdict == PST_SMTP_ACCEPT)
            pst__server_reply(s, "250 2.0.0 Ok: queued as %s", a->queue_id);
        else
            pst__server_reply(s, "%s",
                              a->reply != NULL ? a->reply
                              : a->verdict == PST_SMTP_REJECT
                                  ? "554 5.6.0 Error: message rejected"
                                  : "451 4.3.0 Error: message not stored, "
                                    "try again later");
        pst__server_reset_transaction(s);
        pst__server_enter_state(s, PST_SMTP_STATE_IDLE);
        break;
    }
    server_check_close(s);
    return s->broken;
}

int
pst_smtp_server_tls_started(struct pst_smtp_server *s, const char *version,
                            const char *cipher)
{
    int implicit;

    if (s == NULL)
        return PST_EINVAL;
    implicit = s->state == PST_SMTP_STATE_NEW &&
               s->cfg.tls == PST_SMTP_TLS_IMPLICIT && !s->tls;
    if (s->state != PST_SMTP_STATE_WAIT_TLS && !implicit)
        return PST_ESTATE;
    if (server_ask_queued(s))
        return PST_ESTATE;
    if (!pst__smtp_printable(version, SERVER_MAX_TLS_NAME, 1) ||
        !pst__smtp_printable(cipher, SERVER_MAX_TLS_NAME, 1))
        return PST_EINVAL;
    if (s->tlsi == NULL) {
        s->tlsi = calloc(1, sizeof(*s->tlsi));
        if (s->tlsi == NULL)
            return PST_ENOMEM;
        pst_buf_init(&s->tlsi->external_id, PST_SASL_MAX_NAME, 0);
    }
    s->tls = 1;
    snprintf(s->tlsi->version, sizeof(s->tlsi->version), "%s", version);
    snprintf(s->tlsi->cipher, sizeof(s->tlsi->cipher), "%s", cipher);
    if (implicit)
        return 0;
    /* RFC 3207 §4.2: "the server MUST discard any knowledge obtained
     * from the client, such as the argument to the EHLO command": the
     * client starts again with EHLO; a previous AUTH is forgotten too. */
    pst__server_drop_input(s);
    s->authed = 0;
    s->auth_mech = NULL;
    pst_buf_reset(&s->user);
    pst__server_restart(s);
    return 0;
}

int
pst_smtp_server_tls_auth(struct pst_smtp_server *s,
                         const struct pst_smtp_tls_auth *ta)
{
    struct server_tls *t;
    size_t idlen;

    if (s == NULL || ta == NULL)
        return PST_EINVAL;
    if (!s->tls || server_ask_queued(s) || s->state == PST_SMTP_STATE_CLOSED)
        return PST_ESTATE;
    if ((ta->cb_type == NULL) != (ta->cb_data == NULL || ta->cb_len == 0) ||
        (ta->cb_type != NULL && !pst__scram_cb_type_ok(ta->cb_type)))
        return PST_EINVAL;
    if (ta->cb_len > PST_SASL_MAX_CB_DATA)
        return PST_ELIMIT;
    if (ta->external_id != NULL) {
        idlen = strlen(ta->external_id);
        if (idlen == 0 || idlen > PST_SASL_MAX_NAME ||
            !pst__utf8_valid((const uint8_t *)ta->external_id, idlen))
            return PST_EINVAL;
        for (size_t i = 0; i < idlen; i++)
            if ((uint8_t)ta->external_id[i] < 0x20 ||
                ta->external_id[i] == 0x7f)
                return PST_EINVAL;
    }
    t = s->tlsi; /* s->tls: not NULL */
    OPENSSL_cleanse(t->cb_data, sizeof(t->cb_data));
    t->cb_len = 0;
    t->cb_type[0] = '\0';
    if (ta->cb_type != NULL) {
        memcpy(t->cb_type, ta->cb_type, strlen(ta->cb_type) + 1);
        memcpy(t->cb_data, ta->cb_data, ta->cb_len);
        t->cb_len = ta->cb_len;
    }
    pst_buf_reset(&t->external_id);
    if (ta->external_id != NULL &&
        pst_buf_append_str(&t->external_id, ta->external_id) < 0)
        return PST_ENOMEM;
    return 0;
}

int
pst_smtp_server_close(struct pst_smtp_server *s,
                      enum pst_smtp_close_reason why)
{
    if (s == NULL)
        return PST_EINVAL;
    if (s->state == PST_SMTP_STATE_CLOSED)
        return PST_ESTATE;
    s->evq_len = 0;
    switch (why) {
    case PST_SMTP_CLOSE_TIMEOUT:
        /* RFC 5321 §4.5.3.2: the server may close after a timeout. */
        pst__server_reply(s, "421 4.4.2 %s Error: timeout exceeded",
                          s->cfg.hostname);
        break;
    case PST_SMTP_CLOSE_SHUTDOWN:
        pst__server_reply(s, "421 4.3.2 %s Service shutting down",
                          s->cfg.hostname);
        break;
    case PST_SMTP_CLOSE_AUTH_LOCKOUT:
        /* RFC 4954 §9 lets a server drop a client after failed attempts
         * (not before 3); RFC 3463 X.7.0: security policy. */
        pst__server_reply(s,
                          "421 4.7.0 %s Error: too many failed "
                          "authentications, try again later",
                          s->cfg.hostname);
        break;
    case PST_SMTP_CLOSE_BUSY:
    default:
        /* RFC 5321 §3.1: 421 instead of the greeting. */
        pst__server_reply(s,
                          "421 4.7.0 %s Error: too many connections, "
                          "try again later",
                          s->cfg.hostname);
        break;
    }
    pst__server_close_now(s);
    return s->broken;
}

int
pst_smtp_server_output(struct pst_smtp_server *s, const uint8_t **p,
                       size_t *len)
{
    struct server_layer *ly = s->layer;
    size_t pending;

    if (s == NULL || p == NULL || len == NULL)
        return 0;
    if (s->layer != NULL) {
        /* Protect what was queued since the last call, in one go. */
        pst__server_layer_seal(s);
        pending = ly->wire.len - ly->wire_off;
        *p = pending > 0 ? ly->wire.data + ly->wire_off : NULL;
        *len = pending;
        return pending > 0 &&
               (s->flush || server_parked(s) ||
                s->state == PST_SMTP_STATE_CLOSED);
    }
    pending = s->out.len - s->out_off;
    *p = pending > 0 ? s->out.data + s->out_off : NULL;
    *len = pending;
    return pending > 0 &&
           (s->flush || server_parked(s) ||
            s->state == PST_SMTP_STATE_CLOSED);
}

void
pst_smtp_server_consume(struct pst_smtp_server *s, size_t n)
{
    struct server_layer *ly = s->layer;
    size_t pending;

    if (s == NULL)
        return;
    if (s->layer != NULL) {
        pending = ly->wire.len - ly->wire_off;
        ly->wire_off += n < pending ? n : pending;
        if (ly->wire_off == ly->wire.len) {
            pst_buf_reset(&ly->wire);
            ly->wire_off = 0;
            if (ly->wire.cap > SERVER_BUF_KEEP)
                (void)pst_buf_shrink(&ly->wire, 0);
        } else if (ly->wire_off > ly->wire.len / 2) {
            memmove(ly->wire.data, ly->wire.data + ly->wire_off,
                    ly->wire.len - ly->wire_off);
            ly->wire.len -= ly->wire_off;
            ly->wire.data[ly->wire.len] = '\0';
            ly->wire_off = 0;
        }
        return;
    }
    pending = s->out.len - s->out_off;
    if (n > pending)
        n = pending;
    s->out_off += n;
    if (s->out_off == s->out.len) {
        pst_buf_reset(&s->out);
        s->out_off = 0;
        /* Grown by a burst of pipelined replies: give it back. */
        if (s->out.cap > SERVER_BUF_KEEP)
            (void)pst_buf_shrink(&s->out, 0);
    } else if (s->out_off > s->out.len / 2) {
        memmove(s->out.data, s->out.data + s->out_off,
                s->out.len - s->out_off);
        s->out.len -= s->out_off;
        s->out.data[s->out.len] = '\0';
        s->out_off = 0;
    }
}

static size_t
server_buf_bytes(const struct pst_buf *b)
{
    return b->data != NULL ? b->cap + 1 : 0;
}

size_t
pst__smtp_server_buffer_bytes(const struct pst_smtp_server *s)
{
    return server_buf_bytes(&s->in) + server_buf_bytes(&s->out) +
           server_buf_bytes(&s->helo) + server_buf_bytes(&s->user) +
           server_buf_bytes(&s->attempt) + server_buf_bytes(&s->sasl_in) +
           server_buf_bytes(&s->sasl_out) + server_buf_bytes(&s->mail_from) +
           server_buf_bytes(&s->rcpt) + server_buf_bytes(&s->data_line) +
           (s->layer != NULL ? server_buf_bytes(&s->layer->raw) +
                                   server_buf_bytes(&s->layer->plain) +
                                   server_buf_bytes(&s->layer->wire)
                             : 0) +
           (s->tlsi != NULL ? server_buf_bytes(&s->tlsi->external_id) : 0);
}

enum pst_smtp_state
pst_smtp_server_state(const struct pst_smtp_server *s,
                      enum pst_smtp_state *prev)
{
    if (prev != NULL)
        *prev = s->prev;
    return s->state;
}

const char *
pst_smtp_server_user(const struct pst_smtp_server *s, const char **mech)
{
    if (mech != NULL)
        *mech = s->authed ? s->auth_mech : NULL;
    return s->authed ? server_str(&s->user) : NULL;
}

unsigned
pst_smtp_server_compat_used(const struct pst_smtp_server *s)
{
    return s->compat_used;
}

const char *
pst_smtp_server_helo(const struct pst_smtp_server *s)
{
    return s->greeted ? server_str(&s->helo) : NULL;
}

int
pst_smtp_server_received(const struct pst_smtp_server *s,
                         const struct pst_smtp_received *r,
                         struct pst_buf *out)
{
    char proto[8];
    size_t before;
    int rc;

    if (s == NULL || r == NULL || out == NULL ||
        !pst__smtp_printable(r->peer_addr, 64, 1) ||
        (r->peer_name != NULL &&
         !pst__smtp_printable(r->peer_name, PST_SMTP_MAX_DOMAIN, 1)) ||
        !pst__smtp_printable(r->queue_id, PST__SMTP_MAX_QUEUEID, 1) ||
        (r->recipient != NULL &&
         !pst__smtp_printable(r->recipient, PST_SMTP_MAX_PATH, 0)) ||
        !pst__smtp_printable(r->date, 64, 0))
        return PST_EINVAL;
    if (!s->greeted)
        return PST_ESTATE;
    /* RFC 3848 §1-§2: ESMTP, then S for TLS and A for AUTH; "SMTP" after
     * HELO (RFC 5321 §4.4). */
    snprintf(proto, sizeof(proto), "%s%s%s", s->esmtp ? "ESMTP" : "SMTP",
             s->esmtp && s->tls ? "S" : "", s->esmtp && s->authed ? "A"
                                                                  : "");
    before = out->len;
    /* RFC 5321 §4.4 Stamp: "from" the EHLO name with the TCP-info of
     * the peer, "by" us, "with" the protocol, "id", "for", then the
     * date.  The TLS comment sits where Postfix puts it. */
    rc = pst_buf_printf(out, "Received: from %s (%s [%s])\r\n",
                        server_str(&s->helo),
                        r->peer_name != NULL ? r->peer_name : "unknown",
                        r->peer_addr);
    if (rc == 0 && s->tls)
        rc = pst_buf_printf(out, "\t(using %s with cipher %s)\r\n",
                            s->tlsi->version, s->tlsi->cipher);
    if (rc == 0)
        rc = pst_buf_printf(out, "\tby %s (postern) with %s id %s",
                            s->cfg.hostname, proto, r->queue_id);
    if (rc == 0 && r->recipient != NULL)
        rc = pst_buf_printf(out, "\r\n\tfor <%s>; %s\r\n", r->recipient,
                            r->date);
    else if (rc == 0)
        rc = pst_buf_printf(out, ";\r\n\t%s\r\n", r->date);
    if (rc < 0) {
        out->len = before;
        if (out->data != NULL)
            out->data[before] = '\0';
    }
    return rc;
}
