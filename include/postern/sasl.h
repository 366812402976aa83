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
                                 against the credentials (a bearer
                                 mechanism's token with a token
                                 verifier), report with
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
#define PST_MECH_BEARER         0x10u /* an OAuth 2.0 bearer token, not a
                                         password (XOAUTH2, OAUTHBEARER):
                                         the server half's NEED_VERIFY
                                         hands over the token, which only
                                         a token verifier may check, never
                                         pst_cred_verify() */
#define PST_MECH_EXTERNAL       0x20u /* the identity comes from outside
                                         SASL: the TLS client certificate
                                         (EXTERNAL, RFC 4422 App. A) */
#define PST_MECH_CHANNEL_BINDING 0x40u /* needs channel-binding data from
                                         TLS (SCRAM-*-PLUS, RFC 5802 §6) */
/*
 * The flags of mechanisms that are opt-in: a server offers them only when
 * configured to, and a client never picks one to log in with a password;
 * pst_sasl_mech_at() leaves them out.
 */
#define PST_MECH_OPT_IN \
    (PST_MECH_BEARER | PST_MECH_EXTERNAL | PST_MECH_CHANNEL_BINDING)

/* DIGEST-MD5 quality of protection (RFC 2831 §2.1.1 qop-options). */
#define PST_SASL_QOP_AUTH      0x01u /* authentication only */
#define PST_SASL_QOP_AUTH_INT  0x02u /* and an integrity layer (§2.3) */
#define PST_SASL_QOP_AUTH_CONF 0x04u /* and confidentiality (§2.4) */

/* DIGEST-MD5 auth-conf ciphers (RFC 2831 §2.1.1 cipher-opts).  DES and
 * the RC4s come from OpenSSL's legacy provider, loaded into a library
 * context of libpostern's own when first needed; without it only 3des
 * is available. */
#define PST_SASL_CIPHER_3DES   0x01u /* two-key 3DES EDE, CBC */
#define PST_SASL_CIPHER_DES    0x02u /* DES, CBC */
#define PST_SASL_CIPHER_RC4_40 0x04u /* RC4, key from 40 bits of H(A1) */
#define PST_SASL_CIPHER_RC4    0x08u /* RC4, 128 bits */
#define PST_SASL_CIPHER_RC4_56 0x10u /* RC4, key from 56 bits of H(A1) */

/* Limits.  RFC 4954 §4: 12288 octets is a sufficient exchange buffer. */
#define PST_SASL_MAX_MESSAGE   12288 /* one decoded message, either way */
#define PST_SASL_MAX_NAME      255   /* authcid / authzid, octets */
#define PST_SASL_MAX_PASSWORD  1024  /* octets */
#define PST_SASL_MAX_TOKEN     8192  /* OAuth bearer token, octets (Google
                                        service-account tokens are ~1 KB;
                                        the whole message stays within
                                        PST_SASL_MAX_MESSAGE) */
#define PST_SASL_MAX_CB_NAME   64    /* channel-binding type name */
#define PST_SASL_MAX_CB_DATA   512   /* channel-binding data, octets (RFC
                                        9266 tls-exporter: 32; RFC 5929
                                        tls-unique: a Finished message) */
#define PST_SCRAM_MIN_ITERATIONS 4096 /* RFC 7677 §4 / RFC 5802 §9 */
#define PST_SCRAM_MAX_ITERATIONS 10000000 /* client: refuse more (DoS) */

struct pst_sasl_mech;          /* a mechanism: constant, from the table */
struct pst_sasl_layer;         /* a negotiated security layer */
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
 * The i-th of the password mechanisms a server offers and a client may
 * choose by default, strongest first, or NULL past the end: SCRAM-SHA-256,
 * SCRAM-SHA-1, DIGEST-MD5, CRAM-MD5, PLAIN, LOGIN.  Opt-in mechanisms
 * (PST_MECH_OPT_IN) are not among them.
 */
PST_EXTERN const struct pst_sasl_mech *pst_sasl_mech_at(size_t i);

/*
 * The i-th of every implemented mechanism, or NULL past the end: those of
 * pst_sasl_mech_at() with the opt-in ones among them, strongest first
 * within each kind (SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256,
 * ..., LOGIN, EXTERNAL, OAUTHBEARER, XOAUTH2).
 */
PST_EXTERN const struct pst_sasl_mech *pst_sasl_mech_all_at(size_t i);

/* --- Server half --------------------------------------------------------- */

struct pst_sasl_server_config {
    const char *hostname;       /* [in] FQDN: CRAM-MD5 challenge, default
                                   DIGEST-MD5 realm and digest-uri host */
    const char *external_id;    /* [in] EXTERNAL (RFC 4422 App. A): the
                                   user the TLS client certificate maps
                                   to, resolved by the driver before the
                                   exchange; NULL: no (usable)
                                   certificate, and EXTERNAL fails with
                                   PST_EAUTH.  The client's authzid must
                                   be empty or equal to it; the exchange
                                   then asks for this user's credentials
                                   (NEED_CRED) and succeeds when they
                                   exist */
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
    /* OAUTHBEARER and XOAUTH2 (RFC 7628 §3.2.2), for the JSON error
     * challenge that answers a refused token: */
    const char *oauth_scope;    /* [in] "scope" to name; NULL: none */
    const char *oauth_openid_configuration; /* [in] OAUTHBEARER's
                                   "openid-configuration" URL; NULL: none */
    unsigned    oauth_port;     /* the port the client connected to: an
                                   OAUTHBEARER port= must equal it (RFC
                                   7628 §3.2); 0: not checked */
    /* DIGEST-MD5 security layer (RFC 2831 §2.3); never needed under TLS
     * (DESIGN.md security_layer): */
    unsigned    digest_qops;    /* PST_SASL_QOP_* offered; 0: auth only */
    unsigned    digest_maxbuf;  /* the largest protected buffer we take,
                                   17..16777215; 0: 65536 */
    unsigned    digest_ciphers; /* PST_SASL_CIPHER_* offered with
                                   auth-conf; 0: every one available */
    /* Channel binding of this TLS connection (RFC 5802 §6), for the
     * SCRAM mechanisms.  A -PLUS exchange needs all three, else
     * pst_sasl_server_new() says PST_EINVAL; the client's c= must then
     * carry exactly this data. */
    const char    *cb_type;     /* [in] "tls-exporter" (RFC 9266, TLS
                                   1.3) or "tls-unique" (RFC 5929);
                                   NULL: no binding */
    const uint8_t *cb_data;     /* [in] the binding data (borrowed, like
                                   the strings above) */
    size_t         cb_len;      /* 1..PST_SASL_MAX_CB_DATA */
    int            cb_plus_offered; /* non-zero: a SCRAM -PLUS mechanism
                                   was advertised in this state, so a
                                   plain SCRAM exchange whose client says
                                   "y" (it could bind, and thinks we
                                   cannot) is a downgrade: PST_EAUTH */
};

/*
 * Start a server exchange of mechanism m.  cfg ([in]) is copied; the strings
 * and the channel-binding data it points to must outlive the exchange.
 * *out ([out] owned) is freed with pst_sasl_server_free().
 * Returns: 0, PST_EINVAL (no hostname; a -PLUS mechanism without cb_type
 * and cb_data, or with a cb_type that is not an RFC 5802 cb-name;
 * DIGEST-MD5: unknown digest_qops or digest_ciphers bits, digest_maxbuf
 * out of range), PST_ENOTSUP (DIGEST-MD5: auth-conf without any of the
 * digest_ciphers available in OpenSSL),
 * PST_ELIMIT (cb_len above PST_SASL_MAX_CB_DATA), PST_ENOMEM.
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
 * password, unknown user, or no usable verifier; a refused bearer token
 * after its error challenge; SCRAM: channel-binding mismatch, unsupported
 * binding type or downgrade; EXTERNAL: no certificate identity, or an
 * authzid other than it), PST_EPREP (a name that fails SASLprep),
 * PST_ELIMIT (message or field too long), PST_ESTATE (step after the end,
 * or while an answer is awaited), PST_ENOMEM, PST_ETEMP (random source
 * failed).
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
 * For a PST_MECH_BEARER mechanism it is the OAuth 2.0 access token (an
 * RFC 6750 b64token, up to PST_SASL_MAX_TOKEN octets), to be checked by a
 * token verifier (introspection, a JWT signature) that it is valid and
 * was issued for pst_sasl_server_authcid(); there is no NEED_CRED before
 * it.  When it is refused, the exchange sends the JSON error challenge
 * (RFC 7628 §3.2.2) and fails with PST_EAUTH after the client's dummy
 * response.
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

/*
 * After PST_SASL_DONE: take the security layer the exchange negotiated
 * (DIGEST-MD5 with qop auth-int or auth-conf, RFC 2831 §2.3, §2.4).  For
 * the server it applies from the octet after the CRLF of its success
 * reply (RFC 4954 §4); s may be freed before it.
 * *out ([out] owned, freed with pst_sasl_layer_free()) is NULL when no
 * layer was negotiated (qop auth, every other mechanism).  The keys leave
 * the exchange: a second call is PST_ESTATE.
 * Returns: 0, PST_ESTATE (not DONE, or taken already), PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_server_layer(struct pst_sasl_server *s,
                                     struct pst_sasl_layer **out);

/* --- Client half --------------------------------------------------------- */

/*
 * A SCRAM client's cache of derived keys (RFC 5802 §5.1: "the client can
 * cache ClientKey/ServerKey (or SaltedPassword) for a given salt and
 * iteration count").  A client given one in its config looks up the keys
 * for (mechanism hash, salt, iteration count, SASLprep'd password) there
 * before running PBKDF2, and stores them after: a load generator logging
 * in thousands of times with one password derives them once.  The
 * entries hold ClientKey and ServerKey, which let anyone log in as the
 * user, and a SHA-256 of the password; they are wiped on eviction and by
 * pst_sasl_scram_cache_free().
 *
 * Thread safety: none.  A cache may be shared by any number of exchanges
 * that run on one thread; exchanges on several threads either use one
 * cache per thread or hold a lock of the caller's around every
 * pst_sasl_client_step() of an exchange using the shared cache (the step
 * that answers server-first-message reads and writes it).
 */
struct pst_scram_cache;

/*
 * Make an empty cache of at most entries entries (0: 8; least recently
 * used evicted first).  *out ([out] owned) is freed with
 * pst_sasl_scram_cache_free(); it must outlive every exchange using it.
 * Returns: 0, PST_EINVAL (more than 4096 entries), PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_scram_cache_new(size_t entries,
                                        struct pst_scram_cache **out);

/* Wipe and free c; NULL is a no-op. */
PST_EXTERN void pst_sasl_scram_cache_free(struct pst_scram_cache *c);

/*
 * Counters of c (NULL: zeros): *hits ([out], may be NULL) exchanges that
 * took their keys from the cache; *misses ([out], may be NULL) exchanges
 * that ran PBKDF2 (each then stored its keys, unless the salt was longer
 * than the 128 octets an entry holds).
 */
PST_EXTERN void pst_sasl_scram_cache_stats(const struct pst_scram_cache *c,
                                           uint64_t *hits, uint64_t *misses);

struct pst_sasl_client_config {
    const char    *authcid;      /* [in] user name (UTF-8); EXTERNAL: may
                                    be NULL (the certificate names the
                                    user) */
    const char    *authzid;      /* [in] NULL or "": act as authcid;
                                    EXTERNAL sends it as its only
                                    message */
    const uint8_t *password;     /* [in] secret; copied and wiped on free */
    size_t         password_len;
    const char    *service;      /* [in] "smtp" if NULL */
    const char    *host;         /* [in] server name for DIGEST-MD5
                                    digest-uri ("smtp/<host>") */
    pst_random_fn  random;       /* NULL: RAND_bytes */
    void          *random_ctx;
    unsigned       scram_min_iterations; /* 0: PST_SCRAM_MIN_ITERATIONS */
    struct pst_scram_cache *scram_cache; /* [in] borrowed, may be NULL:
                                    SCRAM keys cache, see above; must
                                    outlive the exchange */
    /* XOAUTH2 and OAUTHBEARER (PST_MECH_BEARER) log in with a token
     * instead of the password: */
    const uint8_t *token;        /* [in] OAuth 2.0 access token, an RFC
                                    6750 §2.1 b64token; secret; copied
                                    and wiped on free */
    size_t         token_len;    /* at most PST_SASL_MAX_TOKEN */
    const char    *oauth_host;   /* [in] OAUTHBEARER host=, the server
                                    name connected to; NULL: not sent */
    unsigned       oauth_port;   /* OAUTHBEARER port=; 0: not sent */
    /* DIGEST-MD5 security layer (RFC 2831 §2.3): */
    unsigned       digest_qops;  /* PST_SASL_QOP_* accepted; 0: auth only.
                                    The strongest the server also offers
                                    is chosen; none in common: the step
                                    fails with PST_ENOTSUP */
    unsigned       digest_maxbuf; /* the largest protected buffer we
                                    take, 17..16777215; 0: 65536 */
    unsigned       digest_ciphers; /* PST_SASL_CIPHER_* accepted with
                                    auth-conf; 0: every one available.
                                    The first of 3des, rc4, des, rc4-56,
                                    rc4-40 the server also offers is
                                    chosen */
    /* Channel binding of this TLS connection (RFC 5802 §6), for the
     * SCRAM mechanisms.  -PLUS needs cb_type and cb_data (sent as
     * "p=<cb_type>", cb_data folded into c=); a plain SCRAM mechanism
     * sends "y" when cb_data is given (the client could bind) and the
     * server advertised no -PLUS, "n" when no cb_data is given. */
    const char    *cb_type;      /* [in] "tls-exporter" (RFC 9266) or
                                    "tls-unique" (RFC 5929); -PLUS only */
    const uint8_t *cb_data;      /* [in] binding data, copied */
    size_t         cb_len;       /* 1..PST_SASL_MAX_CB_DATA */
    int            cb_plus_offered; /* non-zero: the server advertised a
                                    SCRAM -PLUS mechanism.  With cb_data
                                    a plain SCRAM mechanism is then
                                    refused (PST_EINVAL): RFC 5802 §6
                                    says such a client "MUST use" -PLUS */
};

/*
 * Start a client exchange of mechanism m.  cfg is copied (the password and
 * token too).  XOAUTH2 sends the authcid as user= and the token; OAUTHBEARER
 * sends the authzid, or the authcid when there is none, as a= (the user
 * the token is for, as Gmail and Microsoft 365 expect), then host=, port=
 * when set, and the token.
 * *out ([out] owned) is freed with pst_sasl_client_free().
 * Returns: 0, PST_EINVAL (missing authcid; a bearer mechanism without a
 * token, or with a token that is not a b64token, or an oauth_host with
 * bytes outside VCHAR; a -PLUS mechanism without cb_type and cb_data; a
 * plain SCRAM mechanism with cb_data when cb_plus_offered), PST_ELIMIT (a
 * name, password, token or channel-binding data too long), PST_ENOMEM.
 * (SCRAM applies SASLprep in its first step, which reports PST_EPREP.)
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
 * carry when the server offered no charset=utf-8, or no qop both sides
 * allow), PST_ENOMEM, PST_ETEMP (random source failed).
 */
PST_EXTERN int pst_sasl_client_step(struct pst_sasl_client *c,
                                    const uint8_t *in, size_t in_len,
                                    struct pst_buf *out);

/*
 * Whether the exchange may end in success now.  Call it when the server
 * says the client is authenticated: a mechanism whose server must prove
 * itself refuses success without that proof, and a bearer mechanism
 * refuses it after the server sent its error challenge.
 * Returns: 0 (fine), PST_EFORGED (success without the server's proof),
 * PST_EREJECT (XOAUTH2, OAUTHBEARER: the server already refused the
 * token), PST_ESTATE (the exchange failed).
 */
PST_EXTERN int pst_sasl_client_finish(const struct pst_sasl_client *c);

/*
 * After PST_SASL_DONE (the server's proof checked): take the security layer
 * the exchange negotiated, as pst_sasl_server_layer() does for the server.
 * It applies to what the client sends after the CRLF of its last response
 * and to what it receives after the success reply (RFC 4954 §4).
 * Returns: 0 (*out NULL: no layer), PST_ESTATE, PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_client_layer(struct pst_sasl_client *c,
                                     struct pst_sasl_layer **out);

/*
 * XOAUTH2 and OAUTHBEARER: the server's error challenge, a JSON object
 * such as {"status":"invalid_token","scope":"..."} (RFC 7628 §3.2.2;
 * Google: {"status":"401","schemes":"bearer","scope":"..."}).  A client
 * step that receives it answers with the dummy response the mechanism
 * asks for (XOAUTH2: empty; OAUTHBEARER: 0x01, RFC 7628 §3.2.3) and
 * PST_SASL_CONTINUE; the server then fails the exchange (535), and the
 * JSON says why, for the log.  Raw bytes from the server: make them
 * printable before logging.
 * Returns: the JSON ([out] borrowed until c is freed; *len its length),
 * or NULL when the server sent none (*len set to 0).
 */
PST_EXTERN const uint8_t *pst_sasl_client_error_json(
    const struct pst_sasl_client *c, size_t *len);

/* --- Security layer ---------------------------------------------------- */

/*
 * A negotiated DIGEST-MD5 security layer: every octet each side sends
 * after authentication travels in protected buffers, a 4-octet length in
 * network order (RFC 4422 §3.7) then, with auth-int (RFC 2831 §2.3), the
 * message and a 16-octet trailer (10 octets of HMAC-MD5 over the sequence
 * number and the message, message type 0x0001, the 4-octet sequence
 * number); with auth-conf (§2.4), the message, pad and those 10 MAC octets
 * enciphered, then the type and sequence number in clear.  Each direction
 * has its own keys, counter and cipher state.  Not thread-safe: one layer
 * per connection, used by one thread at a time.
 */

/* Wipe and free l; NULL is a no-op. */
PST_EXTERN void pst_sasl_layer_free(struct pst_sasl_layer *l);

/* The qop of l: PST_SASL_QOP_AUTH_INT or PST_SASL_QOP_AUTH_CONF. */
PST_EXTERN unsigned pst_sasl_layer_qop(const struct pst_sasl_layer *l);

/* The cipher of l (PST_SASL_CIPHER_*), or 0 for auth-int. */
PST_EXTERN unsigned pst_sasl_layer_cipher(const struct pst_sasl_layer *l);

/*
 * The most octets of application data one buffer carries: the peer's
 * maxbuf minus the 16-octet trailer (auth-conf with DES or 3DES: minus
 * the clear 6 octets, rounded down to whole 8-octet blocks, minus 10 MAC
 * octets and at least one of pad; 0 when the peer's maxbuf holds none).
 * pst_sasl_layer_wrap() cuts longer data into buffers of this size.
 */
PST_EXTERN size_t pst_sasl_layer_max_wrap(const struct pst_sasl_layer *l);

/*
 * Protect in[0..len) ([in] borrowed; len 0 makes one empty buffer) for
 * the peer: append one or more buffers to out, none larger than the
 * peer's maxbuf.  On error out is left as it was after the last whole
 * buffer.
 * Returns: 0, PST_ELIMIT (out's ceiling reached; data and a maximum of 0;
 * or 2^32 buffers sent, the sequence number would repeat: the connection
 * must end), PST_ESTATE (l refused a buffer before, or an auth-conf wrap
 * failed half-way: the cipher state is lost), PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_layer_wrap(struct pst_sasl_layer *l,
                                   const uint8_t *in, size_t len,
                                   struct pst_buf *out);

/*
 * Take one protected buffer from the front of in[0..len) ([in] borrowed:
 * bytes as received, possibly several buffers or part of one) and append
 * its message to out.  *consumed ([out]) gets the octets used (0 when in
 * does not yet hold a whole buffer; call again with more).  A refused
 * buffer ends the layer: every later call is PST_ESTATE, and the
 * connection must be closed.
 * Returns: 1 (one buffer unwrapped), 0 (need more bytes), PST_EFORGED (MAC
 * mismatch, auth-conf pad that is not 1 to 8 octets of its length, or not
 * the sequence number expected: forged, replayed, dropped or reordered),
 * PST_EPROTO (shorter than its trailer, message type not 1, auth-conf
 * ciphered part not whole blocks), PST_ELIMIT (longer than our maxbuf; or
 * out's ceiling), PST_ESTATE, PST_ENOMEM.
 */
PST_EXTERN int pst_sasl_layer_unwrap(struct pst_sasl_layer *l,
                                     const uint8_t *in, size_t len,
                                     size_t *consumed, struct pst_buf *out);

#ifdef __cplusplus
}
#endif
#endif
