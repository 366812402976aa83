/*
 * postern user - edit a passwd-file: add, passwd, del, list.
 *
 * An edit changes only the bytes of the user it is about: every other
 * line, comment, blank line and line end stays byte for byte.  The new
 * file is written beside the old one, fsync'd, renamed over it, and the
 * directory fsync'd, so a crash leaves either the old file or the new one.
 * Concurrent postern runs serialise on a lock of the directory.  Any error
 * leaves the file untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/cred.h>
#include <postern/passwd.h>

#include "cmd_cred.h"
#include "fileio.h"

/* Largest user file edited, in bytes. */
#define USER_FILE_MAX ((size_t)256 << 20)

enum user_action {
    USER_ADD = 0,  /* a new user; refused if present */
    USER_PASSWD,   /* new verifiers for an existing user */
    USER_DEL,      /* remove the user's line */
    USER_LIST,     /* print users and their schemes */
};

struct user_file {
    char path[PATH_MAX];  /* after following a symbolic link */
    char dir[PATH_MAX];
    int dir_fd;           /* locked for the whole edit */
    int exists;
    struct stat st;       /* of the file, when it exists */
    uint8_t *data;        /* its bytes (secret: wiped on free) */
    size_t len;
};

static void
user_usage(FILE *f)
{
    fprintf(f,
            "usage: postern user add    -f FILE USER [-s SCHEMES] "
            "[-r REALM] [--rounds N]\n"
            "       postern user passwd -f FILE USER [-s SCHEMES] "
            "[-r REALM] [--rounds N]\n"
            "       postern user del    -f FILE USER\n"
            "       postern user list   -f FILE [USER]\n"
            "\n"
            "Edit a passwd-file (name:{SCHEME}value[:uid:gid:gecos:home:"
            "shell:extra])\n"
            "in place, atomically, keeping every other line as it is.  The\n"
            "password is read from the terminal without echo (twice), or as\n"
            "one line of standard input when that is not a terminal.\n"
            "\n"
            "  -f, --file FILE  the user file (add creates it, mode 0600)\n"
            "  -s, --scheme S   schemes, comma-separated (add: "
            CMD_CRED_DEFAULT_SCHEMES ";\n"
            "                   passwd: the ones the user has now)\n"
            "  -r, --realm R    DIGEST-MD5 realm (default: after the last "
            "'@' of USER)\n"
            "      --rounds N   SCRAM iterations (default 4096), SHA*-CRYPT "
            "rounds,\n"
            "                   BLF-CRYPT cost\n"
            "  -h, --help       this help\n"
            "\n"
            "Exit: 0 done, 64 usage, 65 bad file or data (file:line given),\n"
            "66 no such file, 67 no such user, 73 cannot create the new "
            "file,\n"
            "74 I/O error.\n"
            "\n"
            "%s",
            cmd_cred_legacy_note);
}

static void
user_file_clear(struct user_file *uf)
{
    if (uf->data != NULL)
        OPENSSL_clear_free(uf->data, uf->len + 1);
    uf->data = NULL;
    if (uf->dir_fd >= 0)
        close(uf->dir_fd); /* drops the lock */
    uf->dir_fd = -1;
}

/*
 * Resolve path (following a symbolic link, so the rename replaces the
 * target, not the link), lock its directory, read the file.
 */
static int
user_file_open(const char *path, int must_exist, struct user_file *uf)
{
    char tmp[PATH_MAX];
    size_t cap;
    int fd;

    memset(uf, 0, sizeof(*uf));
    uf->dir_fd = -1;
    if (strlen(path) >= sizeof(tmp)) {
        fprintf(stderr, "postern: %s: path too long\n", path);
        return EX_USAGE;
    }
    if (realpath(path, uf->path) == NULL) {
        if (errno != ENOENT || must_exist) {
            fprintf(stderr, "postern: %s: %s\n", path, strerror(errno));
            return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
        }
        /* A new file: its directory must exist. */
        snprintf(uf->path, sizeof(uf->path), "%s", path);
    }
    snprintf(tmp, sizeof(tmp), "%s", uf->path);
    snprintf(uf->dir, sizeof(uf->dir), "%s", dirname(tmp));
    uf->dir_fd = open(uf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (uf->dir_fd < 0) {
        fprintf(stderr, "postern: %s: %s\n", uf->dir, strerror(errno));
        return errno == ENOENT ? EX_CANTCREAT : EX_IOERR;
    }
    if (flock(uf->dir_fd, LOCK_EX) < 0) {
        fprintf(stderr, "postern: cannot lock %s: %s\n", uf->dir,
                strerror(errno));
        return EX_IOERR;
    }
    /* Read only after the lock: another postern may just have renamed a
     * new version into place. */
    fd = open(uf->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT && !must_exist)
            return 0;
        fprintf(stderr, "postern: %s: %s\n", path, strerror(errno));
        return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
    }
    if (fstat(fd, &uf->st) < 0 || !S_ISREG(uf->st.st_mode)) {
        fprintf(stderr, "postern: %s: not a regular file\n", path);
        close(fd);
        return EX_DATAERR;
    }
    if ((uintmax_t)uf->st.st_size > USER_FILE_MAX) {
        fprintf(stderr, "postern: %s: larger than %zu bytes\n", path,
                USER_FILE_MAX);
        close(fd);
        return EX_DATAERR;
    }
    uf->exists = 1;
    cap = (size_t)uf->st.st_size;
    uf->data = malloc(cap + 1);
    if (uf->data == NULL) {
        close(fd);
        return EX_OSERR;
    }
    if (fileio_read_full(fd, uf->data, cap, &uf->len) < 0) {
        fprintf(stderr, "postern: %s: %s\n", path, strerror(errno));
        close(fd);
        return EX_IOERR;
    }
    close(fd);
    uf->data[uf->len] = '\0';
    return 0;
}

/* Write data as the new content of uf->path: temporary file in the same
 * directory, fsync, rename, fsync of the directory. */
static int
user_file_replace(struct user_file *uf, const uint8_t *data, size_t len)
{
    char tmp[PATH_MAX];
    const char *base = strrchr(uf->path, '/');
    size_t off = 0;
    int fd, n;

    base = base != NULL ? base + 1 : uf->path;
    n = snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", uf->dir, base);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        fprintf(stderr, "postern: %s: path too long\n", uf->path);
        return EX_CANTCREAT;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "postern: cannot create a file in %s: %s\n",
                uf->dir, strerror(errno));
        return EX_CANTCREAT;
    }
    /* The new file gets the old one's mode and owner (a new one 0600). */
    if (fchmod(fd, uf->exists ? (uf->st.st_mode & 07777) : 0600) < 0 ||
        (uf->exists && (uf->st.st_uid != geteuid() ||
                        uf->st.st_gid != getegid()) &&
         fchown(fd, uf->st.st_uid, uf->st.st_gid) < 0)) {
        fprintf(stderr, "postern: %s: cannot keep mode and owner: %s\n",
                tmp, strerror(errno));
        goto fail;
    }
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "postern: %s: %s\n", tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        fprintf(stderr, "postern: %s: fsync: %s\n", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        fprintf(stderr, "postern: %s: %s\n", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, uf->path) < 0) {
        fprintf(stderr, "postern: rename %s to %s: %s\n", tmp, uf->path,
                strerror(errno));
        goto fail;
    }
    /* The rename is durable once the directory is. */
    if (fsync(uf->dir_fd) < 0) {
        fprintf(stderr, "postern: %s: fsync: %s\n", uf->dir,
                strerror(errno));
        return EX_IOERR;
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return EX_IOERR;
}

/* Parse the file; on error print FILE:LINE: message. */
static int
user_file_parse(const struct user_file *uf, const char *shown,
                struct pst_passwd **p)
{
    struct pst_passwd_error err;
    int rc = pst_passwd_parse(uf->data != NULL ? uf->data
                                               : (const uint8_t *)"",
                              uf->len, p, &err);

    if (rc == 0)
        return 0;
    if (err.line > 0)
        fprintf(stderr, "postern: %s:%u: %s\n", shown, err.line,
                err.message);
    else
        fprintf(stderr, "postern: %s: %s\n", shown,
                err.message[0] != '\0' ? err.message : pst_strerror(rc));
    fprintf(stderr, "postern: %s left unchanged; fix it first\n", shown);
    return rc == PST_ENOMEM ? EX_OSERR : EX_DATAERR;
}

/*
 * The schemes of a password field as a comma list for pst_cred_make():
 * "{SCRAM-SHA-256}.. {CRAM-MD5}.." -> "SCRAM-SHA-256,CRAM-MD5"; a value
 * without {SCHEME} is CRYPT.
 */
static int
user_schemes_of(const char *field, size_t len, char *out, size_t size)
{
    size_t i = 0, o = 0;

    while (i < len) {
        const char *name = "CRYPT";
        size_t nl = 5, e = i;

        while (e < len && field[e] != ' ')
            e++;
        if (field[i] == '{') {
            const char *close = memchr(field + i, '}', e - i);

            if (close != NULL) {
                name = field + i + 1;
                nl = (size_t)(close - name);
            }
        }
        if (o + nl + 2 > size)
            return -1;
        if (o > 0)
            out[o++] = ',';
        memcpy(out + o, name, nl);
        o += nl;
        i = e + 1;
    }
    out[o] = '\0';
    return o > 0 ? 0 : -1;
}

static int
user_list(const struct pst_passwd *p, const char *only, const char *shown,
          const uint8_t *text)
{
    int found = 0;

    for (size_t i = 0; i < pst_passwd_count(p); i++) {
        const struct pst_passwd_entry *e = pst_passwd_entry_at(p, i);
        char schemes[512];

        if (only != NULL && strcmp(e->name, only) != 0)
            continue;
        found = 1;
        if (user_schemes_of((const char *)text + e->pass_off, e->pass_len,
                            schemes, sizeof(schemes)) < 0)
            snprintf(schemes, sizeof(schemes), "-");
        printf("%s %s%s%s\n", e->name, schemes, e->extra_len > 0 ? " " : "",
               e->extra);
    }
    if (only != NULL && !found) {
        fprintf(stderr, "postern: no user '%s' in %s\n", only, shown);
        return EX_NOUSER;
    }
    if (fflush(stdout) != 0)
        return EX_IOERR;
    return 0;
}

enum user_option {
    USER_OPT_ROUNDS = 256, /* long-only options start past any char */
};

int
cmd_user_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        {"scheme", required_argument, NULL, 's'},
        {"realm", required_argument, NULL, 'r'},
        {"rounds", required_argument, NULL, USER_OPT_ROUNDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct {
        const char *name;
        enum user_action action;
    } actions[] = {
        {"add", USER_ADD},
        {"passwd", USER_PASSWD},
        {"del", USER_DEL},
        {"list", USER_LIST},
    };
    const char *file = NULL, *schemes = NULL, *realm = NULL, *name = NULL;
    const struct pst_passwd_entry *e = NULL;
    enum user_action action = USER_LIST;
    struct pst_passwd *p = NULL;
    struct pst_buf pw, out;
    struct user_file uf = {.dir_fd = -1};
    char kept[512];
    unsigned rounds = 0;
    size_t i;
    int opt, rc;

    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "--help") == 0)) {
        user_usage(stdout);
        return 0;
    }
    if (argc < 2) {
        user_usage(stderr);
        return EX_USAGE;
    }
    for (i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strcmp(argv[1], actions[i].name) == 0)
            break;
    if (i == sizeof(actions) / sizeof(actions[0])) {
        fprintf(stderr, "postern user: unknown action '%s' (add, passwd, "
                "del, list)\n", argv[1]);
        return EX_USAGE;
    }
    action = actions[i].action;
    argc--;
    argv++;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "f:s:r:h", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 's':
            schemes = optarg;
            break;
        case 'r':
            realm = optarg;
            break;
        case USER_OPT_ROUNDS:
            if ((rc = cmd_cred_rounds(optarg, &rounds)) != 0)
                return rc;
            break;
        case 'h':
            user_usage(stdout);
            return 0;
        default:
            user_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc)
        name = argv[optind++];
    if (file == NULL || optind != argc ||
        (name == NULL && action != USER_LIST) ||
        (action == USER_DEL && (schemes != NULL || rounds != 0)) ||
        (action == USER_LIST && (schemes != NULL || rounds != 0))) {
        user_usage(stderr);
        return EX_USAGE;
    }
    if (name != NULL) {
        const char *why;

        if (pst_passwd_check_name(name, strlen(name), &why) < 0) {
            fprintf(stderr, "postern: bad user name '%s': %s\n", name, why);
            return EX_DATAERR;
        }
    }

    pst_buf_init(&pw, CMD_CRED_PW_MAX, 1);
    pst_buf_init(&out, USER_FILE_MAX + 4096, 1);
    rc = user_file_open(file, action != USER_ADD, &uf);
    if (rc != 0)
        goto out;
    if ((rc = user_file_parse(&uf, file, &p)) != 0)
        goto out;
    if (action == USER_LIST) {
        rc = user_list(p, name, file, uf.data);
        goto out;
    }
    e = pst_passwd_lookup(p, name, strlen(name));
    if (action == USER_ADD && e != NULL) {
        fprintf(stderr, "postern: user '%s' already exists in %s (line %u); "
                "use 'postern user passwd' to change the password\n", name,
                file, e->line);
        rc = EX_DATAERR;
        goto out;
    }
    if (action != USER_ADD && e == NULL) {
        fprintf(stderr, "postern: no user '%s' in %s\n", name, file);
        rc = EX_NOUSER;
        goto out;
    }
    if (action == USER_PASSWD && schemes == NULL) {
        if (user_schemes_of((const char *)uf.data + e->pass_off, e->pass_len,
                            kept, sizeof(kept)) == 0)
            schemes = kept;
    }
    if (schemes == NULL)
        schemes = CMD_CRED_DEFAULT_SCHEMES;

    /* The new content: the old bytes around the change. */
    switch (action) {
    case USER_ADD:
        if ((rc = cmd_cred_read_password(1, 0, &pw)) != 0)
            goto out;
        if (pst_buf_append(&out, uf.data != NULL ? uf.data
                                                 : (const uint8_t *)"",
                           uf.len) < 0 ||
            (uf.len > 0 && uf.data[uf.len - 1] != '\n' &&
             pst_buf_append_byte(&out, '\n') < 0) ||
            pst_buf_printf(&out, "%s:", name) < 0) {
            rc = EX_OSERR;
            goto out;
        }
        if ((rc = cmd_cred_make(schemes, name, realm, pw.data, pw.len,
                                rounds, &out)) != 0)
            goto out;
        if (pst_buf_append_byte(&out, '\n') < 0) {
            rc = EX_OSERR;
            goto out;
        }
        break;
    case USER_PASSWD:
        if ((rc = cmd_cred_read_password(1, 0, &pw)) != 0)
            goto out;
        if (pst_buf_append(&out, uf.data, e->pass_off) < 0) {
            rc = EX_OSERR;
            goto out;
        }
        if ((rc = cmd_cred_make(schemes, name, realm, pw.data, pw.len,
                                rounds, &out)) != 0)
            goto out;
        if (pst_buf_append(&out, uf.data + e->pass_off + e->pass_len,
                           uf.len - e->pass_off - e->pass_len) < 0) {
            rc = EX_OSERR;
            goto out;
        }
        break;
    case USER_DEL:
        if (pst_buf_append(&out, uf.data, e->line_off) < 0 ||
            pst_buf_append(&out, uf.data + e->line_off + e->line_len,
                           uf.len - e->line_off - e->line_len) < 0) {
            rc = EX_OSERR;
            goto out;
        }
        break;
    case USER_LIST:
        break;
    }
    /* Never write what we could not read back. */
    {
        struct pst_passwd *check = NULL;
        struct pst_passwd_error err;

        if (pst_passwd_parse(out.data != NULL ? out.data
                                              : (const uint8_t *)"",
                             out.len, &check, &err) < 0) {
            fprintf(stderr, "postern: internal error: the new file would "
                    "not parse (line %u: %s); %s left unchanged\n",
                    err.line, err.message, file);
            rc = EX_SOFTWARE;
            goto out;
        }
        pst_passwd_free(check);
    }
    rc = user_file_replace(&uf, out.data != NULL ? out.data
                                                 : (const uint8_t *)"",
                           out.len);
out:
    pst_passwd_free(p);
    pst_buf_clear(&pw);
    pst_buf_clear(&out);
    user_file_clear(&uf);
    return rc;
}
