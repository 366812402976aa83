/*
 * posternd - the relays at run time (relay_rt, relay_int.h): each
 * configured [relay NAME] matched by name across reloads, with a copy
 * of its settings, its TLS context, its password file's secret (wiped
 * when freed), the token bucket of max_messages_per_minute and the
 * backoff of retries.  The queue manager is relay.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "fileio.h"
#include "log.h"
#include "relay_int.h"
#include "tls.h"

struct relay_rt *
relay_rt_find(const struct relay_mgr *m, const char *name)
{
    for (size_t i = 0; i < m->nrt; i++)
        if (m->rt[i]->found && strcmp(m->rt[i]->name, name) == 0)
            return m->rt[i];
    return NULL;
}

/* The secret of a password file: its first line. */
int
relay_read_secret(const char *path, uint8_t **out, size_t *len, char *err,
            size_t n)
{
    uint8_t buf[RELAY_SECRET_MAX];
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* A read error ends the secret there, as the end of the file does. */
    (void)fileio_read_full(fd, buf, sizeof(buf), &got);
    close(fd);
    for (size_t i = 0; i < got; i++)
        if (buf[i] == '\n' || buf[i] == '\r') {
            got = i;
            break;
        }
    *out = malloc(got + 1);
    if (*out == NULL) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, n, "out of memory");
        return -1;
    }
    memcpy(*out, buf, got);
    (*out)[got] = 0;
    *len = got;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

/* Bind rt to its section rc of the configuration: a TLS context, the
 * password.  What cannot be loaded keeps the previous one (logged). */
static void
rt_configure(struct relay_rt *rt, const struct config_relay *rc)
{
    struct tls_config tc = {
        .role = TLS_ROLE_CLIENT,
        .ca_file = rc->tls_cafile,
        .min_version = TLS_VERSION_1_2,
    };
    char err[512];

    rt->cfg = rc;
    rt->found = 1;
    if (rt->limit == 0 || rt->limit > rc->max_connections)
        rt->limit = rc->max_connections;
    if (rc->tls != CONFIG_RELAY_TLS_NONE &&
        tls_ctx_reload(&rt->tls, &tc, err, sizeof(err)) < 0)
        log_event(LOG_LEVEL_WARN, "relay_tls_failed", "relay", rt->name,
                  "error", err, NULL);
    if (rc->auth == CONFIG_RELAY_AUTH_PASSWORD) {
        uint8_t *s;
        size_t len;

        if (relay_read_secret(rc->password_file, &s, &len, err,
                              sizeof(err)) < 0) {
            log_event(LOG_LEVEL_WARN, "relay_password_failed", "relay",
                      rt->name, "error", err, "action",
                      rt->secret != NULL ? "keeping the previous one"
                                         : "AUTH will fail",
                      NULL);
        } else {
            if (rt->secret != NULL)
                OPENSSL_clear_free(rt->secret, rt->secret_len);
            rt->secret = s;
            rt->secret_len = len;
        }
    }
}

void
relay_rt_free(struct relay_rt *rt)
{
    if (rt == NULL)
        return;
    tls_ctx_free(rt->tls);
    relay_token_free(rt);
    if (rt->secret != NULL)
        OPENSSL_clear_free(rt->secret, rt->secret_len);
    free(rt->name);
    free(rt);
}

void
relay_rt_sync(struct relay_mgr *m)
{
    const struct config *cfg = m->cfg;

    for (size_t i = 0; i < m->nrt; i++)
        m->rt[i]->found = 0;
    for (size_t i = 0; i < cfg->n_relays; i++) {
        const struct config_relay *rc = &cfg->relays[i];
        struct relay_rt *rt = NULL, **v;

        for (size_t k = 0; k < m->nrt; k++)
            if (strcmp(m->rt[k]->name, rc->name) == 0)
                rt = m->rt[k];
        if (rt == NULL) {
            rt = calloc(1, sizeof(*rt));
            v = realloc(m->rt, (m->nrt + 1) * sizeof(*v));
            if (rt == NULL || v == NULL || (rt->name = strdup(rc->name)) ==
                                               NULL) {
                free(rt);
                if (v != NULL)
                    m->rt = v;
                log_event(LOG_LEVEL_WARN, "relay_failed", "relay", rc->name,
                          "error", "out of memory", NULL);
                continue;
            }
            m->rt = v;
            m->rt[m->nrt++] = rt;
            rt->tokens = 1.0;
            rt->refill_ms = uv_now(m->loop);
        }
        rt_configure(rt, rc);
        relay_token_configure(m, rt);
    }
    for (struct relay_msg *msg = m->msgs; msg != NULL; msg = msg->next) {
        relay_ready_remove(msg); /* relay_run() places it again */
        msg->rt = relay_rt_find(m, msg->env->relay);
    }
}

/*
 * max_messages_per_minute as a token bucket (0: no limit): rate tokens
 * a minute, at most a second's worth at once.  Returns 1 when a token is
 * there (taken if take), or 0 with *wait_ms until the next one.
 */
int
relay_rt_token(struct relay_mgr *m, struct relay_rt *rt, int take,
         uint64_t *wait_ms)
{
    unsigned rate = rt->cfg->max_messages_per_minute;
    uint64_t now = uv_now(m->loop);

    if (rate == 0)
        return 1;
    rt->tokens += (double)(now - rt->refill_ms) * rate / 60000.0;
    /* A burst of at most a second's worth (at least one): the rate is
     * kept smoothly, not as bursts of a whole minute's messages. */
    if (rt->tokens > (rate >= 60 ? rate / 60.0 : 1.0))
        rt->tokens = rate >= 60 ? rate / 60.0 : 1.0;
    rt->refill_ms = now;
    if (rt->tokens >= 1.0) {
        if (take)
            rt->tokens -= 1.0;
        return 1;
    }
    *wait_ms = (uint64_t)((1.0 - rt->tokens) * 60000.0 / rate) + 1;
    return 0;
}

/* retry_min doubling per attempt, up to retry_max (seconds). */
int64_t
relay_backoff(const struct config *cfg, unsigned attempts)
{
    int64_t d = cfg->retry_min;

    for (unsigned i = 1; i < attempts && d < (int64_t)cfg->retry_max; i++)
        d *= 2;
    return d > (int64_t)cfg->retry_max ? (int64_t)cfg->retry_max : d;
}
