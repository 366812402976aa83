/*
 * postern send, and postern invoked as sendmail: submit one message.
 * Here the client configuration file, the message (composed, or read
 * from standard input) and the two command lines; the submission they
 * both end in is cmd_send_submit.c's.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client.h"
#include "cmd_send.h"
#include "cmds.h"
#include "mime.h"

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
