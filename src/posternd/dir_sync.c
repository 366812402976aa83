/*
 * posternd - group commit of directory fsyncs (see dir_sync.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver_maildir.h"
#include "dir_sync.h"

#define DIR_SYNC_SLOTS 64  /* directories synced at once */

/*
 * Group commit of the fsyncs of new/.
 *
 * A link(2) into new/ is durable once an fsync(2) of new/ that STARTED
 * after the link returned has completed: fsync writes out the directory
 * as it is when it starts, and one already running at the time of the
 * link may have missed the new entry.  Any descriptor of the directory
 * will do (fsync acts on the inode), so one fsync can cover every link
 * made into the directory before it started.  When many commits link
 * into one new/ at about the same time, they share fsyncs this way:
 *
 * Per directory (key st_dev + st_ino, so two paths to it share), under
 * one mutex: "started" and "finished" count its fsyncs, at most one
 * running at a time (finished == started, or started - 1 while one
 * runs).  A commit, after its link, takes the mutex and sets
 * need = started + 1: the first fsync to start from now on, which is
 * after the link.  Then, until finished >= need:
 *   - nothing running: then started == finished < need, and started only
 *     grows from need - 1, so started == need - 1: the commit starts
 *     number need itself, unlocks, fsyncs, locks, sets finished = need
 *     and wakes everyone;
 *   - one running: it is number need - 1 (older than the link: no use),
 *     or number need (started by another commit that came later; it
 *     covers this one too).  Either way wait for it to finish, then look
 *     again.
 * So every commit waits for an fsync that started after its link, and
 * all commits that linked while fsync k ran are covered together by
 * fsync k + 1: under load, one fsync per round rather than one per
 * link.
 *
 * Errors: fsync reports a write-back error once (fsync(2) ERRORS; a later
 * fsync may succeed with the entry still not on disk), so every commit
 * that depended on a failed fsync must fail as if it had run it: each
 * directory keeps the number and errno of its latest failed fsync, and a
 * commit fails if it is >= need (an fsync after number need failing too
 * fails it: a spurious 451 on a disk already failing, never a false 250).
 *
 * The table is bounded: a slot is free again when no commit uses it
 * (users == 0; a running fsync's commit is a user), and then forgets its
 * counts (nobody waits on them).  With every slot in use a commit syncs
 * on its own.  One condition variable serves all directories: waiters
 * are at most the pool threads, and they wake only when an fsync ends.
 * Only commits of this process share: another process's fsync cannot be
 * known to have started after our link.
 */
struct dir_sync {
    dev_t    dev;                       /* the key: new/ */
    ino_t    ino;
    unsigned users;                     /* commits using the slot; 0: free */
    int      running;                   /* fsync number started runs */
    uint64_t started;                   /* fsyncs started */
    uint64_t finished;                  /* fsyncs finished */
    uint64_t failed;                    /* latest failed fsync, 0: none */
    int      failed_errno;
};

static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cond = PTHREAD_COND_INITIALIZER;
/* Under sync_lock: */
static struct dir_sync sync_slots[DIR_SYNC_SLOTS];
static uint64_t sync_runs;              /* fsyncs of new/ run */
static uint64_t sync_shared;            /* links covered by another's */
static unsigned sync_waiters;           /* commits in pthread_cond_wait */
static int (*sync_hook)(void *);        /* test hook, or NULL */
static void *sync_hook_arg;

/* fsync the directory open as fd: 0 or an errno.  A filesystem that
 * cannot sync directories (EINVAL) makes its entries durable some other
 * way or not at all; there is nothing more to do. */
static int
fsync_fd(int fd)
{
    return fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
}

/* The slot of directory st, taken for one more user; NULL if the table
 * is full.  Called with sync_lock held. */
static struct dir_sync *
sync_slot_get(const struct stat *st)
{
    struct dir_sync *free_slot = NULL;

    for (size_t i = 0; i < DIR_SYNC_SLOTS; i++) {
        struct dir_sync *e = &sync_slots[i];

        if (e->users == 0) {
            if (free_slot == NULL)
                free_slot = e;
        } else if (e->dev == st->st_dev && e->ino == st->st_ino) {
            e->users++;
            return e;
        }
    }
    if (free_slot != NULL)
        *free_slot = (struct dir_sync){
            .dev = st->st_dev, .ino = st->st_ino, .users = 1,
        };
    return free_slot;
}

/*
 * Make the links made so far into the directory open as fd durable: wait
 * for (or run) an fsync of it that starts after now (see above).
 * Returns 0 or the errno of the fsync that failed.
 */
int
dir_sync(int fd)
{
    struct stat st;
    struct dir_sync *e;
    uint64_t need;
    int rc = 0, ran = 0;

    if (fstat(fd, &st) != 0)
        return errno;
    pthread_mutex_lock(&sync_lock);
    e = sync_slot_get(&st);
    if (e == NULL) {
        /* Every slot busy: sync alone. */
        sync_runs++;
        pthread_mutex_unlock(&sync_lock);
        return fsync_fd(fd);
    }
    need = e->started + 1;
    while (e->finished < need) {
        if (!e->running) {
            int (*hook)(void *) = sync_hook;
            void *arg = sync_hook_arg;

            /* started == need - 1 here: this is fsync number need. */
            e->started = need;
            e->running = 1;
            sync_runs++;
            pthread_mutex_unlock(&sync_lock);
            if (hook != NULL)
                rc = hook(arg);
            if (rc == 0)
                rc = fsync_fd(fd);
            pthread_mutex_lock(&sync_lock);
            e->running = 0;
            e->finished = need;
            if (rc != 0) {
                e->failed = need;
                e->failed_errno = rc;
            }
            ran = 1;
            pthread_cond_broadcast(&sync_cond);
        } else {
            sync_waiters++;
            pthread_cond_wait(&sync_cond, &sync_lock);
            sync_waiters--;
        }
    }
    if (!ran) {
        sync_shared++;
        if (e->failed >= need)
            rc = e->failed_errno;
    }
    e->users--;
    pthread_mutex_unlock(&sync_lock);
    return rc;
}

void
maildir_stats(uint64_t *dir_syncs, uint64_t *dir_sync_waits)
{
    pthread_mutex_lock(&sync_lock);
    if (dir_syncs != NULL)
        *dir_syncs = sync_runs;
    if (dir_sync_waits != NULL)
        *dir_sync_waits = sync_shared;
    pthread_mutex_unlock(&sync_lock);
}

void
maildir_set_sync_hook(int (*hook)(void *arg), void *arg)
{
    pthread_mutex_lock(&sync_lock);
    sync_hook = hook;
    sync_hook_arg = arg;
    pthread_mutex_unlock(&sync_lock);
}

unsigned
maildir_sync_waiting(void)
{
    unsigned n;

    pthread_mutex_lock(&sync_lock);
    n = sync_waiters;
    pthread_mutex_unlock(&sync_lock);
    return n;
}
