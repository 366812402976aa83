/*
 * The DIGEST-MD5 security layers (RFC 2831 §2.3 integrity, "auth-int";
 * §2.4 confidentiality, "auth-conf"), negotiated by digest_md5.c and taken
 * from a finished exchange with pst_sasl_server_layer() /
 * pst_sasl_client_layer().
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
 *
 * auth-conf (§2.4) adds sealing keys, n = 16 for "3des", "des", "rc4",
 * 5 for "rc4-40", 7 for "rc4-56":
 *   Kcc = MD5({H(A1)[0..n-1], "Digest H(A1) to client-to-server sealing
 *              key magic constant"})      (Kcs: "server-to-client")
 * and each buffer becomes
 *   length, CIPHER(Kc, {message, pad, HMAC(Ki, {SeqNum, message})[0..9]}),
 *   0x0001, SeqNum
 * RC4 is keyed with all of Kc and runs on across buffers.  DES (key: the
 * first 7 octets of Kc spread over 8 with a free parity bit each) and
 * two-key 3DES EDE (keys: octets 0..6 and 7..13) run in CBC mode from the
 * IV Kc[8..15], each buffer's last cipher block the next one's IV; pad is
 * 1 to 8 octets, each holding the pad length, so that the ciphered part
 * is a multiple of 8.  The ciphers come from OpenSSL's EVP: DES and RC4
 * live in its "legacy" provider, which is loaded (once, thread-safe) into
 * a library context of our own, as Cyrus SASL does, so that the
 * process's default context is not changed.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include "mech.h"

#define LAYER_KEY     16 /* MD5 output */
#define LAYER_MAC     10 /* HMAC octets kept */
#define LAYER_TRAILER 16 /* MAC, message type, sequence number */
#define LAYER_MSGTYPE 1  /* "a 2-byte message type number ... value 1" */

static const char layer_kic[] =
    "Digest session key to client-to-server signing key magic constant";
static const char layer_kis[] =
    "Digest session key to server-to-client signing key magic constant";
static const char layer_kcc[] =
    "Digest H(A1) to client-to-server sealing key magic constant";
static const char layer_kcs[] =
    "Digest H(A1) to server-to-client sealing key magic constant";

#define LAYER_CONF_TRAILER 6 /* after the ciphered part: type, SeqNum */

/* The ciphers of RFC 2831 §2.4, strongest first in practice (3DES before
 * RC4, whose keystream is biased), with the EVP name, the H(A1) octets
 * their sealing key is made from, and the block size. */
static const struct layer_cipher {
    unsigned bit;
    const char *evp;
    size_t n;
    size_t block;
} layer_ciphers[] = {
    {PST__DIGEST_CIPHER_3DES, "DES-EDE-CBC", 16, 8},
    {PST__DIGEST_CIPHER_RC4, "RC4", 16, 1},
    {PST__DIGEST_CIPHER_DES, "DES-CBC", 16, 8},
    {PST__DIGEST_CIPHER_RC4_56, "RC4", 7, 1},
    {PST__DIGEST_CIPHER_RC4_40, "RC4", 5, 1},
};

/* Our library context with the default and legacy providers. */
static CRYPTO_ONCE layer_once = CRYPTO_ONCE_STATIC_INIT;
static OSSL_LIB_CTX *layer_libctx;
static unsigned layer_available;

static void
layer_init_ciphers(void)
{
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();

    if (lc == NULL)
        return;
    if (OSSL_PROVIDER_load(lc, "default") == NULL) {
        OSSL_LIB_CTX_free(lc);
        return;
    }
    /* Without the legacy provider (not installed) 3DES still works. */
    (void)OSSL_PROVIDER_load(lc, "legacy");
    for (size_t i = 0; i < PST__ARRAY_LEN(layer_ciphers); i++) {
        EVP_CIPHER *c = EVP_CIPHER_fetch(lc, layer_ciphers[i].evp, NULL);

        if (c != NULL)
            layer_available |= layer_ciphers[i].bit;
        EVP_CIPHER_free(c);
    }
    layer_libctx = lc;
}

static const struct layer_cipher *
layer_cipher_of(unsigned bit)
{
    for (size_t i = 0; i < PST__ARRAY_LEN(layer_ciphers); i++)
        if (layer_ciphers[i].bit == bit)
            return &layer_ciphers[i];
    return NULL;
}

struct pst_sasl_layer {
    unsigned qop;                /* PST_SASL_QOP_AUTH_INT or _CONF */
    int failed;                  /* a refused buffer ends the layer */
    uint8_t send_key[LAYER_KEY]; /* Ki of our direction; secret */
    uint8_t recv_key[LAYER_KEY]; /* Ki of the peer's; secret */
    uint32_t send_seq;
    uint32_t recv_seq;
    int send_seq_spent;          /* 2^32 buffers sent: no more */
    size_t send_max;             /* the peer's maxbuf */
    size_t recv_max;             /* ours */
    EVP_MAC *hmac;               /* HMAC, fetched once */
    /* auth-conf: */
    const struct layer_cipher *cipher;
    EVP_CIPHER_CTX *enc;         /* keyed with our direction's Kc */
    EVP_CIPHER_CTX *dec;         /* the peer's */
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
    if (!CRYPTO_THREAD_run_once(&layer_once, layer_init_ciphers))
        return 0;
    return layer_available;
}

unsigned
pst__digest_pick_cipher(unsigned offered)
{
    unsigned ours = pst__digest_ciphers() & offered;

    for (size_t i = 0; i < PST__ARRAY_LEN(layer_ciphers); i++)
        if (ours & layer_ciphers[i].bit)
            return layer_ciphers[i].bit;
    return 0;
}

/* RFC 2831 §2.4: "the first 7 bytes of Kc" as a DES key, each 7 bits
 * followed by a parity bit that DES ignores (Cyrus SASL's slidebits()). */
static void
layer_des_key(const uint8_t in[7], uint8_t out[8])
{
    out[0] = in[0];
    out[1] = (uint8_t)(in[0] << 7 | in[1] >> 1);
    out[2] = (uint8_t)(in[1] << 6 | in[2] >> 2);
    out[3] = (uint8_t)(in[2] << 5 | in[3] >> 3);
    out[4] = (uint8_t)(in[3] << 4 | in[4] >> 4);
    out[5] = (uint8_t)(in[4] << 3 | in[5] >> 5);
    out[6] = (uint8_t)(in[5] << 2 | in[6] >> 6);
    out[7] = (uint8_t)(in[6] << 1);
}

/* A cipher context for sealing key kc (enc != 0: encrypt). */
static int
layer_cipher_ctx(const struct layer_cipher *lc, const uint8_t kc[LAYER_KEY],
                 int enc, EVP_CIPHER_CTX **out)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(layer_libctx, lc->evp, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t key[LAYER_KEY];
    const uint8_t *iv = NULL;
    int ok;

    if (lc->block == 1) {
        memcpy(key, kc, LAYER_KEY);
    } else {
        layer_des_key(kc, key);
        if (lc->bit == PST__DIGEST_CIPHER_3DES)
            layer_des_key(kc + 7, key + 8);
        iv = kc + 8;
    }
    ok = c != NULL && ctx != NULL &&
         EVP_CipherInit_ex(ctx, c, NULL, key, iv, enc) == 1 &&
         /* We pad ourselves (§2.4), and the chain runs on. */
         EVP_CIPHER_CTX_set_padding(ctx, 0) == 1;
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_free(c);
    if (!ok) {
        EVP_CIPHER_CTX_free(ctx);
        return PST_ENOMEM;
    }
    *out = ctx;
    return 0;
}

/* MD5({a1[0..n-1], magic}) */
static int
layer_derive_n(const uint8_t a1[LAYER_KEY], size_t n, const char *magic,
               uint8_t out[LAYER_KEY])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    if (ctx == NULL)
        return PST_ENOMEM;
    ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, a1, n) == 1 &&
         EVP_DigestUpdate(ctx, magic, strlen(magic)) == 1 &&
         EVP_DigestFinal_ex(ctx, out, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : PST_ENOMEM;
}

/* The auth-conf half of a new layer: Kcc/Kcs and the two contexts. */
static int
layer_conf_init(struct pst_sasl_layer *l, const uint8_t a1[LAYER_KEY],
                unsigned cipher, int client)
{
    uint8_t kc_send[LAYER_KEY], kc_recv[LAYER_KEY];
    int rc;

    if (!(pst__digest_ciphers() & cipher) ||
        (l->cipher = layer_cipher_of(cipher)) == NULL)
        return PST_ENOTSUP;
    rc = layer_derive_n(a1, l->cipher->n, client ? layer_kcc : layer_kcs,
                        kc_send);
    if (rc == 0)
        rc = layer_derive_n(a1, l->cipher->n,
                            client ? layer_kcs : layer_kcc, kc_recv);
    if (rc == 0)
        rc = layer_cipher_ctx(l->cipher, kc_send, 1, &l->enc);
    if (rc == 0)
        rc = layer_cipher_ctx(l->cipher, kc_recv, 0, &l->dec);
    OPENSSL_cleanse(kc_send, sizeof(kc_send));
    OPENSSL_cleanse(kc_recv, sizeof(kc_recv));
    return rc;
}

int
pst__digest_check_config(unsigned qops, unsigned maxbuf, unsigned *ciphers)
{
    if ((qops & ~(PST__DIGEST_QOP_AUTH | PST__DIGEST_QOP_AUTH_INT |
                  PST__DIGEST_QOP_AUTH_CONF)) ||
        (*ciphers & ~PST__DIGEST_CIPHER_ALL))
        return PST_EINVAL;
    *ciphers = (*ciphers != 0 ? *ciphers : PST__DIGEST_CIPHER_ALL) &
               pst__digest_ciphers();
    if ((qops & PST__DIGEST_QOP_AUTH_CONF) && *ciphers == 0)
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

    *out = NULL;
    if (qop != PST__DIGEST_QOP_AUTH_INT && qop != PST__DIGEST_QOP_AUTH_CONF)
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
                           l->recv_key)) < 0 ||
        (qop == PST__DIGEST_QOP_AUTH_CONF &&
         (rc = layer_conf_init(l, a1, cipher, client)) < 0)) {
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
    EVP_CIPHER_CTX_free(l->enc);
    EVP_CIPHER_CTX_free(l->dec);
    OPENSSL_clear_free(l, sizeof(*l));
}

unsigned
pst_sasl_layer_qop(const struct pst_sasl_layer *l)
{
    return l->qop;
}

unsigned
pst_sasl_layer_cipher(const struct pst_sasl_layer *l)
{
    return l->cipher != NULL ? l->cipher->bit : 0;
}

size_t
pst_sasl_layer_max_wrap(const struct pst_sasl_layer *l)
{
    size_t room;

    /* The peer's maxbuf counts the protected data after the length: the
     * message and its 16-octet trailer... */
    if (l->cipher == NULL)
        return l->send_max - LAYER_TRAILER;
    /* ... or the ciphered part (message, pad, 10 MAC octets) and the
     * 6 clear ones, the ciphered part a multiple of the block with at
     * least one octet of pad. */
    room = l->send_max - LAYER_CONF_TRAILER;
    if (l->cipher->block == 1)
        return room - LAYER_MAC;
    room -= room % l->cipher->block;
    return room > LAYER_MAC + 1 ? room - LAYER_MAC - 1 : 0;
}

/*
 * One auth-conf buffer: length, CIPHER(Kc, {msg, pad, MAC[0..9]}), type,
 * SeqNum.  The cipher's state moves on, so a failure ends the layer.
 */
static int
layer_seal_one(struct pst_sasl_layer *l, const uint8_t *msg, size_t len,
               const uint8_t mac[LAYER_MAC], struct pst_buf *out)
{
    size_t block = l->cipher->block, pad, plen, start = out->len;
    uint8_t head[4], tail[LAYER_CONF_TRAILER], *p = NULL;
    int n = 0, rc = PST_ENOMEM;

    pad = block == 1 ? 0 : block - (len + LAYER_MAC) % block;
    plen = len + pad + LAYER_MAC;
    if (plen > INT32_MAX)
        return PST_ELIMIT;
    if ((p = OPENSSL_malloc(plen)) == NULL)
        return PST_ENOMEM;
    if (len > 0)
        memcpy(p, msg, len);
    memset(p + len, (int)pad, pad);
    memcpy(p + len + pad, mac, LAYER_MAC);
    layer_put32(head, (uint32_t)(plen + LAYER_CONF_TRAILER));
    tail[0] = 0;
    tail[1] = LAYER_MSGTYPE;
    layer_put32(tail + 2, l->send_seq);
    /* Encrypt in place (EVP allows it with equal pointers). */
    if (EVP_EncryptUpdate(l->enc, p, &n, p, (int)plen) != 1 ||
        (size_t)n != plen)
        goto fail;
    if ((rc = pst_buf_append(out, head, sizeof(head))) < 0 ||
        (rc = pst_buf_append(out, p, plen)) < 0 ||
        (rc = pst_buf_append(out, tail, sizeof(tail))) < 0)
        goto fail;
    OPENSSL_clear_free(p, plen);
    return 0;
fail:
    out->len = start;
    OPENSSL_clear_free(p, plen);
    l->failed = 1;
    return rc;
}

/* One buffer: length, msg, MAC (auth-int), or sealed (auth-conf). */
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
    if (l->cipher != NULL) {
        rc = layer_seal_one(l, msg, len, mac, out);
        OPENSSL_cleanse(mac, sizeof(mac));
        if (rc < 0)
            return rc;
        goto sent;
    }
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
sent:
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
    /* A block cipher and a maxbuf too small to carry an octet. */
    if (max == 0 && len > 0)
        return PST_ELIMIT;
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

/*
 * The ciphered part ct[0..n) of an auth-conf buffer, whose type and
 * SeqNum were checked: decrypt, strip the pad, check the MAC, append the
 * message.  Returns: 0, PST_EPROTO, PST_EFORGED, PST_ELIMIT, PST_ENOMEM.
 */
static int
layer_open(struct pst_sasl_layer *l, const uint8_t *ct, size_t n,
           struct pst_buf *out)
{
    size_t block = l->cipher->block, pad = 0, mlen;
    uint8_t mac[LAYER_KEY], *p;
    int k = 0, rc, ok;

    if (n < LAYER_MAC + (block > 1 ? 1 : 0) || n % block != 0 ||
        n > INT32_MAX)
        return PST_EPROTO;
    if ((p = OPENSSL_malloc(n)) == NULL)
        return PST_ENOMEM;
    if (EVP_DecryptUpdate(l->dec, p, &k, ct, (int)n) != 1 ||
        (size_t)k != n) {
        OPENSSL_clear_free(p, n);
        return PST_ENOMEM;
    }
    if (block > 1) {
        /* "pad" is 1 to 8 octets, each its length.  A wrong one is
         * reported as a forgery, like a wrong MAC, not apart from it. */
        pad = p[n - LAYER_MAC - 1];
        ok = pad >= 1 && pad <= block && pad <= n - LAYER_MAC;
        for (size_t i = 1; ok && i <= pad; i++)
            ok = p[n - LAYER_MAC - i] == pad;
        if (!ok) {
            OPENSSL_clear_free(p, n);
            return PST_EFORGED;
        }
    }
    mlen = n - LAYER_MAC - pad;
    rc = layer_hmac(l, l->recv_key, l->recv_seq, p, mlen, mac);
    ok = rc == 0 && CRYPTO_memcmp(mac, p + mlen + pad, LAYER_MAC) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    if (rc == 0 && !ok)
        rc = PST_EFORGED;
    if (rc == 0)
        rc = pst_buf_append(out, p, mlen);
    OPENSSL_clear_free(p, n);
    return rc;
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
    if (l->cipher != NULL) {
        const uint8_t *tail = in + 4 + n - LAYER_CONF_TRAILER;

        if (n < LAYER_CONF_TRAILER || tail[0] != 0 ||
            tail[1] != LAYER_MSGTYPE) {
            l->failed = 1;
            return PST_EPROTO;
        }
        /* The sequence number travels in clear: check it first. */
        if (layer_get32(tail + 2) != l->recv_seq) {
            l->failed = 1;
            return PST_EFORGED;
        }
        rc = layer_open(l, in + 4, n - LAYER_CONF_TRAILER, out);
        if (rc < 0) {
            /* The cipher's state has moved: nothing can follow. */
            l->failed = 1;
            return rc;
        }
        l->recv_seq++;
        *consumed = 4 + n;
        return 1;
    }
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
