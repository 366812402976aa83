/*
 * postern bench: SCRAM with a cached salted password (bench.h), and its
 * self-test against the RFC vectors.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "bench.h"

/* --- SCRAM with a cached salted password (RFC 5802, RFC 7677) ------------ */

/*
 * RFC 5802 §5.1: "the client can cache ClientKey and ServerKey (or just
 * SaltedPassword) for later reauthentication to the same service, as it
 * is likely that the server is going to advertise the same salt value".
 * The cache holds ClientKey, StoredKey and ServerKey per (hash, salt,
 * iteration count); the password is the same for the whole run.
 */
static const struct scram_cache_entry *
bench_scram_keys(struct bench *b, const uint8_t *salt, size_t salt_len,
           unsigned iter)
{
    const EVP_MD *md = b->scram_md;
    size_t klen = (size_t)EVP_MD_get_size(md);
    uint8_t sp[EVP_MAX_MD_SIZE];
    struct scram_cache_entry *e = NULL;
    unsigned int n = 0;

    for (size_t i = 0; i < BENCH_SCRAM_CACHE; i++) {
        struct scram_cache_entry *c = &b->cache[i];

        if (c->used && c->md == md && c->iterations == iter &&
            c->salt_len == salt_len &&
            memcmp(c->salt, salt, salt_len) == 0)
            return c;
        if (e == NULL && !c->used)
            e = c;
    }
    if (salt_len > sizeof(e->salt))
        return NULL;
    if (e == NULL) /* full: a server with changing salts; start over */
        e = &b->cache[b->pbkdf2_runs % BENCH_SCRAM_CACHE];
    /* RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i),
     * Hi being PBKDF2 with HMAC; the password is printable ASCII (checked
     * at start), which SASLprep leaves as it is. */
    if (PKCS5_PBKDF2_HMAC(b->password, (int)b->password_len, salt,
                          (int)salt_len, (int)iter, md, (int)klen,
                          sp) != 1)
        return NULL;
    b->pbkdf2_runs++;
    /* ClientKey := HMAC(SaltedPassword, "Client Key"),
     * StoredKey := H(ClientKey), ServerKey := HMAC(SaltedPassword,
     * "Server Key"). */
    if (HMAC(md, sp, (int)klen, (const uint8_t *)"Client Key", 10,
             e->client_key, &n) == NULL ||
        EVP_Digest(e->client_key, klen, e->stored_key, NULL, md,
                   NULL) != 1 ||
        HMAC(md, sp, (int)klen, (const uint8_t *)"Server Key", 10,
             e->server_key, &n) == NULL) {
        OPENSSL_cleanse(sp, sizeof(sp));
        OPENSSL_cleanse(e, sizeof(*e));
        return NULL;
    }
    OPENSSL_cleanse(sp, sizeof(sp));
    e->used = 1;
    e->md = md;
    e->iterations = iter;
    e->salt_len = salt_len;
    memcpy(e->salt, salt, salt_len);
    return e;
}

/* client-first-message: gs2-header "n,," (no channel binding, no
 * authzid) and client-first-message-bare "n=user,r=nonce" (§7). */
int
bench_scram_first(struct bconn *k, struct pst_buf *out)
{
    uint8_t raw[BENCH_SCRAM_NONCE];
    struct pst_buf nb;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return PST_ETEMP;
    pst_buf_init(&nb, sizeof(k->nonce), 0);
    if (pst_base64_encode(raw, sizeof(raw), &nb) < 0 ||
        nb.len >= sizeof(k->nonce)) {
        pst_buf_clear(&nb);
        return PST_ENOMEM;
    }
    memcpy(k->nonce, nb.data, nb.len);
    k->nonce[nb.len] = '\0';
    pst_buf_clear(&nb);
    k->scram = SCRAM_SENT_FIRST;
    return pst_buf_printf(out, "n,,n=%s,r=%s", k->b->scram_user, k->nonce);
}

/* One "a=value" attribute of a SCRAM message, or NULL. */
static const char *
bench_scram_attr(const char *msg, char a, size_t *len)
{
    const char *p = msg;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ',');

        if (p[0] == a && p[1] == '=') {
            *len = end != NULL ? (size_t)(end - p - 2) : strlen(p + 2);
            return p + 2;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

/*
 * server-first-message (§7: r=nonce,s=salt,i=count) in, client-final-
 * message out: "c=biws,r=nonce,p=ClientProof" (biws is base64 of "n,,").
 */
int
bench_scram_final(struct bconn *k, const char *sf, struct pst_buf *out)
{
    struct bench *b = k->b;
    const struct scram_cache_entry *e;
    size_t rlen = 0, slen = 0, ilen = 0, klen, without_proof;
    const char *r = bench_scram_attr(sf, 'r', &rlen);
    const char *s = bench_scram_attr(sf, 's', &slen);
    const char *i = bench_scram_attr(sf, 'i', &ilen);
    uint8_t sig[EVP_MAX_MD_SIZE], proof[EVP_MAX_MD_SIZE];
    struct pst_buf salt, am;
    char num[16];
    uint64_t iter;
    unsigned int n = 0;
    int rc = PST_EPROTO;

    /* §5.1: the nonce starts with ours; "m=" is a mandatory extension we
     * do not know, so the exchange must fail. */
    if (sf[0] == 'm' || r == NULL || s == NULL || i == NULL ||
        rlen <= strlen(k->nonce) ||
        strncmp(r, k->nonce, strlen(k->nonce)) != 0 || ilen == 0 ||
        ilen >= sizeof(num))
        return PST_EPROTO;
    memcpy(num, i, ilen);
    num[ilen] = '\0';
    if (bench_parse_uint(num, PST_SCRAM_MIN_ITERATIONS,
                         PST_SCRAM_MAX_ITERATIONS, &iter) < 0)
        return PST_EWEAK;
    pst_buf_init(&salt, 256, 0);
    pst_buf_init(&am, 4 * 1024, 1);
    if (pst_base64_decode((const uint8_t *)s, slen, &salt) < 0 ||
        salt.len == 0)
        goto out;
    rc = PST_ENOMEM;
    e = bench_scram_keys(b, salt.data, salt.len, (unsigned)iter);
    if (e == NULL)
        goto out;
    klen = (size_t)EVP_MD_get_size(b->scram_md);
    if (pst_buf_printf(out, "c=biws,r=%.*s", (int)rlen, r) < 0)
        goto out;
    without_proof = out->len;
    /* AuthMessage := client-first-message-bare + "," +
     *                server-first-message + "," +
     *                client-final-message-without-proof */
    if (pst_buf_printf(&am, "n=%s,r=%s,%s,%.*s", b->scram_user, k->nonce,
                       sf, (int)without_proof, (const char *)out->data) < 0)
        goto out;
    /* ClientProof := ClientKey XOR HMAC(StoredKey, AuthMessage);
     * ServerSignature := HMAC(ServerKey, AuthMessage). */
    if (HMAC(b->scram_md, e->stored_key, (int)klen, am.data, am.len, sig,
             &n) == NULL ||
        HMAC(b->scram_md, e->server_key, (int)klen, am.data, am.len,
             k->server_sig, &n) == NULL)
        goto out;
    for (size_t j = 0; j < klen; j++)
        proof[j] = e->client_key[j] ^ sig[j];
    if (pst_buf_append_str(out, ",p=") < 0 ||
        pst_base64_encode(proof, klen, out) < 0)
        goto out;
    k->scram = SCRAM_SENT_FINAL;
    rc = PST_SASL_CONTINUE;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(proof, sizeof(proof));
    pst_buf_clear(&salt);
    pst_buf_clear(&am);
    return rc;
}

/* server-final-message: "v=ServerSignature" or "e=error" (§7). */
int
bench_scram_verify(struct bconn *k, const char *sf)
{
    size_t klen = (size_t)EVP_MD_get_size(k->b->scram_md), vlen = 0;
    const char *v = bench_scram_attr(sf, 'v', &vlen);
    struct pst_buf got;
    int rc = PST_EFORGED;

    if (sf[0] == 'e' && sf[1] == '=')
        return PST_EAUTH;
    if (v == NULL)
        return PST_EPROTO;
    pst_buf_init(&got, 256, 0);
    /* §3: the client verifies ServerSignature. */
    if (pst_base64_decode((const uint8_t *)v, vlen, &got) == 0 &&
        got.len == klen &&
        CRYPTO_memcmp(got.data, k->server_sig, klen) == 0) {
        k->scram = SCRAM_VERIFIED;
        rc = PST_SASL_DONE;
    }
    pst_buf_clear(&got);
    OPENSSL_cleanse(k->server_sig, sizeof(k->server_sig));
    return rc;
}

/* SCRAM's saslname (RFC 5802 §5.1): "=" and "," escaped as =3D, =2C. */
int
bench_scram_escape_user(const char *user, char *out, size_t cap)
{
    size_t n = 0;

    for (; *user != '\0'; user++) {
        const char *rep = *user == '=' ? "=3D" : *user == ',' ? "=2C" : NULL;
        size_t len = rep != NULL ? 3 : 1;

        if (n + len >= cap)
            return -1;
        if (rep != NULL)
            memcpy(out + n, rep, 3);
        else
            out[n] = *user;
        n += len;
    }
    out[n] = '\0';
    return 0;
}

/* Printable ASCII: SASLprep (RFC 4013) leaves it as it is. */
int
bench_printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

/* --- Self-test ------------------------------------------------------------ */

/*
 * The cached SCRAM client against RFC 7677 §3 (SCRAM-SHA-256) and RFC
 * 5802 §5 (SCRAM-SHA-1), user "user", password "pencil", with the RFC
 * nonces.  Returns 0 when both exchanges match byte for byte.
 */
int
bench_self_test(void)
{
    static const struct {
        const char *mech, *nonce, *sfirst, *cfinal, *sfinal;
    } v[] = {
        {.mech = "SCRAM-SHA-256",
         .nonce = "rOprNGfwEbeRWgbNEkqO",
         .sfirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                   "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
         .cfinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
                   "hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
         .sfinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
        {.mech = "SCRAM-SHA-1",
         .nonce = "fyko+d2lbbFgONRv9qkxdawL",
         .sfirst = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                   "s=QSXCR+Q6sek8bf92,i=4096",
         .cfinal = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                   "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         .sfinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
    };
    static struct bench b;
    static struct bconn k;
    int failed = 0;

    b.password = (char *)"pencil";
    b.password_len = 6;
    snprintf(b.scram_user, sizeof(b.scram_user), "user");
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_buf out;
        int rc;

        memset(b.cache, 0, sizeof(b.cache));
        b.scram_md = strcmp(v[i].mech, "SCRAM-SHA-1") == 0 ? EVP_sha1()
                                                           : EVP_sha256();
        memset(&k, 0, sizeof(k));
        k.b = &b;
        snprintf(k.nonce, sizeof(k.nonce), "%s", v[i].nonce);
        k.scram = SCRAM_SENT_FIRST;
        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        rc = bench_scram_final(&k, v[i].sfirst, &out);
        if (rc != PST_SASL_CONTINUE || out.len != strlen(v[i].cfinal) ||
            memcmp(out.data, v[i].cfinal, out.len) != 0) {
            printf("%s: client-final: got %s, want %s\n", v[i].mech,
                   rc >= 0 && out.data ? (const char *)out.data
                                       : pst_errname(rc),
                   v[i].cfinal);
            failed++;
        } else if ((rc = bench_scram_verify(&k, v[i].sfinal)) !=
                   PST_SASL_DONE) {
            printf("%s: server-final: got %s, want DONE\n", v[i].mech,
                   pst_errname(rc));
            failed++;
        } else {
            printf("%s: RFC vector ok\n", v[i].mech);
        }
        pst_buf_clear(&out);
    }
    OPENSSL_cleanse(b.cache, sizeof(b.cache));
    return failed ? EX_SOFTWARE : 0;
}

