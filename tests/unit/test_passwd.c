/*
 * The user file: parsing (Dovecot's passwd-file format), lookups, error
 * reporting with line numbers, and posternd's loader (userdb_file.c):
 * file:line messages and a broken reload keeping the previous version.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <postern/passwd.h>

#include "testutil.h"
#include "userdb_file.h"

#define SCRAM256                                                             \
    "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"                          \
    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"                          \
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define CRAM                                                                 \
    "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"

static struct pst_passwd *
parse_ok(const char *text)
{
    struct pst_passwd_error err;
    struct pst_passwd *p = NULL;
    int rc = pst_passwd_parse((const uint8_t *)text, strlen(text), &p, &err);

    if (rc != 0)
        fprintf(stderr, "line %u: %s\n", err.line, err.message);
    assert_rc(rc, 0);
    assert_non_null(p);
    return p;
}

static const struct pst_passwd_entry *
lookup(const struct pst_passwd *p, const char *name)
{
    return pst_passwd_lookup(p, name, strlen(name));
}

static void
test_parse_basic(void **state)
{
    static const char text[] =
        "# postern users\n"                                    /* 1 */
        "\n"                                                   /* 2 */
        "tim:" CRAM "\n"                                       /* 3 */
        "user:" SCRAM256 " {PLAIN}pencil\r\n"                  /* 4 */
        "   \n"                                                /* 5 */
        ":ignored:as Dovecot does\n"                           /* 6 */
        "full:{PLAIN}x:1000:100:Full Name:/home/full:/bin/sh:" /* 7 */
        "allow_from=::1,10.0.0.0/8 userdb_quota=1G nodelay\n"
        "noextra:{PLAIN}y:::::\n"                              /* 8 */
        "nopass:\n"                                            /* 9 */
        "last:$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0";             /* 10 */
    static const struct {
        const char *name;
        unsigned line;
        const char *pass;
        const char *extra;
    } want[] = {
        {"tim", 3, CRAM, ""},
        {"user", 4, SCRAM256 " {PLAIN}pencil", ""},
        {"full", 7, "{PLAIN}x",
         "allow_from=::1,10.0.0.0/8 userdb_quota=1G nodelay"},
        {"noextra", 8, "{PLAIN}y", ""},
        {"nopass", 9, "", ""},
        {"last", 10, "$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0", ""},
    };
    struct pst_passwd *p;
    const char *v;
    size_t vlen;

    (void)state;
    p = parse_ok(text);
    assert_int_equal(pst_passwd_count(p), 6);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct pst_passwd_entry *e = pst_passwd_entry_at(p, i);

        assert_non_null(e);
        assert_ptr_equal(lookup(p, want[i].name), e);
        assert_string_equal(e->name, want[i].name);
        assert_int_equal(e->name_len, strlen(want[i].name));
        assert_int_equal(e->line, want[i].line);
        assert_bytes_equal(text + e->pass_off, e->pass_len, want[i].pass,
                           strlen(want[i].pass));
        assert_string_equal(e->extra, want[i].extra);
        assert_int_equal(e->extra_len, strlen(want[i].extra));
        /* The line span starts with the name and ends after "\n". */
        assert_memory_equal(text + e->line_off, want[i].name,
                            strlen(want[i].name));
        if (i + 1 < sizeof(want) / sizeof(want[0]))
            assert_int_equal(text[e->line_off + e->line_len - 1], '\n');
        else
            assert_int_equal(e->line_off + e->line_len, strlen(text));
    }
    assert_null(pst_passwd_entry_at(p, 6));
    /* Credentials work. */
    assert_rc(pst_cred_verify(lookup(p, "user")->cred, "user",
                              (const uint8_t *)"pencil", 6),
              0);
    assert_true(pst_cred_has(lookup(p, "user")->cred, PST_SCHEME_PLAIN));
    assert_true(pst_cred_has(lookup(p, "tim")->cred, PST_SCHEME_CRAM_MD5));
    assert_null(lookup(p, "nopass")->cred);
    /* Extra fields. */
    assert_int_equal(pst_passwd_extra(lookup(p, "full"), "allow_from", &v,
                                      &vlen),
                     1);
    assert_bytes_equal(v, vlen, "::1,10.0.0.0/8", 14);
    assert_int_equal(pst_passwd_extra(lookup(p, "full"), "userdb_quota", &v,
                                      &vlen),
                     1);
    assert_bytes_equal(v, vlen, "1G", 2);
    assert_int_equal(pst_passwd_extra(lookup(p, "full"), "nodelay", &v,
                                      &vlen),
                     1);
    assert_int_equal(vlen, 0);
    assert_int_equal(pst_passwd_extra(lookup(p, "full"), "allow", &v, &vlen),
                     0);
    assert_int_equal(pst_passwd_extra(lookup(p, "full"), "userdb", &v, &vlen),
                     0);
    assert_int_equal(pst_passwd_extra(lookup(p, "tim"), "allow_from", &v,
                                      &vlen),
                     0);
    pst_passwd_free(p);
}

/* Names are compared byte for byte: no case folding, no trimming. */
static void
test_lookup_exact(void **state)
{
    struct pst_passwd *p;

    (void)state;
    p = parse_ok("bob:{PLAIN}a\nBob:{PLAIN}b\nb\xc3\xa9:{PLAIN}c\n"
                 "bob@example.test:{PLAIN}d\n");
    assert_int_equal(pst_passwd_count(p), 4);
    assert_int_equal(lookup(p, "bob")->line, 1);
    assert_int_equal(lookup(p, "Bob")->line, 2);
    assert_int_equal(lookup(p, "b\xc3\xa9")->line, 3);
    assert_int_equal(lookup(p, "bob@example.test")->line, 4);
    assert_null(lookup(p, "BOB"));
    assert_null(lookup(p, "bo"));
    assert_null(lookup(p, "bob "));
    assert_null(lookup(p, "bob@example.tes"));
    assert_null(lookup(p, "be\xcc\x81")); /* not normalised */
    assert_null(lookup(p, ""));
    assert_null(pst_passwd_lookup(p, "bob\0x", 5));
    pst_passwd_free(p);

    /* An empty file, or only comments: no users, lookups fail. */
    p = parse_ok("");
    assert_int_equal(pst_passwd_count(p), 0);
    assert_null(lookup(p, "bob"));
    pst_passwd_free(p);
    p = parse_ok("# nobody\n\n");
    assert_int_equal(pst_passwd_count(p), 0);
    pst_passwd_free(p);
}

/* Each malformed file: the code, the line, and a message fragment.  The
 * message never shows a password field. */
static void
test_errors(void **state)
{
    static const struct {
        const char *text;
        int rc;
        unsigned line, first_line;
        const char *msg;
    } v[] = {
        {"bob\n", PST_ESYNTAX, 1, 0, "no ':' after the user name"},
        {"a:{PLAIN}x\n\n# c\nb:{NOPE}secretpw\n", PST_ESYNTAX, 4, 0,
         "user 'b': bad password field: unknown password scheme"},
        {"a:{PLAIN}x\n#c\nb:{PLAIN}y\na:{PLAIN}z\n", PST_EEXIST, 4, 1,
         "duplicate user 'a' (first on line 1)"},
        {"a:{PLAIN}x\r\nb:{PLAIN}y\r\nb:{PLAIN}y\r\n", PST_EEXIST, 3, 2,
         "duplicate user 'b' (first on line 2)"},
        {"a:{PLAIN}x:allow_from=10.0.0.1\n", PST_ESYNTAX, 1, 0,
         "field 3 (uid) is not a number"},
        {"a:{PLAIN}x:1:g\n", PST_ESYNTAX, 1, 0, "field 4 (gid)"},
        {"a b:{PLAIN}x\n", PST_ESYNTAX, 1, 0, "space in a user name"},
        {"  a:{PLAIN}x\n", PST_ESYNTAX, 1, 0, "space in a user name"},
        {"a\tb:{PLAIN}x\n", PST_ESYNTAX, 1, 0, "control character in a user"},
        {"\xff:{PLAIN}x\n", PST_ESYNTAX, 1, 0, "not valid UTF-8: '\\xff'"},
        {"a:{PLAIN}x:::::: =v\n", PST_ESYNTAX, 1, 0,
         "extra field without a key"},
        {"a:{PLAIN}x\nb:{PLAIN}y\x01\n", PST_ESYNTAX, 2, 0,
         "control character 0x01 at column 11"},
        {"a:{PLAIN}x\n\nc:{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
         "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=\n",
         PST_ESYNTAX, 3, 0, "user 'c': bad password field: {SCRAM-SHA-x}"},
        {"c:{CRAM-MD5}d06d4e1b\n", PST_ESYNTAX, 1, 0, "{CRAM-MD5}"},
        {"c:$6$abc$def\n", PST_ESYNTAX, 1, 0, "crypt(3)"},
        {"c:{PLAIN}secretpw {NOPE}x\n", PST_ESYNTAX, 1, 0,
         "unknown password scheme"},
        {"c:{PLAIN}secretpw {CRAM-MD5}ab cd\n", PST_ESYNTAX, 1, 0,
         "a space inside a verifier"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct pst_passwd_error err;
        struct pst_passwd *p = (struct pst_passwd *)1;
        int rc = pst_passwd_parse((const uint8_t *)v[i].text,
                                  strlen(v[i].text), &p, &err);

        if (rc != v[i].rc || err.line != v[i].line ||
            err.first_line != v[i].first_line ||
            strstr(err.message, v[i].msg) == NULL)
            fail_msg("case %zu: got %s line %u first %u \"%s\", want %s "
                     "line %u first %u \"...%s...\"", i, pst_errname(rc),
                     err.line, err.first_line, err.message,
                     pst_errname(v[i].rc), v[i].line, v[i].first_line,
                     v[i].msg);
        assert_null(p);
        assert_null(strstr(err.message, "secretpw"));
        /* err may be NULL. */
        assert_rc(pst_passwd_parse((const uint8_t *)v[i].text,
                                   strlen(v[i].text), &p, NULL),
                  v[i].rc);
    }
    /* A NUL byte. */
    {
        struct pst_passwd_error err;
        struct pst_passwd *p;

        assert_rc(pst_passwd_parse((const uint8_t *)"a:{PLAIN}x\nb\0:x\n", 16,
                                   &p, &err),
                  PST_ESYNTAX);
        assert_int_equal(err.line, 2);
        assert_string_equal(err.message, "NUL byte in the line");
    }
}

/* Every prefix of a file, in an allocation of exactly its size (ASan sees
 * any read past the end), parses or fails cleanly; a million blank lines
 * cost no table of a million slots. */
static void
test_prefixes_and_blank_lines(void **state)
{
    static const char text[] =
        "# c\n\ntim:" CRAM "\nuser:" SCRAM256 " {PLAIN}pencil\r\n"
        "full:{PLAIN}x:1000:100:Full Name:/home/full:/bin/sh:"
        "allow_from=::1 nodelay\nlast:$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0\n";
    size_t n = strlen(text), blank = 1000000;
    struct pst_passwd *p;
    char *big;

    (void)state;
    for (size_t i = 0; i <= n; i++) {
        uint8_t *t = malloc(i + 1);
        int rc;

        assert_non_null(t);
        memcpy(t, text, i);
        rc = pst_passwd_parse(t, i, &p, NULL);
        if (rc != 0 && rc != PST_ESYNTAX)
            fail_msg("prefix %zu: got %s", i, pst_errname(rc));
        pst_passwd_free(p);
        free(t);
    }
    big = malloc(blank + 20);
    assert_non_null(big);
    memset(big, '\n', blank);
    memcpy(big + blank, "z:{PLAIN}x\n", 11);
    assert_rc(pst_passwd_parse((const uint8_t *)big, blank + 11, &p, NULL),
              0);
    assert_int_equal(pst_passwd_count(p), 1);
    assert_int_equal(lookup(p, "z")->line, blank + 1);
    pst_passwd_free(p);
    free(big);
}

static void
test_check_name(void **state)
{
    static const struct {
        const char *name;
        int rc;
    } v[] = {
        {"bob", 0},
        {"bob@example.test", 0},
        {"b\xc3\xa9", 0},
        {"a#b", 0},
        {"", PST_ESYNTAX},
        {"#bob", PST_ESYNTAX},
        {"b:ob", PST_ESYNTAX},
        {"b ob", PST_ESYNTAX},
        {"b\nob", PST_ESYNTAX},
        {"b\x7f", PST_ESYNTAX},
        {"b\xc3", PST_ESYNTAX},
    };
    char longname[PST_PASSWD_NAME_MAX + 2];
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_rc(pst_passwd_check_name(v[i].name, strlen(v[i].name), &why),
                  v[i].rc);
        if (v[i].rc != 0)
            assert_non_null(why);
    }
    memset(longname, 'a', sizeof(longname));
    assert_rc(pst_passwd_check_name(longname, PST_PASSWD_NAME_MAX, &why), 0);
    assert_rc(pst_passwd_check_name(longname, PST_PASSWD_NAME_MAX + 1, &why),
              PST_ESYNTAX);
}

/* 100,000 users with SCRAM-SHA-256 verifiers: all found, on their line. */
#define MANY 100000

static char *
many_users(size_t n, size_t *len)
{
    struct pst_buf b;

    pst_buf_init(&b, (size_t)1 << 30, 0);
    assert_int_equal(pst_buf_append_str(&b, "# generated\n"), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pst_buf_printf(&b, "user%zu@example.test:%s\n", i,
                                        SCRAM256),
                         0);
    *len = b.len;
    return (char *)b.data;
}

static void
test_many_users(void **state)
{
    struct pst_passwd *p;
    struct timespec t0, t1;
    char name[64];
    size_t len;
    char *text = many_users(MANY, &len);

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_rc(pst_passwd_parse((const uint8_t *)text, len, &p, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "# parsed %d users in %.1f ms\n", MANY,
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_int_equal(pst_passwd_count(p), MANY);
    for (size_t i = 0; i < MANY; i++) {
        const struct pst_passwd_entry *e;
        int n = snprintf(name, sizeof(name), "user%zu@example.test", i);

        e = pst_passwd_lookup(p, name, (size_t)n);
        if (e == NULL || e->line != i + 2)
            fail_msg("%s: got line %u, want %zu", name, e ? e->line : 0,
                     i + 2);
        name[n - 1] = 'x';
        assert_null(pst_passwd_lookup(p, name, (size_t)n));
    }
    pst_passwd_free(p);
    free(text);
}

/* --- posternd's loader --- */

struct tmpdir {
    char dir[64];
    char path[128];
};

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static int
setup_tmp(void **state)
{
    struct tmpdir *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_passwd.XXXXXX");
    if (mkdtemp(t->dir) == NULL)
        return -1;
    snprintf(t->path, sizeof(t->path), "%s/users", t->dir);
    *state = t;
    return 0;
}

static int
teardown_tmp(void **state)
{
    struct tmpdir *t = *state;

    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

static void
test_loader(void **state)
{
    struct tmpdir *t = *state;
    struct userdb_file_table *old, *cur;
    struct userdb_file *u;
    char err[512], want[512];

    write_file(t->path, "# v1\nbob:{PLAIN}one\n");
    err[0] = '\0';
    assert_rc(userdb_file_open(t->path, &u, err, sizeof(err)), 0);
    assert_string_equal(userdb_file_path(u), t->path);
    old = userdb_file_acquire(u);
    assert_non_null(userdb_file_lookup(old, "bob", 3));
    assert_int_equal(pst_passwd_count(userdb_file_passwd(old)), 1);

    /* A broken file: the reload fails naming file:line, and the previous
     * version goes on serving. */
    write_file(t->path, "# v2\nbob:{PLAIN}two\nann:{PLAIN}x\nbob:{PLAIN}3\n");
    assert_rc(userdb_file_reload(u, err, sizeof(err)), PST_EEXIST);
    snprintf(want, sizeof(want), "%s:4: duplicate user 'bob' (first on line "
             "2); still serving the previous version", t->path);
    assert_string_equal(err, want);
    cur = userdb_file_acquire(u);
    assert_ptr_equal(cur, old);
    assert_null(userdb_file_lookup(cur, "ann", 3));
    assert_rc(pst_cred_verify(userdb_file_lookup(cur, "bob", 3)->cred, "bob",
                              (const uint8_t *)"one", 3),
              0);
    userdb_file_release(cur);

    write_file(t->path, "bob:{PLAIN}two\nann:{CRAM-MD5}zz\n");
    assert_rc(userdb_file_reload(u, err, sizeof(err)), PST_ESYNTAX);
    snprintf(want, sizeof(want), "%s:2: user 'ann': bad password field: "
             "{CRAM-MD5}: the value is not valid hex; still serving the "
             "previous version", t->path);
    assert_string_equal(err, want);

    /* The file goes away: the previous version still serves. */
    unlink(t->path);
    assert_rc(userdb_file_reload(u, err, sizeof(err)), PST_EIO);
    snprintf(want, sizeof(want), "%s: cannot open: %s; still serving the "
             "previous version", t->path, strerror(ENOENT));
    assert_string_equal(err, want);
    cur = userdb_file_acquire(u);
    assert_ptr_equal(cur, old);
    userdb_file_release(cur);

    /* A good file: the new version serves; a session holding the old one
     * keeps it valid until it lets go (run under ASan). */
    write_file(t->path, "bob:{PLAIN}two\nann:{PLAIN}x\n");
    assert_rc(userdb_file_reload(u, err, sizeof(err)), 0);
    cur = userdb_file_acquire(u);
    assert_ptr_not_equal(cur, old);
    assert_non_null(userdb_file_lookup(cur, "ann", 3));
    assert_rc(pst_cred_verify(userdb_file_lookup(cur, "bob", 3)->cred, "bob",
                              (const uint8_t *)"two", 3),
              0);
    assert_rc(pst_cred_verify(userdb_file_lookup(old, "bob", 3)->cred, "bob",
                              (const uint8_t *)"one", 3),
              0);
    userdb_file_release(old);
    userdb_file_free(u);
    /* cur outlives the store. */
    assert_non_null(userdb_file_lookup(cur, "bob", 3));
    userdb_file_release(cur);
    userdb_file_release(NULL);
    userdb_file_free(NULL);
}

static void
test_loader_open_errors(void **state)
{
    struct tmpdir *t = *state;
    struct userdb_file *u = (struct userdb_file *)1;
    char err[512], want[512];

    snprintf(want, sizeof(want), "%s: cannot open: %s", t->path,
             strerror(ENOENT));
    assert_rc(userdb_file_open(t->path, &u, err, sizeof(err)), PST_EIO);
    assert_string_equal(err, want);
    assert_null(u);

    snprintf(want, sizeof(want), "%s: not a regular file", t->dir);
    assert_rc(userdb_file_open(t->dir, &u, err, sizeof(err)), PST_EIO);
    assert_string_equal(err, want);

    write_file(t->path, "a:{PLAIN}x\nb:{PLAIN}x:::::: =\n");
    snprintf(want, sizeof(want), "%s:2: user 'b': extra field without a key "
             "(want key=value)", t->path);
    assert_rc(userdb_file_open(t->path, &u, err, sizeof(err)), PST_ESYNTAX);
    assert_string_equal(err, want);

    /* A short error buffer truncates, never overflows. */
    assert_rc(userdb_file_open(t->path, &u, err, 8), PST_ESYNTAX);
    assert_int_equal(strlen(err), 7);
    assert_rc(userdb_file_open(t->path, &u, NULL, 0), PST_ESYNTAX);

    /* An empty file is a valid store with no users. */
    write_file(t->path, "");
    assert_rc(userdb_file_open(t->path, &u, err, sizeof(err)), 0);
    {
        struct userdb_file_table *tb = userdb_file_acquire(u);

        assert_null(userdb_file_lookup(tb, "a", 1));
        userdb_file_release(tb);
    }
    userdb_file_free(u);
}

/* The loader reads a file larger than its first read and 100,000 users. */
static void
test_loader_many(void **state)
{
    struct tmpdir *t = *state;
    struct userdb_file_table *tb;
    struct userdb_file *u;
    char err[512];
    size_t len;
    char *text = many_users(MANY, &len);

    write_file(t->path, text);
    free(text);
    assert_rc(userdb_file_open(t->path, &u, err, sizeof(err)), 0);
    tb = userdb_file_acquire(u);
    assert_int_equal(pst_passwd_count(userdb_file_passwd(tb)), MANY);
    assert_non_null(userdb_file_lookup(tb, "user99999@example.test", 22));
    userdb_file_release(tb);
    userdb_file_free(u);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_basic),
        cmocka_unit_test(test_lookup_exact),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_prefixes_and_blank_lines),
        cmocka_unit_test(test_check_name),
        cmocka_unit_test(test_many_users),
        cmocka_unit_test_setup_teardown(test_loader, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_loader_open_errors, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(test_loader_many, setup_tmp,
                                        teardown_tmp),
    };
    return cmocka_run_group_tests_name("passwd", tests, NULL, NULL);
}
