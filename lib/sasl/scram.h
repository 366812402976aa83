/*
 * SCRAM internals shared by scram.c, scram_parse.c, the tests and the
 * fuzzers (included by mech.h).
 */
#ifndef POSTERN_SASL_SCRAM_H
#define POSTERN_SASL_SCRAM_H

/* A run of bytes inside a message being parsed (borrowed). */
struct pst__scram_span {
    const uint8_t *p;
    size_t len;
};

/* RFC 5802 §7 gs2-cbind-flag. */
enum pst__scram_cbind {
    PST__SCRAM_CB_NONE = 0, /* "n": the client does not support it */
    PST__SCRAM_CB_UNUSED,   /* "y": it does, but thinks the server not */
    PST__SCRAM_CB_REQUIRED, /* "p=name": it requires it (-PLUS) */
};

/* client-first-message (RFC 5802 §7); spans point into the input. */
struct pst__scram_client_first {
    enum pst__scram_cbind cbind;
    struct pst__scram_span cb_name;  /* "p=" only */
    struct pst__scram_span authzid;  /* escaped saslname; len 0: none */
    struct pst__scram_span gs2;      /* gs2-header, final "," included */
    struct pst__scram_span bare;     /* client-first-message-bare */
    struct pst__scram_span user;     /* escaped saslname */
    struct pst__scram_span nonce;    /* c-nonce */
};

/* server-first-message. */
struct pst__scram_server_first {
    struct pst__scram_span nonce;    /* c-nonce s-nonce */
    struct pst__scram_span salt;     /* base64, not yet decoded */
    unsigned iterations;
};

/* client-final-message. */
struct pst__scram_client_final {
    struct pst__scram_span cbind;    /* base64 after "c=" */
    struct pst__scram_span nonce;
    struct pst__scram_span without_proof; /* for the AuthMessage */
    struct pst__scram_span proof;    /* base64 after "p=" */
};

/* server-final-message. */
struct pst__scram_server_final {
    int error;                       /* 1: "e=", 0: "v=" */
    struct pst__scram_span value;    /* server-error-value or base64 */
};

/*
 * scram_parse.c: parse one message strictly (RFC 5802 §7 ABNF, §5.1
 * rules).  *why gets a static reason for the log on failure.
 * Returns: 0, PST_EPROTO.
 */
int pst__scram_parse_client_first(const uint8_t *in, size_t len,
                                  struct pst__scram_client_first *out,
                                  const char **why);
int pst__scram_parse_server_first(const uint8_t *in, size_t len,
                                  struct pst__scram_server_first *out,
                                  const char **why);
int pst__scram_parse_client_final(const uint8_t *in, size_t len,
                                  struct pst__scram_client_final *out,
                                  const char **why);
int pst__scram_parse_server_final(const uint8_t *in, size_t len,
                                  struct pst__scram_server_final *out,
                                  const char **why);
/*
 * Append a saslname with "," and "=" escaped as "=2C" and "=3D" (escape)
 * or decoded back (unescape: any other "=" is PST_EPROTO).
 * Returns: 0, PST_EPROTO, PST_ELIMIT, PST_ENOMEM.
 */
int pst__scram_escape(const uint8_t *p, size_t len, struct pst_buf *out);
int pst__scram_unescape(const uint8_t *p, size_t len, struct pst_buf *out);

/*
 * Test hooks (scram.c), for RFC vectors whose nonces are not base64 of
 * whole random bytes: fix the nonce of an exchange before its first step.
 * The nonce must be printable (RFC 5802 §7), at most 64 octets.
 * Returns: 0, PST_EINVAL (not SCRAM, bad nonce), PST_ESTATE (too late).
 */
int pst__scram_client_set_nonce(struct pst_sasl_client *c, const char *nonce);
int pst__scram_server_set_nonce(struct pst_sasl_server *s, const char *nonce);

/*
 * scram_cache.c: ClientKey, StoredKey and ServerKey for password pw
 * (SASLprep'd), salt and iter, from cache c when it has them, else
 * derived (pst__scram_derive) and stored in c.  c == NULL: always derived.
 * Returns: 0, PST_EINVAL, PST_ENOMEM.
 */
int pst__scram_cache_derive(struct pst_scram_cache *c, enum pst_scram_hash h,
                            const uint8_t *pw, size_t pw_len,
                            const uint8_t *salt, size_t salt_len,
                            unsigned iter, uint8_t *client_key,
                            uint8_t *stored_key, uint8_t *server_key);
/*
 * Store keys for (h, pw, salt, iter) in c, replacing an entry for the
 * same parameters or the least recently used one.  Tests use it to plant
 * keys that no derivation would give.
 * Returns: 0, PST_ELIMIT (salt longer than an entry holds), PST_ENOMEM.
 */
int pst__scram_cache_put(struct pst_scram_cache *c, enum pst_scram_hash h,
                         const uint8_t *pw, size_t pw_len,
                         const uint8_t *salt, size_t salt_len, unsigned iter,
                         const uint8_t *client_key,
                         const uint8_t *server_key);

#endif
