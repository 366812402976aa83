/*
 * postern - the client side of posternd's control socket (posternd's
 * src/posternd/control.h describes the protocol: one command line, text
 * lines back, a line "." at the end).
 */
#ifndef POSTERN_CONTROL_CLIENT_H
#define POSTERN_CONTROL_CLIENT_H

#include <stddef.h>

#include <postern/buf.h>

#define CONTROL_SOCKET_NAME "posternd.sock"

/*
 * Send cmd ([in], one line without "\n") to the posternd whose spool is
 * spool, and read its answer into out (without the final "." line).
 * Returns: 1 (answered), 0 (no posternd runs on this spool: the socket is
 * missing or nobody listens), -1 (err says why: the socket is there but
 * the exchange failed, or permission denied).
 */
int control_call(const char *spool, const char *cmd, struct pst_buf *out,
                 char *err, size_t err_size);

/* A word of the answers decoded (%XX escapes); malloc'd, or NULL. */
char *control_decode_word(const char *w);

#endif
