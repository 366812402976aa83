/*
 * postern - building the message `postern send` submits: composing a
 * MIME message from options, or completing one read from stdin.
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte string (no ceiling: messages are as big as files). */
struct mbuf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

int mbuf_add(struct mbuf *b, const void *p, size_t len);
int mbuf_str(struct mbuf *b, const char *s);
int mbuf_printf(struct mbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mbuf_free(struct mbuf *b);

struct compose {
    const char *from;            /* address */
    const char *from_name;       /* display name, may be NULL (UTF-8) */
    const char *const *to;
    size_t nto;
    const char *const *cc;
    size_t ncc;
    const char *subject;         /* UTF-8, may be NULL */
    const char *body_file;       /* text body from a file, NULL: none */
    const uint8_t *body;         /* else the text in memory (standard
                                    input), NULL: an empty text */
    size_t body_len;
    const char *const *attach;   /* files */
    size_t nattach;
    const char *msgid_domain;    /* right side of Message-ID */
};

/*
 * Compose an RFC 5322 / MIME message: From, To, Cc, Subject (RFC 2047
 * encoded when not ASCII or longer than 350 octets, so that no line
 * passes RFC 5322's 998), Date, Message-ID, MIME-Version; a text/plain
 * body (7bit, 8bit, or base64 for a NUL or a line over 998 octets); with
 * attachments multipart/mixed, each part base64 in 76-column lines with a
 * Content-Type from its extension and an RFC 2231 file name.
 * out ([out]) gets the message appended.  out7 ([out], may be NULL): when
 * the text goes 8bit, the same message (same Date, Message-ID, boundary)
 * with the text quoted-printable (RFC 2045 §6.7) is appended to it, for a
 * server without 8BITMIME (RFC 6152 §3); otherwise it is left as it is.
 * Returns: 0, or -1 with a message in err (unreadable file, ...).
 */
int mime_compose(const struct compose *c, struct mbuf *out,
                 struct mbuf *out7, char *err, size_t err_size);

/*
 * Complete a message read from stdin: add Date and Message-ID (and From
 * when from is not NULL, with from_name as for mime_from_field()) when
 * its header lacks them.  With strip_bcc, Bcc
 * header fields are removed (sendmail -t).  in is the message as read.
 * Returns: 0, or -1 with a message in err (no header/body boundary in a
 * message that has header fields is fine: the whole text is header).
 */
int mime_complete(const uint8_t *in, size_t len, const char *from,
                  const char *from_name, const char *msgid_domain,
                  int strip_bcc, struct mbuf *out, char *err,
                  size_t err_size);

/*
 * Collect the addresses of the To, Cc and Bcc fields of a message header
 * (sendmail -t).  Each address is malloc'd into *addrs (grown with
 * realloc), *n counts them.  Returns: 0, -1 (out of memory).
 */
int mime_header_recipients(const uint8_t *in, size_t len, char ***addrs,
                           size_t *n);

/* RFC 2047 "encoded-word" form of a UTF-8 phrase when it is not plain
 * printable ASCII, looks like an encoded-word, or is longer than 350
 * octets (encoded-words fold); else the text itself.  Appends to out. */
int mime_encode_header_text(struct mbuf *out, const char *text);

/* A display name as an RFC 5322 §3.2.5 phrase: itself when made of atoms,
 * a quoted-string when it holds specials (",", ".", "(", "\"" ...), RFC
 * 2047 encoded-words when it is not ASCII or longer than 350 octets.
 * Appends to out. */
int mime_encode_phrase(struct mbuf *out, const char *text);

/* "From: NAME <addr>" CRLF, NAME as mime_encode_phrase() writes it, or
 * "From: <addr>" CRLF when name is NULL or empty.  Appends to out.
 * Returns: 0, -1 (out of memory). */
int mime_from_field(struct mbuf *out, const char *name, const char *addr);

/*
 * Split a sender as a user gives it: "Name <addr>", "\"Doe, John\"
 * <addr>", "<addr>" or a bare "addr" (RFC 5322 §3.4 name-addr or
 * addr-spec, without comments).  A text without "<" outside a quoted
 * string is an addr-spec alone.  The display name is the text before the
 * "<" without the blanks around it, quoted strings unquoted (quoted-pairs
 * undone, §3.2.4); addr what is between "<" and the ">" ending the text
 * (blanks after it aside), unchecked.
 * *name ([out] owned, free(); NULL when there is none or it is empty) and
 * *addr ([out] owned, free()).
 * Returns: 0, or -1 with both NULL: no ">" at the end after a "<", a
 * quoted string in the name not closed, out of memory.
 */
int mime_split_mailbox(const char *in, char **name, char **addr);

/* The Content-Type for a file name, from its extension. */
const char *mime_type_for(const char *filename);

#endif
