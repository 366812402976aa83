/*
 * posternd - the configuration file (DESIGN.md "Interfaces / posternd";
 * every key is documented in docs/posternd.conf.5).
 *
 * INI style: "key = value" lines, "#" comments (at the start of a line or
 * after white space), blank lines, and one "[listener NAME]" section per
 * listening socket.  Global keys come before the first section.  Parsing
 * stops at the first error, reported as "FILE:LINE: message" ("FILE:
 * message" for something missing from the whole file), and resolves every
 * value to the typed fields below, defaults included.
 *
 * The keys are tables in config_keys.c, one per section type (the global
 * keys, [listener NAME]): each row gives a key's name, value type, field,
 * bounds, default and a line of documentation.  A new key of a known type
 * is a row and a field; a new section type is a table and a struct.
 */
#ifndef POSTERND_CONFIG_H
#define POSTERND_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <postern/buf.h>
#include <postern/sasl.h>

#include "log_level.h"
#include "tls.h"

#define CONFIG_ERR_MAX   512     /* bytes for an error message */
#define CONFIG_FILE_MAX  1048576 /* a configuration file larger is refused */
#define CONFIG_MAX_MECHS 16      /* mechanisms on one listener */
#define CONFIG_LISTENERS_MAX 64
#define CONFIG_CIDRS_MAX 256     /* entries of auth_throttle_exempt */
#define CONFIG_ADDRESS_MAX 256   /* RFC 5321 §4.5.3.1.3: a path */
#define CONFIG_RELAYS_MAX 64
#define CONFIG_WORDS_MAX 1024    /* entries of a list of words */
#define CONFIG_PROFILES_MAX 64
#define CONFIG_UNSET (-1)        /* a profile key left to the listener or
                                    the global key */

enum config_userdb_kind {
    CONFIG_USERDB_PASSWD_FILE = 0, /* passwd-file:PATH */
    CONFIG_USERDB_PGSQL,           /* pgsql:CONNINFO */
};

/* userdb = KIND:ARG */
struct config_userdb {
    enum config_userdb_kind kind;
    char    *arg;             /* PATH or CONNINFO (owned) */
};

enum config_sender_check {
    CONFIG_SENDER_STRICT = 0, /* MAIL FROM must be one of the user's own */
    CONFIG_SENDER_OFF,        /* any sender */
};

enum config_tls {
    CONFIG_TLS_NONE = 0,      /* plaintext only */
    CONFIG_TLS_STARTTLS,      /* RFC 3207 */
    CONFIG_TLS_IMPLICIT,      /* RFC 8314 §3.3: TLS from the first byte */
};

enum config_auth {
    CONFIG_AUTH_REQUIRED = 0, /* MAIL before AUTH: 530 5.7.0 */
    CONFIG_AUTH_OPTIONAL,     /* AUTH offered, not required */
    CONFIG_AUTH_OFF,          /* AUTH not offered */
};

enum config_auth_before_tls {
    CONFIG_ABT_NONE = 0,      /* AUTH only after STARTTLS */
    CONFIG_ABT_CHALLENGE,     /* only mechanisms that never send the
                                 password (no PST_MECH_SENDS_PASSWORD) */
    CONFIG_ABT_ALL,           /* every configured mechanism */
};

/* One network in CIDR notation. */
struct config_cidr {
    int      family;          /* AF_INET or AF_INET6 */
    unsigned prefix;          /* 0..32 or 0..128 */
    uint8_t  addr[16];        /* network bytes; 4 used for AF_INET */
};

struct config_cidrs {
    struct config_cidr *v;    /* owned */
    size_t n;
};

/* A numeric socket address: "127.0.0.1:587", "[::1]:587". */
struct config_address {
    char    *text;            /* as written (owned) */
    struct sockaddr_storage sa; /* resolved, port included */
    socklen_t len;
};

/* SASL mechanisms, in the order written (the order EHLO advertises). */
struct config_mechs {
    const struct pst_sasl_mech *v[CONFIG_MAX_MECHS];
    size_t   n;
};

/* A list of words (local_domains: lowercased domain names). */
struct config_words {
    char   **v;               /* owned */
    size_t   n;
};

/* A smarthost: "host:port" or "[ipv6]:port", not resolved here. */
struct config_hostport {
    char    *host;            /* owned: a name or an address */
    uint16_t port;
};

enum config_relay_tls {
    CONFIG_RELAY_TLS_STARTTLS = 0, /* required, never optional */
    CONFIG_RELAY_TLS_IMPLICIT,     /* RFC 8314 */
    CONFIG_RELAY_TLS_NONE,         /* only with auth = none */
};

enum config_relay_auth {
    CONFIG_RELAY_AUTH_NONE = 0,
    CONFIG_RELAY_AUTH_PASSWORD,    /* user + password_file */
    CONFIG_RELAY_AUTH_OAUTH2,      /* XOAUTH2 / OAUTHBEARER */
};

enum config_oauth2_grant {
    CONFIG_GRANT_REFRESH_TOKEN = 0,
    CONFIG_GRANT_CLIENT_CREDENTIALS,
};

enum config_rewrite {
    CONFIG_REWRITE_NO = 0,
    CONFIG_REWRITE_ENVELOPE,       /* MAIL FROM becomes `user` */
    CONFIG_REWRITE_ENVELOPE_FROM,  /* and the From header too */
};

/* One "[relay NAME]" section (DESIGN.md "Routing, relay and the queue"). */
struct config_relay {
    char    *name;
    unsigned line;
    struct config_hostport host;
    enum config_relay_tls tls;
    char    *tls_cafile;          /* NULL: the system store */
    enum config_relay_auth auth;
    char    *user;                /* the upstream login / mailbox */
    char    *password_file;       /* auth = password: its first line */
    struct config_mechs mechs;    /* preference; n 0: default by auth */
    char    *oauth2_token_url;
    char    *oauth2_device_url;
    char    *oauth2_auth_url;     /* loopback login (authorization code) */
    enum config_oauth2_grant oauth2_grant;
    char    *oauth2_client_id;
    char    *oauth2_client_secret_file;
    char    *oauth2_scope;
    char    *oauth2_token_file;
    char    *oauth2_cafile;       /* NULL: the system store */
    unsigned max_connections;
    unsigned max_messages_per_minute; /* 0: no limit */
    enum config_rewrite rewrite_sender;
    unsigned connect_timeout;     /* seconds */
    unsigned timeout;             /* seconds for each reply */
};

/* Who a verified client certificate names (SASL EXTERNAL). */
enum config_cert_user {
    CONFIG_CERT_USER_SAN_EMAIL = 0, /* its first subjectAltName email */
    CONFIG_CERT_USER_SUBJECT_CN,    /* its subject's commonName */
    CONFIG_CERT_USER_FINGERPRINT,   /* the user whose cert= extra field
                                       holds its SHA-256 fingerprint */
};

enum config_bare_lf {
    CONFIG_BARE_LF_REJECT = 0,     /* 550 5.6.0 (RFC 5321 §2.3.8) */
    CONFIG_BARE_LF_NORMALIZE,      /* a bare LF ends the line: CRLF */
};

enum config_long_lines {
    CONFIG_LONG_LINES_REJECT = 0,  /* 500 5.5.6 (RFC 5321 §4.5.3.1.6) */
    CONFIG_LONG_LINES_FOLD,        /* pieces of 998 octets (RFC 5322
                                      §2.1.1) */
};

/*
 * One "[profile NAME]" section (DESIGN.md "Per-client compatibility
 * profiles"): exceptions for the clients of some networks, on some
 * listeners.  The first profile in the file whose networks hold the
 * client's address (and whose listeners, if any, name the listener)
 * applies to a connection; without one nothing changes.
 */
struct config_profile {
    char    *name;
    unsigned line;
    struct config_cidrs networks;  /* client addresses (required) */
    struct config_words listeners; /* listener names; n 0: every one */
    enum tls_version tls_min_version; /* TLS_VERSION_DEFAULT: the global
                                         tls_min_version */
    int      auth_before_tls;     /* enum config_auth_before_tls, or
                                     CONFIG_UNSET: the listener's */
    int      helo_auth;           /* 1: AUTH after HELO too */
    enum config_bare_lf bare_lf;
    enum config_long_lines long_lines;
    int      add_missing_headers; /* 1: Date, Message-ID when absent */
    int      legacy_auth_line;    /* 0, 1, or CONFIG_UNSET: the global
                                     legacy_auth_line */
};

struct config_listener {
    char    *name;            /* from "[listener NAME]" */
    unsigned line;            /* of the section header, for messages */
    struct config_address address;
    enum config_tls tls;
    enum config_auth auth;
    enum config_auth_before_tls auth_before_tls;
    struct config_mechs mechs;
    /* Client certificates (EXTERNAL, RFC 4422 App. A): */
    char    *tls_client_ca;   /* PEM CAs; NULL: none asked for */
    int      tls_client_cert_required; /* 1 required, 0 optional */
    char    *tls_client_crl;  /* PEM CRLs, or NULL */
    enum config_cert_user cert_user;
    int      security_layer;  /* 1: DIGEST-MD5 auth-int/auth-conf */
};

struct config {
    char    *file;            /* name used in messages */
    /* Global keys: */
    char    *hostname;
    struct config_userdb userdb;
    char    *userdb_query;    /* pgsql: the lookup ($1 = user name);
                                 NULL: the default (userdb_pgsql.h) */
    unsigned userdb_timeout;  /* pgsql: seconds a lookup may take */
    char    *mailbox;         /* the template after "maildir:" */
    char    *spool;
    char    *scram_secret_file; /* default SPOOL/scram.secret */
    char    *tls_cert;        /* NULL if not set */
    char    *tls_key;         /* NULL if not set */
    enum tls_version tls_min_version;
    uint64_t max_message_size;   /* bytes (SIZE, RFC 1870) */
    enum config_sender_check sender_check;
    int      auth_throttle;      /* 1 yes, 0 no */
    struct config_cidrs auth_throttle_exempt;
    unsigned max_recipients;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned max_errors;
    unsigned timeout_command;    /* seconds (RFC 5321 §4.5.3.2) */
    unsigned timeout_data;
    unsigned timeout_final;
    unsigned session_time_limit; /* seconds a connection may last; 0 no
                                    limit */
    unsigned data_time_limit;    /* seconds from 354 to the final dot; 0
                                    no limit */
    unsigned auth_failure_delay_ms; /* a failed AUTH is answered this long
                                       after the client's last byte */
    unsigned grace_period;       /* seconds; 0 allowed */
    unsigned workers;            /* 0: auto (one per core) */
    char    *user;               /* run as this user after binding (NULL:
                                    as started) */
    enum log_level log_level;
    int      legacy_auth_line;   /* 1: also "250-AUTH=LOGIN PLAIN" */
    /* Brute-force throttling (throttle.h), seconds or counts: */
    unsigned auth_throttle_delay;         /* first failure's hold */
    unsigned auth_throttle_max_delay;     /* cap of the doubling */
    unsigned auth_throttle_lockout_failures; /* lock the address; 0 never */
    unsigned auth_throttle_lockout_time;  /* how long a lock lasts */
    unsigned auth_throttle_user_failures; /* per-user delays from here */
    unsigned auth_throttle_forget;        /* quiet time to forget */
    /* Routing and the relay's queue: */
    struct config_words local_domains; /* lowercased */
    char    *relay;              /* the default relay's name, or NULL */
    char    *queue;              /* the queue directory; with relays, the
                                    spool's queue/ by default */
    unsigned queue_lifetime;     /* seconds, then bounce */
    unsigned retry_min;          /* seconds; doubles per attempt */
    unsigned retry_max;
    /* Sections: */
    struct config_listener *listeners; /* owned */
    size_t   n_listeners;
    struct config_relay *relays; /* owned */
    size_t   n_relays;
    struct config_profile *profiles; /* owned, in file order */
    size_t   n_profiles;
};

/*
 * Parse len bytes of configuration text ([in] borrowed); file ([in]
 * borrowed) names it in messages.  On success *out ([out] owned) is freed
 * with config_free().  On failure *out is NULL and err (at least
 * CONFIG_ERR_MAX bytes is enough) gets "file:line: message".
 * Returns: 0, PST_ESYNTAX (an error in the text), PST_ENOMEM.
 */
int config_parse(const char *file, const char *text, size_t len,
                 struct config **out, char *err, size_t err_size);

/*
 * Read and parse the file at path ([in] borrowed), named so in messages.
 * Returns: as config_parse(), and PST_EIO (cannot read it; err says why).
 */
int config_load(const char *path, struct config **out, char *err,
                size_t err_size);

/* Free c; NULL is a no-op. */
void config_free(struct config *c);

/* One key of the tables, for documentation and its test. */
struct config_key_info {
    const char *section;      /* "listener"; NULL for a global key */
    const char *name;
    const char *def;          /* the default as written in the file, or
                                 NULL (none, or computed: see doc) */
    const char *doc;          /* one line */
};

/*
 * The i-th key of all the tables (global keys first).
 * Parameters: *out [out] borrowed static strings.
 * Returns: 1 with *out filled, 0 past the last key.
 */
int config_key_at(size_t i, struct config_key_info *out);

/*
 * Whether mechanism m is on listener l's list (1) or not (0).
 */
int config_listener_has_mech(const struct config_listener *l,
                             const struct pst_sasl_mech *m);

/*
 * Whether listener l offers mechanism m on a connection that is under TLS
 * (tls_active != 0) or not (1 = offered, 0 = not): m must be on the list,
 * AUTH not off, and without TLS auth_before_tls must admit it ("challenge":
 * only mechanisms without PST_MECH_SENDS_PASSWORD); SCRAM-*-PLUS and
 * EXTERNAL need TLS whatever it says.  A mechanism not offered gets 504
 * 5.5.4 (RFC 4954 §4).
 */
int config_listener_offers(const struct config_listener *l,
                           const struct pst_sasl_mech *m, int tls_active);

/*
 * As config_listener_offers(), with abt in place of the listener's own
 * auth_before_tls (a profile's).
 */
int config_listener_offers_abt(const struct config_listener *l,
                               enum config_auth_before_tls abt,
                               const struct pst_sasl_mech *m,
                               int tls_active);

/*
 * Whether profile p applies on listener l (1) or not (0): p names no
 * listener, or names l.
 */
int config_profile_on_listener(const struct config_profile *p,
                               const struct config_listener *l);

/*
 * The profile of a client at address sa ([in] borrowed: a struct
 * sockaddr_in or sockaddr_in6, IPv4-mapped addresses matched as IPv4)
 * connected to listener l ([in]): the first [profile NAME] of the file
 * whose networks hold sa and that applies on l.
 * Returns: the profile (borrowed from c), or NULL (none: nothing
 * changes).
 */
const struct config_profile *config_profile_match(
    const struct config *c, const struct config_listener *l,
    const struct sockaddr *sa);

/*
 * The auth_before_tls in force for profile p (may be NULL) on listener
 * l: the profile's, else the listener's.
 */
enum config_auth_before_tls config_profile_abt(
    const struct config_profile *p, const struct config_listener *l);

/*
 * Write network n ([in]) as "192.0.2.0/24" or "2001:db8::/32" into buf
 * (n bytes; INET6_ADDRSTRLEN + 5 is enough).  Returns: buf.
 */
char *config_cidr_format(const struct config_cidr *n, char *buf,
                         size_t size);

/*
 * Parse one network: "192.0.2.0/24", "2001:db8::/32", or an address alone
 * (a /32 or /128).  text ([in] borrowed) has len bytes.  Host bits set
 * beyond the prefix are refused, since they usually mean a typo.
 * Returns: 0, PST_ESYNTAX.
 */
int config_cidr_parse(const char *text, size_t len, struct config_cidr *out);

/*
 * Whether the address sa ([in] borrowed: a struct sockaddr_in or
 * sockaddr_in6) lies in one of the networks of list (1) or not (0).  An
 * IPv4-mapped IPv6 address (::ffff:192.0.2.1, what a dual-stack socket
 * reports) is matched as the IPv4 address it carries.
 */
int config_cidrs_match(const struct config_cidrs *list,
                       const struct sockaddr *sa);

/*
 * The Maildir path of address ("local@domain", [in] borrowed, addr_len
 * bytes) under template tmpl ([in] borrowed: the value after "maildir:"),
 * appended to out.  %u is the whole address, %n the local part, %d the
 * domain (lowercased: RFC 5321 §2.4, domains are case-insensitive), %%
 * a "%".  The address is split at its last "@".  Refused (out unchanged):
 * an address without "@", an empty local part or domain, and a part that
 * could leave the template's directory or name a hidden one: containing
 * "/", "..", a NUL or another control byte, or starting with ".".  The
 * expanded path must be absolute and no component of it may be "." or
 * "..".
 * Returns: 0, PST_EINVAL (refused address or bad template), PST_ELIMIT
 * (the path is too long for out's ceiling), PST_ENOMEM.
 */
int config_mailbox_expand(const char *tmpl, const char *addr,
                          size_t addr_len, struct pst_buf *out);

/* The [relay NAME] called name, or NULL. */
const struct config_relay *config_relay_find(const struct config *c,
                                             const char *name);

/* Whether domain ([in], case-insensitive) is in local_domains. */
int config_domain_local(const struct config *c, const char *domain,
                        size_t len);

/*
 * The mail root of a mailbox template ([in]): its directory part before
 * the first escape ("/var/mail/%d/%n" -> "/var/mail"), which delivery
 * trusts as the administrator's (maildir_deliver(): nothing below it may
 * be a symbolic link).
 * Returns: a new string (free()), or NULL (tmpl NULL, out of memory).
 */
char *config_mailbox_root(const char *tmpl);

/*
 * Check a mailbox template: absolute, no "." or ".." component, only
 * %u %n %d %% escapes.
 * Returns: 0, PST_ESYNTAX (*why, a static string, says what is wrong).
 */
int config_mailbox_check(const char *tmpl, const char **why);

/* --- Values (config_value.c), as the key tables read them ------------- */

/*
 * Decimal digits only (no sign, no spaces), s[0..len) ([in] borrowed),
 * into *out without overflow.
 * Returns: 0, -1 (not a number, or too large).
 */
int config_u64_parse(const char *s, size_t len, uint64_t *out);

/*
 * Whether s ([in] C string) is a host name: LDH labels of 1..63 octets
 * separated by dots, 253 octets at most, no label starting or ending
 * with "-" (RFC 1035 §2.3.1, RFC 1123 §2.1).  Returns: 1 or 0.
 */
int config_hostname_valid(const char *s);

/*
 * Parse "IPV4:PORT" or "[IPV6]:PORT" (numeric hosts, port 1..65535) from
 * v ([in] C string) into a's sa and len (a->text is left alone).
 * Returns: 0, -1 (refused).
 */
int config_address_parse(const char *v, struct config_address *a);

/*
 * Whether two listening addresses would fight over one socket: same
 * family and port, and the same address or either one the wildcard
 * (binding 0.0.0.0:25 takes 127.0.0.1:25 too).  Returns: 1 or 0.
 */
int config_address_conflict(const struct config_address *a,
                            const struct config_address *b);

#endif
