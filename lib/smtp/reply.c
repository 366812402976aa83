/*
 * SMTP reply lines: the replies of SASL failures, checks on reply lines
 * and names the driver hands in, transcript redaction, and the reply-line
 * validator of clients (pst_smtp_reply_parse_line()).
 */
#include <string.h>

#include <postern/smtp_reply.h>

#include "smtp_int.h"

/*
 * Every way a SASL exchange can fail, and the reply it gets.  RFC 4954 §4
 * and §6 give the codes; RFC 3463 the enhanced ones.
 */
static const struct {
    int err;
    const char *reply;
} auth_replies[] = {
    /* §6: "535 5.7.8 Authentication credentials invalid": wrong password,
     * unknown user (the same reply, DESIGN.md), no usable verifier, and
     * (§4) an identity that fails SASLprep. */
    {PST_EAUTH, "535 5.7.8 Authentication credentials invalid"},
    {PST_EPREP, "535 5.7.8 Authentication credentials invalid"},
    /* §4: a malformed client response ends the exchange with 501. */
    {PST_EPROTO, "501 5.5.2 Malformed authentication response"},
    /* §4: "*" cancels; 501 (5.7.0 as Postfix and aiosmtpd send). */
    {PST_ECANCEL, "501 5.7.0 Authentication cancelled"},
    /* §4: a line or message longer than the server's buffer. */
    {PST_ELIMIT, "500 5.5.6 Authentication Exchange line is too long"},
    /* §6: "534 5.7.9 Authentication mechanism is too weak". */
    {PST_EWEAK, "534 5.7.9 Authentication mechanism is too weak"},
    /* §6: "454 4.7.0 Temporary authentication failure": the user store
     * or the random source failed, or we ran out of memory. */
    {PST_ETEMP, "454 4.7.0 Temporary authentication failure"},
};

const char *
pst__smtp_auth_reply(int err)
{
    for (size_t i = 0; i < PST__ARRAY_LEN(auth_replies); i++)
        if (auth_replies[i].err == err)
            return auth_replies[i].reply;
    /* Anything else (PST_ENOMEM, PST_ESTATE: our side) is temporary. */
    return "454 4.7.0 Temporary authentication failure";
}

int
pst__smtp_reply_ok(const char *reply, char cls)
{
    size_t len;

    if (reply == NULL)
        return 0;
    len = strlen(reply);
    /* RFC 5321 §4.2: Reply-code SP textstring, one line. */
    if (len < 4 || len > PST__SMTP_MAX_REPLY || reply[0] != cls ||
        reply[1] < '0' || reply[1] > '5' || reply[2] < '0' ||
        reply[2] > '9' || reply[3] != ' ')
        return 0;
    for (size_t i = 4; i < len; i++)
        if (reply[i] < 0x20 || reply[i] > 0x7e)
            return 0;
    return 1;
}

int
pst__smtp_printable(const char *s, size_t max, int nospace)
{
    size_t len;

    if (s == NULL)
        return 0;
    len = strlen(s);
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || (nospace && s[i] == ' '))
            return 0;
    return 1;
}

/* Append p[0..len) with every byte outside printable ASCII as "?"
 * (Postfix printable()). */
static int
reply_append_printable(struct pst_buf *out, const uint8_t *p, size_t len)
{
    int rc;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = (p[i] >= 0x20 && p[i] <= 0x7e) ? p[i] : '?';

        if ((rc = pst_buf_append_byte(out, c)) < 0)
            return rc;
    }
    return 0;
}

int
pst_smtp_redact(const uint8_t *line, size_t len, int auth_continuation,
                struct pst_buf *out)
{
    size_t verb, i;
    int rc;

    /* DESIGN.md "Secrets": continuation lines carry the SASL exchange
     * (a PLAIN or LOGIN password in base64); AUTH's initial response
     * too.  Only the verb and the mechanism stay (OpenSMTPD
     * smtp_command()). */
    if (auth_continuation)
        return pst_buf_append_str(out, "********");
    for (verb = 0; verb < len && line[verb] != ' '; verb++)
        ;
    if (!pst__smtp_word_eq(line, verb, "AUTH"))
        return reply_append_printable(out, line, len);
    i = verb;
    while (i < len && line[i] == ' ')
        i++;
    while (i < len && line[i] != ' ')
        i++;
    if ((rc = reply_append_printable(out, line, i)) < 0)
        return rc;
    while (i < len && line[i] == ' ')
        i++;
    if (i < len)
        return pst_buf_append_str(out, " ********");
    return 0;
}

/* --- Reply lines a client reads ------------------------------------------ */

/* Skip 1 to 3 digits at p[*i..len) (RFC 2034 §4 subject and detail).
 * Returns 1 if there was at least one. */
static int
reply_enh_digits(const uint8_t *p, size_t len, size_t *i)
{
    size_t start = *i;

    while (*i < len && *i - start < 3 && p[*i] >= '0' && p[*i] <= '9')
        (*i)++;
    return *i > start;
}

/*
 * The end of an enhanced status code at p[i..len), or i if there is none.
 * RFC 2034 §4: status-code = class "." subject "." detail, class "2",
 * "4" or "5" and the first digit of the reply code cls, followed by one
 * or more spaces (§3 (4)) or, leniently, the end of the line.
 */
static size_t
reply_enhanced_end(const uint8_t *p, size_t i, size_t len, uint8_t cls)
{
    size_t j = i;

    if (cls == '3' || j + 1 >= len || p[j] != cls || p[j + 1] != '.')
        return i;
    j += 2;
    if (!reply_enh_digits(p, len, &j) || j >= len || p[j] != '.')
        return i;
    j++;
    if (!reply_enh_digits(p, len, &j) || (j < len && p[j] != ' '))
        return i;
    return j;
}

int
pst_smtp_reply_parse_line(const uint8_t *line, size_t len,
                          struct pst_smtp_reply_line *out)
{
    size_t i, end;

    if (out == NULL || (line == NULL && len > 0))
        return PST_EINVAL;
    memset(out, 0, sizeof(*out));
    out->text = (const uint8_t *)"";
    if (len > PST_SMTP_REPLY_MAX_LINE - 2)
        return PST_ELIMIT;
    /* RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, or
     * Reply-code "-" [ textstring ] CRLF for all lines but the last. */
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
        line[1] > '9' || line[2] < '0' || line[2] > '9' ||
        (len > 3 && line[3] != '-' && line[3] != ' '))
        return PST_EPROTO;
    /* RFC 5321 §4.2 textstring = 1*(%d09 / %d32-126), but servers send
     * UTF-8 and Latin-1 text too: only controls and DEL are refused (a
     * CR or NUL inside a line is never text). */
    for (i = 4; i < len; i++)
        if ((line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
            return PST_EPROTO;
    out->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
                (line[2] - '0');
    out->more = len > 3 && line[3] == '-';
    i = len > 3 ? 4 : 3;
    end = reply_enhanced_end(line, i, len, line[0]);
    if (end > i) {
        memcpy(out->enhanced, line + i, end - i);
        out->enhanced[end - i] = '\0';
        while (end < len && line[end] == ' ')
            end++;
    }
    out->text = line + end;
    out->text_len = len - end;
    return 0;
}
