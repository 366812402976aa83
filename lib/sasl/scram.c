/* SCRAM-SHA-1, SCRAM-SHA-256: not yet implemented (stub). */
#include "mech.h"

static int
scram_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    (void)c, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static int
scram_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    (void)s, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static const struct pst_sasl_client_ops scram_client = {
    .step = scram_client_step,
};

static const struct pst_sasl_server_ops scram_server = {
    .step = scram_server_step,
};

const struct pst_sasl_mech pst__mech_scram_sha1 = {
    .name = "SCRAM-SHA-1",
    .flags = PST_MECH_CLIENT_FIRST | PST_MECH_SERVER_PROOF,
    .client = &scram_client,
    .server = &scram_server,
};

const struct pst_sasl_mech pst__mech_scram_sha256 = {
    .name = "SCRAM-SHA-256",
    .flags = PST_MECH_CLIENT_FIRST | PST_MECH_SERVER_PROOF,
    .client = &scram_client,
    .server = &scram_server,
};
