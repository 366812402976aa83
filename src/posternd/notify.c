/*
 * posternd - sd_notify(3) glue (notify.h).
 */
#include <stdio.h>
#include <time.h>

#include "notify.h"

#ifdef POSTERN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

/* libsystemd does nothing without $NOTIFY_SOCKET and keeps it set
 * (unset_environment 0): the later states go to the same socket. */
static void
notify_send(const char *state, const char *status)
{
    if (status != NULL)
        sd_notifyf(0, "%s\nSTATUS=%s", state, status);
    else
        sd_notify(0, state);
}
#else
static void
notify_send(const char *state, const char *status)
{
    (void)state;
    (void)status;
}
#endif

void
notify_ready(const char *status)
{
    notify_send("READY=1", status);
}

void
notify_reloading(void)
{
    struct timespec ts;
    char state[64];

    /* systemd.service(5), Type=notify-reload: "RELOADING=1" with
     * "MONOTONIC_USEC=" set to the current CLOCK_MONOTONIC time. */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        notify_send("RELOADING=1", "reloading");
        return;
    }
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull +
                 (unsigned long long)ts.tv_nsec / 1000u);
    notify_send(state, "reloading");
}

void
notify_reloaded(const char *status)
{
    notify_send("READY=1", status);
}

void
notify_stopping(void)
{
    notify_send("STOPPING=1", "stopping: sessions finish within "
                              "grace_period");
}
