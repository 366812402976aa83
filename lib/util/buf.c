#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/buf.h>

void
pst_buf_init(struct pst_buf *b, size_t max, int secret)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->secret = secret ? 1u : 0u;
}

void
pst_buf_clear(struct pst_buf *b)
{
    if (b->data != NULL) {
        if (b->secret)
            OPENSSL_clear_free(b->data, b->cap + 1);
        else
            free(b->data);
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
pst_buf_reset(struct pst_buf *b)
{
    if (b->data != NULL) {
        if (b->secret)
            OPENSSL_cleanse(b->data, b->len);
        b->data[0] = '\0';
    }
    b->len = 0;
}

/* Move b's contents to an allocation of cap + 1 bytes (cap >= len).  A
 * secret buffer is copied and its old memory wiped: realloc could leave a
 * copy of the secret behind. */
static int
buf_resize(struct pst_buf *b, size_t cap)
{
    uint8_t *p;

    if (b->secret) {
        p = malloc(cap + 1);
        if (p == NULL)
            return PST_ENOMEM;
        if (b->data != NULL) {
            memcpy(p, b->data, b->len);
            OPENSSL_clear_free(b->data, b->cap + 1);
        }
    } else {
        p = realloc(b->data, cap + 1);
        if (p == NULL)
            return PST_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int
pst_buf_shrink(struct pst_buf *b, size_t keep)
{
    size_t cap = b->len > keep ? b->len : keep;

    if (b->data == NULL || b->cap <= cap)
        return 0;
    if (cap == 0) {
        pst_buf_clear(b);
        return 0;
    }
    if (buf_resize(b, cap) < 0)
        return PST_ENOMEM;
    b->data[b->len] = '\0';
    return 0;
}

/* Make room for extra more bytes plus the NUL. */
static int
buf_reserve(struct pst_buf *b, size_t extra)
{
    size_t need, cap;

    if (extra > b->max || b->len > b->max - extra)
        return PST_ELIMIT;
    need = b->len + extra;
    if (need <= b->cap && b->data != NULL)
        return 0;
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    if (cap < need)
        cap = need;
    return buf_resize(b, cap);
}

int
pst_buf_append(struct pst_buf *b, const void *p, size_t len)
{
    int rc = buf_reserve(b, len);

    if (rc < 0)
        return rc;
    if (len > 0)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int
pst_buf_append_str(struct pst_buf *b, const char *s)
{
    return pst_buf_append(b, s, strlen(s));
}

int
pst_buf_append_byte(struct pst_buf *b, uint8_t c)
{
    return pst_buf_append(b, &c, 1);
}

int
pst_buf_printf(struct pst_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return PST_EINVAL;
    rc = buf_reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int
pst_buf_append_hex(struct pst_buf *b, const uint8_t *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    int rc;

    if (len > SIZE_MAX / 2)
        return PST_ELIMIT;
    rc = buf_reserve(b, len * 2);
    if (rc < 0)
        return rc;
    for (i = 0; i < len; i++) {
        b->data[b->len++] = (uint8_t)digits[p[i] >> 4];
        b->data[b->len++] = (uint8_t)digits[p[i] & 0x0f];
    }
    b->data[b->len] = '\0';
    return 0;
}
