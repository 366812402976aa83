/*
 * The user store as the server sees it.  Today one backend: the passwd
 * file (userdb_file.c); a reload makes a new snapshot, so sessions that
 * hold credentials from the old one keep them valid until they let go.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "userdb.h"
#include "userdb_file.h"

struct userdb {
    unsigned refs;
    struct userdb_file *file;
    struct userdb_file_table *table;
};

int
userdb_open(const struct config *cfg, struct userdb **out, char *err,
            size_t n)
{
    struct userdb *u;

    *out = NULL;
    if (cfg->userdb != CONFIG_USERDB_PASSWD_FILE) {
        snprintf(err, n, "%s: userdb pgsql: is not supported yet",
                 cfg->file);
        return -1;
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    if (userdb_file_open(cfg->userdb_arg, &u->file, err, n) < 0) {
        free(u);
        return -1;
    }
    u->table = userdb_file_acquire(u->file);
    u->refs = 1;
    *out = u;
    return 0;
}

struct userdb *
userdb_ref(struct userdb *u)
{
    if (u != NULL)
        u->refs++;
    return u;
}

void
userdb_unref(struct userdb *u)
{
    if (u == NULL || --u->refs > 0)
        return;
    userdb_file_release(u->table);
    userdb_file_free(u->file);
    free(u);
}

int
userdb_lookup(struct userdb *u, const char *name, struct userdb_user *out)
{
    const struct pst_passwd_entry *e;
    const char *v;
    size_t len;

    memset(out, 0, sizeof(*out));
    e = userdb_file_lookup(u->table, name, strlen(name));
    if (e == NULL || e->cred == NULL)
        return PST_ENOENT;
    out->cred = e->cred;
    if (pst_passwd_extra(e, "allow_from", &v, &len) == 1) {
        out->allow_from = v;
        out->allow_from_len = len;
    }
    return 0;
}

size_t
userdb_count(const struct userdb *u)
{
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

        if (n == alen && strncasecmp(item, addr, n) == 0)
            return 1;
        /* "@example.test" allows any address of that domain. */
        if (n > 1 && item[0] == '@' && at != NULL &&
            strlen(at) == n && strncasecmp(item, at, n) == 0)
            return 1;
        i += n + 1;
    }
    return 0;
}
