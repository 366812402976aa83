/*
 * src/common/prompt.c: a password line from a pipe, and the no-echo
 * prompt on a pseudo-terminal (a child process answers it; the test is
 * the user at the keyboard), including a signal arriving mid-prompt.
 */
#define _XOPEN_SOURCE 600
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "prompt.h"

/* prompt_read_line() on a pipe holding input[0..len), ceiling max. */
static int
read_pipe(const char *input, size_t len, size_t max, struct pst_buf *out)
{
    int fds[2], rc;

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], input, len), (ssize_t)len);
    close(fds[1]);
    pst_buf_init(out, max, 1);
    rc = prompt_read_line(fds[0], out);
    close(fds[0]);
    return rc;
}

static void
test_read_line(void **state)
{
    static const struct {
        const char *input;
        int rc;
        const char *want;
    } rows[] = {
        {"s3cret\n", 0, "s3cret"},
        {"s3cret\r\n", 0, "s3cret"},     /* a line from a DOS file */
        {"s3cret", 0, "s3cret"},         /* no line end: end of input */
        {"\n", 0, ""},                   /* an empty line */
        {"", PST_ENOENT, ""},            /* nothing at all */
        {"a b\tc\r\x01\n", 0, "a b\tc\r\x01"}, /* one \r only at the end */
        {"first\nsecond\n", 0, "first"},
    };
    struct pst_buf b;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = read_pipe(rows[i].input, strlen(rows[i].input), 64, &b);

        if (rc != rows[i].rc || b.len != strlen(rows[i].want) ||
            (b.len > 0 && memcmp(b.data, rows[i].want, b.len) != 0))
            fail_msg("row %zu: got %s \"%.*s\", want %s \"%s\"", i,
                     pst_errname(rc), (int)b.len,
                     b.data != NULL ? (const char *)b.data : "",
                     pst_errname(rows[i].rc), rows[i].want);
        pst_buf_clear(&b);
    }
}

/* The ceiling, exactly; and a second line left unread. */
static void
test_read_line_limit(void **state)
{
    char line[70];
    struct pst_buf b;
    int fds[2];

    (void)state;
    memset(line, 'x', 64);
    line[64] = '\n';
    assert_rc(read_pipe(line, 65, 64, &b), 0);
    assert_int_equal(b.len, 64);
    pst_buf_clear(&b);
    line[64] = 'x';
    line[65] = '\n';
    assert_rc(read_pipe(line, 66, 64, &b), PST_ELIMIT);
    pst_buf_clear(&b);

    /* Byte by byte: what follows the line stays in the pipe. */
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "one\ntwo\n", 8), 8);
    close(fds[1]);
    pst_buf_init(&b, 64, 1);
    assert_rc(prompt_read_line(fds[0], &b), 0);
    assert_buf_str(&b, "one");
    pst_buf_reset(&b);
    assert_rc(prompt_read_line(fds[0], &b), 0);
    assert_buf_str(&b, "two");
    pst_buf_reset(&b);
    assert_rc(prompt_read_line(fds[0], &b), PST_ENOENT);
    close(fds[0]);
    assert_rc(prompt_read_line(fds[0], &b), PST_EIO);
    assert_int_equal(errno, EBADF);
    pst_buf_clear(&b);
}

/* Not a terminal: nothing read. */
static void
test_prompt_not_a_tty(void **state)
{
    struct pst_buf b;
    int fds[2];

    (void)state;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "pw\n", 3), 3);
    pst_buf_init(&b, 64, 1);
    assert_rc(prompt_password(fds[0], fds[1], "Password: ", &b),
              PST_ENOTSUP);
    assert_int_equal(b.len, 0);
    close(fds[0]);
    close(fds[1]);
    pst_buf_clear(&b);
}

/* A pseudo-terminal: *master for the test, *slave for the prompt. */
static void
open_pty(int *master, int *slave)
{
    struct termios t;
    const char *name;

    *master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(*master >= 0);
    assert_int_equal(grantpt(*master), 0);
    assert_int_equal(unlockpt(*master), 0);
    name = ptsname(*master);
    assert_non_null(name);
    *slave = open(name, O_RDWR | O_NOCTTY);
    assert_true(*slave >= 0);
    /* A terminal as a shell leaves it: canonical, echoing. */
    assert_int_equal(tcgetattr(*slave, &t), 0);
    t.c_lflag |= ECHO | ICANON;
    t.c_lflag &= ~(tcflag_t)ECHONL;
    assert_int_equal(tcsetattr(*slave, TCSANOW, &t), 0);
}

/* Read from the master until text has appeared (10 s at most); returns
 * everything read, in a static buffer. */
static const char *
wait_for(int master, const char *text, char *seen, size_t cap)
{
    size_t n = strlen(seen);

    while (strstr(seen, text) == NULL) {
        struct pollfd p = {.fd = master, .events = POLLIN};
        ssize_t r;

        if (poll(&p, 1, 10000) != 1)
            fail_msg("no \"%s\" on the terminal; it showed \"%s\"", text,
                     seen);
        r = read(master, seen + n, cap - 1 - n);
        if (r <= 0)
            fail_msg("terminal closed before \"%s\": \"%s\"", text, seen);
        n += (size_t)r;
        seen[n] = '\0';
    }
    return seen;
}

/* The child: prompt on the slave, report "rc:line" on the pipe. */
static void
child_prompt(int slave, int report)
{
    struct pst_buf b;
    char out[128];
    int rc, n;

    pst_buf_init(&b, 64, 1);
    rc = prompt_password(slave, slave, "Password: ", &b);
    n = snprintf(out, sizeof(out), "%d:%.*s", rc, (int)b.len,
                 b.data != NULL ? (const char *)b.data : "");
    _exit(write(report, out, (size_t)n) == n ? 0 : 1);
}

static void
test_prompt_on_terminal(void **state)
{
    char seen[512] = "", got[128];
    struct termios t;
    int master, slave, fds[2], status;
    ssize_t n;
    pid_t pid;

    (void)state;
    open_pty(&master, &slave);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_prompt(slave, fds[1]);
    }
    close(fds[1]);
    wait_for(master, "Password: ", seen, sizeof(seen));
    /* Echo is off once the prompt shows. */
    assert_int_equal(tcgetattr(slave, &t), 0);
    assert_int_equal(t.c_lflag & ECHO, 0);
    assert_int_equal(write(master, "s3cret-pw\n", 10), 10);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    n = read(fds[0], got, sizeof(got) - 1);
    assert_true(n > 0);
    got[n] = '\0';
    assert_string_equal(got, "0:s3cret-pw");
    /* The terminal showed the prompt and the line end, not the password
     * (ECHONL echoes the newline as "\r\n"). */
    wait_for(master, "\n", seen, sizeof(seen));
    assert_null(strstr(seen, "s3cret"));
    assert_string_equal(seen, "Password: \r\n");
    /* And has its echo back. */
    assert_int_equal(tcgetattr(slave, &t), 0);
    assert_int_equal(t.c_lflag & (ECHO | ECHONL), ECHO);
    close(fds[0]);
    close(slave);
    close(master);
}

/* SIGTERM (or ^C) at the prompt: the process dies of it, and the
 * terminal has its echo back. */
static void
test_prompt_signal_restores(void **state)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
    char seen[512];
    struct termios t;
    int master, slave, fds[2], status;
    pid_t pid;

    (void)state;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        seen[0] = '\0';
        open_pty(&master, &slave);
        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_prompt(slave, fds[1]);
        }
        close(fds[1]);
        wait_for(master, "Password: ", seen, sizeof(seen));
        assert_int_equal(tcgetattr(slave, &t), 0);
        assert_int_equal(t.c_lflag & ECHO, 0);
        assert_int_equal(kill(pid, sigs[i]), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != sigs[i])
            fail_msg("signal %d: the child did not die of it (status %#x)",
                     sigs[i], status);
        assert_int_equal(tcgetattr(slave, &t), 0);
        if ((t.c_lflag & ECHO) == 0)
            fail_msg("signal %d: echo still off", sigs[i]);
        close(fds[0]);
        close(slave);
        close(master);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_line),
        cmocka_unit_test(test_read_line_limit),
        cmocka_unit_test(test_prompt_not_a_tty),
        cmocka_unit_test(test_prompt_on_terminal),
        cmocka_unit_test(test_prompt_signal_restores),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
