/*
 * posternd - group commit of directory fsyncs (dir_sync.c): the links
 * made into one directory at about the same time by several threads
 * share one fsync of it.  Used by Maildir delivery (each new/) and the
 * relay's queue directory.  maildir_stats(), maildir_set_sync_hook() and
 * maildir_sync_waiting() (deliver_maildir.h) are its counters and test
 * hooks.
 */
#ifndef POSTERND_DIR_SYNC_H
#define POSTERND_DIR_SYNC_H

/*
 * Make the entries made so far in the directory open as fd durable:
 * wait for (or run) an fsync of it that starts after this call.
 * Returns: 0, or the errno of the fsync that failed.
 */
int dir_sync(int fd);

#endif
