/*
 * DIGEST-MD5 (RFC 2831) messages: printing (digest_md5_parse.c parses and
 * validates them), and the names of the qop and cipher values.
 */
#include <string.h>

#include "mech.h"

const struct pst__digest_token_bit
    pst__digest_qop_names[PST__DIGEST_NQOPS] = {
    {"auth", PST__DIGEST_QOP_AUTH},
    {"auth-int", PST__DIGEST_QOP_AUTH_INT},
    {"auth-conf", PST__DIGEST_QOP_AUTH_CONF},
};

/* cipher-value = "3des" | "des" | "rc4-40" | "rc4" | "rc4-56" | token
 * (RFC 2831 §2.1.1). */
const struct pst__digest_token_bit
    pst__digest_cipher_names[PST__DIGEST_NCIPHERS] = {
    {"3des", PST__DIGEST_CIPHER_3DES},
    {"des", PST__DIGEST_CIPHER_DES},
    {"rc4-40", PST__DIGEST_CIPHER_RC4_40},
    {"rc4", PST__DIGEST_CIPHER_RC4},
    {"rc4-56", PST__DIGEST_CIPHER_RC4_56},
};

/* CTL = <any US-ASCII control character (octets 0 - 31) and DEL (127)>
 * (RFC 2831 §7.2) */
static int
digest_is_ctl(uint8_t c)
{
    return c < 0x20 || c == 0x7f;
}

/* name="value", with '"' and '\' escaped (RFC 2831 §7.2 quoted-pair). */
static int
digest_put_quoted(struct pst_buf *out, const char *name, const char *v,
                  size_t len)
{
    int rc;

    if ((rc = pst_buf_append_str(out, name)) < 0 ||
        (rc = pst_buf_append_str(out, "=\"")) < 0)
        return rc;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)v[i];

        /* qdtext is TEXT: a control character cannot be sent. */
        if (digest_is_ctl(c) && c != '\t')
            return PST_EINVAL;
        if ((c == '"' || c == '\\') &&
            (rc = pst_buf_append_byte(out, '\\')) < 0)
            return rc;
        if ((rc = pst_buf_append_byte(out, c)) < 0)
            return rc;
    }
    return pst_buf_append_byte(out, '"');
}

/* name="a,b,c" of the table's tokens whose bits are set. */
static int
digest_put_list(struct pst_buf *out, const char *name,
                const struct pst__digest_token_bit *table, size_t n,
                unsigned bits)
{
    const char *sep = "";
    int rc;

    if ((rc = pst_buf_printf(out, ",%s=\"", name)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!(bits & table[i].bit))
            continue;
        if ((rc = pst_buf_printf(out, "%s%s", sep, table[i].name)) < 0)
            return rc;
        sep = ",";
    }
    return pst_buf_append_byte(out, '"');
}

int
pst__digest_print_challenge(struct pst_buf *out,
                            const struct pst__digest_offer *o)
{
    int rc;

    /* RFC 2831 §2.1.1, in the order of the §4 example but for charset:
     * algorithm is a bare token, as its grammar has it (curl refuses a
     * quoted one, INTEROP.md).  maxbuf and cipher only where they mean
     * something. */
    if ((rc = digest_put_quoted(out, "realm", o->realm,
                                strlen(o->realm))) < 0 ||
        (rc = pst_buf_append_byte(out, ',')) < 0 ||
        (rc = digest_put_quoted(out, "nonce", o->nonce,
                                strlen(o->nonce))) < 0 ||
        (rc = digest_put_list(out, "qop", pst__digest_qop_names,
                              PST__DIGEST_NQOPS,
                              o->qops)) < 0)
        return rc;
    if ((o->qops & ~PST__DIGEST_QOP_AUTH) &&
        o->maxbuf != PST__DIGEST_DEFAULT_MAXBUF &&
        (rc = pst_buf_printf(out, ",maxbuf=%u", o->maxbuf)) < 0)
        return rc;
    if ((o->qops & PST__DIGEST_QOP_AUTH_CONF) &&
        (rc = digest_put_list(out, "cipher", pst__digest_cipher_names,
                              PST__DIGEST_NCIPHERS,
                              o->ciphers)) < 0)
        return rc;
    return pst_buf_append_str(out, ",charset=utf-8,algorithm=md5-sess");
}

const char *
pst__digest_qop_name(unsigned qop)
{
    for (size_t i = 0; i < PST__DIGEST_NQOPS; i++)
        if (pst__digest_qop_names[i].bit == qop)
            return pst__digest_qop_names[i].name;
    return "auth";
}

const char *
pst__digest_cipher_name(unsigned cipher)
{
    for (size_t i = 0; i < PST__DIGEST_NCIPHERS; i++)
        if (pst__digest_cipher_names[i].bit == cipher)
            return pst__digest_cipher_names[i].name;
    return NULL;
}

int
pst__digest_print_response(struct pst_buf *out,
                           const struct pst__digest_response *r)
{
    int rc;

    /* The order of the RFC 2831 §4 example; authzid last. */
    if ((r->utf8 && (rc = pst_buf_append_str(out, "charset=utf-8,")) < 0) ||
        (rc = digest_put_quoted(out, "username", r->username.s,
                                r->username.len)) < 0)
        return rc;
    if (r->has_realm &&
        ((rc = pst_buf_append_byte(out, ',')) < 0 ||
         (rc = digest_put_quoted(out, "realm", r->realm.s,
                                 r->realm.len)) < 0))
        return rc;
    if ((rc = pst_buf_append_byte(out, ',')) < 0 ||
        (rc = digest_put_quoted(out, "nonce", r->nonce.s,
                                r->nonce.len)) < 0 ||
        (rc = pst_buf_printf(out, ",nc=%s,", r->nc.s)) < 0 ||
        (rc = digest_put_quoted(out, "cnonce", r->cnonce.s,
                                r->cnonce.len)) < 0 ||
        (rc = pst_buf_append_byte(out, ',')) < 0 ||
        (rc = digest_put_quoted(out, "digest-uri", r->digest_uri.s,
                                r->digest_uri.len)) < 0 ||
        (rc = pst_buf_printf(out, ",response=%s,qop=%s", r->response.s,
                             pst__digest_qop_name(r->qop))) < 0)
        return rc;
    if (r->has_maxbuf &&
        (rc = pst_buf_printf(out, ",maxbuf=%u", r->maxbuf)) < 0)
        return rc;
    if (r->qop == PST__DIGEST_QOP_AUTH_CONF &&
        (rc = pst_buf_printf(out, ",cipher=%s",
                             pst__digest_cipher_name(r->cipher))) < 0)
        return rc;
    if (r->has_authzid &&
        ((rc = pst_buf_append_byte(out, ',')) < 0 ||
         (rc = digest_put_quoted(out, "authzid", r->authzid.s,
                                 r->authzid.len)) < 0))
        return rc;
    return 0;
}

int
pst__digest_print_finish(struct pst_buf *out, const char *rspauth)
{
    /* response-auth = "rspauth" "=" response-value (RFC 2831 §2.1.3) */
    return pst_buf_printf(out, "rspauth=%s", rspauth);
}
