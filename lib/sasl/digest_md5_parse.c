/*
 * DIGEST-MD5 (RFC 2831) messages: parse and validate, kept apart from
 * printing (digest_md5_print.c) as GNU SASL's lib/digest-md5/parser.c,
 * validate.c and printer.c are.  The exchanges and the MD5 arithmetic are
 * in digest_md5.c.
 *
 * Every message is a list of directives (RFC 2831 §7.1 "#rule"):
 *
 *     1#( token "=" ( token | quoted-string ) )
 *
 * separated by commas and optional LWS, with null elements allowed.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "mech.h"

#define DIGEST_MAX_NAME 32 /* longest directive name we read */

/* The directives we know, in any message. */
enum digest_directive {
    DIGEST_D_UNKNOWN = 0,  /* ignored (RFC 2831 §2.1.1, §2.1.2) */
    DIGEST_D_REALM,
    DIGEST_D_NONCE,
    DIGEST_D_QOP,
    DIGEST_D_STALE,
    DIGEST_D_MAXBUF,
    DIGEST_D_CHARSET,
    DIGEST_D_ALGORITHM,
    DIGEST_D_CIPHER,
    DIGEST_D_USERNAME,
    DIGEST_D_CNONCE,
    DIGEST_D_NC,
    DIGEST_D_DIGEST_URI,
    DIGEST_D_RESPONSE,
    DIGEST_D_AUTHZID,
    DIGEST_D_RSPAUTH,
};

static const struct {
    const char *name;
    enum digest_directive d;
} digest_directives[] = {
    {"realm", DIGEST_D_REALM},
    {"nonce", DIGEST_D_NONCE},
    {"qop", DIGEST_D_QOP},
    {"stale", DIGEST_D_STALE},
    {"maxbuf", DIGEST_D_MAXBUF},
    {"charset", DIGEST_D_CHARSET},
    {"algorithm", DIGEST_D_ALGORITHM},
    {"cipher", DIGEST_D_CIPHER},
    {"username", DIGEST_D_USERNAME},
    {"cnonce", DIGEST_D_CNONCE},
    {"nc", DIGEST_D_NC},
    {"digest-uri", DIGEST_D_DIGEST_URI},
    {"response", DIGEST_D_RESPONSE},
    {"authzid", DIGEST_D_AUTHZID},
    {"rspauth", DIGEST_D_RSPAUTH},
};

/* --- Lexical rules (RFC 2831 §7.2) --------------------------------------- */

/* CTL = <any US-ASCII control character (octets 0 - 31) and DEL (127)> */
static int
digest_is_ctl(uint8_t c)
{
    return c < 0x20 || c == 0x7f;
}

/* token = 1*<any CHAR except CTLs or separators> */
static int
digest_is_token_char(uint8_t c)
{
    static const char separators[] = "()<>@,;:\\\"/[]?={} \t";

    return c < 0x80 && !digest_is_ctl(c) &&
           memchr(separators, c, sizeof(separators) - 1) == NULL;
}

/* LWS = [CRLF] 1*( SP | HT ); returns the index after any run of it. */
static size_t
digest_skip_lws(const uint8_t *in, size_t len, size_t i)
{
    for (;;) {
        if (i < len && (in[i] == ' ' || in[i] == '\t'))
            i++;
        else if (len - i >= 3 && in[i] == '\r' && in[i + 1] == '\n' &&
                 (in[i + 2] == ' ' || in[i + 2] == '\t'))
            i += 3;
        else
            return i;
    }
}

static uint8_t
digest_lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive p[0..len) == lower (a lowercase C string):
 * directive names and keyword values are case-insensitive literals
 * (RFC 2831 §7.1 follows RFC 2616 §2.1: "literal" is case-insensitive). */
static int
digest_caseeq(const char *p, size_t len, const char *lower)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (lower[i] == '\0' || digest_lower((uint8_t)p[i]) != lower[i])
            return 0;
    return lower[i] == '\0';
}

static int
digest_is_lhex(const struct pst__digest_value *v, size_t n)
{
    if (v->len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v->s[i];

        /* RFC 2831 §2.1.2.1: LHEX, lowercase only. */
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/* quoted-string = <"> *(qdtext | quoted-pair ) <">; i is at the quote. */
static int
digest_lex_quoted(const uint8_t *in, size_t len, size_t *i,
                  struct pst__digest_value *v, const char **why)
{
    size_t k = *i + 1;

    v->len = 0;
    for (;;) {
        uint8_t c;

        if (k == len) {
            *why = "DIGEST-MD5: unterminated quoted string";
            return PST_EPROTO;
        }
        c = in[k++];
        if (c == '"')
            break;
        if (c == '\\') {
            /* quoted-pair = "\" CHAR.  A control character escaped is no
             * part of any value we take, so only printable ASCII, SP and
             * HT may follow the backslash. */
            if (k == len) {
                *why = "DIGEST-MD5: backslash at the end of the message";
                return PST_EPROTO;
            }
            c = in[k++];
            if (c >= 0x80 || (digest_is_ctl(c) && c != '\t')) {
                *why = "DIGEST-MD5: bad escape in quoted string";
                return PST_EPROTO;
            }
        } else if (digest_is_ctl(c) && c != '\t') {
            /* qdtext is TEXT: no CTLs.  We also refuse CRLF folding
             * inside a value; no client folds one. */
            *why = "DIGEST-MD5: control character in quoted string";
            return PST_EPROTO;
        }
        if (v->len == PST__DIGEST_MAX_VALUE) {
            *why = "DIGEST-MD5: directive value too long";
            return PST_EPROTO;
        }
        v->s[v->len++] = (char)c;
    }
    v->s[v->len] = '\0';
    *i = k;
    return 0;
}

static int
digest_lex_token(const uint8_t *in, size_t len, size_t *i,
                 struct pst__digest_value *v, const char **why)
{
    size_t k = *i;

    v->len = 0;
    while (k < len && digest_is_token_char(in[k])) {
        if (v->len == PST__DIGEST_MAX_VALUE) {
            *why = "DIGEST-MD5: directive value too long";
            return PST_EPROTO;
        }
        v->s[v->len++] = (char)in[k++];
    }
    if (v->len == 0) {
        *why = k < len ? "DIGEST-MD5: unexpected character in value"
                       : "DIGEST-MD5: empty value";
        return PST_EPROTO;
    }
    v->s[v->len] = '\0';
    *i = k;
    return 0;
}

typedef int (*digest_directive_fn)(void *ctx, enum digest_directive d,
                                   const struct pst__digest_value *v,
                                   const char **why);

static enum digest_directive
digest_lookup(const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < PST__ARRAY_LEN(digest_directives); i++)
        if (digest_caseeq((const char *)name, len,
                          digest_directives[i].name))
            return digest_directives[i].d;
    return DIGEST_D_UNKNOWN;
}

/*
 * Split in[0..len) into directives and hand each to fn.  RFC 2831 §7.1:
 * elements are separated by one or more commas with optional LWS, null
 * elements are allowed ("a=1,,b=2", a leading or trailing comma), and at
 * least one element must be present; LWS may also surround "=" (implied
 * *LWS).  Anything else is PST_EPROTO.
 */
static int
digest_lex(const uint8_t *in, size_t len, size_t max, digest_directive_fn fn,
           void *ctx, const char **why)
{
    struct pst__digest_value v;
    size_t i = 0, n = 0;
    int rc = 0;

    if (len == 0) {
        *why = "DIGEST-MD5: empty message";
        return PST_EPROTO;
    }
    if (len >= max) {
        *why = "DIGEST-MD5: message too long";
        return PST_EPROTO;
    }
    if (memchr(in, '\0', len) != NULL) {
        *why = "DIGEST-MD5: NUL in message";
        return PST_EPROTO;
    }
    for (;;) {
        size_t name;

        i = digest_skip_lws(in, len, i);
        if (i == len)
            break;
        if (in[i] == ',') {
            i++;                        /* a null element */
            continue;
        }
        name = i;
        while (i < len && digest_is_token_char(in[i]))
            i++;
        if (i == name) {
            *why = "DIGEST-MD5: unexpected character";
            rc = PST_EPROTO;
            break;
        }
        if (i - name > DIGEST_MAX_NAME) {
            *why = "DIGEST-MD5: directive name too long";
            rc = PST_EPROTO;
            break;
        }
        {
            size_t name_len = i - name;

            i = digest_skip_lws(in, len, i);
            if (i == len || in[i] != '=') {
                *why = "DIGEST-MD5: directive without \"=\"";
                rc = PST_EPROTO;
                break;
            }
            i = digest_skip_lws(in, len, i + 1);
            if (i < len && in[i] == '"')
                rc = digest_lex_quoted(in, len, &i, &v, why);
            else
                rc = digest_lex_token(in, len, &i, &v, why);
            if (rc < 0)
                break;
            rc = fn(ctx, digest_lookup(in + name, name_len), &v, why);
            if (rc < 0)
                break;
        }
        n++;
        i = digest_skip_lws(in, len, i);
        if (i == len)
            break;
        if (in[i] != ',') {
            *why = "DIGEST-MD5: expected \",\" between directives";
            rc = PST_EPROTO;
            break;
        }
        i++;
    }
    OPENSSL_cleanse(&v, sizeof(v));
    if (rc == 0 && n == 0) {
        *why = "DIGEST-MD5: no directive";
        rc = PST_EPROTO;
    }
    return rc;
}

/* Each directive may appear once, except where a message's rules say so. */
static int
digest_once(unsigned *seen, enum digest_directive d, const char **why)
{
    if (*seen & (1u << d)) {
        *why = "DIGEST-MD5: duplicated directive";
        return PST_EPROTO;
    }
    *seen |= 1u << d;
    return 0;
}

static void
digest_copy(struct pst__digest_value *dst, const struct pst__digest_value *v)
{
    memcpy(dst->s, v->s, v->len + 1);
    dst->len = v->len;
}

/* The bit of token t[0..len) in table, or 0 if it is not there. */
static unsigned
digest_token_bit(const struct pst__digest_token_bit *table, size_t n,
                 const char *t, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (digest_caseeq(t, len, table[i].name))
            return table[i].bit;
    return 0;
}

/*
 * A quoted list of tokens (RFC 2831 §2.1.1 qop-options' qop-list =
 * 1#qop-value, cipher-opts' 1#cipher-value), as bits.  Unknown tokens are
 * ignored ("The client MUST ignore unrecognized options").
 */
static int
digest_parse_token_list(const struct pst__digest_value *v,
                        const struct pst__digest_token_bit *table,
                        size_t ntable, unsigned *bits, const char **why)
{
    const uint8_t *p = (const uint8_t *)v->s;
    size_t i = 0, n = 0;

    for (;;) {
        size_t start;

        i = digest_skip_lws(p, v->len, i);
        if (i == v->len)
            break;
        if (p[i] == ',') {
            i++;
            continue;
        }
        start = i;
        while (i < v->len && digest_is_token_char(p[i]))
            i++;
        if (i == start) {
            *why = table == pst__digest_qop_names
                       ? "DIGEST-MD5: malformed qop list"
                       : "DIGEST-MD5: malformed cipher list";
            return PST_EPROTO;
        }
        *bits |= digest_token_bit(table, ntable, v->s + start, i - start);
        n++;
        i = digest_skip_lws(p, v->len, i);
        if (i < v->len && p[i] != ',') {
            *why = table == pst__digest_qop_names
                       ? "DIGEST-MD5: malformed qop list"
                       : "DIGEST-MD5: malformed cipher list";
            return PST_EPROTO;
        }
    }
    if (n == 0) {
        *why = table == pst__digest_qop_names ? "DIGEST-MD5: empty qop list"
                                         : "DIGEST-MD5: empty cipher list";
        return PST_EPROTO;
    }
    return 0;
}

/*
 * maxbuf-value = 1*DIGIT (RFC 2831 §2.1.1): "The value MUST be bigger
 * than 16 and smaller or equal to 16777215 (i.e. 2**24-1)."
 */
static int
digest_parse_maxbuf(const struct pst__digest_value *v, unsigned *maxbuf,
                    const char **why)
{
    unsigned long n = 0;

    if (v->len == 0 || v->len > 8)
        goto bad;
    for (size_t i = 0; i < v->len; i++) {
        if (v->s[i] < '0' || v->s[i] > '9')
            goto bad;
        n = n * 10 + (unsigned long)(v->s[i] - '0');
    }
    if (n <= 16 || n > PST__DIGEST_MAX_MAXBUF)
        goto bad;
    *maxbuf = (unsigned)n;
    return 0;
bad:
    *why = "DIGEST-MD5: maxbuf is not a number from 17 to 16777215";
    return PST_EPROTO;
}

/* charset = "charset" "=" "utf-8" (RFC 2831 §2.1.1): nothing else. */
static int
digest_parse_charset(const struct pst__digest_value *v, const char **why)
{
    if (!digest_caseeq(v->s, v->len, "utf-8")) {
        *why = "DIGEST-MD5: charset is not utf-8";
        return PST_EPROTO;
    }
    return 0;
}

/* --- digest-challenge (RFC 2831 §2.1.1) ---------------------------------- */

struct digest_challenge_ctx {
    struct pst__digest_challenge *c;
    unsigned seen;
};

static int
digest_challenge_directive(void *ctx, enum digest_directive d,
                           const struct pst__digest_value *v,
                           const char **why)
{
    struct digest_challenge_ctx *x = ctx;
    struct pst__digest_challenge *c = x->c;
    int rc;

    switch (d) {
    case DIGEST_D_REALM:
        /* "Multiple realm directives are allowed"; we answer with the
         * first, as GNU SASL and most clients do. */
        if (c->nrealms++ == 0)
            digest_copy(&c->realm, v);
        return 0;
    case DIGEST_D_NONCE:
    case DIGEST_D_QOP:
    case DIGEST_D_STALE:
    case DIGEST_D_MAXBUF:
    case DIGEST_D_CHARSET:
    case DIGEST_D_ALGORITHM:
    case DIGEST_D_CIPHER:
        /* Each "may appear at most once" / "MUST appear exactly once";
         * "if multiple instances are present, the client MUST abort". */
        if ((rc = digest_once(&x->seen, d, why)) < 0)
            return rc;
        break;
    default:
        /* "The client MUST ignore any unrecognized directives." */
        return 0;
    }
    switch (d) {
    case DIGEST_D_NONCE:
        if (v->len == 0) {
            *why = "DIGEST-MD5: empty nonce";
            return PST_EPROTO;
        }
        digest_copy(&c->nonce, v);
        return 0;
    case DIGEST_D_QOP:
        return digest_parse_token_list(v, pst__digest_qop_names,
                                       PST__DIGEST_NQOPS,
                                       &c->qops, why);
    case DIGEST_D_MAXBUF:
        return digest_parse_maxbuf(v, &c->maxbuf, why);
    case DIGEST_D_CIPHER:
        return digest_parse_token_list(v, pst__digest_cipher_names,
                                       PST__DIGEST_NCIPHERS,
                                       &c->ciphers, why);
    case DIGEST_D_CHARSET:
        if ((rc = digest_parse_charset(v, why)) < 0)
            return rc;
        c->utf8 = 1;
        return 0;
    case DIGEST_D_ALGORITHM:
        /* algorithm = "algorithm" "=" "md5-sess"; curl wants it unquoted
         * but either form is the same value to us. */
        if (!digest_caseeq(v->s, v->len, "md5-sess")) {
            *why = "DIGEST-MD5: algorithm is not md5-sess";
            return PST_EPROTO;
        }
        return 0;
    default:
        /* stale: only for subsequent authentication (§2.2), which we do
         * not do. */
        return 0;
    }
}

/* --- digest-response (RFC 2831 §2.1.2) ----------------------------------- */

struct digest_response_ctx {
    struct pst__digest_response *r;
    unsigned seen;
};

static int
digest_response_directive(void *ctx, enum digest_directive d,
                          const struct pst__digest_value *v,
                          const char **why)
{
    struct digest_response_ctx *x = ctx;
    struct pst__digest_response *r = x->r;
    int rc;

    switch (d) {
    case DIGEST_D_USERNAME:
    case DIGEST_D_REALM:
    case DIGEST_D_NONCE:
    case DIGEST_D_CNONCE:
    case DIGEST_D_NC:
    case DIGEST_D_QOP:
    case DIGEST_D_DIGEST_URI:
    case DIGEST_D_RESPONSE:
    case DIGEST_D_MAXBUF:
    case DIGEST_D_CHARSET:
    case DIGEST_D_CIPHER:
    case DIGEST_D_AUTHZID:
        /* Every one of them "MUST be present exactly once" or "may
         * appear at most once". */
        if ((rc = digest_once(&x->seen, d, why)) < 0)
            return rc;
        break;
    default:
        /* "The server MUST ignore any unrecognized directives." */
        return 0;
    }
    switch (d) {
    case DIGEST_D_USERNAME:
        digest_copy(&r->username, v);
        return 0;
    case DIGEST_D_REALM:
        digest_copy(&r->realm, v);
        r->has_realm = 1;
        return 0;
    case DIGEST_D_NONCE:
        digest_copy(&r->nonce, v);
        return 0;
    case DIGEST_D_CNONCE:
        if (v->len == 0) {
            *why = "DIGEST-MD5: empty cnonce";
            return PST_EPROTO;
        }
        digest_copy(&r->cnonce, v);
        return 0;
    case DIGEST_D_NC:
        /* nc-value = 8LHEX */
        if (!digest_is_lhex(v, 8)) {
            *why = "DIGEST-MD5: nc is not 8 lowercase hex digits";
            return PST_EPROTO;
        }
        digest_copy(&r->nc, v);
        return 0;
    case DIGEST_D_QOP:
        /* qop-value = "auth" | "auth-int" | "auth-conf" | token */
        r->qop = digest_token_bit(pst__digest_qop_names,
                                  PST__DIGEST_NQOPS, v->s,
                                  v->len);
        if (r->qop == 0) {
            *why = "DIGEST-MD5: unknown qop";
            return PST_EPROTO;
        }
        return 0;
    case DIGEST_D_MAXBUF:
        r->has_maxbuf = 1;
        return digest_parse_maxbuf(v, &r->maxbuf, why);
    case DIGEST_D_CIPHER:
        /* cipher = "cipher" "=" cipher-value: one of those offered. */
        r->cipher = digest_token_bit(pst__digest_cipher_names,
                                     PST__DIGEST_NCIPHERS,
                                     v->s, v->len);
        if (r->cipher == 0) {
            *why = "DIGEST-MD5: unknown cipher";
            return PST_EPROTO;
        }
        return 0;
    case DIGEST_D_DIGEST_URI:
        digest_copy(&r->digest_uri, v);
        return 0;
    case DIGEST_D_RESPONSE:
        /* response-value = 32LHEX */
        if (!digest_is_lhex(v, PST__DIGEST_HEX)) {
            *why = "DIGEST-MD5: response is not 32 lowercase hex digits";
            return PST_EPROTO;
        }
        digest_copy(&r->response, v);
        return 0;
    case DIGEST_D_CHARSET:
        if ((rc = digest_parse_charset(v, why)) < 0)
            return rc;
        r->utf8 = 1;
        return 0;
    case DIGEST_D_AUTHZID:
        /* An empty authzid is none (GNU SASL leaves it out of A1 too). */
        digest_copy(&r->authzid, v);
        r->has_authzid = v->len > 0;
        return 0;
    default:
        return 0;
    }
}

/* --- response-auth (RFC 2831 §2.1.3) ------------------------------------- */

struct digest_finish_ctx {
    char *rspauth;
    unsigned seen;
};

static int
digest_finish_directive(void *ctx, enum digest_directive d,
                        const struct pst__digest_value *v, const char **why)
{
    struct digest_finish_ctx *x = ctx;
    int rc;

    if (d != DIGEST_D_RSPAUTH)
        return 0;               /* unrecognized: ignored */
    if ((rc = digest_once(&x->seen, d, why)) < 0)
        return rc;
    /* response-auth = "rspauth" "=" response-value (32LHEX) */
    if (!digest_is_lhex(v, PST__DIGEST_HEX)) {
        *why = "DIGEST-MD5: rspauth is not 32 lowercase hex digits";
        return PST_EPROTO;
    }
    memcpy(x->rspauth, v->s, PST__DIGEST_HEX + 1);
    return 0;
}

/* --- Validation ---------------------------------------------------------- */

/* What a challenge must hold (RFC 2831 §2.1.1). */
static int
digest_validate_challenge(const struct pst__digest_challenge *c,
                          unsigned seen, const char **why)
{
    if (!(seen & (1u << DIGEST_D_NONCE))) {
        *why = "DIGEST-MD5: challenge without nonce";
        return PST_EPROTO;
    }
    /* algorithm: "This directive is required and MUST appear exactly
     * once; if not present ... the client SHOULD abort". */
    if (!(seen & (1u << DIGEST_D_ALGORITHM))) {
        *why = "DIGEST-MD5: challenge without algorithm";
        return PST_EPROTO;
    }
    (void)c;
    if (c->utf8 && c->nrealms > 0 &&
        !pst__utf8_valid((const uint8_t *)c->realm.s, c->realm.len)) {
        *why = "DIGEST-MD5: realm is not UTF-8";
        return PST_EPROTO;
    }
    return 0;
}

/* What a response must hold (RFC 2831 §2.1.2). */
static int
digest_validate_response_form(const struct pst__digest_response *r,
                              unsigned seen, const char **why)
{
    static const struct {
        enum digest_directive d;
        const char *why;
    } required[] = {
        {DIGEST_D_USERNAME, "DIGEST-MD5: response without username"},
        {DIGEST_D_NONCE, "DIGEST-MD5: response without nonce"},
        {DIGEST_D_CNONCE, "DIGEST-MD5: response without cnonce"},
        {DIGEST_D_NC, "DIGEST-MD5: response without nc"},
        {DIGEST_D_DIGEST_URI, "DIGEST-MD5: response without digest-uri"},
        {DIGEST_D_RESPONSE, "DIGEST-MD5: response without response"},
    };

    for (size_t i = 0; i < PST__ARRAY_LEN(required); i++) {
        if (!(seen & (1u << required[i].d))) {
            *why = required[i].why;
            return PST_EPROTO;
        }
    }
    /* charset=utf-8 makes username and realm UTF-8; without it they are
     * ISO 8859-1, where every octet is a character.  authzid is always
     * UTF-8 (RFC 2831 §2.1.2 "authzid"). */
    if (r->utf8 &&
        (!pst__utf8_valid((const uint8_t *)r->username.s, r->username.len) ||
         !pst__utf8_valid((const uint8_t *)r->realm.s, r->realm.len))) {
        *why = "DIGEST-MD5: username or realm is not UTF-8";
        return PST_EPROTO;
    }
    if (!pst__utf8_valid((const uint8_t *)r->authzid.s, r->authzid.len)) {
        *why = "DIGEST-MD5: authzid is not UTF-8";
        return PST_EPROTO;
    }
    return 0;
}

/* p[0..len) (ISO 8859-1) == u (UTF-8), without converting. */
static int
digest_latin1_eq_utf8(const char *p, size_t len, const char *u)
{
    size_t k = 0, ulen = strlen(u);

    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)p[i];

        if (c < 0x80) {
            if (k >= ulen || (uint8_t)u[k] != c)
                return 0;
            k++;
        } else {
            if (ulen - k < 2 || (uint8_t)u[k] != (0xc0 | (c >> 6)) ||
                (uint8_t)u[k + 1] != (0x80 | (c & 0x3f)))
                return 0;
            k += 2;
        }
    }
    return k == ulen;
}

static int
digest_asciicase_eq(const char *a, size_t alen, const char *b)
{
    if (strlen(b) != alen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (digest_lower((uint8_t)a[i]) != digest_lower((uint8_t)b[i]))
            return 0;
    return 1;
}

/* A digest-uri host against one of ours: DNS names are ASCII
 * case-insensitive; an IPv6 literal may come in brackets. */
static int
digest_host_eq(const char *h, size_t len, const char *ours)
{
    if (digest_asciicase_eq(h, len, ours))
        return 1;
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']')
        return digest_asciicase_eq(h + 1, len - 2, ours);
    return 0;
}

/*
 * digest-uri-value = serv-type "/" host [ "/" serv-name ] (RFC 2831
 * §2.1.2).  serv-type must be our service exactly ("smtp", RFC 4954 §4);
 * host our name or one of the addresses clients connect to: they put
 * what they connected to (INTEROP.md, "smtp/127.0.0.1").  The check is
 * what stops a response made for another server from being replayed here.
 */
static int
digest_check_uri(const struct pst__digest_value *u,
                 const struct pst__digest_expect *e)
{
    const char *slash = memchr(u->s, '/', u->len), *host, *end;
    size_t type_len, rest, host_len;

    if (slash == NULL)
        return 0;
    type_len = (size_t)(slash - u->s);
    if (type_len != strlen(e->service) ||
        memcmp(u->s, e->service, type_len) != 0) /* not secret */
        return 0;
    host = slash + 1;
    rest = u->len - type_len - 1;
    end = memchr(host, '/', rest);
    host_len = end != NULL ? (size_t)(end - host) : rest;
    if (host_len == 0)
        return 0;
    /* serv-name, when present, is one more non-empty component. */
    if (end != NULL && (rest - host_len - 1 == 0 ||
                        memchr(end + 1, '/', rest - host_len - 1) != NULL))
        return 0;
    if (digest_host_eq(host, host_len, e->hostname))
        return 1;
    for (size_t i = 0; e->uri_hosts != NULL && e->uri_hosts[i] != NULL; i++)
        if (digest_host_eq(host, host_len, e->uri_hosts[i]))
            return 1;
    return 0;
}

int
pst__digest_validate_response(const struct pst__digest_response *r,
                              const struct pst__digest_expect *e,
                              const char **why)
{
    /* "The server ... checks that the nonce is one it issued". */
    if (r->nonce.len != strlen(e->nonce) ||
        memcmp(r->nonce.s, e->nonce, r->nonce.len) != 0) { /* not secret */
        *why = "DIGEST-MD5: nonce mismatch";
        return PST_EPROTO;
    }
    /* RFC 2831 §2.1.2: "The server ... checks that the nonce-count is
     * 00000001"; we do not do subsequent authentication (§2.2). */
    if (!digest_caseeq(r->nc.s, r->nc.len, "00000001")) {
        *why = "DIGEST-MD5: nc is not 00000001";
        return PST_EPROTO;
    }
    /* qop "MUST be one of the alternatives in qop-options". */
    if (!(r->qop & e->qops)) {
        *why = "DIGEST-MD5: qop not offered";
        return PST_EPROTO;
    }
    /* cipher: "required if auth-conf is negotiated", one of those in
     * cipher-opts. */
    if (r->qop == PST__DIGEST_QOP_AUTH_CONF && !(r->cipher & e->ciphers)) {
        *why = "DIGEST-MD5: cipher not offered";
        return PST_EPROTO;
    }
    /* realm: "its value SHOULD be one of those realms"; we offered one,
     * and a response made for another realm is no use to us.  Without
     * charset=utf-8 it is in ISO 8859-1. */
    if (r->has_realm &&
        !(r->utf8 ? (r->realm.len == strlen(e->realm) &&
                     memcmp(r->realm.s, e->realm, /* not secret */
                            r->realm.len) == 0)
                  : digest_latin1_eq_utf8(r->realm.s, r->realm.len,
                                          e->realm))) {
        *why = "DIGEST-MD5: realm mismatch";
        return PST_EPROTO;
    }
    if (!digest_check_uri(&r->digest_uri, e)) {
        *why = "digest-uri mismatch";
        return PST_EAUTH;
    }
    return 0;
}

/* --- Parsers ------------------------------------------------------------- */

int
pst__digest_parse_challenge(const uint8_t *in, size_t len,
                            struct pst__digest_challenge *out,
                            const char **why)
{
    struct digest_challenge_ctx x = {.c = out};
    int rc;

    memset(out, 0, sizeof(*out));
    /* "The size of a digest-challenge MUST be less than 2048 bytes." */
    rc = digest_lex(in, len, PST__DIGEST_MAX_CHALLENGE,
                    digest_challenge_directive, &x, why);
    if (rc == 0)
        rc = digest_validate_challenge(out, x.seen, why);
    if (rc == 0 && !(x.seen & (1u << DIGEST_D_QOP)))
        out->qops = PST__DIGEST_QOP_AUTH;
    /* maxbuf: "If this directive is missing, the default value is
     * 65536".  cipher-opts "must be present exactly once if auth-conf is
     * offered": without it auth-conf cannot be used. */
    if (rc == 0 && !(x.seen & (1u << DIGEST_D_MAXBUF)))
        out->maxbuf = PST__DIGEST_DEFAULT_MAXBUF;
    if (rc == 0 && !(x.seen & (1u << DIGEST_D_CIPHER)))
        out->qops &= ~PST__DIGEST_QOP_AUTH_CONF;
    return rc;
}

int
pst__digest_parse_response(const uint8_t *in, size_t len,
                           struct pst__digest_response *out,
                           const char **why)
{
    struct digest_response_ctx x = {.r = out};
    int rc;

    memset(out, 0, sizeof(*out));
    /* "The size of a digest-response MUST be less than 4096 bytes." */
    rc = digest_lex(in, len, PST__DIGEST_MAX_RESPONSE,
                    digest_response_directive, &x, why);
    if (rc == 0)
        rc = digest_validate_response_form(out, x.seen, why);
    /* qop: "If not present, this defaults to auth"; maxbuf to 65536. */
    if (rc == 0 && !(x.seen & (1u << DIGEST_D_QOP)))
        out->qop = PST__DIGEST_QOP_AUTH;
    if (rc == 0 && !(x.seen & (1u << DIGEST_D_MAXBUF)))
        out->maxbuf = PST__DIGEST_DEFAULT_MAXBUF;
    if (rc == 0 && out->qop == PST__DIGEST_QOP_AUTH_CONF &&
        !(x.seen & (1u << DIGEST_D_CIPHER))) {
        *why = "DIGEST-MD5: auth-conf without cipher";
        rc = PST_EPROTO;
    }
    return rc;
}

int
pst__digest_parse_finish(const uint8_t *in, size_t len,
                         char rspauth[PST__DIGEST_HEX + 1], const char **why)
{
    struct digest_finish_ctx x = {.rspauth = rspauth};
    int rc;

    memset(rspauth, 0, PST__DIGEST_HEX + 1);
    /* RFC 2831 §2.1.3: "The size of a response-auth MUST be less than
     * 2048 bytes" (as the challenge). */
    rc = digest_lex(in, len, PST__DIGEST_MAX_CHALLENGE,
                    digest_finish_directive, &x, why);
    if (rc == 0 && !(x.seen & (1u << DIGEST_D_RSPAUTH))) {
        *why = "DIGEST-MD5: no rspauth";
        rc = PST_EPROTO;
    }
    return rc;
}
