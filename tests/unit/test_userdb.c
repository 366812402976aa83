/*
 * posternd's user store API (src/posternd/userdb.h): asynchronous lookups
 * over the passwd-file backend (answered on the next loop turn, never
 * inside userdb_lookup_start()), cancellation, the lifetime of what a
 * lookup lends, allow_from lists, and the pgsql backend where no server
 * is needed: a bad connection string, an unreachable database (PST_ETEMP,
 * then at once while it stays down), one loop per store, and closing it
 * with lookups cancelled.  The pgsql backend against a real PostgreSQL is
 * tested end to end (tests/e2e/test_posternd_pgsql.py).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "testutil.h"

#include "config.h"
#include "userdb.h"

#define FP_A_ "00112233445566778899aabbccddeeff" \
              "0123456789abcdef0123456789abcdef"

struct fixture {
    char dir[64];
    char path[128];
    uv_loop_t loop;
    struct config cfg;
};

/* What callbacks saw. */
struct seen {
    int calls;
    int rc;
    int verify_rc;                 /* pst_cred_verify(cred, user, pw) */
    char allow_from[128];
    int had_allow_from;
    const char *pw;                /* the password to try, or NULL */
    const char *user;
    struct userdb_req **free_me;   /* free the request in the callback */
    const char *fp;                /* on_lookup_cert(): the certificate */
    int cert_match;                /* userdb_cert_matches() */
};

static void
on_lookup(void *ctx, int rc, const struct userdb_user *u)
{
    struct seen *s = ctx;

    s->calls++;
    s->rc = rc;
    if (rc == 0) {
        assert_non_null(u);
        assert_non_null(u->cred);
        if (s->pw != NULL)
            s->verify_rc = pst_cred_verify(u->cred, s->user,
                                           (const uint8_t *)s->pw,
                                           strlen(s->pw));
        s->had_allow_from = u->allow_from.v != NULL;
        if (u->allow_from.v != NULL) {
            assert_true(u->allow_from.len < sizeof(s->allow_from));
            memcpy(s->allow_from, u->allow_from.v, u->allow_from.len);
            s->allow_from[u->allow_from.len] = '\0';
        }
    } else {
        assert_null(u);
    }
    if (s->free_me != NULL) {
        userdb_lookup_free(*s->free_me);
        *s->free_me = NULL;
    }
}

static void
on_lookup_cert(void *ctx, int rc, const struct userdb_user *u)
{
    struct seen *s = ctx;

    s->calls++;
    s->rc = rc;
    assert_int_equal(rc, 0);
    s->cert_match = userdb_cert_matches(&u->cert, s->fp != NULL ? s->fp
                                                                : FP_A_);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static const char USERS[] =
    "tim@example.test:{PLAIN}tanstaaf::::::"
    "allow_from=boss@example.test,@example.org\n"
    /* openssl passwd -6 -salt saltsalt secret */
    "bob@example.test:{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRs"
    "tiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n";

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_userdb.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
    write_file(f->path, USERS);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    f->cfg = (struct config){
        .file = "test.conf",
        .userdb = {.kind = CONFIG_USERDB_PASSWD_FILE, .arg = f->path},
        .userdb_timeout = 5,
    };
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    /* Every handle closes: the store and its requests free them.  A
     * test that failed half-way may leave a store open: give up after
     * 5 s rather than wait for ever. */
    for (int i = 0; i < 5000 && uv_run(&f->loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct userdb *
open_store(struct fixture *f)
{
    struct userdb *u = NULL;
    char err[CONFIG_ERR_MAX] = "";

    if (userdb_open(&f->cfg, &u, err, sizeof(err)) != 0)
        fail_msg("userdb_open: got error \"%s\", want success", err);
    return u;
}

/* --- passwd-file ----------------------------------------------------- */

static const struct {
    const char *name;
    const char *pw;
    int rc;
    int verify_rc;
    const char *allow_from;        /* NULL: none */
} file_cases[] = {
    {"tim@example.test", "tanstaaf", 0, 0,
     "boss@example.test,@example.org"},
    {"tim@example.test", "wrong", 0, PST_EAUTH,
     "boss@example.test,@example.org"},
    {"bob@example.test", "secret", 0, 0, NULL},
    {"nobody@example.test", "x", PST_ENOENT, 0, NULL},
    {"TIM@example.test", "tanstaaf", PST_ENOENT, 0, NULL}, /* exact */
    {"", "x", PST_ENOENT, 0, NULL},
};

static void
test_file_lookups(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    size_t n;

    for (size_t i = 0; i < sizeof(file_cases) / sizeof(file_cases[0]);
         i++) {
        struct seen s = {
            .pw = file_cases[i].pw, .user = file_cases[i].name,
        };
        struct userdb_req *req = NULL;

        assert_rc(userdb_lookup_start(u, &f->loop, file_cases[i].name,
                                      on_lookup, &s, &req),
                  0);
        assert_non_null(req);
        /* Never inside the call: on the next loop turn. */
        if (s.calls != 0)
            fail_msg("case %zu: got %d calls before the loop ran, want 0",
                     i, s.calls);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (s.calls != 1)
            fail_msg("case %zu: got %d calls, want 1", i, s.calls);
        assert_rc(s.rc, file_cases[i].rc);
        if (s.rc == 0)
            assert_rc(s.verify_rc, file_cases[i].verify_rc);
        if (file_cases[i].allow_from == NULL) {
            assert_false(s.had_allow_from);
        } else {
            assert_true(s.had_allow_from);
            assert_string_equal(s.allow_from, file_cases[i].allow_from);
        }
        userdb_lookup_free(req);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(s.calls, 1);
    }
    assert_rc(userdb_count(u, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(userdb_kind(u), "passwd-file");
    assert_int_equal(userdb_per_loop(u), 0);
    userdb_unref(u);
}

/* A request freed before the loop runs: no callback, ever. */
static void
test_file_cancel(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    struct seen s = {0};
    struct userdb_req *req = NULL;

    assert_rc(userdb_lookup_start(u, &f->loop, "tim@example.test", on_lookup,
                                  &s, &req),
              0);
    userdb_lookup_free(req);
    userdb_lookup_free(NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 0);
    userdb_unref(u);
}

/* The request may be freed from inside its callback. */
static void
test_file_free_in_callback(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    struct userdb_req *req = NULL;
    struct seen s = {.free_me = &req};

    assert_rc(userdb_lookup_start(u, &f->loop, "bob@example.test", on_lookup,
                                  &s, &req),
              0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 1);
    assert_rc(s.rc, 0);
    assert_null(req);
    userdb_unref(u);
}

/* What a lookup lends outlives the store's last other reference (a
 * reload dropped it) until the request is freed: run under ASan. */
static void
test_file_snapshot_outlives_unref(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    struct userdb_req *req = NULL;
    struct seen s = {.pw = "tanstaaf", .user = "tim@example.test"};

    assert_rc(userdb_lookup_start(u, &f->loop, "tim@example.test", on_lookup,
                                  &s, &req),
              0);
    userdb_unref(u); /* the request holds the store */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(s.calls, 1);
    assert_rc(s.rc, 0);
    assert_rc(s.verify_rc, 0);
    userdb_lookup_free(req);
}

/* Several lookups at once each get their own answer, once. */
static void
test_file_many_in_flight(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    struct seen s[8];
    struct userdb_req *req[8];

    for (size_t i = 0; i < 8; i++) {
        s[i] = (struct seen){0};
        assert_rc(userdb_lookup_start(u, &f->loop,
                                      i % 2 ? "bob@example.test" : "x",
                                      on_lookup, &s[i], &req[i]),
                  0);
    }
    userdb_lookup_free(req[3]);
    req[3] = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(s[i].calls, i == 3 ? 0 : 1);
        if (i != 3)
            assert_rc(s[i].rc, i % 2 ? 0 : PST_ENOENT);
        userdb_lookup_free(req[i]);
    }
    userdb_unref(u);
}

static void
test_file_check(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    char msg[CONFIG_ERR_MAX];

    assert_rc(userdb_check(u, msg, sizeof(msg)), 0);
    assert_string_equal(msg, "2 users");
    userdb_unref(u);
}

static void
test_file_open_error(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = (struct userdb *)1;
    char err[CONFIG_ERR_MAX], want[CONFIG_ERR_MAX];

    unlink(f->path);
    assert_int_equal(userdb_open(&f->cfg, &u, err, sizeof(err)), -1);
    assert_null(u);
    snprintf(want, sizeof(want), "%s: cannot open: %s", f->path,
             strerror(ENOENT));
    assert_string_equal(err, want);
}

/* --- allow_from -------------------------------------------------------- */

static void
test_allow_from(void **state)
{
    static const struct {
        const char *list;
        const char *addr;
        int want;
    } rows[] = {
        {"boss@example.test", "boss@example.test", 1},
        {"boss@example.test", "BOSS@EXAMPLE.TEST", 1},
        {"boss@example.test", "boss@example.tes", 0},
        {"boss@example.test", "xboss@example.test", 0},
        {"a@x.test,boss@example.test", "boss@example.test", 1},
        {"a@x.test, boss@example.test ", "boss@example.test", 1},
        {"@example.org", "anyone@example.org", 1},
        {"@example.org", "anyone@sub.example.org", 0},
        {"@example.org", "example.org", 0},
        {"@", "a@", 0},
        {"a@x.test,,b@x.test", "", 0},
        {"a@x.test,", "", 0},
        {"", "", 0},
        {NULL, "a@x.test", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int got = userdb_allow_from(rows[i].list,
                                    rows[i].list != NULL
                                        ? strlen(rows[i].list)
                                        : 0,
                                    rows[i].addr);

        if (got != rows[i].want)
            fail_msg("list \"%s\", address \"%s\": got %d, want %d",
                     rows[i].list != NULL ? rows[i].list : "(null)",
                     rows[i].addr, got, rows[i].want);
    }
}

/* --- Dovecot's account flags, relay= ------------------------------------ */

/* A client address for the checks: "192.0.2.7", "2001:db8::1",
 * "::ffff:192.0.2.7". */
static struct sockaddr_storage
peer(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':') == NULL) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        sin->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        sin6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
    }
    return ss;
}

/* Dovecot's allow_nets (auth_request_validate_networks(),
 * net_parse_range(), net_is_in_network()), one row per rule. */
static void
test_allow_nets(void **state)
{
    static const struct {
        const char *list;
        const char *peer;
        int want;
        unsigned bad;              /* entries that are not networks */
    } rows[] = {
        /* The example of Dovecot's documentation. */
        {"127.0.0.0/8,192.168.0.0/16,1.2.3.4,4.5.6.7", "127.0.0.1", 1, 0},
        {"127.0.0.0/8,192.168.0.0/16,1.2.3.4,4.5.6.7", "192.168.200.9", 1,
         0},
        {"127.0.0.0/8,192.168.0.0/16,1.2.3.4,4.5.6.7", "4.5.6.7", 1, 0},
        {"127.0.0.0/8,192.168.0.0/16,1.2.3.4,4.5.6.7", "1.2.3.5", 0, 0},
        {"127.0.0.0/8,192.168.0.0/16,1.2.3.4,4.5.6.7", "192.169.0.1", 0, 0},
        {"::1,2001:abcd:abcd::0:0/80,1.2.3.4", "::1", 1, 0},
        {"::1,2001:abcd:abcd::0:0/80,1.2.3.4", "2001:abcd:abcd::ffff:1", 1,
         0},
        {"::1,2001:abcd:abcd::0:0/80,1.2.3.4", "2001:abcd:abcd:0:1::1", 0,
         0},
        /* An address alone is all its bits. */
        {"192.0.2.1", "192.0.2.1", 1, 0},
        {"192.0.2.1", "192.0.2.2", 0, 0},
        /* Odd prefixes; host bits past the prefix do not matter. */
        {"192.0.2.0/25", "192.0.2.127", 1, 0},
        {"192.0.2.0/25", "192.0.2.128", 0, 0},
        {"192.0.2.77/24", "192.0.2.1", 1, 0},
        {"10.0.0.0/7", "11.255.0.1", 1, 0},
        {"10.0.0.0/7", "12.0.0.1", 0, 0},
        {"0.0.0.0/0", "203.0.113.9", 1, 0},
        {"::/0", "2001:db8::9", 1, 0},
        {"::/0", "203.0.113.9", 0, 0},
        /* IPv4-mapped clients match as IPv4, never an IPv6 network. */
        {"192.0.2.0/24", "::ffff:192.0.2.7", 1, 0},
        {"::ffff:0:0/96", "::ffff:192.0.2.7", 0, 0},
        /* The families never match each other. */
        {"192.0.2.0/24", "2001:db8::1", 0, 0},
        {"2001:db8::/32", "192.0.2.1", 0, 0},
        /* Brackets, spaces and runs of separators. */
        {"[2001:db8::1]", "2001:db8::1", 1, 0},
        {"[2001:db8::]/32", "2001:db8:1::1", 1, 0},
        {" 198.51.100.0/24 , ,192.0.2.0/24 ", "192.0.2.9", 1, 0},
        /* Entries that are not networks match nothing. */
        {"bogus,192.0.2.0/24", "192.0.2.9", 1, 1},
        {"192.0.2.0/33,192.0.2.0/", "192.0.2.9", 0, 2},
        {"192.0.2.0/x,::1/129,example.test", "192.0.2.9", 0, 3},
        {"300.1.2.3", "192.0.2.9", 0, 1},
        /* "local": a connection without an IP address; TCP has one. */
        {"local", "127.0.0.1", 0, 0},
        {"local,127.0.0.1", "127.0.0.1", 1, 0},
        /* Present but empty: no network at all. */
        {"", "127.0.0.1", 0, 0},
        {",", "127.0.0.1", 0, 0},
        {NULL, "127.0.0.1", 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage ss = peer(rows[i].peer);
        unsigned bad = 99;
        int got = userdb_allow_nets(rows[i].list,
                                    rows[i].list != NULL
                                        ? strlen(rows[i].list)
                                        : 0,
                                    (struct sockaddr *)&ss, &bad);

        if (got != rows[i].want)
            fail_msg("allow_nets \"%s\", client %s: got %d, want %d",
                     rows[i].list != NULL ? rows[i].list : "(null)",
                     rows[i].peer, got, rows[i].want);
        /* Counting stops at the first match. */
        if (!got && bad != rows[i].bad)
            fail_msg("allow_nets \"%s\": got %u bad entries, want %u",
                     rows[i].list != NULL ? rows[i].list : "(null)", bad,
                     rows[i].bad);
    }
    /* No client address (a socket that is not IP): only "local". */
    assert_int_equal(userdb_allow_nets("local", 5, NULL, NULL), 1);
    assert_int_equal(userdb_allow_nets("0.0.0.0/0", 9, NULL, NULL), 0);
}

/* A record with the given fields ("" a bare key, NULL none). */
static struct userdb_user
record(const char *nologin, const char *reason, const char *noauth,
       const char *nets)
{
    struct userdb_user u = {0};

#define V(field, text)                                                       \
    if ((text) != NULL)                                                      \
    u.field = (struct userdb_value){(text), strlen(text)}
    V(nologin, nologin);
    V(reason, reason);
    V(noauthenticate, noauth);
    V(allow_nets, nets);
#undef V
    return u;
}

static void
test_check_login(void **state)
{
    static const struct {
        const char *nologin, *reason, *noauth, *nets;
        const char *peer;
        int rc;
        const char *why;
    } rows[] = {
        {NULL, NULL, NULL, NULL, "192.0.2.7", 0, ""},
        /* Dovecot: any value sets the flag, even none or "n". */
        {"", NULL, NULL, NULL, "192.0.2.7", PST_EAUTH,
         "nologin: login disabled for this user"},
        {"y", "disabled", NULL, NULL, "192.0.2.7", PST_EAUTH,
         "nologin: login disabled for this user (reason=disabled)"},
        {"n", NULL, NULL, NULL, "192.0.2.7", PST_EAUTH,
         "nologin: login disabled for this user"},
        /* reason= alone refuses nothing. */
        {NULL, "disabled", NULL, NULL, "192.0.2.7", 0, ""},
        {NULL, NULL, "", NULL, "192.0.2.7", PST_EAUTH,
         "noauthenticate: the user store does not authenticate this user"},
        {NULL, NULL, "y", NULL, "192.0.2.7", PST_EAUTH,
         "noauthenticate: the user store does not authenticate this user"},
        {NULL, NULL, NULL, "192.0.2.0/24", "192.0.2.7", 0, ""},
        {NULL, NULL, NULL, "192.0.2.0/24", "127.0.0.2", PST_EAUTH,
         "allow_nets: 127.0.0.2 not in the allowed networks"},
        {NULL, NULL, NULL, "192.0.2.0/24", "::ffff:127.0.0.2", PST_EAUTH,
         "allow_nets: 127.0.0.2 not in the allowed networks"},
        {NULL, NULL, NULL, "bogus", "192.0.2.7", PST_EAUTH,
         "allow_nets: 192.0.2.7 not in the allowed networks (an entry "
         "that is not a network was ignored)"},
        {NULL, NULL, NULL, "", "192.0.2.7", PST_EAUTH,
         "allow_nets: 192.0.2.7 not in the allowed networks"},
        {NULL, NULL, NULL, "2001:db8::/32", "2001:db8::5", 0, ""},
        /* Dovecot's order: allow_nets, noauthenticate, nologin. */
        {"y", "disabled", "", "192.0.2.0/24", "198.51.100.1", PST_EAUTH,
         "allow_nets: 198.51.100.1 not in the allowed networks"},
        {"y", "disabled", "", "192.0.2.0/24", "192.0.2.1", PST_EAUTH,
         "noauthenticate: the user store does not authenticate this user"},
        {"y", "disabled", NULL, "192.0.2.0/24", "192.0.2.1", PST_EAUTH,
         "nologin: login disabled for this user (reason=disabled)"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct userdb_user u = record(rows[i].nologin, rows[i].reason,
                                      rows[i].noauth, rows[i].nets);
        struct sockaddr_storage ss = peer(rows[i].peer);
        char why[USERDB_WHY_MAX] = "";
        int rc = userdb_user_check_login(&u, (struct sockaddr *)&ss, why,
                                         sizeof(why));

        if (rc != rows[i].rc || strcmp(why, rows[i].why) != 0)
            fail_msg("row %zu: got %s \"%s\", want %s \"%s\"", i,
                     pst_errname(rc), why, pst_errname(rows[i].rc),
                     rows[i].why);
        /* Without room for the reason the verdict is the same. */
        assert_int_equal(userdb_user_check_login(&u, (struct sockaddr *)&ss,
                                                 NULL, 0),
                         rows[i].rc);
    }
}

/* What the callback of a flags lookup saw. */
struct seen_fields {
    int calls;
    int rc;
    char text[6][64];              /* "(none)" or the value */
    int login_rc;                  /* userdb_user_check_login() */
    const struct sockaddr *peer;
};

static const char *const FIELD_NAMES[6] = {
    "allow_from", "relay", "nologin", "reason", "noauthenticate",
    "allow_nets",
};

static void
copy_value(char out[64], const struct userdb_value *v)
{
    if (v->v == NULL) {
        snprintf(out, 64, "(none)");
        return;
    }
    assert_true(v->len < 64);
    memcpy(out, v->v, v->len);
    out[v->len] = '\0';
}

static void
on_fields(void *ctx, int rc, const struct userdb_user *u)
{
    struct seen_fields *s = ctx;

    s->calls++;
    s->rc = rc;
    if (rc != 0)
        return;
    copy_value(s->text[0], &u->allow_from);
    copy_value(s->text[1], &u->relay);
    copy_value(s->text[2], &u->nologin);
    copy_value(s->text[3], &u->reason);
    copy_value(s->text[4], &u->noauthenticate);
    copy_value(s->text[5], &u->allow_nets);
    s->login_rc = userdb_user_check_login(u, s->peer, NULL, 0);
}

/* The passwd-file carries Dovecot's flags and relay= into the record,
 * a bare key as an empty value; unknown fields are ignored. */
static void
test_file_account_fields(void **state)
{
    static const struct {
        const char *name;
        const char *peer;
        const char *want[6];
        int login_rc;
    } rows[] = {
        /* The line of the issue. */
        {"carol@example.test", "127.0.0.1",
         {"(none)", "(none)", "y", "disabled", "(none)", "192.0.2.0/24"},
         PST_EAUTH},
        {"dave@example.test", "127.0.0.1",
         {"(none)", "m365", "(none)", "(none)", "(none)",
          "127.0.0.1,192.0.2.0/24"},
         0},
        {"dave@example.test", "127.0.0.2",
         {"(none)", "m365", "(none)", "(none)", "(none)",
          "127.0.0.1,192.0.2.0/24"},
         PST_EAUTH},
        {"erin@example.test", "127.0.0.1",
         {"@example.org", "(none)", "", "(none)", "", "(none)"},
         PST_EAUTH},
        {"fred@example.test", "127.0.0.1",
         {"(none)", "", "(none)", "(none)", "(none)", ""}, PST_EAUTH},
        {"gina@example.test", "127.0.0.1",
         {"(none)", "(none)", "(none)", "(none)", "(none)", "(none)"}, 0},
    };
    struct fixture *f = *state;
    struct userdb *u;

    write_file(f->path,
               "carol@example.test:{PLAIN}Secret123::::::nologin=y "
               "reason=disabled allow_nets=192.0.2.0/24\n"
               "dave@example.test:{PLAIN}x::::::userdb_mail=x relay=m365 "
               "allow_nets=127.0.0.1,192.0.2.0/24\n"
               "erin@example.test:{PLAIN}x::::::nologin noauthenticate "
               "allow_from=@example.org\n"
               "fred@example.test:{PLAIN}x::::::relay= allow_nets=\n"
               "gina@example.test:{PLAIN}x::::::nologinx=y reasons=z\n");
    u = open_store(f);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage ss = peer(rows[i].peer);
        struct seen_fields s = {.peer = (struct sockaddr *)&ss};
        struct userdb_req *req = NULL;
        const struct userdb_user *rec;

        assert_rc(userdb_lookup_start(u, &f->loop, rows[i].name, on_fields,
                                      &s, &req),
                  0);
        /* In flight: no record yet. */
        assert_null(userdb_lookup_user(req));
        uv_run(&f->loop, UV_RUN_NOWAIT);
        assert_int_equal(s.calls, 1);
        assert_rc(s.rc, 0);
        for (size_t k = 0; k < 6; k++)
            if (strcmp(s.text[k], rows[i].want[k]) != 0)
                fail_msg("%s: %s: got \"%s\", want \"%s\"", rows[i].name,
                         FIELD_NAMES[k], s.text[k], rows[i].want[k]);
        assert_rc(s.login_rc, rows[i].login_rc);
        /* The record stays readable after the callback, until freed. */
        rec = userdb_lookup_user(req);
        assert_non_null(rec);
        assert_non_null(rec->cred);
        assert_rc(userdb_user_check_login(rec, (struct sockaddr *)&ss, NULL,
                                          0),
                  rows[i].login_rc);
        userdb_lookup_free(req);
    }
    userdb_unref(u);
}

/* An unknown user has no record to look at. */
static void
test_lookup_user_unknown(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = open_store(f);
    struct seen s = {0};
    struct userdb_req *req = NULL;

    assert_null(userdb_lookup_user(NULL));
    assert_rc(userdb_lookup_start(u, &f->loop, "nobody@example.test",
                                  on_lookup, &s, &req),
              0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(s.calls, 1);
    assert_rc(s.rc, PST_ENOENT);
    assert_null(userdb_lookup_user(req));
    userdb_lookup_free(req);
    userdb_unref(u);
}

/* --- pgsql without a server ---------------------------------------------- */

static void
use_pgsql(struct fixture *f, const char *conninfo, const char *query)
{
    f->cfg.userdb.kind = CONFIG_USERDB_PGSQL;
    f->cfg.userdb.arg = (char *)conninfo;
    f->cfg.userdb_query = (char *)query;
}

static void
test_pgsql_bad_conninfo(void **state)
{
    struct fixture *f = *state;
    struct userdb *u = (struct userdb *)1;
    char err[CONFIG_ERR_MAX];

    use_pgsql(f, "host=/tmp nosuchoption=1", NULL);
    assert_int_equal(userdb_open(&f->cfg, &u, err, sizeof(err)), -1);
    assert_null(u);
    assert_string_equal(err, "test.conf: userdb pgsql: bad connection "
                        "string: invalid connection option "
                        "\"nosuchoption\"");
    use_pgsql(f, "host='unterminated", NULL);
    assert_int_equal(userdb_open(&f->cfg, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad connection string: unterminated "
                                "quoted string"));
}

/* Run the loop until n callbacks in total have come (or 10 s pass).
 * Not UV_RUN_ONCE: it would wait in epoll for the next timer (the
 * store's reconnection) after running the callback. */
static void
run_until(uv_loop_t *loop, const struct seen *s, size_t ns, int n)
{
    uint64_t start = uv_now(loop);

    for (;;) {
        int calls = 0;

        for (size_t i = 0; i < ns; i++)
            calls += s[i].calls;
        if (calls >= n)
            return;
        if (uv_now(loop) - start > 10000)
            fail_msg("got %d callbacks in 10 s, want %d", calls, n);
        if (uv_run(loop, UV_RUN_NOWAIT) == 0)
            fail_msg("the loop ended with %d callbacks, want %d", calls, n);
        usleep(1000);
        uv_update_time(loop);
    }
}

/*
 * No server: a lookup fails with PST_ETEMP (not inside the call); while
 * the reconnection delay runs, the next ones fail at once; a cancelled
 * one never calls back; freeing the store closes every handle (the
 * fixture's teardown checks uv_loop_close()).
 */
static void
test_pgsql_unreachable(void **state)
{
    struct fixture *f = *state;
    char conninfo[256];
    struct userdb *u;
    size_t n;
    struct userdb_req *req[3] = {NULL, NULL, NULL};
    struct seen s[3] = {{0}, {0}, {0}};
    uint64_t t0;

    snprintf(conninfo, sizeof(conninfo),
             "host=%s/no-such-dir port=5 dbname=postern user=postern",
             f->dir);
    use_pgsql(f, conninfo, NULL);
    u = open_store(f);
    /* The database is not asked how many users it has. */
    assert_rc(userdb_count(u, &n), PST_ENOTSUP);
    assert_string_equal(userdb_kind(u), "pgsql");
    assert_int_equal(userdb_per_loop(u), 1);

    assert_rc(userdb_lookup_start(u, &f->loop, "tim@example.test", on_lookup,
                                  &s[0], &req[0]),
              0);
    assert_rc(userdb_lookup_start(u, &f->loop, "bob@example.test", on_lookup,
                                  &s[1], &req[1]),
              0);
    assert_int_equal(s[0].calls + s[1].calls, 0);
    userdb_lookup_free(req[1]);
    req[1] = NULL;
    run_until(&f->loop, s, 3, 1);
    assert_int_equal(s[0].calls, 1);
    assert_rc(s[0].rc, PST_ETEMP);

    /* Known down: the next lookup fails on the next loop turn. */
    uv_update_time(&f->loop);
    t0 = uv_now(&f->loop);
    assert_rc(userdb_lookup_start(u, &f->loop, "tim@example.test", on_lookup,
                                  &s[2], &req[2]),
              0);
    assert_int_equal(s[2].calls, 0);
    run_until(&f->loop, s, 3, 2);
    assert_rc(s[2].rc, PST_ETEMP);
    assert_true(uv_now(&f->loop) - t0 < 200);
    assert_int_equal(s[1].calls, 0);

    for (size_t i = 0; i < 3; i++)
        userdb_lookup_free(req[i]);
    userdb_unref(u); /* closes the pool: the teardown runs the loop dry */
}

/* A lookup in flight when its request goes, then the store: nothing is
 * called, nothing leaks (ASan), the loop ends. */
static void
test_pgsql_cancel_then_free(void **state)
{
    struct fixture *f = *state;
    char conninfo[256];
    struct userdb *u;
    struct userdb_req *req = NULL;
    struct seen s = {0};

    snprintf(conninfo, sizeof(conninfo), "host=%s/none port=5", f->dir);
    use_pgsql(f, conninfo, "SELECT 1, 2 WHERE $1 = ''");
    u = open_store(f);
    assert_rc(userdb_lookup_start(u, &f->loop, "a", on_lookup, &s, &req), 0);
    userdb_lookup_free(req);
    userdb_unref(u);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls, 0);
}

/* A store is bound to the loop of its first lookup. */
static void
test_pgsql_one_loop(void **state)
{
    struct fixture *f = *state;
    char conninfo[256];
    struct userdb *u;
    struct userdb_req *req = NULL, *other = (struct userdb_req *)1;
    struct seen s[2] = {{0}, {0}};
    uv_loop_t loop2;

    snprintf(conninfo, sizeof(conninfo), "host=%s/none port=5", f->dir);
    use_pgsql(f, conninfo, NULL);
    u = open_store(f);
    assert_int_equal(uv_loop_init(&loop2), 0);
    assert_rc(userdb_lookup_start(u, &f->loop, "a", on_lookup, &s[0], &req),
              0);
    assert_rc(userdb_lookup_start(u, &loop2, "a", on_lookup, &s[1], &other),
              PST_EINVAL);
    assert_null(other);
    run_until(&f->loop, s, 2, 1);
    assert_int_equal(s[1].calls, 0);
    userdb_lookup_free(req);
    userdb_unref(u);
    assert_int_equal(uv_loop_close(&loop2), 0);
}

/* posternd -t: unreachable is a warning (PST_ETEMP), with libpq's
 * reason. */
static void
test_pgsql_check_unreachable(void **state)
{
    struct fixture *f = *state;
    char conninfo[256], msg[CONFIG_ERR_MAX];
    struct userdb *u;

    snprintf(conninfo, sizeof(conninfo), "host=%s/none port=5", f->dir);
    use_pgsql(f, conninfo, NULL);
    u = open_store(f);
    assert_rc(userdb_check(u, msg, sizeof(msg)), PST_ETEMP);
    if (strncmp(msg, "userdb pgsql: cannot connect: ", 30) != 0 ||
        strstr(msg, "/none/.s.PGSQL.5") == NULL ||
        strchr(msg, '\n') != NULL)
        fail_msg("got \"%s\", want \"userdb pgsql: cannot connect: ...\" "
                 "naming the socket, on one line", msg);
    userdb_unref(u);
}

/* --- cert= (client certificates) ---------------------------------------- */

#define FP_A "00112233445566778899aabbccddeeff" \
             "0123456789abcdef0123456789abcdef"
#define FP_B "ffeeddccbbaa99887766554433221100" \
             "fedcba9876543210fedcba9876543210"

static void
test_cert_parse(void **state)
{
    static const struct {
        const char *text;
        int ok;
    } rows[] = {
        {"SHA256:" FP_A, 1},
        {"sha256:" FP_A, 1},
        {"SHA256:00112233445566778899AABBCCDDEEFF"
         "0123456789ABCDEF0123456789ABCDEF", 1},
        /* openssl x509 -fingerprint -sha256: pairs with colons. */
        {"SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:01:23:45:"
         "67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF", 1},
        {"SHA1:" FP_A, 0},
        {FP_A, 0},
        {"SHA256:" FP_A "00", 0},
        {"SHA256:" FP_A ":", 0},
        {"SHA256:0011223344556677", 0},
        {"SHA256:0:0112233445566778899aabbccddeeff"
         "0123456789abcdef0123456789abcdef", 0},
        {"SHA256:g0112233445566778899aabbccddeeff"
         "0123456789abcdef0123456789abcdef", 0},
        {"SHA256: " FP_A, 0},
        {"", 0},
    };
    uint8_t fp[USERDB_CERT_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = userdb_cert_parse(rows[i].text, strlen(rows[i].text), fp);

        if ((rc == 0) != rows[i].ok)
            fail_msg("row %zu \"%s\": got %s, want %s", i, rows[i].text,
                     pst_errname(rc), rows[i].ok ? "0" : "ESYNTAX");
        if (rc == 0)
            assert_int_equal(fp[31], 0xef);
    }
    {
        struct userdb_value none = {0};
        struct userdb_value a = {.v = "SHA256:" FP_A,
                                 .len = strlen("SHA256:" FP_A)};
        struct userdb_value bad = {.v = "SHA256:xyz", .len = 10};

        assert_int_equal(userdb_cert_matches(&none, FP_A), -1);
        assert_int_equal(userdb_cert_matches(&a, FP_A), 1);
        assert_int_equal(userdb_cert_matches(&a, FP_B), 0);
        assert_int_equal(userdb_cert_matches(&bad, FP_A), 0);
    }
}

/* cert_user = fingerprint: the user whose cert= is the certificate's,
 * from the loaded file; the field in a lookup for the pin. */
static void
test_file_cert(void **state)
{
    struct fixture *f = *state;
    struct userdb *u;
    struct userdb_req *req = NULL;
    struct seen s = {0};
    char name[256], err[CONFIG_ERR_MAX];

    write_file(f->path,
               "scanner@example.test:{PLAIN}x::::::cert=SHA256:" FP_A "\n"
               "printer@example.test:{PLAIN}y::::::allow_from=a@b.c "
               "cert=SHA256:FF:EE:DD:CC:BB:AA:99:88:77:66:55:44:33:22:11:00:"
               "FE:DC:BA:98:76:54:32:10:FE:DC:BA:98:76:54:32:10\n"
               "tim@example.test:{PLAIN}z\n");
    u = open_store(f);
    assert_rc(userdb_find_cert(u, FP_A, name, sizeof(name)), 0);
    assert_string_equal(name, "scanner@example.test");
    assert_rc(userdb_find_cert(u, FP_B, name, sizeof(name)), 0);
    assert_string_equal(name, "printer@example.test");
    assert_rc(userdb_find_cert(u, "10112233445566778899aabbccddeeff"
                                  "0123456789abcdef0123456789abcdef",
                               name, sizeof(name)),
              PST_ENOENT);
    assert_rc(userdb_find_cert(u, FP_A, name, 10), PST_ELIMIT);
    assert_rc(userdb_find_cert(u, "nothex", name, sizeof(name)),
              PST_EINVAL);
    assert_rc(userdb_lookup_start(u, &f->loop, "printer@example.test",
                                  on_lookup_cert, &s, &req), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.cert_match, 0);
    userdb_lookup_free(req);
    s.calls = 0;
    s.fp = FP_B;
    assert_rc(userdb_lookup_start(u, &f->loop, "printer@example.test",
                                  on_lookup_cert, &s, &req), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(s.cert_match, 1);
    userdb_lookup_free(req);
    s.calls = 0;
    assert_rc(userdb_lookup_start(u, &f->loop, "tim@example.test",
                                  on_lookup_cert, &s, &req), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(s.cert_match, -1);
    userdb_lookup_free(req);
    userdb_unref(u);

    /* Malformed, and shared by two users: the file is refused. */
    write_file(f->path, "a@example.test:{PLAIN}x::::::cert=SHA256:12\n");
    assert_int_equal(userdb_open(&f->cfg, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":1: user 'a@example.test': cert= is not"));
    write_file(f->path,
               "a@example.test:{PLAIN}x::::::cert=SHA256:" FP_A "\n"
               "b@example.test:{PLAIN}x::::::cert=sha256:" FP_A "\n");
    assert_int_equal(userdb_open(&f->cfg, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":2: user 'b@example.test': the same cert= "
                                "as user 'a@example.test' (line 1)"));
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_file_lookups),
        T(test_file_cancel),
        T(test_file_free_in_callback),
        T(test_file_snapshot_outlives_unref),
        T(test_file_many_in_flight),
        T(test_file_check),
        T(test_file_open_error),
        cmocka_unit_test(test_allow_from),
        cmocka_unit_test(test_allow_nets),
        cmocka_unit_test(test_check_login),
        T(test_file_account_fields),
        T(test_lookup_user_unknown),
        cmocka_unit_test(test_cert_parse),
        T(test_file_cert),
        T(test_pgsql_bad_conninfo),
        T(test_pgsql_unreachable),
        T(test_pgsql_cancel_then_free),
        T(test_pgsql_one_loop),
        T(test_pgsql_check_unreachable),
    };
#undef T
    return cmocka_run_group_tests_name("userdb", tests, NULL, NULL);
}
