/*
 * postern - the client side of posternd's control socket.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_client.h"

#define CONTROL_CLIENT_TIMEOUT_MS 30000

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *
control_decode_word(const char *w)
{
    size_t n = strlen(w), k = 0;
    char *s = malloc(n + 1);

    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (w[i] == '%' && i + 2 < n && hexval(w[i + 1]) >= 0 &&
            hexval(w[i + 2]) >= 0) {
            s[k++] = (char)(hexval(w[i + 1]) << 4 | hexval(w[i + 2]));
            i += 2;
        } else {
            s[k++] = w[i];
        }
    }
    s[k] = '\0';
    return s;
}

int
control_call(const char *spool, const char *cmd, struct pst_buf *out,
             char *err, size_t err_size)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct pollfd pfd;
    char buf[4096];
    size_t sent = 0, len = strlen(cmd);
    int fd;

    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", spool,
                 CONTROL_SOCKET_NAME) >= (int)sizeof(sa.sun_path)) {
        snprintf(err, err_size, "spool %s: name too long for a socket",
                 spool);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;

        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return 0; /* not running */
        snprintf(err, err_size, "%s: %s", sa.sun_path, strerror(e));
        return -1;
    }
    while (sent <= len) {
        /* The command, then its "\n". */
        const char *p = sent < len ? cmd + sent : "\n";
        size_t n = sent < len ? len - sent : 1;
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, err_size, "%s: %s", sa.sun_path, strerror(errno));
            close(fd);
            return -1;
        }
        sent += (size_t)w;
    }
    pfd.fd = fd;
    pfd.events = POLLIN;
    for (;;) {
        ssize_t r;
        int pr = poll(&pfd, 1, CONTROL_CLIENT_TIMEOUT_MS);

        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            snprintf(err, err_size, "%s: no answer from posternd",
                     sa.sun_path);
            close(fd);
            return -1;
        }
        r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (pst_buf_append(out, buf, (size_t)r) < 0) {
            snprintf(err, err_size, "the answer is too long");
            close(fd);
            return -1;
        }
    }
    close(fd);
    /* The answer ends with a line ".": without it, it was cut short. */
    if (out->len < 2 || memcmp(out->data + out->len - 2, ".\n", 2) != 0 ||
        (out->len > 2 && out->data[out->len - 3] != '\n')) {
        snprintf(err, err_size, "%s: the answer was cut short", sa.sun_path);
        return -1;
    }
    out->len -= 2;
    out->data[out->len] = '\0';
    return 1;
}
