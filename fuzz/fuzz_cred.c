/*
 * Fuzz target: stored credentials (include/postern/cred.h): parsing every
 * scheme and encoding, verifying a password, and the secrets each
 * challenge mechanism derives.
 *
 * The whole input is one password field ("{SCHEME}value ...").
 *
 * Cost: the cost of a stored verifier comes from the input (SCRAM
 * iterations up to 10^7, SHA-crypt rounds up to 10^9, bcrypt cost up to
 * 31, yescrypt parameters), and verifying such a value takes minutes by
 * design, which libFuzzer would report as a timeout.  So each verifier is
 * also parsed alone and pst_cred_verify() runs only when every one is
 * cheap: {PLAIN}, {CRAM-MD5}, {DIGEST-MD5}; SCRAM with at most
 * FUZZ_SCRAM_MAX_ITER iterations (read back with pst_cred_scram());
 * crypt values written without an encoding suffix as MD5-crypt, DES,
 * SHA-crypt without "rounds=", or bcrypt of cost 04 or 05.  Everything
 * else is parsed and derived from, but not verified.  pst_cred_scram()
 * derives from {PLAIN} with 16 iterations and a fixed random source.
 *
 * Invariants (abort() on a violation): a failed parse gives no
 * credentials and a reason; SCRAM keys have the hash's size, a salt and
 * iterations.
 */
#include <stdlib.h>
#include <string.h>

#include <postern/cred.h>

#include "fuzz.h"

#define FUZZ_SCRAM_MAX_ITER 8192

static int
starts(const uint8_t *p, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    return len >= n && memcmp(p, prefix, n) == 0;
}

static int
contains(const uint8_t *p, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(p + i, needle, n) == 0)
            return 1;
    return 0;
}

/* A crypt(3) value that takes a moment to check. */
static int
crypt_cheap(const uint8_t *v, size_t len)
{
    if (len == 0)
        return 0;
    if (v[0] != '$' && v[0] != '_')
        return 1; /* traditional DES */
    if (starts(v, len, "$1$"))
        return 1;
    if (starts(v, len, "$5$") || starts(v, len, "$6$"))
        return !contains(v, len, "rounds=");
    if (len >= 7 && v[0] == '$' && v[1] == '2' && v[3] == '$')
        return v[4] == '0' && (v[5] == '4' || v[5] == '5');
    return 0;
}

/* Whether one verifier (tok[0..len)) is cheap to verify. */
static int
token_cheap(const uint8_t *tok, size_t len)
{
    struct pst_cred *c = NULL;
    struct fuzz_rand rnd;
    struct pst_scram_keys k;
    const uint8_t *value = tok;
    size_t vlen = len;
    int cheap = 1;

    if (pst_cred_parse((const char *)tok, len, &c) != 0)
        return 0;
    if (len > 0 && tok[0] == '{') {
        const uint8_t *close = memchr(tok, '}', len);

        if (close == NULL) {
            pst_cred_free(c);
            return 0;
        }
        if (memchr(tok, '.', (size_t)(close - tok)) != NULL)
            cheap = 0; /* encoded: the text is not the value */
        value = close + 1;
        vlen = len - (size_t)(value - tok);
    }
    if (pst_cred_has(c, PST_SCHEME_CRYPT) && !crypt_cheap(value, vlen))
        cheap = 0;
    fuzz_rand_init(&rnd, NULL, 0);
    if (pst_cred_has(c, PST_SCHEME_SCRAM_SHA1) &&
        (pst_cred_scram(c, PST_SCRAM_SHA1, fuzz_random, &rnd, 16, &k) != 0 ||
         k.iterations > FUZZ_SCRAM_MAX_ITER))
        cheap = 0;
    if (pst_cred_has(c, PST_SCHEME_SCRAM_SHA256) &&
        (pst_cred_scram(c, PST_SCRAM_SHA256, fuzz_random, &rnd, 16,
                        &k) != 0 ||
         k.iterations > FUZZ_SCRAM_MAX_ITER))
        cheap = 0;
    pst_cred_free(c);
    return cheap;
}

static int
all_cheap(const uint8_t *data, size_t size)
{
    size_t start = 0;

    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == ' ') {
            uint8_t *tok = fuzz_dup(data + start, i - start, 0);
            int ok = tok != NULL && token_cheap(tok, i - start);

            free(tok);
            if (!ok)
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

static void
check_scram(const struct pst_cred *c, enum pst_scram_hash h)
{
    struct fuzz_rand rnd;
    struct pst_scram_keys k;

    fuzz_rand_init(&rnd, NULL, 0);
    if (pst_cred_scram(c, h, fuzz_random, &rnd, 16, &k) != 0)
        return;
    if (k.key_len != (h == PST_SCRAM_SHA1 ? 20u : 32u) || k.salt_len == 0 ||
        k.salt_len > PST_SCRAM_MAX_SALT || k.iterations == 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t chal[] =
        "<1896.697170952@postoffice.reston.mci.net>";
    struct pst_cred *c = (struct pst_cred *)1;
    const char *reason = NULL;
    uint8_t digest[16], ha1[16];
    int rc;

    rc = pst_cred_parse_reason((const char *)data, size, &c, &reason);
    if (rc != 0) {
        if (c != NULL || (rc == PST_ESYNTAX && reason == NULL))
            abort();
        return 0;
    }
    if (all_cheap(data, size)) {
        (void)pst_cred_verify(c, "chris@elwood.innosoft.com",
                              (const uint8_t *)"secret", 6);
        (void)pst_cred_verify(c, "user", (const uint8_t *)"pencil", 6);
    }
    (void)pst_cred_cram_md5(c, chal, sizeof(chal) - 1, digest);
    (void)pst_cred_digest_md5(c, "chris", "elwood.innosoft.com", ha1);
    (void)pst_cred_digest_md5(c, "chris@elwood.innosoft.com", NULL, ha1);
    check_scram(c, PST_SCRAM_SHA1);
    check_scram(c, PST_SCRAM_SHA256);
    pst_cred_free(c);
    return 0;
}
