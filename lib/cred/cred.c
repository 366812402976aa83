/*
 * Stored credentials: "{SCHEME}value" verifiers, Dovecot's format.
 * (Only {PLAIN} so far; the other schemes come with the credentials work.)
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "../internal.h"

#define CRED_MAX_VERIFIERS 8

struct cred_verifier {
    enum pst_cred_scheme scheme;
    char  *value;      /* NUL-terminated copy; secret */
    size_t value_len;
};

struct pst_cred {
    size_t n;
    struct cred_verifier v[CRED_MAX_VERIFIERS];
};

static const struct {
    const char *name;
    enum pst_cred_scheme scheme;
} cred_schemes[] = {
    {"PLAIN", PST_SCHEME_PLAIN},
    {"CLEAR", PST_SCHEME_PLAIN},
    {"CLEARTEXT", PST_SCHEME_PLAIN},
};

static int
cred_add(struct pst_cred *c, const char *p, size_t len)
{
    const char *close;
    size_t nlen, i;
    struct cred_verifier *v;

    if (c->n == CRED_MAX_VERIFIERS || len < 2 || p[0] != '{')
        return PST_ESYNTAX;
    close = memchr(p, '}', len);
    if (close == NULL)
        return PST_ESYNTAX;
    nlen = (size_t)(close - p - 1);
    for (i = 0; i < PST__ARRAY_LEN(cred_schemes); i++)
        if (strlen(cred_schemes[i].name) == nlen &&
            strncasecmp(cred_schemes[i].name, p + 1, /* not secret */
                        nlen) == 0)
            break;
    if (i == PST__ARRAY_LEN(cred_schemes))
        return PST_ESYNTAX;
    v = &c->v[c->n];
    v->scheme = cred_schemes[i].scheme;
    v->value_len = len - nlen - 2;
    v->value = malloc(v->value_len + 1);
    if (v->value == NULL)
        return PST_ENOMEM;
    memcpy(v->value, close + 1, v->value_len);
    v->value[v->value_len] = '\0';
    c->n++;
    return 0;
}

int
pst_cred_parse(const char *text, size_t len, struct pst_cred **out)
{
    struct pst_cred *c;
    size_t i = 0;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PST_ENOMEM;
    while (i < len) {
        const char *sp = memchr(text + i, ' ', len - i);
        size_t end = sp != NULL ? (size_t)(sp - text) : len;

        if ((rc = cred_add(c, text + i, end - i)) < 0) {
            pst_cred_free(c);
            return rc;
        }
        i = end + 1;
    }
    if (c->n == 0) {
        pst_cred_free(c);
        return PST_ESYNTAX;
    }
    *out = c;
    return 0;
}

void
pst_cred_free(struct pst_cred *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        OPENSSL_clear_free(c->v[i].value, c->v[i].value_len + 1);
    OPENSSL_clear_free(c, sizeof(*c));
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

/* Compare pw with a cleartext verifier in constant time (digest both). */
static int
cred_verify_plain(const struct cred_verifier *v, const uint8_t *pw, size_t len)
{
    uint8_t a[32], b[32];
    int eq;

    if (EVP_Digest(pw, len, a, NULL, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(v->value, v->value_len, b, NULL, EVP_sha256(), NULL) != 1)
        return PST_ENOMEM;
    eq = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return eq ? 0 : PST_EAUTH;
}

int
pst_cred_verify(const struct pst_cred *c, const char *user, const uint8_t *pw,
                size_t len)
{
    (void)user;
    if (c == NULL)
        return PST_EAUTH;
    for (size_t i = 0; i < c->n; i++) {
        int rc = PST_EAUTH;

        if (c->v[i].scheme == PST_SCHEME_PLAIN)
            rc = cred_verify_plain(&c->v[i], pw, len);
        if (rc != PST_EAUTH)
            return rc;
    }
    return PST_EAUTH;
}

int
pst_cred_cram_md5(const struct pst_cred *c, const uint8_t *challenge,
                  size_t len, uint8_t digest[16])
{
    const struct cred_verifier *v = cred_find(c, PST_SCHEME_PLAIN);
    unsigned int n = 0;

    if (v == NULL)
        return PST_EAUTH;
    if (HMAC(EVP_md5(), v->value, (int)v->value_len, challenge, len, digest,
             &n) == NULL)
        return PST_ENOMEM;
    return 0;
}

int
pst_cred_digest_md5(const struct pst_cred *c, const char *user,
                    const char *realm, uint8_t ha1[16])
{
    const struct cred_verifier *v = cred_find(c, PST_SCHEME_PLAIN);
    EVP_MD_CTX *ctx;
    int ok;

    if (v == NULL)
        return PST_EAUTH;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return PST_ENOMEM;
    ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, user, strlen(user)) == 1 &&
         EVP_DigestUpdate(ctx, ":", 1) == 1 &&
         EVP_DigestUpdate(ctx, realm, strlen(realm)) == 1 &&
         EVP_DigestUpdate(ctx, ":", 1) == 1 &&
         EVP_DigestUpdate(ctx, v->value, v->value_len) == 1 &&
         EVP_DigestFinal_ex(ctx, ha1, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : PST_ENOMEM;
}

int
pst_cred_scram(const struct pst_cred *c, enum pst_scram_hash h,
               pst_random_fn rnd, void *rnd_ctx, unsigned iterations,
               struct pst_scram_keys *out)
{
    const struct cred_verifier *v = cred_find(c, PST_SCHEME_PLAIN);
    struct pst_buf prepped;
    int rc;

    memset(out, 0, sizeof(*out));
    if (v == NULL)
        return PST_EAUTH;
    pst_buf_init(&prepped, 4096, 1);
    rc = pst__saslprep((const uint8_t *)v->value, v->value_len, 1, &prepped);
    if (rc < 0)
        goto out;
    out->iterations = iterations != 0 ? iterations : 4096;
    out->salt_len = 16;
    out->key_len = pst__scram_key_len(h);
    if ((rc = pst__random(rnd, rnd_ctx, out->salt, out->salt_len)) < 0)
        goto out;
    rc = pst__scram_derive(h, prepped.data, prepped.len, out->salt,
                           out->salt_len, out->iterations, NULL, NULL,
                           out->stored_key, out->server_key);
out:
    pst_buf_clear(&prepped);
    return rc;
}
