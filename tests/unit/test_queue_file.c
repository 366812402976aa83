/*
 * The relay queue's files (src/common/queue_file.c): the envelope format
 * byte for byte, records applied in order, a record cut short by a crash
 * ignored, malformed files refused with the line, xtext of awkward
 * addresses, and the file operations (write, append, load, list, remove,
 * orphans).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "queue_file.h"

static struct queue_rcpt rcpts[] = {
    {.addr = "bob@example.org"},
    {.addr = "\"john doe\"@example.org"},
    {.addr = "a+b=c@example.org"},
};

static struct queue_env env = {
    .id = "0123456789ABCDEF0123",
    .arrival = 1733550000,
    .sender = "alice@example.test",
    .relay = "m365",
    .user = "alice@example.test",
    .offset = 48,
    .rcpt = rcpts,
    .nrcpt = 3,
};

static const char env_text[] =
    "postern-queue 1\n"
    "arrival 1733550000\n"
    "sender alice@example.test\n"
    "relay m365\n"
    "user alice@example.test\n"
    "offset 48\n"
    "rcpt bob@example.org\n"
    "rcpt \"john+20doe\"@example.org\n"
    "rcpt a+2Bb+3Dc@example.org\n"
    "end\n";

static void
test_format(void **state)
{
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 4096, 0);
    assert_rc(queue_env_format(&env, &b), 0);
    assert_buf_str(&b, env_text);
    pst_buf_clear(&b);
}

static void
test_format_refused(void **state)
{
    struct pst_buf b;
    struct queue_env e = env;

    (void)state;
    pst_buf_init(&b, 4096, 0);
    e.relay = "two words";
    assert_rc(queue_env_format(&e, &b), PST_EINVAL);
    e = env;
    e.nrcpt = 0;
    assert_rc(queue_env_format(&e, &b), PST_EINVAL);
    e = env;
    snprintf(e.id, sizeof(e.id), "../x");
    assert_rc(queue_env_format(&e, &b), PST_EINVAL);
    assert_int_equal(b.len, 0);
    pst_buf_clear(&b);
}

static void
test_records(void **state)
{
    struct { enum queue_record rec; size_t idx; int64_t next; unsigned code;
             const char *text; const char *want; } rows[] = {
        {QUEUE_REC_SENT, 0, 0, 250, "2.0.0 OK queued as 1234",
         "sent 0 1733550002 250 2.0.0 OK queued as 1234\n"},
        {QUEUE_REC_FAILED, 2, 0, 550, "5.1.1 no such\r\nuser\r\n",
         "failed 2 1733550002 550 5.1.1 no such / user\n"},
        {QUEUE_REC_DEFERRED, 0, 1733550302, 451, "4.3.0 \x01later\xff",
         "deferred 1733550002 1733550302 451 4.3.0 ?later?\n"},
        {QUEUE_REC_BOUNCED, 0, 0, 0, NULL, "bounced 1733550002\n"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct pst_buf b;

        pst_buf_init(&b, 4096, 0);
        assert_rc(queue_env_format_record(rows[i].rec, rows[i].idx,
                                          1733550002, rows[i].next,
                                          rows[i].code, rows[i].text, &b),
                  0);
        assert_buf_str(&b, rows[i].want);
        pst_buf_clear(&b);
    }
}

static void
test_parse_roundtrip(void **state)
{
    struct pst_buf b;
    struct queue_env *e;
    char err[128];

    (void)state;
    pst_buf_init(&b, 8192, 0);
    assert_rc(pst_buf_append_str(&b, env_text), 0);
    assert_rc(pst_buf_append_str(&b,
        "sent 0 1733550002 250 2.0.0 OK\n"
        "deferred 1733550002 1733550302 451 4.3.0 later\n"
        "failed 2 1733550003 550 5.1.1 no such user\n"
        "deferred 1733550303 1733550903 421 4.7.0 busy\n"
        "sent 1 1733550904 250 2.0.0 OK\n"
        "bounced 1733550905\n"
        /* A record a crash cut short: never acted on. */
        "sent 2 17335"), 0);
    assert_rc(queue_env_parse(env.id, b.data, b.len, &e, err, sizeof(err)),
              0);
    assert_string_equal(e->id, env.id);
    assert_int_equal(e->arrival, 1733550000);
    assert_string_equal(e->sender, "alice@example.test");
    assert_string_equal(e->relay, "m365");
    assert_string_equal(e->user, "alice@example.test");
    assert_int_equal(e->offset, 48);
    assert_int_equal(e->nrcpt, 3);
    assert_string_equal(e->rcpt[1].addr, "\"john doe\"@example.org");
    assert_string_equal(e->rcpt[2].addr, "a+b=c@example.org");
    assert_int_equal(e->rcpt[0].state, QUEUE_RCPT_SENT);
    assert_int_equal(e->rcpt[1].state, QUEUE_RCPT_SENT);
    assert_int_equal(e->rcpt[1].when, 1733550904);
    assert_int_equal(e->rcpt[2].state, QUEUE_RCPT_FAILED);
    assert_int_equal(e->rcpt[2].code, 550);
    assert_string_equal(e->rcpt[2].reply, "5.1.1 no such user");
    assert_int_equal(e->attempts, 2);
    assert_int_equal(e->last_attempt, 1733550303);
    assert_int_equal(e->next_attempt, 1733550903);
    assert_string_equal(e->last_reply, "4.7.0 busy");
    assert_int_equal(e->bounced, 1);
    assert_true(queue_env_finished(e));
    assert_int_equal(queue_env_count(e, QUEUE_RCPT_FAILED), 1);
    queue_env_free(e);
    pst_buf_clear(&b);
}

static void
test_parse_null_sender(void **state)
{
    static const char text[] =
        "postern-queue 1\narrival 1\nsender\nrelay r\nuser\noffset 0\n"
        "rcpt x@y\nend\n";
    struct queue_env *e;
    char err[128];

    (void)state;
    assert_rc(queue_env_parse("A1", (const uint8_t *)text, strlen(text), &e,
                              err, sizeof(err)), 0);
    assert_string_equal(e->sender, "");
    assert_string_equal(e->user, "");
    assert_false(queue_env_finished(e));
    queue_env_free(e);
}

static void
test_parse_refused(void **state)
{
    static const struct { const char *text; const char *err; } rows[] = {
        {"", "empty file"},
        {"postern-queue 2\n", "line 1: not a postern queue file"},
        {"postern-queue 1\narrival 1\nsender a\nrelay r\nuser\noffset 0\n"
         "end\n", "line 7: header incomplete"},
        {"postern-queue 1\narrival 1\nsender a\nrelay r\nuser\noffset 0\n"
         "rcpt b\n", "line 7: no end of the header"},
        {"postern-queue 1\narrival 1\nsender a\nrelay r\nuser\noffset 0\n"
         "rcpt b c\nend\n", "line 7: bad rcpt xtext"},
        {"postern-queue 1\narrival 1\nsender a+2\nrelay r\nuser\noffset 0\n"
         "rcpt b\nend\n", "line 3: bad xtext"},
        {"postern-queue 1\narrival 1\nsender a+00\nrelay r\nuser\n"
         "offset 0\nrcpt b\nend\n", "line 3: bad xtext"},
        {"postern-queue 1\narrival 1\narrival 2\n", "line 3: bad arrival"},
        {"postern-queue 1\narrival 1\nsender a\nrelay r\nuser\noffset 0\n"
         "rcpt b\nend\nsent 1 5 250 ok\n", "line 9: bad recipient record"},
        {"postern-queue 1\narrival 1\nsender a\nrelay r\nuser\noffset 0\n"
         "rcpt b\nend\nsent 0 5 2500 ok\n", "line 9: bad recipient record"},
        {"postern-queue 1\narrival 1\nsender a\nrelay r\nuser\noffset 0\n"
         "rcpt b\nend\nlost 0\n", "line 9: unknown record"},
        {"postern-queue 1\nfrom a\n", "line 2: unknown line in the header"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct queue_env *e = (void *)1;
        char err[128] = "";

        assert_rc(queue_env_parse("A1", (const uint8_t *)rows[i].text,
                                  strlen(rows[i].text), &e, err,
                                  sizeof(err)),
                  PST_ESYNTAX);
        assert_null(e);
        if (strncmp(err, rows[i].err, strlen(rows[i].err)) != 0)
            fail_msg("row %zu: got \"%s\", want \"%s\"", i, err,
                     rows[i].err);
    }
}

static void
test_ids(void **state)
{
    (void)state;
    assert_true(queue_id_valid("0123456789ABCDEF0123"));
    assert_true(queue_id_valid("a"));
    assert_false(queue_id_valid(""));
    assert_false(queue_id_valid("a.env"));
    assert_false(queue_id_valid("../x"));
    assert_false(queue_id_valid("01234567890123456789012345678901234567890"));
}

/* --- Files ----------------------------------------------------------- */

static char dir[64];

static int
dir_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_queue_file.XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
dir_teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
make_message(const char *id)
{
    char path[128];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, id);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "Subject: x\r\n\r\nbody\r\n", 20), 20);
    close(fd);
}

static void
test_files(void **state)
{
    struct queue_env *e;
    char err[128], path[128];
    char **ids;
    size_t n;
    struct stat st;
    int fd;

    (void)state;
    make_message(env.id);
    assert_rc(queue_file_write_env(dir, &env), 0);
    snprintf(path, sizeof(path), "%s/%s.env", dir, env.id);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* No temporary file is left behind. */
    snprintf(path, sizeof(path), "%s/.%s.env.tmp", dir, env.id);
    assert_int_equal(access(path, F_OK), -1);

    assert_rc(queue_file_append(dir, env.id, QUEUE_REC_SENT, 0, 10, 0, 250,
                                "2.0.0 OK"), 0);
    assert_rc(queue_file_append(dir, env.id, QUEUE_REC_DEFERRED, 0, 11, 71,
                                421, "busy"), 0);
    assert_rc(queue_file_load(dir, env.id, &e, err, sizeof(err)), 0);
    assert_int_equal(e->rcpt[0].state, QUEUE_RCPT_SENT);
    assert_int_equal(e->rcpt[1].state, QUEUE_RCPT_PENDING);
    assert_int_equal(e->attempts, 1);
    assert_int_equal(e->next_attempt, 71);
    queue_env_free(e);

    fd = queue_file_open_message(dir, env.id);
    assert_true(fd >= 0);
    close(fd);

    /* A second message, and an orphan that is too young to go. */
    {
        struct queue_env e2 = env;

        snprintf(e2.id, sizeof(e2.id), "AAAA");
        make_message("AAAA");
        assert_rc(queue_file_write_env(dir, &e2), 0);
    }
    make_message("ORPHAN");
    assert_rc(queue_file_list(dir, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "0123456789ABCDEF0123");
    assert_string_equal(ids[1], "AAAA");
    queue_file_ids_free(ids, n);
    assert_int_equal(queue_file_orphans(dir, 3600), 0);
    assert_int_equal(queue_file_orphans(dir, 0), 1);
    snprintf(path, sizeof(path), "%s/ORPHAN", dir);
    assert_int_equal(access(path, F_OK), -1);

    assert_rc(queue_file_remove(dir, "AAAA"), 0);
    assert_rc(queue_file_remove(dir, "AAAA"), PST_EIO);
    assert_int_equal(errno, ENOENT);
    snprintf(path, sizeof(path), "%s/AAAA", dir);
    assert_int_equal(access(path, F_OK), -1);
    /* No envelope of one line for a message that is gone. */
    assert_rc(queue_file_append(dir, "AAAA", QUEUE_REC_SENT, 0, 1, 0, 250,
                                "x"), PST_EIO);
    assert_int_equal(errno, ENOENT);
    snprintf(path, sizeof(path), "%s/AAAA.env", dir);
    assert_int_equal(access(path, F_OK), -1);
    assert_rc(queue_file_load(dir, "AAAA", &e, err, sizeof(err)), PST_EIO);
    assert_rc(queue_file_load(dir, "../etc", &e, err, sizeof(err)), PST_EIO);
}

static void
test_symlink_refused(void **state)
{
    char path[128];
    struct queue_env *e;
    char err[128];

    (void)state;
    snprintf(path, sizeof(path), "%s/LINK.env", dir);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_rc(queue_file_load(dir, "LINK", &e, err, sizeof(err)), PST_EIO);
    assert_int_equal(errno, ELOOP);
    assert_rc(queue_file_append(dir, "LINK", QUEUE_REC_SENT, 0, 1, 0, 250,
                                "x"), PST_EIO);
    assert_int_equal(errno, ELOOP);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_refused),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_parse_roundtrip),
        cmocka_unit_test(test_parse_null_sender),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_ids),
        cmocka_unit_test_setup_teardown(test_files, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_symlink_refused, dir_setup,
                                        dir_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
