/*
 * The SMTP client session: one message (or one probe) from greeting to
 * QUIT, sans-IO.  Each command pushes the stage whose reply it expects onto
 * a queue; each complete reply pops the head and goes to that stage's
 * handler (OpenSMTPD mta_response()), so pipelined groups (RFC 2920) need
 * no special path.
 *
 * This file holds the session's core; client_int.h says where the rest is.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/base64.h>
#include <postern/smtp_client.h>

#include "client_int.h"

static const char *const client_stage_names[] = {
#define CLIENT_STAGE_NAME_(name, text) text,
    CLIENT_STAGE_MAP(CLIENT_STAGE_NAME_)
#undef CLIENT_STAGE_NAME_
};

static const char *const client_phase_names[] = {
#define CLIENT_PHASE_NAME_(name, text) text,
    CLIENT_PHASE_MAP(CLIENT_PHASE_NAME_)
#undef CLIENT_PHASE_NAME_
};

/* --- Helpers ------------------------------------------------------------ */

void
pst__client_trace(struct pst_smtp_client *c, int dir, const char *line,
                  size_t len)
{
    if (c->trace != NULL)
        c->trace(c->trace_ctx, dir, line, len);
}

/*
 * The only way to change phase (curl smtp_state(), OpenSMTPD
 * mta_enter_state()): remembers the old one and traces "old -> new".
 */
void
pst__client_enter_phase(struct pst_smtp_client *c, enum client_phase phase)
{
    char text[64];
    int n;

    if (phase == c->phase)
        return;
    c->prev_phase = c->phase;
    c->phase = phase;
    if (!c->trace_phases)
        return;
    n = snprintf(text, sizeof(text), "%s -> %s",
                 client_phase_names[c->prev_phase], client_phase_names[phase]);
    if (n > 0)
        pst__client_trace(c, PST_SMTP_CLIENT_TRACE_PHASE, text,
                          (size_t)n < sizeof(text) ? (size_t)n
                                                   : sizeof(text) - 1);
}

int
pst__client_event(struct pst_smtp_client *c,
                  enum pst_smtp_client_event_type type, int error, int code,
                  enum client_stage stage, const char *text)
{
    struct client_event *e;

    if (c->ev_len == CLIENT_MAX_EVENTS)
        return PST_ELIMIT; /* cannot happen: at most a few per reply */
    e = &c->events[(c->ev_head + c->ev_len) % CLIENT_MAX_EVENTS];
    memset(&e->ev, 0, sizeof(e->ev));
    e->ev.type = type;
    e->ev.error = error;
    e->ev.code = code;
    e->ev.stage = client_stage_names[stage];
    e->ev.mech = c->mech != NULL ? pst_sasl_mech_name(c->mech) : NULL;
    snprintf(e->enhanced, sizeof(e->enhanced), "%s",
             code != 0 ? c->reply_enh : "");
    pst_buf_reset(&e->addr);
    pst_buf_reset(&e->text);
    if (pst_buf_append_str(&e->text, text != NULL ? text : "") < 0)
        return PST_ENOMEM;
    c->ev_len++;
    return 0;
}

struct client_event *
pst__client_last_event(struct pst_smtp_client *c)
{
    if (c->ev_len == 0)
        return NULL;
    return &c->events[(c->ev_head + c->ev_len - 1) % CLIENT_MAX_EVENTS];
}

/* Take back the STARTTLS event if it is the last one queued and was not
 * yet returned by pst_smtp_client_next_event(). */
static void
client_retract_starttls(struct pst_smtp_client *c)
{
    size_t last;

    if (c->ev_len == 0)
        return;
    last = (c->ev_head + c->ev_len - 1) % CLIENT_MAX_EVENTS;
    if (c->events[last].ev.type == PST_SMTP_CLIENT_EV_STARTTLS)
        c->ev_len--;
}

/* Queue a command line (without CRLF) and the stage of its reply. */
int
pst__client_send(struct pst_smtp_client *c, enum client_stage stage,
                 const char *trace, const char *fmt, ...)
{
    size_t start = c->out.len;
    va_list ap;
    int n, rc;
    char *p;

    if (c->expect_len == CLIENT_MAX_EXPECT)
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
        pst__client_trace(c, PST_SMTP_CLIENT_TRACE_OUT, trace, strlen(trace));
    else
        pst__client_trace(c, PST_SMTP_CLIENT_TRACE_OUT, p, (size_t)n);
    OPENSSL_clear_free(p, (size_t)n + 1);
    c->expect[(c->expect_head + c->expect_len) % CLIENT_MAX_EXPECT] = stage;
    c->expect_len++;
    return 0;
}

void
pst__client_quit(struct pst_smtp_client *c)
{
    if (pst__client_send(c, STAGE_QUIT, NULL, "QUIT") < 0) {
        pst__client_enter_phase(c, PHASE_CLOSED);
        pst__client_event(c, PST_SMTP_CLIENT_EV_CLOSE, 0, 0, STAGE_QUIT, NULL);
    }
}

void
pst__client_fail(struct pst_smtp_client *c, int error, int code,
                 enum client_stage stage, const char *text)
{
    if (c->failed)
        return;
    c->failed = 1;
    pst__client_event(c, PST_SMTP_CLIENT_EV_FAIL, error, code, stage, text);
    /* RFC 5321 §3.8: a 421 means the server is closing; so does a reply
     * we cannot parse (we no longer know where replies start). */
    if (code == 421 || error == PST_EPROTO || c->phase == PHASE_CLOSED) {
        pst__client_enter_phase(c, PHASE_CLOSED);
        pst__client_event(c, PST_SMTP_CLIENT_EV_CLOSE, 0, 0, stage, NULL);
        return;
    }
    pst__client_enter_phase(c, PHASE_ENDING);
    pst__client_quit(c);
}

/* Fail with the current reply as text. */
void
pst__client_fail_reply(struct pst_smtp_client *c, enum client_stage stage)
{
    int error = c->reply_code >= 500 ? PST_EREJECT : PST_ETEMP;

    pst__client_fail(c, error, c->reply_code, stage,
                     (const char *)c->reply.data);
}

static void
client_after_ehlo(struct pst_smtp_client *c)
{
    /* After AUTH with a security layer (RFC 4954 §4): EHLO again, then
     * straight to the mail; no STARTTLS inside the layer, no second
     * AUTH. */
    if (c->authed) {
        if (c->probe) {
            pst__client_event(c, PST_SMTP_CLIENT_EV_DONE, 0, 0, STAGE_EHLO,
                              "");
            pst__client_enter_phase(c, PHASE_ENDING);
            pst__client_quit(c);
            return;
        }
        pst__client_begin(c);
        return;
    }
    if (!c->tls && c->starttls != PST_SMTP_CLIENT_STARTTLS_NEVER &&
        !c->starttls_refused && (c->ext & PST_SMTP_CLIENT_EXT_STARTTLS)) {
        if (pst__client_send(c, STAGE_STARTTLS, NULL, "STARTTLS") < 0)
            pst__client_fail(c, PST_ENOMEM, 0, STAGE_STARTTLS, "out of memory");
        return;
    }
    if (!c->tls && c->starttls == PST_SMTP_CLIENT_STARTTLS_REQUIRED) {
        pst__client_fail(c, PST_ENOTSUP, 0, STAGE_STARTTLS,
                         "the server does not offer STARTTLS");
        return;
    }
    if (c->have_sasl) {
        pst__client_start_auth(c);
        return;
    }
    if (c->probe) {
        pst__client_event(c, PST_SMTP_CLIENT_EV_DONE, 0, 0, STAGE_EHLO, "");
        pst__client_enter_phase(c, PHASE_ENDING);
        pst__client_quit(c);
        return;
    }
    pst__client_begin(c);
}

/* A complete reply arrived for stage st. */
static void
client_dispatch(struct pst_smtp_client *c, enum client_stage st)
{
    int code = c->reply_code;
    const char *text = (const char *)c->reply.data;

    if (c->phase == PHASE_ENDING) {
        if (st == STAGE_QUIT) {
            pst__client_enter_phase(c, PHASE_CLOSED);
            pst__client_event(c, PST_SMTP_CLIENT_EV_CLOSE, 0, code, st, NULL);
        }
        return; /* replies to a pipelined group we gave up on */
    }
    switch (st) {
    case STAGE_GREETING:
        if (code != 220) {
            pst__client_fail_reply(c, st);
            return;
        }
        pst_buf_reset(&c->greeting);
        pst_buf_append_str(&c->greeting, text);
        if (pst__client_send(c, STAGE_EHLO, NULL, "EHLO %s",
                             (const char *)c->helo.data) < 0)
            pst__client_fail(c, PST_ENOMEM, 0, st, "out of memory");
        return;
    case STAGE_EHLO:
        if (code == 250) {
            if (pst__client_parse_ehlo(c) < 0) {
                pst__client_fail(c, PST_ENOMEM, 0, st, "out of memory");
                return;
            }
            pst__client_event(c, PST_SMTP_CLIENT_EV_EHLO, 0, code, st, text);
            client_after_ehlo(c);
            return;
        }
        /* RFC 5321 §3.2: a server that does not know EHLO gets HELO. */
        if (code >= 500 && code != 554) {
            if (pst__client_send(c, STAGE_HELO, NULL, "HELO %s",
                                 (const char *)c->helo.data) < 0)
                pst__client_fail(c, PST_ENOMEM, 0, st, "out of memory");
            return;
        }
        pst__client_fail_reply(c, st);
        return;
    case STAGE_HELO:
        if (code != 250) {
            pst__client_fail_reply(c, st);
            return;
        }
        c->ext = 0;
        pst_buf_reset(&c->mechs);
        pst_buf_append(&c->mechs, "", 0);
        pst__client_event(c, PST_SMTP_CLIENT_EV_EHLO, 0, code, st, text);
        client_after_ehlo(c);
        return;
    case STAGE_STARTTLS:
        if (code == 220) {
            /* RFC 3207 §4.2: nothing the server sent before the handshake
             * may be trusted; drop whatever else is buffered. */
            pst_buf_reset(&c->line);
            pst__client_enter_phase(c, PHASE_TLS_WAIT);
            pst__client_event(c, PST_SMTP_CLIENT_EV_STARTTLS, 0, code, st,
                              text);
            return;
        }
        if (c->starttls == PST_SMTP_CLIENT_STARTTLS_REQUIRED || code == 421) {
            pst__client_fail_reply(c, st);
            return;
        }
        c->starttls_refused = 1;
        client_after_ehlo(c);
        return;
    case STAGE_AUTH:
        pst__client_auth_reply(c);
        return;
    case STAGE_MAIL:
    case STAGE_RCPT:
    case STAGE_DATA:
    case STAGE_DOT:
    case STAGE_RSET:
        pst__client_mail_reply(c, st);
        return;
    case STAGE_QUIT:
        pst__client_enter_phase(c, PHASE_CLOSED);
        pst__client_event(c, PST_SMTP_CLIENT_EV_CLOSE, 0, code, st, NULL);
        return;
    case STAGE_IDLE:
        return; /* never awaited */
    }
}

/* One reply line without its line end. */
static void
client_reply_line(struct pst_smtp_client *c, const uint8_t *p, size_t len)
{
    struct pst_smtp_reply_line rl;
    int code;
    enum client_stage st;

    /* STYLE §8: validate before use (code [2-5][0-9][0-9], "-", " " or
     * the end, printable text, length): one validator for every reader
     * of replies. */
    if (pst_smtp_reply_parse_line(p, len, &rl) < 0)
        goto bad;
    code = rl.code;
    if (c->reply_lines > 0 && code != c->reply_code)
        goto bad; /* RFC 5321 §4.2.1: one code for all lines */
    if (++c->reply_lines > PST_SMTP_CLIENT_MAX_REPLY_LINES)
        goto bad;
    c->reply_code = code;
    if (c->reply_lines == 1)
        snprintf(c->reply_enh, sizeof(c->reply_enh), "%s", rl.enhanced);
    if ((c->reply.len > 0 && pst_buf_append_byte(&c->reply, '\n') < 0) ||
        pst_buf_append(&c->reply, p, len) < 0) {
        pst__client_fail(c, PST_ENOMEM, 0, STAGE_GREETING, "out of memory");
        return;
    }
    if (rl.more)
        return;
    if (c->expect_len == 0) {
        /* RFC 5321 §3.8: a server may close with 421 at any time, e.g.
         * between two messages; any other reply nobody asked for means
         * we no longer know which reply answers what. */
        if (code == 421) {
            pst__client_fail_reply(c, STAGE_IDLE);
            pst_buf_reset(&c->reply);
            c->reply_lines = 0;
            c->reply_enh[0] = '\0';
            return;
        }
        goto bad;
    }
    st = c->expect[c->expect_head];
    c->expect_head = (c->expect_head + 1) % CLIENT_MAX_EXPECT;
    c->expect_len--;
    pst__client_trace(c, PST_SMTP_CLIENT_TRACE_IN,
                      st == STAGE_AUTH && code == 334
                          ? "334 <redacted>"
                          : (const char *)c->reply.data,
                      st == STAGE_AUTH && code == 334 ? 14 : c->reply.len);
    client_dispatch(c, st);
    pst__client_check_ready(c);
    pst_buf_reset(&c->reply);
    c->reply_lines = 0;
    c->reply_enh[0] = '\0';
    return;
bad:
    pst_buf_reset(&c->reply);
    c->reply_lines = 0;
    c->reply_enh[0] = '\0';
    pst__client_fail(c, PST_EPROTO, 0,
                     c->expect_len > 0 ? c->expect[c->expect_head]
                                       : STAGE_GREETING,
                     "malformed reply from the server");
}

/* --- Public API --------------------------------------------------------- */

/* A mechanism name as RFC 4422 §3.1 allows: 1 to 20 of [A-Z0-9-_], in any
 * case; be lenient up to 64 printable octets without spaces. */
static int
client_mech_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return 1;
}

static int
copy_str(struct pst_buf *b, size_t max, int secret, const char *s)
{
    pst_buf_init(b, max, secret);
    if (s != NULL && pst_buf_append_str(b, s) < 0)
        return PST_ENOMEM;
    return pst_buf_append(b, "", 0);
}

int
pst_smtp_client_new(const struct pst_smtp_client_config *cfg,
                    struct pst_smtp_client **out)
{
    struct pst_smtp_client *c;
    int rc = PST_ENOMEM;

    *out = NULL;
    if (cfg == NULL || cfg->helo == NULL || cfg->helo[0] == '\0' ||
        !pst__client_path_ok(cfg->helo))
        return PST_EINVAL;
    if (cfg->mech != NULL &&
        pst_sasl_mech_find(cfg->mech, strlen(cfg->mech)) == NULL)
        return PST_EINVAL;
    if (cfg->mechs != NULL) {
        size_t n = 0;

        for (; cfg->mechs[n] != NULL; n++)
            if (n == PST_SMTP_CLIENT_MAX_MECHS ||
                !client_mech_name_ok(cfg->mechs[n]))
                return PST_EINVAL;
    }
    /* EXTERNAL alone may go without a user name: the certificate names
     * the user. */
    if (cfg->sasl != NULL && !cfg->tls_client_cert &&
        (cfg->sasl->authcid == NULL || cfg->sasl->authcid[0] == '\0'))
        return PST_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PST_ENOMEM;
    for (size_t i = 0; i < CLIENT_MAX_EVENTS; i++) {
        pst_buf_init(&c->events[i].text, 64 * 1024, 0);
        pst_buf_init(&c->events[i].addr, 256, 0);
    }
    pst_buf_init(&c->ev_text, 64 * 1024, 0);
    pst_buf_init(&c->ev_addr, 256, 0);
    /* The line with its CR, without its LF. */
    pst_buf_init(&c->line, PST_SMTP_CLIENT_MAX_REPLY_LINE - 1, 0);
    pst_buf_init(&c->reply,
                 PST_SMTP_CLIENT_MAX_REPLY_LINE *
                     (size_t)PST_SMTP_CLIENT_MAX_REPLY_LINES,
                 0);
    pst_buf_init(&c->out, PST_SMTP_CLIENT_MAX_OUTPUT + 64 * 1024, 1);
    pst_buf_init(&c->scratch, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&c->b64, PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE) + 1, 1);
    pst_buf_init(&c->pending_ir, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&c->rcpt_failed, 4096, 0);
    pst_buf_init(&c->mail_from, 256, 0);
    pst_buf_init(&c->pref_names, PST_SMTP_CLIENT_MAX_MECHS * 65, 0);
    pst_buf_init(&c->mechs, 4096, 0);
    pst_buf_init(&c->greeting, 4096, 0);
    pst_buf_init(&c->ehlo, 64 * 1024, 0);
    if (copy_str(&c->helo, 255, 0, cfg->helo) < 0 ||
        copy_str(&c->forced_mech, 64, 0, cfg->mech) < 0 ||
        copy_str(&c->sasl_service, 64, 0, NULL) < 0 ||
        copy_str(&c->sasl_host, 255, 0, NULL) < 0 ||
        copy_str(&c->sasl_authcid, PST_SASL_MAX_NAME, 0, NULL) < 0 ||
        copy_str(&c->sasl_authzid, PST_SASL_MAX_NAME, 0, NULL) < 0 ||
        copy_str(&c->sasl_password, PST_SASL_MAX_PASSWORD, 1, NULL) < 0 ||
        copy_str(&c->sasl_token, PST_SASL_MAX_TOKEN, 1, NULL) < 0 ||
        copy_str(&c->sasl_oauth_host, 255, 0, NULL) < 0)
        goto fail;
    /* RFC 4954 §3's AUTH keyword lists the server's names; the caller's
     * list keeps its order, less what lib/sasl does not implement (the
     * choice is by name: a mechanism added there works here). */
    if (cfg->mechs != NULL) {
        c->have_prefs = 1;
        for (size_t i = 0; cfg->mechs[i] != NULL; i++) {
            const struct pst_sasl_mech *m =
                pst_sasl_mech_find(cfg->mechs[i], strlen(cfg->mechs[i]));

            if ((i > 0 && pst_buf_append_byte(&c->pref_names, ' ') < 0) ||
                pst_buf_append_str(&c->pref_names, cfg->mechs[i]) < 0)
                goto fail;
            if (m != NULL)
                c->prefs[c->nprefs++] = m;
        }
        if (pst_buf_append(&c->pref_names, "", 0) < 0)
            goto fail;
    }
    /* The first message; with reuse there may be none yet. */
    if (!cfg->probe &&
        !(cfg->reuse && cfg->mail_from == NULL && cfg->nrcpt == 0) &&
        (rc = pst__client_set_envelope(
             c, cfg->mail_from, cfg->rcpt, cfg->nrcpt, cfg->size,
             cfg->mail_flags |
                 (cfg->body_8bit ? PST_SMTP_CLIENT_MAIL_8BITMIME : 0))) < 0)
        goto fail;
    rc = PST_ENOMEM;
    if (cfg->sasl != NULL) {
        const struct pst_sasl_client_config *s = cfg->sasl;

        c->have_sasl = 1;
        c->sasl = *s;
        if ((s->authcid != NULL &&
             pst_buf_append_str(&c->sasl_authcid, s->authcid) < 0) ||
            (s->authzid != NULL &&
             pst_buf_append_str(&c->sasl_authzid, s->authzid) < 0) ||
            pst_buf_append(&c->sasl_password, s->password,
                           s->password_len) < 0 ||
            (s->service != NULL &&
             pst_buf_append_str(&c->sasl_service, s->service) < 0) ||
            (s->host != NULL && pst_buf_append_str(&c->sasl_host,
                                                   s->host) < 0) ||
            (s->token_len > 0 && pst_buf_append(&c->sasl_token, s->token,
                                                s->token_len) < 0) ||
            (s->oauth_host != NULL &&
             pst_buf_append_str(&c->sasl_oauth_host, s->oauth_host) < 0)) {
            rc = PST_ELIMIT;
            goto fail;
        }
        c->sasl.authcid = c->sasl_authcid.len > 0
                              ? (const char *)c->sasl_authcid.data
                              : NULL;
        c->sasl.authzid = s->authzid != NULL
                              ? (const char *)c->sasl_authzid.data : NULL;
        c->sasl.password = c->sasl_password.data;
        c->sasl.password_len = c->sasl_password.len;
        c->sasl.service = s->service != NULL
                              ? (const char *)c->sasl_service.data : NULL;
        c->sasl.host = s->host != NULL ? (const char *)c->sasl_host.data
                                       : NULL;
        /* Copies, as for the password: nothing of the caller's is kept
         * (the SCRAM cache excepted: pst_sasl_client_config says it must
         * outlive the exchange).  Channel binding comes from the TLS of
         * this connection: pst_smtp_client_tls_binding(). */
        c->sasl.token = c->sasl_token.len > 0 ? c->sasl_token.data : NULL;
        c->sasl.token_len = c->sasl_token.len;
        c->sasl.oauth_host = s->oauth_host != NULL
                                 ? (const char *)c->sasl_oauth_host.data
                                 : NULL;
        c->sasl.cb_type = NULL;
        c->sasl.cb_data = NULL;
        c->sasl.cb_len = 0;
    }
    c->tls_client_cert = cfg->tls_client_cert;
    c->starttls = cfg->starttls;
    c->tls = cfg->implicit_tls ? 1 : 0;
    c->allow_plaintext_auth = cfg->allow_plaintext_auth;
    c->probe = cfg->probe;
    c->partial_rcpt = cfg->partial_rcpt;
    c->reuse = cfg->reuse && !cfg->probe;
    c->trace = cfg->trace;
    c->trace_ctx = cfg->trace_ctx;
    c->trace_phases = cfg->trace_phases && cfg->trace != NULL;
    /* The first thing to read is the greeting. */
    c->expect[0] = STAGE_GREETING;
    c->expect_len = 1;
    *out = c;
    return 0;
fail:
    pst_smtp_client_free(c);
    return rc;
}

void
pst_smtp_client_free(struct pst_smtp_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CLIENT_MAX_EVENTS; i++) {
        pst_buf_clear(&c->events[i].text);
        pst_buf_clear(&c->events[i].addr);
    }
    pst__client_clear_envelope(c);
    pst_sasl_client_free(c->sc);
    pst_sasl_layer_free(c->pending_layer);
    pst_sasl_layer_free(c->layer);
    pst_buf_clear(&c->raw);
    pst_buf_clear(&c->plain);
    pst_buf_clear(&c->wire);
    pst_buf_clear(&c->ev_text);
    pst_buf_clear(&c->ev_addr);
    pst_buf_clear(&c->helo);
    pst_buf_clear(&c->forced_mech);
    pst_buf_clear(&c->pref_names);
    pst_buf_clear(&c->sasl_authcid);
    pst_buf_clear(&c->sasl_authzid);
    pst_buf_clear(&c->sasl_password);
    pst_buf_clear(&c->sasl_service);
    pst_buf_clear(&c->sasl_host);
    pst_buf_clear(&c->sasl_token);
    pst_buf_clear(&c->sasl_oauth_host);
    pst_buf_clear(&c->line);
    pst_buf_clear(&c->reply);
    pst_buf_clear(&c->out);
    pst_buf_clear(&c->scratch);
    pst_buf_clear(&c->b64);
    pst_buf_clear(&c->pending_ir);
    pst_buf_clear(&c->mechs);
    pst_buf_clear(&c->greeting);
    pst_buf_clear(&c->ehlo);
    OPENSSL_clear_free(c, sizeof(*c));
}

int
pst_smtp_client_feed(struct pst_smtp_client *c, const uint8_t *in, size_t len)
{
    size_t used = 0;

    if (c->phase == PHASE_CLOSED)
        return PST_ESTATE;
    if (c->layer == NULL)
        used = pst__client_feed_lines(c, in, len);
    /* RFC 4954 §4: from the octet after the 235, the server's bytes are
     * protected buffers. */
    if (c->layer != NULL && used < len)
        pst__client_layer_feed(c, in + used, len - used);
    pst__client_seal(c);
    return 0;
}

size_t
pst__client_feed_lines(struct pst_smtp_client *c, const uint8_t *in,
                       size_t len)
{
    size_t i = 0;
    int had_layer = c->layer != NULL;

    while (i < len && c->phase != PHASE_CLOSED) {
        const uint8_t *nl;
        size_t n;

        if (c->phase == PHASE_TLS_WAIT || c->phase == PHASE_SENDING) {
            /* RFC 3207 §4.2 / RFC 5321 §4.3.2: the server has nothing to
             * say now; bytes here are an attack or a broken server.  A
             * STARTTLS event not yet taken is withdrawn: the caller must
             * not start a handshake on a stream it can no longer trust. */
            if (c->phase == PHASE_TLS_WAIT)
                client_retract_starttls(c);
            pst__client_fail(c, PST_EPROTO, 0,
                             c->phase == PHASE_TLS_WAIT ? STAGE_STARTTLS
                                                        : STAGE_DOT,
                             "unexpected data from the server");
            return len;
        }
        nl = memchr(in + i, '\n', len - i);
        n = nl != NULL ? (size_t)(nl - (in + i)) : len - i;
        if (pst_buf_append(&c->line, in + i, n) < 0) {
            pst_buf_reset(&c->line);
            pst__client_fail(c, PST_EPROTO, 0,
                             c->expect_len > 0 ? c->expect[c->expect_head]
                                               : STAGE_GREETING,
                             "reply line from the server too long");
            return len;
        }
        i += n;
        if (nl == NULL)
            break;
        i++; /* the LF */
        n = c->line.len;
        if (n > 0 && c->line.data[n - 1] == '\r')
            n--;
        client_reply_line(c, c->line.data != NULL ? c->line.data
                                                  : (const uint8_t *)"",
                          n);
        pst_buf_reset(&c->line);
        /* A layer began with this reply (the 235): the rest is
         * protected. */
        if (!had_layer && c->layer != NULL)
            return i;
    }
    return len;
}

int
pst_smtp_client_next_event(struct pst_smtp_client *c,
                           struct pst_smtp_client_event *ev)
{
    struct client_event *e;

    if (c->ev_len == 0)
        return 0;
    e = &c->events[c->ev_head];
    c->ev_head = (c->ev_head + 1) % CLIENT_MAX_EVENTS;
    c->ev_len--;
    /* Keep the text valid until the next call, whatever is queued. */
    pst_buf_reset(&c->ev_text);
    pst_buf_append(&c->ev_text, e->text.data != NULL ? e->text.data
                                                     : (const uint8_t *)"",
                   e->text.len);
    pst_buf_append(&c->ev_text, "", 0);
    pst_buf_reset(&c->ev_addr);
    pst_buf_append(&c->ev_addr, e->addr.data != NULL ? e->addr.data
                                                     : (const uint8_t *)"",
                   e->addr.len);
    pst_buf_append(&c->ev_addr, "", 0);
    memcpy(c->ev_enh, e->enhanced, sizeof(c->ev_enh));
    *ev = e->ev;
    ev->reply = (const char *)c->ev_text.data;
    ev->enhanced = c->ev_enh;
    ev->rcpt = e->ev.type == PST_SMTP_CLIENT_EV_RCPT
                   ? (const char *)c->ev_addr.data
                   : NULL;
    return 1;
}

void
pst_smtp_client_output(const struct pst_smtp_client *c, const uint8_t **p,
                       size_t *len)
{
    const struct pst_buf *b = c->layer != NULL ? &c->wire : &c->out;

    *p = b->data != NULL ? b->data : (const uint8_t *)"";
    *len = b->len;
}

void
pst_smtp_client_consume(struct pst_smtp_client *c, size_t n)
{
    if (c->layer != NULL) {
        if (n >= c->wire.len) {
            pst_buf_reset(&c->wire);
            return;
        }
        memmove(c->wire.data, c->wire.data + n, c->wire.len - n);
        c->wire.len -= n;
        c->wire.data[c->wire.len] = '\0';
        return;
    }
    if (n >= c->out.len) {
        pst_buf_reset(&c->out);
        return;
    }
    memmove(c->out.data, c->out.data + n, c->out.len - n);
    c->out.len -= n;
    c->out.data[c->out.len] = '\0';
}

/* RFC 5802 §7: cb-name = 1*(ALPHA / DIGIT / "." / "-"). */
static int
client_cb_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > PST_SASL_MAX_CB_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

int
pst_smtp_client_tls_binding(struct pst_smtp_client *c, const char *cb_type,
                            const uint8_t *cb_data, size_t cb_len)
{
    if (!c->tls)
        return PST_ESTATE;
    if (cb_type == NULL || cb_data == NULL || cb_len == 0 ||
        !client_cb_name_ok(cb_type))
        return PST_EINVAL;
    if (cb_len > PST_SASL_MAX_CB_DATA)
        return PST_ELIMIT;
    OPENSSL_cleanse(c->cb_data, sizeof(c->cb_data));
    memcpy(c->cb_type, cb_type, strlen(cb_type) + 1);
    memcpy(c->cb_data, cb_data, cb_len);
    c->cb_len = cb_len;
    return 0;
}

int
pst_smtp_client_tls_started(struct pst_smtp_client *c)
{
    if (c->phase != PHASE_TLS_WAIT)
        return PST_ESTATE;
    pst__client_enter_phase(c, PHASE_RUN);
    c->tls = 1;
    /* RFC 3207 §4.2: discard what the server said before; EHLO again. */
    c->ext = 0;
    pst_buf_reset(&c->mechs);
    pst_buf_append(&c->mechs, "", 0);
    if (pst__client_send(c, STAGE_EHLO, NULL, "EHLO %s",
                         (const char *)c->helo.data) < 0)
        return PST_ENOMEM;
    return 0;
}

unsigned
pst_smtp_client_ext(const struct pst_smtp_client *c)
{
    return c->ext;
}

const char *
pst_smtp_client_mechs(const struct pst_smtp_client *c)
{
    return c->mechs.data != NULL ? (const char *)c->mechs.data : "";
}

uint64_t
pst_smtp_client_size_limit(const struct pst_smtp_client *c)
{
    return c->size_limit;
}

const char *
pst_smtp_client_greeting(const struct pst_smtp_client *c)
{
    return c->greeting.data != NULL ? (const char *)c->greeting.data : "";
}

const char *
pst_smtp_client_ehlo_reply(const struct pst_smtp_client *c)
{
    return c->ehlo.data != NULL ? (const char *)c->ehlo.data : "";
}

int
pst_smtp_client_tls_active(const struct pst_smtp_client *c)
{
    return c->tls;
}
