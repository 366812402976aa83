/*
 * Strict base64, RFC 4648 §4.  Decoding refuses what lenient decoders
 * skip: whitespace, characters outside the alphabet, misplaced or missing
 * padding and non-zero pad bits (§3.5), so a malformed AUTH response gets
 * 501 5.5.2 instead of being guessed at.
 */
#include <openssl/crypto.h>

#include <postern/base64.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
pst_base64_encode(const uint8_t *in, size_t len, struct pst_buf *out)
{
    size_t i, start = out->len;
    uint8_t q[4];
    int rc;

    if (len > (SIZE_MAX / 4) * 3 - 3)
        return PST_ELIMIT;
    for (i = 0; i + 2 < len; i += 3) {
        q[0] = (uint8_t)b64_alphabet[in[i] >> 2];
        q[1] = (uint8_t)b64_alphabet[((in[i] & 0x03) << 4) | (in[i + 1] >> 4)];
        q[2] = (uint8_t)b64_alphabet[((in[i + 1] & 0x0f) << 2) |
                                     (in[i + 2] >> 6)];
        q[3] = (uint8_t)b64_alphabet[in[i + 2] & 0x3f];
        if ((rc = pst_buf_append(out, q, 4)) < 0)
            goto fail;
    }
    if (i < len) {
        q[0] = (uint8_t)b64_alphabet[in[i] >> 2];
        if (i + 1 < len) {
            q[1] = (uint8_t)b64_alphabet[((in[i] & 0x03) << 4) |
                                         (in[i + 1] >> 4)];
            q[2] = (uint8_t)b64_alphabet[(in[i + 1] & 0x0f) << 2];
        } else {
            q[1] = (uint8_t)b64_alphabet[(in[i] & 0x03) << 4];
            q[2] = '=';
        }
        q[3] = '=';
        if ((rc = pst_buf_append(out, q, 4)) < 0)
            goto fail;
    }
    return 0;
fail:
    out->len = start;
    if (out->data != NULL)
        out->data[start] = '\0';
    return rc;
}

/* Value of c in the alphabet, or -1. */
static int
b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int
pst_base64_decode(const uint8_t *in, size_t len, struct pst_buf *out)
{
    size_t i, start = out->len;
    int v[4], rc = 0;
    uint8_t o[3];

    if (len % 4 != 0)
        return PST_EPROTO;
    for (i = 0; i < len; i += 4) {
        int last = (i + 4 == len), pad = 0, k;
        size_t n;

        for (k = 0; k < 4; k++) {
            if (in[i + k] == '=') {
                /* Padding only at the end of the last quantum, and never in
                 * its first two positions. */
                if (!last || k < 2)
                    goto bad;
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad > 0)
                goto bad; /* data after padding: "ab=c" */
            v[k] = b64_value(in[i + k]);
            if (v[k] < 0)
                goto bad;
        }
        /* RFC 4648 §3.5: the bits dropped by padding must be zero. */
        if (pad == 2 && (v[1] & 0x0f) != 0)
            goto bad;
        if (pad == 1 && (v[2] & 0x03) != 0)
            goto bad;
        o[0] = (uint8_t)((v[0] << 2) | (v[1] >> 4));
        o[1] = (uint8_t)(((v[1] & 0x0f) << 4) | (v[2] >> 2));
        o[2] = (uint8_t)(((v[2] & 0x03) << 6) | v[3]);
        n = 3 - (size_t)pad;
        rc = pst_buf_append(out, o, n);
        OPENSSL_cleanse(o, sizeof(o));
        if (rc < 0)
            goto fail;
    }
    return 0;
bad:
    rc = PST_EPROTO;
fail:
    if (out->data != NULL) {
        if (out->secret)
            OPENSSL_cleanse(out->data + start, out->len - start);
        out->data[start] = '\0';
    }
    out->len = start;
    return rc;
}
