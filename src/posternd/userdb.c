/*
 * The user store as the server sees it (userdb.h): one snapshot per
 * configuration over one backend (userdb_backend.h), and lookup requests
 * that own what they found until the session lets go of it.
 */
#include <stdatomic.h>
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
 * and a pgsql column.  A new field (relay=, Dovecot's nologin,
 * noauthenticate, allow_nets=) is a row here and a member of struct
 * userdb_user; both stores fill it.
 */
static const struct {
    const char *name;
    size_t offset;             /* of its struct userdb_value */
} userdb_fields[USERDB_FIELDS] = {
    {"allow_from", offsetof(struct userdb_user, allow_from)},
    {"cert", offsetof(struct userdb_user, cert)},
};

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
