/*
 * postern send and sendmail, the submission both end in: the TLS policy
 * (--starttls), the credentials (a password, a client certificate or an
 * OAuth 2.0 bearer token), the message's SIZE and form (8BITMIME or its
 * 7-bit copy, RFC 6152), the run of the session and what its outcome
 * says.  Apart from cmd_send.c, which reads the settings and the message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client.h"
#include "cmd_send.h"
#include "date.h"
#include "oauth.h"

struct mem_source {
    const struct mbuf *m;       /* the message */
    const struct mbuf *m7;      /* the same, 7-bit; NULL: none */
    const struct client_result *res; /* what the server offered */
    size_t off;
    int chosen;
};

/*
 * Whether the last EHLO reply the session read (under TLS once TLS is
 * up) has the keyword kw, as note_ehlo() of client_conn.c keeps it: the
 * lines of the reply joined with "\n", the first naming the server.  A
 * reply too long to be kept whole may lose a keyword: the 7-bit form is
 * then sent, which every server takes.
 */
static int
ehlo_has(const struct client_result *r, const char *kw)
{
    const char *p = r->had_tls_ehlo ? r->ehlo_tls : r->ehlo_plain;
    size_t n = strlen(kw);

    for (p = strchr(p, '\n'); p != NULL; p = strchr(p, '\n')) {
        p++;
        if (strlen(p) >= 4 + n && strncasecmp(p + 4, kw, n) == 0 &&
            strchr(" =\n", p[4 + n]) != NULL)
            return 1;
    }
    return 0;
}

static int
mem_read(void *ctx, uint8_t *buf, size_t cap, size_t *n)
{
    struct mem_source *s = ctx;
    size_t left;

    /* At DATA the server's extensions are known: 8-bit text goes to a
     * server without 8BITMIME as quoted-printable (RFC 6152 §3). */
    if (!s->chosen) {
        s->chosen = 1;
        if (s->m7 != NULL && !ehlo_has(s->res, "8BITMIME"))
            s->m = s->m7;
    }
    left = s->m->len - s->off;

    *n = left < cap ? left : cap;
    memcpy(buf, s->m->data + s->off, *n);
    s->off += *n;
    return 0;
}

/*
 * --starttls (or the configuration key starttls).  Unset means required:
 * nothing goes in clear unless asked for (msmtp's "tls_starttls on",
 * Postfix's smtp_tls_security_level = encrypt), for an attacker on the
 * path can strip STARTTLS from the EHLO reply or answer it with 454.
 */
static enum pst_smtp_client_starttls
starttls_mode(const char *s, int *ok)
{
    *ok = 1;
    if (s == NULL || strcmp(s, "required") == 0)
        return PST_SMTP_CLIENT_STARTTLS_REQUIRED;
    if (strcmp(s, "auto") == 0)
        return PST_SMTP_CLIENT_STARTTLS_AUTO;
    if (strcmp(s, "never") == 0)
        return PST_SMTP_CLIENT_STARTTLS_NEVER;
    *ok = 0;
    return PST_SMTP_CLIENT_STARTTLS_REQUIRED;
}

/*
 * Whether the session ended because TLS could not be had: STARTTLS not
 * offered (PST_ENOTSUP, no reply) or refused with a 4xx or 5xx reply (RFC
 * 3207 §4: 454 "TLS not available due to temporary reason"; an attacker
 * can send that too).  A 421 is the server closing (75 as anywhere); a
 * failed handshake or reply injection is reported as such.
 */
static int
starttls_unavailable(const struct client_result *r)
{
    if (r->net_error || r->tls_verify_failed ||
        strcmp(r->stage, "STARTTLS") != 0 || r->code == 421)
        return 0;
    return r->error == PST_ENOTSUP ||
           ((r->error == PST_ETEMP || r->error == PST_EREJECT) &&
            r->code >= 400);
}

/* Say why nothing was sent without TLS; exit 69 (permanent: retrying
 * the same path gives the same answer). */
static int
starttls_refuse(const struct send_opts *o, const struct client_result *r)
{
    int sendmail = strcmp(o->prog, "sendmail") == 0;
    const char *opt = sendmail ? "starttls = " : "--starttls=";
    char why[CLIENT_TEXT_MAX + 64];

    if (r->error == PST_ENOTSUP)
        snprintf(why, sizeof(why), "the server does not offer STARTTLS");
    else
        snprintf(why, sizeof(why), "the server refused STARTTLS: %s",
                 r->text);
    if (o->starttls != NULL && strcmp(o->starttls, "auto") == 0)
        fprintf(stderr, "%s: %s; not authenticating without TLS (%sauto "
                "goes on in clear only without a user)\n", o->prog, why,
                opt);
    else
        fprintf(stderr, "%s: %s; not %s without TLS (%srequired%s; "
                "%snever to send in clear)\n", o->prog, why,
                o->user != NULL ? "authenticating or sending" : "sending",
                opt, o->starttls == NULL ? ", the default" : "", opt);
    return EX_UNAVAILABLE;
}

/* Whether m holds an 8-bit byte (BODY=8BITMIME, RFC 6152). */
static int
memchr_8bit(const struct mbuf *m)
{
    for (size_t i = 0; i < m->len; i++)
        if (m->data[i] >= 0x80)
            return 1;
    return 0;
}

/* RFC 1870 §3: the size counts CRLF line ends (not the dot-stuffing or
 * the final "."), so a bare LF or CR, which the session sends as CRLF,
 * counts two, and a missing last line end is added. */
static uint64_t
wire_size(const struct mbuf *m)
{
    uint64_t size = m->len;

    for (size_t i = 0; i < m->len; i++) {
        uint8_t ch = m->data[i];

        if ((ch == '\n' && (i == 0 || m->data[i - 1] != '\r')) ||
            (ch == '\r' && (i + 1 == m->len || m->data[i + 1] != '\n')))
            size++;
    }
    if (m->len > 0 && m->data[m->len - 1] != '\n' &&
        m->data[m->len - 1] != '\r')
        size += 2;
    return size;
}

/*
 * RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
 * "+" / "/" ) *"=": what the session's bearer mechanisms accept.
 */
static int
token_ok(const char *t, size_t n)
{
    size_t i = 0;

    while (i < n && t[i] != '\0' &&
           (((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z') ||
            (t[i] >= '0' && t[i] <= '9') || strchr("-._~+/", t[i]) != NULL))
        i++;
    if (i == 0)
        return 0;
    while (i < n && t[i] == '=')
        i++;
    return i == n;
}

/*
 * The OAuth 2.0 access token, if one was asked for: from the token file
 * (--oauth2-token-file or the key oauth2-token-file: the JSON object
 * posternd's relay and `postern oauth login` write, its "access_token"),
 * or from the environment (--oauth2-bearer: POSTERN_OAUTH2_TOKEN, never
 * the command line, which ps(1) shows).  postern send never refreshes a
 * token: an expired one is refused before connecting.
 * *tok ([out] owned; OPENSSL_clear_free(*tok, *len + 1)) is NULL when
 * no token was asked for.
 * Returns: 0, or an exit code with a message printed.
 */
static int
send_load_token(const struct send_opts *o, char **tok, size_t *len)
{
    struct oauth_token t = {0};
    char err[512], when[DATE_RFC5322_MAX];
    const char *src;
    int exists = 0;
    int64_t now = (int64_t)time(NULL);

    *tok = NULL;
    *len = 0;
    if (o->oauth2_bearer) {
        src = getenv("POSTERN_OAUTH2_TOKEN");
        if (src == NULL || src[0] == '\0') {
            fprintf(stderr, "%s: --oauth2-bearer takes the token from "
                    "POSTERN_OAUTH2_TOKEN, which is not set\n", o->prog);
            return EX_USAGE;
        }
        if (!token_ok(src, strlen(src)) ||
            strlen(src) > PST_SASL_MAX_TOKEN) {
            fprintf(stderr, "%s: POSTERN_OAUTH2_TOKEN is not an OAuth 2.0 "
                    "bearer token (RFC 6750 §2.1, at most %d octets)\n",
                    o->prog, PST_SASL_MAX_TOKEN);
            return EX_USAGE;
        }
        *len = strlen(src);
        *tok = malloc(*len + 1);
        if (*tok == NULL)
            return EX_OSERR;
        memcpy(*tok, src, *len + 1);
        return 0;
    }
    if (o->oauth2_token_file == NULL)
        return 0;
    if (oauth_token_load(o->oauth2_token_file, &t, &exists, err,
                         sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", o->prog, err);
        oauth_token_clear(&t);
        return EX_CONFIG;
    }
    if (!exists) {
        fprintf(stderr, "%s: %s: no such token file\n", o->prog,
                o->oauth2_token_file);
        return EX_NOINPUT;
    }
    if (t.access_token == NULL || t.access_token[0] == '\0') {
        fprintf(stderr, "%s: %s holds no access token (posternd writes "
                "one when it refreshes the relay's token; postern send "
                "does not refresh)\n", o->prog, o->oauth2_token_file);
        oauth_token_clear(&t);
        return EX_NOPERM;
    }
    if (t.expires_at > 0 && t.expires_at <= now) {
        if (date_rfc5322((time_t)t.expires_at, when, sizeof(when)) != 0)
            snprintf(when, sizeof(when), "@%lld", (long long)t.expires_at);
        fprintf(stderr, "%s: the access token in %s expired on %s "
                "(postern send does not refresh it: posternd does, or "
                "`postern oauth login`)\n", o->prog, o->oauth2_token_file,
                when);
        oauth_token_clear(&t);
        return EX_NOPERM;
    }
    *len = strlen(t.access_token);
    if (!token_ok(t.access_token, *len) || *len > PST_SASL_MAX_TOKEN) {
        fprintf(stderr, "%s: %s: the access token is not an OAuth 2.0 "
                "bearer token (RFC 6750 §2.1, at most %d octets)\n",
                o->prog, o->oauth2_token_file, PST_SASL_MAX_TOKEN);
        oauth_token_clear(&t);
        *len = 0;
        return EX_CONFIG;
    }
    *tok = malloc(*len + 1);
    if (*tok == NULL) {
        oauth_token_clear(&t);
        *len = 0;
        return EX_OSERR;
    }
    memcpy(*tok, t.access_token, *len + 1);
    oauth_token_clear(&t);
    return 0;
}

/*
 * Submit msg to the envelope recipients; the common end of both modes.
 * msg7: NULL, or msg with its 8-bit text quoted-printable, sent instead
 * when the server does not offer 8BITMIME.
 */
int
send_submit(struct send_opts *o, const struct mbuf *msg,
            const struct mbuf *msg7, const char *const *rcpt, size_t nrcpt)
{
    struct client_opts co = {0};
    struct pst_sasl_client_config sasl = {0};
    struct pst_smtp_client_config cfg = {0};
    struct client_result *res;
    struct mem_source src = {.m = msg, .m7 = msg7};
    struct msg_source ms = {.read = mem_read, .ctx = &src,
                            .total = msg->len};
    char err[512], *pw = NULL, *tok = NULL, desc[CLIENT_TEXT_MAX + 128];
    size_t pwlen = 0, toklen = 0;
    int ok, rc;

    if (o->server == NULL) {
        fprintf(stderr, "%s: no server (--server smtp://HOST or "
                "a configuration file)\n", o->prog);
        return EX_USAGE;
    }
    if (client_url_parse(o->server, &co.url, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", o->prog, err);
        return EX_USAGE;
    }
    cfg.starttls = starttls_mode(o->starttls, &ok);
    if (!ok) {
        fprintf(stderr, "%s: --starttls must be auto, required "
                "or never\n", o->prog);
        return EX_USAGE;
    }
    /* auto goes on without TLS only when there is nothing to
     * authenticate: with a user, AUTH waits for TLS.  (Under AUTO the
     * session itself would authenticate in clear with a mechanism that
     * does not send the password; a SCRAM or CRAM-MD5 exchange in clear
     * still gives a passive attacker something to crack offline and an
     * active one the session.) */
    if (cfg.starttls == PST_SMTP_CLIENT_STARTTLS_AUTO &&
        (o->user != NULL || o->cert != NULL))
        cfg.starttls = PST_SMTP_CLIENT_STARTTLS_REQUIRED;
    if ((o->cert == NULL) != (o->key == NULL)) {
        fprintf(stderr, "%s: --cert and --key go together\n", o->prog);
        return EX_USAGE;
    }
    if (o->mech != NULL && pst_sasl_mech_find(o->mech, strlen(o->mech)) ==
                               NULL) {
        fprintf(stderr, "%s: unknown mechanism '%s'\n", o->prog, o->mech);
        return EX_USAGE;
    }
    if (o->oauth2_bearer || o->oauth2_token_file != NULL) {
        const struct pst_sasl_mech *m =
            o->mech != NULL ? pst_sasl_mech_find(o->mech, strlen(o->mech))
                            : NULL;

        if (o->user == NULL) {
            fprintf(stderr, "%s: an OAuth 2.0 token needs --user (the "
                    "mailbox it was issued for)\n", o->prog);
            return EX_USAGE;
        }
        if (m != NULL && !(pst_sasl_mech_flags(m) & PST_MECH_BEARER)) {
            fprintf(stderr, "%s: --mech %s takes a password, not an "
                    "OAuth 2.0 token (OAUTHBEARER or XOAUTH2 do)\n",
                    o->prog, o->mech);
            return EX_USAGE;
        }
    } else if (o->mech != NULL &&
               (pst_sasl_mech_flags(pst_sasl_mech_find(
                    o->mech, strlen(o->mech))) & PST_MECH_BEARER)) {
        fprintf(stderr, "%s: --mech %s needs an OAuth 2.0 token "
                "(--oauth2-token-file or --oauth2-bearer)\n", o->prog,
                o->mech);
        return EX_USAGE;
    }
    if ((rc = send_load_token(o, &tok, &toklen)) != 0)
        return rc;
    if (o->insecure)
        fprintf(stderr, "%s: warning: --insecure: the server's "
                "certificate is not checked, so anyone on the path can "
                "pose as the server and read what is sent\n", o->prog);
    if (tok != NULL) {
        /* A token replaces the password: none is read or prompted for.
         * The session offers it with OAUTHBEARER, else XOAUTH2. */
        sasl.authcid = o->user;
        sasl.token = (const uint8_t *)tok;
        sasl.token_len = toklen;
        /* RFC 7628 §3.1: host and port the client connected to. */
        sasl.oauth_host = co.url.host;
        sasl.oauth_port = (unsigned)strtoul(co.url.port, NULL, 10);
        cfg.sasl = &sasl;
    } else if (o->user != NULL) {
        if (o->password != NULL) {
            pwlen = strlen(o->password);
            pw = malloc(pwlen + 1);
            if (pw == NULL)
                return EX_OSERR;
            memcpy(pw, o->password, pwlen + 1);
        } else if (client_password(o->password_file, "Password: ", &pw,
                                   &pwlen, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: %s\n", o->prog, err);
            return EX_USAGE;
        }
        sasl.authcid = o->user;
        sasl.password = (const uint8_t *)pw;
        sasl.password_len = pwlen;
        sasl.host = co.url.host;
        cfg.sasl = &sasl;
    }
    /* A client certificate logs in with EXTERNAL (RFC 4422 App. A) when
     * the server offers it, the user the certificate names; with --user
     * too, the password mechanisms are the fallback. */
    if (o->cert != NULL) {
        co.cert = o->cert;
        co.key = o->key;
        cfg.tls_client_cert = 1;
        cfg.sasl = &sasl;
    }
    /* RFC 4954 §4, RFC 2831 §2.3-2.4: a DIGEST-MD5 layer, never under
     * TLS (the session asks for none there). */
    if (o->security_layer)
        sasl.digest_qops = PST_SASL_QOP_AUTH | PST_SASL_QOP_AUTH_INT |
                           PST_SASL_QOP_AUTH_CONF;
    co.cafile = o->cafile;
    co.insecure = o->insecure;
    co.verbose = o->verbose;
    co.timeout = o->timeout;
    co.progress = isatty(STDERR_FILENO) && msg->len > 256 * 1024;
    cfg.helo = o->helo;
    cfg.allow_plaintext_auth = o->allow_plaintext;
    cfg.mech = o->mech;
    cfg.mail_from = o->from;
    cfg.rcpt = rcpt;
    cfg.nrcpt = nrcpt;
    /* SIZE goes with MAIL, before the form is chosen: the larger. */
    cfg.size = wire_size(msg);
    if (msg7 != NULL && wire_size(msg7) > cfg.size)
        cfg.size = wire_size(msg7);
    cfg.body_8bit = memchr_8bit(msg);
    cfg.mail_flags = o->mail_flags;
    res = calloc(1, sizeof(*res));
    if (res == NULL) {
        if (pw != NULL)
            OPENSSL_clear_free(pw, pwlen + 1);
        if (tok != NULL)
            OPENSSL_clear_free(tok, toklen + 1);
        return EX_OSERR;
    }
    src.res = res;
    rc = client_run(&co, &cfg, &ms, res);
    if (pw != NULL)
        OPENSSL_clear_free(pw, pwlen + 1);
    if (tok != NULL)
        OPENSSL_clear_free(tok, toklen + 1);
    if (rc == 0) {
        if (o->verbose && res->mech[0] != '\0')
            fprintf(stderr, "%s: authenticated with %s%s%s%s\n", o->prog,
                    res->mech,
                    res->layer == PST_SASL_QOP_AUTH_CONF
                        ? ", security layer auth-conf"
                    : res->layer == PST_SASL_QOP_AUTH_INT
                        ? ", security layer auth-int"
                        : "",
                    strstr(res->mech, "-PLUS") != NULL ? ", bound to "
                                                       : "",
                    strstr(res->mech, "-PLUS") != NULL
                        ? res->channel_binding
                        : "");
        if (o->verbose)
            fprintf(stderr, "%s: sent: %s\n", o->prog, res->text);
        free(res);
        return EX_OK;
    }
    if (!co.url.implicit_tls && starttls_unavailable(res)) {
        rc = starttls_refuse(o, res);
        free(res);
        return rc;
    }
    if (res->error == PST_ENOTSUP && strcmp(res->stage, "MAIL") == 0 &&
        (o->mail_flags & PST_SMTP_CLIENT_MAIL_SMTPUTF8)) {
        /* RFC 6531 §3.4: no downgrade; the session sent no MAIL. */
        fprintf(stderr, "%s: the server does not offer SMTPUTF8 (RFC "
                "6531), which the internationalized address '%s' needs; "
                "nothing was sent\n", o->prog, o->utf8_addr);
        free(res);
        return EX_DATAERR;
    }
    client_describe(res, desc, sizeof(desc));
    fprintf(stderr, "%s: %s\n", o->prog, desc);
    /* RFC 7628 §3.2.2: why the token was refused, as the server put it
     * (made printable by client_run()). */
    if (res->auth_json[0] != '\0')
        fprintf(stderr, "%s: the server's error: %s\n", o->prog,
                res->auth_json);
    rc = client_exit_code(res);
    free(res);
    return rc;
}
