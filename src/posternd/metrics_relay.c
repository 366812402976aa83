/*
 * posternd - the relay's state for the metrics (metrics.h): queue sizes,
 * token refreshes and pauses, read from the queue manager's own list and
 * relays on the control loop, where both run: no lock, and nothing of
 * the relay's code changes for it.
 */
#include <string.h>

#include "metrics.h"
#include "relay_int.h"

void
metrics_relay_states(const struct relay_mgr *relay, const struct config *cfg,
                     struct metrics_relay_state *st)
{
    for (size_t i = 0; i < cfg->n_relays; i++) {
        const struct relay_rt *rt;

        memset(&st[i], 0, sizeof(st[i]));
        if (relay == NULL ||
            (rt = relay_rt_find(relay, cfg->relays[i].name)) == NULL)
            continue;
        /* relay_token.c's own counts and state. */
        st[i].paused = rt->paused;
        st[i].refreshes_ok = rt->refreshes_ok;
        st[i].refreshes_failed = rt->refreshes_failed;
    }
    if (relay == NULL)
        return;
    for (const struct relay_msg *msg = relay->msgs; msg != NULL;
         msg = msg->next) {
        if (msg->deleted || queue_env_finished(msg->env))
            continue;
        for (size_t i = 0; i < cfg->n_relays; i++)
            if (strcmp(cfg->relays[i].name, msg->env->relay) == 0) {
                st[i].queued++;
                break;
            }
    }
}

enum metrics_relay_result
metrics_relay_result_of(const struct relay_job *j, size_t pending)
{
    if (pending > 0)
        return METRICS_RELAY_DEFERRED;
    /* The dot's 2xx is the proof of delivery (relay.c conn_job_done()). */
    for (size_t i = 0; i < j->n; i++)
        if (!j->sent || j->code[i] < 200 || j->code[i] >= 300)
            return METRICS_RELAY_FAILED;
    return METRICS_RELAY_SENT;
}
