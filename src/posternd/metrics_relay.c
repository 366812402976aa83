/*
 * posternd - the queue's sizes for the metrics (metrics.h), read from the
 * queue manager's own list on the control loop, where both run: no lock,
 * and nothing of the relay's code changes for it.
 */
#include <string.h>

#include "metrics.h"
#include "relay_int.h"

void
metrics_relay_queued(const struct relay_mgr *relay, const struct config *cfg,
                     size_t *queued)
{
    for (size_t i = 0; i < cfg->n_relays; i++)
        queued[i] = 0;
    if (relay == NULL)
        return;
    for (const struct relay_msg *msg = relay->msgs; msg != NULL;
         msg = msg->next) {
        if (msg->deleted || queue_env_finished(msg->env))
            continue;
        for (size_t i = 0; i < cfg->n_relays; i++)
            if (strcmp(cfg->relays[i].name, msg->env->relay) == 0) {
                queued[i]++;
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
