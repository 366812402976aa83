/*
 * EXTERNAL, RFC 4422 Appendix A: the client is authenticated outside SASL
 * (here: by its TLS client certificate) and sends only the authorization
 * identity it wants, possibly empty ("act as whoever the certificate
 * says").
 *
 *   C: [authzid]          (SMTP sends "AUTH EXTERNAL =" for an empty one;
 *   S: (235 / 535)         that "=" is the SMTP layer's business)
 *
 * The server half does no certificate work: the driver maps the
 * certificate to a user (cert_user) before the exchange and passes it as
 * pst_sasl_server_config.external_id.  The exchange then asks for that
 * user's credentials with NEED_CRED, like every other mechanism, so an
 * unknown or removed user fails like a wrong password would.
 */
#include <string.h>

#include "mech.h"

/* --- Client half --------------------------------------------------------- */

static int
external_client_step(struct pst_sasl_client *c, const uint8_t *in,
                     size_t len, struct pst_buf *out)
{
    /* The message is the initial response, or the answer to the server's
     * empty challenge when the client sent none (RFC 4954 §4).  After it
     * the server only says yes or no. */
    if (c->steps > 0 || (in != NULL && len > 0))
        return PST_EPROTO;
    return pst_buf_append(out, c->authzid.data, c->authzid.len) < 0
               ? PST_ENOMEM
               : PST_SASL_CONTINUE;
}

/* --- Server half --------------------------------------------------------- */

enum external_server_state {
    EXTERNAL_S_START = 0,  /* nothing received */
    EXTERNAL_S_CHALLENGED, /* sent the empty challenge */
    EXTERNAL_S_LOOKUP,     /* the mapped user's credentials awaited */
};

struct external_server {
    enum external_server_state state;
};

/*
 * RFC 4422 App. A: the server "verifies that the client is authorized to
 * act as" the authzid.  postern's rule is the simple one: no authzid, or
 * the certificate's own identity; proxying is not offered.
 */
static int
external_server_take(struct pst_sasl_server *s, const uint8_t *in,
                     size_t len)
{
    const char *id = s->cfg.external_id;
    size_t id_len = id != NULL ? strlen(id) : 0;
    int rc;

    if (len > PST_SASL_MAX_NAME)
        return pst__sasl_fail(s, PST_ELIMIT, "EXTERNAL: authzid too long");
    if (memchr(in, '\0', len) != NULL || !pst__utf8_valid(in, len))
        return pst__sasl_fail(s, PST_EPROTO, "EXTERNAL: authzid is not "
                                             "UTF-8 without NUL");
    if (id_len == 0)
        return pst__sasl_fail(s, PST_EAUTH, "EXTERNAL: no client "
                                            "certificate identity");
    if ((rc = pst__sasl_set_authcid(s, (const uint8_t *)id, id_len, 0)) < 0)
        return pst__sasl_fail(s, PST_EAUTH, "EXTERNAL: unusable "
                                            "certificate identity");
    if (len > 0 &&
        (len != id_len ||
         memcmp(in, id, len) != 0)) /* not secret: both are names */
        return pst__sasl_fail(s, PST_EAUTH, "EXTERNAL: authzid is not the "
                                            "certificate's identity");
    return 0;
}

static int
external_server_step(struct pst_sasl_server *s, const uint8_t *in,
                     size_t len, struct pst_buf *out)
{
    struct external_server *st = s->state;
    int rc;

    (void)out;
    switch (st->state) {
    case EXTERNAL_S_START:
        if (in == NULL) {
            /* No initial response: ask with an empty challenge. */
            st->state = EXTERNAL_S_CHALLENGED;
            return PST_SASL_CONTINUE;
        }
        /* fall through */
    case EXTERNAL_S_CHALLENGED:
        if (in == NULL)
            return PST_ESTATE;
        if ((rc = external_server_take(s, in, len)) < 0)
            return rc;
        st->state = EXTERNAL_S_LOOKUP;
        return PST_SASL_NEED_CRED;
    case EXTERNAL_S_LOOKUP:
        if (in != NULL)
            return PST_ESTATE;
        if (s->cred == NULL)
            return pst__sasl_fail(s, PST_EAUTH, "unknown user");
        return PST_SASL_DONE;
    }
    return PST_ESTATE;
}

static const struct pst_sasl_client_ops external_client = {
    .state_size = 0,
    .step = external_client_step,
};

static const struct pst_sasl_server_ops external_server = {
    .state_size = sizeof(struct external_server),
    .step = external_server_step,
};

const struct pst_sasl_mech pst__mech_external = {
    .name = "EXTERNAL",
    .flags = PST_MECH_CLIENT_FIRST | PST_MECH_EXTERNAL,
    .client = &external_client,
    .server = &external_server,
};
