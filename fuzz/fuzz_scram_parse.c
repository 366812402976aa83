/*
 * Fuzz target: the SCRAM message parsers and saslname escaping
 * (lib/sasl/scram_parse.c, RFC 5802 §7).
 *
 * The whole input is one message, given to each of the four parsers,
 * and a saslname for escape/unescape.
 *
 * Invariants (abort() on a violation):
 * - every span a parser returns lies inside the input;
 * - client-first-message = gs2-header client-first-message-bare, the
 *   two spans covering the input exactly (the AuthMessage depends on it),
 *   and client-final-message-without-proof starts the client-final
 *   message;
 * - unescape(escape(x)) == x, and escape(unescape(x)) == x when x is a
 *   saslname (no ",") that unescapes.
 */
#include <stdlib.h>
#include <string.h>

#include <postern/buf.h>
#include <postern/sasl.h>

#include "fuzz.h"
#include "../lib/sasl/mech.h"

static const uint8_t *in_p;
static size_t in_len;

static void
check_span(const struct pst__scram_span *s)
{
    if (s->len == 0)
        return;
    if (s->p == NULL || s->p < in_p || s->len > in_len ||
        (size_t)(s->p - in_p) > in_len - s->len)
        abort();
}

static void
fuzz_parsers(void)
{
    struct pst__scram_client_first cf;
    struct pst__scram_server_first sf;
    struct pst__scram_client_final cl;
    struct pst__scram_server_final sv;
    const char *why = NULL;

    if (pst__scram_parse_client_first(in_p, in_len, &cf, &why) == 0) {
        check_span(&cf.cb_name);
        check_span(&cf.authzid);
        check_span(&cf.gs2);
        check_span(&cf.bare);
        check_span(&cf.user);
        check_span(&cf.nonce);
        if (cf.gs2.p != in_p || cf.gs2.len + cf.bare.len != in_len ||
            cf.bare.p != in_p + cf.gs2.len)
            abort();
    }
    if (pst__scram_parse_server_first(in_p, in_len, &sf, &why) == 0) {
        check_span(&sf.nonce);
        check_span(&sf.salt);
    }
    if (pst__scram_parse_client_final(in_p, in_len, &cl, &why) == 0) {
        check_span(&cl.cbind);
        check_span(&cl.nonce);
        check_span(&cl.without_proof);
        check_span(&cl.proof);
        if (cl.without_proof.p != in_p || cl.without_proof.len >= in_len)
            abort();
    }
    if (pst__scram_parse_server_final(in_p, in_len, &sv, &why) == 0)
        check_span(&sv.value);
}

static void
fuzz_escape(void)
{
    struct pst_buf esc, back;

    pst_buf_init(&esc, 3 * in_len + 1, 0);
    pst_buf_init(&back, in_len + 1, 0);
    if (pst__scram_escape(in_p, in_len, &esc) != 0)
        abort();
    if (pst__scram_unescape(esc.data != NULL ? esc.data
                                             : (const uint8_t *)"",
                            esc.len, &back) != 0 ||
        back.len != in_len ||
        (in_len > 0 && memcmp(back.data, in_p, in_len) != 0))
        abort();
    /* Unescaping is strict (only "=2C" and "=3D"), so on a saslname,
     * which has no raw "," (RFC 5802 §7), it is one-to-one. */
    pst_buf_reset(&back);
    pst_buf_reset(&esc);
    if (memchr(in_p, ',', in_len) == NULL &&
        pst__scram_unescape(in_p, in_len, &back) == 0) {
        if (pst__scram_escape(back.data != NULL ? back.data
                                                : (const uint8_t *)"",
                              back.len, &esc) != 0 ||
            esc.len != in_len ||
            (in_len > 0 && memcmp(esc.data, in_p, in_len) != 0))
            abort();
    }
    pst_buf_clear(&esc);
    pst_buf_clear(&back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in_p = data;
    in_len = size;
    fuzz_parsers();
    fuzz_escape();
    return 0;
}
