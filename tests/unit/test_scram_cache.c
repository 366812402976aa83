/*
 * The SCRAM client's key cache (RFC 5802 §5.1): hits skip PBKDF2, every
 * parameter that enters the derivation makes a miss, the RFC 5802 §5 and
 * RFC 7677 §3 exchanges stay byte exact with a cache, eviction is least
 * recently used.
 */
#include "testutil.h"

#include "../../lib/sasl/mech.h"

/* RFC 5802 §5 (user "user", password "pencil"). */
#define SHA1_CNONCE "fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_SALT   "QSXCR+Q6sek8bf92"
#define SHA1_SFIRST                                                          \
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"      \
    "i=4096"
#define SHA1_CFINAL                                                          \
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"                  \
    "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define SHA1_SFINAL "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

/* RFC 7677 §3. */
#define SHA256_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define SHA256_SFIRST                                                        \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                 \
    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SHA256_CFINAL                                                        \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"          \
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SHA256_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const struct pst_sasl_mech *
mech(const char *name)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(name, strlen(name));

    assert_non_null(m);
    return m;
}

/*
 * A client of mech with password pw and nonce cnonce, stepped through
 * client-first and the server-first message sfirst; its client-final goes
 * to out.  Returns the client (free it).
 */
static struct pst_sasl_client *
client_to_final(const char *mech_name, const char *pw, const char *cnonce,
                const char *sfirst, struct pst_scram_cache *cache,
                struct pst_buf *out)
{
    struct pst_sasl_client_config cfg = {
        .authcid = "user",
        .password = (const uint8_t *)pw,
        .password_len = strlen(pw),
        .scram_cache = cache,
    };
    struct pst_sasl_client *c;

    assert_rc(pst_sasl_client_new(mech(mech_name), &cfg, &c), 0);
    assert_rc(pst__scram_client_set_nonce(c, cnonce), 0);
    assert_rc(pst_sasl_client_step(c, NULL, 0, out), PST_SASL_CONTINUE);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)sfirst,
                                   strlen(sfirst), out),
              PST_SASL_CONTINUE);
    return c;
}

static void
assert_stats(const struct pst_scram_cache *cache, uint64_t hits,
             uint64_t misses, int line)
{
    uint64_t h = 99, m = 99;

    pst_sasl_scram_cache_stats(cache, &h, &m);
    if (h != hits || m != misses) {
        fprintf(stderr, "line %d: got hits %llu misses %llu, want %llu "
                "%llu\n", line, (unsigned long long)h,
                (unsigned long long)m, (unsigned long long)hits,
                (unsigned long long)misses);
        fail();
    }
}
#define ASSERT_STATS(c, h, m) assert_stats((c), (h), (m), __LINE__)

/* The RFC exchanges, twice each through one cache: byte exact both
 * times, one derivation per mechanism. */
static void
test_cache_rfc_vectors(void **state)
{
    static const struct {
        const char *mech, *cnonce, *sfirst, *cfinal, *sfinal;
    } v[] = {
        {"SCRAM-SHA-1", SHA1_CNONCE, SHA1_SFIRST, SHA1_CFINAL, SHA1_SFINAL},
        {"SCRAM-SHA-256", SHA256_CNONCE, SHA256_SFIRST, SHA256_CFINAL,
         SHA256_SFINAL},
    };
    struct pst_scram_cache *cache;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_sasl_scram_cache_new(0, &cache), 0);
    ASSERT_STATS(cache, 0, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        for (int round = 0; round < 3; round++) {
            struct pst_sasl_client *c = client_to_final(
                v[i].mech, "pencil", v[i].cnonce, v[i].sfirst, cache, &out);

            assert_buf_str(&out, v[i].cfinal);
            assert_rc(pst_sasl_client_step(c, (const uint8_t *)v[i].sfinal,
                                           strlen(v[i].sfinal), &out),
                      PST_SASL_DONE);
            assert_rc(pst_sasl_client_finish(c), 0);
            pst_sasl_client_free(c);
            /* One derivation, then hits. */
            ASSERT_STATS(cache, i * 2 + (uint64_t)round, i + 1);
        }
    }
    pst_sasl_scram_cache_free(cache);
    pst_buf_clear(&out);
}

/*
 * A hit does not derive: keys planted in the cache for the RFC 5802
 * parameters (not what PBKDF2 gives) are what the client uses, so its
 * proof is not the RFC's and the RFC server signature is refused.
 */
static void
test_cache_hit_skips_derivation(void **state)
{
    struct pst_scram_cache *cache;
    struct pst_buf out, salt;
    uint8_t ck[PST_SCRAM_MAX_KEY], sk[PST_SCRAM_MAX_KEY];
    struct pst_sasl_client *c;

    (void)state;
    memset(ck, 0x11, sizeof(ck));
    memset(sk, 0x22, sizeof(sk));
    test_b64dec(SHA1_SALT, &salt);
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_sasl_scram_cache_new(1, &cache), 0);
    assert_rc(pst__scram_cache_put(cache, PST_SCRAM_SHA1,
                                   (const uint8_t *)"pencil", 6, salt.data,
                                   salt.len, 4096, ck, sk),
              0);
    c = client_to_final("SCRAM-SHA-1", "pencil", SHA1_CNONCE, SHA1_SFIRST,
                        cache, &out);
    ASSERT_STATS(cache, 1, 0);
    assert_int_equal(out.len, strlen(SHA1_CFINAL));
    assert_true(memcmp(out.data, SHA1_CFINAL, out.len) != 0);
    assert_rc(pst_sasl_client_step(c, (const uint8_t *)SHA1_SFINAL,
                                   strlen(SHA1_SFINAL), &out),
              PST_EFORGED);
    pst_sasl_client_free(c);
    pst_sasl_scram_cache_free(cache);
    pst_buf_clear(&salt);
    pst_buf_clear(&out);
}

/* Each input of the derivation that differs makes a miss. */
static void
test_cache_misses(void **state)
{
    static const struct {
        const char *what, *mech, *pw, *sfirst;
        int hit;
    } v[] = {
        {"first", "SCRAM-SHA-1", "pencil", SHA1_SFIRST, 0},
        {"same again", "SCRAM-SHA-1", "pencil", SHA1_SFIRST, 1},
        {"other salt", "SCRAM-SHA-1", "pencil",
         "r=" SHA1_CNONCE "xyz,s=QSXCR+Q6sek8bf93,i=4096", 0},
        {"other iterations", "SCRAM-SHA-1", "pencil",
         "r=" SHA1_CNONCE "xyz,s=QSXCR+Q6sek8bf92,i=4097", 0},
        {"other password", "SCRAM-SHA-1", "pencil2", SHA1_SFIRST, 0},
        {"other hash", "SCRAM-SHA-256", "pencil", SHA1_SFIRST, 0},
        /* RFC 5802 §2.2: the password is SASLprep'd before anything, so
         * "pen<SOFT HYPHEN>cil" is "pencil" (RFC 4013 §2.2). */
        {"same after SASLprep", "SCRAM-SHA-1", "pen\xc2\xad" "cil",
         SHA1_SFIRST, 1},
        {"other nonce only", "SCRAM-SHA-1", "pencil",
         "r=" SHA1_CNONCE "other,s=QSXCR+Q6sek8bf92,i=4096", 1},
        {"other salt again", "SCRAM-SHA-1", "pencil",
         "r=" SHA1_CNONCE "xyz,s=QSXCR+Q6sek8bf93,i=4096", 1},
    };
    struct pst_scram_cache *cache;
    struct pst_buf out, first;
    uint64_t hits = 0, misses = 0;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&first, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_sasl_scram_cache_new(16, &cache), 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client *c = client_to_final(
            v[i].mech, v[i].pw, SHA1_CNONCE, v[i].sfirst, cache, &out);

        if (v[i].hit)
            hits++;
        else
            misses++;
        if (i == 0)
            assert_rc(pst_buf_append(&first, out.data, out.len), 0);
        if (i == 1 || i == 6) /* the same keys give the same bytes */
            assert_bytes_equal(out.data, out.len, first.data, first.len);
        {
            uint64_t h, m;

            pst_sasl_scram_cache_stats(cache, &h, &m);
            if (h != hits || m != misses) {
                fprintf(stderr, "%s: got hits %llu misses %llu, want %llu "
                        "%llu\n", v[i].what, (unsigned long long)h,
                        (unsigned long long)m, (unsigned long long)hits,
                        (unsigned long long)misses);
                fail();
            }
        }
        pst_sasl_client_free(c);
    }
    assert_buf_str(&first, SHA1_CFINAL);
    pst_sasl_scram_cache_free(cache);
    pst_buf_clear(&out);
    pst_buf_clear(&first);
}

/* Least recently used goes first; a salt too long to keep is never
 * cached but still works. */
static void
test_cache_eviction(void **state)
{
    static const char *const b =
        "r=" SHA1_CNONCE "x,s=QSXCR+Q6sek8bf93,i=4096";
    static const char *const d =
        "r=" SHA1_CNONCE "x,s=QSXCR+Q6sek8bf94,i=4096";
    static const struct {
        const char *sfirst;
        int hit;
    } seq[] = {
        {SHA1_SFIRST, 0}, {NULL, 0} /* b */, {SHA1_SFIRST, 1},
        {NULL, 0} /* d evicts b */, {SHA1_SFIRST, 1}, {NULL, 0} /* b */,
    };
    struct pst_scram_cache *cache;
    struct pst_buf out, longsalt, sfirst;
    uint64_t hits = 0, misses = 0;
    uint8_t raw[129];

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_sasl_scram_cache_new(2, &cache), 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(seq); i++) {
        const char *sf = seq[i].sfirst;
        struct pst_sasl_client *c;

        if (sf == NULL)
            sf = i == 3 ? d : b;
        c = client_to_final("SCRAM-SHA-1", "pencil", SHA1_CNONCE, sf, cache,
                            &out);
        hits += seq[i].hit;
        misses += !seq[i].hit;
        ASSERT_STATS(cache, hits, misses);
        pst_sasl_client_free(c);
    }
    pst_sasl_scram_cache_free(cache);

    /* One entry: each new parameter set evicts the last. */
    assert_rc(pst_sasl_scram_cache_new(1, &cache), 0);
    pst_sasl_client_free(client_to_final("SCRAM-SHA-1", "pencil",
                                         SHA1_CNONCE, SHA1_SFIRST, cache,
                                         &out));
    pst_sasl_client_free(client_to_final("SCRAM-SHA-1", "pencil",
                                         SHA1_CNONCE, b, cache, &out));
    pst_sasl_client_free(client_to_final("SCRAM-SHA-1", "pencil",
                                         SHA1_CNONCE, SHA1_SFIRST, cache,
                                         &out));
    ASSERT_STATS(cache, 0, 3);
    assert_buf_str(&out, SHA1_CFINAL);
    pst_sasl_scram_cache_free(cache);

    /* A 129-octet salt: derived each time, never a hit. */
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)i;
    pst_buf_init(&longsalt, 1024, 0);
    pst_buf_init(&sfirst, 1024, 0);
    assert_rc(pst_base64_encode(raw, sizeof(raw), &longsalt), 0);
    assert_rc(pst_buf_printf(&sfirst, "r=%sx,s=%.*s,i=4096", SHA1_CNONCE,
                             (int)longsalt.len, (const char *)longsalt.data),
              0);
    assert_rc(pst_sasl_scram_cache_new(4, &cache), 0);
    for (int i = 0; i < 2; i++)
        pst_sasl_client_free(client_to_final(
            "SCRAM-SHA-1", "pencil", SHA1_CNONCE,
            (const char *)sfirst.data, cache, &out));
    ASSERT_STATS(cache, 0, 2);
    pst_sasl_scram_cache_free(cache);
    pst_buf_clear(&longsalt);
    pst_buf_clear(&sfirst);
    pst_buf_clear(&out);
}

/* A cache against our own server, with a {PLAIN} user whose salt is made
 * fresh for each exchange (pst_cred_scram): every login misses, and still
 * succeeds; with stored keys the second login hits. */
static void
test_cache_roundtrip(void **state)
{
    static const char *const stored =
        "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
    static const struct pst_sasl_server_config scfg = {
        .hostname = "mail.example.test",
    };
    static const struct {
        const char *cred, *pw;
        int want;
        uint64_t hits, misses;
    } v[] = {
        {"{PLAIN}pencil", "pencil", PST_SASL_DONE, 0, 1},
        {"{PLAIN}pencil", "pencil", PST_SASL_DONE, 0, 2},
        {NULL, "pencil", PST_SASL_DONE, 0, 3},
        {NULL, "pencil", PST_SASL_DONE, 1, 3},
        {NULL, "pencil2", PST_EAUTH, 1, 4},
        {NULL, "pencil", PST_SASL_DONE, 2, 4},
    };
    struct pst_scram_cache *cache;
    struct pst_buf cbuf, sbuf;

    (void)state;
    pst_buf_init(&cbuf, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&sbuf, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_scram_cache_new(4, &cache), 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        const char *text = v[i].cred != NULL ? v[i].cred : stored;
        struct pst_sasl_client_config ccfg = {
            .authcid = "user",
            .password = (const uint8_t *)v[i].pw,
            .password_len = strlen(v[i].pw),
            .scram_cache = cache,
        };
        struct pst_sasl_client *c;
        struct pst_sasl_server *s;
        struct pst_cred *cred = NULL;
        int rc;

        assert_rc(pst_cred_parse(text, strlen(text), &cred), 0);
        assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-256"), &ccfg, &c), 0);
        assert_rc(pst_sasl_server_new(mech("SCRAM-SHA-256"), &scfg, &s), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &cbuf),
                  PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, cbuf.data, cbuf.len, &sbuf),
                  PST_SASL_NEED_CRED);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &sbuf),
                  PST_SASL_CONTINUE);
        assert_rc(pst_sasl_client_step(c, sbuf.data, sbuf.len, &cbuf),
                  PST_SASL_CONTINUE);
        rc = pst_sasl_server_step(s, cbuf.data, cbuf.len, &sbuf);
        if (v[i].want == PST_SASL_DONE) {
            assert_rc(rc, PST_SASL_CONTINUE);
            assert_rc(pst_sasl_client_step(c, sbuf.data, sbuf.len, &cbuf),
                      PST_SASL_DONE);
            assert_rc(pst_sasl_server_step(s, cbuf.data, cbuf.len, &sbuf),
                      PST_SASL_DONE);
        } else {
            assert_rc(rc, v[i].want);
        }
        ASSERT_STATS(cache, v[i].hits, v[i].misses);
        pst_sasl_client_free(c);
        pst_sasl_server_free(s);
        pst_cred_free(cred);
    }
    pst_sasl_scram_cache_free(cache);
    pst_buf_clear(&cbuf);
    pst_buf_clear(&sbuf);
}

/*
 * What postern bench does: several exchanges alive at once on one cache,
 * their steps interleaved as replies arrive.  Every client sends
 * client-first before any server-first comes; the first to get it
 * derives, the others hit; every client-final and server-final is the
 * RFC 7677 §3 exchange byte for byte, in whatever order they finish; a
 * client that took its keys from the cache still refuses a wrong server
 * signature.
 */
static void
test_cache_interleaved(void **state)
{
    enum { N = 4 };
    static const char *const forged =
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G8=";
    struct pst_sasl_client_config cfg = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
    };
    struct pst_sasl_client *c[N];
    struct pst_scram_cache *cache;
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    assert_rc(pst_sasl_scram_cache_new(0, &cache), 0);
    cfg.scram_cache = cache;
    for (size_t i = 0; i < N; i++) {
        assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-256"), &cfg, &c[i]),
                  0);
        assert_rc(pst__scram_client_set_nonce(c[i], SHA256_CNONCE), 0);
        assert_rc(pst_sasl_client_step(c[i], NULL, 0, &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, "n,,n=user,r=" SHA256_CNONCE);
    }
    ASSERT_STATS(cache, 0, 0);
    for (size_t i = 0; i < N; i++) {
        assert_rc(pst_sasl_client_step(c[i], (const uint8_t *)SHA256_SFIRST,
                                       strlen(SHA256_SFIRST), &out),
                  PST_SASL_CONTINUE);
        assert_buf_str(&out, SHA256_CFINAL);
        ASSERT_STATS(cache, i, 1);
    }
    /* The last one in is the first out; one of the hits meets a forged
     * signature (its last octet changed). */
    for (size_t i = N; i-- > 0;) {
        const char *sfinal = i == 1 ? forged : SHA256_SFINAL;

        assert_rc(pst_sasl_client_step(c[i], (const uint8_t *)sfinal,
                                       strlen(sfinal), &out),
                  i == 1 ? PST_EFORGED : PST_SASL_DONE);
        assert_rc(pst_sasl_client_finish(c[i]),
                  i == 1 ? PST_ESTATE : 0);
        pst_sasl_client_free(c[i]);
    }
    ASSERT_STATS(cache, N - 1, 1);
    pst_sasl_scram_cache_free(cache);
    pst_buf_clear(&out);
}

static void
test_cache_api(void **state)
{
    struct pst_scram_cache *cache = (struct pst_scram_cache *)&cache;
    uint64_t h = 7, m = 7;

    (void)state;
    assert_rc(pst_sasl_scram_cache_new(4097, &cache), PST_EINVAL);
    assert_null(cache);
    assert_rc(pst_sasl_scram_cache_new(4096, &cache), 0);
    pst_sasl_scram_cache_free(cache);
    pst_sasl_scram_cache_free(NULL);
    pst_sasl_scram_cache_stats(NULL, &h, &m);
    assert_int_equal(h, 0);
    assert_int_equal(m, 0);
    pst_sasl_scram_cache_stats(NULL, NULL, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_rfc_vectors),
        cmocka_unit_test(test_cache_hit_skips_derivation),
        cmocka_unit_test(test_cache_misses),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_cache_roundtrip),
        cmocka_unit_test(test_cache_interleaved),
        cmocka_unit_test(test_cache_api),
    };
    return cmocka_run_group_tests_name("scram_cache", tests, NULL, NULL);
}
