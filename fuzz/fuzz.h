/*
 * Helpers shared by the fuzz targets (fuzz_<target>.c).
 *
 * Each target defines LLVMFuzzerTestOneInput(): create, feed, drain the
 * output, free (nghttp2 fuzz/fuzz_target.cc).  It is linked either with
 * libFuzzer (clang, -Dfuzzing=true) or with main_replay.c, a plain main()
 * that replays a corpus so that gcc builds run every target too.
 *
 * A target calls abort() when an invariant the API documents is broken
 * (a round trip that does not come back, an answer the session refuses):
 * libFuzzer and the replay driver both report that as a finding.
 */
#ifndef POSTERN_FUZZ_H
#define POSTERN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <postern/rand.h>

/* The entry point libFuzzer calls once per input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Messages inside one input are separated by this byte (it never occurs in
 * UTF-8, so only binary garbage loses it).
 */
#define FUZZ_SEP 0xffu

/*
 * A reproducible random source: first the bytes of prefix (so an RFC
 * nonce or challenge comes out exactly), then a fixed splitmix64 stream.
 * It never fails.  Re-initialise it for every input.
 */
struct fuzz_rand {
    const uint8_t *prefix;
    size_t prefix_len;
    size_t pos;
    uint64_t state;
};

void fuzz_rand_init(struct fuzz_rand *r, const uint8_t *prefix, size_t len);
/* A pst_random_fn over a struct fuzz_rand (ctx). */
int fuzz_random(void *ctx, uint8_t *buf, size_t len);

/* Iterates over the FUZZ_SEP-separated segments of an input. */
struct fuzz_split {
    const uint8_t *p;
    size_t len;
    size_t off;
    int done;
};

void fuzz_split_init(struct fuzz_split *sp, const uint8_t *p, size_t len);
/*
 * The next segment as an exact-size heap copy ([out] owned: free() it),
 * so that AddressSanitizer sees a read one byte past its end.  An empty
 * segment is a valid, empty message.
 * Returns: 1 with a segment, 0 when there are no more (or no memory).
 */
int fuzz_split_next(struct fuzz_split *sp, uint8_t **seg, size_t *len);

struct pst_sasl_layer;

/*
 * Feed the rest of sp's segments, one after the other as a byte stream,
 * to the security layer l's unwrap, and wrap what comes out again.
 * abort()s when unwrap breaks its contract: progress without consuming,
 * consuming more than given, output from a buffer it did not accept, or
 * a layer that still works after refusing a buffer.
 */
void fuzz_layer(struct pst_sasl_layer *l, struct fuzz_split *sp);

/*
 * An exact-size heap copy of p[0..len) ([out] owned: free() it), or NULL
 * when out of memory.  With nul != 0 a NUL follows the bytes (not
 * counted), for APIs that take C strings.
 */
uint8_t *fuzz_dup(const uint8_t *p, size_t len, int nul);

/*
 * Whether the decimal number starting at p[0..len) (leading zeros
 * allowed) is larger than max; *digits gets how many digits there were.
 */
int fuzz_number_above(const uint8_t *p, size_t len, uint64_t max,
                      size_t *digits);

/*
 * How many of the left bytes at p to feed a session in one call, chosen
 * by the low two bits of mode: all of them (0), one byte (1), 7 bytes
 * (2), up to and including the next LF (3).  So one input also tests
 * lines split across reads.
 */
size_t fuzz_chunk_len(unsigned mode, const uint8_t *p, size_t left);

#endif
