/*
 * Helpers shared by the fuzz targets: a reproducible random source and
 * the splitting of one input into messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/sasl.h>

#include "fuzz.h"

/* Any fixed value: runs must be reproducible. */
#define FUZZ_RAND_SEED 0x706f737465726eull /* "postern" */

void
fuzz_rand_init(struct fuzz_rand *r, const uint8_t *prefix, size_t len)
{
    r->prefix = prefix;
    r->prefix_len = prefix != NULL ? len : 0;
    r->pos = 0;
    r->state = FUZZ_RAND_SEED;
}

/* splitmix64 (Steele, Lea, Flood 2014): small, good enough, fixed. */
static uint64_t
fuzz_rand_next(struct fuzz_rand *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int
fuzz_random(void *ctx, uint8_t *buf, size_t len)
{
    struct fuzz_rand *r = ctx;
    size_t i = 0;

    for (; i < len && r->pos < r->prefix_len; i++)
        buf[i] = r->prefix[r->pos++];
    while (i < len) {
        uint64_t v = fuzz_rand_next(r);

        for (int k = 0; k < 8 && i < len; k++, i++) {
            buf[i] = (uint8_t)v;
            v >>= 8;
        }
    }
    return 0;
}

void
fuzz_split_init(struct fuzz_split *sp, const uint8_t *p, size_t len)
{
    sp->p = p;
    sp->len = len;
    sp->off = 0;
    sp->done = 0;
}

uint8_t *
fuzz_dup(const uint8_t *p, size_t len, int nul)
{
    /* malloc(0) gives a block with no usable byte under ASan. */
    uint8_t *d = malloc(len + (nul ? 1 : 0));

    if (d == NULL && len == 0 && !nul)
        d = malloc(1);
    if (d == NULL)
        return NULL;
    if (len > 0)
        memcpy(d, p, len);
    if (nul)
        d[len] = '\0';
    return d;
}

int
fuzz_split_next(struct fuzz_split *sp, uint8_t **seg, size_t *len)
{
    const uint8_t *start, *end;
    size_t n;

    if (sp->done)
        return 0;
    start = sp->p + sp->off;
    n = sp->len - sp->off;
    end = n > 0 ? memchr(start, FUZZ_SEP, n) : NULL;
    if (end == NULL) {
        sp->done = 1;
        *len = n;
    } else {
        *len = (size_t)(end - start);
        sp->off += *len + 1;
    }
    *seg = fuzz_dup(start, *len, 0);
    if (*seg == NULL) {
        sp->done = 1;
        return 0;
    }
    return 1;
}

int
fuzz_number_above(const uint8_t *p, size_t len, uint64_t max,
                  size_t *digits)
{
    uint64_t v = 0;
    int above = 0;
    size_t i = 0;

    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        if (!above) {
            v = v * 10 + (uint64_t)(p[i] - '0');
            if (v > max)
                above = 1;
        }
    }
    *digits = i;
    return above;
}

size_t
fuzz_chunk_len(unsigned mode, const uint8_t *p, size_t left)
{
    switch (mode & 3u) {
    case 1:
        return 1;
    case 2:
        return left < 7 ? left : 7;
    case 3: {
        const uint8_t *lf = memchr(p, '\n', left);

        return lf != NULL ? (size_t)(lf - p) + 1 : left;
    }
    default:
        return left;
    }
}

void
fuzz_layer(struct pst_sasl_layer *l, struct fuzz_split *sp)
{
    struct pst_buf pending, msg, wire;
    uint8_t *seg;
    size_t seg_len;
    int dead = 0;

    pst_buf_init(&pending, 1u << 20, 0);
    pst_buf_init(&msg, 1u << 20, 0);
    pst_buf_init(&wire, 1u << 21, 0);
    while (!dead && fuzz_split_next(sp, &seg, &seg_len)) {
        size_t off = 0;

        if (pst_buf_append(&pending, seg, seg_len) < 0) {
            free(seg);
            break;
        }
        free(seg);
        for (;;) {
            size_t used = 12345, before = msg.len;
            int rc = pst_sasl_layer_unwrap(l, pending.data + off,
                                           pending.len - off, &used, &msg);

#ifdef FUZZ_TRACE
            fprintf(stderr, "layer: unwrap rc %d used %zu\n", rc, used);
#endif
            if (used > pending.len - off || (rc == 1 && used == 0) ||
                (rc != 1 && used != 0) || (rc != 1 && msg.len != before))
                abort();
            if (rc != 1) {
                if (rc < 0) {
                    dead = 1;
                    /* A refused buffer ends the layer. */
                    if (pst_sasl_layer_unwrap(l, pending.data,
                                              pending.len, &used,
                                              &msg) != PST_ESTATE ||
                        pst_sasl_layer_wrap(l, (const uint8_t *)"x", 1,
                                            &wire) != PST_ESTATE)
                        abort();
                }
                break;
            }
            off += used;
            /* What came out goes back the other way. */
            pst_buf_reset(&wire);
            (void)pst_sasl_layer_wrap(l, msg.data + before,
                                      msg.len - before, &wire);
        }
        /* Keep the unconsumed tail for the next segment. */
        if (off > 0) {
            struct pst_buf rest;

            pst_buf_init(&rest, 1u << 20, 0);
            (void)pst_buf_append(&rest, pending.data + off,
                                 pending.len - off);
            pst_buf_clear(&pending);
            pending = rest;
        }
    }
    pst_buf_clear(&pending);
    pst_buf_clear(&msg);
    pst_buf_clear(&wire);
}
