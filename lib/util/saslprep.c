/*
 * SASLprep (RFC 4013) through GNU libidn's stringprep, rather than by hand.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <stringprep.h>

#include "../internal.h"

/*
 * Whether SASLprep leaves in[0..len) as it is because every octet is
 * printable ASCII, %x20-7E: RFC 4013 §2.1 maps none of them (the
 * non-ASCII spaces and table B.1 are all above U+007F), NFKC (§2.2)
 * changes none, §2.3 prohibits none (C.1.1, the ASCII space, is not in
 * its list; C.2.1's ASCII controls are outside the range), none is
 * RandALCat (§2.4), and all are assigned in Unicode 3.2 (§2.5).  Most
 * names and passwords are such strings, and libidn's stringprep costs
 * tens of thousands of instructions even for them (a SCRAM client
 * SASLpreps two strings a login).
 */
static int
saslprep_is_identity(const uint8_t *in, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (in[i] < 0x20 || in[i] > 0x7e)
            return 0;
    return len > 0;
}

int
pst__saslprep(const uint8_t *in, size_t len, int stored, struct pst_buf *out)
{
    char *tmp, *res = NULL;
    int rc;

    if (saslprep_is_identity(in, len))
        return pst_buf_append(out, in, len);
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
