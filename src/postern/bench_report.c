/*
 * postern bench: latencies, failure samples and the report (bench.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "bench.h"
#include "json.h"

/* --- Time, samples, statistics ------------------------------------------- */

double
bench_ms_between(uint64_t a, uint64_t b)
{
    return (double)(b - a) / 1e6;
}

void
bench_sample(struct bench *b, const char *stage, const char *text)
{
    struct bench_sample *s;

    if (b->nsamples == BENCH_SAMPLES)
        return;
    s = &b->samples[b->nsamples++];
    snprintf(s->stage, sizeof(s->stage), "%s", stage);
    snprintf(s->text, sizeof(s->text), "%s", text);
}

void
bench_latency(struct bench *b, double ms)
{
    if (b->nlat == b->caplat) {
        size_t cap = b->caplat ? b->caplat * 2 : 4096;
        double *p = realloc(b->lat, cap * sizeof(*p));

        if (p == NULL)
            return; /* the count still holds; percentiles lose a sample */
        b->lat = p;
        b->caplat = cap;
    }
    b->lat[b->nlat++] = ms;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v (q in 0..1). */
static double
percentile(const double *v, size_t n, double q)
{
    size_t r;

    if (n == 0)
        return 0;
    r = (size_t)(q * (double)n);
    if ((double)r < q * (double)n)
        r++; /* the rank is ceil(q n) */
    if (r < 1)
        r = 1;
    return v[r - 1];
}

/* --- Report -------------------------------------------------------------- */

static double
cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void
bench_report(struct bench *b, const char *server)
{
    const struct bench_opts *o = b->o;
    double secs = bench_ms_between(b->t0, b->t_end) / 1e3;
    double rate = secs > 0 ? (double)b->ok / secs : 0;
    double p50, p90, p99, mx, mean = 0;
    const char *mech = b->mech != NULL ? pst_sasl_mech_name(b->mech)
                                       : "none";
    uint64_t hits = 0, derived = b->scram_derivations;
    FILE *f = stdout;

    /* SCRAM: PBKDF2 runs are the cache's misses (RFC 5802 §5.1), or one
     * per exchange without it. */
    if (b->scram_cache != NULL)
        pst_sasl_scram_cache_stats(b->scram_cache, &hits, &derived);
    if (b->nlat > 0)
        qsort(b->lat, b->nlat, sizeof(double), cmp_double);
    for (size_t i = 0; i < b->nlat; i++)
        mean += b->lat[i];
    mean = b->nlat ? mean / (double)b->nlat : 0;
    p50 = percentile(b->lat, b->nlat, 0.50);
    p90 = percentile(b->lat, b->nlat, 0.90);
    p99 = percentile(b->lat, b->nlat, 0.99);
    mx = b->nlat ? b->lat[b->nlat - 1] : 0;
    if (o->json) {
        fprintf(f, "{\"server\": ");
        json_str(f, server);
        fprintf(f, ", \"mode\": \"%s\", \"starttls\": %s, \"mech\": ",
                o->idle ? "idle" : "load", o->starttls ? "true" : "false");
        json_str(f, mech);
        if (o->idle)
            fprintf(f, ", \"connections\": %u, \"established\": %u, "
                    "\"healthy\": %u, \"failed\": %" PRIu64 ", "
                    "\"setup_s\": %.3f, \"hold_s\": %.3f",
                    o->idle, b->ready, b->healthy, b->failed,
                    b->t_ready ? bench_ms_between(b->t0, b->t_ready) / 1e3 : 0,
                    o->hold);
        else
            fprintf(f, ", \"concurrency\": %u, \"size\": %zu, "
                    "\"rcpt\": %u, \"duration_s\": %.3f, "
                    "\"sessions\": %" PRIu64 ", \"failures\": %" PRIu64
                    ", \"sessions_per_s\": %.1f, \"latency_ms\": "
                    "{\"mean\": %.3f, \"p50\": %.3f, \"p90\": %.3f, "
                    "\"p99\": %.3f, \"max\": %.3f}, "
                    "\"scram_pbkdf2_runs\": %" PRIu64 ", "
                    "\"scram_cache_hits\": %" PRIu64,
                    o->concurrency, b->msg_len - 3, o->rcpt, secs, b->ok,
                    b->failed, rate, mean, p50, p90, p99, mx, derived,
                    hits);
        fprintf(f, ", \"client_cpu_s\": %.3f, \"failure_samples\": [",
                cpu_seconds());
        for (unsigned i = 0; i < b->nsamples; i++) {
            fprintf(f, "%s{\"stage\": ", i ? ", " : "");
            json_str(f, b->samples[i].stage);
            fprintf(f, ", \"reply\": ");
            json_str(f, b->samples[i].text);
            fputc('}', f);
        }
        fprintf(f, "]}\n");
        return;
    }
    fprintf(f, "server       %s%s, AUTH %s\n", server,
            o->starttls ? " (STARTTLS)" : "", mech);
    if (b->scram)
        fprintf(f, "SCRAM keys   derived %" PRIu64 " time%s, reused %"
                PRIu64 " time%s%s\n", derived, derived == 1 ? "" : "s",
                hits, hits == 1 ? "" : "s",
                b->scram_cache != NULL ? "" : " (--no-scram-cache)");
    if (o->idle) {
        fprintf(f, "idle         %u connections: %u held after EHLO "
                "(%.1f s to set up), %u healthy after %.0f s, %" PRIu64
                " failed\n", o->idle, b->ready,
                b->t_ready ? bench_ms_between(b->t0, b->t_ready) / 1e3 : 0,
                b->healthy, o->hold, b->failed);
    } else {
        fprintf(f, "load         concurrency %u, %.1f s, message %zu "
                "octets, %u recipient%s\n", o->concurrency, secs,
                b->msg_len - 3, o->rcpt, o->rcpt == 1 ? "" : "s");
        fprintf(f, "sessions     %" PRIu64 " ok, %" PRIu64 " failed: "
                "%.1f sessions/s\n", b->ok, b->failed, rate);
        fprintf(f, "latency      mean %.2f ms, p50 %.2f, p90 %.2f, "
                "p99 %.2f, max %.2f\n", mean, p50, p90, p99, mx);
    }
    fprintf(f, "client CPU   %.2f s\n", cpu_seconds());
    for (unsigned i = 0; i < b->nsamples; i++)
        fprintf(f, "failure      [%s] %s\n", b->samples[i].stage,
                b->samples[i].text);
}

