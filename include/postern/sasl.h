/*
 * postern - SASL mechanisms, client and server halves.
 *
 * Mechanisms see raw bytes.  Base64, "=" for an empty response, "*" for
 * cancel and the 334/235 framing belong to the SMTP layer.  Nothing here
 * blocks or does I/O: a server exchange pauses with PST_SASL_NEED_CRED when
 * it needs the stored credentials of a user, and PLAIN and LOGIN pause with
 * PST_SASL_NEED_VERIFY so that a slow password-hash check can run elsewhere.
 */
#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/cred.h>
#include <postern/error.h>
#include <postern/rand.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Step results: >= 0 is progress, < 0 a PST_E* error. */
enum pst_sasl_status {
    PST_SASL_DONE        = 0, /* exchange complete (server: authenticated) */
    PST_SASL_CONTINUE    = 1, /* send *out to the peer, wait for its answer */
    PST_SASL_NEED_CRED   = 2, /* server: look up pst_sasl_server_authcid(),
                                 call pst_sasl_server_set_cred(), step again */
    PST_SASL_NEED_VERIFY = 3, /* server: check pst_sasl_server_password()
                                 against the credentials, report with
                                 pst_sasl_server_verified(), step again */
};

/* Mechanism flags. */
#define PST_MECH_SENDS_PASSWORD 0x01u /* the password crosses the wire:
                                         PLAIN, LOGIN (needs TLS) */
#define PST_MECH_CLIENT_FIRST   0x02u /* the client speaks first: an initial
                                         response is allowed */
#define PST_MECH_SERVER_PROOF   0x04u /* the server proves it knows the
                                         secret (SCRAM, DIGEST-MD5) */
#define PST_MECH_HISTORIC       0x08u /* obsolete (DIGEST-MD5, RFC 6331) */

/* Limits.  RFC 4954 §4: 12288 octets is a sufficient exchange buffer. */
#define PST_SASL_MAX_MESSAGE   12288 /* one decoded message, either way */
#define PST_SASL_MAX_NAME      255   /* authcid / authzid, octets */
#define PST_SASL_MAX_PASSWORD  1024  /* octets */
#define PST_SCRAM_MIN_ITERATIONS 4096 /* RFC 7677 §4 / RFC 5802 §9 */
#define PST_SCRAM_MAX_ITERATIONS 10000000 /* client: refuse more (DoS) */

struct pst_sasl_mech;          /* a mechanism: constant, from the table */
struct pst_sasl_server;        /* one server exchange */
struct pst_sasl_client;        /* one client exchange */

/* Name of a mechanism as advertised ("SCRAM-SHA-256"). */
PST_EXTERN const char *pst_sasl_mech_name(const struct pst_sasl_mech *m);
/* PST_MECH_* flags of a mechanism. */
PST_EXTERN unsigned pst_sasl_mech_flags(const struct pst_sasl_mech *m);

/*
 * The mechanism called name (ASCII, case-insensitive, RFC 4422 §3.1),
 * or NULL if postern does not implement it.
 */
PST_EXTERN const struct pst_sasl_mech *pst_sasl_mech_find(const char *name,
                                                          size_t len);

/*
 * The i-th implemented mechanism, strongest first, or NULL past the end:
 * SCRAM-SHA-256, SCRAM-SHA-1, DIGEST-MD5, CRAM-MD5, PLAIN, LOGIN.
 */
PST_EXTERN const struct pst_sasl_mech *pst_sasl_mech_at(size_t i);

/* --- Server half --------------------------------------------------------- */

struct pst_sasl_server_config {
    const char *hostname;       /* [in] FQDN: CRAM-MD5 challenge, default
                                   DIGEST-MD5 realm and digest-uri host */
    const char *realm;          /* [in] DIGEST-MD5 realm; NULL: hostname */
    const char *const *uri_hosts; /* [in] NULL-terminated extra host names
                                   accepted in DIGEST-MD5 digest-uri (the
                                   listening addresses); may be NULL */
    const char *service;        /* [in] "smtp" if NULL (RFC 4954 §4) */
    uint64_t    timestamp;      /* seconds, for the CRAM-MD5 challenge; the
                                   library never reads a clock */
    pst_random_fn random;       /* NULL: RAND_bytes */
    void       *random_ctx;
    unsigned    scram_iterations; /* for SCRAM keys derived from {PLAIN};
                                   0 means 4096 */
    const uint8_t *scram_secret; /* [in] secret key for the salts SCRAM
                                   shows where none is stored (unknown
                                   users, keys derived from {PLAIN}): with
                                   it each is HMAC(secret, user NUL
                                   mechanism), stable like a stored salt;
                                   NULL: random per exchange, which tells
                                   a client after two tries that the user
                                   has no stored salt */
    size_t      scram_secret_len;
    /* Channel binding (RFC 5929), reserved for SCRAM-*-PLUS: must be
       NULL/0 for now. */
    const char    *cb_type;     /* [in] reserved */
    const uint8_t *cb_data;     /* [in] reserved */
    size_t         cb_len;      /* reserved */
};

/*
 * Start a server exchange of mechanism m.  cfg ([in]) is copied; the strings
 * it points to must outlive the exchange.
 * *out ([out] owned) is freed with pst_sasl_server_free().
 * Returns: 0, PST_EINVAL, PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_server_new(const struct pst_sasl_mech *m,
                                   const struct pst_sasl_server_config *cfg,
                                   struct pst_sasl_server **out);

/* Wipe and free s; NULL is a no-op. */
PST_EXTERN void pst_sasl_server_free(struct pst_sasl_server *s);

/*
 * Advance the exchange with the client's message in ([in] borrowed, raw
 * bytes, already base64-decoded).  The first call passes the initial
 * response, or in == NULL when the client sent none; a server-first
 * mechanism (CRAM-MD5, DIGEST-MD5) refuses an initial response with
 * PST_EPROTO.  After PST_SASL_NEED_CRED or PST_SASL_NEED_VERIFY, step again
 * with in == NULL once the answer is given.
 *
 * On PST_SASL_CONTINUE, out holds the next challenge (possibly empty).
 * On PST_SASL_DONE the client is authenticated as pst_sasl_server_authcid()
 * (and asks to act as pst_sasl_server_authzid(), which policy must check).
 * Every error ends the exchange; pst_sasl_server_reason() says why, for the
 * log only.
 * Returns: PST_SASL_DONE, PST_SASL_CONTINUE, PST_SASL_NEED_CRED,
 * PST_SASL_NEED_VERIFY, PST_EPROTO (malformed message), PST_EAUTH (wrong
 * password, unknown user, or no usable verifier), PST_EPREP (a name that
 * fails SASLprep), PST_ELIMIT (message or field too long), PST_ESTATE (step
 * after the end, or while an answer is awaited), PST_ENOMEM, PST_ETEMP
 * (random source failed).
 */
PST_EXTERN int pst_sasl_server_step(struct pst_sasl_server *s,
                                    const uint8_t *in, size_t in_len,
                                    struct pst_buf *out);

/*
 * Answer PST_SASL_NEED_CRED with the user's stored credentials c ([in]
 * borrowed; must stay valid until the exchange is freed), or NULL when the
 * user does not exist: the exchange then goes on doing the same work and
 * fails with PST_EAUTH, so an unknown user looks like a wrong password.
 * Returns: 0, PST_ESTATE (no credentials were asked for).
 */
PST_EXTERN int pst_sasl_server_set_cred(struct pst_sasl_server *s,
                                        const struct pst_cred *c);

/*
 * After PST_SASL_NEED_VERIFY: the password the client sent ([out] borrowed
 * until the next call on s; secret), to be checked with pst_cred_verify().
 * Returns: the password, or NULL if none is pending (len set to 0).
 */
PST_EXTERN const uint8_t *pst_sasl_server_password(
    const struct pst_sasl_server *s, size_t *len);

/*
 * Answer PST_SASL_NEED_VERIFY: ok != 0 if the password matched.  The
 * password is wiped.
 * Returns: 0, PST_ESTATE.
 */
PST_EXTERN int pst_sasl_server_verified(struct pst_sasl_server *s, int ok);

/*
 * The authentication identity (NUL-terminated UTF-8, after SASLprep where
 * the mechanism asks for it), once known; else NULL.  Borrowed until s is
 * freed.
 */
PST_EXTERN const char *pst_sasl_server_authcid(const struct pst_sasl_server *s);

/*
 * The authorization identity the client asked for, or NULL if it sent none
 * or sent one equal to the authcid (no proxying).  Borrowed until s is
 * freed.
 */
PST_EXTERN const char *pst_sasl_server_authzid(const struct pst_sasl_server *s);

/*
 * The slow step of a server exchange, done elsewhere.  A SCRAM exchange
 * for a user stored with {PLAIN} and no {SCRAM-SHA-x} verifier of its
 * hash derives the keys at the step after PST_SASL_NEED_CRED: PBKDF2 of
 * cfg->scram_iterations rounds (4096: about 1-2 ms, more on a loaded
 * machine), inside pst_sasl_server_step().  A driver that must not block
 * (an event loop) asks pst_sasl_server_cred_slow() when the credentials
 * arrive; if it says so, pst_sasl_server_cred_prepare() makes the keys
 * (on a thread pool) and the driver answers NEED_CRED with the
 * credentials it returns: the exchange then derives nothing, and shows
 * the same salt and iteration count as it would have.  Unknown users and
 * users without a usable verifier never cost a derivation: their made-up
 * keys take no PBKDF2, so their server-first message takes what a
 * stored verifier's takes.
 */

/*
 * Whether an exchange of m ([in]) would derive keys from c ([in],
 * borrowed; NULL: unknown user) at its next step.
 * Returns: 1 (SCRAM-* and c has {PLAIN} but no stored verifier of the
 * mechanism's hash), 0 (anything else).
 */
PST_EXTERN int pst_sasl_server_cred_slow(const struct pst_sasl_mech *m,
                                         const struct pst_cred *c);

/*
 * Make now the keys that an exchange of m configured with cfg ([in]:
 * scram_secret, scram_iterations, random are used) would derive for the
 * authentication identity authcid ([in]: pst_sasl_server_authcid(), as
 * the AUTH_LOOKUP event of the SMTP session gives it) from c ([in]
 * borrowed): *out ([out] owned, pst_cred_free(); secret) is c with the
 * {SCRAM-SHA-x} verifier added.  Slow (PBKDF2); reads only its
 * arguments, so it may run on any thread while they stay valid.
 * Returns: 0, PST_EINVAL (pst_sasl_server_cred_slow() says no),
 * PST_EPREP (the {PLAIN} password fails SASLprep: answer with c, the
 * exchange fails without deriving), PST_ETEMP (random source, without a
 * scram_secret), PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_server_cred_prepare(
    const struct pst_sasl_mech *m, const struct pst_sasl_server_config *cfg,
    const char *authcid, const struct pst_cred *c, struct pst_cred **out);

/* Why the exchange failed, for the log (never sent to the client). */
PST_EXTERN const char *pst_sasl_server_reason(const struct pst_sasl_server *s);

/* The mechanism of s. */
PST_EXTERN const struct pst_sasl_mech *pst_sasl_server_mech(
    const struct pst_sasl_server *s);

/* --- Client half --------------------------------------------------------- */

struct pst_sasl_client_config {
    const char    *authcid;      /* [in] user name (UTF-8) */
    const char    *authzid;      /* [in] NULL or "": act as authcid */
    const uint8_t *password;     /* [in] secret; copied and wiped on free */
    size_t         password_len;
    const char    *service;      /* [in] "smtp" if NULL */
    const char    *host;         /* [in] server name for DIGEST-MD5
                                    digest-uri ("smtp/<host>") */
    pst_random_fn  random;       /* NULL: RAND_bytes */
    void          *random_ctx;
    unsigned       scram_min_iterations; /* 0: PST_SCRAM_MIN_ITERATIONS */
    /* Channel binding (RFC 5929), reserved for SCRAM-*-PLUS: must be
       NULL/0 for now. */
    const char    *cb_type;      /* [in] reserved */
    const uint8_t *cb_data;      /* [in] reserved */
    size_t         cb_len;       /* reserved */
};

/*
 * Start a client exchange of mechanism m.  cfg is copied (the password too).
 * *out ([out] owned) is freed with pst_sasl_client_free().
 * Returns: 0, PST_EINVAL (missing authcid or password), PST_ELIMIT,
 * PST_ENOMEM.  (SCRAM applies SASLprep in its first step, which reports
 * PST_EPREP.)
 */
PST_EXTERN int pst_sasl_client_new(const struct pst_sasl_mech *m,
                                   const struct pst_sasl_client_config *cfg,
                                   struct pst_sasl_client **out);

/* Wipe and free c; NULL is a no-op. */
PST_EXTERN void pst_sasl_client_free(struct pst_sasl_client *c);

/*
 * Advance the exchange with the server's challenge in ([in] borrowed, raw
 * bytes), or in == NULL to ask for an initial response.  A server-first
 * mechanism answers in == NULL with PST_SASL_CONTINUE and an empty out,
 * meaning "send no initial response".
 *
 * PST_SASL_CONTINUE: send out and wait.  PST_SASL_DONE: the client has
 * verified the server's proof (SCRAM, DIGEST-MD5); send out (usually empty)
 * and expect success.
 * Returns: PST_SASL_CONTINUE, PST_SASL_DONE, PST_EPROTO (malformed
 * challenge), PST_EFORGED (the server's proof is wrong), PST_EWEAK (SCRAM
 * iteration count below the minimum), PST_EAUTH (SCRAM: the server sent
 * e=, refusing the client), PST_EPREP (SCRAM, first step: the name or
 * password fails SASLprep), PST_ESTATE (challenge after the end),
 * PST_ELIMIT (message too long; SCRAM iteration count above
 * PST_SCRAM_MAX_ITERATIONS), PST_EINVAL (DIGEST-MD5: no host for the
 * digest-uri), PST_ENOTSUP (DIGEST-MD5: a user name ISO 8859-1 cannot
 * carry when the server offered no charset=utf-8), PST_ENOMEM, PST_ETEMP
 * (random source failed).
 */
PST_EXTERN int pst_sasl_client_step(struct pst_sasl_client *c,
                                    const uint8_t *in, size_t in_len,
                                    struct pst_buf *out);

/*
 * Whether the exchange may end in success now.  Call it when the server
 * says the client is authenticated: a mechanism whose server must prove
 * itself refuses success without that proof.
 * Returns: 0 (fine), PST_EFORGED (success without the server's proof).
 */
PST_EXTERN int pst_sasl_client_finish(const struct pst_sasl_client *c);

#ifdef __cplusplus
}
#endif
#endif
