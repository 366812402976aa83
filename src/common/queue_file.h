/*
 * The relay queue on disk (DESIGN.md "Routing, relay and the queue"),
 * shared by posternd (which writes and delivers it) and `postern queue`
 * (which reads it, and deletes from it while posternd is stopped).
 *
 * One queued message is two files in the queue directory:
 *   QID       the message as stored at the final dot (a hard link to the
 *             spool file, so the Maildirs of local recipients share it);
 *             never changed;
 *   QID.env   its envelope: a header block written once (to .QID.env.tmp,
 *             fsync'd, renamed), then one line appended and fdatasync'd
 *             per event (a recipient accepted or refused upstream, an
 *             attempt deferred, the bounce queued).
 * A message is queued once the directory is fsync'd after both names are
 * made (the caller does that: posternd shares one fsync among commits);
 * it is done when QID.env is removed (then QID).  At start-up a QID
 * without QID.env is what a crash left before the 250: nobody was
 * promised it (queue_file_orphans()).
 *
 * QID.env is text, one item per line ("\n"), addresses in xtext (RFC
 * 3461 §4) so that a quoted local part with spaces stays one word:
 *
 *   postern-queue 1
 *   arrival 1733550000            Unix seconds of the 250
 *   sender alice@example.test     "" (an empty value) for <>
 *   relay m365
 *   user alice@example.test       the authenticated user, or empty
 *   offset 48                     first octet of QID sent upstream
 *   rcpt bob@example.org          one per recipient, in order (index 0..)
 *   end
 *   sent 0 1733550002 250 2.0.0 OK queued as 1234     (appended records)
 *   failed 1 1733550002 550 5.1.1 no such user
 *   deferred 1733550002 1733550302 451 4.3.0 try again later
 *   bounced 1733550003
 *
 * A record is one write(2) of a whole line with O_APPEND; a crash may
 * leave a last line without its "\n", which the parser ignores (the event
 * it recorded was never acted on: the record is written before the next
 * step).  Reply text is made printable ASCII on one line.
 */
#ifndef POSTERN_COMMON_QUEUE_FILE_H
#define POSTERN_COMMON_QUEUE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>

#define QUEUE_ID_MAX     40        /* characters of a queue id */
#define QUEUE_ENV_MAX    (16u << 20) /* octets of an envelope file */
#define QUEUE_RCPT_MAX   100000    /* recipients of one message */
#define QUEUE_TEXT_MAX   512       /* octets of reply text kept */
#define QUEUE_FORMAT     1         /* "postern-queue 1" */

enum queue_rcpt_state {
    QUEUE_RCPT_PENDING = 0,        /* not delivered yet */
    QUEUE_RCPT_SENT,               /* the smarthost accepted it */
    QUEUE_RCPT_FAILED,             /* refused for good: goes in a bounce */
};

struct queue_rcpt {
    char    *addr;                 /* owned, without <> */
    enum queue_rcpt_state state;
    int64_t  when;                 /* of the result; 0: none */
    unsigned code;                 /* the reply that decided it, or 0 */
    char    *reply;                /* owned: that reply's text, or NULL */
};

/* One queued message, as its envelope file says. */
struct queue_env {
    char     id[QUEUE_ID_MAX + 1];
    int64_t  arrival;              /* Unix seconds */
    char    *sender;               /* owned; "" for the null sender */
    char    *relay;                /* owned: the relay's name */
    char    *user;                 /* owned; "" if none */
    uint64_t offset;               /* where the upstream copy starts */
    struct queue_rcpt *rcpt;       /* owned, nrcpt of them */
    size_t   nrcpt;
    /* From the records: */
    unsigned attempts;             /* deferred attempts so far */
    int64_t  last_attempt;         /* of the last deferral; 0: none */
    int64_t  next_attempt;         /* not before; 0: at once */
    char    *last_reply;           /* owned: why it was deferred, or NULL */
    int      bounced;              /* the bounce of the failed ones is
                                      queued */
};

/* What an appended record says (queue_file_append()). */
enum queue_record {
    QUEUE_REC_SENT = 0,            /* rcpt idx accepted upstream */
    QUEUE_REC_FAILED,              /* rcpt idx refused for good */
    QUEUE_REC_DEFERRED,            /* an attempt failed for now */
    QUEUE_REC_BOUNCED,             /* the bounce was queued */
};

/*
 * The envelope header block of e ([in] borrowed; the result fields are
 * ignored) appended to out.
 * Returns: 0, PST_EINVAL (an id that is not a queue id, a relay name with
 * a space or control character, no recipients), PST_ELIMIT, PST_ENOMEM.
 */
int queue_env_format(const struct queue_env *e, struct pst_buf *out);

/*
 * One record line appended to out: rec about recipient idx (SENT,
 * FAILED), or the attempt (DEFERRED: next is the next attempt's time),
 * with the reply code and text ([in] borrowed; made printable, one line,
 * at most QUEUE_TEXT_MAX octets; may be NULL) of the time now.
 * Returns: 0, PST_ELIMIT, PST_ENOMEM.
 */
int queue_env_format_record(enum queue_record rec, size_t idx, int64_t now,
                            int64_t next, unsigned code, const char *text,
                            struct pst_buf *out);

/*
 * Parse an envelope file's len bytes ([in] borrowed) and apply its
 * records.  id ([in]) is the queue id (the file's name), copied.  *out
 * ([out] owned) is freed with queue_env_free().  err (err_size bytes)
 * says what is wrong, with the line number.
 * Returns: 0, PST_ESYNTAX (not an envelope file of this format, or a
 * record that does not fit it), PST_ENOMEM.
 */
int queue_env_parse(const char *id, const uint8_t *p, size_t len,
                    struct queue_env **out, char *err, size_t err_size);

/* Free e; NULL is a no-op. */
void queue_env_free(struct queue_env *e);

/* Whether every recipient is SENT or FAILED (1) or not (0). */
int queue_env_finished(const struct queue_env *e);

/* Recipients in state st. */
size_t queue_env_count(const struct queue_env *e, enum queue_rcpt_state st);

/* Whether id (NUL-terminated) is a valid queue id: 1..QUEUE_ID_MAX
 * characters of [0-9A-Za-z]. */
int queue_id_valid(const char *id);

/* --- Files (blocking: run them off the event loop) ----------------------
 */

/*
 * Create the queue directory dir (mode 0700) if missing and check it is a
 * directory this process can write.  err says what is wrong.
 * Returns: 0, PST_EIO.
 */
int queue_file_check_dir(const char *dir, char *err, size_t err_size);

/*
 * Write e's header block as dir/QID.env: to dir/.QID.env.tmp (O_EXCL, mode
 * 0600, fsync'd), then renamed.  The directory is not fsync'd here.
 * Returns: 0, PST_EIO (errno says why), PST_EINVAL, PST_ENOMEM.
 */
int queue_file_write_env(const char *dir, const struct queue_env *e);

/*
 * Append one record (see queue_env_format_record()) to dir/id.env and
 * fdatasync it.
 * Returns: 0, PST_EIO (errno says why; ENOENT: the message is gone),
 * PST_ENOMEM.
 */
int queue_file_append(const char *dir, const char *id, enum queue_record rec,
                      size_t idx, int64_t now, int64_t next, unsigned code,
                      const char *text);

/*
 * Read and parse dir/id.env (at most QUEUE_ENV_MAX octets).
 * Returns: as queue_env_parse(), and PST_EIO (cannot read it; ENOENT:
 * not queued).
 */
int queue_file_load(const char *dir, const char *id, struct queue_env **out,
                    char *err, size_t err_size);

/*
 * Remove a message: dir/id.env first (from then on it is not queued),
 * then dir/id.  Not fsync'd: a message whose removal a crash undoes is
 * found again with every recipient finished, and removed again.
 * Returns: 0, PST_EIO (ENOENT: not queued).
 */
int queue_file_remove(const char *dir, const char *id);

/*
 * The ids of the queued messages (those with an envelope file), sorted.
 * *ids ([out] owned) is an array of *n strings freed with
 * queue_file_ids_free().
 * Returns: 0, PST_EIO, PST_ENOMEM.
 */
int queue_file_list(const char *dir, char ***ids, size_t *n);

/* Free what queue_file_list() made. */
void queue_file_ids_free(char **ids, size_t n);

/*
 * Remove what a crash left: message files without an envelope and
 * temporary envelope files, older than min_age seconds (younger ones may
 * belong to a commit in progress).
 * Returns: the number of files removed, or PST_EIO.
 */
int queue_file_orphans(const char *dir, unsigned min_age);

/*
 * Open dir/id for reading (O_NOFOLLOW); the caller reads from
 * e->offset.
 * Returns: a descriptor, or -1 with errno.
 */
int queue_file_open_message(const char *dir, const char *id);

#endif
