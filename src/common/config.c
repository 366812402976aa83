/*
 * posternd - configuration file parser (see config.h and posternd.conf(5)).
 *
 * Table-driven (the tables are in config_keys.c): each section type has a
 * table of keys (name, value type, field offset, bounds, default, doc),
 * and each value type one parser that writes its field.  What a key needs
 * beyond its own value (userdb_query only with pgsql, tls = starttls only
 * with a certificate) is checked once the whole file is read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_keys.h"

#define CONFIG_LINE_MAX 4096 /* bytes in one line of the file */
#define CONFIG_NAME_MAX 64   /* bytes in a section name */

/* --- The parser ---------------------------------------------------------- */

int
config_perr(struct config_parser *p, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->err == NULL || p->err_size == 0)
        return PST_ESYNTAX;
    if (line > 0)
        n = snprintf(p->err, p->err_size, "%s:%u: ", p->file, line);
    else
        n = snprintf(p->err, p->err_size, "%s: ", p->file);
    if (n < 0 || (size_t)n >= p->err_size)
        return PST_ESYNTAX;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
    va_end(ap);
    return PST_ESYNTAX;
}

/* A value made safe to quote in a message: printable ASCII, '?' for any
 * other byte (Postfix printable()), cut to 60 bytes with "...". */
static const char *
show(const char *v, char out[72])
{
    size_t i;

    for (i = 0; v[i] != '\0' && i < 60; i++)
        out[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
    if (v[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* "a, b or c" from n names, for messages. */
static void
want_list(const char *const *names, size_t count, char *out, size_t size)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < count && n < size; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == count ? " or " : ", ");
        int w = snprintf(out + n, size - n, "%s%s", sep, names[i]);

        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The struct of section s. */
static void *
config_section_ptr(const struct config_parser *p,
                   const struct config_section *s)
{
    const struct config_section_type *t = s->type;

    if (t->name == NULL)
        return p->c;
    return *(char **)((char *)p->c + t->list_offset) + s->index * t->size;
}

const struct config_section *
config_section_of(const struct config_parser *p,
                  const struct config_section_type *t,
           size_t index)
{
    for (size_t i = 0; i < p->nsecs; i++) {
        if (p->secs[i].type == t && p->secs[i].index == index)
            return &p->secs[i];
    }
    return NULL;
}

unsigned
config_key_line(const struct config_section *s, const char *name)
{
    for (size_t i = 0; i < s->type->nkeys; i++) {
        if (strcmp(s->type->keys[i].name, name) == 0)
            return s->seen[i];
    }
    return 0;
}

static const struct config_key *
key_find(const struct config_section_type *t, const char *name)
{
    for (size_t i = 0; i < t->nkeys; i++) {
        if (strcmp(t->keys[i].name, name) == 0)
            return &t->keys[i];
    }
    return NULL;
}

static int
bad_value(struct config_parser *p, const struct config_key *k, const char *v,
          const char *want)
{
    char shown[72];

    return config_perr(p, p->line, "bad value '%s' for '%s' (want %s)",
                show(v, shown), k->name, want);
}

/* Space-, tab- or comma-separated words: calls fn for each. */
static int
for_each_word(struct config_parser *p, const char *v, void *ctx,
              const struct config_key *k,
              int (*fn)(struct config_parser *, const struct config_key *,
                        const char *, size_t, void *))
{
    size_t i = 0, len = strlen(v);
    int rc;

    while (i < len) {
        size_t start;

        while (i < len && (is_space(v[i]) || v[i] == ','))
            i++;
        start = i;
        while (i < len && !is_space(v[i]) && v[i] != ',')
            i++;
        if (i > start && (rc = fn(p, k, v + start, i - start, ctx)) != 0)
            return rc;
    }
    return 0;
}

static int
add_cidr(struct config_parser *p, const struct config_key *k, const char *w,
         size_t len, void *ctx)
{
    struct config_cidrs *list = ctx;
    char shown[72], word[128];
    struct config_cidr *nv;

    if (len >= sizeof(word))
        len = sizeof(word) - 1;
    memcpy(word, w, len);
    word[len] = '\0';
    if (list->n >= CONFIG_CIDRS_MAX)
        return config_perr(p, p->line, "too many networks in '%s' (at most %d)",
                    k->name, CONFIG_CIDRS_MAX);
    nv = realloc(list->v, (list->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return PST_ENOMEM;
    list->v = nv;
    if (config_cidr_parse(w, len, &list->v[list->n]) != 0)
        return config_perr(p, p->line,
                    "bad network '%s' in '%s' (want ADDRESS or "
                    "ADDRESS/PREFIX, no host bits past the prefix)",
                    show(word, shown), k->name);
    list->n++;
    return 0;
}

static int
add_mech(struct config_parser *p, const struct config_key *k, const char *w,
         size_t len, void *ctx)
{
    struct config_mechs *l = ctx;
    const struct pst_sasl_mech *m = pst_sasl_mech_find(w, len);
    char shown[72], word[128];

    (void)k;
    if (len >= sizeof(word))
        len = sizeof(word) - 1;
    memcpy(word, w, len);
    word[len] = '\0';
    if (m == NULL)
        return config_perr(p, p->line, "unknown mechanism '%s'",
                           show(word, shown));
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i] == m)
            return config_perr(p, p->line, "mechanism '%s' listed twice",
                        pst_sasl_mech_name(m));
    }
    if (l->n >= CONFIG_MAX_MECHS)
        return config_perr(p, p->line, "too many mechanisms");
    l->v[l->n++] = m;
    return 0;
}

static int
add_domain(struct config_parser *p, const struct config_key *k,
           const char *w, size_t len, void *ctx)
{
    struct config_words *list = ctx;
    char shown[72], word[256], **nv;

    if (len >= sizeof(word))
        return config_perr(p, p->line, "domain too long in '%s'", k->name);
    for (size_t i = 0; i < len; i++)
        word[i] = (char)((w[i] >= 'A' && w[i] <= 'Z') ? w[i] + 32 : w[i]);
    word[len] = '\0';
    if (!config_hostname_valid(word))
        return config_perr(p, p->line, "bad domain '%s' in '%s'",
                           show(word, shown), k->name);
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->v[i], word) == 0)
            return config_perr(p, p->line, "domain '%s' listed twice",
                               show(word, shown));
    if (list->n >= CONFIG_WORDS_MAX)
        return config_perr(p, p->line, "too many domains in '%s'", k->name);
    nv = realloc(list->v, (list->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return PST_ENOMEM;
    list->v = nv;
    list->v[list->n] = strdup(word);
    if (list->v[list->n] == NULL)
        return PST_ENOMEM;
    list->n++;
    return 0;
}

/* Whether name[0..len) is a section name: letters, digits, '-', '_'
 * and '.', 1..CONFIG_NAME_MAX bytes. */
static int
section_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > CONFIG_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return 0;
    }
    return 1;
}

/* One section name of a list (a profile's listeners). */
static int
add_name(struct config_parser *p, const struct config_key *k, const char *w,
         size_t len, void *ctx)
{
    struct config_words *list = ctx;
    char shown[72], word[CONFIG_NAME_MAX + 1], **nv;

    if (!section_name_ok(w, len)) {
        char bad[128];

        snprintf(bad, sizeof(bad), "%.*s", (int)(len < 100 ? len : 100), w);
        return config_perr(p, p->line, "bad name '%s' in '%s' (letters, "
                           "digits, '-', '_' and '.')", show(bad, shown),
                           k->name);
    }
    memcpy(word, w, len);
    word[len] = '\0';
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->v[i], word) == 0)
            return config_perr(p, p->line, "'%s' listed twice in '%s'", word,
                               k->name);
    if (list->n >= CONFIG_WORDS_MAX)
        return config_perr(p, p->line, "too many names in '%s'", k->name);
    nv = realloc(list->v, (list->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return PST_ENOMEM;
    list->v = nv;
    list->v[list->n] = strdup(word);
    if (list->v[list->n] == NULL)
        return PST_ENOMEM;
    list->n++;
    return 0;
}

/* "host:port" or "[ipv6]:port" into h, the host not resolved. */
static int
hostport_parse(const char *v, struct config_hostport *h)
{
    const char *colon;
    char host[256];
    uint64_t port;
    size_t n;

    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        struct in6_addr a6;

        if (end == NULL || end[1] != ':')
            return -1;
        n = (size_t)(end - v - 1);
        colon = end + 1;
        if (n == 0 || n >= sizeof(host))
            return -1;
        memcpy(host, v + 1, n);
        host[n] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL)
            return -1;
        n = (size_t)(colon - v);
        if (n == 0 || n >= sizeof(host))
            return -1;
        memcpy(host, v, n);
        host[n] = '\0';
        if (strchr(host, ':') != NULL || !config_hostname_valid(host))
            return -1;
    }
    if (config_u64_parse(colon + 1, strlen(colon + 1), &port) < 0 ||
        port == 0 || port > 65535)
        return -1;
    free(h->host);
    h->host = strdup(host);
    if (h->host == NULL)
        return PST_ENOMEM;
    h->port = (uint16_t)port;
    return 0;
}

/* Store a copy of v in the char * at field, replacing a default. */
static int
set_string(void *field, const char *v)
{
    char *copy = strdup(v);

    if (copy == NULL)
        return PST_ENOMEM;
    free(*(char **)field);
    *(char **)field = copy;
    return 0;
}

/* A number of seconds (unit "s", "m", "h", "d"), or with ms_ok of milliseconds
 * (also "ms"; bare numbers are seconds either way), into *out in the
 * key's unit, within min..max. */
static int
parse_time(const char *v, int ms_ok, uint64_t min, uint64_t max,
           uint64_t *out)
{
    uint64_t scale = ms_ok ? 1000 : 1, unit = scale;
    size_t n = strlen(v);

    if (ms_ok && n > 1 && v[n - 2] == 'm' && v[n - 1] == 's') {
        unit = 1;
        n -= 2;
    } else if (n > 0 && (v[n - 1] == 's' || v[n - 1] == 'm' ||
                         v[n - 1] == 'h' || v[n - 1] == 'd')) {
        unit = scale * (v[n - 1] == 's'   ? 1
                        : v[n - 1] == 'm' ? 60
                        : v[n - 1] == 'h' ? 3600
                                          : 86400);
        n--;
    }
    if (config_u64_parse(v, n, out) < 0 || *out > max / unit ||
        *out * unit < min)
        return -1;
    *out *= unit;
    return 0;
}

/* Parse v as key k's type into its field (in the section at base). */
static int
set_value(struct config_parser *p, const struct config_key *k, void *base,
          const char *v)
{
    void *field = (char *)base + k->offset;
    const char *names[8], *why;
    char want[160], shown[72];
    uint64_t num;
    size_t count = 0;
    enum tls_version tv;

    switch (k->type) {
    case KT_STRING:
        return set_string(field, v);
    case KT_HOSTNAME:
        if (!config_hostname_valid(v))
            return bad_value(p, k, v, "a domain name");
        return set_string(field, v);
    case KT_USERDB: {
        struct config_userdb *u = field;

        if (strncmp(v, "passwd-file:", 12) == 0 && v[12] != '\0') {
            u->kind = CONFIG_USERDB_PASSWD_FILE;
            v += 12;
        } else if (strncmp(v, "pgsql:", 6) == 0 && v[6] != '\0') {
            u->kind = CONFIG_USERDB_PGSQL;
            v += 6;
        } else {
            return bad_value(p, k, v, "passwd-file:PATH or pgsql:CONNINFO");
        }
        return set_string(&u->arg, v);
    }
    case KT_MAILBOX:
        if (strncmp(v, "maildir:", 8) != 0)
            return bad_value(p, k, v, "maildir:TEMPLATE");
        if (config_mailbox_check(v + 8, &why) != 0)
            return config_perr(p, p->line, "bad value '%s' for '%s': %s",
                        show(v, shown), k->name, why);
        return set_string(field, v + 8);
    case KT_ENUM:
        for (size_t i = 0; k->names[i].name != NULL; i++) {
            if (strcmp(v, k->names[i].name) == 0) {
                *(int *)field = k->names[i].value;
                return 0;
            }
            if (count < (sizeof(names) / sizeof(names[0])))
                names[count++] = k->names[i].name;
        }
        want_list(names, count, want, sizeof(want));
        return bad_value(p, k, v, want);
    case KT_TLS_VERSION:
        if (tls_version_parse(v, &tv) == 0) {
            *(enum tls_version *)field = tv;
            return 0;
        }
        for (tv = TLS_VERSION_1_0; tls_version_name(tv) != NULL &&
                                   count < (sizeof(names) / sizeof(names[0]));
             tv++)
            names[count++] = tls_version_name(tv);
        want_list(names, count, want, sizeof(want));
        return bad_value(p, k, v, want);
    case KT_NUMBER:
    case KT_SIZE:
        if (config_u64_parse(v, strlen(v), &num) < 0 || num < k->min ||
            num > k->max) {
            if (k->max == UINT64_MAX)
                snprintf(want, sizeof(want), "a number >= %llu",
                         (unsigned long long)k->min);
            else
                snprintf(want, sizeof(want), "a number from %llu to %llu",
                         (unsigned long long)k->min,
                         (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        if (k->type == KT_SIZE)
            *(uint64_t *)field = num;
        else
            *(unsigned *)field = (unsigned)num;
        return 0;
    case KT_SECONDS:
        if (parse_time(v, 0, k->min, k->max, &num) < 0) {
            snprintf(want, sizeof(want),
                     "seconds from %llu to %llu, optionally with s, m, h "
                     "or d",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        *(unsigned *)field = (unsigned)num;
        return 0;
    case KT_MILLIS:
        if (parse_time(v, 1, k->min, k->max, &num) < 0) {
            snprintf(want, sizeof(want),
                     "a time from %llu ms to %llu ms: seconds, or a number "
                     "with ms, s, m or h", (unsigned long long)k->min,
                     (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        *(unsigned *)field = (unsigned)num;
        return 0;
    case KT_WORKERS:
        if (strcmp(v, "auto") == 0) {
            *(unsigned *)field = 0;
            return 0;
        }
        if (config_u64_parse(v, strlen(v), &num) < 0 || num < k->min ||
            num > k->max) {
            snprintf(want, sizeof(want), "auto or a number from %llu to %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        *(unsigned *)field = (unsigned)num;
        return 0;
    case KT_CIDRS:
        return for_each_word(p, v, field, k, add_cidr);
    case KT_ADDRESS: {
        struct config_address *a = field;

        if (config_address_parse(v, a) < 0)
            return config_perr(p, p->line,
                        "bad address '%s' (want IPV4:PORT or [IPV6]:PORT, "
                        "numeric)",
                        show(v, shown));
        return set_string(&a->text, v);
    }
    case KT_MECHS:
        ((struct config_mechs *)field)->n = 0; /* replaces the default */
        return for_each_word(p, v, field, k, add_mech);
    case KT_DOMAINS:
        return for_each_word(p, v, field, k, add_domain);
    case KT_NAMES:
        return for_each_word(p, v, field, k, add_name);
    case KT_HOSTPORT: {
        int rc = hostport_parse(v, field);

        if (rc == PST_ENOMEM)
            return rc;
        if (rc < 0)
            return config_perr(p, p->line,
                        "bad smarthost '%s' (want HOST:PORT or "
                        "[IPV6]:PORT)", show(v, shown));
        return 0;
    }
    }
    return PST_EINVAL; /* a type without a parser: a bug in the tables */
}

/* Free what key k's field owns (in the section at base). */
static void
free_value(const struct config_key *k, void *base)
{
    void *field = (char *)base + k->offset;

    switch (k->type) {
    case KT_STRING:
    case KT_HOSTNAME:
    case KT_MAILBOX:
        free(*(char **)field);
        break;
    case KT_USERDB:
        free(((struct config_userdb *)field)->arg);
        break;
    case KT_CIDRS:
        free(((struct config_cidrs *)field)->v);
        break;
    case KT_ADDRESS:
        free(((struct config_address *)field)->text);
        break;
    case KT_DOMAINS:
    case KT_NAMES: {
        struct config_words *w = field;

        for (size_t i = 0; i < w->n; i++)
            free(w->v[i]);
        free(w->v);
        break;
    }
    case KT_HOSTPORT:
        free(((struct config_hostport *)field)->host);
        break;
    default:
        break;
    }
}

/* Set every default of t's keys in the section at base. */
static int
set_defaults(struct config_parser *p, const struct config_section_type *t,
             void *base)
{
    int rc;

    if (t->init != NULL)
        t->init(base);
    for (size_t i = 0; i < t->nkeys; i++) {
        if (t->keys[i].def == NULL)
            continue;
        rc = set_value(p, &t->keys[i], base, t->keys[i].def);
        if (rc != 0)
            return rc == PST_ESYNTAX ? config_perr(p, 0, "bad default for '%s' "
                                            "(a bug)", t->keys[i].name)
                                     : rc;
    }
    return 0;
}

/* A new section of type t, its seen lines and its defaults. */
static int
add_section(struct config_parser *p, const struct config_section_type *t,
            size_t index)
{
    struct config_section *ns = realloc(p->secs, (p->nsecs + 1) * sizeof(*ns));

    if (ns == NULL)
        return PST_ENOMEM;
    p->secs = ns;
    ns = &p->secs[p->nsecs];
    ns->type = t;
    ns->index = index;
    ns->seen = calloc(t->nkeys, sizeof(unsigned));
    if (ns->seen == NULL)
        return PST_ENOMEM;
    p->nsecs++;
    return set_defaults(p, t, config_section_ptr(p, ns));
}

/* "[listener NAME]" (or "[listener NAME] or [relay NAME]" ...), for
 * messages. */
static void
section_want(char *out, size_t size)
{
    const char *names[CONFIG_SECTION_TYPES];
    char forms[CONFIG_SECTION_TYPES][32];

    for (size_t i = 0; i < CONFIG_SECTION_TYPES; i++) {
        snprintf(forms[i], sizeof(forms[i]), "[%s NAME]",
                 config_section_types[i].name);
        names[i] = forms[i];
    }
    want_list(names, CONFIG_SECTION_TYPES, out, size);
}

/* "[TYPE NAME]" (the brackets already checked). */
static int
start_section(struct config_parser *p, char *inner)
{
    const struct config_section_type *t = NULL;
    char shown[72], want[128];
    char *name, *list, **namep;
    size_t len, *count;
    void *sec;

    while (is_space(*inner))
        inner++;
    len = strlen(inner);
    while (len > 0 && is_space(inner[len - 1]))
        inner[--len] = '\0';
    for (size_t i = 0; i < CONFIG_SECTION_TYPES && t == NULL; i++) {
        size_t n = strlen(config_section_types[i].name);

        if (strncmp(inner, config_section_types[i].name, n) == 0 &&
            is_space(inner[n]))
            t = &config_section_types[i];
    }
    if (t == NULL) {
        section_want(want, sizeof(want));
        return config_perr(p, p->line, "unknown section '[%s]' (want %s)",
                    show(inner, shown), want);
    }
    inner += strlen(t->name);
    name = inner;
    while (is_space(*name))
        name++;
    len = strlen(name);
    if (len == 0 || len > CONFIG_NAME_MAX)
        return config_perr(p, p->line, "bad %s name '%s'", t->name,
                    show(name, shown));
    if (!section_name_ok(name, len))
        return config_perr(p, p->line, "bad %s name '%s' (letters, digits, "
                    "'-', '_' and '.')", t->name, show(name, shown));
    list = *(char **)((char *)p->c + t->list_offset);
    count = (size_t *)((char *)p->c + t->count_offset);
    for (size_t i = 0; i < *count; i++) {
        char *other = list + i * t->size;

        if (strcmp(*(char **)(other + t->name_offset), name) == 0)
            return config_perr(p, p->line,
                               "duplicate [%s %s] (first on line %u)",
                        t->name, name,
                        *(unsigned *)(other + t->line_offset));
    }
    if (*count >= t->max)
        return config_perr(p, p->line, "too many %ss (at most %zu)", t->name,
                    t->max);
    list = realloc(list, (*count + 1) * t->size);
    if (list == NULL)
        return PST_ENOMEM;
    *(char **)((char *)p->c + t->list_offset) = list;
    sec = list + *count * t->size;
    memset(sec, 0, t->size);
    (*count)++;
    namep = (char **)((char *)sec + t->name_offset);
    *namep = strdup(name);
    *(unsigned *)((char *)sec + t->line_offset) = p->line;
    if (*namep == NULL)
        return PST_ENOMEM;
    return add_section(p, t, *count - 1);
}

/* The section type whose table has key (for a global key misplaced). */
static const struct config_section_type *
key_section(const char *key)
{
    for (size_t i = 0; i < CONFIG_SECTION_TYPES; i++) {
        if (key_find(&config_section_types[i], key) != NULL)
            return &config_section_types[i];
    }
    return NULL;
}

const char *
config_section_name(const struct config_parser *p,
                    const struct config_section *s)
{
    return *(char **)((char *)config_section_ptr(p, s) + s->type->name_offset);
}

/* One line, comment and line end removed. */
static int
parse_line(struct config_parser *p, char *s)
{
    struct config_section *cur = &p->secs[p->nsecs - 1];
    const struct config_key *k;
    const struct config_section_type *other;
    char *eq, *key, *v;
    size_t len, i;
    char shown[72];
    unsigned *seen;

    /* "#" starts a comment at the start of a line or after white space,
     * so a value may hold a "#" ("pgsql:password=a#b"). */
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] == '#' && (i == 0 || is_space(s[i - 1]))) {
            s[i] = '\0';
            break;
        }
    }
    while (is_space(*s))
        s++;
    len = strlen(s);
    while (len > 0 && is_space(s[len - 1]))
        s[--len] = '\0';
    if (len == 0)
        return 0;
    if (s[0] == '[') {
        if (s[len - 1] != ']')
            return config_perr(p, p->line, "section header without ']'");
        s[len - 1] = '\0';
        return start_section(p, s + 1);
    }
    eq = strchr(s, '=');
    if (eq == NULL || eq == s) {
        char want[128];

        section_want(want, sizeof(want));
        return config_perr(p, p->line, "expected 'key = value' or '%s'", want);
    }
    *eq = '\0';
    key = s;
    len = strlen(key);
    while (len > 0 && is_space(key[len - 1]))
        key[--len] = '\0';
    v = eq + 1;
    while (is_space(*v))
        v++;

    k = key_find(cur->type, key);
    if (k == NULL && cur->type->name == NULL) {
        other = key_section(key);
        if (other != NULL)
            return config_perr(p, p->line, "key '%s' belongs in a [%s NAME] "
                        "section", key, other->name);
        return config_perr(p, p->line, "unknown key '%s'", show(key, shown));
    }
    if (k == NULL && key_find(&config_global_type, key) != NULL)
        return config_perr(p, p->line, "global key '%s' after [%s %s] (global "
                    "keys go before the first section)", key,
                    cur->type->name, config_section_name(p, cur));
    if (k == NULL)
        return config_perr(p, p->line, "unknown key '%s' in [%s %s]",
                    show(key, shown), cur->type->name,
                    config_section_name(p, cur));
    seen = &cur->seen[k - cur->type->keys];
    if (*seen != 0)
        return config_perr(p, p->line,
                           "duplicate key '%s' (first on line %u)", key,
                    *seen);
    *seen = p->line;
    if (*v == '\0')
        return config_perr(p, p->line, "empty value for '%s'", key);
    return set_value(p, k, config_section_ptr(p, cur), v);
}

/* Each section in file order: its required keys, then its checks. */
static int
finish(struct config_parser *p)
{
    int rc;

    for (size_t i = 0; i < p->nsecs; i++) {
        const struct config_section *s = &p->secs[i];
        const struct config_section_type *t = s->type;

        for (size_t k = 0; k < t->nkeys; k++) {
            if (!(t->keys[k].flags & KF_REQUIRED) || s->seen[k] != 0)
                continue;
            if (t->name == NULL)
                return config_perr(p, 0, "missing required key '%s'",
                            t->keys[k].name);
            return config_perr(p,
                               *(unsigned *)((char *)config_section_ptr(p, s)
                                             + t->line_offset),
                        "[%s %s] has no %s", t->name, config_section_name(p, s),
                        t->keys[k].name);
        }
        if (t->check != NULL && (rc = t->check(p, s)) != 0)
            return rc;
    }
    return 0;
}

/* --- Entry points -------------------------------------------------------- */

static void
parser_free(struct config_parser *p)
{
    for (size_t i = 0; i < p->nsecs; i++)
        free(p->secs[i].seen);
    free(p->secs);
    free(p);
}

int
config_parse(const char *file, const char *text, size_t len,
             struct config **out, char *err, size_t err_size)
{
    struct config_parser *p;
    size_t pos = 0;
    int rc;

    *out = NULL;
    if (err != NULL && err_size > 0)
        err[0] = '\0';
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PST_ENOMEM;
    p->file = file;
    p->err = err;
    p->err_size = err_size;
    p->c = calloc(1, sizeof(*p->c));
    if (p->c == NULL || (p->c->file = strdup(file)) == NULL) {
        free(p->c);
        free(p);
        return PST_ENOMEM;
    }
    rc = add_section(p, &config_global_type, 0);
    while (pos < len && rc == 0) {
        char line[CONFIG_LINE_MAX];
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;

        p->line++;
        if (n > 0 && text[pos + n - 1] == '\r')
            n--; /* CRLF files */
        if (n >= sizeof(line)) {
            rc = config_perr(p, p->line, "line too long (more than %d bytes)",
                      CONFIG_LINE_MAX - 1);
            break;
        }
        if (memchr(text + pos, '\0', n) != NULL) {
            rc = config_perr(p, p->line, "NUL byte");
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        rc = parse_line(p, line);
        pos += (nl != NULL ? (size_t)(nl - (text + pos)) + 1 : len - pos);
    }
    if (rc == 0)
        rc = finish(p);
    if (rc != 0) {
        if (rc == PST_ENOMEM && err != NULL && err_size > 0)
            snprintf(err, err_size, "%s: out of memory", file);
        config_free(p->c);
    } else {
        *out = p->c;
    }
    parser_free(p);
    return rc;
}

int
config_load(const char *path, struct config **out, char *err,
            size_t err_size)
{
    struct stat st;
    char *text;
    size_t len = 0;
    int fd, rc;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return PST_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "%s: not a regular file", path);
        close(fd);
        return PST_EIO;
    }
    if (st.st_size > CONFIG_FILE_MAX) {
        snprintf(err, err_size, "%s: larger than %d bytes", path,
                 CONFIG_FILE_MAX);
        close(fd);
        return PST_EIO;
    }
    text = malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        snprintf(err, err_size, "%s: out of memory", path);
        close(fd);
        return PST_ENOMEM;
    }
    /* Read up to one byte past the size seen, to notice growth. */
    while (len <= (size_t)st.st_size) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, err_size, "%s: cannot read: %s", path,
                     strerror(errno));
            free(text);
            close(fd);
            return PST_EIO;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > (size_t)st.st_size) {
        snprintf(err, err_size, "%s: changed while being read", path);
        free(text);
        return PST_EIO;
    }
    rc = config_parse(path, text, len, out, err, err_size);
    free(text);
    return rc;
}

/* Free what the keys of t own in the section at base. */
static void
free_section(const struct config_section_type *t, void *base)
{
    for (size_t i = 0; i < t->nkeys; i++)
        free_value(&t->keys[i], base);
}

void
config_free(struct config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CONFIG_SECTION_TYPES; i++) {
        const struct config_section_type *t = &config_section_types[i];
        char *list = *(char **)((char *)c + t->list_offset);
        size_t n = *(size_t *)((char *)c + t->count_offset);

        for (size_t j = 0; j < n; j++) {
            free_section(t, list + j * t->size);
            free(*(char **)(list + j * t->size + t->name_offset));
        }
        free(list);
    }
    free_section(&config_global_type, c);
    free(c->file);
    free(c);
}

int
config_key_at(size_t i, struct config_key_info *out)
{
    const struct config_section_type *t = &config_global_type;

    for (size_t s = 0;; s++) {
        if (i < t->nkeys) {
            *out = (struct config_key_info){
                .section = t->name,
                .name = t->keys[i].name,
                .def = t->keys[i].def,
                .doc = t->keys[i].doc,
            };
            return 1;
        }
        i -= t->nkeys;
        if (s == CONFIG_SECTION_TYPES)
            return 0;
        t = &config_section_types[s];
    }
}
