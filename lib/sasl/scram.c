/*
 * SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), client and server
 * halves, with their channel-binding variants SCRAM-SHA-1-PLUS and
 * SCRAM-SHA-256-PLUS (RFC 5802 §6; the binding data, RFC 9266
 * tls-exporter or RFC 5929 tls-unique, comes from the caller's TLS).
 *
 *   C: n,,n=user,r=<c-nonce>                      client-first-message
 *   S: r=<c-nonce><s-nonce>,s=<salt>,i=<count>    server-first-message
 *   C: c=biws,r=<nonce>,p=<ClientProof>           client-final-message
 *   S: v=<ServerSignature>                        server-final-message
 *   C: (empty)                                    SMTP has no success data
 *
 * RFC 5802 §3:
 *   AuthMessage     = client-first-message-bare "," server-first-message
 *                     "," client-final-message-without-proof
 *   ClientSignature = HMAC(StoredKey, AuthMessage)
 *   ClientProof     = ClientKey XOR ClientSignature
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 * Message parsing and name escaping live in scram_parse.c.
 */
#include <string.h>

#include <openssl/crypto.h>

#include <postern/base64.h>

#include "mech.h"

#define SCRAM_NONCE_RANDOM 18  /* bytes: 24 base64 characters, no padding */
#define SCRAM_MAX_NONCE    64  /* a fixed (test) nonce, octets */
#define SCRAM_FAKE_SALT    16  /* bytes, as Dovecot and cred.c make them */

static enum pst_scram_hash
scram_hash_of(const struct pst_sasl_mech *m)
{
    return m == &pst__mech_scram_sha1 || m == &pst__mech_scram_sha1_plus
               ? PST_SCRAM_SHA1
               : PST_SCRAM_SHA256;
}

static int
scram_is_plus(const struct pst_sasl_mech *m)
{
    return m == &pst__mech_scram_sha1_plus ||
           m == &pst__mech_scram_sha256_plus;
}

static int
scram_is_mech(const struct pst_sasl_mech *m)
{
    return m == &pst__mech_scram_sha1 || m == &pst__mech_scram_sha256 ||
           scram_is_plus(m);
}

/* RFC 5802 §7: cb-name = 1*(ALPHA / DIGIT / "." / "-"). */
static int
scram_cb_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > PST_SASL_MAX_CB_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/*
 * c= of client-final-message (RFC 5802 §7): base64 of cbind-input =
 * gs2-header [ cbind-data ], the data only for "p=".
 */
static int
scram_cbind_input(const struct pst_buf *gs2, const uint8_t *cb,
                  size_t cb_len, struct pst_buf *out)
{
    int rc;

    if ((rc = pst_buf_append(out, gs2->data, gs2->len)) < 0 ||
        (cb_len > 0 && (rc = pst_buf_append(out, cb, cb_len)) < 0))
        return rc;
    return 0;
}

/* A nonce fixed by a test hook must be printable (RFC 5802 §7). */
static int
scram_nonce_ok(const char *nonce, size_t len)
{
    if (len == 0 || len > SCRAM_MAX_NONCE)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',')
            return 0;
    return 1;
}

/*
 * Append a fresh nonce: base64 of SCRAM_NONCE_RANDOM random bytes, which
 * is printable and free of "," as RFC 5802 §7 asks.
 */
static int
scram_append_nonce(pst_random_fn rnd, void *ctx, struct pst_buf *out)
{
    uint8_t raw[SCRAM_NONCE_RANDOM];
    int rc;

    if ((rc = pst__random(rnd, ctx, raw, sizeof(raw))) < 0)
        return rc;
    rc = pst_base64_encode(raw, sizeof(raw), out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

/* AuthMessage (RFC 5802 §3) into am. */
static int
scram_auth_message(struct pst_buf *am, const uint8_t *bare, size_t bare_len,
                   const uint8_t *sfirst, size_t sfirst_len,
                   const uint8_t *cfinal, size_t cfinal_len)
{
    int rc;

    if ((rc = pst_buf_append(am, bare, bare_len)) < 0 ||
        (rc = pst_buf_append_byte(am, ',')) < 0 ||
        (rc = pst_buf_append(am, sfirst, sfirst_len)) < 0 ||
        (rc = pst_buf_append_byte(am, ',')) < 0 ||
        (rc = pst_buf_append(am, cfinal, cfinal_len)) < 0)
        return rc;
    return 0;
}

/* --- Client half --------------------------------------------------------- */

enum scram_client_state {
    SCRAM_C_START = 0,  /* nothing sent */
    SCRAM_C_SENT_FIRST, /* client-first sent; server-first awaited */
    SCRAM_C_SENT_FINAL, /* client-final sent; server-final awaited */
    SCRAM_C_VERIFIED,   /* the server proved it knows the password */
};

struct scram_client {
    enum scram_client_state state;
    size_t key_len;
    /* Channel binding (RFC 5802 §6), from the config: */
    char cb_flag;                    /* 'n', 'y' or 'p' */
    char cb_type[PST_SASL_MAX_CB_NAME + 1]; /* 'p' only */
    struct pst_buf cb_data;          /* 'p' only */
    /* Sent: */
    char nonce[SCRAM_MAX_NONCE + 1]; /* c-nonce; empty: make one */
    size_t nonce_len;
    struct pst_buf gs2;              /* gs2-header */
    struct pst_buf bare;             /* client-first-message-bare */
    struct pst_buf password;         /* SASLprep'd; secret */
    /* Expected: */
    uint8_t server_sig[PST_SCRAM_MAX_KEY]; /* ServerSignature; secret */
};

/*
 * The gs2-cbind-flag (RFC 5802 §6): "p=<type>" for a -PLUS mechanism;
 * for the others "y" when this client could bind (it has the data) but
 * the server advertised no -PLUS mechanism, "n" when it cannot bind.  A
 * client that can bind, facing a server that offers -PLUS, "MUST use a
 * 'p' gs2-cbind-flag": choosing the plain mechanism then is refused.
 */
static int
scram_client_init(struct pst_sasl_client *c,
                  const struct pst_sasl_client_config *cfg)
{
    struct scram_client *st = c->state;
    int can_bind = cfg->cb_data != NULL && cfg->cb_len > 0;

    pst_buf_init(&st->cb_data, PST_SASL_MAX_CB_DATA, 1);
    if (cfg->cb_data == NULL && cfg->cb_len > 0)
        return PST_EINVAL;
    if (!scram_is_plus(c->mech)) {
        if (can_bind && cfg->cb_plus_offered)
            return PST_EINVAL;
        st->cb_flag = can_bind ? 'y' : 'n';
        return 0;
    }
    if (!can_bind || cfg->cb_type == NULL || !scram_cb_name_ok(cfg->cb_type))
        return PST_EINVAL;
    if (cfg->cb_len > PST_SASL_MAX_CB_DATA)
        return PST_ELIMIT;
    st->cb_flag = 'p';
    memcpy(st->cb_type, cfg->cb_type, strlen(cfg->cb_type) + 1);
    return pst_buf_append(&st->cb_data, cfg->cb_data, cfg->cb_len);
}

/* Append SASLprep'd (as a query, RFC 5802 §5.1) and escaped name. */
static int
scram_client_name(const struct pst_buf *name, struct pst_buf *out)
{
    struct pst_buf prepped;
    int rc;

    pst_buf_init(&prepped, PST_SASL_MAX_MESSAGE, 0);
    rc = pst__saslprep(name->data, name->len, 0, &prepped);
    if (rc == 0)
        rc = pst__scram_escape(prepped.data, prepped.len, out);
    pst_buf_clear(&prepped);
    return rc;
}

/* client-first-message: gs2-header client-first-message-bare. */
static int
scram_client_first(struct pst_sasl_client *c, struct pst_buf *out)
{
    struct scram_client *st = c->state;
    int rc;

    pst_buf_init(&st->gs2, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&st->bare, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&st->password, PST_SASL_MAX_MESSAGE, 1);
    st->key_len = pst__scram_key_len(scram_hash_of(c->mech));

    /* RFC 5802 §2.2 Normalize(): the password is SASLprep'd as a stored
     * string (no unassigned code points). */
    if ((rc = pst__saslprep(c->password.data, c->password.len, 1,
                            &st->password)) < 0)
        return rc;
    /* RFC 5802 §7: gs2-header = gs2-cbind-flag "," [ authzid ] ",". */
    if (st->cb_flag == 'p')
        rc = pst_buf_printf(&st->gs2, "p=%s,", st->cb_type);
    else
        rc = pst_buf_printf(&st->gs2, "%c,", st->cb_flag);
    if (rc < 0)
        return rc;
    if (c->authzid.len > 0 &&
        ((rc = pst_buf_append_str(&st->gs2, "a=")) < 0 ||
         (rc = scram_client_name(&c->authzid, &st->gs2)) < 0))
        return rc;
    if ((rc = pst_buf_append_byte(&st->gs2, ',')) < 0)
        return rc;
    /* client-first-message-bare = username "," nonce */
    if ((rc = pst_buf_append_str(&st->bare, "n=")) < 0 ||
        (rc = scram_client_name(&c->authcid, &st->bare)) < 0 ||
        (rc = pst_buf_append_str(&st->bare, ",r=")) < 0)
        return rc;
    if (st->nonce_len == 0) {
        struct pst_buf n;

        pst_buf_init(&n, SCRAM_MAX_NONCE, 0);
        rc = scram_append_nonce(c->random, c->random_ctx, &n);
        if (rc == 0) {
            memcpy(st->nonce, n.data, n.len);
            st->nonce_len = n.len;
        }
        pst_buf_clear(&n);
        if (rc < 0)
            return rc;
    }
    if ((rc = pst_buf_append(&st->bare, st->nonce, st->nonce_len)) < 0 ||
        (rc = pst_buf_append(out, st->gs2.data, st->gs2.len)) < 0 ||
        (rc = pst_buf_append(out, st->bare.data, st->bare.len)) < 0)
        return rc;
    return PST_SASL_CONTINUE;
}

/*
 * From the server-first-message, the client-final-message: the proof that
 * we know the password, and the ServerSignature we expect in return.
 */
static int
scram_client_final(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                   struct pst_buf *out)
{
    struct scram_client *st = c->state;
    enum pst_scram_hash h = scram_hash_of(c->mech);
    struct pst__scram_server_first sf;
    struct pst_buf salt, am, cbind;
    uint8_t client_key[PST_SCRAM_MAX_KEY], stored_key[PST_SCRAM_MAX_KEY];
    uint8_t server_key[PST_SCRAM_MAX_KEY], sig[PST_SCRAM_MAX_KEY];
    uint8_t proof[PST_SCRAM_MAX_KEY];
    size_t without_proof;
    const char *why = NULL;
    int rc;

    if ((rc = pst__scram_parse_server_first(in, len, &sf, &why)) < 0)
        return rc;
    /* RFC 5802 §5.1: the nonce starts with the client's own, followed by
     * the server's part; the client verifies that. */
    if (sf.nonce.len <= st->nonce_len ||
        memcmp(sf.nonce.p, st->nonce, st->nonce_len) != 0) /* not secret */
        return PST_EPROTO;
    /* RFC 5802 §9 / RFC 7677 §4: refuse an iteration count below our
     * minimum (4096 by default): a weak or hostile server. */
    if (sf.iterations < c->scram_min_iterations)
        return PST_EWEAK;
    /* And one so high that the PBKDF2 would hang us: a hostile server. */
    if (sf.iterations > PST_SCRAM_MAX_ITERATIONS)
        return PST_ELIMIT;

    pst_buf_init(&salt, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&am, 3 * PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&cbind, PST_SASL_MAX_MESSAGE + PST_SASL_MAX_CB_DATA, 0);
    rc = pst_base64_decode(sf.salt.p, sf.salt.len, &salt);
    if (rc == 0 && salt.len == 0)
        rc = PST_EPROTO;
    if (rc < 0)
        goto out;

    /* client-final-message-without-proof: "c=" base64(cbind-input), ","
     * nonce; cbind-input is the gs2-header, followed by the binding data
     * for "p=" (RFC 5802 §7). */
    if ((rc = scram_cbind_input(&st->gs2, st->cb_data.data,
                                st->cb_data.len, &cbind)) < 0 ||
        (rc = pst_buf_append_str(out, "c=")) < 0 ||
        (rc = pst_base64_encode(cbind.data, cbind.len, out)) < 0 ||
        (rc = pst_buf_append_str(out, ",r=")) < 0 ||
        (rc = pst_buf_append(out, sf.nonce.p, sf.nonce.len)) < 0)
        goto out;
    without_proof = out->len;
    if ((rc = scram_auth_message(&am, st->bare.data, st->bare.len, in, len,
                                 out->data, without_proof)) < 0)
        goto out;

    /* RFC 5802 §5.1: the keys may come from the cache for this salt and
     * iteration count. */
    if ((rc = pst__scram_cache_derive(c->scram_cache, h, st->password.data,
                                      st->password.len, salt.data, salt.len,
                                      sf.iterations, client_key, stored_key,
                                      server_key)) < 0 ||
        (rc = pst__scram_hmac(h, stored_key, st->key_len, am.data, am.len,
                              sig)) < 0 ||
        (rc = pst__scram_hmac(h, server_key, st->key_len, am.data, am.len,
                              st->server_sig)) < 0)
        goto out;
    for (size_t i = 0; i < st->key_len; i++)
        proof[i] = client_key[i] ^ sig[i];
    if ((rc = pst_buf_append_str(out, ",p=")) < 0 ||
        (rc = pst_base64_encode(proof, st->key_len, out)) < 0)
        goto out;
    st->state = SCRAM_C_SENT_FINAL;
    rc = PST_SASL_CONTINUE;
out:
    /* The password is no longer needed: only the expected signature is. */
    pst_buf_clear(&st->password);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(stored_key, sizeof(stored_key));
    OPENSSL_cleanse(server_key, sizeof(server_key));
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(proof, sizeof(proof));
    pst_buf_clear(&salt);
    pst_buf_clear(&am);
    pst_buf_clear(&cbind);
    return rc;
}

/* The server-final-message: its signature, or its refusal. */
static int
scram_client_verify(struct pst_sasl_client *c, const uint8_t *in, size_t len)
{
    struct scram_client *st = c->state;
    struct pst__scram_server_final sf;
    struct pst_buf v;
    const char *why = NULL;
    int rc;

    if ((rc = pst__scram_parse_server_final(in, len, &sf, &why)) < 0)
        return rc;
    /* RFC 5802 §5.1: "e=" says the server refused us. */
    if (sf.error)
        return PST_EAUTH;
    pst_buf_init(&v, PST_SASL_MAX_MESSAGE, 0);
    rc = pst_base64_decode(sf.value.p, sf.value.len, &v);
    if (rc == 0 && v.len != st->key_len)
        rc = PST_EPROTO;
    /* RFC 5802 §3: the client verifies ServerSignature; a server that
     * cannot compute it does not know the password. */
    if (rc == 0 && CRYPTO_memcmp(v.data, st->server_sig, st->key_len) != 0)
        rc = PST_EFORGED;
    pst_buf_clear(&v);
    OPENSSL_cleanse(st->server_sig, sizeof(st->server_sig));
    if (rc < 0)
        return rc;
    st->state = SCRAM_C_VERIFIED;
    return PST_SASL_DONE;
}

static int
scram_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct scram_client *st = c->state;
    int rc;

    switch (st->state) {
    case SCRAM_C_START:
        /* The client speaks first: as an initial response (in == NULL) or
         * in answer to the server's empty challenge (RFC 4954 §4). */
        if (in != NULL && len > 0)
            return PST_EPROTO;
        if ((rc = scram_client_first(c, out)) < 0)
            return rc;
        st->state = SCRAM_C_SENT_FIRST;
        return rc;
    case SCRAM_C_SENT_FIRST:
        if (in == NULL)
            return PST_ESTATE;
        return scram_client_final(c, in, len, out);
    case SCRAM_C_SENT_FINAL:
        if (in == NULL)
            return PST_ESTATE;
        return scram_client_verify(c, in, len);
    case SCRAM_C_VERIFIED:
        break;
    }
    return PST_ESTATE;
}

static int
scram_client_finish(const struct pst_sasl_client *c)
{
    const struct scram_client *st = c->state;

    /* RFC 5802 §3: the client authenticates the server by checking its
     * ServerSignature; success without it could come from a server (or a
     * man in the middle) that never knew the password. */
    return st->state == SCRAM_C_VERIFIED ? 0 : PST_EFORGED;
}

static void
scram_client_free(struct pst_sasl_client *c)
{
    struct scram_client *st = c->state;

    pst_buf_clear(&st->gs2);
    pst_buf_clear(&st->bare);
    pst_buf_clear(&st->password);
    pst_buf_clear(&st->cb_data);
}

int
pst__scram_client_set_nonce(struct pst_sasl_client *c, const char *nonce)
{
    struct scram_client *st;
    size_t len = strlen(nonce);

    if (!scram_is_mech(c->mech) || !scram_nonce_ok(nonce, len))
        return PST_EINVAL;
    st = c->state;
    if (c->steps > 0 || st->state != SCRAM_C_START)
        return PST_ESTATE;
    memcpy(st->nonce, nonce, len);
    st->nonce_len = len;
    return 0;
}

/* --- Server half --------------------------------------------------------- */

enum scram_server_state {
    SCRAM_S_START = 0,   /* nothing received */
    SCRAM_S_CHALLENGED,  /* sent the empty challenge: no initial response */
    SCRAM_S_LOOKUP,      /* client-first parsed; credentials awaited */
    SCRAM_S_SENT_FIRST,  /* server-first sent; client-final awaited */
    SCRAM_S_SENT_FINAL,  /* server-final (v=) sent; empty answer awaited */
};

struct scram_server {
    enum scram_server_state state;
    enum pst_scram_hash hash;
    /* Received: */
    struct pst_buf gs2;          /* gs2-header, for c= */
    struct pst_buf bare;         /* client-first-message-bare */
    /* Sent: */
    char snonce[SCRAM_MAX_NONCE + 1]; /* s-nonce fixed by a test; empty:
                                         make one */
    size_t snonce_len;
    struct pst_buf nonce;        /* c-nonce s-nonce */
    struct pst_buf first;        /* server-first-message */
    /* Looked up: */
    struct pst_scram_keys keys;  /* secret (wiped with the state) */
    int fake;                    /* keys are made up: the proof fails */
    const char *fake_reason;     /* why, for the log */
};

/* The gs2-cbind-flag against what this server offers (RFC 5802 §6). */
static int
scram_server_check_cbind(struct pst_sasl_server *s,
                         const struct pst__scram_client_first *cf)
{
    const char *type = s->cfg.cb_type;

    if (!scram_is_plus(s->mech)) {
        /* "p" asks for channel binding, which only -PLUS does. */
        if (cf->cbind == PST__SCRAM_CB_REQUIRED)
            return pst__sasl_fail(s, PST_EPROTO,
                                  "SCRAM: channel binding asked of a "
                                  "mechanism without it");
        /* "y": the client could bind but believes we cannot.  "If the
         * flag is set to 'y' and the server supports channel binding,
         * the server MUST fail authentication": a downgrade by a man in
         * the middle who removed -PLUS from our list. */
        if (cf->cbind == PST__SCRAM_CB_UNUSED && s->cfg.cb_plus_offered)
            return pst__sasl_fail(s, PST_EAUTH,
                                  "SCRAM: client could bind (\"y\") but "
                                  "we offered -PLUS: downgrade");
        return 0;
    }
    /* -PLUS: the client "MUST use 'p'". */
    if (cf->cbind != PST__SCRAM_CB_REQUIRED)
        return pst__sasl_fail(s, PST_EPROTO,
                              "SCRAM: -PLUS without p= channel binding");
    if (cf->cb_name.len != strlen(type) ||
        memcmp(cf->cb_name.p, type, cf->cb_name.len) != 0) /* not secret */
        return pst__sasl_fail(s, PST_EAUTH,
                              "SCRAM: unsupported channel-binding type");
    return 0;
}

static int
scram_server_parse_first(struct pst_sasl_server *s, const uint8_t *in,
                         size_t len)
{
    struct scram_server *st = s->state;
    struct pst__scram_client_first cf;
    struct pst_buf name;
    const char *why = "SCRAM: malformed client-first-message";
    int rc;

    if ((rc = pst__scram_parse_client_first(in, len, &cf, &why)) < 0)
        return pst__sasl_fail(s, rc, why);
    if ((rc = scram_server_check_cbind(s, &cf)) < 0)
        return rc;

    /* RFC 5802 §5.1: the user name is unescaped, then SASLprep'd as a
     * query string; failure or an empty result fails the exchange. */
    pst_buf_init(&name, PST_SASL_MAX_MESSAGE, 0);
    rc = pst__scram_unescape(cf.user.p, cf.user.len, &name);
    if (rc < 0) {
        pst_buf_clear(&name);
        return pst__sasl_fail(s, rc, "SCRAM: bad escape in user name");
    }
    rc = pst__sasl_set_authcid(s, name.data, name.len, 1);
    if (rc < 0) {
        pst_buf_clear(&name);
        return rc;
    }
    pst_buf_reset(&name);
    if (cf.authzid.len > 0) {
        rc = pst__scram_unescape(cf.authzid.p, cf.authzid.len, &name);
        if (rc < 0) {
            pst_buf_clear(&name);
            return pst__sasl_fail(s, rc, "SCRAM: bad escape in authzid");
        }
        /* One equal to the user name (neomutt) means no proxying. */
        rc = pst__sasl_set_authzid(s, name.data, name.len, 1);
    }
    pst_buf_clear(&name);
    if (rc < 0)
        return rc;

    pst_buf_init(&st->gs2, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&st->bare, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&st->nonce, 2 * PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&st->first, 3 * PST_SASL_MAX_MESSAGE, 0);
    if ((rc = pst_buf_append(&st->gs2, cf.gs2.p, cf.gs2.len)) < 0 ||
        (rc = pst_buf_append(&st->bare, cf.bare.p, cf.bare.len)) < 0 ||
        (rc = pst_buf_append(&st->nonce, cf.nonce.p, cf.nonce.len)) < 0)
        return rc;
    return 0;
}

/*
 * The salt shown for keys that are not stored: an unknown user's made-up
 * ones, and those derived from a {PLAIN} password.  With a server secret
 * it is HMAC-SHA-256(secret, user NUL mechanism), cut to 16 bytes: stable
 * per user like a stored salt, so that two attempts cannot tell an
 * unknown user from a real one (RFC 5802 §9 suggests a salt made from the
 * user name and a server secret; e=unknown-user, §7, would tell).
 * Without a secret it is random.
 */
static int
scram_salt(const struct pst_sasl_mech *m,
           const struct pst_sasl_server_config *cfg, const char *user,
           uint8_t salt[SCRAM_FAKE_SALT])
{
    uint8_t mac[PST_SCRAM_MAX_KEY];
    struct pst_buf msg;
    int rc;

    if (cfg->scram_secret == NULL || cfg->scram_secret_len == 0)
        return pst__random(cfg->random, cfg->random_ctx, salt,
                           SCRAM_FAKE_SALT);
    pst_buf_init(&msg, 2 * PST_SASL_MAX_NAME, 0);
    if ((rc = pst_buf_append_str(&msg, user)) == 0 &&
        (rc = pst_buf_append_byte(&msg, 0)) == 0 &&
        /* The name without -PLUS: a stored salt is the same for both,
         * so a made-up or derived one must be too. */
        (rc = pst_buf_append_str(&msg, scram_hash_of(m) == PST_SCRAM_SHA1
                                           ? "SCRAM-SHA-1"
                                           : "SCRAM-SHA-256")) == 0)
        rc = pst__scram_hmac(PST_SCRAM_SHA256, cfg->scram_secret,
                             cfg->scram_secret_len, msg.data, msg.len, mac);
    pst_buf_clear(&msg);
    if (rc == 0)
        memcpy(salt, mac, SCRAM_FAKE_SALT);
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

/*
 * Made-up keys for a user we cannot authenticate, so that the exchange
 * looks the same to the client up to the proof: an unknown user must not
 * be told apart from a wrong password (DESIGN.md, "Secrets").  The salt
 * is scram_salt()'s and the iteration count the configured one (what a
 * {PLAIN} user shows).  The keys themselves are never seen and the proof
 * fails whatever they are, so they cost no PBKDF2: the server-first
 * message of an unknown user takes what a stored verifier's takes.
 */
static int
scram_server_fake(struct pst_sasl_server *s, const char *reason)
{
    struct scram_server *st = s->state;
    struct pst_scram_keys *k = &st->keys;
    int rc;

    OPENSSL_cleanse(k, sizeof(*k));
    st->fake = 1;
    st->fake_reason = reason;
    k->iterations = s->cfg.scram_iterations != 0 ? s->cfg.scram_iterations
                                                 : PST_SCRAM_MIN_ITERATIONS;
    k->key_len = pst__scram_key_len(st->hash);
    k->salt_len = SCRAM_FAKE_SALT;
    rc = scram_salt(s->mech, &s->cfg, pst_sasl_server_authcid(s), k->salt);
    if (rc < 0)
        return rc;
    /* The final step runs the same HMACs over these as over real keys. */
    if ((rc = pst__scram_hmac(st->hash, k->salt, k->salt_len,
                              (const uint8_t *)"Client Key", 10,
                              k->stored_key)) < 0)
        return rc;
    return pst__scram_hmac(st->hash, k->salt, k->salt_len,
                           (const uint8_t *)"Server Key", 10, k->server_key);
}

/* The stored or derived keys, or fake ones; then server-first-message. */
static int
scram_server_first(struct pst_sasl_server *s, struct pst_buf *out)
{
    struct scram_server *st = s->state;
    struct pst_scram_keys *k = &st->keys;
    uint8_t salt[SCRAM_FAKE_SALT];
    int rc;

    if (s->cred == NULL) {
        rc = scram_server_fake(s, "unknown user");
    } else {
        /* Keys derived from {PLAIN} get scram_salt()'s salt, so they
         * show what pst_sasl_server_cred_prepare() would have made (and
         * what an unknown user shows).  This derivation is the slow
         * step a driver can move off its loop (sasl.h). */
        rc = 0;
        if (!pst__cred_scram_stored(s->cred, st->hash))
            rc = scram_salt(s->mech, &s->cfg, pst_sasl_server_authcid(s),
                            salt);
        if (rc == 0)
            rc = pst__cred_scram_salted(s->cred, st->hash, salt,
                                        sizeof(salt),
                                        s->cfg.scram_iterations, k);
        OPENSSL_cleanse(salt, sizeof(salt));
        if (rc == PST_EAUTH)
            rc = scram_server_fake(s, "no SCRAM or PLAIN verifier");
        else if (rc == PST_EPREP)
            rc = scram_server_fake(s, "stored password fails SASLprep");
        else if (rc == 0 &&
                 (k->key_len != pst__scram_key_len(st->hash) ||
                  k->iterations == 0 || k->salt_len == 0 ||
                  k->salt_len > PST_SCRAM_MAX_SALT))
            rc = scram_server_fake(s, "unusable SCRAM verifier");
    }
    if (rc < 0)
        return pst__sasl_fail(s, rc, "SCRAM: cannot make keys");

    /* RFC 5802 §5.1: r= is the client's nonce with ours appended. */
    if (st->snonce_len > 0)
        rc = pst_buf_append(&st->nonce, st->snonce, st->snonce_len);
    else
        rc = scram_append_nonce(s->cfg.random, s->cfg.random_ctx,
                                &st->nonce);
    if (rc < 0)
        return pst__sasl_fail(s, rc, "SCRAM: cannot make a nonce");
    if ((rc = pst_buf_append_str(&st->first, "r=")) < 0 ||
        (rc = pst_buf_append(&st->first, st->nonce.data,
                             st->nonce.len)) < 0 ||
        (rc = pst_buf_append_str(&st->first, ",s=")) < 0 ||
        (rc = pst_base64_encode(k->salt, k->salt_len, &st->first)) < 0 ||
        (rc = pst_buf_printf(&st->first, ",i=%u", k->iterations)) < 0 ||
        (rc = pst_buf_append(out, st->first.data, st->first.len)) < 0)
        return rc;
    return PST_SASL_CONTINUE;
}

/* c= of a -PLUS exchange: gs2-header || cb-data exactly. */
static int
scram_server_check_bound(struct pst_sasl_server *s, const struct pst_buf *cb)
{
    struct scram_server *st = s->state;
    size_t glen = st->gs2.len, dlen = s->cfg.cb_len;

    if (cb->len < glen ||
        memcmp(cb->data, st->gs2.data, glen) != 0) /* not secret */
        return pst__sasl_fail(s, PST_EPROTO,
                              "SCRAM: c= does not match the GS2 header");
    if (cb->len - glen != dlen ||
        CRYPTO_memcmp(cb->data + glen, s->cfg.cb_data, dlen) != 0)
        return pst__sasl_fail(s, PST_EAUTH,
                              "SCRAM: channel binding mismatch");
    return 0;
}

/* Check the client-final-message and its proof; answer with v=. */
static int
scram_server_final(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                   struct pst_buf *out)
{
    struct scram_server *st = s->state;
    struct pst_scram_keys *k = &st->keys;
    struct pst__scram_client_final cf;
    struct pst_buf cb, proof, am;
    uint8_t sig[PST_SCRAM_MAX_KEY], client_key[PST_SCRAM_MAX_KEY];
    uint8_t stored[PST_SCRAM_MAX_KEY], server_sig[PST_SCRAM_MAX_KEY];
    const char *why = "SCRAM: malformed client-final-message";
    int rc, ok;

    if ((rc = pst__scram_parse_client_final(in, len, &cf, &why)) < 0)
        return pst__sasl_fail(s, rc, why);
    pst_buf_init(&cb, PST_SASL_MAX_MESSAGE, 0);
    pst_buf_init(&proof, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&am, 4 * PST_SASL_MAX_MESSAGE, 1);

    /* RFC 5802 §7: c= is base64 of the gs2-header (no cbind-data without
     * channel binding); the server checks it matches what was sent first,
     * so the gs2 flags were not tampered with. */
    rc = pst_base64_decode(cf.cbind.p, cf.cbind.len, &cb);
    if (rc < 0) {
        rc = pst__sasl_fail(s, rc, "SCRAM: c= is not base64");
        goto out;
    }
    if (scram_is_plus(s->mech)) {
        /* RFC 5802 §6: with "p=", c= carries the gs2-header and then the
         * binding data of this TLS connection; any difference means the
         * client's TLS ended elsewhere (a man in the middle).  The data
         * is compared in constant time. */
        if ((rc = scram_server_check_bound(s, &cb)) < 0)
            goto out;
    } else if (cb.len != st->gs2.len ||
               memcmp(cb.data, st->gs2.data, cb.len) != 0) { /* not secret */
        rc = pst__sasl_fail(s, PST_EPROTO,
                            "SCRAM: c= does not match the GS2 header");
        goto out;
    }
    /* RFC 5802 §5.1: r= must be the nonce of server-first exactly. */
    if (cf.nonce.len != st->nonce.len ||
        memcmp(cf.nonce.p, st->nonce.data, /* not secret */
               cf.nonce.len) != 0) {
        rc = pst__sasl_fail(s, PST_EPROTO, "SCRAM: nonce mismatch");
        goto out;
    }
    rc = pst_base64_decode(cf.proof.p, cf.proof.len, &proof);
    if (rc == 0 && proof.len != k->key_len)
        rc = PST_EPROTO;
    if (rc < 0) {
        rc = pst__sasl_fail(s, rc, "SCRAM: proof is not a digest in base64");
        goto out;
    }

    if ((rc = scram_auth_message(&am, st->bare.data, st->bare.len,
                                 st->first.data, st->first.len,
                                 cf.without_proof.p,
                                 cf.without_proof.len)) < 0 ||
        (rc = pst__scram_hmac(st->hash, k->stored_key, k->key_len, am.data,
                              am.len, sig)) < 0)
        goto out;
    /* RFC 5802 §3: ClientKey = ClientProof XOR ClientSignature, and the
     * client is authentic if H(ClientKey) is the StoredKey. */
    for (size_t i = 0; i < k->key_len; i++)
        client_key[i] = proof.data[i] ^ sig[i];
    if ((rc = pst__scram_hash(st->hash, client_key, k->key_len,
                              stored)) < 0 ||
        (rc = pst__scram_hmac(st->hash, k->server_key, k->key_len, am.data,
                              am.len, server_sig)) < 0)
        goto out;
    ok = CRYPTO_memcmp(stored, k->stored_key, k->key_len) == 0;
    /* Fake keys fail whatever the proof (the same work was done). */
    if (st->fake) {
        rc = pst__sasl_fail(s, PST_EAUTH, st->fake_reason);
        goto out;
    }
    if (!ok) {
        rc = pst__sasl_fail(s, PST_EAUTH, "SCRAM: wrong proof");
        goto out;
    }
    if ((rc = pst_buf_append_str(out, "v=")) < 0 ||
        (rc = pst_base64_encode(server_sig, k->key_len, out)) < 0)
        goto out;
    rc = PST_SASL_CONTINUE;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(server_sig, sizeof(server_sig));
    OPENSSL_cleanse(k, sizeof(*k));
    pst_buf_clear(&cb);
    pst_buf_clear(&proof);
    pst_buf_clear(&am);
    return rc;
}

/* -PLUS needs this connection's binding data and its type. */
static int
scram_server_init(struct pst_sasl_server *s)
{
    const struct pst_sasl_server_config *cfg = &s->cfg;

    if (cfg->cb_data == NULL && cfg->cb_len > 0)
        return PST_EINVAL;
    if (!scram_is_plus(s->mech))
        return 0;
    if (cfg->cb_data == NULL || cfg->cb_len == 0 || cfg->cb_type == NULL ||
        !scram_cb_name_ok(cfg->cb_type))
        return PST_EINVAL;
    if (cfg->cb_len > PST_SASL_MAX_CB_DATA)
        return PST_ELIMIT;
    return 0;
}

static int
scram_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct scram_server *st = s->state;
    int rc;

    switch (st->state) {
    case SCRAM_S_START:
        st->hash = scram_hash_of(s->mech);
        if (in == NULL) {
            /* No initial response: ask with an empty challenge. */
            st->state = SCRAM_S_CHALLENGED;
            return PST_SASL_CONTINUE;
        }
        /* fall through */
    case SCRAM_S_CHALLENGED:
        if (in == NULL)
            return PST_ESTATE;
        if ((rc = scram_server_parse_first(s, in, len)) < 0)
            return rc;
        st->state = SCRAM_S_LOOKUP;
        return PST_SASL_NEED_CRED;
    case SCRAM_S_LOOKUP:
        if (in != NULL)
            return PST_ESTATE;
        if ((rc = scram_server_first(s, out)) < 0)
            return rc;
        st->state = SCRAM_S_SENT_FIRST;
        return rc;
    case SCRAM_S_SENT_FIRST:
        if (in == NULL)
            return PST_ESTATE;
        if ((rc = scram_server_final(s, in, len, out)) < 0)
            return rc;
        st->state = SCRAM_S_SENT_FINAL;
        return rc;
    case SCRAM_S_SENT_FINAL:
        if (in == NULL)
            return PST_ESTATE;
        /* RFC 4954 §4: no additional data with success, so v= went as a
         * challenge and the client's answer to it must be empty. */
        if (len != 0)
            return pst__sasl_fail(s, PST_EPROTO,
                                  "SCRAM: data after server-final");
        return PST_SASL_DONE;
    }
    return PST_ESTATE;
}

static void
scram_server_free(struct pst_sasl_server *s)
{
    struct scram_server *st = s->state;

    if (st == NULL)
        return;
    pst_buf_clear(&st->gs2);
    pst_buf_clear(&st->bare);
    pst_buf_clear(&st->nonce);
    pst_buf_clear(&st->first);
}

int
pst__scram_server_set_nonce(struct pst_sasl_server *s, const char *nonce)
{
    struct scram_server *st;
    size_t len = strlen(nonce);

    if (!scram_is_mech(s->mech) || !scram_nonce_ok(nonce, len))
        return PST_EINVAL;
    st = s->state;
    if (s->steps > 0 || st->state != SCRAM_S_START)
        return PST_ESTATE;
    memcpy(st->snonce, nonce, len);
    st->snonce_len = len;
    return 0;
}

int
pst_sasl_server_cred_slow(const struct pst_sasl_mech *m,
                          const struct pst_cred *c)
{
    if (!scram_is_mech(m) || c == NULL)
        return 0;
    return !pst__cred_scram_stored(c, scram_hash_of(m)) &&
           pst_cred_has(c, PST_SCHEME_PLAIN);
}

int
pst_sasl_server_cred_prepare(const struct pst_sasl_mech *m,
                             const struct pst_sasl_server_config *cfg,
                             const char *authcid, const struct pst_cred *c,
                             struct pst_cred **out)
{
    struct pst_scram_keys k;
    uint8_t salt[SCRAM_FAKE_SALT];
    int rc;

    *out = NULL;
    if (!pst_sasl_server_cred_slow(m, c))
        return PST_EINVAL;
    rc = scram_salt(m, cfg, authcid, salt);
    if (rc == 0)
        rc = pst__cred_scram_salted(c, scram_hash_of(m), salt, sizeof(salt),
                                    cfg->scram_iterations, &k);
    if (rc == 0)
        rc = pst__cred_with_scram(c, scram_hash_of(m), &k, out);
    OPENSSL_cleanse(salt, sizeof(salt));
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

static const struct pst_sasl_client_ops scram_client = {
    .state_size = sizeof(struct scram_client),
    .init = scram_client_init,
    .step = scram_client_step,
    .finish = scram_client_finish,
    .free = scram_client_free,
};

static const struct pst_sasl_server_ops scram_server = {
    .state_size = sizeof(struct scram_server),
    .init = scram_server_init,
    .step = scram_server_step,
    .free = scram_server_free,
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

const struct pst_sasl_mech pst__mech_scram_sha1_plus = {
    .name = "SCRAM-SHA-1-PLUS",
    .flags = PST_MECH_CLIENT_FIRST | PST_MECH_SERVER_PROOF |
             PST_MECH_CHANNEL_BINDING,
    .client = &scram_client,
    .server = &scram_server,
};

const struct pst_sasl_mech pst__mech_scram_sha256_plus = {
    .name = "SCRAM-SHA-256-PLUS",
    .flags = PST_MECH_CLIENT_FIRST | PST_MECH_SERVER_PROOF |
             PST_MECH_CHANNEL_BINDING,
    .client = &scram_client,
    .server = &scram_server,
};
