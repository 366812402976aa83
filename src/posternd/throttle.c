/*
 * posternd - brute-force throttling of AUTH (see throttle.h).
 *
 * Two tables of the same shape: one keyed by client address (network
 * bytes), one by a keyed 128-bit hash of the user name.  Each is an array
 * of max entries allocated once, a hash index over it (chains through
 * array indices), and two orders kept as doubly-linked lists through the
 * same indices:
 *
 *   the LRU list      every entry, by the time of its last failure;
 *   the level lists   one per failure count (0 .. LEVELS-1, the last one
 *                     for every count beyond), each by last failure.
 *
 * Eviction, when a table is full (throttle.h says why): the least
 * recently failed entry if its failures are forgotten already (it is
 * worth nothing), else the least recently failed entry of the lowest
 * non-empty level.  An attacker who rotates addresses (or names) creates
 * entries with one failure each; they push out one another and never an
 * entry with more failures, however long the flood goes on, so a
 * persistent attacker's counter and his lock survive it.  Plain LRU would
 * not do: a locked-out address makes no attempts, so its entry grows old
 * and a flood of 65536 one-failure addresses during the lock would erase
 * it.  To push out a level-n entry an attacker must first bring every
 * entry of the table to n failures, at a cost of max * n failed
 * attempts with their delays.
 *
 * Delays and locks are not stored: they follow from the failure count and
 * the time of the last failure, so a reload that changes the numbers
 * applies them to the counters at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <postern/error.h>

#include "throttle.h"

#define NIL      UINT32_MAX
#define KEY_LEN  17        /* kind byte + 16 bytes */
#define LEVELS   32        /* level lists; the last holds 31 and more */
#define MAC_KEY  16        /* SipHash key */
#define MAC_OUT  16        /* SipHash-128 output */

/* The first byte of a key: what the other 16 are. */
enum key_kind {
    KEY_IPV4 = 4,          /* 4 address bytes, 12 zero */
    KEY_IPV6 = 6,          /* 16 address bytes, masked to ipv6_prefix */
    KEY_USER = 'U',        /* SipHash-128 of the user name */
};

/* Domain separation of the SipHash inputs. */
enum mac_domain {
    MAC_BUCKET = 'B',      /* hash index of a key */
    MAC_USER = 'U',        /* user name -> key */
    MAC_TAG = 'P',         /* user name and password -> tag */
};

struct link {
    uint32_t prev, next;   /* indices; NIL at the ends */
};

struct list {
    uint32_t head, tail;   /* head: most recent */
};

/* 64 bytes. */
struct entry {
    uint8_t  key[KEY_LEN];
    uint8_t  level;        /* which level list it is on */
    uint32_t failures;     /* since the counter was last forgotten */
    uint32_t hnext;        /* next in the hash chain */
    struct link lru;
    struct link lvl;
    uint64_t last_failure; /* ms, the caller's clock */
    uint64_t last_tag;     /* throttle_tag() of the last failure; 0 none */
};
_Static_assert(sizeof(struct entry) == 64, "throttle.h promises 64 bytes");

struct table {
    struct entry *e;       /* owned, cap entries */
    uint32_t cap;
    uint32_t n;            /* in use */
    uint32_t fresh;        /* slots [fresh, cap) never used */
    uint32_t free_head;    /* released slots, chained through hnext */
    uint32_t *bucket;      /* owned, mask + 1 chain heads */
    uint32_t mask;
    int lockable;          /* the address table: entries can be locked */
    struct list lru;
    struct list lvl[LEVELS];
    uint64_t evictions;
};

struct throttle {
    struct throttle_config cfg;  /* exempt points at exempt below */
    struct config_cidrs exempt;  /* owned copy */
    struct table addrs;
    struct table users;
    EVP_MAC *mac;
    EVP_MAC_CTX *mac_ctx;
    uint8_t mac_key[MAC_KEY];    /* random, wiped at free */
    struct throttle_stats st;    /* addrs/users filled on demand */
    pthread_mutex_t mu;          /* every public call holds it: the
                                    event loops of all workers share t */
};

/* --- Configuration ----------------------------------------------------- */

void
throttle_config_init(struct throttle_config *cfg)
{
    *cfg = (struct throttle_config){
        .max_addrs = THROTTLE_DEFAULT_ENTRIES,
        .max_users = THROTTLE_DEFAULT_ENTRIES,
        /* Dovecot's auth-penalty: 2 s doubling up to 15 s; we start at
         * 1 s so that a single typo costs a person little. */
        .base_delay_ms = 1000,
        .max_delay_ms = 15000,
        .lockout_failures = 10,
        .lockout_ms = 5 * 60 * 1000,
        .user_failures = 10,
        .user_max_delay_ms = 15000,
        .forget_ms = 10 * 60 * 1000,
        .ipv6_prefix = 48,
        .exempt = NULL,
    };
}

static int
throttle_config_valid(const struct throttle_config *c)
{
    return c->max_addrs >= 1 && c->max_addrs <= THROTTLE_MAX_ENTRIES &&
           c->max_users >= 1 && c->max_users <= THROTTLE_MAX_ENTRIES &&
           c->base_delay_ms <= c->max_delay_ms && c->ipv6_prefix >= 1 &&
           c->ipv6_prefix <= 128;
}

/* Copy list (may be NULL) into *out. */
static int
throttle_copy_cidrs(const struct config_cidrs *list, struct config_cidrs *out)
{
    out->v = NULL;
    out->n = 0;
    if (list == NULL || list->n == 0)
        return 0;
    out->v = malloc(list->n * sizeof(*out->v));
    if (out->v == NULL)
        return PST_ENOMEM;
    memcpy(out->v, list->v, list->n * sizeof(*out->v));
    out->n = list->n;
    return 0;
}

/* --- Keyed hashing ----------------------------------------------------- */

/*
 * SipHash-128 under t's key of the domain byte, then p1 and p2 (either
 * may be empty).  Returns 0 or -1.
 */
static int
throttle_mac(struct throttle *t, enum mac_domain domain, const void *p1,
             size_t n1, const void *p2, size_t n2, uint8_t out[MAC_OUT])
{
    size_t size = MAC_OUT, outl = 0;
    uint8_t d = (uint8_t)domain;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };

    /* The key is given again each time: EVP_MAC_init() after a final()
     * is then well defined for every MAC (EVP_MAC(3) NOTES). */
    if (EVP_MAC_init(t->mac_ctx, t->mac_key, sizeof(t->mac_key),
                     params) != 1 ||
        EVP_MAC_update(t->mac_ctx, &d, 1) != 1 ||
        (n1 > 0 && EVP_MAC_update(t->mac_ctx, p1, n1) != 1) ||
        (n2 > 0 && EVP_MAC_update(t->mac_ctx, p2, n2) != 1) ||
        EVP_MAC_final(t->mac_ctx, out, &outl, MAC_OUT) != 1 ||
        outl != MAC_OUT)
        return -1;
    return 0;
}

static uint64_t
throttle_u64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* --- Keys -------------------------------------------------------------- */

/*
 * The address key of sa.  Returns 0, or -1 for a family that is not
 * counted (AF_UNIX and the like).
 */
static int
throttle_addr_key(const struct throttle *t, const struct sockaddr *sa,
                  uint8_t key[KEY_LEN])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xff, 0xff};

    memset(key, 0, KEY_LEN);
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        key[0] = KEY_IPV4;
        memcpy(key + 1, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = (const uint8_t *)&in6->sin6_addr;
        unsigned full = t->cfg.ipv6_prefix / 8, bits = t->cfg.ipv6_prefix % 8;

        /* RFC 4291 §2.5.5.2: ::ffff:a.b.c.d is the IPv4 address a.b.c.d
         * as a dual-stack socket reports it; it must share the IPv4
         * counter, or the attacker gets two. */
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            key[0] = KEY_IPV4;
            memcpy(key + 1, a + 12, 4);
            return 0;
        }
        /* One site gets a /48 (RFC 6177 §3 recommends /48 to /56): count
         * the prefix, as Dovecot's auth-penalty does, or an attacker
         * gets 2^80 addresses each with a fresh counter. */
        key[0] = KEY_IPV6;
        memcpy(key + 1, a, full);
        if (bits != 0)
            key[1 + full] = (uint8_t)(a[full] & (0xff << (8 - bits)));
        return 0;
    }
    return -1;
}

static int
throttle_user_key(struct throttle *t, const char *user,
                  uint8_t key[KEY_LEN])
{
    key[0] = KEY_USER;
    return throttle_mac(t, MAC_USER, user, strlen(user), NULL, 0, key + 1);
}

/* The key of sa if it is throttled at all (not exempt, a known family). */
static int
throttle_addr_counted(const struct throttle *t, const struct sockaddr *sa,
                      uint8_t key[KEY_LEN])
{
    if (throttle_addr_key(t, sa, key) < 0)
        return 0;
    return !config_cidrs_match(&t->exempt, sa);
}

/* --- Rules --------------------------------------------------------------
 */

static uint64_t
throttle_elapsed(const struct entry *e, uint64_t now)
{
    /* A clock that went back (it should not: monotonic) counts as no
     * time passed, which keeps the stricter answer. */
    return now > e->last_failure ? now - e->last_failure : 0;
}

/* base * 2^n, at most cap. */
static uint64_t
throttle_backoff(uint64_t base, uint32_t n, uint64_t cap)
{
    uint64_t d = base;

    for (uint32_t i = 0; i < n && d < cap && d != 0; i++)
        d <<= 1; /* base and cap fit in 32 bits: no overflow */
    return d < cap ? d : cap;
}

static uint64_t
throttle_addr_delay(const struct throttle_config *c, uint32_t failures)
{
    if (failures == 0)
        return 0;
    return throttle_backoff(c->base_delay_ms, failures - 1, c->max_delay_ms);
}

static uint64_t
throttle_user_delay(const struct throttle_config *c, uint32_t failures)
{
    if (c->user_failures == 0 || failures < c->user_failures)
        return 0;
    return throttle_backoff(c->base_delay_ms, failures - c->user_failures,
                            c->user_max_delay_ms);
}

static int
throttle_locked(const struct throttle_config *c, const struct entry *e,
                uint64_t now)
{
    return c->lockout_failures > 0 && e->failures >= c->lockout_failures &&
           throttle_elapsed(e, now) < c->lockout_ms;
}

/* Whether e's failures are forgotten (a lock in force is never). */
static int
throttle_stale(const struct throttle_config *c, const struct table *tab,
               const struct entry *e, uint64_t now)
{
    if (tab->lockable && throttle_locked(c, e, now))
        return 0;
    return throttle_elapsed(e, now) >= c->forget_ms;
}

/* What remains at now of a delay that began at e's last failure. */
static uint64_t
throttle_remaining(const struct entry *e, uint64_t delay, uint64_t now)
{
    uint64_t el = throttle_elapsed(e, now);

    return delay > el ? delay - el : 0;
}

/* --- Tables -------------------------------------------------------------
 */

static struct link *
link_lru(struct entry *e)
{
    return &e->lru;
}

static struct link *
link_lvl(struct entry *e)
{
    return &e->lvl;
}

static void
list_unlink(struct table *tab, struct list *l, uint32_t i,
            struct link *(*lk)(struct entry *))
{
    struct link *x = lk(&tab->e[i]);

    if (x->prev != NIL)
        lk(&tab->e[x->prev])->next = x->next;
    else
        l->head = x->next;
    if (x->next != NIL)
        lk(&tab->e[x->next])->prev = x->prev;
    else
        l->tail = x->prev;
    x->prev = x->next = NIL;
}

static void
list_push(struct table *tab, struct list *l, uint32_t i,
          struct link *(*lk)(struct entry *))
{
    struct link *x = lk(&tab->e[i]);

    x->prev = NIL;
    x->next = l->head;
    if (l->head != NIL)
        lk(&tab->e[l->head])->prev = i;
    else
        l->tail = i;
    l->head = i;
}

static int
table_init(struct table *tab, size_t cap, int lockable)
{
    size_t nb = 1;

    while (nb < cap)
        nb <<= 1;
    *tab = (struct table){
        .cap = (uint32_t)cap,
        .free_head = NIL,
        .mask = (uint32_t)(nb - 1),
        .lockable = lockable,
        .lru = {NIL, NIL},
    };
    for (size_t l = 0; l < LEVELS; l++)
        tab->lvl[l] = (struct list){NIL, NIL};
    /* calloc: the pages of entries are touched only as they are used. */
    tab->e = calloc(cap, sizeof(*tab->e));
    tab->bucket = malloc(nb * sizeof(*tab->bucket));
    if (tab->e == NULL || tab->bucket == NULL)
        return PST_ENOMEM;
    memset(tab->bucket, 0xff, nb * sizeof(*tab->bucket)); /* NIL */
    return 0;
}

static void
table_clear(struct table *tab)
{
    free(tab->e);
    free(tab->bucket);
    tab->e = NULL;
    tab->bucket = NULL;
}

static int
table_bucket(struct throttle *t, const struct table *tab,
             const uint8_t key[KEY_LEN], uint32_t *b)
{
    uint8_t h[MAC_OUT];

    if (throttle_mac(t, MAC_BUCKET, key, KEY_LEN, NULL, 0, h) < 0)
        return -1;
    *b = (uint32_t)(throttle_u64(h) & tab->mask);
    return 0;
}

/* The entry of key in chain b, or NIL. */
static uint32_t
table_find(const struct table *tab, uint32_t b, const uint8_t key[KEY_LEN])
{
    for (uint32_t i = tab->bucket[b]; i != NIL; i = tab->e[i].hnext)
        if (memcmp(tab->e[i].key, key, KEY_LEN) == 0)
            return i;
    return NIL;
}

/* Put e[i] on the list of its failure count, as the most recent. */
static void
table_relevel(struct table *tab, uint32_t i)
{
    struct entry *e = &tab->e[i];
    uint8_t lv = (uint8_t)(e->failures < LEVELS - 1 ? e->failures
                                                    : LEVELS - 1);

    list_unlink(tab, &tab->lvl[e->level], i, link_lvl);
    e->level = lv;
    list_push(tab, &tab->lvl[lv], i, link_lvl);
}

/* A failure was recorded on e[i] at now. */
static void
table_touch(struct table *tab, uint32_t i, uint64_t now)
{
    tab->e[i].last_failure = now;
    list_unlink(tab, &tab->lru, i, link_lru);
    list_push(tab, &tab->lru, i, link_lru);
    table_relevel(tab, i);
}

/* Unlink e[i] from chain b and both orders; its slot becomes free. */
static void
table_remove(struct table *tab, uint32_t b, uint32_t i)
{
    uint32_t *p = &tab->bucket[b];

    while (*p != i)
        p = &tab->e[*p].hnext;
    *p = tab->e[i].hnext;
    list_unlink(tab, &tab->lru, i, link_lru);
    list_unlink(tab, &tab->lvl[tab->e[i].level], i, link_lvl);
    tab->e[i].hnext = tab->free_head;
    tab->free_head = i;
    tab->n--;
}

/* Which entry gives way to a new one (see the top of this file). */
static uint32_t
table_victim(const struct throttle *t, const struct table *tab,
             uint64_t now, int *forgotten)
{
    uint32_t old = tab->lru.tail;

    *forgotten = 0;
    if (old != NIL && throttle_stale(&t->cfg, tab, &tab->e[old], now)) {
        *forgotten = 1;
        return old;
    }
    for (size_t l = 0; l < LEVELS; l++)
        if (tab->lvl[l].tail != NIL)
            return tab->lvl[l].tail;
    return NIL; /* not reached: the table is full */
}

/*
 * The entry of key, created with no failures if missing (pushing out
 * another when the table is full).  Returns its index, or NIL when
 * hashing failed.
 */
static uint32_t
table_get(struct throttle *t, struct table *tab, const uint8_t key[KEY_LEN],
          uint64_t now)
{
    uint32_t b, i;
    struct entry *e;

    if (table_bucket(t, tab, key, &b) < 0)
        return NIL;
    i = table_find(tab, b, key);
    if (i != NIL)
        return i;
    if (tab->n == tab->cap) {
        int forgotten;
        uint32_t v = table_victim(t, tab, now, &forgotten), vb;

        if (v == NIL || table_bucket(t, tab, tab->e[v].key, &vb) < 0)
            return NIL;
        table_remove(tab, vb, v);
        if (forgotten)
            t->st.expired++;
        else
            tab->evictions++;
    }
    if (tab->free_head != NIL) {
        i = tab->free_head;
        tab->free_head = tab->e[i].hnext;
    } else {
        i = tab->fresh++;
    }
    e = &tab->e[i];
    *e = (struct entry){
        .level = 0,
        .hnext = tab->bucket[b],
        .lru = {NIL, NIL},
        .lvl = {NIL, NIL},
        .last_failure = now,
    };
    memcpy(e->key, key, KEY_LEN);
    tab->bucket[b] = i;
    tab->n++;
    list_push(tab, &tab->lru, i, link_lru);
    list_push(tab, &tab->lvl[0], i, link_lvl);
    return i;
}

/* The entry of key, or NIL (also when hashing failed: *err set). */
static uint32_t
table_lookup(struct throttle *t, const struct table *tab,
             const uint8_t key[KEY_LEN], int *err)
{
    uint32_t b;

    if (table_bucket(t, tab, key, &b) < 0) {
        *err = 1;
        return NIL;
    }
    return table_find(tab, b, key);
}

/* --- Interface ----------------------------------------------------------
 */

int
throttle_new(const struct throttle_config *cfg, struct throttle **out)
{
    struct throttle *t;
    int rc;

    *out = NULL;
    if (cfg == NULL || !throttle_config_valid(cfg))
        return PST_EINVAL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PST_ENOMEM;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return PST_ENOMEM;
    }
    t->cfg = *cfg;
    rc = throttle_copy_cidrs(cfg->exempt, &t->exempt);
    t->cfg.exempt = &t->exempt;
    if (rc == 0)
        rc = table_init(&t->addrs, cfg->max_addrs, 1);
    if (rc == 0)
        rc = table_init(&t->users, cfg->max_users, 0);
    if (rc == 0) {
        t->mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
        t->mac_ctx = t->mac != NULL ? EVP_MAC_CTX_new(t->mac) : NULL;
        if (t->mac_ctx == NULL ||
            RAND_bytes(t->mac_key, sizeof(t->mac_key)) != 1)
            rc = PST_ETEMP;
    }
    if (rc < 0) {
        throttle_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void
throttle_free(struct throttle *t)
{
    if (t == NULL)
        return;
    table_clear(&t->addrs);
    table_clear(&t->users);
    free(t->exempt.v);
    EVP_MAC_CTX_free(t->mac_ctx);
    EVP_MAC_free(t->mac);
    OPENSSL_cleanse(t->mac_key, sizeof(t->mac_key));
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static int
throttle_reconfigure_nolock(struct throttle *t,
                            const struct throttle_config *cfg)
{
    struct config_cidrs ex;

    if (t == NULL || cfg == NULL || !throttle_config_valid(cfg) ||
        cfg->max_addrs != t->addrs.cap || cfg->max_users != t->users.cap)
        return PST_EINVAL;
    if (throttle_copy_cidrs(cfg->exempt, &ex) < 0)
        return PST_ENOMEM;
    free(t->exempt.v);
    t->exempt = ex;
    t->cfg = *cfg;
    t->cfg.exempt = &t->exempt;
    return 0;
}

static enum throttle_verdict
throttle_check_nolock(struct throttle *t, const struct sockaddr *sa,
                      const char *user, uint64_t now, uint64_t *delay_ms)
{
    uint8_t key[KEY_LEN];
    uint64_t d = 0;
    uint32_t i;
    int err = 0;

    *delay_ms = 0;
    if (t == NULL || !throttle_addr_counted(t, sa, key))
        return THROTTLE_OK;
    i = table_lookup(t, &t->addrs, key, &err);
    if (i != NIL) {
        const struct entry *a = &t->addrs.e[i];

        if (throttle_locked(&t->cfg, a, now)) {
            *delay_ms = t->cfg.lockout_ms - throttle_elapsed(a, now);
            return THROTTLE_REFUSE;
        }
        if (!throttle_stale(&t->cfg, &t->addrs, a, now))
            d = throttle_remaining(
                a, throttle_addr_delay(&t->cfg, a->failures), now);
    }
    if (user != NULL && throttle_user_key(t, user, key) == 0) {
        i = table_lookup(t, &t->users, key, &err);
        if (i != NIL) {
            const struct entry *u = &t->users.e[i];
            uint64_t du = 0;

            if (!throttle_stale(&t->cfg, &t->users, u, now))
                du = throttle_remaining(
                    u, throttle_user_delay(&t->cfg, u->failures), now);
            if (du > d)
                d = du;
        }
    } else if (user != NULL) {
        err = 1;
    }
    if (err)
        t->st.errors++;
    *delay_ms = d;
    return THROTTLE_OK;
}

static uint64_t
throttle_tag_nolock(struct throttle *t, const char *user,
                    const uint8_t *pw, size_t pw_len)
{
    uint8_t h[MAC_OUT];
    uint64_t tag;

    if (t == NULL)
        return 0;
    if (user == NULL)
        user = "";
    /* The NUL ends the name: "ab"+"c" and "a"+"bc" differ. */
    if (throttle_mac(t, MAC_TAG, user, strlen(user) + 1, pw, pw_len,
                     h) < 0) {
        t->st.errors++;
        return 0;
    }
    tag = throttle_u64(h);
    OPENSSL_cleanse(h, sizeof(h));
    return tag != 0 ? tag : 1; /* 0 means "no tag" */
}

/* Forget the counter of e if its quiet time has passed. */
static void
throttle_refresh(const struct throttle *t, const struct table *tab,
                 struct entry *e, uint64_t now)
{
    if (e->failures > 0 && throttle_stale(&t->cfg, tab, e, now)) {
        e->failures = 0;
        e->last_tag = 0;
    }
}

static enum throttle_verdict
throttle_auth_failed_nolock(struct throttle *t, const struct sockaddr *sa,
                            const char *user, uint64_t tag, uint64_t now,
                            uint64_t *delay_ms)
{
    uint8_t key[KEY_LEN];
    struct entry *a, *u = NULL;
    uint32_t i;
    uint64_t d, du = 0;
    int repeat, was_locked;

    *delay_ms = 0;
    if (t == NULL || !throttle_addr_counted(t, sa, key))
        return THROTTLE_OK;
    i = table_get(t, &t->addrs, key, now);
    if (i == NIL) {
        t->st.errors++;
        return THROTTLE_OK;
    }
    a = &t->addrs.e[i];
    throttle_refresh(t, &t->addrs, a, now);
    was_locked = throttle_locked(&t->cfg, a, now);
    /* Dovecot auth-penalty: the same user and password again from the
     * same place teaches the attacker nothing; only new guesses count. */
    repeat = tag != 0 && a->failures > 0 && tag == a->last_tag;
    if (repeat)
        t->st.repeats++;
    else {
        t->st.failures++;
        if (a->failures < UINT32_MAX)
            a->failures++;
    }
    a->last_tag = tag;
    table_touch(&t->addrs, i, now);
    d = throttle_addr_delay(&t->cfg, a->failures);

    if (user != NULL) {
        if (throttle_user_key(t, user, key) < 0 ||
            (i = table_get(t, &t->users, key, now)) == NIL)
            t->st.errors++;
        else
            u = &t->users.e[i];
    }
    if (u != NULL) {
        throttle_refresh(t, &t->users, u, now);
        if (!repeat && u->failures < UINT32_MAX)
            u->failures++;
        table_touch(&t->users, i, now);
        du = throttle_user_delay(&t->cfg, u->failures);
    }
    *delay_ms = d > du ? d : du;
    if (throttle_locked(&t->cfg, a, now)) {
        if (!was_locked)
            t->st.lockouts++;
        return THROTTLE_REFUSE;
    }
    return THROTTLE_OK;
}

static void
throttle_auth_ok_nolock(struct throttle *t, const struct sockaddr *sa,
                        uint64_t now)
{
    uint8_t key[KEY_LEN];
    uint32_t b, i;

    if (t == NULL || !throttle_addr_counted(t, sa, key))
        return;
    if (table_bucket(t, &t->addrs, key, &b) < 0) {
        t->st.errors++;
        return;
    }
    i = table_find(&t->addrs, b, key);
    /* A lock in force stays: the success may be a parallel connection
     * of the attacker's with an account of his own. */
    if (i != NIL && !throttle_locked(&t->cfg, &t->addrs.e[i], now))
        table_remove(&t->addrs, b, i);
}

static void
throttle_get_stats_nolock(const struct throttle *t,
                          struct throttle_stats *out)
{
    if (t == NULL) {
        *out = (struct throttle_stats){0};
        return;
    }
    *out = t->st;
    out->addrs = t->addrs.n;
    out->users = t->users.n;
    out->addr_evictions = t->addrs.evictions;
    out->user_evictions = t->users.evictions;
}

/* --- The public calls: each under t's mutex ---------------------------- */

int
throttle_reconfigure(struct throttle *t, const struct throttle_config *cfg)
{
    int rc;

    if (t == NULL)
        return PST_EINVAL;
    pthread_mutex_lock(&t->mu);
    rc = throttle_reconfigure_nolock(t, cfg);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

enum throttle_verdict
throttle_check(struct throttle *t, const struct sockaddr *sa,
               const char *user, uint64_t now, uint64_t *delay_ms)
{
    enum throttle_verdict v;

    if (t == NULL)
        return throttle_check_nolock(t, sa, user, now, delay_ms);
    pthread_mutex_lock(&t->mu);
    v = throttle_check_nolock(t, sa, user, now, delay_ms);
    pthread_mutex_unlock(&t->mu);
    return v;
}

uint64_t
throttle_tag(struct throttle *t, const char *user, const uint8_t *pw,
             size_t pw_len)
{
    uint64_t tag;

    if (t == NULL)
        return throttle_tag_nolock(t, user, pw, pw_len);
    pthread_mutex_lock(&t->mu);
    tag = throttle_tag_nolock(t, user, pw, pw_len);
    pthread_mutex_unlock(&t->mu);
    return tag;
}

enum throttle_verdict
throttle_auth_failed(struct throttle *t, const struct sockaddr *sa,
                     const char *user, uint64_t tag, uint64_t now,
                     uint64_t *delay_ms)
{
    enum throttle_verdict v;

    if (t == NULL)
        return throttle_auth_failed_nolock(t, sa, user, tag, now,
                                           delay_ms);
    pthread_mutex_lock(&t->mu);
    v = throttle_auth_failed_nolock(t, sa, user, tag, now, delay_ms);
    pthread_mutex_unlock(&t->mu);
    return v;
}

void
throttle_auth_ok(struct throttle *t, const struct sockaddr *sa,
                 uint64_t now)
{
    if (t == NULL) {
        throttle_auth_ok_nolock(t, sa, now);
        return;
    }
    pthread_mutex_lock(&t->mu);
    throttle_auth_ok_nolock(t, sa, now);
    pthread_mutex_unlock(&t->mu);
}

void
throttle_get_stats(const struct throttle *t, struct throttle_stats *out)
{
    struct throttle *mt = (struct throttle *)t; /* the mutex only */

    if (t == NULL) {
        throttle_get_stats_nolock(t, out);
        return;
    }
    pthread_mutex_lock(&mt->mu);
    throttle_get_stats_nolock(t, out);
    pthread_mutex_unlock(&mt->mu);
}
