/*
 * posternd - durable Maildir delivery (see deliver_maildir.h).
 *
 * The order of operations is what makes "250 after the final dot" mean
 * "on disk" (DESIGN.md: accepted means durable):
 *   1. the spool file's data is written and fsync'd;
 *   2. each Maildir and its cur/ new/ tmp/ exist, every directory this
 *      call created fsync'd together with its parent;
 *   3. the file is linked into each new/, and an fsync of new/ that
 *      started after the link has completed (group commit, below);
 *   4. the file is fsync'd again (its link count changed);
 * and only then does maildir_commit() return 0.  A crash at any point
 * leaves either complete messages in new/ or none, never a partial one:
 * each link points at a file whose data was already durable.
 *
 * The relay's queue (maildir_deliver() with q) differs in one point: its
 * link QUEUE/QID is made before step 1, whose fsync then covers the data
 * and the inode's link count at once, and QID.env, written (and fsync'd)
 * after it, is what makes a queued message: the queue manager reads only
 * messages with an envelope, and a QID without one is an orphan
 * (queue_file_orphans()).  So a crash leaves a queued message whole or
 * not at all, with one fsync of the file fewer.
 *
 * The spool file itself leaves nothing after a crash: an O_TMPFILE file
 * has no name to leave, and a named one is locked while its message is
 * alive, so maildir_spool_clean() knows a dead one when it sees it.
 */
#define _GNU_SOURCE /* O_TMPFILE (open(2)) */

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <postern/rand.h>

#include "deliver_maildir.h"
#include "dir_sync.h"
#include "fileio.h"
#include "queue_file.h"

#define MAILDIR_BUF      65536 /* bytes gathered before a write(2) */
#define MAILDIR_HOST_MAX 256   /* bytes of the escaped host name */
#define MAILDIR_TRIES    5     /* attempts at a fresh name on EEXIST */
#define MAILDIR_PROC_MAX 40    /* bytes of "/proc/self/fd/N" */

enum maildir_state {
    MAILDIR_OPEN = 0,   /* receiving data */
    MAILDIR_FAILED,     /* a write failed; the file is still there */
    MAILDIR_DONE,       /* committed or failed to commit: no spool file */
};

struct maildir_msg {
    enum maildir_state state;
    int      fd;
    int      named;                     /* 1: SPOOL/tmp/QID, flocked;
                                         * 0: unnamed (O_TMPFILE) */
    char     qid[MAILDIR_QID_LEN + 1];
    char     path[PATH_MAX];            /* SPOOL/tmp/QID (for messages
                                         * only, if unnamed) */
    char     host[MAILDIR_HOST_MAX];    /* escaped for file names */
    uint64_t size;                      /* bytes appended */
    int      saved_errno;
    _Atomic int *gate;                  /* maildir_set_gate(), or NULL */
    char     err[MAILDIR_ERR_MAX];
    size_t   buf_len;
    uint8_t  buf[MAILDIR_BUF];
};

/* Makes delivered names unique within this process: atomic, so threads
 * and event loops never draw the same value.  (The random part of the
 * name comes from RAND_bytes(), thread-safe since OpenSSL 1.1.0.) */
static atomic_uint maildir_counter;

/* Set once O_TMPFILE or /proc/self/fd failed us: named files from then
 * on.  maildir_proc_ok: /proc/self/fd was seen to work, no more checks. */
static atomic_int maildir_no_tmpfile;
static atomic_int maildir_proc_ok;

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
    if (fileio_fsync_dir(path) != 0)
        return maildir_fail(m, "fsync", path, errno);
    parent_of(path, parent, sizeof(parent));
    if (fileio_fsync_dir(parent) != 0)
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

/*
 * The directory name inside the directory open as parent (path names it
 * in messages), made (mode 0700) if create and missing, opened without
 * following a symbolic link: a symbolic link, or anything but a
 * directory, fails the delivery (ELOOP, ENOTDIR), so that nobody who
 * can write below the mail root can point delivery elsewhere.  A
 * directory made here is fsync'd, and so is parent, whose new entry must
 * be durable too.  Returns a descriptor, or -1 (recorded in m).
 */
static int
open_sub(struct maildir_msg *m, int parent, const char *name,
         const char *path, int create)
{
    int fd, made = 0;

    for (int tries = 0; tries < 2; tries++) {
        fd = openat(parent, name,
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT || !create)
            break;
        if (mkdirat(parent, name, 0700) == 0)
            made = 1;
        else if (errno != EEXIST) /* EEXIST: made by another, meanwhile */
            return maildir_fail(m, "mkdir", path, errno), -1;
    }
    if (fd < 0) {
        struct stat st;
        int e = errno;

        /* O_NOFOLLOW|O_DIRECTORY on a symbolic link fails with ELOOP or
         * ENOTDIR: say which it was, with the path, for the log. */
        if ((e == ELOOP || e == ENOTDIR) &&
            fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode))
            maildir_fail(m, "refused symbolic link", path, ELOOP);
        else
            maildir_fail(m, "open", path, e);
        return -1;
    }
    if (made && (fileio_fsync_dirfd(fd) != 0 ||
                 fileio_fsync_dirfd(parent) != 0)) {
        maildir_fail(m, "fsync", path, errno);
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * The Maildir at path, with its cur/, new/ and tmp/ (maildir(5)), made
 * as needed: root (a prefix of path: the fixed part of the mailbox
 * template, chosen by the administrator) is opened as it is, symbolic
 * links and all, and made with its parents if missing; every component
 * below it is opened relative to its parent with O_NOFOLLOW (open_sub()).
 * Returns the descriptor of new/, or -1 (recorded in m).
 */
static int
open_maildir(struct maildir_msg *m, const char *root, const char *path)
{
    static const char *const subs[] = {"cur", "tmp", "new"};
    char part[PATH_MAX], name[NAME_MAX + 1];
    size_t rlen = strlen(root);
    const char *p;
    int fd, next;

    while (rlen > 1 && root[rlen - 1] == '/')
        rlen--;
    if (strncmp(path, root, rlen) != 0 || /* not secret */
        (path[rlen] != '/' && path[rlen] != '\0' && rlen > 1)) {
        maildir_fail(m, "mailbox outside the mail root", path, EINVAL);
        return -1;
    }
    snprintf(part, sizeof(part), "%.*s", (int)rlen, root);
    fd = open(part, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (make_dir(m, part, 0) != 0)
            return -1;
        fd = open(part, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0)
        return maildir_fail(m, "open", part, errno), -1;
    for (p = path + rlen; *p != '\0';) {
        size_t n;

        while (*p == '/')
            p++;
        n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n > NAME_MAX) {
            close(fd);
            return maildir_fail(m, "open", path, ENAMETOOLONG), -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        snprintf(part, sizeof(part), "%.*s", (int)(p - path), path);
        next = open_sub(m, fd, name, part, 1);
        close(fd);
        if (next < 0)
            return -1;
        fd = next;
    }
    for (size_t i = 0; i < 3; i++) {
        if (join(part, sizeof(part), path, subs[i]) != 0) {
            close(fd);
            return maildir_fail(m, "open", path, ENAMETOOLONG), -1;
        }
        next = open_sub(m, fd, subs[i], part, 1);
        if (next < 0 || i == 2) {
            close(fd);
            return next; /* new/, or -1 */
        }
        close(next);
    }
    return -1; /* not reached */
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

/* Whether to try O_TMPFILE (see deliver_maildir.h for the test hook). */
static int
tmpfile_wanted(void)
{
    const char *v;

    if (atomic_load(&maildir_no_tmpfile))
        return 0;
    v = getenv("POSTERN_MAILDIR_NO_TMPFILE");
    return v == NULL || strcmp(v, "1") != 0;
}

/*
 * An unnamed spool file in dir (open(2), O_TMPFILE; without O_EXCL, so
 * that it can be linked later).  Returns its descriptor, -1 with errno,
 * or -2 when O_TMPFILE cannot serve (the filesystem or kernel lacks it,
 * or /proc is not mounted to link through): named files from now on.
 */
static int
open_unnamed(const char *dir)
{
#ifdef O_TMPFILE
    char proc[MAILDIR_PROC_MAX];
    struct stat st;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0) {
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return -1;
    } else {
        if (atomic_load(&maildir_proc_ok))
            return fd;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (lstat(proc, &st) == 0) {
            atomic_store(&maildir_proc_ok, 1);
            return fd;
        }
        close(fd);
    }
#else
    (void)dir;
#endif
    atomic_store(&maildir_no_tmpfile, 1);
    return -2;
}

/*
 * Create the named spool file path (O_EXCL) and lock it (flock
 * LOCK_EX) for as long as it has that name.  Returns its descriptor, or
 * -1 with errno (EEXIST: try another name).
 */
static int
open_named(const char *path)
{
    struct stat st;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    int e;

    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            e = errno;
            unlink(path);
            close(fd);
            errno = e;
            return -1;
        }
    }
    /* Until the lock, maildir_spool_clean() (another thread or process)
     * could take the file for a dead one; MAILDIR_SPOOL_GRACE makes that
     * all but impossible, and if it happened anyway the file has no name
     * now: take another. */
    if (fstat(fd, &st) != 0 || st.st_nlink == 0) {
        close(fd);
        errno = EEXIST;
        return -1;
    }
    return fd;
}

int
maildir_begin(const char *spool, const char *hostname,
              struct maildir_msg **out)
{
    static const char hex[] = "0123456789ABCDEF";
    char dir[PATH_MAX];
    struct maildir_msg *m;
    int e = EEXIST, unnamed;

    *out = NULL;
    if (spool == NULL || hostname == NULL || spool[0] == '\0' ||
        hostname[0] == '\0')
        return PST_EINVAL;
    if (snprintf(dir, sizeof(dir), "%s/tmp", spool) >= (int)sizeof(dir))
        return PST_EINVAL;
    /* Zero everything but the write buffer (64 KiB, written before it is
     * read): clearing it was a quarter of a session's instructions. */
    m = malloc(sizeof(*m));
    if (m == NULL)
        return PST_ENOMEM;
    memset(m, 0, offsetof(struct maildir_msg, buf));
    m->fd = -1;
    escape_host(hostname, m->host, sizeof(m->host));
    unnamed = tmpfile_wanted();
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
        if (snprintf(m->path, sizeof(m->path), "%s/%s", dir, m->qid) >=
            (int)sizeof(m->path)) {
            free(m);
            return PST_EINVAL;
        }
        if (unnamed) {
            m->fd = open_unnamed(dir);
            if (m->fd == -2) {
                unnamed = 0;
                m->fd = -1;
            }
        }
        /* O_EXCL: never reuse a file another thread or process made. */
        if (!unnamed)
            m->fd = open_named(m->path);
        e = m->fd < 0 ? errno : 0;
    }
    if (m->fd < 0) {
        free(m);
        errno = e;
        return PST_EIO;
    }
    m->named = !unnamed;
    *out = m;
    return 0;
}

void
maildir_set_gate(struct maildir_msg *m, _Atomic int *gate)
{
    m->gate = gate;
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
    if (fileio_write_all(m->fd, m->buf, m->buf_len) != 0) {
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
        if (fileio_write_all(m->fd, p, len) != 0) {
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

/* Remove the spool file and close it.  A named file loses its name
 * before its lock: while it has a name, it is locked. */
static void
drop_spool(struct maildir_msg *m)
{
    if (m->state != MAILDIR_DONE) {
        if (m->named)
            unlink(m->path);
        m->state = MAILDIR_DONE;
    }
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
}

/* A name made by a commit: the directory it is in, and the name. */
struct made_link {
    int  dfd;
    char name[NAME_MAX + 1];
};

/* Remove the links made so far, making the removal durable too: a
 * message refused with 451 must not come back after a crash. */
static void
unlink_all(struct made_link *links, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (unlinkat(links[i].dfd, links[i].name, 0) == 0)
            fileio_fsync_dirfd(links[i].dfd);
    }
}

/*
 * Link the spool file into the directory open as dfd (dir names it in
 * messages) as name: through /proc/self/fd/N for an unnamed file (with
 * AT_SYMLINK_FOLLOW, which needs no CAP_DAC_READ_SEARCH: open(2),
 * O_TMPFILE), by its name otherwise.  linkat(2) never replaces or
 * follows an existing name.  Returns 0 or an errno.
 */
static int
link_spool(struct maildir_msg *m, int dfd, const char *name)
{
    char proc[MAILDIR_PROC_MAX];
    struct stat st;
    int e;

    if (m->named)
        return linkat(AT_FDCWD, m->path, dfd, name, 0) == 0 ? 0 : errno;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", m->fd);
    if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) == 0)
        return 0;
    e = errno;
    /* /proc gone since maildir_begin(): this message fails (451, the
     * client tries again), the next ones use named files. */
    if (e == ENOENT && lstat(proc, &st) != 0)
        atomic_store(&maildir_no_tmpfile, 1);
    return e;
}

/* Link the spool file into new/ (open as newfd) under a fresh unique
 * name, and wait for an fsync of new/ that covers the link. */
static int
deliver_one(struct maildir_msg *m, const char *dir, int newfd,
            struct made_link *link)
{
    char newdir[PATH_MAX];
    int e = EEXIST;

    link->dfd = -1;
    if (join(newdir, sizeof(newdir), dir, "new") != 0)
        return maildir_fail(m, "link", dir, ENAMETOOLONG);
    for (int tries = 0; tries < MAILDIR_TRIES && e == EEXIST; tries++) {
        struct timespec ts;
        unsigned q = atomic_fetch_add(&maildir_counter, 1);
        int n;

        clock_gettime(CLOCK_REALTIME, &ts);
        /* Maildir name: "time.MusecPpidQcounterRrandom.host", with
         * ",S=size" as Dovecot and Courier read it. */
        n = snprintf(link->name, sizeof(link->name),
                     "%lld.M%06ldP%ldQ%uR%s.%s,S=%llu", (long long)ts.tv_sec,
                     (long)(ts.tv_nsec / 1000), (long)getpid(), q, m->qid,
                     m->host, (unsigned long long)m->size);
        if (n < 0 || (size_t)n >= sizeof(link->name))
            return maildir_fail(m, "link", newdir, ENAMETOOLONG);
        e = link_spool(m, newfd, link->name);
    }
    if (e != 0)
        return maildir_fail(m, "link", newdir, e);
    link->dfd = newfd;
    e = dir_sync(newfd);
    if (e != 0)
        return maildir_fail(m, "fsync", newdir, e);
    return 0;
}

/* Link the spool file as DIR/QID (the queue directory is the
 * administrator's and opened as it is). */
static int
queue_link(struct maildir_msg *m, const struct maildir_queue *q, int *qfd,
           struct made_link *links, size_t *done)
{
    int e;

    *qfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*qfd < 0)
        return maildir_fail(m, "open", q->dir, errno);
    e = link_spool(m, *qfd, m->qid);
    if (e != 0)
        return maildir_fail(m, "link", q->dir, e);
    links[*done].dfd = *qfd;
    snprintf(links[*done].name, sizeof(links[*done].name), "%s", m->qid);
    (*done)++;
    return 0;
}

/*
 * Queue the linked message: write DIR/QID.env (its data fsync'd before
 * its name, queue_file_write_env()), and wait for an fsync of DIR
 * covering both names (shared with the other commits, as for new/).  On
 * failure the caller removes what was made.
 */
static int
queue_commit(struct maildir_msg *m, const struct maildir_queue *q, int qfd,
             struct made_link *links, size_t *done)
{
    struct queue_env env;
    int e;

    env = *q->env;
    snprintf(env.id, sizeof(env.id), "%s", m->qid);
    if (queue_file_write_env(q->dir, &env) != 0)
        return maildir_fail(m, "write envelope in", q->dir, errno);
    links[*done].dfd = qfd;
    snprintf(links[*done].name, sizeof(links[*done].name), "%s.env", m->qid);
    (*done)++;
    e = dir_sync(qfd);
    if (e != 0)
        return maildir_fail(m, "fsync", q->dir, e);
    return 0;
}

int
maildir_deliver(struct maildir_msg *m, const char *root,
                const char *const *paths, size_t n,
                const struct maildir_queue *q)
{
    struct made_link *links = NULL;
    int *fds = NULL, qfd = -1;
    size_t done = 0, nfds = 0;
    int rc = 0;

    if (m->state == MAILDIR_FAILED) {
        /* The error of the failed append stands. */
        drop_spool(m);
        return PST_EIO;
    }
    if (m->state != MAILDIR_OPEN)
        return PST_ESTATE;
    if ((n == 0 && q == NULL) || (n > 0 && (root == NULL || root[0] != '/')))
        rc = PST_EINVAL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (paths[i] == NULL || paths[i][0] != '/' ||
            strlen(paths[i]) > PATH_MAX - NAME_MAX - 8)
            rc = PST_EINVAL;
    }
    if (q != NULL && (q->dir == NULL || q->env == NULL))
        rc = PST_EINVAL;
    if (rc == 0) {
        links = calloc(n + 2, sizeof(*links));
        fds = calloc(n + 1, sizeof(*fds));
        if (links == NULL || fds == NULL)
            rc = PST_ENOMEM;
    }
    /* 1. The data, durable before any name that makes a message points
     * at it: the queue's QID may come first (QID.env makes it a
     * message, below), and this fsync covers its link count too. */
    if (rc == 0)
        rc = flush(m);
    if (rc == 0 && q != NULL)
        rc = queue_link(m, q, &qfd, links, &done);
    if (rc == 0 && fsync(m->fd) != 0)
        rc = maildir_fail(m, "fsync", m->path, errno);
    /* Given up while the data was synced: no name is made. */
    if (rc == 0 && m->gate != NULL &&
        atomic_load(m->gate) == MAILDIR_GATE_ABANDONED) {
        snprintf(m->err, sizeof(m->err), "commit given up");
        rc = PST_ECANCEL;
    }
    /* 2, 3. The relay's queue, then each local recipient; stop at the
     * first failure. */
    if (rc == 0 && q != NULL)
        rc = queue_commit(m, q, qfd, links, &done);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int newfd = open_maildir(m, root, paths[i]);

        if (newfd < 0) {
            rc = PST_EIO;
            break;
        }
        fds[nfds++] = newfd;
        rc = deliver_one(m, paths[i], newfd, &links[done]);
        if (links[done].dfd >= 0)
            done++; /* linked, even if its fsync then failed */
    }
    /* 4. The link count of the inode (an O_TMPFILE's goes from 0 to 1:
     * off the orphan list).  The fsync of new/ writes the entry, not
     * this inode (ext4 without a journal), so without it a power cut
     * could leave a name whose inode is freed.  With the queue's link
     * alone, step 1's fsync covered it: none more. */
    if (rc == 0 && nfds > 0 && fsync(m->fd) != 0)
        rc = maildir_fail(m, "fsync", m->path, errno);
    /* 5. Durable: it stands, unless it was given up meanwhile. */
    if (rc == 0 && m->gate != NULL) {
        int open = MAILDIR_GATE_OPEN;

        if (!atomic_compare_exchange_strong(m->gate, &open,
                                            MAILDIR_GATE_COMMITTED)) {
            snprintf(m->err, sizeof(m->err), "commit given up");
            rc = PST_ECANCEL;
        }
    }
    if (rc != 0) {
        /* All or nothing: one reply answers the final dot for every
         * recipient (RFC 5321 §4.1.1.4), so none may keep a copy. */
        unlink_all(links, done);
    }
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    if (qfd >= 0)
        close(qfd);
    free(fds);
    free(links);
    drop_spool(m);
    return rc;
}

int
maildir_commit(struct maildir_msg *m, const char *const *paths, size_t n)
{
    return maildir_deliver(m, "/", paths, n, NULL);
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
    if (tmpl == NULL)
        return 0; /* a pure relay: no mailboxes to share it with */
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
maildir_spool_clean(const char *spool, unsigned min_age)
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
        struct stat st, st2;
        int fd;

        if (d->d_name[0] == '.')
            continue;
        if (join(path, sizeof(path), tmp, d->d_name) != 0 ||
            lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        /* Young (or dated in the future): it may be between its O_EXCL
         * creation and its flock(). */
        if (now.tv_sec - st.st_mtime < (time_t)min_age)
            continue;
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                            O_CLOEXEC);
        if (fd < 0)
            continue;
        /* A live message holds its lock.  flock() locks belong to open
         * file descriptions, so the locks of this process's own messages
         * stop us too.  Removed while we hold the lock, and only if the
         * name is still the file we locked. */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st2) == 0 &&
            st2.st_dev == st.st_dev && st2.st_ino == st.st_ino &&
            st2.st_nlink > 0 && unlink(path) == 0)
            removed++;
        close(fd);
    }
    closedir(dir);
    return removed;
}
