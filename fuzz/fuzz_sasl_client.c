/*
 * Fuzz target: the client half of every SASL mechanism
 * (include/postern/sasl.h); the input plays a hostile server.
 *
 * Input: a mechanism byte, an option byte, then the server's challenges
 * separated by FUZZ_SEP (0xff).  The mechanism byte (value % 11): PLAIN,
 * LOGIN, CRAM-MD5, DIGEST-MD5, SCRAM-SHA-1, SCRAM-SHA-256, OAUTHBEARER,
 * XOAUTH2, SCRAM-SHA-256-PLUS (tls-exporter), SCRAM-SHA-1-PLUS
 * (tls-unique), EXTERNAL.  Option bits:
 *   0-2  unused
 *   3    ask for an authorization identity ("admin")
 *   4    no initial response: the first challenge is the first step
 *        (else step(NULL) first, as a client sending an IR does)
 *   5    SCRAM: accept any iteration count from 1 (else the default
 *        minimum, 4096)
 *   6    plain SCRAM: the client has binding data (so it sends "y");
 *        the -PLUS mechanisms always have it
 *   7    DIGEST-MD5: accept qop auth-int and auth-conf (every cipher);
 *        after a success with a layer, the rest of the messages are the
 *        server's protected stream, fed to the layer's unwrap
 *        (fuzz_layer())
 *
 * The client uses the user, password and nonce of its mechanism's RFC
 * example, so the RFC server messages in the corpus complete the
 * exchange.  A SCRAM server-first message asking for more than
 * FUZZ_SCRAM_MAX_ITER iterations ends the input: the client would accept
 * up to PST_SCRAM_MAX_ITERATIONS (10^7), a PBKDF2 that takes seconds and
 * only proves that PBKDF2 is slow.
 *
 * Invariants (abort() on a violation): a mechanism whose server must
 * prove itself (PST_MECH_SERVER_PROOF) lets pst_sasl_client_finish()
 * succeed only after a step returned DONE; a bearer mechanism that
 * received an error challenge answers it with its dummy response (0x01,
 * XOAUTH2: empty), keeps it for pst_sasl_client_error_json() and never
 * lets pst_sasl_client_finish() succeed; no step succeeds after the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/sasl.h>

#include "fuzz.h"
#include "../lib/sasl/mech.h"

#define FUZZ_MAX_STEPS      64
#define FUZZ_SCRAM_MAX_ITER 16384

struct mech_setup {
    const char *name;
    const char *user;
    const char *password;
    const char *host;       /* DIGEST-MD5 digest-uri host */
    const char *service;    /* NULL: "smtp" */
    const char *nonce;      /* client nonce hook (DIGEST cnonce, SCRAM) */
    const char *token;      /* bearer mechanisms */
    unsigned port;          /* OAUTHBEARER port= */
    const char *cb_type;    /* -PLUS */
};

static const uint8_t cb_exporter[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
static const uint8_t cb_unique[12] = {
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
};

static const struct mech_setup setups[] = {
    {.name = "PLAIN", .user = "tim", .password = "tanstaaftanstaaf"},
    {.name = "LOGIN", .user = "tim", .password = "tanstaaftanstaaf"},
    {.name = "CRAM-MD5", .user = "tim", .password = "tanstaaftanstaaf"},
    /* RFC 2831 §4 */
    {.name = "DIGEST-MD5", .user = "chris", .password = "secret",
     .host = "elwood.innosoft.com", .service = "imap",
     .nonce = "OA6MHXh6VqTrRk"},
    /* RFC 5802 §5, RFC 7677 §3 */
    {.name = "SCRAM-SHA-1", .user = "user", .password = "pencil",
     .nonce = "fyko+d2lbbFgONRv9qkxdawL"},
    {.name = "SCRAM-SHA-256", .user = "user", .password = "pencil",
     .nonce = "rOprNGfwEbeRWgbNEkqO"},
    /* RFC 7628 §4.1; Google's XOAUTH2 documentation */
    {.name = "OAUTHBEARER", .user = "user@example.com",
     .host = "server.example.com", .port = 143,
     .token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="},
    {.name = "XOAUTH2", .user = "someuser@example.com",
     .token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"},
    /* tests/unit/test_scram_plus.c's vectors */
    {.name = "SCRAM-SHA-256-PLUS", .user = "user", .password = "pencil",
     .nonce = "rOprNGfwEbeRWgbNEkqO", .cb_type = "tls-exporter"},
    {.name = "SCRAM-SHA-1-PLUS", .user = "user", .password = "pencil",
     .nonce = "fyko+d2lbbFgONRv9qkxdawL", .cb_type = "tls-unique"},
    {.name = "EXTERNAL", .user = "tim"},
};
#define NSETUPS (sizeof(setups) / sizeof(setups[0]))

static int
is_scram(const struct mech_setup *m)
{
    return strncmp(m->name, "SCRAM-", 6) == 0;
}

/* Whether a SCRAM challenge asks for a PBKDF2 too long to fuzz. */
static int
too_many_iterations(const uint8_t *p, size_t len)
{
    struct pst__scram_server_first sf;
    const char *why;

    return pst__scram_parse_server_first(p, len, &sf, &why) == 0 &&
           sf.iterations > FUZZ_SCRAM_MAX_ITER;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct mech_setup *m;
    const struct pst_sasl_mech *mech;
    struct pst_sasl_client_config cfg;
    struct pst_sasl_client *c = NULL;
    struct fuzz_rand rnd;
    struct fuzz_split sp;
    struct pst_buf out;
    uint8_t opt, *seg;
    size_t seg_len;
    int rc = PST_SASL_CONTINUE, done = 0, stepped = 0, bearer;
    int sent_creds = 0, refused = 0;

    if (size < 2)
        return 0;
    m = &setups[data[0] % NSETUPS];
    opt = data[1];
    mech = pst_sasl_mech_find(m->name, strlen(m->name));
    if (mech == NULL)
        abort();
    bearer = (pst_sasl_mech_flags(mech) & PST_MECH_BEARER) != 0;
    fuzz_rand_init(&rnd, NULL, 0);
    cfg = (struct pst_sasl_client_config){
        .authcid = m->user,
        .authzid = (opt & 0x08u) ? "admin" : NULL,
        .password = (const uint8_t *)m->password,
        .password_len = m->password != NULL ? strlen(m->password) : 0,
        .token = (const uint8_t *)m->token,
        .token_len = m->token != NULL ? strlen(m->token) : 0,
        .oauth_host = m->host,
        .oauth_port = m->port,
        .cb_type = m->cb_type,
        .digest_qops = (opt & 0x80u) ? PST_SASL_QOP_AUTH |
                                           PST_SASL_QOP_AUTH_INT |
                                           PST_SASL_QOP_AUTH_CONF
                                     : 0,
        .service = m->service,
        .host = m->host != NULL ? m->host : "mail.example.test",
        .random = fuzz_random,
        .random_ctx = &rnd,
        .scram_min_iterations = (opt & 0x20u) ? 1 : 0,
    };
    if (m->cb_type != NULL || (opt & 0x40u)) {
        int unique = m->cb_type != NULL &&
                     strcmp(m->cb_type, "tls-unique") == 0;

        cfg.cb_data = unique ? cb_unique : cb_exporter;
        cfg.cb_len = unique ? sizeof(cb_unique) : sizeof(cb_exporter);
    }
    if (pst_sasl_client_new(mech, &cfg, &c) != 0)
        abort();
    if (m->nonce != NULL) {
        rc = is_scram(m) ? pst__scram_client_set_nonce(c, m->nonce)
                         : pst__digest_md5_client_set_cnonce(c, m->nonce);
        if (rc != 0)
            abort();
    }
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    fuzz_split_init(&sp, data + 2, size - 2);

    rc = PST_SASL_CONTINUE;
    if (!(opt & 0x10u)) {
        rc = pst_sasl_client_step(c, NULL, 0, &out);
        stepped = 1;
        sent_creds = rc == PST_SASL_CONTINUE;
    }
    for (int guard = 0; guard < FUZZ_MAX_STEPS && rc == PST_SASL_CONTINUE;
         guard++) {
        if (!fuzz_split_next(&sp, &seg, &seg_len))
            break;
        if (is_scram(m) && too_many_iterations(seg, seg_len)) {
            free(seg);
            break;
        }
        pst_buf_reset(&out);
        rc = pst_sasl_client_step(c, seg, seg_len, &out);
        stepped = 1;
        if (bearer && rc == PST_SASL_CONTINUE) {
            if (sent_creds) {
                /* RFC 7628 §3.2.3: the error challenge gets the dummy
                 * response and is kept for the log. */
                size_t n;
                const uint8_t *j = pst_sasl_client_error_json(c, &n);

                if (j == NULL || n != seg_len ||
                    memcmp(j, seg, n) != 0 ||
                    out.len != (strcmp(m->name, "XOAUTH2") == 0 ? 0u
                                                                 : 1u) ||
                    (out.len == 1 && out.data[0] != 0x01))
                    abort();
                refused = 1;
            }
            sent_creds = 1;
        }
        free(seg);
    }
    if (rc == PST_SASL_DONE)
        done = 1;
#ifdef FUZZ_TRACE
    /* -DFUZZ_TRACE: say how each input ended (for corpus work). */
    fprintf(stderr, "%s: rc %d %s\n", m->name, rc,
            rc < 0 ? pst_errname(rc) : "");
#endif

    /* The server says "235": may the client believe it? */
    if ((pst_sasl_mech_flags(mech) & PST_MECH_SERVER_PROOF) && !done &&
        pst_sasl_client_finish(c) == 0)
        abort();
    /* Nor after a refused token. */
    if (refused && pst_sasl_client_finish(c) == 0)
        abort();
    if (done) {
        struct pst_sasl_layer *l = NULL;

        if (pst_sasl_client_layer(c, &l) != 0)
            abort();
        if (l != NULL)
            fuzz_layer(l, &sp);
        pst_sasl_layer_free(l);
    }
    if (stepped && (done || rc < 0)) {
        pst_buf_reset(&out);
        if (pst_sasl_client_step(c, (const uint8_t *)"", 0, &out) >= 0)
            abort();
    }
    pst_sasl_client_free(c);
    pst_buf_clear(&out);
    return 0;
}
