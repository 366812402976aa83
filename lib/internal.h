/*
 * libpostern internals shared between modules (not exported: pst__ names
 * are hidden by -fvisibility=hidden and the version script).
 */
#ifndef POSTERN_INTERNAL_H
#define POSTERN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/cred.h>
#include <postern/error.h>
#include <postern/rand.h>

#define PST__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* util/utf8.c: 1 if p[0..len) is well-formed UTF-8 (RFC 3629), else 0. */
int pst__utf8_valid(const uint8_t *p, size_t len);

/* util/rand.c: call rnd (or the default) for len bytes. */
int pst__random(pst_random_fn rnd, void *ctx, uint8_t *buf, size_t len);

/*
 * util/saslprep.c: SASLprep (RFC 4013) of UTF-8 in[0..len) via libidn's
 * stringprep, as a "stored string" (unassigned code points refused) when
 * stored != 0, else as a "query" (RFC 4013 §2.5 / RFC 3454 §7).  The result
 * is appended to out (NUL-terminated by the buffer).
 * Returns: 0, PST_EPREP (prohibited output, bidi rule, empty result or bad
 * UTF-8), PST_ELIMIT, PST_ENOMEM.
 */
int pst__saslprep(const uint8_t *in, size_t len, int stored,
                  struct pst_buf *out);

/* util/hex.c: decode 2*n lowercase or uppercase hex digits into out[n]. */
int pst__hex_decode(const char *in, size_t n, uint8_t *out);

/*
 * cred/scram_keys.c: SaltedPassword = PBKDF2(password, salt, iter) with the
 * hash of h, and from it ClientKey, StoredKey and ServerKey (RFC 5802 §3).
 * Any of the out pointers may be NULL.  Each is key_len(h) bytes.
 * Returns: 0, PST_EINVAL, PST_ENOMEM.
 */
int pst__scram_derive(enum pst_scram_hash h, const uint8_t *pw, size_t pw_len,
                      const uint8_t *salt, size_t salt_len, unsigned iter,
                      uint8_t *salted, uint8_t *client_key,
                      uint8_t *stored_key, uint8_t *server_key);
/* Digest size of h (20 or 32), and its OpenSSL name ("SHA1", "SHA256"). */
size_t pst__scram_key_len(enum pst_scram_hash h);
const char *pst__scram_md_name(enum pst_scram_hash h);
/* HMAC(key, data) with hash h into out (key_len(h) bytes). */
int pst__scram_hmac(enum pst_scram_hash h, const uint8_t *key, size_t key_len,
                    const uint8_t *data, size_t len, uint8_t *out);
/* H(data) with hash h into out. */
int pst__scram_hash(enum pst_scram_hash h, const uint8_t *data, size_t len,
                    uint8_t *out);

/* cred/cred.c: whether c has a stored {SCRAM-SHA-x} verifier of hash h
 * (1) or not (0). */
int pst__cred_scram_stored(const struct pst_cred *c, enum pst_scram_hash h);
/*
 * pst_cred_scram() with salt ([in], salt_len bytes, 1 to
 * PST_SCRAM_MAX_SALT) instead of a fresh one for keys derived from
 * {PLAIN}.  Slow then (PBKDF2).
 * Returns: as pst_cred_scram(), PST_EINVAL for a bad salt_len.
 */
int pst__cred_scram_salted(const struct pst_cred *c, enum pst_scram_hash h,
                           const uint8_t *salt, size_t salt_len,
                           unsigned iterations, struct pst_scram_keys *out);
/*
 * A copy of c ([in] borrowed) with k ([in]) added as its {SCRAM-SHA-x}
 * verifier of hash h.  *out ([out] owned): pst_cred_free().
 * Returns: 0, PST_EINVAL (c NULL, or k inconsistent with h), PST_ENOMEM.
 */
int pst__cred_with_scram(const struct pst_cred *c, enum pst_scram_hash h,
                         const struct pst_scram_keys *k,
                         struct pst_cred **out);

#endif
