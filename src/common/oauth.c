/*
 * OAuth 2.0 token requests and the token file (see oauth.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <postern/base64.h>
#include <postern/buf.h>
#include <postern/rand.h>

#include "fileio.h"
#include "oauth.h"

#define OAUTH_FORM_MAX (64u << 10) /* octets of a request body */

const char *
oauth_status_name(enum oauth_status st)
{
    switch (st) {
    case OAUTH_OK: return "ok";
    case OAUTH_TEMPORARY: return "temporary";
    case OAUTH_RELOGIN: return "relogin";
    case OAUTH_REFUSED: return "refused";
    case OAUTH_PENDING: return "pending";
    case OAUTH_SLOW_DOWN: return "slow_down";
    case OAUTH_DECLINED: return "declined";
    case OAUTH_EXPIRED: return "expired";
    }
    return "?";
}

/* --- Secrets in json-c --------------------------------------------------- */

/* Wipe the string a json-c string object holds, in place, before the
 * object is released: json-c frees without wiping. */
static void
json_wipe(struct json_object *o)
{
    if (o != NULL && json_object_is_type(o, json_type_string)) {
        char *s = (char *)json_object_get_string(o);

        OPENSSL_cleanse(s, (size_t)json_object_get_string_len(o));
    }
}

static void
json_wipe_keys(struct json_object *root)
{
    static const char *const secret_keys[] = {
        "access_token", "refresh_token", "id_token", "device_code", NULL,
    };
    struct json_object *v;

    if (root == NULL || !json_object_is_type(root, json_type_object))
        return;
    for (size_t i = 0; secret_keys[i] != NULL; i++)
        if (json_object_object_get_ex(root, secret_keys[i], &v))
            json_wipe(v);
}

/* A copy of the string at key, or NULL if absent or not a string.
 * *bad is set when present with another type. */
static char *
json_str(struct json_object *root, const char *key, int *bad)
{
    struct json_object *v;

    if (!json_object_object_get_ex(root, key, &v) || v == NULL)
        return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        *bad = 1;
        return NULL;
    }
    return strndup(json_object_get_string(v),
                   (size_t)json_object_get_string_len(v));
}

/* An integer at key: a JSON number, or a string of digits (some
 * endpoints send "3599").  Returns 0 if absent or malformed. */
static int64_t
json_int(struct json_object *root, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(root, key, &v) || v == NULL)
        return 0;
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v);
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;
        long long n = strtoll(s, &end, 10);

        return end != s && *end == '\0' && n >= 0 ? (int64_t)n : 0;
    }
    return 0;
}

static void
free_secret(char **s)
{
    if (*s != NULL) {
        OPENSSL_clear_free(*s, strlen(*s));
        *s = NULL;
    }
}

/* --- HTTP ---------------------------------------------------------------- */

static size_t
on_body(char *p, size_t size, size_t n, void *ctx)
{
    struct pst_buf *b = ctx;

    /* Past the ceiling the transfer fails (CURLE_WRITE_ERROR). */
    return pst_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* Append "&name=value" (value form-encoded) to form. */
static int
form_add(CURL *h, struct pst_buf *form, const char *name, const char *value)
{
    char *enc;
    int rc;

    if (value == NULL)
        return 0;
    enc = curl_easy_escape(h, value, 0);
    if (enc == NULL)
        return -1;
    rc = pst_buf_printf(form, "%s%s=", form->len > 0 ? "&" : "", name);
    if (rc == 0)
        rc = pst_buf_append_str(form, enc);
    OPENSSL_cleanse(enc, strlen(enc));
    curl_free(enc);
    return rc;
}

/*
 * POST form (secret buffer) to url and parse the JSON answer into *json
 * (owned by the caller, json_object_put() after json_wipe_keys()).
 * Returns 0 with *http set, or -1 with err->detail (transport failure,
 * body not a JSON object).
 */
static int
http_post(const struct oauth_client *c, const char *url,
          const struct pst_buf *form, long *http, struct json_object **json,
          struct oauth_error *err)
{
    CURL *h = curl_easy_init();
    struct pst_buf body;
    struct curl_slist *hdr = NULL;
    char cerr[CURL_ERROR_SIZE] = "";
    CURLcode cc;
    int rc = -1;

    *json = NULL;
    *http = 0;
    if (h == NULL) {
        snprintf(err->detail, sizeof(err->detail), "curl_easy_init failed");
        return -1;
    }
    pst_buf_init(&body, OAUTH_BODY_MAX, 1);
    hdr = curl_slist_append(hdr, "Accept: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    /* https only, redirects not followed: a token never goes elsewhere. */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->cafile != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cafile);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)(c->timeout ? c->timeout : 30));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
                     (long)(c->timeout ? c->timeout : 30));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads */
    curl_easy_setopt(h, CURLOPT_USERAGENT, "postern");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)form->data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)form->len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        snprintf(err->detail, sizeof(err->detail), "%s",
                 cerr[0] != '\0' ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    {
        struct json_tokener *tok = json_tokener_new();

        if (tok != NULL && body.len > 0)
            *json = json_tokener_parse_ex(tok, (const char *)body.data,
                                          (int)body.len);
        json_tokener_free(tok);
    }
    if (*json == NULL || !json_object_is_type(*json, json_type_object)) {
        if (*json != NULL) {
            json_object_put(*json);
            *json = NULL;
        }
        snprintf(err->detail, sizeof(err->detail),
                 "HTTP %ld: the answer is not a JSON object", *http);
        goto out;
    }
    rc = 0;
out:
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    pst_buf_clear(&body); /* secret: wiped */
    return rc;
}

/* The OAuth error of an answer (RFC 6749 §5.2), and Microsoft's AADSTS
 * number from error_codes or error_description; the description itself
 * is not kept (it may quote what was sent). */
static void
error_of(struct json_object *j, struct oauth_error *err)
{
    struct json_object *v;
    const char *d;

    if (json_object_object_get_ex(j, "error", &v) &&
        json_object_is_type(v, json_type_string))
        snprintf(err->error, sizeof(err->error), "%s",
                 json_object_get_string(v));
    if (json_object_object_get_ex(j, "error_codes", &v) &&
        json_object_is_type(v, json_type_array) &&
        json_object_array_length(v) > 0)
        snprintf(err->aadsts, sizeof(err->aadsts), "AADSTS%lld",
                 (long long)json_object_get_int64(
                     json_object_array_get_idx(v, 0)));
    else if (json_object_object_get_ex(j, "error_description", &v) &&
             json_object_is_type(v, json_type_string) &&
             (d = strstr(json_object_get_string(v), "AADSTS")) != NULL) {
        size_t n = 6;

        while (d[n] >= '0' && d[n] <= '9' && n < sizeof(err->aadsts) - 1)
            n++;
        snprintf(err->aadsts, sizeof(err->aadsts), "%.*s", (int)n, d);
    }
}

/* What an error answer means for the caller. */
static enum oauth_status
classify(long http, const char *error)
{
    if (strcmp(error, "invalid_grant") == 0)
        return OAUTH_RELOGIN;
    if (strcmp(error, "authorization_pending") == 0)
        return OAUTH_PENDING;
    if (strcmp(error, "slow_down") == 0)
        return OAUTH_SLOW_DOWN;
    if (strcmp(error, "authorization_declined") == 0 ||
        strcmp(error, "access_denied") == 0)
        return OAUTH_DECLINED;
    if (strcmp(error, "expired_token") == 0 ||
        strcmp(error, "bad_verification_code") == 0)
        return OAUTH_EXPIRED;
    if (strcmp(error, "temporarily_unavailable") == 0 ||
        strcmp(error, "server_error") == 0 || http >= 500 || http == 429)
        return OAUTH_TEMPORARY;
    return OAUTH_REFUSED;
}

/* POST form to the token endpoint and read a token answer. */
static enum oauth_status
token_post(const struct oauth_client *c, struct pst_buf *form, int64_t now,
           struct oauth_token *out, struct oauth_error *err)
{
    struct json_object *j = NULL;
    enum oauth_status st;
    long http;
    int bad = 0;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    if (http_post(c, c->token_url, form, &http, &j, err) < 0) {
        err->http = http;
        return OAUTH_TEMPORARY;
    }
    err->http = http;
    if (http != 200 || json_object_object_get_ex(j, "error", NULL)) {
        error_of(j, err);
        st = classify(http, err->error);
        if (err->error[0] == '\0' && http == 200)
            st = OAUTH_REFUSED;
        goto done;
    }
    out->access_token = json_str(j, "access_token", &bad);
    out->refresh_token = json_str(j, "refresh_token", &bad);
    out->scope = json_str(j, "scope", &bad);
    {
        char *type = json_str(j, "token_type", &bad);

        /* RFC 6750: a bearer token, whatever the case of the word. */
        if (type != NULL && strcasecmp(type, "bearer") != 0)
            bad = 1;
        free(type);
    }
    if (bad || out->access_token == NULL || out->access_token[0] == '\0' ||
        strlen(out->access_token) > OAUTH_TOKEN_MAX) {
        snprintf(err->detail, sizeof(err->detail),
                 "HTTP 200 without a usable bearer access_token");
        oauth_token_clear(out);
        st = OAUTH_REFUSED;
        goto done;
    }
    {
        int64_t life = json_int(j, "expires_in");

        /* RFC 6749 §5.1: expires_in is recommended; an hour if absent
         * (Microsoft's tokens live 60-90 minutes). */
        out->expires_at = now + (life > 0 ? life : 3600);
    }
    out->refreshed_at = now;
    st = OAUTH_OK;
done:
    json_wipe_keys(j);
    json_object_put(j);
    return st;
}

/*
 * A token request: grant_type, client_id, then the pairs of kv (name,
 * value; a NULL value is left out), form-encoded into a secret buffer,
 * POSTed to the token endpoint, the answer read by token_post().
 */
static enum oauth_status
token_grant(const struct oauth_client *c, const char *grant,
            const char *const *kv, size_t nkv, int64_t now,
            struct oauth_token *out, struct oauth_error *err)
{
    struct pst_buf form;
    CURL *h = curl_easy_init();
    enum oauth_status st;
    int rc = h == NULL ? -1 : 0;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    pst_buf_init(&form, OAUTH_FORM_MAX, 1);
    if (rc == 0)
        rc = form_add(h, &form, "grant_type", grant);
    if (rc == 0)
        rc = form_add(h, &form, "client_id", c->client_id);
    for (size_t i = 0; i + 1 < nkv && rc == 0; i += 2)
        rc = form_add(h, &form, kv[i], kv[i + 1]);
    curl_easy_cleanup(h);
    if (rc < 0) {
        pst_buf_clear(&form);
        snprintf(err->detail, sizeof(err->detail), "out of memory");
        return OAUTH_TEMPORARY;
    }
    st = token_post(c, &form, now, out, err);
    pst_buf_clear(&form); /* secret: wiped */
    return st;
}

enum oauth_status
oauth_token_request(const struct oauth_client *c, const char *refresh_token,
                    int64_t now, struct oauth_token *out,
                    struct oauth_error *err)
{
    /* Always the scope: Microsoft refuses a refresh without it
     * (AADSTS900144). */
    const char *kv[] = {
        "refresh_token", refresh_token, "client_secret", c->client_secret,
        "scope", c->scope,
    };

    if (c->grant == OAUTH_GRANT_CLIENT_CREDENTIALS)
        return token_grant(c, "client_credentials", kv + 2, 4, now, out,
                           err);
    if (refresh_token == NULL || refresh_token[0] == '\0') {
        memset(out, 0, sizeof(*out));
        memset(err, 0, sizeof(*err));
        snprintf(err->error, sizeof(err->error), "invalid_grant");
        snprintf(err->detail, sizeof(err->detail),
                 "no refresh token: log in first");
        return OAUTH_RELOGIN;
    }
    return token_grant(c, "refresh_token", kv, 6, now, out, err);
}

enum oauth_status
oauth_device_begin(const struct oauth_client *c, struct oauth_device *d,
                   struct oauth_error *err)
{
    struct pst_buf form;
    struct json_object *j = NULL;
    CURL *h = curl_easy_init();
    enum oauth_status st = OAUTH_OK;
    long http;
    int bad = 0, rc;

    memset(d, 0, sizeof(*d));
    memset(err, 0, sizeof(*err));
    pst_buf_init(&form, OAUTH_FORM_MAX, 1);
    if (c->device_url == NULL) {
        curl_easy_cleanup(h);
        snprintf(err->detail, sizeof(err->detail),
                 "no oauth2_device_url for this relay");
        return OAUTH_REFUSED;
    }
    rc = h == NULL ? -1 : form_add(h, &form, "client_id", c->client_id);
    if (rc == 0)
        rc = form_add(h, &form, "scope", c->scope);
    curl_easy_cleanup(h);
    if (rc < 0) {
        pst_buf_clear(&form);
        return OAUTH_TEMPORARY;
    }
    rc = http_post(c, c->device_url, &form, &http, &j, err);
    pst_buf_clear(&form);
    err->http = http;
    if (rc < 0)
        return OAUTH_TEMPORARY;
    if (http != 200 || json_object_object_get_ex(j, "error", NULL)) {
        error_of(j, err);
        st = classify(http, err->error);
        goto done;
    }
    d->device_code = json_str(j, "device_code", &bad);
    d->user_code = json_str(j, "user_code", &bad);
    /* RFC 8628 says verification_uri; Google's first version said
     * verification_url. */
    d->verification_uri = json_str(j, "verification_uri", &bad);
    if (d->verification_uri == NULL)
        d->verification_uri = json_str(j, "verification_url", &bad);
    d->message = json_str(j, "message", &bad);
    d->expires_in = (unsigned)json_int(j, "expires_in");
    d->interval = (unsigned)json_int(j, "interval");
    if (d->interval == 0)
        d->interval = 5; /* RFC 8628 §3.2 */
    if (bad || d->device_code == NULL || d->user_code == NULL ||
        d->verification_uri == NULL) {
        snprintf(err->detail, sizeof(err->detail),
                 "the device authorization answer lacks device_code, "
                 "user_code or verification_uri");
        oauth_device_clear(d);
        st = OAUTH_REFUSED;
    }
done:
    json_wipe_keys(j);
    json_object_put(j);
    return st;
}

enum oauth_status
oauth_device_poll(const struct oauth_client *c, const struct oauth_device *d,
                  int64_t now, struct oauth_token *out,
                  struct oauth_error *err)
{
    const char *kv[] = {
        "device_code", d->device_code, "client_secret", c->client_secret,
    };

    return token_grant(c, "urn:ietf:params:oauth:grant-type:device_code",
                       kv, 4, now, out, err);
}

enum oauth_status
oauth_code_exchange(const struct oauth_client *c, const char *code,
                    const char *redirect_uri, const char *verifier,
                    int64_t now, struct oauth_token *out,
                    struct oauth_error *err)
{
    const char *kv[] = {
        "code", code, "redirect_uri", redirect_uri, "code_verifier",
        verifier, "client_secret", c->client_secret, "scope", c->scope,
    };

    return token_grant(c, "authorization_code", kv, 10, now, out, err);
}

/* --- PKCE ---------------------------------------------------------------- */

/* base64url without padding (RFC 7636 Appendix A). */
static int
b64url(const uint8_t *p, size_t len, char *out, size_t size)
{
    struct pst_buf b;
    size_t n = 0;

    pst_buf_init(&b, 256, 0);
    if (pst_base64_encode(p, len, &b) < 0 || b.len >= size) {
        pst_buf_clear(&b);
        return -1;
    }
    for (size_t i = 0; i < b.len && b.data[i] != '='; i++)
        out[n++] = b.data[i] == '+' ? '-' : b.data[i] == '/' ? '_'
                                                            : (char)b.data[i];
    out[n] = '\0';
    pst_buf_clear(&b);
    return 0;
}

int
oauth_pkce_challenge(const char *verifier, char challenge[64])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    /* §4.2: S256 = BASE64URL(SHA256(ASCII(code_verifier))). */
    if (EVP_Digest(verifier, strlen(verifier), md, &mdlen, EVP_sha256(),
                   NULL) != 1)
        return -1;
    return b64url(md, mdlen, challenge, 64);
}

int
oauth_pkce(char verifier[64], char challenge[64])
{
    uint8_t rnd[32];
    int rc;

    if (pst_random_default(NULL, rnd, sizeof(rnd)) != 0)
        return -1;
    /* 32 random octets: a 43-character verifier (§4.1). */
    rc = b64url(rnd, sizeof(rnd), verifier, 64);
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return rc < 0 ? -1 : oauth_pkce_challenge(verifier, challenge);
}

char *
oauth_authorize_url(const struct oauth_client *c, const char *redirect_uri,
                    const char *state, const char *challenge)
{
    static const char *const keys[] = {
        "response_type", "client_id", "redirect_uri", "scope", "state",
        "code_challenge", "code_challenge_method", "access_type", "prompt",
    };
    const char *vals[] = {
        "code", c->client_id, redirect_uri, c->scope, state, challenge,
        "S256", "offline", "consent",
    };
    CURL *h = curl_easy_init();
    struct pst_buf b;
    char *url = NULL;
    int rc = h == NULL || c->auth_url == NULL ? -1 : 0;

    pst_buf_init(&b, OAUTH_FORM_MAX, 0);
    if (rc == 0)
        rc = pst_buf_append_str(&b, c->auth_url);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && rc == 0; i++) {
        char *enc = curl_easy_escape(h, vals[i] != NULL ? vals[i] : "", 0);

        if (enc == NULL) {
            rc = -1;
            break;
        }
        rc = pst_buf_printf(&b, "%c%s=%s",
                            i == 0 ? (strchr(c->auth_url, '?') ? '&' : '?')
                                   : '&',
                            keys[i], enc);
        curl_free(enc);
    }
    if (rc == 0)
        url = strdup((const char *)b.data);
    pst_buf_clear(&b);
    curl_easy_cleanup(h);
    return url;
}

/* --- The token file ------------------------------------------------------ */

void
oauth_token_clear(struct oauth_token *t)
{
    free_secret(&t->access_token);
    free_secret(&t->refresh_token);
    free(t->scope);
    if (t->extra != NULL)
        json_object_put(t->extra);
    memset(t, 0, sizeof(*t));
}

void
oauth_device_clear(struct oauth_device *d)
{
    free_secret(&d->device_code);
    free(d->user_code);
    free(d->verification_uri);
    free(d->message);
    memset(d, 0, sizeof(*d));
}

void
oauth_token_update(struct oauth_token *cur, struct oauth_token *fresh)
{
    free_secret(&cur->access_token);
    cur->access_token = fresh->access_token;
    fresh->access_token = NULL;
    if (fresh->refresh_token != NULL) {
        free_secret(&cur->refresh_token);
        cur->refresh_token = fresh->refresh_token;
        fresh->refresh_token = NULL;
    }
    if (fresh->scope != NULL) {
        free(cur->scope);
        cur->scope = fresh->scope;
        fresh->scope = NULL;
    }
    cur->expires_at = fresh->expires_at;
    cur->refreshed_at = fresh->refreshed_at;
    cur->last_error[0] = '\0';
    cur->last_aadsts[0] = '\0';
    cur->last_http = 0;
    cur->last_error_at = 0;
    oauth_token_clear(fresh);
}

void
oauth_token_set_error(struct oauth_token *t, const struct oauth_error *e,
                      int64_t now)
{
    snprintf(t->last_error, sizeof(t->last_error), "%s",
             e->error[0] != '\0' ? e->error : "no_answer");
    snprintf(t->last_aadsts, sizeof(t->last_aadsts), "%s", e->aadsts);
    t->last_http = e->http;
    t->last_error_at = now;
}

/* The keys this module reads and writes; others stay in extra. */
static const char *const known_keys[] = {
    "access_token", "refresh_token", "scope", "expires_at", "refreshed_at",
    "last_error", NULL,
};

static int
read_file(const char *path, struct pst_buf *b, int *exists, char *err,
          size_t n)
{
    uint8_t chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    *exists = 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    *exists = 1;
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof(chunk));

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, n, "%s: %s", path, strerror(errno));
            close(fd);
            OPENSSL_cleanse(chunk, sizeof(chunk));
            return -1;
        }
        if (got == 0)
            break;
        if (pst_buf_append(b, chunk, (size_t)got) < 0) {
            snprintf(err, n, "%s: larger than %u octets", path,
                     OAUTH_FILE_MAX);
            close(fd);
            OPENSSL_cleanse(chunk, sizeof(chunk));
            return -1;
        }
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
    close(fd);
    return 0;
}

int
oauth_token_load(const char *path, struct oauth_token *t, int *exists,
                 char *err, size_t err_size)
{
    struct pst_buf b;
    struct json_object *j = NULL, *v;
    struct json_tokener *tok;
    int bad = 0;

    memset(t, 0, sizeof(*t));
    pst_buf_init(&b, OAUTH_FILE_MAX, 1);
    if (read_file(path, &b, exists, err, err_size) < 0) {
        pst_buf_clear(&b);
        return -1;
    }
    if (!*exists) {
        pst_buf_clear(&b);
        return 0;
    }
    tok = json_tokener_new();
    if (tok != NULL)
        j = json_tokener_parse_ex(tok, (const char *)b.data, (int)b.len);
    if (tok != NULL && j != NULL) {
        size_t end = json_tokener_get_parse_end(tok);

        /* One object and nothing after it but white space. */
        while (end < b.len && strchr(" \t\r\n", b.data[end]) != NULL)
            end++;
        if (json_tokener_get_error(tok) != json_tokener_success ||
            end != b.len)
            bad = 1;
    }
    json_tokener_free(tok);
    pst_buf_clear(&b);
    if (j == NULL || bad || !json_object_is_type(j, json_type_object)) {
        snprintf(err, err_size, "%s: not a JSON object", path);
        json_wipe_keys(j);
        json_object_put(j);
        return -1;
    }
    t->access_token = json_str(j, "access_token", &bad);
    t->refresh_token = json_str(j, "refresh_token", &bad);
    t->scope = json_str(j, "scope", &bad);
    t->expires_at = json_int(j, "expires_at");
    t->refreshed_at = json_int(j, "refreshed_at");
    if (json_object_object_get_ex(j, "last_error", &v) &&
        json_object_is_type(v, json_type_object)) {
        struct json_object *f;

        if (json_object_object_get_ex(v, "error", &f) &&
            json_object_is_type(f, json_type_string))
            snprintf(t->last_error, sizeof(t->last_error), "%s",
                     json_object_get_string(f));
        if (json_object_object_get_ex(v, "aadsts", &f) &&
            json_object_is_type(f, json_type_string))
            snprintf(t->last_aadsts, sizeof(t->last_aadsts), "%s",
                     json_object_get_string(f));
        t->last_http = (long)json_int(v, "http");
        t->last_error_at = json_int(v, "at");
    }
    json_wipe_keys(j);
    for (size_t i = 0; known_keys[i] != NULL; i++)
        json_object_object_del(j, known_keys[i]);
    t->extra = j;
    if (bad) {
        snprintf(err, err_size, "%s: access_token, refresh_token and scope "
                 "must be strings", path);
        oauth_token_clear(t);
        return -1;
    }
    return 0;
}


int
oauth_token_save(const char *path, const struct oauth_token *t, char *err,
                 size_t err_size)
{
    struct json_object *j;
    char tmp[PATH_MAX], lock[PATH_MAX];
    const char *text;
    size_t len;
    int fd = -1, lfd, rc = -1;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
        snprintf(lock, sizeof(lock), "%s.lock", path) >= (int)sizeof(lock)) {
        snprintf(err, err_size, "%s: path too long", path);
        return -1;
    }
    /* The keys of the file that we do not know (they hold no secret of
     * ours: oauth_token_load() took those out), then ours. */
    j = NULL;
    if (t->extra == NULL)
        j = json_object_new_object();
    else if (json_object_deep_copy(t->extra, &j, NULL) != 0)
        j = NULL;
    if (j == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (t->refresh_token != NULL)
        json_object_object_add(j, "refresh_token",
                               json_object_new_string(t->refresh_token));
    if (t->access_token != NULL)
        json_object_object_add(j, "access_token",
                               json_object_new_string(t->access_token));
    if (t->expires_at > 0)
        json_object_object_add(j, "expires_at",
                               json_object_new_int64(t->expires_at));
    if (t->refreshed_at > 0)
        json_object_object_add(j, "refreshed_at",
                               json_object_new_int64(t->refreshed_at));
    if (t->scope != NULL)
        json_object_object_add(j, "scope", json_object_new_string(t->scope));
    if (t->last_error[0] != '\0') {
        struct json_object *e = json_object_new_object();

        json_object_object_add(e, "error",
                               json_object_new_string(t->last_error));
        json_object_object_add(e, "aadsts",
                               json_object_new_string(t->last_aadsts));
        json_object_object_add(e, "http", json_object_new_int64(t->last_http));
        json_object_object_add(e, "at",
                               json_object_new_int64(t->last_error_at));
        json_object_object_add(j, "last_error", e);
    }
    text = json_object_to_json_string_length(
        j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
               JSON_C_TO_STRING_NOSLASHESCAPE,
        &len);
    /* One writer at a time (posternd's refresh, postern oauth login). */
    lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        snprintf(err, err_size, "%s: %s", lock, strerror(errno));
        goto out;
    }
    unlink(tmp); /* a leftover of a crash; we hold the lock */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fileio_write_all(fd, text, len) < 0 ||
        fileio_write_all(fd, "\n", 1) < 0 || fsync(fd) != 0 ||
        close(fd) != 0) {
        fd = -1;
        snprintf(err, err_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0 || fileio_fsync_parent(path) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    } else if (rc < 0) {
        unlink(tmp);
    }
    if (lfd >= 0)
        close(lfd); /* releases the lock */
    json_wipe_keys(j);
    /* The serialised text is json-c's buffer inside j: wipe it too. */
    if (text != NULL)
        OPENSSL_cleanse((char *)text, len);
    json_object_put(j);
    return rc;
}
