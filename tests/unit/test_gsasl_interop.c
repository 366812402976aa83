/*
 * Interoperability of every mechanism with GNU SASL (libgsasl 2.x), an
 * independent implementation: our client half against gsasl's server half,
 * and gsasl's client half against our server half, in memory.
 *
 * The exchange is framed the way SMTP frames it (RFC 4954 §4):
 * - "AUTH <mech> [initial-response]": a client-first mechanism may send an
 *   initial response; a server-first one (CRAM-MD5, DIGEST-MD5) must not,
 *   so its client, asked for one, must have nothing to say;
 * - every "334" challenge gets exactly one response;
 * - SMTP carries no data with success (RFC 4954 §6, "235" only), so data a
 *   server sends along with its success (SCRAM's server-final, DIGEST-MD5's
 *   rspauth) travels as one more "334" challenge, which the client answers
 *   with an empty response before the server says "235".
 *
 * XOAUTH2 and OAUTHBEARER have no rows: GNU SASL 2.2.0 (Debian 12's
 * libgsasl18) implements neither (gsasl_client_mechlist() lists ANONYMOUS
 * EXTERNAL LOGIN PLAIN SECURID NTLM DIGEST-MD5 CRAM-MD5 SCRAM-SHA-1[-PLUS]
 * SCRAM-SHA-256[-PLUS] SAML20 OPENID20 GSSAPI GS2-KRB5); test_sasl_oauth.c
 * checks them against RFC 7628's and Google's published messages instead.
 *
 * One cmocka test per row of the table, named after the row, so a failure
 * reads "SCRAM-SHA-256 gsasl-client->postern-server right password: got
 * EAUTH, want DONE", followed by a hex dump of the exchange.
 */
#include <gsasl.h>
#include <openssl/crypto.h>

#include "testutil.h"

#define HOSTNAME  "mail.example.test"
#define USER      "tim"
#define PASSWORD  "tanstaaftanstaaf"
#define WRONG_PW  "tanstaaftanstaaX"
#define UTF8_USER "j\xc3\xbcrgen"                           /* jürgen */
#define UTF8_PW   "p\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac"      /* pässwörd€ */
#define LATIN1_PW "p\xc3\xa4ssw\xc3\xb6rd"                  /* pässwörd */
#define SCRAM_ITERATIONS 4096u

/* "334" challenges in one exchange before the driver gives up; SCRAM needs
 * three (empty IR prompt, server-first, server-final). */
#define MAX_ROUNDS 8
#define MAX_MSGS   (2 * MAX_ROUNDS + 4)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Host names our server accepts in a DIGEST-MD5 digest-uri besides its
 * hostname: the listening addresses (INTEROP.md, peer quirks). */
static const char *const uri_hosts[] = {"127.0.0.1", "::1", NULL};

enum row_dir {
    OUR_CLIENT = 0, /* postern client -> gsasl server */
    GSASL_CLIENT,   /* gsasl client -> postern server */
};

enum row_cred {
    CRED_PLAIN = 0,   /* our server stores {PLAIN}<password> */
    CRED_GSASL_SCRAM, /* {SCRAM-SHA-x} made by gsasl from the password */
};

struct row {
    const char *mech;
    enum row_dir dir;
    int wrong;                  /* the client types WRONG_PW */
    const char *extra;          /* what an extra case adds; NULL: core */
    const char *user;           /* NULL: USER */
    const char *authzid;        /* client's authzid; NULL: none */
    int authzid_is_none;        /* our server must report no authzid */
    const char *password;       /* the user's password; NULL: PASSWORD */
    const char *typed;          /* what the client types, if different */
    int no_ir;                  /* client-first mechanism, no IR sent */
    const char *client_host;    /* gsasl client's host; NULL: HOSTNAME */
    const char *client_service; /* gsasl client's service; NULL: smtp */
    int uri_hosts;              /* our server also accepts uri_hosts[] */
    enum row_cred cred;
    const char *salt;           /* CRED_GSASL_SCRAM: base64 salt */
    /* Channel binding (RFC 5802 §6): the type both sides bind with; the
     * client has the data unless no_client_cb, the server has it (and
     * has offered -PLUS) unless no_server_cb; mitm gives the server the
     * data of another TLS connection. */
    const char *cb_type;        /* NULL: neither side binds */
    int no_client_cb;
    int no_server_cb;
    int mitm;
    int no_cert;                /* EXTERNAL: the server maps no client
                                   certificate to a user */
    /* DIGEST-MD5 qop=auth-int (RFC 2831 §2.3): both sides allow it;
     * after success each side protects messages for the other
     * (gsasl_encode/gsasl_decode against pst_sasl_layer_wrap/unwrap).
     * gsasl_auth_only: gsasl's half allows only auth. */
    int qop_int;
    int gsasl_auth_only;
    int want;                   /* the server's last word: 0 for success
                                   (GSASL_OK, PST_SASL_DONE) or the error
                                   code it must fail with */
};

/* The table: each mechanism x {right, wrong} x {direction}, then extras. */
static const struct row rows[] = {
    /* PLAIN (RFC 4616). */
    {.mech = "PLAIN", .dir = OUR_CLIENT, .want = GSASL_OK},
    {.mech = "PLAIN", .dir = OUR_CLIENT, .wrong = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "PLAIN", .dir = GSASL_CLIENT, .want = PST_SASL_DONE},
    {.mech = "PLAIN", .dir = GSASL_CLIENT, .wrong = 1, .want = PST_EAUTH},
    /* LOGIN, in its classic form without an initial response: gsasl's
     * LOGIN server ignores one (it prompts "User Name" whatever it got). */
    {.mech = "LOGIN", .dir = OUR_CLIENT, .no_ir = 1, .want = GSASL_OK},
    {.mech = "LOGIN", .dir = OUR_CLIENT, .no_ir = 1, .wrong = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "LOGIN", .dir = GSASL_CLIENT, .no_ir = 1,
     .want = PST_SASL_DONE},
    {.mech = "LOGIN", .dir = GSASL_CLIENT, .no_ir = 1, .wrong = 1,
     .want = PST_EAUTH},
    /* CRAM-MD5 (RFC 2195). */
    {.mech = "CRAM-MD5", .dir = OUR_CLIENT, .want = GSASL_OK},
    {.mech = "CRAM-MD5", .dir = OUR_CLIENT, .wrong = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "CRAM-MD5", .dir = GSASL_CLIENT, .want = PST_SASL_DONE},
    {.mech = "CRAM-MD5", .dir = GSASL_CLIENT, .wrong = 1,
     .want = PST_EAUTH},
    /* DIGEST-MD5 (RFC 2831). */
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT, .want = GSASL_OK},
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT, .wrong = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT, .want = PST_SASL_DONE},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT, .wrong = 1,
     .want = PST_EAUTH},
    /* SCRAM-SHA-1 (RFC 5802). */
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT, .want = GSASL_OK},
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT, .wrong = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "SCRAM-SHA-1", .dir = GSASL_CLIENT, .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-1", .dir = GSASL_CLIENT, .wrong = 1,
     .want = PST_EAUTH},
    /* SCRAM-SHA-256 (RFC 7677). */
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT, .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT, .wrong = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT, .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT, .wrong = 1,
     .want = PST_EAUTH},

    /* An authorization identity other than the user: each server reports
     * it (RFC 4616 §2, RFC 2831 §2.1.2, RFC 5802 §5.1 "a="). */
    {.mech = "PLAIN", .dir = OUR_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = GSASL_OK},
    {.mech = "PLAIN", .dir = GSASL_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = PST_SASL_DONE},
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = GSASL_OK},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = GSASL_OK},
    {.mech = "SCRAM-SHA-1", .dir = GSASL_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT, .extra = "authzid",
     .authzid = "Ursel", .want = PST_SASL_DONE},
    /* An authzid equal to the user asks for no proxying (mutt and git
     * send-email with DIGEST-MD5, neomutt with SCRAM). */
    {.mech = "PLAIN", .dir = GSASL_CLIENT, .extra = "authzid equal to user",
     .authzid = USER, .authzid_is_none = 1, .want = PST_SASL_DONE},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT,
     .extra = "authzid equal to user", .authzid = USER,
     .authzid_is_none = 1, .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .extra = "authzid equal to user", .authzid = USER,
     .authzid_is_none = 1, .want = PST_SASL_DONE},

    /* Non-ASCII UTF-8 names and passwords (already in NFC, so SASLprep
     * leaves them alone). */
    {.mech = "PLAIN", .dir = OUR_CLIENT, .extra = "UTF-8 user and password",
     .user = UTF8_USER, .password = UTF8_PW, .want = GSASL_OK},
    {.mech = "PLAIN", .dir = GSASL_CLIENT,
     .extra = "UTF-8 user and password", .user = UTF8_USER,
     .password = UTF8_PW, .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT,
     .extra = "UTF-8 user and password", .user = UTF8_USER,
     .password = UTF8_PW, .want = GSASL_OK},
    {.mech = "SCRAM-SHA-1", .dir = GSASL_CLIENT,
     .extra = "UTF-8 user and password", .user = UTF8_USER,
     .password = UTF8_PW, .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT,
     .extra = "UTF-8 user and password", .user = UTF8_USER,
     .password = UTF8_PW, .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .extra = "UTF-8 user and password", .user = UTF8_USER,
     .password = UTF8_PW, .want = PST_SASL_DONE},
    /* RFC 5802 §2.2 Normalize() is SASLprep (RFC 4013): the client types
     * "I<SOFT HYPHEN>X", the server knows "IX" (RFC 4013 §3, first
     * example); both sides must derive the same keys. */
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT,
     .extra = "SASLprep of the password", .password = "IX",
     .typed = "I\xc2\xadX", .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .extra = "SASLprep of the password", .password = "IX",
     .typed = "I\xc2\xadX", .want = PST_SASL_DONE},
    /* RFC 5802 §5.1: "," and "=" in a saslname travel as "=2C", "=3D". */
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT,
     .extra = "',' and '=' in the user name", .user = "a,b=c",
     .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .extra = "',' and '=' in the user name", .user = "a,b=c",
     .want = PST_SASL_DONE},

    /* Client-first mechanisms without an initial response: the server
     * prompts with an empty "334 " (curl without --sasl-ir). */
    {.mech = "PLAIN", .dir = OUR_CLIENT, .extra = "no initial response",
     .no_ir = 1, .want = GSASL_OK},
    {.mech = "PLAIN", .dir = GSASL_CLIENT, .extra = "no initial response",
     .no_ir = 1, .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT,
     .extra = "no initial response", .no_ir = 1, .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .extra = "no initial response", .no_ir = 1, .want = PST_SASL_DONE},
    /* LOGIN with the user name as initial response (curl --sasl-ir). */
    {.mech = "LOGIN", .dir = GSASL_CLIENT, .extra = "initial response",
     .want = PST_SASL_DONE},

    /* DIGEST-MD5 digest-uri (RFC 2831 §2.1.2): gsasl builds
     * "smtp/<hostname>" from GSASL_SERVICE and GSASL_HOSTNAME. */
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT,
     .extra = "digest-uri host is a listening address",
     .client_host = "127.0.0.1", .uri_hosts = 1, .want = PST_SASL_DONE},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT,
     .extra = "digest-uri host unknown", .client_host = "other.example.test",
     .uri_hosts = 1, .want = PST_EAUTH},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT,
     .extra = "digest-uri service imap", .client_service = "imap",
     .want = PST_EAUTH},
    /* RFC 2831 §2.1.2.1: with charset=utf-8, a password whose characters
     * all fit ISO 8859-1 is hashed in ISO 8859-1 (gsasl does this). */
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT, .extra = "Latin-1 password",
     .password = LATIN1_PW, .want = GSASL_OK},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT, .extra = "Latin-1 password",
     .password = LATIN1_PW, .want = PST_SASL_DONE},

    /* SCRAM keys stored by gsasl (gsasl_scram_secrets_from_password), in
     * Dovecot's form {SCRAM-SHA-x}iter,salt,StoredKey,ServerKey; the salts
     * and password of RFC 5802 §5 and RFC 7677 §3. */
    {.mech = "SCRAM-SHA-1", .dir = GSASL_CLIENT,
     .extra = "keys stored by gsasl", .user = "user", .password = "pencil",
     .cred = CRED_GSASL_SCRAM, .salt = "QSXCR+Q6sek8bf92",
     .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-1", .dir = GSASL_CLIENT, .wrong = 1,
     .extra = "keys stored by gsasl", .user = "user", .password = "pencil",
     .cred = CRED_GSASL_SCRAM, .salt = "QSXCR+Q6sek8bf92",
     .want = PST_EAUTH},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .extra = "keys stored by gsasl", .user = "user", .password = "pencil",
     .cred = CRED_GSASL_SCRAM, .salt = "W22ZaJ0SNY7soEsUEjb6gQ==",
     .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT, .wrong = 1,
     .extra = "keys stored by gsasl", .user = "user", .password = "pencil",
     .cred = CRED_GSASL_SCRAM, .salt = "W22ZaJ0SNY7soEsUEjb6gQ==",
     .want = PST_EAUTH},

    /* SCRAM -PLUS (RFC 5802 §6) with RFC 9266 tls-exporter and RFC 5929
     * tls-unique data, both ways: gsasl takes it from GSASL_CB_TLS_EXPORTER
     * or GSASL_CB_TLS_UNIQUE. */
#define PLUS_ROWS(m, t)                                                      \
    {.mech = m, .dir = OUR_CLIENT, .cb_type = t, .extra = t,                \
     .want = GSASL_OK},                                                      \
    {.mech = m, .dir = OUR_CLIENT, .cb_type = t, .extra = t, .wrong = 1,    \
     .want = GSASL_AUTHENTICATION_ERROR},                                    \
    {.mech = m, .dir = GSASL_CLIENT, .cb_type = t, .extra = t,              \
     .want = PST_SASL_DONE},                                                 \
    {.mech = m, .dir = GSASL_CLIENT, .cb_type = t, .extra = t, .wrong = 1,  \
     .want = PST_EAUTH},                                                     \
    {.mech = m, .dir = OUR_CLIENT, .cb_type = t, .mitm = 1,                 \
     .extra = t ", other connection's data",                                \
     .want = GSASL_AUTHENTICATION_ERROR},                                    \
    {.mech = m, .dir = GSASL_CLIENT, .cb_type = t, .mitm = 1,               \
     .extra = t ", other connection's data", .want = PST_EAUTH}
    PLUS_ROWS("SCRAM-SHA-256-PLUS", "tls-exporter"),
    PLUS_ROWS("SCRAM-SHA-256-PLUS", "tls-unique"),
    PLUS_ROWS("SCRAM-SHA-1-PLUS", "tls-exporter"),
    PLUS_ROWS("SCRAM-SHA-1-PLUS", "tls-unique"),
#undef PLUS_ROWS
    /* A client that could bind, using plain SCRAM, says "y": fine with a
     * server that has no binding (offered no -PLUS), refused by one that
     * has (the downgrade check).  Our client against gsasl's server only:
     * gsasl 2.2.0's client, given binding data for a plain SCRAM
     * mechanism, fails its first step with GSASL_AUTHENTICATION_ERROR
     * instead of sending "y" (tried with both properties). */
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT, .cb_type = "tls-exporter",
     .no_server_cb = 1, .extra = "y, server without -PLUS", .want = GSASL_OK},
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT, .cb_type = "tls-unique",
     .no_server_cb = 1, .extra = "y, server without -PLUS", .want = GSASL_OK},
    {.mech = "SCRAM-SHA-256", .dir = OUR_CLIENT, .cb_type = "tls-unique",
     .extra = "y, server with -PLUS: downgrade",
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT, .cb_type = "tls-exporter",
     .extra = "y, server with -PLUS: downgrade",
     .want = GSASL_AUTHENTICATION_ERROR},
    /* A client without binding says "n": fine even where -PLUS was
     * offered. */
    {.mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT,
     .cb_type = "tls-exporter", .no_client_cb = 1,
     .extra = "n, server with -PLUS", .want = PST_SASL_DONE},
    {.mech = "SCRAM-SHA-1", .dir = OUR_CLIENT, .cb_type = "tls-unique",
     .no_client_cb = 1, .extra = "n, server with -PLUS", .want = GSASL_OK},

    /* EXTERNAL (RFC 4422 App. A): the TLS client certificate maps to
     * USER (our server: external_id; gsasl's: GSASL_VALIDATE_EXTERNAL
     * accepts an empty authzid or USER). */
    {.mech = "EXTERNAL", .dir = OUR_CLIENT, .want = GSASL_OK},
    {.mech = "EXTERNAL", .dir = OUR_CLIENT, .no_ir = 1, .want = GSASL_OK},
    {.mech = "EXTERNAL", .dir = OUR_CLIENT, .extra = "authzid equal to user",
     .authzid = USER, .want = GSASL_OK},
    {.mech = "EXTERNAL", .dir = OUR_CLIENT, .extra = "another authzid",
     .authzid = "Ursel", .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "EXTERNAL", .dir = OUR_CLIENT, .extra = "no certificate",
     .no_cert = 1, .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "EXTERNAL", .dir = GSASL_CLIENT, .want = PST_SASL_DONE},
    {.mech = "EXTERNAL", .dir = GSASL_CLIENT, .no_ir = 1,
     .want = PST_SASL_DONE},
    {.mech = "EXTERNAL", .dir = GSASL_CLIENT,
     .extra = "authzid equal to user", .authzid = USER,
     .authzid_is_none = 1, .want = PST_SASL_DONE},
    {.mech = "EXTERNAL", .dir = GSASL_CLIENT, .extra = "another authzid",
     .authzid = "Ursel", .want = PST_EAUTH},
    {.mech = "EXTERNAL", .dir = GSASL_CLIENT, .extra = "no certificate",
     .no_cert = 1, .want = PST_EAUTH},

    /* DIGEST-MD5 integrity layer both ways, and what is chosen when the
     * other side allows only auth. */
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT, .extra = "qop auth-int",
     .qop_int = 1, .want = GSASL_OK},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT, .extra = "qop auth-int",
     .qop_int = 1, .want = PST_SASL_DONE},
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT, .wrong = 1,
     .extra = "qop auth-int", .qop_int = 1,
     .want = GSASL_AUTHENTICATION_ERROR},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT, .wrong = 1,
     .extra = "qop auth-int", .qop_int = 1, .want = PST_EAUTH},
    {.mech = "DIGEST-MD5", .dir = OUR_CLIENT,
     .extra = "qop auth-int, gsasl server offers auth", .qop_int = 1,
     .gsasl_auth_only = 1, .want = GSASL_OK},
    {.mech = "DIGEST-MD5", .dir = GSASL_CLIENT,
     .extra = "qop auth-int offered, gsasl client takes auth", .qop_int = 1,
     .gsasl_auth_only = 1, .want = PST_SASL_DONE},
};

/* The binding data of "this" TLS connection and of another one. */
static const uint8_t cb_data[32] = {
    0x3f, 0x9a, 0x11, 0xc0, 0x7e, 0x52, 0x08, 0xd4, 0xa1, 0x6b, 0xee,
    0x29, 0x90, 0x4c, 0x03, 0xb7, 0x5d, 0xf2, 0x18, 0x86, 0xc9, 0x34,
    0x6e, 0x01, 0xfa, 0x47, 0xbd, 0x22, 0x95, 0x70, 0x0c, 0xe3,
};
static const uint8_t cb_other[32] = {
    0x3e, 0x9a, 0x11, 0xc0, 0x7e, 0x52, 0x08, 0xd4, 0xa1, 0x6b, 0xee,
    0x29, 0x90, 0x4c, 0x03, 0xb7, 0x5d, 0xf2, 0x18, 0x86, 0xc9, 0x34,
    0x6e, 0x01, 0xfa, 0x47, 0xbd, 0x22, 0x95, 0x70, 0x0c, 0xe3,
};

/* tls-unique is a Finished message's verify_data: 12 bytes in TLS 1.2. */
static size_t
row_cb_len(const struct row *row)
{
    return strcmp(row->cb_type, "tls-unique") == 0 ? 12 : 32;
}

/* One message of the exchange, kept for the dump on failure. */
struct msg {
    char who;           /* 'C' client, 'S' server */
    const char *what;   /* "AUTH initial response", "334", ... */
    uint8_t *data;      /* copy; NULL with len 0 */
    size_t len;
};

enum verdict {
    V_CHALLENGE = 0, /* "334 <sbuf>" */
    V_SUCCESS,       /* authenticated; sbuf: data sent with success */
    V_FAIL,          /* "535" or another failure reply */
};

enum outcome {
    OUT_SUCCESS = 0, /* "235", the client accepted it or not: see checks */
    OUT_SERVER_FAIL, /* the server refused */
    OUT_CLIENT_FAIL, /* the client gave up ("*") */
    OUT_FRAMING,     /* a message SMTP cannot carry here */
    OUT_ROUNDS,      /* no end after MAX_ROUNDS challenges */
};

struct run {
    const struct row *row;
    char name[192];
    const struct pst_sasl_mech *mech;
    /* Postern's half: */
    struct pst_sasl_client *pc;
    struct pst_sasl_server *ps;
    struct pst_cred *cred;
    struct pst_buf cred_text;   /* secret */
    int our_done;               /* our client's step returned DONE */
    /* GNU SASL's half: */
    Gsasl_session *gs;
    char gsasl_authid[256];     /* authid gsasl's server asked about */
    /* The exchange: */
    struct pst_buf cbuf;        /* client's last message (secret) */
    struct pst_buf sbuf;        /* server's last message */
    int client_rc;              /* client's last step result */
    int server_rc;              /* server's last step result */
    const char *framing;        /* what OUT_FRAMING was about */
    struct msg msgs[MAX_MSGS];
    size_t n_msgs;
};

static Gsasl *gsasl_ctx;

/* --- Names and failure reports ------------------------------------------- */

static const char *
row_user(const struct row *row)
{
    return row->user != NULL ? row->user : USER;
}

static const char *
row_password(const struct row *row)
{
    return row->password != NULL ? row->password : PASSWORD;
}

/* The password the client types. */
static const char *
row_typed(const struct row *row)
{
    if (row->wrong)
        return WRONG_PW;
    return row->typed != NULL ? row->typed : row_password(row);
}

static int
row_server_is_ours(const struct row *row)
{
    return row->dir == GSASL_CLIENT;
}

static void
row_name(const struct row *row, char *buf, size_t n)
{
    snprintf(buf, n, "%s %s %s password%s%s%s", row->mech,
             row->dir == OUR_CLIENT ? "postern-client->gsasl-server"
                                    : "gsasl-client->postern-server",
             row->wrong ? "wrong" : "right", row->extra != NULL ? " (" : "",
             row->extra != NULL ? row->extra : "",
             row->extra != NULL ? ")" : "");
}

/* A result code of postern (ours != 0) or of gsasl, by name. */
static const char *
code_name(int ours, int rc)
{
    if (!ours)
        return gsasl_strerror_name(rc) != NULL ? gsasl_strerror_name(rc)
                                               : "GSASL_(unknown)";
    switch (rc) {
    case PST_SASL_DONE:
        return "DONE";
    case PST_SASL_CONTINUE:
        return "CONTINUE";
    case PST_SASL_NEED_CRED:
        return "NEED_CRED";
    case PST_SASL_NEED_VERIFY:
        return "NEED_VERIFY";
    default:
        return pst_errname(rc);
    }
}

static void
dump_bytes(const uint8_t *p, size_t len)
{
    for (size_t off = 0; off < len; off += 16) {
        char hex[16 * 3 + 1], txt[17];
        size_t i, n = len - off < 16 ? len - off : 16;

        for (i = 0; i < 16; i++) {
            if (i < n) {
                snprintf(hex + 3 * i, 4, "%02x ", p[off + i]);
                txt[i] = p[off + i] >= 0x20 && p[off + i] < 0x7f
                             ? (char)p[off + i]
                             : '.';
            } else {
                snprintf(hex + 3 * i, 4, "   ");
                txt[i] = '\0';
            }
        }
        txt[n] = '\0';
        print_error("      %04zx  %s |%s|\n", off, hex, txt);
    }
}

static void
dump_exchange(const struct run *r)
{
    print_error("  exchange (%zu messages):\n", r->n_msgs);
    for (size_t i = 0; i < r->n_msgs; i++) {
        const struct msg *m = &r->msgs[i];

        print_error("    %c: %s (%zu bytes)\n", m->who, m->what, m->len);
        dump_bytes(m->data, m->len);
    }
    if (r->ps != NULL && pst_sasl_server_reason(r->ps)[0] != '\0')
        print_error("  postern server's reason: %s\n",
                    pst_sasl_server_reason(r->ps));
    if (r->gsasl_authid[0] != '\0')
        print_error("  gsasl server looked up authid \"%s\"\n",
                    r->gsasl_authid);
}

/* Fail the row: "<row name>: <message>", then the exchange. */
static void run_fail(const struct run *r, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
run_fail(const struct run *r, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    print_error("%s: %s\n", r->name, msg);
    dump_exchange(r);
    _fail(__FILE__, line);
}

#define RUN_FAIL(r, ...) run_fail((r), __LINE__, __VA_ARGS__)

static void
record(struct run *r, char who, const char *what, const struct pst_buf *b)
{
    struct msg *m;

    if (r->n_msgs == MAX_MSGS)
        return;
    m = &r->msgs[r->n_msgs++];
    m->who = who;
    m->what = what;
    m->len = b != NULL ? b->len : 0;
    m->data = NULL;
    if (m->len > 0) {
        m->data = malloc(m->len);
        assert_non_null(m->data);
        memcpy(m->data, b->data, m->len);
    }
}

/* The bytes of b, never NULL (an empty message is still a message). */
static const uint8_t *
bytes(const struct pst_buf *b)
{
    return b->data != NULL ? b->data : (const uint8_t *)"";
}

/* --- GNU SASL's callback ------------------------------------------------- */

/* Set a channel-binding property: gsasl takes it in base64. */
static int
interop_set_cb(Gsasl_session *sess, Gsasl_property prop, const uint8_t *p,
               size_t len)
{
    char *b64 = NULL;
    int rc = gsasl_base64_to((const char *)p, len, &b64, NULL);

    if (rc == GSASL_OK)
        rc = gsasl_property_set(sess, prop, b64);
    gsasl_free(b64);
    return rc;
}

/* Properties for whichever half gsasl plays in this row.  Channel-binding
 * data (GSASL_CB_TLS_UNIQUE, GSASL_CB_TLS_EXPORTER) only for the rows that
 * bind: with it, gsasl's SCRAM client sends "p=" for -PLUS and "y" for the
 * plain mechanisms. */
static int
interop_callback(Gsasl *ctx, Gsasl_session *sess, Gsasl_property prop)
{
    struct run *r = gsasl_session_hook_get(sess);
    const struct row *row;
    const char *v = NULL;

    (void)ctx;
    if (r == NULL)
        return GSASL_NO_CALLBACK;
    row = r->row;
    if (row->dir == GSASL_CLIENT) {
        switch (prop) {
        case GSASL_AUTHID:
            v = row_user(row);
            break;
        case GSASL_AUTHZID:
            v = row->authzid;
            break;
        case GSASL_PASSWORD:
            v = row_typed(row);
            break;
        case GSASL_SERVICE:
            v = row->client_service != NULL ? row->client_service : "smtp";
            break;
        case GSASL_HOSTNAME:
            v = row->client_host != NULL ? row->client_host : HOSTNAME;
            break;
        case GSASL_QOP:
            if (row->qop_int && !row->gsasl_auth_only)
                v = "qop-int";
            break;
        case GSASL_CB_TLS_EXPORTER:
        case GSASL_CB_TLS_UNIQUE:
            if (row->cb_type == NULL || row->no_client_cb ||
                (prop == GSASL_CB_TLS_EXPORTER) !=
                    (strcmp(row->cb_type, "tls-exporter") == 0))
                break;
            return interop_set_cb(sess, prop, cb_data, row_cb_len(row));
        default:
            break; /* realm from the challenge, qop "auth" */
        }
    } else {
        const char *authid = gsasl_property_fast(sess, GSASL_AUTHID);
        const char *pw = gsasl_property_fast(sess, GSASL_PASSWORD);

        switch (prop) {
        case GSASL_PASSWORD:
            /* The stored password of the user the client named; any
             * other name is an unknown user. */
            snprintf(r->gsasl_authid, sizeof(r->gsasl_authid), "%s",
                     authid != NULL ? authid : "(null)");
            if (authid != NULL && strcmp(authid, row_user(row)) == 0)
                v = row_password(row);
            break;
        case GSASL_VALIDATE_SIMPLE:
            /* PLAIN and LOGIN. */
            snprintf(r->gsasl_authid, sizeof(r->gsasl_authid), "%s",
                     authid != NULL ? authid : "(null)");
            if (authid != NULL && pw != NULL &&
                strcmp(authid, row_user(row)) == 0 &&
                strcmp(pw, row_password(row)) == 0)
                return GSASL_OK;
            return GSASL_AUTHENTICATION_ERROR;
        case GSASL_VALIDATE_EXTERNAL: {
            /* The certificate names USER (none: no_cert). */
            const char *z = gsasl_property_fast(sess, GSASL_AUTHZID);

            if (row->no_cert)
                return GSASL_AUTHENTICATION_ERROR;
            return z == NULL || z[0] == '\0' || strcmp(z, USER) == 0
                       ? GSASL_OK
                       : GSASL_AUTHENTICATION_ERROR;
        }
        case GSASL_REALM:
            v = HOSTNAME;
            break;
        case GSASL_SERVICE:
            v = "smtp";
            break;
        case GSASL_HOSTNAME:
            v = HOSTNAME;
            break;
        case GSASL_QOPS:
            if (row->qop_int)
                v = row->gsasl_auth_only ? "qop-auth" : "qop-auth,qop-int";
            break;
        case GSASL_CB_TLS_EXPORTER:
        case GSASL_CB_TLS_UNIQUE:
            if (row->cb_type == NULL || row->no_server_cb ||
                (prop == GSASL_CB_TLS_EXPORTER) !=
                    (strcmp(row->cb_type, "tls-exporter") == 0))
                break;
            return interop_set_cb(sess, prop,
                                  row->mitm ? cb_other : cb_data,
                                  row_cb_len(row));
        default:
            break; /* default qops, SCRAM salt and iterations */
        }
    }
    if (v == NULL)
        return GSASL_NO_CALLBACK;
    return gsasl_property_set(sess, prop, v);
}

/* --- The two halves of each side ----------------------------------------- */

/* Build Dovecot's stored form of SCRAM keys made by gsasl:
 * {SCRAM-SHA-x}<iter>,<salt b64>,<StoredKey b64>,<ServerKey b64>. */
static void
gsasl_scram_cred(const char *mech, const char *password, const char *salt,
                 struct pst_buf *text)
{
    Gsasl_hash h = strcmp(mech, "SCRAM-SHA-1") == 0 ? GSASL_HASH_SHA1
                                                    : GSASL_HASH_SHA256;
    size_t n = gsasl_hash_length(h), salt_len = 0;
    char salted[GSASL_HASH_MAX_SIZE], ck[GSASL_HASH_MAX_SIZE];
    char sk[GSASL_HASH_MAX_SIZE], stored[GSASL_HASH_MAX_SIZE];
    char *raw = NULL, *b_salt = NULL, *b_stored = NULL, *b_server = NULL;

    assert_int_equal(gsasl_base64_from(salt, strlen(salt), &raw, &salt_len),
                     GSASL_OK);
    assert_int_equal(gsasl_scram_secrets_from_password(
                         h, password, SCRAM_ITERATIONS, raw, salt_len,
                         salted, ck, sk, stored),
                     GSASL_OK);
    assert_int_equal(gsasl_base64_to(raw, salt_len, &b_salt, NULL),
                     GSASL_OK);
    assert_int_equal(gsasl_base64_to(stored, n, &b_stored, NULL), GSASL_OK);
    assert_int_equal(gsasl_base64_to(sk, n, &b_server, NULL), GSASL_OK);
    assert_rc(pst_buf_printf(text, "{%s}%u,%s,%s,%s", mech, SCRAM_ITERATIONS,
                             b_salt, b_stored, b_server),
              0);
    gsasl_free(raw);
    gsasl_free(b_salt);
    gsasl_free(b_stored);
    gsasl_free(b_server);
}

/* Create both halves of the row's exchange. */
static void
run_start(struct run *r)
{
    const struct row *row = r->row;
    int rc;

    r->mech = pst_sasl_mech_find(row->mech, strlen(row->mech));
    if (r->mech == NULL)
        RUN_FAIL(r, "postern has no mechanism %s", row->mech);
    if (row->dir == OUR_CLIENT) {
        struct pst_sasl_client_config ccfg = {
            .authcid = row_user(row),
            .authzid = row->authzid,
            .password = (const uint8_t *)row_typed(row),
            .password_len = strlen(row_typed(row)),
            .host = HOSTNAME,
        };

        if (row->qop_int)
            ccfg.digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT;
        if (row->cb_type != NULL && !row->no_client_cb) {
            ccfg.cb_type = row->cb_type;
            ccfg.cb_data = cb_data;
            ccfg.cb_len = row_cb_len(row);
        }

        rc = pst_sasl_client_new(r->mech, &ccfg, &r->pc);
        if (rc != 0)
            RUN_FAIL(r, "pst_sasl_client_new: got %s, want 0",
                     code_name(1, rc));
        rc = gsasl_server_start(gsasl_ctx, row->mech, &r->gs);
        if (rc != GSASL_OK)
            RUN_FAIL(r, "gsasl_server_start: got %s, want GSASL_OK",
                     code_name(0, rc));
    } else {
        struct pst_sasl_server_config scfg = {
            .hostname = HOSTNAME,
            .uri_hosts = row->uri_hosts ? uri_hosts : NULL,
            .timestamp = 1700000000,
        };

        if (row->cb_type != NULL && !row->no_server_cb) {
            scfg.cb_type = row->cb_type;
            scfg.cb_data = row->mitm ? cb_other : cb_data;
            scfg.cb_len = row_cb_len(row);
            scfg.cb_plus_offered = 1;
        }
        if (!row->no_cert)
            scfg.external_id = row_user(row);
        if (row->qop_int)
            scfg.digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT;

        if (row->cred == CRED_GSASL_SCRAM)
            gsasl_scram_cred(row->mech, row_password(row), row->salt,
                             &r->cred_text);
        else
            assert_rc(pst_buf_printf(&r->cred_text, "{PLAIN}%s",
                                     row_password(row)),
                      0);
        rc = pst_cred_parse((const char *)r->cred_text.data,
                            r->cred_text.len, &r->cred);
        if (rc != 0)
            RUN_FAIL(r, "pst_cred_parse(\"%s\"): got %s, want 0",
                     (const char *)r->cred_text.data, code_name(1, rc));
        rc = pst_sasl_server_new(r->mech, &scfg, &r->ps);
        if (rc != 0)
            RUN_FAIL(r, "pst_sasl_server_new: got %s, want 0",
                     code_name(1, rc));
        rc = gsasl_client_start(gsasl_ctx, row->mech, &r->gs);
        if (rc != GSASL_OK)
            RUN_FAIL(r, "gsasl_client_start: got %s, want GSASL_OK",
                     code_name(0, rc));
    }
    gsasl_session_hook_set(r->gs, r);
}

/* Step gsasl with in (NULL: nothing) into b.  Returns gsasl's code. */
static int
gsasl_step_into(struct run *r, const uint8_t *in, size_t len,
                struct pst_buf *b)
{
    char *o = NULL;
    size_t olen = 0;
    int rc = gsasl_step(r->gs, (const char *)in, len, &o, &olen);

    pst_buf_reset(b);
    if ((rc == GSASL_OK || rc == GSASL_NEEDS_MORE) && olen > 0)
        assert_rc(pst_buf_append(b, o, olen), 0);
    if (o != NULL) {
        OPENSSL_cleanse(o, olen);
        gsasl_free(o);
    }
    return rc;
}

/*
 * The client's next message into r->cbuf: the initial response when
 * in == NULL, else the answer to challenge in.
 * Returns: 0, or -1 when the client gives up (it would send "*").
 */
static int
client_step(struct run *r, const uint8_t *in, size_t len)
{
    int rc;

    if (r->row->dir == OUR_CLIENT) {
        rc = pst_sasl_client_step(r->pc, in, len, &r->cbuf);
        r->client_rc = rc;
        if (rc == PST_SASL_DONE)
            r->our_done = 1;
        return rc < 0 ? -1 : 0;
    }
    rc = gsasl_step_into(r, in, len, &r->cbuf);
    r->client_rc = rc;
    return rc == GSASL_OK || rc == GSASL_NEEDS_MORE ? 0 : -1;
}

/* Answer our server's NEED_CRED and NEED_VERIFY the way the daemon does
 * (as testutil's test_run_exchange does), then report its verdict. */
static enum verdict
our_server_step(struct run *r, const uint8_t *in, size_t len)
{
    int rc = pst_sasl_server_step(r->ps, in, len, &r->sbuf);

    for (int guard = 0; guard < 4; guard++) {
        if (rc == PST_SASL_NEED_CRED) {
            assert_rc(pst_sasl_server_set_cred(r->ps, r->cred), 0);
        } else if (rc == PST_SASL_NEED_VERIFY) {
            size_t pwlen;
            const uint8_t *pw = pst_sasl_server_password(r->ps, &pwlen);

            assert_non_null(pw);
            assert_rc(pst_sasl_server_verified(
                          r->ps, pst_cred_verify(r->cred,
                                                 pst_sasl_server_authcid(r->ps),
                                                 pw, pwlen) == 0),
                      0);
        } else {
            break;
        }
        rc = pst_sasl_server_step(r->ps, NULL, 0, &r->sbuf);
    }
    r->server_rc = rc;
    if (rc == PST_SASL_CONTINUE)
        return V_CHALLENGE;
    if (rc == PST_SASL_DONE)
        return V_SUCCESS;
    return V_FAIL;
}

/* The server's answer to in (NULL: AUTH without an initial response). */
static enum verdict
server_step(struct run *r, const uint8_t *in, size_t len)
{
    int rc;

    if (r->row->dir == GSASL_CLIENT)
        return our_server_step(r, in, len);
    rc = gsasl_step_into(r, in, len, &r->sbuf);
    r->server_rc = rc;
    if (rc == GSASL_NEEDS_MORE)
        return V_CHALLENGE;
    if (rc == GSASL_OK)
        return V_SUCCESS;
    return V_FAIL;
}

/* --- The SMTP framing ---------------------------------------------------- */

static enum outcome
run_exchange(struct run *r)
{
    unsigned flags = pst_sasl_mech_flags(r->mech);
    int client_first = (flags & PST_MECH_CLIENT_FIRST) != 0;
    int has_ir = 0;
    enum verdict v;

    /* RFC 4954 §4: "AUTH mechanism [initial-response]".  The client is
     * asked for an initial response unless the row omits it; for a
     * server-first mechanism it must have none (an IR there gets 501). */
    if (!client_first || !r->row->no_ir) {
        if (client_step(r, NULL, 0) < 0) {
            record(r, 'C', "* (gave up before AUTH)", NULL);
            return OUT_CLIENT_FAIL;
        }
        if (client_first) {
            has_ir = 1;
            record(r, 'C', "AUTH with initial response", &r->cbuf);
        } else if (r->cbuf.len > 0) {
            record(r, 'C', "AUTH with initial response", &r->cbuf);
            r->framing = "the client of a server-first mechanism sent an "
                         "initial response";
            return OUT_FRAMING;
        } else {
            record(r, 'C', "AUTH without initial response", NULL);
        }
    } else {
        record(r, 'C', "AUTH without initial response", NULL);
    }
    v = server_step(r, has_ir ? bytes(&r->cbuf) : NULL,
                    has_ir ? r->cbuf.len : 0);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        if (v == V_FAIL) {
            record(r, 'S', "failure reply", NULL);
            return OUT_SERVER_FAIL;
        }
        if (v == V_SUCCESS && r->sbuf.len == 0) {
            record(r, 'S', "235", NULL);
            return OUT_SUCCESS;
        }
        record(r, 'S', v == V_SUCCESS ? "334 (data sent with success)"
                                      : "334",
               &r->sbuf);
        if (client_step(r, bytes(&r->sbuf), r->sbuf.len) < 0) {
            record(r, 'C', "* (client gave up)", NULL);
            return OUT_CLIENT_FAIL;
        }
        record(r, 'C', "response", &r->cbuf);
        if (v == V_SUCCESS) {
            /* The server is done: after the client's (empty) answer it
             * says 235 without stepping again.  (gsasl's servers answer a
             * further step with GSASL_MECHANISM_CALLED_TOO_MANY_TIMES.) */
            if (r->cbuf.len > 0) {
                r->framing = "the client answered the data sent with "
                             "success with a non-empty response";
                return OUT_FRAMING;
            }
            record(r, 'S', "235", NULL);
            return OUT_SUCCESS;
        }
        v = server_step(r, bytes(&r->cbuf), r->cbuf.len);
    }
    return OUT_ROUNDS;
}

/* --- Checks --------------------------------------------------------------- */

static const char *
outcome_text(const struct run *r, enum outcome out, char *buf, size_t n)
{
    int ours_s = row_server_is_ours(r->row);

    switch (out) {
    case OUT_SUCCESS:
        return "success";
    case OUT_SERVER_FAIL:
        return code_name(ours_s, r->server_rc);
    case OUT_CLIENT_FAIL:
        snprintf(buf, n, "the client gave up with %s",
                 code_name(!ours_s, r->client_rc));
        return buf;
    case OUT_FRAMING:
        return r->framing;
    case OUT_ROUNDS:
        snprintf(buf, n, "no end after %d challenges", MAX_ROUNDS);
        return buf;
    }
    return "?";
}

static void
check_identities(const struct run *r)
{
    const struct row *row = r->row;
    const char *want_z = row->authzid_is_none ? NULL : row->authzid;
    const char *cid, *zid;

    if (row->dir == GSASL_CLIENT) {
        cid = pst_sasl_server_authcid(r->ps);
        zid = pst_sasl_server_authzid(r->ps);
    } else {
        cid = gsasl_property_fast(r->gs, GSASL_AUTHID);
        zid = gsasl_property_fast(r->gs, GSASL_AUTHZID);
        /* EXTERNAL names no user: the certificate does. */
        if (strcmp(row->mech, "EXTERNAL") == 0)
            cid = row_user(row);
        if (zid != NULL && zid[0] == '\0')
            zid = NULL;
        /* gsasl's PLAIN server (lib/plain/server.c) stores "if absent,
         * use SASLprep(authcid)" as the authzid: no proxying either way. */
        if (want_z == NULL && zid != NULL && cid != NULL &&
            strcmp(zid, cid) == 0)
            zid = NULL;
    }
    if (cid == NULL || strcmp(cid, row_user(row)) != 0)
        RUN_FAIL(r, "server's authcid: got \"%s\", want \"%s\"",
                 cid != NULL ? cid : "(null)", row_user(row));
    if ((zid == NULL) != (want_z == NULL) ||
        (zid != NULL && strcmp(zid, want_z) != 0))
        RUN_FAIL(r, "server's authzid: got \"%s\", want \"%s\"",
                 zid != NULL ? zid : "(null)",
                 want_z != NULL ? want_z : "(null)");
}

/*
 * After a DIGEST-MD5 success with auth-int allowed: our layer against
 * gsasl's gsasl_encode/gsasl_decode, three messages each way (sequence
 * numbers 0, 1, 2), then a buffer with one MAC bit flipped each way, which
 * each side must refuse.
 */
static void
check_layer(struct run *r)
{
    static const char *const msgs[] = {"EHLO client.example\r\n", "",
                                       "MAIL FROM:<tim@example.test>\r\n"};
    struct pst_sasl_layer *l = NULL;
    struct pst_buf wire, got;
    size_t used;
    int rc;

    rc = r->row->dir == OUR_CLIENT ? pst_sasl_client_layer(r->pc, &l)
                                   : pst_sasl_server_layer(r->ps, &l);
    if (rc != 0)
        RUN_FAIL(r, "taking our layer: got %s, want 0", code_name(1, rc));
    if (r->row->gsasl_auth_only) {
        /* gsasl allowed auth only: no layer on either side. */
        if (l != NULL)
            RUN_FAIL(r, "a layer, though gsasl allowed qop auth only");
        return;
    }
    if (l == NULL || pst_sasl_layer_qop(l) != PST_SASL_QOP_AUTH_INT)
        RUN_FAIL(r, "no auth-int layer");
    pst_buf_init(&wire, 1 << 16, 0);
    pst_buf_init(&got, 1 << 16, 0);
    for (size_t i = 0; i < ARRAY_LEN(msgs); i++) {
        char *out = NULL;
        size_t out_len = 0;

        /* Ours -> gsasl. */
        pst_buf_reset(&wire);
        assert_rc(pst_sasl_layer_wrap(l, (const uint8_t *)msgs[i],
                                      strlen(msgs[i]), &wire),
                  0);
        rc = gsasl_decode(r->gs, (const char *)wire.data, wire.len, &out,
                          &out_len);
        if (rc != GSASL_OK || out_len != strlen(msgs[i]) ||
            memcmp(out, msgs[i], out_len) != 0)
            RUN_FAIL(r, "gsasl_decode of our buffer %zu: %s", i,
                     code_name(0, rc));
        gsasl_free(out);
        /* gsasl -> ours. */
        rc = gsasl_encode(r->gs, msgs[i], strlen(msgs[i]), &out, &out_len);
        if (rc != GSASL_OK)
            RUN_FAIL(r, "gsasl_encode %zu: %s", i, code_name(0, rc));
        pst_buf_reset(&got);
        rc = pst_sasl_layer_unwrap(l, (const uint8_t *)out, out_len, &used,
                                   &got);
        if (rc != 1 || used != out_len || got.len != strlen(msgs[i]) ||
            (got.len > 0 && memcmp(got.data, msgs[i], got.len) != 0))
            RUN_FAIL(r, "our unwrap of gsasl's buffer %zu: %s", i,
                     code_name(1, rc));
        gsasl_free(out);
    }
    /* A flipped MAC bit, each way. */
    {
        char *out = NULL;
        size_t out_len = 0;

        pst_buf_reset(&wire);
        assert_rc(pst_sasl_layer_wrap(l, (const uint8_t *)"x", 1, &wire), 0);
        wire.data[4 + 1] ^= 0x01;
        rc = gsasl_decode(r->gs, (const char *)wire.data, wire.len, &out,
                          &out_len);
        if (rc != GSASL_INTEGRITY_ERROR)
            RUN_FAIL(r, "gsasl_decode of a forged buffer: %s, want "
                     "GSASL_INTEGRITY_ERROR", code_name(0, rc));
        gsasl_free(out);
        out = NULL;
        assert_int_equal(gsasl_encode(r->gs, "y", 1, &out, &out_len),
                         GSASL_OK);
        out[4 + 1 + 3] ^= 0x10;
        pst_buf_reset(&got);
        rc = pst_sasl_layer_unwrap(l, (const uint8_t *)out, out_len, &used,
                                   &got);
        if (rc != PST_EFORGED)
            RUN_FAIL(r, "our unwrap of a forged buffer: %s, want EFORGED",
                     code_name(1, rc));
        gsasl_free(out);
    }
    pst_sasl_layer_free(l);
    pst_buf_clear(&wire);
    pst_buf_clear(&got);
}

static void
check_outcome(struct run *r, enum outcome out)
{
    const struct row *row = r->row;
    int ours_s = row_server_is_ours(row);
    char buf[128];

    if (row->want == 0) {
        if (out != OUT_SUCCESS)
            RUN_FAIL(r, "got %s, want %s", outcome_text(r, out, buf,
                                                        sizeof(buf)),
                     code_name(ours_s, 0));
        /* The client accepts the success: our client's proof check
         * (pst_sasl_client_finish), gsasl's last step GSASL_OK. */
        if (row->dir == OUR_CLIENT) {
            int rc = pst_sasl_client_finish(r->pc);

            if (r->client_rc < 0 || rc != 0)
                RUN_FAIL(r, "postern client at the end: step %s, "
                         "finish %s, want finish 0",
                         code_name(1, r->client_rc), code_name(1, rc));
        } else if (r->client_rc != GSASL_OK) {
            RUN_FAIL(r, "gsasl client's last step: got %s, want GSASL_OK",
                     code_name(0, r->client_rc));
        }
        check_identities(r);
        if (row->qop_int)
            check_layer(r);
        return;
    }
    if (out != OUT_SERVER_FAIL || r->server_rc != row->want)
        RUN_FAIL(r, "got %s, want %s",
                 outcome_text(r, out, buf, sizeof(buf)),
                 code_name(ours_s, row->want));
    /* The client must never have believed it was in. */
    if (row->dir == OUR_CLIENT && r->our_done)
        RUN_FAIL(r, "postern client returned DONE, but the server refused");
    if (row->dir == GSASL_CLIENT &&
        (pst_sasl_mech_flags(r->mech) & PST_MECH_SERVER_PROOF) &&
        r->client_rc == GSASL_OK)
        RUN_FAIL(r, "gsasl client accepted a server proof, but the server "
                 "refused");
}

/* --- cmocka glue --------------------------------------------------------- */

static char row_names[ARRAY_LEN(rows)][192];

static struct run *
run_new(const struct row *row)
{
    struct run *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->row = row;
    row_name(row, r->name, sizeof(r->name));
    pst_buf_init(&r->cbuf, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&r->sbuf, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&r->cred_text, 1024, 1);
    return r;
}

static void
run_free(struct run *r)
{
    if (r == NULL)
        return;
    pst_sasl_client_free(r->pc);
    pst_sasl_server_free(r->ps);
    pst_cred_free(r->cred);
    if (r->gs != NULL)
        gsasl_finish(r->gs);
    pst_buf_clear(&r->cbuf);
    pst_buf_clear(&r->sbuf);
    pst_buf_clear(&r->cred_text);
    for (size_t i = 0; i < r->n_msgs; i++)
        free(r->msgs[i].data);
    free(r);
}

static int
row_setup(void **state)
{
    *state = run_new(*state);
    return *state != NULL ? 0 : -1;
}

static int
row_teardown(void **state)
{
    run_free(*state);
    *state = NULL;
    return 0;
}

static void
test_row(void **state)
{
    struct run *r = *state;

    run_start(r);
    check_outcome(r, run_exchange(r));
}

/*
 * The harness itself: gsasl's keys for the RFC 5802 §5 and RFC 7677 §3
 * salts, in the stored form, equal the keys derived from those RFCs
 * (INTEROP.md), and pst_cred_parse() takes them.
 */
static void
test_gsasl_stored_form(void **state)
{
    static const struct {
        const char *mech, *salt, *want;
    } v[] = {
        {"SCRAM-SHA-1", "QSXCR+Q6sek8bf92",
         "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
         "D+CSWLOshSulAsxiupA+qs2/fTE="},
        {"SCRAM-SHA-256", "W22ZaJ0SNY7soEsUEjb6gQ==",
         "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
         "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        struct pst_buf text;
        struct pst_cred *c = NULL;

        pst_buf_init(&text, 1024, 1);
        gsasl_scram_cred(v[i].mech, "pencil", v[i].salt, &text);
        assert_buf_str(&text, v[i].want);
        assert_rc(pst_cred_parse((const char *)text.data, text.len, &c), 0);
        assert_int_equal(pst_cred_has(c, i == 0 ? PST_SCHEME_SCRAM_SHA1
                                                : PST_SCHEME_SCRAM_SHA256),
                         1);
        pst_cred_free(c);
        pst_buf_clear(&text);
    }
}

/*
 * Our strict base64 against gsasl's, through gsasl_step64: the RFC 4616 §4
 * message from our PLAIN client, encoded by us, is what gsasl encodes and
 * what gsasl's server accepts; gsasl's SCRAM client-first messages with all
 * three padding lengths decode under our strict decoder and re-encode to
 * the same text.
 */
static void
test_base64_with_gsasl(void **state)
{
    static const struct row plain_row = {
        .mech = "PLAIN", .dir = OUR_CLIENT, .user = "Kurt",
        .authzid = "Ursel", .password = "xipj3plmq",
    };
    static const char *const users[] = {"a", "ab", "abc"};
    struct run *r = NULL;
    char *gb64 = NULL, *out = NULL;

    (void)state;
    /* Ours -> gsasl. */
    r = run_new(&plain_row);
    assert_non_null(r);
    run_start(r);
    assert_rc(pst_sasl_client_step(r->pc, NULL, 0, &r->cbuf),
              PST_SASL_CONTINUE);
    {
        struct pst_buf b64;

        pst_buf_init(&b64, 1024, 1);
        assert_rc(pst_base64_encode(r->cbuf.data, r->cbuf.len, &b64), 0);
        assert_buf_str(&b64, "VXJzZWwAS3VydAB4aXBqM3BsbXE=");
        assert_int_equal(gsasl_base64_to((const char *)r->cbuf.data,
                                         r->cbuf.len, &gb64, NULL),
                         GSASL_OK);
        assert_buf_str(&b64, gb64);
        assert_int_equal(gsasl_step64(r->gs, (const char *)b64.data, &out),
                         GSASL_OK);
        assert_string_equal(out, "");
        assert_string_equal(gsasl_property_fast(r->gs, GSASL_AUTHID),
                            "Kurt");
        assert_string_equal(gsasl_property_fast(r->gs, GSASL_AUTHZID),
                            "Ursel");
        pst_buf_clear(&b64);
    }
    gsasl_free(gb64);
    gsasl_free(out);
    run_free(r);

    /* gsasl -> ours, with 0, 2 and 1 padding characters. */
    for (size_t i = 0; i < ARRAY_LEN(users); i++) {
        struct row row = {
            .mech = "SCRAM-SHA-256", .dir = GSASL_CLIENT, .user = users[i],
        };
        struct pst_buf dec, enc;
        char *graw = NULL;
        size_t graw_len = 0;

        r = run_new(&row);
        assert_non_null(r);
        run_start(r);
        assert_int_equal(gsasl_step64(r->gs, "", &out), GSASL_NEEDS_MORE);
        assert_int_equal(strlen(out) % 4, 0);
        pst_buf_init(&dec, 1024, 0);
        pst_buf_init(&enc, 1024, 0);
        assert_rc(pst_base64_decode((const uint8_t *)out, strlen(out), &dec),
                  0);
        assert_int_equal(gsasl_base64_from(out, strlen(out), &graw,
                                           &graw_len),
                         GSASL_OK);
        assert_bytes_equal(dec.data, dec.len, graw, graw_len);
        assert_rc(pst_base64_encode(dec.data, dec.len, &enc), 0);
        assert_buf_str(&enc, out);
        gsasl_free(graw);
        gsasl_free(out);
        out = NULL;
        pst_buf_clear(&dec);
        pst_buf_clear(&enc);
        run_free(r);
    }
}

static int
group_setup(void **state)
{
    (void)state;
    if (gsasl_init(&gsasl_ctx) != GSASL_OK)
        return -1;
    gsasl_callback_set(gsasl_ctx, interop_callback);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    gsasl_done(gsasl_ctx);
    gsasl_ctx = NULL;
    return 0;
}

int
main(void)
{
    static struct CMUnitTest tests[ARRAY_LEN(rows) + 2];
    size_t n = 0;

    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        row_name(&rows[i], row_names[i], sizeof(row_names[i]));
        tests[n++] = (struct CMUnitTest){
            .name = row_names[i],
            .test_func = test_row,
            .setup_func = row_setup,
            .teardown_func = row_teardown,
            .initial_state = (void *)&rows[i],
        };
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_gsasl_stored_form);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_base64_with_gsasl);
    return _cmocka_run_group_tests("gsasl_interop", tests, n, group_setup,
                                   group_teardown);
}
