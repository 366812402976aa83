/*
 * Fuzz target: the PROXY protocol header parser (src/posternd/proxy.h),
 * both versions, the input as the first bytes of a connection.
 *
 * Invariants (abort() on a violation):
 * - a complete header is no longer than the input, at most 107 bytes for
 *   version 1 and 16 + 2048 for version 2, and every shorter prefix of it
 *   is a valid prefix (0) for which proxy_want() reaches no further than
 *   the header (exactly its end for version 2);
 * - a result for a prefix never contradicts the whole: an invalid prefix
 *   stays invalid with more bytes;
 * - a non-local header gives IPv4 or IPv6 addresses of one family.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "proxy.h"

static void
check(enum config_proxy v, const uint8_t *data, size_t size)
{
    struct proxy_hdr h;
    int rc = proxy_parse(v, data, size, &h);
    size_t max = v == CONFIG_PROXY_V1 ? PROXY_V1_MAX : PROXY_HDR_MAX;

    if (rc > 0) {
        if ((size_t)rc > size || (size_t)rc > max)
            abort();
        if (!h.local && (h.src.ss_family != h.dst.ss_family ||
                         (h.src.ss_family != AF_INET &&
                          h.src.ss_family != AF_INET6)))
            abort();
        for (size_t n = 1; n < (size_t)rc; n++) {
            size_t want = proxy_want(v, data, n);

            if (proxy_parse(v, data, n, &h) != 0 || want == 0)
                abort();
            if (v == CONFIG_PROXY_V2 && n >= 16 && n + want != (size_t)rc)
                abort();
            if (v == CONFIG_PROXY_V2 && n + want > (size_t)rc)
                abort();
            if (v == CONFIG_PROXY_V1 && n + want > PROXY_V1_MAX)
                abort();
        }
        if (proxy_want(v, data, (size_t)rc) != 0)
            abort();
    } else if (rc < 0) {
        if (proxy_want(v, data, size) != 0)
            abort();
    } else if (size > 0 && proxy_want(v, data, size) == 0) {
        abort();
    }
    /* A prefix that was invalid cannot become valid. */
    for (size_t n = 1; n < size && n < 128; n++)
        if (proxy_parse(v, data, n, &h) < 0 && rc >= 0)
            abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(CONFIG_PROXY_V1, data, size);
    check(CONFIG_PROXY_V2, data, size);
    return 0;
}
