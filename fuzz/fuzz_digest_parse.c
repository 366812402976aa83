/*
 * Fuzz target: the DIGEST-MD5 message parsers, printers and character set
 * conversions (lib/sasl/digest_md5_parse.c, RFC 2831; the parser class of
 * CVE-2019-19906).
 *
 * The whole input is one message, given to each parser: challenge,
 * response and response-auth.  A parsed response is also validated
 * against the RFC 2831 §4 server's values.
 *
 * Invariants (abort() on a violation):
 * - print then parse gives back what was parsed (response, response-auth,
 *   and a UTF-8 challenge's realm, nonce, qops, maxbuf and ciphers);
 * - ISO 8859-1 -> UTF-8 -> ISO 8859-1 gives back the input, and UTF-8
 *   that converts to ISO 8859-1 converts back to itself.
 */
#include <stdlib.h>
#include <string.h>

#include <postern/buf.h>

#include "fuzz.h"
#include "../lib/sasl/mech.h"

static const char *const uri_hosts[] = {"127.0.0.1", NULL};

static const struct pst__digest_expect expect = {
    .nonce = "OA6MG9tEQGm2hh",
    .realm = "elwood.innosoft.com",
    .service = "imap",
    .hostname = "elwood.innosoft.com",
    .uri_hosts = uri_hosts,
    .qops = PST__DIGEST_QOP_AUTH | PST__DIGEST_QOP_AUTH_INT |
            PST__DIGEST_QOP_AUTH_CONF,
    .ciphers = PST__DIGEST_CIPHER_3DES | PST__DIGEST_CIPHER_RC4,
};

static int
value_eq(const struct pst__digest_value *a, const struct pst__digest_value *b)
{
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

static int
has_nul(const struct pst__digest_value *v)
{
    return memchr(v->s, '\0', v->len) != NULL;
}

static void
fuzz_challenge(const uint8_t *data, size_t size)
{
    static struct pst__digest_challenge ch, again;
    const char *why = NULL;
    struct pst_buf b;

    if (pst__digest_parse_challenge(data, size, &ch, &why) != 0)
        return;
    /* The printer writes charset=utf-8: only a UTF-8 realm comes back. */
    if (ch.nrealms == 0 || !ch.utf8 || has_nul(&ch.realm) ||
        has_nul(&ch.nonce))
        return;
    pst_buf_init(&b, 4 * PST__DIGEST_MAX_CHALLENGE, 0);
    {
        /* A qop list of unknown options only is no offer we print. */
        const struct pst__digest_offer o = {
            .realm = ch.realm.s,
            .nonce = ch.nonce.s,
            .qops = ch.qops != 0 ? ch.qops : PST__DIGEST_QOP_AUTH,
            .maxbuf = ch.maxbuf,
            .ciphers = ch.ciphers,
        };

        if (pst__digest_print_challenge(&b, &o) == 0 &&
            (pst__digest_parse_challenge(b.data, b.len, &again, &why) != 0 ||
             !value_eq(&ch.realm, &again.realm) ||
             !value_eq(&ch.nonce, &again.nonce) || !again.utf8 ||
             again.qops != o.qops ||
             (o.qops != PST__DIGEST_QOP_AUTH &&
              again.maxbuf != ch.maxbuf) ||
             ((o.qops & PST__DIGEST_QOP_AUTH_CONF) &&
              again.ciphers != ch.ciphers)))
            abort();
    }
    pst_buf_clear(&b);
}

static void
fuzz_response(const uint8_t *data, size_t size)
{
    static struct pst__digest_response r, again;
    const char *why = NULL;
    struct pst_buf b;

    if (pst__digest_parse_response(data, size, &r, &why) != 0)
        return;
    (void)pst__digest_validate_response(&r, &expect, &why);
    pst_buf_init(&b, 4 * PST__DIGEST_MAX_RESPONSE, 0);
    if (pst__digest_print_response(&b, &r) == 0) {
        if (pst__digest_parse_response(b.data, b.len, &again, &why) != 0)
            abort();
        if (!value_eq(&r.username, &again.username) ||
            r.has_realm != again.has_realm ||
            (r.has_realm && !value_eq(&r.realm, &again.realm)) ||
            !value_eq(&r.nonce, &again.nonce) ||
            !value_eq(&r.cnonce, &again.cnonce) ||
            !value_eq(&r.nc, &again.nc) ||
            !value_eq(&r.digest_uri, &again.digest_uri) ||
            !value_eq(&r.response, &again.response) ||
            r.has_authzid != again.has_authzid ||
            (r.has_authzid && !value_eq(&r.authzid, &again.authzid)) ||
            r.utf8 != again.utf8 || again.qop != r.qop ||
            again.maxbuf != r.maxbuf ||
            (r.qop == PST__DIGEST_QOP_AUTH_CONF &&
             again.cipher != r.cipher))
            abort();
    }
    pst_buf_clear(&b);
}

static void
fuzz_finish(const uint8_t *data, size_t size)
{
    char rspauth[PST__DIGEST_HEX + 1], again[PST__DIGEST_HEX + 1];
    const char *why = NULL;
    struct pst_buf b;

    if (pst__digest_parse_finish(data, size, rspauth, &why) != 0)
        return;
    pst_buf_init(&b, 256, 0);
    if (pst__digest_print_finish(&b, rspauth) != 0 ||
        pst__digest_parse_finish(b.data, b.len, again, &why) != 0 ||
        memcmp(rspauth, again, sizeof(again)) != 0)
        abort();
    pst_buf_clear(&b);
}

static void
fuzz_charsets(const uint8_t *data, size_t size)
{
    size_t cap = 2 * size + 1, n = 0, m = 0;
    uint8_t *u = malloc(cap), *l = malloc(cap);

    if (u == NULL || l == NULL)
        goto out;
    /* Every ISO 8859-1 string has a UTF-8 form, two bytes a character at
     * most, and it comes back unchanged. */
    if (pst__digest_latin1_to_utf8((const char *)data, size, u, cap,
                                   &n) != 0 ||
        pst__digest_utf8_to_latin1(u, n, l, cap, &m) != 0 || m != size ||
        (size > 0 && memcmp(l, data, size) != 0))
        abort();
    if (pst__digest_utf8_to_latin1(data, size, l, cap, &m) == 0) {
        if (pst__digest_latin1_to_utf8((const char *)l, m, u, cap,
                                       &n) != 0 ||
            n != size || (size > 0 && memcmp(u, data, size) != 0))
            abort();
    }
out:
    free(u);
    free(l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_challenge(data, size);
    fuzz_response(data, size);
    fuzz_finish(data, size);
    fuzz_charsets(data, size);
    return 0;
}
