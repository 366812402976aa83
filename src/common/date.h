/*
 * src/common - the RFC 5322 date of a Date: or Received: header.
 */
#ifndef COMMON_DATE_H
#define COMMON_DATE_H

#include <stddef.h>
#include <time.h>

/* Bytes of the longest date, NUL included:
 * "Wed, 31 Dec 99999 23:59:59 +2359" and some room. */
#define DATE_RFC5322_MAX 48

/*
 * RFC 5322 §3.3 date-time of t in local time, in English whatever the
 * locale: "Tue, 02 Jan 2024 10:00:00 +0100".  The day of the month has
 * two digits (§3.3 allows one or two: one form for both programs); the
 * zone is the offset from UTC (§3.3: "+" east, "-" west).
 * Parameters: buf [out] n bytes (DATE_RFC5322_MAX is enough).
 * Returns: 0, PST_EINVAL (no local time for t), PST_ELIMIT (n too small;
 * buf then holds "" if n > 0).
 */
int date_rfc5322(time_t t, char *buf, size_t n);

#endif
