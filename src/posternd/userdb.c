/*
 * The user store as the server sees it (userdb.h): one snapshot per
 * configuration over one backend, and lookup requests that own what
 * they found until the session lets go of it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "userdb.h"
#include "userdb_file.h"
#include "userdb_pgsql.h"

struct userdb {
    atomic_uint refs;          /* shared by the workers' loops */
    enum config_userdb_kind kind;
    /* passwd-file: */
    struct userdb_file *file;
    struct userdb_file_table *table; /* the version of this snapshot */
    /* pgsql: */
    struct userdb_pgsql *pg;
};

struct userdb_req {
    struct userdb *u;             /* a reference */
    userdb_lookup_cb *cb;
    void *ctx;
    /* passwd-file: the answer, given on the next loop turn */
    uv_timer_t defer;
    int defer_open;
    int rc;
    /* pgsql: */
    struct userdb_pgsql_query *q; /* in flight, or NULL */
    struct pst_cred *cred;        /* owned */
    char *allow_from;             /* owned */
    /* Looked up: */
    struct userdb_user user;      /* lent to the callback */
};

int
userdb_open(const struct config *cfg, struct userdb **out, char *err,
            size_t n)
{
    struct userdb *u;
    char why[CONFIG_ERR_MAX];

    *out = NULL;
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    u->kind = cfg->userdb.kind;
    if (cfg->userdb.kind == CONFIG_USERDB_PGSQL) {
        if (userdb_pgsql_open(cfg->userdb.arg, cfg->userdb_query,
                              cfg->userdb_timeout * 1000u, &u->pg, why,
                              sizeof(why)) < 0) {
            snprintf(err, n, "%s: userdb pgsql: %s", cfg->file, why);
            free(u);
            return -1;
        }
    } else {
        if (userdb_file_open(cfg->userdb.arg, &u->file, err, n) < 0) {
            free(u);
            return -1;
        }
        u->table = userdb_file_acquire(u->file);
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
    userdb_file_release(u->table);
    userdb_file_free(u->file);
    userdb_pgsql_free(u->pg);
    free(u);
}

/* passwd-file: the answer found at the start. */
static void
userdb_on_defer(uv_timer_t *t)
{
    struct userdb_req *req = t->data;

    req->cb(req->ctx, req->rc, req->rc == 0 ? &req->user : NULL);
}

/* pgsql: the row arrived (or not). */
static void
userdb_on_pgsql(void *ctx, int rc, struct pst_cred *cred, char *allow_from)
{
    struct userdb_req *req = ctx;

    req->q = NULL;
    req->cred = cred;
    req->allow_from = allow_from;
    if (rc == 0) {
        req->user.cred = cred;
        req->user.allow_from = allow_from;
        req->user.allow_from_len = allow_from != NULL ? strlen(allow_from)
                                                      : 0;
    }
    req->cb(req->ctx, rc, rc == 0 ? &req->user : NULL);
}

/* The file backend answers at once, but from the loop like the other. */
static int
userdb_file_start(struct userdb_req *req, uv_loop_t *loop, const char *name)
{
    const struct pst_passwd_entry *e;
    const char *v;
    size_t len;

    e = userdb_file_lookup(req->u->table, name, strlen(name));
    req->rc = e == NULL || e->cred == NULL ? PST_ENOENT : 0;
    if (req->rc == 0) {
        req->user.cred = e->cred;
        if (pst_passwd_extra(e, "allow_from", &v, &len) == 1) {
            req->user.allow_from = v;
            req->user.allow_from_len = len;
        }
    }
    if (uv_timer_init(loop, &req->defer) < 0)
        return PST_ENOMEM;
    req->defer.data = req;
    req->defer_open = 1;
    if (uv_timer_start(&req->defer, userdb_on_defer, 0, 0) < 0)
        return PST_ENOMEM;
    return 0;
}

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
    if (u->kind == CONFIG_USERDB_PGSQL)
        rc = userdb_pgsql_lookup(u->pg, loop, name, userdb_on_pgsql, req,
                                 &req->q);
    else
        rc = userdb_file_start(req, loop, name);
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
    userdb_pgsql_cancel(req->q);
    req->q = NULL;
    pst_cred_free(req->cred);
    req->cred = NULL;
    free(req->allow_from);
    req->allow_from = NULL;
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
    size_t users;

    if (u->kind == CONFIG_USERDB_PGSQL)
        return userdb_pgsql_check(u->pg, msg, n);
    users = userdb_count(u);
    snprintf(msg, n, "%zu user%s", users, users == 1 ? "" : "s");
    return 0;
}

size_t
userdb_count(const struct userdb *u)
{
    if (u->kind == CONFIG_USERDB_PGSQL)
        return 0;
    return pst_passwd_count(userdb_file_passwd(u->table));
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
