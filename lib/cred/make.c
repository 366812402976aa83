/*
 * Making verifiers: pst_cred_make() prints "{SCHEME}value" in the form
 * Dovecot's `doveadm pw -s SCHEME` prints, so that either side verifies
 * what the other made.
 */
#include <string.h>

#include <openssl/crypto.h>

#include <postern/base64.h>

#include "../internal.h"
#include "cred_int.h"

/* SHA-crypt's rounds bounds (libxcrypt crypt-sha512.c, ROUNDS_MIN/MAX). */
#define MAKE_SHA_ROUNDS_MIN 1000UL
#define MAKE_SHA_ROUNDS_MAX 999999999UL
/* bcrypt's cost bounds (log2 of the rounds). */
#define MAKE_BLF_COST_MIN 4UL
#define MAKE_BLF_COST_MAX 31UL

/* Whether a {PLAIN} password can be written as it is: printable, no space
 * (verifier separator) or ':' (field separator), valid UTF-8. */
static int
make_plain_fits(const uint8_t *pw, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (pw[i] <= 0x20 || pw[i] == 0x7f || pw[i] == ':')
            return 0;
    return pst__utf8_valid(pw, len);
}

/* The raw value of a scheme whose default encoding is NONE is text: build
 * it into raw.  Others build their raw bytes. */
static int
make_raw(const struct pst__scheme_info *info, const char *user,
         const char *realm, const uint8_t *pw, size_t len, unsigned rounds,
         pst_random_fn rnd, void *rnd_ctx, struct pst_buf *raw)
{
    uint8_t ctx[PST__CRAM_MD5_CTX_LEN];
    struct pst_buf prepped;
    struct pst_scram_keys k;
    unsigned long count = 0;
    int rc;

    switch (info->scheme) {
    case PST_SCHEME_PLAIN:
        return pst_buf_append(raw, pw, len);
    case PST_SCHEME_CRAM_MD5:
        if ((rc = pst__cram_md5_context(pw, len, ctx)) == 0)
            rc = pst_buf_append(raw, ctx, sizeof(ctx));
        OPENSSL_cleanse(ctx, sizeof(ctx));
        return rc;
    case PST_SCHEME_DIGEST_MD5:
        if (user == NULL)
            return PST_EINVAL;
        /* In ISO 8859-1 when the password fits (RFC 2831 §2.1.2.1), so
         * that the value serves real DIGEST-MD5 clients. */
        if ((rc = pst__digest_md5_ha1(user, realm, pw, len, 1, ctx)) == 0)
            rc = pst_buf_append(raw, ctx, PST__MD5_LEN);
        OPENSSL_cleanse(ctx, sizeof(ctx));
        return rc;
    case PST_SCHEME_SCRAM_SHA1:
    case PST_SCHEME_SCRAM_SHA256:
        /* RFC 5802 §5.1, RFC 7677 §4: at least 4096 iterations. */
        if (rounds == 0)
            rounds = PST_CRED_SCRAM_DEFAULT_ITER;
        if (rounds < PST_CRED_SCRAM_MIN_ITER)
            return PST_EWEAK;
        if (rounds > PST_CRED_SCRAM_MAX_ITER)
            return PST_EINVAL;
        memset(&k, 0, sizeof(k));
        k.iterations = rounds;
        k.salt_len = PST_CRED_SCRAM_SALT_LEN;
        k.key_len = pst__scram_key_len(info->hash);
        if ((rc = pst__random(rnd, rnd_ctx, k.salt, k.salt_len)) < 0)
            return rc;
        /* RFC 5802 §2.2: Normalize(password) is SASLprep, a stored
         * string; a password it refuses could never log in by SCRAM. */
        pst_buf_init(&prepped, pst__cred_prep_room(len), 1);
        rc = pst__saslprep(pw, len, 1, &prepped);
        if (rc == PST_ELIMIT)
            rc = PST_EPREP;
        if (rc == 0)
            rc = pst__scram_derive(info->hash, prepped.data, prepped.len,
                                   k.salt, k.salt_len, k.iterations, NULL,
                                   NULL, k.stored_key, k.server_key);
        pst_buf_clear(&prepped);
        /* Dovecot's form: iter,salt,StoredKey,ServerKey. */
        if (rc == 0)
            rc = pst_buf_printf(raw, "%u,", k.iterations);
        if (rc == 0)
            rc = pst_base64_encode(k.salt, k.salt_len, raw);
        if (rc == 0)
            rc = pst_buf_append_byte(raw, ',');
        if (rc == 0)
            rc = pst_base64_encode(k.stored_key, k.key_len, raw);
        if (rc == 0)
            rc = pst_buf_append_byte(raw, ',');
        if (rc == 0)
            rc = pst_base64_encode(k.server_key, k.key_len, raw);
        OPENSSL_cleanse(&k, sizeof(k));
        return rc;
    case PST_SCHEME_CRYPT:
        if (!info->makeable)
            return PST_EWEAK;
        if (strcmp(info->crypt_prefix, "$6$") == 0 || /* not secret */
            strcmp(info->crypt_prefix, "$5$") == 0) { /* not secret */
            count = rounds;
            if (count != 0 && (count < MAKE_SHA_ROUNDS_MIN ||
                               count > MAKE_SHA_ROUNDS_MAX))
                return PST_EINVAL;
        } else if (strcmp(info->crypt_prefix, "$2y$") == 0) { /* not secret */
            count = rounds != 0 ? rounds : PST_CRED_BLF_DEFAULT_COST;
            if (count < MAKE_BLF_COST_MIN || count > MAKE_BLF_COST_MAX)
                return PST_EINVAL;
        } else if (info->crypt_prefix[0] == '\0') {
            count = rounds; /* the preferred method's own scale */
        }
        return pst__crypt_make(info->crypt_prefix, count, pw, len, rnd,
                               rnd_ctx, raw);
    }
    return PST_EINVAL;
}

int
pst_cred_make(const char *scheme, const char *user, const char *realm,
              const uint8_t *pw, size_t len, unsigned rounds,
              pst_random_fn rnd, void *rnd_ctx, struct pst_buf *out)
{
    const struct pst__scheme_info *info;
    enum pst__cred_enc enc;
    struct pst_buf raw;
    size_t start = out->len;
    int explicit_enc, rc;

    if (scheme == NULL)
        return PST_EINVAL;
    info = pst__scheme_lookup(scheme, strlen(scheme), &enc);
    if (info == NULL)
        return PST_ENOTSUP;
    explicit_enc = strchr(scheme, '.') != NULL;
    pst_buf_init(&raw, (size_t)1 << 20, 1);
    rc = make_raw(info, user, realm, pw, len, rounds, rnd, rnd_ctx, &raw);
    if (rc < 0)
        goto out;
    if (info->scheme == PST_SCHEME_PLAIN && !explicit_enc &&
        !make_plain_fits(raw.data, raw.len))
        enc = PST__ENC_B64;
    rc = pst_buf_printf(out, "{%s%s}", info->name,
                        enc == info->default_enc && !explicit_enc ? ""
                        : enc == PST__ENC_B64                     ? ".b64"
                        : enc == PST__ENC_HEX                     ? ".hex"
                                                                  : "");
    if (rc < 0)
        goto out;
    switch (enc) {
    case PST__ENC_NONE:
        rc = pst_buf_append(out, raw.data != NULL ? raw.data
                                                  : (const uint8_t *)"",
                            raw.len);
        break;
    case PST__ENC_HEX:
        rc = pst_buf_append_hex(out, raw.data, raw.len);
        break;
    case PST__ENC_B64:
        rc = pst_base64_encode(raw.data, raw.len, out);
        break;
    }
out:
    pst_buf_clear(&raw);
    if (rc < 0) {
        /* Leave out as it was; wipe what a secret {PLAIN} may have left. */
        if (out->data != NULL) {
            OPENSSL_cleanse(out->data + start, out->len - start);
            out->data[start] = '\0';
        }
        out->len = start;
    }
    return rc;
}
