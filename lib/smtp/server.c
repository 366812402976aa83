/*
 * The SMTP server session: RFC 5321 with PIPELINING (RFC 2920), SIZE (RFC
 * 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463),
 * STARTTLS (RFC 3207) and AUTH (RFC 4954), without I/O.
 *
 * feed() only copies bytes in; next_event() reads one line at a time and
 * acts on it through the command table, or through the AUTH-continuation
 * and DATA handlers, which see their lines before any command lookup
 * (OpenSMTPD smtp_command()).  Every state change goes through
 * server_enter_state().  A step that needs the driver queues an event with
 * need_answer set and enters a WAIT_* state, where no input is acted on
 * until pst_smtp_server_answer().
 *
 * Memory: no buffer is allocated up front.  Each grows with the bytes that
 * go through it; the input and output are given back once they are empty
 * if they grew past SERVER_BUF_KEEP (a long AUTH line, a DATA burst, a
 * run of pipelined replies), and the SASL messages when the exchange
 * ends, so an idle session holds a few hundred bytes of buffers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/base64.h>
#include <postern/smtp.h>

#include "smtp_int.h"

#define SERVER_MAX_MECHS    16
#define SERVER_MAX_EVENTS   8      /* queued; one step queues at most 3 */
#define SERVER_OUT_HIGH     16384  /* stop acting on input above this */
#define SERVER_OUT_MAX      (SERVER_OUT_HIGH + 65536) /* output ceiling */
#define SERVER_BUF_KEEP     1024   /* an empty input or output buffer
                                      larger than this is given back */
#define SERVER_MAX_TLS_NAME 64
#define SERVER_MAX_REASON   128
#define SERVER_MAX_KEYWORDS 10

/* Command flags (Postfix smtpd_cmd_table, OpenSMTPD commands[]). */
#define CMD_PRE_TLS    0x01u /* allowed before TLS with require_tls (RFC
                                3207 §4: EHLO, STARTTLS, NOOP, QUIT) */
#define CMD_PRE_AUTH   0x02u /* allowed before AUTH with auth = required
                                (RFC 4954 §6) */
#define CMD_NEEDS_ARG  0x04u /* 501 5.5.4 without an argument */
#define CMD_NO_ARG     0x08u /* 501 5.5.4 with one */
#define CMD_GROUP_LAST 0x10u /* ends a pipelining group (RFC 2920 §3.1,
                                RFC 4954 §4): the output is flushed */

/* What a line held besides its text. */
#define LINE_BARE_LF  0x01u  /* an LF without CR before it */
#define LINE_BARE_CR  0x02u  /* a CR without LF after it */
#define LINE_TOO_LONG 0x04u  /* over the limit: the text is gone */

enum server_line_mode {
    LINE_MODE_CMD = 0, /* 512 octets (AUTH: 12288); any LF ends a line */
    LINE_MODE_AUTH,    /* AUTH continuation: 12288; any LF ends a line */
    LINE_MODE_DATA,    /* 1000 octets; only CRLF ends a line */
};

struct pst_smtp_server;

struct server_cmd {
    const char *verb;
    const char *usage; /* after "501 5.5.4 Syntax: " */
    /* May it happen now?  1 yes; 0 no, and the reply is queued. */
    int (*check)(struct pst_smtp_server *s, const uint8_t *arg,
                 size_t len);
    /* Do it. */
    void (*proceed)(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len);
    unsigned flags;
};

struct pst_smtp_server {
    struct pst_smtp_server_config cfg;
    const struct pst_sasl_mech *mechs[SERVER_MAX_MECHS];
    size_t nmechs;
    unsigned max_rcpt;
    unsigned max_errors;
    enum pst_smtp_state state;
    enum pst_smtp_state prev;
    int broken;                /* PST_ENOMEM once a buffer could not
                                  grow */
    /* Received: */
    struct pst_buf in;         /* up to PST_SMTP_MAX_INPUT; secret: it
                                  holds AUTH lines */
    size_t rpos;               /* unread input is in.data[rpos..in.len) */
    size_t scan;               /* octets of the partial line searched */
    unsigned line_flags;       /* DATA: bare LF in the partial line */
    int discard;               /* dropping the rest of an overlong line */
    int discard_cr;            /* the last byte dropped was CR */
    /* Sent: */
    struct pst_buf out;
    size_t out_off;            /* bytes of out consumed */
    int flush;                 /* the output ends a pipelining group */
    /* Events: */
    struct pst_smtp_event evq[SERVER_MAX_EVENTS];
    unsigned evq_head, evq_len;
    struct pst_smtp_event scratch; /* written if the queue ever fills */
    /* What the session knows of the client: */
    int tls;
    char tls_version[SERVER_MAX_TLS_NAME + 1];
    char tls_cipher[SERVER_MAX_TLS_NAME + 1];
    int greeted;               /* EHLO or HELO seen */
    int esmtp;                 /* ... and it was EHLO */
    struct pst_buf helo;
    int authed;
    struct pst_buf user;       /* authenticated identity */
    const char *auth_mech;
    unsigned errors;           /* consecutive client errors */
    int close_pending;         /* errors reached the limit: 421 */
    /* The AUTH exchange: */
    struct pst_sasl_server *sasl;
    const struct pst_sasl_mech *sasl_mech;
    struct pst_buf sasl_in;    /* decoded client message; secret */
    struct pst_buf sasl_out;   /* raw challenge */
    struct pst_buf attempt;    /* authcid of the exchange, once known */
    char reason[SERVER_MAX_REASON];
    /* The mail transaction: */
    struct pst_buf mail_from;
    struct pst_buf rcpt;       /* the recipient asked about */
    unsigned nrcpt;            /* accepted recipients */
    int rcpt_seen;             /* some RCPT got as far as the driver */
    uint64_t mail_size;        /* MAIL SIZE= */
    int body_8bit;
    /* DATA: */
    uint64_t data_size;        /* octets after dot-unstuffing */
    int data_error;            /* 0, or the PST_E* class of the refusal */
    const char *data_reason;
    const char *data_reply;
};

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
static void
server_enter_state(struct pst_smtp_server *s, enum pst_smtp_state st)
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

static void
server_trace(struct pst_smtp_server *s, enum pst_smtp_trace what,
             const void *text, size_t len)
{
    if (s->cfg.trace != NULL)
        s->cfg.trace(s->cfg.trace_ctx, what, text, len);
}

/* Queue one reply line (CRLF added). */
static void
server_put(struct pst_smtp_server *s, const char *line, size_t len)
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
    server_trace(s, PST_SMTP_TRACE_SERVER, line, len);
    /* A success ends a run of errors: the limit is on consecutive ones. */
    if (line[0] == '2')
        s->errors = 0;
}

__attribute__((format(printf, 2, 0))) static void
server_vreply(struct pst_smtp_server *s, const char *fmt, va_list ap)
{
    char line[PST__SMTP_MAX_REPLY + 1];
    int n = vsnprintf(line, sizeof(line), fmt, ap);

    if (n < 0)
        n = 0;
    server_put(s, line, (size_t)n < sizeof(line) ? (size_t)n
                                                 : sizeof(line) - 1);
}

__attribute__((format(printf, 2, 3))) static void
server_reply(struct pst_smtp_server *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    server_vreply(s, fmt, ap);
    va_end(ap);
}

/*
 * A reply to a client mistake: counted, and after max_errors in a row the
 * session closes with 421 (DESIGN.md: "repeated abuse gets 421").
 */
__attribute__((format(printf, 2, 3))) static void
server_error(struct pst_smtp_server *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    server_vreply(s, fmt, ap);
    va_end(ap);
    if (++s->errors >= s->max_errors)
        s->close_pending = 1;
}

/* A reply chosen elsewhere: 5xx counts as an error, 4xx does not. */
static void
server_reply_line(struct pst_smtp_server *s, const char *line)
{
    if (line[0] == '5')
        server_error(s, "%s", line);
    else
        server_reply(s, "%s", line);
}

/* --- Events -------------------------------------------------------------- */

static struct pst_smtp_event *
server_event(struct pst_smtp_server *s, enum pst_smtp_event_type t,
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

static const char *
server_str(const struct pst_buf *b)
{
    return b->data != NULL ? (const char *)b->data : "";
}

/* --- Input --------------------------------------------------------------- */

static void
server_drop_input(struct pst_smtp_server *s)
{
    s->rpos = s->in.len;
    s->scan = 0;
    s->line_flags = 0;
    s->discard = 0;
    s->discard_cr = 0;
}

static size_t
server_line_limit(enum server_line_mode mode, const uint8_t *p,
                  size_t avail)
{
    switch (mode) {
    case LINE_MODE_DATA:
        /* RFC 5321 §4.5.3.1.6: a text line is 1000 octets with CRLF. */
        return PST_SMTP_MAX_TEXT_LINE;
    case LINE_MODE_AUTH:
        /* RFC 4954 §4: 12288 octets is a sufficient buffer. */
        return PST_SMTP_MAX_AUTH_LINE + 2;
    case LINE_MODE_CMD:
        break;
    }
    /* RFC 4954 §4: an AUTH line with an initial response may pass the
     * 512 octets of RFC 5321 §4.5.3.1.4 (clients should not, some do). */
    if (avail >= 5 && pst__smtp_word_eq(p, 5, "AUTH "))
        return PST_SMTP_MAX_AUTH_LINE + 2;
    return PST_SMTP_MAX_CMD_LINE;
}

/*
 * Take the next complete line from the input.  RFC 5321 §2.3.8: only CRLF
 * ends a line.  In DATA a bare LF is text (so that "\n.\r\n" or "\n.\n"
 * can never end a message, CVE-2023-51764) and is reported in *flags; in
 * commands a bare LF ends the line so that the client gets an error reply
 * at once, and the line is refused.  A line longer than its limit is
 * dropped up to its end and reported as LINE_TOO_LONG, without text: it is
 * never split into two.  Decisions depend on the bytes only, never on how
 * they were split between feed() calls.
 * Returns 1 with a line in *line, *len (CRLF excluded), 0 if more input is
 * needed.
 */
static int
server_read_line(struct pst_smtp_server *s, enum server_line_mode mode,
                 const uint8_t **line, size_t *len, unsigned *flags)
{
    uint8_t *p;
    size_t avail = s->in.len - s->rpos, limit, n, i;
    int data = mode == LINE_MODE_DATA;

    /* Nothing buffered (the buffer may not even exist): no line, and
     * nothing to scan or discard. */
    if (avail == 0)
        return 0;
    p = s->in.data + s->rpos;
    if (s->discard) {
        i = 0;
        for (;;) {
            const uint8_t *q = memchr(p + i, '\n', avail - i);
            size_t at;

            if (q == NULL)
                break;
            at = (size_t)(q - p);
            if (!data || (at > 0 ? p[at - 1] == '\r' : s->discard_cr)) {
                s->rpos += at + 1;
                s->discard = 0;
                s->discard_cr = 0;
                *line = p;
                *len = 0;
                *flags = LINE_TOO_LONG;
                return 1;
            }
            i = at + 1;
        }
        s->discard_cr = p[avail - 1] == '\r';
        s->rpos = s->in.len;
        return 0;
    }
    limit = server_line_limit(mode, p, avail);
    n = avail < limit ? avail : limit;
    i = s->scan;
    while (i < n) {
        const uint8_t *q = memchr(p + i, '\n', n - i);
        size_t at;
        int crlf;

        if (q == NULL)
            break;
        at = (size_t)(q - p);
        crlf = at > 0 && p[at - 1] == '\r';
        if (crlf || !data) {
            *line = p;
            *len = crlf ? at - 1 : at;
            *flags = s->line_flags | (crlf ? 0 : LINE_BARE_LF);
            if (memchr(p, '\r', *len) != NULL)
                *flags |= LINE_BARE_CR;
            s->rpos += at + 1;
            s->scan = 0;
            s->line_flags = 0;
            return 1;
        }
        s->line_flags |= LINE_BARE_LF;
        i = at + 1;
    }
    s->scan = n;
    if (avail < limit)
        return 0;
    /* No end within the limit: drop the line through its end. */
    s->discard = 1;
    s->discard_cr = 0;
    s->scan = 0;
    s->line_flags = 0;
    return server_read_line(s, mode, line, len, flags);
}

/* Trace a client line the way a log may show it. */
static void
server_trace_line(struct pst_smtp_server *s, const uint8_t *line,
                  size_t len, int auth_continuation)
{
    struct pst_buf b;

    if (s->cfg.trace == NULL)
        return;
    pst_buf_init(&b, PST_SMTP_MAX_AUTH_LINE + 16, 0);
    if (pst_smtp_redact(line, len, auth_continuation, &b) == 0)
        server_trace(s, PST_SMTP_TRACE_CLIENT, server_str(&b), b.len);
    pst_buf_clear(&b);
}

/* --- Session knowledge --------------------------------------------------- */

static void
server_reset_transaction(struct pst_smtp_server *s)
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

static void
server_end_sasl(struct pst_smtp_server *s)
{
    pst_sasl_server_free(s->sasl);
    s->sasl = NULL;
    /* Most sessions authenticate once: the messages go (sasl_in wiped,
     * it is secret) rather than stay for the rest of the session.
     * Releasing memory cannot fail. */
    pst_buf_reset(&s->sasl_in);
    pst_buf_reset(&s->sasl_out);
    (void)pst_buf_shrink(&s->sasl_in, 0);
    (void)pst_buf_shrink(&s->sasl_out, 0);
}

/* Whether mechanism m is offered now: auth policy and auth_before_tls. */
static int
server_mech_offered(const struct pst_smtp_server *s,
                    const struct pst_sasl_mech *m)
{
    if (s->cfg.auth == PST_SMTP_AUTH_OFF)
        return 0;
    if (s->tls)
        return 1;
    switch (s->cfg.auth_before_tls) {
    case PST_SMTP_BEFORE_TLS_NONE:
        return 0;
    case PST_SMTP_BEFORE_TLS_CHALLENGE:
        /* DESIGN.md: before TLS only mechanisms that never send the
         * password (RFC 4954 §4: a configuration without plaintext
         * mechanisms over plaintext). */
        return !(pst_sasl_mech_flags(m) & PST_MECH_SENDS_PASSWORD);
    case PST_SMTP_BEFORE_TLS_ALL:
        return 1;
    }
    return 0;
}

/* The mechanism called name if it is offered now, else NULL. */
static const struct pst_sasl_mech *
server_find_mech(const struct pst_smtp_server *s, const uint8_t *name,
                 size_t len)
{
    for (size_t i = 0; i < s->nmechs; i++)
        if (pst__smtp_word_eq(name, len, pst_sasl_mech_name(s->mechs[i])))
            return server_mech_offered(s, s->mechs[i]) ? s->mechs[i]
                                                       : NULL;
    return NULL;
}

/* Drop everything and queue CLOSE: after 221, or after a 421 reply. */
static void
server_close_now(struct pst_smtp_server *s)
{
    server_drop_input(s);
    server_end_sasl(s);
    server_event(s, PST_SMTP_EV_CLOSE, 0);
    server_enter_state(s, PST_SMTP_STATE_CLOSED);
    s->flush = 1;
}

/* Too many errors in a row: 421 4.7.0 and close. */
static void
server_check_close(struct pst_smtp_server *s)
{
    if (!s->close_pending || s->broken)
        return;
    if (s->state != PST_SMTP_STATE_GREETING &&
        s->state != PST_SMTP_STATE_IDLE && s->state != PST_SMTP_STATE_MAIL)
        return;
    server_reply(s, "421 4.7.0 %s Error: too many errors",
                 s->cfg.hostname);
    server_close_now(s);
}

/* --- AUTH (RFC 4954) ----------------------------------------------------- */

/* The exchange ended without success. */
static void
server_auth_fail(struct pst_smtp_server *s, int err, const char *reason,
                 const char *reply)
{
    struct pst_smtp_event *ev;

    snprintf(s->reason, sizeof(s->reason), "%s",
             reason != NULL && reason[0] != '\0' ? reason
                                                 : pst_strerror(err));
    server_reply_line(s, reply != NULL ? reply : pst__smtp_auth_reply(err));
    ev = server_event(s, PST_SMTP_EV_AUTH_RESULT, 0);
    ev->ok = 0;
    ev->error = err;
    ev->reason = s->reason;
    ev->mech = pst_sasl_mech_name(s->sasl_mech);
    ev->user = s->attempt.len > 0 ? server_str(&s->attempt) : NULL;
    server_end_sasl(s);
    server_enter_state(s, PST_SMTP_STATE_IDLE);
}

static void
server_auth_success(struct pst_smtp_server *s)
{
    struct pst_smtp_event *ev;

    /* The authorization identity must be the authentication identity:
     * postern does not proxy (RFC 4954 §4 authzid; RFC 4422 §3.4.1). */
    if (pst_sasl_server_authzid(s->sasl) != NULL) {
        server_auth_fail(s, PST_EAUTH,
                         "authorization identity not permitted", NULL);
        return;
    }
    pst_buf_reset(&s->user);
    if (pst_buf_append(&s->user, s->attempt.data, s->attempt.len) < 0 ||
        pst_buf_append(&s->user, "", 0) < 0) {
        s->broken = PST_ENOMEM;
        return;
    }
    s->authed = 1;
    s->auth_mech = pst_sasl_mech_name(s->sasl_mech);
    /* RFC 4954 §6: "235 2.7.0 Authentication Succeeded". */
    server_reply(s, "235 2.7.0 Authentication successful");
    ev = server_event(s, PST_SMTP_EV_AUTH_RESULT, 0);
    ev->ok = 1;
    ev->mech = s->auth_mech;
    ev->user = server_str(&s->user);
    server_end_sasl(s);
    server_enter_state(s, PST_SMTP_STATE_IDLE);
}

/* Act on what pst_sasl_server_step() returned. */
static void
server_auth_progress(struct pst_smtp_server *s, int rc)
{
    const char *id = pst_sasl_server_authcid(s->sasl);
    struct pst_smtp_event *ev;

    if (id != NULL) {
        pst_buf_reset(&s->attempt);
        if (pst_buf_append_str(&s->attempt, id) < 0) {
            s->broken = PST_ENOMEM;
            return;
        }
    }
    switch (rc) {
    case PST_SASL_CONTINUE: {
        struct pst_buf line;

        /* RFC 4954 §4: "334" SP base64 challenge; an empty challenge is
         * "334 " with the space. */
        pst_buf_init(&line, 4 + PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE),
                     0);
        if (pst_buf_append_str(&line, "334 ") < 0 ||
            pst_base64_encode(s->sasl_out.data, s->sasl_out.len,
                              &line) < 0) {
            pst_buf_clear(&line);
            s->broken = PST_ENOMEM;
            return;
        }
        server_put(s, server_str(&line), line.len);
        pst_buf_clear(&line);
        server_enter_state(s, PST_SMTP_STATE_AUTH);
        s->flush = 1;
        return;
    }
    case PST_SASL_NEED_CRED:
        ev = server_event(s, PST_SMTP_EV_AUTH_LOOKUP, 1);
        ev->mech = pst_sasl_mech_name(s->sasl_mech);
        ev->user = server_str(&s->attempt);
        server_enter_state(s, PST_SMTP_STATE_WAIT_LOOKUP);
        return;
    case PST_SASL_NEED_VERIFY:
        ev = server_event(s, PST_SMTP_EV_AUTH_VERIFY, 1);
        ev->mech = pst_sasl_mech_name(s->sasl_mech);
        ev->user = server_str(&s->attempt);
        ev->password = pst_sasl_server_password(s->sasl, &ev->password_len);
        server_enter_state(s, PST_SMTP_STATE_WAIT_VERIFY);
        return;
    case PST_SASL_DONE:
        server_auth_success(s);
        return;
    default:
        server_auth_fail(s, rc, pst_sasl_server_reason(s->sasl), NULL);
        return;
    }
}

/* Step the exchange with a client message (in == NULL: none, or resume). */
static void
server_auth_step(struct pst_smtp_server *s, const uint8_t *in, size_t len)
{
    int rc = pst_sasl_server_step(s->sasl, in, len, &s->sasl_out);

    pst_buf_reset(&s->sasl_in);
    server_auth_progress(s, rc);
}

static int
server_check_auth(struct pst_smtp_server *s, const uint8_t *arg, size_t len)
{
    (void)arg;
    (void)len;
    if (s->cfg.auth == PST_SMTP_AUTH_OFF) {
        server_error(s, "503 5.5.1 Error: authentication not enabled");
        return 0;
    }
    /* AUTH is an ESMTP extension: EHLO first (RFC 4954 §3). */
    if (!s->esmtp) {
        server_error(s, "503 5.5.1 Error: send EHLO first");
        return 0;
    }
    /* RFC 4954 §4: "After an AUTH command has been successfully
     * completed, no more AUTH commands may be issued" -> 503. */
    if (s->authed) {
        server_error(s, "503 5.5.1 Error: already authenticated");
        return 0;
    }
    /* RFC 4954 §4: "The AUTH command is not permitted during a mail
     * transaction" -> 503. */
    if (s->state == PST_SMTP_STATE_MAIL) {
        server_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return 0;
    }
    return 1;
}

static void
server_proceed_auth(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    struct pst_sasl_server_config scfg = {
        .hostname = s->cfg.hostname,
        .realm = s->cfg.realm,
        .uri_hosts = s->cfg.uri_hosts,
        .timestamp = s->cfg.timestamp,
        .random = s->cfg.random,
        .random_ctx = s->cfg.random_ctx,
        .scram_iterations = s->cfg.scram_iterations,
    };
    const uint8_t *ir = NULL;
    size_t mlen = 0, irlen = 0;
    const struct pst_sasl_mech *m;
    int rc;

    /* auth-command = "AUTH" SP sasl-mech [SP initial-response] */
    while (mlen < len && arg[mlen] != ' ')
        mlen++;
    if (mlen < len) {
        ir = arg + mlen + 1;
        irlen = len - mlen - 1;
        if (irlen == 0 || memchr(ir, ' ', irlen) != NULL) {
            server_error(s, "501 5.5.4 Syntax: AUTH mechanism "
                            "[initial-response]");
            return;
        }
    }
    /* RFC 4954 §4: an unknown mechanism, or one not offered in this
     * state (e.g. PLAIN before TLS), is 504 5.5.4 (538 is historical). */
    m = server_find_mech(s, arg, mlen);
    if (m == NULL) {
        server_error(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    s->sasl_mech = m;
    s->reason[0] = '\0';
    pst_buf_reset(&s->attempt);
    if (ir != NULL) {
        /* RFC 4954 §4: an initial response to a mechanism where the
         * server speaks first is 501 (5.7.0). */
        if (!(pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST)) {
            server_auth_fail(s, PST_EPROTO,
                             "initial response to a server-first "
                             "mechanism",
                             "501 5.7.0 Initial response not allowed "
                             "for this mechanism");
            return;
        }
        /* RFC 4954 §4: "=" is an initial response that is present but
         * empty; anything else must be valid base64 (501 5.5.2). */
        pst_buf_reset(&s->sasl_in);
        if (!(irlen == 1 && ir[0] == '=') &&
            pst_base64_decode(ir, irlen, &s->sasl_in) < 0) {
            server_auth_fail(s, PST_EPROTO,
                             "invalid base64 in the initial response",
                             "501 5.5.2 Invalid base64 data");
            return;
        }
    }
    if ((rc = pst_sasl_server_new(m, &scfg, &s->sasl)) < 0) {
        server_auth_fail(s, rc, "cannot start the exchange", NULL);
        return;
    }
    if (ir != NULL)
        server_auth_step(s, s->sasl_in.data != NULL
                                ? s->sasl_in.data
                                : (const uint8_t *)"",
                         s->sasl_in.len);
    else
        server_auth_step(s, NULL, 0);
}

/* A line in the AUTH state: the client's answer to a 334 challenge. */
static int
server_auth_line(struct pst_smtp_server *s)
{
    const uint8_t *line;
    size_t len;
    unsigned flags;

    if (!server_read_line(s, LINE_MODE_AUTH, &line, &len, &flags))
        return 0;
    server_trace_line(s, line, len, 1);
    if (flags & LINE_TOO_LONG) {
        /* RFC 4954 §4: longer than the server's buffer -> 500 5.5.6. */
        server_auth_fail(s, PST_ELIMIT, "response line too long", NULL);
    } else if (flags & (LINE_BARE_LF | LINE_BARE_CR)) {
        server_auth_fail(s, PST_EPROTO, "bare CR or LF in the response",
                         "501 5.5.2 Invalid base64 data");
    } else if (len == 1 && line[0] == '*') {
        /* RFC 4954 §4: "*" cancels the exchange -> 501. */
        server_auth_fail(s, PST_ECANCEL, "cancelled by the client", NULL);
    } else {
        pst_buf_reset(&s->sasl_in);
        if (pst_base64_decode(line, len, &s->sasl_in) < 0) {
            /* RFC 4954 §4: a response that cannot be decoded -> 501. */
            server_auth_fail(s, PST_EPROTO, "invalid base64 in a response",
                             "501 5.5.2 Invalid base64 data");
        } else {
            /* An empty line is an empty response (RFC 4954 §4). */
            server_auth_step(s, s->sasl_in.data != NULL
                                    ? s->sasl_in.data
                                    : (const uint8_t *)"",
                             s->sasl_in.len);
        }
    }
    OPENSSL_cleanse((uint8_t *)line, len);
    return 1;
}

/* --- Commands ------------------------------------------------------------ */

static int
server_check_helo(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    /* RFC 5321 §4.1.1.1: a domain or an address literal.  Devices send
     * names with "_"; those pass. */
    if (!pst__smtp_domain_valid(arg, len, 1)) {
        server_error(s, "501 5.5.4 Error: invalid domain name");
        return 0;
    }
    return 1;
}

/* Append "AUTH m1 m2" of the mechanisms offered now (empty if none). */
static size_t
server_auth_keyword(const struct pst_smtp_server *s, const char *prefix,
                    char *out, size_t size)
{
    size_t n = 0, count = 0;

    for (size_t i = 0; i < s->nmechs; i++) {
        const char *name = pst_sasl_mech_name(s->mechs[i]);
        int w;

        if (!server_mech_offered(s, s->mechs[i]))
            continue;
        w = snprintf(out + n, size - n, "%s%s", count == 0 ? prefix : " ",
                     name);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
        count++;
    }
    if (count == 0)
        n = 0;
    out[n] = '\0';
    return n;
}

static void
server_greet(struct pst_smtp_server *s, const uint8_t *arg, size_t len,
             int esmtp)
{
    char kw[SERVER_MAX_KEYWORDS][PST__SMTP_MAX_REPLY - 4];
    size_t n = 0;

    /* RFC 5321 §4.1.4: EHLO or HELO in a transaction resets it. */
    server_reset_transaction(s);
    pst_buf_reset(&s->helo);
    if (pst_buf_append(&s->helo, arg, len) < 0 ||
        pst_buf_append(&s->helo, "", 0) < 0) {
        s->broken = PST_ENOMEM;
        return;
    }
    s->greeted = 1;
    s->esmtp = esmtp;
    server_enter_state(s, PST_SMTP_STATE_IDLE);
    /* RFC 2034 §3: no enhanced code on the replies to HELO and EHLO. */
    if (!esmtp) {
        server_reply(s, "250 %s", s->cfg.hostname);
        return;
    }
    snprintf(kw[n++], sizeof(kw[0]), "PIPELINING");
    /* RFC 1870 §4: "SIZE" with the limit, or alone for none. */
    if (s->cfg.max_message_size > 0)
        snprintf(kw[n++], sizeof(kw[0]), "SIZE %llu",
                 (unsigned long long)s->cfg.max_message_size);
    else
        snprintf(kw[n++], sizeof(kw[0]), "SIZE");
    snprintf(kw[n++], sizeof(kw[0]), "8BITMIME");
    /* RFC 3207 §4.2: not offered again once TLS is up. */
    if (s->cfg.tls == PST_SMTP_TLS_STARTTLS && !s->tls)
        snprintf(kw[n++], sizeof(kw[0]), "STARTTLS");
    if (server_auth_keyword(s, "AUTH ", kw[n], sizeof(kw[0])) > 0) {
        n++;
        /* The pre-standard "AUTH=" form old Outlook versions look for. */
        if (s->cfg.legacy_auth_line &&
            server_auth_keyword(s, "AUTH=", kw[n], sizeof(kw[0])) > 0)
            n++;
    }
    snprintf(kw[n++], sizeof(kw[0]), "ENHANCEDSTATUSCODES");
    server_reply(s, "250-%s", s->cfg.hostname);
    for (size_t i = 0; i < n; i++)
        server_reply(s, "250%c%s", i + 1 == n ? ' ' : '-', kw[i]);
}

static void
server_proceed_ehlo(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    server_greet(s, arg, len, 1);
}

static void
server_proceed_helo(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    server_greet(s, arg, len, 0);
}

static int
server_check_mail(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §4.1.4: MAIL needs EHLO or HELO first, and is not
     * nested. */
    if (!s->greeted) {
        server_error(s, "503 5.5.1 Error: send HELO/EHLO first");
        return 0;
    }
    if (s->state == PST_SMTP_STATE_MAIL) {
        server_error(s, "503 5.5.1 Error: nested MAIL command");
        return 0;
    }
    return 1;
}

/*
 * The argument of MAIL or RCPT after "FROM:"/"TO:": the path, then
 * parameters.  Returns 1 with *params, *plen set, 0 if a reply went out.
 */
static int
server_parse_path_arg(struct pst_smtp_server *s, const uint8_t *arg,
                      size_t len, const char *word, unsigned flags,
                      struct pst_buf *addr, const char *bad,
                      const uint8_t **params, size_t *plen)
{
    size_t wlen = strlen(word), i, used;
    int rc;

    if (len < wlen || !pst__smtp_word_eq(arg, wlen, word)) {
        server_error(s, "501 5.5.4 Syntax: %s<address>", word);
        return 0;
    }
    /* Clients put a space after the colon; RFC 5321 §4.1.1.2 does not,
     * most servers accept it. */
    for (i = wlen; i < len && arg[i] == ' '; i++)
        ;
    pst_buf_reset(addr);
    rc = pst__smtp_parse_path(arg + i, len - i, flags, &used, addr);
    if (rc == PST_ENOMEM) {
        s->broken = rc;
        return 0;
    }
    if (rc < 0) {
        /* RFC 3463: X.1.7 bad sender, X.1.3 bad destination syntax. */
        server_error(s, "%s", bad);
        return 0;
    }
    i += used;
    if (i < len && arg[i] != ' ') {
        server_error(s, "%s", bad);
        return 0;
    }
    *params = arg + i;
    *plen = len - i;
    return 1;
}

/* The reply to a parameter error, or NULL. */
static const char *
server_param_error(int rc)
{
    if (rc == PST_ENOTSUP)
        /* RFC 5321 §4.1.1.11: parameters not recognized -> 555. */
        return "555 5.5.4 Unsupported parameter";
    return "501 5.5.4 Bad parameter syntax";
}

/* The authenticated user owns the address by name (ASCII case aside). */
static int
server_owns(const struct pst_smtp_server *s, const struct pst_buf *addr)
{
    const char *user = server_str(&s->user);

    return strchr(user, '@') != NULL && addr->len > 0 &&
           pst__smtp_word_eq(addr->data, addr->len, user);
}

static void
server_proceed_mail(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    struct pst__smtp_mail_params mp;
    struct pst_smtp_event *ev;
    const uint8_t *params;
    size_t plen;
    int rc, ask;

    if (!server_parse_path_arg(s, arg, len, "FROM:", PST__PATH_NULL_OK,
                               &s->mail_from,
                               "501 5.1.7 Bad sender address syntax",
                               &params, &plen))
        return;
    /* Parameters are an ESMTP matter: none after HELO. */
    if (plen > 0 && !s->esmtp) {
        server_error(s, "555 5.5.4 Unsupported parameter");
        return;
    }
    if ((rc = pst__smtp_parse_params(params, plen, 1, &mp)) < 0) {
        server_error(s, "%s", server_param_error(rc));
        return;
    }
    /* RFC 1870 §6.2: a declared size over the limit -> 552 5.3.4. */
    if (mp.has_size && s->cfg.max_message_size > 0 &&
        mp.size > s->cfg.max_message_size) {
        server_error(s, "552 5.3.4 Message size exceeds fixed maximum "
                        "message size");
        return;
    }
    s->nrcpt = 0;
    s->rcpt_seen = 0;
    s->mail_size = mp.has_size ? mp.size : 0;
    s->body_8bit = mp.body_8bit;
    /* sender_check = strict: an authenticated user sends as its own
     * name when that is an address; anything else is the driver's call
     * (allow_from).  The null reverse-path (RFC 5321 §4.5.5: delivery
     * and read notifications) belongs to nobody and is not checked, as
     * Postfix's reject_sender_login_mismatch does not.  Otherwise the
     * event only tells. */
    ask = s->cfg.sender_check == PST_SMTP_SENDER_STRICT && s->authed &&
          s->mail_from.len > 0 && !server_owns(s, &s->mail_from);
    if (!ask)
        server_reply(s, "250 2.1.0 Ok");
    ev = server_event(s, PST_SMTP_EV_MAIL, ask);
    ev->address = server_str(&s->mail_from);
    ev->size = s->mail_size;
    ev->body_8bit = s->body_8bit;
    server_enter_state(s, ask ? PST_SMTP_STATE_WAIT_SENDER
                              : PST_SMTP_STATE_MAIL);
}

static int
server_check_rcpt(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    (void)arg;
    (void)len;
    if (s->state != PST_SMTP_STATE_MAIL) {
        server_error(s, "503 5.5.1 Error: need MAIL command");
        return 0;
    }
    return 1;
}

static void
server_proceed_rcpt(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    struct pst__smtp_mail_params mp;
    struct pst_smtp_event *ev;
    const uint8_t *params;
    size_t plen;
    int rc;

    if (!server_parse_path_arg(s, arg, len, "TO:", PST__PATH_POSTMASTER_OK,
                               &s->rcpt,
                               "501 5.1.3 Bad recipient address syntax",
                               &params, &plen))
        return;
    if ((rc = pst__smtp_parse_params(params, plen, 0, &mp)) < 0) {
        server_error(s, "%s", server_param_error(rc));
        return;
    }
    /* RFC 5321 §4.5.3.1.10: past the limit, 452 (4.5.3, RFC 3463). */
    if (s->nrcpt >= s->max_rcpt) {
        server_reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    s->rcpt_seen = 1;
    ev = server_event(s, PST_SMTP_EV_RCPT, 1);
    ev->address = server_str(&s->rcpt);
    server_enter_state(s, PST_SMTP_STATE_WAIT_RCPT);
}

static int
server_check_data(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §3.3: DATA without MAIL or an accepted RCPT is 503, or
     * 554 "no valid recipients" when every RCPT was refused. */
    if (s->state != PST_SMTP_STATE_MAIL) {
        server_error(s, "503 5.5.1 Error: need MAIL command");
        return 0;
    }
    if (s->nrcpt == 0) {
        if (s->rcpt_seen)
            server_error(s, "554 5.5.1 Error: no valid recipients");
        else
            server_error(s, "503 5.5.1 Error: need RCPT command");
        return 0;
    }
    return 1;
}

static void
server_proceed_data(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    s->data_size = 0;
    s->data_error = 0;
    server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    server_event(s, PST_SMTP_EV_DATA_BEGIN, 0);
    server_enter_state(s, PST_SMTP_STATE_DATA);
}

static void
server_proceed_rset(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §4.1.1.5: abort the transaction, keep the EHLO. */
    server_reset_transaction(s);
    server_enter_state(s, s->greeted ? PST_SMTP_STATE_IDLE
                                     : PST_SMTP_STATE_GREETING);
    server_reply(s, "250 2.0.0 Ok");
}

static void
server_proceed_noop(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    server_reply(s, "250 2.0.0 Ok");
}

static void
server_proceed_quit(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    server_reply(s, "221 2.0.0 Bye");
    server_close_now(s);
}

static void
server_proceed_vrfy(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §3.5.3: 252 when the server will not verify. */
    server_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message "
                    "and attempt delivery");
}

static void
server_proceed_help(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    server_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET "
                    "NOOP QUIT VRFY HELP STARTTLS AUTH");
}

static void
server_proceed_unimplemented(struct pst_smtp_server *s, const uint8_t *arg,
                             size_t len)
{
    (void)arg;
    (void)len;
    server_error(s, "502 5.5.1 Error: command not implemented");
}

static int
server_check_starttls(struct pst_smtp_server *s, const uint8_t *arg,
                      size_t len)
{
    (void)arg;
    (void)len;
    if (s->tls) {
        server_error(s, "503 5.5.1 Error: TLS already active");
        return 0;
    }
    if (s->cfg.tls != PST_SMTP_TLS_STARTTLS) {
        server_error(s, "502 5.5.1 Error: command not implemented");
        return 0;
    }
    if (s->state == PST_SMTP_STATE_MAIL) {
        server_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return 0;
    }
    return 1;
}

static void
server_proceed_starttls(struct pst_smtp_server *s, const uint8_t *arg,
                        size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 3207 §4 */
    server_reply(s, "220 2.0.0 Ready to start TLS");
    /* RFC 3207 §4.2 / CVE-2011-0411: whatever the client sent after the
     * STARTTLS line came in plaintext and must not be acted on after the
     * handshake.  feed() drops input until tls_started(). */
    server_drop_input(s);
    server_event(s, PST_SMTP_EV_STARTTLS, 1);
    server_enter_state(s, PST_SMTP_STATE_WAIT_TLS);
}

static const struct server_cmd server_cmds[] = {
    {.verb = "EHLO", .usage = "EHLO domain", .check = server_check_helo,
     .proceed = server_proceed_ehlo,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "HELO", .usage = "HELO domain", .check = server_check_helo,
     .proceed = server_proceed_helo,
     .flags = CMD_PRE_AUTH | CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "MAIL", .usage = "MAIL FROM:<address>",
     .check = server_check_mail, .proceed = server_proceed_mail,
     .flags = CMD_NEEDS_ARG},
    {.verb = "RCPT", .usage = "RCPT TO:<address>",
     .check = server_check_rcpt, .proceed = server_proceed_rcpt,
     .flags = CMD_NEEDS_ARG},
    {.verb = "DATA", .usage = "DATA", .check = server_check_data,
     .proceed = server_proceed_data,
     .flags = CMD_NO_ARG | CMD_GROUP_LAST},
    {.verb = "RSET", .usage = "RSET", .proceed = server_proceed_rset,
     .flags = CMD_PRE_AUTH | CMD_NO_ARG},
    {.verb = "NOOP", .proceed = server_proceed_noop,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_GROUP_LAST},
    {.verb = "QUIT", .usage = "QUIT", .proceed = server_proceed_quit,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_NO_ARG | CMD_GROUP_LAST},
    {.verb = "VRFY", .usage = "VRFY address",
     .proceed = server_proceed_vrfy,
     .flags = CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "HELP", .proceed = server_proceed_help,
     .flags = CMD_GROUP_LAST},
    {.verb = "STARTTLS", .usage = "STARTTLS",
     .check = server_check_starttls, .proceed = server_proceed_starttls,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_NO_ARG | CMD_GROUP_LAST},
    {.verb = "AUTH", .usage = "AUTH mechanism [initial-response]",
     .check = server_check_auth, .proceed = server_proceed_auth,
     .flags = CMD_PRE_AUTH | CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "EXPN", .proceed = server_proceed_unimplemented,
     .flags = CMD_GROUP_LAST},
};

/* HTTP methods: a command line starting with one ends the session. */
static int
server_forbidden(const uint8_t *line, size_t vlen)
{
    static const char *const http[] = {
        "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "DELETE",
    };

    for (size_t i = 0; i < PST__ARRAY_LEN(http); i++)
        if (pst__smtp_word_eq(line, vlen, http[i]))
            return 1;
    return 0;
}

/* A line in GREETING, IDLE or MAIL: a command. */
static int
server_command(struct pst_smtp_server *s)
{
    const struct server_cmd *cmd = NULL;
    const uint8_t *line, *arg;
    size_t len, vlen, alen;
    unsigned flags;

    if (!server_read_line(s, LINE_MODE_CMD, &line, &len, &flags))
        return 0;
    if (flags & LINE_TOO_LONG) {
        /* RFC 5321 §4.5.3.1.4 (512 octets) / RFC 4954 §4 (12288). */
        server_trace(s, PST_SMTP_TRACE_CLIENT, "[line too long]", 15);
        server_error(s, "500 5.5.6 Error: line too long");
        return 1;
    }
    server_trace_line(s, line, len, 0);
    pst__smtp_split(line, len, &vlen, &arg, &alen);
    if (flags & (LINE_BARE_LF | LINE_BARE_CR)) {
        /* RFC 5321 §2.3.8: lines end with CRLF only. */
        server_error(s, "500 5.5.2 Error: bare <CR> or <LF> received");
    } else if (vlen == 0) {
        server_error(s, "500 5.5.2 Error: bad syntax");
    } else if (server_forbidden(line, vlen)) {
        /* An HTTP request on the SMTP port: a browser or a cross-protocol
         * attack (ALPACA; Postfix's smtpd_forbidden_commands).  Answer
         * nothing the other protocol could use, and close at once. */
        server_reply(s, "421 4.7.0 %s Error: not an SMTP command, closing",
                     s->cfg.hostname);
        server_close_now(s);
    } else {
        for (size_t i = 0; i < PST__ARRAY_LEN(server_cmds); i++)
            if (pst__smtp_word_eq(line, vlen, server_cmds[i].verb))
                cmd = &server_cmds[i];
        if (cmd == NULL) {
            server_error(s, "500 5.5.1 Error: command not recognized");
        } else if (!(cmd->flags & CMD_PRE_TLS) && s->cfg.require_tls &&
                   !s->tls) {
            /* RFC 3207 §4 */
            server_error(s, "530 5.7.0 Must issue a STARTTLS command "
                            "first");
        } else if (!(cmd->flags & CMD_PRE_AUTH) &&
                   s->cfg.auth == PST_SMTP_AUTH_REQUIRED && !s->authed) {
            /* RFC 4954 §6 */
            server_error(s, "530 5.7.0 Authentication required");
        } else if (((cmd->flags & CMD_NEEDS_ARG) && alen == 0) ||
                   ((cmd->flags & CMD_NO_ARG) && alen > 0)) {
            server_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
        } else if (cmd->check == NULL || cmd->check(s, arg, alen)) {
            cmd->proceed(s, arg, alen);
            if (cmd->flags & CMD_GROUP_LAST)
                s->flush = 1;
        }
    }
    /* An AUTH line may carry an initial response: wipe it. */
    if (pst__smtp_word_eq(line, vlen, "AUTH"))
        OPENSSL_cleanse((uint8_t *)line, len);
    return 1;
}

/* --- DATA ---------------------------------------------------------------- */

/* Refuse the message (first reason wins); the reply comes at its end. */
static void
server_data_fail(struct pst_smtp_server *s, int err, const char *reason,
                 const char *reply)
{
    if (s->data_error != 0)
        return;
    s->data_error = err;
    s->data_reason = reason;
    s->data_reply = reply;
}

static void
server_data_end(struct pst_smtp_server *s)
{
    struct pst_smtp_event *ev;

    if (s->data_error != 0) {
        server_error(s, "%s", s->data_reply);
        ev = server_event(s, PST_SMTP_EV_DATA_ABORT, 0);
        ev->error = s->data_error;
        ev->reason = s->data_reason;
        ev->size = s->data_size;
        server_reset_transaction(s);
        server_enter_state(s, PST_SMTP_STATE_IDLE);
        return;
    }
    ev = server_event(s, PST_SMTP_EV_DATA_END, 1);
    ev->size = s->data_size;
    server_enter_state(s, PST_SMTP_STATE_WAIT_STORED);
}

/* A line in DATA: content or the end. */
static int
server_data_line(struct pst_smtp_server *s)
{
    struct pst_smtp_event *ev;
    const uint8_t *line;
    size_t len;
    unsigned flags;

    if (!server_read_line(s, LINE_MODE_DATA, &line, &len, &flags))
        return 0;
    if (flags & LINE_TOO_LONG) {
        /* RFC 5321 §4.5.3.1.6: 1000 octets.  Splitting the line would
         * change the message; the whole message is refused instead. */
        server_data_fail(s, PST_ELIMIT, "line too long",
                         "500 5.5.6 Error: message line too long");
        return 1;
    }
    /* RFC 5321 §4.1.1.4: CRLF "." CRLF ends the data; the first CRLF is
     * the end of the last line (or of the DATA command). */
    if (len == 1 && line[0] == '.') {
        server_data_end(s);
        return 1;
    }
    /* RFC 5321 §2.3.8 and CVE-2023-51764: a bare CR or LF is refused,
     * so no other server can read a second message in this one. */
    if (flags & (LINE_BARE_LF | LINE_BARE_CR))
        server_data_fail(s, PST_EPROTO, "bare CR or LF",
                         "550 5.6.0 Error: bare <CR> or <LF> in message");
    /* RFC 5321 §4.5.2: a leading "." was doubled by the client. */
    if (len > 0 && line[0] == '.') {
        line++;
        len--;
    }
    s->data_size += len + 2;
    if (s->cfg.max_message_size > 0 &&
        s->data_size > s->cfg.max_message_size)
        /* RFC 1870 §6.3 */
        server_data_fail(s, PST_ELIMIT, "message too big",
                         "552 5.3.4 Error: message size exceeds fixed "
                         "maximum message size");
    if (s->data_error != 0)
        return 1;
    ev = server_event(s, PST_SMTP_EV_DATA, 0);
    ev->data = line;
    ev->len = len + 2;
    return 1;
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
    if (s->out.len - s->out_off >= SERVER_OUT_HIGH)
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
        return server_auth_line(s);
    case PST_SMTP_STATE_DATA:
        return server_data_line(s);
    default:
        return server_command(s);
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
        progressed = server_step(s);
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
        (unsigned)cfg->sender_check > PST_SMTP_SENDER_OFF)
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
    server_reply(s, "220 %s ESMTP ready", s->cfg.hostname);
    s->flush = 1;
    server_enter_state(s, PST_SMTP_STATE_GREETING);
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

static void
server_answer_auth(struct pst_smtp_server *s, const struct pst_smtp_answer *a)
{
    int lookup = s->state == PST_SMTP_STATE_WAIT_LOOKUP;
    int rc;

    if (a->verdict == PST_SMTP_TEMPFAIL) {
        /* RFC 4954 §6: 454 4.7.0 when the user store is unavailable. */
        server_auth_fail(s, PST_ETEMP, "temporary failure of the store",
                         a->reply);
        return;
    }
    if (a->verdict == PST_SMTP_REJECT && a->reply != NULL) {
        server_auth_fail(s, PST_EAUTH, "refused by the server", a->reply);
        return;
    }
    /* Unknown user and wrong password go the same way (DESIGN.md). */
    if (lookup)
        rc = pst_sasl_server_set_cred(
            s->sasl, a->verdict == PST_SMTP_ACCEPT ? a->cred : NULL);
    else
        rc = pst_sasl_server_verified(s->sasl,
                                      a->verdict == PST_SMTP_ACCEPT);
    if (rc < 0) {
        server_auth_fail(s, rc, "exchange out of step", NULL);
        return;
    }
    server_auth_step(s, NULL, 0);
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
        server_answer_auth(s, a);
        break;
    case PST_SMTP_EV_MAIL:
        if (a->verdict == PST_SMTP_ACCEPT) {
            server_reply(s, "250 2.1.0 Ok");
            server_enter_state(s, PST_SMTP_STATE_MAIL);
            break;
        }
        /* sender_check = strict refusal: 553 5.7.1 (RFC 3463 X.7.1
         * "delivery not authorized"). */
        server_reply(s, "%s", a->reply != NULL ? a->reply
                         : a->verdict == PST_SMTP_REJECT
                             ? "553 5.7.1 Error: sender address not "
                               "owned by the authenticated user"
                             : "451 4.3.0 Error: sender check failed, "
                               "try again later");
        server_reset_transaction(s);
        server_enter_state(s, PST_SMTP_STATE_IDLE);
        break;
    case PST_SMTP_EV_RCPT:
        if (a->verdict == PST_SMTP_ACCEPT) {
            s->nrcpt++;
            server_reply(s, "250 2.1.5 Ok");
        } else {
            server_reply(s, "%s", a->reply != NULL ? a->reply
                             : a->verdict == PST_SMTP_REJECT
                                 ? "550 5.1.1 Error: recipient address "
                                   "rejected"
                                 : "451 4.3.0 Error: recipient check "
                                   "failed, try again later");
        }
        server_enter_state(s, PST_SMTP_STATE_MAIL);
        break;
    case PST_SMTP_EV_DATA_END:
        /* DESIGN.md: 250 only once the message is stored durably. */
        if (a->verdict == PST_SMTP_ACCEPT)
            server_reply(s, "250 2.0.0 Ok: queued as %s", a->queue_id);
        else
            server_reply(s, "%s", a->reply != NULL ? a->reply
                             : a->verdict == PST_SMTP_REJECT
                                 ? "554 5.6.0 Error: message rejected"
                                 : "451 4.3.0 Error: message not stored, "
                                   "try again later");
        server_reset_transaction(s);
        server_enter_state(s, PST_SMTP_STATE_IDLE);
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
    s->tls = 1;
    snprintf(s->tls_version, sizeof(s->tls_version), "%s", version);
    snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s", cipher);
    if (implicit)
        return 0;
    /* RFC 3207 §4.2: "the server MUST discard any knowledge obtained
     * from the client, such as the argument to the EHLO command": the
     * client starts again with EHLO; a previous AUTH is forgotten too. */
    server_drop_input(s);
    s->greeted = 0;
    s->esmtp = 0;
    pst_buf_reset(&s->helo);
    s->authed = 0;
    s->auth_mech = NULL;
    pst_buf_reset(&s->user);
    server_reset_transaction(s);
    server_enter_state(s, PST_SMTP_STATE_GREETING);
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
        server_reply(s, "421 4.4.2 %s Error: timeout exceeded",
                     s->cfg.hostname);
        break;
    case PST_SMTP_CLOSE_SHUTDOWN:
        server_reply(s, "421 4.3.2 %s Service shutting down",
                     s->cfg.hostname);
        break;
    case PST_SMTP_CLOSE_AUTH_LOCKOUT:
        /* RFC 4954 §9 lets a server drop a client after failed attempts
         * (not before 3); RFC 3463 X.7.0: security policy. */
        server_reply(s, "421 4.7.0 %s Error: too many failed "
                        "authentications, try again later",
                     s->cfg.hostname);
        break;
    case PST_SMTP_CLOSE_BUSY:
    default:
        /* RFC 5321 §3.1: 421 instead of the greeting. */
        server_reply(s, "421 4.7.0 %s Error: too many connections, "
                        "try again later",
                     s->cfg.hostname);
        break;
    }
    server_close_now(s);
    return s->broken;
}

int
pst_smtp_server_output(struct pst_smtp_server *s, const uint8_t **p,
                       size_t *len)
{
    size_t pending;

    if (s == NULL || p == NULL || len == NULL)
        return 0;
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
    size_t pending;

    if (s == NULL)
        return;
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
           server_buf_bytes(&s->rcpt);
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
                            s->tls_version, s->tls_cipher);
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
