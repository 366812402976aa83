/*
 * Fuzz target: the server half of every SASL mechanism
 * (include/postern/sasl.h).
 *
 * Input: a mechanism byte, an option byte, then the client's messages
 * separated by FUZZ_SEP (0xff).  The mechanism byte (value % 11): PLAIN,
 * LOGIN, CRAM-MD5, DIGEST-MD5, SCRAM-SHA-1, SCRAM-SHA-256, OAUTHBEARER,
 * XOAUTH2, SCRAM-SHA-256-PLUS (tls-exporter, data 00..1f), SCRAM-SHA-1-PLUS
 * (tls-unique, data a0..ab), EXTERNAL (the certificate maps to "tim").
 * Option bits:
 *   0    the server has binding data (the -PLUS mechanisms always) and
 *        advertised -PLUS: a plain SCRAM "y" is a downgrade
 *   1    EXTERNAL: no client certificate (no external_id)
 *   2    DIGEST-MD5: offer qop auth, auth-int and auth-conf (every
 *        cipher); after a success with a layer, the rest of the
 *        messages are the client's protected stream, fed to the
 *        layer's unwrap (fuzz_layer())
 *   3-4  credentials given at NEED_CRED: 0 the mechanism's RFC user,
 *        1 none (unknown user), 2 "{PLAIN}pencil", 3 stored verifiers
 *        only ({CRAM-MD5} {DIGEST-MD5} {SCRAM-SHA-1} {SCRAM-SHA-256});
 *        for the bearer mechanisms (no NEED_CRED): 1 refuses every
 *        token, the others accept the RFC's token only
 *   5    the first message is an initial response (else step(NULL))
 *   6    probe misuse before each step: set_cred(), verified() and
 *        password() when nothing was asked must all refuse
 *   7    give SCRAM a secret for the fake salts of unknown users
 *
 * Each mechanism runs with the settings of its RFC example (host, realm,
 * service, nonce or challenge, OAuth scope and port), so the RFC messages
 * in the corpus reach the end of the exchange.  NEED_VERIFY is answered
 * with pst_cred_verify(), or for a bearer token by comparing it with the
 * RFC's.
 *
 * Invariants (abort() on a violation): an unknown user never
 * authenticates; a success names an authcid, comes after a lookup (a
 * bearer mechanism: after the token was accepted) and, for PLAIN, LOGIN
 * and the bearer mechanisms, follows a password or token the driver
 * accepted; a refused token never authenticates; no step succeeds after
 * the end; an answer asked for is accepted, one not asked for is refused;
 * EXTERNAL succeeds only as the certificate's user, without an authzid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/cred.h>
#include <postern/sasl.h>

#include "fuzz.h"
#include "../lib/sasl/mech.h"

#define FUZZ_MAX_STEPS 64

struct mech_setup {
    const char *name;
    const char *hostname;
    const char *service;         /* NULL: "smtp" */
    uint64_t timestamp;
    const uint8_t *rand_prefix;  /* first random bytes */
    size_t rand_prefix_len;
    const char *nonce;           /* server nonce hook (DIGEST, SCRAM) */
    const char *cred;            /* the RFC example's user */
    const char *token;           /* bearer: the token accepted */
    unsigned oauth_port;
    const char *oauth_scope;
    const char *oauth_openid;
    const char *cb_type;         /* -PLUS: the binding type */
    const uint8_t *cb;
    size_t cb_len;
};

static const uint8_t cb_exporter[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
static const uint8_t cb_unique[12] = {
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
};

/* RFC 2195 §2: "<1896.697170952@postoffice.reston.mci.net>". */
static const uint8_t cram_rand[] = {0, 0, 0, 0, 0, 0, 0x07, 0x68};

static const struct mech_setup setups[] = {
    /* RFC 4616 §4 */
    {.name = "PLAIN", .hostname = "mail.example.test",
     .cred = "{PLAIN}tanstaaftanstaaf"},
    {.name = "LOGIN", .hostname = "mail.example.test",
     .cred = "{PLAIN}tanstaaftanstaaf"},
    /* RFC 2195 §2 */
    {.name = "CRAM-MD5", .hostname = "postoffice.reston.mci.net",
     .timestamp = 697170952, .rand_prefix = cram_rand,
     .rand_prefix_len = sizeof(cram_rand),
     .cred = "{PLAIN}tanstaaftanstaaf"},
    /* RFC 2831 §4 */
    {.name = "DIGEST-MD5", .hostname = "elwood.innosoft.com",
     .service = "imap", .nonce = "OA6MG9tEQGm2hh", .cred = "{PLAIN}secret"},
    /* RFC 5802 §5 */
    {.name = "SCRAM-SHA-1", .hostname = "mail.example.test",
     .nonce = "3rfcNHYJY1ZVvWVs7j",
     .cred = "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,"
             "6dlGYMOdZcOPutkcNY8U2g7vK9Y=,D+CSWLOshSulAsxiupA+qs2/fTE="},
    /* RFC 7677 §3 */
    {.name = "SCRAM-SHA-256", .hostname = "mail.example.test",
     .nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
     .cred = "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
             "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
             "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="},
    /* RFC 7628 §4.1 and §4.3 */
    {.name = "OAUTHBEARER", .hostname = "server.example.com",
     .cred = "{PLAIN}unused",
     .token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
     .oauth_port = 143, .oauth_scope = "example_scope",
     .oauth_openid = "https://example.com/.well-known/openid-config"},
    /* Google's XOAUTH2 documentation */
    {.name = "XOAUTH2", .hostname = "mail.example.test",
     .cred = "{PLAIN}unused",
     .token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
     .oauth_scope = "https://mail.google.com/"},
    /* tests/unit/test_scram_plus.c's vectors */
    {.name = "SCRAM-SHA-256-PLUS", .hostname = "mail.example.test",
     .nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
     .cred = "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
             "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
             "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
     .cb_type = "tls-exporter", .cb = cb_exporter,
     .cb_len = sizeof(cb_exporter)},
    {.name = "SCRAM-SHA-1-PLUS", .hostname = "mail.example.test",
     .nonce = "3rfcNHYJY1ZVvWVs7j",
     .cred = "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,"
             "6dlGYMOdZcOPutkcNY8U2g7vK9Y=,D+CSWLOshSulAsxiupA+qs2/fTE=",
     .cb_type = "tls-unique", .cb = cb_unique, .cb_len = sizeof(cb_unique)},
    /* RFC 4954 §4.1's "AUTH EXTERNAL =" */
    {.name = "EXTERNAL", .hostname = "mail.example.test",
     .cred = "{PLAIN}tanstaaftanstaaf"},
};
#define NSETUPS (sizeof(setups) / sizeof(setups[0]))

/* Stored forms of INTEROP.md (tim, chris@elwood.innosoft.com, user). */
static const char stored_cred[] =
    "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
    "54b21152711fb604ca3e035e7015116b "
    "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7 "
    "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,"
    "6dlGYMOdZcOPutkcNY8U2g7vK9Y=,D+CSWLOshSulAsxiupA+qs2/fTE= "
    "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

static const uint8_t scram_secret[] = "fuzz fake-salt secret";
static const char *const uri_hosts[] = {"127.0.0.1", "[::1]", NULL};

/* Parsed once, kept for the life of the process. */
static struct pst_cred *rfc_creds[NSETUPS];
static struct pst_cred *pencil_cred;
static struct pst_cred *stored;

static struct pst_cred *
parse_or_die(const char *text)
{
    struct pst_cred *c = NULL;

    if (pst_cred_parse(text, strlen(text), &c) != 0)
        abort();
    return c;
}

static void
init_creds(void)
{
    if (pencil_cred != NULL)
        return;
    for (size_t i = 0; i < NSETUPS; i++)
        rfc_creds[i] = parse_or_die(setups[i].cred);
    stored = parse_or_die(stored_cred);
    pencil_cred = parse_or_die("{PLAIN}pencil");
}

/* Answers given where none was asked for must be refused. */
static void
probe_misuse(struct pst_sasl_server *s, const struct pst_cred *cred)
{
    size_t len = 1;

    if (pst_sasl_server_set_cred(s, cred) != PST_ESTATE)
        abort();
    if (pst_sasl_server_verified(s, 1) != PST_ESTATE)
        abort();
    if (pst_sasl_server_password(s, &len) != NULL || len != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct mech_setup *m;
    const struct pst_sasl_mech *mech;
    const struct pst_cred *cred;
    struct pst_sasl_server_config cfg;
    struct pst_sasl_server *s = NULL;
    struct fuzz_rand rnd;
    struct fuzz_split sp;
    struct pst_buf out;
    uint8_t opt, *seg = NULL;
    size_t seg_len;
    int rc, probe, bearer, done = 0, asked_cred = 0, verified_ok = 0;

    if (size < 2)
        return 0;
    init_creds();
    m = &setups[data[0] % NSETUPS];
    opt = data[1];
    switch ((opt >> 3) & 3u) {
    case 0:
        cred = rfc_creds[m - setups];
        break;
    case 1:
        cred = NULL;
        break;
    case 2:
        cred = pencil_cred;
        break;
    default:
        cred = stored;
        break;
    }
    probe = (opt & 0x40u) != 0;
    mech = pst_sasl_mech_find(m->name, strlen(m->name));
    if (mech == NULL)
        abort();
    bearer = (pst_sasl_mech_flags(mech) & PST_MECH_BEARER) != 0;
    fuzz_rand_init(&rnd, m->rand_prefix, m->rand_prefix_len);
    cfg = (struct pst_sasl_server_config){
        .hostname = m->hostname,
        .uri_hosts = uri_hosts,
        .service = m->service,
        .timestamp = m->timestamp,
        .random = fuzz_random,
        .random_ctx = &rnd,
        .scram_secret = (opt & 0x80u) ? scram_secret : NULL,
        .scram_secret_len = (opt & 0x80u) ? sizeof(scram_secret) - 1 : 0,
        .oauth_port = m->oauth_port,
        .oauth_scope = m->oauth_scope,
        .oauth_openid_configuration = m->oauth_openid,
        .external_id = (opt & 0x02u) ? NULL : "tim",
        .digest_qops = (opt & 0x04u) ? PST_SASL_QOP_AUTH |
                                           PST_SASL_QOP_AUTH_INT |
                                           PST_SASL_QOP_AUTH_CONF
                                     : 0,
    };
    if (m->cb != NULL || (opt & 0x01u)) {
        cfg.cb_type = m->cb != NULL ? m->cb_type : "tls-exporter";
        cfg.cb_data = m->cb != NULL ? m->cb : cb_exporter;
        cfg.cb_len = m->cb != NULL ? m->cb_len : sizeof(cb_exporter);
        cfg.cb_plus_offered = 1;
    }
    if (pst_sasl_server_new(mech, &cfg, &s) != 0)
        abort();
    if (m->nonce != NULL) {
        rc = (pst_sasl_mech_flags(mech) & PST_MECH_HISTORIC)
                 ? pst__digest_md5_server_set_nonce(s, m->nonce)
                 : pst__scram_server_set_nonce(s, m->nonce);
        if (rc != 0)
            abort();
    }
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    fuzz_split_init(&sp, data + 2, size - 2);

    if (probe)
        probe_misuse(s, cred);
    if ((opt & 0x20u) && fuzz_split_next(&sp, &seg, &seg_len)) {
        rc = pst_sasl_server_step(s, seg, seg_len, &out);
        free(seg);
    } else {
        rc = pst_sasl_server_step(s, NULL, 0, &out);
    }
    for (int guard = 0; guard < FUZZ_MAX_STEPS; guard++) {
        if (rc == PST_SASL_NEED_CRED) {
            if (pst_sasl_server_verified(s, 1) != PST_ESTATE)
                abort();
            if (pst_sasl_server_set_cred(s, cred) != 0)
                abort();
            asked_cred = 1;
            rc = pst_sasl_server_step(s, NULL, 0, &out);
        } else if (rc == PST_SASL_NEED_VERIFY) {
            const char *user = pst_sasl_server_authcid(s);
            size_t len;
            const uint8_t *pw = pst_sasl_server_password(s, &len);
            int ok;

            if (pw == NULL || pst_sasl_server_set_cred(s, cred) !=
                                  PST_ESTATE)
                abort();
            /* A token is not a password: only a token verifier may
             * judge it (here: the RFC's token, for a known user). */
            if (bearer)
                ok = cred != NULL && len == strlen(m->token) &&
                     memcmp(pw, m->token, len) == 0 && user != NULL;
            else
                ok = pst_cred_verify(cred, user != NULL ? user : "", pw,
                                     len) == 0;
            if (pst_sasl_server_verified(s, ok) != 0)
                abort();
            verified_ok |= ok;
            rc = pst_sasl_server_step(s, NULL, 0, &out);
        } else if (rc == PST_SASL_CONTINUE) {
            if (!fuzz_split_next(&sp, &seg, &seg_len))
                break;
            if (probe)
                probe_misuse(s, cred);
            rc = pst_sasl_server_step(s, seg, seg_len, &out);
            free(seg);
        } else {
            break;
        }
    }

#ifdef FUZZ_TRACE
    /* -DFUZZ_TRACE: say how each input ended (for corpus work). */
    fprintf(stderr, "%s: rc %d %s: %s\n", m->name, rc,
            rc < 0 ? pst_errname(rc) : "", pst_sasl_server_reason(s));
#endif
    if (rc == PST_SASL_DONE) {
        done = 1;
        /* An unknown user must fail exactly like a wrong password; a
         * success follows a lookup, and for PLAIN and LOGIN a password
         * the driver said was right. */
        if (cred == NULL || !(bearer ? verified_ok : asked_cred) ||
            pst_sasl_server_authcid(s) == NULL)
            abort();
        if ((pst_sasl_mech_flags(mech) & PST_MECH_SENDS_PASSWORD) &&
            !verified_ok)
            abort();
        if ((pst_sasl_mech_flags(mech) & PST_MECH_EXTERNAL) &&
            (cfg.external_id == NULL ||
             strcmp(pst_sasl_server_authcid(s), cfg.external_id) != 0 ||
             pst_sasl_server_authzid(s) != NULL))
            abort();
    }
    if (rc == PST_SASL_DONE) {
        struct pst_sasl_layer *l = NULL;

        if (pst_sasl_server_layer(s, &l) != 0)
            abort();
        if (l != NULL)
            fuzz_layer(l, &sp);
        pst_sasl_layer_free(l);
    }
    if (rc == PST_SASL_DONE || rc < 0) {
        /* The exchange is over: nothing more may succeed. */
        rc = pst_sasl_server_step(s, (const uint8_t *)"", 0, &out);
        if (rc >= 0)
            abort();
        if (probe)
            probe_misuse(s, cred);
    }
    /* What a driver reads for its log. */
    {
        const char *a = pst_sasl_server_authcid(s);
        const char *z = pst_sasl_server_authzid(s);
        volatile size_t n = strlen(pst_sasl_server_reason(s));

        n += a != NULL ? strlen(a) : 0;
        n += z != NULL ? strlen(z) : 0;
        (void)n;
        if (done && pst_sasl_server_mech(s) != mech)
            abort();
    }
    pst_sasl_server_free(s);
    pst_buf_clear(&out);
    return 0;
}
