/*
 * postern send, and postern invoked as sendmail: submit one message.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client.h"
#include "cmds.h"
#include "date.h"
#include "mime.h"
#include "oauth.h"

#define SEND_MAX_RCPT 1000

/* Settings from the command line and the client configuration file. */
struct send_opts {
    const char *prog;        /* "postern send" or "sendmail", for messages */
    const char *server;
    const char *user;
    const char *password_file;
    char *password;          /* from the config file only (secret) */
    const char *oauth2_token_file; /* --oauth2-token-file: a token file
                                      as posternd's relay writes it */
    int oauth2_bearer;       /* --oauth2-bearer: $POSTERN_OAUTH2_TOKEN */
    const char *mech;
    const char *starttls;
    const char *cafile;
    const char *cert;        /* client certificate: EXTERNAL */
    const char *key;
    int security_layer;      /* DIGEST-MD5 auth-int/auth-conf */
    int insecure;
    int allow_plaintext;
    const char *from;
    const char *from_name;
    const char *to[SEND_MAX_RCPT];
    size_t nto;
    const char *cc[SEND_MAX_RCPT];
    size_t ncc;
    const char *bcc[SEND_MAX_RCPT];
    size_t nbcc;
    const char *subject;
    const char *body;
    const char *attach[SEND_MAX_RCPT];
    size_t nattach;
    const char *helo;
    unsigned timeout;
    int verbose;
    unsigned mail_flags;     /* PST_SMTP_CLIENT_MAIL_SMTPUTF8 */
    const char *utf8_addr;   /* the first address that needs it */
};

/* Config values live here (strdup'd) for the whole run. */
static char *conf_strings[32];
static size_t conf_nstrings;

static const char *
conf_keep(const char *s)
{
    char *p;

    if (conf_nstrings == sizeof(conf_strings) / sizeof(conf_strings[0]))
        return NULL;
    p = strdup(s);
    conf_strings[conf_nstrings++] = p;
    return p;
}

static void
conf_free(void)
{
    for (size_t i = 0; i < conf_nstrings; i++)
        free(conf_strings[i]);
    conf_nstrings = 0;
}

/*
 * The client configuration file: "key = value" lines, '#' comments.
 * Keys: server, user, password-file, password, mech, starttls, cafile,
 * cert, key, security-layer, insecure, allow-plaintext-auth, from,
 * from-name, helo, timeout, oauth2-token-file.  A file holding a
 * password must not be readable by others.
 * Returns: 0 (read or absent), -1 (error printed).
 */
static int
send_read_config(const char *path, struct send_opts *o, int must_exist)
{
    FILE *f = fopen(path, "re");
    char line[1024];
    unsigned lineno = 0;
    struct stat st;

    if (f == NULL) {
        if (errno == ENOENT && !must_exist)
            return 0;
        fprintf(stderr, "postern: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *k = line, *v, *e;

        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        while (*k == ' ' || *k == '\t')
            k++;
        if (*k == '#' || *k == '\0')
            continue;
        v = strchr(k, '=');
        if (v == NULL) {
            fprintf(stderr, "postern: %s:%u: expected key = value\n", path,
                    lineno);
            goto bad;
        }
        for (e = v; e > k && (e[-1] == ' ' || e[-1] == '\t'); e--)
            ;
        *e = '\0';
        for (v++; *v == ' ' || *v == '\t'; v++)
            ;
        for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t');)
            *--e = '\0';
        if (strcmp(k, "password") == 0) {
            if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                fprintf(stderr,
                        "postern: %s holds a password but others can read "
                        "it; run: chmod 600 %s\n", path, path);
                goto bad;
            }
            /* The first source wins, as for every key: the command line
             * (--password-file), then ~/.config, then /etc. */
            if (o->password == NULL && o->password_file == NULL)
                o->password = strdup(v);
            OPENSSL_cleanse(v, strlen(v));
        } else if (strcmp(k, "server") == 0 && o->server == NULL) {
            o->server = conf_keep(v);
        } else if (strcmp(k, "user") == 0 && o->user == NULL) {
            o->user = conf_keep(v);
        } else if (strcmp(k, "password-file") == 0 &&
                   o->password_file == NULL && o->password == NULL) {
            o->password_file = conf_keep(v);
        } else if (strcmp(k, "mech") == 0 && o->mech == NULL) {
            o->mech = conf_keep(v);
        } else if (strcmp(k, "starttls") == 0 && o->starttls == NULL) {
            o->starttls = conf_keep(v);
        } else if (strcmp(k, "cafile") == 0 && o->cafile == NULL) {
            o->cafile = conf_keep(v);
        } else if (strcmp(k, "cert") == 0 && o->cert == NULL) {
            o->cert = conf_keep(v);
        } else if (strcmp(k, "key") == 0 && o->key == NULL) {
            o->key = conf_keep(v);
        } else if (strcmp(k, "security-layer") == 0) {
            o->security_layer |= strcmp(v, "yes") == 0 ||
                                 strcmp(v, "1") == 0;
        } else if (strcmp(k, "from") == 0 && o->from == NULL) {
            o->from = conf_keep(v);
        } else if (strcmp(k, "from-name") == 0 && o->from_name == NULL) {
            o->from_name = conf_keep(v);
        } else if (strcmp(k, "helo") == 0 && o->helo == NULL) {
            o->helo = conf_keep(v);
        } else if (strcmp(k, "oauth2-token-file") == 0) {
            if (o->oauth2_token_file == NULL && !o->oauth2_bearer)
                o->oauth2_token_file = conf_keep(v);
        } else if (strcmp(k, "insecure") == 0) {
            o->insecure |= strcmp(v, "yes") == 0 || strcmp(v, "1") == 0;
        } else if (strcmp(k, "allow-plaintext-auth") == 0) {
            o->allow_plaintext |= strcmp(v, "yes") == 0 ||
                                  strcmp(v, "1") == 0;
        } else if (strcmp(k, "timeout") == 0) {
            if (o->timeout == 0)
                o->timeout = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(k, "server") != 0 && strcmp(k, "user") != 0 &&
                   strcmp(k, "password-file") != 0 && strcmp(k, "mech") &&
                   strcmp(k, "starttls") != 0 && strcmp(k, "cafile") != 0 &&
                   strcmp(k, "cert") != 0 && strcmp(k, "key") != 0 &&
                   strcmp(k, "from") != 0 && strcmp(k, "from-name") != 0 &&
                   strcmp(k, "helo") != 0) {
            fprintf(stderr, "postern: %s:%u: unknown key '%s'\n", path,
                    lineno, k);
            goto bad;
        }
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    return 0;
bad:
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    return -1;
}

/* ~/.config/postern/config, then /etc/postern/client.conf. */
static int
send_default_configs(struct send_opts *o)
{
    const char *home = getenv("HOME"), *env = getenv("POSTERN_CONFIG");
    char path[4096];

    if (env != NULL)
        return send_read_config(env, o, 1);
    if (home != NULL) {
        snprintf(path, sizeof(path), "%s/.config/postern/config", home);
        if (send_read_config(path, o, 0) < 0)
            return -1;
    }
    return send_read_config("/etc/postern/client.conf", o, 0);
}

/* --- The message --------------------------------------------------------- */

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

/* Read stdin to the end (or, sendmail without -i, to a lone "." line). */
static int
read_stdin(struct mbuf *m, int dot_ends)
{
    char buf[65536];
    ssize_t r;

    if (dot_ends) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;

        while ((n = getline(&line, &cap, stdin)) > 0) {
            if (strcmp(line, ".\n") == 0 || strcmp(line, ".\r\n") == 0)
                break;
            if (mbuf_add(m, line, (size_t)n) < 0) {
                free(line);
                return -1;
            }
        }
        free(line);
        return ferror(stdin) ? -1 : 0;
    }
    while ((r = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (mbuf_add(m, buf, (size_t)r) < 0)
            return -1;
    }
    return 0;
}

/*
 * Whether standard input (not a terminal) has bytes waiting right now: a
 * regular file not read to its end, or a pipe or socket with data in it.
 * A writer that has not written yet is not seen; this is for a warning.
 */
static int
stdin_waiting(void)
{
    struct stat st;
    int n = 0;

    if (isatty(STDIN_FILENO) || fstat(STDIN_FILENO, &st) != 0)
        return 0;
    if (S_ISREG(st.st_mode)) {
        off_t pos = lseek(STDIN_FILENO, 0, SEEK_CUR);

        return pos >= 0 && st.st_size > pos;
    }
    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
        return ioctl(STDIN_FILENO, FIONREAD, &n) == 0 && n > 0;
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
static int
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

/* --- postern send -------------------------------------------------------- */

static void
send_usage(FILE *f)
{
    fprintf(f,
"usage: postern send --server smtp://HOST[:PORT] | smtps://HOST[:PORT]\n"
"                    [--user USER] [--password-file FILE] [--mech MECH]\n"
"                    [--oauth2-token-file FILE | --oauth2-bearer]\n"
"                    [--starttls=auto|required|never] [--cafile FILE]\n"
"                    [--cert FILE --key FILE] [--security-layer]\n"
"                    [--insecure] [--allow-plaintext-auth]\n"
"                    --from ADDR|'NAME <ADDR>' [--from-name NAME]\n"
"                    --to ADDR [--to ADDR...] [--cc ADDR...]\n"
"                    [--bcc ADDR...] [--subject TEXT] [--body FILE|-]\n"
"                    [--attach FILE...] [-v] [< message]\n"
"\n"
"Submit one message.  Without --subject, --body or --attach the message\n"
"is read from stdin (Date and Message-ID are added when missing); with\n"
"them, stdin is the text unless --body gives it or stdin is a terminal.\n"
"\n"
"  --server URL          smtp:// (port 587, STARTTLS) or smtps:// (465)\n"
"  --user USER           authenticate as USER (SMTP AUTH)\n"
"  --password-file FILE  the password is FILE's first line; otherwise\n"
"                        $POSTERN_PASSWORD, otherwise a prompt\n"
"  --mech MECH           use this mechanism or fail (exit 69) without\n"
"                        sending the password; default: the strongest\n"
"                        offered of SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS\n"
"                        (under TLS) SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5\n"
"                        CRAM-MD5 PLAIN LOGIN\n"
"  --oauth2-token-file FILE  log in with the access token of this token\n"
"                        file (posternd's relay writes it; not refreshed:\n"
"                        expired, exit 77); OAUTHBEARER, else XOAUTH2\n"
"  --oauth2-bearer       the same with the token in $POSTERN_OAUTH2_TOKEN\n"
"  --starttls=MODE       required (default: no TLS, nothing sent), auto\n"
"                        (TLS when offered; without it, only without\n"
"                        --user), never\n"
"  --cafile FILE         trust these CA certificates\n"
"  --cert FILE, --key FILE  present this client certificate (PEM) and\n"
"                        log in with EXTERNAL when offered (no --user\n"
"                        needed: the certificate names the user)\n"
"  --security-layer      DIGEST-MD5 without TLS: protect the rest of the\n"
"                        session with auth-conf or auth-int (legacy)\n"
"  --insecure            do not verify the server's certificate\n"
"  --allow-plaintext-auth  allow PLAIN/LOGIN without TLS\n"
"  --from ADDR           the sender; 'Name <ADDR>' also names it in From\n"
"  --from-name NAME      the display name of From (UTF-8)\n"
"  --body FILE           the text of a composed message (- : stdin)\n"
"  --helo NAME           EHLO name (default: this host)\n"
"  --timeout SECONDS     per network wait (default 60)\n"
"  -v, --verbose         print the transcript (AUTH data redacted)\n"
"\n"
"Exit: 0 sent, 64 usage, 65 bad message, 69 refused, 75 try later,\n"
"77 authentication failed.\n");
}

enum {
    OPT_SERVER = 256, OPT_USER, OPT_PWFILE, OPT_MECH, OPT_STARTTLS,
    OPT_CAFILE, OPT_INSECURE, OPT_PLAIN, OPT_FROM, OPT_TO, OPT_CC, OPT_BCC,
    OPT_SUBJECT, OPT_BODY, OPT_ATTACH, OPT_HELO, OPT_TIMEOUT, OPT_FROM_NAME,
    OPT_CERT, OPT_KEY, OPT_LAYER,
    OPT_OAUTH2_FILE, OPT_OAUTH2_BEARER,
};

/*
 * An address as the envelope takes it: an RFC 5321 §4.1.2 Mailbox without
 * the <>, as libpostern's session checks it (pst_smtp_client_check_mailbox():
 * a Dot-string or a Quoted-string local part such as "john doe", at most
 * 64 octets, 256 with the <>), or a local part alone ("root", as cron
 * gives it to sendmail: the server qualifies it).  One with 8-bit octets
 * must be UTF-8 (RFC 6531 §3.3) and asks for SMTPUTF8: o->mail_flags gets
 * it, and o->utf8_addr names the first such address for messages.  "Alice
 * <a@example.test>" is refused here with a usage message rather than by
 * the session as an internal error.
 * Returns: 0, or with a message printed bad_code (64 for the command
 * line, 65 for a message header).
 */
static int
send_check_addr(struct send_opts *o, const char *what, const char *a,
                int may_be_empty, int bad_code)
{
    unsigned flags = 0;
    int rc;

    if (a[0] == '\0' && may_be_empty)
        return 0;
    for (const char *p = a; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            flags = PST_SMTP_CLIENT_MAIL_SMTPUTF8;
    rc = pst_smtp_client_check_mailbox(a,
                                       flags | PST_SMTP_CLIENT_PATH_LOCAL);
    if (rc == PST_ELIMIT) {
        fprintf(stderr, "%s: %s '%s' is too long for SMTP (RFC 5321 "
                "§4.5.3.1: 64 octets before the @, 254 in all)\n", o->prog,
                what, a);
        return bad_code;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s '%s' is not an address (give the bare "
                "address, like user@example.test%s)\n", o->prog, what, a,
                flags != 0 ? "; 8-bit octets must be UTF-8" : "");
        return bad_code;
    }
    /* RFC 6531 §3.2: 8-bit in the envelope, and in the header fields that
     * carry it, only with SMTPUTF8 (which the server must offer). */
    if (flags != 0 && o->utf8_addr == NULL)
        o->utf8_addr = a;
    o->mail_flags |= flags;
    return 0;
}

/*
 * The sender as "Name <addr>" or addr (--from, the key from, sendmail's
 * -f): the envelope takes addr, the From field also the name unless one
 * is given apart (--from-name, from-name, -F).
 * Returns: 0, or an exit code with a message printed.
 */
static int
send_split_from(struct send_opts *o, const char *what)
{
    char *name, *addr;
    int rc = 0;

    if (mime_split_mailbox(o->from, &name, &addr) < 0) {
        fprintf(stderr, "%s: %s '%s' is neither an address nor "
                "\"Name <address>\"\n", o->prog, what, o->from);
        return EX_USAGE;
    }
    if ((o->from = conf_keep(addr)) == NULL ||
        (name != NULL && o->from_name == NULL &&
         (o->from_name = conf_keep(name)) == NULL))
        rc = EX_OSERR;
    free(name);
    free(addr);
    return rc;
}

static int
add_list(const char **list, size_t *n, const char *v)
{
    if (*n == SEND_MAX_RCPT) {
        fprintf(stderr, "postern send: too many addresses or files\n");
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

int
cmd_send_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"user", required_argument, NULL, OPT_USER},
        {"password-file", required_argument, NULL, OPT_PWFILE},
        {"mech", required_argument, NULL, OPT_MECH},
        {"oauth2-token-file", required_argument, NULL, OPT_OAUTH2_FILE},
        {"oauth2-bearer", no_argument, NULL, OPT_OAUTH2_BEARER},
        {"starttls", required_argument, NULL, OPT_STARTTLS},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"security-layer", no_argument, NULL, OPT_LAYER},
        {"allow-plaintext-auth", no_argument, NULL, OPT_PLAIN},
        {"from", required_argument, NULL, OPT_FROM},
        {"from-name", required_argument, NULL, OPT_FROM_NAME},
        {"to", required_argument, NULL, OPT_TO},
        {"cc", required_argument, NULL, OPT_CC},
        {"bcc", required_argument, NULL, OPT_BCC},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"body", required_argument, NULL, OPT_BODY},
        {"attach", required_argument, NULL, OPT_ATTACH},
        {"helo", required_argument, NULL, OPT_HELO},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct send_opts o = {.prog = "postern send"};
    struct mbuf msg = {0}, msg7 = {0}, raw = {0};
    const char *rcpt[3 * SEND_MAX_RCPT];
    size_t nrcpt = 0;
    char err[512], domain[256];
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER: o.server = optarg; break;
        case OPT_USER: o.user = optarg; break;
        case OPT_PWFILE: o.password_file = optarg; break;
        case OPT_MECH: o.mech = optarg; break;
        case OPT_OAUTH2_FILE: o.oauth2_token_file = optarg; break;
        case OPT_OAUTH2_BEARER: o.oauth2_bearer = 1; break;
        case OPT_STARTTLS: o.starttls = optarg; break;
        case OPT_CAFILE: o.cafile = optarg; break;
        case OPT_INSECURE: o.insecure = 1; break;
        case OPT_CERT: o.cert = optarg; break;
        case OPT_KEY: o.key = optarg; break;
        case OPT_LAYER: o.security_layer = 1; break;
        case OPT_PLAIN: o.allow_plaintext = 1; break;
        case OPT_FROM: o.from = optarg; break;
        case OPT_FROM_NAME: o.from_name = optarg; break;
        case OPT_TO:
            if (add_list(o.to, &o.nto, optarg) < 0)
                return EX_USAGE;
            break;
        case OPT_CC:
            if (add_list(o.cc, &o.ncc, optarg) < 0)
                return EX_USAGE;
            break;
        case OPT_BCC:
            if (add_list(o.bcc, &o.nbcc, optarg) < 0)
                return EX_USAGE;
            break;
        case OPT_SUBJECT: o.subject = optarg; break;
        case OPT_BODY: o.body = optarg; break;
        case OPT_ATTACH:
            if (add_list(o.attach, &o.nattach, optarg) < 0)
                return EX_USAGE;
            break;
        case OPT_HELO: o.helo = optarg; break;
        case OPT_TIMEOUT: o.timeout = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'v': o.verbose = 1; break;
        case 'h':
            send_usage(stdout);
            return EX_OK;
        default:
            send_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "postern send: unexpected argument '%s'\n",
                argv[optind]);
        return EX_USAGE;
    }
    if (o.oauth2_bearer && o.oauth2_token_file != NULL) {
        fprintf(stderr, "postern send: --oauth2-token-file and "
                "--oauth2-bearer exclude each other\n");
        return EX_USAGE;
    }
    /* The files fill in what the command line left unset (msmtp reads
     * its configuration the same way). */
    if (send_default_configs(&o) < 0)
        return EX_CONFIG;
    if (o.from == NULL || o.nto + o.ncc + o.nbcc == 0) {
        fprintf(stderr, "postern send: --from and at least one --to, --cc "
                "or --bcc are required\n");
        conf_free();
        return EX_USAGE;
    }
    rc = send_split_from(&o, "--from");
    if (rc == 0)
        rc = send_check_addr(&o, "--from", o.from, 1, EX_USAGE);
    for (size_t i = 0; i < o.nto && rc == 0; i++)
        rc = send_check_addr(&o, "--to", o.to[i], 0, EX_USAGE);
    for (size_t i = 0; i < o.ncc && rc == 0; i++)
        rc = send_check_addr(&o, "--cc", o.cc[i], 0, EX_USAGE);
    for (size_t i = 0; i < o.nbcc && rc == 0; i++)
        rc = send_check_addr(&o, "--bcc", o.bcc[i], 0, EX_USAGE);
    if (rc != 0) {
        if (o.password != NULL)
            OPENSSL_clear_free(o.password, strlen(o.password));
        conf_free();
        return rc;
    }
    {
        const char *at = strrchr(o.from, '@');

        snprintf(domain, sizeof(domain), "%s", at != NULL ? at + 1
                                                          : "localhost");
    }
    if (o.subject != NULL || o.body != NULL || o.nattach > 0 ||
        isatty(STDIN_FILENO)) {
        struct compose cp = {
            .from = o.from, .from_name = o.from_name, .to = o.to,
            .nto = o.nto, .cc = o.cc,
            .ncc = o.ncc, .subject = o.subject, .body_file = o.body,
            .attach = o.attach, .nattach = o.nattach,
            .msgid_domain = domain,
        };
        int body_stdin = o.body != NULL ? strcmp(o.body, "-") == 0
                                        : !isatty(STDIN_FILENO);

        /* mailx's `mail -s S to < body`: without --body the text is
         * standard input unless that is a terminal; --body - reads it
         * in any case.  Input is never dropped without a word. */
        if (body_stdin) {
            cp.body_file = NULL;
            if (read_stdin(&raw, 0) < 0) {
                fprintf(stderr, "postern send: reading the text: %s\n",
                        strerror(errno));
                mbuf_free(&raw);
                conf_free();
                return EX_IOERR;
            }
            cp.body = raw.data;
            cp.body_len = raw.len;
        } else if (o.body != NULL && stdin_waiting()) {
            fprintf(stderr, "postern send: warning: standard input is not "
                    "read: --body gives the text (--body - reads "
                    "standard input)\n");
        }
        rc = mime_compose(&cp, &msg, &msg7, err, sizeof(err));
        mbuf_free(&raw);
        if (rc < 0) {
            fprintf(stderr, "postern send: %s\n", err);
            mbuf_free(&msg);
            mbuf_free(&msg7);
            conf_free();
            return EX_NOINPUT;
        }
    } else {
        if (read_stdin(&raw, 0) < 0) {
            fprintf(stderr, "postern send: reading the message: %s\n",
                    strerror(errno));
            mbuf_free(&raw);
            conf_free();
            return EX_IOERR;
        }
        if (raw.len == 0) {
            fprintf(stderr, "postern send: the message is empty\n");
            mbuf_free(&raw);
            conf_free();
            return EX_DATAERR;
        }
        if (mime_complete(raw.data, raw.len, o.from, o.from_name, domain,
                          0, &msg, err, sizeof(err)) < 0) {
            fprintf(stderr, "postern send: %s\n", err);
            mbuf_free(&raw);
            mbuf_free(&msg);
            conf_free();
            return EX_DATAERR;
        }
        mbuf_free(&raw);
    }
    for (size_t i = 0; i < o.nto; i++)
        rcpt[nrcpt++] = o.to[i];
    for (size_t i = 0; i < o.ncc; i++)
        rcpt[nrcpt++] = o.cc[i];
    for (size_t i = 0; i < o.nbcc; i++)
        rcpt[nrcpt++] = o.bcc[i];
    rc = send_submit(&o, &msg, msg7.len > 0 ? &msg7 : NULL, rcpt, nrcpt);
    mbuf_free(&msg);
    mbuf_free(&msg7);
    if (o.password != NULL)
        OPENSSL_clear_free(o.password, strlen(o.password));
    conf_free();
    return rc;
}

/* --- sendmail ------------------------------------------------------------ */

/*
 * The options programs pass to sendmail (Postfix sendmail(1), msmtp):
 * -t, -i, -oi, -f ADDR, -F NAME, -v, recipients as arguments.  Other
 * -o options and -B, -bm, -em, -N, -R, -X are accepted and ignored, as
 * msmtp does.
 */
int
sendmail_main(int argc, char **argv)
{
    struct send_opts o = {.prog = "sendmail"};
    struct mbuf raw = {0}, msg = {0};
    const char **rcpt = NULL;
    char **hdr_rcpt = NULL, err[512], domain[256], from_buf[512];
    size_t nrcpt = 0, nhdr = 0;
    int read_t = 0, dot_ends = 1, rc = EX_USAGE, i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break;
        if (strcmp(a, "-t") == 0) {
            read_t = 1;
        } else if (strcmp(a, "-i") == 0 || strcmp(a, "-oi") == 0) {
            dot_ends = 0;
        } else if (strcmp(a, "-v") == 0) {
            o.verbose = 1;
        } else if (strncmp(a, "-f", 2) == 0 || strncmp(a, "-r", 2) == 0) {
            o.from = a[2] != '\0' ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
        } else if (strncmp(a, "-F", 2) == 0) {
            o.from_name = a[2] != '\0' ? a + 2
                                       : (i + 1 < argc ? argv[++i] : NULL);
        } else if (strncmp(a, "-B", 2) == 0 || strncmp(a, "-N", 2) == 0 ||
                   strncmp(a, "-R", 2) == 0 || strncmp(a, "-X", 2) == 0) {
            /* Take an argument we ignore, attached (Debian cron's
             * -B8BITMIME) or separate. */
            if (a[2] == '\0')
                i++;
        } else if (strncmp(a, "-o", 2) == 0 || strncmp(a, "-b", 2) == 0 ||
                   strncmp(a, "-e", 2) == 0) {
            if (strcmp(a, "-bp") == 0 || strcmp(a, "-bs") == 0) {
                fprintf(stderr, "sendmail: %s is not supported\n", a);
                return EX_USAGE;
            }
        } else {
            fprintf(stderr, "sendmail: unknown option %s\n", a);
            return EX_USAGE;
        }
    }
    if (send_default_configs(&o) < 0)
        return EX_CONFIG;
    if (read_stdin(&raw, dot_ends) < 0) {
        fprintf(stderr, "sendmail: reading the message: %s\n",
                strerror(errno));
        rc = EX_IOERR;
        goto out;
    }
    if (o.from == NULL) {
        /* Default sender: the configured user when it is an address. */
        if (o.user != NULL && strchr(o.user, '@') != NULL)
            o.from = o.user;
        else {
            const char *u = getenv("USER");
            char host[256];

            client_helo_name(host, sizeof(host));
            snprintf(from_buf, sizeof(from_buf), "%s@%s",
                     u != NULL ? u : "root", host);
            o.from = from_buf;
        }
    }
    if (read_t && mime_header_recipients(raw.data, raw.len, &hdr_rcpt,
                                         &nhdr) < 0) {
        rc = EX_OSERR;
        goto out;
    }
    /* Every recipient, however many the header names. */
    rcpt = calloc((size_t)argc + nhdr + 1, sizeof(*rcpt));
    if (rcpt == NULL) {
        rc = EX_OSERR;
        goto out;
    }
    if (o.from_name != NULL && o.from_name[0] == '\0')
        o.from_name = NULL;
    if ((rc = send_split_from(&o, "sender")) != 0 ||
        (rc = send_check_addr(&o, "sender", o.from, 1, EX_USAGE)) != 0)
        goto out;
    for (size_t k = 0; k < nhdr; k++) {
        if ((rc = send_check_addr(&o, "recipient in the header",
                                  hdr_rcpt[k], 0, EX_DATAERR)) != 0)
            goto out;
        rcpt[nrcpt++] = hdr_rcpt[k];
    }
    for (; i < argc; i++) {
        if ((rc = send_check_addr(&o, "recipient", argv[i], 0,
                                  EX_USAGE)) != 0)
            goto out;
        rcpt[nrcpt++] = argv[i];
    }
    if (nrcpt == 0) {
        fprintf(stderr, "sendmail: no recipients\n");
        rc = EX_USAGE;
        goto out;
    }
    {
        const char *at = strrchr(o.from, '@');

        snprintf(domain, sizeof(domain), "%s", at != NULL ? at + 1
                                                          : "localhost");
    }
    /* A From field is added when the message has none, with -F's name
     * (or the configured sender's) as a phrase. */
    if (mime_complete(raw.data, raw.len, o.from, o.from_name, domain,
                      read_t, &msg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sendmail: %s\n", err);
        rc = EX_DATAERR;
        goto out;
    }
    rc = send_submit(&o, &msg, NULL, rcpt, nrcpt);
out:
    for (size_t k = 0; k < nhdr; k++)
        free(hdr_rcpt[k]);
    free(hdr_rcpt);
    free(rcpt);
    mbuf_free(&raw);
    mbuf_free(&msg);
    if (o.password != NULL)
        OPENSSL_clear_free(o.password, strlen(o.password));
    conf_free();
    return rc;
}
