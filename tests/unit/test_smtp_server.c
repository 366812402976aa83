/*
 * The SMTP server session, driven by transcripts (tests/unit/transcripts)
 * and by direct API tests.
 *
 * A transcript is a file of lines:
 *   # comment                   ignored, as are blank lines
 *   @ key=value ...             configuration (see transcript_config())
 *   C: text                     client line, CRLF appended
 *   C> text                     raw client bytes, nothing appended
 *   S: text                     expected server line, CRLF appended
 *   E: TYPE k=v ...             expected event (no answer needed)
 *   Q: TYPE k=v ...             expected event that needs an answer
 *   D: text                     expected DATA event: one line of content,
 *                               CRLF appended
 *   A: verdict args             the answer to the Q before it
 *   U: name,name                the exceptions used by the end
 *                               (pst_smtp_server_compat_used(); "U:"
 *                               alone: none); checked when given
 * Text may hold the escapes \r \n \t \\ \xHH and \{N,c} (N copies of c).
 *
 * Client bytes written before an A: line are all sent before that answer
 * is given (the client pipelines, or injects); bytes after it, after.
 * Every event must come in order, with exactly the server output of the
 * S: lines before it already produced; at the end the whole output and
 * the number of events must match.  Each transcript runs with its input
 * fed whole, byte by byte, and at random split points (fixed seeds).
 */
#include <dirent.h>
#include <errno.h>

#include <postern/smtp.h>

#include "testutil.h"

#include "../../lib/smtp/smtp_int.h"

#ifndef TEST_SRCDIR
#error "TEST_SRCDIR must name tests/unit"
#endif
#define TRANSCRIPT_DIR TEST_SRCDIR "/transcripts"

#define HOST "mail.example.test"

/* --- Helpers ------------------------------------------------------------- */

static const uint8_t fixed_random[] = {
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54,
    0x76, 0x98, 0xba, 0xdc, 0xfe, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
    0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
};

/* A random source that repeats fixed_random forever. */
static int
cycle_random(void *ctx, uint8_t *buf, size_t len)
{
    size_t *pos = ctx;

    for (size_t i = 0; i < len; i++)
        buf[i] = fixed_random[(*pos)++ % sizeof(fixed_random)];
    return 0;
}

/* A deterministic generator for split points (xorshift32). */
static uint32_t
next_rand(uint32_t *st)
{
    uint32_t x = *st;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *st = x;
    return x;
}

static const char *
event_name(int t)
{
    return pst_smtp_event_name((enum pst_smtp_event_type)t);
}

/* Decode transcript escapes in text into out. */
static void
unescape(const char *text, struct pst_buf *out)
{
    for (const char *p = text; *p != '\0'; p++) {
        uint8_t c = (uint8_t)*p;

        if (c == '\\' && p[1] != '\0') {
            p++;
            switch (*p) {
            case 'r':
                c = '\r';
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'x': {
                char hex[3] = {p[1], p[2], '\0'};

                assert_true(p[1] != '\0' && p[2] != '\0');
                c = (uint8_t)strtoul(hex, NULL, 16);
                p += 2;
                break;
            }
            case '{': {
                char *end;
                unsigned long n = strtoul(p + 1, &end, 10);

                assert_true(*end == ',' && end[1] != '\0' && end[2] == '}');
                for (unsigned long i = 0; i < n; i++)
                    assert_int_equal(pst_buf_append_byte(out,
                                                         (uint8_t)end[1]),
                                     0);
                p = end + 2;
                continue;
            }
            default:
                c = (uint8_t)*p;
                break;
            }
        }
        assert_int_equal(pst_buf_append_byte(out, c), 0);
    }
}

/* Format an event the way transcripts write it (DATA aside). */
static void
format_event(const struct pst_smtp_event *ev, char *out, size_t size)
{
    int n = snprintf(out, size, "%s", event_name(ev->type));

    switch (ev->type) {
    case PST_SMTP_EV_AUTH_LOOKUP:
        snprintf(out + n, size - (size_t)n, " mech=%s user=%s", ev->mech,
                 ev->user);
        break;
    case PST_SMTP_EV_AUTH_VERIFY:
        snprintf(out + n, size - (size_t)n, " mech=%s user=%s pw=%.*s",
                 ev->mech, ev->user, (int)ev->password_len,
                 (const char *)ev->password);
        break;
    case PST_SMTP_EV_AUTH_RESULT:
        if (ev->ok)
            snprintf(out + n, size - (size_t)n, " ok mech=%s user=%s",
                     ev->mech, ev->user);
        else
            snprintf(out + n, size - (size_t)n,
                     " fail mech=%s user=%s err=%s", ev->mech,
                     ev->user != NULL ? ev->user : "-",
                     pst_errname(ev->error));
        break;
    case PST_SMTP_EV_MAIL:
        n += snprintf(out + n, size - (size_t)n, " from=<%s>", ev->address);
        if (ev->size > 0)
            n += snprintf(out + n, size - (size_t)n, " size=%llu",
                          (unsigned long long)ev->size);
        if (ev->body_8bit)
            snprintf(out + n, size - (size_t)n, " body=8BITMIME");
        break;
    case PST_SMTP_EV_RCPT:
        snprintf(out + n, size - (size_t)n, " to=<%s>", ev->address);
        break;
    case PST_SMTP_EV_DATA_END:
        snprintf(out + n, size - (size_t)n, " size=%llu",
                 (unsigned long long)ev->size);
        break;
    case PST_SMTP_EV_DATA_ABORT:
        snprintf(out + n, size - (size_t)n, " err=%s size=%llu",
                 pst_errname(ev->error), (unsigned long long)ev->size);
        break;
    default:
        break;
    }
}

/* --- Transcripts --------------------------------------------------------- */

enum item_kind { IT_EVENT, IT_ANSWER };

struct item {
    enum item_kind kind;
    int ask;              /* Q: rather than E: */
    int data;             /* D: */
    char *text;           /* E/Q text, A text */
    struct pst_buf bytes; /* D: decoded content (CRLF excluded) */
    size_t out_before;    /* expected output octets before this event */
    size_t line;          /* in the file */
};

struct transcript {
    char path[512];
    struct pst_smtp_server_config cfg;
    const struct pst_sasl_mech *mechs[8];
    size_t random_pos;
    int implicit_up;
    /* Expected: */
    struct pst_buf out;       /* every S: line */
    struct item *items;       /* events and answers, in order */
    size_t nitems;
    /* Client input, cut at each answer: segment k is sent before the
     * k-th answer. */
    struct pst_buf *segs;
    size_t nsegs;
    int check_compat;         /* a U: line was given */
    unsigned compat;          /* ... with these bits */
    size_t compat_line;
};

static void
transcript_free(struct transcript *t)
{
    pst_buf_clear(&t->out);
    for (size_t i = 0; i < t->nitems; i++) {
        free(t->items[i].text);
        pst_buf_clear(&t->items[i].bytes);
    }
    free(t->items);
    for (size_t i = 0; i < t->nsegs; i++)
        pst_buf_clear(&t->segs[i]);
    free(t->segs);
}

static struct item *
transcript_add(struct transcript *t, enum item_kind kind, size_t lineno)
{
    struct item *it;

    t->items = realloc(t->items, (t->nitems + 1) * sizeof(*t->items));
    assert_non_null(t->items);
    it = &t->items[t->nitems++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    it->line = lineno;
    it->out_before = t->out.len;
    return it;
}

static void
transcript_new_segment(struct transcript *t)
{
    t->segs = realloc(t->segs, (t->nsegs + 1) * sizeof(*t->segs));
    assert_non_null(t->segs);
    pst_buf_init(&t->segs[t->nsegs++], 1 << 20, 0);
}

static int
parse_config_value(const char *key, const char *val, struct transcript *t)
{
    struct pst_smtp_server_config *c = &t->cfg;

    if (strcmp(key, "tls") == 0) {
        if (strcmp(val, "none") == 0)
            c->tls = PST_SMTP_TLS_NONE;
        else if (strcmp(val, "starttls") == 0)
            c->tls = PST_SMTP_TLS_STARTTLS;
        else if (strcmp(val, "implicit") == 0)
            c->tls = PST_SMTP_TLS_IMPLICIT;
        else
            return -1;
    } else if (strcmp(key, "auth") == 0) {
        if (strcmp(val, "required") == 0)
            c->auth = PST_SMTP_AUTH_REQUIRED;
        else if (strcmp(val, "optional") == 0)
            c->auth = PST_SMTP_AUTH_OPTIONAL;
        else if (strcmp(val, "off") == 0)
            c->auth = PST_SMTP_AUTH_OFF;
        else
            return -1;
    } else if (strcmp(key, "before_tls") == 0) {
        if (strcmp(val, "none") == 0)
            c->auth_before_tls = PST_SMTP_BEFORE_TLS_NONE;
        else if (strcmp(val, "challenge") == 0)
            c->auth_before_tls = PST_SMTP_BEFORE_TLS_CHALLENGE;
        else if (strcmp(val, "all") == 0)
            c->auth_before_tls = PST_SMTP_BEFORE_TLS_ALL;
        else
            return -1;
    } else if (strcmp(key, "mechs") == 0) {
        size_t n = 0;
        const char *p = val;

        while (*p != '\0') {
            size_t len = strcspn(p, ",");

            if (n + 1 >= sizeof(t->mechs) / sizeof(t->mechs[0]))
                return -1;
            t->mechs[n] = pst_sasl_mech_find(p, len);
            if (t->mechs[n] == NULL)
                return -1;
            n++;
            p += len;
            if (*p == ',')
                p++;
        }
        t->mechs[n] = NULL;
    } else if (strcmp(key, "legacy") == 0) {
        c->legacy_auth_line = (int)strtol(val, NULL, 10);
    } else if (strcmp(key, "size") == 0) {
        c->max_message_size = strtoull(val, NULL, 10);
    } else if (strcmp(key, "rcpts") == 0) {
        c->max_recipients = (unsigned)strtoul(val, NULL, 10);
    } else if (strcmp(key, "errors") == 0) {
        c->max_errors = (unsigned)strtoul(val, NULL, 10);
    } else if (strcmp(key, "sender") == 0) {
        if (strcmp(val, "strict") == 0)
            c->sender_check = PST_SMTP_SENDER_STRICT;
        else if (strcmp(val, "off") == 0)
            c->sender_check = PST_SMTP_SENDER_OFF;
        else
            return -1;
    } else if (strcmp(key, "require_tls") == 0) {
        c->require_tls = (int)strtol(val, NULL, 10);
    } else if (strcmp(key, "helo_auth") == 0) {
        c->helo_auth = (int)strtol(val, NULL, 10);
    } else if (strcmp(key, "bare_lf") == 0) {
        if (strcmp(val, "reject") == 0)
            c->bare_lf = PST_SMTP_BARE_LF_REJECT;
        else if (strcmp(val, "normalize") == 0)
            c->bare_lf = PST_SMTP_BARE_LF_NORMALIZE;
        else
            return -1;
    } else if (strcmp(key, "long_lines") == 0) {
        if (strcmp(val, "reject") == 0)
            c->long_lines = PST_SMTP_LONG_LINES_REJECT;
        else if (strcmp(val, "fold") == 0)
            c->long_lines = PST_SMTP_LONG_LINES_FOLD;
        else
            return -1;
    } else {
        return -1;
    }
    return 0;
}

/* "helo_auth,bare_lf,long_lines" -> PST_SMTP_COMPAT_* bits. */
static int
parse_compat(const char *text, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        {"helo_auth", PST_SMTP_COMPAT_HELO_AUTH},
        {"bare_lf", PST_SMTP_COMPAT_BARE_LF},
        {"long_lines", PST_SMTP_COMPAT_LONG_LINES},
    };

    *out = 0;
    while (*text != '\0') {
        size_t len = strcspn(text, ","), i;

        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (len == strlen(names[i].name) &&
                strncmp(text, names[i].name, len) == 0)
                break;
        if (i == sizeof(names) / sizeof(names[0]))
            return -1;
        *out |= names[i].bit;
        text += len;
        if (*text == ',')
            text++;
    }
    return 0;
}

static void
transcript_load(struct transcript *t, const char *path)
{
    static const char *const default_mechs[] = {"PLAIN", "LOGIN", NULL};
    FILE *f;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;

    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s", path);
    for (size_t i = 0; default_mechs[i] != NULL; i++)
        t->mechs[i] = pst_sasl_mech_find(default_mechs[i],
                                         strlen(default_mechs[i]));
    t->cfg = (struct pst_smtp_server_config){
        .hostname = HOST,
        .tls = PST_SMTP_TLS_NONE,
        .auth = PST_SMTP_AUTH_OPTIONAL,
        .auth_before_tls = PST_SMTP_BEFORE_TLS_ALL,
        .mechs = t->mechs,
        .timestamp = 1700000000,
        .random = cycle_random,
        .random_ctx = &t->random_pos,
    };
    pst_buf_init(&t->out, 1 << 20, 0);
    transcript_new_segment(t);
    f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        const char *rest;
        struct item *it;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (line[0] == '@') {
            char *save = NULL;

            for (char *tok = strtok_r(line + 1, " ", &save); tok != NULL;
                 tok = strtok_r(NULL, " ", &save)) {
                char *eq = strchr(tok, '=');

                if (eq == NULL)
                    fail_msg("%s:%zu: bad setting %s", path, lineno, tok);
                *eq = '\0';
                if (parse_config_value(tok, eq + 1, t) < 0)
                    fail_msg("%s:%zu: bad setting %s", path, lineno, tok);
            }
            continue;
        }
        if (len < 2 || (len > 2 && line[2] != ' '))
            fail_msg("%s:%zu: bad line", path, lineno);
        rest = len > 3 ? line + 3 : "";
        if (strncmp(line, "C:", 2) == 0) {
            unescape(rest, &t->segs[t->nsegs - 1]);
            pst_buf_append(&t->segs[t->nsegs - 1], "\r\n", 2);
        } else if (strncmp(line, "C>", 2) == 0) {
            unescape(rest, &t->segs[t->nsegs - 1]);
        } else if (strncmp(line, "S:", 2) == 0) {
            unescape(rest, &t->out);
            pst_buf_append(&t->out, "\r\n", 2);
        } else if (strncmp(line, "E:", 2) == 0 ||
                   strncmp(line, "Q:", 2) == 0) {
            it = transcript_add(t, IT_EVENT, lineno);
            it->ask = line[0] == 'Q';
            pst_buf_init(&it->bytes, 1 << 20, 0);
            unescape(rest, &it->bytes);
            assert_int_equal(pst_buf_append(&it->bytes, "", 0), 0);
            it->text = strdup((const char *)it->bytes.data);
        } else if (strncmp(line, "D:", 2) == 0) {
            it = transcript_add(t, IT_EVENT, lineno);
            it->data = 1;
            pst_buf_init(&it->bytes, 1 << 20, 0);
            unescape(rest, &it->bytes);
        } else if (strncmp(line, "U:", 2) == 0) {
            t->check_compat = 1;
            t->compat_line = lineno;
            if (parse_compat(rest, &t->compat) < 0)
                fail_msg("%s:%zu: bad exception list", path, lineno);
        } else if (strncmp(line, "A:", 2) == 0) {
            it = transcript_add(t, IT_ANSWER, lineno);
            it->text = strdup(rest);
            transcript_new_segment(t);
        } else {
            fail_msg("%s:%zu: bad line", path, lineno);
        }
    }
    free(line);
    fclose(f);
}

/* One run of a transcript. */
enum split_mode { SPLIT_WHOLE, SPLIT_BYTE, SPLIT_RANDOM };

struct run {
    struct transcript *t;
    struct pst_smtp_server *s;
    const char *mode;
    struct pst_buf out;        /* output so far */
    size_t next;               /* next item */
    int waiting;               /* a Q: was seen, its A: is next */
    int pending_type;          /* the Q's type */
    struct pst_cred *cred;     /* from the last "A: cred" */
    char user[256];            /* from the last AUTH_VERIFY */
    uint8_t pw[1024];
    size_t pw_len;
    size_t events;
};

static void
run_fail(const struct run *r, size_t line, const char *what)
{
    fail_msg("%s:%zu (%s split): %s", r->t->path, line, r->mode, what);
}

static void
run_collect(struct run *r)
{
    const uint8_t *p;
    size_t len;

    pst_smtp_server_output(r->s, &p, &len);
    if (len > 0) {
        assert_int_equal(pst_buf_append(&r->out, p, len), 0);
        pst_smtp_server_consume(r->s, len);
    }
}

static void
run_check_output(struct run *r, size_t want_len, size_t line)
{
    if (r->out.len != want_len ||
        (want_len > 0 &&
         memcmp(r->out.data, r->t->out.data, want_len) != 0)) {
        fprintf(stderr, "output differs before line %zu:\n", line);
        test_assert_bytes(r->out.data, r->out.len, r->t->out.data, want_len,
                          r->t->path, (int)line);
    }
}

static void
run_event(struct run *r, const struct pst_smtp_event *ev)
{
    const struct item *it;
    char text[16384 + 512], msg[sizeof(text) + 600];

    run_collect(r);
    format_event(ev, text, sizeof(text));
    if (r->next >= r->t->nitems || r->t->items[r->next].kind != IT_EVENT) {
        snprintf(msg, sizeof(msg), "unexpected event %s%s", text,
                 ev->type == PST_SMTP_EV_DATA ? " (DATA)" : "");
        run_fail(r, r->next < r->t->nitems ? r->t->items[r->next].line : 0,
                 msg);
    }
    it = &r->t->items[r->next++];
    r->events++;
    run_check_output(r, it->out_before, it->line);
    if (it->data) {
        if (ev->type != PST_SMTP_EV_DATA) {
            snprintf(msg, sizeof(msg), "got %s, want DATA", text);
            run_fail(r, it->line, msg);
        }
        if (ev->len < 2 || ev->data[ev->len - 2] != '\r' ||
            ev->data[ev->len - 1] != '\n')
            run_fail(r, it->line, "DATA line without CRLF");
        if (ev->len - 2 != it->bytes.len ||
            (it->bytes.len > 0 &&
             memcmp(ev->data, it->bytes.data, it->bytes.len) != 0)) {
            test_assert_bytes(ev->data, ev->len - 2, it->bytes.data,
                              it->bytes.len, r->t->path, (int)it->line);
        }
    } else {
        if (strcmp(text, it->text) != 0 || ev->need_answer != it->ask) {
            snprintf(msg, sizeof(msg), "got %s: %s, want %s: %s",
                     ev->need_answer ? "Q" : "E", text, it->ask ? "Q" : "E",
                     it->text);
            run_fail(r, it->line, msg);
        }
    }
    if (ev->type == PST_SMTP_EV_AUTH_VERIFY) {
        snprintf(r->user, sizeof(r->user), "%s", ev->user);
        assert_true(ev->password_len <= sizeof(r->pw));
        memcpy(r->pw, ev->password, ev->password_len);
        r->pw_len = ev->password_len;
    }
    if (ev->need_answer) {
        if (r->next >= r->t->nitems ||
            r->t->items[r->next].kind != IT_ANSWER)
            run_fail(r, it->line, "a Q: line must be followed by A:");
        r->waiting = 1;
        r->pending_type = ev->type;
    }
}

static void
run_drain(struct run *r)
{
    struct pst_smtp_event ev;
    int rc;

    while (!r->waiting) {
        rc = pst_smtp_server_next_event(r->s, &ev);
        assert_rc(rc >= 0 ? 0 : rc, 0);
        if (rc == 0)
            break;
        run_event(r, &ev);
    }
    if (r->waiting) {
        /* Parked: nothing more until the answer. */
        rc = pst_smtp_server_next_event(r->s, &ev);
        if (rc != 0)
            run_fail(r, r->t->items[r->next].line,
                     "an event came while parked");
    }
    run_collect(r);
}

static void
run_answer(struct run *r)
{
    const struct item *it = &r->t->items[r->next++];
    struct pst_smtp_answer a = {.type = r->pending_type};
    char verb[32] = "";
    const char *rest;
    size_t vlen = strcspn(it->text, " ");
    int rc;

    snprintf(verb, sizeof(verb), "%.*s", (int)vlen, it->text);
    rest = it->text[vlen] == ' ' ? it->text + vlen + 1 : NULL;
    r->waiting = 0;
    if (strcmp(verb, "tls") == 0) {
        char version[64], cipher[128];

        assert_non_null(rest);
        assert_int_equal(sscanf(rest, "%63s %127s", version, cipher), 2);
        rc = pst_smtp_server_tls_started(r->s, version, cipher);
        if (rc != 0)
            run_fail(r, it->line, "tls_started failed");
        return;
    }
    if (strcmp(verb, "cred") == 0) {
        assert_non_null(rest);
        pst_cred_free(r->cred);
        r->cred = NULL;
        assert_rc(pst_cred_parse(rest, strlen(rest), &r->cred), 0);
        a.verdict = PST_SMTP_ACCEPT;
        a.cred = r->cred;
    } else if (strcmp(verb, "nouser") == 0) {
        pst_cred_free(r->cred);
        r->cred = NULL;
        a.verdict = PST_SMTP_ACCEPT;
    } else if (strcmp(verb, "verify") == 0) {
        a.verdict = pst_cred_verify(r->cred, r->user, r->pw, r->pw_len) == 0
                        ? PST_SMTP_ACCEPT
                        : PST_SMTP_REJECT;
    } else if (strcmp(verb, "accept") == 0) {
        a.verdict = PST_SMTP_ACCEPT;
        a.queue_id = rest;
    } else if (strcmp(verb, "reject") == 0) {
        a.verdict = PST_SMTP_REJECT;
        a.reply = rest;
    } else if (strcmp(verb, "tempfail") == 0) {
        a.verdict = PST_SMTP_TEMPFAIL;
        a.reply = rest;
    } else {
        run_fail(r, it->line, "unknown answer");
    }
    rc = pst_smtp_server_answer(r->s, &a);
    if (rc != 0)
        run_fail(r, it->line, pst_errname(rc));
}

static void
run_transcript(struct transcript *t, enum split_mode mode, uint32_t seed)
{
    struct run r = {
        .t = t,
        .mode = mode == SPLIT_WHOLE  ? "whole"
                : mode == SPLIT_BYTE ? "byte"
                                     : "random",
    };
    struct pst_buf input;
    size_t *barrier, k = 0, pos = 0;
    uint32_t rng = seed;
    struct pst_smtp_server_config cfg = t->cfg;

    /* All client input, and where each answer may be given. */
    pst_buf_init(&input, 1 << 22, 0);
    barrier = calloc(t->nsegs, sizeof(*barrier));
    assert_non_null(barrier);
    for (size_t i = 0; i < t->nsegs; i++) {
        assert_int_equal(pst_buf_append(&input, t->segs[i].data,
                                        t->segs[i].len), 0);
        barrier[i] = input.len;
    }
    pst_buf_init(&r.out, 1 << 22, 0);
    t->random_pos = 0;
    assert_rc(pst_smtp_server_new(&cfg, &r.s), 0);
    if (cfg.tls == PST_SMTP_TLS_IMPLICIT)
        assert_rc(pst_smtp_server_tls_started(r.s, "TLSv1.3",
                                              "TLS_AES_256_GCM_SHA384"), 0);
    assert_rc(pst_smtp_server_start(r.s), 0);
    run_drain(&r);
    for (;;) {
        size_t limit = barrier[k], stuck = 0;

        while (pos < limit) {
            size_t n = limit - pos, used;

            if (mode == SPLIT_BYTE)
                n = 1;
            else if (mode == SPLIT_RANDOM) {
                uint32_t x = next_rand(&rng);

                n = (x % 8 == 0) ? n : 1 + (x >> 8) % 64;
                if (n > limit - pos)
                    n = limit - pos;
            }
            assert_rc(pst_smtp_server_feed(r.s, input.data + pos, n, &used),
                      0);
            pos += used;
            if (used == 0) {
                /* The input buffer is full: while parked, answer now. */
                if (r.waiting)
                    break;
                if (++stuck > 2)
                    run_fail(&r, 0, "input is not taken");
            } else {
                stuck = 0;
            }
            if (!r.waiting)
                run_drain(&r);
        }
        if (!r.waiting) {
            if (k + 1 < t->nsegs)
                run_fail(&r, t->items[r.next < t->nitems ? r.next : 0].line,
                         "input ended without the event the next A: "
                         "answers");
            break;
        }
        if (k + 1 >= t->nsegs)
            run_fail(&r, 0, "an event needs an answer the transcript "
                            "does not give");
        run_answer(&r);
        k++;
        run_drain(&r);
    }
    run_collect(&r);
    run_check_output(&r, t->out.len, 0);
    if (r.next != t->nitems) {
        char msg[128];

        snprintf(msg, sizeof(msg), "got %zu events, want more", r.events);
        run_fail(&r, t->items[r.next].line, msg);
    }
    if (t->check_compat &&
        pst_smtp_server_compat_used(r.s) != t->compat) {
        char msg[128];

        snprintf(msg, sizeof(msg), "got exceptions 0x%x, want 0x%x",
                 pst_smtp_server_compat_used(r.s), t->compat);
        run_fail(&r, t->compat_line, msg);
    }
    pst_smtp_server_free(r.s);
    pst_cred_free(r.cred);
    pst_buf_clear(&r.out);
    pst_buf_clear(&input);
    free(barrier);
}

static void
test_transcript(void **state)
{
    const char *path = *state;
    struct transcript t;

    transcript_load(&t, path);
    run_transcript(&t, SPLIT_WHOLE, 0);
    run_transcript(&t, SPLIT_BYTE, 0);
    for (uint32_t seed = 1; seed <= 3; seed++)
        run_transcript(&t, SPLIT_RANDOM, seed * 2654435761u);
    transcript_free(&t);
}

/* --- Direct API tests ---------------------------------------------------- */

struct drv {
    struct pst_smtp_server *s;
    struct pst_buf out;        /* output not yet checked */
    unsigned counts[16];       /* events by type */
    int waiting;               /* type of the pending question, or -1 */
    char user[256];
    uint8_t pw[1024];
    size_t pw_len;
    struct pst_buf data;       /* DATA content */
    uint64_t size;             /* DATA_END size */
    int last_ok;               /* last AUTH_RESULT */
};

static void
drv_drain(struct drv *d)
{
    struct pst_smtp_event ev;
    const uint8_t *p;
    size_t len;
    int rc;

    while (d->waiting < 0 &&
           (rc = pst_smtp_server_next_event(d->s, &ev)) != 0) {
        assert_rc(rc >= 0 ? 0 : rc, 0);
        assert_true((unsigned)ev.type < 16);
        d->counts[ev.type]++;
        if (ev.type == PST_SMTP_EV_DATA)
            assert_int_equal(pst_buf_append(&d->data, ev.data, ev.len), 0);
        if (ev.type == PST_SMTP_EV_DATA_END)
            d->size = ev.size;
        if (ev.type == PST_SMTP_EV_AUTH_RESULT)
            d->last_ok = ev.ok;
        if (ev.type == PST_SMTP_EV_AUTH_VERIFY) {
            snprintf(d->user, sizeof(d->user), "%s", ev.user);
            memcpy(d->pw, ev.password, ev.password_len);
            d->pw_len = ev.password_len;
        }
        if (ev.need_answer)
            d->waiting = (int)ev.type;
        /* Take the output as a driver would, even mid-stream. */
        pst_smtp_server_output(d->s, &p, &len);
        if (len > 0) {
            pst_buf_append(&d->out, p, len);
            pst_smtp_server_consume(d->s, len);
        }
    }
    pst_smtp_server_output(d->s, &p, &len);
    if (len > 0) {
        assert_int_equal(pst_buf_append(&d->out, p, len), 0);
        pst_smtp_server_consume(d->s, len);
    }
}

static void
drv_new(struct drv *d, const struct pst_smtp_server_config *cfg)
{
    memset(d, 0, sizeof(*d));
    d->waiting = -1;
    pst_buf_init(&d->out, 1 << 24, 0);
    pst_buf_init(&d->data, 1 << 24, 0);
    assert_rc(pst_smtp_server_new(cfg, &d->s), 0);
    if (cfg->tls == PST_SMTP_TLS_IMPLICIT)
        assert_rc(pst_smtp_server_tls_started(d->s, "TLSv1.3",
                                              "TLS_AES_128_GCM_SHA256"), 0);
    assert_rc(pst_smtp_server_start(d->s), 0);
    drv_drain(d);
}

static void
drv_free(struct drv *d)
{
    pst_smtp_server_free(d->s);
    pst_buf_clear(&d->out);
    pst_buf_clear(&d->data);
}

static void
drv_send_bytes(struct drv *d, const void *p, size_t len)
{
    size_t used;

    assert_rc(pst_smtp_server_feed(d->s, p, len, &used), 0);
    assert_int_equal(used, len);
    drv_drain(d);
}

static void
drv_send(struct drv *d, const char *text)
{
    drv_send_bytes(d, text, strlen(text));
}

static void
drv_answer(struct drv *d, enum pst_smtp_verdict v, const struct pst_cred *c,
           const char *queue_id)
{
    struct pst_smtp_answer a = {
        .type = (enum pst_smtp_event_type)d->waiting,
        .verdict = v,
        .cred = c,
        .queue_id = queue_id,
    };

    assert_true(d->waiting >= 0);
    assert_rc(pst_smtp_server_answer(d->s, &a), 0);
    d->waiting = -1;
    drv_drain(d);
}

/* Check the output since the last call, then forget it. */
static void
drv_expect(struct drv *d, const char *want)
{
    assert_bytes_equal(d->out.data, d->out.len, want, strlen(want));
    pst_buf_reset(&d->out);
}

static const struct pst_sasl_mech *plain_only[2];

static struct pst_smtp_server_config
base_config(void)
{
    plain_only[0] = pst_sasl_mech_find("PLAIN", 5);
    plain_only[1] = NULL;
    return (struct pst_smtp_server_config){
        .hostname = HOST,
        .tls = PST_SMTP_TLS_NONE,
        .auth = PST_SMTP_AUTH_OPTIONAL,
        .auth_before_tls = PST_SMTP_BEFORE_TLS_ALL,
        .mechs = plain_only,
    };
}

/* AUTH PLAIN for tim with the right password. */
static void
drv_auth_tim(struct drv *d, struct pst_cred **cred)
{
    static const char text[] = "{PLAIN}tanstaaftanstaaf";

    assert_rc(pst_cred_parse(text, strlen(text), cred), 0);
    drv_send(d, "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    assert_int_equal(d->waiting, PST_SMTP_EV_AUTH_LOOKUP);
    drv_answer(d, PST_SMTP_ACCEPT, *cred, NULL);
    assert_int_equal(d->waiting, PST_SMTP_EV_AUTH_VERIFY);
    drv_answer(d, pst_cred_verify(*cred, d->user, d->pw, d->pw_len) == 0
                      ? PST_SMTP_ACCEPT
                      : PST_SMTP_REJECT,
               NULL, NULL);
}

static void
test_config_invalid(void **state)
{
    const struct pst_sasl_mech *pw_mechs[] = {
        pst_sasl_mech_find("PLAIN", 5), pst_sasl_mech_find("LOGIN", 5),
        NULL};
    const struct pst_sasl_mech *cram[] = {pst_sasl_mech_find("CRAM-MD5", 8),
                                          NULL};
    const struct pst_sasl_mech *many[18];
    struct pst_smtp_server_config c;
    struct pst_smtp_server *s = (struct pst_smtp_server *)&c;

    (void)state;
    assert_rc(pst_smtp_server_new(NULL, &s), PST_EINVAL);
    assert_null(s);
    assert_rc(pst_smtp_server_new(&(struct pst_smtp_server_config){0},
                                  NULL), PST_EINVAL);
    c = base_config();
    c.hostname = NULL;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c.hostname = "mail example";
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c.hostname = "";
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    /* RFC 4954 §9: never drop before 3 failures. */
    c = base_config();
    c.max_errors = 2;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c.max_errors = 3;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    pst_smtp_server_free(s);
    /* auth required where nothing can ever be offered. */
    c = base_config();
    c.auth = PST_SMTP_AUTH_REQUIRED;
    c.auth_before_tls = PST_SMTP_BEFORE_TLS_NONE;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c.auth_before_tls = PST_SMTP_BEFORE_TLS_CHALLENGE;
    c.mechs = pw_mechs;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c.mechs = cram;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    pst_smtp_server_free(s);
    c.mechs = pw_mechs;
    c.tls = PST_SMTP_TLS_STARTTLS;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    pst_smtp_server_free(s);
    /* Too many mechanisms. */
    for (size_t i = 0; i < 17; i++)
        many[i] = pw_mechs[0];
    many[17] = NULL;
    c.mechs = many;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c = base_config();
    c.tls = (enum pst_smtp_tls_mode)7;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    /* The exceptions of a compatibility profile. */
    c = base_config();
    c.bare_lf = (enum pst_smtp_bare_lf)2;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c = base_config();
    c.long_lines = (enum pst_smtp_long_lines)2;
    assert_rc(pst_smtp_server_new(&c, &s), PST_EINVAL);
    c.long_lines = PST_SMTP_LONG_LINES_FOLD;
    c.bare_lf = PST_SMTP_BARE_LF_NORMALIZE;
    c.helo_auth = 1;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    /* Allowed is not used. */
    assert_int_equal(pst_smtp_server_compat_used(s), 0);
    pst_smtp_server_free(s);
    pst_smtp_server_free(NULL);
}

static void
test_api_misuse(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_answer a = {.type = PST_SMTP_EV_RCPT,
                                .verdict = PST_SMTP_ACCEPT};
    struct pst_smtp_server *s;
    struct pst_smtp_event ev;
    size_t used = 99;

    (void)state;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    assert_int_equal(pst_smtp_server_state(s, NULL), PST_SMTP_STATE_NEW);
    assert_rc(pst_smtp_server_feed(s, (const uint8_t *)"NOOP\r\n", 6,
                                   &used), PST_ESTATE);
    assert_int_equal(used, 0);
    assert_rc(pst_smtp_server_answer(s, &a), PST_ESTATE);
    assert_rc(pst_smtp_server_tls_started(s, "TLSv1.3", "X"), PST_ESTATE);
    assert_rc(pst_smtp_server_next_event(s, &ev), 0);
    assert_rc(pst_smtp_server_start(s), 0);
    assert_rc(pst_smtp_server_start(s), PST_ESTATE);
    assert_rc(pst_smtp_server_answer(s, &a), PST_ESTATE);
    assert_rc(pst_smtp_server_feed(s, NULL, 1, &used), PST_EINVAL);
    assert_rc(pst_smtp_server_feed(s, NULL, 0, &used), 0);
    assert_rc(pst_smtp_server_close(s, PST_SMTP_CLOSE_SHUTDOWN), 0);
    assert_rc(pst_smtp_server_close(s, PST_SMTP_CLOSE_SHUTDOWN),
              PST_ESTATE);
    pst_smtp_server_free(s);

    /* Implicit TLS: the handshake comes before the greeting. */
    c.tls = PST_SMTP_TLS_IMPLICIT;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    assert_rc(pst_smtp_server_start(s), PST_ESTATE);
    assert_rc(pst_smtp_server_tls_started(s, "TLS v1.3", "X"), PST_EINVAL);
    assert_rc(pst_smtp_server_tls_started(s, "TLSv1.3", ""), PST_EINVAL);
    assert_rc(pst_smtp_server_tls_started(s, "TLSv1.3", NULL), PST_EINVAL);
    assert_rc(pst_smtp_server_tls_started(s, "TLSv1.3", "X"), 0);
    assert_rc(pst_smtp_server_tls_started(s, "TLSv1.3", "X"), PST_ESTATE);
    assert_rc(pst_smtp_server_start(s), 0);
    pst_smtp_server_free(s);
}

static void
test_answer_validation(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_answer a = {0};
    struct drv d;

    (void)state;
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                 "RCPT TO:<x@y.example>\r\n");
    assert_int_equal(d.waiting, PST_SMTP_EV_RCPT);
    pst_buf_reset(&d.out);
    a.type = PST_SMTP_EV_MAIL;
    a.verdict = PST_SMTP_ACCEPT;
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.type = PST_SMTP_EV_RCPT;
    a.verdict = (enum pst_smtp_verdict)0;
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.verdict = PST_SMTP_REJECT;
    a.reply = "451 4.3.0 wrong class";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.reply = "550 5.1.1 x\r\nRSET";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.reply = "550";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.reply = "5501 x";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.verdict = PST_SMTP_TEMPFAIL;
    a.reply = "550 5.1.1 wrong class";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.verdict = PST_SMTP_ACCEPT;
    a.reply = "250 2.1.5 own text";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    /* Nothing was sent by the refused answers: still parked. */
    assert_int_equal(d.out.len, 0);
    assert_int_equal(pst_smtp_server_state(d.s, NULL),
                     PST_SMTP_STATE_WAIT_RCPT);
    a.reply = NULL;
    assert_rc(pst_smtp_server_answer(d.s, &a), 0);
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_ESTATE);
    d.waiting = -1;
    drv_drain(&d);
    drv_expect(&d, "250 2.1.5 Ok\r\n");
    drv_send(&d, "DATA\r\n.\r\n");
    assert_int_equal(d.waiting, PST_SMTP_EV_DATA_END);
    a.type = PST_SMTP_EV_DATA_END;
    a.queue_id = NULL;
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.queue_id = "a b";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    a.queue_id = "";
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_EINVAL);
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, "Q1");
    drv_expect(&d, "354 End data with <CR><LF>.<CR><LF>\r\n"
                   "250 2.0.0 Ok: queued as Q1\r\n");
    assert_int_equal(d.size, 0);
    drv_free(&d);
}

static void
test_received(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_received r = {
        .peer_addr = "192.0.2.1",
        .peer_name = "client.example",
        .queue_id = "4ABC",
        .date = "Tue, 2 Jan 2024 10:00:00 +0000",
    };
    struct pst_cred *cred = NULL;
    struct pst_buf out;
    struct drv d;

    (void)state;
    pst_buf_init(&out, 4096, 0);
    c.tls = PST_SMTP_TLS_STARTTLS;
    drv_new(&d, &c);
    assert_rc(pst_smtp_server_received(d.s, &r, &out), PST_ESTATE);
    drv_send(&d, "EHLO client.example\r\n");
    assert_rc(pst_smtp_server_received(d.s, &r, &out), 0);
    assert_buf_str(&out, "Received: from client.example (client.example "
                         "[192.0.2.1])\r\n"
                         "\tby mail.example.test (postern) with ESMTP id "
                         "4ABC;\r\n"
                         "\tTue, 2 Jan 2024 10:00:00 +0000\r\n");
    pst_buf_reset(&out);
    drv_send(&d, "STARTTLS\r\n");
    assert_int_equal(d.waiting, PST_SMTP_EV_STARTTLS);
    assert_rc(pst_smtp_server_tls_started(d.s, "TLSv1.3",
                                          "TLS_AES_256_GCM_SHA384"), 0);
    d.waiting = -1;
    /* RFC 3207 §4.2: the EHLO is forgotten. */
    assert_null(pst_smtp_server_helo(d.s));
    assert_rc(pst_smtp_server_received(d.s, &r, &out), PST_ESTATE);
    drv_send(&d, "EHLO [192.0.2.1]\r\n");
    assert_string_equal(pst_smtp_server_helo(d.s), "[192.0.2.1]");
    r.peer_name = NULL;
    assert_rc(pst_smtp_server_received(d.s, &r, &out), 0);
    assert_buf_str(&out, "Received: from [192.0.2.1] (unknown "
                         "[192.0.2.1])\r\n"
                         "\t(using TLSv1.3 with cipher "
                         "TLS_AES_256_GCM_SHA384)\r\n"
                         "\tby mail.example.test (postern) with ESMTPS id "
                         "4ABC;\r\n"
                         "\tTue, 2 Jan 2024 10:00:00 +0000\r\n");
    pst_buf_reset(&out);
    drv_auth_tim(&d, &cred);
    assert_int_equal(d.last_ok, 1);
    r.recipient = "x@y.example";
    r.peer_addr = "IPv6:2001:db8::1";
    assert_rc(pst_smtp_server_received(d.s, &r, &out), 0);
    assert_buf_str(&out, "Received: from [192.0.2.1] (unknown "
                         "[IPv6:2001:db8::1])\r\n"
                         "\t(using TLSv1.3 with cipher "
                         "TLS_AES_256_GCM_SHA384)\r\n"
                         "\tby mail.example.test (postern) with ESMTPSA id "
                         "4ABC\r\n"
                         "\tfor <x@y.example>; Tue, 2 Jan 2024 10:00:00 "
                         "+0000\r\n");
    pst_buf_reset(&out);
    /* Nothing unprintable reaches the header. */
    r.date = "Tue\r\nX-Evil: 1";
    assert_rc(pst_smtp_server_received(d.s, &r, &out), PST_EINVAL);
    r.date = "Tue, 2 Jan 2024 10:00:00 +0000";
    r.queue_id = "4A BC";
    assert_rc(pst_smtp_server_received(d.s, &r, &out), PST_EINVAL);
    r.queue_id = NULL;
    assert_rc(pst_smtp_server_received(d.s, &r, &out), PST_EINVAL);
    r.queue_id = "4ABC";
    r.peer_addr = NULL;
    assert_rc(pst_smtp_server_received(d.s, &r, &out), PST_EINVAL);
    assert_int_equal(out.len, 0);
    drv_free(&d);
    pst_cred_free(cred);
    cred = NULL;

    /* ESMTPA: authenticated without TLS; SMTP after HELO. */
    c = base_config();
    drv_new(&d, &c);
    drv_send(&d, "EHLO client.example\r\n");
    drv_auth_tim(&d, &cred);
    r.peer_addr = "192.0.2.1";
    r.recipient = NULL;
    assert_rc(pst_smtp_server_received(d.s, &r, &out), 0);
    assert_non_null(strstr((const char *)out.data, " with ESMTPA id 4ABC;"));
    pst_buf_reset(&out);
    drv_send(&d, "HELO client.example\r\n");
    assert_rc(pst_smtp_server_received(d.s, &r, &out), 0);
    assert_non_null(strstr((const char *)out.data, " with SMTP id 4ABC;"));
    drv_free(&d);
    pst_cred_free(cred);
    pst_buf_clear(&out);
}

struct trace_log {
    struct pst_buf text; /* "K:line\n" for each trace call */
};

static void
trace_cb(void *ctx, enum pst_smtp_trace what, const char *text, size_t len)
{
    struct trace_log *log = ctx;
    static const char kinds[] = "CSX";

    pst_buf_append_byte(&log->text, (uint8_t)kinds[what]);
    pst_buf_append_byte(&log->text, ':');
    pst_buf_append(&log->text, text, len);
    pst_buf_append_byte(&log->text, '\n');
}

static void
test_trace_redaction(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct trace_log log;
    struct pst_cred *cred = NULL;
    const char *mech = NULL;
    enum pst_smtp_state prev;
    struct drv d;

    (void)state;
    pst_buf_init(&log.text, 1 << 20, 0);
    c.trace = trace_cb;
    c.trace_ctx = &log;
    drv_new(&d, &c);
    drv_send(&d, "EHLO client.example\r\n");
    assert_null(pst_smtp_server_user(d.s, &mech));
    assert_null(mech);
    drv_send(&d, "AUTH PLAIN\r\n");
    assert_rc(pst_cred_parse("{PLAIN}tanstaaftanstaaf", 23, &cred), 0);
    drv_send(&d, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    drv_answer(&d, PST_SMTP_ACCEPT, cred, NULL);
    assert_int_equal(pst_smtp_server_state(d.s, &prev),
                     PST_SMTP_STATE_WAIT_VERIFY);
    assert_int_equal(prev, PST_SMTP_STATE_WAIT_LOOKUP);
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, NULL);
    assert_string_equal(pst_smtp_server_user(d.s, &mech), "tim");
    assert_string_equal(mech, "PLAIN");
    drv_send(&d, "QUIT\r\n");
    assert_int_equal(d.counts[PST_SMTP_EV_CLOSE], 1);
    assert_int_equal(pst_buf_append(&log.text, "", 0), 0);
    assert_string_equal((const char *)log.text.data,
                        "S:220 mail.example.test ESMTP ready\n"
                        "X:new -> greeting\n"
                        "C:EHLO client.example\n"
                        "X:greeting -> idle\n"
                        "S:250-mail.example.test\n"
                        "S:250-PIPELINING\n"
                        "S:250-SIZE\n"
                        "S:250-8BITMIME\n"
                        "S:250-AUTH PLAIN\n"
                        "S:250 ENHANCEDSTATUSCODES\n"
                        "C:AUTH PLAIN\n"
                        "S:334 \n"
                        "X:idle -> auth\n"
                        "C:********\n"
                        "X:auth -> wait-lookup\n"
                        "X:wait-lookup -> wait-verify\n"
                        "S:235 2.7.0 Authentication successful\n"
                        "X:wait-verify -> idle\n"
                        "C:QUIT\n"
                        "S:221 2.0.0 Bye\n"
                        "X:idle -> closed\n");
    drv_free(&d);

    /* The initial response is redacted too. */
    pst_buf_reset(&log.text);
    drv_new(&d, &c);
    drv_send(&d, "EHLO client.example\r\n");
    drv_send(&d, "auth plain AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    assert_int_equal(pst_buf_append(&log.text, "", 0), 0);
    assert_non_null(strstr((const char *)log.text.data,
                           "C:auth plain ********\n"));
    assert_null(strstr((const char *)log.text.data, "AHRpbQ"));
    drv_free(&d);
    pst_cred_free(cred);
    pst_buf_clear(&log.text);
}

/* Input is taken up to its limit while parked; output is bounded. */
static void
test_input_and_output_limits(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_buf noops;
    struct pst_smtp_answer a = {.type = PST_SMTP_EV_RCPT,
                                .verdict = PST_SMTP_ACCEPT};
    struct pst_smtp_event ev;
    const uint8_t *p;
    size_t used, len, total = 0, pending;
    unsigned replies = 0, rounds = 0;
    int rc;
    struct drv d;

    (void)state;
    pst_buf_init(&noops, 1 << 20, 0);
    for (int i = 0; i < 4000; i++)
        pst_buf_append_str(&noops, "NOOP\r\n");
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                 "RCPT TO:<x@y.example>\r\n");
    assert_int_equal(d.waiting, PST_SMTP_EV_RCPT);
    pst_buf_reset(&d.out);
    assert_rc(pst_smtp_server_feed(d.s, noops.data, noops.len, &used), 0);
    assert_int_equal(used, PST_SMTP_MAX_INPUT);
    assert_rc(pst_smtp_server_feed(d.s, noops.data + used, 10, &len), 0);
    assert_int_equal(len, 0);
    assert_rc(pst_smtp_server_next_event(d.s, &ev), 0);
    assert_rc(pst_smtp_server_answer(d.s, &a), 0);
    /* The replies pile up to the high-water mark, then the session
     * waits for the driver to send them. */
    for (;;) {
        while ((rc = pst_smtp_server_next_event(d.s, &ev)) == 1)
            ;
        assert_rc(rc, 0);
        pst_smtp_server_output(d.s, &p, &pending);
        if (pending == 0) {
            if (used == noops.len)
                break;
            assert_rc(pst_smtp_server_feed(d.s, noops.data + used,
                                           noops.len - used, &len), 0);
            used += len;
            continue;
        }
        assert_true(pending < 16384 + 1024);
        for (size_t i = 0; i + 1 < pending; i++)
            if (p[i] == '\r' && p[i + 1] == '\n')
                replies++;
        total += pending;
        /* Consume in two halves to move the rest forward. */
        pst_smtp_server_consume(d.s, pending / 2);
        pst_smtp_server_output(d.s, &p, &len);
        assert_int_equal(len, pending - pending / 2);
        pst_smtp_server_consume(d.s, len + 100);
        rounds++;
    }
    assert_true(rounds > 2);
    /* 250 2.1.5 for the RCPT, then one 250 per NOOP. */
    assert_int_equal(replies, 4001);
    assert_int_equal(total, 14 + 4000 * 14);
    drv_free(&d);
    pst_buf_clear(&noops);
}

static void
test_close_reasons(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_answer a = {.type = PST_SMTP_EV_RCPT,
                                .verdict = PST_SMTP_ACCEPT};
    struct pst_smtp_server *s;
    struct pst_smtp_event ev;
    size_t used;
    struct drv d;

    (void)state;
    /* RFC 5321 §3.1: 421 instead of the greeting. */
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    assert_rc(pst_smtp_server_close(s, PST_SMTP_CLOSE_BUSY), 0);
    assert_rc(pst_smtp_server_next_event(s, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_EV_CLOSE);
    assert_rc(pst_smtp_server_next_event(s, &ev), 0);
    assert_rc(pst_smtp_server_feed(s, (const uint8_t *)"EHLO x\r\n", 8,
                                   &used), 0);
    assert_int_equal(used, 8);
    assert_rc(pst_smtp_server_next_event(s, &ev), 0);
    {
        const uint8_t *p;
        size_t len;

        assert_int_equal(pst_smtp_server_output(s, &p, &len), 1);
        assert_bytes_equal(p, len,
                           "421 4.7.0 mail.example.test Error: too many "
                           "connections, try again later\r\n",
                           74);
    }
    assert_int_equal(pst_smtp_server_state(s, NULL), PST_SMTP_STATE_CLOSED);
    pst_smtp_server_free(s);

    /* The throttle's lockout: the same, with its own text. */
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    assert_rc(pst_smtp_server_start(s), 0);
    assert_rc(pst_smtp_server_close(s, PST_SMTP_CLOSE_AUTH_LOCKOUT), 0);
    assert_rc(pst_smtp_server_next_event(s, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_EV_CLOSE);
    {
        const uint8_t *p;
        size_t len;
        static const char want[] =
            "220 mail.example.test ESMTP ready\r\n"
            "421 4.7.0 mail.example.test Error: too many failed "
            "authentications, try again later\r\n";

        assert_int_equal(pst_smtp_server_output(s, &p, &len), 1);
        assert_bytes_equal(p, len, want, sizeof(want) - 1);
    }
    pst_smtp_server_free(s);

    /* A timeout in the middle of the message. */
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                 "RCPT TO:<x@y.example>\r\n");
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, NULL);
    drv_send(&d, "DATA\r\nSubject: x\r\n\r\nhal");
    assert_int_equal(d.counts[PST_SMTP_EV_DATA], 2);
    pst_buf_reset(&d.out);
    assert_rc(pst_smtp_server_close(d.s, PST_SMTP_CLOSE_TIMEOUT), 0);
    drv_drain(&d);
    drv_expect(&d, "421 4.4.2 mail.example.test Error: timeout "
                   "exceeded\r\n");
    assert_int_equal(d.counts[PST_SMTP_EV_CLOSE], 1);
    assert_int_equal(d.counts[PST_SMTP_EV_DATA_END], 0);
    drv_send(&d, "f\r\n.\r\nQUIT\r\n");
    assert_int_equal(d.out.len, 0);
    assert_rc(pst_smtp_server_close(d.s, PST_SMTP_CLOSE_TIMEOUT),
              PST_ESTATE);
    drv_free(&d);

    /* Shutting down while parked drops the question. */
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                 "RCPT TO:<x@y.example>\r\n");
    assert_int_equal(d.waiting, PST_SMTP_EV_RCPT);
    pst_buf_reset(&d.out);
    assert_rc(pst_smtp_server_close(d.s, PST_SMTP_CLOSE_SHUTDOWN), 0);
    assert_rc(pst_smtp_server_answer(d.s, &a), PST_ESTATE);
    d.waiting = -1;
    drv_drain(&d);
    drv_expect(&d, "421 4.3.2 mail.example.test Service shutting down\r\n");
    assert_int_equal(d.counts[PST_SMTP_EV_CLOSE], 1);
    drv_free(&d);
}

/* RFC 2920 §3.2: the output says when a group has ended. */
static void
test_flush_hint(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_server *s;
    struct pst_smtp_event ev;
    const uint8_t *p;
    size_t len, used;

    (void)state;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    assert_int_equal(pst_smtp_server_output(s, &p, &len), 0);
    assert_int_equal(len, 0);
    assert_null(p);
    assert_rc(pst_smtp_server_start(s), 0);
    assert_int_equal(pst_smtp_server_output(s, &p, &len), 1);
    pst_smtp_server_consume(s, len);
    pst_smtp_server_feed(s, (const uint8_t *)"EHLO c.example\r\n", 16,
                         &used);
    assert_rc(pst_smtp_server_next_event(s, &ev), 0);
    assert_int_equal(pst_smtp_server_output(s, &p, &len), 1);
    pst_smtp_server_consume(s, len);
    pst_smtp_server_feed(s, (const uint8_t *)"MAIL FROM:<>\r\n", 14, &used);
    assert_rc(pst_smtp_server_next_event(s, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_EV_MAIL);
    assert_int_equal(ev.need_answer, 0);
    assert_string_equal(ev.address, "");
    assert_rc(pst_smtp_server_next_event(s, &ev), 0);
    /* MAIL does not end a group: the reply may wait. */
    assert_int_equal(pst_smtp_server_output(s, &p, &len), 0);
    assert_bytes_equal(p, len, "250 2.1.0 Ok\r\n", 14);
    pst_smtp_server_feed(s, (const uint8_t *)"NOOP\r\n", 6, &used);
    assert_rc(pst_smtp_server_next_event(s, &ev), 0);
    assert_int_equal(pst_smtp_server_output(s, &p, &len), 1);
    assert_int_equal(len, 28);
    pst_smtp_server_consume(s, len);
    pst_smtp_server_free(s);
}

/* Every mechanism, through the SMTP framing, against our own client. */
static int
interop_run(const char *mech_name, int use_ir, const char *password,
            struct drv *d)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(mech_name,
                                                       strlen(mech_name));
    struct pst_smtp_server_config c = base_config();
    struct pst_sasl_client_config cc = {
        .authcid = "user",
        .password = (const uint8_t *)password,
        .password_len = strlen(password),
        .host = HOST,
    };
    static const char cred_text[] = "{PLAIN}pencil";
    struct pst_sasl_client *cl;
    struct pst_cred *cred;
    struct pst_buf msg, line, chal;
    int rc, guard;

    assert_non_null(m);
    c.mechs = NULL; /* all of them */
    c.auth = PST_SMTP_AUTH_REQUIRED;
    drv_new(d, &c);
    assert_rc(pst_cred_parse(cred_text, strlen(cred_text), &cred), 0);
    assert_rc(pst_sasl_client_new(m, &cc, &cl), 0);
    pst_buf_init(&msg, 1 << 16, 1);
    pst_buf_init(&line, 1 << 16, 0);
    pst_buf_init(&chal, 1 << 16, 0);
    drv_send(d, "EHLO client.example\r\n");
    pst_buf_reset(&d->out);
    pst_buf_printf(&line, "AUTH %s", mech_name);
    if (use_ir && (pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST)) {
        assert_rc(pst_sasl_client_step(cl, NULL, 0, &msg),
                  PST_SASL_CONTINUE);
        if (msg.len == 0)
            pst_buf_append_str(&line, " =");
        else {
            pst_buf_append_str(&line, " ");
            pst_base64_encode(msg.data, msg.len, &line);
        }
    }
    pst_buf_append_str(&line, "\r\n");
    drv_send_bytes(d, line.data, line.len);
    for (guard = 0; guard < 20; guard++) {
        if (d->waiting == PST_SMTP_EV_AUTH_LOOKUP) {
            drv_answer(d, PST_SMTP_ACCEPT, cred, NULL);
            continue;
        }
        if (d->waiting == PST_SMTP_EV_AUTH_VERIFY) {
            drv_answer(d, pst_cred_verify(cred, d->user, d->pw,
                                          d->pw_len) == 0
                              ? PST_SMTP_ACCEPT
                              : PST_SMTP_REJECT,
                       NULL, NULL);
            continue;
        }
        if (d->out.len >= 4 && memcmp(d->out.data, "334 ", 4) == 0) {
            pst_buf_reset(&chal);
            assert_rc(pst_base64_decode(d->out.data + 4, d->out.len - 6,
                                        &chal), 0);
            pst_buf_reset(&d->out);
            rc = pst_sasl_client_step(cl, chal.data != NULL
                                              ? chal.data
                                              : (const uint8_t *)"",
                                      chal.len, &msg);
            assert_true(rc == PST_SASL_CONTINUE || rc == PST_SASL_DONE);
            pst_buf_reset(&line);
            pst_base64_encode(msg.data, msg.len, &line);
            pst_buf_append_str(&line, "\r\n");
            drv_send_bytes(d, line.data, line.len);
            continue;
        }
        break;
    }
    rc = d->last_ok && d->counts[PST_SMTP_EV_AUTH_RESULT] == 1 &&
                 pst_sasl_client_finish(cl) == 0
             ? 0
             : -1;
    pst_sasl_client_free(cl);
    pst_cred_free(cred);
    pst_buf_clear(&msg);
    pst_buf_clear(&line);
    pst_buf_clear(&chal);
    return rc;
}

static void
test_mechanism_interop(void **state)
{
    static const char *const mechs[] = {
        "PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1",
        "SCRAM-SHA-256",
    };
    struct drv d;

    (void)state;
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
        for (int ir = 0; ir <= 1; ir++) {
            if (interop_run(mechs[i], ir, "pencil", &d) != 0) {
                fprintf(stderr, "%s ir=%d: output \"%.*s\"\n", mechs[i],
                        ir, (int)d.out.len, (const char *)d.out.data);
                fail_msg("%s with the right password failed", mechs[i]);
            }
            drv_expect(&d, "235 2.7.0 Authentication successful\r\n");
            assert_string_equal(pst_smtp_server_user(d.s, NULL), "user");
            drv_free(&d);
            assert_int_equal(interop_run(mechs[i], ir, "pencil2", &d), -1);
            assert_int_equal(d.counts[PST_SMTP_EV_AUTH_RESULT], 1);
            assert_null(pst_smtp_server_user(d.s, NULL));
            /* SCRAM and DIGEST-MD5 clients see the mismatch in the
             * server's refusal; all end in 535 5.7.8. */
            assert_non_null(strstr((const char *)d.out.data,
                                   "535 5.7.8 Authentication credentials "
                                   "invalid\r\n"));
            drv_free(&d);
        }
    }
}

/* A large message, checked byte for byte after dot-unstuffing. */
static void
test_large_message(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_buf wire, want;
    const unsigned lines = 20000;
    struct drv d;

    (void)state;
    pst_buf_init(&wire, 1 << 24, 0);
    pst_buf_init(&want, 1 << 24, 0);
    for (unsigned i = 0; i < lines; i++) {
        char text[1001];
        size_t n = (i * 7919u) % 997;

        for (size_t k = 0; k < n; k++)
            text[k] = (char)(' ' + (i + k) % 95);
        if (n > 0 && i % 5 == 0)
            text[0] = '.';
        pst_buf_append(&want, text, n);
        pst_buf_append_str(&want, "\r\n");
        /* RFC 5321 §4.5.2: the client doubles a leading dot. */
        if (n > 0 && text[0] == '.')
            pst_buf_append_byte(&wire, '.');
        pst_buf_append(&wire, text, n);
        pst_buf_append_str(&wire, "\r\n");
    }
    pst_buf_append_str(&wire, ".\r\n");
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                 "RCPT TO:<x@y.example>\r\n");
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, NULL);
    drv_send(&d, "DATA\r\n");
    for (size_t off = 0; off < wire.len;) {
        size_t n = wire.len - off < 4099 ? wire.len - off : 4099, used;

        assert_rc(pst_smtp_server_feed(d.s, wire.data + off, n, &used), 0);
        off += used;
        drv_drain(&d);
    }
    assert_int_equal(d.waiting, PST_SMTP_EV_DATA_END);
    assert_int_equal(d.counts[PST_SMTP_EV_DATA], lines);
    assert_int_equal(d.size, want.len);
    assert_bytes_equal(d.data.data, d.data.len, want.data, want.len);
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, "LARGE1");
    assert_non_null(strstr((const char *)d.out.data,
                           "250 2.0.0 Ok: queued as LARGE1\r\n"));
    drv_free(&d);
    pst_buf_clear(&wire);
    pst_buf_clear(&want);
}

/* --- Memory ------------------------------------------------------------- */

/* What an idle session may keep in its buffers (the small-sessions issue:
 * no full-size input buffer up front, buffers shrink back). */
#define SMALL_BUFFERS 1024

static size_t
drv_buffers(const struct drv *d)
{
    return pst__smtp_server_buffer_bytes(d->s);
}

static void
assert_small(const struct drv *d, const char *when)
{
    size_t n = drv_buffers(d);

    if (n > SMALL_BUFFERS)
        fail_msg("%s: got %zu buffer bytes, want at most %d", when, n,
                 SMALL_BUFFERS);
}

/* Nothing is allocated before the client sends; EHLO leaves little. */
static void
test_memory_idle(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_server *s;
    struct pst_cred *cred = NULL;
    struct drv d;

    (void)state;
    assert_rc(pst_smtp_server_new(&c, &s), 0);
    assert_int_equal(pst__smtp_server_buffer_bytes(s), 0);
    pst_smtp_server_free(s);
    drv_new(&d, &c);
    assert_small(&d, "after the greeting");
    drv_send(&d, "EHLO c.example\r\n");
    assert_non_null(strstr((const char *)d.out.data,
                           "250 ENHANCEDSTATUSCODES\r\n"));
    assert_small(&d, "after EHLO");
    /* The SASL messages go when the exchange ends. */
    drv_auth_tim(&d, &cred);
    assert_int_equal(d.last_ok, 1);
    assert_small(&d, "after AUTH");
    drv_free(&d);
    pst_cred_free(cred);
}

/* long_lines = fold: a line of PST_SMTP_MAX_FOLD_LINE octets passes in
 * pieces, one more octet is refused; a far longer one too, and the session
 * reads on after it. */
static void
test_fold_cap(void **state)
{
    static const struct {
        size_t len;
        unsigned pieces;
        int ok;
    } v[] = {
        {PST_SMTP_MAX_FOLD_LINE, 66, 1},
        {PST_SMTP_MAX_FOLD_LINE + 1, 65, 0},
        {200000, 65, 0},
    };
    struct pst_smtp_server_config c = base_config();

    (void)state;
    c.long_lines = PST_SMTP_LONG_LINES_FOLD;
    for (size_t t = 0; t < sizeof(v) / sizeof(v[0]); t++) {
        struct pst_buf wire;
        struct drv d;

        pst_buf_init(&wire, 1 << 20, 0);
        for (size_t i = 0; i < v[t].len; i++)
            pst_buf_append_byte(&wire, (uint8_t)('a' + i % 26));
        pst_buf_append_str(&wire, "\r\nnext\r\n.\r\n");
        drv_new(&d, &c);
        drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                     "RCPT TO:<x@y.example>\r\n");
        drv_answer(&d, PST_SMTP_ACCEPT, NULL, NULL);
        drv_send(&d, "DATA\r\n");
        for (size_t off = 0; off < wire.len;) {
            size_t n = wire.len - off < 3001 ? wire.len - off : 3001, used;

            assert_rc(pst_smtp_server_feed(d.s, wire.data + off, n, &used),
                      0);
            off += used;
            drv_drain(&d);
        }
        if (v[t].ok) {
            assert_int_equal(d.waiting, PST_SMTP_EV_DATA_END);
            /* The pieces and "next". */
            assert_int_equal(d.counts[PST_SMTP_EV_DATA], v[t].pieces + 1);
            assert_int_equal(d.size, v[t].len + 2 * v[t].pieces + 6);
            /* The line comes back whole once the folds are taken out. */
            for (size_t i = 0, k = 0; i < d.data.len; i++) {
                if (d.data.data[i] == '\r' || d.data.data[i] == '\n')
                    continue;
                if (k < v[t].len)
                    assert_int_equal(d.data.data[i], 'a' + k % 26);
                k++;
            }
            drv_answer(&d, PST_SMTP_ACCEPT, NULL, "FOLD1");
        } else {
            assert_int_equal(d.waiting, -1);
            assert_int_equal(d.counts[PST_SMTP_EV_DATA], v[t].pieces);
            assert_int_equal(d.counts[PST_SMTP_EV_DATA_ABORT], 1);
            assert_non_null(strstr((const char *)d.out.data,
                                   "500 5.5.6 Error: message line too "
                                   "long\r\n"));
        }
        assert_int_equal(pst_smtp_server_compat_used(d.s),
                         PST_SMTP_COMPAT_LONG_LINES);
        drv_send(&d, "NOOP\r\n");
        assert_non_null(strstr((const char *)d.out.data,
                               "250 2.0.0 Ok\r\n"));
        /* The copy of the last piece is given back with the message. */
        assert_small(&d, "after a folded message");
        drv_free(&d);
        pst_buf_clear(&wire);
    }
}

/* The input grows with a pending line and shrinks when it is done. */
static void
test_memory_long_line(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_buf line;
    struct drv d;

    (void)state;
    pst_buf_init(&line, 1 << 16, 0);
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\n");
    pst_buf_reset(&d.out);
    /* RFC 4954 §4: an AUTH line may be 12288 octets; 10 KiB of it is a
     * partial line the session must keep. */
    pst_buf_append_str(&line, "AUTH PLAIN ");
    for (int i = 0; i < 10240; i++)
        pst_buf_append_byte(&line, 'A');
    drv_send_bytes(&d, line.data, line.len);
    assert_int_equal(d.out.len, 0);
    if (drv_buffers(&d) < line.len)
        fail_msg("partial line: got %zu buffer bytes, want at least %zu",
                 drv_buffers(&d), line.len);
    /* 7680 zero octets are no PLAIN message: 501 (the line was whole,
     * not cut at a buffer boundary). */
    drv_send(&d, "\r\n");
    drv_expect(&d, "501 5.5.2 Malformed authentication response\r\n");
    assert_small(&d, "after the long AUTH line");
    /* An overlong command is dropped as it comes, without growing the
     * buffer for good, and still gets its 500 at its end. */
    pst_buf_reset(&line);
    for (int i = 0; i < 10240; i++)
        pst_buf_append_byte(&line, 'x');
    drv_send_bytes(&d, line.data, line.len);
    assert_int_equal(d.out.len, 0);
    assert_small(&d, "while discarding an overlong line");
    drv_send_bytes(&d, line.data, 100);
    drv_send(&d, "\r\nNOOP\r\n");
    drv_expect(&d, "500 5.5.6 Error: line too long\r\n250 2.0.0 Ok\r\n");
    assert_small(&d, "after the overlong line");
    drv_free(&d);
    pst_buf_clear(&line);
}

/* A 1 MiB message fed in 4 KiB pieces: the input holds a piece and a
 * partial line, never the whole limit, and shrinks at the end. */
static void
test_memory_data(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_buf wire;
    size_t peak = 0, want_size = 0;
    struct drv d;

    (void)state;
    pst_buf_init(&wire, 1 << 22, 0);
    for (unsigned i = 0; wire.len < (1u << 20); i++) {
        char text[80];
        int n = snprintf(text, sizeof(text), "line %u of the message, "
                         "padded to a usual width ........................",
                         i);

        pst_buf_append(&wire, text, (size_t)n);
        pst_buf_append_str(&wire, "\r\n");
        want_size += (size_t)n + 2;
    }
    pst_buf_append_str(&wire, ".\r\n");
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                 "RCPT TO:<x@y.example>\r\n");
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, NULL);
    drv_send(&d, "DATA\r\n");
    assert_small(&d, "after DATA");
    for (size_t off = 0; off < wire.len;) {
        size_t n = wire.len - off < 4096 ? wire.len - off : 4096, used;

        assert_rc(pst_smtp_server_feed(d.s, wire.data + off, n, &used), 0);
        assert_int_equal(used, n);
        if (drv_buffers(&d) > peak)
            peak = drv_buffers(&d);
        off += used;
        drv_drain(&d);
    }
    if (peak < 4096 || peak >= PST_SMTP_MAX_INPUT)
        fail_msg("DATA: got a peak of %zu buffer bytes, want 4096 to %d",
                 peak, PST_SMTP_MAX_INPUT - 1);
    assert_int_equal(d.waiting, PST_SMTP_EV_DATA_END);
    assert_int_equal(d.size, want_size);
    assert_int_equal(d.data.len, want_size);
    assert_small(&d, "waiting for the message to be stored");
    drv_answer(&d, PST_SMTP_ACCEPT, NULL, "MEM1");
    assert_non_null(strstr((const char *)d.out.data,
                           "250 2.0.0 Ok: queued as MEM1\r\n"));
    assert_small(&d, "after the message");
    drv_free(&d);
    pst_buf_clear(&wire);
}

/* Pipelined replies fill the output to the high-water mark; once sent,
 * the output buffer goes back to small. */
static void
test_memory_output(void **state)
{
    struct pst_smtp_server_config c = base_config();
    struct pst_smtp_event ev;
    struct pst_buf noops;
    const uint8_t *p;
    size_t used, len, sent = 0;
    struct drv d;
    int rc;

    (void)state;
    pst_buf_init(&noops, 1 << 16, 0);
    while (noops.len + 6 <= PST_SMTP_MAX_INPUT)
        pst_buf_append_str(&noops, "NOOP\r\n");
    drv_new(&d, &c);
    drv_send(&d, "EHLO c.example\r\n");
    pst_buf_reset(&d.out);
    assert_rc(pst_smtp_server_feed(d.s, noops.data, noops.len, &used), 0);
    assert_int_equal(used, noops.len);
    while ((rc = pst_smtp_server_next_event(d.s, &ev)) == 1)
        ;
    assert_rc(rc, 0);
    /* Flow control as before: the session stopped at 16 KiB unsent. */
    pst_smtp_server_output(d.s, &p, &len);
    assert_true(len >= 16384 && len < 16384 + 14);
    if (drv_buffers(&d) < len)
        fail_msg("burst: got %zu buffer bytes, want at least %zu",
                 drv_buffers(&d), len);
    for (;;) {
        pst_smtp_server_output(d.s, &p, &len);
        if (len == 0)
            break;
        sent += len;
        pst_smtp_server_consume(d.s, len);
        while ((rc = pst_smtp_server_next_event(d.s, &ev)) == 1)
            ;
        assert_rc(rc, 0);
    }
    /* One "250 2.0.0 Ok" per NOOP. */
    assert_int_equal(sent, noops.len / 6 * 14);
    assert_small(&d, "after the burst was sent");
    drv_free(&d);
    pst_buf_clear(&noops);
}

/* Random input never breaks the session (run under ASan/UBSan). */
static void
test_random_input(void **state)
{
    static const char *const words[] = {
        "EHLO c.example\r\n", "HELO c\r\n", "MAIL FROM:<a@b.example>\r\n",
        "RCPT TO:<x@y.example>\r\n", "DATA\r\n", ".\r\n", "\r\n", "\n",
        "\r", ".", "..x\r\n", "AUTH PLAIN\r\n", "AUTH LOGIN\r\n",
        "AUTH CRAM-MD5\r\n", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n", "*\r\n",
        "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n", "STARTTLS\r\n",
        "RSET\r\n", "NOOP\r\n", "VRFY x\r\n", "QUIT\r\n", "dGlt\r\n",
        "MAIL FROM:<> SIZE=99999999999999999999999\r\n", "=\r\n",
        "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
        "RCPT TO:<x@y.example>\r\nDATA\r\n",
        "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
        "RCPT TO:<x@y.example>\r\nDATA\r\n",
        "Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\n",
        "Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\n",
    };
    struct pst_smtp_server_config c = base_config();
    struct pst_cred *cred;
    uint32_t rng = 12345;
    unsigned seen[16] = {0};

    (void)state;
    c.tls = PST_SMTP_TLS_STARTTLS;
    c.mechs = NULL;
    c.max_message_size = 5000;
    assert_rc(pst_cred_parse("{PLAIN}tanstaaftanstaaf", 23, &cred), 0);
    for (int session = 0; session < 300; session++) {
        struct pst_smtp_server *s;
        struct pst_smtp_event ev;
        int closed = 0;

        /* The exceptions of a compatibility profile, in some sessions. */
        c.helo_auth = session % 2;
        c.bare_lf = (enum pst_smtp_bare_lf)(session % 3 == 1);
        c.long_lines = (enum pst_smtp_long_lines)(session % 5 >= 3);
        assert_rc(pst_smtp_server_new(&c, &s), 0);
        assert_rc(pst_smtp_server_start(s), 0);
        for (int round = 0; round < 200 && !closed; round++) {
            uint8_t buf[700];
            size_t n = 0, used;
            uint32_t x = next_rand(&rng);
            int rc;

            if (x % 4 == 0) {
                n = 1 + (x >> 4) % sizeof(buf);
                for (size_t i = 0; i < n; i++)
                    buf[i] = (uint8_t)next_rand(&rng);
            } else {
                const char *w = words[(x >> 4) % (sizeof(words) /
                                                  sizeof(words[0]))];

                n = strlen(w);
                memcpy(buf, w, n);
            }
            pst_smtp_server_feed(s, buf, n, &used);
            while ((rc = pst_smtp_server_next_event(s, &ev)) == 1) {
                struct pst_smtp_answer a = {
                    .type = ev.type,
                    .verdict = (enum pst_smtp_verdict)(1 + next_rand(&rng)
                                                               % 4 % 3),
                    .cred = cred,
                    .queue_id = "Q",
                };

                seen[ev.type]++;
                if (ev.type == PST_SMTP_EV_CLOSE)
                    closed = 1;
                /* One line, CRLF only at its end, whatever the options
                 * (no smuggled end of data, CVE-2023-51764). */
                if (ev.type == PST_SMTP_EV_DATA)
                    assert_true(ev.len >= 2 &&
                                ev.len <= PST_SMTP_MAX_TEXT_LINE &&
                                ev.data[ev.len - 2] == '\r' &&
                                ev.data[ev.len - 1] == '\n' &&
                                memchr(ev.data, '\r', ev.len - 2) == NULL &&
                                memchr(ev.data, '\n', ev.len - 2) == NULL);
                if (!ev.need_answer)
                    continue;
                if (ev.type == PST_SMTP_EV_STARTTLS)
                    assert_rc(pst_smtp_server_tls_started(s, "TLSv1.2",
                                                          "C"), 0);
                else
                    assert_rc(pst_smtp_server_answer(s, &a), 0);
            }
            assert_rc(rc, 0);
            {
                const uint8_t *p;
                size_t len;

                pst_smtp_server_output(s, &p, &len);
                if (len > 0)
                    assert_true(len >= 2 && p[len - 2] == '\r' &&
                                p[len - 1] == '\n');
                pst_smtp_server_consume(s, len);
            }
        }
        pst_smtp_server_free(s);
    }
    pst_cred_free(cred);
    /* The input reached every kind of event. */
    for (int t = PST_SMTP_EV_STARTTLS; t <= PST_SMTP_EV_CLOSE; t++) {
        if (seen[t] == 0)
            fail_msg("no %s event", event_name(t));
    }
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(pst_smtp_state_name(PST_SMTP_STATE_NEW), "new");
    assert_string_equal(pst_smtp_state_name(PST_SMTP_STATE_WAIT_TLS),
                        "wait-tls");
    assert_string_equal(pst_smtp_state_name(PST_SMTP_STATE_CLOSED),
                        "closed");
    assert_string_equal(pst_smtp_state_name((enum pst_smtp_state)99),
                        "unknown");
    assert_string_equal(pst_smtp_event_name(PST_SMTP_EV_STARTTLS),
                        "STARTTLS");
    assert_string_equal(pst_smtp_event_name(PST_SMTP_EV_DATA_ABORT),
                        "DATA_ABORT");
    assert_string_equal(pst_smtp_event_name(PST_SMTP_EV_CLOSE), "CLOSE");
    assert_string_equal(pst_smtp_event_name((enum pst_smtp_event_type)99),
                        "UNKNOWN");
}

/* --- main ---------------------------------------------------------------- */

static int transcripts_found;

/* A missing or emptied directory must not pass as "nothing to test". */
static void
test_transcripts_found(void **state)
{
    (void)state;
    if (transcripts_found < 40)
        fail_msg("got %d transcripts in %s, want at least 40",
                 transcripts_found, TRANSCRIPT_DIR);
}

static int
is_transcript(const struct dirent *e)
{
    size_t n = strlen(e->d_name);

    return n > 4 && strcmp(e->d_name + n - 4, ".txt") == 0;
}

int
main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_api_misuse),
        cmocka_unit_test(test_answer_validation),
        cmocka_unit_test(test_received),
        cmocka_unit_test(test_trace_redaction),
        cmocka_unit_test(test_input_and_output_limits),
        cmocka_unit_test(test_close_reasons),
        cmocka_unit_test(test_flush_hint),
        cmocka_unit_test(test_mechanism_interop),
        cmocka_unit_test(test_large_message),
        cmocka_unit_test(test_memory_idle),
        cmocka_unit_test(test_memory_long_line),
        cmocka_unit_test(test_memory_data),
        cmocka_unit_test(test_memory_output),
        cmocka_unit_test(test_fold_cap),
        cmocka_unit_test(test_random_input),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_transcripts_found),
    };
    struct dirent **names = NULL;
    struct CMUnitTest *tests;
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), n = 0;
    int count, rc;

    count = scandir(TRANSCRIPT_DIR, &names, is_transcript, alphasort);
    if (count < 0) {
        fprintf(stderr, "cannot read %s: %s\n", TRANSCRIPT_DIR,
                strerror(errno));
        count = 0;
    }
    tests = calloc(nfixed + (size_t)count + 1, sizeof(*tests));
    if (tests == NULL)
        return 1;
    for (size_t i = 0; i < nfixed; i++)
        tests[n++] = fixed[i];
    for (int i = 0; i < count; i++) {
        size_t len = strlen(TRANSCRIPT_DIR) + strlen(names[i]->d_name) + 2;
        char *path = malloc(len);

        if (path == NULL)
            return 1;
        snprintf(path, len, "%s/%s", TRANSCRIPT_DIR, names[i]->d_name);
        tests[n].name = strdup(names[i]->d_name);
        tests[n].test_func = test_transcript;
        tests[n].initial_state = path;
        n++;
        free(names[i]);
    }
    free(names);
    transcripts_found = count;
    rc = _cmocka_run_group_tests("smtp_server", tests, n, NULL, NULL);
    for (size_t i = nfixed; i < n; i++) {
        free((void *)tests[i].name);
        free(tests[i].initial_state);
    }
    free(tests);
    return rc;
}
