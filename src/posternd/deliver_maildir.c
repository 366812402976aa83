/*
 * posternd - durable Maildir delivery (see deliver_maildir.h).
 *
 * The order of operations is what makes "250 after the final dot" mean
 * "on disk" (DESIGN.md: accepted means durable):
 *   1. the spool file's data is written and fsync'd;
 *   2. each Maildir and its cur/ new/ tmp/ exist, every directory this
 *      call created fsync'd together with its parent;
 *   3. the file is linked into each new/ and new/ is fsync'd;
 *   4. the file is fsync'd again (its link count changed);
 * and only then does maildir_commit() return 0.  A crash at any point
 * leaves either complete messages in new/ or none, never a partial one:
 * each link points at a file whose data was already durable.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <postern/rand.h>

#include "deliver_maildir.h"

#define MAILDIR_BUF      65536 /* bytes gathered before a write(2) */
#define MAILDIR_HOST_MAX 256   /* bytes of the escaped host name */
#define MAILDIR_TRIES    5     /* attempts at a fresh name on EEXIST */

enum maildir_state {
    MAILDIR_OPEN = 0,   /* receiving data */
    MAILDIR_FAILED,     /* a write failed; the file is still there */
    MAILDIR_DONE,       /* committed or failed to commit: no spool file */
};

struct maildir_msg {
    enum maildir_state state;
    int      fd;
    char     qid[MAILDIR_QID_LEN + 1];
    char     path[PATH_MAX];            /* SPOOL/tmp/QID */
    char     host[MAILDIR_HOST_MAX];    /* escaped for file names */
    uint64_t size;                      /* bytes appended */
    int      saved_errno;
    char     err[MAILDIR_ERR_MAX];
    size_t   buf_len;
    uint8_t  buf[MAILDIR_BUF];
};

/* Makes delivered names unique within this process (across threads). */
static atomic_uint maildir_counter;

/* Record "op path: strerror(e)" unless an earlier error is recorded. */
static int
maildir_fail(struct maildir_msg *m, const char *op, const char *path, int e)
{
    if (m->saved_errno == 0) {
        int n = snprintf(m->err, sizeof(m->err), "%s %s: %s", op, path,
                         strerror(e));

        m->saved_errno = e;
        if (n < 0 || (size_t)n >= sizeof(m->err))
            memcpy(m->err + sizeof(m->err) - 4, "...", 4); /* cut short */
    }
    return PST_EIO;
}

/* write(2) all of len bytes, retrying on EINTR and short writes. */
static int
write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * fsync a directory so the entries made in it survive a crash.  A
 * filesystem that cannot sync directories (EINVAL) makes its entries
 * durable some other way or not at all; there is nothing more to do.
 */
static int
fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0, e;

    if (fd < 0)
        return -1;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = -1;
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The parent directory of path ("/a/b" -> "/a", "/a" -> "/"). */
static void
parent_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);

    if (n == 0) {
        snprintf(out, size, "%s", slash == NULL ? "." : "/");
        return;
    }
    snprintf(out, size, "%.*s", (int)n, path);
}

/*
 * Make directory path (mode 0700) and any missing parents.  Every
 * directory made here is fsync'd, and so is its parent, whose new entry
 * must be durable too.  path is modified temporarily.
 */
static int
make_dir(struct maildir_msg *m, char *path, unsigned depth)
{
    char parent[PATH_MAX];
    struct stat st;
    char *slash;
    int rc;

    if (mkdir(path, 0700) == 0)
        goto created;
    if (errno == EEXIST) {
        if (stat(path, &st) != 0)
            return maildir_fail(m, "stat", path, errno);
        if (!S_ISDIR(st.st_mode))
            return maildir_fail(m, "mkdir", path, ENOTDIR);
        return 0;
    }
    if (errno != ENOENT || depth > PATH_MAX / 2)
        return maildir_fail(m, "mkdir", path, errno);
    slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return maildir_fail(m, "mkdir", path, ENOENT);
    *slash = '\0';
    rc = make_dir(m, path, depth + 1);
    *slash = '/';
    if (rc != 0)
        return rc;
    if (mkdir(path, 0700) != 0) {
        /* Another process made it in between: fine if a directory. */
        if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        return maildir_fail(m, "mkdir", path,
                            errno == EEXIST ? ENOTDIR : errno);
    }
created:
    if (fsync_dir(path) != 0)
        return maildir_fail(m, "fsync", path, errno);
    parent_of(path, parent, sizeof(parent));
    if (fsync_dir(parent) != 0)
        return maildir_fail(m, "fsync", parent, errno);
    return 0;
}

/* dir/name into out; PST_EINVAL if it does not fit. */
static int
join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);

    return n < 0 || (size_t)n >= size ? PST_EINVAL : 0;
}

/* The Maildir at dir with its cur/, new/ and tmp/ (maildir(5)). */
static int
make_maildir(struct maildir_msg *m, const char *dir)
{
    static const char *const subs[] = {"cur", "new", "tmp"};
    char path[PATH_MAX];
    struct stat st;
    int missing = 0, rc;

    for (size_t i = 0; i < 3; i++) {
        if (join(path, sizeof(path), dir, subs[i]) != 0)
            return maildir_fail(m, "mkdir", dir, ENAMETOOLONG);
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            missing = 1;
    }
    if (!missing)
        return 0;
    snprintf(path, sizeof(path), "%s", dir);
    rc = make_dir(m, path, 0);
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        join(path, sizeof(path), dir, subs[i]);
        rc = make_dir(m, path, 0);
    }
    return rc;
}

/* The host name with "/" and ":" escaped as the Maildir spec asks
 * ("\057", "\072"), so it cannot break the name or its ":2," info. */
static void
escape_host(const char *host, char *out, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; host[i] != '\0'; i++) {
        const char *rep = host[i] == '/'   ? "\\057"
                          : host[i] == ':' ? "\\072"
                                           : NULL;
        size_t len = rep != NULL ? 4 : 1;

        if (n + len >= size)
            break;
        if (rep != NULL)
            memcpy(out + n, rep, 4);
        else
            out[n] = host[i];
        n += len;
    }
    out[n] = '\0';
}

int
maildir_begin(const char *spool, const char *hostname,
              struct maildir_msg **out)
{
    static const char hex[] = "0123456789ABCDEF";
    struct maildir_msg *m;
    int e = EEXIST;

    *out = NULL;
    if (spool == NULL || hostname == NULL || spool[0] == '\0' ||
        hostname[0] == '\0')
        return PST_EINVAL;
    /* Zero everything but the write buffer (64 KiB, written before it is
     * read): clearing it was a quarter of a session's instructions. */
    m = malloc(sizeof(*m));
    if (m == NULL)
        return PST_ENOMEM;
    memset(m, 0, offsetof(struct maildir_msg, buf));
    m->fd = -1;
    escape_host(hostname, m->host, sizeof(m->host));
    for (int tries = 0; tries < MAILDIR_TRIES && e == EEXIST; tries++) {
        uint8_t rnd[MAILDIR_QID_LEN / 2];
        int rc = pst_random_default(NULL, rnd, sizeof(rnd));

        if (rc != 0) {
            free(m);
            return PST_ETEMP;
        }
        for (size_t i = 0; i < sizeof(rnd); i++) {
            m->qid[2 * i] = hex[rnd[i] >> 4];
            m->qid[2 * i + 1] = hex[rnd[i] & 0x0f];
        }
        m->qid[MAILDIR_QID_LEN] = '\0';
        if (snprintf(m->path, sizeof(m->path), "%s/tmp/%s", spool, m->qid) >=
            (int)sizeof(m->path)) {
            free(m);
            return PST_EINVAL;
        }
        /* O_EXCL: never reuse a file another thread or process made. */
        m->fd = open(m->path,
                     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                     0600);
        e = m->fd < 0 ? errno : 0;
    }
    if (m->fd < 0) {
        free(m);
        errno = e;
        return PST_EIO;
    }
    *out = m;
    return 0;
}

const char *
maildir_qid(const struct maildir_msg *m)
{
    return m->qid;
}

uint64_t
maildir_size(const struct maildir_msg *m)
{
    return m->size;
}

const char *
maildir_error(const struct maildir_msg *m)
{
    return m->err;
}

int
maildir_errno(const struct maildir_msg *m)
{
    return m->saved_errno;
}

static int
flush(struct maildir_msg *m)
{
    if (m->buf_len == 0)
        return 0;
    if (write_all(m->fd, m->buf, m->buf_len) != 0) {
        m->state = MAILDIR_FAILED;
        return maildir_fail(m, "write", m->path, errno);
    }
    m->buf_len = 0;
    return 0;
}

int
maildir_append(struct maildir_msg *m, const void *p, size_t len)
{
    if (m->state == MAILDIR_FAILED)
        return PST_EIO;
    if (m->state != MAILDIR_OPEN)
        return PST_ESTATE;
    if (m->buf_len + len > sizeof(m->buf)) {
        if (flush(m) != 0)
            return PST_EIO;
    }
    if (len >= sizeof(m->buf)) {
        /* A large chunk goes straight to the file. */
        if (write_all(m->fd, p, len) != 0) {
            m->state = MAILDIR_FAILED;
            return maildir_fail(m, "write", m->path, errno);
        }
    } else {
        memcpy(m->buf + m->buf_len, p, len);
        m->buf_len += len;
    }
    m->size += len;
    return 0;
}

/* Remove the spool file and close it. */
static void
drop_spool(struct maildir_msg *m)
{
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
    if (m->state != MAILDIR_DONE) {
        unlink(m->path);
        m->state = MAILDIR_DONE;
    }
}

/* Remove the links made so far, making the removal durable too: a
 * message refused with 451 must not come back after a crash. */
static void
unlink_all(char **links, size_t n)
{
    char dir[PATH_MAX];

    for (size_t i = 0; i < n; i++) {
        if (unlink(links[i]) == 0) {
            parent_of(links[i], dir, sizeof(dir));
            fsync_dir(dir);
        }
    }
}

/* Link the spool file into dir/new under a fresh unique name. */
static int
deliver_one(struct maildir_msg *m, const char *dir, char **link_out)
{
    char newdir[PATH_MAX], name[NAME_MAX + 1], target[PATH_MAX];
    int e = EEXIST;

    if (join(newdir, sizeof(newdir), dir, "new") != 0)
        return maildir_fail(m, "link", dir, ENAMETOOLONG);
    for (int tries = 0; tries < MAILDIR_TRIES && e == EEXIST; tries++) {
        struct timespec ts;
        unsigned q = atomic_fetch_add(&maildir_counter, 1);
        int n;

        clock_gettime(CLOCK_REALTIME, &ts);
        /* Maildir name: "time.MusecPpidQcounterRrandom.host", with
         * ",S=size" as Dovecot and Courier read it. */
        n = snprintf(name, sizeof(name), "%lld.M%06ldP%ldQ%uR%s.%s,S=%llu",
                     (long long)ts.tv_sec, (long)(ts.tv_nsec / 1000),
                     (long)getpid(), q, m->qid, m->host,
                     (unsigned long long)m->size);
        if (n < 0 || (size_t)n >= sizeof(name) ||
            join(target, sizeof(target), newdir, name) != 0)
            return maildir_fail(m, "link", newdir, ENAMETOOLONG);
        /* link(2) never replaces an existing name, unlike rename(2). */
        e = link(m->path, target) == 0 ? 0 : errno;
    }
    if (e != 0)
        return maildir_fail(m, "link", target, e);
    *link_out = strdup(target);
    if (*link_out == NULL) {
        unlink(target);
        return PST_ENOMEM;
    }
    if (fsync_dir(newdir) != 0)
        return maildir_fail(m, "fsync", newdir, errno);
    return 0;
}

int
maildir_commit(struct maildir_msg *m, const char *const *paths, size_t n)
{
    char **links = NULL;
    size_t done = 0;
    int rc = 0;

    if (m->state == MAILDIR_FAILED) {
        /* The error of the failed append stands. */
        drop_spool(m);
        return PST_EIO;
    }
    if (m->state != MAILDIR_OPEN)
        return PST_ESTATE;
    if (n == 0)
        rc = PST_EINVAL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (paths[i] == NULL || paths[i][0] != '/' ||
            strlen(paths[i]) > PATH_MAX - NAME_MAX - 8)
            rc = PST_EINVAL;
    }
    if (rc == 0) {
        links = calloc(n, sizeof(*links));
        if (links == NULL)
            rc = PST_ENOMEM;
    }
    /* 1. The data, durable before any name points at it. */
    if (rc == 0)
        rc = flush(m);
    if (rc == 0 && fsync(m->fd) != 0)
        rc = maildir_fail(m, "fsync", m->path, errno);
    /* 2, 3. Each recipient; stop at the first failure. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = make_maildir(m, paths[i]);
        if (rc == 0)
            rc = deliver_one(m, paths[i], &links[done]);
        if (links != NULL && links[done] != NULL)
            done++;
    }
    /* 4. The link count of the inode. */
    if (rc == 0 && fsync(m->fd) != 0)
        rc = maildir_fail(m, "fsync", m->path, errno);
    if (rc != 0) {
        /* All or nothing: one reply answers the final dot for every
         * recipient (RFC 5321 §4.1.1.4), so none may keep a copy. */
        unlink_all(links, done);
    }
    for (size_t i = 0; i < done; i++)
        free(links[i]);
    free(links);
    drop_spool(m);
    return rc;
}

void
maildir_abort(struct maildir_msg *m)
{
    if (m == NULL)
        return;
    drop_spool(m);
    free(m);
}

void
maildir_free(struct maildir_msg *m)
{
    maildir_abort(m);
}

/* The nearest existing directory at or above the fixed part of tmpl. */
static int
template_root(const char *tmpl, char *out, size_t size, struct stat *st)
{
    const char *pct = strchr(tmpl, '%');
    size_t n = pct != NULL ? (size_t)(pct - tmpl) : strlen(tmpl);

    if (n >= size)
        return -1;
    memcpy(out, tmpl, n);
    out[n] = '\0';
    for (;;) {
        char *slash;

        if (out[0] != '\0' && stat(out, st) == 0 && S_ISDIR(st->st_mode))
            return 0;
        slash = strrchr(out, '/');
        if (slash == NULL)
            return -1;
        if (slash == out) {
            if (out[1] == '\0')
                return -1; /* "/" itself did not stat */
            out[1] = '\0';
        } else {
            *slash = '\0';
        }
    }
}

int
maildir_check_spool(const char *spool, const char *tmpl, char *err,
                    size_t err_size)
{
    char tmp[PATH_MAX], root[PATH_MAX];
    struct stat st_spool, st_root;

    if (snprintf(tmp, sizeof(tmp), "%s/tmp", spool) >= (int)sizeof(tmp)) {
        snprintf(err, err_size, "spool %s: name too long", spool);
        return PST_EINVAL;
    }
    if (stat(spool, &st_spool) != 0) {
        snprintf(err, err_size, "spool %s: %s", spool, strerror(errno));
        return PST_EIO;
    }
    if (!S_ISDIR(st_spool.st_mode)) {
        snprintf(err, err_size, "spool %s: not a directory", spool);
        return PST_EINVAL;
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "mkdir %s: %s", tmp, strerror(errno));
        return PST_EIO;
    }
    if (stat(tmp, &st_spool) != 0 || !S_ISDIR(st_spool.st_mode)) {
        snprintf(err, err_size, "spool %s: not a directory", tmp);
        return PST_EINVAL;
    }
    if (template_root(tmpl, root, sizeof(root), &st_root) != 0) {
        snprintf(err, err_size, "mailbox %s: no existing directory above it",
                 tmpl);
        return PST_EIO;
    }
    if (st_spool.st_dev != st_root.st_dev) {
        snprintf(err, err_size,
                 "spool %s and mailboxes under %s are on different "
                 "filesystems (devices %#llx, %#llx): delivery links "
                 "files, so they must share one",
                 spool, root, (unsigned long long)st_spool.st_dev,
                 (unsigned long long)st_root.st_dev);
        return PST_EINVAL;
    }
    return 0;
}

int
maildir_spool_clean(const char *spool, unsigned max_age)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    struct dirent *d;
    struct timespec now;
    int removed = 0;
    DIR *dir;

    if (snprintf(tmp, sizeof(tmp), "%s/tmp", spool) >= (int)sizeof(tmp))
        return PST_EIO;
    dir = opendir(tmp);
    if (dir == NULL)
        return PST_EIO;
    clock_gettime(CLOCK_REALTIME, &now);
    while ((d = readdir(dir)) != NULL) {
        struct stat st;

        if (d->d_name[0] == '.')
            continue;
        if (join(path, sizeof(path), tmp, d->d_name) != 0 ||
            lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (now.tv_sec - st.st_mtime >= (time_t)max_age &&
            unlink(path) == 0)
            removed++;
    }
    closedir(dir);
    return removed;
}
