/*
 * The user store as the server sees it (userdb.h): one snapshot per
 * configuration over one backend (userdb_backend.h), and lookup requests
 * that own what they found until the session lets go of it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "userdb.h"
#include "userdb_backend.h"

struct userdb {
    atomic_uint refs;          /* shared by the workers' loops */
    const struct userdb_backend *be;
    void *store;               /* the backend's */
};

/* The backend of each "userdb =" kind. */
static const struct userdb_backend *const userdb_backends[] = {
    [CONFIG_USERDB_PASSWD_FILE] = &userdb_file_backend,
    [CONFIG_USERDB_PGSQL] = &userdb_pgsql_backend,
};

/*
 * The extra fields of the record, by name: a passwd-file's "key=value"
 * and a pgsql column.  A new field is a row here and a member of struct
 * userdb_user; both stores fill it.
 */
#define F(name, flags) {#name, offsetof(struct userdb_user, name), flags}

static const struct {
    const char *name;
    size_t offset;             /* of its struct userdb_value */
    unsigned flags;            /* USERDB_FIELD_* */
} userdb_fields[USERDB_FIELDS] = {
    F(allow_from, 0),
    F(relay, 0),
    /* Dovecot's: "nologin" and "noauthenticate" are set by being there
     * (auth_fields_exists()), whatever their value; "allow_nets=" with
     * no network lets nobody in (auth_request_validate_networks()). */
    F(nologin, USERDB_FIELD_PRESENCE),
    F(reason, 0),
    F(noauthenticate, USERDB_FIELD_PRESENCE),
    F(allow_nets, USERDB_FIELD_PRESENCE),
    /* The client certificate EXTERNAL accepts for the user. */
    F(cert, 0),
};

#undef F

int
userdb_open(const struct config *cfg, struct userdb **out, char *err,
            size_t n)
{
    struct userdb *u;

    *out = NULL;
    if ((size_t)cfg->userdb.kind >=
            sizeof(userdb_backends) / sizeof(userdb_backends[0]) ||
        userdb_backends[cfg->userdb.kind] == NULL) {
        snprintf(err, n, "%s: userdb: unknown kind", cfg->file);
        return -1;
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    u->be = userdb_backends[cfg->userdb.kind];
    if (u->be->open(cfg, &u->store, err, n) < 0) {
        free(u);
        return -1;
    }
    atomic_init(&u->refs, 1);
    *out = u;
    return 0;
}

struct userdb *
userdb_ref(struct userdb *u)
{
    if (u != NULL)
        atomic_fetch_add(&u->refs, 1);
    return u;
}

void
userdb_unref(struct userdb *u)
{
    if (u == NULL || atomic_fetch_sub(&u->refs, 1) != 1)
        return;
    u->be->free(u->store);
    free(u);
}

const char *
userdb_kind(const struct userdb *u)
{
    return u->be->name;
}

int
userdb_per_loop(const struct userdb *u)
{
    return u->be->per_loop != 0;
}

/* --- The record, for the backends ---------------------------------------- */

int
userdb_field_find(const char *name, size_t len)
{
    for (size_t i = 0; i < USERDB_FIELDS; i++) {
        if (strlen(userdb_fields[i].name) == len &&
            memcmp(userdb_fields[i].name, name, len) == 0)
            return (int)i;
    }
    return -1;
}

const char *
userdb_field_name(size_t i)
{
    return i < USERDB_FIELDS ? userdb_fields[i].name : NULL;
}

unsigned
userdb_field_flags(size_t i)
{
    return i < USERDB_FIELDS ? userdb_fields[i].flags : 0;
}

void
userdb_req_set_cred(struct userdb_req *req, const struct pst_cred *cred,
                    struct pst_cred *owned)
{
    pst_cred_free(req->cred);
    req->cred = owned;
    req->user.cred = owned != NULL ? owned : cred;
}

int
userdb_req_set_field(struct userdb_req *req, size_t i, const char *value,
                     size_t len, int copy)
{
    struct userdb_value *f;

    if (i >= USERDB_FIELDS)
        return 0;
    f = (struct userdb_value *)((char *)&req->user + userdb_fields[i].offset);
    if (f->v != NULL)
        return 0;
    if (copy) {
        req->owned[i] = malloc(len + 1);
        if (req->owned[i] == NULL)
            return PST_ENOMEM;
        memcpy(req->owned[i], value, len);
        req->owned[i][len] = '\0';
        value = req->owned[i];
    }
    f->v = value;
    f->len = len;
    return 0;
}

void
userdb_req_answer(struct userdb_req *req, int rc)
{
    req->pending = NULL;
    req->rc = rc;
    req->answered = 1;
    req->cb(req->ctx, rc, rc == 0 ? &req->user : NULL);
}

static void
userdb_on_defer(uv_timer_t *t)
{
    struct userdb_req *req = t->data;

    userdb_req_answer(req, req->rc);
}

int
userdb_req_answer_later(struct userdb_req *req, uv_loop_t *loop, int rc)
{
    req->rc = rc;
    if (uv_timer_init(loop, &req->defer) < 0)
        return PST_ENOMEM;
    req->defer.data = req;
    req->defer_open = 1;
    if (uv_timer_start(&req->defer, userdb_on_defer, 0, 0) < 0)
        return PST_ENOMEM;
    return 0;
}

/* --- Lookups ------------------------------------------------------------- */

int
userdb_lookup_start(struct userdb *u, uv_loop_t *loop, const char *name,
                    userdb_lookup_cb *cb, void *ctx, struct userdb_req **out)
{
    struct userdb_req *req;
    int rc;

    *out = NULL;
    req = calloc(1, sizeof(*req));
    if (req == NULL)
        return PST_ENOMEM;
    req->u = userdb_ref(u);
    req->cb = cb;
    req->ctx = ctx;
    rc = u->be->lookup(u->store, loop, name, req);
    if (rc < 0) {
        userdb_lookup_free(req);
        return rc;
    }
    *out = req;
    return 0;
}

static void
userdb_req_closed(uv_handle_t *h)
{
    struct userdb_req *req = h->data;

    userdb_unref(req->u);
    free(req);
}

void
userdb_lookup_free(struct userdb_req *req)
{
    if (req == NULL)
        return;
    if (req->pending != NULL)
        req->u->be->cancel(req);
    req->pending = NULL;
    pst_cred_free(req->cred);
    req->cred = NULL;
    for (size_t i = 0; i < USERDB_FIELDS; i++) {
        free(req->owned[i]);
        req->owned[i] = NULL;
    }
    if (req->defer_open) {
        /* The snapshot goes when the timer is closed. */
        uv_close((uv_handle_t *)&req->defer, userdb_req_closed);
        return;
    }
    userdb_unref(req->u);
    free(req);
}

int
userdb_check(struct userdb *u, char *msg, size_t n)
{
    return u->be->check(u->store, msg, n);
}

int
userdb_count(const struct userdb *u, size_t *n)
{
    *n = 0;
    if (u->be->count == NULL)
        return PST_ENOTSUP;
    return u->be->count(u->store, n);
}

int
userdb_allow_from(const char *list, size_t len, const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t alen = strlen(addr), i = 0;

    if (list == NULL)
        return 0;
    while (i < len) {
        const char *item = list + i, *comma = memchr(item, ',', len - i);
        size_t n = comma != NULL ? (size_t)(comma - item) : len - i;

        i += n + 1;
        /* "a@x.test, @y.test" as people write lists in a table column. */
        while (n > 0 && (item[0] == ' ' || item[0] == '\t')) {
            item++;
            n--;
        }
        while (n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t'))
            n--;
        if (n > 0 && n == alen && strncasecmp(item, addr, n) == 0)
            return 1;
        /* "@example.test" allows any address of that domain. */
        if (n > 1 && item[0] == '@' && at != NULL &&
            strlen(at) == n && strncasecmp(item, at, n) == 0)
            return 1;
    }
    return 0;
}

const struct userdb_user *
userdb_lookup_user(const struct userdb_req *req)
{
    if (req == NULL || !req->answered || req->rc != 0)
        return NULL;
    return &req->user;
}

/* --- Dovecot's account flags --------------------------------------------- */

/* An address of family (AF_INET, AF_INET6) in addr, as bytes. */
struct userdb_ip {
    int family;
    uint8_t addr[16];
};

/* The client's address; an IPv4-mapped IPv6 one as the IPv4 address it
 * carries (Dovecot's net_is_in_network() converts it the same way). */
static int
userdb_ip_of(const struct sockaddr *sa, struct userdb_ip *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0xff, 0xff};

    memset(ip, 0, sizeof(*ip));
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        ip->family = AF_INET;
        memcpy(ip->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family != AF_INET6)
        return -1;
    memcpy(ip->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    ip->family = AF_INET6;
    if (memcmp(ip->addr, mapped, sizeof(mapped)) == 0) {
        memmove(ip->addr, ip->addr + 12, 4);
        memset(ip->addr + 4, 0, 12);
        ip->family = AF_INET;
    }
    return 0;
}

/*
 * One allow_nets entry w[0..len) into net and *bits, as Dovecot's
 * net_parse_range(): "ADDRESS" (all its bits) or "ADDRESS/BITS", an
 * IPv6 address optionally in brackets.  Bits past the prefix may be set
 * (they are not compared).  Returns: 0, -1 (not a network).
 */
static int
userdb_net_parse(const char *w, size_t len, struct userdb_ip *net,
                 unsigned *bits)
{
    char text[INET6_ADDRSTRLEN + 8];
    const char *slash = memchr(w, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - w) : len;
    unsigned max;

    if (alen >= sizeof(text) || alen == 0)
        return -1;
    memcpy(text, w, alen);
    text[alen] = '\0';
    memset(net, 0, sizeof(*net));
    if (inet_pton(AF_INET, text, net->addr) == 1) {
        net->family = AF_INET;
        max = 32;
    } else {
        char *a = text;

        if (a[0] == '[' && alen > 2 && a[alen - 1] == ']') {
            a[alen - 1] = '\0';
            a++;
        }
        if (inet_pton(AF_INET6, a, net->addr) != 1)
            return -1;
        net->family = AF_INET6;
        max = 128;
    }
    *bits = max;
    if (slash != NULL) {
        size_t dlen = len - alen - 1;
        unsigned b = 0;

        if (dlen == 0 || dlen > 3)
            return -1;
        for (size_t i = 0; i < dlen; i++) {
            if (slash[1 + i] < '0' || slash[1 + i] > '9')
                return -1;
            b = b * 10 + (unsigned)(slash[1 + i] - '0');
        }
        if (b > max)
            return -1;
        *bits = b;
    }
    return 0;
}

/* Whether ip lies in net/bits. */
static int
userdb_net_match(const struct userdb_ip *ip, const struct userdb_ip *net,
                 unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (ip->family != net->family)
        return 0;
    if (memcmp(ip->addr, net->addr, full) != 0) /* not secret */
        return 0;
    if (rest == 0)
        return 1;
    return ((ip->addr[full] ^ net->addr[full]) &
            (uint8_t)(0xff00u >> rest)) == 0;
}

int
userdb_allow_nets(const char *list, size_t len, const struct sockaddr *peer,
                  unsigned *bad)
{
    struct userdb_ip ip, net;
    size_t i = 0;
    int found = 0, have_ip;

    if (bad != NULL)
        *bad = 0;
    if (list == NULL)
        return 0;
    have_ip = userdb_ip_of(peer, &ip) == 0;
    /* Dovecot: t_strsplit_spaces(networks, ", "): runs of commas and
     * spaces separate the entries. */
    while (i < len && !found) {
        size_t start, n;
        unsigned bits;

        while (i < len && (list[i] == ',' || list[i] == ' '))
            i++;
        start = i;
        while (i < len && list[i] != ',' && list[i] != ' ')
            i++;
        n = i - start;
        if (n == 0)
            break;
        /* "local": a connection without an IP address (a Unix socket);
         * every client of posternd has one. */
        if (n == 5 && memcmp(list + start, "local", 5) == 0) {
            found = !have_ip;
            continue;
        }
        if (userdb_net_parse(list + start, n, &net, &bits) < 0) {
            if (bad != NULL)
                (*bad)++;
            continue;
        }
        found = have_ip && userdb_net_match(&ip, &net, bits);
    }
    return found;
}

/* The peer's address as text, for a message. */
static void
userdb_peer_text(const struct sockaddr *sa, char *out, size_t n)
{
    struct userdb_ip ip;

    if (userdb_ip_of(sa, &ip) < 0 ||
        inet_ntop(ip.family, ip.addr, out, (socklen_t)n) == NULL)
        snprintf(out, n, "unknown");
}

int
userdb_user_check_login(const struct userdb_user *u,
                        const struct sockaddr *peer, char *why, size_t n)
{
    char addr[INET6_ADDRSTRLEN];
    unsigned bad = 0;

    /* In Dovecot's order: allow_nets is checked as the lookup returns it
     * (auth_request_set_field()), noauthenticate ends the passdb before
     * any password check, nologin is looked at after a successful one
     * (login-common: "Login disabled for this user"). */
    if (u->allow_nets.v != NULL &&
        !userdb_allow_nets(u->allow_nets.v, u->allow_nets.len, peer, &bad)) {
        userdb_peer_text(peer, addr, sizeof(addr));
        if (why != NULL && n > 0)
            snprintf(why, n, "allow_nets: %s not in the allowed networks%s",
                     addr, bad > 0 ? " (an entry that is not a network "
                                     "was ignored)" : "");
        return PST_EAUTH;
    }
    if (u->noauthenticate.v != NULL) {
        if (why != NULL && n > 0)
            snprintf(why, n, "noauthenticate: the user store does not "
                     "authenticate this user");
        return PST_EAUTH;
    }
    if (u->nologin.v != NULL) {
        if (why != NULL && n > 0) {
            if (u->reason.v != NULL && u->reason.len > 0)
                snprintf(why, n, "nologin: login disabled for this user "
                         "(reason=%.*s)", (int)(u->reason.len > 128
                                                    ? 128
                                                    : u->reason.len),
                         u->reason.v);
            else
                snprintf(why, n, "nologin: login disabled for this user");
        }
        return PST_EAUTH;
    }
    return 0;
}

/* --- Client certificates (cert=) ---------------------------------------- */

static int
userdb_hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int
userdb_cert_parse(const char *v, size_t len, uint8_t out[USERDB_CERT_LEN])
{
    size_t i = 7, k = 0;

    if (len < 7 || strncasecmp(v, "SHA256:", 7) != 0)
        return PST_ESYNTAX;
    while (k < USERDB_CERT_LEN) {
        int hi, lo;

        if (i + 2 > len || (hi = userdb_hex(v[i])) < 0 ||
            (lo = userdb_hex(v[i + 1])) < 0)
            return PST_ESYNTAX;
        out[k++] = (uint8_t)(hi << 4 | lo);
        i += 2;
        /* "AB:CD:..." as openssl prints it; a separator only between
         * pairs. */
        if (k < USERDB_CERT_LEN && i < len && v[i] == ':')
            i++;
    }
    return i == len ? 0 : PST_ESYNTAX;
}

/* 64 hex digits into 32 octets. */
static int
userdb_fp_parse(const char *fp_hex, uint8_t out[USERDB_CERT_LEN])
{
    if (strlen(fp_hex) != 2 * USERDB_CERT_LEN)
        return PST_EINVAL;
    for (size_t k = 0; k < USERDB_CERT_LEN; k++) {
        int hi = userdb_hex(fp_hex[2 * k]), lo = userdb_hex(fp_hex[2 * k + 1]);

        if (hi < 0 || lo < 0)
            return PST_EINVAL;
        out[k] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int
userdb_cert_matches(const struct userdb_value *cert, const char *fp_hex)
{
    uint8_t want[USERDB_CERT_LEN], got[USERDB_CERT_LEN];

    if (cert->v == NULL)
        return -1;
    if (userdb_cert_parse(cert->v, cert->len, want) < 0 ||
        userdb_fp_parse(fp_hex, got) < 0)
        return 0;
    /* Not a secret (a certificate is public), but no reason to differ. */
    return CRYPTO_memcmp(want, got, USERDB_CERT_LEN) == 0;
}

int
userdb_find_cert(struct userdb *u, const char *fp_hex, char *name, size_t n)
{
    uint8_t fp[USERDB_CERT_LEN];

    if (userdb_fp_parse(fp_hex, fp) < 0)
        return PST_EINVAL;
    if (u->be->find_cert == NULL)
        return PST_ENOTSUP;
    return u->be->find_cert(u->store, fp, name, n);
}
