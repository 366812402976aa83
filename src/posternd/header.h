/*
 * posternd - the header section of a message (RFC 5322 §2.2, §3.6), as
 * the relay needs it: find where it ends and which fields it has, add the
 * ones a submission server must add (RFC 6409 §8.2, §8.3: Date and
 * Message-ID), and rewrite the sender for a smarthost that accepts mail
 * only from its own mailbox (rewrite_sender = envelope+from).
 *
 * Pure functions over byte ranges: no I/O, no clock.  Field names compare
 * case-insensitively (RFC 5322 §1.2.2).  Line ends are CRLF, as a message
 * is stored after DATA.
 */
#ifndef POSTERND_HEADER_H
#define POSTERND_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>

/* Fields header_scan() reports. */
#define HEADER_HAS_DATE       0x01u
#define HEADER_HAS_MESSAGE_ID 0x02u
#define HEADER_HAS_FROM       0x04u
#define HEADER_HAS_REPLY_TO   0x08u
#define HEADER_HAS_SENDER     0x10u

/*
 * Where the header section of p[0..len) ends: the offset just past the
 * CRLF of the empty line that separates it from the body (or len if
 * there is none: a message of headers only), and *fields the
 * HEADER_HAS_* of the fields seen in it.  A line that is not a field
 * ("name:" with printable name characters, or a continuation line
 * starting with white space) ends the section too (a message without
 * headers): then the returned offset is where that line starts.
 * Returns: the offset.
 */
size_t header_scan(const uint8_t *p, size_t len, unsigned *fields);

/*
 * The header section hdr ([in] borrowed, hdr_len octets, as header_scan()
 * delimits it, the empty line included or not) rewritten for sending as
 * user ([in]: an address without <>): every From field is replaced by
 * "From: <user>", every Sender field is dropped, and when there is no
 * Reply-To the first original From's value becomes "Reply-To:" so that
 * answers still reach the device's owner.  Other fields are copied as they
 * are, folding included.  Appended to out, ending as hdr ends.
 * Returns: 0, PST_EINVAL (user empty or with CR/LF), PST_ELIMIT,
 * PST_ENOMEM.
 */
int header_rewrite_sender(const uint8_t *hdr, size_t hdr_len,
                          const char *user, struct pst_buf *out);

/*
 * The fields a submission server adds when missing (RFC 6409 §8.2 Date,
 * §8.3 Message-ID), for a section that has fields ([in] from
 * header_scan()): "Date: <date>\r\n" and "Message-ID: <msgid>\r\n" as
 * needed, appended to out.  date and msgid ([in] borrowed) are the values
 * (the caller makes them: an RFC 5322 date, "<unique@host>").
 * Returns: 0, PST_ELIMIT, PST_ENOMEM.
 */
int header_add_missing(unsigned fields, const char *date, const char *msgid,
                       struct pst_buf *out);

#endif
