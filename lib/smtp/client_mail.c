/*
 * The client session's mail transaction (RFC 5321 §3.3): MAIL FROM with
 * its parameters, the RCPTs (pipelined in a window, RFC 2920), DATA, the
 * message with dot-stuffing (RFC 5321 §4.5.2) and the final reply.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <postern/smtp_client.h>

#include "client_int.h"

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
    while (c->rcpt_next < c->nrcpt && !c->failed &&
           c->rcpt_next - c->rcpt_replied < CLIENT_RCPT_WINDOW)
        client_send_rcpt(c);
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

        pst__client_fail(c, err, c->rcpt_failed_code, STAGE_RCPT,
                         (const char *)c->rcpt_failed.data);
        if ((e = pst__client_last_event(c)) != NULL &&
            e->ev.type == PST_SMTP_CLIENT_EV_FAIL)
            snprintf(e->enhanced, sizeof(e->enhanced), "%s",
                     c->rcpt_failed_enh);
        return;
    }
    if (pst__client_send(c, STAGE_DATA, NULL, "DATA") < 0)
        pst__client_fail(c, PST_ENOMEM, 0, STAGE_RCPT, "out of memory");
}

void
pst__client_start_mail(struct pst_smtp_client *c)
{
    char params[64] = "";
    size_t n = 0;
    int rc;

    /* RFC 1870 §6: declare the size when the server takes SIZE. */
    if ((c->ext & PST_SMTP_CLIENT_EXT_SIZE) && c->size > 0)
        n += (size_t)snprintf(params + n, sizeof(params) - n,
                              " SIZE=%" PRIu64, c->size);
    if ((c->ext & PST_SMTP_CLIENT_EXT_8BITMIME) && c->body_8bit)
        snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
    rc = pst__client_send(c, STAGE_MAIL, NULL, "MAIL FROM:<%s>%s",
                          (const char *)c->mail_from.data, params);
    if (rc < 0) {
        pst__client_fail(c, rc, 0, STAGE_MAIL, pst_strerror(rc));
        return;
    }
    /* RFC 2920 §3.1: MAIL and RCPT may be pipelined.  DATA waits for the
     * RCPT replies, so a refused recipient never leaves a half-open DATA
     * to be closed with an empty message. */
    if (c->ext & PST_SMTP_CLIENT_EXT_PIPELINING)
        client_fill_rcpts(c);
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
    if (c->out.len > PST_SMTP_CLIENT_MAX_OUTPUT)
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
    return 0;
}

/* A reply to MAIL, RCPT, DATA or the final dot. */
void
pst__client_mail_reply(struct pst_smtp_client *c, enum client_stage st)
{
    int code = c->reply_code;
    const char *text = (const char *)c->reply.data;

    switch (st) {
    case STAGE_MAIL:
        if (code != 250) {
            pst__client_fail_reply(c, st);
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
            pst__client_fail_reply(c, st);
            return;
        }
        pst__client_enter_phase(c, PHASE_SENDING);
        c->at_line_start = 1;
        c->last_cr = 0;
        pst__client_event(c, PST_SMTP_CLIENT_EV_DATA, 0, code, st, text);
        return;
    case STAGE_DOT:
        if (code != 250) {
            pst__client_fail_reply(c, st);
            return;
        }
        pst__client_event(c, PST_SMTP_CLIENT_EV_DONE, 0, code, st, text);
        pst__client_enter_phase(c, PHASE_ENDING);
        pst__client_quit(c);
        return;
    default:
        return;
    }
}
