/*
 * Fuzz target: the MIME composer of `postern send` (src/postern/mime.h):
 * mime_compose() with arbitrary header values, body and attachments, and
 * mime_complete() with mime_header_recipients() over a message read from
 * stdin (sendmail -t).
 *
 * Input: two option bytes, then fields separated by 0xff (FUZZ_SEP), in a
 * fixed order; a missing field is empty.  A field cannot hold 0xff; the
 * bytes 0x80-0xfe stand for 8-bit text and invalid UTF-8.
 * Byte 0:
 *   0-1  attachments: 0-3
 *   2    a Subject (else none)
 *   3    a display name for From (else none)
 *   4    a body file (else no body)
 *   5    one file is missing: the last attachment, else the body
 *   6-7  mode: 0-1 compose, 2 complete, 3 complete stripping Bcc
 * Byte 1:
 *   0-1  To addresses: 0-3
 *   2-3  Cc addresses: 0-3
 *   4    complete: no sender (from NULL, as sendmail mode passes)
 *   5    compose: ask for the 7-bit form too (out7 of mime_compose)
 *   6    compose: the body in memory (struct compose .body, as standard
 *        input gives it) instead of a file; then only an attachment can
 *        be missing; complete: a display name for the From added
 *   7    compose: also split senders with mime_split_mailbox(): the
 *        display name field as it is, "\"" name "\" <" from ">" with
 *        quoted-pairs, and from alone
 * Compose fields: from, display name, subject, the To then the Cc
 * addresses, the body, then the name and the content of each attachment.
 * Complete fields: from, the message, the display name.
 *
 * As `postern send` gives them: strings end at a NUL (they come from the
 * command line); addresses pass send_check_addr() of src/postern/
 * cmd_send.c (at most 256 bytes, no white space, "<", ">" or control
 * byte; an empty To or Cc becomes "x") and are kept 7-bit here (that check
 * lets 8-bit bytes through, which the header then carries raw, RFC 6532);
 * the Message-ID domain is what follows the last "@" of from.  Files are
 * written under a private directory of $TMPDIR (default /tmp), each
 * attachment in a subdirectory of its own; a name is a file name: at most
 * 255 bytes, "/" becomes "_", "", "." and ".." become "_", "_.", "_..".
 *
 * Invariants (abort() on a violation), compose:
 * - 0, or -1 with a message in err exactly when a file is missing;
 * - every line ends in CRLF, no CR or LF stands alone (RFC 5322 §2.3), no
 *   line is longer than 998 octets (§2.1.1);
 * - the header and every part header are 7-bit, no NUL, made of fields
 *   "name:" (§3.6.8) and their folded continuations, and end in an empty
 *   line;
 * - From, Date, Message-ID and MIME-Version once each; To, Cc and Subject
 *   once each exactly when given; the addresses come back in order, the
 *   Message-ID ends in "@" and the domain (else localhost);
 * - the Subject comes back, as itself or as RFC 2047 encoded-words of at
 *   most 75 characters (§2); the display name as atoms, a quoted-string
 *   (RFC 5322 §3.2.5) or encoded-words;
 * - the text body: base64 decodes to the file; 7bit (no 8-bit byte) and
 *   8bit parts hold no NUL and have the file's lines, whatever their line
 *   ends (CRLF, CR or LF);
 * - the 7-bit form (out7), when asked for: given exactly when the text
 *   went 8bit, it passes every check above, has no 8-bit byte at all, the
 *   same Date, Message-ID and boundary, and its text is quoted-printable
 *   (RFC 2045 §6.7: lines of at most 76 characters, =XX in upper case
 *   only where needed, no SPACE or TAB before a line break, soft breaks
 *   "=") that decodes to the file's lines; on an error it stays empty;
 * - with attachments: multipart/mixed with a quoted boundary, the text
 *   part then one part per attachment, closed; each attachment has the
 *   Content-Type mime_type_for() gives, name and filename parameters
 *   (quoted or RFC 2231 §4 UTF-8'') that decode to its name, and base64
 *   lines of at most 76 characters (RFC 2045 §6.8) that decode to it.
 * Split (mime_split_mailbox):
 * - any text: 0 with an address and a non-empty name or none, or -1 with
 *   neither; a text without "<" is all address;
 * - a quoted name with quoted-pairs and an address come back exactly (an
 *   empty name as none), and so does an address alone.
 * Complete:
 * - it returns 0 and its output is, exactly: From (when from is given,
 *   with the display name as atoms, quoted-string or encoded-words),
 *   Date and Message-ID when the header lacks them, the header (without
 *   Bcc fields and their continuations when stripping), a line end when
 *   the header had none at its end, an empty line, the body as it came.
 *   The header is the lines before the first empty line while each is a
 *   field "name:" or a continuation of the field before (a message that
 *   starts with white space has no header);
 * - recipients: only when the header has To, Cc or Bcc fields; each
 *   non-empty, with an "@", no white space at either end.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <postern/base64.h>
#include <postern/buf.h>

#include "fuzz.h"
#include "mime.h"

#define MAX_ATTACH 3
#define MAX_ADDRS 3
#define ADDR_MAX 256        /* send_check_addr() */
#define NAME_LEN_MAX 255    /* NAME_MAX */
#define LINE_OCTETS 998     /* RFC 5322 §2.1.1 */
#define WORD_MAX 75         /* RFC 2047 §2 */
#define B64_LINE_MAX 76     /* RFC 2045 §6.8 */
#define BUF_MAX ((size_t)1 << 26)

struct input {
    uint8_t opt0, opt1;
    char from[ADDR_MAX + 1];
    char domain[ADDR_MAX + 1];
    char *name, *subject;             /* owned */
    char to[MAX_ADDRS][ADDR_MAX + 1];
    char cc[MAX_ADDRS][ADDR_MAX + 1];
    size_t nto, ncc;
    uint8_t *body;                    /* owned */
    size_t body_len;
    char att_name[MAX_ATTACH][NAME_LEN_MAX + 3];
    uint8_t *att[MAX_ATTACH];         /* owned */
    size_t att_len[MAX_ATTACH];
    size_t natt;
};

/* --- Files ---------------------------------------------------------------- */

static char work[4096];

static void
work_cleanup(void)
{
    char p[4200];

    for (size_t i = 0; i < MAX_ATTACH; i++) {
        snprintf(p, sizeof(p), "%s/a%zu", work, i);
        rmdir(p);
    }
    rmdir(work);
}

/* The private directory, made at the first call. */
static const char *
work_dir(void)
{
    char p[4200];
    const char *t;

    if (work[0] != '\0')
        return work;
    t = getenv("TMPDIR");
    if (t == NULL || t[0] == '\0')
        t = "/tmp";
    if ((size_t)snprintf(work, sizeof(work), "%s/fuzz_mime.XXXXXX", t) >=
            sizeof(work) ||
        mkdtemp(work) == NULL)
        abort(); /* no place for the files: not a finding */
    for (size_t i = 0; i < MAX_ATTACH; i++) {
        snprintf(p, sizeof(p), "%s/a%zu", work, i);
        if (mkdir(p, 0700) != 0)
            abort();
    }
    atexit(work_cleanup);
    return work;
}

static void
write_file(const char *path, const uint8_t *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0)
        abort();
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w <= 0)
            abort();
        p += w;
        len -= (size_t)w;
    }
    close(fd);
}

/* --- Input ---------------------------------------------------------------- */

/* The next field as an exact-size heap copy followed by a NUL. */
static uint8_t *
next_field(struct fuzz_split *sp, size_t *len)
{
    uint8_t *seg = NULL, *copy;
    size_t n = 0;

    if (!fuzz_split_next(sp, &seg, &n))
        n = 0;
    copy = fuzz_dup(seg, n, 1);
    free(seg);
    if (copy == NULL)
        abort();
    *len = n;
    return copy;
}

/* An address as send_check_addr() lets it through, and 7-bit. */
static void
next_addr(struct fuzz_split *sp, char *out, int may_be_empty)
{
    size_t len, k = 0;
    uint8_t *f = next_field(sp, &len);

    for (; f[k] != '\0' && k < ADDR_MAX; k++) {
        uint8_t c = f[k];

        out[k] = (c <= ' ' || c >= 0x7f || c == '<' || c == '>') ? 'x'
                                                                : (char)c;
    }
    out[k] = '\0';
    if (k == 0 && !may_be_empty)
        out[0] = 'x', out[1] = '\0';
    free(f);
}

/* An attachment name as a file name. */
static void
next_name(struct fuzz_split *sp, char *out)
{
    size_t len, k = 0, o = 0;
    uint8_t *f = next_field(sp, &len);

    if (f[0] == '\0' || strcmp((char *)f, ".") == 0 ||
        strcmp((char *)f, "..") == 0)
        out[o++] = '_';
    for (; f[k] != '\0' && k < NAME_LEN_MAX; k++)
        out[o++] = f[k] == '/' ? '_' : (char)f[k];
    out[o] = '\0';
    free(f);
}

static void
parse_input(const uint8_t *data, size_t size, struct input *in)
{
    struct fuzz_split sp;
    const char *at;
    size_t len;

    in->opt0 = data[0];
    in->opt1 = data[1];
    fuzz_split_init(&sp, data + 2, size - 2);
    next_addr(&sp, in->from, 1);
    at = strrchr(in->from, '@');
    snprintf(in->domain, sizeof(in->domain), "%s",
             at != NULL ? at + 1 : "localhost");
    if ((in->opt0 >> 6) >= 2) {
        in->body = next_field(&sp, &in->body_len);
        in->name = (char *)next_field(&sp, &len);
        return;
    }
    in->name = (char *)next_field(&sp, &len);
    in->subject = (char *)next_field(&sp, &len);
    in->nto = in->opt1 & 3u;
    in->ncc = (in->opt1 >> 2) & 3u;
    for (size_t i = 0; i < in->nto; i++)
        next_addr(&sp, in->to[i], 0);
    for (size_t i = 0; i < in->ncc; i++)
        next_addr(&sp, in->cc[i], 0);
    in->body = next_field(&sp, &in->body_len);
    in->natt = in->opt0 & 3u;
    for (size_t i = 0; i < in->natt; i++) {
        next_name(&sp, in->att_name[i]);
        in->att[i] = next_field(&sp, &in->att_len[i]);
    }
}

static void
free_input(struct input *in)
{
    free(in->name);
    free(in->subject);
    free(in->body);
    for (size_t i = 0; i < MAX_ATTACH; i++)
        free(in->att[i]);
}

/* --- Checking helpers ----------------------------------------------------- */

static void
put(struct pst_buf *b, const void *p, size_t len)
{
    if (pst_buf_append(b, p, len) != 0)
        abort();
}

static int
same(const struct pst_buf *b, const void *p, size_t len)
{
    return b->len == len && (len == 0 || memcmp(b->data, p, len) == 0);
}

static int
same_str(const struct pst_buf *b, const char *s)
{
    return same(b, s, strlen(s));
}

static int
starts_with(const uint8_t *p, size_t len, const char *s)
{
    size_t n = strlen(s);

    return len >= n && memcmp(p, s, n) == 0;
}

/* Offset of s in p[from..len), or len. */
static size_t
find(const uint8_t *p, size_t len, size_t from, const uint8_t *s, size_t n)
{
    for (size_t i = from; n <= len && i <= len - n; i++)
        if (memcmp(p + i, s, n) == 0)
            return i;
    return len;
}

/* Line ends: CRLF only, and lines of at most 998 octets. */
static void
check_lines(const uint8_t *p, size_t len)
{
    size_t col = 0;

    if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n')
        abort();
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\r') {
            if (i + 1 == len || p[i + 1] != '\n')
                abort(); /* bare CR */
        } else if (p[i] == '\n') {
            if (i == 0 || p[i - 1] != '\r')
                abort(); /* bare LF */
            col = 0;
        } else if (++col > LINE_OCTETS) {
            abort();
        }
    }
}

/* RFC 5322 §3.6.8: ftext is printable ASCII but ":". */
static size_t
field_name_len(const uint8_t *line, size_t len)
{
    size_t k = 0;

    while (k < len && line[k] > ' ' && line[k] < 0x7f && line[k] != ':')
        k++;
    return k > 0 && k < len && line[k] == ':' ? k : 0;
}

/*
 * A header in CRLF lines (message or part): 7-bit, no NUL, fields and
 * continuations, then an empty line.  Returns its length (without the
 * empty line); *body gets the offset after the empty line.
 */
static size_t
check_header(const uint8_t *p, size_t len, size_t *body)
{
    size_t off = 0;

    while (off < len) {
        const uint8_t *lf = memchr(p + off, '\n', len - off);
        size_t end, l;

        if (lf == NULL)
            abort();
        end = (size_t)(lf - p) + 1;
        l = end - off - 2;
        if (l == 0) {
            *body = end;
            return off;
        }
        for (size_t i = off; i < off + l; i++)
            if (p[i] == 0 || p[i] >= 0x80)
                abort(); /* RFC 2047: non-ASCII goes encoded */
        if (p[off] == ' ' || p[off] == '\t') {
            if (off == 0)
                abort();
        } else if (field_name_len(p + off, l) == 0) {
            abort();
        }
        off = end;
    }
    abort(); /* no empty line */
}

/*
 * The unfolded value (after the colon) of the field called name in a
 * checked header; aborts when there are two.  Returns 1 with v set, 0
 * when there is none.
 */
static int
field_value(const uint8_t *h, size_t hlen, const char *name,
            struct pst_buf *v)
{
    size_t n = strlen(name), off = 0;
    int found = 0, in_field = 0;

    pst_buf_reset(v);
    while (off < hlen) {
        const uint8_t *line = h + off;
        size_t end = (size_t)((const uint8_t *)memchr(line, '\n',
                                                      hlen - off) - h) + 1;
        size_t l = end - off - 2;

        if (line[0] == ' ' || line[0] == '\t') {
            /* RFC 5322 §2.2.3: unfolding takes the CRLF away only. */
            if (in_field)
                put(v, line, l);
        } else {
            in_field = l > n && line[n] == ':' &&
                       strncasecmp((const char *)line, name, n) == 0;
            if (in_field) {
                if (found++)
                    abort();
                put(v, line + n + 1, l - n - 1);
            }
        }
        off = end;
    }
    return found;
}

/* RFC 2047 encoded-words "=?UTF-8?B?...?=" apart by one space. */
static int
decode_words(const uint8_t *p, size_t len, struct pst_buf *out)
{
    size_t off = 0;

    for (;;) {
        size_t start = off, end;

        if (!starts_with(p + off, len - off, "=?UTF-8?B?"))
            return -1;
        off += 10;
        end = find(p, len, off, (const uint8_t *)"?=", 2);
        if (end == len || end + 2 - start > WORD_MAX ||
            pst_base64_decode(p + off, end - off, out) != 0)
            return -1;
        off = end + 2;
        if (off == len)
            return 0;
        if (p[off] != ' ')
            return -1;
        off++;
    }
}

static int
is_atext(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* A display name: atoms, a quoted-string or encoded-words. */
static int
decode_phrase(const uint8_t *p, size_t len, struct pst_buf *out)
{
    if (starts_with(p, len, "=?"))
        return decode_words(p, len, out);
    if (len > 0 && p[0] == '"') {
        if (len < 2 || p[len - 1] != '"')
            return -1;
        for (size_t i = 1; i < len - 1; i++) {
            if (p[i] == '"')
                return -1;
            if (p[i] == '\\' && ++i == len - 1)
                return -1; /* the closing quote is escaped */
            put(out, p + i, 1);
        }
        return 0;
    }
    if (len == 0 || p[0] == ' ')
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!is_atext(p[i]) && p[i] != ' ')
            return -1;
    put(out, p, len);
    return 0;
}

/* RFC 2231 attribute-char: no space, CTL, "*", "'", "%" or tspecial. */
static int
is_attr_char(uint8_t c)
{
    return c > ' ' && c < 0x7f && strchr("*'%()<>@,;:\\\"/[]?=", c) == NULL;
}

static int
hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The parameter "; NAME=\"...\"" or "; NAME*=UTF-8''..." that is all of
 * p[0..len). */
static int
decode_param(const uint8_t *p, size_t len, const char *name,
             struct pst_buf *out)
{
    size_t n = strlen(name);

    if (!starts_with(p, len, "; ") || !starts_with(p + 2, len - 2, name))
        return -1;
    p += 2 + n;
    len -= 2 + n;
    if (starts_with(p, len, "=\"")) {
        if (len < 3 || p[len - 1] != '"')
            return -1;
        for (size_t i = 2; i < len - 1; i++) {
            if (p[i] == '"' || p[i] == '\\')
                return -1;
            put(out, p + i, 1);
        }
        return 0;
    }
    if (!starts_with(p, len, "*=UTF-8''"))
        return -1;
    for (size_t i = 9; i < len; i++) {
        if (p[i] == '%') {
            int hi, lo;
            uint8_t c;

            if (i + 2 >= len || (hi = hex_value(p[i + 1])) < 0 ||
                (lo = hex_value(p[i + 2])) < 0)
                return -1;
            c = (uint8_t)(hi * 16 + lo);
            put(out, &c, 1);
            i += 2;
        } else if (is_attr_char(p[i])) {
            put(out, p + i, 1);
        } else {
            return -1;
        }
    }
    return 0;
}

/* base64 in CRLF lines of 1 to 76 characters, decoded into out. */
static int
decode_b64_lines(const uint8_t *p, size_t len, struct pst_buf *out)
{
    struct pst_buf all;
    size_t off = 0;
    int rc;

    pst_buf_init(&all, BUF_MAX, 0);
    while (off < len) {
        const uint8_t *lf = memchr(p + off, '\n', len - off);
        size_t end = lf != NULL ? (size_t)(lf - p) + 1 : len;
        size_t l = end - off - 2;

        if (lf == NULL || l == 0 || l > B64_LINE_MAX) {
            pst_buf_clear(&all);
            return -1;
        }
        put(&all, p + off, l);
        off = end;
    }
    rc = pst_base64_decode(all.data, all.len, out);
    pst_buf_clear(&all);
    return rc;
}

/* Text with every line end (CRLF, CR, LF) as LF, ending in one. */
static void
canonical(const uint8_t *p, size_t len, struct pst_buf *out)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\r') {
            put(out, "\n", 1);
            if (i + 1 < len && p[i + 1] == '\n')
                i++;
        } else {
            put(out, p + i, 1);
        }
    }
    if (out->len > 0 && out->data[out->len - 1] != '\n')
        put(out, "\n", 1);
}

/* --- Compose -------------------------------------------------------------- */

struct check {
    struct pst_buf v, w, x;
    int form7;      /* [in] checking the 7-bit form (out7) */
    int text_8bit;  /* [out] the text part went 8bit */
};

/*
 * Quoted-printable text (RFC 2045 §6.7) in checked CRLF lines, decoded
 * into out with an LF for each hard line break.  Lines of at most 76
 * characters (rule 5); printable ASCII, SPACE and TAB, and =XX in upper
 * case (rule 1) only for what may not stand as itself: "=", controls and
 * 8-bit bytes, and a SPACE or TAB ending a line (rule 3), which may not
 * stand as itself there; "=" ending a line is a soft break, and the text
 * does not end with one.
 */
static int
decode_qp(const uint8_t *p, size_t len, struct pst_buf *out)
{
    size_t off = 0;
    int soft = 0;

    while (off < len) {
        size_t end = (size_t)((const uint8_t *)memchr(p + off, '\n',
                                                      len - off) - p) + 1;
        size_t last = end - 3; /* the line's last character, if any */

        if (end - off - 2 > 76)
            return -1;
        soft = 0;
        for (size_t i = off; i + 2 < end; i++) {
            uint8_t c = p[i];
            int hi, lo;

            if (c == '=' && i == last) {
                soft = 1;
            } else if (c == '=') {
                if (i + 2 > last || (hi = hex_value(p[i + 1])) < 0 ||
                    (lo = hex_value(p[i + 2])) < 0)
                    return -1;
                c = (uint8_t)(hi * 16 + lo);
                i += 2;
                if (!(c == '=' || (c < 32 && c != '\t') || c > 126 ||
                      ((c == ' ' || c == '\t') && i == last)))
                    return -1; /* encoded without a need */
                put(out, &c, 1);
            } else if (c == ' ' || c == '\t') {
                if (i == last)
                    return -1;
                put(out, &c, 1);
            } else if (c < 33 || c > 126) {
                return -1;
            } else {
                put(out, &c, 1);
            }
        }
        if (!soft)
            put(out, "\n", 1);
        off = end;
    }
    return soft ? -1 : 0;
}

static void
check_text_part(struct check *k, const uint8_t *h, size_t hlen,
                const uint8_t *c, size_t clen, const struct input *in)
{
    int seven;

    if (field_value(h, hlen, "Content-Transfer-Encoding", &k->w) != 1 ||
        field_value(h, hlen, "Content-Type", &k->v) != 1)
        abort();
    pst_buf_reset(&k->x);
    if (same_str(&k->w, " base64")) {
        if (!same_str(&k->v, " text/plain; charset=utf-8") ||
            decode_b64_lines(c, clen, &k->x) != 0 ||
            !same(&k->x, in->body, in->body_len))
            abort();
        return;
    }
    if (same_str(&k->w, " quoted-printable")) {
        /* Only in the 7-bit form, for text that is 8bit otherwise. */
        if (!k->form7 || !same_str(&k->v, " text/plain; charset=utf-8") ||
            decode_qp(c, clen, &k->x) != 0)
            abort();
        pst_buf_reset(&k->w);
        canonical(in->body, in->body_len, &k->w);
        if (!same(&k->x, k->w.data, k->w.len))
            abort();
        k->text_8bit = 1;
        return;
    }
    seven = same_str(&k->w, " 7bit");
    if (!seven && k->form7)
        abort(); /* RFC 6152 §3: never 8bit in the 7-bit form */
    k->text_8bit = !seven;
    if (!seven && !same_str(&k->w, " 8bit"))
        abort();
    if (!same_str(&k->v, seven ? " text/plain; charset=us-ascii"
                               : " text/plain; charset=utf-8"))
        abort();
    for (size_t i = 0; i < clen; i++)
        if (c[i] == 0 || (seven && c[i] >= 0x80))
            abort(); /* RFC 2045 §2.7, §2.8 */
    canonical(c, clen, &k->x);
    pst_buf_reset(&k->w);
    canonical(in->body, in->body_len, &k->w);
    if (!same(&k->x, k->w.data, k->w.len))
        abort();
}

static void
check_attachment(struct check *k, const uint8_t *p, size_t len,
                 const struct input *in, size_t i)
{
    const char *name = in->att_name[i], *type = mime_type_for(name);
    size_t body, hlen = check_header(p, len, &body), tl = strlen(type);

    if (field_value(p, hlen, "Content-Transfer-Encoding", &k->w) != 1 ||
        !same_str(&k->w, " base64"))
        abort();
    pst_buf_reset(&k->x);
    if (field_value(p, hlen, "Content-Type", &k->v) != 1 ||
        k->v.len < tl + 1 || k->v.data[0] != ' ' ||
        memcmp(k->v.data + 1, type, tl) != 0 ||
        decode_param(k->v.data + 1 + tl, k->v.len - 1 - tl, "name",
                     &k->x) != 0 ||
        !same_str(&k->x, name))
        abort();
    pst_buf_reset(&k->x);
    if (field_value(p, hlen, "Content-Disposition", &k->v) != 1 ||
        !starts_with(k->v.data, k->v.len, " attachment") ||
        decode_param(k->v.data + 11, k->v.len - 11, "filename",
                     &k->x) != 0 ||
        !same_str(&k->x, name))
        abort();
    pst_buf_reset(&k->x);
    if (decode_b64_lines(p + body, len - body, &k->x) != 0 ||
        !same(&k->x, in->att[i], in->att_len[i]))
        abort();
}

/* The parts of a multipart/mixed body (RFC 2046 §5.1.1). */
static void
check_multipart(struct check *k, const uint8_t *p, size_t len,
                const char *boundary, const struct input *in)
{
    uint8_t delim[80];
    size_t dl = (size_t)snprintf((char *)delim, sizeof(delim), "\r\n--%s",
                                 boundary);
    size_t off = find(p, len, 0, delim, dl), nparts = 0;

    if (off == len)
        abort();
    for (;;) {
        size_t start = off + dl, next;

        if (starts_with(p + start, len - start, "--\r\n")) {
            if (start + 4 != len)
                abort(); /* nothing after the close delimiter */
            break;
        }
        if (!starts_with(p + start, len - start, "\r\n"))
            abort();
        start += 2;
        next = find(p, len, start, delim, dl);
        if (next == len)
            abort(); /* not closed */
        if (nparts == 0) {
            size_t body, hlen = check_header(p + start, next - start, &body);

            check_text_part(k, p + start, hlen, p + start + body,
                            next - start - body, in);
        } else if (nparts <= in->natt) {
            check_attachment(k, p + start, next - start, in, nparts - 1);
        } else {
            abort();
        }
        nparts++;
        off = next;
    }
    if (nparts != in->natt + 1)
        abort();
}

static void
check_addresses(struct check *k, const uint8_t *h, size_t hlen,
                const char *field, const char list[][ADDR_MAX + 1],
                size_t n)
{
    if (field_value(h, hlen, field, &k->v) != (n > 0))
        abort();
    pst_buf_reset(&k->w);
    for (size_t i = 0; i < n; i++) {
        put(&k->w, i ? ", <" : " <", 3 - (i == 0));
        put(&k->w, list[i], strlen(list[i]));
        put(&k->w, ">", 1);
    }
    if (!same(&k->v, k->w.data, k->w.len))
        abort();
}

/* Returns whether the text part went 8bit (or, in the 7-bit form, was
 * 8-bit and went quoted-printable). */
static int
check_composed(const uint8_t *p, size_t len, const struct input *in,
               int form7)
{
    struct check k = {.form7 = form7};
    size_t body, hlen, fl = strlen(in->from), dl;
    const char *dom = in->domain[0] != '\0' ? in->domain : "localhost";

    check_lines(p, len);
    for (size_t i = 0; form7 && i < len; i++)
        if (p[i] >= 0x80)
            abort();
    hlen = check_header(p, len, &body);
    pst_buf_init(&k.v, BUF_MAX, 0);
    pst_buf_init(&k.w, BUF_MAX, 0);
    pst_buf_init(&k.x, BUF_MAX, 0);

    /* From: [phrase] <from> */
    if (field_value(p, hlen, "From", &k.v) != 1 || k.v.len < fl + 3 ||
        memcmp(k.v.data + k.v.len - fl - 2, "<", 1) != 0 ||
        memcmp(k.v.data + k.v.len - fl - 1, in->from, fl) != 0 ||
        k.v.data[k.v.len - 1] != '>' || k.v.data[0] != ' ')
        abort();
    if ((in->opt0 & 0x08u) && in->name[0] != '\0') {
        if (k.v.len < fl + 5 || k.v.data[k.v.len - fl - 3] != ' ' ||
            decode_phrase(k.v.data + 1, k.v.len - fl - 4, &k.x) != 0 ||
            !same_str(&k.x, in->name))
            abort();
    } else if (k.v.len != fl + 3) {
        abort();
    }
    check_addresses(&k, p, hlen, "To", in->to, in->nto);
    check_addresses(&k, p, hlen, "Cc", in->cc, in->ncc);

    /* Subject: itself or encoded-words. */
    pst_buf_reset(&k.x);
    if (field_value(p, hlen, "Subject", &k.v) != ((in->opt0 & 0x04u) != 0))
        abort();
    if (in->opt0 & 0x04u) {
        const uint8_t *s;
        size_t sl;

        if (k.v.len == 0 || k.v.data[0] != ' ')
            abort();
        s = k.v.data + 1;
        sl = k.v.len - 1;
        if (starts_with(s, sl, "=?")) {
            if (decode_words(s, sl, &k.x) != 0 ||
                !same_str(&k.x, in->subject))
                abort();
        } else if (sl != strlen(in->subject) ||
                   memcmp(s, in->subject, sl) != 0) {
            abort();
        }
    }

    if (field_value(p, hlen, "Date", &k.v) != 1 ||
        field_value(p, hlen, "MIME-Version", &k.v) != 1 ||
        !same_str(&k.v, " 1.0"))
        abort();
    dl = strlen(dom);
    if (field_value(p, hlen, "Message-ID", &k.v) != 1 ||
        !starts_with(k.v.data, k.v.len, " <") || k.v.len < dl + 5 ||
        k.v.data[k.v.len - dl - 2] != '@' ||
        memcmp(k.v.data + k.v.len - dl - 1, dom, dl) != 0 ||
        k.v.data[k.v.len - 1] != '>')
        abort();

    if (in->natt == 0) {
        check_text_part(&k, p, hlen, p + body, len - body, in);
    } else {
        char boundary[72];
        size_t bl;

        if (field_value(p, hlen, "Content-Type", &k.v) != 1 ||
            !starts_with(k.v.data, k.v.len,
                         " multipart/mixed; boundary=\"") ||
            k.v.data[k.v.len - 1] != '"')
            abort();
        bl = k.v.len - 29;
        /* RFC 2046 §5.1.1: 1 to 70 characters. */
        if (bl < 1 || bl > 70 || memchr(k.v.data + 28, '"', bl) != NULL)
            abort();
        memcpy(boundary, k.v.data + 28, bl);
        boundary[bl] = '\0';
        check_multipart(&k, p + body, len - body, boundary, in);
    }
    pst_buf_clear(&k.v);
    pst_buf_clear(&k.w);
    pst_buf_clear(&k.x);
    return k.text_8bit;
}

/* The two forms of one message carry the same Date, Message-ID and, for
 * a multipart, Content-Type (its boundary). */
static void
check_same_fields(const struct mbuf *a, const struct mbuf *b)
{
    static const char *const names[] = {"Date", "Message-ID",
                                        "Content-Type"};
    struct pst_buf va, vb;
    size_t body, ha = check_header(a->data, a->len, &body),
                 hb = check_header(b->data, b->len, &body);

    pst_buf_init(&va, BUF_MAX, 0);
    pst_buf_init(&vb, BUF_MAX, 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int fa = field_value(a->data, ha, names[i], &va);
        int fb = field_value(b->data, hb, names[i], &vb);

        if (fa != fb || (i < 2 && !same(&va, vb.data, vb.len)) ||
            (i == 2 && starts_with(va.data, va.len, " multipart/") &&
             !same(&va, vb.data, vb.len)))
            abort();
    }
    pst_buf_clear(&va);
    pst_buf_clear(&vb);
}

static void
run_compose(struct input *in)
{
    const char *dir = work_dir();
    char body_path[4200], att_path[MAX_ATTACH][4400], err[256];
    const char *attach[MAX_ATTACH], *to[MAX_ADDRS], *cc[MAX_ADDRS];
    int mem = (in->opt1 & 0x40u) != 0, rc;
    int missing = (in->opt0 & 0x20u) != 0 && (in->natt > 0 || !mem);
    int want7 = (in->opt1 & 0x20u) != 0;
    struct mbuf out = {0}, out7 = {0};
    struct compose c = {
        .from = in->from,
        .from_name = (in->opt0 & 0x08u) ? in->name : NULL,
        .to = to,
        .nto = in->nto,
        .cc = cc,
        .ncc = in->ncc,
        .subject = (in->opt0 & 0x04u) ? in->subject : NULL,
        .attach = attach,
        .nattach = in->natt,
        .msgid_domain = in->domain,
    };

    for (size_t i = 0; i < in->nto; i++)
        to[i] = in->to[i];
    for (size_t i = 0; i < in->ncc; i++)
        cc[i] = in->cc[i];
    snprintf(body_path, sizeof(body_path), "%s/body", dir);
    if ((in->opt0 & 0x10u) && mem) {
        c.body = in->body;
        c.body_len = in->body_len;
    } else if (in->opt0 & 0x10u) {
        c.body_file = body_path;
        if (!missing || in->natt > 0)
            write_file(body_path, in->body, in->body_len);
    } else if (missing && in->natt == 0) {
        c.body_file = body_path;
    }
    for (size_t i = 0; i < in->natt; i++) {
        snprintf(att_path[i], sizeof(att_path[i]), "%s/a%zu/%s", dir, i,
                 in->att_name[i]);
        attach[i] = att_path[i];
        if (!missing || i + 1 < in->natt)
            write_file(att_path[i], in->att[i], in->att_len[i]);
    }
    if (!(in->opt0 & 0x10u)) {
        free(in->body); /* no body file: the text part is empty */
        in->body = NULL;
        in->body_len = 0;
    }

    memset(err, 0x55, sizeof(err));
    rc = mime_compose(&c, &out, want7 ? &out7 : NULL, err, sizeof(err));
    /* Gone before any abort(), which would leave them behind. */
    unlink(body_path);
    for (size_t i = 0; i < in->natt; i++)
        unlink(att_path[i]);
#ifdef FUZZ_TRACE
    fprintf(stderr, "rc %d\n", rc);
    if (out.len > 0)
        fwrite(out.data, 1, out.len, stderr);
#endif
    if (missing) {
        if (rc != -1 || err[0] == '\0' ||
            memchr(err, '\0', sizeof(err)) == NULL || out7.len != 0)
            abort();
    } else if (rc != 0) {
        abort();
    } else if (check_composed(out.data, out.len, in, 0)) {
        /* 8bit text: the 7-bit form when asked for, the same message
         * with the text quoted-printable. */
        if (want7 != (out7.len > 0))
            abort();
        if (want7) {
            if (!check_composed(out7.data, out7.len, in, 1))
                abort();
            check_same_fields(&out, &out7);
        }
    } else if (out7.len != 0) {
        abort(); /* nothing to convert */
    }
    mbuf_free(&out);
    mbuf_free(&out7);
}

/* --- Complete ------------------------------------------------------------ */

struct msg_header {
    size_t hlen, body;
    int from, date, msgid, rcpt;
};

static int
is_field(const uint8_t *line, size_t l, const char *name)
{
    size_t n = strlen(name);

    return l > n && line[n] == ':' &&
           strncasecmp((const char *)line, name, n) == 0;
}

/*
 * The header of a message as read (line ends LF or CRLF): the lines up to
 * the first empty line while each is a field or continues one.
 */
static void
msg_header(const uint8_t *p, size_t len, struct msg_header *m)
{
    size_t i = 0;

    *m = (struct msg_header){.hlen = len, .body = len};
    while (i < len) {
        const uint8_t *lf = memchr(p + i, '\n', len - i);
        size_t end = lf != NULL ? (size_t)(lf - p) : len, l = end - i;

        if (l == 0 || (l == 1 && p[i] == '\r')) {
            m->hlen = i;
            m->body = lf != NULL ? end + 1 : len;
            return;
        }
        if ((p[i] == ' ' || p[i] == '\t') ? i == 0
                                          : field_name_len(p + i, l) == 0) {
            m->hlen = m->body = i;
            return;
        }
        m->from |= is_field(p + i, l, "From");
        m->date |= is_field(p + i, l, "Date");
        m->msgid |= is_field(p + i, l, "Message-ID");
        m->rcpt |= is_field(p + i, l, "To") || is_field(p + i, l, "Cc") ||
                   is_field(p + i, l, "Bcc");
        i = lf != NULL ? end + 1 : len;
    }
}

/* A line of p at off that is "NAME: " and printable ASCII, ending in
 * CRLF; returns its end, or 0. */
static size_t
added_line(const uint8_t *p, size_t len, size_t off, const char *name)
{
    const uint8_t *lf;
    size_t end;

    if (!starts_with(p + off, len - off, name))
        return 0;
    lf = memchr(p + off, '\n', len - off);
    if (lf == NULL)
        return 0;
    end = (size_t)(lf - p) + 1;
    if (end - off < strlen(name) + 3 || p[end - 2] != '\r')
        return 0;
    for (size_t i = off; i < end - 2; i++)
        if (p[i] < ' ' || p[i] >= 0x7f)
            return 0;
    return end;
}

/*
 * The From field added at the top of p: "From: <from>", or with a name
 * "From: " phrase " <from>" (the phrase folded when encoded-words), and
 * CRLF.  Returns its length.
 */
static size_t
added_from(const uint8_t *p, size_t plen, const char *from,
           const char *name)
{
    size_t fl = strlen(from), end = 6, vl;
    struct pst_buf v, x;

    if (!starts_with(p, plen, "From: "))
        abort();
    pst_buf_init(&v, BUF_MAX, 0);
    pst_buf_init(&x, BUF_MAX, 0);
    /* To the CRLF not followed by white space, unfolded (§2.2.3). */
    for (;;) {
        size_t e = find(p, plen, end, (const uint8_t *)"\r\n", 2);

        if (e == plen)
            abort();
        put(&v, p + end, e - end);
        end = e + 2;
        if (end == plen || (p[end] != ' ' && p[end] != '\t'))
            break;
    }
    vl = v.len;
    if (vl < fl + 2 || v.data[vl - fl - 2] != '<' ||
        memcmp(v.data + vl - fl - 1, from, fl) != 0 ||
        v.data[vl - 1] != '>')
        abort();
    if (name == NULL || name[0] == '\0') {
        if (vl != fl + 2)
            abort();
    } else if (vl < fl + 4 || v.data[vl - fl - 3] != ' ' ||
               decode_phrase(v.data, vl - fl - 3, &x) != 0 ||
               !same_str(&x, name)) {
        abort();
    }
    pst_buf_clear(&v);
    pst_buf_clear(&x);
    return end;
}

static void
check_completed(const uint8_t *in, size_t len, const char *from,
                const char *name, const char *domain, int strip,
                const uint8_t *p, size_t plen)
{
    struct msg_header m;
    struct pst_buf want;
    size_t off = 0, i = 0, dl = strlen(domain);
    int skipping = 0;

    msg_header(in, len, &m);
    if (from != NULL && !m.from)
        off = added_from(p, plen, from, name);
    if (!m.date && (off = added_line(p, plen, off, "Date: ")) == 0)
        abort();
    if (!m.msgid) {
        size_t end = added_line(p, plen, off, "Message-ID: <");

        /* The domain, else localhost (the Message-ID of RFC 5322 §3.6.4,
         * with nothing folded onto it). */
        if (domain[0] == '\0')
            domain = "localhost", dl = 9;
        if (end == 0 || end - off < dl + 17 ||
            p[end - dl - 4] != '@' ||
            memcmp(p + end - dl - 3, domain, dl) != 0 ||
            memcmp(p + end - 3, ">\r\n", 3) != 0 ||
            (end < plen && (p[end] == ' ' || p[end] == '\t')))
            abort();
        off = end;
    }
    pst_buf_init(&want, BUF_MAX, 0);
    while (i < m.hlen) {
        const uint8_t *lf = memchr(in + i, '\n', m.hlen - i);
        size_t end = lf != NULL ? (size_t)(lf - in) + 1 : m.hlen;

        if (in[i] != ' ' && in[i] != '\t')
            skipping = strip && is_field(in + i, end - i, "Bcc");
        if (!skipping)
            put(&want, in + i, end - i);
        i = end;
    }
    if (m.hlen > 0 && in[m.hlen - 1] != '\n')
        put(&want, "\r\n", 2);
    put(&want, "\r\n", 2);
    put(&want, in + m.body, len - m.body);
    if (plen - off != want.len ||
        (want.len > 0 && memcmp(p + off, want.data, want.len) != 0))
        abort();
    pst_buf_clear(&want);
}

static void
run_complete(const struct input *in)
{
    const char *from = (in->opt1 & 0x10u) ? NULL : in->from;
    const char *name = (in->opt1 & 0x40u) ? in->name : NULL;
    int strip = (in->opt0 >> 6) == 3;
    struct mbuf out = {0};
    struct msg_header m;
    char err[256], **addrs = NULL;
    size_t n = 0;

    if (mime_complete(in->body, in->body_len, from, name, in->domain, strip,
                      &out, err, sizeof(err)) != 0)
        abort();
#ifdef FUZZ_TRACE
    fwrite(out.data, 1, out.len, stderr);
#endif
    check_completed(in->body, in->body_len, from, name, in->domain, strip,
                    out.data, out.len);
    mbuf_free(&out);

    if (mime_header_recipients(in->body, in->body_len, &addrs, &n) != 0)
        abort();
    msg_header(in->body, in->body_len, &m);
    if (n > 0 && !m.rcpt)
        abort();
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(addrs[i]);

        if (l == 0 || strchr(addrs[i], '@') == NULL ||
            strchr(" \t\r\n", addrs[i][0]) != NULL ||
            strchr(" \t\r\n", addrs[i][l - 1]) != NULL)
            abort();
        free(addrs[i]);
    }
    free(addrs);
}

/* --- Splitting a sender ("Name <addr>") -------------------------------- */

/* got and want both NULL, or equal strings. */
static void
same_or_abort(const char *got, const char *want)
{
    if (got == NULL ? want != NULL : want == NULL || strcmp(got, want) != 0)
        abort();
}

static void
run_split(const struct input *in)
{
    struct pst_buf q;
    char *name, *addr;

    /* Any text: a result is consistent; without "<", it is all address. */
    if (mime_split_mailbox(in->name, &name, &addr) == 0) {
        if (addr == NULL || (name != NULL && name[0] == '\0'))
            abort();
        if (strchr(in->name, '<') == NULL &&
            (name != NULL || strcmp(addr, in->name) != 0))
            abort();
        free(name);
        free(addr);
    } else if (name != NULL || addr != NULL) {
        abort();
    }
    /* "\"" name, "\\" and "\"" escaped, "\" <" from ">": both back. */
    pst_buf_init(&q, BUF_MAX, 0);
    put(&q, "\"", 1);
    for (const char *p = in->name; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            put(&q, "\\", 1);
        put(&q, p, 1);
    }
    put(&q, "\" <", 3);
    put(&q, in->from, strlen(in->from));
    put(&q, ">", 2); /* with the NUL */
    if (mime_split_mailbox((const char *)q.data, &name, &addr) != 0)
        abort();
    same_or_abort(name, in->name[0] != '\0' ? in->name : NULL);
    same_or_abort(addr, in->from);
    free(name);
    free(addr);
    pst_buf_clear(&q);
    /* A bare address (no "<" in it): itself, no name. */
    if (mime_split_mailbox(in->from, &name, &addr) != 0 || name != NULL ||
        strcmp(addr, in->from) != 0)
        abort();
    free(addr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {0};

    if (size < 2)
        return 0;
    parse_input(data, size, &in);
    if ((in.opt0 >> 6) >= 2) {
        run_complete(&in);
    } else {
        if (in.opt1 & 0x80u)
            run_split(&in);
        run_compose(&in);
    }
    free_input(&in);
    return 0;
}
