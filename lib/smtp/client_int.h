/*
 * The client session's internals, shared by its files:
 *   client.c       events, commands out, replies in, the stages' dispatch,
 *                  the public API
 *   client_ehlo.c  the EHLO reply: extensions and AUTH mechanisms
 *   client_auth.c  choosing a mechanism and the AUTH exchange (RFC 4954)
 *   client_mail.c  MAIL, RCPT, DATA and the message (RFC 5321 §3.3)
 *   client_layer.c the SASL security layer after AUTH (RFC 4954 §4)
 * Nothing here is exported: pst__ names are hidden by the version script.
 */
#ifndef POSTERN_SMTP_CLIENT_INT_H
#define POSTERN_SMTP_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/smtp_client.h>

#include "../internal.h"

#define CLIENT_MAX_EXPECT 256 /* replies awaited at once (pipelined RCPTs) */
#define CLIENT_RCPT_WINDOW (CLIENT_MAX_EXPECT - 8) /* RCPTs awaiting replies */
#define CLIENT_MAX_RCPT 100000 /* recipients of one message */
#define CLIENT_MAX_EVENTS (CLIENT_MAX_EXPECT + 16) /* one a reply, and a
                                       few more: the caller drains them
                                       after every feed */
#define CLIENT_CMD_LINE   512 /* RFC 5321 §4.5.3.1.4, incl. CRLF */

/* What a reply answers: X(name, text), the text is ev.stage. */
#define CLIENT_STAGE_MAP(X)                                                  \
    X(GREETING, "greeting")                                                  \
    X(EHLO, "EHLO")                                                          \
    X(HELO, "HELO")                                                          \
    X(STARTTLS, "STARTTLS")                                                  \
    X(AUTH, "AUTH")                                                          \
    X(MAIL, "MAIL")                                                          \
    X(RCPT, "RCPT")                                                          \
    X(DATA, "DATA")                                                          \
    X(DOT, "message")                                                        \
    X(RSET, "RSET")                                                          \
    X(QUIT, "QUIT")                                                          \
    X(IDLE, "idle")         /* nothing asked: a reply between messages */

enum client_stage {
#define CLIENT_STAGE_ENUM_(name, text) STAGE_##name,
    CLIENT_STAGE_MAP(CLIENT_STAGE_ENUM_)
#undef CLIENT_STAGE_ENUM_
};

/* Phases of the session: X(name, text).  Every change goes through
 * pst__client_enter_phase(). */
#define CLIENT_PHASE_MAP(X)                                                  \
    X(RUN, "run")           /* commands and replies flow */                  \
    X(TLS_WAIT, "tls-wait") /* STARTTLS accepted: waiting for the           \
                               handshake */                                  \
    X(SENDING, "sending")   /* 354 received: message bytes from the         \
                               caller */                                     \
    X(IDLE, "idle")         /* reuse: a message is over; waiting for      \
                               next_message() or quit() */                   \
    X(ENDING, "ending")     /* failed or done: only QUIT's reply matters */  \
    X(CLOSED, "closed")     /* nothing more */

enum client_phase {
#define CLIENT_PHASE_ENUM_(name, text) PHASE_##name,
    CLIENT_PHASE_MAP(CLIENT_PHASE_ENUM_)
#undef CLIENT_PHASE_ENUM_
};

struct client_event {
    struct pst_smtp_client_event ev;
    struct pst_buf text;                      /* ev.reply */
    struct pst_buf addr;                      /* ev.rcpt */
    char enhanced[PST_SMTP_REPLY_MAX_ENHANCED]; /* ev.enhanced */
};

struct pst_smtp_client {
    /* Configuration (copied): */
    struct pst_buf helo;
    struct pst_buf forced_mech;
    const struct pst_sasl_mech *prefs[PST_SMTP_CLIENT_MAX_MECHS];
    size_t nprefs;               /* known to lib/sasl, in the given order */
    int have_prefs;              /* cfg.mechs was given */
    struct pst_buf pref_names;   /* every name given, for messages */
    struct pst_sasl_client_config sasl;
    struct pst_buf sasl_authcid, sasl_authzid, sasl_password, sasl_service,
        sasl_host, sasl_token, sasl_oauth_host;
    int have_sasl;
    int tls_client_cert;         /* EXTERNAL may be used */
    enum pst_smtp_client_starttls starttls;
    int allow_plaintext_auth;
    int probe;
    int partial_rcpt;
    int reuse;
    void (*trace)(void *ctx, int dir, const char *line, size_t len);
    void *trace_ctx;
    int trace_phases;

    /* The message (copied from the config or next_message()): */
    struct pst_buf mail_from;
    char **rcpt;
    size_t nrcpt;                /* 0: none (reuse, no first message) */
    uint64_t size;
    unsigned mail_flags;         /* PST_SMTP_CLIENT_MAIL_* */

    /* State: */
    enum client_phase phase;
    enum client_phase prev_phase;
    int tls;
    int failed;
    int starttls_refused;     /* AUTO mode: the server said no */
    enum client_stage expect[CLIENT_MAX_EXPECT];
    size_t expect_head, expect_len;
    /* The message: */
    int mail_sent;            /* MAIL went out: a failure needs RSET */
    int msg_over;             /* DONE or its FAIL is queued */
    int need_rset;            /* the last transaction failed (RFC 5321
                                 §4.1.1.5: RSET before the next one) */
    size_t rcpt_next;         /* next RCPT to send */
    size_t rcpt_replied;
    size_t rcpt_ok;
    int rcpt_failed_code;
    char rcpt_failed_enh[PST_SMTP_REPLY_MAX_ENHANCED];
    struct pst_buf rcpt_failed;  /* first refusal, for the FAIL event */
    /* Channel binding (pst_smtp_client_tls_binding()): */
    char cb_type[PST_SASL_MAX_CB_NAME + 1];
    uint8_t cb_data[PST_SASL_MAX_CB_DATA]; /* wiped with the session */
    size_t cb_len;
    int authed;                  /* 235 received */
    /* The security layer (RFC 4954 §4): */
    struct pst_sasl_layer *pending_layer; /* negotiated; applies at the
                                    235 */
    struct pst_sasl_layer *layer; /* in force */
    struct pst_buf raw;          /* protected input, not a whole buffer
                                    yet */
    struct pst_buf plain;        /* one unwrapped buffer */
    struct pst_buf wire;         /* protected output */
    struct pst_sasl_client *sc;
    const struct pst_sasl_mech *mech;
    struct pst_buf pending_ir;   /* IR too long for the AUTH line */
    int have_pending_ir;
    int auth_cancelled;          /* sent "*": error saved in auth_error */
    int auth_error;
    int auth_extra_challenge;    /* ... because of one challenge too many */
    int at_line_start;           /* DATA: next byte starts a line */
    int last_cr;                 /* DATA: previous chunk ended in CR */
    uint64_t data_bytes;

    /* Received: */
    struct pst_buf line;         /* partial reply line */
    struct pst_buf reply;        /* lines of the current reply */
    int reply_code;
    char reply_enh[PST_SMTP_REPLY_MAX_ENHANCED]; /* of its first line */
    unsigned reply_lines;
    unsigned ext;
    uint64_t size_limit;
    struct pst_buf mechs;
    struct pst_buf greeting;
    struct pst_buf ehlo;

    /* Sent: */
    struct pst_buf out;
    struct pst_buf scratch;      /* SASL step output (secret) */
    struct pst_buf b64;          /* base64 of a message (secret) */

    struct client_event events[CLIENT_MAX_EVENTS];
    size_t ev_head, ev_len;
    struct pst_buf ev_text;      /* text of the event last returned */
    struct pst_buf ev_addr;      /* ... its recipient */
    char ev_enh[PST_SMTP_REPLY_MAX_ENHANCED]; /* ... its enhanced code */
};

/* --- client.c ------------------------------------------------------------ */

/*
 * The only way to change phase (as the server's pst__server_enter_state()):
 * remembers the old one and, with trace_phases, traces "old -> new".
 */
void pst__client_enter_phase(struct pst_smtp_client *c,
                             enum client_phase phase);

/* Call the trace callback, if any. */
void pst__client_trace(struct pst_smtp_client *c, int dir, const char *line,
                       size_t len);

/* Queue an event; text ([in], may be NULL) is copied.  An event with a
 * code carries the enhanced code of the current reply.
 * Returns: 0, PST_ELIMIT (queue full), PST_ENOMEM. */
int pst__client_event(struct pst_smtp_client *c,
                      enum pst_smtp_client_event_type type, int error,
                      int code, enum client_stage stage, const char *text);

/* The event queued last, not yet returned, or NULL. */
struct client_event *pst__client_last_event(struct pst_smtp_client *c);

/* Queue a command line (without CRLF) and the stage of its reply; trace,
 * if not NULL, is what the transcript shows instead of the line.
 * Returns: 0, PST_ELIMIT, PST_EINVAL, PST_ENOMEM. */
int pst__client_send(struct pst_smtp_client *c, enum client_stage stage,
                     const char *trace, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Send QUIT (or close at once if even that cannot be queued). */
void pst__client_quit(struct pst_smtp_client *c);

/* The session failed: FAIL, then QUIT, or CLOSE when the connection
 * cannot go on.  Only the first failure is reported. */
void pst__client_fail(struct pst_smtp_client *c, int error, int code,
                      enum client_stage stage, const char *text);

/* Fail with the current reply as text (PST_EREJECT or PST_ETEMP). */
void pst__client_fail_reply(struct pst_smtp_client *c, enum client_stage stage);

/* Feed plaintext reply bytes to the line reader; stops early when a
 * security layer starts (the rest is protected).  Returns the octets
 * taken. */
size_t pst__client_feed_lines(struct pst_smtp_client *c, const uint8_t *in,
                              size_t len);

/* --- client_layer.c ------------------------------------------------------ */

/* The 235 came and a layer was negotiated: it applies now (RFC 4954 §4).
 * Returns: 0, PST_ENOMEM. */
int pst__client_layer_start(struct pst_smtp_client *c);

/* Protected bytes from the server: unwrap and read the replies. */
void pst__client_layer_feed(struct pst_smtp_client *c, const uint8_t *in,
                            size_t len);

/* Protect the commands queued since the last call.  Every public call
 * that may queue output ends with it. */
void pst__client_seal(struct pst_smtp_client *c);

/* Octets of output waiting, protected or not. */
size_t pst__client_pending(const struct pst_smtp_client *c);

/* --- client_ehlo.c ------------------------------------------------------- */

/* 1 if the server offered mechanism name (ASCII case-insensitive). */
int pst__client_has_mech(const struct pst_smtp_client *c, const char *name);

/* Read the extensions and mechanisms of the EHLO reply in c->reply.
 * Returns: 0, PST_ENOMEM, PST_ELIMIT. */
int pst__client_parse_ehlo(struct pst_smtp_client *c);

/* --- client_auth.c ------------------------------------------------------- */

/* Choose a mechanism and send AUTH (or fail). */
void pst__client_start_auth(struct pst_smtp_client *c);

/* The reply to one AUTH step is in c->reply. */
void pst__client_auth_reply(struct pst_smtp_client *c);

/* --- client_mail.c ------------------------------------------------------- */

/* 1 if s may be sent as the EHLO argument (no space, control, "<" or
 * ">", at most 256 octets), else 0. */
int pst__client_path_ok(const char *s);

/* Check (pst_smtp_client_check_mailbox() with PST_SMTP_CLIENT_PATH_LOCAL;
 * "" for the null reverse-path) and copy a message's envelope, and forget
 * the last message.
 * Returns: 0, PST_EINVAL, PST_ENOMEM. */
int pst__client_set_envelope(struct pst_smtp_client *c,
                             const char *mail_from, const char *const *rcpt,
                             size_t nrcpt, uint64_t size, unsigned flags);

/* Free the envelope's memory (pst_smtp_client_free()). */
void pst__client_clear_envelope(struct pst_smtp_client *c);

/* The session is set up (EHLO, TLS, AUTH): send the first message, or
 * with reuse and none, wait for the caller. */
void pst__client_begin(struct pst_smtp_client *c);

/* The message failed, not the session (see client_mail.c). */
void pst__client_msg_fail(struct pst_smtp_client *c, int error, int code,
                          enum client_stage stage, const char *text);

/* With reuse: PST_SMTP_CLIENT_EV_READY once the message is over and no
 * reply is awaited.  Called after every reply. */
void pst__client_check_ready(struct pst_smtp_client *c);

/* A reply to MAIL, RCPT, DATA, the final dot or RSET (stage st) is in
 * c->reply. */
void pst__client_mail_reply(struct pst_smtp_client *c, enum client_stage st);

#endif
