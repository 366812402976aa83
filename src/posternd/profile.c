/*
 * posternd - compatibility profiles at work (profile.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <postern/error.h>

#include "header.h"
#include "log.h"
#include "profile.h"

/* The exceptions, in the order of the profile's keys (and of the log). */
static const struct {
    unsigned bit;
    const char *name;
} used_names[] = {
    {PROFILE_USED_TLS_MIN_VERSION, "tls_min_version"},
    {PROFILE_USED_AUTH_BEFORE_TLS, "auth_before_tls"},
    {PROFILE_USED_HELO_AUTH, "helo_auth"},
    {PROFILE_USED_BARE_LF, "bare_lf"},
    {PROFILE_USED_LONG_LINES, "long_lines"},
    {PROFILE_USED_ADD_MISSING_HEADERS, "add_missing_headers"},
};

#define USED_KINDS (sizeof(used_names) / sizeof(used_names[0]))

char *
profile_used_format(unsigned used, char *buf, size_t n)
{
    size_t len = 0;

    if (n == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < USED_KINDS; i++) {
        int w;

        if (!(used & used_names[i].bit))
            continue;
        w = snprintf(buf + len, n - len, "%s%s", len > 0 ? "," : "",
                     used_names[i].name);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
    return buf;
}

/* --- The counts ---------------------------------------------------------- */

struct profile_stat {
    struct profile_stat *next;
    uint64_t sessions;              /* sessions that used any exception */
    uint64_t used[USED_KINDS];      /* sessions that used each one */
    char name[];
};

/* Shared by every loop; the list is short (a profile per device network)
 * and touched once per session that used an exception. */
static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct profile_stat *stats_head, **stats_tail = &stats_head;

int
profile_count(const char *name, unsigned used)
{
    struct profile_stat *st;
    int rc = 0;

    pthread_mutex_lock(&stats_mu);
    for (st = stats_head; st != NULL; st = st->next)
        if (strcmp(st->name, name) == 0)
            break;
    if (st == NULL) {
        size_t len = strlen(name) + 1;

        st = calloc(1, sizeof(*st) + len);
        if (st != NULL) {
            memcpy(st->name, name, len);
            *stats_tail = st;
            stats_tail = &st->next;
        }
    }
    if (st == NULL) {
        rc = PST_ENOMEM;
    } else {
        st->sessions++;
        for (size_t i = 0; i < USED_KINDS; i++)
            if (used & used_names[i].bit)
                st->used[i]++;
    }
    pthread_mutex_unlock(&stats_mu);
    return rc;
}

void
profile_stats_log(void)
{
    struct profile_stat *st, *next;

    pthread_mutex_lock(&stats_mu);
    st = stats_head;
    stats_head = NULL;
    stats_tail = &stats_head;
    pthread_mutex_unlock(&stats_mu);
    for (; st != NULL; st = next) {
        struct log_line l;

        next = st->next;
        log_begin(&l, LOG_LEVEL_INFO, "compat_stats");
        log_kv(&l, "profile", st->name);
        log_kv_uint(&l, "sessions", st->sessions);
        for (size_t i = 0; i < USED_KINDS; i++)
            if (st->used[i] > 0)
                log_kv_uint(&l, used_names[i].name, st->used[i]);
        log_end(&l);
        free(st);
    }
}

/* --- posternd -t --------------------------------------------------------- */

/* The effective global minimum (TLS_VERSION_DEFAULT is TLSv1.2). */
static enum tls_version
global_tls_min(const struct config *cfg)
{
    return cfg->tls_min_version == TLS_VERSION_DEFAULT ? TLS_VERSION_1_2
                                                       : cfg->tls_min_version;
}

/* Whether profile p relaxes TLS: a version below TLSv1.2 that the global
 * minimum would refuse. */
static int
relaxes_tls(const struct config *cfg, const struct config_profile *p)
{
    return p->tls_min_version != TLS_VERSION_DEFAULT &&
           p->tls_min_version < TLS_VERSION_1_2 &&
           p->tls_min_version < global_tls_min(cfg);
}

/* Whether profile p lets PLAIN and LOGIN passwords go before TLS where a
 * listener of its own would not. */
static int
relaxes_plain_auth(const struct config *cfg, const struct config_profile *p)
{
    if (p->auth_before_tls != CONFIG_ABT_ALL)
        return 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];

        if (config_profile_on_listener(p, l) && l->auth != CONFIG_AUTH_OFF &&
            l->auth_before_tls != CONFIG_ABT_ALL)
            return 1;
    }
    return 0;
}

/*
 * Whether network n is wider than a /16 (IPv4) or a /48 (IPv6); *all
 * gets 1 for a /0.  An IPv4-mapped IPv6 network (::ffff:0:0/96 and
 * inside) is an IPv4 one (RFC 4291 §2.5.5.2), as matching treats it.
 */
static int
network_wide(const struct config_cidr *n, int *all, int *v4)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xff, 0xff};
    unsigned prefix = n->prefix;

    *v4 = n->family == AF_INET;
    if (!*v4 && prefix >= 96 &&
        memcmp(n->addr, v4mapped, sizeof(v4mapped)) == 0) {
        *v4 = 1;
        prefix -= 96;
    }
    *all = prefix == 0;
    return prefix < (*v4 ? 16u : 48u);
}

static const char *
abt_name(int abt)
{
    return abt == CONFIG_ABT_ALL         ? "all"
           : abt == CONFIG_ABT_CHALLENGE ? "challenge"
                                         : "none";
}

/* One warning per wide network of p, for what it relaxes (what). */
static unsigned
warn_wide(const struct config *cfg, const struct config_profile *p,
          const char *what, FILE *warn)
{
    unsigned n = 0;

    for (size_t i = 0; i < p->networks.n; i++) {
        char net[INET6_ADDRSTRLEN + 8];
        int all, v4;

        if (!network_wide(&p->networks.v[i], &all, &v4))
            continue;
        config_cidr_format(&p->networks.v[i], net, sizeof(net));
        if (all)
            fprintf(warn, "posternd: %s:%u: warning: [profile %s] relaxes "
                    "%s for %s: every %s address\n", cfg->file, p->line,
                    p->name, what, net, v4 ? "IPv4" : "IPv6");
        else
            fprintf(warn, "posternd: %s:%u: warning: [profile %s] relaxes "
                    "%s for %s: wider than a /%u\n", cfg->file, p->line,
                    p->name, what, net, v4 ? 16u : 48u);
        n++;
    }
    return n;
}

/* ", key = value" for each key p sets, into b. */
static void
describe_keys(const struct config_profile *p, struct pst_buf *b)
{
    const char *sep = "";

#define ADD(...)                                                             \
    do {                                                                     \
        (void)pst_buf_printf(b, "%s", sep);                                  \
        (void)pst_buf_printf(b, __VA_ARGS__);                                \
        sep = ", ";                                                          \
    } while (0)
    if (p->tls_min_version != TLS_VERSION_DEFAULT)
        ADD("tls_min_version = %s", tls_version_name(p->tls_min_version));
    if (p->auth_before_tls != CONFIG_UNSET)
        ADD("auth_before_tls = %s", abt_name(p->auth_before_tls));
    if (p->helo_auth)
        ADD("helo_auth = yes");
    if (p->bare_lf == CONFIG_BARE_LF_NORMALIZE)
        ADD("bare_lf = normalize");
    if (p->long_lines == CONFIG_LONG_LINES_FOLD)
        ADD("long_lines = fold");
    if (p->add_missing_headers)
        ADD("add_missing_headers = yes");
    if (p->legacy_auth_line != CONFIG_UNSET)
        ADD("legacy_auth_line = %s", p->legacy_auth_line ? "yes" : "no");
#undef ADD
    if (*sep == '\0')
        (void)pst_buf_printf(b, "no exceptions");
}

unsigned
profile_report(const struct config *cfg, FILE *out, FILE *warn)
{
    unsigned warnings = 0;

    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        struct pst_buf b;

        pst_buf_init(&b, 16384, 0);
        for (size_t j = 0; j < p->networks.n; j++) {
            char net[INET6_ADDRSTRLEN + 8];

            (void)pst_buf_printf(&b, "%s%s", j > 0 ? " " : "",
                                 config_cidr_format(&p->networks.v[j], net,
                                                    sizeof(net)));
        }
        (void)pst_buf_printf(&b, " on ");
        if (p->listeners.n == 0)
            (void)pst_buf_printf(&b, "every listener");
        for (size_t j = 0; j < p->listeners.n; j++)
            (void)pst_buf_printf(&b, "%s%s", j > 0 ? " " : "",
                                 p->listeners.v[j]);
        (void)pst_buf_printf(&b, ": ");
        describe_keys(p, &b);
        fprintf(out, "posternd: profile %s (line %u): %.*s\n", p->name,
                p->line, (int)b.len, (const char *)b.data);
        pst_buf_clear(&b);
        if (relaxes_tls(cfg, p)) {
            char what[64];

            snprintf(what, sizeof(what), "tls_min_version (%s)",
                     tls_version_name(p->tls_min_version));
            warnings += warn_wide(cfg, p, what, warn);
        }
        if (relaxes_plain_auth(cfg, p))
            warnings += warn_wide(cfg, p, "auth_before_tls (all: passwords "
                                  "before TLS)", warn);
    }
    return warnings;
}

/* --- add_missing_headers ------------------------------------------------- */

enum profile_hdr_line
profile_hdr_classify(const uint8_t *line, size_t len, size_t held)
{
    unsigned fields;

    /* RFC 5322 §2.1: an empty line ends the header section. */
    if ((len == 2 && line[0] == '\r' && line[1] == '\n') ||
        (len == 1 && line[0] == '\n'))
        return PROFILE_HDR_END;
    /* RFC 5322 §2.2.3: white space first continues the field before;
     * with none before, it is no field. */
    if (len > 0 && (line[0] == ' ' || line[0] == '\t'))
        return held > 0 ? PROFILE_HDR_FIELD : PROFILE_HDR_END;
    /* "name:" (header_scan() reads the line as one field, or as where
     * the body begins). */
    return header_scan(line, len, &fields) == len && len > 0
               ? PROFILE_HDR_FIELD
               : PROFILE_HDR_END;
}

int
profile_hdr_fix(const uint8_t *sec, size_t len, const char *date,
                const char *msgid, struct pst_buf *out, unsigned *added)
{
    unsigned fields;
    size_t end = header_scan(sec, len, &fields), at = end;
    int rc;

    *added = 0;
    /* Before the empty line that ended the section, if one did. */
    if (end >= 2 && sec[end - 1] == '\n' && sec[end - 2] == '\r' &&
        (end == 2 || sec[end - 3] == '\n'))
        at = end - 2;
    else if (end >= 1 && sec[end - 1] == '\n' &&
             (end == 1 || sec[end - 2] == '\n'))
        at = end - 1;
    rc = pst_buf_append(out, sec, at);
    if (rc == 0)
        rc = header_add_missing(fields, date, msgid, out);
    if (rc == 0)
        rc = pst_buf_append(out, sec + at, len - at);
    if (rc == 0)
        *added = (HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID) & ~fields;
    return rc;
}
