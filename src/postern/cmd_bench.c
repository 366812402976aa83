/*
 * postern bench: the load generator (DESIGN.md "postern"; issue 7).
 *
 * N sessions at once, each repeating: connect, EHLO, [STARTTLS, EHLO],
 * [AUTH], MAIL, RCPT x k, DATA of a fixed message, QUIT, for a duration
 * or a number of sessions; every reply code is checked.  Or, with --idle,
 * N connections that say EHLO and are held open, then checked with NOOP.
 *
 * One thread, one libuv loop, a fixed slot per connection, so 10,000
 * connections cost the client about 2 KiB each.  TLS goes through the
 * memory-BIO module of src/common (tls.h) that posternd uses.
 *
 * Why a bench state machine here and not the sans-IO client session of
 * lib/smtp/client.c: that session runs the SASL exchange itself, so a
 * SCRAM client cannot reuse its PBKDF2 result from one session to the
 * next (RFC 5802 §5.1 allows caching it; without that the client spends
 * more CPU per session than the server it measures); it has no
 * "hold after EHLO, then NOOP" mode for --idle; and QUIT's reply is not
 * checked.  The SASL exchanges use the libpostern client halves for
 * every mechanism; SCRAM-SHA-1/-256 use the small cached client below
 * unless --no-scram-cache is given.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <uv.h>

#include <postern/base64.h>
#include <postern/buf.h>
#include <postern/sasl.h>

#include "client.h"
#include "cmds.h"
#include "json.h"
#include "tls.h"

#define BENCH_LINE_MAX     1024   /* reply line kept, octets; longer
                                     lines are cut, not refused */
#define BENCH_TEXT_MAX     256    /* reply text kept for a failure */
#define BENCH_MAX_RCPT     100    /* --rcpt ceiling */
#define BENCH_MAX_EXPECT   128    /* replies awaited at once (> rcpt+3) */
#define BENCH_SAMPLES      5      /* failure replies reported */
#define BENCH_CONNECTING   256    /* --idle: set-ups in flight at once */
#define BENCH_READ_CHUNK   (64 * 1024)
#define BENCH_FD_SPARE     64     /* descriptors beyond the connections */
#define BENCH_MAX_CONNS    1000000
#define BENCH_HELO         "bench.example.test"
#define BENCH_SCRAM_CACHE  8      /* (salt, iterations) pairs remembered */
#define BENCH_SCRAM_NONCE  18     /* random bytes: 24 base64 characters */

/* What a connection waits for: the stage of each reply it expects. */
enum bench_stage {
    ST_CONNECT = 0, /* TCP connect in progress */
    ST_GREETING,    /* 220 */
    ST_EHLO,        /* 250 */
    ST_STARTTLS,    /* 220 */
    ST_HANDSHAKE,   /* TLS handshake (no reply) */
    ST_AUTH,        /* 334 or 235 */
    ST_MAIL,        /* 250 */
    ST_RCPT,        /* 250 or 251 */
    ST_DATA,        /* 354 */
    ST_DOT,         /* 250 after the message */
    ST_QUIT,        /* 221 */
    ST_IDLE,        /* --idle: held after EHLO */
    ST_NOOP,        /* 250 at the end of the hold */
    ST_CLOSING,     /* uv_close() called */
};

static const char *const bench_stage_names[] = {
    [ST_CONNECT] = "connect",     [ST_GREETING] = "greeting",
    [ST_EHLO] = "EHLO",           [ST_STARTTLS] = "STARTTLS",
    [ST_HANDSHAKE] = "TLS",       [ST_AUTH] = "AUTH",
    [ST_MAIL] = "MAIL",           [ST_RCPT] = "RCPT",
    [ST_DATA] = "DATA",           [ST_DOT] = "message",
    [ST_QUIT] = "QUIT",           [ST_IDLE] = "idle",
    [ST_NOOP] = "NOOP",           [ST_CLOSING] = "close",
};

#define EXT_PIPELINING 0x01u
#define EXT_STARTTLS   0x02u

enum scram_state {
    SCRAM_NONE = 0,   /* not in use */
    SCRAM_SENT_FIRST, /* client-first sent, server-first awaited */
    SCRAM_SENT_FINAL, /* client-final sent, server-final awaited */
    SCRAM_VERIFIED,   /* the server proved it knows the password */
};

struct bench;

struct bconn {
    uv_tcp_t tcp;               /* first: a handle is its connection */
    uv_connect_t connect;
    struct bench *b;
    enum bench_stage state;
    int open;                   /* tcp initialised, not yet closed */
    int counted;                /* the outcome has been recorded */
    int setting_up;             /* --idle: not yet held */
    int tls_up;
    int handshaking;
    unsigned ext;               /* EXT_* of the last EHLO */
    unsigned rcpt_sent;         /* without PIPELINING: RCPTs sent */
    uint64_t t_start;           /* uv_hrtime() at connect */
    uint64_t t_last;            /* last progress, for the timeout */
    struct tls *tls;
    struct pst_sasl_client *sc; /* libpostern SASL client half */
    /* The cached SCRAM client (see scram_*): */
    enum scram_state scram;
    char nonce[PST_BASE64_ENCLEN(BENCH_SCRAM_NONCE) + 1];
    uint8_t server_sig[EVP_MAX_MD_SIZE]; /* expected; secret */
    /* Replies awaited, oldest first: */
    uint8_t expect[BENCH_MAX_EXPECT];
    unsigned ex_head, ex_len;
    /* Received: */
    int reply_code;
    unsigned reply_lines;
    size_t line_len;
    char line[BENCH_LINE_MAX];
    size_t text_len;
    char text[BENCH_TEXT_MAX];
};

struct bench_sample {
    char stage[16];
    char text[BENCH_TEXT_MAX];
};

struct scram_cache_entry {
    int used;
    const EVP_MD *md;
    unsigned iterations;
    size_t salt_len;
    uint8_t salt[64];
    /* RFC 5802 §3, derived from SaltedPassword; secret: */
    uint8_t client_key[EVP_MAX_MD_SIZE];
    uint8_t stored_key[EVP_MAX_MD_SIZE];
    uint8_t server_key[EVP_MAX_MD_SIZE];
};

struct bench_opts {
    struct server_url url;
    unsigned concurrency;
    double duration;          /* seconds */
    uint64_t count;           /* stop after this many sessions; 0: none */
    const char *mech;         /* NULL: no AUTH */
    const char *user;
    const char *password_file;
    int starttls;
    size_t size;              /* message octets, headers included */
    unsigned rcpt;
    const char *from;
    const char *to;
    int json;
    unsigned idle;            /* --idle N; 0: load mode */
    double hold;              /* seconds */
    const char *cafile;
    int insecure;
    unsigned timeout;         /* seconds without progress */
    int scram_cache;
};

struct bench {
    const struct bench_opts *o;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_timer_t hold;          /* --idle: the hold; load: the duration */
    uv_signal_t sigint;
    struct sockaddr_storage addr;
    struct tls_ctx *tls_ctx;
    const struct pst_sasl_mech *mech;
    int own_scram;            /* SCRAM through the cached client */
    const EVP_MD *scram_md;
    struct pst_sasl_client_config sasl;
    char *password;           /* secret */
    size_t password_len;
    char scram_user[3 * PST_SASL_MAX_NAME + 1]; /* escaped saslname */
    struct scram_cache_entry cache[BENCH_SCRAM_CACHE];
    uint64_t pbkdf2_runs;
    uint8_t *msg;             /* the DATA payload, dot-terminated */
    size_t msg_len;
    char *rcpt_cmds;          /* "RCPT TO:<x>\r\n" x k */
    size_t rcpt_cmds_len;
    char mail_cmd[300];
    char auth_ir_prefix[64];
    struct bconn *conns;
    unsigned nconns;
    /* Progress: */
    int stopping;             /* no new sessions */
    int finished;             /* the loop is winding down */
    uint64_t t0, t_end;
    uint64_t started, ok, failed;
    uint64_t last_ok;         /* at the previous tick */
    unsigned active;
    unsigned connecting;      /* --idle: set-ups in flight */
    unsigned next_idle;       /* --idle: connections started */
    unsigned ready;           /* --idle: held after EHLO */
    unsigned setup_failed;    /* --idle: failed before being held */
    unsigned healthy;         /* --idle: NOOP answered at the end */
    int holding;
    uint64_t t_ready;
    int tty;
    /* Latencies of successful sessions, ms: */
    double *lat;
    size_t nlat, caplat;
    struct bench_sample samples[BENCH_SAMPLES];
    unsigned nsamples;
    uint8_t rbuf[BENCH_READ_CHUNK]; /* what one read gets */
};

static void conn_start(struct bconn *k);
static void conn_finish(struct bconn *k, int ok);
static void conn_fail(struct bconn *k, const char *text);
static void conn_fail_at(struct bconn *k, const char *stage,
                         const char *text);
static void bench_maybe_stop(struct bench *b);

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
"SCRAM's salted password is computed once per salt and iteration count\n"
"and reused (RFC 5802 §5.1); --no-scram-cache uses libpostern's SCRAM\n"
"client, which derives it in every session.\n");
}

static int
parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
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

/* --- Time, samples, statistics ------------------------------------------- */

static double
ms_between(uint64_t a, uint64_t b)
{
    return (double)(b - a) / 1e6;
}

static void
bench_sample(struct bench *b, const char *stage, const char *text)
{
    struct bench_sample *s;

    if (b->nsamples == BENCH_SAMPLES)
        return;
    s = &b->samples[b->nsamples++];
    snprintf(s->stage, sizeof(s->stage), "%s", stage);
    snprintf(s->text, sizeof(s->text), "%s", text);
}

static void
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

/* --- Writing ------------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

static void
on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct bconn *k = req->handle->data;

    free(w);
    if (status < 0 && k != NULL && k->state != ST_CLOSING) {
        char msg[128];

        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(status));
        conn_fail(k, msg);
    }
}

/* Send raw bytes: straight to the socket when it takes them (the usual
 * case on loopback), else through a queued write of a copy. */
static int
conn_write_raw(struct bconn *k, const uint8_t *p, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned)len);
    struct wreq *w;
    int n;

    n = uv_try_write((uv_stream_t *)&k->tcp, &buf, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(n));
        conn_fail(k, msg);
        return -1;
    }
    if ((size_t)n == len)
        return 0;
    w = malloc(sizeof(*w) + len - (size_t)n);
    if (w == NULL) {
        conn_fail(k, "out of memory");
        return -1;
    }
    w->len = len - (size_t)n;
    memcpy(w->data, p + n, w->len);
    buf = uv_buf_init((char *)w->data, (unsigned)w->len);
    n = uv_write(&w->req, (uv_stream_t *)&k->tcp, &buf, 1, on_write);
    if (n < 0) {
        char msg[128];

        free(w);
        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(n));
        conn_fail(k, msg);
        return -1;
    }
    return 0;
}

static int
conn_send(struct bconn *k, const void *p, size_t len)
{
    int rc;

    if (k->tls == NULL)
        return conn_write_raw(k, p, len);
    rc = tls_send(k->tls, p, len);
    if (rc == TLS_STOPPED)
        return -1; /* the write failed: conn_fail() has run */
    if (rc != TLS_OK) {
        char msg[TLS_ERROR_MAX + 8];

        snprintf(msg, sizeof(msg), "TLS: %s", tls_error(k->tls));
        conn_fail(k, msg);
        return -1;
    }
    return 0;
}

/* Queue a command line (CRLF added) and the stage of its reply. */
static int
conn_cmd(struct bconn *k, enum bench_stage st, const char *line)
{
    char buf[BENCH_LINE_MAX + 2];
    size_t n = strlen(line);

    if (n + 2 > sizeof(buf) || k->ex_len == BENCH_MAX_EXPECT) {
        conn_fail(k, "command too long");
        return -1;
    }
    memcpy(buf, line, n);
    memcpy(buf + n, "\r\n", 2);
    k->expect[(k->ex_head + k->ex_len++) % BENCH_MAX_EXPECT] = (uint8_t)st;
    return conn_send(k, buf, n + 2);
}

static void
conn_expect(struct bconn *k, enum bench_stage st)
{
    k->expect[(k->ex_head + k->ex_len++) % BENCH_MAX_EXPECT] = (uint8_t)st;
}

/* --- SCRAM with a cached salted password (RFC 5802, RFC 7677) ------------ */

/*
 * RFC 5802 §5.1: "the client can cache ClientKey and ServerKey (or just
 * SaltedPassword) for later reauthentication to the same service, as it
 * is likely that the server is going to advertise the same salt value".
 * The cache holds ClientKey, StoredKey and ServerKey per (hash, salt,
 * iteration count); the password is the same for the whole run.
 */
static const struct scram_cache_entry *
scram_keys(struct bench *b, const uint8_t *salt, size_t salt_len,
           unsigned iter)
{
    const EVP_MD *md = b->scram_md;
    size_t klen = (size_t)EVP_MD_get_size(md);
    uint8_t sp[EVP_MAX_MD_SIZE];
    struct scram_cache_entry *e = NULL;
    unsigned int n = 0;

    for (size_t i = 0; i < BENCH_SCRAM_CACHE; i++) {
        struct scram_cache_entry *c = &b->cache[i];

        if (c->used && c->md == md && c->iterations == iter &&
            c->salt_len == salt_len &&
            memcmp(c->salt, salt, salt_len) == 0)
            return c;
        if (e == NULL && !c->used)
            e = c;
    }
    if (salt_len > sizeof(e->salt))
        return NULL;
    if (e == NULL) /* full: a server with changing salts; start over */
        e = &b->cache[b->pbkdf2_runs % BENCH_SCRAM_CACHE];
    /* RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i),
     * Hi being PBKDF2 with HMAC; the password is printable ASCII (checked
     * at start), which SASLprep leaves as it is. */
    if (PKCS5_PBKDF2_HMAC(b->password, (int)b->password_len, salt,
                          (int)salt_len, (int)iter, md, (int)klen,
                          sp) != 1)
        return NULL;
    b->pbkdf2_runs++;
    /* ClientKey := HMAC(SaltedPassword, "Client Key"),
     * StoredKey := H(ClientKey), ServerKey := HMAC(SaltedPassword,
     * "Server Key"). */
    if (HMAC(md, sp, (int)klen, (const uint8_t *)"Client Key", 10,
             e->client_key, &n) == NULL ||
        EVP_Digest(e->client_key, klen, e->stored_key, NULL, md,
                   NULL) != 1 ||
        HMAC(md, sp, (int)klen, (const uint8_t *)"Server Key", 10,
             e->server_key, &n) == NULL) {
        OPENSSL_cleanse(sp, sizeof(sp));
        OPENSSL_cleanse(e, sizeof(*e));
        return NULL;
    }
    OPENSSL_cleanse(sp, sizeof(sp));
    e->used = 1;
    e->md = md;
    e->iterations = iter;
    e->salt_len = salt_len;
    memcpy(e->salt, salt, salt_len);
    return e;
}

/* client-first-message: gs2-header "n,," (no channel binding, no
 * authzid) and client-first-message-bare "n=user,r=nonce" (§7). */
static int
scram_first(struct bconn *k, struct pst_buf *out)
{
    uint8_t raw[BENCH_SCRAM_NONCE];
    struct pst_buf nb;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return PST_ETEMP;
    pst_buf_init(&nb, sizeof(k->nonce), 0);
    if (pst_base64_encode(raw, sizeof(raw), &nb) < 0 ||
        nb.len >= sizeof(k->nonce)) {
        pst_buf_clear(&nb);
        return PST_ENOMEM;
    }
    memcpy(k->nonce, nb.data, nb.len);
    k->nonce[nb.len] = '\0';
    pst_buf_clear(&nb);
    k->scram = SCRAM_SENT_FIRST;
    return pst_buf_printf(out, "n,,n=%s,r=%s", k->b->scram_user, k->nonce);
}

/* One "a=value" attribute of a SCRAM message, or NULL. */
static const char *
scram_attr(const char *msg, char a, size_t *len)
{
    const char *p = msg;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ',');

        if (p[0] == a && p[1] == '=') {
            *len = end != NULL ? (size_t)(end - p - 2) : strlen(p + 2);
            return p + 2;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

/*
 * server-first-message (§7: r=nonce,s=salt,i=count) in, client-final-
 * message out: "c=biws,r=nonce,p=ClientProof" (biws is base64 of "n,,").
 */
static int
scram_final(struct bconn *k, const char *sf, struct pst_buf *out)
{
    struct bench *b = k->b;
    const struct scram_cache_entry *e;
    size_t rlen = 0, slen = 0, ilen = 0, klen, without_proof;
    const char *r = scram_attr(sf, 'r', &rlen);
    const char *s = scram_attr(sf, 's', &slen);
    const char *i = scram_attr(sf, 'i', &ilen);
    uint8_t sig[EVP_MAX_MD_SIZE], proof[EVP_MAX_MD_SIZE];
    struct pst_buf salt, am;
    char num[16];
    uint64_t iter;
    unsigned int n = 0;
    int rc = PST_EPROTO;

    /* §5.1: the nonce starts with ours; "m=" is a mandatory extension we
     * do not know, so the exchange must fail. */
    if (sf[0] == 'm' || r == NULL || s == NULL || i == NULL ||
        rlen <= strlen(k->nonce) ||
        strncmp(r, k->nonce, strlen(k->nonce)) != 0 || ilen == 0 ||
        ilen >= sizeof(num))
        return PST_EPROTO;
    memcpy(num, i, ilen);
    num[ilen] = '\0';
    if (parse_uint(num, PST_SCRAM_MIN_ITERATIONS, PST_SCRAM_MAX_ITERATIONS,
                   &iter) < 0)
        return PST_EWEAK;
    pst_buf_init(&salt, 256, 0);
    pst_buf_init(&am, 4 * 1024, 1);
    if (pst_base64_decode((const uint8_t *)s, slen, &salt) < 0 ||
        salt.len == 0)
        goto out;
    rc = PST_ENOMEM;
    e = scram_keys(b, salt.data, salt.len, (unsigned)iter);
    if (e == NULL)
        goto out;
    klen = (size_t)EVP_MD_get_size(b->scram_md);
    if (pst_buf_printf(out, "c=biws,r=%.*s", (int)rlen, r) < 0)
        goto out;
    without_proof = out->len;
    /* AuthMessage := client-first-message-bare + "," +
     *                server-first-message + "," +
     *                client-final-message-without-proof */
    if (pst_buf_printf(&am, "n=%s,r=%s,%s,%.*s", b->scram_user, k->nonce,
                       sf, (int)without_proof, (const char *)out->data) < 0)
        goto out;
    /* ClientProof := ClientKey XOR HMAC(StoredKey, AuthMessage);
     * ServerSignature := HMAC(ServerKey, AuthMessage). */
    if (HMAC(b->scram_md, e->stored_key, (int)klen, am.data, am.len, sig,
             &n) == NULL ||
        HMAC(b->scram_md, e->server_key, (int)klen, am.data, am.len,
             k->server_sig, &n) == NULL)
        goto out;
    for (size_t j = 0; j < klen; j++)
        proof[j] = e->client_key[j] ^ sig[j];
    if (pst_buf_append_str(out, ",p=") < 0 ||
        pst_base64_encode(proof, klen, out) < 0)
        goto out;
    k->scram = SCRAM_SENT_FINAL;
    rc = PST_SASL_CONTINUE;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(proof, sizeof(proof));
    pst_buf_clear(&salt);
    pst_buf_clear(&am);
    return rc;
}

/* server-final-message: "v=ServerSignature" or "e=error" (§7). */
static int
scram_verify(struct bconn *k, const char *sf)
{
    size_t klen = (size_t)EVP_MD_get_size(k->b->scram_md), vlen = 0;
    const char *v = scram_attr(sf, 'v', &vlen);
    struct pst_buf got;
    int rc = PST_EFORGED;

    if (sf[0] == 'e' && sf[1] == '=')
        return PST_EAUTH;
    if (v == NULL)
        return PST_EPROTO;
    pst_buf_init(&got, 256, 0);
    /* §3: the client verifies ServerSignature. */
    if (pst_base64_decode((const uint8_t *)v, vlen, &got) == 0 &&
        got.len == klen &&
        CRYPTO_memcmp(got.data, k->server_sig, klen) == 0) {
        k->scram = SCRAM_VERIFIED;
        rc = PST_SASL_DONE;
    }
    pst_buf_clear(&got);
    OPENSSL_cleanse(k->server_sig, sizeof(k->server_sig));
    return rc;
}

/* One step of whichever SASL client the session uses. */
static int
sasl_step(struct bconn *k, const uint8_t *in, size_t len,
          struct pst_buf *out)
{
    char msg[PST_SASL_MAX_MESSAGE + 1];

    if (!k->b->own_scram)
        return pst_sasl_client_step(k->sc, in, len, out);
    if (in == NULL)
        return scram_first(k, out);
    if (len > PST_SASL_MAX_MESSAGE || memchr(in, '\0', len) != NULL)
        return PST_EPROTO;
    memcpy(msg, in, len);
    msg[len] = '\0';
    if (k->scram == SCRAM_SENT_FIRST)
        return scram_final(k, msg, out);
    if (k->scram == SCRAM_SENT_FINAL)
        return scram_verify(k, msg);
    return PST_ESTATE;
}

/* --- Session ------------------------------------------------------------- */

static void
conn_start_mail(struct bconn *k)
{
    struct bench *b = k->b;

    /* RFC 2920 §3.1: MAIL, RCPT and DATA may go in one group, DATA last;
     * without PIPELINING each waits for the reply before. */
    if (conn_cmd(k, ST_MAIL, b->mail_cmd) < 0)
        return;
    if (!(k->ext & EXT_PIPELINING))
        return;
    for (unsigned i = 0; i < b->o->rcpt; i++)
        conn_expect(k, ST_RCPT);
    conn_expect(k, ST_DATA);
    if (conn_send(k, b->rcpt_cmds, b->rcpt_cmds_len) < 0)
        return;
    conn_send(k, "DATA\r\n", 6);
}

static void
conn_auth_fail(struct bconn *k, int rc)
{
    char msg[96];

    snprintf(msg, sizeof(msg), "client SASL step failed: %s (%s)",
             pst_errname(rc), pst_strerror(rc));
    conn_fail(k, msg);
}

static void
conn_start_auth(struct bconn *k)
{
    struct bench *b = k->b;
    struct pst_buf out, b64;
    char line[BENCH_LINE_MAX];
    int rc;

    k->scram = SCRAM_NONE;
    if (!b->own_scram) {
        rc = pst_sasl_client_new(b->mech, &b->sasl, &k->sc);
        if (rc < 0) {
            conn_auth_fail(k, rc);
            return;
        }
    }
    if (!(pst_sasl_mech_flags(b->mech) & PST_MECH_CLIENT_FIRST)) {
        /* The server speaks first (CRAM-MD5, DIGEST-MD5): the step with
         * no input only records that. */
        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        rc = sasl_step(k, NULL, 0, &out);
        pst_buf_clear(&out);
        if (rc < 0) {
            conn_auth_fail(k, rc);
            return;
        }
        snprintf(line, sizeof(line), "AUTH %s", pst_sasl_mech_name(b->mech));
        conn_cmd(k, ST_AUTH, line);
        return;
    }
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&b64, PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE) + 1, 1);
    rc = sasl_step(k, NULL, 0, &out);
    if (rc >= 0 && pst_base64_encode(out.data, out.len, &b64) < 0)
        rc = PST_ENOMEM;
    if (rc < 0) {
        conn_auth_fail(k, rc);
    } else if (b64.len + strlen(b->auth_ir_prefix) + 2 > 512) {
        /* RFC 4954 §4: an initial response that does not fit the 512
         * octet command line waits for an empty 334. */
        conn_fail(k, "initial response too long for the bench");
    } else {
        /* RFC 4954 §4: an empty initial response is sent as "=". */
        snprintf(line, sizeof(line), "%s%s", b->auth_ir_prefix,
                 b64.len > 0 ? (const char *)b64.data : "=");
        conn_cmd(k, ST_AUTH, line);
    }
    OPENSSL_cleanse(line, sizeof(line));
    pst_buf_clear(&out);
    pst_buf_clear(&b64);
}

/* 334: decode the challenge, step, send the response. */
static void
conn_auth_continue(struct bconn *k, const char *challenge)
{
    struct pst_buf in, out, b64;
    int rc;

    pst_buf_init(&in, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&b64, PST_BASE64_ENCLEN(PST_SASL_MAX_MESSAGE) + 3, 1);
    rc = pst_base64_decode((const uint8_t *)challenge, strlen(challenge),
                           &in);
    if (rc == 0)
        rc = sasl_step(k, in.data != NULL ? in.data : (const uint8_t *)"",
                       in.len, &out);
    if (rc >= 0 && (pst_base64_encode(out.data, out.len, &b64) < 0 ||
                    pst_buf_append(&b64, "\r\n", 2) < 0))
        rc = PST_ENOMEM;
    if (rc < 0) {
        conn_auth_fail(k, rc);
    } else {
        conn_expect(k, ST_AUTH);
        conn_send(k, b64.data, b64.len);
    }
    pst_buf_clear(&in);
    pst_buf_clear(&out);
    pst_buf_clear(&b64);
}

static void
conn_after_ehlo(struct bconn *k)
{
    struct bench *b = k->b;

    if (b->o->starttls && !k->tls_up) {
        if (!(k->ext & EXT_STARTTLS)) {
            conn_fail(k, "the server does not offer STARTTLS");
            return;
        }
        conn_cmd(k, ST_STARTTLS, "STARTTLS");
        return;
    }
    if (b->o->idle > 0) {
        k->state = ST_IDLE;
        k->setting_up = 0;
        b->ready++;
        b->connecting--;
        bench_maybe_stop(b);
        return;
    }
    if (b->mech != NULL) {
        conn_start_auth(k);
        return;
    }
    conn_start_mail(k);
}

static void
conn_send_ehlo(struct bconn *k)
{
    k->ext = 0;
    conn_cmd(k, ST_EHLO, "EHLO " BENCH_HELO);
}

/* The TLS pump's callbacks: each returns -1 once the connection is
 * closing (its TLS state is then freed). */
static int
conn_tls_send(void *ctx, const uint8_t *p, size_t n)
{
    return conn_write_raw(ctx, p, n) < 0 ? -1 : 0;
}

static void conn_take(struct bconn *k, const uint8_t *p, size_t n);

static int
conn_tls_recv(void *ctx, const uint8_t *p, size_t n)
{
    struct bconn *k = ctx;

    conn_take(k, p, n);
    return k->state == ST_CLOSING ? -1 : 0;
}

/* RFC 3207 §4.2: after the handshake the client forgets what it knew
 * and says EHLO again; on an implicit-TLS port the greeting is still to
 * come. */
static int
conn_tls_established(void *ctx)
{
    struct bconn *k = ctx;

    k->handshaking = 0;
    k->tls_up = 1;
    k->t_last = uv_hrtime();
    if (k->ex_len == 0)
        conn_send_ehlo(k);
    return k->state == ST_CLOSING ? -1 : 0;
}

static const struct tls_io conn_tls_io = {
    .send = conn_tls_send,
    .recv = conn_tls_recv,
    .established = conn_tls_established,
};

/* Ciphertext from the server (or none, to start): through the pump. */
static void
conn_take_tls(struct bconn *k, const uint8_t *p, size_t n)
{
    char msg[TLS_ERROR_MAX + 16];
    int rc = tls_input(k->tls, p, n);

    if (rc == TLS_OK || rc == TLS_WANT_MORE || rc == TLS_STOPPED)
        return;
    if (rc == TLS_CLOSED) {
        conn_fail(k, "the server closed the TLS session");
        return;
    }
    snprintf(msg, sizeof(msg), "TLS: %s", tls_error(k->tls));
    conn_fail(k, msg);
}

static void
conn_tls_begin(struct bconn *k)
{
    int rc = tls_new(k->b->tls_ctx, k->b->o->url.host, &k->tls);

    if (rc < 0) {
        conn_fail(k, "TLS: cannot start");
        return;
    }
    tls_set_io(k->tls, &conn_tls_io, k);
    k->handshaking = 1;
    k->state = ST_HANDSHAKE;
    k->line_len = 0;
    conn_take_tls(k, NULL, 0);
}

static int
code_ok(enum bench_stage st, int code)
{
    switch (st) {
    case ST_GREETING:
    case ST_STARTTLS:
        return code == 220;
    case ST_EHLO:
    case ST_MAIL:
    case ST_DOT:
    case ST_NOOP:
        return code == 250;
    case ST_AUTH:
        return code == 334 || code == 235;
    case ST_RCPT:
        return code == 250 || code == 251;
    case ST_DATA:
        return code == 354;
    case ST_QUIT:
        return code == 221;
    case ST_CONNECT:
    case ST_HANDSHAKE:
    case ST_IDLE:
    case ST_CLOSING:
        break;
    }
    return 0;
}

/*
 * A complete reply for stage st; line is its last line (a 334 challenge
 * is one line, and may be longer than the text kept for failures).
 */
static void
conn_dispatch(struct bconn *k, enum bench_stage st, int code,
              const char *line)
{
    struct bench *b = k->b;

    k->state = st;
    if (!code_ok(st, code)) {
        conn_fail_at(k, bench_stage_names[st], k->text);
        return;
    }
    switch (st) {
    case ST_GREETING:
        conn_send_ehlo(k);
        return;
    case ST_EHLO:
        conn_after_ehlo(k);
        return;
    case ST_STARTTLS:
        conn_tls_begin(k);
        return;
    case ST_AUTH:
        if (code == 334) {
            const char *ch = line + 3;

            ch += (*ch == ' ');
            conn_auth_continue(k, ch);
            return;
        }
        /* 235: a mechanism whose server proves itself must have done so
         * (RFC 5802 §3 for SCRAM). */
        if ((b->own_scram && k->scram != SCRAM_VERIFIED) ||
            (!b->own_scram && pst_sasl_client_finish(k->sc) < 0)) {
            conn_fail(k, "235 without the server's proof");
            return;
        }
        pst_sasl_client_free(k->sc);
        k->sc = NULL;
        conn_start_mail(k);
        return;
    case ST_MAIL:
    case ST_RCPT:
        /* Without PIPELINING, one command at a time (RFC 2920 §3.1 lets
         * a client group them only when the server says it may). */
        if (k->ext & EXT_PIPELINING)
            return;
        if (k->rcpt_sent < b->o->rcpt) {
            size_t one = b->rcpt_cmds_len / b->o->rcpt;

            k->rcpt_sent++;
            conn_expect(k, ST_RCPT);
            conn_send(k, b->rcpt_cmds, one);
            return;
        }
        conn_cmd(k, ST_DATA, "DATA");
        return;
    case ST_DATA:
        /* The message is prepared once: CRLF lines, none starting with
         * ".", ending in CRLF "." CRLF (RFC 5321 §4.1.1.4). */
        conn_expect(k, ST_DOT);
        conn_send(k, b->msg, b->msg_len);
        return;
    case ST_DOT:
        conn_cmd(k, ST_QUIT, "QUIT");
        return;
    case ST_QUIT:
        conn_finish(k, 1);
        return;
    case ST_NOOP:
        b->healthy++;
        conn_cmd(k, ST_QUIT, "QUIT");
        return;
    case ST_CONNECT:
    case ST_HANDSHAKE:
    case ST_IDLE:
    case ST_CLOSING:
        break;
    }
}

/* Keep the reply text (lines joined with "\n", cut at BENCH_TEXT_MAX). */
static void
conn_keep_text(struct bconn *k, const char *p, size_t n)
{
    size_t room;

    if (k->reply_lines > 1 && k->text_len + 1 < sizeof(k->text))
        k->text[k->text_len++] = '\n';
    room = sizeof(k->text) - 1 - k->text_len;
    if (n > room)
        n = room;
    memcpy(k->text + k->text_len, p, n);
    k->text_len += n;
    k->text[k->text_len] = '\0';
}

/* One reply line, without its line end. */
static void
conn_reply_line(struct bconn *k, const char *p, size_t n)
{
    enum bench_stage st;
    int code, last;

    /* RFC 5321 §4.2: a three-digit code, then "-" (more lines) or " ". */
    if (n < 3 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9' || (n > 3 && p[3] != '-' && p[3] != ' ')) {
        conn_fail(k, "malformed reply line");
        return;
    }
    code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    last = n == 3 || p[3] == ' ';
    if (k->reply_lines == 0) {
        k->text_len = 0;
        k->reply_code = code;
    } else if (code != k->reply_code) {
        conn_fail(k, "reply lines with different codes");
        return;
    }
    k->reply_lines++;
    conn_keep_text(k, p, n);
    if (k->ex_len > 0 && k->expect[k->ex_head] == ST_EHLO && code == 250 &&
        k->reply_lines > 1 && n > 4) {
        const char *kw = p + 4;
        size_t klen = strcspn(kw, " =");

        if (klen == 10 && strncasecmp(kw, "PIPELINING", 10) == 0)
            k->ext |= EXT_PIPELINING;
        else if (klen == 8 && strncasecmp(kw, "STARTTLS", 8) == 0)
            k->ext |= EXT_STARTTLS;
    }
    if (!last)
        return;
    k->reply_lines = 0;
    if (k->ex_len == 0) {
        conn_fail(k, "a reply nobody asked for");
        return;
    }
    st = (enum bench_stage)k->expect[k->ex_head];
    k->ex_head = (k->ex_head + 1) % BENCH_MAX_EXPECT;
    k->ex_len--;
    k->t_last = uv_hrtime();
    conn_dispatch(k, st, code, p);
}

/* Plaintext from the server: split into lines. */
static void
conn_take(struct bconn *k, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && k->state != ST_CLOSING; i++) {
        char ch = (char)p[i];

        if (k->state == ST_IDLE) {
            conn_fail(k, "data from the server while idle");
            return;
        }
        if (ch == '\n') {
            size_t len = k->line_len;

            if (len > 0 && k->line[len - 1] == '\r')
                len--;
            k->line[len] = '\0';
            k->line_len = 0;
            conn_reply_line(k, k->line, len);
            /* RFC 3207 §4.2: STARTTLS accepted, the server says nothing
             * more in clear (its TLS speaks after our ClientHello):
             * bytes here would be injected. */
            if (k->handshaking && k->state != ST_CLOSING && i + 1 < n) {
                conn_fail(k, "data after the STARTTLS reply");
                return;
            }
            continue;
        }
        if (k->line_len < sizeof(k->line) - 1)
            k->line[k->line_len++] = ch;
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct bconn *k = h->data;

    (void)suggested;
    /* One loop, and each read is consumed before the next: the
     * connections share one buffer (TLS decrypts into its own). */
    buf->base = (char *)k->b->rbuf;
    buf->len = BENCH_READ_CHUNK;
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct bconn *k = st->data;

    if (k->state == ST_CLOSING)
        return;
    if (n < 0) {
        char msg[128];

        if (n == UV_EOF)
            snprintf(msg, sizeof(msg), "the server closed the connection");
        else
            snprintf(msg, sizeof(msg), "read: %s", uv_strerror((int)n));
        conn_fail(k, msg);
        return;
    }
    if (n == 0)
        return;
    if (k->tls != NULL)
        conn_take_tls(k, (const uint8_t *)buf->base, (size_t)n);
    else
        conn_take(k, (const uint8_t *)buf->base, (size_t)n);
}

static void
on_connect(uv_connect_t *req, int status)
{
    struct bconn *k = req->data;
    int rc;

    if (k->state == ST_CLOSING)
        return;
    if (status < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "connect: %s", uv_strerror(status));
        conn_fail(k, msg);
        return;
    }
    k->t_last = uv_hrtime();
    /* SMTP is small writes and replies: no Nagle delay (RFC 1122
     * §4.2.3.4 allows turning it off). */
    uv_tcp_nodelay(&k->tcp, 1);
    rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (rc < 0) {
        conn_fail(k, uv_strerror(rc));
        return;
    }
    k->state = ST_GREETING;
    if (k->b->o->url.implicit_tls)
        conn_tls_begin(k);
}

static void
on_closed(uv_handle_t *h)
{
    struct bconn *k = h->data;
    struct bench *b = k->b;

    k->open = 0;
    b->active--;
    if (!b->stopping && b->o->idle == 0)
        conn_start(k);
    else
        bench_maybe_stop(b);
}

static void
conn_close(struct bconn *k)
{
    if (k->state == ST_CLOSING)
        return;
    k->state = ST_CLOSING;
    if (k->sc != NULL) {
        pst_sasl_client_free(k->sc);
        k->sc = NULL;
    }
    OPENSSL_cleanse(k->server_sig, sizeof(k->server_sig));
    tls_free(k->tls);
    k->tls = NULL;
    uv_close((uv_handle_t *)&k->tcp, on_closed);
}

/* The session is over: count it and close. */
static void
conn_finish(struct bconn *k, int ok)
{
    struct bench *b = k->b;

    if (!k->counted) {
        k->counted = 1;
        if (ok) {
            b->ok++;
            if (b->o->idle == 0)
                bench_latency(b, ms_between(k->t_start, uv_hrtime()));
        } else {
            b->failed++;
        }
    }
    conn_close(k);
}

/* The stage a failure is reported at: the reply awaited, if any. */
static const char *
conn_stage_name(const struct bconn *k)
{
    if (k->state == ST_CONNECT || k->state == ST_HANDSHAKE ||
        k->state == ST_IDLE || k->ex_len == 0)
        return bench_stage_names[k->state];
    return bench_stage_names[k->expect[k->ex_head]];
}

/*
 * The session failed: count it with its reason.  Sessions cut by the end
 * of a load run are closed by bench_end() without coming here, so they
 * count as neither.
 */
static void
conn_fail_at(struct bconn *k, const char *stage, const char *text)
{
    struct bench *b = k->b;

    if (k->state == ST_CLOSING)
        return;
    if (!k->counted) {
        if (k->setting_up) {
            k->setting_up = 0;
            b->connecting--;
            b->setup_failed++;
        }
        bench_sample(b, stage, text);
        conn_finish(k, 0);
        bench_maybe_stop(b);
        return;
    }
    conn_close(k);
}

static void
conn_fail(struct bconn *k, const char *text)
{
    conn_fail_at(k, conn_stage_name(k), text);
}

static void
conn_start(struct bconn *k)
{
    struct bench *b = k->b;
    int rc;

    if (b->o->count > 0 && b->started >= b->o->count) {
        b->stopping = 1;
        bench_maybe_stop(b);
        return;
    }
    memset(k, 0, offsetof(struct bconn, line));
    k->b = b;
    k->state = ST_CONNECT;
    k->setting_up = b->o->idle > 0;
    k->t_start = k->t_last = uv_hrtime();
    k->expect[0] = ST_GREETING;
    k->ex_len = 1;
    rc = uv_tcp_init(&b->loop, &k->tcp);
    if (rc < 0) {
        fprintf(stderr, "postern bench: %s\n", uv_strerror(rc));
        b->stopping = 1;
        return;
    }
    k->tcp.data = k;
    k->connect.data = k;
    k->open = 1;
    b->active++;
    b->started++;
    rc = uv_tcp_connect(&k->connect, &k->tcp,
                        (const struct sockaddr *)&b->addr, on_connect);
    if (rc < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "connect: %s", uv_strerror(rc));
        conn_fail(k, msg);
    }
}

/* --- The run ------------------------------------------------------------- */

static void
bench_close_all(struct bench *b)
{
    for (unsigned i = 0; i < b->nconns; i++)
        if (b->conns[i].open && b->conns[i].state != ST_CLOSING)
            conn_close(&b->conns[i]);
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
            conn_cmd(k, ST_NOOP, "NOOP");
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
        conn_start(k);
    }
}

static void
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
                        b->o->idle, ms_between(b->t0, b->t_ready) / 1e3);
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
progress_line(struct bench *b, int final)
{
    double t = ms_between(b->t0, uv_hrtime()) / 1e3;

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

    progress_line(b, 0);
    /* A connection without progress for the timeout fails, except while
     * it is deliberately held. */
    for (unsigned i = 0; i < b->nconns; i++) {
        struct bconn *k = &b->conns[i];

        if (k->open && k->state != ST_CLOSING && k->state != ST_IDLE &&
            now - k->t_last > limit) {
            char msg[64];

            snprintf(msg, sizeof(msg), "no reply for %u s", b->o->timeout);
            conn_fail(k, msg);
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

/* SCRAM's saslname (RFC 5802 §5.1): "=" and "," escaped as =3D, =2C. */
static int
scram_escape_user(const char *user, char *out, size_t cap)
{
    size_t n = 0;

    for (; *user != '\0'; user++) {
        const char *rep = *user == '=' ? "=3D" : *user == ',' ? "=2C" : NULL;
        size_t len = rep != NULL ? 3 : 1;

        if (n + len >= cap)
            return -1;
        if (rep != NULL)
            memcpy(out + n, rep, 3);
        else
            out[n] = *user;
        n += len;
    }
    out[n] = '\0';
    return 0;
}

/* Printable ASCII: SASLprep (RFC 4013) leaves it as it is. */
static int
printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

static int
bench_setup_sasl(struct bench *b, const char *mech_name)
{
    const struct bench_opts *o = b->o;
    char err[256];

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
    if (strcmp(pst_sasl_mech_name(b->mech), "SCRAM-SHA-256") == 0)
        b->scram_md = EVP_sha256();
    else if (strcmp(pst_sasl_mech_name(b->mech), "SCRAM-SHA-1") == 0)
        b->scram_md = EVP_sha1();
    if (b->scram_md != NULL && o->scram_cache) {
        if (!printable_ascii(o->user, strlen(o->user)) ||
            !printable_ascii(b->password, b->password_len) ||
            scram_escape_user(o->user, b->scram_user,
                              sizeof(b->scram_user)) < 0) {
            fprintf(stderr, "postern bench: the SCRAM cache takes printable "
                    "ASCII names and passwords only: using libpostern's "
                    "SCRAM client without it\n");
        } else {
            b->own_scram = 1;
        }
    }
    return 0;
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

static void
bench_report(struct bench *b, const char *server)
{
    const struct bench_opts *o = b->o;
    double secs = ms_between(b->t0, b->t_end) / 1e3;
    double rate = secs > 0 ? (double)b->ok / secs : 0;
    double p50, p90, p99, mx, mean = 0;
    const char *mech = b->mech != NULL ? pst_sasl_mech_name(b->mech)
                                       : "none";
    FILE *f = stdout;

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
                    b->t_ready ? ms_between(b->t0, b->t_ready) / 1e3 : 0,
                    o->hold);
        else
            fprintf(f, ", \"concurrency\": %u, \"size\": %zu, "
                    "\"rcpt\": %u, \"duration_s\": %.3f, "
                    "\"sessions\": %" PRIu64 ", \"failures\": %" PRIu64
                    ", \"sessions_per_s\": %.1f, \"latency_ms\": "
                    "{\"mean\": %.3f, \"p50\": %.3f, \"p90\": %.3f, "
                    "\"p99\": %.3f, \"max\": %.3f}, "
                    "\"scram_pbkdf2_runs\": %" PRIu64,
                    o->concurrency, b->msg_len - 3, o->rcpt, secs, b->ok,
                    b->failed, rate, mean, p50, p90, p99, mx,
                    b->pbkdf2_runs);
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
    fprintf(f, "server       %s%s, AUTH %s%s\n", server,
            o->starttls ? " (STARTTLS)" : "", mech,
            b->own_scram ? " (salted password cached)" : "");
    if (o->idle) {
        fprintf(f, "idle         %u connections: %u held after EHLO "
                "(%.1f s to set up), %u healthy after %.0f s, %" PRIu64
                " failed\n", o->idle, b->ready,
                b->t_ready ? ms_between(b->t0, b->t_ready) / 1e3 : 0,
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

/* --- Self-test ------------------------------------------------------------ */

/*
 * The cached SCRAM client against RFC 7677 §3 (SCRAM-SHA-256) and RFC
 * 5802 §5 (SCRAM-SHA-1), user "user", password "pencil", with the RFC
 * nonces.  Returns 0 when both exchanges match byte for byte.
 */
static int
bench_self_test(void)
{
    static const struct {
        const char *mech, *nonce, *sfirst, *cfinal, *sfinal;
    } v[] = {
        {.mech = "SCRAM-SHA-256",
         .nonce = "rOprNGfwEbeRWgbNEkqO",
         .sfirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                   "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
         .cfinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
                   "hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
         .sfinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
        {.mech = "SCRAM-SHA-1",
         .nonce = "fyko+d2lbbFgONRv9qkxdawL",
         .sfirst = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                   "s=QSXCR+Q6sek8bf92,i=4096",
         .cfinal = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                   "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         .sfinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
    };
    static struct bench b;
    static struct bconn k;
    int failed = 0;

    b.password = (char *)"pencil";
    b.password_len = 6;
    snprintf(b.scram_user, sizeof(b.scram_user), "user");
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_buf out;
        int rc;

        memset(b.cache, 0, sizeof(b.cache));
        b.scram_md = strcmp(v[i].mech, "SCRAM-SHA-1") == 0 ? EVP_sha1()
                                                           : EVP_sha256();
        memset(&k, 0, sizeof(k));
        k.b = &b;
        snprintf(k.nonce, sizeof(k.nonce), "%s", v[i].nonce);
        k.scram = SCRAM_SENT_FIRST;
        pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
        rc = scram_final(&k, v[i].sfirst, &out);
        if (rc != PST_SASL_CONTINUE || out.len != strlen(v[i].cfinal) ||
            memcmp(out.data, v[i].cfinal, out.len) != 0) {
            printf("%s: client-final: got %s, want %s\n", v[i].mech,
                   rc >= 0 && out.data ? (const char *)out.data
                                       : pst_errname(rc),
                   v[i].cfinal);
            failed++;
        } else if ((rc = scram_verify(&k, v[i].sfinal)) != PST_SASL_DONE) {
            printf("%s: server-final: got %s, want DONE\n", v[i].mech,
                   pst_errname(rc));
            failed++;
        } else {
            printf("%s: RFC vector ok\n", v[i].mech);
        }
        pst_buf_clear(&out);
    }
    OPENSSL_cleanse(b.cache, sizeof(b.cache));
    return failed ? EX_SOFTWARE : 0;
}

/* --- Main ---------------------------------------------------------------- */

enum bench_opt {
    OPT_SERVER = 256, OPT_COUNT, OPT_MECH, OPT_USER, OPT_PWFILE,
    OPT_STARTTLS, OPT_SIZE, OPT_RCPT, OPT_FROM, OPT_TO, OPT_JSON, OPT_IDLE,
    OPT_HOLD, OPT_CAFILE, OPT_INSECURE, OPT_TIMEOUT, OPT_NO_CACHE,
    OPT_SELF_TEST,
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
        {"self-test", no_argument, NULL, OPT_SELF_TEST},
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
            if (parse_uint(optarg, 1, BENCH_MAX_CONNS, &v) < 0)
                goto bad_value;
            o.concurrency = (unsigned)v;
            break;
        case 'd':
            if (parse_seconds(optarg, &o.duration) < 0)
                goto bad_value;
            break;
        case OPT_COUNT:
            if (parse_uint(optarg, 1, UINT64_MAX / 2, &o.count) < 0)
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
            if (parse_uint(optarg, 0, 1u << 30, &v) < 0)
                goto bad_value;
            o.size = (size_t)v;
            break;
        case OPT_RCPT:
            if (parse_uint(optarg, 1, BENCH_MAX_RCPT, &v) < 0)
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
            if (parse_uint(optarg, 1, BENCH_MAX_CONNS, &v) < 0)
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
            if (parse_uint(optarg, 1, 3600, &v) < 0)
                goto bad_value;
            o.timeout = (unsigned)v;
            break;
        case OPT_NO_CACHE:
            o.scram_cache = 0;
            break;
        case OPT_SELF_TEST:
            return bench_self_test();
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
            conn_start(&b.conns[i]);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (b.t_end == 0)
        b.t_end = uv_hrtime();
    progress_line(&b, 1);
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
    OPENSSL_cleanse(b.cache, sizeof(b.cache));
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
