/*
 * postern - the source of random bytes.
 */
#ifndef POSTERN_RAND_H
#define POSTERN_RAND_H

#include <stddef.h>
#include <stdint.h>

#include <postern/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Fill len bytes of buf with random bytes.  Returns 0 or a negative PST_E*.
 * Wherever a config takes one, NULL means pst_random_default().  Tests
 * inject fixed bytes so that RFC vectors reproduce.
 */
typedef int (*pst_random_fn)(void *ctx, uint8_t *buf, size_t len);

/* RAND_bytes() from OpenSSL.  Returns: 0, PST_ETEMP (no entropy). */
PST_EXTERN int pst_random_default(void *ctx, uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
