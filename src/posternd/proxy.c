/*
 * posternd - the PROXY protocol header's parser (proxy.h); it does no
 * I/O (session_proxy.c reads the header of a connection).
 *
 * Section numbers are those of HAProxy's doc/proxy-protocol.txt (2020/03/05
 * revision), the protocol's specification.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy.h"

/* --- Version 1 ------------------------------------------------------------
 */

static const char v1_sig[] = "PROXY ";
static const char *const v1_protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};

/* A decimal number of 1..maxdigits digits without leading zeros (§2.1:
 * "Heading zeroes are not permitted"), at most max.  Returns 0 or -1. */
static int
v1_number(const uint8_t *p, size_t len, size_t maxdigits, unsigned max,
          unsigned *out)
{
    unsigned v = 0;

    if (len == 0 || len > maxdigits || (p[0] == '0' && len > 1))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* §2.1: "exactly 4 integers in the range [0..255] ... separated by
 * exactly one dot". */
static int
v1_ipv4(const uint8_t *p, size_t len, struct sockaddr_in *sin)
{
    uint8_t b[4];
    size_t start = 0, k = 0;

    for (size_t i = 0; i <= len; i++) {
        unsigned v;

        if (i < len && p[i] != '.')
            continue;
        if (k == 4 || v1_number(p + start, i - start, 3, 255, &v) < 0)
            return -1;
        b[k++] = (uint8_t)v;
        start = i + 1;
    }
    if (k != 4)
        return -1;
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, b, 4);
    return 0;
}

/* §2.1: groups of hex digits with at most one "::", 128 bits in all. */
static int
v1_ipv6(const uint8_t *p, size_t len, struct sockaddr_in6 *sin6)
{
    char text[INET6_ADDRSTRLEN];

    if (len == 0 || len >= sizeof(text))
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') ||
              (p[i] >= 'A' && p[i] <= 'F') || p[i] == ':' || p[i] == '.'))
            return -1;
    memcpy(text, p, len);
    text[len] = '\0';
    memset(sin6, 0, sizeof(*sin6));
    sin6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1 ? 0 : -1;
}

static void
set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* "SRC DST SPORT DPORT" of a TCP4 (v6 0) or TCP6 line: exactly one
 * space between the fields, none around them. */
static int
v1_addresses(const uint8_t *p, size_t len, int v6, struct proxy_hdr *out)
{
    const uint8_t *f[4];
    size_t flen[4], k = 0, start = 0;
    unsigned sport, dport;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != ' ')
            continue;
        if (k == 4)
            return -1;
        f[k] = p + start;
        flen[k++] = i - start;
        start = i + 1;
    }
    if (k != 4)
        return -1;
    memset(out, 0, sizeof(*out));
    if (v6 ? v1_ipv6(f[0], flen[0], (struct sockaddr_in6 *)&out->src) ||
                 v1_ipv6(f[1], flen[1], (struct sockaddr_in6 *)&out->dst)
           : v1_ipv4(f[0], flen[0], (struct sockaddr_in *)&out->src) ||
                 v1_ipv4(f[1], flen[1], (struct sockaddr_in *)&out->dst))
        return -1;
    if (v1_number(f[2], flen[2], 5, 65535, &sport) < 0 ||
        v1_number(f[3], flen[3], 5, 65535, &dport) < 0)
        return -1;
    set_port(&out->src, sport);
    set_port(&out->dst, dport);
    return 0;
}

static int
v1_parse(const uint8_t *p, size_t len, struct proxy_hdr *out)
{
    size_t n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
    size_t proto = sizeof(v1_protos) / sizeof(v1_protos[0]), end;
    const uint8_t *lf;

    if (memcmp(p, v1_sig, n) != 0) /* not secret */
        return -1;
    if (len <= sizeof(v1_sig) - 1)
        return 0;
    /* Which protocol word, as far as the bytes go. */
    for (size_t i = 0; i < sizeof(v1_protos) / sizeof(v1_protos[0]); i++) {
        size_t w = strlen(v1_protos[i]), have = len - 6;

        if (memcmp(p + 6, v1_protos[i], have < w ? have : w) == 0) {
            proto = i;
            break;
        }
    }
    if (proto == sizeof(v1_protos) / sizeof(v1_protos[0]))
        return -1;
    /* §2.1: "The receiver must not tolerate a single CR or LF character
     * to end the line": every CR is followed by LF, every LF preceded
     * by CR; the CRLF is within the first 107 bytes. */
    n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    lf = memchr(p, '\n', n);
    end = lf != NULL ? (size_t)(lf - p) : n;
    for (size_t i = 0; i < end; i++)
        if (p[i] == '\r' && i + 1 != (lf != NULL ? end : n))
            return -1;
    if (lf == NULL)
        return len >= PROXY_V1_MAX ? -1 : 0;
    if (end < 1 || p[end - 1] != '\r')
        return -1;
    end--; /* the line without its CRLF */
    memset(out, 0, sizeof(*out));
    if (proto == 2) {
        /* §2.1: for UNKNOWN "the receiver must ignore anything presented
         * before the CRLF" and use the real connection's addresses. */
        if (end > 13 && p[13] != ' ')
            return -1;
        out->local = 1;
        return (int)(lf - p) + 1;
    }
    if (end < 11 || v1_addresses(p + 11, end - 11, proto == 1, out) < 0)
        return -1;
    return (int)(lf - p) + 1;
}

/* --- Version 2 ------------------------------------------------------------
 */

/* §2.2: "a constant 12 bytes block containing the protocol signature". */
static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TCP4 0x11
#define V2_TCP6 0x21

static int
v2_parse(const uint8_t *p, size_t len, struct proxy_hdr *out)
{
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig), total;
    unsigned fam, proto;

    if (memcmp(p, v2_sig, n) != 0) /* not secret */
        return -1;
    /* §2.2: the version nibble "must always be sent as \x2 and the
     * receiver must only accept this value"; commands other than LOCAL
     * and PROXY: "Receivers must drop connections presenting unexpected
     * values here". */
    if (len > 12 && ((p[12] >> 4) != 2 || (p[12] & 0x0f) > V2_CMD_PROXY))
        return -1;
    /* Families above AF_UNIX (3) and protocols above DGRAM (2) "must be
     * rejected as invalid by receivers". */
    if (len > 13 && ((p[13] >> 4) > 3 || (p[13] & 0x0f) > 2))
        return -1;
    if (len < 16)
        return 0;
    total = 16 + (((size_t)p[14] << 8) | p[15]);
    if (total > PROXY_HDR_MAX)
        return -1;
    if (len < total)
        return 0;
    memset(out, 0, sizeof(*out));
    fam = p[13] >> 4;
    proto = p[13] & 0x0f;
    /* LOCAL: "the receiver must accept this connection as valid and must
     * use the real connection endpoints"; an UNSPEC family or protocol,
     * or AF_UNIX: we use the real endpoints too (allowed: "free to
     * accept the connection anyway and use the real endpoint
     * addresses").  A datagram protocol is no connection of ours. */
    if ((p[12] & 0x0f) == V2_CMD_LOCAL || fam == 0 || fam == 3 ||
        proto == 0) {
        if ((p[12] & 0x0f) != V2_CMD_LOCAL && proto == 2)
            return -1;
        out->local = 1;
        return (int)total;
    }
    if (p[13] == V2_TCP4 && total >= 16 + 12) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;

        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, p + 16, 4);
        memcpy(&d->sin_addr, p + 20, 4);
        memcpy(&s->sin_port, p + 24, 2);
        memcpy(&d->sin_port, p + 26, 2);
        return (int)total;
    }
    if (p[13] == V2_TCP6 && total >= 16 + 36) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;

        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, p + 16, 16);
        memcpy(&d->sin6_addr, p + 32, 16);
        memcpy(&s->sin6_port, p + 48, 2);
        memcpy(&d->sin6_port, p + 50, 2);
        return (int)total;
    }
    /* UDP, or an address block too short for its family. */
    return -1;
}

int
proxy_parse(enum config_proxy v, const uint8_t *p, size_t len,
            struct proxy_hdr *out)
{
    if (len == 0)
        return 0;
    switch (v) {
    case CONFIG_PROXY_V1:
        return v1_parse(p, len, out);
    case CONFIG_PROXY_V2:
        return v2_parse(p, len, out);
    case CONFIG_PROXY_NONE:
        break;
    }
    return -1;
}

size_t
proxy_want(enum config_proxy v, const uint8_t *p, size_t len)
{
    struct proxy_hdr h;

    if (proxy_parse(v, p, len, &h) != 0)
        return 0;
    if (v == CONFIG_PROXY_V1)
        return PROXY_V1_MAX - len;
    if (len < 16)
        return 16 - len;
    return 16 + (((size_t)p[14] << 8) | p[15]) - len;
}
