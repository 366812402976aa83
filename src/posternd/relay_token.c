/*
 * posternd - OAuth 2.0 tokens of the relays with auth = oauth2
 * (DESIGN.md "Routing, relay and the queue"; src/common/oauth.h does the
 * HTTP and the token file).
 *
 * One refresh at a time per relay, on the thread pool.  A token is
 * refreshed ahead of its expiry, at expires_at minus max(600 s, 10 % of
 * its lifetime), but never more than half its lifetime ahead (a token
 * that lives a few minutes is used for half of them); an idle account is
 * refreshed at least weekly, so that a 90-day unused limit never bites.
 * invalid_grant (and other refusals that no retry cures) pause the relay:
 * its mail stays queued until queue_lifetime, and one log line says what
 * to run; `postern oauth login` (then the control command "token NAME")
 * or a SIGHUP after editing the token file resumes it at once.  No
 * answer, HTTP 5xx and temporarily_unavailable are retried with
 * retry_min doubling to retry_max.  Secrets are never logged: the grant,
 * the HTTP status, the OAuth error and the AADSTS number are.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "log.h"
#include "relay_int.h"

#define TOKEN_AHEAD_MIN   600          /* seconds (Microsoft's high-volume
                                          endpoint: 10 minutes) */
#define TOKEN_IDLE_REFRESH (7 * 86400) /* refresh an unused account */
#define TOKEN_TIMEOUT     30           /* seconds for one HTTP request */

/* A token request on the pool: copies of what it needs. */
struct token_work {
    uv_work_t req;
    struct relay_mgr *m;
    struct relay_rt *rt;
    struct oauth_client client;
    char *token_url, *client_id, *scope, *cafile, *path, *secret;
    char *refresh_token;            /* secret */
    enum oauth_status st;
    struct oauth_error err;
    struct oauth_token result;      /* the token file after the request */
    char save_err[256];
    int saved;
};

static const char *
grant_name(const struct config_relay *rc)
{
    return rc->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS
               ? "client_credentials"
               : "refresh_token";
}

static char *
dup_secret(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void
free_secret(char **s)
{
    if (*s != NULL) {
        OPENSSL_clear_free(*s, strlen(*s));
        *s = NULL;
    }
}

/* How long before expiry a token is refreshed (see above). */
static int64_t
token_ahead(const struct oauth_token *t)
{
    int64_t life = t->expires_at - t->refreshed_at, ahead = life / 10;

    if (ahead < TOKEN_AHEAD_MIN)
        ahead = TOKEN_AHEAD_MIN;
    if (life > 0 && ahead > life / 2)
        ahead = life / 2;
    return ahead;
}

void
relay_token_free(struct relay_rt *rt)
{
    oauth_token_clear(&rt->tok);
    if (rt->client_secret != NULL) {
        OPENSSL_clear_free(rt->client_secret, rt->client_secret_len);
        rt->client_secret = NULL;
    }
}

static void
token_load(struct relay_rt *rt)
{
    const struct config_relay *rc = rt->cfg;
    char err[512];
    int exists = 0;
    struct oauth_token t;

    if (rc->oauth2_token_file == NULL)
        return;
    if (oauth_token_load(rc->oauth2_token_file, &t, &exists, err,
                         sizeof(err)) < 0) {
        log_event(LOG_LEVEL_WARN, "oauth_token_file_bad", "relay", rt->name,
                  "error", err, NULL);
        return;
    }
    oauth_token_clear(&rt->tok);
    rt->tok = t;
    if (!exists && rc->oauth2_grant == CONFIG_GRANT_REFRESH_TOKEN)
        log_event(LOG_LEVEL_WARN, "oauth_no_token", "relay", rt->name,
                  "file", rc->oauth2_token_file, "action",
                  "log in: postern oauth login -c <posternd.conf> RELAY",
                  NULL);
}

void
relay_token_configure(struct relay_mgr *m, struct relay_rt *rt)
{
    const struct config_relay *rc = rt->cfg;
    char err[512];

    rt->mgr = m;
    if (rc->auth != CONFIG_RELAY_AUTH_OAUTH2)
        return;
    if (rc->oauth2_client_secret_file != NULL) {
        uint8_t *s;
        size_t len;

        if (relay_read_secret(rc->oauth2_client_secret_file, &s, &len, err,
                              sizeof(err)) < 0) {
            log_event(LOG_LEVEL_WARN, "oauth_secret_failed", "relay",
                      rt->name, "error", err, "action",
                      rt->client_secret != NULL ? "keeping the previous one"
                                                : "token requests will fail",
                      NULL);
        } else {
            if (rt->client_secret != NULL)
                OPENSSL_clear_free(rt->client_secret, rt->client_secret_len);
            rt->client_secret = s;
            rt->client_secret_len = len;
        }
    }
    if (!rt->refreshing)
        token_load(rt);
    /* A reload may bring a new token or settings: try again. */
    rt->paused = 0;
    rt->tok_failures = 0;
    rt->tok_retry_at = 0;
}

static void
token_work_free(struct token_work *w)
{
    free(w->token_url);
    free(w->client_id);
    free(w->scope);
    free(w->cafile);
    free(w->path);
    free_secret(&w->secret);
    free_secret(&w->refresh_token);
    oauth_token_clear(&w->result);
    free(w);
}

static void
token_run(uv_work_t *req)
{
    struct token_work *w = req->data;
    struct oauth_token fresh, cur;
    int64_t now = (int64_t)time(NULL);
    int exists;

    w->st = oauth_token_request(&w->client, w->refresh_token, now, &fresh,
                                &w->err);
    if (w->path == NULL) {
        /* client_credentials without a file: memory only. */
        memset(&cur, 0, sizeof(cur));
    } else if (oauth_token_load(w->path, &cur, &exists, w->save_err,
                                sizeof(w->save_err)) < 0) {
        memset(&cur, 0, sizeof(cur));
    }
    if (w->st == OAUTH_OK)
        oauth_token_update(&cur, &fresh); /* the rotated refresh token */
    else
        oauth_token_set_error(&cur, &w->err, now);
    oauth_token_clear(&fresh);
    /* The file is rewritten atomically, fsync'd (oauth.h): the new
     * refresh token survives a crash (Microsoft's old one may be dead). */
    w->saved = w->path == NULL ||
               oauth_token_save(w->path, &cur, w->save_err,
                                sizeof(w->save_err)) == 0;
    w->result = cur;
}

static void
token_done(uv_work_t *req, int status)
{
    struct token_work *w = req->data;
    struct relay_mgr *m = w->m;
    struct relay_rt *rt = w->rt;
    const struct config_relay *rc = rt->cfg;
    char http[16], life[24];
    int64_t now = relay_now();

    rt->refreshing = 0;
    m->works--;
    if (status != 0)
        w->st = OAUTH_TEMPORARY;
    snprintf(http, sizeof(http), "%ld", w->err.http);
    if (!w->saved)
        log_event(LOG_LEVEL_WARN, "oauth_token_file_failed", "relay",
                  rt->name, "error", w->save_err, NULL);
    if (w->st == OAUTH_OK) {
        oauth_token_clear(&rt->tok);
        rt->tok = w->result;
        memset(&w->result, 0, sizeof(w->result));
        rt->tok_failures = 0;
        rt->tok_retry_at = 0;
        rt->tok_error[0] = '\0';
        rt->refreshes_ok++;
        snprintf(life, sizeof(life), "%" PRId64, rt->tok.expires_at - now);
        log_event(LOG_LEVEL_INFO, "oauth_refreshed", "relay", rt->name,
                  "grant", grant_name(rc), "http", http, "expires_in", life,
                  NULL);
    } else {
        rt->refreshes_failed++;
        snprintf(rt->tok_error, sizeof(rt->tok_error), "%s%s%s (HTTP %ld)",
                 w->err.error[0] ? w->err.error : "no answer",
                 w->err.aadsts[0] ? " " : "", w->err.aadsts, w->err.http);
        if (w->st == OAUTH_TEMPORARY) {
            rt->tok_failures++;
            rt->tok_retry_at = now + relay_backoff(m->cfg, rt->tok_failures);
            log_event(LOG_LEVEL_WARN, "oauth_refresh_failed", "relay",
                      rt->name, "grant", grant_name(rc), "http", http,
                      "error", w->err.error[0] ? w->err.error : "-",
                      "aadsts", w->err.aadsts[0] ? w->err.aadsts : "-",
                      "detail", w->err.detail[0] ? w->err.detail : "-",
                      "action", "retrying later", NULL);
        } else {
            char action[512];

            /* invalid_grant: revoked, expired, consent withdrawn; or a
             * refusal of the settings: nothing but a person helps. */
            rt->paused = 1;
            snprintf(action, sizeof(action),
                     "mail stays queued; run: postern oauth login -c %s %s",
                     m->cfg->file, rt->name);
            log_event(LOG_LEVEL_WARN, "oauth_paused", "relay", rt->name,
                      "grant", grant_name(rc), "http", http, "error",
                      w->err.error[0] ? w->err.error : "-", "aadsts",
                      w->err.aadsts[0] ? w->err.aadsts : "-", "action",
                      action, NULL);
        }
    }
    token_work_free(w);
    relay_run(m);
}

static void
token_refresh(struct relay_mgr *m, struct relay_rt *rt)
{
    const struct config_relay *rc = rt->cfg;
    struct token_work *w;

    if (rt->refreshing || rt->paused)
        return;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->m = m;
    w->rt = rt;
    w->token_url = strdup(rc->oauth2_token_url);
    w->client_id = strdup(rc->oauth2_client_id);
    w->scope = strdup(rc->oauth2_scope);
    w->cafile = rc->oauth2_cafile != NULL ? strdup(rc->oauth2_cafile) : NULL;
    w->path = rc->oauth2_token_file != NULL ? strdup(rc->oauth2_token_file)
                                            : NULL;
    w->secret = rt->client_secret != NULL
                    ? dup_secret((const char *)rt->client_secret)
                    : NULL;
    w->refresh_token = dup_secret(rt->tok.refresh_token);
    w->client = (struct oauth_client){
        .token_url = w->token_url,
        .grant = rc->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS
                     ? OAUTH_GRANT_CLIENT_CREDENTIALS
                     : OAUTH_GRANT_REFRESH_TOKEN,
        .client_id = w->client_id,
        .client_secret = w->secret,
        .scope = w->scope,
        .cafile = w->cafile,
        .timeout = TOKEN_TIMEOUT,
    };
    w->req.data = w;
    if (w->token_url == NULL || w->client_id == NULL || w->scope == NULL ||
        uv_queue_work(m->loop, &w->req, token_run, token_done) < 0) {
        token_work_free(w);
        return;
    }
    rt->refreshing = 1;
    m->works++;
}

int
relay_token_ready(struct relay_mgr *m, struct relay_rt *rt, int64_t now,
                  const char **tok, int64_t *wake)
{
    const struct oauth_token *t = &rt->tok;

    *wake = 0;
    if (rt->paused)
        return 0;
    if (t->access_token != NULL && t->expires_at > 0 &&
        now < t->expires_at - token_ahead(t)) {
        *tok = t->access_token;
        /* Next: refresh ahead, or weekly when idle. */
        *wake = t->expires_at - token_ahead(t);
        return 1;
    }
    if (rt->tok_retry_at > now) {
        *wake = rt->tok_retry_at;
        return 0;
    }
    token_refresh(m, rt);
    return 0;
}

int
relay_token_refused(struct relay_mgr *m, struct relay_rt *rt)
{
    if (rt->retried_535 || rt->paused)
        return 0;
    /* A token believed valid was refused (revoked early, or the wrong
     * audience): refresh once and try again at once. */
    rt->retried_535 = 1;
    rt->tok.expires_at = 0;
    token_refresh(m, rt);
    return 1;
}

void
relay_token_reread(struct relay_mgr *m, struct relay_rt *rt)
{
    if (rt->cfg->auth != CONFIG_RELAY_AUTH_OAUTH2)
        return;
    if (!rt->refreshing)
        token_load(rt);
    rt->paused = 0;
    rt->tok_failures = 0;
    rt->tok_retry_at = 0;
    rt->retry_at = 0;
    rt->retried_535 = 0;
    log_event(LOG_LEVEL_INFO, "oauth_token_reread", "relay", rt->name, NULL);
    relay_run(m);
}

void
relay_token_status(const struct relay_rt *rt, int64_t now,
                   struct pst_buf *out)
{
    const struct oauth_token *t = &rt->tok;

    if (rt->cfg->auth != CONFIG_RELAY_AUTH_OAUTH2)
        return;
    pst_buf_printf(out,
                   "grant %s\npaused %d\nrefreshing %d\nexpires_at %" PRId64
                   "\nrefreshed_at %" PRId64 "\nrefreshes_ok %" PRIu64
                   "\nrefreshes_failed %" PRIu64 "\nhas_refresh_token %d\n"
                   "token_retry_at %" PRId64 "\n",
                   grant_name(rt->cfg), rt->paused, rt->refreshing,
                   t->expires_at, t->refreshed_at, rt->refreshes_ok,
                   rt->refreshes_failed, t->refresh_token != NULL,
                   rt->tok_retry_at > now ? rt->tok_retry_at : 0);
    if (rt->tok_error[0] != '\0')
        pst_buf_printf(out, "token_error %s\n", rt->tok_error);
}
