/*
 * SMTP internals shared by cmd.c (command argument parsers), reply.c
 * (reply lines, redaction) and the sessions (server*.c, with
 * server_int.h; client*.c, with client_int.h).  The unit tests reach these
 * pst__ functions through the static library.
 */
#ifndef POSTERN_SMTP_INT_H
#define POSTERN_SMTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/smtp.h>

#include "../internal.h"

#define PST__SMTP_MAX_LOCAL   64  /* RFC 5321 §4.5.3.1.1 */
#define PST__SMTP_MAX_REPLY   510 /* reply line without CRLF (§4.5.3.1.5) */
#define PST__SMTP_MAX_QUEUEID 64

/* --- cmd.c --------------------------------------------------------------- */

/*
 * Split a command line (CRLF excluded) into its verb and argument: the verb
 * runs to the first space, the argument starts after the spaces that
 * follow it, and trailing spaces are dropped.  *verb_len is 0 for an empty
 * line.
 */
void pst__smtp_split(const uint8_t *line, size_t len, size_t *verb_len,
                     const uint8_t **arg, size_t *arg_len);

/* 1 if the verb p[0..len) equals word (ASCII, case-insensitive), else 0. */
int pst__smtp_word_eq(const uint8_t *p, size_t len, const char *word);

/* Flags of pst__smtp_parse_path(). */
#define PST__PATH_NULL_OK       0x01u /* "<>" allowed (reverse-path) */
#define PST__PATH_POSTMASTER_OK 0x02u /* "<Postmaster>" without a domain
                                         allowed (RFC 5321 §4.1.1.3) */
#define PST__PATH_UTF8          0x04u /* RFC 6531 §3.3: UTF-8 in the local
                                         part and the domain (SMTPUTF8) */
#define PST__PATH_LOCAL_OK      0x08u /* a local part alone ("root"),
                                         as sendmail's callers give it */

/*
 * Parse a path at p[0..len): "<" [A-d-l ":"] Mailbox ">" (RFC 5321
 * §4.1.2), or a bare Mailbox ending at a space or the end (old clients
 * omit the brackets).  The mailbox, without brackets and source route, is
 * appended to addr (NUL-terminated; empty for "<>").  *used gets the
 * octets taken.
 * Returns: 0, PST_ESYNTAX (not a path), PST_ELIMIT (path over 256 octets,
 * local part over 64, domain over 255), PST_ENOMEM.
 */
int pst__smtp_parse_path(const uint8_t *p, size_t len, unsigned flags,
                         size_t *used, struct pst_buf *addr);

/*
 * 1 if p[0..len) is a domain (RFC 5321 §4.1.2 Domain: letter-digit-hyphen
 * labels separated by dots) or an address literal "[...]", else 0.
 * lenient != 0 also admits "_" in labels (EHLO names of devices).
 */
int pst__smtp_domain_valid(const uint8_t *p, size_t len, int lenient);

/* 1 if p[0..len) is xtext (RFC 3461 §4), else 0. */
int pst__smtp_xtext_valid(const uint8_t *p, size_t len);

/* MAIL FROM parameters (RFC 5321 §4.1.2 Mail-parameters). */
struct pst__smtp_mail_params {
    int      has_size;   /* SIZE= (RFC 1870) */
    uint64_t size;
    int      body_8bit;  /* BODY=8BITMIME (RFC 6152); 0 for 7BIT */
    int      has_body;
    int      has_auth;   /* AUTH= (RFC 4954 §5), accepted and ignored */
};

/*
 * Parse space-separated esmtp-param's at p[0..len) (mail != 0: MAIL
 * FROM's SIZE, BODY and AUTH; mail == 0: RCPT TO, which takes none).
 * Returns: 0, PST_ESYNTAX (malformed, bad value or repeated: 501 5.5.4),
 * PST_ENOTSUP (unknown keyword: 555 5.5.4).
 */
int pst__smtp_parse_params(const uint8_t *p, size_t len, int mail,
                           struct pst__smtp_mail_params *out);

/* --- reply.c ------------------------------------------------------------- */

/*
 * Whether a reply line given by the driver may be sent: "ddd " + text, the
 * first digit equal to cls ('4' or '5'), printable ASCII, at most
 * PST__SMTP_MAX_REPLY octets.  Returns 1 or 0.
 */
int pst__smtp_reply_ok(const char *reply, char cls);

/*
 * Whether s is non-empty printable ASCII of at most max octets, without
 * spaces when nospace != 0.  Returns 1 or 0.
 */
int pst__smtp_printable(const char *s, size_t max, int nospace);

/*
 * The reply text of a SASL failure class (RFC 4954 §4, §6; RFC 3463),
 * e.g. PST_EAUTH -> "535 5.7.8 Authentication credentials invalid".
 */
const char *pst__smtp_auth_reply(int err);

/* --- server.c ------------------------------------------------------------ */

/*
 * Bytes allocated now by the session's buffers (input, output, HELO name,
 * identities, SASL messages, paths, a DATA line copy), each counted with
 * its NUL; neither the session struct nor the SASL mechanism's state.  For
 * tests that check a session stays small when idle.
 */
size_t pst__smtp_server_buffer_bytes(const struct pst_smtp_server *s);

#endif
