/*
 * TLS over memory BIOs, what the peer proved (tls.h): its certificate
 * (for the Received header and the logs, and the client certificate of
 * SASL EXTERNAL with its trust anchors and CRLs, tls_client_ca), and the
 * channel binding of the connection (RFC 5929, RFC 9266) for SCRAM-PLUS.
 * Apart from tls.c, which makes contexts and connections and pumps
 * their bytes.
 */
#include "tls_int.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* RFC 9266 §2: the tls-exporter label, without a terminating NUL. */
static const char tls_exporter_label[] = "EXPORTER-Channel-Binding";

/* Print name into a memory BIO and copy it, cut to size, into buf. */
static int
tls_name_text(const X509_NAME *name, char *buf, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (b == NULL)
        return PST_ENOMEM;
    /* RFC 2253 form; bytes above 127 are escaped, so the text is ASCII. */
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(b);
        return PST_ENOMEM;
    }
    n = BIO_get_mem_data(b, &data);
    snprintf(buf, size, "%.*s", (int)(n > 0 && n < INT_MAX ? n : 0), data);
    BIO_free(b);
    return 0;
}

int
tls_peer_cert(const struct tls *t, struct tls_peer_cert *out)
{
    X509 *x;
    BIO *b;
    char *data;
    long n;

    memset(out, 0, sizeof(*out));
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    x = SSL_get0_peer_certificate(t->ssl);
    if (x == NULL)
        return PST_ENOENT;
    if (tls_name_text(X509_get_subject_name(x), out->subject,
                      sizeof(out->subject)) != 0
        || tls_name_text(X509_get_issuer_name(x), out->issuer,
                         sizeof(out->issuer)) != 0)
        goto nomem;
    b = BIO_new(BIO_s_mem());
    if (b == NULL)
        goto nomem;
    if (ASN1_TIME_print_ex(b, X509_get0_notAfter(x), ASN1_DTFLGS_ISO8601)
        != 1) {
        BIO_free(b);
        goto nomem;
    }
    n = BIO_get_mem_data(b, &data);
    snprintf(out->not_after, sizeof(out->not_after), "%.*s",
             (int)(n > 0 && n < INT_MAX ? n : 0), data);
    BIO_free(b);
    return 0;

nomem:
    ERR_clear_error();
    memset(out, 0, sizeof(*out));
    return PST_ENOMEM;
}

int
tls_peer_verify(const struct tls *t, const char **why)
{
    long v;

    if (why != NULL)
        *why = "handshake not complete";
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    if (SSL_get0_peer_certificate(t->ssl) == NULL) {
        if (why != NULL)
            *why = "no peer certificate";
        return PST_EAUTH;
    }
    v = SSL_get_verify_result(t->ssl);
    if (why != NULL)
        *why = X509_verify_cert_error_string(v);
    return v == X509_V_OK ? 0 : PST_EAUTH;
}

/* --- Client certificates (tls_client_ca) --------------------------------- */

struct tls_client_ca {
    X509_STORE *store;                /* trust anchors and CRLs */
    STACK_OF(X509_NAME) *names;       /* for the CertificateRequest */
    unsigned required;
    uint8_t sid[SHA256_DIGEST_LENGTH]; /* session id context */
};

/*
 * client_cert = optional: the handshake goes on whatever the client
 * certificate's verification found; OpenSSL keeps the result
 * (SSL_get_verify_result()), which tls_peer_id() reports, so only SASL
 * EXTERNAL fails (DESIGN.md "Operations and the other SASL keys").
 */
static int
tls_verify_optional(int preverify_ok, X509_STORE_CTX *x)
{
    (void)preverify_ok;
    (void)x;
    return 1;
}

void
tls_client_ca_free(struct tls_client_ca *ca)
{
    if (ca == NULL)
        return;
    X509_STORE_free(ca->store);
    sk_X509_NAME_pop_free(ca->names, X509_NAME_free);
    OPENSSL_free(ca);
}

int
tls_client_ca_new(const char *ca_file, const char *crl_file,
                  unsigned required, struct tls_client_ca **out, char *err,
                  size_t err_size)
{
    char prefix[PATH_MAX + 40];
    struct tls_client_ca *ca;
    EVP_MD_CTX *md;
    int ok;

    assert(out != NULL && err != NULL && err_size > 0);
    *out = NULL;
    err[0] = '\0';
    if (ca_file == NULL) {
        snprintf(err, err_size, "client certificate settings need "
                 "tls_client_ca");
        return PST_EINVAL;
    }
    ERR_clear_error();
    ca = OPENSSL_zalloc(sizeof(*ca));
    if (ca == NULL || (ca->store = X509_STORE_new()) == NULL) {
        OPENSSL_free(ca);
        snprintf(err, err_size, "out of memory");
        return PST_ENOMEM;
    }
    ca->required = required ? 1u : 0u;
    /* RFC 8446 §4.3.2 / RFC 5246 §7.4.4: the CertificateRequest names the
     * acceptable issuers, so a client with several certificates picks
     * the right one. */
    if (X509_STORE_load_file(ca->store, ca_file) != 1 ||
        (ca->names = SSL_load_client_CA_file(ca_file)) == NULL) {
        snprintf(prefix, sizeof(prefix), "cannot load tls_client_ca %s: ",
                 ca_file);
        tls_format_error(err, err_size, prefix, "no certificate in the file");
        tls_client_ca_free(ca);
        return PST_EIO;
    }
    if (crl_file != NULL) {
        X509_LOOKUP *lu = X509_STORE_add_lookup(ca->store,
                                                X509_LOOKUP_file());

        if (lu == NULL ||
            X509_load_crl_file(lu, crl_file, X509_FILETYPE_PEM) <= 0) {
            snprintf(prefix, sizeof(prefix), "cannot load tls_client_crl "
                     "%s: ", crl_file);
            tls_format_error(err, err_size, prefix, "no CRL in the file");
            tls_client_ca_free(ca);
            return PST_EIO;
        }
        /* The leaf's issuer must have a CRL here, and the leaf must not
         * be on it. */
        X509_STORE_set_flags(ca->store, X509_V_FLAG_CRL_CHECK);
    }
    /*
     * A resumed session keeps the client certificate it was verified
     * with: it must resume only where the same trust applies.  The
     * session id context names the trust (OpenSSL refuses to resume a
     * verified session without one, and a session of a context without
     * one, or with another, is not resumed here).
     */
    md = EVP_MD_CTX_new();
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
         && EVP_DigestUpdate(md, ca_file, strlen(ca_file) + 1) == 1
         && (crl_file == NULL
             || EVP_DigestUpdate(md, crl_file, strlen(crl_file)) == 1)
         && EVP_DigestUpdate(md, ca->required ? "r" : "o", 1) == 1
         && EVP_DigestFinal_ex(md, ca->sid, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        tls_client_ca_free(ca);
        ERR_clear_error();
        snprintf(err, err_size, "out of memory");
        return PST_ENOMEM;
    }
    *out = ca;
    return 0;
}

int
tls_ask_client_cert(struct tls *t, const struct tls_client_ca *ca)
{
    STACK_OF(X509_NAME) *names;

    if (t->role != TLS_ROLE_SERVER || SSL_in_before(t->ssl) != 1)
        return PST_ESTATE;
    ERR_clear_error();
    names = SSL_dup_CA_list(ca->names);
    if (names == NULL ||
        SSL_set1_verify_cert_store(t->ssl, ca->store) != 1 ||
        SSL_set_session_id_context(t->ssl, ca->sid, sizeof(ca->sid)) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        ERR_clear_error();
        return PST_ENOMEM;
    }
    SSL_set_client_CA_list(t->ssl, names);
    SSL_set_verify(t->ssl, ca->required ? SSL_VERIFY_PEER
                                              | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                        : SSL_VERIFY_PEER,
                   ca->required ? NULL : tls_verify_optional);
    return 0;
}

/* Copy the UTF-8 of an ASN.1 string into buf; "" if it has a control
 * character (a name to log and to look a user up by). */
static void
tls_asn1_text(const ASN1_STRING *a, char *buf, size_t size)
{
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, a);

    buf[0] = '\0';
    if (n <= 0 || (size_t)n >= size) {
        OPENSSL_free(u);
        ERR_clear_error();
        return;
    }
    for (int i = 0; i < n; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            OPENSSL_free(u);
            return;
        }
    }
    memcpy(buf, u, (size_t)n);
    buf[n] = '\0';
    OPENSSL_free(u);
}

int
tls_peer_id(const struct tls *t, struct tls_peer_id *out, const char **why)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    X509 *x;
    const X509_NAME *subj;
    GENERAL_NAMES *sans;
    int i;
    long v;

    memset(out, 0, sizeof(*out));
    if (why != NULL)
        *why = "handshake not complete";
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    x = SSL_get0_peer_certificate(t->ssl);
    if (x == NULL) {
        if (why != NULL)
            *why = "no certificate";
        return PST_ENOENT;
    }
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        ERR_clear_error();
        return PST_ENOMEM;
    }
    for (unsigned k = 0; k < mdlen; k++) {
        out->fingerprint[2 * k] = hex[md[k] >> 4];
        out->fingerprint[2 * k + 1] = hex[md[k] & 0x0f];
    }
    subj = X509_get_subject_name(x);
    /* RFC 6125 §2.3.1 / §6.4.4: the most specific CN is the last. */
    i = -1;
    for (int j; (j = X509_NAME_get_index_by_NID(subj, NID_commonName, i))
                >= 0;)
        i = j;
    if (i >= 0)
        tls_asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)),
                      out->cn, sizeof(out->cn));
    sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int k = 0; sans != NULL && k < sk_GENERAL_NAME_num(sans); k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);

        if (g->type == GEN_EMAIL) {
            tls_asn1_text(g->d.rfc822Name, out->email, sizeof(out->email));
            break;
        }
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    v = SSL_get_verify_result(t->ssl);
    if (why != NULL)
        *why = X509_verify_cert_error_string(v);
    return v == X509_V_OK ? 0 : PST_EAUTH;
}

int
tls_channel_binding(const struct tls *t, const char **type, uint8_t *buf,
                    size_t cap, size_t *len)
{
    int rc;

    *len = 0;
    *type = NULL;
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    if (SSL_version(t->ssl) >= TLS1_3_VERSION) {
        if (cap < TLS_EXPORTER_LEN)
            return PST_ELIMIT;
        if ((rc = tls_exporter(t, buf)) < 0)
            return rc;
        *type = "tls-exporter";
        *len = TLS_EXPORTER_LEN;
        return 0;
    }
    /* RFC 7627 §1 and RFC 9266 §4: without the extended master secret
     * tls-unique is not unique to the connection. */
    if (SSL_get_extms_support(t->ssl) != 1)
        return PST_ENOTSUP;
    if ((rc = tls_unique(t, buf, cap, len)) < 0)
        return rc;
    *type = "tls-unique";
    return 0;
}

int
tls_exporter(const struct tls *t, uint8_t out[TLS_EXPORTER_LEN])
{
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    /*
     * RFC 9266 security considerations: below TLS 1.3 the master secret is
     * unique to the connection only with RFC 7627's extended master secret
     * (otherwise the triple-handshake attack applies).
     */
    if (SSL_version(t->ssl) < TLS1_3_VERSION
        && SSL_get_extms_support(t->ssl) != 1)
        return PST_ENOTSUP;
    /*
     * RFC 9266 §2: label "EXPORTER-Channel-Binding", an empty context
     * value, 32 bytes.  Below TLS 1.3 an empty context differs from none
     * (RFC 5705 §4), hence use_context = 1.
     */
    if (SSL_export_keying_material(t->ssl, out, TLS_EXPORTER_LEN,
                                   tls_exporter_label,
                                   sizeof(tls_exporter_label) - 1, NULL, 0,
                                   1) != 1) {
        ERR_clear_error();
        return PST_ENOTSUP;
    }
    return 0;
}

int
tls_unique(const struct tls *t, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t fin[EVP_MAX_MD_SIZE];
    size_t n;
    int ours;

    *len = 0;
    if (t->rc < 0 || !SSL_is_init_finished(t->ssl))
        return PST_ESTATE;
    /* RFC 8446 §7.5 / RFC 9266 §1: tls-unique is not defined for 1.3. */
    if (SSL_version(t->ssl) >= TLS1_3_VERSION)
        return PST_ENOTSUP;
    /*
     * RFC 5929 §3.1: "the first TLS Finished message sent ... in the most
     * recent TLS handshake".  In a full handshake the client sends the
     * first Finished; in an abbreviated (resumed) one, the server.
     * Renegotiation is off, so the most recent handshake is the only one.
     */
    ours = (t->role == TLS_ROLE_CLIENT) == !SSL_session_reused(t->ssl);
    n = ours ? SSL_get_finished(t->ssl, fin, sizeof(fin))
             : SSL_get_peer_finished(t->ssl, fin, sizeof(fin));
    if (n == 0 || n > sizeof(fin))
        return PST_ENOTSUP;
    if (n > cap) {
        OPENSSL_cleanse(fin, sizeof(fin));
        return PST_ELIMIT;
    }
    memcpy(out, fin, n);
    *len = n;
    OPENSSL_cleanse(fin, sizeof(fin));
    return 0;
}
