/*
 * posternd - the metrics' counters and their text exposition (metrics.h).
 *
 * The format is Prometheus' text exposition format 0.0.4: for each family
 * "# HELP name text", "# TYPE name counter|gauge|histogram", then one
 * line per series, "name{label=\"value\",...} number"; a histogram has
 * cumulative name_bucket{le="..."} series ending with le="+Inf", then
 * name_sum and name_count.
 */
#include <stdlib.h>
#include <string.h>

#include <postern/error.h>
#include <postern/sasl.h>

#include "metrics.h"
#include "tls.h"

struct metrics {
    unsigned nloops;
    struct metrics_loop *loops;   /* nloops of them, cache aligned */
};

/* Upper bounds of the latency buckets, in microseconds and as written
 * (le="..."); the last bucket is +Inf. */
static const uint64_t latency_le_us[METRICS_LATENCY_BUCKETS - 1] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000,
};
static const char *const latency_le[METRICS_LATENCY_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5", "1", "2.5", "5", "10", "+Inf",
};

static const char *const refusal_names[] = {
#define METRICS_REFUSAL_NAME_(name, text) [METRICS_REFUSED_##name] = text,
    METRICS_REFUSAL_MAP(METRICS_REFUSAL_NAME_)
#undef METRICS_REFUSAL_NAME_
};

static const char *const relay_result_names[] = {
#define METRICS_RELAY_NAME_(name, text) [METRICS_RELAY_##name] = text,
    METRICS_RELAY_MAP(METRICS_RELAY_NAME_)
#undef METRICS_RELAY_NAME_
};

/* --- The loops ----------------------------------------------------------- */

int
metrics_new(unsigned nloops, struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof(*m));
    size_t size = (size_t)nloops * sizeof(struct metrics_loop);

    *out = NULL;
    if (m == NULL)
        return PST_ENOMEM;
    /* aligned_alloc() wants a multiple of the alignment: the struct's
     * size is one (_Alignas). */
    m->loops = nloops > 0 ? aligned_alloc(_Alignof(struct metrics_loop),
                                          size)
                          : NULL;
    if (nloops > 0 && m->loops == NULL) {
        free(m);
        return PST_ENOMEM;
    }
    if (nloops > 0)
        memset(m->loops, 0, size);
    m->nloops = nloops;
    *out = m;
    return 0;
}

void
metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    free(m->loops);
    free(m);
}

struct metrics_loop *
metrics_loop(struct metrics *m, unsigned i)
{
    if (m == NULL || i >= m->nloops)
        return NULL;
    return &m->loops[i];
}

/* The owning loop adds n: no other thread writes the counter, so a
 * relaxed load and store suffice (no locked read-modify-write), and a
 * scrape's relaxed load sees a whole value, never a torn one. */
static inline void
bump(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
                                 n,
                          memory_order_relaxed);
}

static inline uint64_t
peek(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit((atomic_uint_fast64_t *)c,
                                memory_order_relaxed);
}

void
metrics_conn_opened(struct metrics_loop *ml, size_t lidx)
{
    if (ml == NULL || lidx >= CONFIG_LISTENERS_MAX)
        return;
    bump(&ml->conns[lidx], 1);
    atomic_store_explicit(&ml->open,
                          atomic_load_explicit(&ml->open,
                                               memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void
metrics_conn_closed(struct metrics_loop *ml)
{
    if (ml == NULL)
        return;
    atomic_store_explicit(&ml->open,
                          atomic_load_explicit(&ml->open,
                                               memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

void
metrics_tls(struct metrics_loop *ml, const char *version)
{
    enum tls_version v;

    if (ml == NULL)
        return;
    if (version == NULL || tls_version_parse(version, &v) < 0 ||
        v > TLS_VERSION_1_3)
        v = TLS_VERSION_DEFAULT; /* "other" */
    bump(&ml->tls[v], 1);
}

void
metrics_tls_failed(struct metrics_loop *ml)
{
    if (ml != NULL)
        bump(&ml->tls_failed, 1);
}

/* The row of mechanism name in auth[]: its place in libpostern's table
 * of every mechanism, or METRICS_MECHS_MAX (unknown). */
static size_t
mech_index(const char *name)
{
    const struct pst_sasl_mech *m;

    if (name == NULL || (m = pst_sasl_mech_find(name, strlen(name))) ==
                            NULL)
        return METRICS_MECHS_MAX;
    for (size_t i = 0; i < METRICS_MECHS_MAX; i++)
        if (pst_sasl_mech_all_at(i) == m)
            return i;
    return METRICS_MECHS_MAX;
}

void
metrics_auth(struct metrics_loop *ml, const char *mech, int ok)
{
    if (ml != NULL)
        bump(&ml->auth[mech_index(mech)][ok ? 1 : 0], 1);
}

void
metrics_throttle_delay(struct metrics_loop *ml)
{
    if (ml != NULL)
        bump(&ml->throttle_delays, 1);
}

void
metrics_lockout(struct metrics_loop *ml)
{
    if (ml != NULL)
        bump(&ml->lockouts, 1);
}

void
metrics_accepted(struct metrics_loop *ml, uint64_t bytes,
                 uint64_t latency_ns)
{
    uint64_t us = latency_ns / 1000;
    size_t b = 0;

    if (ml == NULL)
        return;
    bump(&ml->accepted, 1);
    bump(&ml->accepted_bytes, bytes);
    while (b < METRICS_LATENCY_BUCKETS - 1 && us > latency_le_us[b])
        b++;
    bump(&ml->latency[b], 1);
    bump(&ml->latency_sum_us, us);
    bump(&ml->latency_count, 1);
}

void
metrics_refused(struct metrics_loop *ml, enum metrics_refusal why)
{
    if (ml != NULL && why < METRICS_REFUSALS)
        bump(&ml->refused[why], 1);
}

enum metrics_refusal
metrics_refusal_of(const char *reason, int error)
{
    /* The reasons lib/smtp/server_data.c gives (server_data_fail()). */
    if (reason != NULL && strcmp(reason, "message too big") == 0)
        return METRICS_REFUSED_SIZE;
    if (reason != NULL && strcmp(reason, "line too long") == 0)
        return METRICS_REFUSED_LINE_LENGTH;
    if (error == PST_EPROTO && reason != NULL &&
        strstr(reason, "bare") != NULL)
        return METRICS_REFUSED_BARE_LF;
    return METRICS_REFUSED_OTHER;
}

/* --- The relay's counters (control loop) ------------------------------- */

struct relay_count {
    char *name;
    uint64_t attempts[METRICS_RELAY_RESULTS];
};

static struct relay_count *relay_counts;
static size_t nrelay_counts;

static struct relay_count *
relay_count(const char *relay)
{
    struct relay_count *v;

    if (relay == NULL)
        return NULL;
    for (size_t i = 0; i < nrelay_counts; i++)
        if (strcmp(relay_counts[i].name, relay) == 0)
            return &relay_counts[i];
    v = realloc(relay_counts, (nrelay_counts + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    relay_counts = v;
    memset(&v[nrelay_counts], 0, sizeof(*v));
    if ((v[nrelay_counts].name = strdup(relay)) == NULL)
        return NULL;
    return &v[nrelay_counts++];
}

static const struct relay_count *
relay_count_find(const char *relay)
{
    for (size_t i = 0; i < nrelay_counts; i++)
        if (strcmp(relay_counts[i].name, relay) == 0)
            return &relay_counts[i];
    return NULL;
}

void
metrics_relay_attempt(const char *relay, enum metrics_relay_result result)
{
    struct relay_count *r = relay_count(relay);

    if (r != NULL && result < METRICS_RELAY_RESULTS)
        r->attempts[result]++;
}

void
metrics_relay_reset(void)
{
    for (size_t i = 0; i < nrelay_counts; i++)
        free(relay_counts[i].name);
    free(relay_counts);
    relay_counts = NULL;
    nrelay_counts = 0;
}

/* --- The exposition ------------------------------------------------------ */

static int
family(struct pst_buf *out, const char *name, const char *type,
       const char *help)
{
    return pst_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                          name, type);
}

/* A label value: the exposition format escapes \, " and newline.  The
 * names we write (listeners, relays, mechanisms) never need it, but a
 * name is the administrator's text. */
static int
label_value(struct pst_buf *out, const char *v)
{
    int rc = 0;

    for (; *v != '\0' && rc == 0; v++) {
        if (*v == '\\' || *v == '"')
            rc = pst_buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            rc = pst_buf_append_str(out, "\\n");
        else
            rc = pst_buf_append_byte(out, (uint8_t)*v);
    }
    return rc;
}

/* name{key="value"} n */
static int
sample1(struct pst_buf *out, const char *name, const char *key,
        const char *value, uint64_t n)
{
    int rc = pst_buf_printf(out, "%s{%s=\"", name, key);

    if (rc == 0)
        rc = label_value(out, value);
    if (rc == 0)
        rc = pst_buf_printf(out, "\"} %llu\n", (unsigned long long)n);
    return rc;
}

/* name{k1="v1",k2="v2"} n */
static int
sample2(struct pst_buf *out, const char *name, const char *k1,
        const char *v1, const char *k2, const char *v2, uint64_t n)
{
    int rc = pst_buf_printf(out, "%s{%s=\"", name, k1);

    if (rc == 0)
        rc = label_value(out, v1);
    if (rc == 0)
        rc = pst_buf_printf(out, "\",%s=\"", k2);
    if (rc == 0)
        rc = label_value(out, v2);
    if (rc == 0)
        rc = pst_buf_printf(out, "\"} %llu\n", (unsigned long long)n);
    return rc;
}

/* The sum over the loops of the counter at offset off in the struct. */
static uint64_t
sum(const struct metrics *m, size_t off)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < m->nloops; i++)
        n += peek((const atomic_uint_fast64_t *)((const char *)&m->loops[i] +
                                                 off));
    return n;
}

#define SUM(m, field) sum((m), offsetof(struct metrics_loop, field))

/* Whether mechanism i is worth a series: offered somewhere, or used. */
static int
mech_shown(const struct metrics *m, const struct config *cfg, size_t i)
{
    const struct pst_sasl_mech *mech = pst_sasl_mech_all_at(i);

    if (SUM(m, auth[i][0]) + SUM(m, auth[i][1]) > 0)
        return 1;
    for (size_t l = 0; l < cfg->n_listeners; l++)
        if (cfg->listeners[l].auth != CONFIG_AUTH_OFF &&
            config_listener_has_mech(&cfg->listeners[l], mech))
            return 1;
    return 0;
}

static int
render_sessions(const struct metrics *m, const struct config *cfg,
                struct pst_buf *out)
{
    static const char *const results[2] = {"failure", "success"};
    static const char *const versions[] = {NULL, "TLSv1", "TLSv1.1",
                                           "TLSv1.2", "TLSv1.3"};
    int64_t open = 0;
    int rc;

    rc = family(out, "posternd_connections_total", "counter",
                "Connections accepted, by listener.");
    for (size_t i = 0; rc == 0 && i < cfg->n_listeners &&
                       i < CONFIG_LISTENERS_MAX; i++)
        rc = sample1(out, "posternd_connections_total", "listener",
                     cfg->listeners[i].name, SUM(m, conns[i]));
    for (unsigned i = 0; i < m->nloops; i++)
        open += atomic_load_explicit(&m->loops[i].open,
                                     memory_order_relaxed);
    if (rc == 0)
        rc = family(out, "posternd_connections_open", "gauge",
                    "Connections open now.");
    if (rc == 0)
        rc = pst_buf_printf(out, "posternd_connections_open %lld\n",
                            (long long)(open > 0 ? open : 0));
    if (rc == 0)
        rc = family(out, "posternd_tls_handshakes_total", "counter",
                    "TLS handshakes completed, by protocol version.");
    for (size_t v = 1; rc == 0 && v < 5; v++)
        rc = sample1(out, "posternd_tls_handshakes_total", "version",
                     versions[v], SUM(m, tls[v]));
    if (rc == 0 && SUM(m, tls[0]) > 0)
        rc = sample1(out, "posternd_tls_handshakes_total", "version",
                     "other", SUM(m, tls[0]));
    if (rc == 0)
        rc = family(out, "posternd_tls_handshake_failures_total", "counter",
                    "TLS handshakes that failed.");
    if (rc == 0)
        rc = pst_buf_printf(out, "posternd_tls_handshake_failures_total "
                            "%llu\n",
                            (unsigned long long)SUM(m, tls_failed));
    if (rc == 0)
        rc = family(out, "posternd_auth_attempts_total", "counter",
                    "AUTH exchanges that ended, by mechanism and result.");
    for (size_t i = 0; rc == 0 && i < METRICS_MECHS_MAX &&
                       pst_sasl_mech_all_at(i) != NULL; i++) {
        if (!mech_shown(m, cfg, i))
            continue;
        for (int ok = 1; rc == 0 && ok >= 0; ok--)
            rc = sample2(out, "posternd_auth_attempts_total", "mechanism",
                         pst_sasl_mech_name(pst_sasl_mech_all_at(i)),
                         "result", results[ok], SUM(m, auth[i][ok]));
    }
    for (int ok = 1; rc == 0 && ok >= 0; ok--)
        if (SUM(m, auth[METRICS_MECHS_MAX][ok]) > 0)
            rc = sample2(out, "posternd_auth_attempts_total", "mechanism",
                         "unknown", "result", results[ok],
                         SUM(m, auth[METRICS_MECHS_MAX][ok]));
    if (rc == 0)
        rc = family(out, "posternd_auth_throttle_delays_total", "counter",
                    "Failed AUTH attempts whose reply the throttle held back.");
    if (rc == 0)
        rc = pst_buf_printf(out, "posternd_auth_throttle_delays_total "
                            "%llu\n",
                            (unsigned long long)SUM(m, throttle_delays));
    if (rc == 0)
        rc = family(out, "posternd_auth_lockouts_total", "counter",
                    "Connections closed or refused because the throttle "
                    "locked their address out.");
    if (rc == 0)
        rc = pst_buf_printf(out, "posternd_auth_lockouts_total %llu\n",
                            (unsigned long long)SUM(m, lockouts));
    return rc;
}

static int
render_messages(const struct metrics *m, struct pst_buf *out)
{
    uint64_t cum = 0, sum_us;
    int rc;

    rc = family(out, "posternd_messages_accepted_total", "counter",
                "Messages accepted (250 after the final dot).");
    if (rc == 0)
        rc = pst_buf_printf(out, "posternd_messages_accepted_total %llu\n",
                            (unsigned long long)SUM(m, accepted));
    if (rc == 0)
        rc = family(out, "posternd_message_bytes_total", "counter",
                    "Octets of the messages accepted.");
    if (rc == 0)
        rc = pst_buf_printf(out, "posternd_message_bytes_total %llu\n",
                            (unsigned long long)SUM(m, accepted_bytes));
    if (rc == 0)
        rc = family(out, "posternd_messages_refused_total", "counter",
                    "Messages refused after DATA, by reason.");
    for (size_t r = 0; rc == 0 && r < METRICS_REFUSALS; r++)
        rc = sample1(out, "posternd_messages_refused_total", "reason",
                     refusal_names[r], SUM(m, refused[r]));
    if (rc == 0)
        rc = family(out, "posternd_delivery_duration_seconds", "histogram",
                    "From the final dot to the message being durable "
                    "(the wait for the 250).");
    for (size_t b = 0; rc == 0 && b < METRICS_LATENCY_BUCKETS; b++) {
        cum += SUM(m, latency[b]);
        rc = sample1(out, "posternd_delivery_duration_seconds_bucket", "le",
                     latency_le[b], cum);
    }
    sum_us = SUM(m, latency_sum_us);
    if (rc == 0)
        rc = pst_buf_printf(out,
                            "posternd_delivery_duration_seconds_sum "
                            "%llu.%06llu\n"
                            "posternd_delivery_duration_seconds_count "
                            "%llu\n",
                            (unsigned long long)(sum_us / 1000000),
                            (unsigned long long)(sum_us % 1000000),
                            (unsigned long long)SUM(m, latency_count));
    return rc;
}

static int
render_relays(const struct config *cfg, const struct relay_mgr *relay,
              struct pst_buf *out)
{
    static const char *const results[2] = {"failure", "success"};
    struct metrics_relay_state *st;
    int rc;

    if (cfg->n_relays == 0)
        return 0;
    st = calloc(cfg->n_relays, sizeof(*st));
    if (st == NULL)
        return PST_ENOMEM;
    metrics_relay_states(relay, cfg, st);
    rc = family(out, "posternd_queue_messages", "gauge",
                "Messages in the queue, by relay.");
    for (size_t i = 0; rc == 0 && i < cfg->n_relays; i++)
        rc = sample1(out, "posternd_queue_messages", "relay",
                     cfg->relays[i].name, st[i].queued);
    if (rc == 0)
        rc = family(out, "posternd_relay_attempts_total", "counter",
                    "Attempts to relay a message, by relay and result.");
    for (size_t i = 0; rc == 0 && i < cfg->n_relays; i++) {
        const struct relay_count *c = relay_count_find(cfg->relays[i].name);

        for (size_t r = 0; rc == 0 && r < METRICS_RELAY_RESULTS; r++)
            rc = sample2(out, "posternd_relay_attempts_total", "relay",
                         cfg->relays[i].name, "result",
                         relay_result_names[r],
                         c != NULL ? c->attempts[r] : 0);
    }
    if (rc == 0)
        rc = family(out, "posternd_oauth_refreshes_total", "counter",
                    "OAuth 2.0 token refreshes, by relay and result.");
    for (size_t i = 0; rc == 0 && i < cfg->n_relays; i++) {
        if (cfg->relays[i].auth != CONFIG_RELAY_AUTH_OAUTH2)
            continue;
        rc = sample2(out, "posternd_oauth_refreshes_total", "relay",
                     cfg->relays[i].name, "result", results[1],
                     st[i].refreshes_ok);
        if (rc == 0)
            rc = sample2(out, "posternd_oauth_refreshes_total", "relay",
                         cfg->relays[i].name, "result", results[0],
                         st[i].refreshes_failed);
    }
    if (rc == 0)
        rc = family(out, "posternd_relay_paused", "gauge",
                    "1 while the relay is paused (its OAuth consent "
                    "lapsed), else 0.");
    for (size_t i = 0; rc == 0 && i < cfg->n_relays; i++)
        rc = sample1(out, "posternd_relay_paused", "relay",
                     cfg->relays[i].name, (uint64_t)st[i].paused);
    free(st);
    return rc;
}

int
metrics_render(struct metrics *m, const struct config *cfg,
               const struct relay_mgr *relay, struct pst_buf *out)
{
    int rc = render_sessions(m, cfg, out);

    if (rc == 0)
        rc = render_messages(m, out);
    if (rc == 0)
        rc = render_relays(cfg, relay, out);
    return rc;
}
