/*
 * SMTP parsing pieces: command split, paths (RFC 5321 §4.1.2), domains,
 * xtext (RFC 3461 §4), MAIL parameters (RFC 1870, RFC 6152, RFC 4954 §5),
 * reply checks, SASL failure replies (RFC 4954 §4, §6) and transcript
 * redaction.
 */
#include <postern/smtp.h>
#include <postern/smtp_reply.h>

#include "testutil.h"

#include "../../lib/smtp/smtp_int.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static void
test_split(void **state)
{
    static const struct {
        const char *line;
        size_t verb_len;
        const char *arg;
    } v[] = {
        {"MAIL FROM:<a@b.example>", 4, "FROM:<a@b.example>"},
        {"NOOP", 4, ""},
        {"NOOP   x y  ", 4, "x y"},
        {"STARTTLS ", 8, ""},
        {"", 0, ""},
        {"   ", 0, ""},
        {" NOOP", 0, "NOOP"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        const uint8_t *arg;
        size_t vlen, alen;

        pst__smtp_split(S(v[i].line), &vlen, &arg, &alen);
        if (vlen != v[i].verb_len)
            fail_msg("\"%s\": got verb length %zu, want %zu", v[i].line,
                     vlen, v[i].verb_len);
        assert_bytes_equal(arg, alen, v[i].arg, strlen(v[i].arg));
    }
    assert_int_equal(pst__smtp_word_eq(S("eHlO"), "EHLO"), 1);
    assert_int_equal(pst__smtp_word_eq(S("EHL"), "EHLO"), 0);
    assert_int_equal(pst__smtp_word_eq(S("EHLOS"), "EHLO"), 0);
    assert_int_equal(pst__smtp_word_eq(S("EHL0"), "EHLO"), 0);
}

static void
test_paths(void **state)
{
    static const struct {
        const char *in;
        unsigned flags;
        int rc;
        const char *addr;   /* on success */
        size_t used;        /* on success */
    } v[] = {
        {"<a@b.example>", 0, 0, "a@b.example", 13},
        {"<a@b.example> SIZE=1", 0, 0, "a@b.example", 13},
        {"<>", PST__PATH_NULL_OK, 0, "", 2},
        {"<>", 0, PST_ESYNTAX, NULL, 0},
        {"<> SIZE=10", PST__PATH_NULL_OK, 0, "", 2},
        /* RFC 5321 §4.1.1.3: source routes accepted and dropped. */
        {"<@r1.example,@r2.example:a@b.example>", 0, 0, "a@b.example", 37},
        {"<@r1.example:a@b.example>", 0, 0, "a@b.example", 25},
        {"<@r1.example,a@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<@:a@b.example>", 0, PST_ESYNTAX, NULL, 0},
        /* Local parts. */
        {"<first.last+tag@b.example>", 0, 0, "first.last+tag@b.example", 26},
        {"<!#$%&'*+-/=?^_`{|}~@b.example>", 0, 0,
         "!#$%&'*+-/=?^_`{|}~@b.example", 31},
        {"<\"john doe\"@b.example>", 0, 0, "\"john doe\"@b.example", 22},
        {"<\"a\\\"b\"@b.example>", 0, 0, "\"a\\\"b\"@b.example", 18},
        {"<\"unterminated@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<.a@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a.@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a..b@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a b@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a(b)@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<caf\xc3\xa9@b.example>", 0, PST_ESYNTAX, NULL, 0},
        /* RFC 6531 §3.3 (SMTPUTF8): UTF8-non-ascii in atext, qtextSMTP
         * and sub-domains, well-formed UTF-8 only (RFC 3629). */
        {"<caf\xc3\xa9@b.example>", PST__PATH_UTF8, 0,
         "caf\xc3\xa9@b.example", 17},
        {"<\"j\xc3\xb6rg m\"@b.example>", PST__PATH_UTF8, 0,
         "\"j\xc3\xb6rg m\"@b.example", 21},
        {"<a@b\xc3\xbc""cher.example>", PST__PATH_UTF8, 0,
         "a@b\xc3\xbc""cher.example", 19},
        {"<a@b\xc3\xbc""cher.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<\xe6\x97\xa5@[192.0.2.1]>", PST__PATH_UTF8, 0,
         "\xe6\x97\xa5@[192.0.2.1]", 17},
        {"<a@[192.0.2.\xc3\xa9]>", PST__PATH_UTF8, PST_ESYNTAX, NULL, 0},
        {"<caf\xc3@b.example>", PST__PATH_UTF8, PST_ESYNTAX, NULL, 0},
        {"<\xc0\xaf@b.example>", PST__PATH_UTF8, PST_ESYNTAX, NULL, 0},
        {"<\xed\xa0\x80@b.example>", PST__PATH_UTF8, PST_ESYNTAX, NULL, 0},
        {"<\xff@b.example>", PST__PATH_UTF8, PST_ESYNTAX, NULL, 0},
        {"<a@\xc3\xa9>", PST__PATH_UTF8, 0, "a@\xc3\xa9", 6},
        {"<a b@b.example>", PST__PATH_UTF8, PST_ESYNTAX, NULL, 0},
        /* A local part alone, as sendmail's callers give it. */
        {"<root>", PST__PATH_LOCAL_OK, 0, "root", 6},
        {"<root>", 0, PST_ESYNTAX, NULL, 0},
        {"root SIZE=1", PST__PATH_LOCAL_OK, 0, "root", 4},
        {"<\"a b\">", PST__PATH_LOCAL_OK, 0, "\"a b\"", 7},
        {"<a.>", PST__PATH_LOCAL_OK, PST_ESYNTAX, NULL, 0},
        {"<root@>", PST__PATH_LOCAL_OK, PST_ESYNTAX, NULL, 0},
        {"<j\xc3\xb6rg>", PST__PATH_LOCAL_OK | PST__PATH_UTF8, 0,
         "j\xc3\xb6rg", 7},
        {"<a@b@c.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<@b.example>", 0, PST_ESYNTAX, NULL, 0},
        /* Domains and address literals (RFC 5321 §4.1.3). */
        {"<a@b>", 0, 0, "a@b", 5},
        {"<a@b-c.example>", 0, 0, "a@b-c.example", 15},
        {"<a@-b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@b-.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@b.example.>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@b_c.example>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@[192.0.2.1]>", 0, 0, "a@[192.0.2.1]", 15},
        {"<a@[192.0.2.256]>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@[192.0.2]>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@[IPv6:2001:db8::1]>", 0, 0, "a@[IPv6:2001:db8::1]", 22},
        {"<a@[IPv6:2001:zz8::1]>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@[x-tag:anything]>", 0, 0, "a@[x-tag:anything]", 20},
        {"<a@[]>", 0, PST_ESYNTAX, NULL, 0},
        {"<a@[1.2.3.4>", 0, PST_ESYNTAX, NULL, 0},
        /* RFC 5321 §4.1.1.3: <Postmaster> for RCPT only. */
        {"<Postmaster>", PST__PATH_POSTMASTER_OK, 0, "Postmaster", 12},
        {"<postMASTER>", PST__PATH_POSTMASTER_OK, 0, "postMASTER", 12},
        {"<Postmaster>", 0, PST_ESYNTAX, NULL, 0},
        {"<Postmasterx>", PST__PATH_POSTMASTER_OK, PST_ESYNTAX, NULL, 0},
        {"<postmaster@b.example>", PST__PATH_POSTMASTER_OK, 0,
         "postmaster@b.example", 22},
        /* Without brackets (old clients). */
        {"a@b.example", 0, 0, "a@b.example", 11},
        {"a@b.example SIZE=5", 0, 0, "a@b.example", 11},
        {"a@b.example>", 0, PST_ESYNTAX, NULL, 0},
        {"", 0, PST_ESYNTAX, NULL, 0},
        {"<", 0, PST_ESYNTAX, NULL, 0},
        {"<a@b.example", 0, PST_ESYNTAX, NULL, 0},
        {"<a@b.example>>", 0, 0, "a@b.example", 13},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_buf addr;
        size_t used = 99;
        int rc;

        pst_buf_init(&addr, PST_SMTP_MAX_PATH, 0);
        rc = pst__smtp_parse_path(S(v[i].in), v[i].flags, &used, &addr);
        if (rc != v[i].rc)
            fail_msg("\"%s\": got %s, want %s", v[i].in, pst_errname(rc),
                     pst_errname(v[i].rc));
        if (rc == 0) {
            assert_bytes_equal(addr.data, addr.len, v[i].addr,
                               strlen(v[i].addr));
            if (used != v[i].used)
                fail_msg("\"%s\": got used %zu, want %zu", v[i].in, used,
                         v[i].used);
        }
        pst_buf_clear(&addr);
    }
}

/* RFC 5321 §4.5.3.1: local part 64, domain 255, path 256 octets. */
static void
test_path_limits(void **state)
{
    struct pst_buf in, addr;
    size_t used;

    (void)state;
    pst_buf_init(&in, 1024, 0);
    pst_buf_init(&addr, PST_SMTP_MAX_PATH, 0);
    /* Local part of 64: fine; 65: too long. */
    pst_buf_printf(&in, "<%064d@b.example>", 0);
    assert_rc(pst__smtp_parse_path(in.data, in.len, 0, &used, &addr), 0);
    pst_buf_reset(&in);
    pst_buf_reset(&addr);
    pst_buf_printf(&in, "<%065d@b.example>", 0);
    assert_rc(pst__smtp_parse_path(in.data, in.len, 0, &used, &addr),
              PST_ELIMIT);
    /* 1 + 64 + 1 + 189 + 1 = 256 octets; one more is too long. */
    pst_buf_reset(&in);
    pst_buf_printf(&in, "<%064d@%063d.%063d.%061d>", 0, 0, 0, 0);
    assert_int_equal(in.len, 256);
    assert_rc(pst__smtp_parse_path(in.data, in.len, 0, &used, &addr), 0);
    assert_int_equal(used, 256);
    pst_buf_reset(&in);
    pst_buf_reset(&addr);
    pst_buf_printf(&in, "<%064d@%063d.%063d.%062d>", 0, 0, 0, 0);
    assert_rc(pst__smtp_parse_path(in.data, in.len, 0, &used, &addr),
              PST_ELIMIT);
    /* Without brackets the brackets still count. */
    pst_buf_reset(&in);
    pst_buf_printf(&in, "%064d@%063d.%063d.%062d", 0, 0, 0, 0);
    assert_rc(pst__smtp_parse_path(in.data, in.len, 0, &used, &addr),
              PST_ELIMIT);
    /* A label of 64 is not a label. */
    pst_buf_reset(&in);
    pst_buf_printf(&in, "<a@%064d.example>", 0);
    assert_rc(pst__smtp_parse_path(in.data, in.len, 0, &used, &addr),
              PST_ESYNTAX);
    pst_buf_clear(&in);
    pst_buf_clear(&addr);
}

static void
test_domains(void **state)
{
    static const struct {
        const char *in;
        int lenient;
        int ok;
    } v[] = {
        {"client.example", 0, 1},
        {"localhost", 0, 1},
        {"192.0.2.1", 0, 1},
        {"[192.0.2.1]", 0, 1},
        {"[IPv6:::1]", 0, 1},
        {"printer_01.lan", 1, 1},
        {"printer_01.lan", 0, 0},
        {"", 1, 0},
        {"a..b", 1, 0},
        {".a", 1, 0},
        {"a.", 1, 0},
        {"-a", 1, 0},
        {"a b", 1, 0},
        {"a;b", 1, 0},
        {"[192.0.2.1", 1, 0},
        {"[192.0.2.1]x", 1, 0},
        {"a\xc3\xa9", 1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (pst__smtp_domain_valid(S(v[i].in), v[i].lenient) != v[i].ok)
            fail_msg("\"%s\" lenient=%d: got %d, want %d", v[i].in,
                     v[i].lenient, !v[i].ok, v[i].ok);
}

static void
test_xtext(void **state)
{
    static const struct {
        const char *in;
        int ok;
    } v[] = {
        {"tim+40example.test", 1},   /* RFC 3461 §4: "@" is +40 */
        {"a+2Bb", 1},
        {"a+2bb", 0},                /* hex digits are uppercase */
        {"a+2", 0},
        {"a+", 0},
        {"a=b", 0},
        {"a b", 0},
        {"", 0},
        {"!~", 1},
        {"a\x7f", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (pst__smtp_xtext_valid(S(v[i].in)) != v[i].ok)
            fail_msg("\"%s\": got %d, want %d", v[i].in, !v[i].ok,
                     v[i].ok);
}

static void
test_params(void **state)
{
    static const struct {
        const char *in;
        int mail;
        int rc;
        int has_size;
        uint64_t size;
        int body_8bit;
    } v[] = {
        {"", 1, 0, 0, 0, 0},
        {"   ", 1, 0, 0, 0, 0},
        {"SIZE=1000", 1, 0, 1, 1000, 0},
        {"size=0", 1, 0, 1, 0, 0},
        {"SIZE=18446744073709551615", 1, 0, 1, UINT64_MAX, 0},
        {"SIZE=99999999999999999999", 1, 0, 1, UINT64_MAX, 0},
        {"SIZE=999999999999999999999", 1, PST_ESYNTAX, 0, 0, 0},
        {"SIZE=", 1, PST_ESYNTAX, 0, 0, 0},
        {"SIZE", 1, PST_ESYNTAX, 0, 0, 0},
        {"SIZE=-1", 1, PST_ESYNTAX, 0, 0, 0},
        {"SIZE=1 SIZE=1", 1, PST_ESYNTAX, 0, 0, 0},
        {"BODY=8BITMIME", 1, 0, 0, 0, 1},
        {"body=7bit", 1, 0, 0, 0, 0},
        {"BODY=BINARYMIME", 1, PST_ESYNTAX, 0, 0, 0},
        {"BODY=7BIT BODY=7BIT", 1, PST_ESYNTAX, 0, 0, 0},
        {"AUTH=<>", 1, 0, 0, 0, 0},
        {"AUTH=tim+40example.test", 1, 0, 0, 0, 0},
        {"AUTH=", 1, PST_ESYNTAX, 0, 0, 0},
        {"AUTH=a+zz", 1, PST_ESYNTAX, 0, 0, 0},
        {"AUTH=<> AUTH=<>", 1, PST_ESYNTAX, 0, 0, 0},
        {"SIZE=5  BODY=8BITMIME  AUTH=<>", 1, 0, 1, 5, 1},
        {"X-FOO", 1, PST_ENOTSUP, 0, 0, 0},
        {"X-FOO=bar", 1, PST_ENOTSUP, 0, 0, 0},
        {"SMTPUTF8", 1, PST_ENOTSUP, 0, 0, 0},
        {"=x", 1, PST_ESYNTAX, 0, 0, 0},
        {"-X=1", 1, PST_ESYNTAX, 0, 0, 0},
        {"X=a=b", 1, PST_ESYNTAX, 0, 0, 0},
        {"NOTIFY=NEVER", 0, PST_ENOTSUP, 0, 0, 0},
        {"SIZE=1", 0, PST_ENOTSUP, 0, 0, 0},
        {"=", 0, PST_ESYNTAX, 0, 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst__smtp_mail_params mp;
        int rc = pst__smtp_parse_params(S(v[i].in), v[i].mail, &mp);

        if (rc != v[i].rc)
            fail_msg("\"%s\": got %s, want %s", v[i].in, pst_errname(rc),
                     pst_errname(v[i].rc));
        if (rc != 0)
            continue;
        assert_int_equal(mp.has_size, v[i].has_size);
        assert_true(mp.size == v[i].size);
        assert_int_equal(mp.body_8bit, v[i].body_8bit);
    }
}

static void
test_reply_checks(void **state)
{
    static const struct {
        const char *reply;
        char cls;
        int ok;
    } v[] = {
        {"550 5.1.1 No such user", '5', 1},
        {"451 4.3.0 Try later", '4', 1},
        {"451 4.3.0 Try later", '5', 0},
        {"550 ", '5', 1},
        {"550", '5', 0},
        {"550-5.1.1 continued", '5', 0},
        {"5x0 text", '5', 0},
        {"560 text", '5', 0},
        {"550 a\r\nRSET", '5', 0},
        {"550 caf\xc3\xa9", '5', 0},
        {"250 2.0.0 Ok", '5', 0},
    };
    char longer[PST__SMTP_MAX_REPLY + 2];

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (pst__smtp_reply_ok(v[i].reply, v[i].cls) != v[i].ok)
            fail_msg("\"%s\" class %c: got %d, want %d", v[i].reply,
                     v[i].cls, !v[i].ok, v[i].ok);
    assert_int_equal(pst__smtp_reply_ok(NULL, '5'), 0);
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    memcpy(longer, "550 ", 4);
    assert_int_equal(pst__smtp_reply_ok(longer, '5'), 0);
    longer[sizeof(longer) - 2] = '\0';
    assert_int_equal(pst__smtp_reply_ok(longer, '5'), 1);

    assert_int_equal(pst__smtp_printable("4ABC", 64, 1), 1);
    assert_int_equal(pst__smtp_printable("4A BC", 64, 1), 0);
    assert_int_equal(pst__smtp_printable("4A BC", 64, 0), 1);
    assert_int_equal(pst__smtp_printable("", 64, 0), 0);
    assert_int_equal(pst__smtp_printable(NULL, 64, 0), 0);
    assert_int_equal(pst__smtp_printable("abc", 2, 0), 0);
    assert_int_equal(pst__smtp_printable("a\tb", 64, 0), 0);
}

/* RFC 4954 §4 and §6, with the enhanced codes of RFC 3463. */
static void
test_auth_replies(void **state)
{
    static const struct {
        int err;
        const char *reply;
    } v[] = {
        {PST_EAUTH, "535 5.7.8 Authentication credentials invalid"},
        {PST_EPREP, "535 5.7.8 Authentication credentials invalid"},
        {PST_EPROTO, "501 5.5.2 Malformed authentication response"},
        {PST_ECANCEL, "501 5.7.0 Authentication cancelled"},
        {PST_ELIMIT, "500 5.5.6 Authentication Exchange line is too long"},
        {PST_EWEAK, "534 5.7.9 Authentication mechanism is too weak"},
        {PST_ETEMP, "454 4.7.0 Temporary authentication failure"},
        {PST_ENOMEM, "454 4.7.0 Temporary authentication failure"},
        {PST_ESTATE, "454 4.7.0 Temporary authentication failure"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_string_equal(pst__smtp_auth_reply(v[i].err), v[i].reply);
}

static void
test_redact(void **state)
{
    static const struct {
        const char *line;
        int cont;
        const char *want;
    } v[] = {
        {"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 0,
         "AUTH PLAIN ********"},
        {"auth login dGlt", 0, "auth login ********"},
        {"AUTH  PLAIN   x", 0, "AUTH  PLAIN ********"},
        {"AUTH PLAIN", 0, "AUTH PLAIN"},
        {"AUTH PLAIN ", 0, "AUTH PLAIN"},
        {"AUTH", 0, "AUTH"},
        {"dGFuc3RhYWZ0YW5zdGFhZg==", 1, "********"},
        {"", 1, "********"},
        {"*", 1, "********"},
        {"AUTHX PLAIN secret", 0, "AUTHX PLAIN secret"},
        {"MAIL FROM:<a@b.example>", 0, "MAIL FROM:<a@b.example>"},
        {"EHLO caf\xc3\xa9\x01", 0, "EHLO caf???"},
        {"AUTH PL\x01IN x", 0, "AUTH PL?IN ********"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_buf out;

        pst_buf_init(&out, 1024, 0);
        assert_rc(pst_smtp_redact(S(v[i].line), v[i].cont, &out), 0);
        assert_bytes_equal(out.data, out.len, v[i].want, strlen(v[i].want));
        pst_buf_clear(&out);
    }
    {
        struct pst_buf small;

        pst_buf_init(&small, 4, 0);
        assert_rc(pst_smtp_redact(S("x"), 1, &small), PST_ELIMIT);
        pst_buf_clear(&small);
    }
}

static void
test_reply_parse_line(void **state)
{
    /* Replies as RFC 5321 §4.2, RFC 2034 §4 and RFC 4954 §4-§6 print
     * them, and lines a client must refuse. */
    static const struct {
        const char *line;
        int rc;
        int code, more;
        const char *enhanced, *text;
    } v[] = {
        {"220 mail.example.test ESMTP ready", 0, 220, 0, "",
         "mail.example.test ESMTP ready"},
        {"250-mail.example.test", 0, 250, 1, "", "mail.example.test"},
        {"250-8BITMIME", 0, 250, 1, "", "8BITMIME"},
        {"250 2.1.5 Ok", 0, 250, 0, "2.1.5", "Ok"},
        {"235 2.7.0 Authentication Succeeded", 0, 235, 0, "2.7.0",
         "Authentication Succeeded"},
        {"535 5.7.8 Authentication credentials invalid", 0, 535, 0,
         "5.7.8", "Authentication credentials invalid"},
        {"550-5.1.1 first line", 0, 550, 1, "5.1.1", "first line"},
        {"454 4.7.0   spaces", 0, 454, 0, "4.7.0", "spaces"},
        {"250 2.1.5", 0, 250, 0, "2.1.5", ""},
        {"552 5.123.456 x", 0, 552, 0, "5.123.456", "x"},
        /* Not enhanced codes: text left whole. */
        {"550 2.1.1 class differs", 0, 550, 0, "", "2.1.1 class differs"},
        {"250 2.1.5x", 0, 250, 0, "", "2.1.5x"},
        {"250 2.1234.5 x", 0, 250, 0, "", "2.1234.5 x"},
        {"250 2..5 x", 0, 250, 0, "", "2..5 x"},
        {"250 2.1. x", 0, 250, 0, "", "2.1. x"},
        {"334 3.0.0", 0, 334, 0, "", "3.0.0"},
        {"354 End data with <CR><LF>.<CR><LF>", 0, 354, 0, "",
         "End data with <CR><LF>.<CR><LF>"},
        {"334 ", 0, 334, 0, "", ""},
        {"421", 0, 421, 0, "", ""},
        {"250-", 0, 250, 1, "", ""},
        {"250 tab\there", 0, 250, 0, "", "tab\there"},
        {"250 caf\xc3\xa9 \xe9t\xe9", 0, 250, 0, "",
         "caf\xc3\xa9 \xe9t\xe9"},
        /* Malformed. */
        {"", PST_EPROTO, 0, 0, "", ""},
        {"22 short", PST_EPROTO, 0, 0, "", ""},
        {"620 bad class", PST_EPROTO, 0, 0, "", ""},
        {"150 bad class", PST_EPROTO, 0, 0, "", ""},
        {"2x0 digits", PST_EPROTO, 0, 0, "", ""},
        {"220xno separator", PST_EPROTO, 0, 0, "", ""},
        {"220\tno separator", PST_EPROTO, 0, 0, "", ""},
        {"220 nul\x01 here", PST_EPROTO, 0, 0, "", ""},
        {"220 cr\r here", PST_EPROTO, 0, 0, "", ""},
        {"220 del\x7f here", PST_EPROTO, 0, 0, "", ""},
    };
    struct pst_smtp_reply_line rl;
    char *big;

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = pst_smtp_reply_parse_line(S(v[i].line), &rl);

        if (rc != v[i].rc)
            fail_msg("\"%s\": got %s, want %s", v[i].line, pst_errname(rc),
                     pst_errname(v[i].rc));
        if (rl.code != v[i].code || rl.more != v[i].more)
            fail_msg("\"%s\": got code %d more %d, want %d %d", v[i].line,
                     rl.code, rl.more, v[i].code, v[i].more);
        if (strcmp(rl.enhanced, v[i].enhanced) != 0)
            fail_msg("\"%s\": got enhanced \"%s\", want \"%s\"",
                     v[i].line, rl.enhanced, v[i].enhanced);
        assert_non_null(rl.text);
        assert_bytes_equal(rl.text, rl.text_len, v[i].text,
                           strlen(v[i].text));
    }
    /* 2046 octets without CRLF pass; one more does not. */
    big = malloc(PST_SMTP_REPLY_MAX_LINE);
    assert_non_null(big);
    memset(big, 'x', PST_SMTP_REPLY_MAX_LINE);
    memcpy(big, "250 ", 4);
    assert_rc(pst_smtp_reply_parse_line((const uint8_t *)big,
                                        PST_SMTP_REPLY_MAX_LINE - 2, &rl),
              0);
    assert_int_equal(rl.text_len, PST_SMTP_REPLY_MAX_LINE - 6);
    assert_rc(pst_smtp_reply_parse_line((const uint8_t *)big,
                                        PST_SMTP_REPLY_MAX_LINE - 1, &rl),
              PST_ELIMIT);
    free(big);
    assert_rc(pst_smtp_reply_parse_line(NULL, 0, &rl), PST_EPROTO);
    assert_rc(pst_smtp_reply_parse_line(NULL, 1, &rl), PST_EINVAL);
    assert_rc(pst_smtp_reply_parse_line(S("250 ok"), NULL), PST_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_path_limits),
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_reply_checks),
        cmocka_unit_test(test_auth_replies),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_reply_parse_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
