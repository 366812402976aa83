/*
 * OAuth 2.0 for the relay (DESIGN.md "Routing, relay and the queue"):
 * token requests to an RFC 6749 token endpoint (the Microsoft identity
 * platform v2 shape: form-encoded POST, JSON answers), the device
 * authorization grant (RFC 8628), the authorization code grant with PKCE
 * (RFC 7636) for a loopback redirect (RFC 8252 §7.3), and the token file.
 *
 * Shared by posternd (refreshes, on the thread pool: every call here
 * blocks) and `postern oauth` (login, status).  HTTPS with libcurl
 * (certificate verification always on; https:// URLs only), JSON with
 * json-c.
 *
 * Secrets (refresh and access tokens, the client secret, codes) are held
 * in memory only as long as needed and wiped (OPENSSL_cleanse) before it
 * is released, in our buffers and in json-c's copies; they never appear
 * in an oauth_error.  libcurl's own send buffers are outside our reach.
 *
 * The token file is a JSON object, mode 0600, rewritten atomically (a
 * temporary file, fsync, rename, fsync of the directory) under a lock
 * (flock of PATH.lock), so posternd and `postern oauth login` never write
 * it at once.  Only "refresh_token" is required in it (an administrator
 * may seed it by hand); posternd adds "access_token", "expires_at" (Unix
 * seconds), "scope", "refreshed_at", and after a failed refresh
 * "last_error" (an object: error, aadsts, http, at).  Keys it does not
 * know are kept.
 */
#ifndef POSTERN_COMMON_OAUTH_H
#define POSTERN_COMMON_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#define OAUTH_TOKEN_MAX   16384   /* octets of one token */
#define OAUTH_BODY_MAX    (256u << 10) /* octets of an HTTP answer */
#define OAUTH_FILE_MAX    (256u << 10) /* octets of a token file */

enum oauth_grant {
    OAUTH_GRANT_REFRESH_TOKEN = 0, /* delegated: the refresh token */
    OAUTH_GRANT_CLIENT_CREDENTIALS, /* app-only: the client secret */
};

/* One relay's OAuth settings ([in] strings borrowed for each call). */
struct oauth_client {
    const char *token_url;     /* https://.../oauth2/v2.0/token */
    const char *device_url;    /* RFC 8628 device authorization; or NULL */
    const char *auth_url;      /* authorization endpoint (loopback login);
                                  or NULL */
    enum oauth_grant grant;
    const char *client_id;
    const char *client_secret; /* secret; NULL for a public client */
    const char *scope;         /* space separated; always sent */
    const char *cafile;        /* CA bundle; NULL: the system store */
    unsigned    timeout;       /* seconds one request may take; 0: 30 */
};

/* What came back, or what the token file holds. */
struct oauth_token {
    char   *access_token;      /* owned, secret; NULL: none */
    char   *refresh_token;     /* owned, secret; NULL: none */
    char   *scope;             /* owned; NULL: not given */
    int64_t expires_at;        /* Unix seconds; 0: unknown */
    int64_t refreshed_at;      /* when access_token was issued; 0 */
    /* The last failed refresh, as the file records it: */
    char    last_error[64];    /* OAuth error code, "" if none */
    char    last_aadsts[24];   /* "AADSTS70000", or "" */
    long    last_http;         /* HTTP status, 0 for no answer */
    int64_t last_error_at;     /* 0: none */
    void   *extra;             /* owned: other keys of the file (json-c) */
};

enum oauth_status {
    OAUTH_OK = 0,
    OAUTH_TEMPORARY,           /* no answer, HTTP 5xx or 429,
                                  temporarily_unavailable: try later */
    OAUTH_RELOGIN,             /* invalid_grant: the grant is dead
                                  (revoked, expired, consent withdrawn):
                                  an administrator must log in again */
    OAUTH_REFUSED,             /* another error (invalid_client,
                                  invalid_scope, ...): fix the settings */
    OAUTH_PENDING,             /* device flow: not approved yet */
    OAUTH_SLOW_DOWN,           /* device flow: poll 5 s slower */
    OAUTH_DECLINED,            /* device flow: the user said no */
    OAUTH_EXPIRED,             /* device flow: the code expired */
};

/* Why a request failed: safe to log (no secret in it). */
struct oauth_error {
    long http;                 /* HTTP status, 0 when there was none */
    char error[64];            /* the OAuth error code, or "" */
    char aadsts[24];           /* Microsoft's "AADSTS70000", or "" */
    char detail[256];          /* a transport error (curl), or a
                                  malformed answer; else "" */
};

/* RFC 8628 §3.2: what the device authorization endpoint said. */
struct oauth_device {
    char    *device_code;      /* owned, secret */
    char    *user_code;        /* owned */
    char    *verification_uri; /* owned */
    char    *message;          /* owned, Microsoft's; or NULL */
    unsigned expires_in;       /* seconds */
    unsigned interval;         /* seconds between polls (default 5) */
};

/* The name of a status, for logs and messages ("relogin", ...). */
const char *oauth_status_name(enum oauth_status st);

/*
 * Ask the token endpoint for a new access token: grant_type
 * refresh_token with refresh_token ([in], secret; required for that
 * grant), or client_credentials with the client secret.  scope is always
 * sent (Microsoft refuses a refresh without it: AADSTS900144).  On
 * OAUTH_OK, *out ([out] owned, oauth_token_clear()) has the new access
 * token, its expiry (now + expires_in), the scope, and the refresh token
 * the answer carried (Microsoft rotates it: store it) or else NULL.  now
 * is the current time (Unix seconds).
 * Returns: an oauth_status; err ([out]) says why when not OAUTH_OK.
 */
enum oauth_status oauth_token_request(const struct oauth_client *c,
                                      const char *refresh_token,
                                      int64_t now, struct oauth_token *out,
                                      struct oauth_error *err);

/*
 * RFC 8628 §3.1: start a device login.  *d ([out] owned,
 * oauth_device_clear()).
 * Returns: OAUTH_OK, OAUTH_TEMPORARY, OAUTH_REFUSED.
 */
enum oauth_status oauth_device_begin(const struct oauth_client *c,
                                     struct oauth_device *d,
                                     struct oauth_error *err);

/*
 * RFC 8628 §3.4: poll once for the device login's tokens.
 * Returns: OAUTH_OK (*out filled), OAUTH_PENDING, OAUTH_SLOW_DOWN,
 * OAUTH_DECLINED, OAUTH_EXPIRED, OAUTH_TEMPORARY, OAUTH_REFUSED.
 */
enum oauth_status oauth_device_poll(const struct oauth_client *c,
                                    const struct oauth_device *d, int64_t now,
                                    struct oauth_token *out,
                                    struct oauth_error *err);

/*
 * The authorization code grant with PKCE (RFC 7636 §4.5): exchange code
 * ([in], secret) got at redirect_uri for tokens, proving verifier.
 * Returns: as oauth_token_request().
 */
enum oauth_status oauth_code_exchange(const struct oauth_client *c,
                                      const char *code,
                                      const char *redirect_uri,
                                      const char *verifier, int64_t now,
                                      struct oauth_token *out,
                                      struct oauth_error *err);

/*
 * PKCE (RFC 7636 §4.1, §4.2): a new random code verifier (43 octets of
 * base64url) in verifier, and its S256 challenge in challenge.
 * Returns: 0, or -1 when no random bytes could be had.
 */
int oauth_pkce(char verifier[64], char challenge[64]);

/* The S256 challenge of verifier ([in]).  Returns: 0, -1. */
int oauth_pkce_challenge(const char *verifier, char challenge[64]);

/*
 * The authorization URL for a loopback login: auth_url with
 * response_type=code, client_id, redirect_uri, scope, state,
 * code_challenge (S256), access_type=offline and prompt=consent (without
 * which Google may answer with no refresh token).  Returns a new string
 * (free()), or NULL when out of memory.
 */
char *oauth_authorize_url(const struct oauth_client *c,
                          const char *redirect_uri, const char *state,
                          const char *challenge);

/*
 * Read the token file at path into *t ([out] owned; oauth_token_clear()).
 * A missing file is not an error: *t stays empty and *exists is 0.
 * Returns: 0, -1 (err, err_size: unreadable, not a JSON object, or a
 * value of the wrong type).
 */
int oauth_token_load(const char *path, struct oauth_token *t, int *exists,
                     char *err, size_t err_size);

/*
 * Write *t to the token file at path atomically (see above; mode 0600),
 * keeping t->extra's other keys.
 * Returns: 0, -1 (err says why).
 */
int oauth_token_save(const char *path, const struct oauth_token *t,
                     char *err, size_t err_size);

/*
 * Take what a successful answer fresh ([in], consumed: emptied) brought
 * into cur: the access token, expiry, scope, and the refresh token if it
 * carried one (else cur's stays); the last error is cleared.
 */
void oauth_token_update(struct oauth_token *cur, struct oauth_token *fresh);

/* Record a failed refresh in t (the file's last_error). */
void oauth_token_set_error(struct oauth_token *t, const struct oauth_error *e,
                           int64_t now);

/* Wipe and free what t holds; t is empty again. */
void oauth_token_clear(struct oauth_token *t);

/* Wipe and free what d holds. */
void oauth_device_clear(struct oauth_device *d);

#endif
