/*
 * SCRAM-SHA-1-PLUS and SCRAM-SHA-256-PLUS (RFC 5802 §6, RFC 7677) with
 * tls-exporter (RFC 9266) and tls-unique (RFC 5929) binding data, and the
 * gs2-cbind-flag rules of the plain mechanisms ("n", "y", the downgrade
 * check).
 *
 * No RFC publishes a -PLUS exchange, so the vectors below were computed
 * outside postern (Python hashlib.pbkdf2_hmac and hmac, the RFC 5802 §3
 * formulas) from the RFC 5802 §5 / RFC 7677 §3 user, password, salts and
 * nonces, with made-up binding data: 32 bytes 00..1f for tls-exporter, 12
 * bytes a0..ab (a TLS 1.2 Finished verify_data) for tls-unique.  The same
 * script reproduces RFC 7677's own exchange with "n,,".
 */
#include "testutil.h"

#include "../../lib/sasl/mech.h"

#define SHA256_STORED                                                        \
    "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"                         \
    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"                         \
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define SHA1_STORED                                                          \
    "{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"      \
    "D+CSWLOshSulAsxiupA+qs2/fTE="
#define SHA256_SFIRST                                                        \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                 \
    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SHA1_SFIRST                                                          \
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"      \
    "i=4096"

static const uint8_t cb_exporter[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
static const uint8_t cb_unique[12] = {
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
};

struct vector {
    const char *mech;
    const char *cb_type;        /* NULL: the client has no binding data */
    const uint8_t *cb;
    size_t cb_len;
    const char *authzid;
    const char *cnonce, *snonce, *stored;
    const char *cfirst, *sfirst, *cfinal, *sfinal;
};

static const struct vector vectors[] = {
    {
        .mech = "SCRAM-SHA-256-PLUS",
        .cb_type = "tls-exporter",
        .cb = cb_exporter,
        .cb_len = sizeof(cb_exporter),
        .cnonce = "rOprNGfwEbeRWgbNEkqO",
        .snonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        .stored = SHA256_STORED,
        .cfirst = "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        .sfirst = SHA256_SFIRST,
        /* c= is base64("p=tls-exporter,," 00 01 .. 1f) */
        .cfinal = "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUW"
                  "FxgZGhscHR4f,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxF"
                  "Ilj)hNlF$k0,p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vr"
                  "s2M=",
        .sfinal = "v=2GiAgapEppLVlUXbxUDksL3VgYHzuqiK5tR4mhJGgvs=",
    },
    {
        .mech = "SCRAM-SHA-1-PLUS",
        .cb_type = "tls-unique",
        .cb = cb_unique,
        .cb_len = sizeof(cb_unique),
        .cnonce = "fyko+d2lbbFgONRv9qkxdawL",
        .snonce = "3rfcNHYJY1ZVvWVs7j",
        .stored = SHA1_STORED,
        .cfirst = "p=tls-unique,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        .sfirst = SHA1_SFIRST,
        .cfinal = "c=cD10bHMtdW5pcXVlLCygoaKjpKWmp6ipqqs=,r=fyko+d2lbbFgO"
                  "NRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=Dnxqb/XkEZw7Mr9zpPANRK"
                  "xQJ5E=",
        .sfinal = "v=Fd8XThniH1Drtsd3mQW3glgmVd8=",
    },
    {
        .mech = "SCRAM-SHA-256-PLUS",
        .cb_type = "tls-unique",
        .cb = cb_unique,
        .cb_len = sizeof(cb_unique),
        .authzid = "admin",
        .cnonce = "rOprNGfwEbeRWgbNEkqO",
        .snonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        .stored = SHA256_STORED,
        .cfirst = "p=tls-unique,a=admin,n=user,r=rOprNGfwEbeRWgbNEkqO",
        .sfirst = SHA256_SFIRST,
        .cfinal = "c=cD10bHMtdW5pcXVlLGE9YWRtaW4soKGio6Slpqeoqaqr,r=rOprN"
                  "GfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=n/3Tl9"
                  "u1f/lhtQX2GnYOp/obg1HT0rNXZxWnzB1Zvf8=",
        .sfinal = "v=hR5ZJLFqd1irSyLxWHdzQkggJozXv4NdM04qyg9PTTE=",
    },
    /* A plain mechanism, a client that could bind, a server that offered
     * no -PLUS: "y" (RFC 5802 §6), and c= is base64("y,,"). */
    {
        .mech = "SCRAM-SHA-256",
        .cb_type = "tls-exporter",
        .cb = cb_exporter,
        .cb_len = sizeof(cb_exporter),
        .cnonce = "rOprNGfwEbeRWgbNEkqO",
        .snonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        .stored = SHA256_STORED,
        .cfirst = "y,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        .sfirst = SHA256_SFIRST,
        .cfinal = "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hN"
                  "lF$k0,p=FoqiHTtQEDE8lz1CdaEe3tK4mS+iMDTl77SPyDS53DY=",
        .sfinal = "v=dI4KpiQJwBr1+V+K6U1dA6l6I4I9DUNXWND4pcpRU3U=",
    },
};

static const struct pst_sasl_mech *
mech(const char *name)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(name, strlen(name));

    assert_non_null(m);
    return m;
}

static int
sstep(struct pst_sasl_server *s, const char *msg, struct pst_buf *out)
{
    return pst_sasl_server_step(s, (const uint8_t *)msg, strlen(msg), out);
}

static int
cstep(struct pst_sasl_client *c, const char *msg, struct pst_buf *out)
{
    return pst_sasl_client_step(c, (const uint8_t *)msg, strlen(msg), out);
}

static struct pst_sasl_server_config
server_cfg(const char *type, const uint8_t *cb, size_t len, int offered)
{
    return (struct pst_sasl_server_config){
        .hostname = "mail.example.test",
        .cb_type = type,
        .cb_data = cb,
        .cb_len = len,
        .cb_plus_offered = offered,
    };
}

static struct pst_cred *
cred_new(const char *text)
{
    struct pst_cred *c = NULL;

    assert_rc(pst_cred_parse(text, strlen(text), &c), 0);
    return c;
}

static void
test_client_vectors(void **state)
{
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 1);
    for (size_t i = 0; i < PST__ARRAY_LEN(vectors); i++) {
        const struct vector *v = &vectors[i];
        struct pst_sasl_client_config cfg = {
            .authcid = "user",
            .authzid = v->authzid,
            .password = (const uint8_t *)"pencil",
            .password_len = 6,
            .cb_type = v->cb_type,
            .cb_data = v->cb,
            .cb_len = v->cb_len,
        };
        struct pst_sasl_client *c;

        assert_rc(pst_sasl_client_new(mech(v->mech), &cfg, &c), 0);
        assert_rc(pst__scram_client_set_nonce(c, v->cnonce), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, v->cfirst);
        assert_rc(cstep(c, v->sfirst, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, v->cfinal);
        assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
        assert_rc(cstep(c, v->sfinal, &out), PST_SASL_DONE);
        assert_rc(pst_sasl_client_finish(c), 0);
        pst_sasl_client_free(c);
    }
    pst_buf_clear(&out);
}

static void
test_server_vectors(void **state)
{
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(vectors); i++) {
        const struct vector *v = &vectors[i];
        /* The plain-mechanism row: a server that offered no -PLUS (and
         * has no binding data to give). */
        int plus = pst_sasl_mech_flags(mech(v->mech)) &
                   PST_MECH_CHANNEL_BINDING;
        struct pst_sasl_server_config cfg =
            plus ? server_cfg(v->cb_type, v->cb, v->cb_len, 1)
                 : server_cfg(NULL, NULL, 0, 0);
        struct pst_cred *cred = cred_new(v->stored);
        struct pst_sasl_server *s;

        assert_rc(pst_sasl_server_new(mech(v->mech), &cfg, &s), 0);
        assert_rc(pst__scram_server_set_nonce(s, v->snonce), 0);
        assert_rc(sstep(s, v->cfirst, &out), PST_SASL_NEED_CRED);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, v->sfirst);
        assert_rc(sstep(s, v->cfinal, &out), PST_SASL_CONTINUE);
        assert_buf_str(&out, v->sfinal);
        assert_rc(sstep(s, "", &out), PST_SASL_DONE);
        assert_string_equal(pst_sasl_server_authcid(s), "user");
        if (v->authzid != NULL)
            assert_string_equal(pst_sasl_server_authzid(s), v->authzid);
        else
            assert_null(pst_sasl_server_authzid(s));
        pst_sasl_server_free(s);
        pst_cred_free(cred);
    }
    pst_buf_clear(&out);
}

/*
 * The server's gs2-cbind-flag and c= checks, row by row: each row is a
 * mechanism, what the server has and offered, and the client's two
 * messages; want is the first error (or DONE).
 */
static void
test_server_cbind_rules(void **state)
{
    static const struct {
        const char *what, *mech;
        const char *type;      /* server's binding type; NULL: none */
        const uint8_t *cb;
        size_t cb_len;
        int offered;           /* server advertised -PLUS */
        const char *cfirst, *cfinal;
        int want_first;        /* NEED_CRED or an error */
        int want_final;        /* CONTINUE (v=) or an error */
        const char *reason;
    } v[] = {
        {"-PLUS, binding data of another connection", "SCRAM-SHA-256-PLUS",
         "tls-exporter", cb_unique, sizeof(cb_unique), 1,
         "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhsc"
         "HR4f,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=QC6"
         "CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=",
         PST_SASL_NEED_CRED, PST_EAUTH, "SCRAM: channel binding mismatch"},
        /* c= = base64("p=tls-exporter,," 00..1e): one byte short. */
        {"-PLUS, binding data cut short", "SCRAM-SHA-256-PLUS",
         "tls-exporter", cb_exporter, sizeof(cb_exporter), 1,
         "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhsc"
         "HR4=,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=QC6"
         "CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=",
         PST_SASL_NEED_CRED, PST_EAUTH, "SCRAM: channel binding mismatch"},
        /* c= = base64("p=tls-exporter,,"): no binding data at all. */
        {"-PLUS, c= without binding data", "SCRAM-SHA-256-PLUS",
         "tls-exporter", cb_exporter, sizeof(cb_exporter), 1,
         "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=cD10bHMtZXhwb3J0ZXIsLA==,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaT"
         "CAfuxFIlj)hNlF$k0,p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=",
         PST_SASL_NEED_CRED, PST_EAUTH, "SCRAM: channel binding mismatch"},
        /* c= = base64("n,," 00..1f): the header differs from the first
         * message's. */
        {"-PLUS, c= with another gs2 header", "SCRAM-SHA-256-PLUS",
         "tls-exporter", cb_exporter, sizeof(cb_exporter), 1,
         "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=biwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,r=rOprNGfwEb"
         "eRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=QC6CS20quADQRb3mT99Y"
         "UH+n3VJxUvzuK0K0E1Vrs2M=",
         PST_SASL_NEED_CRED, PST_EPROTO,
         "SCRAM: c= does not match the GS2 header"},
        {"-PLUS, another binding type", "SCRAM-SHA-256-PLUS",
         "tls-exporter", cb_exporter, sizeof(cb_exporter), 1,
         "p=tls-unique,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL, PST_EAUTH, 0,
         "SCRAM: unsupported channel-binding type"},
        {"-PLUS, binding type in another case", "SCRAM-SHA-256-PLUS",
         "tls-exporter", cb_exporter, sizeof(cb_exporter), 1,
         "p=TLS-EXPORTER,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL, PST_EAUTH,
         0, "SCRAM: unsupported channel-binding type"},
        {"-PLUS with n", "SCRAM-SHA-256-PLUS", "tls-exporter", cb_exporter,
         sizeof(cb_exporter), 1, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL,
         PST_EPROTO, 0, "SCRAM: -PLUS without p= channel binding"},
        {"-PLUS with y", "SCRAM-SHA-1-PLUS", "tls-unique", cb_unique,
         sizeof(cb_unique), 1, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL,
         PST_EPROTO, 0, "SCRAM: -PLUS without p= channel binding"},
        /* RFC 5802 §6: "y" when the server offered -PLUS is a
         * downgrade; without -PLUS offered it is fine. */
        {"y after -PLUS was offered", "SCRAM-SHA-256", "tls-exporter",
         cb_exporter, sizeof(cb_exporter), 1,
         "y,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL, PST_EAUTH, 0,
         "SCRAM: client could bind (\"y\") but we offered -PLUS: "
         "downgrade"},
        {"y after -PLUS was offered, SHA-1", "SCRAM-SHA-1", NULL, NULL, 0,
         1, "y,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", NULL, PST_EAUTH, 0,
         "SCRAM: client could bind (\"y\") but we offered -PLUS: "
         "downgrade"},
        {"y, no -PLUS offered", "SCRAM-SHA-256", "tls-exporter", cb_exporter,
         sizeof(cb_exporter), 0, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=Fo"
         "qiHTtQEDE8lz1CdaEe3tK4mS+iMDTl77SPyDS53DY=",
         PST_SASL_NEED_CRED, PST_SASL_CONTINUE, ""},
        /* "n" is fine whatever was offered: the client cannot bind. */
        {"n after -PLUS was offered", "SCRAM-SHA-256", "tls-exporter",
         cb_exporter, sizeof(cb_exporter), 1,
         "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dH"
         "zbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
         PST_SASL_NEED_CRED, PST_SASL_CONTINUE, ""},
        /* c= must still repeat the header: "y,," then c=biws ("n,,"). */
        {"y, then c= of n", "SCRAM-SHA-256", NULL, NULL, 0, 0,
         "y,,n=user,r=rOprNGfwEbeRWgbNEkqO",
         "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dH"
         "zbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
         PST_SASL_NEED_CRED, PST_EPROTO,
         "SCRAM: c= does not match the GS2 header"},
        {"p= on a plain mechanism", "SCRAM-SHA-256", "tls-exporter",
         cb_exporter, sizeof(cb_exporter), 1,
         "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL, PST_EPROTO,
         0, "SCRAM: channel binding asked of a mechanism without it"},
        {"p= on a plain mechanism, nothing offered", "SCRAM-SHA-1", NULL,
         NULL, 0, 0, "p=tls-unique,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
         NULL, PST_EPROTO, 0,
         "SCRAM: channel binding asked of a mechanism without it"},
    };
    struct pst_cred *cred = cred_new(SHA256_STORED " " SHA1_STORED);
    struct pst_buf out;

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_server_config cfg =
            server_cfg(v[i].type, v[i].cb, v[i].cb_len, v[i].offered);
        struct pst_sasl_server *s;
        int rc;

        assert_rc(pst_sasl_server_new(mech(v[i].mech), &cfg, &s), 0);
        assert_rc(pst__scram_server_set_nonce(
                      s, strstr(v[i].mech, "SHA-1") != NULL
                             ? "3rfcNHYJY1ZVvWVs7j"
                             : "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
                  0);
        rc = sstep(s, v[i].cfirst, &out);
        if (rc != v[i].want_first) {
            fprintf(stderr, "%s: first: got %s (%s), want %s\n", v[i].what,
                    pst_errname(rc), pst_sasl_server_reason(s),
                    pst_errname(v[i].want_first));
            fail();
        }
        if (rc == PST_SASL_NEED_CRED) {
            assert_rc(pst_sasl_server_set_cred(s, cred), 0);
            assert_rc(pst_sasl_server_step(s, NULL, 0, &out),
                      PST_SASL_CONTINUE);
            rc = sstep(s, v[i].cfinal, &out);
            if (rc != v[i].want_final) {
                fprintf(stderr, "%s: final: got %s (%s), want %s\n",
                        v[i].what, pst_errname(rc),
                        pst_sasl_server_reason(s),
                        pst_errname(v[i].want_final));
                fail();
            }
        }
        assert_string_equal(pst_sasl_server_reason(s), v[i].reason);
        pst_sasl_server_free(s);
    }
    pst_cred_free(cred);
    pst_buf_clear(&out);
}

/* What the config must hold, both halves. */
static void
test_config_errors(void **state)
{
    static uint8_t big[PST_SASL_MAX_CB_DATA + 1];
    struct pst_sasl_server_config scfg;
    struct pst_sasl_client_config ccfg = {
        .authcid = "user",
        .password = (const uint8_t *)"pencil",
        .password_len = 6,
    };
    struct pst_sasl_server *s = (struct pst_sasl_server *)&s;
    struct pst_sasl_client *c = (struct pst_sasl_client *)&c;
    const char *const plus[] = {"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"};

    (void)state;
    for (size_t i = 0; i < PST__ARRAY_LEN(plus); i++) {
        const struct pst_sasl_mech *m = mech(plus[i]);

        /* Server: -PLUS needs a type and data. */
        scfg = server_cfg(NULL, NULL, 0, 1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), PST_EINVAL);
        assert_null(s);
        scfg = server_cfg("tls-exporter", NULL, 0, 1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), PST_EINVAL);
        scfg = server_cfg(NULL, cb_exporter, sizeof(cb_exporter), 1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), PST_EINVAL);
        scfg = server_cfg("tls exporter", cb_exporter, sizeof(cb_exporter),
                          1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), PST_EINVAL);
        scfg = server_cfg("", cb_exporter, sizeof(cb_exporter), 1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), PST_EINVAL);
        scfg = server_cfg("tls-exporter", big, sizeof(big), 1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), PST_ELIMIT);
        scfg = server_cfg("tls-exporter", big, sizeof(big) - 1, 1);
        assert_rc(pst_sasl_server_new(m, &scfg, &s), 0);
        pst_sasl_server_free(s);

        /* Client: the same. */
        ccfg.cb_type = NULL;
        ccfg.cb_data = NULL;
        ccfg.cb_len = 0;
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), PST_EINVAL);
        assert_null(c);
        ccfg.cb_type = "tls-unique";
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), PST_EINVAL);
        ccfg.cb_len = 12;
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), PST_EINVAL);
        ccfg.cb_data = cb_unique;
        ccfg.cb_type = "tls,unique";
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), PST_EINVAL);
        ccfg.cb_type = NULL;
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), PST_EINVAL);
        ccfg.cb_type = "tls-unique";
        ccfg.cb_data = big;
        ccfg.cb_len = sizeof(big);
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), PST_ELIMIT);
        ccfg.cb_data = cb_unique;
        ccfg.cb_len = sizeof(cb_unique);
        assert_rc(pst_sasl_client_new(m, &ccfg, &c), 0);
        pst_sasl_client_free(c);
    }
    /* A client that can bind may not pick plain SCRAM when the server
     * offers -PLUS (RFC 5802 §6 "MUST use a 'p' gs2-cbind-flag"); it
     * may when it has no binding data. */
    ccfg.cb_plus_offered = 1;
    assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-256"), &ccfg, &c),
              PST_EINVAL);
    ccfg.cb_data = NULL;
    ccfg.cb_len = 0;
    assert_rc(pst_sasl_client_new(mech("SCRAM-SHA-256"), &ccfg, &c), 0);
    pst_sasl_client_free(c);
    /* A plain server ignores a type without data; data without a pointer
     * is a mistake. */
    scfg = server_cfg(NULL, NULL, 4, 0);
    assert_rc(pst_sasl_server_new(mech("SCRAM-SHA-256"), &scfg, &s),
              PST_EINVAL);
}

/*
 * Our client against our server, both -PLUS mechanisms with both binding
 * types; a man in the middle (two TLS connections, so two sets of
 * binding data) is caught; the key cache serves -PLUS and plain alike.
 */
static void
test_roundtrip(void **state)
{
    static const struct {
        const char *mech, *type;
        const uint8_t *ccb, *scb;
        size_t ccb_len, scb_len;
        int want;
    } v[] = {
        {"SCRAM-SHA-256-PLUS", "tls-exporter", cb_exporter, cb_exporter,
         32, 32, PST_SASL_DONE},
        {"SCRAM-SHA-256-PLUS", "tls-unique", cb_unique, cb_unique, 12, 12,
         PST_SASL_DONE},
        {"SCRAM-SHA-1-PLUS", "tls-exporter", cb_exporter, cb_exporter, 32,
         32, PST_SASL_DONE},
        {"SCRAM-SHA-1-PLUS", "tls-unique", cb_unique, cb_unique, 12, 12,
         PST_SASL_DONE},
        {"SCRAM-SHA-256-PLUS", "tls-exporter", cb_exporter, cb_exporter + 1,
         31, 31, PST_EAUTH},
        {"SCRAM-SHA-1-PLUS", "tls-unique", cb_unique, cb_unique, 12, 11,
         PST_EAUTH},
    };
    struct pst_scram_cache *cache;
    struct pst_cred *cred = cred_new(SHA256_STORED " " SHA1_STORED);
    struct pst_buf cb, sb;

    (void)state;
    pst_buf_init(&cb, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&sb, PST_SASL_MAX_MESSAGE, 0);
    assert_rc(pst_sasl_scram_cache_new(0, &cache), 0);
    for (size_t i = 0; i < PST__ARRAY_LEN(v); i++) {
        struct pst_sasl_client_config ccfg = {
            .authcid = "user",
            .password = (const uint8_t *)"pencil",
            .password_len = 6,
            .cb_type = v[i].type,
            .cb_data = v[i].ccb,
            .cb_len = v[i].ccb_len,
            .cb_plus_offered = 1,
            .scram_cache = cache,
        };
        struct pst_sasl_server_config scfg =
            server_cfg(v[i].type, v[i].scb, v[i].scb_len, 1);
        struct pst_sasl_client *c;
        struct pst_sasl_server *s;
        int rc;

        assert_rc(pst_sasl_client_new(mech(v[i].mech), &ccfg, &c), 0);
        assert_rc(pst_sasl_server_new(mech(v[i].mech), &scfg, &s), 0);
        assert_rc(pst_sasl_client_step(c, NULL, 0, &cb), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_server_step(s, cb.data, cb.len, &sb),
                  PST_SASL_NEED_CRED);
        assert_rc(pst_sasl_server_set_cred(s, cred), 0);
        assert_rc(pst_sasl_server_step(s, NULL, 0, &sb), PST_SASL_CONTINUE);
        assert_rc(pst_sasl_client_step(c, sb.data, sb.len, &cb),
                  PST_SASL_CONTINUE);
        rc = pst_sasl_server_step(s, cb.data, cb.len, &sb);
        if (v[i].want == PST_SASL_DONE) {
            assert_rc(rc, PST_SASL_CONTINUE);
            assert_rc(pst_sasl_client_step(c, sb.data, sb.len, &cb),
                      PST_SASL_DONE);
            assert_rc(pst_sasl_server_step(s, cb.data, cb.len, &sb),
                      PST_SASL_DONE);
        } else {
            assert_rc(rc, v[i].want);
            assert_string_equal(pst_sasl_server_reason(s),
                                "SCRAM: channel binding mismatch");
            assert_rc(pst_sasl_client_finish(c), PST_EFORGED);
        }
        pst_sasl_client_free(c);
        pst_sasl_server_free(s);
    }
    {
        uint64_t hits, misses;

        /* Two salts (SHA-1, SHA-256): two derivations for six logins. */
        pst_sasl_scram_cache_stats(cache, &hits, &misses);
        assert_int_equal(misses, 2);
        assert_int_equal(hits, 4);
    }
    pst_sasl_scram_cache_free(cache);
    pst_cred_free(cred);
    pst_buf_clear(&cb);
    pst_buf_clear(&sb);
}

/* An unknown user under -PLUS gets the same made-up salt as under plain
 * SCRAM (a stored salt is shared by both, so must a fake one be); so
 * does a {PLAIN} user, whether the exchange derives its keys or
 * pst_sasl_server_cred_prepare() made them beforehand (posternd's
 * thread pool), and all of them show the one salt of that name. */
static void
test_unknown_user_salt(void **state)
{
    static const uint8_t secret[] = "fake-salt secret";
    enum { UNKNOWN, PLAIN, PREPARED, KINDS };
    struct pst_cred *plain = cred_new("{PLAIN}pencil");
    struct pst_buf out, salts[2 * KINDS];

    (void)state;
    pst_buf_init(&out, PST_SASL_MAX_MESSAGE, 0);
    for (int i = 0; i < 2 * KINDS; i++)
        pst_buf_init(&salts[i], PST_SASL_MAX_MESSAGE, 0);
    for (int plus = 0; plus <= 1; plus++) {
        for (int kind = UNKNOWN; kind < KINDS; kind++) {
            struct pst_sasl_server_config cfg =
                server_cfg("tls-exporter", cb_exporter, 32, 1);
            const struct pst_sasl_mech *m =
                mech(plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256");
            struct pst_cred *pre = NULL;
            struct pst_sasl_server *s;
            const char *first = plus ? "p=tls-exporter,,n=nobody,r=abc"
                                     : "n,,n=nobody,r=abc";
            const char *salt;

            cfg.scram_secret = secret;
            cfg.scram_secret_len = sizeof(secret) - 1;
            if (kind == PREPARED)
                assert_rc(pst_sasl_server_cred_prepare(m, &cfg, "nobody",
                                                       plain, &pre),
                          0);
            assert_rc(pst_sasl_server_new(m, &cfg, &s), 0);
            assert_rc(sstep(s, first, &out), PST_SASL_NEED_CRED);
            assert_rc(pst_sasl_server_set_cred(s, kind == UNKNOWN ? NULL
                                                  : kind == PLAIN ? plain
                                                                  : pre),
                      0);
            assert_rc(pst_sasl_server_step(s, NULL, 0, &out),
                      PST_SASL_CONTINUE);
            assert_rc(pst_buf_append(&out, "", 0), 0);
            salt = strstr((const char *)out.data, ",s=");
            assert_non_null(salt);
            assert_rc(pst_buf_append_str(&salts[plus * KINDS + kind], salt),
                      0);
            pst_sasl_server_free(s);
            pst_cred_free(pre);
        }
    }
    for (int i = 1; i < 2 * KINDS; i++)
        assert_bytes_equal(salts[0].data, salts[0].len, salts[i].data,
                           salts[i].len);
    for (int i = 0; i < 2 * KINDS; i++)
        pst_buf_clear(&salts[i]);
    pst_buf_clear(&out);
    pst_cred_free(plain);
}

static void
test_mech_table(void **state)
{
    static const char *const first[] = {
        "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
    };

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        const struct pst_sasl_mech *m = mech(first[i]);

        assert_int_equal(pst_sasl_mech_flags(m),
                         PST_MECH_CLIENT_FIRST | PST_MECH_SERVER_PROOF |
                             PST_MECH_CHANNEL_BINDING);
        assert_string_equal(pst_sasl_mech_name(m), first[i]);
    }
    assert_ptr_equal(mech("scram-sha-1-plus"), mech("SCRAM-SHA-1-PLUS"));
    /* Strongest first in the full list; not among the defaults. */
    for (size_t i = 0; i < PST__ARRAY_LEN(first); i++)
        assert_string_equal(pst_sasl_mech_name(pst_sasl_mech_all_at(i)),
                            first[i]);
    for (size_t i = 0; pst_sasl_mech_at(i) != NULL; i++)
        assert_false(pst_sasl_mech_flags(pst_sasl_mech_at(i)) &
                     PST_MECH_CHANNEL_BINDING);
    assert_string_equal(pst_sasl_mech_name(pst_sasl_mech_at(0)),
                        "SCRAM-SHA-256");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_vectors),
        cmocka_unit_test(test_server_vectors),
        cmocka_unit_test(test_server_cbind_rules),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_unknown_user_salt),
        cmocka_unit_test(test_mech_table),
    };
    return cmocka_run_group_tests_name("scram_plus", tests, NULL, NULL);
}
