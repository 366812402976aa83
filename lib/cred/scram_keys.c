/*
 * SCRAM key derivation, RFC 5802 §3:
 *   SaltedPassword = Hi(Normalize(password), salt, i)   (PBKDF2-HMAC)
 *   ClientKey      = HMAC(SaltedPassword, "Client Key")
 *   StoredKey      = H(ClientKey)
 *   ServerKey      = HMAC(SaltedPassword, "Server Key")
 * Shared by the SCRAM mechanism (client half) and the {SCRAM-SHA-x} scheme.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../internal.h"

static const EVP_MD *
scram_md(enum pst_scram_hash h)
{
    return h == PST_SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

size_t
pst__scram_key_len(enum pst_scram_hash h)
{
    return h == PST_SCRAM_SHA1 ? 20 : 32;
}

const char *
pst__scram_md_name(enum pst_scram_hash h)
{
    return h == PST_SCRAM_SHA1 ? "SHA1" : "SHA256";
}

int
pst__scram_hmac(enum pst_scram_hash h, const uint8_t *key, size_t key_len,
                const uint8_t *data, size_t len, uint8_t *out)
{
    unsigned int n = 0;

    if (key_len > INT_MAX)
        return PST_EINVAL;
    if (HMAC(scram_md(h), key, (int)key_len, data, len, out, &n) == NULL)
        return PST_ENOMEM;
    return 0;
}

int
pst__scram_hash(enum pst_scram_hash h, const uint8_t *data, size_t len,
                uint8_t *out)
{
    if (EVP_Digest(data, len, out, NULL, scram_md(h), NULL) != 1)
        return PST_ENOMEM;
    return 0;
}

int
pst__scram_derive(enum pst_scram_hash h, const uint8_t *pw, size_t pw_len,
                  const uint8_t *salt, size_t salt_len, unsigned iter,
                  uint8_t *salted, uint8_t *client_key, uint8_t *stored_key,
                  uint8_t *server_key)
{
    uint8_t sp[PST_SCRAM_MAX_KEY], ck[PST_SCRAM_MAX_KEY];
    size_t klen = pst__scram_key_len(h);
    int rc = PST_ENOMEM;

    if (iter == 0 || iter > INT_MAX || pw_len > INT_MAX || salt_len > INT_MAX)
        return PST_EINVAL;
    if (PKCS5_PBKDF2_HMAC((const char *)pw, (int)pw_len, salt, (int)salt_len,
                          (int)iter, scram_md(h), (int)klen, sp) != 1)
        goto out;
    if (salted != NULL)
        memcpy(salted, sp, klen);
    if ((rc = pst__scram_hmac(h, sp, klen, (const uint8_t *)"Client Key", 10,
                              ck)) < 0)
        goto out;
    if (client_key != NULL)
        memcpy(client_key, ck, klen);
    if (stored_key != NULL && (rc = pst__scram_hash(h, ck, klen,
                                                    stored_key)) < 0)
        goto out;
    if (server_key != NULL &&
        (rc = pst__scram_hmac(h, sp, klen, (const uint8_t *)"Server Key", 10,
                              server_key)) < 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(sp, sizeof(sp));
    OPENSSL_cleanse(ck, sizeof(ck));
    return rc;
}
