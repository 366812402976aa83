/*
 * posternd - the configuration's keys: one table per section type, and
 * the checks each section needs once the whole file is read (see
 * config_keys.h; every key is documented in posternd.conf(5), which a
 * unit test holds to the tables).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

static const struct config_enum sender_check_names[] = {
    {"strict", CONFIG_SENDER_STRICT},
    {"off", CONFIG_SENDER_OFF},
    {NULL, 0},
};

static const struct config_enum bool_names[] = {
    {"yes", 1},
    {"no", 0},
    {NULL, 0},
};

static const struct config_enum log_level_names[] = {
    {"panic", LOG_LEVEL_PANIC},
    {"fatal", LOG_LEVEL_FATAL},
    {"warn", LOG_LEVEL_WARN},
    {"info", LOG_LEVEL_INFO},
    {"debug", LOG_LEVEL_DEBUG},
    {NULL, 0},
};

static const struct config_enum tls_names[] = {
    {"none", CONFIG_TLS_NONE},
    {"starttls", CONFIG_TLS_STARTTLS},
    {"implicit", CONFIG_TLS_IMPLICIT},
    {NULL, 0},
};

static const struct config_enum auth_names[] = {
    {"required", CONFIG_AUTH_REQUIRED},
    {"optional", CONFIG_AUTH_OPTIONAL},
    {"off", CONFIG_AUTH_OFF},
    {NULL, 0},
};

static const struct config_enum abt_names[] = {
    {"none", CONFIG_ABT_NONE},
    {"challenge", CONFIG_ABT_CHALLENGE},
    {"all", CONFIG_ABT_ALL},
    {NULL, 0},
};

static const struct config_enum client_cert_names[] = {
    {"optional", 0},
    {"required", 1},
    {NULL, 0},
};

static const struct config_enum cert_user_names[] = {
    {"san-email", CONFIG_CERT_USER_SAN_EMAIL},
    {"subject-cn", CONFIG_CERT_USER_SUBJECT_CN},
    {"fingerprint", CONFIG_CERT_USER_FINGERPRINT},
    {NULL, 0},
};

static const struct config_enum relay_tls_names[] = {
    {"starttls", CONFIG_RELAY_TLS_STARTTLS},
    {"implicit", CONFIG_RELAY_TLS_IMPLICIT},
    {"none", CONFIG_RELAY_TLS_NONE},
    {NULL, 0},
};

static const struct config_enum relay_auth_names[] = {
    {"none", CONFIG_RELAY_AUTH_NONE},
    {"password", CONFIG_RELAY_AUTH_PASSWORD},
    {"oauth2", CONFIG_RELAY_AUTH_OAUTH2},
    {NULL, 0},
};

static const struct config_enum grant_names[] = {
    {"refresh_token", CONFIG_GRANT_REFRESH_TOKEN},
    {"client_credentials", CONFIG_GRANT_CLIENT_CREDENTIALS},
    {NULL, 0},
};

static const struct config_enum rewrite_names[] = {
    {"no", CONFIG_REWRITE_NO},
    {"envelope", CONFIG_REWRITE_ENVELOPE},
    {"envelope+from", CONFIG_REWRITE_ENVELOPE_FROM},
    {NULL, 0},
};

static const struct config_enum bare_lf_names[] = {
    {"reject", CONFIG_BARE_LF_REJECT},
    {"normalize", CONFIG_BARE_LF_NORMALIZE},
    {NULL, 0},
};

static const struct config_enum long_lines_names[] = {
    {"reject", CONFIG_LONG_LINES_REJECT},
    {"fold", CONFIG_LONG_LINES_FOLD},
    {NULL, 0},
};

/* --- The keys ------------------------------------------------------------ */

#define G(field) offsetof(struct config, field)
#define L(field) offsetof(struct config_listener, field)

/* Global keys, before the first section.  The required ones come first,
 * in the order their absence is reported. */
static const struct config_key global_keys[] = {
    {.name = "hostname", .type = KT_HOSTNAME, .offset = G(hostname),
     .flags = KF_REQUIRED,
     .doc = "name in the 220 greeting, EHLO reply, Received, DIGEST-MD5"},
    {.name = "userdb", .type = KT_USERDB, .offset = G(userdb),
     .flags = KF_REQUIRED,
     .doc = "the user store: passwd-file:PATH or pgsql:CONNINFO"},
    /* Required unless every recipient is relayed (global_check()). */
    {.name = "mailbox", .type = KT_MAILBOX, .offset = G(mailbox),
     .doc = "maildir:TEMPLATE, %u address, %n local part, %d domain"},
    {.name = "spool", .type = KT_STRING, .offset = G(spool),
     .flags = KF_REQUIRED,
     .doc = "work files; on the filesystem of the mailboxes"},
    /* userdb = pgsql: only (global_check()). */
    {.name = "userdb_query", .type = KT_STRING, .offset = G(userdb_query),
     .doc = "pgsql: the lookup, $1 the user name (default in the man "
            "page)"},
    {.name = "userdb_timeout", .type = KT_SECONDS,
     .offset = G(userdb_timeout), .min = 1, .max = 300, .def = "5",
     .doc = "pgsql: seconds a lookup may take"},
    {.name = "scram_secret_file", .type = KT_STRING,
     .offset = G(scram_secret_file),
     .doc = "key of SCRAM's salts for unknown users; default "
            "SPOOL/scram.secret, made at the first start"},
    {.name = "tls_cert", .type = KT_STRING, .offset = G(tls_cert),
     .doc = "PEM certificate chain, leaf first"},
    {.name = "tls_key", .type = KT_STRING, .offset = G(tls_key),
     .doc = "PEM private key of tls_cert"},
    {.name = "tls_min_version", .type = KT_TLS_VERSION,
     .offset = G(tls_min_version), .def = "TLSv1.2",
     .doc = "oldest TLS version accepted"},
    {.name = "max_message_size", .type = KT_SIZE,
     .offset = G(max_message_size), .min = 1, .max = UINT64_MAX,
     .def = "26214400", .doc = "bytes, advertised as SIZE (RFC 1870)"},
    {.name = "sender_check", .type = KT_ENUM, .offset = G(sender_check),
     .names = sender_check_names, .def = "strict",
     .doc = "strict: MAIL FROM must be the user's own (or allow_from)"},
    {.name = "auth_throttle", .type = KT_ENUM, .offset = G(auth_throttle),
     .names = bool_names, .def = "yes",
     .doc = "per-address and per-user failure delays, lockout"},
    {.name = "auth_throttle_exempt", .type = KT_CIDRS,
     .offset = G(auth_throttle_exempt),
     .doc = "networks never throttled"},
    /* RFC 5321 §4.5.3.1.8: at least 100 recipients. */
    {.name = "max_recipients", .type = KT_NUMBER,
     .offset = G(max_recipients), .min = 1, .max = 100000, .def = "100",
     .doc = "RCPTs in one transaction"},
    {.name = "max_connections", .type = KT_NUMBER,
     .offset = G(max_connections), .min = 1, .max = 1000000,
     .def = "1000", .doc = "connections at once, all listeners"},
    {.name = "max_connections_per_ip", .type = KT_NUMBER,
     .offset = G(max_connections_per_ip), .min = 1, .max = 1000000,
     .def = "50", .doc = "connections at once from one address"},
    /* RFC 4954 §9: not before 3 failed AUTHs (the session's minimum). */
    {.name = "max_errors", .type = KT_NUMBER, .offset = G(max_errors),
     .min = 3, .max = 1000, .def = "20",
     .doc = "errors before 421 and the end of the session"},
    /* RFC 5321 §4.5.3.2.7, .5, .6. */
    {.name = "timeout_command", .type = KT_SECONDS,
     .offset = G(timeout_command), .min = 1, .max = 86400, .def = "300",
     .doc = "a whole command must arrive within this"},
    {.name = "timeout_data", .type = KT_SECONDS, .offset = G(timeout_data),
     .min = 1, .max = 86400, .def = "180",
     .doc = "between two reads of message data"},
    {.name = "timeout_final", .type = KT_SECONDS,
     .offset = G(timeout_final), .min = 1, .max = 86400, .def = "600",
     .doc = "for the reply to the final dot"},
    {.name = "session_time_limit", .type = KT_SECONDS,
     .offset = G(session_time_limit), .min = 0, .max = 604800,
     .def = "3600", .doc = "a connection lasts at most this; 0: no limit"},
    {.name = "data_time_limit", .type = KT_SECONDS,
     .offset = G(data_time_limit), .min = 0, .max = 604800, .def = "1800",
     .doc = "from 354 to the final dot; 0: no limit"},
    /* Dovecot: auth_failure_delay. */
    {.name = "auth_failure_delay", .type = KT_MILLIS,
     .offset = G(auth_failure_delay_ms), .min = 0, .max = 60000,
     .def = "1s", .doc = "a failed AUTH is answered this long after the "
                         "client's last byte"},
    {.name = "grace_period", .type = KT_SECONDS, .offset = G(grace_period),
     .min = 0, .max = 86400, .def = "30",
     .doc = "at shutdown, sessions may finish within this"},
    {.name = "workers", .type = KT_WORKERS, .offset = G(workers), .min = 1,
     .max = 1024, .def = "auto",
     .doc = "event loops (threads); auto: one per core"},
    /* DESIGN.md "Privileges": resolved and checked by posternd
     * (src/posternd/priv.c), not here. */
    {.name = "user", .type = KT_STRING, .offset = G(user),
     .doc = "started as root, run as this user once the listeners are "
            "bound and the TLS key read"},
    {.name = "log_level", .type = KT_ENUM, .offset = G(log_level),
     .names = log_level_names, .def = "info",
     .doc = "the least severe events logged"},
    {.name = "legacy_auth_line", .type = KT_ENUM,
     .offset = G(legacy_auth_line), .names = bool_names, .def = "no",
     .doc = "also advertise \"250-AUTH=LOGIN PLAIN\" (old Outlook)"},
    /* Brute-force throttling (throttle.h); Dovecot's doubling. */
    {.name = "auth_throttle_delay", .type = KT_SECONDS,
     .offset = G(auth_throttle_delay), .min = 0, .max = 60, .def = "1",
     .doc = "the first failure's hold; doubles per failure"},
    {.name = "auth_throttle_max_delay", .type = KT_SECONDS,
     .offset = G(auth_throttle_max_delay), .min = 0, .max = 300,
     .def = "15", .doc = "where the doubling stops"},
    {.name = "auth_throttle_lockout_failures", .type = KT_NUMBER,
     .offset = G(auth_throttle_lockout_failures), .min = 0, .max = 100000,
     .def = "10", .doc = "failures that lock an address out; 0: never"},
    {.name = "auth_throttle_lockout_time", .type = KT_SECONDS,
     .offset = G(auth_throttle_lockout_time), .min = 1, .max = 86400,
     .def = "300", .doc = "how long a lockout lasts"},
    {.name = "auth_throttle_user_failures", .type = KT_NUMBER,
     .offset = G(auth_throttle_user_failures), .min = 0, .max = 100000,
     .def = "10", .doc = "failures on one user name before it is "
                         "delayed too; 0: never"},
    {.name = "auth_throttle_forget", .type = KT_SECONDS,
     .offset = G(auth_throttle_forget), .min = 1, .max = 86400,
     .def = "600", .doc = "quiet time after which failures are forgotten"},
    /* Routing (DESIGN.md "Routing, relay and the queue"). */
    {.name = "local_domains", .type = KT_DOMAINS, .offset = G(local_domains),
     .doc = "domains delivered here; others go to a relay"},
    {.name = "relay", .type = KT_STRING, .offset = G(relay),
     .doc = "the [relay NAME] for users without relay= of their own"},
    {.name = "queue", .type = KT_STRING, .offset = G(queue),
     .doc = "the relay's queue directory (default: SPOOL/queue)"},
    {.name = "queue_lifetime", .type = KT_SECONDS,
     .offset = G(queue_lifetime), .min = 1, .max = 90 * 86400, .def = "5d",
     .doc = "undelivered mail is bounced after this"},
    {.name = "retry_min", .type = KT_SECONDS, .offset = G(retry_min),
     .min = 1, .max = 86400, .def = "5m",
     .doc = "the first retry; doubles up to retry_max"},
    {.name = "retry_max", .type = KT_SECONDS, .offset = G(retry_max),
     .min = 1, .max = 7 * 86400, .def = "1h",
     .doc = "the longest wait between two attempts"},
};

static const struct config_key listener_keys[] = {
    {.name = "address", .type = KT_ADDRESS, .offset = L(address),
     .flags = KF_REQUIRED, .doc = "IPV4:PORT or [IPV6]:PORT to listen on"},
    {.name = "tls", .type = KT_ENUM, .offset = L(tls), .names = tls_names,
     .def = "starttls", .doc = "none, starttls (RFC 3207) or implicit "
                               "(RFC 8314)"},
    {.name = "auth", .type = KT_ENUM, .offset = L(auth),
     .names = auth_names, .def = "required",
     .doc = "required: MAIL before AUTH gets 530 5.7.0"},
    {.name = "auth_before_tls", .type = KT_ENUM, .offset = L(auth_before_tls),
     .names = abt_names, .def = "none",
     .doc = "mechanisms offered before TLS: none, challenge or all"},
    {.name = "mechanisms", .type = KT_MECHS, .offset = L(mechs),
     .doc = "SASL mechanisms in the order advertised (default: every one, "
            "strongest first)"},
    {.name = "tls_client_ca", .type = KT_STRING, .offset = L(tls_client_ca),
     .doc = "PEM CA certificates: ask TLS clients for a certificate "
            "(EXTERNAL)"},
    {.name = "tls_client_cert", .type = KT_ENUM,
     .offset = L(tls_client_cert_required), .names = client_cert_names,
     .def = "optional",
     .doc = "optional: without a valid one only EXTERNAL fails; required: "
            "the handshake does"},
    {.name = "tls_client_crl", .type = KT_STRING,
     .offset = L(tls_client_crl),
     .doc = "PEM CRLs of the client CA: revoked certificates do not verify"},
    {.name = "cert_user", .type = KT_ENUM, .offset = L(cert_user),
     .names = cert_user_names, .def = "san-email",
     .doc = "the user a client certificate names: san-email, subject-cn "
            "or fingerprint (cert= in the user file)"},
    {.name = "security_layer", .type = KT_ENUM, .offset = L(security_layer),
     .names = bool_names, .def = "no",
     .doc = "yes: DIGEST-MD5 may negotiate auth-int or auth-conf, never "
            "under TLS (legacy)"},
};

#define R(field) offsetof(struct config_relay, field)

static const struct config_key relay_keys[] = {
    {.name = "host", .type = KT_HOSTPORT, .offset = R(host),
     .flags = KF_REQUIRED, .doc = "the smarthost, HOST:PORT"},
    {.name = "tls", .type = KT_ENUM, .offset = R(tls),
     .names = relay_tls_names, .def = "starttls",
     .doc = "starttls (required, never optional) or implicit; none only "
            "with auth = none"},
    {.name = "tls_cafile", .type = KT_STRING, .offset = R(tls_cafile),
     .doc = "CA certificates for the smarthost (default: the system "
            "store)"},
    {.name = "auth", .type = KT_ENUM, .offset = R(auth),
     .names = relay_auth_names, .def = "none",
     .doc = "none, password or oauth2"},
    {.name = "user", .type = KT_STRING, .offset = R(user),
     .doc = "the upstream login and mailbox"},
    {.name = "password_file", .type = KT_STRING, .offset = R(password_file),
     .doc = "auth = password: the password is its first line"},
    {.name = "mechanisms", .type = KT_MECHS, .offset = R(mechs),
     .doc = "upstream preference (default: the strongest both sides "
            "allow; XOAUTH2 OAUTHBEARER for oauth2)"},
    {.name = "oauth2_token_url", .type = KT_STRING,
     .offset = R(oauth2_token_url), .doc = "the token endpoint (https)"},
    {.name = "oauth2_device_url", .type = KT_STRING,
     .offset = R(oauth2_device_url),
     .doc = "the device authorization endpoint, for postern oauth login"},
    {.name = "oauth2_auth_url", .type = KT_STRING,
     .offset = R(oauth2_auth_url),
     .doc = "the authorization endpoint, for postern oauth login "
            "--loopback"},
    {.name = "oauth2_grant", .type = KT_ENUM, .offset = R(oauth2_grant),
     .names = grant_names, .def = "refresh_token",
     .doc = "refresh_token (delegated) or client_credentials (app-only)"},
    {.name = "oauth2_client_id", .type = KT_STRING,
     .offset = R(oauth2_client_id), .doc = "the application's id"},
    {.name = "oauth2_client_secret_file", .type = KT_STRING,
     .offset = R(oauth2_client_secret_file),
     .doc = "the client secret's file (optional for public clients)"},
    {.name = "oauth2_scope", .type = KT_STRING, .offset = R(oauth2_scope),
     .doc = "the scope asked for (always sent)"},
    {.name = "oauth2_token_file", .type = KT_STRING,
     .offset = R(oauth2_token_file),
     .doc = "the token file (JSON, 0600); only refresh_token is required"},
    {.name = "oauth2_cafile", .type = KT_STRING, .offset = R(oauth2_cafile),
     .doc = "CA certificates for the token endpoint (default: the system "
            "store)"},
    /* Microsoft 365: 3 connections per mailbox, 30 messages a minute. */
    {.name = "max_connections", .type = KT_NUMBER,
     .offset = R(max_connections), .min = 1, .max = 1000, .def = "3",
     .doc = "connections to this smarthost at once"},
    {.name = "max_messages_per_minute", .type = KT_NUMBER,
     .offset = R(max_messages_per_minute), .min = 0, .max = 1000000,
     .def = "30", .doc = "messages a minute at most; 0: no limit"},
    {.name = "rewrite_sender", .type = KT_ENUM, .offset = R(rewrite_sender),
     .names = rewrite_names, .def = "no",
     .doc = "no, envelope or envelope+from: send as user"},
    {.name = "connect_timeout", .type = KT_SECONDS,
     .offset = R(connect_timeout), .min = 1, .max = 3600, .def = "30",
     .doc = "to connect and get the greeting"},
    {.name = "timeout", .type = KT_SECONDS, .offset = R(timeout), .min = 1,
     .max = 3600, .def = "300", .doc = "for each reply of the smarthost"},
};

#define P(field) offsetof(struct config_profile, field)

/* DESIGN.md "Per-client compatibility profiles".  A key left out changes
 * nothing for the profile's clients. */
static const struct config_key profile_keys[] = {
    {.name = "networks", .type = KT_CIDRS, .offset = P(networks),
     .flags = KF_REQUIRED,
     .doc = "client networks it applies to (CIDR, IPv4 and IPv6)"},
    {.name = "listeners", .type = KT_NAMES, .offset = P(listeners),
     .doc = "only on these listeners (default: every one)"},
    {.name = "tls_min_version", .type = KT_TLS_VERSION,
     .offset = P(tls_min_version),
     .doc = "oldest TLS version these clients may use (default: the "
            "global one)"},
    {.name = "auth_before_tls", .type = KT_ENUM,
     .offset = P(auth_before_tls), .names = abt_names,
     .doc = "none, challenge or all: overrides the listener's"},
    {.name = "helo_auth", .type = KT_ENUM, .offset = P(helo_auth),
     .names = bool_names, .def = "no",
     .doc = "AUTH after HELO too (not only after EHLO)"},
    {.name = "bare_lf", .type = KT_ENUM, .offset = P(bare_lf),
     .names = bare_lf_names, .def = "reject",
     .doc = "reject or normalize (to CRLF) bare LF line ends in DATA"},
    {.name = "long_lines", .type = KT_ENUM, .offset = P(long_lines),
     .names = long_lines_names, .def = "reject",
     .doc = "reject or fold (at 998 octets) DATA lines over 1000 octets"},
    {.name = "add_missing_headers", .type = KT_ENUM,
     .offset = P(add_missing_headers), .names = bool_names, .def = "no",
     .doc = "add Date and Message-ID when absent (RFC 6409 §8)"},
    {.name = "legacy_auth_line", .type = KT_ENUM,
     .offset = P(legacy_auth_line), .names = bool_names,
     .doc = "also advertise \"250-AUTH=...\" (default: the global "
            "one)"},
};

#undef G
#undef L
#undef R
#undef P

/* --- Section types ------------------------------------------------------- */

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

static void listener_init(void *sec);
static int global_check(struct config_parser *p,
                        const struct config_section *s);
static int listener_check(struct config_parser *p,
                          const struct config_section *s);
static int relay_check(struct config_parser *p,
                       const struct config_section *s);
static void profile_init(void *sec);
static int profile_check(struct config_parser *p,
                         const struct config_section *s);

const struct config_section_type config_global_type = {
    .name = NULL,
    .keys = global_keys,
    .nkeys = NKEYS(global_keys),
    .size = sizeof(struct config),
    .check = global_check,
};

const struct config_section_type config_section_types[CONFIG_SECTION_TYPES] = {
    {
        .name = "listener",
        .keys = listener_keys,
        .nkeys = NKEYS(listener_keys),
        .size = sizeof(struct config_listener),
        .name_offset = offsetof(struct config_listener, name),
        .line_offset = offsetof(struct config_listener, line),
        .list_offset = offsetof(struct config, listeners),
        .count_offset = offsetof(struct config, n_listeners),
        .max = CONFIG_LISTENERS_MAX,
        .init = listener_init,
        .check = listener_check,
    },
    {
        .name = "relay",
        .keys = relay_keys,
        .nkeys = NKEYS(relay_keys),
        .size = sizeof(struct config_relay),
        .name_offset = offsetof(struct config_relay, name),
        .line_offset = offsetof(struct config_relay, line),
        .list_offset = offsetof(struct config, relays),
        .count_offset = offsetof(struct config, n_relays),
        .max = CONFIG_RELAYS_MAX,
        .check = relay_check,
    },
    {
        .name = "profile",
        .keys = profile_keys,
        .nkeys = NKEYS(profile_keys),
        .size = sizeof(struct config_profile),
        .name_offset = offsetof(struct config_profile, name),
        .line_offset = offsetof(struct config_profile, line),
        .list_offset = offsetof(struct config, profiles),
        .count_offset = offsetof(struct config, n_profiles),
        .max = CONFIG_PROFILES_MAX,
        .init = profile_init,
        .check = profile_check,
    },
};

/* The name of value of an enum key, for messages. */
const char *
config_enum_value(const struct config_enum *names, int value)
{
    for (size_t i = 0; names[i].name != NULL; i++) {
        if (names[i].value == value)
            return names[i].name;
    }
    return "?";
}

/* --- Checks that need the whole file ------------------------------------ */

static int
global_check(struct config_parser *p, const struct config_section *s)
{
    struct config *c = p->c;

    /* The query and the timeout belong to the PostgreSQL store. */
    if (c->userdb.kind != CONFIG_USERDB_PGSQL) {
        if (config_key_line(s, "userdb_query") != 0)
            return config_perr(p, config_key_line(s, "userdb_query"),
                        "userdb_query needs userdb = pgsql:CONNINFO");
        if (config_key_line(s, "userdb_timeout") != 0)
            return config_perr(p, config_key_line(s, "userdb_timeout"),
                        "userdb_timeout needs userdb = pgsql:CONNINFO");
    }
    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
        if (c->tls_cert != NULL)
            return config_perr(p, config_key_line(s, "tls_cert"),
                        "tls_cert without tls_key");
        return config_perr(p, config_key_line(s, "tls_key"),
                           "tls_key without tls_cert");
    }
    if (c->n_listeners == 0)
        return config_perr(p, 0, "no [listener NAME] section");
    if (c->relay != NULL && config_relay_find(c, c->relay) == NULL)
        return config_perr(p, config_key_line(s, "relay"),
                           "relay = %s: no [relay %s] section", c->relay,
                           c->relay);
    if (c->retry_max < c->retry_min)
        return config_perr(p, config_key_line(s, "retry_max"),
                           "retry_max is shorter than retry_min");
    /* Every recipient local (no relay, or local domains) needs the
     * mailboxes; a pure relay (relays, no local_domains) does not. */
    if (c->mailbox == NULL &&
        (c->n_relays == 0 || c->local_domains.n > 0))
        return config_perr(p, 0, "missing required key 'mailbox'");
    if (c->scram_secret_file == NULL) {
        size_t n = strlen(c->spool) + sizeof("/scram.secret");

        c->scram_secret_file = malloc(n);
        if (c->scram_secret_file == NULL)
            return PST_ENOMEM;
        snprintf(c->scram_secret_file, n, "%s/scram.secret", c->spool);
    }
    if (c->n_relays > 0 && c->queue == NULL) {
        size_t n = strlen(c->spool) + sizeof("/queue");

        c->queue = malloc(n);
        if (c->queue == NULL)
            return PST_ENOMEM;
        snprintf(c->queue, n, "%s/queue", c->spool);
    }
    if (c->n_relays == 0) {
        if (config_key_line(s, "queue") != 0)
            return config_perr(p, config_key_line(s, "queue"),
                               "queue without any [relay NAME]");
    }
    return 0;
}

/* Default mechanisms: every one libpostern implements, strongest first. */
static void
listener_init(void *sec)
{
    struct config_mechs *m = &((struct config_listener *)sec)->mechs;
    const struct pst_sasl_mech *mech;

    while (m->n < CONFIG_MAX_MECHS &&
           (mech = pst_sasl_mech_at(m->n)) != NULL)
        m->v[m->n++] = mech;
}

static int
relay_check(struct config_parser *p, const struct config_section *s)
{
    const struct config_relay *r = &p->c->relays[s->index];
    unsigned tls_line = config_key_line(s, "tls");
    unsigned auth_line = config_key_line(s, "auth");

    /* Credentials never leave without TLS. */
    if (r->tls == CONFIG_RELAY_TLS_NONE && r->auth != CONFIG_RELAY_AUTH_NONE)
        return config_perr(p, tls_line, "[relay %s]: tls = none needs "
                           "auth = none (credentials never go in clear)",
                           r->name);
    if (r->auth == CONFIG_RELAY_AUTH_PASSWORD &&
        (r->user == NULL || r->password_file == NULL))
        return config_perr(p, auth_line, "[relay %s]: auth = password needs "
                           "user and password_file", r->name);
    if (r->auth == CONFIG_RELAY_AUTH_OAUTH2) {
        if (r->user == NULL || r->oauth2_token_url == NULL ||
            r->oauth2_client_id == NULL || r->oauth2_scope == NULL)
            return config_perr(p, auth_line, "[relay %s]: auth = oauth2 "
                               "needs user, oauth2_token_url, "
                               "oauth2_client_id and oauth2_scope", r->name);
        if (strncmp(r->oauth2_token_url, "https://", 8) != 0)
            return config_perr(p, config_key_line(s, "oauth2_token_url"),
                               "[relay %s]: oauth2_token_url must be "
                               "https://", r->name);
        if (r->oauth2_grant == CONFIG_GRANT_REFRESH_TOKEN &&
            r->oauth2_token_file == NULL)
            return config_perr(p, auth_line, "[relay %s]: oauth2_grant = "
                               "refresh_token needs oauth2_token_file",
                               r->name);
        if (r->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS &&
            r->oauth2_client_secret_file == NULL)
            return config_perr(p, auth_line, "[relay %s]: oauth2_grant = "
                               "client_credentials needs "
                               "oauth2_client_secret_file", r->name);
    }
    if (r->rewrite_sender != CONFIG_REWRITE_NO && r->user == NULL)
        return config_perr(p, config_key_line(s, "rewrite_sender"),
                           "[relay %s]: rewrite_sender needs user", r->name);
    return 0;
}

static int
listener_check(struct config_parser *p, const struct config_section *s)
{
    const struct config *c = p->c;
    const struct config_listener *l = &c->listeners[s->index];
    unsigned tls_line = config_key_line(s, "tls");
    unsigned abt_line = config_key_line(s, "auth_before_tls");
    size_t offered = 0;

    if (l->tls != CONFIG_TLS_NONE && c->tls_cert == NULL)
        return config_perr(p, tls_line != 0 ? tls_line : l->line,
                    "[listener %s]: tls = %s%s needs tls_cert and tls_key",
                    l->name, config_enum_value(tls_names, (int)l->tls),
                    tls_line != 0 ? "" : " (the default)");
    /* posternd verifies no bearer token (it would be checked as a
     * password): XOAUTH2 and OAUTHBEARER are for the relay only. */
    for (size_t m = 0; m < l->mechs.n; m++) {
        unsigned f = pst_sasl_mech_flags(l->mechs.v[m]);

        if (f & PST_MECH_BEARER)
            return config_perr(p, config_key_line(s, "mechanisms"),
                        "[listener %s]: mechanism %s is not offered by "
                        "posternd (it verifies no bearer token)", l->name,
                        pst_sasl_mech_name(l->mechs.v[m]));
        /* SCRAM-*-PLUS binds to TLS (RFC 5802 §6); EXTERNAL takes the
         * identity of a client certificate, which only tls_client_ca
         * asks for. */
        if ((f & (PST_MECH_CHANNEL_BINDING | PST_MECH_EXTERNAL)) &&
            l->tls == CONFIG_TLS_NONE)
            return config_perr(p, config_key_line(s, "mechanisms"),
                        "[listener %s]: mechanism %s needs TLS", l->name,
                        pst_sasl_mech_name(l->mechs.v[m]));
        if ((f & PST_MECH_EXTERNAL) && l->tls_client_ca == NULL)
            return config_perr(p, config_key_line(s, "mechanisms"),
                        "[listener %s]: mechanism EXTERNAL needs "
                        "tls_client_ca", l->name);
    }
    if (l->tls_client_ca != NULL && l->tls == CONFIG_TLS_NONE)
        return config_perr(p, config_key_line(s, "tls_client_ca"),
                    "[listener %s]: tls_client_ca needs tls = starttls or "
                    "implicit", l->name);
    {
        static const char *const needs_ca[] = {"tls_client_cert",
                                               "tls_client_crl",
                                               "cert_user"};

        for (size_t k = 0; k < 3; k++)
            if (l->tls_client_ca == NULL &&
                config_key_line(s, needs_ca[k]) != 0)
                return config_perr(p, config_key_line(s, needs_ca[k]),
                            "[listener %s]: %s needs tls_client_ca",
                            l->name, needs_ca[k]);
    }
    /* The user whose cert= holds a fingerprint: found by scanning the
     * user file (a query per fingerprint is not what the pgsql store
     * runs). */
    if (l->tls_client_ca != NULL &&
        l->cert_user == CONFIG_CERT_USER_FINGERPRINT &&
        c->userdb.kind != CONFIG_USERDB_PASSWD_FILE)
        return config_perr(p, config_key_line(s, "cert_user"),
                    "[listener %s]: cert_user = fingerprint needs userdb = "
                    "passwd-file:PATH", l->name);
    /* DESIGN.md security_layer: never under TLS, so only where
     * DIGEST-MD5 is offered without it. */
    if (l->security_layer &&
        !config_listener_offers(l, pst_sasl_mech_find("DIGEST-MD5", 10), 0))
        return config_perr(p, config_key_line(s, "security_layer"),
                    "[listener %s]: security_layer = yes needs DIGEST-MD5 "
                    "offered without TLS (tls = none or starttls, "
                    "auth_before_tls = challenge or all)", l->name);
    if (l->auth != CONFIG_AUTH_OFF && l->mechs.n == 0)
        return config_perr(p, config_key_line(s, "mechanisms"),
                    "[listener %s]: no mechanisms", l->name);
    /* Without TLS only auth_before_tls decides what is offered (RFC 4954
     * §4: a mechanism not offered gets 504 5.5.4); a listener whose users
     * could never authenticate is a mistake. */
    for (size_t m = 0; m < l->mechs.n; m++)
        offered += (size_t)config_listener_offers(l, l->mechs.v[m], 0);
    if (l->auth != CONFIG_AUTH_OFF && l->tls == CONFIG_TLS_NONE &&
        offered == 0)
        return config_perr(p, abt_line != 0 ? abt_line : l->line,
                    "[listener %s]: tls = none and auth_before_tls = %s "
                    "leave no mechanism to offer", l->name,
                    config_enum_value(abt_names, (int)l->auth_before_tls));
    for (size_t j = 0; j < s->index; j++) {
        const struct config_listener *o = &c->listeners[j];

        if (config_address_conflict(&o->address, &l->address))
            return config_perr(p, config_key_line(s, "address"),
                               "address %s of "
                        "[listener %s] overlaps [listener %s] (line %u)",
                        l->address.text, l->name, o->name,
                        config_key_line(config_section_of(p, s->type, j),
                                        "address"));
    }
    return 0;
}

/* The keys a profile leaves to the listener or the global key. */
static void
profile_init(void *sec)
{
    struct config_profile *pr = sec;

    pr->auth_before_tls = CONFIG_UNSET;
    pr->legacy_auth_line = CONFIG_UNSET;
}

static int
profile_check(struct config_parser *p, const struct config_section *s)
{
    const struct config *c = p->c;
    const struct config_profile *pr = &c->profiles[s->index];
    unsigned lines_line = config_key_line(s, "listeners");
    unsigned abt_line = config_key_line(s, "auth_before_tls");
    int tls = 0;

    if (pr->networks.n == 0)
        return config_perr(p, config_key_line(s, "networks"),
                           "[profile %s]: no networks", pr->name);
    for (size_t i = 0; i < pr->listeners.n; i++) {
        size_t j = 0;

        while (j < c->n_listeners &&
               strcmp(c->listeners[j].name, pr->listeners.v[i]) != 0)
            j++;
        if (j == c->n_listeners)
            return config_perr(p, lines_line, "[profile %s]: no [listener "
                               "%s] section", pr->name, pr->listeners.v[i]);
    }
    for (size_t j = 0; j < c->n_listeners; j++) {
        const struct config_listener *l = &c->listeners[j];
        enum config_auth_before_tls abt = config_profile_abt(pr, l);
        size_t offered = 0;

        if (!config_profile_on_listener(pr, l))
            continue;
        tls |= l->tls != CONFIG_TLS_NONE;
        /* As listener_check(): the profile's clients must be able to
         * authenticate where the listener requires it. */
        for (size_t m = 0; m < l->mechs.n; m++)
            offered += (size_t)config_listener_offers_abt(l, abt,
                                                          l->mechs.v[m], 0);
        if (l->auth != CONFIG_AUTH_OFF && l->tls == CONFIG_TLS_NONE &&
            offered == 0)
            return config_perr(p, abt_line != 0 ? abt_line : pr->line,
                        "[profile %s]: auth_before_tls = %s leaves no "
                        "mechanism to offer on [listener %s] (tls = none)",
                        pr->name, config_enum_value(abt_names, (int)abt),
                        l->name);
    }
    if (pr->tls_min_version != TLS_VERSION_DEFAULT && !tls)
        return config_perr(p, config_key_line(s, "tls_min_version"),
                           "[profile %s]: tls_min_version, but none of its "
                           "listeners has TLS", pr->name);
    return 0;
}
