/*
 * posternd - configuration file parser (see config.h and posternd.conf(5)).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config.h"

#define CONFIG_LINE_MAX 4096 /* bytes in one line of the file */
#define CONFIG_NAME_MAX 64   /* bytes in a listener name */

/* Keys; the tables below give their names and value types. */
enum config_key {
    /* Global keys: */
    K_HOSTNAME = 0,
    K_USERDB,
    K_MAILBOX,
    K_SPOOL,
    K_TLS_CERT,
    K_TLS_KEY,
    K_TLS_MIN_VERSION,
    K_MAX_MESSAGE_SIZE,
    K_SENDER_CHECK,
    K_AUTH_THROTTLE,
    K_AUTH_THROTTLE_EXEMPT,
    K_MAX_RECIPIENTS,
    K_MAX_CONNECTIONS,
    K_MAX_CONNECTIONS_PER_IP,
    K_MAX_ERRORS,
    K_TIMEOUT_COMMAND,
    K_TIMEOUT_DATA,
    K_TIMEOUT_FINAL,
    K_SESSION_TIME_LIMIT,
    K_DATA_TIME_LIMIT,
    K_AUTH_FAILURE_DELAY,
    K_GRACE_PERIOD,
    K_WORKERS,
    K_LOG_LEVEL,
    K_LEGACY_AUTH_LINE,
    K_AUTH_THROTTLE_DELAY,
    K_AUTH_THROTTLE_MAX_DELAY,
    K_AUTH_THROTTLE_LOCKOUT_FAILURES,
    K_AUTH_THROTTLE_LOCKOUT_TIME,
    K_AUTH_THROTTLE_USER_FAILURES,
    K_AUTH_THROTTLE_FORGET,
    K_USERDB_QUERY,
    K_USERDB_TIMEOUT,
    K_GLOBAL_END,         /* number of global keys */
    /* Listener keys: */
    K_ADDRESS = K_GLOBAL_END,
    K_TLS,
    K_AUTH,
    K_AUTH_BEFORE_TLS,
    K_MECHANISMS,
    K_END,
};

#define N_GLOBAL_KEYS   ((size_t)K_GLOBAL_END)
#define N_LISTENER_KEYS ((size_t)(K_END - K_GLOBAL_END))

struct enum_name {
    const char *name;
    int value;
};

static const struct enum_name sender_check_names[] = {
    {"strict", CONFIG_SENDER_STRICT},
    {"off", CONFIG_SENDER_OFF},
    {NULL, 0},
};

static const struct enum_name bool_names[] = {
    {"yes", 1},
    {"no", 0},
    {NULL, 0},
};

static const struct enum_name tls_version_names[] = {
    {"TLSv1", TLS1_VERSION},
    {"TLSv1.1", TLS1_1_VERSION},
    {"TLSv1.2", TLS1_2_VERSION},
    {"TLSv1.3", TLS1_3_VERSION},
    {NULL, 0},
};

static const struct enum_name log_level_names[] = {
    {"panic", LOG_LEVEL_PANIC},
    {"fatal", LOG_LEVEL_FATAL},
    {"warn", LOG_LEVEL_WARN},
    {"info", LOG_LEVEL_INFO},
    {"debug", LOG_LEVEL_DEBUG},
    {NULL, 0},
};

static const struct enum_name tls_names[] = {
    {"none", CONFIG_TLS_NONE},
    {"starttls", CONFIG_TLS_STARTTLS},
    {"implicit", CONFIG_TLS_IMPLICIT},
    {NULL, 0},
};

static const struct enum_name auth_names[] = {
    {"required", CONFIG_AUTH_REQUIRED},
    {"optional", CONFIG_AUTH_OPTIONAL},
    {"off", CONFIG_AUTH_OFF},
    {NULL, 0},
};

static const struct enum_name abt_names[] = {
    {"none", CONFIG_ABT_NONE},
    {"challenge", CONFIG_ABT_CHALLENGE},
    {"all", CONFIG_ABT_ALL},
    {NULL, 0},
};

/* How a value is read. */
enum key_type {
    KT_STRING = 0,  /* any non-empty text */
    KT_HOSTNAME,    /* a domain name */
    KT_USERDB,      /* passwd-file:PATH | pgsql:CONNINFO */
    KT_MAILBOX,     /* maildir:TEMPLATE */
    KT_ENUM,        /* one of names[] */
    KT_NUMBER,      /* decimal, min..max */
    KT_SECONDS,     /* decimal with an optional s, m or h, min..max s */
    KT_MILLIS,      /* decimal with an optional ms, s, m or h (bare:
                       seconds), min..max ms */
    KT_WORKERS,     /* auto | min..max */
    KT_CIDRS,       /* list of networks */
    KT_ADDRESS,     /* HOST:PORT | [IPV6]:PORT */
    KT_MECHS,       /* list of SASL mechanism names */
};

struct key_def {
    const char *name;
    enum key_type type;
    const struct enum_name *names; /* KT_ENUM */
    uint64_t min, max;             /* KT_NUMBER, KT_SECONDS, KT_MILLIS,
                                      KT_WORKERS */
};

static const struct key_def keys[K_END] = {
    [K_HOSTNAME] = {.name = "hostname", .type = KT_HOSTNAME},
    [K_USERDB] = {.name = "userdb", .type = KT_USERDB},
    [K_MAILBOX] = {.name = "mailbox", .type = KT_MAILBOX},
    [K_SPOOL] = {.name = "spool", .type = KT_STRING},
    [K_TLS_CERT] = {.name = "tls_cert", .type = KT_STRING},
    [K_TLS_KEY] = {.name = "tls_key", .type = KT_STRING},
    [K_TLS_MIN_VERSION] = {.name = "tls_min_version", .type = KT_ENUM,
                           .names = tls_version_names},
    [K_MAX_MESSAGE_SIZE] = {.name = "max_message_size", .type = KT_NUMBER,
                            .min = 1, .max = UINT64_MAX},
    [K_SENDER_CHECK] = {.name = "sender_check", .type = KT_ENUM,
                        .names = sender_check_names},
    [K_AUTH_THROTTLE] = {.name = "auth_throttle", .type = KT_ENUM,
                         .names = bool_names},
    [K_AUTH_THROTTLE_EXEMPT] = {.name = "auth_throttle_exempt",
                                .type = KT_CIDRS},
    [K_MAX_RECIPIENTS] = {.name = "max_recipients", .type = KT_NUMBER,
                          .min = 1, .max = 100000},
    [K_MAX_CONNECTIONS] = {.name = "max_connections", .type = KT_NUMBER,
                           .min = 1, .max = 1000000},
    [K_MAX_CONNECTIONS_PER_IP] = {.name = "max_connections_per_ip",
                                  .type = KT_NUMBER, .min = 1,
                                  .max = 1000000},
    /* RFC 4954 §9: not before 3 failed AUTHs (the session's minimum). */
    [K_MAX_ERRORS] = {.name = "max_errors", .type = KT_NUMBER, .min = 3,
                      .max = 1000},
    [K_TIMEOUT_COMMAND] = {.name = "timeout_command", .type = KT_SECONDS,
                           .min = 1, .max = 86400},
    [K_TIMEOUT_DATA] = {.name = "timeout_data", .type = KT_SECONDS,
                        .min = 1, .max = 86400},
    [K_TIMEOUT_FINAL] = {.name = "timeout_final", .type = KT_SECONDS,
                         .min = 1, .max = 86400},
    [K_SESSION_TIME_LIMIT] = {.name = "session_time_limit",
                              .type = KT_SECONDS, .min = 0, .max = 604800},
    [K_DATA_TIME_LIMIT] = {.name = "data_time_limit", .type = KT_SECONDS,
                           .min = 0, .max = 604800},
    [K_AUTH_FAILURE_DELAY] = {.name = "auth_failure_delay",
                              .type = KT_MILLIS, .min = 0, .max = 60000},
    [K_GRACE_PERIOD] = {.name = "grace_period", .type = KT_SECONDS,
                        .min = 0, .max = 86400},
    [K_WORKERS] = {.name = "workers", .type = KT_WORKERS, .min = 1,
                   .max = 1024},
    [K_LOG_LEVEL] = {.name = "log_level", .type = KT_ENUM,
                     .names = log_level_names},
    [K_LEGACY_AUTH_LINE] = {.name = "legacy_auth_line", .type = KT_ENUM,
                            .names = bool_names},
    [K_AUTH_THROTTLE_DELAY] = {.name = "auth_throttle_delay",
                               .type = KT_SECONDS, .min = 0, .max = 60},
    [K_AUTH_THROTTLE_MAX_DELAY] = {.name = "auth_throttle_max_delay",
                                   .type = KT_SECONDS, .min = 0,
                                   .max = 300},
    [K_AUTH_THROTTLE_LOCKOUT_FAILURES] = {
        .name = "auth_throttle_lockout_failures", .type = KT_NUMBER,
        .min = 0, .max = 100000},
    [K_AUTH_THROTTLE_LOCKOUT_TIME] = {.name = "auth_throttle_lockout_time",
                                      .type = KT_SECONDS, .min = 1,
                                      .max = 86400},
    [K_AUTH_THROTTLE_USER_FAILURES] = {
        .name = "auth_throttle_user_failures", .type = KT_NUMBER,
        .min = 0, .max = 100000},
    [K_AUTH_THROTTLE_FORGET] = {.name = "auth_throttle_forget",
                                .type = KT_SECONDS, .min = 1,
                                .max = 86400},
    /* userdb = pgsql: only (finish() checks). */
    [K_USERDB_QUERY] = {.name = "userdb_query", .type = KT_STRING},
    [K_USERDB_TIMEOUT] = {.name = "userdb_timeout", .type = KT_SECONDS,
                          .min = 1, .max = 300},
    [K_ADDRESS] = {.name = "address", .type = KT_ADDRESS},
    [K_TLS] = {.name = "tls", .type = KT_ENUM, .names = tls_names},
    [K_AUTH] = {.name = "auth", .type = KT_ENUM, .names = auth_names},
    [K_AUTH_BEFORE_TLS] = {.name = "auth_before_tls", .type = KT_ENUM,
                           .names = abt_names},
    [K_MECHANISMS] = {.name = "mechanisms", .type = KT_MECHS},
};

/* Lines where each key was set in one section (0: not set). */
struct listener_seen {
    unsigned line[N_LISTENER_KEYS];
};

struct parser {
    const char *file;
    unsigned line;                    /* current line, from 1 */
    char *err;
    size_t err_size;
    struct config *c;
    struct config_listener *cur;      /* NULL: before the first section */
    unsigned gseen[N_GLOBAL_KEYS];
    struct listener_seen lseen[CONFIG_LISTENERS_MAX];
};

/* A typed value, parsed before it is stored in its field. */
struct value {
    char    *str;                     /* owned: KT_STRING and friends */
    int      e;                       /* KT_ENUM, KT_USERDB */
    uint64_t num;                     /* KT_NUMBER, KT_SECONDS, KT_WORKERS */
};

static int
perr(struct parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record "file:line: message" (or "file: message" for line 0). */
static int
perr(struct parser *p, unsigned line, const char *fmt, ...)
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

/* "a, b or c" from an enum table, for messages. */
static void
want_list(const struct enum_name *names, char *out, size_t size)
{
    size_t n = 0, count = 0, i;

    out[0] = '\0';
    while (names[count].name != NULL)
        count++;
    for (i = 0; i < count && n < size; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == count ? " or " : ", ");
        int w = snprintf(out + n, size - n, "%s%s", sep, names[i].name);

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

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Decimal digits only (no sign, no spaces) into *out, no overflow. */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/*
 * A host name: LDH labels of 1..63 octets separated by dots, 253 octets
 * at most, no label starting or ending with "-" (RFC 1035 §2.3.1, RFC 1123
 * §2.1 allowing a leading digit).
 */
static int
hostname_valid(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];

        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              is_digit(c) || (c == '-' && label > 0)))
            return 0;
        label++;
    }
    return 1;
}

/* No component of the absolute path p is "." or "..". */
static int
path_components_ok(const char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t start, n;

        while (i < len && p[i] == '/')
            i++;
        start = i;
        while (i < len && p[i] != '/')
            i++;
        n = i - start;
        if ((n == 1 && p[start] == '.') ||
            (n == 2 && p[start] == '.' && p[start + 1] == '.'))
            return 0;
    }
    return 1;
}

int
config_mailbox_check(const char *tmpl, const char **why)
{
    if (tmpl[0] != '/') {
        *why = "the path must be absolute";
        return PST_ESYNTAX;
    }
    if (!path_components_ok(tmpl, strlen(tmpl))) {
        *why = "the path must not have '.' or '..' components";
        return PST_ESYNTAX;
    }
    for (size_t i = 0; tmpl[i] != '\0'; i++) {
        if (tmpl[i] != '%')
            continue;
        i++;
        if (tmpl[i] != 'u' && tmpl[i] != 'n' && tmpl[i] != 'd' &&
            tmpl[i] != '%') {
            *why = "unknown %-escape (want %u, %n, %d or %%)";
            return PST_ESYNTAX;
        }
    }
    return 0;
}

/* Bytes of one substituted part of an address (see config.h). */
static int
mailbox_part_ok(const char *p, size_t len)
{
    if (len == 0 || p[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)p[i];

        if (c < 0x20 || c == 0x7f || c == '/')
            return 0;
        if (c == '.' && i + 1 < len && p[i + 1] == '.')
            return 0;
    }
    return 1;
}

int
config_mailbox_expand(const char *tmpl, const char *addr, size_t addr_len,
                      struct pst_buf *out)
{
    char domain[CONFIG_ADDRESS_MAX];
    const char *at = NULL, *why;
    size_t local_len, domain_len;
    struct pst_buf path;
    int rc = 0;

    if (tmpl == NULL || addr == NULL || config_mailbox_check(tmpl, &why) != 0)
        return PST_EINVAL;
    if (addr_len == 0 || addr_len >= CONFIG_ADDRESS_MAX)
        return PST_EINVAL;
    /* The domain follows the last "@": a quoted local part may hold one
     * (RFC 5321 §4.1.2 Quoted-string). */
    for (size_t i = addr_len; i > 0; i--) {
        if (addr[i - 1] == '@') {
            at = addr + i - 1;
            break;
        }
    }
    if (at == NULL)
        return PST_EINVAL;
    local_len = (size_t)(at - addr);
    domain_len = addr_len - local_len - 1;
    if (!mailbox_part_ok(addr, local_len) ||
        !mailbox_part_ok(at + 1, domain_len))
        return PST_EINVAL;
    /* RFC 5321 §2.4: domain names are case-insensitive; one mailbox per
     * domain whatever case the client used. */
    for (size_t i = 0; i < domain_len; i++) {
        char c = at[1 + i];

        domain[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }

    pst_buf_init(&path, PATH_MAX - 1, 0);
    for (size_t i = 0; tmpl[i] != '\0' && rc == 0; i++) {
        if (tmpl[i] != '%') {
            rc = pst_buf_append_byte(&path, (uint8_t)tmpl[i]);
            continue;
        }
        switch (tmpl[++i]) {
        case 'u':
            rc = pst_buf_append(&path, addr, local_len);
            if (rc == 0)
                rc = pst_buf_append_byte(&path, '@');
            if (rc == 0)
                rc = pst_buf_append(&path, domain, domain_len);
            break;
        case 'n':
            rc = pst_buf_append(&path, addr, local_len);
            break;
        case 'd':
            rc = pst_buf_append(&path, domain, domain_len);
            break;
        default: /* '%', checked above */
            rc = pst_buf_append_byte(&path, '%');
            break;
        }
    }
    /* A part next to template text could still make "." or ".."
     * (".%n" with a local part "."); the parts refuse a leading dot, but
     * check the result whatever the template. */
    if (rc == 0 && (path.len == 0 || path.data[0] != '/' ||
                    !path_components_ok((char *)path.data, path.len)))
        rc = PST_EINVAL;
    if (rc == 0)
        rc = pst_buf_append(out, path.data, path.len);
    pst_buf_clear(&path);
    return rc;
}

int
config_cidr_parse(const char *text, size_t len, struct config_cidr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = memchr(text, '/', len);
    size_t host_len = slash != NULL ? (size_t)(slash - text) : len;
    uint64_t prefix;
    unsigned max, full, bits;
    struct config_cidr c = {0};

    if (host_len == 0 || host_len >= sizeof(host))
        return PST_ESYNTAX;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    if (inet_pton(AF_INET, host, c.addr) == 1) {
        c.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        c.family = AF_INET6;
        max = 128;
    } else {
        return PST_ESYNTAX;
    }
    prefix = max;
    if (slash != NULL) {
        size_t plen = len - host_len - 1;

        if (plen == 0 || plen > 3 || parse_u64(slash + 1, plen, &prefix) < 0 ||
            prefix > max)
            return PST_ESYNTAX;
    }
    c.prefix = (unsigned)prefix;
    /* Host bits set beyond the prefix ("10.1.2.3/8") are refused. */
    full = c.prefix / 8;
    bits = c.prefix % 8;
    for (unsigned i = full; i < max / 8; i++) {
        uint8_t mask = (i == full && bits != 0) ? (uint8_t)(0xff >> bits)
                                                : 0xff;

        if (c.addr[i] & mask)
            return PST_ESYNTAX;
    }
    *out = c;
    return 0;
}

int
config_cidrs_match(const struct config_cidrs *list, const struct sockaddr *sa)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xff, 0xff};
    uint8_t addr[16];
    int family;

    if (list == NULL || sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        family = AF_INET;
        memcpy(addr, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        family = AF_INET6;
        memcpy(addr, &in6->sin6_addr, 16);
        /* RFC 4291 §2.5.5.2: ::ffff:a.b.c.d is the IPv4 address a.b.c.d
         * as a dual-stack socket reports it. */
        if (memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
            family = AF_INET;
            memmove(addr, addr + 12, 4);
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < list->n; i++) {
        const struct config_cidr *c = &list->v[i];
        unsigned full = c->prefix / 8, bits = c->prefix % 8;

        if (c->family != family)
            continue;
        if (memcmp(addr, c->addr, full) != 0)
            continue;
        if (bits != 0) {
            uint8_t mask = (uint8_t)(0xff << (8 - bits));

            if ((addr[full] & mask) != c->addr[full])
                continue;
        }
        return 1;
    }
    return 0;
}

int
config_listener_has_mech(const struct config_listener *l,
                         const struct pst_sasl_mech *m)
{
    for (size_t i = 0; i < l->n_mechs; i++) {
        if (l->mechs[i] == m)
            return 1;
    }
    return 0;
}

int
config_listener_offers(const struct config_listener *l,
                       const struct pst_sasl_mech *m, int tls_active)
{
    if (l->auth == CONFIG_AUTH_OFF || m == NULL ||
        !config_listener_has_mech(l, m))
        return 0;
    if (tls_active)
        return 1;
    /* DESIGN.md auth_before_tls; RFC 4954 §4 leaves the choice to the
     * server ("a server implementation MUST implement a configuration in
     * which it does NOT permit any plaintext password mechanisms, unless
     * either the STARTTLS command has been negotiated ..."). */
    switch (l->auth_before_tls) {
    case CONFIG_ABT_ALL:
        return 1;
    case CONFIG_ABT_CHALLENGE:
        return !(pst_sasl_mech_flags(m) & PST_MECH_SENDS_PASSWORD);
    case CONFIG_ABT_NONE:
        break;
    }
    return 0;
}

/* "HOST:PORT" or "[IPV6]:PORT", numeric hosts only. */
static int
parse_address(const char *v, struct config_listener *l)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon;
    size_t host_len;
    uint64_t port;

    memset(&l->addr, 0, sizeof(l->addr));
    if (v[0] == '[') {
        const char *close = strchr(v, ']');

        if (close == NULL || close[1] != ':')
            return -1;
        host_len = (size_t)(close - v - 1);
        if (host_len == 0 || host_len >= sizeof(host))
            return -1;
        memcpy(host, v + 1, host_len);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL)
            return -1;
        host_len = (size_t)(colon - v);
        if (host_len == 0 || host_len >= sizeof(host))
            return -1;
        memcpy(host, v, host_len);
    }
    host[host_len] = '\0';
    if (parse_u64(colon + 1, strlen(colon + 1), &port) < 0 || port == 0 ||
        port > 65535)
        return -1;
    if (v[0] == '[') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;

        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return -1;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        l->addr_len = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&l->addr;

        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return -1;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        l->addr_len = sizeof(*in);
    }
    return 0;
}

/*
 * Whether two listeners would fight over one socket: same family and
 * port, and the same address or either one the wildcard (binding
 * 0.0.0.0:25 takes 127.0.0.1:25 too).
 */
static int
address_conflict(const struct config_listener *a,
                 const struct config_listener *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return 0;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->addr;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&b->addr;

        return x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr ||
                x->sin_addr.s_addr == htonl(INADDR_ANY) ||
                y->sin_addr.s_addr == htonl(INADDR_ANY));
    } else {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->addr;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->addr;

        return x->sin6_port == y->sin6_port &&
               (memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 ||
                memcmp(&x->sin6_addr, &in6addr_any, 16) == 0 ||
                memcmp(&y->sin6_addr, &in6addr_any, 16) == 0);
    }
}

/* Space-, tab- or comma-separated words: calls fn for each. */
static int
for_each_word(struct parser *p, const char *v, void *ctx,
              int (*fn)(struct parser *, const char *, size_t, void *))
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
        if (i > start && (rc = fn(p, v + start, i - start, ctx)) != 0)
            return rc;
    }
    return 0;
}

static int
add_cidr(struct parser *p, const char *w, size_t len, void *ctx)
{
    struct config_cidrs *list = ctx;
    char shown[72], word[128];
    struct config_cidr *nv;

    if (len >= sizeof(word))
        len = sizeof(word) - 1;
    memcpy(word, w, len);
    word[len] = '\0';
    if (list->n >= CONFIG_CIDRS_MAX)
        return perr(p, p->line, "too many networks in 'auth_throttle_exempt'"
                    " (at most %d)", CONFIG_CIDRS_MAX);
    nv = realloc(list->v, (list->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return PST_ENOMEM;
    list->v = nv;
    if (config_cidr_parse(w, len, &list->v[list->n]) != 0)
        return perr(p, p->line,
                    "bad network '%s' in 'auth_throttle_exempt' (want "
                    "ADDRESS or ADDRESS/PREFIX, no host bits past the "
                    "prefix)",
                    show(word, shown));
    list->n++;
    return 0;
}

static int
add_mech(struct parser *p, const char *w, size_t len, void *ctx)
{
    struct config_listener *l = ctx;
    const struct pst_sasl_mech *m = pst_sasl_mech_find(w, len);
    char shown[72], word[128];

    if (len >= sizeof(word))
        len = sizeof(word) - 1;
    memcpy(word, w, len);
    word[len] = '\0';
    if (m == NULL)
        return perr(p, p->line, "unknown mechanism '%s'", show(word, shown));
    if (config_listener_has_mech(l, m))
        return perr(p, p->line, "mechanism '%s' listed twice",
                    pst_sasl_mech_name(m));
    if (l->n_mechs >= CONFIG_MAX_MECHS)
        return perr(p, p->line, "too many mechanisms");
    l->mechs[l->n_mechs++] = m;
    return 0;
}

static int
bad_value(struct parser *p, const struct key_def *k, const char *v,
          const char *want)
{
    char shown[72];

    return perr(p, p->line, "bad value '%s' for '%s' (want %s)",
                show(v, shown), k->name, want);
}

/* Parse v as key k's type into val (strings are strdup'ed into val->str). */
static int
parse_value(struct parser *p, const struct key_def *k, const char *v,
            struct value *val)
{
    char want[128];
    const char *why;
    size_t len = strlen(v);

    switch (k->type) {
    case KT_STRING:
        break;
    case KT_HOSTNAME:
        if (!hostname_valid(v))
            return bad_value(p, k, v, "a domain name");
        break;
    case KT_USERDB:
        if (strncmp(v, "passwd-file:", 12) == 0 && v[12] != '\0') {
            val->e = CONFIG_USERDB_PASSWD_FILE;
            v += 12;
        } else if (strncmp(v, "pgsql:", 6) == 0 && v[6] != '\0') {
            val->e = CONFIG_USERDB_PGSQL;
            v += 6;
        } else {
            return bad_value(p, k, v, "passwd-file:PATH or pgsql:CONNINFO");
        }
        break;
    case KT_MAILBOX:
        if (strncmp(v, "maildir:", 8) != 0)
            return bad_value(p, k, v, "maildir:TEMPLATE");
        if (config_mailbox_check(v + 8, &why) != 0) {
            char shown[72];

            return perr(p, p->line, "bad value '%s' for 'mailbox': %s",
                        show(v, shown), why);
        }
        v += 8;
        break;
    case KT_ENUM:
        for (size_t i = 0; k->names[i].name != NULL; i++) {
            if (strcmp(v, k->names[i].name) == 0) {
                val->e = k->names[i].value;
                return 0;
            }
        }
        want_list(k->names, want, sizeof(want));
        return bad_value(p, k, v, want);
    case KT_NUMBER:
        if (parse_u64(v, len, &val->num) < 0 || val->num < k->min ||
            val->num > k->max) {
            if (k->max == UINT64_MAX)
                snprintf(want, sizeof(want), "a number >= %llu",
                         (unsigned long long)k->min);
            else
                snprintf(want, sizeof(want), "a number from %llu to %llu",
                         (unsigned long long)k->min,
                         (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        return 0;
    case KT_SECONDS: {
        uint64_t unit = 1;
        size_t n = len;

        if (n > 0 && (v[n - 1] == 's' || v[n - 1] == 'm' || v[n - 1] == 'h')) {
            unit = v[n - 1] == 's' ? 1 : v[n - 1] == 'm' ? 60 : 3600;
            n--;
        }
        if (parse_u64(v, n, &val->num) < 0 || val->num > k->max / unit ||
            val->num * unit < k->min) {
            snprintf(want, sizeof(want),
                     "seconds from %llu to %llu, optionally with s, m or h",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        val->num *= unit;
        return 0;
    }
    case KT_MILLIS: {
        uint64_t unit = 1000;
        size_t n = len;

        if (n > 1 && v[n - 2] == 'm' && v[n - 1] == 's') {
            unit = 1;
            n -= 2;
        } else if (n > 0 && (v[n - 1] == 's' || v[n - 1] == 'm' ||
                             v[n - 1] == 'h')) {
            unit = v[n - 1] == 's' ? 1000 : v[n - 1] == 'm' ? 60000
                                                            : 3600000;
            n--;
        }
        if (parse_u64(v, n, &val->num) < 0 || val->num > k->max / unit ||
            val->num * unit < k->min) {
            snprintf(want, sizeof(want),
                     "a time from %llu ms to %llu ms: seconds, or a number "
                     "with ms, s, m or h", (unsigned long long)k->min,
                     (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        val->num *= unit;
        return 0;
    }
    case KT_WORKERS:
        if (strcmp(v, "auto") == 0) {
            val->num = 0;
            return 0;
        }
        if (parse_u64(v, len, &val->num) < 0 || val->num < k->min ||
            val->num > k->max) {
            snprintf(want, sizeof(want), "auto or a number from %llu to %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return bad_value(p, k, v, want);
        }
        return 0;
    case KT_CIDRS:
    case KT_ADDRESS:
    case KT_MECHS:
        break; /* stored directly by the caller */
    }
    val->str = strdup(v);
    return val->str == NULL ? PST_ENOMEM : 0;
}

static int
set_global(struct parser *p, enum config_key id, const char *v)
{
    struct config *c = p->c;
    struct value val = {0};
    int rc;

    if (id == K_AUTH_THROTTLE_EXEMPT)
        return for_each_word(p, v, &c->auth_throttle_exempt, add_cidr);
    rc = parse_value(p, &keys[id], v, &val);
    if (rc != 0)
        return rc;
    switch (id) {
    case K_HOSTNAME:
        c->hostname = val.str;
        break;
    case K_USERDB:
        c->userdb = (enum config_userdb)val.e;
        c->userdb_arg = val.str;
        break;
    case K_MAILBOX:
        c->mailbox = val.str;
        break;
    case K_SPOOL:
        c->spool = val.str;
        break;
    case K_TLS_CERT:
        c->tls_cert = val.str;
        break;
    case K_TLS_KEY:
        c->tls_key = val.str;
        break;
    case K_TLS_MIN_VERSION:
        c->tls_min_version = val.e;
        break;
    case K_MAX_MESSAGE_SIZE:
        c->max_message_size = val.num;
        break;
    case K_SENDER_CHECK:
        c->sender_check = (enum config_sender_check)val.e;
        break;
    case K_AUTH_THROTTLE:
        c->auth_throttle = val.e;
        break;
    case K_MAX_RECIPIENTS:
        c->max_recipients = (unsigned)val.num;
        break;
    case K_MAX_CONNECTIONS:
        c->max_connections = (unsigned)val.num;
        break;
    case K_MAX_CONNECTIONS_PER_IP:
        c->max_connections_per_ip = (unsigned)val.num;
        break;
    case K_MAX_ERRORS:
        c->max_errors = (unsigned)val.num;
        break;
    case K_TIMEOUT_COMMAND:
        c->timeout_command = (unsigned)val.num;
        break;
    case K_TIMEOUT_DATA:
        c->timeout_data = (unsigned)val.num;
        break;
    case K_TIMEOUT_FINAL:
        c->timeout_final = (unsigned)val.num;
        break;
    case K_SESSION_TIME_LIMIT:
        c->session_time_limit = (unsigned)val.num;
        break;
    case K_DATA_TIME_LIMIT:
        c->data_time_limit = (unsigned)val.num;
        break;
    case K_AUTH_FAILURE_DELAY:
        c->auth_failure_delay_ms = (unsigned)val.num;
        break;
    case K_GRACE_PERIOD:
        c->grace_period = (unsigned)val.num;
        break;
    case K_WORKERS:
        c->workers = (unsigned)val.num;
        break;
    case K_LOG_LEVEL:
        c->log_level = (enum log_level)val.e;
        break;
    case K_LEGACY_AUTH_LINE:
        c->legacy_auth_line = val.e;
        break;
    case K_AUTH_THROTTLE_DELAY:
        c->auth_throttle_delay = (unsigned)val.num;
        break;
    case K_AUTH_THROTTLE_MAX_DELAY:
        c->auth_throttle_max_delay = (unsigned)val.num;
        break;
    case K_AUTH_THROTTLE_LOCKOUT_FAILURES:
        c->auth_throttle_lockout_failures = (unsigned)val.num;
        break;
    case K_AUTH_THROTTLE_LOCKOUT_TIME:
        c->auth_throttle_lockout_time = (unsigned)val.num;
        break;
    case K_AUTH_THROTTLE_USER_FAILURES:
        c->auth_throttle_user_failures = (unsigned)val.num;
        break;
    case K_AUTH_THROTTLE_FORGET:
        c->auth_throttle_forget = (unsigned)val.num;
        break;
    case K_USERDB_QUERY:
        c->userdb_query = val.str;
        break;
    case K_USERDB_TIMEOUT:
        c->userdb_timeout = (unsigned)val.num;
        break;
    default:
        free(val.str);
        return PST_EINVAL; /* not a global key: a bug in the tables */
    }
    return 0;
}

static int
set_listener(struct parser *p, enum config_key id, const char *v)
{
    struct config_listener *l = p->cur;
    struct value val = {0};
    char shown[72];
    int rc;

    switch (id) {
    case K_ADDRESS:
        if (parse_address(v, l) < 0)
            return perr(p, p->line,
                        "bad address '%s' (want IPV4:PORT or [IPV6]:PORT, "
                        "numeric)",
                        show(v, shown));
        l->address = strdup(v);
        return l->address == NULL ? PST_ENOMEM : 0;
    case K_MECHANISMS:
        l->n_mechs = 0; /* replaces the default list */
        return for_each_word(p, v, l, add_mech);
    default:
        break;
    }
    rc = parse_value(p, &keys[id], v, &val);
    if (rc != 0)
        return rc;
    switch (id) {
    case K_TLS:
        l->tls = (enum config_tls)val.e;
        break;
    case K_AUTH:
        l->auth = (enum config_auth)val.e;
        break;
    case K_AUTH_BEFORE_TLS:
        l->auth_before_tls = (enum config_auth_before_tls)val.e;
        break;
    default:
        free(val.str);
        return PST_EINVAL; /* not a listener key: a bug in the tables */
    }
    return 0;
}

/* "[listener NAME]" (the brackets already checked). */
static int
start_section(struct parser *p, char *inner)
{
    struct config *c = p->c;
    struct config_listener *l, *nv;
    char shown[72];
    char *name;
    size_t len;

    while (is_space(*inner))
        inner++;
    len = strlen(inner);
    while (len > 0 && is_space(inner[len - 1]))
        inner[--len] = '\0';
    if (strncmp(inner, "listener", 8) != 0 || !is_space(inner[8]))
        return perr(p, p->line, "unknown section '[%s]' (want [listener "
                    "NAME])", show(inner, shown));
    name = inner + 8;
    while (is_space(*name))
        name++;
    len = strlen(name);
    if (len == 0 || len > CONFIG_NAME_MAX)
        return perr(p, p->line, "bad listener name '%s'", show(name, shown));
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              is_digit(ch) || ch == '-' || ch == '_' || ch == '.'))
            return perr(p, p->line, "bad listener name '%s' (letters, "
                        "digits, '-', '_' and '.')", show(name, shown));
    }
    for (size_t i = 0; i < c->n_listeners; i++) {
        if (strcmp(c->listeners[i].name, name) == 0)
            return perr(p, p->line, "duplicate [listener %s] (first on line "
                        "%u)", name, c->listeners[i].line);
    }
    if (c->n_listeners >= CONFIG_LISTENERS_MAX)
        return perr(p, p->line, "too many listeners (at most %d)",
                    CONFIG_LISTENERS_MAX);
    nv = realloc(c->listeners, (c->n_listeners + 1) * sizeof(*nv));
    if (nv == NULL)
        return PST_ENOMEM;
    c->listeners = nv;
    l = &c->listeners[c->n_listeners];
    *l = (struct config_listener){
        .tls = CONFIG_TLS_STARTTLS,
        .auth = CONFIG_AUTH_REQUIRED,
        .auth_before_tls = CONFIG_ABT_NONE,
        .line = p->line,
    };
    l->name = strdup(name);
    if (l->name == NULL)
        return PST_ENOMEM;
    /* Default mechanisms: every one libpostern implements, strongest
     * first. */
    for (const struct pst_sasl_mech *m;
         l->n_mechs < CONFIG_MAX_MECHS &&
         (m = pst_sasl_mech_at(l->n_mechs)) != NULL;)
        l->mechs[l->n_mechs++] = m;
    memset(&p->lseen[c->n_listeners], 0, sizeof(p->lseen[0]));
    c->n_listeners++;
    p->cur = l;
    return 0;
}

/* One line, comment and line end removed. */
static int
parse_line(struct parser *p, char *s)
{
    char *eq, *key, *v;
    size_t len, i;
    char shown[72];
    unsigned *seen;
    int id = -1;

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
            return perr(p, p->line, "section header without ']'");
        s[len - 1] = '\0';
        return start_section(p, s + 1);
    }
    eq = strchr(s, '=');
    if (eq == NULL || eq == s)
        return perr(p, p->line, "expected 'key = value' or '[listener "
                    "NAME]'");
    *eq = '\0';
    key = s;
    len = strlen(key);
    while (len > 0 && is_space(key[len - 1]))
        key[--len] = '\0';
    v = eq + 1;
    while (is_space(*v))
        v++;

    for (size_t k = 0; k < K_END; k++) {
        if (strcmp(keys[k].name, key) == 0) {
            id = (int)k;
            break;
        }
    }
    if (p->cur == NULL) {
        if (id < 0 || id >= K_GLOBAL_END) {
            if (id >= K_GLOBAL_END)
                return perr(p, p->line, "key '%s' belongs in a [listener "
                            "NAME] section", key);
            return perr(p, p->line, "unknown key '%s'", show(key, shown));
        }
        seen = &p->gseen[id];
    } else {
        if (id >= 0 && id < K_GLOBAL_END)
            return perr(p, p->line, "global key '%s' after [listener %s] "
                        "(global keys go before the first section)", key,
                        p->cur->name);
        if (id < 0)
            return perr(p, p->line, "unknown key '%s' in [listener %s]",
                        show(key, shown), p->cur->name);
        seen = &p->lseen[p->c->n_listeners - 1].line[id - K_GLOBAL_END];
    }
    if (*seen != 0)
        return perr(p, p->line, "duplicate key '%s' (first on line %u)", key,
                    *seen);
    *seen = p->line;
    if (*v == '\0')
        return perr(p, p->line, "empty value for '%s'", key);
    if (p->cur == NULL)
        return set_global(p, (enum config_key)id, v);
    return set_listener(p, (enum config_key)id, v);
}

static const char *
tls_name(enum config_tls t)
{
    for (size_t i = 0; tls_names[i].name != NULL; i++) {
        if (tls_names[i].value == (int)t)
            return tls_names[i].name;
    }
    return "?";
}

static const char *
abt_name(enum config_auth_before_tls a)
{
    for (size_t i = 0; abt_names[i].name != NULL; i++) {
        if (abt_names[i].value == (int)a)
            return abt_names[i].name;
    }
    return "?";
}

/* Checks that need the whole file. */
static int
finish(struct parser *p)
{
    static const enum config_key required[] = {
        K_HOSTNAME, K_USERDB, K_MAILBOX, K_SPOOL,
    };
    struct config *c = p->c;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (p->gseen[required[i]] == 0)
            return perr(p, 0, "missing required key '%s'",
                        keys[required[i]].name);
    }
    /* The query and the timeout belong to the PostgreSQL store. */
    if (c->userdb != CONFIG_USERDB_PGSQL) {
        if (p->gseen[K_USERDB_QUERY] != 0)
            return perr(p, p->gseen[K_USERDB_QUERY],
                        "userdb_query needs userdb = pgsql:CONNINFO");
        if (p->gseen[K_USERDB_TIMEOUT] != 0)
            return perr(p, p->gseen[K_USERDB_TIMEOUT],
                        "userdb_timeout needs userdb = pgsql:CONNINFO");
    }
    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
        if (c->tls_cert != NULL)
            return perr(p, p->gseen[K_TLS_CERT], "tls_cert without tls_key");
        return perr(p, p->gseen[K_TLS_KEY], "tls_key without tls_cert");
    }
    if (c->n_listeners == 0)
        return perr(p, 0, "no [listener NAME] section");

    for (size_t i = 0; i < c->n_listeners; i++) {
        struct config_listener *l = &c->listeners[i];
        const struct listener_seen *ls = &p->lseen[i];
        unsigned tls_line = ls->line[K_TLS - K_GLOBAL_END];
        unsigned addr_line = ls->line[K_ADDRESS - K_GLOBAL_END];
        unsigned abt_line = ls->line[K_AUTH_BEFORE_TLS - K_GLOBAL_END];
        size_t offered = 0;

        if (l->address == NULL)
            return perr(p, l->line, "[listener %s] has no address", l->name);
        if (l->tls != CONFIG_TLS_NONE && c->tls_cert == NULL)
            return perr(p, tls_line != 0 ? tls_line : l->line,
                        "[listener %s]: tls = %s%s needs tls_cert and "
                        "tls_key", l->name, tls_name(l->tls),
                        tls_line != 0 ? "" : " (the default)");
        if (l->auth != CONFIG_AUTH_OFF && l->n_mechs == 0)
            return perr(p, ls->line[K_MECHANISMS - K_GLOBAL_END],
                        "[listener %s]: no mechanisms", l->name);
        /* Without TLS only auth_before_tls decides what is offered
         * (RFC 4954 §4: a mechanism not offered gets 504 5.5.4); a
         * listener whose users could never authenticate is a mistake. */
        for (size_t m = 0; m < l->n_mechs; m++)
            offered += (size_t)config_listener_offers(l, l->mechs[m], 0);
        if (l->auth != CONFIG_AUTH_OFF && l->tls == CONFIG_TLS_NONE &&
            offered == 0)
            return perr(p, abt_line != 0 ? abt_line : l->line,
                        "[listener %s]: tls = none and auth_before_tls = "
                        "%s leave no mechanism to offer", l->name,
                        abt_name(l->auth_before_tls));
        for (size_t j = 0; j < i; j++) {
            if (address_conflict(&c->listeners[j], l))
                return perr(p, addr_line, "address %s of [listener %s] "
                            "overlaps [listener %s] (line %u)", l->address,
                            l->name, c->listeners[j].name,
                            p->lseen[j].line[K_ADDRESS - K_GLOBAL_END]);
        }
    }
    return 0;
}

static struct config *
config_new(const char *file)
{
    struct config *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    *c = (struct config){
        .tls_min_version = TLS1_2_VERSION,
        .max_message_size = 26214400,
        .sender_check = CONFIG_SENDER_STRICT,
        .auth_throttle = 1,
        .max_recipients = 100,          /* RFC 5321 §4.5.3.1.8 minimum */
        .max_connections = 1000,
        .max_connections_per_ip = 50,
        .max_errors = 20,
        .timeout_command = 300,         /* RFC 5321 §4.5.3.2.7 */
        .timeout_data = 180,            /* RFC 5321 §4.5.3.2.5 */
        .timeout_final = 600,           /* RFC 5321 §4.5.3.2.6 */
        .session_time_limit = 3600,
        .data_time_limit = 1800,
        .auth_failure_delay_ms = 1000,  /* Dovecot: auth_failure_delay */
        .grace_period = 30,
        .workers = 0,
        .log_level = LOG_LEVEL_INFO,
        .legacy_auth_line = 0,
        .auth_throttle_delay = 1,       /* doubles per failure ... */
        .auth_throttle_max_delay = 15,  /* ... up to this (Dovecot) */
        .auth_throttle_lockout_failures = 10,
        .auth_throttle_lockout_time = 300,
        .auth_throttle_user_failures = 10,
        .auth_throttle_forget = 600,
        .userdb_timeout = 5,
    };
    c->file = strdup(file);
    if (c->file == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

int
config_parse(const char *file, const char *text, size_t len,
             struct config **out, char *err, size_t err_size)
{
    struct parser *p;
    size_t pos = 0;
    int rc = 0;

    *out = NULL;
    if (err != NULL && err_size > 0)
        err[0] = '\0';
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PST_ENOMEM;
    p->file = file;
    p->err = err;
    p->err_size = err_size;
    p->c = config_new(file);
    if (p->c == NULL) {
        free(p);
        return PST_ENOMEM;
    }
    while (pos < len && rc == 0) {
        char line[CONFIG_LINE_MAX];
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;

        p->line++;
        if (n > 0 && text[pos + n - 1] == '\r')
            n--; /* CRLF files */
        if (n >= sizeof(line)) {
            rc = perr(p, p->line, "line too long (more than %d bytes)",
                      CONFIG_LINE_MAX - 1);
            break;
        }
        if (memchr(text + pos, '\0', n) != NULL) {
            rc = perr(p, p->line, "NUL byte");
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
    free(p);
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

void
config_free(struct config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_listeners; i++) {
        free(c->listeners[i].name);
        free(c->listeners[i].address);
    }
    free(c->listeners);
    free(c->auth_throttle_exempt.v);
    free(c->file);
    free(c->hostname);
    free(c->userdb_arg);
    free(c->userdb_query);
    free(c->mailbox);
    free(c->spool);
    free(c->tls_cert);
    free(c->tls_key);
    free(c);
}
