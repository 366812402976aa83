/*
 * posternd - the header section of a message (see header.h).
 */
#include <string.h>
#include <strings.h>

#include <postern/error.h>

#include "header.h"

/* RFC 5322 §2.2: a field name is printable US-ASCII except ":". */
static int
name_char(uint8_t c)
{
    return c >= 33 && c <= 126 && c != ':';
}

/* The length of the field line starting at p (through its CRLF, or to
 * end), and its whole field with continuation lines in *field_len. */
static size_t
line_len(const uint8_t *p, size_t len)
{
    const uint8_t *nl = memchr(p, '\n', len);

    return nl == NULL ? len : (size_t)(nl - p) + 1;
}

static size_t
field_len(const uint8_t *p, size_t len)
{
    size_t n = line_len(p, len);

    /* RFC 5322 §2.2.3: a line starting with WSP continues the field. */
    while (n < len && (p[n] == ' ' || p[n] == '\t'))
        n += line_len(p + n, len - n);
    return n;
}

/* The name of the field at p: its length, or 0 if p is not a field. */
static size_t
name_len(const uint8_t *p, size_t len)
{
    size_t i = 0;

    while (i < len && name_char(p[i]))
        i++;
    /* obs-optional (RFC 5322 §4.5): WSP between the name and ":". */
    size_t j = i;
    while (j < len && (p[j] == ' ' || p[j] == '\t'))
        j++;
    return i > 0 && j < len && p[j] == ':' ? i : 0;
}

static int
is_name(const uint8_t *p, size_t n, const char *name)
{
    return n == strlen(name) &&
           strncasecmp((const char *)p, name, n) == 0; /* not secret */
}

static unsigned
field_bit(const uint8_t *p, size_t n)
{
    if (is_name(p, n, "Date"))
        return HEADER_HAS_DATE;
    if (is_name(p, n, "Message-ID"))
        return HEADER_HAS_MESSAGE_ID;
    if (is_name(p, n, "From"))
        return HEADER_HAS_FROM;
    if (is_name(p, n, "Reply-To"))
        return HEADER_HAS_REPLY_TO;
    if (is_name(p, n, "Sender"))
        return HEADER_HAS_SENDER;
    return 0;
}

size_t
header_scan(const uint8_t *p, size_t len, unsigned *fields)
{
    size_t off = 0;

    *fields = 0;
    while (off < len) {
        size_t n;

        if (p[off] == '\r' && off + 1 < len && p[off + 1] == '\n')
            return off + 2; /* the empty line */
        if (p[off] == '\n')
            return off + 1;
        n = name_len(p + off, len - off);
        if (n == 0)
            return off; /* not a field: the body starts here */
        *fields |= field_bit(p + off, n);
        off += field_len(p + off, len - off);
    }
    return len;
}

/* What the rewrite adds at the end of the section: a From if there was
 * none, the Reply-To that keeps answers going to the original sender. */
static int
put_additions(const uint8_t *hdr, size_t from_at, size_t from_len,
              int have_from, unsigned fields, const char *user,
              struct pst_buf *out)
{
    int rc = 0;

    if (!have_from)
        rc = pst_buf_printf(out, "From: <%s>\r\n", user);
    else if (!(fields & HEADER_HAS_REPLY_TO)) {
        rc = pst_buf_append_str(out, "Reply-To:");
        if (rc == 0)
            rc = pst_buf_append(out, hdr + from_at, from_len);
    }
    return rc;
}

int
header_rewrite_sender(const uint8_t *hdr, size_t hdr_len, const char *user,
                      struct pst_buf *out)
{
    size_t off = 0, from_at = 0, from_len = 0;
    unsigned fields;
    int rc = 0, have_from = 0;

    if (user == NULL || user[0] == '\0' || strpbrk(user, "\r\n") != NULL)
        return PST_EINVAL;
    header_scan(hdr, hdr_len, &fields);
    while (off < hdr_len && rc == 0) {
        size_t n = name_len(hdr + off, hdr_len - off), f;
        unsigned bit;

        if (n == 0)
            break; /* the empty line, or whatever ends the section */
        f = field_len(hdr + off, hdr_len - off);
        bit = field_bit(hdr + off, n);
        if (bit == HEADER_HAS_FROM) {
            if (!have_from) {
                /* The value after "From:", folding and CRLF included. */
                const uint8_t *colon = memchr(hdr + off, ':', f);

                from_at = (size_t)(colon + 1 - hdr);
                from_len = off + f - from_at;
                have_from = 1;
                rc = pst_buf_printf(out, "From: <%s>\r\n", user);
            }
        } else if (bit != HEADER_HAS_SENDER) {
            rc = pst_buf_append(out, hdr + off, f);
        }
        off += f;
    }
    if (rc == 0)
        rc = put_additions(hdr, from_at, from_len, have_from, fields, user,
                           out);
    if (rc == 0 && off < hdr_len)
        rc = pst_buf_append(out, hdr + off, hdr_len - off);
    return rc;
}

int
header_add_missing(unsigned fields, const char *date, const char *msgid,
                   struct pst_buf *out)
{
    int rc = 0;

    if (!(fields & HEADER_HAS_DATE))
        rc = pst_buf_printf(out, "Date: %s\r\n", date);
    if (rc == 0 && !(fields & HEADER_HAS_MESSAGE_ID))
        rc = pst_buf_printf(out, "Message-ID: %s\r\n", msgid);
    return rc;
}
