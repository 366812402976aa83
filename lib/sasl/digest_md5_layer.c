/*
 * The DIGEST-MD5 security layer (RFC 2831 §2.3 integrity, "auth-int"),
 * negotiated by digest_md5.c and taken from a finished exchange with
 * pst_sasl_server_layer() / pst_sasl_client_layer().
 *
 * Keys (§2.3), from H(A1), the 16-octet MD5 of A1 computed during the
 * exchange:
 *   Kic = MD5({H(A1), "Digest session key to client-to-server signing
 *              key magic constant"})
 *   Kis = MD5({H(A1), "Digest session key to server-to-client signing
 *              key magic constant"})
 * Each protected buffer (RFC 4422 §3.7: a 4-octet length in network
 * order, then the data):
 *   length, message, MAC(Ki, SeqNum, message)
 *   MAC = HMAC-MD5(Ki, {SeqNum, message})[0..9], 0x0001, SeqNum
 * with SeqNum a 4-octet big-endian counter per direction from 0.  The
 * sender signs with its own direction's key (the client with Kic), the
 * receiver checks with the other.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mech.h"

#define LAYER_KEY     16 /* MD5 output */
#define LAYER_MAC     10 /* HMAC octets kept */
#define LAYER_TRAILER 16 /* MAC, message type, sequence number */
#define LAYER_MSGTYPE 1  /* "a 2-byte message type number ... value 1" */

static const char layer_kic[] =
    "Digest session key to client-to-server signing key magic constant";
static const char layer_kis[] =
    "Digest session key to server-to-client signing key magic constant";

struct pst_sasl_layer {
    unsigned qop;                /* PST_SASL_QOP_AUTH_INT */
    int failed;                  /* a refused buffer ends the layer */
    uint8_t send_key[LAYER_KEY]; /* Ki of our direction; secret */
    uint8_t recv_key[LAYER_KEY]; /* Ki of the peer's; secret */
    uint32_t send_seq;
    uint32_t recv_seq;
    int send_seq_spent;          /* 2^32 buffers sent: no more */
    size_t send_max;             /* the peer's maxbuf */
    size_t recv_max;             /* ours */
    EVP_MAC *hmac;               /* HMAC, fetched once */
};

/* MD5({a1, magic}) */
static int
layer_derive(const uint8_t a1[LAYER_KEY], const char *magic,
             uint8_t out[LAYER_KEY])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    if (ctx == NULL)
        return PST_ENOMEM;
    ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, a1, LAYER_KEY) == 1 &&
         EVP_DigestUpdate(ctx, magic, strlen(magic)) == 1 &&
         EVP_DigestFinal_ex(ctx, out, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : PST_ENOMEM;
}

static void
layer_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t
layer_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* HMAC-MD5(key, {seq, msg}) into mac (16 octets), without copying msg. */
static int
layer_hmac(const struct pst_sasl_layer *l, const uint8_t key[LAYER_KEY],
           uint32_t seq, const uint8_t *msg, size_t len,
           uint8_t mac[LAYER_KEY])
{
    char md5[] = "MD5";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md5, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(l->hmac);
    uint8_t seqb[4];
    size_t n = 0;
    int ok;

    if (ctx == NULL)
        return PST_ENOMEM;
    layer_put32(seqb, seq);
    ok = EVP_MAC_init(ctx, key, LAYER_KEY, params) == 1 &&
         EVP_MAC_update(ctx, seqb, sizeof(seqb)) == 1 &&
         (len == 0 || EVP_MAC_update(ctx, msg, len) == 1) &&
         EVP_MAC_final(ctx, mac, &n, LAYER_KEY) == 1 && n == LAYER_KEY;
    EVP_MAC_CTX_free(ctx);
    return ok ? 0 : PST_ENOMEM;
}

unsigned
pst__digest_ciphers(void)
{
    return 0; /* auth-conf: not implemented */
}

unsigned
pst__digest_pick_cipher(unsigned offered)
{
    (void)offered;
    return 0;
}

int
pst__digest_check_config(unsigned qops, unsigned maxbuf)
{
    if (qops & ~(PST__DIGEST_QOP_AUTH | PST__DIGEST_QOP_AUTH_INT |
                 PST__DIGEST_QOP_AUTH_CONF))
        return PST_EINVAL;
    if ((qops & PST__DIGEST_QOP_AUTH_CONF) && pst__digest_ciphers() == 0)
        return PST_ENOTSUP;
    /* RFC 2831 §2.1.1: "bigger than 16 and smaller or equal to
     * 16777215". */
    if (maxbuf <= LAYER_TRAILER || maxbuf > PST__DIGEST_MAX_MAXBUF)
        return PST_EINVAL;
    return 0;
}

int
pst__digest_layer_new(const uint8_t a1[16], unsigned qop, unsigned cipher,
                      int client, unsigned send_max, unsigned recv_max,
                      struct pst_sasl_layer **out)
{
    struct pst_sasl_layer *l;
    int rc;

    (void)cipher;
    *out = NULL;
    if (qop != PST__DIGEST_QOP_AUTH_INT)
        return PST_ENOTSUP;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return PST_ENOMEM;
    l->qop = qop;
    l->send_max = send_max;
    l->recv_max = recv_max;
    l->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (l->hmac == NULL) {
        pst_sasl_layer_free(l);
        return PST_ENOMEM;
    }
    /* The client signs what it sends with Kic and checks with Kis; the
     * server the other way round. */
    if ((rc = layer_derive(a1, client ? layer_kic : layer_kis,
                           l->send_key)) < 0 ||
        (rc = layer_derive(a1, client ? layer_kis : layer_kic,
                           l->recv_key)) < 0) {
        pst_sasl_layer_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void
pst_sasl_layer_free(struct pst_sasl_layer *l)
{
    if (l == NULL)
        return;
    EVP_MAC_free(l->hmac);
    OPENSSL_clear_free(l, sizeof(*l));
}

unsigned
pst_sasl_layer_qop(const struct pst_sasl_layer *l)
{
    return l->qop;
}

size_t
pst_sasl_layer_max_wrap(const struct pst_sasl_layer *l)
{
    /* The peer's maxbuf counts the protected data after the length: the
     * message and its 16-octet trailer. */
    return l->send_max - LAYER_TRAILER;
}

/* One buffer: length, msg, MAC. */
static int
layer_wrap_one(struct pst_sasl_layer *l, const uint8_t *msg, size_t len,
               struct pst_buf *out)
{
    uint8_t head[4], trailer[LAYER_TRAILER], mac[LAYER_KEY];
    size_t start = out->len;
    int rc;

    if (l->send_seq_spent)
        return PST_ELIMIT;
    if ((rc = layer_hmac(l, l->send_key, l->send_seq, msg, len, mac)) < 0)
        return rc;
    layer_put32(head, (uint32_t)(len + LAYER_TRAILER));
    memcpy(trailer, mac, LAYER_MAC);
    trailer[LAYER_MAC] = 0;
    trailer[LAYER_MAC + 1] = LAYER_MSGTYPE;
    layer_put32(trailer + LAYER_MAC + 2, l->send_seq);
    OPENSSL_cleanse(mac, sizeof(mac));
    if ((rc = pst_buf_append(out, head, sizeof(head))) < 0 ||
        (rc = pst_buf_append(out, msg, len)) < 0 ||
        (rc = pst_buf_append(out, trailer, sizeof(trailer))) < 0) {
        /* Leave out as it was. */
        out->len = start;
        return rc;
    }
    if (l->send_seq == UINT32_MAX)
        l->send_seq_spent = 1;
    l->send_seq++;
    return 0;
}

int
pst_sasl_layer_wrap(struct pst_sasl_layer *l, const uint8_t *in, size_t len,
                    struct pst_buf *out)
{
    size_t max = pst_sasl_layer_max_wrap(l), off = 0;
    int rc;

    if (l->failed)
        return PST_ESTATE;
    /* maxbuf (RFC 2831 §2.1.1, §2.1.2): never send the peer a buffer
     * larger than it said it can receive; cut the data into as many as
     * it takes. */
    do {
        size_t n = len - off < max ? len - off : max;

        if ((rc = layer_wrap_one(l, in + off, n, out)) < 0)
            return rc;
        off += n;
    } while (off < len);
    return 0;
}

int
pst_sasl_layer_unwrap(struct pst_sasl_layer *l, const uint8_t *in,
                      size_t len, size_t *consumed, struct pst_buf *out)
{
    uint8_t mac[LAYER_KEY];
    const uint8_t *msg, *trailer;
    size_t n, mlen;
    int rc, ok;

    *consumed = 0;
    if (l->failed)
        return PST_ESTATE;
    if (len < 4)
        return 0;
    n = layer_get32(in);
    /* Our maxbuf is what we told the peer; a larger buffer is refused
     * before it is buffered. */
    if (n > l->recv_max) {
        l->failed = 1;
        return PST_ELIMIT;
    }
    if (n < LAYER_TRAILER) {
        l->failed = 1;
        return PST_EPROTO;
    }
    if (len - 4 < n)
        return 0;
    msg = in + 4;
    mlen = n - LAYER_TRAILER;
    trailer = msg + mlen;
    if (trailer[LAYER_MAC] != 0 || trailer[LAYER_MAC + 1] != LAYER_MSGTYPE) {
        l->failed = 1;
        return PST_EPROTO;
    }
    if ((rc = layer_hmac(l, l->recv_key, l->recv_seq, msg, mlen, mac)) < 0)
        return rc;
    /* RFC 2831 §2.3: the receiver computes the MAC with the sequence
     * number it expects and compares; a replayed, dropped or reordered
     * buffer fails as a forged one does. */
    ok = CRYPTO_memcmp(mac, trailer, LAYER_MAC) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!ok || layer_get32(trailer + LAYER_MAC + 2) != l->recv_seq) {
        l->failed = 1;
        return PST_EFORGED;
    }
    if ((rc = pst_buf_append(out, msg, mlen)) < 0)
        return rc;
    l->recv_seq++;
    *consumed = 4 + n;
    return 1;
}
