/*
 * Internals shared by the files of lib/cred (not exported: pst__ names are
 * hidden by -fvisibility=hidden and the version script).
 */
#ifndef POSTERN_CRED_INT_H
#define POSTERN_CRED_INT_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <postern/cred.h>
#include <postern/rand.h>

#define PST__CRAM_MD5_CTX_LEN 32 /* Dovecot's CRAM_MD5_CONTEXTLEN */
#define PST__MD5_LEN          16

/* How a stored value is written (Dovecot's PW_ENCODING_*). */
enum pst__cred_enc {
    PST__ENC_NONE = 0,  /* as it is (text) */
    PST__ENC_HEX,       /* hex of the raw bytes */
    PST__ENC_B64,       /* base64 of the raw bytes */
};

/* One scheme name Dovecot knows and postern handles. */
struct pst__scheme_info {
    const char *name;               /* canonical, as printed */
    enum pst_cred_scheme scheme;
    enum pst_scram_hash hash;       /* SCRAM only */
    enum pst__cred_enc default_enc; /* without a suffix */
    const char *crypt_prefix;       /* crypt schemes: crypt_gensalt prefix,
                                       "" for the preferred method */
    unsigned makeable;              /* pst_cred_make() may produce it */
};

/*
 * cred.c: look up a scheme name (without braces) of n bytes, with an
 * optional ".b64"/".base64"/".hex" suffix.  *enc gets the encoding.
 * Returns: the entry, or NULL if unknown.
 */
const struct pst__scheme_info *pst__scheme_lookup(const char *name, size_t n,
                                                  enum pst__cred_enc *enc);

/*
 * cram_ctx.c: Dovecot's stored CRAM-MD5 form (hmac-cram-md5.c): the MD5
 * states after the first block of HMAC-MD5's outer and inner hash,
 * LE32(outer a,b,c,d) || LE32(inner a,b,c,d).  Returns: 0, PST_EINVAL,
 * PST_ENOMEM.
 */
int pst__cram_md5_context(const uint8_t *pw, size_t len,
                          uint8_t ctx[PST__CRAM_MD5_CTX_LEN]);
/* Finish HMAC-MD5(key, data) from such a context.  Returns: 0. */
int pst__cram_md5_resume(const uint8_t ctx[PST__CRAM_MD5_CTX_LEN],
                         const uint8_t *data, size_t len,
                         uint8_t digest[PST__MD5_LEN]);

/*
 * crypt.c: whether hash[0..len) (no NUL inside) has the complete form of
 * a hash crypt(3) here can check.  Returns: 0, or PST_ESYNTAX with *why.
 */
int pst__crypt_check(const char *hash, size_t len, const char **why);
/*
 * Check pw against the NUL-terminated hash with crypt_rn(), comparing the
 * output in constant time.  Returns: 0, PST_EAUTH, PST_ENOMEM.
 */
int pst__crypt_verify(const char *hash, size_t hash_len, const uint8_t *pw,
                      size_t len);
/*
 * Append crypt(pw, fresh setting) to out.  prefix "" is the preferred
 * method; count as crypt_gensalt() takes it.
 * Returns: 0, PST_EINVAL, PST_ETEMP, PST_ELIMIT, PST_ENOMEM.
 */
int pst__crypt_make(const char *prefix, unsigned long count,
                    const uint8_t *pw, size_t len, pst_random_fn rnd,
                    void *rnd_ctx, struct pst_buf *out);

/*
 * cred.c: MD5(user ":" realm ":" pw) with Dovecot's split of "user@realm"
 * when realm is NULL; latin1: hash pw in ISO 8859-1 when all its
 * characters fit (RFC 2831 §2.1.2.1).  Returns: 0, PST_ENOMEM.
 */
int pst__digest_md5_ha1(const char *user, const char *realm,
                        const uint8_t *pw, size_t len, int latin1,
                        uint8_t ha1[PST__MD5_LEN]);

/* cred.c: a ceiling for the SASLprep output of len bytes. */
size_t pst__cred_prep_room(size_t len);

#endif
