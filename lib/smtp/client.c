/*
 * The SMTP client session: one message (or one probe) from greeting to
 * QUIT, sans-IO.  Each command pushes the stage whose reply it expects onto
 * a queue; each complete reply pops the head and goes to that stage's
 * handler (OpenSMTPD mta_response()), so pipelined groups (RFC 2920) need
 * no special path.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include <postern/base64.h>
#include <postern/smtp_client.h>

#include "../internal.h"

#define SMTPC_MAX_EXPECT 256 /* replies awaited at once (pipelined RCPTs) */
#define SMTPC_RCPT_WINDOW (SMTPC_MAX_EXPECT - 8) /* RCPTs awaiting replies */
#define SMTPC_MAX_RCPT 100000 /* recipients of one message */
#define SMTPC_MAX_EVENTS 8
#define SMTPC_CMD_LINE   512 /* RFC 5321 §4.5.3.1.4, incl. CRLF */

#define SMTPC_STAGE_MAP(X)                                                   \
    X(GREETING, "greeting")                                                  \
    X(EHLO, "EHLO")                                                          \
    X(HELO, "HELO")                                                          \
    X(STARTTLS, "STARTTLS")                                                  \
    X(AUTH, "AUTH")                                                          \
    X(MAIL, "MAIL")                                                          \
    X(RCPT, "RCPT")                                                          \
    X(DATA, "DATA")                                                          \
    X(DOT, "message")                                                        \
    X(QUIT, "QUIT")

enum smtpc_stage {
#define SMTPC_STAGE_ENUM_(name, text) SMTPC_##name,
    SMTPC_STAGE_MAP(SMTPC_STAGE_ENUM_)
#undef SMTPC_STAGE_ENUM_
};

static const char *const smtpc_stage_names[] = {
#define SMTPC_STAGE_NAME_(name, text) text,
    SMTPC_STAGE_MAP(SMTPC_STAGE_NAME_)
#undef SMTPC_STAGE_NAME_
};

enum smtpc_phase {
    SMTPC_RUN = 0,   /* commands and replies flow */
    SMTPC_TLS_WAIT,  /* STARTTLS accepted: waiting for the handshake */
    SMTPC_SENDING,   /* 354 received: message bytes from the caller */
    SMTPC_ENDING,    /* failed or done: only QUIT's reply matters */
    SMTPC_CLOSED,    /* nothing more */
};

struct smtpc_event {
    struct pst_smtpc_event ev;
    struct pst_buf text;
};

struct pst_smtpc {
    /* Configuration (copied): */
    struct pst_buf helo;
    struct pst_buf mail_from;
    char **rcpt;
    size_t nrcpt;
    struct pst_buf forced_mech;
    struct pst_sasl_client_config sasl;
    struct pst_buf sasl_authcid, sasl_authzid, sasl_password, sasl_service,
        sasl_host;
    int have_sasl;
    enum pst_smtpc_starttls starttls;
    int allow_plaintext_auth;
    int probe;
    uint64_t size;
    int body_8bit;
    void (*trace)(void *ctx, int dir, const char *line, size_t len);
    void *trace_ctx;

    /* State: */
    enum smtpc_phase phase;
    int tls;
    int failed;
    int starttls_refused;     /* AUTO mode: the server said no */
    enum smtpc_stage expect[SMTPC_MAX_EXPECT];
    size_t expect_head, expect_len;
    size_t rcpt_next;         /* next RCPT to send */
    size_t rcpt_replied;
    size_t rcpt_ok;
    int rcpt_failed_code;
    struct pst_buf rcpt_failed;  /* first refusal, for the FAIL event */
    struct pst_sasl_client *sc;
    const struct pst_sasl_mech *mech;
    struct pst_buf pending_ir;   /* IR too long for the AUTH line */
    int have_pending_ir;
    int auth_cancelled;          /* sent "*": error saved in auth_error */
    int auth_error;
    int auth_extra_challenge;    /* ... because of one challenge too many */
    int at_line_start;           /* DATA: next byte starts a line */
    int last_cr;                 /* DATA: previous chunk ended in CR */
    uint64_t data_bytes;

    /* Received: */
    struct pst_buf line;         /* partial reply line */
    struct pst_buf reply;        /* lines of the current reply */
    int reply_code;
    unsigned reply_lines;
    unsigned ext;
    uint64_t size_limit;
    struct pst_buf mechs;
    struct pst_buf greeting;
    struct pst_buf ehlo;

    /* Sent: */
    struct pst_buf out;
    struct pst_buf scratch;      /* SASL step output (secret) */
    struct pst_buf b64;          /* base64 of a message (secret) */

    struct smtpc_event events[SMTPC_MAX_EVENTS];
    size_t ev_head, ev_len;
    struct pst_buf ev_text;      /* text of the event last returned */
};

static void smtpc_fail(struct pst_smtpc *c, int error, int code,
                       enum smtpc_stage stage, const char *text);

/* --- Helpers --------------------------------------------------------------
 */

static void
smtpc_trace(struct pst_smtpc *c, int dir, const char *line, size_t len)
{
    if (c->trace != NULL)
        c->trace(c->trace_ctx, dir, line, len);
}

static int
smtpc_event(struct pst_smtpc *c, enum pst_smtpc_event_type type, int error,
            int code, enum smtpc_stage stage, const char *text)
{
    struct smtpc_event *e;

    if (c->ev_len == SMTPC_MAX_EVENTS)
        return PST_ELIMIT; /* cannot happen: at most a few per reply */
    e = &c->events[(c->ev_head + c->ev_len) % SMTPC_MAX_EVENTS];
    memset(&e->ev, 0, sizeof(e->ev));
    e->ev.type = type;
    e->ev.error = error;
    e->ev.code = code;
    e->ev.stage = smtpc_stage_names[stage];
    e->ev.mech = c->mech != NULL ? pst_sasl_mech_name(c->mech) : NULL;
    pst_buf_reset(&e->text);
    if (pst_buf_append_str(&e->text, text != NULL ? text : "") < 0)
        return PST_ENOMEM;
    c->ev_len++;
    return 0;
}

/* Take back the STARTTLS event if it is the last one queued and was not
 * yet returned by pst_smtpc_next_event(). */
static void
smtpc_retract_starttls(struct pst_smtpc *c)
{
    size_t last;

    if (c->ev_len == 0)
        return;
    last = (c->ev_head + c->ev_len - 1) % SMTPC_MAX_EVENTS;
    if (c->events[last].ev.type == PST_SMTPC_EV_STARTTLS)
        c->ev_len--;
}

/* Queue a command line (without CRLF) and the stage of its reply. */
static int
smtpc_send(struct pst_smtpc *c, enum smtpc_stage stage, const char *trace,
           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
smtpc_send(struct pst_smtpc *c, enum smtpc_stage stage, const char *trace,
           const char *fmt, ...)
{
    size_t start = c->out.len;
    va_list ap;
    int n, rc;
    char *p;

    if (c->expect_len == SMTPC_MAX_EXPECT)
        return PST_ELIMIT;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return PST_EINVAL;
    p = malloc((size_t)n + 1);
    if (p == NULL)
        return PST_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = pst_buf_append(&c->out, p, (size_t)n);
    if (rc == 0)
        rc = pst_buf_append(&c->out, "\r\n", 2);
    if (rc < 0) {
        c->out.len = start;
        OPENSSL_clear_free(p, (size_t)n + 1);
        return rc;
    }
    if (trace != NULL)
        smtpc_trace(c, PST_SMTPC_TRACE_OUT, trace, strlen(trace));
    else
        smtpc_trace(c, PST_SMTPC_TRACE_OUT, p, (size_t)n);
    OPENSSL_clear_free(p, (size_t)n + 1);
    c->expect[(c->expect_head + c->expect_len) % SMTPC_MAX_EXPECT] = stage;
    c->expect_len++;
    return 0;
}

/* Send an AUTH continuation line: base64 of msg, "" for an empty one. */
static int
smtpc_send_b64(struct pst_smtpc *c, const uint8_t *msg, size_t len)
{
    int rc;

    pst_buf_reset(&c->b64);
    if ((rc = pst_base64_encode(msg, len, &c->b64)) < 0 ||
        (rc = pst_buf_append(&c->b64, "", 0)) < 0)
        return rc;
    return smtpc_send(c, SMTPC_AUTH, "<redacted>", "%s",
                      (const char *)c->b64.data);
}

static void
smtpc_quit(struct pst_smtpc *c)
{
    if (smtpc_send(c, SMTPC_QUIT, NULL, "QUIT") < 0) {
        c->phase = SMTPC_CLOSED;
        smtpc_event(c, PST_SMTPC_EV_CLOSE, 0, 0, SMTPC_QUIT, NULL);
    }
}

static void
smtpc_fail(struct pst_smtpc *c, int error, int code, enum smtpc_stage stage,
           const char *text)
{
    if (c->failed)
        return;
    c->failed = 1;
    smtpc_event(c, PST_SMTPC_EV_FAIL, error, code, stage, text);
    /* RFC 5321 §3.8: a 421 means the server is closing; so does a reply
     * we cannot parse (we no longer know where replies start). */
    if (code == 421 || error == PST_EPROTO || c->phase == SMTPC_CLOSED) {
        c->phase = SMTPC_CLOSED;
        smtpc_event(c, PST_SMTPC_EV_CLOSE, 0, 0, stage, NULL);
        return;
    }
    c->phase = SMTPC_ENDING;
    smtpc_quit(c);
}

/* Fail with the current reply as text. */
static void
smtpc_fail_reply(struct pst_smtpc *c, enum smtpc_stage stage)
{
    int error = c->reply_code >= 500 ? PST_EREJECT : PST_ETEMP;

    smtpc_fail(c, error, c->reply_code, stage, (const char *)c->reply.data);
}

static int
smtpc_has_mech(const struct pst_smtpc *c, const char *name)
{
    const char *p = (const char *)c->mechs.data;
    size_t n = strlen(name);

    if (p == NULL)
        return 0;
    while (*p != '\0') {
        const char *sp = strchr(p, ' ');
        size_t len = sp != NULL ? (size_t)(sp - p) : strlen(p);

        if (len == n && strncasecmp(p, name, n) == 0)
            return 1;
        p += len;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* Add an AUTH mechanism name to the offered list once. */
static int
smtpc_add_mech(struct pst_smtpc *c, const char *p, size_t len)
{
    char name[64];
    int rc;

    if (len == 0 || len >= sizeof(name))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];

        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        name[i] = ch;
    }
    name[len] = '\0';
    if (smtpc_has_mech(c, name))
        return 0;
    if (c->mechs.len > 0 && (rc = pst_buf_append_byte(&c->mechs, ' ')) < 0)
        return rc;
    return pst_buf_append(&c->mechs, name, len);
}

/* Parse the space-separated mechanisms after "AUTH" or "AUTH=". */
static int
smtpc_parse_mechs(struct pst_smtpc *c, const char *p)
{
    while (*p != '\0') {
        size_t len;
        int rc;

        while (*p == ' ')
            p++;
        len = strcspn(p, " ");
        if ((rc = smtpc_add_mech(c, p, len)) < 0)
            return rc;
        p += len;
    }
    return 0;
}

/* Parse EHLO keyword lines (all but the first) of the current reply. */
static int
smtpc_parse_ehlo(struct pst_smtpc *c)
{
    const char *p = (const char *)c->reply.data;
    int rc;

    c->ext = 0;
    c->size_limit = 0;
    pst_buf_reset(&c->mechs);
    pst_buf_reset(&c->ehlo);
    if ((rc = pst_buf_append(&c->ehlo, c->reply.data, c->reply.len)) < 0)
        return rc;
    p = strchr(p, '\n'); /* the first line names the server */
    while (p != NULL) {
        char kw[64];
        const char *line = p + 1, *arg, *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        size_t klen;

        p = end;
        if (len < 4)
            continue;
        line += 4; /* "250-" / "250 " */
        len -= 4;
        klen = strcspn(line, " =\n");
        if (klen > len)
            klen = len;
        if (klen == 0 || klen >= sizeof(kw))
            continue;
        for (size_t i = 0; i < klen; i++)
            kw[i] = (line[i] >= 'a' && line[i] <= 'z')
                        ? (char)(line[i] - 'a' + 'A') : line[i];
        kw[klen] = '\0';
        arg = line + klen;
        if (strcmp(kw, "PIPELINING") == 0) {
            c->ext |= PST_SMTPC_EXT_PIPELINING;
        } else if (strcmp(kw, "STARTTLS") == 0) {
            c->ext |= PST_SMTPC_EXT_STARTTLS;
        } else if (strcmp(kw, "8BITMIME") == 0) {
            c->ext |= PST_SMTPC_EXT_8BITMIME;
        } else if (strcmp(kw, "ENHANCEDSTATUSCODES") == 0) {
            c->ext |= PST_SMTPC_EXT_ENHANCED;
        } else if (strcmp(kw, "SMTPUTF8") == 0) {
            c->ext |= PST_SMTPC_EXT_SMTPUTF8;
        } else if (strcmp(kw, "SIZE") == 0) {
            c->ext |= PST_SMTPC_EXT_SIZE;
            if (*arg == ' ') {
                char num[24];
                size_t n = strcspn(arg + 1, "\n");

                if (n > 0 && n < sizeof(num)) {
                    memcpy(num, arg + 1, n);
                    num[n] = '\0';
                    c->size_limit = strtoull(num, NULL, 10);
                }
            }
        } else if (strcmp(kw, "AUTH") == 0) {
            /* "AUTH PLAIN LOGIN" and the legacy "AUTH=PLAIN LOGIN" that
             * old clients look for. */
            char list[PST_SMTPC_MAX_REPLY_LINE];
            size_t n = strcspn(arg, "\n");

            if (n >= sizeof(list))
                n = sizeof(list) - 1;
            memcpy(list, arg, n);
            list[n] = '\0';
            if (list[0] == ' ' || list[0] == '=') {
                c->ext |= PST_SMTPC_EXT_AUTH;
                if ((rc = smtpc_parse_mechs(c, list + 1)) < 0)
                    return rc;
            }
        }
    }
    return pst_buf_append(&c->mechs, "", 0);
}

/* --- Choosing a mechanism ------------------------------------------------
 */

static int
smtpc_mech_usable(const struct pst_smtpc *c, const struct pst_sasl_mech *m)
{
    /* Never send a password in clear unless told to (msmtp's
     * SMTP_EINSECURE). */
    return !(pst_sasl_mech_flags(m) & PST_MECH_SENDS_PASSWORD) || c->tls ||
           c->allow_plaintext_auth;
}

const struct pst_sasl_mech *
pst_smtpc_choose_mech(const struct pst_smtpc *c)
{
    const struct pst_sasl_mech *m;

    if (c->forced_mech.len > 0) {
        m = pst_sasl_mech_find((const char *)c->forced_mech.data,
                               c->forced_mech.len);
        if (m == NULL || !smtpc_has_mech(c, pst_sasl_mech_name(m)) ||
            !smtpc_mech_usable(c, m))
            return NULL;
        return m;
    }
    for (size_t i = 0; (m = pst_sasl_mech_at(i)) != NULL; i++)
        if (smtpc_has_mech(c, pst_sasl_mech_name(m)) &&
            smtpc_mech_usable(c, m))
            return m;
    return NULL;
}

/* --- Stages -------------------------------------------------------------- */

static void smtpc_start_mail(struct pst_smtpc *c);

static void
smtpc_send_rcpt(struct pst_smtpc *c)
{
    size_t i = c->rcpt_next++;

    if (smtpc_send(c, SMTPC_RCPT, NULL, "RCPT TO:<%s>", c->rcpt[i]) < 0)
        smtpc_fail(c, PST_ENOMEM, 0, SMTPC_RCPT, "out of memory");
}

/* RFC 2920 §3.1: pipelined RCPTs, no more awaiting replies at once than
 * the reply queue holds; each reply makes room for the next. */
static void
smtpc_fill_rcpts(struct pst_smtpc *c)
{
    while (c->rcpt_next < c->nrcpt && !c->failed &&
           c->rcpt_next - c->rcpt_replied < SMTPC_RCPT_WINDOW)
        smtpc_send_rcpt(c);
}

static void
smtpc_start_auth(struct pst_smtpc *c)
{
    const struct pst_sasl_mech *m = pst_smtpc_choose_mech(c);
    struct pst_buf msg;
    char why[512];
    int rc;

    if (m == NULL) {
        const char *offered = c->mechs.len > 0 ? (const char *)c->mechs.data
                                               : "none";

        if (c->forced_mech.len > 0) {
            const struct pst_sasl_mech *f = pst_sasl_mech_find(
                (const char *)c->forced_mech.data, c->forced_mech.len);

            if (f != NULL && smtpc_has_mech(c, pst_sasl_mech_name(f))) {
                snprintf(why, sizeof(why),
                         "%s would send the password without TLS "
                         "(allow it with --allow-plaintext-auth)",
                         pst_sasl_mech_name(f));
                smtpc_fail(c, PST_EWEAK, 0, SMTPC_AUTH, why);
                return;
            }
            snprintf(why, sizeof(why),
                     "the server does not offer %s (it offers: %s)",
                     (const char *)c->forced_mech.data, offered);
        } else if (c->mechs.len > 0) {
            snprintf(why, sizeof(why),
                     "no usable mechanism: the server offers %s%s", offered,
                     c->tls ? "" : " (PLAIN and LOGIN need TLS or "
                                   "--allow-plaintext-auth)");
        } else {
            snprintf(why, sizeof(why), "the server does not offer AUTH%s",
                     c->tls ? "" : " before TLS");
        }
        smtpc_fail(c, c->mechs.len > 0 && !c->tls ? PST_EWEAK : PST_ENOTSUP,
                   0, SMTPC_AUTH, why);
        return;
    }
    c->mech = m;
    rc = pst_sasl_client_new(m, &c->sasl, &c->sc);
    if (rc < 0) {
        smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
        return;
    }
    /* LOGIN goes without an initial response, as msmtp and curl send it:
     * a server that ignores the IR prompts "Username:" anyway, and our
     * LOGIN client, answering by position, would send it the password
     * as the user name (into its logs). */
    if (!(pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST) ||
        strcmp(pst_sasl_mech_name(m), "LOGIN") == 0) {
        rc = smtpc_send(c, SMTPC_AUTH, NULL, "AUTH %s", pst_sasl_mech_name(m));
        /* A server-first mechanism: step(NULL) just records that.  (LOGIN
         * answers the first prompt with the user name.) */
        if (rc == 0 && !(pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST))
            rc = pst_sasl_client_step(c->sc, NULL, 0, &c->scratch);
        if (rc < 0)
            smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
        return;
    }
    rc = pst_sasl_client_step(c->sc, NULL, 0, &c->scratch);
    if (rc < 0) {
        smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
        return;
    }
    msg = c->scratch;
    pst_buf_reset(&c->b64);
    if ((rc = pst_base64_encode(msg.data, msg.len, &c->b64)) < 0 ||
        (rc = pst_buf_append(&c->b64, "", 0)) < 0) {
        smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
        return;
    }
    snprintf(why, sizeof(why), "AUTH %s <redacted>", pst_sasl_mech_name(m));
    /* RFC 4954 §4: an initial response that would make the command line
     * longer than 512 octets is sent after an empty 334 instead; an empty
     * one is sent as "=". */
    if (strlen(pst_sasl_mech_name(m)) + c->b64.len + 8 > SMTPC_CMD_LINE) {
        pst_buf_reset(&c->pending_ir);
        if ((rc = pst_buf_append(&c->pending_ir, msg.data, msg.len)) < 0) {
            smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
            return;
        }
        c->have_pending_ir = 1;
        rc = smtpc_send(c, SMTPC_AUTH, NULL, "AUTH %s",
                        pst_sasl_mech_name(m));
    } else {
        rc = smtpc_send(c, SMTPC_AUTH, why, "AUTH %s %s",
                        pst_sasl_mech_name(m),
                        c->b64.len > 0 ? (const char *)c->b64.data : "=");
    }
    if (rc < 0)
        smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
}

static void
smtpc_after_ehlo(struct pst_smtpc *c)
{
    if (!c->tls && c->starttls != PST_SMTPC_STARTTLS_NEVER &&
        !c->starttls_refused && (c->ext & PST_SMTPC_EXT_STARTTLS)) {
        if (smtpc_send(c, SMTPC_STARTTLS, NULL, "STARTTLS") < 0)
            smtpc_fail(c, PST_ENOMEM, 0, SMTPC_STARTTLS, "out of memory");
        return;
    }
    if (!c->tls && c->starttls == PST_SMTPC_STARTTLS_REQUIRED) {
        smtpc_fail(c, PST_ENOTSUP, 0, SMTPC_STARTTLS,
                   "the server does not offer STARTTLS");
        return;
    }
    if (c->have_sasl) {
        smtpc_start_auth(c);
        return;
    }
    if (c->probe) {
        smtpc_event(c, PST_SMTPC_EV_DONE, 0, 0, SMTPC_EHLO, "");
        c->phase = SMTPC_ENDING;
        smtpc_quit(c);
        return;
    }
    smtpc_start_mail(c);
}

static void
smtpc_start_mail(struct pst_smtpc *c)
{
    char params[64] = "";
    size_t n = 0;
    int rc;

    /* RFC 1870 §6: declare the size when the server takes SIZE. */
    if ((c->ext & PST_SMTPC_EXT_SIZE) && c->size > 0)
        n += (size_t)snprintf(params + n, sizeof(params) - n,
                              " SIZE=%" PRIu64, c->size);
    if ((c->ext & PST_SMTPC_EXT_8BITMIME) && c->body_8bit)
        snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
    rc = smtpc_send(c, SMTPC_MAIL, NULL, "MAIL FROM:<%s>%s",
                    (const char *)c->mail_from.data, params);
    if (rc < 0) {
        smtpc_fail(c, rc, 0, SMTPC_MAIL, pst_strerror(rc));
        return;
    }
    /* RFC 2920 §3.1: MAIL and RCPT may be pipelined.  DATA waits for the
     * RCPT replies, so a refused recipient never leaves a half-open DATA
     * to be closed with an empty message. */
    if (c->ext & PST_SMTPC_EXT_PIPELINING)
        smtpc_fill_rcpts(c);
}

/* The reply to one AUTH step. */
static void
smtpc_auth_reply(struct pst_smtpc *c)
{
    const char *text = (const char *)c->reply.data;
    char why[256];
    int rc;

    if (c->reply_code == 334 && !c->auth_cancelled) {
        const char *b64 = text + 3;

        b64 += (*b64 == ' ');
        if (c->have_pending_ir) {
            c->have_pending_ir = 0;
            rc = smtpc_send_b64(c, c->pending_ir.data, c->pending_ir.len);
            pst_buf_clear(&c->pending_ir);
            if (rc < 0)
                smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
            return;
        }
        pst_buf_reset(&c->b64);
        rc = pst_base64_decode((const uint8_t *)b64, strlen(b64), &c->b64);
        if (rc == 0)
            rc = pst_sasl_client_step(c->sc, c->b64.data != NULL
                                                 ? c->b64.data
                                                 : (const uint8_t *)"",
                                      c->b64.len, &c->scratch);
        if (rc >= 0) {
            rc = smtpc_send_b64(c, c->scratch.data, c->scratch.len);
            if (rc < 0)
                smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
            return;
        }
        /* RFC 4954 §4: a client that cannot use a challenge cancels with
         * "*"; the server answers 501 and we report our reason.  A
         * challenge after the mechanism has said all it has to say
         * (PST_ESTATE from the step) is the server breaking the protocol,
         * not a bug of ours. */
        c->auth_cancelled = 1;
        c->auth_error = rc == PST_ESTATE ? PST_EPROTO : rc;
        c->auth_extra_challenge = rc == PST_ESTATE;
        if (smtpc_send(c, SMTPC_AUTH, NULL, "*") < 0)
            smtpc_fail(c, rc, 0, SMTPC_AUTH, pst_strerror(rc));
        return;
    }
    if (c->auth_cancelled) {
        snprintf(why, sizeof(why), "%s; cancelled the exchange",
                 c->auth_error == PST_EFORGED
                     ? "the server failed to prove it knows the password"
                 : c->auth_error == PST_EWEAK
                     ? "the server's SCRAM iteration count is too low"
                 : c->auth_extra_challenge
                     ? "the server sent a challenge after the exchange "
                       "was complete"
                 : c->auth_error == PST_EPROTO
                     ? "malformed challenge from the server"
                     : pst_strerror(c->auth_error));
        smtpc_fail(c, c->auth_error, 0, SMTPC_AUTH, why);
        return;
    }
    if (c->reply_code == 235) {
        rc = pst_sasl_client_finish(c->sc);
        if (rc < 0) {
            smtpc_fail(c, PST_EFORGED, c->reply_code, SMTPC_AUTH,
                       "the server accepted without proving it knows the "
                       "password");
            return;
        }
        smtpc_event(c, PST_SMTPC_EV_AUTH, 0, c->reply_code, SMTPC_AUTH,
                    text);
        pst_sasl_client_free(c->sc);
        c->sc = NULL;
        if (c->probe) {
            smtpc_event(c, PST_SMTPC_EV_DONE, 0, c->reply_code, SMTPC_AUTH,
                        text);
            c->phase = SMTPC_ENDING;
            smtpc_quit(c);
            return;
        }
        smtpc_start_mail(c);
        return;
    }
    if (c->reply_code == 504) {
        smtpc_fail(c, PST_ENOTSUP, c->reply_code, SMTPC_AUTH, text);
        return;
    }
    if (c->reply_code >= 500) {
        smtpc_fail(c, PST_EAUTH, c->reply_code, SMTPC_AUTH, text);
        return;
    }
    smtpc_fail_reply(c, SMTPC_AUTH);
}

/* A complete reply arrived for stage st. */
static void
smtpc_dispatch(struct pst_smtpc *c, enum smtpc_stage st)
{
    int code = c->reply_code;
    const char *text = (const char *)c->reply.data;

    if (c->phase == SMTPC_ENDING) {
        if (st == SMTPC_QUIT) {
            c->phase = SMTPC_CLOSED;
            smtpc_event(c, PST_SMTPC_EV_CLOSE, 0, code, st, NULL);
        }
        return; /* replies to a pipelined group we gave up on */
    }
    switch (st) {
    case SMTPC_GREETING:
        if (code != 220) {
            smtpc_fail_reply(c, st);
            return;
        }
        pst_buf_reset(&c->greeting);
        pst_buf_append_str(&c->greeting, text);
        if (smtpc_send(c, SMTPC_EHLO, NULL, "EHLO %s",
                       (const char *)c->helo.data) < 0)
            smtpc_fail(c, PST_ENOMEM, 0, st, "out of memory");
        return;
    case SMTPC_EHLO:
        if (code == 250) {
            if (smtpc_parse_ehlo(c) < 0) {
                smtpc_fail(c, PST_ENOMEM, 0, st, "out of memory");
                return;
            }
            smtpc_event(c, PST_SMTPC_EV_EHLO, 0, code, st, text);
            smtpc_after_ehlo(c);
            return;
        }
        /* RFC 5321 §3.2: a server that does not know EHLO gets HELO. */
        if (code >= 500 && code != 554) {
            if (smtpc_send(c, SMTPC_HELO, NULL, "HELO %s",
                           (const char *)c->helo.data) < 0)
                smtpc_fail(c, PST_ENOMEM, 0, st, "out of memory");
            return;
        }
        smtpc_fail_reply(c, st);
        return;
    case SMTPC_HELO:
        if (code != 250) {
            smtpc_fail_reply(c, st);
            return;
        }
        c->ext = 0;
        pst_buf_reset(&c->mechs);
        pst_buf_append(&c->mechs, "", 0);
        smtpc_event(c, PST_SMTPC_EV_EHLO, 0, code, st, text);
        smtpc_after_ehlo(c);
        return;
    case SMTPC_STARTTLS:
        if (code == 220) {
            /* RFC 3207 §4.2: nothing the server sent before the handshake
             * may be trusted; drop whatever else is buffered. */
            pst_buf_reset(&c->line);
            c->phase = SMTPC_TLS_WAIT;
            smtpc_event(c, PST_SMTPC_EV_STARTTLS, 0, code, st, text);
            return;
        }
        if (c->starttls == PST_SMTPC_STARTTLS_REQUIRED || code == 421) {
            smtpc_fail_reply(c, st);
            return;
        }
        c->starttls_refused = 1;
        smtpc_after_ehlo(c);
        return;
    case SMTPC_AUTH:
        smtpc_auth_reply(c);
        return;
    case SMTPC_MAIL:
        if (code != 250) {
            smtpc_fail_reply(c, st);
            return;
        }
        if (!(c->ext & PST_SMTPC_EXT_PIPELINING))
            smtpc_send_rcpt(c);
        return;
    case SMTPC_RCPT:
        c->rcpt_replied++;
        if (code == 250 || code == 251) {
            c->rcpt_ok++;
        } else if (c->rcpt_failed.len == 0) {
            c->rcpt_failed_code = code;
            pst_buf_printf(&c->rcpt_failed, "<%s>: %s",
                           c->rcpt[c->rcpt_replied - 1], text);
        }
        if (c->rcpt_replied < c->nrcpt) {
            if (!(c->ext & PST_SMTPC_EXT_PIPELINING))
                smtpc_send_rcpt(c);
            else
                smtpc_fill_rcpts(c);
            return;
        }
        if (c->rcpt_ok < c->nrcpt) {
            smtpc_fail(c, c->rcpt_failed_code >= 500 ? PST_EREJECT
                                                     : PST_ETEMP,
                       c->rcpt_failed_code, st,
                       (const char *)c->rcpt_failed.data);
            return;
        }
        if (smtpc_send(c, SMTPC_DATA, NULL, "DATA") < 0)
            smtpc_fail(c, PST_ENOMEM, 0, st, "out of memory");
        return;
    case SMTPC_DATA:
        if (code != 354) {
            smtpc_fail_reply(c, st);
            return;
        }
        c->phase = SMTPC_SENDING;
        c->at_line_start = 1;
        c->last_cr = 0;
        smtpc_event(c, PST_SMTPC_EV_DATA, 0, code, st, text);
        return;
    case SMTPC_DOT:
        if (code != 250) {
            smtpc_fail_reply(c, st);
            return;
        }
        smtpc_event(c, PST_SMTPC_EV_DONE, 0, code, st, text);
        c->phase = SMTPC_ENDING;
        smtpc_quit(c);
        return;
    case SMTPC_QUIT:
        c->phase = SMTPC_CLOSED;
        smtpc_event(c, PST_SMTPC_EV_CLOSE, 0, code, st, NULL);
        return;
    }
}

/* One reply line without its line end. */
static void
smtpc_reply_line(struct pst_smtpc *c, const uint8_t *p, size_t len)
{
    int code, last;
    enum smtpc_stage st;

    /* STYLE §8: validate before use: code [2-5][0-9][0-9], then "-", " "
     * or the end; printable text. */
    if (len < 3 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9' ||
        (len > 3 && p[3] != '-' && p[3] != ' '))
        goto bad;
    for (size_t i = 3; i < len; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            goto bad;
    code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    last = len == 3 || p[3] == ' ';
    if (c->reply_lines > 0 && code != c->reply_code)
        goto bad; /* RFC 5321 §4.2.1: one code for all lines */
    if (++c->reply_lines > PST_SMTPC_MAX_REPLY_LINES)
        goto bad;
    c->reply_code = code;
    if ((c->reply.len > 0 && pst_buf_append_byte(&c->reply, '\n') < 0) ||
        pst_buf_append(&c->reply, p, len) < 0) {
        smtpc_fail(c, PST_ENOMEM, 0, SMTPC_GREETING, "out of memory");
        return;
    }
    if (!last)
        return;
    if (c->expect_len == 0)
        goto bad; /* a reply nobody asked for */
    st = c->expect[c->expect_head];
    c->expect_head = (c->expect_head + 1) % SMTPC_MAX_EXPECT;
    c->expect_len--;
    smtpc_trace(c, PST_SMTPC_TRACE_IN,
                st == SMTPC_AUTH && code == 334 ? "334 <redacted>"
                                                : (const char *)c->reply.data,
                st == SMTPC_AUTH && code == 334 ? 14 : c->reply.len);
    smtpc_dispatch(c, st);
    pst_buf_reset(&c->reply);
    c->reply_lines = 0;
    return;
bad:
    pst_buf_reset(&c->reply);
    c->reply_lines = 0;
    smtpc_fail(c, PST_EPROTO, 0,
               c->expect_len > 0 ? c->expect[c->expect_head]
                                 : SMTPC_GREETING,
               "malformed reply from the server");
}

/* --- Public API ----------------------------------------------------------
 */

static int
copy_str(struct pst_buf *b, size_t max, int secret, const char *s)
{
    pst_buf_init(b, max, secret);
    if (s != NULL && pst_buf_append_str(b, s) < 0)
        return PST_ENOMEM;
    return pst_buf_append(b, "", 0);
}

/* A path we put between <>: no controls, no <>, no spaces. */
static int
path_ok(const char *s)
{
    if (strlen(s) > 256) /* RFC 5321 §4.5.3.1.3 */
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || *s == '<' || *s == '>' ||
            *s == 0x7f)
            return 0;
    return 1;
}

int
pst_smtpc_new(const struct pst_smtpc_config *cfg, struct pst_smtpc **out)
{
    struct pst_smtpc *c;
    int rc = PST_ENOMEM;

    *out = NULL;
    if (cfg == NULL || cfg->helo == NULL || cfg->helo[0] == '\0' ||
        !path_ok(cfg->helo))
        return PST_EINVAL;
    if (!cfg->probe) {
        if (cfg->mail_from == NULL || !path_ok(cfg->mail_from) ||
            cfg->nrcpt == 0 || cfg->nrcpt > SMTPC_MAX_RCPT)
            return PST_EINVAL;
        for (size_t i = 0; i < cfg->nrcpt; i++)
            if (cfg->rcpt[i] == NULL || cfg->rcpt[i][0] == '\0' ||
                !path_ok(cfg->rcpt[i]))
                return PST_EINVAL;
    }
    if (cfg->mech != NULL &&
        pst_sasl_mech_find(cfg->mech, strlen(cfg->mech)) == NULL)
        return PST_EINVAL;
    if (cfg->sasl != NULL && (cfg->sasl->authcid == NULL ||
                              cfg->sasl->authcid[0] == '\0'))
        return PST_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PST_ENOMEM;
    for (size_t i = 0; i < SMTPC_MAX_EVENTS; i++)
        pst_buf_init(&c->events[i].text, 64 * 1024, 0);
    pst_buf_init(&c->ev_text, 64 * 1024, 0);
    pst_buf_init(&c->line, PST_SMTPC_MAX_REPLY_LINE, 0);
    pst_buf_init(&c->reply, PST_SMTPC_MAX_REPLY_LINE *
                                (size_t)PST_SMTPC_MAX_REPLY_LINES, 0);
    pst_buf_init(&c->out, PST_SMTPC_MAX_OUTPUT + 64 * 1024, 1);
    pst_buf_init(&c->scratch, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&c->b64, PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE) + 1, 1);
    pst_buf_init(&c->pending_ir, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&c->rcpt_failed, 4096, 0);
    pst_buf_init(&c->mechs, 4096, 0);
    pst_buf_init(&c->greeting, 4096, 0);
    pst_buf_init(&c->ehlo, 64 * 1024, 0);
    if (copy_str(&c->helo, 255, 0, cfg->helo) < 0 ||
        copy_str(&c->mail_from, 256, 0, cfg->mail_from) < 0 ||
        copy_str(&c->forced_mech, 64, 0, cfg->mech) < 0 ||
        copy_str(&c->sasl_service, 64, 0, NULL) < 0 ||
        copy_str(&c->sasl_host, 255, 0, NULL) < 0 ||
        copy_str(&c->sasl_authcid, PST_SASL_MAX_NAME, 0, NULL) < 0 ||
        copy_str(&c->sasl_authzid, PST_SASL_MAX_NAME, 0, NULL) < 0 ||
        copy_str(&c->sasl_password, PST_SASL_MAX_PASSWORD, 1, NULL) < 0)
        goto fail;
    if (!cfg->probe) {
        c->rcpt = calloc(cfg->nrcpt, sizeof(char *));
        if (c->rcpt == NULL)
            goto fail;
        c->nrcpt = cfg->nrcpt;
        for (size_t i = 0; i < cfg->nrcpt; i++) {
            c->rcpt[i] = strdup(cfg->rcpt[i]);
            if (c->rcpt[i] == NULL)
                goto fail;
        }
    }
    if (cfg->sasl != NULL) {
        const struct pst_sasl_client_config *s = cfg->sasl;

        c->have_sasl = 1;
        c->sasl = *s;
        if (pst_buf_append_str(&c->sasl_authcid, s->authcid) < 0 ||
            (s->authzid != NULL &&
             pst_buf_append_str(&c->sasl_authzid, s->authzid) < 0) ||
            pst_buf_append(&c->sasl_password, s->password,
                           s->password_len) < 0 ||
            (s->service != NULL &&
             pst_buf_append_str(&c->sasl_service, s->service) < 0) ||
            (s->host != NULL && pst_buf_append_str(&c->sasl_host,
                                                   s->host) < 0)) {
            rc = PST_ELIMIT;
            goto fail;
        }
        c->sasl.authcid = (const char *)c->sasl_authcid.data;
        c->sasl.authzid = s->authzid != NULL
                              ? (const char *)c->sasl_authzid.data : NULL;
        c->sasl.password = c->sasl_password.data;
        c->sasl.password_len = c->sasl_password.len;
        c->sasl.service = s->service != NULL
                              ? (const char *)c->sasl_service.data : NULL;
        c->sasl.host = s->host != NULL ? (const char *)c->sasl_host.data
                                       : NULL;
    }
    c->starttls = cfg->starttls;
    c->tls = cfg->implicit_tls ? 1 : 0;
    c->allow_plaintext_auth = cfg->allow_plaintext_auth;
    c->probe = cfg->probe;
    c->size = cfg->size;
    c->body_8bit = cfg->body_8bit;
    c->trace = cfg->trace;
    c->trace_ctx = cfg->trace_ctx;
    /* The first thing to read is the greeting. */
    c->expect[0] = SMTPC_GREETING;
    c->expect_len = 1;
    *out = c;
    return 0;
fail:
    pst_smtpc_free(c);
    return rc;
}

void
pst_smtpc_free(struct pst_smtpc *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < SMTPC_MAX_EVENTS; i++)
        pst_buf_clear(&c->events[i].text);
    if (c->rcpt != NULL) {
        for (size_t i = 0; i < c->nrcpt; i++)
            free(c->rcpt[i]);
        free(c->rcpt);
    }
    pst_sasl_client_free(c->sc);
    pst_buf_clear(&c->ev_text);
    pst_buf_clear(&c->helo);
    pst_buf_clear(&c->mail_from);
    pst_buf_clear(&c->forced_mech);
    pst_buf_clear(&c->sasl_authcid);
    pst_buf_clear(&c->sasl_authzid);
    pst_buf_clear(&c->sasl_password);
    pst_buf_clear(&c->sasl_service);
    pst_buf_clear(&c->sasl_host);
    pst_buf_clear(&c->line);
    pst_buf_clear(&c->reply);
    pst_buf_clear(&c->out);
    pst_buf_clear(&c->scratch);
    pst_buf_clear(&c->b64);
    pst_buf_clear(&c->pending_ir);
    pst_buf_clear(&c->rcpt_failed);
    pst_buf_clear(&c->mechs);
    pst_buf_clear(&c->greeting);
    pst_buf_clear(&c->ehlo);
    OPENSSL_clear_free(c, sizeof(*c));
}

int
pst_smtpc_feed(struct pst_smtpc *c, const uint8_t *in, size_t len)
{
    size_t i = 0;

    if (c->phase == SMTPC_CLOSED)
        return PST_ESTATE;
    while (i < len && c->phase != SMTPC_CLOSED) {
        const uint8_t *nl;
        size_t n;

        if (c->phase == SMTPC_TLS_WAIT || c->phase == SMTPC_SENDING) {
            /* RFC 3207 §4.2 / RFC 5321 §4.3.2: the server has nothing to
             * say now; bytes here are an attack or a broken server.  A
             * STARTTLS event not yet taken is withdrawn: the caller must
             * not start a handshake on a stream it can no longer trust. */
            if (c->phase == SMTPC_TLS_WAIT)
                smtpc_retract_starttls(c);
            smtpc_fail(c, PST_EPROTO, 0,
                       c->phase == SMTPC_TLS_WAIT ? SMTPC_STARTTLS
                                                  : SMTPC_DOT,
                       "unexpected data from the server");
            return 0;
        }
        nl = memchr(in + i, '\n', len - i);
        n = nl != NULL ? (size_t)(nl - (in + i)) : len - i;
        if (pst_buf_append(&c->line, in + i, n) < 0) {
            pst_buf_reset(&c->line);
            smtpc_fail(c, PST_EPROTO, 0,
                       c->expect_len > 0 ? c->expect[c->expect_head]
                                         : SMTPC_GREETING,
                       "reply line from the server too long");
            return 0;
        }
        i += n;
        if (nl == NULL)
            break;
        i++; /* the LF */
        n = c->line.len;
        if (n > 0 && c->line.data[n - 1] == '\r')
            n--;
        smtpc_reply_line(c, c->line.data != NULL ? c->line.data
                                                 : (const uint8_t *)"",
                         n);
        pst_buf_reset(&c->line);
    }
    return 0;
}

int
pst_smtpc_next_event(struct pst_smtpc *c, struct pst_smtpc_event *ev)
{
    struct smtpc_event *e;

    if (c->ev_len == 0)
        return 0;
    e = &c->events[c->ev_head];
    c->ev_head = (c->ev_head + 1) % SMTPC_MAX_EVENTS;
    c->ev_len--;
    /* Keep the text valid until the next call, whatever is queued. */
    pst_buf_reset(&c->ev_text);
    pst_buf_append(&c->ev_text, e->text.data != NULL ? e->text.data
                                                     : (const uint8_t *)"",
                   e->text.len);
    pst_buf_append(&c->ev_text, "", 0);
    *ev = e->ev;
    ev->reply = (const char *)c->ev_text.data;
    return 1;
}

void
pst_smtpc_output(const struct pst_smtpc *c, const uint8_t **p, size_t *len)
{
    *p = c->out.data != NULL ? c->out.data : (const uint8_t *)"";
    *len = c->out.len;
}

void
pst_smtpc_consume(struct pst_smtpc *c, size_t n)
{
    if (n >= c->out.len) {
        pst_buf_reset(&c->out);
        return;
    }
    memmove(c->out.data, c->out.data + n, c->out.len - n);
    c->out.len -= n;
    c->out.data[c->out.len] = '\0';
}

int
pst_smtpc_tls_started(struct pst_smtpc *c)
{
    if (c->phase != SMTPC_TLS_WAIT)
        return PST_ESTATE;
    c->phase = SMTPC_RUN;
    c->tls = 1;
    /* RFC 3207 §4.2: discard what the server said before; EHLO again. */
    c->ext = 0;
    pst_buf_reset(&c->mechs);
    pst_buf_append(&c->mechs, "", 0);
    if (smtpc_send(c, SMTPC_EHLO, NULL, "EHLO %s",
                   (const char *)c->helo.data) < 0)
        return PST_ENOMEM;
    return 0;
}

int
pst_smtpc_data(struct pst_smtpc *c, const uint8_t *in, size_t len, int last)
{
    size_t start = c->out.len;
    int at_start = c->at_line_start, last_cr = c->last_cr, rc = 0;
    char note[64];

    if (c->phase != SMTPC_SENDING)
        return PST_ESTATE;
    if (c->out.len > PST_SMTPC_MAX_OUTPUT)
        return PST_ELIMIT;
    for (size_t i = 0; i < len && rc == 0; i++) {
        uint8_t ch = in[i];

        if (ch == '\n') {
            if (last_cr) { /* CRLF split as CR | LF: CR already wrote it */
                last_cr = 0;
                continue;
            }
            rc = pst_buf_append(&c->out, "\r\n", 2);
            at_start = 1;
            continue;
        }
        if (last_cr) {
            last_cr = 0;
        }
        if (ch == '\r') {
            /* RFC 5321 §2.3.8: CR only as part of CRLF: a bare CR
             * becomes CRLF too. */
            rc = pst_buf_append(&c->out, "\r\n", 2);
            at_start = 1;
            last_cr = 1;
            continue;
        }
        /* RFC 5321 §4.5.2: transparency. */
        if (at_start && ch == '.')
            rc = pst_buf_append_byte(&c->out, '.');
        if (rc == 0)
            rc = pst_buf_append_byte(&c->out, ch);
        at_start = 0;
    }
    if (rc == 0 && last) {
        if (!at_start)
            rc = pst_buf_append(&c->out, "\r\n", 2);
        if (rc == 0)
            rc = pst_buf_append(&c->out, ".\r\n", 3);
    }
    if (rc < 0) {
        c->out.len = start;
        if (c->out.data != NULL)
            c->out.data[start] = '\0';
        return rc;
    }
    c->at_line_start = at_start;
    c->last_cr = last_cr;
    c->data_bytes += len;
    if (last) {
        snprintf(note, sizeof(note), "<message: %" PRIu64 " bytes>",
                 c->data_bytes);
        smtpc_trace(c, PST_SMTPC_TRACE_OUT, note, strlen(note));
        smtpc_trace(c, PST_SMTPC_TRACE_OUT, ".", 1);
        c->phase = SMTPC_RUN;
        c->expect[(c->expect_head + c->expect_len) % SMTPC_MAX_EXPECT] =
            SMTPC_DOT;
        c->expect_len++;
    }
    return 0;
}

unsigned
pst_smtpc_ext(const struct pst_smtpc *c)
{
    return c->ext;
}

const char *
pst_smtpc_mechs(const struct pst_smtpc *c)
{
    return c->mechs.data != NULL ? (const char *)c->mechs.data : "";
}

uint64_t
pst_smtpc_size_limit(const struct pst_smtpc *c)
{
    return c->size_limit;
}

const char *
pst_smtpc_greeting(const struct pst_smtpc *c)
{
    return c->greeting.data != NULL ? (const char *)c->greeting.data : "";
}

const char *
pst_smtpc_ehlo_reply(const struct pst_smtpc *c)
{
    return c->ehlo.data != NULL ? (const char *)c->ehlo.data : "";
}

int
pst_smtpc_tls_active(const struct pst_smtpc *c)
{
    return c->tls;
}
