/*
 * OAuth 2.0 bearer tokens: OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's
 * and Microsoft's older form), client and server halves.
 *
 *   OAUTHBEARER  C: n,a=user@example.com,^Ahost=H^Aport=P^Aauth=Bearer T^A^A
 *   XOAUTH2      C: user=user@example.com^Aauth=Bearer T^A^A
 *                S: (235)                       the token was accepted
 *   or           S: 334 {"status":"invalid_token",...}   (XOAUTH2: "401")
 *                C: ^A  (OAUTHBEARER, RFC 7628 §3.2.3)  /  empty (XOAUTH2)
 *                S: (535)
 *
 * (^A is 0x01.)  The server half does not judge tokens: it pauses with
 * PST_SASL_NEED_VERIFY and hands the token over as the "password"; the
 * driver checks it with a token verifier, never with pst_cred_verify().
 */
#include <string.h>
#include <strings.h>

#include "mech.h"

#define OAUTH_KVSEP 0x01 /* RFC 7628 §3.1 kvsep = %x01 */

static int
oauth_is_bearer_mech(const struct pst_sasl_mech *m)
{
    return m == &pst__mech_oauthbearer;
}

/* RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
 * "+" / "/" ) *"=" */
static int
oauth_b64token_ok(const uint8_t *p, size_t len)
{
    size_t i = 0;

    while (i < len && ((p[i] >= 'A' && p[i] <= 'Z') ||
                       (p[i] >= 'a' && p[i] <= 'z') ||
                       (p[i] >= '0' && p[i] <= '9') ||
                       (p[i] != 0 && strchr("-._~+/", p[i]) != NULL)))
        i++;
    if (i == 0)
        return 0;
    while (i < len && p[i] == '=')
        i++;
    return i == len;
}

/*
 * An RFC 6750 §2.1 credentials value, "Bearer" 1*SP b64token; the scheme
 * is case-insensitive (RFC 7628 §4, note to implementers).  *tok and
 * *tok_len get the token.  Returns 1 if it is one, else 0.
 */
static int
oauth_parse_bearer(const uint8_t *p, size_t len, const uint8_t **tok,
                   size_t *tok_len)
{
    size_t i = 6;

    if (len < 7 ||
        strncasecmp((const char *)p, "Bearer", 6) != 0 || /* not secret */
        p[6] != ' ')
        return 0;
    while (i < len && p[i] == ' ')
        i++;
    if (!oauth_b64token_ok(p + i, len - i))
        return 0;
    *tok = p + i;
    *tok_len = len - i;
    return 1;
}

/* VCHAR (RFC 5234): %x21-7E. */
static int
oauth_vchar_ok(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return 0;
    return 1;
}

/* --- Client half --------------------------------------------------------- */

enum oauth_client_state {
    OAUTH_C_START = 0,  /* nothing sent */
    OAUTH_C_SENT,       /* the credentials went; success or an error
                           challenge awaited */
    OAUTH_C_REFUSED,    /* the error challenge came and was answered */
};

struct oauth_client {
    enum oauth_client_state state;
    struct pst_buf host;  /* OAUTHBEARER host=; empty: not sent */
    unsigned port;        /* OAUTHBEARER port=; 0: not sent */
};

static int
oauth_client_init(struct pst_sasl_client *c,
                  const struct pst_sasl_client_config *cfg)
{
    struct oauth_client *st = c->state;

    pst_buf_init(&st->host, 255, 0);
    if (!oauth_b64token_ok(c->token.data, c->token.len))
        return PST_EINVAL;
    /* XOAUTH2's user= ends at the first 0x01. */
    if (memchr(c->authcid.data, OAUTH_KVSEP, c->authcid.len) != NULL)
        return PST_EINVAL;
    if (oauth_is_bearer_mech(c->mech) && cfg->oauth_host != NULL) {
        size_t n = strlen(cfg->oauth_host);

        if (n == 0 || !oauth_vchar_ok((const uint8_t *)cfg->oauth_host, n))
            return PST_EINVAL;
        if (n > 255)
            return PST_ELIMIT;
        if (pst_buf_append(&st->host, cfg->oauth_host, n) < 0)
            return PST_ENOMEM;
    }
    if (oauth_is_bearer_mech(c->mech))
        st->port = cfg->oauth_port;
    return 0;
}

/* The initial client response of either mechanism. */
static int
oauth_client_first(struct pst_sasl_client *c, struct pst_buf *out)
{
    struct oauth_client *st = c->state;
    const struct pst_buf *a = c->authzid.len > 0 ? &c->authzid : &c->authcid;
    int rc;

    if (!oauth_is_bearer_mech(c->mech)) {
        /* XOAUTH2 (Google, developers.google.com/gmail/imap/
         * xoauth2-protocol): "user=" U ^A "auth=Bearer " T ^A ^A. */
        if ((rc = pst_buf_append_str(out, "user=")) < 0 ||
            (rc = pst_buf_append(out, c->authcid.data,
                                 c->authcid.len)) < 0 ||
            (rc = pst_buf_append_str(out, "\001auth=Bearer ")) < 0 ||
            (rc = pst_buf_append(out, c->token.data, c->token.len)) < 0 ||
            (rc = pst_buf_append_str(out, "\001\001")) < 0)
            return rc;
        return 0;
    }
    /* RFC 7628 §3.1: client-resp = gs2-header kvsep *kvpair kvsep, and the
     * gs2-header (RFC 5801 §4) "n," ["a=" saslname] ",": no channel
     * binding, the user the token is for as the authzid. */
    if ((rc = pst_buf_append_str(out, "n,a=")) < 0 ||
        (rc = pst__scram_escape(a->data, a->len, out)) < 0 ||
        (rc = pst_buf_append_str(out, ",\001")) < 0)
        return rc;
    if (st->host.len > 0 &&
        ((rc = pst_buf_append_str(out, "host=")) < 0 ||
         (rc = pst_buf_append(out, st->host.data, st->host.len)) < 0 ||
         (rc = pst_buf_append_byte(out, OAUTH_KVSEP)) < 0))
        return rc;
    /* "port": a decimal positive integer without leading zeros. */
    if (st->port != 0 &&
        (rc = pst_buf_printf(out, "port=%u\001", st->port)) < 0)
        return rc;
    if ((rc = pst_buf_append_str(out, "auth=Bearer ")) < 0 ||
        (rc = pst_buf_append(out, c->token.data, c->token.len)) < 0 ||
        (rc = pst_buf_append_str(out, "\001\001")) < 0)
        return rc;
    return 0;
}

static int
oauth_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct oauth_client *st = c->state;
    int rc;

    switch (st->state) {
    case OAUTH_C_START:
        /* The initial response, or the answer to the server's empty
         * challenge when the client sent none (RFC 4954 §4). */
        if (in != NULL && len > 0)
            return PST_EPROTO;
        if ((rc = oauth_client_first(c, out)) < 0)
            return rc;
        st->state = OAUTH_C_SENT;
        return PST_SASL_CONTINUE;
    case OAUTH_C_SENT:
        if (in == NULL)
            return PST_ESTATE;
        /* RFC 7628 §3.2.2: a challenge after the credentials is the
         * error result; it is kept for the log.  §3.2.3: the client
         * answers with a single 0x01 so the server can end the exchange
         * (with a failure).  XOAUTH2 (Google): an empty response. */
        if ((rc = pst__sasl_client_set_error_json(c, in, len)) < 0)
            return rc;
        if (oauth_is_bearer_mech(c->mech) &&
            (rc = pst_buf_append_byte(out, OAUTH_KVSEP)) < 0)
            return rc;
        st->state = OAUTH_C_REFUSED;
        return PST_SASL_CONTINUE;
    case OAUTH_C_REFUSED:
        /* Only a failure may follow the dummy response. */
        return PST_EPROTO;
    }
    return PST_ESTATE;
}

static int
oauth_client_finish(const struct pst_sasl_client *c)
{
    const struct oauth_client *st = c->state;

    /* A success after the server refused the token is not believed. */
    return st->state == OAUTH_C_REFUSED ? PST_EREJECT : 0;
}

static void
oauth_client_free(struct pst_sasl_client *c)
{
    struct oauth_client *st = c->state;

    pst_buf_clear(&st->host);
}

/* --- Server half --------------------------------------------------------- */

enum oauth_server_state {
    OAUTH_S_START = 0,  /* nothing received */
    OAUTH_S_CHALLENGED, /* sent the empty challenge: no initial response */
    OAUTH_S_VERIFY,     /* the token was handed over; verdict awaited */
    OAUTH_S_REFUSED,    /* the error challenge went; dummy awaited */
};

/* What the error challenge says. */
enum oauth_error {
    OAUTH_ERR_TOKEN = 0, /* OAUTHBEARER "invalid_token", XOAUTH2 "401" */
    OAUTH_ERR_REQUEST,   /* "invalid_request", XOAUTH2 "400" */
};

struct oauth_server {
    enum oauth_server_state state;
    const char *refusal;  /* reason for the log once refused */
};

/* One parsed OAUTHBEARER or XOAUTH2 message (spans into the input). */
struct oauth_msg {
    const uint8_t *user, *auth, *host, *port;
    size_t user_len, auth_len, host_len, port_len;
    int has_user, has_auth, has_host, has_port;
};

/* Append "key":"value" with JSON string escaping (RFC 8259 §7). */
static int
oauth_json_pair(struct pst_buf *out, const char *key, const char *value)
{
    int rc;

    if ((rc = pst_buf_printf(out, "%s\"%s\":\"", out->len > 1 ? "," : "",
                             key)) < 0)
        return rc;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = pst_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            rc = pst_buf_printf(out, "\\u%04x", *p);
        else
            rc = pst_buf_append_byte(out, *p);
        if (rc < 0)
            return rc;
    }
    return pst_buf_append_byte(out, '"');
}

/*
 * Send the error challenge (RFC 7628 §3.2.2: a JSON object with "status",
 * optionally "scope" and "openid-configuration"; XOAUTH2 as Google sends
 * it: "status", "schemes", "scope") and wait for the dummy response.
 */
static int
oauth_server_refuse(struct pst_sasl_server *s, enum oauth_error err,
                    const char *reason, struct pst_buf *out)
{
    struct oauth_server *st = s->state;
    int bearer = oauth_is_bearer_mech(s->mech);
    const char *status;
    int rc;

    if (bearer)
        status = err == OAUTH_ERR_TOKEN ? "invalid_token" : "invalid_request";
    else
        status = err == OAUTH_ERR_TOKEN ? "401" : "400";
    pst_buf_reset(out);
    if ((rc = pst_buf_append_byte(out, '{')) < 0 ||
        (rc = oauth_json_pair(out, "status", status)) < 0 ||
        (!bearer && (rc = oauth_json_pair(out, "schemes", "bearer")) < 0) ||
        (s->cfg.oauth_scope != NULL &&
         (rc = oauth_json_pair(out, "scope", s->cfg.oauth_scope)) < 0) ||
        (bearer && s->cfg.oauth_openid_configuration != NULL &&
         (rc = oauth_json_pair(out, "openid-configuration",
                               s->cfg.oauth_openid_configuration)) < 0) ||
        (rc = pst_buf_append_byte(out, '}')) < 0)
        return rc;
    st->refusal = reason;
    st->state = OAUTH_S_REFUSED;
    return PST_SASL_CONTINUE;
}

/*
 * XOAUTH2: "user=" U ^A "auth=" V ^A ^A, nothing else (Google's format;
 * it has no room for other keys).
 */
static int
oauth_parse_xoauth2(struct pst_sasl_server *s, const uint8_t *in,
                    size_t len, struct oauth_msg *m)
{
    const uint8_t *end = in + len, *p = in, *sep;

    if (len < 5 || memcmp(p, "user=", 5) != 0) /* not secret */
        return pst__sasl_fail(s, PST_EPROTO, "XOAUTH2: no user=");
    p += 5;
    sep = memchr(p, OAUTH_KVSEP, (size_t)(end - p));
    if (sep == NULL || sep == p)
        return pst__sasl_fail(s, PST_EPROTO, "XOAUTH2: empty or unended "
                                             "user=");
    m->user = p;
    m->user_len = (size_t)(sep - p);
    m->has_user = 1;
    p = sep + 1;
    if (end - p < 5 || memcmp(p, "auth=", 5) != 0) /* not secret */
        return pst__sasl_fail(s, PST_EPROTO, "XOAUTH2: no auth=");
    p += 5;
    sep = memchr(p, OAUTH_KVSEP, (size_t)(end - p));
    if (sep == NULL)
        return pst__sasl_fail(s, PST_EPROTO, "XOAUTH2: unended auth=");
    m->auth = p;
    m->auth_len = (size_t)(sep - p);
    m->has_auth = 1;
    if (end - sep != 2 || sep[1] != OAUTH_KVSEP)
        return pst__sasl_fail(s, PST_EPROTO, "XOAUTH2: not ended by "
                                             "^A^A");
    return 0;
}

/* Store a kvpair value, refusing a second one of the same key. */
static int
oauth_kv_set(struct pst_sasl_server *s, int *has, const uint8_t **v,
             size_t *v_len, const uint8_t *p, size_t len)
{
    if (*has)
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: a key given "
                                             "twice");
    *has = 1;
    *v = p;
    *v_len = len;
    return 0;
}

/*
 * OAUTHBEARER (RFC 7628 §3.1):
 *   client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
 *   kvpair      = key "=" value kvsep
 *   key         = 1*(ALPHA)
 *   value       = *(VCHAR / SP / HTAB / CR / LF)
 * with the gs2-header of RFC 5801 §4: ["F,"] cb-flag "," [authzid] ",".
 */
static int
oauth_parse_bearer_msg(struct pst_sasl_server *s, const uint8_t *in,
                       size_t len, struct oauth_msg *m)
{
    const uint8_t *end = in + len, *p = in, *comma;
    int rc;

    /* §3.1: the single kvsep is valid only after an error challenge. */
    if (len == 1 && in[0] == OAUTH_KVSEP)
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: dummy "
                                             "response without an error");
    if (len >= 2 && p[0] == 'F' && p[1] == ',')
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: non-standard "
                                             "GSS-API flag F");
    /* No channel binding in OAUTHBEARER: "n", or "y" (the client could
     * bind but this mechanism cannot); "p=" is an error. */
    if (len < 2 || (p[0] != 'n' && p[0] != 'y') || p[1] != ',')
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: bad GS2 "
                                             "channel-binding flag");
    p += 2;
    comma = memchr(p, ',', (size_t)(end - p));
    if (comma == NULL)
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: unended GS2 "
                                             "header");
    if (comma != p) {
        if (comma - p < 3 || p[0] != 'a' || p[1] != '=')
            return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: bad GS2 "
                                                 "authzid");
        m->user = p + 2;
        m->user_len = (size_t)(comma - p - 2);
        m->has_user = 1;
    }
    p = comma + 1;
    if (p == end || *p++ != OAUTH_KVSEP)
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: no kvsep after "
                                             "the GS2 header");
    for (;;) {
        const uint8_t *key = p, *eq, *v;

        if (p == end)
            return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: no final "
                                                 "kvsep");
        if (*p == OAUTH_KVSEP) {
            if (p + 1 != end)
                return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: data "
                                                     "after the end");
            break;
        }
        while (p < end && ((*p >= 'A' && *p <= 'Z') ||
                           (*p >= 'a' && *p <= 'z')))
            p++;
        if (p == key || p == end || *p != '=')
            return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: bad key");
        eq = p++;
        v = p;
        while (p < end && *p != OAUTH_KVSEP) {
            if (!((*p >= 0x21 && *p <= 0x7e) || *p == ' ' || *p == '\t' ||
                  *p == '\r' || *p == '\n'))
                return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: bad "
                                                     "byte in a value");
            p++;
        }
        if (p == end)
            return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: unended "
                                                 "value");
        rc = 0;
#define OAUTH_KEY(name) \
    ((size_t)(eq - key) == sizeof(name) - 1 && \
     memcmp(key, name, sizeof(name) - 1) == 0) /* not secret */
        if (OAUTH_KEY("auth"))
            rc = oauth_kv_set(s, &m->has_auth, &m->auth, &m->auth_len, v,
                              (size_t)(p - v));
        else if (OAUTH_KEY("host"))
            rc = oauth_kv_set(s, &m->has_host, &m->host, &m->host_len, v,
                              (size_t)(p - v));
        else if (OAUTH_KEY("port"))
            rc = oauth_kv_set(s, &m->has_port, &m->port, &m->port_len, v,
                              (size_t)(p - v));
#undef OAUTH_KEY
        /* Other keys (mthd, path, post, qs, ...) "MUST be ignored". */
        if (rc < 0)
            return rc;
        p++;
    }
    if (!m->has_auth)
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: no auth=");
    /* RFC 7628 §3.1: "application protocols are allowed to require an
     * authzid, as are specific server implementations": without it the
     * user would be known only to the token verifier. */
    if (!m->has_user)
        return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: no a= naming "
                                             "the user");
    return 0;
}

/* port = a decimal positive integer without leading zeros (RFC 7628
 * §3.1).  Returns it, or 0 when malformed. */
static unsigned
oauth_port_value(const uint8_t *p, size_t len)
{
    unsigned v = 0;

    if (len == 0 || len > 5 || p[0] == '0')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v <= 65535 ? v : 0;
}

/* Parse the client's message; hand the token over, or refuse at once. */
static int
oauth_server_take(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct oauth_server *st = s->state;
    struct oauth_msg m;
    const uint8_t *tok;
    size_t tok_len;
    int bearer = oauth_is_bearer_mech(s->mech), rc;

    memset(&m, 0, sizeof(m));
    rc = bearer ? oauth_parse_bearer_msg(s, in, len, &m)
                : oauth_parse_xoauth2(s, in, len, &m);
    if (rc < 0)
        return rc;
    if (bearer) {
        struct pst_buf name;

        pst_buf_init(&name, PST_SASL_MAX_MESSAGE, 0);
        rc = pst__scram_unescape(m.user, m.user_len, &name);
        if (rc < 0) {
            pst_buf_clear(&name);
            return pst__sasl_fail(s, rc, "OAUTHBEARER: bad escape in "
                                         "a=");
        }
        /* The authzid names the user the token is claimed for: the
         * verifier checks that the token grants it. */
        rc = pst__sasl_set_authcid(s, name.data, name.len, 0);
        pst_buf_clear(&name);
    } else {
        rc = pst__sasl_set_authcid(s, m.user, m.user_len, 0);
    }
    if (rc < 0)
        return rc;
    /* RFC 7628 §3.2: host and port, when sent, "MUST be validated to
     * match" what the server knows. */
    if (m.has_host && !pst__sasl_server_is_host(s, m.host, m.host_len))
        return oauth_server_refuse(s, OAUTH_ERR_REQUEST,
                                   "OAUTHBEARER: host= names another "
                                   "server", out);
    if (m.has_port) {
        unsigned port = oauth_port_value(m.port, m.port_len);

        if (port == 0)
            return pst__sasl_fail(s, PST_EPROTO, "OAUTHBEARER: bad port=");
        if (s->cfg.oauth_port != 0 && port != s->cfg.oauth_port)
            return oauth_server_refuse(s, OAUTH_ERR_REQUEST,
                                       "OAUTHBEARER: port= is not ours",
                                       out);
    }
    /* RFC 7628 §4.3: an empty (or non-bearer) auth= asks for the error
     * result, which names the scope. */
    if (!oauth_parse_bearer(m.auth, m.auth_len, &tok, &tok_len))
        return oauth_server_refuse(s, OAUTH_ERR_TOKEN,
                                   bearer ? "OAUTHBEARER: no bearer token"
                                          : "XOAUTH2: no bearer token",
                                   out);
    if ((rc = pst__sasl_set_token(s, tok, tok_len)) < 0)
        return rc;
    st->state = OAUTH_S_VERIFY;
    return PST_SASL_NEED_VERIFY;
}

static int
oauth_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct oauth_server *st = s->state;
    int bearer = oauth_is_bearer_mech(s->mech);

    switch (st->state) {
    case OAUTH_S_START:
        if (in == NULL) {
            /* No initial response: ask with an empty challenge. */
            st->state = OAUTH_S_CHALLENGED;
            return PST_SASL_CONTINUE;
        }
        /* fall through */
    case OAUTH_S_CHALLENGED:
        if (in == NULL)
            return PST_ESTATE;
        return oauth_server_take(s, in, len, out);
    case OAUTH_S_VERIFY:
        if (in != NULL)
            return PST_ESTATE;
        if (s->verified)
            return PST_SASL_DONE;
        return oauth_server_refuse(s, OAUTH_ERR_TOKEN,
                                   bearer ? "OAUTHBEARER: token refused"
                                          : "XOAUTH2: token refused",
                                   out);
    case OAUTH_S_REFUSED:
        if (in == NULL)
            return PST_ESTATE;
        /* RFC 7628 §3.2.3: the client's dummy response (0x01; XOAUTH2:
         * empty) lets the exchange end, in failure whatever it is. */
        return pst__sasl_fail(s, PST_EAUTH, st->refusal);
    }
    return PST_ESTATE;
}

static const struct pst_sasl_client_ops oauth_client = {
    .state_size = sizeof(struct oauth_client),
    .init = oauth_client_init,
    .step = oauth_client_step,
    .finish = oauth_client_finish,
    .free = oauth_client_free,
};

static const struct pst_sasl_server_ops oauth_server = {
    .state_size = sizeof(struct oauth_server),
    .step = oauth_server_step,
};

const struct pst_sasl_mech pst__mech_oauthbearer = {
    .name = "OAUTHBEARER",
    .flags = PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST |
             PST_MECH_BEARER,
    .client = &oauth_client,
    .server = &oauth_server,
};

const struct pst_sasl_mech pst__mech_xoauth2 = {
    .name = "XOAUTH2",
    .flags = PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST |
             PST_MECH_BEARER,
    .client = &oauth_client,
    .server = &oauth_server,
};
