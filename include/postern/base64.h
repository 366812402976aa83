/*
 * postern - strict base64 (RFC 4648 §4).
 */
#ifndef POSTERN_BASE64_H
#define POSTERN_BASE64_H

#include <postern/buf.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Encoded length of n bytes (with padding, without a NUL). */
#define PST_BASE64_ENCLEN(n) ((((n) + 2) / 3) * 4)

/*
 * Append the base64 encoding (standard alphabet, padded) of in ([in]
 * borrowed) to out.
 * Returns: 0, PST_ELIMIT, PST_ENOMEM.
 */
PST_EXTERN int pst_base64_encode(const uint8_t *in, size_t len,
                                 struct pst_buf *out);

/*
 * Append the bytes encoded by in ([in] borrowed) to out.  Strict: the
 * length must be a multiple of 4, only the standard alphabet is allowed
 * (no whitespace, no URL-safe characters), "=" only as one or two final
 * padding characters, and the unused bits before the padding must be zero
 * (RFC 4648 §3.5 canonical encoding).  An empty input decodes to nothing.
 * On error out is left as it was.
 * Returns: 0, PST_EPROTO (not valid base64), PST_ELIMIT, PST_ENOMEM.
 */
PST_EXTERN int pst_base64_decode(const uint8_t *in, size_t len,
                                 struct pst_buf *out);

#ifdef __cplusplus
}
#endif
#endif
