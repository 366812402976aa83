/*
 * posternd - event log: one line per event, key=value, on stderr.
 *
 *   ts=2024-05-01T12:00:00.123Z level=info event=auth_failed sid=3f2a
 *   user="bob smith" mech=CRAM-MD5 reason="wrong password"
 *
 * (one line in the log).  Values are written bare when they consist of
 * safe characters only, and quoted otherwise: inside quotes '"' and '\'
 * are backslash-escaped and every byte outside printable ASCII (controls,
 * DEL, and all bytes >= 0x80) is written as \xHH, so a value received from
 * a peer (a user name, an EHLO argument) can never end the line, start a
 * forged one or hide in terminal escapes (Postfix util/printable.c does
 * the same with '?').
 *
 * Levels have Postfix's meanings (util/msg.h): panic = our bug, fatal =
 * configuration or resource failure at start-up, warn = logged and carried
 * on, info = one line per normal event, debug = detail.
 *
 * Secrets: there is no call that takes a password.  log_kv_buf() writes
 * "********" for a buffer marked secret, and keys that name a secret
 * ("password", "secret", "response", ...) always get "********" whatever
 * the value.  AUTH lines of a transcript are redacted by the SMTP session
 * library before they reach a log call.
 *
 * Each line is formatted in a caller-owned struct log_line and written
 * with a single write(2), so lines from the loop and from thread-pool
 * workers never interleave.
 *
 * With log = syslog (DESIGN.md "Operations") lines go to syslog(3)
 * instead, one message each: ident "posternd" with the pid, facility
 * mail (as MTAs log), the same key=value text without "ts=" (syslog
 * stamps it), severity err for panic and fatal, warning for warn, info
 * and debug for the others.
 */
#ifndef POSTERND_LOG_H
#define POSTERND_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>

#include "log_level.h"

/* Postfix util/msg.h order: a lower value is more severe. */
#define LOG_LINE_MAX 4096 /* bytes in one line, newline included */

/* One line being formatted.  Fields are private to log.c. */
struct log_line {
    enum log_level level;
    int    active;          /* 0: filtered out by the level; calls no-op */
    int    syslog;          /* begun for syslog: no ts=, syslog(3) */
    int    truncated;       /* a value did not fit */
    size_t len;
    char   buf[LOG_LINE_MAX];
};

/* Write lines to fd from now on (default 2, stderr).  Not thread-safe:
 * call it before starting threads. */
void log_set_fd(int fd);

/* Send lines to syslog(3) (on != 0; the first call opens it, facility
 * mail) or to the fd of log_set_fd() (0, the default).  Thread-safe: a
 * reload may switch while other threads log. */
void log_set_syslog(int on);

/* Lines above level are dropped (default LOG_LEVEL_INFO).  Thread-safe. */
void log_set_level(enum log_level level);

/* The current level. */
enum log_level log_get_level(void);

/* Whether a line of level would be written (1) or dropped (0). */
int log_enabled(enum log_level level);

/*
 * The level called name ("panic", "fatal", "warn", "info", "debug").
 * Returns: 0, -1 (unknown name; *out unchanged).
 */
int log_level_parse(const char *name, enum log_level *out);

/* The name of level ("info"); "?" for a value out of range. */
const char *log_level_name(enum log_level level);

/*
 * Start a line: "ts=... level=... event=EVENT".  event ([in] borrowed) is
 * a constant word of [a-z0-9_]; it is escaped like any value all the same.
 */
void log_begin(struct log_line *l, enum log_level level, const char *event);

/*
 * Append " key=value".  key ([in] borrowed) is a constant word of
 * [a-z0-9_.]; value ([in] borrowed) is any text and is quoted and escaped
 * as described above.  NULL is written as "-".  Keys that name a secret get
 * "********".
 */
void log_kv(struct log_line *l, const char *key, const char *value);

/* As log_kv(), for len bytes at p ([in] borrowed; may contain NULs). */
void log_kv_bytes(struct log_line *l, const char *key, const void *p,
                  size_t len);

/* As log_kv_bytes() for a buffer ([in] borrowed); "********" if it is a
 * secret buffer. */
void log_kv_buf(struct log_line *l, const char *key, const struct pst_buf *b);

/* Append " key=N". */
void log_kv_uint(struct log_line *l, const char *key, uint64_t v);

/* Append " key=N" for a signed value. */
void log_kv_int(struct log_line *l, const char *key, int64_t v);

/* Append " key=VALUE" where the value is formatted, then escaped. */
void log_kv_printf(struct log_line *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Finish the line (" truncated=yes" if something did not fit), write it
 * with one write(2), and leave l ready for log_begin() again.  A line of
 * level panic then calls abort(), one of level fatal exit(1).
 */
void log_end(struct log_line *l);

/*
 * One line from alternating key and value strings ending with NULL:
 *   log_event(LOG_LEVEL_INFO, "connect", "sid", sid, "client", ip, NULL);
 * Values follow log_kv().
 */
void log_event(enum log_level level, const char *event, ...)
    __attribute__((sentinel));

/*
 * Free-text message lines (event=msg msg="..."), printf-style, for the
 * places where a structured event would be overkill.  log_fatal() exits
 * with status 1 and log_panic() aborts after writing.
 */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
_Noreturn void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
