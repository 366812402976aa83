/*
 * posternd - the privilege drop and what the user must be able to write
 * (priv.h).
 */
#define _GNU_SOURCE /* setresuid(), setresgid(), getresuid() */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <postern/error.h>

#include "priv.h"

/* --- The user ------------------------------------------------------------ */

int
priv_lookup(const char *name, struct priv_user *out, char *err, size_t n)
{
    struct passwd pw, *res = NULL;
    long size = sysconf(_SC_GETPW_R_SIZE_MAX);
    char *buf;
    int rc;

    memset(out, 0, sizeof(*out));
    if (strlen(name) >= sizeof(out->name)) {
        snprintf(err, n, "user = %.64s...: name too long", name);
        return PST_EINVAL;
    }
    if (size < 1024)
        size = 16384;
    buf = malloc((size_t)size);
    if (buf == NULL) {
        snprintf(err, n, "out of memory");
        return PST_ENOMEM;
    }
    rc = getpwnam_r(name, &pw, buf, (size_t)size, &res);
    if (res == NULL) {
        snprintf(err, n, "user = %s: %s", name,
                 rc != 0 ? strerror(rc) : "no such user");
        free(buf);
        return PST_EINVAL;
    }
    /* Running as root, or with root's group, would drop nothing. */
    if (pw.pw_uid == 0 || pw.pw_gid == 0) {
        snprintf(err, n, "user = %s: has %s 0 (root); name an "
                 "unprivileged user of its own (posternd.conf(5))", name,
                 pw.pw_uid == 0 ? "uid" : "primary group");
        free(buf);
        return PST_EINVAL;
    }
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->uid = pw.pw_uid;
    out->gid = pw.pw_gid;
    free(buf);
    return 0;
}

/* --- The drop ------------------------------------------------------------ */

int
priv_drop(const struct priv_user *u, char *err, size_t n)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, groups[2];
    int ngroups;

    /* Groups first: once the uid is not 0, they cannot change.  The
     * supplementary list becomes the user's own group alone (Postfix
     * set_ugid(): setgroups(1, &gid)), so that no group of root's stays. */
    if (setgroups(1, &u->gid) != 0) {
        snprintf(err, n, "setgroups(%lu): %s", (unsigned long)u->gid,
                 strerror(errno));
        return PST_EIO;
    }
    /* Real, effective and saved ids alike: a saved id of 0 would let
     * the process become root again with seteuid(0). */
    if (setresgid(u->gid, u->gid, u->gid) != 0) {
        snprintf(err, n, "setresgid(%lu): %s", (unsigned long)u->gid,
                 strerror(errno));
        return PST_EIO;
    }
    if (setresuid(u->uid, u->uid, u->uid) != 0) {
        snprintf(err, n, "setresuid(%lu): %s", (unsigned long)u->uid,
                 strerror(errno));
        return PST_EIO;
    }
    /* Trust, but verify (OpenBSD's and Postfix's habit): every id is the
     * user's, and root cannot be had back. */
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 ||
        ru != u->uid || eu != u->uid || su != u->uid || rg != u->gid ||
        eg != u->gid || sg != u->gid) {
        snprintf(err, n, "the ids did not change to %s's", u->name);
        return PST_ESTATE;
    }
    ngroups = getgroups(2, groups);
    if (ngroups != 1 || groups[0] != u->gid) {
        snprintf(err, n, "the supplementary groups did not change");
        return PST_ESTATE;
    }
    if (setuid(0) != -1 || seteuid(0) != -1 || setgid(0) != -1) {
        snprintf(err, n, "root could be had back after the drop to %s",
                 u->name);
        return PST_ESTATE;
    }
    /* The process holds the TLS key and every user's verifiers: no core
     * file of it, and no ptrace from the user's other processes. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        snprintf(err, n, "prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
        return PST_EIO;
    }
    return 0;
}

int
priv_make_dir(const char *path, unsigned mode, const struct priv_user *u)
{
    int fd;

    if (mkdir(path, (mode_t)mode) != 0)
        return errno == EEXIST ? 0 : PST_EIO;
    /* Made now, by us: hand it over, without following a link that
     * someone might have put there meanwhile. */
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return PST_EIO;
    if (fchown(fd, u->uid, u->gid) != 0) {
        int e = errno;

        close(fd);
        errno = e;
        return PST_EIO;
    }
    close(fd);
    return 0;
}

/* --- What the user must be able to write --------------------------------- */

struct priv_walk {
    const char *who;
    void (*report)(void *ctx, enum priv_severity severity,
                   const char *message);
    void *ctx;
    unsigned errors, warnings, reported;
};

static void priv_problem(struct priv_walk *w, enum priv_severity sev,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
priv_problem(struct priv_walk *w, enum priv_severity sev, const char *fmt,
             ...)
{
    char msg[PATH_MAX + 256];
    va_list ap;

    if (sev == PRIV_ERROR)
        w->errors++;
    else
        w->warnings++;
    if (w->reported >= PRIV_REPORT_MAX)
        return;
    w->reported++;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    w->report(w->ctx, sev, msg);
}

/* Read, write and search: what delivery and the spool need of a
 * directory (it opens, creates and links in each). */
#define PRIV_RWX (R_OK | W_OK | X_OK)

/*
 * The directory path (what names it in messages) must be the user's to
 * write; if it does not exist, its nearest existing parent must be, so
 * that posternd can make it.  Returns 1 when path is a directory the
 * user may use, 0 otherwise (reported, unless it is missing and may be
 * made).
 */
static int
priv_check_dir(struct priv_walk *w, enum priv_severity sev,
               const char *what, const char *path)
{
    char parent[PATH_MAX];
    struct stat st;
    char *slash;

    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            priv_problem(w, sev, "%s %s: not a directory", what, path);
            return 0;
        }
        if (access(path, PRIV_RWX) != 0) {
            priv_problem(w, sev, "%s %s: not writable by %s: owner uid "
                         "%lu, mode %04o", what, path, w->who,
                         (unsigned long)st.st_uid,
                         (unsigned)(st.st_mode & 07777));
            return 0;
        }
        return 1;
    }
    if (errno != ENOENT) {
        priv_problem(w, sev, "%s %s: %s cannot reach it: %s", what, path,
                     w->who, strerror(errno));
        return 0;
    }
    /* Missing: the nearest parent that exists must take a new entry. */
    snprintf(parent, sizeof(parent), "%s", path);
    for (;;) {
        slash = strrchr(parent, '/');
        if (slash == NULL)
            return 0;
        if (slash == parent)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(parent, &st) == 0)
            break;
        if (errno != ENOENT || slash == parent) {
            priv_problem(w, sev, "%s %s: %s cannot reach %s: %s", what,
                         path, w->who, parent, strerror(errno));
            return 0;
        }
    }
    if (!S_ISDIR(st.st_mode) || access(parent, PRIV_RWX) != 0)
        priv_problem(w, sev, "%s %s: does not exist, and %s cannot make "
                     "it in %s", what, path, w->who, parent);
    return 0;
}

/*
 * A directory found below the mail root: dirfd/name is path.  Returns 1
 * when it is a directory the user may use (walk on), 0 otherwise (a
 * symbolic link or a directory the user cannot use: reported; anything
 * else: ignored).
 */
static int
priv_check_entry(struct priv_walk *w, int dirfd, const char *name,
                 const char *path)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return 0;
    if (S_ISLNK(st.st_mode)) {
        priv_problem(w, PRIV_WARNING, "mailbox %s: a symbolic link "
                     "(delivery refuses to follow it)", path);
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (faccessat(dirfd, name, PRIV_RWX, 0) != 0) {
        priv_problem(w, PRIV_WARNING, "mailbox %s: not writable by %s: "
                     "owner uid %lu, mode %04o; delivery to it fails "
                     "with 451 4.3.0", path, w->who,
                     (unsigned long)st.st_uid,
                     (unsigned)(st.st_mode & 07777));
        return 0;
    }
    return 1;
}

/*
 * Walk the existing directories below path (len bytes in buf, a
 * directory the user may use) along the rest of the template: an escape
 * ("%d", "%n", "%u", or a part with one) is every subdirectory there,
 * other text that name; at the end of the template, path is a Maildir,
 * and its cur/, new/ and tmp/ are checked.
 */
static void
priv_walk_below(struct priv_walk *w, char *buf, size_t len,
                const char *rest)
{
    static const char *const subs[] = {"cur", "new", "tmp"};
    char name[NAME_MAX + 1];
    struct dirent *d;
    size_t clen;
    DIR *dir;
    int fd;

    while (*rest == '/')
        rest++;
    clen = strcspn(rest, "/");
    /* Below the root every entry was checked (priv_check_entry()) not to
     * be a symbolic link; the root may be one. */
    fd = open(buf[0] != '\0' ? buf : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (clen == 0) {
        for (size_t i = 0; i < 3; i++) {
            if (len + 1 + strlen(subs[i]) >= PATH_MAX)
                break;
            snprintf(buf + len, PATH_MAX - len, "/%s", subs[i]);
            (void)priv_check_entry(w, fd, subs[i], buf);
            buf[len] = '\0';
        }
        close(fd);
        return;
    }
    if (memchr(rest, '%', clen) == NULL) {
        if (clen <= NAME_MAX && len + 1 + clen < PATH_MAX) {
            memcpy(name, rest, clen);
            name[clen] = '\0';
            snprintf(buf + len, PATH_MAX - len, "/%s", name);
            if (priv_check_entry(w, fd, name, buf))
                priv_walk_below(w, buf, len + 1 + clen, rest + clen);
            buf[len] = '\0';
        }
        close(fd);
        return;
    }
    dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return;
    }
    while ((d = readdir(dir)) != NULL) {
        size_t nlen = strlen(d->d_name);

        /* An expanded part never starts with "." (config.h). */
        if (d->d_name[0] == '.' || len + 1 + nlen >= PATH_MAX)
            continue;
        snprintf(buf + len, PATH_MAX - len, "/%s", d->d_name);
        if (priv_check_entry(w, dirfd(dir), d->d_name, buf))
            priv_walk_below(w, buf, len + 1 + nlen, rest + clen);
        buf[len] = '\0';
    }
    closedir(dir);
}

unsigned
priv_check_dirs(const struct config *cfg, int walk, const char *who,
                void (*report)(void *ctx, enum priv_severity severity,
                               const char *message),
                void *ctx, unsigned *warnings)
{
    struct priv_walk w = {.who = who, .report = report, .ctx = ctx};
    char path[PATH_MAX], *root;

    if (priv_check_dir(&w, PRIV_ERROR, "spool", cfg->spool)) {
        snprintf(path, sizeof(path), "%s/tmp", cfg->spool);
        (void)priv_check_dir(&w, PRIV_ERROR, "spool", path);
    }
    if (cfg->queue != NULL)
        (void)priv_check_dir(&w, PRIV_ERROR, "queue", cfg->queue);
    root = config_mailbox_root(cfg->mailbox);
    if (root != NULL) {
        size_t len = strlen(root);

        /* The root may be a symbolic link (the administrator's: delivery
         * follows it); below it, nothing may be. */
        if (priv_check_dir(&w, PRIV_WARNING, "mail root", root) && walk &&
            len < sizeof(path)) {
            memcpy(path, root, len + 1);
            if (len == 1)
                len = 0; /* "/" + "/%d" */
            priv_walk_below(&w, path, len, cfg->mailbox + strlen(root));
        }
        free(root);
    }
    if (warnings != NULL)
        *warnings = w.warnings;
    return w.errors;
}

/* --- posternd -t ---------------------------------------------------------- */

struct priv_child {
    const char *conf;
};

static void
priv_child_report(void *ctx, enum priv_severity sev, const char *message)
{
    const struct priv_child *c = ctx;

    fprintf(stderr, "posternd: %s: %s%s\n", c->conf,
            sev == PRIV_WARNING ? "warning: " : "", message);
}

int
priv_check_as(const struct priv_user *u, const struct config *cfg,
              const char *conf, unsigned *warnings, char *err, size_t n)
{
    unsigned counts[2] = {0, 0};
    int fds[2], status;
    ssize_t got;
    pid_t pid;

    *warnings = 0;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(err, n, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        snprintf(err, n, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        struct priv_child c = {.conf = conf};
        char who[PRIV_NAME_MAX + 32], why[256];
        int rc = 0;

        close(fds[0]);
        if (priv_drop(u, why, sizeof(why)) != 0) {
            fprintf(stderr, "posternd: %s: user = %s: %s\n", conf, u->name,
                    why);
            rc = 1;
        } else {
            snprintf(who, sizeof(who), "%s (uid %lu)", u->name,
                     (unsigned long)u->uid);
            counts[0] = priv_check_dirs(cfg, 1, who, priv_child_report, &c,
                                        &counts[1]);
            if (counts[1] > PRIV_REPORT_MAX || counts[0] > PRIV_REPORT_MAX)
                fprintf(stderr, "posternd: %s: warning: %u problems in "
                        "all; the first %d are above\n", conf,
                        counts[0] + counts[1], PRIV_REPORT_MAX);
            if (write(fds[1], counts, sizeof(counts)) !=
                (ssize_t)sizeof(counts))
                rc = 1;
        }
        fflush(stderr);
        _exit(rc);
    }
    close(fds[1]);
    do
        got = read(fds[0], counts, sizeof(counts));
    while (got < 0 && errno == EINTR);
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != (ssize_t)sizeof(counts) || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        snprintf(err, n, "cannot check what %s may write: the check "
                 "as %s failed", u->name, u->name);
        return -1;
    }
    *warnings = counts[1];
    return (int)counts[0];
}
