#include <limits.h>

#include <openssl/rand.h>

#include "../internal.h"

int
pst_random_default(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;

        if (RAND_bytes(buf, n) != 1)
            return PST_ETEMP;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int
pst__random(pst_random_fn rnd, void *ctx, uint8_t *buf, size_t len)
{
    int rc;

    if (rnd == NULL)
        return pst_random_default(NULL, buf, len);
    rc = rnd(ctx, buf, len);
    return rc < 0 ? rc : 0;
}
