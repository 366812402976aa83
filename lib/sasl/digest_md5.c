/*
 * DIGEST-MD5, RFC 2831 (historic since RFC 6331, still spoken by printers
 * and scanners): the server sends a digest-challenge with a nonce, the
 * client answers with a digest-response proving it knows
 * H(user:realm:password), the server proves the same with rspauth, and the
 * client acknowledges with an empty message.  The server offers the
 * qop-options it is configured for (auth by default; auth-int adds the
 * integrity layer of RFC 2831 §2.3, auth-conf the confidentiality layer
 * of §2.4 with the ciphers it is configured for), the client picks the
 * strongest qop and cipher it also accepts; the layer itself (keys, wrap,
 * unwrap) is in digest_md5_layer.c.
 *
 * Parsing, validation and printing of the messages are in
 * digest_md5_parse.c.
 *
 * Character sets (RFC 2831 §2.1.2.1): "The username-value, realm-value and
 * passwd are encoded according to the value of the charset directive.  If
 * charset=UTF-8 is present, and all the characters of either
 * username-value or passwd are in the ISO 8859-1 character set, then it
 * must be converted to ISO 8859-1 before being hashed."  Implementations
 * read that differently; we do what GNU SASL (lib/digest-md5/client.c,
 * server.c) does, so that the two interoperate:
 * - user name and realm are hashed as they travel: UTF-8 with
 *   charset=utf-8, ISO 8859-1 without it (RFC 2831 §2.1.1 "charset");
 * - the password is hashed in ISO 8859-1 whenever all its characters fit,
 *   in UTF-8 otherwise (gsasl's utf8tolatin1ifpossible()).
 * The client does both.  The server never sees a password: it hashes the
 * user name and realm octets as received and gets H(user:realm:passwd)
 * from pst_cred_digest_md5(), whose {PLAIN} path must apply the password
 * rule above; a {DIGEST-MD5} verifier is a stored hash (Dovecot's, made
 * over UTF-8) used as it is.  Users are looked up by the UTF-8 form of the
 * name.  Cyrus SASL converts user name and realm too, so a non-ASCII name
 * that fits ISO 8859-1 fails between Cyrus and us (and GNU SASL); ASCII,
 * what printers and scanners send, agrees everywhere.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <postern/base64.h>

#include "mech.h"

#define DIGEST_MD5_LEN     16      /* MD5 output, octets */
#define DIGEST_NONCE_BYTES 18      /* 144 random bits: 24 base64 chars */
#define DIGEST_MAX_NONCE   64      /* our nonce / cnonce, octets */

static const char digest_nc1[] = "00000001"; /* first authentication */

/* --- The arithmetic (RFC 2831 §2.1.2.1, §2.1.3) -------------------------- */

static void
digest_hex(const uint8_t md[DIGEST_MD5_LEN], char hex[PST__DIGEST_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < DIGEST_MD5_LEN; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    hex[PST__DIGEST_HEX] = '\0';
}

static int
digest_update(EVP_MD_CTX *ctx, const void *p, size_t len)
{
    return EVP_DigestUpdate(ctx, p, len) == 1;
}

static int
digest_update_str(EVP_MD_CTX *ctx, const char *s)
{
    return digest_update(ctx, s, strlen(s));
}

/*
 * HA1 = H(username-value ":" realm-value ":" passwd), for the client and
 * for a server without credentials (the same work, then failure).
 */
static int
digest_ha1(const char *user, size_t user_len, const char *realm,
           const uint8_t *pw, size_t pw_len, uint8_t ha1[DIGEST_MD5_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    if (ctx == NULL)
        return PST_ENOMEM;
    ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         digest_update(ctx, user, user_len) &&
         digest_update_str(ctx, ":") && digest_update_str(ctx, realm) &&
         digest_update_str(ctx, ":") && digest_update(ctx, pw, pw_len) &&
         EVP_DigestFinal_ex(ctx, ha1, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : PST_ENOMEM;
}

/*
 * response-value (rspauth == 0) or the rspauth value (rspauth != 0) of r,
 * as 32 lowercase hex digits, from HA1 (RFC 2831 §2.1.2.1):
 *
 *   A1 = { HA1, ":", nonce, ":", cnonce [, ":", authzid ] }
 *   A2 = { "AUTHENTICATE:", digest-uri }      (rspauth: { ":", digest-uri })
 *        and for qop auth-int or auth-conf
 *        { ..., ":00000000000000000000000000000000" }
 *   HEX( KD( HEX(H(A1)), { nonce, ":", nc, ":", cnonce, ":", qop, ":",
 *                          HEX(H(A2)) } ) )
 *
 * with KD(k, s) = H({k, ":", s}) and H = MD5.  a1 (may be NULL) gets
 * H(A1), the base of the security layer's keys (§2.3, §2.4); secret.
 */
static int
digest_calc(const uint8_t ha1[DIGEST_MD5_LEN],
            const struct pst__digest_response *r, int rspauth,
            char hex[PST__DIGEST_HEX + 1], uint8_t a1[DIGEST_MD5_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t md[DIGEST_MD5_LEN];
    char a1hex[PST__DIGEST_HEX + 1], a2hex[PST__DIGEST_HEX + 1];
    int ok;

    if (ctx == NULL)
        return PST_ENOMEM;
    /* "If authzid is specified, then A1 is ... authzid-value"; an empty
     * one is taken as none (has_authzid is 0), as GNU SASL does. */
    ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         digest_update(ctx, ha1, DIGEST_MD5_LEN) &&
         digest_update_str(ctx, ":") &&
         digest_update(ctx, r->nonce.s, r->nonce.len) &&
         digest_update_str(ctx, ":") &&
         digest_update(ctx, r->cnonce.s, r->cnonce.len) &&
         (!r->has_authzid ||
          (digest_update_str(ctx, ":") &&
           digest_update(ctx, r->authzid.s, r->authzid.len))) &&
         EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    if (ok) {
        digest_hex(md, a1hex);
        if (a1 != NULL)
            memcpy(a1, md, DIGEST_MD5_LEN);
    }
    /* RFC 2831 §2.1.3: rspauth uses A2 without "AUTHENTICATE".
     * §2.1.2.1: "If the "qop" value is "auth-int" or "auth-conf" then"
     * A2 ends in ":00000000000000000000000000000000". */
    ok = ok && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         digest_update_str(ctx, rspauth ? ":" : "AUTHENTICATE:") &&
         digest_update(ctx, r->digest_uri.s, r->digest_uri.len) &&
         (r->qop == PST__DIGEST_QOP_AUTH ||
          digest_update_str(ctx, ":00000000000000000000000000000000")) &&
         EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    if (ok)
        digest_hex(md, a2hex);
    ok = ok && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         digest_update(ctx, a1hex, PST__DIGEST_HEX) &&
         digest_update_str(ctx, ":") &&
         digest_update(ctx, r->nonce.s, r->nonce.len) &&
         digest_update_str(ctx, ":") &&
         digest_update(ctx, r->nc.s, r->nc.len) &&
         digest_update_str(ctx, ":") &&
         digest_update(ctx, r->cnonce.s, r->cnonce.len) &&
         digest_update_str(ctx, ":") &&
         digest_update_str(ctx, pst__digest_qop_name(r->qop)) &&
         digest_update_str(ctx, ":") &&
         digest_update(ctx, a2hex, PST__DIGEST_HEX) &&
         EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    if (ok)
        digest_hex(md, hex);
    EVP_MD_CTX_free(ctx);
    OPENSSL_cleanse(md, sizeof(md));
    OPENSSL_cleanse(a1hex, sizeof(a1hex));
    return ok ? 0 : PST_ENOMEM;
}

/* A fresh nonce: base64 of DIGEST_NONCE_BYTES random octets (no padding
 * at this length; RFC 2831 §2.1.1 wants it opaque and unpredictable). */
static int
digest_make_nonce(pst_random_fn rnd, void *rnd_ctx,
                  char nonce[DIGEST_MAX_NONCE + 1], size_t *len)
{
    uint8_t raw[DIGEST_NONCE_BYTES];
    struct pst_buf b;
    int rc;

    if (pst__random(rnd, rnd_ctx, raw, sizeof(raw)) < 0) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return PST_ETEMP;
    }
    pst_buf_init(&b, DIGEST_MAX_NONCE, 0);
    rc = pst_base64_encode(raw, sizeof(raw), &b);
    if (rc == 0) {
        memcpy(nonce, b.data, b.len);
        nonce[b.len] = '\0';
        *len = b.len;
    }
    pst_buf_clear(&b);
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

/* A test hook's nonce: 1..64 printable ASCII octets. */
static int
digest_hook_nonce(const char *v, char nonce[DIGEST_MAX_NONCE + 1],
                  size_t *len)
{
    size_t n = v != NULL ? strlen(v) : 0;

    if (n == 0 || n > DIGEST_MAX_NONCE)
        return PST_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x21 || v[i] > 0x7e)
            return PST_EINVAL;
    memcpy(nonce, v, n + 1);
    *len = n;
    return 0;
}

/* --- Client half --------------------------------------------------------- */

enum digest_client_state {
    DIGEST_C_START = 0,   /* nothing sent */
    DIGEST_C_WAIT,        /* said "no initial response"; want the challenge */
    DIGEST_C_ANSWERED,    /* sent the digest-response; want rspauth */
    DIGEST_C_VERIFIED,    /* the server proved itself */
};

struct digest_client {
    enum digest_client_state state;
    unsigned qops;                     /* acceptable (config) */
    unsigned maxbuf;                   /* ours (config) */
    unsigned ciphers;                  /* acceptable and available */
    uint8_t a1[DIGEST_MD5_LEN];        /* H(A1) for the layer; secret */
    int layer_taken;
    char cnonce[DIGEST_MAX_NONCE + 1];
    size_t cnonce_len;                 /* 0: draw one at the challenge */
    char rspauth[PST__DIGEST_HEX + 1]; /* the value the server must send */
    struct pst__digest_challenge chal;
    struct pst__digest_response resp;
};

/* Copy p[0..len) into a directive value.  Returns: 0, PST_ELIMIT. */
static int
digest_set_value(struct pst__digest_value *v, const void *p, size_t len)
{
    if (len > PST__DIGEST_MAX_VALUE)
        return PST_ELIMIT;
    memcpy(v->s, p, len);
    v->s[len] = '\0';
    v->len = len;
    return 0;
}

/* The strongest of the qops (conf, int, auth), or 0 for none. */
static unsigned
digest_pick_qop(unsigned qops)
{
    static const unsigned order[] = {
        PST__DIGEST_QOP_AUTH_CONF, PST__DIGEST_QOP_AUTH_INT,
        PST__DIGEST_QOP_AUTH,
    };

    for (size_t i = 0; i < PST__ARRAY_LEN(order); i++)
        if (qops & order[i])
            return order[i];
    return 0;
}

/* Fill st->resp from the challenge and compute HA1. */
static int
digest_client_prepare(struct pst_sasl_client *c, struct digest_client *st,
                      uint8_t ha1[DIGEST_MD5_LEN])
{
    struct pst__digest_response *r = &st->resp;
    uint8_t user[PST_SASL_MAX_NAME];
    uint8_t pw[PST_SASL_MAX_PASSWORD];
    const uint8_t *pwp = c->password.data;
    size_t user_len = 0, pw_len = c->password.len;
    int rc;

    memset(r, 0, sizeof(*r));
    if (c->host.len == 0)
        return PST_EINVAL;      /* no host for the digest-uri */
    r->utf8 = st->chal.utf8;
    if (r->utf8) {
        rc = digest_set_value(&r->username, c->authcid.data,
                              c->authcid.len);
    } else {
        /* No charset=utf-8: the server reads ISO 8859-1 (RFC 2831
         * §2.1.1 "charset"); a name it cannot carry cannot be sent. */
        rc = pst__digest_utf8_to_latin1(c->authcid.data, c->authcid.len,
                                        user, sizeof(user), &user_len);
        if (rc == 0)
            rc = digest_set_value(&r->username, user, user_len);
    }
    /* The password in ISO 8859-1 if it fits (see the top of the file). */
    if (pst__digest_utf8_to_latin1(c->password.data, c->password.len, pw,
                                   sizeof(pw), &pw_len) == 0)
        pwp = pw;
    else
        pw_len = c->password.len;
    if (rc < 0)
        goto out;
    /* realm: "the client SHOULD" answer with one the server offered; we
     * take the first.  None offered: leave it out, and "realm-value will
     * set to the empty string when computing A1" (RFC 2831 §2.1.2), as
     * GNU SASL and most clients do. */
    if (st->chal.nrealms > 0) {
        digest_set_value(&r->realm, st->chal.realm.s, st->chal.realm.len);
        r->has_realm = 1;
    }
    digest_set_value(&r->nonce, st->chal.nonce.s, st->chal.nonce.len);
    if (st->cnonce_len == 0 &&
        (rc = digest_make_nonce(c->random, c->random_ctx, st->cnonce,
                                &st->cnonce_len)) < 0)
        goto out;
    digest_set_value(&r->cnonce, st->cnonce, st->cnonce_len);
    digest_set_value(&r->nc, digest_nc1, sizeof(digest_nc1) - 1);
    /* qop: "MUST be one of the alternatives the server offered"; the
     * strongest this client also accepts (auth-conf only with a cipher
     * both take). */
    r->cipher = pst__digest_pick_cipher(st->chal.ciphers & st->ciphers);
    r->qop = digest_pick_qop(st->chal.qops & st->qops &
                             (r->cipher != 0 ? ~0u
                                             : ~PST__DIGEST_QOP_AUTH_CONF));
    if (r->qop == 0) {
        rc = PST_ENOTSUP;
        goto out;
    }
    /* maxbuf: our receive limit, when a layer makes it mean something
     * and it is not the default. */
    if (r->qop != PST__DIGEST_QOP_AUTH &&
        st->maxbuf != PST__DIGEST_DEFAULT_MAXBUF) {
        r->maxbuf = st->maxbuf;
        r->has_maxbuf = 1;
    }
    if (r->qop != PST__DIGEST_QOP_AUTH_CONF)
        r->cipher = 0;
    /* digest-uri = serv-type "/" host (RFC 2831 §2.1.2; "smtp", RFC 4954
     * §4). */
    if (c->service.len + 1 + c->host.len > PST__DIGEST_MAX_VALUE) {
        rc = PST_ELIMIT;
        goto out;
    }
    memcpy(r->digest_uri.s, c->service.data, c->service.len);
    r->digest_uri.s[c->service.len] = '/';
    memcpy(r->digest_uri.s + c->service.len + 1, c->host.data, c->host.len);
    r->digest_uri.len = c->service.len + 1 + c->host.len;
    r->digest_uri.s[r->digest_uri.len] = '\0';
    /* authzid is UTF-8 whatever the charset (RFC 2831 §2.1.2). */
    if (c->authzid.len > 0) {
        digest_set_value(&r->authzid, c->authzid.data, c->authzid.len);
        r->has_authzid = 1;
    }
    rc = digest_ha1(r->username.s, r->username.len,
                    r->has_realm ? r->realm.s : "", pwp, pw_len, ha1);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;
}

/* The challenge: answer it with a digest-response. */
static int
digest_client_answer(struct pst_sasl_client *c, struct digest_client *st,
                     const uint8_t *in, size_t len, struct pst_buf *out)
{
    uint8_t ha1[DIGEST_MD5_LEN];
    const char *why = NULL;
    int rc;

    rc = pst__digest_parse_challenge(in, len, &st->chal, &why);
    if (rc < 0)
        return rc;
    if ((rc = digest_client_prepare(c, st, ha1)) < 0 ||
        (rc = digest_calc(ha1, &st->resp, 0, st->resp.response.s,
                          st->a1)) < 0 ||
        (rc = digest_calc(ha1, &st->resp, 1, st->rspauth, NULL)) < 0)
        goto out;
    st->resp.response.len = PST__DIGEST_HEX;
    if ((rc = pst__digest_print_response(out, &st->resp)) < 0)
        goto out;
    st->state = DIGEST_C_ANSWERED;
    rc = PST_SASL_CONTINUE;
out:
    OPENSSL_cleanse(ha1, sizeof(ha1));
    return rc;
}

/* The response-auth: check the server's proof (RFC 2831 §2.1.3). */
static int
digest_client_verify(struct digest_client *st, const uint8_t *in,
                     size_t len)
{
    char got[PST__DIGEST_HEX + 1];
    const char *why = NULL;
    int rc, eq;

    rc = pst__digest_parse_finish(in, len, got, &why);
    if (rc < 0)
        return rc;
    eq = CRYPTO_memcmp(got, st->rspauth, PST__DIGEST_HEX) == 0;
    OPENSSL_cleanse(st->rspauth, sizeof(st->rspauth));
    if (!eq)
        return PST_EFORGED;
    st->state = DIGEST_C_VERIFIED;
    /* The client's answer to rspauth is empty (RFC 4954 §4 has no
     * "additional data with success"). */
    return PST_SASL_DONE;
}

static int
digest_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                   struct pst_buf *out)
{
    struct digest_client *st = c->state;

    switch (st->state) {
    case DIGEST_C_START:
        if (in == NULL) {
            /* RFC 4954 §4: the server speaks first; send no initial
             * response (an empty out). */
            st->state = DIGEST_C_WAIT;
            return PST_SASL_CONTINUE;
        }
        return digest_client_answer(c, st, in, len, out);
    case DIGEST_C_WAIT:
        if (in == NULL)
            return PST_ESTATE;
        return digest_client_answer(c, st, in, len, out);
    case DIGEST_C_ANSWERED:
        if (in == NULL)
            return PST_ESTATE;
        return digest_client_verify(st, in, len);
    case DIGEST_C_VERIFIED:
        return PST_ESTATE;
    }
    return PST_ESTATE;
}

/* The client's layer, once the server has proved itself. */
static int
digest_client_layer(struct pst_sasl_client *c, struct pst_sasl_layer **out)
{
    struct digest_client *st = c->state;
    int rc;

    if (st->state != DIGEST_C_VERIFIED || st->layer_taken)
        return PST_ESTATE;
    st->layer_taken = 1;
    if (st->resp.qop == PST__DIGEST_QOP_AUTH)
        rc = 0;
    else
        rc = pst__digest_layer_new(st->a1, st->resp.qop, st->resp.cipher, 1,
                                   st->chal.maxbuf, st->maxbuf, out);
    OPENSSL_cleanse(st->a1, sizeof(st->a1));
    return rc;
}

/* The qops and maxbuf the client accepts. */
static int
digest_client_init(struct pst_sasl_client *c,
                   const struct pst_sasl_client_config *cfg)
{
    struct digest_client *st = c->state;

    st->qops = cfg->digest_qops != 0 ? cfg->digest_qops
                                     : PST__DIGEST_QOP_AUTH;
    st->maxbuf = cfg->digest_maxbuf != 0 ? cfg->digest_maxbuf
                                         : PST__DIGEST_DEFAULT_MAXBUF;
    st->ciphers = cfg->digest_ciphers;
    return pst__digest_check_config(st->qops, st->maxbuf, &st->ciphers);
}

static int
digest_client_finish(const struct pst_sasl_client *c)
{
    const struct digest_client *st = c->state;

    /* PST_MECH_SERVER_PROOF: success without rspauth is a server that
     * does not know the password. */
    return st->state == DIGEST_C_VERIFIED ? 0 : PST_EFORGED;
}

int
pst__digest_md5_client_set_cnonce(struct pst_sasl_client *c,
                                  const char *cnonce)
{
    struct digest_client *st;

    if (c->mech != &pst__mech_digest_md5)
        return PST_EINVAL;
    st = c->state;
    if (c->steps > 0 && st->state != DIGEST_C_WAIT)
        return PST_ESTATE;
    return digest_hook_nonce(cnonce, st->cnonce, &st->cnonce_len);
}

/* --- Server half --------------------------------------------------------- */

enum digest_server_state {
    DIGEST_S_START = 0,   /* nothing sent */
    DIGEST_S_CHALLENGED,  /* sent the digest-challenge */
    DIGEST_S_LOOKUP,      /* response checked; waiting for credentials */
    DIGEST_S_PROVED,      /* sent rspauth; want the empty answer */
};

struct digest_server {
    enum digest_server_state state;
    unsigned qops;                     /* offered (config) */
    unsigned maxbuf;                   /* ours (config) */
    unsigned ciphers;                  /* offered: configured, available */
    uint8_t a1[DIGEST_MD5_LEN];        /* H(A1) for the layer; secret */
    int layer_taken;
    char nonce[DIGEST_MAX_NONCE + 1];
    size_t nonce_len;                  /* 0: draw one at the start */
    struct pst__digest_response resp;  /* the client's */
};

static const char *
digest_server_realm(const struct pst_sasl_server *s)
{
    return s->cfg.realm != NULL ? s->cfg.realm : s->cfg.hostname;
}

static int
digest_server_challenge(struct pst_sasl_server *s, struct digest_server *st,
                        struct pst_buf *out)
{
    int rc;

    if (st->nonce_len == 0 &&
        (rc = digest_make_nonce(s->cfg.random, s->cfg.random_ctx,
                                st->nonce, &st->nonce_len)) < 0)
        return pst__sasl_fail(s, rc, "DIGEST-MD5: cannot make a nonce");
    {
        const struct pst__digest_offer o = {
            .realm = digest_server_realm(s),
            .nonce = st->nonce,
            .qops = st->qops,
            .maxbuf = st->maxbuf,
            .ciphers = st->ciphers,
        };

        rc = pst__digest_print_challenge(out, &o);
    }
    if (rc < 0)
        return pst__sasl_fail(s, rc, "DIGEST-MD5: cannot make the challenge");
    st->state = DIGEST_S_CHALLENGED;
    return PST_SASL_CONTINUE;
}

/* The digest-response: parse, check against what we sent, take the
 * identities. */
static int
digest_server_response(struct pst_sasl_server *s, struct digest_server *st,
                       const uint8_t *in, size_t len)
{
    struct pst__digest_response *r = &st->resp;
    const struct pst__digest_expect e = {
        .nonce = st->nonce,
        .realm = digest_server_realm(s),
        .service = pst__sasl_service(s),
        .hostname = s->cfg.hostname,
        .uri_hosts = s->cfg.uri_hosts,
        .qops = st->qops,
        .ciphers = st->ciphers,
    };
    uint8_t name[2 * PST__DIGEST_MAX_VALUE];
    size_t name_len;
    const char *why = NULL;
    int rc;

    if ((rc = pst__digest_parse_response(in, len, r, &why)) < 0 ||
        (rc = pst__digest_validate_response(r, &e, &why)) < 0)
        return pst__sasl_fail(s, rc, why);
    /* Without charset=utf-8 the user name is ISO 8859-1 (RFC 2831
     * §2.1.2); we look users up by UTF-8.  The hash still takes the name
     * as the client sent it. */
    if (r->utf8) {
        rc = pst__sasl_set_authcid(s, (const uint8_t *)r->username.s,
                                   r->username.len, 0);
    } else {
        rc = pst__digest_latin1_to_utf8(r->username.s, r->username.len,
                                        name, sizeof(name), &name_len);
        if (rc < 0)
            return pst__sasl_fail(s, rc, "DIGEST-MD5: username too long");
        rc = pst__sasl_set_authcid(s, name, name_len, 0);
    }
    if (rc < 0)
        return rc;
    /* An authzid equal to the user name means no proxying (mutt and git
     * send-email send one); pst__sasl_set_authzid records it as none. */
    if (r->has_authzid &&
        (rc = pst__sasl_set_authzid(s, (const uint8_t *)r->authzid.s,
                                    r->authzid.len, 0)) < 0)
        return rc;
    st->state = DIGEST_S_LOOKUP;
    return PST_SASL_NEED_CRED;
}

/* After the lookup: recompute the response and, if it matches, prove
 * ourselves with rspauth. */
static int
digest_server_check(struct pst_sasl_server *s, struct digest_server *st,
                    struct pst_buf *out)
{
    const struct pst__digest_response *r = &st->resp;
    /* "If the directive is missing, realm-value will set to the empty
     * string when computing A1" (RFC 2831 §2.1.2). */
    const char *realm = r->has_realm ? r->realm.s : "";
    uint8_t ha1[DIGEST_MD5_LEN];
    char want[PST__DIGEST_HEX + 1], rspauth[PST__DIGEST_HEX + 1];
    const char *reason = NULL;
    int rc, eq;

    rc = s->cred != NULL
             ? pst_cred_digest_md5(s->cred, r->username.s, realm, ha1)
             : PST_EAUTH;
    if (rc == PST_EAUTH) {
        /* DESIGN.md "Secrets": an unknown user or one without a usable
         * verifier does the same work as a wrong password and fails the
         * same way; only the log tells them apart. */
        reason = s->cred == NULL ? "unknown user"
                                 : "no DIGEST-MD5 or PLAIN verifier";
        rc = digest_ha1(r->username.s, r->username.len, realm,
                        (const uint8_t *)"", 0, ha1);
    }
    if (rc == 0)
        rc = digest_calc(ha1, r, 0, want, st->a1);
    if (rc < 0) {
        OPENSSL_cleanse(ha1, sizeof(ha1));
        return pst__sasl_fail(s, rc, "DIGEST-MD5: cannot compute the digest");
    }
    eq = CRYPTO_memcmp(want, r->response.s, PST__DIGEST_HEX) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    if (reason != NULL || !eq) {
        OPENSSL_cleanse(ha1, sizeof(ha1));
        return pst__sasl_fail(s, PST_EAUTH,
                              reason != NULL ? reason : "response mismatch");
    }
    /* RFC 2831 §2.1.3: the server proves it knows the password too.  SMTP
     * has no additional data with success (RFC 4954 §6), so rspauth goes
     * in one more challenge, which the client answers empty. */
    rc = digest_calc(ha1, r, 1, rspauth, NULL);
    OPENSSL_cleanse(ha1, sizeof(ha1));
    if (rc == 0)
        rc = pst__digest_print_finish(out, rspauth);
    OPENSSL_cleanse(rspauth, sizeof(rspauth));
    if (rc < 0)
        return pst__sasl_fail(s, rc, "DIGEST-MD5: cannot send rspauth");
    st->state = DIGEST_S_PROVED;
    return PST_SASL_CONTINUE;
}

static int
digest_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                   struct pst_buf *out)
{
    struct digest_server *st = s->state;

    switch (st->state) {
    case DIGEST_S_START:
        /* RFC 4954 §4: an initial response to a server-first mechanism
         * is an error (501 5.7.0). */
        if (in != NULL)
            return pst__sasl_fail(s, PST_EPROTO,
                                  "DIGEST-MD5: initial response not allowed");
        return digest_server_challenge(s, st, out);
    case DIGEST_S_CHALLENGED:
        if (in == NULL)
            return pst__sasl_fail(s, PST_ESTATE, "DIGEST-MD5: no response");
        return digest_server_response(s, st, in, len);
    case DIGEST_S_LOOKUP:
        if (in != NULL)
            return pst__sasl_fail(s, PST_ESTATE,
                                  "DIGEST-MD5: message during the lookup");
        return digest_server_check(s, st, out);
    case DIGEST_S_PROVED:
        if (in == NULL)
            return pst__sasl_fail(s, PST_ESTATE, "DIGEST-MD5: no answer");
        if (len != 0)
            return pst__sasl_fail(s, PST_EPROTO,
                                  "DIGEST-MD5: non-empty answer to rspauth");
        return PST_SASL_DONE;
    }
    return PST_ESTATE;
}

int
pst__digest_md5_server_set_nonce(struct pst_sasl_server *s,
                                 const char *nonce)
{
    struct digest_server *st;

    if (s->mech != &pst__mech_digest_md5)
        return PST_EINVAL;
    st = s->state;
    if (st->state != DIGEST_S_START)
        return PST_ESTATE;
    return digest_hook_nonce(nonce, st->nonce, &st->nonce_len);
}

/* The server's layer, once the client is authenticated. */
static int
digest_server_layer(struct pst_sasl_server *s, struct pst_sasl_layer **out)
{
    struct digest_server *st = s->state;
    int rc;

    if (st->layer_taken)
        return PST_ESTATE;
    st->layer_taken = 1;
    if (st->resp.qop == PST__DIGEST_QOP_AUTH)
        rc = 0;
    else
        rc = pst__digest_layer_new(st->a1, st->resp.qop, st->resp.cipher, 0,
                                   st->resp.maxbuf, st->maxbuf, out);
    OPENSSL_cleanse(st->a1, sizeof(st->a1));
    return rc;
}

/* The qops and maxbuf the server offers. */
static int
digest_server_init(struct pst_sasl_server *s)
{
    struct digest_server *st = s->state;

    st->qops = s->cfg.digest_qops != 0 ? s->cfg.digest_qops
                                       : PST__DIGEST_QOP_AUTH;
    st->maxbuf = s->cfg.digest_maxbuf != 0 ? s->cfg.digest_maxbuf
                                           : PST__DIGEST_DEFAULT_MAXBUF;
    st->ciphers = s->cfg.digest_ciphers;
    return pst__digest_check_config(st->qops, st->maxbuf, &st->ciphers);
}

static const struct pst_sasl_client_ops digest_md5_client = {
    .state_size = sizeof(struct digest_client),
    .init = digest_client_init,
    .step = digest_client_step,
    .finish = digest_client_finish,
    .layer = digest_client_layer,
};

static const struct pst_sasl_server_ops digest_md5_server = {
    .state_size = sizeof(struct digest_server),
    .init = digest_server_init,
    .step = digest_server_step,
    .layer = digest_server_layer,
};

const struct pst_sasl_mech pst__mech_digest_md5 = {
    .name = "DIGEST-MD5",
    .flags = PST_MECH_SERVER_PROOF | PST_MECH_HISTORIC,
    .client = &digest_md5_client,
    .server = &digest_md5_server,
};
