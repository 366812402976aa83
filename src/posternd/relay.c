/*
 * posternd - the relay's queue manager (see relay.h).
 *
 * Each queued message is a relay_msg: its envelope (queue_env, kept in
 * step with the file), the relay it goes to, and whether a connection or
 * a pool job has it.  Each configured relay is a relay_rt that survives
 * reloads: open connections, the concurrency limit (lowered by
 * Microsoft's 432 4.3.2, raised again by each clean QUIT), a token bucket
 * for max_messages_per_minute, and a relay-wide retry time after a
 * connection that could not be used (DNS, connect, TLS, greeting, AUTH).
 *
 * Order of events for one attempt: a connection asks for a job
 * (next_job: the oldest due message of its relay, a bucket token spent);
 * it reports the job (job_done); the records of what each recipient got
 * are appended and fdatasync'd on the pool; only then does the manager
 * act on them: the bounce of the failed recipients is queued (and its
 * "bounced" record written), and a finished message removed.  A job that
 * leaves nothing to do (every recipient accepted, none refused before)
 * writes no record: the removal is the record.  A crash at any point
 * repeats at most the step in progress: an upstream 250 whose record (or
 * removal) did not reach the disk sends the message once more (the
 * window Postfix has too, docs/SECURITY.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/rand.h>

#include "bounce.h"
#include "config.h"
#include "date.h"
#include "deliver_maildir.h"
#include "fileio.h"
#include "header.h"
#include "log.h"
#include "queue_file.h"
#include "relay_int.h"
#include "tls.h"

#define RELAY_ORPHAN_AGE 60         /* seconds: a commit is long over */
#define RELAY_IDLE_REFRESH (7 * 86400) /* OAuth: refresh an idle account */


int64_t
relay_now(void)
{
    return (int64_t)time(NULL);
}

/* --- Messages ------------------------------------------------------------ */

/* Into the manager's list, kept in order of arrival: a new message goes
 * at the end in O(1). */
static struct relay_msg *
msg_add(struct relay_mgr *m, struct queue_env *env)
{
    struct relay_msg *msg = calloc(1, sizeof(*msg)), *after;

    if (msg == NULL) {
        log_event(LOG_LEVEL_WARN, "queue_failed", "qid", env->id, "error",
                  "out of memory", NULL);
        queue_env_free(env);
        return NULL;
    }
    msg->env = env;
    msg->rt = relay_rt_find(m, env->relay);
    msg->due = env->next_attempt;
    for (after = m->msgs_tail;
         after != NULL && after->env->arrival > env->arrival;
         after = after->prev)
        ;
    msg->prev = after;
    msg->next = after != NULL ? after->next : m->msgs;
    if (msg->next != NULL)
        msg->next->prev = msg;
    else
        m->msgs_tail = msg;
    if (after != NULL)
        after->next = msg;
    else
        m->msgs = msg;
    m->nmsgs++;
    if (msg->rt == NULL)
        log_event(LOG_LEVEL_WARN, "queue_relay_unknown", "qid", env->id,
                  "relay", env->relay, "action",
                  "kept until a relay of that name is configured", NULL);
    return msg;
}

static void
msg_free(struct relay_mgr *m, struct relay_msg *msg)
{
    relay_ready_remove(msg);
    if (msg->prev != NULL)
        msg->prev->next = msg->next;
    else
        m->msgs = msg->next;
    if (msg->next != NULL)
        msg->next->prev = msg->prev;
    else
        m->msgs_tail = msg->prev;
    m->nmsgs--;
    queue_env_free(msg->env);
    free(msg);
}

/* --- Ready lists ---------------------------------------------------------
 * Each relay's due messages, oldest arrival first: what conn_next_job()
 * takes and relay_kick() counts, without walking the queue. */

void
relay_ready_remove(struct relay_msg *msg)
{
    struct relay_rt *rt = msg->ready;

    if (rt == NULL)
        return;
    if (msg->rprev != NULL)
        msg->rprev->rnext = msg->rnext;
    else
        rt->ready_head = msg->rnext;
    if (msg->rnext != NULL)
        msg->rnext->rprev = msg->rprev;
    else
        rt->ready_tail = msg->rprev;
    msg->rprev = msg->rnext = NULL;
    msg->ready = NULL;
    rt->nready--;
}

/* In order of arrival, from the end: O(1) for a new message. */
static void
ready_insert(struct relay_rt *rt, struct relay_msg *msg)
{
    struct relay_msg *after;

    relay_ready_remove(msg);
    for (after = rt->ready_tail;
         after != NULL && after->env->arrival > msg->env->arrival;
         after = after->rprev)
        ;
    msg->rprev = after;
    msg->rnext = after != NULL ? after->rnext : rt->ready_head;
    if (msg->rnext != NULL)
        msg->rnext->rprev = msg;
    else
        rt->ready_tail = msg;
    if (after != NULL)
        after->rnext = msg;
    else
        rt->ready_head = msg;
    msg->ready = rt;
    rt->nready++;
}

struct relay_msg *
relay_msg_find(const struct relay_mgr *m, const char *id)
{
    for (struct relay_msg *msg = m->msgs; msg != NULL; msg = msg->next)
        if (strcmp(msg->env->id, id) == 0)
            return msg;
    return NULL;
}

/* --- Pool jobs ----------------------------------------------------------- */

static void
work_free(struct relay_work *w)
{
    pst_buf_clear(&w->lines);
    queue_env_free(w->loaded);
    free(w->queue);
    free(w->spool);
    free(w->hostname);
    free(w->mailbox);
    free(w->mail_root);
    free(w->remote);
    free(w);
}

static void work_run(uv_work_t *req);
static void work_done(uv_work_t *req, int status);

struct relay_work *
relay_work_new(struct relay_mgr *m, enum relay_work_kind kind,
         struct relay_msg *msg)
{
    struct relay_work *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->m = m;
    w->kind = kind;
    w->msg = msg;
    if (msg != NULL)
        snprintf(w->id, sizeof(w->id), "%s", msg->env->id);
    pst_buf_init(&w->lines, 1u << 20, 0);
    w->queue = strdup(m->cfg->queue);
    if (w->queue == NULL) {
        work_free(w);
        return NULL;
    }
    return w;
}

int
relay_work_queue(struct relay_work *w)
{
    w->req.data = w;
    if (uv_queue_work(w->m->loop, &w->req, work_run, work_done) < 0) {
        work_free(w);
        return -1;
    }
    w->m->works++;
    if (w->msg != NULL) {
        w->msg->busy = 1;
        relay_ready_remove(w->msg);
    }
    return 0;
}

static void
work_run(uv_work_t *req)
{
    struct relay_work *w = req->data;
    char path[PATH_MAX];
    int fd;

    switch (w->kind) {
    case WORK_LOAD:
        w->rc = queue_file_load(w->queue, w->id, &w->loaded, w->err,
                                sizeof(w->err));
        break;
    case WORK_RECORD:
        /* All of this attempt's records in one write(2), one
         * fdatasync(2): acted on only once durable. */
        snprintf(path, sizeof(path), "%s/%s.env", w->queue, w->id);
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        w->rc = fd < 0 ? PST_EIO : 0;
        if (fd >= 0) {
            if (fileio_write_all(fd, w->lines.data, w->lines.len) < 0 ||
                fdatasync(fd) != 0)
                w->rc = PST_EIO;
            if (w->rc != 0)
                snprintf(w->err, sizeof(w->err), "%.400s: %s", path,
                         strerror(errno));
            close(fd);
            /* In memory as on disk: the same parser, here on the pool. */
            if (w->rc == 0 &&
                queue_file_load(w->queue, w->id, &w->loaded, w->err,
                                sizeof(w->err)) != 0)
                w->loaded = NULL;
        } else {
            snprintf(w->err, sizeof(w->err), "%.400s: %s", path,
                     strerror(errno));
        }
        break;
    case WORK_BOUNCE:
        w->rc = relay_bounce_queue(w, w->msg->env);
        break;
    case WORK_REMOVE:
        w->rc = queue_file_remove(w->queue, w->id);
        if (w->rc != 0 && errno == ENOENT)
            w->rc = 0;
        if (w->rc != 0)
            snprintf(w->err, sizeof(w->err), "%s", strerror(errno));
        break;
    }
}

static void
work_done(uv_work_t *req, int status)
{
    struct relay_work *w = req->data;
    struct relay_mgr *m = w->m;
    struct relay_msg *msg = w->msg;

    m->works--;
    if (msg != NULL)
        msg->busy = 0;
    if (status != 0 && w->rc == 0)
        w->rc = PST_EIO;
    switch (w->kind) {
    case WORK_LOAD:
        if (w->rc == 0) {
            struct relay_msg *added = msg_add(m, w->loaded);

            w->loaded = NULL;
            if (added != NULL)
                relay_msg_settle(m, added);
        } else {
            log_event(LOG_LEVEL_WARN, "queue_load_failed", "qid", w->id,
                      "error", w->err, NULL);
        }
        break;
    case WORK_RECORD:
        if (w->rc != 0) {
            /* The records are not on disk: nothing is acted on; the
             * message goes again later (a duplicate at worst). */
            log_event(LOG_LEVEL_WARN, "queue_record_failed", "qid", w->id,
                      "error", w->err, NULL);
            msg->due = relay_now() +
                       relay_backoff(m->cfg, msg->env->attempts + 1);
        } else {
            if (w->loaded != NULL) {
                queue_env_free(msg->env);
                msg->env = w->loaded;
                w->loaded = NULL;
            }
            msg->due = msg->env->next_attempt;
        }
        relay_msg_settle(m, msg);
        break;
    case WORK_BOUNCE:
        if (w->rc != 0) {
            log_event(LOG_LEVEL_WARN, "bounce_failed", "qid", msg->env->id,
                      "error", w->err, NULL);
            msg->due = relay_now() + relay_backoff(m->cfg, 1);
        } else {
            msg->env->bounced = 1;
            log_event(LOG_LEVEL_INFO, "bounced", "qid", msg->env->id,
                      "to", msg->env->sender, "local",
                      w->sender_local ? "yes" : "no", NULL);
            if (!w->sender_local)
                relay_mgr_post(m, w->id);
        }
        relay_msg_settle(m, msg);
        break;
    case WORK_REMOVE:
        if (w->rc != 0) {
            log_event(LOG_LEVEL_WARN, "queue_remove_failed", "qid",
                      msg->env->id, "error", w->err, NULL);
            relay_wake_at(m, relay_now() + relay_backoff(m->cfg, 1));
        } else {
            log_event(LOG_LEVEL_INFO, msg->deleted ? "queue_deleted"
                                                   : "queue_done",
                      "qid", msg->env->id, NULL);
            msg_free(m, msg);
        }
        if (w->done != NULL)
            w->done(w->done_ctx, w->rc);
        break;
    }
    work_free(w);
    relay_kick(m);
}

static void msg_expire(struct relay_mgr *m, struct relay_msg *msg,
                       int64_t now);

/* What to do with a message after its records: bounce, remove, expire,
 * or wait: in its relay's ready list when due, else until the timer. */
void
relay_msg_settle(struct relay_mgr *m, struct relay_msg *msg)
{
    const struct queue_env *e = msg->env;
    struct relay_work *w;
    int64_t now, lifetime_end;

    relay_ready_remove(msg);
    if (msg->busy || msg->active)
        return;
    if (msg->deleted || (queue_env_finished(e) &&
                         (e->bounced || e->sender[0] == '\0' ||
                          queue_env_count(e, QUEUE_RCPT_FAILED) == 0))) {
        if (!msg->deleted && queue_env_count(e, QUEUE_RCPT_FAILED) > 0 &&
            e->sender[0] == '\0')
            /* RFC 5321 §4.5.5: never a bounce of a bounce. */
            log_event(LOG_LEVEL_INFO, "bounce_dropped", "qid", e->id,
                      "why", "the sender is <>", NULL);
        w = relay_work_new(m, WORK_REMOVE, msg);
        if (w == NULL || relay_work_queue(w) < 0)
            log_event(LOG_LEVEL_WARN, "queue_remove_failed", "qid", e->id,
                      "error", "cannot start", NULL);
        return;
    }
    if (!e->bounced && e->sender[0] != '\0' &&
        queue_env_count(e, QUEUE_RCPT_FAILED) > 0 &&
        queue_env_finished(e)) {
        w = relay_work_new(m, WORK_BOUNCE, msg);
        if (w == NULL)
            return;
        w->spool = strdup(m->cfg->spool);
        w->hostname = strdup(m->cfg->hostname);
        w->mailbox = m->cfg->mailbox != NULL ? strdup(m->cfg->mailbox)
                                             : NULL;
        w->mail_root = config_mailbox_root(m->cfg->mailbox);
        w->remote = msg->rt != NULL ? strdup(msg->rt->cfg->host.host) : NULL;
        w->sender_local = m->cfg->mailbox != NULL &&
                          relay_domain_local(m->cfg, e->sender);
        if (w->spool == NULL || w->hostname == NULL || relay_work_queue(w) < 0)
            log_event(LOG_LEVEL_WARN, "bounce_failed", "qid", e->id,
                      "error", "cannot start", NULL);
        return;
    }
    if (queue_env_finished(e))
        return; /* a bounce that could not start: relay_run() again */
    now = relay_now();
    lifetime_end = e->arrival + (int64_t)m->cfg->queue_lifetime;
    if (now >= lifetime_end) {
        msg_expire(m, msg, now);
        return;
    }
    relay_wake_at(m, lifetime_end);
    if (msg->due > now) {
        relay_wake_at(m, msg->due);
        return;
    }
    if (msg->rt != NULL && !m->stopping)
        ready_insert(msg->rt, msg);
}

/* Record lines for msg, on the pool; acted on when durable. */
void
relay_msg_record(struct relay_mgr *m, struct relay_msg *msg,
                 struct pst_buf *lines)
{
    struct relay_work *w;

    if (lines->len == 0) {
        relay_msg_settle(m, msg);
        return;
    }
    w = relay_work_new(m, WORK_RECORD, msg);
    if (w == NULL || pst_buf_append(&w->lines, lines->data, lines->len) < 0 ||
        relay_work_queue(w) < 0) {
        log_event(LOG_LEVEL_WARN, "queue_record_failed", "qid",
                  msg->env->id, "error", "cannot start", NULL);
        msg->due = relay_now() + relay_backoff(m->cfg, msg->env->attempts + 1);
        relay_wake_at(m, msg->due);
    }
}

/* queue_lifetime is over: every recipient still pending fails (4.4.7,
 * RFC 3463: delivery time expired). */
static void
msg_expire(struct relay_mgr *m, struct relay_msg *msg, int64_t now)
{
    struct pst_buf lines;
    const char *why = msg->env->last_reply != NULL
                          ? msg->env->last_reply
                          : msg->rt != NULL && msg->rt->last_error[0]
                                ? msg->rt->last_error
                                : "delivery time expired";

    pst_buf_init(&lines, 1u << 20, 0);
    for (size_t i = 0; i < msg->env->nrcpt; i++)
        if (msg->env->rcpt[i].state == QUEUE_RCPT_PENDING)
            queue_env_format_record(QUEUE_REC_FAILED, i, now, 0, 0, why,
                                    &lines);
    log_event(LOG_LEVEL_INFO, "queue_expired", "qid", msg->env->id,
              "relay", msg->env->relay, NULL);
    relay_msg_record(m, msg, &lines);
    pst_buf_clear(&lines);
}

/* --- Scheduling ---------------------------------------------------------- */

static void
on_timer(uv_timer_t *t)
{
    struct relay_mgr *m = t->data;

    m->wake_ms = UINT64_MAX;
    relay_run(m);
}

/* The timer fires in ms milliseconds, unless it fires sooner already. */
static void
wake_in(struct relay_mgr *m, uint64_t ms)
{
    uint64_t at = uv_now(m->loop) + ms;

    if (at >= m->wake_ms || m->closing || m->stopping)
        return;
    m->wake_ms = at;
    uv_timer_start(&m->timer, on_timer, ms, 0);
}

void
relay_wake_at(struct relay_mgr *m, int64_t at)
{
    int64_t ms = (at - relay_now()) * 1000;

    wake_in(m, ms > 0 ? (uint64_t)ms : 0);
}

/*
 * Look at every message again (the timer, a reload, a flush): settle what
 * needs a bounce or removal, expire what outlived queue_lifetime, put
 * what is due in its relay's ready list (rebuilt in order of arrival, in
 * one pass), set the timer for the next thing that will be due, then
 * relay_kick().
 */
void
relay_run(struct relay_mgr *m)
{
    if (m->cfg == NULL || m->cfg->queue == NULL)
        return;
    uv_timer_stop(&m->timer);
    m->wake_ms = UINT64_MAX;
    for (size_t i = 0; i < m->nrt; i++)
        while (m->rt[i]->ready_head != NULL)
            relay_ready_remove(m->rt[i]->ready_head);
    for (struct relay_msg *msg = m->msgs; msg != NULL; msg = msg->next)
        relay_msg_settle(m, msg); /* frees nothing: the pool does */
    relay_kick(m);
}

/* Whether rt's bucket has n tokens now (none taken); if not, *wait_ms
 * until it has, or 0 when it never holds that many at once. */
static int
tokens_for(struct relay_mgr *m, struct relay_rt *rt, unsigned n,
           uint64_t *wait_ms)
{
    unsigned rate = rt->cfg->max_messages_per_minute;
    double cap = rate >= 60 ? rate / 60.0 : 1.0;

    if (rate == 0)
        return 1;
    (void)relay_rt_token(m, rt, 0, wait_ms); /* the refill */
    if (rt->tokens >= (double)n)
        return 1;
    *wait_ms = (double)n <= cap ? (uint64_t)(((double)n - rt->tokens) *
                                             60000.0 / rate) + 1
                                : 0;
    return 0;
}

/* One relay: the OAuth refresh of an idle account, idle connections
 * woken for its ready messages, then new connections for the rest. */
static void
kick_rt(struct relay_mgr *m, struct relay_rt *rt, int64_t now)
{
    const char *token = NULL;
    uint64_t wait = 0;
    size_t need;

    /* OAuth: an idle account is refreshed at least weekly. */
    if (rt->cfg->auth == CONFIG_RELAY_AUTH_OAUTH2 &&
        rt->cfg->oauth2_grant == CONFIG_GRANT_REFRESH_TOKEN &&
        rt->tok.refresh_token != NULL && !rt->paused) {
        int64_t idle = rt->tok.refreshed_at + RELAY_IDLE_REFRESH;
        int64_t w;

        if (idle <= now)
            relay_token_ready(m, rt, INT64_MAX, &token, &w);
        else
            relay_wake_at(m, idle);
        token = NULL;
    }
    if (rt->nready == 0)
        return;
    if (rt->retry_at > now) {
        relay_wake_at(m, rt->retry_at);
        return;
    }
    /* The cache first: an idle connection takes the oldest ready message
     * (conn_next_job()).  Each wake may end a connection (closed() runs:
     * the next one is taken before). */
    for (struct conn_ctx *cc = m->conns, *next; cc != NULL && rt->nready > 0;
         cc = next) {
        next = cc->next;
        if (cc->rt != rt || !relay_conn_idle(cc->conn))
            continue;
        switch (relay_conn_wake(cc->conn)) {
        case 0:
            /* No bucket token: no job for anyone until the next one. */
            if (!relay_rt_token(m, rt, 0, &wait))
                wake_in(m, wait);
            return;
        case -1:
            next = m->conns; /* it ended: the list may have changed */
            break;
        default:
            break;
        }
    }
    if (rt->nready <= rt->starting)
        return; /* the connections being set up take them */
    need = rt->nready - rt->starting;
    if (rt->cfg->auth == CONFIG_RELAY_AUTH_OAUTH2) {
        int64_t w;

        /* No usable token: a refresh runs (its end runs this again), or
         * waits for its retry, or the relay is paused. */
        if (!relay_token_ready(m, rt, now, &token, &w)) {
            if (w > 0)
                relay_wake_at(m, w);
            return;
        }
    }
    /* A connection per ready message nobody takes, within the limit;
     * each one asks for its jobs.  None without a bucket token for it
     * beyond those the connections being set up will take. */
    while (need > 0 && rt->conns < rt->limit) {
        if (!tokens_for(m, rt, rt->starting + 1, &wait)) {
            if (wait > 0)
                wake_in(m, wait);
            break;
        }
        if (relay_conn_open(m, rt, token) < 0)
            break;
        need--;
    }
}

void
relay_kick(struct relay_mgr *m)
{
    if (m->cfg == NULL || m->cfg->queue == NULL)
        return;
    if (m->kicking) {
        /* A connection ended inside a wake: once more when done. */
        m->rekick = 1;
        return;
    }
    m->kicking = 1;
    do {
        int64_t now = relay_now();

        m->rekick = 0;
        for (size_t i = 0; i < m->nrt && !m->stopping; i++)
            if (m->rt[i]->found)
                kick_rt(m, m->rt[i], now);
    } while (m->rekick);
    m->kicking = 0;
}

/* --- Public -------------------------------------------------------------- */

static void
on_wake(uv_async_t *h)
{
    struct relay_mgr *m = h->data;
    char **ids;
    size_t n;

    uv_mutex_lock(&m->mu);
    ids = m->inbox;
    n = m->ninbox;
    m->inbox = NULL;
    m->ninbox = 0;
    uv_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        struct relay_work *w = relay_work_new(m, WORK_LOAD, NULL);

        if (w != NULL) {
            snprintf(w->id, sizeof(w->id), "%s", ids[i]);
            if (relay_work_queue(w) < 0)
                log_event(LOG_LEVEL_WARN, "queue_load_failed", "qid",
                          ids[i], "error", "cannot start", NULL);
        }
        free(ids[i]);
    }
    free(ids);
}

void
relay_mgr_post(struct relay_mgr *m, const char *id)
{
    char *copy = strdup(id);
    char **v;

    if (copy == NULL)
        return;
    uv_mutex_lock(&m->mu);
    v = realloc(m->inbox, (m->ninbox + 1) * sizeof(*v));
    if (v != NULL) {
        m->inbox = v;
        m->inbox[m->ninbox++] = copy;
        copy = NULL;
    }
    uv_mutex_unlock(&m->mu);
    free(copy);
    uv_async_send(&m->wake);
}

static int
env_cmp_arrival(const void *a, const void *b)
{
    const struct queue_env *x = *(struct queue_env *const *)a;
    const struct queue_env *y = *(struct queue_env *const *)b;

    return (x->arrival > y->arrival) - (x->arrival < y->arrival);
}

void
relay_quit_idle(struct relay_mgr *m, const struct relay_rt *rt,
                const struct conn_ctx *except)
{
    int was = m->kicking;

    /* No relay_kick() inside (it could end a connection of the list):
     * the closed() that follows runs it. */
    m->kicking = 1;
    for (struct conn_ctx *cc = m->conns, *next; cc != NULL; cc = next) {
        next = cc->next;
        if (cc != except && (rt == NULL || cc->rt == rt))
            relay_conn_quit(cc->conn);
    }
    m->kicking = was;
}

int
relay_mgr_new(uv_loop_t *loop, const struct config *cfg,
              struct relay_mgr **out, char *err, size_t err_size)
{
    struct relay_mgr *m = calloc(1, sizeof(*m));
    char **ids = NULL;
    struct queue_env **envs;
    size_t n = 0, nenvs = 0;
    int removed;

    *out = NULL;
    if (m == NULL)
        return PST_ENOMEM;
    m->loop = loop;
    m->cfg = cfg;
    m->wake_ms = UINT64_MAX;
    uv_mutex_init(&m->mu);
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    uv_async_init(loop, &m->wake, on_wake);
    m->wake.data = m;
    *out = m;
    if (cfg->queue == NULL)
        return 0;
    if (queue_file_check_dir(cfg->queue, err, err_size) < 0)
        return PST_EIO;
    relay_rt_sync(m);
    removed = queue_file_orphans(cfg->queue, RELAY_ORPHAN_AGE);
    if (removed > 0) {
        char k[16];

        snprintf(k, sizeof(k), "%d", removed);
        log_event(LOG_LEVEL_INFO, "queue_cleaned", "files", k, NULL);
    }
    if (queue_file_list(cfg->queue, &ids, &n) < 0) {
        snprintf(err, err_size, "queue %s: cannot list: %s", cfg->queue,
                 strerror(errno));
        return PST_EIO;
    }
    envs = calloc(n > 0 ? n : 1, sizeof(*envs));
    if (envs == NULL) {
        queue_file_ids_free(ids, n);
        snprintf(err, err_size, "out of memory");
        return PST_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct queue_env *e;
        char why[256];

        if (queue_file_load(cfg->queue, ids[i], &e, why, sizeof(why)) == 0)
            envs[nenvs++] = e;
        else
            log_event(LOG_LEVEL_WARN, "queue_load_failed", "qid", ids[i],
                      "error", why, NULL);
    }
    queue_file_ids_free(ids, n);
    /* In order of arrival: each one then goes at the list's end. */
    qsort(envs, nenvs, sizeof(*envs), env_cmp_arrival);
    for (size_t i = 0; i < nenvs; i++)
        msg_add(m, envs[i]);
    free(envs);
    if (n > 0) {
        char k[24];

        snprintf(k, sizeof(k), "%zu", m->nmsgs);
        log_event(LOG_LEVEL_INFO, "queue_loaded", "messages", k, NULL);
    }
    relay_run(m);
    return 0;
}

void
relay_mgr_reload(struct relay_mgr *m, const struct config *cfg)
{
    m->cfg = cfg;
    if (cfg->queue == NULL)
        return;
    relay_quit_idle(m, NULL, NULL);
    relay_rt_sync(m);
    relay_run(m);
}

void
relay_mgr_stop(struct relay_mgr *m)
{
    m->stopping = 1;
    uv_timer_stop(&m->timer);
    m->wake_ms = UINT64_MAX;
    relay_quit_idle(m, NULL, NULL);
}

void
relay_mgr_abort(struct relay_mgr *m)
{
    m->stopping = 1;
    uv_timer_stop(&m->timer);
    m->wake_ms = UINT64_MAX;
    /* Each abort reports through conn_closed(), which unlinks it. */
    while (m->conns != NULL)
        relay_conn_abort(m->conns->conn);
}

int
relay_mgr_idle(const struct relay_mgr *m)
{
    return m->nconns == 0 && m->works == 0;
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct relay_mgr *m = h->data;

    if (--m->closing == 0) {
        uv_mutex_destroy(&m->mu);
        free(m);
    }
}

void
relay_mgr_free(struct relay_mgr *m)
{
    if (m == NULL)
        return;
    while (m->msgs != NULL)
        msg_free(m, m->msgs);
    for (size_t i = 0; i < m->nrt; i++)
        relay_rt_free(m->rt[i]);
    free(m->rt);
    m->rt = NULL;
    m->nrt = 0;
    for (size_t i = 0; i < m->ninbox; i++)
        free(m->inbox[i]);
    free(m->inbox);
    m->inbox = NULL;
    /* m goes when both handles are closed (the loop's next run). */
    m->closing = 2;
    uv_close((uv_handle_t *)&m->timer, on_handle_closed);
    uv_close((uv_handle_t *)&m->wake, on_handle_closed);
}

