/*
 * posternd - telling the service manager what state posternd is in
 * (systemd's sd_notify(3) protocol, for a Type=notify unit): READY=1
 * once the listeners are bound and the workers run, RELOADING=1 and
 * READY=1 around a SIGHUP reload, STOPPING=1 when a stop begins, and a
 * STATUS= line for `systemctl status`.
 *
 * Every call does nothing when posternd was not started with
 * $NOTIFY_SOCKET (a terminal, a test, another init), or was built
 * without libsystemd (meson -Dsystemd=disabled).
 */
#ifndef POSTERND_NOTIFY_H
#define POSTERND_NOTIFY_H

/* Started: listeners bound, workers running.  status ([in]) is shown by
 * systemctl status. */
void notify_ready(const char *status);

/* A reload begins (SIGHUP): RELOADING=1 with the CLOCK_MONOTONIC time,
 * as Type=notify-reload (systemd 253) asks. */
void notify_reloading(void);

/* The reload is over (done or refused): READY=1 again, with status. */
void notify_reloaded(const char *status);

/* A stop begins (SIGTERM, SIGINT). */
void notify_stopping(void);

#endif
