/*
 * posternd - key=value event log (see log.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Room kept at the end of every line for the closing quote of a value cut
 * short and for " truncated=yes\n". */
#define LOG_RESERVE 20

static int log_fd = 2;
static atomic_int log_level_cur = LOG_LEVEL_INFO;
static atomic_int log_to_syslog = 0;
static atomic_flag log_syslog_opened = ATOMIC_FLAG_INIT;
/* log_begin(): this thread's "ts=...T12:34:56" of second log_stamp_sec. */
static _Thread_local time_t log_stamp_sec;
static _Thread_local char log_stamp[64];
static _Thread_local size_t log_stamp_len;

static const char *const level_names[] = {
    [LOG_LEVEL_PANIC] = "panic",
    [LOG_LEVEL_FATAL] = "fatal",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

/* Keys whose value is a secret whatever the caller passes (STYLE.md §6:
 * never log a secret).  Matched as substrings of the key. */
static const char *const secret_key_parts[] = {
    "pass", "secret", "response", "token", "cred",
};

void
log_set_fd(int fd)
{
    log_fd = fd;
}

void
log_set_syslog(int on)
{
    /* LOG_NDELAY: the socket is connected now, before a privilege drop
     * or a sandbox could stand in the way; LOG_PID: "posternd[PID]:"
     * as every MTA logs. */
    if (on && !atomic_flag_test_and_set(&log_syslog_opened))
        openlog("posternd", LOG_PID | LOG_NDELAY, LOG_MAIL);
    atomic_store(&log_to_syslog, on != 0);
}

void
log_set_level(enum log_level level)
{
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;
    atomic_store(&log_level_cur, (int)level);
}

enum log_level
log_get_level(void)
{
    return (enum log_level)atomic_load(&log_level_cur);
}

int
log_enabled(enum log_level level)
{
    /* panic and fatal lines explain an exit: never drop them. */
    if (level <= LOG_LEVEL_FATAL)
        return 1;
    return (int)level <= atomic_load(&log_level_cur);
}

int
log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
         i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *
log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_DEBUG)
        return "?";
    return level_names[level];
}

/* Append n bytes if they fit before the reserve; else mark truncated. */
static int
log_put(struct log_line *l, const char *s, size_t n)
{
    if (l->truncated || l->len + n > LOG_LINE_MAX - LOG_RESERVE) {
        l->truncated = 1;
        return -1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return 0;
}

/* Bytes that may appear in a value without quotes. */
static int
log_safe_byte(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '-': case '.': case '_': case ':': case '/': case '@': case '+':
    case ',': case '%': case '[': case ']': case '<': case '>': case '*':
        return 1;
    }
    return 0;
}

/* Append value bytes, quoted and escaped when needed. */
static void
log_put_value(struct log_line *l, const uint8_t *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int quote = len == 0;

    for (size_t i = 0; i < len && !quote; i++)
        quote = !log_safe_byte(p[i]);
    if (!quote) {
        log_put(l, (const char *)p, len);
        return;
    }
    if (log_put(l, "\"", 1) < 0)
        return;
    for (size_t i = 0; i < len; i++) {
        char esc[4];
        size_t n;

        if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            n = 2;
        } else if (p[i] < 0x20 || p[i] >= 0x7f) {
            /* CR and LF above all: a peer must not start a line of its
             * own; bytes >= 0x80 too, so no terminal escape or invalid
             * UTF-8 reaches whoever reads the log. */
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[p[i] >> 4];
            esc[3] = hex[p[i] & 0x0f];
            n = 4;
        } else {
            esc[0] = (char)p[i];
            n = 1;
        }
        if (log_put(l, esc, n) < 0)
            break;
    }
    /* The reserve always has room for the closing quote. */
    l->buf[l->len++] = '"';
}

/* Whether key holds one of secret_key_parts: one pass over the key,
 * comparing only where a part's first letter is (a line has a dozen
 * keys; five strstr() each cost more than the rest of the key). */
static int
log_secret_key(const char *key)
{
    for (const char *k = key; *k != '\0'; k++) {
        for (size_t i = 0;
             i < sizeof(secret_key_parts) / sizeof(secret_key_parts[0]);
             i++) {
            const char *part = secret_key_parts[i];
            size_t j = 0;

            while (part[j] != '\0' && k[j] == part[j])
                j++;
            if (part[j] == '\0')
                return 1;
        }
    }
    return 0;
}

/* " key=" with the key escaped like a value (it should be a constant). */
static int
log_put_key(struct log_line *l, const char *key)
{
    if (!l->active || l->truncated)
        return -1;
    if (log_put(l, " ", 1) < 0)
        return -1;
    log_put_value(l, (const uint8_t *)key, strlen(key));
    return log_put(l, "=", 1);
}

void
log_begin(struct log_line *l, enum log_level level, const char *event)
{
    struct timespec ts;
    struct tm tm;
    char stamp[64 + 8];
    unsigned ms;
    size_t n;

    l->level = level;
    l->active = log_enabled(level);
    l->truncated = 0;
    l->len = 0;
    l->syslog = atomic_load(&log_to_syslog);
    if (!l->active)
        return;
    if (l->syslog) {
        /* syslog stamps the line itself. */
        log_put(l, "level=", 6);
        log_put_value(l, (const uint8_t *)log_level_name(level),
                      strlen(log_level_name(level)));
        log_kv(l, "event", event);
        return;
    }
    /* RFC 3339 in UTC with milliseconds.  The text up to the seconds is
     * made once per second and thread (strftime() is most of a line's
     * cost). */
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = 0;
        ts.tv_nsec = 0;
    }
    if (ts.tv_sec != log_stamp_sec || log_stamp_len == 0) {
        if (gmtime_r(&ts.tv_sec, &tm) == NULL)
            memset(&tm, 0, sizeof(tm));
        n = strftime(log_stamp, sizeof(log_stamp), "ts=%Y-%m-%dT%H:%M:%S",
                     &tm);
        log_stamp_sec = ts.tv_sec;
        log_stamp_len = n;
    }
    ms = (unsigned)(ts.tv_nsec / 1000000) % 1000;
    memcpy(stamp, log_stamp, log_stamp_len);
    n = log_stamp_len;
    stamp[n++] = '.';
    stamp[n++] = (char)('0' + ms / 100);
    stamp[n++] = (char)('0' + ms / 10 % 10);
    stamp[n++] = (char)('0' + ms % 10);
    stamp[n++] = 'Z';
    log_put(l, stamp, n);
    log_put(l, " level=", 7);
    log_put_value(l, (const uint8_t *)log_level_name(level),
                  strlen(log_level_name(level)));
    log_kv(l, "event", event);
}

void
log_kv_bytes(struct log_line *l, const char *key, const void *p, size_t len)
{
    if (log_put_key(l, key) < 0)
        return;
    if (log_secret_key(key)) {
        log_put(l, "********", 8);
        return;
    }
    if (p == NULL) {
        log_put(l, "-", 1);
        return;
    }
    log_put_value(l, p, len);
}

void
log_kv(struct log_line *l, const char *key, const char *value)
{
    if (!l->active || l->truncated)
        return;
    log_kv_bytes(l, key, value, value != NULL ? strlen(value) : 0);
}

void
log_kv_buf(struct log_line *l, const char *key, const struct pst_buf *b)
{
    if (b != NULL && b->secret) {
        if (log_put_key(l, key) == 0)
            log_put(l, "********", 8);
        return;
    }
    if (b == NULL || b->data == NULL) {
        log_kv_bytes(l, key, b == NULL ? NULL : "", 0);
        return;
    }
    log_kv_bytes(l, key, b->data, b->len);
}

void
log_kv_uint(struct log_line *l, const char *key, uint64_t v)
{
    char num[24];

    if (!l->active || l->truncated)
        return;
    snprintf(num, sizeof(num), "%" PRIu64, v);
    log_kv(l, key, num);
}

void
log_kv_int(struct log_line *l, const char *key, int64_t v)
{
    char num[24];

    if (!l->active || l->truncated)
        return;
    snprintf(num, sizeof(num), "%" PRId64, v);
    log_kv(l, key, num);
}

void
log_kv_printf(struct log_line *l, const char *key, const char *fmt, ...)
{
    char value[LOG_LINE_MAX];
    va_list ap;
    int n;

    if (!l->active || l->truncated)
        return;
    va_start(ap, fmt);
    n = vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(value)) {
        log_kv_bytes(l, key, value, sizeof(value) - 1);
        l->truncated = 1;
        return;
    }
    log_kv_bytes(l, key, value, (size_t)n);
}

/* write(2) all of p, retrying on EINTR and short writes. */
static void
log_write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(log_fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += n;
        len -= (size_t)n;
    }
}

/* The syslog(3) severity of a level (DESIGN.md: info/warning/err). */
static int
log_syslog_priority(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_PANIC:
    case LOG_LEVEL_FATAL:
        return LOG_ERR;
    case LOG_LEVEL_WARN:
        return LOG_WARNING;
    case LOG_LEVEL_INFO:
        return LOG_INFO;
    case LOG_LEVEL_DEBUG:
        break;
    }
    return LOG_DEBUG;
}

void
log_end(struct log_line *l)
{
    static const char trunc[] = " truncated=yes";
    enum log_level level = l->level;

    if (l->active) {
        /* LOG_RESERVE keeps room for these. */
        if (l->truncated) {
            memcpy(l->buf + l->len, trunc, sizeof(trunc) - 1);
            l->len += sizeof(trunc) - 1;
        }
        if (l->syslog) {
            /* One message per line; the facility is openlog()'s. */
            syslog(log_syslog_priority(level), "%.*s", (int)l->len,
                   l->buf);
        } else {
            l->buf[l->len++] = '\n';
            log_write_all(l->buf, l->len);
        }
    }
    l->len = 0;
    l->truncated = 0;
    l->active = 0;
    if (level == LOG_LEVEL_PANIC)
        abort();
    if (level == LOG_LEVEL_FATAL)
        exit(1);
}

void
log_event(enum log_level level, const char *event, ...)
{
    struct log_line l;
    const char *key;
    va_list ap;

    /* A line the level filters out costs nothing more (but panic and
     * fatal still end the process, in log_end()). */
    if (!log_enabled(level))
        return;
    log_begin(&l, level, event);
    va_start(ap, event);
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);

        log_kv(&l, key, value);
    }
    va_end(ap);
    log_end(&l);
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    struct log_line l;
    char text[LOG_LINE_MAX];
    int n;

    log_begin(&l, level, "msg");
    if (l.active) {
        n = vsnprintf(text, sizeof(text), fmt, ap);
        if (n < 0)
            n = 0;
        if ((size_t)n >= sizeof(text))
            n = (int)sizeof(text) - 1;
        log_kv_bytes(&l, "msg", text, (size_t)n);
    }
    log_end(&l);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LEVEL_WARN, fmt, ap);
    va_end(ap);
}

void
log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LEVEL_INFO, fmt, ap);
    va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LEVEL_DEBUG, fmt, ap);
    va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LEVEL_FATAL, fmt, ap);
    va_end(ap);
    exit(1); /* not reached: log_end() exits */
}

void
log_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LEVEL_PANIC, fmt, ap);
    va_end(ap);
    abort(); /* not reached: log_end() aborts */
}
