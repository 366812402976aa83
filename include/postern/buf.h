/*
 * postern - growable byte buffers with a ceiling.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <postern/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A growable buffer.  Its ceiling is fixed at init: appending past it fails
 * with PST_ELIMIT and leaves the buffer as it was.  The bytes are always
 * followed by a NUL that is not counted in len, so text can be used as a C
 * string, but data may contain NULs.  A secret buffer is wiped
 * (OPENSSL_cleanse) whenever its memory is released or reused.
 */
struct pst_buf {
    uint8_t *data;   /* NULL until the first append */
    size_t   len;    /* bytes in use */
    size_t   cap;    /* bytes allocated (excluding the NUL) */
    size_t   max;    /* ceiling for len */
    unsigned secret; /* wipe on reset, clear and growth */
};

/* Initialise b empty with ceiling max; secret != 0 makes it a secret buffer. */
PST_EXTERN void pst_buf_init(struct pst_buf *b, size_t max, int secret);

/* Release b's memory (wiping it if secret); b may be initialised again. */
PST_EXTERN void pst_buf_clear(struct pst_buf *b);

/* Empty b, keeping its memory (wiped if secret). */
PST_EXTERN void pst_buf_reset(struct pst_buf *b);

/*
 * Give back memory b does not use: when more than keep bytes are allocated,
 * move the contents to an allocation of max(len, keep) bytes, or release
 * the memory altogether when that is 0 (data becomes NULL, as after init).
 * The ceiling stays; a secret buffer's old memory is wiped before it is
 * released.
 * Returns: 0, PST_ENOMEM (b is left as it was; only when len or keep > 0).
 */
PST_EXTERN int pst_buf_shrink(struct pst_buf *b, size_t keep);

/*
 * Append len bytes from p ([in] borrowed).
 * Returns: 0, PST_ELIMIT (would pass the ceiling), PST_ENOMEM.
 */
PST_EXTERN int pst_buf_append(struct pst_buf *b, const void *p, size_t len);

/* Append the C string s.  Returns: as pst_buf_append(). */
PST_EXTERN int pst_buf_append_str(struct pst_buf *b, const char *s);

/* Append one byte.  Returns: as pst_buf_append(). */
PST_EXTERN int pst_buf_append_byte(struct pst_buf *b, uint8_t c);

/*
 * Append formatted text.
 * Returns: 0, PST_ELIMIT, PST_ENOMEM, PST_EINVAL (bad format).
 */
PST_EXTERN int pst_buf_printf(struct pst_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append lowercase hex of len bytes from p.  Returns: as pst_buf_append(). */
PST_EXTERN int pst_buf_append_hex(struct pst_buf *b, const uint8_t *p,
                                  size_t len);

#ifdef __cplusplus
}
#endif
#endif
