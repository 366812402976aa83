/*
 * posternd - the relay's control commands (relay_mgr_command(), for
 * control.c): list, flush, delete, relay.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay_int.h"

/* --- Control commands ------------------------------------------------- */

static const char *
msg_state(const struct relay_msg *msg, int64_t now)
{
    if (msg->active)
        return "active";
    if (msg->deleted)
        return "deleting";
    if (msg->rt == NULL)
        return "no-relay";
    if (msg->rt->paused)
        return "paused";
    if (msg->due > now || msg->rt->retry_at > now || msg->env->attempts > 0)
        return "deferred";
    return "queued";
}

/* One word for the protocol: xtext-like, no space or control octet. */
static void
put_word(struct pst_buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= ' ' || *p > '~' || *p == '%')
            pst_buf_printf(out, "%%%02X", *p);
        else
            pst_buf_append_byte(out, *p);
    }
}

static int
cmd_list(struct relay_mgr *m, struct pst_buf *out)
{
    int64_t now = relay_now();

    /* "ID STATE REASON": the CLI reads the rest from the files. */
    for (struct relay_msg *msg = m->msgs; msg != NULL; msg = msg->next) {
        const char *why = msg->env->last_reply;

        if (msg->rt != NULL && msg->rt->paused)
            why = msg->rt->tok_error;
        else if ((why == NULL || msg->env->attempts == 0) &&
                 msg->rt != NULL &&
            msg->rt->retry_at > now && msg->rt->last_error[0] != '\0')
            why = msg->rt->last_error;
        pst_buf_printf(out, "%s %s ", msg->env->id, msg_state(msg, now));
        put_word(out, why != NULL ? why : "-");
        pst_buf_append_byte(out, '\n');
    }
    return 0;
}

static int
cmd_flush(struct relay_mgr *m, struct pst_buf *out)
{
    size_t n = 0;

    for (struct relay_msg *msg = m->msgs; msg != NULL; msg = msg->next)
        if (!msg->active && !msg->deleted) {
            msg->due = 0;
            n++;
        }
    for (size_t i = 0; i < m->nrt; i++) {
        m->rt[i]->retry_at = 0;
        m->rt[i]->failures = 0;
    }
    log_event(LOG_LEVEL_INFO, "queue_flush", NULL);
    pst_buf_printf(out, "flushed %zu\n", n);
    relay_run(m);
    return 0;
}

static int
cmd_delete(struct relay_mgr *m, const char *id, struct pst_buf *out,
           void (*done)(void *ctx, int rc), void *ctx)
{
    struct relay_msg *msg = relay_msg_find(m, id);
    struct relay_work *w;

    if (msg == NULL) {
        pst_buf_printf(out, "error no such message in the queue\n");
        return PST_EINVAL;
    }
    msg->deleted = 1;
    if (msg->active || msg->busy) {
        /* Removed once the attempt or job in progress is over. */
        pst_buf_printf(out, "deleting after the attempt in progress\n");
        return 0;
    }
    w = relay_work_new(m, WORK_REMOVE, msg);
    if (w == NULL) {
        pst_buf_printf(out, "error out of memory\n");
        return PST_ENOMEM;
    }
    w->done = done;
    w->done_ctx = ctx;
    if (relay_work_queue(w) < 0) {
        pst_buf_printf(out, "error cannot start\n");
        return PST_ENOMEM;
    }
    pst_buf_printf(out, "deleted\n");
    return 1;
}

static int
cmd_relay(struct relay_mgr *m, const char *name, struct pst_buf *out)
{
    struct relay_rt *rt = relay_rt_find(m, name);
    size_t queued = 0;

    if (rt == NULL) {
        pst_buf_printf(out, "error no relay %s\n", name);
        return PST_EINVAL;
    }
    for (struct relay_msg *msg = m->msgs; msg != NULL; msg = msg->next)
        queued += msg->rt == rt;
    pst_buf_printf(out, "connections %u\nlimit %u\nqueued %zu\n"
                   "failures %u\nretry_at %" PRId64 "\n",
                   rt->conns, rt->limit, queued, rt->failures,
                   rt->retry_at);
    pst_buf_append_str(out, "last_error ");
    put_word(out, rt->last_error[0] != '\0' ? rt->last_error : "-");
    pst_buf_append_byte(out, '\n');
    relay_token_status(rt, relay_now(), out);
    return 0;
}

/* postern oauth login wrote the token file: read it, resume. */
static int
cmd_token(struct relay_mgr *m, const char *name, struct pst_buf *out)
{
    struct relay_rt *rt = relay_rt_find(m, name);

    if (rt == NULL || rt->cfg->auth != CONFIG_RELAY_AUTH_OAUTH2) {
        pst_buf_printf(out, "error no oauth2 relay %s\n", name);
        return PST_EINVAL;
    }
    relay_token_reread(m, rt);
    pst_buf_printf(out, "reread\n");
    return 0;
}

int
relay_mgr_command(struct relay_mgr *m, const char *cmd, struct pst_buf *out,
                  void (*done)(void *ctx, int rc), void *ctx)
{
    const char *arg = strchr(cmd, ' ');
    size_t vlen = arg != NULL ? (size_t)(arg - cmd) : strlen(cmd);

    if (arg != NULL)
        arg++;
    if (m->cfg == NULL || m->cfg->queue == NULL) {
        pst_buf_printf(out, "error no relay is configured\n");
        return PST_EINVAL;
    }
    if (vlen == 4 && strncmp(cmd, "list", 4) == 0 && arg == NULL)
        return cmd_list(m, out);
    if (vlen == 5 && strncmp(cmd, "flush", 5) == 0 && arg == NULL)
        return cmd_flush(m, out);
    if (vlen == 6 && strncmp(cmd, "delete", 6) == 0 && arg != NULL &&
        queue_id_valid(arg))
        return cmd_delete(m, arg, out, done, ctx);
    if (vlen == 5 && strncmp(cmd, "relay", 5) == 0 && arg != NULL)
        return cmd_relay(m, arg, out);
    if (vlen == 5 && strncmp(cmd, "token", 5) == 0 && arg != NULL)
        return cmd_token(m, arg, out);
    pst_buf_printf(out, "error unknown command\n");
    return PST_EINVAL;
}
