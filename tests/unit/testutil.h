/*
 * Helpers shared by the cmocka unit tests.
 */
#ifndef POSTERN_TESTUTIL_H
#define POSTERN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <postern/base64.h>
#include <postern/buf.h>
#include <postern/cred.h>
#include <postern/error.h>
#include <postern/sasl.h>

/* A random source that returns fixed bytes (to reproduce RFC nonces),
 * failing with PST_ETEMP once they run out. */
struct test_rand {
    const uint8_t *bytes;
    size_t len;
    size_t pos;
};
int test_random(void *ctx, uint8_t *buf, size_t len);
/* A random source that always fails. */
int test_random_fail(void *ctx, uint8_t *buf, size_t len);

/* Decode base64 text into a fresh buffer (asserts it is valid). */
void test_b64dec(const char *text, struct pst_buf *out);
/* Encode bytes; returns a malloc'd NUL-terminated string to free(). */
char *test_b64enc(const uint8_t *p, size_t len);

/* Assert that got[0..got_len) equals want[0..want_len), printing both. */
#define assert_bytes_equal(got, got_len, want, want_len)                     \
    test_assert_bytes((got), (got_len), (want), (want_len), __FILE__,       \
                      __LINE__)
void test_assert_bytes(const void *got, size_t got_len, const void *want,
                       size_t want_len, const char *file, int line);
/* Assert a buffer equals a C string. */
#define assert_buf_str(buf, str)                                             \
    assert_bytes_equal((buf)->data, (buf)->len, (str), strlen(str))

/* Assert a return code, printing names: "got EAUTH, want 0". */
#define assert_rc(got, want)                                                 \
    test_assert_rc((got), (want), #got, __FILE__, __LINE__)
void test_assert_rc(int got, int want, const char *expr, const char *file,
                    int line);

/*
 * Run a whole exchange of mechanism name between our client and our
 * server in memory.  Server credentials: cred_text ("{PLAIN}pencil"), or
 * NULL for an unknown user.  Answers NEED_CRED and NEED_VERIFY the way a
 * driver would (pst_cred_verify).  Returns the first error of either side,
 * or PST_SASL_DONE when the server authenticated the client and the client
 * accepted the end.  *steps (may be NULL) gets the number of messages.
 */
struct test_exchange {
    const char *mech;
    const char *authcid;
    const char *authzid;
    const char *password;
    const char *cred_text;       /* NULL: unknown user */
    int use_initial_response;    /* client sends an IR when it can */
    const char *hostname;        /* server: default "mail.example.test" */
    const char *client_host;     /* client digest-uri host: default same */
    /* Results: */
    int client_rc;               /* last client rc */
    int server_rc;               /* last server rc */
    unsigned messages;           /* messages exchanged */
    char authcid_seen[256];      /* server's authcid */
    char authzid_seen[256];      /* server's authzid ("" if none) */
};
int test_run_exchange(struct test_exchange *x);

#endif
