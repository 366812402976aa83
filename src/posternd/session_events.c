/*
 * posternd - what the session's events ask for (session.h): the AUTH
 * exchange (user store lookups, password checks on the thread pool, the
 * throttle's delays and lockouts), MAIL FROM's allow_from, RCPT, DATA
 * and delivery.  Each parks the session (WORKING, LOOKUP, HELD) until
 * its answer comes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "date.h"
#include "log.h"
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

static void
job_free(struct job *j)
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
        job_free(j);
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
        } else {
            a.verdict = PST_SMTP_TEMPFAIL;
            log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid,
                      "qid", qid, "error",
                      status != 0 ? "job cancelled" : maildir_error(j->msg),
                      NULL);
        }
    }
    job_free(j);
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
static struct job *
job_new(struct conn *c, enum work_kind kind)
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
static int
conn_queue_job(struct conn *c, struct job *j)
{
    if (uv_queue_work(&c->w->loop, &j->work, job_run, job_done) < 0) {
        job_free(j);
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

/* --- Events from the session --------------------------------------------- */

static int
conn_answer(struct conn *c, enum pst_smtp_event_type t,
            enum pst_smtp_verdict v, const struct pst_cred *cred,
            const char *reply)
{
    struct pst_smtp_answer a = {
        .type = t, .verdict = v, .cred = cred, .reply = reply,
    };

    return pst_smtp_server_answer(c->s, &a);
}

static void on_hold(uv_timer_t *t);

/* The throttle locked this address: 421 4.7.0 and close (RFC 4954 §9). */
static void
conn_lockout(struct conn *c)
{
    c->close_why = "auth lockout";
    log_event(LOG_LEVEL_INFO, "auth_lockout", "sid", c->sid, "peer",
              c->peer, NULL);
    if (pst_smtp_server_close(c->s, PST_SMTP_CLOSE_AUTH_LOCKOUT) < 0)
        conn_close(c, NULL);
}

/* Hold the session for ms (throttle): no input is acted on, no output
 * sent, until on_hold(). */
static void
conn_hold(struct conn *c, enum conn_hold why, uint64_t ms)
{
    c->hold_why = why;
    conn_enter_state(c, CONN_HELD);
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    uv_timer_stop(&c->timer);
    /* From now, not from when this loop turn began. */
    uv_update_time(&c->w->loop);
    uv_timer_start(&c->hold, on_hold, ms, 0);
}

/* SCRAM keys from {PLAIN} on the thread pool.  Returns 0, -1. */
static int
conn_derive(struct conn *c)
{
    struct job *j = job_new(c, WORK_DERIVE);

    if (j == NULL)
        return -1;
    j->cred = c->auth_cred;
    j->mech = c->auth_mech;
    j->user = strdup(c->auth_user);
    if (j->user == NULL) {
        job_free(j);
        return -1;
    }
    return conn_queue_job(c, j);
}

/* The user store answered the AUTH lookup: resume the session. */
static void
conn_on_lookup(void *ctx, int rc, const struct userdb_user *u)
{
    struct conn *c = ctx;
    int arc;

    /* The session ended meanwhile (timeout, shutdown): nothing waits. */
    if (conn_ending(c))
        return;
    conn_enter_state(c, CONN_RUNNING);
    if (rc == PST_ETEMP) {
        /* RFC 4954 §6: 454 4.7.0, and the session goes on. */
        arc = conn_answer(c, PST_SMTP_EV_AUTH_LOOKUP, PST_SMTP_TEMPFAIL,
                          NULL, NULL);
    } else {
        /* The request owns the credentials until AUTH_RESULT.  An
         * unknown user gets NULL: the session does the same work and
         * fails the same way as for a wrong password.  So does a user
         * whose account flags refuse the login from here (Dovecot's
         * nologin, noauthenticate, allow_nets: userdb.h), before any
         * password is checked; conn_on_auth_result() logs why.  And, for
         * EXTERNAL, a user pinned to another certificate (cert=). */
        c->auth_cred = rc == 0 && userdb_user_check_login(
                                      u, (struct sockaddr *)&c->peer_sa,
                                      NULL, 0) == 0
                           ? u->cred
                           : NULL;
        if (c->auth_cred != NULL && c->auth_external &&
            userdb_cert_matches(&u->cert, c->cert_fp) == 0) {
            log_event(LOG_LEVEL_INFO, "cert_pin_mismatch", "sid", c->sid,
                      "fingerprint", c->cert_fp, NULL);
            c->auth_cred = NULL;
        }
        /* The user's own relay= (DESIGN.md "Routing"), kept for the
         * RCPTs once this user has authenticated. */
        free(c->user_relay);
        c->user_relay = c->auth_cred != NULL && u->relay.v != NULL &&
                                u->relay.len > 0
                            ? strndup(u->relay.v, u->relay.len)
                            : NULL;
        /* SCRAM keys from {PLAIN}: PBKDF2, on the thread pool, never on
         * the loop (sasl.h, pst_sasl_server_cred_slow()). */
        if (c->auth_cred != NULL && c->auth_user != NULL &&
            pst_sasl_server_cred_slow(c->auth_mech, c->auth_cred) &&
            conn_derive(c) == 0)
            return;
        arc = conn_answer(c, PST_SMTP_EV_AUTH_LOOKUP, PST_SMTP_ACCEPT,
                          c->auth_cred, NULL);
    }
    conn_resume(c, arc);
}

/* Start the lookup of the AUTH_LOOKUP event; the session stays parked
 * until conn_on_lookup(). */
static int
conn_lookup_begin(struct conn *c, const char *user)
{
    userdb_lookup_free(c->auth_req);
    c->auth_req = NULL;
    c->auth_cred = NULL;
    /* The user store as it is now, not as it was when the client
     * connected: a password changed or removed by a reload must stop
     * working on connections that were already open. */
    if (userdb_lookup_start(c->w->udb, &c->w->loop, user,
                            conn_on_lookup, c, &c->auth_req) < 0)
        return conn_answer(c, PST_SMTP_EV_AUTH_LOOKUP, PST_SMTP_TEMPFAIL,
                           NULL, NULL);
    conn_enter_state(c, CONN_LOOKUP);
    return 0;
}

static int
conn_on_auth_lookup(struct conn *c, const struct pst_smtp_event *ev)
{
    uint64_t delay = 0;

    c->auth_tag = 0;
    c->auth_external = strcmp(ev->mech, "EXTERNAL") == 0;
    c->auth_mech = pst_sasl_mech_find(ev->mech, strlen(ev->mech));
    free(c->auth_user);
    c->auth_user = strdup(ev->user);
    if (c->auth_user == NULL)
        return -1;
    /* Every mechanism asks for credentials once per attempt, before any
     * check: the one place to hold an address (or a user name) under
     * penalty, as Dovecot delays the whole request. */
    if (throttle_check(conn_throttle(c), (struct sockaddr *)&c->peer_sa,
                       ev->user, uv_now(&c->w->loop), &delay) ==
        THROTTLE_REFUSE) {
        conn_lockout(c);
        return 0;
    }
    if (delay > 0) {
        conn_hold(c, HOLD_LOOKUP, delay);
        return 0;
    }
    return conn_lookup_begin(c, ev->user);
}

static int
conn_on_auth_verify(struct conn *c, const struct pst_smtp_event *ev)
{
    /* The same guess again does not count twice (throttle.h). */
    struct job *j;

    c->auth_tag = throttle_tag(conn_throttle(c), ev->user, ev->password,
                               ev->password_len);
    j = job_new(c, WORK_VERIFY);
    if (j == NULL)
        return -1;
    /* Copies: the job may outlive the session's (secret) password. */
    j->cred = c->auth_cred;
    j->pw = malloc(ev->password_len + 1);
    j->user = strdup(ev->user != NULL ? ev->user : "");
    if (j->pw == NULL || j->user == NULL) {
        job_free(j);
        return -1;
    }
    memcpy(j->pw, ev->password, ev->password_len);
    j->pwlen = ev->password_len;
    return conn_queue_job(c, j);
}

static void
conn_on_auth_result(struct conn *c, const struct pst_smtp_event *ev)
{
    const struct userdb_user *u = userdb_lookup_user(c->auth_req);
    const char *reason = ev->reason;
    char refused[USERDB_WHY_MAX];

    /* A login the account flags refused: say so rather than "unknown
     * user" (the client got the 535 of a wrong password). */
    if (!ev->ok && ev->error == PST_EAUTH && u != NULL &&
        userdb_user_check_login(u, (struct sockaddr *)&c->peer_sa, refused,
                                sizeof(refused)) < 0)
        reason = refused;
    if (ev->ok)
        log_event(LOG_LEVEL_INFO, "auth_ok", "sid", c->sid, "peer", c->peer,
                  "user", ev->user, "mech", ev->mech, NULL);
    else
        log_event(LOG_LEVEL_INFO, "auth_failed", "sid", c->sid, "peer",
                  c->peer, "user", ev->user != NULL ? ev->user : "-",
                  "mech", ev->mech != NULL ? ev->mech : "-", "error",
                  pst_errname(ev->error), "reason",
                  reason != NULL ? reason : "-", NULL);
    /* The exchange is over: the credentials it borrowed can go. */
    c->auth_cred = NULL;
    pst_cred_free(c->auth_derived);
    c->auth_derived = NULL;
    free(c->auth_user);
    c->auth_user = NULL;
    userdb_lookup_free(c->auth_req);
    c->auth_req = NULL;
    if (ev->ok) {
        throttle_auth_ok(conn_throttle(c), (struct sockaddr *)&c->peer_sa,
                         uv_now(&c->w->loop));
    } else if (ev->error == PST_ECANCEL) {
        /* A cancelled exchange ("*") tested no password, but it may
         * have probed a user (the salt of SCRAM's server-first): it
         * counts as a failure, so that the throttle's delays and
         * lockout apply to the next attempts.  The 501 itself is not
         * held: it says nothing about the user, and holding every one
         * would only pile up the connections of a client that cancels
         * fast (each its delay, up to max_connections_per_ip). */
        uint64_t delay = 0;

        if (throttle_auth_failed(conn_throttle(c),
                                 (struct sockaddr *)&c->peer_sa, ev->user,
                                 0, uv_now(&c->w->loop), &delay) ==
            THROTTLE_REFUSE)
            conn_lockout(c); /* the 421 goes out after the 501 */
    } else if (ev->error == PST_EAUTH) {
        /* Malformed exchanges do not count: they guessed nothing. */
        uint64_t delay = 0, elapsed;
        enum throttle_verdict v;

        v = throttle_auth_failed(conn_throttle(c),
                                 (struct sockaddr *)&c->peer_sa, ev->user,
                                 c->auth_tag, uv_now(&c->w->loop), &delay);
        if (v == THROTTLE_REFUSE)
            conn_lockout(c); /* the 421 goes out after the 535 */
        /* The 535 leaves auth_failure_delay (or the throttle's delay, if
         * longer) after the client's last byte, however long the lookup
         * and the check took: an unknown user, a cheap verifier and a
         * costly crypt(3) hash all answer at the same moment (as long as
         * the check takes less than the delay), so the timing does not
         * tell which users exist.  Dovecot: auth_failure_delay. */
        if (delay < c->sc->cfg->auth_failure_delay_ms)
            delay = c->sc->cfg->auth_failure_delay_ms;
        elapsed = (uv_hrtime() - c->last_input_ns) / 1000000u;
        if (delay > elapsed)
            conn_hold(c, HOLD_REPLY, delay - elapsed);
    }
    c->auth_tag = 0;
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
static void
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
    struct job *j = job_new(c, WORK_WRITE);

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
        job_free(j);
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
static int
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
    job_free(j);
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
        conn_reset_message(c);
        uv_timer_stop(&c->timer);
        if (c->state == CONN_WORKING)
            conn_enter_state(c, CONN_RUNNING);
        conn_resume(c, conn_answer(c, PST_SMTP_EV_DATA_END,
                                   PST_SMTP_TEMPFAIL, NULL, NULL));
        return 0;
    }
    j = job_new(c, WORK_COMMIT);
    if (j == NULL)
        return -1;
    /* The job takes the message, its recipients (local, and relayed with
     * their envelope) and the rest of its data; the transaction is over
     * for c. */
    if (conn_queue_env(c, j) < 0) {
        job_free(j);
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

/* The user store answered the allow_from lookup of MAIL FROM. */
static void
conn_on_mail_lookup(void *ctx, int rc, const struct userdb_user *u)
{
    struct conn *c = ctx;
    const char *user = pst_smtp_server_user(c->s, NULL);
    enum pst_smtp_verdict v;

    if (conn_ending(c))
        return;
    conn_enter_state(c, CONN_RUNNING);
    if (rc == 0 &&
        userdb_allow_from(u->allow_from.v, u->allow_from.len, c->mail_from)) {
        v = PST_SMTP_ACCEPT;
    } else if (rc == PST_ETEMP) {
        v = PST_SMTP_TEMPFAIL; /* 451 4.3.0: try again later */
        log_event(LOG_LEVEL_WARN, "sender_check_failed", "sid", c->sid,
                  "user", user != NULL ? user : "-", "sender", c->mail_from,
                  "error", "user store unavailable", NULL);
    } else {
        v = PST_SMTP_REJECT;
        log_event(LOG_LEVEL_INFO, "sender_refused", "sid", c->sid, "user",
                  user != NULL ? user : "-", "sender", c->mail_from, NULL);
    }
    /* u is not used past this point. */
    userdb_lookup_free(c->mail_req);
    c->mail_req = NULL;
    free(c->mail_from);
    c->mail_from = NULL;
    conn_resume(c, conn_answer(c, PST_SMTP_EV_MAIL, v, NULL, NULL));
}

static int
conn_on_mail(struct conn *c, const struct pst_smtp_event *ev)
{
    const char *user;

    conn_reset_message(c);
    free(c->env_from);
    c->env_from = strdup(ev->address);
    if (c->env_from == NULL)
        return -1;
    if (!ev->need_answer)
        return 0;
    /* The session asks when the user does not own the address by name:
     * the user's allow_from decides, as the store has it now (looked up
     * asynchronously: the session stays parked until the answer). */
    user = pst_smtp_server_user(c->s, NULL);
    if (user == NULL) {
        log_event(LOG_LEVEL_INFO, "sender_refused", "sid", c->sid, "user",
                  "-", "sender", ev->address, NULL);
        return conn_answer(c, ev->type, PST_SMTP_REJECT, NULL, NULL);
    }
    free(c->mail_from);
    userdb_lookup_free(c->mail_req);
    c->mail_req = NULL;
    c->mail_from = strdup(ev->address);
    if (c->mail_from == NULL)
        return -1;
    if (userdb_lookup_start(c->w->udb, &c->w->loop, user,
                            conn_on_mail_lookup, c, &c->mail_req) < 0)
        return conn_answer(c, ev->type, PST_SMTP_TEMPFAIL, NULL, NULL);
    conn_enter_state(c, CONN_LOOKUP);
    return 0;
}

/* Add s to the list *v of *n strings unless it is there (a recipient
 * given twice gets one copy, as Postfix does).  Returns 0 or -1. */
static int
list_add_once(char ***v, size_t *n, const char *str)
{
    char **p;

    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], str) == 0)
            return 0;
    p = realloc(*v, (*n + 1) * sizeof(char *));
    if (p == NULL)
        return -1;
    *v = p;
    (*v)[*n] = strdup(str);
    if ((*v)[*n] == NULL)
        return -1;
    (*n)++;
    return 0;
}

/* A local recipient's Maildir. */
static int
conn_rcpt_local(struct conn *c, const char *addr)
{
    struct pst_buf path;
    int rc;

    pst_buf_init(&path, 4096, 0);
    rc = config_mailbox_expand(c->sc->cfg->mailbox, addr, strlen(addr),
                               &path);
    if (rc < 0) {
        pst_buf_clear(&path);
        return conn_answer(c, PST_SMTP_EV_RCPT, PST_SMTP_REJECT, NULL,
                           "553 5.1.3 Recipient address not accepted here");
    }
    rc = list_add_once(&c->paths, &c->npaths, (const char *)path.data);
    pst_buf_clear(&path);
    if (rc < 0)
        return -1;
    return conn_answer(c, PST_SMTP_EV_RCPT, PST_SMTP_ACCEPT, NULL, NULL);
}

/* The relay of this session's sender: the user's own relay= field,
 * else the global relay; NULL: none. */
static const char *
conn_sender_relay(const struct conn *c)
{
    if (c->user_relay != NULL &&
        config_relay_find(c->sc->cfg, c->user_relay) != NULL)
        return c->user_relay;
    return c->sc->cfg->relay;
}

/* The user store answered "does this local recipient exist?". */
static void
conn_on_rcpt_lookup(void *ctx, int rc, const struct userdb_user *u)
{
    struct conn *c = ctx;
    const char *at;
    int arc;

    (void)u;
    if (conn_ending(c))
        return;
    userdb_lookup_free(c->rcpt_req);
    c->rcpt_req = NULL;
    if (rc == PST_ENOENT && !c->rcpt_local_part &&
        (at = strrchr(c->rcpt_addr, '@')) != NULL) {
        /* A store without domains knows the local part alone. */
        char *local = strndup(c->rcpt_addr, (size_t)(at - c->rcpt_addr));

        c->rcpt_local_part = 1;
        if (local != NULL &&
            userdb_lookup_start(c->w->udb, &c->w->loop, local,
                                conn_on_rcpt_lookup, c, &c->rcpt_req) == 0) {
            free(local);
            return;
        }
        free(local);
        rc = PST_ETEMP;
    }
    conn_enter_state(c, CONN_RUNNING);
    if (rc == 0) {
        arc = conn_rcpt_local(c, c->rcpt_addr);
    } else if (rc == PST_ETEMP) {
        arc = conn_answer(c, PST_SMTP_EV_RCPT, PST_SMTP_TEMPFAIL, NULL,
                          "451 4.3.0 Cannot check the recipient now, try "
                          "again later");
    } else {
        log_event(LOG_LEVEL_INFO, "rcpt_refused", "sid", c->sid, "rcpt",
                  c->rcpt_addr, "why", "unknown local user", NULL);
        /* RFC 3463: 5.1.1 bad destination mailbox address. */
        arc = conn_answer(c, PST_SMTP_EV_RCPT, PST_SMTP_REJECT, NULL,
                          "550 5.1.1 No such user here");
    }
    free(c->rcpt_addr);
    c->rcpt_addr = NULL;
    conn_resume(c, arc);
}

/*
 * Where a recipient goes (DESIGN.md "Routing"): a local domain's
 * recipient must exist in the user store (550 5.1.1); any other goes to
 * the sender's relay, only for an authenticated sender (550 5.7.1: never
 * an open relay).  Without local_domains and relays every recipient is
 * local, as before.
 */
static int
conn_on_rcpt(struct conn *c, const struct pst_smtp_event *ev)
{
    const struct config *cfg = c->sc->cfg;
    const char *at = strrchr(ev->address, '@');
    const char *relay;

    if (cfg->local_domains.n == 0 && cfg->n_relays == 0)
        return conn_rcpt_local(c, ev->address);
    if (at != NULL && config_domain_local(cfg, at + 1, strlen(at + 1))) {
        free(c->rcpt_addr);
        c->rcpt_addr = strdup(ev->address);
        c->rcpt_local_part = 0;
        if (c->rcpt_addr == NULL)
            return -1;
        if (userdb_lookup_start(c->w->udb, &c->w->loop, c->rcpt_addr,
                                conn_on_rcpt_lookup, c, &c->rcpt_req) < 0)
            return conn_answer(c, ev->type, PST_SMTP_TEMPFAIL, NULL, NULL);
        conn_enter_state(c, CONN_LOOKUP);
        return 0;
    }
    relay = pst_smtp_server_user(c->s, NULL) != NULL ? conn_sender_relay(c)
                                                    : NULL;
    if (relay == NULL || at == NULL) {
        log_event(LOG_LEVEL_INFO, "rcpt_refused", "sid", c->sid, "rcpt",
                  ev->address, "why",
                  pst_smtp_server_user(c->s, NULL) == NULL
                      ? "relay without authentication"
                      : "no relay for this sender",
                  NULL);
        return conn_answer(c, ev->type, PST_SMTP_REJECT, NULL,
                           "550 5.7.1 Relay access denied");
    }
    if (c->relay_name == NULL && (c->relay_name = strdup(relay)) == NULL)
        return -1;
    if (list_add_once(&c->relayed, &c->nrelayed, ev->address) < 0)
        return -1;
    return conn_answer(c, ev->type, PST_SMTP_ACCEPT, NULL, NULL);
}

static void
conn_on_data_begin(struct conn *c)
{
    struct pst_buf hdr;
    struct pst_smtp_received r = {0};
    char date[DATE_RFC5322_MAX];
    int rc;

    free(c->msg_error);
    c->msg_error = NULL;
    rc = maildir_begin(c->sc->cfg->spool, c->sc->cfg->hostname, &c->msg);
    if (rc < 0) {
        log_event(LOG_LEVEL_WARN, "spool_failed", "sid", c->sid, "error",
                  strerror(errno), NULL);
        c->msg = NULL;
        return;
    }
    /* What is written from here goes through c->dbuf to the thread pool,
     * in order: Return-Path, Received, then the message (its header
     * section held back first with add_missing_headers). */
    pst_buf_clear(&c->dbuf);
    /* RFC 5321 §4.4: the delivering server records the envelope sender
     * in Return-Path.  The relayed copy (the same file) starts after it:
     * the queue's offset. */
    c->rp_len = 0;
    if (c->npaths > 0) {
        pst_buf_init(&hdr, 4096, 0);
        if (pst_buf_printf(&hdr, "Return-Path: <%s>\r\n",
                           c->env_from != NULL ? c->env_from : "") < 0 ||
            conn_data_put(c, hdr.data, hdr.len) < 0) {
            pst_buf_clear(&hdr);
            conn_spool_failed(c, "cannot write Return-Path");
            return;
        }
        c->rp_len = hdr.len;
        pst_buf_clear(&hdr);
    }
    date_rfc5322(time(NULL), date, sizeof(date));
    r.peer_addr = c->peer_rcvd;
    r.queue_id = maildir_qid(c->msg);
    r.date = date;
    r.recipient = NULL;
    pst_buf_init(&hdr, 4096, 0);
    if (pst_smtp_server_received(c->s, &r, &hdr) < 0)
        conn_spool_failed(c, "cannot make the Received header");
    else if (conn_data_put(c, hdr.data, hdr.len) < 0)
        conn_spool_failed(c, "cannot buffer the Received header");
    pst_buf_clear(&hdr);
    conn_profile_data_begin(c);
}

int
conn_on_event(struct conn *c, const struct pst_smtp_event *ev)
{
    switch (ev->type) {
    case PST_SMTP_EV_STARTTLS:
        /* The 220 goes out in clear; then everything is TLS.  Bytes the
         * client sent after STARTTLS were discarded by the session
         * (RFC 3207 §4.2, CVE-2011-0411); so are ours. */
        if (conn_flush(c) < 0)
            return -1;
        pst_buf_reset(&c->backlog);
        return conn_tls_begin(c);
    case PST_SMTP_EV_AUTH_LOOKUP:
        return conn_on_auth_lookup(c, ev);
    case PST_SMTP_EV_AUTH_VERIFY:
        return conn_on_auth_verify(c, ev);
    case PST_SMTP_EV_AUTH_RESULT:
        conn_profile_auth(c, ev);
        conn_on_auth_result(c, ev);
        return 0;
    case PST_SMTP_EV_MAIL:
        return conn_on_mail(c, ev);
    case PST_SMTP_EV_RCPT:
        return conn_on_rcpt(c, ev);
    case PST_SMTP_EV_DATA_BEGIN:
        conn_on_data_begin(c);
        return 0;
    case PST_SMTP_EV_DATA:
        if (c->msg == NULL)
            return 0; /* spooling failed: 451 at the final dot */
        /* Through the profile: add_missing_headers holds the header
         * section back.  More than c->dbuf holds cannot be: the pump
         * stops at CONN_DATA_MAX. */
        if (conn_profile_data(c, ev->data, ev->len) < 0) {
            conn_spool_failed(c, "message data over its buffer");
            return 0;
        }
        return conn_data_kick(c);
    case PST_SMTP_EV_DATA_END:
        if (c->msg != NULL && conn_profile_data_end(c) < 0)
            conn_spool_failed(c, "message data over its buffer");
        if (c->msg == NULL) {
            log_event(LOG_LEVEL_WARN, "delivery_failed", "sid", c->sid,
                      "error", c->msg_error != NULL ? c->msg_error
                                                    : "no spool file",
                      NULL);
            conn_reset_message(c);
            return conn_answer(c, ev->type, PST_SMTP_TEMPFAIL, NULL, NULL);
        }
        c->data_end_size = ev->size;
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
    case PST_SMTP_EV_DATA_ABORT:
        log_event(LOG_LEVEL_INFO, "message_refused", "sid", c->sid, "error",
                  pst_errname(ev->error), "reason",
                  ev->reason != NULL ? ev->reason : "-", NULL);
        conn_reset_message(c);
        return 0;
    case PST_SMTP_EV_CLOSE:
        break; /* conn_pump()'s: the connection goes */
    }
    return 0;
}

/* A throttle delay is over: answer the held lookup, or let the held
 * 535 go, and carry on. */
static void
on_hold(uv_timer_t *t)
{
    struct conn *c = t->data;
    enum conn_hold why = c->hold_why;
    uint64_t delay = 0;

    if (conn_closed(c))
        return;
    c->hold_why = HOLD_NONE;
    conn_enter_state(c, CONN_RUNNING);
    if (why == HOLD_LOOKUP) {
        /* Another connection may have locked the address meanwhile. */
        if (throttle_check(conn_throttle(c),
                           (struct sockaddr *)&c->peer_sa, c->auth_user,
                           uv_now(&c->w->loop), &delay) == THROTTLE_REFUSE)
            conn_lockout(c);
        else if (conn_lookup_begin(c, c->auth_user) < 0) {
            conn_close(c, "internal error");
            return;
        }
    }
    conn_pump(c);
}
