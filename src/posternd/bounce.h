/*
 * posternd - delivery status notifications (bounces) for relayed mail
 * that could not be delivered: RFC 3464 message/delivery-status inside an
 * RFC 6522 multipart/report, with the original header section as
 * text/rfc822-headers (RFC 6522 §4; the whole message is not returned:
 * it may be large, and the sender has it).
 *
 * Pure: the caller supplies the dates, the boundary and the Message-ID.
 * The bounce is sent from the null sender (RFC 5321 §4.5.5), so it is
 * never bounced itself; the caller never bounces a message whose sender
 * is null.
 */
#ifndef POSTERND_BOUNCE_H
#define POSTERND_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>

struct bounce_rcpt {
    const char *addr;         /* [in] the recipient, without <> */
    unsigned    code;         /* the reply code that failed it, or 0
                                 (queue lifetime: no reply) */
    const char *reply;        /* [in] that reply's text ("550 5.1.1 ...")
                                 or why it failed; may be NULL */
    const char *last_attempt; /* [in] RFC 5322 date of the last attempt,
                                 or NULL */
};

struct bounce_info {
    const char *hostname;     /* [in] Reporting-MTA and the From domain */
    const char *queue_id;     /* [in] of the failed message */
    const char *sender;       /* [in] the original envelope sender: the
                                 bounce's recipient (To) */
    const char *arrival_date; /* [in] RFC 5322 date it was accepted */
    const char *date;         /* [in] RFC 5322 date of the bounce */
    const char *message_id;   /* [in] "<...>" of the bounce */
    const char *boundary;     /* [in] MIME boundary: 1..70 characters of
                                 RFC 2046 bchars, not in the headers */
    const char *remote_mta;   /* [in] the smarthost's host name, or NULL */
    const struct bounce_rcpt *rcpt; /* [in] the failed recipients */
    size_t      nrcpt;
    const uint8_t *headers;   /* [in] the original header section (CRLF
                                 lines; the empty line may be included) */
    size_t      headers_len;
};

/*
 * The status code of a reply (RFC 3463): the enhanced code at the start
 * of its text ("550 5.1.1 ..." -> "5.1.1") when its class matches the
 * reply's, else X.0.0 from the reply code (4.0.0, 5.0.0), or "4.4.7"
 * (delivery time expired) for code 0.  Written to out (at least 16
 * octets).
 */
void bounce_status(unsigned code, const char *reply, char out[16]);

/*
 * The whole bounce message (header and body, CRLF line ends, every line
 * under 1,000 octets) appended to out.
 * Returns: 0, PST_EINVAL (no recipients, empty sender, or a bad
 * boundary), PST_ELIMIT, PST_ENOMEM.
 */
int bounce_compose(const struct bounce_info *b, struct pst_buf *out);

#endif
