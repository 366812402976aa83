/*
 * Fuzz target: strict base64 (include/postern/base64.h, RFC 4648).
 *
 * Invariants checked (abort() on a violation):
 * - decode(encode(x)) == x for any bytes x;
 * - when the input decodes, encode(decode(input)) == input: the decoder
 *   accepts only the canonical encoding (RFC 4648 §3.5);
 * - a call that fails leaves its output buffer as it was (header
 *   contract), checked with a ceiling too small for the result.
 */
#include <stdlib.h>
#include <string.h>

#include <postern/base64.h>
#include <postern/buf.h>

#include "fuzz.h"

#define FUZZ_B64_MAX (1u << 20)

static int
same(const struct pst_buf *b, const uint8_t *p, size_t len)
{
    return b->len == len && (len == 0 || memcmp(b->data, p, len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pst_buf enc, dec, small;
    int rc;

    pst_buf_init(&enc, FUZZ_B64_MAX, 0);
    pst_buf_init(&dec, FUZZ_B64_MAX, 1);

    /* The input as base64 text. */
    rc = pst_base64_decode(data, size, &dec);
    if (rc == 0) {
        if (pst_base64_encode(dec.data, dec.len, &enc) != 0 ||
            !same(&enc, data, size))
            abort();
        /* The same with too small a ceiling: ELIMIT, buffer untouched. */
        if (dec.len > 0) {
            pst_buf_init(&small, dec.len, 0);
            if (pst_buf_append(&small, "x", 1) != 0)
                abort();
            if (pst_base64_decode(data, size, &small) != PST_ELIMIT ||
                !same(&small, (const uint8_t *)"x", 1))
                abort();
            pst_buf_clear(&small);
        }
    } else if (dec.len != 0) {
        abort();
    }

    /* The input as bytes: the round trip must give them back. */
    pst_buf_reset(&enc);
    pst_buf_reset(&dec);
    if (pst_base64_encode(data, size, &enc) != 0 ||
        enc.len != PST_BASE64_ENCLEN(size))
        abort();
    if (pst_base64_decode(enc.data != NULL ? enc.data : (const uint8_t *)"",
                          enc.len, &dec) != 0 ||
        !same(&dec, data, size))
        abort();

    pst_buf_clear(&enc);
    pst_buf_clear(&dec);
    return 0;
}
