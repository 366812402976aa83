/*
 * Maildir delivery (deliver_maildir.c): bytes on disk, modes, the spool
 * file's life on both paths (O_TMPFILE, and a named file held with
 * flock when O_TMPFILE cannot serve; most tests run on both), crash
 * leftovers and their cleaning, all-or-nothing failure, abort, unique
 * names, and the group commit of new/ fsyncs.  The tests run as root,
 * where permission bits stop nothing, so failures are made with things
 * that fail for root too: a regular file where a directory should be, an
 * immutable new/, a file size limit (RLIMIT_FSIZE), a spool on another
 * filesystem, an fsync failed through the test hook.
 */
#define _GNU_SOURCE /* O_TMPFILE, to see whether the filesystem has it */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "deliver_maildir.h"
#include "queue_file.h"

#define HOST     "mail.example.test"
#define NAME_MAX_TEST 256
#define LIST_MAX 1024
#define NO_TMPFILE "POSTERN_MAILDIR_NO_TMPFILE"

/* Which spool path a test runs on: its cmocka state. */
struct mode {
    int named;          /* 1: POSTERN_MAILDIR_NO_TMPFILE=1 */
};

static struct mode mode_unnamed = {.named = 0};
static struct mode mode_named = {.named = 1};

static int
mode_setup(void **state)
{
    const struct mode *md = *state;

    if (md->named)
        setenv(NO_TMPFILE, "1", 1);
    else
        unsetenv(NO_TMPFILE);
    return 0;
}

static int
mode_teardown(void **state)
{
    (void)state;
    unsetenv(NO_TMPFILE);
    return 0;
}

/* The mode of a test, skipping it when the filesystem of dir has no
 * O_TMPFILE and the test wants that path. */
static const struct mode *
mode_of(void **state, const char *dir)
{
    const struct mode *md = *state;
    int fd;

    if (md->named)
        return md;
    fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd < 0) {
        print_message("# %s has no O_TMPFILE (%s)\n", dir, strerror(errno));
        skip();
    }
    close(fd);
    return md;
}

/* A fresh directory tree for one test: ROOT/spool with its tmp/. */
struct tree {
    char root[64];
    char spool[128];
    char spool_tmp[160];
};

static void
tree_make(struct tree *t, const char *base)
{
    char err[MAILDIR_ERR_MAX];
    char tmpl[160];

    snprintf(t->root, sizeof(t->root), "%s/test_maildir.XXXXXX", base);
    assert_non_null(mkdtemp(t->root));
    snprintf(t->spool, sizeof(t->spool), "%s/spool", t->root);
    snprintf(t->spool_tmp, sizeof(t->spool_tmp), "%s/tmp", t->spool);
    snprintf(tmpl, sizeof(tmpl), "%s/mail/%%d/%%n", t->root);
    assert_int_equal(mkdir(t->spool, 0700), 0);
    /* Creates spool/tmp. */
    if (maildir_check_spool(t->spool, tmpl, err, sizeof(err)) != 0)
        fail_msg("maildir_check_spool: got \"%s\", want success", err);
}

/* rm -r path (no symlinks are followed: lstat). */
static void
remove_tree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;

    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char sub[4096];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        remove_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

/* Names in dir (without . and ..), sorted; returns how many. */
static size_t
list_dir(const char *dir, char names[][NAME_MAX_TEST], size_t max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    if (d == NULL)
        fail_msg("opendir %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        assert_true(n < max);
        snprintf(names[n++], NAME_MAX_TEST, "%s", e->d_name);
    }
    closedir(d);
    qsort(names, n, NAME_MAX_TEST,
          (int (*)(const void *, const void *))strcmp);
    return n;
}

/* How many entries dir has; 0 also when it does not exist. */
static size_t
count_dir(const char *dir)
{
    static char names[LIST_MAX][NAME_MAX_TEST];
    struct stat st;

    if (stat(dir, &st) != 0)
        return 0;
    return list_dir(dir, names, LIST_MAX);
}

/* The whole file at path; *len gets its size.  free() the result. */
static uint8_t *
read_file(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *p;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    assert_int_equal(fstat(fd, &st), 0);
    p = malloc((size_t)st.st_size + 1);
    assert_non_null(p);
    assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return p;
}

static void
assert_mode(const char *path, mode_t want)
{
    struct stat st;

    if (stat(path, &st) != 0)
        fail_msg("stat %s: %s", path, strerror(errno));
    if (st.st_mode != want)
        fail_msg("%s: got mode %o, want %o", path, (unsigned)st.st_mode,
                 (unsigned)want);
}

/* Whether someone holds a flock() on path (another open file
 * description, in this process or another, conflicts with ours). */
static int
is_locked(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    rc = flock(fd, LOCK_EX | LOCK_NB);
    if (rc != 0 && errno != EWOULDBLOCK)
        fail_msg("flock %s: %s", path, strerror(errno));
    close(fd);
    return rc != 0;
}

/*
 * While message qid is open, the spool shows what the mode promises:
 * nothing at all (O_TMPFILE), or SPOOL/tmp/QID, mode 0600, locked, among
 * n files (those of the open messages).
 */
static void
assert_spool_open(const struct tree *t, const char *qid,
                  const struct mode *md, size_t n)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", t->spool_tmp, qid);
    if (!md->named) {
        if (count_dir(t->spool_tmp) != 0)
            fail_msg("%s: got %zu files, want none (O_TMPFILE)",
                     t->spool_tmp, count_dir(t->spool_tmp));
        assert_int_equal(stat(path, &st), -1);
        return;
    }
    assert_int_equal(count_dir(t->spool_tmp), n);
    assert_mode(path, S_IFREG | 0600);
    if (!is_locked(path))
        fail_msg("%s: got no lock, want flock(LOCK_EX) held", path);
}

/*
 * Check a delivered name: "SEC.MUSECPPIDQCOUNTERRQID.HOST,S=SIZE".
 * Returns the counter.
 */
static unsigned long
check_name(const char *name, const char *qid, const char *host,
           size_t size)
{
    char tail[512];
    const char *p = name;
    char *end;
    unsigned long q;
    long pid;

    strtoll(p, &end, 10);
    assert_true(end > p && *end == '.');
    p = end + 1;
    assert_int_equal(*p, 'M');
    strtol(p + 1, &end, 10);
    assert_int_equal(end - (p + 1), 6); /* microseconds, 6 digits */
    assert_int_equal(*end, 'P');
    pid = strtol(end + 1, &end, 10);
    assert_int_equal(pid, (long)getpid());
    assert_int_equal(*end, 'Q');
    q = strtoul(end + 1, &end, 10);
    snprintf(tail, sizeof(tail), "R%s.%s,S=%zu", qid, host, size);
    assert_string_equal(end, tail);
    return q;
}

static const char received[] =
    "Received: from device.example.test ([192.0.2.7])\r\n"
    "\tby mail.example.test with ESMTPSA id QID;\r\n"
    "\tWed, 1 May 2024 12:00:00 +0000\r\n";

/* A message of about 150 KiB: header lines then a long body, every byte
 * value present so nothing is translated on the way. */
static size_t
make_body(uint8_t *buf, size_t size)
{
    size_t n = 0;
    const char *hdr = "From: alice@example.test\r\nTo: bob@example.test\r\n"
                      "Subject: test\r\n\r\n";

    memcpy(buf, hdr, strlen(hdr));
    n = strlen(hdr);
    while (n + 256 + 2 < size) {
        for (unsigned i = 0; i < 256; i++)
            buf[n++] = (uint8_t)i;
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    return n;
}

static void
test_deliver_two(void **state)
{
    static uint8_t body[150000];
    char alice[256], bob[256], path[1024], qid[MAILDIR_QID_LEN + 1];
    char names[2][NAME_MAX_TEST];
    unsigned long counters[2];
    const char *paths[2] = {alice, bob};
    size_t body_len = make_body(body, sizeof(body));
    size_t total = strlen(received) + body_len, len;
    const struct mode *md = mode_of(state, "/tmp");
    struct maildir_msg *m;
    struct tree t;
    struct stat st, st2;
    uint8_t *want, *got;
    mode_t old = umask(022);

    tree_make(&t, "/tmp");
    snprintf(alice, sizeof(alice), "%s/mail/example.test/alice", t.root);
    snprintf(bob, sizeof(bob), "%s/mail/example.test/bob", t.root);

    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    snprintf(qid, sizeof(qid), "%s", maildir_qid(m));
    assert_int_equal(strlen(qid), MAILDIR_QID_LEN);
    assert_int_equal(strspn(qid, "0123456789ABCDEF"), MAILDIR_QID_LEN);
    /* The spool file: unnamed, or SPOOL/tmp/QID, mode 0600, locked. */
    assert_spool_open(&t, qid, md, 1);

    /* The Received header, then the body in uneven chunks, one of them
     * larger than the internal buffer. */
    assert_rc(maildir_append(m, received, strlen(received)), 0);
    assert_rc(maildir_append(m, body, 1), 0);
    assert_rc(maildir_append(m, body + 1, 999), 0);
    assert_rc(maildir_append(m, body + 1000, 100000), 0);
    assert_rc(maildir_append(m, body + 101000, 0), 0);
    assert_rc(maildir_append(m, body + 101000, body_len - 101000), 0);
    assert_int_equal(maildir_size(m), total);
    assert_spool_open(&t, qid, md, 1);

    assert_rc(maildir_commit(m, paths, 2), 0);
    assert_string_equal(maildir_error(m), "");
    assert_int_equal(maildir_errno(m), 0);
    /* After a commit the message takes nothing more. */
    assert_rc(maildir_append(m, "x", 1), PST_ESTATE);
    assert_rc(maildir_commit(m, paths, 2), PST_ESTATE);
    maildir_free(m);

    /* The spool file is gone. */
    assert_int_equal(count_dir(t.spool_tmp), 0);
    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, qid);
    assert_int_equal(stat(path, &st), -1);

    want = malloc(total);
    assert_non_null(want);
    memcpy(want, received, strlen(received));
    memcpy(want + strlen(received), body, body_len);
    for (size_t r = 0; r < 2; r++) {
        char dir[512];

        /* Created directories: 0700 whatever the umask allowed. */
        assert_mode(paths[r], S_IFDIR | 0700);
        snprintf(dir, sizeof(dir), "%s/cur", paths[r]);
        assert_mode(dir, S_IFDIR | 0700);
        assert_int_equal(count_dir(dir), 0);
        snprintf(dir, sizeof(dir), "%s/tmp", paths[r]);
        assert_mode(dir, S_IFDIR | 0700);
        assert_int_equal(count_dir(dir), 0);
        snprintf(dir, sizeof(dir), "%s/new", paths[r]);
        assert_mode(dir, S_IFDIR | 0700);
        assert_int_equal(list_dir(dir, &names[r], 1), 1);
        counters[r] = check_name(names[r], qid, HOST, total);
        /* The bytes, exactly. */
        snprintf(path, sizeof(path), "%s/%s", dir, names[r]);
        got = read_file(path, &len);
        assert_bytes_equal(got, len, want, total);
        free(got);
        assert_mode(path, S_IFREG | 0600);
        assert_int_equal(stat(path, r == 0 ? &st : &st2), 0);
    }
    /* One inode, two names: written once. */
    assert_int_equal(st.st_ino, st2.st_ino);
    assert_int_equal(st.st_nlink, 2);
    /* Two deliveries, two names, two counter values. */
    assert_string_not_equal(names[0], names[1]);
    assert_int_not_equal(counters[0], counters[1]);
    snprintf(path, sizeof(path), "%s/mail", t.root);
    assert_mode(path, S_IFDIR | 0700);
    snprintf(path, sizeof(path), "%s/mail/example.test", t.root);
    assert_mode(path, S_IFDIR | 0700);

    free(want);
    remove_tree(t.root);
    umask(old);
}

/* An existing Maildir keeps its modes; several messages pile up. */
static void
test_existing_maildir(void **state)
{
    char box[256], sub[300];
    const char *paths[] = {box, box};
    struct maildir_msg *m;
    struct tree t;

    (void)state;
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/box", t.root);
    assert_int_equal(mkdir(box, 0750), 0);
    for (int i = 0; i < 3; i++) {
        static const char *const subs[] = {"cur", "new", "tmp"};

        snprintf(sub, sizeof(sub), "%s/%s", box, subs[i]);
        assert_int_equal(mkdir(sub, 0750), 0);
        chmod(sub, 0750);
    }
    chmod(box, 0750);
    for (int i = 0; i < 3; i++) {
        assert_rc(maildir_begin(t.spool, HOST, &m), 0);
        assert_rc(maildir_append(m, "Subject: x\n\nx\n", 14), 0);
        /* The same Maildir twice: two copies, as asked. */
        assert_rc(maildir_commit(m, paths, 2), 0);
        maildir_free(m);
    }
    snprintf(sub, sizeof(sub), "%s/new", box);
    assert_int_equal(count_dir(sub), 6);
    assert_mode(box, S_IFDIR | 0750);
    assert_mode(sub, S_IFDIR | 0750);
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

/* Everything in each new/ of paths is empty, and the spool too. */
static void
assert_nothing_left(const struct tree *t, const char *const *paths,
                    size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char dir[512];

        snprintf(dir, sizeof(dir), "%s/new", paths[i]);
        if (count_dir(dir) != 0)
            fail_msg("%s: got %zu files, want none", dir, count_dir(dir));
        snprintf(dir, sizeof(dir), "%s/tmp", paths[i]);
        assert_int_equal(count_dir(dir), 0);
    }
    if (count_dir(t->spool_tmp) != 0)
        fail_msg("%s: got %zu files, want none", t->spool_tmp,
                 count_dir(t->spool_tmp));
}

/* The gate (maildir_set_gate()): a commit given up before it links
 * makes no name; one given up while its links are made removes them;
 * one that went through first stands, and giving it up fails. */
static _Atomic int *gate_to_drop;

static int
gate_drop_hook(void *arg)
{
    (void)arg;
    atomic_store(gate_to_drop, MAILDIR_GATE_ABANDONED);
    return 0;
}

static void
test_gate(void **state)
{
    char a[256], b[256], dir[300];
    const char *paths[] = {a, b};
    struct maildir_msg *m;
    _Atomic int gate;
    struct tree t;
    int open;

    (void)state;
    tree_make(&t, "/tmp");
    snprintf(a, sizeof(a), "%s/mail/example.test/a", t.root);
    snprintf(b, sizeof(b), "%s/mail/example.test/b", t.root);
    /* 1. Given up before the commit: no link at all. */
    atomic_init(&gate, MAILDIR_GATE_ABANDONED);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    maildir_set_gate(m, &gate);
    assert_rc(maildir_append(m, "Subject: x\n\nx\n", 14), 0);
    assert_rc(maildir_commit(m, paths, 2), PST_ECANCEL);
    assert_string_equal(maildir_error(m), "commit given up");
    maildir_free(m);
    assert_nothing_left(&t, paths, 0);
    /* 2. Given up while new/ is synced (the hook runs before each
     * fsync of a new/): the links made go again. */
    atomic_store(&gate, MAILDIR_GATE_OPEN);
    gate_to_drop = &gate;
    maildir_set_sync_hook(gate_drop_hook, NULL);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    maildir_set_gate(m, &gate);
    assert_rc(maildir_append(m, "Subject: x\n\nx\n", 14), 0);
    assert_rc(maildir_commit(m, paths, 2), PST_ECANCEL);
    maildir_free(m);
    maildir_set_sync_hook(NULL, NULL);
    assert_nothing_left(&t, paths, 2);
    /* 3. Through first: it stands, and the gate says so. */
    atomic_store(&gate, MAILDIR_GATE_OPEN);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    maildir_set_gate(m, &gate);
    assert_rc(maildir_append(m, "Subject: x\n\nx\n", 14), 0);
    assert_rc(maildir_commit(m, paths, 2), 0);
    maildir_free(m);
    open = MAILDIR_GATE_OPEN;
    assert_false(atomic_compare_exchange_strong(&gate, &open,
                                                MAILDIR_GATE_ABANDONED));
    assert_int_equal(open, MAILDIR_GATE_COMMITTED);
    for (size_t i = 0; i < 2; i++) {
        snprintf(dir, sizeof(dir), "%s/new", paths[i]);
        assert_int_equal(count_dir(dir), 1);
    }
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

static void
test_failure_all_or_nothing(void **state)
{
    /* The failing recipient is "bad" in each row; the others are fine. */
    static const struct {
        const char *order[3];
        size_t n;
        const char *op;     /* expected in the message */
    } v[] = {
        /* openat(O_DIRECTORY | O_NOFOLLOW) of each component: a file
         * where a directory should be is ENOTDIR there. */
        {{"ok1", "blocked", NULL}, 2, "open"},
        {{"ok1", "ok2", "blocked"}, 3, "open"},
        {{"blocked", "ok1", NULL}, 2, "open"},
        {{"ok1", "newfile", "ok2"}, 3, "open"},
        {{"ok1", "ok2", "deep"}, 3, "open"},
    };

    (void)mode_of(state, "/tmp");
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char bufs[3][256], path[512];
        const char *paths[3];
        struct maildir_msg *m;
        struct tree t;
        int fd;

        tree_make(&t, "/tmp");
        /* A regular file where a directory of the path should be. */
        snprintf(path, sizeof(path), "%s/file", t.root);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        close(fd);
        /* A Maildir whose new/ is a regular file. */
        snprintf(path, sizeof(path), "%s/nf", t.root);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/nf/cur", t.root);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/nf/tmp", t.root);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/nf/new", t.root);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        close(fd);

        for (size_t r = 0; r < v[i].n; r++) {
            const char *w = v[i].order[r];

            if (strcmp(w, "blocked") == 0)
                snprintf(bufs[r], sizeof(bufs[r]), "%s/file/box", t.root);
            else if (strcmp(w, "deep") == 0)
                snprintf(bufs[r], sizeof(bufs[r]), "%s/file/a/b/c", t.root);
            else if (strcmp(w, "newfile") == 0)
                snprintf(bufs[r], sizeof(bufs[r]), "%s/nf", t.root);
            else
                snprintf(bufs[r], sizeof(bufs[r]), "%s/mail/%s", t.root, w);
            paths[r] = bufs[r];
        }
        assert_rc(maildir_begin(t.spool, HOST, &m), 0);
        assert_rc(maildir_append(m, received, strlen(received)), 0);
        assert_rc(maildir_commit(m, paths, v[i].n), PST_EIO);
        if (maildir_errno(m) != ENOTDIR ||
            strncmp(maildir_error(m), v[i].op, strlen(v[i].op)) != 0 ||
            strstr(maildir_error(m), "Not a directory") == NULL)
            fail_msg("case %zu: got \"%s\" (errno %d), want %s ... Not a "
                     "directory", i, maildir_error(m), maildir_errno(m),
                     v[i].op);
        maildir_free(m);
        /* Nothing visible anywhere. */
        for (size_t r = 0; r < v[i].n; r++) {
            if (strcmp(v[i].order[r], "blocked") == 0 ||
                strcmp(v[i].order[r], "deep") == 0)
                continue;
            if (strcmp(v[i].order[r], "newfile") == 0)
                continue;
            assert_nothing_left(&t, &paths[r], 1);
        }
        assert_nothing_left(&t, paths, 0);
        remove_tree(t.root);
    }
}

/* A spool on another filesystem: found at start-up, and link() fails
 * with EXDEV at delivery, leaving nothing. */
static void
test_failure_other_filesystem(void **state)
{
    struct tree shm, tmp;
    struct stat a, b;
    char err[MAILDIR_ERR_MAX], tmpl[256], box1[256], box2[256];
    const char *paths[] = {box1, box2};
    struct maildir_msg *m;

    if (stat("/dev/shm", &a) != 0 || stat("/tmp", &b) != 0 ||
        a.st_dev == b.st_dev) {
        skip();
        return;
    }
    (void)mode_of(state, "/dev/shm");
    tree_make(&shm, "/dev/shm");
    tree_make(&tmp, "/tmp");
    snprintf(tmpl, sizeof(tmpl), "%s/mail/%%d/%%n", tmp.root);
    assert_rc(maildir_check_spool(shm.spool, tmpl, err, sizeof(err)),
              PST_EINVAL);
    if (strstr(err, "different filesystems") == NULL ||
        strstr(err, shm.spool) == NULL || strstr(err, tmp.root) == NULL)
        fail_msg("got \"%s\", want a message naming both places", err);

    /* Same filesystem: the first recipient on /dev/shm links; the second
     * on /tmp cannot, so the first is removed again. */
    snprintf(box1, sizeof(box1), "%s/mail/one", shm.root);
    snprintf(box2, sizeof(box2), "%s/mail/two", tmp.root);
    assert_rc(maildir_begin(shm.spool, HOST, &m), 0);
    assert_rc(maildir_append(m, "x\n", 2), 0);
    assert_rc(maildir_commit(m, paths, 2), PST_EIO);
    assert_int_equal(maildir_errno(m), EXDEV);
    assert_true(strncmp(maildir_error(m), "link ", 5) == 0);
    maildir_free(m);
    assert_nothing_left(&shm, paths, 2);
    remove_tree(shm.root);
    remove_tree(tmp.root);
}

/* A write that fails (file size limit standing in for a full disk):
 * every later call fails, and nothing is left. */
static void
test_failure_write(void **state)
{
    static uint8_t chunk[40000];
    char box[256];
    const char *paths[] = {box};
    struct rlimit old, lim;
    struct maildir_msg *m;
    struct tree t;
    int rc = 0, calls = 0;
    void (*old_handler)(int);

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/mail/box", t.root);
    memset(chunk, 'a', sizeof(chunk));
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);

    old_handler = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100000;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    while (rc == 0 && calls < 100) {
        rc = maildir_append(m, chunk, sizeof(chunk));
        calls++;
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);

    assert_rc(rc, PST_EIO);
    assert_true(calls > 2); /* buffered: the first calls only copy */
    assert_int_equal(maildir_errno(m), EFBIG);
    assert_true(strncmp(maildir_error(m), "write ", 6) == 0);
    assert_rc(maildir_append(m, "x", 1), PST_EIO);
    assert_rc(maildir_commit(m, paths, 1), PST_EIO);
    assert_int_equal(maildir_errno(m), EFBIG);
    maildir_free(m);
    assert_nothing_left(&t, paths, 1);
    remove_tree(t.root);
}

static void
test_abort(void **state)
{
    char path[512];
    const struct mode *md = mode_of(state, "/tmp");
    struct maildir_msg *m, *m2;
    struct tree t;
    struct stat st;

    tree_make(&t, "/tmp");
    /* The client went away mid-DATA. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, maildir_qid(m));
    assert_rc(maildir_append(m, received, strlen(received)), 0);
    assert_spool_open(&t, maildir_qid(m), md, 1);
    maildir_abort(m);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(count_dir(t.spool_tmp), 0);

    /* maildir_free() before a commit discards too; other messages are
     * untouched. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_begin(t.spool, HOST, &m2), 0);
    assert_spool_open(&t, maildir_qid(m), md, 2);
    maildir_free(m);
    assert_spool_open(&t, maildir_qid(m2), md, 1);
    maildir_free(m2);
    assert_int_equal(count_dir(t.spool_tmp), 0);

    maildir_abort(NULL);
    maildir_free(NULL);
    remove_tree(t.root);
}

static void
test_bad_arguments(void **state)
{
    const char *rel[] = {"relative/box"};
    const char *none[] = {NULL};
    struct maildir_msg *m = (struct maildir_msg *)&m;
    struct tree t;
    char path[512];

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    assert_rc(maildir_begin("", HOST, &m), PST_EINVAL);
    assert_null(m);
    assert_rc(maildir_begin(t.spool, "", &m), PST_EINVAL);
    /* A spool without tmp/. */
    snprintf(path, sizeof(path), "%s/nospool", t.root);
    assert_rc(maildir_begin(path, HOST, &m), PST_EIO);
    assert_int_equal(errno, ENOENT);
    assert_null(m);

    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_commit(m, rel, 0), PST_EINVAL);
    maildir_free(m);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_commit(m, rel, 1), PST_EINVAL);
    maildir_free(m);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_commit(m, none, 1), PST_EINVAL);
    maildir_free(m);
    /* A refused commit removes the spool file too. */
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

/* Host names cannot break the Maildir name (the spec's \057 and \072). */
static void
test_host_escaping(void **state)
{
    char box[256], dir[300];
    char names[1][NAME_MAX_TEST];
    const char *paths[] = {box};
    char qid[MAILDIR_QID_LEN + 1];
    struct maildir_msg *m;
    struct tree t;

    (void)state;
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/box", t.root);
    assert_rc(maildir_begin(t.spool, "a/b:c", &m), 0);
    snprintf(qid, sizeof(qid), "%s", maildir_qid(m));
    assert_rc(maildir_commit(m, paths, 1), 0); /* an empty message */
    maildir_free(m);
    snprintf(dir, sizeof(dir), "%s/new", box);
    assert_int_equal(list_dir(dir, names, 1), 1);
    check_name(names[0], qid, "a\\057b\\072c", 0);
    remove_tree(t.root);
}

/* --- Unique names --------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 50

struct worker {
    const char *spool;
    const char *box;
    int failures;
};

static void *
worker_run(void *arg)
{
    struct worker *w = arg;
    const char *paths[] = {w->box};

    for (int i = 0; i < PER_THREAD; i++) {
        struct maildir_msg *m;

        if (maildir_begin(w->spool, HOST, &m) != 0) {
            w->failures++;
            continue;
        }
        if (maildir_append(m, "x\n", 2) != 0 ||
            maildir_commit(m, paths, 1) != 0)
            w->failures++;
        maildir_free(m);
    }
    return NULL;
}

static void
test_unique_names(void **state)
{
    static char names[LIST_MAX][NAME_MAX_TEST];
    pthread_t th[THREADS];
    struct worker w[THREADS];
    char box[256], dir[300];
    struct tree t;
    size_t n;
    pid_t child;
    int status;

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/mail/box", t.root);
    /* A second process delivers into the same Maildir at the same time. */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct worker cw = {.spool = t.spool, .box = box};

        worker_run(&cw);
        _exit(cw.failures == 0 ? 0 : 1);
    }
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.spool = t.spool, .box = box};
        assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]),
                         0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    snprintf(dir, sizeof(dir), "%s/new", box);
    n = list_dir(dir, names, LIST_MAX);
    assert_int_equal(n, (THREADS + 1) * PER_THREAD);
    for (size_t i = 1; i < n; i++) /* sorted: neighbours differ */
        assert_string_not_equal(names[i - 1], names[i]);
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

/* --- Start-up checks and cleaning ----------------------------------------- */

static void
test_check_spool(void **state)
{
    char err[MAILDIR_ERR_MAX], path[256], tmpl[256];
    struct tree t;
    struct stat st;
    int fd;

    (void)state;
    tree_make(&t, "/tmp");
    /* The mailbox root does not exist yet: its nearest parent counts. */
    snprintf(tmpl, sizeof(tmpl), "%s/not/yet/%%d/%%n", t.root);
    assert_rc(maildir_check_spool(t.spool, tmpl, err, sizeof(err)), 0);
    snprintf(tmpl, sizeof(tmpl), "%s/mail-%%n", t.root);
    assert_rc(maildir_check_spool(t.spool, tmpl, err, sizeof(err)), 0);
    /* tmp/ is made when missing. */
    assert_int_equal(rmdir(t.spool_tmp), 0);
    assert_rc(maildir_check_spool(t.spool, tmpl, err, sizeof(err)), 0);
    assert_int_equal(stat(t.spool_tmp, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    snprintf(path, sizeof(path), "%s/none", t.root);
    assert_rc(maildir_check_spool(path, tmpl, err, sizeof(err)), PST_EIO);
    assert_true(strstr(err, "No such file or directory") != NULL);
    snprintf(path, sizeof(path), "%s/file", t.root);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_rc(maildir_check_spool(path, tmpl, err, sizeof(err)), PST_EINVAL);
    assert_true(strstr(err, "not a directory") != NULL);
    remove_tree(t.root);
}

/* Set the access and modification times of path to when (seconds). */
static void
age_file(const char *path, time_t when)
{
    struct timespec times[2] = {{.tv_sec = when}, {.tv_sec = when}};

    if (utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
        fail_msg("utimensat %s: %s", path, strerror(errno));
}

/* A file at t's SPOOL/tmp/name that nobody locks; returns its path. */
static void
spool_file(const struct tree *t, const char *name, char *path, size_t size)
{
    int fd;

    snprintf(path, size, "%s/%s", t->spool_tmp, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    assert_int_equal(write(fd, "partial\n", 8), 8);
    close(fd);
}

/*
 * maildir_spool_clean() on the named path: it removes exactly the files
 * nobody locks and that are older than its grace period.
 */
static void
test_spool_clean(void **state)
{
    char live[512], dead[512], fresh[512], held[512], sub[512], lnk[512];
    char box[256];
    const char *paths[] = {box};
    struct maildir_msg *m, *m2;
    struct tree t;
    time_t long_ago = 1000000000; /* 2001 */
    int fd;

    (void)state; /* named only: unnamed files are never in SPOOL/tmp */
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/mail/box", t.root);
    /* A live message, its file dated long ago: locked, so kept. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_append(m, "x\n", 2), 0);
    snprintf(live, sizeof(live), "%s/%s", t.spool_tmp, maildir_qid(m));
    age_file(live, long_ago);
    /* A crash leftover: old, nobody holds it. */
    spool_file(&t, "DEAD", dead, sizeof(dead));
    age_file(dead, long_ago);
    /* A brand-new file nobody locks (yet): within the grace period. */
    spool_file(&t, "FRESH", fresh, sizeof(fresh));
    /* An old file locked by another descriptor of this process: flock
     * locks belong to open file descriptions. */
    spool_file(&t, "HELD", held, sizeof(held));
    age_file(held, long_ago);
    fd = open(held, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    /* Not regular files: never touched. */
    snprintf(sub, sizeof(sub), "%s/adir", t.spool_tmp);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(lnk, sizeof(lnk), "%s/alink", t.spool_tmp);
    assert_int_equal(symlink(dead, lnk), 0);
    age_file(lnk, long_ago);

    assert_int_equal(maildir_spool_clean(t.spool, MAILDIR_SPOOL_GRACE), 1);
    assert_int_equal(access(dead, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(fresh, F_OK), 0);
    assert_int_equal(access(held, F_OK), 0);
    assert_int_equal(count_dir(t.spool_tmp), 5);
    /* Nothing more goes on a second pass. */
    assert_int_equal(maildir_spool_clean(t.spool, MAILDIR_SPOOL_GRACE), 0);
    /* Its lock released, the held file goes. */
    close(fd);
    assert_int_equal(maildir_spool_clean(t.spool, MAILDIR_SPOOL_GRACE), 1);
    assert_int_equal(access(held, F_OK), -1);
    /* Without a grace period the fresh file goes too, never the live
     * message's. */
    assert_int_equal(maildir_spool_clean(t.spool, 0), 1);
    assert_int_equal(access(fresh, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_spool_open(&t, maildir_qid(m), &mode_named, 3);

    /* The live message was not hurt: it commits, and its file goes. */
    assert_rc(maildir_commit(m, paths, 1), 0);
    maildir_free(m);
    assert_int_equal(access(live, F_OK), -1);
    snprintf(sub, sizeof(sub), "%s/new", box);
    assert_int_equal(count_dir(sub), 1);
    /* An abort after the clean-up works the same. */
    assert_rc(maildir_begin(t.spool, HOST, &m2), 0);
    assert_int_equal(maildir_spool_clean(t.spool, 0), 0);
    maildir_abort(m2);
    assert_int_equal(count_dir(t.spool_tmp), 2); /* adir, alink */

    snprintf(sub, sizeof(sub), "%s/none", t.root);
    assert_rc(maildir_spool_clean(sub, 0), PST_EIO);
    remove_tree(t.root);
}

/*
 * posternd killed (SIGKILL) mid-DATA: with O_TMPFILE nothing is left;
 * with a named file the file is left unlocked, and the first clean-up
 * after its grace period removes it.
 */
static void
test_crash_leftovers(void **state)
{
    static uint8_t chunk[100000];
    const struct mode *md = mode_of(state, "/tmp");
    char qid[MAILDIR_QID_LEN + 1] = "", path[512];
    int pipefd[2], status;
    struct tree t;
    pid_t child;

    tree_make(&t, "/tmp");
    memset(chunk, 'c', sizeof(chunk));
    assert_int_equal(pipe(pipefd), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct maildir_msg *m;

        close(pipefd[0]);
        if (maildir_begin(t.spool, HOST, &m) != 0 ||
            maildir_append(m, received, strlen(received)) != 0 ||
            maildir_append(m, chunk, sizeof(chunk)) != 0 ||
            write(pipefd[1], maildir_qid(m), MAILDIR_QID_LEN) !=
                MAILDIR_QID_LEN)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    close(pipefd[1]);
    assert_int_equal(read(pipefd[0], qid, MAILDIR_QID_LEN),
                     MAILDIR_QID_LEN);
    close(pipefd[0]);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, qid);
    if (!md->named) {
        /* The unnamed file died with its process. */
        assert_int_equal(count_dir(t.spool_tmp), 0);
        assert_int_equal(maildir_spool_clean(t.spool, 0), 0);
        remove_tree(t.root);
        return;
    }
    /* The named one is left, whole so far, and nobody holds it. */
    assert_int_equal(count_dir(t.spool_tmp), 1);
    assert_false(is_locked(path));
    /* Within its grace period it stays; after that it goes, with no
     * hour-long wait. */
    assert_int_equal(maildir_spool_clean(t.spool, MAILDIR_SPOOL_GRACE), 0);
    age_file(path, time(NULL) - MAILDIR_SPOOL_GRACE - 1);
    assert_int_equal(maildir_spool_clean(t.spool, MAILDIR_SPOOL_GRACE), 1);
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

/* Set or clear the immutable flag of a directory (chattr +i), which
 * stops root too.  Returns 0, or -1 if the filesystem cannot. */
static int
set_immutable(const char *dir, int on)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int flags = 0, rc;

    if (fd < 0)
        return -1;
    rc = ioctl(fd, FS_IOC_GETFLAGS, &flags);
    if (rc == 0) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
    return rc;
}

/* The second recipient's new/ cannot be written: PST_EIO, and the first
 * recipient's copy is taken back. */
static void
test_failure_unwritable(void **state)
{
    char ok[256], ro[256], dir[300];
    const char *paths[] = {ok, ro};
    struct maildir_msg *m;
    struct tree t;
    int rc, e;

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    snprintf(ok, sizeof(ok), "%s/mail/ok", t.root);
    snprintf(ro, sizeof(ro), "%s/mail/ro", t.root);
    /* Deliver once to make both Maildirs, then empty them. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_commit(m, paths, 2), 0);
    maildir_free(m);
    remove_tree(ok);
    snprintf(dir, sizeof(dir), "%s/new", ro);
    remove_tree(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    if (set_immutable(dir, 1) != 0) {
        if (geteuid() == 0) {
            print_message("# no immutable flag on /tmp: %s\n",
                          strerror(errno));
            remove_tree(t.root);
            skip();
        }
        assert_int_equal(chmod(dir, 0500), 0);
    }
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_append(m, received, strlen(received)), 0);
    rc = maildir_commit(m, paths, 2);
    e = maildir_errno(m);
    set_immutable(dir, 0);
    chmod(dir, 0700);
    assert_rc(rc, PST_EIO);
    if ((e != EPERM && e != EACCES) ||
        strncmp(maildir_error(m), "link ", 5) != 0)
        fail_msg("got \"%s\" (errno %d), want link ... EPERM or EACCES",
                 maildir_error(m), e);
    maildir_free(m);
    assert_nothing_left(&t, paths, 2);
    remove_tree(t.root);
}

/* --- Group commit of new/ fsyncs ----------------------------------------- */

#define GC_THREADS 16
#define GC_PER_THREAD 20

struct gc_worker {
    pthread_barrier_t *start;
    const char *spool;
    const char *box;
    int id;
    int per_thread;
    int results[GC_PER_THREAD];
    int errnos[GC_PER_THREAD];
    char errors[GC_PER_THREAD][MAILDIR_ERR_MAX];
};

/* Message number i of thread id: its own subject and length, so a mixed
 * up or truncated file cannot pass for another. */
static size_t
gc_message(int id, int i, char *buf, size_t size)
{
    int n = snprintf(buf, size, "Subject: T%02d-M%02d\r\n\r\n", id, i);
    size_t len = (size_t)n + 500 + (size_t)(id * 37 + i * 11);

    assert_true(len < size);
    for (size_t k = (size_t)n; k < len; k++)
        buf[k] = (char)('a' + (k * 7 + (size_t)id + (size_t)i) % 26);
    return len;
}

static void *
gc_run(void *arg)
{
    struct gc_worker *w = arg;
    const char *paths[] = {w->box};
    char buf[2048];

    for (int i = 0; i < w->per_thread; i++) {
        struct maildir_msg *m;
        size_t len = gc_message(w->id, i, buf, sizeof(buf));

        w->results[i] = maildir_begin(w->spool, HOST, &m);
        if (w->results[i] != 0)
            continue;
        w->results[i] = maildir_append(m, buf, len);
        /* All threads commit at once (first round). */
        if (i == 0)
            pthread_barrier_wait(w->start);
        if (w->results[i] == 0)
            w->results[i] = maildir_commit(m, paths, 1);
        w->errnos[i] = maildir_errno(m);
        snprintf(w->errors[i], sizeof(w->errors[i]), "%s",
                 maildir_error(m));
        maildir_free(m);
    }
    return NULL;
}

/* Run n threads of per_thread messages each into box; w[] gets them. */
static void
gc_start(struct gc_worker *w, int n, int per_thread, const char *spool,
         const char *box)
{
    pthread_t th[GC_THREADS];
    pthread_barrier_t start;

    assert_int_equal(pthread_barrier_init(&start, NULL, (unsigned)n), 0);
    for (int i = 0; i < n; i++) {
        w[i] = (struct gc_worker){.start = &start, .spool = spool,
                                  .box = box, .id = i,
                                  .per_thread = per_thread};
        assert_int_equal(pthread_create(&th[i], NULL, gc_run, &w[i]), 0);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
}

/* new/ of box holds exactly the messages of w[] that succeeded (and
 * extra others), each byte for byte. */
static void
gc_check_files(const struct gc_worker *w, int n, const char *box,
               size_t extra)
{
    static char names[LIST_MAX][NAME_MAX_TEST];
    static int seen[GC_THREADS][GC_PER_THREAD];
    char dir[300], path[600], want[2048];
    size_t count, others = 0;

    memset(seen, 0, sizeof(seen));
    snprintf(dir, sizeof(dir), "%s/new", box);
    count = list_dir(dir, names, LIST_MAX);
    for (size_t k = 0; k < count; k++) {
        size_t len, want_len;
        uint8_t *got;
        int id, i;

        snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
        got = read_file(path, &len);
        if (len < 20 || sscanf((const char *)got, "Subject: T%d-M%d", &id,
                               &i) != 2) {
            others++;
            free(got);
            continue;
        }
        assert_true(id >= 0 && id < n && i >= 0 && i < w[id].per_thread);
        if (w[id].results[i] != 0 || seen[id][i])
            fail_msg("%s: got message T%02d-M%02d (result %d, seen %d), "
                     "want it once and only if delivered", names[k], id, i,
                     w[id].results[i], seen[id][i]);
        seen[id][i] = 1;
        want_len = gc_message(id, i, want, sizeof(want));
        assert_bytes_equal(got, len, want, want_len);
        free(got);
    }
    for (int id = 0; id < n; id++)
        for (int i = 0; i < w[id].per_thread; i++)
            if (w[id].results[i] == 0 && !seen[id][i])
                fail_msg("T%02d-M%02d: delivered, but got no file in %s",
                         id, i, dir);
    assert_int_equal(others, extra);
}

/*
 * 16 threads, 20 messages each, into one Maildir, the first round
 * started together: every commit succeeds, every file is there byte for
 * byte, and the counters add up.  Fewer fsyncs than links is likely here
 * but depends on timing, so it is only reported; the exact count is
 * test_group_commit_rounds'.
 */
static void
test_group_commit_many(void **state)
{
    static struct gc_worker w[GC_THREADS];
    char box[256];
    uint64_t syncs0, waits0, syncs, waits;
    const uint64_t total = GC_THREADS * GC_PER_THREAD;
    struct tree t;
    struct maildir_msg *m;
    const char *paths[] = {box};

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/mail/box", t.root);
    /* The Maildir exists before the race (its creation syncs apart). */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_commit(m, paths, 1), 0);
    maildir_free(m);

    maildir_stats(&syncs0, &waits0);
    gc_start(w, GC_THREADS, GC_PER_THREAD, t.spool, box);
    maildir_stats(&syncs, &waits);
    for (int id = 0; id < GC_THREADS; id++)
        for (int i = 0; i < GC_PER_THREAD; i++)
            if (w[id].results[i] != 0)
                fail_msg("T%02d-M%02d: got %d (%s), want 0", id, i,
                         w[id].results[i], w[id].errors[i]);
    gc_check_files(w, GC_THREADS, box, 1);
    /* One fsync or one shared fsync per link, never more. */
    if (syncs - syncs0 + waits - waits0 != total ||
        syncs - syncs0 > total)
        fail_msg("got %llu fsyncs + %llu shared, want %llu links",
                 (unsigned long long)(syncs - syncs0),
                 (unsigned long long)(waits - waits0),
                 (unsigned long long)total);
    print_message("# %llu messages, %llu new/ fsyncs (%llu saved)\n",
                  (unsigned long long)total,
                  (unsigned long long)(syncs - syncs0),
                  (unsigned long long)(waits - waits0));
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

/*
 * The group commit rule, made deterministic with the test hook: the
 * first fsync is held until the 15 other commits (linked while it runs)
 * wait; the first fsync cannot cover them (it started before their
 * links), so one more is run, for all 15: 2 fsyncs for 16 messages.  With
 * fail set, that second fsync fails (EIO): the 15 commits that depended
 * on it fail and take their links back; the first one stands.
 */
struct gc_hook {
    atomic_int calls;
    int fail;           /* errno for the second fsync, 0: none */
    int timed_out;
};

static int
gc_hook_run(void *arg)
{
    struct gc_hook *h = arg;
    int call = atomic_fetch_add(&h->calls, 1);

    if (call == 0) {
        /* Hold the first fsync until everyone else waits (30 s at most;
         * the test fails if they never do). */
        for (int ms = 0; maildir_sync_waiting() < GC_THREADS - 1; ms++) {
            struct timespec ts = {.tv_nsec = 1000000};

            if (ms > 30000) {
                h->timed_out = 1;
                break;
            }
            nanosleep(&ts, NULL);
        }
        return 0;
    }
    return call == 1 ? h->fail : 0;
}

static void
group_commit_rounds(void **state, int fail)
{
    static struct gc_worker w[GC_THREADS];
    struct gc_hook h = {.fail = fail};
    char box[256], dir[300];
    uint64_t syncs0, waits0, syncs, waits;
    struct tree t;
    struct maildir_msg *m;
    const char *paths[] = {box};
    int ok = 0;

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    snprintf(box, sizeof(box), "%s/mail/box", t.root);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_commit(m, paths, 1), 0);
    maildir_free(m);

    maildir_stats(&syncs0, &waits0);
    maildir_set_sync_hook(gc_hook_run, &h);
    gc_start(w, GC_THREADS, 1, t.spool, box);
    maildir_set_sync_hook(NULL, NULL);
    maildir_stats(&syncs, &waits);

    assert_false(h.timed_out);
    assert_int_equal(atomic_load(&h.calls), 2);
    if (syncs - syncs0 != 2 || waits - waits0 != GC_THREADS - 2)
        fail_msg("got %llu fsyncs, %llu shared; want 2, %d",
                 (unsigned long long)(syncs - syncs0),
                 (unsigned long long)(waits - waits0), GC_THREADS - 2);
    for (int id = 0; id < GC_THREADS; id++) {
        if (w[id].results[0] == 0) {
            ok++;
            continue;
        }
        snprintf(dir, sizeof(dir), "fsync %s/new: ", box);
        if (!fail || w[id].results[0] != PST_EIO ||
            w[id].errnos[0] != fail ||
            strncmp(w[id].errors[0], dir, strlen(dir)) != 0)
            fail_msg("T%02d: got %d \"%s\" (errno %d), want %s", id,
                     w[id].results[0], w[id].errors[0], w[id].errnos[0],
                     fail ? "0, or PST_EIO fsync ... EIO" : "0");
    }
    /* Failed: only the commit of the first fsync stands. */
    assert_int_equal(ok, fail ? 1 : GC_THREADS);
    gc_check_files(w, GC_THREADS, box, 1);
    snprintf(dir, sizeof(dir), "%s/new", box);
    assert_int_equal(count_dir(dir), 1 + (size_t)ok);
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

static void
test_group_commit_rounds(void **state)
{
    group_commit_rounds(state, 0);
}

static void
test_group_commit_error(void **state)
{
    group_commit_rounds(state, EIO);
}

/*
 * No component below the mail root may be a symbolic link (or a file):
 * a user directory, a Maildir's new/, a domain directory pointing
 * elsewhere fail the delivery, and nothing is created where they point.
 * The root itself is the administrator's: a symbolic link there works.
 */
static void
test_symlink_refused(void **state)
{
    static const char *const cases[] = {"user", "new", "domain"};

    (void)mode_of(state, "/tmp");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char root[256], box[512], outside[256], link[600], path[1024];
        const char *paths[1] = {box};
        struct maildir_msg *m;
        struct tree t;

        tree_make(&t, "/tmp");
        snprintf(root, sizeof(root), "%s/mail", t.root);
        snprintf(outside, sizeof(outside), "%s/outside", t.root);
        assert_int_equal(mkdir(root, 0700), 0);
        assert_int_equal(mkdir(outside, 0700), 0);
        snprintf(box, sizeof(box), "%s/example.test/dave", root);
        snprintf(path, sizeof(path), "%s/example.test", root);
        if (strcmp(cases[i], "domain") == 0) {
            snprintf(link, sizeof(link), "%s/example.test", root);
            assert_int_equal(symlink(outside, link), 0);
        } else {
            assert_int_equal(mkdir(path, 0700), 0);
            if (strcmp(cases[i], "user") == 0) {
                assert_int_equal(symlink(outside, box), 0);
                snprintf(link, sizeof(link), "%s", box);
            } else {
                assert_int_equal(mkdir(box, 0700), 0);
                snprintf(path, sizeof(path), "%s/cur", box);
                assert_int_equal(mkdir(path, 0700), 0);
                snprintf(path, sizeof(path), "%s/tmp", box);
                assert_int_equal(mkdir(path, 0700), 0);
                snprintf(link, sizeof(link), "%s/new", box);
                assert_int_equal(symlink(outside, link), 0);
            }
        }
        assert_rc(maildir_begin(t.spool, HOST, &m), 0);
        assert_rc(maildir_append(m, "Subject: x\r\n\r\n", 15), 0);
        assert_rc(maildir_deliver(m, root, paths, 1, NULL), PST_EIO);
        snprintf(path, sizeof(path), "refused symbolic link %s:", link);
        if (strncmp(maildir_error(m), path, strlen(path)) != 0 ||
            maildir_errno(m) != ELOOP)
            fail_msg("%s: got \"%s\", want \"%s ...\"", cases[i],
                     maildir_error(m), path);
        maildir_free(m);
        if (count_dir(outside) != 0)
            fail_msg("%s: %zu entries made through the link", cases[i],
                     count_dir(outside));
        assert_int_equal(count_dir(t.spool_tmp), 0);
        remove_tree(t.root);
    }
    /* A root that is itself a symbolic link is followed. */
    {
        char real[256], root[256], box[512], path[1024];
        const char *paths[1] = {box};
        struct maildir_msg *m;
        struct tree t;

        tree_make(&t, "/tmp");
        snprintf(real, sizeof(real), "%s/real", t.root);
        snprintf(root, sizeof(root), "%s/mail", t.root);
        assert_int_equal(mkdir(real, 0700), 0);
        assert_int_equal(symlink(real, root), 0);
        snprintf(box, sizeof(box), "%s/example.test/dave", root);
        assert_rc(maildir_begin(t.spool, HOST, &m), 0);
        assert_rc(maildir_deliver(m, root, paths, 1, NULL), 0);
        maildir_free(m);
        snprintf(path, sizeof(path), "%s/example.test/dave/new", real);
        assert_int_equal(count_dir(path), 1);
        remove_tree(t.root);
    }
}

/* Queued for the relay: DIR/QID (the same file as the local copy) and
 * DIR/QID.env; a local failure takes the queued copy back too. */
static void
test_queue(void **state)
{
    static struct queue_rcpt rcpt[] = {{.addr = "bob@example.org"}};
    struct queue_env env = {
        .id = "X", .arrival = 1, .sender = "a@example.test",
        .relay = "up", .user = "a@example.test", .offset = 0,
        .rcpt = rcpt, .nrcpt = 1,
    };
    static const char body[] = "Subject: q\r\n\r\nqueued\r\n";
    char qdir[256], root[256], box[512], path[1024], err[128];
    const char *paths[1] = {box};
    struct maildir_queue q = {.dir = qdir, .env = &env};
    struct maildir_msg *m;
    struct queue_env *got;
    struct stat st1, st2;
    char qid[MAILDIR_QID_LEN + 1];
    uint8_t *data;
    size_t len;
    struct tree t;

    (void)mode_of(state, "/tmp");
    tree_make(&t, "/tmp");
    snprintf(qdir, sizeof(qdir), "%s/queue", t.root);
    snprintf(root, sizeof(root), "%s/mail", t.root);
    snprintf(box, sizeof(box), "%s/example.test/a", root);
    assert_int_equal(mkdir(qdir, 0700), 0);

    /* Queue only. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    snprintf(qid, sizeof(qid), "%s", maildir_qid(m));
    assert_rc(maildir_append(m, body, strlen(body)), 0);
    assert_rc(maildir_deliver(m, NULL, NULL, 0, &q), 0);
    maildir_free(m);
    snprintf(path, sizeof(path), "%s/%s", qdir, qid);
    data = read_file(path, &len);
    assert_bytes_equal(data, len, body, strlen(body));
    free(data);
    assert_int_equal(queue_file_load(qdir, qid, &got, err, sizeof(err)), 0);
    assert_string_equal(got->id, qid);
    assert_string_equal(got->rcpt[0].addr, "bob@example.org");
    queue_env_free(got);

    /* Queue and a local recipient: one file, two names. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    snprintf(qid, sizeof(qid), "%s", maildir_qid(m));
    assert_rc(maildir_append(m, body, strlen(body)), 0);
    assert_rc(maildir_deliver(m, root, paths, 1, &q), 0);
    maildir_free(m);
    snprintf(path, sizeof(path), "%s/%s", qdir, qid);
    assert_int_equal(stat(path, &st1), 0);
    snprintf(path, sizeof(path), "%s/new", box);
    assert_int_equal(count_dir(path), 1);
    {
        static char names[LIST_MAX][NAME_MAX_TEST];
        char f[1536];

        list_dir(path, names, LIST_MAX);
        snprintf(f, sizeof(f), "%s/%s", path, names[0]);
        assert_int_equal(stat(f, &st2), 0);
    }
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(count_dir(qdir), 4);

    /* The local delivery fails: the queued copy goes too. */
    snprintf(path, sizeof(path), "%s/example.test/file", root);
    {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

        assert_true(fd >= 0);
        close(fd);
    }
    snprintf(box, sizeof(box), "%s/example.test/file/x", root);
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_rc(maildir_append(m, body, strlen(body)), 0);
    assert_rc(maildir_deliver(m, root, paths, 1, &q), PST_EIO);
    maildir_free(m);
    assert_int_equal(count_dir(qdir), 4);
    assert_int_equal(count_dir(t.spool_tmp), 0);
    remove_tree(t.root);
}

/* Both spool paths: "name (O_TMPFILE)" and "name (named)". */
#define BOTH(f)                                                              \
    {.name = #f " (O_TMPFILE)", .test_func = f, .setup_func = mode_setup,   \
     .teardown_func = mode_teardown, .initial_state = &mode_unnamed},       \
    {.name = #f " (named)", .test_func = f, .setup_func = mode_setup,       \
     .teardown_func = mode_teardown, .initial_state = &mode_named}
#define ONE(f, md)                                                           \
    {.name = #f, .test_func = f, .setup_func = mode_setup,                  \
     .teardown_func = mode_teardown, .initial_state = &(md)}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_deliver_two),
        ONE(test_existing_maildir, mode_unnamed),
        BOTH(test_failure_all_or_nothing),
        BOTH(test_failure_other_filesystem),
        BOTH(test_failure_write),
        BOTH(test_failure_unwritable),
        BOTH(test_abort),
        BOTH(test_bad_arguments),
        ONE(test_host_escaping, mode_unnamed),
        BOTH(test_unique_names),
        ONE(test_check_spool, mode_unnamed),
        ONE(test_spool_clean, mode_named),
        BOTH(test_crash_leftovers),
        BOTH(test_group_commit_many),
        ONE(test_group_commit_rounds, mode_unnamed),
        ONE(test_group_commit_error, mode_named),
        BOTH(test_symlink_refused),
        BOTH(test_queue),
        BOTH(test_gate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
