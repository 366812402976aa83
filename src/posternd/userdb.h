/*
 * posternd - the user store as the server sees it: a snapshot of users
 * that can be swapped on reload while sessions still hold the old one.
 * Backends fill a snapshot (userdb_file.c today; pgsql later).
 */
#ifndef POSTERND_USERDB_H
#define POSTERND_USERDB_H

#include <stddef.h>

#include <postern/cred.h>

#include "config.h"

struct userdb; /* one loaded snapshot, reference counted */

/* What a lookup finds. */
struct userdb_user {
    const struct pst_cred *cred; /* borrowed while a reference is held */
    const char *allow_from;      /* extra field allow_from=: addresses
                                    separated by ',' (not NUL-terminated),
                                    or NULL */
    size_t allow_from_len;
};

/*
 * Load the store named by cfg (userdb = passwd-file:PATH).
 * *out ([out] owned, one reference) is released with userdb_unref().
 * Returns: 0, or -1 with a message naming file and line in err.
 */
int userdb_open(const struct config *cfg, struct userdb **out, char *err,
                size_t err_size);

/* Take and release references. */
struct userdb *userdb_ref(struct userdb *u);
void userdb_unref(struct userdb *u);

/*
 * Look up name (exact match).
 * Returns: 0 (found: *out filled), PST_ENOENT, PST_ETEMP (store down).
 */
int userdb_lookup(struct userdb *u, const char *name,
                  struct userdb_user *out);

/* Number of users (for the log). */
size_t userdb_count(const struct userdb *u);

/* Whether addr is in the comma-separated allow_from list[0..len) (ASCII
 * case-insensitive; "@domain" allows the whole domain). */
int userdb_allow_from(const char *list, size_t len, const char *addr);

#endif
