/*
 * Reading a password (prompt.h): a line byte by byte, and a no-echo
 * terminal prompt that gives the terminal back even when a signal ends
 * the process mid-prompt.
 */
#include "prompt.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <postern/error.h>

/* The signals that end a process at a prompt (the user's ^C, ^\, a hang
 * up, a kill): each restores the terminal first. */
static const int prompt_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

#define PROMPT_NSIGNALS (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

/* The terminal being prompted on, for the signal handler. */
static struct termios prompt_saved;
static volatile sig_atomic_t prompt_tty_fd = -1;

int
prompt_read_line(int fd, struct pst_buf *out)
{
    int got = 0, rc;

    for (;;) {
        uint8_t c;
        ssize_t r = read(fd, &c, 1);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return PST_EIO;
        if (r == 0) {
            if (!got)
                return PST_ENOENT;
            break;
        }
        got = 1;
        if (c == '\n')
            break;
        if ((rc = pst_buf_append_byte(out, c)) < 0)
            return rc;
    }
    if (out->len > 0 && out->data[out->len - 1] == '\r')
        out->data[--out->len] = '\0';
    return 0;
}

/* Give the terminal its echo back, then die of the signal as we would
 * have.  Only async-signal-safe calls (tcsetattr, signal, raise). */
static void
prompt_on_signal(int sig)
{
    int fd = prompt_tty_fd;

    if (fd >= 0)
        tcsetattr(fd, TCSAFLUSH, &prompt_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

int
prompt_password(int tty_fd, int prompt_fd, const char *prompt,
                struct pst_buf *out)
{
    struct sigaction sa, old[PROMPT_NSIGNALS];
    struct termios quiet;
    size_t len = strlen(prompt);
    int rc;

    if (tcgetattr(tty_fd, &prompt_saved) != 0)
        return PST_ENOTSUP;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = prompt_on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < PROMPT_NSIGNALS; i++)
        sigaction(prompt_signals[i], &sa, &old[i]);
    quiet = prompt_saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
    quiet.c_lflag |= ECHONL | ICANON;
    /* Echo off before the prompt shows: what is typed once the prompt is
     * visible must not be echoed (getpass(3) does it in this order).  A
     * terminal that keeps its echo gets no password typed into it. */
    if (tcsetattr(tty_fd, TCSAFLUSH, &quiet) != 0) {
        for (size_t i = 0; i < PROMPT_NSIGNALS; i++)
            sigaction(prompt_signals[i], &old[i], NULL);
        return PST_EIO;
    }
    prompt_tty_fd = tty_fd;
    while (len > 0) {
        ssize_t w = write(prompt_fd, prompt, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* no prompt shown is no reason to refuse the line */
        prompt += w;
        len -= (size_t)w;
    }
    rc = prompt_read_line(tty_fd, out);
    tcsetattr(tty_fd, TCSAFLUSH, &prompt_saved);
    prompt_tty_fd = -1;
    for (size_t i = 0; i < PROMPT_NSIGNALS; i++)
        sigaction(prompt_signals[i], &old[i], NULL);
    return rc;
}
