/*
 * posternd - the configuration snapshot: everything a reload replaces
 * (the parsed file, the TLS context, the user store, each listener's
 * SMTP session settings), loaded and checked as one, shared by the
 * connections made under it and freed with the last of them.
 */
#ifndef POSTERND_SNAPSHOT_H
#define POSTERND_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <postern/smtp.h>

#include "config.h"
#include "priv.h"
#include "tls.h"
#include "userdb.h"

/* One listener's session settings. */
struct snapshot_listener {
    struct pst_smtp_server_config scfg;
    const struct pst_sasl_mech *mechs[CONFIG_MAX_MECHS + 1];
    struct tls_client_ca *client_ca; /* tls_client_ca: what its
                                 connections ask of client certificates;
                                 NULL: nothing */
};

/* One [profile NAME]'s own TLS context (tls_min_version). */
struct snapshot_profile {
    struct tls_ctx *tls;      /* NULL: the global context */
};

struct snapshot {
    atomic_uint refs;         /* taken and dropped by every loop */
    struct config *cfg;
    struct tls_ctx *tls;      /* NULL when no listener has TLS */
    struct snapshot_profile *p; /* one per cfg->profiles[] */
    struct userdb *udb;       /* the store as loaded (posternd -t, and
                                 the loops that may share it) */
    struct snapshot_listener *l; /* one per cfg->listeners[] */
    char **uri_hosts;         /* NULL-terminated listening addresses */
    char *mail_root;          /* config_mailbox_root() of the mailbox */
    struct priv_user user;    /* cfg->user resolved; name "" when unset */
};

/*
 * Load the configuration at path ([in]) and all it names: `user` is
 * resolved (priv_lookup()), the spool is checked (its tmp/ made, the
 * user's when a root process will drop to the user), the user store
 * opened, the TLS context made, and every listener's settings tried on
 * an SMTP session (the session refuses some that the parser accepts:
 * better at load time, posternd -t, start or SIGHUP, than by closing
 * every connection without a word).
 *
 * prev ([in], NULL at start-up and for posternd -t) is the snapshot in
 * service when SIGHUP reloads: a user file or TLS certificate or key
 * that this process may not read any more (EACCES: posternd runs as
 * `user` now, and the file is root's) is kept as prev loaded it, if the
 * configuration still names the same file; a warning says so
 * (reload_kept).  Anything else that cannot be read fails the load.
 * Returns: the snapshot ([out] owned, one reference: snapshot_unref()),
 * or NULL with err (n bytes) saying why.
 */
struct snapshot *snapshot_load(const char *path, const struct snapshot *prev,
                               char *err, size_t n);

/*
 * The session settings for a client of profile p ([in], may be NULL:
 * none) on listener lidx: the listener's, with the profile's exceptions
 * (auth_before_tls, helo_auth, bare_lf, long_lines, legacy_auth_line).
 * Parameters: *out [out] points into sc, valid while sc is.
 */
void snapshot_session_config(const struct snapshot *sc, size_t lidx,
                             const struct config_profile *p,
                             struct pst_smtp_server_config *out);

/*
 * The TLS context for a client of profile p (may be NULL) on a listener
 * with TLS: the profile's own (its tls_min_version), else the global one.
 * Returns: borrowed from sc; NULL when no listener has TLS.
 */
struct tls_ctx *snapshot_client_tls(const struct snapshot *sc,
                                    const struct config_profile *p);

/*
 * The SCRAM secret (scram_secret_file of sc's configuration, [in]
 * borrowed): the file's content without trailing white space, at least
 * SNAPSHOT_SECRET_MIN bytes, from a regular file no one but its owner
 * may read, opened without following a symbolic link.  posternd reads
 * it at start-up, before the privilege drop (as the TLS key: a file
 * only root may read will do), and never again.  With create, a missing
 * file is made first (SNAPSHOT_SECRET_LEN random bytes as hexadecimal
 * digits and a newline, mode 0600, fsync'd with its directory), the
 * `user`'s when root makes it for a process that drops to the user;
 * without, a missing file is reported.  *out ([out] owned, secret:
 * OPENSSL_clear_free(*out, *len)).
 * Returns: 0, 1 (missing, create == 0: err says it will be made), -1
 * (err, n bytes, says why).
 */
#define SNAPSHOT_SECRET_LEN 32
#define SNAPSHOT_SECRET_MIN 16
#define SNAPSHOT_SECRET_MAX 4096
int snapshot_secret_load(const struct snapshot *sc, int create,
                         uint8_t **out, size_t *len, char *err, size_t n);

/* Give every listener's session settings of sc the SCRAM secret
 * ([in] borrowed: it must outlive sc, as the server's does). */
void snapshot_set_secret(struct snapshot *sc, const uint8_t *secret,
                         size_t len);

/* Take a reference (any thread). */
struct snapshot *snapshot_ref(struct snapshot *sc);

/* Drop a reference; the last frees it.  NULL is a no-op. */
void snapshot_unref(struct snapshot *sc);

#endif
