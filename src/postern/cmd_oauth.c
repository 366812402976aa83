/*
 * postern oauth login|status -c CONF RELAY
 *
 * The OAuth 2.0 side of a relay with auth = oauth2 (DESIGN.md "Routing,
 * relay and the queue"), from a shell:
 *   login     the device authorization grant (RFC 8628): print where to
 *             go and the code, poll, write the token file; --loopback:
 *             the authorization code grant with PKCE (RFC 7636) and a
 *             redirect to 127.0.0.1 (RFC 8252 §7.3), for providers whose
 *             device flow excludes mail scopes (Google).  A running
 *             posternd is told to read the new token (control socket).
 *             With oauth2_grant = client_credentials there is nothing to
 *             log in to: one token request checks the settings.
 *   status    grant, user, token expiry, last refresh and its outcome,
 *             whether the relay is paused.  Exit 0: the token is usable;
 *             75: refreshing fails for a temporary reason; 77: an
 *             administrator must log in again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/buf.h>
#include <postern/rand.h>

#include "cmds.h"
#include "config.h"
#include "control_client.h"
#include "date.h"
#include "oauth.h"

#define LOOPBACK_WAIT_MS (10 * 60 * 1000) /* for the browser's redirect */
#define LOOPBACK_HEAD_MAX 8192

static void
usage(FILE *f)
{
    fprintf(f, "usage: postern oauth login -c CONF RELAY [--loopback]\n"
               "       postern oauth status -c CONF RELAY\n");
}

/* The first line of a file (a client secret), or NULL (err set). */
static char *
read_first_line(const char *path, char *err, size_t n)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    char *s = NULL;

    if (f == NULL) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fgets(buf, sizeof(buf), f) != NULL) {
        buf[strcspn(buf, "\r\n")] = '\0';
        s = strdup(buf);
    } else {
        snprintf(err, n, "%s: empty", path);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    fclose(f);
    return s;
}

struct relay_ctx {
    const struct config *cfg;
    const struct config_relay *rc;
    struct oauth_client client;
    char *secret;
};

static int
relay_ctx_init(struct relay_ctx *x, const struct config *cfg,
               const char *name)
{
    char err[512];

    memset(x, 0, sizeof(*x));
    x->cfg = cfg;
    x->rc = config_relay_find(cfg, name);
    if (x->rc == NULL) {
        fprintf(stderr, "postern: %s: no [relay %s]\n", cfg->file, name);
        return EX_CONFIG;
    }
    if (x->rc->auth != CONFIG_RELAY_AUTH_OAUTH2) {
        fprintf(stderr, "postern: [relay %s] has auth other than oauth2\n",
                name);
        return EX_CONFIG;
    }
    if (x->rc->oauth2_client_secret_file != NULL) {
        x->secret = read_first_line(x->rc->oauth2_client_secret_file, err,
                                    sizeof(err));
        if (x->secret == NULL) {
            fprintf(stderr, "postern: %s\n", err);
            return EX_NOINPUT;
        }
    }
    x->client = (struct oauth_client){
        .token_url = x->rc->oauth2_token_url,
        .device_url = x->rc->oauth2_device_url,
        .auth_url = x->rc->oauth2_auth_url,
        .grant = x->rc->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS
                     ? OAUTH_GRANT_CLIENT_CREDENTIALS
                     : OAUTH_GRANT_REFRESH_TOKEN,
        .client_id = x->rc->oauth2_client_id,
        .client_secret = x->secret,
        .scope = x->rc->oauth2_scope,
        .cafile = x->rc->oauth2_cafile,
        .timeout = 30,
    };
    return EX_OK;
}

static void
relay_ctx_clear(struct relay_ctx *x)
{
    if (x->secret != NULL)
        OPENSSL_clear_free(x->secret, strlen(x->secret));
    x->secret = NULL;
}

static void
print_error(const char *what, enum oauth_status st,
            const struct oauth_error *e)
{
    fprintf(stderr, "postern: %s: %s", what, oauth_status_name(st));
    if (e->http != 0)
        fprintf(stderr, ", HTTP %ld", e->http);
    if (e->error[0] != '\0')
        fprintf(stderr, ", %s", e->error);
    if (e->aadsts[0] != '\0')
        fprintf(stderr, " (%s)", e->aadsts);
    if (e->detail[0] != '\0')
        fprintf(stderr, ": %s", e->detail);
    fprintf(stderr, "\n");
}

/* Merge fresh into the token file, and tell a running posternd. */
static int
store_tokens(struct relay_ctx *x, const char *relay,
             struct oauth_token *fresh)
{
    struct oauth_token cur;
    struct pst_buf answer;
    char err[512];
    int exists, rc;

    if (x->rc->oauth2_token_file == NULL) {
        oauth_token_clear(fresh);
        return EX_OK;
    }
    if (oauth_token_load(x->rc->oauth2_token_file, &cur, &exists, err,
                         sizeof(err)) < 0)
        memset(&cur, 0, sizeof(cur)); /* a broken file is replaced */
    oauth_token_update(&cur, fresh);
    rc = oauth_token_save(x->rc->oauth2_token_file, &cur, err, sizeof(err));
    oauth_token_clear(&cur);
    if (rc < 0) {
        fprintf(stderr, "postern: %s\n", err);
        return EX_CANTCREAT;
    }
    printf("Token saved in %s.\n", x->rc->oauth2_token_file);
    pst_buf_init(&answer, 65536, 0);
    snprintf(err, sizeof(err), "token %s", relay);
    rc = control_call(x->cfg->spool, err, &answer, err, sizeof(err));
    if (rc == 1)
        printf("posternd read it: the relay resumes.\n");
    else if (rc == 0)
        printf("posternd is not running: it reads the token when it "
               "starts.\n");
    else
        printf("posternd did not answer (%s): send it SIGHUP.\n", err);
    pst_buf_clear(&answer);
    return EX_OK;
}

/* RFC 8628: the device authorization grant. */
static int
login_device(struct relay_ctx *x, const char *relay)
{
    struct oauth_device d;
    struct oauth_error e;
    struct oauth_token t;
    enum oauth_status st;
    unsigned interval;
    time_t until;

    if (x->client.device_url == NULL) {
        fprintf(stderr, "postern: [relay %s] has no oauth2_device_url "
                "(Google: use --loopback)\n", relay);
        return EX_CONFIG;
    }
    st = oauth_device_begin(&x->client, &d, &e);
    if (st != OAUTH_OK) {
        print_error("device authorization", st, &e);
        return st == OAUTH_TEMPORARY ? EX_TEMPFAIL : EX_NOPERM;
    }
    if (d.message != NULL)
        printf("%s\n", d.message);
    else
        printf("To sign in, open %s and enter the code %s\n",
               d.verification_uri, d.user_code);
    printf("Waiting (code %s)...\n", d.user_code);
    fflush(stdout);
    interval = d.interval;
    until = time(NULL) + (d.expires_in > 0 ? d.expires_in : 900);
    for (;;) {
        sleep(interval);
        st = oauth_device_poll(&x->client, &d, (int64_t)time(NULL), &t, &e);
        if (st == OAUTH_OK)
            break;
        if (st == OAUTH_PENDING && time(NULL) < until)
            continue;
        if (st == OAUTH_SLOW_DOWN) {
            interval += 5; /* RFC 8628 §3.5 */
            continue;
        }
        if (st == OAUTH_TEMPORARY && time(NULL) < until)
            continue;
        oauth_device_clear(&d);
        if (st == OAUTH_PENDING || st == OAUTH_EXPIRED) {
            fprintf(stderr, "postern: the code expired before sign-in; run "
                    "postern oauth login again\n");
            return EX_TEMPFAIL;
        }
        if (st == OAUTH_DECLINED) {
            fprintf(stderr, "postern: sign-in was declined\n");
            return EX_NOPERM;
        }
        print_error("device login", st, &e);
        return st == OAUTH_TEMPORARY ? EX_TEMPFAIL : EX_NOPERM;
    }
    oauth_device_clear(&d);
    if (t.refresh_token == NULL)
        fprintf(stderr, "postern: warning: no refresh token came back (is "
                "offline_access in oauth2_scope?)\n");
    printf("Signed in.\n");
    return store_tokens(x, relay, &t);
}

static int
hexv(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The value of key in a query string (form-decoded), or NULL. */
static char *
query_value(const char *q, const char *key)
{
    size_t klen = strlen(key);

    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q);

        if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            char *v = malloc(len - klen);
            size_t n = 0;

            if (v == NULL)
                return NULL;
            for (size_t i = klen + 1; i < len; i++) {
                if (q[i] == '+')
                    v[n++] = ' ';
                else if (q[i] == '%' && i + 2 < len && hexv(q[i + 1]) >= 0 &&
                         hexv(q[i + 2]) >= 0) {
                    v[n++] = (char)(hexv(q[i + 1]) << 4 | hexv(q[i + 2]));
                    i += 2;
                } else {
                    v[n++] = q[i];
                }
            }
            v[n] = '\0';
            return v;
        }
        q = amp != NULL ? amp + 1 : NULL;
    }
    return NULL;
}

/* Whether the request head in h[0..n) is complete (an empty line). */
static int
head_complete(const char *h, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (h[i - 3] == '\r' && h[i - 2] == '\n' && h[i - 1] == '\r' &&
            h[i] == '\n')
            return 1;
    return 0;
}

/* Wait for the browser's one request: "GET /?code=...&state=..." */
static int
loopback_wait(int lfd, char *head, size_t size)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    size_t n = 0;
    int fd;

    if (poll(&p, 1, LOOPBACK_WAIT_MS) <= 0)
        return -1;
    fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return -1;
    while (n + 1 < size && !head_complete(head, n)) {
        struct pollfd q = {.fd = fd, .events = POLLIN};
        ssize_t r;

        if (poll(&q, 1, 30000) <= 0)
            break;
        r = read(fd, head + n, size - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    head[n] = '\0';
    return fd;
}

/* RFC 7636 + RFC 8252 §7.3: the authorization code at a loopback
 * redirect. */
static int
login_loopback(struct relay_ctx *x, const char *relay)
{
    static const char page[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Connection: close\r\n\r\n<!doctype html><title>postern</title>"
        "<p>postern received the authorization; you may close this "
        "window.</p>\r\n";
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t salen = sizeof(sa);
    char verifier[64], challenge[64], state[33], redirect[64];
    char head[LOOPBACK_HEAD_MAX];
    char *url, *code = NULL, *got_state = NULL, *oerr = NULL;
    struct oauth_error e;
    struct oauth_token t;
    enum oauth_status st;
    uint8_t rnd[16];
    int lfd, fd, rc = EX_PROTOCOL;

    if (x->client.auth_url == NULL) {
        fprintf(stderr, "postern: [relay %s] has no oauth2_auth_url\n",
                relay);
        return EX_CONFIG;
    }
    if (oauth_pkce(verifier, challenge) < 0 ||
        pst_random_default(NULL, rnd, sizeof(rnd)) != 0) {
        fprintf(stderr, "postern: no random bytes\n");
        return EX_SOFTWARE;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(state + 2 * i, 3, "%02x", rnd[i]);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) {
        fprintf(stderr, "postern: cannot listen on 127.0.0.1: %s\n",
                strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return EX_OSERR;
    }
    snprintf(redirect, sizeof(redirect), "http://127.0.0.1:%u/",
             (unsigned)ntohs(sa.sin_port));
    url = oauth_authorize_url(&x->client, redirect, state, challenge);
    if (url == NULL) {
        close(lfd);
        return EX_SOFTWARE;
    }
    printf("Open this address in a browser and sign in:\n%s\n", url);
    printf("Waiting for the redirect to %s ...\n", redirect);
    fflush(stdout);
    free(url);
    fd = loopback_wait(lfd, head, sizeof(head));
    close(lfd);
    if (fd < 0) {
        fprintf(stderr, "postern: no redirect came back\n");
        return EX_TEMPFAIL;
    }
    if (strncmp(head, "GET /?", 6) == 0) {
        char *sp = strchr(head + 6, ' ');

        if (sp != NULL)
            *sp = '\0';
        code = query_value(head + 6, "code");
        got_state = query_value(head + 6, "state");
        oerr = query_value(head + 6, "error");
    }
    if (write(fd, page, sizeof(page) - 1) < 0) {
        /* the browser went: the code is what matters */
    }
    close(fd);
    OPENSSL_cleanse(head, sizeof(head));
    if (got_state == NULL || strcmp(got_state, state) != 0) {
        fprintf(stderr, "postern: the redirect's state does not match: "
                "refused\n");
    } else if (code == NULL) {
        fprintf(stderr, "postern: sign-in refused: %s\n",
                oerr != NULL ? oerr : "no code");
        rc = EX_NOPERM;
    } else {
        st = oauth_code_exchange(&x->client, code, redirect, verifier,
                                 (int64_t)time(NULL), &t, &e);
        if (st != OAUTH_OK) {
            print_error("code exchange", st, &e);
            rc = st == OAUTH_TEMPORARY ? EX_TEMPFAIL : EX_NOPERM;
        } else {
            if (t.refresh_token == NULL)
                fprintf(stderr, "postern: warning: no refresh token came "
                        "back (Google needs prompt=consent and "
                        "access_type=offline: both are sent)\n");
            printf("Signed in.\n");
            rc = store_tokens(x, relay, &t);
        }
    }
    if (code != NULL)
        OPENSSL_clear_free(code, strlen(code));
    free(got_state);
    free(oerr);
    OPENSSL_cleanse(verifier, sizeof(verifier));
    return rc;
}

static int
login_app(struct relay_ctx *x, const char *relay)
{
    struct oauth_error e;
    struct oauth_token t;
    enum oauth_status st = oauth_token_request(&x->client, NULL,
                                               (int64_t)time(NULL), &t, &e);

    if (st != OAUTH_OK) {
        print_error("client_credentials", st, &e);
        return st == OAUTH_TEMPORARY ? EX_TEMPFAIL : EX_NOPERM;
    }
    printf("oauth2_grant = client_credentials: nothing to sign in to; the "
           "settings work (a token was issued).\n");
    return store_tokens(x, relay, &t);
}

static void
print_time(const char *label, int64_t t)
{
    char d[DATE_RFC5322_MAX];

    if (t <= 0) {
        printf("%s: -\n", label);
        return;
    }
    date_rfc5322((time_t)t, d, sizeof(d));
    printf("%s: %s\n", label, d);
}

/* A value of "key value" lines (the control socket's answer). */
static const char *
answer_value(const char *text, const char *key, char *out, size_t n)
{
    size_t klen = strlen(key);

    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);

        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            snprintf(out, n, "%.*s", (int)(len - klen - 1), p + klen + 1);
            return out;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return NULL;
}

static int
cmd_status(struct relay_ctx *x, const char *relay)
{
    const struct config_relay *rc = x->rc;
    struct oauth_token t;
    struct pst_buf answer;
    char err[512], cmd[128], v[256];
    int64_t now = (int64_t)time(NULL);
    int exists = 0, running, paused = 0, usable, relogin, temp;

    if (rc->oauth2_token_file != NULL &&
        oauth_token_load(rc->oauth2_token_file, &t, &exists, err,
                         sizeof(err)) < 0) {
        fprintf(stderr, "postern: %s\n", err);
        return EX_DATAERR;
    }
    if (rc->oauth2_token_file == NULL)
        memset(&t, 0, sizeof(t));
    pst_buf_init(&answer, 65536, 0);
    snprintf(cmd, sizeof(cmd), "relay %s", relay);
    running = control_call(x->cfg->spool, cmd, &answer, err, sizeof(err));
    printf("relay: %s\ngrant: %s\nuser: %s\n", relay,
           rc->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS
               ? "client_credentials"
               : "refresh_token",
           rc->user);
    printf("token file: %s%s\n",
           rc->oauth2_token_file != NULL ? rc->oauth2_token_file : "-",
           rc->oauth2_token_file != NULL && !exists ? " (missing)" : "");
    printf("refresh token: %s\n", t.refresh_token != NULL ? "present"
                                                          : "none");
    print_time("access token expires", t.expires_at);
    print_time("last refresh", t.refreshed_at);
    if (t.last_error[0] != '\0') {
        printf("last refresh error: %s%s%s (HTTP %ld)\n", t.last_error,
               t.last_aadsts[0] ? " " : "", t.last_aadsts, t.last_http);
        print_time("last refresh error at", t.last_error_at);
    } else {
        printf("last refresh error: -\n");
    }
    if (running == 1) {
        paused = answer_value((const char *)answer.data, "paused", v,
                              sizeof(v)) != NULL &&
                 strcmp(v, "1") == 0;
        printf("posternd: running, relay %s\n",
               paused ? "paused (log in again)" : "active");
    } else {
        printf("posternd: %s\n", running == 0 ? "not running" : err);
    }
    relogin = paused || strcmp(t.last_error, "invalid_grant") == 0 ||
              (rc->oauth2_grant == CONFIG_GRANT_REFRESH_TOKEN &&
               t.refresh_token == NULL);
    usable = !relogin && t.last_error[0] == '\0' &&
             (t.refresh_token != NULL || (t.access_token != NULL &&
                                          t.expires_at > now) ||
              rc->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS);
    temp = !relogin && !usable;
    oauth_token_clear(&t);
    pst_buf_clear(&answer);
    if (relogin) {
        printf("status: log in again: postern oauth login -c %s %s\n",
               x->cfg->file, relay);
        return EX_NOPERM;
    }
    if (temp) {
        printf("status: refreshing fails for now; posternd retries\n");
        return EX_TEMPFAIL;
    }
    printf("status: usable\n");
    return EX_OK;
}

int
cmd_oauth_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"loopback", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *conf = NULL, *verb, *relay;
    struct config *cfg;
    struct relay_ctx x;
    char err[CONFIG_ERR_MAX];
    int opt, loopback = 0, rc;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'l': loopback = 1; break;
        case 'h': usage(stdout); return EX_OK;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (conf == NULL || argc - optind != 2) {
        usage(stderr);
        return EX_USAGE;
    }
    verb = argv[optind];
    relay = argv[optind + 1];
    if (strcmp(verb, "login") != 0 && strcmp(verb, "status") != 0) {
        usage(stderr);
        return EX_USAGE;
    }
    if (config_load(conf, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "postern: %s\n", err);
        return EX_CONFIG;
    }
    rc = relay_ctx_init(&x, cfg, relay);
    if (rc == EX_OK) {
        if (strcmp(verb, "status") == 0)
            rc = cmd_status(&x, relay);
        else if (x.rc->oauth2_grant == CONFIG_GRANT_CLIENT_CREDENTIALS)
            rc = login_app(&x, relay);
        else if (loopback)
            rc = login_loopback(&x, relay);
        else
            rc = login_device(&x, relay);
    }
    relay_ctx_clear(&x);
    config_free(cfg);
    return rc;
}
