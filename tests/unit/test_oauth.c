/*
 * OAuth helpers that need no network (src/common/oauth.c): the PKCE
 * vector of RFC 7636 Appendix B, the authorization URL, and the token
 * file (what is kept, its mode, atomic replacement, the lock, the
 * errors).  The token requests themselves are tested end to end against
 * the test token server (tests/e2e).
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "oauth.h"

static void
test_pkce_vector(void **state)
{
    char challenge[64];

    (void)state;
    /* RFC 7636 Appendix B. */
    assert_int_equal(oauth_pkce_challenge(
                         "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                         challenge), 0);
    assert_string_equal(challenge,
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

static void
test_pkce_random(void **state)
{
    char v1[64], c1[64], v2[64], c2[64], check[64];

    (void)state;
    assert_int_equal(oauth_pkce(v1, c1), 0);
    assert_int_equal(oauth_pkce(v2, c2), 0);
    assert_int_equal(strlen(v1), 43);
    assert_string_not_equal(v1, v2);
    assert_int_equal(strspn(v1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
                                "rstuvwxyz0123456789-_"), 43);
    assert_int_equal(oauth_pkce_challenge(v1, check), 0);
    assert_string_equal(check, c1);
}

static void
test_authorize_url(void **state)
{
    struct oauth_client c = {
        .auth_url = "https://accounts.example/o/oauth2/v2/auth",
        .client_id = "id 1",
        .scope = "https://mail.google.com/",
    };
    char *u;

    (void)state;
    u = oauth_authorize_url(&c, "http://127.0.0.1:5000/", "st&x", "CH");
    assert_non_null(u);
    assert_string_equal(u,
        "https://accounts.example/o/oauth2/v2/auth?response_type=code"
        "&client_id=id%201&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2F"
        "&scope=https%3A%2F%2Fmail.google.com%2F&state=st%26x"
        "&code_challenge=CH&code_challenge_method=S256&access_type=offline"
        "&prompt=consent");
    free(u);
}

static char dir[64], path[128];

static int
dir_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_oauth.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/m365.token", dir);
    return 0;
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
write_text(const char *p, const char *text)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static char *
read_text(const char *p)
{
    static char buf[8192];
    int fd = open(p, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    close(fd);
    return buf;
}

static void
test_token_file_seeded(void **state)
{
    struct oauth_token t, fresh = {0};
    struct oauth_error e = {.http = 400, .error = "invalid_grant",
                            .aadsts = "AADSTS70000"};
    struct stat st;
    char err[256];
    int exists;
    char *text;

    (void)state;
    /* Seeded by hand, with a key of the administrator's own. */
    write_text(path, "{\"refresh_token\": \"R1\", \"note\": \"box 3\"}");
    assert_int_equal(oauth_token_load(path, &t, &exists, err, sizeof(err)),
                     0);
    assert_int_equal(exists, 1);
    assert_string_equal(t.refresh_token, "R1");
    assert_null(t.access_token);
    assert_int_equal(t.expires_at, 0);

    /* A refresh brings an access token and a rotated refresh token. */
    fresh.access_token = strdup("A1");
    fresh.refresh_token = strdup("R2");
    fresh.scope = strdup("https://outlook.office.com/SMTP.Send");
    fresh.expires_at = 2000;
    fresh.refreshed_at = 1000;
    oauth_token_update(&t, &fresh);
    assert_null(fresh.access_token);
    assert_string_equal(t.refresh_token, "R2");
    assert_int_equal(oauth_token_save(path, &t, err, sizeof(err)), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    text = read_text(path);
    assert_non_null(strstr(text, "\"note\": \"box 3\""));
    assert_non_null(strstr(text, "\"refresh_token\": \"R2\""));
    assert_non_null(strstr(text, "\"access_token\": \"A1\""));
    assert_non_null(strstr(text, "\"expires_at\": 2000"));
    assert_null(strstr(text, "R1"));
    assert_null(strstr(text, "last_error"));
    oauth_token_clear(&t);

    /* A refresh without a refresh token keeps the old one; a failure is
     * recorded, and cleared by the next success. */
    assert_int_equal(oauth_token_load(path, &t, &exists, err, sizeof(err)),
                     0);
    oauth_token_set_error(&t, &e, 3000);
    assert_int_equal(oauth_token_save(path, &t, err, sizeof(err)), 0);
    oauth_token_clear(&t);
    assert_int_equal(oauth_token_load(path, &t, &exists, err, sizeof(err)),
                     0);
    assert_string_equal(t.last_error, "invalid_grant");
    assert_string_equal(t.last_aadsts, "AADSTS70000");
    assert_int_equal(t.last_http, 400);
    assert_int_equal(t.last_error_at, 3000);
    fresh = (struct oauth_token){.access_token = strdup("A2"),
                                 .expires_at = 5000};
    oauth_token_update(&t, &fresh);
    assert_string_equal(t.refresh_token, "R2");
    assert_string_equal(t.last_error, "");
    assert_int_equal(oauth_token_save(path, &t, err, sizeof(err)), 0);
    oauth_token_clear(&t);
    text = read_text(path);
    assert_null(strstr(text, "last_error"));
    assert_non_null(strstr(text, "\"note\": \"box 3\""));
    /* No temporary file left. */
    snprintf(err, sizeof(err), "%s.tmp", path);
    assert_int_equal(access(err, F_OK), -1);
}

static void
test_token_file_missing_and_bad(void **state)
{
    static const char *const bad[] = {
        "[1, 2]", "{\"refresh_token\": 5}", "not json", "{\"a\": 1} x",
    };
    struct oauth_token t;
    char err[256];
    int exists = 1;

    (void)state;
    assert_int_equal(oauth_token_load(path, &t, &exists, err, sizeof(err)),
                     0);
    assert_int_equal(exists, 0);
    assert_null(t.refresh_token);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_text(path, bad[i]);
        if (oauth_token_load(path, &t, &exists, err, sizeof(err)) != -1)
            fail_msg("row %zu (%s) was accepted", i, bad[i]);
        assert_non_null(strstr(err, path));
    }
    /* Not through a symbolic link. */
    unlink(path);
    assert_int_equal(symlink("/etc/hostname", path), 0);
    assert_int_equal(oauth_token_load(path, &t, &exists, err, sizeof(err)),
                     -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkce_vector),
        cmocka_unit_test(test_pkce_random),
        cmocka_unit_test(test_authorize_url),
        cmocka_unit_test_setup_teardown(test_token_file_seeded, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_token_file_missing_and_bad,
                                        dir_setup, dir_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
