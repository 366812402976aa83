/*
 * posternd - the control socket: how `postern queue` and `postern oauth`
 * reach the running posternd from the configuration file alone
 * (DESIGN.md "Routing, relay and the queue").
 *
 * A Unix stream socket SPOOL/posternd.sock (mode 0600, in the spool,
 * which is 0700 and posternd's: only root and posternd's user get in).
 * One command line per connection (at most CONTROL_LINE_MAX octets,
 * within CONTROL_TIMEOUT_MS), answered with text lines, then the
 * connection is closed.  The commands are relay_mgr_command()'s.
 * posternd also writes SPOOL/posternd.pid.
 */
#ifndef POSTERND_CONTROL_H
#define POSTERND_CONTROL_H

#include <stddef.h>

#include <uv.h>

#define CONTROL_SOCKET     "posternd.sock"
#define CONTROL_PIDFILE    "posternd.pid"
#define CONTROL_LINE_MAX   1024
#define CONTROL_TIMEOUT_MS 10000

struct relay_mgr;
struct control;

/*
 * Listen on SPOOL/posternd.sock (a stale socket of a dead posternd is
 * replaced; a live one's is refused: another posternd runs on this
 * spool) and write SPOOL/posternd.pid.
 * Returns: 0, or -1 with err (err_size bytes) saying why.
 */
int control_start(uv_loop_t *loop, const char *spool, struct relay_mgr *m,
                  struct control **out, char *err, size_t err_size);

/* Stop listening, remove the socket and the pid file; close what is
 * open.  The memory goes with the loop's next run. */
void control_stop(struct control *c);

#endif
