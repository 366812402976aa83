/* pst_buf: ceiling, NUL termination, hex, printf, secret wiping. */
#include "testutil.h"

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
        cmocka_unit_test(test_errors_named),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
