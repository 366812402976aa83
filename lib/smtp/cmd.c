/*
 * SMTP command arguments: verbs, paths (RFC 5321 §4.1.2), domains, ESMTP
 * parameters of MAIL FROM (RFC 1870 SIZE, RFC 6152 BODY, RFC 4954 §5
 * AUTH) and xtext (RFC 3461 §4).  Pure functions over byte ranges.
 */
#include <string.h>

#include "smtp_int.h"

static int
cmd_alpha(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
cmd_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static int
cmd_hexdig_upper(uint8_t c)
{
    return cmd_digit(c) || (c >= 'A' && c <= 'F');
}

static uint8_t
cmd_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

/* RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 Atom uses it. */
static int
cmd_atext(uint8_t c)
{
    return cmd_alpha(c) || cmd_digit(c) ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

void
pst__smtp_split(const uint8_t *line, size_t len, size_t *verb_len,
                const uint8_t **arg, size_t *arg_len)
{
    size_t i = 0, end = len;

    while (end > 0 && line[end - 1] == ' ')
        end--;
    while (i < end && line[i] != ' ')
        i++;
    *verb_len = i;
    while (i < end && line[i] == ' ')
        i++;
    *arg = line + i;
    *arg_len = end - i;
}

int
pst__smtp_word_eq(const uint8_t *p, size_t len, const char *word)
{
    /* One pass, out at the first difference: the session tries every
     * verb of its table (and the HTTP methods) on each command line. */
    for (size_t i = 0; i < len; i++)
        if (word[i] == '\0' || cmd_lower(p[i]) != cmd_lower((uint8_t)word[i]))
            return 0;
    return word[len] == '\0';
}

/* Dot-string = Atom *("." Atom): the length of the longest valid prefix
 * ending in an atom, or 0.  utf8: RFC 6531 §3.3 "atext =/ UTF8-non-ascii"
 * (the bytes' UTF-8 form is checked by the caller). */
static size_t
cmd_dot_string(const uint8_t *p, size_t len, int utf8)
{
    size_t i = 0, good = 0;

    for (;;) {
        size_t start = i;

        while (i < len && (cmd_atext(p[i]) || (utf8 && p[i] >= 0x80)))
            i++;
        if (i == start)
            return 0; /* an empty atom: "..", ".x" or "x." */
        good = i;
        if (i < len && p[i] == '.')
            i++;
        else
            return good;
    }
}

/* Quoted-string (RFC 5321 §4.1.2): DQUOTE *QcontentSMTP DQUOTE.  utf8:
 * RFC 6531 §3.3 "qtextSMTP =/ UTF8-non-ascii". */
static size_t
cmd_quoted_string(const uint8_t *p, size_t len, int utf8)
{
    size_t i = 1;

    if (len == 0 || p[0] != '"')
        return 0;
    while (i < len) {
        uint8_t c = p[i];

        if (c == '"')
            return i + 1;
        if (c == '\\') {
            /* quoted-pairSMTP = %d92 %d32-126 */
            if (i + 1 >= len || p[i + 1] < 32 || p[i + 1] > 126)
                return 0;
            i += 2;
        } else if ((c >= 32 && c <= 126) || (utf8 && c >= 0x80)) {
            /* qtextSMTP = %d32-33 / %d35-91 / %d93-126 */
            i++;
        } else {
            return 0;
        }
    }
    return 0;
}

#define CMD_DOMAIN_LENIENT 0x01 /* "_" in labels (device EHLO names) */
#define CMD_DOMAIN_UTF8    0x02 /* RFC 6531 §3.3 "sub-domain =/ U-label":
                                   UTF-8 in labels (its form checked by
                                   the caller; IDNA2008 is not) */

/*
 * Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
 * (RFC 5321 §4.1.2), labels of at most 63 octets (RFC 1035 §2.3.4).
 * mode: CMD_DOMAIN_*.  Returns the length of the domain at p, or 0.
 */
static size_t
cmd_domain(const uint8_t *p, size_t len, unsigned mode)
{
    size_t i = 0;

    for (;;) {
        size_t start = i;

        while (i < len &&
               (cmd_alpha(p[i]) || cmd_digit(p[i]) || p[i] == '-' ||
                ((mode & CMD_DOMAIN_LENIENT) && p[i] == '_') ||
                ((mode & CMD_DOMAIN_UTF8) && p[i] >= 0x80)))
            i++;
        if (i == start || i - start > 63 || p[start] == '-' ||
            p[i - 1] == '-')
            return 0;
        if (i < len && p[i] == '.')
            i++;
        else
            return i;
    }
}

/* An IPv4 dotted quad filling p[0..len). */
static int
cmd_ipv4(const uint8_t *p, size_t len)
{
    size_t i = 0;

    for (int part = 0; part < 4; part++) {
        unsigned v = 0;
        size_t start = i;

        while (i < len && cmd_digit(p[i]) && i - start < 3)
            v = v * 10 + (unsigned)(p[i++] - '0');
        if (i == start || v > 255)
            return 0;
        if (part < 3) {
            if (i >= len || p[i] != '.')
                return 0;
            i++;
        }
    }
    return i == len;
}

/*
 * address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]" (RFC 5321 §4.1.3).  IPv6 is checked for
 * its characters only; a general literal is Standardized-tag ":"
 * 1*dcontent.  Returns the length with the brackets, or 0.
 */
static size_t
cmd_address_literal(const uint8_t *p, size_t len)
{
    const uint8_t *c;
    size_t i = 1, n;

    if (len < 3 || p[0] != '[')
        return 0;
    while (i < len && p[i] != ']') {
        /* dcontent = %d33-90 / %d94-126 */
        if (p[i] < 33 || p[i] > 126 || (p[i] >= 91 && p[i] <= 93))
            return 0;
        i++;
    }
    if (i >= len || i == 1)
        return 0;
    c = p + 1;
    n = i - 1;
    if (memchr(c, ':', n) == NULL)
        return cmd_ipv4(c, n) ? i + 1 : 0;
    if (n > 5 && pst__smtp_word_eq(c, 5, "IPv6:")) {
        for (size_t k = 5; k < n; k++)
            if (!(cmd_digit(c[k]) || strchr("abcdefABCDEF:.", c[k]) != NULL))
                return 0;
        return i + 1;
    }
    /* Standardized-tag = Ldh-str, then ":" and some content. */
    {
        size_t t = cmd_domain(c, n, 0);

        if (t == 0 || t >= n - 1 || c[t] != ':' || memchr(c, '.', t))
            return 0;
    }
    return i + 1;
}

/*
 * Mailbox = Local-part "@" ( Domain / address-literal ).  Returns its
 * length, or 0; *local and *domain get the lengths of the parts.  utf8:
 * RFC 6531 §3.3's Mailbox.
 */
static size_t
cmd_mailbox(const uint8_t *p, size_t len, int utf8, size_t *local,
            size_t *domain)
{
    size_t l, d;

    l = (len > 0 && p[0] == '"') ? cmd_quoted_string(p, len, utf8)
                                 : cmd_dot_string(p, len, utf8);
    if (l == 0 || l >= len || p[l] != '@')
        return 0;
    d = (l + 1 < len && p[l + 1] == '[')
            ? cmd_address_literal(p + l + 1, len - l - 1)
            : cmd_domain(p + l + 1, len - l - 1,
                         utf8 ? CMD_DOMAIN_UTF8 : 0);
    if (d == 0)
        return 0;
    *local = l;
    *domain = d;
    return l + 1 + d;
}

int
pst__smtp_parse_path(const uint8_t *p, size_t len, unsigned flags,
                     size_t *used, struct pst_buf *addr)
{
    size_t i = 0, start, m, local = 0, domain = 0, path_len;
    int bracket = len > 0 && p[0] == '<';
    int rc;

    *used = 0;
    if (bracket) {
        i = 1;
        /* Reverse-path = Path / "<>" */
        if (len >= 2 && p[1] == '>') {
            if (!(flags & PST__PATH_NULL_OK))
                return PST_ESYNTAX;
            *used = 2;
            return pst_buf_append(addr, "", 0);
        }
        /* A-d-l = At-domain *( "," At-domain ) ":": RFC 5321 §4.1.1.3,
         * "SHOULD accept ... and ignore" the source route. */
        if (i < len && p[i] == '@') {
            for (;;) {
                size_t d;

                i++;
                d = cmd_domain(p + i, len - i, 0);
                if (d == 0)
                    return PST_ESYNTAX;
                i += d;
                if (i + 1 < len && p[i] == ',' && p[i + 1] == '@')
                    i++;
                else if (i < len && p[i] == ':') {
                    i++;
                    break;
                } else
                    return PST_ESYNTAX;
            }
        }
    }
    start = i;
    m = cmd_mailbox(p + i, len - i, (flags & PST__PATH_UTF8) != 0, &local,
                    &domain);
    if (m == 0 && (flags & PST__PATH_POSTMASTER_OK)) {
        /* RFC 5321 §4.1.1.3: "<Postmaster>" without a domain. */
        static const char pm[] = "postmaster";

        if (len - i >= sizeof(pm) - 1 &&
            pst__smtp_word_eq(p + i, sizeof(pm) - 1, pm) &&
            (len - i == sizeof(pm) - 1 || p[i + sizeof(pm) - 1] == '>' ||
             p[i + sizeof(pm) - 1] == ' ')) {
            m = sizeof(pm) - 1;
            local = m;
        }
    }
    if (m == 0 && (flags & PST__PATH_LOCAL_OK)) {
        /* A local part alone ("root"): not RFC 5321 syntax, but what
         * sendmail's callers give, and a submission server qualifies it
         * (Postfix: append_at_myorigin). */
        int utf8 = (flags & PST__PATH_UTF8) != 0;
        size_t l = (i < len && p[i] == '"')
                       ? cmd_quoted_string(p + i, len - i, utf8)
                       : cmd_dot_string(p + i, len - i, utf8);

        if (l > 0 && (i + l == len || p[i + l] == '>' || p[i + l] == ' ')) {
            m = l;
            local = l;
        }
    }
    if (m == 0)
        return PST_ESYNTAX;
    /* RFC 6531 §3.3: UTF8-non-ascii is UTF-8 (RFC 3629), nothing else. */
    if ((flags & PST__PATH_UTF8) && !pst__utf8_valid(p + i, m))
        return PST_ESYNTAX;
    i += m;
    if (bracket) {
        if (i >= len || p[i] != '>')
            return PST_ESYNTAX;
        i++;
        path_len = i;
    } else {
        if (i < len && p[i] != ' ')
            return PST_ESYNTAX;
        path_len = i + 2;
    }
    /* RFC 5321 §4.5.3.1: local part 64, domain 255, path 256 octets. */
    if (path_len > PST_SMTP_MAX_PATH || local > PST__SMTP_MAX_LOCAL ||
        domain > PST_SMTP_MAX_DOMAIN)
        return PST_ELIMIT;
    if ((rc = pst_buf_append(addr, p + start, m)) < 0)
        return rc;
    *used = i;
    return 0;
}

int
pst__smtp_domain_valid(const uint8_t *p, size_t len, int lenient)
{
    if (len == 0 || len > PST_SMTP_MAX_DOMAIN)
        return 0;
    if (p[0] == '[')
        return cmd_address_literal(p, len) == len;
    return cmd_domain(p, len, lenient ? CMD_DOMAIN_LENIENT : 0) == len;
}

int
pst__smtp_xtext_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;

    if (len == 0)
        return 0;
    while (i < len) {
        uint8_t c = p[i];

        if (c == '+') {
            /* hexchar = "+" 2(%x30-39 / %x41-46): uppercase only */
            if (i + 2 >= len || !cmd_hexdig_upper(p[i + 1]) ||
                !cmd_hexdig_upper(p[i + 2]))
                return 0;
            i += 3;
        } else if (c >= 33 && c <= 126 && c != '=') {
            i++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* esmtp-value = 1*(%d33-60 / %d62-126) (RFC 5321 §4.1.2). */
static int
cmd_esmtp_value(const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 33 || p[i] > 126 || p[i] == '=')
            return 0;
    return 1;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static int
cmd_esmtp_keyword(const uint8_t *p, size_t len)
{
    if (len == 0 || !(cmd_alpha(p[0]) || cmd_digit(p[0])))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!(cmd_alpha(p[i]) || cmd_digit(p[i]) || p[i] == '-'))
            return 0;
    return 1;
}

/* size-value = 1*20DIGIT (RFC 1870 §3); a value past 2^64-1 saturates,
 * so that it exceeds any limit. */
static int
cmd_size_value(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d;

        if (!cmd_digit(p[i]))
            return 0;
        d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            v = UINT64_MAX;
        else
            v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int
pst__smtp_parse_params(const uint8_t *p, size_t len, int mail,
                       struct pst__smtp_mail_params *out)
{
    size_t i = 0;

    memset(out, 0, sizeof(*out));
    for (;;) {
        const uint8_t *key, *val = NULL;
        size_t start, klen, vlen = 0;

        while (i < len && p[i] == ' ')
            i++;
        if (i == len)
            return 0;
        start = i;
        while (i < len && p[i] != ' ' && p[i] != '=')
            i++;
        key = p + start;
        klen = i - start;
        if (i < len && p[i] == '=') {
            val = p + ++i;
            while (i < len && p[i] != ' ')
                i++;
            vlen = (size_t)(p + i - val);
        }
        if (!cmd_esmtp_keyword(key, klen) ||
            (val != NULL && !cmd_esmtp_value(val, vlen)))
            return PST_ESYNTAX;
        /* RCPT TO takes no parameter: no DSN (RFC 3461) is offered. */
        if (!mail)
            return PST_ENOTSUP;
        if (pst__smtp_word_eq(key, klen, "SIZE")) {
            /* RFC 1870 §6.1 */
            if (out->has_size || val == NULL ||
                !cmd_size_value(val, vlen, &out->size))
                return PST_ESYNTAX;
            out->has_size = 1;
        } else if (pst__smtp_word_eq(key, klen, "BODY")) {
            /* RFC 6152 §2: BODY=7BIT / BODY=8BITMIME */
            if (out->has_body || val == NULL)
                return PST_ESYNTAX;
            if (pst__smtp_word_eq(val, vlen, "8BITMIME"))
                out->body_8bit = 1;
            else if (!pst__smtp_word_eq(val, vlen, "7BIT"))
                return PST_ESYNTAX;
            out->has_body = 1;
        } else if (pst__smtp_word_eq(key, klen, "AUTH")) {
            /* RFC 4954 §5: AUTH=<> or an xtext mailbox, accepted even
             * from an unauthenticated client; we do not trust it, which
             * is the same as AUTH=<>. */
            if (out->has_auth || val == NULL ||
                !((vlen == 2 && val[0] == '<' && val[1] == '>') ||
                  pst__smtp_xtext_valid(val, vlen)))
                return PST_ESYNTAX;
            out->has_auth = 1;
        } else {
            return PST_ENOTSUP;
        }
    }
}
