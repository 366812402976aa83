/*
 * The SCRAM client's cache of derived keys (RFC 5802 §5.1: "the client
 * can cache ClientKey/ServerKey (or SaltedPassword) for a given salt and
 * iteration count").  A load generator logging in thousands of times with
 * one password then runs PBKDF2 once per (hash, salt, iterations,
 * password) instead of once per login.
 *
 * An entry holds ClientKey and ServerKey (secrets) and, to recognise the
 * password without keeping it, SHA-256 of the SASLprep'd password, which
 * is compared in constant time.  The salt and the iteration count come
 * from the server in clear, so they are compared plainly.  Eviction is
 * least recently used.  No locking: lib/ has no threads (DESIGN.md), so
 * the caller serialises access (see sasl.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mech.h"

#define SCRAM_CACHE_DEFAULT 8    /* entries when the caller says 0 */
#define SCRAM_CACHE_MAX     4096 /* entries at most */
#define SCRAM_CACHE_SALT    128  /* salt bytes an entry holds; a longer
                                    salt is derived every time */

struct scram_cache_entry {
    uint64_t used;                      /* LRU stamp; 0: empty */
    enum pst_scram_hash hash;
    unsigned iterations;
    size_t salt_len;
    uint8_t salt[SCRAM_CACHE_SALT];
    uint8_t pw_digest[32];              /* SHA-256(password); secret */
    uint8_t client_key[PST_SCRAM_MAX_KEY]; /* secret */
    uint8_t server_key[PST_SCRAM_MAX_KEY]; /* secret */
};

struct pst_scram_cache {
    size_t cap;
    uint64_t clock;                     /* last LRU stamp given */
    uint64_t hits, misses;
    struct scram_cache_entry *e;        /* cap entries */
};

int
pst_sasl_scram_cache_new(size_t entries, struct pst_scram_cache **out)
{
    struct pst_scram_cache *c;

    *out = NULL;
    if (entries == 0)
        entries = SCRAM_CACHE_DEFAULT;
    if (entries > SCRAM_CACHE_MAX)
        return PST_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PST_ENOMEM;
    c->e = calloc(entries, sizeof(*c->e));
    if (c->e == NULL) {
        free(c);
        return PST_ENOMEM;
    }
    c->cap = entries;
    *out = c;
    return 0;
}

void
pst_sasl_scram_cache_free(struct pst_scram_cache *c)
{
    if (c == NULL)
        return;
    OPENSSL_clear_free(c->e, c->cap * sizeof(*c->e));
    OPENSSL_clear_free(c, sizeof(*c));
}

void
pst_sasl_scram_cache_stats(const struct pst_scram_cache *c, uint64_t *hits,
                           uint64_t *misses)
{
    if (hits != NULL)
        *hits = c != NULL ? c->hits : 0;
    if (misses != NULL)
        *misses = c != NULL ? c->misses : 0;
}

static int
scram_cache_pw_digest(const uint8_t *pw, size_t len, uint8_t digest[32])
{
    if (EVP_Digest(pw, len, digest, NULL, EVP_sha256(), NULL) != 1)
        return PST_ENOMEM;
    return 0;
}

/* The entry for these parameters, or NULL. */
static struct scram_cache_entry *
scram_cache_find(struct pst_scram_cache *c, enum pst_scram_hash h,
                 const uint8_t *salt, size_t salt_len, unsigned iter,
                 const uint8_t digest[32])
{
    struct scram_cache_entry *found = NULL;

    /* Every entry is looked at, so the time does not depend on where a
     * matching password sits. */
    for (size_t i = 0; i < c->cap; i++) {
        struct scram_cache_entry *e = &c->e[i];
        int same_pw = CRYPTO_memcmp(e->pw_digest, digest, 32) == 0;

        if (e->used != 0 && e->hash == h && e->iterations == iter &&
            e->salt_len == salt_len &&
            memcmp(e->salt, salt, salt_len) == 0 && /* not secret */
            same_pw && found == NULL)
            found = e;
    }
    return found;
}

/* The least recently used (or an empty) entry. */
static struct scram_cache_entry *
scram_cache_victim(struct pst_scram_cache *c)
{
    struct scram_cache_entry *v = &c->e[0];

    for (size_t i = 1; i < c->cap; i++)
        if (c->e[i].used < v->used)
            v = &c->e[i];
    return v;
}

int
pst__scram_cache_put(struct pst_scram_cache *c, enum pst_scram_hash h,
                     const uint8_t *pw, size_t pw_len, const uint8_t *salt,
                     size_t salt_len, unsigned iter,
                     const uint8_t *client_key, const uint8_t *server_key)
{
    struct scram_cache_entry *e;
    uint8_t digest[32];
    size_t klen = pst__scram_key_len(h);
    int rc;

    if (salt_len > SCRAM_CACHE_SALT)
        return PST_ELIMIT;
    if ((rc = scram_cache_pw_digest(pw, pw_len, digest)) < 0)
        return rc;
    e = scram_cache_find(c, h, salt, salt_len, iter, digest);
    if (e == NULL)
        e = scram_cache_victim(c);
    OPENSSL_cleanse(e, sizeof(*e));
    e->hash = h;
    e->iterations = iter;
    e->salt_len = salt_len;
    memcpy(e->salt, salt, salt_len);
    memcpy(e->pw_digest, digest, sizeof(digest));
    memcpy(e->client_key, client_key, klen);
    memcpy(e->server_key, server_key, klen);
    e->used = ++c->clock;
    OPENSSL_cleanse(digest, sizeof(digest));
    return 0;
}

int
pst__scram_cache_derive(struct pst_scram_cache *c, enum pst_scram_hash h,
                        const uint8_t *pw, size_t pw_len,
                        const uint8_t *salt, size_t salt_len, unsigned iter,
                        uint8_t *client_key, uint8_t *stored_key,
                        uint8_t *server_key)
{
    struct scram_cache_entry *e;
    uint8_t digest[32];
    size_t klen = pst__scram_key_len(h);
    int rc;

    if (c == NULL)
        return pst__scram_derive(h, pw, pw_len, salt, salt_len, iter, NULL,
                                 client_key, stored_key, server_key);
    if ((rc = scram_cache_pw_digest(pw, pw_len, digest)) < 0)
        return rc;
    e = salt_len <= SCRAM_CACHE_SALT
            ? scram_cache_find(c, h, salt, salt_len, iter, digest)
            : NULL;
    OPENSSL_cleanse(digest, sizeof(digest));
    if (e != NULL) {
        /* RFC 5802 §3: StoredKey = H(ClientKey), cheap to redo. */
        c->hits++;
        e->used = ++c->clock;
        memcpy(client_key, e->client_key, klen);
        memcpy(server_key, e->server_key, klen);
        return pst__scram_hash(h, client_key, klen, stored_key);
    }
    c->misses++;
    if ((rc = pst__scram_derive(h, pw, pw_len, salt, salt_len, iter, NULL,
                                client_key, stored_key, server_key)) < 0)
        return rc;
    rc = pst__scram_cache_put(c, h, pw, pw_len, salt, salt_len, iter,
                              client_key, server_key);
    /* A salt too long to keep is simply not cached. */
    return rc == PST_ELIMIT ? 0 : rc;
}
