/*
 * posternd - the privilege drop (DESIGN.md "Privileges").
 *
 * Started as root, posternd reads what only root may read (the TLS key,
 * and the user file if it is root's) and binds its listeners, then runs
 * as the configuration's `user` for good: supplementary groups set to the
 * user's group alone, real, effective and saved group and user ids the
 * user's, a check that root cannot be had back, and PR_SET_DUMPABLE 0 (no
 * core file, no ptrace by the user's other processes: the process still
 * holds the TLS key and the users' verifiers).  As Postfix's set_ugid()
 * (src/util/set_ugid.c) and OpenSMTPD's privileged processes do it.
 *
 * What posternd writes after the drop must be the user's to write: the
 * spool, the relay's queue and the mailboxes.  priv_check_dirs() says
 * which are not, at start-up (after the drop) and for posternd -t (in a
 * child process that drops to the user, so that the answer is the
 * kernel's: owners, modes, groups and ACLs alike).
 */
#ifndef POSTERND_PRIV_H
#define POSTERND_PRIV_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"

#define PRIV_NAME_MAX 64 /* bytes of a user name, terminator included */

/* The user posternd runs as: `user = NAME`, resolved. */
struct priv_user {
    char name[PRIV_NAME_MAX];
    uid_t uid;
    gid_t gid;               /* the user's primary group */
};

/*
 * Resolve name ([in]) with getpwnam_r() into *out.  Refused: an unknown
 * user, and one whose uid or primary group is 0 (root would keep its
 * power).  err ([out], n bytes) says why.
 * Returns: 0, PST_EINVAL (refused), PST_ENOMEM.
 */
int priv_lookup(const char *name, struct priv_user *out, char *err,
                size_t n);

/*
 * Become u ([in]) for good: setgroups() to u's group alone, setresgid(),
 * setresuid(); then check that every id is u's, that setuid(0) and
 * setgid(0) fail, and set PR_SET_DUMPABLE to 0.  Needs root (effective
 * uid 0); call it before any thread starts.  err ([out], n bytes) says
 * what failed; the process must then exit: it may be half-way.
 * Returns: 0, PST_EIO (a call failed), PST_ESTATE (root could be had
 * back: a kernel or a security module that ignores the calls).
 */
int priv_drop(const struct priv_user *u, char *err, size_t n);

/*
 * Make the directory path ([in]) with mode, owned by u ([in]), unless it
 * exists: the spool's tmp/ that a root process would otherwise make as
 * root's before dropping to u.  Nothing is changed in a directory that
 * exists.
 * Returns: 0 (made, or there already), PST_EIO (errno says why).
 */
int priv_make_dir(const char *path, unsigned mode,
                  const struct priv_user *u);

/* What priv_check_dirs() found. */
enum priv_severity {
    PRIV_ERROR = 0,          /* posternd cannot work: the spool, the
                                queue */
    PRIV_WARNING,            /* some mail cannot be delivered: a
                                mailbox, the mail root */
};

/*
 * Whether this process, as it runs now, may write where posternd writes
 * (read, write and search, access(2) with the real ids: call it after
 * priv_drop(), or in a child that dropped): the spool and its tmp/, the
 * queue (or the directory it would be made in), the mail root of the
 * mailbox template (or its nearest existing parent) and, with walk, every
 * existing directory below the mail root that delivery would use: one
 * per escape of the template and every Maildir with its cur/, new/ and
 * tmp/ (a symbolic link there is reported too: delivery refuses it).
 * report(ctx, severity, message) runs for the first PRIV_REPORT_MAX
 * problems; message ([in], borrowed for the call) names the path and
 * `who` ([in], e.g. "postern (uid 998)").
 * Returns: the number of problems of severity PRIV_ERROR; *warnings
 * ([out], may be NULL) gets the number of warnings (more may have been
 * found than reported).
 */
#define PRIV_REPORT_MAX 20
unsigned priv_check_dirs(const struct config *cfg, int walk,
                         const char *who,
                         void (*report)(void *ctx,
                                        enum priv_severity severity,
                                        const char *message),
                         void *ctx, unsigned *warnings);

/*
 * posternd -t as root: run priv_check_dirs() with walk in a child process
 * that drops to u first, the messages written by the child on stderr as
 * "posternd: FILE: ..." (FILE: conf, [in]).
 * Returns: the number of errors, or -1 when the check could not run
 * (err, n bytes, says why).
 */
int priv_check_as(const struct priv_user *u, const struct config *cfg,
                  const char *conf, unsigned *warnings, char *err,
                  size_t n);

#endif
