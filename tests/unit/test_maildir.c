/*
 * Maildir delivery (deliver_maildir.c): bytes on disk, modes, the spool
 * file's life, all-or-nothing failure, abort, unique names.  The tests run
 * as root, where permission bits stop nothing, so failures are made with
 * things that fail for root too: a regular file where a directory should
 * be, a file size limit (RLIMIT_FSIZE), a spool on another filesystem.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "deliver_maildir.h"

#define HOST     "mail.example.test"
#define NAME_MAX_TEST 256
#define LIST_MAX 1024

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
    struct maildir_msg *m;
    struct tree t;
    struct stat st, st2;
    uint8_t *want, *got;
    mode_t old = umask(022);

    (void)state;
    tree_make(&t, "/tmp");
    snprintf(alice, sizeof(alice), "%s/mail/example.test/alice", t.root);
    snprintf(bob, sizeof(bob), "%s/mail/example.test/bob", t.root);

    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    snprintf(qid, sizeof(qid), "%s", maildir_qid(m));
    assert_int_equal(strlen(qid), MAILDIR_QID_LEN);
    assert_int_equal(strspn(qid, "0123456789ABCDEF"), MAILDIR_QID_LEN);
    /* The spool file: SPOOL/tmp/QID, mode 0600. */
    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, qid);
    assert_mode(path, S_IFREG | 0600);

    /* The Received header, then the body in uneven chunks, one of them
     * larger than the internal buffer. */
    assert_rc(maildir_append(m, received, strlen(received)), 0);
    assert_rc(maildir_append(m, body, 1), 0);
    assert_rc(maildir_append(m, body + 1, 999), 0);
    assert_rc(maildir_append(m, body + 1000, 100000), 0);
    assert_rc(maildir_append(m, body + 101000, 0), 0);
    assert_rc(maildir_append(m, body + 101000, body_len - 101000), 0);
    assert_int_equal(maildir_size(m), total);

    assert_rc(maildir_commit(m, paths, 2), 0);
    assert_string_equal(maildir_error(m), "");
    assert_int_equal(maildir_errno(m), 0);
    /* After a commit the message takes nothing more. */
    assert_rc(maildir_append(m, "x", 1), PST_ESTATE);
    assert_rc(maildir_commit(m, paths, 2), PST_ESTATE);
    maildir_free(m);

    /* The spool file is gone. */
    assert_int_equal(count_dir(t.spool_tmp), 0);
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

static void
test_failure_all_or_nothing(void **state)
{
    /* The failing recipient is "bad" in each row; the others are fine. */
    static const struct {
        const char *order[3];
        size_t n;
        const char *op;     /* expected in the message */
    } v[] = {
        {{"ok1", "blocked", NULL}, 2, "mkdir"},
        {{"ok1", "ok2", "blocked"}, 3, "mkdir"},
        {{"blocked", "ok1", NULL}, 2, "mkdir"},
        {{"ok1", "newfile", "ok2"}, 3, "mkdir"},
        {{"ok1", "ok2", "deep"}, 3, "mkdir"},
    };

    (void)state;
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

    (void)state;
    if (stat("/dev/shm", &a) != 0 || stat("/tmp", &b) != 0 ||
        a.st_dev == b.st_dev) {
        skip();
        return;
    }
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

    (void)state;
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
    struct maildir_msg *m;
    struct tree t;
    struct stat st;

    (void)state;
    tree_make(&t, "/tmp");
    /* The client went away mid-DATA. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, maildir_qid(m));
    assert_rc(maildir_append(m, received, strlen(received)), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(count_dir(t.spool_tmp), 1);
    maildir_abort(m);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(count_dir(t.spool_tmp), 0);

    /* maildir_free() before a commit discards too. */
    assert_rc(maildir_begin(t.spool, HOST, &m), 0);
    assert_int_equal(count_dir(t.spool_tmp), 1);
    maildir_free(m);
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

    (void)state;
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

    (void)state;
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

static void
test_spool_clean(void **state)
{
    struct maildir_msg *young, *old;
    struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    char path[512];
    struct tree t;

    (void)state;
    tree_make(&t, "/tmp");
    assert_rc(maildir_begin(t.spool, HOST, &young), 0);
    assert_rc(maildir_begin(t.spool, HOST, &old), 0);
    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, maildir_qid(old));
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
    /* Only the file older than a day goes. */
    assert_int_equal(maildir_spool_clean(t.spool, 86400), 1);
    assert_int_equal(count_dir(t.spool_tmp), 1);
    snprintf(path, sizeof(path), "%s/%s", t.spool_tmp, maildir_qid(young));
    assert_int_equal(access(path, F_OK), 0);
    maildir_free(old); /* its file is gone already: harmless */
    maildir_free(young);
    assert_int_equal(count_dir(t.spool_tmp), 0);
    snprintf(path, sizeof(path), "%s/none", t.root);
    assert_rc(maildir_spool_clean(path, 0), PST_EIO);
    remove_tree(t.root);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_two),
        cmocka_unit_test(test_existing_maildir),
        cmocka_unit_test(test_failure_all_or_nothing),
        cmocka_unit_test(test_failure_other_filesystem),
        cmocka_unit_test(test_failure_write),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_host_escaping),
        cmocka_unit_test(test_unique_names),
        cmocka_unit_test(test_check_spool),
        cmocka_unit_test(test_spool_clean),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
