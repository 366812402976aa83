/*
 * posternd configuration (config.c): a full file with every key, each
 * kind of error with its exact message and line, CIDR matching, mailbox
 * template expansion.  Also the event log's line format (log.c), which
 * config depends on for its log_level key.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "config.h"
#include "log.h"

#define FILE_NAME "posternd.conf"

/* Lines 1-6 of most files below: every required global key. */
#define GLOBALS                                                              \
    "hostname = mail.example.test\n"                  /* 1 */                \
    "userdb = passwd-file:/etc/postern/users\n"       /* 2 */                \
    "mailbox = maildir:/var/mail/%d/%n\n"             /* 3 */                \
    "spool = /var/spool/postern\n"                    /* 4 */                \
    "tls_cert = /etc/postern/cert.pem\n"              /* 5 */                \
    "tls_key = /etc/postern/key.pem\n"                /* 6 */

/* Lines 7-8 after GLOBALS: one valid listener. */
#define LISTENER                                                             \
    "[listener a]\n"                                  /* 7 */                \
    "address = 127.0.0.1:587\n"                       /* 8 */

static int
parse(const char *text, struct config **out, char *err)
{
    return config_parse(FILE_NAME, text, strlen(text), out, err,
                        CONFIG_ERR_MAX);
}

/* Every key of posternd.conf(5), with comments and odd spacing. */
static const char full_file[] =
    "# posternd test configuration\n"
    "\n"
    "hostname  = mail.example.test          # used in 220\n"
    "userdb    = pgsql:host=db dbname=postern password=a#b\n"
    "mailbox   = maildir:/var/mail/%d/%n\n"
    "spool=/var/spool/postern\n"
    "\ttls_cert\t=\t/etc/postern/cert.pem\t\n"
    "tls_key   = /etc/postern/key.pem\r\n"
    "tls_min_version = TLSv1.1\n"
    "max_message_size = 10485760\n"
    "sender_check = off\n"
    "auth_throttle = no\n"
    "auth_throttle_exempt = 127.0.0.0/8 ::1, 192.0.2.0/24\n"
    "max_recipients = 50\n"
    "max_connections = 200\n"
    "max_connections_per_ip = 7\n"
    "max_errors = 5\n"
    "timeout_command = 5m\n"
    "timeout_data = 120s\n"
    "timeout_final = 1h\n"
    "grace_period = 0\n"
    "workers = 4\n"
    "user = postern\n"
    "log_level = debug\n"
    "legacy_auth_line = yes\n"
    "\n"
    "[listener submission]\n"
    "address   = 127.0.0.1:587\n"
    "tls       = starttls\n"
    "auth      = required\n"
    "auth_before_tls = none\n"
    "mechanisms = SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 DIGEST-MD5 PLAIN LOGIN\n"
    "[ listener  smtps ]\n"
    "address = [::1]:465\n"
    "tls = implicit\n"
    "auth = optional\n"
    "mechanisms = plain scram-sha-256\n"
    "[listener legacy]\n"
    "address = 0.0.0.0:2525\n"
    "tls = none\n"
    "auth = off\n"
    "auth_before_tls = challenge\n";

/* The example of DESIGN.md ("Interfaces / posternd"), verbatim: the
 * contract. */
static const char design_example[] =
    "hostname  = mail.example.test          "
        "# used in 220, EHLO reply, Received, DIGEST-MD5\n"
    "userdb    = passwd-file:/etc/postern/users    "
        "# or pgsql:<libpq conninfo>\n"
    "mailbox   = maildir:/var/mail/%d/%n     "
        "# %u address, %n local part, %d domain\n"
    "spool     = /var/spool/postern           "
        "# work files; same filesystem as the mailboxes\n"
    "tls_cert  = /etc/postern/cert.pem\n"
    "tls_key   = /etc/postern/key.pem\n"
    "max_message_size = 26214400\n"
    "sender_check = strict                   "
        "# strict | off: MAIL FROM must be the user's own\n"
    "auth_throttle = yes                     "
        "# per-address and per-user failure delays, lockout\n"
    "auth_throttle_exempt = 127.0.0.0/8 ::1  "
        "# never throttled (default: none)\n"
    "\n"
    "[listener submission]\n"
    "address   = 127.0.0.1:587               # host:port; [::1]:587 for IPv6\n"
    "tls       = starttls                    # none | starttls | implicit\n"
    "auth      = required                    # required | optional | off\n"
    "auth_before_tls = none                  # none | challenge | all\n"
    "mechanisms = SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 DIGEST-MD5 PLAIN LOGIN\n";

static void
check_mechs(const struct config_listener *l, const char *const *want,
            size_t n)
{
    if (l->mechs.n != n)
        fail_msg("[listener %s]: got %zu mechanisms, want %zu", l->name,
                 l->mechs.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(pst_sasl_mech_name(l->mechs.v[i]), want[i]);
}

/*
 * The key tables: every key documented (a line of its own in the table,
 * and "KEY = " in posternd.conf(5)), each name once per section, and
 * every default a value the parser takes (test_defaults checks what
 * they come to).
 */
static void
test_key_tables(void **state)
{
    static const char man[] = TEST_SRCDIR "/../../docs/posternd.conf.5";
    struct config_key_info k, o;
    char *text, want[128];
    size_t n = 0, len = 0;
    FILE *f;

    (void)state;
    f = fopen(man, "r");
    assert_non_null(f);
    text = malloc(1 << 20);
    assert_non_null(text);
    len = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    text[len] = '\0';
    for (size_t i = 0; config_key_at(i, &k); i++, n++) {
        assert_non_null(k.name);
        if (k.doc == NULL || k.doc[0] == '\0')
            fail_msg("key '%s': no doc line", k.name);
        snprintf(want, sizeof(want), "\"%s = ", k.name);
        if (strstr(text, want) == NULL)
            fail_msg("key '%s' (section %s) is not in posternd.conf(5)",
                     k.name, k.section != NULL ? k.section : "global");
        for (size_t j = 0; j < i; j++) {
            assert_true(config_key_at(j, &o));
            if (strcmp(o.name, k.name) == 0 &&
                (o.section == k.section ||
                 (o.section != NULL && k.section != NULL &&
                  strcmp(o.section, k.section) == 0)))
                fail_msg("key '%s' twice in one section", k.name);
        }
    }
    free(text);
    /* 43 global keys, 12 of [listener NAME], 21 of [relay NAME], 9 of
     * [profile NAME]. */
    assert_int_equal(n, 85);
    assert_false(config_key_at(n, &k));
}

/* The global user (DESIGN.md "Privileges") and a [relay NAME]'s user
 * (the upstream login) are two keys that never mix. */
static void
test_user_key(void **state)
{
    static const char text[] =
        GLOBALS
        "user = postern\n"
        "[listener a]\naddress = 127.0.0.1:587\n"
        "[relay r]\nhost = h.example:587\nauth = password\n"
        "user = scanner@contoso.example\npassword_file = /p\n";
    char err[CONFIG_ERR_MAX];
    struct config *c;

    (void)state;
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_string_equal(c->user, "postern");
    assert_int_equal(c->n_relays, 1);
    assert_string_equal(c->relays[0].user, "scanner@contoso.example");
    config_free(c);
}

/* The keys of client certificates and the security layer: values,
 * defaults, and which mechanisms they let a listener offer. */
static void
test_client_cert_keys(void **state)
{
    static const char text[] =
        "hostname = mail.example.test\n"
        "userdb = passwd-file:/etc/postern/users\n"
        "spool = /var/spool/postern\n"
        "mailbox = maildir:/var/mail/%d/%n\n"
        "tls_cert = /c\ntls_key = /k\n"
        "[listener certs]\n"
        "address = 127.0.0.1:587\n"
        "mechanisms = SCRAM-SHA-256-PLUS SCRAM-SHA-256 EXTERNAL PLAIN\n"
        "tls_client_ca = /etc/postern/clients-ca.pem\n"
        "tls_client_cert = required\n"
        "tls_client_crl = /etc/postern/clients.crl\n"
        "cert_user = fingerprint\n"
        "[listener lan]\n"
        "address = 127.0.0.1:25\n"
        "tls = none\n"
        "auth_before_tls = challenge\n"
        "mechanisms = DIGEST-MD5 CRAM-MD5\n"
        "security_layer = yes\n"
        "[listener plain]\n"
        "address = 127.0.0.1:2525\n"
        "tls_client_ca = /ca.pem\n";
    const struct pst_sasl_mech *plus = pst_sasl_mech_find(
        "SCRAM-SHA-256-PLUS", 18);
    const struct pst_sasl_mech *ext = pst_sasl_mech_find("EXTERNAL", 8);
    char err[CONFIG_ERR_MAX];
    struct config *c;

    (void)state;
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_string_equal(c->listeners[0].tls_client_ca,
                        "/etc/postern/clients-ca.pem");
    assert_int_equal(c->listeners[0].tls_client_cert_required, 1);
    assert_string_equal(c->listeners[0].tls_client_crl,
                        "/etc/postern/clients.crl");
    assert_int_equal(c->listeners[0].cert_user,
                     CONFIG_CERT_USER_FINGERPRINT);
    assert_int_equal(c->listeners[0].security_layer, 0);
    assert_true(config_listener_offers(&c->listeners[0], plus, 1));
    assert_false(config_listener_offers(&c->listeners[0], plus, 0));
    assert_true(config_listener_offers(&c->listeners[0], ext, 1));
    assert_false(config_listener_offers(&c->listeners[0], ext, 0));
    assert_null(c->listeners[1].tls_client_ca);
    assert_int_equal(c->listeners[1].security_layer, 1);
    /* The defaults. */
    assert_int_equal(c->listeners[2].tls_client_cert_required, 0);
    assert_null(c->listeners[2].tls_client_crl);
    assert_int_equal(c->listeners[2].cert_user, CONFIG_CERT_USER_SAN_EMAIL);
    assert_int_equal(c->listeners[2].security_layer, 0);
    config_free(c);

    /* fingerprint looks through the user file: not with pgsql. */
    if (parse("hostname = mail.example.test\n"
              "userdb = pgsql:dbname=postern\n"
              "spool = /var/spool/postern\n"
              "mailbox = maildir:/var/mail/%d/%n\n"
              "tls_cert = /c\ntls_key = /k\n"
              "[listener a]\naddress = 127.0.0.1:587\n"
              "tls_client_ca = /ca.pem\ncert_user = fingerprint\n",
              &c, err) == 0)
        fail_msg("fingerprint with pgsql accepted");
    assert_non_null(strstr(err, "cert_user = fingerprint needs userdb = "
                                "passwd-file"));
}

/* Routing and [relay NAME] sections: values, defaults, and what the
 * whole file must agree on. */
static void
test_relay(void **state)
{
    static const char base[] =
        "hostname = mail.example.test\n"
        "userdb = passwd-file:/etc/postern/users\n"
        "spool = /var/spool/postern\n"
        "tls_cert = /c\ntls_key = /k\n";
    static const char relays[] =
        "local_domains = Example.TEST example.org\n"
        "mailbox = maildir:/var/mail/%d/%n\n"
        "relay = m365\n"
        "queue_lifetime = 2d\n"
        "retry_min = 30s\n"
        "[listener a]\naddress = 127.0.0.1:587\n"
        "[relay m365]\n"
        "host = smtp.office365.com:587\n"
        "auth = oauth2\n"
        "user = scanner@contoso.com\n"
        "oauth2_token_url = https://login.example/t/oauth2/v2.0/token\n"
        "oauth2_client_id = 00000000-0000-0000-0000-000000000000\n"
        "oauth2_scope = https://outlook.office.com/SMTP.Send offline_access\n"
        "oauth2_token_file = /var/lib/postern/m365.token\n"
        "rewrite_sender = envelope+from\n"
        "[relay isp]\n"
        "host = [2001:db8::25]:465\n"
        "tls = implicit\n"
        "auth = password\n"
        "user = box\n"
        "password_file = /etc/postern/isp.pw\n"
        "max_connections = 10\n"
        "max_messages_per_minute = 0\n";
    static const struct {
        const char *text;
        const char *err;
    } bad[] = {
        {"[listener a]\naddress = 127.0.0.1:587\n"
         "[relay r]\nhost = h:25\ntls = none\nauth = password\n"
         "user = u\npassword_file = /p\n",
         "tls = none needs auth = none"},
        {"[listener a]\naddress = 127.0.0.1:587\n"
         "[relay r]\nhost = h:25\nauth = password\n",
         "auth = password needs user and password_file"},
        {"[listener a]\naddress = 127.0.0.1:587\n"
         "[relay r]\nhost = h:25\nauth = oauth2\nuser = u\n"
         "oauth2_token_url = http://x/t\noauth2_client_id = c\n"
         "oauth2_scope = s\noauth2_token_file = /t\n",
         "oauth2_token_url must be https://"},
        {"[listener a]\naddress = 127.0.0.1:587\n"
         "[relay r]\nhost = h:25\nauth = oauth2\nuser = u\n"
         "oauth2_token_url = https://x/t\noauth2_client_id = c\n"
         "oauth2_scope = s\n",
         "refresh_token needs oauth2_token_file"},
        {"relay = nope\n[listener a]\naddress = 127.0.0.1:587\n"
         "[relay r]\nhost = h:25\n",
         "relay = nope: no [relay nope] section"},
        {"[listener a]\naddress = 127.0.0.1:587\n[relay r]\nhost = h\n",
         "bad smarthost 'h'"},
        {"[listener a]\naddress = 127.0.0.1:587\n[relay r]\n"
         "host = h:25\nrewrite_sender = envelope\n",
         "rewrite_sender needs user"},
        /* Local domains need the mailboxes; so does no relay at all. */
        {"local_domains = example.test\n[listener a]\n"
         "address = 127.0.0.1:587\n[relay r]\nhost = h:25\n",
         "missing required key 'mailbox'"},
        {"[listener a]\naddress = 127.0.0.1:587\n",
         "missing required key 'mailbox'"},
        {"mailbox = maildir:/m/%u\nqueue = /q\n"
         "[listener a]\naddress = 127.0.0.1:587\n",
         "queue without any [relay NAME]"},
        {"local_domains = a..b\n", "bad domain 'a..b'"},
        {"mailbox = maildir:/m/%u\n[listener a]\naddress = 127.0.0.1:587\n"
         "mechanisms = PLAIN XOAUTH2\n",
         "mechanism XOAUTH2 is not offered by posternd"},
        {"mailbox = maildir:/m/%u\n[listener a]\naddress = 127.0.0.1:587\n"
         "mechanisms = PLAIN OAUTHBEARER\n",
         "mechanism OAUTHBEARER is not offered by posternd"},
        {"mailbox = maildir:/m/%u\n[listener a]\naddress = 127.0.0.1:587\n"
         "tls = none\nmechanisms = SCRAM-SHA-256-PLUS\n",
         "mechanism SCRAM-SHA-256-PLUS needs TLS"},
        {"mailbox = maildir:/m/%u\n[listener a]\naddress = 127.0.0.1:587\n"
         "tls = none\nmechanisms = EXTERNAL\n",
         "mechanism EXTERNAL needs TLS"},
        {"mailbox = maildir:/m/%u\n"
         "[listener a]\naddress = 127.0.0.1:587\nmechanisms = EXTERNAL\n",
         "mechanism EXTERNAL needs tls_client_ca"},
        {"mailbox = maildir:/m/%u\n[listener a]\naddress = 127.0.0.1:587\n"
         "tls = none\ntls_client_ca = /ca\nauth_before_tls = all\n",
         "tls_client_ca needs tls = starttls or implicit"},
        {"mailbox = maildir:/m/%u\n"
         "[listener a]\naddress = 127.0.0.1:587\ncert_user = subject-cn\n",
         "cert_user needs tls_client_ca"},
        {"mailbox = maildir:/m/%u\n"
         "[listener a]\naddress = 127.0.0.1:587\ntls_client_crl = /crl\n",
         "tls_client_crl needs tls_client_ca"},
        {"mailbox = maildir:/m/%u\n"
         "[listener a]\naddress = 127.0.0.1:587\n"
         "tls_client_cert = required\n",
         "tls_client_cert needs tls_client_ca"},
        {"mailbox = maildir:/m/%u\n"
         "[listener a]\naddress = 127.0.0.1:587\ntls_client_ca = /ca\n"
         "cert_user = issuer\n",
         "issuer"},
        {"mailbox = maildir:/m/%u\n"
         "[listener a]\naddress = 127.0.0.1:587\nsecurity_layer = yes\n",
         "security_layer = yes needs DIGEST-MD5 offered without TLS"},
        {"mailbox = maildir:/m/%u\n[listener a]\naddress = 127.0.0.1:587\n"
         "tls = none\nauth_before_tls = all\nmechanisms = CRAM-MD5\n"
         "security_layer = yes\n",
         "security_layer = yes needs DIGEST-MD5 offered without TLS"},
        {"retry_min = 2h\nretry_max = 1h\n[listener a]\n"
         "address = 127.0.0.1:587\n[relay r]\nhost = h:25\n",
         "retry_max is shorter than retry_min"},
    };
    char text[4096], err[CONFIG_ERR_MAX];
    const struct config_relay *r;
    struct config *c;

    (void)state;
    snprintf(text, sizeof(text), "%s%s", base, relays);
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_int_equal(c->local_domains.n, 2);
    assert_string_equal(c->local_domains.v[0], "example.test");
    assert_true(config_domain_local(c, "EXAMPLE.org", 11));
    assert_false(config_domain_local(c, "example.com", 11));
    assert_string_equal(c->relay, "m365");
    assert_string_equal(c->queue, "/var/spool/postern/queue");
    assert_int_equal(c->queue_lifetime, 2 * 86400);
    assert_int_equal(c->retry_min, 30);
    assert_int_equal(c->retry_max, 3600);
    assert_int_equal(c->n_relays, 2);
    r = config_relay_find(c, "m365");
    assert_non_null(r);
    assert_string_equal(r->host.host, "smtp.office365.com");
    assert_int_equal(r->host.port, 587);
    assert_int_equal(r->tls, CONFIG_RELAY_TLS_STARTTLS);
    assert_int_equal(r->auth, CONFIG_RELAY_AUTH_OAUTH2);
    assert_int_equal(r->oauth2_grant, CONFIG_GRANT_REFRESH_TOKEN);
    assert_int_equal(r->rewrite_sender, CONFIG_REWRITE_ENVELOPE_FROM);
    assert_int_equal(r->max_connections, 3);
    assert_int_equal(r->max_messages_per_minute, 30);
    assert_int_equal(r->connect_timeout, 30);
    assert_int_equal(r->timeout, 300);
    r = config_relay_find(c, "isp");
    assert_non_null(r);
    assert_string_equal(r->host.host, "2001:db8::25");
    assert_int_equal(r->host.port, 465);
    assert_int_equal(r->tls, CONFIG_RELAY_TLS_IMPLICIT);
    assert_int_equal(r->max_connections, 10);
    assert_int_equal(r->max_messages_per_minute, 0);
    assert_null(config_relay_find(c, "other"));
    config_free(c);

    /* A pure relay: no mailbox. */
    snprintf(text, sizeof(text), "%s[listener a]\naddress = 127.0.0.1:587\n"
             "[relay r]\nhost = h.example:25\n", base);
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_null(c->mailbox);
    config_free(c);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "%s%s", base, bad[i].text);
        if (parse(text, &c, err) == 0)
            fail_msg("row %zu accepted, want \"%s\"", i, bad[i].err);
        if (strstr(err, bad[i].err) == NULL)
            fail_msg("row %zu: got \"%s\", want \"...%s...\"", i, err,
                     bad[i].err);
    }
}

static void
test_full_file(void **state)
{
    static const char *const all6[] = {
        "SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "DIGEST-MD5", "PLAIN",
        "LOGIN",
    };
    static const char *const lib6[] = {
        "SCRAM-SHA-256", "SCRAM-SHA-1", "DIGEST-MD5", "CRAM-MD5", "PLAIN",
        "LOGIN",
    };
    static const char *const two[] = {"PLAIN", "SCRAM-SHA-256"};
    char err[CONFIG_ERR_MAX];
    struct config *c;
    const struct sockaddr_in *in;
    const struct sockaddr_in6 *in6;
    uint8_t loopback6[16] = {[15] = 1};

    (void)state;
    if (parse(full_file, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_string_equal(c->file, FILE_NAME);
    assert_string_equal(c->hostname, "mail.example.test");
    assert_int_equal(c->userdb.kind, CONFIG_USERDB_PGSQL);
    /* "#" not after white space belongs to the value. */
    assert_string_equal(c->userdb.arg, "host=db dbname=postern password=a#b");
    assert_string_equal(c->mailbox, "/var/mail/%d/%n");
    assert_string_equal(c->spool, "/var/spool/postern");
    assert_string_equal(c->tls_cert, "/etc/postern/cert.pem");
    assert_string_equal(c->tls_key, "/etc/postern/key.pem");
    assert_int_equal(c->tls_min_version, TLS_VERSION_1_1);
    assert_int_equal(c->max_message_size, 10485760);
    assert_int_equal(c->sender_check, CONFIG_SENDER_OFF);
    assert_int_equal(c->auth_throttle, 0);
    assert_int_equal(c->auth_throttle_exempt.n, 3);
    assert_int_equal(c->auth_throttle_exempt.v[0].family, AF_INET);
    assert_int_equal(c->auth_throttle_exempt.v[0].prefix, 8);
    assert_int_equal(c->auth_throttle_exempt.v[1].family, AF_INET6);
    assert_int_equal(c->auth_throttle_exempt.v[1].prefix, 128);
    assert_int_equal(c->auth_throttle_exempt.v[2].prefix, 24);
    assert_int_equal(c->max_recipients, 50);
    assert_int_equal(c->max_connections, 200);
    assert_int_equal(c->max_connections_per_ip, 7);
    assert_int_equal(c->max_errors, 5);
    assert_int_equal(c->timeout_command, 300);
    assert_int_equal(c->timeout_data, 120);
    assert_int_equal(c->timeout_final, 3600);
    assert_int_equal(c->grace_period, 0);
    assert_int_equal(c->workers, 4);
    assert_string_equal(c->user, "postern");
    assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(c->legacy_auth_line, 1);

    assert_int_equal(c->n_listeners, 3);
    assert_string_equal(c->listeners[0].name, "submission");
    assert_string_equal(c->listeners[0].address.text, "127.0.0.1:587");
    in = (const struct sockaddr_in *)&c->listeners[0].address.sa;
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 587);
    assert_int_equal(ntohl(in->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(c->listeners[0].address.len, sizeof(struct sockaddr_in));
    assert_int_equal(c->listeners[0].tls, CONFIG_TLS_STARTTLS);
    assert_int_equal(c->listeners[0].auth, CONFIG_AUTH_REQUIRED);
    assert_int_equal(c->listeners[0].auth_before_tls, CONFIG_ABT_NONE);
    assert_int_equal(c->listeners[0].line, 27);
    check_mechs(&c->listeners[0], all6, 6);

    assert_string_equal(c->listeners[1].name, "smtps");
    in6 = (const struct sockaddr_in6 *)&c->listeners[1].address.sa;
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 465);
    assert_memory_equal(&in6->sin6_addr, loopback6, 16);
    assert_int_equal(c->listeners[1].address.len, sizeof(struct sockaddr_in6));
    assert_int_equal(c->listeners[1].tls, CONFIG_TLS_IMPLICIT);
    assert_int_equal(c->listeners[1].auth, CONFIG_AUTH_OPTIONAL);
    check_mechs(&c->listeners[1], two, 2);
    assert_true(config_listener_has_mech(&c->listeners[1],
                                         pst_sasl_mech_find("PLAIN", 5)));
    assert_false(config_listener_has_mech(&c->listeners[1],
                                          pst_sasl_mech_find("LOGIN", 5)));

    assert_string_equal(c->listeners[2].name, "legacy");
    assert_int_equal(c->listeners[2].tls, CONFIG_TLS_NONE);
    assert_int_equal(c->listeners[2].auth, CONFIG_AUTH_OFF);
    assert_int_equal(c->listeners[2].auth_before_tls, CONFIG_ABT_CHALLENGE);
    check_mechs(&c->listeners[2], lib6, 6); /* the default */
    config_free(c);
}

static void
test_design_example(void **state)
{
    char err[CONFIG_ERR_MAX];
    struct config *c;

    (void)state;
    if (parse(design_example, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    /* Trailing comments are not part of the values. */
    assert_string_equal(c->hostname, "mail.example.test");
    assert_string_equal(c->userdb.arg, "/etc/postern/users");
    assert_string_equal(c->mailbox, "/var/mail/%d/%n");
    assert_string_equal(c->spool, "/var/spool/postern");
    assert_int_equal(c->max_message_size, 26214400);
    assert_int_equal(c->sender_check, CONFIG_SENDER_STRICT);
    assert_int_equal(c->auth_throttle, 1);
    assert_int_equal(c->auth_throttle_exempt.n, 2);
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].name, "submission");
    assert_string_equal(c->listeners[0].address.text, "127.0.0.1:587");
    assert_int_equal(c->listeners[0].tls, CONFIG_TLS_STARTTLS);
    assert_int_equal(c->listeners[0].auth, CONFIG_AUTH_REQUIRED);
    assert_int_equal(c->listeners[0].auth_before_tls, CONFIG_ABT_NONE);
    assert_int_equal(c->listeners[0].mechs.n, 6);
    config_free(c);
}

/* What each auth_before_tls value offers before and after TLS. */
static void
test_offers(void **state)
{
    static const struct {
        const char *listener; /* lines after "[listener a]" */
        const char *before;   /* mechanisms offered without TLS */
        const char *after;    /* and under TLS */
    } v[] = {
        {"auth_before_tls = none\n", "",
         "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 PLAIN LOGIN "},
        {"auth_before_tls = challenge\n",
         "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 ",
         "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 PLAIN LOGIN "},
        {"auth_before_tls = all\nmechanisms = LOGIN CRAM-MD5\n",
         "CRAM-MD5 LOGIN ", "CRAM-MD5 LOGIN "},
        {"auth_before_tls = all\nauth = off\n", "", ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char text[1024], err[CONFIG_ERR_MAX], got[2][256];
        struct config *c;

        snprintf(text, sizeof(text), "%s%s", GLOBALS LISTENER,
                 v[i].listener);
        if (parse(text, &c, err) != 0)
            fail_msg("case %zu: got error \"%s\", want none", i, err);
        for (int tls = 0; tls < 2; tls++) {
            const struct pst_sasl_mech *m;

            got[tls][0] = '\0';
            for (size_t k = 0; (m = pst_sasl_mech_at(k)) != NULL; k++) {
                if (config_listener_offers(&c->listeners[0], m, tls)) {
                    strncat(got[tls], pst_sasl_mech_name(m), 64);
                    strncat(got[tls], " ", 2);
                }
            }
        }
        if (strcmp(got[0], v[i].before) != 0 ||
            strcmp(got[1], v[i].after) != 0)
            fail_msg("case %zu: got \"%s\" / \"%s\", want \"%s\" / "
                     "\"%s\"", i, got[0], got[1], v[i].before,
                     v[i].after);
        assert_false(config_listener_offers(&c->listeners[0], NULL, 1));
        config_free(c);
    }
}

/* Only the required keys: every default. */
static void
test_defaults(void **state)
{
    static const char text[] =
        "hostname = mx\n"
        "userdb = passwd-file:users\n"
        "mailbox = maildir:/m/%u\n"
        "spool = spool\n"
        "[listener plain]\n"
        "address = 127.0.0.1:2525\n"
        "tls = none\n"
        "auth_before_tls = all\n";
    char err[CONFIG_ERR_MAX];
    struct config *c;

    (void)state;
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_int_equal(c->userdb.kind, CONFIG_USERDB_PASSWD_FILE);
    assert_string_equal(c->userdb.arg, "users");
    assert_null(c->tls_cert);
    assert_null(c->tls_key);
    assert_int_equal(c->tls_min_version, TLS_VERSION_1_2);
    assert_int_equal(c->max_message_size, 26214400);
    assert_int_equal(c->sender_check, CONFIG_SENDER_STRICT);
    assert_int_equal(c->auth_throttle, 1);
    assert_int_equal(c->auth_throttle_exempt.n, 0);
    assert_int_equal(c->max_recipients, 100);
    assert_int_equal(c->max_connections, 1000);
    assert_int_equal(c->max_connections_per_ip, 50);
    assert_int_equal(c->max_errors, 20);
    assert_int_equal(c->timeout_command, 300);
    assert_int_equal(c->timeout_data, 180);
    assert_int_equal(c->timeout_final, 600);
    assert_int_equal(c->session_time_limit, 3600);
    assert_int_equal(c->data_time_limit, 1800);
    assert_int_equal(c->auth_failure_delay_ms, 1000);
    assert_int_equal(c->grace_period, 30);
    assert_int_equal(c->workers, 0);
    assert_null(c->user); /* as started (DESIGN.md "Privileges") */
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    assert_int_equal(c->legacy_auth_line, 0);
    assert_int_equal(c->auth_throttle_delay, 1);
    assert_int_equal(c->auth_throttle_max_delay, 15);
    assert_int_equal(c->auth_throttle_lockout_failures, 10);
    assert_int_equal(c->auth_throttle_lockout_time, 300);
    assert_int_equal(c->auth_throttle_user_failures, 10);
    assert_int_equal(c->auth_throttle_forget, 600);
    assert_int_equal(c->listeners[0].auth, CONFIG_AUTH_REQUIRED);
    assert_int_equal(c->listeners[0].mechs.n, 6);
    config_free(c);
}

/* The throttle's thresholds (throttle.h) are configuration keys. */
static void
test_throttle_keys(void **state)
{
    static const char text[] =
        "hostname = mx\n"
        "userdb = passwd-file:users\n"
        "mailbox = maildir:/m/%u\n"
        "spool = spool\n"
        "auth_throttle_delay = 2s\n"
        "auth_throttle_max_delay = 1m\n"
        "auth_throttle_lockout_failures = 0\n"
        "auth_throttle_lockout_time = 1h\n"
        "auth_throttle_user_failures = 25\n"
        "auth_throttle_forget = 20m\n"
        "[listener plain]\n"
        "address = 127.0.0.1:2525\n"
        "tls = none\n"
        "auth_before_tls = all\n";
    static const char bad[] =
        "hostname = mx\n"
        "userdb = passwd-file:users\n"
        "mailbox = maildir:/m/%u\n"
        "spool = spool\n"
        "auth_throttle_max_delay = 10m\n"
        "[listener plain]\n"
        "address = 127.0.0.1:2525\n"
        "tls = none\n"
        "auth_before_tls = all\n";
    char err[CONFIG_ERR_MAX];
    struct config *c;

    (void)state;
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_int_equal(c->auth_throttle_delay, 2);
    assert_int_equal(c->auth_throttle_max_delay, 60);
    assert_int_equal(c->auth_throttle_lockout_failures, 0);
    assert_int_equal(c->auth_throttle_lockout_time, 3600);
    assert_int_equal(c->auth_throttle_user_failures, 25);
    assert_int_equal(c->auth_throttle_forget, 1200);
    config_free(c);
    assert_int_not_equal(parse(bad, &c, err), 0);
    assert_non_null(strstr(err, ":5: "));
    assert_non_null(strstr(err, "auth_throttle_max_delay"));
}

/* The time limits and auth_failure_delay (milliseconds: ms, s, m, h, or
 * bare seconds). */
static void
test_limit_keys(void **state)
{
    static const struct {
        const char *line;
        unsigned session, data, delay_ms;
    } cases[] = {
        {"auth_failure_delay = 250ms\n", 3600, 1800, 250},
        {"auth_failure_delay = 2\n", 3600, 1800, 2000},
        {"auth_failure_delay = 2s\n", 3600, 1800, 2000},
        {"auth_failure_delay = 1m\n", 3600, 1800, 60000},
        {"auth_failure_delay = 0\n", 3600, 1800, 0},
        {"session_time_limit = 0\n", 0, 1800, 1000},
        {"session_time_limit = 2h\n", 7200, 1800, 1000},
        {"data_time_limit = 0\n", 3600, 0, 1000},
        {"data_time_limit = 90s\n", 3600, 90, 1000},
    };
    static const char *const bad[] = {
        "auth_failure_delay = 61s\n",
        "auth_failure_delay = 1h\n",
        "auth_failure_delay = 60001ms\n",
        "auth_failure_delay = ms\n",
        "auth_failure_delay = 5 ms\n",
        "auth_failure_delay = -1\n",
        "session_time_limit = 8d\n",
        "data_time_limit = 604801\n",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512], err[CONFIG_ERR_MAX];
        struct config *c;

        snprintf(text, sizeof(text), "%s%s" LISTENER, GLOBALS,
                 cases[i].line);
        if (parse(text, &c, err) != 0)
            fail_msg("case %zu: got error \"%s\", want none", i, err);
        if (c->session_time_limit != cases[i].session ||
            c->data_time_limit != cases[i].data ||
            c->auth_failure_delay_ms != cases[i].delay_ms)
            fail_msg("case %zu (%s): got %u/%u/%u, want %u/%u/%u", i,
                     cases[i].line, c->session_time_limit,
                     c->data_time_limit, c->auth_failure_delay_ms,
                     cases[i].session, cases[i].data, cases[i].delay_ms);
        config_free(c);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512], err[CONFIG_ERR_MAX];
        struct config *c;

        snprintf(text, sizeof(text), "%s%s" LISTENER, GLOBALS, bad[i]);
        if (parse(text, &c, err) == 0) {
            config_free(c);
            fail_msg("case %zu (%s): accepted, want an error", i, bad[i]);
        }
        if (strstr(err, "bad value") == NULL)
            fail_msg("case %zu: got \"%s\", want a bad value", i, err);
    }
}

/* log, metrics, proxy_protocol and proxy_from: values and defaults. */
static void
test_ops_keys(void **state)
{
    static const char text[] =
        GLOBALS
        "log = syslog\n"
        "metrics = [::1]:9425\n"
        "[listener lb]\n"
        "address = 127.0.0.1:2587\n"
        "proxy_protocol = v2\n"
        "proxy_from = 127.0.0.1/32 10.0.0.0/8, 2001:db8::/32\n"
        "[listener old]\n"
        "address = 127.0.0.1:2588\n"
        "proxy_protocol = v1\n"
        "proxy_from = 192.0.2.7\n"
        "[listener direct]\n"
        "address = 127.0.0.1:2589\n";
    const struct sockaddr_in6 *sa6;
    struct config *c;
    char err[CONFIG_ERR_MAX];

    (void)state;
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_int_equal(c->log, CONFIG_LOG_SYSLOG);
    assert_string_equal(c->metrics.text, "[::1]:9425");
    sa6 = (const struct sockaddr_in6 *)&c->metrics.sa;
    assert_int_equal(sa6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sa6->sin6_port), 9425);
    assert_int_equal(c->n_listeners, 3);
    assert_int_equal(c->listeners[0].proxy_protocol, CONFIG_PROXY_V2);
    assert_int_equal(c->listeners[0].proxy_from.n, 3);
    assert_int_equal(c->listeners[0].proxy_from.v[1].prefix, 8);
    assert_int_equal(c->listeners[0].proxy_from.v[2].family, AF_INET6);
    assert_int_equal(c->listeners[1].proxy_protocol, CONFIG_PROXY_V1);
    assert_int_equal(c->listeners[1].proxy_from.n, 1);
    assert_int_equal(c->listeners[1].proxy_from.v[0].prefix, 32);
    assert_int_equal(c->listeners[2].proxy_protocol, CONFIG_PROXY_NONE);
    assert_int_equal(c->listeners[2].proxy_from.n, 0);
    config_free(c);
    /* Defaults: stderr, no metrics. */
    if (parse(GLOBALS LISTENER, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_int_equal(c->log, CONFIG_LOG_STDERR);
    assert_null(c->metrics.text);
    assert_int_equal(c->listeners[0].proxy_protocol, CONFIG_PROXY_NONE);
    config_free(c);
}

struct error_case {
    const char *text;
    const char *want;
};

static const struct error_case error_cases[] = {
    /* Syntax. */
    {GLOBALS "hostnme = x\n" LISTENER,
     "posternd.conf:7: unknown key 'hostnme'"},
    {GLOBALS "host\001name = x\n" LISTENER,
     "posternd.conf:7: unknown key 'host?name'"},
    {GLOBALS "spool = /x\n" LISTENER,
     "posternd.conf:7: duplicate key 'spool' (first on line 4)"},
    {GLOBALS "hostname mail\n" LISTENER,
     "posternd.conf:7: expected 'key = value' or '[listener NAME], "
     "[relay NAME] or [profile NAME]'"},
    {GLOBALS " = x\n" LISTENER,
     "posternd.conf:7: expected 'key = value' or '[listener NAME], "
     "[relay NAME] or [profile NAME]'"},
    {GLOBALS "grace_period =   # nothing\n" LISTENER,
     "posternd.conf:7: empty value for 'grace_period'"},
    {GLOBALS "[listener a\n",
     "posternd.conf:7: section header without ']'"},
    {GLOBALS "[server a]\n",
     "posternd.conf:7: unknown section '[server a]' (want [listener NAME], "
     "[relay NAME] or [profile NAME])"},
    {GLOBALS "[listener]\n",
     "posternd.conf:7: unknown section '[listener]' (want [listener NAME], "
     "[relay NAME] or [profile NAME])"},
    {GLOBALS "[listener a/b]\n",
     "posternd.conf:7: bad listener name 'a/b' (letters, digits, '-', '_' "
     "and '.')"},
    {GLOBALS LISTENER "[listener a]\n",
     "posternd.conf:9: duplicate [listener a] (first on line 7)"},
    {GLOBALS LISTENER "spool = /x\n",
     "posternd.conf:9: global key 'spool' after [listener a] (global keys "
     "go before the first section)"},
    /* The global user (posternd runs as) is not a relay's. */
    {GLOBALS LISTENER "user = postern\n",
     "posternd.conf:9: global key 'user' after [listener a] (global keys "
     "go before the first section)"},
    {GLOBALS "address = 127.0.0.1:25\n" LISTENER,
     "posternd.conf:7: key 'address' belongs in a [listener NAME] section"},
    {GLOBALS LISTENER "adress = 127.0.0.1:25\n",
     "posternd.conf:9: unknown key 'adress' in [listener a]"},
    {GLOBALS LISTENER "tls = none\ntls = none\n",
     "posternd.conf:10: duplicate key 'tls' (first on line 9)"},
    {GLOBALS "max_errors = 1\0\n" LISTENER,
     "posternd.conf:7: NUL byte"},
    /* Values. */
    {"hostname = -bad.example\n",
     "posternd.conf:1: bad value '-bad.example' for 'hostname' (want a "
     "domain name)"},
    {"hostname = mail..example\n",
     "posternd.conf:1: bad value 'mail..example' for 'hostname' (want a "
     "domain name)"},
    {"userdb = ldap:x\n",
     "posternd.conf:1: bad value 'ldap:x' for 'userdb' (want "
     "passwd-file:PATH or pgsql:CONNINFO)"},
    {"userdb = passwd-file:\n",
     "posternd.conf:1: bad value 'passwd-file:' for 'userdb' (want "
     "passwd-file:PATH or pgsql:CONNINFO)"},
    {"mailbox = mbox:/var/mail/%u\n",
     "posternd.conf:1: bad value 'mbox:/var/mail/%u' for 'mailbox' (want "
     "maildir:TEMPLATE)"},
    {"mailbox = maildir:var/%n\n",
     "posternd.conf:1: bad value 'maildir:var/%n' for 'mailbox': the path "
     "must be absolute"},
    {"mailbox = maildir:/var/%x\n",
     "posternd.conf:1: bad value 'maildir:/var/%x' for 'mailbox': unknown "
     "%-escape (want %u, %n, %d or %%)"},
    {"mailbox = maildir:/var/mail/%n%\n",
     "posternd.conf:1: bad value 'maildir:/var/mail/%n%' for 'mailbox': "
     "unknown %-escape (want %u, %n, %d or %%)"},
    {"mailbox = maildir:/var/mail/../%n\n",
     "posternd.conf:1: bad value 'maildir:/var/mail/../%n' for 'mailbox': "
     "the path must not have '.' or '..' components"},
    {"tls_min_version = SSLv3\n",
     "posternd.conf:1: bad value 'SSLv3' for 'tls_min_version' (want "
     "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)"},
    {"max_message_size = 10k\n",
     "posternd.conf:1: bad value '10k' for 'max_message_size' (want a "
     "number >= 1)"},
    {"max_message_size = 99999999999999999999\n",
     "posternd.conf:1: bad value '99999999999999999999' for "
     "'max_message_size' (want a number >= 1)"},
    {"sender_check = maybe\n",
     "posternd.conf:1: bad value 'maybe' for 'sender_check' (want strict "
     "or off)"},
    {"auth_throttle = true\n",
     "posternd.conf:1: bad value 'true' for 'auth_throttle' (want yes or "
     "no)"},
    {"auth_throttle_exempt = 127.0.0.0/8 10.1.2.3/8\n",
     "posternd.conf:1: bad network '10.1.2.3/8' in 'auth_throttle_exempt' "
     "(want ADDRESS or ADDRESS/PREFIX, no host bits past the prefix)"},
    {"auth_throttle_exempt = localhost\n",
     "posternd.conf:1: bad network 'localhost' in 'auth_throttle_exempt' "
     "(want ADDRESS or ADDRESS/PREFIX, no host bits past the prefix)"},
    {"max_recipients = 0\n",
     "posternd.conf:1: bad value '0' for 'max_recipients' (want a number "
     "from 1 to 100000)"},
    {"max_connections = -1\n",
     "posternd.conf:1: bad value '-1' for 'max_connections' (want a number "
     "from 1 to 1000000)"},
    {"max_connections_per_ip = 1000001\n",
     "posternd.conf:1: bad value '1000001' for 'max_connections_per_ip' "
     "(want a number from 1 to 1000000)"},
    {"max_errors = 1 0\n",
     "posternd.conf:1: bad value '1 0' for 'max_errors' (want a number "
     "from 3 to 1000)"},
    {"timeout_command = 5x\n",
     "posternd.conf:1: bad value '5x' for 'timeout_command' (want seconds "
     "from 1 to 86400, optionally with s, m, h or d)"},
    {"timeout_data = 0\n",
     "posternd.conf:1: bad value '0' for 'timeout_data' (want seconds from "
     "1 to 86400, optionally with s, m, h or d)"},
    {"timeout_final = 25h\n",
     "posternd.conf:1: bad value '25h' for 'timeout_final' (want seconds "
     "from 1 to 86400, optionally with s, m, h or d)"},
    {"grace_period = s\n",
     "posternd.conf:1: bad value 's' for 'grace_period' (want seconds from "
     "0 to 86400, optionally with s, m, h or d)"},
    {"workers = 0\n",
     "posternd.conf:1: bad value '0' for 'workers' (want auto or a number "
     "from 1 to 1024)"},
    {"log_level = verbose\n",
     "posternd.conf:1: bad value 'verbose' for 'log_level' (want panic, "
     "fatal, warn, info or debug)"},
    {"legacy_auth_line = 1\n",
     "posternd.conf:1: bad value '1' for 'legacy_auth_line' (want yes or "
     "no)"},
    {GLOBALS "[listener a]\ntls = sometimes\n",
     "posternd.conf:8: bad value 'sometimes' for 'tls' (want none, "
     "starttls or implicit)"},
    {GLOBALS "[listener a]\nauth = maybe\n",
     "posternd.conf:8: bad value 'maybe' for 'auth' (want required, "
     "optional or off)"},
    {GLOBALS "[listener a]\nauth_before_tls = some\n",
     "posternd.conf:8: bad value 'some' for 'auth_before_tls' (want none, "
     "challenge or all)"},
    /* Listener addresses that do not parse. */
    {GLOBALS "[listener a]\naddress = localhost:587\n",
     "posternd.conf:8: bad address 'localhost:587' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = 127.0.0.1\n",
     "posternd.conf:8: bad address '127.0.0.1' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = ::1:587\n",
     "posternd.conf:8: bad address '::1:587' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = [::1]587\n",
     "posternd.conf:8: bad address '[::1]587' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = [127.0.0.1]:587\n",
     "posternd.conf:8: bad address '[127.0.0.1]:587' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = 127.0.0.1:0\n",
     "posternd.conf:8: bad address '127.0.0.1:0' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = 127.0.0.1:65536\n",
     "posternd.conf:8: bad address '127.0.0.1:65536' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "[listener a]\naddress = 256.0.0.1:25\n",
     "posternd.conf:8: bad address '256.0.0.1:25' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    /* Mechanisms. */
    {GLOBALS LISTENER "mechanisms = PLAIN SCRAM-SHA-512\n",
     "posternd.conf:9: unknown mechanism 'SCRAM-SHA-512'"},
    {GLOBALS LISTENER "mechanisms = PLAIN LOGIN plain\n",
     "posternd.conf:9: mechanism 'PLAIN' listed twice"},
    {GLOBALS LISTENER "mechanisms = ,\n",
     "posternd.conf:9: [listener a]: no mechanisms"},
    /* Whole-file checks. */
    {"userdb = passwd-file:/u\nmailbox = maildir:/m/%u\nspool = /s\n"
     "[listener a]\naddress = 127.0.0.1:25\ntls = none\n",
     "posternd.conf: missing required key 'hostname'"},
    {"hostname = mx\nmailbox = maildir:/m/%u\nspool = /s\n"
     "[listener a]\naddress = 127.0.0.1:25\ntls = none\n",
     "posternd.conf: missing required key 'userdb'"},
    {"hostname = mx\nuserdb = passwd-file:/u\nspool = /s\n"
     "[listener a]\naddress = 127.0.0.1:25\ntls = none\n",
     "posternd.conf: missing required key 'mailbox'"},
    {"hostname = mx\nuserdb = passwd-file:/u\nmailbox = maildir:/m/%u\n"
     "[listener a]\naddress = 127.0.0.1:25\ntls = none\n",
     "posternd.conf: missing required key 'spool'"},
    {GLOBALS,
     "posternd.conf: no [listener NAME] section"},
    {GLOBALS "[listener a]\ntls = none\n",
     "posternd.conf:7: [listener a] has no address"},
    {"hostname = mx\nuserdb = passwd-file:/u\nmailbox = maildir:/m/%u\n"
     "spool = /s\ntls_cert = /c.pem\n"
     "[listener a]\naddress = 127.0.0.1:25\n",
     "posternd.conf:5: tls_cert without tls_key"},
    {"hostname = mx\nuserdb = passwd-file:/u\nmailbox = maildir:/m/%u\n"
     "spool = /s\ntls_key = /k.pem\n"
     "[listener a]\naddress = 127.0.0.1:25\n",
     "posternd.conf:5: tls_key without tls_cert"},
    {"hostname = mx\nuserdb = passwd-file:/u\nmailbox = maildir:/m/%u\n"
     "spool = /s\n"
     "[listener a]\naddress = 127.0.0.1:25\ntls = starttls\n",
     "posternd.conf:7: [listener a]: tls = starttls needs tls_cert and "
     "tls_key"},
    {"hostname = mx\nuserdb = passwd-file:/u\nmailbox = maildir:/m/%u\n"
     "spool = /s\n"
     "[listener a]\naddress = 127.0.0.1:25\ntls = none\nauth = off\n"
     "[listener b]\ntls = implicit\naddress = 127.0.0.1:465\n",
     "posternd.conf:10: [listener b]: tls = implicit needs tls_cert and "
     "tls_key"},
    {"hostname = mx\nuserdb = passwd-file:/u\nmailbox = maildir:/m/%u\n"
     "spool = /s\n"
     "[listener a]\naddress = 127.0.0.1:25\n",
     "posternd.conf:5: [listener a]: tls = starttls (the default) needs "
     "tls_cert and tls_key"},
    {GLOBALS "[listener a]\naddress = 127.0.0.1:25\ntls = none\n",
     "posternd.conf:7: [listener a]: tls = none and auth_before_tls = none "
     "leave no mechanism to offer"},
    {GLOBALS "[listener a]\naddress = 127.0.0.1:25\ntls = none\n"
     "auth_before_tls = challenge\nmechanisms = PLAIN LOGIN\n",
     "posternd.conf:10: [listener a]: tls = none and auth_before_tls = "
     "challenge leave no mechanism to offer"},
    /* Operations (DESIGN.md "Operations and the other SASL keys"). */
    {"log = journal\n",
     "posternd.conf:1: bad value 'journal' for 'log' (want stderr or "
     "syslog)"},
    {"metrics = localhost:9425\n",
     "posternd.conf:1: bad address 'localhost:9425' (want IPV4:PORT or "
     "[IPV6]:PORT, numeric)"},
    {GLOBALS "metrics = 0.0.0.0:587\n" LISTENER,
     "posternd.conf:7: metrics = 0.0.0.0:587 overlaps [listener a]"},
    {GLOBALS LISTENER "proxy_protocol = v3\n",
     "posternd.conf:9: bad value 'v3' for 'proxy_protocol' (want none, v1 "
     "or v2)"},
    {GLOBALS LISTENER "proxy_protocol = v2\n",
     "posternd.conf:9: [listener a]: proxy_protocol = v2 needs proxy_from"},
    {GLOBALS LISTENER "proxy_from = 10.0.0.0/8\n",
     "posternd.conf:9: [listener a]: proxy_from needs proxy_protocol = v1 "
     "or v2"},
    {GLOBALS LISTENER "proxy_protocol = none\nproxy_from = 10.0.0.0/8\n",
     "posternd.conf:10: [listener a]: proxy_from needs proxy_protocol = v1 "
     "or v2"},
    {GLOBALS LISTENER "proxy_protocol = v1\nproxy_from = 10.1.0.0/8\n",
     "posternd.conf:10: bad network '10.1.0.0/8' in 'proxy_from' (want "
     "ADDRESS or ADDRESS/PREFIX, no host bits past the prefix)"},
    /* Two listeners on one address. */
    {GLOBALS LISTENER "[listener b]\naddress = 127.0.0.1:587\n",
     "posternd.conf:10: address 127.0.0.1:587 of [listener b] overlaps "
     "[listener a] (line 8)"},
    {GLOBALS LISTENER "[listener b]\naddress = 0.0.0.0:587\n",
     "posternd.conf:10: address 0.0.0.0:587 of [listener b] overlaps "
     "[listener a] (line 8)"},
    {GLOBALS "[listener a]\naddress = 0.0.0.0:25\n"
     "[listener b]\naddress = 127.0.0.1:25\n",
     "posternd.conf:10: address 127.0.0.1:25 of [listener b] overlaps "
     "[listener a] (line 8)"},
    {GLOBALS "[listener a]\naddress = [::]:25\n"
     "[listener b]\naddress = 127.0.0.1:25\n"
     "[listener c]\naddress = [::1]:25\n",
     "posternd.conf:12: address [::1]:25 of [listener c] overlaps "
     "[listener a] (line 8)"},
};

static void
test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]);
         i++) {
        const struct error_case *e = &error_cases[i];
        char err[CONFIG_ERR_MAX];
        struct config *c = (struct config *)&err; /* must be reset */
        size_t len = strlen(e->text);
        int rc;

        /* The NUL case: its text goes on past the NUL. */
        if (strstr(e->want, "NUL byte") != NULL)
            len += 1 + strlen(e->text + len + 1);
        rc = config_parse(FILE_NAME, e->text, len, &c, err, sizeof(err));
        if (rc != PST_ESYNTAX || strcmp(err, e->want) != 0)
            fail_msg("case %zu: got rc %s \"%s\", want ESYNTAX \"%s\"", i,
                     pst_errname(rc), err, e->want);
        assert_null(c);
    }
}

/* Things that look odd but are fine. */
static void
test_accepted(void **state)
{
    static const char *const ok[] = {
        /* Listeners on different ports, families or addresses. */
        GLOBALS LISTENER "[listener b]\naddress = 127.0.0.1:465\n"
        "[listener c]\naddress = [::1]:587\n"
        "[listener d]\naddress = 127.0.0.2:587\n",
        /* CRLF line ends, no final newline, comments everywhere. */
        "# c\r\nhostname = mx\r\nuserdb = passwd-file:/u # c\r\n"
        "mailbox = maildir:/m/%d/%%/%n\r\nspool = /s\r\n  # c\r\n"
        "[listener a] # c\r\naddress = [2001:db8::1]:25\r\ntls = none\r\n"
        "auth = off",
        /* Without TLS, challenge mechanisms can be offered. */
        GLOBALS "[listener a]\naddress = 127.0.0.1:25\ntls = none\n"
        "auth_before_tls = challenge\nmechanisms = PLAIN CRAM-MD5\n",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char err[CONFIG_ERR_MAX];
        struct config *c;

        if (parse(ok[i], &c, err) != 0)
            fail_msg("case %zu: got error \"%s\", want none", i, err);
        config_free(c);
    }
}

static void
test_line_too_long(void **state)
{
    char *text = malloc(8192);
    char err[CONFIG_ERR_MAX];
    struct config *c;
    size_t n;

    (void)state;
    assert_non_null(text);
    n = (size_t)snprintf(text, 8192, "hostname = mx\nspool = ");
    memset(text + n, 'a', 5000);
    n += 5000;
    assert_rc(config_parse(FILE_NAME, text, n, &c, err, sizeof(err)),
              PST_ESYNTAX);
    assert_string_equal(err, "posternd.conf:2: line too long (more than "
                             "4095 bytes)");
    free(text);
}

static void
test_load(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX";
    char path[256], err[CONFIG_ERR_MAX], want[512];
    struct config *c;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/posternd.conf", dir);
    assert_rc(config_load(path, &c, err, sizeof(err)), PST_EIO);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or "
             "directory", path);
    assert_string_equal(err, want);
    assert_null(c);

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, GLOBALS LISTENER "bogus = 1\n",
                           strlen(GLOBALS LISTENER "bogus = 1\n")),
                     strlen(GLOBALS LISTENER "bogus = 1\n"));
    close(fd);
    /* The message names the file as given. */
    assert_rc(config_load(path, &c, err, sizeof(err)), PST_ESYNTAX);
    snprintf(want, sizeof(want), "%s:9: unknown key 'bogus' in [listener "
             "a]", path);
    assert_string_equal(err, want);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, GLOBALS LISTENER, strlen(GLOBALS LISTENER)),
                     strlen(GLOBALS LISTENER));
    close(fd);
    if (config_load(path, &c, err, sizeof(err)) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_string_equal(c->file, path);
    assert_string_equal(c->listeners[0].address.text, "127.0.0.1:587");
    config_free(c);
    config_free(NULL);

    assert_rc(config_load(dir, &c, err, sizeof(err)), PST_EIO);
    unlink(path);
    rmdir(dir);
}

/* --- CIDR ---------------------------------------------------------------- */

/* A sockaddr for a numeric address. */
static void
make_sockaddr(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;

        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
}

static void
test_cidr_match(void **state)
{
    static const struct {
        const char *cidr, *addr;
        int want;
    } v[] = {
        {"10.0.0.0/8", "10.0.0.0", 1},
        {"10.0.0.0/8", "10.255.255.255", 1},
        {"10.0.0.0/8", "11.0.0.0", 0},
        {"10.0.0.0/8", "9.255.255.255", 0},
        {"172.16.0.0/12", "172.31.255.255", 1},
        {"172.16.0.0/12", "172.32.0.0", 0},
        {"172.16.0.0/12", "172.15.255.255", 0},
        {"192.168.1.128/25", "192.168.1.128", 1},
        {"192.168.1.128/25", "192.168.1.255", 1},
        {"192.168.1.128/25", "192.168.1.127", 0},
        {"192.0.2.1", "192.0.2.1", 1},
        {"192.0.2.1", "192.0.2.2", 0},
        {"192.0.2.1/32", "192.0.2.0", 0},
        {"0.0.0.0/0", "255.255.255.255", 1},
        {"0.0.0.0/0", "::1", 0},           /* families do not mix */
        {"::/0", "127.0.0.1", 0},
        {"::/0", "2001:db8::1", 1},
        {"127.0.0.0/8", "::ffff:127.0.0.1", 1}, /* v4-mapped */
        {"127.0.0.0/8", "::ffff:128.0.0.1", 0},
        {"127.0.0.0/8", "::127.0.0.1", 0}, /* compatible, not mapped */
        {"::1", "::1", 1},
        {"::1", "::2", 0},
        {"::1/128", "::", 0},
        {"2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1},
        {"2001:db8::/32", "2001:db9::", 0},
        {"2001:db8::/32", "2001:db7:ffff::", 0},
        {"fe80::/10", "febf:ffff::1", 1},
        {"fe80::/10", "fec0::", 0},
        {"fe80::/10", "fe7f::", 0},
        {"2001:db8::/127", "2001:db8::1", 1},
        {"2001:db8::/127", "2001:db8::2", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct config_cidr cidr;
        struct config_cidrs list = {.v = &cidr, .n = 1};
        struct sockaddr_storage ss;
        int got;

        if (config_cidr_parse(v[i].cidr, strlen(v[i].cidr), &cidr) != 0)
            fail_msg("case %zu: cannot parse %s", i, v[i].cidr);
        make_sockaddr(v[i].addr, &ss);
        got = config_cidrs_match(&list, (struct sockaddr *)&ss);
        if (got != v[i].want)
            fail_msg("case %zu: %s in %s: got %d, want %d", i, v[i].addr,
                     v[i].cidr, got, v[i].want);
    }
}

static void
test_cidr_list(void **state)
{
    static const char text[] =
        GLOBALS "auth_throttle_exempt = 127.0.0.0/8 ::1 192.0.2.0/24\n"
        LISTENER;
    char err[CONFIG_ERR_MAX];
    struct config *c;
    struct sockaddr_storage ss;
    struct sockaddr_un_like {
        sa_family_t family;
    } other = {.family = AF_UNIX};

    (void)state;
    if (parse(text, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    make_sockaddr("127.1.2.3", &ss);
    assert_true(config_cidrs_match(&c->auth_throttle_exempt,
                                   (struct sockaddr *)&ss));
    make_sockaddr("::1", &ss);
    assert_true(config_cidrs_match(&c->auth_throttle_exempt,
                                   (struct sockaddr *)&ss));
    make_sockaddr("192.0.2.200", &ss);
    assert_true(config_cidrs_match(&c->auth_throttle_exempt,
                                   (struct sockaddr *)&ss));
    make_sockaddr("192.0.3.1", &ss);
    assert_false(config_cidrs_match(&c->auth_throttle_exempt,
                                    (struct sockaddr *)&ss));
    make_sockaddr("::2", &ss);
    assert_false(config_cidrs_match(&c->auth_throttle_exempt,
                                    (struct sockaddr *)&ss));
    assert_false(config_cidrs_match(&c->auth_throttle_exempt,
                                    (struct sockaddr *)&other));
    assert_false(config_cidrs_match(&c->auth_throttle_exempt, NULL));
    config_free(c);
}

static void
test_cidr_parse_errors(void **state)
{
    static const char *const bad[] = {
        "10.0.0.0/33", "::/129", "1.2.3.4/", "/8", "1.2.3/8", "10.1.0.0/8",
        "2001:db8::1/64", "10.0.0.0/+8", "10.0.0.0/-1", "10.0.0.0/1000",
        "10.0.0.0/8/8", "example.test", "", "10.0.0.0 /8", "::1%lo",
        "192.168.1.129/25",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config_cidr c;
        int rc = config_cidr_parse(bad[i], strlen(bad[i]), &c);

        if (rc != PST_ESYNTAX)
            fail_msg("case %zu \"%s\": got %s, want ESYNTAX", i, bad[i],
                     pst_errname(rc));
    }
}

/* --- Mailbox templates ---------------------------------------------------- */

static void
test_mailbox_expand(void **state)
{
    static const struct {
        const char *tmpl, *addr;
        size_t len; /* 0: strlen(addr) */
        const char *want; /* NULL: refused */
    } v[] = {
        {"/var/mail/%d/%n", "bob@example.test", 0,
         "/var/mail/example.test/bob"},
        {"/var/mail/%d/%n", "Bob@EXAMPLE.Test", 0,
         "/var/mail/example.test/Bob"},
        {"/var/mail/%u", "bob@Example.test", 0,
         "/var/mail/bob@example.test"},
        {"/m/%%/%n%%", "bob@x.test", 0, "/m/%/bob%"},
        {"/m/%n.%d", "a.b@x.test", 0, "/m/a.b.x.test"},
        {"/m/%d/%n", "\"a@b\"@x.test", 0, "/m/x.test/\"a@b\""},
        {"/m/shared", "bob@x.test", 0, "/m/shared"},
        {"/m/%n", "b\xc3\xb6" "b@x.test", 0, "/m/b\xc3\xb6" "b"},
        /* Refused. */
        {"/m/%d/%n", "bob", 0, NULL},
        {"/m/%d/%n", "bob@", 0, NULL},
        {"/m/%d/%n", "@x.test", 0, NULL},
        {"/m/%d/%n", "../etc@x.test", 0, NULL},
        {"/m/%d/%n", "a/b@x.test", 0, NULL},
        {"/m/%d/%n", "bob@x/y", 0, NULL},
        {"/m/%d/%n", "bob@..", 0, NULL},
        {"/m/%d/%n", "bob@.", 0, NULL},
        {"/m/%d/%n", "..@x.test", 0, NULL},
        {"/m/%d/%n", ".bob@x.test", 0, NULL},
        {"/m/%d/%n", "a..b@x.test", 0, NULL},
        {"/m/%d/%n", "bob@x..test", 0, NULL},
        {"/m/%d/%n", "bo\nb@x.test", 0, NULL},
        {"/m/%d/%n", "bo\x7f" "b@x.test", 0, NULL},
        {"/m/%d/%n", "bo\0b@x.test", 11, NULL},
        {"/m/%d/%n", "bob@x.test\0", 11, NULL},
        {"/m/.%n", ".@x.test", 0, NULL},
        {"/m/%n/..", "bob@x.test", 0, NULL},
        {"m/%n", "bob@x.test", 0, NULL},
        {"/m/%x", "bob@x.test", 0, NULL},
        {"/m/%", "bob@x.test", 0, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_buf out;
        size_t len = v[i].len != 0 ? v[i].len : strlen(v[i].addr);
        int rc;

        pst_buf_init(&out, 4096, 0);
        pst_buf_append_str(&out, "prefix:");
        rc = config_mailbox_expand(v[i].tmpl, v[i].addr, len, &out);
        if (v[i].want == NULL) {
            if (rc != PST_EINVAL)
                fail_msg("case %zu: got %s \"%s\", want EINVAL", i,
                         pst_errname(rc), (char *)out.data);
            assert_buf_str(&out, "prefix:"); /* unchanged */
        } else {
            if (rc != 0)
                fail_msg("case %zu: got %s, want \"%s\"", i,
                         pst_errname(rc), v[i].want);
            assert_int_equal(out.len, 7 + strlen(v[i].want));
            assert_bytes_equal(out.data + 7, out.len - 7, v[i].want,
                               strlen(v[i].want));
        }
        pst_buf_clear(&out);
    }
}

static void
test_mailbox_expand_limits(void **state)
{
    char addr[CONFIG_ADDRESS_MAX + 8];
    struct pst_buf out;

    (void)state;
    /* The caller's ceiling. */
    pst_buf_init(&out, 10, 0);
    assert_rc(config_mailbox_expand("/var/mail/%u", "bob@x.test", 10, &out),
              PST_ELIMIT);
    assert_int_equal(out.len, 0);
    pst_buf_clear(&out);
    /* Longer than any SMTP path (RFC 5321 §4.5.3.1.3). */
    memset(addr, 'a', sizeof(addr));
    memcpy(addr + sizeof(addr) - 7, "@x.test", 7);
    pst_buf_init(&out, 4096, 0);
    assert_rc(config_mailbox_expand("/m/%n", addr, sizeof(addr), &out),
              PST_EINVAL);
    pst_buf_clear(&out);
}

/* --- [profile NAME] ------------------------------------------------------ */

/* A client address for config_profile_match(). */
static const struct sockaddr *
peer(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;

        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    return (const struct sockaddr *)ss;
}

/* DESIGN.md "Per-client compatibility profiles", verbatim, after two
 * listeners; then a second profile for every listener. */
static const char profile_file[] =
    GLOBALS
    "[listener lan]\n"                                /* 7 */
    "address = 192.168.10.1:2525\n"
    "tls = starttls\n"
    "[listener submission]\n"                         /* 10 */
    "address = [::]:587\n"
    "[profile scanners]\n"                            /* 12 */
    "networks  = 192.168.10.0/24 2001:db8:10::/64   "
        "# client addresses it applies to\n"
    "listeners = lan                       "
        "# optional: only on these listeners\n"
    "tls_min_version = TLSv1               "
        "# older TLS for these clients only\n"
    "auth_before_tls = all                 "
        "# none | challenge | all, overrides the listener\n"
    "helo_auth = yes                       "
        "# AUTH after HELO (not only EHLO)\n"
    "bare_lf = normalize                   "
        "# reject (default) | normalize, in DATA\n"
    "long_lines = fold                     "
        "# reject (default) | fold at 998 octets\n"
    "add_missing_headers = yes             "
        "# Date, Message-ID when absent (RFC 6409 \xc2\xa7" "8)\n"
    "[profile lab]\n"                                 /* 21 */
    "networks = 192.168.0.0/16, ::ffff:10.9.0.0/112\n"
    "legacy_auth_line = yes\n"
    "auth_before_tls = challenge\n";

static void
test_profiles(void **state)
{
    static const struct {
        const char *addr;
        const char *listener;
        const char *want;       /* the profile's name, or NULL */
    } rows[] = {
        {"192.168.10.7", "lan", "scanners"},
        {"192.168.10.255", "lan", "scanners"},
        {"::ffff:192.168.10.7", "lan", "scanners"}, /* dual-stack */
        {"2001:db8:10::99", "lan", "scanners"},
        {"2001:db8:10:1::99", "lan", NULL},
        /* scanners is for lan only; lab for every listener. */
        {"192.168.10.7", "submission", "lab"},
        {"192.168.11.7", "lan", "lab"},
        {"192.169.0.1", "lan", NULL},
        {"10.9.0.1", "submission", NULL},
        {"::ffff:10.9.0.1", "submission", NULL}, /* IPv6 only */
        {"127.0.0.1", "lan", NULL},
    };
    char err[CONFIG_ERR_MAX], buf[INET6_ADDRSTRLEN + 8];
    const struct config_profile *p;
    struct sockaddr_storage ss;
    struct config *c;

    (void)state;
    if (parse(profile_file, &c, err) != 0)
        fail_msg("got error \"%s\", want none", err);
    assert_int_equal(c->n_profiles, 2);
    p = &c->profiles[0];
    assert_string_equal(p->name, "scanners");
    assert_int_equal(p->line, 12);
    assert_int_equal(p->networks.n, 2);
    assert_string_equal(config_cidr_format(&p->networks.v[0], buf,
                                           sizeof(buf)), "192.168.10.0/24");
    assert_string_equal(config_cidr_format(&p->networks.v[1], buf,
                                           sizeof(buf)), "2001:db8:10::/64");
    assert_int_equal(p->listeners.n, 1);
    assert_string_equal(p->listeners.v[0], "lan");
    assert_int_equal(p->tls_min_version, TLS_VERSION_1_0);
    assert_int_equal(p->auth_before_tls, CONFIG_ABT_ALL);
    assert_int_equal(p->helo_auth, 1);
    assert_int_equal(p->bare_lf, CONFIG_BARE_LF_NORMALIZE);
    assert_int_equal(p->long_lines, CONFIG_LONG_LINES_FOLD);
    assert_int_equal(p->add_missing_headers, 1);
    assert_int_equal(p->legacy_auth_line, CONFIG_UNSET);
    assert_int_equal(config_profile_abt(p, &c->listeners[0]),
                     CONFIG_ABT_ALL);
    /* The defaults: nothing relaxed that the file does not say. */
    p = &c->profiles[1];
    assert_string_equal(p->name, "lab");
    assert_int_equal(p->listeners.n, 0);
    assert_int_equal(p->tls_min_version, TLS_VERSION_DEFAULT);
    assert_int_equal(p->auth_before_tls, CONFIG_ABT_CHALLENGE);
    assert_int_equal(p->helo_auth, 0);
    assert_int_equal(p->bare_lf, CONFIG_BARE_LF_REJECT);
    assert_int_equal(p->long_lines, CONFIG_LONG_LINES_REJECT);
    assert_int_equal(p->add_missing_headers, 0);
    assert_int_equal(p->legacy_auth_line, 1);
    assert_int_equal(config_profile_abt(NULL, &c->listeners[1]),
                     CONFIG_ABT_NONE);
    assert_string_equal(config_cidr_format(&p->networks.v[1], buf,
                                           sizeof(buf)),
                        "::ffff:10.9.0.0/112");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct config_listener *l =
            strcmp(rows[i].listener, "lan") == 0 ? &c->listeners[0]
                                                 : &c->listeners[1];

        p = config_profile_match(c, l, peer(rows[i].addr, &ss));
        if ((p == NULL) != (rows[i].want == NULL) ||
            (p != NULL && strcmp(p->name, rows[i].want) != 0))
            fail_msg("row %zu (%s on %s): got %s, want %s", i,
                     rows[i].addr, rows[i].listener,
                     p != NULL ? p->name : "none",
                     rows[i].want != NULL ? rows[i].want : "none");
    }
    config_free(c);
}

/* A profile's mistakes, each with its message and line. */
static void
test_profile_errors(void **state)
{
    static const struct error_case rows[] = {
        {GLOBALS LISTENER "[profile p]\nhelo_auth = yes\n",
         "posternd.conf:9: [profile p] has no networks"},
        {GLOBALS LISTENER "[profile p]\nnetworks = ,\n",
         "posternd.conf:10: [profile p]: no networks"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.1.2.3/8\n",
         "posternd.conf:10: bad network '10.1.2.3/8' in 'networks' (want "
         "ADDRESS or ADDRESS/PREFIX, no host bits past the prefix)"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "listeners = b\n",
         "posternd.conf:11: [profile p]: no [listener b] section"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "listeners = a a\n",
         "posternd.conf:11: 'a' listed twice in 'listeners'"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "listeners = a/b\n",
         "posternd.conf:11: bad name 'a/b' in 'listeners' (letters, "
         "digits, '-', '_' and '.')"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "bare_lf = yes\n",
         "posternd.conf:11: bad value 'yes' for 'bare_lf' (want reject or "
         "normalize)"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "long_lines = wrap\n",
         "posternd.conf:11: bad value 'wrap' for 'long_lines' (want reject "
         "or fold)"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "tls_min_version = SSLv3\n",
         "posternd.conf:11: bad value 'SSLv3' for 'tls_min_version' (want "
         "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "address = 127.0.0.1:25\n",
         "posternd.conf:11: unknown key 'address' in [profile p]"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "spool = /s\n",
         "posternd.conf:11: global key 'spool' after [profile p] (global "
         "keys go before the first section)"},
        {GLOBALS "networks = 10.0.0.0/8\n" LISTENER,
         "posternd.conf:7: key 'networks' belongs in a [profile NAME] "
         "section"},
        {GLOBALS LISTENER "[profile p]\nnetworks = 10.0.0.0/8\n"
         "[profile p]\nnetworks = 10.1.0.0/16\n",
         "posternd.conf:11: duplicate [profile p] (first on line 9)"},
        /* Its clients could not authenticate on a plaintext listener. */
        {GLOBALS "[listener a]\naddress = 127.0.0.1:25\ntls = none\n"
         "auth_before_tls = all\n"
         "[profile p]\nnetworks = 10.0.0.0/8\nauth_before_tls = none\n",
         "posternd.conf:13: [profile p]: auth_before_tls = none leaves no "
         "mechanism to offer on [listener a] (tls = none)"},
        /* TLS settings where none of its listeners has TLS. */
        {GLOBALS "[listener a]\naddress = 127.0.0.1:25\ntls = none\n"
         "auth_before_tls = all\n"
         "[listener b]\naddress = 127.0.0.1:587\n"
         "[profile p]\nnetworks = 10.0.0.0/8\nlisteners = a\n"
         "tls_min_version = TLSv1\n",
         "posternd.conf:16: [profile p]: tls_min_version, but none of its "
         "listeners has TLS"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char err[CONFIG_ERR_MAX];
        struct config *c = NULL;
        int rc = parse(rows[i].text, &c, err);

        if (rc != PST_ESYNTAX || strcmp(err, rows[i].want) != 0)
            fail_msg("row %zu: got %s \"%s\", want ESYNTAX \"%s\"", i,
                     pst_errname(rc), rc == 0 ? "" : err, rows[i].want);
        assert_null(c);
    }
}

/* --- The event log -------------------------------------------------------- */

/* Capture what the log writes into a file, then read it back. */
struct capture {
    char path[64];
    int fd;
};

static void
capture_start(struct capture *cap)
{
    snprintf(cap->path, sizeof(cap->path), "/tmp/test_log.XXXXXX");
    cap->fd = mkstemp(cap->path);
    assert_true(cap->fd >= 0);
    log_set_fd(cap->fd);
}

/* Everything written, with the ts= field (the clock) cut from each line;
 * returns a malloc'd string. */
static char *
capture_end(struct capture *cap)
{
    char *text, *out;
    off_t size = lseek(cap->fd, 0, SEEK_END);
    size_t o = 0;

    log_set_fd(2);
    assert_true(size >= 0);
    text = calloc(1, (size_t)size + 1);
    out = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_non_null(out);
    assert_int_equal(pread(cap->fd, text, (size_t)size, 0), size);
    close(cap->fd);
    unlink(cap->path);
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        char *sp = strchr(line, ' ');

        assert_non_null(nl);
        assert_true(strncmp(line, "ts=", 3) == 0);
        /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
        assert_int_equal(sp - line, 3 + 24);
        assert_int_equal(line[3 + 23], 'Z');
        memcpy(out + o, sp + 1, (size_t)(nl - sp));
        o += (size_t)(nl - sp);
        line = nl + 1;
    }
    free(text);
    return out;
}

static void
test_log_escaping(void **state)
{
    static const uint8_t bin[] = {'a', 0, 'b', 0xff};
    struct capture cap;
    struct log_line l;
    char *got;

    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    capture_start(&cap);
    /* A user name trying to forge a second line. */
    log_event(LOG_LEVEL_INFO, "auth_failed", "sid", "3f2a", "user",
              "bob\nts=x level=info event=auth_ok user=admin", "mech",
              "CRAM-MD5", "reason", "wrong password", NULL);
    log_begin(&l, LOG_LEVEL_WARN, "odd");
    log_kv(&l, "q", "say \"hi\"\\");
    log_kv(&l, "empty", "");
    log_kv(&l, "null", NULL);
    log_kv(&l, "eq", "a=b");
    log_kv(&l, "utf8", "b\xc3\xb6" "b");
    log_kv(&l, "esc", "\x1b[31m\r\t");
    log_kv_bytes(&l, "bin", bin, sizeof(bin));
    log_kv_uint(&l, "size", 18446744073709551615u);
    log_kv_int(&l, "n", -42);
    log_kv_printf(&l, "f", "%s:%d", "x y", 7);
    log_end(&l);
    got = capture_end(&cap);
    assert_string_equal(got,
        "level=info event=auth_failed sid=3f2a "
        "user=\"bob\\x0ats=x level=info event=auth_ok user=admin\" "
        "mech=CRAM-MD5 reason=\"wrong password\"\n"
        "level=warn event=odd q=\"say \\\"hi\\\"\\\\\" empty=\"\" null=- "
        "eq=\"a=b\" utf8=\"b\\xc3\\xb6b\" esc=\"\\x1b[31m\\x0d\\x09\" "
        "bin=\"a\\x00b\\xff\" size=18446744073709551615 n=-42 "
        "f=\"x y:7\"\n");
    free(got);
}

static void
test_log_secrets(void **state)
{
    struct capture cap;
    struct log_line l;
    struct pst_buf secret, plain;
    char *got;

    (void)state;
    pst_buf_init(&secret, 64, 1);
    pst_buf_init(&plain, 64, 0);
    pst_buf_append_str(&secret, "tanstaaftanstaaf");
    pst_buf_append_str(&plain, "tim");
    capture_start(&cap);
    log_begin(&l, LOG_LEVEL_INFO, "auth");
    log_kv_buf(&l, "user", &plain);
    log_kv_buf(&l, "data", &secret);
    log_kv(&l, "password", "tanstaaftanstaaf");
    log_kv(&l, "client_response", "dGFuc3RhYWY=");
    log_kv_printf(&l, "secret", "%s", "tanstaaf");
    log_end(&l);
    got = capture_end(&cap);
    assert_string_equal(got, "level=info event=auth user=tim data=******** "
                             "password=******** client_response=******** "
                             "secret=********\n");
    assert_null(strstr(got, "tanstaaf"));
    free(got);
    pst_buf_clear(&secret);
    pst_buf_clear(&plain);
}

static void
test_log_levels(void **state)
{
    static const char *const names[] = {"panic", "fatal", "warn", "info",
                                        "debug"};
    enum log_level lv;
    struct capture cap;
    char *got;

    (void)state;
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(log_level_parse(names[i], &lv), 0);
        assert_int_equal(lv, (enum log_level)i);
        assert_string_equal(log_level_name(lv), names[i]);
    }
    lv = LOG_LEVEL_WARN;
    assert_int_equal(log_level_parse("verbose", &lv), -1);
    assert_int_equal(lv, LOG_LEVEL_WARN);
    assert_string_equal(log_level_name((enum log_level)99), "?");

    capture_start(&cap);
    log_set_level(LOG_LEVEL_WARN);
    assert_false(log_enabled(LOG_LEVEL_INFO));
    log_info("dropped %d", 1);
    log_debug("dropped %d", 2);
    log_warn("kept %d", 3);
    log_set_level(LOG_LEVEL_DEBUG);
    log_debug("kept %s", "too");
    log_msg(LOG_LEVEL_INFO, "%s", "plain");
    log_set_level(LOG_LEVEL_INFO);
    got = capture_end(&cap);
    assert_string_equal(got, "level=warn event=msg msg=\"kept 3\"\n"
                             "level=debug event=msg msg=\"kept too\"\n"
                             "level=info event=msg msg=plain\n");
    free(got);
}

/* The ts= field is the time of the line: made once per second (log.c
 * keeps the text up to the seconds), it must still follow the clock. */
static void
test_log_stamp(void **state)
{
    char want[2][64], got[64];
    struct capture cap;
    struct timespec ts;
    struct tm tm;
    int ok = 0;

    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    for (int tries = 0; tries < 3 && !ok; tries++) {
        ssize_t n;

        capture_start(&cap);
        for (int i = 0; i < 2; i++) {
            /* The second of the line is between these two. */
            assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts), 0);
            assert_non_null(gmtime_r(&ts.tv_sec, &tm));
            strftime(want[i], sizeof(want[i]), "ts=%Y-%m-%dT%H:%M:%S.", &tm);
            if (i == 0)
                log_event(LOG_LEVEL_INFO, "tick", NULL);
        }
        n = pread(cap.fd, got, 3 + 24, 0);
        free(capture_end(&cap));
        assert_int_equal(n, 3 + 24);
        got[n] = '\0';
        ok = strncmp(got, want[0], strlen(want[0])) == 0 ||
             strncmp(got, want[1], strlen(want[1])) == 0;
    }
    assert_true(ok);
    /* A line the level drops writes nothing at all. */
    capture_start(&cap);
    log_event(LOG_LEVEL_DEBUG, "dropped", "sid", "1", NULL);
    log_event(LOG_LEVEL_INFO, "kept", "sid", "2", NULL);
    {
        char *text = capture_end(&cap);

        assert_string_equal(text, "level=info event=kept sid=2\n");
        free(text);
    }
}

static void
test_log_truncation(void **state)
{
    char *big = malloc(3 * LOG_LINE_MAX);
    struct capture cap;
    struct log_line l;
    char *got;
    size_t len;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', 3 * LOG_LINE_MAX - 1);
    big[3 * LOG_LINE_MAX - 1] = '\0';
    big[10] = ' '; /* quoted: the closing quote must survive the cut */
    capture_start(&cap);
    log_begin(&l, LOG_LEVEL_INFO, "big");
    log_kv(&l, "v", big);
    log_kv(&l, "after", "dropped");
    log_end(&l);
    got = capture_end(&cap);
    len = strlen(got);
    assert_true(len < LOG_LINE_MAX);
    assert_int_equal(strchr(got, '\n') - got, len - 1); /* one line */
    assert_true(len > 30);
    assert_string_equal(got + len - 17, "x\" truncated=yes\n");
    assert_null(strstr(got, "after"));
    free(got);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_tables),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_profile_errors),
        cmocka_unit_test(test_user_key),
        cmocka_unit_test(test_client_cert_keys),
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_throttle_keys),
        cmocka_unit_test(test_limit_keys),
        cmocka_unit_test(test_ops_keys),
        cmocka_unit_test(test_offers),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_cidr_list),
        cmocka_unit_test(test_cidr_parse_errors),
        cmocka_unit_test(test_mailbox_expand),
        cmocka_unit_test(test_mailbox_expand_limits),
        cmocka_unit_test(test_log_escaping),
        cmocka_unit_test(test_log_secrets),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_log_truncation),
        cmocka_unit_test(test_log_stamp),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
