/*
 * postern - the SMTP server session (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS and AUTH), as a state machine
 * that does no I/O.
 *
 * The driver (posternd, a test, a fuzzer) owns the socket, TLS, the clock,
 * the user store and the spool.  It calls pst_smtp_server_start() when a
 * client connects, pst_smtp_server_feed() with every byte the client sends,
 * pst_smtp_server_next_event() until it returns 0, then sends what
 * pst_smtp_server_output() holds.  The session acts on buffered input only
 * inside pst_smtp_server_next_event() and pst_smtp_server_answer(): feed()
 * just copies bytes into the session's bounded input buffer.
 *
 * An event with need_answer set parks the session: it keeps buffering
 * pipelined input up to its limit but acts on none of it until the driver
 * answers with pst_smtp_server_answer() (pst_smtp_server_tls_started() for
 * PST_SMTP_EV_STARTTLS).  The driver may answer later, from another loop
 * iteration (after an asynchronous lookup or a password hash on a thread
 * pool), but from one thread at a time.
 *
 * A typical loop:
 *
 *     pst_smtp_server_feed(s, buf, n, &used);    (keep buf + used if short)
 *     while ((rc = pst_smtp_server_next_event(s, &ev)) == 1)
 *         handle(&ev);                  (may call pst_smtp_server_answer)
 *     pst_smtp_server_output(s, &p, &len);
 *     write(p, len); pst_smtp_server_consume(s, written);
 *     (after PST_SMTP_EV_CLOSE, once the output is written: close)
 */
#ifndef POSTERN_SMTP_H
#define POSTERN_SMTP_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/cred.h>
#include <postern/error.h>
#include <postern/rand.h>
#include <postern/sasl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits (RFC 5321 §4.5.3.1, RFC 4954 §4). */
#define PST_SMTP_MAX_CMD_LINE   512   /* command line, CRLF included */
#define PST_SMTP_MAX_TEXT_LINE  1000  /* DATA line, CRLF included */
#define PST_SMTP_MAX_AUTH_LINE  12288 /* AUTH line or continuation,
                                         CRLF excluded */
#define PST_SMTP_MAX_PATH       256   /* reverse- or forward-path with <> */
#define PST_SMTP_MAX_DOMAIN     255   /* EHLO/HELO argument */
#define PST_SMTP_MAX_INPUT      16384 /* buffered input; feed() stops there */
#define PST_SMTP_DEFAULT_MAX_RCPT   100 /* RFC 5321 §4.5.3.1.8 minimum */
#define PST_SMTP_DEFAULT_MAX_ERRORS 10  /* errors in a session, then 421 */
#define PST_SMTP_MIN_MAX_ERRORS     3   /* RFC 4954 §9: not before 3
                                           failed AUTHs */
#define PST_SMTP_FOLD_AT        998   /* long_lines = fold: octets of each
                                         piece (RFC 5322 §2.1.1) */
#define PST_SMTP_MAX_FOLD_LINE  65536 /* long_lines = fold: a longer line
                                         is refused all the same */

/* Session states: X(name, text). */
#define PST_SMTP_STATE_MAP(X)                                                \
    X(NEW,          "new")          /* before pst_smtp_server_start() */     \
    X(GREETING,     "greeting")     /* 220 sent; EHLO/HELO expected */       \
    X(IDLE,         "idle")         /* greeted; no mail transaction */       \
    X(MAIL,         "mail")         /* MAIL accepted; RCPT/DATA expected */  \
    X(DATA,         "data")         /* 354 sent; reading the message */      \
    X(AUTH,         "auth")         /* 334 sent; continuation expected */    \
    X(WAIT_LOOKUP,  "wait-lookup")  /* parked: AUTH_LOOKUP */                \
    X(WAIT_VERIFY,  "wait-verify")  /* parked: AUTH_VERIFY */                \
    X(WAIT_SENDER,  "wait-sender")  /* parked: MAIL */                       \
    X(WAIT_RCPT,    "wait-rcpt")    /* parked: RCPT */                       \
    X(WAIT_STORED,  "wait-stored")  /* parked: DATA_END */                   \
    X(WAIT_TLS,     "wait-tls")     /* parked: STARTTLS handshake */         \
    X(CLOSED,       "closed")       /* 221 or 421 queued; input ignored */

enum pst_smtp_state {
#define PST_SMTP_STATE_ENUM_(name, text) PST_SMTP_STATE_##name,
    PST_SMTP_STATE_MAP(PST_SMTP_STATE_ENUM_)
#undef PST_SMTP_STATE_ENUM_
};

/* The name of a state ("wait-lookup"); "unknown" for a bad value. */
PST_EXTERN const char *pst_smtp_state_name(enum pst_smtp_state st);

/* Listener policy. */
enum pst_smtp_tls_mode {
    PST_SMTP_TLS_NONE = 0,  /* plaintext only; STARTTLS not offered */
    PST_SMTP_TLS_STARTTLS,  /* STARTTLS offered (RFC 3207) */
    PST_SMTP_TLS_IMPLICIT,  /* TLS from the first byte (RFC 8314): call
                               pst_smtp_server_tls_started() before
                               pst_smtp_server_start() */
};

enum pst_smtp_auth_policy {
    PST_SMTP_AUTH_REQUIRED = 0, /* MAIL/RCPT/DATA/VRFY/HELP need AUTH:
                                   530 5.7.0 (RFC 4954 §6) */
    PST_SMTP_AUTH_OPTIONAL,     /* offered; unauthenticated mail allowed */
    PST_SMTP_AUTH_OFF,          /* not offered; AUTH gets 503 5.5.1 */
};

enum pst_smtp_auth_before_tls {
    PST_SMTP_BEFORE_TLS_NONE = 0, /* AUTH offered only under TLS */
    PST_SMTP_BEFORE_TLS_CHALLENGE,/* before TLS only mechanisms without
                                     PST_MECH_SENDS_PASSWORD */
    PST_SMTP_BEFORE_TLS_ALL,      /* every mechanism, TLS or not */
};

enum pst_smtp_sender_check {
    PST_SMTP_SENDER_STRICT = 0, /* an authenticated user sends as its own
                                   name (if an address) or as the driver
                                   allows (a MAIL event to answer); an
                                   unauthenticated client (auth optional)
                                   is not checked */
    PST_SMTP_SENDER_OFF,        /* any sender; MAIL is informational */
};

/*
 * Exceptions for legacy clients (DESIGN.md "Per-client compatibility
 * profiles"); the daemon sets them per client, everything else stays
 * strict.
 */
enum pst_smtp_bare_lf {
    PST_SMTP_BARE_LF_REJECT = 0, /* a bare LF in DATA: 550 5.6.0 */
    PST_SMTP_BARE_LF_NORMALIZE,  /* a bare LF in DATA ends the line, which
                                    is passed on with CRLF; every other
                                    octet kept (a bare CR is still
                                    refused).  Only the exact CR LF "."
                                    CR LF on the wire ends the message: a
                                    "." line with a bare LF before or
                                    after it is dropped, neither content
                                    nor the end (as Postfix's
                                    smtpd_forbid_bare_newline =
                                    normalize) */
};

enum pst_smtp_long_lines {
    PST_SMTP_LONG_LINES_REJECT = 0, /* a DATA line over 1000 octets with
                                       CRLF: 500 5.5.6 */
    PST_SMTP_LONG_LINES_FOLD,       /* such a line is passed on in pieces
                                       of PST_SMTP_FOLD_AT octets, each
                                       with CRLF, no octet removed or
                                       changed; over PST_SMTP_MAX_FOLD_LINE
                                       octets it is refused */
};

/* The exceptions a session used (pst_smtp_server_compat_used()). */
#define PST_SMTP_COMPAT_HELO_AUTH  0x01u /* AUTH after HELO */
#define PST_SMTP_COMPAT_BARE_LF    0x02u /* a bare LF normalized, or a "."
                                            line dropped */
#define PST_SMTP_COMPAT_LONG_LINES 0x04u /* a line folded */

/* A trace line for logs and debugging (see the trace callback). */
enum pst_smtp_trace {
    PST_SMTP_TRACE_CLIENT = 0, /* a command line, redacted as
                                  pst_smtp_redact() does; never DATA */
    PST_SMTP_TRACE_SERVER,     /* a reply line, CRLF excluded */
    PST_SMTP_TRACE_STATE,      /* a transition, "idle -> mail" */
};

struct pst_smtp_server_config {
    const char *hostname;           /* [in] FQDN for 220, EHLO, Received,
                                       SASL; required */
    /* Listener policy: */
    enum pst_smtp_tls_mode tls;
    int require_tls;                /* nonzero: every command but EHLO,
                                       STARTTLS, NOOP and QUIT gets
                                       530 5.7.0 before TLS (RFC 3207
                                       §4) */
    enum pst_smtp_auth_policy auth;
    enum pst_smtp_auth_before_tls auth_before_tls;
    const struct pst_sasl_mech *const *mechs; /* [in] NULL-terminated,
                                       in the order advertised; NULL: every
                                       implemented one (pst_sasl_mech_at) */
    int legacy_auth_line;           /* nonzero: also "250-AUTH=..." */
    uint64_t max_message_size;      /* SIZE, octets; 0: no limit */
    unsigned max_recipients;        /* 0: PST_SMTP_DEFAULT_MAX_RCPT */
    unsigned max_errors;            /* client errors in the session (5xx
                                       replies: bad commands, failed AUTH,
                                       refused senders and recipients;
                                       successes between do not reset
                                       the count) before 421 4.7.0; a
                                       failed AUTH closes only from the
                                       third on (RFC 4954 §9); 0:
                                       PST_SMTP_DEFAULT_MAX_ERRORS */
    enum pst_smtp_sender_check sender_check;
    /* Exceptions for legacy clients (default: none): */
    int helo_auth;                  /* nonzero: AUTH after HELO too
                                       (else 503 5.5.1: RFC 4954 §3 makes
                                       AUTH an EHLO extension) */
    enum pst_smtp_bare_lf bare_lf;
    enum pst_smtp_long_lines long_lines;
    /* Passed to every SASL exchange (see struct pst_sasl_server_config): */
    const char *realm;              /* [in] DIGEST-MD5 realm; NULL:
                                       hostname */
    const char *const *uri_hosts;   /* [in] DIGEST-MD5 extra hosts */
    uint64_t timestamp;             /* seconds (CRAM-MD5 challenge) */
    pst_random_fn random;           /* NULL: RAND_bytes */
    void *random_ctx;
    unsigned scram_iterations;      /* 0: 4096 */
    const uint8_t *scram_secret;    /* [in] the server secret for SCRAM's
                                       salts where none is stored (see
                                       struct pst_sasl_server_config);
                                       NULL: random salts */
    size_t scram_secret_len;
    /* The SASL security layer (RFC 4954 §4): DIGEST-MD5 with qop
     * auth-int (RFC 2831 §2.3) or auth-conf (§2.4).  Legacy, and off by
     * default; never offered under TLS, where it adds nothing: */
    int security_layer;             /* nonzero: DIGEST-MD5 offers
                                       auth-int and auth-conf besides
                                       auth on a connection that is not
                                       under TLS */
    unsigned digest_ciphers;        /* PST_SASL_CIPHER_* offered with
                                       auth-conf; 0: every one OpenSSL
                                       provides */
    /* Optional trace: called for each client command line (redacted),
     * reply line and state change; text ([in] borrowed for the call) is
     * not NUL-terminated. */
    void (*trace)(void *ctx, enum pst_smtp_trace what, const char *text,
                  size_t len);
    void *trace_ctx;
};

struct pst_smtp_server; /* one client connection: opaque */

/* Events, X(name). */
#define PST_SMTP_EVENT_MAP(X)                                                \
    X(STARTTLS)    /* ask: the 220 is in the output; send it, run the TLS   \
                      handshake, call pst_smtp_server_tls_started() */       \
    X(AUTH_LOOKUP) /* ask: credentials of user (answer: cred) */             \
    X(AUTH_VERIFY) /* ask: check password against the user's credentials */  \
    X(AUTH_RESULT) /* tell: an exchange ended (ok, user, mech, error,       \
                      reason): for the log and throttling */                 \
    X(MAIL)        /* tell or ask: a transaction starts (forget earlier     \
                      recipients); address is the sender.  Asked when the   \
                      sender check needs the driver (the user does not own  \
                      the address by name) */                               \
    X(RCPT)        /* ask: may address receive this message? */              \
    X(DATA_BEGIN)  /* tell: 354 sent; content follows */                     \
    X(DATA)        /* tell: one line of content (long_lines = fold: a       \
                      piece of one), dot-unstuffed, CRLF included (data,    \
                      len) */                                                \
    X(DATA_END)    /* ask: store the message durably (size) */               \
    X(DATA_ABORT)  /* tell: the message was refused by the session (bare    \
                      CR/LF, line too long, too big): discard it; the       \
                      reply is sent */                                       \
    X(CLOSE)       /* tell: send the output, then close the connection; \
                      reason says why when the session ends on its own:  \
                      "quit", "too many errors", or a refused             \
                      security-layer buffer (then error is PST_EFORGED,   \
                      PST_EPROTO or PST_ELIMIT) */

enum pst_smtp_event_type {
#define PST_SMTP_EVENT_ENUM_(name) PST_SMTP_EV_##name,
    PST_SMTP_EVENT_MAP(PST_SMTP_EVENT_ENUM_)
#undef PST_SMTP_EVENT_ENUM_
};

/* The name of an event type ("AUTH_LOOKUP"); "UNKNOWN" for a bad value. */
PST_EXTERN const char *pst_smtp_event_name(enum pst_smtp_event_type t);

/*
 * An event.  Every pointer is borrowed until the next call on the session;
 * AUTH_VERIFY's password until the answer, pst_smtp_server_close() or
 * pst_smtp_server_free(), whichever comes first: to check it on another
 * thread, copy it (and wipe the copy).  Fields that do not apply to the
 * type are NULL or 0.
 */
struct pst_smtp_event {
    enum pst_smtp_event_type type;
    int need_answer;            /* 1: the session waits for the answer */
    /* AUTH_LOOKUP, AUTH_VERIFY, AUTH_RESULT: */
    const char *mech;           /* mechanism name */
    const char *user;           /* authentication identity (UTF-8, as
                                   the client sent it: make it printable
                                   before logging); NULL in AUTH_RESULT if
                                   none was received */
    const uint8_t *password;    /* AUTH_VERIFY: secret; for
                                   pst_cred_verify() */
    size_t password_len;
    int ok;                     /* AUTH_RESULT: 1 authenticated */
    /* AUTH_RESULT (failure), DATA_ABORT: */
    int error;                  /* PST_E* class: EAUTH, EPROTO, ECANCEL,
                                   ETEMP, ELIMIT, ... */
    const char *reason;         /* for the log only, never a secret */
    /* MAIL, RCPT: */
    const char *address;        /* the path without <> or source route;
                                   "" for the null reverse-path */
    /* MAIL: SIZE= (0: none).  DATA_END, DATA_ABORT: octets received. */
    uint64_t size;
    int body_8bit;              /* MAIL: BODY=8BITMIME */
    /* DATA: */
    const uint8_t *data;
    size_t len;
};

enum pst_smtp_verdict {
    PST_SMTP_ACCEPT = 1,    /* AUTH_LOOKUP: here are the credentials (cred,
                               NULL for an unknown user); AUTH_VERIFY: the
                               password matched; MAIL, RCPT: allowed;
                               DATA_END: stored durably (queue_id) */
    PST_SMTP_REJECT,        /* AUTH_LOOKUP: no such user (same reply as a
                               wrong password unless reply is set);
                               AUTH_VERIFY: mismatch (535 5.7.8); MAIL:
                               553 5.7.1; RCPT: 550 5.1.1; DATA_END:
                               554 5.6.0 */
    PST_SMTP_TEMPFAIL,      /* AUTH_*: 454 4.7.0 (store unavailable);
                               MAIL, RCPT, DATA_END: 451 4.3.0 */
};

struct pst_smtp_answer {
    enum pst_smtp_event_type type;  /* the event answered (checked) */
    enum pst_smtp_verdict verdict;
    const struct pst_cred *cred;    /* [in] AUTH_LOOKUP: borrowed until
                                       the AUTH_RESULT event */
    const char *queue_id;           /* [in] DATA_END + ACCEPT: printable,
                                       no space; copied */
    const char *reply;              /* [in] NULL, or a reply line used
                                       instead of the default for REJECT
                                       (5xx) or TEMPFAIL (4xx), e.g.
                                       "534 5.7.9 Authentication mechanism
                                       is too weak"; copied */
};

/*
 * Create a session.  cfg ([in]) is copied; the strings and arrays it points
 * to must outlive the session.
 * *out ([out] owned) is freed with pst_smtp_server_free().
 * Returns: 0, PST_EINVAL (no hostname, max_errors below
 * PST_SMTP_MIN_MAX_ERRORS, too many mechanisms, auth required where no
 * mechanism can ever be offered, or an enum value out of range),
 * PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_server_new(const struct pst_smtp_server_config *cfg,
                                   struct pst_smtp_server **out);

/* Wipe and free s; NULL is a no-op. */
PST_EXTERN void pst_smtp_server_free(struct pst_smtp_server *s);

/*
 * Queue the greeting "220 <hostname> ESMTP ready" (RFC 5321 §4.2).  With
 * PST_SMTP_TLS_IMPLICIT, pst_smtp_server_tls_started() must come first.
 * Returns: 0, PST_ESTATE (started already, or implicit TLS not up),
 * PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_server_start(struct pst_smtp_server *s);

/*
 * Take bytes from the client: in ([in] borrowed for the call) is copied
 * into the session's input buffer, up to PST_SMTP_MAX_INPUT buffered.
 * *consumed gets how many bytes were taken; when fewer than len, drain
 * events (and answer them) and feed the rest later.  Input is discarded
 * (and counted as consumed) while the session waits for the TLS handshake
 * and after it closed: RFC 3207 §4.2 / CVE-2011-0411.  Under a security
 * layer (pst_smtp_server_layer()) the bytes are the client's protected
 * buffers, held until one is whole (our maxbuf is 65536 octets); a
 * buffer that fails its check ends the session without a reply (a CLOSE
 * event says why).
 * Returns: 0, PST_ESTATE (before pst_smtp_server_start()), PST_EINVAL
 * (NULL argument).
 */
PST_EXTERN int pst_smtp_server_feed(struct pst_smtp_server *s,
                                    const uint8_t *in, size_t len,
                                    size_t *consumed);

/*
 * Act on buffered input until an event happens.  *ev ([out]) is valid,
 * with its pointers, until the next call on s.
 * Returns: 1 (an event in *ev), 0 (none: more input, an answer, or the
 * consumption of output is needed), PST_EINVAL (NULL argument),
 * PST_ENOMEM (the session is broken: free it and close).
 */
PST_EXTERN int pst_smtp_server_next_event(struct pst_smtp_server *s,
                                          struct pst_smtp_event *ev);

/*
 * Answer the pending event that has need_answer set (all but STARTTLS).
 * a ([in]) is borrowed for the call.  The reply and any further events
 * are queued; call pst_smtp_server_next_event() next.
 * Returns: 0, PST_ESTATE (no such event pending), PST_EINVAL (wrong type,
 * bad verdict, reply of the wrong class or not printable, missing or bad
 * queue id), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_server_answer(struct pst_smtp_server *s,
                                      const struct pst_smtp_answer *a);

/*
 * The TLS handshake finished: answers PST_SMTP_EV_STARTTLS, or, with
 * implicit TLS, is called before pst_smtp_server_start().  version and
 * cipher ([in], e.g. "TLSv1.3", "TLS_AES_256_GCM_SHA384"; copied) go into
 * the Received header.  After STARTTLS the session forgets the EHLO, any
 * transaction and any authentication (RFC 3207 §4.2) and waits for a new
 * EHLO; STARTTLS is no longer offered.  Call it before feeding any byte
 * read under TLS: whatever was buffered before is dropped.
 * Returns: 0, PST_ESTATE (no handshake expected), PST_EINVAL (a name that
 * is empty, too long or not printable), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_server_tls_started(struct pst_smtp_server *s,
                                           const char *version,
                                           const char *cipher);

/*
 * What the TLS connection tells SASL (pst_smtp_server_tls_auth()).
 */
struct pst_smtp_tls_auth {
    const char    *cb_type;     /* [in] channel-binding type (RFC 5802
                                   §6): "tls-exporter" (RFC 9266, the
                                   one TLS 1.3 defines) or "tls-unique"
                                   (RFC 5929, TLS 1.2 only); NULL: no
                                   binding, and SCRAM-*-PLUS is not
                                   offered */
    const uint8_t *cb_data;     /* [in] the binding data of this
                                   connection; copied (and wiped) */
    size_t         cb_len;      /* 1..PST_SASL_MAX_CB_DATA */
    const char    *external_id; /* [in] the user the client's verified
                                   certificate maps to (EXTERNAL, RFC
                                   4422 App. A), copied; NULL: none, and
                                   AUTH EXTERNAL fails with 535 */
};

/*
 * Hand the session what the TLS handshake established for SASL, once
 * pst_smtp_server_tls_started() has been called and before any byte read
 * under TLS is fed: the channel binding SCRAM-*-PLUS checks, and the
 * identity EXTERNAL logs in as.  SCRAM-*-PLUS is offered only with a
 * binding; EXTERNAL and SCRAM-*-PLUS only under TLS.  A second call
 * replaces the first.
 * ta ([in]) is borrowed for the call.
 * Returns: 0, PST_ESTATE (not under TLS, or waiting for an answer),
 * PST_EINVAL (cb_type that is not an RFC 5802 cb-name, cb_data without
 * cb_type or the other way round, an external_id that is empty, not
 * printable UTF-8 or longer than PST_SASL_MAX_NAME), PST_ELIMIT (cb_len
 * above PST_SASL_MAX_CB_DATA).
 */
PST_EXTERN int pst_smtp_server_tls_auth(struct pst_smtp_server *s,
                                        const struct pst_smtp_tls_auth *ta);

/*
 * The security layer the session runs, if any: PST_SASL_QOP_AUTH_INT or
 * PST_SASL_QOP_AUTH_CONF once a DIGEST-MD5 exchange negotiated one (from
 * the octet after its 235 reply, RFC 4954 §4: feed() then takes the
 * protected buffers the client sends and output() gives protected
 * buffers), else 0.  *cipher ([out], may be NULL) gets its
 * PST_SASL_CIPHER_*, 0 for auth-int.
 */
PST_EXTERN unsigned pst_smtp_server_layer(const struct pst_smtp_server *s,
                                          unsigned *cipher);

/* Why the driver ends a session. */
enum pst_smtp_close_reason {
    PST_SMTP_CLOSE_TIMEOUT = 0, /* 421 4.4.2 (RFC 5321 §4.5.3.2) */
    PST_SMTP_CLOSE_SHUTDOWN,    /* 421 4.3.2 service shutting down */
    PST_SMTP_CLOSE_BUSY,        /* 421 4.7.0 too many connections; may
                                   replace pst_smtp_server_start() */
    PST_SMTP_CLOSE_AUTH_LOCKOUT,/* 421 4.7.0 too many failed
                                   authentications from this address */
};

/*
 * End the session from the driver's side: queue a 421 reply and a CLOSE
 * event, drop any pending event and buffered input.
 * Returns: 0, PST_ESTATE (already closed), PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_server_close(struct pst_smtp_server *s,
                                     enum pst_smtp_close_reason why);

/*
 * Bytes to send: *p ([out] borrowed until the next call on s) and *len
 * (0 when nothing is pending).  Under a security layer the replies queued
 * since the last call are protected here, in buffers no larger than the
 * client's maxbuf (the 235 before them goes in clear).
 * Returns: 1 when the output ends a pipelining group (the reply to EHLO,
 * DATA, QUIT, NOOP, VRFY, HELP, STARTTLS or AUTH, RFC 2920 §3.2), 0 when
 * it may wait for the rest of the group; a driver that sends everything
 * after pst_smtp_server_next_event() returns 0 need not look.
 */
PST_EXTERN int pst_smtp_server_output(struct pst_smtp_server *s,
                                      const uint8_t **p, size_t *len);

/*
 * Mark n bytes of the output as sent (n beyond it is clamped).  The
 * session stops acting on input while more than 16 KiB of output wait:
 * call pst_smtp_server_next_event() again after consuming.
 */
PST_EXTERN void pst_smtp_server_consume(struct pst_smtp_server *s,
                                        size_t n);

/* The current state, and (if prev is not NULL) the one before it. */
PST_EXTERN enum pst_smtp_state pst_smtp_server_state(
    const struct pst_smtp_server *s, enum pst_smtp_state *prev);

/*
 * Who the client authenticated as: the authentication identity, or NULL
 * if it has not.  *mech ([out], may be NULL) gets the mechanism name.
 * Both borrowed until the session is freed or TLS starts.
 */
PST_EXTERN const char *pst_smtp_server_user(const struct pst_smtp_server *s,
                                            const char **mech);

/*
 * The exceptions of the config (helo_auth, bare_lf, long_lines) the
 * session has used so far: PST_SMTP_COMPAT_* bits, 0 if none; for a log
 * line such as "compat profile=scanners used=helo_auth,bare_lf" when the
 * session ends.
 */
PST_EXTERN unsigned pst_smtp_server_compat_used(
    const struct pst_smtp_server *s);

/* The EHLO/HELO argument, or NULL before one (borrowed, as above). */
PST_EXTERN const char *pst_smtp_server_helo(const struct pst_smtp_server *s);

/* What the driver knows about the message for its Received header. */
struct pst_smtp_received {
    const char *peer_addr;  /* [in] "192.0.2.1" or "IPv6:2001:db8::1" */
    const char *peer_name;  /* [in] verified reverse name, or NULL */
    const char *queue_id;   /* [in] required */
    const char *recipient;  /* [in] "for <...>" clause, or NULL (RFC 5321
                               §7.2: only for a single recipient) */
    const char *date;       /* [in] RFC 5322 date-time, e.g. "Tue, 2 Jan
                               2024 10:00:00 +0000": the library reads no
                               clock */
};

/*
 * Append a Received header field (RFC 5321 §4.4), CRLF-terminated and
 * folded, to out: the HELO name, peer, TLS version and cipher, and the
 * protocol "with" ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848; "SMTP" after
 * HELO).  Strings in r ([in] borrowed) must be printable ASCII.
 * Returns: 0, PST_EINVAL (a missing or unprintable field), PST_ESTATE
 * (before EHLO/HELO), PST_ELIMIT, PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_server_received(const struct pst_smtp_server *s,
                                        const struct pst_smtp_received *r,
                                        struct pst_buf *out);

/*
 * Append a client line ([in] borrowed, CRLF excluded) as a transcript may
 * show it: an AUTH continuation (auth_continuation != 0) becomes
 * "********", an AUTH command keeps its mechanism and loses its initial
 * response ("AUTH PLAIN ********"), other bytes outside printable ASCII
 * become "?".
 * Returns: 0, PST_ELIMIT, PST_ENOMEM.
 */
PST_EXTERN int pst_smtp_redact(const uint8_t *line, size_t len,
                               int auth_continuation, struct pst_buf *out);

#ifdef __cplusplus
}
#endif
#endif
