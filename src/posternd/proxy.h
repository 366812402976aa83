/*
 * posternd - the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1
 * and 2): behind a TCP load balancer every connection starts with a
 * header naming the real client, which then stands for the peer
 * everywhere (log, throttle, limits, profiles, Received).
 *
 * Two halves: a parser that does no I/O (proxy.c: proxy_parse(),
 * proxy_want(); the unit tests and the fuzz target drive it with bytes),
 * and the driver of a connection that reads its header before the
 * session starts (session_proxy.c: proxy_begin()).  The driver reads no
 * byte past the header, so what follows it (the client's first TLS
 * record on an implicit-TLS listener) is left in the socket for the
 * session.
 */
#ifndef POSTERND_PROXY_H
#define POSTERND_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* proxy-protocol.txt §2.1: a version 1 line is at most 107 bytes with
 * its CRLF. */
#define PROXY_V1_MAX 107
/* §2.2: 16 bytes, then the address block and TLVs.  We take at most
 * this much of the latter (TLVs are skipped, never used). */
#define PROXY_V2_ADDR_MAX 2048
#define PROXY_HDR_MAX (16 + PROXY_V2_ADDR_MAX)

/* A parsed header. */
struct proxy_hdr {
    int local;                    /* 1: v1 UNKNOWN, v2 LOCAL (or an
                                     address family we do not use): the
                                     peer stands for itself */
    struct sockaddr_storage src;  /* !local: the client */
    struct sockaddr_storage dst;  /* !local: the address it connected to */
};

/*
 * Parse the first len bytes a connection sent ([in] borrowed) as a
 * header of version v (CONFIG_PROXY_V1 or _V2; the other version is
 * invalid).  Every prefix of a valid header gives 0, so a caller may
 * feed bytes as they come; anything that cannot begin a valid header is
 * refused at once (§2.1: "abort the connection as soon as possible").
 * Parameters: *out [out] filled when the header is complete.
 * Returns: the header's length in bytes (> 0: complete), 0 (a valid
 * prefix: more bytes needed), -1 (invalid).
 */
int proxy_parse(enum config_proxy v, const uint8_t *p, size_t len,
                struct proxy_hdr *out);

/*
 * How many more bytes may be read after the len bytes at p without
 * reading past the header: for version 2 exactly what it still lacks;
 * for version 1 an upper bound (the line ends at its LF, which the
 * reader must look for: proxy_begin() peeks).  0 when len bytes are
 * already a whole header or invalid.
 */
size_t proxy_want(enum config_proxy v, const uint8_t *p, size_t len);

struct conn;

/*
 * Read the PROXY header of c (accepted on a listener with
 * proxy_protocol; its session not started).  A peer outside the
 * listener's proxy_from, an invalid header, one of the other version,
 * or one not complete within timeout_command: c is closed without a
 * reply (logged as event=proxy_refused).  Otherwise c's peer becomes
 * the client of the header (conn_set_peer(); v1 UNKNOWN and v2 LOCAL
 * keep the peer) and done(c) is called: the caller admits the
 * connection.
 */
void proxy_begin(struct conn *c, void (*done)(struct conn *c));

/* Free what proxy_begin() left on c (c->proxy), if anything. */
void proxy_end(struct conn *c);

#endif
