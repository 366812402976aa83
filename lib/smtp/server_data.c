/*
 * The server session's line readers and DATA: where a line ends (only
 * CRLF in DATA, against SMTP smuggling; bare_lf = normalize), line length
 * limits (long_lines = fold), the end of the message, dot-stuffing (RFC
 * 5321 §4.5.2) and the refusals that come at the end of the message.
 */
#include <string.h>

#include <postern/smtp.h>

#include "server_int.h"

static size_t
server_line_limit(enum server_line_mode mode, const uint8_t *p,
                  size_t avail)
{
    if (mode == LINE_MODE_AUTH)
        /* RFC 4954 §4: 12288 octets is a sufficient buffer. */
        return PST_SMTP_MAX_AUTH_LINE + 2;
    /* RFC 4954 §4: an AUTH line with an initial response may pass the
     * 512 octets of RFC 5321 §4.5.3.1.4 (clients should not, some do). */
    if (avail >= 5 && pst__smtp_word_eq(p, 5, "AUTH "))
        return PST_SMTP_MAX_AUTH_LINE + 2;
    return PST_SMTP_MAX_CMD_LINE;
}

/* The line p[0..at] (at: its LF) was taken: report it and move on. */
static int
server_take_line(struct pst_smtp_server *s, uint8_t *p, size_t at,
                 unsigned extra, const uint8_t **line, size_t *len,
                 unsigned *flags)
{
    int crlf = at > 0 && p[at - 1] == '\r';

    *line = p;
    *len = crlf ? at - 1 : at;
    *flags = s->line_flags | extra | (crlf ? 0 : LINE_BARE_LF);
    if (memchr(p, '\r', *len) != NULL)
        *flags |= LINE_BARE_CR;
    s->rpos += at + 1;
    s->scan = 0;
    s->line_flags = 0;
    return 1;
}

/*
 * Take the next complete command or AUTH line from the input.  A bare LF
 * ends the line so that the client gets an error reply at once, and the
 * line is refused (RFC 5321 §2.3.8: lines end with CRLF).  A line longer
 * than its limit is dropped up to its end and reported as LINE_TOO_LONG,
 * without text: it is never split into two.  Decisions depend on the
 * bytes only, never on how they were split between feed() calls.
 */
int
pst__server_read_line(struct pst_smtp_server *s, enum server_line_mode mode,
                      const uint8_t **line, size_t *len, unsigned *flags)
{
    size_t avail = s->in.len - s->rpos, limit, n;
    const uint8_t *q;
    uint8_t *p;

    /* Nothing buffered (the buffer may not even exist): no line, and
     * nothing to scan or discard. */
    if (avail == 0)
        return 0;
    p = s->in.data + s->rpos;
    if (s->discard) {
        q = memchr(p, '\n', avail);
        if (q == NULL) {
            s->rpos = s->in.len;
            return 0;
        }
        s->rpos += (size_t)(q - p) + 1;
        s->discard = 0;
        *line = p;
        *len = 0;
        *flags = LINE_TOO_LONG;
        return 1;
    }
    limit = server_line_limit(mode, p, avail);
    n = avail < limit ? avail : limit;
    q = s->scan < n ? memchr(p + s->scan, '\n', n - s->scan) : NULL;
    if (q != NULL)
        return server_take_line(s, p, (size_t)(q - p), 0, line, len, flags);
    s->scan = n;
    if (avail < limit)
        return 0;
    /* No end within the limit: drop the line through its end. */
    s->discard = 1;
    s->scan = 0;
    return pst__server_read_line(s, mode, line, len, flags);
}

/* --- DATA ---------------------------------------------------------------- */

/*
 * The end of a DATA line at p[0..n): the index of the LF that ends it, or
 * -1.  Strict (bare_lf = reject): only CRLF ends a line, a bare LF is text
 * reported in line_flags, so that "\n.\r\n" or "\n.\n" can never end a
 * message (RFC 5321 §2.3.8, CVE-2023-51764).  normalize: any LF.
 */
static long
server_data_eol(struct pst_smtp_server *s, const uint8_t *p, size_t n)
{
    int normalize = s->cfg.bare_lf == PST_SMTP_BARE_LF_NORMALIZE;
    size_t i = s->scan;

    while (i < n) {
        const uint8_t *q = memchr(p + i, '\n', n - i);
        size_t at;

        if (q == NULL)
            break;
        at = (size_t)(q - p);
        if (normalize || (at > 0 && p[at - 1] == '\r'))
            return (long)at;
        s->line_flags |= LINE_BARE_LF;
        i = at + 1;
    }
    s->scan = n;
    return -1;
}

/* Pass on the first PST_SMTP_FOLD_AT octets of a line that goes on. */
static int
server_data_piece(struct pst_smtp_server *s, uint8_t *p,
                  const uint8_t **line, size_t *len, unsigned *flags)
{
    *line = p;
    *len = PST_SMTP_FOLD_AT;
    *flags = LINE_FOLDED | (s->fold_len > 0 ? LINE_CONT : 0) |
             (memchr(p, '\n', *len) != NULL ? LINE_BARE_LF : 0) |
             (memchr(p, '\r', *len) != NULL ? LINE_BARE_CR : 0);
    s->fold_len += PST_SMTP_FOLD_AT;
    s->rpos += PST_SMTP_FOLD_AT;
    s->scan = 0;
    s->line_flags = 0;
    return 1;
}

/*
 * Take the next DATA line, or piece of one, from the input.  RFC 5321
 * §4.5.3.1.6: a text line is 1000 octets with its CRLF (with bare_lf =
 * normalize, its normalized CRLF).  A longer one is dropped through its
 * end and reported as LINE_TOO_LONG, or with long_lines = fold passed on
 * in pieces of PST_SMTP_FOLD_AT octets (LINE_FOLDED; LINE_CONT after the
 * first) up to PST_SMTP_MAX_FOLD_LINE octets.  Decisions depend on the
 * bytes only, never on how they were split between feed() calls.
 */
static int
server_data_read(struct pst_smtp_server *s, const uint8_t **line,
                 size_t *len, unsigned *flags)
{
    int normalize = s->cfg.bare_lf == PST_SMTP_BARE_LF_NORMALIZE;
    int fold = s->cfg.long_lines == PST_SMTP_LONG_LINES_FOLD;
    size_t avail = s->in.len - s->rpos, n, clen;
    uint8_t *p;
    long at;

    if (avail == 0)
        return 0;
    p = s->in.data + s->rpos;
    if (s->discard) {
        /* Through the line's end, as the strict or normalizing reader
         * would find it; a CR may have ended the last chunk dropped. */
        for (size_t i = 0; i < avail; i++) {
            if (p[i] != '\n')
                continue;
            if (!normalize && !(i > 0 ? p[i - 1] == '\r' : s->discard_cr))
                continue;
            s->discard_bare_lf = !(i > 0 ? p[i - 1] == '\r'
                                         : s->discard_cr);
            s->rpos += i + 1;
            s->discard = 0;
            s->discard_cr = 0;
            s->fold_len = 0;
            *line = p;
            *len = 0;
            *flags = LINE_TOO_LONG |
                     (s->discard_bare_lf ? LINE_BARE_LF : 0);
            return 1;
        }
        s->discard_cr = p[avail - 1] == '\r';
        s->rpos = s->in.len;
        return 0;
    }
    n = avail < PST_SMTP_MAX_TEXT_LINE ? avail : PST_SMTP_MAX_TEXT_LINE;
    at = server_data_eol(s, p, n);
    if (at >= 0) {
        clen = (at > 0 && p[at - 1] == '\r') ? (size_t)at - 1 : (size_t)at;
        /* A bare LF as the 1000th octet: 999 octets and CRLF, too long
         * once normalized. */
        if (clen + 2 <= PST_SMTP_MAX_TEXT_LINE &&
            s->fold_len + clen <= PST_SMTP_MAX_FOLD_LINE) {
            unsigned cont = s->fold_len > 0 ? LINE_CONT : 0;

            s->fold_len = 0;
            return server_take_line(s, p, (size_t)at, cont, line, len,
                                    flags);
        }
    } else if (avail < PST_SMTP_MAX_TEXT_LINE) {
        return 0;
    }
    /* Too long.  RFC 5322 §2.1.1: 998 octets; fold there, unless the
     * line passes the cap. */
    if (fold && s->fold_len + PST_SMTP_FOLD_AT < PST_SMTP_MAX_FOLD_LINE)
        return server_data_piece(s, p, line, len, flags);
    s->discard = 1;
    s->discard_cr = 0;
    s->scan = 0;
    s->line_flags = 0;
    return server_data_read(s, line, len, flags);
}

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

    /* The copy of the last normalized or folded line goes (releasing
     * memory cannot fail). */
    pst_buf_reset(&s->data_line);
    (void)pst_buf_shrink(&s->data_line, 0);
    s->data_prev_bare_lf = 0;
    s->fold_len = 0;
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
    int normalize = s->cfg.bare_lf == PST_SMTP_BARE_LF_NORMALIZE;
    struct pst_smtp_event *ev;
    const uint8_t *line;
    size_t len;
    unsigned flags;
    int prev_bare_lf = s->data_prev_bare_lf, bare_lf_end;

    if (!server_data_read(s, &line, &len, &flags))
        return 0;
    /* normalize: whether this line ended in a bare LF (a piece of a
     * folded line has not ended). */
    bare_lf_end = normalize && (flags & LINE_BARE_LF) &&
                  !(flags & LINE_FOLDED);
    if (!(flags & LINE_FOLDED))
        s->data_prev_bare_lf = bare_lf_end;
    if (bare_lf_end)
        s->compat_used |= PST_SMTP_COMPAT_BARE_LF;
    if (flags & LINE_TOO_LONG) {
        /* RFC 5321 §4.5.3.1.6: 1000 octets.  Splitting the line would
         * change the message; the whole message is refused instead. */
        server_data_fail(s, PST_ELIMIT, "line too long",
                         "500 5.5.6 Error: message line too long");
        return 1;
    }
    if (flags & LINE_FOLDED)
        s->compat_used |= PST_SMTP_COMPAT_LONG_LINES;
    if (!(flags & (LINE_CONT | LINE_FOLDED)) && len == 1 && line[0] == '.') {
        /* RFC 5321 §4.1.1.4: CRLF "." CRLF ends the data; the first
         * CRLF is the end of the last line (or of the DATA command).
         * normalize: only that exact sequence on the wire does, as
         * Postfix's smtpd_forbid_bare_newline = normalize requires; a "."
         * line with a bare LF before or after it ("\n.\n", "\n.\r\n",
         * "\r\n.\n") would end the message on the normalized stream
         * only, which is how SMTP smuggling (CVE-2023-51764) hides a
         * second message: it is dropped, neither content nor the end. */
        if (!bare_lf_end && !prev_bare_lf) {
            server_data_end(s);
            return 1;
        }
        return 1;
    }
    /* RFC 5321 §2.3.8 and CVE-2023-51764: a bare CR, or a bare LF that
     * is not normalized, is refused, so no other server can read a
     * second message in this one. */
    if ((flags & LINE_BARE_CR) || ((flags & LINE_BARE_LF) && !normalize))
        server_data_fail(s, PST_EPROTO, "bare CR or LF",
                         "550 5.6.0 Error: bare <CR> or <LF> in message");
    /* RFC 5321 §4.5.2: a leading "." was doubled by the client (at the
     * start of a line; not of a piece of one). */
    if (!(flags & LINE_CONT) && len > 0 && line[0] == '.') {
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
    if (flags & (LINE_BARE_LF | LINE_FOLDED)) {
        /* The input has no CRLF after this line: pass on a copy with
         * one (RFC 5322 §2.3: lines end with CRLF). */
        pst_buf_reset(&s->data_line);
        if (pst_buf_append(&s->data_line, line, len) < 0 ||
            pst_buf_append(&s->data_line, "\r\n", 2) < 0) {
            s->broken = PST_ENOMEM;
            return 1;
        }
        line = s->data_line.data;
    }
    ev->data = line;
    ev->len = len + 2;
    return 1;
}
