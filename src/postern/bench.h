/*
 * postern bench: the load generator (DESIGN.md "postern"; issue 7).
 *
 * N sessions at once, each repeating: connect, EHLO, [STARTTLS, EHLO],
 * [AUTH], MAIL, RCPT x k, DATA of a fixed message, QUIT, for a duration
 * or a number of sessions; every reply code is checked.  Or, with --idle,
 * N connections that say EHLO and are held open, then checked with NOOP.
 *
 * cmd_bench.c: the command (options, set-up, the run); bench_conn.c: a
 * connection and its session; bench_report.c: latencies and the report.
 * The SASL exchanges are libpostern's client halves (SCRAM with one key
 * cache for the run, RFC 5802 §5.1); reply lines are checked by
 * libpostern's validator, pst_smtp_reply_parse_line().
 */
#ifndef POSTERN_BENCH_H
#define POSTERN_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <uv.h>

#include <postern/base64.h>
#include <postern/buf.h>
#include <postern/sasl.h>
#include <postern/smtp_reply.h>

#include "client.h"
#include "tls.h"

#define BENCH_CMD_MAX      1024   /* a command line we send, octets */
#define BENCH_TEXT_MAX     256    /* reply text kept for a failure */
#define BENCH_MAX_RCPT     100    /* --rcpt ceiling */
#define BENCH_MAX_EXPECT   128    /* replies awaited at once (> rcpt+3) */
#define BENCH_SAMPLES      5      /* failure replies reported */
#define BENCH_CONNECTING   256    /* --idle: set-ups in flight at once */
#define BENCH_READ_CHUNK   (64 * 1024)
#define BENCH_FD_SPARE     64     /* descriptors beyond the connections */
#define BENCH_MAX_CONNS    1000000
#define BENCH_HELO         "bench.example.test"
#define BENCH_SCRAM_CACHE  8      /* SCRAM key sets remembered (salt,
                                     iterations; one password a run) */

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


#define EXT_PIPELINING 0x01u
#define EXT_STARTTLS   0x02u

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
    unsigned challenges;        /* 334s answered in this exchange */
    /* Replies awaited, oldest first: */
    uint8_t expect[BENCH_MAX_EXPECT];
    unsigned ex_head, ex_len;
    /* Received: */
    int reply_code;
    unsigned reply_lines;
    size_t line_len;
    uint8_t line[PST_SMTP_REPLY_MAX_LINE]; /* up to the LF: the longest
                                   line pst_smtp_reply_parse_line() takes,
                                   and its CR */
    size_t text_len;
    char text[BENCH_TEXT_MAX];
};

struct bench_sample {
    char stage[16];
    char text[BENCH_TEXT_MAX];
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
    int scram;                /* mech is a SCRAM mechanism */
    struct pst_sasl_client_config sasl; /* every session's; its
                                 scram_cache is the one below */
    /* SCRAM keys of the run (RFC 5802 §5.1), shared by every session;
     * NULL with --no-scram-cache.  Used on the loop's thread only (the
     * bench has no other), as sasl.h asks of an unlocked cache: */
    struct pst_scram_cache *scram_cache;
    uint64_t scram_derivations; /* without the cache: SCRAM exchanges
                                 that answered server-first (each ran
                                 PBKDF2) */
    char *password;           /* secret */
    size_t password_len;
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

/* --- bench_conn.c -------------------------------------------------------- */

/* Start (or, in load mode, restart) the session of slot k. */
void bconn_start(struct bconn *k);

/* Close k (idempotent); on_closed() then starts the next session. */
void bconn_close(struct bconn *k);

/* Send a command line (CRLF added) and await the reply of stage st.
 * Returns: 0, -1 (k failed). */
int bconn_cmd(struct bconn *k, enum bench_stage st, const char *line);

/* The session failed at its current stage: count it, say why, close. */
void bconn_fail(struct bconn *k, const char *text);

/* --- bench_report.c ------------------------------------------------------ */

/* Milliseconds from uv_hrtime() a to b. */
double bench_ms_between(uint64_t a, uint64_t b);

/* Keep a failure's stage and reply for the report (the first few). */
void bench_sample(struct bench *b, const char *stage, const char *text);

/* Count one successful session's latency. */
void bench_latency(struct bench *b, double ms);

/* The summary on stdout (text, or JSON with --json). */
void bench_report(struct bench *b, const char *server);

/* --- cmd_bench.c --------------------------------------------------------- */

/* A decimal number in min..max.  Returns: 0, -1. */
int bench_parse_uint(const char *s, uint64_t min, uint64_t max,
                     uint64_t *out);

/* A session ended: start more, hold, or end the run as the mode says. */
void bench_maybe_stop(struct bench *b);

#endif
