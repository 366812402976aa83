/* LOGIN: not yet implemented (stub). */
#include "mech.h"

static int
login_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                 struct pst_buf *out)
{
    (void)c, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static int
login_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                 struct pst_buf *out)
{
    (void)s, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static const struct pst_sasl_client_ops login_client = {
    .step = login_client_step,
};

static const struct pst_sasl_server_ops login_server = {
    .step = login_server_step,
};

const struct pst_sasl_mech pst__mech_login = {
    .name = "LOGIN",
    .flags = PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST,
    .client = &login_client,
    .server = &login_server,
};
