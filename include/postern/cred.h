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
 * ..."); text ([in] borrowed) is copied.  A value without a {SCHEME} prefix
 * is taken as {CRYPT}, as Dovecot's passwd-file does.  Each value is checked
 * for its scheme's form (lengths, hex, base64, iteration counts).
 * *out ([out] owned) is freed with pst_cred_free().
 * Returns: 0, PST_ESYNTAX (malformed or unknown scheme), PST_ENOMEM.
 */
PST_EXTERN int pst_cred_parse(const char *text, size_t len,
                              struct pst_cred **out);

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
 * DIGEST-MD5: MD5(user:realm:password) from {DIGEST-MD5} (made for the same
 * user and realm) or {PLAIN}.  The caller cannot tell a {DIGEST-MD5}
 * verifier made for another realm: the exchange simply fails.
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

#ifdef __cplusplus
}
#endif
#endif
