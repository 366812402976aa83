/*
 * posternd - the values of the configuration file (config.h): numbers,
 * host names, mailbox templates, networks, socket addresses, and what a
 * listener's settings offer.  The parser (config.c) reads a file into
 * them through its key tables.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"

/* Decimal digits only (no sign, no spaces) into *out, no overflow. */
int
config_u64_parse(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
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
int
config_hostname_valid(const char *s)
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
              (c >= '0' && c <= '9') || (c == '-' && label > 0)))
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

const struct config_relay *
config_relay_find(const struct config *c, const char *name)
{
    for (size_t i = 0; name != NULL && i < c->n_relays; i++)
        if (strcmp(c->relays[i].name, name) == 0)
            return &c->relays[i];
    return NULL;
}

int
config_domain_local(const struct config *c, const char *domain, size_t len)
{
    for (size_t i = 0; i < c->local_domains.n; i++)
        if (strlen(c->local_domains.v[i]) == len &&
            strncasecmp(c->local_domains.v[i], domain, len) == 0)
            return 1;
    return 0;
}

char *
config_mailbox_root(const char *tmpl)
{
    const char *pct = tmpl != NULL ? strchr(tmpl, '%') : NULL;
    size_t n;

    if (tmpl == NULL)
        return NULL;
    /* The directory part before the first escape: "/var/mail/%d/%n" ->
     * "/var/mail"; without an escape, the Maildir's parent. */
    n = pct != NULL ? (size_t)(pct - tmpl) : strlen(tmpl);
    while (n > 0 && tmpl[n - 1] != '/')
        n--;
    while (n > 1 && tmpl[n - 1] == '/')
        n--;
    return n == 0 ? strdup("/") : strndup(tmpl, n);
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

        if (plen == 0 || plen > 3 ||
            config_u64_parse(slash + 1, plen, &prefix) < 0 || prefix > max)
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
    for (size_t i = 0; i < l->mechs.n; i++) {
        if (l->mechs.v[i] == m)
            return 1;
    }
    return 0;
}

int
config_listener_offers(const struct config_listener *l,
                       const struct pst_sasl_mech *m, int tls_active)
{
    return config_listener_offers_abt(l, l->auth_before_tls, m,
                                      tls_active);
}

int
config_listener_offers_abt(const struct config_listener *l,
                           enum config_auth_before_tls abt,
                           const struct pst_sasl_mech *m, int tls_active)
{
    if (l->auth == CONFIG_AUTH_OFF || m == NULL ||
        !config_listener_has_mech(l, m))
        return 0;
    if (tls_active)
        return 1;
    /* Channel binding and client certificates are TLS's. */
    if (pst_sasl_mech_flags(m) &
        (PST_MECH_CHANNEL_BINDING | PST_MECH_EXTERNAL))
        return 0;
    /* DESIGN.md auth_before_tls; RFC 4954 §4 leaves the choice to the
     * server ("a server implementation MUST implement a configuration in
     * which it does NOT permit any plaintext password mechanisms, unless
     * either the STARTTLS command has been negotiated ..."). */
    switch (abt) {
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
int
config_address_parse(const char *v, struct config_address *a)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon;
    size_t host_len;
    uint64_t port;

    memset(&a->sa, 0, sizeof(a->sa));
    a->len = 0;
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
    if (config_u64_parse(colon + 1, strlen(colon + 1), &port) < 0 ||
        port == 0 || port > 65535)
        return -1;
    if (v[0] == '[') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;

        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return -1;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        a->len = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;

        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return -1;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        a->len = sizeof(*in);
    }
    return 0;
}

/*
 * Whether two listeners would fight over one socket: same family and
 * port, and the same address or either one the wildcard (binding
 * 0.0.0.0:25 takes 127.0.0.1:25 too).
 */
int
config_address_conflict(const struct config_address *a,
                        const struct config_address *b)
{
    if (a->sa.ss_family != b->sa.ss_family)
        return 0;
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->sa;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&b->sa;

        return x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr ||
                x->sin_addr.s_addr == htonl(INADDR_ANY) ||
                y->sin_addr.s_addr == htonl(INADDR_ANY));
    } else {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->sa;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->sa;

        return x->sin6_port == y->sin6_port &&
               (memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 ||
                memcmp(&x->sin6_addr, &in6addr_any, 16) == 0 ||
                memcmp(&y->sin6_addr, &in6addr_any, 16) == 0);
    }
}


int
config_profile_on_listener(const struct config_profile *p,
                           const struct config_listener *l)
{
    if (p->listeners.n == 0)
        return 1;
    for (size_t i = 0; i < p->listeners.n; i++)
        if (strcmp(p->listeners.v[i], l->name) == 0)
            return 1;
    return 0;
}

const struct config_profile *
config_profile_match(const struct config *c, const struct config_listener *l,
                     const struct sockaddr *sa)
{
    /* DESIGN.md: the first profile whose networks (and listeners) match
     * applies. */
    for (size_t i = 0; i < c->n_profiles; i++) {
        const struct config_profile *p = &c->profiles[i];

        if (config_profile_on_listener(p, l) &&
            config_cidrs_match(&p->networks, sa))
            return p;
    }
    return NULL;
}

enum config_auth_before_tls
config_profile_abt(const struct config_profile *p,
                   const struct config_listener *l)
{
    if (p != NULL && p->auth_before_tls != CONFIG_UNSET)
        return (enum config_auth_before_tls)p->auth_before_tls;
    return l->auth_before_tls;
}

char *
config_cidr_format(const struct config_cidr *n, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];

    if (inet_ntop(n->family, n->addr, a, sizeof(a)) == NULL)
        snprintf(a, sizeof(a), "?");
    snprintf(buf, size, "%s/%u", a, n->prefix);
    return buf;
}
