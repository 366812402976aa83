/*
 * bench/passwd_load - how long posternd takes to load a user file, and
 * to look a user up in it.
 *
 * Writes a passwd-file of N users (default 100,000), each with a
 * {SCRAM-SHA-256} and a {CRAM-MD5} verifier (well-formed values from a
 * fixed pseudo-random sequence: no PBKDF2 spent making them), then loads
 * it with posternd's own loader (src/posternd/userdb_file.c: open, read,
 * pst_passwd_parse()) once in a fresh process ("cold") and RUNS more
 * times ("reload"), and times hits and misses of pst_passwd_lookup().
 * Build and run with bench/passwd_load.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <postern/base64.h>
#include <postern/buf.h>
#include <postern/passwd.h>

#include "userdb_file.h"

static uint64_t bench_state = 0x9e3779b97f4a7c15u;

/* splitmix64: a fixed sequence, so every run loads the same file. */
static uint64_t
bench_next(void)
{
    uint64_t z = (bench_state += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void
bench_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)bench_next();
}

static double
bench_ms(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 +
           (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* Resident set size now, in KiB (Linux /proc/self/statm). */
static long
bench_rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int
bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int
bench_write(const char *path, size_t n)
{
    struct pst_buf b;
    FILE *f;

    pst_buf_init(&b, (size_t)1 << 30, 0);
    pst_buf_append_str(&b, "# bench/passwd_load\n");
    for (size_t i = 0; i < n; i++) {
        uint8_t salt[16], sk[32], svk[32], ctx[32];

        bench_bytes(salt, sizeof(salt));
        bench_bytes(sk, sizeof(sk));
        bench_bytes(svk, sizeof(svk));
        bench_bytes(ctx, sizeof(ctx));
        pst_buf_printf(&b, "user%zu@example.test:{SCRAM-SHA-256}4096,", i);
        pst_base64_encode(salt, sizeof(salt), &b);
        pst_buf_append_byte(&b, ',');
        pst_base64_encode(sk, sizeof(sk), &b);
        pst_buf_append_byte(&b, ',');
        pst_base64_encode(svk, sizeof(svk), &b);
        pst_buf_append_str(&b, " {CRAM-MD5}");
        pst_buf_append_hex(&b, ctx, sizeof(ctx));
        if (pst_buf_append_byte(&b, '\n') < 0) {
            fprintf(stderr, "passwd_load: out of memory\n");
            return -1;
        }
    }
    f = fopen(path, "w");
    if (f == NULL || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    printf("file: %s, %zu users, %zu bytes\n", path, n, b.len);
    pst_buf_clear(&b);
    return 0;
}

int
main(int argc, char **argv)
{
    size_t n = 100000, runs = 10, lookups = 1000000;
    char path[256] = "";
    struct timespec t0, t1;
    struct userdb_file *u;
    struct userdb_file_table *t;
    struct rusage ru;
    double cold, *reload, hit_ns, miss_ns;
    char err[512], name[64];
    size_t found = 0;
    long rss0, rss1;
    int opt;

    while ((opt = getopt(argc, argv, "n:r:f:")) != -1) {
        switch (opt) {
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            runs = strtoul(optarg, NULL, 10);
            break;
        case 'f':
            snprintf(path, sizeof(path), "%s", optarg);
            break;
        default:
            fprintf(stderr, "usage: passwd_load [-n USERS] [-r RUNS] "
                    "[-f FILE]\n");
            return 64;
        }
    }
    if (path[0] == '\0')
        snprintf(path, sizeof(path), "/tmp/passwd_load.%ld", (long)getpid());
    if (n == 0 || runs == 0 || bench_write(path, n) < 0)
        return 1;

    rss0 = bench_rss_kib();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (userdb_file_open(path, &u, err, sizeof(err)) < 0) {
        fprintf(stderr, "passwd_load: %s\n", err);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cold = bench_ms(&t0, &t1);
    rss1 = bench_rss_kib();

    reload = calloc(runs, sizeof(*reload));
    for (size_t r = 0; r < runs; r++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (userdb_file_reload(u, err, sizeof(err)) < 0) {
            fprintf(stderr, "passwd_load: %s\n", err);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        reload[r] = bench_ms(&t0, &t1);
    }
    qsort(reload, runs, sizeof(*reload), bench_cmp);

    t = userdb_file_acquire(u);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < lookups; i++) {
        int len = snprintf(name, sizeof(name), "user%zu@example.test",
                           (size_t)(bench_next() % n));

        found += userdb_file_lookup(t, name, (size_t)len) != NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    hit_ns = bench_ms(&t0, &t1) * 1e6 / (double)lookups;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < lookups; i++) {
        int len = snprintf(name, sizeof(name), "nobody%zu@example.test",
                           (size_t)(bench_next() % n));

        found += userdb_file_lookup(t, name, (size_t)len) != NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    miss_ns = bench_ms(&t0, &t1) * 1e6 / (double)lookups;
    if (found != lookups) {
        fprintf(stderr, "passwd_load: %zu of %zu lookups found\n", found,
                lookups);
        return 1;
    }
    getrusage(RUSAGE_SELF, &ru);
    printf("users: %zu\n", pst_passwd_count(userdb_file_passwd(t)));
    printf("load, cold (first in the process): %.1f ms\n", cold);
    printf("reload x%zu: min %.1f ms, median %.1f ms, max %.1f ms\n", runs,
           reload[0], reload[runs / 2], reload[runs - 1]);
    printf("lookup (incl. snprintf of the name): hit %.0f ns, miss %.0f "
           "ns\n", hit_ns, miss_ns);
    printf("memory of the loaded table: %.1f MiB (%.0f bytes a user); "
           "max RSS %ld MiB\n", (double)(rss1 - rss0) / 1024,
           (double)(rss1 - rss0) * 1024 / (double)n, ru.ru_maxrss / 1024);
    userdb_file_release(t);
    userdb_file_free(u);
    free(reload);
    unlink(path);
    return 0;
}
