/*
 * postern - the network side of the client commands (send, probe,
 * sendmail): connect, TLS, and drive a pst_smtp_client session to its end.
 */
#ifndef POSTERN_CLIENT_H
#define POSTERN_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <postern/smtp_client.h>

#include "tls.h"

#define CLIENT_TEXT_MAX 4096
/* Longest password read from a file or the terminal, in bytes. */
#define CLIENT_PASSWORD_MAX 4096

/* smtp://host[:port] (587, STARTTLS) or smtps://host[:port] (465). */
struct server_url {
    char host[256];    /* name or address, without [] */
    char port[8];
    int implicit_tls;  /* smtps */
};

struct client_opts {
    struct server_url url;
    const char *cafile;  /* NULL: the system store */
    const char *cert;    /* client certificate (PEM), for EXTERNAL, with
                            key; NULL: none */
    const char *key;
    int insecure;        /* accept any certificate */
    int verbose;         /* transcript on stderr */
    unsigned timeout;    /* seconds per network wait; 0: 60 */
    int progress;        /* progress line on stderr during DATA */
};

/* Where the message comes from during DATA. */
struct msg_source {
    /* Fill buf with up to cap bytes; *n = 0 at the end.  Returns 0 or -1
     * (read error; errno set). */
    int (*read)(void *ctx, uint8_t *buf, size_t cap, size_t *n);
    void *ctx;
    uint64_t total;      /* size if known (progress), else 0 */
};

/* What happened, for messages, exit codes and `postern probe`. */
struct client_result {
    int ok;                        /* DONE seen */
    int error;                     /* PST_E* of the failure, or 0 */
    int code;                      /* reply code of the failure */
    int net_error;                 /* connect/read/write/TLS failure */
    int tls_verify_failed;         /* certificate refused */
    char stage[16];
    char text[CLIENT_TEXT_MAX];    /* failure reply or explanation */
    char greeting[1024];
    char ehlo_plain[CLIENT_TEXT_MAX];  /* EHLO reply before TLS */
    char ehlo_tls[CLIENT_TEXT_MAX];    /* EHLO reply under TLS */
    char mechs_plain[512];
    char mechs_tls[512];
    int had_plain_ehlo, had_tls_ehlo;
    char tls_protocol[32];
    char tls_cipher[128];
    int tls_bits;
    int have_cert;
    struct tls_peer_cert cert;
    char verify[128];              /* "ok" or why not */
    char mech[32];                 /* mechanism that authenticated */
    char channel_binding[16];      /* "tls-exporter", "tls-unique", or ""
                                      (none, or no TLS) */
    unsigned layer;                /* PST_SASL_QOP_* of a security layer,
                                      0: none */
    char auth_json[1024];          /* a refused bearer token: the
                                      server's JSON error (RFC 7628
                                      §3.2.2), printable; else "" */
    char address[128];             /* the address connected to */
};

/* Parse a server URL.  Returns 0, or -1 with a message in err. */
int client_url_parse(const char *s, struct server_url *u, char *err,
                     size_t err_size);

/*
 * Connect to o->url, run the session of cfg (helo filled in if NULL),
 * feed the message from msg (may be NULL for a probe), and fill *res.
 * Returns: 0 when the session succeeded, -1 otherwise (see *res).
 */
int client_run(const struct client_opts *o, struct pst_smtp_client_config *cfg,
               struct msg_source *msg, struct client_result *res);

/* The sysexits.h code for a result (the one place that maps them). */
int client_exit_code(const struct client_result *r);

/* A one-line description of a failed result ("authentication failed:
 * 535 5.7.8 ..."), written into buf. */
void client_describe(const struct client_result *r, char *buf, size_t n);

/*
 * The password: from file (its first line) if file is not NULL, else the
 * environment variable POSTERN_PASSWORD, else a no-echo prompt on the
 * terminal (/dev/tty).  *out is malloc'd and NUL-terminated (wipe with
 * OPENSSL_clear_free(*out, *len + 1)).
 * Returns: 0, or -1 with a message in err.
 */
int client_password(const char *file, const char *prompt, char **out,
                    size_t *len, char *err, size_t err_size);

/* This machine's name for EHLO (FQDN if known, else "localhost"). */
void client_helo_name(char *buf, size_t n);

#endif
