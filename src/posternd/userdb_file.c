/*
 * posternd - the passwd-file user store: read the file, hand the bytes to
 * pst_passwd_parse(), keep the last good version in service.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "userdb.h"
#include "userdb_backend.h"
#include "userdb_file.h"

/* A user's client certificate (cert=), for cert_user = fingerprint. */
struct userdb_file_cert {
    uint8_t fp[USERDB_CERT_LEN];
    const struct pst_passwd_entry *e;
};

struct userdb_file_table {
    atomic_uint refs;
    struct pst_passwd *passwd;
    struct userdb_file_cert *certs; /* sorted by fp */
    size_t ncerts;
};

struct userdb_file {
    char *path;
    pthread_mutex_t lock; /* guards current */
    struct userdb_file_table *current;
};

static void userdb_file_errorf(char *err, size_t errlen, const char *fmt,
                               ...) __attribute__((format(printf, 3, 4)));

static void
userdb_file_errorf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * Read path whole into *data (owned; secret: wipe before free).
 * Returns: 0, PST_EIO, PST_ELIMIT, PST_ENOMEM.
 */
static int
userdb_file_read(const char *path, uint8_t **data, size_t *len, char *err,
                 size_t errlen)
{
    size_t cap, n = 0;
    struct stat st;
    uint8_t *buf;
    int fd, rc = 0;

    *data = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO in place of the file must not hang the event
     * loop in open(); it is refused below as not a regular file. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        userdb_file_errorf(err, errlen, "%s: cannot open: %s", path,
                           strerror(errno));
        return PST_EIO;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        userdb_file_errorf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return PST_EIO;
    }
    if ((uintmax_t)st.st_size > USERDB_FILE_MAX_SIZE) {
        userdb_file_errorf(err, errlen, "%s: larger than %zu bytes", path,
                           USERDB_FILE_MAX_SIZE);
        close(fd);
        return PST_ELIMIT;
    }
    /* One byte more than the size, to see growth since fstat(). */
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return PST_ENOMEM;
    }
    for (;;) {
        ssize_t r;

        if (n == cap) {
            size_t ncap = cap * 2;
            uint8_t *nb;

            if (cap > USERDB_FILE_MAX_SIZE) {
                userdb_file_errorf(err, errlen, "%s: larger than %zu bytes",
                                   path, USERDB_FILE_MAX_SIZE);
                rc = PST_ELIMIT;
                break;
            }
            /* Move rather than realloc: the old block holds passwords. */
            nb = malloc(ncap);
            if (nb == NULL) {
                rc = PST_ENOMEM;
                break;
            }
            memcpy(nb, buf, n);
            OPENSSL_clear_free(buf, cap);
            buf = nb;
            cap = ncap;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            userdb_file_errorf(err, errlen, "%s: read error: %s", path,
                               strerror(errno));
            rc = PST_EIO;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc < 0) {
        OPENSSL_clear_free(buf, cap);
        return rc;
    }
    /* Bytes past n were never written: wiping [0, n) is enough. */
    *data = buf;
    *len = n;
    return 0;
}

static int
userdb_file_cert_cmp(const void *a, const void *b)
{
    return memcmp(((const struct userdb_file_cert *)a)->fp,
                  ((const struct userdb_file_cert *)b)->fp, USERDB_CERT_LEN);
}

/*
 * Index the cert= fields of t's users by fingerprint.  A malformed one,
 * or one two users share (which of them would the certificate be?), is
 * an error of the file.
 */
static int
userdb_file_index_certs(struct userdb_file_table *t, const char *path,
                        char *err, size_t errlen)
{
    size_t n = pst_passwd_count(t->passwd);

    t->certs = calloc(n > 0 ? n : 1, sizeof(*t->certs));
    if (t->certs == NULL) {
        userdb_file_errorf(err, errlen, "%s: out of memory", path);
        return PST_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct pst_passwd_entry *e = pst_passwd_entry_at(t->passwd, i);
        const char *v;
        size_t len;

        if (pst_passwd_extra(e, "cert", &v, &len) != 1)
            continue;
        if (userdb_cert_parse(v, len, t->certs[t->ncerts].fp) < 0) {
            userdb_file_errorf(err, errlen, "%s:%u: user '%s': cert= is "
                               "not SHA256: and 64 hex digits", path,
                               e->line, e->name);
            return PST_ESYNTAX;
        }
        t->certs[t->ncerts++].e = e;
    }
    qsort(t->certs, t->ncerts, sizeof(*t->certs), userdb_file_cert_cmp);
    for (size_t i = 1; i < t->ncerts; i++) {
        if (userdb_file_cert_cmp(&t->certs[i - 1], &t->certs[i]) == 0) {
            const struct pst_passwd_entry *a = t->certs[i - 1].e,
                                          *b = t->certs[i].e;

            if (a->line > b->line) {
                const struct pst_passwd_entry *x = a;

                a = b;
                b = x;
            }
            userdb_file_errorf(err, errlen, "%s:%u: user '%s': the same "
                               "cert= as user '%s' (line %u)", path,
                               b->line, b->name, a->name, a->line);
            return PST_ESYNTAX;
        }
    }
    return 0;
}

/* The user whose cert= is fp, or NULL. */
static const struct pst_passwd_entry *
userdb_file_find_cert(const struct userdb_file_table *t,
                      const uint8_t fp[USERDB_CERT_LEN])
{
    struct userdb_file_cert key;
    const struct userdb_file_cert *hit;

    memcpy(key.fp, fp, USERDB_CERT_LEN);
    hit = bsearch(&key, t->certs, t->ncerts, sizeof(*t->certs),
                  userdb_file_cert_cmp);
    return hit != NULL ? hit->e : NULL;
}

/* Load path into a new version with one reference. */
static int
userdb_file_load(const char *path, struct userdb_file_table **out, char *err,
                 size_t errlen)
{
    struct pst_passwd_error perr;
    struct userdb_file_table *t;
    struct pst_passwd *pw = NULL;
    uint8_t *data;
    size_t len;
    int rc;

    *out = NULL;
    if ((rc = userdb_file_read(path, &data, &len, err, errlen)) < 0) {
        if (rc == PST_ENOMEM)
            userdb_file_errorf(err, errlen, "%s: out of memory", path);
        return rc;
    }
    rc = pst_passwd_parse(data, len, &pw, &perr);
    /* The text held every password field: wipe it now. */
    OPENSSL_cleanse(data, len);
    free(data);
    if (rc < 0) {
        if (perr.line > 0)
            userdb_file_errorf(err, errlen, "%s:%u: %s", path, perr.line,
                               perr.message);
        else
            userdb_file_errorf(err, errlen, "%s: %s", path,
                               perr.message[0] != '\0' ? perr.message
                                                       : pst_strerror(rc));
        return rc;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        pst_passwd_free(pw);
        userdb_file_errorf(err, errlen, "%s: out of memory", path);
        return PST_ENOMEM;
    }
    atomic_init(&t->refs, 1);
    t->passwd = pw;
    if ((rc = userdb_file_index_certs(t, path, err, errlen)) < 0) {
        userdb_file_release(t);
        return rc;
    }
    *out = t;
    return 0;
}

int
userdb_file_open(const char *path, struct userdb_file **out, char *err,
                 size_t errlen)
{
    struct userdb_file *u;
    int rc;

    *out = NULL;
    u = calloc(1, sizeof(*u));
    if (u == NULL || (u->path = strdup(path)) == NULL) {
        free(u);
        userdb_file_errorf(err, errlen, "%s: out of memory", path);
        return PST_ENOMEM;
    }
    if ((rc = userdb_file_load(path, &u->current, err, errlen)) < 0) {
        free(u->path);
        free(u);
        return rc;
    }
    pthread_mutex_init(&u->lock, NULL);
    *out = u;
    return 0;
}

int
userdb_file_reload(struct userdb_file *u, char *err, size_t errlen)
{
    struct userdb_file_table *t, *old;
    int rc;

    if ((rc = userdb_file_load(u->path, &t, err, errlen)) < 0) {
        /* Say so after the reason: the previous version stays. */
        if (err != NULL && errlen > 0) {
            size_t n = strlen(err);

            snprintf(err + n, errlen - n,
                     "; still serving the previous version");
        }
        return rc;
    }
    pthread_mutex_lock(&u->lock);
    old = u->current;
    u->current = t;
    pthread_mutex_unlock(&u->lock);
    userdb_file_release(old);
    return 0;
}

struct userdb_file_table *
userdb_file_acquire(struct userdb_file *u)
{
    struct userdb_file_table *t;

    /* Under the lock, so that a reload cannot free t between reading the
     * pointer and taking the reference. */
    pthread_mutex_lock(&u->lock);
    t = u->current;
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&u->lock);
    return t;
}

void
userdb_file_release(struct userdb_file_table *t)
{
    if (t == NULL)
        return;
    if (atomic_fetch_sub(&t->refs, 1) == 1) {
        pst_passwd_free(t->passwd);
        free(t->certs);
        free(t);
    }
}

const struct pst_passwd_entry *
userdb_file_lookup(const struct userdb_file_table *t, const char *name,
                   size_t len)
{
    return pst_passwd_lookup(t->passwd, name, len);
}

const struct pst_passwd *
userdb_file_passwd(const struct userdb_file_table *t)
{
    return t->passwd;
}

const char *
userdb_file_path(const struct userdb_file *u)
{
    return u->path;
}

void
userdb_file_free(struct userdb_file *u)
{
    if (u == NULL)
        return;
    userdb_file_release(u->current);
    pthread_mutex_destroy(&u->lock);
    free(u->path);
    free(u);
}

/* --- The backend (userdb_backend.h) -------------------------------------- */

/* A passwd-file store as a snapshot sees it: the version loaded when the
 * configuration was, for as long as the snapshot lives. */
struct userdb_file_store {
    struct userdb_file *file;
    struct userdb_file_table *table;
};

static int
userdb_file_be_open(const struct config *cfg, void **store, char *err,
                    size_t err_size)
{
    struct userdb_file_store *s = calloc(1, sizeof(*s));

    *store = NULL;
    if (s == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (userdb_file_open(cfg->userdb.arg, &s->file, err, err_size) < 0) {
        free(s);
        return -1;
    }
    s->table = userdb_file_acquire(s->file);
    *store = s;
    return 0;
}

static void
userdb_file_be_free(void *store)
{
    struct userdb_file_store *s = store;

    userdb_file_release(s->table);
    userdb_file_free(s->file);
    free(s);
}

/* The file answers at once, but from the loop like the other stores.
 * The record borrows from the table, which the request's snapshot
 * holds. */
static int
userdb_file_be_lookup(void *store, uv_loop_t *loop, const char *name,
                      struct userdb_req *req)
{
    struct userdb_file_store *s = store;
    const struct pst_passwd_entry *e;
    const char *v;
    size_t len;

    e = userdb_file_lookup(s->table, name, strlen(name));
    if (e == NULL || e->cred == NULL)
        return userdb_req_answer_later(req, loop, PST_ENOENT);
    userdb_req_set_cred(req, e->cred, NULL);
    for (size_t i = 0; userdb_field_name(i) != NULL; i++) {
        if (pst_passwd_extra(e, userdb_field_name(i), &v, &len) == 1)
            (void)userdb_req_set_field(req, i, v, len, 0);
    }
    return userdb_req_answer_later(req, loop, 0);
}

static void
userdb_file_be_cancel(struct userdb_req *req)
{
    (void)req; /* nothing in flight: the deferred answer is userdb.c's */
}

static int
userdb_file_be_count(const void *store, size_t *n)
{
    const struct userdb_file_store *s = store;

    *n = pst_passwd_count(userdb_file_passwd(s->table));
    return 0;
}

static int
userdb_file_be_find_cert(void *store, const uint8_t fp[USERDB_CERT_LEN],
                         char *name, size_t n)
{
    const struct userdb_file_store *s = store;
    const struct pst_passwd_entry *e = userdb_file_find_cert(s->table, fp);

    if (e == NULL)
        return PST_ENOENT;
    if (e->name_len >= n)
        return PST_ELIMIT;
    memcpy(name, e->name, e->name_len + 1);
    return 0;
}

static int
userdb_file_be_check(void *store, char *msg, size_t n)
{
    size_t users;

    userdb_file_be_count(store, &users);
    snprintf(msg, n, "%zu user%s", users, users == 1 ? "" : "s");
    return 0;
}

const struct userdb_backend userdb_file_backend = {
    .name = "passwd-file",
    .per_loop = 0,
    .open = userdb_file_be_open,
    .free = userdb_file_be_free,
    .lookup = userdb_file_be_lookup,
    .cancel = userdb_file_be_cancel,
    .check = userdb_file_be_check,
    .count = userdb_file_be_count,
    .find_cert = userdb_file_be_find_cert,
};
