/*
 * The header section (src/posternd/header.c): where it ends and what it
 * has, the missing fields a submission server adds (RFC 6409 §8), and the
 * sender rewrite for a smarthost that sends only as its own mailbox.
 */
#include "testutil.h"

#include "header.h"

static void
test_scan(void **state)
{
    static const struct {
        const char *msg;
        size_t end;
        unsigned fields;
    } rows[] = {
        {"From: a@b\r\nDate: x\r\n\r\nbody\r\n", 22,
         HEADER_HAS_FROM | HEADER_HAS_DATE},
        /* Case-insensitive names, folded values, obs WSP before ":". */
        {"message-id: <1@x>\r\nSUBJECT: long\r\n\tfolded\r\n"
         "reply-to : c@d\r\n\r\nb", 61,
         HEADER_HAS_MESSAGE_ID | HEADER_HAS_REPLY_TO},
        {"Sender: s@x\r\nFrom: f@x\r\n\r\n", 26,
         HEADER_HAS_SENDER | HEADER_HAS_FROM},
        /* No header section: the body starts at once. */
        {"just text\r\nmore\r\n", 0, 0},
        {"\r\nbody\r\n", 2, 0},
        /* Headers only, no empty line. */
        {"Date: x\r\n", 9, HEADER_HAS_DATE},
        /* A field name is not a prefix: "Dates" and "From-x" are others. */
        {"Dates: x\r\nFrom-x: y\r\n\r\n", 23, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        unsigned f = 99;
        size_t end = header_scan((const uint8_t *)rows[i].msg,
                                 strlen(rows[i].msg), &f);

        if (end != rows[i].end || f != rows[i].fields)
            fail_msg("row %zu: got end %zu fields %#x, want %zu %#x", i, end,
                     f, rows[i].end, rows[i].fields);
    }
}

static void
test_add_missing(void **state)
{
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 1024, 0);
    assert_rc(header_add_missing(0, "Mon, 7 Dec 2026 06:00:00 +0000",
                                 "<q1@mail.example.test>", &b), 0);
    assert_buf_str(&b, "Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n"
                       "Message-ID: <q1@mail.example.test>\r\n");
    pst_buf_reset(&b);
    assert_rc(header_add_missing(HEADER_HAS_DATE, "d", "<m>", &b), 0);
    assert_buf_str(&b, "Message-ID: <m>\r\n");
    pst_buf_reset(&b);
    assert_rc(header_add_missing(HEADER_HAS_DATE | HEADER_HAS_MESSAGE_ID,
                                 "d", "<m>", &b), 0);
    assert_int_equal(b.len, 0);
    pst_buf_clear(&b);
}

static void
test_rewrite_sender(void **state)
{
    static const struct {
        const char *hdr;
        const char *want;
    } rows[] = {
        /* The display name and address go to Reply-To, folding kept. */
        {"From: Scanner 3rd floor\r\n <scan@dev.local>\r\nSubject: s\r\n"
         "\r\n",
         "From: <box@contoso.com>\r\nSubject: s\r\n"
         "Reply-To: Scanner 3rd floor\r\n <scan@dev.local>\r\n\r\n"},
        /* An existing Reply-To stays; Sender goes. */
        {"Sender: x@y\r\nReply-To: r@y\r\nfrom: a@y\r\n\r\n",
         "Reply-To: r@y\r\nFrom: <box@contoso.com>\r\n\r\n"},
        /* No From at all: one is added. */
        {"Subject: s\r\n\r\n",
         "Subject: s\r\nFrom: <box@contoso.com>\r\n\r\n"},
        /* Two From fields (malformed): one From, the first's value kept. */
        {"From: a@y\r\nFrom: b@y\r\n\r\n",
         "From: <box@contoso.com>\r\nReply-To: a@y\r\n\r\n"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct pst_buf b;

        pst_buf_init(&b, 4096, 0);
        assert_rc(header_rewrite_sender((const uint8_t *)rows[i].hdr,
                                        strlen(rows[i].hdr),
                                        "box@contoso.com", &b), 0);
        if (b.len != strlen(rows[i].want) ||
            memcmp(b.data, rows[i].want, b.len) != 0)
            fail_msg("row %zu: got\n%s\nwant\n%s", i, (char *)b.data,
                     rows[i].want);
        pst_buf_clear(&b);
    }
}

static void
test_rewrite_refused(void **state)
{
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 4096, 0);
    assert_rc(header_rewrite_sender((const uint8_t *)"From: a\r\n\r\n", 11,
                                    "x\r\nBcc: evil@x", &b), PST_EINVAL);
    assert_rc(header_rewrite_sender((const uint8_t *)"From: a\r\n\r\n", 11,
                                    "", &b), PST_EINVAL);
    assert_int_equal(b.len, 0);
    pst_buf_clear(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_add_missing),
        cmocka_unit_test(test_rewrite_sender),
        cmocka_unit_test(test_rewrite_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
