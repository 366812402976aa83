/*
 * postern - the SMTP client session (sans-IO).
 *
 * A session submits one message (or, in probe mode, only looks): it reads
 * the greeting, says EHLO, starts TLS when asked, authenticates with the
 * strongest mechanism both sides allow, and sends MAIL, RCPT, DATA and
 * QUIT.  With reuse, it submits several, one after the other, on the same
 * connection (as Postfix's smtp client reuses its connections).  The
 * caller moves bytes: pst_smtp_client_feed() with what the server sent,
 * pst_smtp_client_output() and pst_smtp_client_consume() for what to send,
 * and pst_smtp_client_next_event() after every feed for what to do (start
 * TLS, send the message, report the result, give the next message,
 * close).  The session reads no clock: the caller times out a server that
 * says nothing, and treats a connection closed before
 * PST_SMTP_CLIENT_EV_CLOSE as a failure of the session.
 */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/error.h>
#include <postern/sasl.h>
#include <postern/smtp_reply.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PST_SMTP_CLIENT_MAX_REPLY_LINE PST_SMTP_REPLY_MAX_LINE /* octets
                                               with CRLF */
#define PST_SMTP_CLIENT_MAX_REPLY_LINES 200 /* lines in one reply */
#define PST_SMTP_CLIENT_MAX_OUTPUT (1u << 20) /* pending output, octets */
#define PST_SMTP_CLIENT_MAX_MECHS 16 /* names in cfg.mechs */
#define PST_SMTP_CLIENT_MAX_AUTH_LINE 12288 /* a SASL response line, CRLF
                                               excluded (RFC 4954 §4); an
                                               initial response goes on
                                               the AUTH line only when the
                                               line fits in 512 octets */

enum pst_smtp_client_starttls {
    PST_SMTP_CLIENT_STARTTLS_AUTO = 0, /* use it when the server offers it */
    PST_SMTP_CLIENT_STARTTLS_REQUIRED, /* fail unless TLS can be had */
    PST_SMTP_CLIENT_STARTTLS_NEVER,    /* never send STARTTLS */
};

/* Extensions the server announced in its last EHLO reply. */
#define PST_SMTP_CLIENT_EXT_PIPELINING 0x01u
#define PST_SMTP_CLIENT_EXT_SIZE       0x02u
#define PST_SMTP_CLIENT_EXT_STARTTLS   0x04u
#define PST_SMTP_CLIENT_EXT_AUTH       0x08u
#define PST_SMTP_CLIENT_EXT_8BITMIME   0x10u
#define PST_SMTP_CLIENT_EXT_ENHANCED   0x20u /* ENHANCEDSTATUSCODES */
#define PST_SMTP_CLIENT_EXT_SMTPUTF8   0x40u

/* Envelope flags (mail_flags, pst_smtp_client_next_message()). */
#define PST_SMTP_CLIENT_MAIL_8BITMIME 0x01u /* BODY=8BITMIME when the server
                                               offers 8BITMIME (RFC 6152) */
#define PST_SMTP_CLIENT_MAIL_SMTPUTF8 0x02u /* SMTPUTF8 (RFC 6531 §3.4): the
                                               envelope or header has UTF-8;
                                               a server that does not offer
                                               it fails the message with
                                               PST_ENOTSUP, no MAIL sent */
#define PST_SMTP_CLIENT_MAIL_AUTH_NULL 0x04u /* AUTH=<> when the server
                                               offers AUTH (RFC 4954 §5: a
                                               relay that does not vouch
                                               for the original submitter) */

/* pst_smtp_client_check_mailbox(): a local part alone passes too.  The
 * session always allows it. */
#define PST_SMTP_CLIENT_PATH_LOCAL 0x100u

/* Trace directions (the dir argument of the trace callback). */
#define PST_SMTP_CLIENT_TRACE_IN    0 /* server -> client */
#define PST_SMTP_CLIENT_TRACE_OUT   1 /* client -> server */
#define PST_SMTP_CLIENT_TRACE_PHASE 2 /* a phase change, "run -> sending";
                                         only with trace_phases */

struct pst_smtp_client_config {
    const char *helo;            /* [in] EHLO argument (FQDN or [addr]) */
    enum pst_smtp_client_starttls starttls;
    int implicit_tls;            /* TLS is up from the start (smtps) */
    int allow_plaintext_auth;    /* PLAIN/LOGIN without TLS */
    const char *mech;            /* [in] force this mechanism; NULL: the
                                    first of mechs, or the strongest both
                                    sides allow */
    const char *const *mechs;    /* [in] NULL-terminated, copied: the
                                    mechanisms allowed, in order of
                                    preference; the first one the server
                                    offers (and that may be used: PLAIN
                                    and LOGIN need TLS or
                                    allow_plaintext_auth) wins.  Names
                                    lib/sasl does not implement are
                                    ignored.  NULL: with a token
                                    (sasl->token), OAUTHBEARER then
                                    XOAUTH2 (PLAIN, LOGIN and these need
                                    TLS or allow_plaintext_auth); then
                                    every other mechanism, the strongest
                                    first (those need a password) */
    const struct pst_sasl_client_config *sasl; /* [in] NULL: no AUTH; the
                                    session copies what it needs.  Its
                                    authcid may be NULL only with
                                    tls_client_cert (EXTERNAL).  Its
                                    digest_qops ask for a DIGEST-MD5
                                    security layer (RFC 4954 §4), never
                                    used under TLS; its channel-binding
                                    fields are ignored: see
                                    pst_smtp_client_tls_binding() */
    int tls_client_cert;         /* the TLS connection presents a client
                                    certificate: EXTERNAL (RFC 4422 App.
                                    A) may be chosen, and is preferred
                                    when the server offers it */
    int probe;                   /* stop after EHLO (and AUTH): no MAIL */
    const char *mail_from;       /* [in] reverse-path without <> ("" ok) */
    const char *const *rcpt;     /* [in] forward-paths without <> */
    size_t nrcpt;
    uint64_t size;               /* SIZE= estimate (RFC 1870), 0: none */
    int body_8bit;               /* declare BODY=8BITMIME when offered
                                    (as PST_SMTP_CLIENT_MAIL_8BITMIME) */
    unsigned mail_flags;         /* PST_SMTP_CLIENT_MAIL_* of the first
                                    message */
    int partial_rcpt;            /* report each RCPT's reply (a
                                    PST_SMTP_CLIENT_EV_RCPT event) and
                                    send the message when at least one
                                    recipient was accepted (RFC 5321
                                    §3.3); 0: any refusal fails it */
    int reuse;                   /* several messages: after each one
                                    (PST_SMTP_CLIENT_EV_DONE or a FAIL of
                                    the message), a
                                    PST_SMTP_CLIENT_EV_READY asks for
                                    pst_smtp_client_next_message() or
                                    pst_smtp_client_quit(); mail_from NULL
                                    and nrcpt 0: no first message, READY
                                    once the session is set up.  0: QUIT
                                    after the message */
    /* Called for every line sent or received, AUTH payloads replaced by
     * "<redacted>" and message content summarised, and with trace_phases
     * for every phase change; line ([in] borrowed for the call) is not
     * NUL-terminated.  May be NULL. */
    void (*trace)(void *ctx, int dir, const char *line, size_t len);
    void *trace_ctx;
    int trace_phases;            /* also trace PST_SMTP_CLIENT_TRACE_PHASE */
};

enum pst_smtp_client_event_type {
    PST_SMTP_CLIENT_EV_STARTTLS = 1, /* start the TLS handshake now, then
                                        call pst_smtp_client_tls_started() */
    PST_SMTP_CLIENT_EV_EHLO,  /* an EHLO reply was read:
                                 pst_smtp_client_ext() and
                                 pst_smtp_client_mechs() are current */
    PST_SMTP_CLIENT_EV_AUTH,  /* authenticated with ev.mech */
    PST_SMTP_CLIENT_EV_DATA,  /* send the message with
                                 pst_smtp_client_data() */
    PST_SMTP_CLIENT_EV_DONE,  /* success (ev.reply: the final reply) */
    PST_SMTP_CLIENT_EV_FAIL,  /* failure: ev.error and ev.reply */
    PST_SMTP_CLIENT_EV_CLOSE, /* the session is over: close the socket
                                 once the output is sent */
    PST_SMTP_CLIENT_EV_RCPT,  /* partial_rcpt: the reply to one RCPT
                                 (ev.rcpt_index, ev.rcpt, ev.code,
                                 ev.enhanced, ev.reply) */
    PST_SMTP_CLIENT_EV_READY, /* reuse: the message is over and every
                                 reply to it is in; call
                                 pst_smtp_client_next_message() or
                                 pst_smtp_client_quit() */
};

struct pst_smtp_client_event {
    enum pst_smtp_client_event_type type;
    int error;          /* FAIL (of the session, or with reuse of the
                           message when READY follows rather than
                           CLOSE): PST_ETEMP (4xx), PST_EREJECT (5xx),
                           PST_EAUTH (authentication refused),
                           PST_ENOTSUP (mechanism, STARTTLS or SMTPUTF8
                           unavailable),
                           PST_EWEAK (would send a password in clear),
                           PST_EFORGED (server proof wrong, or a
                           security-layer buffer that fails its
                           check), PST_EPROTO
                           (malformed reply), PST_ENOMEM */
    int code;           /* reply code of ev.reply, or 0 */
    const char *reply;  /* [out] borrowed until the next call: the reply
                           lines joined with "\n", or an explanation */
    const char *enhanced; /* [out] borrowed, as reply: the enhanced status
                           code of the reply's first line ("5.1.1", RFC
                           3463), "" if none */
    const char *stage;  /* "greeting", "EHLO", "HELO", "STARTTLS", "AUTH",
                           "MAIL", "RCPT", "DATA", "message", "RSET",
                           "QUIT", "idle" (a reply nothing asked for) */
    const char *mech;   /* AUTH: mechanism name */
    /* RCPT: */
    size_t rcpt_index;  /* the recipient's index in the message's list */
    const char *rcpt;   /* [out] borrowed, as reply: its address */
};

struct pst_smtp_client;

/*
 * Start a session.  cfg ([in]) is copied, with the strings and the SASL
 * settings (password included, wiped on free).
 * *out ([out] owned) is freed with pst_smtp_client_free().
 * Returns: 0, PST_EINVAL (missing helo, sender or recipients, an address
 * pst_smtp_client_check_mailbox() refuses with the message's flags and
 * PST_SMTP_CLIENT_PATH_LOCAL (the sender may also be "", the null
 * reverse-path), unknown forced mechanism, more than
 * PST_SMTP_CLIENT_MAX_MECHS names in mechs or a name that is empty, over
 * 64 octets or not printable without spaces), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_client_new(const struct pst_smtp_client_config *cfg,
                                   struct pst_smtp_client **out);

/* Wipe and free c; NULL is a no-op. */
PST_EXTERN void pst_smtp_client_free(struct pst_smtp_client *c);

/*
 * Bytes from the server (in, [in] borrowed).  All are consumed; a partial
 * line is kept.  Malformed replies become a FAIL event, never an error.
 * Returns: 0, PST_ESTATE (the session is over), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_client_feed(struct pst_smtp_client *c,
                                    const uint8_t *in, size_t len);

/*
 * The next event in *ev ([out]; its strings borrowed until the next call
 * on c).
 * Returns: 1 with an event, 0 when there is none.
 */
PST_EXTERN int pst_smtp_client_next_event(struct pst_smtp_client *c,
                                          struct pst_smtp_client_event *ev);

/* Bytes to send: *p ([out] borrowed until the next call on c), *len.
 * Under a security layer they are protected buffers. */
PST_EXTERN void pst_smtp_client_output(const struct pst_smtp_client *c,
                                       const uint8_t **p, size_t *len);

/* n bytes of the output were sent. */
PST_EXTERN void pst_smtp_client_consume(struct pst_smtp_client *c,
                                        size_t n);

/*
 * The TLS handshake asked for by PST_SMTP_CLIENT_EV_STARTTLS is done (RFC
 * 3207 §4.2: everything learned before is forgotten and EHLO is sent
 * again).
 * Returns: 0, PST_ESTATE (no handshake was asked for), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_client_tls_started(struct pst_smtp_client *c);

/*
 * After PST_SMTP_CLIENT_EV_DATA: message bytes (in, [in] borrowed), RFC
 * 5322 text with LF or CRLF line ends.  Bare LF and bare CR become CRLF,
 * lines starting with "." are dot-stuffed (RFC 5321 §4.5.2); last != 0
 * ends the message (CRLF "." CRLF).  Feed at most what fits: when the
 * pending output passes PST_SMTP_CLIENT_MAX_OUTPUT, send some first.
 * Returns: 0, PST_ESTATE (no DATA phase), PST_ELIMIT (output full: send
 * and retry with the same bytes), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_client_data(struct pst_smtp_client *c,
                                    const uint8_t *in, size_t len, int last);

/*
 * After PST_SMTP_CLIENT_EV_READY: submit the next message on the same
 * connection.  mail_from ([in], "" for the null reverse-path) and rcpt
 * ([in], nrcpt forward-paths, without <>) are copied; size is the SIZE=
 * estimate (RFC 1870; 0: none), flags PST_SMTP_CLIENT_MAIL_*.  After a
 * transaction that failed, RSET goes first (RFC 5321 §4.1.1.5).  The
 * message's events follow, as for the first one.
 * Returns: 0, PST_ESTATE (not waiting for a message; also when the
 * session failed after it queued READY: its FAIL and CLOSE follow),
 * PST_EINVAL (no sender or recipient, or an address the config would
 * refuse), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_client_next_message(struct pst_smtp_client *c,
                                            const char *mail_from,
                                            const char *const *rcpt,
                                            size_t nrcpt, uint64_t size,
                                            unsigned flags);

/*
 * After PST_SMTP_CLIENT_EV_READY: end the session (QUIT; then
 * PST_SMTP_CLIENT_EV_CLOSE).
 * Returns: 0, PST_ESTATE (not waiting for a message, as above).
 */
PST_EXTERN int pst_smtp_client_quit(struct pst_smtp_client *c);

/*
 * The channel binding of the TLS connection (RFC 5802 §6), once the
 * handshake is done: after pst_smtp_client_tls_started(), or with
 * implicit TLS before the first byte is fed.  With it, SCRAM-SHA-256-PLUS
 * and SCRAM-SHA-1-PLUS are preferred when the server offers them (and
 * cfg.mechs does not say otherwise), and a plain SCRAM exchange tells a
 * server that offered no -PLUS that the client could bind ("y", so a
 * server whose -PLUS was stripped by a man in the middle refuses it).
 * cb_type ([in], copied): "tls-exporter" (RFC 9266, TLS 1.3) or
 * "tls-unique" (RFC 5929, TLS 1.2); cb_data ([in], cb_len octets,
 * copied and wiped on free).
 * Returns: 0, PST_ESTATE (TLS is not up), PST_EINVAL (no type or data, a
 * type that is not an RFC 5802 cb-name), PST_ELIMIT (cb_len above
 * PST_SASL_MAX_CB_DATA).
 */
PST_EXTERN int pst_smtp_client_tls_binding(struct pst_smtp_client *c,
                                           const char *cb_type,
                                           const uint8_t *cb_data,
                                           size_t cb_len);

/*
 * The security layer the session runs, as pst_smtp_server_layer(): from
 * the 235 on, output() gives protected buffers and feed() takes them.
 */
PST_EXTERN unsigned pst_smtp_client_layer(const struct pst_smtp_client *c,
                                          unsigned *cipher);

/*
 * Whether addr ([in], without <>) may go in MAIL FROM or RCPT TO: a
 * Mailbox as RFC 5321 §4.1.2 writes it (a Dot-string or a Quoted-string
 * such as "john doe", "@", a domain or an address literal), the local
 * part at most 64 octets, the domain 255, the path with its <> 256
 * (§4.5.3.1).  flags: PST_SMTP_CLIENT_MAIL_SMTPUTF8 also admits UTF-8
 * (RFC 3629) in the local part and the domain (RFC 6531 §3.3);
 * PST_SMTP_CLIENT_PATH_LOCAL a local part alone ("Postmaster", RFC 5321
 * §4.1.1.3; "root" as sendmail's callers give it, for the server to
 * qualify); other bits are ignored.  The same parser reads the paths of
 * libpostern's server.
 * Returns: 0, PST_EINVAL (not a Mailbox; "" or NULL), PST_ELIMIT (too
 * long), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_client_check_mailbox(const char *addr,
                                             unsigned flags);

/*
 * After a FAIL of the AUTH stage with a bearer mechanism (XOAUTH2,
 * OAUTHBEARER): the JSON error challenge the server sent before refusing
 * the token (RFC 7628 §3.2.2; Google's {"status":"401",...}), as
 * pst_sasl_client_error_json() keeps it.  Raw bytes from the server: make
 * them printable before showing them.
 * Returns: the JSON ([out] borrowed until pst_smtp_client_free(); *len
 * its length), or NULL with *len 0 when there is none (another
 * mechanism, a server that refused without one, as Microsoft 365 does).
 */
PST_EXTERN const uint8_t *pst_smtp_client_auth_error_json(
    const struct pst_smtp_client *c, size_t *len);

/* PST_SMTP_CLIENT_EXT_* announced in the last EHLO reply. */
PST_EXTERN unsigned pst_smtp_client_ext(const struct pst_smtp_client *c);

/*
 * The AUTH mechanisms announced in the last EHLO reply (AUTH and the
 * legacy AUTH= line), space separated, upper case; "" if none.  Borrowed
 * until the next call on c.
 */
PST_EXTERN const char *pst_smtp_client_mechs(
    const struct pst_smtp_client *c);

/* The SIZE limit announced (0: none or unlimited). */
PST_EXTERN uint64_t pst_smtp_client_size_limit(
    const struct pst_smtp_client *c);

/* The greeting (220) text, once read; else "".  Borrowed, as above. */
PST_EXTERN const char *pst_smtp_client_greeting(
    const struct pst_smtp_client *c);

/* The last EHLO reply's lines joined with "\n"; else "".  Borrowed. */
PST_EXTERN const char *pst_smtp_client_ehlo_reply(
    const struct pst_smtp_client *c);

/* Whether TLS is up (implicit or after STARTTLS). */
PST_EXTERN int pst_smtp_client_tls_active(const struct pst_smtp_client *c);

/*
 * The mechanism the session would pick now from what the server offers
 * (cfg.mech, else cfg.mechs, else the strongest), or NULL.  Probe uses it;
 * send uses it through the session.
 */
PST_EXTERN const struct pst_sasl_mech *pst_smtp_client_choose_mech(
    const struct pst_smtp_client *c);

#ifdef __cplusplus
}
#endif
#endif
