/* Strict base64 (RFC 4648): vectors of §10 and every way to be malformed. */
#include "testutil.h"

static const struct {
    const char *plain, *b64;
} b64_vectors[] = {
    /* RFC 4648 §10 */
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void
test_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]);
         i++) {
        struct pst_buf b;
        const char *p = b64_vectors[i].plain, *e = b64_vectors[i].b64;

        pst_buf_init(&b, 64, 0);
        assert_rc(pst_base64_encode((const uint8_t *)p, strlen(p), &b), 0);
        assert_bytes_equal(b.data, b.len, e, strlen(e));
        pst_buf_reset(&b);
        assert_rc(pst_base64_decode((const uint8_t *)e, strlen(e), &b), 0);
        assert_bytes_equal(b.data, b.len, p, strlen(p));
        pst_buf_clear(&b);
    }
}

static void
test_binary_roundtrip(void **state)
{
    uint8_t in[256];
    struct pst_buf e, d;

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= sizeof(in); n++) {
        pst_buf_init(&e, 1024, 0);
        pst_buf_init(&d, 1024, 1);
        assert_rc(pst_base64_encode(in, n, &e), 0);
        assert_int_equal(e.len, PST_BASE64_ENCLEN(n));
        assert_rc(pst_base64_decode(e.data, e.len, &d), 0);
        assert_bytes_equal(d.data, d.len, in, n);
        pst_buf_clear(&e);
        pst_buf_clear(&d);
    }
}

static const char *const b64_invalid[] = {
    "Zg",          /* not a multiple of 4 */
    "Zg=",         /* short padding */
    "Zg===",       /* too much padding */
    "Z===",        /* padding in position 2 */
    "====",        /* padding only */
    "=AAA",        /* RFC 4954 §4 example */
    "AAA=BBB=",    /* padding inside (RFC 4954 §4 example) */
    "Zm8=Zm8=",    /* padding before the last quantum */
    "Zm 9v",       /* embedded space */
    "Zm9v\r\n",    /* trailing CRLF */
    " Zm9v",       /* leading space */
    "Zm9\tv",      /* tab */
    "Zm9v-_AA",    /* URL-safe alphabet */
    "Zm9*",        /* outside the alphabet */
    "Zh==",        /* non-zero pad bits (RFC 4648 §3.5) */
    "Zm9=",        /* non-zero pad bits, one "=" */
    "Zm9v\x80xyz", /* 8-bit byte */
};

static void
test_invalid_rejected(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(b64_invalid) / sizeof(b64_invalid[0]);
         i++) {
        struct pst_buf b;

        pst_buf_init(&b, 64, 0);
        assert_rc(pst_buf_append_str(&b, "keep"), 0);
        if (pst_base64_decode((const uint8_t *)b64_invalid[i],
                              strlen(b64_invalid[i]), &b) != PST_EPROTO) {
            fprintf(stderr, "accepted invalid base64 \"%s\"\n",
                    b64_invalid[i]);
            fail();
        }
        /* The buffer is left as it was. */
        assert_buf_str(&b, "keep");
        pst_buf_clear(&b);
    }
}

static void
test_nul_inside_rejected(void **state)
{
    static const uint8_t in[] = {'Z', 'm', 0, 'v'};
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 64, 0);
    assert_rc(pst_base64_decode(in, sizeof(in), &b), PST_EPROTO);
    assert_int_equal(b.len, 0);
    pst_buf_clear(&b);
}

static void
test_ceiling(void **state)
{
    struct pst_buf b;

    (void)state;
    pst_buf_init(&b, 5, 0);
    assert_rc(pst_base64_decode((const uint8_t *)"Zm9vYmFy", 8, &b),
              PST_ELIMIT);
    assert_int_equal(b.len, 0);
    assert_rc(pst_base64_encode((const uint8_t *)"foo", 3, &b), 0);
    assert_rc(pst_base64_encode((const uint8_t *)"foo", 3, &b), PST_ELIMIT);
    assert_buf_str(&b, "Zm9v");
    pst_buf_clear(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_binary_roundtrip),
        cmocka_unit_test(test_invalid_rejected),
        cmocka_unit_test(test_nul_inside_rejected),
        cmocka_unit_test(test_ceiling),
    };
    return cmocka_run_group_tests_name("base64", tests, NULL, NULL);
}
