/*
 * SASLprep (RFC 4013) through pst__saslprep: the examples of RFC 4013 §3,
 * the mappings, prohibited output, the bidi rule, bad UTF-8, and stored
 * strings versus queries (RFC 4013 §2.5, RFC 3454 §7).
 */
#include <stringprep.h>

#include "testutil.h"

#include "../../lib/internal.h"

#define BOTH   2  /* as a stored string and as a query */
#define STORED 1
#define QUERY  0

struct prep_case {
    const char *in;
    size_t len;
    int mode;           /* BOTH, STORED or QUERY */
    int want;           /* 0 or a PST_E* */
    const char *out;    /* when want == 0 */
};

#define IN(s) (s), (sizeof(s) - 1)

static const struct prep_case cases[] = {
    /* RFC 4013 §3 examples, in order. */
    {IN("I\xc2\xadX"), BOTH, 0, "IX"},       /* SOFT HYPHEN mapped out */
    {IN("user"), BOTH, 0, "user"},           /* no transformation */
    {IN("USER"), BOTH, 0, "USER"},           /* case preserved */
    {IN("\xc2\xaa"), BOTH, 0, "a"},          /* NFKC: ª -> a */
    {IN("\xe2\x85\xa8"), BOTH, 0, "IX"},     /* NFKC: Ⅸ -> IX */
    {IN("\x07"), BOTH, PST_EPREP, NULL},     /* prohibited character */
    {IN("\xd8\xa7" "1"), BOTH, PST_EPREP, NULL}, /* bidi rule */
    /* §2.1: non-ASCII spaces map to SPACE; §2.2: "commonly mapped to
     * nothing" characters vanish. */
    {IN("a\xc2\xa0" "b"), BOTH, 0, "a b"},
    {IN("a\xe2\x80\x83" "b"), BOTH, 0, "a b"},
    {IN("a\xe2\x80\x8c" "b"), BOTH, 0, "ab"},  /* ZWNJ: B.1 only */
    {IN("j\xc3\xbcrgen"), BOTH, 0, "j\xc3\xbcrgen"},
    {IN("ju\xcc\x88rgen"), BOTH, 0, "j\xc3\xbcrgen"}, /* NFKC composes */
    /* §2.3 prohibited output. */
    {IN("a\x7f"), BOTH, PST_EPREP, NULL},        /* ASCII control */
    {IN("a\xc2\x85"), BOTH, PST_EPREP, NULL},    /* non-ASCII control */
    {IN("\xee\x80\x80"), BOTH, PST_EPREP, NULL}, /* private use */
    {IN("\xef\xbf\xbe"), BOTH, PST_EPREP, NULL}, /* non-character */
    {IN("a\xe2\x80\x8e"), BOTH, PST_EPREP, NULL}, /* LRM: display */
    /* §2.4 bidi: RandALCat at both ends is fine, mixing with L is not. */
    {IN("\xd8\xa7" "1" "\xd8\xa8"), BOTH, 0, "\xd8\xa7" "1" "\xd8\xa8"},
    {IN("\xd8\xa7" "a" "\xd8\xa8"), BOTH, PST_EPREP, NULL},
    /* Only mapped-out characters: an empty result is refused. */
    {IN("\xc2\xad"), BOTH, PST_EPREP, NULL},
    {IN("\xc2\xad\xe2\x80\x8c"), BOTH, PST_EPREP, NULL},
    /* Not UTF-8 (RFC 3629), or with a NUL. */
    {IN("\xff"), BOTH, PST_EPREP, NULL},
    {IN("a\xc3"), BOTH, PST_EPREP, NULL},        /* truncated */
    {IN("\xc0\xaf"), BOTH, PST_EPREP, NULL},     /* overlong "/" */
    {IN("\xed\xa0\x80"), BOTH, PST_EPREP, NULL}, /* surrogate */
    {IN("\xf4\x90\x80\x80"), BOTH, PST_EPREP, NULL}, /* past U+10FFFF */
    {IN("a\0b"), BOTH, PST_EPREP, NULL},
    /* §2.5: U+0221 was unassigned in Unicode 3.2: refused in a stored
     * string, passed through in a query. */
    {IN("\xc8\xa1"), STORED, PST_EPREP, NULL},
    {IN("\xc8\xa1"), QUERY, 0, "\xc8\xa1"},
    {IN("a\xc8\xa1" "b"), STORED, PST_EPREP, NULL},
    {IN("a\xc8\xa1" "b"), QUERY, 0, "a\xc8\xa1" "b"},
};

static void
run_case(const struct prep_case *c, size_t i, int stored)
{
    struct pst_buf out;
    int rc;

    pst_buf_init(&out, 1024, 1);
    /* Appends: what is in out already stays. */
    assert_rc(pst_buf_append_str(&out, "<"), 0);
    rc = pst__saslprep((const uint8_t *)c->in, c->len, stored, &out);
    if (rc != c->want) {
        fprintf(stderr, "case %zu (%s): got %s, want %s\n", i,
                stored ? "stored" : "query",
                rc < 0 ? pst_errname(rc) : "0",
                c->want < 0 ? pst_errname(c->want) : "0");
        fail();
    }
    if (rc == 0) {
        assert_true(out.len >= 1 && out.data[0] == '<');
        assert_bytes_equal(out.data + 1, out.len - 1, c->out,
                           strlen(c->out));
        assert_int_equal(out.data[out.len], '\0');
    }
    pst_buf_clear(&out);
}

static void
test_saslprep_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].mode == BOTH || cases[i].mode == STORED)
            run_case(&cases[i], i, 1);
        if (cases[i].mode == BOTH || cases[i].mode == QUERY)
            run_case(&cases[i], i, 0);
    }
}

/* The output buffer's ceiling is respected. */
static void
test_saslprep_limit(void **state)
{
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, 3, 0);
    assert_rc(pst__saslprep((const uint8_t *)"abc", 3, 1, &out), 0);
    assert_buf_str(&out, "abc");
    pst_buf_reset(&out);
    assert_rc(pst__saslprep((const uint8_t *)"abcd", 4, 1, &out),
              PST_ELIMIT);
    pst_buf_reset(&out);
    /* Ⅸ is 3 octets in, 2 out: fits; "ⅨⅨ" needs 4 octets. */
    assert_rc(pst__saslprep((const uint8_t *)"\xe2\x85\xa8", 3, 1, &out), 0);
    assert_buf_str(&out, "IX");
    pst_buf_reset(&out);
    assert_rc(pst__saslprep((const uint8_t *)"\xe2\x85\xa8\xe2\x85\xa8", 6,
                            1, &out), PST_ELIMIT);
    pst_buf_clear(&out);
}

/*
 * in[0..len) through pst__saslprep and through libidn's SASLprep profile
 * directly: the same verdict and the same bytes.
 */
static void
check_as_libidn(const char *in, size_t len, int stored)
{
    struct pst_buf out;
    char *res = NULL;
    int rc, want;

    rc = stringprep_profile(in, &res, "SASLprep",
                            stored ? STRINGPREP_NO_UNASSIGNED : 0);
    want = rc == STRINGPREP_OK && res[0] != '\0' ? 0 : PST_EPREP;
    pst_buf_init(&out, 1024, 0);
    rc = pst__saslprep((const uint8_t *)in, len, stored, &out);
    if (rc != want) {
        fprintf(stderr, "\"%s\" (%s): got %s, want %s\n", in,
                stored ? "stored" : "query", rc < 0 ? pst_errname(rc) : "0",
                want < 0 ? pst_errname(want) : "0");
        fail();
    }
    if (rc == 0)
        assert_bytes_equal(out.data, out.len, res, strlen(res));
    free(res);
    pst_buf_clear(&out);
}

/*
 * ASCII, which pst__saslprep passes as it is when every octet is
 * printable (%x20-7E) without asking libidn: each octet alone and inside
 * a name, and all of the printable ones in one string, get what libidn
 * gives (data made without the shortcut, as STYLE §10 asks).
 */
static void
test_saslprep_ascii_as_libidn(void **state)
{
    char all[96], one[4];
    size_t n = 0;

    (void)state;
    for (int c = 0x01; c <= 0x7f; c++) {
        for (int stored = 0; stored <= 1; stored++) {
            one[0] = (char)c;
            one[1] = '\0';
            check_as_libidn(one, 1, stored);
            one[0] = 'a';
            one[1] = (char)c;
            one[2] = 'b';
            one[3] = '\0';
            check_as_libidn(one, 3, stored);
        }
        if (c >= 0x20 && c <= 0x7e)
            all[n++] = (char)c;
    }
    all[n] = '\0';
    assert_int_equal(n, 95);
    check_as_libidn(all, n, 1);
    check_as_libidn(all, n, 0);
    check_as_libidn(" ", 1, 1); /* RFC 4013 §2.3: SPACE is allowed */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_saslprep_table),
        cmocka_unit_test(test_saslprep_limit),
        cmocka_unit_test(test_saslprep_ascii_as_libidn),
    };
    return cmocka_run_group_tests_name("saslprep", tests, NULL, NULL);
}
