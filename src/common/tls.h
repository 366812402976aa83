/*
 * src/common - TLS over memory BIOs (OpenSSL), for both programs.
 *
 * The programs own the sockets; this module owns the TLS state.  Ciphertext
 * read from the socket goes in with tls_feed(), plaintext comes out of
 * tls_read(); plaintext goes in with tls_write(), ciphertext to send comes
 * out of tls_pending_out() / tls_consume_out().  The handshake is driven by
 * the same calls, so one event loop drives plaintext and TLS connections
 * alike.
 *
 * The driver's loop, after every call on a connection (including a failed
 * one, which may have queued an alert):
 *
 *     while ((n = tls_pending_out(t, &p)) > 0) {
 *         copy p[0..n) into a write request; tls_consume_out(t, n);
 *     }
 *
 * and, on socket input: tls_feed(), then tls_handshake() until it is
 * complete, then tls_read() until it returns TLS_WANT_MORE.  The pump at
 * the end of this file does both for a driver that attaches its
 * callbacks (tls_set_io(); then tls_input(), tls_send(), tls_flush()):
 * every program drives its connections through it.
 *
 * Nothing here is program-specific: posternd (server role) and postern
 * (client role) both link it from src/common.  A connection's state is
 * allocated by tls_new() (at STARTTLS or accept on an implicit-TLS port),
 * never before, and wiped by tls_free().
 */
#ifndef COMMON_TLS_H
#define COMMON_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <postern/error.h>

/*
 * Statuses returned by the per-connection calls: >= 0 is progress, < 0 a
 * PST_E* error.  After an error every later call returns the same error
 * (except tls_free), and tls_error() says why.
 */
enum tls_status {
    TLS_OK = 0,        /* done: handshake complete, bytes read or written */
    TLS_WANT_MORE = 1, /* nothing to do until more ciphertext is fed */
    TLS_CLOSED = 2,    /* the peer sent close_notify (tls_read) */
    TLS_STOPPED = 3,   /* a struct tls_io callback asked to stop */
};

/* Protocol versions, for tls_min_version and friends. */
enum tls_version {
    TLS_VERSION_DEFAULT = 0, /* min: TLSv1.2; max: the newest OpenSSL has */
    TLS_VERSION_1_0,         /* "TLSv1" (RFC 2246) */
    TLS_VERSION_1_1,         /* "TLSv1.1" (RFC 4346) */
    TLS_VERSION_1_2,         /* "TLSv1.2" (RFC 5246) */
    TLS_VERSION_1_3,         /* "TLSv1.3" (RFC 8446) */
};

enum tls_role {
    TLS_ROLE_SERVER = 0,
    TLS_ROLE_CLIENT,
};

/* Sizes of the text tls_error() and tls_peer_cert() give. */
#define TLS_ERROR_MAX 256     /* error text, including the NUL */
#define TLS_NAME_MAX 256      /* a distinguished name, including the NUL */
#define TLS_EXPORTER_LEN 32   /* RFC 9266 §2: tls-exporter is 32 bytes */
#define TLS_UNIQUE_MAX 64     /* RFC 5929 §3: a Finished verify_data */
#define TLS_FINGERPRINT_LEN 64 /* SHA-256 in hex */

struct tls_config {
    enum tls_role role;
    /* Server: */
    const char *cert_file;        /* PEM chain, leaf first (required); a
                                     client's certificate, if set (for
                                     SASL EXTERNAL) */
    const char *key_file;         /* PEM private key (required; a
                                     client's with cert_file) */
    /* Client: */
    const char *ca_file;          /* PEM trust anchors; NULL: system store */
    unsigned insecure;            /* 1: do not fail on an unverified peer */
    /* Both: */
    enum tls_version min_version; /* TLS_VERSION_DEFAULT: TLSv1.2 */
    enum tls_version max_version; /* TLS_VERSION_DEFAULT: newest */
};

struct tls_ctx;
struct tls;

/* The certificate the peer presented, as text for logs and `postern probe`. */
struct tls_peer_cert {
    char subject[TLS_NAME_MAX];   /* RFC 2253: "CN=mail.example.test" */
    char issuer[TLS_NAME_MAX];    /* same form; long names are cut */
    char not_after[32];           /* ISO 8601: "2035-01-01 00:00:00Z" */
};

/*
 * Parse a version name as tls_min_version takes it: "TLSv1", "TLSv1.1",
 * "TLSv1.2", "TLSv1.3" (OpenSSL's MinProtocol spelling).
 * Parameters: s [in] borrowed C string; *out [out] the version.
 * Returns: 0, PST_EINVAL (unknown name; *out untouched).
 */
int tls_version_parse(const char *s, enum tls_version *out);

/*
 * The name of v as tls_version_parse() takes it ("TLSv1.2").
 * Returns: a static string, or NULL for TLS_VERSION_DEFAULT and values
 * out of range.
 */
const char *tls_version_name(enum tls_version v);

/*
 * Make a context from cfg: a server context loads its certificate chain
 * and key; a client context loads its trust anchors (ca_file, or the
 * system store).  Contexts are immutable once made and may be shared by
 * threads.
 * Parameters: cfg [in] borrowed for the call; *out [out] owned, free with
 * tls_ctx_free(); err [out] err_size bytes, gets a NUL-terminated reason
 * on failure ("cannot load tls_key /x.pem: No such file or directory").
 * Returns: 0, PST_EINVAL (bad combination, key does not match the
 * certificate), PST_EIO (a file is missing or unreadable as PEM),
 * PST_ENOMEM.
 */
int tls_ctx_new(const struct tls_config *cfg, struct tls_ctx **out,
                char *err, size_t err_size);

/*
 * Drop the caller's reference to ctx.  Connections made from it keep what
 * they need alive (OpenSSL counts references to the SSL_CTX), so the
 * context may be freed while they run.  tls_ctx_free(NULL) is a no-op.
 */
void tls_ctx_free(struct tls_ctx *ctx);

/*
 * A second handle on the context of ctx (the same certificate and key,
 * loaded once), for a reload that cannot read the files again (posternd
 * after dropping root: a key only root may read).
 * Parameters: ctx [in] borrowed; *out [out] owned, free with
 * tls_ctx_free() (each handle holds its own reference).
 * Returns: 0, PST_ENOMEM.
 */
int tls_ctx_share(struct tls_ctx *ctx, struct tls_ctx **out);

/*
 * Reload (SIGHUP): make a new context from cfg and, only if that worked,
 * free *cur and store the new one there.  Connections already running keep
 * the old context; new ones get the new one.  On failure *cur is left as
 * it was, so a bad certificate on disk does not stop a running server.
 * Parameters: *cur [in,out] owned by the caller; err as tls_ctx_new().
 * Returns: as tls_ctx_new().
 */
int tls_ctx_reload(struct tls_ctx **cur, const struct tls_config *cfg,
                   char *err, size_t err_size);

/*
 * Start TLS on a connection: allocate its state.  A client context sends
 * peer_host as SNI (RFC 6066 §3; not for an IP literal) and checks the
 * certificate against it (RFC 6125: DNS name, or IP address in
 * subjectAltName); a server ignores peer_host.  Nothing is sent yet: a
 * client's ClientHello appears after its first tls_handshake(),
 * tls_read() or tls_write().
 * Parameters: ctx [in] borrowed (a reference is kept); peer_host [in]
 * borrowed C string, required for a client context, may be NULL for a
 * server; *out [out] owned, free with tls_free().
 * Returns: 0, PST_EINVAL (client without peer_host, or an empty or
 * over-long one), PST_ENOMEM.
 */
int tls_new(struct tls_ctx *ctx, const char *peer_host, struct tls **out);

/* Free t, wiping its keys and buffers.  tls_free(NULL) is a no-op. */
void tls_free(struct tls *t);

/*
 * Hand over len bytes of ciphertext received from the peer.  They are
 * buffered until tls_handshake() / tls_read() consumes them.
 * Parameters: p [in] borrowed for the call.
 * Returns: 0, PST_ENOMEM, or the sticky error of a failed connection.
 */
int tls_feed(struct tls *t, const uint8_t *p, size_t len);

/*
 * Advance the handshake with what has been fed.  Calling it again once it
 * is complete just returns TLS_OK, so the driver may use it to learn when
 * the handshake ends.
 * Returns: TLS_OK (complete), TLS_WANT_MORE, PST_EAUTH (a client could not
 * verify the server's certificate; tls_error() says why: "certificate
 * verify failed: hostname mismatch"), PST_EPROTO (any other failure: bad
 * bytes, no common version or cipher, an alert from the peer).
 */
int tls_handshake(struct tls *t);

/*
 * Read up to cap bytes of plaintext into buf, advancing the handshake
 * first if needed.  *n gets the count (0 unless TLS_OK).
 * Parameters: buf [out] cap bytes; n [out].
 * Returns: TLS_OK (*n > 0), TLS_WANT_MORE, TLS_CLOSED (close_notify
 * received: no more data will come; answer with tls_shutdown()), or an
 * error as tls_handshake().
 */
int tls_read(struct tls *t, uint8_t *buf, size_t cap, size_t *n);

/*
 * Encrypt len bytes of plaintext, all or nothing.  Before the handshake
 * is complete this advances it and may return TLS_WANT_MORE with nothing
 * written: call again, with the same bytes, after more input.
 * Parameters: p [in] borrowed for the call (may move between retries).
 * Returns: TLS_OK, TLS_WANT_MORE, PST_ESTATE (after tls_shutdown()), or
 * an error as tls_handshake().
 */
int tls_write(struct tls *t, const uint8_t *p, size_t len);

/*
 * Ciphertext waiting to be sent: *p points at it, the return value is its
 * length (0: none).  Parameters: *p [out] borrowed until the next call on
 * t.  Returns: the byte count.
 */
size_t tls_pending_out(struct tls *t, const uint8_t **p);

/* Drop the first n bytes (n <= the pending count) of the pending output. */
void tls_consume_out(struct tls *t, size_t n);

/*
 * Queue our close_notify (RFC 8446 §6.1; RFC 5246 §7.2.1).  We do not wait
 * for the peer's: after flushing tls_pending_out() the driver may close.
 * Returns: 0, PST_ESTATE (handshake not complete: just close the socket),
 * or the sticky error of a failed connection.
 */
int tls_shutdown(struct tls *t);

/*
 * Why the last call failed: OpenSSL's reason ("wrong version number",
 * "http request", "certificate verify failed: hostname mismatch").
 * Returns: a string borrowed until tls_free(); "" if nothing failed.
 */
const char *tls_error(const struct tls *t);

/*
 * What was negotiated, once the handshake is complete (for the Received
 * header, RFC 3848 ESMTPS, and the logs).
 * tls_protocol: "TLSv1.3"; tls_cipher: OpenSSL's name,
 * "TLS_AES_256_GCM_SHA384"; tls_cipher_bits: the symmetric key bits.
 * Returns: borrowed until tls_free(); "" (or 0) before completion.
 */
const char *tls_protocol(const struct tls *t);
const char *tls_cipher(const struct tls *t);
int tls_cipher_bits(const struct tls *t);

/*
 * The server name of RFC 6066 §3: on a server, the one the client asked
 * for; on a client, the one it sent.  Logged, and a later step may pick a
 * certificate by it.
 * Returns: borrowed until tls_free(); "" if none (an IP literal, or a
 * client that sent none).
 */
const char *tls_server_name(const struct tls *t);

/*
 * The peer's certificate (a server's, for the client's probe; a client's,
 * should a server ever ask for one).
 * Parameters: *out [out] filled on success.
 * Returns: 0, PST_ENOENT (the peer sent none), PST_ESTATE (handshake not
 * complete), PST_ENOMEM.
 */
int tls_peer_cert(const struct tls *t, struct tls_peer_cert *out);

/*
 * Whether the peer's certificate chain and name check passed, whatever
 * `insecure` said (so `postern probe --insecure` can still report it).
 * Parameters: *why [out] borrowed static string: "ok", "hostname
 * mismatch", "self-signed certificate", ...  May be NULL.
 * Returns: 0 (verified), PST_EAUTH (not verified), PST_ESTATE (handshake
 * not complete).
 */
int tls_peer_verify(const struct tls *t, const char **why);

/*
 * What a server asks of its clients' certificates (SASL EXTERNAL): the
 * trust anchors, the CRLs, and whether a handshake without a certificate
 * that verifies fails.  Loaded apart from the server's context (and
 * without its key), so that a listener's settings go with any context
 * (a compatibility profile's) and a reload after the privilege drop can
 * read them again.  Immutable once made; may be shared by threads.
 */
struct tls_client_ca;

/*
 * Load the client CA settings: ca_file ([in], PEM trust anchors,
 * required), crl_file ([in], PEM CRLs, may be NULL: with it a
 * certificate whose issuer has no CRL in the file, or that its CRL
 * lists, does not verify), required (1: the handshake fails without a
 * client certificate that verifies; 0: it goes on, and tls_peer_id()
 * says what was sent).
 * *out ([out] owned) is freed with tls_client_ca_free(); err as
 * tls_ctx_new().
 * Returns: 0, PST_EINVAL (no ca_file), PST_EIO (a file missing or
 * without a certificate or CRL), PST_ENOMEM.
 */
int tls_client_ca_new(const char *ca_file, const char *crl_file,
                      unsigned required, struct tls_client_ca **out,
                      char *err, size_t err_size);

/* Free ca; connections it was given to keep what they need.  NULL is a
 * no-op. */
void tls_client_ca_free(struct tls_client_ca *ca);

/*
 * Make server connection t ask its client for a certificate verified
 * under ca ([in] borrowed for the call), before its handshake: the
 * CertificateRequest names ca's CAs, and a resumed session is one made
 * under the same settings (the session id context names them).
 * Returns: 0, PST_ESTATE (a client connection, or the handshake began),
 * PST_ENOMEM.
 */
int tls_ask_client_cert(struct tls *t, const struct tls_client_ca *ca);

/* The client certificate a server was given (tls_peer_id()). */
struct tls_peer_id {
    char fingerprint[TLS_FINGERPRINT_LEN + 1]; /* SHA-256 of the DER
                                     certificate, lowercase hex */
    char cn[TLS_NAME_MAX];        /* the subject's commonName (the last
                                     one, RFC 6125 §2.3's most specific),
                                     UTF-8; "" if none, or one with a
                                     control character */
    char email[TLS_NAME_MAX];     /* the first rfc822Name of
                                     subjectAltName; "" if none */
};

/*
 * The certificate the peer presented, for SASL EXTERNAL (RFC 4422 App.
 * A) and the log: its fingerprint, common name and address, filled in
 * whenever there is one, and whether it verified (on a server, under
 * the tls_client_ca it asked with).
 * Parameters: *out [out]; *why [out] borrowed static string, may be
 * NULL: "ok", or why it did not verify ("certificate has expired",
 * "certificate revoked", "unable to verify the first certificate").
 * Returns: 0 (verified), PST_EAUTH (presented, not verified), PST_ENOENT
 * (none presented), PST_ESTATE (handshake not complete), PST_ENOMEM.
 */
int tls_peer_id(const struct tls *t, struct tls_peer_id *out,
                const char **why);

/*
 * The channel binding SCRAM-*-PLUS uses on this connection (RFC 5802 §6):
 * "tls-exporter" under TLS 1.3 (RFC 9266 §2, the only type defined
 * there), "tls-unique" below it (RFC 5929, SCRAM's default, what GNU
 * SASL sends under TLS 1.2).  Below TLS 1.3 only with RFC 7627's
 * extended master secret: without it the triple handshake attack makes
 * either value shareable between two connections.
 * Parameters: *type [out] a static string; buf [out] cap bytes (secret:
 * wipe after use); *len [out] the length.
 * Returns: 0, PST_ESTATE (handshake not complete), PST_ENOTSUP (no
 * binding safe to use), PST_ELIMIT (cap too small).
 */
int tls_channel_binding(const struct tls *t, const char **type,
                        uint8_t *buf, size_t cap, size_t *len);

/*
 * RFC 9266 "tls-exporter" channel binding: 32 bytes of exported keying
 * material, label "EXPORTER-Channel-Binding", empty context.
 * Parameters: out [out] TLS_EXPORTER_LEN bytes (secret: wipe after use).
 * Returns: 0, PST_ESTATE (handshake not complete), PST_ENOTSUP (TLS 1.2
 * or older without the extended master secret of RFC 7627, which RFC
 * 9266's security considerations require for unique values).
 */
int tls_exporter(const struct tls *t, uint8_t out[TLS_EXPORTER_LEN]);

/*
 * RFC 5929 §3 "tls-unique" channel binding (TLS 1.2 and older only): the
 * first Finished message of the handshake.
 * Parameters: out [out] cap bytes; *len [out] the length (12 in practice).
 * Returns: 0, PST_ESTATE (handshake not complete), PST_ENOTSUP (TLS 1.3,
 * RFC 8446 §7.5 leaves it undefined), PST_ELIMIT (cap too small).
 */
int tls_unique(const struct tls *t, uint8_t *out, size_t cap, size_t *len);

/* --- The pump: one connection's bytes through a driver's callbacks --- */

/*
 * What the driver does with a connection's bytes (tls_set_io()).  Each
 * callback gets the ctx given there and returns 0 to go on, or non-zero
 * to stop at once: the pump then returns TLS_STOPPED without touching t
 * again (the callback may have freed it).
 */
struct tls_io {
    /* Ciphertext for the peer: send or copy all of p[0..n), borrowed for
     * the call. */
    int (*send)(void *ctx, const uint8_t *p, size_t n);
    /* Plaintext from the peer, p[0..n) borrowed for the call (wiped
     * afterwards: AUTH PLAIN carries passwords). */
    int (*recv)(void *ctx, const uint8_t *p, size_t n);
    /* The handshake has just completed (once per connection);
     * tls_protocol() and friends answer from now on.  May be NULL. */
    int (*established)(void *ctx);
};

/*
 * Attach the driver's callbacks to t, for the calls below.
 * Parameters: io [in] borrowed until tls_free(t) (a static const table);
 * ctx [in] passed to each callback.
 */
void tls_set_io(struct tls *t, const struct tls_io *io, void *ctx);

/*
 * Whether the pump has seen the handshake complete (io->established ran,
 * or would have).
 * Returns: 1 or 0.
 */
int tls_established(const struct tls *t);

/*
 * Send all the pending ciphertext through io->send, consuming it.
 * Returns: TLS_OK, TLS_STOPPED.
 */
int tls_flush(struct tls *t);

/*
 * Encrypt p[0..len) (tls_write(), all or nothing) and send it
 * (tls_flush()); after a failure the flush still runs, since an alert may
 * be queued.
 * Parameters: p [in] borrowed for the call.
 * Returns: TLS_OK, TLS_WANT_MORE (handshake not complete: nothing
 * written), TLS_STOPPED, or an error as tls_write().
 */
int tls_send(struct tls *t, const uint8_t *p, size_t len);

/*
 * Ciphertext from the peer, the feed -> handshake -> read-until-want-more
 * sequence: feed in[0..n) (n = 0 just advances: a client starts its
 * handshake so), advance the handshake while it is not complete, call
 * io->established when it completes, hand each piece of plaintext to
 * io->recv, and send through io->send whatever TLS has to say (handshake
 * messages, alerts, tickets, key update answers), also after a failure.
 * Parameters: in [in] borrowed for the call (may be NULL when n is 0).
 * Returns: TLS_OK (all input taken, its plaintext delivered),
 * TLS_WANT_MORE (the handshake needs more input), TLS_CLOSED
 * (close_notify received, after the plaintext before it was delivered),
 * TLS_STOPPED, or an error as tls_feed() and tls_handshake()
 * (tls_established() says whether the handshake had completed).
 */
int tls_input(struct tls *t, const uint8_t *in, size_t n);

#endif
