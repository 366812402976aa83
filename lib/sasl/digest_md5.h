/*
 * DIGEST-MD5 internals shared by digest_md5.c, digest_md5_parse.c, the
 * tests and the fuzzers (included by mech.h).
 */
#ifndef POSTERN_SASL_DIGEST_MD5_H
#define POSTERN_SASL_DIGEST_MD5_H

/*
 * DIGEST-MD5 (RFC 2831): digest_md5_parse.c parses, validates and prints
 * the messages; digest_md5.c runs the exchanges and the MD5 arithmetic.
 */
#define PST__DIGEST_MAX_VALUE     1024 /* one directive value, octets */
#define PST__DIGEST_MAX_CHALLENGE 2048 /* RFC 2831 §2.1.1: "less than" */
#define PST__DIGEST_MAX_RESPONSE  4096 /* RFC 2831 §2.1.2: "less than" */
#define PST__DIGEST_HEX           32   /* response-value = 32LHEX */

#define PST__DIGEST_QOP_AUTH      PST_SASL_QOP_AUTH      /* no layer */
#define PST__DIGEST_QOP_AUTH_INT  PST_SASL_QOP_AUTH_INT  /* integrity */
#define PST__DIGEST_QOP_AUTH_CONF PST_SASL_QOP_AUTH_CONF /* privacy */

/* cipher-value (RFC 2831 §2.1.1) */
#define PST__DIGEST_CIPHER_3DES   PST_SASL_CIPHER_3DES
#define PST__DIGEST_CIPHER_DES    PST_SASL_CIPHER_DES
#define PST__DIGEST_CIPHER_RC4_40 PST_SASL_CIPHER_RC4_40
#define PST__DIGEST_CIPHER_RC4    PST_SASL_CIPHER_RC4
#define PST__DIGEST_CIPHER_RC4_56 PST_SASL_CIPHER_RC4_56
#define PST__DIGEST_CIPHER_ALL    0x1fu

#define PST__DIGEST_DEFAULT_MAXBUF 65536    /* RFC 2831 §2.1.1 maxbuf */
#define PST__DIGEST_MAX_MAXBUF     16777215 /* "smaller or equal to" */

/* A token of a list directive and the bit it stands for. */
struct pst__digest_token_bit {
    const char *name;
    unsigned bit;
};
#define PST__DIGEST_NQOPS    3
#define PST__DIGEST_NCIPHERS 5
/* digest_md5_print.c: "auth", "auth-int", "auth-conf"; the ciphers. */
extern const struct pst__digest_token_bit
    pst__digest_qop_names[PST__DIGEST_NQOPS];
extern const struct pst__digest_token_bit
    pst__digest_cipher_names[PST__DIGEST_NCIPHERS];

/* One directive value, quotes and escapes removed; NUL-terminated. */
struct pst__digest_value {
    size_t len;
    char   s[PST__DIGEST_MAX_VALUE + 1];
};

/* digest-challenge (RFC 2831 §2.1.1), what a client needs of it. */
struct pst__digest_challenge {
    struct pst__digest_value realm; /* the first realm offered */
    unsigned nrealms;               /* realm directives seen */
    struct pst__digest_value nonce;
    unsigned qops;                  /* PST__DIGEST_QOP_* offered (no
                                       auth-conf without cipher-opts) */
    unsigned maxbuf;                /* the server's receive limit */
    unsigned ciphers;               /* PST__DIGEST_CIPHER_* offered */
    int utf8;                       /* charset=utf-8 */
};

/* What a server's digest-challenge offers. */
struct pst__digest_offer {
    const char *realm;
    const char *nonce;
    unsigned qops;                  /* PST__DIGEST_QOP_* */
    unsigned maxbuf;                /* printed when not 65536 */
    unsigned ciphers;               /* printed with auth-conf */
};

/* digest-response (RFC 2831 §2.1.2). */
struct pst__digest_response {
    struct pst__digest_value username;
    struct pst__digest_value realm;      /* has_realm only */
    struct pst__digest_value nonce;
    struct pst__digest_value cnonce;
    struct pst__digest_value nc;         /* 8LHEX */
    struct pst__digest_value digest_uri;
    struct pst__digest_value response;   /* 32LHEX */
    struct pst__digest_value authzid;    /* has_authzid only */
    int has_realm;
    int has_authzid;                     /* present and not empty */
    int utf8;                            /* charset=utf-8 */
    unsigned qop;                        /* one PST__DIGEST_QOP_* */
    unsigned maxbuf;                     /* the client's receive limit */
    int has_maxbuf;                      /* maxbuf= was (to be) sent */
    unsigned cipher;                     /* one PST__DIGEST_CIPHER_*, with
                                            auth-conf */
};

/* What the server's response must match (RFC 2831 §2.1.2). */
struct pst__digest_expect {
    const char *nonce;
    const char *realm;                   /* UTF-8 */
    const char *service;                 /* digest-uri serv-type */
    const char *hostname;                /* digest-uri host, or ... */
    const char *const *uri_hosts;        /* ... one of these; may be NULL */
    unsigned qops;                       /* offered PST__DIGEST_QOP_* */
    unsigned ciphers;                    /* offered PST__DIGEST_CIPHER_* */
};

/*
 * Parse one message strictly (RFC 2831 §7 grammar; §2.1.1, §2.1.2, §2.1.3
 * presence and value rules).  *why gets a static reason for the log.
 * Returns: 0, PST_EPROTO.
 */
int pst__digest_parse_challenge(const uint8_t *in, size_t len,
                                struct pst__digest_challenge *out,
                                const char **why);
int pst__digest_parse_response(const uint8_t *in, size_t len,
                               struct pst__digest_response *out,
                               const char **why);
int pst__digest_parse_finish(const uint8_t *in, size_t len,
                             char rspauth[PST__DIGEST_HEX + 1],
                             const char **why);
/*
 * Check a parsed response against the server's own values.
 * Returns: 0, PST_EPROTO (nonce, nc, qop or cipher not offered, realm),
 * PST_EAUTH (digest-uri).
 */
int pst__digest_validate_response(const struct pst__digest_response *r,
                                  const struct pst__digest_expect *e,
                                  const char **why);
/*
 * Append a message.  Returns: 0, PST_EINVAL (a value a quoted-string
 * cannot carry), PST_ELIMIT, PST_ENOMEM.
 */
int pst__digest_print_challenge(struct pst_buf *out,
                                const struct pst__digest_offer *o);
/* "auth", "auth-int", "auth-conf"; "3des", ..., or NULL. */
const char *pst__digest_qop_name(unsigned qop);
const char *pst__digest_cipher_name(unsigned cipher);
int pst__digest_print_response(struct pst_buf *out,
                               const struct pst__digest_response *r);
int pst__digest_print_finish(struct pst_buf *out, const char *rspauth);
/*
 * ISO 8859-1 <-> UTF-8 into out[0..cap), *out_len set (RFC 2831 §2.1.2
 * charset).  Returns: 0, PST_ELIMIT (cap too small), PST_ENOTSUP (a code
 * point above U+00FF), PST_EPROTO (not UTF-8).
 */
int pst__digest_latin1_to_utf8(const char *in, size_t len, uint8_t *out,
                               size_t cap, size_t *out_len);
int pst__digest_utf8_to_latin1(const uint8_t *in, size_t len, uint8_t *out,
                               size_t cap, size_t *out_len);
/*
 * digest_md5_layer.c: the security layer for qop (auth-int) and cipher
 * (auth-conf) from H(A1); client != 0 for the client's end.  send_max is
 * the peer's maxbuf, recv_max ours.  *out ([out] owned) is freed with
 * pst_sasl_layer_free().
 * Returns: 0, PST_ENOTSUP (qop or cipher not implemented), PST_ENOMEM.
 */
int pst__digest_layer_new(const uint8_t a1[16], unsigned qop,
                          unsigned cipher, int client, unsigned send_max,
                          unsigned recv_max, struct pst_sasl_layer **out);
/* PST__DIGEST_CIPHER_* this build and OpenSSL can run (0: none). */
unsigned pst__digest_ciphers(void);
/* The first of offered (3des, rc4, des, rc4-56, rc4-40) we can run, or
 * 0. */
unsigned pst__digest_pick_cipher(unsigned offered);
/*
 * A configuration's qops (PST__DIGEST_QOP_*), maxbuf and ciphers (0: all;
 * *ciphers gets those of them available, or all available).
 * Returns: 0, PST_EINVAL (unknown qop or cipher bits, maxbuf out of
 * 17..16777215), PST_ENOTSUP (auth-conf without a cipher to run).
 */
int pst__digest_check_config(unsigned qops, unsigned maxbuf,
                             unsigned *ciphers);

/*
 * Test hooks (digest_md5.c), for the RFC 2831 §4 vectors: fix the server's
 * nonce or the client's cnonce before the first step instead of drawing
 * them from the random source.  At most 64 octets, printable ASCII.
 * Returns: 0, PST_EINVAL (not DIGEST-MD5, bad value), PST_ESTATE (late).
 */
int pst__digest_md5_server_set_nonce(struct pst_sasl_server *s,
                                     const char *nonce);
int pst__digest_md5_client_set_cnonce(struct pst_sasl_client *c,
                                      const char *cnonce);

#endif
