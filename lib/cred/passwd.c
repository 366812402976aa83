/*
 * The user file: Dovecot's passwd-file format (src/auth/db-passwd-file.c),
 * parsed from bytes into a table with one hash lookup per name.
 *
 * Names are not secret (the lookup happens before any password is seen),
 * so they are compared with memcmp; every password field goes through
 * pst_cred_parse() and never into an error message.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/passwd.h>

#include "../internal.h"

/* Fields before the extra fields (Dovecot: user, password, uid, gid, gecos,
 * home, shell). */
#define PASSWD_FIXED_FIELDS 7
/* Hash slots of an empty table (a power of two). */
#define PASSWD_MIN_SLOTS 64

enum passwd_field {
    PASSWD_F_NAME = 0,
    PASSWD_F_PASSWORD,
    PASSWD_F_UID,
    PASSWD_F_GID,
    PASSWD_F_GECOS,
    PASSWD_F_HOME,
    PASSWD_F_SHELL,
};

struct passwd_slot {
    uint32_t hash;
    uint32_t idx; /* entry index + 1; 0: empty */
};

struct pst_passwd {
    struct pst_passwd_entry *entries; /* file order */
    size_t n, cap;
    struct passwd_slot *slots;        /* open addressing, linear probing */
    size_t mask;                      /* slots - 1 (a power of two) */
    char *strings;                    /* names and extra fields, NUL-ended */
    size_t strings_len;
};

/* FNV-1a, 32 bits: names come from the administrator's file, so hash
 * flooding is not a concern; lookups of absent names stop at an empty
 * slot of a half-empty table. */
static uint32_t
passwd_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    return h;
}

static void passwd_errorf(struct pst_passwd_error *err, unsigned line,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
passwd_errorf(struct pst_passwd_error *err, unsigned line, const char *fmt,
              ...)
{
    va_list ap;

    if (err == NULL)
        return;
    err->line = line;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

/* A user name made printable for a message: at most 64 bytes, others as
 * \xNN (Postfix printable()). */
static const char *
passwd_printable(const char *p, size_t n, char *buf, size_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 8 < size; i++) {
        uint8_t c = (uint8_t)p[i];

        if (i == 64) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            buf[o++] = (char)c;
        } else {
            snprintf(buf + o, size - o, "\\x%02x", c);
            o += 4;
        }
    }
    buf[o] = '\0';
    return buf;
}

int
pst_passwd_check_name(const char *name, size_t len, const char **why)
{
    if (len == 0) {
        *why = "empty user name";
        return PST_ESYNTAX;
    }
    if (len > PST_PASSWD_NAME_MAX) {
        *why = "user name longer than 255 bytes";
        return PST_ESYNTAX;
    }
    if (name[0] == '#') {
        *why = "a user name cannot start with '#' (a comment)";
        return PST_ESYNTAX;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)name[i];

        if (c == ':') {
            *why = "':' in a user name";
            return PST_ESYNTAX;
        }
        if (c == ' ') {
            *why = "space in a user name";
            return PST_ESYNTAX;
        }
        if (c < 0x20 || c == 0x7f) {
            *why = "control character in a user name";
            return PST_ESYNTAX;
        }
    }
    if (!pst__utf8_valid((const uint8_t *)name, len)) {
        *why = "user name is not valid UTF-8";
        return PST_ESYNTAX;
    }
    *why = NULL;
    return 0;
}

/* uid and gid: empty or a decimal number. */
static int
passwd_number_ok(const char *p, size_t n)
{
    if (n > 10)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

/* Extra fields: space-separated key=value or bare keys; no key may be
 * empty. */
static int
passwd_extra_ok(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (p[i] == ' ') {
            i++;
            continue;
        }
        if (p[i] == '=')
            return 0;
        while (i < n && p[i] != ' ')
            i++;
    }
    return 1;
}

static const struct pst_passwd_entry *
passwd_find(const struct pst_passwd *p, const char *name, size_t len,
            uint32_t h, size_t *slot)
{
    size_t i = h & p->mask;

    for (;;) {
        const struct passwd_slot *s = &p->slots[i];

        if (s->idx == 0) {
            *slot = i;
            return NULL;
        }
        if (s->hash == h) {
            const struct pst_passwd_entry *e = &p->entries[s->idx - 1];

            if (e->name_len == len &&
                memcmp(e->name, name, len) == 0) { /* not secret */
                *slot = i;
                return e;
            }
        }
        i = (i + 1) & p->mask;
    }
}

/*
 * Room for one more user: the entries array doubles, and the table doubles
 * before it is half full (short probes; a free slot always ends a probe).
 * Growing as we go, rather than sizing for the number of lines, keeps a
 * file of a million blank lines from costing a million slots.
 * Returns: 0, PST_ELIMIT, PST_ENOMEM.
 */
static int
passwd_grow(struct pst_passwd *p)
{
    if (p->n >= UINT32_MAX / 4)
        return PST_ELIMIT;
    if (p->n == p->cap) {
        size_t cap = p->cap < 64 ? 64 : p->cap * 2;
        struct pst_passwd_entry *ne = realloc(p->entries,
                                              cap * sizeof(*ne));

        if (ne == NULL)
            return PST_ENOMEM;
        p->entries = ne;
        p->cap = cap;
    }
    if ((p->n + 1) * 2 > p->mask + 1) {
        size_t nslots = (p->mask + 1) * 2, mask = nslots - 1;
        struct passwd_slot *ns = calloc(nslots, sizeof(*ns));

        if (ns == NULL)
            return PST_ENOMEM;
        for (size_t i = 0; i <= p->mask; i++) {
            size_t j;

            if (p->slots[i].idx == 0)
                continue;
            for (j = p->slots[i].hash & mask; ns[j].idx != 0;
                 j = (j + 1) & mask)
                ;
            ns[j] = p->slots[i];
        }
        free(p->slots);
        p->slots = ns;
        p->mask = mask;
    }
    return 0;
}

/* Append s[0..n) and a NUL to the strings arena (sized for the text). */
static const char *
passwd_keep(struct pst_passwd *p, const char *s, size_t n)
{
    char *d = p->strings + p->strings_len;

    if (n > 0)
        memcpy(d, s, n);
    d[n] = '\0';
    p->strings_len += n + 1;
    return d;
}

/* One non-skipped line [off, off+len) (without its line end). */
static int
passwd_line(struct pst_passwd *p, const char *text, size_t off, size_t len,
            size_t full_len, unsigned lineno, struct pst_passwd_error *err)
{
    const char *line = text + off;
    const char *f[PASSWD_FIXED_FIELDS];
    size_t fl[PASSWD_FIXED_FIELDS], nf = 0, start = 0, i;
    const char *extra = NULL, *why;
    size_t extra_len = 0, slot;
    const struct pst_passwd_entry *dup;
    struct pst_passwd_entry *e;
    struct pst_cred *cred = NULL;
    char pbuf[300];
    uint32_t h;
    int rc;

    for (i = 0; i < len; i++) {
        uint8_t c = (uint8_t)line[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            passwd_errorf(err, lineno, "control character 0x%02x at "
                          "column %zu", c, i + 1);
            return PST_ESYNTAX;
        }
    }
    for (i = 0; i <= len; i++) {
        if (i == len || line[i] == ':') {
            f[nf] = line + start;
            fl[nf++] = i - start;
            start = i + 1;
            if (nf == PASSWD_FIXED_FIELDS) {
                /* The rest, ':' and all, is the extra fields. */
                if (i < len) {
                    extra = line + start;
                    extra_len = len - start;
                }
                break;
            }
        }
    }
#define PBUF passwd_printable(f[0], fl[0], pbuf, sizeof(pbuf))
    if (pst_passwd_check_name(f[PASSWD_F_NAME], fl[PASSWD_F_NAME], &why) <
        0) {
        passwd_errorf(err, lineno, "%s: '%s'", why, PBUF);
        return PST_ESYNTAX;
    }
    if (nf < 2) {
        passwd_errorf(err, lineno, "user '%s': no ':' after the user name",
                      PBUF);
        return PST_ESYNTAX;
    }
    for (i = PASSWD_F_UID; i <= PASSWD_F_GID && i < nf; i++) {
        if (!passwd_number_ok(f[i], fl[i])) {
            passwd_errorf(err, lineno, "user '%s': field %zu (%s) is not a "
                          "number; extra fields go after the seventh ':' "
                          "(name:password::::::key=value)", PBUF, i + 1,
                          i == PASSWD_F_UID ? "uid" : "gid");
            return PST_ESYNTAX;
        }
    }
    if (extra != NULL && !passwd_extra_ok(extra, extra_len)) {
        passwd_errorf(err, lineno, "user '%s': extra field without a key "
                      "(want key=value)", PBUF);
        return PST_ESYNTAX;
    }
    if ((rc = passwd_grow(p)) < 0)
        return rc;
    h = passwd_hash(f[0], fl[0]);
    if ((dup = passwd_find(p, f[0], fl[0], h, &slot)) != NULL) {
        passwd_errorf(err, lineno, "duplicate user '%s' (first on line %u)",
                      PBUF, dup->line);
        if (err != NULL)
            err->first_line = dup->line;
        return PST_EEXIST;
    }
    if (fl[PASSWD_F_PASSWORD] > 0) {
        rc = pst_cred_parse_reason(f[1], fl[1], &cred, &why);
        if (rc == PST_ESYNTAX) {
            passwd_errorf(err, lineno, "user '%s': bad password field: %s",
                          PBUF, why != NULL ? why : "malformed");
            return rc;
        }
        if (rc < 0)
            return rc;
    }
    e = &p->entries[p->n];
    *e = (struct pst_passwd_entry){
        .name = passwd_keep(p, f[0], fl[0]),
        .name_len = fl[0],
        .cred = cred,
        .extra = extra != NULL ? passwd_keep(p, extra, extra_len) : "",
        .extra_len = extra_len,
        .line = lineno,
        .line_off = off,
        .line_len = full_len,
        .pass_off = off + (size_t)(f[1] - line),
        .pass_len = fl[1],
    };
    p->n++;
    p->slots[slot] = (struct passwd_slot){.hash = h, .idx = (uint32_t)p->n};
    return 0;
#undef PBUF
}

/* Whether the line is to be skipped: empty, blank, a comment, or no name
 * (Dovecot skips lines starting with ':'). */
static int
passwd_skip(const char *line, size_t len)
{
    size_t i = 0;

    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    return i == len || line[0] == '#' || line[0] == ':';
}

int
pst_passwd_parse(const uint8_t *text, size_t len, struct pst_passwd **out,
                 struct pst_passwd_error *err)
{
    const char *t = (const char *)text;
    struct pst_passwd *p;
    unsigned lineno = 0;
    size_t off = 0;
    int rc = 0;

    *out = NULL;
    if (err != NULL)
        *err = (struct pst_passwd_error){.line = 0};
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PST_ENOMEM;
    p->mask = PASSWD_MIN_SLOTS - 1;
    p->slots = calloc(PASSWD_MIN_SLOTS, sizeof(*p->slots));
    /* Each kept name or extra field is followed by a NUL where the file
     * had a ':' or a line end, so the text's size (plus one) is room. */
    p->strings = malloc(len + 1);
    if (p->slots == NULL || p->strings == NULL) {
        pst_passwd_free(p);
        return PST_ENOMEM;
    }
    while (off < len) {
        const char *nl = memchr(t + off, '\n', len - off);
        size_t end = nl != NULL ? (size_t)(nl - t) : len;
        size_t full = (nl != NULL ? end + 1 : end) - off;
        size_t l = end - off;

        if (lineno == UINT_MAX) {
            passwd_errorf(err, lineno, "more than %u lines", UINT_MAX);
            rc = PST_ELIMIT;
            break;
        }
        lineno++;
        /* CRLF files: the '\r' belongs to the line end. */
        if (l > 0 && t[off + l - 1] == '\r')
            l--;
        if (memchr(t + off, '\0', l) != NULL) {
            passwd_errorf(err, lineno, "NUL byte in the line");
            rc = PST_ESYNTAX;
            break;
        }
        if (!passwd_skip(t + off, l) &&
            (rc = passwd_line(p, t, off, l, full, lineno, err)) < 0)
            break;
        off += full;
    }
    if (rc < 0) {
        if (rc == PST_ENOMEM)
            passwd_errorf(err, lineno, "out of memory");
        pst_passwd_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void
pst_passwd_free(struct pst_passwd *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        pst_cred_free((struct pst_cred *)p->entries[i].cred);
    free(p->entries);
    free(p->slots);
    free(p->strings);
    free(p);
}

size_t
pst_passwd_count(const struct pst_passwd *p)
{
    return p->n;
}

const struct pst_passwd_entry *
pst_passwd_entry_at(const struct pst_passwd *p, size_t i)
{
    return i < p->n ? &p->entries[i] : NULL;
}

const struct pst_passwd_entry *
pst_passwd_lookup(const struct pst_passwd *p, const char *name, size_t len)
{
    size_t slot;

    if (p == NULL || p->n == 0)
        return NULL;
    return passwd_find(p, name, len, passwd_hash(name, len), &slot);
}

int
pst_passwd_extra(const struct pst_passwd_entry *e, const char *key,
                 const char **value, size_t *len)
{
    size_t klen = strlen(key), i = 0, n = e->extra_len;
    const char *x = e->extra;

    while (i < n) {
        size_t s = i;

        while (i < n && x[i] != ' ')
            i++;
        if (i - s >= klen &&
            memcmp(x + s, key, klen) == 0 && /* not secret */
            (i - s == klen || x[s + klen] == '=')) {
            *value = i - s == klen ? x + i : x + s + klen + 1;
            *len = i - s == klen ? 0 : i - s - klen - 1;
            return 1;
        }
        i++;
    }
    *value = NULL;
    *len = 0;
    return 0;
}
