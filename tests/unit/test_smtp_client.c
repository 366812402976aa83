/*
 * The SMTP client session, driven by scripts: "S:" lines are fed as the
 * server's bytes, "C:" lines must be exactly what the client sends next
 * ("C+" lines continue a pipelined write), "E:" lines are the next event
 * ("E:FAIL EAUTH 535" checks type, error and code), "R:" text the last
 * event's reply must contain, "T" acknowledges STARTTLS, "D:" feeds
 * message bytes (last chunk), "N:from|rcpt,rcpt|size|flags" gives the
 * next message, "Q" quits (both after READY).
 * "J:" text the session's pst_smtp_client_auth_error_json() must equal
 * ("J:" alone: none).
 * Each script runs with the server's bytes fed whole, one at a time, and
 * at random split points (fixed seeds).
 *
 * The same scripts come from files too (tests/unit/transcripts/client/
 * *.txt, see client_transcript_load()): a transcript of the client side,
 * such as a peer's test suite records it.
 */
#include <dirent.h>
#include <errno.h>

#include <postern/smtp_client.h>

#include "testutil.h"

#ifndef TEST_SRCDIR
#error "TEST_SRCDIR must name tests/unit"
#endif
#define CLIENT_TRANSCRIPT_DIR TEST_SRCDIR "/transcripts/client"

struct script_cfg {
    const char *mech;
    int implicit_tls;
    int allow_plain;
    enum pst_smtp_client_starttls starttls;
    int no_auth;
    int probe;
    const char *password;
    size_t nrcpt;
    const char *const *rcpts;   /* NULL: two_rcpts */
    int trace_phases;
    int partial_rcpt;
    int reuse;
    int no_first;               /* reuse without a first message */
    const char *const *mechs;
    unsigned mail_flags;
    const char *mail_from;      /* NULL: tim@example.test */
    const char *helo;           /* NULL: client.example.test */
    const char *authcid;        /* NULL: tim */
    const char *token;          /* bearer token; NULL: none */
    const char *oauth_host;     /* OAUTHBEARER host= */
    unsigned oauth_port;        /* OAUTHBEARER port= */
};

enum split_mode { SPLIT_WHOLE, SPLIT_BYTE, SPLIT_RANDOM };

static const char *const two_rcpts[] = {"a@example.test", "b@example.test"};

static struct {
    char buf[8192];
    size_t len;
} trace;

static void
trace_cb(void *ctx, int dir, const char *line, size_t len)
{
    (void)ctx;
    if (trace.len + len + 4 < sizeof(trace.buf)) {
        trace.len += (size_t)snprintf(trace.buf + trace.len,
                                      sizeof(trace.buf) - trace.len,
                                      "%s%.*s\n",
                                      dir == PST_SMTP_CLIENT_TRACE_PHASE
                                          ? "P: "
                                      : dir == PST_SMTP_CLIENT_TRACE_OUT
                                          ? "C: "
                                          : "S: ",
                                      (int)len, line);
    }
}

static const char *
event_name(enum pst_smtp_client_event_type t)
{
    switch (t) {
    case PST_SMTP_CLIENT_EV_STARTTLS:
        return "STARTTLS";
    case PST_SMTP_CLIENT_EV_EHLO:
        return "EHLO";
    case PST_SMTP_CLIENT_EV_AUTH:
        return "AUTH";
    case PST_SMTP_CLIENT_EV_DATA:
        return "DATA";
    case PST_SMTP_CLIENT_EV_DONE:
        return "DONE";
    case PST_SMTP_CLIENT_EV_FAIL:
        return "FAIL";
    case PST_SMTP_CLIENT_EV_CLOSE:
        return "CLOSE";
    case PST_SMTP_CLIENT_EV_RCPT:
        return "RCPT";
    case PST_SMTP_CLIENT_EV_READY:
        return "READY";
    }
    return "?";
}

/* Check the client's pending output is exactly want, then consume it. */
static void
expect_output(struct pst_smtp_client *c, const char *want, int step)
{
    const uint8_t *p;
    size_t len;

    pst_smtp_client_output(c, &p, &len);
    if (len != strlen(want) || memcmp(p, want, len) != 0) {
        fprintf(stderr, "step %d: client output\n", step);
        assert_bytes_equal(p, len, want, strlen(want));
    }
    pst_smtp_client_consume(c, len);
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

/* Feed b[0..len) to the client, split as mode says. */
static void
feed_split(struct pst_smtp_client *c, const char *b, size_t len,
           enum split_mode mode, uint32_t *rng)
{
    size_t pos = 0;

    while (pos < len) {
        size_t n = len - pos;

        if (mode == SPLIT_BYTE) {
            n = 1;
        } else if (mode == SPLIT_RANDOM) {
            uint32_t x = next_rand(rng);

            n = (x % 8 == 0) ? n : 1 + (x >> 8) % 16;
            if (n > len - pos)
                n = len - pos;
        }
        assert_rc(pst_smtp_client_feed(c, (const uint8_t *)b + pos, n), 0);
        pos += n;
    }
}

/*
 * Check the "key=value" words after type, error and code on an E: line:
 * idx= (RCPT index), rcpt= (its address), enh= (the enhanced code, empty
 * for none), stage=.
 */
static void
check_event_fields(const struct pst_smtp_client_event *ev, const char *l,
                   int step)
{
    char word[256];
    int n, skip = 3;

    while (sscanf(l, " %255s%n", word, &n) == 1) {
        char got[256] = "", *eq = strchr(word, '=');

        l += n;
        if (skip > 0) {
            skip--;
            continue;
        }
        assert_non_null(eq);
        *eq = '\0';
        if (strcmp(word, "idx") == 0)
            snprintf(got, sizeof(got), "%zu", ev->rcpt_index);
        else if (strcmp(word, "rcpt") == 0)
            snprintf(got, sizeof(got), "%s",
                     ev->rcpt != NULL ? ev->rcpt : "(null)");
        else if (strcmp(word, "enh") == 0)
            snprintf(got, sizeof(got), "%s", ev->enhanced);
        else if (strcmp(word, "stage") == 0)
            snprintf(got, sizeof(got), "%s", ev->stage);
        else
            fail_msg("step %d: unknown field %s", step, word);
        if (strcmp(got, eq + 1) != 0)
            fail_msg("step %d: got %s=%s, want %s", step, word, got, eq + 1);
    }
}

/* "from|rcpt,rcpt|size|flags": pst_smtp_client_next_message(). */
static void
next_message(struct pst_smtp_client *c, const char *spec)
{
    char buf[1024], *f[4], *rcpt[16], *save = NULL;
    size_t n = 0, nrcpt = 0;

    snprintf(buf, sizeof(buf), "%s", spec);
    f[0] = buf;
    for (n = 1; n < 4; n++) {
        char *bar = strchr(f[n - 1], '|');

        assert_non_null(bar);
        *bar = '\0';
        f[n] = bar + 1;
    }
    for (char *r = strtok_r(f[1], ",", &save); r != NULL && nrcpt < 16;
         r = strtok_r(NULL, ",", &save))
        rcpt[nrcpt++] = r;
    assert_rc(pst_smtp_client_next_message(
                  c, f[0], (const char *const *)rcpt, nrcpt,
                  strtoull(f[2], NULL, 10),
                  (unsigned)strtoul(f[3], NULL, 0)),
              0);
}

static void
run_script(const struct script_cfg *sc, const char *const *script,
           enum split_mode mode, uint32_t seed, char *last_reply,
           size_t last_reply_size)
{
    struct pst_sasl_client_config sasl = {
        .authcid = sc->authcid != NULL ? sc->authcid : "tim",
        .password = (const uint8_t *)(sc->password ? sc->password
                                                   : "tanstaaftanstaaf"),
        .token = (const uint8_t *)sc->token,
        .token_len = sc->token != NULL ? strlen(sc->token) : 0,
        .oauth_host = sc->oauth_host,
        .oauth_port = sc->oauth_port,
    };
    struct pst_smtp_client_config cfg = {
        .helo = sc->helo != NULL ? sc->helo : "client.example.test",
        .starttls = sc->starttls,
        .implicit_tls = sc->implicit_tls,
        .allow_plaintext_auth = sc->allow_plain,
        .mech = sc->mech,
        .mechs = sc->mechs,
        .sasl = sc->no_auth ? NULL : &sasl,
        .probe = sc->probe,
        .mail_from = sc->no_first       ? NULL
                     : sc->mail_from != NULL ? sc->mail_from
                                             : "tim@example.test",
        .rcpt = sc->rcpts != NULL ? sc->rcpts : two_rcpts,
        .nrcpt = sc->no_first ? 0 : sc->nrcpt ? sc->nrcpt : 1,
        .partial_rcpt = sc->partial_rcpt,
        .reuse = sc->reuse,
        .mail_flags = sc->mail_flags,
        .size = 0,
        .trace = trace_cb,
        .trace_phases = sc->trace_phases,
    };
    struct pst_smtp_client *c;
    struct pst_smtp_client_event ev;
    char pending[4096] = "", last[1024] = "";
    uint32_t rng = seed;

    sasl.password_len = strlen((const char *)sasl.password);
    trace.len = 0;
    trace.buf[0] = '\0';
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    for (int i = 0; script[i] != NULL; i++) {
        const char *l = script[i];

        if (strncmp(l, "S:", 2) == 0) {
            feed_split(c, l + 2, strlen(l + 2), mode, &rng);
        } else if (strncmp(l, "C:", 2) == 0) {
            /* Consecutive C: lines form one pipelined write. */
            snprintf(pending, sizeof(pending), "%s", l + 2);
            while (script[i + 1] != NULL &&
                   strncmp(script[i + 1], "C+", 2) == 0) {
                i++;
                strncat(pending, script[i] + 2,
                        sizeof(pending) - strlen(pending) - 1);
            }
            expect_output(c, pending, i);
        } else if (strncmp(l, "E:", 2) == 0) {
            char type[16] = "", err[16] = "";
            int code = -1;

            sscanf(l + 2, "%15s %15s %d", type, err, &code);
            if (pst_smtp_client_next_event(c, &ev) != 1) {
                fprintf(stderr, "step %d: got no event, want %s\n", i, type);
                fail();
            }
            if (strcmp(event_name(ev.type), type) != 0) {
                fprintf(stderr, "step %d: got event %s (%s: %s), want %s\n",
                        i, event_name(ev.type), ev.stage, ev.reply, type);
                fail();
            }
            if (err[0] != '\0' && strcmp(err, "-") != 0 &&
                strcmp(pst_errname(ev.error), err) != 0) {
                fprintf(stderr, "step %d: got error %s (%s), want %s\n", i,
                        pst_errname(ev.error), ev.reply, err);
                fail();
            }
            if (code >= 0 && ev.code != code) {
                fprintf(stderr, "step %d: got code %d, want %d\n", i,
                        ev.code, code);
                fail();
            }
            check_event_fields(&ev, l + 2, i);
            snprintf(last, sizeof(last), "%s", ev.reply);
            if (last_reply != NULL)
                snprintf(last_reply, last_reply_size, "%s", ev.reply);
        } else if (strncmp(l, "R:", 2) == 0) {
            /* The reply text of the last event contains this. */
            if (strstr(last, l + 2) == NULL) {
                fprintf(stderr, "step %d: got reply '%s', want '%s' in "
                        "it\n", i, last, l + 2);
                fail();
            }
        } else if (strncmp(l, "J:", 2) == 0) {
            size_t jlen = 99;
            const uint8_t *j = pst_smtp_client_auth_error_json(c, &jlen);

            if (l[2] == '\0') {
                assert_null(j);
                assert_int_equal(jlen, 0);
            } else {
                assert_non_null(j);
                assert_bytes_equal(j, jlen, l + 2, strlen(l + 2));
            }
        } else if (strncmp(l, "N:", 2) == 0) {
            next_message(c, l + 2);
        } else if (strcmp(l, "Q") == 0) {
            assert_rc(pst_smtp_client_quit(c), 0);
        } else if (strcmp(l, "T") == 0) {
            assert_rc(pst_smtp_client_tls_started(c), 0);
        } else if (strncmp(l, "D:", 2) == 0) {
            assert_rc(pst_smtp_client_data(c, (const uint8_t *)l + 2,
                                           strlen(l + 2), 1),
                      0);
        } else {
            fail_msg("bad script line %s", l);
        }
    }
    /* Nothing left over. */
    if (pst_smtp_client_next_event(c, &ev) == 1) {
        fprintf(stderr, "unexpected event %s (%s)\n", event_name(ev.type),
                ev.reply);
        fail();
    }
    expect_output(c, "", -1);
    pst_smtp_client_free(c);
}

/* Run a script whole, byte by byte and at random split points. */
static void
run_all(const struct script_cfg *sc, const char *const *script)
{
    run_script(sc, script, SPLIT_WHOLE, 0, NULL, 0);
    run_script(sc, script, SPLIT_BYTE, 0, NULL, 0);
    for (uint32_t seed = 1; seed <= 3; seed++)
        run_script(sc, script, SPLIT_RANDOM, seed * 2654435761u, NULL, 0);
}

static void
test_plain_message_no_pipelining(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 8BITMIME\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 2.1.0 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 2.1.5 Ok\r\n",
        "C:DATA\r\n",
        "S:354 End data with <CR><LF>.<CR><LF>\r\n",
        "E:DATA",
        "D:Subject: x\n\n.hello\nworld\r\n.\n..\nend",
        "C:Subject: x\r\n\r\n..hello\r\nworld\r\n..\r\n...\r\nend\r\n.\r\n",
        "S:250 2.0.0 Ok: queued as ABC\r\n",
        "E:DONE OK 250",
        "C:QUIT\r\n",
        "S:221 2.0.0 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1};

    (void)state;
    run_all(&sc, script);
}

static void
test_pipelined_two_recipients(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "C+RCPT TO:<b@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x\r\n",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .nrcpt = 2};

    (void)state;
    run_all(&sc, script);
}

static void
test_recipient_refused_no_data(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "C+RCPT TO:<b@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n550 5.1.1 No such user\r\n",
        "E:FAIL EREJECT 550 enh=5.1.1 stage=RCPT",
        "R:<b@example.test>: 550 5.1.1 No such user",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .nrcpt = 2};
    char reply[256];

    (void)state;
    run_all(&sc, script);
    run_script(&sc, script, SPLIT_WHOLE, 0, reply, sizeof(reply));
    assert_string_equal(reply, "");  /* CLOSE is the last event */
}

static const char *const three_rcpts[] = {"a@example.test", "b@example.test",
                                          "c@example.test"};

static void
test_partial_rcpt(void **state)
{
    /* RFC 5321 §3.3: the message goes to the recipients accepted; each
     * RCPT's reply is an event (a relay bounces or retries each one). */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250 PIPELINING\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "C+RCPT TO:<b@example.test>\r\n",
        "C+RCPT TO:<c@example.test>\r\n",
        "S:250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
        "550-5.1.1 No such user\r\n550 5.1.1 here\r\n",
        "E:RCPT - 250 idx=0 rcpt=a@example.test enh=2.1.5 stage=RCPT",
        "R:250 2.1.5 Ok",
        "E:RCPT - 550 idx=1 rcpt=b@example.test enh=5.1.1",
        "R:550-5.1.1 No such user\n550 5.1.1 here",
        "S:451 4.3.0 Try later\r\n",
        "E:RCPT - 451 idx=2 rcpt=c@example.test enh=4.3.0",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA - 354 enh=",
        "D:x\n",
        "C:x\r\n.\r\n",
        "S:250 2.0.0 Ok: queued as X\r\n",
        "E:DONE OK 250 enh=2.0.0 stage=message",
        "C:QUIT\r\n",
        "S:221 2.0.0 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    /* Without PIPELINING, one RCPT at a time; a 251 accepts too. */
    static const char *const one_by_one[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:553 5.1.3 Bad address\r\n",
        "E:RCPT - 553 idx=0 rcpt=a@example.test enh=5.1.3",
        "C:RCPT TO:<b@example.test>\r\n",
        "S:251 User not local; will forward\r\n",
        "E:RCPT - 251 idx=1 rcpt=b@example.test enh=",
        "C:RCPT TO:<c@example.test>\r\n",
        "S:550 5.7.1 Relaying denied\r\n",
        "E:RCPT - 550 idx=2 rcpt=c@example.test enh=5.7.1",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE OK 250",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .nrcpt = 3, .rcpts = three_rcpts,
                            .partial_rcpt = 1};

    (void)state;
    run_all(&sc, script);
    run_all(&sc, one_by_one);
}

static void
test_partial_rcpt_none_accepted(void **state)
{
    /* No recipient accepted: no DATA (it would get 554, RFC 5321 §3.3);
     * the message fails with the first refusal. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "C+RCPT TO:<b@example.test>\r\n",
        "S:250 Ok\r\n452 4.5.3 Too many recipients\r\n"
        "550 5.1.1 No such user\r\n",
        "E:RCPT - 452 idx=0 enh=4.5.3",
        "E:RCPT - 550 idx=1 enh=5.1.1",
        "E:FAIL ETEMP 452 enh=4.5.3 stage=RCPT",
        "R:<a@example.test>: 452 4.5.3 Too many recipients",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .nrcpt = 2, .partial_rcpt = 1};

    (void)state;
    run_all(&sc, script);
}

static void
test_rcpt_421_closes(void **state)
{
    /* RFC 5321 §3.8: a 421 to one RCPT of a pipelined group ends the
     * session at once; the replies still due are not waited for. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "C+RCPT TO:<b@example.test>\r\n",
        "C+RCPT TO:<c@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n421 4.3.2 Shutting down\r\n",
        "E:RCPT - 250 idx=0",
        "E:FAIL ETEMP 421 enh=4.3.2 stage=RCPT",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .nrcpt = 3, .rcpts = three_rcpts,
                            .partial_rcpt = 1};

    (void)state;
    run_all(&sc, script);
    sc.partial_rcpt = 0;
    run_all(&sc, (const char *const[]){
        script[0], script[1], script[2], script[3], script[4], script[5],
        script[6], script[7], script[8], script[10], script[11], NULL});
}

static void
test_reuse_two_messages(void **state)
{
    /* Connection reuse: after DONE the session waits (READY) and the
     * next envelope goes on the same connection, without RSET after a
     * transaction that succeeded. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:one",
        "C:one\r\n.\r\n",
        "S:250 2.0.0 Ok: queued as 1\r\n",
        "E:DONE OK 250 enh=2.0.0",
        "E:READY",
        "N:|b@example.test,c@example.test|0|1",
        "C:MAIL FROM:<> BODY=8BITMIME\r\n",
        "C+RCPT TO:<b@example.test>\r\n",
        "C+RCPT TO:<c@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:two\n",
        "C:two\r\n.\r\n",
        "S:250 2.0.0 Ok: queued as 2\r\n",
        "E:DONE OK 250",
        "E:READY",
        "Q",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .reuse = 1};

    (void)state;
    run_all(&sc, script);
}

static void
test_reuse_after_failures(void **state)
{
    /* Each way a message can fail leaves the connection usable: MAIL
     * refused (the pipelined RCPT's reply still awaited), every RCPT
     * refused, DATA refused, the final dot refused; RSET goes before the
     * next transaction (RFC 5321 §4.1.1.5), not before QUIT. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "S:550 5.7.1 Sender refused\r\n",
        "E:FAIL EREJECT 550 enh=5.7.1 stage=MAIL",
        "S:503 5.5.1 Error: need MAIL command\r\n",
        "E:READY",
        "N:tim@example.test|a@example.test|0|0",
        "C:RSET\r\n",
        "S:250 2.0.0 Ok\r\n",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n450 4.2.0 Mailbox busy\r\n",
        "E:FAIL ETEMP 450 enh=4.2.0 stage=RCPT",
        "E:READY",
        "N:tim@example.test|a@example.test|0|0",
        "C:RSET\r\n",
        "S:250 Ok\r\n",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n",
        "C:DATA\r\n",
        "S:554 5.5.1 No valid recipients\r\n",
        "E:FAIL EREJECT 554 stage=DATA",
        "E:READY",
        "N:tim@example.test|a@example.test|0|0",
        "C:RSET\r\n",
        "S:250 Ok\r\n",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:452 4.3.1 Insufficient system storage\r\n",
        "E:FAIL ETEMP 452 enh=4.3.1 stage=message",
        "E:READY",
        "Q",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .reuse = 1};

    (void)state;
    run_all(&sc, script);
}

static void
test_reuse_connection_ends(void **state)
{
    /* RFC 5321 §3.8: a 421 ends the session with FAIL and CLOSE, no
     * READY, whether it answers a command or comes between messages; a
     * server that refuses RSET is not given another transaction. */
    static const char *const mail_421[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:421 4.7.0 Too many errors\r\n",
        "E:FAIL ETEMP 421 enh=4.7.0 stage=MAIL",
        "E:CLOSE",
        NULL,
    };
    static const char *const idle_421[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "E:READY",
        "S:421 4.4.2 mail.example.test Error: timeout exceeded\r\n",
        "E:FAIL ETEMP 421 enh=4.4.2 stage=idle",
        "E:CLOSE",
        NULL,
    };
    static const char *const idle_noise[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "E:READY",
        "S:250 who asked\r\n",
        "E:FAIL EPROTO 0",
        "E:CLOSE",
        NULL,
    };
    static const char *const rset_refused[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:451 4.3.0 Try later\r\n",
        "E:FAIL ETEMP 451 stage=MAIL",
        "E:READY",
        "N:tim@example.test|a@example.test|0|0",
        "C:RSET\r\n",
        "S:500 5.5.1 What?\r\n",
        "E:FAIL EREJECT 500 stage=RSET",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .reuse = 1};

    (void)state;
    run_all(&sc, mail_421);
    run_all(&sc, rset_refused);
    sc.no_first = 1;
    run_all(&sc, idle_421);
    run_all(&sc, idle_noise);
}

static void
test_reuse_no_first_message(void **state)
{
    /* reuse, no envelope in the config: READY once authenticated. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN\r\n",
        "E:EHLO",
        "C:AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n",
        "S:235 2.7.0 Authentication successful\r\n",
        "E:AUTH OK 235",
        "E:READY",
        "N:tim@example.test|a@example.test|1000|0",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "E:READY",
        "Q",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.implicit_tls = 1, .reuse = 1, .no_first = 1};

    (void)state;
    run_all(&sc, script);
}

static void
test_reuse_api(void **state)
{
    static const char *const rcpt[] = {"a@example.test"};
    static const char *const bad_rcpt[] = {"a b@example.test"};
    struct pst_smtp_client_config cfg = {
        .helo = "client.example.test", .reuse = 1,
        .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER,
    };
    struct pst_smtp_client *c;
    struct pst_smtp_client_event ev;

    (void)state;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    /* Not waiting yet. */
    assert_rc(pst_smtp_client_next_message(c, "a@b", rcpt, 1, 0, 0),
              PST_ESTATE);
    assert_rc(pst_smtp_client_quit(c), PST_ESTATE);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    expect_output(c, "EHLO client.example.test\r\n", 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"250 x\r\n", 7), 0);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_CLIENT_EV_EHLO);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_CLIENT_EV_READY);
    /* Bad envelopes leave it waiting. */
    assert_rc(pst_smtp_client_next_message(c, NULL, rcpt, 1, 0, 0),
              PST_EINVAL);
    assert_rc(pst_smtp_client_next_message(c, "a>b", rcpt, 1, 0, 0),
              PST_EINVAL);
    assert_rc(pst_smtp_client_next_message(c, "", rcpt, 0, 0, 0),
              PST_EINVAL);
    assert_rc(pst_smtp_client_next_message(c, "", bad_rcpt, 1, 0, 0),
              PST_EINVAL);
    expect_output(c, "", 1);
    assert_rc(pst_smtp_client_next_message(c, "", rcpt, 1, 0, 0), 0);
    expect_output(c, "MAIL FROM:<>\r\n", 2);
    assert_rc(pst_smtp_client_next_message(c, "", rcpt, 1, 0, 0),
              PST_ESTATE);
    assert_rc(pst_smtp_client_quit(c), PST_ESTATE);
    pst_smtp_client_free(c);
    /* Without reuse, neither is ever possible. */
    cfg.reuse = 0;
    cfg.probe = 1;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"250 x\r\n", 7), 0);
    assert_rc(pst_smtp_client_quit(c), PST_ESTATE);
    pst_smtp_client_free(c);
}

static void
test_mail_parameters(void **state)
{
    /* MAIL FROM's parameters for relaying: SIZE (RFC 1870), BODY=8BITMIME
     * (RFC 6152), SMTPUTF8 (RFC 6531 §3.4) and AUTH=<> (RFC 4954 §5),
     * each only to a server that offers its extension; a message that
     * needs SMTPUTF8 fails without it (no MAIL), and the next one goes
     * without RSET. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
        "250-SMTPUTF8\r\n250 AUTH PLAIN\r\n",
        "E:EHLO",
        "E:READY",
        "N:tim@example.test|a@example.test|1000|7",
        "C:MAIL FROM:<tim@example.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 "
        "AUTH=<>\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "E:READY",
        /* UTF-8 addresses travel as they are under SMTPUTF8. */
        "N:t\xc3\xafm@example.test|\xc3\xa5@example.test|0|2",
        "C:MAIL FROM:<t\xc3\xafm@example.test> SMTPUTF8\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<\xc3\xa5@example.test>\r\n",
        "S:550 5.1.1 No\r\n",
        "E:FAIL EREJECT 550",
        "E:READY",
        "Q",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    static const char *const none_offered[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 SIZE\r\n",
        "E:EHLO",
        "E:READY",
        /* No AUTH, no 8BITMIME: those parameters are left out. */
        "N:tim@example.test|a@example.test|1000|5",
        "C:MAIL FROM:<tim@example.test> SIZE=1000\r\n",
        "S:451 4.3.0 Later\r\n",
        "E:FAIL ETEMP 451",
        "E:READY",
        /* SMTPUTF8 not offered: the message fails at once. */
        "N:tim@example.test|a@example.test|0|2",
        "E:FAIL ENOTSUP 0 stage=MAIL",
        "R:SMTPUTF8",
        "E:READY",
        /* RSET still owed for the transaction that failed at MAIL. */
        "N:tim@example.test|a@example.test|0|0",
        "C:RSET\r\n",
        "S:250 Ok\r\n",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "E:READY",
        "N:tim@example.test|a@example.test|0|2",
        "E:FAIL ENOTSUP 0 stage=MAIL",
        "E:READY",
        /* ... and none after one that never started. */
        "N:tim@example.test|a@example.test|0|0",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "E:READY",
        "Q",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    /* Without reuse, the SMTPUTF8 failure ends the session as any other
     * failure of its one message. */
    static const char *const single[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "E:FAIL ENOTSUP 0 stage=MAIL",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1, .reuse = 1, .no_first = 1};

    (void)state;
    run_all(&sc, script);
    run_all(&sc, none_offered);
    sc = (struct script_cfg){.no_auth = 1,
                             .mail_flags = PST_SMTP_CLIENT_MAIL_SMTPUTF8};
    run_all(&sc, single);
}

static void
test_starttls_then_auth_plain(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:STARTTLS\r\n",
        "S:220 2.0.0 Ready to start TLS\r\n",
        "E:STARTTLS",
        "T",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n",
        "S:235 2.7.0 Authentication successful\r\n",
        "E:AUTH OK 235",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "C+RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:",
        "C:.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {0};

    (void)state;
    run_all(&sc, script);
    /* The transcript never shows the credentials. */
    assert_non_null(strstr(trace.buf, "C: AUTH PLAIN <redacted>\n"));
    assert_null(strstr(trace.buf, "AHRpbQ"));
}

static void
test_starttls_required_not_offered(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN CRAM-MD5\r\n",
        "E:EHLO",
        "E:FAIL ENOTSUP 0",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.starttls = PST_SMTP_CLIENT_STARTTLS_REQUIRED};

    (void)state;
    run_all(&sc, script);
}

static void
test_no_password_in_clear(void **state)
{
    /* Only PLAIN and LOGIN offered, no TLS: the password is never sent. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN LOGIN\r\n",
        "E:EHLO",
        "E:FAIL EWEAK 0",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    static const char *const allowed[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH=LOGIN\r\n",
        "E:EHLO",
        "C:AUTH LOGIN\r\n",
        "S:334 VXNlcm5hbWU6\r\n",
        "C:dGlt\r\n",
        "S:334 UGFzc3dvcmQ6\r\n",
        "C:dGFuc3RhYWZ0YW5zdGFhZg==\r\n",
        "S:535 5.7.8 Authentication credentials invalid\r\n",
        "E:FAIL EAUTH 535",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.starttls = PST_SMTP_CLIENT_STARTTLS_NEVER};
    char reply[256];

    (void)state;
    run_all(&sc, script);
    /* --allow-plaintext-auth and the legacy "AUTH=" line. */
    sc.allow_plain = 1;
    run_all(&sc, allowed);
    run_script(&sc, allowed, SPLIT_WHOLE, 0, reply, sizeof(reply));
    assert_non_null(strstr(trace.buf, "S: 334 <redacted>\n"));
    assert_null(strstr(trace.buf, "dGFuc3Rh"));
}

static void
test_forced_mech_not_offered(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN LOGIN\r\n",
        "E:EHLO",
        "E:FAIL ENOTSUP 0",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.mech = "CRAM-MD5", .implicit_tls = 1};

    (void)state;
    run_all(&sc, script);
}

static void
test_strongest_mech_cram_md5(void **state)
{
    /* RFC 2195 §2's challenge and answer, through the session. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n",
        "E:EHLO",
        "C:AUTH CRAM-MD5\r\n",
        "S:334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
        "C:dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n",
        "S:235 2.7.0 Ok\r\n",
        "E:AUTH",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:421 4.3.0 going down\r\n",
        "E:FAIL ETEMP 421",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.starttls = PST_SMTP_CLIENT_STARTTLS_NEVER};

    (void)state;
    run_all(&sc, script);
}

static void
test_bad_challenge_cancels(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH CRAM-MD5\r\n",
        "E:EHLO",
        "C:AUTH CRAM-MD5\r\n",
        "S:334 not*base64\r\n",
        "C:*\r\n",
        "S:501 5.7.0 Authentication cancelled\r\n",
        "E:FAIL EPROTO",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.starttls = PST_SMTP_CLIENT_STARTTLS_NEVER};

    (void)state;
    run_all(&sc, script);
}

static void
test_malformed_replies(void **state)
{
    static const char *const bad[] = {
        "220-a\r\n250 b\r\n",   /* codes differ */
        "22 short\r\n",         /* too short */
        "620 bad class\r\n",    /* not 2-5 */
        "220xno separator\r\n", /* separator */
        "220 nul\x01 here\r\n", /* control byte */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *script[] = {NULL, "E:FAIL EPROTO", "E:CLOSE", NULL};
        char line[64];
        struct script_cfg sc = {.no_auth = 1};

        snprintf(line, sizeof(line), "S:%s", bad[i]);
        script[0] = line;
        run_all(&sc, script);
    }
}

static void
test_long_initial_response_deferred(void **state)
{
    /* RFC 4954 §4: an IR that would pass 512 octets goes after "334 ". */
    char password[400];
    struct pst_sasl_client_config sasl = {.authcid = "tim"};
    struct pst_smtp_client_config cfg = {
        .helo = "c.example.test",
        .implicit_tls = 1,
        .sasl = &sasl,
        .probe = 1,
    };
    struct pst_smtp_client *c;
    struct pst_smtp_client_event ev;
    const uint8_t *p;
    size_t len;
    static const char ehlo[] = "250-x\r\n250 AUTH PLAIN\r\n";

    (void)state;
    memset(password, 'p', sizeof(password));
    sasl.password = (const uint8_t *)password;
    sasl.password_len = sizeof(password);
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    pst_smtp_client_consume(c, 1000);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)ehlo, strlen(ehlo)), 0);
    expect_output(c, "AUTH PLAIN\r\n", 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"334 \r\n", 6), 0);
    pst_smtp_client_output(c, &p, &len);
    assert_int_equal(len, PST_BASE64_ENCLEN(sizeof(password) + 5) + 2);
    pst_smtp_client_consume(c, len);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"235 ok\r\n", 8), 0);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_CLIENT_EV_EHLO);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_CLIENT_EV_AUTH);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_CLIENT_EV_DONE);
    expect_output(c, "QUIT\r\n", 1);
    pst_smtp_client_free(c);
}

/* "AHRpbQBw" + n x "cHBw" + tail: base64 of "\0tim\0p" and then 3n more
 * "p" (and the tail's), written out by hand rather than by our encoder. */
static char *
plain_b64(size_t n, const char *tail)
{
    size_t len = 8 + 4 * n + strlen(tail);
    char *b = malloc(len + 1), *p = b;

    assert_non_null(b);
    memcpy(p, "AHRpbQBw", 8);
    p += 8;
    for (size_t i = 0; i < n; i++, p += 4)
        memcpy(p, "cHBw", 4);
    memcpy(p, tail, strlen(tail) + 1);
    return b;
}

static void
test_initial_response_line_limit(void **state)
{
    /* RFC 4954 §4: the initial response goes on the AUTH line only when
     * the line, CRLF included, fits in 512 octets (RFC 5321
     * §4.5.3.1.4).  PLAIN of "tim" and 367 octets of password: 496
     * octets of base64, a 509-octet line; one octet more of password:
     * 500 octets, 513 with "AUTH PLAIN " and CRLF. */
    char pw[400], *fits = plain_b64(122, ""), *over = plain_b64(122, "cA==");
    char line1[600], line2[600];
    const char *inline_ir[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN\r\n",
        "E:EHLO",
        line1,
        "S:235 2.7.0 Ok\r\n",
        "E:AUTH OK 235",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    const char *deferred[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN\r\n",
        "E:EHLO",
        "C:AUTH PLAIN\r\n",
        "S:334 \r\n",
        line2,
        "S:235 2.7.0 Ok\r\n",
        "E:AUTH OK 235",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.implicit_tls = 1, .probe = 1, .password = pw};

    (void)state;
    assert_int_equal(strlen(fits), 496);
    assert_int_equal(strlen(over), 500);
    snprintf(line1, sizeof(line1), "C:AUTH PLAIN %s\r\n", fits);
    assert_int_equal(strlen(line1 + 2), 509);
    snprintf(line2, sizeof(line2), "C:%s\r\n", over);
    memset(pw, 'p', 367);
    pw[367] = '\0';
    run_all(&sc, inline_ir);
    memset(pw, 'p', 368);
    pw[368] = '\0';
    run_all(&sc, deferred);
    free(fits);
    free(over);
}

static void
test_long_response_line(void **state)
{
    /* A 1,200-octet response line (PLAIN with an 895-octet password),
     * after "334 ": the client's response lines may be up to 12,288
     * octets (RFC 4954 §4). */
    char pw[896], *b64 = plain_b64(298, ""), line[1300];
    const char *script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH PLAIN LOGIN\r\n",
        "E:EHLO",
        "C:AUTH PLAIN\r\n",
        "S:334 \r\n",
        line,
        "S:235 2.7.0 Authentication successful\r\n",
        "E:AUTH OK 235",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 Ok\r\n",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.implicit_tls = 1, .password = pw};

    (void)state;
    memset(pw, 'p', 895);
    pw[895] = '\0';
    assert_int_equal(strlen(b64), 1200);
    snprintf(line, sizeof(line), "C:%s\r\n", b64);
    run_all(&sc, script);
    /* The transcript shows neither the response nor the password. */
    assert_non_null(strstr(trace.buf, "C: AUTH PLAIN\nS: 334 <redacted>\n"
                                      "C: <redacted>\n"));
    assert_null(strstr(trace.buf, "cHBw"));
    free(b64);
}

static void
test_mechanism_preference(void **state)
{
    /* cfg.mechs: the first of the list the server offers wins, even when
     * the server offers a stronger one the list leaves out; names lib/sasl
     * does not know (yet) are skipped. */
    static const char *const prefs[] = {"XOAUTH2", "OAUTHBEARER",
                                        "CRAM-MD5", "PLAIN", NULL};
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n"
        "250 AUTH SCRAM-SHA-256 PLAIN XOAUTH2 CRAM-MD5\r\n",
        "E:EHLO",
        "C:AUTH CRAM-MD5\r\n",
        "S:334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
        "C:dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n",
        "S:235 2.7.0 Ok\r\n",
        "E:AUTH OK 235",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    /* Only PLAIN of the list offered, under TLS: PLAIN. */
    static const char *const plain[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH LOGIN PLAIN\r\n",
        "E:EHLO",
        "C:AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n",
        "S:235 2.7.0 Ok\r\n",
        "E:AUTH OK 235",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    /* PLAIN offered, but not under TLS: the password stays home. */
    static const char *const weak[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH LOGIN PLAIN SCRAM-SHA-1\r\n",
        "E:EHLO",
        "E:FAIL EWEAK 0 stage=AUTH",
        "R:PLAIN would send the password without TLS",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    /* Nothing of the list offered. */
    static const char *const none[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH LOGIN SCRAM-SHA-1\r\n",
        "E:EHLO",
        "E:FAIL ENOTSUP 0 stage=AUTH",
        "R:no mechanism allowed (XOAUTH2 OAUTHBEARER CRAM-MD5 PLAIN) is "
        "both offered and implemented (the server offers: LOGIN "
        "SCRAM-SHA-1)",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.probe = 1, .mechs = prefs,
                            .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER};

    (void)state;
    run_all(&sc, script);
    run_all(&sc, weak);
    run_all(&sc, none);
    sc.implicit_tls = 1;
    run_all(&sc, plain);
    /* A list of names none of which lib/sasl knows leaves nothing. */
    sc.mechs = (const char *const[]){"XOAUTH2", "GSSAPI", NULL};
    run_all(&sc, (const char *const[]){
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH GSSAPI XOAUTH2 PLAIN\r\n",
        "E:EHLO",
        "E:FAIL ENOTSUP 0",
        "R:no mechanism allowed (XOAUTH2 GSSAPI)",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    });
}

static void
test_mechanism_preference_api(void **state)
{
    /* pst_smtp_client_choose_mech() follows the list; the forced mech
     * goes before it; bad lists are refused. */
    static const char *const prefs[] = {"PLAIN", "CRAM-MD5", NULL};
    static const char ehlo[] =
        "250-x\r\n250 AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN\r\n";
    struct pst_sasl_client_config sasl = {
        .authcid = "tim", .password = (const uint8_t *)"x",
        .password_len = 1,
    };
    struct pst_smtp_client_config cfg = {
        .helo = "c.example.test", .probe = 1, .sasl = &sasl,
        .mechs = prefs, .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER,
    };
    const char *many[PST_SMTP_CLIENT_MAX_MECHS + 2];
    struct pst_smtp_client *c;
    const struct pst_sasl_mech *m;

    (void)state;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)ehlo, strlen(ehlo)),
              0);
    /* No TLS: PLAIN is skipped, CRAM-MD5 chosen, not SCRAM-SHA-256. */
    m = pst_smtp_client_choose_mech(c);
    assert_non_null(m);
    assert_string_equal(pst_sasl_mech_name(m), "CRAM-MD5");
    pst_smtp_client_free(c);
    cfg.implicit_tls = 1;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)ehlo, strlen(ehlo)),
              0);
    assert_string_equal(pst_sasl_mech_name(pst_smtp_client_choose_mech(c)),
                        "PLAIN");
    pst_smtp_client_free(c);
    cfg.mech = "SCRAM-SHA-256";
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)ehlo, strlen(ehlo)),
              0);
    assert_string_equal(pst_sasl_mech_name(pst_smtp_client_choose_mech(c)),
                        "SCRAM-SHA-256");
    pst_smtp_client_free(c);
    cfg.mech = NULL;
    /* Too many names, an empty one, one with a space. */
    for (size_t i = 0; i < PST_SMTP_CLIENT_MAX_MECHS + 1; i++)
        many[i] = "PLAIN";
    many[PST_SMTP_CLIENT_MAX_MECHS + 1] = NULL;
    cfg.mechs = many;
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    many[PST_SMTP_CLIENT_MAX_MECHS] = NULL;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    pst_smtp_client_free(c);
    cfg.mechs = (const char *const[]){"PLAIN", "", NULL};
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.mechs = (const char *const[]){"CRAM MD5", NULL};
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
}

static void
test_probe_capabilities(void **state)
{
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP ready\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250-SIZE 26214400\r\n"
        "250-AUTH SCRAM-SHA-256 CRAM-MD5\r\n250-AUTH=LOGIN PLAIN\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 STARTTLS\r\n",
        "E:EHLO",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct pst_smtp_client_config cfg = {
        .helo = "client.example.test",
        .probe = 1,
        .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER,
    };
    struct pst_smtp_client *c;
    struct pst_smtp_client_event ev;
    struct script_cfg sc = {
        .probe = 1, .no_auth = 1, .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER};

    (void)state;
    run_all(&sc, script);
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)script[0] + 2,
                                   strlen(script[0] + 2)),
              0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)script[2] + 2,
                                   strlen(script[2] + 2)),
              0);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_string_equal(pst_smtp_client_mechs(c),
                        "SCRAM-SHA-256 CRAM-MD5 LOGIN PLAIN");
    assert_int_equal(pst_smtp_client_ext(c), PST_SMTP_CLIENT_EXT_SIZE |
                                                 PST_SMTP_CLIENT_EXT_AUTH |
                                                 PST_SMTP_CLIENT_EXT_ENHANCED |
                                                 PST_SMTP_CLIENT_EXT_8BITMIME |
                                                 PST_SMTP_CLIENT_EXT_STARTTLS);
    assert_int_equal(pst_smtp_client_size_limit(c), 26214400);
    assert_string_equal(pst_smtp_client_greeting(c),
                        "220 mail.example.test ESMTP ready");
    pst_smtp_client_free(c);
}

static void
test_data_during_tls_wait_refused(void **state)
{
    /* RFC 3207 §4.2: bytes after "220 Ready" before the handshake are an
     * injection; the session fails instead of reading them. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 STARTTLS\r\n",
        "E:EHLO",
        "C:STARTTLS\r\n",
        "S:220 go ahead\r\n250 injected\r\n",
        /* No STARTTLS event: the caller must not start a handshake on
         * this stream (it was queued, then withdrawn), nor send QUIT. */
        "E:FAIL EPROTO",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1};

    (void)state;
    run_script(&sc, script, SPLIT_WHOLE, 0, NULL, 0);
}

static void
test_data_after_starttls_event_taken(void **state)
{
    /* The injected bytes come in a later read, after the caller took the
     * STARTTLS event: the session fails, and refuses the handshake. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 STARTTLS\r\n",
        "E:EHLO",
        "C:STARTTLS\r\n",
        "S:220 go ahead\r\n",
        "E:STARTTLS",
        "S:250 injected\r\n",
        "E:FAIL EPROTO",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.no_auth = 1};
    struct pst_smtp_client_config cfg = {
        .helo = "client.example.test",
        .probe = 1,
    };
    struct pst_smtp_client *c;
    static const char ehlo[] = "250-x\r\n250 STARTTLS\r\n";

    (void)state;
    run_script(&sc, script, SPLIT_WHOLE, 0, NULL, 0);
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)ehlo, strlen(ehlo)), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 go\r\n", 8), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"2", 1), 0);
    assert_rc(pst_smtp_client_tls_started(c), PST_ESTATE);
    pst_smtp_client_free(c);
}

static void
test_challenge_after_the_end(void **state)
{
    /* CRAM-MD5 has one challenge (RFC 2195 §2); a second one is the
     * server's protocol error (EPROTO), cancelled with "*", not a
     * failure of ours (ESTATE). */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 AUTH CRAM-MD5\r\n",
        "E:EHLO",
        "C:AUTH CRAM-MD5\r\n",
        "S:334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        "\r\n",
        "C:dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n",
        "S:334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        "\r\n",
        "C:*\r\n",
        "S:501 5.7.0 Authentication cancelled\r\n",
        "E:FAIL EPROTO",
        "R:the server sent a challenge after the exchange was complete",
        "E:CLOSE",
        NULL,
    };
    struct script_cfg sc = {.starttls = PST_SMTP_CLIENT_STARTTLS_NEVER};

    (void)state;
    run_all(&sc, script);
}

/* Count lines starting with prefix in the pending output, consume it. */
static size_t
take_lines(struct pst_smtp_client *c, const char *prefix, size_t *other)
{
    const uint8_t *p;
    size_t len, n = 0, i = 0;

    pst_smtp_client_output(c, &p, &len);
    while (i < len) {
        const uint8_t *nl = memchr(p + i, '\n', len - i);
        size_t end = nl != NULL ? (size_t)(nl - p) + 1 : len;

        if (end - i >= strlen(prefix) &&
            memcmp(p + i, prefix, strlen(prefix)) == 0)
            n++;
        else if (other != NULL)
            (*other)++;
        i = end;
    }
    pst_smtp_client_consume(c, len);
    return n;
}

static void
test_many_recipients_pipelined(void **state)
{
    /* More recipients than replies the session can await at once: RFC
     * 2920 pipelining in a window, each reply letting one more RCPT go,
     * DATA after the last reply. */
    enum { NRCPT = 600 };
    static char names[NRCPT][32];
    const char *rcpt[NRCPT];
    struct pst_smtp_client_config cfg = {
        .helo = "client.example.test",
        .mail_from = "tim@example.test",
        .rcpt = rcpt,
        .nrcpt = NRCPT,
        .starttls = PST_SMTP_CLIENT_STARTTLS_NEVER,
    };
    struct pst_smtp_client *c;
    struct pst_smtp_client_event ev;
    static const char ehlo[] = "250-x\r\n250 PIPELINING\r\n";
    size_t sent, other = 0, outstanding, most = 0, total;

    (void)state;
    for (size_t i = 0; i < NRCPT; i++) {
        snprintf(names[i], sizeof(names[i]), "r%03zu@example.test", i);
        rcpt[i] = names[i];
    }
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    pst_smtp_client_consume(c, 1000);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)ehlo, strlen(ehlo)), 0);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1); /* EHLO */
    sent = take_lines(c, "RCPT TO:<", &other);
    assert_int_equal(other, 1); /* MAIL */
    assert_true(sent > 100 && sent < NRCPT);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"250 ok\r\n", 8), 0);
    total = sent;
    outstanding = sent;
    for (size_t replied = 0; replied < NRCPT; replied++) {
        assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"250 ok\r\n", 8), 0);
        outstanding--;
        other = 0;
        sent = take_lines(c, "RCPT TO:<", &other);
        /* One reply, one more RCPT, until all are out. */
        assert_int_equal(sent, total < NRCPT ? 1 : 0);
        total += sent;
        outstanding += sent;
        if (outstanding > most)
            most = outstanding;
        if (replied + 1 < NRCPT) {
            assert_int_equal(other, 0);
        } else {
            assert_int_equal(other, 1); /* DATA, after the last reply */
        }
    }
    assert_int_equal(total, NRCPT);
    assert_true(most < 256);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"354 go\r\n", 8), 0);
    assert_int_equal(pst_smtp_client_next_event(c, &ev), 1);
    assert_int_equal(ev.type, PST_SMTP_CLIENT_EV_DATA);
    pst_smtp_client_free(c);
}

static void
test_phase_trace(void **state)
{
    /* Every phase change goes through one function, which traces it
     * (with trace_phases) the way the server traces its states. */
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 STARTTLS\r\n",
        "E:EHLO",
        "C:STARTTLS\r\n",
        "S:220 go ahead\r\n",
        "E:STARTTLS",
        "T",
        "C:EHLO client.example.test\r\n",
        "S:250 mail.example.test\r\n",
        "E:EHLO",
        "C:MAIL FROM:<tim@example.test>\r\n",
        "S:250 ok\r\n",
        "C:RCPT TO:<a@example.test>\r\n",
        "S:250 ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 ok\r\n",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 bye\r\n",
        "E:CLOSE",
        NULL,
    };
    static const char *const want =
        "P: run -> tls-wait\n"
        "P: tls-wait -> run\n"
        "P: run -> sending\n"
        "P: sending -> run\n"
        "P: run -> ending\n"
        "P: ending -> closed\n";
    struct script_cfg sc = {.no_auth = 1, .trace_phases = 1};
    char phases[512] = "";
    const char *p;

    (void)state;
    run_all(&sc, script);
    for (p = trace.buf; (p = strstr(p, "P: ")) != NULL; p++) {
        size_t n = strcspn(p, "\n") + 1;

        strncat(phases, p, n < sizeof(phases) - strlen(phases) - 1
                               ? n
                               : sizeof(phases) - strlen(phases) - 1);
    }
    assert_string_equal(phases, want);
    /* Without trace_phases, no phase line. */
    sc.trace_phases = 0;
    run_script(&sc, script, SPLIT_WHOLE, 0, NULL, 0);
    assert_null(strstr(trace.buf, "P: "));
}

/*
 * RFC 5321 §4.1.2 Mailbox, read by the server's own parser: a
 * Quoted-string local part may hold a space (and "<", ">", "@"); RFC 6531
 * §3.3 adds UTF-8 with SMTPUTF8 only.
 */
static void
test_check_mailbox(void **state)
{
    static const struct {
        const char *addr;
        unsigned flags;
        int rc;
    } v[] = {
        {"tim@example.test", 0, 0},
        {"\"john doe\"@example.test", 0, 0},
        {"\"a<b>\"@example.test", 0, 0},
        {"\"a@b\"@example.test", 0, 0},
        {"\"a\\\"b\"@example.test", 0, 0},
        {"a@[192.0.2.1]", 0, 0},
        {"a@b", 0, 0},
        {"j\xc3\xb6rg@example.test", PST_SMTP_CLIENT_MAIL_SMTPUTF8, 0},
        {"info@b\xc3\xbc""cher.example", PST_SMTP_CLIENT_MAIL_SMTPUTF8, 0},
        {"\"j\xc3\xb6rg m\"@example.test", PST_SMTP_CLIENT_MAIL_SMTPUTF8, 0},
        {"j\xc3\xb6rg@example.test", 0, PST_EINVAL},
        {"j\xc3rg@example.test", PST_SMTP_CLIENT_MAIL_SMTPUTF8, PST_EINVAL},
        {"john doe@example.test", 0, PST_EINVAL},
        {"\"john doe@example.test", 0, PST_EINVAL},
        {"\"tab\there\"@example.test", 0, PST_EINVAL},
        {"\"a\"b@example.test", 0, PST_EINVAL},
        {"<a@example.test>", 0, PST_EINVAL},
        {"a@example.test>", 0, PST_EINVAL},
        {"a@example.test SIZE=1", 0, PST_EINVAL},
        {"a@example.test\r\nRSET", 0, PST_EINVAL},
        {"a@b_c.example", 0, PST_EINVAL},
        {"a", 0, PST_EINVAL},
        {"Postmaster", 0, PST_EINVAL},
        /* A local part alone, only when asked for. */
        {"root", PST_SMTP_CLIENT_PATH_LOCAL, 0},
        {"Postmaster", PST_SMTP_CLIENT_PATH_LOCAL, 0},
        {"\"john doe\"", PST_SMTP_CLIENT_PATH_LOCAL, 0},
        {"j\xc3\xb6rg", PST_SMTP_CLIENT_PATH_LOCAL, PST_EINVAL},
        {"j\xc3\xb6rg",
         PST_SMTP_CLIENT_PATH_LOCAL | PST_SMTP_CLIENT_MAIL_SMTPUTF8, 0},
        {"root@", PST_SMTP_CLIENT_PATH_LOCAL, PST_EINVAL},
        {"ro ot", PST_SMTP_CLIENT_PATH_LOCAL, PST_EINVAL},
        {".root", PST_SMTP_CLIENT_PATH_LOCAL, PST_EINVAL},
        {"@example.test", 0, PST_EINVAL},
        {"", 0, PST_EINVAL},
    };
    char big[300];

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = pst_smtp_client_check_mailbox(v[i].addr, v[i].flags);

        if (rc != v[i].rc)
            fail_msg("\"%s\": got %s, want %s", v[i].addr, pst_errname(rc),
                     pst_errname(v[i].rc));
    }
    assert_rc(pst_smtp_client_check_mailbox(NULL, 0), PST_EINVAL);
    /* RFC 5321 §4.5.3.1: local part 64 octets, path 256 with its <>. */
    snprintf(big, sizeof(big), "%064d@example.test", 0);
    assert_rc(pst_smtp_client_check_mailbox(big, 0), 0);
    snprintf(big, sizeof(big), "%065d@example.test", 0);
    assert_rc(pst_smtp_client_check_mailbox(big, 0), PST_ELIMIT);
    snprintf(big, sizeof(big), "%064d@%063d.%063d.%061d", 0, 0, 0, 0);
    assert_rc(pst_smtp_client_check_mailbox(big, 0), 0);
    snprintf(big, sizeof(big), "%064d@%063d.%063d.%062d", 0, 0, 0, 0);
    assert_rc(pst_smtp_client_check_mailbox(big, 0), PST_ELIMIT);
}

/* A quoted local part with a space goes out as it is, between <>. */
static void
test_quoted_local_part(void **state)
{
    static const char *const rcpts[] = {"\"john doe\"@example.test",
                                        "Postmaster"};
    static const char *const script[] = {
        "S:220 mail.example.test ESMTP\r\n",
        "C:EHLO client.example.test\r\n",
        "S:250-mail.example.test\r\n250 PIPELINING\r\n",
        "E:EHLO",
        "C:MAIL FROM:<\"tim q\"@example.test>\r\n",
        "C+RCPT TO:<\"john doe\"@example.test>\r\n",
        "C+RCPT TO:<Postmaster>\r\n",
        "S:250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n",
        "C:DATA\r\n",
        "S:354 go\r\n",
        "E:DATA",
        "D:x",
        "C:x\r\n.\r\n",
        "S:250 2.0.0 Ok\r\n",
        "E:DONE",
        "C:QUIT\r\n",
        "S:221 Bye\r\n",
        "E:CLOSE",
        NULL,
    };
    struct pst_smtp_client_config cfg = {
        .helo = "client.example.test",
        .mail_from = "\"tim q\"@example.test",
        .rcpt = rcpts,
        .nrcpt = 2,
    };
    struct script_cfg sc = {.no_auth = 1, .rcpts = rcpts, .nrcpt = 2,
                            .mail_from = "\"tim q\"@example.test"};
    struct pst_smtp_client *c;
    static const char *const bad[] = {"\"john doe@example.test"};
    static const char *const utf8[] = {"j\xc3\xb6rg@example.test"};
    static const char *const local[] = {"\"ro ot\""};

    (void)state;
    run_all(&sc, script);
    /* What the check refuses, the session refuses. */
    cfg.rcpt = bad;
    cfg.nrcpt = 1;
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.rcpt = utf8;
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.mail_flags = PST_SMTP_CLIENT_MAIL_SMTPUTF8;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    pst_smtp_client_free(c);
    /* A local part alone, as sendmail's callers give it, goes too; "a
     * b" does not. */
    cfg.mail_from = "a b";
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.mail_from = "root";
    cfg.rcpt = local;
    cfg.mail_flags = 0;
    cfg.starttls = PST_SMTP_CLIENT_STARTTLS_NEVER;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"220 x\r\n", 7), 0);
    expect_output(c, "EHLO client.example.test\r\n", 0);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"250 x\r\n", 7), 0);
    expect_output(c, "MAIL FROM:<root>\r\n", 1);
    assert_rc(pst_smtp_client_feed(c, (const uint8_t *)"250 x\r\n", 7), 0);
    expect_output(c, "RCPT TO:<\"ro ot\">\r\n", 2);
    pst_smtp_client_free(c);
}

/* --- Transcripts from files ---------------------------------------------- */

/*
 * A client transcript file (tests/unit/transcripts/client/NAME.txt):
 *   # comment                  ignored, as are blank lines
 *   @ key=value ...            the session's settings: helo, user (the
 *                              authcid), password, token, oauth_host,
 *                              oauth_port, from, rcpt (repeatable), mech,
 *                              starttls (never|auto|required), plain=1
 *                              (PLAIN, LOGIN and bearer tokens in clear),
 *                              implicit=1 (TLS from the start)
 *   S: text                    the server's line, CRLF appended
 *   C: text                    a line the client must send, CRLF
 *                              appended; consecutive C: lines are one
 *                              write (everything sent since the last)
 *   E: TYPE [ERROR [CODE]] ... the next event, as in the scripts above
 *   R: text                    the last event's reply contains it
 *   J: [text]                  pst_smtp_client_auth_error_json()
 *   D: text                    a line of the message (LF appended);
 *                              consecutive D: lines are fed at once, as
 *                              the whole message
 * Text may hold the escapes \r \n \t \\ \xHH.
 */
#define CLIENT_TRANSCRIPT_MAX_LINES 512
#define CLIENT_TRANSCRIPT_MAX_RCPT 16

struct client_transcript {
    struct script_cfg sc;
    char *lines[CLIENT_TRANSCRIPT_MAX_LINES + 1]; /* script, NULL ended */
    size_t n;
    char *strings[64];           /* settings' values */
    size_t nstrings;
    const char *rcpt[CLIENT_TRANSCRIPT_MAX_RCPT];
};

static void
ct_unescape(const char *text, struct pst_buf *out)
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
            default:
                c = (uint8_t)*p;
                break;
            }
        }
        assert_int_equal(pst_buf_append_byte(out, c), 0);
    }
}

static const char *
ct_keep(struct client_transcript *t, const char *v)
{
    char *p = strdup(v);

    assert_non_null(p);
    assert_true(t->nstrings < sizeof(t->strings) / sizeof(t->strings[0]));
    t->strings[t->nstrings++] = p;
    return p;
}

/* Append a script line: prefix then text (unescaped) then suffix. */
static void
ct_add(struct client_transcript *t, const char *prefix, const char *text,
       const char *suffix, size_t lineno)
{
    struct pst_buf b;

    if (t->n == CLIENT_TRANSCRIPT_MAX_LINES)
        fail_msg("line %zu: transcript too long", lineno);
    pst_buf_init(&b, 1 << 20, 0);
    assert_int_equal(pst_buf_append_str(&b, prefix), 0);
    ct_unescape(text, &b);
    assert_int_equal(pst_buf_append_str(&b, suffix), 0);
    assert_int_equal(pst_buf_append(&b, "", 0), 0);
    t->lines[t->n] = strdup((const char *)b.data);
    assert_non_null(t->lines[t->n]);
    t->n++;
    pst_buf_clear(&b);
}

/* Append text to the last script line. */
static void
ct_extend(struct client_transcript *t, const char *text, const char *suffix)
{
    struct pst_buf b;

    pst_buf_init(&b, 1 << 20, 0);
    assert_int_equal(pst_buf_append_str(&b, t->lines[t->n - 1]), 0);
    ct_unescape(text, &b);
    assert_int_equal(pst_buf_append_str(&b, suffix), 0);
    assert_int_equal(pst_buf_append(&b, "", 0), 0);
    free(t->lines[t->n - 1]);
    t->lines[t->n - 1] = strdup((const char *)b.data);
    assert_non_null(t->lines[t->n - 1]);
    pst_buf_clear(&b);
}

static void
ct_setting(struct client_transcript *t, char *word, size_t lineno)
{
    char *eq = strchr(word, '=');
    const char *v;

    if (eq == NULL)
        fail_msg("line %zu: '%s' is not key=value", lineno, word);
    *eq = '\0';
    v = ct_keep(t, eq + 1);
    if (strcmp(word, "helo") == 0)
        t->sc.helo = v;
    else if (strcmp(word, "user") == 0)
        t->sc.authcid = v;
    else if (strcmp(word, "password") == 0)
        t->sc.password = v;
    else if (strcmp(word, "token") == 0)
        t->sc.token = v;
    else if (strcmp(word, "oauth_host") == 0)
        t->sc.oauth_host = v;
    else if (strcmp(word, "oauth_port") == 0)
        t->sc.oauth_port = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(word, "from") == 0)
        t->sc.mail_from = v;
    else if (strcmp(word, "rcpt") == 0) {
        assert_true(t->sc.nrcpt < CLIENT_TRANSCRIPT_MAX_RCPT);
        t->rcpt[t->sc.nrcpt++] = v;
        t->sc.rcpts = t->rcpt;
    } else if (strcmp(word, "mech") == 0)
        t->sc.mech = v;
    else if (strcmp(word, "plain") == 0)
        t->sc.allow_plain = (int)strtol(v, NULL, 10);
    else if (strcmp(word, "implicit") == 0)
        t->sc.implicit_tls = (int)strtol(v, NULL, 10);
    else if (strcmp(word, "starttls") == 0)
        t->sc.starttls = strcmp(v, "never") == 0
                             ? PST_SMTP_CLIENT_STARTTLS_NEVER
                         : strcmp(v, "required") == 0
                             ? PST_SMTP_CLIENT_STARTTLS_REQUIRED
                             : PST_SMTP_CLIENT_STARTTLS_AUTO;
    else
        fail_msg("line %zu: unknown setting %s", lineno, word);
}

static void
client_transcript_load(struct client_transcript *t, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    size_t lineno = 0;
    char last = 0; /* kind of the line before: 'C', 'D' or 0 */

    memset(t, 0, sizeof(*t));
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        const char *text;

        lineno++;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0 || line[0] == '#') {
            continue;
        }
        if (line[0] == '@') {
            char *save = NULL;

            for (char *w = strtok_r(line + 1, " ", &save); w != NULL;
                 w = strtok_r(NULL, " ", &save))
                ct_setting(t, w, lineno);
            continue;
        }
        if (n < 2 || line[1] != ':')
            fail_msg("%s:%zu: bad line '%s'", path, lineno, line);
        text = line + 2 + (line[2] == ' ');
        switch (line[0]) {
        case 'S':
            ct_add(t, "S:", text, "\r\n", lineno);
            break;
        case 'C':
            if (last == 'C')
                ct_extend(t, text, "\r\n");
            else
                ct_add(t, "C:", text, "\r\n", lineno);
            break;
        case 'D':
            if (last == 'D')
                ct_extend(t, text, "\n");
            else
                ct_add(t, "D:", text, "\n", lineno);
            break;
        case 'E':
        case 'R':
        case 'J': {
            char prefix[3] = {line[0], ':', '\0'};

            ct_add(t, prefix, text, "", lineno);
            break;
        }
        default:
            fail_msg("%s:%zu: bad line '%s'", path, lineno, line);
        }
        last = line[0] == 'C' || line[0] == 'D' ? line[0] : 0;
    }
    fclose(f);
    t->lines[t->n] = NULL;
    if (t->n == 0)
        fail_msg("%s: empty transcript", path);
}

static void
client_transcript_free(struct client_transcript *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->lines[i]);
    for (size_t i = 0; i < t->nstrings; i++)
        free(t->strings[i]);
}

static void
test_client_transcript(void **state)
{
    struct client_transcript t;

    client_transcript_load(&t, *state);
    run_all(&t.sc, (const char *const *)t.lines);
    client_transcript_free(&t);
}

static int client_transcripts_found;

/* An emptied or missing directory must not pass as nothing to test. */
static void
test_client_transcripts_found(void **state)
{
    (void)state;
    if (client_transcripts_found < 2)
        fail_msg("got %d transcripts in %s, want at least 2",
                 client_transcripts_found, CLIENT_TRANSCRIPT_DIR);
}

static int
is_client_transcript(const struct dirent *e)
{
    size_t n = strlen(e->d_name);

    return n > 4 && strcmp(e->d_name + n - 4, ".txt") == 0;
}

static void
test_bad_config(void **state)
{
    struct pst_smtp_client_config cfg = {
        .helo = "c",
        .mail_from = "a@b",
        .rcpt = two_rcpts,
        .nrcpt = 1,
    };
    struct pst_smtp_client *c;
    static const char *const bad_rcpt[] = {"a b@c"};

    (void)state;
    assert_rc(pst_smtp_client_new(&cfg, &c), 0);
    pst_smtp_client_free(c);
    cfg.nrcpt = 0;
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.nrcpt = 1;
    cfg.rcpt = bad_rcpt;
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.rcpt = two_rcpts;
    cfg.mail_from = "a>b";
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
    cfg.mail_from = "";
    cfg.mech = "NOPE";
    assert_rc(pst_smtp_client_new(&cfg, &c), PST_EINVAL);
}

int
main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_plain_message_no_pipelining),
        cmocka_unit_test(test_pipelined_two_recipients),
        cmocka_unit_test(test_recipient_refused_no_data),
        cmocka_unit_test(test_partial_rcpt),
        cmocka_unit_test(test_partial_rcpt_none_accepted),
        cmocka_unit_test(test_rcpt_421_closes),
        cmocka_unit_test(test_reuse_two_messages),
        cmocka_unit_test(test_reuse_after_failures),
        cmocka_unit_test(test_reuse_connection_ends),
        cmocka_unit_test(test_reuse_no_first_message),
        cmocka_unit_test(test_reuse_api),
        cmocka_unit_test(test_mail_parameters),
        cmocka_unit_test(test_starttls_then_auth_plain),
        cmocka_unit_test(test_starttls_required_not_offered),
        cmocka_unit_test(test_no_password_in_clear),
        cmocka_unit_test(test_forced_mech_not_offered),
        cmocka_unit_test(test_strongest_mech_cram_md5),
        cmocka_unit_test(test_mechanism_preference),
        cmocka_unit_test(test_mechanism_preference_api),
        cmocka_unit_test(test_bad_challenge_cancels),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_long_initial_response_deferred),
        cmocka_unit_test(test_initial_response_line_limit),
        cmocka_unit_test(test_long_response_line),
        cmocka_unit_test(test_probe_capabilities),
        cmocka_unit_test(test_data_during_tls_wait_refused),
        cmocka_unit_test(test_data_after_starttls_event_taken),
        cmocka_unit_test(test_challenge_after_the_end),
        cmocka_unit_test(test_many_recipients_pipelined),
        cmocka_unit_test(test_phase_trace),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_check_mailbox),
        cmocka_unit_test(test_quoted_local_part),
        cmocka_unit_test(test_client_transcripts_found),
    };
    struct dirent **names = NULL;
    struct CMUnitTest *tests;
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), n = 0;
    int count, rc;

    count = scandir(CLIENT_TRANSCRIPT_DIR, &names, is_client_transcript,
                    alphasort);
    if (count < 0) {
        fprintf(stderr, "cannot read %s: %s\n", CLIENT_TRANSCRIPT_DIR,
                strerror(errno));
        count = 0;
    }
    tests = calloc(nfixed + (size_t)count + 1, sizeof(*tests));
    if (tests == NULL)
        return 1;
    for (size_t i = 0; i < nfixed; i++)
        tests[n++] = fixed[i];
    for (int i = 0; i < count; i++) {
        size_t len = strlen(CLIENT_TRANSCRIPT_DIR) +
                     strlen(names[i]->d_name) + 2;
        char *path = malloc(len);

        if (path == NULL)
            return 1;
        snprintf(path, len, "%s/%s", CLIENT_TRANSCRIPT_DIR,
                 names[i]->d_name);
        tests[n].name = strdup(names[i]->d_name);
        tests[n].test_func = test_client_transcript;
        tests[n].initial_state = path;
        n++;
        free(names[i]);
    }
    free(names);
    client_transcripts_found = count;
    rc = _cmocka_run_group_tests("smtp_client", tests, n, NULL, NULL);
    for (size_t i = nfixed; i < n; i++) {
        free((void *)tests[i].name);
        free(tests[i].initial_state);
    }
    free(tests);
    return rc;
}
