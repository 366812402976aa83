/*
 * posternd's metrics (src/posternd/metrics.c): counters of several loops
 * summed in the exposition, the lines written exactly, label values
 * escaped, refusal reasons mapped, the relay's counters.  The HTTP side
 * and the counters' call sites are tested end to end
 * (tests/e2e/test_posternd_metrics.py).
 */
#include <string.h>

#include "testutil.h"

#include "config.h"
#include "metrics.h"

static const char conf[] =
    "hostname = mail.example.test\n"
    "userdb = passwd-file:/etc/postern/users\n"
    "spool = /var/spool/postern\n"
    "local_domains = example.test\n"
    "mailbox = maildir:/var/mail/%d/%n\n"
    "relay = m365\n"
    "[listener sub]\n"
    "address = 127.0.0.1:587\n"
    "tls = none\n"
    "auth_before_tls = all\n"
    "mechanisms = PLAIN CRAM-MD5\n"
    "[listener lan]\n"
    "address = 127.0.0.1:2525\n"
    "tls = none\n"
    "auth = off\n"
    "[relay m365]\n"
    "host = smtp.example.com:587\n"
    "auth = oauth2\n"
    "user = scanner@example.com\n"
    "oauth2_token_url = https://login.example/token\n"
    "oauth2_client_id = id\n"
    "oauth2_scope = s\n"
    "oauth2_token_file = /var/lib/postern/t\n"
    "[relay isp]\n"
    "host = smtp.isp.example:587\n";

static struct config *
load(void)
{
    struct config *c;
    char err[CONFIG_ERR_MAX];

    if (config_parse("t.conf", conf, strlen(conf), &c, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);
    return c;
}

static void
want_line(const char *text, const char *line)
{
    char needle[512];

    snprintf(needle, sizeof(needle), "\n%s\n", line);
    if (strstr(text, needle) == NULL)
        fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void
test_sum_of_loops(void **state)
{
    struct config *cfg = load();
    struct metrics *m;
    struct metrics_loop *a, *b;
    struct pst_buf out;
    const char *text;

    (void)state;
    assert_int_equal(metrics_new(2, &m), 0);
    a = metrics_loop(m, 0);
    b = metrics_loop(m, 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(metrics_loop(m, 2));
    assert_null(metrics_loop(NULL, 0));
    /* Loop a: two connections on sub, one still open. */
    metrics_conn_opened(a, 0);
    metrics_conn_opened(a, 0);
    metrics_conn_closed(a);
    /* Loop b: one on lan, closed; one on sub, open. */
    metrics_conn_opened(b, 1);
    metrics_conn_closed(b);
    metrics_conn_opened(b, 0);
    metrics_tls(a, "TLSv1.3");
    metrics_tls(b, "TLSv1.3");
    metrics_tls(b, "TLSv1.2");
    metrics_tls(a, "SSLv3");
    metrics_tls_failed(b);
    metrics_auth(a, "PLAIN", 1);
    metrics_auth(b, "plain", 0);
    metrics_auth(b, "CRAM-MD5", 0);
    metrics_auth(a, "SCRAM-SHA-256", 1); /* used, though not offered */
    metrics_auth(a, NULL, 0);
    metrics_throttle_delay(a);
    metrics_lockout(a);
    metrics_lockout(b);
    metrics_accepted(a, 1000, 800000);       /* 0.8 ms */
    metrics_accepted(b, 24, 3000000);        /* 3 ms */
    metrics_accepted(b, 1, 20000000000ull);  /* 20 s */
    metrics_refused(a, METRICS_REFUSED_SIZE);
    metrics_refused(b, METRICS_REFUSED_STORAGE);
    metrics_refused(b, METRICS_REFUSALS);    /* out of range: ignored */
    /* NULL loops count nothing and do not crash. */
    metrics_conn_opened(NULL, 0);
    metrics_auth(NULL, "PLAIN", 1);
    metrics_accepted(NULL, 1, 1);

    pst_buf_init(&out, 1 << 20, 0);
    assert_int_equal(pst_buf_append_byte(&out, '\n'), 0);
    assert_int_equal(metrics_render(m, cfg, NULL, &out), 0);
    text = (const char *)out.data;
    want_line(text, "# HELP posternd_connections_total Connections "
                    "accepted, by listener.");
    want_line(text, "# TYPE posternd_connections_total counter");
    want_line(text, "posternd_connections_total{listener=\"sub\"} 3");
    want_line(text, "posternd_connections_total{listener=\"lan\"} 1");
    want_line(text, "posternd_connections_open 2");
    want_line(text, "posternd_tls_handshakes_total{version=\"TLSv1.3\"} 2");
    want_line(text, "posternd_tls_handshakes_total{version=\"TLSv1.2\"} 1");
    want_line(text, "posternd_tls_handshakes_total{version=\"TLSv1\"} 0");
    want_line(text, "posternd_tls_handshakes_total{version=\"other\"} 1");
    want_line(text, "posternd_tls_handshake_failures_total 1");
    want_line(text, "posternd_auth_attempts_total{mechanism=\"PLAIN\","
                    "result=\"success\"} 1");
    want_line(text, "posternd_auth_attempts_total{mechanism=\"PLAIN\","
                    "result=\"failure\"} 1");
    want_line(text, "posternd_auth_attempts_total{mechanism=\"CRAM-MD5\","
                    "result=\"failure\"} 1");
    want_line(text, "posternd_auth_attempts_total{mechanism=\"CRAM-MD5\","
                    "result=\"success\"} 0");
    want_line(text, "posternd_auth_attempts_total{mechanism="
                    "\"SCRAM-SHA-256\",result=\"success\"} 1");
    want_line(text, "posternd_auth_attempts_total{mechanism=\"unknown\","
                    "result=\"failure\"} 1");
    /* Neither offered nor used: no series. */
    assert_null(strstr(text, "mechanism=\"LOGIN\""));
    want_line(text, "posternd_auth_throttle_delays_total 1");
    want_line(text, "posternd_auth_lockouts_total 2");
    want_line(text, "posternd_messages_accepted_total 3");
    want_line(text, "posternd_message_bytes_total 1025");
    want_line(text, "posternd_messages_refused_total{reason=\"size\"} 1");
    want_line(text, "posternd_messages_refused_total{reason=\"storage\"} 1");
    want_line(text, "posternd_messages_refused_total{reason=\"bare_lf\"} 0");
    want_line(text, "# TYPE posternd_delivery_duration_seconds histogram");
    want_line(text, "posternd_delivery_duration_seconds_bucket{le=\"0.001\"}"
                    " 1");
    want_line(text, "posternd_delivery_duration_seconds_bucket{le="
                    "\"0.0025\"} 1");
    want_line(text, "posternd_delivery_duration_seconds_bucket{le=\"0.005\"}"
                    " 2");
    want_line(text, "posternd_delivery_duration_seconds_bucket{le=\"10\"} 2");
    want_line(text, "posternd_delivery_duration_seconds_bucket{le=\"+Inf\"}"
                    " 3");
    want_line(text, "posternd_delivery_duration_seconds_sum 20.003800");
    want_line(text, "posternd_delivery_duration_seconds_count 3");
    /* Relays: every configured one, at 0; refreshes for OAuth only. */
    want_line(text, "posternd_queue_messages{relay=\"m365\"} 0");
    want_line(text, "posternd_queue_messages{relay=\"isp\"} 0");
    want_line(text, "posternd_relay_attempts_total{relay=\"isp\","
                    "result=\"sent\"} 0");
    want_line(text, "posternd_oauth_refreshes_total{relay=\"m365\","
                    "result=\"success\"} 0");
    assert_null(strstr(text, "posternd_oauth_refreshes_total{relay=\"isp\""));
    want_line(text, "posternd_relay_paused{relay=\"m365\"} 0");
    pst_buf_clear(&out);
    metrics_free(m);
    config_free(cfg);
}

static void
test_relay_counters(void **state)
{
    struct config *cfg = load();
    struct metrics *m;
    struct pst_buf out;
    const char *text;

    (void)state;
    assert_int_equal(metrics_new(1, &m), 0);
    metrics_relay_attempt("m365", METRICS_RELAY_SENT);
    metrics_relay_attempt("m365", METRICS_RELAY_SENT);
    metrics_relay_attempt("m365", METRICS_RELAY_DEFERRED);
    metrics_relay_attempt("isp", METRICS_RELAY_UNUSABLE);
    metrics_relay_attempt("isp", METRICS_RELAY_FAILED);
    metrics_relay_attempt("gone", METRICS_RELAY_SENT); /* not configured */
    metrics_relay_attempt(NULL, METRICS_RELAY_SENT);
    pst_buf_init(&out, 1 << 20, 0);
    assert_int_equal(pst_buf_append_byte(&out, '\n'), 0);
    assert_int_equal(metrics_render(m, cfg, NULL, &out), 0);
    text = (const char *)out.data;
    want_line(text, "posternd_relay_attempts_total{relay=\"m365\","
                    "result=\"sent\"} 2");
    want_line(text, "posternd_relay_attempts_total{relay=\"m365\","
                    "result=\"deferred\"} 1");
    want_line(text, "posternd_relay_attempts_total{relay=\"m365\","
                    "result=\"failed\"} 0");
    want_line(text, "posternd_relay_attempts_total{relay=\"isp\","
                    "result=\"unusable\"} 1");
    want_line(text, "posternd_relay_attempts_total{relay=\"isp\","
                    "result=\"failed\"} 1");
    /* Without a queue manager: no queue, no refreshes, not paused (the
     * e2e test reads them from a running one). */
    want_line(text, "posternd_oauth_refreshes_total{relay=\"m365\","
                    "result=\"success\"} 0");
    want_line(text, "posternd_relay_paused{relay=\"m365\"} 0");
    want_line(text, "posternd_queue_messages{relay=\"isp\"} 0");
    assert_null(strstr(text, "gone"));
    metrics_relay_reset();
    pst_buf_reset(&out);
    assert_int_equal(pst_buf_append_byte(&out, '\n'), 0);
    assert_int_equal(metrics_render(m, cfg, NULL, &out), 0);
    want_line((const char *)out.data,
              "posternd_relay_attempts_total{relay=\"m365\","
              "result=\"sent\"} 0");
    /* A ceiling too low: PST_ELIMIT, nothing half written trusted. */
    pst_buf_clear(&out);
    pst_buf_init(&out, 100, 0);
    assert_int_equal(metrics_render(m, cfg, NULL, &out), PST_ELIMIT);
    pst_buf_clear(&out);
    metrics_free(m);
    metrics_free(NULL);
    config_free(cfg);
}

static void
test_refusal_reasons(void **state)
{
    static const struct {
        const char *reason;
        int error;
        enum metrics_refusal want;
    } rows[] = {
        /* What lib/smtp/server_data.c gives. */
        {"message too big", PST_ELIMIT, METRICS_REFUSED_SIZE},
        {"line too long", PST_ELIMIT, METRICS_REFUSED_LINE_LENGTH},
        {"bare CR or LF", PST_EPROTO, METRICS_REFUSED_BARE_LF},
        {"something new", PST_EPROTO, METRICS_REFUSED_OTHER},
        {NULL, PST_ELIMIT, METRICS_REFUSED_OTHER},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum metrics_refusal got =
            metrics_refusal_of(rows[i].reason, rows[i].error);

        if (got != rows[i].want)
            fail_msg("row %zu: got %d, want %d", i, (int)got,
                     (int)rows[i].want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_of_loops),
        cmocka_unit_test(test_relay_counters),
        cmocka_unit_test(test_refusal_reasons),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
