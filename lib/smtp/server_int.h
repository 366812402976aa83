/*
 * The server session's internals, shared by its files:
 *   server.c       names, state, output, events, the loop, the public API
 *   server_cmd.c   the command table: each command's check and proceed
 *   server_auth.c  AUTH (RFC 4954): mechanisms offered, the SASL exchange
 *   server_data.c  the line reader and DATA (dot-stuffing, smuggling
 *                  defences)
 *   server_layer.c the SASL security layer after AUTH (RFC 4954 §4)
 * Nothing here is exported: pst__ names are hidden by the version script.
 */
#ifndef POSTERN_SMTP_SERVER_INT_H
#define POSTERN_SMTP_SERVER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/smtp.h>

#include "smtp_int.h"

#define SERVER_MAX_MECHS    16
#define SERVER_MAX_EVENTS   8      /* queued; one step queues at most 3 */
#define SERVER_OUT_HIGH     16384  /* stop acting on input above this */
#define SERVER_OUT_MAX      (SERVER_OUT_HIGH + 65536) /* output ceiling */
#define SERVER_BUF_KEEP     1024   /* an empty input or output buffer
                                      larger than this is given back */
#define SERVER_MAX_TLS_NAME 64
#define SERVER_MAX_REASON   128
#define SERVER_MAX_KEYWORDS 10
/* The largest protected buffer the server takes (DIGEST-MD5 maxbuf, RFC
 * 2831 §2.1.2.1), and what its input buffers hold: one buffer with its
 * 4-octet length, and one unwrapped message. */
#define SERVER_LAYER_MAXBUF 65536
#define SERVER_LAYER_RAW    (4 + SERVER_LAYER_MAXBUF)
/* The output once protected: every buffer adds its length and trailer. */
#define SERVER_WIRE_MAX     (2 * SERVER_OUT_MAX)

/* What a line held besides its text. */
#define LINE_BARE_LF  0x01u  /* an LF without CR before it (DATA with
                                bare_lf = normalize: the line's end) */
#define LINE_BARE_CR  0x02u  /* a CR without LF after it */
#define LINE_TOO_LONG 0x04u  /* over the limit: the text is gone */
#define LINE_FOLDED   0x08u  /* DATA, fold: the line goes on after this
                                piece */
#define LINE_CONT     0x10u  /* DATA, fold: this piece does not start the
                                line */

enum server_line_mode {
    LINE_MODE_CMD = 0, /* 512 octets (AUTH: 12288); any LF ends a line */
    LINE_MODE_AUTH,    /* AUTH continuation: 12288; any LF ends a line */
    LINE_MODE_DATA,    /* server_data.c: 1000 octets; only CRLF ends a
                          line (bare_lf = normalize: any LF) */
};

/*
 * What a session under TLS knows of it, apart from the session so that a
 * plaintext session neither carries nor zeroes it (half a kilobyte of
 * channel binding, per connection): allocated by
 * pst_smtp_server_tls_started(), wiped and freed with the session.
 */
struct server_tls {
    char version[SERVER_MAX_TLS_NAME + 1];
    char cipher[SERVER_MAX_TLS_NAME + 1];
    /* What TLS told SASL (pst_smtp_server_tls_auth()): */
    char cb_type[PST_SASL_MAX_CB_NAME + 1]; /* "" when none */
    uint8_t cb_data[PST_SASL_MAX_CB_DATA];  /* wiped with the session */
    size_t cb_len;
    struct pst_buf external_id; /* EXTERNAL's user; empty: none */
};

/* The security layer (RFC 4954 §4) and its buffers, allocated once one
 * is negotiated (server_layer.c). */
struct server_layer {
    struct pst_sasl_layer *sasl;
    struct pst_buf raw;        /* protected input not yet unwrapped */
    struct pst_buf plain;      /* unwrapped input not yet in `in` */
    size_t plain_off;          /* octets of plain moved already */
    struct pst_buf wire;       /* protected output (the 235 before it in
                                  clear); output() gives this */
    size_t wire_off;           /* octets of wire consumed */
};

struct pst_smtp_server {
    struct pst_smtp_server_config cfg;
    const struct pst_sasl_mech *mechs[SERVER_MAX_MECHS];
    size_t nmechs;
    unsigned max_rcpt;
    unsigned max_errors;
    enum pst_smtp_state state;
    enum pst_smtp_state prev;
    int broken;                /* PST_ENOMEM once a buffer could not
                                  grow */
    /* Received: */
    struct pst_buf in;         /* up to PST_SMTP_MAX_INPUT; secret: it
                                  holds AUTH lines */
    size_t rpos;               /* unread input is in.data[rpos..in.len) */
    size_t scan;               /* octets of the partial line searched */
    unsigned line_flags;       /* DATA: bare LF in the partial line */
    int discard;               /* dropping the rest of an overlong line */
    int discard_cr;            /* the last byte dropped was CR */
    int discard_bare_lf;       /* DATA: the line dropped ended in a bare
                                  LF */
    /* Sent: */
    struct pst_buf out;
    size_t out_off;            /* bytes of out consumed */
    int flush;                 /* the output ends a pipelining group */
    /* Events: */
    struct pst_smtp_event evq[SERVER_MAX_EVENTS];
    unsigned evq_head, evq_len;
    struct pst_smtp_event scratch; /* written if the queue ever fills */
    /* What the session knows of the client: */
    int tls;                   /* TLS is up: tlsi is not NULL */
    struct server_tls *tlsi;   /* NULL until pst_smtp_server_tls_started() */
    int greeted;               /* EHLO or HELO seen */
    int esmtp;                 /* ... and it was EHLO */
    struct pst_buf helo;
    int authed;
    struct pst_buf user;       /* authenticated identity */
    const char *auth_mech;
    unsigned errors;           /* client errors in the session */
    unsigned auth_failures;    /* failed AUTHs (5xx) in the session */
    int close_pending;         /* errors reached the limit: 421 */
    unsigned compat_used;      /* PST_SMTP_COMPAT_* exceptions used */
    /* The AUTH exchange: */
    struct pst_sasl_server *sasl;
    const struct pst_sasl_mech *sasl_mech;
    struct pst_buf sasl_in;    /* decoded client message; secret */
    struct pst_buf sasl_out;   /* raw challenge */
    struct pst_buf attempt;    /* authcid of the exchange, once known */
    char reason[SERVER_MAX_REASON];
    /* The security layer (RFC 4954 §4), once negotiated, else NULL: */
    struct server_layer *layer;
    /* The mail transaction: */
    struct pst_buf mail_from;
    struct pst_buf rcpt;       /* the recipient asked about */
    unsigned nrcpt;            /* accepted recipients */
    int rcpt_seen;             /* some RCPT got as far as the driver */
    uint64_t mail_size;        /* MAIL SIZE= */
    int body_8bit;
    /* DATA: */
    uint64_t data_size;        /* octets after dot-unstuffing */
    int data_prev_bare_lf;     /* normalize: the last line ended in a bare
                                  LF (a "." line after it does not end
                                  the message) */
    size_t fold_len;           /* fold: octets of the current line passed
                                  on already; 0 at a line's start */
    struct pst_buf data_line;  /* a line passed on with a CRLF the input
                                  does not have (normalized, folded) */
    int data_error;            /* 0, or the PST_E* class of the refusal */
    const char *data_reason;
    const char *data_reply;
};

/* The buffer's text, "" when it was never allocated. */
static inline const char *
server_str(const struct pst_buf *b)
{
    return b->data != NULL ? (const char *)b->data : "";
}

/* --- server.c ------------------------------------------------------------ */

/*
 * The only way to change state (curl smtp_state(), OpenSMTPD
 * smtp_enter_state()): remembers the old one and traces "old -> new".
 */
void pst__server_enter_state(struct pst_smtp_server *s,
                             enum pst_smtp_state st);

/* Call the trace callback, if any. */
void pst__server_trace(struct pst_smtp_server *s, enum pst_smtp_trace what,
                       const void *text, size_t len);

/* Trace a client line the way a log may show it (pst_smtp_redact()). */
void pst__server_trace_line(struct pst_smtp_server *s, const uint8_t *line,
                            size_t len, int auth_continuation);

/* Queue one reply line (CRLF added); on failure the session is broken. */
void pst__server_put(struct pst_smtp_server *s, const char *line,
                     size_t len);

/* Queue a formatted reply line. */
void pst__server_reply(struct pst_smtp_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A reply to a client mistake: counted, and after max_errors the session
 * closes with 421 (DESIGN.md: "repeated abuse gets 421").
 */
void pst__server_error(struct pst_smtp_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Count one client error (auth_failure: a failed AUTH); see server.c. */
void pst__server_count_error(struct pst_smtp_server *s, int auth_failure);

/* A reply chosen elsewhere: 5xx counts as an error, 4xx does not. */
void pst__server_reply_line(struct pst_smtp_server *s, const char *line);

/* Queue an event of type t (ask: it needs an answer), zeroed but for
 * type and need_answer. */
struct pst_smtp_event *pst__server_event(struct pst_smtp_server *s,
                                         enum pst_smtp_event_type t,
                                         int ask);

/* Forget all buffered input (STARTTLS, close). */
void pst__server_drop_input(struct pst_smtp_server *s);

/* Forget the mail transaction (RSET, EHLO, the end of DATA). */
void pst__server_reset_transaction(struct pst_smtp_server *s);

/* Drop everything and queue CLOSE: after 221, or after a 421 reply.
 * Returns the CLOSE event, for its reason. */
struct pst_smtp_event *pst__server_close_now(struct pst_smtp_server *s);

/* Forget what the client said before a new start (RFC 3207 §4.2 after
 * STARTTLS, RFC 4954 §4 after a security layer): the EHLO and the
 * transaction, and wait for EHLO again. */
void pst__server_restart(struct pst_smtp_server *s);

/* --- server_layer.c ------------------------------------------------------ */

/*
 * The exchange that just succeeded negotiated a security layer (l, owned
 * from now on): it applies from the octet after the 235 just queued (RFC
 * 4954 §4).  What is queued goes out in clear, what the client sent after
 * its last response is protected, and the session starts again.
 */
void pst__server_layer_start(struct pst_smtp_server *s,
                             struct pst_sasl_layer *l);

/* feed() under a layer: take protected bytes.  Returns the octets
 * taken. */
size_t pst__server_layer_feed(struct pst_smtp_server *s, const uint8_t *in,
                              size_t len);

/* Unwrap what has come whole into the input buffer, as room allows.  A
 * refused buffer closes the session.  Returns 1 if anything moved. */
int pst__server_layer_pull(struct pst_smtp_server *s);

/* Protect the replies queued since the last call (output()). */
void pst__server_layer_seal(struct pst_smtp_server *s);

/* Octets of output waiting, protected or not. */
size_t pst__server_pending_out(const struct pst_smtp_server *s);

/* Free the layer and its buffers (wiped); s->layer becomes NULL. */
void pst__server_layer_free(struct pst_smtp_server *s);

/* --- server_cmd.c -------------------------------------------------------- */

/* A line in GREETING, IDLE or MAIL: a command.  Returns 1 if a line was
 * taken, 0 if none is complete. */
int pst__server_command(struct pst_smtp_server *s);

/* --- server_auth.c ------------------------------------------------------- */

/* The AUTH command's check and proceed (the command table's row). */
int pst__server_check_auth(struct pst_smtp_server *s, const uint8_t *arg,
                           size_t len);
void pst__server_proceed_auth(struct pst_smtp_server *s, const uint8_t *arg,
                              size_t len);

/* A line in the AUTH state: the client's answer to a 334 challenge.
 * Returns 1 if a line was taken, 0 if none is complete. */
int pst__server_auth_line(struct pst_smtp_server *s);

/* Write "<prefix>m1 m2" of the mechanisms offered now into out (size
 * octets); "" and 0 if none is.  Returns the length. */
size_t pst__server_auth_keyword(const struct pst_smtp_server *s,
                                const char *prefix, char *out, size_t size);

/* The driver answered AUTH_LOOKUP or AUTH_VERIFY. */
void pst__server_answer_auth(struct pst_smtp_server *s,
                             const struct pst_smtp_answer *a);

/* End the SASL exchange and give its buffers back. */
void pst__server_end_sasl(struct pst_smtp_server *s);

/* --- server_data.c ------------------------------------------------------- */

/*
 * Take the next complete command or AUTH line from the input (DATA has its
 * own reader).  Returns 1 with a line in *line, *len (line end excluded)
 * and LINE_* in *flags, 0 if more input is needed.
 */
int pst__server_read_line(struct pst_smtp_server *s,
                          enum server_line_mode mode, const uint8_t **line,
                          size_t *len, unsigned *flags);

/* A line in DATA: content or the end.  Returns 1 if a line was taken, 0
 * if none is complete. */
int pst__server_data_line(struct pst_smtp_server *s);

#endif
