/*
 * posternd - the session's work on the thread pool (session.h, struct
 * job): password checks and SCRAM keys for AUTH, the message data on
 * its way to the spool file, the commit at the final dot, and giving a
 * job up when the connection goes or timeout_final passes.  Apart from
 * session_events.c, which decides what each event asks for, so that who
 * owns what while a job runs is read in one place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "session.h"

/* --- The thread-pool jobs -------------------------------------------------
 */

static void
job_run(uv_work_t *w)
{
    struct job *j = w->data;

    switch (j->kind) {
    case WORK_VERIFY:
        j->result = pst_cred_verify(j->cred, j->user, j->pw, j->pwlen);
        break;
    case WORK_DERIVE: {
        /* What the SCRAM exchange would derive in its next step, with
         * the salt and count of the listener's session settings. */
        const struct pst_smtp_server_config *sc = &j->sc->l[j->lidx].scfg;
        struct pst_sasl_server_config cfg = {
            .hostname = sc->hostname,
            .scram_iterations = sc->scram_iterations,
            .scram_secret = sc->scram_secret,
            .scram_secret_len = sc->scram_secret_len,
        };

        j->result = pst_sasl_server_cred_prepare(j->mech, &cfg, j->user,
                                                 j->cred, &j->derived);
        break;
    }
    case WORK_WRITE:
        j->result = maildir_append(j->msg, j->data.data, j->data.len);
        break;
    case WORK_COMMIT: {
        /* The data gathered since the last write, then the delivery;
         * nothing below the mail root may be a symbolic link, and the
         * relayed recipients are queued in the same all-or-nothing
         * commit (so the gate undoes the queue's copy too). */
        struct maildir_queue q = {.dir = j->sc->cfg->queue,
                                  .env = j->qenv};

        /* (A failed append makes maildir_deliver() fail with its
         * error, and drop the spool file.) */
        if (j->data.len > 0)
            (void)maildir_append(j->msg, j->data.data, j->data.len);
        j->result = maildir_deliver(j->msg, j->sc->mail_root,
                                    (const char *const *)j->paths,
                                    j->npaths, j->qenv != NULL ? &q : NULL);
        break;
    }
    }
}

void
conn_job_free(struct job *j)
{
    if (j->pw != NULL)
        OPENSSL_clear_free(j->pw, j->pwlen);
    free(j->user);
    pst_cred_free(j->derived);
    userdb_lookup_free(j->req);
    if (j->kind == WORK_COMMIT || (j->kind == WORK_WRITE && j->c == NULL))
        maildir_free(j->msg);
    for (size_t i = 0; i < j->npaths; i++)
        free(j->paths[i]);
    free(j->paths);
    queue_env_free(j->qenv);
    pst_buf_clear(&j->data);
    snapshot_unref(j->sc);
    free(j);
}

/* A commit that stands: the relay's queue manager may load what it
 * queued now (relay.h). */
static void
job_relay_post(const struct job *j, const char *qid)
{
    if (j->qenv != NULL && j->srv->relay != NULL)
        relay_mgr_post(j->srv->relay, qid);
}

/* A job given up has ended: what became of it goes to the log. */
static void
job_orphan_done(struct job *j, int status)
{
    char qid[MAILDIR_QID_LEN + 1];

    if (j->kind != WORK_COMMIT)
        return;
    snprintf(qid, sizeof(qid), "%s", maildir_qid(j->msg));
    if (status == 0 && j->result == 0) {
        /* Durable before it was given up (the client left, or posternd
         * stopped, after the commit went through): delivered, though
         * the client saw no 250 and may send it again; and queued, so
         * the relay sends it now rather than after a restart. */
        log_event(LOG_LEVEL_WARN, "message_accepted", "qid", qid,
                  "reply", "none", "why", j->why,
                  j->qenv != NULL ? "relay" : NULL,
                  j->qenv != NULL ? j->qenv->relay : NULL, NULL);
        job_relay_post(j, qid);
    } else
        log_event(LOG_LEVEL_INFO, "delivery_given_up", "qid", qid, "why",
                  j->why, "error",
                  status != 0 ? "job cancelled" : maildir_error(j->msg),
                  NULL);
}

static void data_write_done(struct conn *c, struct job *j, int status);
static int conn_commit(struct conn *c);

static void
job_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct conn *c = j->c;
    struct pst_smtp_answer a = {0};
    char qid[MAILDIR_QID_LEN + 1], size[24], rcpts[24];

    if (c == NULL) {
        job_orphan_done(j, status);
        conn_job_free(j);
        return;
    }
    if (j->kind == WORK_WRITE) {
        data_write_done(c, j, status);
        return;
    }
    c->job = NULL;
    uv_timer_stop(&c->timer); /* timeout_final */
    if (c->state == CONN_WORKING)
        conn_enter_state(c, CONN_RUNNING);
    if (j->kind == WORK_DERIVE) {
        a.type = PST_SMTP_EV_AUTH_LOOKUP;
        if (status == 0 && j->result == 0) {
            a.verdict = PST_SMTP_ACCEPT;
            c->auth_derived = j->derived; /* until AUTH_RESULT */
            j->derived = NULL;
            a.cred = c->auth_derived;
        } else if (status == 0 && j->result == PST_EPREP) {
            /* The stored password fails SASLprep: the exchange fails
             * on its own, before any PBKDF2. */
            a.verdict = PST_SMTP_ACCEPT;
            a.cred = c->auth_cred;
        } else {
            a.verdict = PST_SMTP_TEMPFAIL; /* 454 4.7.0 */
        }
    } else if (j->kind == WORK_VERIFY) {
        a.type = PST_SMTP_EV_AUTH_VERIFY;
        /* A check that could not run (out of memory, job cancelled) is
         * not a wrong password: 454 4.7.0, RFC 4954 §6. */
        if (status == 0 && j->result == 0)
            a.verdict = PST_SMTP_ACCEPT;
        else if (status == 0 && j->result == PST_EAUTH)
            a.verdict = PST_SMTP_REJECT;
        else
            a.verdict = PST_SMTP_TEMPFAIL;
    } else {
        /* Copied: the message (and its id) is freed with the job. */
        snprintf(qid, sizeof(qid), "%s", maildir_qid(j->msg));
        a.type = PST_SMTP_EV_DATA_END;
        if (status == 0 && j->result == 0) {
            a.verdict = PST_SMTP_ACCEPT;
            a.queue_id = qid;
            snprintf(size, sizeof(size), "%llu",
                     (unsigned long long)j->size);
            snprintf(rcpts, sizeof(rcpts), "%zu",
                     j->npaths + (j->qenv != NULL ? j->qenv->nrcpt : 0));
            log_event(LOG_LEVEL_INFO, "message_accepted", "sid", c->sid,
                      "qid", qid, "user",
                      pst_smtp_server_user(c->s, NULL) != NULL
                          ? pst_smtp_server_user(c->s, NULL)
                          : "-",
                      "size", size, "rcpts", rcpts,
                      j->qenv != NULL ? "relay" : NULL,
                      j->qenv != NULL ? j->qenv->relay : NULL, NULL);
            /* Durable: the queue manager may load it now. */
            job_relay_post(j, qid);
            /* What the client waited for its 250, from its final dot. */
            metrics_accepted(c->w->metrics, j->size,
                             uv_hrtime() - c->dot_ns);
        } else {
            a.verdict = PST_SMTP_TEMPFAIL;
            log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid,
                      "qid", qid, "error",
                      status != 0 ? "job cancelled" : maildir_error(j->msg),
                      NULL);
            metrics_refused(c->w->metrics, METRICS_REFUSED_STORAGE);
        }
    }
    conn_job_free(j);
    /* The session ended meanwhile: nobody waits for the answer. */
    if (conn_ending(c))
        return;
    conn_resume(c, pst_smtp_server_answer(c->s, &a));
    /* Stopping: the answer (250 for a stored message) went first. */
    if (c->stop_after_job && !conn_ending(c)) {
        c->stop_after_job = 0;
        conn_stop(c, 1);
    }
}

/* A job for c of kind, with its settings; NULL when out of memory. */
struct job *
conn_job_new(struct conn *c, enum work_kind kind)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return NULL;
    j->kind = kind;
    j->c = c;
    j->srv = c->srv;
    j->sc = snapshot_ref(c->sc);
    j->lidx = c->lidx;
    j->work.data = j;
    atomic_init(&j->gate, MAILDIR_GATE_OPEN);
    pst_buf_init(&j->data, CONN_DATA_MAX + 2 * PST_SMTP_MAX_TEXT_LINE, 0);
    return j;
}

static void on_job_timeout(uv_timer_t *t);

/*
 * Park the session on job j: no input is acted on until job_done()
 * answers it, or timeout_final passes (conn_job_timeout()).  On failure
 * j is freed.  Returns 0, -1.
 */
int
conn_queue_job(struct conn *c, struct job *j)
{
    if (uv_queue_work(&c->w->loop, &j->work, job_run, job_done) < 0) {
        conn_job_free(j);
        return -1;
    }
    c->job = j;
    if (c->state == CONN_RUNNING)
        conn_enter_state(c, CONN_WORKING);
    /* A password check or SCRAM's keys get no longer than the reply to
     * the final dot (whose timer runs from the dot: DATA_END). */
    if (j->kind != WORK_COMMIT)
        uv_timer_start(&c->timer, on_job_timeout,
                       (uint64_t)c->sc->cfg->timeout_final * 1000, 0);
    return 0;
}

/* Let job j go on without c: it owns what it works on from now. */
static void
job_detach(struct conn *c, struct job *j, const char *why)
{
    /* Not started yet: it will not (job_done() gets UV_ECANCELED). */
    (void)uv_cancel((uv_req_t *)&j->work);
    j->c = NULL;
    j->why = why;
    if (j->kind == WORK_VERIFY || j->kind == WORK_DERIVE) {
        /* The lookup holds the credentials the job reads. */
        j->req = c->auth_req;
        c->auth_req = NULL;
        c->auth_cred = NULL;
    }
    if (j == c->wjob) {
        c->wjob = NULL;
        c->msg = NULL; /* the job's now: aborted when it ends */
    } else {
        c->job = NULL;
    }
}

int
conn_give_up(struct conn *c, const char *why)
{
    struct job *j = c->job;

    if (j != NULL && j->kind == WORK_COMMIT) {
        int open = MAILDIR_GATE_OPEN;

        /* Gone through already: it stands, and its 250 is on its way
         * (job_done() comes in this very turn of the loop, or the
         * next). */
        if (!atomic_compare_exchange_strong(&j->gate, &open,
                                            MAILDIR_GATE_ABANDONED))
            return 0;
    }
    if (j != NULL)
        job_detach(c, j, why);
    if (c->wjob != NULL)
        job_detach(c, c->wjob, why);
    c->data_end = 0;
    return 1;
}

void
conn_drop_jobs(struct conn *c, const char *why)
{
    if (conn_give_up(c, why))
        return;
    /* A commit that went through: it stands; job_orphan_done() logs
     * it. */
    job_detach(c, c->job, why);
    if (c->wjob != NULL)
        job_detach(c, c->wjob, why);
    c->data_end = 0;
}

void
conn_job_timeout(struct conn *c)
{
    struct job *j = c->job;
    struct pst_smtp_answer a = {.verdict = PST_SMTP_TEMPFAIL};

    if (conn_closed(c) || (j == NULL && !c->data_end))
        return;
    a.type = j == NULL || j->kind == WORK_COMMIT ? PST_SMTP_EV_DATA_END
             : j->kind == WORK_VERIFY            ? PST_SMTP_EV_AUTH_VERIFY
                                                 : PST_SMTP_EV_AUTH_LOOKUP;
    if (!conn_give_up(c, "timeout_final"))
        return;
    log_event(LOG_LEVEL_WARN, "timeout_final", "sid", c->sid, "state",
              pst_smtp_state_name(pst_smtp_server_state(c->s, NULL)),
              NULL);
    if (a.type == PST_SMTP_EV_DATA_END) {
        /* RFC 5321 §4.5.3.2.6: the client gives up after 10 minutes;
         * 451 4.3.0 tells it to try again, and what was written goes
         * (the gate: maildir_set_gate()). */
        conn_reset_message(c);
        metrics_refused(c->w->metrics, METRICS_REFUSED_STORAGE);
    }
    if (c->state == CONN_WORKING)
        conn_enter_state(c, CONN_RUNNING);
    conn_resume(c, pst_smtp_server_answer(c->s, &a));
    if (c->stop_after_job && !conn_ending(c)) {
        c->stop_after_job = 0;
        conn_stop(c, 1);
    }
}

static void
on_job_timeout(uv_timer_t *t)
{
    conn_job_timeout(t->data);
}

/* Free the list v of n strings. */
static void
list_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void
conn_reset_message(struct conn *c)
{
    list_free(c->paths, c->npaths);
    c->paths = NULL;
    c->npaths = 0;
    list_free(c->relayed, c->nrelayed);
    c->relayed = NULL;
    c->nrelayed = 0;
    free(c->relay_name);
    c->relay_name = NULL;
    c->rp_len = 0;
    userdb_lookup_free(c->rcpt_req);
    c->rcpt_req = NULL;
    free(c->rcpt_addr);
    c->rcpt_addr = NULL;
    /* A write in flight gets the message, and aborts it when done. */
    if (c->wjob != NULL)
        job_detach(c, c->wjob, "transaction reset");
    if (c->msg != NULL) {
        maildir_abort(c->msg);
        c->msg = NULL;
    }
    pst_buf_clear(&c->dbuf);
    free(c->msg_error);
    c->msg_error = NULL;
    conn_profile_data_reset(c);
}

/* Spooling the message failed: its spool file goes now, and the final
 * dot gets 451 with why (the reason kept for the log). */
void
conn_spool_failed(struct conn *c, const char *why)
{
    free(c->msg_error);
    c->msg_error = strdup(why); /* NULL: "no spool file" will do */
    /* A write in flight gets the message, and aborts it when done. */
    if (c->wjob != NULL)
        job_detach(c, c->wjob, "spooling failed");
    maildir_abort(c->msg);
    c->msg = NULL;
    pst_buf_clear(&c->dbuf);
    conn_profile_data_reset(c);
}

/* --- Message data to the spool, on the thread pool ----------------------
 *
 * The data is gathered in c->dbuf and written CONN_DATA_CHUNK at a time
 * by one WORK_WRITE job at a time: a slow disk slows this client (the
 * session stops acting once CONN_DATA_MAX wait, conn_stalled(), and so
 * reading stops) but never the loop's other connections.  DATA_END
 * waits for the write in flight, then the commit job appends the rest
 * and delivers.
 */

/* Hand what is gathered to a write job.  Returns 0, -1. */
static int
conn_write_begin(struct conn *c)
{
    struct job *j = conn_job_new(c, WORK_WRITE);

    if (j == NULL)
        return -1;
    j->msg = c->msg;
    pst_buf_clear(&j->data);
    j->data = c->dbuf; /* moved */
    pst_buf_init(&c->dbuf, CONN_DATA_MAX + 2 * PST_SMTP_MAX_TEXT_LINE, 0);
    if (uv_queue_work(&c->w->loop, &j->work, job_run, job_done) < 0) {
        pst_buf_clear(&c->dbuf);
        c->dbuf = j->data; /* back */
        pst_buf_init(&j->data, 0, 0);
        j->msg = NULL;
        conn_job_free(j);
        return -1;
    }
    c->wjob = j;
    return 0;
}

int
conn_data_put(struct conn *c, const uint8_t *p, size_t len)
{
    return pst_buf_append(&c->dbuf, p, len) < 0 ? -1 : 0;
}

/* After data was put: a write once CONN_DATA_CHUNK is gathered, unless
 * one is in flight (its completion starts the next).  Returns 0, -1. */
int
conn_data_kick(struct conn *c)
{
    if (c->msg != NULL && c->dbuf.len >= CONN_DATA_CHUNK && c->wjob == NULL)
        return conn_write_begin(c);
    return 0;
}

static void
data_write_done(struct conn *c, struct job *j, int status)
{
    c->wjob = NULL;
    if (status != 0 || j->result < 0)
        conn_spool_failed(c, status != 0 ? "write cancelled"
                                         : maildir_error(c->msg));
    j->msg = NULL; /* c's */
    conn_job_free(j);
    if (c->data_end) {
        /* The final dot waited for this write. */
        c->data_end = 0;
        if (conn_commit(c) < 0) {
            conn_close(c, "internal error");
            return;
        }
        return;
    }
    if (conn_data_kick(c) < 0) {
        conn_close(c, "internal error");
        return;
    }
    /* The session may have stopped for us (CONN_DATA_MAX). */
    conn_pump(c);
}

/*
 * The envelope the commit queues for the relayed recipients (j->qenv,
 * the job's: it may outlive c).  They move from c to it; the sender and
 * the user are copied.  Returns 0, -1 (out of memory).
 */
static int
conn_queue_env(struct conn *c, struct job *j)
{
    const char *user = pst_smtp_server_user(c->s, NULL);
    struct queue_env *e;

    if (c->nrelayed == 0)
        return 0;
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return -1;
    j->qenv = e;
    e->arrival = (int64_t)time(NULL);
    /* The relayed copy (the same file) starts after the Return-Path. */
    e->offset = c->rp_len;
    e->relay = c->relay_name;
    c->relay_name = NULL;
    e->sender = strdup(c->env_from != NULL ? c->env_from : "");
    e->user = strdup(user != NULL ? user : "");
    e->rcpt = calloc(c->nrelayed, sizeof(*e->rcpt));
    if (e->relay == NULL || e->sender == NULL || e->user == NULL ||
        e->rcpt == NULL)
        return -1;
    for (size_t i = 0; i < c->nrelayed; i++)
        e->rcpt[i].addr = c->relayed[i];
    e->nrcpt = c->nrelayed;
    free(c->relayed);
    c->relayed = NULL;
    c->nrelayed = 0;
    return 0;
}

/* The final dot: commit the message on the thread pool (or answer 451
 * when it could not be spooled).  Returns 0, -1. */
static int
conn_commit(struct conn *c)
{
    struct job *j;

    if (c->msg == NULL) {
        log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid, "error",
                  c->msg_error != NULL ? c->msg_error : "no spool file",
                  NULL);
        metrics_refused(c->w->metrics, METRICS_REFUSED_STORAGE);
        conn_reset_message(c);
        uv_timer_stop(&c->timer);
        if (c->state == CONN_WORKING)
            conn_enter_state(c, CONN_RUNNING);
        conn_resume(c, conn_answer(c, PST_SMTP_EV_DATA_END,
                                   PST_SMTP_TEMPFAIL, NULL, NULL));
        return 0;
    }
    j = conn_job_new(c, WORK_COMMIT);
    if (j == NULL)
        return -1;
    /* The job takes the message, its recipients (local, and relayed with
     * their envelope) and the rest of its data; the transaction is over
     * for c. */
    if (conn_queue_env(c, j) < 0) {
        conn_job_free(j);
        return -1;
    }
    j->msg = c->msg;
    c->msg = NULL;
    maildir_set_gate(j->msg, &j->gate);
    j->paths = c->paths;
    j->npaths = c->npaths;
    c->paths = NULL;
    c->npaths = 0;
    pst_buf_clear(&j->data);
    j->data = c->dbuf;
    pst_buf_init(&c->dbuf, CONN_DATA_MAX + 2 * PST_SMTP_MAX_TEXT_LINE, 0);
    j->size = c->data_end_size;
    return conn_queue_job(c, j);
}

/* The final dot (DATA_END): commit what was gathered, once the write in
 * flight is done, or answer 451 when the message could not be spooled. */
int
conn_data_end(struct conn *c, const struct pst_smtp_event *ev)
{
    if (c->msg != NULL && conn_profile_data_end(c) < 0)
        conn_spool_failed(c, "message data over its buffer");
    if (c->msg == NULL) {
        log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid,
                  "error", c->msg_error != NULL ? c->msg_error
                                                : "no spool file",
                  NULL);
        metrics_refused(c->w->metrics, METRICS_REFUSED_STORAGE);
        conn_reset_message(c);
        return conn_answer(c, ev->type, PST_SMTP_TEMPFAIL, NULL, NULL);
    }
    c->data_end_size = ev->size;
    c->dot_ns = uv_hrtime();
    /* RFC 5321 §4.5.3.2.6: timeout_final from the final dot. */
    uv_timer_start(&c->timer, on_job_timeout,
                   (uint64_t)c->sc->cfg->timeout_final * 1000, 0);
    if (c->wjob != NULL) {
        /* After the write in flight (data_write_done()). */
        c->data_end = 1;
        if (c->state == CONN_RUNNING)
            conn_enter_state(c, CONN_WORKING);
        return 0;
    }
    return conn_commit(c);
}
