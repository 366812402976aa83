/*
 * PLAIN, RFC 4616: message = [authzid] NUL authcid NUL passwd.
 */
#include <string.h>

#include "mech.h"

/* --- Client half --------------------------------------------------------- */

static int
plain_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    int rc;

    (void)in;
    (void)len;
    /* The message is the initial response, or the answer to the server's
     * (empty) challenge when the client sent none. */
    if (c->steps > 0)
        return PST_ESTATE;
    if ((rc = pst_buf_append(out, c->authzid.data, c->authzid.len)) < 0 ||
        (rc = pst_buf_append_byte(out, 0)) < 0 ||
        (rc = pst_buf_append(out, c->authcid.data, c->authcid.len)) < 0 ||
        (rc = pst_buf_append_byte(out, 0)) < 0 ||
        (rc = pst_buf_append(out, c->password.data, c->password.len)) < 0)
        return rc;
    return PST_SASL_CONTINUE;
}

/* --- Server half --------------------------------------------------------- */

enum plain_server_state {
    PLAIN_S_START = 0,  /* nothing received */
    PLAIN_S_CHALLENGED, /* sent the empty challenge */
    PLAIN_S_LOOKUP,     /* waiting for credentials */
    PLAIN_S_VERIFY,     /* waiting for the verdict */
};

struct plain_server {
    enum plain_server_state state;
};

static int
plain_server_parse(struct pst_sasl_server *s, const uint8_t *in, size_t len)
{
    const uint8_t *nul1, *nul2, *authcid, *pw;
    size_t zlen, clen, plen;
    int rc;

    /* RFC 4616 §2: exactly two NULs; authcid and passwd non-empty. */
    nul1 = memchr(in, 0, len);
    if (nul1 == NULL)
        return pst__sasl_fail(s, PST_EPROTO, "PLAIN: no NUL separator");
    zlen = (size_t)(nul1 - in);
    authcid = nul1 + 1;
    nul2 = memchr(authcid, 0, len - zlen - 1);
    if (nul2 == NULL)
        return pst__sasl_fail(s, PST_EPROTO, "PLAIN: one NUL separator");
    clen = (size_t)(nul2 - authcid);
    pw = nul2 + 1;
    plen = len - zlen - clen - 2;
    if (memchr(pw, 0, plen) != NULL)
        return pst__sasl_fail(s, PST_EPROTO, "PLAIN: too many NULs");
    if (clen == 0)
        return pst__sasl_fail(s, PST_EPROTO, "PLAIN: empty authcid");
    if (plen == 0)
        return pst__sasl_fail(s, PST_EPROTO, "PLAIN: empty password");
    if (!pst__utf8_valid(pw, plen))
        return pst__sasl_fail(s, PST_EPROTO, "PLAIN: password not UTF-8");
    if ((rc = pst__sasl_set_authcid(s, authcid, clen, 0)) < 0 ||
        (rc = pst__sasl_set_authzid(s, in, zlen, 0)) < 0 ||
        (rc = pst__sasl_set_password(s, pw, plen)) < 0)
        return rc;
    return 0;
}

static int
plain_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct plain_server *st = s->state;
    int rc;

    (void)out;
    switch (st->state) {
    case PLAIN_S_START:
        if (in == NULL) {
            /* No initial response: ask with an empty challenge. */
            st->state = PLAIN_S_CHALLENGED;
            return PST_SASL_CONTINUE;
        }
        /* fall through */
    case PLAIN_S_CHALLENGED:
        if (in == NULL)
            return PST_ESTATE;
        if ((rc = plain_server_parse(s, in, len)) < 0)
            return rc;
        st->state = PLAIN_S_LOOKUP;
        return PST_SASL_NEED_CRED;
    case PLAIN_S_LOOKUP:
        if (in != NULL)
            return PST_ESTATE;
        /* Unknown users are verified too (against nothing), so they take
         * the same path and time as a wrong password. */
        st->state = PLAIN_S_VERIFY;
        return PST_SASL_NEED_VERIFY;
    case PLAIN_S_VERIFY:
        if (in != NULL)
            return PST_ESTATE;
        if (s->cred == NULL)
            return pst__sasl_fail(s, PST_EAUTH, "unknown user");
        if (!s->verified)
            return pst__sasl_fail(s, PST_EAUTH, "password mismatch");
        return PST_SASL_DONE;
    }
    return PST_ESTATE;
}

static const struct pst_sasl_client_ops plain_client = {
    .state_size = 0,
    .step = plain_client_step,
};

static const struct pst_sasl_server_ops plain_server = {
    .state_size = sizeof(struct plain_server),
    .step = plain_server_step,
};

const struct pst_sasl_mech pst__mech_plain = {
    .name = "PLAIN",
    .flags = PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST,
    .client = &plain_client,
    .server = &plain_server,
};
