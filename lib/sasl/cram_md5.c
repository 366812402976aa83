/* CRAM-MD5: not yet implemented (stub). */
#include "mech.h"

static int
cram_md5_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                 struct pst_buf *out)
{
    (void)c, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static int
cram_md5_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                 struct pst_buf *out)
{
    (void)s, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static const struct pst_sasl_client_ops cram_md5_client = {
    .step = cram_md5_client_step,
};

static const struct pst_sasl_server_ops cram_md5_server = {
    .step = cram_md5_server_step,
};

const struct pst_sasl_mech pst__mech_cram_md5 = {
    .name = "CRAM-MD5",
    .flags = 0u,
    .client = &cram_md5_client,
    .server = &cram_md5_server,
};
