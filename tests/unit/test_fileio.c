/*
 * src/common/fileio.c: fileio_read_full() reads until the end of the
 * file or a full buffer, across short reads (a pipe fed in pieces), and
 * says how much it read when a read fails.
 */
#include "testutil.h"

#include <errno.h>
#include <unistd.h>

#include "fileio.h"

/* A pipe holding the given bytes, written in two pieces; the write end
 * closed when close_w. */
static int
pipe_with(const char *a, const char *b, int close_w, int *w)
{
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], a, strlen(a)), (ssize_t)strlen(a));
    assert_int_equal(write(fds[1], b, strlen(b)), (ssize_t)strlen(b));
    if (close_w) {
        close(fds[1]);
        *w = -1;
    } else {
        *w = fds[1];
    }
    return fds[0];
}

static void
test_until_end_of_file(void **state)
{
    char buf[64];
    size_t got = 99;
    int w, r = pipe_with("secret-", "line\n", 1, &w);

    (void)state;
    assert_int_equal(fileio_read_full(r, buf, sizeof(buf), &got), 0);
    assert_int_equal(got, 12);
    assert_memory_equal(buf, "secret-line\n", 12);
    close(r);
}

static void
test_until_full(void **state)
{
    char buf[5];
    size_t got = 0;
    int w, r = pipe_with("abc", "defgh", 0, &w);

    (void)state;
    /* The write end stays open: only a full buffer can end the read. */
    assert_int_equal(fileio_read_full(r, buf, sizeof(buf), &got), 0);
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "abcde", 5);
    close(r);
    close(w);
}

static void
test_read_error(void **state)
{
    char buf[8];
    size_t got = 99;
    int w, r = pipe_with("x", "", 1, &w);

    (void)state;
    close(r);
    /* A closed descriptor: EBADF, nothing read. */
    assert_int_equal(fileio_read_full(r, buf, sizeof(buf), &got), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(got, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_until_end_of_file),
        cmocka_unit_test(test_until_full),
        cmocka_unit_test(test_read_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
