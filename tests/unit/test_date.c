/*
 * src/common/date.c: RFC 5322 §3.3 dates.  The expected texts are the
 * dates of RFC 5322 Appendix A (their zones given as POSIX TZ strings, so
 * no time zone database is needed), with the day in the two-digit form
 * posternd and postern write.
 */
#include "testutil.h"

#include <time.h>

#include "date.h"

static void
set_tz(const char *tz)
{
    assert_int_equal(setenv("TZ", tz, 1), 0);
    tzset();
}

static void
test_rfc_dates(void **state)
{
    static const struct {
        const char *tz;   /* POSIX: the offset is west of UTC */
        time_t t;
        const char *want;
    } rows[] = {
        /* RFC 5322 A.1.1: "Date: Fri, 21 Nov 1997 09:55:06 -0600" */
        {"CST+06", 880127706, "Fri, 21 Nov 1997 09:55:06 -0600"},
        /* A.3: "Date: Fri, 21 Nov 1997 10:01:10 -0600" */
        {"CST+06", 880128070, "Fri, 21 Nov 1997 10:01:10 -0600"},
        /* A.1.2: "Date: Tue, 1 Jul 2003 10:52:37 +0200" (one-digit day;
         * ours has two: §3.3 day = 1*2DIGIT) */
        {"CEST-02", 1057049557, "Tue, 01 Jul 2003 10:52:37 +0200"},
        /* A.5's zone: -0330 (Newfoundland), minutes west */
        {"NST+03:30", 0, "Wed, 31 Dec 1969 20:30:00 -0330"},
        /* East of UTC by a fraction of an hour; the epoch */
        {"IST-05:30", 0, "Thu, 01 Jan 1970 05:30:00 +0530"},
        {"UTC0", 1704189600, "Tue, 02 Jan 2024 10:00:00 +0000"},
        {"UTC0", 951782400, "Tue, 29 Feb 2000 00:00:00 +0000"},
    };
    char buf[DATE_RFC5322_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        set_tz(rows[i].tz);
        assert_rc(date_rfc5322(rows[i].t, buf, sizeof(buf)), 0);
        if (strcmp(buf, rows[i].want) != 0)
            fail_msg("TZ=%s t=%lld: got \"%s\", want \"%s\"", rows[i].tz,
                     (long long)rows[i].t, buf, rows[i].want);
    }
}

static void
test_short_buffer(void **state)
{
    const char *want = "Tue, 02 Jan 2024 10:00:00 +0000";
    size_t len = strlen(want);
    char buf[DATE_RFC5322_MAX];

    (void)state;
    set_tz("UTC0");
    /* Exactly enough, then one byte short: refused, and empty. */
    assert_rc(date_rfc5322(1704189600, buf, len + 1), 0);
    assert_string_equal(buf, want);
    memset(buf, 'x', sizeof(buf));
    assert_rc(date_rfc5322(1704189600, buf, len), PST_ELIMIT);
    assert_string_equal(buf, "");
    assert_rc(date_rfc5322(1704189600, buf, 0), PST_ELIMIT);
    assert_int_equal(buf[0], '\0');
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_dates),
        cmocka_unit_test(test_short_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
