/*
 * postern bench: the load generator (DESIGN.md "postern"; issue 7).
 *
 * N sessions at once, each repeating: connect, EHLO, [STARTTLS, EHLO],
 * [AUTH], MAIL, RCPT x k, DATA of a fixed message, QUIT, for a duration
 * or a number of sessions; every reply code is checked.  Or, with --idle,
 * N connections that say EHLO and are held open, then checked with NOOP.
 *
 * One thread, one libuv loop, a fixed slot per connection, so 10,000
 * connections cost the client about 3 KiB each (most of it the line
 * buffer, as long as the longest reply line libpostern accepts).  TLS
 * goes through the memory-BIO module of src/common (tls.h) that
 * posternd uses.
 *
 * The files: bench.h says which does what.
 *
 * The protocol pieces are libpostern's: the SASL client halves for
 * every mechanism, SCRAM with one key cache for the whole run (RFC 5802
 * §5.1: without it the client would spend a PBKDF2 per session, more CPU
 * than the server it measures), and pst_smtp_reply_parse_line() for
 * every reply line.  The session itself is a bench state machine rather
 * than lib/smtp/client.c's: that one has no "hold after EHLO, then NOOP"
 * mode for --idle, and does not check QUIT's reply.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "bench.h"
#include "cmds.h"

/* --- Usage and options --------------------------------------------------- */

static void
bench_usage(FILE *f)
{
    fprintf(f,
"usage: postern bench --server URL --concurrency N --duration S\n"
"                     [--count N] [--mech M] [--user U --password-file F]\n"
"                     [--starttls] [--size BYTES] [--rcpt K]\n"
"                     [--from ADDR] [--to ADDR] [--json] [--timeout S]\n"
"                     [--cafile F] [--insecure] [--no-scram-cache]\n"
"       postern bench --server URL --idle N --hold S [--starttls] ...\n"
"\n"
"Load: N sessions at once, each repeating connect, EHLO, [STARTTLS],\n"
"[AUTH M], MAIL, RCPT x K, DATA of BYTES (default 4096), QUIT, for S\n"
"seconds (or --count sessions in all).  Every reply code is checked.\n"
"Reports sessions/s, latency percentiles of whole sessions and failures\n"
"with the first replies; --json prints the summary as JSON.\n"
"\n"
"Idle: open N connections, say EHLO on each (and STARTTLS with\n"
"--starttls), hold them S seconds, then send NOOP on each and report how\n"
"many stayed healthy.  A line 'postern bench: idle: ready' goes to\n"
"stderr when all are held.\n"
"\n"
"The server URL is smtp://HOST[:PORT] or smtps://HOST[:PORT].  The\n"
"password comes from --password-file, POSTERN_PASSWORD or a prompt.\n"
"SCRAM's keys are derived once per salt and iteration count and reused\n"
"by every session (RFC 5802 §5.1); --no-scram-cache derives them in\n"
"every session.\n");
}

int
bench_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *e;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &e, 10);
    if (errno != 0 || e == s || *e != '\0' || s[0] == '-' || v < min ||
        v > max)
        return -1;
    *out = v;
    return 0;
}

static int
parse_seconds(const char *s, double *out)
{
    char *e;
    double v;

    errno = 0;
    v = strtod(s, &e);
    if (errno != 0 || e == s || *e != '\0' || !(v > 0) || v > 86400)
        return -1;
    *out = v;
    return 0;
}

/* --- The run ------------------------------------------------------------- */

static void
bench_close_all(struct bench *b)
{
    for (unsigned i = 0; i < b->nconns; i++)
        if (b->conns[i].open && b->conns[i].state != ST_CLOSING)
            bconn_close(&b->conns[i]);
}

static void
bench_end(struct bench *b)
{
    if (b->finished)
        return;
    b->finished = 1;
    b->stopping = 1;
    if (b->t_end == 0)
        b->t_end = uv_hrtime();
    bench_close_all(b);
    uv_timer_stop(&b->tick);
    uv_close((uv_handle_t *)&b->tick, NULL);
    uv_close((uv_handle_t *)&b->hold, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
}

static void
on_hold_end(uv_timer_t *t)
{
    struct bench *b = t->data;

    /* RFC 5321 §4.1.1.9: NOOP asks for nothing but a 250: the idle
     * connection is healthy if it still gets one. */
    b->holding = 0;
    b->stopping = 1;
    for (unsigned i = 0; i < b->nconns; i++) {
        struct bconn *k = &b->conns[i];

        if (k->open && k->state == ST_IDLE) {
            k->t_last = uv_hrtime();
            k->state = ST_NOOP;
            bconn_cmd(k, ST_NOOP, "NOOP");
        }
    }
    bench_maybe_stop(b);
}

/* Start idle connections while fewer than BENCH_CONNECTING set up. */
static void
bench_idle_fill(struct bench *b)
{
    while (!b->stopping && b->next_idle < b->o->idle &&
           b->connecting < BENCH_CONNECTING) {
        struct bconn *k = &b->conns[b->next_idle++];

        b->connecting++;
        bconn_start(k);
    }
}

void
bench_maybe_stop(struct bench *b)
{
    if (b->finished)
        return;
    if (b->o->idle > 0) {
        if (!b->holding && !b->stopping) {
            bench_idle_fill(b);
            if (b->ready + b->setup_failed == b->o->idle) {
                /* Everything is up (or failed): hold. */
                b->holding = 1;
                b->t_ready = uv_hrtime();
                if (b->tty)
                    printf("\n");
                fprintf(stderr, "postern bench: idle: ready: %u of %u "
                        "connections held (%.1f s to set up)\n", b->ready,
                        b->o->idle, bench_ms_between(b->t0, b->t_ready) / 1e3);
                fflush(stderr);
                uv_timer_start(&b->hold, on_hold_end,
                               (uint64_t)(b->o->hold * 1000), 0);
            }
        } else if (b->stopping && b->active == 0) {
            b->t_end = uv_hrtime();
            bench_end(b);
        }
        return;
    }
    if (b->stopping && b->active == 0)
        bench_end(b);
}

static void
bench_progress_line(struct bench *b, int final)
{
    double t = bench_ms_between(b->t0, uv_hrtime()) / 1e3;

    if (!b->tty)
        return;
    if (b->o->idle > 0)
        printf("\r[%5.1fs] idle: %u up, %u healthy, %" PRIu64
               " failed, %u open   ", t, b->ready, b->healthy, b->failed,
               b->active);
    else
        printf("\r[%5.1fs] %" PRIu64 " sessions, %" PRIu64 "/s now, "
               "%.0f/s avg, %" PRIu64 " failed, %u active   ", t, b->ok,
               b->ok - b->last_ok, t > 0 ? (double)b->ok / t : 0, b->failed,
               b->active);
    if (final)
        printf("\n");
    fflush(stdout);
    b->last_ok = b->ok;
}

static void
on_tick(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = uv_hrtime();
    uint64_t limit = (uint64_t)b->o->timeout * 1000000000u;

    bench_progress_line(b, 0);
    /* A connection without progress for the timeout fails, except while
     * it is deliberately held. */
    for (unsigned i = 0; i < b->nconns; i++) {
        struct bconn *k = &b->conns[i];

        if (k->open && k->state != ST_CLOSING && k->state != ST_IDLE &&
            now - k->t_last > limit) {
            char msg[64];

            snprintf(msg, sizeof(msg), "no reply for %u s", b->o->timeout);
            bconn_fail(k, msg);
        }
    }
}

/* Load mode: the measured time is over. */
static void
on_duration_end(uv_timer_t *t)
{
    struct bench *b = t->data;

    b->t_end = uv_hrtime();
    bench_end(b);
}

static void
on_sigint(uv_signal_t *h, int signum)
{
    struct bench *b = h->data;

    (void)signum;
    fprintf(stderr, "\npostern bench: interrupted\n");
    b->stopping = 1;
    b->t_end = uv_hrtime();
    bench_end(b);
}

/* --- Set-up -------------------------------------------------------------- */

/* The DATA payload: headers, then 76-character lines to `size` octets,
 * then CRLF "." CRLF.  No line starts with ".", so nothing is stuffed. */
static int
bench_make_message(struct bench *b)
{
    const struct bench_opts *o = b->o;
    struct pst_buf m;
    size_t target = o->size;
    unsigned line = 0;

    pst_buf_init(&m, target + 4096, 0);
    if (pst_buf_printf(&m, "From: <%s>\r\nTo: <%s>\r\n"
                       "Subject: postern bench\r\n"
                       "Message-ID: <bench@example.test>\r\n"
                       "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                       "MIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=us-ascii\r\n"
                       "\r\n", o->from, o->to) < 0)
        goto fail;
    while (m.len < target) {
        size_t left = target - m.len, n;
        char text[96];

        /* "line NNNNNN " then letters: 76 characters and CRLF. */
        snprintf(text, sizeof(text), "line %06u "
                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789ab", line++);
        n = strlen(text);
        if (left < n + 2)
            n = left > 2 ? left - 2 : 0;
        if (n == 0)
            n = 1; /* a message ends in CRLF: overshoot by at most 1 */
        if (pst_buf_append(&m, text, n) < 0 ||
            pst_buf_append(&m, "\r\n", 2) < 0)
            goto fail;
    }
    if (pst_buf_append(&m, ".\r\n", 3) < 0)
        goto fail;
    b->msg = m.data; /* owned from now on; freed with free() */
    b->msg_len = m.len;
    return 0;
fail:
    pst_buf_clear(&m);
    return -1;
}

static int
bench_make_commands(struct bench *b)
{
    const struct bench_opts *o = b->o;
    size_t one = strlen(o->to) + 12; /* "RCPT TO:<" ">\r\n" */
    char *p;

    snprintf(b->mail_cmd, sizeof(b->mail_cmd), "MAIL FROM:<%s> SIZE=%zu",
             o->from, b->msg_len);
    b->rcpt_cmds_len = one * o->rcpt;
    b->rcpt_cmds = malloc(b->rcpt_cmds_len + 1);
    if (b->rcpt_cmds == NULL)
        return -1;
    p = b->rcpt_cmds;
    for (unsigned i = 0; i < o->rcpt; i++)
        p += snprintf(p, one + 1, "RCPT TO:<%s>\r\n", o->to);
    return 0;
}

/* Enough descriptors for every connection, or a clear error. */
static int
bench_raise_nofile(unsigned conns)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)conns + BENCH_FD_SPARE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max < need) {
        struct rlimit want = {.rlim_cur = need, .rlim_max = need};

        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            return 0;
        fprintf(stderr, "postern bench: %u connections need %llu file "
                "descriptors, but the hard limit is %llu and cannot be "
                "raised (%s): run 'ulimit -Hn %llu' as root first, or "
                "ask for fewer\n", conns, (unsigned long long)need,
                (unsigned long long)rl.rlim_max, strerror(errno),
                (unsigned long long)need);
        return -1;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "postern bench: cannot raise the file descriptor "
                "limit to %llu: %s\n", (unsigned long long)need,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int
bench_resolve(struct bench *b)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
    }, *ai = NULL;
    int rc;

    rc = getaddrinfo(b->o->url.host, b->o->url.port, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        fprintf(stderr, "postern bench: %s: %s\n", b->o->url.host,
                rc != 0 ? gai_strerror(rc) : "no address");
        return -1;
    }
    memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

static int
bench_setup_sasl(struct bench *b, const char *mech_name)
{
    const struct bench_opts *o = b->o;
    struct pst_sasl_client *probe = NULL;
    struct pst_buf first;
    char err[256];
    int rc;

    b->mech = pst_sasl_mech_find(mech_name, strlen(mech_name));
    if (b->mech == NULL) {
        fprintf(stderr, "postern bench: unknown mechanism '%s'\n",
                mech_name);
        return EX_USAGE;
    }
    if (o->user == NULL) {
        fprintf(stderr, "postern bench: --mech needs --user\n");
        return EX_USAGE;
    }
    if (client_password(o->password_file, "Password: ", &b->password,
                        &b->password_len, err, sizeof(err)) < 0) {
        fprintf(stderr, "postern bench: %s\n", err);
        return EX_NOINPUT;
    }
    b->sasl = (struct pst_sasl_client_config){
        .authcid = o->user,
        .password = (const uint8_t *)b->password,
        .password_len = b->password_len,
        .host = o->url.host,
    };
    snprintf(b->auth_ir_prefix, sizeof(b->auth_ir_prefix), "AUTH %s ",
             pst_sasl_mech_name(b->mech));
    b->scram = strncmp(pst_sasl_mech_name(b->mech), "SCRAM-", 6) == 0;
    /* One cache for every session of the run: they all log in with one
     * password, and the server shows one salt and iteration count per
     * user (RFC 5802 §5.1).  The bench runs on one thread, the loop's,
     * which is what sasl.h asks of a cache without a lock. */
    if (b->scram && o->scram_cache) {
        rc = pst_sasl_scram_cache_new(BENCH_SCRAM_CACHE, &b->scram_cache);
        if (rc < 0) {
            fprintf(stderr, "postern bench: %s\n", pst_strerror(rc));
            return EX_OSERR;
        }
        b->sasl.scram_cache = b->scram_cache;
    }
    /* What the mechanism would refuse in every session (a -PLUS one
     * without channel binding, a name too long or one SASLprep refuses)
     * is a usage error, said once: one exchange's first step, sent
     * nowhere. */
    pst_buf_init(&first, PST_SASL_MAX_MESSAGE, 1);
    rc = pst_sasl_client_new(b->mech, &b->sasl, &probe);
    if (rc == 0)
        rc = pst_sasl_client_step(probe, NULL, 0, &first);
    pst_sasl_client_free(probe);
    pst_buf_clear(&first);
    if (rc < 0) {
        fprintf(stderr, "postern bench: %s: %s\n",
                pst_sasl_mech_name(b->mech), pst_strerror(rc));
        return EX_USAGE;
    }
    return 0;
}

/* --- Main ---------------------------------------------------------------- */

enum bench_opt {
    OPT_SERVER = 256, OPT_COUNT, OPT_MECH, OPT_USER, OPT_PWFILE,
    OPT_STARTTLS, OPT_SIZE, OPT_RCPT, OPT_FROM, OPT_TO, OPT_JSON, OPT_IDLE,
    OPT_HOLD, OPT_CAFILE, OPT_INSECURE, OPT_TIMEOUT, OPT_NO_CACHE,
};

int
cmd_bench_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, OPT_COUNT},
        {"mech", required_argument, NULL, OPT_MECH},
        {"user", required_argument, NULL, OPT_USER},
        {"password-file", required_argument, NULL, OPT_PWFILE},
        {"starttls", no_argument, NULL, OPT_STARTTLS},
        {"size", required_argument, NULL, OPT_SIZE},
        {"rcpt", required_argument, NULL, OPT_RCPT},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"json", no_argument, NULL, OPT_JSON},
        {"idle", required_argument, NULL, OPT_IDLE},
        {"hold", required_argument, NULL, OPT_HOLD},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"no-scram-cache", no_argument, NULL, OPT_NO_CACHE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench_opts o = {
        .concurrency = 0, .size = 4096, .rcpt = 1, .timeout = 30,
        .scram_cache = 1,
    };
    static struct bench b; /* large (the read buffer): not on the stack */
    const char *server = NULL;
    char err[512], from_buf[300];
    unsigned nconns;
    uint64_t v;
    int c, rc = 0;

    while ((c = getopt_long(argc, argv, "c:d:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            server = optarg;
            break;
        case 'c':
            if (bench_parse_uint(optarg, 1, BENCH_MAX_CONNS, &v) < 0)
                goto bad_value;
            o.concurrency = (unsigned)v;
            break;
        case 'd':
            if (parse_seconds(optarg, &o.duration) < 0)
                goto bad_value;
            break;
        case OPT_COUNT:
            if (bench_parse_uint(optarg, 1, UINT64_MAX / 2, &o.count) < 0)
                goto bad_value;
            break;
        case OPT_MECH:
            o.mech = optarg;
            break;
        case OPT_USER:
            o.user = optarg;
            break;
        case OPT_PWFILE:
            o.password_file = optarg;
            break;
        case OPT_STARTTLS:
            o.starttls = 1;
            break;
        case OPT_SIZE:
            if (bench_parse_uint(optarg, 0, 1u << 30, &v) < 0)
                goto bad_value;
            o.size = (size_t)v;
            break;
        case OPT_RCPT:
            if (bench_parse_uint(optarg, 1, BENCH_MAX_RCPT, &v) < 0)
                goto bad_value;
            o.rcpt = (unsigned)v;
            break;
        case OPT_FROM:
            o.from = optarg;
            break;
        case OPT_TO:
            o.to = optarg;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case OPT_IDLE:
            if (bench_parse_uint(optarg, 1, BENCH_MAX_CONNS, &v) < 0)
                goto bad_value;
            o.idle = (unsigned)v;
            break;
        case OPT_HOLD:
            if (parse_seconds(optarg, &o.hold) < 0)
                goto bad_value;
            break;
        case OPT_CAFILE:
            o.cafile = optarg;
            break;
        case OPT_INSECURE:
            o.insecure = 1;
            break;
        case OPT_TIMEOUT:
            if (bench_parse_uint(optarg, 1, 3600, &v) < 0)
                goto bad_value;
            o.timeout = (unsigned)v;
            break;
        case OPT_NO_CACHE:
            o.scram_cache = 0;
            break;
        case 'h':
            bench_usage(stdout);
            return 0;
        default:
            bench_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc || server == NULL) {
        fprintf(stderr, "postern bench: %s\n", server == NULL
                ? "--server is required" : "unexpected arguments");
        bench_usage(stderr);
        return EX_USAGE;
    }
    if (o.idle > 0 ? o.hold == 0 || o.concurrency > 0 || o.duration > 0 ||
                         o.count > 0
                   : o.concurrency == 0 || (o.duration == 0 && o.count == 0)) {
        fprintf(stderr, "postern bench: give --concurrency N with "
                "--duration S or --count N, or --idle N with --hold S\n");
        return EX_USAGE;
    }
    if (client_url_parse(server, &o.url, err, sizeof(err)) < 0) {
        fprintf(stderr, "postern bench: %s\n", err);
        return EX_USAGE;
    }
    if (o.from == NULL) {
        snprintf(from_buf, sizeof(from_buf), "%s",
                 o.user != NULL && strchr(o.user, '@') != NULL
                     ? o.user : "bench@example.test");
        o.from = from_buf;
    }
    if (o.to == NULL)
        o.to = o.from;
    if (strlen(o.from) > 256 || strlen(o.to) > 256 ||
        strpbrk(o.from, "<> \r\n") != NULL ||
        strpbrk(o.to, "<> \r\n") != NULL) {
        fprintf(stderr, "postern bench: bad --from or --to address\n");
        return EX_USAGE;
    }

    memset(&b, 0, sizeof(b));
    b.o = &o;
    b.tty = isatty(STDOUT_FILENO) && !o.json;
    nconns = o.idle > 0 ? o.idle : o.concurrency;
    signal(SIGPIPE, SIG_IGN);
    if (bench_raise_nofile(nconns) < 0)
        return EX_OSERR;
    if (o.mech != NULL && (rc = bench_setup_sasl(&b, o.mech)) != 0)
        goto out;
    if (o.starttls || o.url.implicit_tls) {
        struct tls_config tc = {
            .role = TLS_ROLE_CLIENT,
            .ca_file = o.cafile,
            .insecure = o.insecure ? 1u : 0u,
        };

        if (tls_ctx_new(&tc, &b.tls_ctx, err, sizeof(err)) < 0) {
            fprintf(stderr, "postern bench: %s\n", err);
            rc = EX_CONFIG;
            goto out;
        }
    }
    if (bench_resolve(&b) < 0) {
        rc = EX_NOHOST;
        goto out;
    }
    if (bench_make_message(&b) < 0 || bench_make_commands(&b) < 0) {
        fprintf(stderr, "postern bench: out of memory\n");
        rc = EX_OSERR;
        goto out;
    }
    b.conns = calloc(nconns, sizeof(*b.conns));
    if (b.conns == NULL) {
        fprintf(stderr, "postern bench: out of memory for %u connections\n",
                nconns);
        rc = EX_OSERR;
        goto out;
    }
    b.nconns = nconns;
    for (unsigned i = 0; i < nconns; i++)
        b.conns[i].b = &b;
    uv_loop_init(&b.loop);
    uv_timer_init(&b.loop, &b.tick);
    uv_timer_init(&b.loop, &b.hold);
    uv_signal_init(&b.loop, &b.sigint);
    b.tick.data = b.hold.data = b.sigint.data = &b;
    uv_signal_start(&b.sigint, on_sigint, SIGINT);
    uv_timer_start(&b.tick, on_tick, 1000, 1000);
    if (o.idle == 0 && o.count == 0)
        uv_timer_start(&b.hold, on_duration_end,
                       (uint64_t)(o.duration * 1000), 0);
    b.t0 = uv_hrtime();
    if (o.idle > 0)
        bench_maybe_stop(&b);
    else
        for (unsigned i = 0; i < nconns; i++)
            bconn_start(&b.conns[i]);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (b.t_end == 0)
        b.t_end = uv_hrtime();
    bench_progress_line(&b, 1);
    uv_loop_close(&b.loop);
    bench_report(&b, server);
    if (o.idle > 0)
        rc = b.healthy == o.idle ? 0 : b.healthy == 0 ? EX_UNAVAILABLE
                                                      : EX_PROTOCOL;
    else
        rc = b.failed == 0 ? 0 : b.ok == 0 ? EX_UNAVAILABLE : EX_PROTOCOL;
out:
    if (b.password != NULL)
        OPENSSL_clear_free(b.password, b.password_len + 1);
    pst_sasl_scram_cache_free(b.scram_cache);
    tls_ctx_free(b.tls_ctx);
    free(b.msg);
    free(b.rcpt_cmds);
    free(b.conns);
    free(b.lat);
    return rc;

bad_value:
    fprintf(stderr, "postern bench: bad value '%s' for %s\n", optarg,
            argv[optind - 1]);
    return EX_USAGE;
}

