/*
 * Message composition for `postern send`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <postern/base64.h>

#include "date.h"
#include "mime.h"

/* --- mbuf ---------------------------------------------------------------- */

int
mbuf_add(struct mbuf *b, const void *p, size_t len)
{
    if (len > SIZE_MAX / 2 - b->len - 1)
        return -1;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *q;

        while (cap < b->len + len + 1)
            cap *= 2;
        q = realloc(b->data, cap);
        if (q == NULL)
            return -1;
        b->data = q;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int
mbuf_str(struct mbuf *b, const char *s)
{
    return mbuf_add(b, s, strlen(s));
}

int
mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
    char small[512], *p = small;
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof(small)) {
        p = malloc((size_t)n + 1);
        if (p == NULL)
            return -1;
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    rc = mbuf_add(b, p, (size_t)n);
    if (p != small)
        free(p);
    return rc;
}

void
mbuf_free(struct mbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* --- Pieces -------------------------------------------------------------- */

/* RFC 5322 §2.1.1: no line longer than 998 octets.  Header text longer
 * than this goes as RFC 2047 encoded-words, which fold; "From: ", a
 * display name quoted (every byte escaped at worst) and a 256-octet
 * address stay within the limit. */
#define RAW_TEXT_MAX 350

static int
is_plain_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* Length of the UTF-8 sequence starting at p (1 for a stray byte). */
static size_t
utf8_seq_len(const unsigned char *p)
{
    size_t n = 1;

    if (*p >= 0xf0)
        n = 4;
    else if (*p >= 0xe0)
        n = 3;
    else if (*p >= 0xc0)
        n = 2;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 1;
    return n;
}

int
mime_encode_header_text(struct mbuf *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t len = strlen(text);
    int first = 1;

    if (is_plain_ascii(text) && strstr(text, "=?") == NULL &&
        len <= RAW_TEXT_MAX)
        return mbuf_str(out, text);
    /* RFC 2047 §2: an encoded-word is at most 75 characters; "=?UTF-8?B?"
     * + "?=" leave 63 for base64, i.e. 45 bytes, never splitting a UTF-8
     * character (§5 rule 3). */
    while (len > 0) {
        struct pst_buf b;
        size_t take = 0;
        int rc;

        while (take < len) {
            size_t n = utf8_seq_len(p + take);

            if (take + n > 45 || take + n > len)
                break;
            take += n;
        }
        if (take == 0)
            take = len < 45 ? len : 45;
        pst_buf_init(&b, 128, 0);
        rc = pst_base64_encode(p, take, &b);
        if (rc == 0)
            rc = mbuf_printf(out, "%s=?UTF-8?B?%.*s?=", first ? "" : "\r\n ",
                             (int)b.len, (const char *)b.data);
        pst_buf_clear(&b);
        if (rc < 0)
            return -1;
        first = 0;
        p += take;
        len -= take;
    }
    return 0;
}

int
mime_encode_phrase(struct mbuf *out, const char *text)
{
    static const char atext_specials[] = "!#$%&'*+-/=?^_`{|}~ ";
    int atoms = 1;

    /* RFC 2047 §5 (3): an encoded-word may stand for a word of a phrase;
     * text that merely looks like one is encoded too. */
    if (!is_plain_ascii(text) || strstr(text, "=?") != NULL ||
        strlen(text) > RAW_TEXT_MAX)
        return mime_encode_header_text(out, text);
    for (const char *p = text; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || strchr(atext_specials, *p)))
            atoms = 0;
    /* RFC 5322 §3.2.5: phrase = 1*word; word = atom / quoted-string.  A
     * name with specials ("Doe, John", "A. B (Ops)") must be quoted, or
     * it reads as two addresses or a comment. */
    if (atoms && text[0] != ' ' && text[0] != '\0')
        return mbuf_str(out, text);
    if (mbuf_str(out, "\"") < 0)
        return -1;
    for (const char *p = text; *p != '\0'; p++)
        if ((*p == '"' || *p == '\\') && mbuf_str(out, "\\") < 0)
            return -1;
        else if (mbuf_add(out, p, 1) < 0)
            return -1;
    return mbuf_str(out, "\"");
}

int
mime_from_field(struct mbuf *out, const char *name, const char *addr)
{
    if (name == NULL || name[0] == '\0')
        return mbuf_printf(out, "From: <%s>\r\n", addr);
    if (mbuf_str(out, "From: ") < 0 || mime_encode_phrase(out, name) < 0 ||
        mbuf_printf(out, " <%s>\r\n", addr) < 0)
        return -1;
    return 0;
}

int
mime_split_mailbox(const char *in, char **name, char **addr)
{
    size_t len = strlen(in), lt = len, end, keep = 0;
    int quote = 0;
    struct mbuf nm = {0};

    *name = *addr = NULL;
    /* The "<" of an angle-addr: the first outside a quoted string. */
    for (size_t i = 0; i < len && lt == len; i++) {
        if (quote && in[i] == '\\' && i + 1 < len)
            i++;
        else if (in[i] == '"')
            quote = !quote;
        else if (in[i] == '<' && !quote)
            lt = i;
    }
    if (lt == len) { /* an addr-spec alone */
        *addr = strdup(in);
        return *addr != NULL ? 0 : -1;
    }
    /* RFC 5322 §3.4: name-addr = [display-name] angle-addr; the ">"
     * ends it (blanks after it aside). */
    for (end = len; end > lt && (in[end - 1] == ' ' || in[end - 1] == '\t');)
        end--;
    if (end - lt < 2 || in[end - 1] != '>')
        return -1;
    /* The display name: blanks around it dropped, quoted strings
     * unquoted (quoted-pairs undone, §3.2.4), the rest as it is. */
    quote = 0;
    for (size_t i = 0, e = lt; i < e; i++) {
        char ch = in[i];
        int blank = !quote && (ch == ' ' || ch == '\t');

        if (blank && keep == 0)
            continue;
        if (ch == '"') {
            quote = !quote;
            continue;
        }
        if (quote && ch == '\\' && i + 1 < e)
            ch = in[++i];
        if (mbuf_add(&nm, &ch, 1) < 0)
            goto fail;
        if (!blank)
            keep = nm.len;
    }
    if (quote)
        goto fail; /* a quoted string not closed */
    nm.len = keep;
    *addr = strndup(in + lt + 1, end - lt - 2);
    if (*addr == NULL)
        goto fail;
    if (nm.len > 0) {
        *name = strndup((const char *)nm.data, nm.len);
        if (*name == NULL)
            goto fail;
    }
    mbuf_free(&nm);
    return 0;
fail:
    mbuf_free(&nm);
    free(*addr);
    *addr = NULL;
    return -1;
}

const char *
mime_type_for(const char *filename)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"pdf", "application/pdf"},   {"tif", "image/tiff"},
        {"tiff", "image/tiff"},       {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},       {"png", "image/png"},
        {"gif", "image/gif"},         {"txt", "text/plain"},
        {"log", "text/plain"},        {"csv", "text/csv"},
        {"html", "text/html"},        {"htm", "text/html"},
        {"xml", "application/xml"},   {"json", "application/json"},
        {"zip", "application/zip"},   {"gz", "application/gzip"},
        {"eml", "message/rfc822"},
    };
    const char *dot = strrchr(filename, '.');

    if (dot != NULL && strchr(dot, '/') == NULL)
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

static int
read_file(const char *path, struct mbuf *out, char *err, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t buf[65536];
    ssize_t r;

    if (fd < 0) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((r = read(fd, buf, sizeof(buf))) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, n, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (mbuf_add(out, buf, (size_t)r) < 0) {
            snprintf(err, n, "%s: out of memory", path);
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
}

static int
add_date(struct mbuf *out)
{
    char date[DATE_RFC5322_MAX];

    if (date_rfc5322(time(NULL), date, sizeof(date)) < 0)
        return -1;
    return mbuf_printf(out, "Date: %s\r\n", date);
}

static int
add_msgid(struct mbuf *out, const char *domain)
{
    unsigned char r[12];
    char hex[25];

    if (RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    return mbuf_printf(out, "Message-ID: <%lx.%s@%s>\r\n", (long)time(NULL),
                       hex, domain != NULL && domain[0] != '\0' ? domain
                                                               : "localhost");
}

static int
add_address_list(struct mbuf *out, const char *field,
                  const char *const *list, size_t n)
{
    if (n == 0)
        return 0;
    if (mbuf_printf(out, "%s: ", field) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (mbuf_printf(out, "%s<%s>", i ? ",\r\n " : "", list[i]) < 0)
            return -1;
    return mbuf_str(out, "\r\n");
}

/* RFC 2231 §4: filename*=UTF-8''percent-encoded for non-ASCII names. */
static int
add_filename(struct mbuf *out, const char *param, const char *name)
{
    const unsigned char *p = (const unsigned char *)name;

    if (is_plain_ascii(name) && strpbrk(name, "\"\\") == NULL)
        return mbuf_printf(out, "; %s=\"%s\"", param, name);
    if (mbuf_printf(out, "; %s*=UTF-8''", param) < 0)
        return -1;
    for (; *p != '\0'; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p);

        if (ok ? mbuf_add(out, p, 1) < 0
               : mbuf_printf(out, "%%%02X", *p) < 0)
            return -1;
    }
    return 0;
}

/* base64 in lines of 76 characters (RFC 2045 §6.8). */
static int
add_base64_lines(struct mbuf *out, const uint8_t *p, size_t len)
{
    for (size_t off = 0; off < len; off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        struct pst_buf b;
        int rc;

        pst_buf_init(&b, 80, 0);
        rc = pst_base64_encode(p + off, n, &b);
        if (rc == 0 && (mbuf_add(out, b.data, b.len) < 0 ||
                        mbuf_str(out, "\r\n") < 0))
            rc = -1;
        pst_buf_clear(&b);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Text with LF or CR line ends becomes CRLF: RFC 5322 §2.3, CR and LF
 * only together (a bare CR ends a line, as the session sends it, RFC 5321
 * §2.3.8). */
static int
add_text(struct mbuf *out, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
                i++;
            if (mbuf_str(out, "\r\n") < 0)
                return -1;
        } else if (mbuf_add(out, p + i, 1) < 0) {
            return -1;
        }
    }
    if (len > 0 && p[len - 1] != '\n' && p[len - 1] != '\r')
        return mbuf_str(out, "\r\n");
    return 0;
}

/* Whether text has 8-bit bytes, a line longer than RFC 5322's 998 (a
 * CR counted as a byte of its line: a bound), a NUL. */
static void
text_props(const uint8_t *p, size_t len, int *eight_bit, int *long_lines,
           int *binary)
{
    size_t col = 0;

    *eight_bit = *long_lines = *binary = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] >= 0x80)
            *eight_bit = 1;
        if (p[i] == 0)
            *binary = 1;
        if (p[i] == '\n') {
            col = 0;
        } else if (++col > 998) {
            *long_lines = 1;
        }
    }
}

/*
 * Quoted-printable (RFC 2045 §6.7) of text: its line ends (CRLF, CR or
 * LF, as add_text() reads them) become hard line breaks, CRLF; "=", the
 * controls but TAB and the 8-bit bytes are =XX (rules 1, 2); a space or
 * TAB that ends a line is =20 or =09 (rule 3); no encoded line passes 76
 * characters, a soft line break "=" CRLF cutting a longer one between two
 * encoded characters (rule 5).
 */
static int
add_qp_text(struct mbuf *out, const uint8_t *p, size_t len)
{
    size_t col = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t ch = p[i];
        char tok[4];
        size_t t = 1;
        int at_eol;

        if (ch == '\r' || ch == '\n') {
            if (ch == '\r' && i + 1 < len && p[i + 1] == '\n')
                i++;
            if (mbuf_str(out, "\r\n") < 0)
                return -1;
            col = 0;
            continue;
        }
        at_eol = i + 1 == len || p[i + 1] == '\r' || p[i + 1] == '\n';
        if ((ch >= 33 && ch <= 126 && ch != '=') ||
            ((ch == ' ' || ch == '\t') && !at_eol)) {
            tok[0] = (char)ch;
        } else {
            snprintf(tok, sizeof(tok), "=%02X", ch);
            t = 3;
        }
        /* Room for the character, and for the "=" of a soft break
         * unless the line ends after it. */
        if (col + t > (at_eol ? 76u : 75u)) {
            if (mbuf_str(out, "=\r\n") < 0)
                return -1;
            col = 0;
        }
        if (mbuf_add(out, tok, t) < 0)
            return -1;
        col += t;
    }
    if (len > 0 && p[len - 1] != '\n' && p[len - 1] != '\r')
        return mbuf_str(out, "\r\n");
    return 0;
}

enum text_cte {
    TEXT_7BIT,   /* ASCII: as it is */
    TEXT_8BIT,   /* 8-bit bytes: as they are, or quoted-printable */
    TEXT_BASE64, /* a NUL or a line over 998 octets */
};

static enum text_cte
text_cte(const struct mbuf *body)
{
    int eight, longl, bin;

    text_props(body->data, body->len, &eight, &longl, &bin);
    if (longl || bin)
        return TEXT_BASE64;
    return eight ? TEXT_8BIT : TEXT_7BIT;
}

/* The text part's header fields, empty line and content; qp: 8-bit text
 * as quoted-printable instead of 8bit. */
static int
add_body_part(struct mbuf *out, const struct mbuf *body, int qp)
{
    switch (text_cte(body)) {
    case TEXT_BASE64:
        return mbuf_str(out, "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Transfer-Encoding: base64\r\n\r\n") <
                       0 ||
                       add_base64_lines(out, body->data, body->len) < 0
                   ? -1
                   : 0;
    case TEXT_8BIT:
        if (qp)
            return mbuf_str(out, "Content-Type: text/plain; charset=utf-8"
                                 "\r\nContent-Transfer-Encoding: "
                                 "quoted-printable\r\n\r\n") < 0 ||
                           add_qp_text(out, body->data, body->len) < 0
                       ? -1
                       : 0;
        return mbuf_str(out, "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Transfer-Encoding: 8bit\r\n\r\n") <
                       0 ||
                       add_text(out, body->data, body->len) < 0
                   ? -1
                   : 0;
    case TEXT_7BIT:
        break;
    }
    return mbuf_str(out, "Content-Type: text/plain; charset=us-ascii\r\n"
                         "Content-Transfer-Encoding: 7bit\r\n\r\n") < 0 ||
                   add_text(out, body->data, body->len) < 0
               ? -1
               : 0;
}

/* The attachments and the close delimiter of a multipart body. */
static int
add_attachments(const struct compose *c, const char *boundary,
                struct mbuf *out, char *err, size_t n)
{
    for (size_t i = 0; i < c->nattach; i++) {
        struct mbuf data = {0};
        const char *base = strrchr(c->attach[i], '/');

        base = base != NULL ? base + 1 : c->attach[i];
        if (read_file(c->attach[i], &data, err, n) < 0)
            return -1;
        if (mbuf_printf(out, "\r\n--%s\r\nContent-Type: %s", boundary,
                        mime_type_for(base)) < 0 ||
            add_filename(out, "name", base) < 0 ||
            mbuf_str(out, "\r\nContent-Transfer-Encoding: base64\r\n"
                          "Content-Disposition: attachment") < 0 ||
            add_filename(out, "filename", base) < 0 ||
            mbuf_str(out, "\r\n\r\n") < 0 ||
            add_base64_lines(out, data.data, data.len) < 0) {
            mbuf_free(&data);
            snprintf(err, n, "out of memory");
            return -1;
        }
        mbuf_free(&data);
    }
    if (mbuf_printf(out, "\r\n--%s--\r\n", boundary) < 0) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    return 0;
}

int
mime_compose(const struct compose *c, struct mbuf *out, struct mbuf *out7,
             char *err, size_t n)
{
    struct mbuf body = {0}, tail = {0};
    unsigned char r[12];
    char boundary[64];
    int two;

    if (mime_from_field(out, c->from_name, c->from) < 0)
        goto nomem;
    if (add_address_list(out, "To", c->to, c->nto) < 0 ||
        add_address_list(out, "Cc", c->cc, c->ncc) < 0)
        goto nomem;
    if (c->subject != NULL &&
        (mbuf_str(out, "Subject: ") < 0 ||
         mime_encode_header_text(out, c->subject) < 0 ||
         mbuf_str(out, "\r\n") < 0))
        goto nomem;
    if (add_date(out) < 0 || add_msgid(out, c->msgid_domain) < 0 ||
        mbuf_str(out, "MIME-Version: 1.0\r\n") < 0)
        goto nomem;
    if (c->body_file != NULL) {
        if (read_file(c->body_file, &body, err, n) < 0)
            return -1;
    } else if (c->body != NULL && mbuf_add(&body, c->body, c->body_len) < 0) {
        goto nomem;
    }
    if (c->nattach > 0) {
        if (RAND_bytes(r, sizeof(r)) != 1)
            goto nomem;
        snprintf(boundary, sizeof(boundary), "=_postern_");
        for (size_t i = 0; i < sizeof(r); i++)
            snprintf(boundary + 10 + 2 * i, 3, "%02x", r[i]);
        if (mbuf_printf(out, "Content-Type: multipart/mixed; "
                             "boundary=\"%s\"\r\n"
                             "\r\nThis is a message in MIME format.\r\n"
                             "\r\n--%s\r\n",
                        boundary, boundary) < 0)
            goto nomem;
        /* Before the text, whose two forms would read them twice. */
        if (add_attachments(c, boundary, &tail, err, n) < 0) {
            mbuf_free(&body);
            mbuf_free(&tail);
            return -1;
        }
    }
    /* RFC 6152 §3: 8-bit text goes to a server without 8BITMIME
     * converted; the same message with the text quoted-printable, for
     * the caller to choose once it knows. */
    two = out7 != NULL && text_cte(&body) == TEXT_8BIT;
    if (two && (mbuf_add(out7, out->data, out->len) < 0 ||
                add_body_part(out7, &body, 1) < 0 ||
                mbuf_add(out7, tail.data, tail.len) < 0))
        goto nomem;
    if (add_body_part(out, &body, 0) < 0 ||
        mbuf_add(out, tail.data, tail.len) < 0)
        goto nomem;
    mbuf_free(&body);
    mbuf_free(&tail);
    return 0;
nomem:
    mbuf_free(&body);
    mbuf_free(&tail);
    snprintf(err, n, "out of memory");
    return -1;
}

/* --- Completing a message from stdin ------------------------------------ */

/* End of the header: offset of the empty line's first byte, or len. */
static size_t
header_end(const uint8_t *in, size_t len, size_t *body)
{
    size_t i = 0;

    while (i < len) {
        const uint8_t *nl = memchr(in + i, '\n', len - i);
        size_t end = nl != NULL ? (size_t)(nl - in) : len;
        size_t l = end - i;

        if (l == 0 || (l == 1 && in[i] == '\r')) {
            *body = nl != NULL ? end + 1 : len;
            return i;
        }
        /* A line that is not a header field ends the header (mbox
         * "From " lines and bodies without a header); so does white space
         * on the first line (RFC 5322 §2.2: a field starts with its name),
         * which would fold onto the fields added above it. */
        if (i == 0 || (in[i] != ' ' && in[i] != '\t')) {
            const uint8_t *colon = memchr(in + i, ':', l);

            if (colon == NULL || colon == in + i) {
                *body = i;
                return i;
            }
            for (const uint8_t *q = in + i; q < colon; q++)
                if (*q <= ' ' || *q >= 0x7f) {
                    *body = i;
                    return i;
                }
        }
        i = nl != NULL ? end + 1 : len;
    }
    *body = len;
    return len;
}

static int
field_is(const uint8_t *line, size_t l, const char *name)
{
    size_t n = strlen(name);

    return l > n && line[n] == ':' &&
           strncasecmp((const char *)line, name, n) == 0;
}

static int
has_field(const uint8_t *in, size_t hlen, const char *name)
{
    size_t i = 0;

    while (i < hlen) {
        const uint8_t *nl = memchr(in + i, '\n', hlen - i);
        size_t end = nl != NULL ? (size_t)(nl - in) : hlen;

        if (field_is(in + i, end - i, name))
            return 1;
        i = end + 1;
    }
    return 0;
}

int
mime_complete(const uint8_t *in, size_t len, const char *from,
              const char *from_name, const char *msgid_domain,
              int strip_bcc, struct mbuf *out, char *err, size_t n)
{
    size_t body, hlen = header_end(in, len, &body), i = 0;
    int skipping = 0;

    if (from != NULL && !has_field(in, hlen, "From") &&
        mime_from_field(out, from_name, from) < 0)
        goto nomem;
    if (!has_field(in, hlen, "Date") && add_date(out) < 0)
        goto nomem;
    if (!has_field(in, hlen, "Message-ID") &&
        add_msgid(out, msgid_domain) < 0)
        goto nomem;
    /* Copy the header, without Bcc fields (and their continuations) when
     * asked (sendmail -t). */
    while (i < hlen) {
        const uint8_t *nl = memchr(in + i, '\n', hlen - i);
        size_t end = nl != NULL ? (size_t)(nl - in) + 1 : hlen;

        if (in[i] != ' ' && in[i] != '\t')
            skipping = strip_bcc && field_is(in + i, end - i, "Bcc");
        if (!skipping && mbuf_add(out, in + i, end - i) < 0)
            goto nomem;
        i = end;
    }
    if (hlen > 0 && in[hlen - 1] != '\n' && mbuf_str(out, "\r\n") < 0)
        goto nomem;
    /* The empty line, then the body as it came (the session fixes line
     * ends and dot-stuffs). */
    if (mbuf_str(out, "\r\n") < 0 ||
        mbuf_add(out, in + body, len - body) < 0)
        goto nomem;
    return 0;
nomem:
    snprintf(err, n, "out of memory");
    return -1;
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Append the addr-specs found in one field body to the list: a small RFC
 * 5322 §3.4 reader.  Items are separated by commas outside quoted
 * strings, comments and angle brackets.  An item's address is its
 * angle-addr when it has one; otherwise the item is a bare addr-spec,
 * without a group "name:" prefix or ";" end (words apart are left for the
 * caller to refuse: "broken address@x" is no "address@x").  Comments go;
 * quoted strings are kept as they are, for in an addr-spec one is the
 * local part ("john doe"@example.test, §3.4.1).
 */
static int
collect_addresses(const char *s, char ***addrs, size_t *n)
{
    while (*s != '\0') {
        char item[1024];
        size_t k = 0, lt = 0, gt = 0, colon = 0;
        int quote = 0, depth = 0, angle = 0, has_lt = 0, has_gt = 0;
        int has_colon = 0;
        const char *a, *e;

        for (; *s != '\0' && k + 2 < sizeof(item); s++) {
            char ch = *s;

            if (quote) {
                /* qcontent / quoted-pair (§3.2.4): kept whole. */
                item[k++] = ch;
                if (ch == '\\' && s[1] != '\0')
                    item[k++] = *++s;
                else if (ch == '"')
                    quote = 0;
                continue;
            }
            if (depth > 0) { /* a comment (§3.2.2), nested */
                if (ch == '\\' && s[1] != '\0')
                    s++;
                else if (ch == '(')
                    depth++;
                else if (ch == ')')
                    depth--;
                continue;
            }
            if (ch == '(') {
                depth = 1;
                continue;
            }
            if (ch == ',' && !angle)
                break;
            if (ch == '"') {
                quote = 1;
            } else if (ch == '<' && !has_lt) {
                has_lt = angle = 1;
                lt = k;
            } else if (ch == '>' && angle) {
                angle = 0;
                has_gt = 1;
                gt = k;
            } else if (ch == ':' && !has_colon && !has_lt) {
                has_colon = 1;
                colon = k;
            }
            item[k++] = ch;
        }
        item[k] = '\0';
        if (*s == ',')
            s++;
        if (has_lt && has_gt) {
            a = item + lt + 1;
            e = item + gt;
        } else {
            /* A group "name:" prefix (§3.4) or its ";" end. */
            a = has_colon && !has_lt ? item + colon + 1 : item;
            e = item + k;
            while (e > a && is_space(e[-1]))
                e--;
            if (e > a && e[-1] == ';')
                e--;
        }
        /* White space, folds included (RFC 5322 §2.2.3), around it. */
        while (a < e && is_space(*a))
            a++;
        while (e > a && is_space(e[-1]))
            e--;
        if (e > a && memchr(a, '@', (size_t)(e - a)) != NULL) {
            char **q = realloc(*addrs, (*n + 1) * sizeof(char *));

            if (q == NULL)
                return -1;
            *addrs = q;
            q[*n] = strndup(a, (size_t)(e - a));
            if (q[*n] == NULL)
                return -1;
            (*n)++;
        }
    }
    return 0;
}

int
mime_header_recipients(const uint8_t *in, size_t len, char ***addrs,
                       size_t *n)
{
    size_t body, hlen = header_end(in, len, &body), i = 0;

    while (i < hlen) {
        const uint8_t *nl = memchr(in + i, '\n', hlen - i);
        size_t end = nl != NULL ? (size_t)(nl - in) + 1 : hlen;
        size_t fend = end;
        char *field;
        int rc;

        if (!field_is(in + i, end - i, "To") &&
            !field_is(in + i, end - i, "Cc") &&
            !field_is(in + i, end - i, "Bcc")) {
            i = end;
            continue;
        }
        /* Unfold: continuation lines start with white space. */
        while (fend < hlen && (in[fend] == ' ' || in[fend] == '\t')) {
            const uint8_t *nl2 = memchr(in + fend, '\n', hlen - fend);

            fend = nl2 != NULL ? (size_t)(nl2 - in) + 1 : hlen;
        }
        field = strndup((const char *)in + i, fend - i);
        if (field == NULL)
            return -1;
        rc = collect_addresses(strchr(field, ':') + 1, addrs, n);
        free(field);
        if (rc < 0)
            return -1;
        i = fend;
    }
    return 0;
}
