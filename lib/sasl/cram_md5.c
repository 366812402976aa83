/*
 * CRAM-MD5, RFC 2195: the server sends a unique challenge
 * "<random.timestamp@hostname>", the client answers
 * "user SP hex(HMAC-MD5(secret, challenge))" (RFC 2104 HMAC).
 */
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mech.h"

#define CRAM_MD5_DIGEST   16               /* MD5 output, octets */
#define CRAM_MD5_HEX      (2 * CRAM_MD5_DIGEST)
#define CRAM_MD5_RANDOM   8                /* random octets per challenge */

/* HMAC-MD5(key, data) into digest.  Returns: 0, PST_ENOMEM. */
static int
cram_md5_hmac(const uint8_t *key, size_t key_len, const uint8_t *data,
              size_t len, uint8_t digest[CRAM_MD5_DIGEST])
{
    unsigned int n = 0;

    if (key_len > INT_MAX ||
        HMAC(EVP_md5(), key, (int)key_len, data, len, digest, &n) == NULL ||
        n != CRAM_MD5_DIGEST)
        return PST_ENOMEM;
    return 0;
}

/* --- Client half --------------------------------------------------------- */

enum cram_md5_client_state {
    CRAM_C_START = 0,    /* nothing sent */
    CRAM_C_WAIT,         /* said "no initial response"; want the challenge */
    CRAM_C_ANSWERED,     /* sent the digest: nothing more to say */
};

struct cram_md5_client {
    enum cram_md5_client_state state;
};

static int
cram_md5_client_step(struct pst_sasl_client *c, const uint8_t *in,
                     size_t len, struct pst_buf *out)
{
    struct cram_md5_client *st = c->state;
    uint8_t digest[CRAM_MD5_DIGEST];
    int rc;

    if (st->state == CRAM_C_ANSWERED)
        return PST_ESTATE;          /* RFC 2195 §2: one challenge only */
    if (in == NULL) {
        /* RFC 4954 §4: the server speaks first; send no initial
         * response (an empty out). */
        if (st->state != CRAM_C_START)
            return PST_ESTATE;
        st->state = CRAM_C_WAIT;
        return PST_SASL_CONTINUE;
    }
    /* RFC 2195 §2: the challenge is a msg-id, never empty. */
    if (len == 0)
        return PST_EPROTO;
    if ((rc = cram_md5_hmac(c->password.data, c->password.len, in, len,
                            digest)) < 0)
        goto out;
    /* RFC 2195 §2: the user name, a space, then the digest as 32
     * lowercase hex digits. */
    if ((rc = pst_buf_append(out, c->authcid.data, c->authcid.len)) < 0 ||
        (rc = pst_buf_append_byte(out, ' ')) < 0 ||
        (rc = pst_buf_append_hex(out, digest, sizeof(digest))) < 0)
        goto out;
    st->state = CRAM_C_ANSWERED;
    rc = PST_SASL_CONTINUE;
out:
    OPENSSL_cleanse(digest, sizeof(digest));
    return rc;
}

/* --- Server half --------------------------------------------------------- */

enum cram_md5_server_state {
    CRAM_S_START = 0,    /* nothing sent */
    CRAM_S_CHALLENGED,   /* sent the challenge; want "user digest" */
    CRAM_S_LOOKUP,       /* waiting for credentials */
};

struct cram_md5_server {
    enum cram_md5_server_state state;
    struct pst_buf challenge;               /* kept for the HMAC */
    uint8_t digest[CRAM_MD5_DIGEST];        /* the client's */
};

/* Key of the stand-in HMAC for a user without a usable verifier: any
 * fixed key costs the same as a real one of up to a block (RFC 2104 §2). */
static const uint8_t cram_md5_dummy_key[] = "postern: no such verifier";

static int
cram_md5_lower_hex(uint8_t ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* 1 if the user name p[0..len) has a C0 or C1 control or DEL. */
static int
cram_md5_has_control(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 1;
        /* U+0080..U+009F are 0xc2 0x80..0x9f in UTF-8. */
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 &&
            p[i + 1] <= 0x9f)
            return 1;
    }
    return 0;
}

int
pst__cram_md5_parse(const uint8_t *in, size_t len, size_t *user_len,
                    uint8_t digest[16])
{
    size_t sp;

    *user_len = 0;
    /* RFC 2195 §2: user SP digest, the digest being exactly 32 lowercase
     * hex digits.  The user name may itself hold spaces, so it ends at the
     * last space. */
    if (len < CRAM_MD5_HEX + 2)
        return PST_EPROTO;
    for (sp = len; sp > 0 && in[sp - 1] != ' '; sp--)
        ;
    if (sp == 0)
        return PST_EPROTO;      /* no space */
    sp--;                       /* index of the last space */
    if (len - sp - 1 != CRAM_MD5_HEX)
        return PST_EPROTO;
    for (size_t i = sp + 1; i < len; i++)
        if (!cram_md5_lower_hex(in[i]))
            return PST_EPROTO;
    if (sp == 0)
        return PST_EPROTO;      /* empty user name */
    if (sp > PST_SASL_MAX_NAME)
        return PST_ELIMIT;
    /* The user name is UTF-8 text: no NUL, no control characters. */
    if (!pst__utf8_valid(in, sp) || cram_md5_has_control(in, sp))
        return PST_EPROTO;
    if (pst__hex_decode((const char *)in + sp + 1, CRAM_MD5_DIGEST,
                        digest) < 0)
        return PST_EPROTO;
    *user_len = sp;
    return 0;
}

/* Make "<RANDOM.TIMESTAMP@hostname>" (RFC 2195 §2, after RFC 822's
 * msg-id) in st->challenge and out. */
static int
cram_md5_server_challenge(struct pst_sasl_server *s,
                          struct cram_md5_server *st, struct pst_buf *out)
{
    uint8_t rnd[CRAM_MD5_RANDOM];
    uint64_t r = 0;
    int rc;

    /* The random part makes every challenge unique even within one
     * second; the library reads no clock, the driver gives the time. */
    rc = pst__random(s->cfg.random, s->cfg.random_ctx, rnd, sizeof(rnd));
    if (rc < 0) {
        OPENSSL_cleanse(rnd, sizeof(rnd));
        return pst__sasl_fail(s, PST_ETEMP, "CRAM-MD5: random source failed");
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        r = (r << 8) | rnd[i];
    OPENSSL_cleanse(rnd, sizeof(rnd));
    pst_buf_init(&st->challenge, PST_SASL_MAX_MESSAGE, 0);
    rc = pst_buf_printf(&st->challenge, "<%" PRIu64 ".%" PRIu64 "@%s>", r,
                        s->cfg.timestamp, s->cfg.hostname);
    if (rc < 0)
        return pst__sasl_fail(s, rc, "CRAM-MD5: cannot make the challenge");
    if ((rc = pst_buf_append(out, st->challenge.data,
                             st->challenge.len)) < 0)
        return pst__sasl_fail(s, rc, "CRAM-MD5: cannot send the challenge");
    return 0;
}

/* After the lookup: compare the client's digest with the expected one. */
static int
cram_md5_server_check(struct pst_sasl_server *s, struct cram_md5_server *st)
{
    uint8_t want[CRAM_MD5_DIGEST];
    const char *reason = NULL;
    int rc, eq;

    if (s->cred == NULL) {
        reason = "unknown user";
        rc = PST_EAUTH;
    } else {
        rc = pst_cred_cram_md5(s->cred, st->challenge.data,
                               st->challenge.len, want);
        if (rc == PST_EAUTH)
            reason = "no CRAM-MD5 or PLAIN verifier";
    }
    if (rc == PST_EAUTH) {
        /* DESIGN.md "Secrets": an unknown user or one without a usable
         * verifier does the same work as a wrong digest and fails the
         * same way; only the log tells them apart. */
        rc = cram_md5_hmac(cram_md5_dummy_key, sizeof(cram_md5_dummy_key),
                           st->challenge.data, st->challenge.len, want);
    }
    if (rc < 0) {
        OPENSSL_cleanse(want, sizeof(want));
        return pst__sasl_fail(s, rc, "CRAM-MD5: cannot compute the digest");
    }
    eq = CRYPTO_memcmp(want, st->digest, sizeof(want)) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    if (reason != NULL)
        return pst__sasl_fail(s, PST_EAUTH, reason);
    if (!eq)
        return pst__sasl_fail(s, PST_EAUTH, "digest mismatch");
    return PST_SASL_DONE;
}

static int
cram_md5_server_step(struct pst_sasl_server *s, const uint8_t *in,
                     size_t len, struct pst_buf *out)
{
    struct cram_md5_server *st = s->state;
    size_t user_len;
    int rc;

    switch (st->state) {
    case CRAM_S_START:
        /* RFC 4954 §4: an initial response to a server-first mechanism
         * is an error (501 5.7.0). */
        if (in != NULL)
            return pst__sasl_fail(s, PST_EPROTO,
                                  "CRAM-MD5: initial response not allowed");
        if ((rc = cram_md5_server_challenge(s, st, out)) < 0)
            return rc;
        st->state = CRAM_S_CHALLENGED;
        return PST_SASL_CONTINUE;
    case CRAM_S_CHALLENGED:
        if (in == NULL)
            return pst__sasl_fail(s, PST_ESTATE, "CRAM-MD5: no response");
        rc = pst__cram_md5_parse(in, len, &user_len, st->digest);
        if (rc == PST_ELIMIT)
            return pst__sasl_fail(s, rc, "CRAM-MD5: user name too long");
        if (rc < 0)
            return pst__sasl_fail(s, rc, "CRAM-MD5: malformed response");
        if ((rc = pst__sasl_set_authcid(s, in, user_len, 0)) < 0)
            return rc;
        st->state = CRAM_S_LOOKUP;
        return PST_SASL_NEED_CRED;
    case CRAM_S_LOOKUP:
        if (in != NULL)
            return pst__sasl_fail(s, PST_ESTATE,
                                  "CRAM-MD5: message after the response");
        return cram_md5_server_check(s, st);
    }
    return PST_ESTATE;
}

static void
cram_md5_server_free(struct pst_sasl_server *s)
{
    struct cram_md5_server *st = s->state;

    if (st != NULL)
        pst_buf_clear(&st->challenge);
}

static const struct pst_sasl_client_ops cram_md5_client = {
    .state_size = sizeof(struct cram_md5_client),
    .step = cram_md5_client_step,
};

static const struct pst_sasl_server_ops cram_md5_server = {
    .state_size = sizeof(struct cram_md5_server),
    .step = cram_md5_server_step,
    .free = cram_md5_server_free,
};

const struct pst_sasl_mech pst__mech_cram_md5 = {
    .name = "CRAM-MD5",
    .flags = 0u,
    .client = &cram_md5_client,
    .server = &cram_md5_server,
};
