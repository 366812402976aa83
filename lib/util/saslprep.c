/*
 * SASLprep (RFC 4013) through GNU libidn's stringprep, rather than by hand.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <stringprep.h>

#include "../internal.h"

int
pst__saslprep(const uint8_t *in, size_t len, int stored, struct pst_buf *out)
{
    char *tmp, *res = NULL;
    int rc;

    if (!pst__utf8_valid(in, len) || memchr(in, '\0', len) != NULL)
        return PST_EPREP;
    tmp = malloc(len + 1);
    if (tmp == NULL)
        return PST_ENOMEM;
    memcpy(tmp, in, len);
    tmp[len] = '\0';
    /* RFC 4013 §2.5 / RFC 3454 §7: stored strings refuse unassigned code
     * points; queries allow them. */
    rc = stringprep_profile(tmp, &res, "SASLprep",
                            stored ? STRINGPREP_NO_UNASSIGNED : 0);
    OPENSSL_clear_free(tmp, len + 1);
    if (rc != STRINGPREP_OK) {
        if (res != NULL)
            OPENSSL_clear_free(res, strlen(res));
        return rc == STRINGPREP_MALLOC_ERROR ? PST_ENOMEM : PST_EPREP;
    }
    /* RFC 4013 §2: an empty result is not allowed where a name or password
     * is required; callers ask for non-empty input, so refuse it here. */
    if (res[0] == '\0' && len > 0) {
        free(res);
        return PST_EPREP;
    }
    rc = pst_buf_append(out, res, strlen(res));
    OPENSSL_clear_free(res, strlen(res));
    return rc;
}
