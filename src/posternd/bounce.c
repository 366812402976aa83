/*
 * posternd - delivery status notifications (see bounce.h).
 */
#include <stdio.h>
#include <string.h>

#include <postern/error.h>

#include "bounce.h"

#define BOUNCE_LINE_MAX 900 /* octets of a field value line we write */

void
bounce_status(unsigned code, const char *reply, char out[16])
{
    unsigned cls = code / 100, a, b, c;
    int n = 0;

    if (code == 0) {
        snprintf(out, 16, "4.4.7"); /* RFC 3463: delivery time expired */
        return;
    }
    /* "550 5.1.1 text" or "5.1.1 text": the enhanced code of the text. */
    if (reply != NULL) {
        const char *t = reply;

        if (strlen(t) > 4 && t[0] >= '2' && t[0] <= '5' && t[3] == ' ')
            t += 4;
        if (sscanf(t, "%1u.%3u.%3u%n", &a, &b, &c, &n) == 3 && a == cls &&
            (t[n] == ' ' || t[n] == '\0')) {
            snprintf(out, 16, "%u.%u.%u", a, b, c);
            return;
        }
    }
    snprintf(out, 16, "%u.0.0", cls == 4 ? 4 : 5);
}

/* Text made safe for one header-like line: printable ASCII, no CR/LF,
 * at most BOUNCE_LINE_MAX octets. */
static int
put_text(struct pst_buf *out, const char *s)
{
    size_t n = 0;
    int rc = 0;

    for (const unsigned char *p = (const unsigned char *)s;
         *p != '\0' && rc == 0 && n < BOUNCE_LINE_MAX; p++, n++) {
        if (*p == '\r' || *p == '\n')
            rc = pst_buf_append_byte(out, ' ');
        else if (*p < ' ' || *p > '~')
            rc = pst_buf_append_byte(out, '?');
        else
            rc = pst_buf_append_byte(out, *p);
    }
    return rc;
}

/* Whether an address has 8-bit octets (RFC 6533: "utf-8" type). */
static int
is_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

/* RFC 2046 §5.1.1: bchars, 1..70, not ending in a space. */
static int
boundary_ok(const char *b)
{
    static const char extra[] = "'()+_,-./:=? ";
    size_t n = b == NULL ? 0 : strlen(b);

    if (n == 0 || n > 70 || b[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || strchr(extra, c) != NULL))
            return 0;
    }
    return 1;
}

/* The human-readable part. */
static int
put_text_part(const struct bounce_info *b, struct pst_buf *out)
{
    int rc = pst_buf_printf(
        out,
        "--%s\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This is the mail system at host %s.\r\n"
        "\r\n"
        "Your message could not be delivered to one or more recipients.\r\n"
        "It was accepted with queue id %s; the details are below.\r\n"
        "\r\n",
        b->boundary, b->hostname, b->queue_id);

    for (size_t i = 0; i < b->nrcpt && rc == 0; i++) {
        rc = pst_buf_append_str(out, "<");
        if (rc == 0)
            rc = put_text(out, b->rcpt[i].addr);
        if (rc == 0)
            rc = pst_buf_append_str(out, ">: ");
        if (rc == 0)
            rc = put_text(out, b->rcpt[i].reply != NULL
                                   ? b->rcpt[i].reply
                                   : "delivery time expired");
        if (rc == 0)
            rc = pst_buf_append_str(out, "\r\n");
    }
    return rc;
}

/* RFC 3464 §2.2 per-message fields, §2.3 per-recipient fields. */
static int
put_status_part(const struct bounce_info *b, struct pst_buf *out)
{
    int rc = pst_buf_printf(out,
                            "\r\n--%s\r\n"
                            "Content-Description: Delivery report\r\n"
                            "Content-Type: message/delivery-status\r\n"
                            "\r\n"
                            "Reporting-MTA: dns; %s\r\n"
                            "X-Postern-Queue-ID: %s\r\n",
                            b->boundary, b->hostname, b->queue_id);

    if (rc == 0 && b->arrival_date != NULL)
        rc = pst_buf_printf(out, "Arrival-Date: %s\r\n", b->arrival_date);
    for (size_t i = 0; i < b->nrcpt && rc == 0; i++) {
        const struct bounce_rcpt *r = &b->rcpt[i];
        char status[16];

        bounce_status(r->code, r->reply, status);
        rc = pst_buf_printf(out, "\r\nFinal-Recipient: %s; ",
                            is_8bit(r->addr) ? "utf-8" : "rfc822");
        if (rc == 0)
            rc = put_text(out, r->addr);
        if (rc == 0)
            rc = pst_buf_printf(out, "\r\nAction: failed\r\nStatus: %s\r\n",
                                status);
        if (rc == 0 && r->code != 0 && b->remote_mta != NULL)
            rc = pst_buf_printf(out, "Remote-MTA: dns; %s\r\n",
                                b->remote_mta);
        if (rc == 0 && r->code != 0) {
            /* RFC 3464 §2.3.6: the reply as the smarthost sent it. */
            rc = pst_buf_append_str(out, "Diagnostic-Code: smtp; ");
            if (rc == 0)
                rc = put_text(out, r->reply != NULL ? r->reply : "");
            if (rc == 0)
                rc = pst_buf_append_str(out, "\r\n");
        }
        if (rc == 0 && r->last_attempt != NULL)
            rc = pst_buf_printf(out, "Last-Attempt-Date: %s\r\n",
                                r->last_attempt);
    }
    return rc;
}

/* RFC 6522 §4: the returned content, headers only. */
static int
put_headers_part(const struct bounce_info *b, struct pst_buf *out)
{
    size_t n = b->headers_len;
    int rc;

    /* Without the empty line that ends the section: the part adds its
     * own line end. */
    while (n > 0 && (b->headers[n - 1] == '\n' || b->headers[n - 1] == '\r'))
        n--;
    rc = pst_buf_printf(out,
                        "\r\n--%s\r\n"
                        "Content-Description: Undelivered Message Headers\r\n"
                        "Content-Type: text/rfc822-headers\r\n"
                        "\r\n",
                        b->boundary);
    if (rc == 0)
        rc = pst_buf_append(out, b->headers, n);
    if (rc == 0)
        rc = pst_buf_printf(out, "\r\n\r\n--%s--\r\n", b->boundary);
    return rc;
}

int
bounce_compose(const struct bounce_info *b, struct pst_buf *out)
{
    int rc;

    if (b->nrcpt == 0 || b->sender == NULL || b->sender[0] == '\0' ||
        !boundary_ok(b->boundary))
        return PST_EINVAL;
    rc = pst_buf_printf(out,
                        "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
                        "To: <",
                        b->hostname);
    if (rc == 0)
        rc = put_text(out, b->sender);
    if (rc == 0)
        rc = pst_buf_printf(
            out,
            ">\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "Date: %s\r\n"
            "Message-ID: %s\r\n"
            /* RFC 3834 §5: no automatic answer to this one. */
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            "\tboundary=\"%s\"\r\n"
            "\r\n"
            "This is a MIME-encapsulated message.\r\n"
            "\r\n",
            b->date, b->message_id, b->boundary);
    if (rc == 0)
        rc = put_text_part(b, out);
    if (rc == 0)
        rc = put_status_part(b, out);
    if (rc == 0)
        rc = put_headers_part(b, out);
    return rc;
}
