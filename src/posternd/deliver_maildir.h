/*
 * posternd - durable Maildir delivery.
 *
 * A message is written once, to a spool file in SPOOL/tmp, while its
 * DATA arrives; at the final dot it is fsync'd and hard-linked into the
 * new/ directory of every recipient's Maildir
 * (cr.yp.to/proto/maildir.html), each new/ directory fsync'd, and only
 * then is delivery reported.  All or nothing: the SMTP reply to the final
 * dot is one reply for every recipient (RFC 5321 §4.1.1.4), so a failure
 * for one recipient removes the links already made for the others, and
 * the caller answers 451 4.3.0.  The spool file goes in every case.
 *
 * The spool file has no name where the kernel allows it: it is opened
 * with O_TMPFILE in SPOOL/tmp and linked into new/ through
 * /proc/self/fd/N (open(2)), so a crash leaves nothing behind.  Where
 * O_TMPFILE is not supported (EOPNOTSUPP, EISDIR, EINVAL) or /proc is
 * not mounted, it is a named file SPOOL/tmp/QID (O_EXCL, mode 0600) held
 * with flock(LOCK_EX) from creation to maildir_free()/maildir_abort(); a
 * crash leaves it behind unlocked, and maildir_spool_clean() removes it.
 * The choice is made per maildir_begin(); once O_TMPFILE or /proc has
 * failed, the process uses named files for good.
 *
 * Test hook: with POSTERN_MAILDIR_NO_TMPFILE=1 in the environment (read
 * by every maildir_begin()), named files are used as if O_TMPFILE were
 * unsupported.  The daemon must not setenv() once threads run.
 *
 * Because delivery is link(2), the spool must be on the same filesystem as
 * every mailbox: maildir_check_spool() verifies that at start-up, and a
 * link that fails with EXDEV fails the delivery.
 *
 * Every call here may block on the disk (write, fsync): the daemon runs
 * maildir_append() of large chunks and maildir_commit() on the libuv
 * thread pool.  One message may be used by one thread at a time;
 * different messages by any number of threads, event loops and processes
 * at once: names are made of the time, pid, a process-wide atomic
 * counter and random bytes, and files are created with O_EXCL.
 * Committers that link into the same new/ directory at about the same
 * time share its fsync (group commit: see maildir_stats()).
 *
 * The bytes appended are stored exactly as given (the caller decides the
 * line endings and adds the Received header as the first chunk).
 */
#ifndef POSTERND_DELIVER_MAILDIR_H
#define POSTERND_DELIVER_MAILDIR_H

#include <stddef.h>
#include <stdint.h>

#include <postern/error.h>

#define MAILDIR_QID_LEN 20   /* characters of a queue id */
#define MAILDIR_ERR_MAX 512  /* bytes of an error description */

/* Seconds a spool file is safe from maildir_spool_clean() whatever its
 * lock: covers the moment between its O_EXCL creation and its flock(). */
#define MAILDIR_SPOOL_GRACE 5

struct maildir_msg; /* one message being received: opaque */

/*
 * Create the spool's tmp/ directory if missing (mode 0700), and check that
 * spool ([in] borrowed) and the mailboxes of template tmpl ([in] or NULL
 * for a pure relay, which has none)
 * borrowed: the part after "maildir:"; its fixed directory part before
 * the first "%", or the nearest existing parent of it) are on the same
 * filesystem (st_dev), since delivery links files.  err (err_size bytes)
 * says what is wrong.
 * Returns: 0, PST_EINVAL (different filesystems, or not a directory),
 * PST_EIO (a directory cannot be created or examined).
 */
int maildir_check_spool(const char *spool, const char *tmpl, char *err,
                        size_t err_size);

/*
 * Start a message: open an unnamed spool file in SPOOL/tmp (O_TMPFILE,
 * mode 0600), or else create SPOOL/tmp/QID with O_EXCL, mode 0600, and
 * flock(LOCK_EX) it (see above).  spool and hostname ([in] borrowed) are
 * copied; hostname goes into the names of the delivered files.  *out
 * ([out] owned) is released with maildir_free() or maildir_abort().
 * Returns: 0, PST_EINVAL (bad arguments), PST_EIO (cannot create the
 * file: errno says why), PST_ETEMP (no random bytes), PST_ENOMEM.
 */
int maildir_begin(const char *spool, const char *hostname,
                  struct maildir_msg **out);

/* The queue id of m (MAILDIR_QID_LEN characters, for the Received header
 * and the log), valid until m is freed. */
const char *maildir_qid(const struct maildir_msg *m);

/*
 * Append len bytes ([in] borrowed) to the message.  Data is buffered and
 * written in large blocks.  After an error every later call fails the
 * same way, so a caller may keep reading DATA to the final dot and answer
 * then.
 * Returns: 0, PST_EIO (write failed: disk full, quota, file size limit;
 * see maildir_error()), PST_ESTATE (already committed).
 */
int maildir_append(struct maildir_msg *m, const void *p, size_t len);

/* Bytes appended so far. */
uint64_t maildir_size(const struct maildir_msg *m);

/*
 * Deliver the message to n Maildirs (paths[], [in] borrowed, as made by
 * config_mailbox_expand()).  Flushes and fsyncs the spool file, creates
 * each Maildir with cur/, new/ and tmp/ as needed (mode 0700, parents
 * too, each new directory and its parent fsync'd), links the file into
 * new/ under a unique name "TIME.MUSECPPIDQCOUNTERRRANDOM.HOST,S=SIZE",
 * and waits for an fsync of new/ that started after the link: its own,
 * or one another thread of this process runs for the same directory
 * (group commit).  Returns 0 only when every copy is durable.  On failure
 * (an fsync shared with other commits fails for all of them) nothing is
 * left in any new/ (links already made are removed again) and the spool
 * file is gone.  Either way m is done: free it.
 * Returns: 0, PST_EIO (see maildir_error(); also after a failed append),
 * PST_EINVAL (n == 0 or a path not absolute or too long), PST_ESTATE
 * (committed before), PST_ENOMEM.
 */
int maildir_commit(struct maildir_msg *m, const char *const *paths,
                   size_t n);
/* (maildir_commit() is maildir_deliver() with root "/" and no queue.) */

struct queue_env;

/* A message for the relay (queue_file.h): where, and its envelope. */
struct maildir_queue {
    const char *dir;                /* [in] the queue directory */
    const struct queue_env *env;    /* [in] the envelope; its id is
                                       replaced by the message's queue id */
};

/*
 * Deliver the message: queue it for the relay (q, [in] borrowed, or NULL)
 * and link it into n local Maildirs (paths[], [in] borrowed, as made by
 * config_mailbox_expand(); n may be 0 when q is given), all or nothing,
 * durable before 0 is returned, as maildir_commit() describes.
 *
 * Symbolic links: root ([in], absolute; a prefix of every path: the fixed
 * part of the mailbox template) is the administrator's and is opened as
 * it is (made with its parents if missing); every directory below it is
 * made and opened relative to its parent's descriptor with O_NOFOLLOW
 * and O_DIRECTORY (mkdirat, openat, linkat), so a symbolic link (or a
 * file) anywhere below the root fails the delivery with nothing created
 * through it: maildir_error() says "refused symbolic link PATH".  The
 * queue directory is the administrator's too.
 * Returns: as maildir_commit(); PST_EINVAL also for a path outside root;
 * PST_ECANCEL (given up through the gate, maildir_set_gate(): nothing is
 * left).
 */
int maildir_deliver(struct maildir_msg *m, const char *root,
                    const char *const *paths, size_t n,
                    const struct maildir_queue *q);

/*
 * The commit gate: lets another thread give up a commit in flight
 * (posternd's timeout_final; the client gone) without waiting for it,
 * however long its fsyncs take, and without a race: maildir_deliver()
 * makes no link once the gate reads MAILDIR_GATE_ABANDONED, and turns
 * it from MAILDIR_GATE_OPEN to MAILDIR_GATE_COMMITTED (atomically) only
 * when every copy is durable; finding it abandoned then, it removes the
 * links it made (durably) and fails with PST_ECANCEL ("commit given
 * up").  The other side gives up by turning it from OPEN to ABANDONED:
 * if that fails, the commit went through and stands.
 * Parameters: gate [in] borrowed until maildir_deliver() returns (NULL:
 * none), starting at MAILDIR_GATE_OPEN.
 */
#define MAILDIR_GATE_OPEN      0
#define MAILDIR_GATE_COMMITTED 1
#define MAILDIR_GATE_ABANDONED 2
void maildir_set_gate(struct maildir_msg *m, _Atomic int *gate);

/*
 * What failed last, "OPERATION PATH: strerror" ("link
 * /var/mail/example.test/bob/new/...: No space left on device"), or ""
 * if nothing did.  An unnamed spool file is called SPOOL/tmp/QID there
 * too.  Valid until the next call on m.
 */
const char *maildir_error(const struct maildir_msg *m);

/* The errno of the last failure (0 if none): ENOSPC and EDQUOT are disk
 * full, for the log. */
int maildir_errno(const struct maildir_msg *m);

/*
 * Discard a message (the client went away mid-DATA, or the transaction
 * was reset): remove the spool file (a named one before its lock is
 * released) and free m.  NULL is a no-op.
 */
void maildir_abort(struct maildir_msg *m);

/* Free m after maildir_commit(); before a commit it is maildir_abort().
 * NULL is a no-op. */
void maildir_free(struct maildir_msg *m);

/*
 * Remove the files in SPOOL/tmp that no live message holds: every
 * regular file on which flock(LOCK_EX | LOCK_NB) succeeds (its writer
 * died before the message was acknowledged, so nobody was promised it),
 * unless it was modified less than min_age seconds ago.  Pass
 * MAILDIR_SPOOL_GRACE: younger files may be between their O_EXCL
 * creation and their flock() (and a file that loses that race anyway is
 * noticed by maildir_begin(), which then makes another).  Files of other
 * posternd processes sharing the spool, and of messages of this process,
 * are locked, so they stay; files of a posternd older than these locks
 * are not, and go.  Safe at any time, from any thread (blocking: run it
 * on the thread pool once the loop runs); O_TMPFILE spool files are never
 * seen here.
 * Returns: the number of files removed, or PST_EIO (SPOOL/tmp cannot be
 * read).
 */
int maildir_spool_clean(const char *spool, unsigned min_age);

/*
 * Group commit counters, process-wide since start (each pointer [out],
 * may be NULL): *dir_syncs fsyncs of a new/ directory run by
 * maildir_commit(), *dir_sync_waits links made durable by an fsync that
 * another commit ran (each an fsync saved).  Their sum is the number of
 * links that reached their fsync.
 */
void maildir_stats(uint64_t *dir_syncs, uint64_t *dir_sync_waits);

/*
 * Test hooks for the group commit.  hook (NULL: none), if set, is called
 * with arg by each commit about to fsync a new/ directory for itself and
 * the commits waiting on it, before the fsync; it returns 0 to let the
 * fsync run, or an errno to fail it with (the fsync is then not run).
 * maildir_sync_waiting() is the number of commits waiting right now for
 * an fsync that another commit runs.
 */
void maildir_set_sync_hook(int (*hook)(void *arg), void *arg);
unsigned maildir_sync_waiting(void);

#endif
