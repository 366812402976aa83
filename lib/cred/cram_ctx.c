/*
 * Dovecot's stored CRAM-MD5 form: HMAC-MD5 (RFC 2104) stopped after the
 * first block of its inner and outer hash, so that the key (the password)
 * need not be stored yet the server can finish HMAC-MD5(key, challenge)
 * for RFC 2195.  Reading and resuming an MD5 state takes OpenSSL's
 * low-level MD5_CTX, deprecated in OpenSSL 3 but present: the EVP API
 * cannot export or import a digest's midstate.  This file alone uses it.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/md5.h>

#include "cred_int.h"

#define CRAM_BLOCK 64 /* MD5 block size, RFC 2104 §2 "B" */

static void
cram_put_le32(uint8_t *p, MD5_LONG v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)((v >> 8) & 0xff);
    p[2] = (uint8_t)((v >> 16) & 0xff);
    p[3] = (uint8_t)((v >> 24) & 0xff);
}

static MD5_LONG
cram_get_le32(const uint8_t *p)
{
    return (MD5_LONG)p[0] | (MD5_LONG)p[1] << 8 | (MD5_LONG)p[2] << 16 |
           (MD5_LONG)p[3] << 24;
}

/* MD5 over one block of key XOR pad; write the state a,b,c,d. */
static void
cram_half(const uint8_t key[CRAM_BLOCK], uint8_t pad, uint8_t out[16])
{
    uint8_t block[CRAM_BLOCK];
    MD5_CTX c;

    for (size_t i = 0; i < CRAM_BLOCK; i++)
        block[i] = key[i] ^ pad;
    MD5_Init(&c);
    MD5_Update(&c, block, CRAM_BLOCK); /* exactly one block: no tail */
    cram_put_le32(out, c.A);
    cram_put_le32(out + 4, c.B);
    cram_put_le32(out + 8, c.C);
    cram_put_le32(out + 12, c.D);
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_cleanse(&c, sizeof(c));
}

int
pst__cram_md5_context(const uint8_t *pw, size_t len,
                      uint8_t ctx[PST__CRAM_MD5_CTX_LEN])
{
    uint8_t key[CRAM_BLOCK];

    memset(key, 0, sizeof(key));
    /* RFC 2104 §2: a key longer than B bytes is first hashed. */
    if (len > CRAM_BLOCK) {
        if (EVP_Digest(pw, len, key, NULL, EVP_md5(), NULL) != 1)
            return PST_ENOMEM;
    } else if (len > 0) {
        memcpy(key, pw, len);
    }
    /* Outer (opad 0x5c) first, then inner (ipad 0x36): Dovecot's
     * hmac_md5_get_cram_context() order. */
    cram_half(key, 0x5c, ctx);
    cram_half(key, 0x36, ctx + 16);
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

/* An MD5_CTX that has hashed one block and holds the state at p. */
static void
cram_resume_state(MD5_CTX *c, const uint8_t *p)
{
    MD5_Init(c);
    c->A = cram_get_le32(p);
    c->B = cram_get_le32(p + 4);
    c->C = cram_get_le32(p + 8);
    c->D = cram_get_le32(p + 12);
    c->Nl = CRAM_BLOCK * 8; /* bit count so far: one block */
    c->Nh = 0;
    c->num = 0;
}

int
pst__cram_md5_resume(const uint8_t ctx[PST__CRAM_MD5_CTX_LEN],
                     const uint8_t *data, size_t len,
                     uint8_t digest[PST__MD5_LEN])
{
    uint8_t inner[PST__MD5_LEN];
    MD5_CTX c;

    /* RFC 2104 §2: H(K XOR opad, H(K XOR ipad, text)). */
    cram_resume_state(&c, ctx + 16);
    MD5_Update(&c, data, len);
    MD5_Final(inner, &c);
    cram_resume_state(&c, ctx);
    MD5_Update(&c, inner, sizeof(inner));
    MD5_Final(digest, &c);
    OPENSSL_cleanse(inner, sizeof(inner));
    OPENSSL_cleanse(&c, sizeof(c));
    return 0;
}
