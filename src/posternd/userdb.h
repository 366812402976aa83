/*
 * posternd - the user store as the server sees it: one snapshot per
 * configuration, reference counted, so that a reload can swap in the
 * next while sessions still hold the old one.  Each backend fills one
 * table (userdb_backend.h; OpenSMTPD's struct table_backend):
 * passwd-file:PATH (userdb_file.c, read whole at load) and pgsql:CONNINFO
 * (userdb_pgsql.c, a query per lookup).  Both give the same user record.
 *
 * Lookups are asynchronous for both (DESIGN.md: "A SASL exchange pauses
 * at 'need credentials for user X' and resumes when they arrive"): the
 * callback runs from the event loop, never inside userdb_lookup_start().
 */
#ifndef POSTERND_USERDB_H
#define POSTERND_USERDB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include <postern/cred.h>

#include "config.h"

struct userdb;     /* one loaded snapshot, reference counted */
struct userdb_req; /* one lookup, and then what it found */

/* One text field of a user record: v[0..len), not NUL-terminated; v is
 * NULL when the store has none for the user. */
struct userdb_value {
    const char *v;
    size_t len;
};

/*
 * What a lookup finds, whatever the store: everything is borrowed until
 * userdb_lookup_free().  The extra fields are a passwd-file's "key=value"
 * extra fields and a pgsql query's columns of the same names (the
 * second column is allow_from whatever its name); a new one is a member
 * here and a row of userdb_fields[] (userdb.c), for both stores at once.
 *
 * Values: a field the user does not have is NULL.  For allow_from and
 * relay an empty value is the same as none (pgsql: NULL or ''); Dovecot's
 * account flags count by their presence, as Dovecot reads them (a bare
 * "nologin" in a passwd-file, any value but NULL in a pgsql column, even
 * '' or 'f'), and so does allow_nets (present but empty: no network).
 */
struct userdb_user {
    const struct pst_cred *cred; /* the user's verifiers */
    /* Extra fields: */
    struct userdb_value allow_from; /* extra senders: addresses or
                                       @domains separated by ',' */
    struct userdb_value relay;      /* relay=NAME: the [relay NAME] for
                                       this user's mail to other domains
                                       (DESIGN.md "Routing") */
    /* Dovecot's passdb extra fields that refuse a login (see
     * userdb_user_check_login()): */
    struct userdb_value nologin;    /* set: the user may not log in */
    struct userdb_value reason;     /* why, with nologin (log only) */
    struct userdb_value noauthenticate; /* set: this store does not
                                           authenticate the user */
    struct userdb_value allow_nets; /* networks the user may log in
                                       from, separated by ',' or ' ' */
    struct userdb_value cert;       /* "SHA256:<hex>": the one client
                                       certificate EXTERNAL accepts for
                                       the user (userdb_cert_parse()) */
};

#define USERDB_CERT_LEN 32 /* a SHA-256 fingerprint, octets */

/*
 * The end of a lookup.  rc: 0 (found: u is set), PST_ENOENT (no such
 * user, or one whose stored credentials are unusable: u is NULL),
 * PST_ETEMP (the store is unavailable: 454 4.7.0, RFC 4954 §6; u is
 * NULL).  The request stays the caller's: free it with
 * userdb_lookup_free(), which may be called from inside the callback.
 */
typedef void userdb_lookup_cb(void *ctx, int rc, const struct userdb_user *u);

/*
 * Load the store named by cfg: the passwd file is read now; for pgsql
 * the connection string is checked but nothing is connected (the first
 * lookup connects, and an unreachable database makes lookups fail with
 * PST_ETEMP, not the start-up).
 * *out ([out] owned, one reference) is released with userdb_unref().
 * Returns: 0, or -1 with a message naming the file (and line) in err.
 */
int userdb_open(const struct config *cfg, struct userdb **out, char *err,
                size_t err_size);

/* Take and release references; the last one frees the store (pgsql:
 * once its connections are closed).  NULL is a no-op.  The count is
 * atomic: a passwd-file store (read-only once loaded) is shared by the
 * loops of all workers.  A pgsql store that has served lookups must be
 * released on its loop's thread, so posternd opens one per worker. */
struct userdb *userdb_ref(struct userdb *u);
void userdb_unref(struct userdb *u);

/*
 * Look up name ([in], copied; exact match) on loop.  cb runs once with
 * ctx, from loop, unless userdb_lookup_free(*req) comes first.  The
 * request holds a reference to u.  A pgsql store serves one loop (the
 * first lookup's).
 * *req ([out] owned) is freed with userdb_lookup_free().
 * Returns: 0, PST_ENOMEM, PST_EINVAL (another loop); on error cb never
 * runs and *req is NULL.
 */
int userdb_lookup_start(struct userdb *u, uv_loop_t *loop, const char *name,
                        userdb_lookup_cb *cb, void *ctx,
                        struct userdb_req **req);

/*
 * Cancel a lookup still in flight (its callback will not run) or, after
 * the callback, release what it found (the credentials and allow_from it
 * lent go).  NULL is a no-op.
 */
void userdb_lookup_free(struct userdb_req *req);

/*
 * Check the store for posternd -t.  msg ([out], n bytes) describes it:
 * "3 users", or for pgsql whether the database answers and takes the
 * query (userdb_pgsql_check(), which blocks).
 * Returns: 0, PST_ETEMP (pgsql: cannot connect; posternd starts all the
 * same), PST_ESYNTAX (pgsql: the server refuses the query).
 */
int userdb_check(struct userdb *u, char *msg, size_t n);

/*
 * Number of users (for the log) in *n.
 * Returns: 0, PST_ENOTSUP (the store cannot tell without a query: pgsql).
 */
int userdb_count(const struct userdb *u, size_t *n);

/* The backend's name, as in "userdb = NAME:...": "passwd-file", "pgsql". */
const char *userdb_kind(const struct userdb *u);

/*
 * Whether each event loop needs a store of its own (1: pgsql, whose
 * connections belong to one loop; posternd opens one per worker) or may
 * share this one (0: a passwd file, read-only once loaded).
 */
int userdb_per_loop(const struct userdb *u);

/*
 * Parse a cert= value v[0..len) ([in]): "SHA256:" (any case) and the 64
 * hex digits of a certificate's SHA-256 fingerprint, in any case, the
 * pairs optionally separated by ':' (as "openssl x509 -fingerprint
 * -sha256" prints them).  *out ([out]) gets the 32 octets.
 * Returns: 0, PST_ESYNTAX.
 */
int userdb_cert_parse(const char *v, size_t len,
                      uint8_t out[USERDB_CERT_LEN]);

/*
 * Whether the user's cert= field (cert, [in]) names the certificate whose
 * fingerprint is fp_hex ([in], 64 hex digits): 1 yes, 0 no (or a field
 * that does not parse).  A user without the field has no pin: -1.
 */
int userdb_cert_matches(const struct userdb_value *cert, const char *fp_hex);

/*
 * The user whose cert= field holds fingerprint fp_hex ([in], 64 hex
 * digits), found at once in the loaded user file (cert_user =
 * fingerprint): its name goes into name ([out], n bytes).
 * Returns: 0, PST_ENOENT (nobody), PST_ELIMIT (n too small), PST_ENOTSUP
 * (a store that cannot tell: pgsql), PST_EINVAL (fp_hex malformed).
 */
int userdb_find_cert(struct userdb *u, const char *fp_hex, char *name,
                     size_t n);

/* Whether addr is in the comma-separated allow_from list[0..len) (ASCII
 * case-insensitive; "@domain" allows the whole domain). */
int userdb_allow_from(const char *list, size_t len, const char *addr);

/*
 * Whether the client address peer ([in]: a struct sockaddr_in or
 * sockaddr_in6) is in the allow_nets list[0..len) ([in]): networks
 * ("192.0.2.0/24", "2001:db8::/32", "[2001:db8::1]") or addresses,
 * separated by ',' or ' ', as Dovecot's auth_request_validate_networks()
 * and net_parse_range() read them: host bits past the prefix are
 * ignored, an IPv4-mapped peer (::ffff:192.0.2.1) is matched as the IPv4
 * address it carries, "local" (a connection without an IP address)
 * matches no TCP client, and an entry that does not parse matches
 * nothing.  *bad ([out], may be NULL) gets the number of such entries.
 * Returns: 1 (in a network), 0 (not, or list NULL or empty).
 */
int userdb_allow_nets(const char *list, size_t len,
                      const struct sockaddr *peer, unsigned *bad);

/* Room for userdb_user_check_login()'s reason, terminator included. */
#define USERDB_WHY_MAX 256

/*
 * May the user of record u ([in]) log in from peer ([in], as
 * userdb_allow_nets())?  Dovecot's passdb extra fields, with Dovecot's
 * meaning (doc.dovecot.org, "Password database extra fields";
 * src/auth/auth-request.c):
 *   allow_nets=   the client address must be in one of the networks;
 *                 Dovecot fails the login "the same way as if a wrong
 *                 password was given";
 *   noauthenticate  the store only supplies fields, it authenticates
 *                 nobody: Dovecot moves on to its next passdb, and when
 *                 the last one says so fails the login as an internal
 *                 error ("Last passdb had noauthenticate field, cannot
 *                 authenticate user"); posternd has one store, and
 *                 refuses such a login as below rather than with 454, so
 *                 that a device does not retry it for ever;
 *   nologin       the user may not log in even with the right password;
 *                 reason= says why (Dovecot shows it to the client;
 *                 posternd only logs it).
 * A refused login gets the reply of a wrong password (535 5.7.8):
 * nothing tells the client that the account exists.  why ([out], n bytes,
 * may be NULL) says why, for the log only: a printable sentence holding
 * the client address and reason= (log_event() escapes it).
 * Returns: 0 (may log in), PST_EAUTH (refused).
 */
int userdb_user_check_login(const struct userdb_user *u,
                            const struct sockaddr *peer, char *why,
                            size_t n);

/*
 * The record a finished lookup found ([out] borrowed from req, until
 * userdb_lookup_free()), or NULL: req is NULL, still in flight, or
 * answered without a user (PST_ENOENT, PST_ETEMP).
 */
const struct userdb_user *userdb_lookup_user(const struct userdb_req *req);

#endif
