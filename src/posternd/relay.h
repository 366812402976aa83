/*
 * posternd - the relay's queue manager (DESIGN.md "Routing, relay and the
 * queue").  It runs on the control loop (the main thread): it knows every
 * queued message (queue_file.h), decides when each goes, opens
 * connections to each relay's smarthost (relay_conn.h) within the relay's
 * max_connections and max_messages_per_minute, records what each
 * recipient got (durably, before acting on it), retries with backoff
 * (retry_min doubling to retry_max), bounces what failed for good or
 * outlived queue_lifetime (bounce.h), removes what is done, and answers
 * `postern queue` and `postern oauth status` (control.h).
 *
 * The session loops hand it new messages with relay_mgr_post() (any
 * thread).  Every file operation runs on the thread pool.
 */
#ifndef POSTERND_RELAY_H
#define POSTERND_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>
#include <uv.h>

struct config;
struct relay_mgr;

/*
 * Start the manager on loop with configuration cfg ([in] borrowed until
 * the next relay_mgr_reload() or relay_mgr_free()): clean what a crash
 * left in the queue directory, load every queued message (blocking: call
 * it before the loop runs), and schedule them.  A configuration without a
 * queue (no relay) gets a manager that does nothing.
 * Returns: 0, PST_EIO (the queue directory; err says why), PST_ENOMEM.
 */
int relay_mgr_new(uv_loop_t *loop, const struct config *cfg,
                  struct relay_mgr **out, char *err, size_t err_size);

/*
 * A reloaded configuration (SIGHUP): relays are matched by name (their
 * counters, tokens and pauses survive); settings apply from the next
 * connection.  A message whose relay is gone waits (logged) until one of
 * its name comes back or its lifetime ends.
 */
void relay_mgr_reload(struct relay_mgr *m, const struct config *cfg);

/*
 * A message was queued (its envelope is on disk): load and schedule it.
 * Thread-safe; id ([in]) is copied.
 */
void relay_mgr_post(struct relay_mgr *m, const char *id);

/* Stop: no new connection; connections finish the message they send
 * and quit.  relay_mgr_abort() ends them at once (grace period over). */
void relay_mgr_stop(struct relay_mgr *m);
void relay_mgr_abort(struct relay_mgr *m);

/* Whether the manager has nothing running (connections, file work). */
int relay_mgr_idle(const struct relay_mgr *m);

/* Free m (after it is idle, or with the loop stopped). */
void relay_mgr_free(struct relay_mgr *m);

/*
 * Control commands (control.c), answered into out as text lines:
 *   list                one line per message
 *   show ID             the envelope, each recipient's state, replies
 *   flush               every deferred message and paused-for-retry relay
 *                       is due now
 *   delete ID           removed from the queue (no bounce)
 *   relay NAME          the relay's state: connections, retry, pause,
 *                       token expiry and last refresh
 *   token NAME          re-read the relay's token file now (after
 *                       `postern oauth login`): a paused relay resumes
 * Returns: 0, PST_EINVAL (unknown command or id; out says why).
 * A command that needs the disk finishes later: done(ctx, rc) is then
 * called with out filled; 1 is returned meanwhile.
 */
int relay_mgr_command(struct relay_mgr *m, const char *cmd,
                      struct pst_buf *out,
                      void (*done)(void *ctx, int rc), void *ctx);

#endif
