/*
 * posternd - what the session's events ask for (session.h): the AUTH
 * exchange (user store lookups, password checks on the thread pool, the
 * throttle's delays and lockouts), MAIL FROM's allow_from, RCPT and
 * DATA.  Each parks the session (WORKING, LOOKUP, HELD) until its answer
 * comes.  The thread-pool jobs they start, the message data's way to
 * the spool and the commit are session_jobs.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "date.h"
#include "log.h"
#include "metrics.h"
#include "session.h"

/* --- Events from the session --------------------------------------------- */

int
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
    metrics_lockout(c->w->metrics);
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
    struct job *j = conn_job_new(c, WORK_DERIVE);

    if (j == NULL)
        return -1;
    j->cred = c->auth_cred;
    j->mech = c->auth_mech;
    j->user = strdup(c->auth_user);
    if (j->user == NULL) {
        conn_job_free(j);
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
            userdb_cert_matches(&u->cert, conn_cert_fp(c)) == 0) {
            log_event(LOG_LEVEL_INFO, "cert_pin_mismatch", "sid", c->sid,
                      "fingerprint", conn_cert_fp(c), NULL);
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
    j = conn_job_new(c, WORK_VERIFY);
    if (j == NULL)
        return -1;
    /* Copies: the job may outlive the session's (secret) password. */
    j->cred = c->auth_cred;
    j->pw = malloc(ev->password_len + 1);
    j->user = strdup(ev->user != NULL ? ev->user : "");
    if (j->pw == NULL || j->user == NULL) {
        conn_job_free(j);
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
    metrics_auth(c->w->metrics, ev->mech, ev->ok);
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
        else if (delay > 0)
            metrics_throttle_delay(c->w->metrics);
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
    char date[DATE_RFC5322_MAX], peer[sizeof(c->peer) + 5];
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
    /* RFC 5321 §4.1.3: an IPv6 address literal is tagged "IPv6:". */
    snprintf(peer, sizeof(peer), "%s%s",
             c->peer_sa.ss_family == AF_INET6 ? "IPv6:" : "", c->peer);
    r.peer_addr = peer;
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
        /* Through the profile while add_missing_headers holds the
         * header section back; else (most lines, most sessions)
         * straight to the data on its way to the spool.  More than
         * c->dbuf holds cannot be: the pump stops at CONN_DATA_MAX. */
        if ((c->hdr_holding == CONN_HDR_HOLDING
                 ? conn_profile_data(c, ev->data, ev->len)
                 : pst_buf_append(&c->dbuf, ev->data, ev->len)) < 0) {
            conn_spool_failed(c, "message data over its buffer");
            return 0;
        }
        /* A write once CONN_DATA_CHUNK is gathered. */
        return c->dbuf.len >= CONN_DATA_CHUNK ? conn_data_kick(c) : 0;
    case PST_SMTP_EV_DATA_END:
        return conn_data_end(c, ev);
    case PST_SMTP_EV_DATA_ABORT:
        log_event(LOG_LEVEL_INFO, "message_refused", "sid", c->sid, "error",
                  pst_errname(ev->error), "reason",
                  ev->reason != NULL ? ev->reason : "-", NULL);
        metrics_refused(c->w->metrics,
                        metrics_refusal_of(ev->reason, ev->error));
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
