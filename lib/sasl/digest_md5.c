/* DIGEST-MD5: not yet implemented (stub). */
#include "mech.h"

static int
digest_md5_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                 struct pst_buf *out)
{
    (void)c, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static int
digest_md5_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                 struct pst_buf *out)
{
    (void)s, (void)in, (void)len, (void)out;
    return PST_ENOTSUP;
}

static const struct pst_sasl_client_ops digest_md5_client = {
    .step = digest_md5_client_step,
};

static const struct pst_sasl_server_ops digest_md5_server = {
    .step = digest_md5_server_step,
};

const struct pst_sasl_mech pst__mech_digest_md5 = {
    .name = "DIGEST-MD5",
    .flags = PST_MECH_SERVER_PROOF | PST_MECH_HISTORIC,
    .client = &digest_md5_client,
    .server = &digest_md5_server,
};
