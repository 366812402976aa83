/*
 * posternd - the server as main() sees it.  The control loop is
 * server.c, the workers and their listeners listener.c, a connection and
 * its session session.c and session_events.c, the configuration
 * snapshot snapshot.c (listener.h says how the threads fit together).
 */
#ifndef POSTERND_SERVER_H
#define POSTERND_SERVER_H

#include "config.h"

/*
 * Run posternd with the configuration file at path until SIGTERM/SIGINT
 * (then let sessions finish for grace_period seconds).  Started as root
 * with `user`, it loads the configuration (TLS key and user file
 * included) and binds its listeners as root, then drops to the user
 * (priv.h) before any thread starts.  SIGHUP re-reads the configuration
 * and the user file, keeping the old ones if the new ones are broken.
 * Returns: the process exit code (0 after a clean stop).
 */
int server_run(const char *path);

/*
 * posternd -t: load the configuration and everything it names (TLS
 * files, user file, spool), check what `user` may write (priv.h), and
 * report.  Returns the exit code.
 */
int server_check(const char *path);

#endif
