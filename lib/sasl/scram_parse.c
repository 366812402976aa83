/*
 * SCRAM messages (RFC 5802 §7): strict parsing and saslname escaping.
 * Parsing only splits and checks the grammar; scram.c decides what the
 * values mean (nonces, channel binding, proofs) and prints the replies.
 */
#include <string.h>

#include "mech.h"

/* Splits a message at "," (RFC 5802 §7: attributes are comma-separated). */
struct scram_reader {
    const uint8_t *p;
    const uint8_t *end;
    int done;          /* the last field has been returned */
};

static void
scram_reader_init(struct scram_reader *r, const uint8_t *in, size_t len)
{
    r->p = in;
    r->end = in + len;
    r->done = 0;
}

/* Next field into *f; 0, or -1 when there are no more. */
static int
scram_next(struct scram_reader *r, struct pst__scram_span *f)
{
    const uint8_t *comma;

    if (r->done)
        return -1;
    comma = memchr(r->p, ',', (size_t)(r->end - r->p));
    f->p = r->p;
    if (comma == NULL) {
        f->len = (size_t)(r->end - r->p);
        r->p = r->end;
        r->done = 1;
    } else {
        f->len = (size_t)(comma - r->p);
        r->p = comma + 1;
    }
    return 0;
}

/* Whether f is "name=..."; the value goes to *val. */
static int
scram_attr(const struct pst__scram_span *f, char name,
           struct pst__scram_span *val)
{
    if (f->len < 2 || f->p[0] != (uint8_t)name || f->p[1] != '=')
        return 0;
    val->p = f->p + 2;
    val->len = f->len - 2;
    return 1;
}

static int
scram_is_alpha(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* RFC 5802 §7: printable = %x21-2B / %x2D-7E (no ","), one or more. */
static int
scram_printable(const struct pst__scram_span *v)
{
    if (v->len == 0)
        return 0;
    for (size_t i = 0; i < v->len; i++)
        if (v->p[i] < 0x21 || v->p[i] > 0x7e || v->p[i] == ',')
            return 0;
    return 1;
}

/*
 * RFC 5802 §7: the base64 rule's alphabet.  The strict decoder checks the
 * rest (padding, length) when the value is used.
 */
static int
scram_base64_chars(const struct pst__scram_span *v)
{
    for (size_t i = 0; i < v->len; i++) {
        uint8_t c = v->p[i];

        if (!scram_is_alpha(c) && !(c >= '0' && c <= '9') && c != '+' &&
            c != '/' && c != '=')
            return 0;
    }
    return 1;
}

/*
 * The rest of a message as extensions (RFC 5802 §7): attr-val
 * *("," attr-val), attr-val = ALPHA "=" value, value = 1*value-char.
 * Unknown extensions are ignored, but RFC 5802 §5.1: the "m" attribute
 * is reserved and "its presence in a client or a server message MUST
 * cause authentication failure".
 */
static int
scram_extensions(struct scram_reader *r, const char **why)
{
    struct pst__scram_span f;

    while (scram_next(r, &f) == 0) {
        if (f.len < 3 || !scram_is_alpha(f.p[0]) || f.p[1] != '=') {
            *why = "SCRAM: malformed extension";
            return PST_EPROTO;
        }
        if (f.p[0] == 'm') {
            *why = "SCRAM: unsupported mandatory extension m=";
            return PST_EPROTO;
        }
    }
    return 0;
}

/* NUL is in no SCRAM message: value-char, printable and base64 omit it. */
static int
scram_check_nul(const uint8_t *in, size_t len, const char **why)
{
    if (memchr(in, '\0', len) != NULL) {
        *why = "SCRAM: NUL byte in message";
        return PST_EPROTO;
    }
    return 0;
}

/* RFC 5802 §7: cb-name = 1*(ALPHA / DIGIT / "." / "-"). */
static int
scram_cb_name(const struct pst__scram_span *v)
{
    if (v->len == 0)
        return 0;
    for (size_t i = 0; i < v->len; i++) {
        uint8_t c = v->p[i];

        if (!scram_is_alpha(c) && !(c >= '0' && c <= '9') && c != '.' &&
            c != '-')
            return 0;
    }
    return 1;
}

int
pst__scram_cb_type_ok(const char *name)
{
    struct pst__scram_span v = {.p = (const uint8_t *)name,
                                .len = strlen(name)};

    return v.len <= PST_SASL_MAX_CB_NAME && scram_cb_name(&v);
}

int
pst__scram_parse_client_first(const uint8_t *in, size_t len,
                              struct pst__scram_client_first *out,
                              const char **why)
{
    struct scram_reader r;
    struct pst__scram_span f;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = scram_check_nul(in, len, why)) < 0)
        return rc;
    scram_reader_init(&r, in, len);

    /* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
    if (scram_next(&r, &f) < 0 || r.done) {
        *why = "SCRAM: no GS2 header";
        return PST_EPROTO;
    }
    if (f.len == 1 && f.p[0] == 'n') {
        out->cbind = PST__SCRAM_CB_NONE;
    } else if (f.len == 1 && f.p[0] == 'y') {
        out->cbind = PST__SCRAM_CB_UNUSED;
    } else if (scram_attr(&f, 'p', &out->cb_name) &&
               scram_cb_name(&out->cb_name)) {
        out->cbind = PST__SCRAM_CB_REQUIRED;
    } else {
        *why = "SCRAM: bad GS2 channel-binding flag";
        return PST_EPROTO;
    }
    if (scram_next(&r, &f) < 0 || r.done) {
        *why = "SCRAM: GS2 header not terminated";
        return PST_EPROTO;
    }
    /* authzid = "a=" saslname; saslname is 1*(...), so "a=" is bad. */
    if (f.len > 0 && (!scram_attr(&f, 'a', &out->authzid) ||
                      out->authzid.len == 0)) {
        *why = "SCRAM: bad GS2 authzid";
        return PST_EPROTO;
    }
    out->gs2.p = in;
    out->gs2.len = (size_t)(r.p - in);
    out->bare.p = r.p;
    out->bare.len = len - out->gs2.len;

    /* client-first-message-bare = [reserved-mext ","] username ","
     * nonce ["," extensions] */
    if (scram_next(&r, &f) < 0) {
        *why = "SCRAM: empty client-first-message-bare";
        return PST_EPROTO;
    }
    if (f.len >= 2 && f.p[0] == 'm' && f.p[1] == '=') {
        *why = "SCRAM: unsupported mandatory extension m=";
        return PST_EPROTO;
    }
    if (!scram_attr(&f, 'n', &out->user) || out->user.len == 0) {
        *why = "SCRAM: no user name (n=)";
        return PST_EPROTO;
    }
    if (scram_next(&r, &f) < 0 || !scram_attr(&f, 'r', &out->nonce)) {
        *why = "SCRAM: no client nonce (r=)";
        return PST_EPROTO;
    }
    if (!scram_printable(&out->nonce)) {
        *why = "SCRAM: client nonce not printable";
        return PST_EPROTO;
    }
    return scram_extensions(&r, why);
}

/* RFC 5802 §7: posit-number = %x31-39 *DIGIT, here at most INT_MAX (the
 * bound of PBKDF2's count in OpenSSL). */
static int
scram_posit_number(const struct pst__scram_span *v, unsigned *out)
{
    unsigned long n = 0;

    if (v->len == 0 || v->p[0] < '1' || v->p[0] > '9')
        return 0;
    for (size_t i = 0; i < v->len; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return 0;
        n = n * 10 + (unsigned long)(v->p[i] - '0');
        if (n > 0x7fffffffUL)
            return 0;
    }
    *out = (unsigned)n;
    return 1;
}

int
pst__scram_parse_server_first(const uint8_t *in, size_t len,
                              struct pst__scram_server_first *out,
                              const char **why)
{
    struct scram_reader r;
    struct pst__scram_span f, v;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = scram_check_nul(in, len, why)) < 0)
        return rc;
    scram_reader_init(&r, in, len);

    /* server-first-message = [reserved-mext ","] nonce "," salt ","
     * iteration-count ["," extensions] */
    if (scram_next(&r, &f) < 0)
        return PST_EPROTO;
    if (f.len >= 2 && f.p[0] == 'm' && f.p[1] == '=') {
        *why = "SCRAM: unsupported mandatory extension m=";
        return PST_EPROTO;
    }
    if (!scram_attr(&f, 'r', &out->nonce) || !scram_printable(&out->nonce)) {
        *why = "SCRAM: bad nonce (r=) in server-first-message";
        return PST_EPROTO;
    }
    if (scram_next(&r, &f) < 0 || !scram_attr(&f, 's', &out->salt) ||
        out->salt.len == 0 || !scram_base64_chars(&out->salt)) {
        *why = "SCRAM: bad salt (s=)";
        return PST_EPROTO;
    }
    if (scram_next(&r, &f) < 0 || !scram_attr(&f, 'i', &v) ||
        !scram_posit_number(&v, &out->iterations)) {
        *why = "SCRAM: bad iteration count (i=)";
        return PST_EPROTO;
    }
    return scram_extensions(&r, why);
}

int
pst__scram_parse_client_final(const uint8_t *in, size_t len,
                              struct pst__scram_client_final *out,
                              const char **why)
{
    struct scram_reader r;
    struct pst__scram_span f;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = scram_check_nul(in, len, why)) < 0)
        return rc;
    scram_reader_init(&r, in, len);

    /* client-final-message-without-proof = channel-binding "," nonce
     * ["," extensions]; client-final-message = ... "," proof */
    if (scram_next(&r, &f) < 0 || !scram_attr(&f, 'c', &out->cbind) ||
        out->cbind.len == 0 || !scram_base64_chars(&out->cbind)) {
        *why = "SCRAM: bad channel binding (c=)";
        return PST_EPROTO;
    }
    if (scram_next(&r, &f) < 0 || !scram_attr(&f, 'r', &out->nonce) ||
        !scram_printable(&out->nonce)) {
        *why = "SCRAM: bad nonce (r=) in client-final-message";
        return PST_EPROTO;
    }
    for (;;) {
        const uint8_t *start = r.p;

        if (scram_next(&r, &f) < 0) {
            *why = "SCRAM: no proof (p=)";
            return PST_EPROTO;
        }
        if (scram_attr(&f, 'p', &out->proof)) {
            /* RFC 5802 §7: the proof is the last attribute. */
            if (!r.done) {
                *why = "SCRAM: proof (p=) is not last";
                return PST_EPROTO;
            }
            if (out->proof.len == 0 || !scram_base64_chars(&out->proof)) {
                *why = "SCRAM: bad proof (p=)";
                return PST_EPROTO;
            }
            out->without_proof.p = in;
            out->without_proof.len = (size_t)(start - in) - 1;
            return 0;
        }
        if (f.len < 3 || !scram_is_alpha(f.p[0]) || f.p[1] != '=') {
            *why = "SCRAM: malformed extension";
            return PST_EPROTO;
        }
        if (f.p[0] == 'm') {
            *why = "SCRAM: unsupported mandatory extension m=";
            return PST_EPROTO;
        }
    }
}

int
pst__scram_parse_server_final(const uint8_t *in, size_t len,
                              struct pst__scram_server_final *out,
                              const char **why)
{
    struct scram_reader r;
    struct pst__scram_span f;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = scram_check_nul(in, len, why)) < 0)
        return rc;
    scram_reader_init(&r, in, len);

    /* server-final-message = (server-error / verifier) ["," extensions] */
    if (scram_next(&r, &f) < 0)
        return PST_EPROTO;
    if (scram_attr(&f, 'e', &out->value)) {
        out->error = 1;
        if (out->value.len == 0) {
            *why = "SCRAM: empty server error (e=)";
            return PST_EPROTO;
        }
    } else if (scram_attr(&f, 'v', &out->value)) {
        if (out->value.len == 0 || !scram_base64_chars(&out->value)) {
            *why = "SCRAM: bad verifier (v=)";
            return PST_EPROTO;
        }
    } else {
        *why = "SCRAM: server-final-message is neither v= nor e=";
        return PST_EPROTO;
    }
    return scram_extensions(&r, why);
}

int
pst__scram_escape(const uint8_t *p, size_t len, struct pst_buf *out)
{
    int rc = 0;

    /* RFC 5802 §5.1: "," and "=" in names are sent as "=2C" and "=3D". */
    for (size_t i = 0; i < len && rc == 0; i++) {
        if (p[i] == ',')
            rc = pst_buf_append(out, "=2C", 3);
        else if (p[i] == '=')
            rc = pst_buf_append(out, "=3D", 3);
        else
            rc = pst_buf_append_byte(out, p[i]);
    }
    return rc;
}

int
pst__scram_unescape(const uint8_t *p, size_t len, struct pst_buf *out)
{
    int rc = 0;

    for (size_t i = 0; i < len && rc == 0; i++) {
        if (p[i] != '=') {
            rc = pst_buf_append_byte(out, p[i]);
            continue;
        }
        /* RFC 5802 §5.1: "If the server receives a username that contains
         * '=' not followed by either '2C' or '3D', then the server MUST
         * fail the authentication." */
        if (len - i < 3)
            return PST_EPROTO;
        if (p[i + 1] == '2' && p[i + 2] == 'C')
            rc = pst_buf_append_byte(out, ',');
        else if (p[i + 1] == '3' && p[i + 2] == 'D')
            rc = pst_buf_append_byte(out, '=');
        else
            return PST_EPROTO;
        i += 2;
    }
    return rc;
}
