/*
 * DIGEST-MD5 character sets (RFC 2831 §2.1.2 "charset"): user names and
 * realms travel in ISO 8859-1 unless charset=utf-8 is given, and a
 * password whose characters all fit is hashed in ISO 8859-1.
 */
#include "mech.h"

int
pst__digest_latin1_to_utf8(const char *in, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len)
{
    size_t k = 0;

    *out_len = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)in[i];

        if (cap - k < (c < 0x80 ? 1u : 2u))
            return PST_ELIMIT;
        if (c < 0x80) {
            out[k++] = c;
        } else {
            out[k++] = (uint8_t)(0xc0 | (c >> 6));
            out[k++] = (uint8_t)(0x80 | (c & 0x3f));
        }
    }
    *out_len = k;
    return 0;
}

int
pst__digest_utf8_to_latin1(const uint8_t *in, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len)
{
    size_t k = 0;

    *out_len = 0;
    if (!pst__utf8_valid(in, len))
        return PST_EPROTO;
    for (size_t i = 0; i < len; i++) {
        if (k == cap)
            return PST_ELIMIT;
        if (in[i] < 0x80) {
            out[k++] = in[i];
        } else if (in[i] == 0xc2 || in[i] == 0xc3) {
            /* U+0080..U+00FF: two octets, the second a continuation
             * (valid UTF-8 was checked above). */
            out[k++] = (uint8_t)(((in[i] & 0x03) << 6) | (in[i + 1] & 0x3f));
            i++;
        } else {
            return PST_ENOTSUP;
        }
    }
    *out_len = k;
    return 0;
}
