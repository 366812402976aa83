/*
 * The mechanism table and the state every exchange shares.  Each mechanism
 * file (plain.c, login.c, cram_md5.c, digest_md5.c, scram.c) fills one
 * client and one server ops struct with designated initializers; the generic
 * code in mech.c runs the phases (waiting for credentials or a verdict) so
 * that mechanisms only parse, compute and format.
 */
#ifndef POSTERN_SASL_MECH_H
#define POSTERN_SASL_MECH_H

#include <postern/sasl.h>

#include "../internal.h"

struct pst_sasl_server_ops {
    size_t state_size;  /* bytes of private state, zeroed; wiped on free */
    /* Optional: check the mechanism's own config fields at new().
     * Returns 0 or PST_E*. */
    int  (*init)(struct pst_sasl_server *s);
    /* Called with in == NULL when there was no initial response, and with
     * in == NULL to resume after NEED_CRED / NEED_VERIFY. */
    int  (*step)(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                 struct pst_buf *out);
    void (*free)(struct pst_sasl_server *s); /* optional: release extras */
    /* Optional: the security layer after DONE (*out NULL: none). */
    int  (*layer)(struct pst_sasl_server *s, struct pst_sasl_layer **out);
};

struct pst_sasl_client_ops {
    size_t state_size;
    /* Optional: check and copy the mechanism's own config fields (after
     * the state is allocated).  Returns 0 or PST_E*. */
    int  (*init)(struct pst_sasl_client *c,
                 const struct pst_sasl_client_config *cfg);
    int  (*step)(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                 struct pst_buf *out);
    int  (*finish)(const struct pst_sasl_client *c); /* optional */
    void (*free)(struct pst_sasl_client *c);         /* optional */
    int  (*layer)(struct pst_sasl_client *c,
                  struct pst_sasl_layer **out);      /* optional */
};

struct pst_sasl_mech {
    const char *name;
    unsigned    flags;
    const struct pst_sasl_client_ops *client;
    const struct pst_sasl_server_ops *server;
};

enum sasl_phase {
    SASL_PHASE_RUN = 0,     /* the mechanism's step may run */
    SASL_PHASE_WAIT_CRED,   /* NEED_CRED returned; set_cred() not yet */
    SASL_PHASE_WAIT_VERIFY, /* NEED_VERIFY returned; verified() not yet */
    SASL_PHASE_DONE,        /* success */
    SASL_PHASE_FAILED,      /* an error ended it */
};

struct pst_sasl_server {
    const struct pst_sasl_mech *mech;
    struct pst_sasl_server_config cfg;
    enum sasl_phase phase;
    unsigned steps;            /* calls of the mechanism's step */
    /* Received: */
    struct pst_buf authcid;    /* NUL-terminated once set */
    struct pst_buf authzid;
    int has_authcid;
    int has_authzid;           /* set and different from authcid */
    struct pst_buf password;   /* secret; PLAIN/LOGIN only */
    /* Looked up: */
    const struct pst_cred *cred; /* NULL: unknown user */
    int verified;              /* verdict for NEED_VERIFY */
    const char *reason;        /* static text for the log */
    void *state;               /* mechanism's own, state_size bytes */
};

struct pst_sasl_client {
    const struct pst_sasl_mech *mech;
    enum sasl_phase phase;
    unsigned steps;
    /* Copied from the config: */
    struct pst_buf authcid;
    struct pst_buf authzid;    /* empty: none */
    struct pst_buf password;   /* secret */
    struct pst_buf service;
    struct pst_buf host;
    pst_random_fn random;
    void *random_ctx;
    unsigned scram_min_iterations;
    struct pst_scram_cache *scram_cache; /* borrowed */
    struct pst_buf token;      /* secret; bearer mechanisms */
    /* Received: */
    struct pst_buf error_json; /* a bearer mechanism's error challenge */
    int has_error_json;
    void *state;
};

/* Record the reason for the log and return err. */
int pst__sasl_fail(struct pst_sasl_server *s, int err, const char *reason);

/*
 * Store the authentication identity: UTF-8, no NUL, 1..PST_SASL_MAX_NAME
 * octets; with prep != 0 it is SASLprep'd first (SCRAM).
 * Returns: 0, PST_EPROTO, PST_EPREP, PST_ELIMIT, PST_ENOMEM.
 */
int pst__sasl_set_authcid(struct pst_sasl_server *s, const uint8_t *p,
                          size_t len, int prep);
/*
 * Store the authorization identity (same rules; an empty one is none).
 * Call after the authcid: one equal to it is recorded as none.
 */
int pst__sasl_set_authzid(struct pst_sasl_server *s, const uint8_t *p,
                          size_t len, int prep);
/* Store the password for NEED_VERIFY (secret). */
int pst__sasl_set_password(struct pst_sasl_server *s, const uint8_t *p,
                           size_t len);

/* Store a bearer token for NEED_VERIFY (secret, PST_SASL_MAX_TOKEN). */
int pst__sasl_set_token(struct pst_sasl_server *s, const uint8_t *p,
                        size_t len);
/* Keep a bearer mechanism's error challenge for
 * pst_sasl_client_error_json().  Returns: 0, PST_ELIMIT, PST_ENOMEM. */
int pst__sasl_client_set_error_json(struct pst_sasl_client *c,
                                    const uint8_t *p, size_t len);
/* Whether host[0..len) names this server: its hostname or one of
 * uri_hosts, ASCII case-insensitively.  Not secret. */
int pst__sasl_server_is_host(const struct pst_sasl_server *s,
                             const uint8_t *host, size_t len);

/* Server-side service name ("smtp" by default). */
const char *pst__sasl_service(const struct pst_sasl_server *s);

extern const struct pst_sasl_mech pst__mech_plain;
extern const struct pst_sasl_mech pst__mech_login;
extern const struct pst_sasl_mech pst__mech_cram_md5;
extern const struct pst_sasl_mech pst__mech_digest_md5;
extern const struct pst_sasl_mech pst__mech_scram_sha1;
extern const struct pst_sasl_mech pst__mech_scram_sha256;
extern const struct pst_sasl_mech pst__mech_scram_sha1_plus;
extern const struct pst_sasl_mech pst__mech_scram_sha256_plus;
extern const struct pst_sasl_mech pst__mech_external;
extern const struct pst_sasl_mech pst__mech_xoauth2;
extern const struct pst_sasl_mech pst__mech_oauthbearer;

/* cram_md5.c */
/*
 * Parse a CRAM-MD5 response in[0..len) as "user SP 32 lowercase hex digits"
 * (RFC 2195 §2; the user ends at the last space).  *user_len gets the
 * length of the user name, which starts at in; digest the decoded digest.
 * Returns: 0, PST_EPROTO (malformed), PST_ELIMIT (user name too long).
 */
int pst__cram_md5_parse(const uint8_t *in, size_t len, size_t *user_len,
                        uint8_t digest[16]);

#include "digest_md5.h"
#include "scram.h"

#endif
