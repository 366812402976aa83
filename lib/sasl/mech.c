/*
 * The mechanism table and the phases shared by every exchange.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "mech.h"

/* Strongest first: the order a client prefers. */
static const struct pst_sasl_mech *const mech_table[] = {
    &pst__mech_scram_sha256_plus,
    &pst__mech_scram_sha1_plus,
    &pst__mech_scram_sha256,
    &pst__mech_scram_sha1,
    &pst__mech_digest_md5,
    &pst__mech_cram_md5,
    &pst__mech_plain,
    &pst__mech_login,
    /* Opt-in (PST_MECH_OPT_IN): */
    &pst__mech_external,
    &pst__mech_oauthbearer,
    &pst__mech_xoauth2,
};

const char *
pst_sasl_mech_name(const struct pst_sasl_mech *m)
{
    return m->name;
}

unsigned
pst_sasl_mech_flags(const struct pst_sasl_mech *m)
{
    return m->flags;
}

const struct pst_sasl_mech *
pst_sasl_mech_find(const char *name, size_t len)
{
    for (size_t i = 0; i < PST__ARRAY_LEN(mech_table); i++) {
        const char *n = mech_table[i]->name;

        /* RFC 4422 §3.1: mechanism names are case-insensitive here
         * because SMTP verbs and arguments are (RFC 5321 §2.4). */
        if (strlen(n) == len &&
            strncasecmp(n, name, len) == 0) /* not secret */
            return mech_table[i];
    }
    return NULL;
}

const struct pst_sasl_mech *
pst_sasl_mech_at(size_t i)
{
    /* Skip the opt-in mechanisms: posternd's default `mechanisms` and
     * the SMTP client's choice of the strongest mechanism both walk this
     * list, and neither may use a token, a certificate or channel
     * binding it was not given. */
    for (size_t k = 0; k < PST__ARRAY_LEN(mech_table); k++) {
        if (mech_table[k]->flags & PST_MECH_OPT_IN)
            continue;
        if (i-- == 0)
            return mech_table[k];
    }
    return NULL;
}

const struct pst_sasl_mech *
pst_sasl_mech_all_at(size_t i)
{
    return i < PST__ARRAY_LEN(mech_table) ? mech_table[i] : NULL;
}

/* --- Server ------------------------------------------------------------- */

int
pst_sasl_server_new(const struct pst_sasl_mech *m,
                    const struct pst_sasl_server_config *cfg,
                    struct pst_sasl_server **out)
{
    struct pst_sasl_server *s;
    int rc;

    *out = NULL;
    if (m == NULL || cfg == NULL || cfg->hostname == NULL ||
        cfg->hostname[0] == '\0')
        return PST_EINVAL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PST_ENOMEM;
    s->mech = m;
    s->cfg = *cfg;
    pst_buf_init(&s->authcid, PST_SASL_MAX_NAME, 0);
    pst_buf_init(&s->authzid, PST_SASL_MAX_NAME, 0);
    /* A bearer token may be longer than a password (the limit of each
     * is checked where it is stored). */
    pst_buf_init(&s->password, PST_SASL_MAX_TOKEN, 1);
    if (m->server->state_size > 0) {
        s->state = calloc(1, m->server->state_size);
        if (s->state == NULL) {
            free(s);
            return PST_ENOMEM;
        }
    }
    if (m->server->init != NULL && (rc = m->server->init(s)) < 0) {
        pst_sasl_server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
pst_sasl_server_free(struct pst_sasl_server *s)
{
    if (s == NULL)
        return;
    if (s->mech->server->free != NULL)
        s->mech->server->free(s);
    if (s->state != NULL)
        OPENSSL_clear_free(s->state, s->mech->server->state_size);
    pst_buf_clear(&s->authcid);
    pst_buf_clear(&s->authzid);
    pst_buf_clear(&s->password);
    OPENSSL_clear_free(s, sizeof(*s));
}

int
pst_sasl_server_step(struct pst_sasl_server *s, const uint8_t *in,
                     size_t in_len, struct pst_buf *out)
{
    int rc;

    pst_buf_reset(out);
    if (s->phase != SASL_PHASE_RUN)
        return pst__sasl_fail(s, PST_ESTATE,
                              s->phase == SASL_PHASE_DONE ||
                                      s->phase == SASL_PHASE_FAILED
                                  ? "step after the end of the exchange"
                                  : "step while an answer is awaited");
    if (in != NULL && in_len > PST_SASL_MAX_MESSAGE) {
        s->phase = SASL_PHASE_FAILED;
        return pst__sasl_fail(s, PST_ELIMIT, "client message too long");
    }
    rc = s->mech->server->step(s, in, in_len, out);
    s->steps++;
    switch (rc) {
    case PST_SASL_CONTINUE:
        break;
    case PST_SASL_NEED_CRED:
        s->phase = SASL_PHASE_WAIT_CRED;
        break;
    case PST_SASL_NEED_VERIFY:
        s->phase = SASL_PHASE_WAIT_VERIFY;
        break;
    case PST_SASL_DONE:
        s->phase = SASL_PHASE_DONE;
        break;
    default:
        s->phase = SASL_PHASE_FAILED;
        pst_buf_clear(&s->password);
        pst_buf_reset(out);
        if (s->reason == NULL)
            s->reason = pst_strerror(rc);
        break;
    }
    return rc;
}

int
pst_sasl_server_layer(struct pst_sasl_server *s, struct pst_sasl_layer **out)
{
    *out = NULL;
    if (s->phase != SASL_PHASE_DONE)
        return PST_ESTATE;
    if (s->mech->server->layer == NULL)
        return 0;
    return s->mech->server->layer(s, out);
}

int
pst_sasl_server_set_cred(struct pst_sasl_server *s, const struct pst_cred *c)
{
    if (s->phase != SASL_PHASE_WAIT_CRED)
        return PST_ESTATE;
    s->cred = c;
    s->phase = SASL_PHASE_RUN;
    return 0;
}

const uint8_t *
pst_sasl_server_password(const struct pst_sasl_server *s, size_t *len)
{
    if (s->phase != SASL_PHASE_WAIT_VERIFY) {
        *len = 0;
        return NULL;
    }
    *len = s->password.len;
    return s->password.data != NULL ? s->password.data
                                    : (const uint8_t *)"";
}

int
pst_sasl_server_verified(struct pst_sasl_server *s, int ok)
{
    if (s->phase != SASL_PHASE_WAIT_VERIFY)
        return PST_ESTATE;
    s->verified = ok ? 1 : 0;
    pst_buf_clear(&s->password);
    s->phase = SASL_PHASE_RUN;
    return 0;
}

const char *
pst_sasl_server_authcid(const struct pst_sasl_server *s)
{
    return s->has_authcid ? (const char *)s->authcid.data : NULL;
}

const char *
pst_sasl_server_authzid(const struct pst_sasl_server *s)
{
    return s->has_authzid ? (const char *)s->authzid.data : NULL;
}

const char *
pst_sasl_server_reason(const struct pst_sasl_server *s)
{
    return s->reason != NULL ? s->reason : "";
}

const struct pst_sasl_mech *
pst_sasl_server_mech(const struct pst_sasl_server *s)
{
    return s->mech;
}

int
pst__sasl_fail(struct pst_sasl_server *s, int err, const char *reason)
{
    s->reason = reason;
    return err;
}

const char *
pst__sasl_service(const struct pst_sasl_server *s)
{
    return s->cfg.service != NULL ? s->cfg.service : "smtp";
}

/* Validate and store an identity into b. */
static int
sasl_set_name(struct pst_buf *b, const uint8_t *p, size_t len, int prep)
{
    int rc;

    pst_buf_reset(b);
    if (len > PST_SASL_MAX_NAME)
        return PST_ELIMIT;
    if (memchr(p, '\0', len) != NULL || !pst__utf8_valid(p, len))
        return PST_EPROTO;
    if (prep)
        rc = pst__saslprep(p, len, 0, b);
    else
        rc = pst_buf_append(b, p, len);
    if (rc == 0 && b->len == 0)
        rc = PST_EPROTO;
    if (rc < 0)
        pst_buf_reset(b);
    return rc;
}

int
pst__sasl_set_authcid(struct pst_sasl_server *s, const uint8_t *p,
                      size_t len, int prep)
{
    int rc = sasl_set_name(&s->authcid, p, len, prep);

    if (rc < 0)
        return pst__sasl_fail(s, rc, "malformed authentication identity");
    s->has_authcid = 1;
    return 0;
}

int
pst__sasl_set_authzid(struct pst_sasl_server *s, const uint8_t *p,
                      size_t len, int prep)
{
    int rc;

    s->has_authzid = 0;
    if (len == 0)
        return 0;
    rc = sasl_set_name(&s->authzid, p, len, prep);
    if (rc < 0)
        return pst__sasl_fail(s, rc, "malformed authorization identity");
    /* An authzid equal to the authcid asks for no proxying (mutt, git
     * send-email and neomutt send one). */
    if (s->has_authcid && s->authzid.len == s->authcid.len &&
        memcmp(s->authzid.data, s->authcid.data, /* not secret */
               s->authcid.len) == 0)
        return 0;
    s->has_authzid = 1;
    return 0;
}

int
pst__sasl_set_password(struct pst_sasl_server *s, const uint8_t *p,
                       size_t len)
{
    pst_buf_reset(&s->password);
    if (len > PST_SASL_MAX_PASSWORD)
        return pst__sasl_fail(s, PST_ELIMIT, "password too long");
    return pst_buf_append(&s->password, p, len);
}

int
pst__sasl_set_token(struct pst_sasl_server *s, const uint8_t *p, size_t len)
{
    pst_buf_reset(&s->password);
    if (len > PST_SASL_MAX_TOKEN)
        return pst__sasl_fail(s, PST_ELIMIT, "token too long");
    return pst_buf_append(&s->password, p, len);
}

int
pst__sasl_server_is_host(const struct pst_sasl_server *s,
                         const uint8_t *host, size_t len)
{
    const char *h = s->cfg.hostname;

    if (strlen(h) == len &&
        strncasecmp(h, (const char *)host, len) == 0) /* not secret */
        return 1;
    for (size_t i = 0; s->cfg.uri_hosts != NULL &&
                       s->cfg.uri_hosts[i] != NULL; i++) {
        h = s->cfg.uri_hosts[i];
        if (strlen(h) == len &&
            strncasecmp(h, (const char *)host, len) == 0) /* not secret */
            return 1;
    }
    return 0;
}

/* --- Client ------------------------------------------------------------- */

int
pst_sasl_client_new(const struct pst_sasl_mech *m,
                    const struct pst_sasl_client_config *cfg,
                    struct pst_sasl_client **out)
{
    struct pst_sasl_client *c;
    int rc = PST_ENOMEM;

    *out = NULL;
    if (m == NULL || cfg == NULL ||
        (cfg->password == NULL && cfg->password_len > 0) ||
        (cfg->token == NULL && cfg->token_len > 0))
        return PST_EINVAL;
    /* EXTERNAL takes its identity from the certificate: no user name. */
    if (!(m->flags & PST_MECH_EXTERNAL) &&
        (cfg->authcid == NULL || cfg->authcid[0] == '\0'))
        return PST_EINVAL;
    if ((m->flags & PST_MECH_BEARER) && cfg->token_len == 0)
        return PST_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PST_ENOMEM;
    c->mech = m;
    pst_buf_init(&c->authcid, PST_SASL_MAX_NAME, 0);
    pst_buf_init(&c->authzid, PST_SASL_MAX_NAME, 0);
    pst_buf_init(&c->password, PST_SASL_MAX_PASSWORD, 1);
    pst_buf_init(&c->service, 64, 0);
    pst_buf_init(&c->host, 255, 0);
    pst_buf_init(&c->token, PST_SASL_MAX_TOKEN, 1);
    pst_buf_init(&c->error_json, PST_SASL_MAX_MESSAGE, 0);
    c->random = cfg->random;
    c->random_ctx = cfg->random_ctx;
    c->scram_min_iterations = cfg->scram_min_iterations != 0
                                  ? cfg->scram_min_iterations
                                  : PST_SCRAM_MIN_ITERATIONS;
    c->scram_cache = cfg->scram_cache;
    if ((cfg->authcid != NULL &&
         (rc = pst_buf_append_str(&c->authcid, cfg->authcid)) < 0) ||
        (cfg->authzid != NULL &&
         (rc = pst_buf_append_str(&c->authzid, cfg->authzid)) < 0) ||
        (rc = pst_buf_append(&c->password, cfg->password,
                             cfg->password_len)) < 0 ||
        (rc = pst_buf_append_str(&c->service, cfg->service != NULL
                                                  ? cfg->service
                                                  : "smtp")) < 0 ||
        (cfg->host != NULL &&
         (rc = pst_buf_append_str(&c->host, cfg->host)) < 0) ||
        (rc = pst_buf_append(&c->token, cfg->token, cfg->token_len)) < 0)
        goto fail;
    /* Empty strings still need a NUL-terminated buffer. */
    if ((rc = pst_buf_append(&c->authcid, "", 0)) < 0 ||
        (rc = pst_buf_append(&c->authzid, "", 0)) < 0 ||
        (rc = pst_buf_append(&c->password, "", 0)) < 0 ||
        (rc = pst_buf_append(&c->host, "", 0)) < 0)
        goto fail;
    if (!pst__utf8_valid(c->authcid.data, c->authcid.len) ||
        !pst__utf8_valid(c->authzid.data, c->authzid.len)) {
        rc = PST_EINVAL;
        goto fail;
    }
    if (m->client->state_size > 0) {
        c->state = calloc(1, m->client->state_size);
        if (c->state == NULL) {
            rc = PST_ENOMEM;
            goto fail;
        }
    }
    if (m->client->init != NULL && (rc = m->client->init(c, cfg)) < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    pst_sasl_client_free(c);
    return rc;
}

void
pst_sasl_client_free(struct pst_sasl_client *c)
{
    if (c == NULL)
        return;
    if (c->mech->client->free != NULL && c->state != NULL)
        c->mech->client->free(c);
    if (c->state != NULL)
        OPENSSL_clear_free(c->state, c->mech->client->state_size);
    pst_buf_clear(&c->authcid);
    pst_buf_clear(&c->authzid);
    pst_buf_clear(&c->password);
    pst_buf_clear(&c->service);
    pst_buf_clear(&c->host);
    pst_buf_clear(&c->token);
    pst_buf_clear(&c->error_json);
    OPENSSL_clear_free(c, sizeof(*c));
}

int
pst_sasl_client_step(struct pst_sasl_client *c, const uint8_t *in,
                     size_t in_len, struct pst_buf *out)
{
    int rc;

    if (c->phase != SASL_PHASE_RUN)
        return PST_ESTATE;
    if (in != NULL && in_len > PST_SASL_MAX_MESSAGE) {
        c->phase = SASL_PHASE_FAILED;
        return PST_ELIMIT;
    }
    pst_buf_reset(out);
    rc = c->mech->client->step(c, in, in_len, out);
    c->steps++;
    if (rc == PST_SASL_DONE)
        c->phase = SASL_PHASE_DONE;
    else if (rc < 0) {
        c->phase = SASL_PHASE_FAILED;
        pst_buf_reset(out);
    }
    return rc;
}

int
pst_sasl_client_layer(struct pst_sasl_client *c, struct pst_sasl_layer **out)
{
    *out = NULL;
    if (c->phase != SASL_PHASE_DONE)
        return PST_ESTATE;
    if (c->mech->client->layer == NULL)
        return 0;
    return c->mech->client->layer(c, out);
}

const uint8_t *
pst_sasl_client_error_json(const struct pst_sasl_client *c, size_t *len)
{
    if (!c->has_error_json) {
        *len = 0;
        return NULL;
    }
    *len = c->error_json.len;
    return c->error_json.data != NULL ? c->error_json.data
                                      : (const uint8_t *)"";
}

int
pst__sasl_client_set_error_json(struct pst_sasl_client *c, const uint8_t *p,
                                size_t len)
{
    int rc;

    pst_buf_reset(&c->error_json);
    if ((rc = pst_buf_append(&c->error_json, p, len)) < 0)
        return rc;
    c->has_error_json = 1;
    return 0;
}

int
pst_sasl_client_finish(const struct pst_sasl_client *c)
{
    if (c->phase == SASL_PHASE_FAILED)
        return PST_ESTATE;
    if (c->mech->client->finish != NULL)
        return c->mech->client->finish(c);
    return 0;
}
