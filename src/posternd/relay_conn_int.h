/*
 * posternd - what relay_conn.c and relay_conn_data.c share: the
 * connection's state.  Private to those two files; relay_conn.h is the
 * interface.
 */
#ifndef POSTERND_RELAY_CONN_INT_H
#define POSTERND_RELAY_CONN_INT_H

#include <arpa/inet.h>
#include <netdb.h>
#include <stdint.h>

#include <uv.h>

#include <postern/buf.h>

#include "log.h"
#include "relay_conn.h"
#include "tls.h"

#define RC_CHUNK        65536          /* octets read from the file */
#define RC_WRITE_HIGH   (512u << 10)   /* stop reading the file above */
#define RC_HEADER_MAX   (1u << 20)     /* header section we rewrite */
#define RC_READ_BUF     65536

enum rc_state {
    RC_RESOLVING = 0,
    RC_CONNECTING,
    RC_SESSION,
    RC_CLOSING,
};

struct relay_conn {
    uv_tcp_t *tcp;                     /* this attempt's socket, or NULL */
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_fs_t fs;
    uv_loop_t *loop;
    struct relay_conn_config cfg;
    char port[8];
    const struct relay_conn_ops *ops;
    void *ctx;
    enum rc_state state;
    struct addrinfo *ai;               /* the answer, freed at close */
    struct addrinfo *ai_next;          /* the next address to try */
    char peer[INET6_ADDRSTRLEN];
    struct tls *tls;                   /* made at start: the context may be
                                          replaced by a reload */
    int tls_on;                        /* bytes go through tls now */
    /* Copies of the settings (a reload frees the configuration): */
    char *name, *host, *helo, *user;
    uint8_t *secret;
    char **mechs;
    struct pst_smtp_client *s;
    /* The job being sent, and where its session stands: */
    struct relay_job *job;
    int ready_seen;                    /* the session was set up once */
    unsigned fail_code;                /* the last FAIL, to classify */
    char *fail_reply;
    int quitting;                      /* we said QUIT */
    int idle;                          /* READY, no job: cached */
    /* The message file: */
    int fd;
    uint64_t file_off;                 /* next octet to read */
    unsigned reqs;                     /* requests in flight (lookup,
                                          connect, file): each returns
                                          before the memory may go */
    int data_phase;                    /* the session wants DATA bytes */
    int eof;
    struct pst_buf hdr;                /* rewrite: the header section */
    int hdr_done;
    uint8_t chunk[RC_CHUNK];
    /* Output: */
    size_t write_queue;                /* octets in uv_write requests */
    unsigned handles;                  /* open handles (tcp, timer) */
    enum relay_conn_end end;
    unsigned end_code;
    char *end_reply;
    uint8_t rbuf[RC_READ_BUF];
};

/* relay_conn.c: */
/* Log event for c with up to two more key/value pairs (NULL ends). */
void rc_log(const struct relay_conn *c, enum log_level lv, const char *event,
            const char *k1, const char *v1, const char *k2, const char *v2);
/* Write what the session has to send.  Returns 0, -1. */
int rc_flush(struct relay_conn *c);
/* Run the session on what it has read and act on its events. */
void rc_pump(struct relay_conn *c);
/* End the connection (once its requests have returned, freed). */
void rc_close(struct relay_conn *c, enum relay_conn_end end, unsigned code,
              const char *reply);

/* relay_conn_data.c: */
/* DATA was accepted (354): send the message from job->offset. */
void rc_start_data(struct relay_conn *c);
/* Read the next chunk of the message file (reading resumes here when
 * the write queue drains). */
void rc_read_file(struct relay_conn *c);

#endif
