/*
 * Stored credentials: "{SCHEME}value" verifiers in the format of Dovecot's
 * passwd-file (src/auth/password-scheme*.c), parsed once into their raw
 * form, then used to verify a password (PLAIN, LOGIN) or to give a
 * challenge mechanism the secret it needs (CRAM-MD5, DIGEST-MD5, SCRAM).
 *
 * Dovecot's rule (INTEROP.md "Dovecot password schemes"): plaintext
 * mechanisms work with every scheme; the others need {PLAIN} or their own
 * scheme.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <postern/base64.h>

#include "../internal.h"
#include "cred_int.h"

static const struct pst__scheme_info cred_schemes[] = {
    {.name = "PLAIN", .scheme = PST_SCHEME_PLAIN, .makeable = 1},
    {.name = "CLEAR", .scheme = PST_SCHEME_PLAIN, .makeable = 1},
    {.name = "CLEARTEXT", .scheme = PST_SCHEME_PLAIN, .makeable = 1},
    {.name = "CRAM-MD5", .scheme = PST_SCHEME_CRAM_MD5,
     .default_enc = PST__ENC_HEX, .makeable = 1},
    {.name = "HMAC-MD5", .scheme = PST_SCHEME_CRAM_MD5,
     .default_enc = PST__ENC_HEX, .makeable = 1},
    {.name = "DIGEST-MD5", .scheme = PST_SCHEME_DIGEST_MD5,
     .default_enc = PST__ENC_HEX, .makeable = 1},
    {.name = "SCRAM-SHA-1", .scheme = PST_SCHEME_SCRAM_SHA1,
     .hash = PST_SCRAM_SHA1, .makeable = 1},
    {.name = "SCRAM-SHA-256", .scheme = PST_SCHEME_SCRAM_SHA256,
     .hash = PST_SCRAM_SHA256, .makeable = 1},
    {.name = "CRYPT", .scheme = PST_SCHEME_CRYPT, .crypt_prefix = "",
     .makeable = 1},
    {.name = "SHA512-CRYPT", .scheme = PST_SCHEME_CRYPT,
     .crypt_prefix = "$6$", .makeable = 1},
    {.name = "SHA256-CRYPT", .scheme = PST_SCHEME_CRYPT,
     .crypt_prefix = "$5$", .makeable = 1},
    {.name = "BLF-CRYPT", .scheme = PST_SCHEME_CRYPT,
     .crypt_prefix = "$2y$", .makeable = 1},
    {.name = "MD5-CRYPT", .scheme = PST_SCHEME_CRYPT,
     .crypt_prefix = "$1$", .makeable = 1},
    /* Verified, never made: DES uses only 8 characters of a password. */
    {.name = "DES-CRYPT", .scheme = PST_SCHEME_CRYPT, .crypt_prefix = "",
     .makeable = 0},
};

/* Bytes before the salt in a packed SCRAM record (cred_scram_pack()). */
#define CRED_SCRAM_HDR 6

/* One verifier; its raw value lives in the data area after v[n]. */
struct cred_verifier {
    enum pst_cred_scheme scheme;
    enum pst_scram_hash hash; /* SCRAM only */
    size_t off;               /* into the data area */
    size_t len;               /* raw bytes (a NUL follows, not counted) */
};

/*
 * One allocation per user: the header, n verifiers, then their raw values
 * (PLAIN: the password; CRAM-MD5: 32-byte context; DIGEST-MD5: 16-byte
 * hash; SCRAM: a struct pst_scram_keys; CRYPT: the hash text).  Secret
 * throughout: wiped on free.
 */
struct pst_cred {
    size_t size; /* bytes allocated */
    size_t n;    /* verifiers in use */
    size_t cap;  /* room in v[]; the data area follows */
    struct cred_verifier v[];
};

static uint8_t *
cred_data(const struct pst_cred *c)
{
    return (uint8_t *)&c->v[c->cap];
}

const struct pst__scheme_info *
pst__scheme_lookup(const char *name, size_t n, enum pst__cred_enc *enc)
{
    const char *dot = memchr(name, '.', n);
    size_t base = dot != NULL ? (size_t)(dot - name) : n;
    const struct pst__scheme_info *info = NULL;

    for (size_t i = 0; i < PST__ARRAY_LEN(cred_schemes); i++) {
        if (strlen(cred_schemes[i].name) == base &&
            strncasecmp(cred_schemes[i].name, name, /* not secret */
                        base) == 0) {
            info = &cred_schemes[i];
            break;
        }
    }
    if (info == NULL)
        return NULL;
    *enc = info->default_enc;
    if (dot != NULL) {
        /* Dovecot password_scheme_lookup(): ".b64", ".base64", ".hex". */
        const char *sfx = dot + 1;
        size_t sn = n - base - 1;

        if ((sn == 3 && strncasecmp(sfx, "b64", 3) == 0) || /* not secret */
            (sn == 6 && strncasecmp(sfx, "base64", 6) == 0)) /* not secret */
            *enc = PST__ENC_B64;
        else if (sn == 3 && strncasecmp(sfx, "hex", 3) == 0) /* not secret */
            *enc = PST__ENC_HEX;
        else
            return NULL;
    }
    return info;
}

/* One "{SCHEME}value" token, split but not yet decoded. */
struct cred_token {
    const struct pst__scheme_info *info;
    enum pst__cred_enc enc;
    const char *value;
    size_t value_len;
};

/* Only a {PLAIN} password as it is may hold a space. */
static int
cred_token_spaces(const struct cred_token *t, const char **why)
{
    if ((t->info->scheme != PST_SCHEME_PLAIN || t->enc != PST__ENC_NONE) &&
        memchr(t->value, ' ', t->value_len) != NULL) {
        *why = "a space inside a verifier (only a {PLAIN} password may "
               "hold one)";
        return PST_ESYNTAX;
    }
    return 0;
}

static int
cred_token_parse(const char *p, size_t len, struct cred_token *t,
                 const char **why)
{
    static const struct pst__scheme_info crypt_default = {
        .name = "CRYPT", .scheme = PST_SCHEME_CRYPT, .crypt_prefix = "",
    };
    const char *close;

    if (len == 0) {
        *why = "empty verifier (a space at the start, or nothing)";
        return PST_ESYNTAX;
    }
    for (size_t i = 0; i < len; i++) {
        if ((uint8_t)p[i] < 0x20 || p[i] == 0x7f) {
            *why = "control character in a verifier";
            return PST_ESYNTAX;
        }
    }
    if (p[0] != '{') {
        /* Dovecot's passwd-file: a value without {SCHEME} is CRYPT. */
        t->info = &crypt_default;
        t->enc = PST__ENC_NONE;
        t->value = p;
        t->value_len = len;
        return cred_token_spaces(t, why);
    }
    close = memchr(p, '}', len);
    if (close == NULL) {
        *why = "'{' without '}' around the scheme name";
        return PST_ESYNTAX;
    }
    t->info = pst__scheme_lookup(p + 1, (size_t)(close - p - 1), &t->enc);
    if (t->info == NULL) {
        *why = "unknown password scheme";
        return PST_ESYNTAX;
    }
    t->value = close + 1;
    t->value_len = len - (size_t)(close - p) - 1;
    return cred_token_spaces(t, why);
}

/* Upper bound of the raw size of t (plus its NUL). */
static size_t
cred_token_room(const struct cred_token *t)
{
    size_t room = t->value_len + 1, salt = PST_SCRAM_MAX_SALT;

    if (t->info->scheme == PST_SCHEME_SCRAM_SHA1 ||
        t->info->scheme == PST_SCHEME_SCRAM_SHA256) {
        if (t->enc == PST__ENC_NONE) {
            /* The salt is the second field: 3 bytes per 4 characters. */
            const char *c1 = memchr(t->value, ',', t->value_len), *c2;

            c2 = c1 == NULL ? NULL
                            : memchr(c1 + 1, ',', t->value_len -
                                                      (size_t)(c1 + 1 -
                                                               t->value));
            if (c2 != NULL && (size_t)(c2 - c1 - 1) / 4 * 3 < salt)
                salt = (size_t)(c2 - c1 - 1) / 4 * 3;
        }
        room = CRED_SCRAM_HDR + salt + 2 * pst__scram_key_len(t->info->hash);
    } else if (t->enc != PST__ENC_NONE) {
        /* Hex halves, base64 takes a quarter off (hex may fall back to
         * base64). */
        room = t->value_len / 4 * 3 + 4;
    }
    return room;
}

/* Why t's value did not decode (static strings: no secret in them). */
static const char *
cred_decode_why(const struct cred_token *t)
{
    int hex = t->enc == PST__ENC_HEX;

    switch (t->info->scheme) {
    case PST_SCHEME_PLAIN:
        return hex ? "{PLAIN}: the value is not valid hex"
                   : "{PLAIN}: the value is not valid base64";
    case PST_SCHEME_CRAM_MD5:
        return hex ? "{CRAM-MD5}: the value is not valid hex"
                   : "{CRAM-MD5}: the value is not valid base64";
    case PST_SCHEME_DIGEST_MD5:
        return hex ? "{DIGEST-MD5}: the value is not valid hex"
                   : "{DIGEST-MD5}: the value is not valid base64";
    case PST_SCHEME_SCRAM_SHA1:
    case PST_SCHEME_SCRAM_SHA256:
        return hex ? "{SCRAM-SHA-x}: the value is not valid hex"
                   : "{SCRAM-SHA-x}: the value is not valid base64";
    case PST_SCHEME_CRYPT:
        break;
    }
    return hex ? "{CRYPT}: the value is not valid hex"
               : "{CRYPT}: the value is not valid base64";
}

/* Decode t's value by its encoding into raw (a secret buffer). */
static int
cred_token_decode(const struct cred_token *t, struct pst_buf *raw,
                  const char **why)
{
    int rc;

    switch (t->enc) {
    case PST__ENC_NONE:
        return pst_buf_append(raw, t->value, t->value_len);
    case PST__ENC_HEX:
        if (t->value_len % 2 == 0) {
            rc = pst_buf_append(raw, t->value, t->value_len / 2);
            if (rc < 0)
                return rc;
            if (pst__hex_decode(t->value, t->value_len / 2, raw->data) == 0)
                return 0;
            pst_buf_reset(raw);
        }
        /* Dovecot password_decode(): hex that does not decode may be
         * base64 after all, some schemes' lengths being ambiguous. */
        /* fall through */
    case PST__ENC_B64:
        rc = pst_base64_decode((const uint8_t *)t->value, t->value_len, raw);
        if (rc == PST_EPROTO) {
            *why = cred_decode_why(t);
            return PST_ESYNTAX;
        }
        return rc;
    }
    return PST_EINVAL;
}

/* A decimal number in [lo, hi] without sign or leading zeros. */
static int
cred_uint(const char *p, size_t n, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned long v = 0;

    if (n == 0 || n > 10 || (p[0] == '0' && n > 1))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v < lo || v > hi)
        return 0;
    *out = (unsigned)v;
    return 1;
}

/* Base64 field p[0..n) into dst, which must get between min and max
 * bytes; scratch is a secret buffer of PST_SCRAM_MAX_KEY or more. */
static int
cred_b64_field(const char *p, size_t n, uint8_t *dst, size_t min, size_t max,
               size_t *got, struct pst_buf *scratch)
{
    int ok;

    pst_buf_reset(scratch);
    ok = n > 0 && n <= PST_BASE64_ENCLEN(max) &&
         pst_base64_decode((const uint8_t *)p, n, scratch) == 0 &&
         scratch->len >= min && scratch->len <= max;
    if (ok) {
        memcpy(dst, scratch->data, scratch->len);
        *got = scratch->len;
    }
    pst_buf_reset(scratch);
    return ok;
}

/*
 * Dovecot's SCRAM form (password-scheme-scram.c scram_scheme_parse()):
 * "iter,salt,StoredKey,ServerKey", the last three in base64.
 */
static int
cred_scram_parse(const uint8_t *raw, size_t len, enum pst_scram_hash h,
                 struct pst_scram_keys *k, const char **why)
{
    const char *p = (const char *)raw, *f[4];
    size_t fl[4], nf = 0, start = 0, got;
    struct pst_buf scratch;
    int ok;

    memset(k, 0, sizeof(*k));
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == ',') {
            if (nf == 4) {
                *why = "{SCRAM-SHA-x}: more than 4 comma-separated fields";
                return PST_ESYNTAX;
            }
            f[nf] = p + start;
            fl[nf++] = i - start;
            start = i + 1;
        }
    }
    if (nf != 4) {
        *why = "{SCRAM-SHA-x}: want iterations,salt,StoredKey,ServerKey";
        return PST_ESYNTAX;
    }
    if (!cred_uint(f[0], fl[0], PST_CRED_SCRAM_MIN_ITER,
                   PST_CRED_SCRAM_MAX_ITER, &k->iterations)) {
        *why = "{SCRAM-SHA-x}: iteration count not a number from 4096 to "
               "10000000";
        return PST_ESYNTAX;
    }
    pst_buf_init(&scratch, PST_SCRAM_MAX_SALT, 1);
    k->key_len = pst__scram_key_len(h);
    if (!cred_b64_field(f[1], fl[1], k->salt, 1, PST_SCRAM_MAX_SALT,
                        &k->salt_len, &scratch)) {
        *why = "{SCRAM-SHA-x}: salt is not 1 to 64 bytes of base64";
        ok = 0;
    } else {
        ok = cred_b64_field(f[2], fl[2], k->stored_key, k->key_len,
                            k->key_len, &got, &scratch) &&
             cred_b64_field(f[3], fl[3], k->server_key, k->key_len,
                            k->key_len, &got, &scratch);
        if (!ok)
            *why = "{SCRAM-SHA-x}: StoredKey or ServerKey is not base64 of "
                   "the hash's size";
    }
    pst_buf_clear(&scratch);
    if (!ok) {
        OPENSSL_cleanse(k, sizeof(*k));
        return PST_ESYNTAX;
    }
    return 0;
}

/* SCRAM keys are kept packed, a user's record being mostly them: iteration
 * count (4 bytes, host order), salt length, key length, then salt,
 * StoredKey, ServerKey.  Returns the bytes written. */
static size_t
cred_scram_pack(const struct pst_scram_keys *k, uint8_t *p)
{
    uint32_t iter = k->iterations;

    memcpy(p, &iter, 4);
    p[4] = (uint8_t)k->salt_len;
    p[5] = (uint8_t)k->key_len;
    p += CRED_SCRAM_HDR;
    memcpy(p, k->salt, k->salt_len);
    memcpy(p + k->salt_len, k->stored_key, k->key_len);
    memcpy(p + k->salt_len + k->key_len, k->server_key, k->key_len);
    return CRED_SCRAM_HDR + k->salt_len + 2 * k->key_len;
}

/* Check and store one decoded value at c's data area offset *off. */
static int
cred_store(struct pst_cred *c, const struct cred_token *t,
           const struct pst_buf *raw, size_t *off, const char **why)
{
    struct cred_verifier *v = &c->v[c->n];
    uint8_t *data = cred_data(c);
    const uint8_t *r = raw->data != NULL ? raw->data : (const uint8_t *)"";
    struct pst_scram_keys k;
    int rc;

    v->scheme = t->info->scheme;
    v->hash = t->info->hash;
    switch (t->info->scheme) {
    case PST_SCHEME_PLAIN:
        break;
    case PST_SCHEME_CRAM_MD5:
        if (raw->len != PST__CRAM_MD5_CTX_LEN) {
            *why = "{CRAM-MD5}: the value is not 32 bytes (64 hex digits)";
            return PST_ESYNTAX;
        }
        break;
    case PST_SCHEME_DIGEST_MD5:
        if (raw->len != PST__MD5_LEN) {
            *why = "{DIGEST-MD5}: the value is not 16 bytes (32 hex digits)";
            return PST_ESYNTAX;
        }
        break;
    case PST_SCHEME_SCRAM_SHA1:
    case PST_SCHEME_SCRAM_SHA256:
        if ((rc = cred_scram_parse(r, raw->len, t->info->hash, &k, why)) < 0)
            return rc;
        v->off = *off;
        v->len = cred_scram_pack(&k, data + *off);
        *off += v->len;
        OPENSSL_cleanse(&k, sizeof(k));
        c->n++;
        return 0;
    case PST_SCHEME_CRYPT:
        if ((rc = pst__crypt_check((const char *)r, raw->len, why)) < 0)
            return rc;
        break;
    }
    v->off = *off;
    v->len = raw->len;
    if (raw->len > 0)
        memcpy(data + *off, r, raw->len);
    data[*off + raw->len] = '\0';
    *off += raw->len + 1;
    c->n++;
    return 0;
}

/* Where the verifier starting at i ends: the next " {", or len. */
static size_t
cred_next_split(const char *text, size_t len, size_t i)
{
    while (i < len) {
        const char *sp = memchr(text + i, ' ', len - i);

        if (sp == NULL)
            return len;
        i = (size_t)(sp - text);
        if (i + 1 < len && text[i + 1] == '{')
            return i;
        i++;
    }
    return len;
}

int
pst_cred_parse_reason(const char *text, size_t len, struct pst_cred **out,
                      const char **reason)
{
    struct cred_token tok[PST_CRED_MAX_VERIFIERS];
    size_t ntok = 0, i = 0, room = 0, off = 0, hdr;
    const char *why = NULL;
    struct pst_cred *c;
    struct pst_buf raw;
    int rc;

    *out = NULL;
    if (reason != NULL)
        *reason = NULL;
    if (len == 0) {
        why = "no verifier";
        rc = PST_ESYNTAX;
        goto fail;
    }
    /* Pass 1: split, name each scheme, size the data.  A verifier ends at
     * a space followed by '{': Dovecot's files hold {PLAIN} passwords
     * with spaces, and no other scheme's value has one. */
    while (i <= len) {
        size_t end = cred_next_split(text, len, i);

        if (ntok == PST_CRED_MAX_VERIFIERS) {
            why = "more than 8 verifiers";
            rc = PST_ESYNTAX;
            goto fail;
        }
        if ((rc = cred_token_parse(text + i, end - i, &tok[ntok], &why)) < 0)
            goto fail;
        room += cred_token_room(&tok[ntok++]);
        i = end + 1;
    }
    hdr = sizeof(*c) + ntok * sizeof(c->v[0]);
    c = calloc(1, hdr + room);
    if (c == NULL)
        return PST_ENOMEM;
    c->size = hdr + room;
    c->cap = ntok;
    /* Pass 2: decode and check each value into the data area. */
    pst_buf_init(&raw, len, 1);
    for (i = 0; i < ntok; i++) {
        pst_buf_reset(&raw);
        rc = cred_token_decode(&tok[i], &raw, &why);
        if (rc == 0)
            rc = cred_store(c, &tok[i], &raw, &off, &why);
        if (rc < 0)
            break;
    }
    pst_buf_clear(&raw);
    if (rc < 0) {
        OPENSSL_clear_free(c, c->size);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (reason != NULL)
        *reason = why;
    return rc;
}

int
pst_cred_parse(const char *text, size_t len, struct pst_cred **out)
{
    return pst_cred_parse_reason(text, len, out, NULL);
}

void
pst_cred_free(struct pst_cred *c)
{
    if (c == NULL)
        return;
    OPENSSL_clear_free(c, c->size);
}

static const struct cred_verifier *
cred_find(const struct pst_cred *c, enum pst_cred_scheme s)
{
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].scheme == s)
            return &c->v[i];
    return NULL;
}

int
pst_cred_has(const struct pst_cred *c, enum pst_cred_scheme s)
{
    return cred_find(c, s) != NULL;
}

static const uint8_t *
cred_raw(const struct pst_cred *c, const struct cred_verifier *v)
{
    return cred_data(c) + v->off;
}

static void
cred_scram_keys(const struct pst_cred *c, const struct cred_verifier *v,
                struct pst_scram_keys *k)
{
    const uint8_t *p = cred_raw(c, v);
    uint32_t iter;

    memset(k, 0, sizeof(*k));
    memcpy(&iter, p, 4);
    k->iterations = iter;
    k->salt_len = p[4];
    k->key_len = p[5];
    p += CRED_SCRAM_HDR;
    memcpy(k->salt, p, k->salt_len);
    memcpy(k->stored_key, p + k->salt_len, k->key_len);
    memcpy(k->server_key, p + k->salt_len + k->key_len, k->key_len);
}

/*
 * pw[0..len) in ISO 8859-1 into out (len bytes of room) if it is UTF-8
 * whose every character fits (U+0000..U+00FF) and some is not ASCII.
 * Returns: the converted length, or 0 (nothing to convert, or it does not
 * fit).
 */
static size_t
cred_latin1(const uint8_t *pw, size_t len, uint8_t *out)
{
    size_t o = 0;
    int wide = 0;

    if (!pst__utf8_valid(pw, len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (pw[i] < 0x80) {
            out[o++] = pw[i];
        } else if ((pw[i] == 0xc2 || pw[i] == 0xc3) && i + 1 < len) {
            out[o++] = (uint8_t)(((pw[i] & 0x03) << 6) | (pw[i + 1] & 0x3f));
            i++;
            wide = 1;
        } else {
            return 0;
        }
    }
    return wide ? o : 0;
}

int
pst__digest_md5_ha1(const char *user, const char *realm, const uint8_t *pw,
                    size_t len, int latin1, uint8_t ha1[PST__MD5_LEN])
{
    size_t ulen = strlen(user), plen = len;
    const uint8_t *p = pw;
    uint8_t *conv = NULL;
    EVP_MD_CTX *ctx;
    int ok;

    if (realm == NULL) {
        /* Dovecot digest_md5_generate(): "user@realm", split at the last
         * '@' so that "user@domain@realm" keeps user@domain; no '@' means
         * an empty realm. */
        const char *at = strrchr(user, '@');

        if (at != NULL) {
            ulen = (size_t)(at - user);
            realm = at + 1;
        } else {
            realm = "";
        }
    }
    if (latin1 && len > 0) {
        /* RFC 2831 §2.1.2.1: "If charset=UTF-8 is present, and all the
         * characters of either username-value or passwd are in the ISO
         * 8859-1 character set, then it must be converted to ISO 8859-1
         * before being hashed" -- for the password, as GNU SASL and our
         * client read it (lib/sasl/digest_md5.c). */
        conv = malloc(len);
        if (conv == NULL)
            return PST_ENOMEM;
        if ((plen = cred_latin1(pw, len, conv)) > 0)
            p = conv;
        else
            plen = len;
    }
    ctx = EVP_MD_CTX_new();
    ok = ctx != NULL;
    /* RFC 2831 §2.1.2.1: H({ username-value, ":", realm-value, ":",
     * passwd }). */
    ok = ok && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, user, ulen) == 1 &&
         EVP_DigestUpdate(ctx, ":", 1) == 1 &&
         EVP_DigestUpdate(ctx, realm, strlen(realm)) == 1 &&
         EVP_DigestUpdate(ctx, ":", 1) == 1 &&
         EVP_DigestUpdate(ctx, p, plen) == 1 &&
         EVP_DigestFinal_ex(ctx, ha1, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    if (conv != NULL)
        OPENSSL_clear_free(conv, len);
    return ok ? 0 : PST_ENOMEM;
}

/* Room for SASLprep's output: NFKC can expand a character many times over
 * (U+FDFA, 3 bytes, becomes 33). */
size_t
pst__cred_prep_room(size_t len)
{
    return len <= ((size_t)1 << 20) ? len * 12 + 16 : len;
}

/* Compare pw with a cleartext verifier in constant time (digest both, so
 * that unequal lengths take the same path). */
static int
cred_verify_plain(const uint8_t *stored, size_t stored_len,
                  const uint8_t *pw, size_t len)
{
    uint8_t a[32], b[32];
    int eq;

    if (EVP_Digest(pw, len, a, NULL, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(stored, stored_len, b, NULL, EVP_sha256(), NULL) != 1)
        return PST_ENOMEM;
    eq = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return eq ? 0 : PST_EAUTH;
}

/* Derive StoredKey from p[0..n) and compare it with k's. */
static int
cred_scram_check(const struct pst_scram_keys *k, enum pst_scram_hash h,
                 const uint8_t *p, size_t n)
{
    uint8_t sk[PST_SCRAM_MAX_KEY];
    int rc = pst__scram_derive(h, p, n, k->salt, k->salt_len, k->iterations,
                               NULL, NULL, sk, NULL);

    if (rc == 0)
        rc = CRYPTO_memcmp(sk, k->stored_key, k->key_len) == 0 ? 0
                                                                : PST_EAUTH;
    else if (rc == PST_EINVAL)
        rc = PST_EAUTH;
    OPENSSL_cleanse(sk, sizeof(sk));
    return rc;
}

/*
 * SCRAM verifier: derive StoredKey from pw with the stored salt and
 * iteration count and compare it (RFC 5802 §3).  The password is
 * SASLprep'd first (RFC 5802 §2.2, "Normalize"), as a SCRAM client sends
 * it; when that changes it or SASLprep refuses it, the password as it is
 * is tried too: Dovecot does not normalize, so that is what `doveadm pw`
 * stored for it.
 */
static int
cred_verify_scram(const struct pst_scram_keys *k, enum pst_scram_hash h,
                  const uint8_t *pw, size_t len)
{
    struct pst_buf prepped;
    int rc, same = 0;

    pst_buf_init(&prepped, pst__cred_prep_room(len), 1);
    rc = pst__saslprep(pw, len, 1, &prepped);
    if (rc == 0) {
        same = prepped.len == len &&
               (len == 0 || CRYPTO_memcmp(prepped.data, pw, len) == 0);
        rc = cred_scram_check(k, h, prepped.data, prepped.len);
    } else if (rc == PST_EPREP || rc == PST_ELIMIT) {
        rc = PST_EAUTH;
    }
    pst_buf_clear(&prepped);
    if (rc == PST_EAUTH && !same)
        rc = cred_scram_check(k, h, pw, len);
    return rc;
}

static int
cred_verify_one(const struct pst_cred *c, const struct cred_verifier *v,
                const char *user, const uint8_t *pw, size_t len)
{
    const uint8_t *raw = cred_raw(c, v);
    uint8_t buf[PST__CRAM_MD5_CTX_LEN];
    struct pst_scram_keys k;
    int rc;

    switch (v->scheme) {
    case PST_SCHEME_PLAIN:
        return cred_verify_plain(raw, v->len, pw, len);
    case PST_SCHEME_CRAM_MD5:
        /* Derive the stored context from pw (Dovecot's generic verify:
         * generate, then compare). */
        if ((rc = pst__cram_md5_context(pw, len, buf)) == 0)
            rc = CRYPTO_memcmp(buf, raw, sizeof(buf)) == 0 ? 0 : PST_EAUTH;
        OPENSSL_cleanse(buf, sizeof(buf));
        return rc;
    case PST_SCHEME_DIGEST_MD5:
        if (user == NULL)
            return PST_EAUTH;
        /* Made the RFC 2831 way (password in ISO 8859-1 when it fits, as
         * pst_cred_make() does), or over UTF-8 as Dovecot makes it. */
        for (int latin1 = 1; latin1 >= 0; latin1--) {
            if ((rc = pst__digest_md5_ha1(user, NULL, pw, len, latin1,
                                          buf)) == 0)
                rc = CRYPTO_memcmp(buf, raw, PST__MD5_LEN) == 0 ? 0
                                                                : PST_EAUTH;
            if (rc != PST_EAUTH)
                break;
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        return rc;
    case PST_SCHEME_SCRAM_SHA1:
    case PST_SCHEME_SCRAM_SHA256:
        cred_scram_keys(c, v, &k);
        rc = cred_verify_scram(&k, v->hash, pw, len);
        OPENSSL_cleanse(&k, sizeof(k));
        return rc;
    case PST_SCHEME_CRYPT:
        return pst__crypt_verify((const char *)raw, v->len, pw, len);
    }
    return PST_EAUTH;
}

int
pst_cred_verify(const struct pst_cred *c, const char *user, const uint8_t *pw,
                size_t len)
{
    if (c == NULL) {
        /* DESIGN.md "Secrets": an unknown user costs what the default
         * verifier ({SCRAM-SHA-256}, 4096 iterations) would, then fails
         * like a wrong password. */
        static const uint8_t salt[PST_CRED_SCRAM_SALT_LEN];
        uint8_t sk[PST_SCRAM_MAX_KEY];

        (void)pst__scram_derive(PST_SCRAM_SHA256, pw, len, salt,
                                sizeof(salt), PST_CRED_SCRAM_DEFAULT_ITER,
                                NULL, NULL, sk, NULL);
        OPENSSL_cleanse(sk, sizeof(sk));
        return PST_EAUTH;
    }
    for (size_t i = 0; i < c->n; i++) {
        int rc = cred_verify_one(c, &c->v[i], user, pw, len);

        if (rc != PST_EAUTH)
            return rc;
    }
    return PST_EAUTH;
}

int
pst_cred_cram_md5(const struct pst_cred *c, const uint8_t *challenge,
                  size_t len, uint8_t digest[16])
{
    const struct cred_verifier *v = cred_find(c, PST_SCHEME_CRAM_MD5);
    unsigned int n = 0;

    if (v != NULL)
        return pst__cram_md5_resume(cred_raw(c, v), challenge, len, digest);
    v = cred_find(c, PST_SCHEME_PLAIN);
    if (v == NULL)
        return PST_EAUTH;
    if (v->len > INT_MAX)
        return PST_EAUTH;
    /* RFC 2195 §2: digest = HMAC-MD5(password, challenge). */
    if (HMAC(EVP_md5(), cred_raw(c, v), (int)v->len, challenge, len, digest,
             &n) == NULL)
        return PST_ENOMEM;
    return 0;
}

int
pst_cred_digest_md5(const struct pst_cred *c, const char *user,
                    const char *realm, uint8_t ha1[16])
{
    const struct cred_verifier *v = cred_find(c, PST_SCHEME_PLAIN);

    /* {PLAIN} first: it serves any realm, while a {DIGEST-MD5} value made
     * for another realm would only fail the exchange. */
    if (v != NULL)
        return user == NULL
                   ? PST_EAUTH
                   : pst__digest_md5_ha1(user, realm != NULL ? realm : "",
                                         cred_raw(c, v), v->len, 1, ha1);
    v = cred_find(c, PST_SCHEME_DIGEST_MD5);
    if (v == NULL)
        return PST_EAUTH;
    memcpy(ha1, cred_raw(c, v), PST__MD5_LEN);
    return 0;
}

static enum pst_cred_scheme
cred_scram_scheme(enum pst_scram_hash h)
{
    return h == PST_SCRAM_SHA1 ? PST_SCHEME_SCRAM_SHA1
                               : PST_SCHEME_SCRAM_SHA256;
}

int
pst__cred_scram_stored(const struct pst_cred *c, enum pst_scram_hash h)
{
    return cred_find(c, cred_scram_scheme(h)) != NULL;
}

int
pst__cred_scram_salted(const struct pst_cred *c, enum pst_scram_hash h,
                       const uint8_t *salt, size_t salt_len,
                       unsigned iterations, struct pst_scram_keys *out)
{
    const struct cred_verifier *v = cred_find(c, cred_scram_scheme(h));
    struct pst_buf prepped;
    int rc;

    memset(out, 0, sizeof(*out));
    if (v != NULL) {
        cred_scram_keys(c, v, out);
        return 0;
    }
    v = cred_find(c, PST_SCHEME_PLAIN);
    if (v == NULL)
        return PST_EAUTH;
    if (salt_len == 0 || salt_len > PST_SCRAM_MAX_SALT)
        return PST_EINVAL;
    pst_buf_init(&prepped, pst__cred_prep_room(v->len), 1);
    /* RFC 5802 §2.2: Normalize(password) is SASLprep as a stored string. */
    rc = pst__saslprep(cred_raw(c, v), v->len, 1, &prepped);
    if (rc < 0)
        goto out;
    out->iterations = iterations != 0 ? iterations
                                      : PST_CRED_SCRAM_DEFAULT_ITER;
    out->salt_len = salt_len;
    out->key_len = pst__scram_key_len(h);
    memcpy(out->salt, salt, salt_len);
    rc = pst__scram_derive(h, prepped.data, prepped.len, out->salt,
                           out->salt_len, out->iterations, NULL, NULL,
                           out->stored_key, out->server_key);
out:
    pst_buf_clear(&prepped);
    if (rc < 0)
        OPENSSL_cleanse(out, sizeof(*out));
    return rc;
}

int
pst_cred_scram(const struct pst_cred *c, enum pst_scram_hash h,
               pst_random_fn rnd, void *rnd_ctx, unsigned iterations,
               struct pst_scram_keys *out)
{
    uint8_t salt[PST_CRED_SCRAM_SALT_LEN];
    int rc;

    /* A fresh salt only when it will be used. */
    if (!pst__cred_scram_stored(c, h) && cred_find(c, PST_SCHEME_PLAIN) &&
        (rc = pst__random(rnd, rnd_ctx, salt, sizeof(salt))) < 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    rc = pst__cred_scram_salted(c, h, salt, sizeof(salt), iterations, out);
    OPENSSL_cleanse(salt, sizeof(salt));
    return rc;
}

int
pst__cred_with_scram(const struct pst_cred *c, enum pst_scram_hash h,
                     const struct pst_scram_keys *k, struct pst_cred **out)
{
    size_t old_hdr, data_len, hdr, rec = CRED_SCRAM_HDR + k->salt_len +
                                         2 * k->key_len;
    struct pst_cred *n;
    struct cred_verifier *v;

    *out = NULL;
    if (c == NULL || k->salt_len == 0 || k->salt_len > PST_SCRAM_MAX_SALT ||
        k->key_len != pst__scram_key_len(h) || k->iterations == 0)
        return PST_EINVAL;
    old_hdr = sizeof(*c) + c->cap * sizeof(c->v[0]);
    data_len = c->size - old_hdr;
    hdr = sizeof(*n) + (c->n + 1) * sizeof(n->v[0]);
    n = calloc(1, hdr + data_len + rec);
    if (n == NULL)
        return PST_ENOMEM;
    n->size = hdr + data_len + rec;
    n->cap = c->n + 1;
    n->n = c->n;
    /* Offsets are into the data area: they stay valid. */
    memcpy(n->v, c->v, c->n * sizeof(c->v[0]));
    memcpy(cred_data(n), cred_data(c), data_len);
    v = &n->v[n->n++];
    v->scheme = cred_scram_scheme(h);
    v->hash = h;
    v->off = data_len;
    v->len = cred_scram_pack(k, cred_data(n) + data_len);
    *out = n;
    return 0;
}
