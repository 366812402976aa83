/*
 * Compatibility profiles (src/posternd/profile.c): the header section that
 * add_missing_headers holds back and what it adds (RFC 6409 §8.2, §8.3),
 * the names of the exceptions in the log, and what `posternd -t` says of
 * each profile, warnings included.
 */
#include "testutil.h"

#include "config.h"
#include "header.h"
#include "profile.h"

#define DATE "Mon, 07 Dec 2026 06:00:00 +0000"
#define MSGID "<q1@mail.example.test>"
#define ADDED "Date: " DATE "\r\nMessage-ID: " MSGID "\r\n"

/*
 * Feed msg line by line as the session passes DATA on (each line with its
 * CRLF), hold back what profile_hdr_classify() says is the header
 * section, fix it at its end (or at the end of the message), and pass
 * the rest through: the message as stored after the Received header.
 */
static void
run_message(const char *msg, struct pst_buf *out, unsigned *added)
{
    struct pst_buf held;
    size_t off = 0, len = strlen(msg);
    int holding = 1;

    *added = 0;
    pst_buf_init(&held, PROFILE_HDR_MAX, 0);
    while (off < len) {
        const char *nl = memchr(msg + off, '\n', len - off);
        size_t n = nl != NULL ? (size_t)(nl - (msg + off)) + 1 : len - off;
        const uint8_t *line = (const uint8_t *)msg + off;

        off += n;
        if (!holding) {
            assert_rc(pst_buf_append(out, line, n), 0);
            continue;
        }
        assert_rc(pst_buf_append(&held, line, n), 0);
        if (profile_hdr_classify(line, n, held.len - n) == PROFILE_HDR_END) {
            assert_rc(profile_hdr_fix(held.data, held.len, DATE, MSGID, out,
                                      added), 0);
            holding = 0;
        }
    }
    if (holding)
        assert_rc(profile_hdr_fix(held.data, held.len, DATE, MSGID, out,
                                  added), 0);
    pst_buf_clear(&held);
}

static void
test_hdr_fix(void **state)
{
    static const struct {
        const char *msg;
        const char *want;
        unsigned added;
    } rows[] = {
        /* Both missing: before the empty line. */
        {"From: <a@x>\r\nSubject: s\r\n\r\nbody\r\n",
         "From: <a@x>\r\nSubject: s\r\n" ADDED "\r\nbody\r\n",
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        /* Both present: nothing changes, byte for byte. */
        {"Date: x\r\nFrom: <a@x>\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n",
         "Date: x\r\nFrom: <a@x>\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n", 0},
        /* One of them; names are case-insensitive (RFC 5322 §1.2.2). */
        {"DATE: x\r\nSubject: s\r\n\r\nb\r\n",
         "DATE: x\r\nSubject: s\r\nMessage-ID: " MSGID "\r\n\r\nb\r\n",
         HEADER_HAS_MESSAGE_ID},
        {"message-id: <1@x>\r\n\r\n",
         "message-id: <1@x>\r\nDate: " DATE "\r\n\r\n", HEADER_HAS_DATE},
        /* A folded field holds its continuation lines; a body line that
         * looks like a field is not looked at. */
        {"Subject: a\r\n b\r\n\tc\r\n\r\nDate: no\r\nMessage-ID: no\r\n",
         "Subject: a\r\n b\r\n\tc\r\n" ADDED
         "\r\nDate: no\r\nMessage-ID: no\r\n",
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        /* No header section: the body starts at once, the fields go
         * first. */
        {"hello\r\nDate: no\r\n", ADDED "hello\r\nDate: no\r\n",
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        {" indented\r\n", ADDED " indented\r\n",
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        {"\r\nbody\r\n", ADDED "\r\nbody\r\n",
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        /* The message ends in its header section: at the end. */
        {"Subject: s\r\n", "Subject: s\r\n" ADDED,
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        {"", ADDED, HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
        /* A field whose value is empty is still a field. */
        {"X:\r\n\r\n", "X:\r\n" ADDED "\r\n",
         HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct pst_buf out;
        unsigned added = 99;

        pst_buf_init(&out, 4096, 0);
        run_message(rows[i].msg, &out, &added);
        if (out.len != strlen(rows[i].want) ||
            memcmp(out.data, rows[i].want, out.len) != 0)
            fail_msg("row %zu: got \"%.*s\", want \"%s\"", i, (int)out.len,
                     (const char *)out.data, rows[i].want);
        if (added != rows[i].added)
            fail_msg("row %zu: got added %#x, want %#x", i, added,
                     rows[i].added);
        pst_buf_clear(&out);
    }
}

static void
test_hdr_classify(void **state)
{
    static const struct {
        const char *line;
        size_t held;
        enum profile_hdr_line want;
    } rows[] = {
        {"Subject: x\r\n", 0, PROFILE_HDR_FIELD},
        {"Subject : x\r\n", 0, PROFILE_HDR_FIELD}, /* obs-optional */
        {"\r\n", 0, PROFILE_HDR_END},
        {"\r\n", 40, PROFILE_HDR_END},
        {" more\r\n", 12, PROFILE_HDR_FIELD},
        {"\tmore\r\n", 12, PROFILE_HDR_FIELD},
        {" more\r\n", 0, PROFILE_HDR_END},
        {"no colon here\r\n", 0, PROFILE_HDR_END},
        {":no name\r\n", 0, PROFILE_HDR_END},
        {"Bad name: x\r\n", 0, PROFILE_HDR_END},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum profile_hdr_line got = profile_hdr_classify(
            (const uint8_t *)rows[i].line, strlen(rows[i].line),
            rows[i].held);

        if (got != rows[i].want)
            fail_msg("row %zu: got %d, want %d", i, got, rows[i].want);
    }
}

static void
test_used_format(void **state)
{
    char buf[PROFILE_USED_MAX];

    (void)state;
    assert_string_equal(profile_used_format(0, buf, sizeof(buf)), "");
    assert_string_equal(profile_used_format(PROFILE_USED_BARE_LF |
                                                PROFILE_USED_HELO_AUTH,
                                            buf, sizeof(buf)),
                        "helo_auth,bare_lf");
    assert_string_equal(
        profile_used_format(PROFILE_USED_TLS_MIN_VERSION |
                                PROFILE_USED_AUTH_BEFORE_TLS |
                                PROFILE_USED_HELO_AUTH |
                                PROFILE_USED_BARE_LF |
                                PROFILE_USED_LONG_LINES |
                                PROFILE_USED_ADD_MISSING_HEADERS,
                            buf, sizeof(buf)),
        "tls_min_version,auth_before_tls,helo_auth,bare_lf,long_lines,"
        "add_missing_headers");
    /* The session's bits are the library's. */
    assert_int_equal(PROFILE_USED_HELO_AUTH, PST_SMTP_COMPAT_HELO_AUTH);
    assert_int_equal(PROFILE_USED_BARE_LF, PST_SMTP_COMPAT_BARE_LF);
    assert_int_equal(PROFILE_USED_LONG_LINES, PST_SMTP_COMPAT_LONG_LINES);
}

/* What `posternd -t` prints for the profiles of text (after the global
 * keys and two listeners), stdout and stderr apart. */
static void
report(const char *profiles, char **out, char **warn, unsigned *nwarn)
{
    static const char head[] =
        "hostname = mail.example.test\n"
        "userdb = passwd-file:/u\n"
        "mailbox = maildir:/m/%d/%n\n"
        "spool = /s\n"
        "tls_cert = /c\ntls_key = /k\n"
        "[listener lan]\naddress = 127.0.0.1:2525\n"         /* 7, 8 */
        "[listener open]\naddress = 127.0.0.1:2526\n"        /* 9, 10 */
        "tls = none\nauth_before_tls = all\n";              /* 11, 12 */
    char text[4096], err[CONFIG_ERR_MAX];
    size_t olen, wlen;
    struct config *c;
    FILE *o, *w;

    snprintf(text, sizeof(text), "%s%s", head, profiles);
    if (config_parse("p.conf", text, strlen(text), &c, err,
                     sizeof(err)) != 0)
        fail_msg("got error \"%s\", want none", err);
    o = open_memstream(out, &olen);
    w = open_memstream(warn, &wlen);
    assert_non_null(o);
    assert_non_null(w);
    *nwarn = profile_report(c, o, w);
    fclose(o);
    fclose(w);
    config_free(c);
}

static void
test_report(void **state)
{
    char *out, *warn;
    unsigned n;

    (void)state;
    /* DESIGN.md's profile: narrow networks, no warning. */
    report("[profile scanners]\n"                                  /* 13 */
           "networks = 192.168.10.0/24 2001:db8:10::/64\n"
           "listeners = lan\n"
           "tls_min_version = TLSv1\n"
           "auth_before_tls = all\n"
           "helo_auth = yes\n"
           "bare_lf = normalize\n"
           "long_lines = fold\n"
           "add_missing_headers = yes\n"
           "[profile quiet]\n"                                     /* 22 */
           "networks = 10.0.0.0/8\n",
           &out, &warn, &n);
    assert_string_equal(out,
        "posternd: profile scanners (line 13): 192.168.10.0/24 "
        "2001:db8:10::/64 on lan: tls_min_version = TLSv1, "
        "auth_before_tls = all, helo_auth = yes, bare_lf = normalize, "
        "long_lines = fold, add_missing_headers = yes\n"
        "posternd: profile quiet (line 22): 10.0.0.0/8 on every listener: "
        "no exceptions\n");
    assert_string_equal(warn, "");
    assert_int_equal(n, 0);
    free(out);
    free(warn);

    /* Wide networks: a warning for each, and for each thing relaxed. */
    report("[profile wide]\n"                                      /* 13 */
           "networks = 10.0.0.0/8 192.168.0.0/16 ::/0 "
           "2001:db8::/47 2001:db8:1::/48 ::ffff:10.0.0.0/104\n"
           "tls_min_version = TLSv1.1\n"
           "auth_before_tls = all\n"
           "[profile everyone]\n"                                  /* 17 */
           "networks = 0.0.0.0/0\n"
           "listeners = lan\n"
           "auth_before_tls = all\n",
           &out, &warn, &n);
    assert_string_equal(out,
        "posternd: profile wide (line 13): 10.0.0.0/8 192.168.0.0/16 ::/0 "
        "2001:db8::/47 2001:db8:1::/48 ::ffff:10.0.0.0/104 on every "
        "listener: tls_min_version = TLSv1.1, auth_before_tls = all\n"
        "posternd: profile everyone (line 17): 0.0.0.0/0 on lan: "
        "auth_before_tls = all\n");
    assert_string_equal(warn,
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "tls_min_version (TLSv1.1) for 10.0.0.0/8: wider than a /16\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "tls_min_version (TLSv1.1) for ::/0: every IPv6 address\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "tls_min_version (TLSv1.1) for 2001:db8::/47: wider than a /48\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "tls_min_version (TLSv1.1) for ::ffff:10.0.0.0/104: wider than a "
        "/16\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "auth_before_tls (all: passwords before TLS) for 10.0.0.0/8: "
        "wider than a /16\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "auth_before_tls (all: passwords before TLS) for ::/0: every IPv6 "
        "address\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "auth_before_tls (all: passwords before TLS) for 2001:db8::/47: "
        "wider than a /48\n"
        "posternd: p.conf:13: warning: [profile wide] relaxes "
        "auth_before_tls (all: passwords before TLS) for "
        "::ffff:10.0.0.0/104: wider than a /16\n"
        "posternd: p.conf:17: warning: [profile everyone] relaxes "
        "auth_before_tls (all: passwords before TLS) for 0.0.0.0/0: every "
        "IPv4 address\n");
    assert_int_equal(n, 9);
    free(out);
    free(warn);

    /* Nothing relaxed where the listener says as much already, or where
     * the version is not below TLSv1.2. */
    report("[profile same]\n"
           "networks = 0.0.0.0/0\n"
           "listeners = open\n"
           "auth_before_tls = all\n"
           "[profile strict]\n"
           "networks = ::/0\n"
           "listeners = lan\n"
           "tls_min_version = TLSv1.3\n"
           "auth_before_tls = none\n",
           &out, &warn, &n);
    assert_string_equal(warn, "");
    assert_int_equal(n, 0);
    free(out);
    free(warn);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_fix),
        cmocka_unit_test(test_hdr_classify),
        cmocka_unit_test(test_used_format),
        cmocka_unit_test(test_report),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
