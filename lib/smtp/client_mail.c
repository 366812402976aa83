/*
 * The client session's mail transactions (RFC 5321 §3.3): the envelope,
 * MAIL FROM with its parameters, the RCPTs (pipelined in a window, RFC
 * 2920), DATA, the message with dot-stuffing (RFC 5321 §4.5.2), the final
 * reply, and with reuse the next message (RSET after a failed one, RFC
 * 5321 §4.1.1.5).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/smtp_client.h>

#include "client_int.h"
#include "smtp_int.h"

/* --- The envelope -------------------------------------------------------- */

int
pst__client_path_ok(const char *s)
{
    /* An EHLO argument: no controls, no <>, no spaces. */
    if (s == NULL || strlen(s) > 256)
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || *s == '<' || *s == '>' ||
            *s == 0x7f)
            return 0;
    return 1;
}

int
pst_smtp_client_check_mailbox(const char *addr, unsigned flags)
{
    struct pst_buf out;
    size_t len, used = 0;
    int rc;

    if (addr == NULL)
        return PST_EINVAL;
    len = strlen(addr);
    if (len == 0 || len > PST_SMTP_MAX_PATH)
        return len == 0 ? PST_EINVAL : PST_ELIMIT;
    /* A bracket would be read as the path's own. */
    if (addr[0] == '<')
        return PST_EINVAL;
    /* The server's own parser: the client sends nothing libpostern's
     * server would refuse as a syntax error. */
    pst_buf_init(&out, PST_SMTP_MAX_PATH + 1, 0);
    rc = pst__smtp_parse_path(
        (const uint8_t *)addr, len,
        ((flags & PST_SMTP_CLIENT_MAIL_SMTPUTF8) ? PST__PATH_UTF8 : 0) |
            ((flags & PST_SMTP_CLIENT_PATH_LOCAL) ? PST__PATH_LOCAL_OK : 0),
        &used, &out);
    pst_buf_clear(&out);
    if (rc == PST_ENOMEM || rc == PST_ELIMIT)
        return rc;
    return rc == 0 && used == len ? 0 : PST_EINVAL;
}

static void
client_free_rcpts(struct pst_smtp_client *c)
{
    if (c->rcpt != NULL) {
        for (size_t i = 0; i < c->nrcpt; i++)
            free(c->rcpt[i]);
        free(c->rcpt);
    }
    c->rcpt = NULL;
    c->nrcpt = 0;
}

int
pst__client_set_envelope(struct pst_smtp_client *c, const char *mail_from,
                         const char *const *rcpt, size_t nrcpt,
                         uint64_t size, unsigned flags)
{
    char **copy;
    int rc;

    if (mail_from == NULL || rcpt == NULL || nrcpt == 0 ||
        nrcpt > CLIENT_MAX_RCPT)
        return PST_EINVAL;
    /* RFC 5321 §4.1.1.2: Reverse-path = Path / "<>".  A local part
     * alone passes too: "Postmaster" (§4.1.1.3), and sendmail's "root". */
    flags |= PST_SMTP_CLIENT_PATH_LOCAL;
    if (mail_from[0] != '\0' &&
        (rc = pst_smtp_client_check_mailbox(mail_from, flags)) < 0)
        return rc == PST_ENOMEM ? rc : PST_EINVAL;
    for (size_t i = 0; i < nrcpt; i++)
        if ((rc = pst_smtp_client_check_mailbox(rcpt[i], flags)) < 0)
            return rc == PST_ENOMEM ? rc : PST_EINVAL;
    copy = calloc(nrcpt, sizeof(*copy));
    if (copy == NULL)
        return PST_ENOMEM;
    for (size_t i = 0; i < nrcpt; i++) {
        copy[i] = strdup(rcpt[i]);
        if (copy[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(copy[j]);
            free(copy);
            return PST_ENOMEM;
        }
    }
    pst_buf_reset(&c->mail_from);
    if (pst_buf_append_str(&c->mail_from, mail_from) < 0 ||
        pst_buf_append(&c->mail_from, "", 0) < 0) {
        for (size_t i = 0; i < nrcpt; i++)
            free(copy[i]);
        free(copy);
        return PST_ENOMEM;
    }
    client_free_rcpts(c);
    c->rcpt = copy;
    c->nrcpt = nrcpt;
    c->size = size;
    c->mail_flags = flags & ~PST_SMTP_CLIENT_PATH_LOCAL;
    /* Nothing of the message before. */
    c->mail_sent = 0;
    c->msg_over = 0;
    c->rcpt_next = 0;
    c->rcpt_replied = 0;
    c->rcpt_ok = 0;
    c->rcpt_failed_code = 0;
    c->rcpt_failed_enh[0] = '\0';
    pst_buf_reset(&c->rcpt_failed);
    c->at_line_start = 1;
    c->last_cr = 0;
    c->data_bytes = 0;
    return 0;
}

void
pst__client_clear_envelope(struct pst_smtp_client *c)
{
    client_free_rcpts(c);
    pst_buf_clear(&c->mail_from);
    pst_buf_clear(&c->rcpt_failed);
}

/* --- The end of a message ------------------------------------------------ */

/*
 * With reuse: once the message is over and every reply its pipelined
 * commands asked for is in, wait for the caller.
 */
void
pst__client_check_ready(struct pst_smtp_client *c)
{
    if (!c->reuse || !c->msg_over || c->failed || c->expect_len > 0 ||
        c->phase != PHASE_RUN)
        return;
    pst__client_enter_phase(c, PHASE_IDLE);
    pst__client_event(c, PST_SMTP_CLIENT_EV_READY, 0, 0, STAGE_DOT, NULL);
}

/*
 * The message failed, not the session.  Without reuse the session ends
 * as it always did (FAIL, QUIT); with reuse the connection stays, unless
 * the server is closing it (RFC 5321 §3.8: 421) or we lost track of it.
 */
void
pst__client_msg_fail(struct pst_smtp_client *c, int error, int code,
                     enum client_stage stage, const char *text)
{
    if (!c->reuse || code == 421 || error == PST_EPROTO ||
        error == PST_ENOMEM) {
        pst__client_fail(c, error, code, stage, text);
        return;
    }
    if (c->msg_over || c->failed)
        return;
    c->msg_over = 1;
    /* A message refused before MAIL leaves an earlier RSET owed. */
    c->need_rset |= c->mail_sent;
    pst__client_event(c, PST_SMTP_CLIENT_EV_FAIL, error, code, stage, text);
    pst__client_check_ready(c);
}

/* The message failed with the current reply (4xx: PST_ETEMP, else
 * PST_EREJECT). */
static void
client_msg_fail_reply(struct pst_smtp_client *c, enum client_stage stage)
{
    int error = c->reply_code >= 500 ? PST_EREJECT : PST_ETEMP;

    pst__client_msg_fail(c, error, c->reply_code, stage,
                         (const char *)c->reply.data);
}

/* --- Commands ------------------------------------------------------------ */

static void
client_send_rcpt(struct pst_smtp_client *c)
{
    size_t i = c->rcpt_next++;

    if (pst__client_send(c, STAGE_RCPT, NULL, "RCPT TO:<%s>", c->rcpt[i]) < 0)
        pst__client_fail(c, PST_ENOMEM, 0, STAGE_RCPT, "out of memory");
}

/* RFC 2920 §3.1: pipelined RCPTs, no more awaiting replies at once than
 * the reply queue holds; each reply makes room for the next. */
static void
client_fill_rcpts(struct pst_smtp_client *c)
{
    while (c->rcpt_next < c->nrcpt && !c->failed && !c->msg_over &&
           c->rcpt_next - c->rcpt_replied < CLIENT_RCPT_WINDOW)
        client_send_rcpt(c);
}

/*
 * Whether the server can take the message at all; if not, fail it.
 * RFC 6531 §3.4: SMTPUTF8 only to a server that offers it; the message
 * cannot be made 7-bit here (no downgrade).
 */
static int
client_mail_possible(struct pst_smtp_client *c)
{
    if ((c->mail_flags & PST_SMTP_CLIENT_MAIL_SMTPUTF8) &&
        !(c->ext & PST_SMTP_CLIENT_EXT_SMTPUTF8)) {
        pst__client_msg_fail(c, PST_ENOTSUP, 0, STAGE_MAIL,
                             "the message needs SMTPUTF8 (RFC 6531), "
                             "which the server does not offer");
        return 0;
    }
    return 1;
}

static void
client_start_mail(struct pst_smtp_client *c)
{
    char params[96] = "";
    size_t n = 0;
    int rc;

    if (!client_mail_possible(c))
        return;
    /* RFC 1870 §6: declare the size when the server takes SIZE. */
    if ((c->ext & PST_SMTP_CLIENT_EXT_SIZE) && c->size > 0)
        n += (size_t)snprintf(params + n, sizeof(params) - n,
                              " SIZE=%" PRIu64, c->size);
    /* RFC 6152 §3: BODY=8BITMIME only to a server that offers it. */
    if ((c->ext & PST_SMTP_CLIENT_EXT_8BITMIME) &&
        (c->mail_flags & PST_SMTP_CLIENT_MAIL_8BITMIME))
        n += (size_t)snprintf(params + n, sizeof(params) - n,
                              " BODY=8BITMIME");
    if (c->mail_flags & PST_SMTP_CLIENT_MAIL_SMTPUTF8)
        n += (size_t)snprintf(params + n, sizeof(params) - n, " SMTPUTF8");
    /* RFC 4954 §5: "AUTH=<>" says the submitter is not known; an ESMTP
     * parameter, only for a server that offers AUTH. */
    if ((c->ext & PST_SMTP_CLIENT_EXT_AUTH) &&
        (c->mail_flags & PST_SMTP_CLIENT_MAIL_AUTH_NULL))
        n += (size_t)snprintf(params + n, sizeof(params) - n, " AUTH=<>");
    rc = pst__client_send(c, STAGE_MAIL, NULL, "MAIL FROM:<%s>%s",
                          (const char *)c->mail_from.data, params);
    if (rc < 0) {
        pst__client_fail(c, rc, 0, STAGE_MAIL, pst_strerror(rc));
        return;
    }
    c->mail_sent = 1;
    /* RFC 2920 §3.1: MAIL and RCPT may be pipelined.  DATA waits for the
     * RCPT replies, so a refused recipient never leaves a half-open DATA
     * to be closed with an empty message. */
    if (c->ext & PST_SMTP_CLIENT_EXT_PIPELINING)
        client_fill_rcpts(c);
}

void
pst__client_begin(struct pst_smtp_client *c)
{
    /* reuse without a first message: straight to the caller. */
    if (c->nrcpt == 0) {
        c->msg_over = 1;
        pst__client_check_ready(c);
        return;
    }
    client_start_mail(c);
}

/* The reply to the next RCPT awaited. */
static void
client_rcpt_reply(struct pst_smtp_client *c)
{
    size_t i = c->rcpt_replied++;
    int code = c->reply_code;
    const char *text = (const char *)c->reply.data;
    struct client_event *e;

    /* RFC 5321 §4.2.5: 250 and 251 accept the recipient (251: it will be
     * forwarded); everything else refuses it. */
    if (code == 250 || code == 251) {
        c->rcpt_ok++;
    } else {
        if (code == 421) {
            /* RFC 5321 §3.8: the server is closing. */
            pst__client_fail_reply(c, STAGE_RCPT);
            return;
        }
        if (c->rcpt_failed.len == 0) {
            c->rcpt_failed_code = code;
            snprintf(c->rcpt_failed_enh, sizeof(c->rcpt_failed_enh), "%s",
                     c->reply_enh);
            pst_buf_printf(&c->rcpt_failed, "<%s>: %s", c->rcpt[i], text);
        }
    }
    if (c->partial_rcpt) {
        if (pst__client_event(c, PST_SMTP_CLIENT_EV_RCPT, 0, code,
                              STAGE_RCPT, text) < 0 ||
            (e = pst__client_last_event(c)) == NULL ||
            pst_buf_append_str(&e->addr, c->rcpt[i]) < 0) {
            pst__client_fail(c, PST_ENOMEM, 0, STAGE_RCPT, "out of memory");
            return;
        }
        e->ev.rcpt_index = i;
    }
    if (c->rcpt_replied < c->nrcpt) {
        if (!(c->ext & PST_SMTP_CLIENT_EXT_PIPELINING))
            client_send_rcpt(c);
        else
            client_fill_rcpts(c);
        return;
    }
    /* Every reply is in.  RFC 5321 §3.3: the message goes to the
     * recipients accepted; with none, DATA would get 554 (or 503).
     * Without partial_rcpt, one refusal fails the whole message, as a
     * submission client (postern send) wants. */
    if (c->rcpt_ok == 0 || (!c->partial_rcpt && c->rcpt_ok < c->nrcpt)) {
        int err = c->rcpt_failed_code >= 500 ? PST_EREJECT : PST_ETEMP;

        /* The event carries the enhanced code of the refusal it names,
         * not of the last reply. */
        snprintf(c->reply_enh, sizeof(c->reply_enh), "%s",
                 c->rcpt_failed_enh);
        pst__client_msg_fail(c, err, c->rcpt_failed_code, STAGE_RCPT,
                             (const char *)c->rcpt_failed.data);
        return;
    }
    if (pst__client_send(c, STAGE_DATA, NULL, "DATA") < 0)
        pst__client_fail(c, PST_ENOMEM, 0, STAGE_RCPT, "out of memory");
}

int
pst_smtp_client_data(struct pst_smtp_client *c, const uint8_t *in, size_t len,
                     int last)
{
    size_t start = c->out.len;
    int at_start = c->at_line_start, last_cr = c->last_cr, rc = 0;
    char note[64];

    if (c->phase != PHASE_SENDING)
        return PST_ESTATE;
    if (pst__client_pending(c) > PST_SMTP_CLIENT_MAX_OUTPUT)
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
        pst__client_trace(c, PST_SMTP_CLIENT_TRACE_OUT, note, strlen(note));
        pst__client_trace(c, PST_SMTP_CLIENT_TRACE_OUT, ".", 1);
        pst__client_enter_phase(c, PHASE_RUN);
        c->expect[(c->expect_head + c->expect_len) % CLIENT_MAX_EXPECT] =
            STAGE_DOT;
        c->expect_len++;
    }
    pst__client_seal(c);
    return 0;
}

/* A reply to MAIL, RCPT, DATA, the final dot or RSET. */
void
pst__client_mail_reply(struct pst_smtp_client *c, enum client_stage st)
{
    int code = c->reply_code;
    const char *text = (const char *)c->reply.data;

    if (c->msg_over && st != STAGE_RSET) {
        /* The rest of a pipelined group of a message that failed: only
         * a server closing matters (RFC 5321 §3.8). */
        if (code == 421)
            pst__client_fail_reply(c, st);
        return;
    }
    switch (st) {
    case STAGE_MAIL:
        if (code != 250) {
            client_msg_fail_reply(c, st);
            return;
        }
        if (!(c->ext & PST_SMTP_CLIENT_EXT_PIPELINING))
            client_send_rcpt(c);
        return;
    case STAGE_RCPT:
        client_rcpt_reply(c);
        return;
    case STAGE_DATA:
        if (code != 354) {
            client_msg_fail_reply(c, st);
            return;
        }
        pst__client_enter_phase(c, PHASE_SENDING);
        c->at_line_start = 1;
        c->last_cr = 0;
        pst__client_event(c, PST_SMTP_CLIENT_EV_DATA, 0, code, st, text);
        return;
    case STAGE_DOT:
        if (code != 250) {
            client_msg_fail_reply(c, st);
            return;
        }
        pst__client_event(c, PST_SMTP_CLIENT_EV_DONE, 0, code, st, text);
        if (c->reuse) {
            c->msg_over = 1;
            c->need_rset = 0;
            pst__client_check_ready(c);
            return;
        }
        pst__client_enter_phase(c, PHASE_ENDING);
        pst__client_quit(c);
        return;
    case STAGE_RSET:
        /* RFC 5321 §4.1.1.5: RSET "MUST" get 250; a server that refuses
         * it cannot be trusted with the next transaction. */
        if (code != 250) {
            pst__client_fail_reply(c, st);
            return;
        }
        client_start_mail(c);
        return;
    default:
        return;
    }
}

/* --- The next message ---------------------------------------------------- */

int
pst_smtp_client_next_message(struct pst_smtp_client *c,
                             const char *mail_from, const char *const *rcpt,
                             size_t nrcpt, uint64_t size, unsigned flags)
{
    int rc;

    if (c->phase != PHASE_IDLE)
        return PST_ESTATE;
    if ((rc = pst__client_set_envelope(c, mail_from, rcpt, nrcpt, size,
                                       flags)) < 0)
        return rc;
    pst__client_enter_phase(c, PHASE_RUN);
    if (!client_mail_possible(c)) {
        pst__client_seal(c);
        return 0;
    }
    if (c->need_rset) {
        c->need_rset = 0;
        if (pst__client_send(c, STAGE_RSET, NULL, "RSET") < 0)
            pst__client_fail(c, PST_ENOMEM, 0, STAGE_RSET, "out of memory");
        pst__client_seal(c);
        return 0;
    }
    client_start_mail(c);
    pst__client_seal(c);
    return 0;
}

int
pst_smtp_client_quit(struct pst_smtp_client *c)
{
    if (c->phase != PHASE_IDLE)
        return PST_ESTATE;
    pst__client_enter_phase(c, PHASE_ENDING);
    pst__client_quit(c);
    pst__client_seal(c);
    return 0;
}
