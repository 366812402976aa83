/*
 * AUTH throttling (src/posternd/throttle.c): delays that grow and cap,
 * lockout and its expiry, a success resetting one address only, per-user
 * delays across addresses, exempt networks, IPv6 prefix grouping, the
 * memory bound under a flood of rotated addresses and names (with a
 * persistent attacker's counter surviving it), unknown user and wrong
 * password alike, forgetting after the quiet time, repeated passwords,
 * eviction order, configuration checks.  The clock is the tests' own.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "testutil.h"

#include "config.h"
#include "throttle.h"

#define T0 1000000u /* the tests' clock starts here (ms) */

#define MIN_MS  (60u * 1000u)
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Assert got == want, naming what: "what: got X, want Y". */
#define expect_u64(what, got, want)                                          \
    do {                                                                     \
        uint64_t g_ = (got), w_ = (want);                                    \
        if (g_ != w_)                                                        \
            fail_msg("%s: got %llu, want %llu", (what),                      \
                     (unsigned long long)g_, (unsigned long long)w_);        \
    } while (0)

static const char *
verdict_name(enum throttle_verdict v)
{
    return v == THROTTLE_OK ? "OK" : v == THROTTLE_REFUSE ? "REFUSE" : "?";
}

#define expect_verdict(what, got, want)                                      \
    do {                                                                     \
        enum throttle_verdict g_ = (got), w_ = (want);                       \
        if (g_ != w_)                                                        \
            fail_msg("%s: got %s, want %s", (what), verdict_name(g_),        \
                     verdict_name(w_));                                      \
    } while (0)

/* A socket address from text ("192.0.2.1", "2001:db8::1"). */
static struct sockaddr_storage
addr(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(587);
    } else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(587);
    } else {
        fail_msg("bad address in test: %s", text);
    }
    return ss;
}

/* 10.a.b.c for k (k < 2^24): one distinct IPv4 address per k. */
static struct sockaddr_storage
addr_k(uint32_t k)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;

    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0x0a000000u | (k & 0xffffffu));
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static struct throttle *
mk(const struct throttle_config *cfg)
{
    struct throttle *t = NULL;

    assert_rc(throttle_new(cfg, &t), 0);
    assert_non_null(t);
    return t;
}

/* Record a failure and return its delay, asserting the verdict. */
static uint64_t
fail_once(struct throttle *t, const struct sockaddr_storage *ss,
          const char *user, uint64_t now, enum throttle_verdict want,
          const char *what)
{
    uint64_t d = 12345;

    expect_verdict(what, throttle_auth_failed(t, SA(*ss), user, 0, now, &d),
                   want);
    return d;
}

/* throttle_check()'s delay, asserting THROTTLE_OK. */
static uint64_t
check_ok(struct throttle *t, const struct sockaddr_storage *ss,
         const char *user, uint64_t now, const char *what)
{
    uint64_t d = 12345;

    expect_verdict(what, throttle_check(t, SA(*ss), user, now, &d),
                   THROTTLE_OK);
    return d;
}

/* --- Delays ------------------------------------------------------------ */

static void
test_delays_grow_and_cap(void **state)
{
    /* delay(n) = base * 2^(n-1), capped (Dovecot auth-penalty). */
    static const struct {
        uint32_t base, max;
        uint64_t want[12];
    } v[] = {
        {1000, 15000, {1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000,
                       15000, 15000, 15000, 15000}},
        /* Dovecot's own numbers: 2 s doubling, 15 s at most. */
        {2000, 15000, {2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000,
                       15000, 15000, 15000, 15000}},
        {1, 1u << 31, {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}},
        {500, 500, {500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500,
                    500}},
        {0, 0, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    };
    struct sockaddr_storage a = addr("198.51.100.1");
    struct sockaddr_storage other = addr("198.51.100.2");
    char what[96];

    (void)state;
    for (size_t i = 0; i < NELEMS(v); i++) {
        struct throttle_config c;
        struct throttle *t;
        uint64_t now = T0;

        throttle_config_init(&c);
        c.base_delay_ms = v[i].base;
        c.max_delay_ms = v[i].max;
        c.lockout_failures = 0; /* the curve alone */
        c.user_failures = 0;
        t = mk(&c);
        for (size_t n = 0; n < 12; n++) {
            uint64_t w = v[i].want[n];

            snprintf(what, sizeof(what), "case %zu failure %zu", i, n + 1);
            expect_u64(what, fail_once(t, &a, "alice", now, THROTTLE_OK,
                                       what), w);
            /* A parallel attempt waits what remains of it ... */
            expect_u64(what, check_ok(t, &a, "alice", now, what), w);
            expect_u64(what, check_ok(t, &a, NULL, now + w / 2, what),
                       w - w / 2);
            /* ... nothing once it is over, and other addresses never. */
            expect_u64(what, check_ok(t, &a, "alice", now + w, what), 0);
            expect_u64(what, check_ok(t, &other, "alice", now, what), 0);
            now += w; /* the client waited for the 535 */
        }
        throttle_free(t);
    }
}

/* --- Lockout ----------------------------------------------------------- */

static void
test_lockout_and_expiry(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    struct sockaddr_storage a = addr("198.51.100.1");
    struct sockaddr_storage b = addr("198.51.100.2");
    uint64_t now = T0, d, last;
    char what[64];

    (void)state;
    throttle_config_init(&c);
    t = mk(&c);
    /* Failures 1..9 are delayed; the 10th locks the address. */
    for (unsigned n = 1; n <= 9; n++) {
        snprintf(what, sizeof(what), "failure %u", n);
        fail_once(t, &a, "alice", now, THROTTLE_OK, what);
        now += 1000;
    }
    d = fail_once(t, &a, "alice", now, THROTTLE_REFUSE, "failure 10");
    expect_u64("failure 10 delay", d, 15000);
    last = now;
    throttle_get_stats(t, &st);
    expect_u64("lockouts", st.lockouts, 1);

    /* Refused for lockout_ms, counted from the 10th failure; the lock
     * reports how long it still lasts. */
    expect_verdict("locked", throttle_check(t, SA(a), NULL, last, &d),
                   THROTTLE_REFUSE);
    expect_u64("lock left", d, 5 * MIN_MS);
    expect_verdict("locked", throttle_check(t, SA(a), "bob", last + 1000,
                                            &d),
                   THROTTLE_REFUSE);
    expect_u64("lock left", d, 5 * MIN_MS - 1000);
    expect_verdict("last ms", throttle_check(t, SA(a), NULL,
                                             last + 5 * MIN_MS - 1, &d),
                   THROTTLE_REFUSE);
    expect_u64("lock left", d, 1);
    /* Another address is not concerned. */
    expect_u64("other address", check_ok(t, &b, NULL, last, "b"), 0);

    /* Expired: one more attempt is let through ... */
    expect_u64("after the lock",
               check_ok(t, &a, NULL, last + 5 * MIN_MS, "expired"), 0);
    /* ... and a failure locks it again at once. */
    now = last + 5 * MIN_MS;
    fail_once(t, &a, "alice", now, THROTTLE_REFUSE, "failure 11");
    throttle_get_stats(t, &st);
    expect_u64("lockouts", st.lockouts, 2);
    expect_verdict("relocked", throttle_check(t, SA(a), NULL, now + 1, &d),
                   THROTTLE_REFUSE);
    expect_u64("lock left", d, 5 * MIN_MS - 1);

    /* Quiet for forget_ms after the last failure: a fresh start. */
    now += 10 * MIN_MS;
    d = fail_once(t, &a, "alice", now, THROTTLE_OK, "after quiet time");
    expect_u64("after quiet time", d, 1000);
    throttle_free(t);
}

/* The threshold is configurable; 0 never locks. */
static void
test_lockout_threshold(void **state)
{
    static const struct {
        unsigned failures;   /* lockout_failures */
        unsigned first_refused; /* 0: none in 50 */
    } v[] = {
        {1, 1}, {3, 3}, {10, 10}, {0, 0}, {50, 50},
    };
    struct sockaddr_storage a = addr("2001:db8::1");
    char what[64];

    (void)state;
    for (size_t i = 0; i < NELEMS(v); i++) {
        struct throttle_config c;
        struct throttle *t;
        unsigned got = 0;

        throttle_config_init(&c);
        c.lockout_failures = v[i].failures;
        t = mk(&c);
        for (unsigned n = 1; n <= 50 && got == 0; n++) {
            uint64_t d;

            if (throttle_auth_failed(t, SA(a), "alice", 0, T0 + n, &d) ==
                THROTTLE_REFUSE)
                got = n;
        }
        snprintf(what, sizeof(what), "lockout_failures %u: first refused",
                 v[i].failures);
        expect_u64(what, got, v[i].first_refused);
        throttle_free(t);
    }
}

/* --- Success ----------------------------------------------------------- */

static void
test_success_resets_only_that_address(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st, st2;
    struct sockaddr_storage a = addr("198.51.100.1");
    struct sockaddr_storage b = addr("198.51.100.2");
    struct sockaddr_storage l = addr("198.51.100.3");
    struct sockaddr_storage never = addr("203.0.113.9");
    uint64_t d;

    (void)state;
    throttle_config_init(&c);
    c.user_failures = 0;
    t = mk(&c);
    for (unsigned n = 0; n < 3; n++) {
        fail_once(t, &a, "alice", T0, THROTTLE_OK, "a");
        fail_once(t, &b, "bob", T0, THROTTLE_OK, "b");
    }
    throttle_auth_ok(t, SA(a), T0 + 10);
    expect_u64("a after its success", check_ok(t, &a, NULL, T0 + 10, "a"),
               0);
    expect_u64("b after a's success", check_ok(t, &b, NULL, T0 + 10, "b"),
               4000 - 10);
    expect_u64("a: counts from 1 again",
               fail_once(t, &a, "alice", T0 + 20, THROTTLE_OK, "a"), 1000);
    expect_u64("b: 4th failure",
               fail_once(t, &b, "bob", T0 + 20, THROTTLE_OK, "b"), 8000);

    /* A success does not lift a lock in force. */
    for (unsigned n = 0; n < 10; n++)
        fail_once(t, &l, "carol", T0, n < 9 ? THROTTLE_OK : THROTTLE_REFUSE,
                  "l");
    throttle_auth_ok(t, SA(l), T0 + 1);
    expect_verdict("locked after success",
                   throttle_check(t, SA(l), NULL, T0 + 2, &d),
                   THROTTLE_REFUSE);
    /* A success of an address never seen: nothing happens. */
    throttle_get_stats(t, &st);
    throttle_auth_ok(t, SA(never), T0);
    throttle_get_stats(t, &st2);
    expect_u64("entries", st2.addrs, st.addrs);
    throttle_free(t);
}

/* The real user logging in does not clear an attack on his name. */
static void
test_success_keeps_user_counter(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct sockaddr_storage home = addr("192.0.2.10");

    (void)state;
    throttle_config_init(&c);
    c.user_failures = 3;
    t = mk(&c);
    for (uint32_t k = 0; k < 5; k++) {
        struct sockaddr_storage x = addr_k(k);

        fail_once(t, &x, "alice", T0, THROTTLE_OK, "attack");
    }
    /* 5 failures on alice: 1000 * 2^(5-3). */
    expect_u64("before", check_ok(t, &home, "alice", T0, "home"), 4000);
    throttle_auth_ok(t, SA(home), T0);
    expect_u64("after", check_ok(t, &home, "alice", T0, "home"), 4000);
    throttle_free(t);
}

/* --- Per user ---------------------------------------------------------- */

static void
test_user_delays_across_addresses(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct sockaddr_storage fresh = addr("203.0.113.200");
    char what[64];

    (void)state;
    throttle_config_init(&c);
    t = mk(&c);
    /* 40 addresses, one failure each on alice: the address delay is the
     * base; from the 10th failure on the name the user delay doubles
     * from the base up to user_max_delay_ms. */
    for (uint32_t k = 1; k <= 40; k++) {
        struct sockaddr_storage x = addr_k(k);
        uint64_t du = k < 10 ? 0 : k - 10 >= 4 ? 15000 : 1000u << (k - 10);
        uint64_t want = du > 1000 ? du : 1000;

        snprintf(what, sizeof(what), "failure %u on alice", k);
        expect_u64(what, fail_once(t, &x, "alice", T0, THROTTLE_OK, what),
                   want);
    }
    /* Every attempt on alice waits, from any address; other names and
     * connections do not. */
    expect_u64("fresh, alice", check_ok(t, &fresh, "alice", T0, "a"),
               15000);
    expect_u64("fresh, alice later",
               check_ok(t, &fresh, "alice", T0 + 5000, "a"), 10000);
    expect_u64("fresh, bob", check_ok(t, &fresh, "bob", T0, "b"), 0);
    expect_u64("fresh, connect", check_ok(t, &fresh, NULL, T0, "c"), 0);
    throttle_free(t);
}

/* No per-user lockout: the real user is slowed, never shut out. */
static void
test_user_never_locked_out(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct sockaddr_storage home = addr("192.0.2.10");
    uint64_t worst = 0;

    (void)state;
    throttle_config_init(&c);
    c.user_max_delay_ms = 5000;
    t = mk(&c);
    for (uint32_t k = 0; k < 5000; k++) {
        struct sockaddr_storage x = addr_k(k);
        uint64_t d = fail_once(t, &x, "alice", T0 + k, THROTTLE_OK, "x");

        if (d > worst)
            worst = d;
    }
    expect_u64("worst hold", worst, 5000);
    expect_u64("real user waits at most",
               check_ok(t, &home, "alice", T0 + 4999, "home"), 5000);
    throttle_free(t);
}

/* --- Exempt networks --------------------------------------------------- */

static void
test_exempt(void **state)
{
    static const char *const nets[] = {"127.0.0.0/8", "::1",
                                       "192.0.2.0/24"};
    static const char *const exempt[] = {
        "127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1",
        "192.0.2.200",
    };
    static const char *const counted[] = {
        "128.0.0.1", "::2", "192.0.3.1", "::ffff:192.0.4.1",
    };
    struct config_cidr *cidrs;
    struct config_cidrs list;
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    char what[96];

    (void)state;
    cidrs = calloc(NELEMS(nets), sizeof(*cidrs));
    assert_non_null(cidrs);
    for (size_t i = 0; i < NELEMS(nets); i++)
        assert_rc(config_cidr_parse(nets[i], strlen(nets[i]), &cidrs[i]), 0);
    list = (struct config_cidrs){.v = cidrs, .n = NELEMS(nets)};
    throttle_config_init(&c);
    c.exempt = &list;
    t = mk(&c);
    /* The list is copied: the caller's may go (a reload frees it). */
    memset(cidrs, 0, NELEMS(nets) * sizeof(*cidrs));
    free(cidrs);

    for (size_t i = 0; i < NELEMS(exempt); i++) {
        struct sockaddr_storage x = addr(exempt[i]);

        for (unsigned n = 0; n < 100; n++) {
            snprintf(what, sizeof(what), "%s failure %u", exempt[i], n + 1);
            expect_u64(what, fail_once(t, &x, "alice", T0, THROTTLE_OK,
                                       what), 0);
            expect_u64(what, check_ok(t, &x, "alice", T0, what), 0);
        }
    }
    throttle_get_stats(t, &st);
    expect_u64("address entries", st.addrs, 0);
    expect_u64("user entries: exempt failures do not count", st.users, 0);
    expect_u64("failures", st.failures, 0);

    for (size_t i = 0; i < NELEMS(counted); i++) {
        struct sockaddr_storage x = addr(counted[i]);

        snprintf(what, sizeof(what), "%s first failure", counted[i]);
        expect_u64(what, fail_once(t, &x, "alice", T0, THROTTLE_OK, what),
                   1000);
    }
    throttle_get_stats(t, &st);
    expect_u64("address entries", st.addrs, NELEMS(counted));
    throttle_free(t);
}

/* --- Address grouping -------------------------------------------------- */

static void
test_address_grouping(void **state)
{
    static const struct {
        const char *a, *b;
        unsigned prefix;   /* ipv6_prefix */
        int same;          /* one counter */
    } v[] = {
        {"2001:db8:1::1", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", 48, 1},
        {"2001:db8:1::1", "2001:db8:2::1", 48, 0},
        {"2001:db8:1::1", "2001:db9:1::1", 48, 0},
        {"2001:db8:1::1", "2001:db8:1:1::1", 64, 0},
        {"2001:db8:1::1", "2001:db8:1:0:ffff::1", 64, 1},
        {"2001:db8:1::", "2001:db8:1:fff::", 52, 1},
        {"2001:db8:1::", "2001:db8:1:1000::", 52, 0},
        {"2001:db8::1", "2001:db8::2", 128, 0},
        {"2001:db8::1", "2001:db8::1", 128, 1},
        {"2001:db8::1", "ffff::1", 1, 0},
        {"2001:db8::1", "7fff::1", 1, 1},
        /* RFC 4291 §2.5.5.2: a mapped address is the IPv4 address. */
        {"192.0.2.1", "::ffff:192.0.2.1", 48, 1},
        {"::ffff:192.0.2.1", "::ffff:192.0.2.2", 48, 0},
        {"192.0.2.1", "192.0.2.2", 48, 0},
        /* ::192.0.2.1 (deprecated IPv4-compatible) is plain IPv6. */
        {"192.0.2.1", "::192.0.2.1", 48, 0},
        /* The families never share a key. */
        {"0.0.0.0", "::", 48, 0},
    };
    char what[128];

    (void)state;
    for (size_t i = 0; i < NELEMS(v); i++) {
        struct throttle_config c;
        struct throttle *t;
        struct sockaddr_storage a = addr(v[i].a), b = addr(v[i].b);

        throttle_config_init(&c);
        c.ipv6_prefix = v[i].prefix;
        c.user_failures = 0;
        t = mk(&c);
        for (unsigned n = 0; n < 3; n++)
            fail_once(t, &a, "alice", T0, THROTTLE_OK, v[i].a);
        snprintf(what, sizeof(what), "%s then %s /%u: delay", v[i].a, v[i].b,
                 v[i].prefix);
        /* The 4th failure of one counter, or the 1st of a new one. */
        expect_u64(what, fail_once(t, &b, "alice", T0, THROTTLE_OK, what),
                   v[i].same ? 8000 : 1000);
        throttle_free(t);
    }
}

/* --- Memory bound ------------------------------------------------------ */

static void
test_flood_memory_bound(void **state)
{
    const uint32_t flood = 1000000;
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    struct sockaddr_storage p = addr("203.0.113.66");
    struct sockaddr_storage q = addr("2001:db8:77::1");
    struct sockaddr_storage fresh = addr("198.51.100.99");
    uint64_t now = T0, d;
    char user[32];

    (void)state;
    throttle_config_init(&c);
    t = mk(&c);
    /* A persistent attacker, locked out; a slower one with 3 failures;
     * and alice, a name under attack (10 failures). */
    for (unsigned n = 0; n < 10; n++)
        fail_once(t, &p, "alice", now, n < 9 ? THROTTLE_OK : THROTTLE_REFUSE,
                  "p");
    for (unsigned n = 0; n < 3; n++)
        fail_once(t, &q, "bob", now, THROTTLE_OK, "q");

    /* One failure from each of a million addresses, each with a name of
     * its own, over 10 s (nothing becomes stale). */
    for (uint32_t k = 0; k < flood; k++) {
        struct sockaddr_storage x = addr_k(k);

        now = T0 + k / 100;
        snprintf(user, sizeof(user), "u%u", (unsigned)k);
        if (throttle_auth_failed(t, SA(x), user, 0, now, &d) != THROTTLE_OK)
            fail_msg("flood failure %u: got REFUSE, want OK", (unsigned)k);
        if (k % 4096 == 0) {
            throttle_get_stats(t, &st);
            if (st.addrs > c.max_addrs || st.users > c.max_users)
                fail_msg("after %u: got %zu addresses and %zu users, want "
                         "at most %zu and %zu", (unsigned)k, st.addrs,
                         st.users, c.max_addrs, c.max_users);
        }
    }
    throttle_get_stats(t, &st);
    expect_u64("address entries", st.addrs, c.max_addrs);
    expect_u64("user entries", st.users, c.max_users);
    /* 2 + 1,000,000 addresses and names; all but the table size went. */
    expect_u64("address evictions", st.addr_evictions,
               flood + 2 - c.max_addrs);
    expect_u64("user evictions", st.user_evictions, flood + 2 - c.max_users);
    expect_u64("expired", st.expired, 0);
    expect_u64("failures", st.failures, flood + 13);

    /* The persistent attacker is still locked out ... */
    expect_verdict("p after the flood",
                   throttle_check(t, SA(p), NULL, now, &d), THROTTLE_REFUSE);
    expect_u64("p: lock left", d, 5 * MIN_MS - (now - T0));
    /* ... q's next failure is its 4th ... */
    expect_u64("q: 4th failure",
               fail_once(t, &q, "bob", now, THROTTLE_OK, "q"), 8000);
    /* ... and alice's 11th failure: 2 s from the name's counter. */
    expect_u64("alice: 11th failure",
               fail_once(t, &fresh, "alice", now, THROTTLE_OK, "alice"),
               2000);
    throttle_free(t);
}

/* Which entry gives way in a full table. */
static void
test_eviction_order(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2"),
                            cc = addr("192.0.2.3"), dd = addr("192.0.2.4"),
                            e = addr("192.0.2.5"), f = addr("192.0.2.6"),
                            g = addr("192.0.2.7"), h = addr("192.0.2.8");

    (void)state;
    throttle_config_init(&c);
    c.max_addrs = 4;
    c.user_failures = 0;
    t = mk(&c);
    for (unsigned n = 0; n < 3; n++)
        fail_once(t, &a, NULL, T0, THROTTLE_OK, "a");
    fail_once(t, &b, NULL, T0 + 1, THROTTLE_OK, "b");
    fail_once(t, &cc, NULL, T0 + 2, THROTTLE_OK, "c");
    fail_once(t, &cc, NULL, T0 + 2, THROTTLE_OK, "c");
    fail_once(t, &dd, NULL, T0 + 3, THROTTLE_OK, "d");
    /* Full.  e pushes out b: fewest failures, and older than d. */
    fail_once(t, &e, NULL, T0 + 4, THROTTLE_OK, "e");
    expect_u64("b gone", check_ok(t, &b, NULL, T0 + 4, "b"), 0);
    expect_u64("a kept", check_ok(t, &a, NULL, T0 + 4, "a"), 4000 - 4);
    expect_u64("c kept", check_ok(t, &cc, NULL, T0 + 4, "c"), 2000 - 2);
    expect_u64("d kept", check_ok(t, &dd, NULL, T0 + 4, "d"), 1000 - 1);
    /* f pushes out d, g pushes out e: a and c stay. */
    fail_once(t, &f, NULL, T0 + 5, THROTTLE_OK, "f");
    expect_u64("d gone", check_ok(t, &dd, NULL, T0 + 5, "d"), 0);
    fail_once(t, &g, NULL, T0 + 6, THROTTLE_OK, "g");
    expect_u64("e gone", check_ok(t, &e, NULL, T0 + 6, "e"), 0);
    expect_u64("a kept", check_ok(t, &a, NULL, T0 + 6, "a"), 4000 - 6);
    throttle_get_stats(t, &st);
    expect_u64("evictions", st.addr_evictions, 3);
    expect_u64("entries", st.addrs, 4);

    /* Once a's failures are forgotten it goes first, level or not. */
    fail_once(t, &h, NULL, T0 + 10 * MIN_MS, THROTTLE_OK, "h");
    throttle_get_stats(t, &st);
    expect_u64("expired", st.expired, 1);
    expect_u64("evictions", st.addr_evictions, 3);
    expect_u64("c kept", check_ok(t, &cc, NULL, T0 + 2, "c"), 2000);
    expect_u64("a gone", check_ok(t, &a, NULL, T0, "a"), 0);
    throttle_free(t);
}

/* --- Unknown user and wrong password ----------------------------------- */

/*
 * The driver reports both as a failure of (address, name): one client
 * guessing passwords of a real user and another guessing names get the
 * same verdicts and delays at every step, and the same for the attempts
 * that follow (DESIGN.md: "Unknown user and wrong password get the same
 * reply and do the same work").
 */
static void
test_unknown_user_same_as_wrong_password(void **state)
{
    static const uint32_t gaps[] = {0, 10, 500, 1000, 0, 3000, 20000, 1, 0,
                                    0, 5 * MIN_MS, 0, 11 * MIN_MS, 0};
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    struct sockaddr_storage known = addr("198.51.100.1");
    struct sockaddr_storage unknown = addr("198.51.100.2");
    const char *real = "alice";     /* in the user file */
    const char *nobody = "nosuch";  /* not in it */
    uint64_t now = T0;
    char what[64];

    (void)state;
    throttle_config_init(&c);
    c.user_failures = 3;
    t = mk(&c);
    for (size_t i = 0; i < NELEMS(gaps); i++) {
        uint64_t d1 = 0, d2 = 0, c1 = 0, c2 = 0;
        enum throttle_verdict v1, v2, w1, w2;
        uint8_t pw[8] = {'g', 'u', 'e', 's', 's', (uint8_t)('0' + i % 10)};

        now += gaps[i];
        snprintf(what, sizeof(what), "attempt %zu", i + 1);
        w1 = throttle_check(t, SA(known), real, now, &c1);
        w2 = throttle_check(t, SA(unknown), nobody, now, &c2);
        expect_verdict(what, w2, w1);
        expect_u64(what, c2, c1);
        if (w1 == THROTTLE_REFUSE)
            continue;
        v1 = throttle_auth_failed(t, SA(known), real,
                                  throttle_tag(t, real, pw, sizeof(pw)),
                                  now, &d1);
        v2 = throttle_auth_failed(t, SA(unknown), nobody,
                                  throttle_tag(t, nobody, pw, sizeof(pw)),
                                  now, &d2);
        expect_verdict(what, v2, v1);
        expect_u64(what, d2, d1);
    }
    throttle_get_stats(t, &st);
    expect_u64("user entries", st.users, 2);
    throttle_free(t);
}

/* --- Forgetting -------------------------------------------------------- */

static void
test_forget_after_quiet(void **state)
{
    static const struct {
        uint64_t gap;        /* after the 4th failure */
        uint64_t want_addr;  /* the next failure's delay, one address */
        uint64_t want_user;  /* same, 12 addresses on one name */
    } v[] = {
        {0, 15000, 8000},
        {10 * MIN_MS - 1, 15000, 8000},
        {10 * MIN_MS, 1000, 1000},
        {60 * MIN_MS, 1000, 1000},
    };
    char what[64];

    (void)state;
    for (size_t i = 0; i < NELEMS(v); i++) {
        struct throttle_config c;
        struct throttle *t;
        struct sockaddr_storage a = addr("198.51.100.1");
        struct sockaddr_storage fresh = addr("198.51.100.50");

        throttle_config_init(&c);
        t = mk(&c);
        for (unsigned n = 0; n < 4; n++)
            fail_once(t, &a, "bob", T0, THROTTLE_OK, "a");
        for (uint32_t k = 0; k < 12; k++) {
            struct sockaddr_storage x = addr_k(k);

            fail_once(t, &x, "alice", T0, THROTTLE_OK, "x");
        }
        snprintf(what, sizeof(what), "gap %llu: address",
                 (unsigned long long)v[i].gap);
        expect_u64(what, fail_once(t, &a, "bob", T0 + v[i].gap, THROTTLE_OK,
                                   what), v[i].want_addr);
        snprintf(what, sizeof(what), "gap %llu: user",
                 (unsigned long long)v[i].gap);
        /* alice's 13th failure: 1000 * 2^(13-10). */
        expect_u64(what, fail_once(t, &fresh, "alice", T0 + v[i].gap,
                                   THROTTLE_OK, what), v[i].want_user);
        throttle_free(t);
    }
}

/* --- Repeated passwords ------------------------------------------------ */

static void
test_tag(void **state)
{
    struct throttle_config c;
    struct throttle *t, *t2;
    uint64_t x;

    (void)state;
    throttle_config_init(&c);
    t = mk(&c);
    t2 = mk(&c);
    x = throttle_tag(t, "alice", (const uint8_t *)"guess", 5);
    if (x == 0)
        fail_msg("tag: got 0, want a tag");
    expect_u64("same input", throttle_tag(t, "alice",
                                          (const uint8_t *)"guess", 5), x);
    if (throttle_tag(t, "alice", (const uint8_t *)"guesS", 5) == x ||
        throttle_tag(t, "alicE", (const uint8_t *)"guess", 5) == x ||
        throttle_tag(t, "alic", (const uint8_t *)"eguess", 6) == x ||
        throttle_tag(t, "alice", (const uint8_t *)"guess\0", 6) == x)
        fail_msg("tag: got the same tag for different input");
    /* Keyed: another throttle (another key) gives another tag. */
    if (throttle_tag(t2, "alice", (const uint8_t *)"guess", 5) == x)
        fail_msg("tag: got the same tag under another key");
    expect_u64("NULL throttle", throttle_tag(NULL, "a", NULL, 0), 0);
    if (throttle_tag(t, NULL, NULL, 0) == 0)
        fail_msg("tag of no user, no password: got 0, want a tag");
    throttle_free(t);
    throttle_free(t2);
}

static void
test_repeated_password(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    struct sockaddr_storage a = addr("198.51.100.1");
    struct sockaddr_storage b = addr("198.51.100.2");
    uint64_t same, d, tags[2];
    char what[64];

    (void)state;
    throttle_config_init(&c);
    c.user_failures = 1;
    t = mk(&c);
    same = throttle_tag(t, "alice", (const uint8_t *)"old-password", 12);
    /* A device retrying a stale password: counted once, never locked. */
    for (unsigned n = 1; n <= 20; n++) {
        snprintf(what, sizeof(what), "same password, try %u", n);
        expect_verdict(what, throttle_auth_failed(t, SA(a), "alice", same,
                                                  T0 + n * 60000, &d),
                       THROTTLE_OK);
        expect_u64(what, d, 1000);
    }
    throttle_get_stats(t, &st);
    expect_u64("counted", st.failures, 1);
    expect_u64("repeats", st.repeats, 19);

    /* Two passwords in turn: every one counts, the 10th locks. */
    tags[0] = throttle_tag(t, "bob", (const uint8_t *)"one", 3);
    tags[1] = throttle_tag(t, "bob", (const uint8_t *)"two", 3);
    for (unsigned n = 1; n <= 10; n++) {
        snprintf(what, sizeof(what), "alternating, try %u", n);
        expect_verdict(what, throttle_auth_failed(t, SA(b), "bob",
                                                  tags[n % 2], T0, &d),
                       n < 10 ? THROTTLE_OK : THROTTLE_REFUSE);
    }
    /* No tag (CRAM-MD5, SCRAM ...): every failure counts. */
    for (unsigned n = 1; n <= 10; n++)
        throttle_auth_failed(t, SA(a), "alice", 0, T0 + 21 * 60000, &d);
    expect_verdict("untagged", throttle_check(t, SA(a), NULL,
                                              T0 + 21 * 60000, &d),
                   THROTTLE_REFUSE);
    throttle_free(t);
}

/* --- What an attacker gets (the figures of docs/SECURITY.md) ---------- */

/*
 * Failed guesses on one name in [0, horizon) by a sequential attacker
 * who starts each attempt as soon as throttle_check() lets him: from one
 * address, or from a new address each time (fresh); waiting for each 535
 * (patient), or dropping the connection at once to try again.
 */
static unsigned
attack(struct throttle *t, int fresh, int patient, uint64_t horizon)
{
    struct sockaddr_storage one = addr("198.51.100.1");
    uint64_t now = 0, d;
    unsigned n = 0;

    while (now < horizon) {
        struct sockaddr_storage x = fresh ? addr_k(n) : one;

        if (throttle_check(t, SA(x), "alice", now, &d) == THROTTLE_REFUSE) {
            if (d == 0)
                fail_msg("refused with no time left");
            now += d;
            continue;
        }
        now += d;
        if (now >= horizon)
            break;
        throttle_auth_failed(t, SA(x), "alice", 0, now, &d);
        n++;
        if (patient)
            now += d;
    }
    return n;
}

static void
test_attacker_budget(void **state)
{
    static const struct {
        const char *what;
        int fresh, patient;
        uint64_t horizon;
        unsigned want;
    } v[] = {
        /* Holds 1+2+4+8+15*5 s, the 10th failure (t = 90 s) locks for
         * 5 min, then one guess per lock: 10 + 11 in the first hour,
         * 10 + 287 in a day. */
        {"one address, 1 h", 0, 1, 3600000, 21},
        {"one address, impatient, 1 h", 0, 0, 3600000, 21},
        {"one address, 24 h", 0, 1, 86400000, 297},
        /* A new address each time: 9 holds of 1 s, then the name's
         * 1, 2, 4, 8 s (t = 24 s), then one guess per 15 s: 13 + 239. */
        {"rotating addresses, 1 h", 1, 1, 3600000, 252},
        {"rotating addresses, impatient, 1 h", 1, 0, 3600000, 252},
    };
    char what[96];

    (void)state;
    for (size_t i = 0; i < NELEMS(v); i++) {
        struct throttle_config c;
        struct throttle *t;

        throttle_config_init(&c);
        t = mk(&c);
        snprintf(what, sizeof(what), "%s: guesses", v[i].what);
        expect_u64(what, attack(t, v[i].fresh, v[i].patient, v[i].horizon),
                   v[i].want);
        throttle_free(t);
    }
}

/* --- Configuration and edges ------------------------------------------- */

static void
test_config_checks(void **state)
{
    static const struct {
        const char *what;
        size_t max_addrs, max_users;
        uint32_t base, max;
        unsigned prefix;
        int rc;
    } v[] = {
        {"defaults", 65536, 65536, 1000, 15000, 48, 0},
        {"one entry", 1, 1, 1000, 15000, 48, 0},
        {"no delays, /128", 10, 10, 0, 0, 128, 0},
        {"no addresses", 0, 10, 1000, 15000, 48, PST_EINVAL},
        {"no users", 10, 0, 1000, 15000, 48, PST_EINVAL},
        {"too many", THROTTLE_MAX_ENTRIES + 1, 10, 1000, 15000, 48,
         PST_EINVAL},
        {"base above max", 10, 10, 2000, 1000, 48, PST_EINVAL},
        {"prefix 0", 10, 10, 1000, 15000, 0, PST_EINVAL},
        {"prefix 129", 10, 10, 1000, 15000, 129, PST_EINVAL},
    };
    char what[96];

    (void)state;
    for (size_t i = 0; i < NELEMS(v); i++) {
        struct throttle_config c;
        struct throttle *t = (struct throttle *)&c; /* must become NULL */

        throttle_config_init(&c);
        c.max_addrs = v[i].max_addrs;
        c.max_users = v[i].max_users;
        c.base_delay_ms = v[i].base;
        c.max_delay_ms = v[i].max;
        c.ipv6_prefix = v[i].prefix;
        snprintf(what, sizeof(what), "%s", v[i].what);
        assert_rc(throttle_new(&c, &t), v[i].rc);
        if (v[i].rc < 0 && t != NULL)
            fail_msg("%s: got an object on failure, want NULL", what);
        throttle_free(t);
    }
}

static void
test_reconfigure(void **state)
{
    struct throttle_config c, c2;
    struct throttle *t;
    struct sockaddr_storage a = addr("198.51.100.1");
    struct config_cidr net;
    struct config_cidrs list = {.v = &net, .n = 1};
    uint64_t d;

    (void)state;
    throttle_config_init(&c);
    t = mk(&c);
    for (unsigned n = 0; n < 3; n++)
        fail_once(t, &a, "alice", T0, THROTTLE_OK, "a");

    /* A table size cannot change; t is left as it was. */
    c2 = c;
    c2.max_addrs = 1024;
    c2.lockout_failures = 3;
    assert_rc(throttle_reconfigure(t, &c2), PST_EINVAL);
    c2 = c;
    c2.base_delay_ms = 20000;
    assert_rc(throttle_reconfigure(t, &c2), PST_EINVAL);
    expect_u64("unchanged", check_ok(t, &a, NULL, T0, "a"), 4000);

    /* New numbers apply to the counters at once. */
    c2 = c;
    c2.lockout_failures = 3;
    assert_rc(throttle_reconfigure(t, &c2), 0);
    expect_verdict("locked by the new threshold",
                   throttle_check(t, SA(a), NULL, T0, &d), THROTTLE_REFUSE);
    c2.lockout_failures = 10;
    c2.base_delay_ms = 100;
    assert_rc(throttle_reconfigure(t, &c2), 0);
    expect_u64("new base", check_ok(t, &a, NULL, T0, "a"), 400);

    /* A new exempt list. */
    assert_rc(config_cidr_parse("198.51.100.0/24", 15, &net), 0);
    c2.exempt = &list;
    assert_rc(throttle_reconfigure(t, &c2), 0);
    expect_u64("exempt now", check_ok(t, &a, NULL, T0, "a"), 0);
    expect_u64("exempt failure",
               fail_once(t, &a, "alice", T0, THROTTLE_OK, "a"), 0);
    assert_rc(throttle_reconfigure(NULL, &c2), PST_EINVAL);
    throttle_free(t);
}

static void
test_edges(void **state)
{
    struct throttle_config c;
    struct throttle *t;
    struct throttle_stats st;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_storage a = addr("198.51.100.1");
    uint64_t d = 1;

    (void)state;
    /* No throttle (auth_throttle = no): everything goes. */
    expect_verdict("NULL check", throttle_check(NULL, SA(a), "x", T0, &d),
                   THROTTLE_OK);
    expect_u64("NULL check delay", d, 0);
    d = 1;
    expect_verdict("NULL failed",
                   throttle_auth_failed(NULL, SA(a), "x", 0, T0, &d),
                   THROTTLE_OK);
    expect_u64("NULL failed delay", d, 0);
    throttle_auth_ok(NULL, SA(a), T0);
    throttle_get_stats(NULL, &st);
    expect_u64("NULL stats", st.failures, 0);
    throttle_free(NULL);

    throttle_config_init(&c);
    t = mk(&c);
    /* A family that is not counted, and no address at all. */
    d = 1;
    expect_verdict("AF_UNIX", throttle_auth_failed(
                                  t, (const struct sockaddr *)&un, "x", 0,
                                  T0, &d),
                   THROTTLE_OK);
    expect_u64("AF_UNIX delay", d, 0);
    d = 1;
    expect_verdict("no address",
                   throttle_auth_failed(t, NULL, "x", 0, T0, &d),
                   THROTTLE_OK);
    expect_u64("no address delay", d, 0);
    throttle_get_stats(t, &st);
    expect_u64("nothing counted", st.failures, 0);
    /* No user name (malformed exchange): the address alone. */
    expect_u64("no user", fail_once(t, &a, NULL, T0, THROTTLE_OK, "a"),
               1000);
    throttle_get_stats(t, &st);
    expect_u64("address entries", st.addrs, 1);
    expect_u64("user entries", st.users, 0);
    /* An empty name is a name. */
    fail_once(t, &a, "", T0, THROTTLE_OK, "a");
    throttle_get_stats(t, &st);
    expect_u64("user entries", st.users, 1);
    /* A clock that goes back counts as no time passed. */
    expect_u64("clock back", check_ok(t, &a, NULL, T0 - 5000, "a"), 2000);
    expect_u64("errors", st.errors, 0);
    throttle_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delays_grow_and_cap),
        cmocka_unit_test(test_lockout_and_expiry),
        cmocka_unit_test(test_lockout_threshold),
        cmocka_unit_test(test_success_resets_only_that_address),
        cmocka_unit_test(test_success_keeps_user_counter),
        cmocka_unit_test(test_user_delays_across_addresses),
        cmocka_unit_test(test_user_never_locked_out),
        cmocka_unit_test(test_exempt),
        cmocka_unit_test(test_address_grouping),
        cmocka_unit_test(test_flood_memory_bound),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_unknown_user_same_as_wrong_password),
        cmocka_unit_test(test_forget_after_quiet),
        cmocka_unit_test(test_tag),
        cmocka_unit_test(test_repeated_password),
        cmocka_unit_test(test_attacker_budget),
        cmocka_unit_test(test_config_checks),
        cmocka_unit_test(test_reconfigure),
        cmocka_unit_test(test_edges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
