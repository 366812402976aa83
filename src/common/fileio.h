/*
 * Small file helpers both programs' durable writes share (the Maildir
 * delivery, the relay's queue, the OAuth token file).  Blocking.
 */
#ifndef COMMON_FILEIO_H
#define COMMON_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/*
 * write(2) all of len bytes of p ([in]) to fd, retrying on EINTR and
 * short writes.
 * Returns: 0, or -1 with errno.
 */
int fileio_write_all(int fd, const void *p, size_t len);

/*
 * read(2) from fd into buf ([out], cap bytes) until end of file or
 * until buf is full, retrying on EINTR and short reads; *got ([out]) is
 * the number of bytes read, also when a read fails.
 * Returns: 0, or -1 with errno (a read error).
 */
int fileio_read_full(int fd, void *buf, size_t cap, size_t *got);

/*
 * fsync the directory path ([in]) so that the entries made in it survive
 * a crash.  A filesystem that cannot sync directories (EINVAL) makes its
 * entries durable some other way or not at all: that is success.
 * Returns: 0, or -1 with errno.
 */
int fileio_fsync_dir(const char *path);

/* fileio_fsync_dir() of the directory open as fd.  Returns: as
 * fileio_fsync_dir(). */
int fileio_fsync_dirfd(int fd);

/* fileio_fsync_dir() of the directory that holds path ("a/b" -> "a",
 * "b" -> ".").  Returns: as fileio_fsync_dir(). */
int fileio_fsync_parent(const char *path);

#endif
