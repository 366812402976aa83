/*
 * A plain main() for the fuzz targets, so that builds without libFuzzer
 * (gcc, the ASan build) replay each corpus: `make test` runs it through
 * the fuzz-smoke suite.
 *
 *     fuzz_<target> DIR|FILE...
 *
 * Every regular file of each directory (sorted by name; names starting
 * with "." skipped), and every file named, is read into an exact-size heap
 * block and given to LLVMFuzzerTestOneInput(), whole and then cut short at
 * a quarter, a half, three quarters and one byte before its end (the
 * targets split their input into messages and feeds themselves).
 *
 * Output is TAP, one test per file:
 *
 *     1..N
 *     ok 1 - plain-ir
 *     not ok 2 - crash-1234 # aborted
 *
 * A target that finds a broken invariant calls abort(): the line is then
 * "not ok" and the program dies of SIGABRT.  Any other crash (SIGSEGV, an
 * ASan report) ends the run early, so fewer than N lines come out.  The
 * exit status is 0 only when every file passed.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

struct replay_list {
    char **v;
    size_t n;
    size_t cap;
};

/* The "not ok" line of the input being run, for the SIGABRT handler. */
static char replay_abort_line[512];
static size_t replay_abort_len;

static void
replay_on_abort(int sig)
{
    ssize_t w = write(STDOUT_FILENO, replay_abort_line, replay_abort_len);

    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

static int
replay_add(struct replay_list *l, const char *path)
{
    char *copy;

    if (l->n == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof(*v));

        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    copy = strdup(path);
    if (copy == NULL)
        return -1;
    l->v[l->n++] = copy;
    return 0;
}

static int
replay_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add path, or the regular files of the directory path, sorted. */
static int
replay_collect(struct replay_list *l, const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    size_t first = l->n;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_add(l, path);
    d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        char full[4096];
        int n;

        if (de->d_name[0] == '.')
            continue;
        n = snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
        if (n < 0 || (size_t)n >= sizeof(full))
            continue;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_add(l, full) != 0) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    qsort(l->v + first, l->n - first, sizeof(*l->v), replay_cmp);
    return 0;
}

static int
replay_read(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return -1;
    for (;;) {
        size_t got;

        if (n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, ncap);

            if (nb == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        errno = EIO;
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

/* Run the target on data[0..len) from an exact-size copy. */
static void
replay_run(const uint8_t *data, size_t len)
{
    uint8_t *copy = fuzz_dup(data, len, 0);

    if (copy == NULL) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    (void)LLVMFuzzerTestOneInput(copy, len);
    free(copy);
}

static const char *
replay_basename(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash != NULL ? slash + 1 : path;
}

int
main(int argc, char **argv)
{
    struct replay_list l = {0};
    int failed = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++)
        if (replay_collect(&l, argv[i]) != 0)
            failed = 1;
    if (l.n == 0) {
        printf("1..1\nnot ok 1 - no inputs found\n");
        return 1;
    }
    printf("1..%zu\n", l.n);
    signal(SIGABRT, replay_on_abort);
    for (size_t i = 0; i < l.n; i++) {
        const char *name = replay_basename(l.v[i]);
        uint8_t *data;
        size_t len;
        int n;

        if (replay_read(l.v[i], &data, &len) != 0) {
            printf("not ok %zu - %s # cannot read: %s\n", i + 1, name,
                   strerror(errno));
            failed = 1;
            continue;
        }
        n = snprintf(replay_abort_line, sizeof(replay_abort_line),
                     "not ok %zu - %s # aborted\n", i + 1, name);
        replay_abort_len = n < 0 ? 0
                         : (size_t)n < sizeof(replay_abort_line)
                             ? (size_t)n
                             : sizeof(replay_abort_line) - 1;
        replay_run(data, len);
        /* Cut short: the targets must cope with any truncation. */
        {
            size_t cuts[] = {len / 4, len / 2, len - len / 4,
                             len > 0 ? len - 1 : 0};

            for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++)
                if (cuts[k] < len && (k == 0 || cuts[k] != cuts[k - 1]))
                    replay_run(data, cuts[k]);
        }
        free(data);
        printf("ok %zu - %s\n", i + 1, name);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    return failed;
}
