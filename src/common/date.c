/*
 * The RFC 5322 date (date.h).
 */
#include "date.h"

#include <stdio.h>
#include <stdlib.h>

#include <postern/error.h>

int
date_rfc5322(time_t t, char *buf, size_t n)
{
    /* RFC 5322 §3.3: day-name and month-name are English abbreviations,
     * whatever the locale (so no strftime %a, %b). */
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu",
                                       "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May",
                                         "Jun", "Jul", "Aug", "Sep", "Oct",
                                         "Nov", "Dec"};
    struct tm tm;
    long off;
    int w;

    if (n > 0)
        buf[0] = '\0';
    if (localtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6
        || tm.tm_mon < 0 || tm.tm_mon > 11)
        return PST_EINVAL;
    off = tm.tm_gmtoff / 60;
    w = snprintf(buf, n, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
    if (w < 0 || (size_t)w >= n) {
        if (n > 0)
            buf[0] = '\0';
        return PST_ELIMIT;
    }
    return 0;
}
