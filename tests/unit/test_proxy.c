/*
 * The PROXY protocol parser (src/posternd/proxy.c) against HAProxy's
 * doc/proxy-protocol.txt: the version 1 lines of §2.1 as the text gives
 * them, version 2 headers written out byte by byte from the layout of
 * §2.2, and every rule that makes a header invalid.  Each valid header is
 * also fed one prefix at a time: every prefix must ask for more, and
 * proxy_want() must never reach past the header.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "testutil.h"

#include "proxy.h"

struct want_addr {
    const char *src, *dst;   /* NULL: local (the peer itself) */
    unsigned sport, dport;
};

struct valid_case {
    enum config_proxy v;
    const char *bytes;       /* the header, then what follows it */
    size_t len;              /* of the header */
    size_t trailing;         /* bytes after it */
    struct want_addr want;
};

#define V1(text) CONFIG_PROXY_V1, text, sizeof(text) - 1, 0
#define V1T(text, after) \
    CONFIG_PROXY_V1, text after, sizeof(text) - 1, sizeof(after) - 1
#define V2(bytes) CONFIG_PROXY_V2, bytes, sizeof(bytes) - 1, 0
#define V2T(bytes, after) \
    CONFIG_PROXY_V2, bytes after, sizeof(bytes) - 1, sizeof(after) - 1

/* §2.2: the signature. */
#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"

static const struct valid_case valid[] = {
    /* §2.1, the longest lines "the receiver must support". */
    {V1("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
     {"255.255.255.255", "255.255.255.255", 65535, 65535}},
    {V1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
     {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535}},
    {V1("PROXY UNKNOWN\r\n"), {NULL, NULL, 0, 0}},
    /* 107 bytes: "worst case (optional fields set to 0xff)". */
    {V1("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
     {NULL, NULL, 0, 0}},
    /* §2.1's example, before an HTTP request. */
    {V1T("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
         "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"),
     {"192.168.0.1", "192.168.0.11", 56324, 443}},
    {V1("PROXY TCP6 2001:db8::1 ::1 0 587\r\n"),
     {"2001:db8::1", "::1", 0, 587}},
    {V1("PROXY TCP4 0.0.0.0 10.0.0.1 1 2\r\n"),
     {"0.0.0.0", "10.0.0.1", 1, 2}},
    /* Then a TLS ClientHello: it stays with the session. */
    {V1T("PROXY TCP4 127.0.0.2 127.0.0.1 40000 465\r\n",
         "\x16\x03\x01\x02\x00\x01"),
     {"127.0.0.2", "127.0.0.1", 40000, 465}},
    /* §2.2: TCP over IPv4, 12 address bytes (ver 2, cmd PROXY). */
    {V2(SIG "\x21\x11\x00\x0c"
        "\xc0\x00\x02\x01" "\xc6\x33\x64\x02" "\xd4\x31" "\x02\x4b"),
     {"192.0.2.1", "198.51.100.2", 54321, 587}},
    /* TCP over IPv6, 36 bytes. */
    {V2(SIG "\x21\x21\x00\x24"
        "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07"
        "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
        "\x00\x19" "\x01\xd1"),
     {"2001:db8::7", "::1", 25, 465}},
    /* TLVs after the addresses (PP2_TYPE_NOOP, 4 bytes of value; then
     * PP2_TYPE_AUTHORITY "mx"): skipped, part of the header. */
    {V2T(SIG "\x21\x11\x00\x18"
         "\x7f\x00\x00\x03" "\x7f\x00\x00\x01" "\xea\x60" "\x02\x4b"
         "\x04\x00\x04" "abcd" "\x02\x00\x02" "mx",
         "EHLO x\r\n"),
     {"127.0.0.3", "127.0.0.1", 60000, 587}},
    /* LOCAL (a health check): the real endpoints, whatever follows. */
    {V2(SIG "\x20\x00\x00\x00"), {NULL, NULL, 0, 0}},
    /* "Receivers MUST always consider this field to skip the
     * appropriate number of bytes and must not assume zero is
     * presented for LOCAL connections". */
    {V2T(SIG "\x20\x11\x00\x0c"
         "\x0a\x00\x00\x01" "\x0a\x00\x00\x02" "\x00\x01" "\x00\x02",
         "\x16\x03\x01"),
     {NULL, NULL, 0, 0}},
    /* PROXY with UNSPEC, and with AF_UNIX: the real endpoints. */
    {V2(SIG "\x21\x00\x00\x00"), {NULL, NULL, 0, 0}},
    {V2(SIG "\x21\x31\x00\x04" "abcd"), {NULL, NULL, 0, 0}},
};

static void
check_addr(const struct sockaddr_storage *ss, const char *want,
           unsigned port, size_t i)
{
    char text[INET6_ADDRSTRLEN];
    const void *a;
    unsigned got_port;

    if (ss->ss_family == AF_INET) {
        a = &((const struct sockaddr_in *)ss)->sin_addr;
        got_port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
    } else {
        assert_int_equal(ss->ss_family, AF_INET6);
        a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        got_port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    assert_non_null(inet_ntop(ss->ss_family, a, text, sizeof(text)));
    if (strcmp(text, want) != 0 || got_port != port)
        fail_msg("case %zu: got %s port %u, want %s port %u", i, text,
                 got_port, want, port);
}

static void
test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        const struct valid_case *c = &valid[i];
        const uint8_t *p = (const uint8_t *)c->bytes;
        struct proxy_hdr h;
        int rc;

        rc = proxy_parse(c->v, p, c->len + c->trailing, &h);
        if (rc != (int)c->len)
            fail_msg("case %zu: got %d, want %zu", i, rc, c->len);
        if (c->want.src == NULL) {
            if (!h.local)
                fail_msg("case %zu: got addresses, want local", i);
        } else {
            assert_false(h.local);
            check_addr(&h.src, c->want.src, c->want.sport, i);
            check_addr(&h.dst, c->want.dst, c->want.dport, i);
        }
        /* Exactly the header: nothing more wanted. */
        assert_int_equal(proxy_want(c->v, p, c->len), 0);
        /* Every prefix is valid so far, and proxy_want() stays inside
         * the header (v2: exactly what is missing of the fixed part or
         * of the whole). */
        for (size_t n = 1; n < c->len; n++) {
            size_t want = proxy_want(c->v, p, n);

            rc = proxy_parse(c->v, p, n, &h);
            if (rc != 0)
                fail_msg("case %zu prefix %zu: got %d, want 0", i, n, rc);
            if (want == 0)
                fail_msg("case %zu prefix %zu: wants nothing", i, n);
            if (c->v == CONFIG_PROXY_V2 &&
                want != (n < 16 ? 16 - n : c->len - n))
                fail_msg("case %zu prefix %zu: wants %zu, want %zu", i, n,
                         want, n < 16 ? 16 - n : c->len - n);
            if (c->v == CONFIG_PROXY_V1 && n + want > PROXY_V1_MAX)
                fail_msg("case %zu prefix %zu: wants %zu past 107", i, n,
                         want);
        }
    }
}

struct invalid_case {
    enum config_proxy v;
    const char *bytes;
    size_t len;
};

#define BAD1(text) {CONFIG_PROXY_V1, text, sizeof(text) - 1}
#define BAD2(bytes) {CONFIG_PROXY_V2, bytes, sizeof(bytes) - 1}

static const struct invalid_case invalid[] = {
    /* Not a header at all: refused at the first byte that tells. */
    BAD1("EHLO client.example\r\n"),
    BAD1("P"
         "ROXX"),
    BAD1("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    BAD1("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4\r\n"),
    BAD1("PROXY UNKNOWNX\r\n"),
    /* "must not tolerate a single CR or LF character to end the line" */
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
    BAD1("PROXY UNKNOWN\n"),
    /* "Heading zeroes are not permitted" */
    BAD1("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"),
    /* Ranges, counts, "exactly one space", "exactly one dot". */
    BAD1("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n"),
    BAD1("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
    BAD1("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"),
    /* "The advertised protocol family dictates what format to use." */
    BAD1("PROXY TCP4 ::1 ::1 1 2\r\n"),
    BAD1("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
    BAD1("PROXY TCP6 2001:db8::1 1.2.3.4 1 2\r\n"),
    BAD1("PROXY TCP6 2001:db8:::1 ::1 1 2\r\n"),
    BAD1("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
    /* No CRLF in the first 107 bytes. */
    BAD1("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655355\r\n"),
    /* Version 2 where version 1 is configured, and the other way. */
    BAD1(SIG "\x21\x11\x00\x0c"),
    BAD2("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    BAD2("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0B"),
    /* "it must always be sent as \x2 and the receiver must only accept
     * this value" */
    BAD2(SIG "\x11"),
    BAD2(SIG "\x31"),
    /* Commands other than LOCAL and PROXY. */
    BAD2(SIG "\x22"),
    BAD2(SIG "\x2f"),
    /* Families above AF_UNIX, protocols above DGRAM. */
    BAD2(SIG "\x21\x41"),
    BAD2(SIG "\x21\x13"),
    /* UDP is no connection of ours. */
    BAD2(SIG "\x21\x12\x00\x0c"
         "\x7f\x00\x00\x01" "\x7f\x00\x00\x01" "\x00\x01" "\x00\x02"),
    BAD2(SIG "\x21\x22\x00\x24"
         "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
         "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
         "\x00\x01" "\x00\x02"),
    /* An address block shorter than its family needs. */
    BAD2(SIG "\x21\x11\x00\x08" "\x7f\x00\x00\x01" "\x7f\x00\x00\x01"),
    BAD2(SIG "\x21\x21\x00\x0c"
         "\x7f\x00\x00\x01" "\x7f\x00\x00\x01" "\x00\x01" "\x00\x02"),
    /* Longer than we take (16 + 2048). */
    BAD2(SIG "\x21\x11\x08\x01"),
};

static void
test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        const struct invalid_case *c = &invalid[i];
        struct proxy_hdr h;
        int rc = proxy_parse(c->v, (const uint8_t *)c->bytes, c->len, &h);

        if (rc != -1)
            fail_msg("case %zu: got %d, want -1", i, rc);
        assert_int_equal(proxy_want(c->v, (const uint8_t *)c->bytes,
                                    c->len),
                         0);
    }
}

/* A version 1 line is refused once 107 bytes hold no CRLF, not before;
 * refused as soon as the first byte is not "P". */
static void
test_v1_limits(void **state)
{
    uint8_t line[PROXY_V1_MAX + 1];
    struct proxy_hdr h;

    (void)state;
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', sizeof(line) - 14);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V1, line, 106, &h), 0);
    assert_int_equal(proxy_want(CONFIG_PROXY_V1, line, 106), 1);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V1, line, 107, &h), -1);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V1, line, 108, &h), -1);
    /* 105 bytes and CRLF: 107 in all, the longest line. */
    line[105] = '\r';
    line[106] = '\n';
    assert_int_equal(proxy_parse(CONFIG_PROXY_V1, line, 107, &h), 107);
    assert_true(h.local);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V1, (const uint8_t *)"G", 1,
                                 &h),
                     -1);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V2, (const uint8_t *)"\r", 1,
                                 &h),
                     0);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V2, (const uint8_t *)"P", 1,
                                 &h),
                     -1);
    assert_int_equal(proxy_parse(CONFIG_PROXY_NONE,
                                 (const uint8_t *)"PROXY", 5, &h),
                     -1);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V1, line, 0, &h), 0);
}

/* Version 2's length field: up to 2048 address and TLV bytes taken. */
static void
test_v2_limits(void **state)
{
    static uint8_t hdr[16 + PROXY_V2_ADDR_MAX + 1];
    struct proxy_hdr h;

    (void)state;
    memcpy(hdr, SIG, 12);
    hdr[12] = 0x21;
    hdr[13] = 0x11;
    hdr[14] = PROXY_V2_ADDR_MAX >> 8;
    hdr[15] = PROXY_V2_ADDR_MAX & 0xff;
    memcpy(hdr + 16, "\x7f\x00\x00\x05\x7f\x00\x00\x01\x00\x50\x00\x19", 12);
    assert_int_equal(proxy_want(CONFIG_PROXY_V2, hdr, 16),
                     PROXY_V2_ADDR_MAX);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V2, hdr, 16 + 12, &h), 0);
    assert_int_equal(proxy_parse(CONFIG_PROXY_V2, hdr, sizeof(hdr), &h),
                     16 + PROXY_V2_ADDR_MAX);
    check_addr(&h.src, "127.0.0.5", 80, 0);
    hdr[15]++;
    assert_int_equal(proxy_parse(CONFIG_PROXY_V2, hdr, 16, &h), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_v1_limits),
        cmocka_unit_test(test_v2_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
