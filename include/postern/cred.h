/*
 * postern - stored credentials (verifiers) and password schemes.
 *
 * A user's credentials are one or more "{SCHEME}value" verifiers, in the
 * format Dovecot's passwd-file uses.  PLAIN and LOGIN verify a password
 * against any of them (pst_cred_verify); each challenge mechanism draws the
 * secret it needs from its own scheme or from {PLAIN}.
 */
#ifndef POSTERN_CRED_H
#define POSTERN_CRED_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/error.h>
#include <postern/rand.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The schemes postern understands. */
enum pst_cred_scheme {
    PST_SCHEME_PLAIN = 0,      /* cleartext ({PLAIN}, {CLEAR}, {CLEARTEXT}) */
    PST_SCHEME_CRAM_MD5,       /* Dovecot's HMAC-MD5 context, 64 hex */
    PST_SCHEME_DIGEST_MD5,     /* hex MD5(user:realm:password) */
    PST_SCHEME_SCRAM_SHA1,     /* iter,salt,StoredKey,ServerKey (base64) */
    PST_SCHEME_SCRAM_SHA256,
    PST_SCHEME_CRYPT,          /* anything crypt(3) verifies ({CRYPT},
                                  {SHA512-CRYPT}, {BLF-CRYPT}, ...) */
};

enum pst_scram_hash {
    PST_SCRAM_SHA1 = 0,
    PST_SCRAM_SHA256,
};

#define PST_SCRAM_MAX_KEY  64  /* digest size bound (SHA-512 room) */
#define PST_SCRAM_MAX_SALT 64  /* salt bytes we accept or make */

/* Verifiers one user may carry ("{A}x {B}y ..."). */
#define PST_CRED_MAX_VERIFIERS 8
/*
 * SCRAM iteration counts: RFC 5802 §5.1 and RFC 7677 §4 ask for at least
 * 4096, and Dovecot refuses fewer (auth-scram.h); the ceiling keeps one
 * stored value from pinning a thread for minutes.
 */
#define PST_CRED_SCRAM_MIN_ITER     4096
#define PST_CRED_SCRAM_DEFAULT_ITER 4096
#define PST_CRED_SCRAM_MAX_ITER     10000000
/* Salt bytes pst_cred_make() draws for SCRAM (Dovecot uses 16 too). */
#define PST_CRED_SCRAM_SALT_LEN     16
/* bcrypt cost pst_cred_make() uses for BLF-CRYPT when rounds is 0. */
#define PST_CRED_BLF_DEFAULT_COST   10

/* SCRAM keys as stored (RFC 5802 §3). */
struct pst_scram_keys {
    unsigned iterations;
    size_t   salt_len;
    uint8_t  salt[PST_SCRAM_MAX_SALT];
    size_t   key_len;                       /* digest size */
    uint8_t  stored_key[PST_SCRAM_MAX_KEY]; /* secret */
    uint8_t  server_key[PST_SCRAM_MAX_KEY]; /* secret */
};

struct pst_cred; /* one user's verifiers: opaque */

/*
 * Parse verifiers separated by single spaces ("{SCRAM-SHA-256}... {CRAM-MD5}
 * ..."); text ([in] borrowed) is copied.  A verifier ends only where a
 * space is followed by '{', so that a {PLAIN} password may hold spaces as
 * in Dovecot's files (but not " {").  A value without a {SCHEME} prefix
 * is taken as {CRYPT}, as Dovecot's passwd-file does.  Each value is checked
 * for its scheme's form (lengths, hex, base64, iteration counts).  Scheme
 * names are case-insensitive and take Dovecot's encoding suffixes
 * ({SCHEME.b64}, {SCHEME.base64}, {SCHEME.hex}).
 * *out ([out] owned) is freed with pst_cred_free().
 * Returns: 0, PST_ESYNTAX (malformed or unknown scheme), PST_ENOMEM.
 */
PST_EXTERN int pst_cred_parse(const char *text, size_t len,
                              struct pst_cred **out);

/*
 * pst_cred_parse() that also says what is wrong: on PST_ESYNTAX *reason
 * ([out] static string, may be NULL) reads like "{CRAM-MD5}: the value is
 * not 32 bytes of hex" (no secret in it).  Otherwise as pst_cred_parse().
 */
PST_EXTERN int pst_cred_parse_reason(const char *text, size_t len,
                                     struct pst_cred **out,
                                     const char **reason);

/* Wipe and free c; NULL is a no-op. */
PST_EXTERN void pst_cred_free(struct pst_cred *c);

/* Whether c holds a verifier of scheme s (1) or not (0). */
PST_EXTERN int pst_cred_has(const struct pst_cred *c, enum pst_cred_scheme s);

/*
 * Check a password (pw, [in] borrowed, secret) for user ([in], needed by the
 * DIGEST-MD5 scheme, whose realm comes from user@realm) against every
 * verifier in c until one matches.  May be slow (crypt(3), PBKDF2): run it
 * off the event loop.  c == NULL (unknown user) does comparable work and
 * fails.  Comparisons are constant time.
 * Returns: 0 (match), PST_EAUTH (no match, or no verifier can check a
 * password), PST_ENOMEM.
 */
PST_EXTERN int pst_cred_verify(const struct pst_cred *c, const char *user,
                               const uint8_t *pw, size_t len);

/*
 * CRAM-MD5: HMAC-MD5(password, challenge) from {CRAM-MD5} or {PLAIN}.
 * Returns: 0, PST_EAUTH (no usable verifier), PST_ENOMEM.
 */
PST_EXTERN int pst_cred_cram_md5(const struct pst_cred *c,
                                 const uint8_t *challenge, size_t len,
                                 uint8_t digest[16]);

/*
 * DIGEST-MD5: MD5(user:realm:password) from {PLAIN} (user and realm [in]
 * hashed as given; the password in ISO 8859-1 when all its characters fit,
 * RFC 2831 §2.1.2.1) or else from {DIGEST-MD5} (made for the same user and
 * realm).  The caller cannot tell a {DIGEST-MD5} verifier made for another
 * realm: the exchange simply fails.
 * Returns: 0, PST_EAUTH (no usable verifier), PST_ENOMEM.
 */
PST_EXTERN int pst_cred_digest_md5(const struct pst_cred *c, const char *user,
                                   const char *realm, uint8_t ha1[16]);

/*
 * SCRAM keys for hash h from {SCRAM-SHA-x} or, derived with a fresh salt
 * from rnd and iterations rounds (0: 4096), from {PLAIN}.
 * Returns: 0, PST_EAUTH (no usable verifier), PST_EPREP (the {PLAIN}
 * password fails SASLprep), PST_ETEMP (random source), PST_ENOMEM.
 */
PST_EXTERN int pst_cred_scram(const struct pst_cred *c, enum pst_scram_hash h,
                              pst_random_fn rnd, void *rnd_ctx,
                              unsigned iterations,
                              struct pst_scram_keys *out);

/*
 * Make a verifier of scheme ([in], case-insensitive, as Dovecot names it:
 * "PLAIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256",
 * "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "MD5-CRYPT", "CRYPT" (the
 * preferred method of crypt(3) here), aliases "CLEAR", "CLEARTEXT",
 * "HMAC-MD5", optionally with Dovecot's ".b64" or ".hex" encoding suffix)
 * from the password pw ([in] borrowed, secret), and append "{SCHEME}value"
 * to out.  A {PLAIN} password that the file format cannot hold as it is
 * (space, ':', control characters, invalid UTF-8) is written {PLAIN.b64}.
 *
 * user and realm ([in], may be NULL) serve DIGEST-MD5 only, which stores
 * MD5(user:realm:password): with realm NULL, user "name@realm" is split at
 * its last '@' as Dovecot does (no '@': empty realm); user is required.
 * The password is hashed in ISO 8859-1 when all its characters fit, as
 * RFC 2831 §2.1.2.1 clients hash it (Dovecot hashes UTF-8: for such a
 * non-ASCII password the two values differ; pst_cred_verify() accepts
 * both).
 * rounds: SCRAM iterations (0: 4096; fewer than 4096 is PST_EWEAK),
 * SHA512/SHA256-CRYPT rounds (0: crypt's default, 5000; else 1000 to
 * 999999999), BLF-CRYPT cost (0: PST_CRED_BLF_DEFAULT_COST; else 4 to 31),
 * CRYPT: the count crypt_gensalt() takes for the preferred method; ignored
 * by schemes without a cost.  rnd (NULL: pst_random_default) gives the
 * salt, fresh for each call.  SCRAM passwords are SASLprep'd first
 * (RFC 5802 §2.2, as a stored string).  DES-CRYPT is verified but never
 * made: it uses only the first 8 characters of a password.
 * On error out is left as it was.
 * Returns: 0, PST_ENOTSUP (unknown scheme name), PST_EINVAL (no user for
 * DIGEST-MD5, rounds out of range, password with a NUL for a crypt
 * scheme), PST_EWEAK (too few SCRAM iterations, DES-CRYPT), PST_EPREP
 * (the password fails SASLprep, SCRAM only), PST_ETEMP (random source),
 * PST_ELIMIT, PST_ENOMEM.
 */
PST_EXTERN int pst_cred_make(const char *scheme, const char *user,
                             const char *realm, const uint8_t *pw,
                             size_t len, unsigned rounds, pst_random_fn rnd,
                             void *rnd_ctx, struct pst_buf *out);

#ifdef __cplusplus
}
#endif
#endif
