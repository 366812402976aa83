/*
 * Bounces (src/posternd/bounce.c): the RFC 3464 report byte for byte for
 * a fixed input, the status code taken from each kind of reply, and what
 * is refused.
 */
#include "testutil.h"

#include "bounce.h"

static void
test_status(void **state)
{
    static const struct {
        unsigned code;
        const char *reply;
        const char *want;
    } rows[] = {
        {550, "550 5.1.1 <bob@example.org>: user unknown", "5.1.1"},
        {550, "5.7.60 SMTP; Client does not have permissions", "5.7.60"},
        {554, "554 5.2.0 STOREDRV.Submission.Exception", "5.2.0"},
        {550, "no enhanced code here", "5.0.0"},
        /* An enhanced code of the wrong class is not believed. */
        {550, "550 4.1.1 odd", "5.0.0"},
        {451, "451 4.3.0 try later", "4.3.0"},
        {421, NULL, "4.0.0"},
        {0, NULL, "4.4.7"},
        {550, "550 5.1.10x", "5.0.0"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char got[16];

        bounce_status(rows[i].code, rows[i].reply, got);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("row %zu: got %s, want %s", i, got, rows[i].want);
    }
}

static const char headers[] =
    "Received: from scanner\r\n\tby mail.example.test\r\n"
    "From: <scan@example.test>\r\nSubject: scan 42\r\n\r\n";

static const struct bounce_rcpt rcpt[] = {
    {.addr = "bob@example.org", .code = 550,
     .reply = "550 5.1.1 <bob@example.org>: user unknown",
     .last_attempt = "Mon, 7 Dec 2026 06:00:05 +0000"},
    {.addr = "carol@example.org", .code = 0, .reply = NULL,
     .last_attempt = NULL},
};

static const struct bounce_info info = {
    .hostname = "mail.example.test",
    .queue_id = "0123456789ABCDEF0123",
    .sender = "scan@example.test",
    .arrival_date = "Mon, 7 Dec 2026 06:00:00 +0000",
    .date = "Mon, 7 Dec 2026 06:00:06 +0000",
    .message_id = "<b1@mail.example.test>",
    .boundary = "B0123/mail.example.test",
    .remote_mta = "smtp.example.org",
    .rcpt = rcpt,
    .nrcpt = 2,
    .headers = (const uint8_t *)headers,
    .headers_len = sizeof(headers) - 1,
};

static const char want[] =
    "From: Mail Delivery System <MAILER-DAEMON@mail.example.test>\r\n"
    "To: <scan@example.test>\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "Date: Mon, 7 Dec 2026 06:00:06 +0000\r\n"
    "Message-ID: <b1@mail.example.test>\r\n"
    "Auto-Submitted: auto-replied\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    "\tboundary=\"B0123/mail.example.test\"\r\n"
    "\r\n"
    "This is a MIME-encapsulated message.\r\n"
    "\r\n"
    "--B0123/mail.example.test\r\n"
    "Content-Description: Notification\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "This is the mail system at host mail.example.test.\r\n"
    "\r\n"
    "Your message could not be delivered to one or more recipients.\r\n"
    "It was accepted with queue id 0123456789ABCDEF0123; the details are "
    "below.\r\n"
    "\r\n"
    "<bob@example.org>: 550 5.1.1 <bob@example.org>: user unknown\r\n"
    "<carol@example.org>: delivery time expired\r\n"
    "\r\n"
    "--B0123/mail.example.test\r\n"
    "Content-Description: Delivery report\r\n"
    "Content-Type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; mail.example.test\r\n"
    "X-Postern-Queue-ID: 0123456789ABCDEF0123\r\n"
    "Arrival-Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n"
    "\r\n"
    "Final-Recipient: rfc822; bob@example.org\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns; smtp.example.org\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: user unknown\r\n"
    "Last-Attempt-Date: Mon, 7 Dec 2026 06:00:05 +0000\r\n"
    "\r\n"
    "Final-Recipient: rfc822; carol@example.org\r\n"
    "Action: failed\r\n"
    "Status: 4.4.7\r\n"
    "\r\n"
    "--B0123/mail.example.test\r\n"
    "Content-Description: Undelivered Message Headers\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "Received: from scanner\r\n\tby mail.example.test\r\n"
    "From: <scan@example.test>\r\nSubject: scan 42\r\n"
    "\r\n"
    "--B0123/mail.example.test--\r\n";

static void
test_compose(void **state)
{
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 65536, 0);
    assert_rc(bounce_compose(&info, &b), 0);
    assert_buf_str(&b, want);
    pst_buf_clear(&b);
}

static void
test_refused(void **state)
{
    struct pst_buf b;
    struct bounce_info i = info;

    (void)state;
    pst_buf_init(&b, 65536, 0);
    i.sender = ""; /* never a bounce of a bounce */
    assert_rc(bounce_compose(&i, &b), PST_EINVAL);
    i = info;
    i.nrcpt = 0;
    assert_rc(bounce_compose(&i, &b), PST_EINVAL);
    i = info;
    i.boundary = "bad\"quote";
    assert_rc(bounce_compose(&i, &b), PST_EINVAL);
    assert_int_equal(b.len, 0);
    pst_buf_clear(&b);
}

static void
test_hostile_reply(void **state)
{
    struct bounce_rcpt r = rcpt[0];
    struct bounce_info i = info;
    struct pst_buf b;

    (void)state;
    /* A smarthost's reply cannot add fields or parts to the report. */
    r.reply = "550 5.1.1 x\r\nContent-Type: text/html\r\n\r\n--B0123";
    i.rcpt = &r;
    i.nrcpt = 1;
    pst_buf_init(&b, 65536, 0);
    assert_rc(bounce_compose(&i, &b), 0);
    assert_non_null(strstr((char *)b.data,
                           "Diagnostic-Code: smtp; 550 5.1.1 x  Content-Type: "
                           "text/html    --B0123\r\n"));
    pst_buf_clear(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_compose),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_hostile_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
