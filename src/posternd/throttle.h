/*
 * posternd - brute-force throttling of AUTH (issue 6, "Abuse"), after
 * Dovecot's auth-penalty and Postfix's anvil.
 *
 * The module counts failed authentications per client address and per
 * user name, and answers three questions for the driver:
 *
 *   throttle_check()        before a connection or an AUTH attempt is
 *                           served: is the address locked out (421 4.7.0
 *                           and close), and how long must the attempt wait
 *                           before its credentials are checked?
 *   throttle_auth_failed()  an attempt failed: how long to hold the 535,
 *                           and did this failure lock the address out?
 *   throttle_auth_ok()      an attempt succeeded: forget that address's
 *                           failures (and only that address's).
 *
 * In posternd: throttle_check() when a connection is accepted and on
 * every AUTH_LOOKUP event (each mechanism asks for credentials exactly
 * once per attempt, before any check, so holding that answer delays the
 * attempt whatever the mechanism); throttle_tag() on AUTH_VERIFY (PLAIN,
 * LOGIN); throttle_auth_failed() or throttle_auth_ok() on AUTH_RESULT,
 * holding the queued 535 (and all further input) for the delay.
 *
 * It sees only "a failure for (address, user name)": an unknown user and a
 * wrong password are the same call, so they get the same delays and
 * verdicts (DESIGN.md: the same reply and the same work).
 *
 * The rules (numbers are the defaults of throttle_config_init()):
 * - Per address (IPv4 /32; IPv6 grouped by ipv6_prefix, /48 as Dovecot
 *   does; an IPv4-mapped IPv6 address counts as the IPv4 address): the
 *   n-th failure is held base_delay_ms * 2^(n-1), at most max_delay_ms
 *   (1, 2, 4, 8, 15, 15 ... s).  The lockout_failures-th failure (10)
 *   locks the address for lockout_ms (5 min): throttle_check() refuses
 *   it.  After the lock one attempt is let through; if it fails too, the
 *   address is locked again.  A success from the address forgets its
 *   failures (never those of another address) but does not lift a lock
 *   in force.
 * - Per user name, failures from every address together: from the
 *   user_failures-th failure on (10), each is held base_delay_ms *
 *   2^(n-user_failures), at most user_max_delay_ms (15 s), and every
 *   attempt on that name waits until that delay has passed.  There is no
 *   per-user lockout, so an attacker can slow a real user down by at most
 *   user_max_delay_ms but never lock him out.
 * - Counters are forgotten after forget_ms (10 min) without a failure.
 * - Addresses in the exempt list are never counted, delayed or refused.
 * - A failure whose tag (throttle_tag(): a keyed hash of user name and
 *   password) equals the previous failure's from the same address does
 *   not raise the counters (Dovecot's user+password checksum): a device
 *   retrying a stale password does not lock out its whole network.
 *
 * Memory is bounded: at most max_addrs address entries and max_users
 * user entries (64 bytes each), allocated once by throttle_new().  User
 * names are not stored, only a keyed 128-bit hash of them.  When a table
 * is full, a new entry takes the place of an entry whose failures are
 * already forgotten if there is one, else of the entry with the fewest
 * failures (the least recently failed among those): an attacker rotating
 * addresses or names only ever pushes out entries with as few failures as
 * his own, never a persistent attacker's high counter or a lock.  Hash
 * buckets are chosen with SipHash under a random key, so crafted keys
 * cannot pile into one bucket.  Every call is O(1).
 *
 * Time is passed in: now is a monotonic clock in milliseconds (posternd
 * uses uv_now()); the module reads no clock, so tests are deterministic.
 *
 * Thread-safe: every call takes t's mutex, so the event loops of all of
 * posternd's workers share one throttle.  Their uv_now() clocks are the
 * same monotonic clock read at slightly different moments; a "now" a
 * little older than a stored time counts as no time elapsed.
 */
#ifndef POSTERND_THROTTLE_H
#define POSTERND_THROTTLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

#define THROTTLE_DEFAULT_ENTRIES 65536      /* per table */
#define THROTTLE_MAX_ENTRIES     (1u << 24) /* per table, at most */

struct throttle_config {
    /* Memory: */
    size_t   max_addrs;          /* address entries, 1..THROTTLE_MAX_ENTRIES
                                    (65536) */
    size_t   max_users;          /* user-name entries, likewise (65536) */
    /* Per address: */
    uint32_t base_delay_ms;      /* hold of the first failure (1000);
                                    doubles with each one */
    uint32_t max_delay_ms;       /* at most (15000); >= base_delay_ms */
    unsigned lockout_failures;   /* failures that lock the address (10);
                                    0: never locked */
    uint32_t lockout_ms;         /* how long a lock lasts (300000) */
    /* Per user name: */
    unsigned user_failures;      /* failures from all addresses before
                                    per-user delays start (10); 0: none */
    uint32_t user_max_delay_ms;  /* per-user delay at most (15000) */
    /* Both: */
    uint32_t forget_ms;          /* quiet time after which failures are
                                    forgotten (600000) */
    unsigned ipv6_prefix;        /* IPv6 addresses count per prefix of
                                    this length, 1..128 (48) */
    const struct config_cidrs *exempt; /* [in] never throttled; copied;
                                          NULL: none */
};

struct throttle; /* opaque */

enum throttle_verdict {
    THROTTLE_OK = 0,     /* go on, after *delay_ms */
    THROTTLE_REFUSE,     /* the address is locked out: reply 421 4.7.0 and
                            close the connection */
};

struct throttle_stats {
    size_t   addrs;              /* address entries in use */
    size_t   users;              /* user entries in use */
    uint64_t addr_evictions;     /* live address entries pushed out */
    uint64_t user_evictions;     /* live user entries pushed out */
    uint64_t expired;            /* forgotten entries reused (both) */
    uint64_t failures;           /* failures counted */
    uint64_t repeats;            /* failures not counted: same tag */
    uint64_t lockouts;           /* times an address became locked */
    uint64_t errors;             /* calls not served: hashing failed */
};

/* Fill cfg with the defaults above (no exempt list). */
void throttle_config_init(struct throttle_config *cfg);

/*
 * Create the throttle and allocate both tables.  cfg ([in] borrowed for
 * the call) is copied, its exempt list too.  *out ([out] owned) is freed
 * with throttle_free().
 * Returns: 0, PST_EINVAL (a field out of range), PST_ENOMEM, PST_ETEMP
 * (no random key or no SipHash in libcrypto).
 */
int throttle_new(const struct throttle_config *cfg, struct throttle **out);

/* Free t (wiping its hash key); NULL is a no-op. */
void throttle_free(struct throttle *t);

/*
 * Take new settings (on reload) and keep the counters.  cfg ([in]
 * borrowed for the call) is copied like throttle_new()'s; max_addrs and
 * max_users must be those t was created with.  On error t is unchanged.
 * Returns: 0, PST_EINVAL (a field out of range or a table size
 * changed), PST_ENOMEM.
 */
int throttle_reconfigure(struct throttle *t,
                         const struct throttle_config *cfg);

/*
 * May the client at sa ([in] borrowed: a struct sockaddr_in or
 * sockaddr_in6) go on?  Call it when a connection is accepted (user NULL)
 * and when an AUTH attempt needs its credentials checked (user: [in]
 * borrowed, the authentication identity as the event gives it; NULL if
 * none).  With THROTTLE_OK, *delay_ms gets how long to wait before
 * checking the credentials: what remains of the delay of the address's
 * last failure and of the user name's (0 when none); with
 * THROTTLE_REFUSE, how long the lock still lasts.  Nothing is recorded.
 * t NULL, an exempt address and an address of another family: always
 * THROTTLE_OK with 0.
 * Returns: THROTTLE_OK, THROTTLE_REFUSE.
 */
enum throttle_verdict throttle_check(struct throttle *t,
                                     const struct sockaddr *sa,
                                     const char *user, uint64_t now,
                                     uint64_t *delay_ms);

/*
 * A tag for a failed attempt of user ([in] borrowed; NULL as "") with
 * password pw ([in] borrowed, pw_len bytes, may hold NULs): a SipHash of
 * both under t's random key, never 0, for throttle_auth_failed().  The
 * password is not kept.  Only mechanisms that reveal the password (PLAIN,
 * LOGIN: the AUTH_VERIFY event) can have a tag.
 * Returns: the tag; 0 if t is NULL or hashing failed (no tag).
 */
uint64_t throttle_tag(struct throttle *t, const char *user,
                      const uint8_t *pw, size_t pw_len);

/*
 * Record a failed attempt from sa (as in throttle_check()) for user
 * ([in] borrowed; NULL when the client gave no name: the address alone is
 * counted).  tag is throttle_tag() of the attempt, or 0 when the
 * mechanism gives none; a tag equal to that of the address's previous
 * failure does not raise the counters.  *delay_ms gets how long to hold
 * the 535 reply (and to act on nothing else from this client): the
 * larger of the address's delay and the user name's.
 * t NULL, an exempt address and an address of another family: nothing is
 * recorded, THROTTLE_OK with 0.
 * Returns: THROTTLE_OK; THROTTLE_REFUSE when the address is locked out
 * after this failure (send the 535 after *delay_ms, then 421 4.7.0, then
 * close).
 */
enum throttle_verdict throttle_auth_failed(struct throttle *t,
                                           const struct sockaddr *sa,
                                           const char *user, uint64_t tag,
                                           uint64_t now,
                                           uint64_t *delay_ms);

/*
 * A successful authentication from sa: forget that address's failures
 * unless it is locked out.  Other addresses and the user name's counter
 * are untouched (a success from A says nothing about B, and the real
 * user logging in must not clear a distributed attack on his name).
 * t NULL is a no-op.
 */
void throttle_auth_ok(struct throttle *t, const struct sockaddr *sa,
                      uint64_t now);

/* Counters for the log and the tests; t NULL gives zeros. */
void throttle_get_stats(const struct throttle *t,
                        struct throttle_stats *out);

#endif
