/*
 * The relay queue on disk (see queue_file.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <postern/error.h>

#include "fileio.h"
#include "queue_file.h"

#define QUEUE_MAGIC "postern-queue"

/* --- Text ---------------------------------------------------------------- */

/* RFC 3461 §4: xtext.  Every octet outside "!".."~", and "+" and "=",
 * as "+" and two upper-case hex digits. */
static int
xtext_append(struct pst_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0;
         p++) {
        if (*p < '!' || *p > '~' || *p == '+' || *p == '=') {
            char e[3] = {'+', hex[*p >> 4], hex[*p & 15]};

            rc = pst_buf_append(out, e, 3);
        } else {
            rc = pst_buf_append_byte(out, *p);
        }
    }
    return rc;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode xtext p[0..len) into a new string; NULL if malformed (an octet
 * that xtext escapes appearing bare, a bad "+XX", a NUL) or out of
 * memory (*nomem set). */
static char *
xtext_decode(const char *p, size_t len, int *nomem)
{
    char *s = malloc(len + 1);
    size_t n = 0;

    if (s == NULL) {
        *nomem = 1;
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '+') {
            int hi, lo;

            if (i + 2 >= len)
                goto bad;
            hi = hexval(p[i + 1]);
            lo = hexval(p[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            s[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c < '!' || c > '~' || c == '=') {
            goto bad;
        } else {
            s[n++] = (char)c;
        }
    }
    s[n] = '\0';
    return s;
bad:
    free(s);
    return NULL;
}

/* Reply text on one printable line of at most QUEUE_TEXT_MAX octets:
 * line breaks become " / ", other control and 8-bit octets "?". */
static int
text_append(struct pst_buf *out, const char *t)
{
    size_t start = out->len;
    int rc = 0;

    for (const unsigned char *p = (const unsigned char *)t; *p && rc == 0;
         p++) {
        if (out->len - start >= QUEUE_TEXT_MAX)
            break;
        if (*p == '\r')
            continue;
        if (*p == '\n')
            rc = p[1] != '\0' ? pst_buf_append_str(out, " / ") : 0;
        else if (*p < ' ' || *p > '~')
            rc = pst_buf_append_byte(out, '?');
        else
            rc = pst_buf_append_byte(out, *p);
    }
    return rc;
}

int
queue_id_valid(const char *id)
{
    size_t n = 0;

    if (id == NULL)
        return 0;
    for (; id[n] != '\0'; n++) {
        char c = id[n];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
              (c >= 'a' && c <= 'z')))
            return 0;
    }
    return n >= 1 && n <= QUEUE_ID_MAX;
}

/* A relay name: printable, no space (it is one word in the file). */
static int
word_ok(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return 0;
    return 1;
}

/* --- Format -------------------------------------------------------------- */

int
queue_env_format(const struct queue_env *e, struct pst_buf *out)
{
    int rc;

    if (!queue_id_valid(e->id) || !word_ok(e->relay) || e->nrcpt == 0 ||
        e->nrcpt > QUEUE_RCPT_MAX || e->sender == NULL)
        return PST_EINVAL;
    rc = pst_buf_printf(out, "%s %d\narrival %" PRId64 "\nsender ",
                        QUEUE_MAGIC, QUEUE_FORMAT, e->arrival);
    if (rc == 0)
        rc = xtext_append(out, e->sender);
    if (rc == 0)
        rc = pst_buf_printf(out, "\nrelay %s\nuser ", e->relay);
    if (rc == 0 && e->user != NULL)
        rc = xtext_append(out, e->user);
    if (rc == 0)
        rc = pst_buf_printf(out, "\noffset %" PRIu64 "\n", e->offset);
    for (size_t i = 0; i < e->nrcpt && rc == 0; i++) {
        if (e->rcpt[i].addr == NULL || e->rcpt[i].addr[0] == '\0')
            return PST_EINVAL;
        rc = pst_buf_append_str(out, "rcpt ");
        if (rc == 0)
            rc = xtext_append(out, e->rcpt[i].addr);
        if (rc == 0)
            rc = pst_buf_append_byte(out, '\n');
    }
    if (rc == 0)
        rc = pst_buf_append_str(out, "end\n");
    return rc;
}

int
queue_env_format_record(enum queue_record rec, size_t idx, int64_t now,
                        int64_t next, unsigned code, const char *text,
                        struct pst_buf *out)
{
    int rc;

    switch (rec) {
    case QUEUE_REC_SENT:
    case QUEUE_REC_FAILED:
        rc = pst_buf_printf(out, "%s %zu %" PRId64 " %u ",
                            rec == QUEUE_REC_SENT ? "sent" : "failed", idx,
                            now, code);
        break;
    case QUEUE_REC_DEFERRED:
        rc = pst_buf_printf(out, "deferred %" PRId64 " %" PRId64 " %u ", now,
                            next, code);
        break;
    case QUEUE_REC_BOUNCED:
        return pst_buf_printf(out, "bounced %" PRId64 "\n", now);
    default:
        return PST_EINVAL;
    }
    if (rc == 0 && text != NULL)
        rc = text_append(out, text);
    if (rc == 0)
        rc = pst_buf_append_byte(out, '\n');
    return rc;
}

/* --- Parse --------------------------------------------------------------- */

struct parse {
    const char *p;        /* the current line */
    size_t len;           /* its length, without the "\n" */
    unsigned line;
    char *err;
    size_t err_size;
};

static int
perr(struct parse *ps, const char *what)
{
    snprintf(ps->err, ps->err_size, "line %u: %s", ps->line, what);
    return PST_ESYNTAX;
}

/* The value after "key " on the current line (*v, *vlen), or -1. */
static int
line_value(const struct parse *ps, const char *key, const char **v,
           size_t *vlen)
{
    size_t k = strlen(key);

    if (ps->len < k || memcmp(ps->p, key, k) != 0) /* not secret */
        return -1;
    if (ps->len == k) {
        *v = ps->p + k;
        *vlen = 0;
        return 0;
    }
    if (ps->p[k] != ' ')
        return -1;
    *v = ps->p + k + 1;
    *vlen = ps->len - k - 1;
    return 0;
}

/* Decimal number at *s (advanced past it and one space, if any). */
static int
take_num(const char **s, const char *end, uint64_t *out)
{
    uint64_t n = 0;
    const char *p = *s;

    if (p >= end || *p < '0' || *p > '9')
        return -1;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p < end) {
        if (*p != ' ')
            return -1;
        p++;
    }
    *s = p;
    *out = n;
    return 0;
}

static char *
dup_range(const char *p, const char *end, int *nomem)
{
    char *s = malloc((size_t)(end - p) + 1);

    if (s == NULL) {
        *nomem = 1;
        return NULL;
    }
    memcpy(s, p, (size_t)(end - p));
    s[end - p] = '\0';
    return s;
}

/* Apply one appended record. */
static int
apply_record(struct parse *ps, struct queue_env *e, int *nomem)
{
    const char *v, *end = ps->p + ps->len;
    size_t vlen;
    uint64_t idx, now, next, code;
    int failed;

    if (line_value(ps, "bounced", &v, &vlen) == 0) {
        if (take_num(&v, end, &now) < 0 || v != end)
            return perr(ps, "bad bounced record");
        e->bounced = 1;
        return 0;
    }
    if (line_value(ps, "deferred", &v, &vlen) == 0) {
        if (take_num(&v, end, &now) < 0 || take_num(&v, end, &next) < 0 ||
            take_num(&v, end, &code) < 0 || code > 999)
            return perr(ps, "bad deferred record");
        e->attempts++;
        e->last_attempt = (int64_t)now;
        e->next_attempt = (int64_t)next;
        free(e->last_reply);
        e->last_reply = dup_range(v, end, nomem);
        return e->last_reply == NULL ? PST_ENOMEM : 0;
    }
    failed = line_value(ps, "failed", &v, &vlen) == 0;
    if (!failed && line_value(ps, "sent", &v, &vlen) != 0)
        return perr(ps, "unknown record");
    if (take_num(&v, end, &idx) < 0 || take_num(&v, end, &now) < 0 ||
        take_num(&v, end, &code) < 0 || code > 999 || idx >= e->nrcpt)
        return perr(ps, "bad recipient record");
    {
        struct queue_rcpt *r = &e->rcpt[idx];

        r->state = failed ? QUEUE_RCPT_FAILED : QUEUE_RCPT_SENT;
        r->when = (int64_t)now;
        r->code = (unsigned)code;
        free(r->reply);
        r->reply = dup_range(v, end, nomem);
        return r->reply == NULL ? PST_ENOMEM : 0;
    }
}

/* The header block, one line at a time: returns 1 when "end" was seen. */
static int
apply_header(struct parse *ps, struct queue_env *e, unsigned *seen,
             int *nomem)
{
    const char *v, *end = ps->p + ps->len;
    size_t vlen;
    uint64_t n;

    enum { S_ARRIVAL = 1, S_SENDER = 2, S_RELAY = 4, S_USER = 8,
           S_OFFSET = 16 };

    if (ps->len == 3 && memcmp(ps->p, "end", 3) == 0) { /* not secret */
        if (*seen != (S_ARRIVAL | S_SENDER | S_RELAY | S_USER | S_OFFSET) ||
            e->nrcpt == 0)
            return perr(ps, "header incomplete");
        return 1;
    }
    if (line_value(ps, "rcpt", &v, &vlen) == 0) {
        struct queue_rcpt *r;

        if (vlen == 0 || e->nrcpt >= QUEUE_RCPT_MAX)
            return perr(ps, "bad rcpt");
        r = realloc(e->rcpt, (e->nrcpt + 1) * sizeof(*r));
        if (r == NULL) {
            *nomem = 1;
            return PST_ENOMEM;
        }
        e->rcpt = r;
        r = &e->rcpt[e->nrcpt];
        *r = (struct queue_rcpt){0};
        r->addr = xtext_decode(v, vlen, nomem);
        if (r->addr == NULL)
            return *nomem ? PST_ENOMEM : perr(ps, "bad rcpt xtext");
        e->nrcpt++;
        return 0;
    }
    if (line_value(ps, "arrival", &v, &vlen) == 0) {
        if (*seen & S_ARRIVAL || take_num(&v, end, &n) < 0 || v != end)
            return perr(ps, "bad arrival");
        e->arrival = (int64_t)n;
        *seen |= S_ARRIVAL;
        return 0;
    }
    if (line_value(ps, "offset", &v, &vlen) == 0) {
        if (*seen & S_OFFSET || take_num(&v, end, &n) < 0 || v != end)
            return perr(ps, "bad offset");
        e->offset = n;
        *seen |= S_OFFSET;
        return 0;
    }
    if (line_value(ps, "relay", &v, &vlen) == 0) {
        if (*seen & S_RELAY || vlen == 0)
            return perr(ps, "bad relay");
        e->relay = dup_range(v, end, nomem);
        if (e->relay == NULL || !word_ok(e->relay))
            return *nomem ? PST_ENOMEM : perr(ps, "bad relay");
        *seen |= S_RELAY;
        return 0;
    }
    if (line_value(ps, "sender", &v, &vlen) == 0 ||
        line_value(ps, "user", &v, &vlen) == 0) {
        int sender = ps->p[0] == 's';
        unsigned bit = sender ? S_SENDER : S_USER;
        char *s;

        if (*seen & bit)
            return perr(ps, "repeated line");
        s = xtext_decode(v, vlen, nomem);
        if (s == NULL)
            return *nomem ? PST_ENOMEM : perr(ps, "bad xtext");
        if (sender)
            e->sender = s;
        else
            e->user = s;
        *seen |= bit;
        return 0;
    }
    return perr(ps, "unknown line in the header");
}

int
queue_env_parse(const char *id, const uint8_t *p, size_t len,
                struct queue_env **out, char *err, size_t err_size)
{
    struct queue_env *e;
    struct parse ps = {.err = err, .err_size = err_size};
    const char *s = (const char *)p, *end = s + len;
    unsigned seen = 0;
    int in_header = 1, nomem = 0, rc = 0;
    char magic[32];

    *out = NULL;
    if (!queue_id_valid(id)) {
        snprintf(err, err_size, "not a queue id");
        return PST_ESYNTAX;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return PST_ENOMEM;
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(magic, sizeof(magic), "%s %d", QUEUE_MAGIC, QUEUE_FORMAT);
    while (s < end && rc == 0) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));

        /* A last line without its "\n": a record cut short by a crash,
         * never acted on (queue_file.h). */
        if (nl == NULL)
            break;
        ps.p = s;
        ps.len = (size_t)(nl - s);
        ps.line++;
        s = nl + 1;
        if (memchr(ps.p, '\0', ps.len) != NULL) {
            rc = perr(&ps, "NUL in the file");
            break;
        }
        if (ps.line == 1) {
            if (ps.len != strlen(magic) ||
                memcmp(ps.p, magic, ps.len) != 0) /* not secret */
                rc = perr(&ps, "not a postern queue file of this format");
            continue;
        }
        if (in_header) {
            rc = apply_header(&ps, e, &seen, &nomem);
            if (rc == 1) {
                in_header = 0;
                rc = 0;
            }
        } else {
            rc = apply_record(&ps, e, &nomem);
        }
    }
    if (rc == 0 && in_header) {
        if (ps.line == 0) {
            snprintf(err, err_size, len == 0 ? "empty file"
                                             : "line 1: no newline");
            rc = PST_ESYNTAX;
        } else {
            rc = perr(&ps, "no end of the header");
        }
    }
    if (nomem)
        rc = PST_ENOMEM;
    if (rc < 0) {
        queue_env_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void
queue_env_free(struct queue_env *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->nrcpt; i++) {
        free(e->rcpt[i].addr);
        free(e->rcpt[i].reply);
    }
    free(e->rcpt);
    free(e->sender);
    free(e->relay);
    free(e->user);
    free(e->last_reply);
    free(e);
}

size_t
queue_env_count(const struct queue_env *e, enum queue_rcpt_state st)
{
    size_t n = 0;

    for (size_t i = 0; i < e->nrcpt; i++)
        n += e->rcpt[i].state == st;
    return n;
}

int
queue_env_finished(const struct queue_env *e)
{
    return queue_env_count(e, QUEUE_RCPT_PENDING) == 0;
}

/* --- Files --------------------------------------------------------------- */


static int
path_of(char *out, size_t n, const char *dir, const char *pre,
        const char *id, const char *suf)
{
    int k = snprintf(out, n, "%s/%s%s%s", dir, pre, id, suf);

    if (k < 0 || (size_t)k >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int
queue_file_check_dir(const char *dir, char *err, size_t err_size)
{
    struct stat st;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "queue %s: cannot create: %s", dir,
                 strerror(errno));
        return PST_EIO;
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_size, "queue %s: not a directory", dir);
        return PST_EIO;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "queue %s: not writable: %s", dir,
                 strerror(errno));
        return PST_EIO;
    }
    return 0;
}

int
queue_file_write_env(const char *dir, const struct queue_env *e)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    struct pst_buf b;
    int fd, rc, saved;

    pst_buf_init(&b, QUEUE_ENV_MAX, 0);
    rc = queue_env_format(e, &b);
    if (rc < 0) {
        pst_buf_clear(&b);
        return rc;
    }
    if (path_of(tmp, sizeof(tmp), dir, ".", e->id, ".env.tmp") < 0 ||
        path_of(final, sizeof(final), dir, "", e->id, ".env") < 0) {
        pst_buf_clear(&b);
        return PST_EIO;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0) {
        saved = errno;
        pst_buf_clear(&b);
        errno = saved;
        return PST_EIO;
    }
    if (fileio_write_all(fd, b.data, b.len) < 0 || fsync(fd) != 0) {
        saved = errno;
        close(fd);
        unlink(tmp);
        pst_buf_clear(&b);
        errno = saved;
        return PST_EIO;
    }
    pst_buf_clear(&b);
    if (close(fd) != 0 || rename(tmp, final) != 0) {
        saved = errno;
        unlink(tmp);
        errno = saved;
        return PST_EIO;
    }
    return 0;
}

int
queue_file_append(const char *dir, const char *id, enum queue_record rec,
                  size_t idx, int64_t now, int64_t next, unsigned code,
                  const char *text)
{
    char path[PATH_MAX];
    struct pst_buf b;
    int fd, rc, saved;

    if (path_of(path, sizeof(path), dir, "", id, ".env") < 0)
        return PST_EIO;
    pst_buf_init(&b, QUEUE_TEXT_MAX + 128, 0);
    rc = queue_env_format_record(rec, idx, now, next, code, text, &b);
    if (rc < 0) {
        pst_buf_clear(&b);
        return rc;
    }
    /* No O_CREAT: a record for a message that is gone must not make an
     * envelope of one line. */
    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        saved = errno;
        pst_buf_clear(&b);
        errno = saved;
        return PST_EIO;
    }
    /* One write(2) of the whole line: O_APPEND puts it at the end in one
     * piece. */
    rc = fileio_write_all(fd, b.data, b.len) < 0 || fdatasync(fd) != 0 ? PST_EIO
                                                                  : 0;
    saved = errno;
    close(fd);
    pst_buf_clear(&b);
    errno = saved;
    return rc;
}

int
queue_file_load(const char *dir, const char *id, struct queue_env **out,
                char *err, size_t err_size)
{
    char path[PATH_MAX];
    struct stat st;
    uint8_t *data;
    size_t got = 0;
    int fd, rc, saved;

    *out = NULL;
    if (!queue_id_valid(id)) {
        snprintf(err, err_size, "not a queue id");
        errno = ENOENT;
        return PST_EIO;
    }
    if (path_of(path, sizeof(path), dir, "", id, ".env") < 0)
        return PST_EIO;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        saved = errno;
        snprintf(err, err_size, "%s: %s", path, strerror(saved));
        errno = saved;
        return PST_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > QUEUE_ENV_MAX) {
        saved = errno != 0 ? errno : EFBIG;
        snprintf(err, err_size, "%s: not a regular file of at most %u "
                 "octets", path, QUEUE_ENV_MAX);
        close(fd);
        errno = saved;
        return PST_EIO;
    }
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        close(fd);
        return PST_ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    rc = queue_env_parse(id, data, got, out, err, err_size);
    free(data);
    return rc;
}

int
queue_file_remove(const char *dir, const char *id)
{
    char path[PATH_MAX];

    if (path_of(path, sizeof(path), dir, "", id, ".env") < 0)
        return PST_EIO;
    if (unlink(path) != 0)
        return PST_EIO;
    path[strlen(path) - 4] = '\0';
    if (unlink(path) != 0 && errno != ENOENT)
        return PST_EIO;
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* not secret */
}

void
queue_file_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

int
queue_file_list(const char *dir, char ***ids, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    size_t k = 0, cap = 0;

    *ids = NULL;
    *n = 0;
    if (d == NULL)
        return PST_EIO;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        char id[QUEUE_ID_MAX + 1];

        if (len <= 4 || len - 4 > QUEUE_ID_MAX ||
            strcmp(de->d_name + len - 4, ".env") != 0) /* not secret */
            continue;
        memcpy(id, de->d_name, len - 4);
        id[len - 4] = '\0';
        if (!queue_id_valid(id))
            continue;
        if (k == cap) {
            char **nv = realloc(v, (cap ? cap * 2 : 64) * sizeof(*v));

            if (nv == NULL)
                goto nomem;
            v = nv;
            cap = cap ? cap * 2 : 64;
        }
        v[k] = strdup(id);
        if (v[k] == NULL)
            goto nomem;
        k++;
    }
    closedir(d);
    if (k > 1)
        qsort(v, k, sizeof(*v), cmp_str);
    *ids = v;
    *n = k;
    return 0;
nomem:
    closedir(d);
    queue_file_ids_free(v, k);
    return PST_ENOMEM;
}

int
queue_file_orphans(const char *dir, unsigned min_age)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    time_t now = time(NULL);
    int removed = 0;

    if (d == NULL)
        return PST_EIO;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        char path[PATH_MAX], env[PATH_MAX];
        struct stat st;
        int orphan;

        if (len > 8 && name[0] == '.' &&
            strcmp(name + len - 8, ".env.tmp") == 0) { /* not secret */
            orphan = 1;
        } else if (queue_id_valid(name)) {
            /* A message without its envelope. */
            if (path_of(env, sizeof(env), dir, "", name, ".env") < 0)
                continue;
            orphan = access(env, F_OK) != 0 && errno == ENOENT;
        } else {
            continue;
        }
        if (!orphan || path_of(path, sizeof(path), dir, "", name, "") < 0)
            continue;
        /* (min_age 0: whatever the clock says: a file's time may be a
         * second ahead of time(2).) */
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
            (min_age > 0 && now - st.st_mtime < (time_t)min_age))
            continue;
        if (unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

int
queue_file_open_message(const char *dir, const char *id)
{
    char path[PATH_MAX];

    if (!queue_id_valid(id)) {
        errno = ENOENT;
        return -1;
    }
    if (path_of(path, sizeof(path), dir, "", id, "") < 0)
        return -1;
    return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}
