/* pst_buf: ceiling, NUL termination, hex, printf, shrinking, secret
 * wiping. */
#include "testutil.h"

#include <openssl/crypto.h>

/*
 * OpenSSL's allocator hooks see every block a secret buffer releases
 * (OPENSSL_clear_free): the block watched must come back through them,
 * wiped.  A plain free() or an unwiped release fails the test.
 */
static int hooks_set;
static const void *watch_ptr;
static size_t watch_len;
static int watch_seen, watch_clean;

static void *
hook_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return malloc(n);
}

static void *
hook_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return realloc(p, n);
}

static void
hook_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p != NULL && p == watch_ptr) {
        const uint8_t *q = p;

        watch_seen = 1;
        watch_clean = 1;
        for (size_t i = 0; i < watch_len; i++)
            if (q[i] != 0)
                watch_clean = 0;
    }
    free(p);
}

static void
watch(const void *p, size_t len)
{
    watch_ptr = p;
    watch_len = len;
    watch_seen = 0;
    watch_clean = 0;
}

static void
test_append_and_ceiling(void **state)
{
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 8, 0);
    assert_null(b.data);
    assert_rc(pst_buf_append_str(&b, "abcd"), 0);
    assert_rc(pst_buf_append(&b, "ef\0h", 4), 0);
    assert_int_equal(b.len, 8);
    assert_int_equal(b.data[8], 0);
    /* Past the ceiling: refused, buffer unchanged. */
    assert_rc(pst_buf_append_byte(&b, 'x'), PST_ELIMIT);
    assert_bytes_equal(b.data, b.len, "abcdef\0h", 8);
    pst_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_rc(pst_buf_printf(&b, "%d-%s", 42, "ab"), 0);
    assert_buf_str(&b, "42-ab");
    assert_rc(pst_buf_printf(&b, "%s", "toolong"), PST_ELIMIT);
    assert_buf_str(&b, "42-ab");
    pst_buf_clear(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void
test_hex(void **state)
{
    static const uint8_t in[] = {0x00, 0x9a, 0xff, 0x10};
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 64, 0);
    assert_rc(pst_buf_append_hex(&b, in, sizeof(in)), 0);
    assert_buf_str(&b, "009aff10");
    pst_buf_clear(&b);
}

static void
test_growth_secret(void **state)
{
    struct pst_buf b;
    char chunk[100];

    (void)state;
    memset(chunk, 'k', sizeof(chunk));
    pst_buf_init(&b, 100000, 1);
    for (int i = 0; i < 500; i++)
        assert_rc(pst_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.len, 50000);
    for (size_t i = 0; i < b.len; i++)
        assert_int_equal(b.data[i], 'k');
    pst_buf_reset(&b);
    /* A secret buffer's bytes are wiped on reset. */
    for (size_t i = 0; i < 50000; i++)
        assert_int_not_equal(b.data[i], 'k');
    pst_buf_clear(&b);
}

/* Shrinking keeps the contents and the ceiling, and never grows. */
static void
test_shrink(void **state)
{
    static const struct {
        size_t fill;     /* bytes appended */
        size_t reset;    /* 1: emptied before shrinking */
        size_t keep;
        size_t want_cap; /* 0: memory released, data NULL */
    } cases[] = {
        {.fill = 5000, .keep = 1 << 20, .want_cap = 6000},  /* no-op */
        {.fill = 5000, .keep = 0, .want_cap = 5000},        /* to len */
        {.fill = 3000, .keep = 3500, .want_cap = 3500},     /* to keep */
        {.fill = 10, .keep = 100, .want_cap = 64},          /* no growth */
        {.fill = 5000, .reset = 1, .keep = 256, .want_cap = 256},
        {.fill = 5000, .reset = 1, .keep = 0, .want_cap = 0},
        {.fill = 0, .keep = 0, .want_cap = 0},              /* never used */
    };
    uint8_t chunk[6000];

    (void)state;
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)('a' + i % 26);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct pst_buf b;
        size_t len = cases[c].reset ? 0 : cases[c].fill;

        pst_buf_init(&b, 6000, 0);
        /* Growth doubles from 64 up to the ceiling, 6000. */
        for (size_t k = 0; k < cases[c].fill; k += 1000)
            assert_rc(pst_buf_append(&b, chunk + k,
                                     cases[c].fill - k < 1000
                                         ? cases[c].fill - k
                                         : 1000), 0);
        if (cases[c].reset)
            pst_buf_reset(&b);
        assert_rc(pst_buf_shrink(&b, cases[c].keep), 0);
        if (b.cap != cases[c].want_cap)
            fail_msg("case %zu: got cap %zu, want %zu", c, b.cap,
                     cases[c].want_cap);
        assert_int_equal(b.len, len);
        if (cases[c].want_cap == 0) {
            assert_null(b.data);
        } else {
            assert_bytes_equal(b.data, b.len, chunk, len);
            assert_int_equal(b.data[b.len], 0);
        }
        /* Still a buffer with its ceiling. */
        assert_rc(pst_buf_append(&b, chunk, 6000 - len), 0);
        assert_rc(pst_buf_append_byte(&b, 'x'), PST_ELIMIT);
        assert_bytes_equal(b.data + len, 6000 - len, chunk, 6000 - len);
        pst_buf_clear(&b);
    }
}

/* A secret buffer's old memory is wiped before shrinking releases it. */
static void
test_shrink_secret(void **state)
{
    struct pst_buf b;
    uint8_t chunk[3000];
    const uint8_t *old;

    (void)state;
    if (!hooks_set)
        fail_msg("got no OpenSSL allocator hooks, want them set in main");
    memset(chunk, 'S', sizeof(chunk));
    pst_buf_init(&b, 100000, 1);
    assert_rc(pst_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.cap, 4096);
    /* Moved to a 3000-byte block: the 4096-byte one is wiped. */
    old = b.data;
    watch(old, b.cap + 1);
    assert_rc(pst_buf_shrink(&b, 0), 0);
    assert_true(watch_seen);
    assert_true(watch_clean);
    assert_int_equal(b.cap, 3000);
    assert_bytes_equal(b.data, b.len, chunk, sizeof(chunk));
    /* Emptied without a wipe, as a reader that took every byte does,
     * then released altogether: the whole block is wiped. */
    b.len = 0;
    b.data[0] = '\0';
    watch(b.data, b.cap + 1);
    assert_rc(pst_buf_shrink(&b, 0), 0);
    assert_true(watch_seen);
    assert_true(watch_clean);
    assert_null(b.data);
    watch(NULL, 0);
    pst_buf_clear(&b);
}

static void
test_errors_named(void **state)
{
    (void)state;
    assert_string_equal(pst_errname(PST_EAUTH), "EAUTH");
    assert_string_equal(pst_strerror(PST_EAUTH), "authentication failed");
    assert_string_equal(pst_errname(12345), "UNKNOWN");
    assert_string_equal(pst_strerror(0), "success");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_ceiling),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_growth_secret),
        cmocka_unit_test(test_shrink),
        cmocka_unit_test(test_shrink_secret),
        cmocka_unit_test(test_errors_named),
    };

    /* Before OpenSSL allocates anything, or it refuses. */
    hooks_set = CRYPTO_set_mem_functions(hook_malloc, hook_realloc,
                                         hook_free);
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
