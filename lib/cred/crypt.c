/*
 * crypt(3) hashes through libxcrypt: {CRYPT}, {SHA512-CRYPT},
 * {SHA256-CRYPT}, {BLF-CRYPT}, {MD5-CRYPT}, {DES-CRYPT} and whatever else
 * crypt_rn() here verifies (yescrypt, scrypt, ...).  No hash code of our
 * own: we only check that a stored value is complete, call crypt_rn() and
 * compare its output in constant time.
 */
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../internal.h"
#include "cred_int.h"

#define CRYPT_SALT_RBYTES 16 /* random bytes for crypt_gensalt_rn() */

/* crypt(3)'s base-64 alphabet ("./0-9A-Za-z"). */
static int
crypt_alpha(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];

        if (!(c == '.' || c == '/' || (c >= '0' && c <= '9') ||
              (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return 0;
    }
    return 1;
}

static int
crypt_digits(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

static int
crypt_has_prefix(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);

    return n >= k && memcmp(p, prefix, k) == 0; /* not secret */
}

/* Position of the last '$' in p[0..n), or n if none. */
static size_t
crypt_last_dollar(const char *p, size_t n)
{
    for (size_t i = n; i > 0; i--)
        if (p[i - 1] == '$')
            return i - 1;
    return n;
}

/*
 * "$1$salt$hash" (MD5-crypt) and "$5$"/"$6$" (SHA-crypt, optionally with
 * "rounds=N$"): salt of at most salt_max characters of the alphabet, then
 * '$' and exactly hash_len characters of the alphabet.
 */
static int
crypt_check_md5_sha(const char *p, size_t n, size_t salt_max,
                    size_t hash_len, int rounds_ok)
{
    size_t i = 3, s;

    if (rounds_ok && crypt_has_prefix(p + i, n - i, "rounds=")) {
        i += 7;
        s = i;
        while (i < n && p[i] != '$')
            i++;
        if (i == n || !crypt_digits(p + s, i - s))
            return 0;
        i++;
    }
    s = i;
    while (i < n && p[i] != '$')
        i++;
    /* libxcrypt refuses salt characters outside the alphabet ("*0"). */
    if (i == n || i - s > salt_max || !crypt_alpha(p + s, i - s))
        return 0;
    i++;
    return n - i == hash_len && crypt_alpha(p + i, hash_len);
}

/* "$2y$NN$" then 22 characters of salt and 31 of hash (bcrypt). */
static int
crypt_check_bcrypt(const char *p, size_t n)
{
    int cost;

    if (n != 60 || p[0] != '$' || p[1] != '2' || p[3] != '$' || p[6] != '$')
        return 0;
    if (p[2] != 'a' && p[2] != 'b' && p[2] != 'x' && p[2] != 'y')
        return 0;
    if (!crypt_digits(p + 4, 2))
        return 0;
    cost = (p[4] - '0') * 10 + (p[5] - '0');
    return cost >= 4 && cost <= 31 && crypt_alpha(p + 7, 53);
}

/* "$y$params$salt$hash", "$gy$..." and "$7$...$hash": 43-character hash. */
static int
crypt_check_yescrypt(const char *p, size_t n)
{
    size_t d = crypt_last_dollar(p, n);

    return d < n && n - d - 1 == 43 && crypt_alpha(p + d + 1, 43) &&
           d > 0 && p[d - 1] != '$';
}

int
pst__crypt_check(const char *p, size_t n, const char **why)
{
    int ok, cs;

    *why = "{CRYPT}: not a complete crypt(3) hash";
    if (n == 0 || memchr(p, '\0', n) != NULL)
        return PST_ESYNTAX;
    if (p[0] != '$' && p[0] != '_') {
        /* Traditional DES: 2 characters of salt, 11 of hash. */
        ok = n == 13 && crypt_alpha(p, 13);
    } else if (p[0] == '_') {
        /* BSDi extended DES: '_', 4 of count, 4 of salt, 11 of hash. */
        ok = n == 20 && crypt_alpha(p + 1, 19);
    } else if (crypt_has_prefix(p, n, "$1$")) {
        ok = crypt_check_md5_sha(p, n, 8, 22, 0);
    } else if (crypt_has_prefix(p, n, "$5$")) {
        ok = crypt_check_md5_sha(p, n, 16, 43, 1);
    } else if (crypt_has_prefix(p, n, "$6$")) {
        ok = crypt_check_md5_sha(p, n, 16, 86, 1);
    } else if (crypt_has_prefix(p, n, "$2")) {
        ok = crypt_check_bcrypt(p, n);
    } else if (crypt_has_prefix(p, n, "$y$") ||
               crypt_has_prefix(p, n, "$gy$") ||
               crypt_has_prefix(p, n, "$7$")) {
        ok = crypt_check_yescrypt(p, n);
    } else {
        /* Another method: at least a non-empty hash after the last '$'. */
        size_t d = crypt_last_dollar(p, n);

        ok = d < n && d > 0 && crypt_alpha(p + d + 1, n - d - 1) &&
             n - d - 1 > 0;
    }
    if (!ok)
        return PST_ESYNTAX;
    /* The setting part must name a method this libcrypt can compute. */
    {
        char *tmp = malloc(n + 1);

        if (tmp == NULL)
            return PST_ENOMEM;
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        cs = crypt_checksalt(tmp);
        free(tmp);
    }
    if (cs != CRYPT_SALT_OK && cs != CRYPT_SALT_METHOD_LEGACY &&
        cs != CRYPT_SALT_TOO_CHEAP) {
        *why = "{CRYPT}: a hash method crypt(3) here does not support";
        return PST_ESYNTAX;
    }
    *why = NULL;
    return 0;
}

/* A NUL-terminated secret copy of pw, or NULL (no memory, or a NUL in pw,
 * which crypt(3) could not see past). */
static char *
crypt_pw_copy(const uint8_t *pw, size_t len, int *rc)
{
    char *s;

    *rc = PST_EAUTH;
    if (len > 0 && memchr(pw, '\0', len) != NULL)
        return NULL;
    *rc = PST_ENOMEM;
    s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    if (len > 0)
        memcpy(s, pw, len);
    s[len] = '\0';
    *rc = 0;
    return s;
}

int
pst__crypt_verify(const char *hash, size_t hash_len, const uint8_t *pw,
                  size_t len)
{
    struct crypt_data *cd;
    const char *res;
    char *p;
    int rc;

    p = crypt_pw_copy(pw, len, &rc);
    if (p == NULL)
        return rc;
    cd = calloc(1, sizeof(*cd));
    if (cd == NULL) {
        OPENSSL_clear_free(p, len + 1);
        return PST_ENOMEM;
    }
    /* crypt_rn() returns NULL on failure, never a "*0" token. */
    res = crypt_rn(p, hash, cd, (int)sizeof(*cd));
    rc = PST_EAUTH;
    if (res != NULL && strlen(res) == hash_len &&
        CRYPTO_memcmp(res, hash, hash_len) == 0)
        rc = 0;
    OPENSSL_clear_free(cd, sizeof(*cd));
    OPENSSL_clear_free(p, len + 1);
    return rc;
}

int
pst__crypt_make(const char *prefix, unsigned long count, const uint8_t *pw,
                size_t len, pst_random_fn rnd, void *rnd_ctx,
                struct pst_buf *out)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    uint8_t rbytes[CRYPT_SALT_RBYTES];
    struct crypt_data *cd;
    const char *res;
    char *p;
    int rc;

    p = crypt_pw_copy(pw, len, &rc);
    if (p == NULL)
        return rc == PST_EAUTH ? PST_EINVAL : rc;
    if ((rc = pst__random(rnd, rnd_ctx, rbytes, sizeof(rbytes))) < 0)
        goto out_pw;
    if (crypt_gensalt_rn(prefix[0] != '\0' ? prefix : NULL, count,
                         (const char *)rbytes, (int)sizeof(rbytes), setting,
                         (int)sizeof(setting)) == NULL) {
        rc = errno == ENOMEM ? PST_ENOMEM : PST_EINVAL;
        goto out_pw;
    }
    cd = calloc(1, sizeof(*cd));
    if (cd == NULL) {
        rc = PST_ENOMEM;
        goto out_pw;
    }
    res = crypt_rn(p, setting, cd, (int)sizeof(*cd));
    if (res == NULL || res[0] == '*')
        rc = errno == ENOMEM ? PST_ENOMEM : PST_EINVAL;
    else
        rc = pst_buf_append_str(out, res);
    OPENSSL_clear_free(cd, sizeof(*cd));
out_pw:
    OPENSSL_cleanse(rbytes, sizeof(rbytes));
    OPENSSL_clear_free(p, len + 1);
    return rc;
}
