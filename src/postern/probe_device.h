/*
 * postern probe --as-device: run the session a typical legacy device runs
 * (a scanner, a printer: HELO, AUTH LOGIN before TLS, bare LF line ends,
 * long lines, TLS 1.0) against a server, one quirk per step, and report
 * step by step what would fail and which key of a posternd [profile NAME]
 * would let it through (DESIGN.md "Per-client compatibility profiles";
 * INTEROP.md "Legacy devices").
 */
#ifndef POSTERN_PROBE_DEVICE_H
#define POSTERN_PROBE_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client.h"

struct probe_device {
    const char *user;           /* [in] AUTH LOGIN as this user, or NULL
                                   (the exchange is cancelled at the
                                   password: offered or not is enough) */
    const uint8_t *password;    /* [in] secret, with user */
    size_t password_len;
    const char *from;           /* [in] MAIL FROM (default: user) */
    const char *to;             /* [in] RCPT TO of the test messages of
                                   the DATA steps; NULL: those steps are
                                   skipped */
};

/*
 * Run every step against co->url (each on a connection of its own, as a
 * device would retry) and print the report to out:
 *
 *   postern probe --as-device smtp://HOST:PORT
 *     TLS 1.0 handshake       fails: ... -> tls_min_version = TLSv1
 *     ...
 *   result: N of M steps fail; for the device's network: KEY = VALUE, ...
 *
 * Certificates are not checked (most devices do not).  The DATA steps
 * deliver a short test message each to d->to when they pass.
 * Parameters: co [in] borrowed (url, timeout, verbose); d [in] borrowed.
 * Returns: EX_OK (every step passes), EX_PROTOCOL (a step fails: the
 * report says which key fixes it), EX_UNAVAILABLE (no connection or no
 * greeting at all).
 */
int probe_device_run(const struct client_opts *co,
                     const struct probe_device *d, FILE *out);

#endif
