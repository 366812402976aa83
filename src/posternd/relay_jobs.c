/*
 * posternd - the relay's connections as the queue manager sees them
 * (relay_int.h): which job each connection gets, what each recipient's
 * reply means for the queue, and what a connection's end means for its
 * relay (retry time, concurrency, OAuth refresh).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "date.h"
#include "log.h"
#include "metrics.h"
#include "relay_int.h"

/* --- Connections ---------------------------------------------------------
 */

static struct relay_job *
job_new(struct relay_mgr *m, struct relay_msg *msg)
{
    const struct queue_env *e = msg->env;
    const struct config_relay *rc = msg->rt->cfg;
    struct relay_job *j = calloc(1, sizeof(*j));
    size_t n = queue_env_count(e, QUEUE_RCPT_PENDING), k = 0;

    if (j == NULL)
        return NULL;
    snprintf(j->id, sizeof(j->id), "%s", e->id);
    snprintf(j->path, sizeof(j->path), "%s/%s", m->cfg->queue, e->id);
    j->offset = e->offset;
    /* rewrite_sender: Microsoft 365 refuses a MAIL FROM the mailbox may
     * not send as (550 5.7.60). */
    j->sender = strdup(rc->rewrite_sender != CONFIG_REWRITE_NO &&
                               rc->user != NULL
                           ? rc->user
                           : e->sender);
    if (rc->rewrite_sender == CONFIG_REWRITE_ENVELOPE_FROM && rc->user)
        j->rewrite_from = strdup(rc->user);
    /* RFC 6409 §8: a submission server adds Date and Message-ID when
     * missing (Gmail refuses mail without Message-ID); stable across
     * attempts: the arrival and the queue id. */
    {
        char date[DATE_RFC5322_MAX], mid[QUEUE_ID_MAX + 300];

        date_rfc5322((time_t)e->arrival, date, sizeof(date));
        snprintf(mid, sizeof(mid), "<%s@%s>", e->id, m->cfg->hostname);
        j->add_date = strdup(date);
        j->add_msgid = strdup(mid);
    }
    j->rcpt = calloc(n, sizeof(*j->rcpt));
    j->idx = calloc(n, sizeof(*j->idx));
    j->msg = msg;
    if (j->sender == NULL || j->rcpt == NULL || j->idx == NULL ||
        j->add_date == NULL || j->add_msgid == NULL) {
        relay_job_clear(j);
        free(j);
        return NULL;
    }
    for (size_t i = 0; i < e->nrcpt; i++) {
        if (e->rcpt[i].state != QUEUE_RCPT_PENDING)
            continue;
        j->rcpt[k] = strdup(e->rcpt[i].addr);
        j->idx[k] = i;
        if (j->rcpt[k++] == NULL) {
            j->n = k;
            relay_job_clear(j);
            free(j);
            return NULL;
        }
    }
    j->n = k;
    return j;
}

/*
 * The oldest ready message of the connection's relay (relay.c keeps the
 * ready list), a bucket token spent.  With none, the connection may stay
 * open idle (the connection cache), unless the manager stops, the relay
 * is gone from the configuration, or it has more connections than its
 * limit now allows (432 4.3.2).
 */
static struct relay_job *
conn_next_job(void *ctx, struct relay_conn *c, int *linger)
{
    struct conn_ctx *cc = ctx;
    struct relay_mgr *m = cc->m;
    struct relay_rt *rt = cc->rt;
    struct relay_msg *msg;
    int64_t now = relay_now();
    uint64_t wait;
    struct relay_job *j;

    (void)c;
    if (!cc->started) {
        cc->started = 1;
        if (rt != NULL)
            rt->starting--;
    }
    if (m->stopping || rt == NULL || !rt->found)
        return NULL;
    *linger = rt->conns <= rt->limit;
    while ((msg = rt->ready_head) != NULL &&
           (msg->deleted || msg->due > now ||
            now - msg->env->arrival >= (int64_t)m->cfg->queue_lifetime))
        relay_msg_settle(m, msg); /* removed, expired, or waits */
    if (msg == NULL || !relay_rt_token(m, rt, 1, &wait))
        return NULL;
    j = job_new(m, msg);
    if (j == NULL)
        return NULL;
    relay_ready_remove(msg);
    msg->active = 1;
    return j;
}

/* Microsoft 365's 432 4.3.2 "sender thread limit exceeded": too many
 * connections for one mailbox (3).  One connection fewer, from the ones
 * open now, until connections end cleanly again (conn_closed()). */
static void
rt_slow_down(struct relay_rt *rt)
{
    unsigned limit = rt->conns > 1 ? rt->conns - 1 : 1;
    char k[16];

    if (limit >= rt->limit && rt->limit > 1)
        limit = rt->limit - 1;
    if (limit < 1)
        limit = 1;
    if (limit == rt->limit)
        return;
    rt->limit = limit;
    snprintf(k, sizeof(k), "%u", limit);
    log_event(LOG_LEVEL_INFO, "relay_concurrency", "relay", rt->name,
              "limit", k, "why", "432 4.3.2", NULL);
}

/* Whether job j took every recipient of e still pending, each accepted
 * with the message (the dot's 2xx), and none of e failed before. */
static int
all_sent(const struct queue_env *e, const struct relay_job *j)
{
    size_t pending = 0;

    if (!j->sent || j->msg_code < 200 || j->msg_code >= 300)
        return 0;
    for (size_t i = 0; i < e->nrcpt; i++) {
        if (e->rcpt[i].state == QUEUE_RCPT_FAILED)
            return 0;
        pending += e->rcpt[i].state == QUEUE_RCPT_PENDING;
    }
    if (pending != j->n)
        return 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->code[i] < 200 || j->code[i] >= 300 || j->idx[i] >= e->nrcpt ||
            e->rcpt[j->idx[i]].state != QUEUE_RCPT_PENDING)
            return 0;
    return 1;
}

/* What each recipient of a job got, as records. */
static void
conn_job_done(void *ctx, struct relay_conn *c, struct relay_job *j)
{
    struct conn_ctx *cc = ctx;
    struct relay_mgr *m = cc->m;
    struct relay_msg *msg = j->msg;
    struct pst_buf lines;
    int64_t now = relay_now();
    size_t pending = 0;
    const char *why = NULL;
    unsigned why_code = 0;

    (void)c;
    if (j->after_idle && !j->sent && !msg->reuse_failed &&
        (j->msg_code == 0 || j->msg_code == 421)) {
        int answered = 0;

        for (size_t i = 0; i < j->n; i++)
            answered |= j->code[i] != 0;
        if (!answered) {
            /* The smarthost closed the cached connection as we reused it
             * (its idle timeout: EOF, or 421, RFC 5321 §3.8) before it
             * said anything of this message: not an attempt.  The
             * message is due again at once, on a fresh connection: the
             * other idle ones are likely as stale. */
            log_event(LOG_LEVEL_INFO, "relay_reuse_failed", "qid", j->id,
                      "relay", cc->name, "reply",
                      j->msg_reply != NULL ? j->msg_reply : "-", NULL);
            msg->reuse_failed = 1;
            msg->active = 0;
            if (cc->rt != NULL)
                relay_quit_idle(m, cc->rt, cc);
            relay_msg_settle(m, msg);
            relay_job_clear(j);
            free(j);
            return;
        }
    }
    if (j->msg_code == 432 && cc->rt != NULL)
        rt_slow_down(cc->rt);
    pst_buf_init(&lines, 1u << 20, 0);
    for (size_t i = 0; i < j->n; i++) {
        unsigned code = j->code[i];
        const char *reply = j->reply[i];

        if (code >= 200 && code < 300 && j->sent) {
            /* The final dot's reply is the proof of delivery. */
            queue_env_format_record(QUEUE_REC_SENT, j->idx[i], now, 0,
                                    j->msg_code, j->msg_reply, &lines);
        } else if (code >= 500) {
            queue_env_format_record(QUEUE_REC_FAILED, j->idx[i], now, 0,
                                    code, reply, &lines);
        } else if (code >= 200 && code < 300 && j->msg_code >= 500) {
            /* MAIL, DATA or the dot refused for good: every recipient. */
            queue_env_format_record(QUEUE_REC_FAILED, j->idx[i], now, 0,
                                    j->msg_code, j->msg_reply, &lines);
        } else if (code == 0 && j->msg_code >= 500 && j->msg_code != 0 &&
                   !j->sent) {
            /* MAIL refused for good before any RCPT was answered. */
            queue_env_format_record(QUEUE_REC_FAILED, j->idx[i], now, 0,
                                    j->msg_code, j->msg_reply, &lines);
        } else {
            pending++;
            if (why == NULL && code >= 400 && reply != NULL) {
                why = reply;
                why_code = code;
            }
        }
    }
    if (pending > 0) {
        int64_t next = now + relay_backoff(m->cfg, msg->env->attempts + 1);

        if (why == NULL) {
            why = j->msg_reply != NULL ? j->msg_reply
                                       : "connection to the smarthost failed";
            why_code = j->msg_code;
        }
        queue_env_format_record(QUEUE_REC_DEFERRED, 0, now, next, why_code,
                                why, &lines);
        log_event(LOG_LEVEL_INFO, "relay_deferred", "qid", j->id, "relay",
                  cc->name, "reply", why, NULL);
    }
    metrics_relay_attempt(cc->name, metrics_relay_result_of(j, pending));
    msg->active = 0;
    if (all_sent(msg->env, j)) {
        /* Every recipient is done and none failed: removing the files
         * (relay_msg_settle()) is the record, and no fdatasync of the
         * "sent" lines is needed first.  A SIGKILL cannot undo an
         * unlink(2); a power cut before the queue directory reaches the
         * disk sends the message once more: the same window as a record
         * that did not reach it (docs/SECURITY.md "The relay"). */
        for (size_t i = 0; i < j->n; i++)
            msg->env->rcpt[j->idx[i]].state = QUEUE_RCPT_SENT;
        relay_msg_settle(m, msg);
    } else {
        relay_msg_record(m, msg, &lines);
    }
    pst_buf_clear(&lines);
    relay_job_clear(j);
    free(j);
}

static void
conn_closed(void *ctx, struct relay_conn *c, enum relay_conn_end end,
            unsigned code, const char *reply)
{
    struct conn_ctx *cc = ctx;
    struct relay_mgr *m = cc->m;
    struct relay_rt *rt = cc->rt;
    char ccode[16];

    (void)c;
    m->nconns--;
    if (!cc->started && rt != NULL)
        rt->starting--;
    if (cc->prev != NULL)
        cc->prev->next = cc->next;
    else
        m->conns = cc->next;
    if (cc->next != NULL)
        cc->next->prev = cc->prev;
    if (rt != NULL) {
        rt->conns--;
        if (end == RELAY_END_UNUSABLE && code == 535 && rt->found &&
            rt->cfg->auth == CONFIG_RELAY_AUTH_OAUTH2 &&
            relay_token_refused(m, rt)) {
            /* The token was refused: refreshed once, tried at once. */
            log_event(LOG_LEVEL_INFO, "oauth_token_refused", "relay",
                      rt->name, "reply", reply != NULL ? reply : "-", NULL);
        } else if (end == RELAY_END_UNUSABLE) {
            metrics_relay_attempt(rt->name, METRICS_RELAY_UNUSABLE);
            rt->failures++;
            rt->retry_at = relay_now() + relay_backoff(m->cfg, rt->failures);
            snprintf(rt->last_error, sizeof(rt->last_error), "%s",
                     reply != NULL ? reply : "connection failed");
            if (code == 432) {
                rt_slow_down(rt);
                rt->retry_at = relay_now() + m->cfg->retry_min;
            }
            snprintf(ccode, sizeof(ccode), "%u", code);
            log_event(LOG_LEVEL_WARN, "relay_unusable", "relay", rt->name,
                      "code", ccode, "reply", rt->last_error, NULL);
        } else if (end == RELAY_END_QUIT) {
            rt->failures = 0;
            rt->retried_535 = 0;
            rt->last_error[0] = '\0';
            if (rt->found && rt->limit < rt->cfg->max_connections)
                rt->limit++;
        }
    }
    free(cc->name);
    free(cc);
    relay_kick(m);
}

static const struct relay_conn_ops conn_ops = {
    .next_job = conn_next_job,
    .job_done = conn_job_done,
    .closed = conn_closed,
};

int
relay_conn_open(struct relay_mgr *m, struct relay_rt *rt, const char *token)
{
    /* Preference, or for OAuth: OAUTHBEARER, else XOAUTH2 (Microsoft
     * 365 offers XOAUTH2 only; Gmail both). */
    static const char *const bearer_mechs[] = {"OAUTHBEARER", "XOAUTH2",
                                               NULL};
    const char *names[CONFIG_MAX_MECHS + 1];
    const struct config_relay *rc = rt->cfg;
    struct relay_conn_config cfg = {
        .name = rt->name,
        .host = rc->host.host,
        .port = rc->host.port,
        .tls = rc->tls,
        .tls_ctx = rt->tls,
        .helo = m->cfg->hostname,
        .connect_timeout = rc->connect_timeout,
        .timeout = rc->timeout,
        .idle_ms = RELAY_CONN_IDLE_MS,
    };
    struct conn_ctx *cc = calloc(1, sizeof(*cc));
    struct relay_conn *c;
    int rc_;

    if (cc == NULL || (cc->name = strdup(rt->name)) == NULL) {
        free(cc);
        return -1;
    }
    cc->m = m;
    cc->rt = rt;
    if (rc->auth == CONFIG_RELAY_AUTH_PASSWORD) {
        cfg.user = rc->user;
        cfg.secret = rt->secret;
        cfg.secret_len = rt->secret_len;
    } else if (rc->auth == CONFIG_RELAY_AUTH_OAUTH2) {
        cfg.user = rc->user;
        cfg.secret = (const uint8_t *)token;
        cfg.secret_len = strlen(token);
        cfg.bearer = 1;
        cfg.mechs = bearer_mechs;
    }
    if (rc->mechs.n > 0) {
        for (size_t i = 0; i < rc->mechs.n; i++)
            names[i] = pst_sasl_mech_name(rc->mechs.v[i]);
        names[rc->mechs.n] = NULL;
        cfg.mechs = names;
    }
    rc_ = relay_conn_start(m->loop, &cfg, &conn_ops, cc, &c);
    if (rc_ < 0) {
        free(cc->name);
        free(cc);
        snprintf(rt->last_error, sizeof(rt->last_error), "%s",
                 uv_strerror(rc_));
        return -1;
    }
    cc->conn = c;
    cc->next = m->conns;
    if (m->conns != NULL)
        m->conns->prev = cc;
    m->conns = cc;
    rt->conns++;
    rt->starting++;
    m->nconns++;
    return 0;
}

