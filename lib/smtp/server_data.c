/*
 * The server session's line reader and DATA: where a line ends (only CRLF
 * in DATA, against SMTP smuggling), line length limits, the end of the
 * message, dot-stuffing (RFC 5321 §4.5.2) and the refusals that come at
 * the end of the message.
 */
#include <string.h>

#include <postern/smtp.h>

#include "server_int.h"

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
int
pst__server_read_line(struct pst_smtp_server *s, enum server_line_mode mode,
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
    return pst__server_read_line(s, mode, line, len, flags);
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
        pst__server_error(s, "%s", s->data_reply);
        ev = pst__server_event(s, PST_SMTP_EV_DATA_ABORT, 0);
        ev->error = s->data_error;
        ev->reason = s->data_reason;
        ev->size = s->data_size;
        pst__server_reset_transaction(s);
        pst__server_enter_state(s, PST_SMTP_STATE_IDLE);
        return;
    }
    ev = pst__server_event(s, PST_SMTP_EV_DATA_END, 1);
    ev->size = s->data_size;
    pst__server_enter_state(s, PST_SMTP_STATE_WAIT_STORED);
}

/* A line in DATA: content or the end. */
int
pst__server_data_line(struct pst_smtp_server *s)
{
    struct pst_smtp_event *ev;
    const uint8_t *line;
    size_t len;
    unsigned flags;

    if (!pst__server_read_line(s, LINE_MODE_DATA, &line, &len, &flags))
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
    ev = pst__server_event(s, PST_SMTP_EV_DATA, 0);
    ev->data = line;
    ev->len = len + 2;
    return 1;
}

