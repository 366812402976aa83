#include <stdlib.h>

#include "testutil.h"

int
test_random(void *ctx, uint8_t *buf, size_t len)
{
    struct test_rand *r = ctx;

    if (r->len - r->pos < len)
        return PST_ETEMP;
    memcpy(buf, r->bytes + r->pos, len);
    r->pos += len;
    return 0;
}

int
test_random_fail(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx, (void)buf, (void)len;
    return PST_ETEMP;
}

void
test_b64dec(const char *text, struct pst_buf *out)
{
    pst_buf_init(out, 1 << 20, 0);
    assert_int_equal(pst_base64_decode((const uint8_t *)text, strlen(text),
                                       out), 0);
}

char *
test_b64enc(const uint8_t *p, size_t len)
{
    struct pst_buf b;

    pst_buf_init(&b, 1 << 20, 0);
    assert_int_equal(pst_base64_encode(p, len, &b), 0);
    assert_int_equal(pst_buf_append(&b, "", 0), 0);
    return (char *)b.data;
}

static void
print_bytes(const char *label, const void *p, size_t len)
{
    const uint8_t *b = p;

    fprintf(stderr, "%s (%zu): \"", label, len);
    for (size_t i = 0; i < len; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\')
            fputc(b[i], stderr);
        else
            fprintf(stderr, "\\x%02x", b[i]);
    }
    fprintf(stderr, "\"\n");
}

void
test_assert_bytes(const void *got, size_t got_len, const void *want,
                  size_t want_len, const char *file, int line)
{
    if (got_len == want_len && (want_len == 0 || memcmp(got, want,
                                                        want_len) == 0))
        return;
    print_bytes("got ", got, got_len);
    print_bytes("want", want, want_len);
    _fail(file, line);
}

void
test_assert_rc(int got, int want, const char *expr, const char *file,
               int line)
{
    if (got == want)
        return;
    fprintf(stderr, "%s: got %d (%s), want %d (%s)\n", expr, got,
            got < 0 ? pst_errname(got) : "progress", want,
            want < 0 ? pst_errname(want) : "progress");
    _fail(file, line);
}

int
test_run_exchange(struct test_exchange *x)
{
    const struct pst_sasl_mech *m = pst_sasl_mech_find(x->mech,
                                                       strlen(x->mech));
    struct pst_sasl_server_config scfg = {
        .hostname = x->hostname != NULL ? x->hostname : "mail.example.test",
        .timestamp = 1700000000,
    };
    struct pst_sasl_client_config ccfg = {
        .authcid = x->authcid,
        .authzid = x->authzid,
        .password = (const uint8_t *)x->password,
        .password_len = x->password != NULL ? strlen(x->password) : 0,
        .host = x->client_host != NULL ? x->client_host : scfg.hostname,
    };
    struct pst_sasl_server *s = NULL;
    struct pst_sasl_client *c = NULL;
    struct pst_cred *cred = NULL;
    struct pst_buf cout, sout;
    int crc, src = PST_EINVAL, guard;

    assert_non_null(m);
    pst_buf_init(&cout, PST_SASL_MAX_MESSAGE, 1);
    pst_buf_init(&sout, PST_SASL_MAX_MESSAGE, 0);
    x->messages = 0;
    x->authcid_seen[0] = x->authzid_seen[0] = '\0';
    if (x->cred_text != NULL)
        assert_int_equal(pst_cred_parse(x->cred_text, strlen(x->cred_text),
                                        &cred), 0);
    assert_int_equal(pst_sasl_server_new(m, &scfg, &s), 0);
    crc = pst_sasl_client_new(m, &ccfg, &c);
    if (crc < 0) {
        x->client_rc = crc;
        goto out;
    }

    /* Client's opening: an initial response if it may and wants to. */
    if ((pst_sasl_mech_flags(m) & PST_MECH_CLIENT_FIRST) &&
        x->use_initial_response) {
        crc = pst_sasl_client_step(c, NULL, 0, &cout);
        x->client_rc = crc;
        if (crc < 0)
            goto out;
        x->messages++;
        src = pst_sasl_server_step(s, cout.data != NULL ? cout.data
                                                        : (const uint8_t *)"",
                                   cout.len, &sout);
    } else {
        src = pst_sasl_server_step(s, NULL, 0, &sout);
    }
    for (guard = 0; guard < 20; guard++) {
        x->server_rc = src;
        if (src == PST_SASL_NEED_CRED) {
            assert_int_equal(pst_sasl_server_set_cred(s, cred), 0);
            src = pst_sasl_server_step(s, NULL, 0, &sout);
            continue;
        }
        if (src == PST_SASL_NEED_VERIFY) {
            size_t len;
            const uint8_t *pw = pst_sasl_server_password(s, &len);

            assert_non_null(pw);
            assert_int_equal(pst_sasl_server_verified(
                                 s, pst_cred_verify(cred,
                                                    pst_sasl_server_authcid(s),
                                                    pw, len) == 0), 0);
            src = pst_sasl_server_step(s, NULL, 0, &sout);
            continue;
        }
        if (src != PST_SASL_CONTINUE)
            break;
        /* A challenge: the client answers. */
        x->messages++;
        crc = pst_sasl_client_step(c, sout.data != NULL ? sout.data
                                                        : (const uint8_t *)"",
                                   sout.len, &cout);
        x->client_rc = crc;
        if (crc < 0)
            goto out;
        x->messages++;
        src = pst_sasl_server_step(s, cout.data != NULL ? cout.data
                                                        : (const uint8_t *)"",
                                   cout.len, &sout);
    }
    x->server_rc = src;
    if (src == PST_SASL_DONE) {
        x->client_rc = pst_sasl_client_finish(c);
        if (pst_sasl_server_authcid(s) != NULL)
            snprintf(x->authcid_seen, sizeof(x->authcid_seen), "%s",
                     pst_sasl_server_authcid(s));
        if (pst_sasl_server_authzid(s) != NULL)
            snprintf(x->authzid_seen, sizeof(x->authzid_seen), "%s",
                     pst_sasl_server_authzid(s));
    }
out:
    pst_sasl_server_free(s);
    pst_sasl_client_free(c);
    pst_cred_free(cred);
    pst_buf_clear(&cout);
    pst_buf_clear(&sout);
    if (x->client_rc < 0)
        return x->client_rc;
    return x->server_rc;
}
