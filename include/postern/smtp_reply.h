/*
 * postern - SMTP reply lines, as a client reads them.
 *
 * One validator for a line a server sent (RFC 5321 §4.2): the reply code,
 * the continuation mark, the text, and the enhanced status code that
 * starts the text when the server speaks ENHANCEDSTATUSCODES (RFC 2034 §4,
 * RFC 3463 §2).  The client session reads every reply line through it; a
 * program that reads replies itself should do the same.
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <postern/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PST_SMTP_REPLY_MAX_LINE 2048 /* octets with CRLF: RFC 5321
                                        §4.5.3.1.5 says 512, and servers
                                        pass it; be lenient */
#define PST_SMTP_REPLY_MAX_ENHANCED 16 /* "5.999.999" and its NUL fit */

/* One reply line, taken apart. */
struct pst_smtp_reply_line {
    int code;             /* the reply code, 200 to 599 */
    int more;             /* 1: "ddd-", more lines of the reply follow;
                             0: "ddd " or "ddd" alone, the last line */
    char enhanced[PST_SMTP_REPLY_MAX_ENHANCED]; /* "5.7.8" when the text
                             starts with an enhanced status code whose
                             class is the code's first digit, else "" */
    const uint8_t *text;  /* [out] borrowed from the line: the text after
                             the code, the separator and the enhanced
                             code with its spaces; never NULL */
    size_t text_len;
};

/*
 * Take apart one reply line (line, [in] borrowed; len octets without the
 * CRLF) into *out ([out]; out->text points into line).  A valid line is
 * code SP text, code "-" text, or the code alone (RFC 5321 §4.2), where
 * code is [2-5][0-9][0-9] (whether it answers the command is the
 * caller's to judge) and text is printable: HT, SP to "~", or octets of
 * 0x80 and above (servers send UTF-8 and Latin-1 text; it is kept as
 * sent).  An
 * enhanced status code is class "." subject "." detail, subject and
 * detail 1 to 3 digits (RFC 2034 §4, RFC 3463 §2), at the start of the
 * text and followed by a space or the end of the line; its class must be
 * the code's first digit (RFC 2034 §4: "a 2xx response must incorporate
 * a 2.X.X code"), else the text is left whole.
 * On error *out is zeroed but for text ("").
 * Returns: 0, PST_EPROTO (not a reply line: bad code, separator or a
 * control octet in the text), PST_ELIMIT (longer than
 * PST_SMTP_REPLY_MAX_LINE - 2 octets), PST_EINVAL (out is NULL, or line
 * is NULL with len > 0).
 */
PST_EXTERN int pst_smtp_reply_parse_line(const uint8_t *line, size_t len,
                                         struct pst_smtp_reply_line *out);

#ifdef __cplusplus
}
#endif
#endif
